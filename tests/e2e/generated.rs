//! The generated-manifest round: a few hundred random but schema-shaped Customers, Projects and
//! ProjectMemberships, drawn from a fixed seed, created on the real apiserver by a mix of
//! identities (staff, a customer owner, a project manager, a stranger) through impersonation.
//!
//! Each manifest either is refused, by the CRD schema, RBAC or the webhook, with a message
//! naming the offending field (or, for a refusal of who asks, the requester), or is accepted and
//! settles: `Ready=True`, or `Ready=False` with a reason other than `Progressing` and a message,
//! for the generation it was given. What the generator knows for sure is checked too: a manifest
//! valid by construction from staff is accepted and becomes Ready; one the schema or the rules
//! must refuse whoever asks is refused. Afterwards the operator is alive and never panicked, its
//! reconcile error counters do not grow in a quiet window, a fresh project still becomes Ready
//! (the watches work), and the quota ledger of every customer touched equals what its stored
//! projects hold.
//!
//! `TENANCY_GENERATED_MANIFESTS=<n>` changes how many manifests are drawn (default 300);
//! `TENANCY_GENERATED_SEED=<u64>` draws another sequence (the default seed is fixed, so every
//! run draws the same manifests).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::core::{ApiResource, DynamicObject};
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};
use tenancy_operator::api::{Customer, Project, ProjectMembership};

use crate::reconcile::{operator_metrics, samples};
use crate::support::{
    ACCESS_TIMEOUT, Checks, Env, Failed, RECONCILE_TIMEOUT, Rng, TestResult, Trial, pp, refusal,
    trial, unique_name, wait_access, wait_for,
};

/// The round measures the whole control plane (no reconcile error in a quiet window), so it runs
/// alone.
pub fn exclusive_trials(env: &Arc<Env>) -> Vec<Trial> {
    vec![trial(
        env,
        "generated::exclusive::generated_manifests_are_refused_naming_a_field_or_settle",
        generated_manifests_are_refused_naming_a_field_or_settle,
    )]
}

/// The seed every run draws from unless `TENANCY_GENERATED_SEED` says otherwise.
const SEED: u64 = 0x7e4a_0015_5eed_2026;
/// Manifests drawn unless `TENANCY_GENERATED_MANIFESTS` says otherwise.
const DEFAULT_MANIFESTS: usize = 300;
/// Requests in flight at once.
const CONCURRENCY: usize = 10;
/// How long every accepted object together may take to settle.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(90);
/// The window in which the reconcile error counters must not grow.
const QUIET_WINDOW: Duration = Duration::from_secs(15);
/// The ledger corrects a reservation only once it is this old (`ledger::SETTLE`), so comparing
/// it with the stored projects may take that long, and a reconcile more.
const LEDGER_TIMEOUT: Duration = Duration::from_secs(90);

const STAFF: &str = "generated-staff@example.com";
const OWNER: &str = "generated-owner@example.com";
const MANAGER: &str = "generated-manager@example.com";
const STRANGER: &str = "generated-stranger@example.com";
/// The ClusterRole (and binding) giving the round's staff user the chart's staff rules.
const STAFF_ROLE: &str = "generated:staff";

// ---------------------------------------------------------------------------------------------
// The generator

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Who {
    Staff,
    Owner,
    Manager,
    Stranger,
}

