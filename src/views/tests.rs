use serde_json::{Value, json};

use super::select::{MemberQuery, ProjectQuery};
use super::*;

const NOW: &str = "2027-03-01T12:00:00Z";

fn now() -> Timestamp {
    NOW.parse().unwrap()
}

fn obj<T: serde::de::DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).unwrap()
}

fn project(name: &str, customer: &str, phase: &str, rv: u64) -> Arc<Project> {
    Arc::new(obj(json!({
        "apiVersion": "tenancy.dev/v1alpha1", "kind": "Project",
        "metadata": {"name": name, "uid": format!("uid-{name}"), "resourceVersion": rv.to_string(),
            "creationTimestamp": "2027-01-01T00:00:00Z"},
        "spec": {"customer": customer, "displayName": format!("The {name}"), "backendId": format!("B-{name}")},
        "status": {"phase": phase, "namespace": name},
    })))
}

fn namespace(name: &str, customer: &str, extra: Value) -> Arc<Namespace> {
    let mut v = json!({"metadata": {"name": name, "uid": format!("ns-{name}"), "resourceVersion": "5",
        "labels": {"app.kubernetes.io/managed-by": "tenancy-operator", "tenancy.dev/project": name,
            "tenancy.dev/project-uid": format!("uid-{name}"), "tenancy.dev/state": "active",
            "tenancy.dev/customer": customer}}});
    if let Some(m) = extra.as_object() {
        for (k, val) in m {
            v["metadata"][k] = val.clone();
        }
    }
    Arc::new(obj(v))
}

fn customer(name: &str, owners: Value, support: Value) -> Arc<Customer> {
    Arc::new(obj(json!({
        "apiVersion": "tenancy.dev/v1alpha1", "kind": "Customer",
        "metadata": {"name": name, "resourceVersion": "3"},
        "spec": {"displayName": format!("{name} Inc"), "abbreviation": name.to_uppercase(),
            "owners": owners, "support": support},
    })))
}

fn membership(
    ns: &str,
    name: &str,
    subject: Value,
    role: &str,
    extra: Value,
) -> Arc<ProjectMembership> {
    let mut v = json!({"apiVersion": "tenancy.dev/v1alpha1", "kind": "ProjectMembership",
        "metadata": {"name": name, "namespace": ns, "resourceVersion": "7",
            "creationTimestamp": "2027-01-01T00:00:00Z"},
        "spec": {"subject": subject, "role": role}});
    if let Some(m) = extra.as_object() {
        for (k, val) in m {
            if k == "expirationTime" {
                v["spec"][k] = val.clone();
            } else {
                v[k] = val.clone();
            }
        }
    }
    Arc::new(obj(v))
}

fn user(name: &str) -> Value {
    json!({"kind": "User", "name": name})
}

/// acme (owner olga, support sam; eve's ownership has expired) with projects web (a team) and
/// legacy (in a namespace it does not own: Conflict); globex (owner gina) with shop; an archive
/// of acme's deleted project old.
type World = (
    Vec<Arc<Project>>,
    Vec<Arc<Customer>>,
    Vec<Arc<ProjectMembership>>,
    Vec<Arc<Namespace>>,
);

