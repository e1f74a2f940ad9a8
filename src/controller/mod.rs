//! The reconcilers and the process that runs them: shared watch caches feed three controllers
//! (Project, ProjectMembership, Customer); each reconcile reads caches, computes the desired
//! children with `crate::desired`, applies only the difference and writes status.

pub mod apply;
pub mod archive;
pub mod backoff;
pub mod conditions;
pub mod customer;
pub mod expiry;
pub mod guard;
pub mod inventory;
pub mod membership;
pub mod metrics;
pub mod project;
pub mod queue;
pub mod termination;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{LimitRange, Namespace, ResourceQuota};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;

use crate::api::{Customer, Project, ProjectMembership};
use crate::desired::{self, RoleNames, labels};
use crate::lifecycle::Clock;

/// Options of `tenancy-operator run`.
#[derive(clap::Args, Debug, Clone)]
pub struct RunArgs {
    /// Address of the metrics (/metrics) and health (/healthz, /readyz) server.
    #[arg(long, env = "TENANCY_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: std::net::SocketAddr,
    /// Log format: text or json.
    #[arg(long, env = "TENANCY_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
    /// Monthly price of one unit of a resource, for the cost estimates in Project and Customer
    /// status: `cpu=20` (per core requested), `memory=4.5` (per GiB), `storage=0.1` (per GiB of
    /// PersistentVolumeClaims), `pods=0.5` (per pod). Repeat it, or separate with commas. None:
    /// no costs.
    #[arg(long = "price", env = "TENANCY_PRICES", value_delimiter = ',')]
    pub prices: Vec<String>,
    /// The currency of --price (e.g. EUR); required with it.
    #[arg(long, env = "TENANCY_CURRENCY", default_value = "")]
    pub currency: String,
    /// ClusterRole that the Manager role maps to.
    #[arg(
        long,
        env = "TENANCY_MANAGER_ROLE",
        default_value = "tenancy:project-manager"
    )]
    pub manager_role: String,
    /// ClusterRole that the Administrator role maps to.
    #[arg(
        long,
        env = "TENANCY_ADMINISTRATOR_ROLE",
        default_value = "tenancy:project-administrator"
    )]
    pub administrator_role: String,
    /// ClusterRole that the Member role maps to.
    #[arg(
        long,
        env = "TENANCY_MEMBER_ROLE",
        default_value = "tenancy:project-member"
    )]
    pub member_role: String,
    /// Kinds counted in each project's status, as `resource.group` (core: `pods`). Repeat or
    /// separate with commas. Defaults to pods, deployments, statefulsets, daemonsets, jobs,
    /// cronjobs, services, persistentvolumeclaims and ingresses.
    #[arg(
        long = "count-kind",
        env = "TENANCY_COUNT_KINDS",
        value_delimiter = ','
    )]
    pub count_kinds: Vec<String>,
    /// Custom resource kinds counted in addition to the defaults (`widgets.example.com`).
    #[arg(
        long = "count-extra-kind",
        env = "TENANCY_COUNT_EXTRA_KINDS",
        value_delimiter = ','
    )]
    pub count_extra_kinds: Vec<String>,
    /// How many reconciles of each kind may run at once.
    #[arg(long, env = "TENANCY_CONCURRENCY", default_value_t = 8)]
    pub concurrency: u16,
    /// Groups whose members are staff (may move projects, set staff-only fields, manage
    /// customers).
    #[arg(
        long,
        env = "TENANCY_STAFF_GROUPS",
        value_delimiter = ',',
        default_value = "tenancy:staff,system:masters"
    )]
    pub staff_groups: Vec<String>,
    /// Users always allowed by the webhook, e.g. the operator's own ServiceAccount
    /// (`system:serviceaccount:<namespace>:<name>`).
    #[arg(long, env = "TENANCY_TRUSTED_USERS", value_delimiter = ',')]
    pub trusted_users: Vec<String>,
    /// Project names nobody may create (a trailing `*` is a prefix), e.g. the namespaces of
    /// platform components; the operator's own namespace is always reserved. Repeat or separate
    /// with commas.
    #[arg(
        long = "reserved-names",
        env = "TENANCY_RESERVED_NAMES",
        value_delimiter = ',',
        default_values_t = crate::admission::DEFAULT_RESERVED_NAMES.iter().map(|s| s.to_string())
    )]
    pub reserved_names: Vec<String>,
    /// The operator's namespace: webhook certificate Secret, quota ledgers, leases.
    #[arg(long, env = "POD_NAMESPACE", default_value = "tenancy-system")]
    pub namespace: String,
    /// Address of the HTTPS admission webhook server.
    #[arg(long, env = "TENANCY_WEBHOOK_ADDR", default_value = "0.0.0.0:8443")]
    pub webhook_addr: std::net::SocketAddr,
    /// Do not serve the admission webhook.
    #[arg(long, env = "TENANCY_NO_WEBHOOK")]
    pub no_webhook: bool,
    /// Folder holding tls.crt and tls.key (e.g. a cert-manager Secret). Without them a
    /// certificate is generated and shared by the replicas through a Secret.
    #[arg(long, env = "TENANCY_WEBHOOK_CERT_DIR")]
    pub webhook_cert_dir: Option<PathBuf>,
    /// Secret (in --namespace) holding the generated webhook certificate.
    #[arg(
        long,
        env = "TENANCY_WEBHOOK_SECRET",
        default_value = "tenancy-operator-webhook-tls"
    )]
    pub webhook_secret: String,
    /// DNS names and IPs the generated certificate is valid for (the webhook Service's names).
    #[arg(
        long,
        env = "TENANCY_WEBHOOK_HOSTS",
        value_delimiter = ',',
        default_value = "tenancy-operator-webhook.tenancy-system.svc,localhost,127.0.0.1"
    )]
    pub webhook_hosts: Vec<String>,
    /// Name of the Validating- and MutatingWebhookConfiguration whose caBundle the operator
    /// keeps equal to its generated CA.
    #[arg(long, env = "TENANCY_WEBHOOK_CONFIG_NAME")]
    pub webhook_config_name: Option<String>,
    /// Elect a leader among replicas through a Lease; only the leader reconciles, every
    /// replica serves the webhook.
    #[arg(long, env = "TENANCY_LEADER_ELECTION")]
    pub leader_election: bool,
    /// Name of the leader Lease.
    #[arg(long, env = "TENANCY_LEASE_NAME", default_value = "tenancy-operator")]
    pub lease_name: String,
    /// Namespace of the leader Lease (default: --namespace).
    #[arg(long, env = "TENANCY_LEASE_NAMESPACE")]
    pub lease_namespace: Option<String>,
    /// Seconds a leader's Lease stays valid without renewal: how long a dead leader blocks
    /// the others.
    #[arg(long, env = "TENANCY_LEASE_DURATION", default_value_t = 15)]
    pub lease_duration: u64,
    /// Testing only: a file holding a number of seconds added to the clock, so tests can move
    /// time forward.
    #[arg(long, env = "TENANCY_CLOCK_OFFSET_FILE", hide = true)]
    pub clock_offset_file: Option<PathBuf>,
}

