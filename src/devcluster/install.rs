//! What the Helm chart installs, for an operator running as a local process: the CRDs, the role
//! ClusterRoles, the operator's namespace, and webhook configurations that reach the operator's
//! webhook server on a loopback port. Used by `tenancy-operator dev` and the e2e suite.

use std::time::Duration;

use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhook, MutatingWebhookConfiguration, RuleWithOperations, ValidatingWebhook,
    ValidatingWebhookConfiguration, WebhookClientConfig,
};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, Resource};
use serde::Serialize;

use super::apply::{ApplyError, install_crds};
use crate::desired::RoleNames;
use crate::desired::access::role_cluster_roles;

/// Where a local operator serves, and the names it uses.
#[derive(Clone, Debug)]
pub struct LocalOperator {
    /// The operator's namespace (webhook certificate Secret, quota ledgers).
    pub namespace: String,
    /// Loopback port of the webhook server.
    pub webhook_port: u16,
    /// Name of both webhook configurations.
    pub config_name: String,
}

impl LocalOperator {
    /// A local operator on a free loopback port.
    pub fn new() -> std::io::Result<Self> {
        Ok(LocalOperator {
            namespace: "tenancy-system".into(),
            webhook_port: super::free_port()?,
            config_name: "tenancy-operator".into(),
        })
    }

    /// The `run` flags that make the operator serve where the webhook configurations point.
    pub fn run_args(&self) -> Vec<String> {
        vec![
            format!("--namespace={}", self.namespace),
            format!("--webhook-addr=127.0.0.1:{}", self.webhook_port),
            "--webhook-hosts=127.0.0.1,localhost".into(),
            format!("--webhook-config-name={}", self.config_name),
        ]
    }
}

fn rule(operations: &[&str], resources: &[&str]) -> RuleWithOperations {
    rule_in(
        crate::api::GROUP,
        crate::api::VERSION,
        operations,
        resources,
    )
}

fn rule_in(
    group: &str,
    version: &str,
    operations: &[&str],
    resources: &[&str],
) -> RuleWithOperations {
    RuleWithOperations {
        api_groups: Some(vec![group.into()]),
        api_versions: Some(vec![version.into()]),
        operations: Some(operations.iter().map(|s| s.to_string()).collect()),
        resources: Some(resources.iter().map(|s| s.to_string()).collect()),
        scope: None,
    }
}

/// The webhook configurations, pointing at `base_url` (`https://127.0.0.1:8443`). The caBundle
/// is left for the operator to fill in.
pub fn webhook_configurations(
    name: &str,
    base_url: &str,
) -> (ValidatingWebhookConfiguration, MutatingWebhookConfiguration) {
    let meta = ObjectMeta {
        name: Some(name.into()),
        ..Default::default()
    };
    let client = |path: &str| WebhookClientConfig {
        url: Some(format!("{base_url}{path}")),
        ..Default::default()
    };
    let validating = ValidatingWebhookConfiguration {
        metadata: meta.clone(),
        webhooks: Some(vec![
            ValidatingWebhook {
                name: "validate.tenancy.dev".into(),
                client_config: client("/validate"),
                rules: Some(vec![
                    rule(
                        &["CREATE", "UPDATE", "DELETE"],
                        &["projects", "projectmemberships"],
                    ),
                    rule(&["CREATE", "UPDATE", "DELETE"], &["customers"]),
                ]),
                failure_policy: Some("Fail".into()),
                // The quota ledger is written on admission, except for dry runs.
                side_effects: "NoneOnDryRun".into(),
                admission_review_versions: vec!["v1".into()],
                timeout_seconds: Some(15),
                ..Default::default()
            },
            ValidatingWebhook {
                // RoleBindings in project namespaces only (tenants cannot relabel namespaces): people
                // get access there only through memberships and customer roles.
                name: "rolebindings.tenancy.dev".into(),
                client_config: client("/validate"),
                rules: Some(vec![rule_in(
                    "rbac.authorization.k8s.io",
                    "v1",
                    &["CREATE", "UPDATE"],
                    &["rolebindings"],
                )]),
                namespace_selector: Some(LabelSelector {
                    match_labels: Some(
                        [(
                            crate::desired::labels::MANAGED_BY.to_string(),
                            crate::desired::labels::MANAGED_BY_VALUE.to_string(),
                        )]
                        .into(),
                    ),
                    ..Default::default()
                }),
                failure_policy: Some("Fail".into()),
                side_effects: "None".into(),
                admission_review_versions: vec!["v1".into()],
                timeout_seconds: Some(15),
                ..Default::default()
            },
        ]),
    };
    let mutating = MutatingWebhookConfiguration {
        metadata: meta,
        webhooks: Some(vec![MutatingWebhook {
            name: "mutate.tenancy.dev".into(),
            client_config: client("/mutate"),
            rules: Some(vec![rule(
                &["CREATE", "UPDATE"],
                &["projects", "projectmemberships"],
            )]),
            failure_policy: Some("Fail".into()),
            side_effects: "None".into(),
            admission_review_versions: vec!["v1".into()],
            timeout_seconds: Some(10),
            ..Default::default()
        }]),
    };
    (validating, mutating)
}

async fn apply<K>(client: &Client, obj: &K) -> Result<(), ApplyError>
where
    K: Resource<DynamicType = ()>
        + Serialize
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let name = obj.meta().name.clone().unwrap_or_default();
    let api: Api<K> = Api::all(client.clone());
    api.patch(
        &name,
        &PatchParams::apply("tenancy-devcluster").force(),
        &Patch::Apply(obj),
    )
    .await
    .map_err(|source| ApplyError::Api {
        what: format!("{} {name}", K::kind(&())),
        source,
    })?;
    Ok(())
}

/// Installs the CRDs (waiting until Established), the role ClusterRoles, the operator's
/// namespace and the webhook configurations for `local`.
pub async fn install(client: &Client, local: &LocalOperator) -> Result<(), ApplyError> {
    install_crds(
        client,
        &crate::api::crds(),
        "tenancy-devcluster",
        Duration::from_secs(60),
    )
    .await?;
    for role in role_cluster_roles(&RoleNames::default()) {
        apply(client, &role).await?;
    }
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(local.namespace.clone()),
            ..Default::default()
        },
        ..Default::default()
    };
    apply(client, &ns).await?;
    let (validating, mutating) = webhook_configurations(
        &local.config_name,
        &format!("https://127.0.0.1:{}", local.webhook_port),
    );
    apply(client, &validating).await?;
    apply(client, &mutating).await?;
    Ok(())
}
