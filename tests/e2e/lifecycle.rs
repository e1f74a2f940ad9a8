//! Issue 4: the admission webhook and the project lifecycle against the real apiserver calling
//! the real webhook. Who may do what (every row a real request by an impersonated user, with
//! the layer that answers: RBAC before the webhook, or the webhook), soft delete refused while
//! resources exist, archive and recovery, invitations, the customer quota under concurrent
//! creations, a GitOps prune and re-create, and, with the injected clock alone, the purge after
//! retention and a project's end date, grace period and expiration policies.
//!
//! The trials of [`exclusive_trials`] run alone, one at a time, after every other test: two move
//! the operator's clock (which every reconcile reads; moving it re-runs every reconcile) and
//! reset it to 0 when done, the other loads the webhook and measures its latency as the
//! apiserver sees it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Event, Namespace, ResourceQuota};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, RoleBinding};
use kube::api::{Api, DeleteParams, ListParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use tenancy_operator::api::{Customer, MembershipPhase, Project, ProjectMembership, ProjectPhase};

use crate::support::{
    Checks, Env, Failed, RECONCILE_TIMEOUT, TestResult, Trial, can_i_named, customer, deployment,
    from_json, merge, owners, patch_params, phase_of, pp, project, refusal, trial, unique_name,
    wait_access, wait_access_named, wait_finalizer, wait_for, wait_membership_phase,
    wait_namespace_state, wait_project, wait_project_gone, wait_until,
};

pub fn trials(env: &Arc<Env>) -> Vec<Trial> {
    vec![
        trial(
            env,
            "lifecycle::authorization_table_of_impersonated_requests",
            authorization_table_of_impersonated_requests,
        ),
        trial(
            env,
            "lifecycle::delete_is_refused_while_resources_exist_then_archives_and_recovers",
            delete_is_refused_while_resources_exist_then_archives_and_recovers,
        ),
        trial(
            env,
            "lifecycle::recovery_with_invitations_leaves_previous_members_pending",
            recovery_with_invitations_leaves_previous_members_pending,
        ),
        trial(
            env,
            "lifecycle::invited_user_accepts_own_invitation_and_nothing_else",
            invited_user_accepts_own_invitation_and_nothing_else,
        ),
        trial(
            env,
            "lifecycle::an_invitation_restored_without_status_grants_nothing_and_its_marker_is_the_operators",
            an_invitation_restored_without_status_grants_nothing_and_its_marker_is_the_operators,
        ),
        trial(
            env,
            "lifecycle::every_membership_of_a_large_team_is_revoked_then_invited",
            every_membership_of_a_large_team_is_revoked_then_invited,
        ),
        trial(
            env,
            "lifecycle::gitops_prune_and_recreate_restores_the_project",
            gitops_prune_and_recreate_restores_the_project,
        ),
        trial(
            env,
            "lifecycle::move_without_preserved_permissions_revokes_the_team_and_swaps_owners",
            move_without_preserved_permissions_revokes_the_team_and_swaps_owners,
        ),
        trial(
            env,
            "lifecycle::end_date_finishes_grace_suspends_and_a_later_end_date_resumes",
            end_date_finishes_grace_suspends_and_a_later_end_date_resumes,
        ),
    ]
}

/// Trials that must run alone, one at a time, after all others.
pub fn exclusive_trials(env: &Arc<Env>) -> Vec<Trial> {
    vec![
        trial(
            env,
            "lifecycle::exclusive::concurrent_creations_never_oversubscribe_the_customer_quota",
            concurrent_creations_never_oversubscribe_the_customer_quota,
        ),
        trial(
            env,
            "lifecycle::exclusive::archived_namespace_is_purged_after_retention",
            archived_namespace_is_purged_after_retention,
        ),
        trial(
            env,
            "lifecycle::exclusive::end_date_grace_and_the_expiration_policies_run_by_time_alone",
            end_date_grace_and_the_expiration_policies_run_by_time_alone,
        ),
    ]
}

/// What the webhook's denials start with (the apiserver's wording).
const DENIED_BY_WEBHOOK: &str = "admission webhook \"validate.tenancy.dev\" denied the request";

// ---------------------------------------------------------------------------------------------
// Objects

fn membership(ns: &str, name: &str, user: &str, role: &str) -> ProjectMembership {
    membership_until(ns, name, user, role, None)
}

fn membership_until(
    ns: &str,
    name: &str,
    user: &str,
    role: &str,
    expiration: Option<&str>,
) -> ProjectMembership {
    let mut spec = json!({"subject": {"kind": "User", "name": user}, "role": role});
    if let Some(at) = expiration {
        spec["expirationTime"] = json!(at);
    }
    from_json(json!({
        "apiVersion": "tenancy.dev/v1alpha1", "kind": "ProjectMembership",
        "metadata": {"name": name, "namespace": ns}, "spec": spec,
    }))
}

// ---------------------------------------------------------------------------------------------
// Waiting and access checks

/// Waits until the namespace of `api` holds exactly the memberships `names`, every one in
/// `phase` (an empty or partial list never passes).
async fn wait_team_phases(
    api: &Api<ProjectMembership>,
    names: &[String],
    phase: MembershipPhase,
    after: &str,
) -> TestResult {
    let want: BTreeSet<&str> = names.iter().map(String::as_str).collect();
    wait_until(
        &format!(
            "all {} memberships to be {phase:?} after {after}",
            names.len()
        ),
        RECONCILE_TIMEOUT,
        || async {
            let list = api
                .list(&ListParams::default())
                .await
                .map_err(|e| format!("listing memberships: {e}"))?;
            let phases: BTreeMap<String, Option<MembershipPhase>> = list
                .items
                .iter()
                .map(|m| (m.name_any(), phase_of(m)))
                .collect();
            let names: BTreeSet<&str> = phases.keys().map(String::as_str).collect();
            if names == want && phases.values().all(|p| *p == Some(phase)) {
                Ok(())
            } else {
                let off: BTreeMap<&String, &Option<MembershipPhase>> =
                    phases.iter().filter(|(_, p)| **p != Some(phase)).collect();
                Err(format!(
                    "{} of {} memberships listed; not {phase:?}: {off:?}",
                    phases.len(),
                    want.len()
                ))
            }
        },
    )
    .await
}

// ---------------------------------------------------------------------------------------------
// 1. Authorization table

/// What a row expects.
#[derive(Clone, Copy, Debug)]
enum Expect {
    /// The request succeeds.
    Allowed,
    /// RBAC refuses it before any webhook is asked: HTTP 403 whose message has this text (and
    /// does not come from the webhook).
    Rbac(&'static str),
    /// The webhook refuses it with this HTTP code and this text in its message.
    Webhook(u16, &'static str),
}

#[derive(Default)]
struct Table {
    rows: Vec<String>,
    problems: Vec<String>,
}

impl Table {
    fn row<T>(&mut self, what: &str, expect: Expect, result: Result<T, kube::Error>) {
        let (code, message) = match &result {
            Ok(_) => (200, String::new()),
            Err(e) => refusal(e),
        };
        let by_webhook = message.contains(DENIED_BY_WEBHOOK);
        let ok = match expect {
            Expect::Allowed => result.is_ok(),
            Expect::Rbac(text) => code == 403 && !by_webhook && message.contains(text),
            Expect::Webhook(want, text) => code == want && by_webhook && message.contains(text),
        };
        let outcome = match &result {
            Ok(_) => "allowed".to_string(),
            Err(_) => format!("HTTP {code}: {message}"),
        };
        self.rows.push(format!(
            "{} {what} -> {outcome}",
            if ok { "ok  " } else { "FAIL" }
        ));
        if !ok {
            self.problems
                .push(format!("{what}: expected {expect:?}, got {outcome}"));
        }
    }
}

async fn authorization_table_of_impersonated_requests(env: Arc<Env>) -> TestResult {
    let admin = env.client().await;
    let tag = unique_name("e2e-authz");
    let acme = format!("{tag}-acme");
    let globex = format!("{tag}-globex");
    let web = format!("{tag}-web");
    let staff_project = format!("{tag}-staffed");
    let user = |n: &str| format!("{tag}-{n}");
    let (owner, other_owner, manager, member, administrator, stranger, staff, rogue) = (
        user("olga"),
        user("otto"),
        user("mona"),
        user("mia"),
        user("adam"),
        user("sam"),
        user("stella"),
        user("rick"),
    );

    let customers: Api<Customer> = Api::all(admin.clone());
    customers
        .create(
            &pp(),
            &customer(
                &acme,
                json!({"displayName": "Acme", "owners": owners(&[&owner])}),
            ),
        )
        .await?;
    customers
        .create(
            &pp(),
            &customer(&globex, json!({"owners": owners(&[&other_owner])})),
        )
        .await?;
    // Staff: a user in group tenancy:staff (the webhook recognises the group), given
    // cluster-admin by RBAC. The chart binds that group to its ClusterRole tenancy:staff
    // (templates/staff.yaml, staffRole.create), but the suite's local install does not apply
    // staff.yaml, so this test grants staff's RBAC itself.
    let crbs: Api<ClusterRoleBinding> = Api::all(admin.clone());
    let staff_binding = format!("{tag}-staff");
    crbs.create(
        &pp(),
        &from_json(json!({
            "metadata": {"name": staff_binding},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": staff}],
        })),
    )
    .await?;
    // A non-staff user whom RBAC lets create customers: the webhook still refuses.
    let roles: Api<ClusterRole> = Api::all(admin.clone());
    let rogue_role = format!("{tag}-customer-creator");
    roles
        .create(
            &pp(),
            &from_json(json!({
                "metadata": {"name": rogue_role},
                "rules": [{"apiGroups": ["tenancy.dev"], "resources": ["customers"], "verbs": ["create"]}],
            })),
        )
        .await?;
    crbs.create(
        &pp(),
        &from_json(json!({
            "metadata": {"name": rogue_role},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": rogue_role},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": rogue}],
        })),
    )
    .await?;

    let result = async {
        let as_owner = env.client_as(&owner, &[]).await;
        let as_manager = env.client_as(&manager, &[]).await;
        let as_member = env.client_as(&member, &[]).await;
        let as_administrator = env.client_as(&administrator, &[]).await;
        let as_stranger = env.client_as(&stranger, &[]).await;
        let as_staff = env.client_as(&staff, &["tenancy:staff"]).await;
        let as_rogue = env.client_as(&rogue, &[]).await;
        let projects = |c: &Client| Api::<Project>::all(c.clone());
        let members = |c: &Client| Api::<ProjectMembership>::namespaced(c.clone(), &web);
        let customers_as = |c: &Client| Api::<Customer>::all(c.clone());
        let mut t = Table::default();

        // Projects: creation.
        wait_access(&env, &owner, "create", "projects.tenancy.dev", None, true).await?;
        wait_access(&env, &staff, "create", "projects.tenancy.dev", None, true).await?;
        t.row(
            "owner creates a project in own customer",
            Expect::Allowed,
            projects(&as_owner)
                .create(&pp(), &project(&web, json!({"customer": acme})))
                .await,
        );
        t.row(
            "owner creates a project in another customer",
            Expect::Webhook(403, "may not create projects for customer"),
            projects(&as_owner)
                .create(
                    &pp(),
                    &project(&user("foreign"), json!({"customer": globex})),
                )
                .await,
        );
        t.row(
            "user without any role creates a project",
            Expect::Rbac("cannot create resource \"projects\""),
            projects(&as_stranger)
                .create(&pp(), &project(&user("nope"), json!({"customer": acme})))
                .await,
        );
        t.row(
            "staff creates a project for any customer",
            Expect::Allowed,
            projects(&as_staff)
                .create(&pp(), &project(&staff_project, json!({"customer": globex})))
                .await,
        );
        t.row(
            "staff creates a project for a customer that does not exist",
            Expect::Webhook(422, "does not exist"),
            projects(&as_staff)
                .create(
                    &pp(),
                    &project(
                        &user("orphan"),
                        json!({"customer": user("no-such-customer")}),
                    ),
                )
                .await,
        );

        // Memberships.
        wait_namespace_state(&admin, &web, "active").await?;
        wait_access(
            &env,
            &owner,
            "create",
            "projectmemberships.tenancy.dev",
            Some(&web),
            true,
        )
        .await?;
        t.row(
            "owner adds a Manager",
            Expect::Allowed,
            members(&as_owner)
                .create(&pp(), &membership(&web, "mona", &manager, "Manager"))
                .await,
        );
        wait_access(
            &env,
            &manager,
            "create",
            "projectmemberships.tenancy.dev",
            Some(&web),
            true,
        )
        .await?;
        t.row(
            "manager adds a Member",
            Expect::Allowed,
            members(&as_manager)
                .create(&pp(), &membership(&web, "mia", &member, "Member"))
                .await,
        );
        t.row(
            "manager adds an Administrator",
            Expect::Allowed,
            members(&as_manager)
                .create(
                    &pp(),
                    &membership(&web, "adam", &administrator, "Administrator"),
                )
                .await,
        );
        t.row(
            "manager adds a Manager",
            Expect::Webhook(403, "may not grant or change the Manager role"),
            members(&as_manager)
                .create(&pp(), &membership(&web, "max", &user("max"), "Manager"))
                .await,
        );
        t.row(
            "manager changes own role",
            Expect::Webhook(403, "may not change their own membership"),
            members(&as_manager)
                .patch(
                    "mona",
                    &patch_params(),
                    &merge(json!({"spec": {"role": "Administrator"}})),
                )
                .await,
        );
        t.row(
            "manager adds another Member",
            Expect::Allowed,
            members(&as_manager)
                .create(&pp(), &membership(&web, "tom", &user("tom"), "Member"))
                .await,
        );
        t.row(
            "manager promotes a Member to Manager",
            Expect::Webhook(403, "may not grant or change the Manager role"),
            members(&as_manager)
                .patch(
                    "tom",
                    &patch_params(),
                    &merge(json!({"spec": {"role": "Manager"}})),
                )
                .await,
        );
        t.row(
            "manager deletes a Member's membership",
            Expect::Allowed,
            members(&as_manager)
                .delete("tom", &DeleteParams::default())
                .await,
        );
        t.row(
            "manager deletes own membership",
            Expect::Webhook(403, "may not change their own membership"),
            members(&as_manager)
                .delete("mona", &DeleteParams::default())
                .await,
        );
        wait_access(
            &env,
            &member,
            "list",
            "projectmemberships.tenancy.dev",
            Some(&web),
            true,
        )
        .await?;
        wait_access(
            &env,
            &administrator,
            "list",
            "projectmemberships.tenancy.dev",
            Some(&web),
            true,
        )
        .await?;
        t.row(
            "Member adds anyone",
            Expect::Rbac("cannot create resource \"projectmemberships\""),
            members(&as_member)
                .create(
                    &pp(),
                    &membership(&web, "friend", &user("friend"), "Member"),
                )
                .await,
        );
        t.row(
            "Administrator adds anyone",
            Expect::Rbac("cannot create resource \"projectmemberships\""),
            members(&as_administrator)
                .create(&pp(), &membership(&web, "pal", &user("pal"), "Member"))
                .await,
        );
        t.row(
            "owner adds a second membership with the same subject and role",
            Expect::Webhook(409, "already holds Member"),
            members(&as_owner)
                .create(&pp(), &membership(&web, "mia-again", &member, "Member"))
                .await,
        );
        t.row(
            "staff adds a membership in a namespace that is no project's",
            Expect::Webhook(422, "is not the namespace of a project"),
            Api::<ProjectMembership>::namespaced(as_staff.clone(), "default")
                .create(
                    &pp(),
                    &membership("default", &user("stray"), &member, "Member"),
                )
                .await,
        );

        // Projects: changes.
        wait_access_named(
            &env,
            &manager,
            "patch",
            "projects.tenancy.dev",
            &web,
            None,
            true,
        )
        .await?;
        wait_access_named(
            &env,
            &owner,
            "patch",
            "projects.tenancy.dev",
            &web,
            None,
            true,
        )
        .await?;
        let spec = |v: Value| merge(json!({"spec": v}));
        t.row(
            "manager changes the project's displayName",
            Expect::Allowed,
            projects(&as_manager)
                .patch(
                    &web,
                    &patch_params(),
                    &spec(json!({"displayName": "Web shop"})),
                )
                .await,
        );
        t.row(
            "Member changes the project's displayName",
            Expect::Rbac("cannot patch resource \"projects\""),
            projects(&as_member)
                .patch(&web, &patch_params(), &spec(json!({"displayName": "Mine"})))
                .await,
        );
        t.row(
            "owner moves the project to another customer",
            Expect::Webhook(403, "moving a project is staff-only"),
            projects(&as_owner)
                .patch(&web, &patch_params(), &spec(json!({"customer": globex})))
                .await,
        );
        t.row(
            "owner sets recovery.restoreTeamMembers",
            Expect::Webhook(
                403,
                "may not set spec.recovery.restoreTeamMembers: only staff may",
            ),
            projects(&as_owner)
                .patch(
                    &web,
                    &patch_params(),
                    &spec(json!({"recovery": {"restoreTeamMembers": true}})),
                )
                .await,
        );
        t.row(
            "owner writes staffNotes",
            Expect::Webhook(403, "may not set spec.staffNotes: only staff may"),
            projects(&as_owner)
                .patch(&web, &patch_params(), &spec(json!({"staffNotes": "vip"})))
                .await,
        );
        t.row(
            "manager writes staffNotes",
            Expect::Webhook(403, "may not set spec.staffNotes: only staff may"),
            projects(&as_manager)
                .patch(&web, &patch_params(), &spec(json!({"staffNotes": "vip"})))
                .await,
        );
        t.row(
            "owner writes gracePeriodDays",
            Expect::Webhook(403, "may not set spec.gracePeriodDays: only staff may"),
            projects(&as_owner)
                .patch(&web, &patch_params(), &spec(json!({"gracePeriodDays": 90})))
                .await,
        );
        t.row(
            "owner writes maxServiceAccounts",
            Expect::Webhook(403, "may not set spec.maxServiceAccounts: only staff may"),
            projects(&as_owner)
                .patch(
                    &web,
                    &patch_params(),
                    &spec(json!({"maxServiceAccounts": 50})),
                )
                .await,
        );
        t.row(
            "staff writes staffNotes",
            Expect::Allowed,
            projects(&as_staff)
                .patch(&web, &patch_params(), &spec(json!({"staffNotes": "vip"})))
                .await,
        );
        t.row(
            "staff writes gracePeriodDays",
            Expect::Allowed,
            projects(&as_staff)
                .patch(&web, &patch_params(), &spec(json!({"gracePeriodDays": 90})))
                .await,
        );
        t.row(
            "staff writes maxServiceAccounts",
            Expect::Allowed,
            projects(&as_staff)
                .patch(
                    &web,
                    &patch_params(),
                    &spec(json!({"maxServiceAccounts": 50})),
                )
                .await,
        );
        t.row(
            "staff sets recovery.restoreTeamMembers",
            Expect::Allowed,
            projects(&as_staff)
                .patch(
                    &web,
                    &patch_params(),
                    &spec(json!({"recovery": {"restoreTeamMembers": true}})),
                )
                .await,
        );
        t.row(
            "staff moves a project to another customer",
            Expect::Allowed,
            projects(&as_staff)
                .patch(
                    &staff_project,
                    &patch_params(),
                    &spec(json!({"customer": acme})),
                )
                .await,
        );

        // Customers.
        if let Err(e) = wait_access_named(
            &env,
            &owner,
            "patch",
            "customers.tenancy.dev",
            &acme,
            None,
            true,
        )
        .await
        {
            let name = format!("tenancy:customer:{acme}:owners");
            let role = roles.get_opt(&name).await?.map(|r| r.rules);
            let binding = crbs.get_opt(&name).await?.map(|b| b.subjects);
            return Err(format!(
                "{}; ClusterRole {name} rules: {role:?}; its binding's subjects: {binding:?}",
                e.message().unwrap_or_default()
            )
            .into());
        }
        t.row(
            "owner changes own customer's displayName",
            Expect::Allowed,
            customers_as(&as_owner)
                .patch(
                    &acme,
                    &patch_params(),
                    &spec(json!({"displayName": "Acme Corp"})),
                )
                .await,
        );
        t.row(
            "owner changes own customer's owners",
            Expect::Webhook(403, "may change only displayName"),
            customers_as(&as_owner)
                .patch(
                    &acme,
                    &patch_params(),
                    &spec(json!({"owners": owners(&[&owner, &stranger])})),
                )
                .await,
        );
        t.row(
            "owner changes another customer's displayName",
            Expect::Rbac("cannot patch resource \"customers\""),
            customers_as(&as_owner)
                .patch(
                    &globex,
                    &patch_params(),
                    &spec(json!({"displayName": "Mine now"})),
                )
                .await,
        );
        t.row(
            "non-staff user creates a Customer",
            Expect::Rbac("cannot create resource \"customers\""),
            customers_as(&as_owner)
                .create(&pp(), &customer(&user("newco"), json!({})))
                .await,
        );
        wait_access(&env, &rogue, "create", "customers.tenancy.dev", None, true).await?;
        t.row(
            "non-staff user with RBAC create on customers creates a Customer",
            Expect::Webhook(
                403,
                "may not create, change or delete customers: only staff may",
            ),
            customers_as(&as_rogue)
                .create(&pp(), &customer(&user("rogueco"), json!({})))
                .await,
        );
        t.row(
            "staff creates a Customer",
            Expect::Allowed,
            customers_as(&as_staff)
                .create(&pp(), &customer(&user("staffco"), json!({})))
                .await,
        );

        // Projects: delete.
        wait_access_named(
            &env,
            &manager,
            "delete",
            "projects.tenancy.dev",
            &web,
            None,
            true,
        )
        .await?;
        t.row(
            "manager deletes the project",
            Expect::Webhook(403, "only owners of customer"),
            projects(&as_manager)
                .delete(&web, &DeleteParams::default())
                .await,
        );
        t.row(
            "user without any role deletes the project",
            Expect::Rbac("cannot delete resource \"projects\""),
            projects(&as_stranger)
                .delete(&web, &DeleteParams::default())
                .await,
        );
        t.row(
            "owner of another customer deletes the project",
            Expect::Rbac("cannot delete resource \"projects\""),
            projects(&env.client_as(&other_owner, &[]).await)
                .delete(&web, &DeleteParams::default())
                .await,
        );
        wait_finalizer(&admin, &web).await?;
        t.row(
            "owner deletes own project",
            Expect::Allowed,
            projects(&as_owner)
                .delete(&web, &DeleteParams::default())
                .await,
        );

        eprintln!(
            "[e2e] authorization table ({} rows):\n  {}",
            t.rows.len(),
            t.rows.join("\n  ")
        );
        if t.rows.len() < 25 {
            return Err(format!("the table has {} rows, fewer than 25", t.rows.len()).into());
        }
        if !t.problems.is_empty() {
            return Err(format!(
                "{} of {} rows misbehaved:\n{}",
                t.problems.len(),
                t.rows.len(),
                t.problems.join("\n")
            )
            .into());
        }
        Ok(())
    }
    .await;

    // Clean up what does not clean itself up (soft deletes keep namespaces by design).
    let _ = Api::<Project>::all(admin.clone())
        .delete(&staff_project, &DeleteParams::default())
        .await;
    let _ = crbs.delete(&staff_binding, &DeleteParams::default()).await;
    let _ = crbs.delete(&rogue_role, &DeleteParams::default()).await;
    let _ = roles.delete(&rogue_role, &DeleteParams::default()).await;
    let _ = customers
        .delete(&user("staffco"), &DeleteParams::default())
        .await;
    result
}

// ---------------------------------------------------------------------------------------------
// 2. Soft delete refused while resources exist, then archive and recovery

async fn delete_is_refused_while_resources_exist_then_archives_and_recovers(
    env: Arc<Env>,
) -> TestResult {
    let admin = env.client().await;
    let tag = unique_name("e2e-softdel");
    let cust = format!("{tag}-acme");
    let name = format!("{tag}-lab");
    let user = |n: &str| format!("{tag}-{n}");
    let (owner, alice, bob, carol, stranger) = (
        user("olga"),
        user("alice"),
        user("bob"),
        user("carol"),
        user("sam"),
    );
    Api::<Customer>::all(admin.clone())
        .create(
            &pp(),
            &customer(&cust, json!({"owners": owners(&[&owner])})),
        )
        .await?;
    let projects: Api<Project> = Api::all(admin.clone());
    let spec = json!({"customer": cust, "quota": {"hard": {"requests.cpu": "2"}}});
    projects
        .create(&pp(), &project(&name, spec.clone()))
        .await?;
    wait_namespace_state(&admin, &name, "active").await?;
    wait_finalizer(&admin, &name).await?;

    // A team: alice Member, bob Administrator, carol Member until shortly.
    let carol_until = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(30);
    let carol_until_text = carol_until.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    let memberships: Api<ProjectMembership> = Api::namespaced(admin.clone(), &name);
    for m in [
        membership(&name, "alice", &alice, "Member"),
        membership(&name, "bob", &bob, "Administrator"),
        membership_until(&name, "carol", &carol, "Member", Some(&carol_until_text)),
    ] {
        memberships.create(&pp(), &m).await?;
    }
    for who in [&alice, &bob, &carol, &owner] {
        wait_access(&env, who, "list", "pods", Some(&name), true).await?;
    }
    wait_access(&env, &bob, "create", "deployments.apps", Some(&name), true).await?;

    // A Deployment in the namespace: the delete is refused with 409, naming it.
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), &name);
    deployments.create(&pp(), &deployment("web")).await?;
    wait_project(&admin, &name, "counts the Deployment", |p| {
        let counts = &p.status.as_ref()?.resource_counts;
        (counts.get("deployments.apps") == Some(&1)).then_some(())
    })
    .await?;
    match projects.delete(&name, &DeleteParams::default()).await {
        Err(kube::Error::Api(s))
            if s.code == 409
                && s.message.contains(DENIED_BY_WEBHOOK)
                && s.message
                    .contains(&format!("project {name} has 1 active resources"))
                && s.message.contains("deployments.apps: 1") => {}
        other => {
            return Err(format!(
                "deleting a project with a Deployment: expected 409 naming deployments.apps: 1, got {:?}",
                other.map(|_| "accepted").map_err(|e| refusal(&e))
            )
            .into());
        }
    }
    let still = projects.get(&name).await?;
    if still.metadata.deletion_timestamp.is_some() {
        return Err("the refused delete still marked the project for deletion".into());
    }

    // Without it, the delete goes through: soft delete.
    deployments.delete("web", &DeleteParams::default()).await?;
    wait_project(&admin, &name, "counts no resources", |p| {
        (p.status.as_ref()?.resources_count == Some(0)).then_some(())
    })
    .await?;
    projects.delete(&name, &DeleteParams::default()).await?;
    wait_project_gone(&admin, &name).await?;

    // The namespace is kept, frozen, archived, with no bindings.
    let namespaces: Api<Namespace> = Api::all(admin.clone());
    let ns = namespaces
        .get_opt(&name)
        .await?
        .ok_or_else(|| format!("namespace {name} is gone after a soft delete"))?;
    if ns.metadata.deletion_timestamp.is_some() {
        return Err(format!("namespace {name} is being deleted after a soft delete").into());
    }
    let state = ns.labels().get("tenancy.dev/state").cloned();
    if state.as_deref() != Some("terminated") {
        return Err(format!("namespace {name} has tenancy.dev/state={state:?}").into());
    }
    let archive: Value = serde_json::from_str(
        ns.annotations()
            .get("tenancy.dev/archive")
            .ok_or_else(|| format!("namespace {name} has no tenancy.dev/archive annotation"))?,
    )?;
    let archived: BTreeSet<&str> = archive["members"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["name"].as_str())
        .collect();
    if archive["customer"] != json!(cust)
        || !archived.contains("alice")
        || !archived.contains("bob")
    {
        return Err(format!("the archive lacks the customer or the team: {archive}").into());
    }
    let quota = Api::<ResourceQuota>::namespaced(admin.clone(), &name)
        .get("tenancy-quota")
        .await?;
    let pods = quota
        .spec
        .as_ref()
        .and_then(|s| s.hard.as_ref())
        .and_then(|h| h.get("pods"))
        .map(|q| q.0.clone());
    if pods.as_deref() != Some("0") {
        return Err(format!("the frozen namespace's quota holds pods: {pods:?}, not 0").into());
    }
    let bindings = Api::<RoleBinding>::namespaced(admin.clone(), &name)
        .list(&ListParams::default())
        .await?;
    if !bindings.items.is_empty() {
        let names: Vec<String> = bindings.items.iter().map(|b| b.name_any()).collect();
        return Err(format!("RoleBindings left in the archived namespace: {names:?}").into());
    }
    // Every one of the three is Revoked by the time the project is gone (an empty or short list
    // is a failure, not a pass).
    let phases: BTreeMap<String, Option<MembershipPhase>> = memberships
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .map(|m| (m.name_any(), phase_of(m)))
        .collect();
    let revoked = Some(MembershipPhase::Revoked);
    if phases.keys().map(String::as_str).collect::<BTreeSet<_>>()
        != BTreeSet::from(["alice", "bob", "carol"])
        || phases.values().any(|p| *p != revoked)
    {
        return Err(format!(
            "after the soft delete, alice, bob and carol should all be Revoked: {phases:?}"
        )
        .into());
    }
    for who in [&alice, &bob, &carol, &owner] {
        wait_access(&env, who, "list", "pods", Some(&name), false).await?;
    }
    wait_access(&env, &bob, "create", "deployments.apps", Some(&name), false).await?;

    // carol's role ends before the recovery.
    let left = carol_until.duration_since(jiff::Timestamp::now());
    if left.is_positive() {
        tokio::time::sleep(Duration::from_secs_f64(left.as_secs_f64() + 1.0)).await;
    }

    // Recovery by staff, restoring the team.
    let uid = ns.uid();
    let mut recovering = spec.clone();
    recovering["recovery"] = json!({"restoreTeamMembers": true});
    projects.create(&pp(), &project(&name, recovering)).await?;
    let record = wait_project(&admin, &name, "records the recovery", |p| {
        p.status.as_ref()?.recovery.clone()
    })
    .await?;
    let restored: BTreeSet<&str> = record.restored.iter().map(String::as_str).collect();
    if restored != BTreeSet::from(["alice", "bob"])
        || record.skipped_expired != ["carol"]
        || record.previous_customer != cust
        || !record.invited.is_empty()
    {
        return Err(format!(
            "status.recovery should restore alice and bob and skip expired carol: {record:?}"
        )
        .into());
    }
    let ns = wait_namespace_state(&admin, &name, "active").await?;
    if ns.uid() != uid {
        return Err("the recovered project got a new namespace instead of the archived one".into());
    }
    for who in [&alice, &bob, &owner] {
        wait_access(&env, who, "list", "pods", Some(&name), true).await?;
    }
    wait_access(&env, &bob, "create", "deployments.apps", Some(&name), true).await?;
    for who in [&carol, &stranger] {
        if env.can_i(who, &[], "list", "pods", Some(&name)).await {
            return Err(format!("{who} has access to the recovered project").into());
        }
    }
    wait_membership_phase(&admin, &name, "alice", MembershipPhase::Active).await?;
    wait_membership_phase(&admin, &name, "bob", MembershipPhase::Active).await?;
    let carol_m = memberships.get("carol").await?;
    if phase_of(&carol_m) == Some(MembershipPhase::Active) {
        return Err("expired carol's membership is Active after the recovery".into());
    }
    // The freeze is lifted: the quota is the project's again.
    wait_for(
        "the recovered namespace's quota to lose pods: 0",
        RECONCILE_TIMEOUT,
        || async {
            let q = Api::<ResourceQuota>::namespaced(admin.clone(), &name)
                .get_opt("tenancy-quota")
                .await
                .ok()?;
            let hard = q.and_then(|q| q.spec?.hard).unwrap_or_default();
            (!hard.contains_key("pods") && hard.contains_key("requests.cpu")).then_some(())
        },
    )
    .await?;
    projects.delete(&name, &DeleteParams::default()).await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 3. Invitations

