//! Usage over time, pure: what a project's workloads request is integrated exactly (piecewise
//! constant between the changes the operator watches) into one [`ProjectUsage`] record per
//! calendar month (UTC); months are priced by the hours they have; credit is a balance consumed
//! by the project's accrued cost over its whole life.
//!
//! Records are written only when the rate changes or a month closes: [`advance`] says which. A
//! record holds where the accrual stood (`since`, the exact totals) and the rate in force, so a
//! restart or another leader carries on from it without losing or counting a second twice (the
//! writes are conditional on the record's resourceVersion).
//!
//! Exact units: a rate is in thousandths (millicores, thousandths of a byte, thousandths of a
//! pod), time in milliseconds, so totals are millionths of a unit-second, held in `i128`.

use std::collections::BTreeMap;

use jiff::Timestamp;
use jiff::civil::Date;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

use super::NamespaceContents;
use super::cost::{Micros, Prices, format_amount};
use super::quantity::Milli;
use crate::api::usage::{
    CreditStatus, ExactUsage, ProjectUsage, ProjectUsageSpec, UsageCost, UsageRate, UsageState,
    UsageTotals,
};

/// Millionths of a unit-second in a unit-hour.
const PER_HOUR: i128 = 3_600_000_000;
const GIB: i128 = 1 << 30;
/// How far ahead credit is followed month by month (100 years).
const HORIZON_MONTHS: usize = 1200;

/// A calendar month (UTC).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Month {
    pub year: i16,
    pub month: i8,
}

impl Month {
    pub fn of(t: Timestamp) -> Month {
        let d = t.to_zoned(jiff::tz::TimeZone::UTC).date();
        Month {
            year: d.year(),
            month: d.month(),
        }
    }

    /// `YYYY-MM`.
    pub fn parse(s: &str) -> Option<Month> {
        let (y, m) = s.split_once('-')?;
        if y.len() != 4 || m.len() != 2 {
            return None;
        }
        let (year, month): (i16, i8) = (y.parse().ok()?, m.parse().ok()?);
        (1..=12)
            .contains(&month)
            .then_some(Month { year, month })
            .filter(|m| m.year >= 1970)
    }

    pub fn start(self) -> Timestamp {
        crate::lifecycle::start_of(Date::new(self.year, self.month, 1).expect("a valid month"))
    }

    pub fn next(self) -> Month {
        if self.month == 12 {
            Month {
                year: self.year + 1,
                month: 1,
            }
        } else {
            Month {
                year: self.year,
                month: self.month + 1,
            }
        }
    }

    pub fn previous(self) -> Month {
        if self.month == 1 {
            Month {
                year: self.year - 1,
                month: 12,
            }
        } else {
            Month {
                year: self.year,
                month: self.month - 1,
            }
        }
    }

    /// The first instant after the month.
    pub fn end(self) -> Timestamp {
        self.next().start()
    }

    /// Its length in milliseconds.
    pub fn millis(self) -> i128 {
        ms_between(self.start(), self.end())
    }
}

impl std::fmt::Display for Month {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

fn ms_between(from: Timestamp, to: Timestamp) -> i128 {
    (to.as_millisecond() as i128 - from.as_millisecond() as i128).max(0)
}

/// A record's name: `<project>.<yyyy-mm>`.
pub fn record_name(project: &str, month: Month) -> String {
    format!("{project}.{month}")
}

/// What a project's workloads request: thousandths of a core, of a byte (memory, storage) and
/// of a pod.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rate {
    pub cpu: i128,
    pub memory: i128,
    pub storage: i128,
    pub pods: i128,
}

impl Rate {
    pub fn of(contents: &NamespaceContents) -> Rate {
        Rate {
            cpu: contents.cpu.0.max(0),
            memory: contents.memory.0.max(0),
            storage: contents.storage.0.max(0),
            pods: (contents.pods() as i128).max(0) * 1000,
        }
    }

    pub fn is_zero(&self) -> bool {
        *self == Rate::default()
    }

