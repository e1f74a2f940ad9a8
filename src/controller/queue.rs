//! The work queue's depth. kube's controller keeps its queue to itself, so every trigger a
//! controller is built from passes through a [`Queue`], which records the objects it asks for;
//! a reconcile that starts ([`super::Context::begin`], which records how long it waited in
//! `tenancy_reconcile_queue_wait_seconds`) or an object found gone takes them out.
//! What is left is `tenancy_reconcile_queue_depth{controller}`: objects asked for and not started.
//! [`spec_changes`] keeps status-only updates of another kind from asking for anything.

use std::any::TypeId;
use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use kube::Resource;
use kube::runtime::reflector::{ObjectRef, Store};

use super::Changes;
use crate::metrics::Metrics;

/// How the queue names an object: `namespace/name` (`/name` if cluster-scoped).
pub fn queue_key(namespace: Option<&str>, name: &str) -> String {
    format!("{}/{name}", namespace.unwrap_or_default())
}

fn key_of<K: Resource<DynamicType = ()>>(r: &ObjectRef<K>) -> String {
    queue_key(r.namespace.as_deref(), &r.name)
}

/// Whether objects of `K` live in namespaces.
fn namespaced<K: Resource>() -> bool
where
    K::Scope: 'static,
{
    TypeId::of::<K::Scope>() == TypeId::of::<k8s_openapi::NamespaceResourceScope>()
}

/// The triggers of one controller of `K`s.
pub struct Queue<K> {
    metrics: Arc<Metrics>,
    controller: &'static str,
    kind: PhantomData<fn() -> K>,
}

impl<K> Clone for Queue<K> {
    fn clone(&self) -> Self {
        Queue {
            metrics: self.metrics.clone(),
            controller: self.controller,
            kind: PhantomData,
        }
    }
}

impl<K> Queue<K>
where
    K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
    K::Scope: 'static,
{
    pub fn new(metrics: Arc<Metrics>, controller: &'static str) -> Self {
        metrics.declare_queue(controller);
        Queue {
            metrics,
            controller,
            kind: PhantomData,
        }
    }

    fn add(&self, r: &ObjectRef<K>) {
        self.metrics.enqueue(self.controller, key_of(r));
    }

    /// The controller's own objects as they change.
    pub fn own(&self, changes: Changes<K>) -> Changes<K> {
        let queue = self.clone();
        changes
            .inspect(move |k| queue.add(&ObjectRef::from_obj(k.as_ref())))
            .boxed()
    }

    /// The objects a change of another kind asks for.
    pub fn mapped<X, I, F>(
        &self,
        mapper: F,
    ) -> impl Fn(Arc<X>) -> Vec<ObjectRef<K>> + use<X, I, F, K>
    where
        F: Fn(Arc<X>) -> I + Send + Sync + 'static,
        I: IntoIterator<Item = ObjectRef<K>>,
    {
        let queue = self.clone();
        move |x| {
            let refs: Vec<ObjectRef<K>> = mapper(x).into_iter().collect();
            refs.iter().for_each(|r| queue.add(r));
            refs
        }
    }

    /// The owners (of kind `K`) of a changed child, as its owner references name them.
    pub fn owners<X: Resource>(&self) -> impl Fn(Arc<X>) -> Vec<ObjectRef<K>> + use<X, K> {
        let (kind, api_version) = (K::kind(&()).into_owned(), K::api_version(&()).into_owned());
        let within = namespaced::<K>();
        self.mapped(move |child: Arc<X>| {
            let namespace = child.meta().namespace.clone().filter(|_| within);
            child
                .meta()
                .owner_references
                .iter()
                .flatten()
                .filter(|o| o.kind == kind && o.api_version == api_version)
                .map(|o| {
                    let r = ObjectRef::new(&o.name);
                    match &namespace {
                        Some(ns) => r.within(ns),
                        None => r,
                    }
                })
                .collect::<Vec<_>>()
        })
    }

    /// Named objects (e.g. the project of a namespace whose contents changed).
    pub fn refs<S>(&self, refs: S) -> impl Stream<Item = ObjectRef<K>> + use<S, K>
    where
        S: Stream<Item = ObjectRef<K>>,
    {
        let queue = self.clone();
        refs.inspect(move |r| queue.add(r))
    }

    /// Every object of the cache, each time `signal` fires (when this replica becomes leader).
    pub fn all_on<S>(&self, store: Store<K>, signal: S) -> impl Stream<Item = ()> + use<S, K>
    where
        S: Stream<Item = ()>,
    {
        let queue = self.clone();
        signal.inspect(move |()| {
            for k in store.state() {
                queue.add(&ObjectRef::from_obj(k.as_ref()));
            }
        })
    }

    /// The object of a trigger turned out to be gone: it no longer waits.
    pub fn gone(&self, namespace: Option<&str>, name: &str) {
        self.metrics
            .dequeue(self.controller, &queue_key(namespace, name), false);
    }
}

