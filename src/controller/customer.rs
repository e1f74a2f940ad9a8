//! The Customer reconciler: access for owners and support to the Customer itself, and status
//! aggregated over its projects.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::Future;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kube::ResourceExt;
use kube::runtime::Controller;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;

use super::queue::Queue;
use super::{Changes, Context, Error, apply};
use crate::api::customer::ProjectCounts;
use crate::api::{Customer, CustomerStatus, Project};
use crate::desired::access;
use crate::desired::conditions::{Conditions, is_true};
use crate::desired::labels;
use crate::desired::quantity::Milli;
use crate::lifecycle;

pub const CONTROLLER: &str = "customer";

/// The shared streams the Customer controller is triggered by.
pub struct Streams {
    pub customers: Changes<Customer>,
    pub projects: Changes<Project>,
    pub namespaces: Changes<Namespace>,
    pub cluster_roles: Changes<ClusterRole>,
    pub cluster_role_bindings: Changes<ClusterRoleBinding>,
    /// The quota ledgers: a change is checked against the stored projects.
    pub ledgers: Changes<ConfigMap>,
}

/// Builds the controller; the returned future runs it.
pub fn controller(
    ctx: &Arc<Context>,
    s: Streams,
    concurrency: u16,
) -> impl Future<Output = ()> + use<> {
    let Streams {
        customers,
        projects,
        namespaces,
        cluster_roles,
        cluster_role_bindings,
        ledgers,
    } = s;
    let queue = Queue::<Customer>::new(ctx.metrics.clone(), CONTROLLER);
    let store = ctx.caches.customers.clone();
    let controller = Controller::for_shared_stream(queue.own(customers), store.clone())
        .with_config(super::controller_config(concurrency))
        .reconcile_all_on(queue.all_on(store, ctx.on_leadership_or_clock_jump()))
        .watches_shared_stream(
            projects,
            queue.mapped(|p: Arc<Project>| Some(ObjectRef::new(&p.spec.customer))),
        )
        .watches_shared_stream(
            namespaces,
            queue.mapped(|n: Arc<Namespace>| {
                n.labels().get(labels::CUSTOMER).map(|c| ObjectRef::new(c))
            }),
        )
        .watches_shared_stream(cluster_roles, queue.owners())
        .watches_shared_stream(cluster_role_bindings, queue.owners())
        .watches_shared_stream(
            ledgers,
            queue.mapped(|cm: Arc<ConfigMap>| {
                cm.labels().get(labels::CUSTOMER).map(|c| ObjectRef::new(c))
            }),
        );
    let ctx = ctx.clone();
    async move {
        let stream = controller.run(
            reconcile,
            |c, e, x| super::error_policy(CONTROLLER, c, e, x),
            ctx,
        );
        super::drain(queue, stream).await
    }
}

/// Days the customer keeps the namespaces of its deleted projects.
pub fn retention_days(customer: &Customer) -> i32 {
    customer
        .spec
        .terminated_project_retention_days
        .unwrap_or(crate::lifecycle::archive::DEFAULT_RETENTION_DAYS)
}

/// The namespace of a deleted project, kept for recovery until `purge_at`.
pub struct Kept {
    pub namespace: Arc<Namespace>,
    pub archive: crate::lifecycle::archive::Archive,
    pub purge_at: jiff::Timestamp,
}

/// The customer's archived namespaces not taken back by a project, and not being deleted.
pub fn kept_archives(caches: &super::Caches, customer: &Customer) -> Vec<Kept> {
    let name = customer.name_any();
    let retention = retention_days(customer);
    caches
        .namespaces
        .state()
        .into_iter()
        .filter(|n| {
            n.labels().get(labels::CUSTOMER) == Some(&name)
                && n.metadata.deletion_timestamp.is_none()
                && caches
                    .projects
                    .get(&ObjectRef::new(&n.name_any()))
                    .is_none_or(|p| p.metadata.deletion_timestamp.is_some())
        })
        .filter_map(|n| {
            let archive = crate::lifecycle::archive::Archive::of(&n)?;
            if !crate::lifecycle::archive::purgeable(&n, &archive) {
                return None;
            }
            let purge_at = archive.purge_after(retention);
            Some(Kept {
                namespace: n,
                archive,
                purge_at,
            })
        })
        .collect()
}

