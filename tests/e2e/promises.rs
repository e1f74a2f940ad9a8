//! README promises that no other module pins, each a real request against the running operator:
//! what a customer owner and a project manager may change (impersonated requests, refusals by
//! HTTP code and message), the customer quota end to end (`quota.projects` exhausted and freed
//! by a soft delete, a project's quota resized within and beyond what is left), GitOps server-side
//! apply without force never conflicting with the operator (read from `managedFields`), the
//! operator's health and metrics endpoints, metric values that follow what a trial caused, and
//! the Events the README lists, read from the cluster.
//!
//! Not pinned here: "without a price list there is no `cost`" (the suite's operator runs with a
//! price list, `reconcile::PRICES`).
//!
//! The trial of [`exclusive_trials`] reads a gauge over every project of the cluster, so it runs
//! alone.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Event, Namespace, ResourceQuota};
use k8s_openapi::api::rbac::v1::RoleBinding;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ManagedFieldsEntry};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tenancy_operator::api::{Customer, MembershipPhase, Project, ProjectMembership, ProjectPhase};
use tenancy_operator::desired::quantity::same_quantity;

use crate::support::{
    Env, Failed, TestResult, Trial, from_json, owners, pp, refusal, status_text, trial,
    unique_name, wait_access, wait_access_named, wait_for, wait_project_gone,
};

pub fn trials(env: &Arc<Env>) -> Vec<Trial> {
    vec![
        trial(
            env,
            "promises::the_staff_groups_flag_decides_who_is_staff",
            the_staff_groups_flag_decides_who_is_staff,
        ),
        trial(
            env,
            "promises::owner_changes_project_fields_and_customer_display_fields_but_not_owners_or_quota",
            owner_changes_project_fields_and_customer_display_fields_but_not_owners_or_quota,
        ),
        trial(
            env,
            "promises::manager_switches_member_and_administrator_but_not_managers_or_self",
            manager_switches_member_and_administrator_but_not_managers_or_self,
        ),
        trial(
            env,
            "promises::customer_quota_is_exhausted_freed_by_a_soft_delete_and_bounds_a_resize",
            customer_quota_is_exhausted_freed_by_a_soft_delete_and_bounds_a_resize,
        ),
        trial(
            env,
            "promises::gitops_apply_without_force_never_conflicts_and_the_operator_owns_only_status",
            gitops_apply_without_force_never_conflicts_and_the_operator_owns_only_status,
        ),
        trial(
            env,
            "promises::the_operator_writes_gitops_objects_only_under_its_field_manager",
            the_operator_writes_gitops_objects_only_under_its_field_manager,
        ),
        trial(
            env,
            "promises::health_readiness_and_metrics_endpoints_answer",
            health_readiness_and_metrics_endpoints_answer,
        ),
        trial(
            env,
            "promises::metric_counters_count_what_was_caused",
            metric_counters_count_what_was_caused,
        ),
        trial(
            env,
            "promises::a_failing_reconcile_is_counted_in_reconcile_errors",
            a_failing_reconcile_is_counted_in_reconcile_errors,
        ),
        trial(
            env,
            "promises::lifecycle_events_are_recorded_on_their_objects",
            lifecycle_events_are_recorded_on_their_objects,
        ),
    ]
}

/// Trials that must run alone, one at a time, after all others.
pub fn exclusive_trials(env: &Arc<Env>) -> Vec<Trial> {
    vec![trial(
        env,
        "promises::exclusive::conflict_gauge_rises_with_a_conflicting_project_and_falls_when_it_goes",
        conflict_gauge_rises_with_a_conflicting_project_and_falls_when_it_goes,
    )]
}

/// How long the operator may take to reconcile a change.
const RECONCILE_TIMEOUT: Duration = Duration::from_secs(60);

/// What the webhook answers an owner who changes more than the customer's display fields.
const DISPLAY_FIELDS_ONLY: &str =
    "may change only displayName, nativeName, abbreviation and displayBillingInfoInProjects";

/// What the webhook's denials start with (the apiserver's wording).
const DENIED_BY_WEBHOOK: &str = "admission webhook \"validate.tenancy.dev\" denied the request";

/// The operator's field manager.
const OPERATOR_MANAGER: &str = "tenancy-operator";
/// The field manager the GitOps trial applies with, as Argo CD does.
const ARGOCD_MANAGER: &str = "argocd-controller";

// ---------------------------------------------------------------------------------------------
// Objects

fn customer_obj(name: &str, spec: Value) -> Customer {
    from_json(json!({
        "apiVersion": "tenancy.dev/v1alpha1", "kind": "Customer",
        "metadata": {"name": name}, "spec": spec,
    }))
}

fn project_obj(name: &str, spec: Value) -> Project {
    from_json(json!({
        "apiVersion": "tenancy.dev/v1alpha1", "kind": "Project",
        "metadata": {"name": name}, "spec": spec,
    }))
}

fn membership_obj(ns: &str, name: &str, user: &str, role: &str) -> ProjectMembership {
    from_json(json!({
        "apiVersion": "tenancy.dev/v1alpha1", "kind": "ProjectMembership",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"subject": {"kind": "User", "name": user}, "role": role},
    }))
}

fn spec_patch(spec: Value) -> Patch<Value> {
    Patch::Merge(json!({ "spec": spec }))
}

fn outcome<T>(result: &Result<T, kube::Error>) -> String {
    match result {
        Ok(_) => "allowed".into(),
        Err(e) => {
            let (code, message) = refusal(e);
            format!("HTTP {code}: {message}")
        }
    }
}

/// Creates `object`; a 422 saying the customer "does not exist" right after the customer was
/// created (the webhook decides from the operator's watch caches) is retried for up to 10 s.
async fn create_retrying<K>(api: &Api<K>, object: &K) -> Result<K, kube::Error>
where
    K: Resource + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match api.create(&pp(), object).await {
            Err(kube::Error::Api(s))
                if s.code == 422
                    && s.message.contains("does not exist")
                    && Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            other => return other,
        }
    }
}

/// Server-side applies `object` as the GitOps tool does: field manager `argocd-controller`,
/// WITHOUT force, so that any field another manager owns answers 409 Conflict. A 422 saying the
/// customer "does not exist" (the webhook's cache a moment behind) is retried for up to 10 s;
/// every other error, a conflict above all, is returned.
async fn apply_as_argocd<K>(api: &Api<K>, name: &str, object: &Value) -> Result<K, kube::Error>
where
    K: Resource + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match api
            .patch(
                name,
                &PatchParams::apply(ARGOCD_MANAGER),
                &Patch::Apply(object),
            )
            .await
        {
            Err(kube::Error::Api(s))
                if s.code == 422
                    && s.message.contains("does not exist")
                    && Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            other => return other,
        }
    }
}

fn is_true(conditions: &[Condition], type_: &str) -> bool {
    conditions
        .iter()
        .any(|c| c.type_ == type_ && c.status == "True")
}

/// The last lines of the operator's log, for failure messages.
fn operator_log_tail(env: &Env, lines: usize) -> String {
    match env.operator() {
        Some(op) => format!(
            "\n--- last lines of {} ---\n{}",
            op.log_path().display(),
            op.log_tail(lines)
        ),
        None => String::new(),
    }
}

