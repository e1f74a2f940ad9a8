//! Children the operator has just made and its watch caches have not shown yet. A reconcile
//! asked for by the first child of a write (a new project's namespace) used to find the others
//! (its quota, its limits) still missing from their caches and write them again: a create
//! answered 409 and an apply that changes nothing, or an apply. A child made less than
//! [`EXPECTED_FOR`] ago, with the same desired content, is now taken as there until its cache
//! shows it (its arrival asks for its owner's reconcile, which compares it then). Past that, or
//! with other content, it is written as before. Kept on the operator's monotonic clock.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a child made by this operator is taken as there while its cache does not show it.
pub const EXPECTED_FOR: Duration = Duration::from_secs(10);

/// Past this many children remembered, those made longer than [`EXPECTED_FOR`] ago are
/// forgotten on the next one made.
const PRUNE_ABOVE: usize = 256;

/// The children made and not yet seen in their caches, by `kind/namespace/name`.
#[derive(Default, Debug)]
pub struct Expectations {
    inner: Mutex<HashMap<String, Made>>,
}

#[derive(Clone, Debug, PartialEq)]
struct Made {
    /// The uid of the object the child belongs to (its owner reference's), if any.
    owner: Option<String>,
    at: Instant,
    /// A digest of the desired object it was made from.
    digest: u64,
}

/// How the expectations name a child.
pub fn key(kind: &str, namespace: Option<&str>, name: &str) -> String {
    format!("{kind}/{}/{name}", namespace.unwrap_or_default())
}

/// A digest of a desired object (its JSON as serialized).
pub fn digest(desired: &serde_json::Value) -> u64 {
    let mut h = DefaultHasher::new();
    desired.to_string().hash(&mut h);
    h.finish()
}

impl Expectations {
    /// `key` was made from `digest` at `now`.
    pub fn made(&self, key: String, owner: Option<String>, digest: u64, now: Instant) {
        let mut inner = self.inner.lock().expect("expectations lock");
        if inner.len() >= PRUNE_ABOVE {
            inner.retain(|_, m| now.saturating_duration_since(m.at) < EXPECTED_FOR);
        }
        inner.insert(
            key,
            Made {
                owner,
                at: now,
                digest,
            },
        );
    }

    /// Whether `key`, missing from its cache, is taken as made from `digest` at `now`.
    pub fn expected(&self, key: &str, digest: u64, now: Instant) -> bool {
        let inner = self.inner.lock().expect("expectations lock");
        inner.get(key).is_some_and(|m| {
            m.digest == digest && now.saturating_duration_since(m.at) < EXPECTED_FOR
        })
    }

    /// Whether `key`, missing from its cache, was made less than [`EXPECTED_FOR`] before `now`,
    /// from whatever content: it exists, though its cache does not show it yet.
    pub fn made_recently(&self, key: &str, now: Instant) -> bool {
        let inner = self.inner.lock().expect("expectations lock");
        inner
            .get(key)
            .is_some_and(|m| now.saturating_duration_since(m.at) < EXPECTED_FOR)
    }

    /// `key`'s cache shows it: nothing more to expect.
    pub fn seen(&self, key: &str) {
        let mut inner = self.inner.lock().expect("expectations lock");
        inner.remove(key);
    }

    /// How long until the last of the children of the object with uid `owner` still expected at
    /// `now` is no longer taken as there: a reconcile that relied on them comes back then, in
    /// case one never reaches its cache (deleted before the watch saw it, across a relist).
    /// Those its cache showed to a reconcile since are no longer expected.
    pub fn pending(&self, owner: &str, now: Instant) -> Option<Duration> {
        let inner = self.inner.lock().expect("expectations lock");
        inner
            .values()
            .filter(|m| m.owner.as_deref() == Some(owner))
            .filter_map(|m| EXPECTED_FOR.checked_sub(now.saturating_duration_since(m.at)))
            .filter(|d| !d.is_zero())
            .max()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_just_made_is_expected_until_seen_or_too_old_and_only_as_made() {
        let t0 = Instant::now();
        let s = |n: u64| t0 + Duration::from_secs(n);
        let q = key("ResourceQuota", Some("web"), "tenancy-quota");
        let made_from = digest(&serde_json::json!({"spec": {"hard": {"pods": "10"}}}));
        let changed = digest(&serde_json::json!({"spec": {"hard": {"pods": "20"}}}));
        let e = Expectations::default();
        assert!(!e.expected(&q, made_from, t0), "never made");
        e.made(q.clone(), Some("uid-web".into()), made_from, t0);
        let cases = [
            ("just made", &q, made_from, s(0), true),
            ("9 s later", &q, made_from, s(9), true),
            ("10 s later", &q, made_from, s(10), false),
            ("wanted otherwise now", &q, changed, s(1), false),
            (
                "another child",
                &key("LimitRange", Some("web"), "tenancy-quota"),
                made_from,
                s(1),
                false,
            ),
        ];
        for (what, k, d, at, want) in cases {
            assert_eq!(e.expected(k, d, at), want, "{what}");
        }
        // Made at all, whatever it is wanted as now.
        let recently = [
            ("just made", &q, s(0), true),
            ("9 s later", &q, s(9), true),
            ("10 s later", &q, s(10), false),
            (
                "never made",
                &key("LimitRange", Some("web"), "x"),
                s(1),
                false,
            ),
        ];
        for (what, k, at, want) in recently {
            assert_eq!(e.made_recently(k, at), want, "made recently: {what}");
        }
        e.seen(&q);
        assert!(!e.expected(&q, made_from, s(1)), "seen: compared as cached");
        assert!(!e.made_recently(&q, s(1)), "seen: its cache tells");
    }

    #[test]
    fn an_owner_with_children_expected_comes_back_when_the_last_would_be_written_again() {
        let t0 = Instant::now();
        let s = |n: u64| t0 + Duration::from_secs(n);
        let e = Expectations::default();
        e.made(key("Namespace", None, "web"), Some("uid-web".into()), 1, t0);
        e.made(
            key("LimitRange", Some("web"), "l"),
            Some("uid-web".into()),
            2,
            s(3),
        );
        e.made(key("ClusterRole", None, "x"), None, 3, s(4));
        assert_eq!(e.pending("uid-web", s(5)), Some(Duration::from_secs(8)));
        assert_eq!(e.pending("uid-shop", s(5)), None, "nothing of its own");
        e.seen(&key("LimitRange", Some("web"), "l"));
        assert_eq!(e.pending("uid-web", s(5)), Some(Duration::from_secs(5)));
        assert_eq!(e.pending("uid-web", s(10)), None, "too old to rely on");
    }

    #[test]
    fn children_made_long_ago_are_forgotten_on_the_next_made() {
        let t0 = Instant::now();
        let e = Expectations::default();
        for i in 0..PRUNE_ABOVE as u64 {
            e.made(key("Role", Some("a"), &format!("r{i}")), None, i, t0);
        }
        e.made(key("Role", Some("a"), "new"), None, 0, t0 + EXPECTED_FOR);
        assert_eq!(e.inner.lock().unwrap().len(), 1);
    }
}
