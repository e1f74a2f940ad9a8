//! The Project reconciler: namespace, quota, limits, customer-role bindings, per-project access
//! roles, and a status that tells the truth.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures::channel::mpsc::UnboundedReceiver;
use futures::{Future, StreamExt};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{LimitRange, Namespace, ResourceQuota};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, RoleBinding};
use kube::ResourceExt;
use kube::runtime::Controller;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::{ObjectRef, Store};

use super::conditions::Conditions;
use super::queue::Queue;
use super::{Changes, Context, Error, apply};
use crate::api::ExpirationPolicy;
use crate::api::project::{CustomerSummary, MoveRecord, QuotaStatus};
use crate::api::{
    Customer, MembershipPhase, Project, ProjectMembership, ProjectPhase, ProjectStatus,
};
use crate::desired::access::{self, Grant, ProjectAudience};
use crate::desired::labels;
use crate::desired::namespace::{self as ns_desired, Freeze, NamespaceState, Standing};
use crate::lifecycle::{self, Dates, Schedule};
use crate::metrics::{Metrics, PhaseLabel};
use crate::watch::inventory::NamespaceContents;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

pub const CONTROLLER: &str = "project";

/// The shared streams the Project controller is triggered by.
pub struct Streams {
    pub projects: Changes<Project>,
    pub customers: Changes<Customer>,
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

fn project_ref(name: &str) -> ObjectRef<Project> {
    ObjectRef::new(name)
}

/// Builds the controller; the returned future runs it.
pub fn controller(
    ctx: &Arc<Context>,
    s: Streams,
    concurrency: u16,
) -> impl Future<Output = ()> + use<> {
    let projects = ctx.caches.projects.clone();
    let by_customer = move |c: Arc<Customer>| {
        let name = c.name_any();
        projects
            .state()
            .into_iter()
            .filter(|p| p.spec.customer == name)
            .map(|p| ObjectRef::from_obj(p.as_ref()))
            .collect::<Vec<_>>()
    };
    let project_label = |obj: &dyn LabelSource| obj.project_label().map(|p| project_ref(&p));
    let queue = Queue::<Project>::new(ctx.metrics.clone(), CONTROLLER);
    let store = ctx.caches.projects.clone();
    let controller = Controller::for_shared_stream(queue.own(s.projects), store.clone())
        .with_config(super::controller_config(concurrency))
        .reconcile_all_on(queue.all_on(store, ctx.on_leadership_or_clock_jump()))
        .watches_shared_stream(
            super::queue::spec_changes(s.customers, ctx.caches.customers.clone()),
            queue.mapped(by_customer),
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
pub fn record_phases(projects: &Store<Project>, metrics: &Metrics) {
    let mut counts: BTreeMap<String, i64> = BTreeMap::new();
    for p in projects.state() {
        let phase = p
            .status
            .as_ref()
            .and_then(|s| s.phase)
            .map(|p| format!("{p:?}"))
            .unwrap_or_else(|| "Unknown".into());
        *counts.entry(phase).or_default() += 1;
    }
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

/// Removes the operator's RoleBindings in a project namespace that no longer grant anything: those
/// of memberships that are gone or being deleted (access ends with the membership, not when the
/// garbage collector gets to it), and those of customer owners and support not in `wanted`.
async fn revoke_stale_bindings(
    ctx: &Context,
    namespace: &str,
    memberships: &[Arc<ProjectMembership>],
    wanted: &[RoleBinding],
) -> Result<(), Error> {
    let member_bindings: BTreeSet<String> = memberships
        .iter()
        .filter(|m| m.metadata.deletion_timestamp.is_none())
        .map(|m| access::membership_binding_name(&m.name_any()))
        .collect();
    let wanted: BTreeSet<String> = wanted.iter().map(|b| b.name_any()).collect();
    for rb in ctx.caches.role_bindings.state() {
        if rb.namespace().as_deref() != Some(namespace)
            || rb.project_label().as_deref() != Some(namespace)
        {
            continue;
        }
        let stale = match rb.labels().get(labels::PART).map(String::as_str) {
            Some("membership") => !member_bindings.contains(&rb.name_any()),
            Some("owner" | "support") => !wanted.contains(&rb.name_any()),
            _ => false,
        };
        if stale {
            apply::remove(ctx, rb.as_ref()).await?;
        }
    }
    Ok(())
}

/// The status fields that come from what the namespace holds.
pub fn usage_of(contents: &NamespaceContents) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("cpu".to_string(), contents.cpu.to_string()),
        ("memory".to_string(), contents.memory.to_string()),
        ("storage".to_string(), contents.storage.to_string()),
        ("pods".to_string(), contents.pods().to_string()),
    ])
}

fn quota_status(rq: &ResourceQuota) -> Option<QuotaStatus> {
    let st = rq.status.as_ref()?;
    let strings =
        |m: &Option<BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>| {
            m.as_ref()
                .map(|m| m.iter().map(|(k, v)| (k.clone(), v.0.clone())).collect())
                .unwrap_or_default()
        };
    Some(QuotaStatus {
        hard: strings(&st.hard),
        used: strings(&st.used),
    })
}

/// Whether the quota controller has caught up with the quota's spec.
fn quota_enforced(rq: &ResourceQuota) -> bool {
    let want = rq.spec.as_ref().and_then(|s| s.hard.as_ref());
    let have = rq.status.as_ref().and_then(|s| s.hard.as_ref());
    match (want, have) {
        (Some(w), Some(h)) => {
            w.len() == h.len()
                && w.iter().all(|(k, v)| {
                    h.get(k)
                        .is_some_and(|hv| crate::desired::quantity::same_quantity(&v.0, &hv.0))
                })
        }
        (None, _) => true,
        _ => false,
    }
}

pub fn customer_summary(c: &Customer) -> CustomerSummary {
    CustomerSummary {
        name: c.name_any(),
        display_name: c.spec.display_name.clone(),
        native_name: c.spec.native_name.clone(),
        abbreviation: c.spec.abbreviation.clone(),
        display_billing_info_in_projects: c.spec.display_billing_info_in_projects.unwrap_or(false),
    }
}

/// Effective grace: the project's, else its customer's, else 0.
pub fn effective_grace_days(p: &Project, c: Option<&Customer>) -> i32 {
    p.spec
        .grace_period_days
        .or_else(|| c.and_then(|c| c.spec.grace_period_days))
        .unwrap_or(0)
}

pub fn dates_of(p: &Project, grace: i32) -> Dates {
    let parse = |d: &Option<String>| d.as_deref().and_then(|s| lifecycle::parse_date(s).ok());
    Dates::resolve(parse(&p.spec.start_date), parse(&p.spec.end_date), grace)
}

async fn reconcile(project: Arc<Project>, ctx: Arc<Context>) -> Result<Action, Error> {
    let Some(_timer) = ctx.begin(CONTROLLER, project.as_ref()) else {
        return Ok(Action::await_change());
    };
    let name = project.name_any();
    if project.metadata.deletion_timestamp.is_some() {
        super::termination::soft_delete(&ctx, &project).await?;
        return Ok(Action::await_change());
    }
    super::termination::ensure_finalizer(&ctx, &project).await?;
    let now = ctx.clock.now();
    let caches = &ctx.caches;
    let customer = caches
        .customers
        .get(&ObjectRef::new(&project.spec.customer));
    let previous = project.status.clone().unwrap_or_default();
    let generation = project.metadata.generation;
    let namespace = caches.namespaces.get(&ObjectRef::new(&name));

    // A namespace belongs to one project incarnation: never adopt one someone else created, nor
    // one an earlier project of this name left behind, unless staff say so.
    let adopt = project
        .annotations()
        .get(crate::desired::annotations::ADOPT_NAMESPACE)
        .map(String::as_str)
        == Some("true");
    let standing = namespace
        .as_deref()
        .map(|n| ns_desired::standing(n, &project));
    let archive = namespace
        .as_deref()
        .filter(|_| standing == Some(Standing::Archived))
        .and_then(crate::lifecycle::archive::Archive::of);
    let refusal = match standing {
        Some(Standing::Foreign) => Some(format!(
            "namespace {name} already exists and was not created for this project; nothing is bound in it. Choose another project name, or delete the namespace if it is unused"
        )),
        Some(Standing::Orphaned { uid }) if !adopt => Some(format!(
            "namespace {name} was made for an earlier project {name} (uid {}) that is gone without its soft delete; nothing is bound in it. Adopting it, with its data and its old memberships, is a staff decision: staff set the annotation {}: \"true\" on this project",
            uid.as_deref().unwrap_or("unknown"),
            crate::desired::annotations::ADOPT_NAMESPACE
        )),
        Some(Standing::Archived) => match &archive {
            None => Some(format!(
                "namespace {name} is marked as an archive but holds no readable archive record; nothing is bound in it. Staff may adopt it with the annotation {}: \"true\"",
                crate::desired::annotations::ADOPT_NAMESPACE
            ))
            .filter(|_| !adopt),
            Some(a) if a.customer != project.spec.customer && !adopt => Some(format!(
                "namespace {name} is the archive of a project of customer {}; recovering it under customer {} is a move, which staff make with the annotation {}: \"true\"",
                a.customer,
                project.spec.customer,
                crate::desired::annotations::ADOPT_NAMESPACE
            )),
            Some(_) => None,
        },
        _ => None,
    };
    if let Some(msg) = refusal {
        return conflict(&project, customer.as_deref(), &ctx, &previous, now, msg).await;
    }

    // Recovery: this project adopts the archived namespace of a deleted one. The record is
    // stored before the namespace is unarchived, so a lost write cannot lose the record.
    let recovery = previous.recovery.clone();
    if let Some(archive) = &archive
        && recovery.as_ref().map(|r| &r.terminated_at) != Some(&archive.terminated_at)
    {
        let record = super::termination::recover(&ctx, &project, archive).await?;
        let status = ProjectStatus {
            recovery: Some(record),
            ..previous.clone()
        };
        return persist_record_first(&ctx, &project, &status).await;
    }

    // Access first: whatever fails later (a lifecycle step, a quota the apiserver refuses) can
    // keep nobody's access. Bindings of memberships that are gone or being deleted, of customer
    // owners and support who expired or left, go; the per-project cluster roles follow the
    // members who are active now.
    let is_project_namespace = |n: &str| caches.is_project_namespace(n);
    let memberships: Vec<Arc<ProjectMembership>> = caches
        .memberships
        .state()
        .into_iter()
        .filter(|m| m.namespace().as_deref() == Some(name.as_str()))
        .collect();
    let wanted_bindings = customer
        .as_ref()
        .map(|c| {
            access::customer_bindings(&project, c, &ctx.config.roles, now, &is_project_namespace)
        })
        .unwrap_or_default();
    revoke_stale_bindings(&ctx, &name, &memberships, &wanted_bindings).await?;
    let grants = access::grants(&memberships, true, now, &is_project_namespace);
    let active: Vec<&ProjectMembership> = grants
        .iter()
        .filter(|(_, g)| *g == Grant::Active)
        .map(|(m, _)| *m)
        .collect();
    let audience = ProjectAudience::of(&active, customer.as_deref(), now, &is_project_namespace);
    let (roles, bindings) = access::project_access(&project, &audience);
    apply::ensure_cluster_rbac(&ctx, &roles, &bindings).await?;

    // Move: the customer changed since the last reconcile.
    let mut last_move = previous.last_move.clone();
    if let Some(from) = previous.customer.as_ref().map(|c| c.name.clone())
        && from != project.spec.customer
    {
        let preserve = project.spec.preserve_permissions_on_move.unwrap_or(true);
        if !preserve {
            for m in caches
                .memberships
                .state()
                .iter()
                .filter(|m| m.namespace().as_deref() == Some(name.as_str()))
            {
                if m.status.as_ref().and_then(|s| s.phase) != Some(MembershipPhase::Revoked) {
                    super::termination::set_membership_phase(&ctx, m, Some(MembershipPhase::Revoked), "Revoked", "revoked: the project moved to another customer without preserving permissions", now).await?;
                }
            }
        }
        ctx.ledger.release(&from, &name).await?;
        last_move = Some(MoveRecord {
            time: Time(now),
            from: from.clone(),
            to: project.spec.customer.clone(),
            preserved_permissions: preserve,
        });
        let kept = if preserve {
            "memberships kept"
        } else {
            "memberships revoked"
        };
        ctx.event(
            project.as_ref(),
            EventType::Normal,
            "Moved",
            format!(
                "moved from customer {from} to {}; {kept}",
                project.spec.customer
            ),
        )
        .await;
    }

    let grace = effective_grace_days(&project, customer.as_deref());
    let dates = dates_of(&project, grace);
    let schedule = dates.schedule(now);
    let policy = project.spec.expiration_policy.unwrap_or_default();

    // End date: the expiration policy runs once the grace period is over; an end date moved
    // later undoes a suspension.
    let mut suspension = previous.suspension.clone();
    let mut workloads_deleted = previous
        .conditions
        .iter()
        .any(|c| c.type_ == "Expired" && c.status == "True" && c.reason == "WorkloadsDeleted");
    if schedule == Schedule::Expired && namespace.is_some() {
        match policy {
            // First the plan (the sizes to restore) is stored, then it is carried out.
            ExpirationPolicy::Suspend if suspension.is_none() => {
                let record = super::expiry::plan_suspension(&ctx, &name).await?;
                let status = ProjectStatus {
                    suspension: Some(record),
                    ..previous.clone()
                };
                return persist_record_first(&ctx, &project, &status).await;
            }
            ExpirationPolicy::Suspend
                if !previous.conditions.iter().any(|c| {
                    c.type_ == "Expired" && c.status == "True" && c.reason == "Suspended"
                }) =>
            {
                let record = suspension.as_ref().expect("planned above");
                super::expiry::suspend(&ctx, &name, record).await?;
                ctx.event(project.as_ref(), EventType::Normal, "Suspended", format!("end date plus grace passed: {} workloads scaled to 0, {} CronJobs and {} Jobs suspended; pods: 0", record.replicas.len(), record.cron_jobs.len(), record.jobs.len())).await;
            }
            ExpirationPolicy::Delete if !workloads_deleted => {
                let deleted = super::expiry::delete_workloads(&ctx, &name).await?;
                ctx.event(
                    project.as_ref(),
                    EventType::Normal,
                    "WorkloadsDeleted",
                    format!("end date plus grace passed: deleted {deleted:?}"),
                )
                .await;
                workloads_deleted = true;
            }
            _ => {}
        }
    } else if schedule != Schedule::Expired {
        if let Some(record) = suspension.take() {
            super::expiry::resume(&ctx, &name, &record).await?;
            ctx.event(
                project.as_ref(),
                EventType::Normal,
                "Resumed",
                format!(
                    "end date moved later: {} workloads restored, {} CronJobs and {} Jobs resumed",
                    record.replicas.len(),
                    record.cron_jobs.len(),
                    record.jobs.len()
                ),
            )
            .await;
        }
        workloads_deleted = false;
    }
    let frozen = schedule == Schedule::NotStarted
        || (schedule == Schedule::Expired && policy != ExpirationPolicy::None);
    let freeze = if frozen { Freeze::NoPods } else { Freeze::None };

    // Namespace.
    let want_ns = ns_desired::namespace_for(
        &project,
        NamespaceState::Active,
        matches!(schedule, Schedule::InGrace | Schedule::Expired),
    );
    if apply::ensure(&ctx, namespace.clone(), &want_ns).await? && namespace.is_none() {
        ctx.event(
            project.as_ref(),
            EventType::Normal,
            "NamespaceCreated",
            format!("created namespace {name}"),
        )
        .await;
    }
    let namespace_active = namespace
        .as_ref()
        .is_some_and(|n| n.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Active"));

    // Customer owners and support.
    if namespace.is_some() {
        for rb in &wanted_bindings {
            let current = caches
                .role_bindings
                .get(&ObjectRef::new(&rb.name_any()).within(&name));
            apply::ensure_role_binding(&ctx, current, rb).await?;
        }
    }

    // Quota and limits: applied without what the apiserver would refuse; a failure is reported
    // and retried, and stops nothing above.
    let limits = customer
        .as_deref()
        .map(crate::desired::quota::customer_limits)
        .unwrap_or_default();
    let want_quota = ns_desired::resource_quota_for(&project, freeze, &limits);
    let quota_ref = ObjectRef::<ResourceQuota>::new(ns_desired::QUOTA_NAME).within(&name);
    let current_quota = caches.quotas.get(&quota_ref);
    let limits_ref = ObjectRef::<LimitRange>::new(ns_desired::LIMITS_NAME).within(&name);
    let current_limits = caches.limit_ranges.get(&limits_ref);
    let mut child_errors: Vec<Error> = Vec::new();
    let quota_written = match &want_quota {
        Some(q) => apply::ensure(&ctx, current_quota.clone(), q)
            .await
            .map(|_| ()),
        None => match &current_quota {
            Some(q) => apply::remove(&ctx, q.as_ref()).await,
            None => Ok(()),
        },
    };
    let limits_written = match (ns_desired::limit_range_for(&project), &current_limits) {
        (Some(l), current) => apply::ensure(&ctx, current.clone(), &l).await.map(|_| ()),
        (None, Some(l)) => apply::remove(&ctx, l.as_ref()).await,
        (None, None) => Ok(()),
    };
    let mut spec_problems = ns_desired::spec_problems(&project);
    for (what, result) in [("quota", quota_written), ("limits", limits_written)] {
        if let Err(e) = result {
            spec_problems.push(format!("writing the namespace's {what} failed: {e}"));
            child_errors.push(e);
        }
    }
    let unbounded = crate::desired::quota::unbounded(
        &project
            .spec
            .quota
            .as_ref()
            .map(|q| q.hard.clone())
            .unwrap_or_default(),
        &limits,
    );
    if !unbounded.is_empty() {
        spec_problems.push(format!(
            "spec.quota.hard sets no {}, which customer {} limits: the namespace is held at 0 for it until spec.quota.hard sets it",
            unbounded.join(", "),
            project.spec.customer
        ));
    }

    // Status.
    let contents = ctx.inventory.contents(&name);
    let mut conds = Conditions::new(&previous.conditions, generation, now);
    conds.set(
        "NamespaceConflict",
        false,
        "NamespaceOwned",
        format!("namespace {name} belongs to this project"),
    );
    if namespace_active {
        conds.set(
            "NamespaceReady",
            true,
            "Active",
            format!("namespace {name} is active"),
        );
    } else {
        conds.set(
            "NamespaceReady",
            false,
            "Creating",
            format!("waiting for namespace {name}"),
        );
    }
    match &customer {
        Some(_) => conds.set("AccessReady", true, "Bound", format!("{} members and customer roles bound", audience.readers.len())),
        None => conds.set(
            "AccessReady",
            false,
            "CustomerNotFound",
            format!("customer {:?} does not exist: create it, or set spec.customer to an existing customer", project.spec.customer),
        ),
    };
    let quota_ready = match (&want_quota, &current_quota) {
        (None, _) => true,
        (Some(_), Some(q)) => quota_enforced(q),
        (Some(_), None) => false,
    };
    if !spec_problems.is_empty() {
        conds.set(
            "SpecValid",
            false,
            "Invalid",
            format!(
                "applied without what Kubernetes refuses: {}",
                spec_problems.join("; ")
            ),
        );
    } else {
        conds.set(
            "SpecValid",
            true,
            "Valid",
            "quota and container limits are valid",
        );
    }
    if quota_ready {
        conds.set(
            "QuotaReady",
            true,
            "Enforced",
            "the namespace's quota is enforced",
        );
    } else {
        conds.set(
            "QuotaReady",
            false,
            "Waiting",
            "waiting for the quota controller to enforce tenancy-quota",
        );
    }
    match schedule {
        Schedule::InGrace => conds.set(
            "InGracePeriod",
            true,
            "EndDatePassed",
            format!(
                "end date passed; the {policy:?} policy runs after {}",
                dates
                    .effective_end_date
                    .map(|d| d.to_string())
                    .unwrap_or_default()
            ),
        ),
        _ => conds.set(
            "InGracePeriod",
            false,
            "NotInGrace",
            "not between the end date and the end of the grace period",
        ),
    };
    match (schedule, policy) {
        (Schedule::Expired, ExpirationPolicy::Suspend) => conds.set("Expired", true, "Suspended", "end date plus grace passed: workloads suspended and pods: 0; move spec.endDate later to resume"),
        (Schedule::Expired, ExpirationPolicy::Delete) if workloads_deleted => conds.set("Expired", true, "WorkloadsDeleted", "end date plus grace passed: workloads deleted and pods: 0"),
        (Schedule::Expired, _) => conds.set("Expired", true, "NoAction", "end date plus grace passed; the expiration policy is None"),
        _ => conds.set("Expired", false, "NotExpired", "the project has not expired"),
    };
    let ready = namespace_active && customer.is_some() && quota_ready;
    let phase = if !ready {
        ProjectPhase::Pending
    } else {
        match schedule {
            Schedule::NotStarted => ProjectPhase::Scheduled,
            Schedule::Running => ProjectPhase::Active,
            Schedule::InGrace => ProjectPhase::Finished,
            Schedule::Expired => ProjectPhase::Expired,
        }
    };
    if ready {
        conds.set(
            "Ready",
            true,
            "Reconciled",
            format!("project {name} is {phase:?}"),
        );
    } else {
        let why = ["NamespaceReady", "AccessReady", "QuotaReady"]
            .into_iter()
            .filter(|t| !conds.is_true(t))
            .collect::<Vec<_>>()
            .join(", ");
        conds.set("Ready", false, "Progressing", format!("waiting for {why}"));
    }

    let usage = usage_of(&contents);
    let status = ProjectStatus {
        observed_generation: generation,
        phase: Some(phase),
        conditions: conds.finish(),
        namespace: Some(name.clone()),
        // Always names the customer this status was computed under (its display fields once it
        // is in the cache): the next reconcile tells a move by it.
        customer: Some(
            customer
                .as_deref()
                .map(customer_summary)
                .unwrap_or_else(|| CustomerSummary {
                    name: project.spec.customer.clone(),
                    ..Default::default()
                }),
        ),
        oecd_fos_2007_label: project
            .spec
            .oecd_fos_2007_code
            .map(|c| c.label().to_string()),
        resources_count: Some(contents.total()),
        resource_counts: contents.counts.clone(),
        members: Some(access::member_counts(&grants)),
        quota: current_quota.as_deref().and_then(quota_status),
        usage: usage.clone(),
        cost: ctx
            .config
            .prices
            .as_ref()
            .map(|prices| prices.estimate(&usage)),
        effective_grace_period_days: Some(grace),
        effective_end_date: dates.effective_end_date.map(|d| d.to_string()),
        end_date_requested_by: project
            .annotations()
            .get(crate::desired::annotations::END_DATE_REQUESTED_BY)
            .cloned(),
        termination: previous.termination.clone(),
        recovery,
        last_move,
        suspension,
    };
    // Only onto the version this status was computed from: a stale cached copy must not drop
    // records (recovery, lastMove, suspension) a newer status holds.
    match apply::ensure_status_of_version(&ctx, project.as_ref(), project.status.as_ref(), &status)
        .await
    {
        Err(e) if apply::is_conflict(&e) => return Ok(Action::requeue(Duration::from_secs(1))),
        other => other?,
    };
    if let Some(e) = child_errors.into_iter().next() {
        return Err(e);
    }
    ctx.succeeded(CONTROLLER, project.as_ref());

    // Wake up exactly at the next instant something changes.
    let member_expiries = memberships
        .iter()
        .filter(|m| m.status.as_ref().and_then(|s| s.phase) != Some(MembershipPhase::Revoked))
        .map(|m| m.spec.expiration_time.as_ref().map(|t| t.0));
    let holder_expiries = customer
        .iter()
        .flat_map(|c| c.spec.owners.iter().chain(c.spec.support.iter()))
        .map(|h| h.expiration_time.as_ref().map(|t| t.0));
    let next = lifecycle::earliest_after(
        now,
        member_expiries
            .chain(holder_expiries)
            .chain([dates.next_boundary(now)]),
    );
    Ok(match next {
        Some(at) => Action::requeue(lifecycle::until(now, at).min(Duration::from_secs(3600))),
        None => Action::requeue(Duration::from_secs(3600)),
    })
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
        Ok(_) => Ok(Action::requeue(Duration::from_millis(100))),
    }
}

/// The namespace exists and is not this project's to manage: bind nothing, say why.
async fn conflict(
    project: &Project,
    customer: Option<&Customer>,
    ctx: &Context,
    previous: &ProjectStatus,
    now: Timestamp,
    msg: String,
) -> Result<Action, Error> {
    let mut conds = Conditions::new(&previous.conditions, project.metadata.generation, now);
    conds.set("NamespaceConflict", true, "NamespaceExists", msg.clone());
    conds.set("Ready", false, "NamespaceConflict", msg.clone());
    let status = ProjectStatus {
        observed_generation: project.metadata.generation,
        phase: Some(ProjectPhase::Conflict),
        conditions: conds.finish(),
        ..Default::default()
    };
    if previous.phase != Some(ProjectPhase::Conflict) {
        ctx.event(project, EventType::Warning, "NamespaceConflict", msg)
            .await;
    }
    // Nobody gets anything through the memberships of a namespace the project does not own; the
    // customer's owners keep what they need to follow the advice above (get and delete the
    // Project), support may read it.
    let is_project_namespace = |n: &str| ctx.caches.is_project_namespace(n);
    let audience = ProjectAudience::of(&[], customer, now, &is_project_namespace);
    let (roles, bindings) = access::project_access(project, &audience);
    apply::ensure_cluster_rbac(ctx, &roles, &bindings).await?;
    apply::ensure_status(ctx, project, project.status.as_ref(), &status).await?;
    Ok(Action::requeue(Duration::from_secs(3600)))
}