/// The lines of the operator's log that mention `needle`, without terminal colour codes.
fn operator_log_lines(env: &Env, needle: &str) -> Vec<String> {
    env.operator()
        .and_then(|op| std::fs::read_to_string(op.log_path()).ok())
        .map(|log| {
            log.lines()
                .map(tenancy_operator::devcluster::process::without_colours)
                .filter(|l| l.contains(needle))
                .collect()
        })
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// Waiting and access checks

/// Waits until the project satisfies `check` (which says why not); the failure says what the
/// project looked like last.
async fn project_where(
    client: &Client,
    name: &str,
    what: &str,
    check: impl Fn(&Project) -> Result<(), String>,
) -> Result<Project, Failed> {
    let api = Api::<Project>::all(client.clone());
    let last = std::sync::Mutex::new(String::new());
    let waited = wait_for(
        &format!("project {name}: {what}"),
        RECONCILE_TIMEOUT,
        || {
            let api = api.clone();
            let check = &check;
            let last = &last;
            async move {
                let p = match api.get_opt(name).await {
                    Ok(Some(p)) => p,
                    other => {
                        *last.lock().unwrap() = format!("reading it: {other:?}");
                        return None;
                    }
                };
                match check(&p) {
                    Ok(()) => Some(p),
                    Err(why) => {
                        *last.lock().unwrap() = why;
                        None
                    }
                }
            }
        },
    )
    .await;
    waited.map_err(|e| {
        format!(
            "{}; last: {}",
            e.message().unwrap_or_default(),
            last.lock().unwrap()
        )
        .into()
    })
}

/// Ready=True for the current generation.
fn project_ready(p: &Project) -> Result<(), String> {
    let status = p.status.as_ref().ok_or("no status yet")?;
    if status.observed_generation == p.metadata.generation && is_true(&status.conditions, "Ready") {
        Ok(())
    } else {
        Err(format!("status is {}", status_text(&p.status)))
    }
}

async fn wait_project_ready(client: &Client, name: &str) -> Result<Project, Failed> {
    project_where(client, name, "Ready for its generation", project_ready).await
}

/// Waits until the project has the soft-delete finalizer (so deleting it archives it).
async fn wait_finalizer(client: &Client, name: &str) -> TestResult {
    project_where(client, name, "soft-delete finalizer added", |p| {
        if p.finalizers()
            .iter()
            .any(|f| f == "tenancy.dev/soft-delete")
        {
            Ok(())
        } else {
            Err(format!("finalizers are {:?}", p.finalizers()))
        }
    })
    .await
    .map(|_| ())
}

/// Waits until the membership is Active for its generation, with its RoleBinding.
async fn wait_membership_active(
    client: &Client,
    ns: &str,
    name: &str,
) -> Result<ProjectMembership, Failed> {
    let api: Api<ProjectMembership> = Api::namespaced(client.clone(), ns);
    wait_for(
        &format!("membership {ns}/{name} to be Active"),
        RECONCILE_TIMEOUT,
        || async {
            let m = api.get_opt(name).await.ok().flatten()?;
            let s = m.status.as_ref()?;
            (s.phase == Some(MembershipPhase::Active)
                && s.role_binding.is_some()
                && s.observed_generation == m.metadata.generation)
                .then_some(m)
        },
    )
    .await
}

/// Best-effort cleanup: projects first (soft delete), then customers, then namespaces.
async fn cleanup(client: &Client, projects: &[&str], customers: &[&str], namespaces: &[&str]) {
    let dp = DeleteParams::default();
    for p in projects {
        let _ = Api::<Project>::all(client.clone()).delete(p, &dp).await;
    }
    for c in customers {
        let _ = Api::<Customer>::all(client.clone()).delete(c, &dp).await;
    }
    for n in namespaces {
        let _ = Api::<Namespace>::all(client.clone()).delete(n, &dp).await;
    }
}

// ---------------------------------------------------------------------------------------------
// A table of requests and what each must answer

/// What a row expects.
#[derive(Clone, Copy, Debug)]
enum Expect {
    /// The request succeeds.
    Allowed,
    /// The webhook refuses it with this HTTP code and this text in its message.
    Webhook(u16, &'static str),
}

#[derive(Default)]
struct Table {
    rows: Vec<String>,
    problems: Vec<String>,
}

impl Table {
    fn row<T>(&mut self, what: &str, expect: Expect, result: &Result<T, kube::Error>) -> bool {
        let (code, message) = match result {
            Ok(_) => (200, String::new()),
            Err(e) => refusal(e),
        };
        let ok = match expect {
            Expect::Allowed => result.is_ok(),
            Expect::Webhook(want, text) => {
                code == want && message.contains(DENIED_BY_WEBHOOK) && message.contains(text)
            }
        };
        let got = outcome(result);
        self.rows.push(format!(
            "{} {what} -> {got}",
            if ok { "ok  " } else { "FAIL" }
        ));
        if !ok {
            self.problems
                .push(format!("{what}: expected {expect:?}, got {got}"));
        }
        ok
    }

    /// A check that is not a request (what the cluster holds afterwards).
    fn check(&mut self, what: &str, ok: bool, detail: String) {
        self.rows.push(format!(
            "{} {what}: {detail}",
            if ok { "ok  " } else { "FAIL" }
        ));
        if !ok {
            self.problems.push(format!("{what}: {detail}"));
        }
    }

    fn finish(self, env: &Env, name: &str) -> TestResult {
        eprintln!("[e2e] {name}:\n  {}", self.rows.join("\n  "));
        if self.problems.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{} of {} rows failed:\n  {}\nall rows:\n  {}{}",
                self.problems.len(),
                self.rows.len(),
                self.problems.join("\n  "),
                self.rows.join("\n  "),
                operator_log_tail(env, 30)
            )
            .into())
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 1. A customer owner changes ordinary project fields and the customer's display fields only

async fn owner_changes_project_fields_and_customer_display_fields_but_not_owners_or_quota(
    env: Arc<Env>,
) -> TestResult {
    let admin = env.client().await;
    let cust = unique_name("e2e-prom-owner");
    let owner = format!("{cust}-olga");
    let project = format!("{cust}-web");
    Api::<Customer>::all(admin.clone())
        .create(
            &pp(),
            &customer_obj(
                &cust,
                json!({"displayName": "Acme", "owners": owners(&[&owner])}),
            ),
        )
        .await?;
    let result = async {
        let as_owner = env.client_as(&owner, &[]).await;
        let projects = Api::<Project>::all(as_owner.clone());
        let customers = Api::<Customer>::all(as_owner.clone());
        let mut t = Table::default();

        wait_access(&env, &owner, "create", "projects.tenancy.dev", None, true).await?;
        let created = create_retrying(
            &projects,
            &project_obj(&project, json!({"customer": cust, "displayName": "Web"})),
        )
        .await;
        if !t.row("owner creates a project", Expect::Allowed, &created) {
            return t.finish(&env, "owner rows");
        }
        wait_access_named(&env, &owner, "patch", "projects.tenancy.dev", &project, None, true).await?;
        let pp_ = PatchParams::default();
        t.row(
            "owner changes the project's displayName",
            Expect::Allowed,
            &projects
                .patch(&project, &pp_, &spec_patch(json!({"displayName": "Web shop"})))
                .await,
        );
        t.row(
            "owner changes the project's description",
            Expect::Allowed,
            &projects
                .patch(
                    &project,
                    &pp_,
                    &spec_patch(json!({"description": "the shop front"})),
                )
                .await,
        );
        t.row(
            "owner changes the project's endDate",
            Expect::Allowed,
            &projects
                .patch(&project, &pp_, &spec_patch(json!({"endDate": "2099-12-31"})))
                .await,
        );
        let stored = Api::<Project>::all(admin.clone()).get(&project).await?;
        t.check(
            "the project holds the owner's values",
            stored.spec.display_name.as_deref() == Some("Web shop")
                && stored.spec.description.as_deref() == Some("the shop front")
                && stored.spec.end_date.as_deref() == Some("2099-12-31"),
            format!(
                "displayName {:?}, description {:?}, endDate {:?}",
                stored.spec.display_name, stored.spec.description, stored.spec.end_date
            ),
        );
        let requested_by = stored
            .annotations()
            .get("tenancy.dev/end-date-requested-by")
            .cloned();
        t.check(
            "the webhook records who requested the end date",
            requested_by.as_deref() == Some(owner.as_str()),
            format!("tenancy.dev/end-date-requested-by = {requested_by:?}"),
        );

        // The customer: display fields yes, owners and quota no.
        wait_access_named(&env, &owner, "patch", "customers.tenancy.dev", &cust, None, true).await?;
        for (field, value) in [
            ("displayName", json!("ACME Research")),
            ("nativeName", json!("ACME Forschung")),
            ("abbreviation", json!("ACME")),
            ("displayBillingInfoInProjects", json!(true)),
        ] {
            t.row(
                &format!("owner changes the customer's {field}"),
                Expect::Allowed,
                &customers
                    .patch(&cust, &pp_, &spec_patch(json!({ field: value })))
                    .await,
            );
        }
        let other = format!("{cust}-otto");
        t.row(
            "owner adds an owner to the customer",
            Expect::Webhook(403, DISPLAY_FIELDS_ONLY),
            &customers
                .patch(
                    &cust,
                    &pp_,
                    &spec_patch(json!({"owners": owners(&[&owner, &other])})),
                )
                .await,
        );
        t.row(
            "owner removes themself from the customer's owners",
            Expect::Webhook(403, DISPLAY_FIELDS_ONLY),
            &customers
                .patch(&cust, &pp_, &spec_patch(json!({"owners": owners(&[&other])})))
                .await,
        );
        // A quota its one project fits (so no 409 for everyone comes first).
        t.row(
            "owner sets the customer's quota",
            Expect::Webhook(403, DISPLAY_FIELDS_ONLY),
            &customers
                .patch(&cust, &pp_, &spec_patch(json!({"quota": {"projects": 10}})))
                .await,
        );
        let c = Api::<Customer>::all(admin.clone()).get(&cust).await?;
        let holders: Vec<&str> = c.spec.owners.iter().map(|h| h.name.as_str()).collect();
        t.check(
            "the customer holds the owner's display fields, its owners and no quota",
            c.spec.display_name.as_deref() == Some("ACME Research")
                && c.spec.native_name.as_deref() == Some("ACME Forschung")
                && c.spec.abbreviation.as_deref() == Some("ACME")
                && c.spec.display_billing_info_in_projects == Some(true)
                && holders == [owner.as_str()]
                && c.spec.quota.is_none(),
            format!(
                "displayName {:?}, nativeName {:?}, abbreviation {:?}, displayBillingInfoInProjects {:?}, owners {holders:?}, quota {:?}",
                c.spec.display_name,
                c.spec.native_name,
                c.spec.abbreviation,
                c.spec.display_billing_info_in_projects,
                c.spec.quota
            ),
        );
        // The display fields reach the project's status.customer.
        let copied = project_where(&admin, &project, "status.customer has the display fields", |p| {
            let s = p.status.as_ref().and_then(|s| s.customer.as_ref());
            match s {
                Some(s)
                    if s.display_name.as_deref() == Some("ACME Research")
                        && s.native_name.as_deref() == Some("ACME Forschung")
                        && s.abbreviation.as_deref() == Some("ACME")
                        && s.display_billing_info_in_projects =>
                {
                    Ok(())
                }
                _ => Err(format!("status.customer is {}", status_text(&s.cloned()))),
            }
        })
        .await;
        t.check(
            "the customer's display fields are copied to the project's status.customer",
            copied.is_ok(),
            copied
                .err()
                .and_then(|e| e.message().map(str::to_string))
                .unwrap_or_else(|| "copied".into()),
        );
        t.finish(&env, "owner rows")
    }
    .await;
    cleanup(&admin, &[&project], &[&cust], &[]).await;
    result
}

// ---------------------------------------------------------------------------------------------
// 2. A Manager handles Member and Administrator memberships, never a Manager's nor their own

async fn manager_switches_member_and_administrator_but_not_managers_or_self(
    env: Arc<Env>,
) -> TestResult {
    let admin = env.client().await;
    let cust = unique_name("e2e-prom-mgr");
    let project = format!("{cust}-lab");
    let (manager, manager2, worker, admin_user) = (
        format!("{cust}-mona"),
        format!("{cust}-max"),
        format!("{cust}-will"),
        format!("{cust}-ada"),
    );
    Api::<Customer>::all(admin.clone())
        .create(
            &pp(),
            &customer_obj(&cust, json!({"owners": owners(&[&format!("{cust}-olga")])})),
        )
        .await?;
    let result = async {
        create_retrying(
            &Api::<Project>::all(admin.clone()),
            &project_obj(&project, json!({"customer": cust})),
        )
        .await?;
        wait_project_ready(&admin, &project).await?;
        let admin_members = Api::<ProjectMembership>::namespaced(admin.clone(), &project);
        for (name, user, role) in [
            ("mona", &manager, "Manager"),
            ("max", &manager2, "Manager"),
            ("will", &worker, "Member"),
            ("ada", &admin_user, "Administrator"),
        ] {
            create_retrying(&admin_members, &membership_obj(&project, name, user, role)).await?;
        }
        for name in ["mona", "max", "will", "ada"] {
            wait_membership_active(&admin, &project, name).await?;
        }
        let ns = Some(project.as_str());
        wait_access(&env, &manager, "patch", "projectmemberships.tenancy.dev", ns, true).await?;
        wait_access(&env, &worker, "list", "pods", ns, true).await?;
        let deploy = "deployments.apps";
        wait_access(&env, &admin_user, "create", deploy, ns, true).await?;
        let mut t = Table::default();
        t.check(
            "a Member may not create deployments (will, Member)",
            !env.can_i(&worker, &[], "create", deploy, ns).await,
            "SubjectAccessReview".into(),
        );
        t.check(
            "an Administrator may create deployments (ada, Administrator)",
            env.can_i(&admin_user, &[], "create", deploy, ns).await,
            "SubjectAccessReview".into(),
        );

        // What the operator did with a membership, for a failure message: its status, its
        // RoleBinding's roleRef, and the operator's last log line about it.
        let explain = |name: &'static str| {
            let admin_members = admin_members.clone();
            let project = project.clone();
            let env = env.clone();
            let admin = admin.clone();
            async move {
                let m = admin_members.get_opt(name).await.ok().flatten();
                let rb = Api::<RoleBinding>::namespaced(admin, &project)
                    .get_opt(&format!("tenancy-member-{name}"))
                    .await
                    .ok()
                    .flatten();
                let needle = format!("ProjectMembership.v1alpha1.tenancy.dev/{name}.{project}");
                let log = operator_log_lines(&env, &needle)
                    .into_iter()
                    .rfind(|l| l.contains("reconcile failed"))
                    .map(|l| l.chars().take(700).collect::<String>())
                    .unwrap_or_else(|| "(no failed reconcile logged)".into());
                format!(
                    "membership {name}: spec.role {:?}, generation {:?}, status {}; RoleBinding tenancy-member-{name} roleRef {:?}; operator log: {log}",
                    m.as_ref().map(|m| m.spec.role.as_str()),
                    m.as_ref().and_then(|m| m.metadata.generation),
                    m.as_ref().map(|m| status_text(&m.status)).unwrap_or_default(),
                    rb.map(|rb| rb.role_ref.name),
                )
            }
        };

        let members =
            Api::<ProjectMembership>::namespaced(env.client_as(&manager, &[]).await, &project);
        let pp_ = PatchParams::default();
        let role = |r: &str| spec_patch(json!({ "role": r }));
        let promoted = members.patch("will", &pp_, &role("Administrator")).await;
        if t.row(
            "manager changes will's membership from Member to Administrator",
            Expect::Allowed,
            &promoted,
        ) {
            let granted = wait_access(&env, &worker, "create", deploy, ns, true).await;
            let detail = match &granted {
                Ok(()) => "allowed".to_string(),
                Err(e) => format!("{}; {}", e.message().unwrap_or_default(), explain("will").await),
            };
            t.check("will, now Administrator, may create deployments", granted.is_ok(), detail);
        }
        let demoted = members.patch("ada", &pp_, &role("Member")).await;
        if t.row(
            "manager changes ada's membership from Administrator to Member",
            Expect::Allowed,
            &demoted,
        ) {
            let revoked = wait_access(&env, &admin_user, "create", deploy, ns, false).await;
            let detail = match &revoked {
                Ok(()) => "refused".to_string(),
                Err(e) => format!("{}; {}", e.message().unwrap_or_default(), explain("ada").await),
            };
            t.check("ada, now Member, may no longer create deployments", revoked.is_ok(), detail);
            let still_reads = env.can_i(&admin_user, &[], "list", "pods", ns).await;
            t.check("ada, now Member, still lists pods", still_reads, "SubjectAccessReview".into());
        }
        let back = members.patch("will", &pp_, &role("Member")).await;
        if t.row(
            "manager changes will's membership back to Member",
            Expect::Allowed,
            &back,
        ) {
            let refused = wait_access(&env, &worker, "create", deploy, ns, false).await;
            t.check(
                "will, Member again, may not create deployments",
                refused.is_ok(),
                format!("{refused:?}"),
            );
        }

        const NOT_MANAGER_ROLE: &str = "may not grant or change the Manager role";
        const NOT_OWN: &str = "may not change their own membership";
        t.row(
            "manager changes another Manager's membership to Administrator",
            Expect::Webhook(403, NOT_MANAGER_ROLE),
            &members.patch("max", &pp_, &role("Administrator")).await,
        );
        t.row(
            "manager sets an expirationTime on another Manager's membership",
            Expect::Webhook(403, NOT_MANAGER_ROLE),
            &members
                .patch(
                    "max",
                    &pp_,
                    &spec_patch(json!({"expirationTime": "2099-01-01T00:00:00Z"})),
                )
                .await,
        );
        t.row(
            "manager deletes another Manager's membership",
            Expect::Webhook(403, NOT_MANAGER_ROLE),
            &members.delete("max", &DeleteParams::default()).await,
        );
        t.row(
            "manager changes their own membership to Administrator",
            Expect::Webhook(403, NOT_OWN),
            &members.patch("mona", &pp_, &role("Administrator")).await,
        );
        t.row(
            "manager sets an expirationTime on their own membership",
            Expect::Webhook(403, NOT_OWN),
            &members
                .patch(
                    "mona",
                    &pp_,
                    &spec_patch(json!({"expirationTime": "2099-01-01T00:00:00Z"})),
                )
                .await,
        );
        let max = admin_members.get("max").await?;
        let mona = admin_members.get("mona").await?;
        t.check(
            "both Manager memberships are as they were",
            max.spec.role.as_str() == "Manager"
                && max.spec.expiration_time.is_none()
                && max.metadata.deletion_timestamp.is_none()
                && mona.spec.role.as_str() == "Manager"
                && mona.spec.expiration_time.is_none(),
            format!(
                "max: {} until {:?}; mona: {} until {:?}",
                max.spec.role.as_str(),
                max.spec.expiration_time,
                mona.spec.role.as_str(),
                mona.spec.expiration_time
            ),
        );
        t.finish(&env, "manager rows")
    }
    .await;
    cleanup(&admin, &[&project], &[&cust], &[]).await;
    result
}

// ---------------------------------------------------------------------------------------------
// 3. The customer quota end to end

async fn customer_quota_is_exhausted_freed_by_a_soft_delete_and_bounds_a_resize(
    env: Arc<Env>,
) -> TestResult {
    let admin = env.client().await;
    let cust = unique_name("e2e-prom-quota");
    let owner = format!("{cust}-olga");
    let (a, b, c) = (
        format!("{cust}-a"),
        format!("{cust}-b"),
        format!("{cust}-c"),
    );
    Api::<Customer>::all(admin.clone())
        .create(
            &pp(),
            &customer_obj(
                &cust,
                json!({
                    "owners": owners(&[&owner]),
                    "quota": {"projects": 2, "hard": {"requests.cpu": "2"}},
                }),
            ),
        )
        .await?;
    let result = async {
        let projects = Api::<Project>::all(env.client_as(&owner, &[]).await);
        let cpu = |q: &str| json!({"hard": {"requests.cpu": q}});
        let with_cpu =
            |name: &str, q: &str| project_obj(name, json!({"customer": cust, "quota": cpu(q)}));
        let mut t = Table::default();
        wait_access(&env, &owner, "create", "projects.tenancy.dev", None, true).await?;
        let first = create_retrying(&projects, &with_cpu(&a, "500m")).await;
        let second = create_retrying(&projects, &with_cpu(&b, "500m")).await;
        let ok_a = t.row(
            "owner creates the first project (500m)",
            Expect::Allowed,
            &first,
        );
        let ok_b = t.row(
            "owner creates the second project (500m)",
            Expect::Allowed,
            &second,
        );
        if !(ok_a && ok_b) {
            return t.finish(&env, "quota rows");
        }
        t.row(
            "owner creates a third project: quota.projects is 2",
            Expect::Webhook(409, "quota.projects"),
            &projects.create(&pp(), &with_cpu(&c, "500m")).await,
        );
        let missing = projects
            .create(
                &pp(),
                &project_obj(&format!("{cust}-d"), json!({"customer": cust})),
            )
            .await;
        // (A project that sets no requests.cpu is refused before the ledger is asked: 422.)
        t.row(
            "owner creates a project that sets no requests.cpu",
            Expect::Webhook(422, "spec.quota.hard"),
            &missing,
        );

        // A soft delete makes room.
        wait_finalizer(&admin, &b).await?;
        wait_access_named(
            &env,
            &owner,
            "delete",
            "projects.tenancy.dev",
            &b,
            None,
            true,
        )
        .await?;
        let deleted = projects.delete(&b, &DeleteParams::default()).await;
        if !t.row(
            "owner deletes the second project",
            Expect::Allowed,
            &deleted,
        ) {
            return t.finish(&env, "quota rows");
        }
        wait_project_gone(&admin, &b).await?;
        t.row(
            "owner creates the third project once the second is gone",
            Expect::Allowed,
            &projects.create(&pp(), &with_cpu(&c, "500m")).await,
        );

        // A resize within what is left, then beyond it.
        wait_project_ready(&admin, &a).await?;
        wait_access_named(
            &env,
            &owner,
            "patch",
            "projects.tenancy.dev",
            &a,
            None,
            true,
        )
        .await?;
        let pp_ = PatchParams::default();
        let raised = projects
            .patch(&a, &pp_, &spec_patch(json!({"quota": cpu("1")})))
            .await;
        if t.row(
            "owner raises the first project's requests.cpu to 1 (1500m of 2 then held)",
            Expect::Allowed,
            &raised,
        ) {
            let quotas = Api::<ResourceQuota>::namespaced(admin.clone(), &a);
            let followed = wait_for(
                &format!("ResourceQuota {a}/tenancy-quota spec.hard requests.cpu = 1"),
                RECONCILE_TIMEOUT,
                || async {
                    let q = quotas.get_opt("tenancy-quota").await.ok().flatten()?;
                    let hard = q.spec?.hard?;
                    same_quantity(&hard.get("requests.cpu")?.0, "1").then_some(())
                },
            )
            .await;
            t.check(
                "the namespace's ResourceQuota follows (spec.hard requests.cpu = 1)",
                followed.is_ok(),
                format!("{followed:?}"),
            );
        }
        t.row(
            "owner raises the first project's requests.cpu to 2 (beyond the 1500m left)",
            Expect::Webhook(409, "quota exhausted"),
            &projects
                .patch(&a, &pp_, &spec_patch(json!({"quota": cpu("2")})))
                .await,
        );
        let stored = Api::<Project>::all(admin.clone()).get(&a).await?;
        let held = stored
            .spec
            .quota
            .as_ref()
            .and_then(|q| q.hard.get("requests.cpu").map(|v| v.0.clone()));
        t.check(
            "the refused resize left the project at 1",
            held.as_deref().is_some_and(|v| same_quantity(v, "1")),
            format!("spec.quota.hard requests.cpu = {held:?}"),
        );
        t.finish(&env, "quota rows")
    }
    .await;
    cleanup(&admin, &[&a, &b, &c], &[&cust], &[]).await;
    result
}

// ---------------------------------------------------------------------------------------------
// 4. GitOps: server-side apply without force never conflicts with the operator

/// One managedFields entry, as the report shows it.
fn describe_entry(e: &ManagedFieldsEntry) -> String {
    let top: Vec<String> = e
        .fields_v1
        .as_ref()
        .and_then(|f| f.0.as_object())
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    format!(
        "{} {} subresource={:?} fields={top:?}",
        e.manager.as_deref().unwrap_or("?"),
        e.operation.as_deref().unwrap_or("?"),
        e.subresource.as_deref().unwrap_or("")
    )
}

/// Every leaf path of a fieldsV1 tree (`f:spec.f:displayName`).
fn field_paths(value: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    match value.as_object() {
        Some(map) if !map.is_empty() => {
            for (k, v) in map {
                if k == "." {
                    out.insert(prefix.to_string());
                    continue;
                }
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                field_paths(v, &path, out);
            }
        }
        _ => {
            out.insert(prefix.to_string());
        }
    }
}

fn paths_of(entries: &[ManagedFieldsEntry], manager: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for e in entries
        .iter()
        .filter(|e| e.manager.as_deref() == Some(manager))
    {
        if let Some(f) = &e.fields_v1 {
            field_paths(&f.0, "", &mut out);
        }
    }
    out
}

/// The fields of the soft-delete finalizer the operator puts on every Project (part of the
/// documented soft delete), which its manager may own besides status.
const SOFT_DELETE_FINALIZER_PATHS: &[&str] = &[
    "f:metadata.f:finalizers",
    "f:metadata.f:finalizers.v:\"tenancy.dev/soft-delete\"",
];

/// What is wrong with an object's managedFields: the operator's manager owning anything but
/// status (and a Project's soft-delete finalizer), or owning a field the GitOps tool applied.
fn managed_fields_problems(what: &str, entries: &[ManagedFieldsEntry]) -> Vec<String> {
    let mut problems = Vec::new();
    for e in entries
        .iter()
        .filter(|e| e.manager.as_deref() == Some(OPERATOR_MANAGER))
    {
        let mut paths = BTreeSet::new();
        if let Some(f) = &e.fields_v1 {
            field_paths(&f.0, "", &mut paths);
        }
        let on_status = e.subresource.as_deref() == Some("status")
            && paths.iter().all(|p| p.starts_with("f:status"));
        let finalizer_only = e.subresource.as_deref().unwrap_or_default().is_empty()
            && paths
                .iter()
                .all(|p| SOFT_DELETE_FINALIZER_PATHS.contains(&p.as_str()));
        if !(on_status || finalizer_only) {
            problems.push(format!(
                "{what}: {OPERATOR_MANAGER} owns more than status: {} {paths:?}",
                describe_entry(e)
            ));
        }
    }
    let ours = paths_of(entries, OPERATOR_MANAGER);
    let theirs = paths_of(entries, ARGOCD_MANAGER);
    let shared: Vec<&String> = ours.intersection(&theirs).collect();
    if !shared.is_empty() {
        problems.push(format!(
            "{what}: fields owned by both {OPERATOR_MANAGER} and {ARGOCD_MANAGER}: {shared:?}"
        ));
    }
    if theirs.is_empty() {
        problems.push(format!("{what}: {ARGOCD_MANAGER} owns nothing"));
    }
    problems
}

/// The managedFields entries of `entries` written by neither the GitOps tool nor the operator's
/// own field manager, with the fields each owns.
fn foreign_writes(entries: &[ManagedFieldsEntry]) -> Vec<String> {
    entries
        .iter()
        .filter(|e| {
            !matches!(
                e.manager.as_deref(),
                Some(OPERATOR_MANAGER) | Some(ARGOCD_MANAGER)
            )
        })
        .map(|e| {
            let mut paths = BTreeSet::new();
            if let Some(f) = &e.fields_v1 {
                field_paths(&f.0, "", &mut paths);
            }
            format!("{} {paths:?}", describe_entry(e))
        })
        .collect()
}

/// "It writes only status and the children it owns, by server-side apply under its own field
/// manager `tenancy-operator`": on objects only the GitOps tool applies, every managedFields
/// entry is the tool's or `tenancy-operator`'s, so that a diff of who owns what shows every
/// operator write as the operator's.
async fn the_operator_writes_gitops_objects_only_under_its_field_manager(
    env: Arc<Env>,
) -> TestResult {
    let admin = env.client().await;
    let cust = unique_name("e2e-prom-managers");
    let project = format!("{cust}-app");
    let customers = Api::<Customer>::all(admin.clone());
    let projects = Api::<Project>::all(admin.clone());
    let result = async {
        apply_as_argocd(
            &customers,
            &cust,
            &json!({
                "apiVersion": "tenancy.dev/v1alpha1", "kind": "Customer",
                "metadata": {"name": cust}, "spec": {"displayName": "Managers"},
            }),
        )
        .await?;
        apply_as_argocd(
            &projects,
            &project,
            &json!({
                "apiVersion": "tenancy.dev/v1alpha1", "kind": "Project",
                "metadata": {"name": project}, "spec": {"customer": cust},
            }),
        )
        .await?;
        wait_project_ready(&admin, &project).await?;
        wait_finalizer(&admin, &project).await?;
        let c = customers.get(&cust).await?;
        let p = projects.get(&project).await?;
        let mut problems = Vec::new();
        for (what, entries) in [
            (format!("Customer {cust}"), entries_of(&c)),
            (format!("Project {project}"), entries_of(&p)),
        ] {
            let foreign = foreign_writes(&entries);
            eprintln!(
                "[e2e] {what} managedFields: {:?}",
                entries.iter().map(describe_entry).collect::<Vec<_>>()
            );
            if !foreign.is_empty() {
                problems.push(format!(
                    "{what}: written under a field manager that is neither {ARGOCD_MANAGER} nor {OPERATOR_MANAGER}: {foreign:?}"
                ));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("\n").into())
        }
    }
    .await;
    cleanup(&admin, &[&project], &[&cust], &[]).await;
    result
}

fn entries_of<K: Resource>(obj: &K) -> Vec<ManagedFieldsEntry> {
    obj.meta().managed_fields.clone().unwrap_or_default()
}

async fn gitops_apply_without_force_never_conflicts_and_the_operator_owns_only_status(
    env: Arc<Env>,
) -> TestResult {
    let admin = env.client().await;
    let cust = unique_name("e2e-prom-gitops");
    let project = format!("{cust}-app");
    let customers = Api::<Customer>::all(admin.clone());
    let projects = Api::<Project>::all(admin.clone());
    let members = Api::<ProjectMembership>::namespaced(admin.clone(), &project);
    let manifests = |display: &str, expires: &str| {
        (
            json!({
                "apiVersion": "tenancy.dev/v1alpha1", "kind": "Customer",
                "metadata": {"name": cust, "labels": {"app.kubernetes.io/instance": "tenants"}},
                "spec": {"displayName": display, "owners": owners(&[&format!("{cust}-olga")])},
            }),
            json!({
                "apiVersion": "tenancy.dev/v1alpha1", "kind": "Project",
                "metadata": {"name": project, "labels": {"app.kubernetes.io/instance": "tenants"}},
                "spec": {"customer": cust, "displayName": display, "description": "synced from Git",
                    "quota": {"hard": {"requests.cpu": "1", "pods": "10"}}},
            }),
            json!({
                "apiVersion": "tenancy.dev/v1alpha1", "kind": "ProjectMembership",
                "metadata": {"name": "carol", "namespace": project,
                    "labels": {"app.kubernetes.io/instance": "tenants"}},
                "spec": {"subject": {"kind": "User", "name": format!("{cust}-carol")}, "role": "Member",
                    "expirationTime": expires},
            }),
        )
    };
    let result = async {
        let mut problems: Vec<String> = Vec::new();
        let mut rows: Vec<String> = Vec::new();
        // One sync: customers, then projects, then memberships once the namespace is there (what
        // sync waves or dependsOn order); every apply without force.
        let sync = |round: &'static str, display: &'static str, expires: &'static str| {
            let (c, p, m) = manifests(display, expires);
            let (customers, projects, members, admin, project, cust) = (
                customers.clone(),
                projects.clone(),
                members.clone(),
                admin.clone(),
                project.clone(),
                cust.clone(),
            );
            async move {
                let mut out = Vec::new();
                let applied = apply_as_argocd(&customers, &cust, &c).await;
                out.push((format!("{round}: apply Customer"), outcome(&applied)));
                let applied = apply_as_argocd(&projects, &project, &p).await;
                out.push((format!("{round}: apply Project"), outcome(&applied)));
                let namespaces = Api::<Namespace>::all(admin.clone());
                wait_for(
                    &format!("namespace {project} to exist"),
                    RECONCILE_TIMEOUT,
                    || async {
                        namespaces
                            .get_opt(&project)
                            .await
                            .ok()
                            .flatten()
                            .map(|_| ())
                    },
                )
                .await?;
                let applied = apply_as_argocd(&members, "carol", &m).await;
                out.push((
                    format!("{round}: apply ProjectMembership"),
                    outcome(&applied),
                ));
                Ok::<_, Failed>(out)
            }
        };
        let record =
            |rows: &mut Vec<String>, problems: &mut Vec<String>, out: Vec<(String, String)>| {
                for (what, got) in out {
                    let ok = got == "allowed";
                    rows.push(format!(
                        "{} {what} -> {got}",
                        if ok { "ok  " } else { "FAIL" }
                    ));
                    if !ok {
                        problems.push(format!("{what}: expected no conflict, got {got}"));
                    }
                }
            };

        let out = sync("first sync", "Shop v1", "2098-01-01T00:00:00Z").await?;
        record(&mut rows, &mut problems, out);
        if !problems.is_empty() {
            return Err(format!("the first sync failed: {problems:?}").into());
        }
        let reconciled = wait_all_reconciled(&admin, &cust, &project, "carol").await?;
        rows.push(format!("ok   all three reconciled: {reconciled}"));

        let out = sync("same manifests again", "Shop v1", "2098-01-01T00:00:00Z").await?;
        record(&mut rows, &mut problems, out);
        // The operator has written status again after that apply? It had nothing to change; the
        // next change makes it write for sure.
        let out = sync("changed manifests", "Shop v2", "2099-01-01T00:00:00Z").await?;
        record(&mut rows, &mut problems, out);
        let reconciled = wait_all_reconciled(&admin, &cust, &project, "carol").await?;
        rows.push(format!("ok   all three reconciled again: {reconciled}"));
        let out = sync(
            "changed manifests once more, after the operator wrote",
            "Shop v2",
            "2099-01-01T00:00:00Z",
        )
        .await?;
        record(&mut rows, &mut problems, out);

        // Who owns what.
        let c = customers.get(&cust).await?;
        let p = projects.get(&project).await?;
        let m = members.get("carol").await?;
        for (what, entries) in [
            (format!("Customer {cust}"), entries_of(&c)),
            (format!("Project {project}"), entries_of(&p)),
            (format!("ProjectMembership {project}/carol"), entries_of(&m)),
        ] {
            rows.push(format!(
                "     {what} managedFields: {:?}",
                entries.iter().map(describe_entry).collect::<Vec<_>>()
            ));
            problems.extend(managed_fields_problems(&what, &entries));
        }
        // The soft-delete finalizer came with the create (the mutating webhook's) and is nobody's
        // field: the tool's applies, which never name it, leave it, and the operator never had
        // to patch it in.
        let finalizer_owners: Vec<String> = entries_of(&p)
            .iter()
            .filter(|e| {
                let mut paths = BTreeSet::new();
                if let Some(f) = &e.fields_v1 {
                    field_paths(&f.0, "", &mut paths);
                }
                paths.iter().any(|p| p.starts_with("f:metadata.f:finalizers"))
            })
            .map(describe_entry)
            .collect();
        if !p
            .finalizers()
            .iter()
            .any(|f| f == tenancy_operator::api::vocabulary::SOFT_DELETE_FINALIZER)
            || !finalizer_owners.is_empty()
        {
            problems.push(format!(
                "Project {project}: finalizers {:?}, owned by {finalizer_owners:?}; expected the soft-delete finalizer, owned by no field manager",
                p.finalizers()
            ));
        }
        if p.spec.display_name.as_deref() != Some("Shop v2")
            || c.spec.display_name.as_deref() != Some("Shop v2")
        {
            problems.push(format!(
                "the changed displayName is not stored: customer {:?}, project {:?}",
                c.spec.display_name, p.spec.display_name
            ));
        }

        // The children are the operator's.
        let ns = Api::<Namespace>::all(admin.clone()).get(&project).await?;
        let ns_entries = entries_of(&ns);
        rows.push(format!(
            "     Namespace {project} managedFields: {:?}",
            ns_entries.iter().map(describe_entry).collect::<Vec<_>>()
        ));
        let ns_ours = paths_of(&ns_entries, OPERATOR_MANAGER);
        for label in ns.labels().keys().filter(|k| k.starts_with("tenancy.dev/")) {
            let path = format!("f:metadata.f:labels.f:{label}");
            if !ns_ours.contains(&path) {
                problems.push(format!(
                    "Namespace {project}: label {label} is not {OPERATOR_MANAGER}'s ({ns_ours:?})"
                ));
            }
        }
        let quota = Api::<ResourceQuota>::namespaced(admin.clone(), &project)
            .get("tenancy-quota")
            .await;
        match quota {
            Ok(q) => {
                let e = entries_of(&q);
                rows.push(format!(
                    "     ResourceQuota {project}/tenancy-quota managedFields: {:?}",
                    e.iter().map(describe_entry).collect::<Vec<_>>()
                ));
                if !paths_of(&e, OPERATOR_MANAGER)
                    .iter()
                    .any(|p| p.starts_with("f:spec.f:hard"))
                {
                    problems.push(format!(
                        "ResourceQuota {project}/tenancy-quota: spec.hard not the operator's"
                    ));
                }
            }
            Err(kube::Error::Api(s)) if s.code == 404 => {
                problems.push(format!(
                    "no ResourceQuota {project}/tenancy-quota (the project sets a quota)"
                ));
            }
            Err(e) => return Err(e.into()),
        }
        let bindings = Api::<RoleBinding>::namespaced(admin.clone(), &project)
            .list(&ListParams::default().labels("app.kubernetes.io/managed-by=tenancy-operator"))
            .await?;
        if bindings.items.is_empty() {
            problems.push(format!("no operator RoleBinding in {project}"));
        }
        for rb in &bindings.items {
            let e = entries_of(rb);
            rows.push(format!(
                "     RoleBinding {project}/{} managedFields: {:?}",
                rb.name_any(),
                e.iter().map(describe_entry).collect::<Vec<_>>()
            ));
            let ours = paths_of(&e, OPERATOR_MANAGER);
            if !ours.iter().any(|p| p.starts_with("f:roleRef"))
                || !ours.iter().any(|p| p.starts_with("f:subjects"))
            {
                problems.push(format!(
                    "RoleBinding {project}/{}: roleRef, subjects not the operator's ({ours:?})",
                    rb.name_any()
                ));
            }
        }
        eprintln!("[e2e] gitops rows:\n  {}", rows.join("\n  "));
        if problems.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{} problems:\n  {}\nall rows:\n  {}{}",
                problems.len(),
                problems.join("\n  "),
                rows.join("\n  "),
                operator_log_tail(&env, 20)
            )
            .into())
        }
    }
    .await;
    cleanup(&admin, &[&project], &[&cust], &[]).await;
    result
}

