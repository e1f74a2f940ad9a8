//! The read API `views.tenancy.dev/v1alpha1` (`myprojects`, `members`) as users meet it: through
//! kube-apiserver's aggregation layer, with `kubectl get myprojects --as …` and raw requests of
//! impersonating clients. Who sees which projects with which roles; the portal's filters, orders
//! and kubectl's tables; consistent pages; watches that follow access as it comes, expires and
//! goes; terminated projects for owners, support and staff only; role holders with their phases;
//! identity headers trusted from the front proxy's certificate only; and kube-apiserver's RBAC in
//! front of it all.
//!
//! Every trial makes its own customers, projects and users (unique names), so it runs alongside
//! the rest of the suite. Users of a trial are its own, so what they list is asserted exactly;
//! staff see every project of the run, so what they list is cut to the trial's customers with the
//! label selector. The operator builds what it serves from its watch caches a moment after a
//! change: each check waits (within the suite's access bound) for the expected answer and fails
//! with the last answer seen. How fast a watch reports a change is measured and printed.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams};
use kube::core::WatchEvent;
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use tenancy_operator::api::{
    Customer, MembershipPhase, Project, ProjectMembership, ProjectPhase, Subject, SubjectKind,
};

use crate::support::{
    ACCESS_TIMEOUT, Checks, Env, Failed, TestResult, Trial, customer, from_json, pp, project,
    refusal, stdout_of, trial, unique_name, wait_access_named, wait_finalizer, wait_project,
    wait_project_gone,
};

pub fn trials(env: &Arc<Env>) -> Vec<Trial> {
    vec![
        trial(
            env,
            "views::each_user_lists_exactly_their_projects_with_their_roles",
            each_user_lists_exactly_their_projects_with_their_roles,
        ),
        trial(
            env,
            "views::filters_orders_and_kubectl_tables",
            filters_orders_and_kubectl_tables,
        ),
        trial(
            env,
            "views::pages_come_from_one_moment_and_foreign_or_made_up_tokens_are_gone",
            pages_come_from_one_moment_and_foreign_or_made_up_tokens_are_gone,
        ),
        trial(
            env,
            "views::a_watch_follows_access_as_it_comes_expires_and_goes",
            a_watch_follows_access_as_it_comes_expires_and_goes,
        ),
        trial(
            env,
            "views::a_watch_sends_initial_events_then_a_bookmark_and_410_when_too_old",
            a_watch_sends_initial_events_then_a_bookmark_and_410_when_too_old,
        ),
        trial(
            env,
            "views::terminated_projects_are_listed_for_owners_support_and_staff_only",
            terminated_projects_are_listed_for_owners_support_and_staff_only,
        ),
        trial(
            env,
            "views::members_lists_the_role_holders_a_user_may_see_with_their_phases",
            members_lists_the_role_holders_a_user_may_see_with_their_phases,
        ),
        trial(
            env,
            "views::identity_headers_are_trusted_only_from_the_front_proxy_certificate",
            identity_headers_are_trusted_only_from_the_front_proxy_certificate,
        ),
        trial(
            env,
            "views::kube_apiserver_rbac_lets_every_authenticated_user_read_and_nobody_write",
            kube_apiserver_rbac_lets_every_authenticated_user_read_and_nobody_write,
        ),
        trial(
            env,
            "views::checklist_evaluations_show_the_questions_asked_given_answers",
            checklist_evaluations_show_the_questions_asked_given_answers,
        ),
    ]
}

/// `kubectl create` of a ChecklistEvaluation as any user: the questions asked given the
/// answers so far (a follow-up appears for either of two answers), the guidance, what does not
/// fit, what would need a review; nothing is stored; an unknown checklist is NotFound.
async fn checklist_evaluations_show_the_questions_asked_given_answers(env: Arc<Env>) -> TestResult {
    let name = unique_name("e2e-eval");
    let checklist = serde_json::json!({
    "apiVersion": "tenancy.dev/v1alpha1", "kind": "Checklist", "metadata": {"name": name},
    "spec": {"questions": [
        {"id": "export", "description": "Export-controlled?", "type": "SingleSelect", "required": true,
         "options": [{"id": "no", "label": "No"}, {"id": "dual-use", "label": "Dual use"}, {"id": "military", "label": "Military"}],
         "userGuidance": "Ask the export office.", "guidanceAnswerValue": ["dual-use", "military"], "guidanceOperator": "In"},
        {"id": "licence", "description": "Licence number", "type": "Text", "required": true,
         "alwaysRequiresReview": true, "dependencyLogicOperator": "Or",
         "dependencies": [{"question": "export", "operator": "Equals", "value": "dual-use"},
                          {"question": "export", "operator": "Equals", "value": "military"}]}
    ]}});
    env.apply_yaml(&serde_json::to_string(&checklist)?).await?;
    let user = format!("{name}-someone");
    let evaluate = |checklist: &str, answers: serde_json::Value| {
        let body = serde_json::json!({"apiVersion": "views.tenancy.dev/v1alpha1", "kind": "ChecklistEvaluation",
            "spec": {"checklist": checklist, "answers": answers}});
        env.kubectl_with_input(
            &["create", "-f", "-", "-o", "json", "--as", &user],
            Some(&body.to_string()),
        )
    };
    let ids = |v: &Value, key: &str| -> Vec<String> {
        v["status"][key]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|q| {
                        q["id"]
                            .as_str()
                            .or(q.as_str())
                            .unwrap_or_default()
                            .to_string()
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut rows = Vec::new();
    for (answers, visible, review, guided) in [
        (serde_json::json!({}), vec!["export"], vec![], 0),
        (
            serde_json::json!({"export": "no"}),
            vec!["export"],
            vec![],
            0,
        ),
        (
            serde_json::json!({"export": "dual-use"}),
            vec!["export", "licence"],
            vec![],
            1,
        ),
        (
            serde_json::json!({"export": "military", "licence": "L-7"}),
            vec!["export", "licence"],
            vec!["licence"],
            1,
        ),
    ] {
        let out = evaluate(&name, answers.clone());
        let v: Value =
            serde_json::from_str(&stdout_of(&out, "kubectl create ChecklistEvaluation")?)?;
        if ids(&v, "visibleQuestions") != visible
            || ids(&v, "needsReview") != review
            || v["status"]["guidance"].as_array().map(Vec::len) != Some(guided)
        {
            return Err(format!("{answers}: got {}", v["status"]).into());
        }
        rows.push(v);
    }
    // What does not fit yet names the question.
    let missing = &rows[2]["status"]["problems"];
    if !missing
        .to_string()
        .contains("spec.checklistAnswers.licence")
    {
        return Err(format!("the missing licence is not named: {missing}").into());
    }
    let out = evaluate(&format!("{name}-nope"), serde_json::json!({}));
    let err = String::from_utf8_lossy(&out.stderr);
    if out.status.success() || !err.contains("NotFound") && !err.contains("not found") {
        return Err(format!("an unknown checklist: {err}").into());
    }
    let _ = env.kubectl(&["delete", "checklist", &name]);
    Ok(())
}

const GROUP_VERSION: &str = "/apis/views.tenancy.dev/v1alpha1";
const STAFF_GROUP: &str = "tenancy:staff";
/// A staff group of this suite only (`--staff-groups` in main.rs).
const PLATFORM_GROUP: &str = crate::promises::EXTRA_STAFF_GROUP;
const CUSTOMER_LABEL: &str = "tenancy.dev/customer";
/// The field selectors `myprojects` supports, as its 400 must name them.
const PROJECT_FIELDS: &[&str] = &[
    "metadata.name",
    "metadata.uid",
    "customer.name",
    "customer.displayName",
    "customer.abbreviation",
    "customer.nativeName",
    "access.canManage",
    "access.canAdmin",
    "status.finished",
    "status.phase",
    "spec.backendId",
    "spec.projectType",
    "includeTerminated",
    "name.contains",
    "description.contains",
    "query",
    "createdAfter",
    "modifiedAfter",
];
const MEMBER_FIELDS: &[&str] = &[
    "metadata.name",
    "subject.name",
    "subject.kind",
    "role",
    "phase",
    "project",
    "customer",
    "expiresBefore",
];

// ---------------------------------------------------------------------------------------------
// Requests

/// Percent-encodes a query value (everything but RFC 3986's unreserved characters).
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `/apis/views.tenancy.dev/v1alpha1/<resource>?k=v&…`.
fn path(resource: &str, query: &[(&str, &str)]) -> String {
    let q: Vec<String> = query
        .iter()
        .map(|(k, v)| format!("{k}={}", enc(v)))
        .collect();
    if q.is_empty() {
        format!("{GROUP_VERSION}/{resource}")
    } else {
        format!("{GROUP_VERSION}/{resource}?{}", q.join("&"))
    }
}

fn label_is(customer: &str) -> String {
    format!("{CUSTOMER_LABEL}={customer}")
}

/// GET `path` with `client`, as JSON.
async fn get(client: &Client, path: &str) -> Result<Value, kube::Error> {
    let request = http::Request::get(path)
        .body(Vec::new())
        .expect("a GET request");
    let text = client.request_text(request).await?;
    serde_json::from_str(&text).map_err(kube::Error::SerdeError)
}

/// A list's items, each as `name [Role,Role] manage=… admin=…`: what a user sees of a project.
fn seen(list: &Value) -> BTreeSet<String> {
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            let roles: Vec<&str> = p["access"]["roles"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            format!(
                "{} [{}] manage={} admin={}",
                p["metadata"]["name"].as_str().unwrap_or("?"),
                roles.join(","),
                p["access"]["canManage"],
                p["access"]["canAdmin"]
            )
        })
        .collect()
}

/// What a user should see of a project.
fn sees(name: &str, roles: &[&str], manage: bool, admin: bool) -> String {
    format!("{name} [{}] manage={manage} admin={admin}", roles.join(","))
}

/// The names of a list's items, in order.
fn names(list: &Value) -> Vec<String> {
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| p["metadata"]["name"].as_str().unwrap_or("?").to_string())
        .collect()
}

fn name_set<S: AsRef<str>>(names: &[S]) -> BTreeSet<String> {
    names.iter().map(|n| n.as_ref().to_string()).collect()
}

/// The item named `name` of a list.
fn item<'a>(list: &'a Value, name: &str) -> Option<&'a Value> {
    list["items"]
        .as_array()?
        .iter()
        .find(|p| p["metadata"]["name"] == name)
}

/// The HTTP code and message of a refused request (200 and the body if it was answered).
fn outcome(result: &Result<Value, kube::Error>) -> (u16, String) {
    match result {
        Ok(v) => {
            let body = v.to_string();
            let cut: String = body.chars().take(400).collect();
            let more = if cut.len() < body.len() { "…" } else { "" };
            (200, format!("{cut}{more}"))
        }
        Err(e) => refusal(e),
    }
}

