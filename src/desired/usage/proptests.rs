//! Property tests of usage accrual (issue "crash-consistent under faults", part 4): random
//! histories of (instant, rate) are run through [`advance`] as the reconcile runs it (its writes
//! stored, each with a resourceVersion, the latest record by month read back), and the records
//! are compared with the exact integral of the rate computed here, independently, month by
//! month. [`reaches`] is checked against the cost accrued month by month by [`cost_of`].
//!
//! Deterministic: a fixed seed, ChaCha, a bounded number of cases, no failure files.

use std::collections::BTreeMap;

use jiff::ToSpan;
use jiff::tz::TimeZone;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use super::*;
use crate::testing::check;

/// This file's fixed seed.
const SEED: u64 = 0x7e4a_0c03;

const PROJECT: &str = "genomics";
const DAY_MS: i64 = 86_400_000;
const GIB: i64 = 1 << 30;

fn prices() -> Prices {
    Prices::parse(
        &[
            "cpu=20".into(),
            "memory=4.5".into(),
            "storage=0.1".into(),
            "pods=0.5".into(),
        ],
        "EUR",
    )
    .unwrap()
    .unwrap()
}

/// The first instant of the month after the one `t` is in (UTC), computed here with jiff.
fn next_month_start(t: Timestamp) -> Timestamp {
    t.to_zoned(TimeZone::UTC)
        .date()
        .first_of_month()
        .checked_add(1.month())
        .unwrap()
        .to_zoned(TimeZone::UTC)
        .unwrap()
        .timestamp()
}

fn month_name(t: Timestamp) -> String {
    t.to_zoned(TimeZone::UTC).strftime("%Y-%m").to_string()
}

fn ms(from: Timestamp, to: Timestamp) -> i128 {
    i128::from(to.as_millisecond() - from.as_millisecond())
}

/// A rate: each resource zero or a random amount (thousandths, pods whole).
fn rate() -> impl Strategy<Value = Rate> {
    let part = |max: i64| prop_oneof![1 => Just(0i64), 2 => 0..=max];
    (
        part(64_000),
        part(64 * GIB * 1000),
        part(1024 * GIB * 1000),
        part(50),
    )
        .prop_map(|(cpu, memory, storage, pods)| Rate {
            cpu: cpu.into(),
            memory: memory.into(),
            storage: storage.into(),
            pods: i128::from(pods) * 1000,
        })
}

/// How the clock moves to the next reconcile.
#[derive(Clone, Copy, Debug)]
enum Tick {
    /// By this many milliseconds (negative: the clock goes back).
    By(i64),
    /// To the start of the next month, plus this many milliseconds.
    ToNextMonth(i64),
}

/// One reconcile: the clock moves, then the rate is this (`None`: the same as before).
type Step = (Tick, Option<Rate>);

fn tick(backwards: bool) -> impl Strategy<Value = Tick> {
    let low = if backwards { -40 * DAY_MS } else { 0 };
    prop_oneof![
        4 => (low..=40 * DAY_MS).prop_map(Tick::By),
        2 => (0..=3_600_000i64).prop_map(Tick::By),
        1 => Just(Tick::By(0)),
        2 => prop_oneof![Just(0i64), Just(1), 0..=DAY_MS].prop_map(Tick::ToNextMonth),
    ]
}

fn history(backwards: bool) -> impl Strategy<Value = (i64, Vec<Step>)> {
    (
        // The first reconcile: some instant of 2026 or 2027.
        0..730 * DAY_MS,
        prop::collection::vec(
            (
                tick(backwards),
                prop_oneof![
                    2 => Just(None),
                    1 => Just(Some(Rate::default())),
                    4 => rate().prop_map(Some),
                ],
            ),
            1..25,
        ),
    )
}

/// Runs `advance` as the reconcile does and stores the writes: each gets a resourceVersion and
/// replaces the record of its name.
struct World {
    records: Vec<ProjectUsage>,
    writes: usize,
}

impl World {
    fn new() -> World {
        World {
            records: Vec::new(),
            writes: 0,
        }
    }

    fn input<'a>(&'a self, now: Timestamp, rate: Rate, prices: &'a Prices) -> UsageInput<'a> {
        UsageInput {
            project: PROJECT,
            customer: "acme",
            latest: latest(self.records.iter()),
            rate,
            now,
            prices: Some(prices),
            credit: Some(5_000_000),
        }
    }

