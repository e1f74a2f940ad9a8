//! `make bench`: the operator next to the alternative, writing the same objects yourself. One
//! run on one fresh local control plane, the release operator running throughout:
//!
//! a. **direct**: for each of N projects, the objects the operator would write for it, as plain
//!    Kubernetes objects in a namespace `direct-<i>`: the namespace, a ResourceQuota, a
//!    LimitRange, four RoleBindings (three memberships and the customer's owner), two
//!    ClusterRoles and their two ClusterRoleBindings. The namespaces carry no tenancy labels, so
//!    the operator and its RoleBinding webhook leave them alone. IN_FLIGHT projects at a time,
//!    each project's objects one after another; timed from the first request to the last
//!    response.
//! b. **through the operator**: one customer per 50 projects (an owner and a budget, so every
//!    project create reserves quota in the ledger), not timed; then N Projects, each followed by
//!    its 3 ProjectMemberships as soon as its namespace exists (the create is retried while the
//!    namespace is missing, as a GitOps tool would), IN_FLIGHT projects at a time; timed from the
//!    first request until every Project and every membership is `Ready=True`.
//!
//! Then: the ratio b/a; the webhook p50/p99 as kube-apiserver measures it
//! (`apiserver_admission_webhook_admission_duration_seconds`, every webhook of the operator, over
//! b); the operator's writes and reconciles per project over b; its RSS and CPU after b; its
//! writes and CPU in a 15 s quiet window after that.
//!
//! `BENCH_PROJECTS` (default 200) and `BENCH_IN_FLIGHT` (default 20) set N and the concurrency.
//! One table is printed and the figures written to `target/bench/operator.json` (its path is
//! printed last).

#![recursion_limit = "256"]

#[path = "../tests/e2e/support.rs"]
#[allow(unused_imports)]
mod support;

mod common;