impl Who {
    fn user(self) -> &'static str {
        match self {
            Who::Staff => STAFF,
            Who::Owner => OWNER,
            Who::Manager => MANAGER,
            Who::Stranger => STRANGER,
        }
    }
    fn groups(self) -> &'static [&'static str] {
        match self {
            Who::Staff => &["tenancy:staff"],
            _ => &[],
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Customer,
    Project,
    Membership,
}

/// A field the generator set to something out of the ordinary.
#[derive(Clone, Debug)]
struct Touch {
    /// `spec.quota.hard.requests.cpu`, `spec.owners[0].name`, `metadata.name`.
    path: String,
    /// What was put there, for the report.
    what: String,
    /// Refused whoever asks (by the schema or the webhook's rules for everyone).
    refused: bool,
}

/// One generated request.
#[derive(Clone, Debug)]
struct Case {
    index: usize,
    kind: Kind,
    who: Who,
    object: Value,
    touched: Vec<Touch>,
    /// Valid by construction and allowed for `who`: must be accepted and become Ready.
    clean: bool,
    /// Values a refusal for a conflict or a missing object may name instead of a field (the
    /// customer, the namespace, the subject).
    values: Vec<String>,
}

impl Case {
    fn name(&self) -> String {
        self.object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
    fn namespace(&self) -> Option<String> {
        self.object["metadata"]["namespace"]
            .as_str()
            .map(str::to_string)
    }
    fn must_be_refused(&self) -> bool {
        self.touched.iter().any(|t| t.refused)
    }
    /// Texts a refusal naming the offending field contains: every dotted prefix of at least two
    /// segments of each touched path (`spec.quota`, `spec.quota.hard`, ...).
    fn field_mentions(&self) -> Vec<String> {
        let mut out = BTreeSet::new();
        for t in &self.touched {
            let mut prefix = String::new();
            for (i, segment) in t.path.split('.').enumerate() {
                if i > 0 {
                    prefix.push('.');
                }
                prefix.push_str(segment);
                if i >= 1 {
                    // `spec.owners[0]` is also named `spec.owners`.
                    out.insert(prefix.split('[').next().unwrap_or(&prefix).to_string());
                    out.insert(prefix.clone());
                }
            }
            // A resource is named by itself too: `requests.cpu: asks 2, 1 of 6 left`.
            for map in ["spec.quota.hard.", "spec.limitRange."] {
                if let Some(key) = t.path.strip_prefix(map).filter(|k| !k.is_empty()) {
                    out.insert(key.to_string());
                }
            }
        }
        out.into_iter().collect()
    }
    fn summary(&self) -> String {
        let touched: Vec<String> = self
            .touched
            .iter()
            .map(|t| format!("{}={}", t.path, t.what))
            .collect();
        format!(
            "#{} {:?} {} by {:?}{}",
            self.index,
            self.kind,
            self.name(),
            self.who,
            if touched.is_empty() {
                String::new()
            } else {
                format!(" [{}]", touched.join(", "))
            }
        )
    }
}

/// What the generated manifests refer to: the fixture made before the round.
#[derive(Clone, Debug)]
struct Fixture {
    tag: String,
    /// Owned by OWNER, no quota.
    open: String,
    /// Owned by OWNER, a small quota on requests.cpu and on the number of projects.
    capped: String,
    /// A project of `open` where MANAGER is Manager.
    base: String,
    /// `open`'s uid, for owner references.
    open_uid: String,
}

/// Builds one case's fields, recording what is out of the ordinary.
struct Draft<'a> {
    rng: &'a mut Rng,
    touched: Vec<Touch>,
}

impl Draft<'_> {
    fn touch(&mut self, path: &str, what: impl Into<String>, refused: bool) {
        self.touched.push(Touch {
            path: path.to_string(),
            what: what.into(),
            refused,
        });
    }

    /// A string field limited to `max` characters: ordinary, odd (unicode, empty, control
    /// characters), at the bound, over it, or of the wrong type.
    fn text(&mut self, path: &str, max: usize) -> Value {
        match self.rng.below(12) {
            0 => {
                self.touch(path, "unicode", false);
                json!("Ünïcødé 研究 🚀 مشروع")
            }
            1 => {
                self.touch(path, "empty", false);
                json!("")
            }
            2 => {
                self.touch(path, "control characters", false);
                json!("tab\there\nnew line\u{200b}zero width")
            }
            3 => {
                self.touch(path, format!("{max} characters"), false);
                json!("é".repeat(max))
            }
            4 => {
                self.touch(path, format!("{} characters", max + 1), true);
                json!("x".repeat(max + 1))
            }
            5 => {
                self.touch(path, "a number", true);
                json!(42)
            }
            6 => {
                self.touch(path, "an object", true);
                json!({"nested": "value"})
            }
            _ => json!(format!("Gen {}", self.rng.below(1000))),
        }
    }

    /// An integer field bounded by `min..=max`.
    fn int(&mut self, path: &str, min: i64, max: i64) -> Value {
        match self.rng.below(9) {
            0 => {
                self.touch(path, format!("{min} (lowest)"), false);
                json!(min)
            }
            1 => {
                self.touch(path, format!("{max} (highest)"), false);
                json!(max)
            }
            2 => {
                self.touch(path, format!("{}", max + 1), true);
                json!(max + 1)
            }
            3 => {
                self.touch(path, format!("{}", min - 1), true);
                json!(min - 1)
            }
            4 => {
                self.touch(path, "a string", true);
                json!("ten")
            }
            5 => {
                self.touch(path, "2^40", true);
                json!(1_i64 << 40)
            }
            _ => json!(min + (self.rng.below(((max - min) as usize).min(30)) as i64)),
        }
    }

    /// A quantity: ordinary, zero, boundary, huge, negative or malformed.
    fn quantity(&mut self, path: &str) -> Value {
        match self.rng.below(18) {
            0 => {
                self.touch(path, "-1 (an integer)", true);
                json!(-1)
            }
            1 => {
                self.touch(path, "\"-2\"", true);
                json!("-2")
            }
            2 => {
                self.touch(path, "\"1.2.3\"", true);
                json!("1.2.3")
            }
            3 => {
                self.touch(path, "\"abc\"", true);
                json!("abc")
            }
            4 => {
                self.touch(path, "empty", true);
                json!("")
            }
            5 => {
                self.touch(path, "0.5 (a float)", true);
                json!(0.5)
            }
            6 => {
                self.touch(path, "\"5 Gi\"", true);
                json!("5 Gi")
            }
            7 => {
                self.touch(path, "huge", false);
                json!("999999999999999999999")
            }
            8 => {
                self.touch(path, "1e100", false);
                json!("1e100")
            }
            9 => {
                self.touch(path, "\"0\"", false);
                json!("0")
            }
            10 => {
                self.touch(path, "1Ei", false);
                json!("1Ei")
            }
            11 => {
                self.touch(path, "1n", false);
                json!("1n")
            }
            12 => json!(self.rng.one(&[1, 2, 4, 8])),
            _ => json!(
                self.rng
                    .one(&["500m", "2", "1.5Gi", "1e3", "10Ki", "250m", "4Gi"])
            ),
        }
    }

    /// A map of resource names to quantities.
    fn resource_list(&mut self, path: &str, keys: &[&str]) -> Value {
        let mut map = serde_json::Map::new();
        for _ in 0..1 + self.rng.below(3) {
            let key = match self.rng.below(14) {
                0 => {
                    self.touch(path, "an empty resource name", true);
                    String::new()
                }
                1 => {
                    self.touch(path, "resource example.com/widgets", false);
                    "example.com/widgets".to_string()
                }
                2 => {
                    self.touch(path, "a 254-character resource name", true);
                    "r".repeat(254)
                }
                _ => self.rng.one(keys).to_string(),
            };
            let field = format!("{path}.{key}");
            let value = self.quantity(&field);
            if !self.touched.iter().any(|t| t.path == field) {
                self.touch(&field, format!("{value}"), false);
            }
            map.insert(key, value);
        }
        Value::Object(map)
    }

    /// A calendar date: valid, past, far future, or malformed.
    fn date(&mut self, path: &str) -> Value {
        match self.rng.below(12) {
            0 => {
                self.touch(path, "2026-13-45", true);
                json!("2026-13-45")
            }
            1 => {
                self.touch(path, "2025-02-29", true);
                json!("2025-02-29")
            }
            2 => {
                self.touch(path, "31/12/2026", true);
                json!("31/12/2026")
            }
            3 => {
                self.touch(path, "empty", true);
                json!("")
            }
            4 => {
                self.touch(path, "a number", true);
                json!(20260101)
            }
            5 => {
                self.touch(path, "9999-12-31", false);
                json!("9999-12-31")
            }
            6 => {
                self.touch(path, "0001-01-01", false);
                json!("0001-01-01")
            }
            7 => {
                self.touch(path, "2020-01-01 (past)", false);
                json!("2020-01-01")
            }
            8 => json!("2024-02-29"),
            _ => json!(self.rng.one(&["2030-06-30", "2031-12-31", "2029-01-15"])),
        }
    }

    /// An RFC 3339 time: future, past, far future or malformed.
    fn time(&mut self, path: &str) -> Value {
        match self.rng.below(10) {
            0 => {
                self.touch(path, "tomorrow", true);
                json!("tomorrow")
            }
            1 => {
                self.touch(path, "a date without a time", true);
                json!("2027-01-01")
            }
            2 => {
                self.touch(path, "2026-02-30T00:00:00Z", true);
                json!("2026-02-30T00:00:00Z")
            }
            3 => {
                self.touch(path, "9999-12-31T23:59:59Z", false);
                json!("9999-12-31T23:59:59Z")
            }
            4 => {
                self.touch(path, "2020-01-01T00:00:00Z (past)", false);
                json!("2020-01-01T00:00:00Z")
            }
            5 => {
                self.touch(path, "a number", true);
                json!(1_700_000_000)
            }
            _ => json!(
                self.rng
                    .one(&["2031-01-31T17:00:00Z", "2030-06-30T08:00:00+02:00"])
            ),
        }
    }

    /// One of `known`, or (sometimes) a value outside it.
    fn enumeration(&mut self, path: &str, known: &[&str], unknown: &[&str]) -> Value {
        if self.rng.chance(20) {
            let v = self.rng.one(unknown);
            self.touch(path, format!("{v:?}"), true);
            json!(v)
        } else {
            json!(self.rng.one(known))
        }
    }

    /// A subject (or customer role holder): User, Group or ServiceAccount, sometimes malformed.
    fn subject(&mut self, path: &str, pool: &[&str], sa_namespaces: &[&str]) -> Value {
        let mut s = match self.rng.below(10) {
            0..=5 => json!({"kind": "User", "name": self.rng.one(pool)}),
            6 => json!({"kind": "Group", "name": self.rng.one(&["team-a", "team-b"])}),
            7 => {
                // Whether it may hold the role depends on its namespace (the ServiceAccount
                // rule).
                self.touch(path, "a ServiceAccount", false);
                json!({
                    "kind": "ServiceAccount",
                    "name": self.rng.one(&["builder", "deployer"]),
                    "namespace": self.rng.one(sa_namespaces),
                })
            }
            8 => {
                self.touch(
                    &format!("{path}.namespace"),
                    "missing for a ServiceAccount",
                    true,
                );
                json!({"kind": "ServiceAccount", "name": "builder"})
            }
            _ => {
                self.touch(&format!("{path}.kind"), "Robot", true);
                json!({"kind": "Robot", "name": "r2d2"})
            }
        };
        if self.rng.chance(6) {
            self.touch(&format!("{path}.name"), "empty", true);
            s["name"] = json!("");
        } else if self.rng.chance(4) && s["kind"] == "User" {
            self.touch(&format!("{path}.namespace"), "set for a User", true);
            s["namespace"] = json!("default");
        }
        s
    }

    /// Metadata tricks: the operator's labels and annotations, finalizers, owner references.
    fn metadata(&mut self, meta: &mut Value, fixture: &Fixture, kind: Kind) {
        if self.rng.chance(8) {
            let (k, v) = self.rng.one(&[
                ("tenancy.dev/project", "someone-else"),
                ("tenancy.dev/state", "terminated"),
                ("app.kubernetes.io/managed-by", "tenancy-operator"),
            ]);
            meta["labels"] = json!({k: v});
            self.touch("metadata.labels", format!("{k}={v}"), false);
        }
        if self.rng.chance(8) {
            let (k, v) = self.rng.one(&[
                ("tenancy.dev/created-by", "someone@example.com"),
                ("tenancy.dev/end-date-requested-by", "someone@example.com"),
                ("tenancy.dev/deleted-by", "someone@example.com"),
                ("tenancy.dev/checklist-reviewed-by", "someone@example.com"),
                ("tenancy.dev/accept", "true"),
            ]);
            meta["annotations"] = json!({k: v});
            self.touch("metadata.annotations", format!("{k}={v}"), false);
        }
        if kind == Kind::Project && self.rng.chance(4) {
            meta["annotations"]["tenancy.dev/adopt-namespace"] = json!("true");
            self.touch(
                "metadata.annotations",
                "tenancy.dev/adopt-namespace=true",
                false,
            );
        }
        if self.rng.chance(6) {
            let f = self
                .rng
                .one(&["example.com/keep", "tenancy.dev/soft-delete"]);
            meta["finalizers"] = json!([f]);
            self.touch("metadata.finalizers", f, false);
        }
        if self.rng.chance(5) {
            meta["ownerReferences"] = json!([{
                "apiVersion": "tenancy.dev/v1alpha1",
                "kind": "Customer",
                "name": fixture.open,
                "uid": fixture.open_uid,
            }]);
            self.touch("metadata.ownerReferences", "customer", false);
        }
    }
}

