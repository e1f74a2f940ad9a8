//! The archive record a soft delete writes on the project's namespace, from which a recovery
//! restores the project's team.

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use serde::{Deserialize, Serialize};

use crate::api::project::ArchivedMember;
use crate::api::{ProjectMembership, ProjectSpec};
use crate::desired::{annotations, labels};

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
}

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
            members: memberships
                .iter()
                .map(|m| ArchivedMember {
                    name: m.name_any(),
                    subject: m.spec.subject.clone(),
                    role: m.spec.role,
                    expiration_time: m.spec.expiration_time.clone(),
                    created_by: m.annotations().get(annotations::CREATED_BY).cloned(),
                })
                .collect(),
        }
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

/// Default days a soft-deleted project's namespace is kept.
pub const DEFAULT_RETENTION_DAYS: i32 = 30;

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
}
