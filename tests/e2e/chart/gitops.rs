//! GitOps: the Argo CD health check (examples/gitops/argocd-health.lua) run by a real Lua 5.1
//! interpreter (Argo CD's gopher-lua is Lua 5.1) on statuses the running operator wrote, and
//! the GitOps examples (an Argo CD app of apps with sync waves, Flux Kustomizations with
//! dependsOn) applied layer by layer in their order, each waiting for the previous one to be
//! Healthy as Argo CD and Flux would.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use kube::Client;
use serde_json::{Value, json};
use tenancy_operator::devcluster::apply::parse_documents;

use super::{
    apply_json, customer_json, delete_project_and_wait, delete_tenancy, eventually, get_json,
    membership_json, object_where, project_json, ready_project,
};
use crate::support::{Env, Failed, TestResult, Trial, trial, unique_name};

pub fn trials(env: &Arc<Env>) -> Vec<Trial> {
    vec![
        trial(
            env,
            "chart::the_argocd_health_check_reads_real_statuses",
            the_argocd_health_check_reads_real_statuses,
        ),
        trial(
            env,
            "chart::the_gitops_examples_sync_in_order_and_turn_healthy",
            the_gitops_examples_sync_in_order_and_turn_healthy,
        ),
    ]
}

fn gitops_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/gitops")
}

fn health_script() -> Result<String, Failed> {
    Ok(std::fs::read_to_string(
        gitops_dir().join("argocd-health.lua"),
    )?)
}

/// Runs an Argo CD health script as Argo CD does: the live object as the global `obj`, the
/// script's returned table read as `{status = ..., message = ...}`.
pub fn lua_health(script: &str, object: &Value) -> Result<(String, String), String> {
    use mlua::LuaSerdeExt;
    let lua = mlua::Lua::new();
    let options = mlua::serde::SerializeOptions::new()
        .serialize_none_to_null(false)
        .serialize_unit_to_null(false)
        .set_array_metatable(false);
    let obj = lua
        .to_value_with(object, options)
        .map_err(|e| format!("converting the object: {e}"))?;
    lua.globals()
        .set("obj", obj)
        .map_err(|e| format!("setting obj: {e}"))?;
    let table: mlua::Table = lua
        .load(script)
        .set_name("argocd-health.lua")
        .eval()
        .map_err(|e| format!("the health script failed: {e}"))?;
    let status: String = table
        .get("status")
        .map_err(|e| format!("the health script returned no status: {e}"))?;
    let message: Option<String> = table.get("message").map_err(|e| e.to_string())?;
    Ok((status, message.unwrap_or_default()))
}

/// Whether the script says `want` for `object`; the failure names the object and the verdict.
fn expect_health(script: &str, what: &str, object: &Value, want: &str) -> Result<String, Failed> {
    let (status, message) = lua_health(script, object)?;
    if status != want {
        return Err(format!(
            "{what}: the health check says {status} ({message}), want {want}; status: {}",
            object["status"]
        )
        .into());
    }
    Ok(message)
}

/// One row of the health table: an object in a state the suite produced, and what Flux (the
/// kstatus library) and Argo CD (the health script) must say about it.
struct Row {
    what: String,
    object: Value,
    flux: &'static str,
    argo: &'static str,
}

/// Every state's health, asked of both tools.
struct HealthTable {
    script: String,
    rows: Vec<Row>,
}

impl HealthTable {
    /// Asks the script now (the failure names the object) and keeps the row for kstatus.
    fn add(
        &mut self,
        what: &str,
        object: &Value,
        flux: &'static str,
        argo: &'static str,
    ) -> Result<String, Failed> {
        let message = expect_health(&self.script, what, object, argo)?;
        self.rows.push(Row {
            what: what.to_string(),
            object: object.clone(),
            flux,
            argo,
        });
        Ok(message)
    }

