//! The chart's RBAC is sufficient and minimal: the operator binary, authenticated with a token
//! of the chart's own ServiceAccount (so it holds exactly the chart's permissions, nothing of
//! the admin's), runs the core scenario with leader election and serves the read API
//! views.tenancy.dev; its log shows no request refused. SubjectAccessReviews then show what that
//! account cannot do.

use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::{Namespace, ResourceQuota};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService;
use kube::api::{DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};
use tenancy_operator::devcluster::install::APISERVICE;

use super::{
    Helm, apply_json, customer_json, delete_project_and_wait, delete_tenancy, eventually, get_json,
    membership_json, object_where, project_json, ready_project,
};
use crate::support::{
    Env, Failed, OperatorProcess, TestResult, Trial, start_operator_as, trial, unique_name,
};

pub fn trials(env: &Arc<Env>) -> Vec<Trial> {
    vec![trial(
        env,
        "chart::the_operator_runs_the_core_scenario_on_exactly_the_charts_rbac",
        the_operator_runs_the_core_scenario_on_exactly_the_charts_rbac,
    )]
}

/// The suite's operator, stopped for as long as this lives and started again (same flags, same
/// ports) when it is dropped, also when the test fails or times out. Declare it before the
/// test's own operator processes, so that those are stopped first and free the webhook port.
pub(super) struct SuiteOperatorPaused<'a> {
    env: &'a Env,
}

impl<'a> SuiteOperatorPaused<'a> {
    pub(super) fn new(env: &'a Env) -> Result<Self, Failed> {
        let operator = env
            .operator()
            .ok_or("this suite runs without the operator (START_OPERATOR)")?;
        operator.pause();
        Ok(SuiteOperatorPaused { env })
    }
}

impl Drop for SuiteOperatorPaused<'_> {
    fn drop(&mut self) {
        if let Some(operator) = self.env.operator()
            && let Err(e) = operator.resume(self.env.cluster())
        {
            eprintln!("[e2e] the suite's operator did not start again: {e}");
        }
    }
}

/// Whether `user` (with the groups the apiserver gives a ServiceAccount) may `verb` the
/// resource, as the apiserver's authorizer answers.
#[allow(clippy::too_many_arguments)]
pub(super) async fn allowed(
    client: &Client,
    user: &str,
    groups: &[&str],
    verb: &str,
    group: &str,
    resource: &str,
    namespace: Option<&str>,
    name: Option<&str>,
) -> Result<bool, Failed> {
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(user.to_string()),
            groups: Some(groups.iter().map(|g| g.to_string()).collect()),
            resource_attributes: Some(ResourceAttributes {
                group: Some(group.to_string()),
                resource: Some(resource.to_string()),
                verb: Some(verb.to_string()),
                namespace: namespace.map(str::to_string),
                name: name.map(str::to_string),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let answer = Api::<SubjectAccessReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await?;
    Ok(answer.status.is_some_and(|s| s.allowed))
}

/// A kubeconfig that authenticates with a token of `namespace/account` from the TokenRequest
/// API: requests made with it are that ServiceAccount's, with exactly its permissions.
fn service_account_kubeconfig(
    env: &Env,
    namespace: &str,
    account: &str,
) -> Result<std::path::PathBuf, Failed> {
    let out = env.kubectl(&[
        "create",
        "token",
        account,
        "--namespace",
        namespace,
        "--duration=2h",
    ]);
    let token = crate::support::stdout_of(&out, "kubectl create token")?;
    let token = token.trim();
    let ca = env.cluster().dir().join("pki/ca.crt");
    let yaml = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: e2e\n  cluster:\n    server: {server}\n    certificate-authority: {ca}\nusers:\n- name: {account}\n  user:\n    token: {token}\ncontexts:\n- name: {account}\n  context:\n    cluster: e2e\n    user: {account}\ncurrent-context: {account}\n",
        server = env.cluster().server_url(),
        ca = ca.display(),
    );
    let dir = env.cluster().dir().join("users");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("sa-{namespace}-{account}.kubeconfig"));
    std::fs::write(&path, yaml)?;
    Ok(path)
}

/// The operator's log lines that say a request was refused by authorization.
fn refusals(operator: &OperatorProcess) -> Vec<String> {
    std::fs::read_to_string(operator.log_path())
        .unwrap_or_default()
        .lines()
        .filter(|l| l.to_lowercase().contains("forbidden"))
        .map(str::to_string)
        .collect()
}