    fn advance(&mut self, now: Timestamp, rate: Rate, prices: &Prices) -> Vec<ProjectUsage> {
        let out = advance(&self.input(now, rate, prices));
        for w in &out {
            self.writes += 1;
            let mut w = w.clone();
            w.metadata.resource_version = Some(self.writes.to_string());
            self.records.retain(|r| r.metadata.name != w.metadata.name);
            self.records.push(w);
        }
        out
    }

    fn get(&self, name: &str) -> Option<&ProjectUsage> {
        self.records
            .iter()
            .find(|r| r.metadata.name.as_deref() == Some(name))
    }
}

fn exact_of(r: &ProjectUsage) -> [i128; 4] {
    let e = Exact::from_stored(&r.spec.exact);
    [e.cpu, e.memory, e.storage, e.pods]
}

fn rate_parts(r: &Rate) -> [i128; 4] {
    [r.cpu, r.memory, r.storage, r.pods]
}

fn start() -> Timestamp {
    "2026-01-01T00:00:00Z".parse().unwrap()
}

/// Where the clock is after a tick.
fn moved(now: Timestamp, t: Tick) -> Timestamp {
    match t {
        Tick::By(d) => now
            .checked_add(jiff::SignedDuration::from_millis(d))
            .unwrap(),
        Tick::ToNextMonth(d) => next_month_start(now)
            .checked_add(jiff::SignedDuration::from_millis(d))
            .unwrap(),
    }
}

/// For any history of a clock moving forward (by up to 40 days, or to a month's end) and rates:
/// - (a) advancing again at the same instant with the same rate writes nothing;
/// - (b) each month's exact cpu, memory, storage and pods (its record read as it stands at the
///   last instant) equal the integral Σ rateᵢ × msᵢ of the rate over that month, computed here
///   month by month; its days add up to it;
/// - (c) a closed month is never written again (its record is identical in every later state);
/// - (d) each record is its month's only one (named `<project>.<month>`, at most once per
///   write), written only at an instant where the rate changed or a month boundary was crossed
///   since the last reconcile, and every change of rate is written;
/// - credit: the instant it falls low is never after the instant it runs out.
#[test]
fn advance_integrates_the_rate_exactly_month_by_month() {
    let p = prices();
    check(SEED, 192, history(false), |(offset, steps)| {
        let mut w = World::new();
        let mut now = start()
            .checked_add(jiff::SignedDuration::from_millis(offset))
            .unwrap();
        let mut rate = Rate::default();
        let mut previous: Option<(Timestamp, Rate)> = None;
        // The integral, by month.
        let mut expected: BTreeMap<String, [i128; 4]> = BTreeMap::new();
        let mut closed: BTreeMap<String, ProjectUsage> = BTreeMap::new();
        for (i, (t, r)) in steps.iter().enumerate() {
            if i > 0 {
                let next = moved(now, *t);
                // The rate in force over [now, next), split at month boundaries.
                let mut at = now;
                while at < next {
                    let end = next_month_start(at).min(next);
                    let e = expected.entry(month_name(at)).or_default();
                    for (x, r) in e.iter_mut().zip(rate_parts(&rate)) {
                        *x += r * ms(at, end);
                    }
                    at = end;
                }
                now = next;
            }
            if let Some(r) = r {
                rate = *r;
            }
            let out = w.advance(now, rate, &p);

            // (d) One record per month, written only where something changed.
            let mut names: Vec<String> = out
                .iter()
                .map(|r| r.metadata.name.clone().unwrap())
                .collect();
            for r in &out {
                let month = Month::parse(&r.spec.month).expect("a month");
                prop_assert_eq!(r.metadata.name.clone(), Some(record_name(PROJECT, month)));
                prop_assert!(r.spec.month <= month_name(now), "a record of a later month");
            }
            names.sort();
            names.dedup();
            prop_assert_eq!(names.len(), out.len(), "a record written twice in one pass");
            let (was_at, was_rate) = previous.unwrap_or((now, Rate::default()));
            let changed = was_rate != rate;
            let crossed = month_name(was_at) != month_name(now);
            if !out.is_empty() {
                prop_assert!(
                    changed || crossed,
                    "written at {now} with neither a change of rate nor a new month"
                );
            }
            if changed {
                prop_assert!(!out.is_empty(), "a change of rate at {now} was not written");
            }
            previous = Some((now, rate));

            // (a) Idempotence.
            let again = advance(&w.input(now, rate, &p));
            prop_assert!(again.is_empty(), "advancing again at {now} wrote {again:?}");

            // (c) Closed months never change.
            for (name, was) in &closed {
                let is = w.get(name).expect("a closed record is kept");
                prop_assert_eq!(&is.spec, &was.spec, "closed month {} changed", name);
                prop_assert_eq!(
                    &is.metadata,
                    &was.metadata,
                    "closed month {} rewritten",
                    name
                );
            }
            for r in &w.records {
                if r.spec.state == UsageState::Closed {
                    closed
                        .entry(r.metadata.name.clone().unwrap())
                        .or_insert_with(|| r.clone());
                }
            }
        }

        // (b) Exactness, month by month.
        let mut got: BTreeMap<String, [i128; 4]> = BTreeMap::new();
        for r in &w.records {
            let r = at(r, now, Some(&p), None);
            let exact = exact_of(&r);
            let mut days = [0i128; 4];
            for d in r.spec.days.values() {
                let e = Exact::from_stored(d);
                for (x, v) in days.iter_mut().zip([e.cpu, e.memory, e.storage, e.pods]) {
                    *x += v;
                }
            }
            prop_assert_eq!(days, exact, "the days of {} do not add up", r.spec.month);
            got.insert(r.spec.month.clone(), exact);
        }
        expected.retain(|_, e| *e != [0; 4]);
        got.retain(|_, e| *e != [0; 4]);
        prop_assert_eq!(got, expected, "stored usage differs from the integral");

        // Credit milestones are in order.
        let c = credit_status(latest(w.records.iter()), 5_000_000, &p, 20, start());
        if let (Some(low), Some(out)) = (&c.low_at, &c.runs_out_at) {
            prop_assert!(
                low.0 <= out.0,
                "low at {} after running out at {}",
                low.0,
                out.0
            );
        }
        Ok(())
    });
}

