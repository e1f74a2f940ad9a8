use super::*;
use crate::api::{CustomerSpec, ProjectMembershipSpec, ProjectSpec};
use crate::api::{Subject, SubjectKind};
use json_patch::PatchOperation;

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
fn credit_is_the_owners_and_staffs_not_the_managers() {
    let old = project(
        "web",
        serde_json::json!({"customer": "acme", "credit": 10.0}),
    );
    let team = vec![membership("m", "mia", ProjectRole::Manager)];
    let snap = psnap(&["olga"], team);
    for (change, field) in [
        (
            serde_json::json!({"customer": "acme", "credit": 1000.0}),
            "spec.credit",
        ),
        (serde_json::json!({"customer": "acme"}), "spec.credit"),
        (
            serde_json::json!({"customer": "acme", "credit": 10.0, "creditExhaustedPolicy": "None"}),
            "spec.creditExhaustedPolicy",
        ),
    ] {
        let new = project("web", change);
        let ask = |who: &str| {
            decide_project(
                &Operation::Update,
                &user(who),
                Some(&old),
                Some(&new),
                &snap,
                &Policy::default(),
                now(),
            )
        };
        let v = ask("mia");
        assert_eq!(code(&v), 403, "{field}");
        assert!(message(&v).contains(field), "{}", message(&v));
        assert!(ask("olga").is_allowed(), "the customer's owner: {field}");
        let staff = decide_project(
            &Operation::Update,
            &staff(),
            Some(&old),
            Some(&new),
            &snap,
            &Policy::default(),
            now(),
        );
        assert!(staff.is_allowed(), "staff: {field}");
    }
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
        ..Default::default()
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
            &CustomerSnapshot::default(),
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
            &CustomerSnapshot::default(),
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
            &CustomerSnapshot::default(),
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
            &CustomerSnapshot::default(),
            &Policy::default(),
            now()
        )
        .is_allowed()
    );
}

fn annotation_patch(ops: &[PatchOperation]) -> Vec<(String, String, Option<String>)> {
    serde_json::to_value(ops)
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|op| {
            (
                op["op"].as_str().unwrap().to_string(),
                op["path"].as_str().unwrap().to_string(),
                op["value"].as_str().map(str::to_string),
            )
        })
        .collect()
}

#[test]
fn mutations_record_who_created_a_membership() {
    let pol = Policy::default();
    let created_by = "/metadata/annotations/tenancy.dev~1created-by";
    let m = membership("n", "ned", ProjectRole::Member);
    let ops = mutate_membership(&Operation::Create, &user("olga"), None, &m, &pol);
    assert_eq!(
        annotation_patch(&ops),
        [
            ("add".into(), "/metadata/annotations".into(), None),
            ("add".into(), created_by.into(), Some("olga".into())),
        ]
    );
    // A spoofed creator on create is overwritten with the requester.
    let mut spoofed = m.clone();
    spoofed
        .annotations_mut()
        .insert(annotations::CREATED_BY.into(), "sam".into());
    assert_eq!(
        annotation_patch(&mutate_membership(
            &Operation::Create,
            &user("olga"),
            None,
            &spoofed,
            &pol
        )),
        [("add".into(), created_by.into(), Some("olga".into()))]
    );
    // After creation, a tenant's change of the creator is put back; staff may correct it.
    let mut stored = m.clone();
    stored
        .annotations_mut()
        .insert(annotations::CREATED_BY.into(), "olga".into());
    assert_eq!(
        annotation_patch(&mutate_membership(
            &Operation::Update,
            &user("mia"),
            Some(&stored),
            &spoofed,
            &pol
        )),
        [("add".into(), created_by.into(), Some("olga".into()))]
    );
    assert!(
        mutate_membership(&Operation::Update, &staff(), Some(&stored), &spoofed, &pol).is_empty()
    );
}

