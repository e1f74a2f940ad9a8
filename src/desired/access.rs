//! Who may do what: RoleBindings for memberships and customer roles, the per-project and
//! per-customer ClusterRoles that let people read their own Project and Customer objects, and
//! the role ClusterRoles themselves.

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use k8s_openapi::api::rbac::v1::{
    AggregationRule, ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef,
    Subject as RbacSubject,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::ResourceExt;

use super::{RoleNames, bounded_name, child_labels, child_meta, labels, owner_ref};
use crate::api::{
    Customer, CustomerRoleHolder, MembershipPhase, Project, ProjectMembership, ProjectRole,
    Subject, SubjectKind,
};

const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

/// The RBAC form of a subject.
pub fn rbac_subject(subject: &Subject) -> RbacSubject {
    match subject.kind {
        SubjectKind::ServiceAccount => RbacSubject {
            kind: "ServiceAccount".into(),
            name: subject.name.clone(),
            namespace: subject.namespace.clone(),
            api_group: Some(String::new()),
        },
        kind => RbacSubject {
            kind: kind.as_str().into(),
            name: subject.name.clone(),
            namespace: None,
            api_group: Some(RBAC_GROUP.into()),
        },
    }
}

fn role_ref(cluster_role: &str) -> RoleRef {
    RoleRef {
        api_group: RBAC_GROUP.into(),
        kind: "ClusterRole".into(),
        name: cluster_role.into(),
    }
}

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

/// Whether a point in time has been reached (`None` never expires).
pub fn expired(
    expiration: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
    now: Timestamp,
) -> bool {
    expiration.is_some_and(|t| t.0 <= now)
}

/// What a membership grants right now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Grant {
    /// The role is granted.
    Active,
    /// Past expirationTime.
    Expired,
    /// Revoked by a soft delete or a move (kept until the project is recovered).
    Revoked,
    /// Invitation not yet accepted.
    Pending,
    /// Another, older membership already gives this subject this role; named here.
    Duplicate(String),
    /// The project does not exist or does not bind anything (conflict, soft-deleted).
    NoProject,
    /// The membership is being deleted: it grants nothing from the moment the delete is asked,
    /// whatever finalizers keep the object.
    Deleting,
    /// A rule forbids this subject this role (the message says which).
    Refused(String),
}

impl Grant {
    pub fn phase(&self) -> Option<MembershipPhase> {
        match self {
            Grant::Active => Some(MembershipPhase::Active),
            Grant::Expired => Some(MembershipPhase::Expired),
            Grant::Revoked => Some(MembershipPhase::Revoked),
            Grant::Pending => Some(MembershipPhase::Pending),
            Grant::Duplicate(_) | Grant::NoProject | Grant::Deleting | Grant::Refused(_) => None,
        }
    }
}

/// The phase a membership holds: its status's, or, for one restored without its status, the
/// `tenancy.dev/phase` the operator marked it with (Pending or Revoked: what withholds access).
pub fn held_phase(m: &ProjectMembership) -> Option<MembershipPhase> {
    m.status.as_ref().and_then(|s| s.phase).or_else(|| {
        match m
            .annotations()
            .get(crate::api::vocabulary::annotations::PHASE)
            .map(String::as_str)
        {
            Some("Pending") => Some(MembershipPhase::Pending),
            Some("Revoked") => Some(MembershipPhase::Revoked),
            _ => None,
        }
    })
}

/// The `tenancy.dev/phase` marker a membership whose status holds `phase` carries: the phases
/// that withhold access, so a restore without status withholds it too.
pub fn phase_marker(phase: Option<MembershipPhase>) -> Option<&'static str> {
    match phase {
        Some(MembershipPhase::Pending) => Some("Pending"),
        Some(MembershipPhase::Revoked) => Some("Revoked"),
        _ => None,
    }
}

/// Sort key deciding which of two duplicate memberships wins: the older one.
fn seniority(m: &ProjectMembership) -> (Option<Timestamp>, String) {
    (
        m.metadata.creation_timestamp.as_ref().map(|t| t.0),
        m.name_any(),
    )
}

/// Where a role is held, for [`service_account_rule`].
#[derive(Clone, Copy, Debug)]
pub enum Scope<'a> {
    /// A membership of `role` in project `project`.
    Project { project: &'a str, role: ProjectRole },
    /// A customer owner or support role (reaches every project of the customer).
    Customer,
}

