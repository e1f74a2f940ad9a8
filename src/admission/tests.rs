use super::*;
use crate::api::{CustomerSpec, ProjectMembershipSpec, ProjectSpec};

const NOW: &str = "2027-01-01T12:00:00Z";

fn now() -> Timestamp {
    NOW.parse().unwrap()
}

fn user(name: &str) -> Requester {
    Requester {
        username: name.into(),
        groups: vec!["system:authenticated".into()],
    }
}

fn staff() -> Requester {
    Requester {
        username: "sam".into(),
        groups: vec!["tenancy:staff".into()],
    }
}

fn customer(name: &str, owners: &[&str]) -> Customer {
    let owners: Vec<_> = owners
        .iter()
        .map(|o| serde_json::json!({"kind": "User", "name": o}))
        .collect();
    let spec: CustomerSpec = serde_json::from_value(serde_json::json!({"owners": owners})).unwrap();
    Customer::new(name, spec)
}

fn project(name: &str, spec: serde_json::Value) -> Project {
    let mut p = Project::new(name, serde_json::from_value::<ProjectSpec>(spec).unwrap());
    p.metadata.uid = Some("u".into());
    p
}

fn membership(name: &str, who: &str, role: ProjectRole) -> ProjectMembership {
    let mut m = ProjectMembership::new(
        name,
        ProjectMembershipSpec {
            subject: Subject {
                kind: SubjectKind::User,
                name: who.into(),
                namespace: None,
            },
            role,
            expiration_time: None,
        },
    );
    m.metadata.namespace = Some("web".into());
    m.metadata.creation_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        "2026-01-01T00:00:00Z".parse().unwrap(),
    ));
    m
}

fn psnap(owners: &[&str], members: Vec<ProjectMembership>) -> ProjectSnapshot {
    ProjectSnapshot {
        customer: Some(customer("acme", owners)),
        memberships: members,
        ..Default::default()
    }
}

fn code(v: &Verdict) -> u16 {
    match v {
        Verdict::Allow => 200,
        Verdict::Deny { code, .. } => *code,
    }
}

fn message(v: &Verdict) -> String {
    match v {
        Verdict::Allow => String::new(),
        Verdict::Deny { message, .. } => message.clone(),
    }
}

#[test]
fn owners_create_projects_of_their_own_customer_only() {
    let p = project("web", serde_json::json!({"customer": "acme"}));
    let pol = Policy::default();
    assert!(
        decide_project(
            &Operation::Create,
            &user("olga"),
            None,
            Some(&p),
            &psnap(&["olga"], vec![]),
            &pol,
            now()
        )
        .is_allowed()
    );
    let v = decide_project(
        &Operation::Create,
        &user("mallory"),
        None,
        Some(&p),
        &psnap(&["olga"], vec![]),
        &pol,
        now(),
    );
    assert_eq!(code(&v), 403);
    assert!(
        message(&v).contains("only its owners and staff"),
        "{}",
        message(&v)
    );
}

#[test]
fn a_project_for_a_missing_customer_is_invalid() {
    let p = project("web", serde_json::json!({"customer": "nope"}));
    let v = decide_project(
        &Operation::Create,
        &staff(),
        None,
        Some(&p),
        &ProjectSnapshot::default(),
        &Policy::default(),
        now(),
    );
    assert_eq!(code(&v), 422);
    assert!(message(&v).starts_with("spec.customer"));
}

#[test]
fn a_project_whose_customer_was_deleted_can_still_be_changed_but_not_moved_to_a_missing_one() {
    let old = project("web", serde_json::json!({"customer": "gone"}));
    let mut new = old.clone();
    new.metadata.finalizers = Some(vec![]);
    let gone = ProjectSnapshot::default();
    let v = decide_project(
        &Operation::Update,
        &staff(),
        Some(&old),
        Some(&new),
        &gone,
        &Policy::default(),
        now(),
    );
    assert_eq!(code(&v), 200, "{}", message(&v));
    new.spec.customer = "nope".into();
    let v = decide_project(
        &Operation::Update,
        &staff(),
        Some(&old),
        Some(&new),
        &gone,
        &Policy::default(),
        now(),
    );
    assert_eq!(code(&v), 422);
}

