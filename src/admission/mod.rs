//! Admission: pure decision functions of (request, snapshot of the operator's caches), and the
//! HTTPS server that feeds them (`server`). Who may do what is DESIGN §4:
//! staff do everything; customer owners manage their customer's projects and memberships;
//! project managers change ordinary project fields and Member/Administrator memberships, never
//! their own; everyone else is denied with the rule that failed.

pub mod server;

use std::collections::BTreeSet;

use jiff::Timestamp;
use json_patch::{AddOperation, PatchOperation, RemoveOperation};
use k8s_openapi::api::rbac::v1::RoleBinding;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;
use kube::core::admission::Operation;

use crate::api::{Customer, MembershipPhase, Project, ProjectMembership, ProjectRole};
use crate::desired::NamespaceContents;
use crate::desired::access::{self, Grant};
use crate::desired::annotations;
use crate::lifecycle::archive::Archive;

pub use crate::desired::access::Requester;

/// Project names no one may create by default: the cluster's own namespaces and those of
/// common platform components (a project named like one, made before the component is installed,
/// would let its owner act as the component's ServiceAccounts). A trailing `*` is a prefix.
pub const DEFAULT_RESERVED_NAMES: &[&str] = &[
    "default",
    "kube-*",
    "openshift-*",
    "cattle-*",
    "tenancy-system",
    "cert-manager",
    "argocd",
    "flux-system",
    "ingress-nginx",
    "monitoring",
    "istio-system",
    "gatekeeper-system",
    "kyverno",
    "velero",
    "vault",
    "external-secrets",
    "external-dns",
    "metallb-system",
    "calico-system",
    "tigera-operator",
    "local-path-storage",
    "keda",
    "knative-serving",
    "olm",
    "operators",
];

/// The most memberships one project may hold: its archive (written on one annotation when it is
/// deleted) must fit within the apiserver's limit for annotations. A Group serves larger teams.
pub const MAX_MEMBERSHIPS_PER_PROJECT: usize = 500;

/// Who is trusted, and the rules that hold for everyone.
#[derive(Clone, Debug)]
pub struct Policy {
    /// Groups whose members are staff.
    pub staff_groups: Vec<String>,
    /// Users always allowed: the operator itself, and the cluster's own controllers (which
    /// delete memberships when a namespace is purged).
    pub trusted_users: Vec<String>,
    /// Project names nobody may create (a trailing `*` is a prefix); the operator's own namespace
    /// is always among them.
    pub reserved_names: Vec<String>,
    /// The ClusterRoles that project roles map to: tenants' RoleBindings may not bind them.
    pub roles: crate::desired::RoleNames,
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
            reserved_names: DEFAULT_RESERVED_NAMES
                .iter()
                .map(|s| s.to_string())
                .collect(),
            roles: Default::default(),
        }
    }
}

impl Policy {
    pub fn is_staff(&self, r: &Requester) -> bool {
        r.groups.iter().any(|g| self.staff_groups.contains(g))
            || self.trusted_users.contains(&r.username)
    }

    /// The reserved entry a project name matches, if any.
    pub fn reserved(&self, name: &str) -> Option<&str> {
        self.reserved_names
            .iter()
            .find(|r| match r.strip_suffix('*') {
                Some(prefix) => name.starts_with(prefix),
                None => name == r.as_str(),
            })
            .map(String::as_str)
    }
}

/// The metadata only staff (and the cluster's controllers) may set or change on tenancy objects:
/// owner references (the garbage collector would delete on their behalf) and finalizers (a
/// finalizer can keep an object, and the access it grants, alive forever; removing the
/// operator's would skip the soft delete). `allowed_finalizers` are those the operator adds
/// itself: anyone may add them, nobody but staff remove them. Returns the fields the requester
/// touched.
pub fn protected_metadata_changes(
    old: Option<&ObjectMeta>,
    new: &ObjectMeta,
    allowed_finalizers: &[&str],
) -> Vec<&'static str> {
    let mut out = Vec::new();
    let refs = |m: Option<&ObjectMeta>| {
        m.and_then(|m| m.owner_references.clone())
            .unwrap_or_default()
    };
    if refs(old) != refs(Some(new)) {
        out.push("metadata.ownerReferences");
    }
    let finalizers = |m: Option<&ObjectMeta>| -> BTreeSet<String> {
        m.and_then(|m| m.finalizers.clone())
            .unwrap_or_default()
            .into_iter()
            .collect()
    };
    let (before, after) = (finalizers(old), finalizers(Some(new)));
    let removed = before.difference(&after).next().is_some();
    let added = after
        .difference(&before)
        .any(|f| !allowed_finalizers.contains(&f.as_str()));
    if removed || added {
        out.push("metadata.finalizers");
    }
    out
}

