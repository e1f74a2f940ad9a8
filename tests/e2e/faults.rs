//! Crash consistency, one trial per fault point of [`tenancy_operator::fault::POINTS`]: the
//! state the action needs is set up with the suite's operator; the suite's operator is paused
//! and a second one started with the same arguments and `TENANCY_FAULT=<point>`; the action is
//! triggered, and that operator aborts at the point (SIGABRT: nothing unwinds, as with a
//! SIGKILL); the suite's operator is started again and must bring everything to the state the
//! action gives without a crash. Each trial reports, through [`Checks`], the state it saw at the
//! crash (proof the crash interrupted this trial's action), the end state, and the action's
//! milestone Event (exactly one: never lost, never repeated). `faults::summary`, last, lists every point with
//! its outcome and the suite's runtime.
//!
//! Before the first crash, the cluster gets a background of memberships ([`BACKGROUND`], 1600
//! by default, in projects of their own): with a cluster that small otherwise, a starting
//! operator lists all its caches in a few milliseconds, and a restarted operator that acts on
//! its projects before its other caches (memberships, namespaces) have listed goes unnoticed;
//! with as many objects as a real cluster holds, it does not. `TENANCY_FAULTS_BACKGROUND=<n>`
//! sets how many (0: none).
//!
//! The list of points is iterated: a point without a scenario in [`SCENARIOS`] fails its trial.
//! Every trial is exclusive: only one operator may act at a time (the test operator has no
//! leader election), and some move the operator's clock (set back to the system clock when done,
//! also when a trial fails).

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::{ConfigMap, Event, Namespace, Pod, ResourceQuota};
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::{DeleteParams, ListParams};
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};
use tenancy_operator::api::project::SuspensionRecord;
use tenancy_operator::api::{
    Customer, MembershipPhase, Project, ProjectMembership, ProjectPhase, ProjectUsage, UsageState,
};
use tenancy_operator::fault::POINTS;
use tenancy_operator::ledger;

use crate::lifecycle::{cron_job, stateful_set};
use crate::support::{
    Checks, Env, Failed, RECONCILE_TIMEOUT, SideOperator, TestResult, Trial, customer, deployment,
    from_json, ledger_of, merge, owners, patch_params, phase_of, pp, project, refusal,
    stored_allocations, trial, unique_name, wait_access, wait_finalizer, wait_for, wait_project,
    wait_project_gone, wait_until,
};

/// One trial per fault point (in the order of [`POINTS`]), then the summary.
pub fn exclusive_trials(env: &Arc<Env>) -> Vec<Trial> {
    let mut trials: Vec<Trial> = POINTS
        .iter()
        .map(|&point| {
            trial(env, &format!("faults::crash_at::{point}"), move |env| {
                crash_at(env, point)
            })
        })
        .collect();
    trials.push(trial(env, "faults::summary", summary));
    trials
}

/// The multi-step actions the points interrupt.
#[derive(Clone, Copy, Debug)]
enum Action {
    /// `kubectl delete project`: the soft delete.
    SoftDelete,
    /// A deleted project applied again by staff with `spec.recovery.restoreTeamMembers`.
    Recover,
    /// `spec.customer` changed by staff with `preservePermissionsOnMove: false`.
    Move,
    /// The operator's clock past endDate plus grace, policy Suspend.
    Suspend,
    /// endDate moved later after a suspension.
    Resume,
    /// An archive whose customer is gone, past its retention.
    Purge,
    /// A project with a quota created under a customer with a quota: the webhook's reservation.
    Ledger,
    /// A pod with cpu requests: a ProjectUsage record write.
    Usage,
}

/// The scenario of each point, by exact name: a point added to [`POINTS`] fails its trial until
/// it is listed here.
const SCENARIOS: &[(&str, Action)] = &[
    ("soft-delete/cluster-roles-removed", Action::SoftDelete),
    ("soft-delete/bindings-removed", Action::SoftDelete),
    ("soft-delete/archived", Action::SoftDelete),
    ("soft-delete/frozen", Action::SoftDelete),
    ("soft-delete/membership-revoked", Action::SoftDelete),
    ("soft-delete/ledger-released", Action::SoftDelete),
    ("recover/recorded", Action::Recover),
    ("recover/member-restored", Action::Recover),
    ("move/membership-revoked", Action::Move),
    ("move/ledger-released", Action::Move),
    ("suspend/planned", Action::Suspend),
    ("suspend/workload-scaled", Action::Suspend),
    ("resume/workload-restored", Action::Resume),
    ("purge/namespace-deleted", Action::Purge),
    ("ledger/written", Action::Ledger),
    ("usage/record-written", Action::Usage),
];

// ---------------------------------------------------------------------------------------------
// The trial and the summary

/// What one point's trial came to, for the summary.
struct Outcome {
    passed: bool,
    took: Duration,
    /// Rows worth repeating in the summary: the Events counted, notes, failures.
    highlights: Vec<String>,
}

static OUTCOMES: Mutex<BTreeMap<&'static str, Outcome>> = Mutex::new(BTreeMap::new());
static FIRST_START: OnceLock<Instant> = OnceLock::new();

async fn crash_at(env: Arc<Env>, point: &'static str) -> TestResult {
    FIRST_START.get_or_init(Instant::now);
    let mut checks = Checks::default();
    if env.operator().is_some() {
        let background = BACKGROUND_READY.get_or_init(|| background(&env)).await;
        if let Err(why) = background {
            let why = format!("the cluster's background memberships (see BACKGROUND): {why}");
            record(point, false, Duration::ZERO, vec![format!("FAIL {why}")]);
            return Err(why.into());
        }
    }
    let started = Instant::now();
    let action = SCENARIOS.iter().find(|(p, _)| *p == point).map(|(_, a)| *a);
    let result: TestResult = match action {
        None => Err(format!(
            "fault point {point} (tenancy_operator::fault::POINTS) has no scenario: add one to SCENARIOS in tests/e2e/faults.rs"
        )
        .into()),
        Some(_) if env.operator().is_none() => {
            Err("this suite runs without the operator: the crash trials need it".into())
        }
        Some(action) => {
            eprintln!("[e2e] faults: {point} ({action:?})");
            let run = match action {
                Action::SoftDelete => soft_delete(&env, point, &mut checks).await,
                Action::Recover => recover(&env, point, &mut checks).await,
                Action::Move => move_project(&env, point, &mut checks).await,
                Action::Suspend => suspend(&env, point, &mut checks).await,
                Action::Resume => resume(&env, point, &mut checks).await,
                Action::Purge => purge(&env, point, &mut checks).await,
                Action::Ledger => ledger_reservation(&env, point, &mut checks).await,
                Action::Usage => usage_record(&env, point, &mut checks).await,
            };
            // A failed wait ([`Checks::waited`]) is in the rows already; any other error is not.
            if let Err(e) = run {
                let message = e.message().unwrap_or_default();
                let why = message.split("\nrows so far:").next().unwrap_or_default();
                if !checks.problems.iter().any(|p| p == why) {
                    checks.rows.push(format!("FAIL {why}"));
                    checks.problems.push(why.to_string());
                }
            }
            let highlights = checks
                .rows
                .iter()
                .filter(|r| {
                    r.starts_with("FAIL") || r.starts_with("note") || r.contains(" Events on ")
                })
                .cloned()
                .collect();
            let passed = checks.problems.is_empty();
            record(point, passed, started.elapsed(), highlights);
            return checks.finish(&format!(
                "faults: crash at {point} ({:.0}s)",
                started.elapsed().as_secs_f64()
            ));
        }
    };
    let why = result
        .as_ref()
        .err()
        .and_then(|e| e.message())
        .unwrap_or_default()
        .to_string();
    record(
        point,
        result.is_ok(),
        started.elapsed(),
        vec![format!("FAIL {why}")],
    );
    result
}

fn record(point: &'static str, passed: bool, took: Duration, highlights: Vec<String>) {
    OUTCOMES.lock().expect("outcomes lock").insert(
        point,
        Outcome {
            passed,
            took,
            highlights,
        },
    );
}

/// Every point crashed at, with its outcome, and how long the trials took; then the background
/// memberships go.
async fn summary(env: Arc<Env>) -> TestResult {
    let background = BACKGROUND_NAMES.lock().expect("background lock").take();
    if let Some(names) = background {
        let mut checks = Checks::default();
        clean_up(&env, &names, &mut checks).await;
        eprintln!(
            "[e2e] faults: the background memberships: {}",
            checks.rows.join("; ")
        );
    }
    let outcomes = OUTCOMES.lock().expect("outcomes lock");
    let mut lines = Vec::new();
    let (mut passed, mut failed, mut missing) = (0, 0, Vec::new());
    let mut total = Duration::ZERO;
    for point in POINTS {
        match outcomes.get(point) {
            Some(o) => {
                total += o.took;
                if o.passed {
                    passed += 1;
                } else {
                    failed += 1;
                }
                lines.push(format!(
                    "{} {point} ({:.0}s)",
                    if o.passed { "pass" } else { "FAIL" },
                    o.took.as_secs_f64()
                ));
                for h in &o.highlights {
                    lines.push(format!("       {h}"));
                }
            }
            None => missing.push(*point),
        }
    }
    for point in &missing {
        lines.push(format!("---- {point} (not run in this run: filtered out)"));
    }
    let stale: Vec<&str> = SCENARIOS
        .iter()
        .map(|(p, _)| *p)
        .filter(|p| !POINTS.contains(p))
        .collect();
    let wall = FIRST_START
        .get()
        .map(|s| s.elapsed().as_secs_f64())
        .unwrap_or_default();
    eprintln!(
        "[e2e] faults: summary: {} points, {passed} passed, {failed} failed, {} not run; the trials took {:.0}s ({:.0}s wall clock to this summary)\n  {}",
        POINTS.len(),
        missing.len(),
        total.as_secs_f64(),
        wall,
        lines.join("\n  ")
    );
    if stale.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "SCENARIOS in tests/e2e/faults.rs names points that tenancy_operator::fault::POINTS no longer lists: {stale:?}"
        )
        .into())
    }
}

