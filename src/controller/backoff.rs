//! Exponential backoff for objects whose reconcile keeps failing, reset by a success.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use kube::Resource;

/// Consecutive failures per object of a controller.
#[derive(Default, Debug)]
pub struct Backoff {
    failures: Mutex<HashMap<String, u32>>,
}

/// The one key an object's failures are counted under: `<controller>/<namespace>/<name>` (no
/// namespace for cluster-scoped objects). A failure and the success after it name the object
/// the same way, whoever reports them.
pub fn key<K: Resource>(controller: &str, obj: &K) -> String {
    let meta = obj.meta();
    format!(
        "{controller}/{}",
        super::queue::queue_key(
            meta.namespace.as_deref(),
            meta.name.as_deref().unwrap_or_default()
        )
    )
}

impl Backoff {
    /// Records a failure and says how long to wait before the next try: 1 s, 2 s, 4 s ... 5 min.
    pub fn failed(&self, key: String) -> Duration {
        let mut failures = self.failures.lock().expect("failures lock");
        let n = failures.entry(key).or_insert(0);
        *n = n.saturating_add(1);
        Duration::from_millis(500u64.saturating_mul(1 << (*n).min(10)))
            .min(Duration::from_secs(300))
    }

    /// A success: the next failure waits 1 s again.
    pub fn succeeded(&self, key: &str) {
        let mut failures = self.failures.lock().expect("failures lock");
        if !failures.is_empty() {
            failures.remove(key);
        }
    }

    /// How many objects are failing now.
    pub fn failing(&self) -> usize {
        self.failures.lock().expect("failures lock").len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{Project, ProjectMembership};

    #[test]
    fn a_success_after_failures_resets_the_delay_and_forgets_the_object() {
        let backoff = Backoff::default();
        let project: Project =
            serde_json::from_value(serde_json::json!({"apiVersion": "tenancy.dev/v1alpha1", "kind": "Project", "metadata": {"name": "web"}, "spec": {"customer": "acme"}})).unwrap();
        let k = key("project", &project);
        assert_eq!(k, "project//web");
        let delays: Vec<u64> = (0..4)
            .map(|_| backoff.failed(k.clone()).as_millis() as u64)
            .collect();
        assert_eq!(delays, [1000, 2000, 4000, 8000]);
        backoff.succeeded(&key("project", &project));
        assert_eq!(backoff.failing(), 0, "the failures map is emptied");
        assert_eq!(backoff.failed(k).as_millis(), 1000, "the delay starts over");
    }

    #[test]
    fn the_delay_stops_growing_at_five_minutes_and_objects_are_counted_apart() {
        let backoff = Backoff::default();
        let mut m: ProjectMembership = serde_json::from_value(serde_json::json!({"apiVersion": "tenancy.dev/v1alpha1", "kind": "ProjectMembership", "metadata": {"name": "a", "namespace": "web"}, "spec": {"subject": {"kind": "User", "name": "u"}, "role": "Member"}})).unwrap();
        let a = key("membership", &m);
        assert_eq!(a, "membership/web/a");
        for _ in 0..20 {
            backoff.failed(a.clone());
        }
        assert_eq!(backoff.failed(a).as_secs(), 300);
        m.metadata.name = Some("b".into());
        assert_eq!(backoff.failed(key("membership", &m)).as_millis(), 1000);
    }
}
