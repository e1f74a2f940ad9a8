//! Caches that keep each object as the JSON it serializes to, compressed, and make it an object
//! again when it is read.
//!
//! Projects, memberships, namespaces and the operator's children (RoleBindings, Roles,
//! ResourceQuotas, LimitRanges, ClusterRoles, ClusterRoleBindings, the quota ledgers) are read a
//! few at a time, by name, when they or their owner are reconciled or admitted. Held as
//! `k8s-openapi` objects they cost 1.8–8.6 KB each (every string, label and list its own
//! allocation, every map a B-tree node sized for 11 entries), as JSON 0.7–2.5 KB. At 10,000
//! projects that is fifteen objects each. Reading one back costs a few microseconds (a Project
//! ~12 µs). The kinds with few objects, read in bulk (customers, checklists, usage records),
//! stay whole in kube's own [`Store`](kube::runtime::reflector::Store).
//!
//! Objects of one kind are mostly the same text: the operator's labels, its owner references,
//! its role names, the same keys in the same order; what sets one apart is its names, uids,
//! versions and times. So each object's JSON is compressed (zstd) with the first object the
//! cache kept as its dictionary, and holds little more than what sets it apart: a membership of
//! `make bench` is 914 bytes of JSON and ~120 bytes compressed against another's. A first object
//! unlike the rest only makes the others compress less; any dictionary reads back what it wrote.

use std::cell::RefCell;
use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::{Arc, OnceLock, RwLock};

use kube::Resource;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// A watch cache holding its objects as JSON (see the module documentation). Reads give new
/// objects each time: two reads of one object are equal, not the same allocation.
pub struct Compact<K> {
    inner: Arc<Inner>,
    kind: PhantomData<fn() -> K>,
}

struct Inner {
    /// Each object's JSON, compressed with [`Inner::dictionary`].
    objects: RwLock<HashMap<Box<str>, Box<[u8]>>>,
    /// Whether the first list is in.
    listed: tokio::sync::watch::Sender<bool>,
    /// The JSON of the first object kept, prepared for compressing and for reading back; set
    /// before any object is kept, never changed after.
    dictionary: OnceLock<Dictionary>,
}

/// Compression level: zstd's default. Writing is once per watch event; reading back costs the
/// same at any level.
const LEVEL: i32 = 3;

struct Dictionary {
    compress: zstd::zstd_safe::CDict<'static>,
    read: zstd::zstd_safe::DDict<'static>,
}

impl Dictionary {
    fn of(json: &[u8]) -> Self {
        Dictionary {
            compress: zstd::zstd_safe::CDict::create(json, LEVEL),
            read: zstd::zstd_safe::DDict::create(json),
        }
    }
}

thread_local! {
    /// Each thread's context for reading objects back (contexts are reused, dictionaries
    /// shared).
    static READER: RefCell<zstd::zstd_safe::DCtx<'static>> =
        RefCell::new(zstd::zstd_safe::DCtx::create());
}

impl<K> Clone for Compact<K> {
    fn clone(&self) -> Self {
        Compact {
            inner: self.inner.clone(),
            kind: PhantomData,
        }
    }
}

/// `namespace/name`, or `name` for a cluster-scoped object (names hold no `/`).
fn key(namespace: Option<&str>, name: &str) -> Box<str> {
    match namespace {
        Some(ns) => format!("{ns}/{name}").into_boxed_str(),
        None => name.into(),
    }
}

fn key_of<K: Resource>(obj: &K) -> Box<str> {
    let meta = obj.meta();
    key(
        meta.namespace.as_deref(),
        meta.name.as_deref().unwrap_or_default(),
    )
}