    fn stored(&self) -> UsageRate {
        UsageRate {
            cpu: Milli(self.cpu).to_string(),
            memory: Milli(self.memory).to_string(),
            storage: Milli(self.storage).to_string(),
            pods: (self.pods / 1000) as i64,
        }
    }

    /// The rate a record stores (an unreadable quantity counts as 0).
    pub fn from_stored(r: &UsageRate) -> Rate {
        let q = |s: &str| Milli::parse(s).map(|m| m.0.max(0)).unwrap_or(0);
        Rate {
            cpu: q(&r.cpu),
            memory: q(&r.memory),
            storage: q(&r.storage),
            pods: i128::from(r.pods.max(0)) * 1000,
        }
    }

    fn by_resource(&self) -> [(&'static str, i128); 4] {
        [
            ("cpu", self.cpu),
            ("memory", self.memory),
            ("storage", self.storage),
            ("pods", self.pods),
        ]
    }
}

/// Exact usage in millionths of a unit-second.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Exact {
    pub cpu: i128,
    pub memory: i128,
    pub storage: i128,
    pub pods: i128,
}

impl Exact {
    fn add(&mut self, rate: &Rate, ms: i128) {
        self.cpu = self.cpu.saturating_add(rate.cpu.saturating_mul(ms));
        self.memory = self.memory.saturating_add(rate.memory.saturating_mul(ms));
        self.storage = self.storage.saturating_add(rate.storage.saturating_mul(ms));
        self.pods = self.pods.saturating_add(rate.pods.saturating_mul(ms));
    }

    pub fn from_stored(e: &ExactUsage) -> Exact {
        let n = |s: &str| s.parse::<i128>().unwrap_or(0);
        Exact {
            cpu: n(&e.cpu),
            memory: n(&e.memory),
            storage: n(&e.storage),
            pods: n(&e.pods),
        }
    }

    fn stored(&self) -> ExactUsage {
        ExactUsage {
            cpu: self.cpu.to_string(),
            memory: self.memory.to_string(),
            storage: self.storage.to_string(),
            pods: self.pods.to_string(),
        }
    }

    fn get(&self, resource: &str) -> i128 {
        match resource {
            "cpu" => self.cpu,
            "memory" => self.memory,
            "storage" => self.storage,
            "pods" => self.pods,
            _ => 0,
        }
    }

    /// Core-hours, GiB-hours (memory, storage) and pod-hours.
    pub fn totals(&self) -> UsageTotals {
        UsageTotals {
            cpu_core_hours: decimal(self.cpu, PER_HOUR),
            memory_gib_hours: decimal(self.memory, PER_HOUR * GIB),
            storage_gib_hours: decimal(self.storage, PER_HOUR * GIB),
            pod_hours: decimal(self.pods, PER_HOUR),
        }
    }
}

/// `n / d` as a decimal of at most 6 places, rounded half up, without trailing zeros.
pub fn decimal(n: i128, d: i128) -> String {
    let scaled = (n.saturating_mul(1_000_000) + d / 2).div_euclid(d);
    micros_string(scaled)
}

/// Millionths as a plain decimal without trailing zeros (`4.5`, `20`, `0.000001`).
pub fn micros_string(m: i128) -> String {
    let sign = if m < 0 { "-" } else { "" };
    let m = m.unsigned_abs();
    let (int, frac) = (m / 1_000_000, m % 1_000_000);
    if frac == 0 {
        format!("{sign}{int}")
    } else {
        let f = format!("{frac:06}");
        format!("{sign}{int}.{}", f.trim_end_matches('0'))
    }
}

/// Parses [`micros_string`]'s output (and any decimal of at most 6 places; a sign allowed).
pub fn parse_micros(s: &str) -> Option<Micros> {
    let (neg, rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s),
    };
    super::cost::parse_amount(rest).map(|m| if neg { -m } else { m })
}

