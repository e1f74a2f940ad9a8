//! The rules for quotas and container limits that the apiserver and the customer's quota impose,
//! as pure functions: which resource names a ResourceQuota and a LimitRange accept, which names
//! are the same resource (`cpu` and `requests.cpu`), that quantities are never negative, and what
//! a project allocates of its customer's quota.
//!
//! The webhook refuses what these rules refuse, naming the field; the controller applies only what
//! they accept, so one bad key stored before the webhook knew the rule never stops a reconcile.

use std::collections::BTreeMap;

use super::quantity::Milli;
use crate::api::project::ContainerLimits;
use crate::api::{Customer, Project, ResourceList};

/// Resource names a ResourceQuota accepts without a `/` (Kubernetes' standard quota resources).
const STANDARD_QUOTA_NAMES: &[&str] = &[
    "pods",
    "services",
    "replicationcontrollers",
    "resourcequotas",
    "secrets",
    "configmaps",
    "persistentvolumeclaims",
    "services.nodeports",
    "services.loadbalancers",
    "cpu",
    "memory",
    "ephemeral-storage",
    "storage",
    "requests.cpu",
    "requests.memory",
    "requests.storage",
    "requests.ephemeral-storage",
    "limits.cpu",
    "limits.memory",
    "limits.ephemeral-storage",
];

/// Quota names that count objects: their values must be whole numbers.
const INTEGER_QUOTA_NAMES: &[&str] = &[
    "pods",
    "services",
    "replicationcontrollers",
    "resourcequotas",
    "secrets",
    "configmaps",
    "persistentvolumeclaims",
    "services.nodeports",
    "services.loadbalancers",
];

/// Resource names a LimitRange accepts without a `/`.
const STANDARD_LIMIT_NAMES: &[&str] = &["cpu", "memory", "ephemeral-storage", "storage"];

/// The one name of a quota resource: `cpu` is `requests.cpu`, `memory` is `requests.memory`,
/// `ephemeral-storage` is `requests.ephemeral-storage`, `hugepages-*` is `requests.hugepages-*`,
/// and the object counts `count/pods`, `count/services`, ... are `pods`, `services`, ... (the
/// quota controller charges both spellings the same way).
pub fn canonical_key(key: &str) -> String {
    match key {
        "cpu" | "memory" | "ephemeral-storage" => format!("requests.{key}"),
        k if k.starts_with("hugepages-") => format!("requests.{k}"),
        k => match k.strip_prefix("count/") {
            Some(
                core @ ("pods"
                | "services"
                | "replicationcontrollers"
                | "resourcequotas"
                | "secrets"
                | "configmaps"
                | "persistentvolumeclaims"),
            ) => core.to_string(),
            _ => k.to_string(),
        },
    }
}

/// Whether a string is a Kubernetes qualified name (`[prefix/]name`, the name part at most 63
/// characters of alphanumerics, `-`, `_`, `.`, starting and ending alphanumeric; the prefix a
/// DNS subdomain).
fn is_qualified_name(s: &str) -> bool {
    let (prefix, name) = match s.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    let name_ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    let prefix_ok = prefix.is_none_or(|p| {
        !p.is_empty()
            && p.len() <= 253
            && p.split('.').all(|label| {
                !label.is_empty()
                    && label
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                    && !label.starts_with('-')
                    && !label.ends_with('-')
            })
    });
    name_ok && prefix_ok
}

fn is_hugepages(key: &str) -> bool {
    key.strip_prefix("requests.")
        .unwrap_or(key)
        .strip_prefix("hugepages-")
        .is_some_and(|size| Milli::parse(size).is_ok())
}

/// Why a ResourceQuota would refuse `key`, if it would.
fn quota_key_problem(key: &str) -> Option<String> {
    let known = STANDARD_QUOTA_NAMES.contains(&key) || is_hugepages(key);
    if (key.contains('/') && is_qualified_name(key)) || known {
        return None;
    }
    Some(format!(
        "{key:?} is not a resource a ResourceQuota can limit: use a standard name (requests.cpu, requests.memory, limits.cpu, limits.memory, requests.storage, pods, services, ...) or a qualified one (count/deployments.apps, requests.nvidia.com/gpu)"
    ))
}