    /// Runs the kstatus library (built from sigs.k8s.io/cli-utils v0.37.2 by
    /// tests/control-plane/build.sh) over every row, prints the table, and fails on any row
    /// where it or the script says other than expected.
    fn check(&self, bin_dir: &Path) -> TestResult {
        let kstatus = bin_dir.join("kstatus-v0.37.2");
        if !kstatus.is_file() {
            return Err(
                format!("no {}: run tests/control-plane/build.sh", kstatus.display()).into(),
            );
        }
        let objects: Vec<&Value> = self.rows.iter().map(|r| &r.object).collect();
        let mut child = std::process::Command::new(&kstatus)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()?;
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().expect("a piped stdin");
            stdin.write_all(serde_json::to_string(&objects)?.as_bytes())?;
        }
        let out = child.wait_with_output()?;
        if !out.status.success() {
            return Err(format!("kstatus failed: {}", String::from_utf8_lossy(&out.stderr)).into());
        }
        let answers: Vec<Value> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(serde_json::from_str)
            .collect::<Result<_, _>>()?;
        if answers.len() != self.rows.len() {
            return Err(format!(
                "kstatus answered {} of {} objects",
                answers.len(),
                self.rows.len()
            )
            .into());
        }
        let mut wrong = Vec::new();
        eprintln!("[e2e] health of every state: kstatus (Flux) | argocd-health.lua (Argo CD)");
        for (row, answer) in self.rows.iter().zip(&answers) {
            let flux = answer["status"].as_str().unwrap_or_default();
            let (argo, message) = lua_health(&self.script, &row.object)?;
            eprintln!(
                "[e2e]   {:<52} | {:<10} | {:<11} | {}",
                row.what, flux, argo, message
            );
            if flux != row.flux || argo != row.argo {
                wrong.push(format!(
                    "{}: kstatus says {flux} ({}), want {}; the script says {argo}, want {}",
                    row.what, answer["message"], row.flux, row.argo
                ));
            }
        }
        if wrong.is_empty() {
            Ok(())
        } else {
            Err(wrong.join("\n").into())
        }
    }
}

