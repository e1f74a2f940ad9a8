//! The Project reconciler: namespace, quota, limits, customer-role bindings, per-project access
//! roles, and a status that tells the truth.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::channel::mpsc::UnboundedReceiver;
use futures::{Future, StreamExt};
use k8s_openapi::api::core::v1::{LimitRange, Namespace, ResourceQuota};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, RoleBinding};
use kube::ResourceExt;
use kube::runtime::Controller;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;

use super::handle::{self, Handle};
use super::queue::Queue;
use super::{Changes, Context, Error, apply};
use crate::api::{
    Customer, MembershipPhase, Project, ProjectMembership, ProjectPhase, ProjectStatus,
};
use crate::desired::namespace as ns_desired;
use crate::desired::project::{ProjectView, Step};
use crate::desired::{self, labels};
use crate::metrics::{Metrics, PhaseLabel};

pub const CONTROLLER: &str = "project";

/// The shared streams the Project controller is triggered by.
pub struct Streams {
    pub projects: Changes<Project>,
    pub checklists: Changes<crate::api::Checklist>,
    pub customers: Changes<Customer>,
    /// The customers again, for the flips of their `CreditExhausted`.
    pub customer_credit: Changes<Customer>,
    pub memberships: Changes<ProjectMembership>,
    pub namespaces: Changes<Namespace>,
    pub role_bindings: Changes<RoleBinding>,
    pub quotas: Changes<ResourceQuota>,
    pub limit_ranges: Changes<LimitRange>,
    pub cluster_roles: Changes<ClusterRole>,
    pub cluster_role_bindings: Changes<ClusterRoleBinding>,
    /// Namespaces whose counted contents changed.
    pub namespace_changes: UnboundedReceiver<String>,
}

fn project_ref(name: &str) -> ObjectRef<Handle<Project>> {
    ObjectRef::new(name)
}

/// The projects of a customer, to reconcile when it changes.
fn projects_of(
    caches: crate::watch::Caches,
) -> impl Fn(Arc<Customer>) -> Vec<ObjectRef<Handle<Project>>> + Send + Sync + 'static {
    move |c: Arc<Customer>| {
        caches
            .projects_of(&c.name_any())
            .iter()
            .map(|p| project_ref(&p.name_any()))
            .collect::<Vec<_>>()
    }
}

/// Builds the controller; the returned future runs it.
pub fn controller(
    ctx: &Arc<Context>,
    s: Streams,
    concurrency: u16,
) -> impl Future<Output = ()> + use<> {
    let by_customer = projects_of(ctx.caches.clone());
    let by_customer_credit = projects_of(ctx.caches.clone());
    let caches = ctx.caches.clone();
    let by_checklist = move |c: Arc<crate::api::Checklist>| {
        let name = c.name_any();
        caches
            .customers
            .state()
            .into_iter()
            .filter(|cu| cu.spec.project_checklist.as_deref() == Some(name.as_str()))
            .flat_map(|cu| caches.projects_of(&cu.name_any()))
            .map(|p| project_ref(&p.name_any()))
            .collect::<Vec<_>>()
    };
    let project_label = |obj: &dyn LabelSource| obj.project_label().map(|p| project_ref(&p));
    let queue = Queue::<Handle<Project>>::new(ctx.metrics.clone(), CONTROLLER);
    let (own, store) = handle::handles(s.projects, ctx.caches.projects.clone(), |_| true);
    let controller = Controller::for_shared_stream(queue.own(own), store.clone())
        .with_config(super::controller_config(concurrency))
        .reconcile_all_on(queue.all_on(store, ctx.on_leadership_or_clock_jump()))
        .watches_shared_stream(
            super::queue::spec_changes(s.customers, ctx.caches.customers.clone()),
            queue.mapped(by_customer),
        )
        .watches_shared_stream(
            super::queue::spec_changes(s.checklists, ctx.caches.checklists.clone()),
            queue.mapped(by_checklist),
        )
        .watches_shared_stream(
            super::queue::condition_flips(s.customer_credit, "CreditExhausted"),
            queue.mapped(by_customer_credit),
        )
        .watches_shared_stream(
            s.memberships,
            queue.mapped(|m: Arc<ProjectMembership>| m.namespace().map(|n| project_ref(&n))),
        )
        .watches_shared_stream(
            s.namespaces,
            queue.mapped(move |n: Arc<Namespace>| {
                // A namespace of ours, or any namespace named like a project (conflicts,
                // deletions).
                project_label(n.as_ref()).or_else(|| Some(project_ref(&n.name_any())))
            }),
        )
        .watches_shared_stream(s.role_bindings, queue.owners())
        .watches_shared_stream(s.quotas, queue.owners())
        .watches_shared_stream(s.limit_ranges, queue.owners())
        .watches_shared_stream(s.cluster_roles, queue.owners())
        .watches_shared_stream(s.cluster_role_bindings, queue.owners())
        .reconcile_on(queue.refs(s.namespace_changes.map(|ns| project_ref(&ns))));
    let ctx = ctx.clone();
    async move {
        let stream = controller.run(
            reconcile,
            |p, e, c| super::error_policy(CONTROLLER, p, e, c),
            ctx,
        );
        super::drain(queue, stream).await
    }
}