/// Waits until the customer, the project and the membership each report Ready=True for their
/// current generation; says what they observed.
async fn wait_all_reconciled(
    client: &Client,
    cust: &str,
    project: &str,
    membership: &str,
) -> Result<String, Failed> {
    let customers = Api::<Customer>::all(client.clone());
    let c = wait_for(
        &format!("customer {cust} Ready for its generation"),
        RECONCILE_TIMEOUT,
        || async {
            let c = customers.get_opt(cust).await.ok().flatten()?;
            let s = c.status.as_ref()?;
            (s.observed_generation == c.metadata.generation && is_true(&s.conditions, "Ready"))
                .then_some(c)
        },
    )
    .await?;
    let p = wait_project_ready(client, project).await?;
    let members = Api::<ProjectMembership>::namespaced(client.clone(), project);
    let m = wait_for(
        &format!("membership {project}/{membership} Ready for its generation"),
        RECONCILE_TIMEOUT,
        || async {
            let m = members.get_opt(membership).await.ok().flatten()?;
            let s = m.status.as_ref()?;
            (s.observed_generation == m.metadata.generation && is_true(&s.conditions, "Ready"))
                .then_some(m)
        },
    )
    .await?;
    Ok(format!(
        "customer generation {:?}, project generation {:?}, membership generation {:?}",
        c.metadata.generation, p.metadata.generation, m.metadata.generation
    ))
}

