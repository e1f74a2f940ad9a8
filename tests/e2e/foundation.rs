//! Issue 2: the CRDs against a real kube-apiserver, the examples, schema validation, printer
//! columns and field selectors, and proof that kube-controller-manager runs.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, ResourceQuota, ServiceAccount};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DynamicObject, ListParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;
use tenancy_operator::api::Project;
use tenancy_operator::devcluster::apply::{self, describe, parse_documents};

use crate::support::{
    Env, FIELD_MANAGER, TestResult, Trial, error_message, examples_dir, stdout_of, trial, wait_for,
};

pub fn trials(env: &Arc<Env>) -> Vec<Trial> {
    vec![
        trial(
            env,
            "foundation::crds_are_established_structural_and_served",
            crds_are_established_structural_and_served,
        ),
        trial(
            env,
            "foundation::crds_folder_matches_the_generated_crds",
            crds_folder_matches_the_generated_crds,
        ),
        trial(
            env,
            "foundation::kubectl_explain_prints_the_field_docs",
            kubectl_explain_prints_the_field_docs,
        ),
        trial(
            env,
            "foundation::every_example_applies_cleanly",
            every_example_applies_cleanly,
        ),
        trial(
            env,
            "foundation::invalid_manifests_are_rejected_naming_the_field",
            invalid_manifests_are_rejected_naming_the_field,
        ),
        trial(
            env,
            "foundation::kubectl_get_projects_prints_columns_and_filters_by_customer",
            kubectl_get_projects_prints_columns_and_filters_by_customer,
        ),
        trial(
            env,
            "foundation::controller_manager_deletes_namespaces_and_fills_quota_status",
            controller_manager_deletes_namespaces_and_fills_quota_status,
        ),
        trial(
            env,
            "foundation::minted_client_certificates_authenticate_as_user_and_groups",
            minted_client_certificates_authenticate_as_user_and_groups,
        ),
        trial(
            env,
            "foundation::impersonated_clients_and_can_i_follow_rbac",
            impersonated_clients_and_can_i_follow_rbac,
        ),
    ]
}

fn object(value: serde_json::Value) -> DynamicObject {
    serde_json::from_value(value).expect("a test object is a valid DynamicObject")
}

async fn crds_are_established_structural_and_served(env: Arc<Env>) -> TestResult {
    let client = env.client().await;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for expected in tenancy_operator::api::crds() {
        let name = expected.name_any();
        let crd = crds.get(&name).await?;
        let conditions = crd.status.and_then(|s| s.conditions).unwrap_or_default();
        let status_of = |t: &str| {
            conditions
                .iter()
                .find(|c| c.type_ == t)
                .map(|c| c.status.clone())
        };
        if status_of("Established").as_deref() != Some("True")
            || status_of("NamesAccepted").as_deref() != Some("True")
        {
            return Err(
                format!("{name} is not Established with names accepted: {conditions:?}").into(),
            );
        }
        if let Some(c) = conditions.iter().find(|c| c.type_ == "NonStructuralSchema") {
            return Err(format!("{name} has a non-structural schema: {:?}", c.message).into());
        }
        // Served: an empty list works through the dynamic API.
        let (api, _) = apply::api_for(
            &client,
            &object(json!({
                "apiVersion": format!("{}/{}", expected.spec.group, expected.spec.versions[0].name),
                "kind": expected.spec.names.kind,
                "metadata": {"name": "probe", "namespace": "default"},
            })),
        )
        .await?;
        api.list(&ListParams::default().limit(1)).await?;
    }
    // Short names and the `tenancy` category are in discovery.
    let out = stdout_of(
        &env.kubectl(&["api-resources", "--api-group=tenancy.dev", "-o", "wide"]),
        "kubectl api-resources",
    )?;
    for needle in [
        "customers",
        "cust",
        "projects",
        "proj",
        "projectmemberships",
        "pm",
        "tenancy",
    ] {
        if !out
            .split_whitespace()
            .any(|w| w == needle || w.split(',').any(|p| p == needle))
        {
            return Err(format!("`kubectl api-resources` does not show {needle:?}:\n{out}").into());
        }
    }
    Ok(())
}

async fn crds_folder_matches_the_generated_crds(_env: Arc<Env>) -> TestResult {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("crds");
    let drift = tenancy_operator::api::crd_drift(&dir);
    if drift.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{}\nrun `make crds` and commit the result",
            drift.join("\n")
        )
        .into())
    }
}

