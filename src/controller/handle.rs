//! Controllers over kinds cached as compressed JSON ([`Compact`]). kube's controller runtime
//! looks every object it runs on up in a kube [`Store`] of its kind and hands the reconcile what
//! it found. For the kinds with tens of thousands of objects (projects, memberships,
//! namespaces), whole objects in a `Store` were most of the operator's memory; so the
//! controller runs on a [`Handle`] per object (its name and namespace, kept in a `Store` of the
//! controller's own), and the reconcile reads the object itself from the [`Compact`] cache
//! ([`current`]).

use std::sync::Arc;

use futures::StreamExt;
use kube::Resource;
use kube::api::ObjectMeta;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher::Event;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Changes;
use crate::watch::Compact;

/// What a controller keeps of one of its objects: name and namespace.
pub type Handle<K> = PartialObjectMeta<K>;

/// The handle of `obj`.
pub fn handle_of<K: Resource>(obj: &K) -> Handle<K> {
    let meta = obj.meta();
    PartialObjectMeta {
        types: None,
        metadata: ObjectMeta {
            name: meta.name.clone(),
            namespace: meta.namespace.clone(),
            ..Default::default()
        },
        _phantom: std::marker::PhantomData,
    }
}

/// The reference to the handle of the object at `r`.
pub fn handle_ref<K: Resource<DynamicType = ()>>(r: &ObjectRef<K>) -> ObjectRef<Handle<K>> {
    let at = ObjectRef::new(&r.name);
    match &r.namespace {
        Some(ns) => at.within(ns),
        None => at,
    }
}

/// The handles of the objects `changes` tells of that `keep` accepts, and the store of them a
/// controller is built on: each change is written to the store before it passes (present if
/// the cache still holds the object and `keep` accepts it, gone otherwise), so the store holds
/// a handle for every object of `cache` that `keep` accepts and that the stream has told of.
/// The store only changes as the stream is polled, as kube's own reflector streams do.
pub fn handles<K>(
    changes: Changes<K>,
    cache: Compact<K>,
    keep: fn(&K) -> bool,
) -> (Changes<Handle<K>>, Store<Handle<K>>)
where
    K: Resource<DynamicType = ()> + Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
{
    let (store, mut writer) = reflector::store::<Handle<K>>();
    // Nothing to list: handles come with the changes (the first of which are the cache's list).
    writer.apply_watcher_event(&Event::Init);
    writer.apply_watcher_event(&Event::InitDone);
    let stream = changes
        .filter_map(move |obj| {
            let handle = handle_of(obj.as_ref());
            let kept = keep(&obj);
            if kept && cache.contains(&ObjectRef::from_obj(obj.as_ref())) {
                writer.apply_watcher_event(&Event::Apply(handle.clone()));
            } else {
                writer.apply_watcher_event(&Event::Delete(handle.clone()));
            }
            futures::future::ready(kept.then(|| Arc::new(handle)))
        })
        .boxed();
    (stream, store)
}

/// The object a controller's handle stands for, as the cache holds it now (`None`: gone).
pub fn current<K>(cache: &Compact<K>, handle: &Handle<K>) -> Option<Arc<K>>
where
    K: Resource<DynamicType = ()> + Serialize + DeserializeOwned + 'static,
{
    let meta = &handle.metadata;
    let at = ObjectRef::new(meta.name.as_deref().unwrap_or_default());
    cache.get(&match &meta.namespace {
        Some(ns) => at.within(ns),
        None => at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Namespace;
    use kube::ResourceExt;
    use kube::runtime::watcher;

    fn namespace(name: &str, archived: bool) -> Namespace {
        let mut n = Namespace::default();
        n.metadata.name = Some(name.into());
        if archived {
            n.metadata.labels = Some([("archived".to_string(), "yes".to_string())].into());
        }
        n
    }

    fn archived(n: &Namespace) -> bool {
        n.labels().contains_key("archived")
    }

    fn names(store: &Store<Handle<Namespace>>) -> Vec<String> {
        let mut v: Vec<String> = store.state().iter().map(|h| h.name_any()).collect();
        v.sort();
        v
    }

    /// The store follows the stream: an object the cache holds and `keep` accepts has a
    /// handle; one deleted, or no longer accepted, has none. A deletion is passed on (the
    /// controller finds no handle, as it found no object before); one no longer accepted is
    /// not. The reconcile reads the object as the cache holds it now.
    #[test]
    fn the_store_holds_a_handle_for_each_kept_object_the_cache_holds() {
        let (cache, mut writer) = Compact::<Namespace>::new();
        let (tx, rx) = futures::channel::mpsc::unbounded::<Arc<Namespace>>();
        let (stream, store) = handles(rx.boxed(), cache.clone(), archived);
        let mut stream = futures::executor::block_on_stream(stream);
        let mut event = |ev: watcher::Event<Namespace>| {
            for told in writer.apply(ev) {
                tx.unbounded_send(told).unwrap();
            }
        };

        event(watcher::Event::Apply(namespace("a", true)));
        event(watcher::Event::Apply(namespace("b", false)));
        assert_eq!(stream.next().map(|h| h.name_any()).as_deref(), Some("a"));
        assert_eq!(names(&store), vec!["a"]);

        event(watcher::Event::Apply(namespace("b", true)));
        assert_eq!(stream.next().map(|h| h.name_any()).as_deref(), Some("b"));
        assert_eq!(names(&store), vec!["a", "b"]);
        let b = store.get(&ObjectRef::new("b")).unwrap();
        assert!(current(&cache, &b).is_some_and(|n| archived(&n)));

        // a recovered (no longer accepted: not passed on), b deleted (passed on): both go.
        event(watcher::Event::Apply(namespace("a", false)));
        event(watcher::Event::Delete(namespace("b", true)));
        event(watcher::Event::Apply(namespace("c", true)));
        assert_eq!(stream.next().map(|h| h.name_any()).as_deref(), Some("b"));
        assert_eq!(stream.next().map(|h| h.name_any()).as_deref(), Some("c"));
        assert_eq!(names(&store), vec!["c"]);
        assert!(current(&cache, &b).is_none(), "b is gone from the cache");
        assert!(
            current(&cache, &handle_of(&namespace("a", false))).is_some(),
            "a is in the cache, only not the controller's"
        );
    }
}