/// The phase marker is the operator's: a tenant's create carries none, a tenant's update keeps
/// the stored one (removing it would turn an invitation into access after a restore without
/// status); staff (who restore backups) write what they restore.
#[test]
fn tenants_never_set_change_or_remove_the_phase_marker() {
    let pol = Policy::default();
    let path = "/metadata/annotations/tenancy.dev~1phase";
    let with = |value: &str| {
        let mut m = membership("n", "ned", ProjectRole::Member);
        m.annotations_mut()
            .insert(annotations::CREATED_BY.into(), "olga".into());
        m.annotations_mut()
            .insert(annotations::PHASE.into(), value.into());
        m
    };
    let pending = with("Pending");
    let active = with("Active");
    let mut removed = pending.clone();
    removed.annotations_mut().remove(annotations::PHASE);
    let update = |r: &Requester, old: &ProjectMembership, new: &ProjectMembership| {
        annotation_patch(&mutate_membership(
            &Operation::Update,
            r,
            Some(old),
            new,
            &pol,
        ))
    };
    // (who, stored, requested, the patch the webhook adds)
    let cases: Vec<(Requester, &ProjectMembership, &ProjectMembership, Vec<_>)> = vec![
        (
            user("ned"),
            &pending,
            &removed,
            vec![(
                "add".to_string(),
                path.to_string(),
                Some("Pending".to_string()),
            )],
        ),
        (
            user("ned"),
            &pending,
            &active,
            vec![(
                "add".to_string(),
                path.to_string(),
                Some("Pending".to_string()),
            )],
        ),
        (user("ned"), &pending, &pending, vec![]),
        (staff(), &pending, &removed, vec![]),
    ];
    for (who, old, new, want) in cases {
        assert_eq!(update(&who, old, new), want, "{}", who.username);
    }
    // On create a tenant's marker goes (and the creator is recorded); staff keep theirs.
    let created = annotation_patch(&mutate_membership(
        &Operation::Create,
        &user("olga"),
        None,
        &with("Revoked"),
        &pol,
    ));
    assert!(
        created.contains(&("remove".to_string(), path.to_string(), None)),
        "{created:?}"
    );
    let by_staff = annotation_patch(&mutate_membership(
        &Operation::Create,
        &staff(),
        None,
        &with("Revoked"),
        &pol,
    ));
    assert!(by_staff.iter().all(|(_, p, _)| p != path), "{by_staff:?}");
}

#[test]
fn mutations_record_who_moved_the_end_date() {
    let pol = Policy::default();
    let requested_by = "/metadata/annotations/tenancy.dev~1end-date-requested-by";
    let old = project(
        "web",
        serde_json::json!({"customer": "acme", "endDate": "2027-01-01"}),
    );
    let new = project(
        "web",
        serde_json::json!({"customer": "acme", "endDate": "2027-02-01"}),
    );
    assert_eq!(
        annotation_patch(&mutate_project(
            &Operation::Update,
            &user("olga"),
            Some(&old),
            &new,
            &pol,
            now(),
            "inc-new"
        )),
        [
            ("add".into(), "/metadata/annotations".into(), None),
            ("add".into(), requested_by.into(), Some("olga".into())),
        ]
    );
    assert!(
        mutate_project(
            &Operation::Update,
            &user("olga"),
            Some(&old),
            &old,
            &pol,
            now(),
            "inc-new"
        )
        .is_empty()
    );
    // Audit annotations set without the change they record are taken out.
    let mut forged = old.clone();
    forged
        .annotations_mut()
        .insert(annotations::END_DATE_REQUESTED_BY.into(), "sam".into());
    forged
        .annotations_mut()
        .insert(annotations::DELETED_BY.into(), "sam".into());
    assert_eq!(
        annotation_patch(&mutate_project(
            &Operation::Update,
            &user("mia"),
            Some(&old),
            &forged,
            &pol,
            now(),
            "inc-new"
        )),
        [
            ("remove".into(), requested_by.into(), None),
            (
                "remove".into(),
                "/metadata/annotations/tenancy.dev~1deleted-by".into(),
                None
            ),
        ]
    );
}

