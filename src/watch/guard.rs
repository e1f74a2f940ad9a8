//! Watching objects the operator may not be able to read.
//!
//! An object can pass its CRD schema and still not fit this operator's types: a CRD newer than
//! the operator (a role it does not know yet, after an upgrade of the CRDs or a rollback of the
//! operator), or an integer larger than its field. A plain watch fails its whole list or event on
//! one such object, so one bad object would stop every reconcile of its kind. Behind [`Guarded`]
//! the watch goes on: the cache keeps the last version of the object it could read (nothing is
//! revoked or deleted because of a version it cannot understand), and the object is reported in
//! the log, in `tenancy_unreadable_objects{kind}` and as a Warning Event on the object.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Mutex;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher::Event;
use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer};

/// An object as watched: readable as `K`, or not.
#[derive(Clone, Debug)]
pub struct Guarded<K>(pub Result<K, Unreadable>);

/// An object that does not fit the operator's types: its metadata and what did not fit.
#[derive(Clone, Debug)]
pub struct Unreadable {
    pub metadata: ObjectMeta,
    /// The field and the problem, e.g. ``spec.role: unknown variant `Auditor` ...``.
    pub error: String,
}

impl<'de, K: DeserializeOwned + Resource> Deserialize<'de> for Guarded<K> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(deserializer)?;
        match crate::api::read::<K>(&value) {
            Ok(object) => Ok(Guarded(Ok(object))),
            Err(error) => {
                // Without readable metadata there is nothing to keep or report by name.
                let metadata = value
                    .get("metadata")
                    .map(ObjectMeta::deserialize)
                    .transpose()
                    .map_err(|e| D::Error::custom(format!("{error} (metadata: {e})")))?
                    .ok_or_else(|| D::Error::custom(format!("{error} (and no metadata)")))?;
                Ok(Guarded(Err(Unreadable { metadata, error })))
            }
        }
    }
}

impl<K: Resource> Resource for Guarded<K> {
    type DynamicType = K::DynamicType;
    type Scope = K::Scope;

    fn kind(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::kind(dt)
    }
    fn group(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::group(dt)
    }
    fn version(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::version(dt)
    }
    fn plural(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::plural(dt)
    }
    fn meta(&self) -> &ObjectMeta {
        match &self.0 {
            Ok(object) => object.meta(),
            Err(unreadable) => &unreadable.metadata,
        }
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        match &mut self.0 {
            Ok(object) => object.meta_mut(),
            Err(unreadable) => &mut unreadable.metadata,
        }
    }
}

fn key(meta: &ObjectMeta) -> String {
    format!(
        "{}/{}",
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name.as_deref().unwrap_or_default()
    )
}

fn object_ref<K: Resource<DynamicType = ()>>(meta: &ObjectMeta) -> ObjectRef<K> {
    let r = ObjectRef::new(meta.name.as_deref().unwrap_or_default());
    match meta.namespace.as_deref() {
        Some(ns) => r.within(ns),
        None => r,
    }
}

/// The unreadable objects of one watch, by `namespace/name`, with the resourceVersion reported
/// (so that a relist does not report the same version again).
#[derive(Default)]
pub struct Unreadables {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Unreadable objects, with the resourceVersion reported.
    seen: HashMap<String, String>,
    /// During a relist: the unreadable objects listed so far (those not listed are gone).
    relisted: Option<std::collections::HashSet<String>>,
}

impl Unreadables {
    /// How many objects of the watch are unreadable now.
    pub fn count(&self) -> usize {
        self.lock().seen.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("unreadables lock")
    }

    /// Turns a watch event of possibly unreadable objects into one the cache can take, and
    /// says which unreadable object to report:
    /// readable objects pass; an unreadable one is replaced by the last version the cache could
    /// read (or dropped if there is none). Deleting an unreadable object deletes what the cache
    /// holds of it.
    pub fn pass<K>(
        &self,
        store: &impl super::Lookup<K>,
        event: Event<Guarded<K>>,
    ) -> (Option<Event<K>>, Option<Unreadable>)
    where
        K: Resource<DynamicType = ()> + Clone,
    {
        let last = |meta: &ObjectMeta| store.lookup(&object_ref::<K>(meta)).map(|k| (*k).clone());
        match event {
            Event::Init => {
                self.lock().relisted = Some(Default::default());
                (Some(Event::Init), None)
            }
            Event::InitDone => {
                // Unreadable objects deleted while the watch was down are not listed again.
                let mut state = self.lock();
                if let Some(listed) = state.relisted.take() {
                    state.seen.retain(|k, _| listed.contains(k));
                }
                (Some(Event::InitDone), None)
            }
            Event::Apply(Guarded(Ok(k))) => {
                self.forget(k.meta());
                (Some(Event::Apply(k)), None)
            }
            Event::InitApply(Guarded(Ok(k))) => {
                self.forget(k.meta());
                (Some(Event::InitApply(k)), None)
            }
            Event::Delete(Guarded(Ok(k))) => {
                self.forget(k.meta());
                (Some(Event::Delete(k)), None)
            }
            Event::Apply(Guarded(Err(u))) => (None, self.found(u)),
            Event::InitApply(Guarded(Err(u))) => {
                let kept = last(&u.metadata).map(Event::InitApply);
                if let Some(listed) = self.lock().relisted.as_mut() {
                    listed.insert(key(&u.metadata));
                }
                (kept, self.found(u))
            }
            Event::Delete(Guarded(Err(u))) => {
                self.forget(&u.metadata);
                (last(&u.metadata).map(Event::Delete), None)
            }
        }
    }