/// Each tenancy object the Argo CD health check is asked about, and what it must answer, on
/// statuses written by the suite's operator: Healthy (a Ready project, its customer, an active
/// membership, an expired one), Progressing (a project fresh from the apiserver without status,
/// one whose spec just changed, an invitation not accepted yet) and Degraded (a project named
/// like a namespace made by hand, one whose customer was deleted). argocd-cm.yaml
/// embeds the same script for each kind.
async fn the_argocd_health_check_reads_real_statuses(env: Arc<Env>) -> TestResult {
    let script = health_script()?;
    let cm = std::fs::read_to_string(gitops_dir().join("argocd-cm.yaml"))?;
    let cm: Value = serde_yaml::from_str(&cm)?;
    for kind in ["Customer", "Project", "ProjectMembership"] {
        let key = format!("resource.customizations.health.tenancy.dev_{kind}");
        if cm["data"][&key].as_str() != Some(script.as_str()) {
            return Err(format!("argocd-cm.yaml's {key} is not argocd-health.lua").into());
        }
    }

    let mut table = HealthTable {
        script: script.clone(),
        rows: Vec::new(),
    };
    let client = env.client().await;
    let customer = unique_name("e2e-health");
    let owner = format!("{customer}-owner@example.com");
    apply_json(
        &client,
        customer_json(
            &customer,
            json!({"owners": [{"kind": "User", "name": owner}]}),
        ),
    )
    .await?;
    let mut projects = Vec::new();
    let mut customers = vec![customer.clone()];
    let result = async {
        // A project fresh from the apiserver: no status yet.
        let ready = format!("{customer}-ready");
        let fresh = apply_json(&client, project_json(&ready, json!({"customer": customer}))).await?;
        projects.push(ready.clone());
        let mut fresh = serde_json::to_value(fresh)?;
        fresh.as_object_mut().expect("an object").remove("status");
        // The one state the two tools read apart: with no status at all, kstatus cannot tell a
        // kind that has none and calls it Current; the script waits for the operator's.
        expect_health(&script, "a project without status", &fresh, "Progressing")?;

        let ready_obj = ready_project(&client, &ready).await?;
        table.add("a Ready project", &ready_obj, "Current", "Healthy")?;

        // Its spec changes: the apiserver's answer has a generation the operator has not seen.
        let changed = apply_json(
            &client,
            project_json(&ready, json!({"customer": customer, "displayName": "changed"})),
        )
        .await?;
        let changed = serde_json::to_value(changed)?;
        if changed["metadata"]["generation"] == changed["status"]["observedGeneration"] {
            return Err(format!("the update did not bump the generation: {changed}").into());
        }
        table.add("a project with a new generation", &changed, "InProgress", "Progressing")?;
        let ready_obj = ready_project(&client, &ready).await?;
        table.add("the same project once reconciled", &ready_obj, "Current", "Healthy")?;

        // Memberships: one active, one that expires in a moment.
        apply_json(&client, membership_json(&ready, "lead", "lead@example.com", "Manager")).await?;
        let mut expiring = membership_json(&ready, "visitor", "visitor@example.com", "Member");
        let soon = Timestamp::now() + SignedDuration::from_secs(3);
        expiring["spec"]["expirationTime"] = json!(soon.to_string());
        apply_json(&client, expiring).await?;
        let active = object_where(
            &client,
            "projectmemberships",
            Some(&ready),
            "lead",
            "Ready",
            Duration::from_secs(30),
            super::is_ready,
        )
        .await?;
        table.add("an active membership", &active, "Current", "Healthy")?;
        let expired = object_where(
            &client,
            "projectmemberships",
            Some(&ready),
            "visitor",
            "phase Expired",
            Duration::from_secs(30),
            |m| {
                if m["status"]["phase"] == "Expired"
                    && m["status"]["observedGeneration"] == m["metadata"]["generation"]
                {
                    Ok(())
                } else {
                    Err(format!("status is {}", m["status"]))
                }
            },
        )
        .await?;
        table.add("a membership expired as its spec asked", &expired, "Current", "Healthy")?;

        let cust = object_where(
            &client,
            "customers",
            None,
            &customer,
            "Ready",
            Duration::from_secs(30),
            super::is_ready,
        )
        .await?;
        table.add("a customer whose projects are ready", &cust, "Current", "Healthy")?;

        // A project named like a namespace it does not own (made by hand).
        let conflict = format!("{customer}-handmade");
        let conflict = conflict.as_str();
        kube::Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone())
            .create(
                &Default::default(),
                &serde_json::from_value(json!({"metadata": {"name": conflict}}))?,
            )
            .await?;
        let conflict_customer = format!("{customer}-conflict");
        apply_json(&client, customer_json(&conflict_customer, json!({}))).await?;
        customers.push(conflict_customer.clone());
        apply_json(
            &client,
            project_json(conflict, json!({"customer": conflict_customer})),
        )
        .await?;
        projects.push(conflict.to_string());
        let conflicted = object_where(
            &client,
            "projects",
            None,
            conflict,
            "phase Conflict",
            Duration::from_secs(30),
            |p| {
                if p["status"]["phase"] == "Conflict"
                    && p["status"]["observedGeneration"] == p["metadata"]["generation"]
                {
                    Ok(())
                } else {
                    Err(format!("status is {}", p["status"]))
                }
            },
        )
        .await?;
        let message = table.add("a project in Conflict", &conflicted, "Failed", "Degraded")?;
        // Its customer's health is its own: the broken project shows on the project.
        let conflict_cust = object_where(
            &client,
            "customers",
            None,
            &conflict_customer,
            "Ready",
            Duration::from_secs(30),
            super::is_ready,
        )
        .await?;
        table.add("the customer of a project in Conflict", &conflict_cust, "Current", "Healthy")?;
        kube::Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone())
            .delete(conflict, &Default::default())
            .await?;
        if !message.contains(conflict) {
            return Err(format!("the Degraded message does not name the namespace: {message}").into());
        }

        // A project whose customer is deleted.
        let orphan_customer = format!("{customer}-gone");
        let orphan = format!("{customer}-orphan");
        apply_json(&client, customer_json(&orphan_customer, json!({}))).await?;
        customers.push(orphan_customer.clone());
        apply_json(&client, project_json(&orphan, json!({"customer": orphan_customer}))).await?;
        projects.push(orphan.clone());
        ready_project(&client, &orphan).await?;
        delete_tenancy(&client, "customers", None, &orphan_customer).await?;
        let orphaned = object_where(
            &client,
            "projects",
            None,
            &orphan,
            "AccessReady=False CustomerNotFound",
            Duration::from_secs(30),
            |p| match super::condition(p, "AccessReady") {
                Some((s, r)) if s == "False" && r == "CustomerNotFound" => Ok(()),
                _ => Err(format!("status is {}", p["status"])),
            },
        )
        .await?;
        let message = table.add("a project whose customer was deleted", &orphaned, "Failed", "Degraded")?;
        if !message.contains(&orphan_customer) {
            return Err(format!("the Degraded message does not name the customer: {message}").into());
        }

        // An invitation waiting to be accepted: a project deleted and recovered with
        // sendInvitationsToPreviousMembers.
        let invited = format!("{customer}-invite");
        apply_json(&client, project_json(&invited, json!({"customer": customer}))).await?;
        projects.push(invited.clone());
        ready_project(&client, &invited).await?;
        apply_json(&client, membership_json(&invited, "guest", "guest@example.com", "Member")).await?;
        object_where(
            &client,
            "projectmemberships",
            Some(&invited),
            "guest",
            "Ready",
            Duration::from_secs(30),
            super::is_ready,
        )
        .await?;
        delete_project_and_wait(&client, &invited).await?;
        let revoked = object_where(
            &client,
            "projectmemberships",
            Some(&invited),
            "guest",
            "phase Revoked",
            Duration::from_secs(30),
            |m| {
                if m["status"]["phase"] == "Revoked"
                    && m["status"]["observedGeneration"] == m["metadata"]["generation"]
                {
                    Ok(())
                } else {
                    Err(format!("status is {}", m["status"]))
                }
            },
        )
        .await?;
        table.add("a membership revoked by a soft delete", &revoked, "Current", "Healthy")?;
        apply_json(
            &client,
            project_json(
                &invited,
                json!({"customer": customer, "recovery": {"sendInvitationsToPreviousMembers": true}}),
            ),
        )
        .await?;
        let pending = object_where(
            &client,
            "projectmemberships",
            Some(&invited),
            "guest",
            "phase Pending",
            Duration::from_secs(30),
            |m| {
                if m["status"]["phase"] == "Pending"
                    && m["status"]["observedGeneration"] == m["metadata"]["generation"]
                {
                    Ok(())
                } else {
                    Err(format!("status is {}", m["status"]))
                }
            },
        )
        .await?;
        table.add("an invitation waiting to be accepted", &pending, "InProgress", "Progressing")?;

        // A project past its end date, in its grace period: Finished is what its spec asks.
        let finished = format!("{customer}-finished");
        let yesterday = (Timestamp::now() - SignedDuration::from_hours(24))
            .to_zoned(jiff::tz::TimeZone::UTC)
            .date()
            .to_string();
        apply_json(
            &client,
            project_json(
                &finished,
                json!({"customer": customer, "endDate": yesterday, "gracePeriodDays": 30}),
            ),
        )
        .await?;
        projects.push(finished.clone());
        let finished_obj = object_where(
            &client,
            "projects",
            None,
            &finished,
            "phase Finished",
            Duration::from_secs(30),
            |p| {
                if p["status"]["phase"] == "Finished"
                    && p["status"]["observedGeneration"] == p["metadata"]["generation"]
                {
                    Ok(())
                } else {
                    Err(format!("status is {}", p["status"]))
                }
            },
        )
        .await?;
        table.add("a finished project in its grace period", &finished_obj, "Current", "Healthy")?;

        // Checklist answers waiting for staff (PendingReview), then rejected (Rejected).
        let checklist = format!("{customer}-checklist");
        apply_json(
            &client,
            json!({"apiVersion": "tenancy.dev/v1alpha1", "kind": "Checklist",
                "metadata": {"name": checklist},
                "spec": {"questions": [{"id": "health", "description": "Health data?",
                    "type": "Boolean", "required": true, "reviewAnswerValue": true}]}}),
        )
        .await?;
        let reviewed = format!("{customer}-reviewed");
        apply_json(
            &client,
            customer_json(&reviewed, json!({"projectChecklist": checklist})),
        )
        .await?;
        customers.push(reviewed.clone());
        let held = format!("{customer}-held");
        apply_json(
            &client,
            project_json(
                &held,
                json!({"customer": reviewed, "checklistAnswers": {"health": true}}),
            ),
        )
        .await?;
        projects.push(held.clone());
        let in_phase = |phase: &'static str| {
            move |p: &Value| {
                if p["status"]["phase"] == phase
                    && p["status"]["observedGeneration"] == p["metadata"]["generation"]
                {
                    Ok(())
                } else {
                    Err(format!("status is {}", p["status"]))
                }
            }
        };
        let pending = object_where(
            &client,
            "projects",
            None,
            &held,
            "phase PendingReview",
            Duration::from_secs(30),
            in_phase("PendingReview"),
        )
        .await?;
        table.add("a project whose answers wait for staff's review", &pending, "InProgress", "Progressing")?;
        apply_json(
            &client,
            project_json(
                &held,
                json!({"customer": reviewed, "checklistAnswers": {"health": true},
                    "checklistReview": {"decision": "Rejected", "comment": "no DPIA"}}),
            ),
        )
        .await?;
        let rejected = object_where(
            &client,
            "projects",
            None,
            &held,
            "phase Rejected",
            Duration::from_secs(30),
            in_phase("Rejected"),
        )
        .await?;
        table.add("a project whose answers staff rejected", &rejected, "Failed", "Degraded")?;

        // (An oversubscribed customer, Stalled, cannot be made through the webhook, which
        // refuses every quota below what is allocated; unit `desired::customer` pins it.)

        // `kubectl wait --for=condition=Ready` returns for what is done, end states included.
        for (what, args) in [
            ("the expired membership", vec!["-n", ready.as_str(), "projectmembership/visitor"]),
            ("the finished project", vec!["project", finished.as_str()]),
            ("the customer of a project in Conflict", vec!["customer", conflict_customer.as_str()]),
        ] {
            let mut cmd = vec!["wait", "--for=condition=Ready", "--timeout=30s"];
            cmd.extend(args);
            let out = env.kubectl(&cmd);
            if !out.status.success() {
                return Err(format!(
                    "kubectl wait for {what}: {}",
                    String::from_utf8_lossy(&out.stderr)
                )
                .into());
            }
        }
        table.check(env.cluster().bin_dir())
    }
    .await;
    for p in &projects {
        let _ = delete_tenancy(&client, "projects", None, p).await;
    }
    for c in &customers {
        let _ = delete_tenancy(&client, "customers", None, c).await;
    }
    let _ = delete_tenancy(
        &client,
        "checklists",
        None,
        &format!("{customer}-checklist"),
    )
    .await;
    result
}