/// Polls `check` until it passes; fails after the suite's access bound with its last complaint.
async fn eventually<F, Fut>(what: &str, mut check: F) -> TestResult
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let deadline = Instant::now() + ACCESS_TIMEOUT;
    loop {
        match check().await {
            Ok(()) => return Ok(()),
            Err(why) if Instant::now() > deadline => {
                return Err(format!("{what}: still wrong after {ACCESS_TIMEOUT:?}: {why}").into());
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

/// Waits until `client` lists exactly `want` (as [`seen`] renders items) at `path`.
async fn wait_sees(client: &Client, who: &str, path: &str, want: &BTreeSet<String>) -> TestResult {
    eventually(&format!("{who} lists {path}"), || async {
        match get(client, path).await {
            Ok(list) => {
                let got = seen(&list);
                if &got == want {
                    Ok(())
                } else {
                    Err(format!("expected {want:?}, got {got:?}"))
                }
            }
            Err(e) => Err(format!("the request failed: {e}")),
        }
    })
    .await
}

/// Waits until the read API answers the admin (the APIService is available and the operator's
/// index is built).
async fn wait_views_served(env: &Env) -> TestResult {
    let admin = env.client().await;
    let probe = path("myprojects", &[("limit", "1")]);
    let deadline = Instant::now() + ACCESS_TIMEOUT;
    loop {
        let last = match get(&admin, &probe).await {
            Ok(v) if v["kind"] == "MyProjectList" => return Ok(()),
            Ok(v) => v.to_string(),
            Err(e) => e.to_string(),
        };
        if Instant::now() > deadline {
            return Err(format!(
                "views.tenancy.dev is not served after {ACCESS_TIMEOUT:?}; last answer: {last}"
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// kubectl

/// `kubectl <args>`'s stdout, or a failure with its stderr.
fn kubectl(env: &Env, args: &[&str]) -> Result<String, Failed> {
    stdout_of(&env.kubectl(args), &format!("kubectl {}", args.join(" ")))
}

/// `kubectl <args> -o json`, parsed (an error says what kubectl said).
fn kubectl_json(env: &Env, args: &[&str]) -> Result<Value, String> {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    let out = kubectl(env, &all).map_err(|e| e.message().unwrap_or_default().to_string())?;
    serde_json::from_str(&out).map_err(|e| format!("kubectl {}: {e}: {out}", all.join(" ")))
}

/// A failing kubectl's stderr (an error if it succeeded).
fn kubectl_fails(env: &Env, args: &[&str]) -> Result<String, Failed> {
    let out = env.kubectl(args);
    if out.status.success() {
        return Err(format!(
            "kubectl {} succeeded: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout)
        )
        .into());
    }
    Ok(String::from_utf8_lossy(&out.stderr).trim().to_string())
}

/// kubectl's table output: the header's column names and each row's cells, cut where the
/// header's columns start (so empty cells stay in place).
fn table(text: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let Some(header) = lines.next() else {
        return (Vec::new(), Vec::new());
    };
    // Column names hold single spaces ("MY ROLES"); columns are apart by at least two.
    let mut starts = Vec::new();
    let bytes = header.as_bytes();
    for i in 0..bytes.len() {
        let starts_word = bytes[i] != b' ' && (i == 0 || (i >= 2 && &bytes[i - 2..i] == b"  "));
        if starts_word {
            starts.push(i);
        }
    }
    let cut = |line: &str| -> Vec<String> {
        starts
            .iter()
            .enumerate()
            .map(|(n, &s)| {
                let end = starts.get(n + 1).copied().unwrap_or(usize::MAX);
                let end = end.min(line.len());
                line.get(s.min(end)..end).unwrap_or("").trim().to_string()
            })
            .collect()
    };
    let columns = cut(header);
    let rows = lines.map(cut).collect();
    (columns, rows)
}

// ---------------------------------------------------------------------------------------------
// Objects

/// Staff (the admin) create a customer.
async fn make_customer(admin: &Client, name: &str, spec: Value) -> TestResult {
    Api::<Customer>::all(admin.clone())
        .create(&pp(), &customer(name, spec))
        .await?;
    Ok(())
}

fn user(name: &str) -> Value {
    json!({"kind": "User", "name": name})
}

fn group(name: &str) -> Value {
    json!({"kind": "Group", "name": name})
}

fn phase_of(p: &Project) -> Option<ProjectPhase> {
    p.status.as_ref().and_then(|s| s.phase)
}

/// Staff create a project and wait until it reaches `phase` (its namespace then exists).
async fn make_project(admin: &Client, name: &str, spec: Value, phase: ProjectPhase) -> TestResult {
    Api::<Project>::all(admin.clone())
        .create(&pp(), &project(name, spec))
        .await?;
    wait_project(admin, name, &format!("phase {phase:?}"), |p| {
        (phase_of(p) == Some(phase)).then_some(())
    })
    .await
}

/// Staff give `subject` `role` in project `ns` (until `expires`, an RFC 3339 time, if given).
async fn add_membership(
    admin: &Client,
    ns: &str,
    name: &str,
    subject: Value,
    role: &str,
    expires: Option<&str>,
) -> TestResult {
    let mut spec = json!({"subject": subject, "role": role});
    if let Some(at) = expires {
        spec["expirationTime"] = json!(at);
    }
    let m: ProjectMembership = from_json(json!({
        "apiVersion": "tenancy.dev/v1alpha1", "kind": "ProjectMembership",
        "metadata": {"name": name, "namespace": ns}, "spec": spec,
    }));
    Api::<ProjectMembership>::namespaced(admin.clone(), ns)
        .create(&pp(), &m)
        .await?;
    Ok(())
}

/// An RFC 3339 time `secs` seconds from now (negative: in the past), whole seconds.
fn seconds_from_now(secs: i64) -> String {
    rfc3339(jiff::Timestamp::now() + jiff::SignedDuration::from_secs(secs))
}

fn rfc3339(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn yesterday() -> Result<String, Failed> {
    Ok(jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date()
        .yesterday()
        .map_err(|e| e.to_string())?
        .to_string())
}

fn timestamp(v: &Value) -> Option<jiff::Timestamp> {
    v.as_str()?.parse().ok()
}

/// The name of a customer role holder's `members` item.
fn customer_member(customer: &str, part: &str, kind: SubjectKind, name: &str) -> String {
    let subject = Subject {
        kind,
        name: name.to_string(),
        namespace: None,
    };
    format!("customer.{customer}.{part}.{}", subject.slug())
}

/// A `members` list's items, each as `name role phase`.
fn member_rows(list: &Value) -> BTreeSet<String> {
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            format!(
                "{} {} {}",
                m["metadata"]["name"].as_str().unwrap_or("?"),
                m["role"].as_str().unwrap_or("?"),
                m["phase"].as_str().unwrap_or("?")
            )
        })
        .collect()
}

/// Waits until `client` lists exactly `want` (as [`member_rows`] renders them) at `path`.
async fn wait_members(
    client: &Client,
    who: &str,
    path: &str,
    want: &BTreeSet<String>,
) -> TestResult {
    eventually(&format!("{who} lists {path}"), || async {
        match get(client, path).await {
            Ok(list) => {
                let got = member_rows(&list);
                if &got == want {
                    Ok(())
                } else {
                    Err(format!("expected {want:?}, got {got:?}"))
                }
            }
            Err(e) => Err(format!("the request failed: {e}")),
        }
    })
    .await
}

fn rows(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

// ---------------------------------------------------------------------------------------------
// Checks collected, so one run reports every wrong answer

/// A refusal with this code whose message holds every one of `texts`.
fn refused(
    checks: &mut Checks,
    what: &str,
    result: &Result<Value, kube::Error>,
    code: u16,
    texts: &[&str],
) {
    let (got, message) = outcome(result);
    let ok = got == code && texts.iter().all(|t| message.contains(t));
    checks.check(
        what,
        ok,
        format!("expected HTTP {code} naming {texts:?}, got HTTP {got}: {message}"),
    );
}

// ---------------------------------------------------------------------------------------------
// 1. Who sees what

async fn each_user_lists_exactly_their_projects_with_their_roles(env: Arc<Env>) -> TestResult {
    wait_views_served(&env).await?;
    let admin = env.client().await;
    let tag = unique_name("vw-who");
    let u = |n: &str| format!("{tag}-{n}");
    let (cust, other_cust) = (u("acme"), u("globex"));
    let (alpha, beta, delta) = (u("alpha"), u("beta"), u("delta"));
    let (owner, support, other_owner) = (u("owner"), u("support"), u("globex-owner"));
    let (mgr, adm, mem, gina, gone, stranger) = (
        u("mgr"),
        u("adm"),
        u("mem"),
        u("gina"),
        u("gone"),
        u("stranger"),
    );
    let (devs, staffer, platform) = (u("devs"), u("staff"), u("platform"));
    let bot = format!("system:serviceaccount:{alpha}:bot");

    make_customer(
        &admin,
        &cust,
        json!({"owners": [user(&owner)], "support": [user(&support)]}),
    )
    .await?;
    make_customer(&admin, &other_cust, json!({"owners": [user(&other_owner)]})).await?;
    for (p, c) in [(&alpha, &cust), (&beta, &cust), (&delta, &other_cust)] {
        make_project(&admin, p, json!({"customer": c}), ProjectPhase::Active).await?;
    }
    for (ns, name, subject, role, expires) in [
        (&alpha, "mgr", user(&mgr), "Manager", None),
        (&alpha, "adm", user(&adm), "Administrator", None),
        (&alpha, "mem", user(&mem), "Member", None),
        (&alpha, "devs", group(&devs), "Member", None),
        (
            &alpha,
            "bot",
            json!({"kind": "ServiceAccount", "name": "bot", "namespace": alpha}),
            "Member",
            None,
        ),
        (&alpha, "owner-adm", user(&owner), "Administrator", None),
        (&alpha, "staffer", user(&staffer), "Member", None),
        (
            &alpha,
            "gone",
            user(&gone),
            "Manager",
            Some(seconds_from_now(-3600)),
        ),
        (&beta, "mem-adm", user(&mem), "Administrator", None),
        (&delta, "mgr", user(&mgr), "Manager", None),
    ] {
        add_membership(&admin, ns, name, subject, role, expires.as_deref()).await?;
    }

    // (who, groups, what they see): users of this trial see exactly this; staff see every
    // project of the run, so theirs is cut to this trial's customers.
    let ours = format!("{CUSTOMER_LABEL} in ({cust},{other_cust})");
    let staff_view = |member_too: bool| {
        BTreeSet::from([
            if member_too {
                sees(&alpha, &["Member", "Staff"], true, true)
            } else {
                sees(&alpha, &["Staff"], true, true)
            },
            sees(&beta, &["Staff"], true, true),
            sees(&delta, &["Staff"], true, true),
        ])
    };
    let expectations: Vec<(&str, Vec<&str>, bool, BTreeSet<String>)> = vec![
        (
            &mgr,
            vec![],
            false,
            BTreeSet::from([
                sees(&alpha, &["Manager"], true, false),
                sees(&delta, &["Manager"], true, false),
            ]),
        ),
        (
            &adm,
            vec![],
            false,
            BTreeSet::from([sees(&alpha, &["Administrator"], false, true)]),
        ),
        (
            &mem,
            vec![],
            false,
            BTreeSet::from([
                sees(&alpha, &["Member"], false, false),
                sees(&beta, &["Administrator"], false, true),
            ]),
        ),
        (
            &gina,
            vec![devs.as_str()],
            false,
            BTreeSet::from([sees(&alpha, &["Member"], false, false)]),
        ),
        (&gina, vec![], false, BTreeSet::new()),
        (
            &bot,
            vec!["system:serviceaccounts"],
            false,
            BTreeSet::from([sees(&alpha, &["Member"], false, false)]),
        ),
        (
            &owner,
            vec![],
            false,
            BTreeSet::from([
                sees(&alpha, &["Administrator", "CustomerOwner"], true, true),
                sees(&beta, &["CustomerOwner"], true, false),
            ]),
        ),
        (
            &support,
            vec![],
            false,
            BTreeSet::from([
                sees(&alpha, &["CustomerSupport"], false, false),
                sees(&beta, &["CustomerSupport"], false, false),
            ]),
        ),
        (
            &other_owner,
            vec![],
            false,
            BTreeSet::from([sees(&delta, &["CustomerOwner"], true, false)]),
        ),
        (&gone, vec![], false, BTreeSet::new()),
        (&stranger, vec![], false, BTreeSet::new()),
        (&staffer, vec![STAFF_GROUP], true, staff_view(true)),
        (&platform, vec![PLATFORM_GROUP], true, staff_view(false)),
    ];

    // Through the API: every user's list, once the operator has caught up with the grants.
    let everything = path("myprojects", &[]);
    let staff_path = path("myprojects", &[("labelSelector", &ours)]);
    let mut clients = Vec::new();
    for (who, groups, _, _) in &expectations {
        clients.push(env.client_as(who, groups).await);
    }
    eventually("every user lists exactly their projects", || async {
        let mut wrong = Vec::new();
        for ((who, groups, staff, want), client) in expectations.iter().zip(&clients) {
            let p = if *staff { &staff_path } else { &everything };
            let got = get(client, p).await.map(|l| seen(&l));
            if got.as_ref().ok() != Some(want) {
                wrong.push(format!(
                    "{who} in {groups:?}: expected {want:?}, got {got:?}"
                ));
            }
        }
        if wrong.is_empty() {
            Ok(())
        } else {
            Err(wrong.join("\n"))
        }
    })
    .await?;
    let mut t = Checks::default();

    // Through kubectl, as users type it.
    for (who, groups, staff, want) in &expectations {
        let mut args = vec!["get", "myprojects", "--as", who];
        for g in groups {
            args.extend(["--as-group", g]);
        }
        if *staff {
            args.extend(["-l", ours.as_str()]);
        }
        let got = kubectl_json(&env, &args).map(|l| seen(&l));
        t.check(
            &format!("kubectl {}", args.join(" ")),
            got.as_ref().ok() == Some(want),
            format!("expected {want:?}, got {got:?}"),
        );
    }
    // The admin (system:masters) is staff.
    let got = kubectl_json(&env, &["get", "myprojects", "-l", &ours]).map(|l| seen(&l));
    t.check(
        "kubectl get myprojects as the admin (system:masters)",
        got.as_ref().ok() == Some(&staff_view(false)),
        format!("got {:?}", got.map_err(|e| e.to_string())),
    );

    // One project by name: its own, found; another's or none at all, the same NotFound.
    let got = kubectl_json(&env, &["get", "myprojects", &alpha, "--as", &mem]);
    t.equal(
        "kubectl get myprojects <alpha> --as mem: its roles",
        got.as_ref().ok().map(|p| p["access"]["roles"].clone()),
        Some(json!(["Member"])),
    );
    let not_theirs = kubectl_fails(&env, &["get", "myprojects", &alpha, "--as", &stranger])?;
    let nowhere_name = u("nowhere");
    let nowhere = kubectl_fails(
        &env,
        &["get", "myprojects", &nowhere_name, "--as", &stranger],
    )?;
    t.check(
        "kubectl get myprojects <alpha> --as stranger: NotFound",
        not_theirs.contains("(NotFound)") && not_theirs.contains(&format!("\"{alpha}\" not found")),
        not_theirs.clone(),
    );
    t.equal(
        "a project that is not theirs reads like one that does not exist",
        not_theirs.replace(&alpha, "<name>"),
        nowhere.replace(&nowhere_name, "<name>"),
    );
    let not_theirs = kubectl_fails(&env, &["get", "myprojects", &delta, "--as", &mem])?;
    t.check(
        "kubectl get myprojects <delta> --as mem (a project of another customer): NotFound",
        not_theirs.contains("(NotFound)"),
        not_theirs,
    );
    t.finish("views: who sees which projects")
}

// ---------------------------------------------------------------------------------------------
// 2. Filters, orders and tables

async fn filters_orders_and_kubectl_tables(env: Arc<Env>) -> TestResult {
    wait_views_served(&env).await?;
    let admin = env.client().await;
    let tag = unique_name("vw-filter");
    let u = |n: &str| format!("{tag}-{n}");
    let (ca, cb, cc) = (u("acme"), u("bolt"), u("crux"));
    let display_a = format!("Acme Research {tag}");
    let (a_one, a_two, a_old, b_one, c_one) =
        (u("a-one"), u("a-two"), u("a-old"), u("b-one"), u("c-one"));
    let backend = format!("BK-{tag}-7731");
    let (who, owner) = (u("user"), u("owner"));

    make_customer(
        &admin,
        &ca,
        json!({"displayName": display_a, "owners": [user(&owner)]}),
    )
    .await?;
    for c in [&cb, &cc] {
        make_customer(
            &admin,
            c,
            json!({"displayName": format!("Other {c}"), "owners": [user(&owner)]}),
        )
        .await?;
    }
    make_project(
        &admin,
        &a_one,
        json!({"customer": ca, "endDate": "2099-12-31"}),
        ProjectPhase::Active,
    )
    .await?;
    make_project(
        &admin,
        &a_two,
        json!({"customer": ca, "endDate": "2099-12-31", "displayName": "Telescope Array"}),
        ProjectPhase::Active,
    )
    .await?;
    make_project(
        &admin,
        &a_old,
        json!({"customer": ca, "endDate": yesterday()?, "gracePeriodDays": 30}),
        ProjectPhase::Finished,
    )
    .await?;
    make_project(
        &admin,
        &b_one,
        json!({"customer": cb, "endDate": "2099-12-31", "backendId": backend}),
        ProjectPhase::Active,
    )
    .await?;
    // c-one is created last, a second after this instant.
    let before_c = rfc3339(jiff::Timestamp::now());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    make_project(
        &admin,
        &c_one,
        json!({"customer": cc, "endDate": "2099-12-31"}),
        ProjectPhase::Active,
    )
    .await?;
    for (ns, role) in [
        (&a_one, "Manager"),
        (&a_two, "Administrator"),
        (&a_old, "Member"),
        (&b_one, "Member"),
        (&c_one, "Member"),
    ] {
        add_membership(&admin, ns, "who", user(&who), role, None).await?;
    }

    let client = env.client_as(&who, &[]).await;
    let all = name_set(&[&a_one, &a_two, &a_old, &b_one, &c_one]);
    eventually(&format!("{who} sees their five projects"), || async {
        let got = get(&client, &path("myprojects", &[])).await;
        let got = got.map(|l| name_set(&names(&l))).map_err(|e| e.to_string());
        if got.as_ref() == Ok(&all) {
            Ok(())
        } else {
            Err(format!("got {got:?}"))
        }
    })
    .await?;

    let mut t = Checks::default();
    let fields = |f: &str| path("myprojects", &[("fieldSelector", f)]);
    let cases: Vec<(String, String, Vec<&String>)> = vec![
        (
            "no filter".into(),
            path("myprojects", &[]),
            vec![&a_old, &a_one, &a_two, &b_one, &c_one],
        ),
        (
            "access.canManage=true".into(),
            fields("access.canManage=true"),
            vec![&a_one],
        ),
        (
            "access.canAdmin=true".into(),
            fields("access.canAdmin=true"),
            vec![&a_two],
        ),
        (
            "access.canManage=false,access.canAdmin=false".into(),
            fields("access.canManage=false,access.canAdmin=false"),
            vec![&a_old, &b_one, &c_one],
        ),
        (
            "status.finished=false".into(),
            fields("status.finished=false"),
            vec![&a_one, &a_two, &b_one, &c_one],
        ),
        (
            "status.finished=true".into(),
            fields("status.finished=true"),
            vec![&a_old],
        ),
        (
            format!("customer.displayName={display_a}"),
            fields(&format!("customer.displayName={display_a}")),
            vec![&a_old, &a_one, &a_two],
        ),
        (
            "customer.displayName!=<A's>".into(),
            fields(&format!("customer.displayName!={display_a}")),
            vec![&b_one, &c_one],
        ),
        (
            "name.contains=TELESCOPE (its display name, any case)".into(),
            fields("name.contains=TELESCOPE"),
            vec![&a_two],
        ),
        (
            "name.contains=-a-o".into(),
            fields("name.contains=-a-o"),
            vec![&a_old, &a_one],
        ),
        (
            "query=<part of b-one's backendId>".into(),
            fields(&format!(
                "query={}",
                backend[..backend.len() - 2].to_lowercase()
            )),
            vec![&b_one],
        ),
        (
            format!("createdAfter={before_c}"),
            fields(&format!("createdAfter={before_c}")),
            vec![&c_one],
        ),
        (
            format!("metadata.name={a_two}"),
            fields(&format!("metadata.name={a_two}")),
            vec![&a_two],
        ),
        (
            format!("customer.name={cb}"),
            fields(&format!("customer.name={cb}")),
            vec![&b_one],
        ),
        (
            format!("label {CUSTOMER_LABEL} in ({ca},{cb})"),
            path(
                "myprojects",
                &[("labelSelector", &format!("{CUSTOMER_LABEL} in ({ca},{cb})"))],
            ),
            vec![&a_old, &a_one, &a_two, &b_one],
        ),
        (
            format!("label {CUSTOMER_LABEL} notin ({ca},{cb})"),
            path(
                "myprojects",
                &[(
                    "labelSelector",
                    &format!("{CUSTOMER_LABEL} notin ({ca},{cb})"),
                )],
            ),
            vec![&c_one],
        ),
        (
            "status.finished=false with label in (A) and access.canAdmin=false".into(),
            path(
                "myprojects",
                &[
                    (
                        "fieldSelector",
                        "status.finished=false,access.canAdmin=false",
                    ),
                    ("labelSelector", &format!("{CUSTOMER_LABEL} in ({ca})")),
                ],
            ),
            vec![&a_one],
        ),
    ];
    for (what, p, want) in &cases {
        let got = get(&client, p).await.map(|l| names(&l));
        let want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
        t.equal(what, got.map_err(|e| e.to_string()), Ok(want));
    }
    // The items carry what the filters read.
    let list = get(&client, &path("myprojects", &[])).await?;
    let old = item(&list, &a_old).cloned().unwrap_or_default();
    t.equal(
        "a-old: status.phase, status.finished",
        (
            old["status"]["phase"].clone(),
            old["status"]["finished"].clone(),
        ),
        (json!("Finished"), json!(true)),
    );
    t.equal(
        "a-two: customer display name and label",
        (
            item(&list, &a_two).map(|p| p["customer"]["displayName"].clone()),
            item(&list, &a_two).map(|p| p["metadata"]["labels"][CUSTOMER_LABEL].clone()),
        ),
        (Some(json!(display_a)), Some(json!(ca))),
    );

    // Orders: by name (default), newest first, oldest first.
    let by = |o: &str| path("myprojects", &[("orderBy", o)]);
    let newest_first = get(&client, &by("-created")).await?;
    let order = names(&newest_first);
    let mut expected: Vec<(Option<jiff::Timestamp>, String)> = newest_first["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            (
                timestamp(&p["metadata"]["creationTimestamp"]),
                p["metadata"]["name"].as_str().unwrap_or("?").to_string(),
            )
        })
        .collect();
    expected.sort();
    expected.reverse();
    let expected: Vec<String> = expected.into_iter().map(|(_, n)| n).collect();
    t.check(
        "orderBy=-created: newest first (c-one), ties by name descending",
        order.first() == Some(&c_one) && order == expected && order.len() == 5,
        format!("got {order:?}, by creationTimestamp {expected:?}"),
    );
    let oldest_first = get(&client, &by("created")).await.map(|l| names(&l));
    let mut reversed = order.clone();
    reversed.reverse();
    t.equal(
        "orderBy=created: the reverse",
        oldest_first.map_err(|e| e.to_string()),
        Ok(reversed),
    );
    refused(
        &mut t,
        "orderBy=size",
        &get(&client, &by("size")).await,
        400,
        &[
            "orderBy \"size\" is not supported",
            "name, created or customer",
        ],
    );

    // A field that does not exist: 400 naming those that do, through the API and kubectl.
    let mut supported =
        vec!["field selector \"owner\" is not supported for myprojects; supported:"];
    supported.extend(PROJECT_FIELDS);
    refused(
        &mut t,
        "fieldSelector owner=olga",
        &get(&client, &fields("owner=olga")).await,
        400,
        &supported,
    );
    refused(
        &mut t,
        "fieldSelector access.canManage=yes",
        &get(&client, &fields("access.canManage=yes")).await,
        400,
        &["\"yes\" is not true or false"],
    );
    refused(
        &mut t,
        "fieldSelector createdAfter=yesterday",
        &get(&client, &fields("createdAfter=yesterday")).await,
        400,
        &["is not an RFC 3339 time"],
    );
    let stderr = kubectl_fails(
        &env,
        &[
            "get",
            "myprojects",
            "--field-selector",
            "owner=olga",
            "--as",
            &who,
        ],
    )?;
    t.check(
        "kubectl --field-selector owner=olga: BadRequest naming the supported fields",
        stderr.contains("BadRequest") && PROJECT_FIELDS.iter().all(|f| stderr.contains(f)),
        stderr.clone(),
    );

    // kubectl with selectors as typed.
    let got = kubectl_json(
        &env,
        &[
            "get",
            "myprojects",
            "-l",
            &format!("{CUSTOMER_LABEL} in ({ca},{cb})"),
            "--field-selector",
            "status.finished=false",
            "--as",
            &who,
        ],
    )
    .map(|l| names(&l));
    t.equal(
        "kubectl -l 'customer in (A,B)' --field-selector status.finished=false",
        got.map_err(|e| e.to_string()),
        Ok(vec![a_one.clone(), a_two.clone(), b_one.clone()]),
    );

    // kubectl sorting (it asks for whole objects in the table), names, the short name.
    let text = kubectl(
        &env,
        &[
            "get",
            "myprojects",
            "--sort-by=.metadata.creationTimestamp",
            "--as",
            &who,
        ],
    )?;
    let (_, sorted) = table(&text);
    t.check(
        "kubectl get myprojects --sort-by=.metadata.creationTimestamp: c-one last",
        sorted.len() == 5 && sorted.last().map(|r| r[0].as_str()) == Some(c_one.as_str()),
        text.clone(),
    );
    let text = kubectl(&env, &["get", "myp", "-o", "name", "--as", &who])?;
    let listed: Vec<&str> = text.lines().collect();
    let want: Vec<String> = [&a_old, &a_one, &a_two, &b_one, &c_one]
        .iter()
        .map(|n| format!("myproject.views.tenancy.dev/{n}"))
        .collect();
    t.equal(
        "kubectl get myp -o name (the short name)",
        listed,
        want.iter().map(String::as_str).collect(),
    );

    // kubectl's table: the columns, and the user's roles in each row.
    let text = kubectl(&env, &["get", "myprojects", "--as", &who])?;
    let (columns, table_rows) = table(&text);
    t.equal(
        "kubectl get myprojects: columns",
        columns.clone(),
        ["NAME", "CUSTOMER", "MY ROLES", "PHASE", "END DATE", "AGE"]
            .map(String::from)
            .to_vec(),
    );
    let cells: BTreeSet<String> = table_rows
        .iter()
        .map(|r| r.iter().take(5).cloned().collect::<Vec<_>>().join(" | "))
        .collect();
    let yesterday = yesterday()?;
    let want: BTreeSet<String> = [
        format!("{a_one} | {ca} | Manager | Active | 2099-12-31"),
        format!("{a_two} | {ca} | Administrator | Active | 2099-12-31"),
        format!("{a_old} | {ca} | Member | Finished | {yesterday}"),
        format!("{b_one} | {cb} | Member | Active | 2099-12-31"),
        format!("{c_one} | {cc} | Member | Active | 2099-12-31"),
    ]
    .into_iter()
    .collect();
    t.check(
        "kubectl get myprojects: rows (name, customer, my roles, phase, end date)",
        cells == want,
        format!("expected {want:?}, got {cells:?}\n{text}"),
    );
    let text = kubectl(&env, &["get", "myprojects", "-o", "wide", "--as", &who])?;
    let (columns, wide_rows) = table(&text);
    t.equal(
        "kubectl get myprojects -o wide: columns",
        columns.clone(),
        [
            "NAME",
            "CUSTOMER",
            "MY ROLES",
            "PHASE",
            "END DATE",
            "AGE",
            "DISPLAY NAME",
            "CAN MANAGE",
            "CAN ADMIN",
            "MEMBERS",
            "PURGE AFTER",
        ]
        .map(String::from)
        .to_vec(),
    );
    let wide: BTreeSet<String> = wide_rows
        .iter()
        .filter(|r| r.len() >= 11)
        .map(|r| format!("{} | {} | {} | {}", r[0], r[6], r[7], r[8]))
        .collect();
    let want: BTreeSet<String> = [
        format!("{a_one} |  | true | false"),
        format!("{a_two} | Telescope Array | false | true"),
        format!("{a_old} |  | false | false"),
        format!("{b_one} |  | false | false"),
        format!("{c_one} |  | false | false"),
    ]
    .into_iter()
    .collect();
    t.check(
        "kubectl get myprojects -o wide: display name, can manage, can admin",
        wide == want,
        format!("expected {want:?}, got {wide:?}\n{text}"),
    );
    t.finish("views: filters, orders and tables")
}

// ---------------------------------------------------------------------------------------------
// 3. Pages

async fn pages_come_from_one_moment_and_foreign_or_made_up_tokens_are_gone(
    env: Arc<Env>,
) -> TestResult {
    wait_views_served(&env).await?;
    let admin = env.client().await;
    let tag = unique_name("vw-page");
    let cust = format!("{tag}-acme");
    let owner = format!("{tag}-owner");
    let staff_user = format!("{tag}-staff");
    make_customer(&admin, &cust, json!({"owners": [user(&owner)]})).await?;
    let projects: Vec<String> = (1..=5).map(|i| format!("{tag}-p{i}")).collect();
    for p in &projects {
        make_project(&admin, p, json!({"customer": cust}), ProjectPhase::Active).await?;
    }
    let staff = env.client_as(&staff_user, &[STAFF_GROUP]).await;
    let label = label_is(&cust);
    let first_page = path("myprojects", &[("labelSelector", &label), ("limit", "2")]);
    let want: Vec<String> = projects.clone();
    eventually("staff see the customer's five projects", || async {
        let got = get(&staff, &path("myprojects", &[("labelSelector", &label)])).await;
        let got = got.map(|l| names(&l)).map_err(|e| e.to_string());
        if got.as_ref() == Ok(&want) {
            Ok(())
        } else {
            Err(format!("got {got:?}"))
        }
    })
    .await?;

    let mut t = Checks::default();
    let page1 = get(&staff, &first_page).await?;
    let token = page1["metadata"]["continue"]
        .as_str()
        .unwrap_or("")
        .to_string();
    t.check(
        "page 1: two items, a continue token, 3 remaining",
        names(&page1).len() == 2
            && !token.is_empty()
            && page1["metadata"]["remainingItemCount"] == 3,
        page1["metadata"].to_string(),
    );
    // A project created after the first page is not in the later pages of that list.
    let late = format!("{tag}-p6");
    make_project(
        &admin,
        &late,
        json!({"customer": cust}),
        ProjectPhase::Active,
    )
    .await?;
    let with_late: Vec<String> = projects.iter().cloned().chain([late.clone()]).collect();
    eventually("staff see the sixth project in a new list", || async {
        let got = get(&staff, &path("myprojects", &[("labelSelector", &label)])).await;
        let got = got.map(|l| names(&l)).map_err(|e| e.to_string());
        if got.as_ref() == Ok(&with_late) {
            Ok(())
        } else {
            Err(format!("got {got:?}"))
        }
    })
    .await?;
    let next = |token: &str| {
        path(
            "myprojects",
            &[
                ("labelSelector", &label),
                ("limit", "2"),
                ("continue", token),
            ],
        )
    };
    let page2 = get(&staff, &next(&token)).await?;
    let token2 = page2["metadata"]["continue"]
        .as_str()
        .unwrap_or("")
        .to_string();
    t.check(
        "page 2: two items, a continue token, 1 remaining",
        names(&page2).len() == 2
            && !token2.is_empty()
            && page2["metadata"]["remainingItemCount"] == 1,
        page2["metadata"].to_string(),
    );
    let page3 = get(&staff, &next(&token2)).await?;
    t.check(
        "page 3: one item and no continue token",
        names(&page3).len() == 1 && page3["metadata"]["continue"].is_null(),
        page3["metadata"].to_string(),
    );
    let pages: Vec<String> = [&page1, &page2, &page3]
        .iter()
        .flat_map(|p| names(p))
        .collect();
    t.equal(
        "the three pages: the five projects of the first page's moment, in order, no overlap",
        pages,
        projects.clone(),
    );

    // Tokens that are not the caller's: made up, or another user's.
    refused(
        &mut t,
        "a made-up continue token",
        &get(&staff, &next("0123456789abcdef0123456789abcdef:2")).await,
        410,
        &["continue token has expired or is not yours"],
    );
    refused(
        &mut t,
        "a malformed continue token",
        &get(&staff, &next("garbage")).await,
        410,
        &["list again from the start"],
    );
    let as_owner = env.client_as(&owner, &[]).await;
    refused(
        &mut t,
        "staff's continue token used by the owner",
        &get(&as_owner, &next(&token)).await,
        410,
        &["not yours"],
    );

    // kubectl pages by itself and lists everything.
    let text = kubectl(
        &env,
        &[
            "get",
            "myprojects",
            "--chunk-size=1",
            "-l",
            &label,
            "--as",
            &owner,
        ],
    )?;
    let (columns, table_rows) = table(&text);
    let listed: Vec<String> = table_rows.iter().map(|r| r[0].clone()).collect();
    let owner_roles: BTreeSet<String> = table_rows.iter().map(|r| r[2].clone()).collect();
    t.check(
        "kubectl get myprojects --chunk-size=1 --as owner: all six, one header",
        listed == with_late
            && columns.first().map(String::as_str) == Some("NAME")
            && owner_roles == BTreeSet::from(["CustomerOwner".to_string()]),
        format!("got\n{text}"),
    );
    let got = kubectl_json(
        &env,
        &[
            "get",
            "myprojects",
            "--chunk-size=2",
            "-l",
            &label,
            "--as",
            &owner,
        ],
    )
    .map(|l| names(&l));
    t.equal(
        "kubectl get myprojects --chunk-size=2 -o json --as owner",
        got.map_err(|e| e.to_string()),
        Ok(with_late.clone()),
    );
    t.finish("views: pages")
}

// ---------------------------------------------------------------------------------------------
// Watches

/// One event of a watch, as it arrived.
#[derive(Clone, Debug)]
struct Event {
    kind: String,
    name: String,
    object: Value,
    at: Instant,
    wall: jiff::Timestamp,
}

/// A watch read by a task of its own, so each event's arrival time is when it arrived.
struct Watcher {
    rx: tokio::sync::mpsc::UnboundedReceiver<Event>,
    task: tokio::task::JoinHandle<()>,
    seen: Vec<String>,
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Watcher {
    async fn start(client: &Client, path: &str) -> Result<Watcher, Failed> {
        let request = http::Request::get(path)
            .body(Vec::new())
            .expect("a GET request");
        let stream = client.request_events::<Value>(request).await?;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(event) = stream.next().await {
                let (kind, object) = match event {
                    Ok(WatchEvent::Added(o)) => ("ADDED", o),
                    Ok(WatchEvent::Modified(o)) => ("MODIFIED", o),
                    Ok(WatchEvent::Deleted(o)) => ("DELETED", o),
                    Ok(WatchEvent::Bookmark(b)) => (
                        "BOOKMARK",
                        json!({"metadata": {
                            "resourceVersion": b.metadata.resource_version,
                            "annotations": b.metadata.annotations,
                        }}),
                    ),
                    Ok(WatchEvent::Error(s)) => (
                        "ERROR",
                        json!({"code": s.code, "reason": s.reason, "message": s.message}),
                    ),
                    Err(e) => ("FAILED", json!({"message": e.to_string()})),
                };
                let event = Event {
                    kind: kind.to_string(),
                    name: object["metadata"]["name"]
                        .as_str()
                        .unwrap_or("")
                        .to_string(),
                    object,
                    at: Instant::now(),
                    wall: jiff::Timestamp::now(),
                };
                if tx.send(event).is_err() {
                    return;
                }
            }
            let _ = tx.send(Event {
                kind: "END".into(),
                name: String::new(),
                object: Value::Null,
                at: Instant::now(),
                wall: jiff::Timestamp::now(),
            });
        });
        Ok(Watcher {
            rx,
            task,
            seen: Vec::new(),
        })
    }

    /// The next event, if one arrives within `timeout`.
    async fn next(&mut self, timeout: Duration) -> Option<Event> {
        let event = tokio::time::timeout(timeout, self.rx.recv())
            .await
            .ok()
            .flatten()?;
        self.seen.push(format!("{} {}", event.kind, event.name));
        Some(event)
    }

    /// The next event that `matches`, skipping others (they are kept in `seen`); fails after
    /// `timeout` or at the end of the stream, naming every event that came.
    async fn until(
        &mut self,
        what: &str,
        timeout: Duration,
        matches: impl Fn(&Event) -> bool,
    ) -> Result<Event, Failed> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left).await {
                Some(e) if matches(&e) => return Ok(e),
                Some(e) if e.kind == "END" => {
                    return Err(format!("{what}: the watch ended; events: {:?}", self.seen).into());
                }
                Some(_) => {}
                None => {
                    return Err(format!(
                        "{what}: nothing within {timeout:?}; events so far: {:?}",
                        self.seen
                    )
                    .into());
                }
            }
        }
    }
}

/// `kubectl get … -w` running beside a trial (a child process of this test, stopped by its own
/// handle): its output lines as they come.
struct KubectlWatch {
    child: std::process::Child,
    lines: Arc<std::sync::Mutex<Vec<String>>>,
    reader: Option<std::thread::JoinHandle<()>>,
    stderr: std::path::PathBuf,
}

impl KubectlWatch {
    fn start(env: &Env, name: &str, args: &[&str]) -> Result<KubectlWatch, Failed> {
        use std::io::BufRead;
        let kubeconfig = env.kubeconfig();
        let stderr = env.cluster().dir().join(format!("{name}.stderr"));
        let mut child = std::process::Command::new("kubectl")
            .args(args)
            .env("KUBECONFIG", kubeconfig)
            .env(
                "KUBECACHEDIR",
                kubeconfig
                    .parent()
                    .unwrap_or(std::path::Path::new("."))
                    .join("kubectl-cache"),
            )
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::fs::File::create(&stderr).map_err(|e| e.to_string())?)
            .spawn()
            .map_err(|e| format!("starting kubectl: {e}"))?;
        let stdout = child.stdout.take().expect("piped");
        let lines = Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = lines.clone();
        let reader = std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                sink.lock().expect("lines").push(line);
            }
        });
        Ok(KubectlWatch {
            child,
            lines,
            reader: Some(reader),
            stderr,
        })
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().expect("lines").clone()
    }

    /// Waits until a line satisfies `matches`.
    async fn wait_line(&self, what: &str, matches: impl Fn(&str) -> bool) -> TestResult {
        let deadline = Instant::now() + WATCH_TIMEOUT;
        while Instant::now() < deadline {
            if self.lines().iter().any(|l| matches(l)) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(format!(
            "kubectl -w: no {what} within {WATCH_TIMEOUT:?}; it printed {:?}; stderr: {}",
            self.lines(),
            std::fs::read_to_string(&self.stderr).unwrap_or_default()
        )
        .into())
    }

    /// Stops it; what it printed, and its stderr.
    fn stop(mut self) -> (Vec<String>, String) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        (
            self.lines(),
            std::fs::read_to_string(&self.stderr).unwrap_or_default(),
        )
    }
}

