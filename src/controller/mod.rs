//! The reconcilers: shared watch caches (`crate::watch`) feed the Project, ProjectMembership,
//! Customer and archive controllers; each reconcile reads caches, computes the desired children
//! with the plans of `desired`, applies only the difference and writes status. The `run` module wires them.

pub mod apply;
pub mod archive;
pub mod backoff;
pub mod checklist;
pub mod customer;
pub mod expect;
pub mod expiry;
pub mod handle;
pub mod membership;
pub mod pacer;
pub mod project;
pub mod queue;
pub mod termination;
pub mod usage;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::controller::Action;
use kube::runtime::events::{EventType, Reporter};
use kube::runtime::watcher;
use kube::{Client, Resource};

use crate::desired;
use crate::lifecycle::Clock;
use crate::metrics::{self, Metrics};
use crate::watch::guard::Unreadable;
use crate::watch::{Caches, inventory};

pub use crate::watch::Changes;

/// What went wrong in a reconcile.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[source] kube::Error),
    #[error("serializing: {0}")]
    Serialization(#[source] serde_json::Error),
    #[error("{0}")]
    Ledger(#[from] crate::ledger::LedgerError),
    /// The operator cannot start: a bad flag, no cluster, no leader election.
    #[error("{0}")]
    Startup(String),
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
            Error::Startup(_) => "startup".into(),
            Error::Invalid(_) => "invalid".into(),
        }
    }
}

/// What an Event's name is made of: its object's name (at most 200 characters) and then
/// either the milestone's reason and key ([`Context::event_once`]: the same milestone always
/// has the same name) or the time it was sent, in nanoseconds, as client-go names its Events.
enum EventName<'a> {
    Once { key: &'a str },
    At,
}

/// The `events.k8s.io/v1` Event the operator sends about `reference`.
fn new_event(
    reporter: &Reporter,
    reference: &ObjectReference,
    type_: EventType,
    reason: &str,
    note: String,
    name: EventName<'_>,
    now: jiff::Timestamp,
) -> k8s_openapi::api::events::v1::Event {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
    let object: String = reference
        .name
        .as_deref()
        .unwrap_or("object")
        .chars()
        .take(200)
        .collect();
    let name = match name {
        EventName::Once { key } => {
            // FNV-1a: stable across builds and platforms (the std hasher is not).
            let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
            });
            format!("{object}.{}.{hash:016x}", reason.to_ascii_lowercase())
        }
        EventName::At => format!("{object}.{:x}", now.as_nanosecond()),
    };
    k8s_openapi::api::events::v1::Event {
        action: Some(reason.into()),
        reason: Some(reason.into()),
        event_time: Some(MicroTime(now)),
        regarding: Some(reference.clone()),
        note: Some(note),
        metadata: ObjectMeta {
            namespace: reference.namespace.clone(),
            name: Some(name),
            ..Default::default()
        },
        reporting_controller: Some(reporter.controller.clone()),
        reporting_instance: Some(
            reporter
                .instance
                .clone()
                .unwrap_or_else(|| reporter.controller.clone()),
        ),
        type_: Some(
            match type_ {
                EventType::Normal => "Normal",
                EventType::Warning => "Warning",
            }
            .into(),
        ),
        ..Default::default()
    }
}

/// Shared state of the reconcilers.
pub struct Context {
    pub client: Client,
    pub config: desired::Config,
    pub clock: Clock,
    pub metrics: Arc<Metrics>,
    /// Who publishes Events.
    pub reporter: Reporter,
    pub caches: Caches,
    pub inventory: Arc<inventory::Inventory>,
    /// Whether this replica holds the leader Lease (always true without leader election).
    pub leader: tokio::sync::watch::Receiver<bool>,
    /// The customer quota ledger (shared with the webhook).
    pub ledger: Arc<crate::ledger::Ledger>,
    pub backoff: backoff::Backoff,
    /// When statuses were last written, for writes that only refresh figures.
    pub pacer: pacer::Pacer,
    /// Children just made that their caches do not show yet.
    pub expected: expect::Expectations,
}

impl Context {
    /// The action that ends a reconcile of `owner` that would come back after `wake` (never:
    /// `None`): sooner while children it relied on having just made are still missing from
    /// their caches ([`expect::Expectations::pending`]).
    pub fn come_back<K: Resource>(&self, owner: &K, wake: Option<Duration>) -> Action {
        let uid = owner.meta().uid.as_deref().unwrap_or_default();
        let pending = self.expected.pending(uid, std::time::Instant::now());
        match (wake, pending) {
            (Some(w), Some(p)) => Action::requeue(w.min(p)),
            (w, p) => w.or(p).map_or(Action::await_change(), Action::requeue),
        }
    }