trait LabelSource {
    fn project_label(&self) -> Option<String>;
}

impl<K: ResourceExt> LabelSource for K {
    fn project_label(&self) -> Option<String> {
        self.labels().get(labels::PROJECT).cloned()
    }
}

/// Updates the projects-by-phase gauge from the cache.
pub fn record_phases(projects: &crate::watch::Compact<Project>, metrics: &Metrics) {
    let mut counts: BTreeMap<String, i64> = BTreeMap::new();
    projects.each(|p| {
        let phase = p
            .status
            .as_ref()
            .and_then(|s| s.phase)
            .map(|p| format!("{p:?}"))
            .unwrap_or_else(|| "Unknown".into());
        *counts.entry(phase).or_default() += 1;
    });
    for phase in [
        "Pending",
        "Scheduled",
        "Active",
        "Finished",
        "Expired",
        "Conflict",
        "Terminating",
        "Unknown",
    ] {
        metrics
            .projects
            .get_or_create(&PhaseLabel {
                phase: phase.into(),
            })
            .set(counts.get(phase).copied().unwrap_or(0));
    }
}

async fn reconcile(handle: Arc<Handle<Project>>, ctx: Arc<Context>) -> Result<Action, Error> {
    let Some(_timer) = ctx.begin(CONTROLLER, handle.as_ref()) else {
        return Ok(Action::await_change());
    };
    let Some(project) = handle::current(&ctx.caches.projects, &handle) else {
        return Ok(Action::await_change());
    };
    if let Some(wait) = ctx.wait_for_caches() {
        return Ok(wait);
    }
    if project.metadata.deletion_timestamp.is_some() {
        // The last change of rate before the project goes (its workloads were removed just
        // before the delete): recorded at its instant, not when the record is settled.
        settle_usage(&ctx, &project).await?;
        super::termination::soft_delete(&ctx, &project).await?;
        return Ok(Action::await_change());
    }
    let now = ctx.clock.now();
    let read = Read::of(&ctx, &project);
    let is_project_namespace = |n: &str| ctx.caches.is_project_namespace(n);
    let plan = desired::project::plan(
        &read.view(&project, &is_project_namespace),
        &ctx.config,
        now,
    );
    let previous = project.status.clone().unwrap_or_default();

    // Access first: whatever fails later (a lifecycle step, a quota the apiserver refuses) keeps
    // nobody's access. The finalizer (before anything is made that a delete must archive) at
    // the same time as the project's own read and manage grants: one round trip less for a new
    // project.
    revoke(&ctx, &read, &plan.revoke).await?;
    let (finalizer, access) = futures::join!(
        super::termination::ensure_finalizer(&ctx, &project),
        apply::ensure_cluster_rbac(&ctx, &plan.cluster_roles, &plan.cluster_role_bindings),
    );
    let with_finalizer = finalizer?;
    access?;

    // Usage is accrued before anything that may fail: a month closed, a change of rate recorded.
    if !apply::write_usage(&ctx, &plan.usage).await? {
        return Ok(Action::requeue(Duration::from_millis(500)));
    }

    // The lifecycle steps that end this reconcile (a Conflict; a record stored first).
    if let Some(action) = carry_out_first_step(&ctx, &project, &plan, &previous).await? {
        return Ok(action);
    }
    if let Some(moved) = &plan.moved {
        carry_out_move(&ctx, &project, &read, moved, now).await?;
    }
    carry_out_step(&ctx, &project, plan.step.as_ref()).await?;

    let (failures, first_error) = apply_children(&ctx, &project, &read, &plan).await?;

    // Status, only onto the version it was computed from: a stale cached copy must not drop
    // records (recovery, lastMove, suspension) a newer status holds.
    let status = desired::project::with_failures(&plan, &previous, &failures, now);
    // The finalizer's patch made a new version; when it differs from the cached one only by
    // that (same generation, same status), the status goes onto it, not onto the cached version
    // it would conflict with.
    let base = match &with_finalizer {
        Some(p)
            if p.metadata.generation == project.metadata.generation
                && p.status == project.status =>
        {
            p
        }
        _ => project.as_ref(),
    };
    // A change of figures only (a member joined, the quota's usage moved), or of how far a
    // project on its way has come (its namespace is active, its quota not yet counted), waits
    // for the next ones while the last status write is recent: one write for the burst a new
    // project sees. A new project's first status waits too, on its way or ready, for the pace
    // from its first reconcile: one write says it is `Ready` with the members who joined
    // meanwhile.
    let pace_key = super::backoff::key(CONTROLLER, project.as_ref());
    let now_mono = std::time::Instant::now();
    let wait = if first_error.is_some() {
        None
    } else if desired::project::first_may_wait(project.status.as_ref(), &status) {
        ctx.pacer.first_wait(&pace_key, now_mono)
    } else if desired::project::figures_only(&previous, &status)
        || desired::project::progress_only(&previous, &status)
    {
        ctx.pacer.wait(&pace_key, now_mono)
    } else {
        None
    };
    if let Some(wait) = wait {
        ctx.succeeded(CONTROLLER, project.as_ref());
        return Ok(Action::requeue(plan.wake.map_or(wait, |w| wait.min(w))));
    }
    match apply::ensure_status_of_version(&ctx, base, project.status.as_ref(), &status).await {
        Err(e) if apply::is_conflict(&e) => return Ok(Action::requeue(Duration::from_secs(1))),
        Ok(true) => ctx.pacer.wrote(pace_key, std::time::Instant::now()),
        other => {
            other?;
        }
    };
    for (reason, msg) in desired::usage::credit_events(
        &previous.conditions,
        &status.conditions,
        project.spec.credit_exhausted_policy.unwrap_or_default(),
    ) {
        ctx.event(project.as_ref(), EventType::Warning, reason, msg)
            .await;
    }
    // Answers changed after a review, on a project that keeps its namespace: say so once.
    if let Some(msg) = desired::project::review_due(&previous, &status) {
        ctx.event(
            project.as_ref(),
            EventType::Warning,
            "ChecklistReviewPending",
            msg,
        )
        .await;
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    ctx.succeeded(CONTROLLER, project.as_ref());
    Ok(ctx.come_back(project.as_ref(), plan.wake))
}

/// Brings a project's usage record up to date with what its namespace requests now.
async fn settle_usage(ctx: &Context, project: &Project) -> Result<(), Error> {
    let name = project.name_any();
    let now = ctx.clock.now();
    let latest = ctx.caches.latest_usage(&name, now);
    let owned = ctx
        .caches
        .namespaces
        .get(&ObjectRef::new(&name))
        .is_some_and(|n| ns_desired::standing(&n, project) == ns_desired::Standing::Owned);
    let writes = desired::usage::project_writes(
        project,
        owned,
        &ctx.inventory.contents(&name),
        latest.as_deref(),
        now,
        ctx.config.prices.as_ref(),
    );
    apply::write_usage(ctx, &writes).await?;
    Ok(())
}

/// Applies the namespace, the customer's bindings, the quota and the limits. The quota and
/// limits are the ones a tenant's spec can make fail: their failures are returned (to report and
/// retry) and stop nothing; any other failure is the reconcile's.
async fn apply_children(
    ctx: &Context,
    project: &Project,
    read: &Read,
    plan: &desired::project::ProjectPlan,
) -> Result<(Vec<String>, Option<Error>), Error> {
    let name = project.name_any();
    let created = apply::ensure(ctx, read.namespace.clone(), &plan.namespace).await?
        && read.namespace.is_none();
    // Sent alongside the children, not before them.
    let event = async {
        if created {
            ctx.event(
                project,
                EventType::Normal,
                "NamespaceCreated",
                format!("created namespace {name}"),
            )
            .await;
        }
    };
    // The rest of the namespace's children at once: one round trip for the reconcile to wait.
    let bindings = futures::future::try_join_all(plan.customer_bindings.iter().map(|rb| {
        let current = ctx
            .caches
            .role_bindings
            .get(&ObjectRef::new(&rb.name_any()).within(&name));
        apply::ensure_role_binding(ctx, current, rb)
    }));
    let (bindings, quota, limits, ()) = futures::join!(
        bindings,
        apply::ensure_or_remove(ctx, read.quota.clone(), plan.quota.as_ref()),
        apply::ensure_or_remove(ctx, read.limits.clone(), plan.limits.as_ref()),
        event,
    );
    bindings?;
    let mut failures = Vec::new();
    let mut first_error = None;
    for (what, result) in [("quota", quota), ("limits", limits)] {
        if let Err(e) = result {
            failures.push(format!("writing the namespace's {what} failed: {e}"));
            first_error.get_or_insert(e);
        }
    }
    Ok((failures, first_error))
}

/// Carries out a Conflict, a recovery or a suspension plan: each ends the reconcile (the last two
/// come back once their record is stored). `None`: the reconcile goes on.
async fn carry_out_first_step(
    ctx: &Context,
    project: &Project,
    plan: &desired::project::ProjectPlan,
    previous: &ProjectStatus,
) -> Result<Option<Action>, Error> {
    match &plan.step {
        Some(Step::Conflict(msg)) => {
            if previous.phase != Some(ProjectPhase::Conflict) {
                let msg = msg.clone();
                ctx.event(project, EventType::Warning, "NamespaceConflict", msg)
                    .await;
            }
            apply::ensure_status(ctx, project, project.status.as_ref(), &plan.status).await?;
            return Ok(Some(Action::requeue(Duration::from_secs(3600))));
        }
        Some(Step::Hold(msg)) => {
            let phase = plan.status.phase;
            if previous.phase != phase {
                let (kind, reason) = if phase == Some(ProjectPhase::Rejected) {
                    (EventType::Warning, "ChecklistRejected")
                } else {
                    (EventType::Normal, "ChecklistReviewPending")
                };
                ctx.event(project, kind, reason, msg.clone()).await;
            }
            apply::ensure_status(ctx, project, project.status.as_ref(), &plan.status).await?;
            return Ok(Some(Action::requeue(Duration::from_secs(3600))));
        }
        Some(Step::Recover(archive)) => {
            return super::termination::recover(ctx, project, archive, previous)
                .await
                .map(Some);
        }
        Some(Step::PlanSuspension) => {
            let record = super::expiry::plan_suspension(ctx, &project.name_any()).await?;
            let status = ProjectStatus {
                suspension: Some(record),
                ..previous.clone()
            };
            return persist_record_first(ctx, project, &status).await.map(Some);
        }
        _ => {}
    }
    Ok(None)
}

/// What one reconcile reads from the caches about a project.
struct Read {
    customer: Option<Arc<Customer>>,
    checklist: Option<Arc<crate::api::Checklist>>,
    namespace: Option<Arc<Namespace>>,
    memberships: Vec<Arc<ProjectMembership>>,
    role_bindings: Vec<Arc<RoleBinding>>,
    quota: Option<Arc<ResourceQuota>>,
    limits: Option<Arc<LimitRange>>,
    contents: desired::NamespaceContents,
    usage: Option<Arc<crate::api::ProjectUsage>>,
}

impl Read {
    fn of(ctx: &Context, project: &Project) -> Read {
        let name = project.name_any();
        let caches = &ctx.caches;
        let customer = caches
            .customers
            .get(&ObjectRef::new(&project.spec.customer));
        Read {
            checklist: customer
                .as_ref()
                .and_then(|c| c.spec.project_checklist.as_deref())
                .and_then(|name| caches.checklists.get(&ObjectRef::new(name))),
            customer,
            namespace: caches.namespaces.get(&ObjectRef::new(&name)),
            memberships: caches.memberships_in(&name),
            role_bindings: caches.role_bindings_in(&name),
            quota: caches
                .quotas
                .get(&ObjectRef::new(ns_desired::QUOTA_NAME).within(&name)),
            limits: caches
                .limit_ranges
                .get(&ObjectRef::new(ns_desired::LIMITS_NAME).within(&name)),
            contents: ctx.inventory.contents(&name),
            usage: caches.latest_usage(&name, ctx.clock.now()),
        }
    }

    fn view<'a>(
        &'a self,
        project: &'a Project,
        is_project_namespace: &'a dyn Fn(&str) -> bool,
    ) -> ProjectView<'a> {
        ProjectView {
            project,
            customer: self.customer.as_deref(),
            namespace: self.namespace.as_deref(),
            memberships: &self.memberships,
            role_bindings: &self.role_bindings,
            quota: self.quota.as_deref(),
            contents: &self.contents,
            is_project_namespace,
            checklist: self.checklist.as_deref(),
            usage: self.usage.as_deref(),
        }
    }
}