/// Adds quantity maps key by key.
pub fn sum_maps(
    maps: impl IntoIterator<Item = BTreeMap<String, Milli>>,
) -> BTreeMap<String, Milli> {
    let mut out: BTreeMap<String, Milli> = BTreeMap::new();
    for m in maps {
        for (k, v) in m {
            *out.entry(k).or_default() += v;
        }
    }
    out
}

/// A project's `spec.quota.hard` as numbers (values that do not parse are left out; the
/// schema refuses them anyway).
pub fn allocation_of(p: &Project) -> BTreeMap<String, Milli> {
    p.spec
        .quota
        .as_ref()
        .map(|q| {
            q.hard
                .iter()
                .filter_map(|(k, v)| Milli::parse(&v.0).ok().map(|m| (k.clone(), m)))
                .collect()
        })
        .unwrap_or_default()
}

fn strings(m: BTreeMap<String, Milli>) -> BTreeMap<String, String> {
    m.into_iter().map(|(k, v)| (k, v.to_string())).collect()
}

async fn reconcile(customer: Arc<Customer>, ctx: Arc<Context>) -> Result<Action, Error> {
    let Some(_timer) = ctx.begin(CONTROLLER, customer.as_ref()) else {
        return Ok(Action::await_change());
    };
    let name = customer.name_any();
    if customer.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let now = ctx.clock.now();
    let caches = &ctx.caches;

    let (roles, bindings) =
        access::customer_access(&customer, now, &|n: &str| caches.is_project_namespace(n));
    apply::ensure_cluster_rbac(&ctx, &roles, &bindings).await?;

    // Repair the quota ledger so that it equals what the stored projects hold: a reservation
    // whose project never appeared (a create admitted, then refused or lost) goes, one that
    // differs from its stored project (an admitted change that was never stored; a shrink, which
    // admission never reserves) is set to it, and a stored project without one gets one. Entries
    // reserved in the last `SETTLE` are left to their admissions (whose objects may still be on
    // their way to storage); the reconciler comes back when they settle. Each correction applies
    // only if the entry is still the one read here.
    let mut ledger_checks = Vec::new();
    let ledger_ref =
        ObjectRef::new(&crate::ledger::ledger_name(&name)).within(ctx.ledger.namespace());
    if let Some(cm) = caches.ledgers.get(&ledger_ref) {
        let entries = crate::ledger::decode(&cm);
        let stored: BTreeMap<String, Arc<Project>> = caches
            .projects
            .state()
            .into_iter()
            .filter(|p| p.spec.customer == name && p.metadata.deletion_timestamp.is_none())
            .map(|p| (p.name_any(), p))
            .collect();
        for (project, reservation) in &entries {
            let settle = reservation
                .at
                .checked_add(crate::ledger::SETTLE)
                .unwrap_or(reservation.at);
            let want = stored.get(project).map(|p| crate::ledger::allocation(p));
            if want.as_ref() == Some(&reservation.hard) {
                continue;
            }
            if now < settle {
                ledger_checks.push(Some(settle));
                continue;
            }
            ctx.ledger
                .correct(&name, project, want, now, Some(reservation.at))
                .await?;
            tracing::info!(
                customer = name,
                project,
                "corrected a quota reservation to what the stored project holds"
            );
        }
        for (project, p) in &stored {
            if !entries.contains_key(project) {
                let want = crate::ledger::allocation(p);
                ctx.ledger
                    .correct(&name, project, Some(want), now, None)
                    .await?;
            }
        }
    }

    let projects: Vec<Arc<Project>> = caches
        .projects
        .state()
        .into_iter()
        .filter(|p| p.spec.customer == name)
        .collect();
    let active: Vec<&Arc<Project>> = projects
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect();
    let terminated = caches
        .namespaces
        .state()
        .iter()
        .filter(|n| {
            let l = n.labels();
            l.get(labels::CUSTOMER) == Some(&name)
                && l.get(labels::STATE).map(String::as_str) == Some("terminated")
                && !active.iter().any(|p| p.name_any() == n.name_any())
        })
        .count();
    // Purge archived namespaces whose retention has run out: the only destructive step.
    let retention = retention_days(&customer);
    let mut purge_times = Vec::new();
    for Kept {
        namespace: n,
        archive,
        purge_at: at,
    } in kept_archives(caches, &customer)
    {
        if now >= at {
            apply::remove(&ctx, n.as_ref()).await?;
            ctx.event(
                customer.as_ref(),
                kube::runtime::events::EventType::Normal,
                "Purged",
                format!("deleted namespace {} of project {} for good: it was deleted at {} and the retention is {retention} days", n.name_any(), n.name_any(), archive.terminated_at.0),
            )
            .await;
        } else {
            purge_times.push(Some(at));
        }
    }

    let allocated = sum_maps(active.iter().map(|p| allocation_of(p)));
    let usage = sum_maps(active.iter().map(|p| {
        p.status
            .as_ref()
            .map(|s| {
                s.usage
                    .iter()
                    .filter_map(|(k, v)| Milli::parse(v).ok().map(|m| (k.clone(), m)))
                    .collect()
            })
            .unwrap_or_default()
    }));
    let resources: i64 = active
        .iter()
        .filter_map(|p| p.status.as_ref().and_then(|s| s.resources_count))
        .sum();

    let previous = customer.status.clone().unwrap_or_default();
    let mut conds = Conditions::new(&previous.conditions, customer.metadata.generation, now);
    let over: Vec<String> = customer
        .spec
        .quota
        .as_ref()
        .map(|q| {
            let mut over: Vec<String> = q
                .hard
                .iter()
                .filter_map(|(k, limit)| {
                    let limit = Milli::parse(&limit.0).ok()?;
                    let used = allocated.get(k).copied().unwrap_or_default();
                    (used > limit).then(|| format!("{k}: {used} allocated of {limit}"))
                })
                .collect();
            if let Some(max) = q.projects
                && active.len() as i64 > i64::from(max)
            {
                over.push(format!("projects: {} of {max}", active.len()));
            }
            over
        })
        .unwrap_or_default();
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
    let not_ready: Vec<String> = active
        .iter()
        .filter(|p| {
            !p.status
                .as_ref()
                .is_some_and(|s| is_true(&s.conditions, "Ready"))
        })
        .map(|p| p.name_any())
        .collect();
    if not_ready.is_empty() {
        conds.set(
            "Ready",
            true,
            "Reconciled",
            format!("{} projects ready", active.len()),
        );
    } else {
        conds.set(
            "Ready",
            false,
            "ProjectsProgressing",
            format!("projects not ready yet: {}", not_ready.join(", ")),
        );
    }
    let usage = strings(usage);
    let status = CustomerStatus {
        observed_generation: customer.metadata.generation,
        conditions: conds.finish(),
        projects: Some(ProjectCounts {
            active: active.len() as i32,
            terminated: terminated as i32,
        }),
        resources_count: Some(resources),
        allocated: strings(allocated),
        cost: ctx.config.prices.as_ref().map(|p| p.estimate(&usage)),
        usage,
    };
    apply::ensure_status(&ctx, customer.as_ref(), customer.status.as_ref(), &status).await?;
    ctx.succeeded(CONTROLLER, customer.as_ref());

    let expiries = customer
        .spec
        .owners
        .iter()
        .chain(customer.spec.support.iter())
        .map(|h| h.expiration_time.as_ref().map(|t| t.0))
        .chain(purge_times)
        .chain(ledger_checks);
    Ok(match lifecycle::earliest_after(now, expiries) {
        Some(at) => Action::requeue(lifecycle::until(now, at).min(Duration::from_secs(3600))),
        None => Action::requeue(Duration::from_secs(3600)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocations_add_up_by_resource() {
        let m = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), Milli::parse(v).unwrap()))
                .collect::<BTreeMap<_, _>>()
        };
        let total = sum_maps([
            m(&[("requests.cpu", "2"), ("requests.memory", "1Gi")]),
            m(&[("requests.cpu", "500m")]),
        ]);
        assert_eq!(
            strings(total),
            BTreeMap::from([
                ("requests.cpu".into(), "2500m".into()),
                ("requests.memory".into(), "1Gi".into())
            ])
        );
    }
}