/// What went wrong in a reconcile.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[source] kube::Error),
    #[error("serializing: {0}")]
    Serialization(#[source] serde_json::Error),
    #[error("{0}")]
    Ledger(#[from] crate::admission::ledger::LedgerError),
    #[error("{0}")]
    Invalid(String),
}

impl Error {
    /// A short label for the errors metric.
    pub fn metric_label(&self) -> String {
        match self {
            Error::Kube(kube::Error::Api(e)) => format!("api_{}", e.code),
            Error::Kube(_) => "api_transport".into(),
            Error::Serialization(_) => "serialization".into(),
            Error::Ledger(_) => "ledger".into(),
            Error::Invalid(_) => "invalid".into(),
        }
    }
}

/// The watch caches every controller reads from.
#[derive(Clone)]
pub struct Caches {
    pub projects: Store<Project>,
    pub customers: Store<Customer>,
    pub memberships: Store<ProjectMembership>,
    pub namespaces: Store<Namespace>,
    pub role_bindings: Store<RoleBinding>,
    pub roles: Store<Role>,
    pub quotas: Store<ResourceQuota>,
    pub limit_ranges: Store<LimitRange>,
    pub cluster_roles: Store<ClusterRole>,
    pub cluster_role_bindings: Store<ClusterRoleBinding>,
    /// The customer quota ledgers (ConfigMaps in the operator's namespace).
    pub ledgers: Store<k8s_openapi::api::core::v1::ConfigMap>,
}

impl Caches {
    /// Whether a namespace is a project's, or named like one: a Project of that name exists, or
    /// the namespace was made by the operator for a project (the ServiceAccount rule).
    pub fn is_project_namespace(&self, namespace: &str) -> bool {
        self.projects.get(&ObjectRef::new(namespace)).is_some()
            || self
                .namespaces
                .get(&ObjectRef::new(namespace))
                .is_some_and(|n| desired::namespace::namespace_belongs_to(&n, namespace))
    }
}

/// Shared state of the reconcilers.
pub struct Context {
    pub client: Client,
    pub config: desired::Config,
    pub clock: Clock,
    pub metrics: Arc<metrics::Metrics>,
    pub recorder: Recorder,
    pub caches: Caches,
    pub inventory: Arc<inventory::Inventory>,
    /// Whether this replica holds the leader Lease (always true without leader election).
    pub leader: tokio::sync::watch::Receiver<bool>,
    /// The customer quota ledger (shared with the webhook).
    pub ledger: Arc<crate::admission::ledger::Ledger>,
    backoff: backoff::Backoff,
}

impl Context {
    /// Publishes an Event on an object; failures are logged, never fatal.
    pub async fn event<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        type_: EventType,
        reason: &str,
        note: String,
    ) {
        let ev = Event {
            type_,
            reason: reason.into(),
            note: Some(note),
            action: reason.into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&ev, &obj.object_ref(&())).await {
            tracing::warn!(error = %e, reason, "could not publish event");
        } else {
            self.metrics.write("Event", "create");
        }
    }

    /// The start of every reconcile: the object no longer waits in its controller's queue, and
    /// (only on the leader) a timer measures the reconcile. None: not the leader, do nothing.
    pub fn begin<K: Resource>(
        &self,
        controller: &'static str,
        obj: &K,
    ) -> Option<metrics::ReconcileTimer<'_>> {
        let meta = obj.meta();
        self.metrics.dequeue(
            controller,
            &queue::queue_key(
                meta.namespace.as_deref(),
                meta.name.as_deref().unwrap_or_default(),
            ),
            true,
        );
        self.is_leader().then(|| self.metrics.reconcile(controller))
    }

    /// Only the leader reconciles; other replicas keep caches and serve the webhook.
    pub fn is_leader(&self) -> bool {
        *self.leader.borrow()
    }

    /// Fires each time this replica becomes the leader, so it reconciles everything once, and
    /// each time the clock is moved (tests), so every timer is looked at again at once.
    pub fn on_leadership_or_clock_jump(&self) -> impl futures::Stream<Item = ()> + Send + 'static {
        let leadership = futures::stream::unfold(self.leader.clone(), |mut rx| async move {
            loop {
                rx.changed().await.ok()?;
                if *rx.borrow_and_update() {
                    return Some(((), rx));
                }
            }
        });
        futures::stream::select(leadership, self.clock.jumps())
    }

    /// A reconcile of `obj` by `controller` succeeded: its backoff starts over.
    fn succeeded<K: Resource>(&self, controller: &str, obj: &K) {
        self.backoff.succeeded(&backoff::key(controller, obj));
    }
}

