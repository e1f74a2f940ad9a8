//! The customer quota ledger: every project's allocation (`spec.quota.hard`) is reserved in one
//! ConfigMap per customer before the project is admitted. Writes carry the resourceVersion they
//! read, so concurrent admissions (on any replica) serialize through the apiserver and the
//! customer's quota is never oversubscribed. Within a replica, admissions that arrive while a
//! write is in flight are checked one after the other and written together. Reservations whose project never appeared are
//! removed by the Customer reconciler.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use jiff::Timestamp;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, PostParams};
use kube::{Client, ResourceExt};
use serde::{Deserialize, Serialize};

use crate::api::{Customer, Project};
use crate::desired::quantity::Milli;
use crate::desired::quota::{self, Allocation};
use crate::desired::{bounded_name, labels};

/// One project's reservation.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Reservation {
    /// The allocation, as quantity strings.
    pub hard: BTreeMap<String, String>,
    /// When it was reserved (a reservation without its project is removed after a while).
    pub at: Timestamp,
}

impl Reservation {
    fn amounts(&self) -> Allocation {
        quota::from_strings(&self.hard)
    }
}

/// How long after a reservation the reconciler may correct it to what the stored project holds:
/// longer than an admitted request can take to be stored (the webhook's timeout is at most 30 s).
pub const SETTLE: jiff::SignedDuration = jiff::SignedDuration::from_secs(30);

/// Reservations by project name.
pub type Entries = BTreeMap<String, Reservation>;

/// Name of a customer's ledger ConfigMap.
pub fn ledger_name(customer: &str) -> String {
    bounded_name(&format!("tenancy-ledger-{customer}"), 253)
}

/// A project's allocation, as it is reserved (canonical resource names, exact quantities).
pub fn allocation(project: &Project) -> BTreeMap<String, String> {
    quota::to_strings(&quota::allocation(project))
}

/// Whether `project` asking for `want` fits the customer's quota next to the other
/// reservations. The error says what is left.
pub fn fits(
    customer: &Customer,
    entries: &Entries,
    project: &str,
    want: &BTreeMap<String, String>,
) -> Result<(), String> {
    let Some(quota) = &customer.spec.quota else {
        return Ok(());
    };
    let others: Vec<&Reservation> = entries
        .iter()
        .filter(|(name, _)| name.as_str() != project)
        .map(|(_, r)| r)
        .collect();
    let name = customer.name_any();
    if let Some(max) = quota.projects
        && others.len() as i64 + 1 > i64::from(max)
    {
        return Err(format!(
            "customer {name} has all {max} of its projects allocated (quota.projects); delete a project or ask staff to raise the quota"
        ));
    }
    let mut short = Vec::new();
    let want = quota::from_strings(want);
    for (key, limit) in quota::allocation_of_list(&quota.hard) {
        let used: Milli = others
            .iter()
            .filter_map(|r| r.amounts().get(&key).copied())
            .sum();
        let asked = want.get(&key).copied().unwrap_or_default();
        if used + asked > limit {
            let left = Milli((limit.0 - used.0).max(0));
            short.push(format!("{key}: asks {asked}, {left} of {limit} left"));
        }
    }
    if short.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "customer {name} quota exhausted: {}; lower spec.quota.hard or ask staff to raise the customer's quota",
            short.join("; ")
        ))
    }
}

/// One correction of a ledger entry: set the project's reservation to `hard` (`None`: remove
/// it), if the entry is still the one reserved at `reserved_at` (`None`: if there is none).
#[derive(Clone, Debug, PartialEq)]
pub struct Correction {
    pub project: String,
    pub hard: Option<BTreeMap<String, String>>,
    pub reserved_at: Option<Timestamp>,
}

