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

use std::collections::{BTreeMap, BTreeSet, HashMap};

use imbl::{HashMap as ImHashMap, OrdMap, OrdSet};
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
    /// Boxed: a live project's status (most of them) does not carry its room.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub terminated: Option<Box<Terminated>>,
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

/// A project's item as the index keeps it: [`MyProject`] without the viewer's access and without
/// its `ObjectMeta`, which [`Entry::item`] renders when asked (kept rendered, the metadata and
/// its labels map cost ~1 KB a project; a request clones its items anyway).
#[derive(Clone, Debug, PartialEq)]
struct Item {
    uid: Option<String>,
    created: Option<Time>,
    revision: u64,
    spec: ProjectFields,
    /// Shared with the customer's entry.
    customer: Arc<CustomerFields>,
    status: ViewStatus,
}

/// A role holder as the index keeps it: [`Member`] without what its project or customer entry
/// knows (scope, customer, labels), rendered by [`MemberRow::render`].
#[derive(Clone, Debug, PartialEq)]
struct MemberRow {
    /// The item's name after `project.<project>.` or `customer.<customer>.`.
    suffix: String,
    subject: Subject,
    role: ViewRole,
    created: Option<Time>,
    revision: u64,
    expiration_time: Option<Time>,
    phase: &'static str,
}

impl MemberRow {
    /// Its item: a role in `project`, or (`None`) one of `customer`'s own.
    fn render(&self, project: Option<&str>, customer: &str) -> Member {
        let (prefix, kind, scope) = match project {
            Some(p) => ("project", "Project", p),
            None => ("customer", "Customer", customer),
        };
        Member {
            api_version: API_VERSION,
            kind: "Member",
            metadata: member_meta(
                format!("{prefix}.{scope}.{}", self.suffix),
                customer,
                project,
                self.created.clone(),
                self.revision,
            ),
            subject: self.subject.clone(),
            role: self.role,
            scope: MemberScope {
                kind,
                name: scope.to_string(),
            },
            customer: customer.to_string(),
            expiration_time: self.expiration_time.clone(),
            phase: self.phase.to_string(),
        }
    }
}

/// The name a membership's phase has in `members` (`Inactive`: it grants nothing).
fn phase_name(phase: Option<crate::api::MembershipPhase>) -> &'static str {
    use crate::api::MembershipPhase as P;
    match phase {
        Some(P::Active) => "Active",
        Some(P::Expired) => "Expired",
        Some(P::Revoked) => "Revoked",
        Some(P::Pending) => "Pending",
        None => "Inactive",
    }
}

/// A project (live or terminated) in the index: its item without the viewer's access, and who
/// holds which role in it.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// Its name (the index's key).
    name: String,
    item: Item,
    pub customer: String,
    pub holders: Vec<Holder>,
    /// The project's memberships as `members` items (none for a terminated project).
    members: Vec<MemberRow>,
    /// `spec.credit` in millionths (live projects that have one).
    pub credit: Option<crate::desired::cost::Micros>,
    /// When the project was created (live projects).
    pub created: Option<Timestamp>,
    /// The namespaces whose being a project's its holders depend on (ServiceAccount subjects).
    asked: Vec<String>,
}

impl Entry {
    pub fn terminated(&self) -> bool {
        self.item.status.phase == TERMINATED
    }

    /// Its item, with no access filled in.
    pub fn item(&self) -> MyProject {
        let item = &self.item;
        MyProject {
            api_version: API_VERSION,
            kind: "MyProject",
            metadata: item_meta(
                &self.name,
                item.uid.clone(),
                item.created.clone(),
                item.revision,
                &self.customer,
            ),
            spec: item.spec.clone(),
            customer: (*item.customer).clone(),
            status: item.status.clone(),
            access: Access::default(),
        }
    }

