//! The operator's view of the cluster: one watch cache per kind it reads, shared by the
//! controllers and the webhook (one table of them, [`watched!`]), what each namespace holds
//! ([`inventory`]), and the guard that keeps an object the operator cannot read from stopping a
//! watch ([`guard`]).

pub mod compact;
pub mod guard;
pub mod inventory;

pub use compact::Compact;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::core::v1::{ConfigMap, LimitRange, Namespace, ResourceQuota};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::api::Api;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use crate::api::{Checklist, Customer, Project, ProjectMembership, ProjectUsage};
use crate::desired::labels;
use crate::metrics::Metrics;

/// What a controller is triggered by: the objects of a shared cache as they change, deleted ones
/// included.
pub type Changes<K> = futures::stream::BoxStream<'static, Arc<K>>;

/// Every object of a kind in the cluster.
fn all<K: Resource<DynamicType = ()>>(
    client: &Client,
    _: &str,
) -> (Api<guard::Guarded<K>>, watcher::Config) {
    (Api::all(client.clone()), watcher::Config::default())
}

/// Only what the operator made (label `app.kubernetes.io/managed-by=tenancy-operator`).
fn managed<K: Resource<DynamicType = ()>>(
    client: &Client,
    _: &str,
) -> (Api<guard::Guarded<K>>, watcher::Config) {
    (
        Api::all(client.clone()),
        watcher::Config::default().labels(labels::MANAGED_SELECTOR),
    )
}

/// The quota ledgers, in the operator's namespace only.
fn ledgers<K>(client: &Client, namespace: &str) -> (Api<guard::Guarded<K>>, watcher::Config)
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
{
    (
        Api::namespaced(client.clone(), namespace),
        watcher::Config::default().labels("tenancy.dev/part=ledger"),
    )
}

/// Told about an object that cannot be read: its reference, its kind, what does not fit.
pub type UnreadableReport = Arc<dyn Fn(ObjectReference, String, guard::Unreadable) + Send + Sync>;

/// The one table of watched kinds: each line is a cache field, its type, the name it is reported
/// under while it syncs, and which objects it holds. It makes [`Caches`] (the stores every reader
/// uses), [`Watches`] (the shared watches, subscribed to before they start), their start and the
/// readiness wait.
macro_rules! watched {
    ($( $field:ident : $ty:ty = $name:literal, $scope:ident, $keep:ident; )*) => {
        /// The watch caches every controller and the webhook read from.
        #[derive(Clone)]
        pub struct Caches {
            $( pub $field: $keep<$ty>, )*
            /// Names by namespace of the kinds read one namespace at a time.
            pub by_namespace: Indexes,
        }

        /// The shared watches feeding [`Caches`].
        pub struct Watches {
            $( pub $field: Shared<$ty, $keep<$ty>>, )*
            by_namespace: Indexes,
        }

        impl Watches {
            pub fn new() -> Self {
                Watches { $( $field: Shared::new(), )* by_namespace: Indexes::default() }
            }

            pub fn caches(&self) -> Caches {
                Caches {
                    $( $field: self.$field.store.clone(), )*
                    by_namespace: self.by_namespace.clone(),
                }
            }

            /// Starts every watch (take subscriptions before). `namespace` is the operator's.
            pub fn start(
                &mut self,
                client: &Client,
                namespace: &str,
                metrics: &Arc<Metrics>,
                report: UnreadableReport,
            ) {
                $( {
                    let (api, cfg) = $scope::<$ty>(client, namespace);
                    let index = self.by_namespace.of::<$ty>();
                    self.$field.start($name, api, cfg, metrics.clone(), report.clone(), index);
                } )*
            }
        }

        impl Caches {
            /// Each cache, named, with a future that ends once it has listed.
            pub fn listed(&self) -> Vec<(&'static str, futures::future::BoxFuture<'static, ()>)> {
                vec![ $( ($name, Keeping::<$ty>::until_listed(&self.$field)), )* ]
            }
        }
    };
}

// The last column says how a cache keeps its objects: whole in kube's [`Store`] (the kinds with
// few objects, read in bulk: customers, checklists, usage records), or as compressed JSON in a
// [`Compact`] cache (the kinds with tens of thousands: projects, memberships, namespaces and the
// operator's children, read a few at a time by name; a twentieth of the memory or less). The
// controllers of compact kinds run on handles (`controller::handle`).
watched! {
    projects: Project = "projects", all, Compact;
    customers: Customer = "customers", all, Store;
    checklists: Checklist = "checklists", all, Store;
    usages: ProjectUsage = "projectusages", all, Store;
    memberships: ProjectMembership = "projectmemberships", all, Compact;
    namespaces: Namespace = "namespaces", all, Compact;
    role_bindings: RoleBinding = "rolebindings", managed, Compact;
    roles: Role = "roles", managed, Compact;
    quotas: ResourceQuota = "resourcequotas", managed, Compact;
    limit_ranges: LimitRange = "limitranges", managed, Compact;
    cluster_roles: ClusterRole = "clusterroles", managed, Compact;
    cluster_role_bindings: ClusterRoleBinding = "clusterrolebindings", managed, Compact;
    ledgers: ConfigMap = "configmaps (quota ledgers)", ledgers, Compact;
}