fn metadata_verdict(r: &Requester, what: &str, fields: &[&str]) -> Option<Verdict> {
    (!fields.is_empty()).then(|| {
        Verdict::forbidden(format!(
            "{} may not set or change {} of {what}: only staff may (the garbage collector deletes through owner references, and finalizers keep objects alive)",
            who(r),
            fields.join(" and ")
        ))
    })
}

pub use crate::api::vocabulary::SOFT_DELETE_FINALIZER;

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
    /// The namespace of this name is not this project's (an earlier project's, or someone
    /// else's): the memberships in it make nobody its manager.
    pub namespace_not_owned: bool,
    /// Of the namespaces the request's subjects name, those that are projects' (the
    /// ServiceAccount rule).
    pub project_namespaces: BTreeSet<String>,
    /// The checklist the customer names, if it exists.
    pub checklist: Option<crate::api::Checklist>,
}

fn who(r: &Requester) -> String {
    format!("user {:?}", r.username)
}

fn is_owner(
    customer: &Customer,
    r: &Requester,
    now: Timestamp,
    project_namespaces: &BTreeSet<String>,
) -> bool {
    access::active_holders(&customer.spec.owners, now, &|n: &str| {
        project_namespaces.contains(n)
    })
    .any(|h| r.is(&h.subject()))
}

/// Active Manager of the project through one of the memberships.
fn is_manager(
    memberships: &[ProjectMembership],
    r: &Requester,
    now: Timestamp,
    binds: bool,
    project_namespaces: &BTreeSet<String>,
) -> bool {
    let refs: Vec<&ProjectMembership> = memberships.iter().collect();
    let is_project_namespace = |n: &str| project_namespaces.contains(n);
    refs.iter().any(|m| {
        m.spec.role == ProjectRole::Manager
            && r.is(&m.spec.subject)
            && access::evaluate(m, &refs, binds, now, &is_project_namespace) == Grant::Active
    })
}

/// Everything that makes a project's quota and limits unacceptable whoever asks: what the
/// apiserver would refuse in its ResourceQuota or LimitRange, and a resource its customer limits
/// that it leaves unbounded. Checked when the project is created, or its quota, limits or customer
/// change.
fn quota_verdict(
    old: Option<&Project>,
    new: &Project,
    customer: Option<&Customer>,
) -> Option<Verdict> {
    let changed = old.is_none_or(|o| {
        o.spec.quota != new.spec.quota
            || o.spec.limit_range != new.spec.limit_range
            || o.spec.customer != new.spec.customer
    });
    if !changed {
        return None;
    }
    let mut problems = crate::desired::namespace::spec_problems(new);
    if let Some(c) = customer {
        let hard = new
            .spec
            .quota
            .as_ref()
            .map(|q| q.hard.clone())
            .unwrap_or_default();
        let missing =
            crate::desired::quota::unbounded(&hard, &crate::desired::quota::customer_limits(c));
        if !missing.is_empty() {
            problems.push(format!(
                "spec.quota.hard: customer {} limits {}, so every one of its projects must set {} (a project without it would have no bound at all)",
                c.name_any(),
                missing.join(", "),
                if missing.len() == 1 { "it" } else { "them" }
            ));
        }
    }
    (!problems.is_empty()).then(|| Verdict::invalid(problems.join("; ")))
}