/// The next name: mostly ordinary, sometimes one the apiserver or a CEL rule refuses.
fn object_name(rng: &mut Rng, draft: &mut Vec<Touch>, base: String, kind: Kind) -> String {
    let mut touch = |what: &str, refused: bool| {
        draft.push(Touch {
            path: "metadata.name".into(),
            what: what.into(),
            refused,
        })
    };
    match rng.below(30) {
        0 => {
            touch("uppercase", true);
            format!("{}-Upper", base)
        }
        1 if kind != Kind::Membership => {
            // 64 characters: a valid object name, but not a label value or a namespace name.
            touch("64 characters", true);
            format!("{base}-{}", "x".repeat(63 - base.len()))
        }
        2 if kind == Kind::Project => {
            touch("a dot", true);
            format!("{base}.dotted")
        }
        3 if kind == Kind::Project => {
            touch("reserved (kube-*)", true);
            format!("kube-{base}")
        }
        _ => base,
    }
}

fn draw(rng: &mut Rng, index: usize, fixture: &Fixture, kind: Option<Kind>) -> Case {
    let drawn = match rng.below(100) {
        0..=24 => Kind::Customer,
        25..=69 => Kind::Project,
        _ => Kind::Membership,
    };
    let kind = kind.unwrap_or(drawn);
    let who = match (kind, rng.below(100)) {
        (Kind::Customer, 0..=69) => Who::Staff,
        (Kind::Customer, 70..=84) => Who::Owner,
        (Kind::Project, 0..=44) => Who::Staff,
        (Kind::Project, 45..=89) => Who::Owner,
        (Kind::Membership, 0..=29) => Who::Staff,
        (Kind::Membership, 30..=49) => Who::Owner,
        (Kind::Membership, 50..=89) => Who::Manager,
        (_, 90..) => Who::Stranger,
        _ => Who::Manager,
    };
    // A third of the cases are left ordinary: they must be accepted when staff send them.
    let ordinary = rng.chance(30);
    let mut touched = Vec::new();
    let short = match kind {
        Kind::Customer => "c",
        Kind::Project => "p",
        Kind::Membership => "m",
    };
    let name = if ordinary {
        format!("{}-{short}{index}", fixture.tag)
    } else {
        object_name(
            rng,
            &mut touched,
            format!("{}-{short}{index}", fixture.tag),
            kind,
        )
    };
    let mut d = Draft { rng, touched };
    let mut values = Vec::new();
    let mut meta = json!({"name": name});
    let spec = match kind {
        Kind::Customer => {
            let mut spec = json!({});
            if !ordinary {
                for (field, max) in [
                    ("displayName", 500),
                    ("nativeName", 500),
                    ("abbreviation", 12),
                ] {
                    if d.rng.chance(25) {
                        spec[field] = d.text(&format!("spec.{field}"), max);
                    }
                }
                for field in ["gracePeriodDays", "terminatedProjectRetentionDays"] {
                    if d.rng.chance(25) {
                        spec[field] = d.int(&format!("spec.{field}"), 0, 3650);
                    }
                }
                if d.rng.chance(15) {
                    spec["displayBillingInfoInProjects"] = if d.rng.chance(20) {
                        d.touch("spec.displayBillingInfoInProjects", "\"yes\"", true);
                        json!("yes")
                    } else {
                        json!(true)
                    };
                }
                for field in ["owners", "support"] {
                    if d.rng.chance(35) {
                        let n = 1 + d.rng.below(2);
                        let mut list = Vec::new();
                        for i in 0..n {
                            let path = format!("spec.{field}[{i}]");
                            let mut h = d.subject(
                                &path,
                                &["alice@example.com", "bob@example.com", OWNER],
                                &["default", "kube-system", &fixture.base],
                            );
                            if d.rng.chance(30) {
                                h["expirationTime"] = d.time(&format!("{path}.expirationTime"));
                            }
                            list.push(h);
                        }
                        spec[field] = json!(list);
                    }
                }
                if d.rng.chance(25) {
                    let mut quota = json!({});
                    if d.rng.chance(50) {
                        // At least 0; no upper bound.
                        quota["projects"] = if d.rng.chance(20) {
                            d.touch("spec.quota.projects", "-1", true);
                            json!(-1)
                        } else {
                            json!(d.rng.one(&[0, 5, 1000, 100_000]))
                        };
                    }
                    if d.rng.chance(70) {
                        quota["hard"] = d.resource_list(
                            "spec.quota.hard",
                            &["requests.cpu", "requests.memory", "pods", "limits.cpu"],
                        );
                    }
                    spec["quota"] = quota;
                }
                if d.rng.chance(15) {
                    spec["credit"] = match d.rng.below(4) {
                        0 => {
                            d.touch("spec.credit", "-1", true);
                            json!(-1)
                        }
                        1 => {
                            d.touch("spec.credit", "1e308", false);
                            json!(1e308)
                        }
                        2 => {
                            d.touch("spec.credit", "\"lots\"", true);
                            json!("lots")
                        }
                        _ => json!(250.5),
                    };
                }
                if d.rng.chance(8) {
                    d.touch(
                        "spec.projectChecklist",
                        "a checklist that does not exist",
                        false,
                    );
                    spec["projectChecklist"] = json!("no-such-checklist");
                }
                if d.rng.chance(8) {
                    d.touch("spec.colour", "an unknown field", false);
                    spec["colour"] = json!("blue");
                }
            }
            spec
        }
        Kind::Project => {
            let customer = if ordinary {
                json!(fixture.open)
            } else {
                match d.rng.below(100) {
                    0..=64 => json!(fixture.open),
                    65..=79 => json!(fixture.capped),
                    80..=86 => {
                        // A customer drawn earlier in the round: it may or may not exist.
                        d.touch("spec.customer", "a customer of the round", false);
                        json!(format!("{}-c{}", fixture.tag, d.rng.below(index.max(1))))
                    }
                    87..=91 => {
                        d.touch("spec.customer", "a customer that does not exist", true);
                        json!(format!("{}-nobody", fixture.tag))
                    }
                    92..=94 => {
                        d.touch("spec.customer", "not a DNS name", true);
                        json!("Not_A_Name")
                    }
                    95..=96 => {
                        d.touch("spec.customer", "empty", true);
                        json!("")
                    }
                    97 => {
                        d.touch("spec.customer", "a number", true);
                        json!(42)
                    }
                    _ => {
                        d.touch("spec.customer", "missing", true);
                        Value::Null
                    }
                }
            };
            if let Some(c) = customer.as_str() {
                values.push(c.to_string());
            }
            let mut spec = json!({});
            if !customer.is_null() {
                spec["customer"] = customer.clone();
            }
            // A project of the capped customer must bound what the customer limits, and what
            // it asks counts against the customer's quota.
            if customer == json!(fixture.capped) {
                if d.rng.chance(80) {
                    spec["quota"] =
                        json!({"hard": {"requests.cpu": d.rng.one(&["1", "2", "500m", "3"])}});
                    d.touch(
                        "spec.quota.hard.requests.cpu",
                        "counted against the capped customer's quota",
                        false,
                    );
                } else {
                    d.touch(
                        "spec.quota.hard",
                        "no requests.cpu, which the customer limits",
                        true,
                    );
                }
            }
            if !ordinary {
                for (field, max) in [
                    ("displayName", 500),
                    ("description", 4096),
                    ("type", 150),
                    ("backendId", 255),
                    ("staffNotes", 4096),
                ] {
                    if d.rng.chance(15) {
                        spec[field] = d.text(&format!("spec.{field}"), max);
                        if field == "staffNotes" {
                            d.touch("spec.staffNotes", "set (staff only)", false);
                        }
                    }
                }
                if d.rng.chance(15) {
                    spec["kind"] = d.enumeration(
                        "spec.kind",
                        &["default", "course", "public"],
                        &["Course", "private"],
                    );
                }
                let start = d.rng.chance(20).then(|| d.date("spec.startDate"));
                let end = d.rng.chance(30).then(|| d.date("spec.endDate"));
                if let (Some(s), Some(e)) = (
                    start.as_ref().and_then(Value::as_str),
                    end.as_ref().and_then(Value::as_str),
                ) && s.len() == 10
                    && e.len() == 10
                    && e < s
                {
                    d.touch("spec.endDate", "before spec.startDate", true);
                }
                if let Some(s) = start {
                    spec["startDate"] = s;
                }
                if let Some(e) = end {
                    spec["endDate"] = e;
                }
                if d.rng.chance(10) {
                    spec["oecdFos2007Code"] = match d.rng.below(3) {
                        0 => {
                            d.touch("spec.oecdFos2007Code", "9.9", true);
                            json!("9.9")
                        }
                        1 => {
                            d.touch("spec.oecdFos2007Code", "1.2 as a number", true);
                            json!(1.2)
                        }
                        _ => json!("1.2"),
                    };
                }
                if d.rng.chance(8) {
                    spec["isIndustry"] = if d.rng.chance(40) {
                        d.touch("spec.isIndustry", "\"yes\"", true);
                        json!("yes")
                    } else {
                        json!(true)
                    };
                }
                if d.rng.chance(8) {
                    spec["image"] = match d.rng.below(3) {
                        0 => {
                            d.touch("spec.image", "ftp:// URL", true);
                            json!("ftp://example.com/logo.png")
                        }
                        1 => {
                            d.touch("spec.image", "2049 characters", true);
                            json!(format!("https://{}", "a".repeat(2041)))
                        }
                        _ => json!("https://example.com/logo.png"),
                    };
                }
                if d.rng.chance(8) {
                    spec["maxServiceAccounts"] = d.int("spec.maxServiceAccounts", 0, 10000);
                    d.touch("spec.maxServiceAccounts", "set (staff only)", false);
                }
                if d.rng.chance(10) {
                    spec["gracePeriodDays"] = d.int("spec.gracePeriodDays", 0, 3650);
                    d.touch("spec.gracePeriodDays", "set (staff only)", false);
                }
                if d.rng.chance(10) {
                    spec["credit"] = match d.rng.below(4) {
                        0 => {
                            d.touch("spec.credit", "-0.01", true);
                            json!(-0.01)
                        }
                        1 => {
                            d.touch("spec.credit", "1e308", false);
                            json!(1e308)
                        }
                        _ => json!(12.5),
                    };
                }
                if d.rng.chance(8) {
                    spec["creditExhaustedPolicy"] = d.enumeration(
                        "spec.creditExhaustedPolicy",
                        &["None", "Notify", "Suspend"],
                        &["Pause", "suspend"],
                    );
                }
                if d.rng.chance(25) {
                    spec["quota"] = json!({"hard": d.resource_list(
                        "spec.quota.hard",
                        &["requests.cpu", "requests.memory", "pods", "limits.cpu", "requests.storage", "count/serviceaccounts"],
                    )});
                }
                if d.rng.chance(12) {
                    let part = d.rng.one(&["default", "defaultRequest", "max", "min"]);
                    let mut lr = json!({});
                    lr[part] =
                        d.resource_list(&format!("spec.limitRange.{part}"), &["cpu", "memory"]);
                    if d.rng.chance(30) {
                        // Smaller maximum than minimum: no container could run.
                        lr = json!({"min": {"cpu": "2"}, "max": {"cpu": "1"}});
                        d.touch("spec.limitRange", "min above max", true);
                    }
                    spec["limitRange"] = lr;
                }
                if d.rng.chance(8) {
                    spec["expirationPolicy"] = d.enumeration(
                        "spec.expirationPolicy",
                        &["Suspend", "Delete", "None"],
                        &["Archive", "delete"],
                    );
                }
                if d.rng.chance(6) {
                    spec["recovery"] = match d.rng.below(3) {
                        0 => {
                            d.touch("spec.recovery", "both options", true);
                            json!({"restoreTeamMembers": true, "sendInvitationsToPreviousMembers": true})
                        }
                        1 => {
                            d.touch(
                                "spec.recovery.restoreTeamMembers",
                                "true (staff only)",
                                false,
                            );
                            json!({"restoreTeamMembers": true})
                        }
                        _ => json!({"sendInvitationsToPreviousMembers": true}),
                    };
                }
                if d.rng.chance(5) {
                    d.touch("spec.checklistAnswers", "answers without a checklist", true);
                    spec["checklistAnswers"] = json!({"personal-data": true});
                }
                if d.rng.chance(5) {
                    spec["checklistReview"] = if d.rng.chance(40) {
                        d.touch("spec.checklistReview.decision", "Maybe", true);
                        json!({"decision": "Maybe"})
                    } else {
                        d.touch("spec.checklistReview", "set (staff only)", false);
                        json!({"decision": "Approved", "comment": "fine"})
                    };
                }
                if d.rng.chance(6) {
                    d.touch("spec.colour", "an unknown field", false);
                    spec["colour"] = json!("blue");
                }
            }
            spec
        }
        Kind::Membership => {
            let namespace = if ordinary {
                fixture.base.clone()
            } else {
                match d.rng.below(100) {
                    0..=84 => fixture.base.clone(),
                    85..=92 => {
                        d.touch("metadata.namespace", "not a project's namespace", true);
                        "default".to_string()
                    }
                    _ => {
                        d.touch(
                            "metadata.namespace",
                            "a namespace that does not exist",
                            true,
                        );
                        format!("{}-nowhere", fixture.tag)
                    }
                }
            };
            values.push(namespace.clone());
            meta["namespace"] = json!(namespace);
            let (subject, role) = if ordinary {
                // A subject of its own: no duplicate of any other membership.
                (
                    json!({"kind": "User", "name": format!("member-{index}@example.com")}),
                    json!(d.rng.one(&["Member", "Administrator"])),
                )
            } else {
                let subject = d.subject(
                    "spec.subject",
                    &[
                        "alice@example.com",
                        "bob@example.com",
                        "carol@example.com",
                        MANAGER,
                    ],
                    &[&fixture.base, "default", "kube-system"],
                );
                let role = d.enumeration(
                    "spec.role",
                    &["Manager", "Administrator", "Member"],
                    &["Owner", "member", ""],
                );
                (subject, role)
            };
            if let Some(n) = subject["name"].as_str() {
                values.push(n.to_string());
            }
            let mut spec = json!({"subject": subject, "role": role});
            if !ordinary && d.rng.chance(30) {
                spec["expirationTime"] = d.time("spec.expirationTime");
            }
            spec
        }
    };
    if !ordinary {
        d.metadata(&mut meta, fixture, kind);
    }
    let touched = d.touched;
    let (api_kind, clean_who) = match kind {
        Kind::Customer => ("Customer", who == Who::Staff),
        Kind::Project => ("Project", matches!(who, Who::Staff | Who::Owner)),
        Kind::Membership => ("ProjectMembership", matches!(who, Who::Staff | Who::Owner)),
    };
    Case {
        index,
        kind,
        who,
        object: json!({
            "apiVersion": "tenancy.dev/v1alpha1",
            "kind": api_kind,
            "metadata": meta,
            "spec": spec,
        }),
        clean: ordinary && clean_who,
        touched,
        values,
    }
}

