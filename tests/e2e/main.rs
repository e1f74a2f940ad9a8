//! The end-to-end suite: one real control plane (etcd, kube-apiserver,
//! kube-controller-manager) for the whole run, the CRDs installed, then every test module's
//! trials on a shared tokio runtime. Run with `cargo test --test e2e` (filters and `--list`
//! work as with any libtest binary).
//!
//! If the control plane cannot start, the run fails with the reason and the failing process's
//! log: it never skips.
//!
//! Two phases: every module's trials run concurrently first; then the exclusive trials (which
//! measure the whole control plane, e.g. that nothing writes in a quiet window) run alone.

mod adversarial;
mod chart;
mod checklists;
mod faults;
mod foundation;
mod generated;
mod lifecycle;
mod plugin;
mod promises;
mod reconcile;
mod restarts;
mod restore;
mod support;
mod usage;
mod views;

use std::process::ExitCode;
use std::sync::Arc;

use libtest_mimic::{Arguments, Trial};

use support::Env;

/// Whether the suite runs `tenancy-operator run` against the cluster (its log goes to
/// `<cluster dir>/operator.log`; `Env::operator()` tells tests whether it runs).
const START_OPERATOR: bool = true;

/// Every module's tests, in one place. A new module adds one line here.
fn all_trials(env: &Arc<Env>) -> Vec<Trial> {
    let mut trials = Vec::new();
    trials.extend(foundation::trials(env));
    trials.extend(reconcile::trials(env));
    trials.extend(lifecycle::trials(env));
    trials.extend(chart::trials(env));
    trials.extend(adversarial::trials(env));
    trials.extend(promises::trials(env));
    trials.extend(views::trials(env));
    trials.extend(checklists::trials(env));
    trials.extend(plugin::trials(env));
    trials
}

/// Trials that must have the cluster to themselves; they run after all the others.
fn exclusive_trials(env: &Arc<Env>) -> Vec<Trial> {
    let mut trials = reconcile::exclusive_trials(env);
    trials.extend(lifecycle::exclusive_trials(env));
    trials.extend(chart::exclusive_trials(env));
    trials.extend(promises::exclusive_trials(env));
    trials.extend(usage::exclusive_trials(env));
    trials.extend(faults::exclusive_trials(env));
    trials.extend(restore::exclusive_trials(env));
    trials.extend(generated::exclusive_trials(env));
    trials.extend(restarts::exclusive_trials(env));
    trials
}

fn main() -> ExitCode {
    let args = Arguments::from_args();
    if args.list {
        let env = Arc::new(Env::unstarted().expect("a runtime"));
        let mut trials = all_trials(&env);
        trials.extend(exclusive_trials(&env));
        libtest_mimic::run(&args, trials).exit();
    }

    let mut env = match Env::start() {
        Ok(env) => env,
        Err(reason) => {
            eprintln!("\nerror: the e2e control plane could not start; no test ran.\n{reason}\n");
            return ExitCode::FAILURE;
        }
    };
    if START_OPERATOR {
        // The test kinds the operator counts are served before it starts, so it finds them at
        // once instead of looking again 30 s later.
        let installed = env.block_on(async {
            tenancy_operator::devcluster::apply::install_crds(
                &env.client().await,
                &reconcile::test_crds(),
                support::FIELD_MANAGER,
                std::time::Duration::from_secs(60),
            )
            .await
        });
        if let Err(e) = installed {
            eprintln!("\nerror: the test CRDs could not be installed; no test ran.\n{e}\n");
            env.shutdown();
            return ExitCode::FAILURE;
        }
        let mut args = env.local().run_args();
        args.push(format!(
            "--clock-offset-file={}",
            env.clock_offset_file().display()
        ));
        args.push(format!("--count-extra-kind={}", reconcile::WIDGETS));
        args.push(format!(
            "--staff-groups=tenancy:staff,system:masters,{}",
            promises::EXTRA_STAFF_GROUP
        ));
        args.push(format!("--price={}", reconcile::PRICES));
        args.push("--currency=EUR".into());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        match support::start_operator(env.cluster(), &args) {
            Ok(operator) => env.set_operator(operator),
            Err(reason) => {
                eprintln!("\nerror: the operator did not start; no test ran.\n{reason}\n");
                env.shutdown();
                return ExitCode::FAILURE;
            }
        }
    }
    let env = Arc::new(env);

    let shared = libtest_mimic::run(&args, all_trials(&env));
    // One at a time: each has the cluster (and the operator's clock) to itself.
    let alone = Arguments {
        test_threads: Some(1),
        ..args.clone()
    };
    let exclusive = libtest_mimic::run(&alone, exclusive_trials(&env));

    match Arc::try_unwrap(env) {
        Ok(env) => env.shutdown(),
        Err(_) => {
            eprintln!("[e2e] a test still holds the environment; its processes die with this one")
        }
    }
    if shared.has_failed() || exclusive.has_failed() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
