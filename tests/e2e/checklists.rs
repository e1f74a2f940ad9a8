//! Creation checklists (issue 12) as users meet them: a customer's owner creates projects that
//! answer the example checklist (`examples/05-checklist.yaml`, renamed per trial), staff review
//! the answers that need it, and nobody else writes checklists or decisions.
//!
//! Every trial makes its own Checklist (cluster-scoped), customer, users and projects (unique
//! names), so it runs alongside the rest of the suite. Owners are impersonated users; staff are
//! a user in the group `tenancy:staff` (staff by `--staff-groups`) whom a ClusterRoleBinding of
//! the trial gives RBAC. What is asserted is what a user notices: the HTTP code and message of a
//! refusal, the warnings `kubectl` prints, the stored objects' status and annotations, whether a
//! namespace exists and access as the apiserver's authorizer answers a SubjectAccessReview. A
//! negative check (no namespace, no access) comes only after the operator is shown to have
//! processed the project's latest generation, and a few seconds later.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, Namespace};
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use kube::api::{Api, DeleteParams, ListParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use tenancy_operator::api::project::{ChecklistState, ReviewDecision};
use tenancy_operator::api::{Checklist, Customer, Project, ProjectPhase};
use tenancy_operator::desired::checklist::{Answers, digest};
use tenancy_operator::devcluster::apply::parse_documents;

use crate::support::{
    Checks, Env, Expectation, Failed, RECONCILE_TIMEOUT, TestResult, Trial, customer, examples_dir,
    from_json, merge, patch_params, pp, project, refusal, trial, unique_name, wait_access,
    wait_for, wait_project, wait_project_gone,
};

pub fn trials(env: &Arc<Env>) -> Vec<Trial> {
    vec![
        trial(
            env,
            "checklists::status_lists_the_initially_visible_questions_and_follows_changes",
            status_lists_the_initially_visible_questions,
        ),
        trial(
            env,
            "checklists::checklists_that_cannot_work_are_refused_naming_the_field",
            checklists_that_cannot_work_are_refused,
        ),
        trial(
            env,
            "checklists::only_staff_write_checklists_and_attach_them",
            only_staff_write_checklists,
        ),
        trial(
            env,
            "checklists::answers_that_do_not_fit_are_refused_naming_the_question",
            answers_that_do_not_fit_are_refused,
        ),
        trial(
            env,
            "checklists::a_follow_up_with_or_is_asked_for_either_answer",
            a_follow_up_with_or_is_asked_for_either_answer,
        ),
        trial(
            env,
            "checklists::guidance_comes_back_as_kubectl_warnings",
            guidance_comes_back_as_kubectl_warnings,
        ),
        trial(
            env,
            "checklists::answers_needing_review_wait_for_staff_approval",
            answers_needing_review_wait_for_staff_approval,
        ),
        trial(
            env,
            "checklists::rejected_answers_keep_the_project_out",
            rejected_answers_keep_the_project_out,
        ),
    ]
}

/// The example this module answers.
const EXAMPLE: &str = "05-checklist.yaml";
/// What the tenancy objects' webhook's denials start with (the apiserver's wording).
const VALIDATE: &str = "admission webhook \"validate.tenancy.dev\" denied the request";
/// The group the suite's operator counts as staff (`--staff-groups`).
const STAFF_GROUP: &str = "tenancy:staff";
/// The group kube-apiserver adds to every authenticated request (a SubjectAccessReview is
/// answered for the groups it names, so access that every user has needs it named).
const AUTHENTICATED: &str = "system:authenticated";

// The example's questions, as the tests name them.
const PERSONAL: (&str, &str) = ("personal-data", "Will the project process personal data?");
const CATEGORIES: (&str, &str) = ("data-categories", "Which categories of personal data?");
const CONSENT: (&str, &str) = (
    "genetic-consent",
    "How did the data subjects consent to the use of their genetic data?",
);
const SUBJECTS: (&str, &str) = ("data-subjects", "How many data subjects?");
const EXPORT: (&str, &str) = ("export-control", "Is any of the work export-controlled?");
const LICENCE: (&str, &str) = ("export-licence", "Export licence number");
const ETHICS: (&str, &str) = ("ethics-approval", "Ethics approval");

// ---------------------------------------------------------------------------------------------
// Expectations: rows of requests, collected so that one run reports every misbehaving row

enum Expect {
    /// The request succeeds.
    Allowed,
    /// Refused with this code (by whichever layer: schema, CEL, RBAC or a webhook), the
    /// message holding every text.
    Refused(u16, Vec<String>),
    /// Refused by the tenancy webhook with this code, the message holding every text.
    Hook(u16, Vec<String>),
}

impl std::fmt::Debug for Expect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Expect::Allowed => write!(f, "allowed"),
            Expect::Refused(code, texts) => write!(f, "HTTP {code} naming {texts:?}"),
            Expect::Hook(code, texts) => {
                write!(f, "HTTP {code} from the tenancy webhook naming {texts:?}")
            }
        }
    }
}

/// 422 naming the answer's field and, when given, the question's description.
fn invalid_answer(q: (&str, &str)) -> Expect {
    Expect::Hook(
        422,
        vec![format!("spec.checklistAnswers.{}", q.0), q.1.to_string()],
    )
}

impl Expectation for Expect {
    fn met(&self, code: u16, message: &str) -> bool {
        match self {
            Expect::Allowed => code == 200,
            Expect::Refused(want, texts) => {
                code == *want && texts.iter().all(|t| message.contains(t.as_str()))
            }
            Expect::Hook(want, texts) => {
                code == *want
                    && message.contains(VALIDATE)
                    && texts.iter().all(|t| message.contains(t.as_str()))
            }
        }
    }
}

fn texts(t: &[&str]) -> Vec<String> {
    t.iter().map(|s| s.to_string()).collect()
}

// ---------------------------------------------------------------------------------------------
// A world: the example's checklist, customer and owner under a unique tag; a staff reviewer

struct World {
    admin: Client,
    tag: String,
    checklist: String,
    customer: String,
    owner: String,
    /// The example's project: it answers without needing a review.
    survey: String,
    /// The example project's answers.
    answers: Value,
    /// Staff (group tenancy:staff), with cluster-admin RBAC from a binding of the trial.
    reviewer: String,
    /// Not staff, with the very same RBAC as the reviewer.
    ops: String,
}

impl World {
    fn name(&self, n: &str) -> String {
        format!("{}-{n}", self.tag)
    }

    /// A Project of the world's customer with these answers.
    fn project(&self, name: &str, answers: Value) -> Project {
        project(
            name,
            json!({"customer": self.customer, "checklistAnswers": answers}),
        )
    }

    /// The example's answers with `changes` merged in (a null removes an answer).
    fn answers_with(&self, changes: Value) -> Value {
        let mut out = self.answers.clone();
        if let (Some(out), Some(changes)) = (out.as_object_mut(), changes.as_object()) {
            for (k, v) in changes {
                if v.is_null() {
                    out.remove(k);
                } else {
                    out.insert(k.clone(), v.clone());
                }
            }
        }
        out
    }
}

/// The example's documents with `example-` names under `tag` and its owner `<tag>-owner`.
fn example_docs(tag: &str) -> Result<Vec<Value>, Failed> {
    let text = std::fs::read_to_string(examples_dir().join(EXAMPLE))?
        .replace("judy@example.com", &format!("{tag}-owner"))
        .replace("example-", &format!("{tag}-"));
    Ok(parse_documents(&text)
        .map_err(|e| format!("{EXAMPLE}: {e}"))?
        .into_iter()
        .map(|d| serde_json::to_value(d).unwrap_or_default())
        .collect())
}