/// The part of a price for which a unit is one thousandth of the rate's unit, over GiB for
/// memory and storage: the cost of `exact` in a month of `month_ms` milliseconds is
/// `exact × price / (1000 × month_ms × per_unit)`.
fn per_unit(resource: &str) -> i128 {
    match resource {
        "memory" | "storage" => GIB,
        _ => 1,
    }
}

/// The cost of exact usage in a month of `month_ms`, by resource, in millionths.
pub fn cost_of(
    prices: &Prices,
    exact: &Exact,
    month_ms: i128,
) -> (Micros, BTreeMap<String, Micros>) {
    let mut by = BTreeMap::new();
    let mut total: Micros = 0;
    for (name, price) in prices.monthly() {
        let denom = 1000 * month_ms.max(1) * per_unit(name);
        let micros = exact.get(name).saturating_mul(*price) / denom;
        total = total.saturating_add(micros);
        by.insert(name.clone(), micros);
    }
    (total, by)
}

/// What it costs per millisecond at a rate in a month, as a fraction `(numerator,
/// denominator)` of millionths.
fn cost_rate(prices: &Prices, rate: &Rate, month_ms: i128) -> (i128, i128) {
    // Σ price × rate / per_unit, over a common denominator of GiB.
    let num: i128 = rate
        .by_resource()
        .iter()
        .map(|(name, r)| {
            let price = prices.monthly().get(*name).copied().unwrap_or(0);
            price
                .saturating_mul(*r)
                .saturating_mul(GIB / per_unit(name))
        })
        .fold(0i128, |a, b| a.saturating_add(b));
    (num, 1000 * month_ms.max(1) * GIB)
}

/// A record's exact totals, rate and place, read back.
#[derive(Clone, Debug, PartialEq)]
struct Accrual {
    name: String,
    resource_version: Option<String>,
    month: Month,
    state: UsageState,
    since: Timestamp,
    rate: Rate,
    rate_since: Timestamp,
    exact: Exact,
    days: BTreeMap<String, Exact>,
    cost_before: Micros,
    customer: String,
    closed_at: Option<Timestamp>,
}

impl Accrual {
    fn read(r: &ProjectUsage) -> Option<Accrual> {
        let s = &r.spec;
        Some(Accrual {
            name: r.metadata.name.clone()?,
            resource_version: r.metadata.resource_version.clone(),
            month: Month::parse(&s.month)?,
            state: s.state,
            since: s.since.0,
            rate: Rate::from_stored(&s.rate),
            rate_since: s.rate_since.0,
            exact: Exact::from_stored(&s.exact),
            days: s
                .days
                .iter()
                .map(|(k, v)| (k.clone(), Exact::from_stored(v)))
                .collect(),
            cost_before: parse_micros(&s.cost_before).unwrap_or(0),
            customer: s.customer.clone(),
            closed_at: s.closed_at.as_ref().map(|t| t.0),
        })
    }

    fn new(
        project: &str,
        customer: &str,
        month: Month,
        since: Timestamp,
        rate: Rate,
        rate_since: Timestamp,
        cost_before: Micros,
    ) -> Accrual {
        Accrual {
            name: record_name(project, month),
            resource_version: None,
            month,
            state: UsageState::Open,
            since,
            rate,
            rate_since,
            exact: Exact::default(),
            days: BTreeMap::new(),
            cost_before,
            customer: customer.to_string(),
            closed_at: None,
        }
    }

    /// Accrues the rate in force from `since` to `to` (within the month), day by day.
    fn accrue_to(&mut self, to: Timestamp) {
        let to = to.min(self.month.end());
        if to <= self.since {
            return;
        }
        let mut at = self.since;
        while at < to {
            let day = at.to_zoned(jiff::tz::TimeZone::UTC).date();
            let day_end = day
                .tomorrow()
                .map(crate::lifecycle::start_of)
                .unwrap_or(to)
                .min(to);
            let ms = ms_between(at, day_end);
            self.exact.add(&self.rate, ms);
            if !self.rate.is_zero() {
                self.days
                    .entry(format!("{:02}", day.day()))
                    .or_default()
                    .add(&self.rate, ms);
            }
            at = day_end;
        }
        self.since = to;
    }

