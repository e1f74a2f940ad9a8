//! Applying manifests the way `kubectl apply --server-side` does, through the dynamic API:
//! multi-document YAML, any kind the apiserver serves, and CRDs with a wait for Established.

use std::time::{Duration, Instant};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use kube::discovery::Scope;
use kube::{Api, Client};

/// Why a manifest could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("invalid YAML: {0}")]
    Yaml(#[from] serde_yaml::Error),
    #[error("document {index} has no apiVersion and kind")]
    MissingType { index: usize },
    #[error("{what}: the apiserver does not serve this kind: {source}")]
    Discovery {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("{what}: {source}")]
    Api {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("{0}")]
    Timeout(String),
    #[error("{0}")]
    Chart(String),
}

impl ApplyError {
    /// The apiserver's error, when the request reached it.
    pub fn kube_error(&self) -> Option<&kube::Error> {
        match self {
            ApplyError::Discovery { source, .. } | ApplyError::Api { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// The documents of a multi-document YAML stream, empty documents skipped.
pub fn parse_documents(yaml: &str) -> Result<Vec<DynamicObject>, ApplyError> {
    let mut objects = Vec::new();
    for (index, doc) in serde_yaml::Deserializer::from_str(yaml).enumerate() {
        let value = <serde_json::Value as serde::Deserialize>::deserialize(doc)?;
        if value.is_null() {
            continue;
        }
        let object: DynamicObject = serde_json::from_value(value)
            .map_err(|e| ApplyError::Yaml(<serde_yaml::Error as serde::de::Error>::custom(e)))?;
        if object.types.is_none() {
            return Err(ApplyError::MissingType { index });
        }
        objects.push(object);
    }
    Ok(objects)
}

/// `Kind/name` or `Kind namespace/name`, for messages.
pub fn describe(object: &DynamicObject) -> String {
    let kind = object
        .types
        .as_ref()
        .map(|t| t.kind.as_str())
        .unwrap_or("?");
    let name = object.metadata.name.as_deref().unwrap_or("?");
    match &object.metadata.namespace {
        Some(ns) => format!("{kind} {ns}/{name}"),
        None => format!("{kind} {name}"),
    }
}

/// The dynamic API for an object's kind (namespace from the object, else `default`).
pub async fn api_for(
    client: &Client,
    object: &DynamicObject,
) -> Result<(Api<DynamicObject>, ApiResource), ApplyError> {
    let what = describe(object);
    let types = object
        .types
        .as_ref()
        .ok_or(ApplyError::MissingType { index: 0 })?;
    let (group, version) = match types.api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", types.api_version.as_str()),
    };
    let gvk = GroupVersionKind::gvk(group, version, &types.kind);
    let (resource, caps) = kube::discovery::pinned_kind(client, &gvk)
        .await
        .map_err(|source| ApplyError::Discovery {
            what: what.clone(),
            source,
        })?;
    let api = match caps.scope {
        Scope::Namespaced => Api::namespaced_with(
            client.clone(),
            object.metadata.namespace.as_deref().unwrap_or("default"),
            &resource,
        ),
        Scope::Cluster => Api::all_with(client.clone(), &resource),
    };
    Ok((api, resource))
}

/// Server-side apply of one object (forcing conflicts, as a manifest's owner would).
pub async fn apply_object(
    client: &Client,
    object: &DynamicObject,
    field_manager: &str,
) -> Result<DynamicObject, ApplyError> {
    let what = describe(object);
    let (api, _) = api_for(client, object).await?;
    let name = object.metadata.name.as_deref().unwrap_or_default();
    api.patch(
        name,
        &PatchParams::apply(field_manager).force(),
        &Patch::Apply(object),
    )
    .await
    .map_err(|source| ApplyError::Api { what, source })
}

/// Server-side apply of every document in `yaml`, in order; stops at the first failure.
pub async fn apply_yaml(
    client: &Client,
    yaml: &str,
    field_manager: &str,
) -> Result<Vec<DynamicObject>, ApplyError> {
    let mut applied = Vec::new();
    for object in parse_documents(yaml)? {
        applied.push(apply_object(client, &object, field_manager).await?);
    }
    Ok(applied)
}

/// Deletes an object (foreground propagation); an object already gone is not an error.
pub async fn delete_object(client: &Client, object: &DynamicObject) -> Result<(), ApplyError> {
    let what = describe(object);
    let (api, _) = api_for(client, object).await?;
    let name = object.metadata.name.as_deref().unwrap_or_default();
    match api.delete(name, &DeleteParams::foreground()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(source) => Err(ApplyError::Api { what, source }),
    }
}

/// Server-side applies the CRDs and waits until each is Established (names accepted, served).
pub async fn install_crds(
    client: &Client,
    crds: &[CustomResourceDefinition],
    field_manager: &str,
    timeout: Duration,
) -> Result<(), ApplyError> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in crds {
        let name = crd.metadata.name.clone().unwrap_or_default();
        api.patch(
            &name,
            &PatchParams::apply(field_manager).force(),
            &Patch::Apply(crd),
        )
        .await
        .map_err(|source| ApplyError::Api {
            what: format!("CustomResourceDefinition {name}"),
            source,
        })?;
    }
    let deadline = Instant::now() + timeout;
    for crd in crds {
        let name = crd.metadata.name.clone().unwrap_or_default();
        loop {
            let current = api.get(&name).await.map_err(|source| ApplyError::Api {
                what: format!("CustomResourceDefinition {name}"),
                source,
            })?;
            let conditions = current
                .status
                .and_then(|s| s.conditions)
                .unwrap_or_default();
            if conditions
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
            {
                break;
            }
            if Instant::now() > deadline {
                let detail: Vec<String> = conditions
                    .iter()
                    .map(|c| {
                        format!(
                            "{}={} {}",
                            c.type_,
                            c.status,
                            c.message.as_deref().unwrap_or("")
                        )
                    })
                    .collect();
                return Err(ApplyError::Timeout(format!(
                    "CustomResourceDefinition {name} not Established after {timeout:?}: {}",
                    detail.join("; ")
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_multi_document_yaml_and_skips_empty_documents() {
        let yaml = "---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n---\n# only a comment\n---\napiVersion: tenancy.dev/v1alpha1\nkind: Project\nmetadata:\n  name: b\nspec:\n  customer: c\n";
        let docs = parse_documents(yaml).unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(describe(&docs[0]), "Namespace a");
        assert_eq!(docs[1].data["spec"]["customer"], "c");
    }

    #[test]
    fn a_document_without_kind_is_an_error() {
        assert!(matches!(
            parse_documents("metadata:\n  name: a\n"),
            Err(ApplyError::MissingType { index: 0 })
        ));
    }
}
