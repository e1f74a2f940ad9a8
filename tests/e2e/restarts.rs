//! Control-plane restarts: kube-apiserver killed in the middle of a burst of creations, etcd
//! killed under a running kube-apiserver, and the webhook unreachable for 30 s.
//!
//! Each trial starts a control plane and an operator of its own (installed like the suite's:
//! CRDs, role ClusterRoles, the chart's webhook configurations), so the suite's cluster is never
//! disturbed, and runs alone. The promises: the operator reconnects by itself (the same process
//! throughout), nothing is half-applied at the end (every stored Project Ready with its
//! namespace, quota and bindings, every membership Active and bound, the ledger equal to what
//! stored projects hold), changes made after the restart are reconciled (the watches resumed),
//! the webhook's `failurePolicy: Fail` refuses everything while it cannot be reached (never
//! admits unchecked), and `/readyz` tells the truth throughout: ready before, not ready while
//! the control plane is down, ready again once the operator can work.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ResourceQuota};
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::{DeleteParams, ListParams};
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};
use tenancy_operator::api::{Customer, MembershipPhase, Project, ProjectMembership};
use tenancy_operator::devcluster::install::{LocalOperator, install};
use tenancy_operator::devcluster::{ControlPlane, ControlPlaneOptions, free_port};
use tenancy_operator::ledger;

use crate::support::{
    Checks, Env, Expectation, Failed, OperatorProcess, TestResult, Trial, access_review, customer,
    from_json, http_get, merge, owners, patch_params, pp, project, refusal, start_operator,
    wait_until_every,
};

/// How long one of these trials may run (each starts a control plane of its own).
const RESTART_TRIAL_TIMEOUT: Duration = Duration::from_secs(480);
/// How many projects (each with one membership) are in flight when a component is killed.
const BURST: usize = 100;
/// The burst's projects that must be stored before the kill: the rest are still in flight.
const KILL_AFTER_STORED: usize = 10;
/// How long the killed component stays down.
const OUTAGE: Duration = Duration::from_secs(15);
/// From how long after the kill `/readyz` must say not ready: the operator asks kube-apiserver
/// every 2 s (3 s timeout) and reports an outage once it lasts 3 s; the rest is margin.
const NOT_READY_WITHIN: Duration = Duration::from_secs(10);
/// How long the webhook is unreachable.
const WEBHOOK_OUTAGE: Duration = Duration::from_secs(30);
/// Bound of every wait for the operator (generous: 2 busy cores).
const WAIT: Duration = Duration::from_secs(60);
/// How often these trials poll what they wait for.
const POLL: Duration = Duration::from_millis(500);
/// The ledger's repair waits for an admission to settle (30 s) before it releases a reservation
/// that no stored project holds (a create admitted, then lost with kube-apiserver).
const LEDGER_WAIT: Duration = Duration::from_secs(120);

const CUSTOMER: &str = "acme";
/// The burst's customers, each with its own ledger (a ledger batches the reservations of
/// concurrent creations, so one customer's creations are answered in bunches).
const BURST_CUSTOMERS: [&str; 4] = ["acme", "globex", "initech", "umbrella"];
const OWNER: &str = "olga@acme.example";

pub fn exclusive_trials(env: &Arc<Env>) -> Vec<Trial> {
    vec![
        restart_trial(
            env,
            "restarts::kube_apiserver_killed_mid_burst_everything_converges_without_an_operator_restart",
            false,
            |env, own| async move { burst_through_an_outage(env, own, Component::Apiserver).await },
        ),
        restart_trial(
            env,
            "restarts::etcd_killed_under_a_running_apiserver_everything_converges_and_watches_resume",
            false,
            |env, own| async move { burst_through_an_outage(env, own, Component::Etcd).await },
        ),
        restart_trial(
            env,
            "restarts::an_unreachable_webhook_refuses_everything_then_the_rules_decide_again",
            true,
            unreachable_webhook,
        ),
    ]
}

/// A trial with a control plane and an operator of its own (`gated`: the webhook reached
/// through a [`Gate`]), failing after [`RESTART_TRIAL_TIMEOUT`].
fn restart_trial<F, Fut>(env: &Arc<Env>, name: &str, gated: bool, test: F) -> Trial
where
    F: FnOnce(Arc<Env>, Own) -> Fut + Send + 'static,
    Fut: Future<Output = TestResult>,
{
    let env = env.clone();
    let name_owned = name.to_string();
    Trial::test(name, move || {
        let own = Own::start(&env, gated)?;
        let future = test(env.clone(), own);
        env.block_on(async move {
            match tokio::time::timeout(RESTART_TRIAL_TIMEOUT, future).await {
                Ok(result) => result,
                Err(_) => Err(format!(
                    "{name_owned} did not finish within {RESTART_TRIAL_TIMEOUT:?}"
                )
                .into()),
            }
        })
    })
}

// ---------------------------------------------------------------------------------------------
// A control plane and an operator of the trial's own

struct Own {
    /// Declared first: stopped before the control plane.
    operator: OperatorProcess,
    gate: Option<Gate>,
    cluster: ControlPlane,
    /// How long the control plane, the install and the operator took to start.
    started_in: Duration,
}