    /// The month's cost so far, by the given prices.
    fn cost(&self, prices: &Prices) -> (Micros, BTreeMap<String, Micros>) {
        cost_of(prices, &self.exact, self.month.millis())
    }

    fn record(
        &self,
        project: &str,
        prices: Option<&Prices>,
        credit: Option<Micros>,
    ) -> ProjectUsage {
        let cost = prices.map(|p| {
            let (total, by) = self.cost(p);
            (
                total,
                UsageCost {
                    currency: p.currency.clone(),
                    total: format_amount(total),
                    by_resource: by.into_iter().map(|(k, v)| (k, format_amount(v))).collect(),
                    prices: p
                        .monthly()
                        .iter()
                        .map(|(k, v)| (k.clone(), micros_string(*v)))
                        .collect(),
                },
            )
        });
        let credit_consumed = match (credit, &cost) {
            (Some(amount), Some((total, _))) => {
                Some(micros_string((amount - self.cost_before).clamp(0, *total)))
            }
            _ => None,
        };
        ProjectUsage {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                resource_version: self.resource_version.clone(),
                labels: Some(BTreeMap::from([
                    (
                        super::labels::MANAGED_BY.to_string(),
                        super::labels::MANAGED_BY_VALUE.to_string(),
                    ),
                    (super::labels::PROJECT.to_string(), project.to_string()),
                    (super::labels::CUSTOMER.to_string(), self.customer.clone()),
                ])),
                ..Default::default()
            },
            spec: ProjectUsageSpec {
                project: project.to_string(),
                customer: self.customer.clone(),
                month: self.month.to_string(),
                state: self.state,
                since: Time(self.since),
                rate: self.rate.stored(),
                rate_since: Time(self.rate_since),
                totals: self.exact.totals(),
                exact: self.exact.stored(),
                days: self
                    .days
                    .iter()
                    .map(|(k, v)| (k.clone(), v.stored()))
                    .collect(),
                cost: cost.map(|(_, c)| c),
                cost_before: micros_string(self.cost_before),
                credit: credit.map(micros_string),
                credit_consumed,
                closed_at: self.closed_at.map(Time),
            },
        }
    }

    /// The cost of the month as the record prices it (the prices it stores, else `prices`).
    fn own_cost(&self, stored: Option<&ProjectUsage>, prices: Option<&Prices>) -> Micros {
        let own = stored
            .and_then(|r| r.spec.cost.as_ref())
            .map(|c| Prices::from_stored(&c.currency, &c.prices));
        match own.as_ref().or(prices) {
            Some(p) => self.cost(p).0,
            None => 0,
        }
    }
}

/// What [`advance`] needs about one project.
pub struct UsageInput<'a> {
    pub project: &'a str,
    /// The customer to bill (the project's, or the last record's once the project is gone).
    pub customer: &'a str,
    /// The project's latest record (by month), if any.
    pub latest: Option<&'a ProjectUsage>,
    /// What its workloads request now (zero once the project is gone or the namespace is not
    /// its own).
    pub rate: Rate,
    pub now: Timestamp,
    pub prices: Option<&'a Prices>,
    /// `spec.credit`, in millionths.
    pub credit: Option<Micros>,
}

