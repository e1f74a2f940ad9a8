//! `kubectl tenancy`: the portal's everyday actions as one kubectl plugin command each.
//!
//! Reads go through `views.tenancy.dev` (what the requester may see, with the portal's
//! filters); writes are ordinary Project, ProjectMembership and Customer writes through
//! kube-apiserver, so the admission webhook decides and its refusal is shown as it is.
//! Every decision that does not need the cluster (dates, selectors, rows, the 409 advice, the
//! checklist dialogue's next question) is a pure function with its tests next to it.

mod checklist;
mod client;
mod completion;
mod dates;
mod lifecycle;
mod members;
mod output;
mod projects;
mod usage;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use client::Connection;
use output::Format;

/// The portal's actions on customers, projects and memberships, as kubectl commands.
#[derive(Parser, Debug)]
#[command(
    name = "kubectl-tenancy",
    bin_name = "kubectl tenancy",
    version,
    about = "The tenancy portal's actions as kubectl commands: projects, members, delete and recover, usage, checklists.",
    after_help = "Reads go through views.tenancy.dev (what you may see); writes go through kube-apiserver and the tenancy webhook, which decides."
)]
pub struct Cli {
    #[command(flatten)]
    pub conn: Connection,
    /// Output format: table, wide, json, yaml or name.
    #[arg(short = 'o', long = "output", global = true, value_enum, default_value_t = Format::Table)]
    pub output: Format,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// The projects you may see, with your roles (the portal's project list and filters).
    Projects(projects::ProjectsArgs),
    /// The role holders of a project (`members PROJECT`) or of a customer (`--customer C`).
    Members(members::MembersArgs),
    /// Gives SUBJECT a role in PROJECT (a ProjectMembership).
    AddMember(members::AddMemberArgs),
    /// Changes when SUBJECT's role in PROJECT ends (`--at T`), or makes it permanent (`--never`).
    Expire(members::ExpireArgs),
    /// Takes SUBJECT's role in PROJECT away (deletes the membership).
    RemoveMember(members::RemoveMemberArgs),
    /// Accepts your invitation to PROJECT (after a recovery that invited the previous team).
    Accept(members::AcceptArgs),
    /// Deletes PROJECT (a soft delete); when workloads still run, says what and how to remove them.
    Delete(lifecycle::DeleteArgs),
    /// Recovers a deleted PROJECT from its archive, optionally with its team.
    Recover(lifecycle::RecoverArgs),
    /// Moves PROJECT to another customer (staff only).
    Move(lifecycle::MoveArgs),
    /// Sets PROJECT's end date (`--on D`).
    End(lifecycle::EndArgs),
    /// Moves PROJECT's end date later (`--to D`).
    Extend(lifecycle::ExtendArgs),
    /// A project's (or a customer's) usage and cost for a month, with a per-day chart.
    Usage(usage::UsageArgs),
    /// The questions a new project of CUSTOMER must answer, those asked first on top.
    Checklist(checklist::ChecklistArgs),
    /// Creates a project, asking the customer's checklist questions in order.
    NewProject(checklist::NewProjectArgs),
    /// Prints a shell completion script (bash, zsh, fish).
    Completion(completion::CompletionArgs),
    /// Completion candidates for the words given (used by `kubectl_complete-tenancy`).
    #[command(name = "__complete", hide = true)]
    Complete(completion::CompleteArgs),
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    // Completion takes the words as typed (flags included), not as clap would parse them.
    let args: Vec<String> = std::env::args().collect();
    let result = if args.get(1).map(String::as_str) == Some("__complete") {
        let words = completion::CompleteArgs {
            words: args[2..].to_vec(),
        };
        completion::complete(&Connection::default(), words).await
    } else {
        run(Cli::parse()).await
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), String> {
    let out = cli.output;
    let conn = &cli.conn;
    match cli.command {
        Command::Completion(a) => completion::print_script(a),
        Command::Complete(a) => completion::complete(conn, a).await,
        Command::Projects(a) => projects::run(conn, out, a).await,
        Command::Members(a) => members::list(conn, out, a).await,
        Command::AddMember(a) => members::add(conn, out, a).await,
        Command::Expire(a) => members::expire(conn, out, a).await,
        Command::RemoveMember(a) => members::remove(conn, a).await,
        Command::Accept(a) => members::accept(conn, a).await,
        Command::Delete(a) => lifecycle::delete(conn, a).await,
        Command::Recover(a) => lifecycle::recover(conn, out, a).await,
        Command::Move(a) => lifecycle::move_to(conn, out, a).await,
        Command::End(a) => lifecycle::end(conn, out, a).await,
        Command::Extend(a) => lifecycle::extend(conn, out, a).await,
        Command::Usage(a) => usage::run(conn, out, a).await,
        Command::Checklist(a) => checklist::show(conn, out, a).await,
        Command::NewProject(a) => checklist::new_project(conn, out, a).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn the_names_the_issue_promises_parse() {
        for line in [
            "projects --can-manage --can-admin --customer a,b --query x --conceal-finished --include-terminated --created-after 2026-01-01 --modified-after 7d --order-by -created -o wide",
            "members p1 --role Manager --user carol --expiring-before 30d",
            "members --customer acme -o json",
            "add-member p1 carol@acme.example --role Member --until 2027-01-31",
            "expire p1 carol@acme.example --at 30d",
            "expire p1 carol@acme.example --never",
            "remove-member p1 carol@acme.example",
            "accept p1",
            "delete p1",
            "recover p1 --restore-team --end-date 2027-06-30",
            "recover p1 --invite",
            "move p1 --to globex --drop-permissions",
            "end p1 --on 2027-01-31",
            "extend p1 --to 2027-12-31",
            "usage p1 --month current",
            "usage --customer acme --month 2026-10",
            "checklist acme",
            "new-project p2 --customer acme --dry-run -o yaml",
            "completion bash",
            "--kubeconfig /tmp/k --context dev --as carol --as-group g1 --as-group g2 projects",
        ] {
            let mut args = vec!["kubectl-tenancy"];
            args.extend(line.split(' '));
            if let Err(e) = Cli::try_parse_from(&args) {
                panic!("{line}: {e}");
            }
        }
        for bad in [
            "expire p1 carol --at 30d --never",
            "expire p1 carol",
            "recover p1 --restore-team --invite",
            "move p1",
            "end p1",
        ] {
            let mut args = vec!["kubectl-tenancy"];
            args.extend(bad.split(' '));
            assert!(
                Cli::try_parse_from(&args).is_err(),
                "{bad} should not parse"
            );
        }
    }
}
