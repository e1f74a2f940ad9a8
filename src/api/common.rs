//! Types shared by the three kinds: subjects, conditions, quantity maps.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The API group of every kind here.
pub const GROUP: &str = "tenancy.dev";
/// The API version of every kind here.
pub const VERSION: &str = "v1alpha1";

/// What kind of identity a subject is.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, JsonSchema,
)]
pub enum SubjectKind {
    /// A user as authenticated by the cluster (OIDC, client certificate, ...).
    User,
    /// A group of users as authenticated by the cluster.
    Group,
    /// A Kubernetes ServiceAccount; needs `namespace`.
    ServiceAccount,
}

impl SubjectKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SubjectKind::User => "User",
            SubjectKind::Group => "Group",
            SubjectKind::ServiceAccount => "ServiceAccount",
        }
    }
}

/// An identity that can be given a role: a user, a group or a ServiceAccount.
#[derive(
    Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, KubeSchema,
)]
#[x_kube(validation = Rule::new("self.kind != 'ServiceAccount' || (has(self.__namespace__) && self.__namespace__ != '')").message("a ServiceAccount subject needs namespace: set subject.namespace to the ServiceAccount's namespace"))]
#[x_kube(validation = Rule::new("self.kind == 'ServiceAccount' || !has(self.__namespace__)").message("namespace is only meaningful for a ServiceAccount subject: remove subject.namespace"))]
pub struct Subject {
    /// User, Group or ServiceAccount.
    pub kind: SubjectKind,
    /// The user name, group name or ServiceAccount name, exactly as the cluster authenticates it.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// The ServiceAccount's namespace. Required for, and only allowed with, kind ServiceAccount.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub namespace: Option<String>,
}

impl Subject {
    /// The name the apiserver's authorizer sees for this subject (used for impersonation,
    /// SubjectAccessReview and comparisons with an AdmissionReview's userInfo).
    pub fn username(&self) -> String {
        match self.kind {
            SubjectKind::ServiceAccount => format!(
                "system:serviceaccount:{}:{}",
                self.namespace.as_deref().unwrap_or_default(),
                self.name
            ),
            _ => self.name.clone(),
        }
    }

    /// A short, stable, DNS-safe token naming the subject, used in child object names.
    pub fn slug(&self) -> String {
        crate::api::name_token(&format!("{}:{}", self.kind.as_str(), self.username()))
    }
}

/// A subject holding a customer-level role, optionally until a point in time.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[x_kube(validation = Rule::new("self.kind != 'ServiceAccount' || (has(self.__namespace__) && self.__namespace__ != '')").message("a ServiceAccount subject needs namespace: set namespace to the ServiceAccount's namespace"))]
#[x_kube(validation = Rule::new("self.kind == 'ServiceAccount' || !has(self.__namespace__)").message("namespace is only meaningful for a ServiceAccount subject: remove namespace"))]
#[serde(rename_all = "camelCase")]
pub struct CustomerRoleHolder {
    /// User, Group or ServiceAccount.
    pub kind: SubjectKind,
    /// The user name, group name or ServiceAccount name, exactly as the cluster authenticates it.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// The ServiceAccount's namespace. Required for, and only allowed with, kind ServiceAccount.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub namespace: Option<String>,
    /// When the role ends (RFC 3339, UTC). At that instant its bindings are removed. Omit for a
    /// permanent role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration_time: Option<Time>,
}

impl CustomerRoleHolder {
    pub fn subject(&self) -> Subject {
        Subject {
            kind: self.kind,
            name: self.name.clone(),
            namespace: self.namespace.clone(),
        }
    }
}

/// Resource quantities by resource name, as in a ResourceQuota's `hard`
/// (e.g. `requests.cpu: "8"`, `limits.memory: 32Gi`, `pods: "50"`).
pub type ResourceList = BTreeMap<String, Quantity>;

/// Schema for a map of resource name to quantity, with a CEL rule so that a malformed
/// quantity is refused at admission with the field named.
pub fn resource_list_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "additionalProperties": {
            "x-kubernetes-int-or-string": true,
            "pattern": QUANTITY_PATTERN,
        },
        "x-kubernetes-validations": [{
            "rule": "self.all(k, k.size() > 0 && k.size() <= 253)",
            "message": "resource names must be 1 to 253 characters",
        }],
    })
}

/// The textual form of a non-negative Kubernetes quantity (`500m`, `2`, `1.5Gi`, `1e3`): quotas
/// and limits are never below 0 (a negative allocation would credit the customer's quota).
pub const QUANTITY_PATTERN: &str = r"^\+?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$";

/// Schema for `status.conditions`: a list keyed by `type`.
pub fn conditions_schema(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let mut schema = g.subschema_for::<Vec<Condition>>();
    let obj = schema.ensure_object();
    obj.insert("x-kubernetes-list-type".into(), "map".into());
    obj.insert(
        "x-kubernetes-list-map-keys".into(),
        serde_json::json!(["type"]),
    );
    schema
}

/// Schema for a calendar date (`YYYY-MM-DD`, UTC).
pub fn date_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({"type": "string", "format": "date", "maxLength": 10})
}