fn membership_phase(phase: &'static str) -> impl Fn(&Value) -> Result<(), String> {
    move |m| {
        let bound = phase != "Active" || !m["status"]["roleBinding"].is_null();
        if m["status"]["phase"] == phase
            && m["status"]["observedGeneration"] == m["metadata"]["generation"]
            && bound
        {
            Ok(())
        } else {
            Err(format!("status is {}", m["status"]))
        }
    }
}

/// Names of the RoleBindings the operator made in a namespace.
async fn operator_bindings(client: &Client, ns: &str) -> Result<Vec<String>, Failed> {
    Ok(Api::<RoleBinding>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels(tenancy_operator::desired::labels::MANAGED_SELECTOR))
        .await?
        .items
        .iter()
        .map(|rb| rb.name_any())
        .collect())
}

/// The chart's ServiceAccount and RBAC (rendered by `helm template` with the defaults for a
/// release named `tenancy-operator` in the suite's operator namespace, so the names it grants by
/// name are the suite's: webhook Secret and configurations, APIService, leader Lease; and with
/// the read API's grants: system:auth-delegator and the kube-system
/// extension-apiserver-authentication-reader) are applied; the suite's operator is stopped and
/// the operator binary runs with a token of that ServiceAccount and leader election, serving the
/// suite's webhook and read API (the suite's flags, `--apiservice-name` included). As the admin:
/// a customer with a quota (the ledger), a project with a Manager, a Member and a membership
/// expiring in seconds: bindings appear and grant, the manager lists the project through the
/// read API; the expiring one expires. Another project's end date passes: its Deployment is scaled
/// to 0 and its CronJob suspended, and restored when the end date moves later. Soft delete (the
/// finalizer is released; the namespace frozen and archived; bindings gone; memberships
/// Revoked), recovery with restoreTeamMembers (members back, the expired one skipped), and
/// recovery with invitations (an invitation Role the invited user accepts with). The operator's
/// log has no "forbidden", and the suite's APIService still has the suite's caBundle. Then
/// SubjectAccessReviews: no Secrets outside its namespace, no binding or escalating to
/// cluster-admin, no impersonation, no other APIService or kube-system ConfigMap.
async fn the_operator_runs_the_core_scenario_on_exactly_the_charts_rbac(
    env: Arc<Env>,
) -> TestResult {
    let client = env.client().await;
    let local = env.local().clone();
    let ns = local.namespace.clone();
    let account = "tenancy-operator";
    let sa_user = format!("system:serviceaccount:{ns}:{account}");
    let sa_groups = [
        "system:serviceaccounts".to_string(),
        format!("system:serviceaccounts:{ns}"),
        "system:authenticated".to_string(),
    ];
    let sa_groups: Vec<&str> = sa_groups.iter().map(String::as_str).collect();

    // The chart's ServiceAccount and RBAC, as the chart renders them.
    let helm = Helm::new(&env)?;
    let rendered = helm.template(
        "tenancy-operator",
        &ns,
        &[
            "--show-only",
            "templates/serviceaccount.yaml",
            "--show-only",
            "templates/rbac.yaml",
        ],
    )?;
    let rbac_objects = env
        .apply_yaml(&rendered)
        .await
        .map_err(|e| format!("applying the chart's RBAC: {e}"))?;
    // The read API's built-in grants come with rbac.yaml (views.enabled is the default); the
    // operator below serves the read API and fails on their absence.
    for (kind, namespace, name) in [
        (
            "ClusterRoleBinding",
            None,
            "tenancy-operator:auth-delegator",
        ),
        (
            "RoleBinding",
            Some("kube-system"),
            "tenancy-operator:auth-reader",
        ),
    ] {
        if !rbac_objects.iter().any(|o| {
            o.types.as_ref().is_some_and(|t| t.kind == kind)
                && o.metadata.namespace.as_deref() == namespace
                && o.name_any() == name
        }) {
            env.delete_objects(&rbac_objects).await?;
            return Err(format!("the chart's rbac.yaml has no {kind} {name}").into());
        }
    }
    if local.config_name != "tenancy-operator" {
        return Err(format!(
            "the suite's webhook configurations are named {}, the chart's RBAC grants tenancy-operator",
            local.config_name
        )
        .into());
    }
    let kubeconfig = service_account_kubeconfig(&env, &ns, account)?;
    let whoami = crate::support::kubectl_with(&kubeconfig, &["auth", "whoami", "-o", "json"], None);
    let whoami = crate::support::stdout_of(&whoami, "kubectl auth whoami")?;
    if !whoami.contains(&format!("\"username\": \"{sa_user}\"")) {
        return Err(format!("the token is not the ServiceAccount's: {whoami}").into());
    }

    // The suite's APIService (its read API) trusts the suite's generated CA. The operator below
    // runs with the suite's flags, `--apiservice-name` included, so it keeps that APIService's
    // caBundle equal to its own CA, and would re-point it (breaking the read API for the rest of
    // the suite) if it had generated another one. It does not: a certificate is generated only
    // when the Secret tenancy-system/tenancy-operator-webhook-tls is missing, and this one
    // serves the certificate the suite's operator keeps there (the chart's Role lets it read
    // that Secret, by name), so the CA is the same and it patches nothing. Checked below while
    // it runs (and the manager's myprojects request passes the aggregator's check of its
    // serving certificate against that caBundle).
    let api_services = Api::<APIService>::all(client.clone());
    let suite_ca = api_services
        .get(APISERVICE)
        .await?
        .spec
        .and_then(|s| s.ca_bundle);
    if suite_ca.is_none() {
        env.delete_objects(&rbac_objects).await?;
        return Err(format!("the suite's APIService {APISERVICE} has no caBundle").into());
    }
    let outcome = {
        let _paused = SuiteOperatorPaused::new(&env)?;
        let mut args = local.run_args();
        args.push("--leader-election".into());
        args.push(format!("--trusted-users={sa_user}"));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let operator = start_operator_as(env.cluster(), "operator-chart-rbac", &kubeconfig, &args)
            .map_err(|e| format!("the operator did not start with the chart's RBAC: {e}"))?;
        let scenario = core_scenario(&env, &client).await;
        let scenario = match api_services.get(APISERVICE).await {
            Ok(s) if s.spec.as_ref().and_then(|s| s.ca_bundle.as_ref()) == suite_ca.as_ref() => {
                scenario
            }
            Ok(_) => scenario.and(Err(
                "the operator re-pointed the suite's APIService at another CA".into(),
            )),
            Err(e) => scenario.and(Err(e.into())),
        };
        let refused = refusals(&operator);
        let log = operator.log_path().display().to_string();
        drop(operator);
        match (scenario, refused.is_empty()) {
            (Err(e), _) => Err(format!(
                "{}\n(operator log: {log}; refused requests: {refused:#?})",
                super::why(&e)
            )
            .into()),
            (Ok(()), false) => Err(format!(
                "the operator was refused requests with the chart's RBAC ({log}):\n{}",
                refused.join("\n")
            )
            .into()),
            (Ok(()), true) => Ok(()),
        }
    };
    if let Err(e) = outcome {
        env.delete_objects(&rbac_objects).await?;
        return Err(e);
    }

    // What the account cannot do.
    let sar = |verb: &'static str,
               group: &'static str,
               resource: &'static str,
               namespace: Option<&'static str>,
               name: Option<&'static str>| {
        let (client, user, groups) = (client.clone(), sa_user.clone(), sa_groups.clone());
        async move {
            allowed(
                &client, &user, &groups, verb, group, resource, namespace, name,
            )
            .await
        }
    };
    let mut wrong = Vec::new();
    for (verb, group, resource, namespace, name, want) in [
        ("get", "", "secrets", Some("default"), None, false),
        ("list", "", "secrets", Some("kube-system"), None, false),
        ("list", "", "secrets", None, None, false),
        ("watch", "", "secrets", None, None, false),
        (
            "bind",
            "rbac.authorization.k8s.io",
            "clusterroles",
            None,
            Some("cluster-admin"),
            false,
        ),
        (
            "escalate",
            "rbac.authorization.k8s.io",
            "clusterroles",
            None,
            Some("cluster-admin"),
            false,
        ),
        (
            "escalate",
            "rbac.authorization.k8s.io",
            "clusterroles",
            None,
            None,
            false,
        ),
        (
            "bind",
            "rbac.authorization.k8s.io",
            "clusterroles",
            None,
            Some("admin"),
            false,
        ),
        ("impersonate", "", "users", None, None, false),
        ("impersonate", "", "groups", None, None, false),
        ("impersonate", "", "serviceaccounts", None, None, false),
        ("create", "", "pods", Some("default"), None, false),
        (
            "delete",
            "apiextensions.k8s.io",
            "customresourcedefinitions",
            None,
            None,
            false,
        ),
        (
            "patch",
            "admissionregistration.k8s.io",
            "validatingwebhookconfigurations",
            None,
            Some("someone-elses"),
            false,
        ),
        ("create", "tenancy.dev", "customers", None, None, false),
        // What it needs, by name.
        (
            "bind",
            "rbac.authorization.k8s.io",
            "clusterroles",
            None,
            Some("tenancy:project-manager"),
            true,
        ),
        (
            "get",
            "",
            "secrets",
            Some("tenancy-system"),
            Some("tenancy-operator-webhook-tls"),
            true,
        ),
        (
            "get",
            "",
            "secrets",
            Some("tenancy-system"),
            Some("another-secret"),
            false,
        ),
        (
            "patch",
            "admissionregistration.k8s.io",
            "validatingwebhookconfigurations",
            None,
            Some("tenancy-operator"),
            true,
        ),
        // The read API: its own APIService's caBundle, the front proxy's CA, delegated
        // authorization; nothing more of the aggregation layer or of kube-system.
        (
            "patch",
            "apiregistration.k8s.io",
            "apiservices",
            None,
            Some(APISERVICE),
            true,
        ),
        (
            "patch",
            "apiregistration.k8s.io",
            "apiservices",
            None,
            Some("v1beta1.metrics.k8s.io"),
            false,
        ),
        (
            "create",
            "apiregistration.k8s.io",
            "apiservices",
            None,
            None,
            false,
        ),
        (
            "get",
            "",
            "configmaps",
            Some("kube-system"),
            Some("extension-apiserver-authentication"),
            true,
        ),
        (
            "get",
            "",
            "configmaps",
            Some("kube-system"),
            Some("kube-root-ca.crt"),
            false,
        ),
        (
            "create",
            "authorization.k8s.io",
            "subjectaccessreviews",
            None,
            None,
            true,
        ),
    ] {
        if sar(verb, group, resource, namespace, name).await? != want {
            wrong.push(format!(
                "{verb} {resource}.{group} {} {}: {}",
                namespace.unwrap_or("(cluster)"),
                name.unwrap_or("(any)"),
                if want { "refused" } else { "allowed" }
            ));
        }
    }
    // Creating a ClusterRoleBinding to cluster-admin is refused by the apiserver itself when
    // asked by the account: try it with its token.
    let sa_client = Client::try_from(
        kube::Config::from_custom_kubeconfig(
            kube::config::Kubeconfig::read_from(&kubeconfig)?,
            &Default::default(),
        )
        .await?,
    )?;
    let crb: k8s_openapi::api::rbac::v1::ClusterRoleBinding = serde_json::from_value(json!({
        "metadata": {"name": unique_name("e2e-escalation")},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": ns}],
    }))?;
    match Api::<k8s_openapi::api::rbac::v1::ClusterRoleBinding>::all(sa_client)
        .create(&PostParams::default(), &crb)
        .await
    {
        Err(kube::Error::Api(s)) if s.code == 403 => {}
        other => wrong.push(format!(
            "creating a ClusterRoleBinding to cluster-admin with the account's token: {other:?}"
        )),
    }
    env.delete_objects(&rbac_objects).await?;
    if !wrong.is_empty() {
        return Err(format!(
            "the chart's ServiceAccount has the wrong permissions:\n{}",
            wrong.join("\n")
        )
        .into());
    }
    Ok(())
}

