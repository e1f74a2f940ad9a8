//! `kubectl tenancy`: the built plugin binary, run as a member, a manager, an owner, a stranger
//! and staff (`--as`/`--as-group` against the suite's admin kubeconfig). Each command must do
//! what the portal's action does, checked on the stored objects and by SubjectAccessReview, and
//! be refused where the portal refuses.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ResourceQuota;
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use kube::Api;
use kube::api::DeleteParams;
use libtest_mimic::Trial;
use serde_json::{Value, json};
use tenancy_operator::api::{Checklist, Customer, Project, ProjectMembership};

use crate::support::*;

pub fn trials(env: &Arc<Env>) -> Vec<Trial> {
    vec![
        trial(
            env,
            "plugin::projects_members_and_dates_as_member_manager_owner_stranger_and_staff",
            projects_members_and_dates,
        ),
        trial(
            env,
            "plugin::delete_lists_what_runs_and_recover_brings_the_team_back",
            delete_and_recover,
        ),
        trial(
            env,
            "plugin::an_owner_recovers_quota_and_checklist_and_the_invited_accept",
            owner_recovers_and_invited_accept,
        ),
        trial(
            env,
            "plugin::the_checklist_dialogue_creates_a_project_that_passes_the_webhook",
            checklist_dialogue,
        ),
        trial(
            env,
            "plugin::kubeconfig_context_completion_and_errors",
            conventions,
        ),
    ]
}

const STAFF_GROUP: &str = "tenancy:staff";
const PLUGIN: &str = env!("CARGO_BIN_EXE_kubectl-tenancy");
const COMPLETE: &str = env!("CARGO_BIN_EXE_kubectl_complete-tenancy");

/// Who runs a command: a user and their groups.
#[derive(Clone, Copy)]
struct Who<'a>(&'a str, &'a [&'a str]);

/// Runs `kubectl tenancy ARGS` (the built binary) as `who`, with `input` on stdin (piped: not
/// a terminal).
async fn run_as(env: &Env, who: Who<'_>, args: &[&str], input: Option<&str>) -> Output {
    let mut full: Vec<String> = vec![
        "--kubeconfig".into(),
        env.kubeconfig().display().to_string(),
        "--as".into(),
        who.0.into(),
    ];
    for g in who.1 {
        full.push("--as-group".into());
        full.push(g.to_string());
    }
    full.extend(args.iter().map(|s| s.to_string()));
    run_program(PLUGIN, full, input, None).await
}

async fn run_program(
    program: &str,
    args: Vec<String>,
    input: Option<&str>,
    kubeconfig_env: Option<PathBuf>,
) -> Output {
    let program = program.to_string();
    let input = input.map(String::from);
    tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut cmd = Command::new(&program);
        cmd.args(&args)
            .env_remove("KUBECONFIG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(k) = kubeconfig_env {
            cmd.env("KUBECONFIG", k);
        }
        let mut child = cmd.spawn().expect("the plugin binary runs");
        let mut stdin = child.stdin.take().expect("piped");
        if let Some(i) = input {
            let _ = stdin.write_all(i.as_bytes());
        }
        drop(stdin);
        child.wait_with_output().expect("waiting for the plugin")
    })
    .await
    .expect("the plugin's thread")
}

/// Runs `kubectl tenancy ARGS` as `who` (no input) and checks, as `what`, that it succeeds.
async fn ran(c: &mut Checks, env: &Env, who: Who<'_>, args: &[&str], what: &str) -> Output {
    let o = run_as(env, who, args, None).await;
    c.check(what, o.status.success(), shown(&o));
    o
}

/// Runs `kubectl tenancy ARGS` as `who` (no input) and checks, as `what`, that it fails saying
/// `text` on stderr.
async fn refused(
    c: &mut Checks,
    env: &Env,
    who: Who<'_>,
    args: &[&str],
    what: &str,
    text: &str,
) -> Output {
    let o = run_as(env, who, args, None).await;
    c.check(
        what,
        !o.status.success() && err(&o).contains(text),
        shown(&o),
    );
    o
}