#[test]
fn tenants_never_set_owner_references_or_finalizers() {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
    let pol = Policy::default();
    let mgr = membership("m", "mia", ProjectRole::Manager);
    let snap = psnap(&["olga"], vec![mgr.clone()]);
    let old = project("web", serde_json::json!({"customer": "acme"}));
    let gc_bait = OwnerReference {
        api_version: "v1".into(),
        kind: "ConfigMap".into(),
        name: "gone".into(),
        uid: "00000000-0000-0000-0000-000000000000".into(),
        ..Default::default()
    };
    let mut owned = old.clone();
    owned.metadata.owner_references = Some(vec![gc_bait.clone()]);
    let mut kept = old.clone();
    kept.metadata.finalizers = Some(vec!["example.com/keep".into()]);
    let mut ours = old.clone();
    ours.metadata.finalizers = Some(vec![SOFT_DELETE_FINALIZER.into()]);
    for who in [user("mia"), user("olga")] {
        for (what, new) in [("ownerReferences", &owned), ("finalizers", &kept)] {
            let v = decide_project(
                &Operation::Update,
                &who,
                Some(&old),
                Some(new),
                &snap,
                &pol,
                now(),
            );
            assert_eq!(code(&v), 403, "{} {what}: {v:?}", who.username);
            assert!(message(&v).contains(&format!("metadata.{what}")), "{v:?}");
        }
        // Removing the operator's own finalizer would skip the soft delete; adding it is
        // harmless.
        let v = decide_project(
            &Operation::Update,
            &who,
            Some(&ours),
            Some(&old),
            &snap,
            &pol,
            now(),
        );
        assert_eq!(code(&v), 403, "{v:?}");
        assert!(
            decide_project(
                &Operation::Update,
                &who,
                Some(&old),
                Some(&ours),
                &snap,
                &pol,
                now()
            )
            .is_allowed()
        );
    }
    let v = decide_project(
        &Operation::Create,
        &user("olga"),
        None,
        Some(&owned),
        &snap,
        &pol,
        now(),
    );
    assert_eq!(code(&v), 403, "{v:?}");
    assert!(
        decide_project(
            &Operation::Update,
            &staff(),
            Some(&old),
            Some(&owned),
            &snap,
            &pol,
            now()
        )
        .is_allowed()
    );
    // Memberships: an owner or a manager may not add them either.
    let m = membership("n", "ned", ProjectRole::Member);
    let mut m_owned = m.clone();
    m_owned.metadata.owner_references = Some(vec![gc_bait]);
    let msnap = msnap(vec![mgr, m.clone()]);
    for who in [user("mia"), user("olga")] {
        let v = decide_membership(
            &Operation::Update,
            &who,
            Some(&m),
            Some(&m_owned),
            &msnap,
            &pol,
            now(),
        );
        assert_eq!(code(&v), 403, "{v:?}");
    }
    // Customers: an owner changing display fields may not slip in an owner reference.
    let c = customer("acme", &["olga"]);
    let mut c_owned = c.clone();
    c_owned.spec.display_name = Some("ACME".into());
    c_owned.metadata.finalizers = Some(vec!["example.com/keep".into()]);
    let v = decide_customer(
        &Operation::Update,
        &user("olga"),
        Some(&c),
        Some(&c_owned),
        &CustomerSnapshot::default(),
        &pol,
        now(),
    );
    assert_eq!(code(&v), 403, "{v:?}");
}

#[test]
fn an_invitee_accepting_may_not_add_a_finalizer() {
    let mut pending = membership("n", "ned", ProjectRole::Member);
    pending.status = Some(crate::api::ProjectMembershipStatus {
        phase: Some(MembershipPhase::Pending),
        ..Default::default()
    });
    let mut accept = pending.clone();
    accept
        .annotations_mut()
        .insert(annotations::ACCEPT.into(), "true".into());
    let snap = msnap(vec![pending.clone()]);
    let pol = Policy::default();
    assert!(
        decide_membership(
            &Operation::Update,
            &user("ned"),
            Some(&pending),
            Some(&accept),
            &snap,
            &pol,
            now()
        )
        .is_allowed()
    );
    let mut keep = accept.clone();
    keep.metadata.finalizers = Some(vec!["example.com/keep".into()]);
    let v = decide_membership(
        &Operation::Update,
        &user("ned"),
        Some(&pending),
        Some(&keep),
        &snap,
        &pol,
        now(),
    );
    assert_eq!(code(&v), 403, "{v:?}");
}

#[test]
fn quotas_that_get_around_the_customer_or_the_apiserver_are_refused() {
    let pol = Policy::default();
    let mut snap = psnap(&["olga"], vec![]);
    snap.customer.as_mut().unwrap().spec.quota = Some(
        serde_json::from_value(serde_json::json!({"hard": {"requests.cpu": "10", "pods": "20"}}))
            .unwrap(),
    );
    let p = |quota: serde_json::Value| {
        project(
            "web",
            serde_json::json!({"customer": "acme", "quota": {"hard": quota}}),
        )
    };
    let cases = [
        (serde_json::json!({"requests.cpu": "2", "pods": "5"}), None),
        (serde_json::json!({"cpu": "2", "count/pods": "5"}), None),
        (
            serde_json::json!({"requests.cpu": "2"}),
            Some("customer acme limits pods, so every one of its projects must set it"),
        ),
        (
            serde_json::json!({}),
            Some("limits pods, requests.cpu, so every one of its projects must set them"),
        ),
        (
            serde_json::json!({"requests.cpu": "2", "pods": "5", "cpu": "1"}),
            Some("cpu and requests.cpu are the same resource"),
        ),
        (
            serde_json::json!({"requests.cpu": "2", "pods": "5", "foo": "1"}),
            Some("spec.quota.hard.foo"),
        ),
    ];
    for who in [user("olga"), staff()] {
        for (quota, want) in &cases {
            let v = decide_project(
                &Operation::Create,
                &who,
                None,
                Some(&p(quota.clone())),
                &snap,
                &pol,
                now(),
            );
            match want {
                None => assert!(v.is_allowed(), "{quota}: {v:?}"),
                Some(w) => {
                    assert_eq!(code(&v), 422, "{quota}: {v:?}");
                    assert!(message(&v).contains(w), "{quota}: {v:?}");
                }
            }
        }
    }
    // Container limits out of order.
    let bad = project(
        "web",
        serde_json::json!({"customer": "acme", "quota": {"hard": {"requests.cpu": "1", "pods": "1"}},
            "limitRange": {"min": {"cpu": "2"}, "max": {"cpu": "1"}}}),
    );
    let v = decide_project(
        &Operation::Create,
        &user("olga"),
        None,
        Some(&bad),
        &snap,
        &pol,
        now(),
    );
    assert!(
        message(&v).contains("min.cpu (2) is above max.cpu (1)"),
        "{v:?}"
    );
    // A manager of a project whose customer is gone may not change its quota.
    let mut orphan = psnap(&[], vec![membership("m", "mia", ProjectRole::Manager)]);
    orphan.customer = None;
    let v = decide_project(
        &Operation::Update,
        &user("mia"),
        Some(&p(serde_json::json!({"requests.cpu": "1"}))),
        Some(&p(serde_json::json!({"requests.cpu": "1000"}))),
        &orphan,
        &pol,
        now(),
    );
    assert_eq!(code(&v), 403, "{v:?}");
}

