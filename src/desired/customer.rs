//! The Customer plan: from the customer, its projects and its kept archives, the access roles of
//! its owners and support, the archives to purge, its status and when to wake up. Pure.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kube::ResourceExt;

use super::conditions::{Conditions, is_true};
use super::quantity::Milli;
use super::{Config, access, quota};
use crate::api::customer::ProjectCounts;
use crate::api::{Customer, CustomerStatus, Project};
use crate::lifecycle::{self, archive::Archive};

/// Days the customer keeps the namespaces of its deleted projects.
pub fn retention_days(customer: &Customer) -> i32 {
    customer
        .spec
        .terminated_project_retention_days
        .unwrap_or(crate::lifecycle::archive::DEFAULT_RETENTION_DAYS)
}

/// What the caches say about one customer.
pub struct CustomerView<'a> {
    pub customer: &'a Customer,
    /// Its projects, those being deleted included.
    pub projects: &'a [Arc<Project>],
    /// The archived namespaces of its deleted projects that no project took back, with their
    /// archive (only those the operator archived itself).
    pub archives: &'a [(Arc<Namespace>, Archive)],
    /// Namespaces labelled as its soft-deleted projects'.
    pub terminated: usize,
    /// Every usage record billed to it (read only when it has `spec.credit`).
    pub usages: &'a [Arc<crate::api::ProjectUsage>],
    pub is_project_namespace: &'a dyn Fn(&str) -> bool,
}

/// Everything one reconcile of a customer does (the ledger's repair is the ledger's own plan).
#[derive(Clone, Debug)]
pub struct CustomerPlan {
    pub cluster_roles: Vec<ClusterRole>,
    pub cluster_role_bindings: Vec<ClusterRoleBinding>,
    /// Archived namespaces whose retention has run out, with the note of their `Purged` Event.
    pub purge: Vec<(Arc<Namespace>, String)>,
    pub status: CustomerStatus,
    pub wake: Duration,
}

fn strings(m: BTreeMap<String, Milli>) -> BTreeMap<String, String> {
    m.into_iter().map(|(k, v)| (k, v.to_string())).collect()
}

