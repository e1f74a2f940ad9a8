//! `Customer`: an organisation that owns projects.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{CustomerRoleHolder, ResourceList, conditions_schema, resource_list_schema};

/// An organisation that owns projects. Its owners manage all its projects; its quota caps the
/// sum of its projects' quotas.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, Default, KubeSchema)]
#[kube(
    group = "tenancy.dev",
    doc = "An organisation that owns projects. Its owners manage all its projects; its quota caps the sum of its projects' quotas.",
    version = "v1alpha1",
    kind = "Customer",
    plural = "customers",
    shortname = "cust",
    category = "tenancy",
    status = "CustomerStatus",
    printcolumn = r#"{"name":"Display Name","type":"string","jsonPath":".spec.displayName"}"#,
    printcolumn = r#"{"name":"Abbreviation","type":"string","jsonPath":".spec.abbreviation"}"#,
    printcolumn = r#"{"name":"Projects","type":"integer","jsonPath":".status.projects.active"}"#,
    printcolumn = r#"{"name":"Terminated","type":"integer","jsonPath":".status.projects.terminated","priority":1}"#,
    printcolumn = r#"{"name":"Resources","type":"integer","jsonPath":".status.resourcesCount"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status","priority":1}"#,
    printcolumn = r#"{"name":"Cost/Month","type":"string","jsonPath":".status.cost.monthly","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    validation = Rule::new("size(self.metadata.name) <= 63").message("metadata.name: a customer name is the value of the tenancy.dev/customer label on its namespaces, so it must be at most 63 characters")
)]
#[serde(rename_all = "camelCase")]
pub struct CustomerSpec {
    /// Human-readable organisation name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 500))]
    pub display_name: Option<String>,
    /// The organisation's name in its own language.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 500))]
    pub native_name: Option<String>,
    /// Short name, e.g. `ACME`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 12))]
    pub abbreviation: Option<String>,
    /// Whether project members may see the customer's billing information in their projects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_billing_info_in_projects: Option<bool>,
    /// Default grace period (days after a project's endDate before its expirationPolicy runs)
    /// for projects that set none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 3650))]
    pub grace_period_days: Option<i32>,
    /// Days a soft-deleted project's namespace is kept before it is purged for good. Default 30.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 3650))]
    pub terminated_project_retention_days: Option<i32>,
    /// Customer owners: manage every project of the customer (project-manager in each namespace).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub owners: Vec<CustomerRoleHolder>,
    /// Support staff: read-only access to every project of the customer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub support: Vec<CustomerRoleHolder>,
    /// Aggregate limits over all the customer's projects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<CustomerQuota>,
    /// Credit for all the customer's projects together, in the price list's currency (staff
    /// only): consumed by the cost of every month billed to the customer. When it runs out,
    /// each project applies its `creditExhaustedPolicy` as if its own credit had.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0))]
    pub credit: Option<f64>,
    /// A Checklist every new project of this customer answers (staff only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub project_checklist: Option<String>,
}

/// Aggregate limits over all of a customer's projects.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CustomerQuota {
    /// Most projects the customer may have (soft-deleted ones do not count).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub projects: Option<i32>,
    /// Most of each resource the customer's projects may allocate together in their
    /// `spec.quota.hard` (e.g. `requests.cpu: "64"`). A resource not listed is not limited.
    #[serde(default, skip_serializing_if = "ResourceList::is_empty")]
    #[schemars(schema_with = "resource_list_schema")]
    pub hard: ResourceList,
}

/// The observed state of a customer.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CustomerStatus {
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready and detailed conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
    /// Project counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub projects: Option<ProjectCounts>,
    /// Counted resources over all active projects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources_count: Option<i64>,
    /// Sum of the active projects' `spec.quota.hard`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub allocated: BTreeMap<String, String>,
    /// Sum of the active projects' usage.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub usage: BTreeMap<String, String>,
    /// The monthly cost of that usage, when the operator has a price list and
    /// `displayBillingInfoInProjects` is true (project members may read their customer);
    /// `kubectl get usage --field-selector customer=...` shows it to owners and staff always.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<super::project::CostStatus>,
    /// The customer's credit (`spec.credit`), where `cost` is shown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credit: Option<super::usage::CreditStatus>,
}

/// A customer's projects by state.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProjectCounts {
    pub active: i32,
    /// Soft-deleted projects whose namespaces are still kept.
    pub terminated: i32,
}