// ---------------------------------------------------------------------------------------------
// 5. Health and metrics endpoints

/// `GET path` on the operator's metrics server: (status, body).
async fn operator_get(env: &Env, path: &'static str) -> Result<(u16, String), Failed> {
    let addr = env
        .operator()
        .ok_or("this suite runs without the operator")?
        .metrics_addr();
    let answer = tokio::task::spawn_blocking(move || crate::support::http_get(addr, path))
        .await
        .map_err(|e| format!("{e}"))?;
    answer.ok_or_else(|| format!("GET {path} from the operator got no answer").into())
}

async fn operator_metrics(env: &Env) -> Result<String, Failed> {
    match operator_get(env, "/metrics").await? {
        (200, body) => Ok(body),
        (code, body) => Err(format!("GET /metrics answered {code}: {body}").into()),
    }
}

/// The families the README lists, as exported sample names.
const README_FAMILIES: &[&str] = &[
    "tenancy_reconciles_total",
    "tenancy_reconcile_errors_total",
    "tenancy_reconcile_duration_seconds",
    "tenancy_reconcile_in_flight",
    "tenancy_reconcile_queue_depth",
    "tenancy_reconcile_queue_wait_seconds",
    "tenancy_unreadable_objects",
    "tenancy_api_writes_total",
    "tenancy_projects",
    "tenancy_admission_reviews_total",
];

