//! `views.tenancy.dev`: the read API that shows each user what is theirs. Every operator replica
//! serves it from its watch caches through kube-apiserver's aggregation layer, so `kubectl get
//! myprojects` works for everyone and lists only the projects the requester may see.
//!
//! This module is the pure part: the [`Index`] built from the caches (who holds which role where,
//! decided by the very functions that write the RoleBindings), and what one viewer sees of it.
//! [`select`] parses and applies the portal's filters, [`table`] renders kubectl's tables, and
//! [`server`] answers HTTP.

pub mod select;
pub mod server;
pub mod table;
pub mod usage;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::ResourceExt;
use serde::Serialize;

use crate::api::project::{ArchivedMember, MemberCounts, ProjectKind};
use crate::api::{
    Customer, CustomerRoleHolder, Project, ProjectMembership, ProjectPhase, ProjectRole, Subject,
};
use crate::desired::access::{self, Grant, Requester};
use crate::desired::labels;
use crate::lifecycle::archive::{Archive, DEFAULT_RETENTION_DAYS};

pub const GROUP: &str = "views.tenancy.dev";
pub const VERSION: &str = "v1alpha1";
pub const API_VERSION: &str = "views.tenancy.dev/v1alpha1";
/// The phase of a soft-deleted (archived) project's item.
pub const TERMINATED: &str = "Terminated";

/// A role someone holds in a project, as the views name it.
#[derive(Serialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ViewRole {
    Manager,
    Administrator,
    Member,
    CustomerOwner,
    CustomerSupport,
    Staff,
}

impl ViewRole {
    pub fn as_str(self) -> &'static str {
        match self {
            ViewRole::Manager => "Manager",
            ViewRole::Administrator => "Administrator",
            ViewRole::Member => "Member",
            ViewRole::CustomerOwner => "CustomerOwner",
            ViewRole::CustomerSupport => "CustomerSupport",
            ViewRole::Staff => "Staff",
        }
    }

    fn of(role: ProjectRole) -> Self {
        match role {
            ProjectRole::Manager => ViewRole::Manager,
            ProjectRole::Administrator => ViewRole::Administrator,
            ProjectRole::Member => ViewRole::Member,
        }
    }
}

/// Who asks, and whether they are staff (`--staff-groups`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Viewer {
    pub requester: Requester,
    pub staff: bool,
}

/// The requester's access to one project, as the portal reports it.
#[derive(Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Access {
    pub roles: Vec<ViewRole>,
    /// The portal's `can_manage`: Manager, customer owner or staff.
    pub can_manage: bool,
    /// The portal's `can_admin`: Administrator, or staff.
    pub can_admin: bool,
}

impl Access {
    fn of(mut roles: Vec<ViewRole>) -> Self {
        roles.sort();
        roles.dedup();
        let has = |r: ViewRole| roles.contains(&r);
        Access {
            can_manage: has(ViewRole::Manager)
                || has(ViewRole::CustomerOwner)
                || has(ViewRole::Staff),
            can_admin: has(ViewRole::Administrator) || has(ViewRole::Staff),
            roles,
        }
    }
}

/// The project's display fields (its spec without quotas and staff notes).
#[derive(Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ProjectFields {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub project_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<ProjectKind>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_date: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_date: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub is_industry: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
}

impl ProjectFields {
    fn of(spec: &crate::api::ProjectSpec) -> Self {
        ProjectFields {
            display_name: spec.display_name.clone(),
            description: spec.description.clone(),
            project_type: spec.project_type.clone(),
            kind: spec.kind,
            backend_id: spec.backend_id.clone(),
            start_date: spec.start_date.clone(),
            end_date: spec.end_date.clone(),
            is_industry: spec.is_industry,
            image: spec.image.clone(),
        }
    }
}

/// The customer's display fields.
#[derive(Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CustomerFields {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub native_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub abbreviation: Option<String>,
}

/// What is known of a soft-deleted project.
#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Terminated {
    pub at: Time,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// When its namespace is purged for good; until then it can be recovered.
    pub purge_after: Time,
    pub previous_team: Vec<ArchivedMember>,
    /// The project's spec as archived (quota, limits and checklist answers included), from
    /// which those who may see the item (the customer's owners and support, and staff) can
    /// recover it without reading the namespace's archive.
    pub spec: crate::api::ProjectSpec,
}