fn world() -> World {
    let archive = json!({
        "spec": {"customer": "acme", "displayName": "The old"}, "customer": "acme",
        "terminatedAt": "2027-02-20T00:00:00Z", "terminatedBy": "olga",
        "members": [{"name": "mia", "subject": {"kind": "User", "name": "mia"}, "role": "Manager"}],
    });
    let projects = vec![
        project("web", "acme", "Active", 10),
        project("legacy", "acme", "Conflict", 11),
        project("shop", "globex", "Finished", 12),
    ];
    let customers = vec![
        customer(
            "acme",
            json!([{"kind": "User", "name": "olga"},
                   {"kind": "User", "name": "eve", "expirationTime": "2027-02-01T00:00:00Z"}]),
            json!([{"kind": "User", "name": "sam", "expirationTime": "2027-06-01T00:00:00Z"}]),
        ),
        customer(
            "globex",
            json!([{"kind": "User", "name": "gina"}]),
            json!([]),
        ),
    ];
    let memberships = vec![
        membership("web", "mia", user("mia"), "Manager", json!({})),
        membership("web", "adam", user("adam"), "Administrator", json!({})),
        membership(
            "web",
            "mo",
            user("mo"),
            "Member",
            json!({"expirationTime": "2027-03-01T13:00:00Z"}),
        ),
        membership(
            "web",
            "old-timer",
            user("ola"),
            "Member",
            json!({"expirationTime": "2027-02-01T00:00:00Z"}),
        ),
        membership(
            "web",
            "pat",
            user("pat"),
            "Member",
            json!({"status": {"phase": "Pending"}}),
        ),
        membership(
            "web",
            "devs",
            json!({"kind": "Group", "name": "devs"}),
            "Member",
            json!({}),
        ),
        membership(
            "web",
            "robot",
            json!({"kind": "ServiceAccount", "name": "ci", "namespace": "tools"}),
            "Member",
            json!({}),
        ),
        membership("shop", "mia", user("mia"), "Member", json!({})),
        membership("legacy", "mia", user("mia"), "Manager", json!({})),
    ];
    let namespaces = vec![
        namespace("web", "acme", json!({})),
        namespace("shop", "globex", json!({})),
        // Someone else's namespace: legacy binds nothing.
        Arc::new(obj(
            json!({"metadata": {"name": "legacy", "resourceVersion": "4"}}),
        )),
        namespace(
            "old",
            "acme",
            json!({"labels": {"app.kubernetes.io/managed-by": "tenancy-operator", "tenancy.dev/project": "old",
                "tenancy.dev/project-uid": "uid-old", "tenancy.dev/state": "terminated", "tenancy.dev/customer": "acme"},
                "annotations": {"tenancy.dev/archive": archive.to_string()}}),
        ),
    ];
    (projects, customers, memberships, namespaces)
}

fn index() -> Index {
    let (p, c, m, n) = world();
    let no = |_: &str| false;
    Index::build(
        &Sources {
            projects: &p,
            customers: &c,
            memberships: &m,
            namespaces: &n,
            usages: &[],
            is_project_namespace: &no,
        },
        42,
        now(),
        None,
    )
}

fn viewer(user: &str, groups: &[&str], staff: bool) -> Viewer {
    Viewer {
        requester: Requester {
            username: user.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        },
        staff,
    }
}

fn seen(items: &[MyProject]) -> Vec<String> {
    items
        .iter()
        .map(|p| {
            let roles: Vec<&str> = p.access.roles.iter().map(|r| r.as_str()).collect();
            format!(
                "{}:{}",
                p.metadata.name.as_deref().unwrap(),
                roles.join("+")
            )
        })
        .collect()
}

