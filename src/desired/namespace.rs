//! The project's namespace, its ResourceQuota and its LimitRange.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    LimitRange, LimitRangeItem, LimitRangeSpec, Namespace, ResourceQuota, ResourceQuotaSpec,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;

use super::{child_meta, labels};
use crate::api::Project;

/// Name of the ResourceQuota the operator keeps in each project namespace.
pub const QUOTA_NAME: &str = "tenancy-quota";
/// Name of the LimitRange the operator keeps in each project namespace.
pub const LIMITS_NAME: &str = "tenancy-limits";

/// Whether the namespace is in use or holds a soft-deleted project.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NamespaceState {
    Active,
    Terminated,
}

impl NamespaceState {
    pub fn as_str(self) -> &'static str {
        match self {
            NamespaceState::Active => "active",
            NamespaceState::Terminated => "terminated",
        }
    }
}

/// The namespace a project owns: same name, labelled with project, customer and state.
///
/// It carries no owner reference: a soft delete keeps the namespace after the Project is gone.
pub fn namespace_for(project: &Project, state: NamespaceState, finished: bool) -> Namespace {
    let name = project.name_any();
    let mut labels = BTreeMap::from([
        (
            labels::MANAGED_BY.to_string(),
            labels::MANAGED_BY_VALUE.to_string(),
        ),
        (labels::PROJECT.to_string(), name.clone()),
        (labels::CUSTOMER.to_string(), project.spec.customer.clone()),
        (labels::STATE.to_string(), state.as_str().to_string()),
    ]);
    labels.insert(labels::FINISHED.to_string(), finished.to_string());
    Namespace {
        metadata: ObjectMeta {
            name: Some(name),
            labels: Some(labels),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// Whether a namespace was created for this project (and so may be managed or adopted).
/// A namespace someone else created is never touched.
pub fn namespace_belongs_to(namespace: &Namespace, project: &str) -> bool {
    let labels = namespace.labels();
    labels.get(labels::MANAGED_BY).map(String::as_str) == Some(labels::MANAGED_BY_VALUE)
        && labels.get(labels::PROJECT).map(String::as_str) == Some(project)
}

/// Why the namespace must not run pods right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Freeze {
    /// Pods may run.
    None,
    /// Before startDate, suspended after expiry, or soft-deleted: `pods: 0`.
    NoPods,
}

/// The namespace's ResourceQuota: `spec.quota.hard`, plus `count/serviceaccounts` from
/// maxServiceAccounts (the namespace's `default` ServiceAccount not counted), plus `pods: 0`
/// while frozen. `None` when there is nothing to limit.
pub fn resource_quota_for(project: &Project, freeze: Freeze) -> Option<ResourceQuota> {
    let mut hard: BTreeMap<String, Quantity> = project
        .spec
        .quota
        .as_ref()
        .map(|q| q.hard.clone())
        .unwrap_or_default();
    if let Some(max) = project.spec.max_service_accounts {
        hard.insert(
            "count/serviceaccounts".into(),
            Quantity((i64::from(max) + 1).to_string()),
        );
    }
    if freeze == Freeze::NoPods {
        hard.insert("pods".into(), Quantity("0".into()));
    }
    if hard.is_empty() {
        return None;
    }
    let ns = project.name_any();
    Some(ResourceQuota {
        metadata: child_meta(QUOTA_NAME, Some(&ns), project, "quota"),
        spec: Some(ResourceQuotaSpec {
            hard: Some(hard),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// The namespace's LimitRange from `spec.limitRange`, or `None` when it sets nothing.
pub fn limit_range_for(project: &Project) -> Option<LimitRange> {
    let limits = project.spec.limit_range.as_ref()?;
    let nonempty = |m: &crate::api::ResourceList| (!m.is_empty()).then(|| m.clone());
    let item = LimitRangeItem {
        type_: "Container".into(),
        default: nonempty(&limits.default),
        default_request: nonempty(&limits.default_request),
        max: nonempty(&limits.max),
        min: nonempty(&limits.min),
        ..Default::default()
    };
    if item.default.is_none()
        && item.default_request.is_none()
        && item.max.is_none()
        && item.min.is_none()
    {
        return None;
    }
    let ns = project.name_any();
    Some(LimitRange {
        metadata: child_meta(LIMITS_NAME, Some(&ns), project, "limits"),
        spec: Some(LimitRangeSpec { limits: vec![item] }),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::api::ProjectSpec;

    pub fn project(name: &str, spec: serde_json::Value) -> Project {
        let mut spec = spec;
        if spec.get("customer").is_none() {
            spec["customer"] = "acme".into();
        }
        let spec: ProjectSpec = serde_json::from_value(spec).unwrap();
        let mut p = Project::new(name, spec);
        p.metadata.uid = Some(format!("uid-{name}"));
        p
    }

    #[test]
    fn namespace_is_labelled_with_project_customer_and_state() {
        let p = project("web", serde_json::json!({"customer": "acme"}));
        let ns = namespace_for(&p, NamespaceState::Active, false);
        let l = ns.labels();
        assert_eq!(ns.name_any(), "web");
        assert_eq!(l[labels::PROJECT], "web");
        assert_eq!(l[labels::CUSTOMER], "acme");
        assert_eq!(l[labels::STATE], "active");
        assert_eq!(l[labels::FINISHED], "false");
        assert!(
            ns.metadata.owner_references.is_none(),
            "a soft delete must keep the namespace"
        );
        assert!(namespace_belongs_to(&ns, "web"));
        assert!(!namespace_belongs_to(&ns, "other"));
    }

    #[test]
    fn a_namespace_created_by_someone_else_does_not_belong() {
        let foreign = Namespace {
            metadata: ObjectMeta {
                name: Some("web".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        assert!(!namespace_belongs_to(&foreign, "web"));
    }

    #[test]
    fn quota_adds_service_accounts_and_freezes_pods() {
        let p = project(
            "web",
            serde_json::json!({"quota": {"hard": {"requests.cpu": "4"}}, "maxServiceAccounts": 3}),
        );
        let rq = resource_quota_for(&p, Freeze::None).unwrap();
        let hard = rq.spec.unwrap().hard.unwrap();
        assert_eq!(hard["requests.cpu"].0, "4");
        assert_eq!(
            hard["count/serviceaccounts"].0, "4",
            "the default ServiceAccount is not counted"
        );
        assert!(!hard.contains_key("pods"));
        let frozen = resource_quota_for(&p, Freeze::NoPods)
            .unwrap()
            .spec
            .unwrap()
            .hard
            .unwrap();
        assert_eq!(frozen["pods"].0, "0");
        assert_eq!(rq.metadata.owner_references.unwrap()[0].kind, "Project");
    }

    #[test]
    fn no_quota_when_nothing_to_limit() {
        let p = project("web", serde_json::json!({}));
        assert!(resource_quota_for(&p, Freeze::None).is_none());
        assert!(
            resource_quota_for(&p, Freeze::NoPods).is_some(),
            "a frozen namespace always has a quota"
        );
    }

    #[test]
    fn limit_range_carries_container_defaults() {
        let p = project(
            "web",
            serde_json::json!({"limitRange": {"default": {"cpu": "500m"}, "defaultRequest": {"memory": "128Mi"}}}),
        );
        let lr = limit_range_for(&p).unwrap();
        let item = &lr.spec.unwrap().limits[0];
        assert_eq!(item.type_, "Container");
        assert_eq!(item.default.as_ref().unwrap()["cpu"].0, "500m");
        assert_eq!(item.default_request.as_ref().unwrap()["memory"].0, "128Mi");
        assert!(limit_range_for(&project("x", serde_json::json!({}))).is_none());
    }
}
