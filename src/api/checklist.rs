//! `Checklist`: questions a customer's new projects answer before they are created, with the
//! answers that need a review by staff.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::conditions_schema;

/// Questions a project answers (`Project.spec.checklistAnswers`) when its customer names this
/// checklist (`Customer.spec.projectChecklist`). Staff manage checklists.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, Default, KubeSchema)]
#[kube(
    group = "tenancy.dev",
    doc = "Questions a project answers when its customer names this checklist; answers may need a review by staff.",
    version = "v1alpha1",
    kind = "Checklist",
    plural = "checklists",
    category = "tenancy",
    status = "ChecklistStatus",
    printcolumn = r#"{"name":"Questions","type":"integer","jsonPath":".status.questions"}"#,
    printcolumn = r#"{"name":"Initially Visible","type":"string","jsonPath":".status.initialVisibleQuestions","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    validation = Rule::new("self.spec.questions.all(q, self.spec.questions.exists_one(o, o.id == q.id))").message("spec.questions: every id must be unique"),
    validation = Rule::new("self.spec.questions.all(q, !has(q.dependencies) || q.dependencies.all(d, self.spec.questions.exists(o, o.id == d.question)))").message("spec.questions[].dependencies[].question: must name a question of this checklist")
)]
#[serde(rename_all = "camelCase")]
pub struct ChecklistSpec {
    /// What the checklist is for, shown to whoever answers it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2000))]
    pub description: Option<String>,
    /// The questions, in the order they are asked.
    #[schemars(length(min = 1, max = 100))]
    pub questions: Vec<Question>,
}

/// One question.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.options) || size(self.options) == 0 || self.type in ['SingleSelect', 'MultiSelect']").message("options: only SingleSelect and MultiSelect questions have options; remove them"))]
#[x_kube(validation = Rule::new("!(self.type in ['SingleSelect', 'MultiSelect']) || (has(self.options) && size(self.options) > 0)").message("options: a SingleSelect or MultiSelect question needs at least one option"))]
#[x_kube(validation = Rule::new("(!has(self.minValue) && !has(self.maxValue)) || self.type == 'Number'").message("minValue, maxValue: only Number questions have a range"))]
#[x_kube(validation = Rule::new("!has(self.minValue) || !has(self.maxValue) || self.minValue <= self.maxValue").message("minValue must not be greater than maxValue"))]
#[x_kube(validation = Rule::new("(!has(self.allowedFileTypes) && !has(self.allowedMimeTypes) && !has(self.maxFileSizeMB) && !has(self.maxFilesCount)) || self.type in ['File', 'MultipleFiles']").message("allowedFileTypes, allowedMimeTypes, maxFileSizeMB, maxFilesCount: only File and MultipleFiles questions have file rules"))]
#[x_kube(validation = Rule::new("!has(self.dependencies) || self.dependencies.all(d, d.question != self.id)").message("dependencies[].question: a question cannot depend on itself"))]
pub struct Question {
    /// Stable identifier: the key of the answer in `spec.checklistAnswers`.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub id: String,
    /// The question as asked.
    #[schemars(length(min = 1, max = 2000))]
    pub description: String,
    /// Guidance shown when its guidance trigger matches (or always, with alwaysShowGuidance).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4000))]
    pub user_guidance: Option<String>,
    #[serde(rename = "type")]
    pub type_: QuestionType,
    /// A visible required question must be answered.
    #[serde(default)]
    pub required: bool,
    /// The choices of a SingleSelect or MultiSelect question.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    pub options: Vec<QuestionOption>,
    /// The smallest answer a Number question accepts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_value: Option<f64>,
    /// The largest answer a Number question accepts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_value: Option<f64>,
    /// File name endings accepted, e.g. `.pdf` (File, MultipleFiles).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 50))]
    pub allowed_file_types: Vec<String>,
    /// MIME types accepted, e.g. `application/pdf` (File, MultipleFiles).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 50))]
    pub allowed_mime_types: Vec<String>,
    /// The largest file accepted, in MB.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "maxFileSizeMB"
    )]
    pub max_file_size_mb: Option<f64>,
    /// The most files a MultipleFiles answer holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_files_count: Option<i32>,
    /// An answer matching this value (by `operator`, default Equals) needs a review by staff.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "any_value_schema")]
    pub review_answer_value: Option<serde_json::Value>,
    /// How the answer is compared with reviewAnswerValue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<Operator>,
    /// Any answer to this question needs a review by staff.
    #[serde(default)]
    pub always_requires_review: bool,
    /// An answer matching this value (by guidanceOperator, default Equals) shows userGuidance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "any_value_schema")]
    pub guidance_answer_value: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guidance_operator: Option<Operator>,
    /// Show userGuidance whenever the question is visible.
    #[serde(default)]
    pub always_show_guidance: bool,
    /// Conditions on earlier answers for this question to be asked; none: always asked.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10))]
    pub dependencies: Vec<Dependency>,
    /// And (default): every dependency must hold; Or: one is enough.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dependency_logic_operator: Option<LogicOperator>,
}

/// The kinds of answers.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum QuestionType {
    Boolean,
    Text,
    TextArea,
    Number,
    Date,
    SingleSelect,
    MultiSelect,
    File,
    MultipleFiles,
}

/// A choice of a select question.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct QuestionOption {
    #[schemars(length(min = 1, max = 63))]
    pub id: String,
    #[schemars(length(min = 1, max = 500))]
    pub label: String,
    #[serde(default)]
    pub order: i32,
}

/// How an answer is compared with a value.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum Operator {
    Equals,
    NotEquals,
    /// A text holds the value; a MultiSelect answer holds the option id.
    Contains,
    /// The answer is one of the values (a list).
    In,
    NotIn,
    LessThan,
    GreaterThan,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum LogicOperator {
    And,
    Or,
}

/// A condition on another question's answer.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Dependency {
    /// The id of the question whose answer decides.
    #[schemars(length(min = 1, max = 63))]
    pub question: String,
    pub operator: Operator,
    #[schemars(schema_with = "any_value_schema")]
    pub value: serde_json::Value,
}

/// Any JSON value (an answer or a value to compare answers with).
pub fn any_value_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({"x-kubernetes-preserve-unknown-fields": true})
}

/// What the operator found of a checklist.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChecklistStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// How many questions it has.
    #[serde(default)]
    pub questions: i32,
    /// The questions asked before any answer (those without dependencies).
    #[serde(default)]
    pub initial_visible_questions: Vec<String>,
    /// Ready: the questions can be answered.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
}