#[test]
fn each_requester_sees_exactly_the_projects_the_rbac_builders_give_them() {
    let index = index();
    let cases: &[(&str, Viewer, bool, &[&str])] = &[
        (
            "a manager",
            viewer("mia", &[], false),
            false,
            &["shop:Member", "web:Manager"],
        ),
        (
            "an administrator",
            viewer("adam", &[], false),
            false,
            &["web:Administrator"],
        ),
        (
            "a member until 13:00",
            viewer("mo", &[], false),
            false,
            &["web:Member"],
        ),
        (
            "a member whose role expired",
            viewer("ola", &[], false),
            false,
            &[],
        ),
        (
            "an invitee who has not accepted",
            viewer("pat", &[], false),
            false,
            &[],
        ),
        (
            "a member through a group",
            viewer("x", &["devs"], false),
            false,
            &["web:Member"],
        ),
        (
            "a ServiceAccount member",
            viewer("system:serviceaccount:tools:ci", &[], false),
            false,
            &["web:Member"],
        ),
        (
            "the customer owner",
            viewer("olga", &[], false),
            false,
            &["legacy:CustomerOwner", "web:CustomerOwner"],
        ),
        (
            "an owner whose role expired",
            viewer("eve", &[], false),
            false,
            &[],
        ),
        (
            "support",
            viewer("sam", &[], false),
            false,
            &["legacy:CustomerSupport", "web:CustomerSupport"],
        ),
        (
            "a stranger",
            viewer("zed", &["system:authenticated"], false),
            false,
            &[],
        ),
        (
            "staff",
            viewer("root", &["tenancy:staff"], true),
            false,
            &["legacy:Staff", "shop:Staff", "web:Staff"],
        ),
        (
            "the owner, with terminated projects",
            viewer("olga", &[], false),
            true,
            &[
                "legacy:CustomerOwner",
                "old:CustomerOwner",
                "web:CustomerOwner",
            ],
        ),
        (
            "a manager, with terminated projects",
            viewer("mia", &[], false),
            true,
            &["shop:Member", "web:Manager"],
        ),
        (
            "staff, with terminated projects",
            viewer("root", &[], true),
            true,
            &["legacy:Staff", "old:Staff", "shop:Staff", "web:Staff"],
        ),
    ];
    for (who, v, terminated, want) in cases {
        let got = seen(&index.projects_for(v, *terminated, true, now()));
        assert_eq!(got, *want, "{who}");
    }
    // The portal's can_manage / can_admin.
    let mia = index.projects_for(&viewer("mia", &["devs"], false), false, true, now());
    let web = mia
        .iter()
        .find(|p| p.metadata.name.as_deref() == Some("web"))
        .unwrap();
    assert_eq!((web.access.can_manage, web.access.can_admin), (true, false));
    assert_eq!(web.access.roles, vec![ViewRole::Manager, ViewRole::Member]);
}

#[test]
fn a_role_ends_at_its_expiration_time_without_a_rebuild() {
    let index = index();
    let mo = viewer("mo", &[], false);
    let at = |t: &str| t.parse::<Timestamp>().unwrap();
    assert_eq!(
        seen(&index.projects_for(&mo, false, true, at("2027-03-01T12:59:59Z"))),
        ["web:Member"]
    );
    assert!(
        index
            .projects_for(&mo, false, true, at("2027-03-01T13:00:00Z"))
            .is_empty()
    );
    assert_eq!(
        index.next_change(&mo, now()),
        Some(at("2027-03-01T13:00:00Z"))
    );
    assert_eq!(index.next_change(&viewer("mia", &[], false), now()), None);
}

#[test]
fn terminated_projects_carry_when_and_by_whom_and_the_purge_time() {
    let index = index();
    let olga = viewer("olga", &[], false);
    assert!(index.may_see_terminated(&olga, now()));
    assert!(index.may_see_terminated(&viewer("root", &[], true), now()));
    assert!(!index.may_see_terminated(&viewer("mia", &[], false), now()));
    assert!(!index.may_see_terminated(&viewer("eve", &[], false), now()));
    let only = index.projects_for(&olga, true, false, now());
    assert_eq!(seen(&only), ["old:CustomerOwner"]);
    let t = only[0].status.terminated.as_ref().unwrap();
    assert_eq!(only[0].status.phase, TERMINATED);
    assert_eq!(t.by.as_deref(), Some("olga"));
    assert_eq!(t.purge_after.0.to_string(), "2027-03-22T00:00:00Z");
    assert_eq!(t.previous_team[0].name, "mia");
    assert_eq!(
        only[0].metadata.labels.as_ref().unwrap()["tenancy.dev/customer"],
        "acme"
    );
}

