//! Admission: pure decision functions of (request, snapshot of the operator's caches), and the
//! HTTPS server that feeds them (`server`). Who may do what is DESIGN §4:
//! staff do everything; customer owners manage their customer's projects and memberships;
//! project managers change ordinary project fields and Member/Administrator memberships, never
//! their own; everyone else is denied with the rule that failed.

pub mod ledger;
pub mod server;

use jiff::Timestamp;
use json_patch::{AddOperation, PatchOperation};
use kube::ResourceExt;
use kube::core::admission::Operation;

use crate::api::{
    Customer, MembershipPhase, Project, ProjectMembership, ProjectRole, Subject, SubjectKind,
};
use crate::controller::inventory::NamespaceContents;
use crate::desired::access::{self, Grant};
use crate::desired::annotations;
use crate::lifecycle::archive::Archive;

/// Who is asking.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Requester {
    pub username: String,
    pub groups: Vec<String>,
}

impl Requester {
    /// Whether this requester is (or is in) the subject.
    pub fn is(&self, subject: &Subject) -> bool {
        match subject.kind {
            SubjectKind::User | SubjectKind::ServiceAccount => self.username == subject.username(),
            SubjectKind::Group => self.groups.contains(&subject.name),
        }
    }
}

/// Who is trusted.
#[derive(Clone, Debug)]
pub struct Policy {
    /// Groups whose members are staff.
    pub staff_groups: Vec<String>,
    /// Users always allowed: the operator itself, and the cluster's own controllers (which
    /// delete memberships when a namespace is purged).
    pub trusted_users: Vec<String>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            staff_groups: vec!["tenancy:staff".into(), "system:masters".into()],
            trusted_users: vec![
                "system:kube-controller-manager".into(),
                "system:serviceaccount:kube-system:namespace-controller".into(),
                "system:serviceaccount:kube-system:generic-garbage-collector".into(),
            ],
        }
    }
}

impl Policy {
    pub fn is_staff(&self, r: &Requester) -> bool {
        r.groups.iter().any(|g| self.staff_groups.contains(g))
            || self.trusted_users.contains(&r.username)
    }
}

/// A request's old and new objects as `T`. A new object that does not fit the types is refused
/// (422, naming the field). An old one that does not fit (stored under CRDs newer than the
/// operator) can be repaired or deleted by staff only: the rules that compare old and new cannot
/// run on it, so staff get `None` for it and everyone else is refused.
pub fn read_objects<T: serde::de::DeserializeOwned>(
    kind: &str,
    old: Option<&serde_json::Value>,
    new: Option<&serde_json::Value>,
    r: &Requester,
    policy: &Policy,
) -> Result<(Option<T>, Option<T>), Verdict> {
    let new = new.map(crate::api::read::<T>).transpose().map_err(|e| {
        Verdict::invalid(format!(
            "{e}; tenancy-operator cannot read this {kind}: fix the field (are the CRDs newer than the operator?)"
        ))
    })?;
    let old = match old.map(crate::api::read::<T>).transpose() {
        Ok(old) => old,
        Err(_) if policy.is_staff(r) => None,
        Err(e) => {
            return Err(Verdict::forbidden(format!(
                "the stored {kind} cannot be read by tenancy-operator ({e}); only staff may change or delete it"
            )));
        }
    };
    Ok((old, new))
}

/// The outcome of a decision.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    Allow,
    Deny {
        code: u16,
        reason: &'static str,
        message: String,
    },
}

impl Verdict {
    pub fn forbidden(message: impl Into<String>) -> Self {
        Verdict::Deny {
            code: 403,
            reason: "Forbidden",
            message: message.into(),
        }
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Verdict::Deny {
            code: 409,
            reason: "Conflict",
            message: message.into(),
        }
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Verdict::Deny {
            code: 422,
            reason: "Invalid",
            message: message.into(),
        }
    }
    pub fn is_allowed(&self) -> bool {
        matches!(self, Verdict::Allow)
    }
}

/// What the operator's caches say about a project, for deciding on it.
#[derive(Clone, Debug, Default)]
pub struct ProjectSnapshot {
    /// The customer named by the new object (or the old one, on delete).
    pub customer: Option<Customer>,
    /// The memberships in the project's namespace.
    pub memberships: Vec<ProjectMembership>,
    /// What the namespace holds (for the delete guard).
    pub contents: NamespaceContents,
    /// The archive, when a soft-deleted project of this name exists (a create recovers it).
    pub archive: Option<Archive>,
}

