//! Adversarial trials: tenants (customer owners, project managers, members) trying to get more
//! than the rules give them, through every door the API leaves open: RoleBindings in their
//! project namespace, the soft delete, the customer quota and its ledger, an orphaned namespace,
//! owner references and finalizers (the garbage collector and the finalizer machinery acting on
//! their behalf), memberships being deleted, reserved and malformed names, the ServiceAccount
//! rule, and the audit annotations the mutating webhook owns.
//!
//! Every request a tenant makes is a real request by an impersonated user; staff are the admin
//! (`system:masters`). What is asserted is what a user notices: the HTTP code and message of a
//! refusal (and which layer gave it), access as the apiserver's authorizer answers a
//! SubjectAccessReview, and the stored objects' fields. A negative check comes only after the
//! operator is shown to have processed the change.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ResourceQuota};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, RoleBinding};
use kube::api::{Api, DeleteParams, ListParams, Patch, Preconditions};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use tenancy_operator::api::{Customer, MembershipPhase, Project, ProjectMembership, ProjectPhase};

use crate::support::{
    Checks, Env, Expectation, Failed, RECONCILE_TIMEOUT, TestResult, Trial, can_i_named, customer,
    from_json, merge, owners, patch_params, pp, project, refusal, trial, unique_name,
    wait_access_as, wait_access_named, wait_finalizer, wait_for, wait_project, wait_project_gone,
};

pub fn trials(env: &Arc<Env>) -> Vec<Trial> {
    vec![
        trial(
            env,
            "adversarial::tenant_rolebindings_bind_only_own_service_accounts_and_end_with_the_membership",
            tenant_rolebindings_bind_only_own_service_accounts,
        ),
        trial(
            env,
            "adversarial::soft_delete_leaves_no_access_but_staffs",
            soft_delete_leaves_no_access_but_staffs,
        ),
        trial(
            env,
            "adversarial::owner_cannot_skip_the_soft_delete_by_removing_its_finalizer",
            owner_cannot_skip_the_soft_delete,
        ),
        trial(
            env,
            "adversarial::bindings_made_while_the_soft_delete_runs_do_not_survive_it",
            bindings_made_while_the_soft_delete_runs_do_not_survive_it,
        ),
        trial(
            env,
            "adversarial::customer_quota_names_and_limits_cannot_be_bypassed",
            customer_quota_names_and_limits_cannot_be_bypassed,
        ),
        trial(
            env,
            "adversarial::ledger_keeps_what_stored_projects_hold_when_a_create_collides",
            ledger_keeps_what_stored_projects_hold,
        ),
        trial(
            env,
            "adversarial::orphaned_namespace_goes_to_no_other_customer_without_staff",
            orphaned_namespace_goes_to_no_other_customer_without_staff,
        ),
        trial(
            env,
            "adversarial::tenants_set_no_owner_references_or_finalizers",
            tenants_set_no_owner_references_or_finalizers,
        ),
        trial(
            env,
            "adversarial::a_membership_being_deleted_grants_nothing",
            a_membership_being_deleted_grants_nothing,
        ),
        trial(
            env,
            "adversarial::service_account_rule_and_audit_annotations_hold",
            service_account_rule_and_audit_annotations_hold,
        ),
    ]
}

/// What the tenancy objects' webhook's denials start with (the apiserver's wording).
const VALIDATE: &str = "admission webhook \"validate.tenancy.dev\" denied the request";
const MUTATE: &str = "admission webhook \"mutate.tenancy.dev\" denied the request";
/// What the RoleBinding webhook's denials start with.
const BINDINGS: &str = "admission webhook \"rolebindings.tenancy.dev\" denied the request";

/// The ClusterRole a project Manager holds.
const MANAGER_ROLE: &str = "tenancy:project-manager";

// ---------------------------------------------------------------------------------------------
// Objects

/// A membership of `subject` (`{"kind": ..., "name": ...}`) with `role`.
fn membership_of(ns: &str, name: &str, subject: Value, role: &str) -> ProjectMembership {
    from_json(json!({
        "apiVersion": "tenancy.dev/v1alpha1", "kind": "ProjectMembership",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"subject": subject, "role": role},
    }))
}

fn membership(ns: &str, name: &str, user: &str, role: &str) -> ProjectMembership {
    membership_of(ns, name, json!({"kind": "User", "name": user}), role)
}

fn service_account(ns: &str, name: &str) -> Value {
    json!({"kind": "ServiceAccount", "name": name, "namespace": ns})
}

/// A RoleBinding `name` in `ns` to ClusterRole `role` for `subjects` (RBAC subjects).
fn role_binding(ns: &str, name: &str, role: &str, subjects: Value) -> RoleBinding {
    from_json(json!({
        "metadata": {"name": name, "namespace": ns},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": subjects,
    }))
}

fn rbac_user(name: &str) -> Value {
    json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": name})
}

fn rbac_group(name: &str) -> Value {
    json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": name})
}

fn rbac_sa(ns: &str, name: &str) -> Value {
    json!({"kind": "ServiceAccount", "name": name, "namespace": ns})
}

/// The username and groups a ServiceAccount authenticates with.
fn sa_user(ns: &str, name: &str) -> (String, Vec<String>) {
    (
        format!("system:serviceaccount:{ns}:{name}"),
        vec![
            "system:serviceaccounts".to_string(),
            format!("system:serviceaccounts:{ns}"),
        ],
    )
}

fn json_patch(ops: Value) -> Patch<Value> {
    Patch::Json(serde_json::from_value(ops).expect("a JSON patch"))
}

fn phase(p: &Project) -> Option<ProjectPhase> {
    p.status.as_ref().and_then(|s| s.phase)
}

/// An RFC 3339 time `secs` seconds from now (negative: in the past).
fn seconds_from_now(secs: i64) -> String {
    (jiff::Timestamp::now() + jiff::SignedDuration::from_secs(secs))
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

// ---------------------------------------------------------------------------------------------
// Waiting and access checks

async fn wait_access(
    env: &Env,
    user: &str,
    verb: &str,
    resource: &str,
    namespace: Option<&str>,
    want: bool,
) -> TestResult {
    wait_access_as(env, user, &[], verb, resource, namespace, want).await
}

async fn wait_project_active(client: &Client, name: &str) -> TestResult {
    wait_project(client, name, "phase Active", |p| {
        (phase(p) == Some(ProjectPhase::Active)).then_some(())
    })
    .await
}

/// Waits until the operator has seen the project's latest spec (status.observedGeneration).
async fn wait_observed(client: &Client, name: &str) -> Result<Project, Failed> {
    wait_project(client, name, "observedGeneration = generation", |p| {
        let observed = p.status.as_ref()?.observed_generation?;
        (Some(observed) == p.metadata.generation).then(|| p.clone())
    })
    .await
}

/// Why a wait failed (empty if it did not).
fn why<T>(result: &Result<T, Failed>) -> String {
    result
        .as_ref()
        .err()
        .and_then(|e| e.message())
        .unwrap_or_default()
        .to_string()
}

/// Names of the RoleBindings in a namespace (as the admin sees them).
async fn binding_names(admin: &Client, ns: &str) -> Result<Vec<String>, Failed> {
    Ok(Api::<RoleBinding>::namespaced(admin.clone(), ns)
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .map(|b| b.name_any())
        .collect())
}

/// The last lines of the operator's log that mention `needle`, for failure messages.
fn operator_log_lines(env: &Env, needle: &str) -> String {
    let Some(op) = env.operator() else {
        return "(no operator)".into();
    };
    let text = std::fs::read_to_string(op.log_path()).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| l.contains(needle)).collect();
    let tail = &lines[lines.len().saturating_sub(15)..];
    format!(
        "--- operator log ({}) lines naming {needle} ---\n{}",
        op.log_path().display(),
        tail.join("\n")
    )
}

// ---------------------------------------------------------------------------------------------
// Expectations

#[derive(Clone, Copy, Debug)]
enum Expect {
    /// The request succeeds.
    Allowed,
    /// The named webhook refuses it with this code and this text in its message.
    Hook(&'static str, u16, &'static str),
    /// Refused before any webhook (schema, CEL rule, apiserver) with this code and all these
    /// texts.
    Api(u16, &'static [&'static str]),
    /// Refused with this code by whichever layer (RBAC or a webhook).
    Refused(u16),
}