/// Waits until `projects --include-terminated -o json` as `who` lists the project `name` as
/// Terminated: how many items the list held, and the project's item.
async fn terminated_item(env: &Env, who: Who<'_>, name: &str) -> Result<(usize, Value), Failed> {
    wait_for(
        "projects --include-terminated to list the project as Terminated",
        RECONCILE_TIMEOUT,
        || async {
            let o = run_as(
                env,
                who,
                &["projects", "--include-terminated", "-o", "json"],
                None,
            )
            .await;
            let listed = items(&o).ok()?;
            let item = listed
                .iter()
                .find(|p| p["metadata"]["name"] == name && p["status"]["phase"] == "Terminated")?;
            Some((listed.len(), item.clone()))
        },
    )
    .await
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn shown(o: &Output) -> String {
    format!(
        "exit {}, stdout: {}, stderr: {}",
        o.status,
        out(o).trim(),
        err(o).trim()
    )
}

/// The items of a `-o json` List.
fn items(o: &Output) -> Result<Vec<Value>, String> {
    let v: Value = serde_json::from_slice(&o.stdout)
        .map_err(|e| format!("-o json did not parse ({e}): {}", shown(o)))?;
    if v["kind"] != "List" {
        return Err(format!("-o json is not a List: {v}"));
    }
    Ok(v["items"].as_array().cloned().unwrap_or_default())
}

fn names(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .filter_map(|i| i["metadata"]["name"].as_str().map(String::from))
        .collect()
}

async fn membership_of(
    admin: &kube::Client,
    project: &str,
    user: &str,
) -> Option<ProjectMembership> {
    let api: Api<ProjectMembership> = Api::namespaced(admin.clone(), project);
    api.list(&Default::default())
        .await
        .ok()?
        .items
        .into_iter()
        .find(|m| m.spec.subject.name == user)
}

/// A customer owned by `owner` and a project of it, Ready, with `manager` as its Manager.
async fn customer_and_project(
    env: &Env,
    customer: &str,
    owner: &str,
    project_name: &str,
    manager: &str,
) -> TestResult {
    let admin = env.client().await;
    Api::<Customer>::all(admin.clone())
        .create(&pp(), &customer_obj(customer, owner))
        .await?;
    wait_access(env, owner, "create", "projects.tenancy.dev", None, true).await?;
    Api::<Project>::all(admin.clone())
        .create(
            &pp(),
            &project(
                project_name,
                json!({"customer": customer, "endDate": "2027-06-30"}),
            ),
        )
        .await?;
    wait_finalizer(&admin, project_name).await?;
    wait_access(env, owner, "list", "pods", Some(project_name), true).await?;
    let m: ProjectMembership = from_json(json!({
        "apiVersion": "tenancy.dev/v1alpha1", "kind": "ProjectMembership",
        "metadata": {"name": "manager", "namespace": project_name},
        "spec": {"subject": {"kind": "User", "name": manager}, "role": "Manager"},
    }));
    Api::<ProjectMembership>::namespaced(admin.clone(), project_name)
        .create(&pp(), &m)
        .await?;
    wait_access(
        env,
        manager,
        "create",
        "projectmemberships.tenancy.dev",
        Some(project_name),
        true,
    )
    .await?;
    // The views follow a new role within a moment of the RBAC: wait until the manager's list
    // shows the project, so each trial's first reads check the command, not that moment.
    let listed = format!("project/{project_name}");
    wait_for("the manager to see the project", ACCESS_TIMEOUT, || async {
        let o = run_as(env, Who(manager, &[]), &["projects", "-o", "name"], None).await;
        out(&o).lines().any(|l| l == listed).then_some(())
    })
    .await
}

/// Staff: a user in group tenancy:staff (what the webhook recognises), with the RBAC the
/// chart's `tenancy:staff` ClusterRole gives (the suite's local install does not apply
/// staff.yaml, so cluster-admin stands in for it, as in the lifecycle trials).
async fn staff_user(env: &Env, user: &str) -> TestResult {
    let admin = env.client().await;
    Api::<ClusterRoleBinding>::all(admin)
        .create(
            &pp(),
            &from_json(json!({
                "metadata": {"name": format!("{user}-staff")},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
                "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
            })),
        )
        .await?;
    wait_access_as(
        env,
        user,
        &[STAFF_GROUP],
        "create",
        "projects.tenancy.dev",
        None,
        true,
    )
    .await
}

fn customer_obj(name: &str, owner: &str) -> Customer {
    customer(name, json!({"owners": owners(&[owner])}))
}

async fn projects_members_and_dates(env: Arc<Env>) -> TestResult {
    let tag = unique_name("plug");
    let (cust, cust2, name) = (
        format!("{tag}-acme"),
        format!("{tag}-globex"),
        format!("{tag}-genomics"),
    );
    let (owner, manager, member, stranger, staff) = (
        format!("{tag}-olga"),
        format!("{tag}-mia"),
        format!("{tag}-max"),
        format!("{tag}-sam"),
        format!("{tag}-stella"),
    );
    let admin = env.client().await;
    customer_and_project(&env, &cust, &owner, &name, &manager).await?;
    staff_user(&env, &staff).await?;
    Api::<Customer>::all(admin.clone())
        .create(&pp(), &customer_obj(&cust2, &owner))
        .await?;
    let as_owner = Who(&owner, &[]);
    let as_manager = Who(&manager, &[]);
    let as_member = Who(&member, &[]);
    let as_stranger = Who(&stranger, &[]);
    let staff_groups = [STAFF_GROUP];
    let as_staff = Who(&staff, &staff_groups);
    let mut c = Checks::default();

    // projects: each sees what is theirs, with their roles.
    let started = Instant::now();
    let o = run_as(&env, as_manager, &["projects", "-o", "json"], None).await;
    let listed = items(&o)?;
    eprintln!(
        "[e2e] kubectl tenancy projects -o json as a manager: {:.2} s",
        started.elapsed().as_secs_f64()
    );
    let mine = listed
        .iter()
        .find(|p| p["metadata"]["name"] == name.as_str());
    c.check(
        "projects as the manager lists the project with role Manager",
        mine.is_some_and(|p| p["access"]["roles"] == json!(["Manager"])),
        format!("{:?}", mine),
    );
    let o = run_as(&env, as_stranger, &["projects", "-o", "json"], None).await;
    c.check(
        "projects as a stranger does not list it",
        !names(&items(&o)?).contains(&name),
        shown(&o),
    );
    let o = run_as(
        &env,
        as_staff,
        &["projects", "--customer", &cust, "-o", "name"],
        None,
    )
    .await;
    c.equal(
        "projects --customer as staff",
        out(&o),
        format!("project/{name}\n"),
    );
    let o = run_as(
        &env,
        as_owner,
        &[
            "projects",
            "--can-manage",
            "--conceal-finished",
            "--customer",
            &format!("{cust},{cust2}"),
            "--created-after",
            "1h",
            "--order-by",
            "-created",
            "--query",
            &name,
        ],
        None,
    )
    .await;
    c.check(
        "projects with every filter as the owner: a table with the project and its role",
        o.status.success()
            && out(&o).starts_with("NAME")
            && out(&o).contains(&name)
            && out(&o).contains("CustomerOwner"),
        shown(&o),
    );
    let o = run_as(
        &env,
        as_manager,
        &["projects", "--can-admin", "-o", "name"],
        None,
    )
    .await;
    c.check(
        "projects --can-admin as the manager (no Administrator role) lists nothing",
        o.status.success() && !out(&o).contains(&name),
        shown(&o),
    );

    // add-member: a manager adds a Member, never a Manager; a stranger adds nobody.
    ran(
        &mut c,
        &env,
        as_manager,
        &[
            "add-member",
            &name,
            &member,
            "--role",
            "Member",
            "--until",
            "30d",
        ],
        "add-member Member as the manager",
    )
    .await;
    let m = membership_of(&admin, &name, &member).await;
    let until = m
        .as_ref()
        .and_then(|m| m.spec.expiration_time.clone())
        .map(|t| t.0);
    let in_30d = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24 * 30);
    c.check(
        "the membership is a Member until about 30 days from now",
        m.as_ref().is_some_and(|m| m.spec.role.as_str() == "Member")
            && until.is_some_and(|u| (in_30d.duration_since(u).as_secs()).abs() < 600),
        format!("{:?}", m.map(|m| m.spec)),
    );
    c.outcome(
        "the member may list pods (SubjectAccessReview)",
        wait_access(&env, &member, "list", "pods", Some(&name), true).await,
    );
    refused(
        &mut c,
        &env,
        as_manager,
        &["add-member", &name, &stranger, "--role", "Manager"],
        "add-member Manager as the manager is refused by the webhook",
        "denied the request",
    )
    .await;
    refused(
        &mut c,
        &env,
        as_stranger,
        &["add-member", &name, &stranger, "--role", "Member"],
        "add-member as a stranger is refused",
        "forbidden",
    )
    .await;
    c.check(
        "neither refused add-member made a membership",
        membership_of(&admin, &name, &stranger).await.is_none(),
        "",
    );

    // members: who holds which role, for those who may see the project. The views follow the
    // member's new role a moment after RBAC does (an index build at most four times a second,
    // longer on a loaded machine): wait for it, so the check is of the command.
    let listed = format!("project/{name}");
    wait_for("the member to see the project", ACCESS_TIMEOUT, || async {
        let o = run_as(&env, as_member, &["projects", "-o", "name"], None).await;
        out(&o).lines().any(|l| l == listed).then_some(())
    })
    .await?;
    let o = run_as(&env, as_member, &["members", &name, "-o", "json"], None).await;
    let subjects: Vec<(String, String)> = items(&o)?
        .iter()
        .map(|m| {
            (
                m["subject"]["name"].as_str().unwrap_or("").to_string(),
                m["role"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    c.check(
        "members as the member lists the manager and the member with their roles",
        subjects.contains(&(manager.clone(), "Manager".into()))
            && subjects.contains(&(member.clone(), "Member".into())),
        format!("{subjects:?}"),
    );
    let o = run_as(
        &env,
        as_owner,
        &[
            "members",
            "--customer",
            &cust,
            "--role",
            "Member",
            "-o",
            "json",
        ],
        None,
    )
    .await;
    c.check(
        "members --customer --role Member as the owner lists the member only",
        names(&items(&o)?).len() == 1 && out(&o).contains(&member),
        shown(&o),
    );
    refused(
        &mut c,
        &env,
        as_stranger,
        &["members", &name],
        "members as a stranger says the project is not one they may see",
        "not one you may see",
    )
    .await;

    // expire: a time in the past ends the role; --never makes it permanent again.
    ran(
        &mut c,
        &env,
        as_manager,
        &["expire", &name, &member, "--at", "2020-01-01"],
        "expire --at a past date as the manager",
    )
    .await;
    c.outcome(
        "the member lost access at once (SubjectAccessReview)",
        wait_access(&env, &member, "list", "pods", Some(&name), false).await,
    );
    let started = Instant::now();
    ran(
        &mut c,
        &env,
        as_manager,
        &["expire", &name, &member, "--never"],
        "expire --never as the manager",
    )
    .await;
    let m = membership_of(&admin, &name, &member).await;
    c.check(
        "expire --never left no expirationTime (a permanent role)",
        m.as_ref().is_some_and(|m| m.spec.expiration_time.is_none()),
        format!("{:?}", m.map(|m| m.spec)),
    );
    c.outcome(
        "the member has access again",
        wait_access(&env, &member, "list", "pods", Some(&name), true).await,
    );
    eprintln!(
        "[e2e] kubectl tenancy expire --never to access granted again: {:.2} s",
        started.elapsed().as_secs_f64()
    );
    // At once, without waiting for the views to follow the role: the member may read the
    // project's memberships, so the refusal is the apiserver's, not "not one you may see".
    refused(
        &mut c,
        &env,
        as_member,
        &["expire", &name, &member, "--at", "1d"],
        "expire as the member (not a manager) is refused",
        "forbidden",
    )
    .await;

    // end and extend: the project's end date, as the portal's managers set it.
    ran(
        &mut c,
        &env,
        as_manager,
        &["end", &name, "--on", "2027-01-31"],
        "end --on as the manager",
    )
    .await;
    refused(
        &mut c,
        &env,
        as_manager,
        &["extend", &name, "--to", "2026-12-01"],
        "extend --to an earlier date is refused naming the current end date",
        "not after the current end date 2027-01-31",
    )
    .await;
    ran(
        &mut c,
        &env,
        as_manager,
        &["extend", &name, "--to", "2027-12-31"],
        "extend --to as the manager",
    )
    .await;
    let p = Api::<Project>::all(admin.clone()).get(&name).await?;
    c.equal(
        "the end date is the extended one",
        p.spec.end_date.as_deref(),
        Some("2027-12-31"),
    );
    refused(
        &mut c,
        &env,
        as_member,
        &["end", &name, "--on", "2026-12-01"],
        "end as the member is refused",
        "forbidden",
    )
    .await;

    // usage: a List that parses, and a table with its per-day chart where there are months.
    let o = run_as(&env, as_manager, &["usage", &name, "-o", "json"], None).await;
    let months = items(&o)?;
    let o = run_as(&env, as_manager, &["usage", &name], None).await;
    c.check(
        "usage as the manager: a table and a per-day chart for each month shown",
        o.status.success()
            && (months.is_empty()
                || (out(&o).contains("CPU CORE-HOURS") && out(&o).contains("cpu core-hours"))),
        shown(&o),
    );
    eprintln!(
        "[e2e] kubectl tenancy usage: {} month(s) for a new project",
        months.len()
    );
    refused(
        &mut c,
        &env,
        as_stranger,
        &["usage", &name],
        "usage as a stranger says the project is not one they may see",
        "not one you may see",
    )
    .await;

    // remove-member.
    ran(
        &mut c,
        &env,
        as_manager,
        &["remove-member", &name, &member],
        "remove-member as the manager",
    )
    .await;
    c.outcome(
        "the removed member lost access",
        wait_access(&env, &member, "list", "pods", Some(&name), false).await,
    );

    // move: staff only; the owner is refused and nothing moves.
    refused(
        &mut c,
        &env,
        as_owner,
        &["move", &name, "--to", &cust2],
        "move as the owner is refused (staff only)",
        "staff-only",
    )
    .await;
    ran(
        &mut c,
        &env,
        as_staff,
        &["move", &name, "--to", &cust2],
        "move as staff",
    )
    .await;
    let p = Api::<Project>::all(admin.clone()).get(&name).await?;
    c.check(
        "the project belongs to the new customer and keeps its team",
        p.spec.customer == cust2 && p.spec.preserve_permissions_on_move == Some(true),
        format!(
            "{:?}",
            (p.spec.customer, p.spec.preserve_permissions_on_move)
        ),
    );
    c.outcome(
        "the manager keeps access after the move",
        wait_access(
            &env,
            &manager,
            "create",
            "deployments.apps",
            Some(&name),
            true,
        )
        .await,
    );
    c.finish("kubectl tenancy: projects, members, dates and move, by role")
}

async fn delete_and_recover(env: Arc<Env>) -> TestResult {
    let tag = unique_name("plugdel");
    let (cust, name) = (format!("{tag}-acme"), format!("{tag}-lab"));
    let (owner, manager, alice, bob, staff) = (
        format!("{tag}-olga"),
        format!("{tag}-mia"),
        format!("{tag}-alice"),
        format!("{tag}-bob"),
        format!("{tag}-stella"),
    );
    let admin = env.client().await;
    customer_and_project(&env, &cust, &owner, &name, &manager).await?;
    staff_user(&env, &staff).await?;
    let as_owner = Who(&owner, &[]);
    let staff_groups = [STAFF_GROUP];
    let as_staff = Who(&staff, &staff_groups);
    let mut c = Checks::default();
    for (who, role) in [(&alice, "Member"), (&bob, "Administrator")] {
        let o = run_as(
            &env,
            as_owner,
            &["add-member", &name, who, "--role", role],
            None,
        )
        .await;
        c.check(
            &format!("add-member {role} as the owner"),
            o.status.success(),
            shown(&o),
        );
    }
    c.waited(
        "the team has access",
        wait_access(&env, &bob, "create", "deployments.apps", Some(&name), true).await,
    )?;

    // A Deployment runs: the delete is refused, saying what runs and how to remove it.
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), &name);
    deployments.create(&pp(), &deployment("web")).await?;
    wait_project(&admin, &name, "counts the Deployment", |p| {
        (p.status.as_ref()?.resource_counts.get("deployments.apps") == Some(&1)).then_some(())
    })
    .await?;
    let o = run_as(&env, Who(&alice, &[]), &["delete", &name], None).await;
    c.check(
        "delete as a member is refused",
        !o.status.success() && err(&o).contains("forbidden"),
        shown(&o),
    );
    let o = run_as(&env, as_owner, &["delete", &name], None).await;
    c.check(
        "delete with a Deployment running lists it and the command that removes it",
        !o.status.success()
            && err(&o).contains("deployments.apps: 1")
            && err(&o).contains(&format!("kubectl delete deployments.apps --all -n {name}")),
        shown(&o),
    );
    deployments.delete("web", &DeleteParams::default()).await?;
    wait_project(&admin, &name, "counts no resources", |p| {
        (p.status.as_ref()?.resources_count == Some(0)).then_some(())
    })
    .await?;
    ran(
        &mut c,
        &env,
        as_owner,
        &["delete", &name],
        "delete as the owner once nothing runs",
    )
    .await;
    c.waited(
        "the project is gone (soft delete done)",
        wait_project_gone(&admin, &name).await,
    )?;
    c.outcome(
        "the team lost access",
        wait_access(&env, &alice, "list", "pods", Some(&name), false).await,
    );
    // The views list the archive within a moment of the soft delete.
    let listed = terminated_item(&env, as_owner, &name).await;
    c.outcome(
        "projects --include-terminated as the owner lists it as Terminated",
        listed.map(|(listed, _)| listed),
    );

    // recover --restore-team: staff only; the owner is refused and nothing is created.
    refused(
        &mut c,
        &env,
        as_owner,
        &["recover", &name, "--restore-team"],
        "recover --restore-team as the owner is refused (staff only)",
        "restoreTeamMembers",
    )
    .await;
    c.check(
        "the refused recovery created no project",
        Api::<Project>::all(admin.clone())
            .get_opt(&name)
            .await?
            .is_none(),
        "",
    );
    let started = Instant::now();
    ran(
        &mut c,
        &env,
        as_staff,
        &[
            "recover",
            &name,
            "--restore-team",
            "--end-date",
            "2027-09-30",
        ],
        "recover --restore-team as staff",
    )
    .await;
    let p = Api::<Project>::all(admin.clone()).get_opt(&name).await?;
    c.check(
        "the recovered project has the archived customer, the new end date and restoreTeamMembers",
        p.as_ref().is_some_and(|p| {
            p.spec.customer == cust
                && p.spec.end_date.as_deref() == Some("2027-09-30")
                && p.spec
                    .recovery
                    .as_ref()
                    .and_then(|r| r.restore_team_members)
                    == Some(true)
        }),
        format!("{:?}", p.map(|p| p.spec)),
    );
    for (who, verb, resource) in [
        (&alice, "list", "pods"),
        (&bob, "create", "deployments.apps"),
        (&manager, "create", "projectmemberships.tenancy.dev"),
    ] {
        c.outcome(
            &format!("{who} has their role back ({verb} {resource})"),
            wait_access(&env, who, verb, resource, Some(&name), true).await,
        );
    }
    eprintln!(
        "[e2e] kubectl tenancy recover --restore-team to the team's access back: {:.2} s",
        started.elapsed().as_secs_f64()
    );
    c.finish("kubectl tenancy: delete and recover")
}

/// The phase of a project's membership of `user`, as stored.
async fn membership_phase(admin: &kube::Client, project: &str, user: &str) -> Option<String> {
    let m = membership_of(admin, project, user).await?;
    Some(format!("{:?}", m.status?.phase?))
}

async fn wait_membership_phase(
    admin: &kube::Client,
    project: &str,
    user: &str,
    phase: &str,
) -> TestResult {
    wait_for(
        &format!("{user}'s membership in {project} to be {phase}"),
        RECONCILE_TIMEOUT,
        || async {
            (membership_phase(admin, project, user).await.as_deref() == Some(phase)).then_some(())
        },
    )
    .await
}

/// An owner (not staff) recovers a deleted project of a customer with a quota and a checklist:
/// `recover` takes the archived spec from the views (the owner may not read the namespace), so
/// the webhook admits it with its quota and answers; the previous team is invited and each
/// member accepts with `accept`. A previous member and a stranger may recover nothing.
async fn owner_recovers_and_invited_accept(env: Arc<Env>) -> TestResult {
    let tag = unique_name("plugrec");
    let (list, cust, name) = (
        format!("{tag}-dp"),
        format!("{tag}-acme"),
        format!("{tag}-lab"),
    );
    let (owner, alice, bob, carol, stranger) = (
        format!("{tag}-olga"),
        format!("{tag}-alice"),
        format!("{tag}-bob"),
        format!("{tag}-carol"),
        format!("{tag}-sam"),
    );
    let admin = env.client().await;
    let checklist: Checklist = from_json(json!({
        "apiVersion": "tenancy.dev/v1alpha1", "kind": "Checklist",
        "metadata": {"name": list},
        "spec": {"questions": [
            {"id": "personal-data", "description": "Will the project process personal data?",
             "type": "Boolean", "required": true},
        ]},
    }));
    Api::<Checklist>::all(admin.clone())
        .create(&pp(), &checklist)
        .await?;
    Api::<Customer>::all(admin.clone())
        .create(
            &pp(),
            &customer(
                &cust,
                json!({"owners": owners(&[&owner]), "projectChecklist": list,
                       "quota": {"hard": {"requests.cpu": "4"}}}),
            ),
        )
        .await?;
    wait_access(&env, &owner, "create", "projects.tenancy.dev", None, true).await?;
    // Created by staff (the suite's admin), with a staff note the owner could not set.
    Api::<Project>::all(admin.clone())
        .create(
            &pp(),
            &project(
                &name,
                json!({"customer": cust, "displayName": "The lab", "endDate": "2027-06-30",
                       "quota": {"hard": {"requests.cpu": "2"}},
                       "limitRange": {"default": {"cpu": "500m"}},
                       "checklistAnswers": {"personal-data": false},
                       "staffNotes": "billed separately"}),
            ),
        )
        .await?;
    wait_finalizer(&admin, &name).await?;
    wait_access(&env, &owner, "list", "pods", Some(&name), true).await?;
    let as_owner = Who(&owner, &[]);
    let as_alice = Who(&alice, &[]);
    let as_stranger = Who(&stranger, &[]);
    let mut c = Checks::default();
    for (who, role) in [(&alice, "Member"), (&bob, "Administrator")] {
        let o = run_as(
            &env,
            as_owner,
            &["add-member", &name, who, "--role", role],
            None,
        )
        .await;
        c.check(
            &format!("add-member {role} as the owner"),
            o.status.success(),
            shown(&o),
        );
    }

    // A role given a moment ago is found at once (the memberships are read from the API, the
    // views may not have it yet): add, change and remove in a row.
    ran(
        &mut c,
        &env,
        as_owner,
        &["add-member", &name, &carol, "--role", "Member"],
        "add-member carol as the owner",
    )
    .await;
    ran(
        &mut c,
        &env,
        as_owner,
        &["expire", &name, &carol, "--at", "30d"],
        "expire right after add-member finds the new membership",
    )
    .await;
    let until = membership_of(&admin, &name, &carol)
        .await
        .and_then(|m| m.spec.expiration_time)
        .map(|t| t.0);
    let in_30d = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24 * 30);
    c.check(
        "carol's role ends about 30 days from now",
        until.is_some_and(|u| in_30d.duration_since(u).as_secs().abs() < 600),
        format!("{until:?}"),
    );
    ran(
        &mut c,
        &env,
        as_owner,
        &["remove-member", &name, &carol],
        "remove-member right after expire",
    )
    .await;
    c.check(
        "carol's membership is gone",
        membership_of(&admin, &name, &carol).await.is_none(),
        "",
    );

    c.waited(
        "the team has access",
        wait_access(&env, &bob, "create", "deployments.apps", Some(&name), true).await,
    )?;
    ran(
        &mut c,
        &env,
        as_owner,
        &["delete", &name],
        "delete as the owner",
    )
    .await;
    c.waited(
        "the project is gone (soft delete done)",
        wait_project_gone(&admin, &name).await,
    )?;
    c.outcome(
        "the team lost access",
        wait_access(&env, &alice, "list", "pods", Some(&name), false).await,
    );

    // The owner's view of the deleted project carries its spec as archived.
    let item = terminated_item(&env, as_owner, &name)
        .await
        .map(|(_, item)| item);
    c.check(
        "the owner's Terminated item carries the archived spec (quota, limits, answers)",
        item.as_ref().is_ok_and(|i| {
            let spec = &i["status"]["terminated"]["spec"];
            spec["quota"] == json!({"hard": {"requests.cpu": "2"}})
                && spec["limitRange"] == json!({"default": {"cpu": "500m"}})
                && spec["checklistAnswers"] == json!({"personal-data": false})
        }),
        format!("{:?}", item.as_ref().map(|i| &i["status"]["terminated"])),
    );

    // A previous member and a stranger recover nothing.
    for (who, as_who) in [("a previous member", as_alice), ("a stranger", as_stranger)] {
        let o = run_as(&env, as_who, &["recover", &name, "--invite"], None).await;
        c.check(
            &format!("recover as {who} is refused: no deleted project they may recover"),
            !o.status.success() && err(&o).contains("no deleted project"),
            shown(&o),
        );
    }
    c.check(
        "the refused recoveries created no project",
        Api::<Project>::all(admin.clone())
            .get_opt(&name)
            .await?
            .is_none(),
        "",
    );

    // The owner recovers it, inviting the team.
    let started = Instant::now();
    let o = run_as(
        &env,
        as_owner,
        &["recover", &name, "--invite", "--end-date", "2027-09-30"],
        None,
    )
    .await;
    c.check(
        "recover --invite as the owner, saying the staff note was left out",
        o.status.success()
            && out(&o).contains("previous team invited")
            && out(&o).contains("spec.staffNotes")
            && !out(&o).contains("set its quota"),
        shown(&o),
    );
    let p = Api::<Project>::all(admin.clone()).get_opt(&name).await?;
    c.check(
        "the recovered project has the archived quota, limits and answers, the new end date and invitations",
        p.as_ref().is_some_and(|p| {
            let s = json!(p.spec);
            s["customer"] == cust.as_str()
                && s["displayName"] == "The lab"
                && s["endDate"] == "2027-09-30"
                && s["quota"] == json!({"hard": {"requests.cpu": "2"}})
                && s["limitRange"] == json!({"default": {"cpu": "500m"}})
                && s["checklistAnswers"] == json!({"personal-data": false})
                && s["recovery"] == json!({"sendInvitationsToPreviousMembers": true})
                && s.get("staffNotes").is_none()
        }),
        format!("{:?}", p.as_ref().map(|p| json!(p.spec))),
    );
    c.outcome(
        "the recovered project is Active",
        wait_project(&admin, &name, "phase Active", |p| {
            (p.status.as_ref()?.phase? == tenancy_operator::api::ProjectPhase::Active).then_some(())
        })
        .await,
    );
    eprintln!(
        "[e2e] kubectl tenancy recover --invite as an owner to the project Active: {:.2} s",
        started.elapsed().as_secs_f64()
    );
    let quotas: Api<ResourceQuota> = Api::namespaced(admin.clone(), &name);
    c.outcome(
        "the namespace's ResourceQuota holds the archived requests.cpu 2 again",
        wait_for(
            "ResourceQuota tenancy-quota with requests.cpu 2",
            RECONCILE_TIMEOUT,
            || async {
                let q = quotas.get_opt("tenancy-quota").await.ok().flatten()?;
                let hard = q.spec?.hard?;
                (hard.get("requests.cpu").map(|v| v.0.as_str()) == Some("2")
                    && hard.get("pods").is_none_or(|v| v.0 != "0"))
                .then_some(())
            },
        )
        .await,
    );
    for who in [&alice, &bob] {
        c.outcome(
            &format!("{who}'s membership is a pending invitation"),
            wait_membership_phase(&admin, &name, who, "Pending").await,
        );
    }
    c.check(
        "a pending invitation grants nothing (SubjectAccessReview)",
        !env.can_i(&alice, &[], "list", "pods", Some(&name)).await,
        "",
    );

    // accept: a user with no invitation is told so; alice accepts hers and gets her role.
    let o = run_as(&env, as_stranger, &["accept", &name], None).await;
    c.check(
        "accept as a stranger says they have no pending invitation there",
        !o.status.success()
            && err(&o).contains(&format!(
                "{stranger} has no pending invitation in project {name}"
            )),
        shown(&o),
    );
    // The invitation's RBAC (patch on exactly the membership) follows the Pending phase.
    c.outcome(
        "alice may patch her membership (her invitation)",
        wait_access_named(
            &env,
            &alice,
            "patch",
            "projectmemberships.tenancy.dev",
            &membership_name_of(&admin, &name, &alice).await,
            Some(&name),
            true,
        )
        .await,
    );
    let started = Instant::now();
    let o = run_as(&env, as_alice, &["accept", &name], None).await;
    c.check(
        "accept as the invited alice",
        o.status.success() && out(&o).contains("accepted: Member"),
        shown(&o),
    );
    c.outcome(
        "alice has her role back (SubjectAccessReview)",
        wait_access(&env, &alice, "list", "pods", Some(&name), true).await,
    );
    eprintln!(
        "[e2e] kubectl tenancy accept to the role granted: {:.2} s",
        started.elapsed().as_secs_f64()
    );
    c.outcome(
        "alice's membership is Active",
        wait_membership_phase(&admin, &name, &alice, "Active").await,
    );
    c.equal(
        "bob's invitation is still pending (alice accepted only hers)",
        membership_phase(&admin, &name, &bob).await,
        Some("Pending".to_string()),
    );
    c.check(
        "bob has no access until he accepts",
        !env.can_i(&bob, &[], "list", "pods", Some(&name)).await,
        "",
    );
    c.finish("kubectl tenancy: an owner's recovery and accepting an invitation")
}

/// The name of `user`'s membership in `project` (empty if none).
async fn membership_name_of(admin: &kube::Client, project: &str, user: &str) -> String {
    membership_of(admin, project, user)
        .await
        .and_then(|m| m.metadata.name)
        .unwrap_or_default()
}

async fn checklist_dialogue(env: Arc<Env>) -> TestResult {
    let tag = unique_name("plugcl");
    let (list, cust, owner, stranger) = (
        format!("{tag}-dp"),
        format!("{tag}-acme"),
        format!("{tag}-olga"),
        format!("{tag}-sam"),
    );
    let admin = env.client().await;
    let checklist: Checklist = from_json(json!({
        "apiVersion": "tenancy.dev/v1alpha1", "kind": "Checklist",
        "metadata": {"name": list},
        "spec": {"questions": [
            {"id": "personal-data", "description": "Will the project process personal data?",
             "type": "Boolean", "required": true},
            {"id": "data-categories", "description": "Which categories of personal data?",
             "type": "MultiSelect", "required": true,
             "options": [{"id": "contact", "label": "Contact details"}, {"id": "health", "label": "Health data"}],
             "dependencies": [{"question": "personal-data", "operator": "Equals", "value": true}]},
            {"id": "export-control", "description": "Is any of the work export-controlled?",
             "type": "SingleSelect", "required": true,
             "options": [{"id": "no", "label": "No"}, {"id": "dual-use", "label": "Dual use"}, {"id": "military", "label": "Military"}],
             "userGuidance": "Talk to the export control office first.",
             "guidanceAnswerValue": ["dual-use", "military"], "guidanceOperator": "In"},
            {"id": "export-licence", "description": "Export licence number", "type": "Text",
             "required": true, "dependencyLogicOperator": "Or",
             "dependencies": [{"question": "export-control", "operator": "Equals", "value": "dual-use"},
                              {"question": "export-control", "operator": "Equals", "value": "military"}]},
        ]},
    }));
    Api::<Checklist>::all(admin.clone())
        .create(&pp(), &checklist)
        .await?;
    Api::<Customer>::all(admin.clone())
        .create(
            &pp(),
            &customer(
                &cust,
                json!({"owners": owners(&[&owner]), "projectChecklist": list}),
            ),
        )
        .await?;
    wait_access(&env, &owner, "create", "projects.tenancy.dev", None, true).await?;
    let as_owner = Who(&owner, &[]);
    let mut c = Checks::default();

    let o = run_as(&env, as_owner, &["checklist", &cust], None).await;
    let lines: Vec<String> = out(&o).lines().map(String::from).collect();
    c.check(
        "checklist lists the questions asked first on top, the follow-ups after with their condition",
        o.status.success()
            && lines.len() == 5
            && lines[1].starts_with("personal-data")
            && lines[2].starts_with("export-control")
            && lines[3].starts_with("data-categories")
            && lines[3].contains("when personal-data Equals true"),
        shown(&o),
    );
    let o = run_as(&env, as_owner, &["checklist", &cust, "-o", "json"], None).await;
    let parsed: Result<Value, _> = serde_json::from_slice(&o.stdout);
    c.check(
        "checklist -o json parses as the Checklist",
        parsed
            .as_ref()
            .is_ok_and(|v| v["spec"]["questions"].as_array().map(Vec::len) == Some(4)),
        shown(&o),
    );

    // The dialogue, answers piped one a line: no personal data, dual use, a licence number.
    let name = format!("{tag}-cohort");
    let o = run_as(
        &env,
        as_owner,
        &[
            "new-project",
            &name,
            "--customer",
            &cust,
            "--display-name",
            "Cohort",
        ],
        Some("no\n2\nEL-7\n"),
    )
    .await;
    c.check(
        "new-project with piped answers creates the project and shows the guidance",
        o.status.success() && err(&o).contains("Talk to the export control office first."),
        shown(&o),
    );
    let p = Api::<Project>::all(admin.clone()).get_opt(&name).await?;
    c.check(
        "the project holds the answers given, in the checklist's terms",
        p.as_ref().is_some_and(|p| {
            json!(p.spec.checklist_answers)
                == json!({"personal-data": false, "export-control": "dual-use", "export-licence": "EL-7"})
        }),
        format!("{:?}", p.map(|p| p.spec.checklist_answers)),
    );
    c.outcome(
        "the project admitted by the webhook becomes Active with its namespace",
        wait_project(&admin, &name, "phase Active", |p| {
            (p.status.as_ref()?.phase? == tenancy_operator::api::ProjectPhase::Active).then_some(())
        })
        .await,
    );

    // --dry-run -o yaml writes the manifest and creates nothing.
    let dry = format!("{tag}-dry");
    let o = run_as(
        &env,
        as_owner,
        &[
            "new-project",
            &dry,
            "--customer",
            &cust,
            "--dry-run",
            "-o",
            "yaml",
        ],
        Some("yes\nhealth\nno\n"),
    )
    .await;
    let manifest: Result<Value, _> = serde_yaml::from_slice(&o.stdout);
    c.check(
        "new-project --dry-run -o yaml prints a Project manifest with the answers",
        manifest.as_ref().is_ok_and(|m| {
            m["kind"] == "Project"
                && m["spec"]["checklistAnswers"]
                    == json!({"personal-data": true, "data-categories": ["health"], "export-control": "no"})
        }),
        shown(&o),
    );
    c.check(
        "the dry run created nothing",
        Api::<Project>::all(admin.clone())
            .get_opt(&dry)
            .await?
            .is_none(),
        "",
    );

    // An answer that does not fit ends the dialogue naming the question; nothing is created.
    let bad = format!("{tag}-bad");
    let o = run_as(
        &env,
        as_owner,
        &["new-project", &bad, "--customer", &cust],
        Some("perhaps\n"),
    )
    .await;
    c.check(
        "a piped answer that does not fit names the question",
        !o.status.success() && err(&o).contains("question personal-data"),
        shown(&o),
    );
    // A stranger is refused (not an owner of the customer).
    let o = run_as(
        &env,
        Who(&stranger, &[]),
        &["new-project", &bad, "--customer", &cust],
        Some("no\nno\n"),
    )
    .await;
    c.check(
        "new-project as a stranger is refused",
        !o.status.success(),
        shown(&o),
    );
    c.check(
        "neither refused new-project created a project",
        Api::<Project>::all(admin.clone())
            .get_opt(&bad)
            .await?
            .is_none(),
        "",
    );
    c.finish("kubectl tenancy: checklist and new-project")
}

async fn conventions(env: Arc<Env>) -> TestResult {
    let tag = unique_name("plugconv");
    let (cust, name, owner, manager) = (
        format!("{tag}-acme"),
        format!("{tag}-lab"),
        format!("{tag}-olga"),
        format!("{tag}-mia"),
    );
    customer_and_project(&env, &cust, &owner, &name, &manager).await?;
    let mut c = Checks::default();
    let kubeconfig = env.kubeconfig().to_path_buf();

    // KUBECONFIG is honoured without --kubeconfig.
    let o = run_program(
        PLUGIN,
        vec![
            "--as".into(),
            manager.clone(),
            "projects".into(),
            "-o".into(),
            "name".into(),
        ],
        None,
        Some(kubeconfig.clone()),
    )
    .await;
    c.equal("KUBECONFIG honoured", out(&o), format!("project/{name}\n"));
    // An unknown context says what to do.
    let o = run_as(
        &env,
        Who(&manager, &[]),
        &["--context", "nowhere", "projects"],
        None,
    )
    .await;
    c.check(
        "--context naming no context is an error naming it",
        !o.status.success() && err(&o).contains("nowhere"),
        shown(&o),
    );
    // Bad input names the flag.
    let o = run_as(
        &env,
        Who(&manager, &[]),
        &["expire", &name, "x", "--at", "soon"],
        None,
    )
    .await;
    c.check(
        "expire --at soon names the flag and the forms it takes",
        !o.status.success() && err(&o).contains("--at \"soon\"") && err(&o).contains("30d"),
        shown(&o),
    );
    // Completion scripts and kubectl's plugin completion.
    let o = run_program(PLUGIN, vec!["completion".into(), "bash".into()], None, None).await;
    c.check(
        "completion bash prints a script",
        o.status.success() && out(&o).contains("kubectl-tenancy"),
        shown(&o),
    );
    let o = run_program(COMPLETE, vec!["ex".into()], None, None).await;
    c.equal(
        "kubectl_complete-tenancy ex",
        out(&o),
        "expire\nextend\n".to_string(),
    );
    let o = run_program(
        COMPLETE,
        vec![
            "--kubeconfig".into(),
            kubeconfig.display().to_string(),
            "--as".into(),
            manager.clone(),
            "members".into(),
            tag.clone(),
        ],
        None,
        None,
    )
    .await;
    c.equal(
        "kubectl_complete-tenancy members <prefix> offers the projects one may see",
        out(&o),
        format!("{name}\n"),
    );
    c.finish("kubectl tenancy: conventions and completion")
}