/// Only the changes of `K` that matter to a controller that reads its spec and whether it
/// exists: a new object, a new generation (the spec changed), deletion started, deletion done.
/// Status-only updates (a Customer's aggregates, a Project's counts) are dropped, so they do
/// not re-run every project of the customer or every membership of the project.
pub fn spec_changes<K, S>(changes: Changes<K>, store: S) -> Changes<K>
where
    K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
    S: crate::watch::Lookup<K> + Send + 'static,
{
    let mut seen: HashMap<String, (Option<i64>, bool)> = HashMap::new();
    changes
        .filter(move |k| {
            let meta = k.meta();
            let uid = meta.uid.clone().unwrap_or_default();
            // Deleted objects come after the cache has dropped them.
            let pass = if !store.holds(&ObjectRef::from_obj(k.as_ref())) {
                seen.remove(&uid);
                true
            } else {
                let now = (meta.generation, meta.deletion_timestamp.is_some());
                seen.insert(uid, now) != Some(now)
            };
            futures::future::ready(pass)
        })
        .boxed()
}

/// Only the changes of a Customer that flip its `condition` (e.g. `CreditExhausted`), for
/// controllers that act on it; a first sighting passes when the condition is True.
pub fn condition_flips(
    changes: Changes<crate::api::Customer>,
    condition: &'static str,
) -> Changes<crate::api::Customer> {
    let mut seen: HashMap<String, bool> = HashMap::new();
    changes
        .filter(move |c| {
            let now = c
                .status
                .as_ref()
                .is_some_and(|s| crate::desired::conditions::is_true(&s.conditions, condition));
            let uid = c.metadata.uid.clone().unwrap_or_default();
            let before = seen.insert(uid, now);
            futures::future::ready(before.unwrap_or(false) != now)
        })
        .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{Project, ProjectMembership};
    use k8s_openapi::api::rbac::v1::RoleBinding;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

    fn owned_by(kind: &str, api_version: &str, name: &str) -> Arc<RoleBinding> {
        Arc::new(RoleBinding {
            metadata: ObjectMeta {
                name: Some("rb".into()),
                namespace: Some("alpha".into()),
                owner_references: Some(vec![OwnerReference {
                    kind: kind.into(),
                    api_version: api_version.into(),
                    name: name.into(),
                    uid: "u".into(),
                    ..Default::default()
                }]),
                ..Default::default()
            },
            ..Default::default()
        })
    }

    #[test]
    fn owners_are_named_in_their_own_scope_and_wait_until_started() {
        let metrics = Arc::new(Metrics::default());
        let projects = Queue::<Project>::new(metrics.clone(), "project");
        let memberships = Queue::<ProjectMembership>::new(metrics.clone(), "membership");
        let child = owned_by("Project", "tenancy.dev/v1alpha1", "alpha");

        // A cluster-scoped owner of a namespaced child has no namespace.
        let refs = projects.owners::<RoleBinding>()(child.clone());
        assert_eq!(refs, vec![ObjectRef::<Project>::new("alpha")]);
        // Not this controller's kind: nothing asked for.
        assert!(memberships.owners::<RoleBinding>()(child).is_empty());
        let refs = memberships.owners::<RoleBinding>()(owned_by(
            "ProjectMembership",
            "tenancy.dev/v1alpha1",
            "ann",
        ));
        assert_eq!(
            refs,
            vec![ObjectRef::<ProjectMembership>::new("ann").within("alpha")]
        );
        // Other versions of the kind are someone else's.
        assert!(
            projects.owners::<RoleBinding>()(owned_by("Project", "tenancy.dev/v1", "alpha"))
                .is_empty()
        );

        // Asked twice before starting: one waits.
        let _ =
            projects.owners::<RoleBinding>()(owned_by("Project", "tenancy.dev/v1alpha1", "alpha"));
        assert_eq!(metrics.queue_depth("project"), 1);
        assert_eq!(metrics.queue_depth("membership"), 1);
        metrics.dequeue("project", &queue_key(None, "alpha"), true);
        assert_eq!(metrics.queue_depth("project"), 0);
        memberships.gone(Some("alpha"), "ann");
        assert_eq!(metrics.queue_depth("membership"), 0);
        let text = metrics.encode();
        assert!(text.contains("tenancy_reconcile_queue_depth{controller=\"project\"} 0"));
        // A started reconcile records its wait; a gone object does not.
        assert!(
            text.contains("tenancy_reconcile_queue_wait_seconds_count{controller=\"project\"} 1")
        );
        assert!(
            !text.contains("tenancy_reconcile_queue_wait_seconds_count{controller=\"membership\"}")
        );
    }
}