#[test]
fn the_terminated_item_carries_the_archived_spec_for_owners_support_and_staff_only() {
    let (p, c, m, mut n) = world();
    let archive = json!({
        "spec": {"customer": "acme", "displayName": "The lab", "endDate": "2027-06-30",
            "quota": {"hard": {"requests.cpu": "2", "requests.memory": "4Gi"}},
            "limitRange": {"default": {"cpu": "500m"}},
            "checklistAnswers": {"personal-data": false}},
        "customer": "acme", "terminatedAt": "2027-02-25T00:00:00Z", "terminatedBy": "olga",
        "members": [{"name": "mo", "subject": {"kind": "User", "name": "mo"}, "role": "Member"}],
    });
    n.push(namespace(
        "lab",
        "acme",
        json!({"labels": {"app.kubernetes.io/managed-by": "tenancy-operator", "tenancy.dev/project": "lab",
            "tenancy.dev/project-uid": "uid-lab", "tenancy.dev/state": "terminated", "tenancy.dev/customer": "acme"},
            "annotations": {"tenancy.dev/archive": archive.to_string()}}),
    ));
    let no = |_: &str| false;
    let index = Index::build(
        &Sources {
            projects: &p,
            customers: &c,
            memberships: &m,
            namespaces: &n,
            usages: &[],
            is_project_namespace: &no,
        },
        42,
        now(),
        None,
    );
    let lab = |v: &Viewer| {
        index
            .projects_for(v, true, true, now())
            .into_iter()
            .find(|p| p.metadata.name.as_deref() == Some("lab"))
    };
    for who in [
        viewer("olga", &[], false),
        viewer("sam", &[], false),
        viewer("root", &[], true),
    ] {
        let item = lab(&who).unwrap_or_else(|| panic!("{} sees lab", who.requester.username));
        let v = serde_json::to_value(&item).unwrap();
        assert_eq!(
            v["status"]["terminated"]["spec"], archive["spec"],
            "{} gets the spec as archived",
            who.requester.username
        );
        // The display fields stay what they were (no quota among them).
        assert_eq!(
            v["spec"],
            json!({"displayName": "The lab", "endDate": "2027-06-30"})
        );
    }
    // A previous member, a member of another project of the customer, a group member, an owner
    // whose role expired and a stranger never get the item, so never its spec.
    for who in [
        viewer("mo", &[], false),
        viewer("mia", &[], false),
        viewer("x", &["devs"], false),
        viewer("eve", &[], false),
        viewer("nobody", &[], false),
    ] {
        assert_eq!(lab(&who), None, "{}", who.requester.username);
        let all = serde_json::to_string(&index.projects_for(&who, true, true, now())).unwrap();
        assert!(
            !all.contains("requests.cpu"),
            "{}: {all}",
            who.requester.username
        );
    }
}

#[test]
fn members_of_what_one_sees() {
    let index = index();
    let names = |v: &Viewer, q: &str| -> Vec<String> {
        let q = MemberQuery::parse(q, "").unwrap();
        index
            .members_for(v, now())
            .into_iter()
            .filter(|m| q.matches(m))
            .map(|m| format!("{}={}", m.metadata.name.unwrap(), m.phase))
            .collect()
    };
    let adam = viewer("adam", &[], false);
    assert_eq!(
        names(&adam, ""),
        [
            "project.web.adam=Active",
            "project.web.devs=Active",
            "project.web.mia=Active",
            "project.web.mo=Active",
            "project.web.old-timer=Expired",
            "project.web.pat=Pending",
            "project.web.robot=Active",
        ]
    );
    let olga = viewer("olga", &[], false);
    let all = names(&olga, "customer=acme");
    assert_eq!(all.len(), 3, "{all:?}");
    assert!(
        all.iter().all(|m| m.starts_with("customer.acme.")),
        "{all:?}"
    );
    assert!(names(&olga, "customer=acme,role=CustomerSupport")[0].ends_with("=Active"));
    assert!(names(&olga, "role=CustomerOwner,phase=Expired").len() == 1);
    assert_eq!(
        names(&olga, "project=legacy"),
        ["project.legacy.mia=Inactive"]
    );
    assert_eq!(
        names(&adam, "expiresBefore=2027-03-02T00:00:00Z"),
        ["project.web.mo=Active", "project.web.old-timer=Expired"]
    );
    assert_eq!(names(&adam, "subject.name=mia"), ["project.web.mia=Active"]);
    assert!(names(&viewer("zed", &[], false), "").is_empty());
    // Staff see every customer's people.
    assert_eq!(
        names(&viewer("root", &[], true), "customer=globex").len(),
        1
    );
}