// ---------------------------------------------------------------------------------------------
// Running the round

/// What became of one request.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    AcceptedReady,
    AcceptedCondition(String),
    RefusedBySchema,
    RefusedByRbac,
    RefusedByWebhook,
    RefusedOther(u16),
}

impl Outcome {
    fn label(&self) -> String {
        match self {
            Outcome::AcceptedReady => "accepted, Ready".into(),
            Outcome::AcceptedCondition(reason) => format!("accepted, Ready=False {reason}"),
            Outcome::RefusedBySchema => "refused by the schema".into(),
            Outcome::RefusedByRbac => "refused by RBAC".into(),
            Outcome::RefusedByWebhook => "refused by the webhook".into(),
            Outcome::RefusedOther(code) => format!("refused by the apiserver ({code})"),
        }
    }
}

fn resource(kind: Kind) -> ApiResource {
    match kind {
        Kind::Customer => ApiResource::erase::<Customer>(&()),
        Kind::Project => ApiResource::erase::<Project>(&()),
        Kind::Membership => ApiResource::erase::<ProjectMembership>(&()),
    }
}

fn api_for(client: Client, kind: Kind, namespace: Option<&str>) -> Api<DynamicObject> {
    let ar = resource(kind);
    match namespace {
        Some(ns) => Api::namespaced_with(client, ns, &ar),
        None => Api::all_with(client, &ar),
    }
}

