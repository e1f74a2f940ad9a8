//! What each namespace holds, kept in memory from cluster-wide watches: counts of the counted
//! kinds, and the cpu, memory and storage requested. A change in a namespace triggers a
//! reconcile of its project only.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::channel::mpsc::UnboundedSender;
use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{Api, DynamicObject};
use kube::core::{ApiResource, PartialObjectMeta};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};

use crate::desired::quantity::Milli;

/// The default counted kinds, as `resource.group` (core resources without a group).
pub const DEFAULT_COUNTED_KINDS: &[&str] = &[
    "pods",
    "deployments.apps",
    "statefulsets.apps",
    "daemonsets.apps",
    "jobs.batch",
    "cronjobs.batch",
    "services",
    "persistentvolumeclaims",
    "ingresses.networking.k8s.io",
];

/// What one object contributes to its namespace.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Footprint {
    pub cpu: Milli,
    pub memory: Milli,
    pub storage: Milli,
}

pub use crate::desired::NamespaceContents;

type ByName = HashMap<String, Footprint>;

/// Objects by kind, namespace and name.
#[derive(Default)]
pub struct Inventory {
    kinds: Mutex<HashMap<String, HashMap<String, ByName>>>,
    synced: Mutex<HashMap<String, bool>>,
}

impl Inventory {
    /// The contents of one namespace.
    pub fn contents(&self, namespace: &str) -> NamespaceContents {
        let kinds = self.kinds.lock().expect("inventory lock");
        let mut out = NamespaceContents::default();
        for (kind, namespaces) in kinds.iter() {
            let Some(objects) = namespaces.get(namespace) else {
                continue;
            };
            if objects.is_empty() {
                continue;
            }
            out.counts.insert(kind.clone(), objects.len() as i64);
            for f in objects.values() {
                out.cpu += f.cpu;
                out.memory += f.memory;
                out.storage += f.storage;
            }
        }
        out
    }

    /// Whether these kinds have been listed once (a kind not counted is, trivially).
    pub fn kinds_synced(&self, kinds: &[&str]) -> bool {
        let synced = self.synced.lock().expect("inventory lock");
        kinds
            .iter()
            .all(|k| synced.get(*k).copied().unwrap_or(true))
    }

    /// Whether every counted kind has been listed once.
    pub fn synced(&self) -> bool {
        self.synced
            .lock()
            .expect("inventory lock")
            .values()
            .all(|s| *s)
    }

    fn register(&self, kind: &str) {
        self.synced
            .lock()
            .expect("inventory lock")
            .insert(kind.to_string(), false);
    }

    /// Records an object; returns whether its namespace changed.
    fn upsert(&self, kind: &str, namespace: &str, name: &str, footprint: Footprint) -> bool {
        let mut kinds = self.kinds.lock().expect("inventory lock");
        let objects = kinds
            .entry(kind.to_string())
            .or_default()
            .entry(namespace.to_string())
            .or_default();
        objects.insert(name.to_string(), footprint) != Some(footprint)
    }

    fn delete(&self, kind: &str, namespace: &str, name: &str) -> bool {
        let mut kinds = self.kinds.lock().expect("inventory lock");
        kinds
            .get_mut(kind)
            .and_then(|n| n.get_mut(namespace))
            .is_some_and(|o| o.remove(name).is_some())
    }

    /// Replaces everything known of a kind after a (re)list; returns the namespaces that changed.
    fn replace(&self, kind: &str, fresh: HashMap<String, ByName>) -> Vec<String> {
        let mut kinds = self.kinds.lock().expect("inventory lock");
        let old = kinds.insert(kind.to_string(), fresh).unwrap_or_default();
        let new = &kinds[kind];
        let mut changed: Vec<String> = old
            .iter()
            .filter(|(ns, objs)| new.get(*ns) != Some(*objs))
            .map(|(ns, _)| ns.clone())
            .collect();
        changed.extend(
            new.iter()
                .filter(|(ns, objs)| !objs.is_empty() && old.get(*ns) != Some(*objs))
                .map(|(ns, _)| ns.clone()),
        );
        changed.sort();
        changed.dedup();
        self.synced
            .lock()
            .expect("inventory lock")
            .insert(kind.to_string(), true);
        changed
    }
}

