//! Prometheus metrics and the HTTP server for /metrics, /healthz and /readyz.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabel {
    pub controller: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub controller: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WriteLabels {
    pub kind: String,
    pub verb: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AdmissionLabels {
    pub kind: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabel {
    pub phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ViewLabels {
    pub resource: String,
    pub verb: String,
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BillingLabels {
    pub project: String,
    pub customer: String,
    pub currency: String,
}

type Amount = Gauge<f64, std::sync::atomic::AtomicU64>;

/// Every metric the operator exports.
pub struct Metrics {
    pub registry: Registry,
    reconciles: Family<ControllerLabel, Counter>,
    errors: Family<ErrorLabels, Counter>,
    duration: Family<ControllerLabel, Histogram>,
    in_flight: Family<ControllerLabel, Gauge>,
    queue_depth: Family<ControllerLabel, Gauge>,
    /// The objects each controller was asked to reconcile and has not started on yet, with
    /// when they were first asked for.
    queued: Mutex<HashMap<&'static str, HashMap<String, Instant>>>,
    queue_wait: Family<ControllerLabel, Histogram>,
    unreadable: Family<KindLabel, Gauge>,
    writes: Family<WriteLabels, Counter>,
    pub projects: Family<PhaseLabel, Gauge>,
    admissions: Family<AdmissionLabels, Counter>,
    admission_duration: Family<KindLabel, Histogram>,
    view_requests: Family<ViewLabels, Counter>,
    view_index_build: Histogram,
    view_watches: Gauge,
    /// Per project, with `--usage-metrics` only.
    pub project_cost: Family<BillingLabels, Amount>,
    pub project_credit_remaining: Family<BillingLabels, Amount>,
    pub project_credit_amount: Family<BillingLabels, Amount>,
    ready: AtomicBool,
    caches_listed: AtomicBool,
    serving: AtomicBool,
    connection: Mutex<Connection>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("tenancy");
        let reconciles = Family::<ControllerLabel, Counter>::default();
        let errors = Family::<ErrorLabels, Counter>::default();
        let duration = Family::<ControllerLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 14))
        });
        let in_flight = Family::<ControllerLabel, Gauge>::default();
        let queue_depth = Family::<ControllerLabel, Gauge>::default();
        let queue_wait = Family::<ControllerLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.01, 2.0, 14))
        });
        let unreadable = Family::<KindLabel, Gauge>::default();
        let writes = Family::<WriteLabels, Counter>::default();
        let projects = Family::<PhaseLabel, Gauge>::default();
        let admissions = Family::<AdmissionLabels, Counter>::default();
        registry.register(
            "admission_reviews",
            "Admission reviews answered, by kind and outcome",
            admissions.clone(),
        );
        let admission_duration = Family::<KindLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 14))
        });
        registry.register(
            "admission_duration_seconds",
            "How long the validating webhook takes to decide, by kind (from the decoded request to the answer; the ledger reservation of a Project included)",
            admission_duration.clone(),
        );
        registry.register(
            "reconciles",
            "Reconciles run, by controller",
            reconciles.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Reconciles that failed, by controller and reason",
            errors.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "How long reconciles take",
            duration.clone(),
        );
        registry.register(
            "reconcile_in_flight",
            "Reconciles running now",
            in_flight.clone(),
        );
        registry.register(
            "reconcile_queue_depth",
            "Objects waiting for a reconcile: asked for by a change, not started yet (requeues \
             scheduled for later are not counted until they are due)",
            queue_depth.clone(),
        );
        registry.register(
            "reconcile_queue_wait_seconds",
            "How long an object waited from the change that asked for it to the start of its \
             reconcile (at least the 100 ms debounce)",
            queue_wait.clone(),
        );
        registry.register(
            "unreadable_objects",
            "Objects the operator cannot read (they pass the CRD schema but not its types); it \
             keeps acting on the last version it could read",
            unreadable.clone(),
        );
        registry.register(
            "api_writes",
            "Write requests the operator made, by kind and verb",
            writes.clone(),
        );
        registry.register("projects", "Projects by phase", projects.clone());
        let view_requests = Family::<ViewLabels, Counter>::default();
        let view_index_build = Histogram::new(exponential_buckets(0.0005, 2.0, 14));
        let view_watches = Gauge::default();
        registry.register(
            "views_requests",
            "views.tenancy.dev requests answered, by resource, verb and HTTP code",
            view_requests.clone(),
        );
        registry.register(
            "views_index_build_seconds",
            "How long bringing the views index up to date takes (an update after each burst of changes; a build from everything at start and once a minute while things change)",
            view_index_build.clone(),
        );
        registry.register(
            "views_watches",
            "views.tenancy.dev watches open now",
            view_watches.clone(),
        );
        let project_cost = Family::<BillingLabels, Amount>::default();
        let project_credit_remaining = Family::<BillingLabels, Amount>::default();
        let project_credit_amount = Family::<BillingLabels, Amount>::default();
        registry.register(
            "project_cost_month_to_date",
            "The current month's cost of each project so far, in its currency (--usage-metrics)",
            project_cost.clone(),
        );
        registry.register(
            "project_credit_remaining",
            "Credit each project has left now, in its currency (--usage-metrics)",
            project_credit_remaining.clone(),
        );
        registry.register(
            "project_credit_amount",
            "Each project's spec.credit, in its currency (--usage-metrics)",
            project_credit_amount.clone(),
        );
        Metrics {
            registry,
            project_cost,
            project_credit_remaining,
            project_credit_amount,
            reconciles,
            errors,
            duration,
            in_flight,
            queue_depth,
            queued: Mutex::new(HashMap::new()),
            queue_wait,
            unreadable,
            writes,
            projects,
            admissions,
            admission_duration,
            view_requests,
            view_index_build,
            view_watches,
            ready: AtomicBool::new(false),
            caches_listed: AtomicBool::new(false),
            serving: AtomicBool::new(false),
            connection: Mutex::new(Connection::default()),
        }
    }
}

