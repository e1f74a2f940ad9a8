use super::*;

fn t(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn rate(cpu: &str, memory: &str, storage: &str, pods: i64) -> Rate {
    Rate::from_stored(&UsageRate {
        cpu: cpu.into(),
        memory: memory.into(),
        storage: storage.into(),
        pods,
    })
}

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

/// Runs `advance` as the reconcile would and "stores" the writes: each gets a resourceVersion,
/// the latest by month is returned.
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

    fn at(&mut self, now: &str, r: Rate, credit: Option<Micros>) -> Vec<ProjectUsage> {
        let p = prices();
        let input = UsageInput {
            project: "genomics",
            customer: "acme",
            latest: latest(self.records.iter()),
            rate: r,
            now: t(now),
            prices: Some(&p),
            credit,
        };
        let out = advance(&input);
        for w in &out {
            self.writes += 1;
            let mut w = w.clone();
            w.metadata.resource_version = Some(self.writes.to_string());
            self.records.retain(|r| r.metadata.name != w.metadata.name);
            self.records.push(w);
        }
        out
    }

    fn get(&self, name: &str) -> &ProjectUsage {
        self.records
            .iter()
            .find(|r| r.metadata.name.as_deref() == Some(name))
            .unwrap_or_else(|| panic!("no record {name}"))
    }
}

#[test]
fn a_pod_for_ten_hours_then_a_claim_for_five_give_exact_hours_and_cost() {
    let mut w = World::new();
    w.at("2026-12-01T08:00:00Z", rate("500m", "1Gi", "0", 1), None);
    w.at("2026-12-01T18:00:00Z", rate("0", "0", "10Gi", 0), None);
    w.at("2026-12-01T23:00:00Z", Rate::default(), None);
    let r = &w.get("genomics.2026-12").spec;
    assert_eq!(r.totals.cpu_core_hours, "5");
    assert_eq!(r.totals.memory_gib_hours, "10");
    assert_eq!(r.totals.storage_gib_hours, "50");
    assert_eq!(r.totals.pod_hours, "10");
    assert_eq!(r.state, UsageState::Open);
    assert_eq!(r.since.0, t("2026-12-01T23:00:00Z"));
    // December has 744 hours: 20 × 5/744 + 4.5 × 10/744 + 0.1 × 50/744 + 0.5 × 10/744.
    let cost = r.cost.as_ref().unwrap();
    assert_eq!(cost.by_resource["cpu"], "0.13"); // 0.134408
    assert_eq!(cost.by_resource["memory"], "0.06"); // 0.060483
    assert_eq!(cost.by_resource["storage"], "0.01"); // 0.006720
    assert_eq!(cost.by_resource["pods"], "0.01"); // 0.006720
    assert_eq!(cost.total, "0.21"); // 0.208331
    assert_eq!(cost.prices["memory"], "4.5");
    assert_eq!(w.writes, 3, "one write per change of rate");
}

#[test]
fn nothing_is_written_while_the_rate_holds() {
    let mut w = World::new();
    assert!(
        w.at("2026-12-01T00:00:00Z", Rate::default(), None)
            .is_empty(),
        "no usage, no record"
    );
    assert_eq!(
        w.at("2026-12-02T00:00:00Z", rate("1", "0", "0", 1), None)
            .len(),
        1
    );
    for now in [
        "2026-12-02T00:00:01Z",
        "2026-12-15T00:00:00Z",
        "2026-12-31T23:59:59Z",
    ] {
        assert!(
            w.at(now, rate("1000m", "0", "0", 1), None).is_empty(),
            "{now}"
        );
    }
    // The same rate in another spelling is the same rate.
    assert!(
        w.at("2026-12-31T23:59:59Z", rate("1", "0Gi", "0", 1), None)
            .is_empty()
    );
}