fn name_of(doc: &Value) -> String {
    doc["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Gives `user` cluster-admin through the ClusterRoleBinding `name`.
async fn bind_cluster_admin(admin: &Client, name: &str, user: &str) -> TestResult {
    Api::<ClusterRoleBinding>::all(admin.clone())
        .create(
            &pp(),
            &from_json(json!({
                "metadata": {"name": name},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
                "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
            })),
        )
        .await?;
    Ok(())
}

/// Staff create the example's checklist and customer (renamed under a unique tag); the reviewer
/// and the non-staff ops user get their RBAC; returns once the operator has written the
/// checklist's status and the owner may create projects.
async fn world(env: &Env, tag: String) -> Result<World, Failed> {
    let admin = env.client().await;
    let docs = example_docs(&tag)?;
    let find = |kind: &str| {
        docs.iter()
            .find(|d| d["kind"] == kind)
            .cloned()
            .ok_or_else(|| format!("{EXAMPLE} has no {kind}"))
    };
    let (checklist, customer_doc, survey) =
        (find("Checklist")?, find("Customer")?, find("Project")?);
    let w = World {
        admin: admin.clone(),
        checklist: name_of(&checklist),
        customer: name_of(&customer_doc),
        owner: customer_doc["spec"]["owners"][0]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        survey: name_of(&survey),
        answers: survey["spec"]["checklistAnswers"].clone(),
        reviewer: format!("{tag}-reviewer"),
        ops: format!("{tag}-ops"),
        tag,
    };
    if survey["spec"]["customer"] != w.customer.as_str()
        || customer_doc["spec"]["projectChecklist"] != w.checklist.as_str()
    {
        return Err(format!(
            "{EXAMPLE}: its Project should belong to its Customer, which names its Checklist"
        )
        .into());
    }
    Api::<Checklist>::all(admin.clone())
        .create(&pp(), &from_json(checklist))
        .await?;
    wait_checklist(&admin, &w.checklist, "status written", |c| {
        observed(c).then_some(())
    })
    .await?;
    Api::<Customer>::all(admin.clone())
        .create(&pp(), &from_json(customer_doc))
        .await?;
    bind_cluster_admin(&admin, &w.reviewer, &w.reviewer).await?;
    bind_cluster_admin(&admin, &w.ops, &w.ops).await?;
    wait_access(env, &w.owner, "create", "projects.tenancy.dev", None, true).await?;
    wait_access(
        env,
        &w.reviewer,
        "patch",
        "projects.tenancy.dev",
        None,
        true,
    )
    .await?;
    Ok(w)
}

/// Deletes what a trial made (names under `<tag>-`), projects first; errors are ignored.
async fn cleanup(admin: &Client, tag: &str) {
    let mine = |n: &str| n.starts_with(&format!("{tag}-"));
    let projects = Api::<Project>::all(admin.clone());
    if let Ok(list) = projects.list(&ListParams::default()).await {
        let names: Vec<String> = list
            .items
            .iter()
            .map(|p| p.name_any())
            .filter(|n| mine(n))
            .collect();
        for n in &names {
            let _ = projects.delete(n, &DeleteParams::default()).await;
        }
        for n in &names {
            let _ = wait_project_gone(admin, n).await;
        }
    }
    let customers = Api::<Customer>::all(admin.clone());
    if let Ok(list) = customers.list(&ListParams::default()).await {
        for c in list.items.iter().filter(|c| mine(&c.name_any())) {
            let _ = customers
                .delete(&c.name_any(), &DeleteParams::default())
                .await;
        }
    }
    let checklists = Api::<Checklist>::all(admin.clone());
    if let Ok(list) = checklists.list(&ListParams::default()).await {
        for c in list.items.iter().filter(|c| mine(&c.name_any())) {
            let _ = checklists
                .delete(&c.name_any(), &DeleteParams::default())
                .await;
        }
    }
    let bindings = Api::<ClusterRoleBinding>::all(admin.clone());
    if let Ok(list) = bindings.list(&ListParams::default()).await {
        for b in list.items.iter().filter(|b| mine(&b.name_any())) {
            let _ = bindings
                .delete(&b.name_any(), &DeleteParams::default())
                .await;
        }
    }
}

/// Runs a trial's body on a fresh world, then cleans up whatever the body's outcome.
async fn with_world<F, Fut>(env: Arc<Env>, prefix: &str, body: F) -> TestResult
where
    F: FnOnce(Arc<Env>, World) -> Fut,
    Fut: std::future::Future<Output = TestResult>,
{
    let admin = env.client().await;
    let tag = unique_name(prefix);
    let result = async {
        let w = world(&env, tag.clone()).await?;
        body(env.clone(), w).await
    }
    .await;
    cleanup(&admin, &tag).await;
    result
}

// ---------------------------------------------------------------------------------------------
// Reading what users see

fn observed(c: &Checklist) -> bool {
    c.status
        .as_ref()
        .and_then(|s| s.observed_generation)
        .is_some_and(|g| Some(g) == c.metadata.generation)
}

async fn wait_checklist<T>(
    admin: &Client,
    name: &str,
    what: &str,
    check: impl Fn(&Checklist) -> Option<T>,
) -> Result<T, Failed> {
    let api = Api::<Checklist>::all(admin.clone());
    let check = &check;
    let api_ref = &api;
    let waited = wait_for(
        &format!("checklist {name}: {what}"),
        RECONCILE_TIMEOUT,
        || async move { check(&api_ref.get_opt(name).await.ok().flatten()?) },
    )
    .await;
    if let Err(e) = &waited {
        let last = api.get_opt(name).await.ok().flatten();
        return Err(format!(
            "{}; its status: {}",
            e.message().unwrap_or_default(),
            last.map(|c| serde_json::to_string(&c.status).unwrap_or_default())
                .unwrap_or_else(|| "(no checklist)".into())
        )
        .into());
    }
    waited
}

fn phase(p: &Project) -> Option<ProjectPhase> {
    p.status.as_ref().and_then(|s| s.phase)
}

/// The status and message of the project's condition `type_`.
fn condition(p: &Project, type_: &str) -> Option<(String, String)> {
    p.status.as_ref().and_then(|s| {
        s.conditions
            .iter()
            .find(|c| c.type_ == type_)
            .map(|c| (c.status.clone(), c.message.clone()))
    })
}

fn is_cond(p: &Project, type_: &str, status: &str) -> bool {
    condition(p, type_).is_some_and(|(s, _)| s == status)
}

fn is_current(p: &Project) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.observed_generation)
        .is_some_and(|g| Some(g) == p.metadata.generation)
}

fn checklist_state(p: &Project) -> Option<&ChecklistState> {
    p.status.as_ref().and_then(|s| s.checklist.as_ref())
}

fn summary(p: &Project) -> String {
    let s = p.status.as_ref();
    format!(
        "generation {:?}, observed {:?}, phase {:?}, conditions {:?}, checklist {}",
        p.metadata.generation,
        s.and_then(|s| s.observed_generation),
        phase(p),
        s.map(|s| s
            .conditions
            .iter()
            .map(|c| format!("{}={} ({})", c.type_, c.status, c.message))
            .collect::<Vec<_>>())
            .unwrap_or_default(),
        serde_json::to_string(&checklist_state(p)).unwrap_or_default(),
    )
}

/// Waits until the operator has processed the project's latest generation and `check` holds.
async fn wait_current(
    admin: &Client,
    name: &str,
    what: &str,
    check: impl Fn(&Project) -> bool,
) -> Result<Project, Failed> {
    wait_project(admin, name, what, |p| {
        (is_current(p) && check(p)).then(|| p.clone())
    })
    .await
}

/// Phase Active, Ready=True, for the latest generation.
async fn wait_active(admin: &Client, name: &str) -> Result<Project, Failed> {
    wait_current(admin, name, "phase Active and Ready=True", |p| {
        phase(p) == Some(ProjectPhase::Active) && is_cond(p, "Ready", "True")
    })
    .await
}

/// Phase PendingReview with ChecklistApproved=False, for the latest generation.
async fn wait_pending_review(admin: &Client, name: &str) -> Result<Project, Failed> {
    wait_current(
        admin,
        name,
        "phase PendingReview and ChecklistApproved=False",
        |p| {
            phase(p) == Some(ProjectPhase::PendingReview)
                && is_cond(p, "ChecklistApproved", "False")
        },
    )
    .await
}