fn who(r: &Requester) -> String {
    format!("user {:?}", r.username)
}

fn is_owner(customer: &Customer, r: &Requester, now: Timestamp) -> bool {
    access::active_holders(&customer.spec.owners, now).any(|h| r.is(&h.subject()))
}

/// Active Manager of the project through one of the memberships.
fn is_manager(memberships: &[ProjectMembership], r: &Requester, now: Timestamp) -> bool {
    let refs: Vec<&ProjectMembership> = memberships.iter().collect();
    refs.iter().any(|m| {
        m.spec.role == ProjectRole::Manager
            && r.is(&m.spec.subject)
            && access::evaluate(m, &refs, true, now) == Grant::Active
    })
}

/// Staff-only project fields the requester set or changed.
fn staff_only_changes(old: Option<&Project>, new: &Project) -> Vec<&'static str> {
    let o = old.map(|p| &p.spec);
    let n = &new.spec;
    let mut out = Vec::new();
    if o.map(|o| &o.staff_notes) != Some(&n.staff_notes)
        && (old.is_some() || n.staff_notes.is_some())
    {
        out.push("spec.staffNotes");
    }
    if o.map(|o| o.grace_period_days) != Some(n.grace_period_days)
        && (old.is_some() || n.grace_period_days.is_some())
    {
        out.push("spec.gracePeriodDays");
    }
    if o.map(|o| o.max_service_accounts) != Some(n.max_service_accounts)
        && (old.is_some() || n.max_service_accounts.is_some())
    {
        out.push("spec.maxServiceAccounts");
    }
    let restore = |s: &crate::api::ProjectSpec| {
        s.recovery
            .as_ref()
            .and_then(|r| r.restore_team_members)
            .unwrap_or(false)
    };
    if restore(n) && o.is_none_or(|o| !restore(o)) {
        out.push("spec.recovery.restoreTeamMembers");
    }
    out
}

/// Decides a request on a Project.
pub fn decide_project(
    op: &Operation,
    r: &Requester,
    old: Option<&Project>,
    new: Option<&Project>,
    snap: &ProjectSnapshot,
    policy: &Policy,
    now: Timestamp,
) -> Verdict {
    let staff = policy.is_staff(r);
    match op {
        Operation::Delete => {
            let Some(old) = old else {
                return Verdict::Allow;
            };
            let name = old.name_any();
            let owner = snap.customer.as_ref().is_some_and(|c| is_owner(c, r, now));
            if !staff && !owner {
                return Verdict::forbidden(format!(
                    "{} may not delete project {name:?}: only owners of customer {:?} and staff may delete its projects",
                    r.username, old.spec.customer
                ));
            }
            let total = snap.contents.total();
            if total > 0 {
                let list = snap
                    .contents
                    .counts
                    .iter()
                    .map(|(k, v)| format!("{k}: {v}"))
                    .collect::<Vec<_>>()
                    .join(", ");
                return Verdict::conflict(format!(
                    "project {name} has {total} active resources ({list}); delete them first"
                ));
            }
            Verdict::Allow
        }
        Operation::Create | Operation::Update => {
            let Some(new) = new else {
                return Verdict::invalid("the request carries no object");
            };
            let name = new.name_any();
            // A new project, or a move, must name an existing customer. A project whose customer
            // was deleted can still be changed: its finalizer released, its fields fixed.
            let names_customer = *op == Operation::Create
                || old.is_none_or(|o| o.spec.customer != new.spec.customer);
            if snap.customer.is_none() && names_customer {
                return Verdict::invalid(format!(
                    "spec.customer: customer {:?} does not exist; create the Customer first or name an existing one",
                    new.spec.customer
                ));
            }
            if staff {
                return Verdict::Allow;
            }
            // Moves (and recoveries under another customer) are staff-only.
            let moved_from = match op {
                Operation::Update => old
                    .map(|o| o.spec.customer.clone())
                    .filter(|c| *c != new.spec.customer),
                _ => snap
                    .archive
                    .as_ref()
                    .map(|a| a.customer.clone())
                    .filter(|c| *c != new.spec.customer),
            };
            if let Some(from) = moved_from {
                return Verdict::forbidden(format!(
                    "{} may not move project {name:?} from customer {from:?} to {:?}: moving a project is staff-only",
                    who(r),
                    new.spec.customer
                ));
            }
            let staff_fields =
                staff_only_changes(if *op == Operation::Update { old } else { None }, new);
            if !staff_fields.is_empty() {
                return Verdict::forbidden(format!(
                    "{} may not set {}: only staff may",
                    who(r),
                    staff_fields.join(", ")
                ));
            }
            let owner = snap.customer.as_ref().is_some_and(|c| is_owner(c, r, now));
            if *op == Operation::Create {
                if !owner {
                    return Verdict::forbidden(format!(
                        "{} may not create projects for customer {:?}: only its owners and staff may",
                        who(r),
                        new.spec.customer
                    ));
                }
                return Verdict::Allow;
            }
            if owner || is_manager(&snap.memberships, r, now) {
                return Verdict::Allow;
            }
            Verdict::forbidden(format!(
                "{} may not change project {name:?}: only its managers, owners of customer {:?} and staff may",
                who(r),
                new.spec.customer
            ))
        }
        Operation::Connect => Verdict::Allow,
    }
}