/// What makes a ledger equal what the stored projects hold (`stored`: each project's allocation,
/// see [`allocation`]): a reservation whose project never appeared (a create admitted, then
/// refused or lost) goes, one that differs from its stored project (an admitted change that was
/// never stored; a shrink, which admission never reserves) is set to it, and a stored project
/// without one gets one. Entries reserved in the last [`SETTLE`] are left to their admissions
/// (whose objects may still be on their way to storage); the returned instant is when the first
/// of them settles.
pub fn repairs(
    entries: &Entries,
    stored: &BTreeMap<String, BTreeMap<String, String>>,
    now: Timestamp,
) -> (Vec<Correction>, Option<Timestamp>) {
    let mut out = Vec::new();
    let mut next: Option<Timestamp> = None;
    for (project, reservation) in entries {
        let want = stored.get(project);
        if want == Some(&reservation.hard) {
            continue;
        }
        let settle = reservation.at.checked_add(SETTLE).unwrap_or(reservation.at);
        if now < settle {
            next = Some(next.map_or(settle, |n| n.min(settle)));
            continue;
        }
        out.push(Correction {
            project: project.clone(),
            hard: want.cloned(),
            reserved_at: Some(reservation.at),
        });
    }
    for (project, hard) in stored {
        if !entries.contains_key(project) {
            out.push(Correction {
                project: project.clone(),
                hard: Some(hard.clone()),
                reserved_at: None,
            });
        }
    }
    (out, next)
}

/// Why a reservation failed.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The customer's quota cannot hold it (409 to the user).
    #[error("{0}")]
    Exhausted(String),
    #[error("quota ledger: {0}")]
    Kube(String),
    #[error("quota ledger: too many concurrent changes to customer {0}'s allocation; retry")]
    Contended(String),
}

/// Reads and writes the ledgers.
pub struct Ledger {
    client: Client,
    namespace: String,
    /// Changes waiting per customer: one writer per customer within this replica, so
    /// optimistic-concurrency retries happen only across replicas.
    pending: Mutex<HashMap<String, Arc<Mutex<Pending>>>>,
}

impl From<kube::Error> for LedgerError {
    fn from(e: kube::Error) -> Self {
        LedgerError::Kube(e.to_string())
    }
}

/// Reads a ledger ConfigMap.
pub fn decode(cm: &ConfigMap) -> Entries {
    cm.data
        .as_ref()
        .map(|d| {
            d.iter()
                .filter_map(|(k, v)| serde_json::from_str(v).ok().map(|r| (k.clone(), r)))
                .collect()
        })
        .unwrap_or_default()
}

fn encode(entries: &Entries) -> BTreeMap<String, String> {
    entries
        .iter()
        .map(|(k, r)| {
            (
                k.clone(),
                serde_json::to_string(r).expect("a reservation serializes"),
            )
        })
        .collect()
}

/// One change to a customer's ledger, waiting to be written with the others that arrived
/// meanwhile.
#[derive(Clone, Debug)]
struct Change {
    project: String,
    /// The new reservation; `None` removes the project's.
    entry: Option<Reservation>,
    /// For a reservation: the customer whose quota it must fit, and who owns the ledger.
    customer: Option<Arc<Customer>>,
    /// Fills a ledger that does not exist yet (the customer's projects the caches know).
    seed: Entries,
    /// Checked but not written.
    dry_run: bool,
    /// Applies only while the project's entry is still the one reserved at this time (`None`:
    /// while there is none).
    only_if: Option<Option<Timestamp>>,
}

/// What writing a batch of changes comes to: each change's outcome, and the ledger to write
/// (None: nothing to write).
#[derive(Debug)]
struct Plan {
    outcomes: Vec<Result<(), String>>,
    write: Option<(Entries, Option<OwnerReference>)>,
}