fn squash_whitespace(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `kubectl explain` reads the OpenAPI document, which the apiserver republishes a moment after
/// a CRD is established: retry for a while.
async fn explain(env: &Env, path: &str) -> Result<String, libtest_mimic::Failed> {
    let mut last = String::new();
    for _ in 0..60 {
        let output = env.kubectl(&["explain", path]);
        if output.status.success() {
            return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
        }
        last = String::from_utf8_lossy(&output.stderr).into_owned();
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(format!("kubectl explain {path} kept failing: {last}").into())
}

async fn kubectl_explain_prints_the_field_docs(env: Arc<Env>) -> TestResult {
    let out = explain(&env, "project.spec.customer").await?;
    let text = squash_whitespace(&out);
    let doc = "The customer (organisation) this project belongs to: the name of a Customer object. \
               Changing it moves the project to another customer, which only staff may do.";
    if !text.contains(doc) {
        return Err(format!(
            "`kubectl explain project.spec.customer` lacks the doc comment {doc:?}:\n{out}"
        )
        .into());
    }
    let out = explain(&env, "projectmembership.spec.expirationTime").await?;
    if !squash_whitespace(&out).contains("When the role ends") {
        return Err(format!(
            "`kubectl explain projectmembership.spec.expirationTime` lacks its doc:\n{out}"
        )
        .into());
    }
    Ok(())
}

/// Applies every file in `examples/` for real, then deletes what it applied.
///
/// Memberships live in their project's namespace, which the operator creates. When the suite
/// runs the operator, this waits for those namespaces; when it does not, the test creates them
/// itself (and deletes them afterwards), since nothing else would.
async fn every_example_applies_cleanly(env: Arc<Env>) -> TestResult {
    let client = env.client().await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let mut files: Vec<_> = std::fs::read_dir(examples_dir())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err("examples/ holds no manifests".into());
    }
    let mut applied = Vec::new();
    let mut created_namespaces = BTreeSet::new();
    let mut outcome: TestResult = Ok(());
    'files: for file in &files {
        let yaml = std::fs::read_to_string(file)?;
        let objects = parse_documents(&yaml).map_err(|e| format!("{}: {e}", file.display()))?;
        for obj in objects {
            if let Some(ns) = obj.metadata.namespace.clone() {
                if env.operator().is_some() {
                    let namespaces = namespaces.clone();
                    let ns2 = ns.clone();
                    wait_for(
                        &format!("namespace {ns} made by the operator"),
                        Duration::from_secs(60),
                        move || {
                            let namespaces = namespaces.clone();
                            let ns = ns2.clone();
                            async move { namespaces.get_opt(&ns).await.ok().flatten() }
                        },
                    )
                    .await?;
                } else if namespaces.get_opt(&ns).await?.is_none() {
                    namespaces
                        .create(
                            &PostParams::default(),
                            &serde_json::from_value(json!({"metadata": {"name": ns}}))?,
                        )
                        .await?;
                    created_namespaces.insert(ns);
                }
            }
            match apply::apply_object(&client, &obj, FIELD_MANAGER).await {
                Ok(_) => applied.push(obj),
                Err(e) => {
                    outcome = Err(format!(
                        "{}: {} was not accepted: {e}",
                        file.display(),
                        describe(&obj)
                    )
                    .into());
                    break 'files;
                }
            }
        }
    }
    if outcome.is_ok() {
        // Everything applied is there.
        for obj in &applied {
            let (api, _) = apply::api_for(&client, obj).await?;
            if api.get_opt(&obj.name_any()).await?.is_none() {
                outcome = Err(format!("{} was applied but is not there", describe(obj)).into());
            }
        }
    }
    env.delete_objects(&applied).await?;
    for ns in created_namespaces {
        let _ = namespaces.delete(&ns, &Default::default()).await;
    }
    outcome
}

struct Invalid {
    what: &'static str,
    object: serde_json::Value,
    /// Apply with `kubectl apply` (client-side, strict field validation) instead of server-side
    /// apply, which answers an undeclared field with HTTP 500 rather than 422.
    kubectl: bool,
    /// Every one of these must appear in the apiserver's message.
    expect: &'static [&'static str],
}

