//! The Project plan: from what the caches say about a project (a [`ProjectView`]), the
//! configuration and the time, everything its reconcile does: at most one lifecycle [`Step`],
//! the children it must hold, the bindings to revoke, the status to write and when to wake up.
//! Pure: the reconciler reads, calls [`plan`], carries the plan out and reports.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{LimitRange, Namespace, ResourceQuota};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::ResourceExt;

use super::access::{self, Grant, ProjectAudience};
use super::checklist::Review;
use super::conditions::Conditions;
use super::namespace::{self as ns, Freeze, NamespaceState, Standing};
use super::{Config, annotations, labels, usage};
use crate::api::project::{
    ChecklistState, CustomerSummary, MoveRecord, QuotaStatus, SuspensionRecord,
};
use crate::api::{
    CreditExhaustedPolicy, Customer, ExpirationPolicy, MembershipPhase, Project, ProjectMembership,
    ProjectPhase, ProjectStatus,
};
use crate::desired::NamespaceContents;
use crate::lifecycle::archive::Archive;
use crate::lifecycle::{self, Dates, Schedule};

/// What the caches say about one project.
pub struct ProjectView<'a> {
    pub project: &'a Project,
    pub customer: Option<&'a Customer>,
    /// The namespace of the project's name, if there is one.
    pub namespace: Option<&'a Namespace>,
    /// The memberships in that namespace.
    pub memberships: &'a [Arc<ProjectMembership>],
    /// The operator's RoleBindings in that namespace.
    pub role_bindings: &'a [Arc<RoleBinding>],
    /// The namespace's ResourceQuota `tenancy-quota`, as the cluster has it.
    pub quota: Option<&'a ResourceQuota>,
    /// What the namespace holds.
    pub contents: &'a NamespaceContents,
    /// Which namespaces are projects' (the ServiceAccount rule).
    pub is_project_namespace: &'a dyn Fn(&str) -> bool,
    /// The checklist the customer names (`spec.projectChecklist`), if it exists.
    pub checklist: Option<&'a crate::api::Checklist>,
    /// The project's latest usage record (by month), if any.
    pub usage: Option<&'a crate::api::ProjectUsage>,
}

/// The one lifecycle step a reconcile carries out before the children.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// The namespace is not this project's: bind nothing, say why (the status is in the plan).
    Conflict(String),
    /// The checklist answers wait for staff's review, or were rejected: no namespace, no
    /// access; say why (the status is in the plan).
    Hold(String),
    /// Adopt the archived namespace of a deleted project of this name; the record is stored
    /// first, then the reconcile comes back.
    Recover(Box<Archive>),
    /// The expiration policy Suspend is due: list the workloads and store the sizes to restore
    /// first, then come back.
    PlanSuspension,
    /// Scale to 0 and suspend what the stored plan names.
    Suspend(SuspensionRecord),
    /// The expiration policy Delete is due: delete the workloads.
    DeleteWorkloads,
    /// The end date moved later: restore what the stored plan names.
    Resume(SuspensionRecord),
}

/// A move to another customer seen by this reconcile.
#[derive(Clone, Debug, PartialEq)]
pub struct Move {
    pub record: MoveRecord,
    /// Memberships to mark Revoked (the move does not preserve permissions).
    pub revoke: Vec<String>,
}

/// Everything one reconcile of a project does.
#[derive(Clone, Debug)]
pub struct ProjectPlan {
    /// Usage records to write first, in order (a month closed, the current month opened or its
    /// rate changed); empty while the rate holds.
    pub usage: Vec<crate::api::ProjectUsage>,
    /// At most one lifecycle step.
    pub step: Option<Step>,
    /// A move to record (ledger released from the previous customer, memberships revoked).
    pub moved: Option<Move>,
    /// The operator's RoleBindings that grant nothing any more (deleted memberships, customer
    /// roles that ended): removed before anything else.
    pub revoke: Vec<String>,
    /// The per-project ClusterRoles and ClusterRoleBindings.
    pub cluster_roles: Vec<ClusterRole>,
    pub cluster_role_bindings: Vec<ClusterRoleBinding>,
    pub namespace: Namespace,
    /// The customer's owners and support in the namespace (once it exists).
    pub customer_bindings: Vec<RoleBinding>,
    /// `None`: the namespace holds none.
    pub quota: Option<ResourceQuota>,
    pub limits: Option<LimitRange>,
    /// What is wrong with the spec (reported in `SpecValid`; failed writes are added).
    pub spec_problems: Vec<String>,
    /// The status to write (when the step and the children were carried out).
    pub status: ProjectStatus,
    /// When something changes next by time alone (at most an hour ahead); `None`: nothing does,
    /// only a change of an object can (the reconcile waits for one). The plans of the steps
    /// that end a reconcile early come back within the hour.
    pub wake: Option<Duration>,
}

/// A customer's display fields, copied into its projects' status.
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

/// The project's dates with the effective grace.
pub fn dates_of(p: &Project, grace: i32) -> Dates {
    let parse = |d: &Option<String>| d.as_deref().and_then(|s| lifecycle::parse_date(s).ok());
    Dates::resolve(parse(&p.spec.start_date), parse(&p.spec.end_date), grace)
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
                        .is_some_and(|hv| super::quantity::same_quantity(&v.0, &hv.0))
                })
        }
        (None, _) => true,
        _ => false,
    }
}

/// Why the namespace is not this project's to manage, if it is not.
fn refusal(view: &ProjectView<'_>, archive: Option<&Archive>) -> Option<String> {
    let p = view.project;
    let name = p.name_any();
    let adopt = p
        .annotations()
        .get(annotations::ADOPT_NAMESPACE)
        .map(String::as_str)
        == Some("true");
    let adopt_note = format!("{}: \"true\"", annotations::ADOPT_NAMESPACE);
    match view.namespace.map(|n| ns::standing(n, p))? {
        Standing::Foreign => Some(format!(
            "namespace {name} already exists and was not created for this project; nothing is bound in it. Choose another project name, or delete the namespace if it is unused"
        )),
        Standing::Orphaned { uid } if !adopt => Some(format!(
            "namespace {name} was made for an earlier project {name} (uid {}) that is gone without its soft delete; nothing is bound in it. Adopting it, with its data and its old memberships, is a staff decision: staff set the annotation {adopt_note} on this project",
            uid.as_deref().unwrap_or("unknown"),
        )),
        Standing::Archived => match archive {
            None if !adopt => Some(format!(
                "namespace {name} is marked as an archive but holds no readable archive record; nothing is bound in it. Staff may adopt it with the annotation {adopt_note}"
            )),
            Some(a) if a.customer != p.spec.customer && !adopt => Some(format!(
                "namespace {name} is the archive of a project of customer {}; recovering it under customer {} is a move, which staff make with the annotation {adopt_note}",
                a.customer, p.spec.customer,
            )),
            _ => None,
        },
        _ => None,
    }
}

/// The message of a review that became due on a project running in its namespace (its answers
/// changed after staff approved them), once: when `ChecklistApproved` turns False.
pub fn review_due(previous: &ProjectStatus, next: &ProjectStatus) -> Option<String> {
    let approved = |s: &ProjectStatus| {
        s.conditions
            .iter()
            .find(|c| c.type_ == "ChecklistApproved")
            .map(|c| (c.status == "True", c.message.clone()))
    };
    match (approved(previous), approved(next)) {
        (Some((true, _)), Some((false, msg))) => Some(msg),
        _ => None,
    }
}

/// Why the checklist holds a project back, if it does.
fn hold_message(state: &ChecklistState, review: &Review) -> Option<String> {
    match review {
        Review::Pending(ids) => Some(format!(
            "checklist {} answers {} need a review by staff (spec.checklistReview); the namespace is created once they approve",
            state.name,
            ids.join(", ")
        )),
        Review::Rejected(ids) => Some(format!(
            "staff rejected the answers {} to checklist {}{}; change them and ask for another review",
            ids.join(", "),
            state.name,
            state
                .comment
                .as_ref()
                .map(|c| format!(": {c}"))
                .unwrap_or_default()
        )),
        Review::NotNeeded | Review::Approved => None,
    }
}

fn set_checklist_approved(
    conds: &mut Conditions<'_>,
    state: &ChecklistState,
    review: &Review,
    running: bool,
) {
    match review {
        Review::NotNeeded => conds.set(
            "ChecklistApproved",
            true,
            "NoReviewNeeded",
            format!("no answer to checklist {} needs a review", state.name),
        ),
        Review::Approved => conds.set(
            "ChecklistApproved",
            true,
            "Approved",
            format!(
                "staff ({}) approved the answers to checklist {}",
                state.reviewed_by.as_deref().unwrap_or("unknown"),
                state.name
            ),
        ),
        Review::Pending(_) | Review::Rejected(_) => conds.set(
            "ChecklistApproved",
            false,
            if matches!(review, Review::Rejected(_)) {
                "Rejected"
            } else {
                "ReviewPending"
            },
            match review {
                // The project runs in its namespace: it keeps running while staff look again.
                Review::Pending(ids) if running => format!(
                    "answers {} to checklist {} changed since staff reviewed them: a review by staff is due (spec.checklistReview); the namespace stays meanwhile",
                    ids.join(", "),
                    state.name
                ),
                _ => hold_message(state, review).unwrap_or_default(),
            },
        ),
    };
}