/// Whether an object's status says it has settled: the Ready condition of its current
/// generation, True, or False with a reason other than Progressing and a message.
fn settled(object: &DynamicObject) -> Option<Result<(), (String, String)>> {
    let status = object.data.get("status")?;
    let generation = object.metadata.generation?;
    if status.get("observedGeneration").and_then(Value::as_i64) != Some(generation) {
        return None;
    }
    let ready = status
        .get("conditions")?
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Ready")?;
    let reason = ready["reason"].as_str().unwrap_or_default().to_string();
    let message = ready["message"].as_str().unwrap_or_default().to_string();
    match ready["status"].as_str() {
        Some("True") => Some(Ok(())),
        Some("False") if reason != "Progressing" && !reason.is_empty() && !message.is_empty() => {
            Some(Err((reason, message)))
        }
        _ => None,
    }
}

fn manifests_wanted() -> Result<usize, Failed> {
    match std::env::var("TENANCY_GENERATED_MANIFESTS") {
        Err(_) => Ok(DEFAULT_MANIFESTS),
        Ok(v) => v
            .trim()
            .parse::<usize>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| {
                format!("TENANCY_GENERATED_MANIFESTS must be a positive whole number, got {v:?}")
                    .into()
            }),
    }
}

fn seed() -> Result<u64, Failed> {
    match std::env::var("TENANCY_GENERATED_SEED") {
        Err(_) => Ok(SEED),
        Ok(v) => v.trim().parse::<u64>().map_err(|_| {
            format!("TENANCY_GENERATED_SEED must be a whole number (u64), got {v:?}").into()
        }),
    }
}

/// The sum of every sample of `metric` in the operator's metrics.
async fn metric_sum(env: &Env, metric: &str) -> Result<f64, Failed> {
    Ok(samples(&operator_metrics(env).await?, metric)
        .iter()
        .map(|s| s.value)
        .sum())
}

fn project_ready(p: &Project) -> Option<()> {
    p.status
        .as_ref()?
        .conditions
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True")
        .then_some(())
}

async fn make_fixture(env: &Env, admin: &Client) -> Result<Fixture, Failed> {
    let tag = unique_name("gen");
    let open = format!("{tag}-open");
    let capped = format!("{tag}-capped");
    let base = format!("{tag}-base");
    // Staff as the chart makes them: the tenancy objects through RBAC (the chart's
    // `tenancy:staff` ClusterRole, bound here to the round's staff user only), staff by group
    // for the webhook.
    let rules = json!([{
        "apiGroups": ["tenancy.dev"],
        "resources": ["projects", "customers", "projectmemberships", "checklists"],
        "verbs": ["get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"],
    }]);
    Api::<ClusterRole>::all(admin.clone())
        .create(
            &pp(),
            &crate::support::from_json(json!({"metadata": {"name": STAFF_ROLE}, "rules": rules})),
        )
        .await?;
    Api::<ClusterRoleBinding>::all(admin.clone())
        .create(
            &pp(),
            &crate::support::from_json(json!({
                "metadata": {"name": STAFF_ROLE},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": STAFF_ROLE},
                "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": STAFF}],
            })),
        )
        .await?;
    let customers = Api::<Customer>::all(admin.clone());
    let owner = json!([{"kind": "User", "name": OWNER}]);
    let created = customers
        .create(
            &pp(),
            &crate::support::customer(&open, json!({"owners": owner})),
        )
        .await?;
    customers
        .create(
            &pp(),
            &crate::support::customer(
                &capped,
                json!({"owners": owner, "quota": {"projects": 6, "hard": {"requests.cpu": "6"}}}),
            ),
        )
        .await?;
    Api::<Project>::all(admin.clone())
        .create(
            &pp(),
            &crate::support::project(&base, json!({"customer": open})),
        )
        .await?;
    crate::support::wait_project(admin, &base, "Ready", project_ready).await?;
    Api::<ProjectMembership>::namespaced(admin.clone(), &base)
        .create(
            &pp(),
            &crate::support::from_json(json!({
                "apiVersion": "tenancy.dev/v1alpha1", "kind": "ProjectMembership",
                "metadata": {"name": "manager", "namespace": base},
                "spec": {"subject": {"kind": "User", "name": MANAGER}, "role": "Manager"},
            })),
        )
        .await?;
    // Staff, owners and the manager act once their access has arrived.
    wait_access(env, STAFF, "create", "customers.tenancy.dev", None, true).await?;
    wait_access(env, OWNER, "create", "projects.tenancy.dev", None, true).await?;
    wait_access(
        env,
        MANAGER,
        "create",
        "projectmemberships.tenancy.dev",
        Some(&base),
        true,
    )
    .await?;
    Ok(Fixture {
        tag,
        open,
        capped,
        base,
        open_uid: created.uid().unwrap_or_default(),
    })
}

/// One request as its identity, and what came of it at once.
async fn send(clients: &BTreeMap<Who, Client>, case: &Case) -> Result<(), (u16, String)> {
    let object: DynamicObject = match serde_json::from_value(case.object.clone()) {
        Ok(o) => o,
        Err(e) => return Err((0, format!("the manifest does not serialize: {e}"))),
    };
    let api = api_for(
        clients[&case.who].clone(),
        case.kind,
        case.namespace().as_deref(),
    );
    match api.create(&pp(), &object).await {
        Ok(_) => Ok(()),
        Err(e) => Err(refusal(&e)),
    }
}