/// Measures one reconcile; records its duration when dropped.
pub struct ReconcileTimer<'a> {
    metrics: &'a Metrics,
    label: ControllerLabel,
    start: Instant,
}

impl Drop for ReconcileTimer<'_> {
    fn drop(&mut self) {
        self.metrics
            .duration
            .get_or_create(&self.label)
            .observe(self.start.elapsed().as_secs_f64());
        self.metrics.in_flight.get_or_create(&self.label).dec();
    }
}

impl Metrics {
    pub fn reconcile(&self, controller: &str) -> ReconcileTimer<'_> {
        let label = ControllerLabel {
            controller: controller.to_string(),
        };
        self.reconciles.get_or_create(&label).inc();
        self.in_flight.get_or_create(&label).inc();
        ReconcileTimer {
            metrics: self,
            label,
            start: Instant::now(),
        }
    }

    /// Declares the queue of `controller`, so its depth is exported (as 0) from the start.
    pub fn declare_queue(&self, controller: &'static str) {
        let mut queued = self.queued.lock().expect("queue lock");
        let keys = queued.entry(controller).or_default();
        self.set_depth(controller, keys.len());
    }

    /// `key` (`namespace/name`) waits for a reconcile by `controller`.
    pub fn enqueue(&self, controller: &'static str, key: String) {
        let mut queued = self.queued.lock().expect("queue lock");
        let keys = queued.entry(controller).or_default();
        if let std::collections::hash_map::Entry::Vacant(e) = keys.entry(key) {
            e.insert(Instant::now());
            self.set_depth(controller, keys.len());
        }
    }

    /// `key` no longer waits for `controller`: its reconcile `started` (its wait is recorded),
    /// or its object turned out to be gone.
    pub fn dequeue(&self, controller: &'static str, key: &str, started: bool) {
        let mut queued = self.queued.lock().expect("queue lock");
        if let Some(keys) = queued.get_mut(controller)
            && let Some(since) = keys.remove(key)
        {
            self.set_depth(controller, keys.len());
            if started {
                self.queue_wait
                    .get_or_create(&ControllerLabel {
                        controller: controller.into(),
                    })
                    .observe(since.elapsed().as_secs_f64());
            }
        }
    }

    fn set_depth(&self, controller: &str, depth: usize) {
        self.queue_depth
            .get_or_create(&ControllerLabel {
                controller: controller.into(),
            })
            .set(i64::try_from(depth).unwrap_or(i64::MAX));
    }

    /// How many objects `controller` has waiting.
    pub fn queue_depth(&self, controller: &str) -> usize {
        self.queued
            .lock()
            .expect("queue lock")
            .get(controller)
            .map_or(0, HashMap::len)
    }

    /// Sets how many objects of `kind` cannot be read now.
    pub fn set_unreadable(&self, kind: &str, count: usize) {
        self.unreadable
            .get_or_create(&KindLabel { kind: kind.into() })
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    pub fn error(&self, controller: &str, reason: &str) {
        self.errors
            .get_or_create(&ErrorLabels {
                controller: controller.into(),
                reason: reason.into(),
            })
            .inc();
    }

    pub fn write(&self, kind: &str, verb: &str) {
        self.writes
            .get_or_create(&WriteLabels {
                kind: kind.into(),
                verb: verb.into(),
            })
            .inc();
    }

    /// How long a validating decision on `kind` took.
    pub fn admission_took(&self, kind: &str, took: std::time::Duration) {
        self.admission_duration
            .get_or_create(&KindLabel { kind: kind.into() })
            .observe(took.as_secs_f64());
    }

    pub fn admission(&self, kind: &str, outcome: &str) {
        self.admissions
            .get_or_create(&AdmissionLabels {
                kind: kind.into(),
                outcome: outcome.into(),
            })
            .inc();
    }

    pub fn view_request(&self, resource: &str, verb: &str, code: u16) {
        self.view_requests
            .get_or_create(&ViewLabels {
                resource: resource.into(),
                verb: verb.into(),
                code: code.to_string(),
            })
            .inc();
    }

    pub fn view_index_built(&self, seconds: f64) {
        self.view_index_build.observe(seconds);
    }

    /// One more watch open (`+1`) or one fewer (`-1`).
    pub fn view_watches(&self, delta: i64) {
        self.view_watches.inc_by(delta);
    }

    /// Every watch cache and the counted kinds have listed once: the webhook decides from then
    /// on (see [`Metrics::readiness`] for what `/readyz` says).
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Relaxed);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// The HTTPS server (webhook, views) has its certificate and serves (or is not wanted).
    pub fn set_serving(&self) {
        self.serving.store(true, Ordering::Relaxed);
    }

    /// How kube-apiserver's own `/readyz` answered just now.
    pub fn apiserver_answered(&self, answer: Result<(), String>) {
        self.connection
            .lock()
            .expect("connection lock")
            .apiserver_answered(Instant::now(), answer);
    }

    /// The watch of `cache` failed; it tries again in `retry_in`.
    pub fn watch_failed(&self, cache: &'static str, retry_in: Duration) {
        self.connection
            .lock()
            .expect("connection lock")
            .watch_failed(cache, Instant::now(), retry_in);
    }

    /// The watch of `cache` delivered something: it works.
    pub fn watch_delivered(&self, cache: &'static str) {
        self.connection
            .lock()
            .expect("connection lock")
            .watch_delivered(cache);
    }

    /// What `/readyz` answers: ready, or why not.
    pub fn readiness(&self) -> Result<(), String> {
        if !self.is_ready() {
            return Err("caches syncing".into());
        }
        if !self.serving.load(Ordering::Relaxed) {
            return Err("the webhook server is not serving yet".into());
        }
        self.connection
            .lock()
            .expect("connection lock")
            .verdict(Instant::now())
    }

    /// Every watch cache has listed once (the counted kinds aside).
    pub fn set_caches_listed(&self) {
        self.caches_listed.store(true, Ordering::Relaxed);
    }

    pub fn caches_listed(&self) -> bool {
        self.caches_listed.load(Ordering::Relaxed)
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

/// Serves /metrics, /healthz and /readyz until the process ends. `refresh` runs before each
/// scrape to update gauges computed from caches.
pub async fn serve(
    addr: std::net::SocketAddr,
    metrics: Arc<Metrics>,
    refresh: Arc<dyn Fn() + Send + Sync>,
) -> std::io::Result<()> {
    use axum::http::StatusCode;
    use axum::routing::get;
    let m1 = metrics.clone();
    let m2 = metrics.clone();
    let app = axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let m = m1.clone();
                let refresh = refresh.clone();
                async move {
                    refresh();
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        m.encode(),
                    )
                }
            }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || {
                let m = m2.clone();
                async move {
                    match m.readiness() {
                        Ok(()) => (StatusCode::OK, "ready".to_string()),
                        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, why),
                    }
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "metrics and health server listening");
    axum::serve(listener, app).await
}