/// Whether the exposition declares the family `name` (a `# TYPE` line; counters may be
/// declared without their `_total` suffix, as OpenMetrics does).
fn declares_family(text: &str, name: &str) -> bool {
    let base = name.strip_suffix("_total").unwrap_or(name);
    text.lines().any(|l| {
        let mut words = l.split_whitespace();
        words.next() == Some("#")
            && words.next() == Some("TYPE")
            && words.next().is_some_and(|n| n == name || n == base)
    })
}

async fn health_readiness_and_metrics_endpoints_answer(env: Arc<Env>) -> TestResult {
    let mut problems = Vec::new();
    let mut rows = Vec::new();
    for path in ["/healthz", "/readyz", "/metrics"] {
        let (code, body) = operator_get(&env, path).await?;
        rows.push(format!("GET {path} -> {code} ({} bytes)", body.len()));
        if code != 200 {
            problems.push(format!("GET {path} answered {code}: {body}"));
        }
    }
    let text = operator_metrics(&env).await?;
    let missing: Vec<&&str> = README_FAMILIES
        .iter()
        .filter(|f| !declares_family(&text, f))
        .collect();
    rows.push(format!(
        "families declared: {} of {}",
        README_FAMILIES.len() - missing.len(),
        README_FAMILIES.len()
    ));
    if !missing.is_empty() {
        let declared: Vec<&str> = text.lines().filter(|l| l.starts_with("# TYPE")).collect();
        problems.push(format!(
            "/metrics lacks the README's families {missing:?}; it declares {declared:?}"
        ));
    }
    eprintln!("[e2e] endpoints: {}", rows.join("; "));
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n").into())
    }
}