/// The ServiceAccount rule. A ServiceAccount of a project namespace is one of that project's
/// workloads, and Kubernetes lets everyone with `edit` there (Administrators, Managers) act as it
/// (impersonate it, run a pod under it, mint its tokens). So such a ServiceAccount may hold a role
/// only in its own project, and there at most Administrator; never a customer role. Otherwise
/// an Administrator could become Manager, or reach another project or the whole customer,
/// through it. ServiceAccounts of other namespaces (CI, platform tools) are not limited.
/// `is_project_namespace` tells whether a namespace is (or is named like) a project's.
pub fn service_account_rule(
    subject: &Subject,
    scope: Scope<'_>,
    is_project_namespace: &dyn Fn(&str) -> bool,
) -> Result<(), String> {
    if subject.kind != SubjectKind::ServiceAccount {
        return Ok(());
    }
    let ns = subject.namespace.as_deref().unwrap_or_default();
    let who = format!("ServiceAccount {ns}/{}", subject.name);
    match scope {
        Scope::Project { project, role } if ns == project => {
            if role == ProjectRole::Manager {
                return Err(format!(
                    "{who} belongs to project {project}'s own namespace, whose Administrators can act as it, so it may hold at most Administrator there (ServiceAccount rule)"
                ));
            }
            Ok(())
        }
        Scope::Project { project, .. } if is_project_namespace(ns) => Err(format!(
            "{who} belongs to project {ns}, whose Administrators can act as it, so it may hold roles only in project {ns}, not in {project} (ServiceAccount rule)"
        )),
        Scope::Customer if is_project_namespace(ns) => Err(format!(
            "{who} belongs to project {ns}, whose Administrators can act as it, so it may not hold a customer role (ServiceAccount rule)"
        )),
        _ => Ok(()),
    }
}

/// Decides what a membership grants, given its siblings in the same namespace, whether the
/// project can bind anything, and which namespaces are projects' (the ServiceAccount rule).
pub fn evaluate(
    m: &ProjectMembership,
    siblings: &[&ProjectMembership],
    project_binds: bool,
    now: Timestamp,
    is_project_namespace: &dyn Fn(&str) -> bool,
) -> Grant {
    if m.metadata.deletion_timestamp.is_some() {
        return Grant::Deleting;
    }
    if !project_binds {
        return Grant::NoProject;
    }
    let project = m.namespace().unwrap_or_default();
    if let Err(why) = service_account_rule(
        &m.spec.subject,
        Scope::Project {
            project: &project,
            role: m.spec.role,
        },
        is_project_namespace,
    ) {
        return Grant::Refused(why);
    }
    match held_phase(m) {
        Some(MembershipPhase::Revoked) => return Grant::Revoked,
        Some(MembershipPhase::Pending)
            if m.annotations()
                .get(crate::desired::annotations::ACCEPT)
                .map(String::as_str)
                != Some("true") =>
        {
            return Grant::Pending;
        }
        _ => {}
    }
    if expired(m.spec.expiration_time.as_ref(), now) {
        return Grant::Expired;
    }
    let contends = |o: &&&ProjectMembership| {
        o.name_any() != m.name_any()
            && o.spec.subject == m.spec.subject
            && o.spec.role == m.spec.role
            && !matches!(
                held_phase(o),
                Some(MembershipPhase::Revoked | MembershipPhase::Pending)
            )
            && !expired(o.spec.expiration_time.as_ref(), now)
            && o.metadata.deletion_timestamp.is_none()
    };
    if let Some(winner) = siblings
        .iter()
        .filter(contends)
        .min_by_key(|o| seniority(o))
        && seniority(winner) < seniority(m)
    {
        return Grant::Duplicate(winner.name_any());
    }
    Grant::Active
}

/// Memberships of a project's namespace, with what each grants now.
pub fn grants<'a>(
    memberships: &'a [std::sync::Arc<ProjectMembership>],
    binds: bool,
    now: Timestamp,
    is_project_namespace: &dyn Fn(&str) -> bool,
) -> Vec<(&'a ProjectMembership, Grant)> {
    let siblings: Vec<&ProjectMembership> = memberships.iter().map(|m| m.as_ref()).collect();
    siblings
        .iter()
        .map(|m| (*m, evaluate(m, &siblings, binds, now, is_project_namespace)))
        .collect()
}