#[test]
fn filters_match_what_the_portal_filters() {
    let index = index();
    let staff = viewer("root", &[], true);
    let names = |fields: &str, labels: &str| -> Vec<String> {
        let q = ProjectQuery::parse(fields, labels).unwrap();
        index
            .projects_for(&staff, q.lifetimes.terminated(), q.lifetimes.live(), now())
            .into_iter()
            .filter(|p| q.matches(p))
            .map(|p| p.metadata.name.unwrap())
            .collect()
    };
    let cases: &[(&str, &str, &[&str])] = &[
        ("", "", &["legacy", "shop", "web"]),
        ("status.finished=false", "", &["legacy", "web"]),
        ("status.phase=Terminated", "", &["old"]),
        (
            "includeTerminated=true",
            "",
            &["legacy", "old", "shop", "web"],
        ),
        ("", "tenancy.dev/customer in (globex)", &["shop"]),
        (
            "",
            "tenancy.dev/customer notin (globex)",
            &["legacy", "web"],
        ),
        ("customer.abbreviation=GLOBEX", "", &["shop"]),
        ("customer.displayName=acme Inc", "", &["legacy", "web"]),
        ("metadata.name=web", "", &["web"]),
        ("name.contains=EB", "", &["web"]),
        ("query=b-sho", "", &["shop"]),
        ("query=uid-legacy", "", &["legacy"]),
        (
            "createdAfter=2026-12-31T00:00:00Z",
            "",
            &["legacy", "shop", "web"],
        ),
        ("createdAfter=2027-01-02", "", &[]),
        (
            "access.canAdmin=true,status.phase!=Conflict",
            "",
            &["shop", "web"],
        ),
    ];
    for (fields, labels, want) in cases {
        assert_eq!(names(fields, labels), *want, "{fields} {labels}");
    }
}

#[test]
fn a_rebuild_reuses_what_did_not_change_and_redoes_what_did() {
    let (mut p, c, m, n) = world();
    let no = |_: &str| false;
    let src = |p: &[Arc<Project>]| {
        Index::build(
            &Sources {
                projects: p,
                customers: &c,
                memberships: &m,
                namespaces: &n,
                usages: &[],
                is_project_namespace: &no,
            },
            43,
            now(),
            None,
        )
    };
    let first = src(&p);
    p[2] = project("shop", "globex", "Active", 99);
    let (_, c2, m2, n2) = world();
    let second = Index::build(
        &Sources {
            projects: &p,
            customers: &c2,
            memberships: &m2,
            namespaces: &n2,
            usages: &[],
            is_project_namespace: &no,
        },
        44,
        now(),
        Some(&first),
    );
    assert!(Arc::ptr_eq(&first.projects["web"], &second.projects["web"]));
    assert!(!Arc::ptr_eq(
        &first.projects["shop"],
        &second.projects["shop"]
    ));
    assert_eq!(second.projects["shop"].item.status.phase, "Active");
    assert!(Arc::ptr_eq(
        &first.customers["acme"],
        &second.customers["acme"]
    ));
}

/// A month: a closed one holds 24 core-hours; an open one nothing yet before `since`.
fn record(
    project: &str,
    customer: &str,
    month: &str,
    state: &str,
    since: &str,
    cpu: &str,
) -> Arc<crate::api::ProjectUsage> {
    let hours: i128 = if state == "Closed" { 24 } else { 0 };
    Arc::new(obj(json!({
        "apiVersion": "tenancy.dev/v1alpha1", "kind": "ProjectUsage",
        "metadata": {"name": format!("{project}.{month}"), "resourceVersion": "9"},
        "spec": {"project": project, "customer": customer, "month": month, "state": state,
            "since": since, "rateSince": since,
            "rate": {"cpu": cpu, "memory": "0", "storage": "0", "pods": 1},
            "totals": {"cpuCoreHours": "24", "memoryGiBHours": "0", "storageGiBHours": "0", "podHours": "24"},
            "exact": {"cpu": (hours * 3_600_000_000).to_string(), "memory": "0", "storage": "0",
                "pods": (hours * 3_600_000_000).to_string()},
            "cost": {"currency": "EUR", "total": "0.71", "byResource": {"cpu": "0.71"}, "prices": {"cpu": "20"}},
            "costBefore": "0"},
    })))
}

