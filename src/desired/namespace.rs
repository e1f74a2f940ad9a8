//! The project's namespace, its ResourceQuota and its LimitRange.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    LimitRange, LimitRangeItem, LimitRangeSpec, Namespace, ResourceQuota, ResourceQuotaSpec,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;

use super::{annotations, child_meta, labels};
use crate::api::Project;

/// Name of the ResourceQuota the operator keeps in each project namespace.
pub const QUOTA_NAME: &str = "tenancy-quota";
/// Name of the LimitRange the operator keeps in each project namespace.
pub const LIMITS_NAME: &str = "tenancy-limits";

/// Whether the namespace is in use or holds a soft-deleted project.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NamespaceState {
    Active,
    Terminated,
}

impl NamespaceState {
    pub fn as_str(self) -> &'static str {
        match self {
            NamespaceState::Active => "active",
            NamespaceState::Terminated => "terminated",
        }
    }
}

/// The namespace a project owns: same name, labelled with project, customer, state, and the
/// project's UID and incarnation.
///
/// It carries no owner reference: a soft delete keeps the namespace after the Project is gone.
pub fn namespace_for(project: &Project, state: NamespaceState, finished: bool) -> Namespace {
    let name = project.name_any();
    let mut labels = BTreeMap::from([
        (
            labels::MANAGED_BY.to_string(),
            labels::MANAGED_BY_VALUE.to_string(),
        ),
        (labels::PROJECT.to_string(), name.clone()),
        (labels::CUSTOMER.to_string(), project.spec.customer.clone()),
        (labels::STATE.to_string(), state.as_str().to_string()),
    ]);
    if let Some(uid) = &project.metadata.uid {
        labels.insert(labels::PROJECT_UID.to_string(), uid.clone());
    }
    if let Some(incarnation) = incarnation_of(project) {
        labels.insert(labels::INCARNATION.to_string(), incarnation.to_string());
    }
    labels.insert(labels::FINISHED.to_string(), finished.to_string());
    Namespace {
        metadata: ObjectMeta {
            name: Some(name),
            labels: Some(labels),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// The project's incarnation (annotation `tenancy.dev/incarnation`), if it has one.
pub fn incarnation_of(project: &Project) -> Option<&str> {
    project
        .annotations()
        .get(annotations::INCARNATION)
        .map(String::as_str)
        .filter(|i| !i.is_empty())
}

/// Whether a namespace was created for this project (and so may be managed or adopted).
/// A namespace someone else created is never touched.
pub fn namespace_belongs_to(namespace: &Namespace, project: &str) -> bool {
    let labels = namespace.labels();
    labels.get(labels::MANAGED_BY).map(String::as_str) == Some(labels::MANAGED_BY_VALUE)
        && labels.get(labels::PROJECT).map(String::as_str) == Some(project)
}

/// How a namespace named like a project stands to that project.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Standing {
    /// Created for (or adopted by) this very project incarnation: it manages it.
    Owned,
    /// The archived namespace of a soft-deleted project of this name: a recovery may adopt it.
    Archived,
    /// Made for a project of this name, but for another incarnation (`uid`): its project
    /// vanished without the soft delete, or it belongs to another one. Adopting it is a staff
    /// decision.
    Orphaned { uid: Option<String> },
    /// Not made by the operator for a project of this name: never touched.
    Foreign,
}

/// How `namespace` stands to `project`. A namespace belongs to one project incarnation: its UID
/// (label `tenancy.dev/project-uid`), or, across a backup and restore where the UID changes, its
/// incarnation (label `tenancy.dev/incarnation` equal to the project's annotation, which only
/// staff may set). Other labels never make it someone's. Namespaces made before the UID label
/// existed belong to the project whose status already names them (and get the label on its next
/// reconcile).
pub fn standing(namespace: &Namespace, project: &Project) -> Standing {
    let name = project.name_any();
    let labels = namespace.labels();
    let status = project.status.as_ref();
    // The project already manages it (its status says so): an admin who stripped its labels, or
    // a namespace made before the UID label, gets them back.
    let known = status.and_then(|s| s.namespace.as_deref()) == Some(name.as_str())
        && status.and_then(|s| s.phase) != Some(crate::api::ProjectPhase::Conflict);
    if !namespace_belongs_to(namespace, &name) {
        return if known && !labels.contains_key(labels::PROJECT) {
            Standing::Owned
        } else {
            Standing::Foreign
        };
    }
    let uid = labels.get(labels::PROJECT_UID).cloned();
    let same_incarnation = incarnation_of(project)
        .is_some_and(|i| labels.get(labels::INCARNATION).map(String::as_str) == Some(i));
    let own = (uid.is_some() && uid == project.metadata.uid) || same_incarnation;
    let terminated =
        labels.get(labels::STATE).map(String::as_str) == Some(NamespaceState::Terminated.as_str());
    // An archive of an earlier project; this project's own namespace stays its own whatever its
    // state label says (its soft delete in progress, or the label edited by hand).
    if terminated && !own {
        return Standing::Archived;
    }
    if own || (uid.is_none() && known) {
        Standing::Owned
    } else {
        Standing::Orphaned { uid }
    }
}

/// Whether memberships of this project bind anything in this namespace: the project is not
/// being deleted and owns the namespace (this very incarnation of it), or is adopting the archive
/// it has recorded recovering (its next reconcile relabels the namespace; the team it restored or
/// invited is not reported as without a project meanwhile). The RoleBindings of memberships and
/// the `views.tenancy.dev` read API both decide by it.
pub fn binds(project: &Project, namespace: &Namespace) -> bool {
    project.metadata.deletion_timestamp.is_none()
        && match standing(namespace, project) {
            Standing::Owned => true,
            Standing::Archived => {
                let recovered = project.status.as_ref().and_then(|s| s.recovery.as_ref());
                crate::lifecycle::archive::Archive::of(namespace)
                    .is_some_and(|a| recovered.is_some_and(|r| r.terminated_at == a.terminated_at))
            }
            _ => false,
        }
}

/// Why the namespace must not run pods right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Freeze {
    /// Pods may run.
    None,
    /// Before startDate, suspended after expiry, or soft-deleted: `pods: 0`.
    NoPods,
}

/// The namespace's ResourceQuota: what a ResourceQuota accepts of `spec.quota.hard` (see
/// [`super::quota::accepted_quota`]), plus `0` for every resource the customer limits
/// (`customer_limits`, canonical names) that the project leaves unset, so no project of a limited
/// customer is ever unbounded, plus `count/serviceaccounts` from maxServiceAccounts (the
/// namespace's `default` ServiceAccount not counted), plus `pods: 0` while frozen. `None` when
/// there is nothing to limit.
pub fn resource_quota_for(
    project: &Project,
    freeze: Freeze,
    customer_limits: &[String],
) -> Option<ResourceQuota> {
    let mut hard: BTreeMap<String, Quantity> = project
        .spec
        .quota
        .as_ref()
        .map(|q| super::quota::accepted_quota(&q.hard))
        .unwrap_or_default();
    for missing in super::quota::unbounded(&hard, customer_limits) {
        hard.insert(missing, Quantity("0".into()));
    }
    if let Some(max) = project.spec.max_service_accounts {
        hard.insert(
            "count/serviceaccounts".into(),
            Quantity((i64::from(max) + 1).to_string()),
        );
    }
    if freeze == Freeze::NoPods {
        hard.insert("pods".into(), Quantity("0".into()));
    }
    if hard.is_empty() {
        return None;
    }
    let ns = project.name_any();
    Some(ResourceQuota {
        metadata: child_meta(QUOTA_NAME, Some(&ns), project, "quota"),
        spec: Some(ResourceQuotaSpec {
            hard: Some(hard),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// What is wrong with the project's quota and container limits (what the apiserver would refuse
/// in its ResourceQuota or LimitRange), one message per problem naming the field. The webhook
/// refuses such a spec; one stored before that is applied without the bad parts.
pub fn spec_problems(project: &Project) -> Vec<String> {
    let mut out = project
        .spec
        .quota
        .as_ref()
        .map(|q| super::quota::quota_problems("spec.quota.hard", &q.hard))
        .unwrap_or_default();
    if let Some(l) = &project.spec.limit_range {
        out.extend(super::quota::limit_range_problems("spec.limitRange", l));
    }
    out
}

/// The namespace's LimitRange from `spec.limitRange`, or `None` when it sets nothing or holds
/// something a LimitRange refuses (see [`spec_problems`]).
pub fn limit_range_for(project: &Project) -> Option<LimitRange> {
    let limits = project.spec.limit_range.as_ref()?;
    if !super::quota::limit_range_problems("spec.limitRange", limits).is_empty() {
        return None;
    }
    let nonempty = |m: &crate::api::ResourceList| (!m.is_empty()).then(|| m.clone());
    let item = LimitRangeItem {
        type_: "Container".into(),
        default: nonempty(&limits.default),
        default_request: nonempty(&limits.default_request),
        max: nonempty(&limits.max),
        min: nonempty(&limits.min),
        ..Default::default()
    };
    if item.default.is_none()
        && item.default_request.is_none()
        && item.max.is_none()
        && item.min.is_none()
    {
        return None;
    }
    let ns = project.name_any();
    Some(LimitRange {
        metadata: child_meta(LIMITS_NAME, Some(&ns), project, "limits"),
        spec: Some(LimitRangeSpec { limits: vec![item] }),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::api::ProjectSpec;

    pub fn project(name: &str, spec: serde_json::Value) -> Project {
        let mut spec = spec;
        if spec.get("customer").is_none() {
            spec["customer"] = "acme".into();
        }
        let spec: ProjectSpec = serde_json::from_value(spec).unwrap();
        let mut p = Project::new(name, spec);
        p.metadata.uid = Some(format!("uid-{name}"));
        p
    }

    #[test]
    fn namespace_is_labelled_with_project_customer_and_state() {
        let p = project("web", serde_json::json!({"customer": "acme"}));
        let ns = namespace_for(&p, NamespaceState::Active, false);
        let l = ns.labels();
        assert_eq!(ns.name_any(), "web");
        assert_eq!(l[labels::PROJECT], "web");
        assert_eq!(l[labels::CUSTOMER], "acme");
        assert_eq!(l[labels::STATE], "active");
        assert_eq!(l[labels::FINISHED], "false");
        assert_eq!(l[labels::PROJECT_UID], "uid-web");
        assert!(
            ns.metadata.owner_references.is_none(),
            "a soft delete must keep the namespace"
        );
        assert!(namespace_belongs_to(&ns, "web"));
        assert!(!namespace_belongs_to(&ns, "other"));
    }

    #[test]
    fn a_namespace_created_by_someone_else_does_not_belong() {
        let foreign = Namespace {
            metadata: ObjectMeta {
                name: Some("web".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        assert!(!namespace_belongs_to(&foreign, "web"));
    }

    #[test]
    fn a_namespace_belongs_to_one_project_incarnation() {
        use crate::api::{ProjectPhase, ProjectStatus};
        let p = project("web", serde_json::json!({}));
        let mine = namespace_for(&p, NamespaceState::Active, false);
        let mut later = project("web", serde_json::json!({}));
        later.metadata.uid = Some("uid-web-2".into());
        let mut legacy = mine.clone();
        legacy.labels_mut().remove(labels::PROJECT_UID);
        let archived = namespace_for(&p, NamespaceState::Terminated, false);
        let mut known = later.clone();
        known.status = Some(ProjectStatus {
            namespace: Some("web".into()),
            phase: Some(ProjectPhase::Active),
            ..Default::default()
        });
        let mut conflicted = known.clone();
        conflicted.status.as_mut().unwrap().phase = Some(ProjectPhase::Conflict);
        let foreign = Namespace {
            metadata: ObjectMeta {
                name: Some("web".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let cases = [
            ("its own namespace", &mine, &p, Standing::Owned),
            (
                "the namespace of an earlier incarnation",
                &mine,
                &later,
                Standing::Orphaned {
                    uid: Some("uid-web".into()),
                },
            ),
            (
                "a namespace without UID, new project",
                &legacy,
                &later,
                Standing::Orphaned { uid: None },
            ),
            (
                "a namespace without UID the status names",
                &legacy,
                &known,
                Standing::Owned,
            ),
            (
                "a namespace without UID, project in Conflict",
                &legacy,
                &conflicted,
                Standing::Orphaned { uid: None },
            ),
            ("an archive", &archived, &later, Standing::Archived),
            (
                "its own, state label edited",
                &archived,
                &p,
                Standing::Owned,
            ),
            ("someone else's", &foreign, &p, Standing::Foreign),
            (
                "its own, labels stripped",
                &foreign,
                &known,
                Standing::Owned,
            ),
        ];
        for (what, ns, project, want) in cases {
            assert_eq!(standing(ns, project), want, "{what}");
        }
    }

    #[test]
    fn a_restored_namespace_is_owned_by_the_project_of_its_incarnation() {
        let incarnated = |uid: &str, incarnation: Option<&str>| {
            let mut p = project("web", serde_json::json!({}));
            p.metadata.uid = Some(uid.into());
            if let Some(i) = incarnation {
                p.annotations_mut()
                    .insert(annotations::INCARNATION.into(), i.into());
            }
            p
        };
        // The source cluster's project and its namespace, as a backup holds them.
        let source = incarnated("uid-source", Some("inc-1"));
        let restored_ns = namespace_for(&source, NamespaceState::Active, false);
        assert_eq!(restored_ns.labels()[labels::INCARNATION], "inc-1");
        let restored_archive = namespace_for(&source, NamespaceState::Terminated, false);
        let mut without_label = restored_ns.clone();
        without_label.labels_mut().remove(labels::INCARNATION);
        // The restored Project: a new UID, the same incarnation (only staff may set it).
        let restored = incarnated("uid-restored", Some("inc-1"));
        let other = incarnated("uid-other", Some("inc-2"));
        let bare = incarnated("uid-bare", None);
        let blank = incarnated("uid-blank", Some(""));
        let mut blank_ns = namespace_for(&blank, NamespaceState::Active, false);
        blank_ns
            .labels_mut()
            .insert(labels::INCARNATION.into(), String::new());
        let orphaned = Standing::Orphaned {
            uid: Some("uid-source".into()),
        };
        let cases = [
            (
                "its own incarnation, restored",
                &restored_ns,
                &restored,
                Standing::Owned,
            ),
            (
                "its own incarnation, its soft delete in progress when backed up",
                &restored_archive,
                &restored,
                Standing::Owned,
            ),
            (
                "another incarnation (a project named like it, or a forged annotation)",
                &restored_ns,
                &other,
                orphaned.clone(),
            ),
            (
                "a project without the annotation",
                &restored_ns,
                &bare,
                orphaned.clone(),
            ),
            (
                "a namespace without the label: the UID alone, as before",
                &without_label,
                &restored,
                orphaned.clone(),
            ),
            (
                "an empty incarnation matches nothing",
                &blank_ns,
                &incarnated("uid-x", Some("")),
                Standing::Orphaned {
                    uid: Some("uid-blank".into()),
                },
            ),
            (
                "the archive of another incarnation is an archive",
                &restored_archive,
                &other,
                Standing::Archived,
            ),
            ("its own UID", &restored_ns, &source, Standing::Owned),
        ];
        for (what, ns, project, want) in cases {
            assert_eq!(standing(ns, project), want, "{what}");
        }
        let relabelled = namespace_for(&restored, NamespaceState::Active, false);
        assert_eq!(
            relabelled.labels()[labels::PROJECT_UID],
            "uid-restored",
            "once owned, the namespace is relabelled with the new UID"
        );
    }

    #[test]
    fn quota_adds_service_accounts_and_freezes_pods() {
        let p = project(
            "web",
            serde_json::json!({"quota": {"hard": {"requests.cpu": "4"}}, "maxServiceAccounts": 3}),
        );
        let rq = resource_quota_for(&p, Freeze::None, &[]).unwrap();
        let hard = rq.spec.unwrap().hard.unwrap();
        assert_eq!(hard["requests.cpu"].0, "4");
        assert_eq!(
            hard["count/serviceaccounts"].0, "4",
            "the default ServiceAccount is not counted"
        );
        assert!(!hard.contains_key("pods"));
        let frozen = resource_quota_for(&p, Freeze::NoPods, &[])
            .unwrap()
            .spec
            .unwrap()
            .hard
            .unwrap();
        assert_eq!(frozen["pods"].0, "0");
        assert_eq!(rq.metadata.owner_references.unwrap()[0].kind, "Project");
    }

    #[test]
    fn the_quota_leaves_out_what_a_resource_quota_refuses_and_bounds_what_the_customer_limits() {
        let p = project(
            "web",
            serde_json::json!({"quota": {"hard": {"requests.cpu": "4", "foo": "1", "pods": "-1"}}}),
        );
        let limits = ["requests.cpu".to_string(), "requests.memory".to_string()];
        let hard = resource_quota_for(&p, Freeze::None, &limits)
            .unwrap()
            .spec
            .unwrap()
            .hard
            .unwrap();
        let got: Vec<(&str, &str)> = hard
            .iter()
            .map(|(k, v)| (k.as_str(), v.0.as_str()))
            .collect();
        assert_eq!(got, [("requests.cpu", "4"), ("requests.memory", "0")]);
        let bare = project("web", serde_json::json!({}));
        assert!(
            resource_quota_for(&bare, Freeze::None, &limits).is_some(),
            "a project of a limited customer always has a quota"
        );
    }

    #[test]
    fn no_quota_when_nothing_to_limit() {
        let p = project("web", serde_json::json!({}));
        assert!(resource_quota_for(&p, Freeze::None, &[]).is_none());
        assert!(
            resource_quota_for(&p, Freeze::NoPods, &[]).is_some(),
            "a frozen namespace always has a quota"
        );
    }

    #[test]
    fn limit_range_carries_container_defaults() {
        let p = project(
            "web",
            serde_json::json!({"limitRange": {"default": {"cpu": "500m"}, "defaultRequest": {"memory": "128Mi"}}}),
        );
        let lr = limit_range_for(&p).unwrap();
        let item = &lr.spec.unwrap().limits[0];
        assert_eq!(item.type_, "Container");
        assert_eq!(item.default.as_ref().unwrap()["cpu"].0, "500m");
        assert_eq!(item.default_request.as_ref().unwrap()["memory"].0, "128Mi");
        assert!(limit_range_for(&project("x", serde_json::json!({}))).is_none());
    }
}