/// Ends once the store has listed. A store's own wait wakes only the last of several tasks
/// waiting on it at once (its readiness is a oneshot channel holding one waker), so each wait is
/// retried every 250 ms.
async fn listed<K: Resource<DynamicType = ()> + Clone + 'static>(store: &Store<K>) {
    while tokio::time::timeout(Duration::from_millis(250), store.wait_until_ready())
        .await
        .is_err()
    {}
}

/// What every cache answers, however it keeps its objects.
pub trait Lookup<K: Resource<DynamicType = ()>> {
    /// The object at `at`, as last watched.
    fn lookup(&self, at: &ObjectRef<K>) -> Option<Arc<K>>;
    /// Whether there is an object at `at`.
    fn holds(&self, at: &ObjectRef<K>) -> bool {
        self.lookup(at).is_some()
    }
}

impl<K: Resource<DynamicType = ()> + Clone + 'static> Lookup<K> for Store<K> {
    fn lookup(&self, at: &ObjectRef<K>) -> Option<Arc<K>> {
        self.get(at)
    }
}

impl<K> Lookup<K> for Compact<K>
where
    K: Resource<DynamicType = ()> + serde::Serialize + DeserializeOwned + 'static,
{
    fn lookup(&self, at: &ObjectRef<K>) -> Option<Arc<K>> {
        self.get(at)
    }
    fn holds(&self, at: &ObjectRef<K>) -> bool {
        self.contains(at)
    }
}

/// How a cache keeps its objects (the last column of [`watched!`]): made with its writer, fed
/// watch events, readable once listed.
pub trait Keeping<K: Resource<DynamicType = ()>>:
    Lookup<K> + Clone + Send + Sync + 'static
{
    type Writer: Send + 'static;
    fn create() -> (Self, Self::Writer);
    /// Applies one event and gives what the subscribers are to hear of (see [`apply_event`]).
    fn apply(
        writer: &mut Self::Writer,
        cache: &Self,
        ev: watcher::Event<K>,
    ) -> Box<dyn Iterator<Item = Arc<K>> + Send>;
    /// Ends once the first list is in.
    fn until_listed(&self) -> futures::future::BoxFuture<'static, ()>;
}

impl<K> Keeping<K> for Store<K>
where
    K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
{
    type Writer = reflector::store::Writer<K>;

    fn create() -> (Self, Self::Writer) {
        let (store, writer) = reflector::store();
        (store, writer)
    }

    fn apply(
        writer: &mut Self::Writer,
        cache: &Self,
        ev: watcher::Event<K>,
    ) -> Box<dyn Iterator<Item = Arc<K>> + Send> {
        Box::new(apply_event(writer, cache, ev).into_iter())
    }

    fn until_listed(&self) -> futures::future::BoxFuture<'static, ()> {
        let store = self.clone();
        Box::pin(async move { listed(&store).await })
    }
}

impl<K> Keeping<K> for Compact<K>
where
    K: Resource<DynamicType = ()> + serde::Serialize + DeserializeOwned + Send + Sync + 'static,
{
    type Writer = compact::CompactWriter<K>;

    fn create() -> (Self, Self::Writer) {
        Compact::new()
    }

    fn apply(
        writer: &mut Self::Writer,
        _: &Self,
        ev: watcher::Event<K>,
    ) -> Box<dyn Iterator<Item = Arc<K>> + Send> {
        writer.apply(ev)
    }

    fn until_listed(&self) -> futures::future::BoxFuture<'static, ()> {
        let cache = self.clone();
        Box::pin(async move { cache.until_listed().await })
    }
}

impl Default for Watches {
    fn default() -> Self {
        Self::new()
    }
}

/// How many months back a project's latest usage record is looked for (10 years).
const USAGE_LOOKBACK_MONTHS: usize = 120;

impl Caches {
    /// A project's latest usage record: the month of `now`, else the one before, and so on
    /// (one cache lookup per month, at most ten years back).
    pub fn latest_usage(&self, project: &str, now: jiff::Timestamp) -> Option<Arc<ProjectUsage>> {
        let mut month = crate::desired::usage::Month::of(now);
        for _ in 0..USAGE_LOOKBACK_MONTHS {
            let name = crate::desired::usage::record_name(project, month);
            if let Some(r) = self.usages.get(&ObjectRef::new(&name)) {
                return Some(r);
            }
            month = month.previous();
        }
        None
    }

