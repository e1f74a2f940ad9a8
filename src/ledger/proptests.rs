//! Property tests of the quota ledger's pure core (issue "crash-consistent under faults", part 4):
//! [`plan`] applies batches of reservations and releases to a ledger as it is stored, [`fits`]
//! checks one reservation. Any interleaving of reserves (growths, shrinks, dry runs) and releases,
//! batched in any way, is driven through them with the ledger "stored" between batches as
//! `write_batch` stores it; no cluster.
//!
//! Deterministic: a fixed seed, ChaCha, a bounded number of cases, no failure files.

use std::collections::BTreeMap;
use std::sync::Arc;

use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::TestRunner;

use super::*;
use crate::api::{CustomerSpec, ProjectSpec};
use crate::desired::quota::{allocation_of_list, from_strings};

/// This file's fixed seed.
const SEED: u64 = 0x7e4a_0c02;

const PROJECTS: &[&str] = &["a", "b", "c", "d"];
/// Resource names, aliases included (`cpu` is `requests.cpu`, `count/pods` is `pods`).
const KEYS: &[&str] = &[
    "requests.cpu",
    "cpu",
    "pods",
    "count/pods",
    "requests.memory",
    "limits.cpu",
];
/// Amounts, some negative or not quantities at all (stored before the schema refused them).
const AMOUNTS: &[&str] = &[
    "0", "1", "2", "3", "500m", "1500m", "2500m", "1Gi", "512Mi", "-1", "abc",
];

#[derive(Clone, Debug)]
enum Op {
    /// A project's `spec.quota.hard`, reserved as admission reserves it.
    Reserve {
        project: &'static str,
        hard: BTreeMap<&'static str, &'static str>,
        dry_run: bool,
    },
    /// A soft delete or a move releases the project's reservation.
    Release { project: &'static str },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (
            select(PROJECTS),
            prop::collection::btree_map(select(KEYS), select(AMOUNTS), 0..4),
            prop::bool::weighted(0.15),
        )
            .prop_map(|(project, hard, dry_run)| Op::Reserve {
                project,
                hard,
                dry_run
            }),
        1 => select(PROJECTS).prop_map(|project| Op::Release { project }),
    ]
}

#[derive(Clone, Debug)]
struct Case {
    /// The customer's `quota.hard` (`None`: no quota at all).
    limits: Option<BTreeMap<&'static str, &'static str>>,
    max_projects: Option<i32>,
    batches: Vec<Vec<Op>>,
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop::option::weighted(
            0.9,
            prop::collection::btree_map(
                select(KEYS),
                select(vec!["0", "1", "2", "4", "3500m", "2Gi", "-1", "abc"]),
                0..4,
            ),
        ),
        prop::option::weighted(0.3, 0..4i32),
        prop::collection::vec(prop::collection::vec(op(), 1..4), 1..10),
    )
        .prop_map(|(limits, max_projects, batches)| Case {
            limits,
            max_projects,
            batches,
        })
}

fn customer(c: &Case) -> Arc<Customer> {
    let spec = match &c.limits {
        None => serde_json::json!({}),
        Some(hard) => {
            let mut q = serde_json::json!({ "hard": hard });
            if let Some(n) = c.max_projects {
                q["projects"] = n.into();
            }
            serde_json::json!({ "quota": q })
        }
    };
    let mut customer = Customer::new(
        "acme",
        serde_json::from_value::<CustomerSpec>(spec).unwrap(),
    );
    customer.metadata.uid = Some("uid-acme".into());
    Arc::new(customer)
}

/// The change admission (`Ledger::reserve`) or a release (`Ledger::release`) submits; `k`
/// numbers the reservation instants.
fn change(customer: &Arc<Customer>, op: &Op, k: usize) -> Change {
    match op {
        Op::Reserve {
            project,
            hard,
            dry_run,
        } => {
            let p = Project::new(
                project,
                serde_json::from_value::<ProjectSpec>(
                    serde_json::json!({"customer": "acme", "quota": {"hard": hard}}),
                )
                .unwrap(),
            );
            let at = Timestamp::from_second(1_800_000_000 + k as i64).unwrap();
            Change {
                project: project.to_string(),
                entry: Some(Reservation {
                    hard: allocation(&p),
                    at,
                }),
                customer: Some(customer.clone()),
                seed: Entries::new(),
                dry_run: *dry_run,
                only_if: None,
            }
        }
        Op::Release { project } => Change {
            project: project.to_string(),
            entry: None,
            customer: None,
            seed: Entries::new(),
            dry_run: false,
            only_if: None,
        },
    }
}

