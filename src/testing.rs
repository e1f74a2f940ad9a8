//! What the crate's property tests share: a fixed seed, a bounded number of cases, nothing
//! written to disk, so `make test` runs the same cases every time.

use proptest::strategy::Strategy;
use proptest::test_runner::{Config, RngAlgorithm, RngSeed, TestCaseError, TestRunner};

/// `cases` cases drawn from the fixed `seed`, no failure persistence files.
pub fn proptest_config(seed: u64, cases: u32) -> Config {
    Config {
        cases,
        rng_algorithm: RngAlgorithm::ChaCha,
        rng_seed: RngSeed::Fixed(seed),
        failure_persistence: None,
        ..Config::default()
    }
}

/// Runs one property; a failure panics with proptest's minimal failing input.
pub fn check<S: Strategy>(
    seed: u64,
    cases: u32,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) where
    S::Value: std::fmt::Debug,
{
    let mut runner = TestRunner::new(proptest_config(seed, cases));
    if let Err(e) = runner.run(&strategy, test) {
        panic!("{e}");
    }
}
