//! The `usage` resource of `views.tenancy.dev`: each project's months, as they stand at the
//! instant of the request (an open month accrued on to now). Who sees a project's usage is who
//! sees the project; who sees its cost and credit: the customer's owners and support and staff
//! always, its members only where the customer shows billing in its projects
//! (`displayBillingInfoInProjects`). The months of a deleted project stay visible to the owners
//! and support of the customer billed for them.

use std::collections::BTreeMap;
use std::sync::Arc;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use serde::Serialize;
use serde_json::{Value, json};

use super::select::{LabelRequirement, Op, Requirement, parse_fields, parse_labels};
use super::table::{IncludeObject, column, row, table};
use super::{API_VERSION, Index, Viewer};
use crate::api::ProjectUsage;
use crate::api::usage::{CreditStatus, UsageCost, UsageRate, UsageState, UsageTotals};
use crate::desired::cost::Prices;
use crate::desired::labels;
use crate::desired::usage::{self, Exact, Month};

/// What prices the views price open months with, and the low-credit threshold.
#[derive(Clone, Debug, Default)]
pub struct Billing {
    pub prices: Option<Prices>,
    pub credit_low_percent: u8,
}

/// One project's month.
#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub metadata: ObjectMeta,
    pub project: String,
    pub customer: String,
    /// `YYYY-MM` (UTC).
    pub month: String,
    /// Open while the month runs; Closed after (then never changes).
    pub state: UsageState,
    /// The instant the figures are for: now for an open month, its end for a closed one.
    pub as_of: Time,
    /// What the workloads request at `asOf`.
    pub rate: UsageRate,
    /// Core-hours, GiB-hours and pod-hours from the month's start to `asOf`.
    pub usage: UsageTotals,
    /// The same by day of the month (`"01"`..`"31"`), days with usage only.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub days: BTreeMap<String, UsageTotals>,
    /// The month's cost to `asOf`; absent when the viewer may not see billing (see
    /// `billing`) or there is no price list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<UsageCost>,
    /// The project's credit now (the current month of a project that has credit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credit: Option<CreditStatus>,
    /// `Shown`, or `Hidden` when the customer does not show billing to its projects' members.
    pub billing: &'static str,
}

/// The fields `usage` filters on.
pub const USAGE_FIELDS: &[&str] = &["metadata.name", "project", "customer", "month", "state"];

/// A `usage` request's filters: `project=`, `customer=`, `month=current|YYYY-MM`, `state=`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct UsageQuery {
    fields: Vec<Requirement>,
    labels: Vec<LabelRequirement>,
}

impl UsageQuery {
    pub fn parse(fields: &str, labels: &str) -> Result<Self, String> {
        let fields = parse_fields(fields, "usage", USAGE_FIELDS)?;
        for r in &fields {
            if r.field == "month" && r.value != "current" && Month::parse(&r.value).is_none() {
                return Err(format!(
                    "field selector month={:?}: write month=current or a month as YYYY-MM (e.g. month=2026-10)",
                    r.value
                ));
            }
            if r.field == "state" && !["Open", "Closed"].contains(&r.value.as_str()) {
                return Err(format!(
                    "field selector state={:?}: write state=Open or state=Closed",
                    r.value
                ));
            }
        }
        Ok(UsageQuery {
            fields,
            labels: parse_labels(labels)?,
        })
    }

    /// Whether a project's month may match, before it is computed (project, customer, month).
    fn may_match(&self, project: &str, customer: &str, month: &str, now: Timestamp) -> bool {
        let current = Month::of(now).to_string();
        self.fields.iter().all(|r| match r.field.as_str() {
            "project" => (project == r.value) == (r.op == Op::Eq),
            "customer" => (customer == r.value) == (r.op == Op::Eq),
            "month" => {
                let want = if r.value == "current" {
                    current.as_str()
                } else {
                    r.value.as_str()
                };
                (month == want) == (r.op == Op::Eq)
            }
            "metadata.name" => {
                (usage::record_name(project, Month::parse(month).unwrap_or(Month::of(now)))
                    == r.value)
                    == (r.op == Op::Eq)
            }
            _ => true,
        })
    }

    fn matches(&self, u: &Usage) -> bool {
        let labels = u.metadata.labels.clone().unwrap_or_default();
        let state = format!("{:?}", u.state);
        self.fields
            .iter()
            .filter(|r| r.field == "state")
            .all(|r| (state == r.value) == (r.op == Op::Eq))
            && self.labels.iter().all(|l| l.matches(&labels))
    }
}

fn totals_of(exact: &crate::api::usage::ExactUsage) -> UsageTotals {
    Exact::from_stored(exact).totals()
}

impl Index {
    /// Whether the viewer is staff or holds an owner or support role in the customer now.
    fn bills(&self, viewer: &Viewer, customer: &str, now: Timestamp) -> bool {
        viewer.staff
            || self
                .customers
                .get(customer)
                .is_some_and(|e| e.holders.iter().any(|h| h.holds(&viewer.requester, now)))
    }