#[derive(Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ViewStatus {
    /// The project's phase, or `Terminated` for a soft-deleted one.
    pub phase: String,
    /// Past its end date (Finished or Expired): what the portal's conceal_finished_projects hides.
    pub finished: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub effective_end_date: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub members: Option<MemberCounts>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_modified: Option<Time>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub terminated: Option<Terminated>,
}

/// One item of `myprojects`.
#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MyProject {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub metadata: ObjectMeta,
    pub spec: ProjectFields,
    pub customer: CustomerFields,
    pub status: ViewStatus,
    pub access: Access,
}

/// Where a role is held.
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
pub struct MemberScope {
    /// Project or Customer.
    pub kind: &'static str,
    pub name: String,
}

/// One item of `members`: a role holder in a project or a customer.
#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub metadata: ObjectMeta,
    pub subject: Subject,
    pub role: ViewRole,
    pub scope: MemberScope,
    pub customer: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expiration_time: Option<Time>,
    /// Active, Expired, Pending, Revoked, or Inactive (a duplicate, a refused subject, a project
    /// that binds nothing).
    pub phase: String,
}

/// A role held until a time (`None`: for good).
#[derive(Clone, Debug, PartialEq)]
pub struct Holder {
    pub subject: Subject,
    pub role: ViewRole,
    pub until: Option<Timestamp>,
}

impl Holder {
    fn holds(&self, r: &Requester, now: Timestamp) -> bool {
        self.until.is_none_or(|t| t > now) && r.is(&self.subject)
    }
}

/// A project (live or terminated) in the index: its item without the viewer's access, and who
/// holds which role in it.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub item: MyProject,
    pub customer: String,
    pub holders: Vec<Holder>,
    /// The project's memberships as `members` items (none for a terminated project).
    pub members: Vec<Member>,
    /// `spec.credit` in millionths (live projects that have one).
    pub credit: Option<crate::desired::cost::Micros>,
    /// When the project was created (live projects).
    pub created: Option<Timestamp>,
    /// The resource versions it was built from: an unchanged key reuses the entry.
    key: u64,
}

impl Entry {
    pub fn terminated(&self) -> bool {
        self.item.status.phase == TERMINATED
    }

    /// The viewer's roles here right now (`Staff` for staff).
    pub fn roles(&self, viewer: &Viewer, now: Timestamp) -> Vec<ViewRole> {
        let mut roles: Vec<ViewRole> = self
            .holders
            .iter()
            .filter(|h| h.holds(&viewer.requester, now))
            .map(|h| h.role)
            .collect();
        if viewer.staff {
            roles.push(ViewRole::Staff);
        }
        roles
    }

    /// The item as this viewer sees it, if they may.
    pub fn view(&self, viewer: &Viewer, now: Timestamp) -> Option<MyProject> {
        let roles = self.roles(viewer, now);
        if roles.is_empty() {
            return None;
        }
        let mut item = self.item.clone();
        item.access = Access::of(roles);
        Some(item)
    }

    /// The next instant this viewer's access here changes by itself (a role expires).
    fn next_change(&self, viewer: &Viewer, now: Timestamp) -> Option<Timestamp> {
        self.holders
            .iter()
            .filter(|h| h.holds(&viewer.requester, now))
            .filter_map(|h| h.until)
            .min()
    }
}

/// A customer's own role holders.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CustomerEntry {
    pub holders: Vec<Holder>,
    pub members: Vec<Member>,
    /// `displayBillingInfoInProjects`: members of its projects see their cost.
    pub billing_shown: bool,
    /// The customer's resourceVersion it was built from.
    key: u64,
}

/// What the caches hold, for [`Index::build`].
pub struct Sources<'a> {
    pub projects: &'a [Arc<Project>],
    pub customers: &'a [Arc<Customer>],
    pub memberships: &'a [Arc<ProjectMembership>],
    pub namespaces: &'a [Arc<Namespace>],
    /// The usage records.
    pub usages: &'a [Arc<crate::api::ProjectUsage>],
    pub is_project_namespace: &'a dyn Fn(&str) -> bool,
}