// ---------------------------------------------------------------------------------------------
// 6. Metric values

use crate::reconcile::samples;

/// The sum of `metric`'s samples whose labels include every pair of `want`.
fn metric_value(text: &str, metric: &str, want: &[(&str, &str)]) -> f64 {
    samples(text, metric)
        .iter()
        .filter(|s| {
            want.iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
        // (An empty sum of floats is -0, which would print as "-0".)
        .fold(0.0, |sum, v| sum + v)
}

/// The counters the metrics trial reads, in one scrape.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Counters {
    reconciles: f64,
    durations: f64,
    allowed: f64,
    forbidden: f64,
    invalid: f64,
    conflict: f64,
}

impl Counters {
    fn of(text: &str) -> Counters {
        let project = [("controller", "project")];
        let reviews = |outcome: &str| {
            metric_value(
                text,
                "tenancy_admission_reviews_total",
                &[("kind", "Project"), ("outcome", outcome)],
            )
        };
        Counters {
            reconciles: metric_value(text, "tenancy_reconciles_total", &project),
            durations: metric_value(text, "tenancy_reconcile_duration_seconds_count", &project),
            allowed: reviews("allowed"),
            forbidden: reviews("forbidden"),
            invalid: reviews("invalid"),
            conflict: reviews("conflict"),
        }
    }
}

async fn metric_counters_count_what_was_caused(env: Arc<Env>) -> TestResult {
    let admin = env.client().await;
    let cust = unique_name("e2e-prom-metrics");
    let other = format!("{cust}-other");
    let owner = format!("{cust}-olga");
    let project = format!("{cust}-p");
    let customers = Api::<Customer>::all(admin.clone());
    customers
        .create(
            &pp(),
            &customer_obj(
                &cust,
                json!({"owners": owners(&[&owner]), "quota": {"projects": 1}}),
            ),
        )
        .await?;
    customers
        .create(&pp(), &customer_obj(&other, json!({})))
        .await?;
    let result = async {
        wait_access(&env, &owner, "create", "projects.tenancy.dev", None, true).await?;
        let as_owner = Api::<Project>::all(env.client_as(&owner, &[]).await);
        let as_admin = Api::<Project>::all(admin.clone());
        let before = Counters::of(&operator_metrics(&env).await?);
        let mut t = Table::default();

        // Allowed: 1.
        let created =
            create_retrying(&as_owner, &project_obj(&project, json!({"customer": cust}))).await;
        if !t.row("owner creates a project", Expect::Allowed, &created) {
            return t.finish(&env, "metric rows");
        }
        // Forbidden by the webhook (RBAC lets owners create projects): 3.
        for i in 0..3 {
            t.row(
                &format!("owner creates a project for another customer ({i})"),
                Expect::Webhook(403, "may not create projects for customer"),
                &as_owner
                    .create(
                        &pp(),
                        &project_obj(&format!("{cust}-foreign-{i}"), json!({"customer": other})),
                    )
                    .await,
            );
        }
        // Invalid: 2.
        t.row(
            "staff create a project for a customer that does not exist",
            Expect::Webhook(422, "does not exist"),
            &as_admin
                .create(
                    &pp(),
                    &project_obj(
                        &format!("{cust}-orphan"),
                        json!({"customer": format!("{cust}-nobody")}),
                    ),
                )
                .await,
        );
        t.row(
            "staff create a project with a reserved name",
            Expect::Webhook(422, "is reserved"),
            &as_admin
                .create(
                    &pp(),
                    &project_obj(&format!("kube-{cust}"), json!({"customer": cust})),
                )
                .await,
        );
        // Conflict: 1 (quota.projects is 1 and the owner's project holds it).
        t.row(
            "staff create a second project for a customer allowed one",
            Expect::Webhook(409, "quota.projects"),
            &as_admin
                .create(
                    &pp(),
                    &project_obj(&format!("{cust}-second"), json!({"customer": cust})),
                )
                .await,
        );
        wait_project_ready(&admin, &project).await?;
        let want = (1.0, 3.0, 2.0, 1.0);
        let last = std::sync::Mutex::new(before);
        let counted = wait_for(
            "the operator's counters to count what this trial caused",
            RECONCILE_TIMEOUT,
            || async {
                let now = Counters::of(&operator_metrics(&env).await.ok()?);
                *last.lock().unwrap() = now;
                (now.reconciles > before.reconciles
                    && now.durations > before.durations
                    && now.allowed - before.allowed >= want.0
                    && now.forbidden - before.forbidden >= want.1
                    && now.invalid - before.invalid >= want.2
                    && now.conflict - before.conflict >= want.3)
                    .then_some(now)
            },
        )
        .await;
        let after = *last.lock().unwrap();
        let step = |what: &str, b: f64, a: f64| format!("{what} {b} -> {a} (+{})", a - b);
        let caused = |what: &str, b: f64, a: f64, n: f64| format!("{what} +{} (caused {n})", a - b);
        let deltas = [
            step(
                "reconciles_total{project}",
                before.reconciles,
                after.reconciles,
            ),
            step(
                "reconcile_duration_seconds_count{project}",
                before.durations,
                after.durations,
            ),
            caused(
                "reviews{Project,allowed}",
                before.allowed,
                after.allowed,
                want.0,
            ),
            caused(
                "reviews{Project,forbidden}",
                before.forbidden,
                after.forbidden,
                want.1,
            ),
            caused(
                "reviews{Project,invalid}",
                before.invalid,
                after.invalid,
                want.2,
            ),
            caused(
                "reviews{Project,conflict}",
                before.conflict,
                after.conflict,
                want.3,
            ),
        ]
        .join(", ");
        t.check(
            "the counters count what was caused",
            counted.is_ok(),
            deltas,
        );
        t.finish(&env, "metric rows")
    }
    .await;
    cleanup(&admin, &[&project], &[&cust, &other], &[]).await;
    result
}

/// A ValidatingAdmissionPolicy (and its binding) that refuses every create and update of
/// ResourceQuotas in one namespace, whoever asks (the operator included): the namespace's quota
/// becomes un-writable.
fn freeze_quotas_yaml(name: &str, namespace: &str) -> String {
    format!(
        r#"apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata:
  name: {name}
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules:
    - apiGroups: [""]
      apiVersions: ["v1"]
      operations: ["CREATE", "UPDATE"]
      resources: ["resourcequotas"]
  validations:
  - expression: "false"
    message: "e2e: resource quotas in namespace {namespace} are frozen"
    reason: Forbidden
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata:
  name: {name}
spec:
  policyName: {name}
  validationActions: [Deny]
  matchResources:
    namespaceSelector:
      matchLabels:
        kubernetes.io/metadata.name: {namespace}
"#
    )
}

async fn a_failing_reconcile_is_counted_in_reconcile_errors(env: Arc<Env>) -> TestResult {
    let admin = env.client().await;
    let cust = unique_name("e2e-prom-errors");
    let project = format!("{cust}-p");
    let policy = format!("{cust}-freeze-quotas");
    Api::<Customer>::all(admin.clone())
        .create(&pp(), &customer_obj(&cust, json!({})))
        .await?;
    let mut policy_objects = Vec::new();
    let result = async {
        let projects = Api::<Project>::all(admin.clone());
        create_retrying(
            &projects,
            &project_obj(
                &project,
                json!({"customer": cust, "quota": {"hard": {"requests.cpu": "1"}}}),
            ),
        )
        .await?;
        wait_project_ready(&admin, &project).await?;

        // Make the namespace's quota un-writable, and prove it is (a dry-run create refused).
        policy_objects = env
            .apply_yaml(&freeze_quotas_yaml(&policy, &project))
            .await
            .map_err(|e| format!("creating the admission policy: {e}"))?;
        let quotas = Api::<ResourceQuota>::namespaced(admin.clone(), &project);
        let probe: ResourceQuota = from_json(json!({
            "metadata": {"name": "e2e-probe"}, "spec": {"hard": {"pods": "1"}},
        }));
        let dry = PostParams {
            dry_run: true,
            ..Default::default()
        };
        wait_for(
            &format!("the admission policy to refuse ResourceQuotas in {project}"),
            RECONCILE_TIMEOUT,
            || async {
                match quotas.create(&dry, &probe).await {
                    Err(kube::Error::Api(s)) if s.message.contains("are frozen") => Some(()),
                    _ => None,
                }
            },
        )
        .await?;

        let errors = |text: &str| {
            metric_value(
                text,
                "tenancy_reconcile_errors_total",
                &[("controller", "project")],
            )
        };
        let before_text = operator_metrics(&env).await?;
        let before = errors(&before_text);
        // A quota change the operator must write, and cannot.
        projects
            .patch(
                &project,
                &PatchParams::default(),
                &spec_patch(json!({"quota": {"hard": {"requests.cpu": "2"}}})),
            )
            .await?;
        let last = std::sync::Mutex::new(String::new());
        let counted = wait_for(
            "reconcile_errors_total{controller=\"project\"} to increase, the failure logged",
            RECONCILE_TIMEOUT,
            || async {
                let text = operator_metrics(&env).await.ok()?;
                let now = errors(&text);
                let logged: Vec<String> = operator_log_lines(&env, "reconcile failed")
                    .into_iter()
                    .filter(|l| l.contains(&project))
                    .collect();
                *last.lock().unwrap() = format!("errors {before} -> {now}; log lines {logged:?}");
                (now > before && !logged.is_empty()).then_some((text, logged))
            },
        )
        .await;
        let (after_text, logged) = match counted {
            Ok(v) => v,
            Err(e) => {
                return Err(format!(
                    "{}; last: {}{}",
                    e.message().unwrap_or_default(),
                    last.lock().unwrap(),
                    operator_log_tail(&env, 30)
                )
                .into());
            }
        };
        let by_reason: Vec<String> = samples(&after_text, "tenancy_reconcile_errors_total")
            .iter()
            .filter(|s| s.labels.get("controller").map(String::as_str) == Some("project"))
            .map(|s| {
                let was = samples(&before_text, "tenancy_reconcile_errors_total")
                    .iter()
                    .filter(|b| b.labels == s.labels)
                    .map(|b| b.value)
                    .fold(0.0, |sum, v| sum + v);
                format!("{:?}: {was} -> {}", s.labels.get("reason"), s.value)
            })
            .collect();
        eprintln!(
            "[e2e] reconcile errors of controller project: {by_reason:?}; first log line: {}",
            logged.first().map(String::as_str).unwrap_or_default()
        );
        // The project says why.
        project_where(
            &admin,
            &project,
            "condition SpecValid=False naming the quota write",
            |p| {
                let s = p.status.as_ref().ok_or("no status")?;
                if s.conditions.iter().any(|c| {
                    c.type_ == "SpecValid"
                        && c.status == "False"
                        && c.message.contains("writing the namespace's quota failed")
                }) {
                    Ok(())
                } else {
                    Err(format!("conditions {}", status_text(&Some(&s.conditions))))
                }
            },
        )
        .await?;

        // Writable again: the operator catches up.
        env.delete_objects(&policy_objects)
            .await
            .map_err(|e| format!("deleting the admission policy: {e}"))?;
        policy_objects.clear();
        wait_for(
            &format!("ResourceQuota {project}/tenancy-quota requests.cpu = 2 once writable"),
            Duration::from_secs(120),
            || async {
                let q = quotas.get_opt("tenancy-quota").await.ok().flatten()?;
                same_quantity(&q.spec?.hard?.get("requests.cpu")?.0, "2").then_some(())
            },
        )
        .await?;
        Ok(())
    }
    .await;
    let _ = env.delete_objects(&policy_objects).await;
    cleanup(&admin, &[&project], &[&cust], &[]).await;
    result
}

// ---------------------------------------------------------------------------------------------
// 7. Events

/// Waits for an Event with `reason` about the object `kind`/`name` (and `uid`, when given), read
/// through core/v1 (which serves events.k8s.io/v1 Events too; regarding = involvedObject).
async fn wait_event(
    client: &Client,
    kind: &str,
    name: &str,
    uid: Option<&str>,
    reason: &str,
) -> Result<Event, Failed> {
    let events: Api<Event> = Api::all(client.clone());
    let fields = format!("involvedObject.kind={kind},involvedObject.name={name},reason={reason}");
    let waited = wait_for(
        &format!("a {reason} Event on {kind} {name}"),
        RECONCILE_TIMEOUT,
        || async {
            let list = events
                .list(&ListParams::default().fields(&fields))
                .await
                .ok()?;
            list.items
                .into_iter()
                .find(|e| uid.is_none_or(|u| e.involved_object.uid.as_deref() == Some(u)))
        },
    )
    .await;
    if let Err(e) = waited {
        let all = events
            .list(&ListParams::default().fields(&format!("involvedObject.name={name}")))
            .await
            .map(|l| {
                l.items
                    .iter()
                    .map(|e| {
                        format!(
                            "{:?} {:?} on {:?} {:?}: {:?}",
                            e.type_,
                            e.reason,
                            e.involved_object.kind,
                            e.involved_object.uid,
                            e.message
                        )
                    })
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        return Err(format!(
            "{}; events about {name}: {all:#?}",
            e.message().unwrap_or_default()
        )
        .into());
    }
    waited
}

async fn lifecycle_events_are_recorded_on_their_objects(env: Arc<Env>) -> TestResult {
    let admin = env.client().await;
    let from = unique_name("e2e-prom-events");
    let to = format!("{from}-to");
    let project = format!("{from}-p");
    let foreign = format!("{from}-foreign");
    let customers = Api::<Customer>::all(admin.clone());
    let projects = Api::<Project>::all(admin.clone());
    customers
        .create(&pp(), &customer_obj(&from, json!({})))
        .await?;
    customers
        .create(&pp(), &customer_obj(&to, json!({})))
        .await?;
    let result = async {
        let mut rows = Vec::new();
        let mut note = |e: &Event| {
            rows.push(format!(
                "{} {} on {}/{}: {}",
                e.type_.as_deref().unwrap_or("?"),
                e.reason.as_deref().unwrap_or("?"),
                e.involved_object.kind.as_deref().unwrap_or("?"),
                e.involved_object.name.as_deref().unwrap_or("?"),
                e.message.as_deref().unwrap_or("")
            ))
        };
        // NamespaceCreated, on the Project.
        let p =
            create_retrying(&projects, &project_obj(&project, json!({"customer": from}))).await?;
        let uid = p.uid().unwrap_or_default();
        wait_project_ready(&admin, &project).await?;
        note(&wait_event(&admin, "Project", &project, Some(&uid), "NamespaceCreated").await?);

        // Moved, on the Project (staff change spec.customer).
        projects
            .patch(
                &project,
                &PatchParams::default(),
                &spec_patch(json!({"customer": to})),
            )
            .await?;
        let moved = wait_event(&admin, "Project", &project, Some(&uid), "Moved").await?;
        let text = moved.message.clone().unwrap_or_default();
        if !(text.contains(&from) && text.contains(&to)) {
            return Err(format!("the Moved event does not name both customers: {text:?}").into());
        }
        note(&moved);

        // SoftDeleted, on the namespace.
        wait_finalizer(&admin, &project).await?;
        projects.delete(&project, &DeleteParams::default()).await?;
        wait_project_gone(&admin, &project).await?;
        note(&wait_event(&admin, "Namespace", &project, None, "SoftDeleted").await?);

        // Recovered, on the re-created Project.
        let again =
            create_retrying(&projects, &project_obj(&project, json!({"customer": to}))).await?;
        let again_uid = again.uid().unwrap_or_default();
        note(&wait_event(&admin, "Project", &project, Some(&again_uid), "Recovered").await?);

        // NamespaceConflict, on a Project named like a namespace made by hand.
        Api::<Namespace>::all(admin.clone())
            .create(&pp(), &from_json(json!({"metadata": {"name": foreign}})))
            .await?;
        let clash =
            create_retrying(&projects, &project_obj(&foreign, json!({"customer": from}))).await?;
        let clash_uid = clash.uid().unwrap_or_default();
        let conflict = wait_event(
            &admin,
            "Project",
            &foreign,
            Some(&clash_uid),
            "NamespaceConflict",
        )
        .await?;
        if conflict.type_.as_deref() != Some("Warning") {
            return Err(format!("NamespaceConflict is not a Warning: {:?}", conflict.type_).into());
        }
        note(&conflict);
        eprintln!("[e2e] events:\n  {}", rows.join("\n  "));
        Ok(())
    }
    .await;
    cleanup(&admin, &[&project, &foreign], &[&from, &to], &[&foreign]).await;
    result
}

// ---------------------------------------------------------------------------------------------
// Exclusive: the Conflict gauge

async fn conflict_gauge_rises_with_a_conflicting_project_and_falls_when_it_goes(
    env: Arc<Env>,
) -> TestResult {
    let admin = env.client().await;
    let cust = unique_name("e2e-prom-gauge");
    let name = format!("{cust}-taken");
    let gauge = |text: &str| metric_value(text, "tenancy_projects", &[("phase", "Conflict")]);
    Api::<Customer>::all(admin.clone())
        .create(&pp(), &customer_obj(&cust, json!({})))
        .await?;
    let namespaces = Api::<Namespace>::all(admin.clone());
    namespaces
        .create(&pp(), &from_json(json!({"metadata": {"name": name}})))
        .await?;
    let result = async {
        let before = gauge(&operator_metrics(&env).await?);
        let projects = Api::<Project>::all(admin.clone());
        create_retrying(&projects, &project_obj(&name, json!({"customer": cust}))).await?;
        project_where(&admin, &name, "phase Conflict", |p| {
            if p.status.as_ref().and_then(|s| s.phase) == Some(ProjectPhase::Conflict) {
                Ok(())
            } else {
                Err(format!("status is {}", status_text(&p.status)))
            }
        })
        .await?;
        let want = before + 1.0;
        let last = std::sync::Mutex::new(before);
        let risen = wait_for(
            &format!("tenancy_projects{{phase=\"Conflict\"}} to be {want}"),
            RECONCILE_TIMEOUT,
            || async {
                let now = gauge(&operator_metrics(&env).await.ok()?);
                *last.lock().unwrap() = now;
                (now == want).then_some(())
            },
        )
        .await;
        if let Err(e) = risen {
            return Err(format!(
                "{}: it was {before} before, last read {}",
                e.message().unwrap_or_default(),
                last.lock().unwrap()
            )
            .into());
        }
        projects.delete(&name, &DeleteParams::default()).await?;
        wait_project_gone(&admin, &name).await?;
        let fallen = wait_for(
            &format!("tenancy_projects{{phase=\"Conflict\"}} to be {before} again"),
            RECONCILE_TIMEOUT,
            || async {
                let now = gauge(&operator_metrics(&env).await.ok()?);
                *last.lock().unwrap() = now;
                (now == before).then_some(())
            },
        )
        .await;
        if let Err(e) = fallen {
            return Err(format!(
                "{}: last read {}",
                e.message().unwrap_or_default(),
                last.lock().unwrap()
            )
            .into());
        }
        // The hand-made namespace is left as it was.
        let ns = namespaces.get(&name).await?;
        let ours: Vec<&String> = ns
            .labels()
            .keys()
            .filter(|k| k.starts_with("tenancy.dev/"))
            .collect();
        if ns.metadata.deletion_timestamp.is_some() || !ours.is_empty() {
            return Err(format!(
                "the hand-made namespace {name} was touched: deleting {}, tenancy labels {ours:?}",
                ns.metadata.deletion_timestamp.is_some()
            )
            .into());
        }
        eprintln!("[e2e] tenancy_projects{{phase=\"Conflict\"}}: {before} -> {want} -> {before}");
        Ok(())
    }
    .await;
    cleanup(&admin, &[&name], &[&cust], &[&name]).await;
    result
}

/// The group the suite's operator is told is staff besides the defaults (`--staff-groups`).
pub const EXTRA_STAFF_GROUP: &str = "e2e:platform-team";

/// `--staff-groups` decides who is staff: a user of the configured group may move a project
/// (staff only), a user of another group with the very same RBAC rights may not.
async fn the_staff_groups_flag_decides_who_is_staff(env: Arc<Env>) -> TestResult {
    use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
    let admin = env.client().await;
    let tag = unique_name("e2e-staffgroups");
    let (from, to, name) = (format!("{tag}-a"), format!("{tag}-b"), format!("{tag}-p"));
    let other_group = format!("{tag}:ops");
    let bindings: Api<ClusterRoleBinding> = Api::all(admin.clone());
    for (binding, group) in [
        (format!("{tag}-platform"), EXTRA_STAFF_GROUP.to_string()),
        (format!("{tag}-ops"), other_group.clone()),
    ] {
        bindings
            .create(
                &pp(),
                &from_json(json!({
                    "metadata": {"name": binding},
                    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
                    "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": group}],
                })),
            )
            .await?;
    }
    let customers: Api<Customer> = Api::all(admin.clone());
    for c in [&from, &to] {
        customers.create(&pp(), &customer_obj(c, json!({}))).await?;
    }
    let projects: Api<Project> = Api::all(admin.clone());
    create_retrying(&projects, &project_obj(&name, json!({"customer": from}))).await?;
    let result = async {
        // Another group with cluster-admin: RBAC lets it, the webhook does not (not staff).
        let ops = Api::<Project>::all(
            env.client_as(&format!("{tag}-ops-user"), &[&other_group])
                .await,
        );
        let refused = wait_for(
            "the move by a non-staff cluster-admin to be refused by the webhook",
            Duration::from_secs(60),
            || async {
                match ops
                    .patch(
                        &name,
                        &PatchParams::default(),
                        &spec_patch(json!({"customer": to})),
                    )
                    .await
                {
                    Err(kube::Error::Api(e))
                        if e.code == 403 && e.message.contains("staff-only") =>
                    {
                        Some(e.message)
                    }
                    _ => None,
                }
            },
        )
        .await?;
        eprintln!("[e2e] move by a cluster-admin outside the staff groups: {refused}");
        // The configured group: staff.
        let platform = Api::<Project>::all(
            env.client_as(&format!("{tag}-platform-user"), &[EXTRA_STAFF_GROUP])
                .await,
        );
        platform
            .patch(
                &name,
                &PatchParams::default(),
                &spec_patch(json!({"customer": to})),
            )
            .await
            .map_err(|e| {
                format!(
                    "a member of {EXTRA_STAFF_GROUP} (--staff-groups) may not move the project: {e}"
                )
            })?;
        let moved = projects.get(&name).await?;
        if moved.spec.customer != to {
            return Err(format!("the project's customer is {}", moved.spec.customer).into());
        }
        Ok::<(), Failed>(())
    }
    .await;
    for binding in [format!("{tag}-platform"), format!("{tag}-ops")] {
        let _ = bindings.delete(&binding, &DeleteParams::default()).await;
    }
    result
}