/// What the operator's caches say about a membership's project.
#[derive(Clone, Debug, Default)]
pub struct MembershipSnapshot {
    /// The project of the membership's namespace.
    pub project: Option<Project>,
    pub customer: Option<Customer>,
    /// Every membership in the namespace (the one being changed included, as it was).
    pub memberships: Vec<ProjectMembership>,
}

/// Only the accept annotation changed, to "true".
fn is_acceptance(old: &ProjectMembership, new: &ProjectMembership) -> bool {
    let mut old_ann = old.annotations().clone();
    let mut new_ann = new.annotations().clone();
    let accepted = new_ann.remove(annotations::ACCEPT).as_deref() == Some("true");
    old_ann.remove(annotations::ACCEPT);
    accepted && old_ann == new_ann && old.spec == new.spec && old.labels() == new.labels()
}

/// Decides a request on a ProjectMembership.
pub fn decide_membership(
    op: &Operation,
    r: &Requester,
    old: Option<&ProjectMembership>,
    new: Option<&ProjectMembership>,
    snap: &MembershipSnapshot,
    policy: &Policy,
    now: Timestamp,
) -> Verdict {
    let Some(subject_obj) = new.or(old) else {
        return Verdict::invalid("the request carries no object");
    };
    let ns = subject_obj.namespace().unwrap_or_default();
    let staff = policy.is_staff(r);
    if *op == Operation::Delete {
        if staff || old.is_none() {
            return Verdict::Allow;
        }
    } else if snap.project.is_none() {
        return Verdict::invalid(format!(
            "metadata.namespace: {ns:?} is not the namespace of a project; create memberships in the namespace of the project they are for"
        ));
    }
    // A project in Conflict does not own its namespace: a membership there would bind nothing.
    if *op == Operation::Create
        && snap
            .project
            .as_ref()
            .and_then(|p| p.status.as_ref())
            .and_then(|s| s.phase)
            == Some(crate::api::ProjectPhase::Conflict)
    {
        return Verdict::conflict(format!(
            "project {ns} is in phase Conflict: namespace {ns} was not made by it and belongs to someone else, so a membership there would bind nothing; rename the project (delete it and create it under a free name) and add members there"
        ));
    }
    // Duplicates are refused for everyone.
    if let (Operation::Create | Operation::Update, Some(new)) = (op, new) {
        let dup = snap.memberships.iter().find(|o| {
            o.name_any() != new.name_any()
                && o.spec.subject == new.spec.subject
                && o.spec.role == new.spec.role
                && !access::expired(o.spec.expiration_time.as_ref(), now)
                && !matches!(
                    o.status.as_ref().and_then(|s| s.phase),
                    Some(MembershipPhase::Revoked)
                )
        });
        if let Some(d) = dup {
            return Verdict::conflict(format!(
                "{} {:?} already holds {} in project {ns} through membership {:?}; change that one instead",
                new.spec.subject.kind.as_str(),
                new.spec.subject.name,
                new.spec.role.as_str(),
                d.name_any()
            ));
        }
    }
    if staff {
        return Verdict::Allow;
    }
    if let (Operation::Update, Some(old), Some(new)) = (op, old, new)
        && r.is(&new.spec.subject)
        && is_acceptance(old, new)
    {
        if old.status.as_ref().and_then(|s| s.phase) == Some(MembershipPhase::Pending) {
            return Verdict::Allow;
        }
        return Verdict::forbidden(format!(
            "{} may not accept membership {:?}: it is not a pending invitation",
            who(r),
            new.name_any()
        ));
    }
    if snap.customer.as_ref().is_some_and(|c| is_owner(c, r, now)) {
        return Verdict::Allow;
    }
    if !is_manager(&snap.memberships, r, now) {
        return Verdict::forbidden(format!(
            "{} may not change memberships of project {ns:?}: only its managers, its customer's owners and staff may",
            who(r)
        ));
    }
    // A manager: Member and Administrator roles only, never their own.
    for m in [old, new].into_iter().flatten() {
        if r.is(&m.spec.subject) {
            return Verdict::forbidden(format!(
                "{} may not change their own membership {:?}: ask another manager or an owner",
                who(r),
                m.name_any()
            ));
        }
        if m.spec.role == ProjectRole::Manager {
            return Verdict::forbidden(format!(
                "{} may not grant or change the Manager role in project {ns:?}: managers handle Member and Administrator memberships; owners and staff handle managers",
                who(r)
            ));
        }
    }
    Verdict::Allow
}