/// One layer of the GitOps examples: an Argo CD Application (with its sync wave) or a Flux
/// Kustomization (with what it depends on), and the folder it syncs.
#[derive(Debug)]
struct Layer {
    name: String,
    path: String,
    order: i64,
    depends_on: Vec<String>,
}

fn documents(file: &Path) -> Result<Vec<Value>, Failed> {
    let text = std::fs::read_to_string(file)?;
    Ok(parse_documents(&text)
        .map_err(|e| format!("{}: {e}", file.display()))?
        .into_iter()
        .map(|d| serde_json::to_value(d).unwrap_or_default())
        .collect())
}

/// The Argo CD app of apps: the parent's folder holds the child Applications, whose sync waves
/// order the tenant's folders.
fn argocd_layers() -> Result<Vec<Layer>, Failed> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let parent = documents(&gitops_dir().join("argocd/tenant-gitops-acme.yaml"))?;
    let parent_path = parent[0]["spec"]["source"]["path"]
        .as_str()
        .ok_or("the parent Application has no spec.source.path")?;
    let mut layers = Vec::new();
    for entry in std::fs::read_dir(root.join(parent_path))? {
        for app in documents(&entry?.path())? {
            if app["kind"] != "Application" {
                continue;
            }
            let wave = app["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"]
                .as_str()
                .ok_or_else(|| format!("Application {} has no sync wave", app["metadata"]["name"]))?
                .parse::<i64>()?;
            layers.push(Layer {
                name: app["metadata"]["name"].as_str().unwrap_or_default().into(),
                path: app["spec"]["source"]["path"]
                    .as_str()
                    .unwrap_or_default()
                    .into(),
                order: wave,
                depends_on: Vec::new(),
            });
        }
    }
    layers.sort_by_key(|l| l.order);
    Ok(layers)
}