impl Drop for KubectlWatch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How long a watch may take to report a change before the trial fails (the promise is 2 s; a
/// loaded CI machine gets more, and the real delay is printed).
const WATCH_TIMEOUT: Duration = Duration::from_secs(30);

// 4. A watch follows access

async fn a_watch_follows_access_as_it_comes_expires_and_goes(env: Arc<Env>) -> TestResult {
    wait_views_served(&env).await?;
    let admin = env.client().await;
    let tag = unique_name("vw-watch");
    let cust = format!("{tag}-acme");
    let (one, two, three) = (
        format!("{tag}-one"),
        format!("{tag}-two"),
        format!("{tag}-three"),
    );
    let watcher_user = format!("{tag}-watcher");
    make_customer(&admin, &cust, json!({})).await?;
    for p in [&one, &two, &three] {
        make_project(&admin, p, json!({"customer": cust}), ProjectPhase::Active).await?;
    }
    // Someone else's access changes: the watcher never hears of it.
    add_membership(
        &admin,
        &three,
        "other",
        user(&format!("{tag}-other")),
        "Manager",
        None,
    )
    .await?;

    let client = env.client_as(&watcher_user, &[]).await;
    let mut w = Watcher::start(
        &client,
        &path(
            "myprojects",
            &[("watch", "true"), ("timeoutSeconds", "280")],
        ),
    )
    .await?;
    // And kubectl, as a user types it: its table rows, one per event.
    let kubectl_watch = KubectlWatch::start(
        &env,
        &format!("{tag}-kubectl-watch"),
        &[
            "get",
            "myprojects",
            "-w",
            "--output-watch-events",
            "--as",
            &watcher_user,
        ],
    )?;
    let mut t = Checks::default();
    let mut delays = Vec::new();

    // Gains: a membership.
    let asked = Instant::now();
    add_membership(&admin, &one, "watcher", user(&watcher_user), "Member", None).await?;
    let added = w
        .until("ADDED for the new membership", WATCH_TIMEOUT, |e| {
            e.kind == "ADDED" && e.name == one
        })
        .await?;
    delays.push(format!(
        "membership created -> ADDED {:.2}s",
        added.at.duration_since(asked).as_secs_f64()
    ));
    t.equal(
        "ADDED: the watcher's roles in it",
        added.object["access"]["roles"].clone(),
        json!(["Member"]),
    );

    // A role that ends by itself.
    let expires_in = 20;
    let expires_at = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(expires_in);
    let expires = rfc3339(expires_at);
    let expires_at: jiff::Timestamp = expires.parse().map_err(|e| format!("{e}"))?;
    let asked = Instant::now();
    add_membership(
        &admin,
        &two,
        "watcher",
        user(&watcher_user),
        "Administrator",
        Some(&expires),
    )
    .await?;
    let added = w
        .until("ADDED for the expiring membership", WATCH_TIMEOUT, |e| {
            e.kind == "ADDED" && e.name == two
        })
        .await?;
    delays.push(format!(
        "expiring membership created -> ADDED {:.2}s",
        added.at.duration_since(asked).as_secs_f64()
    ));
    t.equal(
        "ADDED (expiring): the watcher's roles in it",
        added.object["access"]["roles"].clone(),
        json!(["Administrator"]),
    );
    let deleted = w
        .until(
            "DELETED when the membership expires",
            Duration::from_secs(expires_in as u64) + WATCH_TIMEOUT,
            |e| e.kind == "DELETED" && e.name == two,
        )
        .await?;
    let after = deleted.wall.duration_since(expires_at);
    delays.push(format!(
        "expirationTime -> DELETED {:+.2}s",
        after.as_secs_f64()
    ));
    t.check(
        "DELETED not before the expiration time",
        deleted.wall >= expires_at,
        format!("DELETED at {}, expires {expires}", deleted.wall),
    );
    // While it was held, list agreed; now the list has only `one`.
    let now_list = get(&client, &path("myprojects", &[]))
        .await
        .map(|l| names(&l));
    t.equal(
        "after the expiry the watcher lists only the first project",
        now_list.map_err(|e| e.to_string()),
        Ok(vec![one.clone()]),
    );

    // Loses: the membership is deleted.
    let asked = Instant::now();
    Api::<ProjectMembership>::namespaced(admin.clone(), &one)
        .delete("watcher", &DeleteParams::default())
        .await?;
    let deleted = w
        .until("DELETED for the deleted membership", WATCH_TIMEOUT, |e| {
            e.kind == "DELETED" && e.name == one
        })
        .await?;
    delays.push(format!(
        "membership deleted -> DELETED {:.2}s",
        deleted.at.duration_since(asked).as_secs_f64()
    ));
    // kubectl printed the same story as rows of the server's table.
    let events_of = |lines: &[String]| -> Vec<String> {
        lines
            .iter()
            .filter_map(|l| {
                let cells: Vec<&str> = l.split_whitespace().collect();
                match cells.as_slice() {
                    [kind @ ("ADDED" | "DELETED"), name, _customer, roles, ..] => {
                        Some(format!("{kind} {name} {roles}"))
                    }
                    _ => None,
                }
            })
            .collect()
    };
    let waited = kubectl_watch
        .wait_line("DELETED row for the first project", |l| {
            l.starts_with("DELETED") && l.split_whitespace().nth(1) == Some(one.as_str())
        })
        .await;
    let (printed, stderr) = kubectl_watch.stop();
    t.check(
        "kubectl get myprojects -w --output-watch-events: ADDED and DELETED rows in order",
        waited.is_ok()
            && events_of(&printed)
                == vec![
                    format!("ADDED {one} Member"),
                    format!("ADDED {two} Administrator"),
                    format!("DELETED {two} Administrator"),
                    format!("DELETED {one} Member"),
                ],
        format!("printed {printed:?}; stderr: {stderr}"),
    );
    t.check(
        "kubectl -w: the table's header first",
        printed.first().is_some_and(|h| {
            h.split_whitespace().collect::<Vec<_>>()
                == [
                    "EVENT", "NAME", "CUSTOMER", "MY", "ROLES", "PHASE", "END", "DATE", "AGE",
                ]
        }),
        format!("printed {printed:?}"),
    );

    // Drain what is left for a moment: nothing about the project the watcher never had.
    while w.next(Duration::from_millis(1500)).await.is_some() {}
    let leaked: Vec<&String> = w.seen.iter().filter(|e| e.ends_with(&three)).collect();
    t.check(
        "no event about a project the watcher never had",
        leaked.is_empty(),
        format!("{leaked:?}"),
    );
    let failures: Vec<&String> = w
        .seen
        .iter()
        .filter(|e| e.starts_with("ERROR") || e.starts_with("FAILED") || e.starts_with("END"))
        .collect();
    t.check(
        "the watch stayed open without errors",
        failures.is_empty(),
        format!("{failures:?}"),
    );
    eprintln!(
        "[e2e] views watch delays (promise: within 2 s): {}; events: {:?}",
        delays.join(", "),
        w.seen
    );
    t.finish("views: a watch follows access")
}

// 5. Initial events, bookmarks, resuming, too old

async fn a_watch_sends_initial_events_then_a_bookmark_and_410_when_too_old(
    env: Arc<Env>,
) -> TestResult {
    wait_views_served(&env).await?;
    let admin = env.client().await;
    let tag = unique_name("vw-initial");
    let cust = format!("{tag}-acme");
    let who = format!("{tag}-user");
    let (p1, p2, p3) = (
        format!("{tag}-p1"),
        format!("{tag}-p2"),
        format!("{tag}-p3"),
    );
    make_customer(&admin, &cust, json!({})).await?;
    for p in [&p1, &p2, &p3] {
        make_project(&admin, p, json!({"customer": cust}), ProjectPhase::Active).await?;
    }
    add_membership(&admin, &p1, "u", user(&who), "Member", None).await?;
    add_membership(&admin, &p2, "u", user(&who), "Manager", None).await?;
    let client = env.client_as(&who, &[]).await;
    wait_sees(
        &client,
        &who,
        &path("myprojects", &[]),
        &BTreeSet::from([
            sees(&p1, &["Member"], false, false),
            sees(&p2, &["Manager"], true, false),
        ]),
    )
    .await?;
    let mut t = Checks::default();

    let mut w = Watcher::start(
        &client,
        &path(
            "myprojects",
            &[
                ("watch", "true"),
                ("sendInitialEvents", "true"),
                ("resourceVersionMatch", "NotOlderThan"),
                ("allowWatchBookmarks", "true"),
                ("timeoutSeconds", "120"),
            ],
        ),
    )
    .await?;
    let mut initial = Vec::new();
    let bookmark = loop {
        match w.next(WATCH_TIMEOUT).await {
            Some(e) if e.kind == "BOOKMARK" => break Some(e),
            Some(e) if e.kind == "ADDED" => initial.push(e),
            Some(e) => {
                t.check(
                    "only ADDED before the bookmark",
                    false,
                    format!("{} {}", e.kind, e.name),
                );
                if e.kind == "END" {
                    break None;
                }
            }
            None => break None,
        }
    };
    let initial_names: Vec<&str> = initial.iter().map(|e| e.name.as_str()).collect();
    t.equal(
        "initial events: ADDED for each project the user has, by name",
        initial_names,
        vec![p1.as_str(), p2.as_str()],
    );
    let Some(bookmark) = bookmark else {
        t.check(
            "a BOOKMARK ends the initial events",
            false,
            format!("{:?}", w.seen),
        );
        return t.finish("views: initial events");
    };
    let mark_rv = bookmark.object["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or("")
        .to_string();
    t.equal(
        "the bookmark is annotated k8s.io/initial-events-end",
        bookmark.object["metadata"]["annotations"]["k8s.io/initial-events-end"].clone(),
        json!("true"),
    );
    t.check(
        "the bookmark's resourceVersion is the initial events'",
        !mark_rv.is_empty()
            && initial
                .iter()
                .all(|e| e.object["metadata"]["resourceVersion"] == mark_rv.as_str()),
        format!(
            "bookmark {mark_rv}, events {:?}",
            initial
                .iter()
                .map(|e| e.object["metadata"]["resourceVersion"].clone())
                .collect::<Vec<_>>()
        ),
    );
    // The same watch goes on with changes.
    add_membership(&admin, &p3, "u", user(&who), "Administrator", None).await?;
    let added = w
        .until("ADDED after the bookmark", WATCH_TIMEOUT, |e| {
            e.kind == "ADDED" && e.name == p3
        })
        .await;
    t.check(
        "after the bookmark: ADDED for a new membership",
        added.is_ok(),
        added
            .err()
            .and_then(|e| e.message().map(str::to_string))
            .unwrap_or_default(),
    );
    drop(w);

    // Resuming from the bookmark: only what changed since (the index history is bounded, so
    // under a heavy load the answer may be 410 instead; never the old projects again).
    let mut resumed = Watcher::start(
        &client,
        &path(
            "myprojects",
            &[
                ("watch", "true"),
                ("resourceVersion", &mark_rv),
                ("timeoutSeconds", "60"),
            ],
        ),
    )
    .await?;
    let first = resumed.next(WATCH_TIMEOUT).await;
    while resumed.next(Duration::from_millis(1500)).await.is_some() {}
    let ok = match &first {
        Some(e) if e.kind == "ERROR" => e.object["code"] == 410,
        Some(_) => {
            resumed.seen.contains(&format!("ADDED {p3}"))
                && !resumed.seen.iter().any(|s| {
                    s.starts_with("ADDED") && (s.ends_with(&p1) || s.ends_with(&p2))
                        || s.starts_with("DELETED")
                })
        }
        None => false,
    };
    t.check(
        "a watch from the bookmark's resourceVersion: ADDED for the third project only (or 410)",
        ok,
        format!("events: {:?}", resumed.seen),
    );
    eprintln!(
        "[e2e] views: resuming from the bookmark gave {:?}",
        resumed.seen
    );
    drop(resumed);

    // Too old a resourceVersion: an ERROR event with 410.
    let mut old = Watcher::start(
        &client,
        &path("myprojects", &[("watch", "true"), ("resourceVersion", "1")]),
    )
    .await?;
    let first = old.next(WATCH_TIMEOUT).await;
    t.check(
        "a watch from resourceVersion 1: an ERROR event with code 410 (Expired)",
        first.as_ref().is_some_and(|e| {
            e.kind == "ERROR"
                && e.object["code"] == 410
                && e.object["reason"] == "Expired"
                && e.object["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("too old resource version"))
        }),
        format!("{:?}", first.map(|e| (e.kind, e.object))),
    );
    drop(old);

    // sendInitialEvents needs its companions.
    let bad = get(
        &client,
        &path(
            "myprojects",
            &[
                ("watch", "true"),
                ("sendInitialEvents", "true"),
                ("resourceVersionMatch", "NotOlderThan"),
            ],
        ),
    )
    .await;
    refused(
        &mut t,
        "sendInitialEvents=true without allowWatchBookmarks",
        &bad,
        400,
        &["requires allowWatchBookmarks=true"],
    );
    t.finish("views: initial events, bookmarks, resuming")
}

// ---------------------------------------------------------------------------------------------
// 6. Terminated projects

async fn terminated_projects_are_listed_for_owners_support_and_staff_only(
    env: Arc<Env>,
) -> TestResult {
    wait_views_served(&env).await?;
    let admin = env.client().await;
    let tag = unique_name("vw-term");
    let cust = format!("{tag}-acme");
    let (gone, kept) = (format!("{tag}-gone"), format!("{tag}-kept"));
    let (owner, support, mgr, staff_user) = (
        format!("{tag}-owner"),
        format!("{tag}-support"),
        format!("{tag}-mgr"),
        format!("{tag}-platform"),
    );
    make_customer(
        &admin,
        &cust,
        json!({"owners": [user(&owner)], "support": [user(&support)],
               "terminatedProjectRetentionDays": 7}),
    )
    .await?;
    for p in [&gone, &kept] {
        make_project(&admin, p, json!({"customer": cust}), ProjectPhase::Active).await?;
    }
    add_membership(&admin, &gone, "mgr", user(&mgr), "Manager", None).await?;
    let as_owner = env.client_as(&owner, &[]).await;
    let as_support = env.client_as(&support, &[]).await;
    let as_mgr = env.client_as(&mgr, &[]).await;
    let as_staff = env.client_as(&staff_user, &[PLATFORM_GROUP]).await;
    let everything = path("myprojects", &[]);
    wait_sees(
        &as_mgr,
        &mgr,
        &everything,
        &BTreeSet::from([sees(&gone, &["Manager"], true, false)]),
    )
    .await?;

    // The owner deletes the project: it is soft-deleted (its namespace archived).
    wait_finalizer(&admin, &gone).await?;
    wait_access_named(
        &env,
        &owner,
        "delete",
        "projects.tenancy.dev",
        &gone,
        None,
        true,
    )
    .await?;
    let deleted_at = jiff::Timestamp::now();
    Api::<Project>::all(as_owner.clone())
        .delete(&gone, &DeleteParams::default())
        .await?;
    wait_project_gone(&admin, &gone).await?;
    let ns = Api::<Namespace>::all(admin.clone()).get_opt(&gone).await?;
    let state = ns
        .as_ref()
        .and_then(|n| n.labels().get("tenancy.dev/state").cloned());
    if state.as_deref() != Some("terminated") {
        return Err(
            format!("namespace {gone} is not archived: tenancy.dev/state={state:?}").into(),
        );
    }

    let terminated = path(
        "myprojects",
        &[("fieldSelector", "status.phase=Terminated")],
    );
    let staff_terminated = path(
        "myprojects",
        &[
            ("fieldSelector", "status.phase=Terminated"),
            ("labelSelector", &label_is(&cust)),
        ],
    );
    wait_sees(
        &as_owner,
        &owner,
        &terminated,
        &BTreeSet::from([sees(&gone, &["CustomerOwner"], true, false)]),
    )
    .await?;
    let mut t = Checks::default();
    let list = get(&as_owner, &terminated).await?;
    let p = item(&list, &gone).cloned().unwrap_or_default();
    let st = &p["status"]["terminated"];
    t.equal(
        "owner: status.phase",
        p["status"]["phase"].clone(),
        json!("Terminated"),
    );
    t.equal(
        "owner: status.terminated.by (who deleted it)",
        st["by"].clone(),
        json!(owner),
    );
    let at = timestamp(&st["at"]);
    let purge = timestamp(&st["purgeAfter"]);
    t.check(
        "owner: status.terminated.at is when it was deleted",
        at.is_some_and(|a| (a.as_second() - deleted_at.as_second()).abs() <= 60),
        format!("at {at:?}, deleted at {deleted_at}"),
    );
    t.check(
        "owner: status.terminated.purgeAfter is 7 days (the customer's retention) after it",
        matches!((at, purge), (Some(a), Some(p)) if p.as_second() - a.as_second() == 7 * 86400),
        format!("at {at:?}, purgeAfter {purge:?}"),
    );
    let team: Vec<(Value, Value, Value)> = st["previousTeam"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            (
                m["name"].clone(),
                m["subject"]["name"].clone(),
                m["role"].clone(),
            )
        })
        .collect();
    t.equal(
        "owner: status.terminated.previousTeam",
        team,
        vec![(json!("mgr"), json!(mgr), json!("Manager"))],
    );
    t.equal(
        "owner: its customer label",
        p["metadata"]["labels"][CUSTOMER_LABEL].clone(),
        json!(cust),
    );
    let got = get(&as_support, &terminated).await.map(|l| seen(&l));
    t.equal(
        "support lists status.phase=Terminated",
        got.map_err(|e| e.to_string()),
        Ok(BTreeSet::from([sees(
            &gone,
            &["CustomerSupport"],
            false,
            false,
        )])),
    );
    let got = get(&as_support, &terminated).await.ok();
    t.equal(
        "support sees who deleted it",
        got.as_ref()
            .and_then(|l| item(l, &gone))
            .map(|p| p["status"]["terminated"]["by"].clone()),
        Some(json!(owner)),
    );
    let got = get(&as_staff, &staff_terminated).await.map(|l| seen(&l));
    t.equal(
        "staff list status.phase=Terminated (this customer's)",
        got.map_err(|e| e.to_string()),
        Ok(BTreeSet::from([sees(&gone, &["Staff"], true, true)])),
    );
    let got = kubectl_json(
        &env,
        &[
            "get",
            "myprojects",
            "--field-selector",
            "status.phase=Terminated",
            "--as",
            &owner,
        ],
    )
    .map(|l| seen(&l));
    t.equal(
        "kubectl --field-selector status.phase=Terminated --as owner",
        got.map_err(|e| e.to_string()),
        Ok(BTreeSet::from([sees(
            &gone,
            &["CustomerOwner"],
            true,
            false,
        )])),
    );
    let text = kubectl(
        &env,
        &[
            "get",
            "myprojects",
            "--field-selector",
            "status.phase=Terminated",
            "-o",
            "wide",
            "--as",
            &owner,
        ],
    )?;
    let (columns, table_rows) = table(&text);
    let purge_col = columns.iter().position(|c| c == "PURGE AFTER");
    let phase_col = columns.iter().position(|c| c == "PHASE");
    let row = table_rows.first().cloned().unwrap_or_default();
    t.check(
        "kubectl -o wide: PHASE Terminated and PURGE AFTER filled",
        table_rows.len() == 1
            && phase_col.and_then(|i| row.get(i)).map(String::as_str) == Some("Terminated")
            && purge_col
                .and_then(|i| row.get(i))
                .and_then(|v| v.parse::<jiff::Timestamp>().ok())
                == purge,
        text.clone(),
    );

    // The owner of another customer may ask for terminated projects, and sees none of these.
    let stranger_owner = format!("{tag}-other-owner");
    make_customer(
        &admin,
        &format!("{tag}-other"),
        json!({"owners": [user(&stranger_owner)]}),
    )
    .await?;
    let as_other = env.client_as(&stranger_owner, &[]).await;
    eventually(
        "the other customer's owner may list terminated projects",
        || async {
            match get(&as_other, &terminated).await {
                Ok(l) => {
                    let n = names(&l);
                    if n.is_empty() {
                        Ok(())
                    } else {
                        Err(format!("lists {n:?}"))
                    }
                }
                Err(e) => Err(e.to_string()),
            }
        },
    )
    .await?;
    let got = get(
        &as_other,
        &path("myprojects", &[("fieldSelector", "includeTerminated=true")]),
    )
    .await
    .map(|l| names(&l));
    t.equal(
        "another customer's owner: includeTerminated=true lists none of this customer's",
        got.map_err(|e| e.to_string()),
        Ok(Vec::new()),
    );
    let stderr = kubectl_fails(&env, &["get", "myprojects", &gone, "--as", &stranger_owner])?;
    t.check(
        "kubectl get myprojects <deleted> --as another customer's owner: NotFound",
        stderr.contains("(NotFound)"),
        stderr,
    );

    // The former manager holds no customer role: terminated projects are refused outright.
    let forbidden = "terminated projects are listed only for staff and for the owners and support of their customer";
    for selector in ["includeTerminated=true", "status.phase=Terminated"] {
        refused(
            &mut t,
            &format!("former manager: {selector}"),
            &get(&as_mgr, &path("myprojects", &[("fieldSelector", selector)])).await,
            403,
            &[forbidden],
        );
    }
    let stderr = kubectl_fails(
        &env,
        &[
            "get",
            "myprojects",
            "--field-selector",
            "includeTerminated=true",
            "--as",
            &mgr,
        ],
    )?;
    t.check(
        "kubectl --field-selector includeTerminated=true --as former manager: Forbidden",
        stderr.contains("Forbidden") && stderr.contains(forbidden),
        stderr,
    );
    // Without asking for them, nobody lists it.
    for (who, client, p, want) in [
        (
            &owner,
            &as_owner,
            &everything,
            sees(&kept, &["CustomerOwner"], true, false),
        ),
        (
            &support,
            &as_support,
            &everything,
            sees(&kept, &["CustomerSupport"], false, false),
        ),
        (
            &staff_user,
            &as_staff,
            &path("myprojects", &[("labelSelector", &label_is(&cust))]),
            sees(&kept, &["Staff"], true, true),
        ),
    ] {
        let got = get(client, p).await.map(|l| seen(&l));
        t.equal(
            &format!("{who} lists without a selector: the live project only"),
            got.map_err(|e| e.to_string()),
            Ok(BTreeSet::from([want])),
        );
    }
    let got = get(&as_mgr, &everything).await.map(|l| names(&l));
    t.equal(
        "former manager lists nothing",
        got.map_err(|e| e.to_string()),
        Ok(Vec::new()),
    );
    let got = get(
        &as_owner,
        &path("myprojects", &[("fieldSelector", "includeTerminated=true")]),
    )
    .await
    .map(|l| {
        l["items"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| {
                format!(
                    "{} {}",
                    p["metadata"]["name"].as_str().unwrap_or("?"),
                    p["status"]["phase"].as_str().unwrap_or("?")
                )
            })
            .collect::<Vec<_>>()
    });
    t.equal(
        "owner: includeTerminated=true lists both",
        got.map_err(|e| e.to_string()),
        Ok(vec![format!("{gone} Terminated"), format!("{kept} Active")]),
    );
    let stderr = kubectl_fails(&env, &["get", "myprojects", &gone, "--as", &mgr])?;
    t.check(
        "kubectl get myprojects <deleted> --as former manager: NotFound",
        stderr.contains("(NotFound)"),
        stderr,
    );

    // Recovered with invitations: live again; the former manager is invited (Pending), which
    // shows no project until accepted.
    Api::<Project>::all(admin.clone())
        .create(
            &pp(),
            &project(
                &gone,
                json!({"customer": cust, "recovery": {"sendInvitationsToPreviousMembers": true}}),
            ),
        )
        .await?;
    wait_project(&admin, &gone, "phase Active after the recovery", |p| {
        (phase_of(p) == Some(ProjectPhase::Active)).then_some(())
    })
    .await?;
    let members_of_gone = path("members", &[("fieldSelector", &format!("project={gone}"))]);
    wait_members(
        &as_owner,
        &owner,
        &members_of_gone,
        &rows(&[&format!("project.{gone}.mgr Manager Pending")]),
    )
    .await?;
    let phase = Api::<ProjectMembership>::namespaced(admin.clone(), &gone)
        .get("mgr")
        .await?
        .status
        .and_then(|s| s.phase);
    t.equal(
        "the recovered membership itself is Pending",
        phase,
        Some(MembershipPhase::Pending),
    );
    let no_terminated = eventually(
        "after the recovery the owner lists no terminated project",
        || async {
            let got = get(&as_owner, &terminated).await.map(|l| names(&l));
            match got {
                Ok(n) if n.is_empty() => Ok(()),
                other => Err(format!("got {other:?}")),
            }
        },
    )
    .await;
    t.check(
        "after the recovery the owner lists no terminated project",
        no_terminated.is_ok(),
        no_terminated
            .err()
            .and_then(|e| e.message().map(str::to_string))
            .unwrap_or_default(),
    );
    let got = get(&as_owner, &everything).await.map(|l| names(&l));
    t.equal(
        "after the recovery the owner lists both live projects",
        got.map_err(|e| e.to_string()),
        Ok(vec![gone.clone(), kept.clone()]),
    );
    let got = get(&as_mgr, &everything).await.map(|l| names(&l));
    t.equal(
        "the invited former manager lists nothing while the invitation is pending",
        got.map_err(|e| e.to_string()),
        Ok(Vec::new()),
    );
    t.finish("views: terminated projects")
}

// ---------------------------------------------------------------------------------------------
// 7. Members

async fn members_lists_the_role_holders_a_user_may_see_with_their_phases(
    env: Arc<Env>,
) -> TestResult {
    wait_views_served(&env).await?;
    let admin = env.client().await;
    let tag = unique_name("vw-members");
    let u = |n: &str| format!("{tag}-{n}");
    let (cust, proj, quiet) = (u("acme"), u("lab"), u("quiet"));
    let (owner, support, helpdesk, desk_user, mgr, past, stranger) = (
        u("owner"),
        u("support"),
        u("helpdesk"),
        u("desk"),
        u("mgr"),
        u("past"),
        u("stranger"),
    );
    make_customer(
        &admin,
        &cust,
        json!({"owners": [user(&owner)], "support": [user(&support), group(&helpdesk)]}),
    )
    .await?;
    for p in [&proj, &quiet] {
        make_project(&admin, p, json!({"customer": cust}), ProjectPhase::Active).await?;
    }
    let past_time = seconds_from_now(-3600);
    add_membership(&admin, &proj, "mgr", user(&mgr), "Manager", None).await?;
    add_membership(
        &admin,
        &proj,
        "past",
        user(&past),
        "Member",
        Some(&past_time),
    )
    .await?;
    add_membership(
        &admin,
        &proj,
        "bot",
        json!({"kind": "ServiceAccount", "name": "bot", "namespace": proj}),
        "Administrator",
        None,
    )
    .await?;

    let owner_item = customer_member(&cust, "owner", SubjectKind::User, &owner);
    let support_item = customer_member(&cust, "support", SubjectKind::User, &support);
    let desk_item = customer_member(&cust, "support", SubjectKind::Group, &helpdesk);
    let customer_rows = rows(&[
        &format!("{owner_item} CustomerOwner Active"),
        &format!("{support_item} CustomerSupport Active"),
        &format!("{desk_item} CustomerSupport Active"),
    ]);
    let project_rows = rows(&[
        &format!("project.{proj}.mgr Manager Active"),
        &format!("project.{proj}.past Member Expired"),
        &format!("project.{proj}.bot Administrator Active"),
    ]);
    let as_owner = env.client_as(&owner, &[]).await;
    let of_project = path("members", &[("fieldSelector", &format!("project={proj}"))]);
    wait_members(&as_owner, &owner, &of_project, &project_rows).await?;

    let mut t = Checks::default();
    let all: BTreeSet<String> = customer_rows.union(&project_rows).cloned().collect();
    let list = |client: Client, p: String| async move {
        get(&client, &p)
            .await
            .map(|l| member_rows(&l))
            .map_err(|e| e.to_string())
    };
    let field = |f: &str| path("members", &[("fieldSelector", f)]);
    let as_mgr = env.client_as(&mgr, &[]).await;
    let as_desk = env.client_as(&desk_user, &[&helpdesk]).await;
    let as_stranger = env.client_as(&stranger, &[]).await;
    let as_past = env.client_as(&past, &[]).await;
    let cases: Vec<(&str, Client, String, BTreeSet<String>)> = vec![
        (
            "owner: customer=<c>",
            as_owner.clone(),
            field(&format!("customer={cust}")),
            customer_rows.clone(),
        ),
        (
            "owner: project=<p>",
            as_owner.clone(),
            of_project.clone(),
            project_rows.clone(),
        ),
        (
            "owner: everything",
            as_owner.clone(),
            path("members", &[]),
            all.clone(),
        ),
        (
            "owner: project=<a project without memberships>",
            as_owner.clone(),
            field(&format!("project={quiet}")),
            BTreeSet::new(),
        ),
        (
            "owner: phase=Expired",
            as_owner.clone(),
            field("phase=Expired"),
            rows(&[&format!("project.{proj}.past Member Expired")]),
        ),
        (
            "owner: role=Manager",
            as_owner.clone(),
            field("role=Manager"),
            rows(&[&format!("project.{proj}.mgr Manager Active")]),
        ),
        (
            "owner: subject.name=<mgr>",
            as_owner.clone(),
            field(&format!("subject.name={mgr}")),
            rows(&[&format!("project.{proj}.mgr Manager Active")]),
        ),
        (
            "owner: subject.kind=ServiceAccount",
            as_owner.clone(),
            field("subject.kind=ServiceAccount"),
            rows(&[&format!("project.{proj}.bot Administrator Active")]),
        ),
        (
            "owner: expiresBefore=<now>",
            as_owner.clone(),
            field(&format!("expiresBefore={}", seconds_from_now(0))),
            rows(&[&format!("project.{proj}.past Member Expired")]),
        ),
        (
            "owner: label tenancy.dev/project=<p>",
            as_owner.clone(),
            path(
                "members",
                &[("labelSelector", &format!("tenancy.dev/project={proj}"))],
            ),
            project_rows.clone(),
        ),
        (
            "support group member: everything",
            as_desk,
            path("members", &[]),
            all.clone(),
        ),
        (
            "manager: everything (their project's, not the customer's)",
            as_mgr.clone(),
            path("members", &[]),
            project_rows.clone(),
        ),
        (
            "manager: customer=<c>",
            as_mgr.clone(),
            field(&format!("customer={cust}")),
            BTreeSet::new(),
        ),
        (
            "expired member: everything",
            as_past,
            path("members", &[]),
            BTreeSet::new(),
        ),
        (
            "stranger: everything",
            as_stranger.clone(),
            path("members", &[]),
            BTreeSet::new(),
        ),
        (
            "stranger: project=<p>",
            as_stranger.clone(),
            of_project.clone(),
            BTreeSet::new(),
        ),
    ];
    for (what, client, p, want) in cases {
        let got = list(client, p).await;
        t.equal(what, got, Ok(want));
    }
    // A watch of the project's role holders: a new membership comes and goes.
    let mut w = Watcher::start(
        &as_owner,
        &path(
            "members",
            &[
                ("watch", "true"),
                ("fieldSelector", &format!("project={proj}")),
                ("timeoutSeconds", "120"),
            ],
        ),
    )
    .await?;
    let mut initial = Vec::new();
    for _ in 0..project_rows.len() {
        match w.next(WATCH_TIMEOUT).await {
            Some(e) => initial.push(format!("{} {}", e.kind, e.name)),
            None => break,
        }
    }
    initial.sort();
    t.equal(
        "members watch: ADDED for each of the project's role holders first",
        initial,
        vec![
            format!("ADDED project.{proj}.bot"),
            format!("ADDED project.{proj}.mgr"),
            format!("ADDED project.{proj}.past"),
        ],
    );
    let newcomer = format!("project.{proj}.new");
    add_membership(&admin, &proj, "new", user(&u("new")), "Member", None).await?;
    let added = w
        .until(
            "members watch: ADDED for a new membership",
            WATCH_TIMEOUT,
            |e| e.kind == "ADDED" && e.name == newcomer,
        )
        .await;
    t.check(
        "members watch: ADDED for a new membership, Member and Active",
        added.as_ref().is_ok_and(|e| {
            e.object["role"] == "Member"
                && e.object["phase"] == "Active"
                && e.object["subject"]["name"] == u("new").as_str()
        }),
        format!(
            "{:?}",
            added
                .map(|e| e.object)
                .map_err(|e| e.message().map(str::to_string))
        ),
    );
    Api::<ProjectMembership>::namespaced(admin.clone(), &proj)
        .delete("new", &DeleteParams::default())
        .await?;
    let deleted = w
        .until(
            "members watch: DELETED for the deleted membership",
            WATCH_TIMEOUT,
            |e| e.kind == "DELETED" && e.name == newcomer,
        )
        .await;
    t.check(
        "members watch: DELETED for the deleted membership",
        deleted.is_ok(),
        deleted
            .err()
            .and_then(|e| e.message().map(str::to_string))
            .unwrap_or_default(),
    );
    let others: Vec<&String> = w
        .seen
        .iter()
        .filter(|e| !e.contains(&format!("project.{proj}.")))
        .collect();
    t.check(
        "members watch: nothing outside the selection",
        others.is_empty(),
        format!("{others:?}"),
    );
    drop(w);

    // What an item says.
    let listed = get(&as_owner, &of_project).await?;
    let past_item = item(&listed, &format!("project.{proj}.past"))
        .cloned()
        .unwrap_or_default();
    t.equal(
        "the expired membership's item: subject, scope, customer, expirationTime",
        (
            past_item["subject"].clone(),
            past_item["scope"].clone(),
            past_item["customer"].clone(),
            timestamp(&past_item["expirationTime"]).map(rfc3339),
        ),
        (
            json!({"kind": "User", "name": past}),
            json!({"kind": "Project", "name": proj}),
            json!(cust),
            Some(past_time.clone()),
        ),
    );
    let mut supported = vec!["field selector \"owner\" is not supported for members; supported:"];
    supported.extend(MEMBER_FIELDS);
    refused(
        &mut t,
        "members: an unknown field selector",
        &get(&as_owner, &field("owner=olga")).await,
        400,
        &supported,
    );
    // kubectl: the stranger's empty list, and the owner's table.
    let got = kubectl_json(&env, &["get", "members", "--as", &stranger]).map(|l| names(&l));
    t.equal(
        "kubectl get members --as stranger: an empty list",
        got.map_err(|e| e.to_string()),
        Ok(Vec::new()),
    );
    let text = kubectl(
        &env,
        &[
            "get",
            "members",
            "--field-selector",
            &format!("project={proj}"),
            "--as",
            &owner,
        ],
    )?;
    let (columns, table_rows) = table(&text);
    t.equal(
        "kubectl get members: columns",
        columns,
        ["NAME", "SUBJECT", "ROLE", "SCOPE", "EXPIRES", "PHASE"]
            .map(String::from)
            .to_vec(),
    );
    let cells: BTreeSet<String> = table_rows.iter().map(|r| r.join(" | ")).collect();
    let want: BTreeSet<String> = [
        format!("project.{proj}.bot | ServiceAccount/{proj}/bot | Administrator | Project/{proj} | never | Active"),
        format!("project.{proj}.mgr | User/{mgr} | Manager | Project/{proj} | never | Active"),
        format!("project.{proj}.past | User/{past} | Member | Project/{proj} | {past_time} | Expired"),
    ]
    .into_iter()
    .collect();
    t.check(
        "kubectl get members --field-selector project=<p> --as owner: rows",
        cells == want,
        format!("expected {want:?}, got {cells:?}\n{text}"),
    );
    t.finish("views: members")
}

// ---------------------------------------------------------------------------------------------
// 8. Identity headers

/// A client straight to the operator's HTTPS port (not through kube-apiserver), presenting the
/// client certificate of `kubeconfig`'s user or of the given files, if any.
async fn direct_client(env: &Env, cert: ClientCert) -> Result<Client, Failed> {
    let url = format!("https://127.0.0.1:{}", env.local().webhook_port);
    let mut config = match cert {
        ClientCert::Kubeconfig(ref path) => {
            let kubeconfig = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| format!("reading {}: {e}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
                .await
                .map_err(|e| format!("{}: {e}", path.display()))?
        }
        _ => kube::Config::new(url.parse().expect("a URL")),
    };
    config.cluster_url = url.parse().expect("a URL");
    config.root_cert = None;
    config.accept_invalid_certs = true;
    config.connect_timeout = Some(Duration::from_secs(5));
    config.read_timeout = Some(Duration::from_secs(15));
    config.auth_info.impersonate = None;
    config.auth_info.impersonate_groups = None;
    if let ClientCert::Files(cert, key) = cert {
        config.auth_info.client_certificate = Some(cert.display().to_string());
        config.auth_info.client_key = Some(key.display().to_string());
    }
    Ok(Client::try_from(config)?)
}

/// An error and its sources, one after the other.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(&format!(": {s}"));
        source = s.source();
    }
    out
}

enum ClientCert {
    None,
    Files(std::path::PathBuf, std::path::PathBuf),
    Kubeconfig(std::path::PathBuf),
}

/// GET `path` on `client` with the front proxy's identity headers.
async fn get_with_headers(
    client: &Client,
    path: &str,
    user: &str,
    groups: &[&str],
) -> Result<Value, kube::Error> {
    let mut request = http::Request::get(path).header("X-Remote-User", user);
    for g in groups {
        request = request.header("X-Remote-Group", *g);
    }
    let text = client
        .request_text(request.body(Vec::new()).expect("a request"))
        .await?;
    serde_json::from_str(&text).map_err(kube::Error::SerdeError)
}

async fn identity_headers_are_trusted_only_from_the_front_proxy_certificate(
    env: Arc<Env>,
) -> TestResult {
    wait_views_served(&env).await?;
    let admin = env.client().await;
    let tag = unique_name("vw-forge");
    let cust = format!("{tag}-acme");
    let proj = format!("{tag}-lab");
    let member = format!("{tag}-member");
    make_customer(&admin, &cust, json!({})).await?;
    make_project(
        &admin,
        &proj,
        json!({"customer": cust}),
        ProjectPhase::Active,
    )
    .await?;
    add_membership(&admin, &proj, "m", user(&member), "Member", None).await?;
    let as_member = env.client_as(&member, &[]).await;
    wait_sees(
        &as_member,
        &member,
        &path("myprojects", &[]),
        &BTreeSet::from([sees(&proj, &["Member"], false, false)]),
    )
    .await?;

    let pki = env.cluster().dir().join("pki");
    let everything = path("myprojects", &[]);
    let mut t = Checks::default();

    // The control: kube-apiserver's own front-proxy client certificate is believed.
    let proxy = direct_client(
        &env,
        ClientCert::Files(
            pki.join("front-proxy-client.crt"),
            pki.join("front-proxy-client.key"),
        ),
    )
    .await?;
    let got = get_with_headers(&proxy, &everything, &member, &["system:authenticated"])
        .await
        .map(|l| seen(&l));
    t.equal(
        "control: the front proxy's certificate with X-Remote-User <member>",
        got.map_err(|e| e.to_string()),
        Ok(BTreeSet::from([sees(&proj, &["Member"], false, false)])),
    );

    // The operator authorizes too (a SubjectAccessReview): a user RBAC gives nothing to (no
    // system:authenticated) is refused, even from the front proxy.
    let nobody = format!("{tag}-nobody");
    refused(
        &mut t,
        "the front proxy's certificate, a user without groups: 403 from the operator",
        &get_with_headers(&proxy, &everything, &nobody, &[]).await,
        403,
        &[&format!(
            "User \"{nobody}\" cannot list resource \"myprojects\" in API group \"views.tenancy.dev\""
        )],
    );
    let request = http::Request::get(&everything)
        .body(Vec::new())
        .expect("a request");
    let unnamed = proxy
        .request_text(request)
        .await
        .and_then(|t| serde_json::from_str::<Value>(&t).map_err(kube::Error::SerdeError));
    refused(
        &mut t,
        "the front proxy's certificate naming no user",
        &unnamed,
        401,
        &["the front proxy named no user"],
    );

    // Through kube-apiserver, headers a user adds are replaced by who they are.
    let as_stranger = env.client_as(&format!("{tag}-stranger"), &[]).await;
    let got = get_with_headers(&as_stranger, &everything, &member, &["system:masters"])
        .await
        .map(|l| seen(&l));
    t.equal(
        "a stranger sending X-Remote-User <member>, X-Remote-Group system:masters through kube-apiserver: their own (empty) list",
        got.map_err(|e| e.to_string()),
        Ok(BTreeSet::new()),
    );

    // Forged: no client certificate.
    let bare = direct_client(&env, ClientCert::None).await?;
    let forged = get_with_headers(&bare, &everything, "admin", &["system:masters"]).await;
    refused(
        &mut t,
        "no client certificate, X-Remote-User admin, X-Remote-Group system:masters",
        &forged,
        401,
        &["no client certificate from the front proxy"],
    );
    let forged = get_with_headers(&bare, &everything, &member, &["system:authenticated"]).await;
    refused(
        &mut t,
        "no client certificate, X-Remote-User <member>",
        &forged,
        401,
        &["no client certificate"],
    );
    let forged = get_with_headers(&bare, GROUP_VERSION, "admin", &["system:masters"]).await;
    refused(
        &mut t,
        "no client certificate: discovery",
        &forged,
        401,
        &[],
    );

    // Forged: a certificate of the cluster CA (the admin's, and one named like the front proxy).
    let not_believed = |result: &Result<Value, kube::Error>| -> (bool, String) {
        match result {
            Ok(v) => (false, format!("answered: {v}")),
            Err(kube::Error::Api(s)) => (s.code == 401, format!("HTTP {}: {}", s.code, s.message)),
            // The same client reaches the operator with the front proxy's certificate (the
            // control above): a connection that fails here fails for its certificate (the
            // server's TLS alert, or the connection it closed).
            Err(e) => (true, format!("refused before HTTP: {}", error_chain(e))),
        }
    };
    let admin_cert = direct_client(
        &env,
        ClientCert::Files(pki.join("admin.crt"), pki.join("admin.key")),
    )
    .await?;
    let result = get_with_headers(&admin_cert, &everything, "admin", &["system:masters"]).await;
    let (ok, detail) = not_believed(&result);
    t.check(
        "the cluster admin's certificate (cluster CA) with X-Remote-User admin: handshake refused or 401",
        ok,
        detail.clone(),
    );
    eprintln!("[e2e] views: the admin's certificate straight to the operator: {detail}");
    let lookalike = env
        .cluster()
        .kubeconfig_for(tenancy_operator::devcluster::FRONT_PROXY_CLIENT, &[])
        .map_err(|e| e.to_string())?;
    // kube-apiserver knows the lookalike as user front-proxy-client (authenticated, then
    // refused by RBAC): its certificate is a good one, of the cluster CA.
    let to_apiserver = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(&lookalike).map_err(|e| e.to_string())?,
        &Default::default(),
    )
    .await
    .map_err(|e| e.to_string())?;
    let known = Api::<Namespace>::all(Client::try_from(to_apiserver)?)
        .list(&Default::default())
        .await;
    let (code, message) = match &known {
        Ok(_) => (200, String::new()),
        Err(e) => refusal(e),
    };
    t.check(
        "control: kube-apiserver authenticates the lookalike certificate as front-proxy-client",
        code == 403 && message.contains("User \"front-proxy-client\" cannot list"),
        format!("HTTP {code}: {message}"),
    );
    let lookalike = direct_client(&env, ClientCert::Kubeconfig(lookalike)).await?;
    let result = get_with_headers(&lookalike, &everything, "admin", &["system:masters"]).await;
    let (ok, detail) = not_believed(&result);
    t.check(
        "a cluster-CA certificate with CN front-proxy-client: handshake refused or 401",
        ok,
        detail.clone(),
    );
    eprintln!("[e2e] views: a cluster-CA front-proxy-client lookalike: {detail}");
    t.finish("views: identity headers")
}

