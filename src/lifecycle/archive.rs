//! The archive record a soft delete writes on the project's namespace, from which a recovery
//! restores the project's team.

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use serde::{Deserialize, Serialize};

use std::sync::Arc;

use crate::api::project::{ArchivedMember, RecoveryRecord};
use crate::api::vocabulary::{annotations, labels};
use crate::api::{MembershipPhase, ProjectMembership, ProjectMembershipSpec, ProjectSpec};

/// What was kept of a soft-deleted project (the namespace annotation `tenancy.dev/archive`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Archive {
    /// The project's spec at deletion.
    pub spec: ProjectSpec,
    /// The customer at deletion.
    pub customer: String,
    /// When the project was deleted.
    pub terminated_at: Time,
    /// Who deleted it, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terminated_by: Option<String>,
    /// The memberships that were active (or pending) at deletion.
    #[serde(default)]
    pub members: Vec<ArchivedMember>,
    /// The customer's retention at deletion: how long the namespace is kept should the customer
    /// be deleted too (while it exists, its current retention applies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_days: Option<i32>,
    /// The UID of the deleted Project.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_uid: Option<String>,
    /// The UID of the namespace the operator archived: only that very namespace is ever purged
    /// (a copy restored from a backup, under this name or another, is not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_uid: Option<String>,
}

/// The most an archive may take of its namespace's annotations (the apiserver allows 256 KiB
/// for all of them together).
pub const ARCHIVE_BUDGET: usize = 128 * 1024;

impl Archive {
    pub fn new(
        spec: ProjectSpec,
        terminated_at: Timestamp,
        memberships: &[&ProjectMembership],
    ) -> Self {
        Archive {
            customer: spec.customer.clone(),
            spec,
            terminated_at: Time(terminated_at),
            terminated_by: None,
            retention_days: None,
            project_uid: None,
            namespace_uid: None,
            members: memberships
                .iter()
                .map(|m| ArchivedMember {
                    name: m.name_any(),
                    subject: Some(m.spec.subject.clone()),
                    role: Some(m.spec.role),
                    expiration_time: m.spec.expiration_time.clone(),
                    created_by: m.annotations().get(annotations::CREATED_BY).cloned(),
                })
                .collect(),
        }
    }

    /// The archive within [`ARCHIVE_BUDGET`]: when the full record of every member does not fit,
    /// only their names are kept (the memberships stay in the namespace with everything else, so
    /// a recovery loses nothing). The webhook bounds the memberships of a project so that the
    /// names always fit.
    pub fn within_budget(mut self) -> Self {
        if self.to_annotation().len() > ARCHIVE_BUDGET {
            for m in &mut self.members {
                m.subject = None;
                m.role = None;
                m.expiration_time = None;
                m.created_by = None;
            }
        }
        self
    }

    /// The archive on a namespace, if it is a soft-deleted project's.
    pub fn of(namespace: &Namespace) -> Option<Archive> {
        if !is_archived(namespace) {
            return None;
        }
        serde_json::from_str(namespace.annotations().get(annotations::ARCHIVE)?).ok()
    }

    pub fn to_annotation(&self) -> String {
        serde_json::to_string(self).expect("an archive always serializes")
    }

    /// When the namespace may be purged for good.
    pub fn purge_after(&self, retention_days: i32) -> Timestamp {
        self.terminated_at
            .0
            .checked_add(jiff::SignedDuration::from_hours(
                24 * i64::from(retention_days.max(0)),
            ))
            .unwrap_or(self.terminated_at.0)
    }
}

/// Whether a namespace is a soft-deleted project's (label `tenancy.dev/state=terminated`),
/// without reading its archive.
pub fn is_archived(namespace: &Namespace) -> bool {
    namespace.labels().get(labels::STATE).map(String::as_str) == Some("terminated")
}

/// Whether the purge may delete this namespace: only one the operator archived itself. It is
/// managed by the operator, named like the project it was made for, and it is the very namespace
/// the archive was written on (its UID, for archives that recorded it). A namespace merely
/// labelled like an archive (a restored copy, under this name or another) is never purged.
pub fn purgeable(namespace: &Namespace, archive: &Archive) -> bool {
    let name = namespace.metadata.name.as_deref().unwrap_or_default();
    let labels = namespace.labels();
    labels.get(labels::MANAGED_BY).map(String::as_str) == Some(labels::MANAGED_BY_VALUE)
        && labels.get(labels::PROJECT).map(String::as_str) == Some(name)
        && is_archived(namespace)
        && archive
            .namespace_uid
            .as_ref()
            .is_none_or(|uid| namespace.metadata.uid.as_ref() == Some(uid))
}

/// Default days a soft-deleted project's namespace is kept.
pub const DEFAULT_RETENTION_DAYS: i32 = 30;