    /// Its memberships as `members` items.
    fn members(&self) -> impl Iterator<Item = Member> + '_ {
        self.members
            .iter()
            .map(|m| m.render(Some(&self.name), &self.customer))
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
        let mut item = self.item();
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
    members: Vec<MemberRow>,
    /// `displayBillingInfoInProjects`: members of its projects see their cost.
    pub billing_shown: bool,
    /// What its projects show of it: its names (shared with their entries), ...
    fields: Arc<CustomerFields>,
    /// ... and how long their archives are kept.
    retention_days: i32,
    /// The customer's resourceVersion when what its projects show of it last changed (their
    /// items' resourceVersions count it; a change of its status alone changes none of them).
    shown_since: u64,
    /// The namespaces whose being a project's its holders depend on (ServiceAccount subjects).
    asked: Vec<String>,
}

impl CustomerEntry {
    /// Whether its projects show the same of both.
    fn shows_the_same(&self, other: &CustomerEntry) -> bool {
        self.fields == other.fields
            && self.holders == other.holders
            && self.retention_days == other.retention_days
    }
}

/// Every object of each kind, for [`Index::build`] (tests and `make bench-views`; the server
/// builds through [`Index::rebuild`], reading its caches one name at a time).
pub struct Sources<'a> {
    pub projects: &'a [Arc<Project>],
    pub customers: &'a [Arc<Customer>],
    pub memberships: &'a [Arc<ProjectMembership>],
    pub namespaces: &'a [Arc<Namespace>],
    /// The usage records.
    pub usages: &'a [Arc<crate::api::ProjectUsage>],
    pub is_project_namespace: &'a dyn Fn(&str) -> bool,
}

impl<'a> Sources<'a> {
    /// These objects by name, for [`Index::update`].
    pub fn by_name(&self) -> impl Lookup + 'a {
        SourceLookup::of(self)
    }
}

/// The objects an [`Index::update`] reads, one name at a time.
pub trait Lookup {
    fn project(&self, name: &str) -> Option<Arc<Project>>;
    fn customer(&self, name: &str) -> Option<Arc<Customer>>;
    fn namespace(&self, name: &str) -> Option<Arc<Namespace>>;
    /// The memberships in a project's namespace, sorted by name.
    fn memberships_in(&self, namespace: &str) -> Vec<Arc<ProjectMembership>>;
    /// A usage record by its name.
    fn usage(&self, name: &str) -> Option<Arc<crate::api::ProjectUsage>>;
    /// Whether a namespace is (or is named like) a project's (the ServiceAccount rule).
    fn is_project_namespace(&self, namespace: &str) -> bool;
}

/// [`Sources`] by name.
struct SourceLookup<'a> {
    projects: HashMap<String, &'a Arc<Project>>,
    customers: HashMap<String, &'a Arc<Customer>>,
    namespaces: HashMap<String, &'a Arc<Namespace>>,
    memberships: HashMap<String, Vec<Arc<ProjectMembership>>>,
    usages: HashMap<String, &'a Arc<crate::api::ProjectUsage>>,
    is_project_namespace: &'a dyn Fn(&str) -> bool,
}

impl<'a> SourceLookup<'a> {
    fn of(src: &Sources<'a>) -> Self {
        let by_name = |m: &kube::api::ObjectMeta| m.name.clone().unwrap_or_default();
        let mut memberships: HashMap<String, Vec<Arc<ProjectMembership>>> = HashMap::new();
        for m in src.memberships {
            if let Some(ns) = m.namespace() {
                memberships.entry(ns).or_default().push(m.clone());
            }
        }
        for ms in memberships.values_mut() {
            ms.sort_by_key(|m| m.name_any());
        }
        SourceLookup {
            projects: src
                .projects
                .iter()
                .map(|o| (by_name(&o.metadata), o))
                .collect(),
            customers: src
                .customers
                .iter()
                .map(|o| (by_name(&o.metadata), o))
                .collect(),
            namespaces: src
                .namespaces
                .iter()
                .map(|o| (by_name(&o.metadata), o))
                .collect(),
            memberships,
            usages: src
                .usages
                .iter()
                .map(|o| (by_name(&o.metadata), o))
                .collect(),
            is_project_namespace: src.is_project_namespace,
        }
    }