    /// Whether a namespace is a project's, or named like one: a Project of that name exists, or
    /// the namespace was made by the operator for a project (the ServiceAccount rule).
    pub fn is_project_namespace(&self, namespace: &str) -> bool {
        self.projects.contains(&ObjectRef::new(namespace))
            || self
                .namespaces
                .get(&ObjectRef::new(namespace))
                .is_some_and(|n| crate::desired::namespace::namespace_belongs_to(&n, namespace))
    }
}

/// The names of one kind's objects by namespace (or by another key of theirs, see
/// [`ByNamespace::keyed`]), kept by its watch, so that what one namespace or customer holds is
/// read without going through every object of the kind (a project's memberships and
/// RoleBindings, a customer's projects and namespaces: a scan of all of them cost every
/// reconcile and admission a pass over tens of thousands of objects at 10,000 projects).
#[derive(Clone, Default)]
pub struct ByNamespace {
    names: Arc<std::sync::RwLock<Grouped>>,
    /// The key objects are grouped by, if not their namespace (cluster-scoped objects).
    key: Option<fn(&dyn std::any::Any) -> Option<String>>,
}

#[derive(Default)]
struct Groups {
    /// The names under each key, sorted. A sorted list rather than a `BTreeSet`: most keys hold
    /// a few names, and a B-tree's node has room for 11 (~280 bytes) however few it holds.
    live: std::collections::HashMap<Box<str>, Vec<Box<str>>>,
    /// Where each name is filed (keyed indexes only: an object's key can change).
    at: std::collections::HashMap<String, String>,
}

impl Groups {
    fn file(&mut self, key: String, name: String, keyed: bool) {
        if keyed {
            match self.at.get(&name) {
                Some(old) if *old == key => return,
                Some(old) => {
                    let old = old.clone();
                    self.unfile(&old, &name);
                }
                None => {}
            }
            self.at.insert(name.clone(), key.clone());
        }
        let names = self.live.entry(key.into_boxed_str()).or_default();
        if let Err(at) = names.binary_search_by(|n| n.as_ref().cmp(name.as_str())) {
            names.insert(at, name.into_boxed_str());
        }
    }

    fn unfile(&mut self, key: &str, name: &str) {
        if let Some(names) = self.live.get_mut(key) {
            if let Ok(at) = names.binary_search_by(|n| n.as_ref().cmp(name)) {
                names.remove(at);
            }
            if names.is_empty() {
                self.live.remove(key);
            }
        }
    }
}

#[derive(Default)]
struct Grouped {
    now: Groups,
    /// A relist in progress: what it has listed so far (replaces `now` once complete, as the
    /// cache's own contents are).
    relisting: Option<Groups>,
}

impl ByNamespace {
    /// An index of cluster-scoped objects by `key` (an object without one is not filed).
    pub fn keyed(key: fn(&dyn std::any::Any) -> Option<String>) -> Self {
        ByNamespace {
            names: Default::default(),
            key: Some(key),
        }
    }

    /// Follows one event of the watch.
    fn observe<K: Resource + 'static>(&self, ev: &watcher::Event<K>) {
        let keyed = self.key.is_some();
        let group = |o: &K| match self.key {
            Some(key) => key(o as &dyn std::any::Any),
            None => o.meta().namespace.clone(),
        };
        let name = |o: &K| o.meta().name.clone();
        let mut names = self.names.write().expect("namespace index lock");
        match ev {
            watcher::Event::Apply(o) => match (group(o), name(o)) {
                (Some(key), Some(name)) => names.now.file(key, name, keyed),
                // Its key is gone: no longer filed anywhere.
                (None, Some(name)) if keyed => {
                    if let Some(old) = names.now.at.remove(&name) {
                        names.now.unfile(&old, &name);
                    }
                }
                _ => {}
            },
            watcher::Event::Delete(o) => {
                let Some(name) = name(o) else { return };
                let key = if keyed {
                    names.now.at.remove(&name)
                } else {
                    group(o)
                };
                if let Some(key) = key {
                    names.now.unfile(&key, &name);
                }
            }
            watcher::Event::Init => names.relisting = Some(Default::default()),
            watcher::Event::InitApply(o) => {
                if let (Some(key), Some(name), Some(listing)) =
                    (group(o), name(o), names.relisting.as_mut())
                {
                    listing.file(key, name, keyed);
                }
            }
            watcher::Event::InitDone => {
                if let Some(listed) = names.relisting.take() {
                    names.now = listed;
                }
            }
        }
    }

    /// The names of the objects in `namespace` (or under that key).
    pub fn names(&self, namespace: &str) -> Vec<String> {
        let names = self.names.read().expect("namespace index lock");
        names
            .now
            .live
            .get(namespace)
            .map(|names| names.iter().map(|n| n.to_string()).collect())
            .unwrap_or_default()
    }

    /// The objects of `store` in `namespace` (or under that key).
    pub fn objects<K>(&self, store: &impl Lookup<K>, namespace: &str) -> Vec<Arc<K>>
    where
        K: Resource<DynamicType = ()> + Clone + 'static,
    {
        self.names(namespace)
            .iter()
            .filter_map(|name| {
                let at = ObjectRef::new(name);
                store.lookup(&if self.key.is_some() {
                    at
                } else {
                    at.within(namespace)
                })
            })
            .collect()
    }
}