/// The status of a project the checklist holds back: PendingReview waits for staff
/// (Reconciling), Rejected waits for new answers (Stalled).
fn hold_status(
    p: &Project,
    customer: Option<&Customer>,
    previous: &ProjectStatus,
    now: Timestamp,
    state: &ChecklistState,
    review: &Review,
    msg: &str,
) -> ProjectStatus {
    let mut conds = Conditions::new(&previous.conditions, p.metadata.generation, now);
    set_checklist_approved(&mut conds, state, review, false);
    let rejected = matches!(review, Review::Rejected(_));
    let reason = if rejected {
        "Rejected"
    } else {
        "ReviewPending"
    };
    conds.set("Ready", false, reason, msg);
    conds.set(
        if rejected { "Stalled" } else { "Reconciling" },
        true,
        reason,
        msg,
    );
    ProjectStatus {
        observed_generation: p.metadata.generation,
        phase: Some(if rejected {
            ProjectPhase::Rejected
        } else {
            ProjectPhase::PendingReview
        }),
        conditions: conds.finish(),
        customer: customer.map(customer_summary),
        checklist: Some(state.clone()),
        ..Default::default()
    }
}

/// The status of a project in Conflict.
fn conflict_status(
    p: &Project,
    previous: &ProjectStatus,
    now: Timestamp,
    msg: &str,
) -> ProjectStatus {
    let mut conds = Conditions::new(&previous.conditions, p.metadata.generation, now);
    conds.set("NamespaceConflict", true, "NamespaceExists", msg);
    conds.set("Ready", false, "NamespaceConflict", msg);
    conds.set("Stalled", true, "NamespaceConflict", msg);
    ProjectStatus {
        observed_generation: p.metadata.generation,
        phase: Some(ProjectPhase::Conflict),
        conditions: conds.finish(),
        ..Default::default()
    }
}

/// The operator's bindings in the namespace that grant nothing any more: those of memberships
/// that are gone or being deleted, and those of customer roles not in `wanted`.
fn stale_bindings(view: &ProjectView<'_>, wanted: &[RoleBinding]) -> Vec<String> {
    let name = view.project.name_any();
    let member_bindings: BTreeSet<String> = view
        .memberships
        .iter()
        .filter(|m| m.metadata.deletion_timestamp.is_none())
        .map(|m| access::membership_binding_name(&m.name_any()))
        .collect();
    let wanted: BTreeSet<String> = wanted.iter().map(|b| b.name_any()).collect();
    view.role_bindings
        .iter()
        .filter(|rb| {
            rb.namespace().as_deref() == Some(name.as_str())
                && rb.labels().get(labels::PROJECT) == Some(&name)
        })
        .filter(
            |rb| match rb.labels().get(labels::PART).map(String::as_str) {
                Some("membership") => !member_bindings.contains(&rb.name_any()),
                Some("owner" | "support") => !wanted.contains(&rb.name_any()),
                _ => false,
            },
        )
        .map(|rb| rb.name_any())
        .collect()
}

