//! The lifecycle group: `delete`, `recover`, `move`, `end`, `extend`.

use clap::{ArgGroup, Args};
use jiff::Timestamp;
use jiff::civil::Date;
use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use tenancy_operator::api::project::RecoveryOptions;
use tenancy_operator::api::{Project, ProjectSpec};
use tenancy_operator::lifecycle::archive::Archive;

use crate::client::{self, Connection};
use crate::dates;
use crate::output::{self, Format};

#[derive(Args, Debug)]
pub struct DeleteArgs {
    pub project: String,
}

#[derive(Args, Debug)]
#[command(group(ArgGroup::new("team").args(["restore_team", "invite"])))]
pub struct RecoverArgs {
    pub project: String,
    /// Bring the previous team back as it was (staff only).
    #[arg(long)]
    pub restore_team: bool,
    /// Invite the previous team: each member accepts with `kubectl tenancy accept PROJECT`.
    #[arg(long)]
    pub invite: bool,
    /// The recovered project's end date (a date or a duration from now like 90d).
    #[arg(long, value_name = "D")]
    pub end_date: Option<String>,
}

#[derive(Args, Debug)]
pub struct MoveArgs {
    pub project: String,
    /// The customer to move it to.
    #[arg(long, value_name = "CUSTOMER")]
    pub to: String,
    /// Revoke every membership on the move instead of keeping the team.
    #[arg(long)]
    pub drop_permissions: bool,
}

#[derive(Args, Debug)]
pub struct EndArgs {
    pub project: String,
    /// The last day (a date, an RFC 3339 time or a duration from now like 30d).
    #[arg(long, value_name = "D")]
    pub on: String,
}

#[derive(Args, Debug)]
pub struct ExtendArgs {
    pub project: String,
    /// The new last day, later than the current one.
    #[arg(long, value_name = "D")]
    pub to: String,
}

/// What to say when a delete is refused with 409 because workloads still run: each kind the
/// webhook counted and the command that removes it. Other conflicts are shown as they are.
pub fn conflict_advice(project: &str, message: &str) -> String {
    let counts = message
        .split_once(" active resources (")
        .and_then(|(_, rest)| rest.split_once(')'))
        .map(|(list, _)| list);
    let Some(list) = counts else {
        return message.to_string();
    };
    let mut lines = vec![format!(
        "project {project} cannot be deleted while these still run in it:"
    )];
    let mut width = 0;
    let entries: Vec<(String, String)> = list
        .split(", ")
        .filter_map(|e| e.split_once(": "))
        .map(|(k, n)| (k.trim().to_string(), n.trim().to_string()))
        .collect();
    for (k, n) in &entries {
        width = width.max(k.len() + n.len() + 2);
    }
    for (kind, n) in &entries {
        let item = format!("{kind}: {n}");
        lines.push(format!(
            "  {item:<width$}   kubectl delete {kind} --all -n {project}"
        ));
    }
    lines.push(format!(
        "then run `kubectl tenancy delete {project}` again (the operator needs a moment to see them gone)"
    ));
    lines.join("\n")
}

/// The Project that recovers a deleted one: its spec as archived, with how to bring the team
/// back and, if given, a new end date. Staff's review of its checklist answers is not carried
/// (a recovery is a new admission).
pub fn recovered_project(
    name: &str,
    mut spec: ProjectSpec,
    restore_team: bool,
    invite: bool,
    end_date: Option<Date>,
) -> Project {
    spec.recovery = (restore_team || invite).then(|| RecoveryOptions {
        restore_team_members: restore_team.then_some(true),
        send_invitations_to_previous_members: invite.then_some(true),
    });
    if let Some(d) = end_date {
        spec.end_date = Some(d.to_string());
    }
    spec.checklist_review = None;
    Project::new(name, spec)
}

/// How a recovery's spec was read.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// The namespace's archive (staff).
    Archive,
    /// The archived spec `myprojects` carries (owners and support), without the staff-only
    /// fields it held, which are named.
    View { left_out: Vec<&'static str> },
    /// Only the display fields `myprojects` shows (a views server from before it carried the
    /// archived spec).
    DisplayFields,
}

/// Clears the fields only staff may set on a new Project (the webhook refuses anyone else's
/// recovery carrying them) and names those that were set.
pub fn without_staff_fields(spec: &mut ProjectSpec) -> Vec<&'static str> {
    let mut out = Vec::new();
    if spec.staff_notes.take().is_some() {
        out.push("spec.staffNotes");
    }
    if spec.grace_period_days.take().is_some() {
        out.push("spec.gracePeriodDays");
    }
    if spec.max_service_accounts.take().is_some() {
        out.push("spec.maxServiceAccounts");
    }
    out
}