/// Classifies a refusal, and says what is wrong with it, if anything.
fn judge_refusal(case: &Case, code: u16, message: &str) -> (Outcome, Option<String>) {
    let webhook = message.contains("admission webhook");
    let rbac = code == 403 && !webhook && message.contains("is forbidden: User");
    let outcome = if webhook {
        Outcome::RefusedByWebhook
    } else if rbac {
        Outcome::RefusedByRbac
    } else if code == 422 {
        Outcome::RefusedBySchema
    } else {
        Outcome::RefusedOther(code)
    };
    let fields = case.field_mentions();
    let names_field = fields.iter().any(|f| message.contains(f.as_str()));
    let names_requester = message.contains(case.who.user());
    let names_value = case
        .values
        .iter()
        .any(|v| !v.is_empty() && message.contains(v.as_str()));
    let problem = match &outcome {
        // A manifest that does not fit is refused naming the field.
        Outcome::RefusedBySchema if !names_field => Some(format!(
            "the schema's refusal names none of the fields set out of the ordinary ({fields:?})"
        )),
        // Who asks: the refusal names them.
        Outcome::RefusedByRbac if !names_requester => {
            Some("the RBAC refusal does not name the requester".to_string())
        }
        Outcome::RefusedByRbac if case.who == Who::Staff => {
            Some("staff were refused by RBAC".to_string())
        }
        // The webhook: 422 names a field; 403 and 409 name a field, the requester or what the
        // request conflicts with.
        Outcome::RefusedByWebhook if code == 422 && !names_field => Some(format!(
            "the webhook's 422 names none of the fields set out of the ordinary ({fields:?})"
        )),
        Outcome::RefusedByWebhook
            if code != 422 && !names_field && !names_requester && !names_value =>
        {
            Some(format!(
                "the webhook's {code} names no field ({fields:?}), not the requester and none of {:?}",
                case.values
            ))
        }
        Outcome::RefusedByWebhook if code == 403 && case.who == Who::Staff && !names_field => {
            Some("staff were refused by the webhook for who they are".to_string())
        }
        Outcome::RefusedOther(404) if !names_value => {
            Some(format!("the 404 names none of {:?}", case.values))
        }
        Outcome::RefusedOther(c) if *c != 404 => Some(format!("an unexpected refusal (HTTP {c})")),
        _ => None,
    };
    let problem = problem.or_else(|| {
        case.clean.then(|| {
            "a manifest valid by construction from an identity allowed to send it was refused"
                .to_string()
        })
    });
    (outcome, problem)
}

/// Whether a request creates the object or replaces one the round created.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Pass {
    Create,
    Update,
}

/// What the apiserver answered: accepted, or the HTTP code and message of the refusal.
type Answer = Result<(), (u16, String)>;

/// Another manifest of `original`'s kind for the same object, to replace it with.
fn update_of(rng: &mut Rng, original: &Case, fixture: &Fixture) -> Case {
    let mut case = draw(rng, original.index, fixture, Some(original.kind));
    case.object["metadata"]["name"] = json!(original.name());
    match original.namespace() {
        Some(ns) => {
            case.object["metadata"]["namespace"] = json!(ns);
            case.values.push(ns);
        }
        None => {
            if let Some(m) = case.object["metadata"].as_object_mut() {
                m.remove("namespace");
            }
        }
    }
    case.touched
        .retain(|t| t.path != "metadata.name" && t.path != "metadata.namespace");
    // Without requests.cpu, a project of the capped customer is refused only if it changes its
    // quota or customer: the object replaced may already be such a project.
    for t in &mut case.touched {
        if t.path == "spec.quota.hard" && t.what.starts_with("no requests.cpu") {
            t.refused = false;
        }
    }
    // Staff may make any valid change; others may be refused for what the object was before.
    case.clean = case.clean && case.who == Who::Staff;
    case
}

/// Replaces the object with the case's spec and metadata (kept: the finalizers, annotations and
/// labels it has, which the case adds to), as the case's identity; again when the object
/// changed in between (its status is written meanwhile).
async fn replace(admin: &Client, clients: &BTreeMap<Who, Client>, case: &Case) -> Answer {
    let namespace = case.namespace();
    let read = api_for(admin.clone(), case.kind, namespace.as_deref());
    let write = api_for(clients[&case.who].clone(), case.kind, namespace.as_deref());
    let mut last = (0, String::new());
    for _ in 0..5 {
        let current = read.get(&case.name()).await.map_err(|e| refusal(&e))?;
        let mut object = serde_json::to_value(&current).map_err(|e| (0, e.to_string()))?;
        object["spec"] = case.object["spec"].clone();
        let drawn = &case.object["metadata"];
        for map in ["labels", "annotations"] {
            if let Some(m) = drawn[map].as_object() {
                for (k, v) in m {
                    object["metadata"][map][k] = v.clone();
                }
            }
        }
        if let Some(f) = drawn["finalizers"].as_array() {
            let mut all: Vec<Value> = current.finalizers().iter().map(|f| json!(f)).collect();
            all.extend(
                f.iter()
                    .filter(|x| !all.contains(x))
                    .cloned()
                    .collect::<Vec<_>>(),
            );
            object["metadata"]["finalizers"] = json!(all);
        }
        if !drawn["ownerReferences"].is_null() {
            object["metadata"]["ownerReferences"] = drawn["ownerReferences"].clone();
        }
        let object: DynamicObject =
            serde_json::from_value(object).map_err(|e| (0, e.to_string()))?;
        match write.replace(&case.name(), &pp(), &object).await {
            Ok(_) => return Ok(()),
            Err(e) => {
                last = refusal(&e);
                if !(last.0 == 409 && last.1.contains("the object has been modified")) {
                    return Err(last);
                }
            }
        }
    }
    Err(last)
}