/// Plans one reconcile of a customer that is not being deleted.
pub fn plan(view: &CustomerView<'_>, config: &Config, now: Timestamp) -> CustomerPlan {
    let customer = view.customer;
    let (cluster_roles, cluster_role_bindings) =
        access::customer_access(customer, now, view.is_project_namespace);
    let active: Vec<&Arc<Project>> = view
        .projects
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect();

    // Purge archived namespaces whose retention has run out: the only destructive step.
    let retention = retention_days(customer);
    let mut purge = Vec::new();
    let mut purge_times = Vec::new();
    for (n, archive) in view.archives {
        let at = archive.purge_after(retention);
        if now >= at {
            purge.push((n.clone(), format!("deleted namespace {} of project {} for good: it was deleted at {} and the retention is {retention} days", n.name_any(), n.name_any(), archive.terminated_at.0)));
        } else {
            purge_times.push(Some(at));
        }
    }

    let mut allocated = quota::Allocation::new();
    let mut usage: BTreeMap<String, Milli> = BTreeMap::new();
    for p in &active {
        for (k, v) in quota::allocation(p) {
            *allocated.entry(k).or_default() += v;
        }
        for (k, v) in p.status.iter().flat_map(|s| s.usage.iter()) {
            if let Ok(m) = Milli::parse(v) {
                *usage.entry(k.clone()).or_default() += m;
            }
        }
    }
    let resources: i64 = active
        .iter()
        .filter_map(|p| p.status.as_ref().and_then(|s| s.resources_count))
        .sum();

    let previous = customer.status.clone().unwrap_or_default();
    let mut conds = Conditions::new(&previous.conditions, customer.metadata.generation, now);
    let mut over: Vec<String> = Vec::new();
    if let Some(q) = &customer.spec.quota {
        for (k, limit) in quota::allocation_of_list(&q.hard) {
            let used = allocated.get(&k).copied().unwrap_or_default();
            if used > limit {
                over.push(format!("{k}: {used} allocated of {limit}"));
            }
        }
        if let Some(max) = q.projects
            && active.len() as i64 > i64::from(max)
        {
            over.push(format!("projects: {} of {max}", active.len()));
        }
    }
    if over.is_empty() {
        conds.set(
            "QuotaWithinLimits",
            true,
            "WithinLimits",
            "the projects' quotas fit the customer's quota",
        );
    } else {
        conds.set(
            "QuotaWithinLimits",
            false,
            "Oversubscribed",
            format!("allocated beyond the customer's quota: {}", over.join(", ")),
        );
    }
    // Each object's health is its own: a project that is not ready shows on the project; the
    // customer counts it in its message.
    let not_ready: Vec<String> = active
        .iter()
        .filter(|p| {
            !p.status
                .as_ref()
                .is_some_and(|s| is_true(&s.conditions, "Ready"))
        })
        .map(|p| p.name_any())
        .collect();
    let counted = if not_ready.is_empty() {
        format!("{} projects ready", active.len())
    } else {
        format!(
            "{} projects, not ready: {}",
            active.len(),
            not_ready.join(", ")
        )
    };
    if over.is_empty() {
        conds.set("Ready", true, "Reconciled", counted);
    } else {
        // Waiting does not bring allocations back under the quota: someone must act.
        let msg = format!("allocated beyond the customer's quota: {}", over.join(", "));
        conds.set("Ready", false, "Oversubscribed", msg.clone());
        conds.set("Stalled", true, "Oversubscribed", msg);
    }
    // The customer's credit: consumed by every month billed to it.
    let credit = match (customer.spec.credit, config.prices.as_ref()) {
        (Some(amount), Some(prices)) => {
            let records: Vec<&crate::api::ProjectUsage> =
                view.usages.iter().map(Arc::as_ref).collect();
            let created = customer
                .metadata
                .creation_timestamp
                .as_ref()
                .map(|t| t.0)
                .unwrap_or(now);
            Some(super::usage::customer_credit(
                &records,
                super::usage::credit_micros(amount),
                prices,
                config.credit_low_percent,
                created,
                now,
            ))
        }
        _ => None,
    };
    let shown = super::project::billing_shown(Some(customer));
    if let Some(c) = &credit {
        super::usage::set_credit_conditions(
            &mut conds,
            super::usage::CreditHolder::Customer,
            Some(c).filter(|_| shown),
            super::usage::credit_state(c, config.credit_low_percent, now),
            false,
            None,
        );
    }
    let credit_wake = credit
        .as_ref()
        .map(|c| {
            [
                c.low_at.as_ref().map(|t| t.0),
                c.runs_out_at.as_ref().map(|t| t.0),
            ]
        })
        .unwrap_or_default();
    let month_end = credit.as_ref().map(|_| super::usage::Month::of(now).end());
    let usage = strings(usage);
    let status = CustomerStatus {
        observed_generation: customer.metadata.generation,
        conditions: conds.finish(),
        projects: Some(ProjectCounts {
            active: active.len() as i32,
            terminated: view.terminated as i32,
        }),
        resources_count: Some(resources),
        allocated: strings(allocated),
        // Members may read their customer: billing only where it is shown to them.
        cost: config
            .prices
            .as_ref()
            .filter(|_| super::project::billing_shown(Some(customer)))
            .map(|p| p.estimate(&usage)),
        usage,
        credit: credit.filter(|_| shown),
    };

    let expiries = customer
        .spec
        .owners
        .iter()
        .chain(customer.spec.support.iter())
        .map(|h| h.expiration_time.as_ref().map(|t| t.0))
        .chain(purge_times)
        .chain(credit_wake)
        .chain([month_end]);
    let wake = match lifecycle::earliest_after(now, expiries) {
        Some(at) => lifecycle::until(now, at).min(Duration::from_secs(3600)),
        None => Duration::from_secs(3600),
    };
    CustomerPlan {
        cluster_roles,
        cluster_role_bindings,
        purge,
        status,
        wake,
    }
}