/// The kinds indexed by namespace, and by customer.
#[derive(Clone)]
pub struct Indexes {
    pub memberships: ByNamespace,
    pub role_bindings: ByNamespace,
    /// Projects by `spec.customer`.
    pub projects: ByNamespace,
    /// Namespaces by their `tenancy.dev/customer` label (a customer's projects' and archives').
    pub namespaces: ByNamespace,
}

impl Default for Indexes {
    fn default() -> Self {
        Indexes {
            memberships: ByNamespace::default(),
            role_bindings: ByNamespace::default(),
            projects: ByNamespace::keyed(|o| {
                o.downcast_ref::<Project>().map(|p| p.spec.customer.clone())
            }),
            namespaces: ByNamespace::keyed(|o| {
                o.downcast_ref::<Namespace>()
                    .and_then(|n| n.labels().get(labels::CUSTOMER).cloned())
            }),
        }
    }
}

impl Indexes {
    /// The index a watch of `K` keeps, if `K` is indexed.
    fn of<K: 'static>(&self) -> Option<ByNamespace> {
        let kind = std::any::TypeId::of::<K>();
        if kind == std::any::TypeId::of::<ProjectMembership>() {
            Some(self.memberships.clone())
        } else if kind == std::any::TypeId::of::<RoleBinding>() {
            Some(self.role_bindings.clone())
        } else if kind == std::any::TypeId::of::<Project>() {
            Some(self.projects.clone())
        } else if kind == std::any::TypeId::of::<Namespace>() {
            Some(self.namespaces.clone())
        } else {
            None
        }
    }
}

impl Caches {
    /// The memberships in `namespace` (a project's).
    pub fn memberships_in(&self, namespace: &str) -> Vec<Arc<ProjectMembership>> {
        self.by_namespace
            .memberships
            .objects(&self.memberships, namespace)
    }

    /// The operator's RoleBindings in `namespace`.
    pub fn role_bindings_in(&self, namespace: &str) -> Vec<Arc<RoleBinding>> {
        self.by_namespace
            .role_bindings
            .objects(&self.role_bindings, namespace)
    }

    /// The projects whose `spec.customer` is `customer`.
    pub fn projects_of(&self, customer: &str) -> Vec<Arc<Project>> {
        let mut found = self.by_namespace.projects.objects(&self.projects, customer);
        // The index runs ahead of the cache: a project moved this instant is the cache's yet.
        found.retain(|p| p.spec.customer == customer);
        found
    }

    /// The namespaces labelled as `customer`'s (`tenancy.dev/customer`).
    pub fn namespaces_of(&self, customer: &str) -> Vec<Arc<Namespace>> {
        let mut found = self
            .by_namespace
            .namespaces
            .objects(&self.namespaces, customer);
        found.retain(|n| n.labels().get(labels::CUSTOMER).map(String::as_str) == Some(customer));
        found
    }
}

/// A watch cache shared by several controllers.
pub struct Shared<K: Resource<DynamicType = ()> + Clone + 'static, S: Keeping<K>> {
    store: S,
    writer: Option<S::Writer>,
    /// Whoever asked to hear of changes: each is told every object the watch changed, in
    /// order, deletions and what a relist dropped included.
    subscribers: Vec<futures::channel::mpsc::Sender<Arc<K>>>,
}

/// How many changes a subscriber may fall behind before the watch waits for it.
const SUBSCRIBE_BUFFER: usize = 4096;