/// How long a failure must last before `/readyz` says not ready: one failed request, or a watch
/// that expired and lists again, is no outage.
pub const UNREADY_AFTER: Duration = Duration::from_secs(3);

/// How long a watch's retry may take to fail. A watch that resumes announces nothing until
/// something changes, so a watch whose retry was due this long ago without failing again is
/// taken to work.
pub const RETRY_ANSWERS_WITHIN: Duration = Duration::from_secs(2);

/// What the operator has seen of the control plane lately: whether kube-apiserver's `/readyz`
/// (which checks etcd) answers, and which watches fail. Pure: the times are given.
#[derive(Debug, Default)]
pub struct Connection {
    /// kube-apiserver's `/readyz` has failed since then (not answered, or not ready), last with
    /// this error.
    apiserver: Option<(Instant, String)>,
    /// Watches that failed and delivered nothing since, by cache.
    watches: BTreeMap<&'static str, FailingWatch>,
}

#[derive(Clone, Copy, Debug)]
struct FailingWatch {
    since: Instant,
    retry_at: Instant,
}

impl Connection {
    pub fn apiserver_answered(&mut self, now: Instant, answer: Result<(), String>) {
        self.apiserver = match (answer, self.apiserver.take()) {
            (Ok(()), _) => None,
            (Err(e), Some((since, _))) => Some((since, e)),
            (Err(e), None) => Some((now, e)),
        };
    }

