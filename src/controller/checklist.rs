//! The Checklist reconciler: its status says how many questions it has, which are asked before
//! any answer, and whether it can work (`Ready`, or `Stalled` naming what cannot).

use std::sync::Arc;

use futures::Future;
use kube::runtime::Controller;
use kube::runtime::controller::Action;

use super::queue::Queue;
use super::{Changes, Context, Error, apply};
use crate::api::{Checklist, ChecklistStatus};
use crate::desired::checklist::{initially_visible, spec_problems};
use crate::desired::conditions::Conditions;

pub const CONTROLLER: &str = "checklist";

/// Builds the controller; the returned future runs it.
pub fn controller(
    ctx: &Arc<Context>,
    checklists: Changes<Checklist>,
    concurrency: u16,
) -> impl Future<Output = ()> + use<> {
    let queue = Queue::<Checklist>::new(ctx.metrics.clone(), CONTROLLER);
    let store = ctx.caches.checklists.clone();
    let controller = Controller::for_shared_stream(queue.own(checklists), store.clone())
        .with_config(super::controller_config(concurrency))
        .reconcile_all_on(queue.all_on(store, ctx.on_leadership_or_clock_jump()));
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

/// The status a checklist should have.
pub fn status_of(c: &Checklist, now: jiff::Timestamp) -> ChecklistStatus {
    let previous = c.status.clone().unwrap_or_default();
    let mut conds = Conditions::new(&previous.conditions, c.metadata.generation, now);
    let problems = spec_problems(&c.spec);
    if problems.is_empty() {
        conds.set(
            "Ready",
            true,
            "Valid",
            format!("{} questions can be answered", c.spec.questions.len()),
        );
    } else {
        let msg = problems.join("; ");
        conds.set("Ready", false, "Invalid", msg.clone());
        conds.set("Stalled", true, "Invalid", msg);
    }
    ChecklistStatus {
        observed_generation: c.metadata.generation,
        questions: c.spec.questions.len() as i32,
        initial_visible_questions: initially_visible(&c.spec),
        conditions: conds.finish(),
    }
}

async fn reconcile(c: Arc<Checklist>, ctx: Arc<Context>) -> Result<Action, Error> {
    let Some(_timer) = ctx.begin(CONTROLLER, c.as_ref()) else {
        return Ok(Action::await_change());
    };
    if let Some(wait) = ctx.wait_for_caches() {
        return Ok(wait);
    }
    let status = status_of(&c, ctx.clock.now());
    apply::ensure_status(ctx.as_ref(), c.as_ref(), c.status.as_ref(), &status).await?;
    Ok(Action::await_change())
}
