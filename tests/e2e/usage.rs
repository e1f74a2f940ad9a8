//! Usage over time, credit and who sees billing, against the real control plane and the
//! running operator with its clock frozen (`@<instant>` in the clock file): exact core-, GiB-
//! and pod-hours of what a project's pods and claims request, the cost priced by the hours of
//! the month, months that close at midnight UTC and are never written again, an operator killed
//! and restarted that neither loses nor counts a second twice, credit that runs out at the
//! instant the operator announced (and suspends the project until more credit comes), and
//! billing shown to members only where their customer allows it.
//!
//! Every test here freezes the operator's clock, so all of them are exclusive. Each freezes it
//! in a later month than the one before (all after the real month), so their records are fresh
//! and the records of other projects only ever move forward.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Event, PersistentVolumeClaim, Pod, ResourceQuota};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{DeleteParams, ListParams};
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};
use tenancy_operator::api::{
    Customer, Project, ProjectMembership, ProjectPhase, ProjectUsage, UsageState,
};

use crate::reconcile::{PRICES, operator_metrics, samples};
use crate::support::{
    Checks, Env, Failed, TestResult, Trial, customer, from_json, merge, owners, patch_params, pp,
    project, refusal, stdout_of, trial, unique_name, wait_access_named, wait_for, wait_project,
    wait_project_gone,
};

/// The usage tests; each freezes the operator's clock, so they run alone.
pub fn exclusive_trials(env: &Arc<Env>) -> Vec<Trial> {
    vec![
        trial(
            env,
            "usage::exact_hours_and_cost_for_a_pod_then_a_claim",
            exact_hours_and_cost_for_a_pod_then_a_claim,
        ),
        trial(
            env,
            "usage::the_month_closes_at_midnight_utc_and_stays_closed",
            the_month_closes_at_midnight_utc_and_stays_closed,
        ),
        trial(
            env,
            "usage::a_killed_operator_loses_and_double_counts_nothing",
            a_killed_operator_loses_and_double_counts_nothing,
        ),
        trial(
            env,
            "usage::credit_runs_out_at_the_computed_instant_and_suspend_resumes_with_more_credit",
            credit_runs_out_at_the_computed_instant_and_suspend_resumes_with_more_credit,
        ),
        trial(
            env,
            "usage::billing_is_shown_to_members_only_where_the_customer_allows_it",
            billing_is_shown_to_members_only_where_the_customer_allows_it,
        ),
    ]
}

/// How long a test waits for the operator to do something (a loaded 2-core machine; how fast it
/// really happens is not asserted).
const WAIT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// The operator's clock

/// The operator's clock, frozen at instants the test chooses; set back to the system clock
/// (`0`) when dropped, also when the test fails or times out.
struct FrozenClock {
    file: PathBuf,
}

impl FrozenClock {
    fn new(env: &Env) -> FrozenClock {
        FrozenClock {
            file: env.clock_offset_file(),
        }
    }

    /// Freezes the operator's clock at `at` (`@<instant>`, written to a temporary file renamed
    /// over the clock file so it is never read half-written), then gives the operator a moment
    /// to notice (it looks every 100 ms) and look at everything again before the test changes
    /// anything.
    async fn freeze(&self, at: Timestamp) -> TestResult {
        let writing = self.file.with_extension("e2e-usage-writing");
        std::fs::write(&writing, format!("@{}", rfc3339(at)))?;
        std::fs::rename(&writing, &self.file)?;
        eprintln!(
            "[e2e] usage: the operator's clock is frozen at {}",
            rfc3339(at)
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
        Ok(())
    }
}

impl Drop for FrozenClock {
    fn drop(&mut self) {
        if let Err(e) = std::fs::write(&self.file, "0") {
            eprintln!("[e2e] could not set the operator's clock back: {e}");
        }
    }
}

/// Starts the suite's operator again when dropped if a test killed it and did not get to
/// restart it (it failed or timed out in between), so the tests after it have an operator.
struct Revive(Arc<Env>);

impl Drop for Revive {
    fn drop(&mut self) {
        if let Some(op) = self.0.operator()
            && !op.is_running()
            && let Err(e) = op.resume(self.0.cluster())
        {
            eprintln!("[e2e] could not start the operator again: {e}");
        }
    }
}

fn ts(s: &str) -> Timestamp {
    s.parse().expect("a test instant is RFC 3339")
}

fn hours(h: i64) -> SignedDuration {
    SignedDuration::from_hours(h)
}

fn rfc3339(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// `YYYY-MM` of an instant (UTC).
fn month_of(t: Timestamp) -> String {
    t.strftime("%Y-%m").to_string()
}

/// The hours of the calendar month (UTC) of `t`.
fn month_hours(t: Timestamp) -> i128 {
    let d = t.to_zoned(jiff::tz::TimeZone::UTC).date();
    i128::from(d.days_in_month()) * 24
}

// ---------------------------------------------------------------------------------------------
// Prices and cost, computed here from the rule (not from the operator's code)

/// The suite's price list (`PRICES`): millionths of a euro per unit and month.
fn prices() -> BTreeMap<String, i128> {
    PRICES
        .split(',')
        .map(|p| {
            let (name, amount) = p.split_once('=').expect("NAME=AMOUNT");
            let (int, frac) = amount.split_once('.').unwrap_or((amount, ""));
            let frac: i128 = format!("{frac:0<6}").parse().expect("a decimal");
            let int: i128 = int.parse().expect("a decimal");
            (name.to_string(), int * 1_000_000 + frac)
        })
        .collect()
}

/// Millionths as an amount with two decimals, rounded half up.
fn cents(micros: i128) -> String {
    let c = (micros + 5_000).div_euclid(10_000);
    format!("{}.{:02}", c.div_euclid(100), c.rem_euclid(100))
}

/// What a month costs: for each resource, price × unit-hours / hours of the month, in
/// millionths, floored; the total and each resource shown with two decimals. `unit_hours` are
/// in millionths of a unit-hour (core-, GiB- or pod-hours).
fn expected_cost(
    month_hours: i128,
    unit_hours: &[(&str, i128)],
) -> (String, BTreeMap<String, String>) {
    let prices = prices();
    let mut total = 0;
    let mut by = BTreeMap::new();
    for (name, price) in &prices {
        let used = unit_hours
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, h)| *h)
            .unwrap_or(0);
        let micros = price * used / (month_hours * 1_000_000);
        total += micros;
        by.insert(name.clone(), cents(micros));
    }
    (cents(total), by)
}

/// Whole unit-hours in millionths.
const fn uh(hours: i128) -> i128 {
    hours * 1_000_000
}

// ---------------------------------------------------------------------------------------------
// Objects

/// A customer (with one owner) and a project of it, created by staff; the project's namespace
/// exists when this returns.
struct Tenant {
    customer: String,
    project: String,
    owner: String,
}

