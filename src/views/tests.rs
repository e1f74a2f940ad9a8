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
    assert_eq!(second.projects["shop"].item().status.phase, "Active");
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

/// A random walk over a small cluster (projects moving between customers and going, memberships
/// of users, groups and ServiceAccounts coming and going, customers changing their names,
/// holders and status or going, namespaces made, archived and removed, usage records): after
/// every step, the index updated from the names that changed is the index built from
/// everything on the same previous one, and a viewer sees in it what a build from nothing
/// shows them.
#[test]
fn an_index_updated_from_what_changed_is_the_index_built_from_everything() {
    use std::collections::BTreeMap;
    let mut seed: u64 = 0x5eed_1de5;
    let mut next = move |n: u64| {
        // SplitMix64.
        seed = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = seed;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) % n
    };
    let names = ["p0", "p1", "p2", "p3", "p4"];
    let customers_named = ["c0", "c1", "c2"];
    let users = ["ann", "bob", "cy"];
    let mut projects: BTreeMap<String, Arc<Project>> = BTreeMap::new();
    let mut customers: BTreeMap<String, Arc<Customer>> = BTreeMap::new();
    let mut memberships: BTreeMap<(String, String), Arc<ProjectMembership>> = BTreeMap::new();
    let mut namespaces: BTreeMap<String, Arc<Namespace>> = BTreeMap::new();
    let mut usages: BTreeMap<String, Arc<crate::api::ProjectUsage>> = BTreeMap::new();
    let mut rv = 100u64;
    let mut previous = Index::default();
    let viewers: Vec<Viewer> = users
        .iter()
        .map(|u| Viewer {
            requester: Requester {
                username: u.to_string(),
                groups: vec!["devs".into()],
            },
            staff: false,
        })
        .chain([Viewer {
            requester: Requester {
                username: "system:serviceaccount:p1:ci".into(),
                groups: vec![],
            },
            staff: false,
        }])
        .collect();
    let subject = |k: u64, next: &mut dyn FnMut(u64) -> u64| match k {
        0 => json!({"kind": "Group", "name": "devs"}),
        1 => json!({"kind": "ServiceAccount", "name": "ci", "namespace": names[next(5) as usize]}),
        _ => user(users[next(3) as usize]),
    };
    for step in 0..400 {
        rv += 1;
        let mut changes = Vec::new();
        for _ in 0..=next(3) {
            let p = names[next(5) as usize];
            let c = customers_named[next(3) as usize];
            match next(9) {
                0 | 1 => {
                    let phase = ["Active", "Pending", "Finished"][next(3) as usize];
                    projects.insert(p.into(), project(p, c, phase, rv));
                    changes.push(Changed::Project(p.into()));
                }
                2 => {
                    projects.remove(p);
                    changes.push(Changed::Project(p.into()));
                }
                3 | 4 => {
                    let who = ["m0", "m1", "m2"][next(3) as usize];
                    if next(4) == 0 {
                        memberships.remove(&(p.to_string(), who.to_string()));
                    } else {
                        let s = subject(next(3), &mut next);
                        let role = ["Manager", "Administrator", "Member"][next(3) as usize];
                        let m = membership(p, who, s, role, json!({}));
                        let mut m = (*m).clone();
                        m.metadata.resource_version = Some(rv.to_string());
                        memberships.insert((p.into(), who.into()), Arc::new(m));
                    }
                    changes.push(Changed::Membership(p.into()));
                }
                5 => {
                    if next(4) == 0 {
                        customers.remove(c);
                    } else if next(2) == 0 && customers.contains_key(c) {
                        // Its status alone.
                        let mut same = (*customers[c]).clone();
                        same.metadata.resource_version = Some(rv.to_string());
                        customers.insert(c.into(), Arc::new(same));
                    } else {
                        let owners: Vec<Value> =
                            (0..next(3)).map(|_| subject(next(3), &mut next)).collect();
                        let mut new = (*customer(c, json!(owners), json!([]))).clone();
                        new.metadata.resource_version = Some(rv.to_string());
                        if next(2) == 0 {
                            new.spec.display_name = Some(format!("{c} #{step}"));
                        }
                        customers.insert(c.into(), Arc::new(new));
                    }
                    changes.push(Changed::Customer(c.into()));
                }
                6 | 7 => {
                    let made = match next(4) {
                        0 => None,
                        1 => Some(namespace(p, c, json!({}))),
                        2 => {
                            // An archive's annotation left on a namespace that is not archived: nothing.
                            let archive = json!({"spec": {"customer": c}, "customer": c,
                                "terminatedAt": "2027-02-20T00:00:00Z", "terminatedBy": "olga",
                                "members": []});
                            Some(namespace(
                                p,
                                c,
                                json!({
                                "annotations": {"tenancy.dev/archive": archive.to_string()}}),
                            ))
                        }
                        _ => {
                            let archive = json!({"spec": {"customer": c}, "customer": c,
                                "terminatedAt": "2027-02-20T00:00:00Z", "terminatedBy": "olga",
                                "members": []});
                            Some(namespace(
                                p,
                                c,
                                json!({
                                "labels": {"app.kubernetes.io/managed-by": "tenancy-operator",
                                    "tenancy.dev/project": p, "tenancy.dev/project-uid": format!("uid-{p}"),
                                    "tenancy.dev/state": "terminated", "tenancy.dev/customer": c},
                                "annotations": {"tenancy.dev/archive": archive.to_string()}}),
                            ))
                        }
                    };
                    match made {
                        Some(ns) => {
                            let mut ns = (*ns).clone();
                            ns.metadata.resource_version = Some(rv.to_string());
                            namespaces.insert(p.into(), Arc::new(ns));
                        }
                        None => {
                            namespaces.remove(p);
                        }
                    }
                    changes.push(Changed::Namespace(p.into()));
                }
                _ => {
                    let month = ["2027-01", "2027-02"][next(2) as usize];
                    let name = format!("{p}.{month}");
                    if next(3) == 0 {
                        usages.remove(&name);
                    } else {
                        usages.insert(
                            name.clone(),
                            record(p, c, month, "Closed", "2027-01-01T00:00:00Z", "1"),
                        );
                    }
                    changes.push(Changed::Usage(name));
                }
            }
        }
        let (p, c, m, n, u): (Vec<_>, Vec<_>, Vec<_>, Vec<_>, Vec<_>) = (
            projects.values().cloned().collect(),
            customers.values().cloned().collect(),
            memberships.values().cloned().collect(),
            namespaces.values().cloned().collect(),
            usages.values().cloned().collect(),
        );
        let is_pns = |name: &str| projects.contains_key(name) || namespaces.contains_key(name);
        let src = Sources {
            projects: &p,
            customers: &c,
            memberships: &m,
            namespaces: &n,
            usages: &u,
            is_project_namespace: &is_pns,
        };
        let mut dirty = Dirty::default();
        for change in changes.clone() {
            dirty.add(change);
        }
        let updated = previous.update(&SourceLookup::of(&src), &dirty, rv, now());
        let built = Index::build(&src, rv, now(), Some(&previous));
        assert!(
            updated == built,
            "step {step}, after {changes:?}:\nupdated {updated:#?}\nbuilt {built:#?}"
        );
        // What a viewer sees: the same as from nothing (resourceVersions aside: an item's counts
        // its customer's only when what it shows of it changed).
        let fresh = Index::build(&src, rv, now(), None);
        let seen = |i: &Index, v: &Viewer| {
            let mut items = i.projects_for(v, true, true, now());
            for item in &mut items {
                item.metadata.resource_version = None;
            }
            (items, i.members_for(v, now()).len())
        };
        for v in &viewers {
            assert_eq!(
                seen(&updated, v),
                seen(&fresh, v),
                "step {step}, viewer {}",
                v.requester.username
            );
        }
        previous = updated;
    }
}

#[test]
fn a_few_is_one_value_until_it_holds_more_and_again_when_it_does_not() {
    use super::Few;
    let one = Few::with(None, &"a", true);
    assert_eq!(one, Some(Few::One("a")));
    let two = Few::with(one.as_ref(), &"b", true).unwrap();
    assert!(matches!(two, Few::Many(_)));
    assert_eq!(two.iter().copied().collect::<Vec<_>>(), ["a", "b"]);
    assert_eq!(Few::with(Some(&two), &"a", false), Some(Few::One("b")));
    assert_eq!(Few::with(one.as_ref(), &"a", false), None);
    assert_eq!(Few::with(one.as_ref(), &"a", true), one);
}