#[test]
fn only_staff_move_projects() {
    let old = project("web", serde_json::json!({"customer": "acme"}));
    let new = project("web", serde_json::json!({"customer": "other"}));
    let snap = ProjectSnapshot {
        customer: Some(customer("other", &["olga"])),
        ..Default::default()
    };
    let v = decide_project(
        &Operation::Update,
        &user("olga"),
        Some(&old),
        Some(&new),
        &snap,
        &Policy::default(),
        now(),
    );
    assert_eq!(code(&v), 403);
    assert!(message(&v).contains("staff-only"));
    assert!(
        decide_project(
            &Operation::Update,
            &staff(),
            Some(&old),
            Some(&new),
            &snap,
            &Policy::default(),
            now()
        )
        .is_allowed()
    );
}

#[test]
fn staff_only_fields_are_named_when_refused() {
    let old = project("web", serde_json::json!({"customer": "acme"}));
    for (field, spec) in [
        (
            "spec.staffNotes",
            serde_json::json!({"customer": "acme", "staffNotes": "x"}),
        ),
        (
            "spec.gracePeriodDays",
            serde_json::json!({"customer": "acme", "gracePeriodDays": 3}),
        ),
        (
            "spec.maxServiceAccounts",
            serde_json::json!({"customer": "acme", "maxServiceAccounts": 3}),
        ),
        (
            "spec.recovery.restoreTeamMembers",
            serde_json::json!({"customer": "acme", "recovery": {"restoreTeamMembers": true}}),
        ),
    ] {
        let new = project("web", spec);
        let v = decide_project(
            &Operation::Update,
            &user("olga"),
            Some(&old),
            Some(&new),
            &psnap(&["olga"], vec![]),
            &Policy::default(),
            now(),
        );
        assert_eq!(code(&v), 403, "{field}");
        assert!(message(&v).contains(field), "{field}: {}", message(&v));
    }
}

#[test]
fn managers_change_ordinary_fields_members_do_not() {
    let old = project("web", serde_json::json!({"customer": "acme"}));
    let new = project(
        "web",
        serde_json::json!({"customer": "acme", "description": "new"}),
    );
    let team = vec![
        membership("m", "mia", ProjectRole::Manager),
        membership("n", "ned", ProjectRole::Member),
    ];
    let snap = psnap(&["olga"], team);
    assert!(
        decide_project(
            &Operation::Update,
            &user("mia"),
            Some(&old),
            Some(&new),
            &snap,
            &Policy::default(),
            now()
        )
        .is_allowed()
    );
    assert_eq!(
        code(&decide_project(
            &Operation::Update,
            &user("ned"),
            Some(&old),
            Some(&new),
            &snap,
            &Policy::default(),
            now()
        )),
        403
    );
}

#[test]
fn delete_is_refused_with_409_while_resources_are_active() {
    let p = project("web", serde_json::json!({"customer": "acme"}));
    let mut snap = psnap(&["olga"], vec![]);
    snap.contents.counts.insert("deployments.apps".into(), 1);
    snap.contents.counts.insert("pods".into(), 2);
    let v = decide_project(
        &Operation::Delete,
        &user("olga"),
        Some(&p),
        None,
        &snap,
        &Policy::default(),
        now(),
    );
    assert_eq!(code(&v), 409);
    assert_eq!(
        message(&v),
        "project web has 3 active resources (deployments.apps: 1, pods: 2); delete them first"
    );
    snap.contents.counts.clear();
    assert!(
        decide_project(
            &Operation::Delete,
            &user("olga"),
            Some(&p),
            None,
            &snap,
            &Policy::default(),
            now()
        )
        .is_allowed()
    );
    assert_eq!(
        code(&decide_project(
            &Operation::Delete,
            &user("ned"),
            Some(&p),
            None,
            &snap,
            &Policy::default(),
            now()
        )),
        403
    );
}

#[test]
fn recovering_under_another_customer_is_a_move() {
    let p = project("web", serde_json::json!({"customer": "acme"}));
    let mut snap = psnap(&["olga"], vec![]);
    let spec: ProjectSpec = serde_json::from_value(serde_json::json!({"customer": "old"})).unwrap();
    snap.archive = Some(Archive::new(spec, now(), &[]));
    assert_eq!(
        code(&decide_project(
            &Operation::Create,
            &user("olga"),
            None,
            Some(&p),
            &snap,
            &Policy::default(),
            now()
        )),
        403
    );
}