    /// Every name there is: a build from nothing.
    fn everything(&self) -> Dirty {
        let names = |m: &dyn Fn() -> Vec<String>| m().into_iter().collect();
        Dirty {
            projects: names(&|| self.projects.keys().cloned().collect()),
            customers: names(&|| self.customers.keys().cloned().collect()),
            namespaces: names(&|| self.namespaces.keys().cloned().collect()),
            usages: names(&|| self.usages.keys().cloned().collect()),
        }
    }
}

impl Lookup for SourceLookup<'_> {
    fn project(&self, name: &str) -> Option<Arc<Project>> {
        self.projects.get(name).map(|o| (*o).clone())
    }
    fn customer(&self, name: &str) -> Option<Arc<Customer>> {
        self.customers.get(name).map(|o| (*o).clone())
    }
    fn namespace(&self, name: &str) -> Option<Arc<Namespace>> {
        self.namespaces.get(name).map(|o| (*o).clone())
    }
    fn memberships_in(&self, namespace: &str) -> Vec<Arc<ProjectMembership>> {
        self.memberships.get(namespace).cloned().unwrap_or_default()
    }
    fn usage(&self, name: &str) -> Option<Arc<crate::api::ProjectUsage>> {
        self.usages.get(name).map(|o| (*o).clone())
    }
    fn is_project_namespace(&self, namespace: &str) -> bool {
        (self.is_project_namespace)(namespace)
    }
}

/// An object the index is built from that changed (or went), by name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Changed {
    Project(String),
    Customer(String),
    Namespace(String),
    /// A membership in this namespace (its project's).
    Membership(String),
    /// A usage record.
    Usage(String),
}

/// What changed since an index was built: the names [`Index::update`] builds again.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Dirty {
    /// Projects whose project, namespace or memberships changed.
    pub projects: BTreeSet<String>,
    pub customers: BTreeSet<String>,
    pub namespaces: BTreeSet<String>,
    /// Usage records.
    pub usages: BTreeSet<String>,
}