/// Every project, terminated project and customer, with who may see it, at one revision of the
/// caches. Built again (reusing every entry whose objects did not change) after changes; each
/// request reads one index and filters by who asks at the time it asks, so an expiry takes
/// effect at its instant, not at the next build.
#[derive(Clone, Debug, Default)]
pub struct Index {
    /// The highest resourceVersion the caches had seen when it was built.
    pub revision: u64,
    /// Live projects by name.
    pub projects: BTreeMap<String, Arc<Entry>>,
    /// Soft-deleted projects (archived namespaces) by name.
    pub terminated: BTreeMap<String, Arc<Entry>>,
    pub customers: BTreeMap<String, Arc<CustomerEntry>>,
    /// The usage records by project, by month.
    pub usage: BTreeMap<String, BTreeMap<String, Arc<crate::api::ProjectUsage>>>,
    /// Who holds a role where: `u:<user>` or `g:<group>` → (terminated, project name).
    by_subject: HashMap<String, Vec<(bool, String)>>,
    /// Customer role holders: `u:<user>` / `g:<group>` → customers.
    customers_by_subject: HashMap<String, Vec<String>>,
}

fn subject_key(s: &Subject) -> String {
    match s.kind {
        crate::api::SubjectKind::Group => format!("g:{}", s.name),
        _ => format!("u:{}", s.username()),
    }
}

fn requester_keys(r: &Requester) -> impl Iterator<Item = String> + '_ {
    std::iter::once(format!("u:{}", r.username)).chain(r.groups.iter().map(|g| format!("g:{g}")))
}

fn rv(meta: &ObjectMeta) -> u64 {
    meta.resource_version
        .as_deref()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn hash(parts: &[u64]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    parts.hash(&mut h);
    h.finish()
}

/// The latest time anyone wrote the object (its managed fields), else its creation.
fn last_modified(meta: &ObjectMeta) -> Option<Time> {
    meta.managed_fields
        .iter()
        .flatten()
        .filter_map(|f| f.time.clone())
        .max_by_key(|t| t.0)
        .or_else(|| meta.creation_timestamp.clone())
}

fn customer_fields(name: &str, c: Option<&Customer>) -> CustomerFields {
    CustomerFields {
        name: name.to_string(),
        display_name: c.and_then(|c| c.spec.display_name.clone()),
        native_name: c.and_then(|c| c.spec.native_name.clone()),
        abbreviation: c.and_then(|c| c.spec.abbreviation.clone()),
    }
}

fn item_meta(
    name: &str,
    uid: Option<String>,
    created: Option<Time>,
    rv: u64,
    customer: &str,
) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        uid,
        creation_timestamp: created,
        resource_version: Some(rv.to_string()),
        labels: Some(BTreeMap::from([(
            labels::CUSTOMER.to_string(),
            customer.to_string(),
        )])),
        ..Default::default()
    }
}

fn customer_holders(c: &Customer, now: Timestamp, is_pns: &dyn Fn(&str) -> bool) -> Vec<Holder> {
    let part = |holders: &[CustomerRoleHolder], role| {
        access::active_holders(holders, now, is_pns)
            .map(move |h| Holder {
                subject: h.subject(),
                role,
                until: h.expiration_time.as_ref().map(|t| t.0),
            })
            .collect::<Vec<_>>()
    };
    let mut out = part(&c.spec.owners, ViewRole::CustomerOwner);
    out.extend(part(&c.spec.support, ViewRole::CustomerSupport));
    out
}

fn member_meta(
    name: String,
    customer: &str,
    project: Option<&str>,
    created: Option<Time>,
    rv: u64,
) -> ObjectMeta {
    let mut labels = BTreeMap::from([(labels::CUSTOMER.to_string(), customer.to_string())]);
    if let Some(p) = project {
        labels.insert(labels::PROJECT.to_string(), p.to_string());
    }
    ObjectMeta {
        name: Some(name),
        creation_timestamp: created,
        resource_version: Some(rv.to_string()),
        labels: Some(labels),
        ..Default::default()
    }
}

fn customer_entry(c: &Customer, now: Timestamp, is_pns: &dyn Fn(&str) -> bool) -> CustomerEntry {
    let name = c.name_any();
    let mut members = Vec::new();
    for (part, holders, role) in [
        ("owner", &c.spec.owners, ViewRole::CustomerOwner),
        ("support", &c.spec.support, ViewRole::CustomerSupport),
    ] {
        for h in holders {
            let subject = h.subject();
            let expired = access::expired(h.expiration_time.as_ref(), now);
            members.push(Member {
                api_version: API_VERSION,
                kind: "Member",
                metadata: member_meta(
                    format!("customer.{name}.{part}.{}", subject.slug()),
                    &name,
                    None,
                    c.metadata.creation_timestamp.clone(),
                    rv(&c.metadata),
                ),
                subject,
                role,
                scope: MemberScope {
                    kind: "Customer",
                    name: name.clone(),
                },
                customer: name.clone(),
                expiration_time: h.expiration_time.clone(),
                phase: if expired { "Expired" } else { "Active" }.into(),
            });
        }
    }
    CustomerEntry {
        holders: customer_holders(c, now, is_pns),
        members,
        billing_shown: crate::desired::project::billing_shown(Some(c)),
        key: rv(&c.metadata),
    }
}