impl Expectation for Expect {
    fn met(&self, code: u16, message: &str) -> bool {
        let by_webhook = message.contains("admission webhook");
        match *self {
            Expect::Allowed => code == 200,
            Expect::Hook(hook, want, text) => {
                code == want && message.contains(hook) && message.contains(text)
            }
            Expect::Api(want, texts) => {
                code == want && !by_webhook && texts.iter().all(|t| message.contains(t))
            }
            Expect::Refused(want) => code == want,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// A tenant world: a customer with an owner, a project, a Manager

struct World {
    admin: Client,
    tag: String,
    customer: String,
    owner: String,
    project: String,
    manager: String,
}

impl World {
    fn user(&self, n: &str) -> String {
        format!("{}-{n}", self.tag)
    }
}

/// Staff create the customer (owner `<tag>-owner`, quota `quota` unless null).
async fn create_customer(admin: &Client, name: &str, owner: &str, quota: Value) -> TestResult {
    let mut spec = json!({"owners": owners(&[owner])});
    if !quota.is_null() {
        spec["quota"] = quota;
    }
    Api::<Customer>::all(admin.clone())
        .create(&pp(), &customer(name, spec))
        .await?;
    Ok(())
}

/// `as_user` creates a project with `hard` as its quota (none if null), then waits until it is
/// Active.
async fn create_project(
    admin: &Client,
    as_user: &Client,
    name: &str,
    customer: &str,
    hard: Value,
) -> TestResult {
    let mut spec = json!({"customer": customer});
    if !hard.is_null() {
        spec["quota"] = json!({"hard": hard});
    }
    Api::<Project>::all(as_user.clone())
        .create(&pp(), &project(name, spec))
        .await?;
    wait_project_active(admin, name).await
}

/// `as_user` adds a membership of `user` with `role`, then waits until the user has the role's
/// access.
async fn add_member(
    env: &Env,
    as_user: &Client,
    ns: &str,
    name: &str,
    user: &str,
    role: &str,
) -> TestResult {
    Api::<ProjectMembership>::namespaced(as_user.clone(), ns)
        .create(&pp(), &membership(ns, name, user, role))
        .await?;
    match role {
        "Member" => wait_access(env, user, "get", "pods", Some(ns), true).await,
        _ => wait_access(env, user, "create", "deployments.apps", Some(ns), true).await,
    }
}

/// Customer `<tag>-acme` (owner `<tag>-owner`, `quota`), whose owner creates project
/// `<tag>-web` (quota `hard`) and makes `<tag>-mgr` its Manager (membership `mgr`).
async fn world(env: &Env, prefix: &str, quota: Value, hard: Value) -> Result<World, Failed> {
    let admin = env.client().await;
    let tag = unique_name(prefix);
    let w = World {
        admin: admin.clone(),
        customer: format!("{tag}-acme"),
        owner: format!("{tag}-owner"),
        project: format!("{tag}-web"),
        manager: format!("{tag}-mgr"),
        tag,
    };
    create_customer(&admin, &w.customer, &w.owner, quota).await?;
    wait_access(env, &w.owner, "create", "projects.tenancy.dev", None, true).await?;
    let as_owner = env.client_as(&w.owner, &[]).await;
    create_project(&admin, &as_owner, &w.project, &w.customer, hard).await?;
    wait_access(
        env,
        &w.owner,
        "create",
        "projectmemberships.tenancy.dev",
        Some(&w.project),
        true,
    )
    .await?;
    add_member(env, &as_owner, &w.project, "mgr", &w.manager, "Manager").await?;
    Ok(w)
}

fn default_quota() -> Value {
    json!({"projects": 5, "hard": {"requests.cpu": "4", "pods": "20"}})
}

fn default_hard() -> Value {
    json!({"requests.cpu": "1", "pods": "5"})
}

// ---------------------------------------------------------------------------------------------
// 1. RoleBindings in project namespaces

async fn tenant_rolebindings_bind_only_own_service_accounts(env: Arc<Env>) -> TestResult {
    let w = world(&env, "adv-rb", default_quota(), default_hard()).await?;
    let (admin, ns) = (&w.admin, w.project.as_str());
    let (friend, member, intruder) = (w.user("friend"), w.user("mem"), w.user("intruder"));
    let as_owner = env.client_as(&w.owner, &[]).await;
    let as_manager = env.client_as(&w.manager, &[]).await;
    add_member(&env, &as_owner, ns, "mem", &member, "Member").await?;
    wait_access(
        &env,
        &w.manager,
        "create",
        "rolebindings.rbac.authorization.k8s.io",
        Some(ns),
        true,
    )
    .await?;
    let rbs = |c: &Client| Api::<RoleBinding>::namespaced(c.clone(), ns);
    let bot = rbac_sa(ns, "bot");
    let mut t = Checks::default();

    t.row(
        "manager binds a User to view",
        Expect::Hook(BINDINGS, 403, "may bind only ServiceAccounts of namespace"),
        rbs(&as_manager)
            .create(
                &pp(),
                &role_binding(ns, "friend-view", "view", json!([rbac_user(&friend)])),
            )
            .await,
    );
    t.row(
        "manager binds the Group system:authenticated to view",
        Expect::Hook(BINDINGS, 403, "may bind only ServiceAccounts of namespace"),
        rbs(&as_manager)
            .create(
                &pp(),
                &role_binding(
                    ns,
                    "all-view",
                    "view",
                    json!([rbac_group("system:authenticated")]),
                ),
            )
            .await,
    );
    t.row(
        "manager binds the Group of all ServiceAccounts of the namespace to edit",
        Expect::Hook(BINDINGS, 403, "may bind only ServiceAccounts of namespace"),
        rbs(&as_manager)
            .create(
                &pp(),
                &role_binding(
                    ns,
                    "sas-edit",
                    "edit",
                    json!([rbac_group(&format!("system:serviceaccounts:{ns}"))]),
                ),
            )
            .await,
    );
    t.row(
        "manager binds a ServiceAccount of another namespace to edit",
        Expect::Hook(BINDINGS, 403, "may bind only ServiceAccounts of namespace"),
        rbs(&as_manager)
            .create(
                &pp(),
                &role_binding(ns, "ci-edit", "edit", json!([rbac_sa("default", "ci")])),
            )
            .await,
    );
    t.row(
        "manager binds own ServiceAccount next to a User",
        Expect::Hook(BINDINGS, 403, "may bind only ServiceAccounts of namespace"),
        rbs(&as_manager)
            .create(
                &pp(),
                &role_binding(
                    ns,
                    "mixed-edit",
                    "edit",
                    json!([bot.clone(), rbac_user(&friend)]),
                ),
            )
            .await,
    );
    t.row(
        "manager binds own ServiceAccount to ClusterRole tenancy:project-manager",
        Expect::Hook(
            BINDINGS,
            403,
            "may not bind ClusterRole tenancy:project-manager",
        ),
        rbs(&as_manager)
            .create(
                &pp(),
                &role_binding(ns, "bot-manager", MANAGER_ROLE, json!([bot.clone()])),
            )
            .await,
    );
    t.row(
        "manager binds own ServiceAccount to ClusterRole tenancy:project-member",
        Expect::Hook(
            BINDINGS,
            403,
            "may not bind ClusterRole tenancy:project-member",
        ),
        rbs(&as_manager)
            .create(
                &pp(),
                &role_binding(
                    ns,
                    "bot-member",
                    "tenancy:project-member",
                    json!([bot.clone()]),
                ),
            )
            .await,
    );
    t.row(
        "manager binds own ServiceAccount to ClusterRole tenancy:project-manager:memberships",
        Expect::Hook(
            BINDINGS,
            403,
            "may not bind ClusterRole tenancy:project-manager:memberships",
        ),
        rbs(&as_manager)
            .create(
                &pp(),
                &role_binding(
                    ns,
                    "bot-memberships",
                    "tenancy:project-manager:memberships",
                    json!([bot.clone()]),
                ),
            )
            .await,
    );
    let mut labelled = role_binding(ns, "looks-managed", "edit", json!([bot.clone()]));
    labelled.metadata.labels = Some(BTreeMap::from([(
        "app.kubernetes.io/managed-by".to_string(),
        "tenancy-operator".to_string(),
    )]));
    t.row(
        "manager creates a binding labelled managed-by=tenancy-operator",
        Expect::Hook(BINDINGS, 403, "are tenancy-operator's"),
        rbs(&as_manager).create(&pp(), &labelled).await,
    );
    t.row(
        "manager binds own ServiceAccount bot to edit",
        Expect::Allowed,
        rbs(&as_manager)
            .create(
                &pp(),
                &role_binding(ns, "bot-edit", "edit", json!([bot.clone()])),
            )
            .await,
    );
    t.row(
        "manager adds a User to their own binding bot-edit",
        Expect::Hook(BINDINGS, 403, "may bind only ServiceAccounts of namespace"),
        rbs(&as_manager)
            .patch(
                "bot-edit",
                &patch_params(),
                &merge(json!({"subjects": [bot.clone(), rbac_user(&friend)]})),
            )
            .await,
    );
    // The operator's own bindings.
    let member_binding = "tenancy-member-mem";
    let own_binding = "tenancy-member-mgr";
    for name in [member_binding, own_binding] {
        t.fact(
            &format!("the operator's binding {name} exists"),
            rbs(admin).get_opt(name).await?.is_some(),
            "",
        );
    }
    t.row(
        "manager adds a User to the operator's binding of a Member",
        Expect::Hook(BINDINGS, 403, "are tenancy-operator's"),
        rbs(&as_manager)
            .patch(
                member_binding,
                &patch_params(),
                &merge(json!({"subjects": [rbac_user(&member), rbac_user(&friend)]})),
            )
            .await,
    );
    t.row(
        "manager adds a User to the operator's binding of their own membership",
        Expect::Hook(BINDINGS, 403, "are tenancy-operator's"),
        rbs(&as_manager)
            .patch(
                own_binding,
                &patch_params(),
                &merge(json!({"subjects": [rbac_user(&w.manager), rbac_user(&friend)]})),
            )
            .await,
    );
    t.row(
        "manager strips the managed-by label off the operator's binding",
        Expect::Hook(BINDINGS, 403, "are tenancy-operator's"),
        rbs(&as_manager)
            .patch(
                member_binding,
                &patch_params(),
                &merge(json!({"metadata": {"labels": {"app.kubernetes.io/managed-by": null}}})),
            )
            .await,
    );
    // Nothing the manager was refused is stored, and nobody they tried to bind has access.
    let stored = binding_names(admin, ns).await?;
    let refused = [
        "friend-view",
        "all-view",
        "sas-edit",
        "ci-edit",
        "mixed-edit",
        "bot-manager",
        "bot-member",
        "bot-memberships",
        "looks-managed",
    ];
    let leaked: Vec<&String> = stored
        .iter()
        .filter(|n| refused.contains(&n.as_str()))
        .collect();
    t.fact(
        "none of the refused bindings is stored",
        leaked.is_empty(),
        format!("stored: {stored:?}"),
    );
    for (name, user) in [(member_binding, &member), (own_binding, &w.manager)] {
        let subjects = rbs(admin)
            .get(name)
            .await?
            .subjects
            .unwrap_or_default()
            .into_iter()
            .map(|s| (s.kind, s.name))
            .collect::<Vec<_>>();
        t.fact(
            &format!("the operator's binding {name} still binds only its member"),
            subjects == [("User".to_string(), user.to_string())],
            format!("{subjects:?}"),
        );
    }
    for (verb, resource) in [("get", "pods"), ("create", "deployments.apps")] {
        let can = env.can_i(&friend, &[], verb, resource, Some(ns)).await
            || env
                .can_i(
                    intruder.as_str(),
                    &["system:authenticated"],
                    verb,
                    resource,
                    Some(ns),
                )
                .await;
        t.fact(
            &format!("nobody the manager tried to bind may {verb} {resource}"),
            !can,
            if can { "allowed" } else { "" },
        );
    }
    let can = env
        .can_i(&member, &[], "create", "deployments.apps", Some(ns))
        .await;
    t.fact(
        "the Member gained nothing beyond view",
        !can,
        if can { "allowed" } else { "" },
    );
    t.row(
        "staff bind a User to view",
        Expect::Allowed,
        rbs(admin)
            .create(
                &pp(),
                &role_binding(ns, "friend-view", "view", json!([rbac_user(&friend)])),
            )
            .await,
    );
    t.row(
        "staff bind a ServiceAccount to tenancy:project-manager",
        Expect::Allowed,
        rbs(admin)
            .create(
                &pp(),
                &role_binding(ns, "staff-bot", MANAGER_ROLE, json!([bot.clone()])),
            )
            .await,
    );
    wait_access(&env, &friend, "get", "pods", Some(ns), true).await?;

    // Deleting the operator's binding (the webhook does not guard deletes) does not last: the
    // operator puts it back.
    t.row(
        "manager deletes the operator's binding of a Member",
        Expect::Allowed,
        rbs(&as_manager)
            .delete(member_binding, &DeleteParams::default())
            .await,
    );
    let rbs_admin = rbs(admin);
    let restored = wait_for(
        "the operator to put back the deleted membership binding",
        RECONCILE_TIMEOUT,
        || async {
            rbs_admin
                .get_opt(member_binding)
                .await
                .ok()
                .flatten()
                .filter(|b| b.metadata.deletion_timestamp.is_none())
        },
    )
    .await;
    t.fact(
        "the deleted membership binding is back",
        restored.is_ok(),
        why(&restored),
    );
    wait_access(&env, &member, "get", "pods", Some(ns), true).await?;

    // The Manager's role ends: they keep nothing, and nothing they made acts for them.
    let (bot_user, bot_groups) = sa_user(ns, "bot");
    let bot_groups: Vec<&str> = bot_groups.iter().map(String::as_str).collect();
    wait_access_as(
        &env,
        &bot_user,
        &bot_groups,
        "create",
        "deployments.apps",
        Some(ns),
        true,
    )
    .await?;
    wait_access_named(
        &env,
        &w.owner,
        "patch",
        "projectmemberships.tenancy.dev",
        "mgr",
        Some(ns),
        true,
    )
    .await?;
    t.row(
        "owner ends the Manager's membership (expirationTime in the past)",
        Expect::Allowed,
        Api::<ProjectMembership>::namespaced(as_owner.clone(), ns)
            .patch(
                "mgr",
                &patch_params(),
                &merge(json!({"spec": {"expirationTime": seconds_from_now(-60)}})),
            )
            .await,
    );
    wait_access(
        &env,
        &w.manager,
        "create",
        "deployments.apps",
        Some(ns),
        false,
    )
    .await?;
    for (verb, resource) in [
        ("get", "pods"),
        ("create", "pods"),
        ("get", "secrets"),
        ("create", "rolebindings.rbac.authorization.k8s.io"),
        ("create", "serviceaccounts/token"),
        ("impersonate", "serviceaccounts"),
        ("create", "projectmemberships.tenancy.dev"),
    ] {
        let can = env.can_i(&w.manager, &[], verb, resource, Some(ns)).await;
        t.fact(
            &format!("the expired Manager may not {verb} {resource}"),
            !can,
            if can { "allowed" } else { "" },
        );
    }
    t.row(
        "the expired Manager binds own ServiceAccount to edit",
        Expect::Refused(403),
        rbs(&as_manager)
            .create(
                &pp(),
                &role_binding(ns, "bot-edit-2", "edit", json!([bot.clone()])),
            )
            .await,
    );
    t.row(
        "the expired Manager adds themselves to bot-edit",
        Expect::Refused(403),
        rbs(&as_manager)
            .patch(
                "bot-edit",
                &patch_params(),
                &merge(json!({"subjects": [bot.clone(), rbac_user(&w.manager)]})),
            )
            .await,
    );
    let mgr_binding = rbs(admin).get_opt(own_binding).await?;
    t.fact(
        "the expired Manager's binding is gone",
        mgr_binding.is_none(),
        format!("{:?}", mgr_binding.map(|b| b.subjects)),
    );
    t.finish("rolebindings in a project namespace")
}

// ---------------------------------------------------------------------------------------------
// 2. Soft delete leaves no access but staff's

async fn soft_delete_leaves_no_access_but_staffs(env: Arc<Env>) -> TestResult {
    let w = world(&env, "adv-softdel", default_quota(), default_hard()).await?;
    let (admin, ns) = (&w.admin, w.project.as_str());
    let friend = w.user("friend");
    let as_owner = env.client_as(&w.owner, &[]).await;
    let as_manager = env.client_as(&w.manager, &[]).await;
    let rbs = |c: &Client| Api::<RoleBinding>::namespaced(c.clone(), ns);
    let (bot_user, bot_groups) = sa_user(ns, "bot");
    let bot_groups: Vec<&str> = bot_groups.iter().map(String::as_str).collect();
    let mut t = Checks::default();

    t.row(
        "staff bind a User to view",
        Expect::Allowed,
        rbs(admin)
            .create(
                &pp(),
                &role_binding(ns, "friend-view", "view", json!([rbac_user(&friend)])),
            )
            .await,
    );
    wait_access(
        &env,
        &w.manager,
        "create",
        "rolebindings.rbac.authorization.k8s.io",
        Some(ns),
        true,
    )
    .await?;
    t.row(
        "manager binds own ServiceAccount bot to edit",
        Expect::Allowed,
        rbs(&as_manager)
            .create(
                &pp(),
                &role_binding(ns, "bot-edit", "edit", json!([rbac_sa(ns, "bot")])),
            )
            .await,
    );
    wait_access(&env, &friend, "get", "pods", Some(ns), true).await?;
    wait_access_as(&env, &bot_user, &bot_groups, "get", "pods", Some(ns), true).await?;
    wait_finalizer(admin, ns).await?;
    wait_access_named(
        &env,
        &w.owner,
        "delete",
        "projects.tenancy.dev",
        ns,
        None,
        true,
    )
    .await?;
    t.row(
        "owner deletes the empty project",
        Expect::Allowed,
        Api::<Project>::all(as_owner.clone())
            .delete(ns, &DeleteParams::default())
            .await,
    );
    wait_project_gone(admin, ns).await?;

    let left = binding_names(admin, ns).await?;
    t.fact(
        "no RoleBinding is left in the archived namespace",
        left.is_empty(),
        format!("left: {left:?}"),
    );
    let archived = Api::<Namespace>::all(admin.clone()).get_opt(ns).await?;
    let state = archived
        .as_ref()
        .and_then(|n| n.labels().get("tenancy.dev/state").cloned());
    t.fact(
        "the namespace is kept as terminated",
        state.as_deref() == Some("terminated"),
        format!("tenancy.dev/state={state:?}"),
    );
    // Who deleted it is recorded by the webhook and kept in the archive.
    let deleted_by = archived
        .as_ref()
        .and_then(|n| n.annotations().get("tenancy.dev/archive").cloned())
        .and_then(|a| serde_json::from_str::<serde_json::Value>(&a).ok())
        .and_then(|a| a["terminatedBy"].as_str().map(str::to_string));
    t.fact(
        "the archive names the owner who deleted the project",
        deleted_by.as_deref() == Some(w.owner.as_str()),
        format!("terminatedBy={deleted_by:?}"),
    );
    for (who, groups) in [
        (friend.as_str(), &[][..]),
        (w.manager.as_str(), &[][..]),
        (w.owner.as_str(), &[][..]),
        (bot_user.as_str(), &bot_groups[..]),
    ] {
        let can = env.can_i(who, groups, "get", "pods", Some(ns)).await;
        t.fact(
            &format!("{who} may not get pods in the archived namespace"),
            !can,
            if can { "allowed" } else { "" },
        );
    }
    let (code, message) = match rbs(&as_owner)
        .create(
            &pp(),
            &role_binding(ns, "owner-back", "view", json!([rbac_sa(ns, "bot")])),
        )
        .await
    {
        Ok(_) => (200, String::new()),
        Err(e) => refusal(&e),
    };
    let ok = code == 403
        && (!message.contains(BINDINGS)
            || message.contains("only staff have access to an archived project"));
    t.fact(
        "owner binds a ServiceAccount in the archived namespace: refused",
        ok,
        format!("HTTP {code}: {message}"),
    );
    t.row(
        "manager binds a ServiceAccount in the archived namespace",
        Expect::Refused(403),
        rbs(&as_manager)
            .create(
                &pp(),
                &role_binding(ns, "mgr-back", "edit", json!([rbac_sa(ns, "bot")])),
            )
            .await,
    );
    // A non-staff user whom staff gave RBAC there: the webhook still refuses their bindings.
    let helper = w.user("helper");
    rbs(admin)
        .create(
            &pp(),
            &role_binding(ns, "staff-helper", "admin", json!([rbac_user(&helper)])),
        )
        .await?;
    wait_access(
        &env,
        &helper,
        "create",
        "rolebindings.rbac.authorization.k8s.io",
        Some(ns),
        true,
    )
    .await?;
    t.row(
        "a non-staff user with RBAC in the archived namespace binds its ServiceAccount",
        Expect::Hook(
            BINDINGS,
            403,
            "only staff have access to an archived project",
        ),
        rbs(&env.client_as(&helper, &[]).await)
            .create(
                &pp(),
                &role_binding(ns, "helper-bot", "view", json!([rbac_sa(ns, "bot")])),
            )
            .await,
    );
    rbs(admin)
        .delete("staff-helper", &DeleteParams::default())
        .await?;

    // The owner of another customer takes the archived name: that would be a move, staff-only.
    let (rival_customer, rival) = (w.user("globex"), w.user("otto"));
    create_customer(admin, &rival_customer, &rival, Value::Null).await?;
    wait_access(&env, &rival, "create", "projects.tenancy.dev", None, true).await?;
    t.row(
        "owner of another customer creates a project of the archived name",
        Expect::Hook(VALIDATE, 403, "moving a project is staff-only"),
        Api::<Project>::all(env.client_as(&rival, &[]).await)
            .create(&pp(), &project(ns, json!({"customer": rival_customer})))
            .await,
    );

    // The owner recovers the project (team not restored): what the soft delete removed stays
    // removed.
    wait_access(&env, &helper, "get", "pods", Some(ns), false).await?;
    t.row(
        "owner recovers the project",
        Expect::Allowed,
        Api::<Project>::all(as_owner.clone())
            .create(
                &pp(),
                &project(
                    ns,
                    json!({
                        "customer": w.customer,
                        "quota": {"hard": default_hard()},
                        "recovery": {"sendInvitationsToPreviousMembers": true},
                    }),
                ),
            )
            .await,
    );
    wait_project_active(admin, ns).await?;
    wait_access(&env, &w.owner, "create", "deployments.apps", Some(ns), true).await?;
    wait_observed(admin, ns).await?;
    for (who, groups) in [
        (friend.as_str(), &[][..]),
        (w.manager.as_str(), &[][..]),
        (bot_user.as_str(), &bot_groups[..]),
    ] {
        let can = env.can_i(who, groups, "get", "pods", Some(ns)).await;
        t.fact(
            &format!("{who} may not get pods in the recovered project"),
            !can,
            if can { "allowed" } else { "" },
        );
    }
    // The Manager is invited back: accepting grants access, smuggling a finalizer in does not.
    let mgr_memberships = Api::<ProjectMembership>::namespaced(as_manager.clone(), ns);
    let pending = wait_for(
        "the Manager's membership to be Pending",
        RECONCILE_TIMEOUT,
        || async {
            let m = Api::<ProjectMembership>::namespaced(admin.clone(), ns)
                .get_opt("mgr")
                .await
                .ok()
                .flatten()?;
            (m.status.as_ref().and_then(|s| s.phase) == Some(MembershipPhase::Pending))
                .then_some(())
        },
    )
    .await;
    t.fact(
        "the Manager is invited back (Pending)",
        pending.is_ok(),
        why(&pending),
    );
    if pending.is_ok() {
        wait_access_named(
            &env,
            &w.manager,
            "patch",
            "projectmemberships.tenancy.dev",
            "mgr",
            Some(ns),
            true,
        )
        .await?;
        let can = env.can_i(&w.manager, &[], "get", "pods", Some(ns)).await;
        t.fact(
            "the invited Manager has no access before accepting",
            !can,
            if can { "allowed" } else { "" },
        );
        t.row(
            "the invited Manager accepts while adding a finalizer",
            Expect::Hook(VALIDATE, 403, "metadata.finalizers"),
            mgr_memberships
                .patch(
                    "mgr",
                    &patch_params(),
                    &merge(json!({"metadata": {
                        "annotations": {"tenancy.dev/accept": "true"},
                        "finalizers": ["example.com/keep"],
                    }})),
                )
                .await,
        );
        t.row(
            "the invited Manager accepts while setting an owner reference",
            Expect::Hook(VALIDATE, 403, "metadata.ownerReferences"),
            mgr_memberships
                .patch(
                    "mgr",
                    &patch_params(),
                    &merge(json!({"metadata": {
                        "annotations": {"tenancy.dev/accept": "true"},
                        "ownerReferences": [{
                            "apiVersion": "v1", "kind": "ConfigMap", "name": "gone",
                            "uid": "00000000-0000-0000-0000-000000000000",
                        }],
                    }})),
                )
                .await,
        );
    }
    let foreign: Vec<String> = Api::<RoleBinding>::namespaced(admin.clone(), ns)
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .filter(|b| {
            b.labels()
                .get("app.kubernetes.io/managed-by")
                .map(String::as_str)
                != Some("tenancy-operator")
        })
        .map(|b| b.name_any())
        .collect();
    t.fact(
        "the recovered namespace holds only the operator's bindings",
        foreign.is_empty(),
        format!("others: {foreign:?}"),
    );
    if pending.is_ok() {
        t.row(
            "the invited Manager accepts",
            Expect::Allowed,
            mgr_memberships
                .patch(
                    "mgr",
                    &patch_params(),
                    &merge(json!({"metadata": {"annotations": {"tenancy.dev/accept": "true"}}})),
                )
                .await,
        );
        let back = wait_access(
            &env,
            &w.manager,
            "create",
            "deployments.apps",
            Some(ns),
            true,
        )
        .await;
        t.fact(
            "the accepted Manager has access again",
            back.is_ok(),
            why(&back),
        );
        let m = Api::<ProjectMembership>::namespaced(admin.clone(), ns)
            .get("mgr")
            .await?;
        t.fact(
            "the accepted membership has no finalizer or owner reference",
            m.finalizers().is_empty() && m.owner_references().is_empty(),
            format!("{:?} {:?}", m.finalizers(), m.owner_references()),
        );
    }
    t.finish("soft delete leaves no access")
}

// ---------------------------------------------------------------------------------------------
// 3. The owner cannot turn the soft delete into a plain delete

async fn owner_cannot_skip_the_soft_delete(env: Arc<Env>) -> TestResult {
    let w = world(&env, "adv-skip", default_quota(), default_hard()).await?;
    let (admin, ns) = (&w.admin, w.project.as_str());
    let as_owner = env.client_as(&w.owner, &[]).await;
    let as_manager = env.client_as(&w.manager, &[]).await;
    let (bot_user, bot_groups) = sa_user(ns, "bot");
    let bot_groups: Vec<&str> = bot_groups.iter().map(String::as_str).collect();
    let mut t = Checks::default();
    wait_access(
        &env,
        &w.manager,
        "create",
        "rolebindings.rbac.authorization.k8s.io",
        Some(ns),
        true,
    )
    .await?;
    t.row(
        "manager binds own ServiceAccount bot to edit",
        Expect::Allowed,
        Api::<RoleBinding>::namespaced(as_manager.clone(), ns)
            .create(
                &pp(),
                &role_binding(ns, "bot-edit", "edit", json!([rbac_sa(ns, "bot")])),
            )
            .await,
    );
    wait_access_as(
        &env,
        &bot_user,
        &bot_groups,
        "create",
        "pods",
        Some(ns),
        true,
    )
    .await?;
    wait_finalizer(admin, ns).await?;
    for verb in ["patch", "delete"] {
        wait_access_named(&env, &w.owner, verb, "projects.tenancy.dev", ns, None, true).await?;
    }

    wait_access_named(
        &env,
        &w.manager,
        "patch",
        "projects.tenancy.dev",
        ns,
        None,
        true,
    )
    .await?;
    t.row(
        "manager removes the soft-delete finalizer",
        Expect::Hook(VALIDATE, 403, "metadata.finalizers"),
        Api::<Project>::all(as_manager.clone())
            .patch(
                ns,
                &patch_params(),
                &merge(json!({"metadata": {"finalizers": null}})),
            )
            .await,
    );
    t.row(
        "owner replaces the project without its finalizer",
        Expect::Hook(VALIDATE, 403, "metadata.finalizers"),
        {
            let api = Api::<Project>::all(as_owner.clone());
            let mut p = api.get(ns).await?;
            p.metadata.finalizers = None;
            p.metadata.managed_fields = None;
            api.replace(ns, &pp(), &p).await
        },
    );
    // The owner removes the soft-delete finalizer and deletes the project at once, as long as
    // the removal is admitted and the operator puts the finalizer back before the delete lands.
    let projects = Api::<Project>::all(as_owner.clone());
    let mut removal = None;
    let mut deleted_without_finalizer = false;
    for _ in 0..20 {
        let patched = projects
            .patch(
                ns,
                &patch_params(),
                &json_patch(json!([
                    {"op": "test", "path": "/metadata/finalizers", "value": ["tenancy.dev/soft-delete"]},
                    {"op": "remove", "path": "/metadata/finalizers"},
                ])),
            )
            .await;
        let p = match patched {
            Ok(p) => p,
            Err(e) => {
                let (code, message) = refusal(&e);
                // A failed `test` (the finalizer list is not the expected one): try again.
                if code == 422 && !message.contains("admission webhook") {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
                removal = Some(format!("HTTP {code}: {message}"));
                break;
            }
        };
        removal = Some("allowed".into());
        let delete = DeleteParams {
            preconditions: Some(Preconditions {
                resource_version: p.resource_version(),
                uid: None,
            }),
            ..Default::default()
        };
        match projects.delete(ns, &delete).await {
            Ok(_) => {
                deleted_without_finalizer = true;
                break;
            }
            Err(e) if refusal(&e).0 == 409 => continue,
            Err(e) => return Err(format!("deleting the project: {:?}", refusal(&e)).into()),
        }
    }
    eprintln!(
        "[e2e] owner removing the soft-delete finalizer: {}; deleted without it: {deleted_without_finalizer}",
        removal.as_deref().unwrap_or("never attempted")
    );
    if !deleted_without_finalizer {
        // The removal was refused (or never won the race): an ordinary delete.
        wait_finalizer(admin, ns).await?;
        projects.delete(ns, &DeleteParams::default()).await?;
    }
    wait_project_gone(admin, ns).await?;

    // Whatever happened, a project its owner deleted leaves no tenant access and no unbounded
    // namespace behind.
    let left = binding_names(admin, ns).await?;
    t.fact(
        "no RoleBinding is left in the deleted project's namespace",
        left.is_empty(),
        format!(
            "finalizer removal by the owner: {}; left: {left:?}",
            removal.as_deref().unwrap_or("-")
        ),
    );
    // The garbage collector may take a moment to remove what the project owned; the
    // ServiceAccount's binding is nobody's, so it stays unless the operator removes it.
    let bot_can = wait_access_as(
        &env,
        &bot_user,
        &bot_groups,
        "create",
        "pods",
        Some(ns),
        false,
    )
    .await;
    t.fact(
        "ServiceAccount bot (bound by the Manager) may no longer create pods",
        bot_can.is_ok(),
        why(&bot_can),
    );
    let quota = Api::<ResourceQuota>::namespaced(admin.clone(), ns)
        .list(&ListParams::default())
        .await?;
    let pods: Vec<Option<String>> = quota
        .items
        .iter()
        .map(|q| {
            q.spec
                .as_ref()
                .and_then(|s| s.hard.as_ref())
                .and_then(|h| h.get("pods"))
                .map(|v| v.0.clone())
        })
        .collect();
    t.fact(
        "the namespace is frozen (a ResourceQuota with pods: 0)",
        pods.iter().any(|p| p.as_deref() == Some("0")),
        format!("ResourceQuotas' pods: {pods:?}"),
    );
    let state = Api::<Namespace>::all(admin.clone())
        .get_opt(ns)
        .await?
        .map(|n| n.labels().clone());
    t.fact(
        "the namespace is archived (tenancy.dev/state=terminated)",
        state
            .as_ref()
            .and_then(|l| l.get("tenancy.dev/state"))
            .map(String::as_str)
            == Some("terminated"),
        format!("labels: {state:?}"),
    );
    let result = t.finish("owner skipping the soft delete");
    if result.is_err() {
        eprintln!("{}", operator_log_lines(&env, ns));
    }
    result
}

// ---------------------------------------------------------------------------------------------
// 3b. Bindings made while the soft delete runs

/// The owner keeps creating RoleBindings for the namespace's ServiceAccount while their project
/// is soft-deleted: whatever the timing, none may outlive the soft delete (access goes first,
/// "whoever made the binding").
async fn bindings_made_while_the_soft_delete_runs_do_not_survive_it(env: Arc<Env>) -> TestResult {
    use std::sync::atomic::{AtomicBool, Ordering};
    let w = world(&env, "adv-race", default_quota(), default_hard()).await?;
    let (admin, ns) = (&w.admin, w.project.as_str());
    let as_owner = env.client_as(&w.owner, &[]).await;
    let (bot_user, bot_groups) = sa_user(ns, "bot");
    let bot_groups: Vec<&str> = bot_groups.iter().map(String::as_str).collect();
    let mut t = Checks::default();
    wait_access(
        &env,
        &w.owner,
        "create",
        "rolebindings.rbac.authorization.k8s.io",
        Some(ns),
        true,
    )
    .await?;
    wait_finalizer(admin, ns).await?;
    wait_access_named(
        &env,
        &w.owner,
        "delete",
        "projects.tenancy.dev",
        ns,
        None,
        true,
    )
    .await?;

    // Four writers, each creating bindings one after the other until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let start = std::time::Instant::now();
    let mut writers = Vec::new();
    for k in 0..4 {
        let api = Api::<RoleBinding>::namespaced(as_owner.clone(), ns);
        let (stop, ns) = (stop.clone(), ns.to_string());
        writers.push(tokio::spawn(async move {
            let (mut created, mut refused, mut last) = (Vec::new(), 0u32, String::new());
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) && i < 2000 {
                let name = format!("race-{k}-{i}");
                i += 1;
                let rb = role_binding(&ns, &name, "edit", json!([rbac_sa(&ns, "bot")]));
                match api.create(&pp(), &rb).await {
                    Ok(_) => created.push((name, start.elapsed().as_millis())),
                    Err(e) => {
                        refused += 1;
                        let (code, message) = refusal(&e);
                        last = format!("HTTP {code}: {message}");
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
            }
            (created, refused, last)
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let delete_at = start.elapsed().as_millis();
    let deleted = Api::<Project>::all(as_owner.clone())
        .delete(ns, &DeleteParams::default())
        .await;
    let deleted_ok = t.row("owner deletes the project", Expect::Allowed, deleted);
    let gone = if deleted_ok {
        wait_project_gone(admin, ns).await
    } else {
        Ok(())
    };
    let gone_at = start.elapsed().as_millis();
    // A little longer, so a binding created in the last moment is counted too.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let mut created = Vec::new();
    for writer in writers {
        let (names, refused, last) = writer.await?;
        eprintln!(
            "[e2e] soft-delete race writer: {} bindings created, {refused} refused, last refusal: {last}",
            names.len()
        );
        created.extend(names);
    }
    gone?;
    // Bindings that outlive the soft delete are a failure only if they stay: the operator gets
    // a minute to remove them.
    let rbs_admin = Api::<RoleBinding>::namespaced(admin.clone(), ns);
    let emptied = wait_for(
        "no RoleBinding left in the archived namespace",
        RECONCILE_TIMEOUT,
        || async {
            rbs_admin
                .list(&ListParams::default())
                .await
                .ok()
                .filter(|l| l.items.is_empty())
                .map(|_| ())
        },
    )
    .await;
    let left = binding_names(admin, ns).await?;
    let survivors: Vec<&(String, u128)> =
        created.iter().filter(|(n, _)| left.contains(n)).collect();
    eprintln!(
        "[e2e] soft-delete race: delete sent at {delete_at} ms, project seen gone at {gone_at} ms; \
         bindings created (name, ms after start): {created:?}; surviving: {survivors:?}"
    );
    t.fact(
        "no binding the owner made survives the soft delete",
        emptied.is_ok() && left.is_empty(),
        format!(
            "{} of {} created survive a minute after the project is gone; left in the namespace: {left:?}",
            survivors.len(),
            created.len()
        ),
    );
    let can = env
        .can_i(&bot_user, &bot_groups, "get", "secrets", Some(ns))
        .await;
    t.fact(
        "ServiceAccount bot may not read secrets in the archived namespace",
        !can,
        if can { "allowed" } else { "" },
    );
    let result = t.finish("bindings made while the soft delete runs");
    if result.is_err() {
        let labels = Api::<Namespace>::all(admin.clone())
            .get_opt(ns)
            .await?
            .map(|n| n.labels().clone());
        eprintln!("[e2e] the namespace's labels after the soft delete: {labels:?}");
        eprintln!("{}", operator_log_lines(&env, ns));
    }
    result
}

// ---------------------------------------------------------------------------------------------
// 4. Customer quota, limits and names

async fn customer_quota_names_and_limits_cannot_be_bypassed(env: Arc<Env>) -> TestResult {
    let admin = env.client().await;
    let tag = unique_name("adv-quota");
    let cust = format!("{tag}-acme");
    let owner = format!("{tag}-owner");
    let manager = format!("{tag}-mgr");
    let name = |n: &str| format!("{tag}-{n}");
    create_customer(&admin, &cust, &owner, default_quota()).await?;
    wait_access(&env, &owner, "create", "projects.tenancy.dev", None, true).await?;
    let as_owner = env.client_as(&owner, &[]).await;
    let as_manager = env.client_as(&manager, &[]).await;
    let projects = |c: &Client| Api::<Project>::all(c.clone());
    let create = |c: &Client, n: String, spec: Value| {
        let api = projects(c);
        let mut spec = spec;
        spec["customer"] = json!(cust);
        async move { api.create(&pp(), &project(&n, spec)).await }
    };
    let hard = |h: Value| json!({"quota": {"hard": h}});
    let mut t = Checks::default();

    t.row(
        "owner creates a project without pods in its quota",
        Expect::Hook(VALIDATE, 422, "must set"),
        create(
            &as_owner,
            name("nopods"),
            hard(json!({"requests.cpu": "1"})),
        )
        .await,
    );
    t.row(
        "owner creates a project without any quota",
        Expect::Hook(VALIDATE, 422, "must set"),
        create(&as_owner, name("noquota"), json!({})).await,
    );
    t.row(
        "owner sets cpu and requests.cpu",
        Expect::Hook(VALIDATE, 422, "are the same resource"),
        create(
            &as_owner,
            name("twice"),
            hard(json!({"cpu": "1", "requests.cpu": "1", "pods": "5"})),
        )
        .await,
    );
    t.row(
        "owner sets pods and count/pods",
        Expect::Hook(VALIDATE, 422, "are the same resource"),
        create(
            &as_owner,
            name("podstwice"),
            hard(json!({"requests.cpu": "1", "pods": "5", "count/pods": "50"})),
        )
        .await,
    );
    t.row(
        "owner sets a negative quantity",
        Expect::Api(422, &["spec.quota.hard", "should match"]),
        create(
            &as_owner,
            name("negative"),
            hard(json!({"requests.cpu": "-1", "pods": "5"})),
        )
        .await,
    );
    t.row(
        "owner sets a key no ResourceQuota limits",
        Expect::Hook(VALIDATE, 422, "is not a resource a ResourceQuota can limit"),
        create(
            &as_owner,
            name("foo"),
            hard(json!({"requests.cpu": "1", "pods": "5", "foo": "1"})),
        )
        .await,
    );
    let mut bad_limits = hard(json!({"requests.cpu": "1", "pods": "5"}));
    bad_limits["limitRange"] = json!({"min": {"cpu": "2"}, "max": {"cpu": "1"}});
    t.row(
        "owner sets limitRange min.cpu above max.cpu",
        Expect::Hook(VALIDATE, 422, "is above"),
        create(&as_owner, name("limits"), bad_limits).await,
    );
    for reserved in ["cert-manager", "argocd", "kube-foo"] {
        t.row(
            &format!("owner creates project {reserved:?}"),
            Expect::Hook(VALIDATE, 422, "is reserved"),
            create(
                &as_owner,
                reserved.to_string(),
                hard(json!({"requests.cpu": "1", "pods": "5"})),
            )
            .await,
        );
        t.row(
            &format!("staff create project {reserved:?}"),
            Expect::Hook(VALIDATE, 422, "is reserved"),
            create(
                &admin,
                reserved.to_string(),
                hard(json!({"requests.cpu": "1", "pods": "5"})),
            )
            .await,
        );
    }
    t.row(
        "owner creates project \"a.b\"",
        Expect::Api(422, &["DNS label"]),
        create(
            &as_owner,
            format!("{tag}.b"),
            hard(json!({"requests.cpu": "1", "pods": "5"})),
        )
        .await,
    );
    let long = format!("{tag}-{}", "x".repeat(63 - tag.len()));
    assert_eq!(long.len(), 64);
    t.row(
        "staff create a customer with a 64-character name",
        Expect::Api(422, &["at most 63"]),
        Api::<Customer>::all(admin.clone())
            .create(&pp(), &customer(&long, json!({})))
            .await,
    );

    // The customer's requests.cpu is 4; `cpu` is the same resource.
    let (first, second) = (name("first"), name("second"));
    t.row(
        "owner creates a project with cpu: 3",
        Expect::Allowed,
        create(
            &as_owner,
            first.clone(),
            hard(json!({"cpu": "3", "pods": "5"})),
        )
        .await,
    );
    t.row(
        "owner creates a project with requests.cpu: 2 (3 of 4 held as cpu)",
        Expect::Hook(VALIDATE, 409, "quota exhausted"),
        create(
            &as_owner,
            second.clone(),
            hard(json!({"requests.cpu": "2", "pods": "5"})),
        )
        .await,
    );
    t.row(
        "owner creates a project with requests.cpu: 1",
        Expect::Allowed,
        create(
            &as_owner,
            second.clone(),
            hard(json!({"requests.cpu": "1", "pods": "5"})),
        )
        .await,
    );
    t.row(
        "owner creates a third project with requests.cpu: 1 (none left)",
        Expect::Hook(VALIDATE, 409, "quota exhausted"),
        create(
            &as_owner,
            name("third"),
            hard(json!({"requests.cpu": "1", "pods": "5"})),
        )
        .await,
    );

    // A Manager of the second project changes its quota.
    wait_project_active(&admin, &second).await?;
    wait_access(
        &env,
        &owner,
        "create",
        "projectmemberships.tenancy.dev",
        Some(&second),
        true,
    )
    .await?;
    add_member(&env, &as_owner, &second, "mgr", &manager, "Manager").await?;
    wait_access_named(
        &env,
        &manager,
        "patch",
        "projects.tenancy.dev",
        &second,
        None,
        true,
    )
    .await?;
    let patch_quota = |h: Value| {
        let api = projects(&as_manager);
        let second = second.clone();
        async move {
            api.patch(
                &second,
                &patch_params(),
                &merge(json!({"spec": {"quota": {"hard": h}}})),
            )
            .await
        }
    };
    t.row(
        "manager drops pods from the project's quota",
        Expect::Hook(VALIDATE, 422, "must set"),
        patch_quota(json!({"pods": null})).await,
    );
    t.row(
        "manager raises requests.cpu beyond what is left",
        Expect::Hook(VALIDATE, 409, "quota exhausted"),
        patch_quota(json!({"requests.cpu": "2"})).await,
    );
    t.row(
        "manager adds cpu next to requests.cpu",
        Expect::Hook(VALIDATE, 422, "are the same resource"),
        patch_quota(json!({"cpu": "2"})).await,
    );
    t.row(
        "manager swaps requests.cpu for a larger cpu",
        Expect::Hook(VALIDATE, 409, "quota exhausted"),
        patch_quota(json!({"requests.cpu": null, "cpu": "2"})).await,
    );
    t.row(
        "manager sets a negative pods",
        Expect::Api(422, &["spec.quota.hard", "should match"]),
        patch_quota(json!({"pods": "-5"})).await,
    );
    let stored = projects(&admin).get(&second).await?;
    let stored_hard = stored.spec.quota.as_ref().map(|q| q.hard.clone());
    let stored_json = serde_json::to_value(&stored_hard)?;
    t.fact(
        "the second project's quota is as created",
        stored_json == json!({"requests.cpu": "1", "pods": "5"}),
        format!("stored: {stored_json}"),
    );
    let third = projects(&admin).get_opt(&name("third")).await?;
    t.fact(
        "no third project exists",
        third.is_none(),
        "the refused project is stored",
    );
    t.finish("customer quota, limits and names")
}

// ---------------------------------------------------------------------------------------------
// 5. The ledger holds what stored projects hold

async fn ledger_keeps_what_stored_projects_hold(env: Arc<Env>) -> TestResult {
    let admin = env.client().await;
    let tag = unique_name("adv-ledger");
    let cust = format!("{tag}-acme");
    let owner = format!("{tag}-owner");
    let (a, b) = (format!("{tag}-a"), format!("{tag}-b"));
    create_customer(
        &admin,
        &cust,
        &owner,
        json!({"hard": {"requests.cpu": "2", "pods": "10"}}),
    )
    .await?;
    wait_access(&env, &owner, "create", "projects.tenancy.dev", None, true).await?;
    let as_owner = env.client_as(&owner, &[]).await;
    let projects = Api::<Project>::all(as_owner.clone());
    let spec = |cpu: &str| json!({"customer": cust, "quota": {"hard": {"requests.cpu": cpu, "pods": "1"}}});
    let mut t = Checks::default();

    t.row(
        "owner creates A with requests.cpu: 2",
        Expect::Allowed,
        projects.create(&pp(), &project(&a, spec("2"))).await,
    );
    // At once, before the operator's caches may have seen A.
    let again = projects.create(&pp(), &project(&a, spec("0"))).await;
    t.row(
        "owner creates A again at once with requests.cpu: 0",
        Expect::Refused(409),
        again,
    );
    wait_project_active(&admin, &a).await?;
    let again = projects.create(&pp(), &project(&a, spec("0"))).await;
    let already = matches!(&again, Err(kube::Error::Api(s)) if s.reason == "AlreadyExists");
    t.row(
        "owner creates A again once it is Active, with requests.cpu: 0",
        Expect::Refused(409),
        again,
    );
    t.fact("the second refusal is AlreadyExists", already, "");
    t.row(
        "owner creates B with requests.cpu: 1 (A holds all 2)",
        Expect::Hook(VALIDATE, 409, "quota exhausted"),
        projects.create(&pp(), &project(&b, spec("1"))).await,
    );
    let stored = Api::<Project>::all(admin.clone()).get(&a).await?;
    let stored_cpu = stored
        .spec
        .quota
        .as_ref()
        .and_then(|q| q.hard.get("requests.cpu"))
        .map(|q| q.0.clone());
    t.fact(
        "A still holds requests.cpu: 2",
        stored_cpu.as_deref() == Some("2"),
        format!("{stored_cpu:?}"),
    );
    let ledger_name = format!("tenancy-ledger-{cust}");
    let ledger = Api::<ConfigMap>::namespaced(admin.clone(), &env.local().namespace)
        .get_opt(&ledger_name)
        .await?;
    let data = ledger.and_then(|cm| cm.data).unwrap_or_default();
    let entry: Option<Value> = data.get(&a).and_then(|v| serde_json::from_str(v).ok());
    let cpu = entry
        .as_ref()
        .and_then(|e| e["hard"]["requests.cpu"].as_str())
        .map(str::to_string);
    t.fact(
        "the ledger's entry for A says requests.cpu: 2",
        matches!(cpu.as_deref(), Some("2") | Some("2000m")),
        format!("ledger {ledger_name}: {data:?}"),
    );
    t.fact(
        "the ledger has no entry for B",
        !data.contains_key(&b),
        format!("ledger {ledger_name}: {data:?}"),
    );
    t.finish("ledger equals the stored projects")
}

// ---------------------------------------------------------------------------------------------
// 6. An orphaned namespace

async fn orphaned_namespace_goes_to_no_other_customer_without_staff(env: Arc<Env>) -> TestResult {
    let admin = env.client().await;
    let tag = unique_name("adv-orphan");
    let (c1, c2) = (format!("{tag}-one"), format!("{tag}-two"));
    let (o1, o2, m1) = (
        format!("{tag}-olga"),
        format!("{tag}-otto"),
        format!("{tag}-mona"),
    );
    let ns = format!("{tag}-lab");
    create_customer(&admin, &c1, &o1, Value::Null).await?;
    create_customer(&admin, &c2, &o2, Value::Null).await?;
    let projects = Api::<Project>::all(admin.clone());
    let mut t = Checks::default();

    // Staff make project O for customer one, with a Manager.
    create_project(&admin, &admin, &ns, &c1, Value::Null).await?;
    add_member(&env, &admin, &ns, "mona", &m1, "Manager").await?;
    wait_access(&env, &o1, "get", "pods", Some(&ns), true).await?;
    wait_finalizer(&admin, &ns).await?;

    // Staff remove its finalizer and delete it: it vanishes without the soft delete.
    let mut vanished = false;
    for _ in 0..20 {
        let p = projects
            .patch(
                &ns,
                &patch_params(),
                &json_patch(json!([{"op": "remove", "path": "/metadata/finalizers"}])),
            )
            .await;
        let p = match p {
            Ok(p) => p,
            Err(e) if refusal(&e).0 == 422 => continue,
            Err(e) => return Err(format!("removing the finalizer: {:?}", refusal(&e)).into()),
        };
        let delete = DeleteParams {
            preconditions: Some(Preconditions {
                resource_version: p.resource_version(),
                uid: None,
            }),
            ..Default::default()
        };
        match projects.delete(&ns, &delete).await {
            Ok(_) => {
                vanished = true;
                break;
            }
            Err(e) if refusal(&e).0 == 409 => continue,
            Err(e) => return Err(format!("deleting the project: {:?}", refusal(&e)).into()),
        }
    }
    if !vanished {
        return Err("could not delete the project without its finalizer in 20 tries".into());
    }
    wait_project_gone(&admin, &ns).await?;
    let labels = Api::<Namespace>::all(admin.clone())
        .get(&ns)
        .await?
        .labels()
        .clone();
    t.fact(
        "the namespace stays, labelled as the project's",
        labels.get("tenancy.dev/project") == Some(&ns)
            && labels
                .get("app.kubernetes.io/managed-by")
                .map(String::as_str)
                == Some("tenancy-operator"),
        format!("{labels:?}"),
    );
    // Nobody of the first customer keeps access to a namespace no project owns.
    for who in [&o1, &m1] {
        let gone = wait_access(&env, who, "get", "pods", Some(&ns), false).await;
        t.fact(
            &format!("{who} loses access to the orphaned namespace"),
            gone.is_ok(),
            why(&gone),
        );
    }

    // The owner of another customer creates a project of the same name.
    wait_access(&env, &o2, "create", "projects.tenancy.dev", None, true).await?;
    let as_o2 = env.client_as(&o2, &[]).await;
    t.row(
        "owner of customer two creates a project named like the orphaned namespace",
        Expect::Allowed,
        Api::<Project>::all(as_o2.clone())
            .create(&pp(), &project(&ns, json!({"customer": c2})))
            .await,
    );
    let conflict = wait_project(&admin, &ns, "phase Conflict", |p| {
        (phase(p) == Some(ProjectPhase::Conflict)).then(|| p.clone())
    })
    .await?;
    let status = serde_json::to_string(&conflict.status)?;
    t.fact(
        "its condition names the earlier project",
        status.contains("earlier project"),
        status.clone(),
    );
    wait_observed(&admin, &ns).await?;
    for who in [&o2, &o1, &m1] {
        let can = env.can_i(who, &[], "get", "pods", Some(&ns)).await;
        t.fact(
            &format!("{who} may not get pods in the namespace while the project is in Conflict"),
            !can,
            if can { "allowed" } else { "" },
        );
    }
    // The project's own owner cannot even read it while it is in Conflict (reported, not
    // asserted: see the trial's log).
    for verb in ["get", "delete"] {
        let can = can_i_named(&env, &o2, verb, "projects.tenancy.dev", &ns, None).await;
        eprintln!(
            "[e2e] orphaned namespace: owner of customer two may {verb} project {ns} in Conflict: {can}"
        );
    }
    t.row(
        "staff add a membership to the project in Conflict",
        Expect::Hook(VALIDATE, 409, "is in phase Conflict"),
        Api::<ProjectMembership>::namespaced(admin.clone(), &ns)
            .create(&pp(), &membership(&ns, "late", &o2, "Manager"))
            .await,
    );
    // Staff let the owner patch the project (RBAC), so the webhook's rule answers.
    let patcher = format!("{tag}-patcher");
    let roles: Api<ClusterRole> = Api::all(admin.clone());
    let crbs: Api<ClusterRoleBinding> = Api::all(admin.clone());
    roles
        .create(
            &pp(),
            &from_json(json!({
                "metadata": {"name": patcher},
                "rules": [{"apiGroups": ["tenancy.dev"], "resources": ["projects"],
                           "resourceNames": [ns], "verbs": ["get", "patch", "update"]}],
            })),
        )
        .await?;
    crbs.create(
        &pp(),
        &from_json(json!({
            "metadata": {"name": patcher},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": patcher},
            "subjects": [rbac_user(&o2)],
        })),
    )
    .await?;
    wait_access_named(&env, &o2, "patch", "projects.tenancy.dev", &ns, None, true).await?;
    t.row(
        "owner of customer two sets tenancy.dev/adopt-namespace",
        Expect::Hook(VALIDATE, 403, "tenancy.dev/adopt-namespace"),
        Api::<Project>::all(as_o2.clone())
            .patch(
                &ns,
                &patch_params(),
                &merge(
                    json!({"metadata": {"annotations": {"tenancy.dev/adopt-namespace": "true"}}}),
                ),
            )
            .await,
    );
    let _ = crbs.delete(&patcher, &DeleteParams::default()).await;
    let _ = roles.delete(&patcher, &DeleteParams::default()).await;
    let still = projects.get(&ns).await?;
    t.fact(
        "the project is still in Conflict without the annotation",
        phase(&still) == Some(ProjectPhase::Conflict)
            && !still
                .annotations()
                .contains_key("tenancy.dev/adopt-namespace"),
        format!("{:?} {:?}", phase(&still), still.annotations()),
    );
    let can = env.can_i(&o2, &[], "get", "pods", Some(&ns)).await;
    t.fact(
        "owner of customer two still has no access",
        !can,
        if can { "allowed" } else { "" },
    );

    // Staff adopt it.
    t.row(
        "staff set tenancy.dev/adopt-namespace",
        Expect::Allowed,
        projects
            .patch(
                &ns,
                &patch_params(),
                &merge(
                    json!({"metadata": {"annotations": {"tenancy.dev/adopt-namespace": "true"}}}),
                ),
            )
            .await,
    );
    let adopted = wait_project_active(&admin, &ns).await;
    t.fact(
        "the adopted project becomes Active",
        adopted.is_ok(),
        why(&adopted),
    );
    let access = wait_access(&env, &o2, "get", "pods", Some(&ns), true).await;
    t.fact(
        "owner of customer two has access once staff adopted the namespace",
        access.is_ok(),
        why(&access),
    );
    let _ = projects.delete(&ns, &DeleteParams::default()).await;
    t.finish("orphaned namespace")
}

// ---------------------------------------------------------------------------------------------
// 7. Owner references and finalizers

async fn tenants_set_no_owner_references_or_finalizers(env: Arc<Env>) -> TestResult {
    let w = world(&env, "adv-gc", default_quota(), default_hard()).await?;
    let (admin, ns) = (&w.admin, w.project.as_str());
    let member = w.user("mem");
    let as_owner = env.client_as(&w.owner, &[]).await;
    let as_manager = env.client_as(&w.manager, &[]).await;
    add_member(&env, &as_owner, ns, "mem", &member, "Member").await?;
    wait_access_named(
        &env,
        &w.manager,
        "patch",
        "projects.tenancy.dev",
        ns,
        None,
        true,
    )
    .await?;
    wait_access_named(
        &env,
        &w.owner,
        "patch",
        "customers.tenancy.dev",
        &w.customer,
        None,
        true,
    )
    .await?;
    wait_finalizer(admin, ns).await?;
    let gone_owner = json!({"metadata": {"ownerReferences": [{
        "apiVersion": "v1", "kind": "ConfigMap", "name": "gone",
        "uid": "00000000-0000-0000-0000-000000000000",
    }]}});
    let add_finalizer =
        |f: &str| json_patch(json!([{"op": "add", "path": "/metadata/finalizers/-", "value": f}]));
    let memberships = |c: &Client| Api::<ProjectMembership>::namespaced(c.clone(), ns);
    let mut t = Checks::default();

    t.row(
        "manager sets an owner reference on the project",
        Expect::Hook(VALIDATE, 403, "metadata.ownerReferences"),
        Api::<Project>::all(as_manager.clone())
            .patch(ns, &patch_params(), &merge(gone_owner.clone()))
            .await,
    );
    t.row(
        "owner sets an owner reference on the project",
        Expect::Hook(VALIDATE, 403, "metadata.ownerReferences"),
        Api::<Project>::all(as_owner.clone())
            .patch(ns, &patch_params(), &merge(gone_owner.clone()))
            .await,
    );
    t.row(
        "owner sets an owner reference on the customer",
        Expect::Hook(VALIDATE, 403, "metadata.ownerReferences"),
        Api::<Customer>::all(as_owner.clone())
            .patch(&w.customer, &patch_params(), &merge(gone_owner.clone()))
            .await,
    );
    t.row(
        "owner sets a finalizer on the customer",
        Expect::Hook(VALIDATE, 403, "metadata.finalizers"),
        Api::<Customer>::all(as_owner.clone())
            .patch(
                &w.customer,
                &patch_params(),
                &merge(json!({"metadata": {"finalizers": ["example.com/keep"]}})),
            )
            .await,
    );
    t.row(
        "manager sets an owner reference on a membership",
        Expect::Hook(VALIDATE, 403, "metadata.ownerReferences"),
        memberships(&as_manager)
            .patch("mem", &patch_params(), &merge(gone_owner.clone()))
            .await,
    );
    t.row(
        "manager adds a finalizer to a membership",
        Expect::Hook(VALIDATE, 403, "metadata.finalizers"),
        memberships(&as_manager)
            .patch(
                "mem",
                &patch_params(),
                &merge(json!({"metadata": {"finalizers": ["example.com/keep"]}})),
            )
            .await,
    );
    t.row(
        "manager adds a finalizer to the project",
        Expect::Hook(VALIDATE, 403, "metadata.finalizers"),
        Api::<Project>::all(as_manager.clone())
            .patch(ns, &patch_params(), &add_finalizer("example.com/keep"))
            .await,
    );
    t.row(
        "owner creates a membership with a finalizer",
        Expect::Hook(VALIDATE, 403, "metadata.finalizers"),
        {
            let mut m = membership(ns, "kept", &w.user("kept"), "Member");
            m.metadata.finalizers = Some(vec!["example.com/keep".into()]);
            memberships(&as_owner).create(&pp(), &m).await
        },
    );
    t.row(
        "owner creates a membership owned by something else",
        Expect::Hook(VALIDATE, 403, "metadata.ownerReferences"),
        {
            let mut m = membership(ns, "owned", &w.user("owned"), "Member");
            m.metadata.owner_references =
                Some(from_json(gone_owner["metadata"]["ownerReferences"].clone()));
            memberships(&as_owner).create(&pp(), &m).await
        },
    );

    // The incarnation ties a project to a namespace across a restore: a tenant who could set it
    // could claim a namespace that is not theirs, and one who could drop it would lose theirs.
    let incarnation = |p: &Project| p.annotations().get("tenancy.dev/incarnation").cloned();
    let given = incarnation(&Api::<Project>::all(admin.clone()).get(ns).await?);
    t.fact(
        "the webhook gave the project an incarnation",
        given.as_ref().is_some_and(|i| i.len() == 32),
        format!("{given:?}"),
    );
    t.row(
        "manager changes the project's incarnation",
        Expect::Hook(MUTATE, 403, "metadata.annotations[tenancy.dev/incarnation]"),
        Api::<Project>::all(as_manager.clone())
            .patch(
                ns,
                &patch_params(),
                &merge(json!({"metadata": {"annotations": {
                    "tenancy.dev/incarnation": "00000000000000000000000000000000"}}})),
            )
            .await,
    );
    t.row(
        "owner removes the project's incarnation (admitted, and put back)",
        Expect::Allowed,
        Api::<Project>::all(as_owner.clone())
            .patch(
                ns,
                &patch_params(),
                &merge(json!({"metadata": {"annotations": {"tenancy.dev/incarnation": null}}})),
            )
            .await,
    );
    t.row(
        "owner creates a project carrying an incarnation",
        Expect::Hook(MUTATE, 403, "metadata.annotations[tenancy.dev/incarnation]"),
        {
            let mut p = project(
                &format!("{ns}-claim"),
                json!({"customer": w.customer.clone()}),
            );
            p.annotations_mut().insert(
                "tenancy.dev/incarnation".into(),
                given.clone().unwrap_or_default(),
            );
            Api::<Project>::all(as_owner.clone())
                .create(&pp(), &p)
                .await
        },
    );
    t.equal(
        "the project's incarnation afterwards",
        incarnation(&Api::<Project>::all(admin.clone()).get(ns).await?),
        given.clone(),
    );

    let p = Api::<Project>::all(admin.clone()).get_opt(ns).await?;
    t.fact(
        "the project still exists, not being deleted",
        p.as_ref()
            .is_some_and(|p| p.metadata.deletion_timestamp.is_none()),
        "",
    );
    if let Some(p) = &p {
        t.fact(
            "the project has no owner references and only its own finalizer",
            p.owner_references().is_empty() && p.finalizers() == ["tenancy.dev/soft-delete"],
            format!("{:?} {:?}", p.owner_references(), p.finalizers()),
        );
    }
    let c = Api::<Customer>::all(admin.clone()).get(&w.customer).await?;
    t.fact(
        "the customer has no owner references or foreign finalizers",
        c.owner_references().is_empty() && !c.finalizers().iter().any(|f| f == "example.com/keep"),
        format!("{:?} {:?}", c.owner_references(), c.finalizers()),
    );
    let m = memberships(admin).get("mem").await?;
    t.fact(
        "the membership has no owner references or finalizers",
        m.owner_references().is_empty() && m.finalizers().is_empty(),
        format!("{:?} {:?}", m.owner_references(), m.finalizers()),
    );
    t.finish("owner references and finalizers")
}

// ---------------------------------------------------------------------------------------------
// 8. A membership being deleted grants nothing

async fn a_membership_being_deleted_grants_nothing(env: Arc<Env>) -> TestResult {
    let w = world(&env, "adv-deleting", default_quota(), default_hard()).await?;
    let (admin, ns) = (&w.admin, w.project.as_str());
    let member = w.user("mia");
    let as_owner = env.client_as(&w.owner, &[]).await;
    add_member(&env, &as_owner, ns, "mia", &member, "Member").await?;
    let staff = Api::<ProjectMembership>::namespaced(admin.clone(), ns);
    let mut t = Checks::default();
    t.row(
        "staff add a finalizer to the membership",
        Expect::Allowed,
        staff
            .patch(
                "mia",
                &patch_params(),
                &merge(json!({"metadata": {"finalizers": ["example.com/keep"]}})),
            )
            .await,
    );
    wait_access_named(
        &env,
        &w.owner,
        "delete",
        "projectmemberships.tenancy.dev",
        "mia",
        Some(ns),
        true,
    )
    .await?;
    t.row(
        "owner deletes the membership",
        Expect::Allowed,
        Api::<ProjectMembership>::namespaced(as_owner.clone(), ns)
            .delete("mia", &DeleteParams::default())
            .await,
    );
    let revoked = wait_access(&env, &member, "get", "pods", Some(ns), false).await;
    t.fact(
        "the member loses access while the membership waits on its finalizer",
        revoked.is_ok(),
        why(&revoked),
    );
    let m = staff.get_opt("mia").await?;
    t.fact(
        "the membership still exists, being deleted",
        m.as_ref()
            .is_some_and(|m| m.metadata.deletion_timestamp.is_some()),
        format!("{:?}", m.map(|m| m.metadata.deletion_timestamp)),
    );
    let binding = Api::<RoleBinding>::namespaced(admin.clone(), ns)
        .get_opt("tenancy-member-mia")
        .await?;
    t.fact(
        "its RoleBinding is gone",
        binding.is_none(),
        format!("{:?}", binding.map(|b| b.subjects)),
    );
    // Clean up: staff release it.
    t.row(
        "staff remove the finalizer",
        Expect::Allowed,
        staff
            .patch(
                "mia",
                &patch_params(),
                &merge(json!({"metadata": {"finalizers": null}})),
            )
            .await,
    );
    let gone = wait_for("the membership to be gone", RECONCILE_TIMEOUT, || async {
        matches!(staff.get_opt("mia").await, Ok(None)).then_some(())
    })
    .await;
    t.fact(
        "the membership is gone once released",
        gone.is_ok(),
        why(&gone),
    );
    t.finish("a membership being deleted")
}

// ---------------------------------------------------------------------------------------------
// 9. The ServiceAccount rule and the audit annotations

async fn service_account_rule_and_audit_annotations_hold(env: Arc<Env>) -> TestResult {
    let w = world(&env, "adv-sa", default_quota(), default_hard()).await?;
    let (admin, ns) = (&w.admin, w.project.as_str());
    let other = w.user("api");
    let member = w.user("mem");
    let as_owner = env.client_as(&w.owner, &[]).await;
    let as_manager = env.client_as(&w.manager, &[]).await;
    create_project(admin, &as_owner, &other, &w.customer, default_hard()).await?;
    wait_access(
        &env,
        &w.owner,
        "create",
        "projectmemberships.tenancy.dev",
        Some(&other),
        true,
    )
    .await?;
    let memberships = |c: &Client, n: &str| Api::<ProjectMembership>::namespaced(c.clone(), n);
    let bot = service_account(ns, "bot");
    let mut t = Checks::default();

    // The ServiceAccount rule.
    t.row(
        "owner makes the project's own ServiceAccount a Manager",
        Expect::Hook(VALIDATE, 403, "at most Administrator"),
        memberships(&as_owner, ns)
            .create(&pp(), &membership_of(ns, "bot", bot.clone(), "Manager"))
            .await,
    );
    t.row(
        "staff make the project's own ServiceAccount a Manager",
        Expect::Hook(VALIDATE, 403, "at most Administrator"),
        memberships(admin, ns)
            .create(&pp(), &membership_of(ns, "bot", bot.clone(), "Manager"))
            .await,
    );
    t.row(
        "owner makes the project's own ServiceAccount an Administrator",
        Expect::Allowed,
        memberships(&as_owner, ns)
            .create(
                &pp(),
                &membership_of(ns, "bot", bot.clone(), "Administrator"),
            )
            .await,
    );
    t.row(
        "owner promotes the ServiceAccount to Manager",
        Expect::Hook(VALIDATE, 403, "at most Administrator"),
        memberships(&as_owner, ns)
            .patch(
                "bot",
                &patch_params(),
                &merge(json!({"spec": {"role": "Manager"}})),
            )
            .await,
    );
    t.row(
        "owner makes the ServiceAccount a Member of another project",
        Expect::Hook(VALIDATE, 403, "only in project"),
        memberships(&as_owner, &other)
            .create(&pp(), &membership_of(&other, "bot", bot.clone(), "Member"))
            .await,
    );
    let mut with_sa_owner = Api::<Customer>::all(admin.clone()).get(&w.customer).await?;
    with_sa_owner.metadata.managed_fields = None;
    with_sa_owner.spec.owners.push(from_json(bot.clone()));
    t.row(
        "staff make the project's ServiceAccount an owner of the customer",
        Expect::Hook(VALIDATE, 403, "may not hold a customer role"),
        Api::<Customer>::all(admin.clone())
            .replace(&w.customer, &pp(), &with_sa_owner)
            .await,
    );
    let (bot_user, bot_groups) = sa_user(ns, "bot");
    let bot_groups: Vec<&str> = bot_groups.iter().map(String::as_str).collect();
    let bot_edit = wait_access_as(
        &env,
        &bot_user,
        &bot_groups,
        "create",
        "deployments.apps",
        Some(ns),
        true,
    )
    .await;
    t.fact(
        "the Administrator ServiceAccount can edit its project",
        bot_edit.is_ok(),
        why(&bot_edit),
    );
    for (verb, resource, where_) in [
        ("create", "projectmemberships.tenancy.dev", ns),
        ("get", "pods", other.as_str()),
    ] {
        let can = env
            .can_i(&bot_user, &bot_groups, verb, resource, Some(where_))
            .await;
        t.fact(
            &format!("the ServiceAccount may not {verb} {resource} in {where_}"),
            !can,
            if can { "allowed" } else { "" },
        );
    }

    // Audit annotations: only the webhook writes them.
    add_member(&env, &as_owner, ns, "mem", &member, "Member").await?;
    let created_by = |m: &ProjectMembership| m.annotations().get("tenancy.dev/created-by").cloned();
    let m = memberships(admin, ns).get("mem").await?;
    t.fact(
        "the membership records its creator",
        created_by(&m).as_deref() == Some(w.owner.as_str()),
        format!("{:?}", created_by(&m)),
    );
    t.row(
        "manager rewrites created-by on a membership",
        Expect::Allowed,
        memberships(&as_manager, ns)
            .patch(
                "mem",
                &patch_params(),
                &merge(json!({"metadata": {"annotations": {"tenancy.dev/created-by": w.manager}}})),
            )
            .await,
    );
    t.row(
        "manager removes created-by on a membership",
        Expect::Allowed,
        memberships(&as_manager, ns)
            .patch(
                "mem",
                &patch_params(),
                &merge(json!({"metadata": {"annotations": {"tenancy.dev/created-by": null}}})),
            )
            .await,
    );
    let m = memberships(admin, ns).get("mem").await?;
    t.fact(
        "created-by still names the creator",
        created_by(&m).as_deref() == Some(w.owner.as_str()),
        format!("{:?}", created_by(&m)),
    );
    let mut spoofed = membership(ns, "spoofed", &w.user("sam"), "Member");
    spoofed.metadata.annotations = Some(BTreeMap::from([(
        "tenancy.dev/created-by".to_string(),
        "someone-else".to_string(),
    )]));
    t.row(
        "manager creates a membership naming someone else as its creator",
        Expect::Allowed,
        memberships(&as_manager, ns).create(&pp(), &spoofed).await,
    );
    let m = memberships(admin, ns).get("spoofed").await?;
    t.fact(
        "the new membership's created-by is the manager",
        created_by(&m).as_deref() == Some(w.manager.as_str()),
        format!("{:?}", created_by(&m)),
    );

    let projects = |c: &Client| Api::<Project>::all(c.clone());
    wait_access_named(
        &env,
        &w.manager,
        "patch",
        "projects.tenancy.dev",
        ns,
        None,
        true,
    )
    .await?;
    let annotation = |p: &Project, k: &str| p.annotations().get(k).cloned();
    let set_annotation = |k: &str, v: &str| merge(json!({"metadata": {"annotations": {k: v}}}));
    t.row(
        "manager sets end-date-requested-by without changing endDate",
        Expect::Allowed,
        projects(&as_manager)
            .patch(
                ns,
                &patch_params(),
                &set_annotation("tenancy.dev/end-date-requested-by", "someone-else"),
            )
            .await,
    );
    t.row(
        "manager sets deleted-by",
        Expect::Allowed,
        projects(&as_manager)
            .patch(
                ns,
                &patch_params(),
                &set_annotation("tenancy.dev/deleted-by", "someone-else"),
            )
            .await,
    );
    let p = projects(admin).get(ns).await?;
    t.fact(
        "the project carries neither spoofed annotation",
        annotation(&p, "tenancy.dev/end-date-requested-by").is_none()
            && annotation(&p, "tenancy.dev/deleted-by").is_none(),
        format!("{:?}", p.annotations()),
    );
    t.row(
        "manager sets endDate",
        Expect::Allowed,
        projects(&as_manager)
            .patch(
                ns,
                &patch_params(),
                &merge(json!({"spec": {"endDate": "2099-12-31"}})),
            )
            .await,
    );
    t.row(
        "manager then rewrites end-date-requested-by",
        Expect::Allowed,
        projects(&as_manager)
            .patch(
                ns,
                &patch_params(),
                &set_annotation("tenancy.dev/end-date-requested-by", "someone-else"),
            )
            .await,
    );
    let p = projects(admin).get(ns).await?;
    t.fact(
        "end-date-requested-by names the manager who set endDate",
        annotation(&p, "tenancy.dev/end-date-requested-by").as_deref() == Some(w.manager.as_str()),
        format!("{:?}", p.annotations()),
    );
    let observed = wait_observed(admin, ns).await?;
    let by = observed
        .status
        .as_ref()
        .and_then(|s| s.end_date_requested_by.clone());
    t.fact(
        "status.endDateRequestedBy names the manager",
        by.as_deref() == Some(w.manager.as_str()),
        format!("{by:?}"),
    );
    t.finish("ServiceAccount rule and audit annotations")
}
