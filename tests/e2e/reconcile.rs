//! Issue 3: the reconcilers against the real control plane and the running operator. Access
//! that follows roles (checked by the apiserver's own authorizer), exact membership expiry,
//! quotas the apiserver enforces, counts that follow what the namespace holds, drift put back,
//! namespaces that are not ours left alone, and 200 projects that cost nothing once Ready.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{
    ConfigMap, LimitRange, Namespace, PersistentVolumeClaim, Pod, ResourceQuota, Service,
};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tenancy_operator::api::{Customer, MembershipPhase, Project, ProjectMembership, ProjectPhase};
use tenancy_operator::desired::quantity::same_quantity;

use crate::support::{
    Env, FIELD_MANAGER, Failed, TestResult, Trial, deployment, status_text, trial, unique_name,
    wait_until_every,
};

/// The custom resource kind the suite's operator counts (`--count-extra-kind`).
pub const WIDGETS: &str = "widgets.e2e.tenancy.dev";

/// How long the suite waits for anything the operator must do (a reconcile, access granted or
/// taken away, drift put back). Generous on purpose: CI is a loaded 2-core machine, and a flaky
/// bound blocks good changes. How fast things really happen is measured and printed (`[e2e]`
/// lines) and kept in the README's figures, not asserted.
const SETTLE: Duration = Duration::from_secs(60);

/// The tests that share the cluster with every other module's.
pub fn trials(env: &Arc<Env>) -> Vec<Trial> {
    vec![
        trial(
            env,
            "reconcile::roles_grant_what_they_say_and_owners_reach_every_project_of_their_customer",
            roles_grant_what_they_say_and_owners_reach_every_project_of_their_customer,
        ),
        trial(
            env,
            "reconcile::deleting_a_membership_or_an_owner_takes_the_access_away",
            deleting_a_membership_or_an_owner_takes_the_access_away,
        ),
        trial(
            env,
            "reconcile::an_expiring_membership_denies_from_its_instant_on_and_extending_it_grants_again",
            an_expiring_membership_denies_from_its_instant_on_and_extending_it_grants_again,
        ),
        trial(
            env,
            "reconcile::the_apiserver_enforces_the_quota_and_its_usage_shows_in_the_project",
            the_apiserver_enforces_the_quota_and_its_usage_shows_in_the_project,
        ),
        trial(
            env,
            "reconcile::resource_counts_follow_what_is_created_and_deleted",
            resource_counts_follow_what_is_created_and_deleted,
        ),
        trial(
            env,
            "reconcile::a_refused_write_is_counted_as_an_error_and_retried_until_it_succeeds",
            a_refused_write_is_counted_as_an_error_and_retried_until_it_succeeds,
        ),
        trial(
            env,
            "reconcile::a_child_the_apiserver_refuses_stops_no_revocation",
            a_child_the_apiserver_refuses_stops_no_revocation,
        ),
        trial(
            env,
            "reconcile::children_deleted_or_edited_by_hand_are_put_back",
            children_deleted_or_edited_by_hand_are_put_back,
        ),
        trial(
            env,
            "reconcile::what_workloads_request_is_priced_in_the_project_and_its_customer",
            what_workloads_request_is_priced_in_the_project_and_its_customer,
        ),
    ]
}

/// The suite's operator's price list (`--price`), in EUR a month: per core, GiB, GiB of claims
/// and pod.
pub const PRICES: &str = "cpu=20,memory=4.5,storage=0.1,pods=0.5";

/// The tests that must run alone on the cluster: one measures the whole control plane, the
/// other claims the names of the cluster's own namespaces (`default`, `kube-system`), which
/// other tests use as "no project's namespace".
pub fn exclusive_trials(env: &Arc<Env>) -> Vec<Trial> {
    vec![
        trial(
            env,
            "reconcile::two_hundred_projects_become_ready_and_then_cost_no_writes",
            two_hundred_projects_become_ready_and_then_cost_no_writes,
        ),
        trial(
            env,
            "reconcile::projects_named_like_foreign_namespaces_conflict_and_bind_nothing",
            projects_named_like_foreign_namespaces_conflict_and_bind_nothing,
        ),
        trial(
            env,
            "reconcile::an_object_the_operator_cannot_read_stops_no_watch",
            an_object_the_operator_cannot_read_stops_no_watch,
        ),
    ]
}

/// The CRDs of the test kinds, installed before the operator starts so it finds them at once.
pub fn test_crds() -> Vec<CustomResourceDefinition> {
    vec![from_json(json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": WIDGETS},
        "spec": {
            "group": "e2e.tenancy.dev",
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}},
            }],
        },
    }))]
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn from_json<K: DeserializeOwned>(value: Value) -> K {
    serde_json::from_value(value).expect("a test object is valid")
}

/// Polls `check` every 100 ms (the figures these trials print are measured by their waits) until
/// it returns `Ok`; on timeout the failure says what was awaited and why the last check said no.
async fn eventually<T, F, Fut>(what: &str, timeout: Duration, check: F) -> Result<T, Failed>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    wait_until_every(what, timeout, Duration::from_millis(100), check).await
}

/// Server-side applies `object` as the admin.
///
/// The webhook decides from the operator's watch caches, which see a Customer a moment after
/// it is created: a 422 saying the customer "does not exist" right after it was created is
/// retried for up to 10 s (see the report of issue 3: the webhook should look the customer up
/// when its cache misses it).
async fn apply<K>(api: &Api<K>, name: &str, object: Value) -> Result<K, Failed>
where
    K: Resource + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match api
            .patch(
                name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&object),
            )
            .await
        {
            Ok(obj) => return Ok(obj),
            Err(kube::Error::Api(s))
                if s.code == 422
                    && s.message.contains("does not exist")
                    && Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(format!("applying {name}: {e}").into()),
        }
    }
}

fn user(name: &str) -> Value {
    json!({"kind": "User", "name": name})
}

async fn create_customer(env: &Env, name: &str, owners: &[&str]) -> Result<Customer, Failed> {
    let owners: Vec<Value> = owners.iter().map(|o| user(o)).collect();
    apply(
        &Api::<Customer>::all(env.client().await),
        name,
        json!({
            "apiVersion": "tenancy.dev/v1alpha1", "kind": "Customer",
            "metadata": {"name": name},
            "spec": {"owners": owners},
        }),
    )
    .await
}

async fn create_project(env: &Env, name: &str, spec: Value) -> Result<Project, Failed> {
    apply(
        &Api::<Project>::all(env.client().await),
        name,
        json!({
            "apiVersion": "tenancy.dev/v1alpha1", "kind": "Project",
            "metadata": {"name": name},
            "spec": spec,
        }),
    )
    .await
}

/// A membership named `name` in `project`'s namespace.
async fn create_membership(
    env: &Env,
    project: &str,
    name: &str,
    who: &str,
    role: &str,
    expires: Option<Timestamp>,
) -> Result<ProjectMembership, Failed> {
    let mut spec = json!({"subject": user(who), "role": role});
    if let Some(at) = expires {
        spec["expirationTime"] = json!(at.to_string());
    }
    apply(
        &Api::<ProjectMembership>::namespaced(env.client().await, project),
        name,
        json!({
            "apiVersion": "tenancy.dev/v1alpha1", "kind": "ProjectMembership",
            "metadata": {"name": name, "namespace": project},
            "spec": spec,
        }),
    )
    .await
}

fn condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

fn is_true(conditions: &[Condition], type_: &str) -> bool {
    condition(conditions, type_).is_some_and(|c| c.status == "True")
}

/// Waits until the project satisfies `check`, returning it.
async fn project_where(
    env: &Env,
    name: &str,
    what: &str,
    timeout: Duration,
    check: impl Fn(&Project) -> Result<(), String>,
) -> Result<Project, Failed> {
    let api = Api::<Project>::all(env.client().await);
    eventually(&format!("project {name}: {what}"), timeout, || async {
        let p = api
            .get(name)
            .await
            .map_err(|e| format!("reading it: {e}"))?;
        check(&p).map(|()| p)
    })
    .await
}

/// Ready=True for the current generation.
fn ready(p: &Project) -> Result<(), String> {
    let status = p.status.as_ref().ok_or("no status yet")?;
    if status.observed_generation == p.metadata.generation && is_true(&status.conditions, "Ready") {
        Ok(())
    } else {
        Err(format!("status is {}", status_text(&p.status)))
    }
}

async fn ready_project(env: &Env, name: &str) -> Result<Project, Failed> {
    project_where(env, name, "Ready", Duration::from_secs(60), ready).await
}

async fn membership_where(
    env: &Env,
    project: &str,
    name: &str,
    what: &str,
    timeout: Duration,
    check: impl Fn(&ProjectMembership) -> Result<(), String>,
) -> Result<ProjectMembership, Failed> {
    let api = Api::<ProjectMembership>::namespaced(env.client().await, project);
    eventually(
        &format!("membership {project}/{name}: {what}"),
        timeout,
        || async {
            let m = api
                .get(name)
                .await
                .map_err(|e| format!("reading it: {e}"))?;
            check(&m).map(|()| m)
        },
    )
    .await
}

fn phase_is(phase: MembershipPhase) -> impl Fn(&ProjectMembership) -> Result<(), String> {
    move |m| {
        let s = m.status.as_ref();
        if s.and_then(|s| s.phase) == Some(phase)
            && (phase != MembershipPhase::Active
                || s.and_then(|s| s.role_binding.as_ref()).is_some())
        {
            Ok(())
        } else {
            Err(format!("status is {}", status_text(&m.status)))
        }
    }
}

/// The HTTP status of a failed request, or 0 when it succeeded or never got an answer.
fn code_of<T>(result: &Result<T, kube::Error>) -> u16 {
    match result {
        Err(kube::Error::Api(s)) => s.code,
        _ => 0,
    }
}

fn pod(name: &str, requests: Option<(&str, &str)>) -> Pod {
    let mut container = json!({"name": "app", "image": "registry.invalid/app:1"});
    if let Some((cpu, memory)) = requests {
        let amounts = json!({"cpu": cpu, "memory": memory});
        container["resources"] = json!({"requests": amounts, "limits": amounts});
    }
    from_json(json!({"metadata": {"name": name}, "spec": {"containers": [container]}}))
}

fn widgets(client: Client, namespace: &str) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("e2e.tenancy.dev", "v1", "Widget"),
        "widgets",
    );
    Api::namespaced_with(client, namespace, &ar)
}

fn widget(name: &str) -> DynamicObject {
    from_json(json!({
        "apiVersion": "e2e.tenancy.dev/v1", "kind": "Widget",
        "metadata": {"name": name},
        "spec": {"size": 3},
    }))
}

/// The last lines of the operator's log, for failure messages.
fn operator_log(env: &Env) -> String {
    match env.operator() {
        Some(op) => format!(
            "\n--- last lines of {} ---\n{}",
            op.log_path().display(),
            op.log_tail(30)
        ),
        None => String::new(),
    }
}

/// Seconds the operator's clock is moved by (tests that move time write the file).
fn operator_clock_offset(env: &Env) -> SignedDuration {
    std::fs::read_to_string(env.clock_offset_file())
        .ok()
        .and_then(|s| s.trim().parse::<f64>().ok())
        .map(SignedDuration::from_secs_f64)
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// Prometheus text
// ---------------------------------------------------------------------------------------------

/// One sample of a Prometheus text exposition: its labels and value.
#[derive(Debug, Clone)]
pub(crate) struct Sample {
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) value: f64,
}

/// The samples of `metric` (exact name) in a Prometheus text exposition.
pub(crate) fn samples(text: &str, metric: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let (name, rest) = match line.find(['{', ' ']) {
            Some(i) => line.split_at(i),
            None => continue,
        };
        if name != metric {
            continue;
        }
        let (labels, value) = match rest.strip_prefix('{') {
            Some(r) => match r.rfind('}') {
                Some(end) => (parse_labels(&r[..end]), &r[end + 1..]),
                None => continue,
            },
            None => (BTreeMap::new(), rest),
        };
        if let Some(value) = value.split_whitespace().next().and_then(|v| v.parse().ok()) {
            out.push(Sample { labels, value });
        }
    }
    out
}