async fn namespace_exists(admin: &Client, name: &str) -> Result<bool, Failed> {
    Ok(Api::<Namespace>::all(admin.clone())
        .get_opt(name)
        .await?
        .is_some_and(|n| n.metadata.deletion_timestamp.is_none()))
}

fn annotation(p: &Project, key: &str) -> Option<String> {
    p.annotations().get(key).cloned()
}

const REVIEWED_BY: &str = "tenancy.dev/checklist-reviewed-by";
const REVIEWED_AT: &str = "tenancy.dev/checklist-reviewed-at";
const REVIEWED_ANSWERS: &str = "tenancy.dev/checklist-reviewed-answers";

fn answers_map(v: &Value) -> Answers {
    serde_json::from_value(v.clone()).unwrap_or_default()
}

/// A merge patch setting `spec.checklistReview`.
fn review_patch(decision: &str, comment: &str) -> kube::api::Patch<Value> {
    merge(json!({"spec": {"checklistReview": {"decision": decision, "comment": comment}}}))
}

/// How long a negative check waits after the operator processed a change: time for anything
/// it would have made to show up.
const SETTLE: Duration = Duration::from_secs(3);

/// The Events (core/v1 view) about the Project `name`, as `kubectl describe project` shows
/// them, oldest first.
async fn project_events(admin: &Client, name: &str) -> Result<Vec<EventSeen>, Failed> {
    let mut events = Api::<Event>::all(admin.clone())
        .list(&ListParams::default().fields(&format!(
            "involvedObject.kind=Project,involvedObject.name={name}"
        )))
        .await?
        .items;
    events.sort_by_key(|e| e.metadata.creation_timestamp.clone());
    Ok(events
        .iter()
        .map(|e| EventSeen {
            uid: e.metadata.uid.clone().unwrap_or_default(),
            reason: e.reason.clone().unwrap_or_default(),
            message: e.message.clone().unwrap_or_default(),
            count: e
                .series
                .as_ref()
                .and_then(|s| s.count)
                .or(e.count)
                .unwrap_or(1),
        })
        .collect())
}

/// An Event as seen at one time: which one, why, and how many times it happened by then.
#[derive(Clone, Debug, PartialEq)]
struct EventSeen {
    uid: String,
    reason: String,
    message: String,
    count: i32,
}

/// Waits until an Event about the project mentions every text, and is not one of `before` (a
/// new Event, or one that happened again since).
async fn wait_project_event(
    admin: &Client,
    name: &str,
    mentions: &[&str],
    before: &[EventSeen],
) -> Result<(String, String), Failed> {
    let last = std::sync::Mutex::new(Vec::new());
    let last_ref = &last;
    let waited = wait_for(
        &format!("an Event about project {name} mentioning {mentions:?}"),
        RECONCILE_TIMEOUT,
        || async move {
            let events = project_events(admin, name).await.ok()?;
            let found = events
                .iter()
                .find(|e| !before.contains(e) && mentions.iter().all(|m| e.message.contains(m)))
                .map(|e| (e.reason.clone(), e.message.clone()));
            *last_ref.lock().expect("events lock") = events;
            found
        },
    )
    .await;
    waited.map_err(|e| {
        format!(
            "{}; events: {:?}",
            e.message().unwrap_or_default(),
            last.lock().expect("events lock")
        )
        .into()
    })
}

// ---------------------------------------------------------------------------------------------
// 1. The checklist's status