/// Plans one reconcile of a project that is not being deleted (the soft delete has its own
/// sequence).
pub fn plan(view: &ProjectView<'_>, config: &Config, now: Timestamp) -> ProjectPlan {
    let p = view.project;
    let name = p.name_any();
    let previous = p.status.clone().unwrap_or_default();
    let generation = p.metadata.generation;
    let customer = view.customer;
    let is_pns = view.is_project_namespace;
    let standing = view.namespace.map(|n| ns::standing(n, p));
    let archive = view
        .namespace
        .filter(|_| standing == Some(Standing::Archived))
        .and_then(Archive::of);

    // Usage accrues from what the workloads of the project's own namespace request.
    let credit_amount = p.spec.credit.map(usage::credit_micros);
    let usage_writes = usage::project_writes(
        p,
        standing == Some(Standing::Owned),
        view.contents,
        view.usage,
        now,
        config.prices.as_ref(),
    );
    let latest_usage = usage_writes.last().or(view.usage);
    let created = p
        .metadata
        .creation_timestamp
        .as_ref()
        .map(|t| t.0)
        .unwrap_or(now);
    let credit = match (credit_amount, config.prices.as_ref()) {
        (Some(amount), Some(prices)) => Some(usage::at_milestone(
            usage::credit_status(
                latest_usage,
                amount,
                prices,
                config.credit_low_percent,
                created,
            ),
            config.credit_low_percent,
            now,
        )),
        _ => None,
    };
    // A customer whose credit ran out stops its projects as their own credit would.
    let customer_exhausted = customer.is_some_and(|c| {
        c.status
            .as_ref()
            .is_some_and(|s| super::conditions::is_true(&s.conditions, "CreditExhausted"))
    });
    let customer_credit =
        customer.is_some_and(|c| c.spec.credit.is_some()) && config.prices.is_some();
    let credit_state = match credit
        .as_ref()
        .map(|c| usage::credit_state(c, config.credit_low_percent, now))
    {
        _ if customer_exhausted => Some(usage::CreditState::Exhausted),
        None if customer_credit => Some(usage::CreditState::Plenty),
        own => own,
    };
    let credit_policy = p.spec.credit_exhausted_policy.unwrap_or_default();
    let credit_suspends = credit_state == Some(usage::CreditState::Exhausted)
        && credit_policy == CreditExhaustedPolicy::Suspend;
    let usage_wake = [
        usage::next_close(latest_usage),
        credit.as_ref().and_then(|c| c.low_at.as_ref().map(|t| t.0)),
        credit
            .as_ref()
            .and_then(|c| c.runs_out_at.as_ref().map(|t| t.0)),
    ];

    let wanted_bindings = customer
        .map(|c| access::customer_bindings(p, c, &config.roles, now, is_pns))
        .unwrap_or_default();
    let grants = access::grants(view.memberships, true, now, is_pns);
    let active: Vec<&ProjectMembership> = grants
        .iter()
        .filter(|(_, g)| *g == Grant::Active)
        .map(|(m, _)| *m)
        .collect();

    // Conflict: the namespace is not ours; the customer's owners keep get and delete on the
    // Project (to follow the advice), nobody gets anything through the namespace's memberships.
    let conflict = refusal(view, archive.as_ref());
    let audience = match &conflict {
        Some(_) => ProjectAudience::of(&[], customer, now, is_pns),
        None => ProjectAudience::of(&active, customer, now, is_pns),
    };
    let (cluster_roles, cluster_role_bindings) = access::project_access(p, &audience);

    let grace = effective_grace_days(p, customer);
    let dates = dates_of(p, grace);
    let schedule = dates.schedule(now);
    let policy = p.spec.expiration_policy.unwrap_or_default();
    let frozen = schedule == Schedule::NotStarted
        || (schedule == Schedule::Expired && policy != ExpirationPolicy::None)
        || credit_suspends;
    let freeze = if frozen { Freeze::NoPods } else { Freeze::None };
    let limits_of_customer = customer
        .map(super::quota::customer_limits)
        .unwrap_or_default();
    let quota = ns::resource_quota_for(p, freeze, &limits_of_customer);

    let mut plan = ProjectPlan {
        usage: usage_writes,
        step: None,
        moved: None,
        // In a namespace that is not the project's, no customer role is wanted either.
        revoke: stale_bindings(
            view,
            if conflict.is_some() {
                &[]
            } else {
                &wanted_bindings
            },
        ),
        cluster_roles,
        cluster_role_bindings,
        namespace: ns::namespace_for(
            p,
            NamespaceState::Active,
            matches!(schedule, Schedule::InGrace | Schedule::Expired),
        ),
        customer_bindings: if view.namespace.is_some() {
            wanted_bindings
        } else {
            Vec::new()
        },
        quota,
        limits: ns::limit_range_for(p),
        spec_problems: Vec::new(),
        status: previous.clone(),
        wake: Some(Duration::from_secs(3600)),
    };
    if let Some(msg) = conflict {
        plan.status = conflict_status(p, &previous, now, &msg);
        plan.step = Some(Step::Conflict(msg));
        return plan;
    }

    // The checklist: answers that need a review hold a project that has no namespace yet; one
    // whose namespace exists keeps it (the condition says a review is due).
    let checklist = view.checklist.map(|c| super::checklist::review(p, c));
    if let Some((state, review)) = &checklist
        && view.namespace.is_none()
        && let Some(msg) = hold_message(state, review)
    {
        plan.status = hold_status(p, customer, &previous, now, state, review, &msg);
        plan.step = Some(Step::Hold(msg));
        return plan;
    }

    // Recovery: its record is stored before anything else changes; a recorded member not yet
    // restored or invited (a pass that failed midway) is brought back before the namespace is.
    let unfinished = |r: &crate::api::project::RecoveryRecord, a: &Archive| {
        !crate::lifecycle::archive::remaining(r, a, &name, view.memberships).is_empty()
    };
    if let Some(archive) = archive
        && previous
            .recovery
            .as_ref()
            .is_none_or(|r| r.terminated_at != archive.terminated_at || unfinished(r, &archive))
    {
        plan.step = Some(Step::Recover(Box::new(archive)));
        return plan;
    }

    // Move: the customer changed since the status was written, or, before the project's first
    // status, since its own namespace was made for it (labelled with the customer it was made
    // for): a move in that window is a move too.
    let mut last_move = previous.last_move.clone();
    if let Some(from) = recorded_customer(p, &previous, view.namespace)
        && from != p.spec.customer
    {
        let preserve = p.spec.preserve_permissions_on_move.unwrap_or(true);
        let record = MoveRecord {
            time: Time(now),
            from,
            to: p.spec.customer.clone(),
            preserved_permissions: preserve,
        };
        last_move = Some(record.clone());
        // Read from the namespace (no status yet): it keeps saying where the project came from
        // until a status records the move. Relabelled now, a status write that then failed
        // would leave nothing to read the move from, and its record would be lost.
        if previous.customer.is_none()
            && let Some(labels) = plan.namespace.metadata.labels.as_mut()
        {
            labels.insert(labels::CUSTOMER.to_string(), record.from.clone());
        }
        plan.moved = Some(Move {
            record,
            revoke: if preserve {
                Vec::new()
            } else {
                view.memberships
                    .iter()
                    .filter(|m| super::access::held_phase(m) != Some(MembershipPhase::Revoked))
                    .map(|m| m.name_any())
                    .collect()
            },
        });
    }

    // End date: the expiration policy runs once the grace period is over; an end date moved
    // later undoes a suspension.
    let mut suspension = previous.suspension.clone();
    let condition = |reason: &str| {
        previous
            .conditions
            .iter()
            .any(|c| c.type_ == "Expired" && c.status == "True" && c.reason == reason)
    };
    let mut workloads_deleted = condition("WorkloadsDeleted");
    let suspended = condition("Suspended")
        || previous
            .conditions
            .iter()
            .any(|c| c.type_ == "CreditExhausted" && c.status == "True" && c.reason == "Suspended");
    let end_suspends = schedule == Schedule::Expired && policy == ExpirationPolicy::Suspend;
    if schedule == Schedule::Expired
        && view.namespace.is_some()
        && policy == ExpirationPolicy::Delete
        && !workloads_deleted
    {
        plan.step = Some(Step::DeleteWorkloads);
        workloads_deleted = true;
    } else if (end_suspends || credit_suspends) && view.namespace.is_some() {
        match &suspension {
            None => {
                plan.step = Some(Step::PlanSuspension);
                return plan;
            }
            Some(record) if !suspended => {
                plan.step = Some(Step::Suspend(record.clone()));
            }
            _ => {}
        }
    } else if !end_suspends {
        // The end date moved later, more credit came, or the policy no longer suspends.
        if let Some(record) = suspension.take() {
            plan.step = Some(Step::Resume(record));
        }
        if schedule != Schedule::Expired {
            workloads_deleted = false;
        }
    }

    // Status.
    let namespace_active = view
        .namespace
        .is_some_and(|n| n.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Active"));
    plan.spec_problems = ns::spec_problems(p);
    let unbounded = super::quota::unbounded(
        &p.spec
            .quota
            .as_ref()
            .map(|q| q.hard.clone())
            .unwrap_or_default(),
        &limits_of_customer,
    );
    if !unbounded.is_empty() {
        plan.spec_problems.push(format!(
            "spec.quota.hard sets no {}, which customer {} limits: the namespace is held at 0 for it until spec.quota.hard sets it",
            unbounded.join(", "),
            p.spec.customer
        ));
    }
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
    match customer {
        Some(_) => conds.set(
            "AccessReady",
            true,
            "Bound",
            format!("{} members and customer roles bound", audience.readers.len()),
        ),
        None => conds.set(
            "AccessReady",
            false,
            "CustomerNotFound",
            format!(
                "customer {:?} does not exist: create it, or set spec.customer to an existing customer",
                p.spec.customer
            ),
        ),
    };
    let quota_ready = match (&plan.quota, view.quota) {
        (None, _) => true,
        (Some(_), Some(q)) => quota_enforced(q),
        (Some(_), None) => false,
    };
    set_spec_valid(&mut conds, &plan.spec_problems);
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
    if let Some(state) = credit_state {
        usage::set_credit_conditions(
            &mut conds,
            usage::CreditHolder::Project,
            credit.as_ref().filter(|_| billing_shown(customer)),
            state,
            customer_exhausted,
            Some(credit_policy),
        );
    }
    if let Some((state, review)) = &checklist {
        set_checklist_approved(&mut conds, state, review, view.namespace.is_some());
    }
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
    } else if customer.is_none() {
        // No waiting fixes a customer that does not exist: kstatus reads Stalled as Failed.
        let msg = format!(
            "customer {:?} does not exist: create it, or set spec.customer to an existing customer",
            p.spec.customer
        );
        conds.set("Ready", false, "CustomerNotFound", msg.clone());
        conds.set("Stalled", true, "CustomerNotFound", msg);
    } else {
        let why = ["NamespaceReady", "AccessReady", "QuotaReady"]
            .into_iter()
            .filter(|t| !conds.is_true(t))
            .collect::<Vec<_>>()
            .join(", ");
        conds.set("Ready", false, "Progressing", format!("waiting for {why}"));
        conds.set(
            "Reconciling",
            true,
            "Progressing",
            format!("waiting for {why}"),
        );
    }
    let usage = usage_of(view.contents);
    plan.status = ProjectStatus {
        observed_generation: generation,
        phase: Some(phase),
        conditions: conds.finish(),
        namespace: Some(name.clone()),
        // Always names the customer this status was computed under (its display fields once it
        // is in the cache): the next reconcile tells a move by it.
        customer: Some(
            customer
                .map(customer_summary)
                .unwrap_or_else(|| CustomerSummary {
                    name: p.spec.customer.clone(),
                    ..Default::default()
                }),
        ),
        oecd_fos_2007_label: p.spec.oecd_fos_2007_code.map(|c| c.label().to_string()),
        resources_count: Some(view.contents.total()),
        resource_counts: view.contents.counts.clone(),
        members: Some(access::member_counts(&grants)),
        quota: view.quota.and_then(quota_status),
        usage: usage.clone(),
        // Billing is shown in the project only where the customer says so.
        cost: config
            .prices
            .as_ref()
            .filter(|_| billing_shown(customer))
            .map(|prices| prices.estimate(&usage)),
        credit: credit.filter(|_| billing_shown(customer)),
        effective_grace_period_days: Some(grace),
        effective_end_date: dates.effective_end_date.map(|d| d.to_string()),
        end_date_requested_by: p
            .annotations()
            .get(annotations::END_DATE_REQUESTED_BY)
            .cloned(),
        termination: previous.termination.clone(),
        recovery: previous.recovery.clone(),
        last_move,
        suspension,
        checklist: checklist.map(|(state, _)| state),
    };

    // Wake up exactly at the next instant something changes.
    let member_expiries = view
        .memberships
        .iter()
        .filter(|m| super::access::held_phase(m) != Some(MembershipPhase::Revoked))
        .map(|m| m.spec.expiration_time.as_ref().map(|t| t.0));
    let holder_expiries = customer
        .iter()
        .flat_map(|c| c.spec.owners.iter().chain(c.spec.support.iter()))
        .map(|h| h.expiration_time.as_ref().map(|t| t.0));
    let next = lifecycle::earliest_after(
        now,
        member_expiries
            .chain(holder_expiries)
            .chain([dates.next_boundary(now)])
            .chain(usage_wake),
    );
    plan.wake = next.map(|at| lifecycle::until(now, at).min(Duration::from_secs(3600)));
    plan
}

/// Whether the customer shows billing (cost, credit) to its projects' members.
pub fn billing_shown(customer: Option<&Customer>) -> bool {
    customer.and_then(|c| c.spec.display_billing_info_in_projects) == Some(true)
}

fn set_spec_valid(conds: &mut Conditions<'_>, problems: &[String]) {
    if problems.is_empty() {
        conds.set(
            "SpecValid",
            true,
            "Valid",
            "quota and container limits are valid",
        );
    } else {
        conds.set(
            "SpecValid",
            false,
            "Invalid",
            format!(
                "applied without what Kubernetes refuses: {}",
                problems.join("; ")
            ),
        );
    }
}

/// The planned status once writing the children failed for `failures` (each a sentence): said
/// in `SpecValid` next to what is wrong with the spec.
pub fn with_failures(
    plan: &ProjectPlan,
    previous: &ProjectStatus,
    failures: &[String],
    now: Timestamp,
) -> ProjectStatus {
    let mut status = plan.status.clone();
    if failures.is_empty() {
        return status;
    }
    let problems: Vec<String> = plan.spec_problems.iter().chain(failures).cloned().collect();
    let mut conds = Conditions::new(&previous.conditions, status.observed_generation, now);
    set_spec_valid(&mut conds, &problems);
    let spec_valid = conds.finish().remove(0);
    for c in status
        .conditions
        .iter_mut()
        .filter(|c| c.type_ == "SpecValid")
    {
        *c = spec_valid.clone();
    }
    status
}