/// Applies a watch event to the cache (through `writer`, read back through `store`) and says
/// which objects its subscribers are to hear of: an applied one as the cache now holds it, a
/// deleted one as it last was, and after a (re)list every object listed and every object the
/// cache held before that the list no longer has (dropped without a deletion event while the
/// watch was away).
///
/// kube's own shared store tells subscribers names to look up when they read them, and a
/// subscriber that reads the name of an object deleted meanwhile stops hearing anything until
/// the next deletion of that kind (kube-runtime 5.0's `ReflectHandle` returns `Pending` without
/// a wakeup): the reason the operator dispatches the objects themselves.
fn apply_event<K>(
    writer: &mut reflector::store::Writer<K>,
    store: &Store<K>,
    ev: watcher::Event<K>,
) -> Vec<Arc<K>>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    // What the cache held before a (re)list completes, to tell what the list dropped.
    let before = matches!(ev, watcher::Event::InitDone).then(|| store.state());
    writer.apply_watcher_event(&ev);
    match ev {
        watcher::Event::Apply(obj) => store.get(&ObjectRef::from_obj(&obj)).into_iter().collect(),
        watcher::Event::Delete(obj) => vec![Arc::new(obj)],
        watcher::Event::InitDone => {
            let listed = store.state();
            let kept: std::collections::HashSet<ObjectRef<K>> = listed
                .iter()
                .map(|o| ObjectRef::from_obj(o.as_ref()))
                .collect();
            let dropped = before
                .into_iter()
                .flatten()
                .filter(|o| !kept.contains(&ObjectRef::from_obj(o.as_ref())));
            listed.into_iter().chain(dropped).collect()
        }
        watcher::Event::Init | watcher::Event::InitApply(_) => Vec::new(),
    }
}

impl<K, S> Shared<K, S>
where
    K: Resource<DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
    S: Keeping<K>,
{
    fn new() -> Self {
        let (store, writer) = S::create();
        Shared {
            store,
            writer: Some(writer),
            subscribers: Vec::new(),
        }
    }

    /// Every change of the cache's objects, deletions included (a deleted object comes as it
    /// last was, after the cache has dropped it).
    pub fn subscribe(&mut self) -> Changes<K> {
        assert!(self.writer.is_some(), "subscribe before start");
        let (tx, rx) = futures::channel::mpsc::channel(SUBSCRIBE_BUFFER);
        self.subscribers.push(tx);
        rx.boxed()
    }

    /// Starts the watch feeding this cache. Objects that do not fit `K` never stop it: see
    /// [`guard`]; each is reported once per version to `report`. Its failures and recoveries go
    /// to `/readyz` under `name`.
    fn start(
        &mut self,
        name: &'static str,
        api: Api<guard::Guarded<K>>,
        cfg: watcher::Config,
        metrics: Arc<Metrics>,
        report: UnreadableReport,
        index: Option<ByNamespace>,
    ) {
        let cfg = cfg.any_semantic();
        let writer = self.writer.take().expect("started once");
        let subscribers = std::mem::take(&mut self.subscribers);
        let store = self.store.clone();
        let unreadables = guard::Unreadables::default();
        let metrics_kind = K::kind(&()).into_owned();
        let events = {
            let store = store.clone();
            watcher(api, cfg)
                .backoff(Reported {
                    inner: WatchBackoff::default(),
                    name,
                    metrics: metrics.clone(),
                })
                .filter_map(move |ev| {
                    let ev = match ev {
                        Ok(ev) => {
                            let (ev, finding) = unreadables.pass(&store, ev);
                            metrics.set_unreadable(&metrics_kind, unreadables.count());
                            if let Some(u) = finding {
                                let object = guard::Guarded::<K>(Err(u.clone())).object_ref(&());
                                report(object, metrics_kind.clone(), u);
                            }
                            // The index before the cache: whoever the cache then tells of
                            // a change finds it in both.
                            if let (Some(index), Some(ev)) = (&index, &ev) {
                                index.observe(ev);
                            }
                            ev.map(|ev| Ok(ev.modify(slim)))
                        }
                        Err(e) => Some(Err(e)),
                    };
                    futures::future::ready(ev)
                })
        };
        tokio::spawn(dispatch(events, writer, store, subscribers));
    }
}

/// Feeds `events` into the cache and tells the subscribers (waiting for any that is
/// [`SUBSCRIBE_BUFFER`] behind; one that went away is forgotten).
async fn dispatch<K, C, E>(
    events: E,
    mut writer: C::Writer,
    store: C,
    mut subscribers: Vec<futures::channel::mpsc::Sender<Arc<K>>>,
) where
    K: Resource<DynamicType = ()> + Clone + 'static,
    C: Keeping<K>,
    E: futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>>,
{
    use futures::SinkExt;
    let mut events = std::pin::pin!(events);
    while let Some(ev) = events.next().await {
        let ev = match ev {
            Ok(ev) => ev,
            Err(e) => {
                log_watch_error(&K::kind(&()), &e);
                continue;
            }
        };
        for obj in C::apply(&mut writer, &store, ev) {
            let mut gone = false;
            for tx in &mut subscribers {
                gone |= tx.send(obj.clone()).await.is_err();
            }
            if gone {
                subscribers.retain(|tx| !tx.is_closed());
            }
        }
    }
}

