//! The Customer reconciler: access for owners and support to the Customer itself, and status
//! aggregated over its projects.

use std::sync::Arc;

use futures::Future;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kube::ResourceExt;
use kube::runtime::Controller;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;

use super::queue::Queue;
use super::{Changes, Context, Error, apply};
use crate::api::{Customer, Project};
use crate::desired::customer::CustomerView;
use crate::desired::{self, labels};
use crate::lifecycle;
use crate::lifecycle::archive::{Archive, is_archived as archived, purgeable};

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

/// Of the customer's namespaces, the archived ones not taken back by a project, not being
/// deleted, and archived by the operator itself, with their archive.
fn kept_archives(
    caches: &crate::watch::Caches,
    namespaces: &[Arc<Namespace>],
) -> Vec<(Arc<Namespace>, Archive)> {
    namespaces
        .iter()
        .filter(|n| n.metadata.deletion_timestamp.is_none())
        .filter_map(|n| {
            let archive = Archive::of(n).filter(|a| purgeable(n, a))?;
            // Only an archive's project is read: every project read is decoded.
            caches
                .projects
                .get(&ObjectRef::new(&n.name_any()))
                .is_none_or(|p| p.metadata.deletion_timestamp.is_some())
                .then(|| (n.clone(), archive))
        })
        .collect()
}

async fn reconcile(customer: Arc<Customer>, ctx: Arc<Context>) -> Result<Action, Error> {
    let Some(_timer) = ctx.begin(CONTROLLER, customer.as_ref()) else {
        return Ok(Action::await_change());
    };
    if let Some(wait) = ctx.wait_for_caches() {
        return Ok(wait);
    }
    let name = customer.name_any();
    if customer.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let now = ctx.clock.now();
    let caches = &ctx.caches;
    let projects: Vec<Arc<Project>> = caches.projects_of(&name);
    let namespaces = caches.namespaces_of(&name);
    let archives = kept_archives(caches, &namespaces);
    let terminated = namespaces
        .iter()
        .filter(|n| {
            archived(n)
                && !projects.iter().any(|p| {
                    p.metadata.deletion_timestamp.is_none() && p.name_any() == n.name_any()
                })
        })
        .count();
    let is_project_namespace = |n: &str| caches.is_project_namespace(n);
    // The months billed to it, for its credit (a pass over the records: only with a credit).
    let usages: Vec<Arc<crate::api::ProjectUsage>> = if customer.spec.credit.is_some() {
        caches
            .usages
            .state()
            .into_iter()
            .filter(|r| r.spec.customer == name)
            .collect()
    } else {
        Vec::new()
    };
    let plan = desired::customer::plan(
        &CustomerView {
            customer: &customer,
            projects: &projects,
            archives: &archives,
            terminated,
            usages: &usages,
            is_project_namespace: &is_project_namespace,
        },
        &ctx.config,
        now,
    );

    apply::ensure_cluster_rbac(&ctx, &plan.cluster_roles, &plan.cluster_role_bindings).await?;
    let ledger_settles = repair_ledger(&ctx, &name, &projects, now).await?;
    for (n, note) in &plan.purge {
        // Sent first, once per namespace: after the deletion nothing would send it again.
        let key = n.uid().unwrap_or_else(|| n.name_any());
        ctx.event_once(
            customer.as_ref(),
            EventType::Normal,
            "Purged",
            note.clone(),
            &key,
        )
        .await;
        apply::remove(&ctx, n.as_ref()).await?;
    }
    // Figures only (a project more, its quota allocated): wait for the next ones while the last
    // status write is recent.
    let pace_key = super::backoff::key(CONTROLLER, customer.as_ref());
    let paced = customer
        .status
        .as_ref()
        .is_some_and(|s| desired::customer::figures_only(s, &plan.status))
        .then(|| ctx.pacer.wait(&pace_key, std::time::Instant::now()))
        .flatten();
    let wake = ledger_settles
        .map(|at| lifecycle::until(now, at))
        .map_or(plan.wake, |w| w.min(plan.wake));
    if let Some(wait) = paced {
        ctx.succeeded(CONTROLLER, customer.as_ref());
        return Ok(Action::requeue(wait.min(wake)));
    }
    if apply::ensure_status(
        &ctx,
        customer.as_ref(),
        customer.status.as_ref(),
        &plan.status,
    )
    .await?
    {
        ctx.pacer.wrote(pace_key, std::time::Instant::now());
    }
    let previous = customer
        .status
        .as_ref()
        .map(|s| s.conditions.clone())
        .unwrap_or_default();
    for (reason, msg) in desired::usage::credit_events(
        &previous,
        &plan.status.conditions,
        crate::api::CreditExhaustedPolicy::Notify,
    ) {
        ctx.event(customer.as_ref(), EventType::Warning, reason, msg)
            .await;
    }
    ctx.succeeded(CONTROLLER, customer.as_ref());
    Ok(Action::requeue(wake))
}

/// Makes the customer's ledger equal what its stored projects hold (see
/// [`crate::ledger::repairs`]); returns when an entry still settling is to be looked at again.
async fn repair_ledger(
    ctx: &Context,
    name: &str,
    projects: &[Arc<Project>],
    now: jiff::Timestamp,
) -> Result<Option<jiff::Timestamp>, Error> {
    let ledger_ref =
        ObjectRef::new(&crate::ledger::ledger_name(name)).within(ctx.ledger.namespace());
    let Some(cm) = ctx.caches.ledgers.get(&ledger_ref) else {
        return Ok(None);
    };
    let stored = projects
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .map(|p| (p.name_any(), crate::ledger::allocation(p)))
        .collect();
    let (corrections, settles) = crate::ledger::repairs(&crate::ledger::decode(&cm), &stored, now);
    for c in corrections {
        ctx.ledger
            .correct(name, &c.project, c.hard, now, c.reserved_at)
            .await?;
        tracing::info!(
            customer = name,
            project = c.project,
            "corrected a quota reservation to what the stored project holds"
        );
    }
    Ok(settles)
}