fn sum_requests<'a>(
    requests: impl Iterator<
        Item = Option<
            &'a BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
        >,
    >,
    key: &str,
) -> Milli {
    requests
        .flatten()
        .filter_map(|r| r.get(key))
        .filter_map(|q| Milli::parse(&q.0).ok())
        .sum()
}

/// cpu and memory a pod requests (its containers; init containers run before and are left out).
pub fn pod_footprint(pod: &Pod) -> Footprint {
    let containers = pod
        .spec
        .as_ref()
        .map(|s| s.containers.as_slice())
        .unwrap_or_default();
    let requests = || {
        containers
            .iter()
            .map(|c| c.resources.as_ref().and_then(|r| r.requests.as_ref()))
    };
    Footprint {
        cpu: sum_requests(requests(), "cpu"),
        memory: sum_requests(requests(), "memory"),
        ..Default::default()
    }
}

/// Storage a claim requests.
pub fn pvc_footprint(pvc: &PersistentVolumeClaim) -> Footprint {
    let requests = pvc
        .spec
        .as_ref()
        .and_then(|s| s.resources.as_ref())
        .and_then(|r| r.requests.as_ref());
    Footprint {
        storage: sum_requests(std::iter::once(requests), "storage"),
        ..Default::default()
    }
}

/// Feeds one kind's watch events into the inventory, sending the namespaces that changed.
async fn follow<T, S>(
    inventory: Arc<Inventory>,
    kind: String,
    events: S,
    footprint: fn(&T) -> Footprint,
    changed: UnboundedSender<String>,
) where
    T: ResourceExt,
    S: Stream<Item = Result<watcher::Event<T>, watcher::Error>>,
{
    let mut events = std::pin::pin!(events);
    let mut relist: Option<HashMap<String, ByName>> = None;
    while let Some(event) = events.next().await {
        let event = match event {
            Ok(e) => e,
            Err(e) => {
                super::log_watch_error(&kind, &e);
                continue;
            }
        };
        match event {
            watcher::Event::Init => relist = Some(HashMap::new()),
            watcher::Event::InitApply(obj) => {
                if let (Some(buf), Some(ns)) = (relist.as_mut(), obj.namespace()) {
                    buf.entry(ns)
                        .or_default()
                        .insert(obj.name_any(), footprint(&obj));
                }
            }
            watcher::Event::InitDone => {
                for ns in inventory.replace(&kind, relist.take().unwrap_or_default()) {
                    let _ = changed.unbounded_send(ns);
                }
            }
            watcher::Event::Apply(obj) => {
                if let Some(ns) = obj.namespace()
                    && inventory.upsert(&kind, &ns, &obj.name_any(), footprint(&obj))
                {
                    let _ = changed.unbounded_send(ns);
                }
            }
            watcher::Event::Delete(obj) => {
                if let Some(ns) = obj.namespace()
                    && inventory.delete(&kind, &ns, &obj.name_any())
                {
                    let _ = changed.unbounded_send(ns);
                }
            }
        }
    }
}

/// Finds the served version of `resource.group` through discovery.
async fn resolve(client: &Client, kind: &str) -> Option<ApiResource> {
    let (resource, group) = kind.split_once('.').unwrap_or((kind, ""));
    let discovery = kube::discovery::Discovery::new(client.clone())
        .filter(&[group])
        .run()
        .await
        .ok()?;
    discovery
        .groups()
        .filter(|g| g.name() == group)
        .flat_map(|g| g.recommended_resources())
        .map(|(ar, _)| ar)
        .find(|ar| ar.plural == resource)
}