/// A project with two members (ivy Member, ian Administrator), deleted and recovered with
/// `sendInvitationsToPreviousMembers`; returns (project, ivy, ian) once both are Pending.
async fn invited_team(env: &Env, tag: &str) -> Result<(String, String, String), Failed> {
    let admin = env.client().await;
    let cust = format!("{tag}-acme");
    let name = format!("{tag}-lab");
    let (ivy, ian) = (format!("{tag}-ivy"), format!("{tag}-ian"));
    Api::<Customer>::all(admin.clone())
        .create(&pp(), &customer(&cust, json!({})))
        .await?;
    let projects: Api<Project> = Api::all(admin.clone());
    projects
        .create(&pp(), &project(&name, json!({"customer": cust})))
        .await?;
    wait_namespace_state(&admin, &name, "active").await?;
    wait_finalizer(&admin, &name).await?;
    let memberships: Api<ProjectMembership> = Api::namespaced(admin.clone(), &name);
    memberships
        .create(&pp(), &membership(&name, "ivy", &ivy, "Member"))
        .await?;
    memberships
        .create(&pp(), &membership(&name, "ian", &ian, "Administrator"))
        .await?;
    for who in [&ivy, &ian] {
        wait_access(env, who, "list", "pods", Some(&name), true).await?;
    }
    projects.delete(&name, &DeleteParams::default()).await?;
    wait_project_gone(&admin, &name).await?;
    for who in [&ivy, &ian] {
        wait_access(env, who, "list", "pods", Some(&name), false).await?;
    }
    projects
        .create(
            &pp(),
            &project(
                &name,
                json!({"customer": cust, "recovery": {"sendInvitationsToPreviousMembers": true}}),
            ),
        )
        .await?;
    let record = wait_project(&admin, &name, "records the recovery", |p| {
        p.status.as_ref()?.recovery.clone()
    })
    .await?;
    let invited: BTreeSet<&str> = record.invited.iter().map(String::as_str).collect();
    if invited != BTreeSet::from(["ian", "ivy"]) || !record.restored.is_empty() {
        let phases: Vec<(String, Option<MembershipPhase>)> = memberships
            .list(&ListParams::default())
            .await?
            .items
            .iter()
            .map(|m| (m.name_any(), phase_of(m)))
            .collect();
        return Err(format!(
            "status.recovery should invite ivy and ian: {record:?}; memberships now: {phases:?}"
        )
        .into());
    }
    wait_namespace_state(&admin, &name, "active").await?;
    wait_membership_phase(&admin, &name, "ivy", MembershipPhase::Pending).await?;
    wait_membership_phase(&admin, &name, "ian", MembershipPhase::Pending).await?;
    wait_project(&admin, &name, "counts 2 pending members", |p| {
        (p.status.as_ref()?.members.as_ref()?.pending == 2).then_some(())
    })
    .await?;
    Ok((name, ivy, ian))
}