/// Applies a batch of changes, in arrival order, to the ledger as it is (`current`). Each
/// reservation is checked against the customer's quota next to everything before it, accepted
/// ones of the same batch included; a refused one changes nothing.
///
/// A ledger belongs to its Customer, so the cluster's garbage collector deletes it with the
/// customer. A ledger owned by an earlier customer of the same name (deleted, its ledger not
/// collected yet) is started afresh from the seed; one owned by nobody (written before ledgers
/// had owners) is adopted as it is.
fn plan(current: Option<&ConfigMap>, changes: &[Change]) -> Plan {
    let owner = changes
        .iter()
        .find_map(|c| c.customer.as_deref())
        .map(crate::desired::owner_ref);
    let owners = |cm: &ConfigMap| cm.metadata.owner_references.clone().unwrap_or_default();
    let earlier = current.is_some_and(|cm| {
        owner
            .as_ref()
            .is_some_and(|o| owners(cm).iter().any(|r| r.uid != o.uid))
    });
    let adopt = current.is_some_and(|cm| owner.as_ref().is_some_and(|o| !owners(cm).contains(o)));
    let mut entries = match current {
        Some(cm) if !earlier => decode(cm),
        _ => changes
            .iter()
            .flat_map(|c| c.seed.clone())
            .collect::<Entries>(),
    };
    let mut write = adopt;
    let mut outcomes = Vec::with_capacity(changes.len());
    for c in changes {
        // An admission never lowers a reservation: a change admitted can still fail to be stored
        // (a stale resourceVersion, another webhook), and a ledger that counted less than the
        // stored projects hold would admit too much. It reserves the larger of what is reserved
        // and what is asked; the reconciler lowers it to what the stored project holds.
        if let Some(expected) = c.only_if
            && entries.get(&c.project).map(|e| e.at) != expected
        {
            outcomes.push(Ok(()));
            continue;
        }
        let mut c = c.clone();
        let mut shrink = false;
        if let (Some(_), Some(e), Some(held)) = (&c.customer, &mut c.entry, entries.get(&c.project))
        {
            let (held_amounts, asked) = (held.amounts(), quota::from_strings(&e.hard));
            shrink = asked
                .iter()
                .all(|(k, v)| held_amounts.get(k).is_some_and(|h| v <= h));
            *e = if shrink {
                held.clone()
            } else {
                Reservation {
                    hard: quota::to_strings(&quota::max_of(&held_amounts, &asked)),
                    at: e.at,
                }
            };
        }
        if let (Some(customer), Some(e), false) = (&c.customer, &c.entry, shrink)
            && let Err(msg) = fits(customer, &entries, &c.project, &e.hard)
        {
            outcomes.push(Err(msg));
            continue;
        }
        outcomes.push(Ok(()));
        if c.dry_run {
            continue;
        }
        let unchanged = match &c.entry {
            Some(e) => entries
                .get(&c.project)
                .is_some_and(|old| old.hard == e.hard),
            None => !entries.contains_key(&c.project),
        };
        // A ledger that does not exist yet is written even if the seed already holds the
        // reservation; removing one from a ledger that does not exist writes nothing.
        write |= !unchanged || (current.is_none() && c.entry.is_some());
        match &c.entry {
            Some(e) => entries.insert(c.project.clone(), e.clone()),
            None => entries.remove(&c.project),
        };
    }
    Plan {
        outcomes,
        write: write.then(|| (entries, owner.filter(|_| adopt || current.is_none()))),
    }
}

/// The changes waiting for one customer's ledger, and whether a writer is at work on them.
#[derive(Default)]
struct Pending {
    changes: Vec<(
        Change,
        tokio::sync::oneshot::Sender<Result<(), LedgerError>>,
    )>,
    writing: bool,
    /// The ledger as this writer last stored it (the apiserver's answer to the write): the next
    /// batch plans on it and writes with its resourceVersion, without reading first.
    last: Option<ConfigMap>,
}