fn project(name: &str, spec: serde_json::Value) -> serde_json::Value {
    json!({"apiVersion": "tenancy.dev/v1alpha1", "kind": "Project", "metadata": {"name": name}, "spec": spec})
}

fn customer(name: &str, spec: serde_json::Value) -> serde_json::Value {
    json!({"apiVersion": "tenancy.dev/v1alpha1", "kind": "Customer", "metadata": {"name": name}, "spec": spec})
}

fn membership(name: &str, spec: serde_json::Value) -> serde_json::Value {
    json!({
        "apiVersion": "tenancy.dev/v1alpha1", "kind": "ProjectMembership",
        "metadata": {"name": name, "namespace": "default"}, "spec": spec,
    })
}

fn invalid_manifests() -> Vec<Invalid> {
    let user = json!({"kind": "User", "name": "someone@example.com"});
    vec![
        Invalid {
            what: "project kind not in the enum",
            object: project(
                "e2e-invalid-kind",
                json!({"customer": "acme", "kind": "private"}),
            ),
            expect: &["spec.kind", "Unsupported value", "private"],
            kubectl: false,
        },
        Invalid {
            what: "startDate not a date",
            object: project(
                "e2e-invalid-start",
                json!({"customer": "acme", "startDate": "2026-13-45"}),
            ),
            expect: &["spec.startDate", "date"],
            kubectl: false,
        },
        Invalid {
            what: "endDate before startDate",
            object: project(
                "e2e-invalid-end-before-start",
                json!({"customer": "acme", "startDate": "2026-06-01", "endDate": "2026-05-31"}),
            ),
            expect: &["spec.endDate must not be before spec.startDate"],
            kubectl: false,
        },
        Invalid {
            what: "both recovery options",
            object: project(
                "e2e-invalid-recovery",
                json!({"customer": "acme", "recovery": {"restoreTeamMembers": true, "sendInvitationsToPreviousMembers": true}}),
            ),
            expect: &["spec.recovery", "not both"],
            kubectl: false,
        },
        Invalid {
            what: "negative project gracePeriodDays",
            object: project(
                "e2e-invalid-grace",
                json!({"customer": "acme", "gracePeriodDays": -1}),
            ),
            expect: &["spec.gracePeriodDays", "greater than or equal to 0"],
            kubectl: false,
        },
        Invalid {
            what: "project gracePeriodDays over ten years",
            object: project(
                "e2e-invalid-grace-max",
                json!({"customer": "acme", "gracePeriodDays": 3651}),
            ),
            expect: &["spec.gracePeriodDays", "less than or equal to 3650"],
            kubectl: false,
        },
        Invalid {
            what: "missing customer",
            object: project(
                "e2e-invalid-no-customer",
                json!({"displayName": "No customer"}),
            ),
            expect: &["spec.customer", "Required value"],
            kubectl: false,
        },
        Invalid {
            what: "empty customer",
            object: project("e2e-invalid-empty-customer", json!({"customer": ""})),
            expect: &["spec.customer", "at least 1 chars"],
            kubectl: false,
        },
        Invalid {
            what: "customer not a DNS name",
            object: project(
                "e2e-invalid-customer-name",
                json!({"customer": "Acme Corp"}),
            ),
            expect: &["spec.customer", "should match"],
            kubectl: false,
        },
        Invalid {
            what: "bad quantity in quota.hard",
            object: project(
                "e2e-invalid-quantity",
                json!({"customer": "acme", "quota": {"hard": {"requests.cpu": "lots"}}}),
            ),
            expect: &["spec.quota.hard", "lots"],
            kubectl: false,
        },
        Invalid {
            what: "bad quantity in limitRange.default",
            object: project(
                "e2e-invalid-limit",
                json!({"customer": "acme", "limitRange": {"default": {"memory": "512 MB"}}}),
            ),
            expect: &["spec.limitRange.default", "512 MB"],
            kubectl: false,
        },
        Invalid {
            what: "unknown OECD FOS 2007 code",
            object: project(
                "e2e-invalid-oecd",
                json!({"customer": "acme", "oecdFos2007Code": "9.9"}),
            ),
            expect: &["spec.oecdFos2007Code", "Unsupported value", "9.9"],
            kubectl: false,
        },
        Invalid {
            what: "expirationPolicy not in the enum",
            object: project(
                "e2e-invalid-policy",
                json!({"customer": "acme", "expirationPolicy": "Archive"}),
            ),
            expect: &["spec.expirationPolicy", "Unsupported value", "Archive"],
            kubectl: false,
        },
        Invalid {
            what: "image not an http(s) URL",
            object: project(
                "e2e-invalid-image",
                json!({"customer": "acme", "image": "ftp://example.org/logo.png"}),
            ),
            expect: &["spec.image", "should match"],
            kubectl: false,
        },
        Invalid {
            what: "negative maxServiceAccounts",
            object: project(
                "e2e-invalid-max-sa",
                json!({"customer": "acme", "maxServiceAccounts": -3}),
            ),
            expect: &["spec.maxServiceAccounts", "greater than or equal to 0"],
            kubectl: false,
        },
        Invalid {
            what: "negative credit",
            object: project(
                "e2e-invalid-credit",
                json!({"customer": "acme", "credit": -10.5}),
            ),
            expect: &["spec.credit", "greater than or equal to 0"],
            kubectl: false,
        },
        Invalid {
            what: "project name longer than a namespace name",
            object: project(
                &"e2e-invalid-long-name-".repeat(3),
                json!({"customer": "acme"}),
            ),
            expect: &["metadata.name", "at most 63 characters"],
            kubectl: false,
        },
        Invalid {
            what: "field not in the schema",
            object: project(
                "e2e-invalid-unknown-field",
                json!({"customer": "acme", "colour": "blue"}),
            ),
            expect: &["unknown field", "spec.colour"],
            kubectl: true,
        },
        Invalid {
            what: "negative terminatedProjectRetentionDays",
            object: customer(
                "e2e-invalid-retention",
                json!({"terminatedProjectRetentionDays": -1}),
            ),
            expect: &[
                "spec.terminatedProjectRetentionDays",
                "greater than or equal to 0",
            ],
            kubectl: false,
        },
        Invalid {
            what: "negative customer gracePeriodDays",
            object: customer("e2e-invalid-customer-grace", json!({"gracePeriodDays": -7})),
            expect: &["spec.gracePeriodDays", "greater than or equal to 0"],
            kubectl: false,
        },
        Invalid {
            what: "abbreviation longer than 12 characters",
            object: customer(
                "e2e-invalid-abbreviation",
                json!({"abbreviation": "ABCDEFGHIJKLM"}),
            ),
            expect: &["spec.abbreviation", "Too long", "12"],
            kubectl: false,
        },
        Invalid {
            what: "bad quantity in the customer quota",
            object: customer(
                "e2e-invalid-customer-quota",
                json!({"quota": {"hard": {"requests.memory": "lots of RAM"}}}),
            ),
            expect: &["spec.quota.hard", "lots of RAM"],
            kubectl: false,
        },
        Invalid {
            what: "negative project count in the customer quota",
            object: customer(
                "e2e-invalid-customer-projects",
                json!({"quota": {"projects": -1}}),
            ),
            expect: &["spec.quota.projects", "greater than or equal to 0"],
            kubectl: false,
        },
        Invalid {
            what: "customer owner kind not in the enum",
            object: customer(
                "e2e-invalid-owner-kind",
                json!({"owners": [{"kind": "Team", "name": "a"}]}),
            ),
            expect: &["spec.owners[0].kind", "Unsupported value", "Team"],
            kubectl: false,
        },
        Invalid {
            what: "customer owner ServiceAccount without namespace",
            object: customer(
                "e2e-invalid-owner-sa",
                json!({"owners": [{"kind": "ServiceAccount", "name": "robot"}]}),
            ),
            expect: &["spec.owners[0]", "needs namespace"],
            kubectl: false,
        },
        Invalid {
            what: "customer owner expirationTime not a date-time",
            object: customer(
                "e2e-invalid-owner-expiry",
                json!({"owners": [{"kind": "User", "name": "a", "expirationTime": "next tuesday"}]}),
            ),
            expect: &["spec.owners[0].expirationTime"],
            kubectl: false,
        },
        Invalid {
            what: "role not in the enum",
            object: membership(
                "e2e-invalid-role",
                json!({"subject": user, "role": "Owner"}),
            ),
            expect: &["spec.role", "Unsupported value", "Owner"],
            kubectl: false,
        },
        Invalid {
            what: "membership without role",
            object: membership("e2e-invalid-no-role", json!({"subject": user})),
            expect: &["spec.role", "Required value"],
            kubectl: false,
        },
        Invalid {
            what: "subject kind not in the enum",
            object: membership(
                "e2e-invalid-subject-kind",
                json!({"subject": {"kind": "Robot", "name": "r2"}, "role": "Member"}),
            ),
            expect: &["spec.subject.kind", "Unsupported value", "Robot"],
            kubectl: false,
        },
        Invalid {
            what: "ServiceAccount subject without namespace",
            object: membership(
                "e2e-invalid-sa-subject",
                json!({"subject": {"kind": "ServiceAccount", "name": "deployer"}, "role": "Member"}),
            ),
            expect: &["spec.subject", "needs namespace"],
            kubectl: false,
        },
        Invalid {
            what: "namespace on a User subject",
            object: membership(
                "e2e-invalid-user-namespace",
                json!({"subject": {"kind": "User", "name": "u", "namespace": "default"}, "role": "Member"}),
            ),
            expect: &["spec.subject", "only meaningful for a ServiceAccount"],
            kubectl: false,
        },
        Invalid {
            what: "expirationTime not a date-time",
            object: membership(
                "e2e-invalid-expiry",
                json!({"subject": user, "role": "Member", "expirationTime": "tomorrow"}),
            ),
            expect: &["spec.expirationTime"],
            kubectl: false,
        },
        Invalid {
            what: "empty subject name",
            object: membership(
                "e2e-invalid-subject-name",
                json!({"subject": {"kind": "User", "name": ""}, "role": "Member"}),
            ),
            expect: &["spec.subject.name", "at least 1 chars"],
            kubectl: false,
        },
    ]
}