/// How long a failed watch waits before it tries again: 0.8 s, doubling up to 5 s, each with
/// up to half of it again at random (so replicas do not retry in step), starting over once the
/// watch delivers. kube's default goes up to 30 s plus as much again: after an outage of 20 s
/// the operator stayed blind for most of a minute after kube-apiserver was back. 13 watches
/// retrying every few seconds cost a recovering kube-apiserver nothing.
#[derive(Debug, Default)]
pub struct WatchBackoff {
    last: Option<Duration>,
}

const WATCH_RETRY_FIRST: Duration = Duration::from_millis(800);
const WATCH_RETRY_MAX: Duration = Duration::from_secs(5);

impl WatchBackoff {
    /// The next delay before jitter.
    fn step(&mut self) -> Duration {
        let next = self
            .last
            .map_or(WATCH_RETRY_FIRST, |d| (d * 2).min(WATCH_RETRY_MAX));
        self.last = Some(next);
        next
    }
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let base = self.step();
        let share = f64::from(getrandom::u32().unwrap_or(0)) / f64::from(u32::MAX) / 2.0;
        Some(base + base.mul_f64(share))
    }
}

impl kube::runtime::utils::Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.last = None;
    }
}

/// A cache's [`WatchBackoff`] that tells `/readyz` when the watch failed and when it tries
/// again, and that it works once it delivers anything.
struct Reported {
    inner: WatchBackoff,
    name: &'static str,
    metrics: Arc<Metrics>,
}

impl Iterator for Reported {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let delay = self.inner.next();
        if let Some(delay) = delay {
            self.metrics.watch_failed(self.name, delay);
        }
        delay
    }
}

impl kube::runtime::utils::Backoff for Reported {
    fn reset(&mut self) {
        kube::runtime::utils::Backoff::reset(&mut self.inner);
        self.metrics.watch_delivered(self.name);
    }
}

/// How often kube-apiserver's `/readyz` is asked, and how long an answer may take.
const APISERVER_PROBE_EVERY: Duration = Duration::from_secs(2);
const APISERVER_PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// Asks kube-apiserver's `/readyz` (etcd included) every 2 s for as long as the process runs and
/// tells `/readyz` the answer: a watch that is merely quiet says nothing about either.
pub async fn follow_apiserver(client: Client, metrics: Arc<Metrics>) {
    loop {
        let request = http::Request::get("/readyz").body(Vec::new());
        let answer = match request {
            Ok(request) => {
                match tokio::time::timeout(APISERVER_PROBE_TIMEOUT, client.request_text(request))
                    .await
                {
                    Ok(Ok(_)) => Ok(()),
                    // Up, and it knows who asks; a cluster that does not let everyone read its
                    // health (`system:public-info-viewer`) only hides etcd's from us.
                    Ok(Err(kube::Error::Api(s))) if s.code == 401 || s.code == 403 => Ok(()),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err(format!(
                        "no answer within {}s",
                        APISERVER_PROBE_TIMEOUT.as_secs()
                    )),
                }
            }
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = &answer {
            tracing::debug!(error = %e, "kube-apiserver /readyz failed");
        }
        metrics.apiserver_answered(answer);
        tokio::time::sleep(APISERVER_PROBE_EVERY).await;
    }
}

/// The annotation in which `kubectl apply` (and Argo CD, which applies the same way) keeps a
/// whole copy of what it last applied.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// What the caches keep of an object's `managedFields`: only the latest time anyone wrote it
/// (the read API's last-modified time). The entries themselves (who owns which field, often
/// half an object's size) are read by nothing here, and every cached object carried them. Nor
/// is the copy `kubectl apply` keeps in [`LAST_APPLIED`] kept: a second copy of every Project
/// and membership a client-side-applying GitOps tool writes, read by nothing here.
pub fn slim<K: Resource>(object: &mut K) {
    let meta = object.meta_mut();
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove(LAST_APPLIED);
    }
    if let Some(fields) = meta.managed_fields.take() {
        let latest = fields
            .into_iter()
            .filter_map(|f| f.time)
            .max_by_key(|t| t.0);
        meta.managed_fields = latest.map(|time| {
            vec![
                k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry {
                    time: Some(time),
                    ..Default::default()
                },
            ]
        });
    }
}