impl Ledger {
    pub fn new(client: Client, namespace: String) -> Self {
        Ledger {
            client,
            namespace,
            pending: Mutex::new(HashMap::new()),
        }
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    fn api(&self) -> Api<ConfigMap> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// Queues a change to `customer`'s ledger and waits for it to be written. Changes that
    /// arrive while a write is in flight are written together in the next one (one read and one
    /// write for all of them), so a burst of admissions for one customer costs two round trips,
    /// not one per admission. The writer runs on its own task: a caller that gives up (its
    /// admission request timed out) never leaves the others waiting.
    async fn submit(&self, customer: &str, change: Change) -> Result<(), LedgerError> {
        let (done, outcome) = tokio::sync::oneshot::channel();
        let queue = self
            .pending
            .lock()
            .expect("ledger queues")
            .entry(customer.to_string())
            .or_default()
            .clone();
        let start = {
            let mut q = queue.lock().expect("ledger queue");
            q.changes.push((change, done));
            !std::mem::replace(&mut q.writing, true)
        };
        if start {
            let (api, namespace) = (self.api(), self.namespace.clone());
            let (name, customer) = (ledger_name(customer), customer.to_string());
            tokio::spawn(async move {
                loop {
                    let (batch, mut last) = {
                        let mut q = queue.lock().expect("ledger queue");
                        if q.changes.is_empty() {
                            q.writing = false;
                            return;
                        }
                        (std::mem::take(&mut q.changes), q.last.take())
                    };
                    let (changes, senders): (Vec<Change>, Vec<_>) = batch.into_iter().unzip();
                    let outcomes =
                        write_batch(&api, &namespace, &name, &customer, &changes, &mut last).await;
                    queue.lock().expect("ledger queue").last = last;
                    for (done, outcome) in senders.into_iter().zip(outcomes) {
                        let _ = done.send(outcome);
                    }
                }
            });
        }
        outcome
            .await
            .unwrap_or_else(|_| Err(LedgerError::Contended(customer.to_string())))
    }

    /// Reserves `project`'s allocation in its customer's ledger, or says why it does not fit.
    /// `existing` are the customer's projects known to the caches (used to seed a new ledger).
    pub async fn reserve(
        &self,
        customer: &Customer,
        project: &Project,
        existing: &[Arc<Project>],
        now: Timestamp,
        dry_run: bool,
    ) -> Result<(), LedgerError> {
        if customer.spec.quota.is_none() {
            return Ok(());
        }
        let seed = existing
            .iter()
            .map(|p| {
                (
                    p.name_any(),
                    Reservation {
                        hard: allocation(p),
                        at: now,
                    },
                )
            })
            .collect();
        let change = Change {
            project: project.name_any(),
            entry: Some(Reservation {
                hard: allocation(project),
                at: now,
            }),
            customer: Some(Arc::new(customer.clone())),
            seed,
            dry_run,
            only_if: None,
        };
        self.submit(&customer.name_any(), change).await
    }

    /// Removes a project's reservation (soft delete, move, or a leak).
    pub async fn release(&self, customer: &str, project: &str) -> Result<(), LedgerError> {
        let change = Change {
            project: project.to_string(),
            entry: None,
            customer: None,
            seed: Entries::new(),
            dry_run: false,
            only_if: None,
        };
        self.submit(customer, change).await
    }

    /// Sets a project's reservation to what the stored project holds (`None`: removes it),
    /// without a fit check, if the entry is still the one reserved at `reserved_at` (`None`: if
    /// there is none): used by the reconciler to repair a ledger that drifted.
    pub async fn correct(
        &self,
        customer: &str,
        project: &str,
        hard: Option<BTreeMap<String, String>>,
        now: Timestamp,
        reserved_at: Option<Timestamp>,
    ) -> Result<(), LedgerError> {
        let change = Change {
            project: project.to_string(),
            entry: hard.map(|hard| Reservation { hard, at: now }),
            customer: None,
            seed: Entries::new(),
            dry_run: false,
            only_if: Some(reserved_at),
        };
        self.submit(customer, change).await
    }

    /// A ledger's entries as they are now.
    pub async fn entries(&self, customer: &str) -> Result<Option<Entries>, LedgerError> {
        Ok(self
            .api()
            .get_opt(&ledger_name(customer))
            .await?
            .as_ref()
            .map(decode))
    }
}

/// Writes one batch: plans on the ledger as this writer last stored it (`last`) or else as read
/// now, and writes with that resourceVersion; on a write conflict (another replica, or the
/// reconciler, wrote meanwhile) the whole batch is planned again on a fresh read. An answer
/// that writes nothing (a refusal, a dry run) always rests on a fresh read: only a write proves
/// that what it was planned on was current. `last` is left as the ledger stored, if known.
async fn write_batch(
    api: &Api<ConfigMap>,
    namespace: &str,
    name: &str,
    customer: &str,
    changes: &[Change],
    last: &mut Option<ConfigMap>,
) -> Vec<Result<(), LedgerError>> {
    let failed = |e: &kube::Error| -> Vec<Result<(), LedgerError>> {
        changes
            .iter()
            .map(|_| Err(LedgerError::Kube(e.to_string())))
            .collect()
    };
    for _ in 0..50 {
        let (current, fresh) = match last.take() {
            Some(cm) => (Some(cm), false),
            None => match api.get_opt(name).await {
                Ok(current) => (current, true),
                Err(e) => return failed(&e),
            },
        };
        let plan = plan(current.as_ref(), changes);
        let outcomes = plan
            .outcomes
            .into_iter()
            .map(|o| o.map_err(LedgerError::Exhausted));
        let Some((entries, owner)) = plan.write else {
            if !fresh {
                continue;
            }
            *last = current;
            return outcomes.collect();
        };
        let result = match current {
            Some(mut cm) => {
                cm.data = Some(encode(&entries));
                if owner.is_some() {
                    cm.metadata.owner_references = owner.map(|o| vec![o]);
                }
                api.replace(name, &PostParams::default(), &cm).await
            }
            None => {
                let cm = ConfigMap {
                    metadata: ObjectMeta {
                        name: Some(name.to_string()),
                        namespace: Some(namespace.to_string()),
                        labels: Some(BTreeMap::from([
                            (
                                labels::MANAGED_BY.to_string(),
                                labels::MANAGED_BY_VALUE.to_string(),
                            ),
                            (labels::CUSTOMER.to_string(), customer.to_string()),
                            (labels::PART.to_string(), "ledger".to_string()),
                        ])),
                        owner_references: owner.map(|o| vec![o]),
                        ..Default::default()
                    },
                    data: Some(encode(&entries)),
                    ..Default::default()
                };
                api.create(&PostParams::default(), &cm).await
            }
        };
        match result {
            Ok(stored) => {
                crate::fault::point("ledger/written");
                *last = Some(stored);
                return outcomes.collect();
            }
            // Another writer was first; or the ledger remembered is gone (its customer was
            // deleted and made again): plan again on what is stored now.
            Err(kube::Error::Api(e)) if e.code == 409 || (e.code == 404 && !fresh) => continue,
            // What was refused stays refused, a dry run needed no write; the rest failed.
            Err(e) => {
                return outcomes
                    .zip(changes)
                    .map(|(o, c)| {
                        if c.dry_run {
                            o
                        } else {
                            o.and(Err(LedgerError::Kube(e.to_string())))
                        }
                    })
                    .collect();
            }
        }
    }
    changes
        .iter()
        .map(|_| Err(LedgerError::Contended(customer.to_string())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::CustomerSpec;

    fn customer(quota: serde_json::Value) -> Customer {
        Customer::new(
            "acme",
            serde_json::from_value::<CustomerSpec>(serde_json::json!({"quota": quota})).unwrap(),
        )
    }

    fn res(cpu: &str) -> Reservation {
        Reservation {
            hard: BTreeMap::from([("requests.cpu".to_string(), cpu.to_string())]),
            at: "2027-01-01T00:00:00Z".parse().unwrap(),
        }
    }

    fn want(cpu: &str) -> BTreeMap<String, String> {
        BTreeMap::from([("requests.cpu".to_string(), cpu.to_string())])
    }

    fn reserve(c: &Arc<Customer>, project: &str, cpu: &str, dry_run: bool) -> Change {
        Change {
            project: project.into(),
            entry: Some(res(cpu)),
            customer: Some(c.clone()),
            seed: Entries::new(),
            dry_run,
            only_if: None,
        }
    }

    fn ledger(entries: &Entries, owner_uid: Option<&str>) -> ConfigMap {
        let mut cm = ConfigMap {
            data: Some(encode(entries)),
            ..Default::default()
        };
        cm.metadata.owner_references = owner_uid.map(|uid| {
            vec![OwnerReference {
                api_version: "tenancy.dev/v1alpha1".into(),
                kind: "Customer".into(),
                name: "acme".into(),
                uid: uid.into(),
                controller: Some(true),
                block_owner_deletion: None,
            }]
        });
        cm
    }

    fn acme(uid: &str) -> Arc<Customer> {
        let mut c = customer(serde_json::json!({"hard": {"requests.cpu": "2"}}));
        c.metadata.uid = Some(uid.into());
        Arc::new(c)
    }

    #[test]
    fn a_batch_is_checked_in_order_and_written_once() {
        let c = acme("u1");
        let existing = ledger(&Entries::new(), Some("u1"));
        let batch = [
            reserve(&c, "a", "1", false),
            reserve(&c, "dry", "1", true),
            reserve(&c, "b", "1", false),
            reserve(&c, "c", "1", false),
        ];
        let plan = plan(Some(&existing), &batch);
        assert!(plan.outcomes[0].is_ok());
        // A dry run sees what is reserved before it, and reserves nothing itself.
        assert!(plan.outcomes[1].is_ok());
        assert!(plan.outcomes[2].is_ok());
        let refused = plan.outcomes[3].as_ref().unwrap_err();
        assert!(refused.contains("asks 1, 0 of 2 left"), "{refused}");
        let (entries, owner) = plan.write.expect("a and b are written");
        assert_eq!(entries.keys().collect::<Vec<_>>(), ["a", "b"]);
        assert!(owner.is_none(), "already owned: {owner:?}");

        // Only dry runs and refusals: nothing to write.
        let full = ledger(&entries, Some("u1"));
        let plan = super::plan(
            Some(&full),
            &[reserve(&c, "d", "1", false), reserve(&c, "e", "1", true)],
        );
        assert!(plan.outcomes.iter().all(|o| o.is_err()));
        assert!(plan.write.is_none());
        // A release where there is no ledger writes none.
        let nothing = Change {
            project: "a".into(),
            entry: None,
            customer: None,
            seed: Entries::new(),
            dry_run: false,
            only_if: None,
        };
        let plan_none = super::plan(None, std::slice::from_ref(&nothing));
        assert!(plan_none.outcomes[0].is_ok() && plan_none.write.is_none());
        // A release makes room for what comes after it in the same batch.
        let release = Change {
            project: "a".into(),
            entry: None,
            customer: None,
            seed: Entries::new(),
            dry_run: false,
            only_if: None,
        };
        let plan = super::plan(Some(&full), &[release, reserve(&c, "d", "1", false)]);
        assert!(plan.outcomes.iter().all(|o| o.is_ok()));
        let (entries, _) = plan.write.unwrap();
        assert_eq!(entries.keys().collect::<Vec<_>>(), ["b", "d"]);
    }

    #[test]
    fn the_ledger_is_repaired_to_what_stored_projects_hold_once_admissions_settle() {
        let now: Timestamp = "2027-01-01T00:10:00Z".parse().unwrap();
        let at = |s: &str| -> Timestamp { s.parse().unwrap() };
        let entry = |cpu: &str, when: &str| Reservation {
            hard: BTreeMap::from([("requests.cpu".to_string(), cpu.to_string())]),
            at: at(when),
        };
        let entries = Entries::from([
            ("same".into(), entry("1", "2027-01-01T00:00:00Z")),
            (
                "grown-never-stored".into(),
                entry("4", "2027-01-01T00:00:00Z"),
            ),
            ("lost-create".into(), entry("1", "2027-01-01T00:00:00Z")),
            ("in-flight".into(), entry("2", "2027-01-01T00:09:50Z")),
        ]);
        let stored = BTreeMap::from([
            ("same".to_string(), entries["same"].hard.clone()),
            (
                "grown-never-stored".to_string(),
                entries["same"].hard.clone(),
            ),
            ("in-flight".to_string(), entries["same"].hard.clone()),
            ("missing".to_string(), entries["same"].hard.clone()),
        ]);
        let (fixes, next) = repairs(&entries, &stored, now);
        let got: Vec<(&str, Option<&str>, bool)> = fixes
            .iter()
            .map(|c| {
                (
                    c.project.as_str(),
                    c.hard.as_ref().map(|h| h["requests.cpu"].as_str()),
                    c.reserved_at.is_some(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("grown-never-stored", Some("1"), true),
                ("lost-create", None, true),
                ("missing", Some("1"), false),
            ]
        );
        assert_eq!(
            next,
            Some(at("2027-01-01T00:10:20Z")),
            "the in-flight entry settles then"
        );
    }

    #[test]
    fn an_admission_never_lowers_a_reservation() {
        let c = acme("u1");
        let current = ledger(&Entries::from([("a".into(), res("1500m"))]), Some("u1"));
        // A shrink reserves nothing new: the reconciler lowers it once the project is stored.
        let plan = plan(Some(&current), &[reserve(&c, "a", "500m", false)]);
        assert!(plan.outcomes[0].is_ok());
        assert!(plan.write.is_none(), "{:?}", plan.write);
        // A growth of one key keeps the others at their larger value.
        let mut grow = reserve(&c, "a", "2", false);
        grow.entry.as_mut().unwrap().hard = BTreeMap::from([
            ("requests.cpu".to_string(), "1".to_string()),
            ("pods".to_string(), "3".to_string()),
        ]);
        let plan = super::plan(Some(&current), &[grow]);
        let (entries, _) = plan.write.unwrap();
        assert_eq!(
            entries["a"].hard,
            BTreeMap::from([
                ("pods".to_string(), "3".to_string()),
                ("requests.cpu".to_string(), "1500m".to_string()),
            ])
        );
    }

    #[test]
    fn equivalent_names_and_negative_amounts_do_not_get_around_the_quota() {
        let c = customer(serde_json::json!({"hard": {"cpu": "10"}}));
        let entries = Entries::from([("a".into(), res("8"))]);
        let err = fits(
            &c,
            &entries,
            "b",
            &BTreeMap::from([("cpu".into(), "4".into())]),
        )
        .unwrap_err();
        assert!(err.contains("asks 4, 2 of 10 left"), "{err}");
        let credit = Entries::from([("a".into(), res("8")), ("neg".into(), res("-8"))]);
        assert!(
            fits(&c, &credit, "b", &want("4")).is_err(),
            "a negative amount is no credit"
        );
    }

    #[test]
    fn a_ledger_is_made_from_the_seed_and_owned_by_its_customer() {
        let c = acme("u2");
        let mut first = reserve(&c, "a", "1", false);
        first.seed = Entries::from([("a".into(), res("1")), ("old".into(), res("1"))]);
        // No ledger yet: seeded, written even though the seed holds the change, owned.
        let plan = plan(None, std::slice::from_ref(&first));
        assert!(plan.outcomes[0].is_ok());
        let (entries, owner) = plan.write.unwrap();
        assert_eq!(entries.keys().collect::<Vec<_>>(), ["a", "old"]);
        assert_eq!(owner.map(|o| o.uid), Some("u2".to_string()));

        // The ledger of an earlier customer of the same name: started afresh, owner replaced.
        let stale = ledger(&Entries::from([("x".into(), res("2"))]), Some("u-old"));
        let plan = super::plan(Some(&stale), std::slice::from_ref(&first));
        assert!(plan.outcomes[0].is_ok(), "{:?}", plan.outcomes);
        let (entries, owner) = plan.write.unwrap();
        assert_eq!(entries.keys().collect::<Vec<_>>(), ["a", "old"]);
        assert_eq!(owner.map(|o| o.uid), Some("u2".to_string()));

        // A ledger owned by nobody is adopted as it is.
        let unowned = ledger(&Entries::from([("a".into(), res("1"))]), None);
        let plan = super::plan(Some(&unowned), std::slice::from_ref(&first));
        let (entries, owner) = plan.write.expect("adopting is a write");
        assert_eq!(entries.keys().collect::<Vec<_>>(), ["a"]);
        assert_eq!(owner.map(|o| o.uid), Some("u2".to_string()));
    }

    #[test]
    fn a_project_fits_while_the_sum_stays_within_the_customer_quota() {
        let c = customer(serde_json::json!({"hard": {"requests.cpu": "10"}}));
        let entries = Entries::from([("a".into(), res("4")), ("b".into(), res("4"))]);
        assert!(fits(&c, &entries, "c", &want("2")).is_ok());
        let err = fits(&c, &entries, "c", &want("2500m")).unwrap_err();
        assert!(
            err.contains("requests.cpu: asks 2500m, 2 of 10 left"),
            "{err}"
        );
    }

    #[test]
    fn a_project_resizing_itself_does_not_count_twice() {
        let c = customer(serde_json::json!({"hard": {"requests.cpu": "10"}}));
        let entries = Entries::from([("a".into(), res("8"))]);
        assert!(fits(&c, &entries, "a", &want("10")).is_ok());
    }

    #[test]
    fn the_project_count_is_limited_too() {
        let c = customer(serde_json::json!({"projects": 2}));
        let entries = Entries::from([("a".into(), res("1")), ("b".into(), res("1"))]);
        assert!(
            fits(&c, &entries, "c", &want("1"))
                .unwrap_err()
                .contains("all 2 of its projects")
        );
        assert!(fits(&c, &entries, "b", &want("1")).is_ok());
    }

    #[test]
    fn a_customer_without_quota_holds_anything() {
        let c = Customer::new("free", CustomerSpec::default());
        assert!(fits(&c, &Entries::new(), "a", &want("1000")).is_ok());
    }
}

#[cfg(test)]
mod proptests;