/// What a recovery does for one member of the archive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Comeback {
    /// Active again (`spec.recovery.restoreTeamMembers`).
    Restore,
    /// Invited again: Pending until its subject accepts
    /// (`spec.recovery.sendInvitationsToPreviousMembers`).
    Invite,
    /// Not brought back: it has expired.
    SkipExpired,
}

/// What a recovery does for each member of the archive, in the archive's order. The team comes
/// back from the archive itself: a member whose membership is gone (a restore from a backup
/// cannot bring back the memberships of a project that does not exist) is brought back too,
/// from what the archive recorded. Expiry is judged on the membership when it is there (staff may
/// have extended it), else on the archive. Members left alone are not listed: neither option is
/// set, or the membership is gone and the archive kept only its name.
pub fn comebacks(
    archive: &Archive,
    memberships: &[Arc<ProjectMembership>],
    restore: bool,
    invite: bool,
    now: Timestamp,
) -> Vec<(String, Comeback)> {
    archive
        .members
        .iter()
        .filter_map(|a| {
            let expiration = match memberships.iter().find(|m| m.name_any() == a.name) {
                Some(m) => m.spec.expiration_time.as_ref(),
                None if a.subject.is_some() && a.role.is_some() => a.expiration_time.as_ref(),
                None => return None,
            };
            let comeback = if crate::desired::access::expired(expiration, now) {
                Comeback::SkipExpired
            } else if restore {
                Comeback::Restore
            } else if invite {
                Comeback::Invite
            } else {
                return None;
            };
            Some((a.name.clone(), comeback))
        })
        .collect()
}

/// A step of a recorded recovery still to be taken.
#[derive(Clone, Debug)]
pub enum Remaining {
    /// This membership is still Revoked: give it this phase.
    Phase(Arc<ProjectMembership>, MembershipPhase),
    /// There is no membership of this name: create this one, from the archive, then give it this
    /// phase.
    Create(Box<ProjectMembership>, MembershipPhase),
}