/// Members by role, from the grants.
pub fn member_counts(grants: &[(&ProjectMembership, Grant)]) -> crate::api::project::MemberCounts {
    let mut c = crate::api::project::MemberCounts::default();
    for (m, g) in grants {
        match g {
            Grant::Active => {
                c.total += 1;
                match m.spec.role {
                    ProjectRole::Manager => c.managers += 1,
                    ProjectRole::Administrator => c.administrators += 1,
                    ProjectRole::Member => c.members += 1,
                }
            }
            Grant::Pending => c.pending += 1,
            _ => {}
        }
    }
    c
}

/// Name of the RoleBinding a membership produces.
pub fn membership_binding_name(membership: &str) -> String {
    bounded_name(&format!("tenancy-member-{membership}"), 253)
}

/// The RoleBinding an Active membership produces, owned by the membership.
pub fn membership_binding(m: &ProjectMembership, roles: &RoleNames) -> RoleBinding {
    let ns = m.namespace().unwrap_or_default();
    let name = m.name_any();
    let mut labels = child_labels(&ns, "membership");
    labels.insert(
        labels::MEMBERSHIP.into(),
        if name.len() <= 63 {
            name.clone()
        } else {
            crate::api::name_token(&name)
        },
    );
    RoleBinding {
        metadata: ObjectMeta {
            name: Some(membership_binding_name(&name)),
            namespace: Some(ns),
            labels: Some(labels),
            owner_references: Some(vec![owner_ref(m)]),
            ..Default::default()
        },
        role_ref: role_ref(roles.for_role(m.spec.role)),
        subjects: Some(vec![rbac_subject(&m.spec.subject)]),
    }
}

/// Name of the Role and RoleBinding that let an invited subject accept their invitation.
pub fn invitation_name(membership: &str) -> String {
    bounded_name(&format!("tenancy-invitation-{membership}"), 253)
}

/// While a membership is a pending invitation, its subject may read and patch that one
/// membership (to set `tenancy.dev/accept: "true"`; the webhook allows nothing else).
pub fn invitation_access(m: &ProjectMembership) -> (Role, RoleBinding) {
    let ns = m.namespace().unwrap_or_default();
    let name = invitation_name(&m.name_any());
    let meta = ObjectMeta {
        name: Some(name.clone()),
        namespace: Some(ns.clone()),
        labels: Some(child_labels(&ns, "invitation")),
        owner_references: Some(vec![owner_ref(m)]),
        ..Default::default()
    };
    let role = Role {
        metadata: meta.clone(),
        rules: Some(vec![rule(
            crate::api::GROUP,
            "projectmemberships",
            &[&m.name_any()],
            &["get", "update", "patch"],
        )]),
    };
    let binding = RoleBinding {
        metadata: meta,
        role_ref: RoleRef {
            api_group: RBAC_GROUP.into(),
            kind: "Role".into(),
            name,
        },
        subjects: Some(vec![rbac_subject(&m.spec.subject)]),
    };
    (role, binding)
}

/// Customer role holders that have not expired and that the ServiceAccount rule allows.
pub fn active_holders<'a>(
    holders: &'a [CustomerRoleHolder],
    now: Timestamp,
    is_project_namespace: &'a dyn Fn(&str) -> bool,
) -> impl Iterator<Item = &'a CustomerRoleHolder> {
    holders.iter().filter(move |h| {
        !expired(h.expiration_time.as_ref(), now)
            && service_account_rule(&h.subject(), Scope::Customer, is_project_namespace).is_ok()
    })
}

/// RoleBindings in a project namespace for the customer's owners (project-manager) and support
/// (project-member, read-only), owned by the project.
pub fn customer_bindings(
    project: &Project,
    customer: &Customer,
    roles: &RoleNames,
    now: Timestamp,
    is_project_namespace: &dyn Fn(&str) -> bool,
) -> Vec<RoleBinding> {
    let ns = project.name_any();
    let mut out = Vec::new();
    for (part, holders, role) in [
        ("owner", &customer.spec.owners, &roles.manager),
        ("support", &customer.spec.support, &roles.member),
    ] {
        let mut seen = BTreeSet::new();
        for holder in active_holders(holders, now, is_project_namespace) {
            let subject = holder.subject();
            if !seen.insert(subject.clone()) {
                continue;
            }
            let name = format!("tenancy-{part}-{}", subject.slug());
            out.push(RoleBinding {
                metadata: child_meta(&name, Some(&ns), project, part),
                role_ref: role_ref(role),
                subjects: Some(vec![rbac_subject(&subject)]),
            });
        }
    }
    out
}