// ---------------------------------------------------------------------------------------------
// The background: memberships enough that a starting operator takes its time listing them

/// How many memberships the cluster holds (in projects of their own, 400 a project: the most
/// the webhook allows) before the first crash, unless `TENANCY_FAULTS_BACKGROUND` says.
const BACKGROUND: usize = 1600;

/// The background's outcome (its description, or why it could not be made), made once.
static BACKGROUND_READY: tokio::sync::OnceCell<Result<String, String>> =
    tokio::sync::OnceCell::const_new();
/// The background's customer and projects, for the summary to clean up.
static BACKGROUND_NAMES: Mutex<Option<Names>> = Mutex::new(None);

/// Makes the background: a customer, projects of 400 memberships each, every membership Active
/// (bound by the suite's operator) before this returns.
async fn background(env: &Env) -> Result<String, String> {
    let count = match std::env::var("TENANCY_FAULTS_BACKGROUND") {
        Ok(v) => v
            .parse::<usize>()
            .map_err(|e| format!("TENANCY_FAULTS_BACKGROUND={v:?}: {e}"))?,
        Err(_) => BACKGROUND,
    };
    if count == 0 {
        return Ok("none (TENANCY_FAULTS_BACKGROUND=0)".into());
    }
    let t = Instant::now();
    let admin = env.client().await;
    let mut names = Names::new("e2e-fault-bg");
    let cust = names.customer("c");
    let projects: Vec<String> = (0..count.div_ceil(400))
        .map(|i| names.project(&format!("p{i}")))
        .collect();
    *BACKGROUND_NAMES.lock().expect("background lock") = Some(Names {
        tag: names.tag.clone(),
        customers: names.customers.clone(),
        projects: names.projects.clone(),
    });
    let fail = |e: Failed| e.message().unwrap_or_default().to_string();
    make_customer(&admin, &cust, json!({}))
        .await
        .map_err(fail)?;
    for (i, p) in projects.iter().enumerate() {
        make_project(&admin, p, json!({"customer": cust}))
            .await
            .map_err(fail)?;
        let api = Api::<ProjectMembership>::namespaced(admin.clone(), p);
        let here: Vec<usize> = (0..400.min(count - i * 400)).collect();
        for chunk in here.chunks(40) {
            let creates = chunk.iter().map(|j| {
                let m = membership(p, &format!("m{j}"), &format!("{p}-user{j}"), "Member");
                let api = api.clone();
                async move { api.create(&pp(), &m).await }
            });
            for created in futures::future::join_all(creates).await {
                created.map_err(|e| format!("creating a background membership: {e}"))?;
            }
        }
    }
    // Every one bound (its RoleBinding comes before its phase), so that the operator is done
    // with them before the first crash.
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let mut active = 0;
        for p in &projects {
            active += membership_phases(&admin, p)
                .await?
                .values()
                .filter(|ph| **ph == Some(MembershipPhase::Active))
                .count();
        }
        if active == count {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!(
                "{active} of the {count} background memberships Active after 180s"
            ));
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let made = format!(
        "{count} memberships in {} projects of customer {cust}, all Active, in {:.0}s",
        projects.len(),
        t.elapsed().as_secs_f64()
    );
    eprintln!("[e2e] faults: background: {made}");
    Ok(made)
}

// ---------------------------------------------------------------------------------------------
// The crash: the suite's operator paused, an armed one started, its abort awaited

/// SIGABRT, what `std::process::abort` ends a process with.
const SIGABRT: i32 = 6;

/// How many times an armed operator is started when it aborts while it starts (see
/// [`Crash::arm`]).
const ARM_ATTEMPTS: usize = 3;

/// One crash: the suite's operator paused while an operator armed at `point` runs. Dropped (the
/// trial failed or timed out), it stops the armed operator and starts the suite's again.
struct Crash {
    env: Arc<Env>,
    point: &'static str,
    armed: Option<SideOperator>,
    log: Option<PathBuf>,
}

impl Crash {
    /// Pauses the suite's operator (nothing is reconciled, no webhook answers, until
    /// [`Crash::arm`]).
    fn pause(env: &Arc<Env>, point: &'static str, checks: &mut Checks) -> Result<Crash, Failed> {
        let shared = env
            .operator()
            .ok_or("this suite runs without the operator")?;
        let t = Instant::now();
        shared.pause();
        checks.fact(
            "the suite's operator paused",
            true,
            format!("{:.1}s", t.elapsed().as_secs_f64()),
        );
        Ok(Crash {
            env: env.clone(),
            point,
            armed: None,
            log: None,
        })
    }

    /// Starts an operator like the suite's, with `TENANCY_FAULT=<point>`, and waits until it is
    /// ready. One that aborts while it starts passed the point acting on something else than
    /// this trial's objects (a write that was due somewhere in the cluster, done by the time it
    /// aborted): noted, and started again, up to [`ARM_ATTEMPTS`] times in all.
    fn arm(&mut self, checks: &mut Checks) -> TestResult {
        let shared = self
            .env
            .operator()
            .ok_or("this suite runs without the operator")?;
        let name = format!("fault-{}", self.point.replace('/', "-"));
        for attempt in 1..=ARM_ATTEMPTS {
            let t = Instant::now();
            let armed =
                shared.start_like(self.env.cluster(), &name, &[("TENANCY_FAULT", self.point)])?;
            self.log = Some(armed.log_path().to_path_buf());
            let (pid, log) = (armed.pid(), armed.log_path().display().to_string());
            let Some(status) = armed.exited_before_ready() else {
                self.armed = Some(armed);
                checks.fact(
                    &format!(
                        "an operator armed with TENANCY_FAULT={} started",
                        self.point
                    ),
                    true,
                    format!(
                        "pid {pid}, log {log}, ready in {:.1}s",
                        t.elapsed().as_secs_f64()
                    ),
                );
                return Ok(());
            };
            let said = std::fs::read_to_string(armed.log_path())
                .unwrap_or_default()
                .contains(&format!("TENANCY_FAULT: stopping dead at {}", self.point));
            let what = format!(
                "attempt {attempt}: the armed operator (pid {pid}) exited ({status}) while it started, before this trial's action{}",
                if said {
                    ": it passed the point acting on something else"
                } else {
                    ""
                }
            );
            if attempt == ARM_ATTEMPTS || !said {
                checks.waited(
                    &format!(
                        "an operator armed with TENANCY_FAULT={} started",
                        self.point
                    ),
                    Err::<(), Failed>(
                        format!("{what}; last lines of {log}:\n{}", armed.log_tail(30)).into(),
                    ),
                )?;
            }
            note(checks, what);
        }
        Ok(())
    }

    /// [`Crash::pause`], then [`Crash::arm`].
    fn start(env: &Arc<Env>, point: &'static str, checks: &mut Checks) -> Result<Crash, Failed> {
        let mut crash = Crash::pause(env, point, checks)?;
        crash.arm(checks)?;
        Ok(crash)
    }