/// Whether `next` differs from `previous` only in figures: project and resource counts, what
/// is allocated and used, cost, credit, and the wording of conditions whose type, status and
/// reason stay. Such a write may wait a moment for the next figures (see `controller::pacer`).
pub fn figures_only(previous: &CustomerStatus, next: &CustomerStatus) -> bool {
    super::conditions::differs_only_in_figures(previous, next, |s| {
        s.projects = None;
        s.resources_count = None;
        s.allocated.clear();
        s.usage.clear();
        s.cost = None;
        s.credit = None;
        &mut s.conditions
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn customer(spec: serde_json::Value) -> Customer {
        serde_json::from_value(
            json!({"apiVersion": "tenancy.dev/v1alpha1", "kind": "Customer",
            "metadata": {"name": "acme", "uid": "uid-acme", "generation": 1}, "spec": spec}),
        )
        .unwrap()
    }

    fn project(name: &str, hard: serde_json::Value, ready: bool, deleting: bool) -> Arc<Project> {
        let mut p: Project = serde_json::from_value(json!({"apiVersion": "tenancy.dev/v1alpha1", "kind": "Project",
            "metadata": {"name": name}, "spec": {"customer": "acme", "quota": {"hard": hard}},
            "status": {"resourcesCount": 2, "usage": {"cpu": "500m"}, "conditions": [{"type": "Ready",
                "status": if ready {"True"} else {"False"}, "reason": "r", "message": "",
                "lastTransitionTime": "2027-01-01T00:00:00Z"}]}}))
        .unwrap();
        if deleting {
            p.metadata.deletion_timestamp =
                Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                    "2027-01-01T00:00:00Z".parse().unwrap(),
                ));
        }
        Arc::new(p)
    }

    fn archive(name: &str, at: &str) -> (Arc<Namespace>, Archive) {
        let mut n = Namespace::default();
        n.metadata.name = Some(name.into());
        let spec = serde_json::from_value(json!({"customer": "acme"})).unwrap();
        (Arc::new(n), Archive::new(spec, at.parse().unwrap(), &[]))
    }

    #[test]
    fn the_status_sums_the_active_projects_in_one_name_per_resource() {
        let c = customer(json!({"quota": {"projects": 1, "hard": {"cpu": "3"}}}));
        let projects = vec![
            project("a", json!({"cpu": "2"}), true, false),
            project("b", json!({"requests.cpu": "2"}), false, false),
            project("gone", json!({"requests.cpu": "8"}), true, true),
        ];
        let none = |_: &str| false;
        let view = CustomerView {
            customer: &c,
            projects: &projects,
            archives: &[],
            terminated: 1,
            usages: &[],
            is_project_namespace: &none,
        };
        let plan = plan(
            &view,
            &Config::default(),
            "2027-02-01T00:00:00Z".parse().unwrap(),
        );
        let s = &plan.status;
        assert_eq!(
            s.allocated.get("requests.cpu").map(String::as_str),
            Some("4")
        );
        assert_eq!(s.usage.get("cpu").map(String::as_str), Some("1"));
        assert_eq!(s.resources_count, Some(4));
        let counts = s.projects.as_ref().unwrap();
        assert_eq!((counts.active, counts.terminated), (2, 1));
        let quota = s
            .conditions
            .iter()
            .find(|c| c.type_ == "QuotaWithinLimits")
            .unwrap();
        assert_eq!(quota.status, "False");
        assert!(
            quota.message.contains("requests.cpu: 4 allocated of 3")
                && quota.message.contains("projects: 2 of 1"),
            "{}",
            quota.message
        );
        // Oversubscribed: no waiting fixes it (Stalled); a project that is not ready shows on the
        // project, never on its customer.
        let ready = s.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", "Oversubscribed")
        );
        assert_eq!(crate::desired::conditions::kstatus(&s.conditions), "Failed");
    }

    #[test]
    fn archives_are_purged_after_the_retention_and_the_next_purge_wakes_the_reconcile() {
        let c = customer(json!({"terminatedProjectRetentionDays": 2}));
        let archives = vec![
            archive("old", "2027-01-01T00:00:00Z"),
            archive("recent", "2027-01-10T00:00:00Z"),
        ];
        let none = |_: &str| false;
        let view = CustomerView {
            customer: &c,
            projects: &[],
            archives: &archives,
            terminated: 2,
            usages: &[],
            is_project_namespace: &none,
        };
        let now: Timestamp = "2027-01-11T23:30:00Z".parse().unwrap();
        let plan = plan(&view, &Config::default(), now);
        let purged: Vec<String> = plan.purge.iter().map(|(n, _)| n.name_any()).collect();
        assert_eq!(purged, ["old"]);
        assert!(plan.purge[0].1.contains("the retention is 2 days"));
        assert_eq!(
            plan.wake,
            Duration::from_secs(30 * 60),
            "recent is purged at midnight"
        );
    }

    /// A customer's credit is drawn by every month billed to it, its closed months at their
    /// own prices, and runs out at the sum of its projects' rates.
    #[test]
    fn a_customers_credit_is_drawn_by_all_its_months() {
        let record = |project: &str, month: &str, state: &str, since: &str, hours: i128| {
            Arc::new(
                serde_json::from_value::<crate::api::ProjectUsage>(json!({
                    "apiVersion": "tenancy.dev/v1alpha1", "kind": "ProjectUsage",
                    "metadata": {"name": format!("{project}.{month}")},
                    "spec": {"project": project, "customer": "acme", "month": month, "state": state,
                        "since": since, "rateSince": since,
                        "rate": {"cpu": "1", "memory": "0", "storage": "0", "pods": 0},
                        "totals": {"cpuCoreHours": "0", "memoryGiBHours": "0", "storageGiBHours": "0", "podHours": "0"},
                        "exact": {"cpu": (hours * 3_600_000_000).to_string(), "memory": "0", "storage": "0", "pods": "0"},
                        "cost": {"currency": "EUR", "total": "", "prices": {"cpu": "20"}},
                        "costBefore": "0"}}))
                .unwrap(),
            )
        };
        // February (672 h): 168 core-hours, 5 EUR; March: 1 core from the 1st, 20/744 EUR an
        // hour, so the other 5 EUR of a 10 EUR credit last 186 hours: to the 8th at 18:00.
        let usages = vec![
            record("a", "2027-02", "Closed", "2027-03-01T00:00:00Z", 168),
            record("b", "2027-03", "Open", "2027-03-01T00:00:00Z", 0),
        ];
        let config = Config {
            prices: crate::desired::cost::Prices::parse(&["cpu=20".into()], "EUR").unwrap(),
            ..Default::default()
        };
        let none = |_: &str| false;
        for (shown, now, exhausted, consumed) in [
            (true, "2027-03-02T00:00:00Z", "False", Some("5.00")),
            (true, "2027-03-08T18:00:00Z", "True", Some("10.00")),
            (false, "2027-03-08T18:00:00Z", "True", None),
        ] {
            let c = customer(json!({"credit": 10.0, "displayBillingInfoInProjects": shown}));
            let plan = plan(
                &CustomerView {
                    customer: &c,
                    projects: &[],
                    archives: &[],
                    terminated: 0,
                    usages: &usages,
                    is_project_namespace: &none,
                },
                &config,
                now.parse().unwrap(),
            );
            let cond = plan
                .status
                .conditions
                .iter()
                .find(|c| c.type_ == "CreditExhausted")
                .unwrap();
            assert_eq!(cond.status, exhausted, "{now}");
            assert_eq!(cond.message.contains("EUR"), shown, "{}", cond.message);
            let credit = plan.status.credit.as_ref();
            assert_eq!(credit.map(|c| c.consumed.as_str()), consumed, "{now}");
            if let Some(c) = credit {
                assert_eq!(
                    c.runs_out_at.as_ref().unwrap().0.to_string(),
                    "2027-03-08T18:00:00Z"
                );
            }
        }
    }

    #[test]
    fn a_status_differing_only_in_figures_may_wait_anything_else_may_not() {
        let base: CustomerStatus = serde_json::from_value(json!({
            "observedGeneration": 1,
            "projects": {"active": 1, "terminated": 0},
            "allocated": {"cpu": "1"},
            "conditions": [{"type": "Ready", "status": "True", "reason": "Ready",
                "message": "1 project", "lastTransitionTime": "2027-03-15T12:00:00Z"}]
        }))
        .unwrap();
        type Change = fn(&mut CustomerStatus);
        let cases: [(&str, Change, bool); 7] = [
            ("nothing", |_| {}, false),
            (
                "a project more",
                |s| s.projects.as_mut().unwrap().active = 2,
                true,
            ),
            (
                "more allocated",
                |s| {
                    s.allocated.insert("cpu".into(), "2".into());
                },
                true,
            ),
            (
                "a condition's wording",
                |s| s.conditions[0].message = "2 projects".into(),
                true,
            ),
            (
                "a condition's status",
                |s| s.conditions[0].status = "False".into(),
                false,
            ),
            (
                "the generation seen",
                |s| s.observed_generation = Some(2),
                false,
            ),
            (
                "a count and a reason",
                |s| {
                    s.resources_count = Some(4);
                    s.conditions[0].reason = "CreditExhausted".into();
                },
                false,
            ),
        ];
        for (what, change, may_wait) in cases {
            let mut next = base.clone();
            change(&mut next);
            assert_eq!(figures_only(&base, &next), may_wait, "{what}");
        }
    }
}