/// The ledger as `write_batch` stores a plan's write (a replace keeps the object, a create makes
/// it with its owner).
fn store(current: Option<ConfigMap>, plan: &Plan) -> Option<ConfigMap> {
    let Some((entries, owner)) = &plan.write else {
        return current;
    };
    let mut cm = current.unwrap_or_default();
    cm.data = Some(encode(entries));
    if let Some(o) = owner {
        cm.metadata.owner_references = Some(vec![o.clone()]);
    }
    Some(cm)
}

fn entries_of(cm: &Option<ConfigMap>) -> Entries {
    cm.as_ref().map(decode).unwrap_or_default()
}

/// Checks that the stored reservations fit the customer's quota: for every resource it limits,
/// the sum of the reservations is at most the limit, and no more projects hold one than it
/// allows.
fn assert_within_limits(customer: &Customer, entries: &Entries) -> Result<(), TestCaseError> {
    let Some(q) = &customer.spec.quota else {
        return Ok(());
    };
    for (key, limit) in allocation_of_list(&q.hard) {
        let sum: Milli = entries
            .values()
            .filter_map(|r| from_strings(&r.hard).get(&key).copied())
            .sum();
        prop_assert!(
            sum <= limit,
            "{key}: {sum} reserved over the limit {limit}: {entries:?}"
        );
    }
    if let Some(max) = q.projects {
        prop_assert!(
            entries.len() as i64 <= i64::from(max),
            "{} projects reserved, {max} allowed",
            entries.len()
        );
    }
    Ok(())
}