/// (f) A clock that goes back (by up to 40 days) never produces a write that lowers any total:
/// a record written again holds at least the exact usage it held, accrued to an instant no
/// earlier; closed months are still never written again, and advancing twice at the same
/// instant still writes nothing.
#[test]
fn a_clock_going_back_never_lowers_a_total() {
    let p = prices();
    check(SEED, 192, history(true), |(offset, steps)| {
        let mut w = World::new();
        let mut now = start()
            .checked_add(jiff::SignedDuration::from_millis(offset))
            .unwrap();
        let mut rate = Rate::default();
        let mut closed: BTreeMap<String, ProjectUsage> = BTreeMap::new();
        for (i, (t, r)) in steps.iter().enumerate() {
            if i > 0 {
                now = moved(now, *t);
            }
            if let Some(r) = r {
                rate = *r;
            }
            let before: BTreeMap<String, ProjectUsage> = w
                .records
                .iter()
                .map(|r| (r.metadata.name.clone().unwrap(), r.clone()))
                .collect();
            let out = w.advance(now, rate, &p);
            for r in &out {
                let name = r.metadata.name.clone().unwrap();
                prop_assert!(!closed.contains_key(&name), "closed month {name} rewritten");
                if let Some(was) = before.get(&name) {
                    for (is, was) in exact_of(r).into_iter().zip(exact_of(was)) {
                        prop_assert!(is >= was, "{name}: a total lowered from {was} to {is}");
                    }
                    prop_assert!(
                        r.spec.since.0 >= was.spec.since.0,
                        "{name}: since moved back"
                    );
                }
            }
            let again = advance(&w.input(now, rate, &p));
            prop_assert!(again.is_empty(), "advancing again at {now} wrote {again:?}");
            for r in &w.records {
                if r.spec.state == UsageState::Closed {
                    closed
                        .entry(r.metadata.name.clone().unwrap())
                        .or_insert_with(|| r.clone());
                }
            }
        }
        Ok(())
    });
}

/// The cost accrued at `rate` over [from, to), month by month, each month priced by
/// [`cost_of`] over its own length.
fn accrued(prices: &Prices, rate: &Rate, from: Timestamp, to: Timestamp) -> Micros {
    let mut total: Micros = 0;
    let mut at = from;
    while at < to {
        let month_start = at
            .to_zoned(TimeZone::UTC)
            .date()
            .first_of_month()
            .to_zoned(TimeZone::UTC)
            .unwrap()
            .timestamp();
        let month_end = next_month_start(at);
        let end = month_end.min(to);
        let span = ms(at, end);
        let exact = Exact {
            cpu: rate.cpu * span,
            memory: rate.memory * span,
            storage: rate.storage * span,
            pods: rate.pods * span,
        };
        total += cost_of(prices, &exact, ms(month_start, month_end)).0;
        at = end;
    }
    total
}