async fn recovery_with_invitations_leaves_previous_members_pending(env: Arc<Env>) -> TestResult {
    let admin = env.client().await;
    let tag = unique_name("e2e-invite");
    let (name, ivy, ian) = invited_team(&env, &tag).await?;
    // Pending is no access: the invitation grants nothing until accepted.
    for who in [&ivy, &ian] {
        if env.can_i(who, &[], "list", "pods", Some(&name)).await {
            return Err(format!("{who} has access while their invitation is pending").into());
        }
        if can_i_named(&env, who, "get", "projects.tenancy.dev", &name, None).await {
            return Err(
                format!("{who} may read the Project while their invitation is pending").into(),
            );
        }
    }
    // Someone else cannot accept an invitation for ivy: RBAC gives them nothing to patch.
    let stranger = format!("{tag}-sam");
    let as_stranger = env.client_as(&stranger, &[]).await;
    match Api::<ProjectMembership>::namespaced(as_stranger, &name)
        .patch(
            "ivy",
            &patch_params(),
            &merge(json!({"metadata": {"annotations": {"tenancy.dev/accept": "true"}}})),
        )
        .await
    {
        Err(kube::Error::Api(s))
            if s.code == 403
                && s.message
                    .contains("cannot patch resource \"projectmemberships\"") => {}
        other => {
            return Err(format!(
                "a stranger accepting ivy's invitation: expected 403 from RBAC, got {:?}",
                other.map(|_| "accepted").map_err(|e| refusal(&e))
            )
            .into());
        }
    }
    wait_membership_phase(&admin, &name, "ivy", MembershipPhase::Pending).await?;
    Api::<Project>::all(admin)
        .delete(&name, &DeleteParams::default())
        .await?;
    Ok(())
}