/// What is left to do of a recorded recovery: each member it restores (Active) or invites
/// (Pending) whose membership is still Revoked, or is missing (made again from the archive; an
/// invitation carries the `tenancy.dev/phase: Pending` marker from the start, so it grants
/// nothing before its subject accepts). Empty once the team is back: a pass that failed midway
/// is finished by the next.
pub fn remaining(
    record: &RecoveryRecord,
    archive: &Archive,
    namespace: &str,
    memberships: &[Arc<ProjectMembership>],
) -> Vec<Remaining> {
    let wanted = (record.restored.iter().map(|n| (n, MembershipPhase::Active)))
        .chain(record.invited.iter().map(|n| (n, MembershipPhase::Pending)));
    wanted
        .filter_map(
            |(name, phase)| match memberships.iter().find(|m| m.name_any() == *name) {
                Some(m) => (crate::desired::access::held_phase(m)
                    == Some(MembershipPhase::Revoked))
                .then(|| Remaining::Phase(m.clone(), phase)),
                None => {
                    let a = archive.members.iter().find(|a| a.name == *name)?;
                    let mut m = ProjectMembership::new(
                        name,
                        ProjectMembershipSpec {
                            subject: a.subject.clone()?,
                            role: a.role?,
                            expiration_time: a.expiration_time.clone(),
                        },
                    );
                    m.metadata.namespace = Some(namespace.to_string());
                    if let Some(by) = &a.created_by {
                        m.annotations_mut()
                            .insert(annotations::CREATED_BY.into(), by.clone());
                    }
                    if phase == MembershipPhase::Pending {
                        m.annotations_mut()
                            .insert(annotations::PHASE.into(), "Pending".into());
                    }
                    Some(Remaining::Create(Box::new(m), phase))
                }
            },
        )
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{ProjectMembershipSpec, ProjectRole, Subject, SubjectKind};

    #[test]
    fn archive_round_trips_through_the_namespace_annotation() {
        let spec: ProjectSpec =
            serde_json::from_value(serde_json::json!({"customer": "acme"})).unwrap();
        let mut m = ProjectMembership::new(
            "alice",
            ProjectMembershipSpec {
                subject: Subject {
                    kind: SubjectKind::User,
                    name: "alice".into(),
                    namespace: None,
                },
                role: ProjectRole::Member,
                expiration_time: None,
            },
        );
        m.annotations_mut()
            .insert(annotations::CREATED_BY.into(), "olga".into());
        let t: Timestamp = "2027-01-01T00:00:00Z".parse().unwrap();
        let archive = Archive::new(spec, t, &[&m]);
        let mut ns = Namespace::default();
        ns.labels_mut()
            .insert(labels::STATE.into(), "terminated".into());
        ns.annotations_mut()
            .insert(annotations::ARCHIVE.into(), archive.to_annotation());
        let back = Archive::of(&ns).unwrap();
        assert_eq!(back, archive);
        assert_eq!(back.members[0].created_by.as_deref(), Some("olga"));
        assert_eq!(back.purge_after(30).to_string(), "2027-01-31T00:00:00Z");
        ns.labels_mut()
            .insert(labels::STATE.into(), "active".into());
        assert!(
            Archive::of(&ns).is_none(),
            "only a terminated namespace holds an archive"
        );
    }

    #[test]
    fn a_large_archive_keeps_only_the_names() {
        let spec: ProjectSpec =
            serde_json::from_value(serde_json::json!({"customer": "acme"})).unwrap();
        let members: Vec<ProjectMembership> = (0..600)
            .map(|i| {
                ProjectMembership::new(
                    &format!("{i}-{}", "m".repeat(200)),
                    ProjectMembershipSpec {
                        subject: Subject {
                            kind: SubjectKind::User,
                            name: "u".repeat(250),
                            namespace: None,
                        },
                        role: ProjectRole::Member,
                        expiration_time: None,
                    },
                )
            })
            .collect();
        let refs: Vec<&ProjectMembership> = members.iter().collect();
        let t: Timestamp = "2027-01-01T00:00:00Z".parse().unwrap();
        let full = Archive::new(spec, t, &refs);
        assert!(full.to_annotation().len() > ARCHIVE_BUDGET);
        let fitted = full.within_budget();
        assert!(fitted.to_annotation().len() <= ARCHIVE_BUDGET);
        assert_eq!(fitted.members.len(), 600);
        assert!(fitted.members[0].subject.is_none());
    }

    #[test]
    fn recovery_brings_the_team_back_from_the_archive_itself() {
        use crate::api::ProjectMembershipStatus;
        let now: Timestamp = "2027-06-01T00:00:00Z".parse().unwrap();
        let member = |name: &str, until: Option<&str>| {
            let mut m = ProjectMembership::new(
                name,
                ProjectMembershipSpec {
                    subject: Subject {
                        kind: SubjectKind::User,
                        name: format!("{name}@example.com"),
                        namespace: None,
                    },
                    role: ProjectRole::Member,
                    expiration_time: until.map(|t| Time(t.parse().unwrap())),
                },
            );
            m.metadata.namespace = Some("web".into());
            m.annotations_mut()
                .insert(annotations::CREATED_BY.into(), "olga".into());
            m
        };
        let revoked = |m: ProjectMembership| {
            let mut m = m;
            m.status = Some(ProjectMembershipStatus {
                phase: Some(MembershipPhase::Revoked),
                ..Default::default()
            });
            Arc::new(m)
        };
        let spec: ProjectSpec =
            serde_json::from_value(serde_json::json!({"customer": "acme"})).unwrap();
        let archived = [
            member("kept", None),
            member("gone", None),
            member("expired-gone", Some("2027-01-01T00:00:00Z")),
            member("extended", Some("2027-01-01T00:00:00Z")),
        ];
        let mut archive = Archive::new(spec, now, &archived.iter().collect::<Vec<_>>());
        // Only names kept for one that is gone: nothing to make it again from.
        archive.members.push(ArchivedMember {
            name: "nameless".into(),
            subject: None,
            role: None,
            expiration_time: None,
            created_by: None,
        });
        // In the namespace: `kept` (Revoked), `extended` (Revoked, its expiry moved on by staff).
        let there = vec![
            revoked(member("kept", None)),
            revoked(member("extended", Some("2028-01-01T00:00:00Z"))),
        ];
        use Comeback::*;
        let all = ["kept", "gone", "expired-gone", "extended"];
        type Case<'a> = (&'a str, bool, bool, Vec<(&'a str, Comeback)>);
        let cases: [Case; 4] = [
            (
                "restoreTeamMembers",
                true,
                false,
                vec![
                    ("kept", Restore),
                    ("gone", Restore),
                    ("expired-gone", SkipExpired),
                    ("extended", Restore),
                ],
            ),
            (
                "sendInvitationsToPreviousMembers",
                false,
                true,
                vec![
                    ("kept", Invite),
                    ("gone", Invite),
                    ("expired-gone", SkipExpired),
                    ("extended", Invite),
                ],
            ),
            (
                "both: restoring wins",
                true,
                true,
                vec![
                    ("kept", Restore),
                    ("gone", Restore),
                    ("expired-gone", SkipExpired),
                    ("extended", Restore),
                ],
            ),
            (
                "neither: only the expired are recorded",
                false,
                false,
                vec![("expired-gone", SkipExpired)],
            ),
        ];
        for (what, restore, invite, want) in cases {
            let got = comebacks(&archive, &there, restore, invite, now);
            let got: Vec<(&str, Comeback)> = got.iter().map(|(n, c)| (n.as_str(), *c)).collect();
            assert_eq!(got, want, "{what}");
            assert!(got.iter().all(|(n, _)| all.contains(n)), "{what}");
        }

        // What is left to do: the Revoked membership gets its phase, the missing one is made
        // again from the archive (an invitation marked Pending from the start); once everything
        // is back, nothing.
        let record = |restored: &[&str], invited: &[&str]| RecoveryRecord {
            time: Time(now),
            terminated_at: Time(now),
            previous_customer: "acme".into(),
            restored: restored.iter().map(|s| s.to_string()).collect(),
            invited: invited.iter().map(|s| s.to_string()).collect(),
            skipped_expired: vec![],
        };
        let describe = |steps: Vec<Remaining>| -> Vec<String> {
            steps
                .into_iter()
                .map(|s| match s {
                    Remaining::Phase(m, p) => format!("{}: {p:?}", m.name_any()),
                    Remaining::Create(m, p) => format!(
                        "create {}/{} {} {:?} marker {:?} by {:?}: {p:?}",
                        m.namespace().unwrap_or_default(),
                        m.name_any(),
                        m.spec.subject.name,
                        m.spec.role,
                        m.annotations().get(annotations::PHASE),
                        m.annotations().get(annotations::CREATED_BY),
                    ),
                })
                .collect()
        };
        let back = |name: &str, phase: MembershipPhase| {
            let mut m = member(name, None);
            m.status = Some(ProjectMembershipStatus {
                phase: Some(phase),
                ..Default::default()
            });
            Arc::new(m)
        };
        type Row<'a> = (
            &'a str,
            RecoveryRecord,
            Vec<Arc<ProjectMembership>>,
            Vec<&'a str>,
        );
        let rows: [Row; 5] = [
            (
                "restored: one Revoked, one gone",
                record(&["kept", "gone"], &[]),
                there.clone(),
                vec![
                    "kept: Active",
                    "create web/gone gone@example.com Member marker None by Some(\"olga\"): Active",
                ],
            ),
            (
                "invited: one Revoked, one gone",
                record(&[], &["kept", "gone"]),
                there.clone(),
                vec![
                    "kept: Pending",
                    "create web/gone gone@example.com Member marker Some(\"Pending\") by Some(\"olga\"): Pending",
                ],
            ),
            (
                "a name-only member that is gone cannot be made again",
                record(&["nameless"], &[]),
                there.clone(),
                vec![],
            ),
            (
                "everything back",
                record(&["kept"], &["gone"]),
                vec![
                    back("kept", MembershipPhase::Active),
                    back("gone", MembershipPhase::Pending),
                ],
                vec![],
            ),
            (
                "made again, its status not written yet",
                record(&["gone"], &[]),
                vec![Arc::new(member("gone", None))],
                vec![],
            ),
        ];
        for (what, record, memberships, want) in rows {
            assert_eq!(
                describe(remaining(&record, &archive, "web", &memberships)),
                want,
                "{what}"
            );
        }
    }

    #[test]
    fn only_the_namespace_the_operator_archived_is_purged() {
        let spec: ProjectSpec =
            serde_json::from_value(serde_json::json!({"customer": "acme"})).unwrap();
        let t: Timestamp = "2027-01-01T00:00:00Z".parse().unwrap();
        let mut archive = Archive::new(spec, t, &[]);
        archive.namespace_uid = Some("ns-uid-1".into());
        let ns = |name: &str, uid: &str, project: &str| {
            let mut n = Namespace::default();
            n.metadata.name = Some(name.into());
            n.metadata.uid = Some(uid.into());
            for (k, v) in [
                (labels::MANAGED_BY, labels::MANAGED_BY_VALUE),
                (labels::PROJECT, project),
                (labels::STATE, "terminated"),
            ] {
                n.labels_mut().insert(k.into(), v.into());
            }
            n
        };
        assert!(purgeable(&ns("web", "ns-uid-1", "web"), &archive));
        assert!(
            !purgeable(&ns("web", "ns-uid-2", "web"), &archive),
            "a restored copy under the same name"
        );
        assert!(
            !purgeable(&ns("web-copy", "ns-uid-3", "web"), &archive),
            "a copy under another name"
        );
        let mut unmanaged = ns("web", "ns-uid-1", "web");
        unmanaged.labels_mut().remove(labels::MANAGED_BY);
        assert!(!purgeable(&unmanaged, &archive));
        archive.namespace_uid = None;
        assert!(
            purgeable(&ns("web", "any", "web"), &archive),
            "archives written before the UID was recorded"
        );
        assert!(!purgeable(&ns("web-copy", "any", "web"), &archive));
    }
}