/// Removes the bindings the plan says grant nothing any more.
async fn revoke(ctx: &Context, read: &Read, names: &[String]) -> Result<(), Error> {
    for rb in read
        .role_bindings
        .iter()
        .filter(|rb| names.contains(&rb.name_any()))
    {
        apply::remove(ctx, rb.as_ref()).await?;
    }
    Ok(())
}

/// A move to another customer: the previous customer's reservation released, the memberships
/// revoked when permissions are not preserved, an Event.
async fn carry_out_move(
    ctx: &Context,
    project: &Project,
    read: &Read,
    moved: &desired::project::Move,
    now: jiff::Timestamp,
) -> Result<(), Error> {
    for m in read
        .memberships
        .iter()
        .filter(|m| moved.revoke.contains(&m.name_any()))
    {
        super::termination::set_membership_phase(
            ctx,
            m,
            Some(MembershipPhase::Revoked),
            "Revoked",
            "revoked: the project moved to another customer without preserving permissions",
            now,
        )
        .await?;
        crate::fault::point("move/membership-revoked");
    }
    ctx.ledger
        .release(&moved.record.from, &project.name_any())
        .await?;
    crate::fault::point("move/ledger-released");
    let kept = if moved.record.preserved_permissions {
        "memberships kept"
    } else {
        "memberships revoked"
    };
    // Once per move, also when a crash or a conflict repeats this pass (the status that
    // records the move is written after it).
    ctx.event_once(
        project,
        EventType::Normal,
        "Moved",
        format!(
            "moved from customer {} to {}; {kept}",
            moved.record.from, moved.record.to
        ),
        &format!(
            "{}/{}/{}/{}",
            project.uid().unwrap_or_default(),
            moved.record.from,
            moved.record.to,
            project.metadata.generation.unwrap_or_default()
        ),
    )
    .await;
    Ok(())
}