/// Staff-only project fields the requester set or changed.
fn staff_only_changes(old: Option<&Project>, new: &Project) -> Vec<&'static str> {
    let o = old.map(|p| &p.spec);
    let n = &new.spec;
    let mut out = Vec::new();
    if o.map(|o| &o.checklist_review) != Some(&n.checklist_review)
        && (old.is_some() || n.checklist_review.is_some())
    {
        out.push("spec.checklistReview");
    }
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

/// Whether a create, or an update that changes the answers or the customer, fits the customer's
/// checklist (other updates, e.g. a finalizer or an end date, are not held to a checklist
/// attached after the project was made). For everyone, staff included: the checklist is the
/// customer's policy.
fn checklist_verdict(
    old: Option<&Project>,
    new: &Project,
    snap: &ProjectSnapshot,
) -> Option<Verdict> {
    let changed = old.is_none_or(|o| {
        o.spec.checklist_answers != new.spec.checklist_answers
            || o.spec.customer != new.spec.customer
    });
    if !changed || new.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let wanted = snap
        .customer
        .as_ref()
        .and_then(|c| c.spec.project_checklist.clone());
    match (wanted, &snap.checklist) {
        (None, _) if new.spec.checklist_answers.is_empty() => None,
        (None, _) => Some(Verdict::invalid(format!(
            "spec.checklistAnswers: customer {:?} asks no checklist; remove the answers",
            new.spec.customer
        ))),
        (Some(name), None) => Some(Verdict::invalid(format!(
            "spec.checklistAnswers: customer {:?} requires checklist {name:?}, which does not exist; staff must create it (or remove spec.projectChecklist from the customer)",
            new.spec.customer
        ))),
        (Some(_), Some(c)) => {
            let e = crate::desired::checklist::evaluate(&c.spec, &new.spec.checklist_answers);
            (!e.problems.is_empty()).then(|| {
                Verdict::invalid(format!(
                    "the answers to checklist {} do not fit: {}",
                    c.name_any(),
                    e.problems.join("; ")
                ))
            })
        }
    }
}

/// The guidance of the customer's checklist that applies to a project's answers, as admission
/// warnings (kubectl prints them).
pub fn checklist_warnings(new: &Project, snap: &ProjectSnapshot) -> Vec<String> {
    let wanted = snap
        .customer
        .as_ref()
        .and_then(|c| c.spec.project_checklist.as_deref());
    match (&snap.checklist, wanted) {
        (Some(c), Some(name)) if c.name_any() == name => {
            crate::desired::checklist::evaluate(&c.spec, &new.spec.checklist_answers).guidance
        }
        _ => Vec::new(),
    }
}