/// The records to write, in order, so the accrual is up to date at `now`: months that ended
/// closed (and the ones a running rate filled since, each closed), the current month opened or
/// changed when the rate changed. Nothing when nothing changed: a quiet project is not written.
/// The latest record in the result carries its resourceVersion (a conditional replace); new
/// ones carry none (a create).
pub fn advance(input: &UsageInput<'_>) -> Vec<ProjectUsage> {
    let now_month = Month::of(input.now);
    let mut writes: Vec<Accrual> = Vec::new();
    let Some(mut cur) = input.latest.and_then(Accrual::read) else {
        if input.rate.is_zero() {
            return Vec::new();
        }
        let a = Accrual::new(
            input.project,
            input.customer,
            now_month,
            input.now,
            input.rate,
            input.now,
            0,
        );
        return vec![a.record(input.project, input.prices, input.credit)];
    };
    let stored_latest = input.latest;
    // At most one pass per month between the latest record and now.
    for _ in 0..HORIZON_MONTHS {
        if cur.month > now_month {
            break; // the clock went back: nothing until it catches up
        }
        if cur.state == UsageState::Open && cur.month < now_month {
            cur.accrue_to(cur.month.end());
            cur.state = UsageState::Closed;
            cur.closed_at = Some(input.now);
            cur.customer = input.customer.to_string();
            writes.push(cur.clone());
            continue;
        }
        if cur.state == UsageState::Closed {
            if cur.month >= now_month {
                break;
            }
            let stored = (writes.is_empty()).then_some(stored_latest).flatten();
            let before = cur.cost_before + cur.own_cost(stored, input.prices);
            if cur.rate.is_zero() {
                if input.rate.is_zero() {
                    break;
                }
                cur = Accrual::new(
                    input.project,
                    input.customer,
                    now_month,
                    input.now,
                    input.rate,
                    input.now,
                    before,
                );
                writes.push(cur.clone());
                break;
            }
            let next = cur.month.next();
            cur = Accrual::new(
                input.project,
                input.customer,
                next,
                next.start(),
                cur.rate,
                cur.rate_since,
                before,
            );
            if next < now_month {
                continue; // closed on the next pass
            }
            writes.push(cur.clone());
            continue;
        }
        // Open, this month: a change of rate, or a move to another customer (who is billed
        // for the month from then on).
        if cur.rate != input.rate || cur.customer != input.customer {
            cur.accrue_to(input.now);
            cur.since = input.now.max(cur.since);
            cur.rate = input.rate;
            cur.rate_since = cur.since;
            cur.customer = input.customer.to_string();
            writes.push(cur.clone());
        }
        break;
    }
    // One write per record: its last version, in the order of last appearance.
    let mut out: Vec<Accrual> = Vec::new();
    for w in writes.into_iter().rev() {
        if !out.iter().any(|o| o.name == w.name) {
            out.push(w);
        }
    }
    out.reverse();
    out.iter()
        .map(|a| a.record(input.project, input.prices, input.credit))
        .collect()
}

/// The records a project's accrual needs written at `now`: its rate is what its namespace
/// requests when the namespace is its own (`owned`), else zero.
pub fn project_writes(
    project: &crate::api::Project,
    owned: bool,
    contents: &NamespaceContents,
    latest: Option<&ProjectUsage>,
    now: Timestamp,
    prices: Option<&Prices>,
) -> Vec<ProjectUsage> {
    let name = project.metadata.name.clone().unwrap_or_default();
    advance(&UsageInput {
        project: &name,
        customer: &project.spec.customer,
        latest,
        rate: if owned {
            Rate::of(contents)
        } else {
            Rate::default()
        },
        now,
        prices,
        credit: project.spec.credit.map(credit_micros),
    })
}

/// A record as it stands at `now`: an open month accrued on at its rate (to its end at most).
/// Closed records are as stored.
pub fn at(
    record: &ProjectUsage,
    now: Timestamp,
    prices: Option<&Prices>,
    credit: Option<Micros>,
) -> ProjectUsage {
    let Some(mut a) = Accrual::read(record) else {
        return record.clone();
    };
    if a.state == UsageState::Closed {
        return record.clone();
    }
    a.accrue_to(now);
    let prices = prices.cloned().or_else(|| {
        record
            .spec
            .cost
            .as_ref()
            .map(|c| Prices::from_stored(&c.currency, &c.prices))
    });
    let mut out = a.record(&record.spec.project, prices.as_ref(), credit);
    out.metadata = record.metadata.clone();
    out
}

