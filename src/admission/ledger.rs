//! The customer quota ledger: every project's allocation (`spec.quota.hard`) is reserved in one
//! ConfigMap per customer before the project is admitted. Writes carry the resourceVersion they
//! read, so concurrent admissions (on any replica) serialize through the apiserver and the
//! customer's quota is never oversubscribed. Reservations whose project never appeared are
//! removed by the Customer reconciler.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use jiff::Timestamp;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use kube::{Client, ResourceExt};
use serde::{Deserialize, Serialize};

use crate::api::{Customer, Project};
use crate::desired::quantity::Milli;
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
    fn amounts(&self) -> BTreeMap<String, Milli> {
        self.hard
            .iter()
            .filter_map(|(k, v)| Milli::parse(v).ok().map(|m| (k.clone(), m)))
            .collect()
    }
}

/// Reservations by project name.
pub type Entries = BTreeMap<String, Reservation>;

/// Name of a customer's ledger ConfigMap.
pub fn ledger_name(customer: &str) -> String {
    bounded_name(&format!("tenancy-ledger-{customer}"), 253)
}

/// A project's allocation, as it is reserved.
pub fn allocation(project: &Project) -> BTreeMap<String, String> {
    project
        .spec
        .quota
        .as_ref()
        .map(|q| {
            q.hard
                .iter()
                .map(|(k, v)| (k.clone(), v.0.clone()))
                .collect()
        })
        .unwrap_or_default()
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
    for (key, limit) in &quota.hard {
        let Ok(limit) = Milli::parse(&limit.0) else {
            continue;
        };
        let used: Milli = others
            .iter()
            .filter_map(|r| r.amounts().get(key).copied())
            .sum();
        let asked = want
            .get(key)
            .and_then(|v| Milli::parse(v).ok())
            .unwrap_or_default();
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

/// Why a reservation failed.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The customer's quota cannot hold it (409 to the user).
    #[error("{0}")]
    Exhausted(String),
    #[error("quota ledger: {0}")]
    Kube(#[from] kube::Error),
    #[error("quota ledger: too many concurrent changes to customer {0}'s allocation; retry")]
    Contended(String),
}

/// Reads and writes the ledgers.
pub struct Ledger {
    client: Client,
    namespace: String,
    // Serializes admissions for one customer within this replica, so optimistic-concurrency
    // retries happen only across replicas.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
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

/// Whose ledger is changed: a customer known by name, or the Customer itself (then the ledger
/// is owned by it).
enum Of<'a> {
    Name(&'a str),
    Customer(&'a Customer),
}

impl Ledger {
    pub fn new(client: Client, namespace: String) -> Self {
        Ledger {
            client,
            namespace,
            locks: Mutex::new(HashMap::new()),
        }
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    fn api(&self) -> Api<ConfigMap> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    fn lock(&self, customer: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.locks
            .lock()
            .expect("ledger locks")
            .entry(customer.to_string())
            .or_default()
            .clone()
    }

    /// Changes one project's entry (`None` removes it) after `check` accepts the entries as
    /// they are; retries on write conflicts. `seed` fills a ledger that does not exist yet.
    ///
    /// With `owner` (the Customer), the ledger is owned by it, so the cluster's garbage
    /// collector deletes it with the customer. A ledger owned by an earlier customer of the same
    /// name (deleted, its ledger not collected yet) is started afresh from `seed`; one owned by
    /// nobody (written before ledgers had owners) is adopted as it is.
    async fn update(
        &self,
        of: Of<'_>,
        project: &str,
        entry: Option<Reservation>,
        seed: impl Fn() -> Entries,
        check: impl Fn(&Entries) -> Result<(), String>,
        dry_run: bool,
    ) -> Result<(), LedgerError> {
        let (customer, owner) = match of {
            Of::Name(name) => (name.to_string(), None),
            Of::Customer(c) => (c.name_any(), Some(crate::desired::owner_ref(c))),
        };
        let customer = customer.as_str();
        let lock = self.lock(customer);
        let _guard = lock.lock().await;
        let api = self.api();
        let name = ledger_name(customer);
        for _ in 0..50 {
            let current = api.get_opt(&name).await?;
            let owners = |cm: &ConfigMap| cm.metadata.owner_references.clone().unwrap_or_default();
            let earlier = current.as_ref().is_some_and(|cm| {
                owner
                    .as_ref()
                    .is_some_and(|o| owners(cm).iter().any(|r| r.uid != o.uid))
            });
            let adopt = current
                .as_ref()
                .is_some_and(|cm| owner.as_ref().is_some_and(|o| !owners(cm).contains(o)));
            let mut entries = match &current {
                Some(cm) if !earlier => decode(cm),
                _ => seed(),
            };
            check(&entries).map_err(LedgerError::Exhausted)?;
            let unchanged = match &entry {
                Some(e) => entries.get(project).is_some_and(|old| old.hard == e.hard),
                None => !entries.contains_key(project),
            };
            if dry_run || (unchanged && current.is_some() && !adopt) {
                return Ok(());
            }
            match &entry {
                Some(e) => entries.insert(project.to_string(), e.clone()),
                None => entries.remove(project),
            };
            let result = match current {
                Some(mut cm) => {
                    cm.data = Some(encode(&entries));
                    if adopt {
                        cm.metadata.owner_references = owner.clone().map(|o| vec![o]);
                    }
                    api.replace(&name, &PostParams::default(), &cm)
                        .await
                        .map(|_| ())
                }
                None => {
                    let cm = ConfigMap {
                        metadata: ObjectMeta {
                            name: Some(name.clone()),
                            namespace: Some(self.namespace.clone()),
                            labels: Some(BTreeMap::from([
                                (
                                    labels::MANAGED_BY.to_string(),
                                    labels::MANAGED_BY_VALUE.to_string(),
                                ),
                                (labels::CUSTOMER.to_string(), customer.to_string()),
                                (labels::PART.to_string(), "ledger".to_string()),
                            ])),
                            owner_references: owner.clone().map(|o| vec![o]),
                            ..Default::default()
                        },
                        data: Some(encode(&entries)),
                        ..Default::default()
                    };
                    api.create(&PostParams::default(), &cm).await.map(|_| ())
                }
            };
            match result {
                Ok(()) => return Ok(()),
                Err(kube::Error::Api(e)) if e.code == 409 => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(LedgerError::Contended(customer.to_string()))
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
        let name = project.name_any();
        let want = allocation(project);
        let seed = || {
            existing
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
                .collect::<Entries>()
        };
        self.update(
            Of::Customer(customer),
            &name,
            Some(Reservation {
                hard: want.clone(),
                at: now,
            }),
            seed,
            |e| fits(customer, e, &name, &want),
            dry_run,
        )
        .await
    }

    /// Removes a project's reservation (soft delete, move, or a leak).
    pub async fn release(&self, customer: &str, project: &str) -> Result<(), LedgerError> {
        if self.api().get_opt(&ledger_name(customer)).await?.is_none() {
            return Ok(());
        }
        self.update(
            Of::Name(customer),
            project,
            None,
            Entries::new,
            |_| Ok(()),
            false,
        )
        .await
    }

    /// Sets a project's reservation to what its spec asks, without a fit check: used by the
    /// reconciler to repair a ledger that drifted (an admitted change that never persisted).
    pub async fn correct(
        &self,
        customer: &str,
        project: &str,
        hard: BTreeMap<String, String>,
        now: Timestamp,
    ) -> Result<(), LedgerError> {
        self.update(
            Of::Name(customer),
            project,
            Some(Reservation { hard, at: now }),
            Entries::new,
            |_| Ok(()),
            false,
        )
        .await
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
