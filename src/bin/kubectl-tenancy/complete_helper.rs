//! `kubectl_complete-tenancy`: what kubectl (1.26 and later) runs to complete `kubectl tenancy
//! …`. It hands the words to `kubectl-tenancy __complete`, found next to this program or on
//! `PATH`, which prints one candidate a line.

use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    let beside = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("kubectl-tenancy")))
        .filter(|p| p.is_file());
    let program = beside.map_or_else(|| "kubectl-tenancy".into(), |p| p.into_os_string());
    match Command::new(program)
        .arg("__complete")
        .args(std::env::args_os().skip(1))
        .status()
    {
        Ok(s) if s.success() => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    }
}