/// Why a quantity is refused, if it is: not a quantity, negative, or fractional where objects
/// are counted.
fn quantity_problem(key: &str, value: &str, integer: bool) -> Option<String> {
    match Milli::parse(value) {
        Err(e) => Some(e.to_string()),
        Ok(m) if m.0 < 0 => Some(format!(
            "{value:?} is negative; quotas and limits are never below 0"
        )),
        // Kubernetes counts quota in int64 thousandths (`MilliValue`): beyond that the quota
        // controller rounds what it enforces and it never equals what was asked for.
        Ok(m) if m.0 > i128::from(i64::MAX) => Some(format!(
            "{value:?} is more than Kubernetes counts exactly (at most {}, about 9.2 × 10^15); use a smaller value",
            i64::MAX / 1000
        )),
        Ok(m) if integer && m.0 % 1000 != 0 => Some(format!(
            "{value:?} is not a whole number, and {key} counts objects"
        )),
        Ok(_) => None,
    }
}

/// Whether a quota resource's value must be a whole number.
fn integer_quota(key: &str) -> bool {
    let canonical = canonical_key(key);
    INTEGER_QUOTA_NAMES.contains(&canonical.as_str())
        || (canonical.contains('/') && !canonical.contains("kubernetes.io/"))
}

/// Everything wrong with a quota map, one message per problem, each naming the field under
/// `path` (e.g. `spec.quota.hard`). Empty: a ResourceQuota accepts it.
pub fn quota_problems(path: &str, hard: &ResourceList) -> Vec<String> {
    let mut out = Vec::new();
    let mut seen: BTreeMap<String, &str> = BTreeMap::new();
    for (key, value) in hard {
        if let Some(p) = quota_key_problem(key) {
            out.push(format!("{path}.{key}: {p}"));
            continue;
        }
        if let Some(p) = quantity_problem(key, &value.0, integer_quota(key)) {
            out.push(format!("{path}.{key}: {p}"));
        }
        if let Some(other) = seen.insert(canonical_key(key), key) {
            out.push(format!(
                "{path}: {other} and {key} are the same resource; set only one of them"
            ));
        }
    }
    out
}