/// The Flux Kustomizations, in dependency order.
fn flux_layers() -> Result<Vec<Layer>, Failed> {
    let docs = documents(&gitops_dir().join("flux/tenant-gitops-acme.yaml"))?;
    let repos: BTreeSet<&str> = docs
        .iter()
        .filter(|d| d["kind"] == "GitRepository")
        .filter_map(|d| d["metadata"]["name"].as_str())
        .collect();
    let mut layers: Vec<Layer> = Vec::new();
    for k in docs.iter().filter(|d| d["kind"] == "Kustomization") {
        let name = k["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let source = k["spec"]["sourceRef"]["name"].as_str().unwrap_or_default();
        if !repos.contains(source) {
            return Err(
                format!("Kustomization {name} refers to an unknown source {source:?}").into(),
            );
        }
        if k["spec"]["wait"] != true {
            return Err(
                format!("Kustomization {name} must wait for its objects to be Ready").into(),
            );
        }
        let depends_on: Vec<String> = k["spec"]["dependsOn"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|d| d["name"].as_str().map(str::to_string))
            .collect();
        layers.push(Layer {
            name,
            path: k["spec"]["path"]
                .as_str()
                .unwrap_or_default()
                .trim_start_matches("./")
                .into(),
            order: 0,
            depends_on,
        });
    }
    // Order by the dependency chain: a layer's order is one more than its dependencies'.
    for _ in 0..layers.len() {
        let orders: BTreeMap<String, i64> =
            layers.iter().map(|l| (l.name.clone(), l.order)).collect();
        for l in layers.iter_mut() {
            for d in &l.depends_on {
                let dep = *orders
                    .get(d)
                    .ok_or_else(|| format!("Kustomization {} depends on unknown {d}", l.name))?;
                l.order = l.order.max(dep + 1);
            }
        }
    }
    layers.sort_by_key(|l| l.order);
    Ok(layers)
}

/// The manifests of a layer's folder, in file order.
fn layer_objects(layer: &Layer) -> Result<Vec<Value>, Failed> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(&layer.path);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(|e| format!("{} ({}): {e}", layer.name, dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        out.extend(documents(&f)?);
    }
    Ok(out)
}

fn plural(kind: &str) -> &'static str {
    match kind {
        "Customer" => "customers",
        "Project" => "projects",
        _ => "projectmemberships",
    }
}

