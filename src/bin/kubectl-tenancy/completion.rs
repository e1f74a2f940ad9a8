//! Shell completion: `kubectl tenancy completion bash|zsh|fish` prints a script for the
//! `kubectl-tenancy` command, and `kubectl_complete-tenancy` (which kubectl ≥ 1.26 runs to
//! complete `kubectl tenancy …`) answers with one candidate per line: subcommands, flags, flag
//! values, and the names of the projects and customers you may see.

use clap::{Args, CommandFactory};
use clap_complete::Shell;

use crate::client::{self, Connection};

#[derive(Args, Debug)]
pub struct CompletionArgs {
    /// bash, zsh, fish, elvish or powershell.
    pub shell: Shell,
}

#[derive(Args, Debug)]
pub struct CompleteArgs {
    /// The words typed after `kubectl tenancy`, the one being completed last.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
    pub words: Vec<String>,
}

pub fn print_script(a: CompletionArgs) -> Result<(), String> {
    let mut cmd = crate::Cli::command();
    clap_complete::generate(a.shell, &mut cmd, "kubectl-tenancy", &mut std::io::stdout());
    Ok(())
}

/// What completes the last word.
#[derive(Debug, PartialEq, Eq)]
pub enum Candidates {
    Words(Vec<String>),
    /// Names of projects you may see (deleted ones for `recover`), starting with the prefix.
    Projects {
        prefix: String,
        terminated: bool,
    },
    /// Names of customers of the projects you may see.
    Customers {
        prefix: String,
    },
}

fn takes_value(arg: &clap::Arg) -> bool {
    arg.get_action().takes_values()
}

fn find_flag<'a>(
    cmd: &'a clap::Command,
    root: &'a clap::Command,
    word: &str,
) -> Option<&'a clap::Arg> {
    let matches = |a: &&clap::Arg| {
        if let Some(l) = word.strip_prefix("--") {
            a.get_long() == Some(l)
        } else if let Some(s) = word.strip_prefix('-') {
            s.chars().count() == 1 && a.get_short() == s.chars().next()
        } else {
            false
        }
    };
    cmd.get_arguments()
        .find(matches)
        .or_else(|| root.get_arguments().find(matches))
}

/// The candidates for the last of `words` (pure: the cluster is asked only for names).
pub fn candidates(root: &clap::Command, words: &[String]) -> Candidates {
    let (last, before) = match words.split_last() {
        Some((l, b)) => (l.as_str(), b),
        None => ("", &[][..]),
    };
    let filter = |all: Vec<String>| -> Candidates {
        Candidates::Words(all.into_iter().filter(|w| w.starts_with(last)).collect())
    };
    // Walk the words: the subcommand, the positionals given, and a flag waiting for its value.
    let mut sub: Option<&clap::Command> = None;
    let mut positionals = 0;
    let mut pending: Option<&clap::Arg> = None;
    for w in before {
        if pending.take().is_some() {
            continue;
        }
        if w.starts_with('-') && w.len() > 1 {
            if !w.contains('=')
                && let Some(a) = find_flag(sub.unwrap_or(root), root, w)
                && takes_value(a)
            {
                pending = Some(a);
            }
            continue;
        }
        match sub {
            None => sub = root.find_subcommand(w),
            Some(_) => positionals += 1,
        }
    }
    if let Some(flag) = pending {
        let values: Vec<String> = flag
            .get_possible_values()
            .iter()
            .map(|v| v.get_name().to_string())
            .collect();
        if !values.is_empty() {
            return filter(values);
        }
        return match flag.get_long() {
            Some("customer") | Some("to") if sub.is_some_and(|s| s.get_name() != "extend") => {
                Candidates::Customers {
                    prefix: last.into(),
                }
            }
            _ => Candidates::Words(Vec::new()),
        };
    }
    if last.starts_with('-') {
        let cmd = sub.unwrap_or(root);
        let mut flags: Vec<String> = cmd
            .get_arguments()
            .chain(root.get_arguments().filter(|a| a.is_global_set()))
            .filter(|a| !a.is_hide_set() && !a.is_positional())
            .filter_map(|a| a.get_long().map(|l| format!("--{l}")))
            .collect();
        flags.sort();
        flags.dedup();
        return filter(flags);
    }
    let Some(sub) = sub else {
        return filter(
            root.get_subcommands()
                .filter(|s| !s.is_hide_set())
                .map(|s| s.get_name().to_string())
                .collect(),
        );
    };
    let name = sub.get_name();
    match (name, positionals) {
        ("completion", 0) => filter(
            ["bash", "zsh", "fish", "elvish", "powershell"]
                .map(String::from)
                .to_vec(),
        ),
        ("checklist", 0) => Candidates::Customers {
            prefix: last.into(),
        },
        ("projects" | "new-project" | "completion" | "checklist" | "help", _) => {
            Candidates::Words(Vec::new())
        }
        (_, 0) => Candidates::Projects {
            prefix: last.into(),
            terminated: name == "recover",
        },
        _ => Candidates::Words(Vec::new()),
    }
}