impl Dirty {
    pub fn add(&mut self, change: Changed) {
        match change {
            Changed::Project(n) | Changed::Membership(n) => {
                self.projects.insert(n);
            }
            Changed::Customer(n) => {
                self.customers.insert(n);
            }
            Changed::Namespace(n) => {
                self.projects.insert(n.clone());
                self.namespaces.insert(n);
            }
            Changed::Usage(n) => {
                self.usages.insert(n);
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.projects.is_empty()
            && self.customers.is_empty()
            && self.namespaces.is_empty()
            && self.usages.is_empty()
    }
}

/// An entry of the index: a live project, a terminated one (an archive), or a customer.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Slot {
    Live(String),
    Terminated(String),
    Customer(String),
}

/// Every project, terminated project and customer, with who may see it, at one revision of the
/// caches. Kept up to date by [`Index::update`], which builds again only the entries whose
/// objects changed; its maps are persistent, so an index and the one before it share everything
/// that did not change (a watch resumes from an older one at little cost). Each request reads
/// one index and filters by who asks at the time it asks, so an expiry takes effect at its
/// instant, not at the next build.
#[derive(Clone, Debug, Default)]
pub struct Index {
    /// The highest resourceVersion the caches had seen when it was built.
    pub revision: u64,
    /// Live projects by name.
    pub projects: OrdMap<String, Arc<Entry>>,
    /// Soft-deleted projects (archived namespaces) by name.
    pub terminated: OrdMap<String, Arc<Entry>>,
    pub customers: OrdMap<String, Arc<CustomerEntry>>,
    /// The usage records by project, by month.
    pub usage: OrdMap<String, OrdMap<String, Arc<crate::api::ProjectUsage>>>,
    /// Where each usage record is filed: (project, month).
    usage_at: OrdMap<String, (String, String)>,
    /// Who holds a role where: `u:<user>` or `g:<group>` → (terminated, project name).
    by_subject: ImHashMap<String, Few<(bool, String)>>,
    /// Customer role holders: `u:<user>` / `g:<group>` → customers.
    customers_by_subject: ImHashMap<String, Few<String>>,
    /// The projects (live and terminated) of each customer, built again when it changes.
    by_customer: OrdMap<String, OrdSet<Slot>>,
    /// The entries that asked whether a namespace is a project's, by namespace: built again when
    /// a project or namespace of that name changes.
    asked: OrdMap<String, OrdSet<Slot>>,
}

impl PartialEq for Index {
    /// The same entries, reverse indexes and usage records (the same records, not equal ones).
    fn eq(&self, other: &Index) -> bool {
        let same_records =
            |a: &OrdMap<String, Arc<crate::api::ProjectUsage>>,
             b: &OrdMap<String, Arc<crate::api::ProjectUsage>>| {
                a.len() == b.len()
                    && a.iter()
                        .zip(b.iter())
                        .all(|((ka, ra), (kb, rb))| ka == kb && Arc::ptr_eq(ra, rb))
            };
        self.revision == other.revision
            && self.projects == other.projects
            && self.terminated == other.terminated
            && self.customers == other.customers
            && self.usage.len() == other.usage.len()
            && self
                .usage
                .iter()
                .zip(other.usage.iter())
                .all(|((pa, a), (pb, b))| pa == pb && same_records(a, b))
            && self.usage_at == other.usage_at
            && self.by_subject == other.by_subject
            && self.customers_by_subject == other.customers_by_subject
            && self.by_customer == other.by_customer
            && self.asked == other.asked
    }
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

/// Adds or removes `value` under `key` of a map of sets (an empty set goes).
fn file<K, V>(map: &mut OrdMap<K, OrdSet<V>>, key: &K, value: &V, add: bool)
where
    K: Ord + Clone,
    V: Ord + Clone,
{
    let mut set = map.get(key).cloned().unwrap_or_default();
    if add {
        set.insert(value.clone());
    } else {
        set.remove(value);
    }
    if set.is_empty() {
        map.remove(key);
    } else {
        map.insert(key.clone(), set);
    }
}

/// A set kept as its one value until it holds more: most subjects hold a role in one project,
/// and a persistent set's first node has room for sixteen.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Few<V: Ord + Clone> {
    One(V),
    /// Two or more.
    Many(OrdSet<V>),
}

impl<V: Ord + Clone> Few<V> {
    fn iter(&self) -> Box<dyn Iterator<Item = &V> + '_> {
        match self {
            Few::One(v) => Box::new(std::iter::once(v)),
            Few::Many(set) => Box::new(set.iter()),
        }
    }

    /// `set` with `value` added or removed (`None`: empty).
    fn with(set: Option<&Few<V>>, value: &V, add: bool) -> Option<Few<V>> {
        let mut all: OrdSet<V> = match set {
            None => OrdSet::new(),
            Some(Few::One(v)) => OrdSet::unit(v.clone()),
            Some(Few::Many(s)) => s.clone(),
        };
        if add {
            all.insert(value.clone());
        } else {
            all.remove(value);
        }
        match all.len() {
            0 => None,
            1 => all.get_min().cloned().map(Few::One),
            _ => Some(Few::Many(all)),
        }
    }
}

