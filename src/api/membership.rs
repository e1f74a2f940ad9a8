//! `ProjectMembership`: one subject holding one role in one project, optionally until a time.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{Subject, conditions_schema};

/// One subject holding one role in one project, optionally until an expiration time.
///
/// Lives in the project's namespace. At `expirationTime` the access it grants ends at that
/// instant; moving the time later (or removing it) restores it.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "tenancy.dev",
    doc = "One subject holding one role in one project, optionally until an expiration time.",
    version = "v1alpha1",
    kind = "ProjectMembership",
    plural = "projectmemberships",
    shortname = "pm",
    category = "tenancy",
    namespaced,
    status = "ProjectMembershipStatus",
    printcolumn = r#"{"name":"Subject Kind","type":"string","jsonPath":".spec.subject.kind"}"#,
    printcolumn = r#"{"name":"Subject","type":"string","jsonPath":".spec.subject.name"}"#,
    printcolumn = r#"{"name":"Role","type":"string","jsonPath":".spec.role"}"#,
    printcolumn = r#"{"name":"Expires","type":"string","format":"date-time","jsonPath":".spec.expirationTime"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ProjectMembershipSpec {
    /// Who gets the role.
    pub subject: Subject,
    /// Manager (admin + manage memberships), Administrator (edit), or Member (view).
    pub role: ProjectRole,
    /// When the role ends (RFC 3339, e.g. `2027-01-31T17:00:00Z`). Omit, or set to null, for a
    /// permanent role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration_time: Option<Time>,
}

/// A role in a project.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, JsonSchema,
)]
pub enum ProjectRole {
    /// Everything in the namespace (built-in `admin`), and manages memberships.
    Manager,
    /// Creates and changes workloads (built-in `edit`); reads memberships.
    Administrator,
    /// Reads (built-in `view`); reads memberships.
    Member,
}

impl ProjectRole {
    pub fn as_str(self) -> &'static str {
        match self {
            ProjectRole::Manager => "Manager",
            ProjectRole::Administrator => "Administrator",
            ProjectRole::Member => "Member",
        }
    }
}

/// The observed state of a membership.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProjectMembershipStatus {
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Active, Expired, Revoked or Pending.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<MembershipPhase>,
    /// The RoleBinding that grants the role while Active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_binding: Option<String>,
    /// Ready, Duplicate, ...
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
}

/// Where a membership is in its life.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum MembershipPhase {
    /// The role is granted.
    Active,
    /// expirationTime has passed; nothing is granted until it is moved later.
    Expired,
    /// Taken away by a soft delete or a move without preserved permissions.
    Revoked,
    /// An invitation after recovery, waiting for the subject to accept it.
    Pending,
}
