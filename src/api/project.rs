//! `Project`: a workspace of a customer that owns exactly one namespace of the same name.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{ResourceList, Subject, conditions_schema, date_schema, resource_list_schema};
use super::oecd::OecdFos2007Code;

/// A workspace of a customer: a namespace with its team, quota, end date and cost.
///
/// Deleting a Project is a soft delete: the namespace is kept frozen and archived, and applying
/// a Project of the same name again recovers it.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "tenancy.dev",
    doc = "A workspace of a customer: a namespace with its team, quota, end date and cost. Deleting it is a soft delete; applying it again recovers it.",
    version = "v1alpha1",
    kind = "Project",
    plural = "projects",
    shortname = "proj",
    category = "tenancy",
    status = "ProjectStatus",
    selectable = ".spec.customer",
    printcolumn = r#"{"name":"Customer","type":"string","jsonPath":".spec.customer"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Namespace","type":"string","jsonPath":".status.namespace"}"#,
    printcolumn = r#"{"name":"Resources","type":"integer","jsonPath":".status.resourcesCount"}"#,
    printcolumn = r#"{"name":"Members","type":"integer","jsonPath":".status.members.total"}"#,
    printcolumn = r#"{"name":"End Date","type":"string","format":"date","jsonPath":".spec.endDate"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status","priority":1}"#,
    printcolumn = r#"{"name":"Display Name","type":"string","jsonPath":".spec.displayName","priority":1}"#,
    printcolumn = r#"{"name":"Cost/Month","type":"string","jsonPath":".status.cost.monthly","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    validation = Rule::new("size(self.metadata.name) <= 63").message("metadata.name: a project name becomes its namespace name, so it must be at most 63 characters"),
    validation = Rule::new("self.metadata.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')").message("metadata.name: a project name becomes its namespace name, so it must be a DNS label: lowercase letters, digits and '-', starting and ending with a letter or digit (no dots)"),
)]
#[x_kube(validation = Rule::new("!has(self.startDate) || !has(self.endDate) || self.endDate >= self.startDate").message("spec.endDate must not be before spec.startDate"))]
#[serde(rename_all = "camelCase")]
pub struct ProjectSpec {
    /// The customer (organisation) this project belongs to: the name of a Customer object.
    /// Changing it moves the project to another customer, which only staff may do.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub customer: String,

    /// Human-readable project name, as shown in portals (seed: name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 500))]
    pub display_name: Option<String>,

    /// Free-text description of the project.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    pub description: Option<String>,

    /// Project type, a free label chosen by the platform team (e.g. `research`, `teaching`).
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 150))]
    pub project_type: Option<String>,

    /// What sort of project this is: default, course or public.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<ProjectKind>,

    /// Identifier of this project in an external system (billing, CMDB, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 255))]
    pub backend_id: Option<String>,

    /// First day of the project (`YYYY-MM-DD`, UTC). Before it the namespace's quota holds
    /// `pods: 0`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "date_schema")]
    pub start_date: Option<String>,

    /// Last day of the project (`YYYY-MM-DD`, UTC). After it the project is Finished; after the
    /// grace period the expirationPolicy runs. Moving it later undoes a suspension.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "date_schema")]
    pub end_date: Option<String>,

    /// Field of science by the OECD Frascati 2007 classification, e.g. `"1.2"` for computer and
    /// information sciences.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oecd_fos_2007_code: Option<OecdFos2007Code>,

    /// Whether this is an industry (as opposed to academic) project.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_industry: Option<bool>,

    /// URL of an image (logo) for the project.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048), regex(pattern = r"^https?://"))]
    pub image: Option<String>,

    /// Most ServiceAccounts the namespace may hold, not counting its `default` ServiceAccount.
    /// Enforced by the namespace's ResourceQuota. Staff only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 10000))]
    pub max_service_accounts: Option<i32>,

    /// Notes visible to staff. Only staff may write them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    pub staff_notes: Option<String>,

    /// Days after endDate before the expirationPolicy runs. Overrides the customer's
    /// gracePeriodDays. Staff only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 3650))]
    pub grace_period_days: Option<i32>,

    /// Credit granted to the project, in the price list's currency (seed: project_credit): a
    /// balance the project's accrued cost consumes over its whole life (it does not renew each
    /// month); raising it adds to what remains. Owners of the customer and staff only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0))]
    pub credit: Option<f64>,

    /// What happens when the credit runs out: None (conditions only), Notify (default: also
    /// Warning Events) or Suspend (also suspended as at the end date, until more credit resumes
    /// it). Owners of the customer and staff only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credit_exhausted_policy: Option<super::usage::CreditExhaustedPolicy>,

    /// Resource quota of the project's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<ProjectQuota>,

    /// Defaults and bounds for containers in the project's namespace (a LimitRange).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit_range: Option<ContainerLimits>,

    /// What happens when endDate plus the grace period has passed: Suspend (default) scales
    /// workloads to zero and remembers their size, Delete removes workloads, None does nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration_policy: Option<ExpirationPolicy>,

    /// On a move to another customer, keep the project's memberships (default true). With false
    /// every membership is revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preserve_permissions_on_move: Option<bool>,

    /// How to bring back the team when this Project recovers a soft-deleted one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery: Option<RecoveryOptions>,

    /// Answers to the customer's checklist (`Customer.spec.projectChecklist`), by question id:
    /// `true`/`false` (Boolean), a number (Number), a string (Text, TextArea, Date `YYYY-MM-DD`),
    /// an option id (SingleSelect), a list of option ids (MultiSelect), a file reference
    /// `{name, url | secretKeyRef | configMapKeyRef, mimeType, sizeMB}` (File) or a list of them
    /// (MultipleFiles).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "answers_schema")]
    pub checklist_answers: BTreeMap<String, serde_json::Value>,

    /// Staff's decision on answers that need a review. Staff only; the webhook records who and
    /// when (annotations `tenancy.dev/checklist-reviewed-by`, `-at`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checklist_review: Option<ChecklistReview>,
}