async fn invalid_manifests_are_rejected_naming_the_field(env: Arc<Env>) -> TestResult {
    let client = env.client().await;
    let cases = invalid_manifests();
    assert!(cases.len() >= 20);
    let mut problems = Vec::new();
    for case in &cases {
        let obj = object(case.object.clone());
        if case.kubectl {
            let output =
                env.kubectl_with_input(&["apply", "-f", "-"], Some(&case.object.to_string()));
            let stderr = String::from_utf8_lossy(&output.stderr);
            let missing: Vec<_> = case
                .expect
                .iter()
                .filter(|s| !stderr.contains(**s))
                .collect();
            if output.status.success() {
                problems.push(format!(
                    "{}: accepted by kubectl apply, should have been rejected",
                    case.what
                ));
                let _ = apply::delete_object(&client, &obj).await;
            } else if !missing.is_empty() {
                problems.push(format!(
                    "{}: kubectl apply said {stderr:?}; expected {:?}",
                    case.what, case.expect
                ));
            }
            continue;
        }
        match apply::apply_object(&client, &obj, FIELD_MANAGER).await {
            Ok(_) => {
                problems.push(format!(
                    "{}: accepted, should have been rejected",
                    case.what
                ));
                let _ = apply::delete_object(&client, &obj).await;
            }
            Err(e) => {
                let message = error_message(&e);
                let code = match e.kube_error() {
                    Some(kube::Error::Api(s)) => s.code,
                    _ => 0,
                };
                let missing: Vec<_> = case
                    .expect
                    .iter()
                    .filter(|s| !message.contains(**s))
                    .collect();
                if code != 422 || !missing.is_empty() {
                    problems.push(format!(
                        "{}: rejected with HTTP {code} and message {message:?}; expected 422 with {:?}",
                        case.what, case.expect
                    ));
                }
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} of {} invalid manifests misbehaved:\n{}",
            problems.len(),
            cases.len(),
            problems.join("\n")
        )
        .into())
    }
}