/// The spec to recover from what `myprojects` shows of a terminated project, for those who may
/// not read the archive itself: the archived spec the item carries (`status.terminated.spec`),
/// less the staff-only fields unless the requester is staff; else (an older views server) its
/// display fields and dates.
pub fn spec_from_view(item: &Value) -> Result<(ProjectSpec, Source), String> {
    let archived = &item["status"]["terminated"]["spec"];
    if archived.is_object() {
        let mut spec: ProjectSpec = tenancy_operator::api::read(archived)
            .map_err(|e| format!("the deleted project's archived spec does not read: {e}"))?;
        let staff = item["access"]["roles"]
            .as_array()
            .is_some_and(|r| r.iter().any(|r| r == "Staff"));
        let left_out = if staff {
            Vec::new()
        } else {
            without_staff_fields(&mut spec)
        };
        return Ok((spec, Source::View { left_out }));
    }
    let mut spec = item["spec"].clone();
    let customer = item["customer"]["name"]
        .as_str()
        .ok_or("the deleted project's item names no customer")?;
    spec["customer"] = json!(customer);
    // `projectType` in the view is `type` in the Project.
    if let Some(t) = spec.get("projectType").cloned() {
        spec["type"] = t;
        spec.as_object_mut().map(|o| o.remove("projectType"));
    }
    Ok((tenancy_operator::api::read(&spec)?, Source::DisplayFields))
}

/// Whether `to` moves an end date later.
pub fn check_extension(current: Option<&str>, to: Date) -> Result<(), String> {
    match current.map(|c| c.parse::<Date>()) {
        Some(Ok(c)) if to <= c => Err(format!(
            "--to {to} is not after the current end date {c}: `kubectl tenancy end PROJECT --on {to}` sets an earlier one"
        )),
        _ => Ok(()),
    }
}

pub async fn delete(conn: &Connection, a: DeleteArgs) -> Result<(), String> {
    let client = client::connect(conn).await?;
    let api: Api<Project> = Api::all(client);
    match api.delete(&a.project, &DeleteParams::default()).await {
        Ok(_) => {
            println!(
                "project {} deleted: its namespace is archived; `kubectl tenancy recover {}` brings it back until it is purged",
                a.project, a.project
            );
            Ok(())
        }
        Err(e) => {
            let (code, message) = client::api_error(&e);
            if code == 409 {
                Err(conflict_advice(&a.project, &message))
            } else {
                Err(client::write_error(
                    &format!("deleting project {}", a.project),
                    &e,
                ))
            }
        }
    }
}

/// The archived spec of a deleted project: the archive itself where the requester may read
/// the namespace (staff), else what `myprojects` carries of it (owners and support).
async fn archived_spec(client: &kube::Client, name: &str) -> Result<(ProjectSpec, Source), String> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    match namespaces.get_opt(name).await {
        Ok(Some(ns)) => {
            if let Some(archive) = Archive::of(&ns) {
                return Ok((archive.spec, Source::Archive));
            }
        }
        Ok(None) => {}
        Err(e) if matches!(client::api_error(&e).0, 401 | 403) => {}
        Err(e) => return Err(client::write_error("reading the archive", &e)),
    }
    let refused = |e: String| {
        if e.contains("terminated projects are listed only") {
            format!(
                "there is no deleted project {name} you may recover: only staff and the owners and support of its customer see and recover deleted projects"
            )
        } else {
            e
        }
    };
    let not_found = || {
        format!(
            "there is no deleted project {name} you may recover (purged, never deleted, or not your customer's): `kubectl tenancy projects --include-terminated` lists those you may"
        )
    };
    let item = client::my_project(client, name, true)
        .await
        .map_err(refused)?
        .ok_or_else(not_found)?;
    spec_from_view(&item)
}

