//! Property tests of the admission decisions (issue "crash-consistent under faults", part 4):
//! whatever the request and the caches hold, `decide_project`, `decide_membership` and
//! `decide_customer` never panic and never allow what DESIGN §4 (the module's doc and the
//! comments of the rules) forbids. Each oracle here is written independently of the code under
//! test: who is "named" as an owner or member is read off the generated data, not through
//! `is_owner`/`is_manager`.
//!
//! Deterministic: a fixed seed, ChaCha, a bounded number of cases, no failure files.

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};

use proptest::array::uniform2;
use proptest::prelude::*;
use proptest::sample::{Index, select};
use serde_json::{Value, json};

use super::*;
use crate::api::{CustomerSpec, ProjectSpec};
use crate::testing::check;

/// This file's fixed seed.
const SEED: u64 = 0x7e4a_0c01;

const NOW: &str = "2027-01-01T12:00:00Z";
const PAST: &str = "2026-06-01T00:00:00Z";
const FUTURE: &str = "2027-06-01T00:00:00Z";
const STAFF_GROUP: &str = "tenancy:staff";
const TRUSTED_USER: &str = "system:kube-controller-manager";

fn now() -> Timestamp {
    NOW.parse().unwrap()
}

/// The policy of these tests, spelled out so the oracle below does not read it through the code.
fn policy() -> Policy {
    Policy {
        staff_groups: vec![STAFF_GROUP.into()],
        trusted_users: vec![TRUSTED_USER.into()],
        ..Policy::default()
    }
}

fn staff(r: &Requester) -> bool {
    r.groups.iter().any(|g| g == STAFF_GROUP) || r.username == TRUSTED_USER
}

const USERS: &[&str] = &[
    "olga",
    "mia",
    "ned",
    "eve",
    "system:serviceaccount:web:bot",
    TRUSTED_USER,
];

fn requester() -> impl Strategy<Value = Requester> {
    (select(USERS), any::<bool>(), prop::bool::weighted(0.2)).prop_map(|(user, team, is_staff)| {
        let mut groups = vec!["system:authenticated".to_string()];
        if team {
            groups.push("team-a".into());
        }
        if is_staff {
            groups.push(STAFF_GROUP.into());
        }
        Requester {
            username: user.into(),
            groups,
        }
    })
}

/// Who a role holder or a membership names.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Who {
    User(&'static str),
    Group(&'static str),
    ServiceAccount(&'static str, &'static str),
}

const WHO: &[Who] = &[
    Who::User("olga"),
    Who::User("mia"),
    Who::User("ned"),
    Who::Group("team-a"),
    Who::ServiceAccount("web", "bot"),
    Who::ServiceAccount("ci", "runner"),
];

impl Who {
    /// Whether `r` is (or is in) this subject, read off the names (the oracle).
    fn names(self, r: &Requester) -> bool {
        match self {
            Who::User(u) => r.username == u,
            Who::Group(g) => r.groups.iter().any(|x| x == g),
            Who::ServiceAccount(ns, n) => r.username == format!("system:serviceaccount:{ns}:{n}"),
        }
    }

    fn json(self) -> Value {
        match self {
            Who::User(u) => json!({"kind": "User", "name": u}),
            Who::Group(g) => json!({"kind": "Group", "name": g}),
            Who::ServiceAccount(ns, n) => {
                json!({"kind": "ServiceAccount", "name": n, "namespace": ns})
            }
        }
    }
}

/// Whether `r` is (or is in) a subject, read off the names (the oracle).
fn subject_names(s: &crate::api::Subject, r: &Requester) -> bool {
    use crate::api::SubjectKind;
    match s.kind {
        SubjectKind::User => r.username == s.name,
        SubjectKind::Group => r.groups.contains(&s.name),
        SubjectKind::ServiceAccount => {
            r.username
                == format!(
                    "system:serviceaccount:{}:{}",
                    s.namespace.as_deref().unwrap_or_default(),
                    s.name
                )
        }
    }
}

/// Makes `r` the subject (a user or ServiceAccount by name, a group by membership), so that
/// requests by members, managers and invitees are drawn often.
fn become_subject(r: &mut Requester, w: Who) {
    match w {
        Who::User(u) => r.username = u.into(),
        Who::Group(g) => {
            if !r.groups.iter().any(|x| x == g) {
                r.groups.push(g.into());
            }
        }
        Who::ServiceAccount(ns, n) => r.username = format!("system:serviceaccount:{ns}:{n}"),
    }
}

fn expiry() -> impl Strategy<Value = Option<&'static str>> {
    select(vec![None, None, Some(PAST), Some(FUTURE)])
}

fn holders() -> impl Strategy<Value = Vec<(Who, Option<&'static str>)>> {
    prop::collection::vec((select(WHO), expiry()), 0..3)
}