#[test]
fn reserved_names_never_become_projects() {
    let mut pol = Policy::default();
    pol.reserved_names.push("corp-ops".into());
    let snap = psnap(&["olga"], vec![]);
    for name in [
        "kube-system",
        "kube-anything",
        "cert-manager",
        "argocd",
        "default",
        "corp-ops",
    ] {
        let p = project(name, serde_json::json!({"customer": "acme"}));
        for who in [user("olga"), staff()] {
            let v = decide_project(&Operation::Create, &who, None, Some(&p), &snap, &pol, now());
            assert_eq!(code(&v), 422, "{name}: {v:?}");
            assert!(message(&v).contains("is reserved"), "{v:?}");
        }
    }
    let p = project("kubeflow-lab", serde_json::json!({"customer": "acme"}));
    assert!(
        decide_project(
            &Operation::Create,
            &user("olga"),
            None,
            Some(&p),
            &snap,
            &pol,
            now()
        )
        .is_allowed()
    );
}

#[test]
fn the_service_account_rule_is_checked_for_everyone() {
    let pol = Policy::default();
    let sa = |ns: &str, role| {
        let mut m = membership("bot", "x", role);
        m.spec.subject = Subject {
            kind: SubjectKind::ServiceAccount,
            name: "bot".into(),
            namespace: Some(ns.into()),
        };
        m
    };
    let mut snap = msnap(vec![]);
    snap.project_namespaces = ["web".to_string(), "api".to_string()].into();
    for who in [user("olga"), staff()] {
        let m = sa("web", ProjectRole::Manager);
        let v = decide_membership(&Operation::Create, &who, None, Some(&m), &snap, &pol, now());
        assert_eq!(code(&v), 403, "{v:?}");
        assert!(message(&v).contains("at most Administrator"), "{v:?}");
        let m = sa("api", ProjectRole::Member);
        let v = decide_membership(&Operation::Create, &who, None, Some(&m), &snap, &pol, now());
        assert!(message(&v).contains("only in project api"), "{v:?}");
        let m = sa("web", ProjectRole::Administrator);
        assert!(
            decide_membership(&Operation::Create, &who, None, Some(&m), &snap, &pol, now())
                .is_allowed()
        );
    }
    let mut c = customer("acme", &["olga"]);
    c.spec.support = vec![
        serde_json::from_value(
            serde_json::json!({"kind": "ServiceAccount", "name": "bot", "namespace": "web"}),
        )
        .unwrap(),
    ];
    let csnap = CustomerSnapshot {
        project_namespaces: ["web".to_string()].into(),
        ..Default::default()
    };
    let v = decide_customer(
        &Operation::Create,
        &staff(),
        None,
        Some(&c),
        &csnap,
        &pol,
        now(),
    );
    assert_eq!(code(&v), 403, "{v:?}");
}

