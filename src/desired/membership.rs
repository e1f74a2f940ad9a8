//! The ProjectMembership plan: from the membership, what it grants now and the time, its
//! RoleBinding, its invitation Role and RoleBinding, its status and when to wake up. Pure.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::ResourceExt;

use super::RoleNames;
use super::access::{self, Grant};
use super::conditions::Conditions;
use crate::api::{ProjectMembership, ProjectMembershipStatus};
use crate::lifecycle;

/// Everything one reconcile of a membership does.
#[derive(Clone, Debug)]
pub struct MembershipPlan {
    /// The RoleBinding it produces (`None`: there must be none).
    pub binding: Option<RoleBinding>,
    /// While it is a pending invitation: the Role and RoleBinding that let its subject accept.
    pub invitation: Option<(Role, RoleBinding)>,
    /// The status to write; `None` for a membership being deleted (its object is on its way
    /// out, only its access goes).
    pub status: Option<ProjectMembershipStatus>,
    /// The `tenancy.dev/phase` marker to write when it differs from the phase the status holds
    /// (`Some(None)`: remove it); see [`access::phase_marker`].
    pub marker: Option<Option<&'static str>>,
    pub wake: Option<Duration>,
}

/// Plans one reconcile of `m`, which grants `grant` now.
pub fn plan(
    m: &ProjectMembership,
    grant: &Grant,
    roles: &RoleNames,
    now: Timestamp,
) -> MembershipPlan {
    let binding_name = access::membership_binding_name(&m.name_any());
    let binding = (*grant == Grant::Active).then(|| access::membership_binding(m, roles));
    let invitation = (*grant == Grant::Pending).then(|| access::invitation_access(m));
    if *grant == Grant::Deleting {
        return MembershipPlan {
            binding,
            invitation,
            status: None,
            marker: None,
            wake: None,
        };
    }
    let previous = m.status.clone().unwrap_or_default();
    let mut conds = Conditions::new(&previous.conditions, m.metadata.generation, now);
    let who = format!("{} {}", m.spec.subject.kind.as_str(), m.spec.subject.name);
    let role = m.spec.role.as_str();
    let ns = m.namespace().unwrap_or_default();
    match grant {
        Grant::Active => {
            conds.set(
                "Ready",
                true,
                "Bound",
                format!("{who} holds {role} through RoleBinding {binding_name}"),
            );
            conds.set(
                "Duplicate",
                false,
                "Unique",
                "no other membership gives this subject this role",
            );
        }
        Grant::Expired => {
            // What the spec asks for: kstatus (Flux) reads it as done, not as waiting.
            conds.set(
                "Ready",
                true,
                "Expired",
                format!(
                    "expired at {}; set spec.expirationTime later (or remove it) to restore",
                    m.spec
                        .expiration_time
                        .as_ref()
                        .map(|t| t.0.to_string())
                        .unwrap_or_default()
                ),
            );
        }
        Grant::Revoked => {
            conds.set(
                "Ready",
                true,
                "Revoked",
                "revoked when the project was deleted or moved; recover the project to restore it",
            );
        }
        Grant::Pending => {
            let msg = format!(
                "waiting for {who} to accept: they set the annotation tenancy.dev/accept: \"true\" on this membership"
            );
            conds.set("Ready", false, "InvitationPending", msg.clone());
            conds.set("Reconciling", true, "InvitationPending", msg);
        }
        Grant::Duplicate(other) => {
            conds.set(
                "Ready",
                false,
                "Duplicate",
                format!("{who} already holds {role} through membership {other}; delete this one"),
            );
            conds.set(
                "Duplicate",
                true,
                "Duplicate",
                format!("duplicate of membership {other}"),
            );
            conds.set(
                "Stalled",
                true,
                "Duplicate",
                format!("{who} already holds {role} through membership {other}; delete this one"),
            );
        }
        Grant::Refused(why) => {
            conds.set(
                "Ready",
                false,
                "NotAllowed",
                format!("nothing is bound: {why}"),
            );
            conds.set(
                "Stalled",
                true,
                "NotAllowed",
                format!("nothing is bound: {why}"),
            );
        }
        // Revoked by the soft delete of its project: what deleting the project asked for, until
        // a recovery brings it back.
        Grant::NoProject if access::held_phase(m) == Some(crate::api::MembershipPhase::Revoked) => {
            conds.set(
                "Ready",
                true,
                "Revoked",
                format!("revoked when project {ns} was deleted; recover the project to restore it"),
            );
        }
        Grant::NoProject | Grant::Deleting => {
            let msg = format!(
                "namespace {ns} is not the namespace of an active project; nothing is bound"
            );
            conds.set("Ready", false, "ProjectNotFound", msg.clone());
            conds.set("Stalled", true, "ProjectNotFound", msg);
        }
    }
    let status = ProjectMembershipStatus {
        observed_generation: m.metadata.generation,
        // Without a project the phase it had stays (Revoked by a soft delete, until recovery).
        phase: grant.phase().or(if matches!(grant, Grant::NoProject) {
            access::held_phase(m)
        } else {
            None
        }),
        role_binding: (*grant == Grant::Active).then_some(binding_name),
        conditions: conds.finish(),
    };
    // Only an active grant ends by time alone (at its expiry instant). A duplicate or refused
    // one hangs on its siblings and namespaces: looked at again within the hour as well. The
    // rest change only when an object does, which their triggers hear of; a wake scheduled for
    // nothing costs kube's scheduler ~0.5 KB per membership.
    let wake = match (grant, m.spec.expiration_time.as_ref()) {
        (Grant::Active, Some(t)) => Some(lifecycle::until(now, t.0)),
        (Grant::Duplicate(_) | Grant::Refused(_), _) => Some(Duration::from_secs(3600)),
        _ => None,
    };
    let want = access::phase_marker(status.phase);
    let marker = (m
        .annotations()
        .get(crate::desired::annotations::PHASE)
        .map(String::as_str)
        != want)
        .then_some(want);
    MembershipPlan {
        binding,
        invitation,
        status: Some(status),
        marker,
        wake,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::MembershipPhase;

    fn membership(expires: Option<&str>, phase: Option<&str>) -> ProjectMembership {
        let mut v = serde_json::json!({
            "apiVersion": "tenancy.dev/v1alpha1", "kind": "ProjectMembership",
            "metadata": {"name": "ned", "namespace": "web", "uid": "uid-ned", "generation": 3},
            "spec": {"subject": {"kind": "User", "name": "ned"}, "role": "Administrator"},
        });
        if let Some(e) = expires {
            v["spec"]["expirationTime"] = e.into();
        }
        if let Some(p) = phase {
            v["status"] = serde_json::json!({"phase": p});
        }
        serde_json::from_value(v).unwrap()
    }

    /// The marker follows the phase the status holds (Pending and Revoked only), written only
    /// when it differs; a membership restored without status keeps the phase its marker says.
    #[test]
    fn the_phase_marker_follows_the_status_and_stands_in_for_a_lost_one() {
        let now: Timestamp = "2027-01-01T12:00:00Z".parse().unwrap();
        let roles = RoleNames::default();
        let marked = |phase: Option<&str>, marker: Option<&str>| {
            let mut m = membership(None, phase);
            if let Some(v) = marker {
                m.annotations_mut()
                    .insert(crate::desired::annotations::PHASE.into(), v.into());
            }
            m
        };
        // (grant, status phase, marker, the marker change planned, the status phase planned)
        type Case = (
            Grant,
            Option<&'static str>,
            Option<&'static str>,
            Option<Option<&'static str>>,
            Option<MembershipPhase>,
        );
        use MembershipPhase::*;
        let cases: [Case; 7] = [
            (
                Grant::Pending,
                None,
                None,
                Some(Some("Pending")),
                Some(Pending),
            ),
            (
                Grant::Pending,
                Some("Pending"),
                Some("Pending"),
                None,
                Some(Pending),
            ),
            (
                Grant::Active,
                Some("Pending"),
                Some("Pending"),
                Some(None),
                Some(Active),
            ),
            (Grant::Active, None, None, None, Some(Active)),
            (
                Grant::Revoked,
                Some("Revoked"),
                None,
                Some(Some("Revoked")),
                Some(Revoked),
            ),
            // Restored without status, its project not (yet) there: still Revoked.
            (Grant::NoProject, None, Some("Revoked"), None, Some(Revoked)),
            (
                Grant::Expired,
                None,
                Some("Pending"),
                Some(None),
                Some(Expired),
            ),
        ];
        for (grant, phase, marker, change, planned) in cases {
            let m = marked(phase, marker);
            let plan = plan(&m, &grant, &roles, now);
            assert_eq!(plan.marker, change, "{grant:?} {phase:?} {marker:?}");
            assert_eq!(plan.status.unwrap().phase, planned, "{grant:?}");
        }
        // Where status and marker disagree, the status decides.
        let m = marked(Some("Active"), Some("Pending"));
        assert_eq!(access::held_phase(&m), Some(Active));
        // Without status, the marker does.
        for (marker, held) in [
            (Some("Pending"), Some(Pending)),
            (Some("Revoked"), Some(Revoked)),
            (Some("Active"), None),
            (Some("nonsense"), None),
            (None, None),
        ] {
            assert_eq!(
                access::held_phase(&marked(None, marker)),
                held,
                "{marker:?}"
            );
        }
    }

    #[test]
    fn each_grant_binds_invites_and_reports_what_it_should() {
        let now: Timestamp = "2027-01-01T12:00:00Z".parse().unwrap();
        let roles = RoleNames::default();
        use MembershipPhase::*;
        // grant, phase held, binds, invites, phase, Ready's reason, and what kstatus (Flux) makes
        // of it: Current (Ready=True), InProgress (Reconciling=True) or Failed (Stalled=True).
        type Case = (
            Grant,
            Option<&'static str>,
            bool,
            bool,
            Option<MembershipPhase>,
            &'static str,
            &'static str,
        );
        let cases: [Case; 8] = [
            (
                Grant::Active,
                None,
                true,
                false,
                Some(Active),
                "Bound",
                "Current",
            ),
            // Expired and revoked are what was asked for: done, not waiting.
            (
                Grant::Expired,
                None,
                false,
                false,
                Some(Expired),
                "Expired",
                "Current",
            ),
            (
                Grant::Revoked,
                None,
                false,
                false,
                Some(Revoked),
                "Revoked",
                "Current",
            ),
            (
                Grant::Pending,
                None,
                false,
                true,
                Some(Pending),
                "InvitationPending",
                "InProgress",
            ),
            (
                Grant::Duplicate("older".into()),
                None,
                false,
                false,
                None,
                "Duplicate",
                "Failed",
            ),
            (
                Grant::Refused("SA rule".into()),
                None,
                false,
                false,
                None,
                "NotAllowed",
                "Failed",
            ),
            (
                Grant::NoProject,
                None,
                false,
                false,
                None,
                "ProjectNotFound",
                "Failed",
            ),
            // Without a project, the phase a soft delete wrote stays.
            (
                Grant::NoProject,
                Some("Revoked"),
                false,
                false,
                Some(Revoked),
                "Revoked",
                "Current",
            ),
        ];
        for (grant, held, binds, invites, phase, reason, health) in cases {
            let m = membership(None, held);
            let plan = plan(&m, &grant, &roles, now);
            assert_eq!(plan.binding.is_some(), binds, "{grant:?}");
            assert_eq!(plan.invitation.is_some(), invites, "{grant:?}");
            let status = plan.status.expect("a status");
            assert_eq!(status.phase, phase, "{grant:?}");
            assert_eq!(status.observed_generation, Some(3));
            let ready = status
                .conditions
                .iter()
                .find(|c| c.type_ == "Ready")
                .unwrap();
            assert_eq!(ready.reason, reason, "{grant:?}");
            assert_eq!(
                crate::desired::conditions::kstatus(&status.conditions),
                health,
                "{grant:?}"
            );
            assert_eq!(status.role_binding.is_some(), binds);
        }
        let active = plan(&membership(None, None), &Grant::Active, &roles, now);
        assert_eq!(
            active.binding.unwrap().role_ref.name,
            "tenancy:project-administrator"
        );
    }

    #[test]
    fn a_membership_being_deleted_keeps_no_access_and_writes_no_status() {
        let now: Timestamp = "2027-01-01T12:00:00Z".parse().unwrap();
        let plan = plan(
            &membership(None, Some("Active")),
            &Grant::Deleting,
            &RoleNames::default(),
            now,
        );
        assert!(plan.binding.is_none() && plan.invitation.is_none() && plan.status.is_none());
    }

    #[test]
    fn an_active_membership_wakes_at_its_expiry_instant() {
        let now: Timestamp = "2027-01-01T12:00:00Z".parse().unwrap();
        let roles = RoleNames::default();
        let m = membership(Some("2027-01-01T12:00:05Z"), None);
        assert_eq!(
            plan(&m, &Grant::Active, &roles, now).wake,
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            plan(&m, &Grant::Expired, &roles, now).wake,
            None,
            "expired: nothing more happens by time alone"
        );
        let open_ended = membership(None, None);
        assert_eq!(
            plan(&open_ended, &Grant::Active, &roles, now).wake,
            None,
            "no expiry: nothing to wake for"
        );
        assert_eq!(
            plan(&m, &Grant::Duplicate("other".into()), &roles, now).wake,
            Some(Duration::from_secs(3600)),
            "a duplicate hangs on its siblings: looked at again within the hour"
        );
    }
}