/// Carries out Suspend, DeleteWorkloads or Resume, with its Event.
async fn carry_out_step(
    ctx: &Context,
    project: &Project,
    step: Option<&Step>,
) -> Result<(), Error> {
    let name = project.name_any();
    // Suspend and Resume are sent once per suspension (its stored plan's time), also when a
    // crash repeats the pass; the workloads' deletion is not repeated.
    let once = |record: &crate::api::project::SuspensionRecord, what: &str| {
        format!(
            "{}/{what}/{}",
            project.uid().unwrap_or_default(),
            record
                .time
                .as_ref()
                .map(|t| t.0.to_string())
                .unwrap_or_default()
        )
    };
    let (reason, note, key) = match step {
        Some(Step::Suspend(record)) => {
            super::expiry::suspend(ctx, &name, record).await?;
            (
                "Suspended",
                format!(
                    "end date plus grace passed: {} workloads scaled to 0, {} CronJobs and {} Jobs suspended; pods: 0",
                    record.replicas.len(),
                    record.cron_jobs.len(),
                    record.jobs.len()
                ),
                Some(once(record, "suspend")),
            )
        }
        Some(Step::DeleteWorkloads) => {
            let deleted = super::expiry::delete_workloads(ctx, &name).await?;
            (
                "WorkloadsDeleted",
                format!("end date plus grace passed: deleted {deleted:?}"),
                None,
            )
        }
        Some(Step::Resume(record)) => {
            super::expiry::resume(ctx, &name, record).await?;
            (
                "Resumed",
                format!(
                    "end date moved later: {} workloads restored, {} CronJobs and {} Jobs resumed",
                    record.replicas.len(),
                    record.cron_jobs.len(),
                    record.jobs.len()
                ),
                Some(once(record, "resume")),
            )
        }
        _ => return Ok(()),
    };
    match key {
        Some(key) => {
            ctx.event_once(project, EventType::Normal, reason, note, &key)
                .await
        }
        None => ctx.event(project, EventType::Normal, reason, note).await,
    }
    Ok(())
}

/// Stores a status holding a new record (recovery, suspension plan) before the step it records
/// changes anything else, then comes back at once to carry on.
async fn persist_record_first(
    ctx: &Context,
    project: &Project,
    status: &ProjectStatus,
) -> Result<Action, Error> {
    match apply::ensure_status_of_version(ctx, project, project.status.as_ref(), status).await {
        Err(e) if apply::is_conflict(&e) => Ok(Action::requeue(Duration::from_secs(1))),
        Err(e) => Err(e),
        Ok(_) => {
            if status.suspension.is_some() {
                crate::fault::point("suspend/planned");
            }
            Ok(Action::requeue(Duration::from_millis(100)))
        }
    }
}