impl<K> Compact<K>
where
    K: Resource<DynamicType = ()> + Serialize + DeserializeOwned + 'static,
{
    /// An empty cache, and the writer that fills it from a watch.
    pub fn new() -> (Self, CompactWriter<K>) {
        let cache = Compact {
            inner: Arc::new(Inner {
                objects: RwLock::default(),
                listed: tokio::sync::watch::Sender::new(false),
                dictionary: OnceLock::new(),
            }),
            kind: PhantomData,
        };
        let writer = CompactWriter {
            cache: cache.clone(),
            relisting: None,
            context: zstd::zstd_safe::CCtx::create(),
        };
        (cache, writer)
    }

    /// The object at `at`, as last watched.
    pub fn get(&self, at: &ObjectRef<K>) -> Option<Arc<K>> {
        self.get_key(&key(at.namespace.as_deref(), &at.name))
    }

    fn get_key(&self, key: &str) -> Option<Arc<K>> {
        self.read_key(key).map(Arc::new)
    }

    fn read_key(&self, key: &str) -> Option<K> {
        let objects = self.inner.objects.read().expect("compact cache lock");
        objects.get(key).and_then(|kept| self.decode(kept))
    }

    /// An object from what the cache keeps of it.
    fn decode(&self, kept: &[u8]) -> Option<K> {
        let json = self
            .inner
            .dictionary
            .get()
            .and_then(|d| decompress(d, kept))?;
        match serde_json::from_slice(&json) {
            Ok(obj) => Some(obj),
            Err(e) => {
                tracing::error!(kind = %K::kind(&()), error = %e, "a cached object could not be read back");
                None
            }
        }
    }

    /// Bytes kept for objects (for tests; `make bench-caches` counts allocations instead).
    #[cfg(test)]
    fn bytes_kept(&self) -> usize {
        let objects = self.inner.objects.read().expect("compact cache lock");
        objects.values().map(|kept| kept.len()).sum()
    }

    /// Whether it holds an object at `at` (nothing is read back).
    pub fn contains(&self, at: &ObjectRef<K>) -> bool {
        let objects = self.inner.objects.read().expect("compact cache lock");
        objects.contains_key(&key(at.namespace.as_deref(), &at.name))
    }

    /// Every object, read back, all at once (for tests: the operator reads them by name, or one
    /// at a time with [`Compact::each`]).
    #[cfg(test)]
    fn state(&self) -> Vec<Arc<K>> {
        let mut all = Vec::new();
        self.each(|obj| all.push(Arc::new(obj)));
        all
    }

    /// Reads every object back, one at a time, and hands it to `f`: those held when it began
    /// and still held when their turn comes, each as it is then.
    pub fn each(&self, mut f: impl FnMut(K)) {
        let kept: Vec<Box<str>> = {
            let objects = self.inner.objects.read().expect("compact cache lock");
            objects.keys().cloned().collect()
        };
        for k in kept {
            if let Some(obj) = self.read_key(&k) {
                f(obj);
            }
        }
    }

    /// The references of every object held (nothing is read back).
    pub fn refs(&self) -> Vec<ObjectRef<K>> {
        let objects = self.inner.objects.read().expect("compact cache lock");
        objects
            .keys()
            .map(|k| match k.split_once('/') {
                Some((ns, name)) => ObjectRef::new(name).within(ns),
                None => ObjectRef::new(k),
            })
            .collect()
    }

    /// How many objects it holds.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.inner.objects.read().expect("compact cache lock").len()
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Ends once the first list is in.
    pub async fn until_listed(&self) {
        let mut listed = self.inner.listed.subscribe();
        // Only an error if the sender went, which `self` holds.
        let _ = listed.wait_for(|done| *done).await;
    }
}

/// The JSON `kept` was compressed from.
fn decompress(dictionary: &Dictionary, kept: &[u8]) -> Option<Vec<u8>> {
    let size = match zstd::zstd_safe::get_frame_content_size(kept) {
        Ok(Some(size)) => size as usize,
        _ => {
            tracing::error!("a cached object's frame has no readable size");
            return None;
        }
    };
    let mut json = Vec::with_capacity(size);
    READER.with_borrow_mut(|reader| {
        match reader.decompress_using_ddict(&mut json, kept, &dictionary.read) {
            Ok(_) => Some(json),
            Err(code) => {
                let error = zstd::zstd_safe::get_error_name(code);
                tracing::error!(error, "a cached object could not be decompressed");
                None
            }
        }
    })
}

/// Fills a [`Compact`] cache from its watch.
pub struct CompactWriter<K> {
    cache: Compact<K>,
    /// A (re)list in progress: what it has listed so far.
    relisting: Option<HashMap<Box<str>, Box<[u8]>>>,
    /// The writer's compression context (only the writer compresses).
    context: zstd::zstd_safe::CCtx<'static>,
}

