//! Times and dates as people type them: a date (`2027-01-31`, 00:00 UTC that day), an RFC 3339
//! time (`2027-01-31T17:00:00Z`) or a duration from now (`30d`, `12h`, `90m`, `2w`, `1d12h`).

use jiff::civil::Date;
use jiff::{SignedDuration, Timestamp, tz::TimeZone};

/// A duration like `30d`, `12h`, `45m`, `2w`, `1d12h` (no sign).
pub fn parse_duration(s: &str) -> Option<SignedDuration> {
    let mut total: i64 = 0;
    let mut number = String::new();
    let mut any = false;
    for c in s.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let n: i64 = number.parse().ok()?;
        number.clear();
        let unit = match c {
            'w' => 7 * 86_400,
            'd' => 86_400,
            'h' => 3_600,
            'm' => 60,
            's' => 1,
            _ => return None,
        };
        total = total.checked_add(n.checked_mul(unit)?)?;
        any = true;
    }
    (any && number.is_empty()).then(|| SignedDuration::from_secs(total))
}

/// The instant T names: a date (its start, UTC), an RFC 3339 time, or a duration from `now`.
pub fn parse_time(flag: &str, s: &str, now: Timestamp) -> Result<Timestamp, String> {
    let s = s.trim();
    if let Ok(t) = s.parse::<Timestamp>() {
        return Ok(t);
    }
    if let Ok(d) = s.parse::<Date>() {
        return d
            .to_zoned(TimeZone::UTC)
            .map(|z| z.timestamp())
            .map_err(|e| format!("{flag} {s}: {e}"));
    }
    if let Some(d) = parse_duration(s) {
        return now.checked_add(d).map_err(|e| format!("{flag} {s}: {e}"));
    }
    Err(format!(
        "{flag} {s:?}: write a date (2027-01-31), an RFC 3339 time (2027-01-31T17:00:00Z) or a duration from now (30d, 12h)"
    ))
}

/// An instant in the past: a date, an RFC 3339 time, or a duration ago (`7d`: a week ago).
pub fn parse_since(flag: &str, s: &str, now: Timestamp) -> Result<Timestamp, String> {
    if let Some(d) = parse_duration(s.trim()) {
        return now.checked_sub(d).map_err(|e| format!("{flag} {s}: {e}"));
    }
    parse_time(flag, s, now).map_err(|_| {
        format!(
            "{flag} {s:?}: write a date (2026-10-01), an RFC 3339 time (2026-10-01T00:00:00Z) or a duration ago (7d, 12h)"
        )
    })
}

/// The day D names (`YYYY-MM-DD`), from a date, an RFC 3339 time (its UTC date) or a
/// duration from now (the UTC date then).
pub fn parse_day(flag: &str, s: &str, now: Timestamp) -> Result<Date, String> {
    // A time first: a date parser would take the date of `2027-06-30T23:30:00-02:00` as it
    // is written, not as it is in UTC.
    if s.trim().parse::<Timestamp>().is_err()
        && let Ok(d) = s.trim().parse::<Date>()
    {
        return Ok(d);
    }
    let t = parse_time(flag, s, now).map_err(|_| {
        format!(
            "{flag} {s:?}: write a date (2027-06-30), an RFC 3339 time or a duration from now (90d)"
        )
    })?;
    Ok(t.to_zoned(TimeZone::UTC).date())
}

/// An instant as the API writes it (`2027-01-31T17:00:00Z`).
pub fn rfc3339(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// How long ago, kubectl-style (`5s`, `3m`, `4h`, `12d`, `2y`).
pub fn age(then: Timestamp, now: Timestamp) -> String {
    let secs = now.duration_since(then).as_secs().max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7_200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3_600),
        s if s < 365 * 86_400 => format!("{}d", s / 86_400),
        s => format!("{}y", s / (365 * 86_400)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        "2026-11-15T10:00:00Z".parse().unwrap()
    }

    #[test]
    fn times_are_dates_rfc3339_or_durations_from_now() {
        let table: &[(&str, Option<&str>)] = &[
            ("2027-01-31", Some("2027-01-31T00:00:00Z")),
            ("2027-01-31T17:00:00Z", Some("2027-01-31T17:00:00Z")),
            ("2027-01-31T18:00:00+01:00", Some("2027-01-31T17:00:00Z")),
            ("30d", Some("2026-12-15T10:00:00Z")),
            ("12h", Some("2026-11-15T22:00:00Z")),
            ("90m", Some("2026-11-15T11:30:00Z")),
            ("2w", Some("2026-11-29T10:00:00Z")),
            ("1d12h", Some("2026-11-16T22:00:00Z")),
            ("30", None),
            ("d", None),
            ("30x", None),
            ("tomorrow", None),
            ("2027-13-01", None),
        ];
        for (input, want) in table {
            let got = parse_time("--at", input, now()).ok().map(rfc3339);
            assert_eq!(got.as_deref(), *want, "{input}");
        }
        let err = parse_time("--at", "soon", now()).unwrap_err();
        assert!(err.contains("--at") && err.contains("30d"), "{err}");
    }

    #[test]
    fn since_takes_durations_backwards() {
        assert_eq!(
            rfc3339(parse_since("--created-after", "7d", now()).unwrap()),
            "2026-11-08T10:00:00Z"
        );
        assert_eq!(
            rfc3339(parse_since("--created-after", "2026-10-01", now()).unwrap()),
            "2026-10-01T00:00:00Z"
        );
        assert!(parse_since("--created-after", "yesterday", now()).is_err());
    }

    #[test]
    fn days_come_from_dates_times_or_durations() {
        let table: &[(&str, Option<&str>)] = &[
            ("2027-06-30", Some("2027-06-30")),
            ("2027-06-30T23:30:00-02:00", Some("2027-07-01")),
            ("90d", Some("2027-02-13")),
            ("June", None),
        ];
        for (input, want) in table {
            let got = parse_day("--on", input, now()).ok().map(|d| d.to_string());
            assert_eq!(got.as_deref(), *want, "{input}");
        }
    }

    #[test]
    fn ages_read_like_kubectl() {
        let t = |s: &str| s.parse::<Timestamp>().unwrap();
        assert_eq!(age(t("2026-11-15T09:59:30Z"), now()), "30s");
        assert_eq!(age(t("2026-11-15T09:00:00Z"), now()), "60m");
        assert_eq!(age(t("2026-11-14T10:00:00Z"), now()), "24h");
        assert_eq!(age(t("2026-11-01T10:00:00Z"), now()), "14d");
        assert_eq!(age(t("2024-11-15T10:00:00Z"), now()), "2y");
    }
}