fn answers_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "additionalProperties": {"x-kubernetes-preserve-unknown-fields": true},
    })
}

/// Staff's decision on a project's checklist answers.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChecklistReview {
    pub decision: ReviewDecision,
    /// Why, shown in the project's status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2000))]
    pub comment: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ReviewDecision {
    Approved,
    Rejected,
}

/// Where a project stands with its customer's checklist.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChecklistState {
    /// The checklist's name.
    pub name: String,
    /// Visible questions answered.
    pub answered: i32,
    /// Visible required questions.
    pub required: i32,
    /// The questions asked, given the answers.
    #[serde(default)]
    pub visible: Vec<String>,
    /// The answers that need a review by staff.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub needs_review: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<ReviewDecision>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reviewed_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reviewed_at: Option<String>,
}

/// What sort of project this is.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ProjectKind {
    #[default]
    Default,
    Course,
    Public,
}

/// What happens when a project's end date plus grace period has passed.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum ExpirationPolicy {
    /// Quota `pods: 0`, Deployments and StatefulSets scaled to 0 (sizes remembered), Jobs and
    /// CronJobs suspended. Undone when endDate moves later.
    #[default]
    Suspend,
    /// Workloads (Deployments, StatefulSets, DaemonSets, Jobs, CronJobs, Pods) are deleted.
    Delete,
    /// Nothing happens beyond marking the project Finished.
    None,
}

/// The namespace's ResourceQuota.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProjectQuota {
    /// Hard limits by resource name, as in a ResourceQuota (e.g. `requests.cpu: "4"`,
    /// `requests.memory: 8Gi`, `pods: "20"`, `requests.storage: 100Gi`). These count against the
    /// customer's quota.
    #[serde(default)]
    #[schemars(schema_with = "resource_list_schema")]
    pub hard: ResourceList,
}

/// Container defaults and bounds, applied as the namespace's LimitRange `tenancy-limits`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ContainerLimits {
    /// Default limits for a container that sets none (e.g. `cpu: 500m`, `memory: 512Mi`).
    #[serde(default, skip_serializing_if = "ResourceList::is_empty")]
    #[schemars(schema_with = "resource_list_schema")]
    pub default: ResourceList,
    /// Default requests for a container that sets none.
    #[serde(default, skip_serializing_if = "ResourceList::is_empty")]
    #[schemars(schema_with = "resource_list_schema")]
    pub default_request: ResourceList,
    /// Largest limits a container may set.
    #[serde(default, skip_serializing_if = "ResourceList::is_empty")]
    #[schemars(schema_with = "resource_list_schema")]
    pub max: ResourceList,
    /// Smallest requests a container may set.
    #[serde(default, skip_serializing_if = "ResourceList::is_empty")]
    #[schemars(schema_with = "resource_list_schema")]
    pub min: ResourceList,
}

/// How to bring back the previous team when recovering a soft-deleted project.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, KubeSchema)]
#[x_kube(validation = Rule::new("!(has(self.restoreTeamMembers) && self.restoreTeamMembers && has(self.sendInvitationsToPreviousMembers) && self.sendInvitationsToPreviousMembers)").message("recovery: choose restoreTeamMembers or sendInvitationsToPreviousMembers, not both"))]
#[serde(rename_all = "camelCase")]
pub struct RecoveryOptions {
    /// Reactivate the memberships the project had when it was deleted, except those that have
    /// expired since. Staff only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_team_members: Option<bool>,
    /// Re-create the previous memberships in phase Pending; each becomes Active when its subject
    /// accepts by setting the annotation `tenancy.dev/accept: "true"` on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send_invitations_to_previous_members: Option<bool>,
}