/// Everyone with some access to a project right now, and those who manage it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProjectAudience {
    /// Active members of any role, customer owners and support.
    pub readers: BTreeSet<Subject>,
    /// Active Managers and customer owners.
    pub managers: BTreeSet<Subject>,
}

impl ProjectAudience {
    pub fn of(
        active_members: &[&ProjectMembership],
        customer: Option<&Customer>,
        now: Timestamp,
        is_project_namespace: &dyn Fn(&str) -> bool,
    ) -> Self {
        let mut a = ProjectAudience::default();
        for m in active_members {
            a.readers.insert(m.spec.subject.clone());
            if m.spec.role == ProjectRole::Manager {
                a.managers.insert(m.spec.subject.clone());
            }
        }
        if let Some(c) = customer {
            for h in active_holders(&c.spec.owners, now, is_project_namespace) {
                a.readers.insert(h.subject());
                a.managers.insert(h.subject());
            }
            for h in active_holders(&c.spec.support, now, is_project_namespace) {
                a.readers.insert(h.subject());
            }
        }
        a
    }
}

fn rule(group: &str, resource: &str, names: &[&str], verbs: &[&str]) -> PolicyRule {
    PolicyRule {
        api_groups: Some(vec![group.into()]),
        resources: Some(vec![resource.into()]),
        resource_names: (!names.is_empty()).then(|| names.iter().map(|s| s.to_string()).collect()),
        verbs: verbs.iter().map(|s| s.to_string()).collect(),
        non_resource_urls: None,
    }
}

/// Name of the per-project ClusterRole that lets its audience read the Project and Customer.
pub fn project_reader_role_name(project: &str) -> String {
    format!("tenancy:project:{project}")
}

/// Name of the per-project ClusterRole that lets managers change and delete the Project.
pub fn project_manager_role_name(project: &str) -> String {
    format!("tenancy:project:{project}:manage")
}

/// The per-project ClusterRoles and ClusterRoleBindings: readers may `get` their Project and
/// its Customer; managers may do that too and update and delete the Project. Each subject is in
/// one binding only (managers in the manager's, the other readers in the reader's), so a member
/// joining or leaving is one binding patch whatever their role.
pub fn project_access(
    project: &Project,
    audience: &ProjectAudience,
) -> (Vec<ClusterRole>, Vec<ClusterRoleBinding>) {
    let name = project.name_any();
    let customer = project.spec.customer.as_str();
    let reader = project_reader_role_name(&name);
    let manager = project_manager_role_name(&name);
    let roles = vec![
        ClusterRole {
            metadata: child_meta(&reader, None, project, "access"),
            rules: Some(vec![
                rule(crate::api::GROUP, "projects", &[&name], &["get", "watch"]),
                rule(
                    crate::api::GROUP,
                    "customers",
                    &[customer],
                    &["get", "watch"],
                ),
            ]),
            aggregation_rule: None,
        },
        ClusterRole {
            metadata: child_meta(&manager, None, project, "access"),
            rules: Some(vec![
                rule(
                    crate::api::GROUP,
                    "projects",
                    &[&name],
                    &["get", "watch", "update", "patch", "delete"],
                ),
                rule(
                    crate::api::GROUP,
                    "customers",
                    &[customer],
                    &["get", "watch"],
                ),
            ]),
            aggregation_rule: None,
        },
    ];
    let binding = |role: &str, subjects: &BTreeSet<Subject>| ClusterRoleBinding {
        metadata: child_meta(role, None, project, "access"),
        role_ref: role_ref(role),
        subjects: Some(subjects.iter().map(rbac_subject).collect()),
    };
    let readers_only: BTreeSet<Subject> = audience
        .readers
        .difference(&audience.managers)
        .cloned()
        .collect();
    let bindings = vec![
        binding(&reader, &readers_only),
        binding(&manager, &audience.managers),
    ];
    (roles, bindings)
}

/// Whether a cluster binding is written: one that would bind nobody is not made (a project's
/// reader binding before any reader but its managers joins, a customer's bindings while it has
/// no owners), so the first subject makes it instead of a create and then a patch; one
/// that exists is kept as desired, emptied too, however few it binds.
pub fn binding_written(binding: &ClusterRoleBinding, exists: bool) -> bool {
    exists || binding.subjects.as_ref().is_some_and(|s| !s.is_empty())
}