impl<'a, V: Ord + Clone> IntoIterator for &'a Few<V> {
    type Item = &'a V;
    type IntoIter = Box<dyn Iterator<Item = &'a V> + 'a>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// [`file`] for a hashed map of [`Few`].
fn file_hashed<V: Ord + Clone>(
    map: &mut ImHashMap<String, Few<V>>,
    key: &str,
    value: &V,
    add: bool,
) {
    match Few::with(map.get(key), value, add) {
        None => {
            map.remove(key);
        }
        Some(set) => {
            map.insert(key.to_string(), set);
        }
    }
}

fn rv(meta: &ObjectMeta) -> u64 {
    meta.resource_version
        .as_deref()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
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

/// What a project shows of its customer (its name only while there is no such customer).
fn shown_fields(name: &str, c: Option<&CustomerEntry>) -> Arc<CustomerFields> {
    c.map(|c| c.fields.clone()).unwrap_or_else(|| {
        Arc::new(CustomerFields {
            name: name.to_string(),
            ..Default::default()
        })
    })
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
            members.push(MemberRow {
                suffix: format!("{part}.{}", subject.slug()),
                subject,
                role,
                created: c.metadata.creation_timestamp.clone(),
                revision: rv(&c.metadata),
                expiration_time: h.expiration_time.clone(),
                phase: if expired { "Expired" } else { "Active" },
            });
        }
    }
    CustomerEntry {
        holders: customer_holders(c, now, is_pns),
        members,
        billing_shown: crate::desired::project::billing_shown(Some(c)),
        fields: Arc::new(customer_fields(&name, Some(c))),
        retention_days: crate::desired::customer::retention_days(c),
        shown_since: rv(&c.metadata),
        asked: Vec::new(),
    }
}

fn live_entry(
    p: &Project,
    customer: Option<&CustomerEntry>,
    namespace: Option<&Namespace>,
    memberships: &[Arc<ProjectMembership>],
    now: Timestamp,
    is_pns: &dyn Fn(&str) -> bool,
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
            .map(|c| c.holders.iter().cloned())
            .into_iter()
            .flatten(),
    );
    let members = grants
        .iter()
        .map(|(m, g)| MemberRow {
            suffix: m.name_any(),
            subject: m.spec.subject.clone(),
            role: ViewRole::of(m.spec.role),
            created: m.metadata.creation_timestamp.clone(),
            revision: rv(&m.metadata),
            expiration_time: m.spec.expiration_time.clone(),
            phase: phase_name(g.phase()),
        })
        .collect();
    let phase = status.phase;
    let spec = &p.spec;
    let item = Item {
        uid: p.metadata.uid.clone(),
        created: p.metadata.creation_timestamp.clone(),
        revision: rv_max(p, customer, namespace, memberships),
        spec: ProjectFields::of(spec),
        customer: shown_fields(&spec.customer, customer),
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
    };
    Entry {
        name,
        item,
        customer: spec.customer.clone(),
        holders,
        members,
        credit: spec.credit.map(crate::desired::usage::credit_micros),
        created: p.metadata.creation_timestamp.as_ref().map(|t| t.0),
        asked: Vec::new(),
    }
}

fn rv_max(
    p: &Project,
    customer: Option<&CustomerEntry>,
    namespace: Option<&Namespace>,
    memberships: &[Arc<ProjectMembership>],
) -> u64 {
    let mut max = rv(&p.metadata);
    max = max.max(customer.map(|c| c.shown_since).unwrap_or(0));
    max = max.max(namespace.map(|n| rv(&n.metadata)).unwrap_or(0));
    memberships
        .iter()
        .map(|m| rv(&m.metadata))
        .fold(max, u64::max)
}

fn terminated_entry(ns: &Namespace, archive: Archive, customer: Option<&CustomerEntry>) -> Entry {
    let name = ns.name_any();
    let retention = customer
        .map(|c| c.retention_days)
        .or(archive.retention_days)
        .unwrap_or(DEFAULT_RETENTION_DAYS);
    let spec = &archive.spec;
    let revision = rv(&ns.metadata).max(customer.map(|c| c.shown_since).unwrap_or(0));
    let item = Item {
        uid: archive.project_uid.clone(),
        created: ns.metadata.creation_timestamp.clone(),
        revision,
        spec: ProjectFields::of(spec),
        customer: shown_fields(&archive.customer, customer),
        status: ViewStatus {
            phase: TERMINATED.into(),
            finished: false,
            namespace: Some(name.clone()),
            effective_end_date: None,
            members: None,
            last_modified: Some(archive.terminated_at.clone()),
            terminated: Some(Box::new(Terminated {
                purge_after: Time(archive.purge_after(retention)),
                at: archive.terminated_at.clone(),
                by: archive.terminated_by.clone(),
                previous_team: archive.members.clone(),
                spec: archive.spec.clone(),
            })),
        },
    };
    Entry {
        name,
        item,
        customer: archive.customer.clone(),
        // Only the customer's own owners and support (and staff) see what was deleted.
        holders: customer.map(|c| c.holders.clone()).unwrap_or_default(),
        members: Vec::new(),
        credit: None,
        created: None,
        asked: Vec::new(),
    }
}