/// A project's month of `now` as it stands at `now`: its record accrued on, or the month a
/// running rate carries into before the operator has written it, or an empty month.
pub fn current(
    project: &str,
    customer: &str,
    latest: Option<&ProjectUsage>,
    now: Timestamp,
    prices: Option<&Prices>,
    credit: Option<Micros>,
) -> ProjectUsage {
    let month = Month::of(now);
    if let Some(l) = latest
        && l.spec.month == month.to_string()
    {
        return at(l, now, prices, credit);
    }
    let carried = latest
        .and_then(Accrual::read)
        .map(|a| a.rate)
        .unwrap_or_default();
    let writes = advance(&UsageInput {
        project,
        customer,
        latest,
        rate: carried,
        now,
        prices,
        credit,
    });
    if let Some(w) = writes.iter().find(|w| w.spec.month == month.to_string()) {
        return at(w, now, prices, credit);
    }
    let before = latest.map(|l| lifetime_cost(l, prices)).unwrap_or(0);
    Accrual::new(project, customer, month, now, Rate::default(), now, before)
        .record(project, prices, credit)
}

/// The cost of a project's whole life to the end of a record (its `since`), in millionths.
pub fn lifetime_cost(record: &ProjectUsage, prices: Option<&Prices>) -> Micros {
    match Accrual::read(record) {
        Some(a) => a.cost_before + a.own_cost(Some(record), prices),
        None => 0,
    }
}

/// The instant the cost accrued from `from` at `rate` reaches `amount` (millionths), month by
/// month (each priced by its own hours). None: never (a zero rate, no price, or beyond a
/// century).
pub fn reaches(prices: &Prices, rate: &Rate, from: Timestamp, amount: Micros) -> Option<Timestamp> {
    if amount <= 0 {
        return Some(from);
    }
    let mut left = amount;
    let mut at = from;
    for _ in 0..HORIZON_MONTHS {
        let month = Month::of(at);
        let (num, den) = cost_rate(prices, rate, month.millis());
        if num <= 0 {
            return None;
        }
        let room = ms_between(at, month.end());
        // The cost of the rest of the month: room × num / den.
        let month_cost = room.saturating_mul(num) / den;
        if month_cost >= left {
            // The first millisecond at which the accrued cost reaches `left`.
            let ms = (left.saturating_mul(den) + num - 1) / num;
            let ms = i64::try_from(ms.min(room)).ok()?;
            return at.checked_add(jiff::SignedDuration::from_millis(ms)).ok();
        }
        left -= month_cost;
        at = month.end();
    }
    None
}

/// A project's credit at the time of its latest record (`asOf`), and when it falls low and runs
/// out at the rate in force.
pub fn credit_status(
    latest: Option<&ProjectUsage>,
    amount: Micros,
    prices: &Prices,
    low_percent: u8,
    created: Timestamp,
) -> CreditStatus {
    let (consumed, as_of, rate) = match latest.and_then(|r| Accrual::read(r).map(|a| (r, a))) {
        Some((r, a)) => (lifetime_cost(r, Some(prices)), a.since, a.rate),
        None => (0, created, Rate::default()),
    };
    let consumed = consumed.clamp(0, amount.max(0));
    let remaining = (amount - consumed).max(0);
    let low_level = amount.max(0) * i128::from(low_percent) / 100;
    let runs_out_at = (remaining > 0)
        .then(|| reaches(prices, &rate, as_of, remaining))
        .flatten();
    let low_at = (remaining > low_level)
        .then(|| reaches(prices, &rate, as_of, remaining - low_level))
        .flatten();
    CreditStatus {
        currency: prices.currency.clone(),
        amount: format_amount(amount),
        consumed: format_amount(consumed),
        remaining: format_amount(remaining),
        as_of: Time(as_of),
        low_at: low_at.map(Time),
        runs_out_at: runs_out_at.map(Time),
    }
}