async fn make_tenant(
    env: &Env,
    tag: &str,
    show_billing: bool,
    project_spec: Value,
) -> Result<Tenant, Failed> {
    let admin = env.client().await;
    let name = unique_name(tag);
    let t = Tenant {
        customer: format!("{name}-c"),
        project: format!("{name}-p"),
        owner: format!("{name}-owner"),
    };
    Api::<Customer>::all(admin.clone())
        .create(
            &pp(),
            &customer(
                &t.customer,
                json!({
                    "owners": owners(&[&t.owner]),
                    "displayBillingInfoInProjects": show_billing,
                }),
            ),
        )
        .await?;
    let mut spec = project_spec;
    spec["customer"] = json!(t.customer);
    let projects = Api::<Project>::all(admin.clone());
    // The webhook decides from the operator's caches, which see a new customer a moment later.
    let object = project(&t.project, spec);
    wait_for(
        &format!("project {} to be admitted", t.project),
        Duration::from_secs(20),
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
    wait_project(&admin, &t.project, "phase Active", |p| {
        (p.status.as_ref().and_then(|s| s.phase) == Some(ProjectPhase::Active)).then_some(())
    })
    .await?;
    Ok(t)
}

/// Staff give `who` `role` in the project, and wait until the apiserver lets them get it.
async fn add_member(env: &Env, project: &str, who: &str, role: &str) -> TestResult {
    let m: ProjectMembership = from_json(json!({
        "apiVersion": "tenancy.dev/v1alpha1", "kind": "ProjectMembership",
        "metadata": {"name": who, "namespace": project},
        "spec": {"subject": {"kind": "User", "name": who}, "role": role},
    }));
    Api::<ProjectMembership>::namespaced(env.client().await, project)
        .create(&pp(), &m)
        .await?;
    wait_access_named(env, who, "get", "projects.tenancy.dev", project, None, true).await
}

/// Deletes what runs in the projects (a project with active resources may not be deleted),
/// then the projects (their soft delete finishes), then the customers; done while the clock is
/// still frozen, so the usage of a gone project is settled at the test's instant.
async fn clean_up(env: &Env, tenants: &[&Tenant]) -> TestResult {
    let admin = env.client().await;
    for t in tenants {
        let ns = t.project.as_str();
        let everything = ListParams::default();
        Api::<Pod>::namespaced(admin.clone(), ns)
            .delete_collection(&now_gone(), &everything)
            .await?;
        Api::<Deployment>::namespaced(admin.clone(), ns)
            .delete_collection(&DeleteParams::default(), &everything)
            .await?;
        let claims = Api::<PersistentVolumeClaim>::namespaced(admin.clone(), ns);
        for c in claims.list(&everything).await? {
            delete_claim(&claims, &c.name_any()).await?;
        }
    }
    let projects = Api::<Project>::all(admin.clone());
    for t in tenants {
        // The webhook counts what the namespace holds from the operator's caches, a moment
        // behind the deletions.
        wait_for(
            &format!("project {} to be deletable", t.project),
            WAIT,
            || async {
                match projects.delete(&t.project, &DeleteParams::default()).await {
                    Ok(_) => Some(Ok(())),
                    Err(kube::Error::Api(s)) if s.code == 409 => None,
                    Err(e) => Some(Err(e)),
                }
            },
        )
        .await??;
    }
    for t in tenants {
        wait_project_gone(&admin, &t.project).await?;
    }
    let customers = Api::<Customer>::all(admin);
    for t in tenants {
        if let Err(e) = customers
            .delete(&t.customer, &DeleteParams::default())
            .await
        {
            eprintln!("[e2e] usage: customer {} not deleted: {e}", t.customer);
        }
    }
    Ok(())
}

/// Deletes a claim, and lets it go: the apiserver gives every claim the
/// `kubernetes.io/pvc-protection` finalizer, and this control plane runs no controller that
/// takes it off (in a cluster it goes once no pod uses the claim).
async fn delete_claim(claims: &Api<PersistentVolumeClaim>, name: &str) -> TestResult {
    claims.delete(name, &DeleteParams::default()).await?;
    match claims
        .patch(
            name,
            &patch_params(),
            &merge(json!({"metadata": {"finalizers": null}})),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The checks' report, then the clean-up's failure if the checks passed.
fn finish(checks: Checks, title: &str, cleaned: TestResult) -> TestResult {
    checks.finish(title)?;
    cleaned.map_err(|e| format!("cleaning up: {}", e.message().unwrap_or_default()).into())
}

/// A pod (it never runs: there is no kubelet) whose one container requests `cpu` and `memory`.
fn pod(name: &str, cpu: &str, memory: Option<&str>) -> Pod {
    let mut requests = json!({"cpu": cpu});
    if let Some(m) = memory {
        requests["memory"] = json!(m);
    }
    from_json(json!({
        "metadata": {"name": name},
        "spec": {"containers": [{
            "name": "app", "image": "registry.invalid/app:1",
            "resources": {"requests": requests},
        }]},
    }))
}

fn claim(name: &str, storage: &str) -> PersistentVolumeClaim {
    from_json(json!({
        "metadata": {"name": name},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": storage}}},
    }))
}

fn now_gone() -> DeleteParams {
    DeleteParams::default().grace_period(0)
}

// ---------------------------------------------------------------------------------------------
// Records

fn records(client: &Client) -> Api<ProjectUsage> {
    Api::all(client.clone())
}

/// A record's spec in one line, for failure messages.
fn spec_text(r: &ProjectUsage) -> String {
    serde_json::to_string(&r.spec).unwrap_or_default()
}

/// `cpu=… memory=… storage=… pods=…` of a record's rate.
fn rate_of(r: &ProjectUsage) -> String {
    let rate = &r.spec.rate;
    format!(
        "cpu={} memory={} storage={} pods={}",
        rate.cpu, rate.memory, rate.storage, rate.pods
    )
}

fn rate(cpu: &str, memory: &str, storage: &str, pods: i64) -> String {
    format!("cpu={cpu} memory={memory} storage={storage} pods={pods}")
}

/// `cpu=… memory=… storage=… pods=…` of a record's totals (hours).
fn totals_of(r: &ProjectUsage) -> String {
    let t = &r.spec.totals;
    format!(
        "cpu={} memory={} storage={} pods={}",
        t.cpu_core_hours, t.memory_gib_hours, t.storage_gib_hours, t.pod_hours
    )
}

fn totals(cpu: &str, memory: &str, storage: &str, pods: &str) -> String {
    format!("cpu={cpu} memory={memory} storage={storage} pods={pods}")
}

/// The record at `rate` accrued to `since` (an open month).
fn open_at(want_rate: String, since: Timestamp) -> impl Fn(&ProjectUsage) -> Result<(), String> {
    move |r| {
        if r.spec.state == UsageState::Open && rate_of(r) == want_rate && r.spec.since.0 == since {
            Ok(())
        } else {
            Err(format!(
                "want Open, rate {want_rate}, since {}",
                rfc3339(since)
            ))
        }
    }
}

/// Waits until the record `name` exists and passes `check`; on timeout says what it looked like
/// last and what the operator logged.
async fn wait_record(
    env: &Env,
    name: &str,
    what: &str,
    check: impl Fn(&ProjectUsage) -> Result<(), String>,
) -> Result<ProjectUsage, Failed> {
    let api = records(&env.client().await);
    let deadline = Instant::now() + WAIT;
    loop {
        let (last, why) = match api.get_opt(name).await {
            Ok(Some(r)) => match check(&r) {
                Ok(()) => return Ok(r),
                Err(why) => (spec_text(&r), why),
            },
            Ok(None) => (
                "(no such record)".to_string(),
                "it does not exist".to_string(),
            ),
            Err(e) => (format!("(reading it failed: {e})"), e.to_string()),
        };
        if Instant::now() > deadline {
            return Err(format!(
                "timed out after {WAIT:?} waiting for ProjectUsage {name}: {what} ({why}); it is {last}{}",
                operator_log(env)
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn operator_log(env: &Env) -> String {
    match env.operator() {
        Some(op) => format!(
            "\n--- last lines of {} ---\n{}",
            op.log_path().display(),
            tenancy_operator::devcluster::process::without_colours(&op.log_tail(25))
        ),
        None => String::new(),
    }
}

/// The operator log's lines that mention `needle` (the last 20), without colours.
fn operator_log_about(env: &Env, needle: &str) -> String {
    let Some(op) = env.operator() else {
        return String::new();
    };
    let text = std::fs::read_to_string(op.log_path()).unwrap_or_default();
    let lines: Vec<String> = text
        .lines()
        .map(tenancy_operator::devcluster::process::without_colours)
        .filter(|l| l.contains(needle) || l.contains("operator ready") || l.contains("running"))
        .collect();
    format!(
        "\n--- lines of {} about {needle} (and the starts) ---\n{}",
        op.log_path().display(),
        lines[lines.len().saturating_sub(20)..].join("\n")
    )
}

/// The ProjectUsage writes the running operator process has made (`tenancy_api_writes_total`).
async fn usage_writes(env: &Env) -> Result<f64, Failed> {
    let text = operator_metrics(env).await?;
    Ok(samples(&text, "tenancy_api_writes_total")
        .iter()
        .filter(|s| s.labels.get("kind").map(String::as_str) == Some("ProjectUsage"))
        .map(|s| s.value)
        .sum())
}

/// Fails unless the operator writes no ProjectUsage over `window` (the clock frozen, nothing
/// changing).
async fn quiet_window(env: &Env, window: Duration) -> Result<String, Failed> {
    let before = usage_writes(env).await?;
    tokio::time::sleep(window).await;
    let after = usage_writes(env).await?;
    if after == before {
        Ok(format!("{before} writes before and after {window:?}"))
    } else {
        Err(format!(
            "the operator wrote ProjectUsage records {} times in a quiet {window:?} with its clock frozen ({before} -> {after}){}",
            after - before,
            operator_log(env)
        )
        .into())
    }
}

/// Waits (up to [`WAIT`]) for a `window` in which the operator writes no ProjectUsage: what a
/// move of the clock asked of every project in the cluster is done.
async fn wait_quiet(env: &Env, window: Duration) -> TestResult {
    let deadline = Instant::now() + WAIT;
    loop {
        match quiet_window(env, window).await {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() > deadline => return Err(e),
            Err(_) => {}
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The read API and kubectl

/// `kubectl <args> --as <user>`'s stdout, or a failure with its stderr.
fn kubectl_as(env: &Env, user: &str, args: &[&str]) -> Result<String, Failed> {
    let mut all = args.to_vec();
    all.extend(["--as", user]);
    stdout_of(&env.kubectl(&all), &format!("kubectl {}", all.join(" ")))
}

/// `kubectl get usage --field-selector <selector> -o json --as <user>`, parsed.
fn usage_list(env: &Env, user: &str, selector: &str) -> Result<Value, Failed> {
    let mut args = vec!["get", "usage", "-o", "json"];
    if !selector.is_empty() {
        args.extend(["--field-selector", selector]);
    }
    let text = kubectl_as(env, user, &args)?;
    Ok(serde_json::from_str(&text)
        .map_err(|e| format!("kubectl get usage -o json: {e}: {text}"))?)
}

fn items(list: &Value) -> Vec<Value> {
    list["items"].as_array().cloned().unwrap_or_default()
}

fn item_names(list: &Value) -> Vec<String> {
    items(list)
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap_or("?").to_string())
        .collect()
}

/// Waits until `user`'s `kubectl get usage` (with `selector`) has the item `name` and it passes
/// `check` (the read API's index follows the records a moment later).
async fn wait_usage_item(
    env: &Env,
    user: &str,
    selector: &str,
    name: &str,
    check: impl Fn(&Value) -> Result<(), String>,
) -> Result<Value, Failed> {
    let deadline = Instant::now() + WAIT;
    loop {
        let why = match usage_list(env, user, selector) {
            Ok(list) => match items(&list)
                .into_iter()
                .find(|i| i["metadata"]["name"] == name)
            {
                Some(item) => match check(&item) {
                    Ok(()) => return Ok(item),
                    Err(why) => format!("{why}; the item is {item}"),
                },
                None => format!("no item {name}; items: {:?}", item_names(&list)),
            },
            Err(e) => e.message().unwrap_or_default().to_string(),
        };
        if Instant::now() > deadline {
            return Err(format!(
                "timed out after {WAIT:?} waiting for {user}'s kubectl get usage --field-selector {selector:?} to show {name}: {why}"
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// `usage` of a read-API item as `cpu=… memory=… storage=… pods=…`.
fn item_totals(item: &Value) -> String {
    let u = &item["usage"];
    let s = |k: &str| u[k].as_str().unwrap_or("?").to_string();
    totals(
        &s("cpuCoreHours"),
        &s("memoryGiBHours"),
        &s("storageGiBHours"),
        &s("podHours"),
    )
}

fn item_time(item: &Value, field: &str) -> Option<Timestamp> {
    item[field].as_str()?.parse().ok()
}

/// kubectl's table output: the header's column names and each row's cells, cut where the
/// header's columns start (column names hold single spaces; columns are two apart at least).
fn table(text: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let Some(header) = lines.next() else {
        return (Vec::new(), Vec::new());
    };
    let bytes = header.as_bytes();
    let starts: Vec<usize> = (0..bytes.len())
        .filter(|&i| bytes[i] != b' ' && (i == 0 || (i >= 2 && &bytes[i - 2..i] == b"  ")))
        .collect();
    let cut = |line: &str| -> Vec<String> {
        starts
            .iter()
            .enumerate()
            .map(|(n, &s)| {
                let end = starts
                    .get(n + 1)
                    .copied()
                    .unwrap_or(usize::MAX)
                    .min(line.len());
                line.get(s.min(end)..end).unwrap_or("").trim().to_string()
            })
            .collect()
    };
    let columns = cut(header);
    let rows = lines.map(cut).collect();
    (columns, rows)
}

// ---------------------------------------------------------------------------------------------
// Project status

fn condition<'a>(p: &'a Project, type_: &str) -> Option<&'a Condition> {
    p.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
}

/// `status/reason` of a condition, e.g. `True/Suspended` (`-` when absent).
fn condition_text(p: &Project, type_: &str) -> String {
    condition(p, type_)
        .map(|c| format!("{}/{}", c.status, c.reason))
        .unwrap_or_else(|| "-".into())
}

fn credit_text(p: &Project) -> String {
    serde_json::to_string(&p.status.as_ref().and_then(|s| s.credit.as_ref())).unwrap_or_default()
}

async fn deployment_replicas(client: &Client, ns: &str, name: &str) -> Option<i32> {
    Api::<Deployment>::namespaced(client.clone(), ns)
        .get(name)
        .await
        .ok()?
        .spec?
        .replicas
}

/// The `pods` the namespace's `tenancy-quota` allows (None: no such quota or limit).
async fn quota_pods(client: &Client, ns: &str) -> Result<Option<String>, String> {
    let quota = Api::<ResourceQuota>::namespaced(client.clone(), ns)
        .get_opt("tenancy-quota")
        .await
        .map_err(|e| format!("reading the quota of {ns}: {e}"))?;
    Ok(quota
        .and_then(|q| q.spec?.hard)
        .and_then(|h| h.get("pods").map(|q| q.0.clone())))
}

/// Waits until there is a Warning Event `reason` about the Project `name` (events about
/// cluster-scoped objects are kept in `default`; the core/v1 view is listed in all namespaces).
async fn wait_warning_event(client: &Client, name: &str, reason: &str) -> Result<Event, Failed> {
    let events = Api::<Event>::all(client.clone());
    let fields = format!("involvedObject.kind=Project,involvedObject.name={name}");
    let deadline = Instant::now() + WAIT;
    loop {
        let seen = match events.list(&ListParams::default().fields(&fields)).await {
            Ok(list) => {
                if let Some(e) = list.items.iter().find(|e| {
                    e.reason.as_deref() == Some(reason) && e.type_.as_deref() == Some("Warning")
                }) {
                    return Ok(e.clone());
                }
                format!(
                    "{:?}",
                    list.items
                        .iter()
                        .map(|e| (e.type_.clone(), e.reason.clone(), e.message.clone()))
                        .collect::<Vec<_>>()
                )
            }
            Err(e) => format!("listing events failed: {e}"),
        };
        if Instant::now() > deadline {
            return Err(format!(
                "timed out after {WAIT:?} waiting for a Warning Event {reason} about Project {name}; events: {seen}"
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// 1. Exact hours and cost

/// A pod requesting 500m cpu and 1Gi memory runs 10 hours, then (in the same instant) it goes
/// and a 10Gi claim comes, which is deleted 5 hours later: 5 core-hours, 10 GiB-hours of memory,
/// 50 GiB-hours of storage and 10 pod-hours, exactly, priced by the hours of March 2027 (744),
/// in the record and in the owner's `kubectl get usage`. Then a quiet window with the clock
/// frozen: no ProjectUsage write at all.
async fn exact_hours_and_cost_for_a_pod_then_a_claim(env: Arc<Env>) -> TestResult {
    let admin = env.client().await;
    let clock = FrozenClock::new(&env);
    let t0 = ts("2027-03-10T08:00:00Z");
    clock.freeze(t0).await?;
    let t = make_tenant(&env, "e2e-usage-exact", true, json!({})).await?;
    let p = &t.project;
    let name = format!("{p}.{}", month_of(t0));
    let pods = Api::<Pod>::namespaced(admin.clone(), p);
    let claims = Api::<PersistentVolumeClaim>::namespaced(admin.clone(), p);

    pods.create(&pp(), &pod("app", "500m", Some("1Gi"))).await?;
    wait_record(
        &env,
        &name,
        "the pod's rate from T0",
        open_at(rate("500m", "1Gi", "0", 1), t0),
    )
    .await?;

    // T0+10h: the pod goes and the claim comes, both at the same instant.
    clock.freeze(t0 + hours(10)).await?;
    pods.delete("app", &now_gone()).await?;
    claims.create(&pp(), &claim("data", "10Gi")).await?;
    wait_record(
        &env,
        &name,
        "the claim's rate from T0+10h",
        open_at(rate("0", "0", "10Gi", 0), t0 + hours(10)),
    )
    .await?;

    // T0+15h: the claim goes.
    clock.freeze(t0 + hours(15)).await?;
    delete_claim(&claims, "data").await?;
    let r = wait_record(
        &env,
        &name,
        "nothing requested from T0+15h",
        open_at(rate("0", "0", "0", 0), t0 + hours(15)),
    )
    .await?;

    let mut checks = Checks::default();
    let want_totals = totals("5", "10", "50", "10");
    checks.equal(
        "the record's totals (hours)",
        totals_of(&r),
        want_totals.clone(),
    );
    let (want_total, want_by) = expected_cost(
        month_hours(t0),
        &[
            ("cpu", uh(5)),
            ("memory", uh(10)),
            ("storage", uh(50)),
            ("pods", uh(10)),
        ],
    );
    let cost = r.spec.cost.clone().unwrap_or_default();
    checks.equal(
        &format!(
            "the record's cost (priced by the {} hours of {})",
            month_hours(t0),
            month_of(t0)
        ),
        (cost.currency.as_str(), cost.total.as_str()),
        ("EUR", want_total.as_str()),
    );
    checks.equal(
        "the record's cost by resource",
        cost.by_resource.clone(),
        want_by,
    );
    checks.equal(
        "the record's month",
        r.spec.month.as_str(),
        month_of(t0).as_str(),
    );
    checks.equal(
        "the record's days (all of it on the 10th)",
        r.spec.days.keys().cloned().collect::<Vec<_>>(),
        vec!["10".to_string()],
    );

    // The customer's owner reads the same through the read API.
    let owner_view = wait_usage_item(
        &env,
        &t.owner,
        &format!("project={p},month=current"),
        &name,
        |i| {
            (item_totals(i) == want_totals)
                .then_some(())
                .ok_or(format!("usage is {}, want {want_totals}", item_totals(i)))
        },
    )
    .await;
    match owner_view {
        Ok(item) => {
            checks.equal(
                "the owner's kubectl get usage: cost",
                (
                    item["cost"]["currency"].as_str(),
                    item["cost"]["total"].as_str(),
                ),
                (Some("EUR"), Some(want_total.as_str())),
            );
            checks.equal(
                "the owner's kubectl get usage: state",
                item["state"].as_str(),
                Some("Open"),
            );
            checks.equal(
                "the owner's kubectl get usage: billing",
                item["billing"].as_str(),
                Some("Shown"),
            );
            checks.equal(
                "the owner's kubectl get usage: asOf (the frozen now)",
                item_time(&item, "asOf"),
                Some(t0 + hours(15)),
            );
        }
        Err(e) => checks.fact(
            "the owner's kubectl get usage shows the same hours",
            false,
            e.message().unwrap_or_default().to_string(),
        ),
    }

    // Nothing changes and the clock stands still: nothing is written.
    checks.outcome(
        "no ProjectUsage write in a quiet 5 s",
        quiet_window(&env, Duration::from_secs(5)).await,
    );
    let after = records(&admin).get(&name).await?;
    checks.equal(
        "the record after the quiet window (resourceVersion)",
        after.resource_version(),
        r.resource_version(),
    );

    let cleaned = clean_up(&env, &[&t]).await;
    finish(checks, "usage: exact hours and cost", cleaned)
}

// ---------------------------------------------------------------------------------------------
// 2. A month closes at midnight UTC

/// A pod requesting 1 cpu from 22:00 on 30 April 2027: at 00:00:05 on 1 May the April record is
/// Closed at midnight with exactly 2 core-hours and 2 pod-hours, priced by April's 720 hours, and
/// May's record is Open from midnight at the same rate. Then the pod goes hours later: May's
/// record changes, April's (resourceVersion and spec) does not; the owner's
/// `kubectl get usage --field-selector month=2027-04` shows it Closed.
async fn the_month_closes_at_midnight_utc_and_stays_closed(env: Arc<Env>) -> TestResult {
    let admin = env.client().await;
    let clock = FrozenClock::new(&env);
    let evening = ts("2027-04-30T22:00:00Z");
    let midnight = ts("2027-05-01T00:00:00Z");
    clock.freeze(evening).await?;
    let t = make_tenant(&env, "e2e-usage-close", true, json!({})).await?;
    let p = &t.project;
    let april = format!("{p}.{}", month_of(evening));
    let may = format!("{p}.{}", month_of(midnight));
    let pods = Api::<Pod>::namespaced(admin.clone(), p);
    pods.create(&pp(), &pod("app", "1", None)).await?;
    wait_record(
        &env,
        &april,
        "1 cpu from 22:00",
        open_at(rate("1", "0", "0", 1), evening),
    )
    .await?;

    clock
        .freeze(midnight + SignedDuration::from_secs(5))
        .await?;
    let closed = wait_record(&env, &april, "Closed at midnight", |r| {
        (r.spec.state == UsageState::Closed && r.spec.since.0 == midnight)
            .then_some(())
            .ok_or(format!("want Closed since {}", rfc3339(midnight)))
    })
    .await?;
    let opened = wait_record(
        &env,
        &may,
        "Open from midnight at 1 cpu",
        open_at(rate("1", "0", "0", 1), midnight),
    )
    .await?;

    let mut checks = Checks::default();
    checks.equal(
        "April's totals (22:00 to midnight)",
        totals_of(&closed),
        totals("2", "0", "0", "2"),
    );
    let (april_cost, _) = expected_cost(month_hours(evening), &[("cpu", uh(2)), ("pods", uh(2))]);
    checks.equal(
        &format!(
            "April's cost (priced by its {} hours)",
            month_hours(evening)
        ),
        closed.spec.cost.as_ref().map(|c| c.total.clone()),
        Some(april_cost.clone()),
    );
    checks.equal(
        "April's closedAt (when the operator closed it)",
        closed.spec.closed_at.as_ref().map(|t| t.0),
        Some(midnight + SignedDuration::from_secs(5)),
    );
    checks.equal(
        "May's totals at midnight",
        totals_of(&opened),
        totals("0", "0", "0", "0"),
    );
    checks.equal(
        "May's rateSince (the rate carried over from 22:00)",
        opened.spec.rate_since.0,
        evening,
    );

    // Hours later the pod goes: May changes, April stays as it was closed.
    let three = midnight + hours(3);
    clock.freeze(three).await?;
    pods.delete("app", &now_gone()).await?;
    let may_after = wait_record(
        &env,
        &may,
        "nothing requested from 03:00",
        open_at(rate("0", "0", "0", 0), three),
    )
    .await;
    match may_after {
        Ok(r) => checks.equal(
            "May's totals at 03:00",
            totals_of(&r),
            totals("3", "0", "0", "3"),
        ),
        Err(e) => checks.fact(
            "May's record follows the pod",
            false,
            e.message().unwrap_or_default().to_string(),
        ),
    }
    let april_after = records(&admin).get(&april).await?;
    checks.equal(
        "April's resourceVersion after May changed",
        april_after.resource_version(),
        closed.resource_version(),
    );
    checks.check(
        "April's spec after May changed",
        april_after.spec == closed.spec,
        format!("was {}, is {}", spec_text(&closed), spec_text(&april_after)),
    );

    // The owner sees April Closed.
    let seen = wait_usage_item(
        &env,
        &t.owner,
        &format!("month={}", month_of(evening)),
        &april,
        |i| {
            (i["state"] == "Closed")
                .then_some(())
                .ok_or("want state Closed".to_string())
        },
    )
    .await;
    match seen {
        Ok(item) => {
            checks.equal(
                "the owner's April: usage",
                item_totals(&item),
                totals("2", "0", "0", "2"),
            );
            checks.equal(
                "the owner's April: asOf",
                item_time(&item, "asOf"),
                Some(midnight),
            );
            checks.equal(
                "the owner's April: cost",
                item["cost"]["total"].as_str().map(str::to_string),
                Some(april_cost),
            );
        }
        Err(e) => checks.fact(
            "the owner's kubectl get usage shows April Closed",
            false,
            e.message().unwrap_or_default().to_string(),
        ),
    }

    let cleaned = clean_up(&env, &[&t]).await;
    finish(checks, "usage: the month closes at midnight UTC", cleaned)
}

// ---------------------------------------------------------------------------------------------
// 3. A killed operator

/// Kills the suite's operator (SIGKILL).
fn kill_operator(env: &Env) -> TestResult {
    let op = env
        .operator()
        .ok_or("this suite runs without the operator")?;
    op.kill();
    eprintln!("[e2e] usage: the operator was killed (SIGKILL)");
    Ok(())
}

/// Starts the suite's operator again and waits until it is ready.
fn restart_operator(env: &Env) -> TestResult {
    let op = env
        .operator()
        .ok_or("this suite runs without the operator")?;
    let t = Instant::now();
    op.resume(env.cluster())?;
    eprintln!(
        "[e2e] usage: the operator is ready again after {:.1}s",
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Every version of one record the apiserver reports while it runs (a watch): how the record
/// went, for failure messages.
struct RecordHistory {
    seen: Arc<std::sync::Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl RecordHistory {
    fn follow(env: &Env, client: &Client, name: &str) -> RecordHistory {
        use futures::StreamExt;
        use kube::runtime::watcher;
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let stream = watcher(
            records(client),
            watcher::Config::default().fields(&format!("metadata.name={name}")),
        );
        let into = seen.clone();
        let task = env.handle().spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(event) = stream.next().await {
                let r = match event {
                    Ok(watcher::Event::Apply(r) | watcher::Event::InitApply(r)) => r,
                    _ => continue,
                };
                let line = format!(
                    "rv {} since {} rate {} rateSince {} totals {}",
                    r.resource_version().unwrap_or_default(),
                    rfc3339(r.spec.since.0),
                    rate_of(&r),
                    rfc3339(r.spec.rate_since.0),
                    totals_of(&r)
                );
                // When the watch saw it (the real clock), to set beside the operator's log.
                let mut seen = into.lock().expect("history lock");
                if !seen.last().is_some_and(|l: &String| l.starts_with(&line)) {
                    seen.push(format!("{line} (seen at {})", jiff::Timestamp::now()));
                }
            }
        });
        RecordHistory { seen, task }
    }

    fn versions(&self) -> String {
        self.seen.lock().expect("history lock").join("\n    ")
    }
}

impl Drop for RecordHistory {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Changes the project's description and waits until the operator has reconciled that
/// generation: proof it looked at the project (and its usage) with the clock as it now is.
async fn poke(env: &Env, project_name: &str, text: &str) -> TestResult {
    let admin = env.client().await;
    let p = Api::<Project>::all(admin.clone())
        .patch(
            project_name,
            &patch_params(),
            &merge(json!({"spec": {"description": text}})),
        )
        .await?;
    let generation = p.metadata.generation;
    wait_project(
        &admin,
        project_name,
        "the description's generation reconciled",
        |p| (p.status.as_ref().and_then(|s| s.observed_generation) >= generation).then_some(()),
    )
    .await
}

/// A pod requesting 1 cpu from T0; the operator is SIGKILLed, the clock moves 5 hours while it
/// is down, and it starts again: the restart writes nothing (the rate did not change; no
/// ProjectUsage write at all by the new process), and when the pod goes the record holds
/// exactly 5 core-hours. Killed again right after that change was written and started 4 hours
/// later: still nothing written, still 5.
async fn a_killed_operator_loses_and_double_counts_nothing(env: Arc<Env>) -> TestResult {
    let admin = env.client().await;
    let clock = FrozenClock::new(&env);
    let _revive = Revive(env.clone());
    let t0 = ts("2027-06-07T08:00:00Z");
    clock.freeze(t0).await?;
    let t = make_tenant(&env, "e2e-usage-kill", true, json!({})).await?;
    let p = &t.project;
    let name = format!("{p}.{}", month_of(t0));
    let pods = Api::<Pod>::namespaced(admin.clone(), p);
    pods.create(&pp(), &pod("app", "1", None)).await?;
    let first = wait_record(
        &env,
        &name,
        "1 cpu from T0",
        open_at(rate("1", "0", "0", 1), t0),
    )
    .await?;
    // Everything the jump to T0 asked for (of any project) is written before the kill, so that
    // anything the new process writes is its own doing.
    wait_quiet(&env, Duration::from_secs(3)).await?;

    let mut checks = Checks::default();
    let history = RecordHistory::follow(&env, &admin, &name);
    kill_operator(&env)?;
    clock.freeze(t0 + hours(5)).await?;
    restart_operator(&env)?;
    poke(&env, p, "after the first restart").await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = records(&admin).get(&name).await?;
    checks.check(
        "the record after a restart 5 h later is the one written before (resourceVersion)",
        after.resource_version() == first.resource_version(),
        format!(
            "it was {:?}, it is {:?}; the versions the watch saw:\n    {}{}",
            first.resource_version(),
            after.resource_version(),
            history.versions(),
            operator_log_about(&env, p)
        ),
    );
    checks.equal(
        "ProjectUsage writes by the restarted operator (the clock moved within the month, no rate changed)",
        usage_writes(&env).await?,
        0.0,
    );

    pods.delete("app", &now_gone()).await?;
    let changed = wait_record(
        &env,
        &name,
        "nothing requested from T0+5h",
        open_at(rate("0", "0", "0", 0), t0 + hours(5)),
    )
    .await?;
    checks.equal(
        "the totals when the pod went at T0+5h",
        totals_of(&changed),
        totals("5", "0", "0", "5"),
    );

    // Killed right after a change was written; back 4 hours later.
    wait_quiet(&env, Duration::from_secs(3)).await?;
    kill_operator(&env)?;
    clock.freeze(t0 + hours(9)).await?;
    restart_operator(&env)?;
    poke(&env, p, "after the second restart").await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let again = records(&admin).get(&name).await?;
    checks.check(
        "the record after the second restart is the one written before (resourceVersion)",
        again.resource_version() == changed.resource_version(),
        format!(
            "it was {:?}, it is {:?}; the versions the watch saw:\n    {}{}",
            changed.resource_version(),
            again.resource_version(),
            history.versions(),
            operator_log_about(&env, p)
        ),
    );
    checks.equal(
        "ProjectUsage writes by the operator restarted the second time",
        usage_writes(&env).await?,
        0.0,
    );
    checks.equal(
        "the totals after the second restart",
        totals_of(&again),
        totals("5", "0", "0", "5"),
    );
    let seen = wait_usage_item(
        &env,
        &t.owner,
        &format!("project={p},month=current"),
        &name,
        |i| {
            (item_time(i, "asOf") == Some(t0 + hours(9)))
                .then_some(())
                .ok_or(format!("want asOf {}", rfc3339(t0 + hours(9))))
        },
    )
    .await;
    match seen {
        Ok(item) => checks.equal(
            "the owner's kubectl get usage at T0+9h",
            item_totals(&item),
            totals("5", "0", "0", "5"),
        ),
        Err(e) => checks.fact(
            "the owner's kubectl get usage at T0+9h",
            false,
            e.message().unwrap_or_default().to_string(),
        ),
    }

    let cleaned = clean_up(&env, &[&t]).await;
    finish(checks, "usage: a killed operator", cleaned)
}

// ---------------------------------------------------------------------------------------------
// 4. Credit

/// A project with 1.05 EUR of credit and the policy Suspend, a Deployment of 2 replicas and a
/// pod requesting 500m cpu (10 EUR a month for the cpu and 0.50 for the pod, in a 744-hour
/// month): `status.credit.runsOutAt` is the instant the rule gives (74h24m later) and lowAt the
/// one where 20% remains; a second before it runs out the project is low but not exhausted and
/// runs; at it, it is exhausted and suspended (replicas 0, pods: 0, a Warning Event). A Manager
/// may not raise the credit (403 naming spec.credit); the customer's owner may, and the project
/// resumes.
async fn credit_runs_out_at_the_computed_instant_and_suspend_resumes_with_more_credit(
    env: Arc<Env>,
) -> TestResult {
    let admin = env.client().await;
    let clock = FrozenClock::new(&env);
    let t0 = ts("2027-07-05T00:00:00Z");
    let credit_micros: i128 = 1_050_000;
    clock.freeze(t0).await?;
    let t = make_tenant(
        &env,
        "e2e-usage-credit",
        true,
        json!({"credit": 1.05, "creditExhaustedPolicy": "Suspend"}),
    )
    .await?;
    let p = &t.project;
    let manager = format!("{p}-manager");
    add_member(&env, p, &manager, "Manager").await?;
    wait_access_named(
        &env,
        &manager,
        "patch",
        "projects.tenancy.dev",
        p,
        None,
        true,
    )
    .await?;
    let mut web = crate::support::deployment("web");
    web.spec.as_mut().expect("a spec").replicas = Some(2);
    Api::<Deployment>::namespaced(admin.clone(), p)
        .create(&pp(), &web)
        .await?;
    Api::<Pod>::namespaced(admin.clone(), p)
        .create(&pp(), &pod("app", "500m", None))
        .await?;
    let name = format!("{p}.{}", month_of(t0));
    wait_record(
        &env,
        &name,
        "500m cpu from T0",
        open_at(rate("500m", "0", "0", 1), t0),
    )
    .await?;

    // When it runs out and falls low, by the rule: cost per month at this rate = Σ price ×
    // quantity; the credit lasts credit × month / that (to the millisecond, rounded up).
    let prices = prices();
    let monthly = prices["cpu"] * 500 / 1000 + prices["pods"];
    let month_ms = month_hours(t0) * 3_600_000;
    let lasting = |amount: i128| -> SignedDuration {
        let ms = (amount * month_ms + monthly - 1) / monthly;
        SignedDuration::from_millis(i64::try_from(ms).expect("a test duration"))
    };
    let runs_out = t0 + lasting(credit_micros);
    let low_at = t0 + lasting(credit_micros - credit_micros * 20 / 100);
    if runs_out.subsec_nanosecond() != 0 || low_at.subsec_nanosecond() != 0 {
        return Err(format!(
            "the test's figures give instants with fractions of a second ({runs_out}, {low_at}); choose a credit that lasts whole seconds"
        )
        .into());
    }
    eprintln!(
        "[e2e] usage: {} EUR at {} EUR a month lasts until {} (low at {})",
        cents(credit_micros),
        cents(monthly),
        rfc3339(runs_out),
        rfc3339(low_at)
    );
    let mut checks = Checks::default();
    let announced = wait_project(&admin, p, "status.credit with runsOutAt", |p| {
        p.status.as_ref()?.credit.as_ref()?.runs_out_at.as_ref()?;
        Some(p.clone())
    })
    .await?;
    let credit = announced
        .status
        .as_ref()
        .and_then(|s| s.credit.clone())
        .expect("waited for");
    checks.equal(
        "status.credit.runsOutAt",
        credit.runs_out_at.as_ref().map(|t| t.0),
        Some(runs_out),
    );
    checks.equal(
        "status.credit.lowAt (20% left)",
        credit.low_at.as_ref().map(|t| t.0),
        Some(low_at),
    );
    checks.equal(
        "status.credit amount, consumed, remaining",
        (
            credit.currency.as_str(),
            credit.amount.as_str(),
            credit.consumed.as_str(),
            credit.remaining.as_str(),
        ),
        ("EUR", "1.05", "0.00", "1.05"),
    );
    checks.equal(
        "CreditExhausted at T0",
        condition_text(&announced, "CreditExhausted"),
        "False/CreditLeft".to_string(),
    );

    // A second before it runs out: low, not exhausted, still running.
    clock
        .freeze(runs_out - SignedDuration::from_secs(1))
        .await?;
    let low = checks.waited(
        "CreditLow True a second before the credit runs out",
        wait_project(&admin, p, "CreditLow True", |p| {
            (condition(p, "CreditLow")?.status == "True").then(|| p.clone())
        })
        .await,
    )?;
    checks.equal(
        "CreditExhausted a second before",
        condition_text(&low, "CreditExhausted"),
        "False/CreditLeft".to_string(),
    );
    checks.equal(
        "web's replicas a second before",
        deployment_replicas(&admin, p, "web").await,
        Some(2),
    );
    let pods_quota = quota_pods(&admin, p).await?;
    checks.check(
        "the quota a second before allows pods",
        pods_quota.as_deref() != Some("0"),
        format!("tenancy-quota pods is {pods_quota:?}"),
    );
    checks.outcome(
        "a Warning Event CreditLow on the project",
        wait_warning_event(&admin, p, "CreditLow")
            .await
            .map(|e| e.message),
    );

    // At the instant: exhausted and suspended.
    clock.freeze(runs_out).await?;
    let exhausted = checks.waited(
        "CreditExhausted True at runsOutAt",
        wait_project(&admin, p, "CreditExhausted True", |p| {
            (condition(p, "CreditExhausted")?.status == "True").then(|| p.clone())
        })
        .await,
    )?;
    checks.equal(
        "CreditExhausted's reason",
        condition_text(&exhausted, "CreditExhausted"),
        "True/Suspended".to_string(),
    );
    let client = admin.clone();
    let suspended = wait_for("web scaled to 0 and the quota at pods: 0", WAIT, || {
        let (client, p) = (client.clone(), p.clone());
        async move {
            let replicas = deployment_replicas(&client, &p, "web").await;
            let quota = quota_pods(&client, &p).await.ok().flatten();
            (replicas == Some(0) && quota.as_deref() == Some("0")).then_some(())
        }
    })
    .await;
    if suspended.is_err() {
        checks.fact(
            "suspended at runsOutAt (web replicas 0, quota pods 0)",
            false,
            format!(
                "replicas {:?}, quota pods {:?}, project status conditions CreditExhausted {}, credit {}",
                deployment_replicas(&admin, p, "web").await,
                quota_pods(&admin, p).await,
                condition_text(&exhausted, "CreditExhausted"),
                credit_text(&exhausted)
            ),
        );
    } else {
        checks.fact(
            "suspended at runsOutAt (web replicas 0, quota pods 0)",
            true,
            "",
        );
    }
    let remembered = Api::<Project>::all(admin.clone())
        .get(p)
        .await?
        .status
        .and_then(|s| s.suspension)
        .map(|s| s.replicas.get("Deployment/web").copied());
    checks.equal(
        "status.suspension remembers web's replicas",
        remembered,
        Some(Some(2)),
    );
    checks.outcome(
        "a Warning Event CreditExhausted on the project",
        wait_warning_event(&admin, p, "CreditExhausted")
            .await
            .map(|e| e.message),
    );

    // A Manager may not raise the credit; the customer's owner may.
    let as_manager = Api::<Project>::all(env.client_as(&manager, &[]).await);
    let refused = as_manager
        .patch(
            p,
            &patch_params(),
            &merge(json!({"spec": {"credit": 1000}})),
        )
        .await;
    let (code, message) = match &refused {
        Ok(_) => (200, String::new()),
        Err(e) => refusal(e),
    };
    checks.check(
        "a Manager raising spec.credit is refused with 403 naming spec.credit",
        code == 403 && message.contains("spec.credit"),
        format!("HTTP {code}: {message}"),
    );
    let as_owner = Api::<Project>::all(env.client_as(&t.owner, &[]).await);
    let raised = as_owner
        .patch(p, &patch_params(), &merge(json!({"spec": {"credit": 100}})))
        .await;
    checks.check(
        "the customer's owner raises spec.credit to 100",
        raised.is_ok(),
        format!("{:?}", raised.as_ref().err()),
    );
    let resumed = wait_project(&admin, p, "CreditExhausted False after more credit", |p| {
        (condition(p, "CreditExhausted")?.status == "False").then(|| p.clone())
    })
    .await;
    match resumed {
        Ok(r) => checks.equal(
            "CreditExhausted after more credit",
            condition_text(&r, "CreditExhausted"),
            "False/CreditLeft".to_string(),
        ),
        Err(e) => checks.fact(
            "CreditExhausted False after more credit",
            false,
            e.message().unwrap_or_default().to_string(),
        ),
    }
    let back = wait_for(
        "web back at 2 replicas and the quota allowing pods",
        WAIT,
        || {
            let (client, p) = (client.clone(), p.clone());
            async move {
                let replicas = deployment_replicas(&client, &p, "web").await;
                let quota = quota_pods(&client, &p).await.ok()?;
                (replicas == Some(2) && quota.as_deref() != Some("0")).then_some(())
            }
        },
    )
    .await;
    checks.fact(
        "resumed with more credit (web replicas 2, quota pods not 0)",
        back.is_ok(),
        format!(
            "replicas {:?}, quota pods {:?}",
            deployment_replicas(&admin, p, "web").await,
            quota_pods(&admin, p).await
        ),
    );

    let cleaned = clean_up(&env, &[&t]).await;
    finish(
        checks,
        "usage: credit runs out and more credit resumes",
        cleaned,
    )
}

// ---------------------------------------------------------------------------------------------
// 5. Who sees billing

/// Customer A does not show billing in its projects, B does; each has a project with credit, a
/// pod, a Member and an owner. A's member sees A's usage without cost (billing Hidden, the table
/// says `<hidden>`), no cost or credit in the Project or the Customer, none of B's months, and
/// may not read projectusages at all; A's owner sees the cost; B's member sees cost and credit
/// everywhere; a stranger sees no month.
async fn billing_is_shown_to_members_only_where_the_customer_allows_it(
    env: Arc<Env>,
) -> TestResult {
    let admin = env.client().await;
    let clock = FrozenClock::new(&env);
    let t = ts("2027-08-10T08:00:00Z");
    clock.freeze(t).await?;
    let a = make_tenant(&env, "e2e-usage-hidden", false, json!({"credit": 5})).await?;
    let b = make_tenant(&env, "e2e-usage-shown", true, json!({"credit": 5})).await?;
    let member_a = format!("{}-member", a.project);
    let member_b = format!("{}-member", b.project);
    let stranger = unique_name("e2e-usage-stranger");
    add_member(&env, &a.project, &member_a, "Member").await?;
    add_member(&env, &b.project, &member_b, "Member").await?;
    for x in [&a, &b] {
        Api::<Pod>::namespaced(admin.clone(), &x.project)
            .create(&pp(), &pod("app", "250m", Some("256Mi")))
            .await?;
    }
    let month = month_of(t);
    let (name_a, name_b) = (
        format!("{}.{month}", a.project),
        format!("{}.{month}", b.project),
    );
    for n in [&name_a, &name_b] {
        wait_record(
            &env,
            n,
            "250m cpu from T",
            open_at(rate("250m", "256Mi", "0", 1), t),
        )
        .await?;
    }
    // Four hours on: the read API shows the open month accrued to now (1 core-hour).
    let later = t + hours(4);
    clock.freeze(later).await?;

    let mut checks = Checks::default();
    // The statuses as the operator wrote them (B's first: A's are checked once B shows cost).
    checks.waited(
        "B's project shows cost and credit in its status",
        wait_project(&admin, &b.project, "status.cost and status.credit", |p| {
            let s = p.status.as_ref()?;
            (s.cost.is_some() && s.credit.is_some()).then_some(())
        })
        .await,
    )?;
    checks.waited(
        "A's project status counts the pod",
        wait_project(&admin, &a.project, "status.usage cpu 250m", |p| {
            (p.status.as_ref()?.usage.get("cpu")? == "250m").then_some(())
        })
        .await,
    )?;
    let customers = Api::<Customer>::all(admin.clone());
    let cb = customers.clone();
    let cust_b = b.customer.clone();
    checks.waited(
        "B's customer shows cost in its status",
        wait_for("customer B's status.cost", WAIT, || {
            let (cb, cust_b) = (cb.clone(), cust_b.clone());
            async move { cb.get(&cust_b).await.ok()?.status?.cost.map(|_| ()) }
        })
        .await,
    )?;

    // A's member.
    let got = |user: &str, args: &[&str]| -> Result<Value, String> {
        let text = kubectl_as(&env, user, args)
            .map_err(|e| e.message().unwrap_or_default().to_string())?;
        serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))
    };
    match got(&member_a, &["get", "project", &a.project, "-o", "json"]) {
        Ok(v) => checks.check(
            "A's member: kubectl get project shows no status.cost and no status.credit",
            v["status"].get("cost").is_none()
                && v["status"].get("credit").is_none()
                && v["status"].get("usage").is_some(),
            format!("status is {}", v["status"]),
        ),
        Err(e) => checks.fact("A's member: kubectl get project", false, e),
    }
    match got(&member_a, &["get", "customer", &a.customer, "-o", "json"]) {
        Ok(v) => checks.check(
            "A's member: kubectl get customer shows no status.cost",
            v["status"].get("cost").is_none(),
            format!("status is {}", v["status"]),
        ),
        Err(e) => checks.fact("A's member: kubectl get customer", false, e),
    }
    let one_hour = |i: &Value| -> Result<(), String> {
        (i["usage"]["cpuCoreHours"] == "1")
            .then_some(())
            .ok_or(format!(
                "want 1 core-hour (4 h at 250m), got usage {}",
                i["usage"]
            ))
    };
    match wait_usage_item(
        &env,
        &member_a,
        &format!("project={}", a.project),
        &name_a,
        one_hour,
    )
    .await
    {
        Ok(item) => checks.check(
            "A's member: kubectl get usage shows A's month with billing Hidden, no cost, no credit",
            item["billing"] == "Hidden"
                && item.get("cost").is_none()
                && item.get("credit").is_none(),
            format!("the item is {item}"),
        ),
        Err(e) => checks.fact(
            "A's member: kubectl get usage",
            false,
            e.message().unwrap_or_default().to_string(),
        ),
    }
    match kubectl_as(
        &env,
        &member_a,
        &[
            "get",
            "usage",
            "--field-selector",
            &format!("project={}", a.project),
        ],
    ) {
        Ok(text) => {
            let (columns, rows) = table(&text);
            let cost_at = columns.iter().position(|c| c == "COST");
            let cell = rows
                .iter()
                .find(|r| r.first() == Some(&name_a))
                .and_then(|r| cost_at.and_then(|i| r.get(i)));
            checks.check(
                "A's member: the table's Cost column says <hidden>",
                cell.map(String::as_str) == Some("<hidden>"),
                format!("table:\n{text}"),
            );
        }
        Err(e) => checks.fact(
            "A's member: kubectl get usage (table)",
            false,
            e.message().unwrap_or_default().to_string(),
        ),
    }
    let listed = usage_list(&env, &member_a, "");
    match listed {
        Ok(list) => {
            let names = item_names(&list);
            checks.check(
                "A's member: kubectl get usage lists A's month and nothing of B's project",
                names.contains(&name_a)
                    && !names
                        .iter()
                        .any(|n| n.starts_with(&format!("{}.", b.project))),
                format!("items: {names:?}"),
            );
        }
        Err(e) => checks.fact(
            "A's member: kubectl get usage",
            false,
            e.message().unwrap_or_default().to_string(),
        ),
    }
    let forbidden = env.kubectl(&["get", "projectusages", "--as", &member_a]);
    let stderr = String::from_utf8_lossy(&forbidden.stderr).to_string();
    checks.check(
        "A's member: kubectl get projectusages is Forbidden",
        !forbidden.status.success() && stderr.contains("Forbidden"),
        format!("exit {}, stderr {stderr}", forbidden.status),
    );
    for verb in ["get", "list", "watch"] {
        let allowed = env
            .can_i(&member_a, &[], verb, "projectusages.tenancy.dev", None)
            .await;
        checks.check(
            &format!("A's member may not {verb} projectusages (SubjectAccessReview)"),
            !allowed,
            "allowed",
        );
    }
    let owner_may = env
        .can_i(&a.owner, &[], "list", "projectusages.tenancy.dev", None)
        .await;
    checks.check(
        "A's owner may not list projectusages either (SubjectAccessReview)",
        !owner_may,
        "allowed",
    );

    // A's owner sees the cost.
    let (want_cost, _) = expected_cost(
        month_hours(t),
        &[("cpu", uh(1)), ("memory", uh(1)), ("pods", uh(4))],
    );
    match wait_usage_item(
        &env,
        &a.owner,
        &format!("project={}", a.project),
        &name_a,
        one_hour,
    )
    .await
    {
        Ok(item) => checks.check(
            "A's owner: the usage item has the cost and the credit, billing Shown",
            item["billing"] == "Shown"
                && item["cost"]["total"] == want_cost.as_str()
                && item["credit"]["remaining"].is_string(),
            format!("want cost {want_cost}; the item is {item}"),
        ),
        Err(e) => checks.fact(
            "A's owner: kubectl get usage",
            false,
            e.message().unwrap_or_default().to_string(),
        ),
    }

    // B's member sees cost and credit everywhere.
    match wait_usage_item(
        &env,
        &member_b,
        &format!("project={}", b.project),
        &name_b,
        one_hour,
    )
    .await
    {
        Ok(item) => checks.check(
            "B's member: the usage item has the cost and the credit, billing Shown",
            item["billing"] == "Shown"
                && item["cost"]["total"] == want_cost.as_str()
                && item["credit"]["remaining"].is_string(),
            format!("want cost {want_cost}; the item is {item}"),
        ),
        Err(e) => checks.fact(
            "B's member: kubectl get usage",
            false,
            e.message().unwrap_or_default().to_string(),
        ),
    }
    match got(&member_b, &["get", "project", &b.project, "-o", "json"]) {
        Ok(v) => checks.check(
            "B's member: kubectl get project shows status.cost and status.credit",
            v["status"].get("cost").is_some() && v["status"].get("credit").is_some(),
            format!("status is {}", v["status"]),
        ),
        Err(e) => checks.fact("B's member: kubectl get project", false, e),
    }
    match got(&member_b, &["get", "customer", &b.customer, "-o", "json"]) {
        Ok(v) => checks.check(
            "B's member: kubectl get customer shows status.cost",
            v["status"].get("cost").is_some(),
            format!("status is {}", v["status"]),
        ),
        Err(e) => checks.fact("B's member: kubectl get customer", false, e),
    }
    match usage_list(&env, &member_b, "") {
        Ok(list) => {
            let names = item_names(&list);
            checks.check(
                "B's member: kubectl get usage lists nothing of A's project",
                names.contains(&name_b)
                    && !names
                        .iter()
                        .any(|n| n.starts_with(&format!("{}.", a.project))),
                format!("items: {names:?}"),
            );
        }
        Err(e) => checks.fact(
            "B's member: kubectl get usage",
            false,
            e.message().unwrap_or_default().to_string(),
        ),
    }

    // A stranger sees no month at all.
    match usage_list(&env, &stranger, "") {
        Ok(list) => checks.check(
            "a stranger: kubectl get usage lists nothing",
            items(&list).is_empty(),
            format!("items: {:?}", item_names(&list)),
        ),
        Err(e) => checks.fact(
            "a stranger: kubectl get usage",
            false,
            e.message().unwrap_or_default().to_string(),
        ),
    }

    // Customer A (admin's view): no status.cost either.
    let ca = customers.get(&a.customer).await?;
    checks.check(
        "customer A's status has no cost",
        ca.status.as_ref().is_some_and(|s| s.cost.is_none()),
        format!(
            "status is {}",
            serde_json::to_string(&ca.status).unwrap_or_default()
        ),
    );

    let cleaned = clean_up(&env, &[&a, &b]).await;
    finish(checks, "usage: who sees billing", cleaned)
}
