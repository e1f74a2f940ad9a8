//! Command-line entry: `run`, `crd`, `dev`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Customers, projects and expiring memberships for any Kubernetes cluster.
#[derive(Parser, Debug)]
#[command(name = "tenancy-operator", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the operator: controllers, webhook server, metrics and health endpoints.
    Run(Box<crate::run::RunArgs>),
    /// Print the CRDs as YAML, or write/check one file per CRD in a folder.
    Crd {
        /// Write `<group>_<plural>.yaml` files into this folder instead of printing.
        #[arg(long, conflicts_with = "check")]
        write: Option<PathBuf>,
        /// Exit non-zero if the files in this folder differ from the generated CRDs.
        #[arg(long)]
        check: Option<PathBuf>,
    },
    /// Start a local control plane with the CRDs, the operator and the examples, until Ctrl-C.
    Dev(crate::devcluster::dev::DevArgs),
    /// Print the README's `make bench` table from the kept results, or write/check it in a README.
    BenchTable {
        /// The folder of results `make bench` keeps (one JSON file per run size).
        #[arg(long, default_value = "bench")]
        results: PathBuf,
        /// Write the table into this README, between its markers.
        #[arg(long, conflicts_with = "check")]
        write: Option<PathBuf>,
        /// Exit non-zero if this README's table differs from what the results make.
        #[arg(long)]
        check: Option<PathBuf>,
    },
}

impl Cli {
    pub fn run(self) -> ExitCode {
        match self.command {
            Command::Run(args) => crate::run::run_blocking(*args),
            Command::Crd { write, check } => crd_command(write, check),
            Command::Dev(args) => crate::devcluster::dev::run(args),
            Command::BenchTable {
                results,
                write,
                check,
            } => bench_table_command(&results, write, check),
        }
    }
}

fn bench_table_command(
    results: &std::path::Path,
    write: Option<PathBuf>,
    check: Option<PathBuf>,
) -> ExitCode {
    use crate::devcluster::bench_table;
    let outcome = match (write, check) {
        (Some(readme), _) => bench_table::update(&readme, results, false),
        (None, Some(readme)) => bench_table::update(&readme, results, true),
        (None, None) => bench_table::read_results(results).map(|r| {
            print!("{}", bench_table::render(&r));
        }),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn crd_command(write: Option<PathBuf>, check: Option<PathBuf>) -> ExitCode {
    let crds = crate::api::crds();
    if let Some(dir) = write {
        for crd in &crds {
            let path = dir.join(crate::api::crd_file_name(crd));
            if let Err(e) = std::fs::write(&path, crate::api::crd_yaml(crd)) {
                eprintln!("cannot write {}: {e}", path.display());
                return ExitCode::FAILURE;
            }
            println!("wrote {}", path.display());
        }
        return ExitCode::SUCCESS;
    }
    if let Some(dir) = check {
        let drift = crate::api::crd_drift(&dir);
        if drift.is_empty() {
            return ExitCode::SUCCESS;
        }
        for d in drift {
            eprintln!("{d}");
        }
        eprintln!(
            "run `make crds` (tenancy-operator crd --write {}) and commit the result",
            dir.display()
        );
        return ExitCode::FAILURE;
    }
    for crd in &crds {
        print!("---\n{}", crate::api::crd_yaml(crd));
    }
    ExitCode::SUCCESS
}