    fn forget(&self, meta: &ObjectMeta) {
        let mut state = self.lock();
        if !state.seen.is_empty() {
            state.seen.remove(&key(meta));
        }
    }

    /// The unreadable object, unless this version of it was reported already.
    fn found(&self, u: Unreadable) -> Option<Unreadable> {
        let version = u.metadata.resource_version.clone().unwrap_or_default();
        let previous = self.lock().seen.insert(key(&u.metadata), version.clone());
        if previous.as_deref() == Some(version.as_str()) {
            None
        } else {
            Some(u)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ProjectMembership;
    use kube::runtime::reflector;
    use kube::runtime::watcher::Event;
    use serde_json::json;

    fn membership(name: &str, role: &str, version: &str) -> serde_json::Value {
        json!({
            "apiVersion": "tenancy.dev/v1alpha1",
            "kind": "ProjectMembership",
            "metadata": {"name": name, "namespace": "alpha", "resourceVersion": version},
            "spec": {"subject": {"kind": "User", "name": "ann"}, "role": role},
        })
    }

    fn guarded(value: serde_json::Value) -> Guarded<ProjectMembership> {
        serde_json::from_value(value).expect("a guarded object always deserializes")
    }

    #[test]
    fn an_unreadable_object_names_the_field() {
        let g = guarded(membership("m", "Auditor", "1"));
        let u = g.0.expect_err("Auditor is no role");
        assert!(
            u.error.starts_with("spec.role: unknown variant `Auditor`"),
            "{}",
            u.error
        );
        assert_eq!(u.metadata.name.as_deref(), Some("m"));
        assert!(guarded(membership("m", "Member", "1")).0.is_ok());
    }

    #[test]
    fn an_object_without_metadata_fails_the_event() {
        let r = serde_json::from_value::<Guarded<ProjectMembership>>(json!({"spec": {}}));
        assert!(r.is_err());
    }

    #[test]
    fn the_cache_keeps_the_last_readable_version_and_reports_once_per_version() {
        let (store, mut writer) = reflector::store::<ProjectMembership>();
        let u = Unreadables::default();
        let (ev, finding) = u.pass(
            &store,
            Event::Apply(guarded(membership("m", "Member", "1"))),
        );
        assert!(finding.is_none());
        writer.apply_watcher_event(&ev.expect("a readable object passes"));

        // A version the types cannot read: nothing reaches the cache, it is reported once.
        let (ev, finding) = u.pass(
            &store,
            Event::Apply(guarded(membership("m", "Auditor", "2"))),
        );
        assert!(ev.is_none());
        assert!(finding.is_some());
        assert_eq!(u.count(), 1);
        // A relist brings the same version: the cache keeps the readable one, no new report.
        let (ev, finding) = u.pass(
            &store,
            Event::InitApply(guarded(membership("m", "Auditor", "2"))),
        );
        assert!(finding.is_none());
        match ev {
            Some(Event::InitApply(kept)) => {
                assert_eq!(kept.metadata.resource_version.as_deref(), Some("1"))
            }
            other => panic!("expected the last readable version, got {other:?}"),
        }
        // Fixed: readable again, no longer counted.
        let (ev, _) = u.pass(
            &store,
            Event::Apply(guarded(membership("m", "Manager", "3"))),
        );
        writer.apply_watcher_event(&ev.expect("readable again"));
        assert_eq!(u.count(), 0);

        // Deleting an object that is unreadable deletes what the cache holds of it.
        let _ = u.pass(
            &store,
            Event::Apply(guarded(membership("m", "Auditor", "4"))),
        );
        let (ev, _) = u.pass(
            &store,
            Event::Delete(guarded(membership("m", "Auditor", "5"))),
        );
        match ev {
            Some(Event::Delete(kept)) => {
                assert_eq!(kept.metadata.resource_version.as_deref(), Some("3"))
            }
            other => panic!("expected the delete of the cached version, got {other:?}"),
        }
        assert_eq!(u.count(), 0);
        // One never readable is simply left out.
        let (ev, finding) = u.pass(
            &store,
            Event::Apply(guarded(membership("n", "Auditor", "6"))),
        );
        assert!(ev.is_none());
        assert!(finding.is_some());
        assert_eq!(u.count(), 1);
        // Deleted while the watch was down: the relist does not list it, so it is not counted.
        let _ = u.pass(&store, Event::Init);
        let _ = u.pass(
            &store,
            Event::InitApply(guarded(membership("m", "Member", "7"))),
        );
        let _ = u.pass(&store, Event::InitDone);
        assert_eq!(u.count(), 0);
        // One still there when the watch relists stays counted, and is not reported again.
        let _ = u.pass(
            &store,
            Event::Apply(guarded(membership("n", "Auditor", "8"))),
        );
        let _ = u.pass(&store, Event::Init);
        let (_, finding) = u.pass(
            &store,
            Event::InitApply(guarded(membership("n", "Auditor", "8"))),
        );
        let _ = u.pass(&store, Event::InitDone);
        assert!(finding.is_none());
        assert_eq!(u.count(), 1);
    }
}