/// The customer a project was last known to belong to: the one its status records, or, before
/// its first status, the one its own namespace (this incarnation's) was made for.
fn recorded_customer(
    p: &Project,
    previous: &ProjectStatus,
    namespace: Option<&Namespace>,
) -> Option<String> {
    previous
        .customer
        .as_ref()
        .map(|c| c.name.clone())
        .or_else(|| {
            namespace
                .filter(|n| ns::standing(n, p) == Standing::Owned)
                .and_then(|n| n.labels().get(labels::CUSTOMER).cloned())
        })
}

/// Whether `next` differs from `previous` only in figures: member, resource and quota counts,
/// usage, cost, credit, and the wording of conditions whose type, status and reason stay.
/// Such a write may wait a moment for the next figures (see `controller::pacer`); a change of
/// phase, of a condition's status or reason, or of any record is written at once.
pub fn figures_only(previous: &ProjectStatus, next: &ProjectStatus) -> bool {
    super::conditions::differs_only_in_figures(previous, next, clear_figures)
}

fn clear_figures(s: &mut ProjectStatus) -> &mut Vec<Condition> {
    s.resources_count = None;
    s.resource_counts.clear();
    s.members = None;
    s.quota = None;
    s.usage.clear();
    s.cost = None;
    s.credit = None;
    &mut s.conditions
}

/// Whether a status says its project is on its way: `Ready` False for `Progressing`.
fn progressing(s: &ProjectStatus) -> bool {
    s.conditions
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "False" && c.reason == "Progressing")
}

/// Whether `next` would be a new project's first status and says it is on its way or ready. It
/// may wait (the pace, from the project's first reconcile): `Ready`, usually a moment later, is
/// then its first status, carrying the counts of the members who joined meanwhile, instead of
/// one write for `Ready` and another for the members joining just after it; a project that
/// takes longer shows its progress when the wait ends. A first status that says anything else
/// (stalled, a conflict), holds a record (a move carried out before it: the namespace it was
/// read from is relabelled meanwhile) or is past `Pending` and `Active` (a project made after
/// its end date: the expiration policy's steps read what the status says they did) is written
/// at once.
pub fn first_may_wait(previous: Option<&ProjectStatus>, next: &ProjectStatus) -> bool {
    let ready = next
        .conditions
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    let records = next.last_move.is_some() || next.recovery.is_some() || next.suspension.is_some();
    let early = matches!(
        next.phase,
        None | Some(ProjectPhase::Pending) | Some(ProjectPhase::Active)
    );
    previous.is_none_or(|p| p.conditions.is_empty())
        && (progressing(next) || ready)
        && !records
        && early
}

/// The conditions that say how far a project still on its way has come.
const PROGRESS: [&str; 2] = ["NamespaceReady", "QuotaReady"];