/// A price list over some of the priced resources, each up to 100 a month, to the millionth.
fn price_list() -> impl Strategy<Value = Prices> {
    prop::collection::btree_map(
        prop::sample::select(vec!["cpu", "memory", "storage", "pods"]),
        0..100_000_000i64,
        1..5,
    )
    .prop_map(|m| {
        let list: Vec<String> = m
            .iter()
            .map(|(k, v)| format!("{k}={}.{:06}", v / 1_000_000, v % 1_000_000))
            .collect();
        Prices::parse(&list, "EUR").unwrap().unwrap()
    })
}

fn reaches_case(single: bool) -> impl Strategy<Value = (Prices, Rate, i64, Micros)> {
    (
        price_list(),
        rate(),
        0..730 * DAY_MS,
        prop_oneof![1..1_000i64, 1..1_000_000_000i64],
    )
        .prop_map(move |(prices, mut rate, offset, amount)| {
            if single {
                // One resource at a time: the price of the rate is one fraction.
                rate = Rate {
                    cpu: rate.cpu,
                    ..Rate::default()
                };
            }
            (prices, rate, offset, i128::from(amount))
        })
}

/// Checks (e) for one case.
/// `exact`: the cost at t must be at least the amount; otherwise it may fall short by the
/// rounding of one millionth per extra priced resource and month (see below).
fn check_reaches(
    prices: &Prices,
    rate: &Rate,
    offset: i64,
    amount: Micros,
    exact: bool,
) -> Result<(), TestCaseError> {
    let from = start()
        .checked_add(jiff::SignedDuration::from_millis(offset))
        .unwrap();
    match reaches(prices, rate, from, amount) {
        Some(t) => {
            prop_assert!(t > from, "reached {amount} at once");
            let at_t = accrued(prices, rate, from, t);
            let slack = if exact {
                0
            } else {
                let priced = rate_parts(rate)
                    .into_iter()
                    .zip(["cpu", "memory", "storage", "pods"])
                    .filter(|(r, name)| {
                        *r > 0 && prices.monthly().get(*name).is_some_and(|p| *p > 0)
                    })
                    .count() as i128;
                let mut months = 0;
                let mut m = from;
                while m < t {
                    months += 1;
                    m = next_month_start(m);
                }
                (priced - 1).max(0) * months
            };
            prop_assert!(
                at_t >= amount - slack,
                "at {t}: {at_t} accrued, short of {amount} (slack {slack})"
            );
            let before = t.checked_sub(jiff::SignedDuration::from_millis(1)).unwrap();
            let at_before = accrued(prices, rate, from, before);
            prop_assert!(
                at_before < amount,
                "at {before} (1 ms earlier): {at_before} accrued, already {amount}"
            );
        }
        None => {
            let century = from
                .checked_add(jiff::SignedDuration::from_hours(24 * 36_600))
                .unwrap();
            let most = accrued(prices, rate, from, century);
            prop_assert!(
                most < amount,
                "never reached, yet {most} accrues in a century"
            );
        }
    }
    Ok(())
}

/// (e) `reaches(prices, rate, from, amount)` is the first instant t at which the cost accrued
/// from `from`, month by month as `cost_of` prices a month, is at least `amount`: over [from, t)
/// it is, over [from, t − 1 ms) it is not. Here with a rate of one resource (cpu).
#[test]
fn reaches_is_the_first_instant_the_cost_reaches_the_amount() {
    check(
        SEED,
        256,
        reaches_case(true),
        |(prices, rate, offset, amount)| check_reaches(&prices, &rate, offset, amount, true),
    );
}

/// (e) For several resources: `reaches` prices a month by the rate's combined fraction (one
/// floor), the records resource by resource (one floor each), so at the instant `reaches`
/// returns, the cost `cost_of` gives falls short of the amount by at most one millionth per
/// extra priced resource and month spanned (and 1 ms earlier it is below the amount).
#[test]
fn reaches_is_within_rounding_of_the_cost_of_several_resources() {
    check(
        SEED,
        256,
        reaches_case(false),
        |(prices, rate, offset, amount)| check_reaches(&prices, &rate, offset, amount, false),
    );
}