use std::collections::{BTreeMap, HashSet};
use std::fmt::Debug;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{LimitRange, Namespace, ResourceQuota, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tenancy_operator::api::{Customer, Project, ProjectMembership};
use tenancy_operator::devcluster::bench_table;

use common::{
    by_label, cpu_seconds, delta, env_usize, operator_metrics, print_table, rss_mib, samples,
    total, transient, write_report, writes_by_kind,
};

/// Projects per customer in b (the "one customer per 50 projects").
const PROJECTS_PER_CUSTOMER: usize = 50;
/// Each project's memberships: name, role, and the ClusterRole the operator binds for it.
const MEMBERS: [(&str, &str, &str); 3] = [
    ("lead", "Manager", "tenancy:project-manager"),
    ("dev", "Administrator", "tenancy:project-administrator"),
    ("viewer", "Member", "tenancy:project-member"),
];
/// Marks b's Projects and memberships, so the readiness watches see only them.
const RUN_LABEL: &str = "bench.tenancy.dev/run";
/// How often a membership create is retried while its namespace is missing. A GitOps tool
/// backs off far longer (Argo CD starts at 5 s): this is the operator's best case.
const NAMESPACE_RETRY: Duration = Duration::from_millis(100);
const QUIET_WINDOW: Duration = Duration::from_secs(15);
/// kube-controller-manager's `--resource-quota-sync-period` in the bench: Kubernetes' default.
const QUOTA_SYNC_PERIOD: &str = "5m";

fn customer_name(c: usize) -> String {
    format!("bench-c{c:03}")
}

fn owner_name(c: usize) -> String {
    format!("bench-owner-{c}")
}

fn project_name(i: usize) -> String {
    format!("bench-p{i:05}")
}

fn direct_name(i: usize) -> String {
    format!("direct-{i}")
}

/// The small quota and container limits every project gets, on both sides: the operator
/// writes a LimitRange only for a project that sets `spec.limitRange`.
fn quota() -> Value {
    json!({"hard": {"pods": "10"}})
}

fn limits() -> Value {
    json!({"default": {"cpu": "500m", "memory": "512Mi"},
        "defaultRequest": {"cpu": "100m", "memory": "128Mi"}})
}

// ---------------------------------------------------------------------------------------------
// Requests

/// Creates `object` through `api`; answers how long the create that succeeded took. Transient
/// failures are retried; AlreadyExists is a retried create whose first answer was lost.
async fn create<K>(api: &Api<K>, object: Value) -> Result<Duration, String>
where
    K: Resource + Clone + DeserializeOwned + Serialize + Debug,
{
    let object: K = support::from_json(object);
    // `BENCH_DIRECT_APPLY=1`: a's objects as server-side applies (as a GitOps tool writes them).
    let apply = std::env::var("BENCH_DIRECT_APPLY").is_ok_and(|v| v == "1");
    let mut attempts = 0;
    loop {
        let t = Instant::now();
        let written = match apply {
            true => api
                .patch(
                    &object.name_any(),
                    &PatchParams::apply("bench").force(),
                    &Patch::Apply(&object),
                )
                .await
                .map(|_| ()),
            false => api
                .create(&PostParams::default(), &object)
                .await
                .map(|_| ()),
        };
        match written {
            Ok(_) => return Ok(t.elapsed()),
            Err(kube::Error::Api(s)) if s.is_already_exists() && attempts > 0 => {
                return Ok(t.elapsed());
            }
            Err(e) if transient(&e) && attempts < 20 => {
                attempts += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => return Err(format!("creating {}: {e}", object.name_any())),
        }
    }
}

/// A membership create, retried while its namespace does not exist yet (404): (how long the
/// create that succeeded took, how long it waited for the namespace, retries).
async fn create_when_namespace_exists(
    api: &Api<ProjectMembership>,
    object: Value,
    deadline: Instant,
) -> Result<(Duration, Duration, u32), String> {
    let object: ProjectMembership = support::from_json(object);
    let started = Instant::now();
    let mut retries = 0;
    loop {
        let t = Instant::now();
        match api.create(&PostParams::default(), &object).await {
            Ok(_) => return Ok((t.elapsed(), t - started, retries)),
            Err(kube::Error::Api(s)) if s.is_already_exists() && retries > 0 => {
                return Ok((t.elapsed(), t - started, retries));
            }
            Err(e)
                if (matches!(&e, kube::Error::Api(s) if s.is_not_found()) || transient(&e))
                    && Instant::now() < deadline =>
            {
                retries += 1;
                tokio::time::sleep(NAMESPACE_RETRY).await;
            }
            Err(e) => {
                return Err(format!(
                    "creating membership {}/{}: {e}",
                    object.namespace().unwrap_or_default(),
                    object.name_any()
                ));
            }
        }
    }
}

/// Nearest-rank percentile in milliseconds.
fn percentile_ms(durations: &mut [Duration], p: f64) -> f64 {
    if durations.is_empty() {
        return 0.0;
    }
    durations.sort();
    let i = ((durations.len() as f64 - 1.0) * p).round() as usize;
    durations[i].as_secs_f64() * 1000.0
}

// ---------------------------------------------------------------------------------------------
// a. Direct

/// An RBAC subject: the user `name`.
fn user(name: &str) -> Value {
    json!({"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": name})
}

fn role_ref(cluster_role: &str) -> Value {
    json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": cluster_role})
}

/// A rule on one named object of a tenancy.dev resource.
fn rule(resource: &str, name: &str, verbs: &[&str]) -> Value {
    json!({"apiGroups": ["tenancy.dev"], "resources": [resource], "resourceNames": [name],
        "verbs": verbs})
}

/// Writes project `i`'s objects, one after another (the namespaced ones need the namespace);
/// answers how long each create took.
async fn write_direct(client: &Client, i: usize) -> Result<Vec<Duration>, String> {
    let ns = direct_name(i);
    let customer = customer_name(i / PROJECTS_PER_CUSTOMER);
    let owner_name = owner_name(i / PROJECTS_PER_CUSTOMER);
    let owner = user(&owner_name);
    let member = |m: &str| user(&format!("{ns}-{m}"));
    let reader = format!("direct:project:{ns}");
    let manager = format!("{reader}:manage");
    let mut took = Vec::with_capacity(11);

    let namespaces = Api::<Namespace>::all(client.clone());
    took.push(create(&namespaces, json!({"metadata": {"name": ns}})).await?);
    let quotas = Api::<ResourceQuota>::namespaced(client.clone(), &ns);
    let quota = json!({"metadata": {"name": "tenancy-quota"}, "spec": quota()});
    took.push(create(&quotas, quota).await?);
    let mut item = limits();
    item["type"] = json!("Container");
    let limit_ranges = Api::<LimitRange>::namespaced(client.clone(), &ns);
    let limit_range = json!({"metadata": {"name": "tenancy-limits"}, "spec": {"limits": [item]}});
    took.push(create(&limit_ranges, limit_range).await?);

    // One RoleBinding per membership, and one for the customer's owner (who manages every
    // project of the customer).
    let bindings = Api::<RoleBinding>::namespaced(client.clone(), &ns);
    for (m, _, role) in MEMBERS {
        let binding = json!({"metadata": {"name": format!("tenancy-member-{m}")},
            "roleRef": role_ref(role), "subjects": [member(m)]});
        took.push(create(&bindings, binding).await?);
    }
    let binding = json!({"metadata": {"name": format!("tenancy-owner-{owner_name}")},
        "roleRef": role_ref(MEMBERS[0].2), "subjects": [owner]});
    took.push(create(&bindings, binding).await?);

    // Readers may get the Project and its Customer; managers may also change and delete it.
    let roles = Api::<ClusterRole>::all(client.clone());
    let reading = json!({"metadata": {"name": reader}, "rules": [
        rule("projects", &ns, &["get", "watch"]),
        rule("customers", &customer, &["get", "watch"])]});
    took.push(create(&roles, reading).await?);
    let managing = json!({"metadata": {"name": manager},
        "rules": [rule("projects", &ns, &["update", "patch", "delete"])]});
    took.push(create(&roles, managing).await?);
    let role_bindings = Api::<ClusterRoleBinding>::all(client.clone());
    let readers: Vec<Value> = MEMBERS
        .iter()
        .map(|(m, _, _)| member(m))
        .chain([owner.clone()])
        .collect();
    let reading = json!({"metadata": {"name": reader}, "roleRef": role_ref(&reader),
        "subjects": readers});
    took.push(create(&role_bindings, reading).await?);
    let managing = json!({"metadata": {"name": manager}, "roleRef": role_ref(&manager),
        "subjects": [member(MEMBERS[0].0), owner]});
    took.push(create(&role_bindings, managing).await?);
    Ok(took)
}

struct Direct {
    seconds: f64,
    objects: usize,
    request_p50_ms: f64,
    request_p99_ms: f64,
}

fn direct(
    env: &support::Env,
    client: &Client,
    n: usize,
    in_flight: usize,
) -> Result<Direct, String> {
    let started = Instant::now();
    let results: Vec<Result<Vec<Duration>, String>> = env.block_on(
        futures::stream::iter(0..n)
            .map(|i| write_direct(client, i))
            .buffer_unordered(in_flight)
            .collect(),
    );
    let seconds = started.elapsed().as_secs_f64();
    let mut took = Vec::new();
    for r in results {
        took.extend(r?);
    }
    // The controller-manager follows every new namespace with a ServiceAccount and a
    // ConfigMap; b starts once it has caught up, so a's writes do not spill into b's time.
    env.block_on(support::wait_for(
        "the controller-manager's default ServiceAccount in every direct namespace",
        // 10,000 namespaces take the controller-manager longer than 5 minutes.
        Duration::from_secs(300.max(n as u64 / 5)),
        || async {
            let list = Api::<ServiceAccount>::all(client.clone())
                .list_metadata(&ListParams::default().fields("metadata.name=default"))
                .await
                .ok()?;
            let done = list
                .items
                .iter()
                .filter(|sa| sa.namespace().is_some_and(|ns| ns.starts_with("direct-")))
                .count();
            (done >= n).then_some(())
        },
    ))
    .map_err(|e| e.message().unwrap_or_default().to_string())?;
    Ok(Direct {
        seconds,
        objects: took.len(),
        request_p50_ms: percentile_ms(&mut took, 0.5),
        request_p99_ms: percentile_ms(&mut took, 0.99),
    })
}

// ---------------------------------------------------------------------------------------------
// b. Through the operator

fn is_ready(conditions: &[Condition]) -> bool {
    conditions
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

/// Watches this run's objects of `K` until `want` of them are Ready at once; answers when.
/// A watch rather than polling: listing thousands of objects every second would load the
/// apiserver the operator is measured on.
async fn all_ready<K>(api: Api<K>, want: usize, ready: fn(&K) -> bool) -> Instant
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    let stream = watcher(api, watcher::Config::default().labels(RUN_LABEL))
        .default_backoff()
        .applied_objects();
    let mut stream = std::pin::pin!(stream);
    let mut done = HashSet::new();
    while let Some(next) = stream.next().await {
        let Ok(object) = next else { continue };
        let key = format!(
            "{}/{}",
            object.namespace().unwrap_or_default(),
            object.name_any()
        );
        if ready(&object) {
            done.insert(key);
        } else {
            done.remove(&key);
        }
        if done.len() >= want {
            break;
        }
    }
    Instant::now()
}

/// How one project of b went.
struct Applied {
    project: Duration,
    memberships: Vec<Duration>,
    namespace_wait: Duration,
    retries: u32,
}

/// Creates project `i`, then its memberships once its namespace exists.
async fn apply_project(client: &Client, i: usize, deadline: Instant) -> Result<Applied, String> {
    let name = project_name(i);
    let project = create(
        &Api::<Project>::all(client.clone()),
        json!({"apiVersion": "tenancy.dev/v1alpha1", "kind": "Project",
            "metadata": {"name": name, "labels": {RUN_LABEL: "operator"}},
            "spec": {"customer": customer_name(i / PROJECTS_PER_CUSTOMER),
                "quota": quota(), "limitRange": limits()}}),
    )
    .await?;
    let api = Api::<ProjectMembership>::namespaced(client.clone(), &name);
    let mut applied = Applied {
        project,
        memberships: Vec::new(),
        namespace_wait: Duration::ZERO,
        retries: 0,
    };
    for (k, (m, role, _)) in MEMBERS.iter().enumerate() {
        let (took, waited, retries) = create_when_namespace_exists(
            &api,
            json!({"apiVersion": "tenancy.dev/v1alpha1", "kind": "ProjectMembership",
                "metadata": {"name": m, "namespace": name, "labels": {RUN_LABEL: "operator"}},
                "spec": {"subject": {"kind": "User", "name": format!("{name}-{m}")},
                    "role": role}}),
            deadline,
        )
        .await?;
        if k == 0 {
            applied.namespace_wait = waited;
        }
        applied.memberships.push(took);
        applied.retries += retries;
    }
    Ok(applied)
}

struct Through {
    seconds: f64,
    applied_seconds: f64,
    project_create: Vec<Duration>,
    membership_create: Vec<Duration>,
    namespace_wait: Vec<Duration>,
    retries: u32,
}

fn through_operator(
    env: &support::Env,
    client: &Client,
    n: usize,
    in_flight: usize,
) -> Result<Through, String> {
    let timeout = Duration::from_secs(600.max(n as u64));
    let projects_ready = env.handle().spawn(all_ready(
        Api::<Project>::all(client.clone()),
        n,
        |p: &Project| p.status.as_ref().is_some_and(|s| is_ready(&s.conditions)),
    ));
    let memberships_ready = env.handle().spawn(all_ready(
        Api::<ProjectMembership>::all(client.clone()),
        3 * n,
        |m: &ProjectMembership| m.status.as_ref().is_some_and(|s| is_ready(&s.conditions)),
    ));
    let started = Instant::now();
    let deadline = started + timeout;
    let results: Vec<Result<Applied, String>> = env.block_on(
        futures::stream::iter(0..n)
            .map(|i| apply_project(client, i, deadline))
            .buffer_unordered(in_flight)
            .collect(),
    );
    let applied_seconds = started.elapsed().as_secs_f64();
    let mut through = Through {
        seconds: 0.0,
        applied_seconds,
        project_create: Vec::new(),
        membership_create: Vec::new(),
        namespace_wait: Vec::new(),
        retries: 0,
    };
    for r in results {
        let a = r?;
        through.project_create.push(a.project);
        through.membership_create.extend(a.memberships);
        through.namespace_wait.push(a.namespace_wait);
        through.retries += a.retries;
    }
    let ready = env.block_on(async {
        tokio::time::timeout(
            deadline.saturating_duration_since(Instant::now()),
            futures::future::try_join(projects_ready, memberships_ready),
        )
        .await
    });
    let (p, m) = match ready {
        Ok(Ok(both)) => both,
        Ok(Err(e)) => return Err(format!("watching for Ready: {e}")),
        Err(_) => {
            return Err(format!(
                "not every project and membership Ready within {timeout:?}"
            ));
        }
    };
    through.seconds = (p.max(m) - started).as_secs_f64();
    Ok(through)
}

// ---------------------------------------------------------------------------------------------
// Metrics

/// kube-apiserver's `apiserver_admission_webhook_admission_duration_seconds` summed over every
/// webhook of the operator (`*.tenancy.dev`), its operations and outcomes.
#[derive(Default)]
struct Histogram {
    /// Cumulative counts by upper bound, ascending (`+Inf` last).
    buckets: Vec<(f64, f64)>,
    sum: f64,
    count: f64,
}

impl Histogram {
    fn parse(text: &str) -> Histogram {
        Histogram::parse_of(text, |name| name.ends_with(".tenancy.dev"))
    }

    /// The webhooks whose configured name `webhook` accepts, summed.
    fn parse_of(text: &str, webhook: impl Fn(&str) -> bool) -> Histogram {
        const NAME: &str = "apiserver_admission_webhook_admission_duration_seconds";
        let ours = |l: &BTreeMap<String, String>| l.get("name").is_some_and(|n| webhook(n));
        let mut by_bound: BTreeMap<String, f64> = BTreeMap::new();
        for (l, v) in samples(text, &format!("{NAME}_bucket")) {
            if ours(&l) {
                *by_bound
                    .entry(l.get("le").cloned().unwrap_or_default())
                    .or_default() += v;
            }
        }
        let sum_of = |suffix: &str| {
            samples(text, &format!("{NAME}{suffix}"))
                .iter()
                .filter(|(l, _)| ours(l))
                .map(|(_, v)| v)
                .sum()
        };
        let mut buckets: Vec<(f64, f64)> = by_bound
            .into_iter()
            .map(|(le, v)| (le.parse().unwrap_or(f64::INFINITY), v))
            .collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        Histogram {
            buckets,
            sum: sum_of("_sum"),
            count: sum_of("_count"),
        }
    }

    /// What was observed between `before` and `self`.
    fn since(&self, before: &Histogram) -> Histogram {
        let earlier = |le: f64| {
            before
                .buckets
                .iter()
                .find(|(b, _)| *b == le)
                .map_or(0.0, |(_, v)| *v)
        };
        Histogram {
            buckets: self
                .buckets
                .iter()
                .map(|&(le, v)| (le, v - earlier(le)))
                .collect(),
            sum: self.sum - before.sum,
            count: self.count - before.count,
        }
    }

    /// The q-quantile in ms as Prometheus' `histogram_quantile` estimates it: linear within
    /// the bucket, the highest finite bound when it falls in `+Inf`.
    fn quantile_ms(&self, q: f64) -> f64 {
        let total = self.buckets.last().map_or(0.0, |b| b.1);
        if total <= 0.0 {
            return 0.0;
        }
        let rank = q * total;
        let mut previous = (0.0, 0.0);
        for &(le, count) in &self.buckets {
            if count >= rank {
                if le.is_infinite() {
                    return previous.0 * 1000.0;
                }
                let within = count - previous.1;
                let fraction = if within > 0.0 {
                    (rank - previous.1) / within
                } else {
                    1.0
                };
                return (previous.0 + (le - previous.0) * fraction) * 1000.0;
            }
            previous = (le, count);
        }
        previous.0 * 1000.0
    }
}

/// kube-apiserver's requests over b by `verb resource` (`apiserver_request_total`, every
/// client: this one, the operator, the controller-manager), per project; watches left out.
fn apiserver_requests(before: &str, after: &str, n: usize) -> BTreeMap<String, f64> {
    let by = |text: &str| {
        let mut out: BTreeMap<String, f64> = BTreeMap::new();
        for (l, v) in samples(text, "apiserver_request_total") {
            let verb = l.get("verb").cloned().unwrap_or_default();
            if verb == "WATCH" {
                continue;
            }
            let resource = match l.get("subresource").filter(|s| !s.is_empty()) {
                Some(sub) => format!("{}/{sub}", l.get("resource").cloned().unwrap_or_default()),
                None => l.get("resource").cloned().unwrap_or_default(),
            };
            *out.entry(format!("{verb} {resource}")).or_default() += v;
        }
        out
    };
    delta(&by(before), &by(after))
        .into_iter()
        .map(|(k, v)| (k, v / n as f64))
        .filter(|(_, v)| *v >= 0.01)
        .collect()
}

fn apiserver_metrics(env: &support::Env, client: &Client) -> Result<String, String> {
    let request = http::Request::get("/metrics")
        .body(Vec::new())
        .map_err(|e| e.to_string())?;
    env.block_on(client.request_text(request))
        .map_err(|e| format!("GET /metrics from kube-apiserver: {e}"))
}

/// Waits until the operator's write counter has stood still for 3 s (trailing status updates,
/// e.g. the customers' aggregates, belong to b); at most 60 s. Answers how long it took.
fn settle(addr: SocketAddr) -> Result<Duration, String> {
    let started = Instant::now();
    let mut last = total(&operator_metrics(addr)?, "tenancy_api_writes_total");
    let mut still_since = Instant::now();
    while still_since.elapsed() < Duration::from_secs(3)
        && started.elapsed() < Duration::from_secs(60)
    {
        std::thread::sleep(Duration::from_millis(500));
        let now = total(&operator_metrics(addr)?, "tenancy_api_writes_total");
        if now != last {
            last = now;
            still_since = Instant::now();
        }
    }
    Ok(started.elapsed())
}

// ---------------------------------------------------------------------------------------------

/// `BENCH_PROFILE=1`: kube-apiserver runs with `--profiling=true` and 20 s of its CPU profile are
/// taken from the start of b into `target/bench/apiserver-b.pprof` (read it with
/// `go tool pprof -top <kube-apiserver binary> target/bench/apiserver-b.pprof`).
fn profiling() -> bool {
    std::env::var("BENCH_PROFILE").is_ok_and(|v| v == "1")
}

/// Starts taking kube-apiserver's CPU profile for `seconds` into `target/bench/<file>`.
fn take_apiserver_profile(
    env: &support::Env,
    seconds: u64,
    file: &str,
) -> Option<std::process::Child> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    let out = std::fs::File::create(dir.join(file)).ok()?;
    std::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(env.cluster().kubeconfig())
        .args([
            "get",
            "--raw",
            &format!("/debug/pprof/profile?seconds={seconds}"),
        ])
        .stdout(out)
        .spawn()
        .ok()
}

fn run(n: usize, in_flight: usize) -> Result<Value, String> {
    // Read before the run: what it measures is what was built.
    let measured = commit();
    let mut opts = tenancy_operator::devcluster::ControlPlaneOptions::default();
    // The suite's control plane recounts every quota every 15 s (a quota counting a kind made
    // after it gets its status soon); the bench measures a cluster as shipped: every 5 minutes.
    opts.extra_controller_manager_args
        .push(format!("--resource-quota-sync-period={QUOTA_SYNC_PERIOD}"));
    if profiling() {
        opts.extra_apiserver_args.push("--profiling=true".into());
    }
    let env = support::Env::start_with(opts)?;
    let args = env.local().run_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let operator = support::start_operator(env.cluster(), &args)?;
    let (pid, addr) = (operator.pid(), operator.metrics_addr());
    let client = env.block_on(env.client());
    let with_log = |e: String| format!("{e}\n--- operator log ---\n{}", operator.log_tail(40));

    // CPU of each process over a phase: the control plane's, the operator's and this client's.
    let processes: Vec<(String, u32)> = env
        .cluster()
        .processes()
        .into_iter()
        .map(|(name, pid)| (name.to_string(), pid))
        .chain([
            ("operator".to_string(), pid),
            ("bench client".to_string(), std::process::id()),
        ])
        .collect();
    let cpu_now = || -> BTreeMap<String, f64> {
        processes
            .iter()
            .map(|(name, pid)| (name.clone(), cpu_seconds(*pid)))
            .collect()
    };

    eprintln!("[bench] a. direct: {n} projects' objects, {in_flight} projects in flight");
    let cpu_a = cpu_now();
    let a = direct(&env, &client, n, in_flight)?;
    let cpu_a = delta(&cpu_a, &cpu_now());
    eprintln!("[bench] a. {} objects in {:.1} s", a.objects, a.seconds);

    // b's customers, not timed; reconciled before b starts.
    let customers = n.div_ceil(PROJECTS_PER_CUSTOMER);
    // Room for twice its projects' pods: every create reserves in the ledger, none is refused.
    let budget = (2 * 10 * PROJECTS_PER_CUSTOMER).to_string();
    env.block_on(async {
        let api = Api::<Customer>::all(client.clone());
        for c in 0..customers {
            create(
                &api,
                json!({"apiVersion": "tenancy.dev/v1alpha1", "kind": "Customer",
                    "metadata": {"name": customer_name(c)},
                    "spec": {"owners": [{"kind": "User", "name": owner_name(c)}],
                        "quota": {"hard": {"pods": budget}}}}),
            )
            .await?;
        }
        support::wait_for("every customer Ready", Duration::from_secs(120), || async {
            let list = api.list(&ListParams::default()).await.ok()?;
            let ready = list
                .items
                .iter()
                .filter(|c| c.status.as_ref().is_some_and(|s| is_ready(&s.conditions)))
                .count();
            (ready >= customers).then_some(())
        })
        .await
        .map_err(|e| e.message().unwrap_or_default().to_string())
    })
    .map_err(with_log)?;
    settle(addr)?;

    let api_before_text = apiserver_metrics(&env, &client)?;
    let api_before = Histogram::parse(&api_before_text);
    let op_before = operator_metrics(addr)?;
    let cpu_b = cpu_now();
    let cpu_before = cpu_seconds(pid);
    eprintln!(
        "[bench] b. through the operator: {customers} customers, {n} projects × 3 memberships, \
         {in_flight} projects in flight"
    );
    let profile = profiling()
        .then(|| take_apiserver_profile(&env, 20, "apiserver-b.pprof"))
        .flatten();
    let mut b = through_operator(&env, &client, n, in_flight).map_err(with_log)?;
    if let Some(mut p) = profile {
        let _ = p.wait();
    }
    eprintln!(
        "[bench] b. all applied in {:.1} s, all Ready in {:.1} s",
        b.applied_seconds, b.seconds
    );
    let cpu_b = delta(&cpu_b, &cpu_now());
    let settled = settle(addr)?;
    let api_after_text = apiserver_metrics(&env, &client)?;
    let webhooks = Histogram::parse(&api_after_text).since(&api_before);
    // Each webhook of the operator on its own (mutating, validating, RoleBindings): p50, p99,
    // calls per project.
    let by_webhook: BTreeMap<String, Value> = ["mutate", "validate", "rolebindings"]
        .into_iter()
        .map(|w| {
            let name = format!("{w}.tenancy.dev");
            let h = Histogram::parse_of(&api_after_text, |n| n == name)
                .since(&Histogram::parse_of(&api_before_text, |n| n == name));
            (
                name.clone(),
                json!({"p50_ms": h.quantile_ms(0.5), "p99_ms": h.quantile_ms(0.99),
                    "mean_ms": h.sum / h.count.max(1.0) * 1000.0,
                    "calls_per_project": h.count / n as f64}),
            )
        })
        .collect();
    let op_after = operator_metrics(addr)?;
    let (rss, cpu) = (rss_mib(pid), cpu_seconds(pid));

    // The quiet window: nothing changes, so the operator should write nothing.
    std::thread::sleep(QUIET_WINDOW);
    let op_quiet = operator_metrics(addr)?;
    let quiet_writes =
        total(&op_quiet, "tenancy_api_writes_total") - total(&op_after, "tenancy_api_writes_total");
    let quiet_reconciles =
        total(&op_quiet, "tenancy_reconciles_total") - total(&op_after, "tenancy_reconciles_total");
    // Steady state: the operator's CPU over the quiet window (its timers, the views index's
    // minute, metrics scrapes by this bench).
    let quiet_cpu = cpu_seconds(pid) - cpu;
    let rewrites = bench_table::project_status_rewrites(
        &std::fs::read_to_string(operator.log_path()).unwrap_or_default(),
    );
    // Settled: what the operator keeps once the views' watch history is let go of (75 s after it
    // was replaced, looked at once a minute).
    let settle = Duration::from_secs(env_usize("BENCH_SETTLE_SECONDS", 0) as u64);
    let rss_settled = (!settle.is_zero()).then(|| {
        std::thread::sleep(settle.saturating_sub(QUIET_WINDOW));
        rss_mib(pid)
    });

    let per = |metric: &str| (total(&op_after, metric) - total(&op_before, metric)) / n as f64;
    let by = |metric: &str, label: &str| {
        delta(
            &by_label(&op_before, metric, label),
            &by_label(&op_after, metric, label),
        )
    };
    // A histogram's mean over b in ms, by `label`.
    let mean_of = |metric: &str, label: &str| -> BTreeMap<String, f64> {
        let (sums, counts) = (
            by(&format!("{metric}_sum"), label),
            by(&format!("{metric}_count"), label),
        );
        counts
            .iter()
            .map(|(c, k)| {
                (
                    c.clone(),
                    sums.get(c).copied().unwrap_or(0.0) / k.max(1.0) * 1000.0,
                )
            })
            .collect()
    };
    // Where a reconcile's time goes, per controller, over b: mean wait in the queue and mean run.
    let mean_ms = |metric: &str| mean_of(metric, "controller");
    // The histogram's buckets over b, in order: [upper bound, cumulative count].
    let buckets: Vec<Value> = webhooks
        .buckets
        .iter()
        .map(|&(le, count)| match le.is_finite() {
            true => json!([le.to_string(), count]),
            false => json!(["+Inf", count]),
        })
        .collect();
    let change = |metric: &str| total(&op_after, metric) - total(&op_before, metric);
    let writes_by_kind: BTreeMap<String, f64> =
        delta(&writes_by_kind(&op_before), &writes_by_kind(&op_after))
            .into_iter()
            .map(|(k, v)| (k, v / n as f64))
            .collect();
    let report = json!({
        "projects": n,
        "in_flight": in_flight,
        "build": if cfg!(debug_assertions) { "debug" } else { "release" },
        "commit": measured,
        "date": jiff::Zoned::now().date().to_string(),
        "customers": customers,
        "ratio": b.seconds / a.seconds,
        "direct_seconds": a.seconds,
        "direct_objects": a.objects,
        "direct_request_p50_ms": a.request_p50_ms,
        "direct_request_p99_ms": a.request_p99_ms,
        "operator_seconds": b.seconds,
        "operator_applied_seconds": b.applied_seconds,
        "project_create_p50_ms": percentile_ms(&mut b.project_create, 0.5),
        "project_create_p99_ms": percentile_ms(&mut b.project_create, 0.99),
        "membership_create_p50_ms": percentile_ms(&mut b.membership_create, 0.5),
        "membership_create_p99_ms": percentile_ms(&mut b.membership_create, 0.99),
        "namespace_wait_p50_ms": percentile_ms(&mut b.namespace_wait, 0.5),
        "namespace_wait_p99_ms": percentile_ms(&mut b.namespace_wait, 0.99),
        "membership_retries": b.retries,
        "webhook_calls_per_project": webhooks.count / n as f64,
        "webhook_mean_ms": webhooks.sum / webhooks.count.max(1.0) * 1000.0,
        "webhook_p50_ms": webhooks.quantile_ms(0.5),
        "webhook_p99_ms": webhooks.quantile_ms(0.99),
        "writes_per_project": per("tenancy_api_writes_total"),
        "writes_per_project_by_kind": writes_by_kind,
        "reconciles_per_project": per("tenancy_reconciles_total"),
        "reconciles_by_controller": by("tenancy_reconciles_total", "controller"),
        "reconcile_queue_wait_mean_ms": mean_ms("tenancy_reconcile_queue_wait_seconds"),
        "reconcile_duration_mean_ms": mean_ms("tenancy_reconcile_duration_seconds"),
        // Reconcile time summed over each controller's workers (`--concurrency`, 8 by default):
        // divided by the workers, a floor under b's wall time when one controller is the limit.
        "reconcile_busy_seconds": by("tenancy_reconcile_duration_seconds_sum", "controller"),
        // The views index: built from everything at start and once a minute while things
        // change, updated from the names that changed in between (each counts as a build).
        "views_index_builds": change("tenancy_views_index_build_seconds_count"),
        "views_index_build_seconds": change("tenancy_views_index_build_seconds_sum"),
        "webhook_buckets": buckets,
        "webhooks": by_webhook,
        "apiserver_requests_per_project": apiserver_requests(&api_before_text, &api_after_text, n),
        // The validating webhook's own time per decision, by kind (the rest of what
        // kube-apiserver measures is the call: connection, encoding, queueing).
        "admission_decision_mean_ms": mean_of("tenancy_admission_duration_seconds", "kind"),
        "cpu_seconds_during_a_by_process": cpu_a,
        "cpu_seconds_during_b_by_process": cpu_b,
        "settle_seconds": settled.as_secs_f64(),
        "rss_mib": rss,
        "rss_settled_mib": rss_settled,
        // The quiet window came first: never sooner than that.
        "rss_settled_after_seconds": settle.max(QUIET_WINDOW).as_secs(),
        "cpu_seconds": cpu,
        "cpu_seconds_during_b": cpu - cpu_before,
        "quiet_window_seconds": QUIET_WINDOW.as_secs(),
        "quiet_writes": quiet_writes,
        "quiet_reconciles": quiet_reconciles,
        "quiet_cpu_seconds": quiet_cpu,
        "project_status_rewrites_by_change": rewrites,
    });
    operator.stop();
    env.shutdown();
    Ok(report)
}

/// `{"k": 1.234, ...}` as `k 1.2 unit, ...`.
fn seconds_by_key(v: &Value, unit: &str) -> String {
    v.as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k} {:.1} {unit}", v.as_f64().unwrap_or(f64::NAN)))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

fn table(r: &Value) {
    let f = |k: &str| r[k].as_f64().unwrap_or(f64::NAN);
    println!(
        "\nThe operator next to writing the objects yourself: {} projects × 3 memberships, \
         {} in flight, {} build\n",
        r["projects"],
        r["in_flight"],
        r["build"].as_str().unwrap_or("?")
    );
    let rows = [
        (
            format!(
                "a. direct: {} plain objects ({} per project)",
                r["direct_objects"],
                f("direct_objects") / f("projects")
            ),
            format!(
                "{:.1} s (request p50 {:.1} ms, p99 {:.1} ms)",
                f("direct_seconds"),
                f("direct_request_p50_ms"),
                f("direct_request_p99_ms")
            ),
        ),
        (
            format!(
                "b. through the operator: every Project and membership Ready ({} customers)",
                r["customers"]
            ),
            format!(
                "{:.1} s (all applied at {:.1} s)",
                f("operator_seconds"),
                f("operator_applied_seconds")
            ),
        ),
        ("ratio b / a".into(), format!("{:.2}×", f("ratio"))),
        (
            "webhook latency as kube-apiserver measures it, p50 / p99 (mean)".into(),
            format!(
                "{:.1} / {:.1} ms ({:.1} ms; {:.1} calls per project)",
                f("webhook_p50_ms"),
                f("webhook_p99_ms"),
                f("webhook_mean_ms"),
                f("webhook_calls_per_project")
            ),
        ),
        (
            "each webhook: p50 / p99 ms (calls per project)".into(),
            r["webhooks"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(name, h)| {
                            let g = |k: &str| h[k].as_f64().unwrap_or(f64::NAN);
                            format!(
                                "{name} {:.1} / {:.1} ({:.1})",
                                g("p50_ms"),
                                g("p99_ms"),
                                g("calls_per_project")
                            )
                        })
                        .collect::<Vec<_>>()
                        .join("; ")
                })
                .unwrap_or_default(),
        ),
        (
            "the validating webhook's own decision, mean by kind".into(),
            seconds_by_key(&r["admission_decision_mean_ms"], "ms"),
        ),
        (
            "CPU seconds by process during a".into(),
            seconds_by_key(&r["cpu_seconds_during_a_by_process"], "s"),
        ),
        (
            "CPU seconds by process during b".into(),
            seconds_by_key(&r["cpu_seconds_during_b_by_process"], "s"),
        ),
        (
            "project create / membership create as the client sees it, p50 / p99".into(),
            format!(
                "{:.1} / {:.1} ms; {:.1} / {:.1} ms",
                f("project_create_p50_ms"),
                f("project_create_p99_ms"),
                f("membership_create_p50_ms"),
                f("membership_create_p99_ms")
            ),
        ),
        (
            "from the project's create to its namespace (first membership accepted), p50 / p99"
                .into(),
            format!(
                "{:.0} / {:.0} ms ({} membership creates retried)",
                f("namespace_wait_p50_ms"),
                f("namespace_wait_p99_ms"),
                r["membership_retries"]
            ),
        ),
        (
            "operator writes per project".into(),
            format!("{:.1}", f("writes_per_project")),
        ),
        (
            "operator reconciles per project".into(),
            format!("{:.1}", f("reconciles_per_project")),
        ),
        (
            "operator RSS after b".into(),
            format!("{:.0} MiB", f("rss_mib")),
        ),
        (
            format!(
                "operator RSS {} s after b (BENCH_SETTLE_SECONDS)",
                r["rss_settled_after_seconds"]
            ),
            r["rss_settled_mib"]
                .as_f64()
                .map(|v| format!("{v:.0} MiB"))
                .unwrap_or_else(|| "not measured".into()),
        ),
        (
            "operator CPU since it started (during b)".into(),
            format!(
                "{:.1} s ({:.1} s)",
                f("cpu_seconds"),
                f("cpu_seconds_during_b")
            ),
        ),
        (
            format!(
                "operator writes (reconciles) in a {} s quiet window",
                r["quiet_window_seconds"]
            ),
            format!("{} ({})", f("quiet_writes"), f("quiet_reconciles")),
        ),
        (
            format!(
                "operator CPU in the {} s quiet window",
                r["quiet_window_seconds"]
            ),
            format!("{:.2} s", f("quiet_cpu_seconds")),
        ),
    ];
    print_table(&rows);
}