#[test]
fn a_customer_quota_must_bound_every_project_it_has() {
    let pol = Policy::default();
    let old = customer("acme", &["olga"]);
    let with = |quota: serde_json::Value| {
        let mut c = old.clone();
        c.spec.quota = Some(serde_json::from_value(quota).unwrap());
        c
    };
    let snap = CustomerSnapshot {
        projects: vec![
            project(
                "a",
                serde_json::json!({"customer": "acme", "quota": {"hard": {"requests.cpu": "4"}}}),
            ),
            project(
                "b",
                serde_json::json!({"customer": "acme", "quota": {"hard": {"cpu": "4", "pods": "2"}}}),
            ),
        ],
        ..Default::default()
    };
    let decide = |new: &Customer| {
        decide_customer(
            &Operation::Update,
            &staff(),
            Some(&old),
            Some(new),
            &snap,
            &pol,
            now(),
        )
    };
    assert!(
        decide(&with(
            serde_json::json!({"hard": {"requests.cpu": "8"}, "projects": 2})
        ))
        .is_allowed()
    );
    let v = decide(&with(serde_json::json!({"hard": {"requests.cpu": "7"}})));
    assert_eq!(code(&v), 409, "{v:?}");
    assert!(
        message(&v).contains("7 is less than the 8 its projects already hold"),
        "{v:?}"
    );
    let v = decide(&with(serde_json::json!({"hard": {"pods": "10"}})));
    assert!(message(&v).contains("a (sets no pods)"), "{v:?}");
    let v = decide(&with(serde_json::json!({"projects": 1})));
    assert!(message(&v).contains("fewer than the 2 projects"), "{v:?}");
}

#[test]
fn tenants_bind_only_their_own_service_accounts() {
    use k8s_openapi::api::rbac::v1::{RoleRef, Subject as RbacSubject};
    let pol = Policy::default();
    let rb = |role: &str, subjects: Vec<RbacSubject>| RoleBinding {
        metadata: ObjectMeta {
            name: Some("mine".into()),
            namespace: Some("web".into()),
            ..Default::default()
        },
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "ClusterRole".into(),
            name: role.into(),
        },
        subjects: Some(subjects),
    };
    let subject = |kind: &str, name: &str, ns: Option<&str>| RbacSubject {
        kind: kind.into(),
        name: name.into(),
        namespace: ns.map(str::to_string),
        api_group: None,
    };
    let own_sa = subject("ServiceAccount", "ci", Some("web"));
    let cases = [
        (
            rb("edit", vec![own_sa.clone()]),
            BindingNamespace::Active,
            None,
        ),
        (
            rb("edit", vec![subject("User", "eve", None)]),
            BindingNamespace::Active,
            Some("may not bind User \"eve\""),
        ),
        (
            rb("view", vec![subject("Group", "system:authenticated", None)]),
            BindingNamespace::Active,
            Some("Group"),
        ),
        (
            rb("edit", vec![subject("ServiceAccount", "ci", Some("other"))]),
            BindingNamespace::Active,
            Some("ServiceAccount other/ci"),
        ),
        (
            rb("tenancy:project-manager", vec![own_sa.clone()]),
            BindingNamespace::Active,
            Some("may not bind ClusterRole tenancy:project-manager"),
        ),
        (
            rb("edit", vec![own_sa.clone()]),
            BindingNamespace::Archived,
            Some("only staff have access to an archived project"),
        ),
        (
            rb("cluster-admin", vec![subject("User", "eve", None)]),
            BindingNamespace::Other,
            None,
        ),
    ];
    for (binding, ns, want) in &cases {
        let v = decide_role_binding(
            &Operation::Create,
            &user("mia"),
            None,
            Some(binding),
            *ns,
            &pol,
        );
        match want {
            None => assert!(v.is_allowed(), "{binding:?}: {v:?}"),
            Some(w) => {
                assert_eq!(code(&v), 403);
                assert!(message(&v).contains(w), "{v:?}");
            }
        }
        assert!(
            decide_role_binding(&Operation::Create, &staff(), None, Some(binding), *ns, &pol)
                .is_allowed()
        );
    }
    // The operator's bindings are the operator's.
    let mut ours = rb("tenancy:project-member", vec![subject("User", "ned", None)]);
    ours.metadata.labels = Some(crate::desired::child_labels("web", "membership"));
    let mut widened = ours.clone();
    widened
        .subjects
        .as_mut()
        .unwrap()
        .push(subject("User", "eve", None));
    let v = decide_role_binding(
        &Operation::Update,
        &user("mia"),
        Some(&ours),
        Some(&widened),
        BindingNamespace::Active,
        &pol,
    );
    assert!(message(&v).contains("are tenancy-operator's"), "{v:?}");
}

#[test]
fn a_project_holds_a_bounded_number_of_memberships() {
    let members: Vec<ProjectMembership> = (0..MAX_MEMBERSHIPS_PER_PROJECT)
        .map(|i| membership(&format!("m{i}"), &format!("u{i}"), ProjectRole::Member))
        .collect();
    let snap = msnap(members);
    let m = membership("one-more", "late", ProjectRole::Member);
    let v = decide_membership(
        &Operation::Create,
        &staff(),
        None,
        Some(&m),
        &snap,
        &Policy::default(),
        now(),
    );
    assert_eq!(code(&v), 409, "{v:?}");
}