/// Runs `build` with an `is_project_namespace` that notes every namespace it is asked about.
fn asking<T>(src: &dyn Lookup, build: impl FnOnce(&dyn Fn(&str) -> bool) -> T) -> (T, Vec<String>) {
    let asked = std::cell::RefCell::new(BTreeSet::new());
    let is_pns = |n: &str| {
        asked.borrow_mut().insert(n.to_string());
        src.is_project_namespace(n)
    };
    let out = build(&is_pns);
    (out, asked.into_inner().into_iter().collect())
}

impl Index {
    /// The index of every object in `src` at `now`. With `previous`, its entries that come out
    /// the same are kept (shared), and whatever it held that `src` no longer has goes.
    pub fn build(
        src: &Sources<'_>,
        revision: u64,
        now: Timestamp,
        previous: Option<&Index>,
    ) -> Index {
        let lookup = SourceLookup::of(src);
        Index::rebuild(&lookup, lookup.everything(), revision, now, previous)
    }

    /// The index of every object `src` has (`everything`: all their names), read one name at
    /// a time. With `previous`, its entries that come out the same are kept (shared), and
    /// whatever it held that `src` no longer has goes.
    pub fn rebuild(
        src: &dyn Lookup,
        mut dirty: Dirty,
        revision: u64,
        now: Timestamp,
        previous: Option<&Index>,
    ) -> Index {
        let base = previous.cloned().unwrap_or_default();
        dirty.projects.extend(base.projects.keys().cloned());
        dirty.namespaces.extend(base.terminated.keys().cloned());
        dirty.customers.extend(base.customers.keys().cloned());
        dirty.usages.extend(base.usage_at.keys().cloned());
        base.update(src, &dirty, revision, now)
    }

    /// This index after the changes in `dirty`: only their entries are built again (and those of
    /// the projects of a customer whose names, holders or retention changed, and of whoever
    /// asked whether a changed name is a project's namespace); the rest is shared with `self`.
    pub fn update(&self, src: &dyn Lookup, dirty: &Dirty, revision: u64, now: Timestamp) -> Index {
        let mut next = self.clone();
        next.revision = revision;
        let mut live = dirty.projects.clone();
        let mut terminated = dirty.namespaces.clone();
        let mut customers = dirty.customers.clone();
        let mut add = |slot: &Slot, live: &mut BTreeSet<String>, terminated: &mut BTreeSet<_>| {
            match slot {
                Slot::Live(n) => live.insert(n.clone()),
                Slot::Terminated(n) => terminated.insert(n.clone()),
                Slot::Customer(n) => customers.insert(n.clone()),
            };
        };
        for name in dirty.projects.iter().chain(&dirty.namespaces) {
            for slot in self.asked.get(name).into_iter().flatten() {
                add(slot, &mut live, &mut terminated);
            }
        }
        for name in &customers {
            let old = self.customers.get(name);
            let new = src.customer(name).map(|c| {
                let (mut e, asked) = asking(src, |is_pns| customer_entry(&c, now, is_pns));
                e.asked = asked;
                if let Some(old) = old
                    && old.shows_the_same(&e)
                {
                    e.shown_since = old.shown_since;
                }
                e
            });
            let shown_changed = match (old, &new) {
                (Some(o), Some(n)) => !o.shows_the_same(n),
                (None, None) => false,
                _ => true,
            };
            if shown_changed {
                for slot in self.by_customer.get(name).into_iter().flatten() {
                    match slot {
                        Slot::Live(n) => live.insert(n.clone()),
                        Slot::Terminated(n) => terminated.insert(n.clone()),
                        Slot::Customer(_) => false,
                    };
                }
            }
            next.put_customer(name, new);
        }
        for name in &live {
            let entry = src.project(name).map(|p| {
                let customer = next.customers.get(&p.spec.customer).cloned();
                let (namespace, memberships) = (src.namespace(name), src.memberships_in(name));
                let (mut e, asked) = asking(src, |is_pns| {
                    live_entry(
                        &p,
                        customer.as_deref(),
                        namespace.as_deref(),
                        &memberships,
                        now,
                        is_pns,
                    )
                });
                e.asked = asked;
                e
            });
            next.put(false, name, entry);
        }
        for name in &terminated {
            let entry = src.namespace(name).and_then(|ns| {
                let archive = Archive::of(&ns)?;
                let customer = next.customers.get(&archive.customer).cloned();
                Some(terminated_entry(&ns, archive, customer.as_deref()))
            });
            next.put(true, name, entry);
        }
        for record in &dirty.usages {
            if let Some((project, month)) = next.usage_at.remove(record)
                && let Some(mut months) = next.usage.get(&project).cloned()
            {
                months.remove(&month);
                if months.is_empty() {
                    next.usage.remove(&project);
                } else {
                    next.usage.insert(project, months);
                }
            }
            if let Some(r) = src.usage(record) {
                let (project, month) = (r.spec.project.clone(), r.spec.month.clone());
                let mut months = next.usage.get(&project).cloned().unwrap_or_default();
                months.insert(month.clone(), r);
                next.usage.insert(project.clone(), months);
                next.usage_at.insert(record.clone(), (project, month));
            }
        }
        next
    }