fn msnap(members: Vec<ProjectMembership>) -> MembershipSnapshot {
    MembershipSnapshot {
        project: Some(project("web", serde_json::json!({"customer": "acme"}))),
        customer: Some(customer("acme", &["olga"])),
        memberships: members,
    }
}

#[test]
fn managers_add_members_but_not_managers_and_never_themselves() {
    let snap = msnap(vec![membership("m", "mia", ProjectRole::Manager)]);
    let pol = Policy::default();
    let add = |m: &ProjectMembership| {
        decide_membership(
            &Operation::Create,
            &user("mia"),
            None,
            Some(m),
            &snap,
            &pol,
            now(),
        )
    };
    assert!(add(&membership("n", "ned", ProjectRole::Member)).is_allowed());
    assert!(add(&membership("a", "ann", ProjectRole::Administrator)).is_allowed());
    assert_eq!(
        code(&add(&membership("x", "xena", ProjectRole::Manager))),
        403
    );
    let own = membership("m", "mia", ProjectRole::Member);
    let v = decide_membership(
        &Operation::Update,
        &user("mia"),
        Some(&snap.memberships[0]),
        Some(&own),
        &snap,
        &pol,
        now(),
    );
    assert_eq!(code(&v), 403);
    assert!(message(&v).contains("their own"));
}

#[test]
fn members_add_nobody_and_owners_add_anyone() {
    let snap = msnap(vec![membership("n", "ned", ProjectRole::Member)]);
    let new = membership("x", "xena", ProjectRole::Manager);
    assert_eq!(
        code(&decide_membership(
            &Operation::Create,
            &user("ned"),
            None,
            Some(&new),
            &snap,
            &Policy::default(),
            now()
        )),
        403
    );
    assert!(
        decide_membership(
            &Operation::Create,
            &user("olga"),
            None,
            Some(&new),
            &snap,
            &Policy::default(),
            now()
        )
        .is_allowed()
    );
}

#[test]
fn a_duplicate_membership_is_a_conflict() {
    let snap = msnap(vec![membership("n", "ned", ProjectRole::Member)]);
    let v = decide_membership(
        &Operation::Create,
        &staff(),
        None,
        Some(&membership("n2", "ned", ProjectRole::Member)),
        &snap,
        &Policy::default(),
        now(),
    );
    assert_eq!(code(&v), 409);
    assert!(message(&v).contains("already holds Member"));
}

#[test]
fn an_invited_subject_may_accept_and_do_nothing_else() {
    let mut pending = membership("n", "ned", ProjectRole::Member);
    pending.status = Some(crate::api::ProjectMembershipStatus {
        phase: Some(MembershipPhase::Pending),
        ..Default::default()
    });
    let snap = msnap(vec![pending.clone()]);
    let mut accepted = pending.clone();
    accepted
        .annotations_mut()
        .insert(annotations::ACCEPT.into(), "true".into());
    assert!(
        decide_membership(
            &Operation::Update,
            &user("ned"),
            Some(&pending),
            Some(&accepted),
            &snap,
            &Policy::default(),
            now()
        )
        .is_allowed()
    );
    let mut promoted = accepted.clone();
    promoted.spec.role = ProjectRole::Administrator;
    assert_eq!(
        code(&decide_membership(
            &Operation::Update,
            &user("ned"),
            Some(&pending),
            Some(&promoted),
            &snap,
            &Policy::default(),
            now()
        )),
        403
    );
    assert_eq!(
        code(&decide_membership(
            &Operation::Update,
            &user("eve"),
            Some(&pending),
            Some(&accepted),
            &snap,
            &Policy::default(),
            now()
        )),
        403
    );
}

#[test]
fn memberships_outside_a_project_namespace_are_invalid() {
    let snap = MembershipSnapshot::default();
    let v = decide_membership(
        &Operation::Create,
        &staff(),
        None,
        Some(&membership("n", "ned", ProjectRole::Member)),
        &snap,
        &Policy::default(),
        now(),
    );
    assert_eq!(code(&v), 422);
}