/// A backup may leave status out (a GitOps rebuild, Velero by default): the phase that withholds
/// access (Pending, Revoked) is also marked on the membership (`tenancy.dev/phase`), which the
/// invited user cannot remove, and a membership re-created from its manifest without status stays
/// an invitation.
async fn an_invitation_restored_without_status_grants_nothing_and_its_marker_is_the_operators(
    env: Arc<Env>,
) -> TestResult {
    let admin = env.client().await;
    let tag = unique_name("e2e-marker");
    let (name, ivy, ian) = invited_team(&env, &tag).await?;
    let memberships: Api<ProjectMembership> = Api::namespaced(admin.clone(), &name);
    let marker = |m: &ProjectMembership| m.annotations().get("tenancy.dev/phase").cloned();
    let mut checks = Checks::default();
    for who in ["ivy", "ian"] {
        let marked = wait_for(
            &format!("{who}'s membership marked tenancy.dev/phase: Pending"),
            RECONCILE_TIMEOUT,
            || async {
                let m = memberships.get_opt(who).await.ok().flatten()?;
                (marker(&m).as_deref() == Some("Pending")).then_some(())
            },
        )
        .await;
        checks.outcome(&format!("{who}'s invitation is marked Pending"), marked);
    }

    // ivy may patch her own invitation (to accept it), but not remove its marker.
    let as_ivy = Api::<ProjectMembership>::namespaced(env.client_as(&ivy, &[]).await, &name);
    let removal = as_ivy
        .patch(
            "ivy",
            &patch_params(),
            &merge(json!({"metadata": {"annotations": {"tenancy.dev/phase": null}}})),
        )
        .await;
    let stored = memberships.get("ivy").await?;
    checks.check(
        "ivy removing her marker leaves it Pending (put back by the webhook, or refused)",
        marker(&stored).as_deref() == Some("Pending"),
        format!(
            "the request: {:?}; stored marker {:?}",
            removal.map(|_| "admitted").map_err(|e| refusal(&e)),
            marker(&stored)
        ),
    );

    // A restore without status: ivy's membership re-created from its manifest as staff.
    let mut manifest = stored.clone();
    manifest.status = None;
    manifest.metadata.uid = None;
    manifest.metadata.resource_version = None;
    manifest.metadata.creation_timestamp = None;
    manifest.metadata.managed_fields = None;
    manifest.metadata.generation = None;
    memberships.delete("ivy", &DeleteParams::default()).await?;
    wait_for("ivy's membership to be gone", RECONCILE_TIMEOUT, || async {
        matches!(memberships.get_opt("ivy").await, Ok(None)).then_some(())
    })
    .await?;
    memberships.create(&pp(), &manifest).await?;
    let restored = wait_for(
        "the restored membership's status to be rebuilt (observedGeneration)",
        RECONCILE_TIMEOUT,
        || async {
            let m = memberships.get_opt("ivy").await.ok().flatten()?;
            let s = m.status.as_ref()?;
            (s.observed_generation == m.metadata.generation && s.phase.is_some()).then_some(m)
        },
    )
    .await;
    match restored {
        Ok(m) => {
            checks.equal(
                "the restored invitation's phase",
                phase_of(&m),
                Some(MembershipPhase::Pending),
            );
            checks.equal("its marker", marker(&m).as_deref(), Some("Pending"));
        }
        Err(e) => checks.outcome::<()>("the restored membership's status", Err(e)),
    }
    checks.check(
        "ivy has no access after the restore (her invitation is not accepted)",
        !env.can_i(&ivy, &[], "list", "pods", Some(&name)).await,
        "",
    );

    // Accepting still works, and the marker goes with the invitation.
    let as_ian = Api::<ProjectMembership>::namespaced(env.client_as(&ian, &[]).await, &name);
    as_ian
        .patch(
            "ian",
            &patch_params(),
            &merge(json!({"metadata": {"annotations": {"tenancy.dev/accept": "true"}}})),
        )
        .await?;
    let accepted = wait_for("ian Active without a marker", RECONCILE_TIMEOUT, || async {
        let m = memberships.get_opt("ian").await.ok().flatten()?;
        (phase_of(&m) == Some(MembershipPhase::Active) && marker(&m).is_none()).then_some(())
    })
    .await;
    checks.outcome("ian accepts: Active, the marker removed", accepted);
    checks.outcome(
        "ian has access",
        wait_access(&env, &ian, "list", "pods", Some(&name), true).await,
    );
    Api::<Project>::all(admin)
        .delete(&name, &DeleteParams::default())
        .await?;
    checks.finish("an invitation restored without status")
}

/// Needs the RBAC that lets an invited subject patch their own pending membership.
async fn invited_user_accepts_own_invitation_and_nothing_else(env: Arc<Env>) -> TestResult {
    let admin = env.client().await;
    let tag = unique_name("e2e-accept");
    let (name, ivy, ian) = invited_team(&env, &tag).await?;
    let accept = || merge(json!({"metadata": {"annotations": {"tenancy.dev/accept": "true"}}}));
    let as_ivy = Api::<ProjectMembership>::namespaced(env.client_as(&ivy, &[]).await, &name);
    let as_ian = Api::<ProjectMembership>::namespaced(env.client_as(&ian, &[]).await, &name);

    // The invited user needs RBAC to patch their own membership before the webhook is asked.
    if let Err(e) = wait_access_named(
        &env,
        &ivy,
        "patch",
        "projectmemberships.tenancy.dev",
        "ivy",
        Some(&name),
        true,
    )
    .await
    {
        return Err(format!(
            "the invited user has no RBAC permission to patch their own pending membership, so \
             they cannot accept it ({}); the operator must grant `patch` on that one membership \
             to its subject while it is Pending",
            e.message().unwrap_or_default()
        )
        .into());
    }
    // ian may not accept ivy's invitation (RBAC gives him his own membership only).
    match as_ian.patch("ivy", &patch_params(), &accept()).await {
        Err(kube::Error::Api(s)) if s.code == 403 => {}
        other => {
            return Err(format!(
                "ian accepting ivy's invitation: expected 403, got {:?}",
                other.map(|_| "accepted").map_err(|e| refusal(&e))
            )
            .into());
        }
    }
    // ian may not change his role while accepting: the webhook refuses anything but acceptance.
    match as_ian
        .patch(
            "ian",
            &patch_params(),
            &merge(json!({
                "metadata": {"annotations": {"tenancy.dev/accept": "true"}},
                "spec": {"role": "Manager"},
            })),
        )
        .await
    {
        Err(kube::Error::Api(s))
            if s.code == 403
                && s.message.contains(DENIED_BY_WEBHOOK)
                && s.message.contains("may not change memberships") => {}
        other => {
            return Err(format!(
                "ian raising his role to Manager: expected 403 from the webhook, got {:?}",
                other.map(|_| "accepted").map_err(|e| refusal(&e))
            )
            .into());
        }
    }
    // ivy accepts her own: Active, and access.
    as_ivy.patch("ivy", &patch_params(), &accept()).await?;
    wait_membership_phase(&admin, &name, "ivy", MembershipPhase::Active).await?;
    wait_access(&env, &ivy, "list", "pods", Some(&name), true).await?;
    // Once accepted, ivy is a plain Member: she cannot change her membership any more.
    match as_ivy
        .patch(
            "ivy",
            &patch_params(),
            &merge(json!({"spec": {"role": "Administrator"}})),
        )
        .await
    {
        Err(kube::Error::Api(s)) if s.code == 403 => {}
        other => {
            return Err(format!(
                "ivy raising her role after accepting: expected 403, got {:?}",
                other.map(|_| "accepted").map_err(|e| refusal(&e))
            )
            .into());
        }
    }
    // ian, who has not accepted, still has nothing.
    if env.can_i(&ian, &[], "list", "pods", Some(&name)).await {
        return Err("ian has access without accepting".into());
    }
    let ian_m = Api::<ProjectMembership>::namespaced(admin.clone(), &name)
        .get("ian")
        .await?;
    if phase_of(&ian_m) != Some(MembershipPhase::Pending) {
        return Err(format!("ian's membership is {:?}, not Pending", phase_of(&ian_m)).into());
    }
    Api::<Project>::all(admin)
        .delete(&name, &DeleteParams::default())
        .await?;
    Ok(())
}