/// The connection flags among the words (so completion asks the cluster the user named).
pub fn connection_of(words: &[String]) -> Connection {
    let mut c = Connection::default();
    let mut it = words.iter().peekable();
    while let Some(w) = it.next() {
        let (flag, inline) = match w.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (w.as_str(), None),
        };
        let mut value = || inline.clone().or_else(|| it.peek().map(|v| v.to_string()));
        match flag {
            "--kubeconfig" => c.kubeconfig = value().map(Into::into),
            "--context" => c.context = value(),
            "--as" => c.as_user = value(),
            "--as-group" => c.as_group.extend(value()),
            _ => {}
        }
    }
    c
}

/// `kubectl-tenancy __complete WORDS…`: prints the candidates, one a line.
pub async fn complete(conn: &Connection, a: CompleteArgs) -> Result<(), String> {
    let root = crate::Cli::command();
    let found = match candidates(&root, &a.words) {
        Candidates::Words(w) => w,
        Candidates::Projects { prefix, terminated } => {
            names(conn, &a.words, terminated, false, &prefix).await
        }
        Candidates::Customers { prefix } => names(conn, &a.words, false, true, &prefix).await,
    };
    for w in found {
        println!("{w}");
    }
    Ok(())
}

async fn names(
    conn: &Connection,
    words: &[String],
    terminated: bool,
    customers: bool,
    prefix: &str,
) -> Vec<String> {
    let mut c = connection_of(words);
    if c.kubeconfig.is_none() {
        c.kubeconfig = conn.kubeconfig.clone();
    }
    let Ok(client) = client::connect(&c).await else {
        return Vec::new();
    };
    let fields = if terminated {
        "status.phase=Terminated"
    } else {
        ""
    };
    let Ok(items) = client::list_view(
        &client,
        "myprojects",
        &[("fieldSelector".into(), fields.into())],
    )
    .await
    else {
        return Vec::new();
    };
    let mut out: Vec<String> = items
        .iter()
        .filter_map(|i| {
            if customers {
                i["customer"]["name"].as_str()
            } else {
                i["metadata"]["name"].as_str()
            }
        })
        .filter(|n| n.starts_with(prefix))
        .map(String::from)
        .collect();
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        let mut w: Vec<String> = s.split(' ').map(String::from).collect();
        if s.is_empty() {
            w = vec![String::new()];
        }
        w
    }

    fn c(s: &str) -> Candidates {
        candidates(&crate::Cli::command(), &words(s))
    }

    fn ws(list: &[&str]) -> Candidates {
        Candidates::Words(list.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn completion_offers_commands_flags_values_and_names() {
        assert_eq!(c("ex"), ws(&["expire", "extend"]));
        assert!(
            matches!(c(""), Candidates::Words(w) if w.contains(&"projects".to_string()) && w.contains(&"new-project".to_string()) && !w.iter().any(|x| x.starts_with("__")))
        );
        assert_eq!(c("projects --can"), ws(&["--can-admin", "--can-manage"]));
        assert_eq!(c("projects -o w"), ws(&["wide"]));
        assert_eq!(c("add-member p carol --role M"), ws(&["Manager", "Member"]));
        assert_eq!(
            c("completion "),
            ws(&["bash", "zsh", "fish", "elvish", "powershell"])
        );
        assert_eq!(
            c("members gen"),
            Candidates::Projects {
                prefix: "gen".into(),
                terminated: false
            }
        );
        assert_eq!(
            c("recover "),
            Candidates::Projects {
                prefix: "".into(),
                terminated: true
            }
        );
        assert_eq!(
            c("--as carol members --customer a"),
            Candidates::Customers { prefix: "a".into() }
        );
        assert_eq!(
            c("move p --to "),
            Candidates::Customers { prefix: "".into() }
        );
        assert_eq!(c("expire p carol "), ws(&[]));
        assert!(
            matches!(c("expire p carol --n"), Candidates::Words(w) if w == vec!["--never".to_string()])
        );
    }

    #[test]
    fn completion_uses_the_connection_typed() {
        let c = connection_of(&words(
            "--kubeconfig /k --context=dev --as carol --as-group g members",
        ));
        assert_eq!(c.kubeconfig, Some("/k".into()));
        assert_eq!(c.context.as_deref(), Some("dev"));
        assert_eq!(c.as_user.as_deref(), Some("carol"));
        assert_eq!(c.as_group, vec!["g".to_string()]);
    }
}