/// For any interleaving of reserves and releases on one customer's ledger, in batches of any
/// size:
/// - the sum of the reservations never exceeds the customer's limit for any resource it limits
///   (aliases and negative amounts included), nor do more projects hold one than it allows;
/// - a refused reservation changes nothing: the batch without it writes the same ledger and
///   gives the others the same outcomes;
/// - a batch is the same as its changes one at a time (checked in order, written together);
/// - a dry run has the outcome the same reservation would have, and writes nothing;
/// - an admitted reservation never lowers what the project holds, and covers what it asked;
/// - a release removes the project's reservation, and releasing every project empties the
///   ledger.
#[test]
fn the_ledger_never_oversubscribes_and_refusals_change_nothing() {
    let reserved = std::cell::Cell::new(0u32);
    let refused = std::cell::Cell::new(0u32);
    let mut runner = TestRunner::new(crate::testing::proptest_config(SEED, 256));
    let result = runner.run(&case(), |c| {
        let customer = customer(&c);
        // Batched, as `write_batch` plans them, and one change at a time.
        let mut batched: Option<ConfigMap> = None;
        let mut single: Option<ConfigMap> = None;
        let mut k = 0;
        for batch in &c.batches {
            let changes: Vec<Change> = batch
                .iter()
                .map(|op| {
                    k += 1;
                    change(&customer, op, k)
                })
                .collect();
            let plan = plan(batched.as_ref(), &changes);
            prop_assert_eq!(plan.outcomes.len(), changes.len());

            // Refusals change nothing.
            let kept: Vec<Change> = changes
                .iter()
                .zip(&plan.outcomes)
                .filter(|(_, o)| o.is_ok())
                .map(|(c, _)| c.clone())
                .collect();
            let without = super::plan(batched.as_ref(), &kept);
            prop_assert!(without.outcomes.iter().all(|o| o.is_ok()));
            prop_assert_eq!(
                entries_of(&store(batched.clone(), &without)),
                entries_of(&store(batched.clone(), &plan)),
                "a refused reservation changed the ledger"
            );

            // One at a time.
            for (change, outcome) in changes.iter().zip(&plan.outcomes) {
                let before = entries_of(&single);
                let one = super::plan(single.as_ref(), std::slice::from_ref(change));
                prop_assert_eq!(
                    one.outcomes[0].is_ok(),
                    outcome.is_ok(),
                    "batched and one at a time disagree on {:?}",
                    change.project
                );
                if change.dry_run {
                    prop_assert!(one.write.is_none(), "a dry run wrote {:?}", one.write);
                    let mut real = change.clone();
                    real.dry_run = false;
                    let real = super::plan(single.as_ref(), std::slice::from_ref(&real));
                    prop_assert_eq!(
                        one.outcomes[0].is_ok(),
                        real.outcomes[0].is_ok(),
                        "a dry run decided otherwise than the reservation"
                    );
                }
                if one.outcomes[0].is_err() {
                    refused.set(refused.get() + 1);
                    prop_assert!(one.write.is_none(), "a refusal wrote {:?}", one.write);
                }
                single = store(single, &one);
                let after = entries_of(&single);
                match &change.entry {
                    Some(asked) if one.outcomes[0].is_ok() && !change.dry_run => {
                        reserved.set(reserved.get() + 1);
                        let held = from_strings(&after[&change.project].hard);
                        if let Some(prev) = before.get(&change.project) {
                            for (key, was) in from_strings(&prev.hard) {
                                let now = held.get(&key).copied().unwrap_or_default();
                                prop_assert!(now >= was, "{key} lowered from {was} to {now}");
                            }
                        }
                        for (key, want) in from_strings(&asked.hard) {
                            let now = held.get(&key).copied().unwrap_or_default();
                            prop_assert!(now >= want, "{key}: asked {want}, holds {now}");
                        }
                    }
                    Some(_) => prop_assert_eq!(&before, &after, "refused or dry: changed"),
                    None => {
                        prop_assert!(!after.contains_key(&change.project), "released, still held")
                    }
                }
                assert_within_limits(&customer, &after)?;
            }

            batched = store(batched, &plan);
            assert_within_limits(&customer, &entries_of(&batched))?;
            prop_assert_eq!(
                entries_of(&batched),
                entries_of(&single),
                "a batch differs from its changes one at a time"
            );
        }

        // Releasing everything returns to empty.
        let release_all: Vec<Change> = PROJECTS
            .iter()
            .map(|p| change(&customer, &Op::Release { project: p }, 0))
            .collect();
        let plan = plan(batched.as_ref(), &release_all);
        prop_assert!(plan.outcomes.iter().all(|o| o.is_ok()));
        let emptied = store(batched, &plan);
        prop_assert!(
            entries_of(&emptied).is_empty(),
            "{:?}",
            entries_of(&emptied)
        );
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    // The generator reaches both outcomes.
    assert!(reserved.get() > 0 && refused.get() > 0);
}

/// `fits` on its own: a reservation that fits, added to the others, stays within every limit;
/// one that does not fit would exceed one (or the project count). Resizing a project's own
/// reservation never counts it twice.
#[test]
fn fits_says_exactly_whether_the_sum_stays_within_the_limits() {
    let strategy = (
        case(),
        prop::collection::btree_map(
            select(PROJECTS),
            prop::collection::btree_map(select(KEYS), select(AMOUNTS), 0..3),
            0..4,
        ),
        select(PROJECTS),
        prop::collection::btree_map(select(KEYS), select(AMOUNTS), 0..3),
    );
    let mut runner = TestRunner::new(crate::testing::proptest_config(SEED, 256));
    let result = runner.run(&strategy, |(c, held, project, want)| {
        let customer = customer(&c);
        let canonical = |m: &BTreeMap<&str, &str>| {
            crate::desired::quota::to_strings(&from_strings(
                &m.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ))
        };
        let entries: Entries = held
            .iter()
            .map(|(p, h)| {
                (
                    p.to_string(),
                    Reservation {
                        hard: canonical(h),
                        at: Timestamp::UNIX_EPOCH,
                    },
                )
            })
            .collect();
        let want = canonical(&want);
        let fit = fits(&customer, &entries, project, &want).is_ok();
        let mut after = entries.clone();
        after.insert(
            project.to_string(),
            Reservation {
                hard: want,
                at: Timestamp::UNIX_EPOCH,
            },
        );
        // Whether the project's own reservation, in place of what it held, keeps within the
        // limits as far as the others are concerned.
        let Some(q) = &customer.spec.quota else {
            prop_assert!(fit, "no quota, yet refused");
            return Ok(());
        };
        let others_ok = allocation_of_list(&q.hard).into_iter().all(|(key, limit)| {
            let sum: Milli = after
                .values()
                .filter_map(|r| from_strings(&r.hard).get(&key).copied())
                .sum();
            sum <= limit
        }) && q
            .projects
            .is_none_or(|max| after.len() as i64 <= i64::from(max));
        prop_assert_eq!(fit, others_ok, "fits disagrees with the sums: {:?}", after);
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}