async fn kubectl_get_projects_prints_columns_and_filters_by_customer(env: Arc<Env>) -> TestResult {
    let yaml = r#"
apiVersion: tenancy.dev/v1alpha1
kind: Customer
metadata:
  name: e2e-columns-acme
spec: {}
---
apiVersion: tenancy.dev/v1alpha1
kind: Customer
metadata:
  name: e2e-columns-globex
spec: {}
---
apiVersion: tenancy.dev/v1alpha1
kind: Project
metadata:
  name: e2e-columns-alpha
spec:
  customer: e2e-columns-acme
  endDate: "2027-03-31"
---
apiVersion: tenancy.dev/v1alpha1
kind: Project
metadata:
  name: e2e-columns-beta
spec:
  customer: e2e-columns-globex
"#;
    let applied = env.apply_yaml(yaml).await?;
    let result = async {
        let out = stdout_of(&env.kubectl(&["get", "projects"]), "kubectl get projects")?;
        let mut lines = out.lines();
        let header: Vec<&str> = lines
            .next()
            .unwrap_or_default()
            .split("  ")
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        let expected = [
            "NAME",
            "CUSTOMER",
            "PHASE",
            "NAMESPACE",
            "RESOURCES",
            "MEMBERS",
            "END DATE",
            "AGE",
        ];
        if header != expected {
            return Err(format!(
                "`kubectl get projects` columns are {header:?}, expected {expected:?}:\n{out}"
            )
            .into());
        }
        let alpha = lines
            .find(|l| l.starts_with("e2e-columns-alpha "))
            .ok_or("no e2e-columns-alpha row")?;
        let cells: Vec<&str> = alpha.split_whitespace().collect();
        if cells.get(1) != Some(&"e2e-columns-acme") || !cells.contains(&"2027-03-31") {
            return Err(format!(
                "the e2e-columns-alpha row does not show its customer and end date: {alpha:?}"
            )
            .into());
        }

        let out = stdout_of(
            &env.kubectl(&[
                "get",
                "projects",
                "--field-selector",
                "spec.customer=e2e-columns-acme",
                "-o",
                "name",
            ]),
            "kubectl get projects --field-selector",
        )?;
        let names: Vec<&str> = out.lines().collect();
        if names != ["project.tenancy.dev/e2e-columns-alpha"] {
            return Err(format!(
                "--field-selector spec.customer=e2e-columns-acme listed {names:?}"
            )
            .into());
        }
        // The same through the API, and the short name and category work.
        let projects: Api<Project> = Api::all(env.client().await);
        let listed = projects
            .list(&ListParams::default().fields("spec.customer=e2e-columns-globex"))
            .await?;
        let listed: Vec<String> = listed.items.iter().map(|p| p.name_any()).collect();
        if listed != ["e2e-columns-beta"] {
            return Err(format!(
                "field selector spec.customer=e2e-columns-globex listed {listed:?}"
            )
            .into());
        }
        let out = stdout_of(
            &env.kubectl(&["get", "proj", "e2e-columns-beta", "-o", "name"]),
            "kubectl get proj",
        )?;
        if out.trim() != "project.tenancy.dev/e2e-columns-beta" {
            return Err(format!("`kubectl get proj` printed {out:?}").into());
        }
        let out = stdout_of(
            &env.kubectl(&["get", "tenancy", "-A", "-o", "name"]),
            "kubectl get tenancy",
        )?;
        if !out.contains("project.tenancy.dev/e2e-columns-alpha") {
            return Err(format!("`kubectl get tenancy -A` misses the project:\n{out}").into());
        }
        Ok(())
    }
    .await;
    env.delete_objects(&applied).await?;
    result
}