    /// Waits (60 s) until the armed operator has aborted at its point: killed by SIGABRT, its log
    /// naming the point. Fails if it is still running then (the action never reached the point)
    /// or ended otherwise.
    async fn wait_abort(&mut self, checks: &mut Checks) -> TestResult {
        let point = self.point;
        let armed = self.armed.as_mut().ok_or("no armed operator was started")?;
        let t = Instant::now();
        let deadline = t + RECONCILE_TIMEOUT;
        let status = loop {
            if let Some(status) = armed.exit_status() {
                break Some(status);
            }
            if Instant::now() > deadline {
                break None;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let log = std::fs::read_to_string(armed.log_path()).unwrap_or_default();
        let said = log.contains(&format!("TENANCY_FAULT: stopping dead at {point}"));
        let result = match status {
            None => Err(format!(
                "it is still running after {RECONCILE_TIMEOUT:?}: the action never reached {point}; last lines of {}:\n{}",
                armed.log_path().display(),
                armed.log_tail(30)
            )),
            Some(s) if s.signal() == Some(SIGABRT) && said => Ok(format!(
                "{:.1}s after the action was triggered",
                t.elapsed().as_secs_f64()
            )),
            Some(s) => Err(format!(
                "it ended with {s} (signal {:?}), its log {} the TENANCY_FAULT line; last lines of {}:\n{}",
                s.signal(),
                if said { "has" } else { "lacks" },
                armed.log_path().display(),
                armed.log_tail(30)
            )),
        };
        checks.waited(
            &format!("the armed operator aborted at {point} (SIGABRT)"),
            result.map_err(Failed::from),
        )?;
        Ok(())
    }

    /// Stops what is left of the armed operator and starts the suite's again (waits until it is
    /// ready).
    fn resume(&mut self, checks: &mut Checks) -> TestResult {
        if let Some(mut armed) = self.armed.take() {
            armed.stop(Duration::from_secs(5));
        }
        let t = Instant::now();
        let shared = self
            .env
            .operator()
            .ok_or("this suite runs without the operator")?;
        let resumed = shared.resume(self.env.cluster()).map_err(Failed::from);
        checks.waited("the suite's operator started again and ready", resumed)?;
        checks.fact(
            "the suite's operator ready again",
            true,
            format!("{:.1}s", t.elapsed().as_secs_f64()),
        );
        Ok(())
    }

    /// Where the logs of both operators are, for the report.
    fn logs(&self) -> String {
        let shared = self
            .env
            .operator()
            .map(|o| o.log_path().display().to_string())
            .unwrap_or_default();
        let armed = self
            .log
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        format!("{shared}, {armed}")
    }
}

impl Drop for Crash {
    fn drop(&mut self) {
        if let Some(mut armed) = self.armed.take() {
            armed.stop(Duration::from_secs(5));
        }
        if let Some(op) = self.env.operator()
            && !op.is_running()
            && let Err(e) = op.resume(self.env.cluster())
        {
            eprintln!("[e2e] faults: could not start the suite's operator again: {e}");
        }
    }
}

/// A note: shown in the report and the summary, never a failure.
fn note(checks: &mut Checks, text: impl Into<String>) {
    checks.rows.push(format!("note {}", text.into()));
}

/// The end-state checks failed: says where the operators' logs are.
fn logs_if_failed(checks: &mut Checks, crash: &Crash) {
    if !checks.problems.is_empty() {
        note(checks, format!("operator logs: {}", crash.logs()));
    }
}

// ---------------------------------------------------------------------------------------------
// The operator's clock

/// Sets the operator's clock back to the system clock (`0`) when dropped.
struct ClockReset(PathBuf);

impl ClockReset {
    fn new(env: &Env) -> ClockReset {
        ClockReset(env.clock_offset_file())
    }

    /// Writes the clock setting (`<seconds>` or `@<RFC 3339>`) to a temporary file renamed over
    /// the clock file, so that no operator reads it half-written.
    fn set(&self, setting: &str) -> TestResult {
        let writing = self.0.with_extension("e2e-faults-writing");
        std::fs::write(&writing, setting)?;
        std::fs::rename(&writing, &self.0)?;
        eprintln!("[e2e] faults: the operator's clock is set to {setting}");
        Ok(())
    }

    fn offset(&self, seconds: i64) -> TestResult {
        self.set(&seconds.to_string())
    }

    fn freeze(&self, at: Timestamp) -> TestResult {
        self.set(&format!("@{}", rfc3339(at)))
    }
}

impl Drop for ClockReset {
    fn drop(&mut self) {
        if let Err(e) = std::fs::write(&self.0, "0") {
            eprintln!("[e2e] faults: could not set the operator's clock back: {e}");
        }
    }
}

fn rfc3339(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The offset that puts the operator's clock at `at` (to the second).
fn offset_to(at: Timestamp) -> i64 {
    at.as_second() - Timestamp::now().as_second()
}

// ---------------------------------------------------------------------------------------------
// Objects and waits

/// The team every project of these trials gets: two Members and a Manager.
const TEAM: &[(&str, &str)] = &[("alice", "Member"), ("bob", "Member"), ("mia", "Manager")];

/// A trial's names: its customers and projects (cleaned up in reverse), and the team's users.
struct Names {
    tag: String,
    customers: Vec<String>,
    projects: Vec<String>,
}

impl Names {
    fn new(prefix: &str) -> Names {
        Names {
            tag: unique_name(prefix),
            customers: Vec::new(),
            projects: Vec::new(),
        }
    }

    fn customer(&mut self, suffix: &str) -> String {
        let name = format!("{}-{suffix}", self.tag);
        self.customers.push(name.clone());
        name
    }

    fn project(&mut self, suffix: &str) -> String {
        let name = format!("{}-{suffix}", self.tag);
        self.projects.push(name.clone());
        name
    }

    fn user(&self, member: &str) -> String {
        format!("{}-{member}", self.tag)
    }

    /// Membership name -> role of [`TEAM`].
    fn roles(&self) -> BTreeMap<String, String> {
        TEAM.iter()
            .map(|(m, r)| (m.to_string(), r.to_string()))
            .collect()
    }
}

fn membership(ns: &str, name: &str, user: &str, role: &str) -> ProjectMembership {
    from_json(json!({
        "apiVersion": "tenancy.dev/v1alpha1", "kind": "ProjectMembership",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"subject": {"kind": "User", "name": user}, "role": role},
    }))
}

async fn make_customer(client: &Client, name: &str, spec: Value) -> TestResult {
    Api::<Customer>::all(client.clone())
        .create(&pp(), &customer(name, spec))
        .await?;
    Ok(())
}

/// Creates a project (again while the webhook's caches have not seen its new customer yet) and
/// waits until it is Ready.
async fn make_project(client: &Client, name: &str, spec: Value) -> Result<Project, Failed> {
    let projects = Api::<Project>::all(client.clone());
    let object = project(name, spec);
    wait_for(
        &format!("project {name} to be admitted"),
        Duration::from_secs(30),
        || async {
            match projects.create(&pp(), &object).await {
                Ok(_) => Some(Ok(())),
                Err(kube::Error::Api(s))
                    if s.code == 422 && s.message.contains("does not exist") =>
                {
                    None
                }
                Err(e) => Some(Err(e)),
            }
        },
    )
    .await??;
    wait_ready(client, name).await
}

/// Waits until the project's Ready condition is True for its generation.
async fn wait_ready(client: &Client, name: &str) -> Result<Project, Failed> {
    wait_project(client, name, "Ready for its generation", |p| {
        let s = p.status.as_ref()?;
        let ready = s
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        (ready && s.observed_generation == p.metadata.generation).then(|| p.clone())
    })
    .await
}

/// Gives the project the [`TEAM`] and waits until every membership is Active and bound.
async fn add_team(client: &Client, names: &Names, project: &str) -> TestResult {
    let api = Api::<ProjectMembership>::namespaced(client.clone(), project);
    for (m, role) in TEAM {
        api.create(&pp(), &membership(project, m, &names.user(m), role))
            .await?;
    }
    let users: BTreeSet<String> = TEAM.iter().map(|(m, _)| names.user(m)).collect();
    wait_until(
        &format!("the team of {project} to be Active and bound"),
        RECONCILE_TIMEOUT,
        || async {
            let phases = membership_phases(client, project).await?;
            let bound: BTreeSet<String> = bindings_by_user(client, project)
                .await?
                .into_keys()
                .collect();
            let active = phases.len() == TEAM.len()
                && phases.values().all(|p| *p == Some(MembershipPhase::Active));
            if active && users.is_subset(&bound) {
                Ok(())
            } else {
                Err(format!("phases {phases:?}, users bound {bound:?}"))
            }
        },
    )
    .await
}

async fn membership_phases(
    client: &Client,
    ns: &str,
) -> Result<BTreeMap<String, Option<MembershipPhase>>, String> {
    Ok(Api::<ProjectMembership>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .map_err(|e| format!("listing the memberships of {ns}: {e}"))?
        .items
        .iter()
        .map(|m| (m.name_any(), phase_of(m)))
        .collect())
}

/// User subjects of the namespace's RoleBindings -> the roles bound to them.
async fn bindings_by_user(
    client: &Client,
    ns: &str,
) -> Result<BTreeMap<String, Vec<String>>, String> {
    let list = Api::<RoleBinding>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .map_err(|e| format!("listing the RoleBindings of {ns}: {e}"))?;
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for rb in list.items {
        for s in rb.subjects.unwrap_or_default() {
            if s.kind == "User" {
                out.entry(s.name)
                    .or_default()
                    .push(rb.role_ref.name.clone());
            }
        }
    }
    Ok(out)
}

async fn role_binding_names(client: &Client, ns: &str) -> Result<Vec<String>, Failed> {
    Ok(Api::<RoleBinding>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .map(|rb| rb.name_any())
        .collect())
}

/// Waits until the namespace's `tenancy-quota` no longer sets `pods: 0` (the freeze lifted).
async fn wait_freeze_lifted(admin: &Client, name: &str) -> Result<Option<String>, Failed> {
    wait_until(
        "the freeze lifted (no pods: 0)",
        RECONCILE_TIMEOUT,
        || async {
            let pods = quota_pods(admin, name).await.map_err(|e| {
                e.message()
                    .map(str::to_string)
                    .unwrap_or_else(|| "reading the quota failed".into())
            })?;
            (pods.as_deref() != Some("0"))
                .then_some(pods.clone())
                .ok_or(format!("pods {pods:?}"))
        },
    )
    .await
}

/// The `pods` the namespace's `tenancy-quota` allows, if it sets them.
async fn quota_pods(client: &Client, ns: &str) -> Result<Option<String>, Failed> {
    let quota = Api::<ResourceQuota>::namespaced(client.clone(), ns)
        .get_opt("tenancy-quota")
        .await?;
    Ok(quota
        .and_then(|q| q.spec?.hard)
        .and_then(|h| h.get("pods").map(|q| q.0.clone())))
}

fn cpu(amount: &str) -> BTreeMap<String, String> {
    BTreeMap::from([("requests.cpu".to_string(), amount.to_string())])
}

/// How many Events with `reason` the object `name` of `kind` has (an Event repeated as a series
/// counts each time), and their messages.
async fn count_events(
    client: &Client,
    kind: &str,
    name: &str,
    reason: &str,
) -> Result<(i32, Vec<String>), Failed> {
    let events = Api::<Event>::all(client.clone())
        .list(&ListParams::default().fields(&format!(
            "involvedObject.kind={kind},involvedObject.name={name}"
        )))
        .await?;
    let mut count = 0;
    let mut messages = Vec::new();
    for e in events
        .items
        .iter()
        .filter(|e| e.reason.as_deref() == Some(reason))
    {
        let n = e
            .series
            .as_ref()
            .and_then(|s| s.count)
            .unwrap_or(1)
            .max(e.count.unwrap_or(1))
            .max(1);
        count += n;
        messages.push(format!("x{n} {}", e.message.clone().unwrap_or_default()));
    }
    Ok((count, messages))
}

/// Counts the action's Events (waiting up to 15 s for the first, then 2 s more for any
/// repeat): the action's milestone Event is sent exactly once, also when a crash made a pass
/// run twice, and never lost.
async fn check_events(checks: &mut Checks, client: &Client, kind: &str, name: &str, reason: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut seen = count_events(client, kind, name, reason).await;
    while matches!(seen, Ok((0, _))) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        seen = count_events(client, kind, name, reason).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    match count_events(client, kind, name, reason).await {
        Ok((count, messages)) => checks.fact(
            &format!("{reason} Events on {kind} {name}: {count} (exactly 1)"),
            count == 1,
            messages.join(" | "),
        ),
        Err(e) => checks.fact(
            &format!("{reason} Events on {kind} {name}"),
            false,
            e.message().unwrap_or_default().to_string(),
        ),
    }
}

/// The project as JSON (metadata name, deletionTimestamp, finalizers, spec, status), for reports.
fn project_json(p: &Project) -> String {
    json!({
        "name": p.name_any(),
        "deletionTimestamp": p.metadata.deletion_timestamp,
        "finalizers": p.metadata.finalizers,
        "spec": p.spec,
        "status": p.status,
    })
    .to_string()
}

async fn get_project(client: &Client, name: &str) -> Result<Option<Project>, Failed> {
    Ok(Api::<Project>::all(client.clone()).get_opt(name).await?)
}

async fn get_namespace(client: &Client, name: &str) -> Result<Option<Namespace>, Failed> {
    Ok(Api::<Namespace>::all(client.clone()).get_opt(name).await?)
}

fn state_label(ns: &Namespace) -> Option<String> {
    ns.labels().get("tenancy.dev/state").cloned()
}

/// The archive annotation of a namespace, parsed.
fn archive_of(ns: &Namespace) -> Option<Value> {
    serde_json::from_str(ns.annotations().get("tenancy.dev/archive")?).ok()
}

/// The archive's members: name -> role.
fn archived_roles(archive: &Value) -> BTreeMap<String, String> {
    archive["members"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| {
            Some((
                m["name"].as_str()?.to_string(),
                m["role"].as_str().unwrap_or("(none)").to_string(),
            ))
        })
        .collect()
}

async fn replicas<K>(client: &Client, ns: &str, name: &str) -> Result<Option<i32>, Failed>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + serde::Serialize,
{
    let object = Api::<K>::namespaced(client.clone(), ns).get(name).await?;
    let value = serde_json::to_value(&object)?;
    Ok(value["spec"]["replicas"].as_i64().map(|r| r as i32))
}

async fn cron_job_suspended(client: &Client, ns: &str, name: &str) -> Result<Option<bool>, Failed> {
    Ok(Api::<CronJob>::namespaced(client.clone(), ns)
        .get(name)
        .await?
        .spec
        .and_then(|s| s.suspend))
}

/// A pod (it never runs: there is no kubelet) whose one container requests `cpu`.
fn pod(name: &str, cpu: &str) -> Pod {
    from_json(json!({
        "metadata": {"name": name},
        "spec": {"containers": [{
            "name": "app", "image": "registry.invalid/app:1",
            "resources": {"requests": {"cpu": cpu}},
        }]},
    }))
}

/// Deletes what runs in the trial's projects, the projects (their soft delete finishes), then
/// the customers. Best effort: a failure is a note, not the trial's failure.
async fn clean_up(env: &Env, names: &Names, checks: &mut Checks) {
    let result: TestResult = async {
        let admin = env.client().await;
        let projects = Api::<Project>::all(admin.clone());
        let all = ListParams::default();
        for p in names.projects.iter().rev() {
            if projects.get_opt(p).await?.is_none() {
                continue;
            }
            let now = DeleteParams::default().grace_period(0);
            Api::<Deployment>::namespaced(admin.clone(), p)
                .delete_collection(&DeleteParams::default(), &all)
                .await?;
            Api::<StatefulSet>::namespaced(admin.clone(), p)
                .delete_collection(&DeleteParams::default(), &all)
                .await?;
            Api::<CronJob>::namespaced(admin.clone(), p)
                .delete_collection(&DeleteParams::default(), &all)
                .await?;
            Api::<Pod>::namespaced(admin.clone(), p)
                .delete_collection(&now, &all)
                .await?;
            // The webhook counts what the namespace holds from the operator's caches, a moment
            // behind the deletions.
            wait_for(
                &format!("project {p} to be deletable"),
                RECONCILE_TIMEOUT,
                || async {
                    match projects.delete(p, &DeleteParams::default()).await {
                        Ok(_) => Some(Ok(())),
                        Err(kube::Error::Api(s)) if s.code == 409 => None,
                        Err(kube::Error::Api(s)) if s.code == 404 => Some(Ok(())),
                        Err(e) => Some(Err(e)),
                    }
                },
            )
            .await??;
        }
        for p in &names.projects {
            wait_project_gone(&admin, p).await?;
        }
        let customers = Api::<Customer>::all(admin);
        for c in names.customers.iter().rev() {
            match customers.delete(c, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(format!("deleting customer {c}: {e}").into()),
            }
        }
        Ok(())
    }
    .await;
    match result {
        Ok(()) => checks.rows.push("ok   cleaned up".into()),
        Err(e) => note(
            checks,
            format!("clean-up failed: {}", e.message().unwrap_or_default()),
        ),
    }
}

/// Names a tenant (customer `c`, project `p`) under `prefix`, runs `body` with its names, then
/// cleans up everything named (also when `body` failed).
async fn with_tenant(
    env: &Arc<Env>,
    point: &'static str,
    prefix: &str,
    checks: &mut Checks,
    body: impl AsyncFnOnce(&Arc<Env>, &'static str, &Names, &str, &str, &mut Checks) -> TestResult,
) -> TestResult {
    let mut names = Names::new(prefix);
    let cust = names.customer("c");
    let name = names.project("p");
    let result = body(env, point, &names, &cust, &name, checks).await;
    clean_up(env, &names, checks).await;
    result
}

/// [`with_tenant`], `body` also given the operator's clock, which is set back (dropped) before
/// the clean-up.
async fn with_tenant_and_clock(
    env: &Arc<Env>,
    point: &'static str,
    prefix: &str,
    checks: &mut Checks,
    body: impl AsyncFnOnce(&Arc<Env>, &'static str, &ClockReset, &str, &str, &mut Checks) -> TestResult,
) -> TestResult {
    let clock = ClockReset::new(env);
    with_tenant(
        env,
        point,
        prefix,
        checks,
        async move |env, point, _, cust, name, checks| {
            let result = body(env, point, &clock, cust, name, checks).await;
            drop(clock);
            result
        },
    )
    .await
}

/// A customer with an owner and a quota, a project of it with a quota and the [`TEAM`], Ready
/// and reserved in the customer's ledger.
async fn tenant_with_team(
    env: &Env,
    names: &Names,
    cust: &str,
    name: &str,
    checks: &mut Checks,
) -> TestResult {
    let admin = env.client().await;
    make_customer(
        &admin,
        cust,
        json!({
            "owners": owners(&[&names.user("owner")]),
            "quota": {"hard": {"requests.cpu": "10"}},
        }),
    )
    .await?;
    let ready = make_project(
        &admin,
        name,
        json!({"customer": cust, "quota": {"hard": {"requests.cpu": "2"}}}),
    )
    .await;
    checks.waited(&format!("project {name} of customer {cust} Ready"), ready)?;
    wait_finalizer(&admin, name).await?;
    let team = add_team(&admin, names, name).await;
    checks.waited(
        "its team (alice, bob Members, mia Manager) Active with RoleBindings",
        team,
    )?;
    let reserved = ledger_of(&env.client().await, &env.local().namespace, cust).await?;
    checks.equal(
        &format!("before: the ledger of {cust} reserves {name}"),
        reserved.and_then(|l| l.get(name).cloned()),
        Some(cpu("2")),
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Soft delete

async fn soft_delete(env: &Arc<Env>, point: &'static str, checks: &mut Checks) -> TestResult {
    with_tenant(env, point, "e2e-fault-sd", checks, soft_delete_body).await
}

async fn soft_delete_body(
    env: &Arc<Env>,
    point: &'static str,
    names: &Names,
    cust: &str,
    name: &str,
    checks: &mut Checks,
) -> TestResult {
    let admin = env.client().await;
    tenant_with_team(env, names, cust, name, checks).await?;

    let mut crash = Crash::start(env, point, checks)?;
    let deleted = Api::<Project>::all(admin.clone())
        .delete(name, &DeleteParams::default())
        .await;
    checks.waited(
        &format!("kubectl delete project {name} admitted (by the armed operator's webhook)"),
        deleted
            .map(|_| ())
            .map_err(|e| format!("{:?}", refusal(&e)).into()),
    )?;
    crash.wait_abort(checks).await?;

    // At the crash: the soft delete is under way, its finalizer still holds the Project.
    let at_crash = get_project(&admin, name).await?;
    let ns = get_namespace(&admin, name).await?;
    let phases = membership_phases(&admin, name).await?;
    let bindings = role_binding_names(&admin, name).await?;
    checks.fact(
        "state at the crash",
        true,
        format!(
            "namespace state {:?}, archived {}, quota pods {:?}, RoleBindings {bindings:?}, memberships {phases:?}, ledger holds it: {}",
            ns.as_ref().and_then(state_label),
            ns.as_ref().and_then(archive_of).is_some(),
            quota_pods(&admin, name).await?,
            ledger_of(&env.client().await, &env.local().namespace, cust)
                .await?
                .is_some_and(|l| l.contains_key(name)),
        ),
    );
    checks.check(
        "the crash interrupted the soft delete (the Project is still there, being deleted, with its finalizer)",
        at_crash.as_ref().is_some_and(|p| {
            p.metadata.deletion_timestamp.is_some()
                && p.finalizers().iter().any(|f| f == "tenancy.dev/soft-delete")
        }),
        format!("the project: {:?}", at_crash.as_ref().map(project_json)),
    );

    crash.resume(checks)?;
    let gone = wait_project_gone(&admin, name).await;
    checks.waited("after the restart: the Project is gone", gone)?;
    check_soft_deleted(env, checks, names, cust, name).await?;
    check_events(checks, &admin, "Namespace", name, "SoftDeleted").await;
    logs_if_failed(checks, &crash);
    Ok(())
}

/// The end state of a soft delete: the namespace kept, archived (with the team and roles),
/// frozen, without RoleBindings; every membership Revoked; no reservation left.
async fn check_soft_deleted(
    env: &Env,
    checks: &mut Checks,
    names: &Names,
    cust: &str,
    name: &str,
) -> TestResult {
    let admin = env.client().await;
    let ns = get_namespace(&admin, name).await?;
    let ns_json = ns
        .as_ref()
        .map(|n| json!({"labels": n.labels(), "annotations": n.annotations(), "deletionTimestamp": n.metadata.deletion_timestamp}).to_string())
        .unwrap_or_else(|| "(no namespace)".into());
    checks.check(
        "the namespace is kept (exists, not being deleted)",
        ns.as_ref()
            .is_some_and(|n| n.metadata.deletion_timestamp.is_none()),
        ns_json.clone(),
    );
    checks.equal(
        "the namespace's label tenancy.dev/state",
        ns.as_ref().and_then(state_label),
        Some("terminated".into()),
    );
    let archive = ns.as_ref().and_then(archive_of);
    checks.equal(
        "the archive annotation's members and their roles",
        archive.as_ref().map(archived_roles),
        Some(names.roles()),
    );
    checks.equal(
        "the archive's customer",
        archive
            .as_ref()
            .and_then(|a| a["customer"].as_str().map(str::to_string)),
        Some(cust.to_string()),
    );
    checks.equal(
        "quota tenancy-quota pods",
        quota_pods(&admin, name).await?,
        Some("0".into()),
    );
    checks.equal(
        "RoleBindings in the namespace",
        role_binding_names(&admin, name).await?,
        vec![],
    );
    let phases = membership_phases(&admin, name).await?;
    checks.equal(
        "every membership Revoked",
        phases,
        TEAM.iter()
            .map(|(m, _)| (m.to_string(), Some(MembershipPhase::Revoked)))
            .collect(),
    );
    let ledger = ledger_of(&env.client().await, &env.local().namespace, cust).await?;
    checks.check(
        &format!("the ledger of {cust} holds no reservation for {name}"),
        !ledger.as_ref().is_some_and(|l| l.contains_key(name)),
        format!("the ledger: {ledger:?}"),
    );
    let alice = names.user("alice");
    checks.outcome(
        "alice may no longer list pods there",
        wait_access(env, &alice, "list", "pods", Some(name), false).await,
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Recovery

async fn recover(env: &Arc<Env>, point: &'static str, checks: &mut Checks) -> TestResult {
    with_tenant(env, point, "e2e-fault-rec", checks, recover_body).await
}

async fn recover_body(
    env: &Arc<Env>,
    point: &'static str,
    names: &Names,
    cust: &str,
    name: &str,
    checks: &mut Checks,
) -> TestResult {
    let admin = env.client().await;
    let projects = Api::<Project>::all(admin.clone());
    tenant_with_team(env, names, cust, name, checks).await?;
    projects.delete(name, &DeleteParams::default()).await?;
    let gone = wait_project_gone(&admin, name).await;
    checks.waited(&format!("project {name} soft-deleted (gone)"), gone)?;
    let revoked = wait_until("the team Revoked", RECONCILE_TIMEOUT, || async {
        let phases = membership_phases(&admin, name).await?;
        phases
            .values()
            .all(|p| *p == Some(MembershipPhase::Revoked))
            .then_some(())
            .ok_or(format!("{phases:?}"))
    })
    .await;
    checks.waited("its team Revoked", revoked)?;

    let mut crash = Crash::start(env, point, checks)?;
    let spec = json!({
        "customer": cust,
        "quota": {"hard": {"requests.cpu": "2"}},
        "recovery": {"restoreTeamMembers": true},
    });
    let created = projects.create(&pp(), &project(name, spec)).await;
    checks.waited(
        &format!("project {name} applied again by staff with restoreTeamMembers (admitted by the armed operator's webhook)"),
        created.map(|_| ()).map_err(|e| format!("{:?}", refusal(&e)).into()),
    )?;
    crash.wait_abort(checks).await?;

    let at_crash = get_project(&admin, name).await?;
    let record_at_crash = at_crash
        .as_ref()
        .and_then(|p| p.status.as_ref()?.recovery.clone());
    let phases = membership_phases(&admin, name).await?;
    checks.fact(
        "state at the crash",
        true,
        format!("status.recovery {record_at_crash:?}, memberships {phases:?}"),
    );
    let active = phases
        .values()
        .filter(|p| **p == Some(MembershipPhase::Active))
        .count();
    let interrupted = record_at_crash.is_some()
        && active < TEAM.len()
        && (point != "recover/member-restored" || active >= 1);
    checks.check(
        "the crash interrupted the recovery (recorded, not every member restored yet)",
        interrupted,
        format!("the project: {:?}", at_crash.as_ref().map(project_json)),
    );

    crash.resume(checks)?;
    let ready = wait_ready(&admin, name).await;
    let recovered = checks.waited("after the restart: the project Ready", ready)?;
    let restored = wait_until(
        "the team Active with its RoleBindings back",
        RECONCILE_TIMEOUT,
        || async {
            let phases = membership_phases(&admin, name).await?;
            let bound = bindings_by_user(&admin, name).await?;
            let all_active = phases.len() == TEAM.len()
                && phases.values().all(|p| *p == Some(MembershipPhase::Active));
            let all_bound = TEAM.iter().all(|(m, _)| bound.contains_key(&names.user(m)));
            if all_active && all_bound {
                Ok((phases, bound))
            } else {
                Err(format!("phases {phases:?}, bound users {bound:?}"))
            }
        },
    )
    .await;
    checks.outcome(
        "every restored membership Active, with a RoleBinding for its user",
        restored,
    );
    let now = get_project(&admin, name).await?.unwrap_or(recovered);
    let record = now.status.as_ref().and_then(|s| s.recovery.clone());
    checks.equal(
        "status.recovery restored",
        record.as_ref().map(|r| {
            let mut v = r.restored.clone();
            v.sort();
            v
        }),
        Some(TEAM.iter().map(|(m, _)| m.to_string()).collect()),
    );
    checks.check(
        "status.recovery recorded once (the record at the crash kept, not written again)",
        record.is_some() && record == record_at_crash,
        format!("at the crash {record_at_crash:?}, now {record:?}"),
    );
    checks.equal(
        "status.recovery.previousCustomer",
        record.as_ref().map(|r| r.previous_customer.clone()),
        Some(cust.to_string()),
    );
    let ns = get_namespace(&admin, name).await?;
    checks.equal(
        "the namespace's label tenancy.dev/state",
        ns.as_ref().and_then(state_label),
        Some("active".into()),
    );
    let pods_quota = wait_freeze_lifted(&admin, name).await;
    checks.outcome("quota tenancy-quota pods (the freeze lifted)", pods_quota);
    checks.equal(
        &format!("the ledger of {cust} reserves {name}"),
        ledger_of(&env.client().await, &env.local().namespace, cust)
            .await?
            .and_then(|l| l.get(name).cloned()),
        Some(cpu("2")),
    );
    checks.outcome(
        "mia (Manager) may list pods again",
        wait_access(env, &names.user("mia"), "list", "pods", Some(name), true).await,
    );
    check_events(checks, &admin, "Project", name, "Recovered").await;
    if checks.problems.is_empty() {
        return Ok(());
    }
    note(checks, format!("the project now: {}", project_json(&now)));
    logs_if_failed(checks, &crash);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Move

async fn move_project(env: &Arc<Env>, point: &'static str, checks: &mut Checks) -> TestResult {
    let mut names = Names::new("e2e-fault-mv");
    let from = names.customer("from");
    let to = names.customer("to");
    let name = names.project("p");
    let result = move_body(env, point, &names, (&from, &to), &name, checks).await;
    clean_up(env, &names, checks).await;
    result
}

async fn move_body(
    env: &Arc<Env>,
    point: &'static str,
    names: &Names,
    (from, to): (&str, &str),
    name: &str,
    checks: &mut Checks,
) -> TestResult {
    let admin = env.client().await;
    make_customer(
        &admin,
        to,
        json!({
            "owners": owners(&[&names.user("new-owner")]),
            "quota": {"hard": {"requests.cpu": "10"}},
        }),
    )
    .await?;
    tenant_with_team(env, names, from, name, checks).await?;

    let mut crash = Crash::start(env, point, checks)?;
    let moved = Api::<Project>::all(admin.clone())
        .patch(
            name,
            &patch_params(),
            &merge(json!({"spec": {"customer": to, "preservePermissionsOnMove": false}})),
        )
        .await;
    checks.waited(
        &format!("staff moved {name} from {from} to {to} without preserving permissions (admitted by the armed operator's webhook)"),
        moved.map(|_| ()).map_err(|e| format!("{:?}", refusal(&e)).into()),
    )?;
    crash.wait_abort(checks).await?;

    let at_crash = get_project(&admin, name).await?;
    let phases = membership_phases(&admin, name).await?;
    let (ledger_from, ledger_to) = (
        ledger_of(&env.client().await, &env.local().namespace, from).await?,
        ledger_of(&env.client().await, &env.local().namespace, to).await?,
    );
    checks.fact(
        "state at the crash",
        true,
        format!(
            "status.customer {:?}, status.lastMove {:?}, memberships {phases:?}, {from}'s ledger holds it: {}, {to}'s: {}",
            at_crash
                .as_ref()
                .and_then(|p| p.status.as_ref()?.customer.as_ref().map(|c| c.name.clone())),
            at_crash
                .as_ref()
                .and_then(|p| p.status.as_ref()?.last_move.clone()),
            ledger_from.as_ref().is_some_and(|l| l.contains_key(name)),
            ledger_to.as_ref().is_some_and(|l| l.contains_key(name)),
        ),
    );
    checks.check(
        "the crash interrupted the move (a membership revoked, the status not written yet)",
        at_crash.as_ref().is_some_and(|p| {
            p.status
                .as_ref()
                .and_then(|s| s.customer.as_ref())
                .is_some_and(|c| c.name == from)
        }) && phases
            .values()
            .any(|p| *p == Some(MembershipPhase::Revoked)),
        format!("the project: {:?}", at_crash.as_ref().map(project_json)),
    );

    crash.resume(checks)?;
    let recorded = wait_project(&admin, name, "status.lastMove records the move", |p| {
        let s = p.status.as_ref()?;
        let m = s.last_move.as_ref()?;
        (m.from == from && m.to == to && !m.preserved_permissions).then(|| p.clone())
    })
    .await;
    let now = checks.waited(
        &format!(
            "after the restart: status.lastMove from {from} to {to}, permissions not preserved"
        ),
        recorded,
    )?;
    checks.equal(
        "status.customer",
        now.status
            .as_ref()
            .and_then(|s| s.customer.as_ref().map(|c| c.name.clone())),
        Some(to.to_string()),
    );
    let revoked = wait_until("the team Revoked", RECONCILE_TIMEOUT, || async {
        let phases = membership_phases(&admin, name).await?;
        (phases.len() == TEAM.len()
            && phases
                .values()
                .all(|p| *p == Some(MembershipPhase::Revoked)))
        .then_some(())
        .ok_or(format!("{phases:?}"))
    })
    .await;
    checks.outcome("every membership Revoked", revoked);
    let team_users: BTreeSet<String> = TEAM.iter().map(|(m, _)| names.user(m)).collect();
    let unbound = wait_until(
        "no RoleBinding left for the team",
        RECONCILE_TIMEOUT,
        || async {
            let bound = bindings_by_user(&admin, name).await?;
            let left: Vec<&String> = bound.keys().filter(|u| team_users.contains(*u)).collect();
            left.is_empty()
                .then_some(())
                .ok_or(format!("still bound: {left:?}"))
        },
    )
    .await;
    checks.outcome("no RoleBinding left for the team's users", unbound);
    let ledger_from = ledger_of(&env.client().await, &env.local().namespace, from).await?;
    checks.check(
        &format!("the old customer {from}'s ledger holds no reservation for {name}"),
        !ledger_from.as_ref().is_some_and(|l| l.contains_key(name)),
        format!("the ledger: {ledger_from:?}"),
    );
    checks.equal(
        &format!("the new customer {to}'s ledger reserves {name}"),
        ledger_of(&env.client().await, &env.local().namespace, to)
            .await?
            .and_then(|l| l.get(name).cloned()),
        Some(cpu("2")),
    );
    let ns = get_namespace(&admin, name).await?;
    checks.equal(
        "the namespace's label tenancy.dev/customer",
        ns.as_ref()
            .and_then(|n| n.labels().get("tenancy.dev/customer").cloned()),
        Some(to.to_string()),
    );
    check_events(checks, &admin, "Project", name, "Moved").await;
    if !checks.problems.is_empty() {
        note(checks, format!("the project now: {}", project_json(&now)));
    }
    logs_if_failed(checks, &crash);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Suspension and resumption

/// Three days: past an end date of tomorrow with no grace period, within the month or not.
const PAST_THE_END: i64 = 3 * 24 * 3600;

/// A customer and a project ending tomorrow (UTC) with no grace period and the policy Suspend,
/// holding a Deployment `web` (3 replicas), a StatefulSet `db` (2) and a CronJob `nightly`.
async fn ending_project(env: &Env, cust: &str, name: &str, checks: &mut Checks) -> TestResult {
    let admin = env.client().await;
    let tomorrow = Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date()
        .tomorrow()
        .map_err(|e| e.to_string())?
        .to_string();
    make_customer(&admin, cust, json!({})).await?;
    let ready = make_project(
        &admin,
        name,
        json!({"customer": cust, "endDate": tomorrow, "gracePeriodDays": 0, "expirationPolicy": "Suspend"}),
    )
    .await;
    checks.waited(
        &format!("project {name} (endDate {tomorrow}, no grace, Suspend) Ready"),
        ready,
    )?;
    let mut web = deployment("web");
    web.spec.as_mut().ok_or("a Deployment has a spec")?.replicas = Some(3);
    Api::<Deployment>::namespaced(admin.clone(), name)
        .create(&pp(), &web)
        .await?;
    Api::<StatefulSet>::namespaced(admin.clone(), name)
        .create(&pp(), &stateful_set("db", 2))
        .await?;
    Api::<CronJob>::namespaced(admin.clone(), name)
        .create(&pp(), &cron_job("nightly"))
        .await?;
    let counted = wait_project(&admin, name, "counts its workloads", |p| {
        let counts = &p.status.as_ref()?.resource_counts;
        (counts.get("deployments.apps") == Some(&1) && counts.get("statefulsets.apps") == Some(&1))
            .then_some(())
    })
    .await;
    checks.waited(
        "Deployment web (3 replicas), StatefulSet db (2), CronJob nightly in it",
        counted,
    )?;
    Ok(())
}

/// The project, its `status.suspension` and its [`workloads`] at the crash, reported as a fact.
async fn suspension_at_crash(
    admin: &Client,
    name: &str,
    checks: &mut Checks,
) -> Result<
    (
        Option<Project>,
        Option<SuspensionRecord>,
        (Option<i32>, Option<i32>, Option<bool>),
    ),
    Failed,
> {
    let at_crash = get_project(admin, name).await?;
    let record_at_crash = at_crash
        .as_ref()
        .and_then(|p| p.status.as_ref()?.suspension.clone());
    let state = workloads(admin, name).await?;
    checks.fact(
        "state at the crash",
        true,
        format!("status.suspension {record_at_crash:?}, (web, db, nightly suspended) {state:?}"),
    );
    Ok((at_crash, record_at_crash, state))
}

/// (web replicas, db replicas, nightly suspended).
async fn workloads(
    client: &Client,
    ns: &str,
) -> Result<(Option<i32>, Option<i32>, Option<bool>), Failed> {
    Ok((
        replicas::<Deployment>(client, ns, "web").await?,
        replicas::<StatefulSet>(client, ns, "db").await?,
        cron_job_suspended(client, ns, "nightly").await?,
    ))
}

fn expected_suspension() -> BTreeMap<String, i32> {
    BTreeMap::from([
        ("Deployment/web".to_string(), 3),
        ("StatefulSet/db".to_string(), 2),
    ])
}

fn condition_reason(p: &Project, type_: &str) -> Option<(String, String)> {
    p.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone()))
}

async fn suspend(env: &Arc<Env>, point: &'static str, checks: &mut Checks) -> TestResult {
    with_tenant_and_clock(env, point, "e2e-fault-susp", checks, suspend_body).await
}

async fn suspend_body(
    env: &Arc<Env>,
    point: &'static str,
    clock: &ClockReset,
    cust: &str,
    name: &str,
    checks: &mut Checks,
) -> TestResult {
    let admin = env.client().await;
    ending_project(env, cust, name, checks).await?;

    let mut crash = Crash::start(env, point, checks)?;
    clock.offset(PAST_THE_END)?;
    checks.fact(
        "the operator's clock moved 3 days on, past endDate plus grace",
        true,
        "",
    );
    crash.wait_abort(checks).await?;

    let (at_crash, record_at_crash, state) = suspension_at_crash(&admin, name, checks).await?;
    // The plan is stored first; then web, db and nightly, in that order.
    let scaled = match point {
        "suspend/planned" => Some(3),
        _ => Some(0),
    };
    let interrupted = record_at_crash.is_some()
        && state.0 == scaled
        && state.1 == Some(2)
        && state.2 != Some(true);
    checks.check(
        "the crash interrupted the suspension (the plan stored; nothing, or web only, scaled)",
        interrupted,
        format!(
            "(web, db, nightly suspended) {state:?}; the project: {:?}",
            at_crash.as_ref().map(project_json)
        ),
    );

    crash.resume(checks)?;
    let suspended = wait_project(&admin, name, "Expired, Suspended", |p| {
        let s = p.status.as_ref()?;
        (s.phase == Some(ProjectPhase::Expired)
            && condition_reason(p, "Expired") == Some(("True".into(), "Suspended".into())))
        .then(|| p.clone())
    })
    .await;
    let now = checks.waited(
        "after the restart: phase Expired, condition Expired=True (Suspended)",
        suspended,
    )?;
    let record = now.status.as_ref().and_then(|s| s.suspension.clone());
    checks.equal(
        "status.suspension.replicas (the sizes to restore, not 0)",
        record.as_ref().map(|r| r.replicas.clone()),
        Some(expected_suspension()),
    );
    checks.equal(
        "status.suspension.cronJobs",
        record.as_ref().map(|r| r.cron_jobs.clone()),
        Some(vec!["nightly".to_string()]),
    );
    checks.check(
        "status.suspension recorded once (the plan stored at the crash kept)",
        record == record_at_crash,
        format!("at the crash {record_at_crash:?}, now {record:?}"),
    );
    checks.equal(
        "(web replicas, db replicas, nightly suspended)",
        workloads(&admin, name).await?,
        (Some(0), Some(0), Some(true)),
    );
    checks.equal(
        "quota tenancy-quota pods",
        quota_pods(&admin, name).await?,
        Some("0".into()),
    );
    check_events(checks, &admin, "Project", name, "Suspended").await;
    if !checks.problems.is_empty() {
        note(checks, format!("the project now: {}", project_json(&now)));
    }
    logs_if_failed(checks, &crash);
    Ok(())
}

async fn resume(env: &Arc<Env>, point: &'static str, checks: &mut Checks) -> TestResult {
    with_tenant_and_clock(env, point, "e2e-fault-res", checks, resume_body).await
}

async fn resume_body(
    env: &Arc<Env>,
    point: &'static str,
    clock: &ClockReset,
    cust: &str,
    name: &str,
    checks: &mut Checks,
) -> TestResult {
    let admin = env.client().await;
    ending_project(env, cust, name, checks).await?;
    clock.offset(PAST_THE_END)?;
    let suspended = wait_project(&admin, name, "Expired, Suspended", |p| {
        let s = p.status.as_ref()?;
        (s.phase == Some(ProjectPhase::Expired)
            && condition_reason(p, "Expired") == Some(("True".into(), "Suspended".into()))
            && s.suspension.is_some())
        .then_some(())
    })
    .await;
    checks.waited(
        "the clock moved 3 days on: suspended by the suite's operator",
        suspended,
    )?;
    checks.equal(
        "before: (web replicas, db replicas, nightly suspended)",
        workloads(&admin, name).await?,
        (Some(0), Some(0), Some(true)),
    );

    let mut crash = Crash::start(env, point, checks)?;
    let patched = Api::<Project>::all(admin.clone())
        .patch(
            name,
            &patch_params(),
            &merge(json!({"spec": {"endDate": "2099-12-31"}})),
        )
        .await;
    checks.waited(
        "staff moved endDate to 2099-12-31 (admitted by the armed operator's webhook)",
        patched
            .map(|_| ())
            .map_err(|e| format!("{:?}", refusal(&e)).into()),
    )?;
    crash.wait_abort(checks).await?;

    let (at_crash, record_at_crash, state) = suspension_at_crash(&admin, name, checks).await?;
    checks.check(
        "the crash interrupted the resumption (web restored, db not yet, the record still stored)",
        record_at_crash.is_some() && state.0 == Some(3) && state.1 == Some(0),
        format!("the project: {:?}", at_crash.as_ref().map(project_json)),
    );

    crash.resume(checks)?;
    let resumed = wait_project(&admin, name, "Active, no suspension", |p| {
        let s = p.status.as_ref()?;
        (s.phase == Some(ProjectPhase::Active) && s.suspension.is_none()).then(|| p.clone())
    })
    .await;
    let now = checks.waited(
        "after the restart: phase Active, no status.suspension",
        resumed,
    )?;
    checks.equal(
        "(web replicas, db replicas, nightly suspended): back as they were",
        workloads(&admin, name).await?,
        (Some(3), Some(2), Some(false)),
    );
    let pods = wait_freeze_lifted(&admin, name).await;
    checks.outcome("quota tenancy-quota pods (the freeze lifted)", pods);
    check_events(checks, &admin, "Project", name, "Resumed").await;
    if !checks.problems.is_empty() {
        note(checks, format!("the project now: {}", project_json(&now)));
    }
    logs_if_failed(checks, &crash);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Purge

async fn purge(env: &Arc<Env>, point: &'static str, checks: &mut Checks) -> TestResult {
    let mut names = Names::new("e2e-fault-purge");
    let gone = names.customer("gone");
    let keeps = names.customer("keeps");
    let live = names.customer("live");
    let doomed = names.project("doomed");
    let kept = names.project("kept");
    let running = names.project("running");
    let clock = ClockReset::new(env);
    let result = purge_body(
        env,
        point,
        &clock,
        (&gone, &keeps, &live),
        (&doomed, &kept, &running),
        checks,
    )
    .await;
    drop(clock);
    clean_up(env, &names, checks).await;
    result
}

async fn purge_body(
    env: &Arc<Env>,
    point: &'static str,
    clock: &ClockReset,
    (gone, keeps, live): (&str, &str, &str),
    (doomed, kept, running): (&str, &str, &str),
    checks: &mut Checks,
) -> TestResult {
    let admin = env.client().await;
    let projects = Api::<Project>::all(admin.clone());
    let customers = Api::<Customer>::all(admin.clone());
    let namespaces = Api::<Namespace>::all(admin.clone());
    // `doomed`: retention 1 day, its customer deleted: purged by the archive controller.
    // `kept`: retention 30 days, its customer deleted: not due. `running`: a live project.
    make_customer(&admin, gone, json!({"terminatedProjectRetentionDays": 1})).await?;
    make_customer(&admin, keeps, json!({"terminatedProjectRetentionDays": 30})).await?;
    make_customer(&admin, live, json!({})).await?;
    for (p, c) in [(doomed, gone), (kept, keeps), (running, live)] {
        let ready = make_project(&admin, p, json!({"customer": c})).await;
        checks.waited(&format!("project {p} of {c} Ready"), ready)?;
        wait_finalizer(&admin, p).await?;
    }
    for p in [doomed, kept] {
        projects.delete(p, &DeleteParams::default()).await?;
    }
    for p in [doomed, kept] {
        let deleted = wait_project_gone(&admin, p).await;
        checks.waited(&format!("project {p} soft-deleted (gone)"), deleted)?;
    }
    for c in [gone, keeps] {
        customers.delete(c, &DeleteParams::default()).await?;
    }
    let customers_gone = wait_for(
        &format!("customers {gone} and {keeps} to be gone"),
        RECONCILE_TIMEOUT,
        || async {
            let a = customers.get_opt(gone).await.ok()?;
            let b = customers.get_opt(keeps).await.ok()?;
            (a.is_none() && b.is_none()).then_some(())
        },
    )
    .await;
    checks.waited(
        &format!("their customers {gone} (retention 1 day) and {keeps} (30 days) deleted"),
        customers_gone,
    )?;
    let terminated: Timestamp = {
        let ns = namespaces.get(doomed).await?;
        let archive = archive_of(&ns).ok_or("the archive of the doomed namespace is missing")?;
        archive["terminatedAt"]
            .as_str()
            .ok_or("the archive has no terminatedAt")?
            .parse()?
    };
    let kept_uid = namespaces.get(kept).await?.uid();
    let running_uid = namespaces.get(running).await?.uid();

    let mut crash = Crash::start(env, point, checks)?;
    let due = terminated + SignedDuration::from_hours(24) + SignedDuration::from_mins(1);
    clock.offset(offset_to(due))?;
    checks.fact(
        &format!(
            "the operator's clock moved past {doomed}'s retention ({})",
            rfc3339(due)
        ),
        true,
        "",
    );
    crash.wait_abort(checks).await?;

    let at_crash = namespaces.get_opt(doomed).await?;
    checks.check(
        &format!("the crash interrupted the purge (namespace {doomed} deleted, its Purged Event sent first)"),
        at_crash
            .as_ref()
            .is_none_or(|n| n.metadata.deletion_timestamp.is_some()),
        format!(
            "the namespace: {:?}",
            at_crash
                .as_ref()
                .map(|n| (n.labels().clone(), n.metadata.deletion_timestamp.clone()))
        ),
    );

    crash.resume(checks)?;
    let purged = wait_for(
        &format!("namespace {doomed} to be deleted for good"),
        Duration::from_secs(120),
        || async { matches!(namespaces.get_opt(doomed).await, Ok(None)).then_some(()) },
    )
    .await;
    checks.outcome(
        &format!("after the restart: namespace {doomed} gone"),
        purged,
    );
    // Nothing else was deleted.
    let kept_ns = namespaces.get_opt(kept).await?;
    checks.check(
        &format!("the archive {kept} (retention not over) kept"),
        kept_ns.as_ref().is_some_and(|n| {
            n.metadata.deletion_timestamp.is_none()
                && n.uid() == kept_uid
                && state_label(n).as_deref() == Some("terminated")
        }),
        format!(
            "it is {:?}",
            kept_ns
                .as_ref()
                .map(|n| (n.labels().clone(), n.metadata.deletion_timestamp.clone()))
        ),
    );
    let running_ns = namespaces.get_opt(running).await?;
    checks.check(
        &format!("the live project {running}'s namespace kept"),
        running_ns.as_ref().is_some_and(|n| {
            n.metadata.deletion_timestamp.is_none()
                && n.uid() == running_uid
                && state_label(n).as_deref() == Some("active")
        }),
        format!(
            "it is {:?}",
            running_ns
                .as_ref()
                .map(|n| (n.labels().clone(), n.metadata.deletion_timestamp.clone()))
        ),
    );
    checks.check(
        &format!("the live project {running} still there"),
        get_project(&admin, running)
            .await?
            .is_some_and(|p| p.metadata.deletion_timestamp.is_none()),
        "",
    );
    check_events(checks, &admin, "Namespace", doomed, "Purged").await;
    logs_if_failed(checks, &crash);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The quota ledger

async fn ledger_reservation(
    env: &Arc<Env>,
    point: &'static str,
    checks: &mut Checks,
) -> TestResult {
    let mut names = Names::new("e2e-fault-led");
    let cust = names.customer("c");
    let existing = names.project("e");
    let lost = names.project("lost");
    let after = names.project("after");
    let result = ledger_body(env, point, &cust, (&existing, &lost, &after), checks).await;
    clean_up(env, &names, checks).await;
    result
}

async fn ledger_body(
    env: &Arc<Env>,
    point: &'static str,
    cust: &str,
    (existing, lost, after): (&str, &str, &str),
    checks: &mut Checks,
) -> TestResult {
    let admin = env.client().await;
    let projects = Api::<Project>::all(admin.clone());
    // Room for two projects of 1 cpu: a leaked reservation would refuse the second.
    make_customer(
        &admin,
        cust,
        json!({"quota": {"hard": {"requests.cpu": "2"}}}),
    )
    .await?;
    let spec = json!({"customer": cust, "quota": {"hard": {"requests.cpu": "1"}}});
    let ready = make_project(&admin, existing, spec.clone()).await;
    checks.waited(&format!("project {existing} (1 of the 2 cpu) Ready"), ready)?;
    let cm = Api::<ConfigMap>::namespaced(admin.clone(), &env.local().namespace)
        .get_opt(&ledger::ledger_name(cust))
        .await?;
    checks.equal(
        "before: the customer's ledger (label tenancy.dev/part)",
        cm.as_ref()
            .and_then(|c| c.labels().get("tenancy.dev/part").cloned()),
        Some("ledger".into()),
    );
    checks.equal(
        "before: the ledger",
        ledger_of(&env.client().await, &env.local().namespace, cust).await?,
        Some(BTreeMap::from([(existing.to_string(), cpu("1"))])),
    );

    let mut crash = Crash::start(env, point, checks)?;
    let create = async {
        tokio::time::timeout(
            Duration::from_secs(45),
            projects.create(&pp(), &project(lost, spec.clone())),
        )
        .await
    };
    let (created, aborted) = tokio::join!(create, crash.wait_abort(checks));
    aborted?;
    let created = match created {
        Ok(Ok(_)) => "admitted".to_string(),
        Ok(Err(e)) => format!("refused: {:?}", refusal(&e)),
        Err(_) => "no answer within 45s".to_string(),
    };
    checks.fact(
        &format!("the create of {lost} while the webhook aborted"),
        true,
        created,
    );
    let at_crash = ledger_of(&env.client().await, &env.local().namespace, cust).await?;
    let stored = get_project(&admin, lost).await?.is_some();
    checks.fact(
        "state at the crash",
        true,
        format!("the ledger {at_crash:?}, project {lost} stored: {stored}"),
    );
    checks.check(
        &format!(
            "the crash interrupted the admission (the ledger reserves {lost}, which was never stored)"
        ),
        at_crash.as_ref().is_some_and(|l| l.contains_key(lost)) && !stored,
        "",
    );

    crash.resume(checks)?;
    // The reconciler leaves a reservation to its admission for ledger::SETTLE (30 s), then
    // makes the ledger equal what the stored projects hold.
    let settle = Duration::from_secs(ledger::SETTLE.as_secs().unsigned_abs());
    let repaired = wait_until(
        "the ledger to equal what the stored projects hold",
        settle + RECONCILE_TIMEOUT,
        || async {
            let ledger = ledger_of(&env.client().await, &env.local().namespace, cust)
                .await
                .map_err(|e| e.message().unwrap_or_default().to_string())?;
            let stored = stored_allocations(&admin, cust)
                .await
                .map_err(|e| e.message().unwrap_or_default().to_string())?;
            (ledger.as_ref() == Some(&stored))
                .then(|| stored.clone())
                .ok_or(format!("the ledger {ledger:?}, stored {stored:?}"))
        },
    )
    .await;
    checks.outcome(
        "after the restart: the ledger equals the stored projects' allocations (no leaked reservation)",
        repaired,
    );
    // The cpu the lost create reserved is free again: a project asking for it is admitted.
    let admitted = make_project(&admin, after, spec.clone()).await;
    checks.outcome(
        &format!("a project {after} asking for the last cpu admitted and Ready"),
        admitted.map(|_| ()),
    );
    checks.equal(
        "the ledger",
        ledger_of(&env.client().await, &env.local().namespace, cust).await?,
        Some(BTreeMap::from([
            (existing.to_string(), cpu("1")),
            (after.to_string(), cpu("1")),
        ])),
    );
    let allocated = wait_for(
        "the customer's status.allocated requests.cpu to be 2",
        RECONCILE_TIMEOUT,
        || async {
            let c = Api::<Customer>::all(admin.clone()).get(cust).await.ok()?;
            (c.status?.allocated.get("requests.cpu").map(String::as_str) == Some("2")).then_some(())
        },
    )
    .await;
    checks.outcome(
        "the customer's status.allocated requests.cpu = 2",
        allocated,
    );
    logs_if_failed(checks, &crash);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Usage records

fn month_of(t: Timestamp) -> String {
    t.strftime("%Y-%m").to_string()
}

fn totals_of(r: &ProjectUsage) -> String {
    let t = &r.spec.totals;
    format!(
        "cpu={} memory={} storage={} pods={}",
        t.cpu_core_hours, t.memory_gib_hours, t.storage_gib_hours, t.pod_hours
    )
}

fn usage_text(r: &ProjectUsage) -> String {
    format!(
        "rv {} {:?} since {} rate cpu={} pods={} rateSince {} totals {}",
        r.resource_version().unwrap_or_default(),
        r.spec.state,
        rfc3339(r.spec.since.0),
        r.spec.rate.cpu,
        r.spec.rate.pods,
        rfc3339(r.spec.rate_since.0),
        totals_of(r)
    )
}

/// Waits until the record `name` passes `check`.
async fn wait_record(
    client: &Client,
    name: &str,
    what: &str,
    check: impl Fn(&ProjectUsage) -> bool,
) -> Result<ProjectUsage, Failed> {
    let api: Api<ProjectUsage> = Api::all(client.clone());
    wait_until(
        &format!("ProjectUsage {name}: {what}"),
        RECONCILE_TIMEOUT,
        || async {
            match api.get_opt(name).await {
                Ok(Some(r)) if check(&r) => Ok(r),
                Ok(Some(r)) => Err(usage_text(&r)),
                Ok(None) => Err("no such record".into()),
                Err(e) => Err(e.to_string()),
            }
        },
    )
    .await
}

/// Whether a record is open, accrued to `since`, at `cpu` (either spelling) and `pods`.
fn open_at(r: &ProjectUsage, since: Timestamp, cpu: &[&str], pods: i64) -> bool {
    r.spec.state == UsageState::Open
        && r.spec.since.0 == since
        && cpu.contains(&r.spec.rate.cpu.as_str())
        && r.spec.rate.pods == pods
}

/// Changes the project's description and waits until that generation is reconciled: the
/// operator has looked at the project (and its usage) since.
async fn poke(client: &Client, name: &str, text: &str) -> TestResult {
    let p = Api::<Project>::all(client.clone())
        .patch(
            name,
            &patch_params(),
            &merge(json!({"spec": {"description": text}})),
        )
        .await?;
    let generation = p.metadata.generation;
    wait_project(
        client,
        name,
        "the description's generation reconciled",
        |p| (p.status.as_ref().and_then(|s| s.observed_generation) >= generation).then_some(()),
    )
    .await
}

async fn usage_record(env: &Arc<Env>, point: &'static str, checks: &mut Checks) -> TestResult {
    let mut names = Names::new("e2e-fault-use");
    let cust = names.customer("c");
    let name = names.project("p");
    let clock = ClockReset::new(env);
    let result = usage_body(env, point, &clock, &cust, &name, checks).await;
    // Cleaned up while the clock still stands still: the project's usage is settled at the
    // trial's instant.
    clean_up(env, &names, checks).await;
    drop(clock);
    result
}

async fn usage_body(
    env: &Arc<Env>,
    point: &'static str,
    clock: &ClockReset,
    cust: &str,
    name: &str,
    checks: &mut Checks,
) -> TestResult {
    let admin = env.client().await;
    let hour = SignedDuration::from_hours(1);
    // The clock frozen at a whole minute with two hours left in the month (else early next
    // month: records only ever move forward).
    let now = Timestamp::from_second(Timestamp::now().as_second() / 60 * 60)?;
    let t0 = if month_of(now + hour * 3) == month_of(now) {
        now
    } else {
        let next = (now + hour * 3)
            .to_zoned(jiff::tz::TimeZone::UTC)
            .start_of_day()?
            .timestamp();
        next + hour
    };
    clock.freeze(t0)?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    make_customer(&admin, cust, json!({})).await?;
    let ready = make_project(&admin, name, json!({"customer": cust})).await;
    checks.waited(
        &format!("project {name} Ready (clock frozen at T0 {})", rfc3339(t0)),
        ready,
    )?;
    let record = format!("{name}.{}", month_of(t0));
    let pods = Api::<Pod>::namespaced(admin.clone(), name);
    pods.create(&pp(), &pod("a", "1")).await?;
    let first = wait_record(&admin, &record, "open at 1 cpu from T0", |r| {
        open_at(r, t0, &["1"], 1)
    })
    .await;
    let first = checks.waited("pod a (1 cpu) counted from T0", first)?;
    checks.fact("before", true, usage_text(&first));

    // Down, the clock moves an hour; the armed operator sees a second pod and writes the change.
    let mut crash = Crash::pause(env, point, checks)?;
    clock.freeze(t0 + hour)?;
    crash.arm(checks)?;
    pods.create(&pp(), &pod("b", "500m")).await?;
    checks.fact("pod b (500m cpu) created at T0+1h", true, "");
    crash.wait_abort(checks).await?;

    let at_crash = Api::<ProjectUsage>::all(admin.clone())
        .get_opt(&record)
        .await?;
    checks.fact(
        "state at the crash",
        true,
        at_crash
            .as_ref()
            .map(usage_text)
            .unwrap_or_else(|| "(no record)".into()),
    );
    checks.check(
        "the crash came right after this project's record was written (accrued to T0+1h)",
        at_crash
            .as_ref()
            .is_some_and(|r| open_at(r, t0 + hour, &["1500m", "1.5"], 2)),
        "",
    );

    crash.resume(checks)?;
    poke(&admin, name, "after the restart").await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = Api::<ProjectUsage>::all(admin.clone()).get(&record).await?;
    checks.fact("after the restart", true, usage_text(&after));
    checks.check(
        "after the restart: open at 1.5 cpu and 2 pods from T0+1h",
        open_at(&after, t0 + hour, &["1500m", "1.5"], 2),
        usage_text(&after),
    );
    checks.equal(
        "after the restart: the totals (1 cpu and 1 pod for 1 h, counted once)",
        totals_of(&after),
        "cpu=1 memory=0 storage=0 pods=1".to_string(),
    );
    if let Some(r) = &at_crash {
        checks.fact(
            "the record written before the crash was not written again",
            true,
            format!(
                "resourceVersion {:?} then, {:?} now",
                r.resource_version(),
                after.resource_version()
            ),
        );
    }

    // And on: at T0+2h pod b goes; the record holds 1 + 1.5 core-hours and 1 + 2 pod-hours.
    clock.freeze(t0 + hour * 2)?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    pods.delete("b", &DeleteParams::default().grace_period(0))
        .await?;
    let later = wait_record(&admin, &record, "open at 1 cpu from T0+2h", |r| {
        open_at(r, t0 + hour * 2, &["1"], 1)
    })
    .await;
    let later = checks.waited("at T0+2h pod b deleted: the change recorded", later)?;
    checks.equal(
        "the totals at T0+2h (1 + 1.5 core-hours, 1 + 2 pod-hours)",
        totals_of(&later),
        "cpu=2.5 memory=0 storage=0 pods=3".to_string(),
    );
    logs_if_failed(checks, &crash);
    Ok(())
}