/// Sends every case (ten at a time), waits for what was accepted to settle, judges each and
/// records it; returns the indexes of the cases accepted.
#[allow(clippy::too_many_arguments)]
async fn run_pass(
    admin: &Client,
    clients: &BTreeMap<Who, Client>,
    pass: Pass,
    cases: &[Case],
    t: &mut Checks,
    tally: &mut BTreeMap<(Pass, Kind, String), usize>,
    by_who: &mut BTreeMap<(Who, bool), usize>,
    problems: &mut usize,
) -> Result<BTreeSet<usize>, Failed> {
    let started = Instant::now();
    let answers: Vec<(usize, Answer)> = futures::stream::iter(cases.iter())
        .map(|case| async move {
            let answer = match pass {
                Pass::Create => send(clients, case).await,
                Pass::Update => replace(admin, clients, case).await,
            };
            (case.index, answer)
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let sent_in = started.elapsed();
    let mut answers: BTreeMap<usize, Answer> = answers.into_iter().collect();
    eprintln!(
        "[e2e] generated round, {pass:?}: {} requests answered in {:.1} s ({:.0}/s at concurrency {CONCURRENCY})",
        cases.len(),
        sent_in.as_secs_f64(),
        cases.len() as f64 / sent_in.as_secs_f64().max(0.001)
    );

    // Wait for every accepted object to settle, reading lists rather than each object.
    let accepted: Vec<&Case> = cases
        .iter()
        .filter(|c| matches!(answers.get(&c.index), Some(Ok(()))))
        .collect();
    let settle_started = Instant::now();
    let mut verdicts: BTreeMap<usize, Result<(), (String, String)>> = BTreeMap::new();
    let mut last_seen: BTreeMap<usize, String> = BTreeMap::new();
    loop {
        let mut listed: BTreeMap<(Kind, Option<String>, String), DynamicObject> = BTreeMap::new();
        for kind in [Kind::Customer, Kind::Project, Kind::Membership] {
            let api = api_for(admin.clone(), kind, None);
            for o in api.list(&ListParams::default()).await?.items {
                listed.insert((kind, o.namespace(), o.name_any()), o);
            }
        }
        for case in &accepted {
            if verdicts.contains_key(&case.index) {
                continue;
            }
            match listed.get(&(case.kind, case.namespace(), case.name())) {
                Some(o) => {
                    last_seen.insert(
                        case.index,
                        o.data
                            .get("status")
                            .map(|s| s.to_string())
                            .unwrap_or_else(|| "(no status)".into()),
                    );
                    if let Some(v) = settled(o) {
                        verdicts.insert(case.index, v);
                    }
                }
                None => {
                    last_seen.insert(case.index, "(gone)".into());
                }
            }
        }
        if verdicts.len() == accepted.len() || settle_started.elapsed() > SETTLE_TIMEOUT {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    eprintln!(
        "[e2e] generated round, {pass:?}: {} of {} accepted objects settled in {:.1} s",
        verdicts.len(),
        accepted.len(),
        settle_started.elapsed().as_secs_f64()
    );

    let must_be_refused = |case: &Case| {
        case.touched
            .iter()
            .filter(|t| t.refused)
            .map(|t| format!("{}={}", t.path, t.what))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut accepted_indexes = BTreeSet::new();
    for case in cases {
        let answer = answers
            .remove(&case.index)
            .expect("every case was answered");
        let (outcome, problem) = match answer {
            Err((code, message)) => {
                let (outcome, problem) = judge_refusal(case, code, &message);
                (
                    outcome,
                    problem.map(|p| {
                        let mut sent = case.object.to_string();
                        if sent.len() > 600 {
                            sent = format!("{}...", sent.chars().take(600).collect::<String>());
                        }
                        format!("{p}: HTTP {code}: {message} (sent {sent})")
                    }),
                )
            }
            Ok(()) => {
                accepted_indexes.insert(case.index);
                match verdicts.get(&case.index) {
                    None => (
                        Outcome::AcceptedCondition("never settled".into()),
                        Some(format!(
                            "accepted, but not settled within {SETTLE_TIMEOUT:?}; its status: {}",
                            last_seen
                                .get(&case.index)
                                .map(String::as_str)
                                .unwrap_or("?")
                        )),
                    ),
                    Some(Ok(())) => (
                        Outcome::AcceptedReady,
                        case.must_be_refused().then(|| {
                            format!(
                                "accepted and Ready, though {} must be refused",
                                must_be_refused(case)
                            )
                        }),
                    ),
                    Some(Err((reason, message))) => {
                        let problem = if case.clean {
                            Some(format!(
                                "valid by construction, but Ready=False {reason}: {message}"
                            ))
                        } else {
                            case.must_be_refused().then(|| {
                                format!(
                                    "accepted ({reason}: {message}), though {} must be refused",
                                    must_be_refused(case)
                                )
                            })
                        };
                        (Outcome::AcceptedCondition(reason.clone()), problem)
                    }
                }
            }
        };
        *tally.entry((pass, case.kind, outcome.label())).or_default() += 1;
        *by_who
            .entry((
                case.who,
                matches!(
                    outcome,
                    Outcome::AcceptedReady | Outcome::AcceptedCondition(_)
                ),
            ))
            .or_default() += 1;
        if let Some(p) = problem {
            *problems += 1;
            t.check(&format!("{pass:?} {}", case.summary()), false, p);
        }
    }
    Ok(accepted_indexes)
}

async fn generated_manifests_are_refused_naming_a_field_or_settle(env: Arc<Env>) -> TestResult {
    let operator = env
        .operator()
        .ok_or("this round needs the suite's operator, which is not running")?;
    let count = manifests_wanted()?;
    let seed = seed()?;
    let admin = env.client().await;
    let mut t = Checks::default();
    let fixture = t.waited(
        "the fixture (two customers, a project, its manager) is ready",
        make_fixture(&env, &admin).await,
    )?;
    let mut clients = BTreeMap::new();
    for who in [Who::Staff, Who::Owner, Who::Manager, Who::Stranger] {
        clients.insert(who, env.client_as(who.user(), who.groups()).await);
    }

    let mut rng = Rng(seed);
    let cases: Vec<Case> = (0..count)
        .map(|i| draw(&mut rng, i, &fixture, None))
        .collect();
    eprintln!(
        "[e2e] generated round: {count} manifests from seed {seed:#x} ({} customers, {} projects, {} memberships; {} ordinary from an allowed identity)",
        cases.iter().filter(|c| c.kind == Kind::Customer).count(),
        cases.iter().filter(|c| c.kind == Kind::Project).count(),
        cases.iter().filter(|c| c.kind == Kind::Membership).count(),
        cases.iter().filter(|c| c.clean).count(),
    );
    let mut tally: BTreeMap<(Pass, Kind, String), usize> = BTreeMap::new();
    let mut by_who: BTreeMap<(Who, bool), usize> = BTreeMap::new();
    let mut problems = 0;
    let created = run_pass(
        &admin,
        &clients,
        Pass::Create,
        &cases,
        &mut t,
        &mut tally,
        &mut by_who,
        &mut problems,
    )
    .await?;
    // Then each accepted object is replaced by another drawn manifest of its kind, sent by a
    // drawn identity: updates, moves between customers, quota changes.
    let updates: Vec<Case> = cases
        .iter()
        .filter(|c| created.contains(&c.index))
        .map(|c| update_of(&mut rng, c, &fixture))
        .collect();
    run_pass(
        &admin,
        &clients,
        Pass::Update,
        &updates,
        &mut t,
        &mut tally,
        &mut by_who,
        &mut problems,
    )
    .await?;
    let mut table = String::new();
    for ((pass, kind, label), n) in &tally {
        let _ = write!(table, "\n[e2e]   {pass:?} {kind:?}: {label}: {n}");
    }
    eprintln!(
        "[e2e] generated round outcomes ({count} created, {} updated; {problems} misbehaved):{table}",
        updates.len()
    );
    let mut whos = String::new();
    for ((who, accepted), n) in &by_who {
        let _ = write!(
            whos,
            " {who:?} {}: {n};",
            if *accepted { "accepted" } else { "refused" }
        );
    }
    eprintln!("[e2e] generated round by identity:{whos}");
    let total = |pred: &dyn Fn(&str) -> bool| {
        tally
            .iter()
            .filter(|((_, _, l), _)| pred(l))
            .map(|(_, n)| n)
            .sum::<usize>()
    };
    t.check(
        "the round has every outcome: accepted and Ready, refused by the schema, by the webhook",
        total(&|l| l == "accepted, Ready") > 0
            && total(&|l| l == "refused by the schema") > 0
            && total(&|l| l == "refused by the webhook") > 0,
        format!("{tally:?}"),
    );

    // The operator survived it: alive, no panic, no error loop, watches working.
    t.check(
        "the operator still runs",
        operator.is_running(),
        operator.log_tail(40),
    );
    let log = std::fs::read_to_string(operator.log_path()).unwrap_or_default();
    let panics: Vec<&str> = log.lines().filter(|l| l.contains("panicked")).collect();
    t.check(
        "the operator's log holds no panic",
        panics.is_empty(),
        panics
            .iter()
            .take(5)
            .copied()
            .collect::<Vec<_>>()
            .join("\n"),
    );
    let quiet = async {
        let errors_before = metric_sum(&env, "tenancy_reconcile_errors_total").await?;
        let reconciles_before = metric_sum(&env, "tenancy_reconciles_total").await?;
        tokio::time::sleep(QUIET_WINDOW).await;
        let errors_after = metric_sum(&env, "tenancy_reconcile_errors_total").await?;
        let reconciles_after = metric_sum(&env, "tenancy_reconciles_total").await?;
        eprintln!(
            "[e2e] generated round quiet window of {QUIET_WINDOW:?}: {} reconciles, {} reconcile errors ({} errors in total since the operator started)",
            (reconciles_after - reconciles_before) as i64,
            (errors_after - errors_before) as i64,
            errors_after as i64
        );
        Ok::<f64, Failed>(errors_after - errors_before)
    }
    .await;
    match quiet {
        Ok(grown) => t.equal(
            "reconcile errors in the quiet window after the round (no error loop)",
            grown,
            0.0,
        ),
        Err(e) => t.check(
            "the operator's metrics answer after the round",
            false,
            e.message().unwrap_or_default().to_string(),
        ),
    }
    let fresh = format!("{}-after", fixture.tag);
    let fresh_started = Instant::now();
    let fresh_ready = match Api::<Project>::all(clients[&Who::Staff].clone())
        .create(
            &pp(),
            &crate::support::project(&fresh, json!({"customer": fixture.open})),
        )
        .await
    {
        Ok(_) => crate::support::wait_project(&admin, &fresh, "Ready", project_ready).await,
        Err(e) => Err(format!("creating project {fresh} as staff: {e}").into()),
    };
    if fresh_ready.is_ok() {
        eprintln!(
            "[e2e] generated round: a fresh project after the round was Ready in {:.1} s",
            fresh_started.elapsed().as_secs_f64()
        );
    }
    t.outcome(
        "a fresh project created after the round becomes Ready (the watches work)",
        fresh_ready,
    );

    // The ledger of every customer touched equals what its stored projects hold.
    let mut touched_customers: BTreeSet<String> = [fixture.open.clone(), fixture.capped.clone()]
        .into_iter()
        .collect();
    for case in cases.iter().filter(|c| c.kind == Kind::Project) {
        if let Some(c) = case.object["spec"]["customer"].as_str() {
            touched_customers.insert(c.to_string());
        }
    }
    let existing: BTreeSet<String> = Api::<Customer>::all(admin.clone())
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .map(|c| c.name_any())
        .collect();
    touched_customers.retain(|c| existing.contains(c));
    let ledger_started = Instant::now();
    let ledger_equal = wait_for(
        "the ledger of every touched customer to equal what its stored projects hold",
        LEDGER_TIMEOUT,
        || {
            let admin = admin.clone();
            let env = env.clone();
            let touched = touched_customers.clone();
            async move {
                ledger_differences(&env, &admin, &touched)
                    .await
                    .ok()?
                    .is_empty()
                    .then_some(())
            }
        },
    )
    .await;
    let differences = ledger_differences(&env, &admin, &touched_customers).await?;
    t.check(
        &format!(
            "the ledger of each of the {} customers touched equals what its stored projects hold",
            touched_customers.len()
        ),
        ledger_equal.is_ok() && differences.is_empty(),
        differences.join("; "),
    );
    eprintln!(
        "[e2e] generated round: ledgers of {} customers compared in {:.1} s",
        touched_customers.len(),
        ledger_started.elapsed().as_secs_f64()
    );

    let cleanup = clean_up(&admin, &fixture).await;
    t.outcome("what the round created is deleted", cleanup);
    t.finish("generated manifests are refused naming a field, or settle")
}

/// For each customer, how its ledger differs from what its stored projects hold.
async fn ledger_differences(
    env: &Env,
    admin: &Client,
    customers: &BTreeSet<String>,
) -> Result<Vec<String>, Failed> {
    let projects = Api::<Project>::all(admin.clone())
        .list(&ListParams::default())
        .await?;
    let quota_holders: BTreeSet<String> = Api::<Customer>::all(admin.clone())
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .filter(|c| c.spec.quota.is_some())
        .map(|c| c.name_any())
        .collect();
    let ledgers = Api::<ConfigMap>::namespaced(admin.clone(), &env.local().namespace);
    let mut out = Vec::new();
    for customer in customers {
        let stored: BTreeMap<String, BTreeMap<String, String>> = projects
            .items
            .iter()
            .filter(|p| &p.spec.customer == customer && p.metadata.deletion_timestamp.is_none())
            .map(|p| (p.name_any(), tenancy_operator::ledger::allocation(p)))
            .collect();
        // A customer without a quota keeps no ledger (nothing to reserve against).
        let ledger = ledgers
            .get_opt(&tenancy_operator::ledger::ledger_name(customer))
            .await?;
        if ledger.is_none() && !quota_holders.contains(customer) {
            continue;
        }
        let held: BTreeMap<String, BTreeMap<String, String>> = ledger
            .map(|cm| tenancy_operator::ledger::decode(&cm))
            .unwrap_or_default()
            .into_iter()
            .map(|(k, r)| (k, r.hard))
            .collect();
        if held != stored {
            out.push(format!(
                "customer {customer}: the ledger holds {held:?}, the stored projects {stored:?}"
            ));
        }
    }
    Ok(out)
}

/// Deletes what the round made: foreign finalizers first, then the projects (soft deletes),
/// memberships and customers.
async fn clean_up(admin: &Client, fixture: &Fixture) -> Result<(), Failed> {
    let started = Instant::now();
    let ours = |name: &str| name.contains(&fixture.tag);
    // The operator's own finalizer is on projects only; any other was put there by the round.
    let strip = |o: &DynamicObject, kind: Kind| {
        let keep: Vec<String> = o
            .finalizers()
            .iter()
            .filter(|f| kind == Kind::Project && f.as_str() == "tenancy.dev/soft-delete")
            .cloned()
            .collect();
        (keep.len() != o.finalizers().len()).then(|| json!({"metadata": {"finalizers": keep}}))
    };
    let params = PatchParams::default();
    for kind in [Kind::Membership, Kind::Project, Kind::Customer] {
        let list = api_for(admin.clone(), kind, None)
            .list(&ListParams::default())
            .await?;
        let api_of = |o: &DynamicObject| api_for(admin.clone(), kind, o.namespace().as_deref());
        for o in list
            .items
            .iter()
            .filter(|o| ours(&o.name_any()) || o.namespace().is_some_and(|n| ours(&n)))
        {
            if let Some(patch) = strip(o, kind) {
                api_of(o)
                    .patch(&o.name_any(), &params, &Patch::Merge(patch))
                    .await?;
            }
            if kind != Kind::Membership {
                let _ = api_of(o)
                    .delete(&o.name_any(), &DeleteParams::default())
                    .await;
            }
        }
        if kind == Kind::Project {
            let projects = Api::<Project>::all(admin.clone());
            wait_for(
                "every project of the round to be gone",
                RECONCILE_TIMEOUT,
                || async {
                    let left = projects.list(&ListParams::default()).await.ok()?;
                    (!left.items.iter().any(|p| ours(&p.name_any()))).then_some(())
                },
            )
            .await?;
        }
    }
    let _ = Api::<ClusterRoleBinding>::all(admin.clone())
        .delete(STAFF_ROLE, &DeleteParams::default())
        .await;
    let _ = Api::<ClusterRole>::all(admin.clone())
        .delete(STAFF_ROLE, &DeleteParams::default())
        .await;
    let customers = Api::<Customer>::all(admin.clone());
    let gone = wait_for(
        "every customer of the round to be gone",
        ACCESS_TIMEOUT,
        || async {
            let left = customers.list(&ListParams::default()).await.ok()?;
            (!left.items.iter().any(|c| ours(&c.name_any()))).then_some(())
        },
    )
    .await;
    if let Err(e) = gone {
        let left: Vec<String> = customers
            .list(&ListParams::default())
            .await?
            .items
            .iter()
            .filter(|c| ours(&c.name_any()))
            .map(|c| format!("{} (finalizers {:?})", c.name_any(), c.finalizers()))
            .collect();
        return Err(format!("{}; left: {left:?}", e.message().unwrap_or_default()).into());
    }
    eprintln!(
        "[e2e] generated round: clean-up took {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