pub async fn recover(conn: &Connection, out: Format, a: RecoverArgs) -> Result<(), String> {
    let end = a
        .end_date
        .as_deref()
        .map(|d| dates::parse_day("--end-date", d, Timestamp::now()))
        .transpose()?;
    let client = client::connect(conn).await?;
    let (spec, source) = archived_spec(&client, &a.project).await?;
    let project = recovered_project(&a.project, spec, a.restore_team, a.invite, end);
    let api: Api<Project> = Api::all(client);
    let created = api
        .create(&PostParams::default(), &project)
        .await
        .map_err(|e| {
            let (code, message) = client::api_error(&e);
            if code == 409 && message.contains("already exists") {
                format!("project {} exists: there is nothing to recover", a.project)
            } else {
                client::write_error(&format!("recovering project {}", a.project), &e)
            }
        })?;
    match out {
        Format::Json | Format::Yaml => output::print_value(
            out,
            &serde_json::to_value(&created).map_err(|e| e.to_string())?,
        ),
        Format::Name => {
            println!("project.tenancy.dev/{}", a.project);
            Ok(())
        }
        _ => {
            let team = if a.restore_team {
                "with its previous team restored"
            } else if a.invite {
                "and its previous team invited (each accepts with `kubectl tenancy accept PROJECT`)"
            } else {
                "without its previous team"
            };
            println!("project {} recovered {team}", a.project);
            match source {
                Source::Archive => {}
                Source::View { left_out } if left_out.is_empty() => {}
                Source::View { left_out } => println!(
                    "note: left out of the recovery because only staff may set them: {} (ask staff to set them again)",
                    left_out.join(", ")
                ),
                Source::DisplayFields => println!(
                    "note: this cluster's views.tenancy.dev does not show the archived spec, so the project was re-created from its display fields, dates and customer: set its quota and limits again if it had any (or upgrade the chart)"
                ),
            }
            Ok(())
        }
    }
}

async fn patch_project(
    conn: &Connection,
    out: Format,
    name: &str,
    patch: Value,
    what: &str,
    done: String,
) -> Result<(), String> {
    let client = client::connect(conn).await?;
    let api: Api<Project> = Api::all(client);
    let p = api
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|e| client::write_error(&format!("{what} project {name}"), &e))?;
    match out {
        Format::Json | Format::Yaml => {
            output::print_value(out, &serde_json::to_value(&p).map_err(|e| e.to_string())?)
        }
        Format::Name => {
            println!("project.tenancy.dev/{name}");
            Ok(())
        }
        _ => {
            println!("{done}");
            Ok(())
        }
    }
}

pub async fn move_to(conn: &Connection, out: Format, a: MoveArgs) -> Result<(), String> {
    let patch = json!({"spec": {
        "customer": a.to,
        "preservePermissionsOnMove": !a.drop_permissions,
    }});
    let team = if a.drop_permissions {
        "every membership revoked"
    } else {
        "its team kept"
    };
    patch_project(
        conn,
        out,
        &a.project,
        patch,
        "moving",
        format!("project {} moved to customer {}, {team}", a.project, a.to),
    )
    .await
}

pub async fn end(conn: &Connection, out: Format, a: EndArgs) -> Result<(), String> {
    let day = dates::parse_day("--on", &a.on, Timestamp::now())?;
    patch_project(
        conn,
        out,
        &a.project,
        json!({"spec": {"endDate": day.to_string()}}),
        "ending",
        format!("project {} ends on {day}", a.project),
    )
    .await
}

