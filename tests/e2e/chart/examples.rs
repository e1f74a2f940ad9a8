//! The recovery and move examples do what their comments say, not only apply
//! (`foundation::every_example_applies_cleanly` applies them as they are). Their names get a
//! unique prefix here, so this runs next to that test.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tenancy_operator::devcluster::apply::parse_documents;

use super::{
    apply_json, delete_project_and_wait, delete_tenancy, eventually, membership_json, object_where,
    ready_project,
};
use crate::support::{Env, Failed, TestResult, Trial, examples_dir, trial, unique_name};

pub fn trials(env: &Arc<Env>) -> Vec<Trial> {
    vec![trial(
        env,
        "chart::the_recovery_and_move_examples_do_what_they_say",
        the_recovery_and_move_examples_do_what_they_say,
    )]
}

/// The documents of an example file, with `prefix` renamed to `to` everywhere.
fn example(file: &str, prefix: &str, to: &str) -> Result<Vec<Value>, Failed> {
    let text = std::fs::read_to_string(examples_dir().join(file))?.replace(prefix, to);
    Ok(parse_documents(&text)
        .map_err(|e| format!("{file}: {e}"))?
        .into_iter()
        .map(|d| serde_json::to_value(d).unwrap_or_default())
        .collect())
}

fn active(m: &Value) -> Result<(), String> {
    if m["status"]["phase"] == "Active" && !m["status"]["roleBinding"].is_null() {
        Ok(())
    } else {
        Err(format!("status is {}", m["status"]))
    }
}

/// 03-recovery.yaml: its project is created without `spec.recovery`, gets a member, and is
/// deleted (soft delete); applying the example's Project then recovers it with the member
/// restored. 04-move.yaml, applied document by document: the project ends under the second
/// customer, with `status.lastMove` saying from where, the namespace relabelled, the member kept
/// and the old customer's owner replaced by the new one's as Manager.
async fn the_recovery_and_move_examples_do_what_they_say(env: Arc<Env>) -> TestResult {
    let client = env.client().await;
    let mut projects = Vec::new();
    let mut customers = Vec::new();
    let result = async {
        // Recovery.
        let prefix = unique_name("e2e-ex-recovery");
        let docs = example("03-recovery.yaml", "example-recovery", &prefix)?;
        let customer = docs
            .iter()
            .find(|d| d["kind"] == "Customer")
            .ok_or("03-recovery.yaml has no Customer")?;
        let recovering = docs
            .iter()
            .find(|d| d["kind"] == "Project")
            .ok_or("03-recovery.yaml has no Project")?;
        if recovering["spec"]["recovery"]["restoreTeamMembers"] != true {
            return Err("03-recovery.yaml's Project does not restore its team".into());
        }
        let name = recovering["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        apply_json(&client, customer.clone()).await?;
        customers.push(
            customer["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        );
        let mut before = recovering.clone();
        before["spec"]
            .as_object_mut()
            .ok_or("a Project without spec")?
            .remove("recovery");
        apply_json(&client, before).await?;
        projects.push(name.clone());
        ready_project(&client, &name).await?;
        apply_json(
            &client,
            membership_json(&name, "lab-member", "lab-member@example.com", "Member"),
        )
        .await?;
        object_where(
            &client,
            "projectmemberships",
            Some(&name),
            "lab-member",
            "Active",
            Duration::from_secs(30),
            active,
        )
        .await?;
        delete_project_and_wait(&client, &name).await?;
        apply_json(&client, recovering.clone()).await?;
        ready_project(&client, &name).await?;
        object_where(
            &client,
            "projectmemberships",
            Some(&name),
            "lab-member",
            "restored to Active by the recovery",
            Duration::from_secs(30),
            active,
        )
        .await?;

        // Move.
        let prefix = unique_name("e2e-ex-move");
        let docs = example("04-move.yaml", "example-move", &prefix)?;
        let project_docs: Vec<&Value> = docs.iter().filter(|d| d["kind"] == "Project").collect();
        let [first, last] = project_docs[..] else {
            return Err("04-move.yaml should hold the project twice: created, then moved".into());
        };
        let (from, to) = (
            first["spec"]["customer"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            last["spec"]["customer"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        );
        let name = last["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if from == to {
            return Err("04-move.yaml's second Project document moves nothing".into());
        }
        let owner_of = |customer: &str| -> Option<String> {
            docs.iter()
                .find(|d| d["kind"] == "Customer" && d["metadata"]["name"] == customer)
                .and_then(|c| c["spec"]["owners"][0]["name"].as_str().map(str::to_string))
        };
        let (old_owner, new_owner) = (
            owner_of(&from).ok_or("the first customer has no owner")?,
            owner_of(&to).ok_or("the second customer has no owner")?,
        );
        for doc in &docs {
            if doc["kind"] == "Customer" {
                customers.push(
                    doc["metadata"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                );
            }
            apply_json(&client, doc.clone()).await?;
            if doc["kind"] == "Project" && !projects.contains(&name) {
                projects.push(name.clone());
                // As a person would: the project exists under its first customer before the
                // membership in its namespace, and before it moves.
                ready_project(&client, &name).await?;
            }
        }
        object_where(
            &client,
            "projects",
            None,
            &name,
            "moved, with status.lastMove",
            Duration::from_secs(30),
            |p| {
                super::is_ready(p)?;
                let m = &p["status"]["lastMove"];
                if p["status"]["customer"]["name"] == to.as_str()
                    && m["from"] == from.as_str()
                    && m["to"] == to.as_str()
                    && m["preservedPermissions"] == true
                {
                    Ok(())
                } else {
                    Err(format!("status is {}", p["status"]))
                }
            },
        )
        .await?;
        let membership = docs
            .iter()
            .find(|d| d["kind"] == "ProjectMembership")
            .ok_or("04-move.yaml has no membership")?;
        let member = membership["metadata"]["name"].as_str().unwrap_or_default();
        object_where(
            &client,
            "projectmemberships",
            Some(&name),
            member,
            "kept Active through the move",
            Duration::from_secs(30),
            active,
        )
        .await?;
        let ns = kube::Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone())
            .get(&name)
            .await?;
        if kube::ResourceExt::labels(&ns).get("tenancy.dev/customer") != Some(&to) {
            return Err(format!(
                "namespace {name} is labelled {:?} after the move",
                kube::ResourceExt::labels(&ns)
            )
            .into());
        }
        eventually(
            "the new customer's owner to replace the old one's as Manager",
            Duration::from_secs(30),
            || async {
                let old = env
                    .can_i(&old_owner, &[], "create", "deployments.apps", Some(&name))
                    .await;
                let new = env
                    .can_i(&new_owner, &[], "create", "deployments.apps", Some(&name))
                    .await;
                if !old && new {
                    Ok(())
                } else {
                    Err(format!("old owner may: {old}, new owner may: {new}"))
                }
            },
        )
        .await?;
        Ok(())
    }
    .await;
    for p in &projects {
        let _ = delete_project_and_wait(&client, p).await;
    }
    for c in &customers {
        let _ = delete_tenancy(&client, "customers", None, c).await;
    }
    result
}