#[cfg(test)]
mod spec_change_tests {
    use super::*;
    use crate::api::{Customer, CustomerSpec};
    use kube::runtime::reflector;
    use kube::runtime::watcher::Event;

    fn customer(generation: i64, deleting: bool, status_projects: i32) -> Customer {
        let mut c = Customer::new("acme", CustomerSpec::default());
        c.metadata.uid = Some("u1".into());
        c.metadata.generation = Some(generation);
        if deleting {
            c.metadata.deletion_timestamp = Some(
                k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::UNIX_EPOCH),
            );
        }
        c.status = Some(
            serde_json::from_value(
                serde_json::json!({"projects": {"active": status_projects, "terminated": 0}}),
            )
            .unwrap(),
        );
        c
    }

    #[test]
    fn only_new_objects_new_generations_and_deletions_pass() {
        use futures::FutureExt;
        let (store, mut writer) = reflector::store::<Customer>();
        let (tx, rx) = futures::channel::mpsc::unbounded::<Arc<Customer>>();
        let mut passed = spec_changes(rx.boxed(), store);
        // Each change as the shared cache hands it out: the cache first, then the subscriber.
        let mut passes = |c: Customer, in_cache: bool| {
            let event = if in_cache {
                Event::Apply(c.clone())
            } else {
                Event::Delete(c.clone())
            };
            writer.apply_watcher_event(&event);
            tx.unbounded_send(Arc::new(c)).unwrap();
            passed.next().now_or_never().is_some()
        };
        assert!(passes(customer(1, false, 0), true), "a new object");
        assert!(!passes(customer(1, false, 1), true), "status only");
        assert!(!passes(customer(1, false, 2), true), "status only");
        assert!(passes(customer(2, false, 2), true), "the spec changed");
        assert!(passes(customer(3, true, 2), true), "deletion started");
        assert!(!passes(customer(3, true, 0), true), "status only");
        assert!(passes(customer(3, true, 0), false), "gone from the cache");
        assert!(passes(customer(1, false, 0), true), "made again");
    }
}
