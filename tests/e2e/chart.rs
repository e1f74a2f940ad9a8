//! Issue 5: the Helm chart against the real control plane (lint, template, a server-side dry
//! run, the values schema, install and uninstall), the same roles and webhook rules as the
//! local install, and, in submodules, the chart's RBAC run by a real operator process
//! ([`rbac`]), two operators failing over ([`ha`]), and GitOps: the Argo CD health check on
//! real statuses and the GitOps examples in sync order ([`gitops`]).

mod examples;
mod gitops;
mod ha;
mod rbac;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService;
use kube::api::{DeleteParams, DynamicObject, ListParams, PostParams};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tenancy_operator::desired::RoleNames;
use tenancy_operator::desired::access::role_cluster_roles;
use tenancy_operator::devcluster::apply::parse_documents;
use tenancy_operator::devcluster::install::APISERVICE;

use crate::support::{Env, Failed, TestResult, Trial, trial, unique_name};

pub fn trials(env: &Arc<Env>) -> Vec<Trial> {
    let mut trials = vec![
        trial(
            env,
            "chart::helm_lint_and_template_pass_and_every_env_var_is_a_run_flag",
            helm_lint_and_template_pass_and_every_env_var_is_a_run_flag,
        ),
        trial(
            env,
            "chart::the_rendered_chart_applies_with_a_server_side_dry_run",
            the_rendered_chart_applies_with_a_server_side_dry_run,
        ),
        trial(
            env,
            "chart::a_values_file_with_wrong_types_is_refused_with_the_schema_message",
            a_values_file_with_wrong_types_is_refused_with_the_schema_message,
        ),
        trial(
            env,
            "chart::helm_install_succeeds_and_uninstall_leaves_no_cluster_scoped_objects_but_the_crds",
            helm_install_succeeds_and_uninstall_leaves_no_cluster_scoped_objects_but_the_crds,
        ),
        trial(
            env,
            "chart::the_chart_ships_the_roles_and_webhook_rules_of_the_local_install",
            the_chart_ships_the_roles_and_webhook_rules_of_the_local_install,
        ),
        trial(
            env,
            "chart::every_alert_of_the_prometheus_rule_names_metrics_that_exist",
            every_alert_of_the_prometheus_rule_names_metrics_that_exist,
        ),
    ];
    trials.extend(gitops::trials(env));
    trials.extend(examples::trials(env));
    trials
}

/// Tests that stop the suite's operator to run their own operator processes; they must have
/// the cluster to themselves.
pub fn exclusive_trials(env: &Arc<Env>) -> Vec<Trial> {
    let mut trials = rbac::trials(env);
    trials.extend(ha::trials(env));
    trials
}

// ---------------------------------------------------------------------------------------------
// Helpers shared by the submodules
// ---------------------------------------------------------------------------------------------

/// The chart's folder.
fn chart_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/tenancy-operator")
}

/// `helm` (from the control-plane cache, else PATH) with the admin kubeconfig and its cache,
/// config and data folders inside the cluster's work dir.
struct Helm {
    bin: PathBuf,
    kubeconfig: PathBuf,
    home: PathBuf,
}

impl Helm {
    fn new(env: &Env) -> Result<Helm, Failed> {
        let bin = tenancy_operator::devcluster::find_helm(env.cluster().bin_dir()).ok_or(
            "helm is neither in the control-plane bin folder nor on PATH (make control-plane builds it)",
        )?;
        Ok(Helm {
            bin,
            kubeconfig: env.kubeconfig().to_path_buf(),
            home: env.cluster().dir().join("helm"),
        })
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(&self.bin)
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HELM_CACHE_HOME", self.home.join("cache"))
            .env("HELM_CONFIG_HOME", self.home.join("config"))
            .env("HELM_DATA_HOME", self.home.join("data"))
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.bin.display()))
    }

    /// stdout of a command that must succeed.
    fn ok(&self, args: &[&str]) -> Result<String, Failed> {
        let out = self.run(args);
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "helm {} failed ({}):\n{}\n{}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                helm_stderr(&out)
            )
            .into())
        }
    }

    /// `helm template <release> <chart> -n <namespace> <extra>`.
    fn template(&self, release: &str, namespace: &str, extra: &[&str]) -> Result<String, Failed> {
        let chart = chart_dir();
        let mut args = vec![
            "template",
            release,
            chart.to_str().expect("a UTF-8 path"),
            "--namespace",
            namespace,
        ];
        args.extend_from_slice(extra);
        self.ok(&args)
    }
}

/// helm's stderr without the notice it prints for the chart's `crds` symbolic link.
fn helm_stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| !l.contains("found symbolic link in path"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The objects of a rendered manifest (items of a `List` included), as JSON.
fn rendered_objects(yaml: &str) -> Result<Vec<Value>, Failed> {
    let mut out = Vec::new();
    for object in parse_documents(yaml).map_err(|e| format!("the rendered chart: {e}"))? {
        let value = serde_json::to_value(&object)?;
        if value["kind"] == "List" {
            out.extend(value["items"].as_array().cloned().unwrap_or_default());
        } else {
            out.push(value);
        }
    }
    Ok(out)
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> Result<&'a Value, Failed> {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .ok_or_else(|| format!("the rendered chart has no {kind} {name}").into())
}

/// The text of a failure.
fn why(failed: &Failed) -> String {
    failed.message().unwrap_or("failed").to_string()
}

fn typed<K: DeserializeOwned>(value: &Value) -> Result<K, Failed> {
    Ok(serde_json::from_value(value.clone())?)
}

/// Polls `check` every 200 ms until it returns `Ok`; on timeout the failure says what was
/// awaited and why the last check said no.
async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<T, Failed>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match check().await {
            Ok(value) => return Ok(value),
            Err(why) if Instant::now() > deadline => {
                return Err(
                    format!("timed out after {timeout:?} waiting for {what}: {why}").into(),
                );
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// Server-side applies a JSON object as the admin. The webhook decides from the operator's
/// caches, which see a new Customer (or a project's namespace) a moment after it is made: a 422
/// saying something "does not exist" is retried for up to 10 s.
async fn apply_json(client: &Client, object: Value) -> Result<DynamicObject, Failed> {
    let object: DynamicObject = serde_json::from_value(object)?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match tenancy_operator::devcluster::apply::apply_object(
            client,
            &object,
            crate::support::FIELD_MANAGER,
        )
        .await
        {
            Ok(applied) => return Ok(applied),
            Err(e) => {
                let message = crate::support::error_message(&e);
                if message.contains("does not exist") && Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
                return Err(format!(
                    "applying {}: {message}",
                    tenancy_operator::devcluster::apply::describe(&object)
                )
                .into());
            }
        }
    }
}

fn customer_json(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "tenancy.dev/v1alpha1", "kind": "Customer", "metadata": {"name": name}, "spec": spec})
}

fn project_json(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "tenancy.dev/v1alpha1", "kind": "Project", "metadata": {"name": name}, "spec": spec})
}

fn membership_json(project: &str, name: &str, user: &str, role: &str) -> Value {
    json!({
        "apiVersion": "tenancy.dev/v1alpha1", "kind": "ProjectMembership",
        "metadata": {"name": name, "namespace": project},
        "spec": {"subject": {"kind": "User", "name": user}, "role": role},
    })
}

