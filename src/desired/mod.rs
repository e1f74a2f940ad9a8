//! Pure functions from (Project, Customer, memberships, config) to the objects the cluster should
//! hold. Nothing here talks to the cluster; everything here has unit tests.

pub mod access;
pub mod cost;
pub mod namespace;
pub mod quantity;
pub mod quota;

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};

use crate::api::{Customer, Project, ProjectMembership};

/// Field manager for every server-side apply the operator makes.
pub const FIELD_MANAGER: &str = "tenancy-operator";

/// Label keys and values the operator puts on what it creates.
pub mod labels {
    pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
    pub const MANAGED_BY_VALUE: &str = "tenancy-operator";
    /// On a namespace and every child: the project it belongs to.
    pub const PROJECT: &str = "tenancy.dev/project";
    /// On a namespace: the UID of the project incarnation it was created for or adopted by. A
    /// namespace belongs to that one project: a later Project of the same name is not given it
    /// unless staff say so (annotation `tenancy.dev/adopt-namespace`).
    pub const PROJECT_UID: &str = "tenancy.dev/project-uid";
    /// On a namespace: the customer its project belongs to.
    pub const CUSTOMER: &str = "tenancy.dev/customer";
    /// On a namespace: `active` or `terminated` (soft-deleted).
    pub const STATE: &str = "tenancy.dev/state";
    /// On a namespace: `true` once the project's end date has passed.
    pub const FINISHED: &str = "tenancy.dev/finished";
    /// On a child: which part of the project it implements (quota, limits, membership, owner,
    /// support, access).
    pub const PART: &str = "tenancy.dev/part";
    /// On a membership's RoleBinding: the membership's name (or a token of it when too long).
    pub const MEMBERSHIP: &str = "tenancy.dev/membership";
    /// Selector of everything the operator manages.
    pub const MANAGED_SELECTOR: &str = "app.kubernetes.io/managed-by=tenancy-operator";
}

/// Annotation keys.
pub mod annotations {
    /// On a membership: who created it (recorded by the webhook).
    pub const CREATED_BY: &str = "tenancy.dev/created-by";
    /// On a project: who last changed its end date (recorded by the webhook).
    pub const END_DATE_REQUESTED_BY: &str = "tenancy.dev/end-date-requested-by";
    /// On a soft-deleted project's namespace: the archive record (JSON).
    pub const ARCHIVE: &str = "tenancy.dev/archive";
    /// On a membership: the invited subject accepts the invitation with `"true"`.
    pub const ACCEPT: &str = "tenancy.dev/accept";
    /// On a project being deleted: who deleted it (recorded by the webhook).
    pub const DELETED_BY: &str = "tenancy.dev/deleted-by";
    /// On a project, set by staff only: adopt a namespace that this project incarnation did not
    /// create (an archive of another customer, or a namespace whose project vanished without its
    /// soft delete).
    pub const ADOPT_NAMESPACE: &str = "tenancy.dev/adopt-namespace";
    /// The annotations only the webhook writes (tenants can neither set nor change them).
    pub const AUDIT: [&str; 3] = [CREATED_BY, END_DATE_REQUESTED_BY, DELETED_BY];
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
#[derive(Clone, Debug, Default)]
pub struct Config {
    pub roles: RoleNames,
    /// The price list for cost estimates (none: no costs in status).
    pub prices: Option<cost::Prices>,
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