/// The credit as of the last milestone `now` has passed: the instant it fell low (then exactly
/// the low threshold remains) or ran out (nothing remains). These are the only instants the
/// figures move between changes of rate, so a status holding them is written once at each.
pub fn at_milestone(c: CreditStatus, low_percent: u8, now: Timestamp) -> CreditStatus {
    let amount = parse_micros(&c.amount).unwrap_or(0);
    let passed = |t: &Option<Time>| t.as_ref().filter(|t| t.0 <= now).map(|t| t.0);
    let (at, remaining) = if let Some(at) = passed(&c.runs_out_at) {
        (at, 0)
    } else if let Some(at) = passed(&c.low_at) {
        (at, amount * i128::from(low_percent) / 100)
    } else {
        return c;
    };
    CreditStatus {
        consumed: format_amount(amount - remaining),
        remaining: format_amount(remaining),
        as_of: Time(at),
        ..c
    }
}

/// A customer's credit: consumed by every month billed to it (`records`: all of them), as of
/// the latest instant any of them is accrued to, and when it falls low and runs out at the sum of
/// the rates in force; then as of the milestone `now` has passed.
pub fn customer_credit(
    records: &[&ProjectUsage],
    amount: Micros,
    prices: &Prices,
    low_percent: u8,
    created: Timestamp,
    now: Timestamp,
) -> CreditStatus {
    let accruals: Vec<(&ProjectUsage, Accrual)> = records
        .iter()
        .filter_map(|r| Accrual::read(r).map(|a| (*r, a)))
        .collect();
    let as_of = accruals
        .iter()
        .map(|(_, a)| a.since)
        .max()
        .unwrap_or(created)
        .min(now.max(created));
    let mut consumed: Micros = 0;
    let mut rate = Rate::default();
    for (r, a) in &accruals {
        if a.state == UsageState::Closed {
            consumed += a.own_cost(Some(r), Some(prices));
            continue;
        }
        let mut open = a.clone();
        open.accrue_to(as_of);
        consumed += open.cost(prices).0;
        if open.month == Month::of(as_of) {
            rate.cpu += a.rate.cpu;
            rate.memory += a.rate.memory;
            rate.storage += a.rate.storage;
            rate.pods += a.rate.pods;
        }
    }
    let consumed = consumed.clamp(0, amount.max(0));
    let remaining = (amount - consumed).max(0);
    let low_level = amount.max(0) * i128::from(low_percent) / 100;
    let c = CreditStatus {
        currency: prices.currency.clone(),
        amount: format_amount(amount),
        consumed: format_amount(consumed),
        remaining: format_amount(remaining),
        as_of: Time(as_of),
        low_at: (remaining > low_level)
            .then(|| reaches(prices, &rate, as_of, remaining - low_level))
            .flatten()
            .map(Time),
        runs_out_at: (remaining > 0)
            .then(|| reaches(prices, &rate, as_of, remaining))
            .flatten()
            .map(Time),
    };
    at_milestone(c, low_percent, now)
}

/// Where a credit stands at `now`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CreditState {
    Plenty,
    Low,
    Exhausted,
}

pub fn credit_state(c: &CreditStatus, low_percent: u8, now: Timestamp) -> CreditState {
    let remaining = parse_micros(&c.remaining).unwrap_or(0);
    let amount = parse_micros(&c.amount).unwrap_or(0);
    let past = |t: &Option<Time>| t.as_ref().is_some_and(|t| t.0 <= now);
    if remaining <= 0 || past(&c.runs_out_at) {
        CreditState::Exhausted
    } else if past(&c.low_at) || remaining <= amount * i128::from(low_percent) / 100 {
        CreditState::Low
    } else {
        CreditState::Plenty
    }
}

/// Whose credit a condition speaks of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CreditHolder {
    Project,
    Customer,
}