/// The observed state of a Project.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProjectStatus {
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Where the project is in its life.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<ProjectPhase>,
    /// Ready, NamespaceReady, AccessReady, QuotaReady, NamespaceConflict, InGracePeriod, ...
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
    /// The namespace the project owns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The customer's display fields, copied for `kubectl get` and portals.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer: Option<CustomerSummary>,
    /// Label of spec.oecdFos2007Code (e.g. "Computer and information sciences").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oecd_fos_2007_label: Option<String>,
    /// Number of counted resources in the namespace (seed: resources_count).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources_count: Option<i64>,
    /// Counted resources by kind, e.g. `deployments.apps: 2` (seed: marketplace_resource_count).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub resource_counts: BTreeMap<String, i64>,
    /// Members by role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub members: Option<MemberCounts>,
    /// The namespace's ResourceQuota as the cluster reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<QuotaStatus>,
    /// What the namespace's workloads request: cpu, memory, storage, pods.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub usage: BTreeMap<String, String>,
    /// The monthly cost of that usage, when the operator has a price list and the customer
    /// shows billing in its projects (`displayBillingInfoInProjects`); `kubectl get usage`
    /// shows it to owners and staff always.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<CostStatus>,
    /// The credit (`spec.credit`): consumed and remaining at `asOf`, when it falls low and runs
    /// out at the rate in force. Shown where `cost` is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credit: Option<super::usage::CreditStatus>,
    /// Grace period in force: spec.gracePeriodDays, else the customer's, else 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effective_grace_period_days: Option<i32>,
    /// The day after which the expirationPolicy runs: endDate plus the grace period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effective_end_date: Option<String>,
    /// Who last changed the end date (from the `tenancy.dev/end-date-requested-by` annotation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_date_requested_by: Option<String>,
    /// Set while the project is being soft-deleted (seed: termination_metadata).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub termination: Option<TerminationRecord>,
    /// What happened when this project recovered a soft-deleted one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery: Option<RecoveryRecord>,
    /// The last move to another customer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_move: Option<MoveRecord>,
    /// Workloads the Suspend policy scaled down, with the replicas to restore.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspension: Option<SuspensionRecord>,
    /// The customer's checklist: answered and required counts, visible questions, review.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checklist: Option<ChecklistState>,
}

/// Where a project is in its life.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ProjectPhase {
    /// Children are being created.
    Pending,
    /// Before startDate: the namespace exists, its quota holds `pods: 0`.
    Scheduled,
    /// In use.
    Active,
    /// After endDate, within the grace period.
    Finished,
    /// After endDate plus grace; the expirationPolicy has run.
    Expired,
    /// The namespace exists and was not created by this project; nothing is bound.
    Conflict,
    /// Being soft-deleted.
    Terminating,
    /// Checklist answers wait for a review by staff: no namespace, no access yet.
    PendingReview,
    /// Staff rejected the checklist answers: no namespace, no access.
    Rejected,
}

/// A customer's display fields, copied into each of its projects.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CustomerSummary {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub native_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abbreviation: Option<String>,
    #[serde(default)]
    pub display_billing_info_in_projects: bool,
}

/// Members by role.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemberCounts {
    pub managers: i32,
    pub administrators: i32,
    pub members: i32,
    /// Memberships waiting for their subject to accept an invitation.
    pub pending: i32,
    /// Active memberships of any role.
    pub total: i32,
}

/// The monthly cost estimate of what the workloads request, by the operator's price list
/// (seed: billing_price_estimate).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CostStatus {
    /// The price list's currency, e.g. EUR.
    pub currency: String,
    /// The estimate per month, e.g. "14.50".
    pub monthly: String,
    /// The estimate per month by priced resource (cpu, memory, storage, pods).
    #[serde(default)]
    pub by_resource: BTreeMap<String, String>,
}

/// A ResourceQuota's hard limits and usage.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct QuotaStatus {
    #[serde(default)]
    pub hard: BTreeMap<String, String>,
    #[serde(default)]
    pub used: BTreeMap<String, String>,
}

/// A member at the time the project was deleted. An archive too large for its annotation keeps
/// only the names (the memberships themselves stay in the namespace, Revoked).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ArchivedMember {
    /// The membership's name.
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Subject>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<super::membership::ProjectRole>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
}

/// What was archived when the project was deleted (seed: termination_metadata).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TerminationRecord {
    pub time: Time,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_by: Option<String>,
    pub customer: String,
    /// When the archived namespace will be purged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purge_after: Option<Time>,
}

/// What happened on recovery.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecoveryRecord {
    pub time: Time,
    /// When the project had been deleted.
    pub terminated_at: Time,
    /// Customer at the time of deletion.
    pub previous_customer: String,
    /// Memberships made Active again.
    #[serde(default)]
    pub restored: Vec<String>,
    /// Memberships waiting for acceptance.
    #[serde(default)]
    pub invited: Vec<String>,
    /// Memberships not brought back because they had expired.
    #[serde(default)]
    pub skipped_expired: Vec<String>,
}

/// The last move of a project between customers.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MoveRecord {
    pub time: Time,
    pub from: String,
    pub to: String,
    pub preserved_permissions: bool,
}

/// Workloads scaled down by the Suspend policy.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SuspensionRecord {
    pub time: Option<Time>,
    /// `Deployment/name` or `StatefulSet/name` → replicas before suspension.
    #[serde(default)]
    pub replicas: BTreeMap<String, i32>,
    /// CronJobs that were suspended by the policy (and not by their owners).
    #[serde(default)]
    pub cron_jobs: Vec<String>,
    /// Jobs that were suspended by the policy (and not by their owners).
    #[serde(default)]
    pub jobs: Vec<String>,
}
