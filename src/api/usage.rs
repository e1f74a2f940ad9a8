//! `ProjectUsage`: what one project used in one calendar month (UTC), integrated exactly from
//! what its workloads requested, with the prices, the cost and the credit it consumed. Written
//! by the operator alone, one per project and month, named `<project>.<yyyy-mm>`; a closed month
//! is never written again. Records carry no owner reference: billing history belongs to the
//! customer and outlives the project's soft delete and purge.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One project's usage in one calendar month.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "tenancy.dev",
    doc = "What one project used in one calendar month (UTC): exact core-, GiB- and pod-hours of what its workloads requested, the prices, the cost and the credit consumed. Written by the operator alone; read it through views.tenancy.dev (kubectl get usage).",
    version = "v1alpha1",
    kind = "ProjectUsage",
    plural = "projectusages",
    shortname = "pusage",
    category = "tenancy",
    selectable = ".spec.project",
    selectable = ".spec.customer",
    selectable = ".spec.month",
    printcolumn = r#"{"name":"Project","type":"string","jsonPath":".spec.project"}"#,
    printcolumn = r#"{"name":"Customer","type":"string","jsonPath":".spec.customer"}"#,
    printcolumn = r#"{"name":"Month","type":"string","jsonPath":".spec.month"}"#,
    printcolumn = r#"{"name":"State","type":"string","jsonPath":".spec.state"}"#,
    printcolumn = r#"{"name":"CPU Core-Hours","type":"string","jsonPath":".spec.totals.cpuCoreHours"}"#,
    printcolumn = r#"{"name":"Memory GiB-Hours","type":"string","jsonPath":".spec.totals.memoryGiBHours"}"#,
    printcolumn = r#"{"name":"Cost","type":"string","jsonPath":".spec.cost.total"}"#,
    printcolumn = r#"{"name":"As Of","type":"date","jsonPath":".spec.since","priority":1}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ProjectUsageSpec {
    /// The project's name.
    pub project: String,
    /// The customer the project belonged to when the record was last written (the month is
    /// billed to it).
    pub customer: String,
    /// The calendar month, `YYYY-MM` (UTC).
    pub month: String,
    /// Open while the month runs (the accrual goes on from `since` at `rate`); Closed after it.
    pub state: UsageState,
    /// The instant the totals are accrued to: the last change of rate, or the month's end once
    /// closed.
    pub since: Time,
    /// What the workloads requested from `rateSince` on (zero once the project is gone).
    pub rate: UsageRate,
    /// When `rate` took effect (it may be in an earlier month).
    pub rate_since: Time,
    /// The totals from the month's start to `since`, in hours.
    pub totals: UsageTotals,
    /// The same totals exactly: millionths of a unit-second (core, byte, pod), the numbers the
    /// hours and the cost are computed from.
    pub exact: ExactUsage,
    /// The exact totals by day of the month (`"01"`..`"31"`), for charts.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub days: BTreeMap<String, ExactUsage>,
    /// The month's cost to `since`, by the prices in force when the record was written (those of
    /// the close for a closed month). Absent without a price list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<UsageCost>,
    /// The cost of the project's earlier months (all of its records before this one), carried so
    /// that credit is computed from the latest record alone.
    #[serde(default)]
    pub cost_before: String,
    /// The project's credit (`spec.credit`) when the record was written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credit: Option<String>,
    /// Credit consumed in this month (to `since`), when the project has credit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credit_consumed: Option<String>,
    /// When the month was closed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed_at: Option<Time>,
}

/// Whether a month is still accruing.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum UsageState {
    #[default]
    Open,
    Closed,
}

/// What a project's workloads request at one time: quantities as in a pod spec.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UsageRate {
    pub cpu: String,
    pub memory: String,
    pub storage: String,
    pub pods: i64,
}

/// Usage in hours, as decimals (exact where the decimal ends within 6 places, else rounded).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
pub struct UsageTotals {
    #[serde(rename = "cpuCoreHours")]
    pub cpu_core_hours: String,
    #[serde(rename = "memoryGiBHours")]
    pub memory_gib_hours: String,
    #[serde(rename = "storageGiBHours")]
    pub storage_gib_hours: String,
    #[serde(rename = "podHours")]
    pub pod_hours: String,
}

/// Exact usage: integers, millionths of a unit-second (core-seconds, byte-seconds, pod-seconds).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
pub struct ExactUsage {
    pub cpu: String,
    pub memory: String,
    pub storage: String,
    pub pods: String,
}

/// A month's cost.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UsageCost {
    pub currency: String,
    /// The total, e.g. "12.34".
    pub total: String,
    /// By priced resource.
    #[serde(default)]
    pub by_resource: BTreeMap<String, String>,
    /// The monthly price per unit used (cpu per core, memory and storage per GiB, pods per pod);
    /// a month is priced by the hours of that calendar month.
    #[serde(default)]
    pub prices: BTreeMap<String, String>,
}

/// The credit of a project, or of a customer.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreditStatus {
    pub currency: String,
    /// `spec.credit`.
    pub amount: String,
    /// Consumed at `asOf`: the cost accrued over the project's life, up to the amount.
    pub consumed: String,
    /// Left at `asOf`.
    pub remaining: String,
    /// The instant these figures are for: the last change of what the workloads request (the
    /// figures move on at the rate in force; `kubectl get usage` shows them now).
    pub as_of: Time,
    /// When the remaining credit falls to the low threshold at the rate in force.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub low_at: Option<Time>,
    /// When it runs out at the rate in force (none: it does not, at that rate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runs_out_at: Option<Time>,
}

/// What a project does when its credit runs out.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum CreditExhaustedPolicy {
    /// Conditions only.
    None,
    /// Conditions and Warning Events (CreditLow, CreditExhausted).
    #[default]
    Notify,
    /// As Notify, and the project is suspended as at its end date (workloads scaled to 0 and
    /// remembered, pods: 0) until more credit resumes it.
    Suspend,
}