fn parse_labels(text: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut chars = text.chars().peekable();
    loop {
        let key: String = chars
            .by_ref()
            .skip_while(|c| *c == ',' || c.is_whitespace())
            .take_while(|c| *c != '=')
            .collect();
        if key.is_empty() {
            break;
        }
        if chars.next() != Some('"') {
            break;
        }
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some(other) => value.push(other),
                    None => break,
                },
                '"' => break,
                c => value.push(c),
            }
        }
        labels.insert(key.trim().to_string(), value);
    }
    labels
}

fn sum_where(samples: &[Sample], keep: impl Fn(&BTreeMap<String, String>) -> bool) -> f64 {
    samples
        .iter()
        .filter(|s| keep(&s.labels))
        .map(|s| s.value)
        .sum()
}

pub(crate) async fn apiserver_metrics(env: &Env) -> Result<String, Failed> {
    let request = http::Request::get("/metrics")
        .body(Vec::new())
        .map_err(|e| format!("building GET /metrics: {e}"))?;
    Ok(env
        .client()
        .await
        .request_text(request)
        .await
        .map_err(|e| format!("GET /metrics from the apiserver: {e}"))?)
}

pub(crate) async fn operator_metrics(env: &Env) -> Result<String, Failed> {
    let addr = env
        .operator()
        .ok_or("this suite runs without the operator")?
        .metrics_addr();
    let answer = tokio::task::spawn_blocking(move || crate::support::http_get(addr, "/metrics"))
        .await
        .map_err(|e| format!("{e}"))?;
    match answer {
        Some((200, body)) => Ok(body),
        other => Err(format!("GET /metrics from the operator answered {other:?}").into()),
    }
}

/// The kinds the operator writes, as the apiserver's `resource` label names them.
const OPERATOR_RESOURCES: &[&str] = &[
    "namespaces",
    "resourcequotas",
    "limitranges",
    "rolebindings",
    "clusterroles",
    "clusterrolebindings",
    "projects",
    "customers",
    "projectmemberships",
    "events",
];

/// Verbs of write requests as `apiserver_request_total` reports them (server-side apply is
/// `APPLY`).
const WRITE_VERBS: &[&str] = &[
    "POST",
    "PUT",
    "PATCH",
    "APPLY",
    "DELETE",
    "DELETECOLLECTION",
];

fn is_write(labels: &BTreeMap<String, String>) -> bool {
    labels
        .get("verb")
        .is_some_and(|v| WRITE_VERBS.contains(&v.as_str()))
}

fn is_operator_resource(labels: &BTreeMap<String, String>) -> bool {
    labels
        .get("resource")
        .is_some_and(|r| OPERATOR_RESOURCES.contains(&r.as_str()))
}

/// Write requests to the operator's kinds (`operator_kinds`) or to every other kind, by
/// `VERB resource[/subresource]`.
fn writes_by_resource(samples: &[Sample], operator_kinds: bool) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for s in samples
        .iter()
        .filter(|s| is_write(&s.labels) && is_operator_resource(&s.labels) == operator_kinds)
    {
        let l = &s.labels;
        let sub = l.get("subresource").filter(|s| !s.is_empty());
        let key = format!(
            "{} {}{}",
            l.get("verb").map(String::as_str).unwrap_or("?"),
            l.get("resource").map(String::as_str).unwrap_or("?"),
            sub.map(|s| format!("/{s}")).unwrap_or_default()
        );
        *out.entry(key).or_insert(0.0) += s.value;
    }
    out
}

fn delta(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>) -> BTreeMap<String, f64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, d)| *d != 0.0)
        .collect()
}

/// The operator's own counters: writes it made (by kind and verb), admission reviews and
/// reconciles.
struct OperatorCounters {
    writes: BTreeMap<String, f64>,
    admissions: f64,
    reconciles: f64,
}

impl OperatorCounters {
    fn of(text: &str) -> Self {
        let mut writes = BTreeMap::new();
        for s in samples(text, "tenancy_api_writes_total") {
            let key = format!(
                "{} {}",
                s.labels.get("verb").map(String::as_str).unwrap_or("?"),
                s.labels.get("kind").map(String::as_str).unwrap_or("?")
            );
            *writes.entry(key).or_insert(0.0) += s.value;
        }
        OperatorCounters {
            writes,
            admissions: sum_where(&samples(text, "tenancy_admission_reviews_total"), |_| true),
            reconciles: sum_where(&samples(text, "tenancy_reconciles_total"), |_| true),
        }
    }

    fn total_writes(&self) -> f64 {
        self.writes.values().sum()
    }
}

// ---------------------------------------------------------------------------------------------
// 1. Access follows roles
// ---------------------------------------------------------------------------------------------

struct Check {
    who: String,
    verb: &'static str,
    resource: &'static str,
    namespace: String,
    allowed: bool,
}

async fn roles_grant_what_they_say_and_owners_reach_every_project_of_their_customer(
    env: Arc<Env>,
) -> TestResult {
    let acme = unique_name("e2e-rbac-acme");
    let globex = unique_name("e2e-rbac-globex");
    let owner_a = format!("{acme}-owner");
    let owner_b = format!("{globex}-owner");
    create_customer(&env, &acme, &[&owner_a]).await?;
    create_customer(&env, &globex, &[&owner_b]).await?;
    let a1 = unique_name("e2e-rbac-a");
    let a2 = unique_name("e2e-rbac-a");
    let b1 = unique_name("e2e-rbac-b");
    for (p, c) in [(&a1, &acme), (&a2, &acme), (&b1, &globex)] {
        create_project(&env, p, json!({"customer": c})).await?;
    }
    for p in [&a1, &a2, &b1] {
        ready_project(&env, p).await?;
    }
    let manager = unique_name("e2e-rbac-manager");
    let administrator = unique_name("e2e-rbac-administrator");
    let member = unique_name("e2e-rbac-member");
    let stranger = unique_name("e2e-rbac-stranger");
    for (name, who, role) in [
        ("manager", &manager, "Manager"),
        ("administrator", &administrator, "Administrator"),
        ("member", &member, "Member"),
    ] {
        create_membership(&env, &a1, name, who, role, None).await?;
    }
    for name in ["manager", "administrator", "member"] {
        membership_where(
            &env,
            &a1,
            name,
            "Active with its RoleBinding",
            Duration::from_secs(30),
            phase_is(MembershipPhase::Active),
        )
        .await?;
    }
    project_where(
        &env,
        &a1,
        "3 members counted",
        Duration::from_secs(30),
        |p| {
            let m = p.status.as_ref().and_then(|s| s.members.as_ref());
            match m {
                Some(m) if (m.managers, m.administrators, m.members, m.total) == (1, 1, 1, 3) => {
                    Ok(())
                }
                _ => Err(format!("members are {}", status_text(&m.cloned()))),
            }
        },
    )
    .await?;

    let c = |who: &str, verb, resource, namespace: &str, allowed| Check {
        who: who.to_string(),
        verb,
        resource,
        namespace: namespace.to_string(),
        allowed,
    };
    let checks = vec![
        c(&manager, "create", "deployments.apps", &a1, true),
        c(&manager, "delete", "pods", &a1, true),
        c(
            &manager,
            "create",
            "rolebindings.rbac.authorization.k8s.io",
            &a1,
            true,
        ),
        c(
            &manager,
            "create",
            "projectmemberships.tenancy.dev",
            &a1,
            true,
        ),
        c(&manager, "create", "deployments.apps", &a2, false),
        c(&manager, "get", "pods", &a2, false),
        c(&administrator, "create", "deployments.apps", &a1, true),
        c(&administrator, "update", "services", &a1, true),
        c(
            &administrator,
            "create",
            "rolebindings.rbac.authorization.k8s.io",
            &a1,
            false,
        ),
        c(
            &administrator,
            "list",
            "projectmemberships.tenancy.dev",
            &a1,
            true,
        ),
        c(
            &administrator,
            "create",
            "projectmemberships.tenancy.dev",
            &a1,
            false,
        ),
        c(&member, "get", "pods", &a1, true),
        c(&member, "list", "pods", &a1, true),
        c(&member, "list", "projectmemberships.tenancy.dev", &a1, true),
        c(&member, "create", "pods", &a1, false),
        c(&member, "delete", "pods", &a1, false),
        c(&member, "create", "deployments.apps", &a1, false),
        c(&member, "get", "secrets", &a1, false),
        c(&stranger, "get", "pods", &a1, false),
        c(&stranger, "list", "pods", &a1, false),
        c(&stranger, "create", "deployments.apps", &a1, false),
        c(&owner_a, "create", "deployments.apps", &a1, true),
        c(&owner_a, "create", "deployments.apps", &a2, true),
        c(
            &owner_a,
            "create",
            "projectmemberships.tenancy.dev",
            &a2,
            true,
        ),
        c(&owner_a, "create", "deployments.apps", &b1, false),
        c(&owner_a, "get", "pods", &b1, false),
        c(&owner_b, "create", "deployments.apps", &b1, true),
        c(&owner_b, "get", "pods", &a1, false),
        c(&owner_b, "get", "pods", &a2, false),
    ];
    // The role ClusterRoles are filled by the aggregation controller, which may lag a moment.
    eventually(
        "every access check to answer as the roles say",
        Duration::from_secs(30),
        || async {
            let mut wrong = Vec::new();
            for k in &checks {
                let got = env
                    .can_i(&k.who, &[], k.verb, k.resource, Some(&k.namespace))
                    .await;
                if got != k.allowed {
                    wrong.push(format!(
                        "{} {} {} in {}: {} (expected {})",
                        k.who,
                        k.verb,
                        k.resource,
                        k.namespace,
                        if got { "allowed" } else { "denied" },
                        if k.allowed { "allowed" } else { "denied" }
                    ));
                }
            }
            if wrong.is_empty() {
                Ok(())
            } else {
                Err(format!(
                    "{} of {} wrong:\n{}",
                    wrong.len(),
                    checks.len(),
                    wrong.join("\n")
                ))
            }
        },
    )
    .await?;

    // The same through real requests, as the users.
    let as_user = |who: String| {
        let env = env.clone();
        async move { env.client_as(&who, &[]).await }
    };
    let mut problems = Vec::new();
    let mut expect = |what: String, code: u16, want: u16| {
        if code != want {
            problems.push(format!(
                "{what}: answered {}, expected {}",
                if code == 0 {
                    "OK".into()
                } else {
                    code.to_string()
                },
                if want == 0 {
                    "OK".into()
                } else {
                    want.to_string()
                }
            ));
        }
    };
    let pp = PostParams::default();
    let manager_client = as_user(manager.clone()).await;
    let r = Api::<Deployment>::namespaced(manager_client, &a1)
        .create(&pp, &deployment("by-manager"))
        .await;
    expect(
        format!("manager creates a Deployment in {a1}"),
        code_of(&r),
        0,
    );
    let admin_client = as_user(administrator.clone()).await;
    let r = Api::<Deployment>::namespaced(admin_client.clone(), &a1)
        .create(&pp, &deployment("by-administrator"))
        .await;
    expect(
        format!("administrator creates a Deployment in {a1}"),
        code_of(&r),
        0,
    );
    let rb: RoleBinding = from_json(json!({
        "metadata": {"name": "self-promotion"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "admin"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": administrator}],
    }));
    let r = Api::<RoleBinding>::namespaced(admin_client, &a1)
        .create(&pp, &rb)
        .await;
    expect(
        format!("administrator creates a RoleBinding in {a1}"),
        code_of(&r),
        403,
    );
    let member_client = as_user(member.clone()).await;
    let r = Api::<Pod>::namespaced(member_client.clone(), &a1)
        .list(&ListParams::default())
        .await;
    expect(format!("member lists pods in {a1}"), code_of(&r), 0);
    let cm: ConfigMap = from_json(json!({"metadata": {"name": "by-member"}}));
    let r = Api::<ConfigMap>::namespaced(member_client.clone(), &a1)
        .create(&pp, &cm)
        .await;
    expect(
        format!("member creates a ConfigMap in {a1}"),
        code_of(&r),
        403,
    );
    let r = Api::<Project>::all(member_client.clone()).get(&a1).await;
    expect(format!("member reads Project {a1}"), code_of(&r), 0);
    let r = Api::<Customer>::all(member_client.clone()).get(&acme).await;
    expect(format!("member reads Customer {acme}"), code_of(&r), 0);
    let r = Api::<Project>::all(member_client.clone()).get(&b1).await;
    expect(format!("member reads Project {b1}"), code_of(&r), 403);
    let r = Api::<Customer>::all(member_client).get(&globex).await;
    expect(format!("member reads Customer {globex}"), code_of(&r), 403);
    let stranger_client = as_user(stranger.clone()).await;
    let r = Api::<Pod>::namespaced(stranger_client.clone(), &a1)
        .list(&ListParams::default())
        .await;
    expect(format!("stranger lists pods in {a1}"), code_of(&r), 403);
    let r = Api::<Project>::all(stranger_client).get(&a1).await;
    expect(format!("stranger reads Project {a1}"), code_of(&r), 403);
    let owner_client = as_user(owner_a.clone()).await;
    let r = Api::<Deployment>::namespaced(owner_client.clone(), &a2)
        .create(&pp, &deployment("by-owner"))
        .await;
    expect(
        format!("owner of {acme} creates a Deployment in {a2}"),
        code_of(&r),
        0,
    );
    let r = Api::<Deployment>::namespaced(owner_client, &b1)
        .create(&pp, &deployment("by-owner"))
        .await;
    expect(
        format!("owner of {acme} creates a Deployment in {b1}"),
        code_of(&r),
        403,
    );
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n").into())
    }
}