// ---------------------------------------------------------------------------------------------
// 9. RBAC in kube-apiserver

async fn kube_apiserver_rbac_lets_every_authenticated_user_read_and_nobody_write(
    env: Arc<Env>,
) -> TestResult {
    wait_views_served(&env).await?;
    let who = unique_name("vw-rbac-user");
    let mut t = Checks::default();
    for (verb, resource, want) in [
        ("list", "myprojects.views.tenancy.dev", true),
        ("get", "myprojects.views.tenancy.dev", true),
        ("watch", "myprojects.views.tenancy.dev", true),
        ("list", "members.views.tenancy.dev", true),
        ("watch", "members.views.tenancy.dev", true),
        ("create", "myprojects.views.tenancy.dev", false),
        ("update", "myprojects.views.tenancy.dev", false),
        ("delete", "myprojects.views.tenancy.dev", false),
        ("deletecollection", "members.views.tenancy.dev", false),
        ("list", "usage.views.tenancy.dev", true),
        ("get", "usage.views.tenancy.dev", true),
        ("create", "usage.views.tenancy.dev", false),
        ("delete", "usage.views.tenancy.dev", false),
        // The records themselves: the operator's and staff's, not a tenant's.
        ("get", "projectusages.tenancy.dev", false),
        ("list", "projectusages.tenancy.dev", false),
        ("create", "projectusages.tenancy.dev", false),
    ] {
        let can = env
            .can_i(&who, &["system:authenticated"], verb, resource, None)
            .await;
        t.equal(
            &format!(
                "an authenticated user {} {verb} {resource}",
                if want { "may" } else { "may not" }
            ),
            can,
            want,
        );
    }
    // The grant is to system:authenticated, nobody by name.
    let can = env
        .can_i(&who, &[], "list", "myprojects.views.tenancy.dev", None)
        .await;
    t.equal(
        "without system:authenticated: may not list myprojects",
        can,
        false,
    );

    // A write is refused by kube-apiserver's RBAC before it reaches the operator…
    let raw = format!("{GROUP_VERSION}/myprojects");
    let stderr = env.kubectl_with_input(
        &["create", "--raw", &raw, "-f", "-", "--as", &who],
        Some(r#"{"apiVersion":"views.tenancy.dev/v1alpha1","kind":"MyProject","metadata":{"name":"x"}}"#),
    );
    let text = String::from_utf8_lossy(&stderr.stderr).to_string();
    t.check(
        "kubectl create --raw myprojects --as user: Forbidden by RBAC",
        !stderr.status.success()
            && text.contains("Forbidden")
            && text.contains(&format!("User \"{who}\" cannot create resource \"myprojects\" in API group \"views.tenancy.dev\" at the cluster scope")),
        text,
    );
    // …and one RBAC lets through (system:masters) is refused by the operator: it is read-only.
    let out = env.kubectl_with_input(
        &["create", "--raw", &raw, "-f", "-"],
        Some(r#"{"apiVersion":"views.tenancy.dev/v1alpha1","kind":"MyProject","metadata":{"name":"x"}}"#),
    );
    let text = String::from_utf8_lossy(&out.stderr).to_string();
    t.check(
        "kubectl create --raw myprojects as the admin: MethodNotAllowed, read-only",
        !out.status.success() && text.contains("read-only"),
        text,
    );
    // The discovery kubectl uses lists both resources with their verbs.
    let out = kubectl(
        &env,
        &[
            "api-resources",
            "--api-group=views.tenancy.dev",
            "-o",
            "wide",
        ],
    )?;
    let (columns, table_rows) = table(&out);
    let verbs = columns.iter().position(|c| c == "VERBS");
    let found: BTreeMap<String, String> = table_rows
        .iter()
        .map(|r| {
            (
                r[0].clone(),
                verbs
                    .and_then(|i| r.get(i))
                    .map(|v| {
                        v.trim_matches(|c| c == '[' || c == ']')
                            .split([',', ' '])
                            .filter(|v| !v.is_empty())
                            .collect::<Vec<_>>()
                            .join(",")
                    })
                    .unwrap_or_default(),
            )
        })
        .collect();
    t.equal(
        "kubectl api-resources --api-group=views.tenancy.dev",
        found,
        BTreeMap::from([
            ("checklistevaluations".to_string(), "create".to_string()),
            ("members".to_string(), "list,watch".to_string()),
            ("myprojects".to_string(), "get,list,watch".to_string()),
            ("usage".to_string(), "get,list".to_string()),
        ]),
    );
    t.finish("views: RBAC")
}
