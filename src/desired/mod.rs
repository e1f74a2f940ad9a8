//! Pure functions from (Project, Customer, memberships, config) to the objects the cluster should
//! hold. Nothing here talks to the cluster; everything here has unit tests.

pub mod access;
pub mod checklist;
pub mod conditions;
pub mod cost;
pub mod customer;
pub mod membership;
pub mod namespace;
pub mod project;
pub mod quantity;
pub mod quota;
pub mod usage;

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};

use crate::api::{Customer, Project, ProjectMembership};

/// Field manager for every server-side apply the operator makes.
pub const FIELD_MANAGER: &str = "tenancy-operator";

pub use crate::api::vocabulary::{annotations, labels};

/// A namespace's contents, summed over the counted kinds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NamespaceContents {
    /// Objects by kind label (`deployments.apps`); kinds with none are left out.
    pub counts: BTreeMap<String, i64>,
    pub cpu: quantity::Milli,
    pub memory: quantity::Milli,
    pub storage: quantity::Milli,
}

impl NamespaceContents {
    pub fn total(&self) -> i64 {
        self.counts.values().sum()
    }

    pub fn pods(&self) -> i64 {
        self.counts.get("pods").copied().unwrap_or(0)
    }
}

/// The ClusterRoles that project roles map to (names are configurable).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoleNames {
    pub manager: String,
    pub administrator: String,
    pub member: String,
}

impl Default for RoleNames {
    fn default() -> Self {
        RoleNames {
            manager: "tenancy:project-manager".into(),
            administrator: "tenancy:project-administrator".into(),
            member: "tenancy:project-member".into(),
        }
    }
}

impl RoleNames {
    pub fn for_role(&self, role: crate::api::ProjectRole) -> &str {
        match role {
            crate::api::ProjectRole::Manager => &self.manager,
            crate::api::ProjectRole::Administrator => &self.administrator,
            crate::api::ProjectRole::Member => &self.member,
        }
    }
}

/// What the pure builders need to know about the operator's configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub roles: RoleNames,
    /// The price list for cost estimates (none: no costs in status).
    pub prices: Option<cost::Prices>,
    /// `CreditLow` turns True when this percentage of a credit or less remains.
    pub credit_low_percent: u8,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            roles: RoleNames::default(),
            prices: None,
            credit_low_percent: 20,
        }
    }
}

/// Labels every child of a project carries.
pub fn child_labels(project: &str, part: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            labels::MANAGED_BY.to_string(),
            labels::MANAGED_BY_VALUE.to_string(),
        ),
        (labels::PROJECT.to_string(), project.to_string()),
        (labels::PART.to_string(), part.to_string()),
    ])
}

/// A controller owner reference to a Project, Customer or ProjectMembership.
pub fn owner_ref<K: Resource<DynamicType = ()>>(owner: &K) -> OwnerReference {
    OwnerReference {
        api_version: K::api_version(&()).into_owned(),
        kind: K::kind(&()).into_owned(),
        name: owner.name_any(),
        uid: owner.meta().uid.clone().unwrap_or_default(),
        controller: Some(true),
        // Not blocking: the operator never needs `update` on its owners' finalizers.
        block_owner_deletion: None,
    }
}

/// Metadata of a child object of a project.
pub fn child_meta(
    name: &str,
    namespace: Option<&str>,
    project: &Project,
    part: &str,
) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: namespace.map(str::to_string),
        labels: Some(child_labels(&project.name_any(), part)),
        owner_references: Some(vec![owner_ref(project)]),
        ..Default::default()
    }
}

/// A name of at most `max` characters made from `base`, with a hash suffix when it had to be
/// shortened so two long names never collide.
pub fn bounded_name(base: &str, max: usize) -> String {
    if base.len() <= max {
        return base.to_string();
    }
    let token = crate::api::name_token(base);
    let keep = max.saturating_sub(token.len() + 1);
    let mut cut = base[..keep].trim_end_matches(['-', '.', ':']).to_string();
    cut.push('-');
    cut.push_str(&token);
    cut
}

/// The customer named by a project, if it exists.
pub fn customer_of<'a>(
    project: &Project,
    customers: impl IntoIterator<Item = &'a Customer>,
) -> Option<&'a Customer> {
    customers
        .into_iter()
        .find(|c| c.name_any() == project.spec.customer)
}

/// The project a membership belongs to: the project named like the membership's namespace.
pub fn project_name_of(membership: &ProjectMembership) -> Option<String> {
    membership.namespace()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_names_stay_short_and_distinct() {
        let a = bounded_name(&format!("tenancy-member-{}", "a".repeat(300)), 253);
        let b = bounded_name(&format!("tenancy-member-{}b", "a".repeat(300)), 253);
        assert!(a.len() <= 253 && b.len() <= 253);
        assert_ne!(a, b);
        assert_eq!(bounded_name("short", 63), "short");
    }
}