fn main() {
    // `cargo bench` passes --bench; nothing else is taken.
    let n = env_usize("BENCH_PROJECTS", 200);
    let in_flight = env_usize("BENCH_IN_FLIGHT", 20);
    let report = match run(n, in_flight) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("[bench] failed: {e}");
            std::process::exit(1);
        }
    };
    eprintln!("[bench] {report}");
    let (path, written) = write_report("operator.json", &report);
    if let Err(e) = written {
        eprintln!("[bench] writing {}: {e}", path.display());
        std::process::exit(1);
    }
    table(&report);
    // The README's table is made from the results kept in bench/ (one per size and
    // concurrency); a profiled run or one writing a by apply measures something else.
    if !profiling() && std::env::var("BENCH_DIRECT_APPLY").is_err() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        match bench_table::keep(&report, &root.join("bench"), &root.join("README.md")) {
            Ok(kept) => println!("kept as {}; README.md's table made again", kept.display()),
            Err(e) => eprintln!("[bench] keeping the result: {e}"),
        }
    }
    println!("\nwritten to {}", path.display());
}

/// The commit measured, `-dirty` when files other than the README and the kept results
/// (`bench/`, which each run writes) differ from it; `unknown` outside a git checkout.
fn commit() -> String {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| String::from_utf8(o.stdout).ok())
    };
    let Some(head) = git(&["rev-parse", "--short=7", "HEAD"]) else {
        return "unknown".into();
    };
    let changed = git(&[
        "status",
        "--porcelain",
        "--",
        ".",
        ":(exclude)README.md",
        ":(exclude)bench",
    ])
    .is_none_or(|s| !s.trim().is_empty());
    format!("{}{}", head.trim(), if changed { "-dirty" } else { "" })
}