impl Own {
    fn start(env: &Env, gated: bool) -> Result<Own, Failed> {
        let t = Instant::now();
        let cluster = ControlPlane::start(ControlPlaneOptions::default())
            .map_err(|e| format!("this trial's control plane did not start: {e}"))?;
        let webhook_port = free_port().map_err(|e| format!("picking a port: {e}"))?;
        let gate = if gated {
            Some(env.block_on(Gate::open(webhook_port))?)
        } else {
            None
        };
        // The webhook configurations and the views' APIService point at the gate when there
        // is one; the operator serves on its own port behind it.
        let local = LocalOperator {
            namespace: "tenancy-system".into(),
            webhook_port: gate.as_ref().map_or(webhook_port, |g| g.port),
            config_name: "tenancy-operator".into(),
        };
        env.block_on(async {
            install(&cluster.client().await, &local)
                .await
                .map_err(|e| format!("installing the CRDs, roles and webhook configurations: {e}"))
        })?;
        let args: Vec<String> = local
            .run_args()
            .into_iter()
            .map(|a| {
                if a.starts_with("--webhook-addr=") {
                    format!("--webhook-addr=127.0.0.1:{webhook_port}")
                } else {
                    a
                }
            })
            .collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let operator = start_operator(&cluster, &args)?;
        Ok(Own {
            operator,
            gate,
            cluster,
            started_in: t.elapsed(),
        })
    }

    async fn admin(&self) -> Client {
        self.cluster.client().await
    }

    fn client_as(&self, user: &str, groups: &[&str]) -> Client {
        let mut config = self.cluster.client_config();
        config.auth_info.impersonate = Some(user.to_string());
        config.auth_info.impersonate_groups = Some(groups.iter().map(|g| g.to_string()).collect());
        Client::try_from(config).expect("an impersonating client config is valid")
    }

    fn operator_log(&self) -> String {
        format!(
            "\n--- last lines of {} ---\n{}",
            self.operator.log_path().display(),
            self.operator.log_tail(40)
        )
    }
}

/// A TCP relay in front of the operator's webhook port that can cut every connection and refuse
/// new ones (accepted and closed at once), so that only the webhook becomes unreachable: the
/// operator itself runs on, and so do its watches.
struct Gate {
    port: u16,
    up: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Gate {
    async fn open(target: u16) -> Result<Gate, String> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("binding the webhook gate: {e}"))?;
        let port = listener
            .local_addr()
            .map_err(|e| format!("the webhook gate's port: {e}"))?
            .port();
        let (up, watch) = tokio::sync::watch::channel(true);
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                let mut watch = watch.clone();
                if !*watch.borrow_and_update() {
                    drop(inbound);
                    continue;
                }
                tokio::spawn(async move {
                    let Ok(mut outbound) =
                        tokio::net::TcpStream::connect(("127.0.0.1", target)).await
                    else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = watch.wait_for(|up| !*up) => {}
                    }
                });
            }
        });
        Ok(Gate { port, up, task })
    }

    /// Cuts every connection and refuses new ones (`false`), or lets them through (`true`).
    fn set(&self, up: bool) {
        self.up.send_replace(up);
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// ---------------------------------------------------------------------------------------------
// /readyz, sampled from a thread of its own throughout a scenario

#[derive(Clone, Debug)]
struct Sample {
    at: Instant,
    /// None: no answer (which a kubelet counts as not ready too).
    code: Option<u16>,
    body: String,
}

impl Sample {
    fn ready(&self) -> bool {
        self.code == Some(200)
    }

    fn describe(&self, zero: Instant) -> String {
        format!(
            "at {:.1} s: {}",
            self.at.saturating_duration_since(zero).as_secs_f64(),
            match self.code {
                Some(code) => format!("{code} {}", self.body.trim()),
                None => "no answer".into(),
            }
        )
    }
}

struct Readyz {
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<Sample>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Readyz {
    /// Asks `addr`'s `/readyz` every 200 ms until [`Readyz::stop`].
    fn follow(addr: SocketAddr) -> Readyz {
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let (stop, samples) = (stop.clone(), samples.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let at = Instant::now();
                    let answer = http_get(addr, "/readyz");
                    samples.lock().expect("samples lock").push(Sample {
                        at,
                        code: answer.as_ref().map(|(code, _)| *code),
                        body: answer.map(|(_, body)| body).unwrap_or_default(),
                    });
                    std::thread::sleep(Duration::from_millis(200));
                }
            })
        };
        Readyz {
            stop,
            samples,
            thread: Some(thread),
        }
    }

    fn samples(&self) -> Vec<Sample> {
        self.samples.lock().expect("samples lock").clone()
    }

    /// Waits until a sample taken after `after` says ready; returns it.
    async fn wait_ready_after(&self, after: Instant, timeout: Duration) -> Option<Sample> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self
                .samples()
                .into_iter()
                .find(|s| s.at >= after && s.ready())
            {
                return Some(s);
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn stop(mut self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.samples()
    }
}

impl Drop for Readyz {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

// ---------------------------------------------------------------------------------------------
// Scenarios 1 and 2: a burst of creations through a kube-apiserver or etcd outage

#[derive(Clone, Copy, Debug, PartialEq)]
enum Component {
    Apiserver,
    Etcd,
}

impl Component {
    fn name(self) -> &'static str {
        match self {
            Component::Apiserver => "kube-apiserver",
            Component::Etcd => "etcd",
        }
    }
}

fn project_name(i: usize) -> String {
    format!("p-{i:03}")
}

fn member(project: &str) -> String {
    format!("{project}-member@acme.example")
}

fn membership(ns: &str, name: &str, user: &str, role: &str) -> ProjectMembership {
    from_json(json!({
        "apiVersion": "tenancy.dev/v1alpha1", "kind": "ProjectMembership",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"subject": {"kind": "User", "name": user}, "role": role},
    }))
}

