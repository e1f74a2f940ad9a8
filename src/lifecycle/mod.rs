//! Time: the operator's clock, project dates and grace periods.

pub mod archive;

use std::path::PathBuf;
use std::sync::Arc;

use jiff::civil::Date;
use jiff::{Span, Timestamp, ToSpan};

/// The operator's notion of "now". Production uses the system clock; tests may point it at a
/// file holding an offset in seconds (time moves on from there), or `@` and an RFC 3339 instant
/// (time stands still at it), so they can move time instead of waiting days.
#[derive(Clone, Debug, Default)]
pub struct Clock {
    offset_file: Option<Arc<PathBuf>>,
}

impl Clock {
    pub fn system() -> Self {
        Clock { offset_file: None }
    }

    /// A clock set by the file at `path` (missing or empty file: the system clock).
    pub fn with_offset_file(path: PathBuf) -> Self {
        Clock {
            offset_file: Some(Arc::new(path)),
        }
    }

    pub fn now(&self) -> Timestamp {
        let now = Timestamp::now();
        let setting = self.setting();
        let setting = setting.trim();
        if let Some(at) = setting.strip_prefix('@') {
            return at.trim().parse().unwrap_or(now);
        }
        let offset = setting.parse::<i64>().unwrap_or(0);
        now.checked_add(offset.seconds()).unwrap_or(now)
    }

    /// What the file says (empty for the system clock).
    fn setting(&self) -> String {
        self.offset_file
            .as_ref()
            .and_then(|path| std::fs::read_to_string(path.as_ref()).ok())
            .unwrap_or_default()
    }

    /// Fires each time the clock is moved (the file changes; checked every 100 ms), so that
    /// everything waiting for a time is looked at again at once: a timer armed for an instant
    /// the moved clock has passed fires by time alone. The system clock never jumps.
    pub fn jumps(&self) -> impl futures::Stream<Item = ()> + Send + 'static {
        let clock = self.clone();
        let armed = clock.offset_file.is_some();
        futures::stream::unfold(clock.setting(), move |last| {
            let clock = clock.clone();
            async move {
                if !armed {
                    return std::future::pending().await;
                }
                loop {
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    let now = clock.setting();
                    if now.trim() != last.trim() {
                        return Some(((), now));
                    }
                }
            }
        })
    }
}

/// Parses a `YYYY-MM-DD` date.
pub fn parse_date(s: &str) -> Result<Date, jiff::Error> {
    s.parse()
}

/// The first instant of a date, in UTC.
pub fn start_of(date: Date) -> Timestamp {
    date.to_zoned(jiff::tz::TimeZone::UTC)
        .expect("every date has a UTC midnight")
        .timestamp()
}

/// Where a project stands with respect to its dates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Schedule {
    /// Before startDate.
    NotStarted,
    /// Between startDate and endDate (inclusive), or no dates at all.
    Running,
    /// After endDate, within the grace period.
    InGrace,
    /// After endDate plus the grace period: the expiration policy applies.
    Expired,
}

/// A project's dates resolved to instants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dates {
    /// First instant of startDate.
    pub starts: Option<Timestamp>,
    /// First instant after endDate (endDate is the last day of the project).
    pub ends: Option<Timestamp>,
    /// First instant after endDate plus the grace period.
    pub grace_ends: Option<Timestamp>,
    /// endDate plus the grace period: the last day before the expiration policy runs.
    pub effective_end_date: Option<Date>,
}

impl Dates {
    pub fn resolve(start: Option<Date>, end: Option<Date>, grace_days: i32) -> Dates {
        let grace_days = grace_days.max(0);
        let day_after_end = end.and_then(|d| d.checked_add(1.day()).ok());
        let effective_end_date = end.and_then(|d| d.checked_add(Span::new().days(grace_days)).ok());
        Dates {
            starts: start.map(start_of),
            ends: day_after_end.map(start_of),
            grace_ends: effective_end_date
                .and_then(|d| d.checked_add(1.day()).ok())
                .map(start_of),
            effective_end_date,
        }
    }

    pub fn schedule(&self, now: Timestamp) -> Schedule {
        if self.grace_ends.is_some_and(|t| now >= t) {
            Schedule::Expired
        } else if self.ends.is_some_and(|t| now >= t) {
            Schedule::InGrace
        } else if self.starts.is_some_and(|t| now < t) {
            Schedule::NotStarted
        } else {
            Schedule::Running
        }
    }

    /// The next instant at which the schedule changes, if any: the controller requeues then.
    pub fn next_boundary(&self, now: Timestamp) -> Option<Timestamp> {
        [self.starts, self.ends, self.grace_ends]
            .into_iter()
            .flatten()
            .filter(|t| *t > now)
            .min()
    }
}