pub async fn extend(conn: &Connection, out: Format, a: ExtendArgs) -> Result<(), String> {
    let day = dates::parse_day("--to", &a.to, Timestamp::now())?;
    let client = client::connect(conn).await?;
    // The stored project where the requester may read it (a change made a moment ago counts),
    // else what the views show of it.
    let current = match Api::<Project>::all(client.clone())
        .get_opt(&a.project)
        .await
    {
        Ok(Some(p)) => p.spec.end_date,
        Ok(None) => {
            return Err(format!(
                "project {:?} does not exist (`kubectl tenancy projects` lists yours)",
                a.project
            ));
        }
        Err(_) => {
            let item = client::my_project(&client, &a.project, false)
                .await?
                .ok_or_else(|| {
                    format!(
                        "project {:?} is not one you may see (`kubectl tenancy projects` lists yours)",
                        a.project
                    )
                })?;
            item["spec"]["endDate"].as_str().map(String::from)
        }
    };
    check_extension(current.as_deref(), day)?;
    patch_project(
        conn,
        out,
        &a.project,
        json!({"spec": {"endDate": day.to_string()}}),
        "extending",
        format!("project {} now ends on {day}", a.project),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_delete_says_what_runs_and_how_to_remove_it() {
        let message = "admission webhook \"validate.tenancy.dev\" denied the request: project web has 3 active resources (deployments.apps: 1, pods: 2); delete them first";
        let advice = conflict_advice("web", message);
        assert_eq!(
            advice,
            "project web cannot be deleted while these still run in it:\n  deployments.apps: 1   kubectl delete deployments.apps --all -n web\n  pods: 2               kubectl delete pods --all -n web\nthen run `kubectl tenancy delete web` again (the operator needs a moment to see them gone)"
        );
        let other = "Operation cannot be fulfilled: the object has been modified";
        assert_eq!(conflict_advice("web", other), other);
    }

    #[test]
    fn a_recovery_carries_the_archived_spec_and_says_how_to_bring_the_team() {
        let spec: ProjectSpec = serde_json::from_value(json!({
            "customer": "acme", "displayName": "Genome lab", "endDate": "2026-01-31",
            "quota": {"hard": {"requests.cpu": "2"}},
            "checklistAnswers": {"personal-data": false},
            "checklistReview": {"decision": "Approved"},
        }))
        .unwrap();
        let table = [
            (false, false, None, None),
            (true, false, None, Some((Some(true), None))),
            (false, true, Some("2027-06-30"), Some((None, Some(true)))),
        ];
        for (restore, invite, end, want) in table {
            let p = recovered_project(
                "genomics",
                spec.clone(),
                restore,
                invite,
                end.map(|d| d.parse().unwrap()),
            );
            assert_eq!(p.metadata.name.as_deref(), Some("genomics"));
            assert_eq!(p.spec.customer, "acme");
            assert_eq!(p.spec.quota, spec.quota);
            assert_eq!(p.spec.checklist_answers, spec.checklist_answers);
            assert_eq!(p.spec.checklist_review, None);
            assert_eq!(
                p.spec.end_date.as_deref(),
                Some(end.unwrap_or("2026-01-31"))
            );
            assert_eq!(
                p.spec.recovery.map(|r| (
                    r.restore_team_members,
                    r.send_invitations_to_previous_members
                )),
                want
            );
        }
    }

    #[test]
    fn the_view_of_a_deleted_project_gives_its_archived_spec_less_staff_fields() {
        let archived = json!({
            "customer": "acme", "displayName": "Genome lab", "endDate": "2027-01-31",
            "quota": {"hard": {"requests.cpu": "2"}},
            "limitRange": {"default": {"cpu": "500m"}},
            "checklistAnswers": {"personal-data": false},
            "staffNotes": "VIP", "gracePeriodDays": 3,
        });
        let item = |roles: Value| {
            json!({
                "metadata": {"name": "genomics"},
                "spec": {"displayName": "Genome lab", "endDate": "2027-01-31"},
                "customer": {"name": "acme"},
                "status": {"phase": "Terminated", "terminated": {"spec": archived.clone()}},
                "access": {"roles": roles},
            })
        };
        let (spec, source) = spec_from_view(&item(json!(["CustomerOwner"]))).unwrap();
        assert_eq!(
            source,
            Source::View {
                left_out: vec!["spec.staffNotes", "spec.gracePeriodDays"]
            }
        );
        assert_eq!(spec.customer, "acme");
        assert_eq!(
            json!(spec.quota),
            json!({"hard": {"requests.cpu": "2"}}),
            "the quota is the archived one"
        );
        assert_eq!(json!(spec.limit_range), json!({"default": {"cpu": "500m"}}));
        assert_eq!(
            json!(spec.checklist_answers),
            json!({"personal-data": false})
        );
        assert_eq!(spec.staff_notes, None);
        assert_eq!(spec.grace_period_days, None);
        // Staff keep every field.
        let (spec, source) = spec_from_view(&item(json!(["Staff"]))).unwrap();
        assert_eq!(source, Source::View { left_out: vec![] });
        assert_eq!(spec.staff_notes.as_deref(), Some("VIP"));
        assert_eq!(spec.grace_period_days, Some(3));
        // A bad archived spec says so.
        let mut bad = item(json!(["CustomerOwner"]));
        bad["status"]["terminated"]["spec"] = json!({"displayName": "no customer"});
        assert!(
            spec_from_view(&bad)
                .unwrap_err()
                .contains("archived spec does not read"),
        );
    }

    #[test]
    fn an_older_view_of_a_deleted_project_gives_its_display_fields() {
        let item = json!({
            "metadata": {"name": "genomics"},
            "spec": {"displayName": "Genome lab", "projectType": "research", "endDate": "2027-01-31"},
            "customer": {"name": "acme", "displayName": "ACME"},
            "status": {"phase": "Terminated"},
        });
        let (spec, source) = spec_from_view(&item).unwrap();
        assert_eq!(source, Source::DisplayFields);
        assert_eq!(spec.customer, "acme");
        assert_eq!(spec.display_name.as_deref(), Some("Genome lab"));
        assert_eq!(spec.project_type.as_deref(), Some("research"));
        assert_eq!(spec.end_date.as_deref(), Some("2027-01-31"));
        assert!(spec_from_view(&json!({"spec": {}})).is_err());
    }

    #[test]
    fn an_extension_moves_the_end_date_later() {
        let d = |s: &str| s.parse::<Date>().unwrap();
        assert!(check_extension(Some("2027-01-31"), d("2027-02-01")).is_ok());
        assert!(check_extension(None, d("2027-02-01")).is_ok());
        let err = check_extension(Some("2027-01-31"), d("2027-01-31")).unwrap_err();
        assert!(
            err.contains("not after the current end date 2027-01-31"),
            "{err}"
        );
    }
}