fn project_spec(customer: &str, cpu: &str) -> Value {
    json!({"customer": customer, "quota": {"hard": {"requests.cpu": cpu}}})
}

/// What the clients of a burst met: each failure's kind, how often, and one message of it.
#[derive(Default)]
struct Failures(BTreeMap<String, (usize, String)>);

impl Failures {
    fn add(&mut self, error: &kube::Error) {
        let (code, message) = refusal(error);
        let kind = match error {
            kube::Error::Api(s) => format!("HTTP {code} {}", s.reason),
            _ => "no answer".to_string(),
        };
        let entry = self.0.entry(kind).or_insert((0, message));
        entry.0 += 1;
    }

    fn total(&self) -> usize {
        self.0.values().map(|(n, _)| n).sum()
    }

    fn summary(&self) -> String {
        self.0
            .iter()
            .map(|(kind, (n, example))| {
                let example: String = example.chars().take(160).collect();
                format!("{kind}: {n} (e.g. {example:?})")
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// Creates `object` as a client like kubectl or Argo CD would: again after every failure, until
/// it is stored (`409 AlreadyExists`: an earlier attempt was stored and its answer lost) or
/// `deadline` passes.
async fn create_until_stored<K>(
    api: &Api<K>,
    object: &K,
    deadline: Instant,
    failures: &Mutex<Failures>,
) -> Result<(), String>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::Serialize
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    loop {
        let params = pp();
        let attempt = tokio::time::timeout(Duration::from_secs(60), api.create(&params, object));
        let error = match attempt.await {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(kube::Error::Api(s))) if s.code == 409 && s.reason == "AlreadyExists" => {
                return Ok(());
            }
            Ok(Err(e)) => e,
            Err(_) => {
                failures
                    .lock()
                    .expect("failures lock")
                    .0
                    .entry("no answer within 60 s".into())
                    .or_insert((0, String::new()))
                    .0 += 1;
                continue;
            }
        };
        failures.lock().expect("failures lock").add(&error);
        if Instant::now() > deadline {
            return Err(format!(
                "{} {} still not stored; last error: {error}",
                K::kind(&()),
                object.meta().name.clone().unwrap_or_default()
            ));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Starts `BURST` clients at once, each creating one project and then its membership (again
/// until the namespace exists).
fn start_burst(
    admin: Client,
    stored: Arc<AtomicUsize>,
    kill_now: Arc<tokio::sync::Notify>,
    failures: Arc<Mutex<Failures>>,
) -> Vec<tokio::task::JoinHandle<Result<(), String>>> {
    let deadline = Instant::now() + Duration::from_secs(240);
    (0..BURST)
        .map(|i| {
            let (admin, stored, kill_now, failures) = (
                admin.clone(),
                stored.clone(),
                kill_now.clone(),
                failures.clone(),
            );
            tokio::spawn(async move {
                let name = project_name(i);
                let projects = Api::<Project>::all(admin.clone());
                create_until_stored(
                    &projects,
                    &project(
                        &name,
                        project_spec(BURST_CUSTOMERS[i % BURST_CUSTOMERS.len()], "1"),
                    ),
                    deadline,
                    &failures,
                )
                .await?;
                if stored.fetch_add(1, Ordering::Relaxed) + 1 == KILL_AFTER_STORED {
                    kill_now.notify_one();
                }
                let memberships = Api::<ProjectMembership>::namespaced(admin, &name);
                create_until_stored(
                    &memberships,
                    &membership(&name, "member", &member(&name), "Member"),
                    deadline,
                    &failures,
                )
                .await
            })
        })
        .collect()
}

/// Whether every one of `names` is stored and whole: the Project Ready for its generation, its
/// namespace made for it, its ResourceQuota with the project's `requests.cpu`, its membership
/// Active and its member bound in the namespace. Err says what is not, briefly.
async fn whole(
    admin: &Client,
    names: &[String],
    cpu: &BTreeMap<String, String>,
) -> Result<(), String> {
    let lp = ListParams::default();
    let e = |what: &str| {
        let what = what.to_string();
        move |err: kube::Error| format!("listing {what}: {err}")
    };
    let projects: BTreeMap<String, Project> = Api::<Project>::all(admin.clone())
        .list(&lp)
        .await
        .map_err(e("projects"))?
        .items
        .into_iter()
        .map(|p| (p.name_any(), p))
        .collect();
    let namespaces: BTreeMap<String, Namespace> = Api::<Namespace>::all(admin.clone())
        .list(&lp)
        .await
        .map_err(e("namespaces"))?
        .items
        .into_iter()
        .map(|n| (n.name_any(), n))
        .collect();
    let quotas: BTreeMap<String, ResourceQuota> = Api::<ResourceQuota>::all(admin.clone())
        .list(&lp)
        .await
        .map_err(e("resource quotas"))?
        .items
        .into_iter()
        .filter(|q| q.name_any() == "tenancy-quota")
        .map(|q| (q.namespace().unwrap_or_default(), q))
        .collect();
    let memberships: BTreeMap<String, ProjectMembership> =
        Api::<ProjectMembership>::all(admin.clone())
            .list(&lp)
            .await
            .map_err(e("memberships"))?
            .items
            .into_iter()
            .map(|m| {
                (
                    format!("{}/{}", m.namespace().unwrap_or_default(), m.name_any()),
                    m,
                )
            })
            .collect();
    let mut bound: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for rb in Api::<RoleBinding>::all(admin.clone())
        .list(&lp)
        .await
        .map_err(e("role bindings"))?
        .items
    {
        for s in rb.subjects.clone().unwrap_or_default() {
            if s.kind == "User" {
                bound
                    .entry(rb.namespace().unwrap_or_default())
                    .or_default()
                    .push(s.name);
            }
        }
    }
    let mut problems = Vec::new();
    for name in names {
        let Some(p) = projects.get(name) else {
            problems.push(format!("{name}: no Project"));
            continue;
        };
        let status = p.status.as_ref();
        let ready = status.is_some_and(|s| {
            s.conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
                && s.observed_generation == p.metadata.generation
        });
        if !ready {
            problems.push(format!("{name}: not Ready for its generation"));
        }
        let uid = p.uid().unwrap_or_default();
        match namespaces.get(name) {
            None => problems.push(format!("{name}: no namespace")),
            Some(ns) if ns.labels().get("tenancy.dev/project-uid") != Some(&uid) => {
                problems.push(format!("{name}: namespace not made for this project"))
            }
            Some(_) => {}
        }
        let hard = quotas
            .get(name)
            .and_then(|q| q.spec.as_ref()?.hard.as_ref())
            .and_then(|h| h.get("requests.cpu"))
            .map(|q| q.0.clone());
        let want = cpu.get(name).cloned().unwrap_or_else(|| "1".into());
        if hard.as_deref() != Some(want.as_str()) {
            problems.push(format!(
                "{name}: ResourceQuota requests.cpu {hard:?}, not {want:?}"
            ));
        }
        let m = memberships.get(&format!("{name}/member"));
        let active = m
            .and_then(|m| m.status.as_ref()?.phase)
            .is_some_and(|ph| ph == MembershipPhase::Active);
        let is_bound = bound
            .get(name)
            .is_some_and(|users| users.contains(&member(name)));
        match (m.is_some(), active, is_bound) {
            (false, _, false) => problems.push(format!("{name}: no membership")),
            (false, _, true) => problems.push(format!("{name}: bound without a membership")),
            (true, true, true) => {}
            (true, active, is_bound) => problems.push(format!(
                "{name}: membership Active {active}, member bound {is_bound}"
            )),
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} problems, e.g. {}",
            problems.len(),
            problems
                .iter()
                .take(6)
                .cloned()
                .collect::<Vec<_>>()
                .join("; ")
        ))
    }
}

/// The burst customers' ledgers (`customer/project` -> reserved) and what their stored projects
/// hold.
async fn ledger_and_stored(
    admin: &Client,
) -> Result<
    (
        BTreeMap<String, BTreeMap<String, String>>,
        BTreeMap<String, BTreeMap<String, String>>,
    ),
    String,
> {
    let mut reserved = BTreeMap::new();
    for c in BURST_CUSTOMERS {
        let ledger = Api::<ConfigMap>::namespaced(admin.clone(), "tenancy-system")
            .get_opt(&ledger::ledger_name(c))
            .await
            .map_err(|e| format!("reading the ledger of {c}: {e}"))?;
        for (p, r) in ledger.map(|cm| ledger::decode(&cm)).unwrap_or_default() {
            reserved.insert(format!("{c}/{p}"), r.hard);
        }
    }
    let stored = Api::<Project>::all(admin.clone())
        .list(&ListParams::default())
        .await
        .map_err(|e| format!("listing projects: {e}"))?
        .items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .map(|p| {
            (
                format!("{}/{}", p.spec.customer, p.name_any()),
                ledger::allocation(p),
            )
        })
        .collect();
    Ok((reserved, stored))
}

/// The operator's log lines that say a watch failed.
fn watch_failures_logged(own: &Own) -> usize {
    std::fs::read_to_string(own.operator.log_path())
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("watch failed; retrying"))
        .count()
}

async fn burst_through_an_outage(_env: Arc<Env>, mut own: Own, component: Component) -> TestResult {
    let mut t = Checks::default();
    let what = component.name();
    eprintln!(
        "[e2e] restarts ({what}): own control plane and operator started in {:.1} s",
        own.started_in.as_secs_f64()
    );
    let admin = own.admin().await;
    let pid = own.operator.pid();
    for c in BURST_CUSTOMERS {
        Api::<Customer>::all(admin.clone())
            .create(
                &pp(),
                &customer(
                    c,
                    json!({"owners": owners(&[OWNER]), "quota": {"projects": 500, "hard": {"requests.cpu": "1000"}}}),
                ),
            )
            .await?;
    }
    let readyz = Readyz::follow(own.operator.metrics_addr());

    // The burst; the component is killed once KILL_AFTER_STORED of its projects are stored.
    let stored = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(Mutex::new(Failures::default()));
    let began = Instant::now();
    let kill_now = Arc::new(tokio::sync::Notify::new());
    let clients = start_burst(
        admin.clone(),
        stored.clone(),
        kill_now.clone(),
        failures.clone(),
    );
    t.waited(
        &format!("{KILL_AFTER_STORED} of {BURST} projects stored before {what} is killed"),
        tokio::time::timeout(WAIT, kill_now.notified())
            .await
            .map_err(|_| {
                Failed::from(format!(
                    "only {} stored within {WAIT:?}",
                    stored.load(Ordering::Relaxed)
                ))
            }),
    )?;
    let stored_at_kill = stored.load(Ordering::Relaxed);
    let down_at = Instant::now();
    match component {
        Component::Apiserver => own.cluster.kill_apiserver(),
        Component::Etcd => own.cluster.kill_etcd(),
    }
    t.check(
        &format!("project creations in flight when {what} was killed"),
        stored_at_kill < BURST,
        format!("all {BURST} were stored already"),
    );
    eprintln!(
        "[e2e] restarts ({what}): killed {:.1} s into the burst: {stored_at_kill} of {BURST} projects stored, {} project creations and {BURST} memberships in flight",
        began.elapsed().as_secs_f64(),
        BURST - stored_at_kill
    );
    tokio::time::sleep(OUTAGE).await;
    let restart_begun = Instant::now();
    let restarted = match component {
        Component::Apiserver => own.cluster.start_apiserver(),
        Component::Etcd => own.cluster.start_etcd(),
    };
    let restarted_in = t.waited(
        &format!("{what} started again"),
        restarted.map_err(|e| Failed::from(e.to_string())),
    )?;
    // kube-apiserver's own /readyz: at once after its restart; after etcd's, once it reconnected.
    let apiserver_ready = t.waited(
        "kube-apiserver ready again",
        wait_until_every("kube-apiserver's /readyz", WAIT, POLL, || {
            let admin = admin.clone();
            async move {
                let request = http::Request::get("/readyz")
                    .body(Vec::new())
                    .map_err(|e| e.to_string())?;
                admin
                    .request_text(request)
                    .await
                    .map(|_| Instant::now())
                    .map_err(|e| e.to_string())
            }
        })
        .await,
    )?;
    eprintln!(
        "[e2e] restarts ({what}): down {:.1} s; started again in {:.1} s; kube-apiserver ready {:.1} s after the restart began",
        restart_begun.duration_since(down_at).as_secs_f64(),
        restarted_in.as_secs_f64(),
        apiserver_ready.duration_since(restart_begun).as_secs_f64()
    );

    // Every client gets its objects stored in the end.
    let mut client_errors = Vec::new();
    for c in clients {
        match c.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => client_errors.push(e),
            Err(e) => client_errors.push(format!("a client task failed: {e}")),
        }
    }
    let failures = std::mem::take(&mut *failures.lock().expect("failures lock"));
    t.check(
        &format!("every one of the {BURST} clients stored its project and membership, retrying what failed"),
        client_errors.is_empty(),
        client_errors.join("; "),
    );
    eprintln!(
        "[e2e] restarts ({what}): all clients done {:.1} s after the restart began; {} failed requests retried: {}",
        restart_begun.elapsed().as_secs_f64(),
        failures.total(),
        failures.summary()
    );
    let names: Vec<String> = (0..BURST).map(project_name).collect();
    let cpu = BTreeMap::new();
    let converged = wait_until_every(&format!("all {BURST} projects whole"), WAIT, POLL, || {
        whole(&admin, &names, &cpu)
    })
    .await
    .map_err(|e| format!("{}{}", e.message().unwrap_or_default(), own.operator_log()));
    t.waited(
        "every stored project Ready with its namespace and quota, its membership Active and bound",
        converged.map_err(Failed::from),
    )?;
    let converged_in = apiserver_ready.elapsed();
    eprintln!(
        "[e2e] restarts ({what}): {BURST} projects and memberships whole {:.1} s after kube-apiserver was ready again ({:.1} s after the kill)",
        converged_in.as_secs_f64(),
        down_at.elapsed().as_secs_f64()
    );

    // Changes made after the restart are reconciled: the watches resumed.
    let changed = Instant::now();
    Api::<Project>::all(admin.clone())
        .patch(
            &project_name(0),
            &patch_params(),
            &merge(json!({"spec": {"quota": {"hard": {"requests.cpu": "2"}}}})),
        )
        .await?;
    let fresh = "p-after".to_string();
    Api::<Project>::all(admin.clone())
        .create(&pp(), &project(&fresh, project_spec(CUSTOMER, "1")))
        .await?;
    let fresh_membership = wait_until_every("the new project's namespace", WAIT, POLL, || {
        let api = Api::<ProjectMembership>::namespaced(admin.clone(), &fresh);
        let m = membership(&fresh, "member", &member(&fresh), "Member");
        async move {
            api.create(&pp(), &m)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
    })
    .await;
    t.waited(
        "a membership of a project made after the restart is admitted",
        fresh_membership,
    )?;
    let cpu = BTreeMap::from([(project_name(0), "2".to_string())]);
    let after: Vec<String> = vec![project_name(0), fresh.clone()];
    let reconciled = wait_until_every(
        "the changes after the restart reconciled",
        WAIT,
        POLL,
        || whole(&admin, &after, &cpu),
    )
    .await;
    t.waited(
        &format!("changes after the restart reconciled ({} quota raised to 2 cpu; {fresh} made with its membership)", project_name(0)),
        reconciled,
    )?;
    eprintln!(
        "[e2e] restarts ({what}): a quota change and a new project with its membership reconciled {:.1} s after they were made",
        changed.elapsed().as_secs_f64()
    );

    // The ledger equals what the stored projects hold (a reservation admitted for a create that
    // was lost with the outage is released once its admission settled).
    let ledger_began = Instant::now();
    let ledger = wait_until_every("the ledger to equal the stored projects", LEDGER_WAIT, POLL, || {
        let admin = admin.clone();
        async move {
            let (reserved, stored) = ledger_and_stored(&admin).await?;
            if reserved == stored {
                Ok(reserved.len())
            } else {
                let extra: Vec<&String> = reserved.keys().filter(|k| !stored.contains_key(*k)).collect();
                let missing: Vec<&String> = stored.keys().filter(|k| !reserved.contains_key(*k)).collect();
                let differ: Vec<&String> = stored
                    .iter()
                    .filter(|(k, v)| reserved.get(*k).is_some_and(|r| r != *v))
                    .map(|(k, _)| k)
                    .collect();
                Err(format!(
                    "{} reserved, {} stored; reserved without a project {extra:?}, missing {missing:?}, different {differ:?}",
                    reserved.len(),
                    stored.len()
                ))
            }
        }
    })
    .await;
    let entries = t.waited("the ledger equals what the stored projects hold", ledger)?;
    eprintln!(
        "[e2e] restarts ({what}): ledger of {entries} entries equal to the stored projects {:.1} s after the checks began",
        ledger_began.elapsed().as_secs_f64()
    );

    // The same operator process throughout: it reconnected by itself.
    t.equal(
        "the operator is the process started before the outage",
        (own.operator.is_running(), own.operator.pid()),
        (true, pid),
    );
    eprintln!(
        "[e2e] restarts ({what}): {} watch failures in the operator's log, each retried by the watch itself",
        watch_failures_logged(&own)
    );

    // /readyz told the truth throughout.
    let ready_again = readyz.wait_ready_after(restart_begun, WAIT).await;
    let samples = readyz.stop();
    let zero = down_at;
    let before: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.at < down_at && s.code.is_some())
        .collect();
    t.check(
        "/readyz said ready before the kill",
        before.last().is_some_and(|s| s.ready()),
        format!(
            "last answer before: {:?}",
            before.last().map(|s| s.describe(zero))
        ),
    );
    let during: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.at >= down_at + NOT_READY_WITHIN && s.at < restart_begun)
        .collect();
    let wrongly_ready: Vec<String> = during
        .iter()
        .filter(|s| s.ready())
        .map(|s| s.describe(zero))
        .collect();
    t.check(
        &format!(
            "/readyz said not ready throughout the outage from {} s after the kill ({} samples)",
            NOT_READY_WITHIN.as_secs(),
            during.len()
        ),
        !during.is_empty() && wrongly_ready.is_empty(),
        format!("ready at {wrongly_ready:?}"),
    );
    let first_not_ready = samples.iter().find(|s| s.at >= down_at && !s.ready());
    if let Some(s) = first_not_ready {
        t.fact("/readyz first said not ready", true, s.describe(zero));
    }
    t.check(
        "/readyz ready again after the restart",
        ready_again.is_some(),
        format!(
            "samples since the restart: {:?}",
            samples
                .iter()
                .filter(|s| s.at >= restart_begun)
                .rev()
                .take(3)
                .map(|s| s.describe(zero))
                .collect::<Vec<_>>()
        ),
    );
    if let Some(s) = &ready_again {
        eprintln!(
            "[e2e] restarts ({what}): /readyz not ready {:.1} s after the kill ({}); ready again {:.1} s after the restart began ({:.1} s after kube-apiserver was ready)",
            first_not_ready.map_or(f64::NAN, |f| f.at.duration_since(down_at).as_secs_f64()),
            first_not_ready
                .map(|f| f.body.trim().to_string())
                .unwrap_or_default(),
            s.at.saturating_duration_since(restart_begun).as_secs_f64(),
            s.at.saturating_duration_since(apiserver_ready)
                .as_secs_f64()
        );
    }
    let last = samples.last();
    t.check(
        "/readyz ready at the end",
        last.is_some_and(|s| s.ready()),
        format!("{:?}", last.map(|s| s.describe(zero))),
    );
    drop(own);
    t.finish(&format!("restarts: {what} killed mid-burst"))
}

// ---------------------------------------------------------------------------------------------
// Scenario 3: the webhook unreachable for 30 s

/// What a request must come to.
#[derive(Debug)]
enum Expect {
    /// Refused by kube-apiserver because the webhook could not be called (failurePolicy Fail).
    WebhookUnreachable,
    Admitted,
    /// Refused by the rules: this code, a message holding this text.
    Refused(u16, &'static str),
}

impl Expectation for Expect {
    fn met(&self, code: u16, message: &str) -> bool {
        match self {
            Expect::WebhookUnreachable => code == 500 && message.contains("failed calling webhook"),
            Expect::Admitted => code == 200,
            Expect::Refused(c, text) => code == *c && message.contains(text),
        }
    }
}

/// One round of requests by staff and by the customer's owner, each on objects of its own
/// (`round` names them), expecting `outage` answers while the webhook is unreachable and the
/// rules' answers otherwise; then what is stored must match (nothing refused was stored or
/// changed, everything admitted was).
async fn round(
    t: &mut Checks,
    staff: &Client,
    owner: &Client,
    round: &str,
    outage: bool,
) -> TestResult {
    let when = if outage {
        "webhook unreachable"
    } else {
        "webhook back"
    };
    let allowed = |e: Expect| {
        if outage {
            Expect::WebhookUnreachable
        } else {
            e
        }
    };
    let customers = Api::<Customer>::all(staff.clone());
    let projects = Api::<Project>::all(staff.clone());
    let owner_projects = Api::<Project>::all(owner.clone());
    let owner_customers = Api::<Customer>::all(owner.clone());
    let new_customer = format!("c-{round}");
    let staff_project = format!("s-{round}");
    let owner_project = format!("o-{round}");
    let new_member = format!("m-{round}");
    let display = format!("renamed {round}");

    let r = customers
        .create(
            &pp(),
            &customer(&new_customer, json!({"owners": owners(&[OWNER])})),
        )
        .await;
    let admitted = r.is_ok();
    t.row(
        &format!("{when}: staff create Customer {new_customer}"),
        allowed(Expect::Admitted),
        r,
    );
    let stored = customers.get_opt(&new_customer).await?.is_some();
    as_answered(
        t,
        &format!("{when}: Customer {new_customer}"),
        stored,
        admitted,
    );

    let r = customers
        .patch(
            CUSTOMER,
            &patch_params(),
            &merge(json!({"spec": {"displayName": display}})),
        )
        .await;
    let admitted = r.is_ok();
    t.row(
        &format!("{when}: staff change Customer {CUSTOMER}'s displayName"),
        allowed(Expect::Admitted),
        r,
    );
    let shown = customers.get(CUSTOMER).await?.spec.display_name;
    as_answered(
        t,
        &format!("{when}: Customer {CUSTOMER}'s displayName"),
        shown.as_deref() == Some(display.as_str()),
        admitted,
    );

    let r = owner_customers
        .patch(
            CUSTOMER,
            &patch_params(),
            &merge(json!({"spec": {"quota": {"projects": 1000}}})),
        )
        .await;
    let admitted = r.is_ok();
    t.row(
        &format!("{when}: owner change Customer {CUSTOMER}'s quota (staff only)"),
        allowed(Expect::Refused(403, "staff-only")),
        r,
    );
    let quota = customers
        .get(CUSTOMER)
        .await?
        .spec
        .quota
        .and_then(|q| q.projects);
    as_answered(
        t,
        &format!("{when}: Customer {CUSTOMER}'s quota"),
        quota == Some(1000),
        admitted,
    );

    let r = projects
        .create(
            &pp(),
            &project(&staff_project, json!({"customer": CUSTOMER})),
        )
        .await;
    let admitted = r.is_ok();
    t.row(
        &format!("{when}: staff create Project {staff_project}"),
        allowed(Expect::Admitted),
        r,
    );
    as_answered(
        t,
        &format!("{when}: Project {staff_project}"),
        projects.get_opt(&staff_project).await?.is_some(),
        admitted,
    );

    let r = owner_projects
        .create(
            &pp(),
            &project(&owner_project, json!({"customer": CUSTOMER})),
        )
        .await;
    let admitted = r.is_ok();
    t.row(
        &format!("{when}: owner create Project {owner_project}"),
        allowed(Expect::Admitted),
        r,
    );
    as_answered(
        t,
        &format!("{when}: Project {owner_project}"),
        projects.get_opt(&owner_project).await?.is_some(),
        admitted,
    );

    let r = owner_projects
        .patch(
            "p1",
            &patch_params(),
            &merge(json!({"spec": {"displayName": display}})),
        )
        .await;
    let admitted = r.is_ok();
    t.row(
        &format!("{when}: owner change Project p1's displayName"),
        allowed(Expect::Admitted),
        r,
    );
    let shown = projects.get("p1").await?.spec.display_name;
    as_answered(
        t,
        &format!("{when}: Project p1's displayName"),
        shown.as_deref() == Some(display.as_str()),
        admitted,
    );

    let r = owner_projects
        .patch(
            "p1",
            &patch_params(),
            &merge(json!({"spec": {"staffNotes": display}})),
        )
        .await;
    let admitted = r.is_ok();
    t.row(
        &format!("{when}: owner set Project p1's staffNotes (staff only)"),
        allowed(Expect::Refused(403, "spec.staffNotes")),
        r,
    );
    let notes = projects.get("p1").await?.spec.staff_notes;
    as_answered(
        t,
        &format!("{when}: Project p1's staffNotes"),
        notes.as_deref() == Some(display.as_str()),
        admitted,
    );

    let memberships = Api::<ProjectMembership>::namespaced(owner.clone(), "p1");
    let r = memberships
        .create(
            &pp(),
            &membership(
                "p1",
                &new_member,
                &format!("{new_member}@acme.example"),
                "Member",
            ),
        )
        .await;
    let admitted = r.is_ok();
    t.row(
        &format!("{when}: owner add membership {new_member} to p1"),
        allowed(Expect::Admitted),
        r,
    );
    let stored = Api::<ProjectMembership>::namespaced(staff.clone(), "p1")
        .get_opt(&new_member)
        .await?
        .is_some();
    as_answered(
        t,
        &format!("{when}: membership {new_member}"),
        stored,
        admitted,
    );

    let r = memberships
        .patch(
            "dev",
            &patch_params(),
            &merge(json!({"spec": {"role": "Administrator"}})),
        )
        .await;
    let admitted = r.is_ok();
    t.row(
        &format!("{when}: owner change membership dev's role to Administrator"),
        allowed(Expect::Admitted),
        r,
    );
    let role = Api::<ProjectMembership>::namespaced(staff.clone(), "p1")
        .get("dev")
        .await?
        .spec
        .role;
    as_answered(
        t,
        &format!("{when}: membership dev's role"),
        serde_json::to_value(role).ok() == Some(json!("Administrator")),
        admitted,
    );

    if outage {
        // A delete is checked by the webhook too: p1 must not start going.
        let r = projects.delete("p1", &DeleteParams::default()).await;
        t.row(
            &format!("{when}: staff delete Project p1"),
            Expect::WebhookUnreachable,
            r,
        );
        let p1 = projects.get("p1").await?;
        t.check(
            &format!("{when}: Project p1 not being deleted"),
            p1.metadata.deletion_timestamp.is_none(),
            "it has a deletionTimestamp",
        );
    }
    Ok(())
}

/// Whether `what` is stored as the answer said: changed when admitted, as it was when refused.
fn as_answered(t: &mut Checks, what: &str, changed: bool, admitted: bool) {
    let (label, problem) = if admitted {
        (format!("{what}: stored as admitted"), "not stored")
    } else {
        (format!("{what}: nothing stored"), "stored although refused")
    };
    t.check(&label, changed == admitted, problem);
}

async fn unreachable_webhook(_env: Arc<Env>, own: Own) -> TestResult {
    let mut t = Checks::default();
    eprintln!(
        "[e2e] restarts (webhook): own control plane and operator started in {:.1} s",
        own.started_in.as_secs_f64()
    );
    let staff = own.admin().await;
    let owner = own.client_as(OWNER, &[]);
    let pid = own.operator.pid();
    let gate = own
        .gate
        .as_ref()
        .ok_or("this trial's webhook has no gate")?;

    // Before: a customer with an owner who may create projects, and a project of it.
    Api::<Customer>::all(staff.clone())
        .create(
            &pp(),
            &customer(
                CUSTOMER,
                json!({"owners": owners(&[OWNER]), "quota": {"projects": 100}}),
            ),
        )
        .await?;
    t.waited(
        "the owner may create projects (RBAC from the customer's reconcile)",
        wait_until_every("the owner's RBAC", WAIT, POLL, || async {
            access_review(
                &staff,
                OWNER,
                &[],
                "create",
                "projects.tenancy.dev",
                None,
                None,
            )
            .await
            .unwrap_or(false)
            .then_some(())
            .ok_or_else(|| "not yet".to_string())
        })
        .await,
    )?;
    Api::<Project>::all(staff.clone())
        .create(&pp(), &project("p1", json!({"customer": CUSTOMER})))
        .await?;
    let admin = staff.clone();
    t.waited(
        "p1 Ready",
        wait_until_every("p1 Ready", WAIT, POLL, || {
            let api = Api::<Project>::all(admin.clone());
            async move {
                let p = api.get("p1").await.map_err(|e| e.to_string())?;
                p.status
                    .as_ref()
                    .is_some_and(|s| {
                        s.conditions
                            .iter()
                            .any(|c| c.type_ == "Ready" && c.status == "True")
                    })
                    .then_some(())
                    .ok_or_else(|| "not Ready".to_string())
            }
        })
        .await,
    )?;
    Api::<ProjectMembership>::namespaced(staff.clone(), "p1")
        .create(
            &pp(),
            &membership("p1", "dev", "dev@acme.example", "Member"),
        )
        .await?;
    let readyz = Readyz::follow(own.operator.metrics_addr());

    // The window: every connection to the webhook cut for WEBHOOK_OUTAGE; a round of requests
    // at its start, then every 10 s.
    gate.set(false);
    let cut_at = Instant::now();
    let mut rounds = 0;
    while cut_at.elapsed() + Duration::from_secs(8) < WEBHOOK_OUTAGE {
        let round_start = Instant::now();
        rounds += 1;
        round(&mut t, &staff, &owner, &format!("down{rounds}"), true).await?;
        let next = round_start + Duration::from_secs(10);
        tokio::time::sleep(next.saturating_duration_since(Instant::now())).await;
    }
    tokio::time::sleep((cut_at + WEBHOOK_OUTAGE).saturating_duration_since(Instant::now())).await;
    gate.set(true);
    let back_at = Instant::now();
    eprintln!(
        "[e2e] restarts (webhook): unreachable for {:.1} s, {rounds} rounds of requests refused",
        back_at.duration_since(cut_at).as_secs_f64()
    );

    // After: the rules decide again (the first request may still meet a cut connection).
    let customers = Api::<Customer>::all(staff.clone());
    let first = wait_until_every("the webhook to admit again", WAIT, POLL, || {
        let customers = customers.clone();
        async move {
            match customers
                .create(
                    &pp(),
                    &customer("c-probe", json!({"owners": owners(&[OWNER])})),
                )
                .await
            {
                Ok(_) => Ok(Instant::now()),
                Err(e) => Err(e.to_string()),
            }
        }
    })
    .await;
    let first = t.waited("the webhook admits again once reachable", first)?;
    eprintln!(
        "[e2e] restarts (webhook): the first request after the webhook came back admitted {:.2} s after",
        first.duration_since(back_at).as_secs_f64()
    );
    round(&mut t, &staff, &owner, "up", false).await?;

    // /readyz: the operator itself was fine all along (only the path to it was cut), so it said
    // ready throughout; it cannot see the network between kube-apiserver and itself.
    let samples = readyz.stop();
    let answered: Vec<&Sample> = samples.iter().filter(|s| s.code.is_some()).collect();
    let not_ready: Vec<String> = answered
        .iter()
        .filter(|s| !s.ready())
        .map(|s| s.describe(cut_at))
        .collect();
    t.check(
        &format!(
            "/readyz said ready throughout ({} of {} samples answered)",
            answered.len(),
            samples.len()
        ),
        !answered.is_empty() && not_ready.is_empty(),
        format!("not ready at {not_ready:?}"),
    );
    t.equal(
        "the operator is the process started before the window",
        (own.operator.is_running(), own.operator.pid()),
        (true, pid),
    );
    drop(own);
    t.finish("restarts: the webhook unreachable for 30 s")
}
