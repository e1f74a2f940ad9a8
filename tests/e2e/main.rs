//! The end-to-end suite: one real control plane (etcd, kube-apiserver,
//! kube-controller-manager) for the whole run, the CRDs installed, then every test module's
//! trials on a shared tokio runtime. Run with `cargo test --test e2e` (filters and `--list`
//! work as with any libtest binary).
//!
//! If the control plane cannot start, the run fails with the reason and the failing process's
//! log: it never skips.

mod foundation;
mod support;

use std::process::ExitCode;
use std::sync::Arc;

use libtest_mimic::{Arguments, Trial};

use support::Env;

/// Every module's tests, in one place. A new module adds one line here.
fn all_trials(env: &Arc<Env>) -> Vec<Trial> {
    let mut trials = Vec::new();
    trials.extend(foundation::trials(env));
    trials
}

fn main() -> ExitCode {
    let args = Arguments::from_args();
    if args.list {
        let env = Arc::new(Env::unstarted().expect("a runtime"));
        libtest_mimic::run(&args, all_trials(&env)).exit();
    }

    let env = match Env::start() {
        Ok(env) => env,
        Err(reason) => {
            eprintln!("\nerror: the e2e control plane could not start; no test ran.\n{reason}\n");
            return ExitCode::FAILURE;
        }
    };
    // The operator runs as its own process against this cluster once `run` works:
    //     env.set_operator(support::start_operator(env.cluster(), &[])?);
    let env = Arc::new(env);

    let conclusion = libtest_mimic::run(&args, all_trials(&env));

    match Arc::try_unwrap(env) {
        Ok(env) => env.shutdown(),
        Err(_) => {
            eprintln!("[e2e] a test still holds the environment; its processes die with this one")
        }
    }
    conclusion.exit_code()
}