async fn controller_manager_deletes_namespaces_and_fills_quota_status(env: Arc<Env>) -> TestResult {
    if !env.cluster().has_controller_manager() {
        return Err("kube-controller-manager is not running in this control plane".into());
    }
    let client = env.client().await;
    let ns = "e2e-kcm-proof";
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": ns}}))?,
        )
        .await?;

    // serviceaccount and root-ca-certificate-publisher controllers.
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    wait_for(
        "ServiceAccount default in the new namespace",
        Duration::from_secs(60),
        || async { sas.get_opt("default").await.ok().flatten() },
    )
    .await?;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    wait_for(
        "ConfigMap kube-root-ca.crt in the new namespace",
        Duration::from_secs(60),
        || async { cms.get_opt("kube-root-ca.crt").await.ok().flatten() },
    )
    .await?;

    // resourcequota controller: status.used appears.
    let quotas: Api<ResourceQuota> = Api::namespaced(client.clone(), ns);
    quotas
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": "proof"},
                "spec": {"hard": {"pods": "1", "configmaps": "10"}},
            }))?,
        )
        .await?;
    // Until the controller has counted every resource of the quota, quota admission refuses
    // objects it counts ("status unknown for quota").
    wait_for(
        "the quota's first status.used from the controller-manager",
        Duration::from_secs(60),
        || async {
            let used = quotas.get("proof").await.ok()?.status?.used?;
            ["pods", "configmaps"]
                .iter()
                .all(|k| used.contains_key(*k))
                .then_some(())
        },
    )
    .await?;
    let used = wait_for(
        "the quota's status.used from the controller-manager",
        Duration::from_secs(90),
        || async {
            let quota = quotas.get("proof").await.ok()?;
            let used = quota.status?.used?;
            let value = |k: &str| used.get(k).map(|q| q.0.clone());
            // kube-root-ca.crt is counted.
            (value("pods").as_deref() == Some("0") && value("configmaps").is_some_and(|v| v != "0"))
                .then_some(used)
        },
    )
    .await?;

    // The quota is enforced: one pod fits, a second is refused.
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let pod = |name: &str| -> Result<Pod, serde_json::Error> {
        serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"containers": [{"name": "c", "image": "registry.invalid/none:1"}]},
        }))
    };
    pods.create(&PostParams::default(), &pod("first")?).await?;
    match pods.create(&PostParams::default(), &pod("second")?).await {
        Err(kube::Error::Api(s)) if s.code == 403 && s.message.contains("exceeded quota") => {}
        other => {
            return Err(format!(
                "a second pod over `pods: 1` was not refused by the quota: {other:?}"
            )
            .into());
        }
    }

    // namespace controller: deleting the namespace really completes (pods and quota inside).
    namespaces.delete(ns, &Default::default()).await?;
    wait_for(
        "namespace e2e-kcm-proof to be gone",
        Duration::from_secs(120),
        || async {
            match namespaces.get_opt(ns).await {
                Ok(None) => Some(()),
                _ => None,
            }
        },
    )
    .await
    .map_err(|e| {
        format!(
            "{}; quota used was {used:?}",
            e.message().unwrap_or_default()
        )
    })?;
    Ok(())
}