/// Many memberships change phase at once on a soft delete (Revoked) and on a recovery (Pending):
/// each must end in that phase, none may keep or regain access. (With a few members a lost
/// phase change is a rare race; a large team makes it show.)
async fn every_membership_of_a_large_team_is_revoked_then_invited(env: Arc<Env>) -> TestResult {
    const TEAM: usize = 24;
    let admin = env.client().await;
    let tag = unique_name("e2e-team");
    let cust = format!("{tag}-acme");
    let name = format!("{tag}-lab");
    Api::<Customer>::all(admin.clone())
        .create(&pp(), &customer(&cust, json!({})))
        .await?;
    let projects: Api<Project> = Api::all(admin.clone());
    projects
        .create(&pp(), &project(&name, json!({"customer": cust})))
        .await?;
    wait_namespace_state(&admin, &name, "active").await?;
    wait_finalizer(&admin, &name).await?;
    let memberships: Api<ProjectMembership> = Api::namespaced(admin.clone(), &name);
    let members: Vec<String> = (0..TEAM).map(|i| format!("m{i}")).collect();
    for (i, m) in members.iter().enumerate() {
        let role = ["Member", "Administrator", "Manager"][i % 3];
        memberships
            .create(&pp(), &membership(&name, m, &format!("{tag}-{m}"), role))
            .await?;
    }
    for m in &members {
        wait_membership_phase(&admin, &name, m, MembershipPhase::Active).await?;
    }
    let phases = || async {
        memberships.list(&ListParams::default()).await.map(|l| {
            l.items
                .iter()
                .map(|m| (m.name_any(), phase_of(m)))
                .collect::<BTreeMap<_, _>>()
        })
    };

    projects.delete(&name, &DeleteParams::default()).await?;
    wait_project_gone(&admin, &name).await?;
    wait_team_phases(
        &memberships,
        &members,
        MembershipPhase::Revoked,
        "the soft delete",
    )
    .await?;

    projects
        .create(
            &pp(),
            &project(
                &name,
                json!({"customer": cust, "recovery": {"sendInvitationsToPreviousMembers": true}}),
            ),
        )
        .await?;
    let record = wait_project(&admin, &name, "records the recovery", |p| {
        p.status.as_ref()?.recovery.clone()
    })
    .await?;
    if record.invited.len() != TEAM {
        return Err(format!(
            "the recovery invited {} of {TEAM}: {record:?}; phases {:?}",
            record.invited.len(),
            phases().await?
        )
        .into());
    }
    wait_namespace_state(&admin, &name, "active").await?;
    wait_team_phases(
        &memberships,
        &members,
        MembershipPhase::Pending,
        "the recovery",
    )
    .await?;
    for m in &members {
        if env
            .can_i(&format!("{tag}-{m}"), &[], "list", "pods", Some(&name))
            .await
        {
            return Err(format!("{m} has access without accepting the invitation").into());
        }
    }
    projects.delete(&name, &DeleteParams::default()).await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 5. GitOps prune and re-create

async fn gitops_prune_and_recreate_restores_the_project(env: Arc<Env>) -> TestResult {
    let admin = env.client().await;
    let tag = unique_name("e2e-gitops");
    let cust = format!("{tag}-acme");
    let name = format!("{tag}-app");
    Api::<Customer>::all(admin.clone())
        .create(&pp(), &customer(&cust, json!({})))
        .await?;
    // The manifest as it sits in Git, applied server-side as Argo CD and Flux do.
    let manifest = format!(
        r#"
apiVersion: tenancy.dev/v1alpha1
kind: Project
metadata:
  name: {name}
  labels:
    app.kubernetes.io/instance: {tag}
spec:
  customer: {cust}
  displayName: GitOps app
  quota:
    hard:
      requests.cpu: "1"
"#
    );
    env.apply_yaml(&manifest).await?;
    let ns = wait_namespace_state(&admin, &name, "active").await?;
    let uid = ns.uid();
    wait_finalizer(&admin, &name).await?;
    wait_project(&admin, &name, "Ready", |p| {
        let s = p.status.as_ref()?;
        s.conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
            .then_some(())
    })
    .await?;

    // The prune: a foreground delete, as Argo CD does by default.
    Api::<Project>::all(admin.clone())
        .delete(&name, &DeleteParams::foreground())
        .await?;
    wait_project_gone(&admin, &name).await?;
    let namespaces: Api<Namespace> = Api::all(admin.clone());
    let kept = namespaces
        .get_opt(&name)
        .await?
        .ok_or("the prune deleted the namespace")?;
    if kept.labels().get("tenancy.dev/state").map(String::as_str) != Some("terminated")
        || kept.uid() != uid
    {
        return Err(format!(
            "after the prune the namespace should be the same one, terminated: {:?}",
            kept.labels()
        )
        .into());
    }

    // The next sync applies the same manifest again: the project is back in its namespace.
    env.apply_yaml(&manifest).await?;
    let back = wait_namespace_state(&admin, &name, "active").await?;
    if back.uid() != uid {
        return Err("the re-created project got a new namespace, not its archived one".into());
    }
    let recovered = wait_project(&admin, &name, "Active with a recovery record", |p| {
        let s = p.status.as_ref()?;
        (s.phase == Some(ProjectPhase::Active) && s.recovery.is_some()).then(|| p.clone())
    })
    .await?;
    let record = recovered
        .status
        .and_then(|s| s.recovery)
        .ok_or("no status.recovery")?;
    if record.previous_customer != cust {
        return Err(format!("status.recovery names {:?}", record.previous_customer).into());
    }
    wait_for(
        "the quota to be the project's again",
        RECONCILE_TIMEOUT,
        || async {
            let q = Api::<ResourceQuota>::namespaced(admin.clone(), &name)
                .get_opt("tenancy-quota")
                .await
                .ok()??;
            let hard = q.spec?.hard?;
            (!hard.contains_key("pods") && hard.contains_key("requests.cpu")).then_some(())
        },
    )
    .await?;
    Api::<Project>::all(admin)
        .delete(&name, &DeleteParams::default())
        .await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 4. Concurrency (exclusive)

/// The apiserver's `apiserver_admission_webhook_admission_duration_seconds` histogram for one
/// webhook, summed over operations and outcomes.
#[derive(Clone, Debug, Default)]
struct Histogram {
    /// Cumulative counts by upper bound, ascending (`+Inf` last).
    buckets: Vec<(f64, f64)>,
    sum: f64,
    count: f64,
}

impl Histogram {
    fn parse(metrics: &str, webhook: &str) -> Histogram {
        const NAME: &str = "apiserver_admission_webhook_admission_duration_seconds";
        let wanted = format!("name=\"{webhook}\"");
        let mut buckets: BTreeMap<String, f64> = BTreeMap::new();
        let mut h = Histogram::default();
        for line in metrics.lines() {
            let Some(rest) = line.strip_prefix(NAME) else {
                continue;
            };
            let Some((series, value)) = rest.rsplit_once(' ') else {
                continue;
            };
            if !series.contains(&wanted) {
                continue;
            }
            let value: f64 = value.trim().parse().unwrap_or(0.0);
            if series.starts_with("_bucket{") {
                let le = series
                    .split("le=\"")
                    .nth(1)
                    .and_then(|s| s.split('"').next())
                    .unwrap_or("+Inf");
                *buckets.entry(le.to_string()).or_default() += value;
            } else if series.starts_with("_sum{") {
                h.sum += value;
            } else if series.starts_with("_count{") {
                h.count += value;
            }
        }
        let bound = |le: &str| {
            if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().unwrap_or(f64::INFINITY)
            }
        };
        h.buckets = buckets.iter().map(|(le, v)| (bound(le), *v)).collect();
        h.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        h
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
                .map(|(le, v)| (*le, v - earlier(*le)))
                .collect(),
            sum: self.sum - before.sum,
            count: self.count - before.count,
        }
    }

    /// The q-quantile as Prometheus' `histogram_quantile` estimates it (linear within the
    /// bucket; the highest finite bound when it falls in `+Inf`).
    fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.buckets.last()?.1;
        if total <= 0.0 {
            return None;
        }
        let rank = q * total;
        let mut previous = (0.0, 0.0);
        for &(le, count) in &self.buckets {
            if count >= rank {
                if le.is_infinite() {
                    return Some(previous.0);
                }
                let within = count - previous.1;
                let fraction = if within > 0.0 {
                    (rank - previous.1) / within
                } else {
                    1.0
                };
                return Some(previous.0 + (le - previous.0) * fraction);
            }
            previous = (le, count);
        }
        Some(previous.0)
    }
}

async fn webhook_histogram(client: &Client) -> Result<Histogram, Failed> {
    let request = http::Request::get("/metrics").body(Vec::new())?;
    let text = client.request_text(request).await?;
    Ok(Histogram::parse(&text, "validate.tenancy.dev"))
}

