//! The reconcilers and the process that runs them.

use std::process::ExitCode;

/// Options of `tenancy-operator run`.
#[derive(clap::Args, Debug, Clone)]
pub struct RunArgs {
    /// Address of the metrics (/metrics) and health (/healthz, /readyz) server.
    #[arg(long, env = "TENANCY_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: std::net::SocketAddr,
    /// Log format: text or json.
    #[arg(long, env = "TENANCY_LOG_FORMAT", default_value = "text")]
    pub log_format: String,
}

/// Runs the operator until SIGINT/SIGTERM.
pub fn run_blocking(_args: RunArgs) -> ExitCode {
    eprintln!("the operator's controllers are not wired yet");
    ExitCode::FAILURE
}