/// Name of the per-customer ClusterRole for its owners and support.
pub fn customer_role_name(customer: &str) -> String {
    format!("tenancy:customer:{customer}")
}

/// The per-customer ClusterRoles and bindings: owners and support may read the Customer; owners
/// may create projects (the webhook checks they are for this customer) and update their Customer
/// (the webhook lets them change only its display fields).
pub fn customer_access(
    customer: &Customer,
    now: Timestamp,
    is_project_namespace: &dyn Fn(&str) -> bool,
) -> (Vec<ClusterRole>, Vec<ClusterRoleBinding>) {
    let name = customer.name_any();
    let reader = customer_role_name(&name);
    let owner = format!("{reader}:owners");
    let meta = |n: &str| ObjectMeta {
        name: Some(n.to_string()),
        labels: Some(BTreeMap::from([
            (
                labels::MANAGED_BY.to_string(),
                labels::MANAGED_BY_VALUE.to_string(),
            ),
            (labels::CUSTOMER.to_string(), name.clone()),
            (labels::PART.to_string(), "customer-access".to_string()),
        ])),
        owner_references: Some(vec![owner_ref(customer)]),
        ..Default::default()
    };
    let owners: BTreeSet<Subject> =
        active_holders(&customer.spec.owners, now, is_project_namespace)
            .map(|h| h.subject())
            .collect();
    let readers: BTreeSet<Subject> = owners
        .iter()
        .cloned()
        .chain(
            active_holders(&customer.spec.support, now, is_project_namespace).map(|h| h.subject()),
        )
        .collect();
    let roles = vec![
        ClusterRole {
            metadata: meta(&reader),
            rules: Some(vec![rule(
                crate::api::GROUP,
                "customers",
                &[&name],
                &["get", "watch"],
            )]),
            aggregation_rule: None,
        },
        ClusterRole {
            metadata: meta(&owner),
            rules: Some(vec![
                rule(crate::api::GROUP, "projects", &[], &["create"]),
                rule(
                    crate::api::GROUP,
                    "customers",
                    &[&name],
                    &["update", "patch"],
                ),
            ]),
            aggregation_rule: None,
        },
    ];
    let binding = |role: &str, subjects: &BTreeSet<Subject>| ClusterRoleBinding {
        metadata: meta(role),
        role_ref: role_ref(role),
        subjects: Some(subjects.iter().map(rbac_subject).collect()),
    };
    let bindings = vec![binding(&reader, &readers), binding(&owner, &owners)];
    (roles, bindings)
}

/// Label that aggregates extra rules into a project role ClusterRole.
pub fn aggregate_label(role: &str) -> String {
    let short = role.rsplit(':').next().unwrap_or(role);
    format!("tenancy.dev/aggregate-to-{short}")
}

/// The ClusterRoles that project roles map to, as the Helm chart ships them: each aggregates a
/// built-in role (admin, edit, view) plus the membership rules of its level.
pub fn role_cluster_roles(roles: &RoleNames) -> Vec<ClusterRole> {
    let selector = |pairs: &[(&str, &str)]| LabelSelector {
        match_labels: Some(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ),
        ..Default::default()
    };
    let meta = |name: &str, extra: &[(String, String)]| {
        let mut l = BTreeMap::from([(
            labels::MANAGED_BY.to_string(),
            labels::MANAGED_BY_VALUE.to_string(),
        )]);
        l.extend(extra.iter().cloned());
        ObjectMeta {
            name: Some(name.to_string()),
            labels: Some(l),
            ..Default::default()
        }
    };
    let aggregated = |name: &str, builtin: &str| ClusterRole {
        metadata: meta(name, &[]),
        aggregation_rule: Some(AggregationRule {
            cluster_role_selectors: Some(vec![
                selector(&[(
                    &format!("rbac.authorization.k8s.io/aggregate-to-{builtin}"),
                    "true",
                )]),
                selector(&[(&aggregate_label(name), "true")]),
            ]),
        }),
        rules: None,
    };
    let memberships = |verbs: &[&str]| rule(crate::api::GROUP, "projectmemberships", &[], verbs);
    let membership_rules = |role: &str, verbs: &[&str]| ClusterRole {
        metadata: meta(
            &membership_rules_name(role),
            &[(aggregate_label(role), "true".into())],
        ),
        rules: Some(vec![memberships(verbs)]),
        aggregation_rule: None,
    };
    let mut out = vec![
        aggregated(&roles.manager, "admin"),
        aggregated(&roles.administrator, "edit"),
        aggregated(&roles.member, "view"),
        membership_rules(
            &roles.manager,
            &[
                "get", "list", "watch", "create", "update", "patch", "delete",
            ],
        ),
    ];
    for role in [&roles.administrator, &roles.member] {
        out.push(membership_rules(role, &["get", "list", "watch"]));
    }
    out
}