    /// Puts a project's entry (live or terminated; `None`: there is none), keeping the one there
    /// if it is the same, and files it under its holders, its customer and what it asked.
    fn put(&mut self, terminated: bool, name: &str, new: Option<Entry>) {
        let slot = if terminated {
            Slot::Terminated(name.to_string())
        } else {
            Slot::Live(name.to_string())
        };
        let map = if terminated {
            &mut self.terminated
        } else {
            &mut self.projects
        };
        let old = map.get(name).cloned();
        match (&old, new) {
            (Some(o), Some(n)) if **o == n => return,
            (None, None) => return,
            (_, Some(n)) => {
                map.insert(name.to_string(), Arc::new(n));
            }
            (_, None) => {
                map.remove(name);
            }
        }
        let new = map.get(name).cloned();
        let key = (terminated, name.to_string());
        for (entry, add) in [(old, false), (new, true)] {
            let Some(e) = entry else { continue };
            for h in &e.holders {
                file_hashed(&mut self.by_subject, &subject_key(&h.subject), &key, add);
            }
            file(&mut self.by_customer, &e.customer, &slot, add);
            for a in &e.asked {
                file(&mut self.asked, a, &slot, add);
            }
        }
    }

    /// [`Index::put`] for a customer.
    fn put_customer(&mut self, name: &str, new: Option<CustomerEntry>) {
        let old = self.customers.get(name).cloned();
        match (&old, new) {
            (Some(o), Some(n)) if **o == n => return,
            (None, None) => return,
            (_, Some(n)) => {
                self.customers.insert(name.to_string(), Arc::new(n));
            }
            (_, None) => {
                self.customers.remove(name);
            }
        }
        let new = self.customers.get(name).cloned();
        let slot = Slot::Customer(name.to_string());
        for (entry, add) in [(old, false), (new, true)] {
            let Some(e) = entry else { continue };
            for h in &e.holders {
                let key = subject_key(&h.subject);
                file_hashed(&mut self.customers_by_subject, &key, &name.to_string(), add);
            }
            for a in &e.asked {
                file(&mut self.asked, a, &slot, add);
            }
        }
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
            .flat_map(|e| e.members())
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
                .flat_map(|c| c.members.iter().map(|m| m.render(None, &c.fields.name))),
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