impl<K> CompactWriter<K>
where
    K: Resource<DynamicType = ()> + Serialize + DeserializeOwned + Send + Sync + 'static,
{
    /// Applies one watch event and says what the cache's subscribers are to hear of: an applied
    /// object as it now is, a deleted one as it last was, and after a (re)list every object
    /// listed and every object the list dropped (read back one at a time as they are told, so a
    /// relist of tens of thousands never holds them all as objects at once).
    pub fn apply(
        &mut self,
        ev: watcher::Event<K>,
    ) -> Box<dyn Iterator<Item = Arc<K>> + Send + 'static> {
        match ev {
            watcher::Event::Apply(obj) => {
                if let Some(json) = self.encode(&obj) {
                    self.objects().insert(key_of(&obj), json);
                }
                Box::new(std::iter::once(Arc::new(obj)))
            }
            watcher::Event::Delete(obj) => {
                self.objects().remove(&key_of(&obj));
                Box::new(std::iter::once(Arc::new(obj)))
            }
            watcher::Event::Init => {
                self.relisting = Some(HashMap::new());
                Box::new(std::iter::empty())
            }
            watcher::Event::InitApply(obj) => {
                if self.relisting.is_some()
                    && let Some(json) = self.encode(&obj)
                    && let Some(listing) = self.relisting.as_mut()
                {
                    listing.insert(key_of(&obj), json);
                }
                Box::new(std::iter::empty())
            }
            watcher::Event::InitDone => {
                let listed = self.relisting.take().unwrap_or_default();
                let keys: Vec<Box<str>> = listed.keys().cloned().collect();
                let before = std::mem::replace(&mut *self.objects(), listed);
                self.cache.inner.listed.send_replace(true);
                let dropped: Vec<Box<[u8]>> = {
                    let now = self.objects();
                    before
                        .into_iter()
                        .filter(|(k, _)| !now.contains_key(k))
                        .map(|(_, json)| json)
                        .collect()
                };
                let cache = self.cache.clone();
                let dropped_from = self.cache.clone();
                Box::new(
                    keys.into_iter()
                        .filter_map(move |k| cache.get_key(&k))
                        .chain(
                            dropped
                                .into_iter()
                                .filter_map(move |kept| dropped_from.decode(&kept))
                                .map(Arc::new),
                        ),
                )
            }
        }
    }

    /// What the cache keeps of `obj`: its JSON, compressed against the dictionary (the first
    /// object kept makes it).
    fn encode(&mut self, obj: &K) -> Option<Box<[u8]>> {
        let json = match serde_json::to_vec(obj) {
            Ok(json) => json,
            Err(e) => {
                tracing::error!(error = %e, "a watched object could not be kept as JSON");
                return None;
            }
        };
        let dictionary = self
            .cache
            .inner
            .dictionary
            .get_or_init(|| Dictionary::of(&json));
        let mut kept = Vec::with_capacity(zstd::zstd_safe::compress_bound(json.len()));
        match self
            .context
            .compress_using_cdict(&mut kept, &json, &dictionary.compress)
        {
            Ok(_) => Some(kept.into_boxed_slice()),
            Err(code) => {
                let error = zstd::zstd_safe::get_error_name(code);
                tracing::error!(error, "a watched object could not be compressed");
                None
            }
        }
    }

    fn objects(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<Box<str>, Box<[u8]>>> {
        self.cache
            .inner
            .objects
            .write()
            .expect("compact cache lock")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ResourceQuota;
    use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding, RoleRef, Subject};
    use kube::api::ObjectMeta;

    fn binding(name: &str, ns: &str, user: &str, version: &str) -> RoleBinding {
        RoleBinding {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(ns.into()),
                resource_version: Some(version.into()),
                labels: Some([("tenancy.dev/project".to_string(), ns.to_string())].into()),
                ..Default::default()
            },
            role_ref: RoleRef {
                api_group: "rbac.authorization.k8s.io".into(),
                kind: "ClusterRole".into(),
                name: "tenancy:member".into(),
            },
            subjects: Some(vec![Subject {
                kind: "User".into(),
                name: user.into(),
                ..Default::default()
            }]),
        }
    }

    fn names(objects: impl Iterator<Item = Arc<RoleBinding>>) -> Vec<String> {
        let mut v: Vec<String> = objects
            .map(|o| {
                format!(
                    "{}@{}",
                    o.metadata.name.clone().unwrap_or_default(),
                    o.metadata.resource_version.clone().unwrap_or_default()
                )
            })
            .collect();
        v.sort();
        v
    }

    /// What goes in comes out equal, for every kind kept compact; cluster-scoped and namespaced
    /// objects of one name are apart.
    #[test]
    fn objects_come_back_as_they_went_in() {
        let (cache, mut w) = Compact::<RoleBinding>::new();
        let b = binding("ann", "alpha", "ann@example.com", "7");
        let told: Vec<_> = w.apply(watcher::Event::Apply(b.clone())).collect();
        assert_eq!(told.len(), 1);
        let at = ObjectRef::new("ann").within("alpha");
        assert_eq!(cache.get(&at).as_deref(), Some(&b));
        assert!(cache.get(&ObjectRef::new("ann").within("beta")).is_none());

        let (crbs, mut w) = Compact::<ClusterRoleBinding>::new();
        let crb: ClusterRoleBinding = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "alpha", "ownerReferences": [{"apiVersion": "tenancy.dev/v1alpha1",
                "kind": "Project", "name": "alpha", "uid": "u1", "controller": true}]},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "r"},
            "subjects": [{"kind": "Group", "name": "g", "apiGroup": "rbac.authorization.k8s.io"}]
        }))
        .unwrap();
        let _ = w.apply(watcher::Event::Apply(crb.clone())).count();
        assert_eq!(crbs.get(&ObjectRef::new("alpha")).as_deref(), Some(&crb));

        let (quotas, mut w) = Compact::<ResourceQuota>::new();
        let q: ResourceQuota = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "q", "namespace": "alpha"},
            "spec": {"hard": {"requests.cpu": "1500m", "pods": "10"}},
            "status": {"hard": {"requests.cpu": "1500m"}, "used": {"requests.cpu": "250m"}}
        }))
        .unwrap();
        let _ = w.apply(watcher::Event::Apply(q.clone())).count();
        assert_eq!(
            quotas.get(&ObjectRef::new("q").within("alpha")).as_deref(),
            Some(&q)
        );
    }

    /// Objects of a kind are kept compressed against the first one: a hundred memberships'
    /// bindings cost a fraction of their JSON, and all read back equal, whichever object came
    /// first (one unlike the rest included) and after the writer that compressed them is gone.
    #[test]
    fn objects_are_kept_compressed_and_read_back_equal() {
        let many = |first: RoleBinding| {
            let (cache, mut w) = Compact::<RoleBinding>::new();
            let mut all = vec![first];
            all.extend((0..100).map(|i| {
                let ns = format!("project-{i:03}");
                binding(
                    &format!("tenancy-member-{i}"),
                    &ns,
                    &format!("user-{i}@example.com"),
                    &format!("{}", 1000 + i),
                )
            }));
            for b in &all {
                let _ = w.apply(watcher::Event::Apply(b.clone())).count();
            }
            let json: usize = all
                .iter()
                .map(|b| serde_json::to_vec(b).unwrap().len())
                .sum();
            drop(w);
            for b in &all {
                let at = ObjectRef::new(b.metadata.name.as_deref().unwrap())
                    .within(b.metadata.namespace.as_deref().unwrap());
                assert_eq!(cache.get(&at).as_deref(), Some(b));
            }
            (cache.bytes_kept(), json)
        };
        let (kept, json) = many(binding("first", "project-first", "first@example.com", "1"));
        assert!(
            kept * 3 < json,
            "kept {kept} bytes for {json} bytes of JSON: less than a third expected"
        );
        let mut odd = binding("odd", "elsewhere", "someone", "1");
        odd.metadata.annotations = Some([("note".to_string(), "x".repeat(300))].into());
        odd.role_ref.kind = "Role".into();
        let (kept, json) = many(odd);
        assert!(kept < json, "kept {kept} bytes for {json} bytes of JSON");
    }

    /// Deletions go, and are told as the object last was; a relist replaces everything, tells
    /// every object listed and every one it dropped, and marks the cache listed.
    #[test]
    fn deletions_and_relists_are_told_and_kept() {
        let (cache, mut w) = Compact::<RoleBinding>::new();
        assert!(futures::FutureExt::now_or_never(cache.until_listed()).is_none());
        let _ = w.apply(watcher::Event::Init).count();
        let _ = w
            .apply(watcher::Event::InitApply(binding("a", "ns", "u", "1")))
            .count();
        let _ = w
            .apply(watcher::Event::InitApply(binding("b", "ns", "u", "1")))
            .count();
        assert!(cache.is_empty(), "a list in progress is not the cache yet");
        let told = names(w.apply(watcher::Event::InitDone));
        assert_eq!(told, vec!["a@1", "b@1"]);
        assert!(futures::FutureExt::now_or_never(cache.until_listed()).is_some());

        let told = names(w.apply(watcher::Event::Delete(binding("a", "ns", "u", "2"))));
        assert_eq!(told, vec!["a@2"]);
        assert!(cache.get(&ObjectRef::new("a").within("ns")).is_none());

        let _ = w
            .apply(watcher::Event::Apply(binding("c", "ns", "u", "3")))
            .count();
        // The watch was away: b went without a deletion event, d came.
        let _ = w.apply(watcher::Event::Init).count();
        let _ = w
            .apply(watcher::Event::InitApply(binding("c", "ns", "u", "4")))
            .count();
        let _ = w
            .apply(watcher::Event::InitApply(binding("d", "ns", "u", "4")))
            .count();
        assert_eq!(cache.len(), 2, "b and c until the relist is done");
        let told = names(w.apply(watcher::Event::InitDone));
        assert_eq!(told, vec!["b@1", "c@4", "d@4"]);
        assert_eq!(names(cache.state().into_iter()), vec!["c@4", "d@4"]);
    }
}