async fn minted_client_certificates_authenticate_as_user_and_groups(env: Arc<Env>) -> TestResult {
    for (user, groups) in [
        ("e2e-alice", vec!["e2e-team-a"]),
        ("e2e-bob", vec!["e2e-team-b", "e2e-team-c"]),
        ("e2e-carol", vec!["e2e-g1", "e2e-g2", "e2e-g3"]),
    ] {
        let kubeconfig = env.cluster().kubeconfig_for(user, &groups)?;
        let output =
            crate::support::kubectl_with(&kubeconfig, &["auth", "whoami", "-o", "json"], None);
        let review: serde_json::Value =
            serde_json::from_str(&stdout_of(&output, "kubectl auth whoami")?)?;
        let info = &review["status"]["userInfo"];
        if info["username"] != user {
            return Err(format!("kubeconfig_for({user}) authenticates as {info}").into());
        }
        let got: BTreeSet<&str> = info["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|g| g.as_str())
            .collect();
        if let Some(missing) = groups.iter().find(|g| !got.contains(**g)) {
            return Err(format!(
                "kubeconfig_for({user}, {groups:?}) lacks group {missing}: {info}"
            )
            .into());
        }
    }
    Ok(())
}

async fn impersonated_clients_and_can_i_follow_rbac(env: Arc<Env>) -> TestResult {
    if env
        .can_i("e2e-nobody", &[], "list", "projects.tenancy.dev", None)
        .await
    {
        return Err("a user without bindings may list projects".into());
    }
    if !env
        .can_i(
            "e2e-root",
            &["system:masters"],
            "delete",
            "projects.tenancy.dev",
            None,
        )
        .await
    {
        return Err("system:masters may not delete projects".into());
    }
    if env
        .can_i("e2e-nobody", &[], "get", "pods/log", Some("default"))
        .await
    {
        return Err("a user without bindings may read pod logs".into());
    }
    let nobody: Api<Project> = Api::all(env.client_as("e2e-nobody", &[]).await);
    match nobody.list(&ListParams::default()).await {
        Err(kube::Error::Api(s)) if s.code == 403 && s.message.contains("e2e-nobody") => {}
        other => {
            return Err(format!(
                "listing projects as e2e-nobody: expected 403 naming the user, got {other:?}"
            )
            .into());
        }
    }
    let root: Api<Project> = Api::all(env.client_as("e2e-root", &["system:masters"]).await);
    root.list(&ListParams::default()).await?;
    Ok(())
}