/// The core scenario, as the admin, against whatever operator runs.
async fn core_scenario(env: &Env, client: &Client) -> TestResult {
    let customer = unique_name("e2e-rbac");
    let project = format!("{customer}-app");
    let suspended = format!("{customer}-batch");
    let mut cleanup = Cleanup::default();
    let result = async {
        apply_json(
            client,
            customer_json(
                &customer,
                json!({
                    "owners": [{"kind": "User", "name": format!("{customer}-owner@example.com")}],
                    "quota": {"projects": 5, "hard": {"requests.cpu": "4"}},
                }),
            ),
        )
        .await?;
        cleanup.customers.push(customer.clone());
        apply_json(
            client,
            project_json(
                &project,
                json!({"customer": customer, "quota": {"hard": {"requests.cpu": "1"}}}),
            ),
        )
        .await?;
        cleanup.projects.push(project.clone());
        ready_project(client, &project).await?;

        // The ledger was written through the chart's Role.
        let ledger = format!("tenancy-ledger-{customer}");
        if Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(client.clone(), &env.local().namespace)
            .get_opt(&ledger)
            .await?
            .is_none()
        {
            return Err(format!("no quota ledger {ledger}").into());
        }

        let (manager, member, visitor) = (
            format!("{customer}-manager@example.com"),
            format!("{customer}-member@example.com"),
            format!("{customer}-visitor@example.com"),
        );
        apply_json(client, membership_json(&project, "manager", &manager, "Manager")).await?;
        apply_json(client, membership_json(&project, "member", &member, "Member")).await?;
        // The visitor's membership expires in an hour; once it grants, it is cut short (so that
        // no race with a loaded machine decides whether it was ever seen Active).
        let mut expiring = membership_json(&project, "visitor", &visitor, "Member");
        let later = Timestamp::now() + SignedDuration::from_secs(3600);
        expiring["spec"]["expirationTime"] = json!(later.to_string());
        apply_json(client, expiring.clone()).await?;
        for m in ["manager", "member", "visitor"] {
            object_where(
                client,
                "projectmemberships",
                Some(&project),
                m,
                "Active",
                Duration::from_secs(30),
                membership_phase("Active"),
            )
            .await?;
        }
        let can = |user: String, verb: &'static str, resource: &'static str| {
            let project = project.clone();
            async move { env.can_i(&user, &[], verb, resource, Some(&project)).await }
        };
        if !can(manager.clone(), "create", "deployments.apps").await
            || !can(member.clone(), "list", "pods").await
            || can(member.clone(), "create", "deployments.apps").await
        {
            return Err("the membership RoleBindings do not grant what their roles say".into());
        }
        // The read API as this operator serves it with the chart's grants, through
        // kube-apiserver: the front proxy's CA read from kube-system (the auth-reader binding),
        // the request authorized by a SubjectAccessReview (system:auth-delegator), the
        // manager's own project listed. Without the client's retries, which would wait out a
        // 503 (the read API's answer when it cannot authorize) for many minutes.
        let mut as_manager = env.cluster().client_config();
        as_manager.auth_info.impersonate = Some(manager.clone());
        as_manager.default_retry = false;
        let myprojects = Api::<DynamicObject>::all_with(
            Client::try_from(as_manager)?,
            &ApiResource::from_gvk_with_plural(
                &GroupVersionKind::gvk("views.tenancy.dev", "v1alpha1", "MyProject"),
                "myprojects",
            ),
        );
        eventually("the manager's myprojects to list the project", Duration::from_secs(30), || async {
            let listed = myprojects
                .list(&ListParams::default())
                .await
                .map_err(|e| e.to_string())?;
            let names: Vec<String> = listed.items.iter().map(|p| p.name_any()).collect();
            if names.contains(&project) {
                Ok(())
            } else {
                Err(format!("it lists {names:?}"))
            }
        })
        .await?;
        eventually("the visitor to be granted access", Duration::from_secs(60), || async {
            if can(visitor.clone(), "list", "pods").await {
                Ok(())
            } else {
                Err("not allowed yet".to_string())
            }
        })
        .await?;
        let now = Timestamp::from_second(Timestamp::now().as_second()).map_err(|e| e.to_string())?;
        expiring["spec"]["expirationTime"] = json!(now.to_string());
        apply_json(client, expiring).await?;
        object_where(
            client,
            "projectmemberships",
            Some(&project),
            "visitor",
            "Expired",
            Duration::from_secs(60),
            membership_phase("Expired"),
        )
        .await?;
        eventually("the visitor to lose access", Duration::from_secs(60), || async {
            if can(visitor.clone(), "list", "pods").await {
                Err("still allowed".to_string())
            } else {
                Ok(())
            }
        })
        .await?;

        // The expiration policy Suspend on real workloads, and its undoing.
        apply_json(client, project_json(&suspended, json!({"customer": customer, "quota": {"hard": {"requests.cpu": "1"}}}))).await?;
        cleanup.projects.push(suspended.clone());
        ready_project(client, &suspended).await?;
        let deployments = Api::<Deployment>::namespaced(client.clone(), &suspended);
        let cronjobs = Api::<CronJob>::namespaced(client.clone(), &suspended);
        deployments
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({
                    "metadata": {"name": "web"},
                    "spec": {
                        "replicas": 2,
                        "selector": {"matchLabels": {"app": "web"}},
                        "template": {"metadata": {"labels": {"app": "web"}},
                            "spec": {"containers": [{"name": "web", "image": "registry.invalid/web:1"}]}},
                    },
                }))?,
            )
            .await?;
        cronjobs
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({
                    "metadata": {"name": "nightly"},
                    "spec": {
                        "schedule": "0 3 * * *",
                        "jobTemplate": {"spec": {"template": {"spec": {
                            "restartPolicy": "Never",
                            "containers": [{"name": "job", "image": "registry.invalid/job:1"}],
                        }}}},
                    },
                }))?,
            )
            .await?;
        apply_json(
            client,
            project_json(
                &suspended,
                json!({"customer": customer, "endDate": "2020-01-31", "gracePeriodDays": 0, "expirationPolicy": "Suspend", "quota": {"hard": {"requests.cpu": "1"}}}),
            ),
        )
        .await?;
        eventually("the Deployment scaled to 0 and the CronJob suspended", Duration::from_secs(30), || async {
            let d = deployments.get("web").await.map_err(|e| e.to_string())?;
            let c = cronjobs.get("nightly").await.map_err(|e| e.to_string())?;
            let replicas = d.spec.and_then(|s| s.replicas);
            let suspend = c.spec.and_then(|s| s.suspend);
            if replicas == Some(0) && suspend == Some(true) {
                Ok(())
            } else {
                Err(format!("replicas {replicas:?}, suspend {suspend:?}"))
            }
        })
        .await?;
        apply_json(
            client,
            project_json(
                &suspended,
                json!({"customer": customer, "endDate": "2099-12-31", "gracePeriodDays": 0, "expirationPolicy": "Suspend", "quota": {"hard": {"requests.cpu": "1"}}}),
            ),
        )
        .await?;
        eventually("the Deployment back at 2 and the CronJob resumed", Duration::from_secs(30), || async {
            let d = deployments.get("web").await.map_err(|e| e.to_string())?;
            let c = cronjobs.get("nightly").await.map_err(|e| e.to_string())?;
            let replicas = d.spec.and_then(|s| s.replicas);
            let suspend = c.spec.and_then(|s| s.suspend);
            if replicas == Some(2) && suspend == Some(false) {
                Ok(())
            } else {
                Err(format!("replicas {replicas:?}, suspend {suspend:?}"))
            }
        })
        .await?;
        deployments.delete("web", &DeleteParams::default()).await?;
        cronjobs.delete("nightly", &DeleteParams::default()).await?;

        // Soft delete.
        delete_project_and_wait(client, &project).await?;
        let namespace = Api::<Namespace>::all(client.clone()).get(&project).await?;
        let labels = namespace.labels();
        if labels.get("tenancy.dev/state").map(String::as_str) != Some("terminated")
            || !namespace.annotations().contains_key("tenancy.dev/archive")
        {
            return Err(format!(
                "namespace {project} is not frozen and archived: labels {labels:?}"
            )
            .into());
        }
        let quota = Api::<ResourceQuota>::namespaced(client.clone(), &project)
            .get("tenancy-quota")
            .await?;
        let pods = quota
            .spec
            .and_then(|s| s.hard)
            .and_then(|h| h.get("pods").cloned());
        if pods.as_ref().map(|q| q.0.as_str()) != Some("0") {
            return Err(format!("the frozen quota has pods {pods:?}, want 0").into());
        }
        let left = operator_bindings(client, &project).await?;
        if !left.is_empty() {
            return Err(format!("RoleBindings left after the soft delete: {left:?}").into());
        }
        for m in ["manager", "member"] {
            object_where(
                client,
                "projectmemberships",
                Some(&project),
                m,
                "Revoked",
                Duration::from_secs(30),
                membership_phase("Revoked"),
            )
            .await?;
        }

        // Recovery with the team restored (staff only; the admin is staff).
        apply_json(
            client,
            project_json(
                &project,
                json!({"customer": customer, "quota": {"hard": {"requests.cpu": "1"}},
                       "recovery": {"restoreTeamMembers": true}}),
            ),
        )
        .await?;
        ready_project(client, &project).await?;
        for m in ["manager", "member"] {
            object_where(
                client,
                "projectmemberships",
                Some(&project),
                m,
                "Active",
                Duration::from_secs(30),
                membership_phase("Active"),
            )
            .await?;
        }
        if !can(member.clone(), "list", "pods").await {
            return Err("the restored member has no access".into());
        }
        // The expired one is skipped: not restored, no access.
        let visitor_now = get_json(client, "projectmemberships", Some(&project), "visitor")
            .await?
            .ok_or("the visitor's membership is gone")?;
        if visitor_now["status"]["phase"] == "Active" || can(visitor.clone(), "list", "pods").await
        {
            return Err(format!(
                "recovery restored the expired membership: {}",
                visitor_now["status"]
            )
            .into());
        }

        // Recovery with invitations: an invitation Role lets the member accept.
        delete_project_and_wait(client, &project).await?;
        apply_json(
            client,
            project_json(
                &project,
                json!({"customer": customer, "quota": {"hard": {"requests.cpu": "1"}},
                       "recovery": {"sendInvitationsToPreviousMembers": true}}),
            ),
        )
        .await?;
        ready_project(client, &project).await?;
        object_where(
            client,
            "projectmemberships",
            Some(&project),
            "member",
            "Pending",
            Duration::from_secs(30),
            membership_phase("Pending"),
        )
        .await?;
        let invitation = "tenancy-invitation-member";
        eventually("the invitation Role and RoleBinding", Duration::from_secs(60), || async {
            let role = Api::<Role>::namespaced(client.clone(), &project)
                .get_opt(invitation)
                .await
                .map_err(|e| e.to_string())?;
            let binding = Api::<RoleBinding>::namespaced(client.clone(), &project)
                .get_opt(invitation)
                .await
                .map_err(|e| e.to_string())?;
            if role.is_some() && binding.is_some() {
                Ok(())
            } else {
                Err(format!("role {}, binding {}", role.is_some(), binding.is_some()))
            }
        })
        .await?;
        if can(member.clone(), "list", "pods").await {
            return Err("a member whose invitation is pending already has access".into());
        }
        let as_member = env.client_as(&member, &[]).await;
        let ar = kube::core::ApiResource::from_gvk_with_plural(
            &kube::core::GroupVersionKind::gvk("tenancy.dev", "v1alpha1", "ProjectMembership"),
            "projectmemberships",
        );
        let own = Api::<kube::core::DynamicObject>::namespaced_with(as_member, &project, &ar);
        eventually("the invited member to accept", Duration::from_secs(60), || async {
            own.patch(
                "member",
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"annotations": {"tenancy.dev/accept": "true"}}})),
            )
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
        })
        .await?;
        object_where(
            client,
            "projectmemberships",
            Some(&project),
            "member",
            "Active after acceptance",
            Duration::from_secs(30),
            membership_phase("Active"),
        )
        .await?;
        Ok(())
    }
    .await;
    let cleaned = cleanup.run(client).await;
    result.and(cleaned)
}

/// Tenancy objects a scenario made, deleted (projects first, waiting for their finalizer while
/// the operator under test still runs) whatever the outcome.
#[derive(Default)]
struct Cleanup {
    projects: Vec<String>,
    customers: Vec<String>,
}

impl Cleanup {
    async fn run(&self, client: &Client) -> TestResult {
        let mut problems = Vec::new();
        for p in &self.projects {
            // A scenario that failed half-way may have left workloads, which block the delete.
            let _ = Api::<Deployment>::namespaced(client.clone(), p)
                .delete_collection(&DeleteParams::default(), &ListParams::default())
                .await;
            let _ = Api::<CronJob>::namespaced(client.clone(), p)
                .delete_collection(&DeleteParams::default(), &ListParams::default())
                .await;
            if let Err(e) = delete_project_and_wait(client, p).await {
                problems.push(super::why(&e));
            }
        }
        for c in &self.customers {
            if let Err(e) = delete_tenancy(client, "customers", None, c).await {
                problems.push(super::why(&e));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("\n").into())
        }
    }
}