/// The `usage` view: whoever sees a project sees its months; cost only for the customer's
/// owners and support, staff, and members where the customer shows billing; a deleted
/// project's months only for its customer's owners and support.
#[test]
fn usage_follows_the_project_and_cost_follows_the_customers_choice() {
    let (p, mut c, m, n) = world();
    // globex shows billing to its projects' members; acme does not.
    c[1] = Arc::new(obj(json!({
        "apiVersion": "tenancy.dev/v1alpha1", "kind": "Customer",
        "metadata": {"name": "globex", "resourceVersion": "3"},
        "spec": {"owners": [{"kind": "User", "name": "gina"}], "displayBillingInfoInProjects": true},
    })));
    let usages = vec![
        record(
            "web",
            "acme",
            "2027-02",
            "Closed",
            "2027-03-01T00:00:00Z",
            "1",
        ),
        record(
            "web",
            "acme",
            "2027-03",
            "Open",
            "2027-03-01T00:00:00Z",
            "1",
        ),
        record(
            "shop",
            "globex",
            "2027-03",
            "Open",
            "2027-03-01T00:00:00Z",
            "500m",
        ),
        record(
            "old",
            "acme",
            "2027-02",
            "Closed",
            "2027-03-01T00:00:00Z",
            "0",
        ),
    ];
    let no = |_: &str| false;
    let index = Index::build(
        &Sources {
            projects: &p,
            customers: &c,
            memberships: &m,
            namespaces: &n,
            usages: &usages,
            is_project_namespace: &no,
        },
        42,
        now(),
        None,
    );
    let billing = super::usage::Billing {
        prices: crate::desired::cost::Prices::parse(&["cpu=20".into()], "EUR").unwrap(),
        credit_low_percent: 20,
    };
    let all = super::usage::UsageQuery::default();
    let see = |who: Viewer, q: &super::usage::UsageQuery| -> Vec<String> {
        index
            .usage_for(&who, q, &billing, now())
            .iter()
            .map(|u| {
                format!(
                    "{} {:?} {}",
                    u.metadata.name.as_deref().unwrap_or_default(),
                    u.state,
                    u.cost
                        .as_ref()
                        .map(|c| c.total.as_str())
                        .unwrap_or(u.billing)
                )
            })
            .collect()
    };
    // 12 hours of March at 1 core: 20 × 12/744 = 0.32 EUR.
    assert_eq!(
        see(viewer("mia", &[], false), &all),
        [
            "shop.2027-03 Open 0.16",
            "web.2027-02 Closed Hidden",
            "web.2027-03 Open Hidden"
        ],
        "a member of both: cost only where globex shows it"
    );
    assert_eq!(
        see(viewer("olga", &[], false), &all),
        [
            "legacy.2027-03 Open 0.00",
            "old.2027-02 Closed 0.71",
            "web.2027-02 Closed 0.71",
            "web.2027-03 Open 0.32"
        ],
        "acme's owner: every month of its projects, the deleted one's too, with cost"
    );
    assert!(see(viewer("nobody", &["devs-not"], false), &all).is_empty());
    assert_eq!(
        see(viewer("root", &[], true), &all).len(),
        5,
        "staff: every month of every project"
    );
    let current = super::usage::UsageQuery::parse("month=current,project=web", "").unwrap();
    let items = index.usage_for(&viewer("olga", &[], false), &current, &billing, now());
    assert_eq!(items.len(), 1);
    assert_eq!(
        items[0].usage.cpu_core_hours, "12",
        "accrued on to the instant asked"
    );
    assert_eq!(items[0].as_of.0, now());
    let closed = super::usage::UsageQuery::parse("state=Closed,customer=acme", "").unwrap();
    assert_eq!(
        see(viewer("olga", &[], false), &closed),
        ["old.2027-02 Closed 0.71", "web.2027-02 Closed 0.71"]
    );
    for (bad, names) in [
        ("month=2027-13", "month"),
        ("month=last", "month"),
        ("state=Done", "state"),
        ("cost=1", "cost"),
    ] {
        let err = super::usage::UsageQuery::parse(bad, "").unwrap_err();
        assert!(err.contains(names), "{bad}: {err}");
    }
}