#[test]
fn memberships_of_a_project_in_conflict_are_refused_even_to_staff() {
    let mut snap = msnap(vec![]);
    let project = snap.project.as_mut().unwrap();
    project.status =
        Some(serde_json::from_value(serde_json::json!({"phase": "Conflict"})).unwrap());
    let m = membership("n", "ned", ProjectRole::Member);
    let decide =
        |op: &Operation, old: Option<&ProjectMembership>, new: Option<&ProjectMembership>| {
            decide_membership(op, &staff(), old, new, &snap, &Policy::default(), now())
        };
    let v = decide(&Operation::Create, None, Some(&m));
    assert_eq!(code(&v), 409);
    assert!(message(&v).contains("phase Conflict"), "{}", message(&v));
    // What is there already can still be changed and deleted.
    assert!(decide(&Operation::Update, Some(&m), Some(&m)).is_allowed());
    assert!(decide(&Operation::Delete, Some(&m), None).is_allowed());
}

#[test]
fn customers_are_staff_business_except_display_fields() {
    let old = customer("acme", &["olga"]);
    let mut renamed = old.clone();
    renamed.spec.display_name = Some("ACME".into());
    assert!(
        decide_customer(
            &Operation::Update,
            &user("olga"),
            Some(&old),
            Some(&renamed),
            &Policy::default(),
            now()
        )
        .is_allowed()
    );
    let mut grown = old.clone();
    grown.spec.owners.clear();
    assert_eq!(
        code(&decide_customer(
            &Operation::Update,
            &user("olga"),
            Some(&old),
            Some(&grown),
            &Policy::default(),
            now()
        )),
        403
    );
    assert_eq!(
        code(&decide_customer(
            &Operation::Create,
            &user("olga"),
            None,
            Some(&old),
            &Policy::default(),
            now()
        )),
        403
    );
    assert!(
        decide_customer(
            &Operation::Create,
            &staff(),
            None,
            Some(&old),
            &Policy::default(),
            now()
        )
        .is_allowed()
    );
}

#[test]
fn mutations_record_who_created_and_who_moved_the_end_date() {
    let m = membership("n", "ned", ProjectRole::Member);
    let ops = mutate_membership(&Operation::Create, &user("olga"), &m);
    assert_eq!(
        serde_json::to_value(&ops).unwrap()[1]["path"],
        "/metadata/annotations/tenancy.dev~1created-by"
    );
    let old = project(
        "web",
        serde_json::json!({"customer": "acme", "endDate": "2027-01-01"}),
    );
    let new = project(
        "web",
        serde_json::json!({"customer": "acme", "endDate": "2027-02-01"}),
    );
    assert!(!mutate_project(&Operation::Update, &user("olga"), Some(&old), &new).is_empty());
    assert!(mutate_project(&Operation::Update, &user("olga"), Some(&old), &old).is_empty());
}

#[test]
fn objects_the_types_cannot_read_are_refused_by_field_and_only_staff_may_repair_them() {
    let readable = serde_json::json!({
        "apiVersion": "tenancy.dev/v1alpha1", "kind": "ProjectMembership",
        "metadata": {"name": "m", "namespace": "alpha"},
        "spec": {"subject": {"kind": "User", "name": "ann"}, "role": "Member"},
    });
    let mut unreadable = readable.clone();
    unreadable["spec"]["role"] = "Auditor".into();
    let policy = Policy::default();
    let read = |old: Option<&serde_json::Value>, new: Option<&serde_json::Value>, r: &Requester| {
        read_objects::<ProjectMembership>("ProjectMembership", old, new, r, &policy)
    };

    // A new object that does not fit: 422 naming the field and what it may be.
    match read(None, Some(&unreadable), &staff()) {
        Err(Verdict::Deny { code, message, .. }) => {
            assert_eq!(code, 422);
            assert!(
                message.starts_with("spec.role: unknown variant `Auditor`"),
                "{message}"
            );
            assert!(message.contains("`Manager`"), "{message}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    // A stored one that does not fit: staff repair or delete it; others are told who can.
    let (old, new) = read(Some(&unreadable), Some(&readable), &staff()).expect("staff repair");
    assert!(old.is_none());
    assert_eq!(new.map(|m| m.spec.role), Some(ProjectRole::Member));
    assert!(read(Some(&unreadable), None, &staff()).is_ok());
    match read(Some(&unreadable), None, &user("ann")) {
        Err(Verdict::Deny { code, message, .. }) => {
            assert_eq!(code, 403);
            assert!(message.contains("spec.role"), "{message}");
            assert!(message.contains("only staff"), "{message}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    // Readable objects pass as they are.
    let (old, new) = read(Some(&readable), Some(&readable), &user("ann")).expect("readable");
    assert!(old.is_some() && new.is_some());
}