/// The GitOps examples: the Argo CD child Applications' sync waves and the Flux
/// Kustomizations' dependsOn put the same three folders in the same order (customers, projects,
/// members). Applied layer by layer, each waiting until the health check says every object of
/// the layer is Healthy (as an Argo CD sync wave or a Flux `wait` + `dependsOn` does), the
/// tenant comes up: every object Healthy, every member bound. Then deleted in reverse order.
async fn the_gitops_examples_sync_in_order_and_turn_healthy(env: Arc<Env>) -> TestResult {
    let script = health_script()?;
    let argo = argocd_layers()?;
    let flux = flux_layers()?;
    let argo_paths: Vec<&str> = argo.iter().map(|l| l.path.as_str()).collect();
    let flux_paths: Vec<&str> = flux.iter().map(|l| l.path.as_str()).collect();
    if argo_paths != flux_paths {
        return Err(format!(
            "Argo CD syncs {argo_paths:?} and Flux {flux_paths:?}: the same folders in the same order expected"
        )
        .into());
    }
    let orders: BTreeSet<i64> = argo.iter().map(|l| l.order).collect();
    if orders.len() != argo.len() {
        return Err(format!("two Argo CD layers share a sync wave: {argo:?}").into());
    }
    let kinds_by_layer: Vec<BTreeSet<String>> = argo
        .iter()
        .map(|l| {
            layer_objects(l).map(|objs| {
                objs.iter()
                    .filter_map(|o| o["kind"].as_str().map(str::to_string))
                    .collect()
            })
        })
        .collect::<Result<_, _>>()?;
    let want: Vec<BTreeSet<String>> = vec![
        ["Customer".to_string()].into(),
        ["Project".to_string()].into(),
        ["ProjectMembership".to_string()].into(),
    ];
    if kinds_by_layer != want {
        return Err(format!(
            "the layers hold {kinds_by_layer:?}, want customers, projects, members"
        )
        .into());
    }

    let client = env.client().await;
    let mut applied: Vec<Value> = Vec::new();
    let result = sync_layers(&client, &script, &argo, &mut applied).await;
    // Prune, members first.
    for o in applied.iter().rev() {
        let ns = o["metadata"]["namespace"].as_str();
        let name = o["metadata"]["name"].as_str().unwrap_or_default();
        let kind = o["kind"].as_str().unwrap_or_default();
        let _ = delete_tenancy(&client, plural(kind), ns, name).await;
    }
    result
}