/// Logs a failed watch (it is retried with backoff). A resource version that expired is
/// routine (etcd compaction, or a cached list older than the watch): the watch lists again.
pub fn log_watch_error(kind: &str, e: &watcher::Error) {
    match e {
        watcher::Error::WatchError(status) if status.code == 410 => {
            tracing::debug!(kind, error = %e, "watch expired; listing again")
        }
        _ => tracing::warn!(kind, error = %e, "watch failed; retrying"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A subscriber that falls behind still hears of an object deleted before it read the
    /// change (kube's own shared store stalled it there), hears of it once more as deleted, and
    /// after a relist hears of what was listed and of what the relist dropped.
    #[tokio::test]
    async fn subscribers_hear_every_change_deletions_and_what_a_relist_dropped() {
        let cm = |name: &str, v: &str| ConfigMap {
            metadata: kube::api::ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                resource_version: Some(v.into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let (store, writer) = reflector::store::<ConfigMap>();
        let (tx, rx) = futures::channel::mpsc::channel(SUBSCRIBE_BUFFER);
        let (events_tx, events) = futures::channel::mpsc::unbounded();
        let dispatched = tokio::spawn(dispatch(events, writer, store.clone(), vec![tx]));
        let mut heard = rx.map(|o: Arc<ConfigMap>| {
            format!(
                "{}@{}",
                o.metadata.name.clone().unwrap(),
                o.metadata.resource_version.clone().unwrap()
            )
        });
        let send = |ev| events_tx.unbounded_send(Ok(ev)).unwrap();
        send(watcher::Event::Init);
        send(watcher::Event::InitApply(cm("a", "1")));
        send(watcher::Event::InitDone);
        // The subscriber reads nothing while b comes and goes and c comes.
        send(watcher::Event::Apply(cm("b", "2")));
        send(watcher::Event::Delete(cm("b", "2")));
        send(watcher::Event::Apply(cm("c", "3")));
        let mut next = Vec::new();
        for _ in 0..4 {
            next.push(heard.next().await.unwrap());
        }
        assert_eq!(next, ["a@1", "b@2", "b@2", "c@3"]);
        assert!(store.get(&ObjectRef::new("b").within("ns")).is_none());
        // The watch is away while a is deleted; it lists again: c changed, a is not there.
        send(watcher::Event::Init);
        send(watcher::Event::InitApply(cm("c", "4")));
        send(watcher::Event::InitDone);
        send(watcher::Event::Apply(cm("d", "5")));
        let mut next = Vec::new();
        for _ in 0..3 {
            next.push(heard.next().await.unwrap());
        }
        assert_eq!(next, ["c@4", "a@1", "d@5"], "listed, dropped, then new");
        assert!(store.get(&ObjectRef::new("a").within("ns")).is_none());
        drop(events_tx);
        dispatched.await.unwrap();
        assert!(
            heard.next().await.is_none(),
            "the watch ended: so do its changes"
        );
    }

    #[test]
    fn the_namespace_index_follows_applies_deletes_and_a_relist() {
        let rb = |ns: &str, name: &str| RoleBinding {
            metadata: kube::api::ObjectMeta {
                name: Some(name.into()),
                namespace: Some(ns.into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let index = ByNamespace::default();
        let apply = |ns, name| index.observe(&watcher::Event::Apply(rb(ns, name)));
        apply("a", "y");
        apply("a", "x");
        apply("b", "x");
        apply("a", "x"); // a change of x: still once
        assert_eq!(index.names("a"), ["x", "y"], "once each, in order of name");
        assert_eq!(index.names("b"), ["x"]);
        index.observe(&watcher::Event::Delete(rb("a", "x")));
        assert_eq!(
            index.names("a"),
            ["y"],
            "a deleted object is gone from its namespace"
        );
        assert!(index.names("c").is_empty());
        // A relist: until it is complete the index answers what it knew; then what was listed.
        index.observe(&watcher::Event::<RoleBinding>::Init);
        index.observe(&watcher::Event::InitApply(rb("a", "z")));
        assert_eq!(
            index.names("a"),
            ["y"],
            "a relist in progress changes nothing yet"
        );
        index.observe(&watcher::Event::<RoleBinding>::InitDone);
        assert_eq!(
            index.names("a"),
            ["z"],
            "after the relist: only what it listed"
        );
        assert!(index.names("b").is_empty(), "b's x was not listed again");
    }

    #[test]
    fn the_customer_index_follows_moves_lost_labels_deletes_and_a_relist() {
        let project = |name: &str, customer: &str| -> Project {
            serde_json::from_value(serde_json::json!({
                "apiVersion": "tenancy.dev/v1alpha1", "kind": "Project",
                "metadata": {"name": name}, "spec": {"customer": customer}}))
            .unwrap()
        };
        let namespace = |name: &str, customer: Option<&str>| Namespace {
            metadata: kube::api::ObjectMeta {
                name: Some(name.into()),
                labels: customer.map(|c| [(labels::CUSTOMER.to_string(), c.to_string())].into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let indexes = Indexes::default();
        let (projects, namespaces) = (&indexes.projects, &indexes.namespaces);
        let apply = |p| projects.observe(&watcher::Event::Apply(p));
        apply(project("web", "acme"));
        apply(project("shop", "acme"));
        apply(project("db", "globex"));
        assert_eq!(projects.names("acme"), ["shop", "web"]);
        apply(project("web", "globex")); // moved
        assert_eq!(projects.names("acme"), ["shop"], "a moved project leaves");
        assert_eq!(projects.names("globex"), ["db", "web"]);
        projects.observe(&watcher::Event::Delete(project("db", "globex")));
        assert_eq!(projects.names("globex"), ["web"]);
        projects.observe(&watcher::Event::<Project>::Init);
        projects.observe(&watcher::Event::InitApply(project("web", "initech")));
        projects.observe(&watcher::Event::<Project>::InitDone);
        assert!(projects.names("acme").is_empty() && projects.names("globex").is_empty());
        assert_eq!(
            projects.names("initech"),
            ["web"],
            "after the relist: what it listed"
        );
        projects.observe(&watcher::Event::Apply(project("web", "acme")));
        assert_eq!(
            projects.names("acme"),
            ["web"],
            "where a relisted one is filed is known"
        );
        assert!(projects.names("initech").is_empty());

        let apply = |n| namespaces.observe(&watcher::Event::Apply(n));
        apply(namespace("web", Some("acme")));
        apply(namespace("other", None));
        assert_eq!(namespaces.names("acme"), ["web"]);
        apply(namespace("web", None)); // its label removed
        assert!(
            namespaces.names("acme").is_empty(),
            "a namespace that lost its label is no customer's"
        );
        apply(namespace("web", Some("acme")));
        namespaces.observe(&watcher::Event::Delete(namespace("web", Some("acme"))));
        assert!(namespaces.names("acme").is_empty());
    }

    #[test]
    fn a_failed_watch_retries_within_seconds_and_starts_over_once_it_delivers() {
        use kube::runtime::utils::Backoff;
        let mut b = WatchBackoff::default();
        let delays: Vec<Duration> = (0..8).map(|_| b.next().unwrap()).collect();
        let bases = [0.8, 1.6, 3.2, 5.0, 5.0, 5.0, 5.0, 5.0];
        for (d, base) in delays.iter().zip(bases) {
            let base = Duration::from_secs_f64(base);
            assert!(*d >= base && *d <= base + base / 2, "{delays:?}");
        }
        b.reset();
        let first = b.next().unwrap();
        assert!(first >= WATCH_RETRY_FIRST && first <= WATCH_RETRY_FIRST * 3 / 2);
    }

    #[test]
    fn cached_objects_keep_only_the_time_they_were_last_written_and_no_applied_copy() {
        let mut p: Project = serde_json::from_value(serde_json::json!({
            "apiVersion": "tenancy.dev/v1alpha1", "kind": "Project",
            "metadata": {"name": "web", "annotations": {
                "kubectl.kubernetes.io/last-applied-configuration": "{\"spec\":{\"customer\":\"acme\"}}",
                "tenancy.dev/note": "kept"}, "managedFields": [
                {"manager": "kubectl", "operation": "Apply", "time": "2027-01-01T00:00:00Z",
                 "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:customer": {}}}},
                {"manager": "tenancy-operator", "operation": "Apply", "time": "2027-01-02T00:00:00Z",
                 "subresource": "status", "fieldsType": "FieldsV1", "fieldsV1": {"f:status": {}}}]},
            "spec": {"customer": "acme"}}))
        .unwrap();
        slim(&mut p);
        let kept = p.metadata.managed_fields.unwrap();
        assert_eq!(kept.len(), 1);
        assert_eq!(
            kept[0].time.as_ref().unwrap().0.to_string(),
            "2027-01-02T00:00:00Z"
        );
        assert!(kept[0].fields_v1.is_none() && kept[0].manager.is_none());
        assert_eq!(
            p.metadata.annotations,
            Some([("tenancy.dev/note".to_string(), "kept".to_string())].into())
        );
        let mut bare: Project = serde_json::from_value(serde_json::json!({
            "apiVersion": "tenancy.dev/v1alpha1", "kind": "Project",
            "metadata": {"name": "web"}, "spec": {"customer": "acme"}}))
        .unwrap();
        slim(&mut bare);
        assert!(bare.metadata.managed_fields.is_none());
    }
}