/// The tenancy object (`projects`, `customers`, `projectmemberships`) as JSON, or None.
async fn get_json(
    client: &Client,
    plural: &str,
    namespace: Option<&str>,
    name: &str,
) -> Result<Option<Value>, String> {
    let kind = match plural {
        "projects" => "Project",
        "customers" => "Customer",
        "checklists" => "Checklist",
        _ => "ProjectMembership",
    };
    let ar = kube::core::ApiResource::from_gvk_with_plural(
        &kube::core::GroupVersionKind::gvk("tenancy.dev", "v1alpha1", kind),
        plural,
    );
    let api: Api<DynamicObject> = match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
        None => Api::all_with(client.clone(), &ar),
    };
    match api.get_opt(name).await {
        Ok(found) => Ok(found.map(|o| serde_json::to_value(o).unwrap_or_default())),
        Err(e) => Err(format!("reading {plural} {name}: {e}")),
    }
}

/// The status of condition `type_` ("True", "False") and its reason.
fn condition(object: &Value, type_: &str) -> Option<(String, String)> {
    object["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
        .map(|c| {
            (
                c["status"].as_str().unwrap_or_default().to_string(),
                c["reason"].as_str().unwrap_or_default().to_string(),
            )
        })
}

/// Ready=True for the current generation.
fn is_ready(object: &Value) -> Result<(), String> {
    let current = object["status"]["observedGeneration"] == object["metadata"]["generation"];
    match condition(object, "Ready") {
        Some((s, _)) if s == "True" && current => Ok(()),
        _ => Err(format!("status is {}", object["status"])),
    }
}

/// Waits until the tenancy object satisfies `check`, returning it.
async fn object_where(
    client: &Client,
    plural: &str,
    namespace: Option<&str>,
    name: &str,
    what: &str,
    timeout: Duration,
    check: impl Fn(&Value) -> Result<(), String>,
) -> Result<Value, Failed> {
    eventually(&format!("{plural} {name}: {what}"), timeout, || async {
        let object = get_json(client, plural, namespace, name)
            .await?
            .ok_or("not there")?;
        check(&object).map(|()| object)
    })
    .await
}

async fn ready_project(client: &Client, name: &str) -> Result<Value, Failed> {
    object_where(
        client,
        "projects",
        None,
        name,
        "Ready",
        Duration::from_secs(60),
        is_ready,
    )
    .await
}

/// Deletes a tenancy object (already gone is fine).
async fn delete_tenancy(
    client: &Client,
    plural: &str,
    namespace: Option<&str>,
    name: &str,
) -> Result<(), Failed> {
    let kind = match plural {
        "projects" => "Project",
        "customers" => "Customer",
        "checklists" => "Checklist",
        _ => "ProjectMembership",
    };
    let object: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "tenancy.dev/v1alpha1", "kind": kind,
        "metadata": {"name": name, "namespace": namespace},
    }))?;
    tenancy_operator::devcluster::apply::delete_object(client, &object)
        .await
        .map_err(|e| format!("deleting {plural} {name}: {e}").into())
}

/// Deletes a project and waits until the soft-delete finalizer has let it go. A refusal for
/// active resources (HTTP 409: the operator's inventory has not seen workloads go yet) is
/// retried for up to 60 s.
async fn delete_project_and_wait(client: &Client, name: &str) -> Result<(), Failed> {
    eventually(
        &format!("the webhook to let project {name} be deleted"),
        Duration::from_secs(60),
        || async {
            delete_tenancy(client, "projects", None, name)
                .await
                .map_err(|e| why(&e))
        },
    )
    .await?;
    eventually(
        &format!("project {name} to be gone"),
        Duration::from_secs(60),
        || async {
            match get_json(client, "projects", None, name).await? {
                None => Ok(()),
                Some(p) => Err(format!("still there: {}", p["status"])),
            }
        },
    )
    .await
}

/// Names of cluster-scoped objects of kind `K` labelled `selector`.
async fn names_labelled<K>(client: &Client, selector: &str) -> Result<BTreeSet<String>, Failed>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    let api: Api<K> = Api::all(client.clone());
    Ok(api
        .list(&ListParams::default().labels(selector))
        .await?
        .items
        .iter()
        .map(|o| o.name_any())
        .collect())
}

/// Every cluster-scoped object a release may leave behind, as `Kind/name`.
async fn cluster_scoped_of(client: &Client, selector: &str) -> Result<BTreeSet<String>, Failed> {
    let mut out = BTreeSet::new();
    for n in names_labelled::<ClusterRole>(client, selector).await? {
        out.insert(format!("ClusterRole/{n}"));
    }
    for n in names_labelled::<ClusterRoleBinding>(client, selector).await? {
        out.insert(format!("ClusterRoleBinding/{n}"));
    }
    for n in names_labelled::<ValidatingWebhookConfiguration>(client, selector).await? {
        out.insert(format!("ValidatingWebhookConfiguration/{n}"));
    }
    for n in names_labelled::<MutatingWebhookConfiguration>(client, selector).await? {
        out.insert(format!("MutatingWebhookConfiguration/{n}"));
    }
    for n in names_labelled::<APIService>(client, selector).await? {
        out.insert(format!("APIService/{n}"));
    }
    // Not cluster-scoped, but outside the release namespace: the read API's auth-reader binding.
    for rb in Api::<RoleBinding>::namespaced(client.clone(), "kube-system")
        .list(&ListParams::default().labels(selector))
        .await?
    {
        out.insert(format!("RoleBinding/kube-system/{}", rb.name_any()));
    }
    Ok(out)
}

/// The suite's read API is as its local install made it, whatever a test installed: the
/// APIService names the suite's Service (the ExternalName one to the local operator) and is
/// Available, and it and `tenancy:views-reader` carry the suite's release label, not another's.
async fn suite_views_intact(env: &Env, client: &Client) -> TestResult {
    let local = env.local();
    let service = json!({
        "name": local.config_name, "namespace": local.namespace, "port": local.webhook_port,
    });
    let ours = |object: &Value| {
        object["metadata"]["labels"]["app.kubernetes.io/instance"] == json!(local.config_name)
            && object["metadata"]["annotations"]["meta.helm.sh/release-name"].is_null()
    };
    eventually(
        "the suite's APIService and tenancy:views-reader to be its own, the APIService Available",
        Duration::from_secs(30),
        || async {
            let api_service = Api::<APIService>::all(client.clone())
                .get(APISERVICE)
                .await
                .map_err(|e| e.to_string())?;
            let api_service = serde_json::to_value(&api_service).map_err(|e| e.to_string())?;
            let reader = Api::<ClusterRole>::all(client.clone())
                .get("tenancy:views-reader")
                .await
                .map_err(|e| e.to_string())?;
            let reader = serde_json::to_value(&reader).map_err(|e| e.to_string())?;
            let available = condition(&api_service, "Available").is_some_and(|(s, _)| s == "True");
            if api_service["spec"]["service"] == service
                && available
                && ours(&api_service)
                && ours(&reader)
            {
                Ok(())
            } else {
                Err(format!(
                    "APIService {api_service}; ClusterRole {}",
                    reader["metadata"]
                ))
            }
        },
    )
    .await
}

async fn create_namespace(client: &Client, name: &str) -> Result<(), Failed> {
    Api::<Namespace>::all(client.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": name}}))?,
        )
        .await?;
    Ok(())
}

