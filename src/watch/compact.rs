//! Caches that keep each object as the JSON it serializes to, and make it an object again when
//! it is read.
//!
//! The operator's children (RoleBindings, Roles, ResourceQuotas, LimitRanges, ClusterRoles,
//! ClusterRoleBindings, the quota ledgers) are read a few at a time, by name, when their owner is
//! reconciled; held as `k8s-openapi` objects they cost 3.5–4.7 KB each (every string, label and
//! list its own allocation, labels in B-tree nodes sized for 11 entries), as JSON 0.7–0.9 KB. At
//! 10,000 projects that is ten children each: ~350 MiB against ~90 MiB. Reading one back costs a
//! few microseconds, and the kinds a controller is built on (projects, memberships, customers,
//! namespaces, ...) stay whole in kube's own [`Store`](kube::runtime::reflector::Store).

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::{Arc, RwLock};

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
    objects: RwLock<HashMap<Box<str>, Box<[u8]>>>,
    /// Whether the first list is in.
    listed: tokio::sync::watch::Sender<bool>,
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
            }),
            kind: PhantomData,
        };
        let writer = CompactWriter {
            cache: cache.clone(),
            relisting: None,
        };
        (cache, writer)
    }

    /// The object at `at`, as last watched.
    pub fn get(&self, at: &ObjectRef<K>) -> Option<Arc<K>> {
        self.get_key(&key(at.namespace.as_deref(), &at.name))
    }

    fn get_key(&self, key: &str) -> Option<Arc<K>> {
        let objects = self.inner.objects.read().expect("compact cache lock");
        objects.get(key).and_then(|json| decode(json)).map(Arc::new)
    }

    /// Every object (for tests: the operator reads its children by name).
    #[cfg(test)]
    fn state(&self) -> Vec<Arc<K>> {
        let objects = self.inner.objects.read().expect("compact cache lock");
        objects
            .values()
            .filter_map(|json| decode(json))
            .map(Arc::new)
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

fn encode<K: Serialize>(obj: &K) -> Option<Box<[u8]>> {
    match serde_json::to_vec(obj) {
        Ok(json) => Some(json.into_boxed_slice()),
        Err(e) => {
            tracing::error!(error = %e, "a watched object could not be kept as JSON");
            None
        }
    }
}

fn decode<K: DeserializeOwned + Resource<DynamicType = ()>>(json: &[u8]) -> Option<K> {
    match serde_json::from_slice(json) {
        Ok(obj) => Some(obj),
        Err(e) => {
            tracing::error!(kind = %K::kind(&()), error = %e, "a cached object could not be read back");
            None
        }
    }
}

/// Fills a [`Compact`] cache from its watch.
pub struct CompactWriter<K> {
    cache: Compact<K>,
    /// A (re)list in progress: what it has listed so far.
    relisting: Option<HashMap<Box<str>, Box<[u8]>>>,
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
                if let Some(json) = encode(&obj) {
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
                if let (Some(listing), Some(json)) = (self.relisting.as_mut(), encode(&obj)) {
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
                Box::new(
                    keys.into_iter()
                        .filter_map(move |k| cache.get_key(&k))
                        .chain(
                            dropped
                                .into_iter()
                                .filter_map(|json| decode::<K>(&json))
                                .map(Arc::new),
                        ),
                )
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