/// The earliest of some optional instants strictly after `now`.
pub fn earliest_after(
    now: Timestamp,
    instants: impl IntoIterator<Item = Option<Timestamp>>,
) -> Option<Timestamp> {
    instants.into_iter().flatten().filter(|t| *t > now).min()
}

/// How long from `now` until `at`, for a requeue (never negative).
pub fn until(now: Timestamp, at: Timestamp) -> std::time::Duration {
    let d = at.duration_since(now);
    if d.is_negative() {
        std::time::Duration::ZERO
    } else {
        d.unsigned_abs()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn dates(start: Option<&str>, end: Option<&str>, grace: i32) -> Dates {
        Dates::resolve(
            start.map(|s| parse_date(s).unwrap()),
            end.map(|s| parse_date(s).unwrap()),
            grace,
        )
    }

    #[test]
    fn end_date_is_the_last_day_of_the_project() {
        let d = dates(None, Some("2026-12-31"), 0);
        assert_eq!(d.schedule(ts("2026-12-31T23:59:59Z")), Schedule::Running);
        assert_eq!(
            d.schedule(ts("2027-01-01T00:00:00Z")),
            Schedule::Expired,
            "zero grace counts as no grace"
        );
    }

    #[test]
    fn grace_period_delays_expiry_by_whole_days() {
        let d = dates(None, Some("2026-12-31"), 7);
        assert_eq!(d.schedule(ts("2027-01-01T00:00:00Z")), Schedule::InGrace);
        assert_eq!(d.schedule(ts("2027-01-07T23:59:59Z")), Schedule::InGrace);
        assert_eq!(d.schedule(ts("2027-01-08T00:00:00Z")), Schedule::Expired);
        assert_eq!(d.effective_end_date.unwrap().to_string(), "2027-01-07");
    }

    #[test]
    fn before_start_date_the_project_has_not_started() {
        let d = dates(Some("2027-02-01"), Some("2027-03-01"), 0);
        assert_eq!(d.schedule(ts("2027-01-31T12:00:00Z")), Schedule::NotStarted);
        assert_eq!(d.schedule(ts("2027-02-01T00:00:00Z")), Schedule::Running);
    }

    #[test]
    fn next_boundary_is_the_exact_next_transition() {
        let d = dates(Some("2027-02-01"), Some("2027-03-01"), 2);
        assert_eq!(
            d.next_boundary(ts("2027-01-01T00:00:00Z")),
            Some(ts("2027-02-01T00:00:00Z"))
        );
        assert_eq!(
            d.next_boundary(ts("2027-02-01T00:00:00Z")),
            Some(ts("2027-03-02T00:00:00Z"))
        );
        assert_eq!(
            d.next_boundary(ts("2027-03-02T00:00:00Z")),
            Some(ts("2027-03-04T00:00:00Z"))
        );
        assert_eq!(d.next_boundary(ts("2027-03-04T00:00:00Z")), None);
    }

    #[test]
    fn offset_file_moves_the_clock() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("offset");
        let clock = Clock::with_offset_file(path.clone());
        let before = clock.now();
        std::fs::write(&path, "86400").unwrap();
        let after = clock.now();
        let moved = after.duration_since(before).as_secs();
        assert!((86400..86460).contains(&moved), "moved {moved}s");
        // `@` and an instant: time stands still there.
        std::fs::write(&path, "@2026-12-01T08:00:00Z\n").unwrap();
        let at: Timestamp = "2026-12-01T08:00:00Z".parse().unwrap();
        assert_eq!(clock.now(), at);
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(clock.now(), at);
    }

    #[tokio::test]
    async fn moving_the_clock_wakes_whoever_waits_for_a_time() {
        use futures::StreamExt;
        let path = std::env::temp_dir().join(format!("tenancy-clock-jump-{}", std::process::id()));
        std::fs::write(&path, "0").unwrap();
        let clock = Clock::with_offset_file(path.clone());
        let mut jumps = Box::pin(clock.jumps());
        let quiet = tokio::time::timeout(std::time::Duration::from_millis(300), jumps.next()).await;
        assert!(quiet.is_err(), "no jump while the clock stands still");
        std::fs::write(&path, "3600").unwrap();
        let jumped = tokio::time::timeout(std::time::Duration::from_secs(5), jumps.next()).await;
        assert_eq!(jumped, Ok(Some(())));
        let _ = std::fs::remove_file(&path);
        let mut system = Box::pin(Clock::system().jumps());
        let never =
            tokio::time::timeout(std::time::Duration::from_millis(200), system.next()).await;
        assert!(never.is_err(), "the system clock never jumps");
    }
}