#[test]
fn memberships_in_a_namespace_the_project_does_not_own_make_no_manager() {
    let mgr = membership("m", "mia", ProjectRole::Manager);
    let mut snap = psnap(&["olga"], vec![mgr]);
    snap.namespace_not_owned = true;
    let old = project("web", serde_json::json!({"customer": "acme"}));
    let mut new = old.clone();
    new.spec.description = Some("mine now".into());
    let v = decide_project(
        &Operation::Update,
        &user("mia"),
        Some(&old),
        Some(&new),
        &snap,
        &Policy::default(),
        now(),
    );
    assert_eq!(code(&v), 403, "{v:?}");
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

fn checklist_snap() -> ProjectSnapshot {
    let mut c = customer("acme", &["olga"]);
    c.spec.project_checklist = Some("dp".into());
    ProjectSnapshot {
        customer: Some(c),
        checklist: Some(
            serde_json::from_value(serde_json::json!({
                "apiVersion": "tenancy.dev/v1alpha1", "kind": "Checklist", "metadata": {"name": "dp"},
                "spec": {"questions": [
                    {"id": "personal", "description": "Personal data?", "type": "Boolean", "required": true},
                    {"id": "export", "description": "Export-controlled?", "type": "Boolean",
                     "userGuidance": "Ask the export office.", "guidanceAnswerValue": true}
                ]}}))
            .unwrap(),
        ),
        ..Default::default()
    }
}

#[test]
fn answers_must_fit_the_customers_checklist_for_everyone() {
    let pol = Policy::default();
    let snap = checklist_snap();
    let with = |answers: serde_json::Value| {
        project(
            "web",
            serde_json::json!({"customer": "acme", "checklistAnswers": answers}),
        )
    };
    let cases: Vec<(&str, Requester, serde_json::Value, u16, &str)> = vec![
        (
            "all answered",
            user("olga"),
            serde_json::json!({"personal": false}),
            200,
            "",
        ),
        (
            "required missing",
            user("olga"),
            serde_json::json!({}),
            422,
            "spec.checklistAnswers.personal: question personal (\"Personal data?\") is required",
        ),
        (
            "staff too",
            staff(),
            serde_json::json!({}),
            422,
            "is required",
        ),
        (
            "unknown question",
            user("olga"),
            serde_json::json!({"personal": true, "colour": 1}),
            422,
            "no question \"colour\"",
        ),
        (
            "wrong type",
            user("olga"),
            serde_json::json!({"personal": "yes"}),
            422,
            "must be true or false",
        ),
    ];
    for (what, r, answers, want, msg) in cases {
        let v = decide_project(
            &Operation::Create,
            &r,
            None,
            Some(&with(answers)),
            &snap,
            &pol,
            now(),
        );
        assert_eq!(code(&v), want, "{what}: {}", message(&v));
        assert!(message(&v).contains(msg), "{what}: {}", message(&v));
    }
    // An update that leaves the answers alone is not held to a checklist attached later.
    let legacy = project("web", serde_json::json!({"customer": "acme"}));
    let mut later = legacy.clone();
    later.spec.end_date = Some("2027-06-30".into());
    let v = decide_project(
        &Operation::Update,
        &user("olga"),
        Some(&legacy),
        Some(&later),
        &snap,
        &pol,
        now(),
    );
    assert_eq!(code(&v), 200, "{}", message(&v));
    // A customer without a checklist takes no answers; a checklist that does not exist refuses.
    let plain = psnap(&["olga"], vec![]);
    let v = decide_project(
        &Operation::Create,
        &user("olga"),
        None,
        Some(&with(serde_json::json!({"personal": true}))),
        &plain,
        &pol,
        now(),
    );
    assert!(message(&v).contains("asks no checklist"), "{}", message(&v));
    let mut missing = checklist_snap();
    missing.checklist = None;
    let v = decide_project(
        &Operation::Create,
        &user("olga"),
        None,
        Some(&with(serde_json::json!({"personal": true}))),
        &missing,
        &pol,
        now(),
    );
    assert!(
        message(&v).contains("requires checklist \"dp\", which does not exist"),
        "{}",
        message(&v)
    );
    // Guidance that applies comes back as warnings.
    assert_eq!(
        checklist_warnings(
            &with(serde_json::json!({"personal": false, "export": true})),
            &snap
        ),
        ["export: Ask the export office."]
    );
    assert!(
        checklist_warnings(
            &with(serde_json::json!({"personal": false, "export": false})),
            &snap
        )
        .is_empty()
    );
}

#[test]
fn only_staff_review_and_the_webhook_records_who_when_and_what() {
    let pol = Policy::default();
    let snap = checklist_snap();
    let old = project(
        "web",
        serde_json::json!({"customer": "acme", "checklistAnswers": {"personal": true}}),
    );
    let mut approved = old.clone();
    approved.spec.checklist_review =
        Some(serde_json::from_value(serde_json::json!({"decision": "Approved"})).unwrap());
    let v = decide_project(
        &Operation::Update,
        &user("olga"),
        Some(&old),
        Some(&approved),
        &snap,
        &pol,
        now(),
    );
    assert_eq!(code(&v), 403);
    assert!(
        message(&v).contains("spec.checklistReview"),
        "{}",
        message(&v)
    );
    assert!(
        decide_project(
            &Operation::Update,
            &staff(),
            Some(&old),
            Some(&approved),
            &snap,
            &pol,
            now()
        )
        .is_allowed()
    );
    let ops = annotation_patch(&mutate_project(
        &Operation::Update,
        &staff(),
        Some(&old),
        &approved,
        &pol,
        now(),
        "inc-new",
    ));
    let value = |key: &str| {
        ops.iter()
            .find(|(_, path, _)| path.ends_with(&key.replace('/', "~1")))
            .and_then(|(_, _, v)| v.clone())
    };
    assert_eq!(
        value(annotations::CHECKLIST_REVIEWED_BY).as_deref(),
        Some("sam")
    );
    assert_eq!(
        value(annotations::CHECKLIST_REVIEWED_AT).as_deref(),
        Some(NOW)
    );
    assert_eq!(
        value(annotations::CHECKLIST_REVIEWED_ANSWERS),
        Some(crate::desired::checklist::digest(
            &old.spec.checklist_answers
        ))
    );
    // A tenant cannot forge a review record.
    let mut forged = old.clone();
    forged
        .annotations_mut()
        .insert(annotations::CHECKLIST_REVIEWED_ANSWERS.into(), "x".into());
    let ops = annotation_patch(&mutate_project(
        &Operation::Update,
        &user("olga"),
        Some(&old),
        &forged,
        &pol,
        now(),
        "inc-new",
    ));
    assert!(
        ops.iter()
            .any(|(op, path, _)| op == "remove" && path.contains("checklist-reviewed-answers")),
        "{ops:?}"
    );
    // Checklists are staff business; one with a cycle is refused naming the field.
    let cyclic: crate::api::Checklist = serde_json::from_value(serde_json::json!({
        "apiVersion": "tenancy.dev/v1alpha1", "kind": "Checklist", "metadata": {"name": "c"},
        "spec": {"questions": [
            {"id": "a", "description": "A", "type": "Boolean", "dependencies": [{"question": "b", "operator": "Equals", "value": true}]},
            {"id": "b", "description": "B", "type": "Boolean", "dependencies": [{"question": "a", "operator": "Equals", "value": true}]}]}}))
    .unwrap();
    assert_eq!(
        code(&decide_checklist(
            &Operation::Create,
            &user("olga"),
            Some(&cyclic),
            &pol
        )),
        403
    );
    let v = decide_checklist(&Operation::Create, &staff(), Some(&cyclic), &pol);
    assert_eq!(code(&v), 422);
    assert!(message(&v).contains("dependency cycle"), "{}", message(&v));
}

#[test]
fn only_staff_give_a_project_an_incarnation_and_every_new_project_gets_one() {
    let pol = Policy::default();
    let key = "/metadata/annotations/tenancy.dev~1incarnation";
    let bare = project("web", serde_json::json!({"customer": "acme"}));
    let with = |i: &str| {
        let mut p = bare.clone();
        p.annotations_mut()
            .insert(annotations::INCARNATION.into(), i.into());
        p
    };
    let (old, same, other) = (with("inc-1"), with("inc-1"), with("inc-2"));
    // (who, operation, old, new, refused)
    let cases = [
        (
            "a tenant creating one",
            user("olga"),
            Operation::Create,
            None,
            &other,
            true,
        ),
        (
            "a tenant creating without",
            user("olga"),
            Operation::Create,
            None,
            &bare,
            false,
        ),
        (
            "staff restoring one",
            staff(),
            Operation::Create,
            None,
            &other,
            false,
        ),
        (
            "a tenant changing it",
            user("olga"),
            Operation::Update,
            Some(&old),
            &other,
            true,
        ),
        (
            "a tenant keeping it",
            user("olga"),
            Operation::Update,
            Some(&old),
            &same,
            false,
        ),
        (
            "a tenant leaving it out",
            user("olga"),
            Operation::Update,
            Some(&old),
            &bare,
            false,
        ),
        (
            "a tenant adding one later",
            user("olga"),
            Operation::Update,
            Some(&bare),
            &other,
            true,
        ),
        (
            "staff changing it",
            staff(),
            Operation::Update,
            Some(&old),
            &other,
            false,
        ),
    ];
    for (what, r, op, old, new, refused) in cases {
        let v = incarnation_verdict(&op, &r, old, new, &pol);
        assert_eq!(!v.is_allowed(), refused, "{what}: {v:?}");
        if refused {
            assert_eq!(code(&v), 403, "{what}");
            assert!(
                message(&v).contains("metadata.annotations[tenancy.dev/incarnation]")
                    && message(&v).contains("ties a project to an existing namespace"),
                "{what}: {}",
                message(&v)
            );
        }
    }
    // The validating webhook keeps an existing one too (the mutating one may be bypassed).
    let snap = psnap(&["olga"], vec![]);
    let v = decide_project(
        &Operation::Update,
        &user("olga"),
        Some(&old),
        Some(&other),
        &snap,
        &pol,
        now(),
    );
    assert_eq!(code(&v), 403, "{v:?}");
    assert!(
        decide_project(
            &Operation::Update,
            &staff(),
            Some(&old),
            Some(&other),
            &snap,
            &pol,
            now()
        )
        .is_allowed()
    );

    // The mutation: a new project gets the fresh one, one it carries is kept, an update that
    // leaves it out gets it back, a project without one is not given one on update.
    let mutated = |r: &Requester, op: Operation, old: Option<&Project>, new: &Project| {
        annotation_patch(&mutate_project(&op, r, old, new, &pol, now(), "inc-new"))
            .into_iter()
            .filter(|(_, path, _)| path == key)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        mutated(&user("olga"), Operation::Create, None, &bare),
        [("add".into(), key.into(), Some("inc-new".into()))]
    );
    assert_eq!(
        mutated(&staff(), Operation::Create, None, &bare),
        [("add".into(), key.into(), Some("inc-new".into()))]
    );
    assert!(mutated(&staff(), Operation::Create, None, &other).is_empty());
    assert_eq!(
        mutated(&user("olga"), Operation::Update, Some(&old), &bare),
        [("add".into(), key.into(), Some("inc-1".into()))]
    );
    assert!(mutated(&user("olga"), Operation::Update, Some(&bare), &bare).is_empty());
    let (a, b) = (fresh_incarnation(), fresh_incarnation());
    assert_eq!(a.len(), 32);
    assert_ne!(a, b, "incarnations are random");
}

#[test]
fn a_new_project_is_made_with_the_soft_delete_finalizer() {
    let pol = Policy::default();
    let bare = project("web", serde_json::json!({"customer": "acme"}));
    let with = |finalizers: &[&str]| {
        let mut p = bare.clone();
        p.metadata.finalizers = Some(finalizers.iter().map(|f| f.to_string()).collect());
        p
    };
    let finalizer_ops = |r: &Requester, op: Operation, old: Option<&Project>, new: &Project| {
        serde_json::to_value(mutate_project(&op, r, old, new, &pol, now(), "inc-new"))
            .unwrap()
            .as_array()
            .unwrap()
            .iter()
            .filter(|o| {
                o["path"]
                    .as_str()
                    .unwrap()
                    .starts_with("/metadata/finalizers")
            })
            .cloned()
            .collect::<Vec<_>>()
    };
    let add = |path: &str, value: serde_json::Value| {
        vec![serde_json::json!({"op": "add", "path": path, "value": value})]
    };
    let finalized = with(&[SOFT_DELETE_FINALIZER]);
    let cases = [
        (
            "a tenant's project without finalizers",
            user("olga"),
            Operation::Create,
            None,
            bare.clone(),
            add(
                "/metadata/finalizers",
                serde_json::json!([SOFT_DELETE_FINALIZER]),
            ),
        ),
        (
            "staff's project with another finalizer",
            staff(),
            Operation::Create,
            None,
            with(&["example.com/keep"]),
            add(
                "/metadata/finalizers/-",
                serde_json::json!(SOFT_DELETE_FINALIZER),
            ),
        ),
        (
            "a project sent with it already",
            user("olga"),
            Operation::Create,
            None,
            with(&[SOFT_DELETE_FINALIZER]),
            vec![],
        ),
        // Removing it is the validating webhook's to refuse (staff may): an update is left as sent.
        (
            "an update that leaves it out",
            user("olga"),
            Operation::Update,
            Some(&finalized),
            bare.clone(),
            vec![],
        ),
        (
            "staff's update that leaves it out",
            staff(),
            Operation::Update,
            Some(&finalized),
            bare.clone(),
            vec![],
        ),
    ];
    for (what, r, op, old, new, want) in cases {
        assert_eq!(finalizer_ops(&r, op, old, &new), want, "{what}");
    }
}