fn live_entry(
    p: &Project,
    customer: Option<&Customer>,
    namespace: Option<&Namespace>,
    memberships: &[Arc<ProjectMembership>],
    now: Timestamp,
    is_pns: &dyn Fn(&str) -> bool,
    key: u64,
) -> Entry {
    let name = p.name_any();
    let status = p.status.clone().unwrap_or_default();
    let binds = namespace.is_some_and(|n| crate::desired::namespace::binds(p, n));
    let grants = access::grants(memberships, binds, now, is_pns);
    let mut holders: Vec<Holder> = grants
        .iter()
        .filter(|(_, g)| *g == Grant::Active)
        .map(|(m, _)| Holder {
            subject: m.spec.subject.clone(),
            role: ViewRole::of(m.spec.role),
            until: m.spec.expiration_time.as_ref().map(|t| t.0),
        })
        .collect();
    holders.extend(
        customer
            .map(|c| customer_holders(c, now, is_pns))
            .unwrap_or_default(),
    );
    let members = grants
        .iter()
        .map(|(m, g)| Member {
            api_version: API_VERSION,
            kind: "Member",
            metadata: member_meta(
                format!("project.{name}.{}", m.name_any()),
                &p.spec.customer,
                Some(&name),
                m.metadata.creation_timestamp.clone(),
                rv(&m.metadata),
            ),
            subject: m.spec.subject.clone(),
            role: ViewRole::of(m.spec.role),
            scope: MemberScope {
                kind: "Project",
                name: name.clone(),
            },
            customer: p.spec.customer.clone(),
            expiration_time: m.spec.expiration_time.clone(),
            phase: g
                .phase()
                .map(|p| format!("{p:?}"))
                .unwrap_or_else(|| "Inactive".into()),
        })
        .collect();
    let phase = status.phase;
    let spec = &p.spec;
    let item = MyProject {
        api_version: API_VERSION,
        kind: "MyProject",
        metadata: item_meta(
            &name,
            p.metadata.uid.clone(),
            p.metadata.creation_timestamp.clone(),
            rv_max(p, customer, namespace, memberships),
            &spec.customer,
        ),
        spec: ProjectFields::of(spec),
        customer: customer_fields(&spec.customer, customer),
        status: ViewStatus {
            phase: phase
                .map(|p| format!("{p:?}"))
                .unwrap_or_else(|| "Pending".into()),
            finished: matches!(phase, Some(ProjectPhase::Finished | ProjectPhase::Expired)),
            namespace: status.namespace.clone(),
            effective_end_date: status.effective_end_date.clone(),
            members: status.members.clone(),
            last_modified: last_modified(&p.metadata),
            terminated: None,
        },
        access: Access::default(),
    };
    Entry {
        item,
        customer: spec.customer.clone(),
        holders,
        members,
        credit: spec.credit.map(crate::desired::usage::credit_micros),
        created: p.metadata.creation_timestamp.as_ref().map(|t| t.0),
        key,
    }
}

fn rv_max(
    p: &Project,
    customer: Option<&Customer>,
    namespace: Option<&Namespace>,
    memberships: &[Arc<ProjectMembership>],
) -> u64 {
    let mut max = rv(&p.metadata);
    max = max.max(customer.map(|c| rv(&c.metadata)).unwrap_or(0));
    max = max.max(namespace.map(|n| rv(&n.metadata)).unwrap_or(0));
    memberships
        .iter()
        .map(|m| rv(&m.metadata))
        .fold(max, u64::max)
}