async fn concurrent_creations_never_oversubscribe_the_customer_quota(env: Arc<Env>) -> TestResult {
    const ROUNDS: usize = 5;
    const ATTEMPTS: usize = 40;
    const FITS: usize = 10;
    let admin = env.client().await;
    let cust = unique_name("e2e-burst");
    let customers: Api<Customer> = Api::all(admin.clone());
    customers
        .create(
            &pp(),
            &customer(&cust, json!({"quota": {"hard": {"requests.cpu": "10"}}})),
        )
        .await?;
    let projects: Api<Project> = Api::all(admin.clone());
    let ledger: Api<ConfigMap> = Api::namespaced(admin.clone(), &env.local().namespace);
    let before = webhook_histogram(&admin).await?;

    for round in 1..=ROUNDS {
        let names: Vec<String> = (0..ATTEMPTS)
            .map(|i| format!("{cust}-r{round}-{i}"))
            .collect();
        let started = std::time::Instant::now();
        let results = futures::future::join_all(names.iter().map(|name| {
            let projects = projects.clone();
            let p = project(
                name,
                json!({"customer": cust, "quota": {"hard": {"requests.cpu": "1"}}}),
            );
            async move { projects.create(&pp(), &p).await }
        }))
        .await;
        let took = started.elapsed();
        let mut created = Vec::new();
        let mut refused = 0;
        let mut unexpected = Vec::new();
        for (name, result) in names.iter().zip(results) {
            match result {
                Ok(_) => created.push(name.clone()),
                Err(kube::Error::Api(s))
                    if s.code == 409
                        && s.message.contains(DENIED_BY_WEBHOOK)
                        && s.message.contains("quota exhausted")
                        && s.message.contains("requests.cpu: asks 1, 0 of 10 left") =>
                {
                    refused += 1
                }
                Err(e) => unexpected.push(format!("{name}: {:?}", refusal(&e))),
            }
        }
        eprintln!(
            "[e2e] round {round}: {} created, {refused} refused with 409 in {:.2}s",
            created.len(),
            took.as_secs_f64()
        );
        if created.len() != FITS || refused != ATTEMPTS - FITS || !unexpected.is_empty() {
            return Err(format!(
                "round {round}: {} of {ATTEMPTS} creations succeeded and {refused} got the quota 409 \
                 (expected {FITS} and {}); other outcomes: {unexpected:?}",
                created.len(),
                ATTEMPTS - FITS
            )
            .into());
        }
        wait_for(
            &format!("round {round}: customer {cust} status.allocated requests.cpu = 10"),
            RECONCILE_TIMEOUT,
            || async {
                let c = customers.get(&cust).await.ok()?;
                let allocated = c.status?.allocated;
                (allocated.get("requests.cpu").map(String::as_str) == Some("10")).then_some(())
            },
        )
        .await?;
        let entries = ledger
            .get(&format!("tenancy-ledger-{cust}"))
            .await?
            .data
            .unwrap_or_default();
        let reserved: BTreeSet<&String> = entries.keys().collect();
        let expected: BTreeSet<&String> = created.iter().collect();
        if reserved != expected {
            return Err(format!(
                "round {round}: the ledger reserves {reserved:?}, the created projects are {expected:?}"
            )
            .into());
        }

        // Release: soft delete the ten (each once the operator holds its finalizer).
        for name in &created {
            wait_finalizer(&admin, name).await?;
            projects.delete(name, &DeleteParams::default()).await?;
        }
        for name in &created {
            wait_project_gone(&admin, name).await?;
        }
        wait_for(
            &format!("round {round}: customer {cust} to have nothing allocated"),
            RECONCILE_TIMEOUT,
            || async {
                let c = customers.get(&cust).await.ok()?;
                let allocated = c.status?.allocated;
                allocated
                    .get("requests.cpu")
                    .is_none_or(|v| v == "0")
                    .then_some(())
            },
        )
        .await?;
    }

    let after = webhook_histogram(&admin).await?;
    let during = after.since(&before);
    let ms = |v: Option<f64>| v.map_or("n/a".to_string(), |s| format!("{:.1}ms", s * 1000.0));
    eprintln!(
        "[e2e] validate.tenancy.dev latency as the apiserver sees it, over {} admissions: \
         p50 {} p99 {} mean {} (buckets {:?})",
        during.count,
        ms(during.quantile(0.5)),
        ms(during.quantile(0.99)),
        ms((during.count > 0.0).then(|| during.sum / during.count)),
        during.buckets
    );
    if during.count < (ROUNDS * ATTEMPTS) as f64 {
        return Err(format!(
            "the apiserver recorded {} validate.tenancy.dev admissions, fewer than the {} creations",
            during.count,
            ROUNDS * ATTEMPTS
        )
        .into());
    }

    // The ledger belongs to its customer: deleting the customer deletes it (garbage collector).
    let ledger_name = format!("tenancy-ledger-{cust}");
    let owned = ledger
        .get(&ledger_name)
        .await?
        .metadata
        .owner_references
        .unwrap_or_default();
    if !owned.iter().any(|o| o.kind == "Customer" && o.name == cust) {
        return Err(
            format!("ledger {ledger_name} is not owned by customer {cust}: {owned:?}").into(),
        );
    }
    customers.delete(&cust, &DeleteParams::default()).await?;
    wait_for(
        &format!("ledger {ledger_name} to go with its customer"),
        RECONCILE_TIMEOUT,
        || async { matches!(ledger.get_opt(&ledger_name).await, Ok(None)).then_some(()) },
    )
    .await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 6. Purge after retention (exclusive: moves the operator's clock)

/// Sets the operator's clock offset back to 0 when dropped (also when the test fails or times
/// out).
struct ClockReset(PathBuf);

impl Drop for ClockReset {
    fn drop(&mut self) {
        if let Err(e) = std::fs::write(&self.0, "0") {
            eprintln!("[e2e] could not reset the clock offset: {e}");
        }
    }
}

/// Sets the operator's clock offset to `seconds`: written to a temporary file renamed over the
/// offset file, so the operator never reads a half-written offset (an empty file reads as 0).
/// Returns the instant the clock moved, to measure what follows from it.
fn set_clock_offset(file: &Path, seconds: i64) -> Result<Instant, Failed> {
    let writing = file.with_extension("e2e-writing");
    std::fs::write(&writing, seconds.to_string())?;
    std::fs::rename(&writing, file)?;
    eprintln!(
        "[e2e] clock offset set to {seconds}s ({:.2} days)",
        seconds as f64 / 86400.0
    );
    Ok(Instant::now())
}

/// The offset that puts the operator's clock at `at` (to the second).
fn offset_to(at: jiff::Timestamp) -> i64 {
    at.as_second() - jiff::Timestamp::now().as_second()
}

/// The operator's `/metrics` text.
async fn operator_metrics(env: &Env) -> Result<String, Failed> {
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

/// The value of `metric{controller="<controller>"}` in a `/metrics` text.
fn controller_metric(text: &str, metric: &str, controller: &str) -> Option<f64> {
    let series = format!("{metric}{{controller=\"{controller}\"}}");
    text.lines()
        .find_map(|l| l.strip_prefix(series.as_str()))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// The Events (core/v1 view) about the object `name` of `kind`.
async fn events_about(client: &Client, kind: &str, name: &str) -> Result<Vec<Event>, String> {
    Api::<Event>::all(client.clone())
        .list(&ListParams::default().fields(&format!(
            "involvedObject.kind={kind},involvedObject.name={name}"
        )))
        .await
        .map(|l| l.items)
        .map_err(|e| format!("listing the events about {kind} {name}: {e}"))
}

/// Waits until there is an Event with `reason` about the object `name` of `kind` whose message
/// contains `mentions`.
async fn wait_event(
    client: &Client,
    kind: &str,
    name: &str,
    reason: &str,
    mentions: &str,
) -> Result<Event, Failed> {
    wait_until(
        &format!("an Event {reason} about {kind} {name} mentioning {mentions:?}"),
        RECONCILE_TIMEOUT,
        || async {
            let events = events_about(client, kind, name).await?;
            events
                .iter()
                .find(|e| {
                    e.reason.as_deref() == Some(reason)
                        && e.message.as_deref().unwrap_or_default().contains(mentions)
                })
                .cloned()
                .ok_or_else(|| {
                    let seen: Vec<(Option<&str>, Option<&str>)> = events
                        .iter()
                        .map(|e| (e.reason.as_deref(), e.message.as_deref()))
                        .collect();
                    format!("events {seen:?}")
                })
        },
    )
    .await
}

/// Fails if there is an Event with `reason` about the object `name` of `kind`.
async fn no_event(client: &Client, kind: &str, name: &str, reason: &str) -> TestResult {
    let events = events_about(client, kind, name).await?;
    match events.iter().find(|e| e.reason.as_deref() == Some(reason)) {
        Some(e) => Err(format!(
            "unexpected Event {reason} about {kind} {name}: {:?}",
            e.message
        )
        .into()),
        None => Ok(()),
    }
}

/// When the project of the archived namespace `ns` was deleted, on the operator's clock (the
/// archive's `terminatedAt`).
async fn terminated_at(namespaces: &Api<Namespace>, ns: &str) -> Result<jiff::Timestamp, Failed> {
    let n = namespaces.get(ns).await?;
    let archive: Value = serde_json::from_str(
        n.annotations()
            .get("tenancy.dev/archive")
            .ok_or_else(|| format!("namespace {ns} has no tenancy.dev/archive annotation"))?,
    )?;
    let at = archive["terminatedAt"]
        .as_str()
        .ok_or_else(|| format!("the archive of {ns} has no terminatedAt: {archive}"))?;
    Ok(at.parse::<jiff::Timestamp>()?)
}

/// Fails unless the namespace exists and is not being deleted.
async fn still_kept(namespaces: &Api<Namespace>, ns: &str, when: &str) -> TestResult {
    match namespaces.get_opt(ns).await? {
        Some(n) if n.metadata.deletion_timestamp.is_none() => Ok(()),
        Some(_) => Err(format!("the archived namespace {ns} is being deleted {when}").into()),
        None => Err(format!("the archived namespace {ns} is gone {when}").into()),
    }
}

/// Waits until the purge of namespace `ns` has started (it is being deleted, or gone already);
/// returns how long after `since` that was seen.
async fn wait_purge_started(
    namespaces: &Api<Namespace>,
    ns: &str,
    since: Instant,
) -> Result<Duration, Failed> {
    wait_for(
        &format!("namespace {ns} to be purged (deleted)"),
        RECONCILE_TIMEOUT,
        || async {
            match namespaces.get_opt(ns).await {
                Ok(None) => Some(()),
                Ok(Some(n)) => n.metadata.deletion_timestamp.is_some().then_some(()),
                Err(_) => None,
            }
        },
    )
    .await?;
    Ok(since.elapsed())
}

/// Waits until the archive controller has nothing waiting and nothing running (one scrape of the
/// operator's metrics shows both at 0).
async fn wait_archive_controller_idle(env: &Env) -> TestResult {
    wait_until(
        "the archive controller to have nothing queued and nothing running",
        RECONCILE_TIMEOUT,
        || async {
            let text = operator_metrics(env).await.map_err(|e| {
                e.message()
                    .map(str::to_string)
                    .unwrap_or_else(|| "GET /metrics failed".into())
            })?;
            let depth = controller_metric(&text, "tenancy_reconcile_queue_depth", "archive");
            let running = controller_metric(&text, "tenancy_reconcile_in_flight", "archive");
            if depth == Some(0.0) && running == Some(0.0) {
                Ok(())
            } else {
                Err(format!("queue depth {depth:?}, in flight {running:?}"))
            }
        },
    )
    .await
}

/// The purge after retention, by the clock alone: nothing but the operator's clock moves (no
/// object is touched to make the operator look again). Three archives with a one-day retention:
/// `old` (its customer exists: the customer's reconciler purges it, with a `Purged` Event on the
/// customer), and two whose customer is deleted too (the archive controller purges them, with a
/// `Purged` Event on the namespace): `canary`, archived at once, and `orphan`, archived an hour
/// later on the operator's clock.
///
/// Just before a retention ends, nothing may be purged, and that is only checked once the
/// operator has provably looked at the archive with the moved clock: for `old`, a change of its
/// customer's displayName made after the clock moved is reconciled (status.observedGeneration),
/// and that reconcile purges what is due before it writes the status; for `orphan`, the same
/// jump purges `canary` (so the archive controller saw it) and the archive controller then
/// drains its queue (every archive, `orphan` included, was queued by that jump).
async fn archived_namespace_is_purged_after_retention(env: Arc<Env>) -> TestResult {
    let admin = env.client().await;
    let clock = env.clock_offset_file();
    let reset = ClockReset(clock.clone());
    let tag = unique_name("e2e-purge");
    let cust = format!("{tag}-acme");
    let name = format!("{tag}-old");
    let customers: Api<Customer> = Api::all(admin.clone());
    let projects: Api<Project> = Api::all(admin.clone());
    let namespaces: Api<Namespace> = Api::all(admin.clone());
    let day = jiff::SignedDuration::from_hours(24);
    let minutes = |m: i64| jiff::SignedDuration::from_mins(m);

    customers
        .create(
            &pp(),
            &customer(&cust, json!({"terminatedProjectRetentionDays": 1})),
        )
        .await?;
    let soft_delete = |project_name: String, customer_name: String| {
        let (admin, projects) = (admin.clone(), projects.clone());
        async move {
            projects
                .create(
                    &pp(),
                    &project(&project_name, json!({"customer": customer_name})),
                )
                .await?;
            wait_namespace_state(&admin, &project_name, "active").await?;
            wait_finalizer(&admin, &project_name).await?;
            projects
                .delete(&project_name, &DeleteParams::default())
                .await?;
            wait_project_gone(&admin, &project_name).await
        }
    };
    soft_delete(name.clone(), cust.clone()).await?;

    // Archives that outlive their customer: kept for the retention the customer had, then
    // purged all the same. The orphan is archived an hour after the canary (operator's clock).
    let gone_cust = format!("{tag}-gone");
    let canary = format!("{tag}-canary");
    let orphan = format!("{tag}-orphan");
    customers
        .create(
            &pp(),
            &customer(&gone_cust, json!({"terminatedProjectRetentionDays": 1})),
        )
        .await?;
    soft_delete(canary.clone(), gone_cust.clone()).await?;
    set_clock_offset(&clock, 3600)?;
    soft_delete(orphan.clone(), gone_cust.clone()).await?;
    customers
        .delete(&gone_cust, &DeleteParams::default())
        .await?;
    wait_for(
        &format!("customer {gone_cust} to be gone"),
        RECONCILE_TIMEOUT,
        || async { matches!(customers.get_opt(&gone_cust).await, Ok(None)).then_some(()) },
    )
    .await?;
    let t_old = terminated_at(&namespaces, &name).await?;
    let t_canary = terminated_at(&namespaces, &canary).await?;
    let t_orphan = terminated_at(&namespaces, &orphan).await?;
    eprintln!(
        "[e2e] purge: archived at {t_old} ({name}), {t_canary} ({canary}), {t_orphan} ({orphan})"
    );
    if t_orphan.duration_since(t_canary) < minutes(50) || t_canary < t_old {
        return Err(format!(
            "the soft deletes did not record the operator's clock: {canary} at {t_canary}, \
             {orphan} (an hour later on the operator's clock) at {t_orphan}"
        )
        .into());
    }

    // 1. Ten minutes before the retention of `old` ends: the customer's reconciler, run with
    //    that clock (a displayName change made after the clock moved, reconciled), keeps it.
    let moved = set_clock_offset(&clock, offset_to(t_old + day - minutes(10)))?;
    let marked = customers
        .patch(
            &cust,
            &patch_params(),
            &merge(json!({"spec": {"displayName": "ten minutes before the retention ends"}})),
        )
        .await?;
    let generation = marked.metadata.generation;
    wait_for(
        &format!("customer {cust} to reconcile generation {generation:?}"),
        RECONCILE_TIMEOUT,
        || async {
            let c = customers.get(&cust).await.ok()?;
            (c.status?.observed_generation == generation).then_some(())
        },
    )
    .await?;
    eprintln!(
        "[e2e] purge: 10 min before the retention, the customer reconciled {:.2}s after the clock moved",
        moved.elapsed().as_secs_f64()
    );
    still_kept(&namespaces, &name, "ten minutes before its retention ends").await?;
    no_event(&admin, "Customer", &cust, "Purged").await?;

    // 2. Past the retention of `old` and `canary`, half an hour before the orphan's: both are
    //    purged by time alone; the orphan, looked at with the same clock, stays.
    let moved = set_clock_offset(&clock, offset_to(t_orphan + day - minutes(30)))?;
    let took = wait_purge_started(&namespaces, &name, moved).await?;
    eprintln!(
        "[e2e] purge: {name} (customer exists) purged {:.2}s after the clock passed its retention",
        took.as_secs_f64()
    );
    wait_event(&admin, "Customer", &cust, "Purged", &name).await?;
    eprintln!(
        "[e2e] purge: Purged Event on customer {cust} seen {:.2}s after the clock moved",
        moved.elapsed().as_secs_f64()
    );
    let took = wait_purge_started(&namespaces, &canary, moved).await?;
    eprintln!(
        "[e2e] purge: {canary} (customer gone) purged {:.2}s after the clock passed its retention",
        took.as_secs_f64()
    );
    wait_event(&admin, "Namespace", &canary, "Purged", &gone_cust).await?;
    wait_archive_controller_idle(&env).await?;
    eprintln!(
        "[e2e] purge: Purged Event on namespace {canary} seen and the archive controller idle {:.2}s after the clock moved",
        moved.elapsed().as_secs_f64()
    );
    still_kept(
        &namespaces,
        &orphan,
        "half an hour before its retention ends",
    )
    .await?;
    no_event(&admin, "Namespace", &orphan, "Purged").await?;

    // 3. Past the orphan's retention: purged by time alone, with an Event on the namespace.
    let moved = set_clock_offset(&clock, offset_to(t_orphan + day + minutes(1)))?;
    let took = wait_purge_started(&namespaces, &orphan, moved).await?;
    eprintln!(
        "[e2e] purge: {orphan} (customer gone) purged {:.2}s after the clock passed its retention",
        took.as_secs_f64()
    );
    let purged = wait_event(&admin, "Namespace", &orphan, "Purged", &orphan).await?;
    eprintln!(
        "[e2e] purge: Purged Event on namespace {orphan} seen {:.2}s after the clock moved",
        moved.elapsed().as_secs_f64()
    );
    let note = purged.message.unwrap_or_default();
    if !note.contains(&gone_cust) {
        return Err(
            format!("the orphan's Purged event does not name its customer: {note:?}").into(),
        );
    }
    // The namespace controller finishes the deletions.
    for ns in [&name, &canary, &orphan] {
        wait_for(
            &format!("namespace {ns} to be deleted for good"),
            Duration::from_secs(120),
            || async { matches!(namespaces.get_opt(ns).await, Ok(None)).then_some(()) },
        )
        .await?;
    }
    drop(reset);
    let _ = customers.delete(&cust, &DeleteParams::default()).await;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Move and end date

async fn move_without_preserved_permissions_revokes_the_team_and_swaps_owners(
    env: Arc<Env>,
) -> TestResult {
    let client = env.client().await;
    let (from, to, name) = (
        unique_name("move-from"),
        unique_name("move-to"),
        unique_name("moved"),
    );
    let (old_owner, new_owner, alice) = (
        format!("{from}-owner"),
        format!("{to}-owner"),
        format!("{name}-alice"),
    );
    let customers: Api<Customer> = Api::all(client.clone());
    customers
        .create(
            &pp(),
            &customer(&from, json!({"owners": owners(&[&old_owner])})),
        )
        .await?;
    customers
        .create(
            &pp(),
            &customer(&to, json!({"owners": owners(&[&new_owner])})),
        )
        .await?;
    let projects: Api<Project> = Api::all(client.clone());
    projects
        .create(&pp(), &project(&name, json!({"customer": from})))
        .await?;
    wait_namespace_state(&client, &name, "active").await?;
    Api::<ProjectMembership>::namespaced(client.clone(), &name)
        .create(&pp(), &membership(&name, "alice", &alice, "Member"))
        .await?;
    wait_access(&env, &alice, "get", "pods", Some(&name), true).await?;
    wait_access(
        &env,
        &old_owner,
        "create",
        "deployments.apps",
        Some(&name),
        true,
    )
    .await?;
    wait_access(
        &env,
        &new_owner,
        "create",
        "deployments.apps",
        Some(&name),
        false,
    )
    .await?;

    // Staff moves it without preserving permissions.
    projects
        .patch(
            &name,
            &patch_params(),
            &merge(json!({"spec": {"customer": to, "preservePermissionsOnMove": false}})),
        )
        .await?;
    wait_project(&client, &name, "status.lastMove records the move", |p| {
        let m = p.status.as_ref()?.last_move.as_ref()?;
        (m.from == from && m.to == to && !m.preserved_permissions).then_some(())
    })
    .await?;
    wait_membership_phase(&client, &name, "alice", MembershipPhase::Revoked).await?;
    wait_access(&env, &alice, "get", "pods", Some(&name), false).await?;
    wait_access(
        &env,
        &old_owner,
        "create",
        "deployments.apps",
        Some(&name),
        false,
    )
    .await?;
    wait_access(
        &env,
        &new_owner,
        "create",
        "deployments.apps",
        Some(&name),
        true,
    )
    .await?;
    // A move made before the project's first status is read from its namespace's label, so the
    // namespace is relabelled by the reconcile after the status that records the move: waited
    // for, not read once.
    let namespaces = Api::<Namespace>::all(client.clone());
    wait_namespace_state(&client, &name, "active").await?;
    wait_for(
        &format!("namespace {name} labelled with customer {to}"),
        RECONCILE_TIMEOUT,
        || async {
            let ns = namespaces.get_opt(&name).await.ok().flatten()?;
            (ns.labels().get("tenancy.dev/customer") == Some(&to)).then_some(())
        },
    )
    .await?;
    Ok(())
}

pub(crate) fn cron_job(name: &str) -> k8s_openapi::api::batch::v1::CronJob {
    from_json(json!({
        "metadata": {"name": name},
        "spec": {
            "schedule": "*/5 * * * *",
            "jobTemplate": {"spec": {"template": {"spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "job", "image": "registry.invalid/job:1"}],
            }}}},
        },
    }))
}

async fn end_date_finishes_grace_suspends_and_a_later_end_date_resumes(
    env: Arc<Env>,
) -> TestResult {
    use k8s_openapi::api::batch::v1::CronJob;
    let client = env.client().await;
    let (cust, name) = (unique_name("enddate"), unique_name("ending"));
    let yesterday = jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date()
        .yesterday()
        .map_err(|e| e.to_string())?
        .to_string();
    Api::<Customer>::all(client.clone())
        .create(&pp(), &customer(&cust, json!({})))
        .await?;
    let projects: Api<Project> = Api::all(client.clone());
    projects
        .create(
            &pp(),
            &project(&name, json!({"customer": cust, "endDate": yesterday, "gracePeriodDays": 30, "expirationPolicy": "Suspend"})),
        )
        .await?;
    // After the end date, within the grace period: Finished.
    wait_project(&client, &name, "phase Finished with InGracePeriod", |p| {
        let s = p.status.as_ref()?;
        let grace = s
            .conditions
            .iter()
            .any(|c| c.type_ == "InGracePeriod" && c.status == "True");
        (s.phase == Some(ProjectPhase::Finished) && grace).then_some(())
    })
    .await?;
    let ns = wait_namespace_state(&client, &name, "active").await?;
    if ns.labels().get("tenancy.dev/finished").map(String::as_str) != Some("true") {
        return Err(format!(
            "namespace {name} is not labelled finished: {:?}",
            ns.labels()
        )
        .into());
    }
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &name);
    let mut d = deployment("web");
    d.spec.as_mut().expect("spec").replicas = Some(3);
    deployments.create(&pp(), &d).await?;
    let cron_jobs: Api<CronJob> = Api::namespaced(client.clone(), &name);
    cron_jobs.create(&pp(), &cron_job("nightly")).await?;

    // The grace period ends (staff shortens it): Suspend runs.
    projects
        .patch(
            &name,
            &patch_params(),
            &merge(json!({"spec": {"gracePeriodDays": 0}})),
        )
        .await?;
    wait_project(
        &client,
        &name,
        "phase Expired with 3 replicas of web remembered",
        |p| {
            let s = p.status.as_ref()?;
            (s.phase == Some(ProjectPhase::Expired)
                && s.suspension.as_ref()?.replicas.get("Deployment/web") == Some(&3))
            .then_some(())
        },
    )
    .await?;
    let replicas = deployments.get("web").await?.spec.and_then(|s| s.replicas);
    let suspended = cron_jobs.get("nightly").await?.spec.and_then(|s| s.suspend);
    let pods_quota = Api::<ResourceQuota>::namespaced(client.clone(), &name)
        .get("tenancy-quota")
        .await?
        .spec
        .and_then(|s| s.hard)
        .and_then(|h| h.get("pods").map(|q| q.0.clone()));
    if replicas != Some(0) || suspended != Some(true) || pods_quota.as_deref() != Some("0") {
        return Err(format!("after expiry: replicas {replicas:?}, cronjob suspended {suspended:?}, quota pods {pods_quota:?}").into());
    }

    // The end date moves later: everything comes back.
    projects
        .patch(
            &name,
            &patch_params(),
            &merge(json!({"spec": {"endDate": "2099-12-31"}})),
        )
        .await?;
    wait_project(&client, &name, "phase Active with no suspension", |p| {
        let s = p.status.as_ref()?;
        (s.phase == Some(ProjectPhase::Active) && s.suspension.is_none()).then_some(())
    })
    .await?;
    let replicas = deployments.get("web").await?.spec.and_then(|s| s.replicas);
    let suspended = cron_jobs.get("nightly").await?.spec.and_then(|s| s.suspend);
    if replicas != Some(3) || suspended != Some(false) {
        return Err(format!(
            "after resuming: replicas {replicas:?}, cronjob suspended {suspended:?}"
        )
        .into());
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// End date, grace and expiration policies by the clock alone (exclusive: moves the clock)

pub(crate) fn stateful_set(name: &str, replicas: i32) -> k8s_openapi::api::apps::v1::StatefulSet {
    from_json(json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "serviceName": name,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "db", "image": "registry.invalid/db:1"}]},
            },
        },
    }))
}

