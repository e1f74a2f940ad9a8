//! Status writes that only refresh figures (member counts, quota usage, resource counts, cost)
//! wait until the object's last status write is [`STATUS_PACE`] old: the burst of changes a new
//! project sees (its members joining one by one, the quota's first usage) becomes one write
//! instead of one each. Anything else a status says (phase, conditions, records) is written at
//! once. The wait is measured on the operator's own monotonic clock, never on the (movable)
//! clock the lifecycle runs on.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long after an object's last status write a figures-only change waits.
pub const STATUS_PACE: Duration = Duration::from_secs(2);

/// Past this many remembered writes, those older than [`STATUS_PACE`] are forgotten.
const PRUNE_ABOVE: usize = 1024;
/// Past [`PRUNE_ABOVE`] objects waiting for their first status write, those first seen longer
/// ago than this are forgotten (an object deleted before its first status).
const FIRST_KEPT: Duration = Duration::from_secs(60);

/// When each object's status was last written by this operator, and when the objects not yet
/// written were first seen.
#[derive(Default, Debug)]
pub struct Pacer {
    inner: Mutex<Inner>,
}

#[derive(Default, Debug)]
struct Inner {
    last: HashMap<String, Instant>,
    first: HashMap<String, Instant>,
}

fn remaining(since: Instant, now: Instant) -> Option<Duration> {
    STATUS_PACE
        .checked_sub(now.saturating_duration_since(since))
        .filter(|d| !d.is_zero())
}

impl Pacer {
    /// How much longer a figures-only write of `key`'s status waits at `now` (`None`: write it).
    pub fn wait(&self, key: &str, now: Instant) -> Option<Duration> {
        let inner = self.inner.lock().expect("pacer lock");
        remaining(*inner.last.get(key)?, now)
    }

    /// How much longer `key`'s first status (one that may wait) waits at `now`, counted from
    /// the first time this was asked (`None`: write it).
    pub fn first_wait(&self, key: &str, now: Instant) -> Option<Duration> {
        let mut inner = self.inner.lock().expect("pacer lock");
        let seen = *inner.first.entry(key.to_string()).or_insert(now);
        if inner.first.len() > PRUNE_ABOVE {
            inner
                .first
                .retain(|_, t| now.saturating_duration_since(*t) < FIRST_KEPT);
        }
        remaining(seen, now)
    }

    /// `key`'s status was written at `now`.
    pub fn wrote(&self, key: String, now: Instant) {
        let mut inner = self.inner.lock().expect("pacer lock");
        inner.first.remove(&key);
        inner.last.insert(key, now);
        if inner.last.len() > PRUNE_ABOVE {
            inner
                .last
                .retain(|_, t| now.saturating_duration_since(*t) < STATUS_PACE);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_figures_only_write_waits_for_the_pace_since_the_last_write() {
        let pacer = Pacer::default();
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        assert_eq!(pacer.wait("p", t0), None, "never written: at once");
        pacer.wrote("p".into(), t0);
        for (at, expected) in [
            (0, Some(2000)),
            (500, Some(1500)),
            (1999, Some(1)),
            (2000, None),
            (9000, None),
        ] {
            assert_eq!(
                pacer.wait("p", ms(at)).map(|d| d.as_millis() as u64),
                expected,
                "{at} ms after the write"
            );
        }
        assert_eq!(pacer.wait("q", ms(10)), None, "objects are paced apart");
    }

    #[test]
    fn old_writes_are_forgotten_once_many_are_remembered() {
        let pacer = Pacer::default();
        let t0 = Instant::now();
        for i in 0..PRUNE_ABOVE {
            pacer.wrote(format!("old-{i}"), t0);
        }
        let later = t0 + STATUS_PACE;
        pacer.wrote("new".into(), later);
        let inner = pacer.inner.lock().unwrap();
        assert_eq!(inner.last.len(), 1, "only the recent write is kept");
        assert!(inner.last.contains_key("new"));
    }

    #[test]
    fn a_first_status_waits_the_pace_from_when_it_was_first_asked_for() {
        let pacer = Pacer::default();
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        for (at, expected) in [(0, Some(2000)), (1500, Some(500)), (2000, None)] {
            assert_eq!(
                pacer.first_wait("p", ms(at)).map(|d| d.as_millis() as u64),
                expected,
                "{at} ms after it was first asked for"
            );
        }
        // Written: a later first status (a project of the same name made again) waits anew, and
        // figures wait from the write.
        pacer.wrote("p".into(), ms(2100));
        assert_eq!(pacer.wait("p", ms(2600)), Some(Duration::from_millis(1500)));
        assert_eq!(
            pacer.first_wait("p", ms(5000)),
            Some(Duration::from_millis(2000))
        );
        // Many writes in a burst do not make a first status wait again.
        for i in 0..=PRUNE_ABOVE {
            pacer.wrote(format!("other-{i}"), ms(6000));
        }
        assert_eq!(pacer.first_wait("p", ms(7000)), None);
    }
}