fn terminated_entry(
    ns: &Namespace,
    archive: Archive,
    customer: Option<&Customer>,
    now: Timestamp,
    is_pns: &dyn Fn(&str) -> bool,
    key: u64,
) -> Entry {
    let name = ns.name_any();
    let retention = customer
        .map(crate::desired::customer::retention_days)
        .or(archive.retention_days)
        .unwrap_or(DEFAULT_RETENTION_DAYS);
    let spec = &archive.spec;
    let revision = rv(&ns.metadata).max(customer.map(|c| rv(&c.metadata)).unwrap_or(0));
    let item = MyProject {
        api_version: API_VERSION,
        kind: "MyProject",
        metadata: item_meta(
            &name,
            archive.project_uid.clone(),
            ns.metadata.creation_timestamp.clone(),
            revision,
            &archive.customer,
        ),
        spec: ProjectFields::of(spec),
        customer: customer_fields(&archive.customer, customer),
        status: ViewStatus {
            phase: TERMINATED.into(),
            finished: false,
            namespace: Some(name.clone()),
            effective_end_date: None,
            members: None,
            last_modified: Some(archive.terminated_at.clone()),
            terminated: Some(Terminated {
                purge_after: Time(archive.purge_after(retention)),
                at: archive.terminated_at.clone(),
                by: archive.terminated_by.clone(),
                previous_team: archive.members.clone(),
                spec: archive.spec.clone(),
            }),
        },
        access: Access::default(),
    };
    Entry {
        item,
        customer: archive.customer.clone(),
        // Only the customer's own owners and support (and staff) see what was deleted.
        holders: customer
            .map(|c| customer_holders(c, now, is_pns))
            .unwrap_or_default(),
        members: Vec::new(),
        credit: None,
        created: None,
        key,
    }
}

impl Index {
    /// The index of these caches at `now`, reusing `previous`'s entries whose objects are the
    /// same versions (a rebuild costs a pass over the caches, not a rebuild of every item).
    pub fn build(
        src: &Sources<'_>,
        revision: u64,
        now: Timestamp,
        previous: Option<&Index>,
    ) -> Index {
        let is_pns = src.is_project_namespace;
        let customers: HashMap<String, &Customer> = src
            .customers
            .iter()
            .map(|c| (c.name_any(), c.as_ref()))
            .collect();
        let namespaces: HashMap<String, &Namespace> = src
            .namespaces
            .iter()
            .map(|n| (n.name_any(), n.as_ref()))
            .collect();
        let mut memberships: HashMap<String, Vec<Arc<ProjectMembership>>> = HashMap::new();
        for m in src.memberships {
            if let Some(ns) = m.namespace() {
                memberships.entry(ns).or_default().push(m.clone());
            }
        }
        let mut index = Index {
            revision,
            ..Default::default()
        };
        let empty = Vec::new();
        for p in src.projects {
            let name = p.name_any();
            let customer = customers.get(&p.spec.customer).copied();
            let namespace = namespaces.get(&name).copied();
            let ms = memberships.get(&name).unwrap_or(&empty);
            let mut parts = vec![
                rv(&p.metadata),
                customer.map(|c| rv(&c.metadata)).unwrap_or(0),
                namespace.map(|n| rv(&n.metadata)).unwrap_or(0),
            ];
            parts.extend(ms.iter().map(|m| rv(&m.metadata)));
            let key = hash(&parts);
            let entry = match previous.and_then(|i| i.projects.get(&name)) {
                Some(e) if e.key == key => e.clone(),
                _ => Arc::new(live_entry(p, customer, namespace, ms, now, is_pns, key)),
            };
            index.projects.insert(name, entry);
        }
        for ns in src.namespaces {
            let name = ns.name_any();
            if index.projects.contains_key(&name) && !crate::lifecycle::archive::is_archived(ns) {
                continue;
            }
            let Some(archive) = Archive::of(ns) else {
                continue;
            };
            let customer = customers.get(&archive.customer).copied();
            let key = hash(&[
                rv(&ns.metadata),
                customer.map(|c| rv(&c.metadata)).unwrap_or(0),
            ]);
            let entry = match previous.and_then(|i| i.terminated.get(&name)) {
                Some(e) if e.key == key => e.clone(),
                _ => Arc::new(terminated_entry(ns, archive, customer, now, is_pns, key)),
            };
            index.terminated.insert(name, entry);
        }
        for c in src.customers {
            let name = c.name_any();
            let entry = match previous.and_then(|i| i.customers.get(&name)) {
                Some(e) if e.key == rv(&c.metadata) => e.clone(),
                _ => Arc::new(customer_entry(c, now, is_pns)),
            };
            for h in &entry.holders {
                index
                    .customers_by_subject
                    .entry(subject_key(&h.subject))
                    .or_default()
                    .push(name.clone());
            }
            index.customers.insert(name, entry);
        }
        for (terminated, map) in [(false, &index.projects), (true, &index.terminated)] {
            for (name, e) in map {
                for h in &e.holders {
                    index
                        .by_subject
                        .entry(subject_key(&h.subject))
                        .or_default()
                        .push((terminated, name.clone()));
                }
            }
        }
        for r in src.usages {
            index
                .usage
                .entry(r.spec.project.clone())
                .or_default()
                .insert(r.spec.month.clone(), r.clone());
        }
        for v in index.by_subject.values_mut() {
            v.sort();
            v.dedup();
        }
        for v in index.customers_by_subject.values_mut() {
            v.sort();
            v.dedup();
        }
        index
    }