/// A Job that would run at once (`suspend: false`); with no kubelet, it never does.
fn job(name: &str) -> k8s_openapi::api::batch::v1::Job {
    from_json(json!({
        "metadata": {"name": name},
        "spec": {
            "suspend": false,
            "template": {"spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "job", "image": "registry.invalid/job:1"}],
            }},
        },
    }))
}

fn condition<'a>(
    p: &'a Project,
    type_: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    p.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
}

fn phase_and_conditions(p: &Project) -> String {
    let s = p.status.as_ref();
    format!(
        "phase {:?}, conditions {:?}",
        s.and_then(|s| s.phase),
        s.map(|s| {
            s.conditions
                .iter()
                .map(|c| format!("{}={} ({})", c.type_, c.status, c.reason))
                .collect::<Vec<_>>()
        })
    )
}

/// The `pods` the namespace's `tenancy-quota` allows, if there is such a quota and limit.
async fn quota_pods(client: &Client, ns: &str) -> Result<Option<String>, String> {
    let quota = Api::<ResourceQuota>::namespaced(client.clone(), ns)
        .get_opt("tenancy-quota")
        .await
        .map_err(|e| format!("reading the quota of {ns}: {e}"))?;
    Ok(quota
        .and_then(|q| q.spec?.hard)
        .and_then(|h| h.get("pods").map(|q| q.0.clone())))
}

/// What the suspended project's workloads look like: (Deployment web replicas, StatefulSet db
/// replicas, CronJob nightly suspend, Job once suspend).
async fn workload_state(
    client: &Client,
    ns: &str,
) -> Result<(Option<i32>, Option<i32>, Option<bool>, Option<bool>), String> {
    use k8s_openapi::api::apps::v1::StatefulSet;
    use k8s_openapi::api::batch::v1::{CronJob, Job};
    let err = |what: &str| {
        let what = what.to_string();
        move |e: kube::Error| format!("reading {what} in {ns}: {e}")
    };
    let web = Api::<Deployment>::namespaced(client.clone(), ns)
        .get("web")
        .await
        .map_err(err("Deployment web"))?;
    let db = Api::<StatefulSet>::namespaced(client.clone(), ns)
        .get("db")
        .await
        .map_err(err("StatefulSet db"))?;
    let nightly = Api::<CronJob>::namespaced(client.clone(), ns)
        .get("nightly")
        .await
        .map_err(err("CronJob nightly"))?;
    let once = Api::<Job>::namespaced(client.clone(), ns)
        .get("once")
        .await
        .map_err(err("Job once"))?;
    Ok((
        web.spec.and_then(|s| s.replicas),
        db.spec.and_then(|s| s.replicas),
        nightly.spec.and_then(|s| s.suspend),
        once.spec.and_then(|s| s.suspend),
    ))
}