async fn sync_layers(
    client: &Client,
    script: &str,
    layers: &[Layer],
    applied: &mut Vec<Value>,
) -> TestResult {
    for layer in layers {
        let objects = layer_objects(layer)?;
        for o in &objects {
            apply_json(client, o.clone()).await?;
            applied.push(o.clone());
        }
        for o in &objects {
            let ns = o["metadata"]["namespace"].as_str();
            let name = o["metadata"]["name"].as_str().unwrap_or_default();
            let kind = o["kind"].as_str().unwrap_or_default();
            eventually(
                &format!("{kind} {name} (layer {}) to be Healthy", layer.name),
                Duration::from_secs(60),
                || async {
                    let live = get_json(client, plural(kind), ns, name)
                        .await?
                        .ok_or("not there")?;
                    match lua_health(script, &live)? {
                        (s, _) if s == "Healthy" => Ok(()),
                        (s, m) => Err(format!("{s}: {m}")),
                    }
                },
            )
            .await?;
        }
    }
    // Every member is bound.
    for o in applied.iter().filter(|o| o["kind"] == "ProjectMembership") {
        let ns = o["metadata"]["namespace"].as_str().unwrap_or_default();
        let name = o["metadata"]["name"].as_str().unwrap_or_default();
        let live = get_json(client, "projectmemberships", Some(ns), name)
            .await?
            .ok_or("gone")?;
        if live["status"]["phase"] != "Active" || live["status"]["roleBinding"].is_null() {
            return Err(format!("membership {ns}/{name}: {}", live["status"]).into());
        }
    }
    Ok(())
}