async fn delete_namespace(client: &Client, name: &str) {
    let _ = Api::<Namespace>::all(client.clone())
        .delete(name, &DeleteParams::default())
        .await;
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

/// `helm lint --strict` with the default values and with each switch flipped; `helm template`
/// renders every kind the chart promises; every environment variable the Deployment sets (with
/// the defaults, and with the read API, the webhook or cert-manager switched) is one that
/// `tenancy-operator run` reads (a misnamed one would be silently ignored in production), with
/// the webhook's certificate names, the operator's own identity as trusted user, and the read
/// API's APIService (`TENANCY_NO_VIEWS` without it); the RBAC has no wildcards, no cluster-wide
/// Secrets, `bind` only on the three roles, the APIService only by name, and the read API's
/// built-in grants only with the read API. The cluster-wide singletons: `tenancy:staff` is bound
/// to exactly the staff groups but system:masters, `tenancy:views-reader` to every authenticated
/// user (unless views.everyone=false), and the APIService points at the chart's Service on 443
/// with no caBundle key (the operator or cert-manager's cainjector fills it in).
async fn helm_lint_and_template_pass_and_every_env_var_is_a_run_flag(env: Arc<Env>) -> TestResult {
    let helm = Helm::new(&env)?;
    let chart = chart_dir();
    let chart = chart.to_str().expect("a UTF-8 path");
    for set in [
        None,
        Some("certManager.enabled=true"),
        Some("webhook.enabled=false"),
        Some("views.enabled=false"),
        Some("views.everyone=false"),
        Some("staffRole.create=false"),
        Some("views.enabled=false,staffRole.create=false,certManager.enabled=true"),
        Some("replicaCount=1,leaderElection.enabled=false"),
        Some("serviceMonitor.enabled=true,podDisruptionBudget.enabled=false"),
        Some("prometheusRule.enabled=true,prometheusRule.queueDepthThreshold=20"),
        Some("roles.create=false,extraCountedKinds={widgets.example.com}"),
    ] {
        let mut args = vec!["lint", "--strict", chart];
        if let Some(set) = set {
            args.extend(["--set", set]);
        }
        let out = helm.ok(&args)?;
        if !out.contains("0 chart(s) failed") {
            return Err(format!("helm {}: {out}", args.join(" ")).into());
        }
    }

    let ns = "tenancy-e2e";
    let render = |extra: &[&str]| -> Result<Vec<Value>, Failed> {
        rendered_objects(&helm.template("tenancy-operator", ns, extra)?)
    };
    let pricing = [
        "--set",
        "pricing.currency=EUR",
        "--set-string",
        "pricing.monthly.cpu=20,pricing.monthly.memory=4.5",
    ];
    let objects = render(&pricing)?;
    let kinds: BTreeSet<&str> = objects.iter().filter_map(|o| o["kind"].as_str()).collect();
    for kind in [
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "Service",
        "Deployment",
        "PodDisruptionBudget",
        "ValidatingWebhookConfiguration",
        "MutatingWebhookConfiguration",
        "APIService",
    ] {
        if !kinds.contains(kind) {
            return Err(format!("helm template rendered no {kind}; it rendered {kinds:?}").into());
        }
    }
    let no_views = render(&["--set", "views.enabled=false"])?;
    let cert_manager = render(&["--set", "certManager.enabled=true"])?;
    let no_webhook = render(&[
        "--set",
        "webhook.enabled=false,replicaCount=1,leaderElection.enabled=false",
    ])?;

    // The Deployment: hardened, two replicas, probes, and only environment variables that the
    // operator reads.
    let deployment: Deployment = typed(find(&objects, "Deployment", "tenancy-operator")?)?;
    let spec = deployment
        .spec
        .as_ref()
        .ok_or("a Deployment without spec")?;
    if spec.replicas != Some(2) {
        return Err(format!("replicas: {:?}, want 2", spec.replicas).into());
    }
    let pod = spec.template.spec.as_ref().ok_or("no pod spec")?;
    let container = &pod.containers[0];
    let security = serde_json::to_value(&container.security_context)?;
    for (path, want) in [
        ("/runAsNonRoot", json!(true)),
        ("/readOnlyRootFilesystem", json!(true)),
        ("/allowPrivilegeEscalation", json!(false)),
        ("/capabilities/drop", json!(["ALL"])),
        ("/seccompProfile/type", json!("RuntimeDefault")),
    ] {
        if security.pointer(path) != Some(&want) {
            return Err(
                format!("container securityContext{path} is not {want}: {security}").into(),
            );
        }
    }
    if container.liveness_probe.is_none() || container.readiness_probe.is_none() {
        return Err("the operator container needs liveness and readiness probes".into());
    }
    let help = Command::new(env!("CARGO_BIN_EXE_tenancy-operator"))
        .args(["run", "--help"])
        .output()?;
    let help = String::from_utf8_lossy(&help.stdout).into_owned();
    let env_vars = container_env(&objects)?;
    let mut unknown = BTreeSet::new();
    // Some variables are set only with a switch flipped (TENANCY_NO_VIEWS without the read API,
    // TENANCY_WEBHOOK_CERT_DIR with cert-manager): every variant's are checked.
    for variant in [&objects, &no_views, &cert_manager, &no_webhook] {
        for name in container_env(variant)?.into_keys() {
            // POD_NAME names the leader-election identity and events' reporting instance;
            // RUST_LOG is the log filter; the rest must be flags of `run`.
            if name != "POD_NAME" && name != "RUST_LOG" && !help.contains(&format!("[env: {name}="))
            {
                unknown.insert(name);
            }
        }
    }
    if !unknown.is_empty() {
        return Err(format!(
            "the chart sets environment variables that `tenancy-operator run` does not read: {unknown:?}"
        )
        .into());
    }
    for (name, want) in [
        (
            "TENANCY_WEBHOOK_HOSTS",
            format!(
                "tenancy-operator.{ns}.svc,tenancy-operator.{ns}.svc.cluster.local,tenancy-operator"
            ),
        ),
        (
            "TENANCY_TRUSTED_USERS",
            format!("system:serviceaccount:{ns}:tenancy-operator"),
        ),
        ("TENANCY_WEBHOOK_CONFIG_NAME", "tenancy-operator".into()),
        (
            "TENANCY_WEBHOOK_SECRET",
            "tenancy-operator-webhook-tls".into(),
        ),
        ("TENANCY_LEADER_ELECTION", "true".into()),
        ("TENANCY_PRICES", "cpu=20,memory=4.5".into()),
        ("TENANCY_CURRENCY", "EUR".into()),
        ("TENANCY_LEASE_NAME", "tenancy-operator".into()),
        ("TENANCY_APISERVICE_NAME", APISERVICE.into()),
    ] {
        if env_vars.get(name) != Some(&want) {
            return Err(format!("{name} is {:?}, want {want:?}", env_vars.get(name)).into());
        }
    }
    // The read API switched off: the operator does not serve it and patches no APIService.
    let no_views_env = container_env(&no_views)?;
    if env_vars.contains_key("TENANCY_NO_VIEWS")
        || no_views_env.get("TENANCY_NO_VIEWS").map(String::as_str) != Some("true")
        || no_views_env.contains_key("TENANCY_APISERVICE_NAME")
    {
        return Err(format!(
            "TENANCY_NO_VIEWS / TENANCY_APISERVICE_NAME: with the read API {:?} / {:?}, without {:?} / {:?}; want unset / {APISERVICE:?}, \"true\" / unset",
            env_vars.get("TENANCY_NO_VIEWS"),
            env_vars.get("TENANCY_APISERVICE_NAME"),
            no_views_env.get("TENANCY_NO_VIEWS"),
            no_views_env.get("TENANCY_APISERVICE_NAME"),
        )
        .into());
    }

    // RBAC hygiene: the operator's ClusterRole, and the two the chart gives people.
    let roles = RoleNames::default();
    let role_names: BTreeSet<String> = [roles.manager, roles.administrator, roles.member].into();
    for name in ["tenancy-operator", "tenancy:staff", "tenancy:views-reader"] {
        let cluster_role: ClusterRole = typed(find(&objects, "ClusterRole", name)?)?;
        for rule in cluster_role.rules.iter().flatten() {
            let all: Vec<&String> = rule
                .verbs
                .iter()
                .chain(rule.resources.iter().flatten())
                .chain(rule.api_groups.iter().flatten())
                .collect();
            if all.iter().any(|s| s.contains('*')) {
                return Err(format!("a wildcard in ClusterRole {name}: {rule:?}").into());
            }
            let resources = rule.resources.clone().unwrap_or_default();
            if resources.iter().any(|r| r == "secrets") {
                return Err(
                    format!("ClusterRole {name} grants Secrets cluster-wide: {rule:?}").into(),
                );
            }
            if rule
                .verbs
                .iter()
                .any(|v| v == "bind" || v == "escalate" || v == "impersonate")
            {
                let names: BTreeSet<String> = rule
                    .resource_names
                    .clone()
                    .unwrap_or_default()
                    .into_iter()
                    .collect();
                if name != "tenancy-operator" || rule.verbs != ["bind"] || names != role_names {
                    return Err(format!(
                        "bind must be granted (to the operator) on exactly the three role ClusterRoles, and escalate and impersonate never: {name}: {rule:?}"
                    )
                    .into());
                }
            }
            if resources.iter().any(|r| r == "apiservices")
                && (rule.verbs != ["get", "patch"]
                    || rule.resource_names.as_deref() != Some(&[APISERVICE.to_string()][..]))
            {
                return Err(format!(
                    "APIServices must be granted get and patch on {APISERVICE} only: {name}: {rule:?}"
                )
                .into());
            }
        }
    }
    let patches_apiservice = |objects: &[Value]| -> Result<bool, Failed> {
        let cluster_role: ClusterRole = typed(find(objects, "ClusterRole", "tenancy-operator")?)?;
        Ok(cluster_role
            .rules
            .iter()
            .flatten()
            .any(|r| r.resources.iter().flatten().any(|x| x == "apiservices")))
    };
    // The generated CA goes into the APIService by the operator's hand; cert-manager's
    // cainjector fills it in itself; without the read API there is nothing to patch.
    if !patches_apiservice(&objects)?
        || patches_apiservice(&cert_manager)?
        || patches_apiservice(&no_views)?
    {
        return Err(
            "the operator may patch the APIService when the read API is on and cert-manager off only"
                .into(),
        );
    }
    let role: Role = typed(find(&objects, "Role", "tenancy-operator")?)?;
    for rule in role.rules.iter().flatten() {
        let secrets = rule.resources.iter().flatten().any(|r| r == "secrets");
        if secrets && rule.verbs != ["create"] && rule.resource_names.is_none() {
            return Err(format!("Secrets must be granted by name only: {rule:?}").into());
        }
    }
    // The read API's two built-in grants, to the operator's ServiceAccount alone: delegated
    // authentication and authorization (system:auth-delegator), and the front proxy's CA in
    // kube-system (extension-apiserver-authentication-reader, one ConfigMap by name).
    let sa_subject =
        json!([{"kind": "ServiceAccount", "name": "tenancy-operator", "namespace": ns}]);
    let delegator = find(
        &objects,
        "ClusterRoleBinding",
        "tenancy-operator:auth-delegator",
    )?;
    let reader = objects
        .iter()
        .find(|o| {
            o["kind"] == "RoleBinding"
                && o["metadata"]["name"] == "tenancy-operator:auth-reader"
                && o["metadata"]["namespace"] == "kube-system"
        })
        .ok_or("the rendered chart has no RoleBinding kube-system/tenancy-operator:auth-reader")?;
    for (binding, kind, role) in [
        (delegator, "ClusterRole", "system:auth-delegator"),
        (reader, "Role", "extension-apiserver-authentication-reader"),
    ] {
        let want_ref = json!({"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": role});
        if binding["roleRef"] != want_ref || binding["subjects"] != sa_subject {
            return Err(format!(
                "{} {} binds {} to {}, want {want_ref} to {sa_subject}",
                binding["kind"],
                binding["metadata"]["name"],
                binding["roleRef"],
                binding["subjects"]
            )
            .into());
        }
    }

    // The read API's APIService, with the defaults: the chart's own Service on 443 (the
    // webhook's port, so the same server and certificate) and no caBundle key, so that
    // `helm upgrade` and GitOps tools never reset what the operator patched in.
    let api_service = find(&objects, "APIService", APISERVICE)?;
    let want_service = json!({"name": "tenancy-operator", "namespace": ns, "port": 443});
    let spec = &api_service["spec"];
    if spec["service"] != want_service
        || spec["group"] != "views.tenancy.dev"
        || spec["version"] != "v1alpha1"
        || spec["insecureSkipTLSVerify"] != json!(false)
        || spec.get("caBundle").is_some()
        || api_service["metadata"].get("annotations").is_some()
    {
        return Err(format!(
            "the APIService with the default values: {api_service}; want service {want_service}, TLS verified, no caBundle key and no annotations"
        )
        .into());
    }
    let service: Service = typed(find(&objects, "Service", "tenancy-operator")?)?;
    let webhook_port = service
        .spec
        .iter()
        .flat_map(|s| s.ports.iter().flatten())
        .find(|p| p.port == 443);
    let container_port = container
        .ports
        .iter()
        .flatten()
        .find(|p| p.name.as_deref() == Some("webhook"))
        .map(|p| p.container_port);
    match (
        webhook_port.and_then(|p| p.target_port.as_ref()),
        container_port,
    ) {
        (Some(IntOrString::String(target)), Some(port))
            if target == "webhook"
                && env_vars.get("TENANCY_WEBHOOK_ADDR") == Some(&format!("0.0.0.0:{port}")) => {}
        other => {
            return Err(format!(
                "the Service's port 443 does not reach the operator's HTTPS server (target, container port): {other:?}"
            )
            .into());
        }
    }
    // With cert-manager: cainjector fills caBundle from the serving Certificate; still no key.
    let injected = find(&cert_manager, "APIService", APISERVICE)?;
    find(&cert_manager, "Certificate", "tenancy-operator-webhook")?;
    if injected["metadata"]["annotations"]["cert-manager.io/inject-ca-from"]
        != json!(format!("{ns}/tenancy-operator-webhook"))
        || injected["spec"].get("caBundle").is_some()
    {
        return Err(format!("the APIService with cert-manager: {injected}").into());
    }
    // Without the read API: no APIService, no views-reader, no grants for it.
    let views_objects: Vec<String> = no_views
        .iter()
        .filter(|o| {
            o["kind"] == "APIService"
                || o["metadata"]["name"] == "tenancy:views-reader"
                || o["metadata"]["name"]
                    .as_str()
                    .is_some_and(|n| n.ends_with(":auth-delegator") || n.ends_with(":auth-reader"))
        })
        .map(|o| format!("{}/{}", o["kind"], o["metadata"]["name"]))
        .collect();
    let staff_reads_views = |objects: &[Value]| -> Result<bool, Failed> {
        let staff: ClusterRole = typed(find(objects, "ClusterRole", "tenancy:staff")?)?;
        Ok(staff.rules.iter().flatten().any(|r| {
            r.api_groups
                .iter()
                .flatten()
                .any(|g| g == "views.tenancy.dev")
        }))
    };
    if !views_objects.is_empty() || staff_reads_views(&no_views)? || !staff_reads_views(&objects)? {
        return Err(format!(
            "views.enabled=false still renders {views_objects:?} (or tenancy:staff's rule for the views: {})",
            staff_reads_views(&no_views)?
        )
        .into());
    }

    // tenancy:views-reader: bound to every authenticated user, unless views.everyone=false.
    let readers = find(&objects, "ClusterRoleBinding", "tenancy:views-reader")?;
    let want_readers = json!([{
        "apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:authenticated",
    }]);
    if readers["subjects"] != want_readers || readers["roleRef"]["name"] != "tenancy:views-reader" {
        return Err(format!("ClusterRoleBinding tenancy:views-reader: {readers}").into());
    }
    let private = render(&["--set", "views.everyone=false"])?;
    find(&private, "ClusterRole", "tenancy:views-reader")?;
    if find(&private, "ClusterRoleBinding", "tenancy:views-reader").is_ok() {
        return Err("views.everyone=false still binds tenancy:views-reader".into());
    }

    // tenancy:staff: bound to exactly the staff groups but system:masters (whose members pass
    // every check anyway), in their order; the webhook recognises all of them.
    let groups_of = |groups: &[&str]| json!(groups).to_string();
    for (staff_groups, bound) in [
        (None, vec!["tenancy:staff"]),
        (
            Some(groups_of(&[
                "platform-ops",
                "system:masters",
                "tenancy:staff",
            ])),
            vec!["platform-ops", "tenancy:staff"],
        ),
        (Some(groups_of(&["system:masters"])), vec![]),
    ] {
        let objects = match &staff_groups {
            None => objects.clone(),
            Some(groups) => render(&["--set-json", &format!("staffGroups={groups}")])?,
        };
        let all = container_env(&objects)?
            .get("TENANCY_STAFF_GROUPS")
            .cloned()
            .unwrap_or_default();
        find(&objects, "ClusterRole", "tenancy:staff")?;
        let binding = objects.iter().find(|o| {
            o["kind"] == "ClusterRoleBinding" && o["metadata"]["name"] == "tenancy:staff"
        });
        let got: Option<Vec<String>> = binding.map(|b| {
            b["subjects"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|s| {
                    if s["kind"] == "Group" && s["apiGroup"] == "rbac.authorization.k8s.io" {
                        s["name"].as_str().unwrap_or_default().to_string()
                    } else {
                        format!("not a group: {s}")
                    }
                })
                .collect()
        });
        let want = (!bound.is_empty()).then(|| bound.iter().map(|g| g.to_string()).collect());
        let role_ref = binding.map(|b| b["roleRef"].clone());
        let staff_ref = json!({
            "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "tenancy:staff",
        });
        if got != want || role_ref.is_some_and(|r| r != staff_ref) {
            return Err(format!(
                "with staffGroups {staff_groups:?} (TENANCY_STAFF_GROUPS={all}) tenancy:staff is bound to {got:?}, want {want:?}: {binding:?}"
            )
            .into());
        }
    }
    let no_staff = render(&["--set", "staffRole.create=false"])?;
    if let Some(o) = no_staff
        .iter()
        .find(|o| o["metadata"]["name"] == "tenancy:staff")
    {
        return Err(format!("staffRole.create=false still renders {}", o["kind"]).into());
    }
    Ok(())
}

/// The operator container's environment variables (those from a fieldRef with an empty value).
/// Read as JSON: with cert-manager the Deployment has a volume's `defaultMode: 0440`, an octal
/// number to Kubernetes' YAML 1.1 and a string to this YAML parser.
fn container_env(objects: &[Value]) -> Result<BTreeMap<String, String>, Failed> {
    let deployment = find(objects, "Deployment", "tenancy-operator")?;
    let env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .ok_or("a Deployment without a container's env")?;
    Ok(env
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap_or_default().to_string(),
                e["value"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect())
}

/// The ClusterRoles the chart names once per cluster, not per release: the read API's and
/// staff's (the APIService, named `<version>.<group>`, is the other singleton).
const SINGLETON_ROLES: [&str; 2] = ["tenancy:views-reader", "tenancy:staff"];

/// Whether a rendered object is one of the chart's cluster-wide singletons (fixed names: the
/// APIService, and the ClusterRoles and ClusterRoleBindings `tenancy:views-reader` and
/// `tenancy:staff`).
fn is_singleton(object: &Value) -> bool {
    object["kind"] == "APIService"
        || (matches!(
            object["kind"].as_str(),
            Some("ClusterRole" | "ClusterRoleBinding")
        ) && SINGLETON_ROLES
            .iter()
            .any(|n| object["metadata"]["name"] == *n))
}

/// The chart as `helm template --include-crds` renders it, with the defaults (read API and staff
/// role included), is accepted by the apiserver in a server-side dry run: every object validates
/// against its schema (and the CRDs, applied next to the installed ones, conflict in no field).
/// Dry run only: the rendered webhook configurations would otherwise send every tenancy request
/// to a Service no pod backs, and the APIService would replace the suite's. The cluster-wide
/// singletons (APIService, `tenancy:views-reader`, `tenancy:staff`) have fixed names, and the
/// suite's local install holds the APIService and `tenancy:views-reader` with its own Service
/// and release label: they are dry-run apart, with `--force-conflicts` (a dry run takes nothing
/// over); the rest must apply without. Afterwards the suite's APIService is as it was.
async fn the_rendered_chart_applies_with_a_server_side_dry_run(env: Arc<Env>) -> TestResult {
    let client = env.client().await;
    let helm = Helm::new(&env)?;
    let ns = unique_name("chart-dry-run");
    create_namespace(&client, &ns).await?;
    let release = "dry";
    let api_services = Api::<APIService>::all(client.clone());
    // Its spec but the caBundle (which the suite's operator may be patching in just now).
    let spec_of = |s: APIService| -> Result<Value, Failed> {
        let mut spec = serde_json::to_value(&s.spec)?;
        if let Some(spec) = spec.as_object_mut() {
            spec.remove("caBundle");
        }
        Ok(spec)
    };
    let suite_api_service = spec_of(api_services.get(APISERVICE).await?)?;
    let result = async {
        let rendered = helm.template(release, &ns, &["--include-crds"])?;
        let count = rendered_objects(&rendered)?.len();
        // Split as helm printed it (the text, not re-serialized objects: kubectl reads the YAML
        // as an apiserver client would).
        let (mut names, mut singletons, mut rest) = (Vec::new(), Vec::new(), Vec::new());
        for document in rendered.split("\n---\n") {
            let objects = rendered_objects(document)?;
            if !objects.iter().any(is_singleton) {
                rest.push(document);
                continue;
            }
            if !objects.iter().all(is_singleton) {
                return Err(format!("a document mixes singletons and others:\n{document}").into());
            }
            names.extend(
                objects
                    .iter()
                    .map(|o| format!("{}/{}", o["kind"], o["metadata"]["name"])),
            );
            singletons.push(document);
        }
        // The APIService, two ClusterRoles and their bindings.
        if names.len() != 5 {
            return Err(format!("the defaults render these singletons, want 5: {names:?}").into());
        }
        let mut applied = 0;
        let mut printed = String::new();
        for (part, force) in [(rest, false), (singletons, true)] {
            let documents = part.join("\n---\n");
            let mut args = vec![
                "apply",
                "--server-side",
                "--dry-run=server",
                "--field-manager=helm-e2e",
            ];
            if force {
                args.push("--force-conflicts");
            }
            args.extend(["-f", "-"]);
            let out = env.kubectl_with_input(&args, Some(&documents));
            let stdout = crate::support::stdout_of(&out, &format!("kubectl {}", args.join(" ")))?;
            applied += stdout
                .lines()
                .filter(|l| l.contains("(server dry run)"))
                .count();
            printed.push_str(&stdout);
        }
        if applied != count {
            return Err(format!(
                "the dry run applied {applied} of the {count} rendered objects:\n{printed}"
            )
            .into());
        }
        // Nothing was persisted.
        let name = format!("{release}-tenancy-operator");
        if Api::<ClusterRole>::all(client.clone())
            .get_opt(&name)
            .await?
            .is_some()
            || Api::<ValidatingWebhookConfiguration>::all(client.clone())
                .get_opt(&name)
                .await?
                .is_some()
        {
            return Err("a server-side dry run persisted objects".into());
        }
        let now = spec_of(api_services.get(APISERVICE).await?)?;
        if now != suite_api_service {
            return Err(format!(
                "the suite's APIService changed in a dry run: {suite_api_service} -> {now}"
            )
            .into());
        }
        Ok(())
    }
    .await;
    delete_namespace(&client, &ns).await;
    result
}

/// A values file with values of the wrong type, a value outside its enum and a key the chart
/// does not know is refused by `helm template` and by `helm install` (against the cluster), with
/// the schema's message naming each, and nothing is installed.
async fn a_values_file_with_wrong_types_is_refused_with_the_schema_message(
    env: Arc<Env>,
) -> TestResult {
    let helm = Helm::new(&env)?;
    let dir = env.cluster().dir().join("chart-values");
    std::fs::create_dir_all(&dir)?;
    let file = dir.join(format!("{}.yaml", unique_name("wrong-types")));
    std::fs::write(
        &file,
        "replicaCount: two\nleaderElection:\n  enabled: \"yes\"\nwebhook:\n  failurePolicy: Sometimes\nreplicas: 2\npricing:\n  currency: euro\n  monthly:\n    gpu: \"1\"\n    cpu: 20\n",
    )?;
    let file = file.to_str().expect("a UTF-8 path").to_string();
    let chart = chart_dir();
    let chart = chart.to_str().expect("a UTF-8 path");
    let release = unique_name("wrong-types");
    let expected = [
        "values don't meet the specifications of the schema",
        "/replicaCount",
        "got string, want integer",
        "/leaderElection/enabled",
        "got string, want boolean",
        "/webhook/failurePolicy",
        "value must be one of 'Fail', 'Ignore'",
        "replicas",
        "/pricing/monthly/cpu",
        "got number, want string",
        "additional properties 'gpu' not allowed",
        "/pricing/currency",
    ];
    for args in [
        vec!["template", release.as_str(), chart, "-f", file.as_str()],
        vec![
            "install",
            release.as_str(),
            chart,
            "--namespace",
            release.as_str(),
            "--create-namespace",
            "-f",
            file.as_str(),
        ],
    ] {
        let out = helm.run(&args);
        let stderr = helm_stderr(&out);
        if out.status.success() {
            return Err(format!("helm {} accepted the wrong values", args[0]).into());
        }
        let missing: Vec<&str> = expected
            .iter()
            .copied()
            .filter(|e| !stderr.contains(e))
            .collect();
        if !missing.is_empty() {
            return Err(format!(
                "helm {}'s message does not mention {missing:?}:\n{stderr}",
                args[0]
            )
            .into());
        }
    }
    let releases = helm.ok(&["list", "--all", "--namespace", &release, "-q"])?;
    if !releases.trim().is_empty() {
        return Err(format!("a release was recorded despite the schema errors: {releases}").into());
    }
    delete_namespace(&env.client().await, &release).await;
    Ok(())
}

/// `helm install` into the control plane, with its own names for everything cluster-scoped (so
/// it does not collide with what the suite installed), without webhook configurations (no pod
/// ever runs here, so they would have no endpoints and fail every tenancy request) and without
/// the cluster-wide singletons (`views.enabled=false`, `staffRole.create=false`, as the chart
/// says for a second release): the suite's APIService `v1alpha1.views.tenancy.dev` and
/// `tenancy:views-reader` already exist under those fixed names, and an APIService pointing at
/// this release's pod-less Service would be Unavailable, failing discovery and so every
/// namespace deletion in the shared cluster. Every object is there, the role ClusterRoles
/// aggregate admin/edit/view plus the membership rules; `helm uninstall` then leaves nothing
/// cluster-scoped (or in kube-system) with the release's label behind, the CRDs stay, and the
/// suite's read API is untouched throughout.
async fn helm_install_succeeds_and_uninstall_leaves_no_cluster_scoped_objects_but_the_crds(
    env: Arc<Env>,
) -> TestResult {
    let client = env.client().await;
    let helm = Helm::new(&env)?;
    let release = unique_name("e2e-chart");
    let ns = release.clone();
    let selector = format!("app.kubernetes.io/instance={release}");
    let values = env
        .cluster()
        .dir()
        .join("chart-values")
        .join(format!("{release}.yaml"));
    std::fs::create_dir_all(values.parent().expect("a parent"))?;
    std::fs::write(
        &values,
        format!(
            "fullnameOverride: {release}\nroles:\n  manager: \"{release}:manager\"\n  administrator: \"{release}:administrator\"\n  member: \"{release}:member\"\nwebhook:\n  enabled: false\nviews:\n  enabled: false\nstaffRole:\n  create: false\n"
        ),
    )?;
    let values = values.to_str().expect("a UTF-8 path").to_string();

    let before = cluster_scoped_of(&client, &selector).await?;
    if !before.is_empty() {
        return Err(format!("objects with {selector} exist before the install: {before:?}").into());
    }
    let chart = chart_dir();
    let out = helm.ok(&[
        "install",
        &release,
        chart.to_str().expect("a UTF-8 path"),
        "--namespace",
        &ns,
        "--create-namespace",
        "-f",
        &values,
        "--timeout",
        "2m",
    ])?;
    if !out.contains("STATUS: deployed") || !out.contains("WARNING: webhook.enabled is false") {
        return Err(format!("helm install printed:\n{out}").into());
    }

    suite_views_intact(&env, &client).await?;

    // No APIService, no tenancy:views-reader or tenancy:staff, and no auth-delegator or
    // kube-system auth-reader binding: those come only with the read API and the staff role.
    let installed = cluster_scoped_of(&client, &selector).await?;
    let want: BTreeSet<String> = [
        format!("ClusterRole/{release}"),
        format!("ClusterRole/{release}:manager"),
        format!("ClusterRole/{release}:administrator"),
        format!("ClusterRole/{release}:member"),
        format!("ClusterRole/{release}:manager:memberships"),
        format!("ClusterRole/{release}:administrator:memberships"),
        format!("ClusterRole/{release}:member:memberships"),
        format!("ClusterRoleBinding/{release}"),
    ]
    .into();
    if installed != want {
        return Err(
            format!("cluster-scoped objects of the release: {installed:?}, want {want:?}").into(),
        );
    }
    let sa = Api::<ServiceAccount>::namespaced(client.clone(), &ns);
    let present = sa.get_opt(&release).await?.is_some()
        && Api::<Role>::namespaced(client.clone(), &ns)
            .get_opt(&release)
            .await?
            .is_some()
        && Api::<RoleBinding>::namespaced(client.clone(), &ns)
            .get_opt(&release)
            .await?
            .is_some()
        && Api::<Service>::namespaced(client.clone(), &ns)
            .get_opt(&release)
            .await?
            .is_some()
        && Api::<Deployment>::namespaced(client.clone(), &ns)
            .get_opt(&release)
            .await?
            .is_some()
        && Api::<PodDisruptionBudget>::namespaced(client.clone(), &ns)
            .get_opt(&release)
            .await?
            .is_some();
    if !present {
        return Err(
            "the ServiceAccount, Role, RoleBinding, Service, Deployment or PodDisruptionBudget is missing"
                .into(),
        );
    }
    // kube-controller-manager aggregates the role ClusterRoles under their configured names.
    let cluster_roles = Api::<ClusterRole>::all(client.clone());
    let manager = format!("{release}:manager");
    eventually(
        &format!("ClusterRole {manager} to aggregate admin and the membership rules"),
        Duration::from_secs(30),
        || async {
            let role = cluster_roles
                .get(&manager)
                .await
                .map_err(|e| e.to_string())?;
            let rules = role.rules.unwrap_or_default();
            let grants = |resource: &str, verb: &str| {
                rules.iter().any(|r| {
                    r.resources.iter().flatten().any(|x| x == resource)
                        && r.verbs.iter().any(|v| v == verb)
                })
            };
            if grants("projectmemberships", "create") && grants("deployments", "create") {
                Ok(())
            } else {
                Err(format!("{} rules so far", rules.len()))
            }
        },
    )
    .await?;

    helm.ok(&[
        "uninstall",
        &release,
        "--namespace",
        &ns,
        "--wait",
        "--timeout",
        "2m",
    ])?;
    // The aggregation controller may still be finishing an update of a role it holds: give it
    // a moment, then nothing may be left.
    let left = eventually(
        "the release's cluster-scoped objects to be gone",
        Duration::from_secs(20),
        || async {
            let left = cluster_scoped_of(&client, &selector)
                .await
                .map_err(|e| why(&e))?;
            if left.is_empty() {
                Ok(left)
            } else {
                Err(format!("left: {left:?}"))
            }
        },
    )
    .await;
    // Stable, not re-created a moment later.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = cluster_scoped_of(&client, &selector).await?;
    left?;
    if !after.is_empty() {
        return Err(format!("helm uninstall left cluster-scoped objects: {after:?}").into());
    }
    if sa.get_opt(&release).await?.is_some() {
        return Err("helm uninstall left the ServiceAccount".into());
    }
    suite_views_intact(&env, &client).await?;
    let crds = Api::<CustomResourceDefinition>::all(client.clone());
    for crd in [
        "customers.tenancy.dev",
        "projects.tenancy.dev",
        "projectmemberships.tenancy.dev",
    ] {
        if crds.get_opt(crd).await?.is_none() {
            return Err(format!("helm uninstall removed CRD {crd}").into());
        }
    }
    delete_namespace(&client, &ns).await;
    Ok(())
}

/// The local install (dev, e2e) mirrors the chart for a loopback operator: the chart's role
/// ClusterRoles are exactly `role_cluster_roles`, the webhook configurations the suite runs
/// with are the chart's own, rules, policies, timeouts and selectors included, and so are its
/// read API's APIService (but for the Service it reaches) and `tenancy:views-reader` with its
/// binding.
async fn the_chart_ships_the_roles_and_webhook_rules_of_the_local_install(
    env: Arc<Env>,
) -> TestResult {
    let helm = Helm::new(&env)?;
    let objects = rendered_objects(&helm.template("tenancy-operator", "tenancy-system", &[])?)?;

    for want in role_cluster_roles(&RoleNames::default()) {
        let name = want.name_any();
        let got: ClusterRole = typed(find(&objects, "ClusterRole", &name)?)?;
        let labels = got.metadata.labels.clone().unwrap_or_default();
        for (k, v) in want.metadata.labels.iter().flatten() {
            if labels.get(k) != Some(v) {
                return Err(
                    format!("ClusterRole {name}: label {k}={v} missing in the chart").into(),
                );
            }
        }
        if serde_json::to_value(&got.aggregation_rule)?
            != serde_json::to_value(&want.aggregation_rule)?
            || serde_json::to_value(&got.rules)? != serde_json::to_value(&want.rules)?
        {
            return Err(format!(
                "ClusterRole {name} differs:\nchart: {}\ncode:  {}",
                serde_json::to_value(&got)?,
                serde_json::to_value(&want)?
            )
            .into());
        }
    }

    // The webhook configurations serving this suite are the chart's own (rendered by helm, one
    // source): everything but where they send requests (a loopback URL instead of the Service)
    // and the CA the operator fills in is what the chart installs.
    let client = env.client().await;
    let without_client_config = |value: serde_json::Value| -> Vec<serde_json::Value> {
        value["webhooks"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(|mut w| {
                if let Some(o) = w.as_object_mut() {
                    o.remove("clientConfig");
                    // The apiserver's defaults for selectors the chart leaves out.
                    o.retain(|_, v| v.as_object().is_none_or(|m| !m.is_empty()));
                }
                w
            })
            .collect()
    };
    for kind in [
        "ValidatingWebhookConfiguration",
        "MutatingWebhookConfiguration",
    ] {
        let chart = without_client_config(find(&objects, kind, "tenancy-operator")?.clone());
        let installed = match kind {
            "ValidatingWebhookConfiguration" => serde_json::to_value(
                Api::<ValidatingWebhookConfiguration>::all(client.clone())
                    .get("tenancy-operator")
                    .await?,
            )?,
            _ => serde_json::to_value(
                Api::<MutatingWebhookConfiguration>::all(client.clone())
                    .get("tenancy-operator")
                    .await?,
            )?,
        };
        let installed = without_client_config(installed);
        if chart != installed {
            return Err(format!(
                "the {kind} serving the suite is not the chart's:\nchart:     {}\ninstalled: {}",
                serde_json::to_string(&chart)?,
                serde_json::to_string(&installed)?
            )
            .into());
        }
    }

    // The read API: the APIService's spec but where it sends requests (the suite's
    // ExternalName Service on the loopback port instead of the chart's on 443) and the CA the
    // operator fills in; the ClusterRole's rules and the binding's subjects.
    let local = env.local();
    let mut chart = find(&objects, "APIService", APISERVICE)?["spec"].clone();
    chart["service"]["port"] = json!(local.webhook_port);
    // The apiserver leaves out a false insecureSkipTLSVerify (the chart spells it out).
    if chart["insecureSkipTLSVerify"] == json!(false)
        && let Some(spec) = chart.as_object_mut()
    {
        spec.remove("insecureSkipTLSVerify");
    }
    let mut installed = serde_json::to_value(
        Api::<APIService>::all(client.clone())
            .get(APISERVICE)
            .await?
            .spec,
    )?;
    if let Some(spec) = installed.as_object_mut() {
        spec.remove("caBundle");
    }
    if chart != installed {
        return Err(format!(
            "the APIService serving the suite is not the chart's:\nchart:     {chart}\ninstalled: {installed}"
        )
        .into());
    }
    let reader = serde_json::to_value(
        Api::<ClusterRole>::all(client.clone())
            .get("tenancy:views-reader")
            .await?,
    )?;
    let readers = serde_json::to_value(
        Api::<ClusterRoleBinding>::all(client.clone())
            .get("tenancy:views-reader")
            .await?,
    )?;
    let chart_reader = find(&objects, "ClusterRole", "tenancy:views-reader")?;
    let chart_readers = find(&objects, "ClusterRoleBinding", "tenancy:views-reader")?;
    if reader["rules"] != chart_reader["rules"]
        || readers["subjects"] != chart_readers["subjects"]
        || readers["roleRef"] != chart_readers["roleRef"]
    {
        return Err(format!(
            "tenancy:views-reader serving the suite is not the chart's:\nchart:     {chart_reader} {chart_readers}\ninstalled: {reader} {readers}"
        )
        .into());
    }
    Ok(())
}

/// The metric families a Prometheus text exposition declares (`# TYPE <name> ...`).
fn declared_metrics(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// Whether `name` (as a query names it: `x_total`, `x_bucket`, `x`) is one of `declared`.
fn is_declared(declared: &BTreeSet<String>, name: &str) -> bool {
    declared.contains(name)
        || ["_total", "_bucket", "_sum", "_count"]
            .iter()
            .any(|suffix| {
                name.strip_suffix(suffix)
                    .is_some_and(|base| declared.contains(base))
            })
}

/// Every metric an alert of the chart's PrometheusRule queries is one the operator (or, for the
/// webhook alert, the apiserver) really exports, with the label values the alert selects: an
/// alert on a misspelt metric would never fire.
async fn every_alert_of_the_prometheus_rule_names_metrics_that_exist(env: Arc<Env>) -> TestResult {
    let helm = Helm::new(&env)?;
    let objects = rendered_objects(&helm.template(
        "tenancy-operator",
        "tenancy-e2e",
        &["--set", "prometheusRule.enabled=true"],
    )?)?;
    let rule = find(&objects, "PrometheusRule", "tenancy-operator")?;
    let alerts: Vec<(String, String)> = rule["spec"]["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
        .map(|r| {
            (
                r["alert"].as_str().unwrap_or_default().to_string(),
                r["expr"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    if alerts.len() < 5 || alerts.iter().any(|(a, e)| a.is_empty() || e.is_empty()) {
        return Err(format!("the PrometheusRule's alerts: {alerts:?}").into());
    }

    // A webhook refusal, so that the apiserver's rejection counter has series.
    let client = env.client().await;
    let refused = Api::<DynamicObject>::namespaced_with(
        client.clone(),
        "default",
        &kube::core::ApiResource::erase::<tenancy_operator::api::ProjectMembership>(&()),
    )
    .create(
        &PostParams::default(),
        &serde_json::from_value(json!({
            "apiVersion": "tenancy.dev/v1alpha1", "kind": "ProjectMembership",
            "metadata": {"name": unique_name("e2e-alert"), "namespace": "default"},
            "spec": {"subject": {"kind": "User", "name": "nobody"}, "role": "Member"},
        }))?,
    )
    .await;
    if refused.is_ok() {
        return Err("a membership outside any project was admitted".into());
    }
    // A reconcile error in the running operator (a write the apiserver refuses), so that the
    // errors family has a series: every family is read from the operator itself.
    let prefix = unique_name("e2e-alert-refused");
    crate::reconcile::refuse_role_bindings_in(&env, &prefix).await?;
    let caused = async {
        let customer = unique_name("e2e-alert-c");
        apply_json(
            &client,
            customer_json(
                &customer,
                json!({"owners": [{"kind": "User", "name": "olga"}]}),
            ),
        )
        .await?;
        apply_json(
            &client,
            project_json(&format!("{prefix}-p"), json!({"customer": customer})),
        )
        .await?;
        crate::support::wait_for(
            "a reconcile error in the operator's metrics",
            Duration::from_secs(60),
            || async {
                crate::reconcile::operator_metrics(&env)
                    .await
                    .ok()
                    .filter(|m| m.contains("tenancy_reconcile_errors_total{"))
            },
        )
        .await
    }
    .await;
    crate::reconcile::lift_refusal(&env, &prefix).await?;
    caused?;
    let operator = crate::reconcile::operator_metrics(&env).await?;
    let apiserver = crate::reconcile::apiserver_metrics(&env).await?;
    let (ours, theirs) = (declared_metrics(&operator), declared_metrics(&apiserver));
    let mut problems = Vec::new();
    for (alert, expr) in &alerts {
        let names: BTreeSet<&str> = expr
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|t| t.starts_with("tenancy_") || t.starts_with("apiserver_"))
            .collect();
        if names.is_empty() {
            problems.push(format!("{alert} queries no metric: {expr}"));
        }
        for name in names {
            let (declared, by) = if name.starts_with("tenancy_") {
                (&ours, "the operator")
            } else {
                (&theirs, "the apiserver")
            };
            if !is_declared(declared, name) {
                problems.push(format!(
                    "{alert} queries {name}, which {by} does not export"
                ));
            }
        }
    }
    // The label values the alerts select of the operator's metrics exist: every
    // `label="value"` matcher on a tenancy_* metric is carried by one of its series (a misspelt
    // value never fires). The apiserver's failure outcomes cannot be caused here.
    for (alert, expr) in &alerts {
        let parts: Vec<&str> = expr.split('{').collect();
        for (before, rest) in parts.iter().zip(parts.iter().skip(1)) {
            let metric = before
                .rsplit(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .next()
                .unwrap_or_default();
            if !metric.starts_with("tenancy_") {
                continue;
            }
            let selector = rest.split('}').next().unwrap_or_default();
            for matcher in selector.split(',') {
                let Some((label, value)) = matcher.split_once('=') else {
                    continue;
                };
                if label.ends_with('!') || value.starts_with('~') {
                    continue;
                }
                let series = format!("{}={}", label.trim(), value.trim());
                let carried = operator
                    .lines()
                    .any(|l| l.starts_with(&format!("{metric}{{")) && l.contains(&series));
                if !carried {
                    problems.push(format!(
                        "{alert} selects {metric}{{{series}}}, which no series carries"
                    ));
                }
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n").into())
    }
}