/// Decides a request on a Checklist: staff only; one that cannot work is refused naming the
/// field.
pub fn decide_checklist(
    op: &Operation,
    r: &Requester,
    new: Option<&crate::api::Checklist>,
    policy: &Policy,
) -> Verdict {
    if !policy.is_staff(r) {
        return Verdict::forbidden(format!(
            "{} may not create, change or delete checklists: only staff may",
            who(r)
        ));
    }
    match (op, new) {
        (Operation::Create | Operation::Update, Some(c)) => {
            let problems = crate::desired::checklist::spec_problems(&c.spec);
            if problems.is_empty() {
                Verdict::Allow
            } else {
                Verdict::invalid(problems.join("; "))
            }
        }
        _ => Verdict::Allow,
    }
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
    let pns = &snap.project_namespaces;
    match op {
        Operation::Delete => {
            let Some(old) = old else {
                return Verdict::Allow;
            };
            let name = old.name_any();
            let owner = snap
                .customer
                .as_ref()
                .is_some_and(|c| is_owner(c, r, now, pns));
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
            if *op == Operation::Create
                && let Some(rule) = policy.reserved(&name)
            {
                return Verdict::invalid(format!(
                    "metadata.name: {name:?} is reserved for the cluster and its platform components (rule {rule:?}): a project gets a namespace of its name, so it may not take theirs; choose another name"
                ));
            }
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
            let old_for_update = if *op == Operation::Update { old } else { None };
            if let Some(v) = checklist_verdict(old_for_update, new, snap) {
                return v;
            }
            if let Some(v) = quota_verdict(old_for_update, new, snap.customer.as_ref()) {
                return v;
            }
            if staff {
                return Verdict::Allow;
            }
            if let Some(v) = metadata_verdict(
                r,
                &format!("project {name}"),
                &protected_metadata_changes(
                    old_for_update.map(|o| &o.metadata),
                    &new.metadata,
                    &[SOFT_DELETE_FINALIZER],
                ),
            ) {
                return v;
            }
            let adopt = |p: Option<&Project>| {
                p.and_then(|p| p.annotations().get(annotations::ADOPT_NAMESPACE).cloned())
            };
            if adopt(old_for_update) != adopt(Some(new)) {
                return Verdict::forbidden(format!(
                    "{} may not set metadata.annotations[{}]: adopting a namespace the project did not create is a staff decision",
                    who(r),
                    annotations::ADOPT_NAMESPACE
                ));
            }
            // The incarnation a project has is kept (the mutating webhook gave it, or refused a
            // tenant's own: see `incarnation_verdict`).
            let incarnation = |p: &Project| p.annotations().get(annotations::INCARNATION).cloned();
            if let Some(was) = old_for_update.and_then(incarnation)
                && incarnation(new).as_ref() != Some(&was)
            {
                return incarnation_refusal(r, &name);
            }
            // Without its customer, a quota cannot be checked against the customer's.
            if snap.customer.is_none()
                && old_for_update.is_some_and(|o| {
                    crate::desired::quota::allocation(o) != crate::desired::quota::allocation(new)
                })
            {
                return Verdict::forbidden(format!(
                    "{} may not change spec.quota of project {name:?}: its customer {:?} does not exist, so the change cannot be checked against the customer's quota; only staff may",
                    who(r),
                    new.spec.customer
                ));
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
            let owner = snap
                .customer
                .as_ref()
                .is_some_and(|c| is_owner(c, r, now, pns));
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
            // Credit is money the customer grants: its owners and staff decide it, not the
            // project's managers.
            let credit_changed = old.is_some_and(|o| {
                o.spec.credit != new.spec.credit
                    || o.spec.credit_exhausted_policy != new.spec.credit_exhausted_policy
            });
            if !owner && credit_changed {
                return Verdict::forbidden(format!(
                    "{} may not change spec.credit or spec.creditExhaustedPolicy of project {name:?}: only owners of customer {:?} and staff may",
                    who(r),
                    new.spec.customer
                ));
            }
            if owner || is_manager(&snap.memberships, r, now, !snap.namespace_not_owned, pns) {
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
    /// The project does not own the namespace (an earlier project's, or someone else's).
    pub namespace_not_owned: bool,
    /// Of the namespaces the request's subjects name, those that are projects'.
    pub project_namespaces: BTreeSet<String>,
}

/// Only the accept annotation changed, to "true": spec, labels, other annotations, owner
/// references and finalizers are as they were.
fn is_acceptance(old: &ProjectMembership, new: &ProjectMembership) -> bool {
    let mut old_ann = old.annotations().clone();
    let mut new_ann = new.annotations().clone();
    let accepted = new_ann.remove(annotations::ACCEPT).as_deref() == Some("true");
    old_ann.remove(annotations::ACCEPT);
    accepted
        && old_ann == new_ann
        && old.spec == new.spec
        && old.labels() == new.labels()
        && protected_metadata_changes(Some(&old.metadata), &new.metadata, &[]).is_empty()
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
            "metadata.namespace: {ns:?} is not the namespace of a project (there is no Project {ns:?}); create the Project first (a restore restores Projects before their ProjectMemberships), or create the membership in the namespace of the project it is for"
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
    // A project's memberships are bounded (its archive must fit one annotation).
    if *op == Operation::Create && snap.memberships.len() >= MAX_MEMBERSHIPS_PER_PROJECT {
        return Verdict::conflict(format!(
            "project {ns} has {} memberships, the most one project may hold ({MAX_MEMBERSHIPS_PER_PROJECT}); remove expired or revoked ones, or grant a Group",
            snap.memberships.len()
        ));
    }
    // The ServiceAccount rule holds for everyone.
    if let (Operation::Create | Operation::Update, Some(new)) = (op, new)
        && let Err(why) = access::service_account_rule(
            &new.spec.subject,
            access::Scope::Project {
                project: &ns,
                role: new.spec.role,
            },
            &|n: &str| snap.project_namespaces.contains(n),
        )
    {
        return Verdict::forbidden(format!("spec.subject: {why}"));
    }
    // Duplicates are refused for everyone.
    if let (Operation::Create | Operation::Update, Some(new)) = (op, new) {
        let dup = snap.memberships.iter().find(|o| {
            o.name_any() != new.name_any()
                && o.spec.subject == new.spec.subject
                && o.spec.role == new.spec.role
                && !access::expired(o.spec.expiration_time.as_ref(), now)
                && !matches!(access::held_phase(o), Some(MembershipPhase::Revoked))
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
    if let (Operation::Create | Operation::Update, Some(new)) = (op, new)
        && let Some(v) = metadata_verdict(
            r,
            &format!("membership {:?}", new.name_any()),
            &protected_metadata_changes(old.map(|o| &o.metadata), &new.metadata, &[]),
        )
    {
        return v;
    }
    if let (Operation::Update, Some(old), Some(new)) = (op, old, new)
        && r.is(&new.spec.subject)
        && is_acceptance(old, new)
    {
        if access::held_phase(old) == Some(MembershipPhase::Pending) {
            return Verdict::Allow;
        }
        return Verdict::forbidden(format!(
            "{} may not accept membership {:?}: it is not a pending invitation",
            who(r),
            new.name_any()
        ));
    }
    let pns = &snap.project_namespaces;
    if snap
        .customer
        .as_ref()
        .is_some_and(|c| is_owner(c, r, now, pns))
    {
        return Verdict::Allow;
    }
    if !is_manager(&snap.memberships, r, now, !snap.namespace_not_owned, pns) {
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

/// What the operator's caches say about a customer, for deciding on it.
#[derive(Clone, Debug, Default)]
pub struct CustomerSnapshot {
    /// The customer's projects (not being deleted).
    pub projects: Vec<Project>,
    /// Of the namespaces the request's subjects name, those that are projects'.
    pub project_namespaces: BTreeSet<String>,
}

/// Why a customer's quota cannot bound its projects, if it cannot: a resource it limits that a
/// project leaves unbounded, a limit below what its projects already hold, fewer projects allowed
/// than it has. Checked whenever the quota changes, for everyone.
fn customer_quota_problems(customer: &Customer, projects: &[Project]) -> Vec<String> {
    use crate::desired::quota;
    let Some(q) = &customer.spec.quota else {
        return Vec::new();
    };
    let mut out = quota::quota_problems("spec.quota.hard", &q.hard);
    let limits = quota::customer_limits(customer);
    let unbounded: Vec<String> = projects
        .iter()
        .filter_map(|p| {
            let hard = p
                .spec
                .quota
                .as_ref()
                .map(|q| q.hard.clone())
                .unwrap_or_default();
            let missing = quota::unbounded(&hard, &limits);
            (!missing.is_empty())
                .then(|| format!("{} (sets no {})", p.name_any(), missing.join(", ")))
        })
        .collect();
    if !unbounded.is_empty() {
        out.push(format!(
            "spec.quota.hard: every project of the customer must set each resource the customer limits, and these do not: {}; set it on them first",
            unbounded.join(", ")
        ));
    }
    let allocated = projects
        .iter()
        .fold(quota::Allocation::new(), |mut sum, p| {
            for (k, v) in quota::allocation(p) {
                *sum.entry(k).or_default() += v;
            }
            sum
        });
    for (k, limit) in quota::allocation_of_list(&q.hard) {
        let held = allocated.get(&k).copied().unwrap_or_default();
        if held > limit {
            out.push(format!(
                "spec.quota.hard.{k}: {limit} is less than the {held} its projects already hold; lower their quotas first"
            ));
        }
    }
    if let Some(max) = q.projects
        && projects.len() as i64 > i64::from(max)
    {
        out.push(format!(
            "spec.quota.projects: {max} is fewer than the {} projects the customer has",
            projects.len()
        ));
    }
    out
}

/// Decides a request on a Customer: staff create, change and delete customers; owners may
/// change only its display fields. For everyone: its quota must bound its projects, and its
/// owners and support follow the ServiceAccount rule.
pub fn decide_customer(
    op: &Operation,
    r: &Requester,
    old: Option<&Customer>,
    new: Option<&Customer>,
    snap: &CustomerSnapshot,
    policy: &Policy,
    now: Timestamp,
) -> Verdict {
    let pns = &snap.project_namespaces;
    if let (Operation::Create | Operation::Update, Some(new)) = (op, new) {
        let holders = (new.spec.owners.iter().enumerate())
            .map(|(i, h)| (format!("spec.owners[{i}]"), h))
            .chain(
                (new.spec.support.iter().enumerate())
                    .map(|(i, h)| (format!("spec.support[{i}]"), h)),
            );
        for (field, h) in holders {
            if let Err(why) =
                access::service_account_rule(&h.subject(), access::Scope::Customer, &|n: &str| {
                    pns.contains(n)
                })
            {
                return Verdict::forbidden(format!("{field}: {why}"));
            }
        }
        if old.is_none_or(|o| o.spec.quota != new.spec.quota) {
            let problems = customer_quota_problems(new, &snap.projects);
            if !problems.is_empty() {
                return Verdict::conflict(problems.join("; "));
            }
        }
    }
    if policy.is_staff(r) {
        return Verdict::Allow;
    }
    if let (Operation::Update, Some(old), Some(new)) = (op, old, new)
        && is_owner(old, r, now, pns)
    {
        if let Some(v) = metadata_verdict(
            r,
            &format!("customer {}", old.name_any()),
            &protected_metadata_changes(Some(&old.metadata), &new.metadata, &[]),
        ) {
            return v;
        }
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

/// What the operator's caches say about a RoleBinding's namespace.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BindingNamespace {
    /// Not a project's namespace: not the webhook's business.
    #[default]
    Other,
    /// An active project's namespace.
    Active,
    /// A soft-deleted project's archived namespace, or one whose project is being deleted.
    Archived,
}

/// Decides a request on a RoleBinding in a project namespace. People get access to a project only
/// through memberships and customer roles: a RoleBinding a tenant makes there may bind only
/// ServiceAccounts of that namespace, never to the project roles; the operator's own bindings
/// are the operator's; and an archived project's namespace is open to staff only.
pub fn decide_role_binding(
    op: &Operation,
    r: &Requester,
    old: Option<&RoleBinding>,
    new: Option<&RoleBinding>,
    namespace: BindingNamespace,
    policy: &Policy,
) -> Verdict {
    if policy.is_staff(r) || namespace == BindingNamespace::Other || *op == Operation::Delete {
        return Verdict::Allow;
    }
    let Some(new) = new else {
        return Verdict::Allow;
    };
    let ns = new.namespace().unwrap_or_default();
    let name = new.name_any();
    if namespace == BindingNamespace::Archived {
        return Verdict::forbidden(format!(
            "{} may not bind anything in namespace {ns}: its project was deleted, and only staff have access to an archived project",
            who(r)
        ));
    }
    let managed = |rb: &RoleBinding| {
        rb.labels()
            .get(crate::desired::labels::MANAGED_BY)
            .map(String::as_str)
            == Some(crate::desired::labels::MANAGED_BY_VALUE)
    };
    if old.is_some_and(managed) || managed(new) {
        return Verdict::forbidden(format!(
            "{} may not write RoleBinding {name}: bindings labelled {}={} are tenancy-operator's (they implement memberships and customer roles); change the ProjectMembership instead",
            who(r),
            crate::desired::labels::MANAGED_BY,
            crate::desired::labels::MANAGED_BY_VALUE
        ));
    }
    let role = &new.role_ref;
    let project_roles = [
        &policy.roles.manager,
        &policy.roles.administrator,
        &policy.roles.member,
    ];
    if role.kind == "ClusterRole"
        && (project_roles.contains(&&role.name) || role.name.starts_with("tenancy:"))
    {
        return Verdict::forbidden(format!(
            "RoleBinding {name} may not bind ClusterRole {}: project roles are held only through ProjectMemberships, which expire and are revoked with the project",
            role.name
        ));
    }
    for (i, s) in new.subjects.iter().flatten().enumerate() {
        let own_service_account =
            s.kind == "ServiceAccount" && s.namespace.as_deref().is_none_or(|n| n == ns);
        if !own_service_account {
            let whom = match &s.namespace {
                Some(n) => format!("{} {n}/{}", s.kind, s.name),
                None => format!("{} {:?}", s.kind, s.name),
            };
            return Verdict::forbidden(format!(
                "RoleBinding {name} subjects[{i}]: may not bind {whom}: in a project namespace people get access only through ProjectMemberships (which expire and end with the project); a RoleBinding may bind only ServiceAccounts of namespace {ns}"
            ));
        }
    }
    Verdict::Allow
}

/// JSON patch operations that set (`Some`) or remove (`None`) annotations, given the object's
/// current annotations.
fn annotation_ops(
    current: Option<&std::collections::BTreeMap<String, String>>,
    changes: &[(&str, Option<String>)],
) -> Vec<PatchOperation> {
    let mut ops = Vec::new();
    let mut exists = current.is_some();
    for (key, want) in changes {
        let have = current.and_then(|a| a.get(*key));
        if have == want.as_ref() {
            continue;
        }
        let escaped = key.replace('~', "~0").replace('/', "~1");
        let path = format!("/metadata/annotations/{escaped}");
        match want {
            Some(value) => {
                if !exists {
                    ops.push(PatchOperation::Add(AddOperation {
                        path: "/metadata/annotations".parse().expect("static pointer"),
                        value: serde_json::json!({}),
                    }));
                    exists = true;
                }
                ops.push(PatchOperation::Add(AddOperation {
                    path: path.parse().expect("escaped pointer"),
                    value: serde_json::Value::String(value.clone()),
                }));
            }
            None => ops.push(PatchOperation::Remove(RemoveOperation {
                path: path.parse().expect("escaped pointer"),
            })),
        }
    }
    ops
}

/// What the webhook gives a Project created without an incarnation: 128 random bits, in hex.
pub fn fresh_incarnation() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the system's random source");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn incarnation_refusal(r: &Requester, project: &str) -> Verdict {
    Verdict::forbidden(format!(
        "{} may not set or change metadata.annotations[{}] of project {project:?}: the incarnation ties a project to an existing namespace (a project restored from a backup keeps its own), so only staff may set it; leave it out and the project gets its own",
        who(r),
        annotations::INCARNATION
    ))
}

/// Whether the requester may send this Project with the incarnation it carries: staff always; anyone
/// else only without one (the mutating webhook then gives a new project its own, and puts back
/// the one an update left out) or with the one it already has. Decided by the mutating webhook,
/// on the object as sent: the validating webhook sees the incarnation the mutation gave.
pub fn incarnation_verdict(
    op: &Operation,
    r: &Requester,
    old: Option<&Project>,
    new: &Project,
    policy: &Policy,
) -> Verdict {
    if policy.is_staff(r) || !matches!(op, Operation::Create | Operation::Update) {
        return Verdict::Allow;
    }
    let old = if *op == Operation::Update { old } else { None };
    let was = old.and_then(|o| o.annotations().get(annotations::INCARNATION));
    match new.annotations().get(annotations::INCARNATION) {
        Some(sent) if Some(sent) != was => incarnation_refusal(r, &new.name_any()),
        _ => Verdict::Allow,
    }
}

/// The mutating webhook's changes to a Project: its incarnation (`incarnation` for a new one sent
/// without any, the one it had for an update that left it out), the soft-delete finalizer for a
/// new one (anyone may add it; only staff may remove it), who requested the end date, and
/// audit annotations only the webhook writes. For everyone but staff, `end-date-requested-by` is the
/// requester when the end date changes and what it was otherwise; `deleted-by` is what it was
/// (the webhook records it when the delete is admitted).
pub fn mutate_project(
    op: &Operation,
    r: &Requester,
    old: Option<&Project>,
    new: &Project,
    policy: &Policy,
    now: Timestamp,
    incarnation: &str,
) -> Vec<PatchOperation> {
    let old = if *op == Operation::Update { old } else { None };
    let was = |key: &str| old.and_then(|o| o.annotations().get(key).cloned());
    let mut changes = Vec::new();
    if !new.annotations().contains_key(annotations::INCARNATION) {
        let given = match op {
            Operation::Create => Some(incarnation.to_string()),
            _ => was(annotations::INCARNATION),
        };
        if given.is_some() {
            changes.push((annotations::INCARNATION, given));
        }
    }
    let end_date_changed = match op {
        Operation::Create => new.spec.end_date.is_some(),
        Operation::Update => old.map(|o| &o.spec.end_date) != Some(&new.spec.end_date),
        _ => false,
    };
    let staff = policy.is_staff(r);
    if end_date_changed {
        changes.push((annotations::END_DATE_REQUESTED_BY, Some(r.username.clone())));
    } else if !staff {
        changes.push((
            annotations::END_DATE_REQUESTED_BY,
            was(annotations::END_DATE_REQUESTED_BY),
        ));
    }
    if !staff {
        changes.push((annotations::DELETED_BY, was(annotations::DELETED_BY)));
    }
    // A review by staff covers the answers it saw: who, when, and their digest.
    let reviewed = staff
        && new.spec.checklist_review.is_some()
        && old.is_none_or(|o| {
            o.spec.checklist_review != new.spec.checklist_review
                || o.spec.checklist_answers != new.spec.checklist_answers
        });
    for key in [
        annotations::CHECKLIST_REVIEWED_BY,
        annotations::CHECKLIST_REVIEWED_AT,
        annotations::CHECKLIST_REVIEWED_ANSWERS,
    ] {
        if reviewed {
            let value = match key {
                annotations::CHECKLIST_REVIEWED_BY => r.username.clone(),
                annotations::CHECKLIST_REVIEWED_AT => now.to_string(),
                _ => crate::desired::checklist::digest(&new.spec.checklist_answers),
            };
            changes.push((key, Some(value)));
        } else if !staff {
            changes.push((key, was(key)));
        }
    }
    let mut ops = annotation_ops(new.metadata.annotations.as_ref(), &changes);
    if *op == Operation::Create {
        ops.extend(finalizer_op(new.metadata.finalizers.as_deref()));
    }
    ops
}

/// The JSON patch operation that adds the soft-delete finalizer to a new Project (none when it
/// has it): the project is made with it, so the operator need not patch it in afterwards.
fn finalizer_op(current: Option<&[String]>) -> Option<PatchOperation> {
    let (path, value) = match current {
        Some(f) if f.iter().any(|f| f == SOFT_DELETE_FINALIZER) => return None,
        Some(_) => (
            "/metadata/finalizers/-",
            serde_json::json!(SOFT_DELETE_FINALIZER),
        ),
        None => (
            "/metadata/finalizers",
            serde_json::json!([SOFT_DELETE_FINALIZER]),
        ),
    };
    Some(PatchOperation::Add(AddOperation {
        path: path.parse().expect("static pointer"),
        value,
    }))
}

/// The mutating webhook's changes to a ProjectMembership: who created it (on create, the
/// requester; afterwards what it was, except for staff), and its phase marker
/// (`tenancy.dev/phase`: the operator's alone, so for everyone but staff none on create and what
/// it was afterwards; removing it would turn an invitation into access after a restore).
pub fn mutate_membership(
    op: &Operation,
    r: &Requester,
    old: Option<&ProjectMembership>,
    new: &ProjectMembership,
    policy: &Policy,
) -> Vec<PatchOperation> {
    let staff = policy.is_staff(r);
    let was = |key: &str| old.and_then(|o| o.annotations().get(key).cloned());
    let mut changes = match op {
        Operation::Create => vec![(annotations::CREATED_BY, Some(r.username.clone()))],
        Operation::Update if !staff => {
            vec![(annotations::CREATED_BY, was(annotations::CREATED_BY))]
        }
        _ => return Vec::new(),
    };
    if !staff {
        changes.push((annotations::PHASE, was(annotations::PHASE)));
    }
    annotation_ops(new.metadata.annotations.as_ref(), &changes)
}

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