    /// Publishes an Event on an object; failures are logged, never fatal.
    pub async fn event<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        type_: EventType,
        reason: &str,
        note: String,
    ) {
        self.event_on(&obj.object_ref(&()), type_, reason, note)
            .await;
    }

    /// Publishes an Event on the object a reference names; failures are logged, never fatal.
    /// Each is an Event of its own (no series: the operator's Events mark changes, not retries,
    /// and kube's recorder, which folds repeats into series, keeps every Event it sent in the
    /// last 6 minutes in memory: ~2 KB per project created in them).
    pub async fn event_on(
        &self,
        object: &ObjectReference,
        type_: EventType,
        reason: &str,
        note: String,
    ) {
        let now = jiff::Timestamp::now();
        let event = new_event(
            &self.reporter,
            object,
            type_,
            reason,
            note,
            EventName::At,
            now,
        );
        self.send_event(event, reason).await;
    }

    /// Publishes the Event of a milestone that happens once per `key` (a soft delete, a
    /// recovery, a purge), however often the pass that reaches it runs: a pass retried after an
    /// error or a crash sends it again, and the name derived from the object, the reason and the
    /// key makes the apiserver refuse the second as AlreadyExists. So callers send it before
    /// the effect after which nothing would send it again. Failures are logged, never fatal.
    pub async fn event_once<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        type_: EventType,
        reason: &str,
        note: String,
        key: &str,
    ) {
        let event = new_event(
            &self.reporter,
            &obj.object_ref(&()),
            type_,
            reason,
            note,
            EventName::Once { key },
            jiff::Timestamp::now(),
        );
        self.send_event(event, reason).await;
    }

    /// Creates `event`; one that exists already (a milestone sent before) is not an error.
    async fn send_event(&self, event: k8s_openapi::api::events::v1::Event, reason: &str) {
        let namespace = event.metadata.namespace.as_deref().unwrap_or("default");
        let api = kube::Api::<k8s_openapi::api::events::v1::Event>::namespaced(
            self.client.clone(),
            namespace,
        );
        match api.create(&Default::default(), &event).await {
            Ok(_) => self.metrics.write("Event", "create"),
            Err(kube::Error::Api(e)) if e.code == 409 => {
                tracing::debug!(reason, "event already sent");
            }
            Err(e) => tracing::warn!(error = %e, reason, "could not publish event"),
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

    /// Whether the caches can be acted on: every watch cache has listed, and so have pods and
    /// claims. Before, a namespace, membership, pod or claim not listed yet reads as missing: a
    /// restarted operator would archive a soft-deleted project with no team, revoke nobody, or
    /// record a zero rate of usage. Other counted kinds are not waited for (a kind the cluster
    /// does not serve must not stop expiries).
    pub fn caches_ready(&self) -> bool {
        self.metrics.caches_listed()
            && self
                .inventory
                .kinds_synced(&["pods", "persistentvolumeclaims"])
    }

    /// The answer of a reconcile that must wait for the caches: come back in a second.
    pub fn wait_for_caches(&self) -> Option<Action> {
        (!self.caches_ready()).then(|| Action::requeue(Duration::from_secs(1)))
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

/// Reports an object the operator cannot read: logged, and on the leader a Warning Event on it
/// (it is also counted in `tenancy_unreadable_objects` by its watch).
pub fn report_unreadable(ctx: &Arc<Context>, object: ObjectReference, kind: String, u: Unreadable) {
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
        ctx.event_on(&object, EventType::Warning, "Unreadable", note)
            .await;
    });
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

#[cfg(test)]
mod tests {
    use super::*;

    fn named(object: &str, reason: &str, key: &str) -> String {
        let reporter = Reporter {
            controller: "tenancy-operator".into(),
            instance: None,
        };
        let reference = ObjectReference {
            kind: Some("Project".into()),
            name: Some(object.into()),
            ..Default::default()
        };
        new_event(
            &reporter,
            &reference,
            EventType::Normal,
            reason,
            "note".into(),
            EventName::Once { key },
            jiff::Timestamp::UNIX_EPOCH,
        )
        .metadata
        .name
        .unwrap()
    }

    /// An Event that is not a milestone is named by its object and the time it was sent: two
    /// sent a nanosecond apart are two Events, and the name stays a valid object name.
    #[test]
    fn an_event_is_named_by_its_time() {
        let reporter = Reporter {
            controller: "tenancy-operator".into(),
            instance: None,
        };
        let at = |object: &str, nanos: i128| {
            let reference = ObjectReference {
                name: Some(object.into()),
                namespace: Some("tenants".into()),
                ..Default::default()
            };
            let now = jiff::Timestamp::from_nanosecond(nanos).unwrap();
            new_event(
                &reporter,
                &reference,
                EventType::Warning,
                "NamespaceConflict",
                "note".into(),
                EventName::At,
                now,
            )
        };
        let e = at("web", 1_800_000_000_000_000_001);
        assert_eq!(e.metadata.name.as_deref(), Some("web.18fae27693b40001"));
        assert_eq!(e.metadata.namespace.as_deref(), Some("tenants"));
        assert_eq!(e.type_.as_deref(), Some("Warning"));
        assert_eq!(e.reporting_instance.as_deref(), Some("tenancy-operator"));
        assert_ne!(
            e.metadata.name,
            at("web", 1_800_000_000_000_000_002).metadata.name
        );
        assert!(at(&"x".repeat(300), 1).metadata.name.unwrap().len() <= 253);
    }

    /// One milestone, one name (whenever and by whichever replica it is sent); another key or
    /// reason, another name; always a valid object name.
    #[test]
    fn a_milestone_event_has_one_name() {
        let a = named("web", "Recovered", "uid-1/2026-01-01T00:00:00Z");
        assert_eq!(a, named("web", "Recovered", "uid-1/2026-01-01T00:00:00Z"));
        assert_ne!(a, named("web", "Recovered", "uid-1/2026-02-01T00:00:00Z"));
        assert_ne!(a, named("web", "SoftDeleted", "uid-1/2026-01-01T00:00:00Z"));
        assert!(a.starts_with("web.recovered."), "{a}");
        let long = named(&"x".repeat(300), "Purged", "k");
        assert!(long.len() <= 253, "{}", long.len());
        assert!(
            long.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-')
        );
    }
}