/// The operator writes `status.questions` and `status.initialVisibleQuestions` (the questions
/// without dependencies, in order), Ready=True, and follows a change of the questions.
async fn status_lists_the_initially_visible_questions(env: Arc<Env>) -> TestResult {
    with_world(env, "e2e-cl-status", |_env, w| async move {
        let mut t = Checks::default();
        let c = Api::<Checklist>::all(w.admin.clone())
            .get(&w.checklist)
            .await?;
        let status = c.status.clone().unwrap_or_default();
        t.fact(
            "status.questions counts the example's 7 questions",
            status.questions == 7,
            format!("questions: {}", status.questions),
        );
        t.fact(
            "status.initialVisibleQuestions lists the questions without dependencies, in order",
            status.initial_visible_questions == [PERSONAL.0, EXPORT.0, ETHICS.0],
            format!("{:?}", status.initial_visible_questions),
        );
        let ready = status
            .conditions
            .iter()
            .find(|c| c.type_ == "Ready")
            .map(|c| c.status.clone());
        t.fact(
            "the checklist is Ready=True",
            ready.as_deref() == Some("True"),
            format!("Ready: {ready:?}"),
        );
        // Staff ask the number of data subjects of everyone: it loses its dependency.
        let mut questions = serde_json::to_value(&c.spec.questions)?;
        for q in questions.as_array_mut().into_iter().flatten() {
            if q["id"] == SUBJECTS.0
                && let Some(q) = q.as_object_mut()
            {
                q.remove("dependencies");
            }
        }
        t.row(
            "staff drop the dependency of data-subjects",
            Expect::Allowed,
            Api::<Checklist>::all(w.admin.clone())
                .patch(
                    &w.checklist,
                    &patch_params(),
                    &merge(json!({"spec": {"questions": questions}})),
                )
                .await,
        );
        let after = wait_checklist(
            &w.admin,
            &w.checklist,
            "status for the new generation",
            |c| observed(c).then(|| c.status.clone().unwrap_or_default()),
        )
        .await;
        let after = t.waited("the operator wrote the new generation's status", after)?;
        t.fact(
            "status.initialVisibleQuestions now holds data-subjects",
            after.initial_visible_questions == [PERSONAL.0, SUBJECTS.0, EXPORT.0, ETHICS.0],
            format!("{:?}", after.initial_visible_questions),
        );
        t.finish("a checklist's status")
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// 2. Checklists that cannot work

fn checklist_obj(name: &str, questions: Value) -> Checklist {
    from_json(json!({
        "apiVersion": "tenancy.dev/v1alpha1", "kind": "Checklist",
        "metadata": {"name": name}, "spec": {"questions": questions},
    }))
}

fn boolean(id: &str) -> Value {
    json!({"id": id, "description": format!("Question {id}?"), "type": "Boolean"})
}

fn boolean_after(id: &str, deps: &[&str]) -> Value {
    let mut q = boolean(id);
    q["dependencies"] = deps
        .iter()
        .map(|d| json!({"question": d, "operator": "Equals", "value": true}))
        .collect();
    q
}

fn select(id: &str, kind: &str, options: &[&str]) -> Value {
    json!({
        "id": id, "description": format!("Question {id}?"), "type": kind,
        "options": options.iter().map(|o| json!({"id": o, "label": o})).collect::<Vec<_>>(),
    })
}

/// Staff (who may write checklists) are refused what cannot work, each naming the field; the
/// same checklist without the fault is accepted, and an update bringing a fault is refused too.
async fn checklists_that_cannot_work_are_refused(env: Arc<Env>) -> TestResult {
    let admin = env.client().await;
    let tag = unique_name("e2e-cl-invalid");
    let result = async {
        let api = Api::<Checklist>::all(admin.clone());
        let mut t = Checks::default();
        let mut n = 0;
        let mut next = || {
            n += 1;
            format!("{tag}-{n}")
        };
        let refused = |t: &[&str]| Expect::Refused(422, texts(t));
        let mut number_with_options = json!({
            "id": "size", "description": "How large?", "type": "Number",
            "options": [{"id": "s", "label": "Small"}],
        });
        let rows: Vec<(&str, Value, Expect)> = vec![
            (
                "a dependency cycle a → b → a",
                json!([boolean("start"), boolean_after("a", &["b"]), boolean_after("b", &["a"])]),
                refused(&["spec.questions", "cycle"]),
            ),
            (
                "a longer cycle a → b → c → a",
                json!([boolean_after("a", &["c"]), boolean_after("b", &["a"]), boolean_after("c", &["b"])]),
                refused(&["spec.questions", "cycle"]),
            ),
            (
                "a question that depends on itself",
                json!([boolean("start"), boolean_after("a", &["a"])]),
                refused(&["spec.questions[1]", "itself"]),
            ),
            (
                "a dependency on an unknown question",
                json!([boolean("start"), boolean_after("a", &["missing"])]),
                refused(&["spec.questions", "dependencies", "question"]),
            ),
            (
                "options on a Number question",
                json!([boolean("start"), number_with_options.clone()]),
                refused(&["spec.questions[1]", "options"]),
            ),
            (
                "a SingleSelect question without options",
                json!([boolean("start"), select("pick", "SingleSelect", &[])]),
                refused(&["spec.questions[1]", "options"]),
            ),
            (
                "minValue greater than maxValue",
                json!([{"id": "size", "description": "How large?", "type": "Number", "minValue": 10, "maxValue": 1}]),
                refused(&["spec.questions[0]", "minValue"]),
            ),
            (
                "file rules on a Text question",
                json!([{"id": "notes", "description": "Notes", "type": "Text", "allowedFileTypes": [".pdf"], "maxFileSizeMB": 5}]),
                refused(&["spec.questions[0]", "allowedFileTypes"]),
            ),
            (
                "two questions with the same id",
                json!([boolean("same"), boolean("same")]),
                refused(&["spec.questions", "unique"]),
            ),
            (
                "In with a single value instead of a list",
                json!([select("pick", "SingleSelect", &["x", "y"]),
                       {"id": "why", "description": "Why?", "type": "Text",
                        "dependencies": [{"question": "pick", "operator": "In", "value": "x"}]}]),
                refused(&["spec.questions[1].dependencies[0].value", "list"]),
            ),
            (
                "a dependency on an option the question does not have",
                json!([select("pick", "SingleSelect", &["x", "y"]),
                       {"id": "why", "description": "Why?", "type": "Text",
                        "dependencies": [{"question": "pick", "operator": "Equals", "value": "z"}]}]),
                refused(&["spec.questions[1].dependencies[0].value", "not an option"]),
            ),
        ];
        let mut refused_names = Vec::new();
        for (what, questions, expect) in rows {
            let name = next();
            refused_names.push(name.clone());
            t.row(
                &format!("staff create a checklist with {what}"),
                expect,
                api.create(&pp(), &checklist_obj(&name, questions)).await,
            );
        }
        // The same kinds of questions, without the faults.
        if let Some(q) = number_with_options.as_object_mut() {
            q.remove("options");
        }
        let good = next();
        t.row(
            "staff create a checklist with a chain, a Number and a select dependency",
            Expect::Allowed,
            api.create(
                &pp(),
                &checklist_obj(
                    &good,
                    json!([boolean("start"), boolean_after("a", &["start"]), boolean_after("b", &["a"]),
                           number_with_options, select("pick", "SingleSelect", &["x", "y"]),
                           {"id": "why", "description": "Why?", "type": "Text",
                            "dependencies": [{"question": "pick", "operator": "In", "value": ["x"]}]}]),
                ),
            )
            .await,
        );
        t.row(
            "staff change it so that start depends on b (a cycle)",
            Expect::Refused(422, texts(&["spec.questions", "cycle"])),
            api.patch(
                &good,
                &patch_params(),
                &merge(json!({"spec": {"questions": [
                    boolean_after("start", &["b"]), boolean_after("a", &["start"]), boolean_after("b", &["a"]),
                ]}})),
            )
            .await,
        );
        let stored: Vec<String> = api
            .list(&ListParams::default())
            .await?
            .items
            .iter()
            .map(|c| c.name_any())
            .filter(|n| refused_names.contains(n))
            .collect();
        t.fact(
            "none of the refused checklists is stored",
            stored.is_empty(),
            format!("stored: {stored:?}"),
        );
        let kept = api.get(&good).await?;
        t.fact(
            "the refused change left the checklist as it was",
            kept.spec.questions[0].dependencies.is_empty(),
            format!("{:?}", kept.spec.questions[0].dependencies),
        );
        t.finish("checklists that cannot work")
    }
    .await;
    cleanup(&admin, &tag).await;
    result
}

// ---------------------------------------------------------------------------------------------
// 3. Only staff write checklists and attach them

async fn only_staff_write_checklists(env: Arc<Env>) -> TestResult {
    with_world(env, "e2e-cl-staff", |env, w| async move {
        let mut t = Checks::default();
        let as_owner = env.client_as(&w.owner, &[]).await;
        let as_ops = env.client_as(&w.ops, &[]).await;
        let as_reviewer = env.client_as(&w.reviewer, &[STAFF_GROUP]).await;
        let checklists = |c: &Client| Api::<Checklist>::all(c.clone());
        let one = |name: &str| checklist_obj(name, json!([boolean("start")]));

        let can = env
            .can_i(
                &w.owner,
                &[AUTHENTICATED],
                "create",
                "checklists.tenancy.dev",
                None,
            )
            .await;
        t.fact(
            "RBAC does not let a customer owner create checklists",
            !can,
            if can { "allowed" } else { "" },
        );
        for verb in ["get", "list"] {
            let can = env
                .can_i(
                    &w.owner,
                    &[AUTHENTICATED],
                    verb,
                    "checklists.tenancy.dev",
                    None,
                )
                .await;
            t.fact(
                &format!("the owner may {verb} checklists (to read the questions)"),
                can,
                if can { "" } else { "refused" },
            );
        }
        t.row(
            "the owner reads the customer's checklist",
            Expect::Allowed,
            checklists(&as_owner).get(&w.checklist).await,
        );
        t.row(
            "the owner creates a checklist",
            Expect::Refused(403, vec![]),
            checklists(&as_owner)
                .create(&pp(), &one(&w.name("by-owner")))
                .await,
        );
        t.row(
            "a non-staff user with cluster-admin RBAC creates a checklist",
            Expect::Hook(403, texts(&["checklists"])),
            checklists(&as_ops)
                .create(&pp(), &one(&w.name("by-ops")))
                .await,
        );
        t.row(
            "a non-staff user with cluster-admin RBAC changes the customer's checklist",
            Expect::Hook(403, texts(&["checklists"])),
            checklists(&as_ops)
                .patch(
                    &w.checklist,
                    &patch_params(),
                    &merge(json!({"spec": {"description": "changed by ops"}})),
                )
                .await,
        );
        t.row(
            "a non-staff user with cluster-admin RBAC deletes the customer's checklist",
            Expect::Hook(403, texts(&["checklists"])),
            checklists(&as_ops)
                .delete(&w.checklist, &DeleteParams::default())
                .await,
        );
        t.row(
            "staff (group tenancy:staff) create a checklist",
            Expect::Allowed,
            checklists(&as_reviewer)
                .create(&pp(), &one(&w.name("by-staff")))
                .await,
        );
        let stored = checklists(&w.admin).get(&w.checklist).await?;
        t.fact(
            "the customer's checklist is unchanged",
            stored.spec.description.as_deref() != Some("changed by ops")
                && stored.metadata.deletion_timestamp.is_none(),
            format!("description: {:?}", stored.spec.description),
        );
        // The owner may change the customer's display fields, not its checklist.
        t.row(
            "the owner changes the customer's displayName",
            Expect::Allowed,
            Api::<Customer>::all(as_owner.clone())
                .patch(
                    &w.customer,
                    &patch_params(),
                    &merge(json!({"spec": {"displayName": "Renamed by its owner"}})),
                )
                .await,
        );
        t.row(
            "the owner removes the customer's projectChecklist",
            Expect::Hook(403, vec![]),
            Api::<Customer>::all(as_owner.clone())
                .patch(
                    &w.customer,
                    &patch_params(),
                    &merge(json!({"spec": {"projectChecklist": null}})),
                )
                .await,
        );
        t.row(
            "the owner points the customer at another checklist",
            Expect::Hook(403, vec![]),
            Api::<Customer>::all(as_owner.clone())
                .patch(
                    &w.customer,
                    &patch_params(),
                    &merge(json!({"spec": {"projectChecklist": w.name("by-staff")}})),
                )
                .await,
        );
        let c = Api::<Customer>::all(w.admin.clone())
            .get(&w.customer)
            .await?;
        t.fact(
            "the customer still names the example's checklist",
            c.spec.project_checklist.as_deref() == Some(w.checklist.as_str()),
            format!("{:?}", c.spec.project_checklist),
        );
        t.finish("only staff write checklists")
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// 4. Answers that do not fit

/// Creates and updates by the owner (and a move by staff) that leave the checklist unanswered
/// or answer it wrongly are refused with 422 naming the answer's field and the question; the
/// example's own answers are admitted and its project becomes Ready with the checklist in
/// status.
async fn answers_that_do_not_fit_are_refused(env: Arc<Env>) -> TestResult {
    with_world(env, "e2e-cl-fit", |env, w| async move {
        let mut t = Checks::default();
        let as_owner = env.client_as(&w.owner, &[]).await;
        let projects = |c: &Client| Api::<Project>::all(c.clone());
        let file = |name: &str, mime: &str, size: f64| {
            json!({"name": name, "url": format!("https://files.example.com/{name}"), "mimeType": mime, "sizeMB": size})
        };
        let rows: Vec<(&str, Value, Expect)> = vec![
            (
                "no answers at all",
                json!({}),
                Expect::Hook(
                    422,
                    vec![
                        format!("spec.checklistAnswers.{}", PERSONAL.0),
                        PERSONAL.1.into(),
                        format!("spec.checklistAnswers.{}", EXPORT.0),
                        EXPORT.1.into(),
                    ],
                ),
            ),
            (
                "personal data, but not which categories",
                w.answers_with(json!({CATEGORIES.0: null})),
                invalid_answer(CATEGORIES),
            ),
            (
                "personal data, but not how many subjects",
                w.answers_with(json!({SUBJECTS.0: null})),
                invalid_answer(SUBJECTS),
            ),
            (
                "no personal data, yet its categories (a hidden question)",
                w.answers_with(json!({PERSONAL.0: false, SUBJECTS.0: null})),
                invalid_answer(CATEGORIES),
            ),
            (
                "no export control, yet a licence number (a hidden question)",
                w.answers_with(json!({LICENCE.0: "EX-2026-1"})),
                invalid_answer(LICENCE),
            ),
            (
                "genetic consent without genetic data (a hidden question)",
                w.answers_with(json!({CONSENT.0: "Signed forms"})),
                invalid_answer(CONSENT),
            ),
            (
                "an answer to a question the checklist does not have",
                w.answers_with(json!({"favourite-colour": "blue"})),
                Expect::Hook(422, texts(&["spec.checklistAnswers.favourite-colour"])),
            ),
            (
                "0 data subjects (below 1)",
                w.answers_with(json!({SUBJECTS.0: 0})),
                invalid_answer(SUBJECTS),
            ),
            (
                "10000001 data subjects (above 10,000,000)",
                w.answers_with(json!({SUBJECTS.0: 10_000_001})),
                invalid_answer(SUBJECTS),
            ),
            (
                "the number of data subjects as a word",
                w.answers_with(json!({SUBJECTS.0: "many"})),
                invalid_answer(SUBJECTS),
            ),
            (
                "personal data as \"yes\" (not a Boolean)",
                w.answers_with(json!({PERSONAL.0: "yes"})),
                invalid_answer(PERSONAL),
            ),
            (
                "export control \"maybe\" (not an option)",
                w.answers_with(json!({EXPORT.0: "maybe"})),
                invalid_answer(EXPORT),
            ),
            (
                "a category that is not an option",
                w.answers_with(json!({CATEGORIES.0: ["contact", "biometric"]})),
                invalid_answer(CATEGORIES),
            ),
            (
                "the categories as one string (not a list)",
                w.answers_with(json!({CATEGORIES.0: "contact"})),
                invalid_answer(CATEGORIES),
            ),
            (
                "an ethics approval as .docx",
                w.answers_with(json!({ETHICS.0: file("approval.docx", "application/pdf", 1.0)})),
                invalid_answer(ETHICS),
            ),
            (
                "an ethics approval declared text/plain",
                w.answers_with(json!({ETHICS.0: file("approval.pdf", "text/plain", 1.0)})),
                invalid_answer(ETHICS),
            ),
            (
                "an ethics approval of 25 MB (at most 20)",
                w.answers_with(json!({ETHICS.0: file("approval.pdf", "application/pdf", 25.0)})),
                invalid_answer(ETHICS),
            ),
            (
                "an ethics approval without url or Secret/ConfigMap key",
                w.answers_with(json!({ETHICS.0: {"name": "approval.pdf", "mimeType": "application/pdf", "sizeMB": 1}})),
                invalid_answer(ETHICS),
            ),
        ];
        let mut refused = Vec::new();
        for (i, (what, answers, expect)) in rows.into_iter().enumerate() {
            let name = w.name(&format!("bad-{i}"));
            refused.push(name.clone());
            t.row(
                &format!("the owner creates a project answering {what}"),
                expect,
                projects(&as_owner)
                    .create(&pp(), &w.project(&name, answers))
                    .await,
            );
        }
        t.row(
            "the owner creates the example's project",
            Expect::Allowed,
            projects(&as_owner)
                .create(&pp(), &w.project(&w.survey, w.answers.clone()))
                .await,
        );
        t.row(
            "the owner creates a project with no personal data, no categories, no subjects",
            Expect::Allowed,
            projects(&as_owner)
                .create(
                    &pp(),
                    &w.project(
                        &w.name("no-data"),
                        w.answers_with(json!({PERSONAL.0: false, CATEGORIES.0: null, SUBJECTS.0: null, ETHICS.0: null})),
                    ),
                )
                .await,
        );
        let stored: Vec<String> = projects(&w.admin)
            .list(&ListParams::default())
            .await?
            .items
            .iter()
            .map(|p| p.name_any())
            .filter(|n| refused.contains(n))
            .collect();
        t.fact(
            "none of the refused projects is stored",
            stored.is_empty(),
            format!("stored: {stored:?}"),
        );

        // The example's project: Ready, with its namespace and the checklist in status.
        let p = wait_active(&w.admin, &w.survey).await;
        let p = t.waited("the example's project becomes Active and Ready", p)?;
        t.fact(
            "its namespace exists",
            namespace_exists(&w.admin, &w.survey).await?,
            "",
        );
        let state = checklist_state(&p).cloned().unwrap_or_default();
        t.fact(
            "status.checklist names the checklist, 5 answered of 5 visible, 4 required, nothing to review",
            state.name == w.checklist
                && state.answered == 5
                && state.required == 4
                && state.visible == [PERSONAL.0, CATEGORIES.0, SUBJECTS.0, EXPORT.0, ETHICS.0]
                && state.needs_review.is_empty()
                && state.decision.is_none(),
            format!("{state:?}"),
        );
        t.fact(
            "ChecklistApproved=True (no answer needs a review)",
            is_cond(&p, "ChecklistApproved", "True"),
            summary(&p),
        );
        let no_data = wait_active(&w.admin, &w.name("no-data")).await;
        let no_data = t.waited("the project without personal data becomes Active", no_data)?;
        let state = checklist_state(&no_data).cloned().unwrap_or_default();
        t.fact(
            "its status.checklist shows the categories and subjects hidden, 2 required",
            state.visible == [PERSONAL.0, EXPORT.0, ETHICS.0] && state.required == 2,
            format!("{state:?}"),
        );

        // Updates that change the answers are held to the checklist too.
        t.row(
            "the owner removes the stored project's number of data subjects",
            invalid_answer(SUBJECTS),
            projects(&as_owner)
                .patch(
                    &w.survey,
                    &patch_params(),
                    &merge(json!({"spec": {"checklistAnswers": {SUBJECTS.0: null}}})),
                )
                .await,
        );
        t.row(
            "the owner answers the hidden licence question on the stored project",
            invalid_answer(LICENCE),
            projects(&as_owner)
                .patch(
                    &w.survey,
                    &patch_params(),
                    &merge(json!({"spec": {"checklistAnswers": {LICENCE.0: "EX-1"}}})),
                )
                .await,
        );
        t.row(
            "the owner raises the number of data subjects beyond 10,000,000",
            invalid_answer(SUBJECTS),
            projects(&as_owner)
                .patch(
                    &w.survey,
                    &patch_params(),
                    &merge(json!({"spec": {"checklistAnswers": {SUBJECTS.0: 20_000_000}}})),
                )
                .await,
        );
        t.row(
            "the owner changes the number of data subjects within the range",
            Expect::Allowed,
            projects(&as_owner)
                .patch(
                    &w.survey,
                    &patch_params(),
                    &merge(json!({"spec": {"checklistAnswers": {SUBJECTS.0: 1500}}})),
                )
                .await,
        );
        let p = projects(&w.admin).get(&w.survey).await?;
        t.fact(
            "the stored answers are the admitted ones",
            p.spec.checklist_answers.get(SUBJECTS.0) == Some(&json!(1500))
                && !p.spec.checklist_answers.contains_key(LICENCE.0),
            format!("{:?}", p.spec.checklist_answers),
        );

        // A move into the customer is held to its checklist, staff included.
        let other = w.name("other");
        Api::<Customer>::all(w.admin.clone())
            .create(&pp(), &customer(&other, json!({})))
            .await?;
        let plain = w.name("plain");
        projects(&w.admin)
            .create(&pp(), &project(&plain, json!({"customer": other})))
            .await?;
        t.row(
            "staff move a project without answers into the customer",
            invalid_answer(PERSONAL),
            projects(&w.admin)
                .patch(
                    &plain,
                    &patch_params(),
                    &merge(json!({"spec": {"customer": w.customer}})),
                )
                .await,
        );
        t.row(
            "staff create a project of a customer without checklist, with answers",
            Expect::Hook(422, texts(&["spec.checklistAnswers"])),
            projects(&w.admin)
                .create(
                    &pp(),
                    &project(
                        &w.name("stray-answers"),
                        json!({"customer": other, "checklistAnswers": {PERSONAL.0: false}}),
                    ),
                )
                .await,
        );
        t.finish("answers that do not fit")
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// 5. A follow-up question with Or

/// The licence number is asked (and required) for dual-use and for military export control,
/// and not asked for "no": refused when missing for either, refused when given for "no".
async fn a_follow_up_with_or_is_asked_for_either_answer(env: Arc<Env>) -> TestResult {
    with_world(env, "e2e-cl-or", |env, w| async move {
        let mut t = Checks::default();
        let as_owner = env.client_as(&w.owner, &[]).await;
        let projects = Api::<Project>::all(as_owner.clone());
        for answer in ["dual-use", "military"] {
            t.row(
                &format!("export control {answer} without a licence number"),
                invalid_answer(LICENCE),
                projects
                    .create(
                        &pp(),
                        &w.project(
                            &w.name(&format!("{answer}-nolicence")),
                            w.answers_with(json!({EXPORT.0: answer})),
                        ),
                    )
                    .await,
            );
            t.row(
                &format!("export control {answer} with a licence number"),
                Expect::Allowed,
                projects
                    .create(
                        &pp(),
                        &w.project(
                            &w.name(answer),
                            w.answers_with(json!({EXPORT.0: answer, LICENCE.0: "EX-2026-0042"})),
                        ),
                    )
                    .await,
            );
        }
        t.row(
            "export control no with a licence number",
            invalid_answer(LICENCE),
            projects
                .create(
                    &pp(),
                    &w.project(
                        &w.name("no-licence"),
                        w.answers_with(json!({EXPORT.0: "no", LICENCE.0: "EX-2026-0042"})),
                    ),
                )
                .await,
        );
        t.row(
            "export control no without a licence number",
            Expect::Allowed,
            projects
                .create(&pp(), &w.project(&w.survey, w.answers.clone()))
                .await,
        );
        for (name, licence) in [
            (w.name("dual-use"), true),
            (w.name("military"), true),
            (w.survey.clone(), false),
        ] {
            let p = wait_active(&w.admin, &name).await;
            let p = t.waited(&format!("{name} becomes Active"), p)?;
            let state = checklist_state(&p).cloned().unwrap_or_default();
            let asked = state.visible.iter().any(|q| q == LICENCE.0);
            t.fact(
                &format!(
                    "{name}: the licence number is {}asked ({} required questions)",
                    if licence { "" } else { "not " },
                    if licence { 5 } else { 4 }
                ),
                asked == licence && state.required == if licence { 5 } else { 4 },
                format!("{state:?}"),
            );
        }
        t.finish("a follow-up with Or")
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// 6. Guidance as warnings

/// `kubectl create --as <owner>`, on stderr.
fn kubectl_create_as(env: &Env, user: &str, p: &Project) -> Result<(bool, String), Failed> {
    let input = serde_json::to_string(p)?;
    let out = env.kubectl_with_input(&["create", "-f", "-", "--as", user], Some(&input));
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    ))
}

/// The guidance of the example's question `id`, as the example says it.
fn guidance_of(c: &Checklist, id: &str) -> String {
    c.spec
        .questions
        .iter()
        .find(|q| q.id == id)
        .and_then(|q| q.user_guidance.clone())
        .unwrap_or_default()
}

/// Guidance that applies comes back as admission warnings, which kubectl prints as
/// `Warning: <id>: <guidance>`; guidance that does not apply does not.
async fn guidance_comes_back_as_kubectl_warnings(env: Arc<Env>) -> TestResult {
    with_world(env, "e2e-cl-guide", |env, w| async move {
        let mut t = Checks::default();
        let c = Api::<Checklist>::all(w.admin.clone())
            .get(&w.checklist)
            .await?;
        let warning = |id: &str| format!("Warning: {id}: {}", guidance_of(&c, id));
        for id in [EXPORT.0, ETHICS.0, CATEGORIES.0, CONSENT.0] {
            if guidance_of(&c, id).is_empty() {
                return Err(format!("{EXAMPLE}: question {id} has no userGuidance").into());
            }
        }
        // (what, project, answers, guidance shown, guidance not shown)
        type Case<'a> = (&'a str, String, Value, Vec<&'a str>, Vec<&'a str>);
        let cases: Vec<Case> = vec![
            (
                "military export control, no ethics approval attached",
                w.name("military"),
                w.answers_with(json!({EXPORT.0: "military", LICENCE.0: "EX-9", ETHICS.0: null})),
                vec![EXPORT.0, ETHICS.0],
                vec![CATEGORIES.0, CONSENT.0],
            ),
            (
                "dual-use export control",
                w.name("dual-use"),
                w.answers_with(json!({EXPORT.0: "dual-use", LICENCE.0: "EX-10"})),
                vec![EXPORT.0, ETHICS.0],
                vec![CATEGORIES.0],
            ),
            (
                "the example's answers (no export control, contact data)",
                w.survey.clone(),
                w.answers.clone(),
                vec![ETHICS.0],
                vec![EXPORT.0, CATEGORIES.0, CONSENT.0],
            ),
            (
                "health and genetic data (needs a review)",
                w.name("genome"),
                w.answers_with(
                    json!({CATEGORIES.0: ["health", "genetic"], CONSENT.0: "Broad consent, biobank form v3"}),
                ),
                vec![CATEGORIES.0, CONSENT.0, ETHICS.0],
                vec![EXPORT.0],
            ),
        ];
        for (what, name, answers, shown, not_shown) in cases {
            let (ok, stderr) = kubectl_create_as(&env, &w.owner, &w.project(&name, answers))?;
            t.fact(
                &format!("kubectl create --as the owner, {what}: created"),
                ok,
                stderr.trim().to_string(),
            );
            for id in shown {
                t.fact(
                    &format!("{what}: kubectl prints the guidance of {id}"),
                    stderr.contains(&warning(id)),
                    format!("stderr: {}", stderr.trim()),
                );
            }
            for id in not_shown {
                t.fact(
                    &format!("{what}: kubectl prints no guidance of {id}"),
                    !stderr.contains(&format!("Warning: {id}:")),
                    format!("stderr: {}", stderr.trim()),
                );
            }
        }
        // A refused create tells what is wrong, not the guidance of answers it did not admit.
        let (ok, stderr) = kubectl_create_as(
            &env,
            &w.owner,
            &w.project(
                &w.name("refused"),
                w.answers_with(json!({EXPORT.0: "military"})),
            ),
        )?;
        t.fact(
            "kubectl create --as the owner, military without licence: refused naming the licence",
            !ok && stderr.contains(&format!("spec.checklistAnswers.{}", LICENCE.0)),
            stderr.trim().to_string(),
        );
        t.finish("guidance as warnings")
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// 7. Review: pending, approved, changed, approved again

/// Answers that need a review admit the project but hold it: PendingReview,
/// ChecklistApproved=False naming the question, no namespace, no access. Only staff decide
/// (the owner and a non-staff cluster-admin get 403; forged review annotations are put back).
/// Staff approve: the namespace appears, the project is Ready, the review is recorded. A later
/// change of a reviewed answer asks for another review without taking the namespace away, even
/// with a forged digest of the new answers; staff approve again.
async fn answers_needing_review_wait_for_staff_approval(env: Arc<Env>) -> TestResult {
    with_world(env, "e2e-cl-review", |env, w| async move {
        let mut t = Checks::default();
        let as_owner = env.client_as(&w.owner, &[]).await;
        let as_ops = env.client_as(&w.ops, &[]).await;
        let as_reviewer = env.client_as(&w.reviewer, &[STAFF_GROUP]).await;
        let projects = |c: &Client| Api::<Project>::all(c.clone());
        let name = w.name("cohort");
        let ns = name.as_str();
        let health = w.answers_with(json!({CATEGORIES.0: ["contact", "health"], SUBJECTS.0: 5000}));

        // The owner creates it, forging a review of these very answers.
        let mut cohort = w.project(&name, health.clone());
        cohort.metadata.annotations = Some(
            [
                (REVIEWED_BY, w.owner.clone()),
                (REVIEWED_AT, "2026-01-01T00:00:00Z".to_string()),
                (REVIEWED_ANSWERS, digest(&answers_map(&health))),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        );
        t.row(
            "the owner creates a project with health data (and forged review annotations)",
            Expect::Allowed,
            projects(&as_owner).create(&pp(), &cohort).await,
        );
        t.row(
            "the owner creates a project approving its own answers",
            Expect::Hook(403, texts(&["spec.checklistReview"])),
            projects(&as_owner)
                .create(
                    &pp(),
                    &project(
                        &w.name("self-approved"),
                        json!({"customer": w.customer, "checklistAnswers": health,
                               "checklistReview": {"decision": "Approved"}}),
                    ),
                )
                .await,
        );
        let p = wait_pending_review(&w.admin, &name).await;
        let p = t.waited("the project waits: PendingReview, ChecklistApproved=False", p)?;
        t.outcome(
            "an Event says which answer waits for a review",
            wait_project_event(&w.admin, ns, &[CATEGORIES.0], &[]).await,
        );
        let (_, message) = condition(&p, "ChecklistApproved").unwrap_or_default();
        t.fact(
            "ChecklistApproved's message names the question",
            message.contains(CATEGORIES.0),
            message,
        );
        let state = checklist_state(&p).cloned().unwrap_or_default();
        t.fact(
            "status.checklist.needsReview lists data-categories, no decision, no reviewer",
            state.needs_review == [CATEGORIES.0]
                && state.decision.is_none()
                && state.reviewed_by.is_none(),
            format!("{state:?}"),
        );
        t.fact(
            "the forged review annotations are not stored",
            annotation(&p, REVIEWED_BY).is_none() && annotation(&p, REVIEWED_ANSWERS).is_none(),
            format!("{:?}", p.annotations()),
        );
        tokio::time::sleep(SETTLE).await;
        t.fact(
            "no namespace a while after the operator processed the project",
            !namespace_exists(&w.admin, ns).await?,
            "",
        );
        for (verb, resource) in [
            ("get", "pods"),
            ("create", "deployments.apps"),
            ("create", "projectmemberships.tenancy.dev"),
        ] {
            let can = env.can_i(&w.owner, &[AUTHENTICATED], verb, resource, Some(ns)).await;
            t.fact(
                &format!("the owner may not {verb} {resource} in the project's namespace"),
                !can,
                if can { "allowed" } else { "" },
            );
        }

        // Only staff decide.
        t.row(
            "the owner approves the answers",
            Expect::Hook(403, texts(&["spec.checklistReview"])),
            projects(&as_owner)
                .patch(ns, &patch_params(), &review_patch("Approved", "fine"))
                .await,
        );
        t.row(
            "a non-staff user with cluster-admin RBAC approves the answers",
            Expect::Hook(403, vec![]),
            projects(&as_ops)
                .patch(ns, &patch_params(), &review_patch("Approved", "fine"))
                .await,
        );
        let forged = merge(json!({"metadata": {"annotations": {
            REVIEWED_BY: w.reviewer, REVIEWED_ANSWERS: digest(&answers_map(&health)),
        }}}));
        let forged_result = projects(&as_owner).patch(ns, &patch_params(), &forged).await;
        let refused_or_put_back = match &forged_result {
            Err(e) => refusal(e).0 == 403,
            Ok(p) => annotation(p, REVIEWED_BY).is_none() && annotation(p, REVIEWED_ANSWERS).is_none(),
        };
        t.fact(
            "the owner writes review annotations naming staff: refused or put back",
            refused_or_put_back,
            match &forged_result {
                Err(e) => format!("{:?}", refusal(e)),
                Ok(p) => format!("{:?}", p.annotations()),
            },
        );
        let p = projects(&w.admin).get(ns).await?;
        t.fact(
            "the project still waits for a review",
            phase(&p) == Some(ProjectPhase::PendingReview)
                && checklist_state(&p).is_some_and(|s| s.decision.is_none()),
            summary(&p),
        );

        // Staff approve.
        let comment = "DPIA 2026-17 on file";
        t.row(
            "staff approve the answers",
            Expect::Allowed,
            projects(&as_reviewer)
                .patch(ns, &patch_params(), &review_patch("Approved", comment))
                .await,
        );
        let p = wait_current(&w.admin, ns, "Active, Ready, ChecklistApproved=True", |p| {
            phase(p) == Some(ProjectPhase::Active)
                && is_cond(p, "Ready", "True")
                && is_cond(p, "ChecklistApproved", "True")
        })
        .await;
        let p = t.waited("the approved project is Active and Ready", p)?;
        t.fact(
            "its namespace exists",
            namespace_exists(&w.admin, ns).await?,
            "",
        );
        let state = checklist_state(&p).cloned().unwrap_or_default();
        t.fact(
            "status.checklist: decision Approved, the comment, reviewedBy the staff user, reviewedAt",
            state.decision == Some(ReviewDecision::Approved)
                && state.comment.as_deref() == Some(comment)
                && state.reviewed_by.as_deref() == Some(w.reviewer.as_str())
                && state.reviewed_at.is_some(),
            format!("{state:?}"),
        );
        let at = annotation(&p, REVIEWED_AT);
        let recent = at
            .as_deref()
            .and_then(|a| a.parse::<jiff::Timestamp>().ok())
            .is_some_and(|a| a.duration_until(jiff::Timestamp::now()).as_secs().abs() < 300);
        let first_digest = annotation(&p, REVIEWED_ANSWERS);
        t.fact(
            "annotations: reviewed-by the staff user, reviewed-at now, reviewed-answers the answers' digest",
            annotation(&p, REVIEWED_BY).as_deref() == Some(w.reviewer.as_str())
                && recent
                && first_digest.as_deref() == Some(digest(&answers_map(&health)).as_str()),
            format!("{:?}", p.annotations()),
        );
        let granted = wait_access(&env, &w.owner, "create", "deployments.apps", Some(ns), true).await;
        t.waited("the owner gets access to the namespace", granted)?;

        // The owner changes a reviewed answer (still health data), forging the digest of the
        // new answers: another review is needed, the namespace stays.
        let changed = w.answers_with(json!({CATEGORIES.0: ["health", "financial"], SUBJECTS.0: 5000}));
        let events_before = project_events(&w.admin, ns).await?;
        t.row(
            "the owner changes the categories to health and financial, forging the new answers' digest",
            Expect::Allowed,
            projects(&as_owner)
                .patch(
                    ns,
                    &patch_params(),
                    &merge(json!({
                        "metadata": {"annotations": {REVIEWED_ANSWERS: digest(&answers_map(&changed))}},
                        "spec": {"checklistAnswers": {CATEGORIES.0: ["health", "financial"]}},
                    })),
                )
                .await,
        );
        let p = wait_current(&w.admin, ns, "ChecklistApproved=False", |p| {
            is_cond(p, "ChecklistApproved", "False")
        })
        .await;
        let p = t.waited("the changed answers need another review: ChecklistApproved=False", p)?;
        t.fact(
            "the forged digest was put back",
            annotation(&p, REVIEWED_ANSWERS) == first_digest,
            format!("{:?}", p.annotations()),
        );
        let message = p
            .status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == "ChecklistApproved"))
            .map(|c| c.message.clone())
            .unwrap_or_default();
        t.fact(
            "ChecklistApproved says a review is due and the namespace stays",
            message.contains("a review by staff is due") && message.contains("the namespace stays"),
            message,
        );
        t.fact(
            "status.checklist.needsReview lists data-categories again",
            checklist_state(&p).is_some_and(|s| s.needs_review == [CATEGORIES.0]),
            summary(&p),
        );
        tokio::time::sleep(SETTLE).await;
        t.fact(
            "the namespace stays",
            namespace_exists(&w.admin, ns).await?,
            "",
        );
        let can = env
            .can_i(&w.owner, &[], "create", "deployments.apps", Some(ns))
            .await;
        t.fact("the owner keeps access to the namespace", can, "");
        t.outcome(
            "a new Event says the changed answer needs another review",
            wait_project_event(&w.admin, ns, &[CATEGORIES.0], &events_before).await,
        );
        let p = projects(&w.admin).get(ns).await?;
        t.fact(
            "the project is not sent back to PendingReview",
            phase(&p) != Some(ProjectPhase::PendingReview),
            summary(&p),
        );

        // Staff approve the new answers.
        t.row(
            "staff approve the changed answers",
            Expect::Allowed,
            projects(&as_reviewer)
                .patch(
                    ns,
                    &patch_params(),
                    &review_patch("Approved", "financial data added; DPIA amended"),
                )
                .await,
        );
        let p = wait_current(&w.admin, ns, "ChecklistApproved=True", |p| {
            is_cond(p, "ChecklistApproved", "True")
        })
        .await;
        let p = t.waited("ChecklistApproved=True again", p)?;
        let stored = answers_map(&serde_json::to_value(&p.spec.checklist_answers)?);
        t.fact(
            "reviewed-answers is now the digest of the changed answers",
            annotation(&p, REVIEWED_ANSWERS).as_deref() == Some(digest(&stored).as_str())
                && annotation(&p, REVIEWED_ANSWERS) != first_digest,
            format!("{:?}", p.annotations()),
        );
        t.finish("review: pending, approved, changed, approved again")
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// 8. Rejected

/// Staff reject: the project is Rejected with Stalled=True and the comment in status, no
/// namespace, no access; the owner can still delete it. Changing the answers to ones that need
/// no review lets the project proceed.
async fn rejected_answers_keep_the_project_out(env: Arc<Env>) -> TestResult {
    with_world(env, "e2e-cl-reject", |env, w| async move {
        let mut t = Checks::default();
        let as_owner = env.client_as(&w.owner, &[]).await;
        let as_reviewer = env.client_as(&w.reviewer, &[STAFF_GROUP]).await;
        let projects = |c: &Client| Api::<Project>::all(c.clone());
        let genetic = w.answers_with(json!({
            CATEGORIES.0: ["genetic"], CONSENT.0: "Broad consent, biobank form v3", SUBJECTS.0: 300,
        }));
        let comment = "No genetic data on this cluster; use the secure enclave.";
        let (first, second) = (w.name("genome"), w.name("genome-2"));
        for name in [&first, &second] {
            t.row(
                &format!("the owner creates {name} with genetic data"),
                Expect::Allowed,
                projects(&as_owner)
                    .create(&pp(), &w.project(name, genetic.clone()))
                    .await,
            );
            let p = wait_pending_review(&w.admin, name).await;
            let p = t.waited(&format!("{name} waits for a review"), p)?;
            t.fact(
                &format!("{name}: status.checklist.needsReview lists genetic-consent"),
                checklist_state(&p).is_some_and(|s| s.needs_review == [CONSENT.0]),
                summary(&p),
            );
            t.row(
                &format!("staff reject {name}"),
                Expect::Allowed,
                projects(&as_reviewer)
                    .patch(name, &patch_params(), &review_patch("Rejected", comment))
                    .await,
            );
            let p = wait_current(&w.admin, name, "phase Rejected and Stalled=True", |p| {
                phase(p) == Some(ProjectPhase::Rejected) && is_cond(p, "Stalled", "True")
            })
            .await;
            let p = t.waited(&format!("{name} is Rejected with Stalled=True"), p)?;
            t.outcome(
                &format!("{name}: an Event gives the rejection's comment"),
                wait_project_event(&w.admin, name, &[comment], &[]).await,
            );
            let state = checklist_state(&p).cloned().unwrap_or_default();
            t.fact(
                &format!("{name}: status.checklist has decision Rejected, the comment, the reviewer"),
                state.decision == Some(ReviewDecision::Rejected)
                    && state.comment.as_deref() == Some(comment)
                    && state.reviewed_by.as_deref() == Some(w.reviewer.as_str()),
                format!("{state:?}"),
            );
            t.fact(
                &format!("{name}: ChecklistApproved=False"),
                is_cond(&p, "ChecklistApproved", "False"),
                summary(&p),
            );
        }
        tokio::time::sleep(SETTLE).await;
        for name in [&first, &second] {
            t.fact(
                &format!("{name}: no namespace"),
                !namespace_exists(&w.admin, name).await?,
                "",
            );
            let can = env.can_i(&w.owner, &[AUTHENTICATED], "get", "pods", Some(name)).await;
            t.fact(
                &format!("{name}: the owner may not get pods in its namespace"),
                !can,
                if can { "allowed" } else { "" },
            );
        }
        t.row(
            "the owner turns the rejection into an approval",
            Expect::Hook(403, texts(&["spec.checklistReview"])),
            projects(&as_owner)
                .patch(&first, &patch_params(), &review_patch("Approved", comment))
                .await,
        );

        // The owner deletes the first: it goes, leaving no namespace.
        t.row(
            &format!("the owner deletes {first}"),
            Expect::Allowed,
            projects(&as_owner)
                .delete(&first, &DeleteParams::default())
                .await,
        );
        let gone = wait_project_gone(&w.admin, &first).await;
        t.waited(&format!("{first} is gone"), gone)?;
        t.fact(
            &format!("{first}: still no namespace"),
            !namespace_exists(&w.admin, &first).await?,
            "",
        );

        // The owner answers the second without genetic data: nothing needs a review any more.
        t.row(
            &format!("the owner changes {second}'s categories to contact only"),
            Expect::Allowed,
            projects(&as_owner)
                .patch(
                    &second,
                    &patch_params(),
                    &merge(json!({"spec": {"checklistAnswers": {CATEGORIES.0: ["contact"], CONSENT.0: null}}})),
                )
                .await,
        );
        let p = wait_active(&w.admin, &second).await;
        t.waited(&format!("{second} proceeds: Active and Ready"), p)?;
        t.fact(
            &format!("{second}: its namespace exists"),
            namespace_exists(&w.admin, &second).await?,
            "",
        );
        t.finish("rejected answers")
    })
    .await
}