    /// The projects this viewer may see (live, and terminated when asked for), sorted by name.
    pub fn projects_for(
        &self,
        viewer: &Viewer,
        terminated: bool,
        live: bool,
        now: Timestamp,
    ) -> Vec<MyProject> {
        let pick = |e: &Arc<Entry>| e.view(viewer, now);
        let mut out: Vec<MyProject> = Vec::new();
        if viewer.staff {
            if live {
                out.extend(self.projects.values().filter_map(pick));
            }
            if terminated {
                out.extend(self.terminated.values().filter_map(pick));
            }
        } else {
            let mut names: Vec<&(bool, String)> = requester_keys(&viewer.requester)
                .filter_map(|k| self.by_subject.get(&k))
                .flatten()
                .collect();
            names.sort();
            names.dedup();
            for (is_terminated, name) in names {
                let map = if *is_terminated {
                    &self.terminated
                } else {
                    &self.projects
                };
                if (*is_terminated && terminated) || (!*is_terminated && live) {
                    out.extend(map.get(name).and_then(pick));
                }
            }
        }
        if live && terminated {
            // A live project and an archive of the same name (a new project whose namespace is
            // an old one's archive): the live one is listed; `status.phase=Terminated` shows the
            // other.
            let live_names: std::collections::BTreeSet<String> = out
                .iter()
                .filter(|p| p.status.phase != TERMINATED)
                .filter_map(|p| p.metadata.name.clone())
                .collect();
            out.retain(|p| {
                p.status.phase != TERMINATED
                    || !live_names.contains(p.metadata.name.as_deref().unwrap_or_default())
            });
        }
        out.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        out
    }

    /// Whether this viewer may ask for terminated projects at all: staff, and owners and support
    /// of some customer.
    pub fn may_see_terminated(&self, viewer: &Viewer, now: Timestamp) -> bool {
        viewer.staff || !self.customers_held(viewer, now).is_empty()
    }

    /// The customers in which the viewer holds an owner or support role now.
    fn customers_held(&self, viewer: &Viewer, now: Timestamp) -> Vec<&str> {
        let mut out: Vec<&str> = requester_keys(&viewer.requester)
            .filter_map(|k| self.customers_by_subject.get(&k))
            .flatten()
            .filter(|c| {
                self.customers
                    .get(*c)
                    .is_some_and(|e| e.holders.iter().any(|h| h.holds(&viewer.requester, now)))
            })
            .map(String::as_str)
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// The role holders this viewer may see: of every project they see, and of the customers
    /// they own or support (all of them for staff), sorted by name.
    pub fn members_for(&self, viewer: &Viewer, now: Timestamp) -> Vec<Member> {
        let mut out: Vec<Member> = self
            .projects_for(viewer, false, true, now)
            .iter()
            .filter_map(|p| {
                self.projects
                    .get(p.metadata.name.as_deref().unwrap_or_default())
            })
            .flat_map(|e| e.members.iter().cloned())
            .collect();
        let customers: Vec<&Arc<CustomerEntry>> = if viewer.staff {
            self.customers.values().collect()
        } else {
            self.customers_held(viewer, now)
                .into_iter()
                .filter_map(|c| self.customers.get(c))
                .collect()
        };
        out.extend(
            customers
                .into_iter()
                .flat_map(|c| c.members.iter().cloned()),
        );
        // A role that expired since the index was built shows as such now.
        for m in &mut out {
            if m.phase == "Active" && access::expired(m.expiration_time.as_ref(), now) {
                m.phase = "Expired".into();
            }
        }
        out.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        out
    }

    /// The next instant something this viewer sees changes by itself (a role of theirs expires).
    pub fn next_change(&self, viewer: &Viewer, now: Timestamp) -> Option<Timestamp> {
        requester_keys(&viewer.requester)
            .filter_map(|k| self.by_subject.get(&k))
            .flatten()
            .filter_map(|(t, name)| {
                if *t {
                    self.terminated.get(name)
                } else {
                    self.projects.get(name)
                }
            })
            .filter_map(|e| e.next_change(viewer, now))
            .min()
    }
}

#[cfg(test)]
mod tests;