    /// A failure of a watch whose retry came due and passed without failing is a new one: it
    /// had resumed in between.
    pub fn watch_failed(&mut self, cache: &'static str, now: Instant, retry_in: Duration) {
        let since = match self.watches.get(cache) {
            Some(w) if now <= w.retry_at + RETRY_ANSWERS_WITHIN => w.since,
            _ => now,
        };
        self.watches.insert(
            cache,
            FailingWatch {
                since,
                retry_at: now + retry_in,
            },
        );
    }

    pub fn watch_delivered(&mut self, cache: &'static str) {
        self.watches.remove(cache);
    }

    /// Not ready while kube-apiserver's `/readyz` has failed for [`UNREADY_AFTER`] or longer, or
    /// a watch has failed that long and its retry is not known to have worked.
    pub fn verdict(&self, now: Instant) -> Result<(), String> {
        if let Some((since, error)) = &self.apiserver {
            let down = now.saturating_duration_since(*since);
            if down >= UNREADY_AFTER {
                return Err(format!(
                    "kube-apiserver not ready for {:.0} s: {error}",
                    down.as_secs_f64()
                ));
            }
        }
        let failing: Vec<String> = self
            .watches
            .iter()
            .filter(|(_, w)| {
                now.saturating_duration_since(w.since) >= UNREADY_AFTER
                    && now <= w.retry_at + RETRY_ANSWERS_WITHIN
            })
            .map(|(cache, w)| {
                format!(
                    "{cache} ({:.0} s)",
                    now.saturating_duration_since(w.since).as_secs_f64()
                )
            })
            .collect();
        if failing.is_empty() {
            Ok(())
        } else {
            Err(format!("watches failing: {}", failing.join(", ")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn readiness_says_not_ready_only_while_the_control_plane_stays_unreachable() {
        let t0 = Instant::now();
        let mut c = Connection::default();
        assert_eq!(c.verdict(t0), Ok(()));

        // kube-apiserver's /readyz fails: a blip is no outage, three seconds are.
        c.apiserver_answered(t0, Err("connection refused".into()));
        assert_eq!(c.verdict(t0 + secs(2.9)), Ok(()));
        c.apiserver_answered(t0 + secs(2.0), Err("etcd not ready".into()));
        let why = c.verdict(t0 + secs(3.0)).unwrap_err();
        assert!(
            why.contains("kube-apiserver not ready for 3 s: etcd not ready"),
            "{why}"
        );
        c.apiserver_answered(t0 + secs(4.0), Ok(()));
        assert_eq!(c.verdict(t0 + secs(4.0)), Ok(()));
        // A new failure starts a new count.
        c.apiserver_answered(t0 + secs(10.0), Err("timed out".into()));
        assert_eq!(c.verdict(t0 + secs(12.0)), Ok(()));
        assert!(c.verdict(t0 + secs(13.0)).is_err());
        c.apiserver_answered(t0 + secs(14.0), Ok(()));

        // One failed watch retried at once and listing again (an expired version): ready.
        let t1 = t0 + secs(20.0);
        c.watch_failed("projects", t1, secs(0.8));
        assert_eq!(c.verdict(t1 + secs(0.5)), Ok(()));
        c.watch_delivered("projects");
        assert_eq!(c.verdict(t1 + secs(5.0)), Ok(()));

        // A watch failing again and again for three seconds: not ready, naming it.
        let t2 = t0 + secs(30.0);
        c.watch_failed("memberships", t2, secs(0.8));
        c.watch_failed("memberships", t2 + secs(0.8), secs(1.6));
        c.watch_failed("memberships", t2 + secs(2.4), secs(3.2));
        let why = c.verdict(t2 + secs(3.0)).unwrap_err();
        assert_eq!(why, "watches failing: memberships (3 s)");
        // Its retry (due at 5.6 s) has not failed 2 s after it was due: it resumed silently.
        assert!(c.verdict(t2 + secs(7.5)).is_err());
        assert_eq!(c.verdict(t2 + secs(7.7)), Ok(()));
        // Failing much later is a new failure, not the old one going on.
        c.watch_failed("memberships", t2 + secs(60.0), secs(0.8));
        assert_eq!(c.verdict(t2 + secs(60.5)), Ok(()));
        // Delivering ends it at once.
        c.watch_failed("memberships", t2 + secs(60.8), secs(1.6));
        c.watch_failed("memberships", t2 + secs(62.4), secs(3.2));
        assert!(c.verdict(t2 + secs(63.5)).is_err());
        c.watch_delivered("memberships");
        assert_eq!(c.verdict(t2 + secs(63.5)), Ok(()));
    }

    #[test]
    fn readyz_waits_for_the_caches_and_the_webhook_server() {
        let m = Metrics::default();
        assert_eq!(m.readiness(), Err("caches syncing".to_string()));
        m.set_ready();
        assert_eq!(
            m.readiness(),
            Err("the webhook server is not serving yet".to_string())
        );
        m.set_serving();
        assert_eq!(m.readiness(), Ok(()));
    }
}
