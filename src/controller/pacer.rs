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

/// When each object's status was last written by this operator.
#[derive(Default, Debug)]
pub struct Pacer {
    last: Mutex<HashMap<String, Instant>>,
}

impl Pacer {
    /// How much longer a figures-only write of `key`'s status waits at `now` (`None`: write it).
    pub fn wait(&self, key: &str, now: Instant) -> Option<Duration> {
        let last = self.last.lock().expect("pacer lock");
        let since = now.saturating_duration_since(*last.get(key)?);
        STATUS_PACE.checked_sub(since).filter(|d| !d.is_zero())
    }

    /// `key`'s status was written at `now`.
    pub fn wrote(&self, key: String, now: Instant) {
        let mut last = self.last.lock().expect("pacer lock");
        last.insert(key, now);
        if last.len() > PRUNE_ABOVE {
            last.retain(|_, t| now.saturating_duration_since(*t) < STATUS_PACE);
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
        let last = pacer.last.lock().unwrap();
        assert_eq!(last.len(), 1, "only the recent write is kept");
        assert!(last.contains_key("new"));
    }
}