#[test]
fn the_month_closes_at_midnight_utc_and_the_rate_carries_on() {
    let mut w = World::new();
    w.at("2026-10-31T22:00:00Z", rate("2", "0", "0", 1), None);
    // Quiet until after the month's end: the close and the new month, nothing else.
    let out = w.at("2026-11-01T00:00:05Z", rate("2", "0", "0", 1), None);
    let names: Vec<_> = out
        .iter()
        .map(|r| r.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(names, ["genomics.2026-10", "genomics.2026-11"]);
    let oct = &w.get("genomics.2026-10").spec;
    assert_eq!(oct.state, UsageState::Closed);
    assert_eq!(oct.since.0, t("2026-11-01T00:00:00Z"));
    assert_eq!(
        oct.totals.cpu_core_hours, "4",
        "2 cores for the last 2 hours of October"
    );
    assert_eq!(oct.closed_at.as_ref().unwrap().0, t("2026-11-01T00:00:05Z"));
    assert_eq!(
        out[0].metadata.resource_version.as_deref(),
        Some("1"),
        "a conditional replace"
    );
    assert_eq!(out[1].metadata.resource_version, None, "a create");
    let nov = &w.get("genomics.2026-11").spec;
    assert_eq!(
        (nov.state, nov.since.0),
        (UsageState::Open, t("2026-11-01T00:00:00Z"))
    );
    assert_eq!(nov.rate_since.0, t("2026-10-31T22:00:00Z"));
    // October (744 hours) costs 4 core-hours and 2 pod-hours; it moves into costBefore.
    assert_eq!(
        nov.cost_before,
        micros_string(20_000_000 * 4 / 744 + 500_000 * 2 / 744)
    );
    // A closed month is never written again.
    let closed = w.get("genomics.2026-10").clone();
    w.at("2026-11-20T00:00:00Z", rate("1", "0", "0", 1), None);
    w.at("2026-12-02T00:00:00Z", Rate::default(), None);
    assert_eq!(w.get("genomics.2026-10").spec, closed.spec);
    assert_eq!(w.get("genomics.2026-10").metadata, closed.metadata);
    let nov = &w.get("genomics.2026-11").spec;
    assert_eq!(nov.state, UsageState::Closed);
    // 2 cores × 19 days, then 1 core × 11 days.
    assert_eq!(
        nov.totals.cpu_core_hours,
        (2 * 19 * 24 + 11 * 24).to_string()
    );
    assert_eq!(nov.days.len(), 30);
    assert_eq!(
        Exact::from_stored(&nov.days["20"]).cpu,
        1000 * 86_400_000,
        "1 core all of the 20th"
    );
}

#[test]
fn months_missed_while_the_operator_was_down_are_closed_each_in_turn() {
    let mut w = World::new();
    w.at("2026-09-15T00:00:00Z", rate("1", "0", "0", 0), None);
    let out = w.at("2027-01-10T00:00:00Z", rate("1", "0", "0", 0), None);
    let names: Vec<_> = out.iter().map(|r| r.spec.month.clone()).collect();
    assert_eq!(
        names,
        ["2026-09", "2026-10", "2026-11", "2026-12", "2027-01"]
    );
    for (m, hours) in [
        ("2026-09", 16 * 24),
        ("2026-10", 31 * 24),
        ("2026-11", 30 * 24),
        ("2026-12", 31 * 24),
    ] {
        let r = &w.get(&format!("genomics.{m}")).spec;
        assert_eq!(
            (r.state, r.totals.cpu_core_hours.clone()),
            (UsageState::Closed, hours.to_string()),
            "{m}"
        );
    }
    let jan = &w.get("genomics.2027-01").spec;
    assert_eq!(
        (jan.state, jan.since.0),
        (UsageState::Open, t("2027-01-01T00:00:00Z"))
    );
    // A month of 1 core costs the cpu price, whatever its length.
    assert_eq!(
        parse_micros(&jan.cost_before),
        Some(20_000_000 * 16 / 30 + 3 * 20_000_000)
    );
}

#[test]
fn an_idle_project_gets_no_records_until_it_uses_something() {
    let mut w = World::new();
    w.at("2026-09-15T00:00:00Z", rate("1", "0", "0", 0), None);
    w.at("2026-09-16T00:00:00Z", Rate::default(), None);
    assert_eq!(
        w.at("2026-10-01T00:00:01Z", Rate::default(), None).len(),
        1,
        "the close"
    );
    assert!(
        w.at("2026-12-01T00:00:00Z", Rate::default(), None)
            .is_empty()
    );
    let out = w.at("2026-12-05T00:00:00Z", rate("500m", "0", "0", 0), None);
    assert_eq!(out.len(), 1);
    let dec = &out[0].spec;
    assert_eq!(
        (dec.month.as_str(), dec.since.0),
        ("2026-12", t("2026-12-05T00:00:00Z"))
    );
    assert_eq!(parse_micros(&dec.cost_before), Some(20_000_000 * 24 / 720));
}

#[test]
fn a_move_is_written_once_and_bills_the_new_customer() {
    let mut w = World::new();
    w.at("2026-12-01T00:00:00Z", rate("1", "0", "0", 0), None);
    let p = prices();
    let moved = advance(&UsageInput {
        project: "genomics",
        customer: "globex",
        latest: latest(w.records.iter()),
        rate: rate("1", "0", "0", 0),
        now: t("2026-12-02T00:00:00Z"),
        prices: Some(&p),
        credit: None,
    });
    assert_eq!(moved.len(), 1);
    assert_eq!(moved[0].spec.customer, "globex");
    assert_eq!(
        moved[0].spec.totals.cpu_core_hours, "24",
        "accrued to the move"
    );
}

#[test]
fn a_clock_that_goes_back_writes_nothing_and_counts_nothing_twice() {
    let mut w = World::new();
    w.at("2026-12-10T00:00:00Z", rate("1", "0", "0", 0), None);
    assert!(
        w.at("2026-11-10T00:00:00Z", rate("2", "0", "0", 0), None)
            .is_empty()
    );
    let out = w.at("2026-12-09T00:00:00Z", rate("2", "0", "0", 0), None);
    assert_eq!(
        out[0].spec.totals.cpu_core_hours, "0",
        "no time before `since` counts"
    );
    assert_eq!(out[0].spec.since.0, t("2026-12-10T00:00:00Z"));
}

#[test]
fn advancing_twice_at_the_same_instant_changes_nothing() {
    for (from, to) in [
        ("2026-10-03T00:00:00Z", "2026-10-03T05:00:00Z"),
        ("2026-10-03T00:00:00Z", "2026-12-03T05:00:00Z"),
        ("2026-02-28T23:00:00Z", "2026-03-01T01:00:00Z"),
    ] {
        let mut w = World::new();
        w.at(from, rate("1", "1Gi", "0", 1), Some(5_000_000));
        w.at(to, rate("3", "1Gi", "0", 2), Some(5_000_000));
        assert!(
            w.at(to, rate("3", "1Gi", "0", 2), Some(5_000_000))
                .is_empty(),
            "{from} → {to}"
        );
    }
}

#[test]
fn an_open_month_is_read_as_it_stands_now() {
    let mut w = World::new();
    w.at("2026-12-01T00:00:00Z", rate("500m", "0", "0", 1), None);
    let r = w.get("genomics.2026-12").clone();
    let p = prices();
    let now = at(&r, t("2026-12-01T10:00:00Z"), Some(&p), None);
    assert_eq!(now.spec.totals.cpu_core_hours, "5");
    assert_eq!(now.spec.since.0, t("2026-12-01T10:00:00Z"));
    let later = at(&r, t("2027-02-01T00:00:00Z"), Some(&p), None);
    assert_eq!(
        later.spec.totals.pod_hours,
        (31 * 24).to_string(),
        "never past the month's end"
    );
    assert_eq!(later.metadata, r.metadata);
}

#[test]
fn credit_runs_out_at_the_computed_instant() {
    let p = prices();
    // 1 EUR at 500m (10 EUR a month): 744/10 = 74.4 hours in December.
    let half = rate("500m", "0", "0", 0);
    let cpu_only = Prices::parse(&["cpu=20".into()], "EUR").unwrap().unwrap();
    assert_eq!(
        reaches(&cpu_only, &half, t("2026-12-01T00:00:00Z"), 1_000_000),
        Some(t("2026-12-04T02:24:00Z"))
    );
    // Across a month's end: 12 hours of December, then 74.4 hours of January (also 744 hours).
    let from = t("2026-12-31T12:00:00Z");
    let spent_in_december = 12 * 10_000_000 / 744;
    let at = reaches(&cpu_only, &half, from, spent_in_december + 1_000_000).unwrap();
    assert_eq!(at, t("2027-01-04T02:24:00Z"));
    assert_eq!(
        reaches(&p, &Rate::default(), from, 1),
        None,
        "a zero rate never runs out"
    );
    assert_eq!(reaches(&p, &half, from, 0), Some(from));

    let mut w = World::new();
    w.at("2026-12-01T00:00:00Z", half, Some(1_000_000));
    let c = credit_status(
        latest(w.records.iter()),
        1_000_000,
        &cpu_only,
        20,
        t("2026-11-01T00:00:00Z"),
    );
    assert_eq!(
        (c.amount.as_str(), c.consumed.as_str(), c.remaining.as_str()),
        ("1.00", "0.00", "1.00")
    );
    assert_eq!(c.runs_out_at.as_ref().unwrap().0, t("2026-12-04T02:24:00Z"));
    // 80 % of it: 59.52 hours.
    assert_eq!(c.low_at.as_ref().unwrap().0, t("2026-12-03T11:31:12Z"));
    assert_eq!(
        credit_state(&c, 20, t("2026-12-03T11:31:11Z")),
        CreditState::Plenty
    );
    assert_eq!(
        credit_state(&c, 20, t("2026-12-03T11:31:12Z")),
        CreditState::Low
    );
    assert_eq!(
        credit_state(&c, 20, t("2026-12-04T02:24:00Z")),
        CreditState::Exhausted
    );

    // The pod stops after 10 hours: the credit holds where it is.
    w.at("2026-12-01T10:00:00Z", Rate::default(), Some(1_000_000));
    let c = credit_status(
        latest(w.records.iter()),
        1_000_000,
        &cpu_only,
        20,
        t("2026-11-01T00:00:00Z"),
    );
    assert_eq!(
        (
            c.consumed.as_str(),
            c.remaining.as_str(),
            c.runs_out_at.clone()
        ),
        ("0.13", "0.87", None)
    );
    assert_eq!(
        credit_state(&c, 20, t("2030-01-01T00:00:00Z")),
        CreditState::Plenty
    );
    // More than the credit was spent: nothing remains, and more credit brings some back.
    let c = credit_status(
        latest(w.records.iter()),
        100_000,
        &cpu_only,
        20,
        t("2026-11-01T00:00:00Z"),
    );
    assert_eq!(
        (c.consumed.as_str(), c.remaining.as_str()),
        ("0.10", "0.00")
    );
    assert_eq!(
        credit_state(&c, 20, t("2026-12-01T10:00:00Z")),
        CreditState::Exhausted
    );
    assert_eq!(
        w.get("genomics.2026-12").spec.credit_consumed.as_deref(),
        Some("0.134408"),
        "the month consumed its whole cost from a credit of 1"
    );
}

#[test]
fn months_and_amounts_read_and_print_back() {
    assert_eq!(Month::parse("2026-02").unwrap().millis(), 28 * 86_400_000);
    assert_eq!(Month::parse("2028-02").unwrap().millis(), 29 * 86_400_000);
    assert_eq!(
        Month::parse("2026-12").unwrap().next().to_string(),
        "2027-01"
    );
    for bad in ["2026-13", "2026-1", "26-01", "2026-00", "current", ""] {
        assert_eq!(Month::parse(bad), None, "{bad}");
    }
    assert_eq!(decimal(5 * PER_HOUR, PER_HOUR), "5");
    assert_eq!(decimal(PER_HOUR / 3, PER_HOUR), "0.333333");
    assert_eq!(decimal(1, PER_HOUR), "0");
    assert_eq!(micros_string(4_500_000), "4.5");
    assert_eq!(parse_micros("-0.25"), Some(-250_000));
    assert_eq!(credit_micros(12.5), 12_500_000);
    assert_eq!(credit_micros(f64::NAN), 0);
}

#[test]
fn the_largest_credit_the_schema_allows_is_counted_without_overflow() {
    for credit in [1e308, f64::INFINITY, 1e31] {
        let amount = credit_micros(credit);
        assert_eq!(amount, MAX_CREDIT_MICROS, "{credit}");
        let now = t("2026-03-10T12:00:00Z");
        let c = customer_credit(&[], amount, &prices(), 80, t("2026-03-01T00:00:00Z"), now);
        assert_eq!(c.remaining, c.amount);
        let state = credit_state(&c, 80, now);
        let _ = at_milestone(c, 80, now);
        let _ = state;
    }
    assert_eq!(credit_micros(12.5), 12_500_000);
    assert_eq!(credit_micros(-1.0), 0);
}