fn holders_json(hs: &[(Who, Option<&'static str>)]) -> Value {
    Value::Array(
        hs.iter()
            .map(|(w, e)| {
                let mut v = w.json();
                if let Some(e) = e {
                    v["expirationTime"] = (*e).into();
                }
                v
            })
            .collect(),
    )
}

const QUOTA_KEYS: &[&str] = &[
    "requests.cpu",
    "cpu",
    "requests.memory",
    "pods",
    "count/pods",
    "limits.cpu",
    "foo",
];
/// Mostly valid amounts, some negative or not quantities at all.
const QUANTITIES: &[&str] = &[
    "1", "2", "500m", "1Gi", "10", "0", "4", "8Gi", "-1", "-2Gi", "abc", "", "1.5",
];

fn hard_map() -> impl Strategy<Value = BTreeMap<&'static str, &'static str>> {
    prop::collection::btree_map(select(QUOTA_KEYS), select(QUANTITIES), 0..4)
}

/// A customer of the world: its owners and the resources its quota limits.
#[derive(Clone, Debug)]
struct CustomerDesc {
    owners: Vec<(Who, Option<&'static str>)>,
    hard: Option<BTreeMap<&'static str, &'static str>>,
}

fn customer_desc() -> impl Strategy<Value = CustomerDesc> {
    (
        holders(),
        prop::option::weighted(
            0.3,
            hard_map().prop_map(|m| {
                // A customer limits only valid amounts (its own admission checks them).
                m.into_iter()
                    .filter(|(k, v)| {
                        *k != "foo"
                            && crate::desired::quantity::Milli::parse(v).is_ok_and(|q| q.0 >= 0)
                    })
                    .collect()
            }),
        ),
    )
        .prop_map(|(owners, hard)| CustomerDesc { owners, hard })
}

fn customer_of(name: &str, d: &CustomerDesc) -> Customer {
    let mut spec = json!({"owners": holders_json(&d.owners)});
    if let Some(h) = &d.hard {
        spec["quota"] = json!({"hard": h});
    }
    let mut c = Customer::new(name, serde_json::from_value::<CustomerSpec>(spec).unwrap());
    c.metadata.uid = Some(format!("uid-{name}"));
    c
}

const CUSTOMERS: &[&str] = &["acme", "globex", "gone"];

/// The spec fields the rules look at, each `None` (absent) or a JSON value. Index 0 is the
/// customer (always set).
const FIELDS: &[&str] = &[
    "customer",
    "quota",
    "staffNotes",
    "gracePeriodDays",
    "maxServiceAccounts",
    "credit",
    "creditExhaustedPolicy",
    "recovery",
    "checklistReview",
    "endDate",
    "displayName",
];

fn spec_fields() -> impl Strategy<Value = Vec<Option<Value>>> {
    let opt = |s: BoxedStrategy<Value>| prop::option::weighted(0.3, s).boxed();
    (
        select(CUSTOMERS).prop_map(|c| Some(Value::from(c))),
        opt(hard_map().prop_map(|m| json!({ "hard": m })).boxed()),
        opt(select(vec!["", "note", "other note"])
            .prop_map(Value::from)
            .boxed()),
        opt(select(vec![0, 7, 30, -1]).prop_map(Value::from).boxed()),
        opt(select(vec![0, 5]).prop_map(Value::from).boxed()),
        opt(select(vec![0.0, 10.0, 12.5, -1.0])
            .prop_map(Value::from)
            .boxed()),
        opt(select(vec!["None", "Notify", "Suspend"])
            .prop_map(Value::from)
            .boxed()),
        opt((
            prop::option::of(any::<bool>()),
            prop::option::of(any::<bool>()),
        )
            .prop_map(|(restore, invite)| {
                let mut v = json!({});
                if let Some(r) = restore {
                    v["restoreTeamMembers"] = r.into();
                }
                if let Some(i) = invite {
                    v["sendInvitationsToPreviousMembers"] = i.into();
                }
                v
            })
            .boxed()),
        opt(select(vec!["Approved", "Rejected"])
            .prop_map(|d| json!({"decision": d}))
            .boxed()),
        opt(select(vec!["2027-02-01", "2027-12-31"])
            .prop_map(Value::from)
            .boxed()),
        opt(select(vec!["Web", "The web"]).prop_map(Value::from).boxed()),
    )
        .prop_map(|(a, b, c, d, e, f, g, h, i, j, k)| vec![a, b, c, d, e, f, g, h, i, j, k])
}

/// The metadata the rules look at: finalizers, an owner reference, the adopt and incarnation
/// annotations.
#[derive(Clone, Debug, PartialEq)]
struct MetaDesc {
    finalizers: Option<Vec<&'static str>>,
    owner_ref: bool,
    adopt: Option<&'static str>,
    incarnation: Option<&'static str>,
}

fn meta_desc() -> impl Strategy<Value = MetaDesc> {
    (
        prop::option::of(prop::collection::vec(
            select(vec![SOFT_DELETE_FINALIZER, "example.com/keep"]),
            0..3,
        )),
        prop::bool::weighted(0.15),
        prop::option::weighted(0.15, select(vec!["true", "false"])),
        prop::option::weighted(0.5, select(vec!["inc-a", "inc-b"])),
    )
        .prop_map(|(finalizers, owner_ref, adopt, incarnation)| MetaDesc {
            finalizers,
            owner_ref,
            adopt,
            incarnation,
        })
}

fn project_of(name: &str, fields: &[Option<Value>], meta: &MetaDesc) -> Project {
    let mut spec = json!({});
    for (k, v) in FIELDS.iter().zip(fields) {
        if let Some(v) = v {
            spec[*k] = v.clone();
        }
    }
    let mut p = Project::new(name, serde_json::from_value::<ProjectSpec>(spec).unwrap());
    p.metadata.uid = Some("u".into());
    p.metadata.finalizers = meta
        .finalizers
        .as_ref()
        .map(|f| f.iter().map(|s| s.to_string()).collect());
    if meta.owner_ref {
        p.metadata.owner_references = Some(vec![
            k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
                api_version: "v1".into(),
                kind: "ConfigMap".into(),
                name: "anchor".into(),
                uid: "uid-anchor".into(),
                ..Default::default()
            },
        ]);
    }
    if let Some(a) = meta.adopt {
        p.annotations_mut()
            .insert(annotations::ADOPT_NAMESPACE.into(), a.into());
    }
    if let Some(i) = meta.incarnation {
        p.annotations_mut()
            .insert(annotations::INCARNATION.into(), i.into());
    }
    p
}

/// A membership of the snapshot: its subject, role, expiry and phase.
#[derive(Clone, Debug)]
struct MemberDesc {
    who: Who,
    role: ProjectRole,
    expires: Option<&'static str>,
    phase: Option<MembershipPhase>,
}

fn member_desc() -> impl Strategy<Value = MemberDesc> {
    (
        select(WHO),
        select(vec![
            ProjectRole::Manager,
            ProjectRole::Manager,
            ProjectRole::Administrator,
            ProjectRole::Member,
        ]),
        expiry(),
        select(vec![
            None,
            None,
            Some(MembershipPhase::Active),
            Some(MembershipPhase::Pending),
            Some(MembershipPhase::Pending),
            Some(MembershipPhase::Revoked),
            Some(MembershipPhase::Expired),
        ]),
    )
        .prop_map(|(who, role, expires, phase)| MemberDesc {
            who,
            role,
            expires,
            phase,
        })
}

fn membership_of(name: &str, i: usize, d: &MemberDesc) -> ProjectMembership {
    let mut v = json!({
        "apiVersion": "tenancy.dev/v1alpha1", "kind": "ProjectMembership",
        "metadata": {"name": name, "namespace": "web", "uid": format!("uid-{name}"),
            "creationTimestamp": format!("2026-01-0{}T00:00:00Z", 1 + i % 9)},
        "spec": {"subject": d.who.json(), "role": d.role.as_str()},
    });
    if let Some(e) = d.expires {
        v["spec"]["expirationTime"] = e.into();
    }
    if let Some(p) = d.phase {
        v["status"] = json!({ "phase": p });
    }
    serde_json::from_value(v).unwrap()
}

fn verdict_code(v: &Verdict) -> u16 {
    match v {
        Verdict::Allow => 200,
        Verdict::Deny { code, .. } => *code,
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Op {
    Create,
    Update,
    Delete,
}

impl Op {
    fn operation(self) -> Operation {
        match self {
            Op::Create => Operation::Create,
            Op::Update => Operation::Update,
            Op::Delete => Operation::Delete,
        }
    }
}

/// One request on a Project and what the caches hold.
#[derive(Clone, Debug)]
struct ProjectCase {
    op: Op,
    requester: Requester,
    create_name: &'static str,
    old: Vec<Option<Value>>,
    alt: Vec<Option<Value>>,
    /// Per field: the new object takes the `alt` value (else the old one).
    changed: Vec<bool>,
    old_meta: MetaDesc,
    alt_meta: MetaDesc,
    meta_changed: bool,
    customers: Vec<Option<CustomerDesc>>,
    members: Vec<MemberDesc>,
    archive_of: Option<&'static str>,
    namespace_not_owned: bool,
    web_is_project: bool,
    active_resources: bool,
}

fn project_case() -> impl Strategy<Value = ProjectCase> {
    (
        (
            select(vec![Op::Create, Op::Update, Op::Update, Op::Delete]),
            requester(),
            select(vec!["web", "web", "web", "default", "kube-system"]),
            spec_fields(),
            spec_fields(),
            prop::collection::vec(prop::bool::weighted(0.1), FIELDS.len()),
            // Who asks: anyone (0), one of the members (1), one of the customer's owners (2).
            (select(vec![0u8, 1, 1, 2]), any::<Index>()),
        ),
        (
            meta_desc(),
            meta_desc(),
            prop::bool::weighted(0.2),
            prop::collection::vec(prop::option::weighted(0.8, customer_desc()), 2),
            prop::collection::vec(member_desc(), 0..4),
            prop::option::weighted(0.15, select(CUSTOMERS)),
            prop::bool::weighted(0.1),
            any::<bool>(),
            prop::bool::weighted(0.1),
        ),
    )
        .prop_map(
            |(
                (op, mut requester, create_name, old, alt, changed, (asker, pick)),
                (
                    old_meta,
                    alt_meta,
                    meta_changed,
                    customers,
                    members,
                    archive_of,
                    namespace_not_owned,
                    web_is_project,
                    active_resources,
                ),
            )| {
                let named = if op == Op::Create { &alt[0] } else { &old[0] };
                let owners = CUSTOMERS
                    .iter()
                    .position(|c| named.as_ref().and_then(Value::as_str) == Some(*c))
                    .and_then(|i| customers.get(i).cloned().flatten())
                    .map(|d| d.owners)
                    .unwrap_or_default();
                match asker {
                    1 if !members.is_empty() => {
                        become_subject(&mut requester, members[pick.index(members.len())].who)
                    }
                    2 if !owners.is_empty() => {
                        become_subject(&mut requester, owners[pick.index(owners.len())].0)
                    }
                    _ => {}
                }
                ProjectCase {
                    op,
                    requester,
                    create_name,
                    old,
                    alt,
                    changed,
                    old_meta,
                    alt_meta,
                    meta_changed,
                    customers,
                    members,
                    archive_of,
                    namespace_not_owned,
                    web_is_project,
                    active_resources,
                }
            },
        )
}

/// The customers of the world by name ("gone" never exists).
fn world_customer(c: &ProjectCase, name: &str) -> Option<(Customer, CustomerDesc)> {
    let i = CUSTOMERS.iter().position(|n| *n == name)?;
    let d = c.customers.get(i)?.clone()?;
    Some((customer_of(name, &d), d))
}

/// What the project property saw: counts showing the generator reaches the cases the rules are
/// about.
#[derive(Default)]
struct Seen {
    allowed_non_staff: Cell<u32>,
    allowed_manager_update: Cell<u32>,
    denied_staff_only: Cell<u32>,
    denied_move: Cell<u32>,
    denied_credit: Cell<u32>,
}

/// Runs one case through `decide_project`; returns the request and the verdict.
fn decide(c: &ProjectCase) -> (Option<Project>, Option<Project>, Verdict) {
    let pick = |i: usize| {
        if c.changed[i] {
            c.alt[i].clone()
        } else {
            c.old[i].clone()
        }
    };
    let new_fields: Vec<Option<Value>> = (0..FIELDS.len()).map(pick).collect();
    let new_meta = if c.meta_changed {
        &c.alt_meta
    } else {
        &c.old_meta
    };
    let (old, new) = match c.op {
        Op::Create => (None, Some(project_of(c.create_name, &c.alt, &c.alt_meta))),
        Op::Update => (
            Some(project_of("web", &c.old, &c.old_meta)),
            Some(project_of("web", &new_fields, new_meta)),
        ),
        Op::Delete => (Some(project_of("web", &c.old, &c.old_meta)), None),
    };
    let named = new.as_ref().or(old.as_ref()).unwrap().spec.customer.clone();
    let memberships: Vec<ProjectMembership> = c
        .members
        .iter()
        .enumerate()
        .map(|(i, d)| membership_of(&format!("m{i}"), i, d))
        .collect();
    let archive = c.archive_of.map(|a| {
        let mut archive = Archive::new(
            serde_json::from_value(json!({ "customer": a })).unwrap(),
            "2026-12-01T00:00:00Z".parse().unwrap(),
            &[],
        );
        archive.customer = a.to_string();
        archive
    });
    let mut contents = NamespaceContents::default();
    if c.active_resources {
        contents.counts.insert("pods".into(), 2);
    }
    let snap = ProjectSnapshot {
        customer: world_customer(c, &named).map(|(c, _)| c),
        memberships,
        contents,
        archive,
        namespace_not_owned: c.namespace_not_owned,
        project_namespaces: if c.web_is_project {
            BTreeSet::from(["web".to_string()])
        } else {
            BTreeSet::new()
        },
        checklist: None,
    };
    let v = decide_project(
        &c.op.operation(),
        &c.requester,
        old.as_ref(),
        new.as_ref(),
        &snap,
        &policy(),
        now(),
    );
    (old, new, v)
}

fn restore(p: &Project) -> bool {
    p.spec
        .recovery
        .as_ref()
        .and_then(|r| r.restore_team_members)
        .unwrap_or(false)
}

/// Staff-only fields (DESIGN §4, `staff_only_changes`): on a create, any of them set; on an
/// update, any of them changed; `recovery.restoreTeamMembers` turned on.
fn staff_only_touched(old: Option<&Project>, new: &Project) -> Vec<&'static str> {
    let n = &new.spec;
    let mut out = Vec::new();
    match old.map(|o| &o.spec) {
        None => {
            if n.staff_notes.is_some() {
                out.push("staffNotes");
            }
            if n.grace_period_days.is_some() {
                out.push("gracePeriodDays");
            }
            if n.max_service_accounts.is_some() {
                out.push("maxServiceAccounts");
            }
            if n.checklist_review.is_some() {
                out.push("checklistReview");
            }
        }
        Some(o) => {
            if o.staff_notes != n.staff_notes {
                out.push("staffNotes");
            }
            if o.grace_period_days != n.grace_period_days {
                out.push("gracePeriodDays");
            }
            if o.max_service_accounts != n.max_service_accounts {
                out.push("maxServiceAccounts");
            }
            if o.checklist_review != n.checklist_review {
                out.push("checklistReview");
            }
        }
    }
    if restore(new) && !old.is_some_and(restore) {
        out.push("recovery.restoreTeamMembers");
    }
    out
}

/// `decide_project` never panics, answers only 200/403/409/422, and never allows what the
/// rules forbid:
/// - a requester with no role at all (not staff, named by no owner of the customer and by no
///   membership) is never allowed to create, change or delete a project;
/// - only staff and (named) owners of the customer create or delete projects;
/// - a non-staff requester never moves a project (a change of spec.customer, or a create that
///   recovers an archive of another customer) and never sets or changes a staff-only field
///   (staffNotes, gracePeriodDays, maxServiceAccounts, checklistReview; turning on
///   recovery.restoreTeamMembers);
/// - a requester who is neither staff nor a named owner never changes spec.credit or
///   spec.creditExhaustedPolicy;
/// - a non-staff requester never sets or changes owner references, removes a finalizer, adds one
///   other than the soft-delete finalizer, sets/changes the adopt-namespace annotation, or
///   changes or drops the incarnation a project has;
/// - a reserved name is never created, not even by staff.
#[test]
fn decide_project_never_allows_what_the_rules_forbid() {
    let seen = Seen::default();
    check(SEED, 1024, project_case(), |c| {
        let (old, new, v) = decide(&c);
        prop_assert!(
            [200, 403, 409, 422].contains(&verdict_code(&v)),
            "unexpected code: {v:?}"
        );
        let allowed = v.is_allowed();
        let r = &c.requester;
        let is_staff = staff(r);
        let customer_name = new.as_ref().or(old.as_ref()).unwrap().spec.customer.clone();
        let owner = world_customer(&c, &customer_name)
            .is_some_and(|(_, d)| d.owners.iter().any(|(w, _)| w.names(r)));
        let member = c.members.iter().any(|m| m.who.names(r));
        if !is_staff && allowed {
            seen.allowed_non_staff.set(seen.allowed_non_staff.get() + 1);
        }
        if !is_staff && !owner && allowed && c.op == Op::Update {
            seen.allowed_manager_update
                .set(seen.allowed_manager_update.get() + 1);
        }

        if !is_staff && !owner && !member {
            prop_assert!(!allowed, "no role at all, yet allowed: {v:?}");
        }
        if matches!(c.op, Op::Create | Op::Delete) && !is_staff && !owner {
            prop_assert!(!allowed, "{:?} by neither staff nor an owner", c.op);
        }
        if c.op == Op::Create && policy().reserved(c.create_name).is_some() {
            prop_assert!(!allowed, "reserved name {} created", c.create_name);
        }
        let Some(new) = new else {
            return Ok(());
        };
        if is_staff {
            return Ok(());
        }
        let old = old.as_ref();
        // Moves.
        let moved_from = match c.op {
            Op::Update => old.map(|o| o.spec.customer.clone()),
            _ => c.archive_of.map(str::to_string),
        }
        .filter(|from| *from != new.spec.customer);
        if moved_from.is_some() {
            if !allowed {
                seen.denied_move.set(seen.denied_move.get() + 1);
            }
            prop_assert!(!allowed, "a move from {moved_from:?} by non-staff allowed");
        }
        // Staff-only fields.
        let touched = staff_only_touched(old, &new);
        if !touched.is_empty() {
            if !allowed {
                seen.denied_staff_only.set(seen.denied_staff_only.get() + 1);
            }
            prop_assert!(!allowed, "non-staff set staff-only {touched:?}");
        }
        // Credit.
        if let Some(o) = old
            && (o.spec.credit != new.spec.credit
                || o.spec.credit_exhausted_policy != new.spec.credit_exhausted_policy)
            && !owner
        {
            if !allowed {
                seen.denied_credit.set(seen.denied_credit.get() + 1);
            }
            prop_assert!(!allowed, "credit changed by neither staff nor an owner");
        }
        // Protected metadata and the adopt annotation.
        if allowed {
            let refs = |p: Option<&Project>| {
                p.and_then(|p| p.metadata.owner_references.clone())
                    .unwrap_or_default()
            };
            prop_assert_eq!(refs(old), refs(Some(&new)), "owner references changed");
            let fins = |p: Option<&Project>| -> BTreeSet<String> {
                p.and_then(|p| p.metadata.finalizers.clone())
                    .unwrap_or_default()
                    .into_iter()
                    .collect()
            };
            let (before, after) = (fins(old), fins(Some(&new)));
            prop_assert!(before.is_subset(&after), "a finalizer removed");
            prop_assert!(
                after
                    .difference(&before)
                    .all(|f| f == SOFT_DELETE_FINALIZER),
                "a foreign finalizer added"
            );
            let adopt = |p: Option<&Project>| {
                p.and_then(|p| p.annotations().get(annotations::ADOPT_NAMESPACE).cloned())
            };
            prop_assert_eq!(adopt(old), adopt(Some(&new)), "adopt annotation changed");
            let incarnation = |p: &Project| p.annotations().get(annotations::INCARNATION).cloned();
            if let Some(was) = old.and_then(incarnation) {
                prop_assert_eq!(Some(was), incarnation(&new), "incarnation changed");
            }
        }
        Ok(())
    });
    // The generator reaches what the rules are about (else the properties above are vacuous).
    for (what, n) in [
        ("allowed non-staff requests", seen.allowed_non_staff.get()),
        (
            "allowed updates by managers",
            seen.allowed_manager_update.get(),
        ),
        ("refused staff-only fields", seen.denied_staff_only.get()),
        ("refused moves", seen.denied_move.get()),
        ("refused credit changes", seen.denied_credit.get()),
    ] {
        assert!(n > 0, "the generator never produced {what}");
    }
}

/// One request on a ProjectMembership and what the caches hold.
#[derive(Clone, Debug)]
struct MembershipCase {
    op: Op,
    requester: Requester,
    members: Vec<MemberDesc>,
    /// Update and delete: which of `members` the request is about.
    target: Index,
    /// Create: the new membership; update: the values it changes to.
    fresh: MemberDesc,
    change_subject: bool,
    change_role: bool,
    change_expiry: bool,
    accept: Option<&'static str>,
    add_finalizer: bool,
    owners: Vec<(Who, Option<&'static str>)>,
    no_project: bool,
    conflict: bool,
    namespace_not_owned: bool,
    web_is_project: bool,
}

fn membership_case() -> impl Strategy<Value = MembershipCase> {
    (
        (
            select(vec![Op::Create, Op::Update, Op::Update, Op::Delete]),
            requester(),
            prop::collection::vec(member_desc(), 1..5),
            any::<Index>(),
            member_desc(),
            prop::bool::weighted(0.15),
            prop::bool::weighted(0.25),
            prop::bool::weighted(0.15),
            prop::bool::weighted(0.5),
        ),
        (
            prop::option::weighted(0.6, select(vec!["true", "true", "false"])),
            prop::bool::weighted(0.1),
            holders(),
            prop::bool::weighted(0.05),
            prop::bool::weighted(0.05),
            prop::bool::weighted(0.1),
            any::<bool>(),
        ),
    )
        .prop_map(
            |(
                (
                    op,
                    mut requester,
                    members,
                    target,
                    fresh,
                    change_subject,
                    change_role,
                    change_expiry,
                    as_target,
                ),
                (
                    accept,
                    add_finalizer,
                    owners,
                    no_project,
                    conflict,
                    namespace_not_owned,
                    web_is_project,
                ),
            )| {
                if as_target {
                    become_subject(&mut requester, members[target.index(members.len())].who);
                }
                MembershipCase {
                    op,
                    requester,
                    members,
                    target,
                    fresh,
                    change_subject,
                    change_role,
                    change_expiry,
                    accept,
                    add_finalizer,
                    owners,
                    no_project,
                    conflict,
                    namespace_not_owned,
                    web_is_project,
                }
            },
        )
}

/// `decide_membership` never panics and never allows what the rules forbid. For a requester
/// who is neither staff nor a (named) owner of the customer:
/// - with no role at all (named by no membership, the one asked about included) nothing is
///   allowed;
/// - nobody changes, creates or deletes a membership naming themselves, except that the subject
///   of a Pending invitation may accept it: an update that changes nothing of the spec, from a
///   Pending membership, setting `tenancy.dev/accept: "true"`;
/// - no Manager membership is created, changed (to or from Manager) or deleted, except by that
///   same acceptance.
///
/// For everyone, staff included: no membership is created or changed where no project is, and
/// none is created in a project in phase Conflict.
#[test]
fn decide_membership_never_allows_what_the_rules_forbid() {
    let by_managers = Cell::new(0u32);
    let acceptances = Cell::new(0u32);
    check(SEED, 1024, membership_case(), |c| {
        let memberships: Vec<ProjectMembership> = c
            .members
            .iter()
            .enumerate()
            .map(|(i, d)| membership_of(&format!("m{i}"), i, d))
            .collect();
        let t = c.target.index(memberships.len());
        let (old, new) = match c.op {
            Op::Create => (None, Some(membership_of("fresh", 9, &c.fresh))),
            Op::Delete => (Some(memberships[t].clone()), None),
            Op::Update => {
                let old = memberships[t].clone();
                let mut new = old.clone();
                let fresh = membership_of("fresh", 9, &c.fresh);
                if c.change_subject {
                    new.spec.subject = fresh.spec.subject.clone();
                }
                if c.change_role {
                    new.spec.role = fresh.spec.role;
                }
                if c.change_expiry {
                    new.spec.expiration_time = fresh.spec.expiration_time.clone();
                }
                if let Some(a) = c.accept {
                    new.annotations_mut()
                        .insert(annotations::ACCEPT.into(), a.into());
                }
                if c.add_finalizer {
                    new.metadata.finalizers = Some(vec!["example.com/keep".into()]);
                }
                (Some(old), Some(new))
            }
        };
        let mut project: Option<Project> = (!c.no_project).then(|| {
            Project::new(
                "web",
                serde_json::from_value(json!({"customer": "acme"})).unwrap(),
            )
        });
        if c.conflict
            && let Some(p) = project.as_mut()
        {
            p.status = Some(serde_json::from_value(json!({"phase": "Conflict"})).unwrap());
        }
        let customer = customer_of(
            "acme",
            &CustomerDesc {
                owners: c.owners.clone(),
                hard: None,
            },
        );
        let snap = MembershipSnapshot {
            project,
            customer: Some(customer),
            memberships,
            namespace_not_owned: c.namespace_not_owned,
            project_namespaces: if c.web_is_project {
                BTreeSet::from(["web".to_string()])
            } else {
                BTreeSet::new()
            },
        };
        let v = decide_membership(
            &c.op.operation(),
            &c.requester,
            old.as_ref(),
            new.as_ref(),
            &snap,
            &policy(),
            now(),
        );
        prop_assert!(
            [200, 403, 409, 422].contains(&verdict_code(&v)),
            "unexpected code: {v:?}"
        );
        let allowed = v.is_allowed();
        let r = &c.requester;
        if c.op != Op::Delete && c.no_project {
            prop_assert!(!allowed, "a membership where no project is");
        }
        if c.op == Op::Create && c.conflict && !c.no_project {
            prop_assert!(!allowed, "a membership created in a project in Conflict");
        }
        if staff(r) {
            return Ok(());
        }
        let owner = c.owners.iter().any(|(w, _)| w.names(r));
        if owner {
            return Ok(());
        }
        let names_r = |m: &ProjectMembership| subject_names(&m.spec.subject, r);
        let member =
            c.members.iter().any(|m| m.who.names(r)) || old.iter().chain(new.iter()).any(names_r);
        if !member {
            prop_assert!(!allowed, "no role at all, yet allowed: {v:?}");
        }
        let acceptance = match (&old, &new) {
            (Some(o), Some(n)) => {
                c.op == Op::Update
                    && names_r(n)
                    && o.spec == n.spec
                    && o.status.as_ref().and_then(|s| s.phase) == Some(MembershipPhase::Pending)
                    && n.annotations().get(annotations::ACCEPT).map(String::as_str) == Some("true")
            }
            _ => false,
        };
        if allowed && acceptance {
            acceptances.set(acceptances.get() + 1);
        }
        if allowed && !acceptance {
            by_managers.set(by_managers.get() + 1);
        }
        if old.iter().chain(new.iter()).any(names_r) {
            prop_assert!(
                !allowed || acceptance,
                "their own membership changed: {:?} {:?} → {:?}",
                c.op,
                old.as_ref().map(|m| &m.spec),
                new.as_ref().map(|m| &m.spec)
            );
        }
        if old
            .iter()
            .chain(new.iter())
            .any(|m| m.spec.role == ProjectRole::Manager)
        {
            prop_assert!(
                !allowed || acceptance,
                "a Manager membership {:?} by a non-owner",
                c.op
            );
        }
        Ok(())
    });
    // The generator reaches what the rules are about.
    assert!(
        acceptances.get() > 0,
        "the generator never accepted an invitation"
    );
    assert!(
        by_managers.get() > 0,
        "the generator never had a manager change a membership"
    );
}

/// A Customer request: old and new specs drawn from small pools.
#[derive(Clone, Debug)]
struct CustomerCase {
    op: Op,
    requester: Requester,
    owners: Vec<(Who, Option<&'static str>)>,
    new_owners: Vec<(Who, Option<&'static str>)>,
    owners_changed: bool,
    display: [Option<&'static str>; 2],
    quota: [Option<BTreeMap<&'static str, &'static str>>; 2],
    grace: [Option<i32>; 2],
    billing: [Option<bool>; 2],
    credit: [Option<f64>; 2],
}

fn customer_case() -> impl Strategy<Value = CustomerCase> {
    (
        select(vec![Op::Create, Op::Update, Op::Update, Op::Delete]),
        requester(),
        holders(),
        holders(),
        prop::bool::weighted(0.3),
        uniform2(prop::option::of(select(vec!["Acme", "ACME Inc."]))),
        uniform2(prop::option::weighted(0.3, hard_map())),
        uniform2(prop::option::of(select(vec![0, 30]))),
        uniform2(prop::option::of(any::<bool>())),
        uniform2(prop::option::of(select(vec![0.0, 100.0]))),
    )
        .prop_map(
            |(
                op,
                requester,
                owners,
                new_owners,
                owners_changed,
                display,
                quota,
                grace,
                billing,
                credit,
            )| {
                CustomerCase {
                    op,
                    requester,
                    owners,
                    new_owners,
                    owners_changed,
                    display,
                    quota,
                    grace,
                    billing,
                    credit,
                }
            },
        )
}

fn customer_spec(c: &CustomerCase, i: usize) -> Customer {
    let owners = if i == 1 && c.owners_changed {
        &c.new_owners
    } else {
        &c.owners
    };
    let mut spec = json!({"owners": holders_json(owners)});
    if let Some(d) = c.display[i] {
        spec["displayName"] = d.into();
    }
    if let Some(q) = &c.quota[i] {
        spec["quota"] = json!({ "hard": q });
    }
    if let Some(g) = c.grace[i] {
        spec["gracePeriodDays"] = g.into();
    }
    if let Some(b) = c.billing[i] {
        spec["displayBillingInfoInProjects"] = b.into();
    }
    if let Some(x) = c.credit[i] {
        spec["credit"] = x.into();
    }
    Customer::new(
        "acme",
        serde_json::from_value::<CustomerSpec>(spec).unwrap(),
    )
}

/// `decide_customer` never panics, and customers are staff business: a non-staff requester
/// never creates or deletes one, and changes one only as a (named) owner of it and only in its
/// display fields (displayName, nativeName, abbreviation, displayBillingInfoInProjects).
#[test]
fn decide_customer_leaves_all_but_display_fields_to_staff() {
    check(SEED, 256, customer_case(), |c| {
        let old = customer_spec(&c, 0);
        let new = customer_spec(&c, 1);
        let (o, n) = match c.op {
            Op::Create => (None, Some(&new)),
            Op::Update => (Some(&old), Some(&new)),
            Op::Delete => (Some(&old), None),
        };
        let v = decide_customer(
            &c.op.operation(),
            &c.requester,
            o,
            n,
            &CustomerSnapshot::default(),
            &policy(),
            now(),
        );
        prop_assert!(
            [200, 403, 409, 422].contains(&verdict_code(&v)),
            "unexpected code: {v:?}"
        );
        if staff(&c.requester) || !v.is_allowed() {
            return Ok(());
        }
        prop_assert_eq!(c.op, Op::Update, "non-staff created or deleted a customer");
        prop_assert!(
            c.owners.iter().any(|(w, _)| w.names(&c.requester)),
            "a non-owner changed a customer"
        );
        let strip = |c: &Customer| {
            let mut s = c.spec.clone();
            s.display_name = None;
            s.native_name = None;
            s.abbreviation = None;
            s.display_billing_info_in_projects = None;
            s
        };
        prop_assert_eq!(
            strip(&old),
            strip(&new),
            "an owner changed more than display fields"
        );
        Ok(())
    });
}