/// `CreditLow` and `CreditExhausted` on a project or a customer; amounts only when `shown`
/// carries the credit (billing shown to members). `by_customer`: a project stopped by its
/// customer's credit. `policy`: the project's (a customer has none of its own).
pub fn set_credit_conditions(
    conds: &mut super::conditions::Conditions<'_>,
    holder: CreditHolder,
    shown: Option<&CreditStatus>,
    state: CreditState,
    by_customer: bool,
    policy: Option<crate::api::CreditExhaustedPolicy>,
) {
    use crate::api::CreditExhaustedPolicy as P;
    let whose = match holder {
        CreditHolder::Project => "the project's credit",
        CreditHolder::Customer => "the customer's credit",
    };
    let left = shown
        .map(|c| format!(" ({} {} of {} left)", c.remaining, c.currency, c.amount))
        .unwrap_or_default();
    let raise = match holder {
        CreditHolder::Project => "ask an owner of the customer or staff to raise spec.credit",
        CreditHolder::Customer => "ask staff to raise the customer's spec.credit",
    };
    if matches!(state, CreditState::Low | CreditState::Exhausted) {
        conds.set(
            "CreditLow",
            true,
            "BelowThreshold",
            format!("{whose} is running low{left}; {raise}"),
        );
    } else {
        conds.set(
            "CreditLow",
            false,
            "Enough",
            format!("{whose} is above its low threshold{left}"),
        );
    }
    if state == CreditState::Exhausted {
        let whose = if by_customer {
            "the customer's credit"
        } else {
            whose
        };
        let (reason, what) = match policy {
            Some(P::Suspend) => (
                "Suspended",
                "workloads suspended and pods: 0 until more credit comes",
            ),
            Some(P::Notify) => ("Notified", "the policy is Notify: nothing is stopped"),
            Some(P::None) => ("NoAction", "the policy is None: nothing is stopped"),
            None => (
                "Exhausted",
                "each project applies its creditExhaustedPolicy",
            ),
        };
        conds.set(
            "CreditExhausted",
            true,
            reason,
            format!("{whose} is used up{left}: {what}"),
        );
    } else {
        conds.set(
            "CreditExhausted",
            false,
            "CreditLeft",
            format!("{whose} is not used up{left}"),
        );
    }
}

/// The Warning Events a change of conditions calls for: `CreditLow` and `CreditExhausted` when
/// they turn True (never under the policy None).
pub fn credit_events(
    previous: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
    next: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
    policy: crate::api::CreditExhaustedPolicy,
) -> Vec<(&'static str, String)> {
    use super::conditions::is_true;
    if policy == crate::api::CreditExhaustedPolicy::None {
        return Vec::new();
    }
    ["CreditLow", "CreditExhausted"]
        .into_iter()
        .filter(|t| is_true(next, t) && !is_true(previous, t))
        .map(|t| {
            let message = next
                .iter()
                .find(|c| c.type_ == t)
                .map(|c| c.message.clone())
                .unwrap_or_default();
            (t, message)
        })
        .collect()
}

/// The most credit counted: 10^24 in the price list's currency. The schema allows any
/// non-negative number (`1e308`); a larger credit counts as this much, so that the sums and
/// percentages worked out on it stay far inside `Micros`.
pub const MAX_CREDIT_MICROS: Micros = 1_000_000_000_000_000_000_000_000_000_000;

/// Credit amounts in a spec (`spec.credit: 12.5`) in millionths (negative: none), at most
/// [`MAX_CREDIT_MICROS`].
pub fn credit_micros(credit: f64) -> Micros {
    if credit.is_finite() && credit > 0.0 {
        ((credit * 1_000_000.0).round() as Micros).min(MAX_CREDIT_MICROS)
    } else if credit == f64::INFINITY {
        MAX_CREDIT_MICROS
    } else {
        0
    }
}

/// The next instant a record changes by time alone: the end of its month while it is open.
pub fn next_close(latest: Option<&ProjectUsage>) -> Option<Timestamp> {
    let a = latest.and_then(Accrual::read)?;
    match a.state {
        UsageState::Open => Some(a.month.end()),
        UsageState::Closed if !a.rate.is_zero() => Some(a.month.next().end()),
        UsageState::Closed => None,
    }
}

/// The latest of a project's records (by month).
pub fn latest<'a>(records: impl IntoIterator<Item = &'a ProjectUsage>) -> Option<&'a ProjectUsage> {
    records
        .into_iter()
        .filter_map(|r| Month::parse(&r.spec.month).map(|m| (m, r)))
        .max_by_key(|(m, _)| *m)
        .map(|(_, r)| r)
}

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
