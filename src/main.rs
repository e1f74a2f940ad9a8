use clap::Parser;

fn main() -> std::process::ExitCode {
    tenancy_operator::cli::Cli::parse().run()
}