/// The entries of a quota map a ResourceQuota accepts (for a reconcile that must not be stopped by
/// one bad key stored before the webhook refused it).
pub fn accepted_quota(hard: &ResourceList) -> ResourceList {
    let mut seen = std::collections::BTreeSet::new();
    hard.iter()
        .filter(|(k, v)| {
            quota_key_problem(k).is_none()
                && quantity_problem(k, &v.0, integer_quota(k)).is_none()
                && seen.insert(canonical_key(k))
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Everything wrong with container limits, one message per problem: names a LimitRange refuses,
/// negative values, and bounds out of order (min ≤ defaultRequest ≤ default ≤ max).
pub fn limit_range_problems(path: &str, limits: &ContainerLimits) -> Vec<String> {
    let mut out = Vec::new();
    let fields = [
        ("min", &limits.min),
        ("defaultRequest", &limits.default_request),
        ("default", &limits.default),
        ("max", &limits.max),
    ];
    for (field, map) in fields {
        for (key, value) in map {
            let known = STANDARD_LIMIT_NAMES.contains(&key.as_str()) || is_hugepages(key);
            if !(known || (key.contains('/') && is_qualified_name(key))) {
                out.push(format!(
                    "{path}.{field}.{key}: {key:?} is not a resource a LimitRange can bound: use cpu, memory, ephemeral-storage, storage, hugepages-<size> or a qualified name"
                ));
            } else if let Some(p) = quantity_problem(key, &value.0, false) {
                out.push(format!("{path}.{field}.{key}: {p}"));
            }
        }
    }
    // Each pair (lower, upper) that must be in order, where both are set.
    let order = [
        ("min", "max"),
        ("min", "defaultRequest"),
        ("min", "default"),
        ("defaultRequest", "default"),
        ("defaultRequest", "max"),
        ("default", "max"),
    ];
    let get = |name: &str| fields.iter().find(|(f, _)| *f == name).map(|(_, m)| *m);
    for (lo, hi) in order {
        let (Some(lo_map), Some(hi_map)) = (get(lo), get(hi)) else {
            continue;
        };
        for (key, low) in lo_map {
            let Some(high) = hi_map.get(key) else {
                continue;
            };
            if let (Ok(l), Ok(h)) = (Milli::parse(&low.0), Milli::parse(&high.0))
                && l > h
            {
                out.push(format!(
                    "{path}: {lo}.{key} ({}) is above {hi}.{key} ({}); the {lo} must not exceed the {hi}",
                    low.0, high.0
                ));
            }
        }
    }
    out
}

/// What a project allocates of its customer's quota: `spec.quota.hard` by canonical name, as
/// exact numbers. Negative values (stored before the schema refused them) count as 0, never as a
/// credit; values that are not quantities are left out (the schema refuses them).
pub type Allocation = BTreeMap<String, Milli>;

/// A quota map as an [`Allocation`].
pub fn allocation_of_list(hard: &ResourceList) -> Allocation {
    let mut out = Allocation::new();
    for (k, v) in hard {
        if let Ok(m) = Milli::parse(&v.0) {
            let e = out.entry(canonical_key(k)).or_default();
            *e = (*e).max(Milli(m.0.max(0)));
        }
    }
    out
}

/// A project's allocation.
pub fn allocation(project: &Project) -> Allocation {
    project
        .spec
        .quota
        .as_ref()
        .map(|q| allocation_of_list(&q.hard))
        .unwrap_or_default()
}

/// An allocation as quantity strings (how the ledger stores it).
pub fn to_strings(a: &Allocation) -> BTreeMap<String, String> {
    a.iter().map(|(k, v)| (k.clone(), v.to_string())).collect()
}

/// An allocation from quantity strings (how the ledger stores it), canonical names.
pub fn from_strings(m: &BTreeMap<String, String>) -> Allocation {
    let mut out = Allocation::new();
    for (k, v) in m {
        if let Ok(q) = Milli::parse(v) {
            let e = out.entry(canonical_key(k)).or_default();
            *e = (*e).max(Milli(q.0.max(0)));
        }
    }
    out
}

/// Key by key, the larger of two allocations.
pub fn max_of(a: &Allocation, b: &Allocation) -> Allocation {
    let mut out = a.clone();
    for (k, v) in b {
        let e = out.entry(k.clone()).or_default();
        *e = (*e).max(*v);
    }
    out
}

/// The resources (canonical names) a customer's quota limits.
pub fn customer_limits(customer: &Customer) -> Vec<String> {
    let mut keys: Vec<String> = customer
        .spec
        .quota
        .as_ref()
        .map(|q| q.hard.keys().map(|k| canonical_key(k)).collect())
        .unwrap_or_default();
    keys.sort();
    keys.dedup();
    keys
}

/// The resources the customer limits that a project's quota leaves unbounded. Every project of a
/// customer with a limited resource must set it: a project without it would have no bound at all.
pub fn unbounded(project_hard: &ResourceList, limits: &[String]) -> Vec<String> {
    let have: std::collections::BTreeSet<String> =
        project_hard.keys().map(|k| canonical_key(k)).collect();
    limits
        .iter()
        .filter(|k| !have.contains(*k))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    fn list(pairs: &[(&str, &str)]) -> ResourceList {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
            .collect()
    }

    #[test]
    fn equivalent_names_are_one_name() {
        for (a, b) in [
            ("cpu", "requests.cpu"),
            ("memory", "requests.memory"),
            ("ephemeral-storage", "requests.ephemeral-storage"),
            ("hugepages-2Mi", "requests.hugepages-2Mi"),
            ("count/pods", "pods"),
            ("count/services", "services"),
            ("count/persistentvolumeclaims", "persistentvolumeclaims"),
        ] {
            assert_eq!(canonical_key(a), canonical_key(b), "{a} ~ {b}");
        }
        for (a, b) in [
            ("limits.cpu", "requests.cpu"),
            ("count/deployments.apps", "deployments.apps"),
            ("requests.storage", "storage"),
        ] {
            assert_ne!(canonical_key(a), canonical_key(b), "{a} !~ {b}");
        }
    }

    #[test]
    fn quota_maps_are_checked_as_the_apiserver_checks_them() {
        type Case<'a> = (&'a [(&'a str, &'a str)], &'a [&'a str]);
        let cases: &[Case] = &[
            (&[("requests.cpu", "4"), ("pods", "10")], &[]),
            (
                &[
                    ("count/deployments.apps", "3"),
                    ("requests.nvidia.com/gpu", "1"),
                ],
                &[],
            ),
            (&[("requests.hugepages-2Mi", "1Gi")], &[]),
            (
                &[("foo", "1")],
                &["spec.quota.hard.foo: \"foo\" is not a resource"],
            ),
            (&[("Bad Key/x", "1")], &["spec.quota.hard.Bad Key/x:"]),
            (
                &[("requests.cpu", "-2")],
                &["requests.cpu: \"-2\" is negative"],
            ),
            (
                &[("pods", "1500m")],
                &["pods: \"1500m\" is not a whole number"],
            ),
            (&[("count/jobs.batch", "1.5")], &["not a whole number"]),
            // The largest Kubernetes counts exactly, and one more.
            (&[("count/serviceaccounts", "9223372036854775")], &[]),
            (
                &[("count/serviceaccounts", "999999999999999999999")],
                &[
                    "count/serviceaccounts: \"999999999999999999999\" is more than Kubernetes counts exactly (at most 9223372036854775",
                ],
            ),
            (
                &[("requests.memory", "9Ei")],
                &["is more than Kubernetes counts exactly"],
            ),
            (
                &[("cpu", "2"), ("requests.cpu", "4")],
                &["cpu and requests.cpu are the same resource"],
            ),
            (
                &[("count/pods", "2"), ("pods", "4")],
                &["count/pods and pods are the same resource"],
            ),
        ];
        for (hard, want) in cases {
            let got = quota_problems("spec.quota.hard", &list(hard));
            assert_eq!(got.len(), want.len(), "{hard:?}: {got:?}");
            for (g, w) in got.iter().zip(want.iter()) {
                assert!(g.contains(w), "{hard:?}: {g:?} should contain {w:?}");
            }
        }
    }

    #[test]
    fn only_what_a_resource_quota_accepts_is_applied() {
        let hard = list(&[
            ("foo", "1"),
            ("requests.cpu", "-1"),
            ("pods", "5"),
            ("cpu", "2"),
            ("requests.memory", "1Gi"),
        ]);
        let kept = accepted_quota(&hard);
        assert_eq!(
            kept.keys().collect::<Vec<_>>(),
            ["cpu", "pods", "requests.memory"]
        );
    }

    #[test]
    fn container_limits_must_be_in_order_and_known() {
        let view =
            |min: &ResourceList, req: &ResourceList, def: &ResourceList, max: &ResourceList| {
                limit_range_problems(
                    "spec.limitRange",
                    &ContainerLimits {
                        min: min.clone(),
                        default_request: req.clone(),
                        default: def.clone(),
                        max: max.clone(),
                    },
                )
            };
        let e = ResourceList::new();
        assert!(
            view(
                &list(&[("cpu", "100m")]),
                &list(&[("cpu", "200m")]),
                &list(&[("cpu", "500m")]),
                &list(&[("cpu", "1")])
            )
            .is_empty()
        );
        let p = view(&list(&[("cpu", "2")]), &e, &e, &list(&[("cpu", "1")]));
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].contains("min.cpu (2) is above max.cpu (1)"), "{p:?}");
        let p = view(
            &e,
            &list(&[("memory", "1Gi")]),
            &list(&[("memory", "512Mi")]),
            &e,
        );
        assert!(p[0].contains("defaultRequest.memory"), "{p:?}");
        let p = view(&e, &e, &list(&[("widgets", "1")]), &e);
        assert!(p[0].contains("default.widgets"), "{p:?}");
        let p = view(&e, &e, &list(&[("cpu", "-1")]), &e);
        assert!(p[0].contains("negative"), "{p:?}");
    }

    #[test]
    fn allocations_use_one_name_and_never_credit() {
        let a = allocation_of_list(&list(&[
            ("cpu", "2"),
            ("requests.memory", "-1Gi"),
            ("count/pods", "3"),
        ]));
        assert_eq!(a["requests.cpu"], Milli(2000));
        assert_eq!(a["requests.memory"], Milli(0));
        assert_eq!(a["pods"], Milli(3000));
        let b = from_strings(&to_strings(&a));
        assert_eq!(a, b);
        let m = max_of(
            &a,
            &allocation_of_list(&list(&[("requests.cpu", "1"), ("pods", "5")])),
        );
        assert_eq!((m["requests.cpu"], m["pods"]), (Milli(2000), Milli(5000)));
    }

    #[test]
    fn a_project_must_set_every_resource_its_customer_limits() {
        let limits = vec!["pods".to_string(), "requests.cpu".to_string()];
        assert_eq!(
            unbounded(&list(&[("cpu", "1")]), &limits),
            vec!["pods".to_string()]
        );
        assert!(unbounded(&list(&[("cpu", "1"), ("count/pods", "2")]), &limits).is_empty());
        assert_eq!(unbounded(&ResourceList::new(), &limits).len(), 2);
    }
}