/// Decides a request on a Customer: staff create, change and delete customers; owners may
/// change only its display fields.
pub fn decide_customer(
    op: &Operation,
    r: &Requester,
    old: Option<&Customer>,
    new: Option<&Customer>,
    policy: &Policy,
    now: Timestamp,
) -> Verdict {
    if policy.is_staff(r) {
        return Verdict::Allow;
    }
    if let (Operation::Update, Some(old), Some(new)) = (op, old, new)
        && is_owner(old, r, now)
    {
        let mut display_only = new.spec.clone();
        display_only.display_name = old.spec.display_name.clone();
        display_only.native_name = old.spec.native_name.clone();
        display_only.abbreviation = old.spec.abbreviation.clone();
        display_only.display_billing_info_in_projects = old.spec.display_billing_info_in_projects;
        if display_only == old.spec {
            return Verdict::Allow;
        }
        return Verdict::forbidden(format!(
            "{} may change only displayName, nativeName, abbreviation and displayBillingInfoInProjects of customer {:?}; owners, support, quota and grace periods are staff-only",
            who(r),
            old.name_any()
        ));
    }
    Verdict::forbidden(format!(
        "{} may not create, change or delete customers: only staff may",
        who(r)
    ))
}

fn add_annotation_ops(existing: bool, key: &str, value: &str) -> Vec<PatchOperation> {
    let mut ops = Vec::new();
    if !existing {
        ops.push(PatchOperation::Add(AddOperation {
            path: "/metadata/annotations".parse().expect("static pointer"),
            value: serde_json::json!({}),
        }));
    }
    let escaped = key.replace('~', "~0").replace('/', "~1");
    ops.push(PatchOperation::Add(AddOperation {
        path: format!("/metadata/annotations/{escaped}")
            .parse()
            .expect("escaped pointer"),
        value: serde_json::Value::String(value.to_string()),
    }));
    ops
}

/// The mutating webhook's changes to a Project: who requested the end date.
pub fn mutate_project(
    op: &Operation,
    r: &Requester,
    old: Option<&Project>,
    new: &Project,
) -> Vec<PatchOperation> {
    let changed = match op {
        Operation::Create => new.spec.end_date.is_some(),
        Operation::Update => old.map(|o| &o.spec.end_date) != Some(&new.spec.end_date),
        _ => false,
    };
    if !changed || new.annotations().get(annotations::END_DATE_REQUESTED_BY) == Some(&r.username) {
        return Vec::new();
    }
    add_annotation_ops(
        new.metadata.annotations.is_some(),
        annotations::END_DATE_REQUESTED_BY,
        &r.username,
    )
}

/// The mutating webhook's changes to a ProjectMembership: who created it.
pub fn mutate_membership(
    op: &Operation,
    r: &Requester,
    new: &ProjectMembership,
) -> Vec<PatchOperation> {
    if *op != Operation::Create {
        return Vec::new();
    }
    add_annotation_ops(
        new.metadata.annotations.is_some(),
        annotations::CREATED_BY,
        &r.username,
    )
}

#[cfg(test)]
mod tests;
