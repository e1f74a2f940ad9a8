//! Archives that outlived their customer. While a customer exists, its reconciler purges the
//! namespaces of its deleted projects after its `terminatedProjectRetentionDays`. Once the
//! customer is deleted too, this controller does it, after the retention the customer had when
//! the project was deleted (recorded in the archive; 30 days for archives written before that was
//! recorded). Nothing is purged early because a customer went away, and nothing is kept forever.

use std::sync::Arc;
use std::time::Duration;

use futures::{Future, StreamExt};
use k8s_openapi::api::core::v1::Namespace;
use kube::ResourceExt;
use kube::runtime::Controller;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;

use super::handle::{self, Handle};
use super::queue::{Queue, spec_changes};
use super::{Changes, Context, Error, apply};
use crate::api::Customer;
use crate::desired::labels;
use crate::lifecycle::archive::{
    Archive, DEFAULT_RETENTION_DAYS, is_archived as archived, purgeable,
};

pub const CONTROLLER: &str = "archive";

/// Builds the controller; the returned future runs it.
pub fn controller(
    ctx: &Arc<Context>,
    namespaces: Changes<Namespace>,
    customers: Changes<Customer>,
    concurrency: u16,
) -> impl Future<Output = ()> + use<> {
    let queue = Queue::<Handle<Namespace>>::new(ctx.metrics.clone(), CONTROLLER);
    // The controller's store holds the archives only: a handle each.
    let (own, store) = handle::handles(namespaces, ctx.caches.namespaces.clone(), archived);
    let (cache, archives) = (ctx.caches.namespaces.clone(), store.clone());
    let archives_of = move |customer: &str| {
        archives
            .state()
            .into_iter()
            .filter(|h| {
                handle::current(&cache, h).is_some_and(|n| {
                    archived(&n)
                        && n.labels().get(labels::CUSTOMER).map(String::as_str) == Some(customer)
                })
            })
            .map(|h| ObjectRef::from_obj(h.as_ref()))
            .collect::<Vec<_>>()
    };
    // On becoming leader: every archive once (not every namespace of the cluster).
    let every_archive = {
        let store = store.clone();
        ctx.on_leadership_or_clock_jump().flat_map(move |()| {
            let refs: Vec<ObjectRef<Handle<Namespace>>> = store
                .state()
                .iter()
                .map(|h| ObjectRef::from_obj(h.as_ref()))
                .collect();
            futures::stream::iter(refs)
        })
    };
    let controller = Controller::for_shared_stream(queue.own(own), store)
        .with_config(super::controller_config(concurrency))
        .reconcile_on(queue.refs(every_archive))
        .watches_shared_stream(
            spec_changes(customers, ctx.caches.customers.clone()),
            queue.mapped(move |c: Arc<Customer>| archives_of(&c.name_any())),
        );
    let ctx = ctx.clone();
    async move {
        let stream = controller.run(
            reconcile,
            |n, e, c| super::error_policy(CONTROLLER, n, e, c),
            ctx,
        );
        super::drain(queue, stream).await
    }
}

async fn reconcile(handle: Arc<Handle<Namespace>>, ctx: Arc<Context>) -> Result<Action, Error> {
    let Some(_timer) = ctx.begin(CONTROLLER, handle.as_ref()) else {
        return Ok(Action::await_change());
    };
    let Some(n) = handle::current(&ctx.caches.namespaces, &handle) else {
        return Ok(Action::await_change());
    };
    if let Some(wait) = ctx.wait_for_caches() {
        return Ok(wait);
    }
    if n.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let Some(archive) = Archive::of(&n).filter(|a| purgeable(&n, a)) else {
        return Ok(Action::await_change());
    };
    let name = n.name_any();
    let customer = n
        .labels()
        .get(labels::CUSTOMER)
        .cloned()
        .unwrap_or_default();
    // Its customer's reconciler keeps it while the customer exists; a project being recovered
    // takes it back.
    if ctx
        .caches
        .customers
        .get(&ObjectRef::new(&customer))
        .is_some()
        || ctx.caches.projects.contains(&ObjectRef::new(&name))
    {
        return Ok(Action::await_change());
    }
    let retention = archive.retention_days.unwrap_or(DEFAULT_RETENTION_DAYS);
    let at = archive.purge_after(retention);
    let now = ctx.clock.now();
    if now < at {
        let wait = now.duration_until(at).unsigned_abs();
        return Ok(Action::requeue(wait.min(Duration::from_secs(24 * 3600))));
    }
    // Sent first, once per namespace: after the deletion nothing would send it again.
    ctx.event_once(
        n.as_ref(),
        EventType::Normal,
        "Purged",
        format!(
            "deleted namespace {name} of project {name} for good: it was deleted at {}, its customer {customer} is gone too, and the retention was {retention} days",
            archive.terminated_at.0
        ),
        n.uid().as_deref().unwrap_or(&name),
    )
    .await;
    apply::remove(&ctx, n.as_ref()).await?;
    crate::fault::point("purge/namespace-deleted");
    Ok(Action::await_change())
}