/// Starts a watch for every counted kind. A kind that is not served yet (a CRD installed later)
/// is looked up again every 30 seconds.
pub fn start(
    client: Client,
    inventory: Arc<Inventory>,
    kinds: &[String],
    changed: UnboundedSender<String>,
) {
    for kind in kinds {
        inventory.register(kind);
        let (client, inventory, changed, kind) = (
            client.clone(),
            inventory.clone(),
            changed.clone(),
            kind.clone(),
        );
        tokio::spawn(async move {
            let cfg = watcher::Config::default().any_semantic();
            match kind.as_str() {
                "pods" => {
                    // A pod that has finished no longer counts: the field selector makes the
                    // watch report it as deleted.
                    let cfg = cfg.fields("status.phase!=Succeeded,status.phase!=Failed");
                    let events = watcher(Api::<Pod>::all(client), cfg)
                        .backoff(super::WatchBackoff::default());
                    follow(inventory, kind, events, pod_footprint, changed).await
                }
                "persistentvolumeclaims" => {
                    let events = watcher(Api::<PersistentVolumeClaim>::all(client), cfg)
                        .backoff(super::WatchBackoff::default());
                    follow(inventory, kind, events, pvc_footprint, changed).await
                }
                _ => {
                    let ar = loop {
                        match resolve(&client, &kind).await {
                            Some(ar) => break ar,
                            None => {
                                tracing::warn!(
                                    kind,
                                    "counted kind is not served by the cluster; looking again in 30s"
                                );
                                tokio::time::sleep(Duration::from_secs(30)).await;
                            }
                        }
                    };
                    let api = Api::<PartialObjectMeta<DynamicObject>>::all_with(client, &ar);
                    let events = watcher(api, cfg).backoff(super::WatchBackoff::default());
                    follow(
                        inventory,
                        kind,
                        events,
                        |_: &PartialObjectMeta<DynamicObject>| Footprint::default(),
                        changed,
                    )
                    .await
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(cpu: &str) -> Footprint {
        Footprint {
            cpu: Milli::parse(cpu).unwrap(),
            ..Default::default()
        }
    }

    #[test]
    fn contents_sum_counts_and_requests_per_namespace() {
        let inv = Inventory::default();
        assert!(inv.upsert("pods", "web", "a", f("500m")));
        assert!(inv.upsert("pods", "web", "b", f("250m")));
        assert!(
            !inv.upsert("pods", "web", "b", f("250m")),
            "an unchanged object changes nothing"
        );
        assert!(inv.upsert("deployments.apps", "web", "d", Footprint::default()));
        assert!(inv.upsert("pods", "other", "c", f("1")));
        let c = inv.contents("web");
        assert_eq!(
            c.counts,
            BTreeMap::from([("deployments.apps".to_string(), 1), ("pods".to_string(), 2)])
        );
        assert_eq!(c.total(), 3);
        assert_eq!(c.cpu.to_string(), "750m");
        assert!(inv.delete("pods", "web", "a"));
        assert!(!inv.delete("pods", "web", "a"));
        assert_eq!(inv.contents("web").pods(), 1);
    }

    #[test]
    fn a_relist_reports_the_namespaces_whose_contents_changed() {
        let inv = Inventory::default();
        inv.register("pods");
        inv.register("services");
        inv.upsert("pods", "a", "p1", f("1"));
        inv.upsert("pods", "b", "p2", f("1"));
        assert!(!inv.synced());
        let fresh = HashMap::from([
            ("b".to_string(), HashMap::from([("p2".to_string(), f("1"))])),
            ("c".to_string(), HashMap::from([("p3".to_string(), f("1"))])),
        ]);
        assert_eq!(
            inv.replace("pods", fresh),
            vec!["a".to_string(), "c".to_string()]
        );
        assert!(!inv.synced(), "services not listed yet");
        inv.replace("services", HashMap::new());
        assert!(inv.synced());
        assert_eq!(inv.contents("a").total(), 0);
    }

    #[test]
    fn pod_footprint_sums_container_requests() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "web"},
            "spec": {"containers": [
                {"name": "a", "image": "x", "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}},
                {"name": "b", "image": "x", "resources": {"requests": {"cpu": "1"}}},
                {"name": "c", "image": "x"}
            ]}
        }))
        .unwrap();
        let fp = pod_footprint(&pod);
        assert_eq!(fp.cpu.to_string(), "1100m");
        assert_eq!(fp.memory.to_string(), "64Mi");
    }
}