/// Whether `next` only tells more of a project that is still on its way in both: `Ready` False
/// for `Progressing` before and after, and what differs besides figures is which of
/// [`PROGRESS`] are met (the namespace became active while the quota controller has yet to
/// count the quota). Such a write may wait like figures: the write that says `Ready` comes at
/// once and carries it, and one that never comes leaves it for the paced write.
pub fn progress_only(previous: &ProjectStatus, next: &ProjectStatus) -> bool {
    progressing(previous)
        && progressing(next)
        && super::conditions::differs_only_in_figures(previous, next, |s| {
            let conditions = clear_figures(s);
            for c in conditions.iter_mut() {
                if PROGRESS.contains(&c.type_.as_str()) {
                    c.status.clear();
                    c.reason.clear();
                    c.last_transition_time = Time(Timestamp::UNIX_EPOCH);
                }
            }
            conditions
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    const NOW: &str = "2027-03-15T12:00:00Z";

    fn now() -> Timestamp {
        NOW.parse().unwrap()
    }

    fn obj<T: serde::de::DeserializeOwned>(v: Value) -> T {
        serde_json::from_value(v).unwrap()
    }

    fn project(spec: Value, status: Option<Value>, annotations: Value) -> Project {
        let mut spec = spec;
        if spec.get("customer").is_none() {
            spec["customer"] = "acme".into();
        }
        let mut p: Project = obj(json!({
            "apiVersion": "tenancy.dev/v1alpha1", "kind": "Project",
            "metadata": {"name": "web", "uid": "uid-web", "generation": 2, "annotations": annotations},
            "spec": spec,
        }));
        p.status = status.map(obj);
        p
    }

    fn customer(spec: Value) -> Customer {
        obj(
            json!({"apiVersion": "tenancy.dev/v1alpha1", "kind": "Customer",
            "metadata": {"name": "acme", "uid": "uid-acme"}, "spec": spec}),
        )
    }

    fn namespace(labels: Value, annotations: Value) -> Namespace {
        obj(
            json!({"metadata": {"name": "web", "uid": "ns-uid", "labels": labels, "annotations": annotations},
            "status": {"phase": "Active"}}),
        )
    }

    fn ours() -> Value {
        json!({"app.kubernetes.io/managed-by": "tenancy-operator", "tenancy.dev/project": "web",
            "tenancy.dev/project-uid": "uid-web", "tenancy.dev/state": "active", "tenancy.dev/customer": "acme"})
    }

    fn membership(
        name: &str,
        who: &str,
        role: &str,
        expires: Option<&str>,
        extra: Value,
    ) -> Arc<ProjectMembership> {
        let mut v = json!({"apiVersion": "tenancy.dev/v1alpha1", "kind": "ProjectMembership",
            "metadata": {"name": name, "namespace": "web", "uid": format!("uid-{name}"),
                "creationTimestamp": "2027-01-01T00:00:00Z"},
            "spec": {"subject": {"kind": "User", "name": who}, "role": role}});
        if let Some(e) = expires {
            v["spec"]["expirationTime"] = e.into();
        }
        if let Some(m) = extra.as_object() {
            for (k, val) in m {
                v[k] = val.clone();
            }
        }
        Arc::new(obj(v))
    }

    fn binding(name: &str, part: &str) -> Arc<RoleBinding> {
        Arc::new(obj(
            json!({"metadata": {"name": name, "namespace": "web", "labels": {
            "app.kubernetes.io/managed-by": "tenancy-operator", "tenancy.dev/project": "web", "tenancy.dev/part": part}},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"}}),
        ))
    }

    fn enforced_quota(hard: Value) -> ResourceQuota {
        obj(
            json!({"metadata": {"name": "tenancy-quota", "namespace": "web"},
            "spec": {"hard": hard}, "status": {"hard": hard, "used": {}}}),
        )
    }

    /// One case: the world, and what the plan must say.
    struct World {
        project: Project,
        customer: Option<Customer>,
        namespace: Option<Namespace>,
        memberships: Vec<Arc<ProjectMembership>>,
        bindings: Vec<Arc<RoleBinding>>,
        quota: Option<ResourceQuota>,
        contents: NamespaceContents,
        usage: Option<crate::api::ProjectUsage>,
        config: Config,
    }

    impl World {
        fn new(project: Project) -> World {
            World {
                project,
                customer: Some(customer(
                    json!({"owners": [{"kind": "User", "name": "olga"}]}),
                )),
                namespace: Some(namespace(ours(), json!({}))),
                memberships: vec![],
                bindings: vec![],
                quota: None,
                contents: NamespaceContents::default(),
                usage: None,
                config: Config::default(),
            }
        }

        fn plan(&self) -> ProjectPlan {
            self.plan_with(None)
        }

        fn plan_with(&self, checklist: Option<&crate::api::Checklist>) -> ProjectPlan {
            let contents = &self.contents;
            let none = |_: &str| false;
            let view = ProjectView {
                project: &self.project,
                customer: self.customer.as_ref(),
                namespace: self.namespace.as_ref(),
                memberships: &self.memberships,
                role_bindings: &self.bindings,
                quota: self.quota.as_ref(),
                contents,
                is_project_namespace: &none,
                checklist,
                usage: self.usage.as_ref(),
            };
            plan(&view, &self.config, now())
        }
    }

    fn condition<'a>(s: &'a ProjectStatus, t: &str) -> (&'a str, &'a str, &'a str) {
        s.conditions
            .iter()
            .find(|c| c.type_ == t)
            .map(|c| (c.status.as_str(), c.reason.as_str(), c.message.as_str()))
            .unwrap_or(("", "", ""))
    }

    fn hard(plan: &ProjectPlan) -> BTreeMap<String, String> {
        plan.quota
            .as_ref()
            .and_then(|q| q.spec.as_ref())
            .and_then(|s| s.hard.as_ref())
            .map(|h| h.iter().map(|(k, v)| (k.clone(), v.0.clone())).collect())
            .unwrap_or_default()
    }

    fn step_name(plan: &ProjectPlan) -> &'static str {
        match &plan.step {
            None => "none",
            Some(Step::Conflict(_)) => "conflict",
            Some(Step::Hold(_)) => "hold",
            Some(Step::Recover(_)) => "recover",
            Some(Step::PlanSuspension) => "plan-suspension",
            Some(Step::Suspend(_)) => "suspend",
            Some(Step::DeleteWorkloads) => "delete-workloads",
            Some(Step::Resume(_)) => "resume",
        }
    }

    fn archive_of(customer: &str) -> Value {
        let a = Archive {
            customer: customer.into(),
            ..Archive::new(
                obj(json!({"customer": customer})),
                "2027-03-01T00:00:00Z".parse().unwrap(),
                &[],
            )
        };
        json!({"tenancy.dev/archive": a.to_annotation()})
    }

    fn archived_labels(uid: &str) -> Value {
        let mut l = ours();
        l["tenancy.dev/state"] = "terminated".into();
        l["tenancy.dev/project-uid"] = uid.into();
        l
    }

    #[test]
    fn the_step_and_the_phase_follow_the_world() {
        let suspended = json!({"suspension": {"time": "2027-03-14T00:00:00Z", "replicas": {"Deployment/web": 3}},
            "conditions": [{"type": "Expired", "status": "True", "reason": "Suspended", "message": "",
                "lastTransitionTime": "2027-03-14T00:00:00Z"}]});
        let recorded = json!({"suspension": {"time": "2027-03-14T00:00:00Z", "replicas": {"Deployment/web": 3}}});
        type Setup = Box<dyn Fn(&mut World)>;
        let cases: Vec<(&str, Setup, &str, &str)> = vec![
            ("running", Box::new(|_| {}), "none", "Active"),
            (
                "no namespace yet",
                Box::new(|w| w.namespace = None),
                "none",
                "Pending",
            ),
            (
                "customer missing",
                Box::new(|w| w.customer = None),
                "none",
                "Pending",
            ),
            (
                "before the start date",
                Box::new(|w| {
                    w.project = project(json!({"startDate": "2027-04-01"}), None, json!({}))
                }),
                "none",
                "Scheduled",
            ),
            (
                "end date passed, in grace",
                Box::new(|w| {
                    w.project = project(
                        json!({"endDate": "2027-03-10", "gracePeriodDays": 30}),
                        None,
                        json!({}),
                    )
                }),
                "none",
                "Finished",
            ),
            (
                "grace over, Suspend not planned",
                Box::new(|w| {
                    w.project = project(json!({"endDate": "2027-03-01"}), None, json!({}))
                }),
                "plan-suspension",
                "",
            ),
            (
                "grace over, Suspend planned",
                Box::new(move |w| {
                    w.project = project(
                        json!({"endDate": "2027-03-01"}),
                        Some(recorded.clone()),
                        json!({}),
                    )
                }),
                "suspend",
                "Expired",
            ),
            (
                "grace over, already suspended",
                Box::new(move |w| {
                    w.project = project(
                        json!({"endDate": "2027-03-01"}),
                        Some(suspended.clone()),
                        json!({}),
                    )
                }),
                "none",
                "Expired",
            ),
            (
                "grace over, Delete",
                Box::new(|w| {
                    w.project = project(
                        json!({"endDate": "2027-03-01", "expirationPolicy": "Delete"}),
                        None,
                        json!({}),
                    )
                }),
                "delete-workloads",
                "Expired",
            ),
            (
                "grace over, None",
                Box::new(|w| {
                    w.project = project(
                        json!({"endDate": "2027-03-01", "expirationPolicy": "None"}),
                        None,
                        json!({}),
                    )
                }),
                "none",
                "Expired",
            ),
            (
                "end date moved later after a suspension",
                Box::new(|w| {
                    w.project = project(
                        json!({"endDate": "2027-12-31"}),
                        Some(json!({"suspension": {"replicas": {"Deployment/web": 3}}})),
                        json!({}),
                    )
                }),
                "resume",
                "Active",
            ),
            (
                "someone else's namespace",
                Box::new(|w| w.namespace = Some(namespace(json!({}), json!({})))),
                "conflict",
                "Conflict",
            ),
            (
                "an earlier incarnation's namespace",
                Box::new(|w| {
                    let mut l = ours();
                    l["tenancy.dev/project-uid"] = "uid-old".into();
                    w.namespace = Some(namespace(l, json!({})));
                }),
                "conflict",
                "Conflict",
            ),
            (
                "an earlier incarnation's namespace, adopted by staff",
                Box::new(|w| {
                    let mut l = ours();
                    l["tenancy.dev/project-uid"] = "uid-old".into();
                    w.namespace = Some(namespace(l, json!({})));
                    w.project = project(
                        json!({}),
                        None,
                        json!({"tenancy.dev/adopt-namespace": "true"}),
                    );
                }),
                "none",
                "Active",
            ),
            (
                "an archive of the same customer",
                Box::new(|w| {
                    w.namespace = Some(namespace(archived_labels("uid-old"), archive_of("acme")))
                }),
                "recover",
                "",
            ),
            (
                "an archive of another customer",
                Box::new(|w| {
                    w.namespace = Some(namespace(archived_labels("uid-old"), archive_of("globex")))
                }),
                "conflict",
                "Conflict",
            ),
            (
                "an archive of another customer, adopted by staff",
                Box::new(|w| {
                    w.namespace = Some(namespace(archived_labels("uid-old"), archive_of("globex")));
                    w.project = project(
                        json!({}),
                        None,
                        json!({"tenancy.dev/adopt-namespace": "true"}),
                    );
                }),
                "recover",
                "",
            ),
            (
                "an archive already recovered",
                Box::new(|w| {
                    w.namespace = Some(namespace(archived_labels("uid-old"), archive_of("acme")));
                    w.project = project(
                        json!({}),
                        Some(
                            json!({"recovery": {"time": NOW, "terminatedAt": "2027-03-01T00:00:00Z", "previousCustomer": "acme"}}),
                        ),
                        json!({}),
                    );
                }),
                "none",
                "Active",
            ),
            (
                "an archive recorded, a restored member still revoked",
                Box::new(|w| {
                    w.namespace = Some(namespace(archived_labels("uid-old"), archive_of("acme")));
                    w.project = project(
                        json!({}),
                        Some(
                            json!({"recovery": {"time": NOW, "terminatedAt": "2027-03-01T00:00:00Z",
                            "previousCustomer": "acme", "restored": ["ned"]}}),
                        ),
                        json!({}),
                    );
                    w.memberships = vec![membership(
                        "ned",
                        "ned",
                        "Member",
                        None,
                        json!({"status": {"phase": "Revoked"}}),
                    )];
                }),
                "recover",
                "",
            ),
        ];
        for (what, setup, step, phase) in cases {
            let mut w = World::new(project(json!({}), None, json!({})));
            w.quota = Some(enforced_quota(json!({})));
            setup(&mut w);
            let plan = w.plan();
            assert_eq!(step_name(&plan), step, "{what}: step");
            if !phase.is_empty() {
                let got = plan
                    .status
                    .phase
                    .map(|p| format!("{p:?}"))
                    .unwrap_or_default();
                assert_eq!(
                    got, phase,
                    "{what}: phase; conditions {:?}",
                    plan.status.conditions
                );
            }
        }
    }

    #[test]
    fn each_state_reads_as_flux_and_argo_cd_should_read_it() {
        use crate::desired::conditions::kstatus;
        type Setup = Box<dyn Fn(&mut World)>;
        let cases: Vec<(&str, Setup, &str, &str)> = vec![
            ("active", Box::new(|_| {}), "Active", "Current"),
            (
                "finished, in its grace period",
                Box::new(|w| {
                    w.project = project(
                        json!({"endDate": "2027-02-20", "gracePeriodDays": 30}),
                        None,
                        json!({}),
                    )
                }),
                "Finished",
                "Current",
            ),
            (
                "expired, its policy carried out",
                Box::new(|w| {
                    w.project = project(
                        json!({"endDate": "2026-01-01", "expirationPolicy": "None"}),
                        None,
                        json!({}),
                    )
                }),
                "Expired",
                "Current",
            ),
            (
                "its namespace not made yet",
                Box::new(|w| w.namespace = None),
                "Pending",
                "InProgress",
            ),
            (
                "its customer missing",
                Box::new(|w| w.customer = None),
                "Pending",
                "Failed",
            ),
            (
                "named like a namespace it does not own",
                Box::new(|w| w.namespace = Some(namespace(json!({}), json!({})))),
                "Conflict",
                "Failed",
            ),
        ];
        for (what, setup, phase, health) in cases {
            let mut w = World::new(project(json!({}), None, json!({})));
            w.quota = Some(enforced_quota(json!({})));
            setup(&mut w);
            let plan = w.plan();
            let got = plan
                .status
                .phase
                .map(|p| format!("{p:?}"))
                .unwrap_or_default();
            assert_eq!(got, phase, "{what}: {:?}", plan.status.conditions);
            assert_eq!(
                kstatus(&plan.status.conditions),
                health,
                "{what}: {:?}",
                plan.status.conditions
            );
        }
    }

    #[test]
    fn answers_that_need_a_review_hold_a_project_without_a_namespace() {
        use crate::desired::conditions::kstatus;
        let checklist: crate::api::Checklist = obj(json!({
            "apiVersion": "tenancy.dev/v1alpha1", "kind": "Checklist", "metadata": {"name": "dp"},
            "spec": {"questions": [{"id": "health", "description": "Health data?", "type": "Boolean",
                "required": true, "reviewAnswerValue": true}]}}));
        let digest =
            |v: bool| crate::desired::checklist::digest(&[("health".to_string(), json!(v))].into());
        let reviewed = |decision: &str, answers: &str| {
            json!({"tenancy.dev/checklist-reviewed-by": "sam",
                   "tenancy.dev/checklist-reviewed-answers": answers, "x": decision})
        };
        // answer, review decision, annotations, namespace exists → phase, step, health,
        // ChecklistApproved
        type Case = (
            &'static str,
            bool,
            Option<&'static str>,
            Value,
            bool,
            &'static str,
            &'static str,
            &'static str,
            &'static str,
        );
        let cases: Vec<Case> = vec![
            (
                "no review needed",
                false,
                None,
                json!({}),
                false,
                "Active",
                "none",
                "Current",
                "True",
            ),
            (
                "waiting for staff",
                true,
                None,
                json!({}),
                false,
                "PendingReview",
                "hold",
                "InProgress",
                "False",
            ),
            (
                "approved",
                true,
                Some("Approved"),
                reviewed("a", &digest(true)),
                false,
                "Active",
                "none",
                "Current",
                "True",
            ),
            (
                "rejected",
                true,
                Some("Rejected"),
                reviewed("r", &digest(true)),
                false,
                "Rejected",
                "hold",
                "Failed",
                "False",
            ),
            (
                "approved other answers",
                true,
                Some("Approved"),
                reviewed("a", &digest(false)),
                false,
                "PendingReview",
                "hold",
                "InProgress",
                "False",
            ),
            (
                "changed after approval, namespace kept",
                true,
                Some("Approved"),
                reviewed("a", &digest(false)),
                true,
                "Active",
                "none",
                "Current",
                "False",
            ),
        ];
        for (what, answer, decision, annotations, ns, phase, step, health, approved) in cases {
            let mut spec = json!({"checklistAnswers": {"health": answer}});
            if let Some(d) = decision {
                spec["checklistReview"] = json!({"decision": d, "comment": "see the policy"});
            }
            let mut w = World::new(project(spec, None, annotations));
            w.customer = Some(customer(
                json!({"projectChecklist": "dp", "owners": [{"kind": "User", "name": "olga"}]}),
            ));
            w.quota = Some(enforced_quota(json!({})));
            if !ns {
                w.namespace = None;
            }
            let plan = w.plan_with(Some(&checklist));
            let got = plan
                .status
                .phase
                .map(|p| format!("{p:?}"))
                .unwrap_or_default();
            let phase = if !ns && phase == "Active" {
                "Pending"
            } else {
                phase
            };
            assert_eq!(got, phase, "{what}: {:?}", plan.status.conditions);
            assert_eq!(step_name(&plan), step, "{what}");
            if step == "hold" || ns {
                assert_eq!(
                    kstatus(&plan.status.conditions),
                    health,
                    "{what}: {:?}",
                    plan.status.conditions
                );
            }
            assert_eq!(
                condition(&plan.status, "ChecklistApproved").0,
                approved,
                "{what}"
            );
            let state = plan.status.checklist.as_ref().expect("a checklist status");
            assert_eq!(
                state.needs_review,
                if answer { vec!["health"] } else { vec![] },
                "{what}"
            );
            if decision == Some("Rejected") {
                assert_eq!(state.comment.as_deref(), Some("see the policy"));
                assert!(
                    condition(&plan.status, "Stalled")
                        .2
                        .contains("see the policy"),
                    "{what}"
                );
            }
        }
    }

    #[test]
    fn a_review_falling_due_is_told_once() {
        let with = |status: Option<&str>| ProjectStatus {
            conditions: status
                .map(|s| {
                    vec![k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
                        type_: "ChecklistApproved".into(),
                        status: s.into(),
                        reason: "r".into(),
                        message: format!("approved {s}"),
                        observed_generation: None,
                        last_transition_time: Time(now()),
                    }]
                })
                .unwrap_or_default(),
            ..Default::default()
        };
        let cases = [
            (Some("True"), Some("False"), Some("approved False")),
            (Some("False"), Some("False"), None),
            (None, Some("False"), None),
            (Some("True"), Some("True"), None),
            (Some("False"), Some("True"), None),
        ];
        for (before, after, want) in cases {
            assert_eq!(
                review_due(&with(before), &with(after)).as_deref(),
                want,
                "{before:?} -> {after:?}"
            );
        }
    }

    #[test]
    fn conflicts_bind_nothing_but_let_owners_get_and_delete_the_project() {
        let mut w = World::new(project(json!({}), None, json!({})));
        w.namespace = Some(namespace(json!({}), json!({})));
        w.bindings = vec![binding("tenancy-owner-x", "owner")];
        w.memberships = vec![membership("mia", "mia", "Manager", None, json!({}))];
        let plan = w.plan();
        assert!(
            matches!(&plan.step, Some(Step::Conflict(m)) if m.contains("was not created for this project"))
        );
        assert_eq!(condition(&plan.status, "Ready").1, "NamespaceConflict");
        assert_eq!(
            plan.revoke,
            ["tenancy-owner-x"],
            "no customer role is wanted in it"
        );
        let subjects = |i: usize| -> Vec<String> {
            plan.cluster_role_bindings[i]
                .subjects
                .iter()
                .flatten()
                .map(|s| s.name.clone())
                .collect()
        };
        assert_eq!(
            subjects(1),
            ["olga"],
            "the owner manages it, the namespace's manager does not"
        );
    }

    #[test]
    fn access_follows_memberships_and_customer_roles() {
        let mut w = World::new(project(json!({}), None, json!({})));
        w.memberships = vec![
            membership("ned", "ned", "Member", None, json!({})),
            membership(
                "gone",
                "gone",
                "Member",
                Some("2027-03-01T00:00:00Z"),
                json!({}),
            ),
            membership(
                "bye",
                "bye",
                "Member",
                None,
                json!({"metadata": {"name": "bye", "namespace": "web", "deletionTimestamp": NOW, "finalizers": ["x"]}}),
            ),
        ];
        w.bindings = vec![
            binding("tenancy-member-ned", "membership"),
            binding("tenancy-member-bye", "membership"),
            binding("tenancy-member-deleted-long-ago", "membership"),
            binding("tenancy-owner-someone-who-left", "owner"),
        ];
        let plan = w.plan();
        let mut revoke = plan.revoke.clone();
        revoke.sort();
        assert_eq!(
            revoke,
            [
                "tenancy-member-bye",
                "tenancy-member-deleted-long-ago",
                "tenancy-owner-someone-who-left"
            ]
        );
        let members = plan.status.members.as_ref().unwrap();
        assert_eq!(
            (members.total, members.members),
            (1, 1),
            "the expired one is not counted"
        );
        assert_eq!(plan.customer_bindings.len(), 1, "olga's owner binding");
        let readers: Vec<String> = plan.cluster_role_bindings[0]
            .subjects
            .iter()
            .flatten()
            .map(|s| s.name.clone())
            .collect();
        assert_eq!(
            readers,
            ["ned"],
            "olga owns the customer: in the managers' binding"
        );
    }

    #[test]
    fn a_move_is_recorded_and_revokes_only_when_permissions_are_not_preserved() {
        let moved_from = json!({"customer": {"name": "globex"}});
        for (preserve, want_revoked) in [(None, 0), (Some(false), 1)] {
            let mut spec = json!({});
            if let Some(p) = preserve {
                spec["preservePermissionsOnMove"] = p.into();
            }
            let mut w = World::new(project(spec, Some(moved_from.clone()), json!({})));
            w.memberships = vec![
                membership("ned", "ned", "Member", None, json!({})),
                membership(
                    "old",
                    "old",
                    "Member",
                    None,
                    json!({"status": {"phase": "Revoked"}}),
                ),
            ];
            let plan = w.plan();
            let m = plan.moved.as_ref().expect("a move");
            assert_eq!(
                (m.record.from.as_str(), m.record.to.as_str()),
                ("globex", "acme")
            );
            assert_eq!(m.revoke.len(), want_revoked, "{preserve:?}");
            assert_eq!(plan.status.last_move.as_ref(), Some(&m.record));
            assert_eq!(plan.status.customer.as_ref().unwrap().name, "acme");
        }
    }

    #[test]
    fn a_move_before_the_first_status_is_read_from_the_namespace_made_for_the_project() {
        let labelled = |customer: &str, uid: &str| {
            let mut l = ours();
            l["tenancy.dev/customer"] = customer.into();
            l["tenancy.dev/project-uid"] = uid.into();
            namespace(l, json!({}))
        };
        for (what, ns, status, moved_from) in [
            (
                "no status yet, its namespace made for globex",
                Some(labelled("globex", "uid-web")),
                None,
                Some("globex"),
            ),
            (
                "no status yet, its namespace made for acme",
                Some(labelled("acme", "uid-web")),
                None,
                None,
            ),
            ("no status yet, no namespace", None, None, None),
            (
                "another incarnation's namespace says nothing of this one",
                Some(labelled("globex", "uid-other")),
                None,
                None,
            ),
            (
                "the status records acme: a stale label is no move",
                Some(labelled("globex", "uid-web")),
                Some(json!({"customer": {"name": "acme"}})),
                None,
            ),
        ] {
            let mut w = World::new(project(json!({}), status, json!({})));
            w.namespace = ns;
            w.memberships = vec![membership("ned", "ned", "Member", None, json!({}))];
            let plan = w.plan();
            assert_eq!(
                plan.moved.as_ref().map(|m| m.record.from.as_str()),
                moved_from,
                "{what}"
            );
            if moved_from.is_some() {
                assert_eq!(
                    plan.status.last_move.as_ref().map(|m| m.to.as_str()),
                    Some("acme"),
                    "{what}"
                );
            }
            // The namespace is relabelled for the new customer only once a status says it
            // moved: until then it is what the move is read from again, should the status
            // write fail.
            assert_eq!(
                plan.namespace.labels()["tenancy.dev/customer"],
                moved_from.unwrap_or("acme"),
                "{what}"
            );
        }
        // Once the status records the move, the namespace follows the customer.
        let mut w = World::new(project(
            json!({}),
            Some(json!({"customer": {"name": "acme"},
                "lastMove": {"time": "2026-01-01T00:00:00Z", "from": "globex", "to": "acme",
                    "preservedPermissions": true}})),
            json!({}),
        ));
        w.namespace = Some(labelled("globex", "uid-web"));
        let plan = w.plan();
        assert!(plan.moved.is_none());
        assert_eq!(plan.namespace.labels()["tenancy.dev/customer"], "acme");
    }

    #[test]
    fn the_quota_freezes_when_due_and_bounds_what_the_customer_limits() {
        let mut w = World::new(project(
            json!({"endDate": "2027-03-01", "quota": {"hard": {"requests.cpu": "2", "foo": "1"}}}),
            Some(json!({"suspension": {}})),
            json!({}),
        ));
        w.customer = Some(customer(
            json!({"quota": {"hard": {"requests.cpu": "8", "pods": "20"}}}),
        ));
        let plan = w.plan();
        let h = hard(&plan);
        assert_eq!(
            h.get("pods").map(String::as_str),
            Some("0"),
            "frozen, and unbounded pods held at 0"
        );
        assert_eq!(h.get("requests.cpu").map(String::as_str), Some("2"));
        assert!(
            !h.contains_key("foo"),
            "what a ResourceQuota refuses is left out"
        );
        let (status, _, message) = condition(&plan.status, "SpecValid");
        assert_eq!(status, "False");
        assert!(
            message.contains("spec.quota.hard.foo") && message.contains("sets no pods"),
            "{message}"
        );
        let failed = with_failures(
            &plan,
            &ProjectStatus::default(),
            &["writing the namespace's quota failed: 403".into()],
            now(),
        );
        assert!(
            condition(&failed, "SpecValid")
                .2
                .contains("quota failed: 403")
        );
    }

    #[test]
    fn the_reconcile_wakes_at_the_next_instant_something_changes() {
        let mut w = World::new(project(json!({"endDate": "2027-03-20"}), None, json!({})));
        w.memberships = vec![membership(
            "ned",
            "ned",
            "Member",
            Some("2027-03-15T12:00:30Z"),
            json!({}),
        )];
        assert_eq!(
            w.plan().wake,
            Some(Duration::from_secs(30)),
            "the membership's expiry"
        );
        w.memberships.clear();
        w.customer = Some(customer(
            json!({"owners": [{"kind": "User", "name": "olga", "expirationTime": "2027-03-15T12:10:00Z"}]}),
        ));
        assert_eq!(
            w.plan().wake,
            Some(Duration::from_secs(600)),
            "the owner's expiry"
        );
        w.customer = Some(customer(json!({})));
        w.project = project(json!({"endDate": "2027-03-15"}), None, json!({}));
        assert_eq!(
            w.plan().wake,
            Some(Duration::from_secs(3600)),
            "the end of the end date is 12 h away: at most an hour"
        );
        w.project = project(json!({}), None, json!({}));
        assert_eq!(
            w.plan().wake,
            None,
            "nothing changes by time alone: no wake (a scheduled wake costs kube's scheduler \
             ~0.5 KB per object)"
        );
    }

    /// A project running 1 core since 2027-03-01 with a 5 EUR credit at 20 EUR a core-month:
    /// the credit ran out after 186 hours (March has 744), on 2027-03-08 at 18:00.
    fn running_on_credit(credit: f64, policy: &str, status: Option<Value>, shown: bool) -> World {
        let mut w = World::new(project(
            json!({"credit": credit, "creditExhaustedPolicy": policy}),
            status,
            json!({}),
        ));
        w.customer = Some(customer(
            json!({"owners": [{"kind": "User", "name": "olga"}],
            "displayBillingInfoInProjects": shown}),
        ));
        w.contents.cpu = crate::desired::quantity::Milli(1000);
        w.contents.counts.insert("pods".into(), 1);
        w.usage = Some(obj(json!({
            "apiVersion": "tenancy.dev/v1alpha1", "kind": "ProjectUsage",
            "metadata": {"name": "web.2027-03", "resourceVersion": "7"},
            "spec": {"project": "web", "customer": "acme", "month": "2027-03", "state": "Open",
                "since": "2027-03-01T00:00:00Z", "rateSince": "2027-03-01T00:00:00Z",
                "rate": {"cpu": "1", "memory": "0", "storage": "0", "pods": 1},
                "totals": {"cpuCoreHours": "0", "memoryGiBHours": "0", "storageGiBHours": "0", "podHours": "0"},
                "exact": {"cpu": "0", "memory": "0", "storage": "0", "pods": "0"}, "costBefore": "0"}})));
        w.config.prices = crate::desired::cost::Prices::parse(&["cpu=20".into()], "EUR").unwrap();
        w
    }

    #[test]
    fn credit_that_runs_out_suspends_under_suspend_and_more_credit_resumes() {
        let exhausted = json!({"type": "CreditExhausted", "status": "True", "reason": "Suspended",
            "message": "", "lastTransitionTime": "2027-03-08T18:00:00Z"});
        let record = json!({"time": "2027-03-08T18:00:00Z", "replicas": {"Deployment/web": 3}});
        let cases = [
            (
                "ran out, Suspend, no record yet",
                5.0,
                "Suspend",
                None,
                "plan-suspension",
            ),
            (
                "ran out, Suspend, record stored",
                5.0,
                "Suspend",
                Some(json!({"suspension": record})),
                "suspend",
            ),
            (
                "ran out, already suspended",
                5.0,
                "Suspend",
                Some(json!({"suspension": record, "conditions": [exhausted]})),
                "none",
            ),
            ("ran out, Notify", 5.0, "Notify", None, "none"),
            (
                "more credit",
                100.0,
                "Suspend",
                Some(json!({"suspension": record, "conditions": [exhausted]})),
                "resume",
            ),
        ];
        for (what, credit, policy, status, step) in cases {
            let w = running_on_credit(credit, policy, status, true);
            let plan = w.plan();
            assert_eq!(step_name(&plan), step, "{what}");
            assert!(
                plan.usage.is_empty(),
                "{what}: the rate holds, no record is written"
            );
        }
        let plan = running_on_credit(
            5.0,
            "Suspend",
            Some(json!({"suspension": record, "conditions": [exhausted]})),
            true,
        )
        .plan();
        assert_eq!(
            hard(&plan).get("pods").map(String::as_str),
            Some("0"),
            "suspended: pods 0"
        );
        assert_eq!(
            condition(&plan.status, "CreditExhausted"),
            (
                "True",
                "Suspended",
                "the project's credit is used up (0.00 EUR of 5.00 left): workloads suspended and pods: 0 until more credit comes"
            )
        );
        let credit = plan.status.credit.as_ref().expect("shown to members");
        assert_eq!(
            (credit.consumed.as_str(), credit.remaining.as_str()),
            ("5.00", "0.00")
        );

        let plan = running_on_credit(100.0, "Notify", None, true).plan();
        let credit = plan.status.credit.as_ref().unwrap();
        // 100 EUR at 20 a month: five whole months from March 1st, whatever their lengths.
        assert_eq!(
            credit.runs_out_at.as_ref().unwrap().0.to_string(),
            "2027-08-01T00:00:00Z"
        );
        assert_eq!(condition(&plan.status, "CreditExhausted").0, "False");
        assert_eq!(condition(&plan.status, "CreditLow").0, "False");
        // The low line of a 10 EUR credit (20 %: 2 left) is crossed after 8 EUR, 297.6 hours
        // into March; it runs out after 372 hours, on the 16th at noon.
        let plan = running_on_credit(10.0, "Notify", None, true).plan();
        let c = plan.status.credit.as_ref().unwrap();
        assert_eq!(
            c.low_at.as_ref().unwrap().0.to_string(),
            "2027-03-13T09:36:00Z"
        );
        assert_eq!(
            c.runs_out_at.as_ref().unwrap().0.to_string(),
            "2027-03-16T12:00:00Z"
        );
        assert_eq!(
            (c.as_of.0.to_string().as_str(), c.remaining.as_str()),
            ("2027-03-13T09:36:00Z", "2.00"),
            "as of the low line it passed"
        );
        assert_eq!(condition(&plan.status, "CreditLow").0, "True");
        assert_eq!(condition(&plan.status, "CreditExhausted").0, "False");
        assert_eq!(
            plan.wake,
            Some(Duration::from_secs(3600)),
            "runs out in a day: at most an hour"
        );
    }

    #[test]
    fn billing_reaches_members_only_where_the_customer_shows_it() {
        for shown in [true, false] {
            let plan = running_on_credit(100.0, "Notify", None, shown).plan();
            assert_eq!(
                plan.status.cost.is_some(),
                shown,
                "status.cost, shown: {shown}"
            );
            assert_eq!(
                plan.status.credit.is_some(),
                shown,
                "status.credit, shown: {shown}"
            );
            let (_, _, message) = condition(&plan.status, "CreditExhausted");
            assert_eq!(message.contains("EUR"), shown, "{message}");
        }
    }

    #[test]
    fn credit_events_are_told_once_and_never_under_none() {
        let low = |status: &str| {
            obj::<ProjectStatus>(
                json!({"conditions": [{"type": "CreditLow", "status": status,
                "reason": "x", "message": "low", "lastTransitionTime": "2027-03-08T18:00:00Z"}]}),
            )
        };
        let turned = usage::credit_events(
            &low("False").conditions,
            &low("True").conditions,
            CreditExhaustedPolicy::Notify,
        );
        assert_eq!(turned, vec![("CreditLow", "low".to_string())]);
        assert!(
            usage::credit_events(
                &low("True").conditions,
                &low("True").conditions,
                CreditExhaustedPolicy::Suspend
            )
            .is_empty()
        );
        assert!(
            usage::credit_events(
                &low("False").conditions,
                &low("True").conditions,
                CreditExhaustedPolicy::None
            )
            .is_empty()
        );
    }

    #[test]
    fn a_status_differing_only_in_figures_may_wait_anything_else_may_not() {
        let base: ProjectStatus = serde_json::from_value(json!({
            "observedGeneration": 1, "phase": "Active", "namespace": "web",
            "members": {"total": 1, "managers": 1, "administrators": 0, "members": 0, "pending": 0},
            "resourcesCount": 0,
            "conditions": [
                {"type": "AccessReady", "status": "True", "reason": "Bound",
                 "message": "1 members and customer roles bound",
                 "lastTransitionTime": "2027-03-15T12:00:00Z"},
                {"type": "Ready", "status": "True", "reason": "Ready", "message": "ready",
                 "lastTransitionTime": "2027-03-15T12:00:00Z"}]
        }))
        .unwrap();
        type Change = fn(&mut ProjectStatus);
        let cases: [(&str, Change, bool); 10] = [
            ("nothing", |_| {}, false),
            (
                "a member joined",
                |s| s.members.as_mut().unwrap().total = 2,
                true,
            ),
            ("resources counted", |s| s.resources_count = Some(3), true),
            (
                "usage",
                |s| {
                    s.usage.insert("cpu".into(), "500m".into());
                },
                true,
            ),
            (
                "a condition's wording",
                |s| s.conditions[0].message = "2 members and customer roles bound".into(),
                true,
            ),
            (
                "a condition's status",
                |s| s.conditions[1].status = "False".into(),
                false,
            ),
            (
                "a condition's reason",
                |s| s.conditions[1].reason = "Progressing".into(),
                false,
            ),
            (
                "the phase",
                |s| s.phase = Some(ProjectPhase::Finished),
                false,
            ),
            (
                "the generation seen",
                |s| s.observed_generation = Some(2),
                false,
            ),
            (
                "a count and the phase",
                |s| {
                    s.members = None;
                    s.phase = Some(ProjectPhase::Expired);
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

    #[test]
    fn progress_of_a_project_on_its_way_may_wait_ready_and_anything_else_may_not() {
        let cond = |t: &str, status: &str, reason: &str| {
            json!({"type": t, "status": status, "reason": reason, "message": format!("{t} {reason}"),
                   "lastTransitionTime": "2027-03-15T12:00:00Z"})
        };
        // The first status of a new project: its namespace being made, its quota not counted.
        let base: ProjectStatus = serde_json::from_value(json!({
            "observedGeneration": 1, "phase": "Pending", "namespace": "web",
            "conditions": [
                cond("NamespaceReady", "False", "Creating"),
                cond("AccessReady", "True", "Bound"),
                cond("QuotaReady", "False", "Waiting"),
                cond("Ready", "False", "Progressing"),
                cond("Reconciling", "True", "Progressing")]
        }))
        .unwrap();
        let set = |s: &mut ProjectStatus, t: &str, status: &str, reason: &str| {
            let c = s.conditions.iter_mut().find(|c| c.type_ == t).unwrap();
            c.status = status.into();
            c.reason = reason.into();
            c.message = format!("{t} now {reason}");
            c.last_transition_time = Time("2027-03-15T12:00:01Z".parse().unwrap());
        };
        type Change = fn(&mut ProjectStatus, &dyn Fn(&mut ProjectStatus, &str, &str, &str));
        let cases: [(&str, Change, bool); 8] = [
            ("nothing", |_, _| {}, false),
            (
                "the namespace is active, the quota still uncounted",
                |s, set| set(s, "NamespaceReady", "True", "Active"),
                true,
            ),
            (
                "the quota counted first",
                |s, set| set(s, "QuotaReady", "True", "Enforced"),
                true,
            ),
            (
                "a member joined meanwhile",
                |s, set| {
                    set(s, "NamespaceReady", "True", "Active");
                    s.resources_count = Some(0);
                },
                true,
            ),
            (
                "ready",
                |s, set| {
                    set(s, "NamespaceReady", "True", "Active");
                    set(s, "QuotaReady", "True", "Enforced");
                    set(s, "Ready", "True", "Reconciled");
                    set(s, "Reconciling", "False", "Reconciled");
                    s.phase = Some(ProjectPhase::Active);
                },
                false,
            ),
            (
                "the customer went",
                |s, set| set(s, "AccessReady", "False", "CustomerNotFound"),
                false,
            ),
            (
                "stalled",
                |s, set| set(s, "Ready", "False", "CustomerNotFound"),
                false,
            ),
            (
                "a new generation",
                |s, set| {
                    set(s, "NamespaceReady", "True", "Active");
                    s.observed_generation = Some(2);
                },
                false,
            ),
        ];
        for (what, change, may_wait) in cases {
            let mut next = base.clone();
            change(&mut next, &set);
            assert_eq!(progress_only(&base, &next), may_wait, "{what}");
        }
        // A ready project whose namespace goes is no progress: it is written at once.
        let mut ready = base.clone();
        set(&mut ready, "NamespaceReady", "True", "Active");
        set(&mut ready, "QuotaReady", "True", "Enforced");
        set(&mut ready, "Ready", "True", "Reconciled");
        let mut lost = ready.clone();
        set(&mut lost, "NamespaceReady", "False", "Creating");
        set(&mut lost, "Ready", "False", "Progressing");
        assert!(!progress_only(&ready, &lost));
    }

    #[test]
    fn a_new_projects_first_status_waits_while_it_says_the_project_is_on_its_way_or_ready() {
        let status = |ready: &str, reason: &str| -> ProjectStatus {
            serde_json::from_value(json!({"phase": "Pending", "conditions": [
                {"type": "Ready", "status": ready, "reason": reason, "message": "",
                 "lastTransitionTime": "2027-03-15T12:00:00Z"}]}))
            .unwrap()
        };
        let on_its_way = status("False", "Progressing");
        let empty = ProjectStatus::default();
        let moved = ProjectStatus {
            last_move: Some(
                serde_json::from_value(json!({"time": "2027-03-15T12:00:00Z",
                "from": "globex", "to": "acme", "preservedPermissions": false}))
                .unwrap(),
            ),
            ..status("True", "Reconciled")
        };
        for (previous, next, may_wait, what) in [
            (None, &on_its_way, true, "no status yet, on its way"),
            (
                Some(&empty),
                &on_its_way,
                true,
                "an empty status, on its way",
            ),
            (
                None,
                &status("True", "Reconciled"),
                true,
                "ready: waits for the members' counts",
            ),
            (
                Some(&on_its_way),
                &status("True", "Reconciled"),
                false,
                "ready after a first status",
            ),
            (
                None,
                &status("False", "NamespaceConflict"),
                false,
                "a conflict",
            ),
            (None, &status("False", "CustomerNotFound"), false, "stalled"),
            (
                Some(&on_its_way),
                &on_its_way,
                false,
                "not its first status",
            ),
            (None, &empty, false, "says nothing of being on its way"),
            (
                None,
                &ProjectStatus {
                    phase: Some(ProjectPhase::Expired),
                    ..status("True", "Reconciled")
                },
                false,
                "made after its end date and grace: expired",
            ),
            (
                None,
                &ProjectStatus {
                    phase: Some(ProjectPhase::Active),
                    ..status("True", "Reconciled")
                },
                true,
                "ready and in use",
            ),
            (
                None,
                &moved,
                false,
                "ready, recording a move made before it",
            ),
        ] {
            assert_eq!(first_may_wait(previous, next), may_wait, "{what}");
        }
    }
}

#[cfg(test)]
mod proptests;
