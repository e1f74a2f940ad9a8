//! The usage records of projects that are gone: once a Project no longer exists (its soft
//! delete finished, or it was purged), its latest record is settled at a rate of zero and closed
//! at the month's end, so that the month's totals are final. Records of existing projects are
//! written by the Project reconcile, which sees their rate change.

use std::sync::Arc;
use std::time::Duration;

use futures::Future;
use kube::ResourceExt;
use kube::runtime::Controller;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;

use super::queue::Queue;
use super::{Changes, Context, Error, apply};
use crate::api::{Project, ProjectUsage};
use crate::desired::usage;

pub const CONTROLLER: &str = "usage";

/// Builds the controller; the returned future runs it.
pub fn controller(
    ctx: &Arc<Context>,
    usages: Changes<ProjectUsage>,
    projects: Changes<Project>,
    concurrency: u16,
) -> impl Future<Output = ()> + use<> {
    let queue = Queue::<ProjectUsage>::new(ctx.metrics.clone(), CONTROLLER);
    let store = ctx.caches.usages.clone();
    let caches = ctx.caches.clone();
    let clock = ctx.clock.clone();
    // A project that goes away: its latest record.
    let latest_of = move |p: Arc<Project>| {
        caches
            .latest_usage(&p.name_any(), clock.now())
            .map(|r| ObjectRef::from_obj(r.as_ref()))
    };
    let controller = Controller::for_shared_stream(queue.own(usages), store.clone())
        .with_config(super::controller_config(concurrency))
        .reconcile_all_on(queue.all_on(store, ctx.on_leadership_or_clock_jump()))
        .watches_shared_stream(projects, queue.mapped(latest_of));
    let ctx = ctx.clone();
    async move {
        let stream = controller.run(
            reconcile,
            |r, e, c| super::error_policy(CONTROLLER, r, e, c),
            ctx,
        );
        super::drain(queue, stream).await
    }
}

async fn reconcile(record: Arc<ProjectUsage>, ctx: Arc<Context>) -> Result<Action, Error> {
    let Some(_timer) = ctx.begin(CONTROLLER, record.as_ref()) else {
        return Ok(Action::await_change());
    };
    if let Some(wait) = ctx.wait_for_caches() {
        return Ok(wait);
    }
    let project = &record.spec.project;
    if ctx.caches.projects.contains(&ObjectRef::new(project)) {
        return Ok(Action::await_change());
    }
    let now = ctx.clock.now();
    let latest = ctx.caches.latest_usage(project, now);
    if latest.as_ref().map(|l| l.name_any()) != Some(record.name_any()) {
        return Ok(Action::await_change());
    }
    let writes = usage::advance(&usage::UsageInput {
        project,
        customer: &record.spec.customer,
        latest: latest.as_deref(),
        rate: usage::Rate::default(),
        now,
        prices: ctx.config.prices.as_ref(),
        credit: record.spec.credit.as_deref().and_then(usage::parse_micros),
    });
    if !apply::write_usage(&ctx, &writes).await? {
        return Ok(Action::requeue(Duration::from_millis(500)));
    }
    let last = writes.last().or(latest.as_deref());
    Ok(match usage::next_close(last) {
        Some(at) => {
            Action::requeue(crate::lifecycle::until(now, at).min(Duration::from_secs(3600)))
        }
        None => Action::await_change(),
    })
}

/// Sets the per-project billing gauges from the caches at `now` (before a scrape, with
/// `--usage-metrics`): month-to-date cost, credit amount and credit remaining.
pub fn record_metrics(
    caches: &crate::watch::Caches,
    metrics: &crate::metrics::Metrics,
    prices: &crate::desired::cost::Prices,
    low_percent: u8,
    now: jiff::Timestamp,
) {
    metrics.project_cost.clear();
    metrics.project_credit_remaining.clear();
    metrics.project_credit_amount.clear();
    let amount = |m: i128| m as f64 / 1_000_000.0;
    // One project read back at a time: at 10,000 projects, all of them at once would hold
    // every project decoded for the length of a scrape.
    caches.projects.each(|p| {
        let name = p.name_any();
        let latest = caches.latest_usage(&name, now);
        let credit = p.spec.credit.map(usage::credit_micros);
        let month = usage::current(
            &name,
            &p.spec.customer,
            latest.as_deref(),
            now,
            Some(prices),
            credit,
        );
        let labels = crate::metrics::BillingLabels {
            project: name.clone(),
            customer: p.spec.customer.clone(),
            currency: prices.currency.clone(),
        };
        let cost = usage::cost_of(
            prices,
            &usage::Exact::from_stored(&month.spec.exact),
            usage::Month::of(now).millis(),
        )
        .0;
        metrics
            .project_cost
            .get_or_create(&labels)
            .set(amount(cost));
        if let Some(credit) = credit {
            let created = p
                .metadata
                .creation_timestamp
                .as_ref()
                .map(|t| t.0)
                .unwrap_or(now);
            let c = usage::credit_status(Some(&month), credit, prices, low_percent, created);
            let remaining = usage::parse_micros(&c.remaining).unwrap_or(0);
            metrics
                .project_credit_remaining
                .get_or_create(&labels)
                .set(amount(remaining));
            metrics
                .project_credit_amount
                .get_or_create(&labels)
                .set(amount(credit));
        }
    });
}