    /// The months this viewer may see that match `q`, sorted by project and month: every
    /// stored month, and the current month of every live project they see.
    pub fn usage_for(
        &self,
        viewer: &Viewer,
        q: &UsageQuery,
        billing: &Billing,
        now: Timestamp,
    ) -> Vec<Usage> {
        let current = Month::of(now).to_string();
        let empty = imbl::OrdMap::new();
        let mut names: Vec<&String> = self.usage.keys().collect();
        names.extend(self.projects.keys());
        names.sort();
        names.dedup();
        let mut out = Vec::new();
        for project in names {
            let records = self.usage.get(project).unwrap_or(&empty);
            let live = self.projects.get(project);
            // The months to show: the stored ones, and this month of a live project.
            let mut months: Vec<(&str, String)> = records
                .values()
                .map(|r| (r.spec.customer.as_str(), r.spec.month.clone()))
                .collect();
            if let Some(e) = live
                && !records.contains_key(&current)
            {
                months.push((e.customer.as_str(), current.clone()));
            }
            for (customer, month) in months {
                if !q.may_match(project, customer, &month, now) {
                    continue;
                }
                // A live project's members see the months billed to its customer.
                let member = live
                    .is_some_and(|e| e.customer == customer && !e.roles(viewer, now).is_empty());
                let bills = self.bills(viewer, customer, now);
                if !member && !bills {
                    continue;
                }
                let shown = bills
                    || self
                        .customers
                        .get(customer)
                        .is_some_and(|c| c.billing_shown);
                let credit = live.and_then(|e| e.credit);
                let record: ProjectUsage = if month == current {
                    let latest = usage::latest(records.values().map(Arc::as_ref));
                    usage::current(
                        project,
                        customer,
                        latest,
                        now,
                        billing.prices.as_ref(),
                        credit,
                    )
                } else {
                    match records.get(&month) {
                        Some(r) => usage::at(r, now, billing.prices.as_ref(), credit),
                        None => continue,
                    }
                };
                let credit_now = match (live, credit, billing.prices.as_ref()) {
                    (Some(e), Some(amount), Some(prices)) if month == current && shown => {
                        Some(usage::credit_status(
                            Some(&record),
                            amount,
                            prices,
                            billing.credit_low_percent,
                            e.created.unwrap_or(now),
                        ))
                    }
                    _ => None,
                };
                let item = item_of(&record, shown, credit_now);
                if q.matches(&item) {
                    out.push(item);
                }
            }
        }
        out
    }
}

fn item_of(r: &ProjectUsage, shown: bool, credit: Option<CreditStatus>) -> Usage {
    let s = &r.spec;
    let name = usage::record_name(
        &s.project,
        Month::parse(&s.month).expect("records name valid months"),
    );
    Usage {
        api_version: API_VERSION,
        kind: "Usage",
        metadata: ObjectMeta {
            name: Some(name),
            creation_timestamp: r.metadata.creation_timestamp.clone(),
            labels: Some(BTreeMap::from([
                (labels::PROJECT.to_string(), s.project.clone()),
                (labels::CUSTOMER.to_string(), s.customer.clone()),
            ])),
            ..Default::default()
        },
        project: s.project.clone(),
        customer: s.customer.clone(),
        month: s.month.clone(),
        state: s.state,
        as_of: s.since.clone(),
        rate: s.rate.clone(),
        usage: s.totals.clone(),
        days: s
            .days
            .iter()
            .map(|(d, e)| (d.clone(), totals_of(e)))
            .collect(),
        cost: s.cost.clone().filter(|_| shown),
        credit,
        billing: if shown { "Shown" } else { "Hidden" },
    }
}

/// `kubectl get usage`: one row per project and month.
pub fn usage_table(
    items: &[Usage],
    include: IncludeObject,
    resource_version: &str,
    continue_: Option<&str>,
) -> Value {
    let columns = vec![
        column("Name", "string", "<project>.<month>.", 0),
        column("Project", "string", "The project.", 0),
        column("Month", "string", "The calendar month (UTC).", 0),
        column(
            "State",
            "string",
            "Open while the month runs, then Closed.",
            0,
        ),
        column("CPU Core-Hours", "string", "Core-hours requested.", 0),
        column(
            "Memory GiB-Hours",
            "string",
            "GiB-hours of memory requested.",
            0,
        ),
        column("Storage GiB-Hours", "string", "GiB-hours of claims.", 0),
        column("Pod-Hours", "string", "Pod-hours.", 0),
        column(
            "Cost",
            "string",
            "The month's cost so far (hidden: the customer shows no billing to members).",
            0,
        ),
        column(
            "Credit Left",
            "string",
            "The project's credit remaining now (the current month).",
            0,
        ),
        column("Customer", "string", "The customer billed.", 1),
        column("As Of", "string", "The instant the figures are for.", 1),
    ];
    let rows = items
        .iter()
        .map(|u| {
            let cost = match (&u.cost, u.billing) {
                (Some(c), _) => format!("{} {}", c.total, c.currency),
                (None, "Hidden") => "<hidden>".into(),
                (None, _) => "<none>".into(),
            };
            let credit = u
                .credit
                .as_ref()
                .map(|c| format!("{} {}", c.remaining, c.currency))
                .unwrap_or_else(|| "<none>".into());
            let cells = vec![
                json!(u.metadata.name),
                json!(u.project),
                json!(u.month),
                json!(format!("{:?}", u.state)),
                json!(u.usage.cpu_core_hours),
                json!(u.usage.memory_gib_hours),
                json!(u.usage.storage_gib_hours),
                json!(u.usage.pod_hours),
                json!(cost),
                json!(credit),
                json!(u.customer),
                json!(u.as_of.0.to_string()),
            ];
            row(cells, serde_json::to_value(u).unwrap_or_default(), include)
        })
        .collect();
    table(columns, rows, resource_version, continue_)
}
