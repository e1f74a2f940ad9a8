//! What the Helm chart installs, for an operator running as a local process: the CRDs, the role
//! ClusterRoles, the operator's namespace, and webhook configurations that reach the operator's
//! webhook server on a loopback port. Used by `tenancy-operator dev` and the e2e suite.

use std::time::Duration;

use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration, WebhookClientConfig,
};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, Resource};
use serde::{Deserialize, Serialize};

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
            format!(
                "--webhook-hosts=127.0.0.1,localhost,{}",
                self.service_host()
            ),
            format!("--webhook-config-name={}", self.config_name),
            format!("--apiservice-name={APISERVICE}"),
        ]
    }

    /// The chart's Service name as the aggregator checks it in the serving certificate
    /// (`<service>.<namespace>.svc`; the release is named like the chart, so the Service is too).
    pub fn service_host(&self) -> String {
        format!("{}.{}.svc", self.config_name, self.namespace)
    }
}

/// The user a local operator authenticates as (with a client certificate, in group
/// `system:masters`): the chart's ServiceAccount's name for release `tenancy-operator` in
/// `tenancy-system` ([`LocalOperator::new`]), so that the chart's webhook configurations, which
/// skip the operator's own requests, treat it as they treat the installed operator.
pub const OPERATOR_USER: &str = "system:serviceaccount:tenancy-system:tenancy-operator";

/// The read API's APIService.
pub const APISERVICE: &str = "v1alpha1.views.tenancy.dev";

/// `helm template` of one of the chart's templates, as release `name` in `namespace`.
fn render(
    helm: &std::path::Path,
    name: &str,
    namespace: &str,
    template: &str,
) -> Result<String, String> {
    let out = std::process::Command::new(helm)
        .args(["template", name])
        .arg(chart_dir())
        .args(["--namespace", namespace, "--show-only", template])
        .output()
        .map_err(|e| format!("running {}: {e}", helm.display()))?;
    if !out.status.success() {
        return Err(format!(
            "helm template of the chart's {template} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The chart's read API objects (`templates/views.yaml`: the APIService, the ClusterRole that
/// lets everyone read the views and its binding), with the APIService reaching a local operator:
/// its Service is replaced by one of `type: ExternalName` to `localhost` on `port` (the
/// aggregator then dials `localhost:port`; Endpoints cannot hold loopback addresses). The
/// caBundle is left for the operator to fill in.
pub fn views_objects(
    helm: &std::path::Path,
    name: &str,
    namespace: &str,
    port: u16,
) -> Result<Vec<serde_json::Value>, String> {
    let text = render(helm, name, namespace, "templates/views.yaml")?;
    let mut out = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let mut value = serde_json::Value::deserialize(doc).map_err(|e| e.to_string())?;
        if value.is_null() {
            continue;
        }
        if value["kind"] == "APIService" {
            let service = value["spec"]["service"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            if service != name {
                return Err(format!(
                    "the chart's APIService names Service {service:?}, not {name:?}"
                ));
            }
            value["spec"]["service"]["port"] = serde_json::json!(port);
            out.push(serde_json::json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": service, "namespace": namespace},
                "spec": {"type": "ExternalName", "externalName": "localhost",
                         "ports": [{"name": "https", "port": port, "protocol": "TCP"}]},
            }));
        }
        out.push(value);
    }
    Ok(out)
}

/// The chart this repository ships (its webhook configurations are the ones every local install
/// uses: one source).
pub fn chart_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/tenancy-operator")
}

/// The chart's webhook configurations, rendered by `helm template` as release `name` in
/// `namespace`, with every webhook pointed at `base_url` (`https://127.0.0.1:8443`) instead of the
/// chart's Service: the local install (dev, e2e) serves the very rules, policies, timeouts and
/// selectors the chart installs. The caBundle is left for the operator to fill in.
pub fn webhook_configurations(
    helm: &std::path::Path,
    name: &str,
    namespace: &str,
    base_url: &str,
) -> Result<(ValidatingWebhookConfiguration, MutatingWebhookConfiguration), String> {
    let text = render(helm, name, namespace, "templates/webhooks.yaml")?;
    let point = |c: &mut WebhookClientConfig| {
        let path = c.service.take().and_then(|s| s.path).unwrap_or_default();
        c.url = Some(format!("{base_url}{path}"));
    };
    let (mut validating, mut mutating) = (None, None);
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let value = serde_json::Value::deserialize(doc).map_err(|e| e.to_string())?;
        match value["kind"].as_str() {
            Some("ValidatingWebhookConfiguration") => {
                let mut v: ValidatingWebhookConfiguration =
                    serde_json::from_value(value).map_err(|e| e.to_string())?;
                for w in v.webhooks.iter_mut().flatten() {
                    point(&mut w.client_config);
                }
                validating = Some(v);
            }
            Some("MutatingWebhookConfiguration") => {
                let mut m: MutatingWebhookConfiguration =
                    serde_json::from_value(value).map_err(|e| e.to_string())?;
                for w in m.webhooks.iter_mut().flatten() {
                    point(&mut w.client_config);
                }
                mutating = Some(m);
            }
            _ => {}
        }
    }
    match (validating, mutating) {
        (Some(v), Some(m)) => Ok((v, m)),
        _ => Err("the chart rendered no Validating- and MutatingWebhookConfiguration".into()),
    }
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
    let helm = super::ensure_binaries()
        .ok()
        .and_then(|bin| super::find_helm(&bin))
        .ok_or_else(|| {
            ApplyError::Chart(
                "helm is needed to render the chart's webhook configurations: run `make control-plane`, or put helm on PATH".into(),
            )
        })?;
    let (validating, mutating) = webhook_configurations(
        &helm,
        &local.config_name,
        &local.namespace,
        &format!("https://127.0.0.1:{}", local.webhook_port),
    )
    .map_err(ApplyError::Chart)?;
    apply(client, &validating).await?;
    apply(client, &mutating).await?;
    for object in views_objects(
        &helm,
        &local.config_name,
        &local.namespace,
        local.webhook_port,
    )
    .map_err(ApplyError::Chart)?
    {
        let object: kube::core::DynamicObject = serde_json::from_value(object)
            .map_err(|e| ApplyError::Chart(format!("the chart's views.yaml: {e}")))?;
        super::apply::apply_object(client, &object, "tenancy-devcluster").await?;
    }
    Ok(())
}