/// A project's end date, grace period and expiration policy, driven by nothing but the
/// operator's clock: no object is changed to make the operator look again.
///
/// `susp` (Suspend) holds a Deployment (3 replicas), a StatefulSet (2), a CronJob and a Job;
/// `del` (Delete) a Deployment and a Job; both end tomorrow (UTC) with 2 days of grace. A
/// membership of `susp` ends in an hour (real time). Then: at +2 h the membership is Expired and
/// grants nothing (the membership object itself unchanged); on the day after the end date both
/// projects are Finished (InGracePeriod, namespace labelled finished); after the grace period the
/// policies run (Suspend: replicas 0, CronJob and Job suspended, pods: 0, Event Suspended;
/// Delete: workloads gone, Event WorkloadsDeleted); staff moving the end date far ahead restores
/// the suspended workloads (Event Resumed).
async fn end_date_grace_and_the_expiration_policies_run_by_time_alone(env: Arc<Env>) -> TestResult {
    use k8s_openapi::api::apps::v1::StatefulSet;
    use k8s_openapi::api::batch::v1::{CronJob, Job};
    let admin = env.client().await;
    let clock = env.clock_offset_file();
    let reset = ClockReset(clock.clone());
    let tag = unique_name("e2e-bytime");
    let cust = format!("{tag}-acme");
    let susp = format!("{tag}-susp");
    let del = format!("{tag}-del");
    let eve = format!("{tag}-eve");
    let utc = jiff::tz::TimeZone::UTC;
    let end_date = jiff::Timestamp::now()
        .to_zoned(utc.clone())
        .date()
        .tomorrow()
        .map_err(|e| e.to_string())?;
    let midday_after = |days: i64| -> Result<jiff::Timestamp, Failed> {
        let date = end_date
            .checked_add(jiff::Span::new().days(days))
            .map_err(|e| e.to_string())?;
        Ok(date
            .to_zoned(utc.clone())
            .map_err(|e| e.to_string())?
            .timestamp()
            + jiff::SignedDuration::from_hours(12))
    };

    // Created by staff (the admin); the customer has no quota, so the projects need none.
    Api::<Customer>::all(admin.clone())
        .create(&pp(), &customer(&cust, json!({})))
        .await?;
    let projects: Api<Project> = Api::all(admin.clone());
    for (name, policy) in [(&susp, "Suspend"), (&del, "Delete")] {
        projects
            .create(
                &pp(),
                &project(
                    name,
                    json!({
                        "customer": cust,
                        "endDate": end_date.to_string(),
                        "gracePeriodDays": 2,
                        "expirationPolicy": policy,
                    }),
                ),
            )
            .await?;
    }
    for name in [&susp, &del] {
        wait_namespace_state(&admin, name, "active").await?;
    }
    // (a) With the clock where it is, both are Active.
    for name in [&susp, &del] {
        wait_project(&admin, name, "phase Active (end date tomorrow)", |p| {
            (p.status.as_ref()?.phase == Some(ProjectPhase::Active)).then_some(())
        })
        .await?;
    }

    let mut web = deployment("web");
    web.spec.as_mut().expect("spec").replicas = Some(3);
    Api::<Deployment>::namespaced(admin.clone(), &susp)
        .create(&pp(), &web)
        .await?;
    Api::<StatefulSet>::namespaced(admin.clone(), &susp)
        .create(&pp(), &stateful_set("db", 2))
        .await?;
    Api::<CronJob>::namespaced(admin.clone(), &susp)
        .create(&pp(), &cron_job("nightly"))
        .await?;
    Api::<Job>::namespaced(admin.clone(), &susp)
        .create(&pp(), &job("once"))
        .await?;
    Api::<Deployment>::namespaced(admin.clone(), &del)
        .create(&pp(), &deployment("web"))
        .await?;
    Api::<Job>::namespaced(admin.clone(), &del)
        .create(&pp(), &job("once"))
        .await?;

    // A membership that ends in an hour (real time).
    let until = (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1))
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let memberships: Api<ProjectMembership> = Api::namespaced(admin.clone(), &susp);
    memberships
        .create(
            &pp(),
            &membership_until(&susp, "eve", &eve, "Member", Some(&until)),
        )
        .await?;
    let before = wait_membership_phase(&admin, &susp, "eve", MembershipPhase::Active).await?;
    wait_access(&env, &eve, "list", "pods", Some(&susp), true).await?;

    // Two hours later: the membership is Expired and grants nothing; only its status changed.
    let moved = set_clock_offset(&clock, 2 * 3600)?;
    wait_access(&env, &eve, "list", "pods", Some(&susp), false).await?;
    eprintln!(
        "[e2e] by time: membership access denied {:.2}s after the clock passed its expirationTime",
        moved.elapsed().as_secs_f64()
    );
    let after = wait_membership_phase(&admin, &susp, "eve", MembershipPhase::Expired).await?;
    eprintln!(
        "[e2e] by time: membership phase Expired {:.2}s after the clock moved",
        moved.elapsed().as_secs_f64()
    );
    if after.metadata.generation != before.metadata.generation
        || serde_json::to_value(&after.spec)? != serde_json::to_value(&before.spec)?
        || after.metadata.labels != before.metadata.labels
        || after.metadata.annotations != before.metadata.annotations
    {
        return Err(format!(
            "the membership object changed while it expired by time: generation {:?} -> {:?}, \
             spec {:?} -> {:?}, labels {:?} -> {:?}, annotations {:?} -> {:?}",
            before.metadata.generation,
            after.metadata.generation,
            before.spec,
            after.spec,
            before.metadata.labels,
            after.metadata.labels,
            before.metadata.annotations,
            after.metadata.annotations
        )
        .into());
    }
    // The project, reconciled with that clock (a displayName change made after it moved), is
    // still Active: its end date is tomorrow.
    let marked = projects
        .patch(
            &susp,
            &patch_params(),
            &merge(json!({"spec": {"displayName": "two hours later"}})),
        )
        .await?;
    let generation = marked.metadata.generation;
    let p = wait_project(&admin, &susp, "reconciles the displayName change", |p| {
        (p.status.as_ref()?.observed_generation == generation).then(|| p.clone())
    })
    .await?;
    if p.status.as_ref().and_then(|s| s.phase) != Some(ProjectPhase::Active) {
        return Err(format!(
            "two hours later, the day before its end date, project {susp} is not Active: {}",
            phase_and_conditions(&p)
        )
        .into());
    }

    // (b) The day after the end date (midday): Finished, in its grace period.
    let moved = set_clock_offset(&clock, offset_to(midday_after(1)?))?;
    for name in [&susp, &del] {
        wait_project(&admin, name, "phase Finished with InGracePeriod", |p| {
            let grace = condition(p, "InGracePeriod").is_some_and(|c| c.status == "True");
            (p.status.as_ref()?.phase == Some(ProjectPhase::Finished) && grace).then_some(())
        })
        .await?;
        eprintln!(
            "[e2e] by time: {name} Finished (InGracePeriod) {:.2}s after the clock passed its end date",
            moved.elapsed().as_secs_f64()
        );
    }
    let namespaces: Api<Namespace> = Api::all(admin.clone());
    for name in [&susp, &del] {
        wait_until(
            &format!("namespace {name} to be labelled tenancy.dev/finished=true"),
            RECONCILE_TIMEOUT,
            || async {
                let ns = namespaces
                    .get(name)
                    .await
                    .map_err(|e| format!("reading namespace {name}: {e}"))?;
                match ns.labels().get("tenancy.dev/finished").map(String::as_str) {
                    Some("true") => Ok(()),
                    _ => Err(format!("labels {:?}", ns.labels())),
                }
            },
        )
        .await?;
    }
    eprintln!(
        "[e2e] by time: both namespaces labelled finished {:.2}s after the clock moved",
        moved.elapsed().as_secs_f64()
    );
    // Within the grace period nothing is suspended yet.
    let state = workload_state(&admin, &susp).await?;
    let p = projects.get(&susp).await?;
    if state != (Some(3), Some(2), Some(false), Some(false))
        || p.status.as_ref().is_some_and(|s| s.suspension.is_some())
        || condition(&p, "Expired").is_some_and(|c| c.status == "True")
    {
        return Err(format!(
            "within the grace period, {susp}'s workloads should be untouched: \
             (replicas web, db, suspend nightly, once) = {state:?}; {}",
            phase_and_conditions(&p)
        )
        .into());
    }

    // (c) The day after the end date plus grace (midday): the policies run.
    let moved = set_clock_offset(&clock, offset_to(midday_after(3)?))?;
    let p = wait_project(
        &admin,
        &susp,
        "phase Expired, condition Expired Suspended",
        |p| {
            let suspended = condition(p, "Expired")
                .is_some_and(|c| c.status == "True" && c.reason == "Suspended");
            (p.status.as_ref()?.phase == Some(ProjectPhase::Expired) && suspended)
                .then(|| p.clone())
        },
    )
    .await?;
    eprintln!(
        "[e2e] by time: {susp} Expired (Suspended) {:.2}s after the clock passed end date + grace",
        moved.elapsed().as_secs_f64()
    );
    let record = p
        .status
        .as_ref()
        .and_then(|s| s.suspension.clone())
        .ok_or("the expired project has no status.suspension")?;
    if record.replicas.get("Deployment/web") != Some(&3)
        || record.replicas.get("StatefulSet/db") != Some(&2)
        || record.cron_jobs != ["nightly"]
        || record.jobs != ["once"]
    {
        return Err(format!(
            "status.suspension should remember web: 3, db: 2, CronJob nightly and Job once: {record:?}"
        )
        .into());
    }
    wait_until(
        &format!("{susp}'s workloads suspended and its quota at pods: 0"),
        RECONCILE_TIMEOUT,
        || async {
            let state = workload_state(&admin, &susp).await?;
            let pods = quota_pods(&admin, &susp).await?;
            if state == (Some(0), Some(0), Some(true), Some(true)) && pods.as_deref() == Some("0") {
                Ok(())
            } else {
                Err(format!(
                    "(replicas web, db, suspend nightly, once) = {state:?}, quota pods {pods:?}"
                ))
            }
        },
    )
    .await?;
    eprintln!(
        "[e2e] by time: {susp}'s workloads suspended and pods: 0 {:.2}s after the clock moved",
        moved.elapsed().as_secs_f64()
    );
    wait_event(&admin, "Project", &susp, "Suspended", "").await?;
    eprintln!(
        "[e2e] by time: Event Suspended on {susp} seen {:.2}s after the clock moved",
        moved.elapsed().as_secs_f64()
    );

    wait_project(
        &admin,
        &del,
        "phase Expired, condition Expired WorkloadsDeleted",
        |p| {
            let deleted = condition(p, "Expired")
                .is_some_and(|c| c.status == "True" && c.reason == "WorkloadsDeleted");
            (p.status.as_ref()?.phase == Some(ProjectPhase::Expired) && deleted).then_some(())
        },
    )
    .await?;
    eprintln!(
        "[e2e] by time: {del} Expired (WorkloadsDeleted) {:.2}s after the clock passed end date + grace",
        moved.elapsed().as_secs_f64()
    );
    wait_until(
        &format!("{del}'s Deployment and Job deleted and its quota at pods: 0"),
        RECONCILE_TIMEOUT,
        || async {
            let deployments = Api::<Deployment>::namespaced(admin.clone(), &del)
                .list(&ListParams::default())
                .await
                .map_err(|e| format!("listing Deployments: {e}"))?;
            let jobs = Api::<Job>::namespaced(admin.clone(), &del)
                .list(&ListParams::default())
                .await
                .map_err(|e| format!("listing Jobs: {e}"))?;
            let pods = quota_pods(&admin, &del).await?;
            let left: Vec<String> = deployments
                .items
                .iter()
                .map(|d| format!("Deployment/{}", d.name_any()))
                .chain(jobs.items.iter().map(|j| format!("Job/{}", j.name_any())))
                .collect();
            if left.is_empty() && pods.as_deref() == Some("0") {
                Ok(())
            } else {
                Err(format!("left {left:?}, quota pods {pods:?}"))
            }
        },
    )
    .await?;
    wait_event(&admin, "Project", &del, "WorkloadsDeleted", "").await?;
    eprintln!(
        "[e2e] by time: {del}'s workloads deleted and Event WorkloadsDeleted seen {:.2}s after the clock moved",
        moved.elapsed().as_secs_f64()
    );

    // (d) Staff move the end date far ahead: everything suspended comes back.
    let moved_end = Instant::now();
    projects
        .patch(
            &susp,
            &patch_params(),
            &merge(json!({"spec": {"endDate": "2099-12-31"}})),
        )
        .await?;
    wait_project(&admin, &susp, "phase Active with no suspension", |p| {
        let s = p.status.as_ref()?;
        (s.phase == Some(ProjectPhase::Active) && s.suspension.is_none()).then_some(())
    })
    .await?;
    wait_until(
        &format!("{susp}'s workloads restored and its quota without pods: 0"),
        RECONCILE_TIMEOUT,
        || async {
            let state = workload_state(&admin, &susp).await?;
            let pods = quota_pods(&admin, &susp).await?;
            if state == (Some(3), Some(2), Some(false), Some(false)) && pods.is_none() {
                Ok(())
            } else {
                Err(format!(
                    "(replicas web, db, suspend nightly, once) = {state:?}, quota pods {pods:?}"
                ))
            }
        },
    )
    .await?;
    wait_event(&admin, "Project", &susp, "Resumed", "").await?;
    eprintln!(
        "[e2e] by time: {susp} resumed (replicas 3 and 2, CronJob and Job unsuspended, Event Resumed) {:.2}s after the end date moved",
        moved_end.elapsed().as_secs_f64()
    );

    drop(reset);
    // Best effort: the workloads go, then the projects (soft deletes keep their namespaces).
    for ns in [&susp, &del] {
        let _ = Api::<Deployment>::namespaced(admin.clone(), ns)
            .delete_collection(&DeleteParams::default(), &ListParams::default())
            .await;
        let _ = Api::<StatefulSet>::namespaced(admin.clone(), ns)
            .delete_collection(&DeleteParams::default(), &ListParams::default())
            .await;
        let _ = Api::<CronJob>::namespaced(admin.clone(), ns)
            .delete_collection(&DeleteParams::default(), &ListParams::default())
            .await;
        let _ = Api::<Job>::namespaced(admin.clone(), ns)
            .delete_collection(&DeleteParams::background(), &ListParams::default())
            .await;
    }
    Ok(())
}