/// Taking access away: a deleted membership, and an owner removed from the Customer.
async fn deleting_a_membership_or_an_owner_takes_the_access_away(env: Arc<Env>) -> TestResult {
    let customer = unique_name("e2e-revoke");
    let owner = format!("{customer}-owner");
    let kept_owner = format!("{customer}-kept");
    create_customer(&env, &customer, &[&owner, &kept_owner]).await?;
    let projects: Vec<String> = (0..2).map(|_| unique_name("e2e-revoke")).collect();
    for p in &projects {
        create_project(&env, p, json!({"customer": customer})).await?;
    }
    for p in &projects {
        ready_project(&env, p).await?;
    }
    let project = &projects[0];
    let who = unique_name("e2e-revoke-user");
    create_membership(&env, project, "leaving", &who, "Administrator", None).await?;
    membership_where(
        &env,
        project,
        "leaving",
        "Active",
        Duration::from_secs(30),
        phase_is(MembershipPhase::Active),
    )
    .await?;
    let as_who = Api::<Project>::all(env.client_as(&who, &[]).await);
    eventually(
        "the member to create Deployments and read the Project",
        Duration::from_secs(30),
        || async {
            let deploy = env
                .can_i(&who, &[], "create", "deployments.apps", Some(project))
                .await;
            let read = as_who.get(project).await;
            if deploy && read.is_ok() {
                Ok(())
            } else {
                Err(format!(
                    "create deployments: {deploy}; reading the Project: {read:?}"
                ))
            }
        },
    )
    .await?;

    let client = env.client().await;
    Api::<ProjectMembership>::namespaced(client.clone(), project)
        .delete("leaving", &DeleteParams::default())
        .await?;
    let t = Instant::now();
    eventually(
        "the deleted member to lose the namespace and the Project",
        SETTLE,
        || async {
            let deploy = env
                .can_i(&who, &[], "create", "deployments.apps", Some(project))
                .await;
            let read = as_who.get(project).await;
            if !deploy && code_of(&read) == 403 {
                Ok(())
            } else {
                Err(format!(
                    "create deployments: {deploy}; reading the Project answered {}",
                    if read.is_ok() {
                        "OK".to_string()
                    } else {
                        code_of(&read).to_string()
                    }
                ))
            }
        },
    )
    .await
    .map_err(|e| format!("{}{}", e.message().unwrap_or_default(), operator_log(&env)))?;
    eprintln!(
        "[e2e] deleted membership: access gone after {:.2} s",
        t.elapsed().as_secs_f64()
    );
    project_where(
        &env,
        project,
        "no member counted after the deletion",
        SETTLE,
        |p| match p.status.as_ref().and_then(|s| s.members.as_ref()) {
            Some(m) if m.total == 0 => Ok(()),
            m => Err(format!("members are {}", status_text(&m.cloned()))),
        },
    )
    .await?;

    // An owner removed from the customer loses every project of it; the other owner keeps them.
    for p in &projects {
        eventually(
            &format!("both owners to act in {p}"),
            Duration::from_secs(30),
            || async {
                for o in [&owner, &kept_owner] {
                    if !env
                        .can_i(o, &[], "create", "deployments.apps", Some(p))
                        .await
                    {
                        return Err(format!("{o} may not"));
                    }
                }
                Ok(())
            },
        )
        .await?;
    }
    Api::<Customer>::all(client.clone())
        .patch(
            &customer,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(json!({
                "apiVersion": "tenancy.dev/v1alpha1", "kind": "Customer",
                "metadata": {"name": customer},
                "spec": {"owners": [user(&kept_owner)]},
            })),
        )
        .await?;
    for p in &projects {
        eventually(
            &format!("the removed owner to lose {p}, the kept one to keep it"),
            SETTLE,
            || async {
                let removed = env
                    .can_i(&owner, &[], "create", "deployments.apps", Some(p))
                    .await;
                let kept = env
                    .can_i(&kept_owner, &[], "create", "deployments.apps", Some(p))
                    .await;
                if !removed && kept {
                    Ok(())
                } else {
                    Err(format!(
                        "removed owner allowed: {removed}; kept owner allowed: {kept}"
                    ))
                }
            },
        )
        .await?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 2. Exact expiry
// ---------------------------------------------------------------------------------------------

async fn an_expiring_membership_denies_from_its_instant_on_and_extending_it_grants_again(
    env: Arc<Env>,
) -> TestResult {
    let customer = unique_name("e2e-expiry");
    create_customer(&env, &customer, &[]).await?;
    let project = unique_name("e2e-expiry");
    create_project(&env, &project, json!({"customer": customer})).await?;
    ready_project(&env, &project).await?;
    let who = unique_name("e2e-expiry-user");
    let client = env.client().await;
    let bindings = Api::<RoleBinding>::namespaced(client.clone(), &project);
    let binding = "tenancy-member-temporary";
    let granted = || env.can_i(&who, &[], "list", "pods", Some(&project));

    // Whole seconds, as people write them; the operator's clock may be moved by other tests.
    // The membership expires 30 s after its creation: time enough to be granted first, even on
    // a loaded machine. What is asserted is the order (granted, then denied from the instant on,
    // never before it) with generous bounds; how late the denial came is measured and printed.
    let offset = operator_clock_offset(&env);
    let expires =
        Timestamp::from_second(Timestamp::now().as_second() + 30).map_err(|e| e.to_string())?;
    let expires_here = expires - offset;
    let created = Instant::now();
    create_membership(&env, &project, "temporary", &who, "Member", Some(expires)).await?;
    while !granted().await {
        if Timestamp::now() >= expires_here {
            return Err(format!(
                "the membership never granted access in the 30 s before it expired at {expires}{}",
                operator_log(&env)
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "[e2e] membership granted {:.3} s after its creation",
        created.elapsed().as_secs_f64()
    );

    // Poll every 100 ms; the first answer "denied" is the flip. Its request was sent at flip.0,
    // so the denial happened no earlier than that: a denial sent before the instant fails.
    let flip = loop {
        let asked = Timestamp::now();
        let yes = granted().await;
        let answered = Timestamp::now();
        if !yes {
            break (asked, answered);
        }
        if answered > expires_here + SignedDuration::try_from(SETTLE).map_err(|e| e.to_string())? {
            return Err(format!(
                "access still granted at {answered}, {SETTLE:?} after the membership expired at {expires_here}{}",
                operator_log(&env)
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let late = flip.1.duration_since(expires_here);
    eprintln!(
        "[e2e] membership expiring at {expires_here}: first denied by the request sent at {} and answered {:+.3} s after the instant",
        flip.0,
        late.as_secs_f64()
    );
    if flip.1 < expires_here {
        return Err(format!(
            "access was denied at {} before the expiration {expires_here}",
            flip.1
        )
        .into());
    }
    membership_where(
        &env,
        &project,
        "temporary",
        "phase Expired",
        SETTLE,
        phase_is(MembershipPhase::Expired),
    )
    .await?;
    if bindings.get_opt(binding).await?.is_some() {
        return Err(format!("RoleBinding {binding} is still there after the expiry").into());
    }
    project_where(
        &env,
        &project,
        "no active member counted",
        SETTLE,
        |p| match p.status.as_ref().and_then(|s| s.members.as_ref()) {
            Some(m) if m.total == 0 => Ok(()),
            m => Err(format!("members are {}", status_text(&m.cloned()))),
        },
    )
    .await?;
    let r = Api::<Pod>::namespaced(env.client_as(&who, &[]).await, &project)
        .list(&ListParams::default())
        .await;
    if code_of(&r) != 403 {
        return Err(format!("listing pods as the expired member: expected 403, got {r:?}").into());
    }

    // Extending the expiration grants again (an hour: nothing expires in a later quiet window).
    let extended = Timestamp::from_second(Timestamp::now().as_second() + 3600)
        .map_err(|e| e.to_string())?
        + offset;
    let t = Instant::now();
    Api::<ProjectMembership>::namespaced(client.clone(), &project)
        .patch(
            "temporary",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"expirationTime": extended.to_string()}})),
        )
        .await?;
    eventually(
        "access granted again after extending the expiration",
        SETTLE,
        || async {
            if granted().await {
                Ok(())
            } else {
                Err("still denied".to_string())
            }
        },
    )
    .await?;
    eprintln!(
        "[e2e] extended membership grants again after {:.3} s",
        t.elapsed().as_secs_f64()
    );
    membership_where(
        &env,
        &project,
        "temporary",
        "phase Active again",
        SETTLE,
        phase_is(MembershipPhase::Active),
    )
    .await?;
    if bindings.get_opt(binding).await?.is_none() {
        return Err(format!("RoleBinding {binding} did not come back after extending").into());
    }
    project_where(
        &env,
        &project,
        "the member counted again",
        SETTLE,
        |p| match p.status.as_ref().and_then(|s| s.members.as_ref()) {
            Some(m) if m.total == 1 && m.members == 1 => Ok(()),
            m => Err(format!("members are {}", status_text(&m.cloned()))),
        },
    )
    .await?;
    Api::<Pod>::namespaced(env.client_as(&who, &[]).await, &project)
        .list(&ListParams::default())
        .await
        .map_err(|e| format!("listing pods as the extended member: {e}"))?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 3. Quota
// ---------------------------------------------------------------------------------------------

fn same(map: &BTreeMap<String, String>, key: &str, want: &str) -> bool {
    map.get(key).is_some_and(|v| same_quantity(v, want))
}

async fn the_apiserver_enforces_the_quota_and_its_usage_shows_in_the_project(
    env: Arc<Env>,
) -> TestResult {
    let customer = unique_name("e2e-quota");
    create_customer(&env, &customer, &[]).await?;
    let project = unique_name("e2e-quota");
    create_project(
        &env,
        &project,
        json!({
            "customer": customer,
            "quota": {"hard": {"pods": "4", "requests.cpu": "1", "requests.memory": "1Gi"}},
            "limitRange": {
                "defaultRequest": {"cpu": "100m", "memory": "64Mi"},
                "default": {"cpu": "200m", "memory": "128Mi"},
            },
        }),
    )
    .await?;
    let p = ready_project(&env, &project).await?;
    let hard = p
        .status
        .as_ref()
        .and_then(|s| s.quota.as_ref())
        .map(|q| q.hard.clone())
        .unwrap_or_default();
    if !(same(&hard, "pods", "4")
        && same(&hard, "requests.cpu", "1")
        && same(&hard, "requests.memory", "1Gi"))
    {
        return Err(format!("status.quota.hard of a Ready project is {hard:?}").into());
    }

    let pods = Api::<Pod>::namespaced(env.client().await, &project);
    let pp = PostParams::default();
    pods.create(&pp, &pod("small", Some(("250m", "100Mi"))))
        .await
        .map_err(|e| format!("a pod within the quota was refused: {e}"))?;
    // A pod without requests gets the LimitRange's defaults (the apiserver's LimitRanger may
    // see the LimitRange a moment after it was made; until then the quota asks for requests).
    let defaulted = eventually(
        "a pod without requests to be admitted with the LimitRange's defaults",
        SETTLE,
        || async {
            match pods.create(&pp, &pod("defaulted", None)).await {
                Ok(p) => Ok(p),
                Err(kube::Error::Api(s)) if s.message.contains("must specify") => Err(s.message),
                Err(e) => Err(format!("refused for good: {e}")),
            }
        },
    )
    .await?;
    let requests = defaulted.spec.as_ref().and_then(|s| {
        s.containers[0]
            .resources
            .as_ref()
            .and_then(|r| r.requests.clone())
    });
    if !requests.as_ref().is_some_and(|r| {
        r.get("cpu").is_some_and(|q| same_quantity(&q.0, "100m"))
            && r.get("memory").is_some_and(|q| same_quantity(&q.0, "64Mi"))
    }) {
        return Err(format!(
            "the defaulted pod requests {requests:?}, not the LimitRange's 100m/64Mi"
        )
        .into());
    }
    // 350m used of 1: a pod asking 900m more is refused by the apiserver itself.
    match pods.create(&pp, &pod("big", Some(("900m", "100Mi")))).await {
        Err(kube::Error::Api(s))
            if s.code == 403
                && s.message.contains("exceeded quota")
                && s.message.contains("tenancy-quota")
                && s.message.contains("requests.cpu") => {}
        other => {
            return Err(format!(
                "a pod above the quota's requests.cpu was not refused with \"exceeded quota: tenancy-quota\": {other:?}"
            )
            .into());
        }
    }

    let expect_usage = |pods_n: &'static str, cpu: &'static str, memory: &'static str| {
        move |p: &Project| {
            let s = p.status.as_ref().ok_or("no status")?;
            let used = s.quota.as_ref().map(|q| q.used.clone()).unwrap_or_default();
            if same(&used, "pods", pods_n)
                && same(&used, "requests.cpu", cpu)
                && same(&used, "requests.memory", memory)
                && same(&s.usage, "pods", pods_n)
                && same(&s.usage, "cpu", cpu)
                && same(&s.usage, "memory", memory)
            {
                Ok(())
            } else {
                Err(format!("quota.used is {used:?}, usage is {:?}", s.usage))
            }
        }
    };
    let t = Instant::now();
    project_where(
        &env,
        &project,
        "2 pods, 350m cpu and 164Mi memory in quota.used and usage",
        Duration::from_secs(30),
        expect_usage("2", "350m", "164Mi"),
    )
    .await?;
    eprintln!(
        "[e2e] quota usage in the Project status after {:.1} s",
        t.elapsed().as_secs_f64()
    );
    // Usage follows a pod going away.
    pods.delete("small", &DeleteParams::default()).await?;
    project_where(
        &env,
        &project,
        "1 pod, 100m cpu and 64Mi memory after deleting one",
        Duration::from_secs(30),
        expect_usage("1", "100m", "64Mi"),
    )
    .await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 4. Counts
// ---------------------------------------------------------------------------------------------

async fn resource_counts_follow_what_is_created_and_deleted(env: Arc<Env>) -> TestResult {
    let customer = unique_name("e2e-counts");
    create_customer(&env, &customer, &[]).await?;
    let project = unique_name("e2e-counts");
    create_project(&env, &project, json!({"customer": customer})).await?;
    ready_project(&env, &project).await?;
    let client = env.client().await;
    let pp = PostParams::default();
    let deployments = Api::<Deployment>::namespaced(client.clone(), &project);
    let services = Api::<Service>::namespaced(client.clone(), &project);
    let claims = Api::<PersistentVolumeClaim>::namespaced(client.clone(), &project);
    let pods = Api::<Pod>::namespaced(client.clone(), &project);
    let widgets = widgets(client.clone(), &project);

    let counts_are = |want: &[(&str, i64)]| {
        let want: BTreeMap<String, i64> = want.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        let what = format!("resourceCounts {want:?}");
        let env = env.clone();
        let project = project.clone();
        async move {
            let total: i64 = want.values().sum();
            project_where(&env, &project, &what, Duration::from_secs(20), |p| {
                let s = p.status.as_ref().ok_or("no status")?;
                if s.resource_counts == want && s.resources_count == Some(total) {
                    Ok(())
                } else {
                    Err(format!(
                        "resourceCounts {:?}, resourcesCount {:?}",
                        s.resource_counts, s.resources_count
                    ))
                }
            })
            .await
        }
    };
    counts_are(&[]).await?;

    let service = |name: &str| -> Service {
        from_json(json!({"metadata": {"name": name}, "spec": {"ports": [{"port": 80}]}}))
    };
    let claim: PersistentVolumeClaim = from_json(json!({
        "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }));
    deployments.create(&pp, &deployment("web")).await?;
    services.create(&pp, &service("web")).await?;
    claims.create(&pp, &claim).await?;
    widgets.create(&pp, &widget("w1")).await?;
    counts_are(&[
        ("deployments.apps", 1),
        ("services", 1),
        ("persistentvolumeclaims", 1),
        (WIDGETS, 1),
    ])
    .await?;
    project_where(&env, &project, "storage 1Gi in usage", SETTLE, |p| {
        let usage = p
            .status
            .as_ref()
            .map(|s| s.usage.clone())
            .unwrap_or_default();
        if same(&usage, "storage", "1Gi") {
            Ok(())
        } else {
            Err(format!("usage is {usage:?}"))
        }
    })
    .await?;

    services.create(&pp, &service("api")).await?;
    widgets.create(&pp, &widget("w2")).await?;
    pods.create(&pp, &pod("job", None)).await?;
    counts_are(&[
        ("deployments.apps", 1),
        ("services", 2),
        ("persistentvolumeclaims", 1),
        (WIDGETS, 2),
        ("pods", 1),
    ])
    .await?;

    // A pod that has finished no longer counts.
    pods.patch_status(
        "job",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Succeeded"}})),
    )
    .await?;
    deployments.delete("web", &DeleteParams::default()).await?;
    widgets.delete("w1", &DeleteParams::default()).await?;
    counts_are(&[("services", 2), ("persistentvolumeclaims", 1), (WIDGETS, 1)]).await?;

    services.delete("web", &DeleteParams::default()).await?;
    services.delete("api", &DeleteParams::default()).await?;
    widgets.delete("w2", &DeleteParams::default()).await?;
    claims.delete("data", &DeleteParams::default()).await?;
    // The claim keeps the kubernetes.io/pvc-protection finalizer, which the pvc-protection
    // controller (not run by this control plane: no nodes, no volumes) would release.
    claims
        .patch(
            "data",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await?;
    counts_are(&[]).await?;
    pods.delete("job", &DeleteParams::default()).await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 5. Drift
// ---------------------------------------------------------------------------------------------

/// Runs `sabotage`, then waits (up to [`SETTLE`]) for `restored`; returns how long it took.
async fn put_back<S, SFut, R, RFut>(
    what: &str,
    sabotage: S,
    restored: R,
) -> Result<Duration, Failed>
where
    S: FnOnce() -> SFut,
    SFut: Future<Output = Result<(), kube::Error>>,
    R: FnMut() -> RFut,
    RFut: Future<Output = Result<(), String>>,
{
    sabotage()
        .await
        .map_err(|e| format!("{what}: the change by hand failed: {e}"))?;
    let t = Instant::now();
    eventually(&format!("{what} to be put back"), SETTLE, restored).await?;
    let took = t.elapsed();
    eprintln!("[e2e] {what}: put back in {:.2} s", took.as_secs_f64());
    Ok(took)
}

async fn children_deleted_or_edited_by_hand_are_put_back(env: Arc<Env>) -> TestResult {
    let customer = unique_name("e2e-drift");
    let owner = format!("{customer}-owner");
    create_customer(&env, &customer, &[&owner]).await?;
    let project = unique_name("e2e-drift");
    create_project(
        &env,
        &project,
        json!({
            "customer": customer,
            "quota": {"hard": {"pods": "5"}},
            "limitRange": {"default": {"cpu": "200m"}},
        }),
    )
    .await?;
    ready_project(&env, &project).await?;
    let who = unique_name("e2e-drift-user");
    create_membership(&env, &project, "dev", &who, "Administrator", None).await?;
    membership_where(
        &env,
        &project,
        "dev",
        "Active",
        Duration::from_secs(30),
        phase_is(MembershipPhase::Active),
    )
    .await?;
    let client = env.client().await;
    let quotas = Api::<ResourceQuota>::namespaced(client.clone(), &project);
    let limits = Api::<LimitRange>::namespaced(client.clone(), &project);
    let bindings = Api::<RoleBinding>::namespaced(client.clone(), &project);
    let namespaces = Api::<Namespace>::all(client.clone());
    let dp = DeleteParams::default();

    let result = async {
        // ResourceQuota deleted.
        let old = quotas.get("tenancy-quota").await?;
        put_back(
            "ResourceQuota tenancy-quota deleted",
            || async { quotas.delete("tenancy-quota", &dp).await.map(|_| ()) },
            || async {
                match quotas.get_opt("tenancy-quota").await {
                    Ok(Some(q)) if q.uid() != old.uid() => Ok(()),
                    other => Err(format!("{:?}", other.map(|q| q.map(|q| q.uid())))),
                }
            },
        )
        .await?;
        // ResourceQuota edited.
        put_back(
            "ResourceQuota tenancy-quota edited (pods: 100)",
            || async {
                quotas
                    .patch(
                        "tenancy-quota",
                        &PatchParams::default(),
                        &Patch::Merge(json!({"spec": {"hard": {"pods": "100"}}})),
                    )
                    .await
                    .map(|_| ())
            },
            || async {
                let q = quotas
                    .get("tenancy-quota")
                    .await
                    .map_err(|e| e.to_string())?;
                let hard = q.spec.and_then(|s| s.hard).unwrap_or_default();
                match hard.get("pods") {
                    Some(v) if v.0 == "5" => Ok(()),
                    other => Err(format!("pods is {other:?}")),
                }
            },
        )
        .await?;
        // LimitRange deleted.
        let old = limits.get("tenancy-limits").await?;
        put_back(
            "LimitRange tenancy-limits deleted",
            || async { limits.delete("tenancy-limits", &dp).await.map(|_| ()) },
            || async {
                match limits.get_opt("tenancy-limits").await {
                    Ok(Some(l)) if l.uid() != old.uid() => Ok(()),
                    other => Err(format!("{:?}", other.map(|l| l.map(|l| l.uid())))),
                }
            },
        )
        .await?;
        // Membership RoleBinding deleted.
        let member_binding = "tenancy-member-dev";
        let old = bindings.get(member_binding).await?;
        put_back(
            "membership RoleBinding tenancy-member-dev deleted",
            || async { bindings.delete(member_binding, &dp).await.map(|_| ()) },
            || async {
                match bindings.get_opt(member_binding).await {
                    Ok(Some(b))
                        if b.uid() != old.uid()
                            && b.role_ref.name == "tenancy:project-administrator"
                            && b.subjects
                                .as_ref()
                                .is_some_and(|s| s.len() == 1 && s[0].name == who) =>
                    {
                        Ok(())
                    }
                    other => Err(format!("{other:?}")),
                }
            },
        )
        .await?;
        // Customer owner RoleBinding deleted.
        let owner_bindings = bindings
            .list(&ListParams::default().labels("tenancy.dev/part=owner"))
            .await?;
        let [owner_binding] = owner_bindings.items.as_slice() else {
            return Err(Failed::from(format!(
                "expected one owner RoleBinding in {project}, found {:?}",
                owner_bindings
                    .items
                    .iter()
                    .map(|b| b.name_any())
                    .collect::<Vec<_>>()
            )));
        };
        let owner_name = owner_binding.name_any();
        let old_uid = owner_binding.uid();
        put_back(
            "customer owner RoleBinding deleted",
            || async { bindings.delete(&owner_name, &dp).await.map(|_| ()) },
            || async {
                match bindings.get_opt(&owner_name).await {
                    Ok(Some(b)) if b.uid() != old_uid => Ok(()),
                    other => Err(format!("{other:?}")),
                }
            },
        )
        .await?;
        // Namespace label removed.
        put_back(
            "namespace label tenancy.dev/customer removed",
            || async {
                namespaces
                    .patch(
                        &project,
                        &PatchParams::default(),
                        &Patch::Merge(
                            json!({"metadata": {"labels": {"tenancy.dev/customer": null}}}),
                        ),
                    )
                    .await
                    .map(|_| ())
            },
            || async {
                let ns = namespaces.get(&project).await.map_err(|e| e.to_string())?;
                match ns.labels().get("tenancy.dev/customer") {
                    Some(c) if *c == customer => Ok(()),
                    other => Err(format!("label is {other:?}")),
                }
            },
        )
        .await?;
        // Namespace label changed.
        put_back(
            "namespace label tenancy.dev/state changed",
            || async {
                namespaces
                    .patch(
                        &project,
                        &PatchParams::default(),
                        &Patch::Merge(
                            json!({"metadata": {"labels": {"tenancy.dev/state": "terminated"}}}),
                        ),
                    )
                    .await
                    .map(|_| ())
            },
            || async {
                let ns = namespaces.get(&project).await.map_err(|e| e.to_string())?;
                match ns.labels().get("tenancy.dev/state").map(String::as_str) {
                    Some("active") => Ok(()),
                    other => Err(format!("label is {other:?}")),
                }
            },
        )
        .await?;
        Ok::<(), Failed>(())
    }
    .await;
    result.map_err(|e| format!("{}{}", e.message().unwrap_or_default(), operator_log(&env)).into())
}

// ---------------------------------------------------------------------------------------------
// 6. Conflicts
// ---------------------------------------------------------------------------------------------

/// RoleBindings in `namespace` the operator made (by label or by name).
async fn operator_bindings_in(client: &Client, namespace: &str) -> Result<Vec<String>, Failed> {
    let all = Api::<RoleBinding>::namespaced(client.clone(), namespace)
        .list(&ListParams::default())
        .await?;
    Ok(all
        .items
        .iter()
        .filter(|b| {
            b.labels()
                .get("app.kubernetes.io/managed-by")
                .map(String::as_str)
                == Some("tenancy-operator")
                || b.name_any().starts_with("tenancy-")
        })
        .map(|b| b.name_any())
        .collect())
}

async fn projects_named_like_foreign_namespaces_conflict_and_bind_nothing(
    env: Arc<Env>,
) -> TestResult {
    let client = env.client().await;
    let customer = unique_name("e2e-conflict");
    let owner = format!("{customer}-owner");
    create_customer(&env, &customer, &[&owner]).await?;
    // The cluster's own namespaces are reserved: no project may even be created under their
    // names.
    for name in ["default", "kube-system"] {
        match create_project(&env, name, json!({"customer": customer})).await {
            Err(e) if e.message().is_some_and(|m| m.contains("is reserved")) => {}
            other => {
                return Err(format!(
                    "creating project {name} should be refused as reserved, got {:?}",
                    other.map(|_| ())
                )
                .into());
            }
        }
    }
    // Namespaces someone made by hand (one labelled as if it were a project's, but not made by
    // the operator).
    let foreign = unique_name("e2e-conflict-foreign");
    let foreign_labelled = unique_name("e2e-conflict-labelled");
    let namespaces = Api::<Namespace>::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &from_json(json!({"metadata": {"name": foreign}})),
        )
        .await?;
    namespaces
        .create(
            &PostParams::default(),
            &from_json(json!({"metadata": {"name": foreign_labelled,
                "labels": {"tenancy.dev/project": foreign_labelled,
                    "app.kubernetes.io/managed-by": "tenancy-operator"}}})),
        )
        .await?;
    let names = [foreign_labelled.clone(), foreign.clone()];
    let labels_before: Vec<BTreeMap<String, String>> = {
        let mut out = Vec::new();
        for n in &names {
            out.push(namespaces.get(n).await?.labels().clone());
        }
        out
    };
    for name in &names {
        create_project(&env, name, json!({"customer": customer})).await?;
    }
    let mut problems = Vec::new();
    for name in &names {
        let p = project_where(
            &env,
            name,
            "phase Conflict with NamespaceConflict=True",
            Duration::from_secs(30),
            |p| {
                let s = p.status.as_ref().ok_or("no status")?;
                if s.phase == Some(ProjectPhase::Conflict)
                    && is_true(&s.conditions, "NamespaceConflict")
                {
                    Ok(())
                } else {
                    Err(format!("status is {}", status_text(&p.status)))
                }
            },
        )
        .await?;
        let ready = p
            .status
            .as_ref()
            .and_then(|s| condition(&s.conditions, "Ready"))
            .map(|c| c.status.clone());
        if ready.as_deref() != Some("False") {
            problems.push(format!("project {name} in Conflict says Ready={ready:?}"));
        }
    }

    // A membership in the namespace of a project in Conflict: refused.
    let who = unique_name("e2e-conflict-user");
    let memberships = Api::<ProjectMembership>::namespaced(client.clone(), &foreign);
    let membership_name = unique_name("e2e-conflict");
    let membership: ProjectMembership = from_json(json!({
        "apiVersion": "tenancy.dev/v1alpha1", "kind": "ProjectMembership",
        "metadata": {"name": membership_name, "namespace": foreign},
        "spec": {"subject": user(&who), "role": "Manager"},
    }));
    let accepted = match memberships
        .create(&PostParams::default(), &membership)
        .await
    {
        Ok(_) => true,
        Err(kube::Error::Api(s)) if s.code == 409 && s.message.contains("phase Conflict") => {
            eprintln!("[e2e] membership in {foreign} refused: {}", s.message);
            false
        }
        Err(e) => return Err(format!("creating a membership in {foreign}: {e}").into()),
    };
    if accepted {
        problems.push(format!(
            "a membership in {foreign} (a project in Conflict) was admitted"
        ));
    }
    // Before looking for what must not be there: a change made after everything above has been
    // reconciled (observedGeneration caught up), so the operator had every chance to bind.
    for name in &names {
        let changed = Api::<Project>::all(client.clone())
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"description": "reconciled marker"}})),
            )
            .await?;
        let generation = changed.metadata.generation;
        project_where(&env, name, "the marker change reconciled", SETTLE, |p| {
            let seen = p.status.as_ref().and_then(|s| s.observed_generation);
            if seen == generation {
                Ok(())
            } else {
                Err(format!(
                    "observedGeneration {seen:?}, generation {generation:?}"
                ))
            }
        })
        .await?;
    }
    for (name, before) in names.iter().zip(&labels_before) {
        let made = operator_bindings_in(&client, name).await?;
        if !made.is_empty() {
            problems.push(format!("RoleBindings made in namespace {name}: {made:?}"));
        }
        let after = namespaces.get(name).await?.labels().clone();
        if &after != before {
            problems.push(format!(
                "namespace {name}'s labels changed from {before:?} to {after:?}"
            ));
        }
        for (subject, verb, resource) in [
            (&owner, "create", "deployments.apps"),
            (&owner, "get", "pods"),
            (&who, "get", "pods"),
        ] {
            if env.can_i(subject, &[], verb, resource, Some(name)).await {
                problems.push(format!("{subject} may {verb} {resource} in {name}"));
            }
        }
    }
    if accepted {
        memberships
            .delete(&membership_name, &DeleteParams::default())
            .await?;
    }

    // Deleting a project in Conflict releases it at once and leaves the namespace alone.
    let projects = Api::<Project>::all(client.clone());
    for name in &names {
        if let Err(e) = projects.delete(name, &DeleteParams::default()).await {
            problems.push(format!("deleting project {name} (in Conflict): {e}"));
        }
    }
    for name in &names {
        let gone = eventually(&format!("project {name} to be gone"), SETTLE, || async {
            match projects.get_opt(name).await {
                Ok(None) => Ok(()),
                Ok(Some(p)) => Err(format!(
                    "still there: finalizers {:?}, deletion {:?}",
                    p.finalizers(),
                    p.metadata.deletion_timestamp
                )),
                Err(e) => Err(e.to_string()),
            }
        })
        .await;
        if let Err(e) = gone {
            problems.push(e.message().unwrap_or_default().to_string());
        }
        match namespaces.get_opt(name).await? {
            Some(ns) if ns.metadata.deletion_timestamp.is_none() => {}
            other => problems.push(format!(
                "namespace {name} is being deleted or gone after deleting the project: {:?}",
                other.map(|n| n.metadata.deletion_timestamp)
            )),
        }
    }
    let _ = namespaces.delete(&foreign, &DeleteParams::default()).await;
    let _ = namespaces
        .delete(&foreign_labelled, &DeleteParams::default())
        .await;
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!("{}{}", problems.join("\n"), operator_log(&env)).into())
    }
}

// ---------------------------------------------------------------------------------------------
// 7. Scale and the quiet window
// ---------------------------------------------------------------------------------------------

/// Objects of `K` with a managedFields entry written at or after `since` (second precision):
/// who wrote what, to explain writes seen in a quiet window.
async fn written_of<K>(client: &Client, since: Timestamp) -> Vec<String>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    let since = Timestamp::from_second(since.as_second()).unwrap_or(since);
    let Ok(list) = Api::<K>::all(client.clone())
        .list(&ListParams::default())
        .await
    else {
        return Vec::new();
    };
    list.items
        .iter()
        .filter_map(|o| {
            let writers: Vec<String> = o
                .meta()
                .managed_fields
                .iter()
                .flatten()
                .filter(|m| m.time.as_ref().is_some_and(|t| t.0 >= since))
                .map(|m| {
                    format!(
                        "{} {}{} at {}",
                        m.manager.as_deref().unwrap_or("?"),
                        m.operation.as_deref().unwrap_or("?"),
                        m.subresource
                            .as_deref()
                            .map(|s| format!(" {s}"))
                            .unwrap_or_default(),
                        m.time.as_ref().map(|t| t.0.to_string()).unwrap_or_default()
                    )
                })
                .collect();
            (!writers.is_empty()).then(|| {
                format!(
                    "{} {}{}: {}",
                    K::kind(&()),
                    o.namespace().map(|n| format!("{n}/")).unwrap_or_default(),
                    o.name_any(),
                    writers.join("; ")
                )
            })
        })
        .collect()
}

async fn written_since(client: &Client, since: Timestamp) -> Vec<String> {
    let mut out = written_of::<Namespace>(client, since).await;
    out.extend(written_of::<ResourceQuota>(client, since).await);
    out.extend(written_of::<LimitRange>(client, since).await);
    out.extend(written_of::<RoleBinding>(client, since).await);
    out.extend(written_of::<ClusterRole>(client, since).await);
    out.extend(written_of::<ClusterRoleBinding>(client, since).await);
    out.extend(written_of::<Project>(client, since).await);
    out.extend(written_of::<Customer>(client, since).await);
    out.extend(written_of::<ProjectMembership>(client, since).await);
    out
}

/// The operator's log lines stamped at or after `since`.
fn operator_log_since(env: &Env, since: Timestamp) -> String {
    let Some(op) = env.operator() else {
        return String::new();
    };
    let text = std::fs::read_to_string(op.log_path()).unwrap_or_default();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| {
            l.split_whitespace()
                .next()
                .and_then(|t| t.parse::<Timestamp>().ok())
                .is_some_and(|t| t >= since)
        })
        .collect();
    lines.join("\n")
}

/// Samples the operator's `tenancy_reconcile_queue_depth` every 100 ms until told to stop;
/// answers the deepest each controller's queue was.
fn sample_queue_depth(
    env: Arc<Env>,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<BTreeMap<String, f64>>,
) {
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let mut deepest = BTreeMap::<String, f64>::new();
        while stopped.try_recv().is_err() {
            if let Ok(text) = operator_metrics(&env).await {
                for s in samples(&text, "tenancy_reconcile_queue_depth") {
                    let controller = s.labels.get("controller").cloned().unwrap_or_default();
                    let max = deepest.entry(controller).or_default();
                    *max = max.max(s.value);
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        deepest
    });
    (stop, task)
}

/// How many projects the scale test creates: 200, or `TENANCY_E2E_SCALE_PROJECTS` to measure
/// more (the README's figures for 1000 came from it).
fn scale_projects() -> usize {
    std::env::var("TENANCY_E2E_SCALE_PROJECTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(200)
}
const SCALE_CUSTOMERS: usize = 4;
const SCALE_IN_FLIGHT: usize = 20;
const QUIET_WINDOW: Duration = Duration::from_secs(15);

async fn two_hundred_projects_become_ready_and_then_cost_no_writes(env: Arc<Env>) -> TestResult {
    let scale = scale_projects();
    let client = env.client().await;
    let batch = unique_name("e2e-scale");
    let selector = format!("e2e.tenancy.dev/batch={batch}");
    let before_api = samples(&apiserver_metrics(&env).await?, "apiserver_request_total");
    let before_op = OperatorCounters::of(&operator_metrics(&env).await?);
    let started = Instant::now();
    let (stop_sampling, deepest) = sample_queue_depth(env.clone());

    let customers: Vec<String> = (0..SCALE_CUSTOMERS)
        .map(|i| format!("{batch}-c{i}"))
        .collect();
    for c in &customers {
        create_customer(&env, c, &[&format!("{c}-owner")]).await?;
    }
    let namespaces = Api::<Namespace>::all(client.clone());
    let applied = futures::stream::iter(0..scale)
        .map(|i| {
            let (env, namespaces, customers, batch) =
                (env.clone(), namespaces.clone(), customers.clone(), batch.clone());
            async move {
                let name = format!("{batch}-p{i}");
                apply(
                    &Api::<Project>::all(env.client().await),
                    &name,
                    json!({
                        "apiVersion": "tenancy.dev/v1alpha1", "kind": "Project",
                        "metadata": {"name": name, "labels": {"e2e.tenancy.dev/batch": batch}},
                        "spec": {
                            "customer": customers[i % customers.len()],
                            "quota": {"hard": {"pods": "10"}},
                        },
                    }),
                )
                .await?;
                eventually(
                    &format!("namespace {name}"),
                    Duration::from_secs(120),
                    || async {
                        match namespaces.get_opt(&name).await {
                            Ok(Some(_)) => Ok(()),
                            other => Err(format!("{other:?}")),
                        }
                    },
                )
                .await?;
                let api = Api::<ProjectMembership>::namespaced(env.client().await, &name);
                for (m, role) in [("lead", "Manager"), ("dev", "Administrator"), ("viewer", "Member")] {
                    apply(
                        &api,
                        m,
                        json!({
                            "apiVersion": "tenancy.dev/v1alpha1", "kind": "ProjectMembership",
                            "metadata": {"name": m, "namespace": name, "labels": {"e2e.tenancy.dev/batch": batch}},
                            "spec": {"subject": user(&format!("{name}-{m}")), "role": role},
                        }),
                    )
                    .await?;
                }
                Ok::<(), Failed>(())
            }
        })
        .buffer_unordered(SCALE_IN_FLIGHT)
        .collect::<Vec<_>>()
        .await;
    if let Some(Err(e)) = applied.into_iter().find(|r| r.is_err()) {
        return Err(e);
    }
    let applied_in = started.elapsed();

    let projects = Api::<Project>::all(client.clone());
    let memberships = Api::<ProjectMembership>::all(client.clone());
    let lp = ListParams::default().labels(&selector);
    eventually(
        &format!("all {scale} projects Ready with 3 active members"),
        Duration::from_secs(240),
        || async {
            let list = projects.list(&lp).await.map_err(|e| e.to_string())?;
            let not_ready: Vec<String> = list
                .items
                .iter()
                .filter(|p| {
                    ready(p).is_err()
                        || p.status.as_ref().and_then(|s| s.members.as_ref()).map(|m| m.total) != Some(3)
                })
                .map(|p| p.name_any())
                .collect();
            let active = memberships
                .list(&lp)
                .await
                .map_err(|e| e.to_string())?
                .items
                .iter()
                .filter(|m| phase_is(MembershipPhase::Active)(m).is_ok())
                .count();
            if list.items.len() == scale && not_ready.is_empty() && active == 3 * scale {
                Ok(())
            } else {
                Err(format!(
                    "{} projects, {} not Ready with 3 members (e.g. {:?}), {active} memberships Active",
                    list.items.len(),
                    not_ready.len(),
                    not_ready.iter().take(5).collect::<Vec<_>>()
                ))
            }
        },
    )
    .await
    .map_err(|e| format!("{}{}", e.message().unwrap_or_default(), operator_log(&env)))?;
    let ready_in = started.elapsed();
    let _ = stop_sampling.send(());
    let deepest = deepest
        .await
        .map_err(|e| format!("sampling the queue depth: {e}"))?;
    eprintln!("[e2e] deepest work queues while creating them (sampled every 100 ms): {deepest:?}");
    let text = operator_metrics(&env).await?;
    let per_controller = |metric: &str| -> BTreeMap<String, f64> {
        samples(&text, metric)
            .into_iter()
            .map(|s| {
                (
                    s.labels.get("controller").cloned().unwrap_or_default(),
                    s.value,
                )
            })
            .collect()
    };
    let (sums, counts) = (
        per_controller("tenancy_reconcile_queue_wait_seconds_sum"),
        per_controller("tenancy_reconcile_queue_wait_seconds_count"),
    );
    let waits: BTreeMap<&String, String> = counts
        .iter()
        .map(|(c, n)| {
            let mean = sums.get(c).copied().unwrap_or_default() / n.max(1.0);
            (c, format!("{n} waits, mean {:.0} ms", mean * 1000.0))
        })
        .collect();
    eprintln!("[e2e] queue waits since the operator started (change → reconcile start): {waits:?}");
    if deepest.get("project").copied().unwrap_or_default() < 1.0 {
        return Err(format!(
            "tenancy_reconcile_queue_depth{{controller=\"project\"}} never rose above 0 while {scale} projects were created: {deepest:?}"
        )
        .into());
    }
    eprintln!(
        "[e2e] {scale} projects Ready in {:.1} s ({scale} projects and {} memberships applied in {:.1} s, {SCALE_IN_FLIGHT} in flight)",
        ready_in.as_secs_f64(),
        3 * scale,
        applied_in.as_secs_f64()
    );

    // Settle: trailing status updates (e.g. the customers' aggregates) end; the operator's
    // write counter stands still for 3 s.
    let settle_start = Instant::now();
    let mut last = OperatorCounters::of(&operator_metrics(&env).await?).total_writes();
    let mut still_since = Instant::now();
    while still_since.elapsed() < Duration::from_secs(3) {
        if settle_start.elapsed() > Duration::from_secs(60) {
            return Err(format!(
                "the operator kept writing for 60 s after every project was Ready{}",
                operator_log(&env)
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = OperatorCounters::of(&operator_metrics(&env).await?).total_writes();
        if now != last {
            last = now;
            still_since = Instant::now();
        }
    }
    let after_api = samples(&apiserver_metrics(&env).await?, "apiserver_request_total");
    let after_op = OperatorCounters::of(&operator_metrics(&env).await?);

    // What creating them cost.
    let n = scale as f64;
    let op_writes = after_op.total_writes() - before_op.total_writes();
    let op_by_kind = delta(&before_op.writes, &after_op.writes);
    let all_requests = sum_where(&after_api, |_| true) - sum_where(&before_api, |_| true);
    let writes_all = sum_where(&after_api, is_write) - sum_where(&before_api, is_write);
    let api_writes = delta(
        &writes_by_resource(&before_api, true),
        &writes_by_resource(&after_api, true),
    );
    let ours: f64 = api_writes.values().sum();
    let by_test = (SCALE_CUSTOMERS + 4 * scale) as f64;
    eprintln!(
        "[e2e] operator writes while creating them: {op_writes} = {:.1} per project (settled {:.1} s after Ready); by kind: {op_by_kind:?}",
        op_writes / n,
        settle_start.elapsed().as_secs_f64()
    );
    eprintln!(
        "[e2e] apiserver requests while creating them: {all_requests} in all = {:.1} per project (reads and the test's polling included); writes {writes_all} = {:.1} per project; writes to the operator's kinds {ours} = {:.1} per project, of which the test's own applies {by_test}",
        all_requests / n,
        writes_all / n,
        ours / n
    );
    eprintln!(
        "[e2e] apiserver writes to the operator's kinds by verb and resource: {api_writes:?}"
    );
    eprintln!(
        "[e2e] webhook: {} admission reviews ({:.1} per project), operator reconciles: {} ({:.1} per project)",
        after_op.admissions - before_op.admissions,
        (after_op.admissions - before_op.admissions) / n,
        after_op.reconciles - before_op.reconciles,
        (after_op.reconciles - before_op.reconciles) / n
    );

    // The quiet window: nobody writes, the operator least of all.
    let window_start = Timestamp::now();
    let before = samples(&apiserver_metrics(&env).await?, "apiserver_request_total");
    let op0 = OperatorCounters::of(&operator_metrics(&env).await?);
    tokio::time::sleep(QUIET_WINDOW).await;
    let after = samples(&apiserver_metrics(&env).await?, "apiserver_request_total");
    let op1 = OperatorCounters::of(&operator_metrics(&env).await?);
    let t0 = writes_by_resource(&before, true);
    let t1 = writes_by_resource(&after, true);
    // Not the operator's kinds (e.g. leases of leader election, the controller-manager's own).
    let others = delta(
        &writes_by_resource(&before, false),
        &writes_by_resource(&after, false),
    );
    let window = delta(&t0, &t1);
    let op_window = delta(&op0.writes, &op1.writes);
    eprintln!(
        "[e2e] quiet window of {QUIET_WINDOW:?}: apiserver writes to the operator's kinds {:?}, operator writes {:?}, operator reconciles {}; writes to other kinds {others:?}",
        window,
        op_window,
        op1.reconciles - op0.reconciles
    );
    // What holding all of it costs the operator: its resident memory and CPU time so far.
    if let Some(op) = env.operator() {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", op.pid())).unwrap_or_default();
        let rss = status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .unwrap_or("VmRSS: ?");
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", op.pid())).unwrap_or_default();
        // utime and stime, in clock ticks (100 per second on Linux), after the command name.
        let ticks: Vec<f64> = stat
            .rsplit_once(')')
            .map(|(_, rest)| {
                rest.split_whitespace()
                    .skip(11)
                    .take(2)
                    .filter_map(|t| t.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        eprintln!(
            "[e2e] operator process (debug build) after the quiet window, every object of this run in its caches: {rss}, CPU time since it started {:.1} s",
            ticks.iter().sum::<f64>() / 100.0
        );
    }

    // Nothing is left waiting: every object asked for was reconciled (or found gone).
    let waiting: Vec<_> = samples(
        &operator_metrics(&env).await?,
        "tenancy_reconcile_queue_depth",
    )
    .into_iter()
    .filter(|s| s.value != 0.0)
    .collect();
    if !waiting.is_empty() {
        return Err(format!("work queues not empty after the quiet window: {waiting:?}").into());
    }
    if !window.is_empty() || !op_window.is_empty() {
        let written = written_since(&client, window_start).await;
        return Err(format!(
            "writes during the {QUIET_WINDOW:?} quiet window after {scale} projects were Ready: apiserver saw {window:?}; the operator counted {op_window:?}\nobjects changed in the window (managedFields): {written:#?}\noperator log lines of the window:\n{}",
            operator_log_since(&env, window_start)
        )
        .into());
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// One object the operator cannot read stops nothing
// ---------------------------------------------------------------------------------------------

/// The value of `metric{label="value"}` in the operator's metrics (0 if absent).
async fn operator_gauge(env: &Env, metric: &str, label: (&str, &str)) -> Result<f64, Failed> {
    let text = operator_metrics(env).await?;
    Ok(sum_where(&samples(&text, metric), |l| {
        l.get(label.0).map(String::as_str) == Some(label.1)
    }))
}

/// A fault the apiserver injects: a ValidatingAdmissionPolicy that refuses every RoleBinding
/// written in namespaces whose names start with `prefix`, the operator's included. Returns once
/// the policy is in force (a dry-run write in a probe namespace is refused); dropping it is up to
/// the caller ([`lift_refusal`]).
pub(crate) async fn refuse_role_bindings_in(env: &Env, prefix: &str) -> TestResult {
    refuse_writes_in(env, prefix, "rbac.authorization.k8s.io", &["rolebindings"]).await
}

/// Like [`refuse_role_bindings_in`], for any `resources` of API `group` (the probe is still a
/// RoleBinding, so `rolebindings` are refused too).
pub(crate) async fn refuse_writes_in(
    env: &Env,
    prefix: &str,
    group: &str,
    resources: &[&str],
) -> TestResult {
    let client = env.client().await;
    let mut rules = vec![json!({
        "apiGroups": ["rbac.authorization.k8s.io"], "apiVersions": ["v1"],
        "operations": ["CREATE", "UPDATE"], "resources": ["rolebindings"],
    })];
    if group != "rbac.authorization.k8s.io" || resources != ["rolebindings"] {
        rules.push(json!({
            "apiGroups": [group], "apiVersions": ["v1"],
            "operations": ["CREATE", "UPDATE"], "resources": resources,
        }));
    }
    let policy: DynamicObject = from_json(json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": prefix},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {"resourceRules": rules},
            "validations": [{
                "expression": format!("!object.metadata.namespace.startsWith('{prefix}')"),
                "message": "refused on purpose by the e2e suite",
            }],
        },
    }));
    let binding: DynamicObject = from_json(json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": prefix},
        "spec": {"policyName": prefix, "validationActions": ["Deny"]},
    }));
    env.apply_yaml(&serde_yaml::to_string(&policy)?).await?;
    env.apply_yaml(&serde_yaml::to_string(&binding)?).await?;
    let probe = format!("{prefix}-probe");
    Api::<Namespace>::all(client.clone())
        .patch(
            &probe,
            &PatchParams::apply(FIELD_MANAGER),
            &Patch::Apply(
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": probe}}),
            ),
        )
        .await?;
    let rbs = Api::<RoleBinding>::namespaced(client.clone(), &probe);
    let probe_binding: RoleBinding = from_json(json!({
        "metadata": {"name": "probe"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
        "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": probe}],
    }));
    eventually("the refusing policy to be in force", SETTLE, || async {
        match rbs
            .create(
                &PostParams {
                    dry_run: true,
                    ..Default::default()
                },
                &probe_binding,
            )
            .await
        {
            Err(kube::Error::Api(e)) if e.message.contains("refused on purpose") => Ok(()),
            other => Err(format!(
                "a write was not refused yet: {:?}",
                other.map(|_| ())
            )),
        }
    })
    .await?;
    Ok(())
}

/// Removes what [`refuse_role_bindings_in`] made.
pub(crate) async fn lift_refusal(env: &Env, prefix: &str) -> TestResult {
    let client = env.client().await;
    let dp = DeleteParams::default();
    for (kind, plural) in [
        (
            "ValidatingAdmissionPolicyBinding",
            "validatingadmissionpolicybindings",
        ),
        ("ValidatingAdmissionPolicy", "validatingadmissionpolicies"),
    ] {
        let ar = kube::core::ApiResource {
            group: "admissionregistration.k8s.io".into(),
            version: "v1".into(),
            api_version: "admissionregistration.k8s.io/v1".into(),
            kind: kind.into(),
            plural: plural.into(),
        };
        let _ = Api::<DynamicObject>::all_with(client.clone(), &ar)
            .delete(prefix, &dp)
            .await;
    }
    let _ = Api::<Namespace>::all(client)
        .delete(&format!("{prefix}-probe"), &dp)
        .await;
    Ok(())
}

/// A write the apiserver refuses is counted in `tenancy_reconcile_errors_total` (label `reason`
/// = the HTTP code) of the running operator, the rest of the project is still reconciled, and
/// the write is retried until it succeeds once the refusal ends.
async fn a_refused_write_is_counted_as_an_error_and_retried_until_it_succeeds(
    env: Arc<Env>,
) -> TestResult {
    let prefix = unique_name("e2e-refused");
    let customer = unique_name("e2e-refused-c");
    let owner = format!("{customer}-owner");
    create_customer(&env, &customer, &[&owner]).await?;
    let errors = || async {
        let text = operator_metrics(&env).await?;
        Ok::<f64, Failed>(sum_where(
            &samples(&text, "tenancy_reconcile_errors_total"),
            |l| l.get("controller").map(String::as_str) == Some("project"),
        ))
    };
    let before = errors().await?;
    refuse_role_bindings_in(&env, &prefix).await?;
    let project = format!("{prefix}-p");
    let result = async {
        create_project(&env, &project, json!({"customer": customer})).await?;
        let t = Instant::now();
        eventually(
            "the refused write to be counted as an error",
            SETTLE,
            || async {
                let now = errors().await.map_err(|e| format!("{e:?}"))?;
                if now > before {
                    Ok(())
                } else {
                    Err(format!(
                        "tenancy_reconcile_errors_total{{controller=\"project\"}} is still {now}"
                    ))
                }
            },
        )
        .await?;
        eprintln!(
            "[e2e] refused write counted as an error after {:.2} s",
            t.elapsed().as_secs_f64()
        );
        if env.can_i(&owner, &[], "get", "pods", Some(&project)).await {
            return Err(
                format!("the owner may act in {project} though their binding was refused").into(),
            );
        }
        Ok::<(), Failed>(())
    }
    .await;
    lift_refusal(&env, &prefix).await?;
    result?;
    let t = Instant::now();
    eventually(
        "the owner's binding to be made once writes are allowed again",
        SETTLE,
        || async {
            if env.can_i(&owner, &[], "get", "pods", Some(&project)).await {
                Ok(())
            } else {
                Err("the owner may not act yet".to_string())
            }
        },
    )
    .await?;
    eprintln!(
        "[e2e] retried write succeeded {:.2} s after the refusal ended",
        t.elapsed().as_secs_f64()
    );
    ready_project(&env, &project).await?;
    Ok(())
}

/// Access is revoked whatever else fails: while the apiserver refuses the project's quota and
/// limits (and new RoleBindings), an owner removed from the customer, a deleted membership and
/// finally the whole team on a soft delete lose their access all the same; the project is let
/// go once its namespace can be frozen.
async fn a_child_the_apiserver_refuses_stops_no_revocation(env: Arc<Env>) -> TestResult {
    let client = env.client().await;
    let prefix = unique_name("e2e-stuck");
    let customer = format!("{prefix}-c");
    let (kept, removed, member) = (
        format!("{prefix}-kept"),
        format!("{prefix}-removed"),
        format!("{prefix}-member"),
    );
    let project = format!("{prefix}-p");
    create_customer(&env, &customer, &[&kept, &removed]).await?;
    create_project(
        &env,
        &project,
        json!({"customer": customer, "quota": {"hard": {"requests.cpu": "1"}}}),
    )
    .await?;
    ready_project(&env, &project).await?;
    create_membership(&env, &project, "member", &member, "Member", None).await?;
    for who in [&kept, &removed, &member] {
        eventually(&format!("{who} to be granted"), SETTLE, || async {
            if env.can_i(who, &[], "get", "pods", Some(&project)).await {
                Ok(())
            } else {
                Err("not yet".to_string())
            }
        })
        .await?;
    }
    refuse_writes_in(&env, &prefix, "", &["resourcequotas", "limitranges"]).await?;
    let result = async {
        // The quota can no longer be written: said in the status, counted as an error.
        create_project(
            &env,
            &project,
            json!({"customer": customer, "quota": {"hard": {"requests.cpu": "2"}},
                   "limitRange": {"default": {"cpu": "100m"}}}),
        )
        .await?;
        project_where(
            &env,
            &project,
            "SpecValid False naming the refused write",
            SETTLE,
            |p| {
                let c = p
                    .status
                    .as_ref()
                    .and_then(|s| condition(&s.conditions, "SpecValid"))
                    .ok_or("no SpecValid condition")?;
                if c.status == "False" && c.message.contains("failed") {
                    Ok(())
                } else {
                    Err(format!("SpecValid is {} {}", c.status, c.message))
                }
            },
        )
        .await?;
        // An owner removed from the customer, and a deleted membership: access gone anyway.
        create_customer(&env, &customer, &[&kept]).await?;
        Api::<ProjectMembership>::namespaced(client.clone(), &project)
            .delete("member", &DeleteParams::default())
            .await?;
        for who in [&removed, &member] {
            let t = Instant::now();
            eventually(&format!("{who} to lose access"), SETTLE, || async {
                if env.can_i(who, &[], "get", "pods", Some(&project)).await {
                    Err("still allowed".to_string())
                } else {
                    Ok(())
                }
            })
            .await?;
            eprintln!(
                "[e2e] {who} lost access {:.2} s later, the quota still refused",
                t.elapsed().as_secs_f64()
            );
        }
        if !env.can_i(&kept, &[], "get", "pods", Some(&project)).await {
            return Err(format!("{kept}, still an owner, lost access").into());
        }
        // The soft delete cannot freeze the namespace yet, but nobody keeps access meanwhile.
        Api::<Project>::all(client.clone())
            .delete(&project, &DeleteParams::default())
            .await?;
        eventually(
            &format!("{kept} to lose access on the soft delete"),
            SETTLE,
            || async {
                if env.can_i(&kept, &[], "get", "pods", Some(&project)).await {
                    Err("still allowed".to_string())
                } else {
                    Ok(())
                }
            },
        )
        .await?;
        let left = Api::<RoleBinding>::namespaced(client.clone(), &project)
            .list(&ListParams::default())
            .await?;
        if !left.items.is_empty() {
            return Err(format!(
                "RoleBindings left while the soft delete waits: {:?}",
                left.items.iter().map(|b| b.name_any()).collect::<Vec<_>>()
            )
            .into());
        }
        Ok::<(), Failed>(())
    }
    .await;
    lift_refusal(&env, &prefix).await?;
    result?;
    eventually(
        &format!("project {project} to be let go"),
        SETTLE,
        || async {
            match Api::<Project>::all(client.clone()).get_opt(&project).await {
                Ok(None) => Ok(()),
                other => Err(format!(
                    "{:?}",
                    other.map(|p| p.map(|p| p.finalizers().to_vec()))
                )),
            }
        },
    )
    .await?;
    let quota = Api::<ResourceQuota>::namespaced(client.clone(), &project)
        .get("tenancy-quota")
        .await?;
    let pods = quota
        .spec
        .and_then(|s| s.hard)
        .and_then(|h| h.get("pods").map(|q| q.0.clone()));
    if pods.as_deref() != Some("0") {
        return Err(format!("the archived namespace is not frozen: pods {pods:?}").into());
    }
    Ok(())
}

/// CRDs newer than the operator (here: the membership CRD with a role the operator does not
/// know) let an object in that its types cannot read. The webhook refuses it, naming the field;
/// without the webhook it is stored, and then: other memberships are still reconciled, the
/// object is reported (Warning Event, `tenancy_unreadable_objects`), a restarted operator still
/// becomes ready with it in its first list, and only staff may repair or delete it.
async fn an_object_the_operator_cannot_read_stops_no_watch(env: Arc<Env>) -> TestResult {
    let client = env.client().await;
    let operator = env
        .operator()
        .ok_or("this trial needs the suite's operator")?;
    let customer = unique_name("e2e-unreadable");
    let owner = format!("{customer}-owner");
    let project = format!("{customer}-p");
    create_customer(&env, &customer, &[&owner]).await?;
    create_project(&env, &project, json!({"customer": customer})).await?;
    ready_project(&env, &project).await?;
    let memberships = Api::<ProjectMembership>::namespaced(client.clone(), &project);
    let auditor = json!({
        "apiVersion": "tenancy.dev/v1alpha1", "kind": "ProjectMembership",
        "metadata": {"name": "auditor", "namespace": project},
        "spec": {"subject": user(&format!("{project}-auditor")), "role": "Auditor"},
    });
    let as_dynamic: DynamicObject = from_json(auditor.clone());

    // The membership CRD learns a role this operator does not know.
    let crds = Api::<CustomResourceDefinition>::all(client.clone());
    let crd_name = "projectmemberships.tenancy.dev";
    crds.patch(
        crd_name,
        &PatchParams::default(),
        &Patch::Json::<()>(serde_json::from_value(json!([{
            "op": "add",
            "path": "/spec/versions/0/schema/openAPIV3Schema/properties/spec/properties/role/enum/-",
            "value": "Auditor",
        }]))?),
    )
    .await?;
    let result = async {
        // With the webhook: refused, naming the field (once the apiserver serves the new schema).
        let raw = Api::<DynamicObject>::namespaced_with(
            client.clone(),
            &project,
            &ApiResource::erase::<ProjectMembership>(&()),
        );
        eventually(
            "the webhook to refuse role Auditor, naming spec.role",
            Duration::from_secs(20),
            || async {
                match raw.create(&PostParams::default(), &as_dynamic).await {
                    Ok(_) => Err("it was admitted".to_string()),
                    Err(kube::Error::Api(s))
                        if s.code == 422 && s.message.contains("spec.role: unknown variant `Auditor`") =>
                    {
                        Ok(())
                    }
                    Err(e) => Err(e.to_string()),
                }
            },
        )
        .await?;

        // Without the webhook (a chart with webhook.enabled=false) it is stored.
        let name = &env.local().config_name;
        Api::<k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration>::all(
            client.clone(),
        )
        .delete(name, &DeleteParams::default())
        .await?;
        Api::<k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration>::all(
            client.clone(),
        )
        .delete(name, &DeleteParams::default())
        .await?;
        eventually("the apiserver to store role Auditor", Duration::from_secs(20), || async {
            raw.create(&PostParams::default(), &as_dynamic)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
        .await?;

        // The operator goes on: a membership created after it is reconciled and grants access.
        let later = format!("{project}-later");
        create_membership(&env, &project, "later", &later, "Member", None).await?;
        membership_where(&env, &project, "later", "Active", Duration::from_secs(30), phase_is(MembershipPhase::Active)).await?;
        if !env.can_i(&later, &[], "list", "pods", Some(&project)).await {
            return Err(Failed::from("a membership created after the unreadable one grants nothing"));
        }
        // The object is reported: a Warning Event naming the field, and the gauge.
        let events = Api::<k8s_openapi::api::core::v1::Event>::namespaced(client.clone(), &project);
        eventually("a Warning Event Unreadable on the membership", Duration::from_secs(20), || async {
            let list = events
                .list(&ListParams::default().fields("involvedObject.name=auditor,reason=Unreadable"))
                .await
                .map_err(|e| e.to_string())?;
            list.items
                .iter()
                .find(|e| {
                    e.type_.as_deref() == Some("Warning")
                        && e.message.as_deref().is_some_and(|m| m.contains("spec.role: unknown variant `Auditor`"))
                })
                .map(|_| ())
                .ok_or(format!("events: {:?}", list.items.iter().map(|e| &e.message).collect::<Vec<_>>()))
        })
        .await?;
        let unreadable = operator_gauge(&env, "tenancy_unreadable_objects", ("kind", "ProjectMembership")).await?;
        if unreadable != 1.0 {
            return Err(format!("tenancy_unreadable_objects{{kind=\"ProjectMembership\"}} is {unreadable}, not 1").into());
        }

        // The CRDs and webhooks as installed again (the stored object stays as it is); a
        // restarted operator lists it first thing and still becomes ready.
        tenancy_operator::devcluster::install::install(&client, env.local())
            .await
            .map_err(|e| format!("installing again: {e}"))?;
        operator.pause();
        operator.resume(env.cluster())?;
        let after = format!("{project}-after-restart");
        create_membership(&env, &project, "after", &after, "Member", None).await?;
        membership_where(&env, &project, "after", "Active", Duration::from_secs(30), phase_is(MembershipPhase::Active)).await?;
        let unreadable = operator_gauge(&env, "tenancy_unreadable_objects", ("kind", "ProjectMembership")).await?;
        if unreadable != 1.0 {
            return Err(format!("after a restart tenancy_unreadable_objects{{kind=\"ProjectMembership\"}} is {unreadable}, not 1").into());
        }

        // Only staff may repair or delete it: the owner is told so, naming the field.
        let as_owner = Api::<ProjectMembership>::namespaced(env.client_as(&owner, &[]).await, &project);
        match as_owner.delete("auditor", &DeleteParams::default()).await {
            Err(kube::Error::Api(s)) if s.code == 403 && s.message.contains("only staff") && s.message.contains("spec.role") => {}
            other => return Err(format!("the owner deleting the unreadable membership: {other:?}").into()),
        }
        memberships
            .patch("auditor", &PatchParams::default(), &Patch::Merge(json!({"spec": {"role": "Member"}})))
            .await?;
        membership_where(&env, &project, "auditor", "Active once repaired", Duration::from_secs(30), phase_is(MembershipPhase::Active)).await?;
        eventually("tenancy_unreadable_objects back to 0", SETTLE, || async {
            match operator_gauge(&env, "tenancy_unreadable_objects", ("kind", "ProjectMembership")).await {
                Ok(0.0) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })
        .await?;
        Ok::<(), Failed>(())
    }
    .await;

    // Whatever happened: the CRDs and webhooks as installed, and the operator restarted so that
    // it puts its CA into webhook configurations made again.
    let restored = tenancy_operator::devcluster::install::install(&client, env.local()).await;
    operator.pause();
    let running = operator.resume(env.cluster());
    result?;
    restored.map_err(|e| format!("installing again: {e}"))?;
    running?;
    Api::<Project>::all(client.clone())
        .delete(&project, &DeleteParams::default())
        .await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Cost
// ---------------------------------------------------------------------------------------------

/// With the suite's price list (cpu 20, memory 4.5, storage 0.1, pods 0.5 EUR a month), a pod
/// requesting 500m cpu and 1Gi memory and a 10Gi claim cost 10 + 4.50 + 1 + 0.50 = 16.00 EUR a
/// month: in the project's status, and summed over two projects in its customer's; deleting
/// the pod takes its part off. Only where the customer shows billing in its projects
/// (`displayBillingInfoInProjects`): a project of a customer that does not has no status.cost.
async fn what_workloads_request_is_priced_in_the_project_and_its_customer(
    env: Arc<Env>,
) -> TestResult {
    let client = env.client().await;
    let customer = unique_name("e2e-cost");
    apply(
        &Api::<Customer>::all(client.clone()),
        &customer,
        json!({
            "apiVersion": "tenancy.dev/v1alpha1", "kind": "Customer",
            "metadata": {"name": customer},
            "spec": {"owners": [user(&format!("{customer}-owner"))], "displayBillingInfoInProjects": true},
        }),
    )
    .await?;
    let projects = [format!("{customer}-a"), format!("{customer}-b")];
    for p in &projects {
        create_project(&env, p, json!({"customer": customer})).await?;
    }
    for p in &projects {
        ready_project(&env, p).await?;
        let pp = PostParams::default();
        Api::<Pod>::namespaced(client.clone(), p)
            .create(&pp, &pod("app", Some(("500m", "1Gi"))))
            .await?;
        Api::<PersistentVolumeClaim>::namespaced(client.clone(), p)
            .create(
                &pp,
                &from_json(json!({
                    "metadata": {"name": "data"},
                    "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "10Gi"}}},
                })),
            )
            .await?;
    }
    let cost_is = |monthly: &'static str, by: &'static [(&'static str, &'static str)]| {
        move |cost: Option<&tenancy_operator::api::project::CostStatus>| -> Result<(), String> {
            let cost = cost.ok_or("no status.cost")?;
            let want: BTreeMap<String, String> = by
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            if cost.currency == "EUR"
                && cost.monthly == monthly
                && (by.is_empty() || cost.by_resource == want)
            {
                Ok(())
            } else {
                Err(format!(
                    "status.cost is {cost:?}, want {monthly} EUR by {want:?}"
                ))
            }
        }
    };
    let one = cost_is(
        "16.00",
        &[
            ("cpu", "10.00"),
            ("memory", "4.50"),
            ("storage", "1.00"),
            ("pods", "0.50"),
        ],
    );
    for p in &projects {
        project_where(
            &env,
            p,
            "costs 16.00 EUR a month",
            Duration::from_secs(30),
            |p| one(p.status.as_ref().and_then(|s| s.cost.as_ref())),
        )
        .await?;
    }
    let customers = Api::<Customer>::all(client.clone());
    let customer_costs = |monthly: &'static str| {
        let (customers, customer) = (customers.clone(), customer.clone());
        let check = cost_is(monthly, &[]);
        async move {
            eventually(
                &format!("customer {customer} to cost {monthly} EUR a month"),
                Duration::from_secs(30),
                || async {
                    let c = customers.get(&customer).await.map_err(|e| e.to_string())?;
                    check(c.status.as_ref().and_then(|s| s.cost.as_ref()))
                },
            )
            .await
        }
    };
    customer_costs("32.00").await?;

    // The pod goes: cpu, memory and the pod are no longer paid for; the claim still is.
    Api::<Pod>::namespaced(client.clone(), &projects[0])
        .delete("app", &DeleteParams::default().grace_period(0))
        .await?;
    let rest = cost_is(
        "1.00",
        &[
            ("cpu", "0.00"),
            ("memory", "0.00"),
            ("storage", "1.00"),
            ("pods", "0.00"),
        ],
    );
    project_where(
        &env,
        &projects[0],
        "costs 1.00 EUR a month",
        Duration::from_secs(30),
        |p| rest(p.status.as_ref().and_then(|s| s.cost.as_ref())),
    )
    .await?;
    customer_costs("17.00").await?;

    // A customer that does not show billing in its projects: the same pod, no status.cost.
    let hidden = format!("{customer}-hidden");
    create_customer(&env, &hidden, &[&format!("{hidden}-owner")]).await?;
    let hidden_project = format!("{hidden}-p");
    create_project(&env, &hidden_project, json!({"customer": hidden})).await?;
    ready_project(&env, &hidden_project).await?;
    Api::<Pod>::namespaced(client.clone(), &hidden_project)
        .create(&PostParams::default(), &pod("app", Some(("500m", "1Gi"))))
        .await?;
    project_where(
        &env,
        &hidden_project,
        "its status counts the pod (usage cpu 500m) and shows no cost",
        Duration::from_secs(30),
        |p| {
            let s = p.status.as_ref().ok_or("no status yet")?;
            if s.usage.get("cpu").map(String::as_str) != Some("500m") {
                return Err(format!("status.usage is {:?}", s.usage));
            }
            match &s.cost {
                None => Ok(()),
                Some(c) => Err(format!(
                    "status.cost is {c:?}, want none (billing not shown)"
                )),
            }
        },
    )
    .await?;
    Ok(())
}