/// Common end of every reconcile: metrics, and backoff state reset on success.
pub fn error_policy<K: Resource<DynamicType = ()>>(
    controller: &'static str,
    obj: Arc<K>,
    err: &Error,
    ctx: Arc<Context>,
) -> Action {
    let key = backoff::key(controller, obj.as_ref());
    ctx.metrics.error(controller, &err.metric_label());
    let delay = ctx.backoff.failed(key.clone());
    tracing::warn!(object = %key, error = %err, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

/// What a controller is triggered by: the objects of a shared cache as they change, deleted ones
/// included.
pub type Changes<K> = futures::stream::BoxStream<'static, Arc<K>>;

/// A watch cache shared by several controllers.
struct Shared<K: Resource<DynamicType = ()> + Clone + 'static> {
    store: Store<K>,
    writer: Option<reflector::store::Writer<K>>,
    /// Subscribers to deletions: a shared reflector hands its subscribers only objects that are
    /// still in the cache, so without these no owner would hear that a child was deleted.
    deleted: Vec<futures::channel::mpsc::UnboundedSender<Arc<K>>>,
}

const SUBSCRIBE_BUFFER: usize = 4096;

impl<K> Shared<K>
where
    K: Resource<DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    fn new() -> Self {
        let (store, writer) = reflector::store_shared(SUBSCRIBE_BUFFER);
        Shared {
            store,
            writer: Some(writer),
            deleted: Vec::new(),
        }
    }

    /// Every change of the cache's objects, deletions included (a deleted object comes as it
    /// last was, after the cache has dropped it).
    fn subscribe(&mut self) -> Changes<K> {
        let updated = self
            .writer
            .as_ref()
            .expect("subscribe before start")
            .subscribe()
            .expect("a shared writer hands out subscriptions");
        let (tx, deleted) = futures::channel::mpsc::unbounded();
        self.deleted.push(tx);
        futures::stream::select(updated, deleted).boxed()
    }

    /// Starts the watch feeding this cache. Objects that do not fit `K` never stop it: see
    /// [`guard`].
    fn start(&mut self, api: Api<guard::Guarded<K>>, cfg: watcher::Config, ctx: Arc<Context>) {
        let writer = self.writer.take().expect("started once");
        let deleted = std::mem::take(&mut self.deleted);
        let store = self.store.clone();
        let unreadables = guard::Unreadables::default();
        tokio::spawn(
            watcher(api, cfg)
                .default_backoff()
                .filter_map(move |ev| {
                    let ev = match ev {
                        Ok(ev) => {
                            let (ev, finding) = unreadables.pass(&store, ev);
                            ctx.metrics
                                .set_unreadable(&K::kind(&()), unreadables.count());
                            if let Some(u) = finding {
                                report_unreadable::<K>(&ctx, u);
                            }
                            ev.map(Ok)
                        }
                        Err(e) => Some(Err(e)),
                    };
                    futures::future::ready(ev)
                })
                .reflect_shared(writer)
                .for_each(move |ev| {
                    match ev {
                        Ok(watcher::Event::Delete(obj)) => {
                            let obj = Arc::new(obj);
                            for tx in &deleted {
                                let _ = tx.unbounded_send(obj.clone());
                            }
                        }
                        Err(e) => log_watch_error(&K::kind(&()), &e),
                        Ok(_) => {}
                    }
                    futures::future::ready(())
                }),
        );
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

/// Logs an object the operator cannot read and, on the leader, puts a Warning Event on it.
fn report_unreadable<K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static>(
    ctx: &Arc<Context>,
    u: guard::Unreadable,
) {
    let kind = K::kind(&()).into_owned();
    tracing::warn!(
        %kind,
        namespace = u.metadata.namespace.as_deref().unwrap_or_default(),
        name = u.metadata.name.as_deref().unwrap_or_default(),
        error = %u.error,
        "cannot read an object; keeping the last version that could be read"
    );
    if !ctx.is_leader() {
        return;
    }
    let ctx = ctx.clone();
    tokio::spawn(async move {
        let note = format!(
            "tenancy-operator cannot read this {kind}: {}. It passes the CRD schema but not \
             this operator's types (are the CRDs newer than the operator?). The operator keeps \
             acting on the last version it could read, if any; fix the field or upgrade the \
             operator.",
            u.error
        );
        let object = guard::Guarded::<K>(Err(u));
        ctx.event(&object, EventType::Warning, "Unreadable", note)
            .await;
    });
}

/// Runs the operator until SIGINT/SIGTERM.
pub fn run_blocking(args: RunArgs) -> ExitCode {
    init_tracing(&args.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "operator stopped");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,kube=warn".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if format == "json" {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

async fn run(args: RunArgs) -> Result<(), Error> {
    let prices =
        desired::cost::Prices::parse(&args.prices, &args.currency).map_err(Error::Invalid)?;
    let client = Client::try_default().await.map_err(Error::Kube)?;
    let metrics = Arc::new(metrics::Metrics::default());

    let mut projects = Shared::<Project>::new();
    let mut customers = Shared::<Customer>::new();
    let mut memberships = Shared::<ProjectMembership>::new();
    let mut namespaces = Shared::<Namespace>::new();
    let mut role_bindings = Shared::<RoleBinding>::new();
    let mut roles = Shared::<Role>::new();
    let mut quotas = Shared::<ResourceQuota>::new();
    let mut limit_ranges = Shared::<LimitRange>::new();
    let mut cluster_roles = Shared::<ClusterRole>::new();
    let mut cluster_role_bindings = Shared::<ClusterRoleBinding>::new();
    let mut ledgers = Shared::<k8s_openapi::api::core::v1::ConfigMap>::new();

    let caches = Caches {
        projects: projects.store.clone(),
        customers: customers.store.clone(),
        memberships: memberships.store.clone(),
        namespaces: namespaces.store.clone(),
        role_bindings: role_bindings.store.clone(),
        roles: roles.store.clone(),
        quotas: quotas.store.clone(),
        limit_ranges: limit_ranges.store.clone(),
        cluster_roles: cluster_roles.store.clone(),
        cluster_role_bindings: cluster_role_bindings.store.clone(),
        ledgers: ledgers.store.clone(),
    };

    let mut kinds: Vec<String> = if args.count_kinds.is_empty() {
        inventory::DEFAULT_COUNTED_KINDS
            .iter()
            .map(|s| s.to_string())
            .collect()
    } else {
        args.count_kinds.clone()
    };
    kinds.extend(args.count_extra_kinds.iter().cloned());
    kinds.sort();
    kinds.dedup();
    let inventory = Arc::new(inventory::Inventory::default());
    let (changed_tx, changed_rx) = futures::channel::mpsc::unbounded::<String>();

    let reporter = Reporter {
        controller: "tenancy-operator".into(),
        instance: std::env::var("POD_NAME").ok(),
    };
    let leader = leadership(&client, &args).await?;
    let ctx = Arc::new(Context {
        leader,
        client: client.clone(),
        config: desired::Config {
            roles: RoleNames {
                manager: args.manager_role.clone(),
                administrator: args.administrator_role.clone(),
                member: args.member_role.clone(),
            },
            prices,
        },
        clock: args
            .clock_offset_file
            .clone()
            .map(Clock::with_offset_file)
            .unwrap_or_default(),
        metrics: metrics.clone(),
        recorder: Recorder::new(client.clone(), reporter),
        caches: caches.clone(),
        inventory: inventory.clone(),
        ledger: Arc::new(crate::admission::ledger::Ledger::new(
            client.clone(),
            args.namespace.clone(),
        )),
        backoff: Default::default(),
    });

    // Subscriptions must be taken before the watches start.
    let project_ctrl = project::controller(
        &ctx,
        project::Streams {
            projects: projects.subscribe(),
            customers: customers.subscribe(),
            memberships: memberships.subscribe(),
            namespaces: namespaces.subscribe(),
            role_bindings: role_bindings.subscribe(),
            quotas: quotas.subscribe(),
            limit_ranges: limit_ranges.subscribe(),
            cluster_roles: cluster_roles.subscribe(),
            cluster_role_bindings: cluster_role_bindings.subscribe(),
            namespace_changes: changed_rx,
        },
        args.concurrency,
    );
    let membership_ctrl = membership::controller(
        &ctx,
        memberships.subscribe(),
        projects.subscribe(),
        namespaces.subscribe(),
        role_bindings.subscribe(),
        args.concurrency,
    );
    let customer_ctrl = customer::controller(
        &ctx,
        customer::Streams {
            customers: customers.subscribe(),
            projects: projects.subscribe(),
            namespaces: namespaces.subscribe(),
            cluster_roles: cluster_roles.subscribe(),
            cluster_role_bindings: cluster_role_bindings.subscribe(),
            ledgers: ledgers.subscribe(),
        },
        args.concurrency,
    );
    let archive_ctrl = archive::controller(
        &ctx,
        namespaces.subscribe(),
        customers.subscribe(),
        args.concurrency,
    );

    let managed = watcher::Config::default()
        .labels(labels::MANAGED_SELECTOR)
        .any_semantic();
    let all = watcher::Config::default().any_semantic();
    projects.start(Api::all(client.clone()), all.clone(), ctx.clone());
    customers.start(Api::all(client.clone()), all.clone(), ctx.clone());
    memberships.start(Api::all(client.clone()), all.clone(), ctx.clone());
    namespaces.start(Api::all(client.clone()), all.clone(), ctx.clone());
    role_bindings.start(Api::all(client.clone()), managed.clone(), ctx.clone());
    roles.start(Api::all(client.clone()), managed.clone(), ctx.clone());
    quotas.start(Api::all(client.clone()), managed.clone(), ctx.clone());
    limit_ranges.start(Api::all(client.clone()), managed.clone(), ctx.clone());
    cluster_roles.start(Api::all(client.clone()), managed.clone(), ctx.clone());
    cluster_role_bindings.start(Api::all(client.clone()), managed, ctx.clone());
    ledgers.start(
        Api::namespaced(client.clone(), &args.namespace),
        watcher::Config::default()
            .labels("tenancy.dev/part=ledger")
            .any_semantic(),
        ctx.clone(),
    );
    inventory::start(client.clone(), inventory.clone(), &kinds, changed_tx);

    let refresh: Arc<dyn Fn() + Send + Sync> = {
        let (projects, metrics) = (caches.projects.clone(), metrics.clone());
        Arc::new(move || project::record_phases(&projects, &metrics))
    };
    let server = tokio::spawn(metrics::serve(args.metrics_addr, metrics.clone(), refresh));

    let mut trusted = crate::admission::Policy::default().trusted_users;
    trusted.extend(args.trusted_users.iter().cloned());
    let admission = Arc::new(crate::admission::server::Admission {
        ctx: ctx.clone(),
        policy: crate::admission::Policy {
            staff_groups: args.staff_groups.clone(),
            trusted_users: trusted,
            reserved_names: args
                .reserved_names
                .iter()
                .cloned()
                .chain([args.namespace.clone()])
                .collect(),
            roles: ctx.config.roles.clone(),
        },
    });
    let webhook = {
        let (args, client) = (args.clone(), client.clone());
        async move {
            if args.no_webhook {
                return std::future::pending::<Result<(), String>>().await;
            }
            let opts = crate::admission::server::WebhookOptions {
                addr: args.webhook_addr,
                cert_dir: args.webhook_cert_dir.clone(),
                namespace: args.namespace.clone(),
                secret_name: args.webhook_secret.clone(),
                hosts: args.webhook_hosts.clone(),
                config_name: args.webhook_config_name.clone(),
            };
            let cert = crate::admission::server::serving_cert(&client, &opts).await?;
            if let (Some(name), Some(ca)) = (&opts.config_name, &cert.ca_pem) {
                tokio::spawn(crate::admission::server::keep_ca_bundle(
                    client.clone(),
                    name.clone(),
                    ca.clone(),
                ));
            }
            crate::admission::server::serve(admission, opts.addr, cert).await
        }
    };

    // Ready once every cache has listed once; say which ones are slow.
    {
        let (caches, metrics, inventory) = (caches.clone(), metrics.clone(), inventory.clone());
        tokio::spawn(async move {
            let pending = Arc::new(Mutex::new(std::collections::BTreeSet::<&'static str>::new()));
            let wait = |name: &'static str, fut: futures::future::BoxFuture<'static, ()>| {
                let pending = pending.clone();
                pending.lock().expect("pending lock").insert(name);
                async move {
                    fut.await;
                    pending.lock().expect("pending lock").remove(name);
                }
            };
            let c = caches.clone();
            let all = futures::future::join_all([
                wait(
                    "projects",
                    Box::pin(async move {
                        let _ = c.projects.wait_until_ready().await;
                    }),
                ),
                wait("customers", {
                    let c = caches.clone();
                    Box::pin(async move {
                        let _ = c.customers.wait_until_ready().await;
                    })
                }),
                wait("projectmemberships", {
                    let c = caches.clone();
                    Box::pin(async move {
                        let _ = c.memberships.wait_until_ready().await;
                    })
                }),
                wait("namespaces", {
                    let c = caches.clone();
                    Box::pin(async move {
                        let _ = c.namespaces.wait_until_ready().await;
                    })
                }),
                wait("rolebindings", {
                    let c = caches.clone();
                    Box::pin(async move {
                        let _ = c.role_bindings.wait_until_ready().await;
                    })
                }),
                wait("roles", {
                    let c = caches.clone();
                    Box::pin(async move {
                        let _ = c.roles.wait_until_ready().await;
                    })
                }),
                wait("resourcequotas", {
                    let c = caches.clone();
                    Box::pin(async move {
                        let _ = c.quotas.wait_until_ready().await;
                    })
                }),
                wait("limitranges", {
                    let c = caches.clone();
                    Box::pin(async move {
                        let _ = c.limit_ranges.wait_until_ready().await;
                    })
                }),
                wait("clusterroles", {
                    let c = caches.clone();
                    Box::pin(async move {
                        let _ = c.cluster_roles.wait_until_ready().await;
                    })
                }),
                wait("clusterrolebindings", {
                    let c = caches.clone();
                    Box::pin(async move {
                        let _ = c.cluster_role_bindings.wait_until_ready().await;
                    })
                }),
                wait("configmaps (quota ledgers)", {
                    let c = caches.clone();
                    Box::pin(async move {
                        let _ = c.ledgers.wait_until_ready().await;
                    })
                }),
                wait("counted kinds", {
                    let inv = inventory.clone();
                    Box::pin(async move {
                        while !inv.synced() {
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    })
                }),
            ]);
            tokio::pin!(all);
            loop {
                tokio::select! {
                    _ = &mut all => break,
                    _ = tokio::time::sleep(Duration::from_secs(10)) => {
                        let names: Vec<&str> = pending.lock().expect("pending lock").iter().copied().collect();
                        tracing::warn!(waiting_for = ?names, "caches still syncing");
                    }
                }
            }
            metrics.set_ready();
            tracing::info!("caches synced; operator ready");
        });
    }

    tracing::info!(counted_kinds = ?kinds, "tenancy-operator running");
    tokio::select! {
        _ = project_ctrl => tracing::error!("project controller stopped"),
        _ = membership_ctrl => tracing::error!("membership controller stopped"),
        _ = customer_ctrl => tracing::error!("customer controller stopped"),
        _ = archive_ctrl => tracing::error!("archive controller stopped"),
        r = server => return Err(Error::Invalid(format!("metrics server stopped: {r:?}"))),
        r = webhook => return Err(Error::Invalid(format!("admission webhook stopped: {r:?}"))),
        _ = shutdown_signal() => tracing::info!("shutting down"),
    }
    Ok(())
}

/// Whether this replica leads: always, without leader election; otherwise as the Lease says.
/// A leader that loses its Lease exits, so nothing it had in flight writes after a new leader
/// took over; its restart joins as a follower.
async fn leadership(
    client: &Client,
    args: &RunArgs,
) -> Result<tokio::sync::watch::Receiver<bool>, Error> {
    if !args.leader_election {
        let (tx, rx) = tokio::sync::watch::channel(true);
        // Kept for the life of the process: the receiver then never sees a closed channel.
        std::mem::forget(tx);
        return Ok(rx);
    }
    let identity = std::env::var("POD_NAME")
        .unwrap_or_else(|_| format!("{}-{}", hostname(), std::process::id()));
    let namespace = args
        .lease_namespace
        .clone()
        .unwrap_or_else(|| args.namespace.clone());
    let duration = args.lease_duration.max(3);
    let manager = kube_lease_manager::LeaseManagerBuilder::new(client.clone(), &args.lease_name)
        .with_namespace(&namespace)
        .with_identity(&identity)
        .with_duration(duration)
        .with_grace((duration / 3).max(1))
        .build()
        .await
        .map_err(|e| {
            Error::Invalid(format!(
                "leader election on Lease {namespace}/{}: {e}",
                args.lease_name
            ))
        })?;
    let (rx, task) = manager.watch().await;
    tracing::info!(identity, lease = %args.lease_name, namespace, "leader election started");
    let mut watch = rx.clone();
    tokio::spawn(async move {
        let mut led = false;
        while watch.changed().await.is_ok() {
            let now = *watch.borrow_and_update();
            if now && !led {
                tracing::info!("became the leader; reconciling everything");
            } else if !now && led {
                tracing::error!("lost the leader Lease; exiting so only the new leader writes");
                std::process::exit(1);
            }
            led = now;
        }
        let _ = task.await;
    });
    Ok(rx)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "tenancy-operator".into())
}

/// The controller configuration every controller here uses.
pub fn controller_config(concurrency: u16) -> kube::runtime::controller::Config {
    kube::runtime::controller::Config::default()
        .concurrency(concurrency)
        .debounce(Duration::from_millis(100))
}

/// Polls a controller (its stream must be polled for it to run) and logs errors. A trigger for
/// an object that is gone never reaches a reconcile, so it leaves the queue here.
pub async fn drain<K, S, T, E>(queue: queue::Queue<K>, stream: S)
where
    K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
    K::Scope: 'static,
    S: futures::Stream<Item = Result<T, kube::runtime::controller::Error<E, watcher::Error>>>,
    E: std::error::Error + 'static,
{
    stream
        .for_each(|res| {
            match res {
                Err(kube::runtime::controller::Error::ObjectNotFound(r)) => {
                    queue.gone(r.namespace.as_deref(), &r.name)
                }
                Err(e) => tracing::debug!(error = %e, "reconcile error"),
                Ok(_) => {}
            }
            futures::future::ready(())
        })
        .await
}