/// Name of the ClusterRole that carries a project role's membership rules (aggregated into it).
pub fn membership_rules_name(role: &str) -> String {
    format!("{role}:memberships")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{CustomerSpec, ProjectMembershipSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn user(name: &str) -> Subject {
        Subject {
            kind: SubjectKind::User,
            name: name.into(),
            namespace: None,
        }
    }

    fn membership(
        name: &str,
        who: &str,
        role: ProjectRole,
        expires: Option<&str>,
        created: &str,
    ) -> ProjectMembership {
        let mut m = ProjectMembership::new(
            name,
            ProjectMembershipSpec {
                subject: user(who),
                role,
                expiration_time: expires.map(|e| Time(ts(e))),
            },
        );
        m.metadata.namespace = Some("web".into());
        m.metadata.uid = Some(format!("uid-{name}"));
        m.metadata.creation_timestamp = Some(Time(ts(created)));
        m
    }

    fn customer(owners: serde_json::Value, support: serde_json::Value) -> Customer {
        let spec: CustomerSpec =
            serde_json::from_value(serde_json::json!({"owners": owners, "support": support}))
                .unwrap();
        let mut c = Customer::new("acme", spec);
        c.metadata.uid = Some("uid-acme".into());
        c
    }

    const NOW: &str = "2027-01-01T12:00:00Z";

    /// No namespace is a project's.
    fn none(_: &str) -> bool {
        false
    }

    #[test]
    fn a_service_account_of_a_project_holds_at_most_administrator_and_only_there() {
        let sa = |ns: &str| Subject {
            kind: SubjectKind::ServiceAccount,
            name: "bot".into(),
            namespace: Some(ns.into()),
        };
        let projects = |ns: &str| ["web", "api"].contains(&ns);
        let project = |project, role| Scope::Project { project, role };
        let cases: &[(Subject, Scope, Option<&str>)] = &[
            (sa("web"), project("web", ProjectRole::Administrator), None),
            (sa("web"), project("web", ProjectRole::Member), None),
            (
                sa("web"),
                project("web", ProjectRole::Manager),
                Some("may hold at most Administrator"),
            ),
            (
                sa("api"),
                project("web", ProjectRole::Member),
                Some("roles only in project api, not in web"),
            ),
            (sa("ci"), project("web", ProjectRole::Manager), None),
            (
                sa("web"),
                Scope::Customer,
                Some("may not hold a customer role"),
            ),
            (sa("ci"), Scope::Customer, None),
            (user("alice"), Scope::Customer, None),
            (user("alice"), project("web", ProjectRole::Manager), None),
        ];
        for (subject, scope, want) in cases {
            let got = service_account_rule(subject, *scope, &projects);
            match (want, &got) {
                (None, Ok(())) => {}
                (Some(w), Err(e)) if e.contains(w) => {}
                _ => panic!("{subject:?} in {scope:?}: got {got:?}, want {want:?}"),
            }
        }
        // The controller applies it too: such a membership grants nothing, and a customer role
        // held by such a ServiceAccount binds nothing.
        let mut m = membership("m", "x", ProjectRole::Manager, None, "2026-01-01T00:00:00Z");
        m.spec.subject = sa("web");
        assert!(matches!(
            evaluate(&m, &[], true, ts(NOW), &projects),
            Grant::Refused(_)
        ));
        let c = customer(
            serde_json::json!([{"kind": "ServiceAccount", "name": "bot", "namespace": "api"}]),
            serde_json::json!([]),
        );
        let p = crate::desired::namespace::tests::project("web", serde_json::json!({}));
        assert!(customer_bindings(&p, &c, &RoleNames::default(), ts(NOW), &projects).is_empty());
    }

    #[test]
    fn a_membership_being_deleted_grants_nothing() {
        let mut m = membership("m", "x", ProjectRole::Member, None, "2026-01-01T00:00:00Z");
        m.metadata.deletion_timestamp = Some(Time(ts(NOW)));
        m.metadata.finalizers = Some(vec!["example.com/keep".into()]);
        assert_eq!(evaluate(&m, &[], true, ts(NOW), &none), Grant::Deleting);
    }

    #[test]
    fn a_membership_is_active_until_its_expiration_instant() {
        let m = membership(
            "alice",
            "alice",
            ProjectRole::Member,
            Some("2027-01-01T12:00:05Z"),
            "2026-01-01T00:00:00Z",
        );
        assert_eq!(evaluate(&m, &[], true, ts(NOW), &none), Grant::Active);
        assert_eq!(
            evaluate(&m, &[], true, ts("2027-01-01T12:00:05Z"), &none),
            Grant::Expired
        );
    }

    #[test]
    fn the_younger_of_two_identical_memberships_is_a_duplicate() {
        let old = membership(
            "a-old",
            "alice",
            ProjectRole::Member,
            None,
            "2026-01-01T00:00:00Z",
        );
        let new = membership(
            "b-new",
            "alice",
            ProjectRole::Member,
            None,
            "2026-06-01T00:00:00Z",
        );
        let all = [&old, &new];
        assert_eq!(evaluate(&old, &all, true, ts(NOW), &none), Grant::Active);
        assert_eq!(
            evaluate(&new, &all, true, ts(NOW), &none),
            Grant::Duplicate("a-old".into())
        );
    }

    #[test]
    fn an_expired_membership_does_not_make_a_newer_one_a_duplicate() {
        let old = membership(
            "a-old",
            "alice",
            ProjectRole::Member,
            Some("2026-12-01T00:00:00Z"),
            "2026-01-01T00:00:00Z",
        );
        let new = membership(
            "b-new",
            "alice",
            ProjectRole::Member,
            None,
            "2026-06-01T00:00:00Z",
        );
        assert_eq!(
            evaluate(&new, &[&old, &new], true, ts(NOW), &none),
            Grant::Active
        );
    }

    #[test]
    fn the_same_subject_may_hold_two_different_roles() {
        let a = membership(
            "a",
            "alice",
            ProjectRole::Member,
            None,
            "2026-01-01T00:00:00Z",
        );
        let b = membership(
            "b",
            "alice",
            ProjectRole::Manager,
            None,
            "2026-06-01T00:00:00Z",
        );
        assert_eq!(evaluate(&b, &[&a, &b], true, ts(NOW), &none), Grant::Active);
    }

    #[test]
    fn nothing_is_granted_where_the_project_binds_nothing() {
        let m = membership(
            "a",
            "alice",
            ProjectRole::Member,
            None,
            "2026-01-01T00:00:00Z",
        );
        assert_eq!(evaluate(&m, &[], false, ts(NOW), &none), Grant::NoProject);
    }

    #[test]
    fn membership_binding_maps_role_to_cluster_role_and_is_owned_by_the_membership() {
        let m = membership(
            "alice",
            "alice",
            ProjectRole::Administrator,
            None,
            "2026-01-01T00:00:00Z",
        );
        let rb = membership_binding(&m, &RoleNames::default());
        assert_eq!(rb.role_ref.name, "tenancy:project-administrator");
        assert_eq!(rb.metadata.namespace.as_deref(), Some("web"));
        assert_eq!(rb.subjects.unwrap()[0].name, "alice");
        assert_eq!(
            rb.metadata.owner_references.unwrap()[0].kind,
            "ProjectMembership"
        );
    }

    #[test]
    fn service_account_subjects_keep_their_namespace() {
        let s = Subject {
            kind: SubjectKind::ServiceAccount,
            name: "ci".into(),
            namespace: Some("tools".into()),
        };
        let r = rbac_subject(&s);
        assert_eq!(
            (
                r.kind.as_str(),
                r.namespace.as_deref(),
                r.api_group.as_deref()
            ),
            ("ServiceAccount", Some("tools"), Some(""))
        );
        assert_eq!(s.username(), "system:serviceaccount:tools:ci");
    }

    #[test]
    fn customer_owners_manage_and_support_reads_until_they_expire() {
        let p = crate::desired::namespace::tests::project("web", serde_json::json!({}));
        let c = customer(
            serde_json::json!([{"kind": "User", "name": "olga"}, {"kind": "User", "name": "gone", "expirationTime": "2026-01-01T00:00:00Z"}]),
            serde_json::json!([{"kind": "Group", "name": "helpdesk"}]),
        );
        let rbs = customer_bindings(&p, &c, &RoleNames::default(), ts(NOW), &none);
        let summary: Vec<(String, String)> = rbs
            .iter()
            .map(|rb| {
                (
                    rb.subjects.as_ref().unwrap()[0].name.clone(),
                    rb.role_ref.name.clone(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                ("olga".into(), "tenancy:project-manager".into()),
                ("helpdesk".into(), "tenancy:project-member".into())
            ]
        );
    }

    #[test]
    fn project_access_lets_readers_get_and_managers_change_the_project() {
        let p = crate::desired::namespace::tests::project("web", serde_json::json!({}));
        let c = customer(
            serde_json::json!([{"kind": "User", "name": "olga"}]),
            serde_json::json!([]),
        );
        let mgr = membership(
            "m",
            "mia",
            ProjectRole::Manager,
            None,
            "2026-01-01T00:00:00Z",
        );
        let mem = membership(
            "n",
            "ned",
            ProjectRole::Member,
            None,
            "2026-01-01T00:00:00Z",
        );
        let audience = ProjectAudience::of(&[&mgr, &mem], Some(&c), ts(NOW), &none);
        let (roles, bindings) = project_access(&p, &audience);
        assert_eq!(
            roles[0].rules.as_ref().unwrap()[0]
                .resource_names
                .as_ref()
                .unwrap(),
            &vec!["web".to_string()]
        );
        assert_eq!(
            roles[0].rules.as_ref().unwrap()[1]
                .resource_names
                .as_ref()
                .unwrap(),
            &vec!["acme".to_string()]
        );
        let names = |b: &ClusterRoleBinding| {
            b.subjects
                .as_ref()
                .unwrap()
                .iter()
                .map(|s| s.name.clone())
                .collect::<Vec<_>>()
        };
        // Each subject in one binding: the managers' role reads too.
        assert_eq!(names(&bindings[0]), vec!["ned"]);
        assert_eq!(names(&bindings[1]), vec!["mia", "olga"]);
        let verbs = |r: &ClusterRole, i: usize| r.rules.as_ref().unwrap()[i].verbs.clone();
        assert_eq!(verbs(&roles[0], 0), ["get", "watch"]);
        assert_eq!(
            verbs(&roles[1], 0),
            ["get", "watch", "update", "patch", "delete"]
        );
        assert_eq!(
            roles[1].rules.as_ref().unwrap()[1]
                .resource_names
                .as_ref()
                .unwrap(),
            &vec!["acme".to_string()],
            "managers read the customer too"
        );
    }

    #[test]
    fn role_cluster_roles_aggregate_the_builtin_roles() {
        let roles = role_cluster_roles(&RoleNames::default());
        let manager = &roles[0];
        let selectors = manager
            .aggregation_rule
            .as_ref()
            .unwrap()
            .cluster_role_selectors
            .as_ref()
            .unwrap();
        assert!(
            selectors[0]
                .match_labels
                .as_ref()
                .unwrap()
                .contains_key("rbac.authorization.k8s.io/aggregate-to-admin")
        );
        assert_eq!(
            roles[3].metadata.labels.as_ref().unwrap()["tenancy.dev/aggregate-to-project-manager"],
            "true"
        );
    }

    #[test]
    fn a_binding_of_nobody_is_not_made_but_an_existing_one_is_kept_as_desired() {
        let binding = |subjects: Option<Vec<&str>>| ClusterRoleBinding {
            metadata: ObjectMeta {
                name: Some("tenancy:project:web".into()),
                ..Default::default()
            },
            role_ref: role_ref("tenancy:project:web"),
            subjects: subjects.map(|s| s.iter().map(|n| rbac_subject(&user(n))).collect()),
        };
        // (subjects, exists already, written)
        let cases = [
            (None, false, false),
            (Some(vec![]), false, false),
            (Some(vec!["alice"]), false, true),
            (Some(vec!["alice", "bob"]), false, true),
            (None, true, true),
            (Some(vec![]), true, true),
            (Some(vec!["alice"]), true, true),
        ];
        for (subjects, exists, written) in cases {
            let b = binding(subjects.clone());
            assert_eq!(
                binding_written(&b, exists),
                written,
                "subjects {subjects:?}, exists {exists}"
            );
        }
    }
}
