//! `tenancy-operator dev`: a local control plane with the CRDs, the operator and the examples,
//! until Ctrl-C.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use super::apply::{ApplyError, apply_object, describe, parse_documents};
use super::process::ManagedProcess;
use super::{ControlPlane, ControlPlaneOptions, ensure_binaries, free_port};

/// Holds the pid of the `dev` process using a work dir, so a second one does not wipe it.
const PID_FILE: &str = "dev.pid";

/// Options of `tenancy-operator dev`.
#[derive(clap::Args, Debug, Clone)]
pub struct DevArgs {
    /// Work dir of the control plane (certificates, etcd data, logs, kubeconfig). Default:
    /// `$XDG_CACHE_HOME/tenancy-operator/dev` (else `~/.cache/...`), so the printed KUBECONFIG
    /// path is the same every time. Wiped at start, removed at exit.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Folder of manifests to apply once the operator runs (every *.yaml, in name order).
    #[arg(long, default_value = "examples")]
    pub examples: PathBuf,
    /// Do not start the operator (run it yourself with the printed KUBECONFIG).
    #[arg(long)]
    pub no_operator: bool,
    /// Do not start kube-controller-manager.
    #[arg(long)]
    pub no_controller_manager: bool,
}

/// The default work dir, if a cache directory can be named.
pub fn default_dir() -> Option<PathBuf> {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".cache"))
        })?;
    Some(cache.join("tenancy-operator").join("dev"))
}

fn say(message: impl AsRef<str>) {
    eprintln!("[dev] {}", message.as_ref());
}

/// Runs `dev` to the end: Ctrl-C, SIGTERM or SIGHUP stop everything.
pub fn run(args: DevArgs) -> ExitCode {
    match run_inner(args) {
        Ok(code) => code,
        Err(message) => {
            say(format!("error: {message}"));
            ExitCode::FAILURE
        }
    }
}

fn run_inner(args: DevArgs) -> Result<ExitCode, String> {
    let dir = args.dir.clone().or_else(default_dir);
    if let Some(dir) = &dir {
        refuse_if_running(&dir.join(PID_FILE))?;
    }

    let bin_dir = ensure_binaries().map_err(|e| e.to_string())?;
    let mut cluster = ControlPlane::start(ControlPlaneOptions {
        bin_dir: Some(bin_dir),
        controller_manager: !args.no_controller_manager,
        work_dir: dir,
        ..Default::default()
    })
    .map_err(|e| e.to_string())?;
    let pid_file = cluster.dir().join(PID_FILE);
    std::fs::write(&pid_file, std::process::id().to_string())
        .map_err(|e| format!("writing {}: {e}", pid_file.display()))?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("starting the async runtime: {e}"))?;
    let code = runtime.block_on(session(&mut cluster, &args));
    cluster.stop();
    say("stopped: etcd, kube-apiserver, kube-controller-manager and the operator are gone");
    Ok(code)
}

async fn session(cluster: &mut ControlPlane, args: &DevArgs) -> ExitCode {
    let client = cluster.client().await;
    let t = Instant::now();
    let local = match super::install::LocalOperator::new() {
        Ok(l) => l,
        Err(e) => {
            say(format!("error: picking a webhook port: {e}"));
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = super::install::install(&client, &local).await {
        say(format!(
            "error: installing the CRDs, roles and webhook configurations: {e}"
        ));
        return ExitCode::FAILURE;
    }
    say(format!(
        "CRDs, role ClusterRoles and webhook configurations installed in {:.1}s",
        t.elapsed().as_secs_f64()
    ));

    let mut operator = if args.no_operator {
        None
    } else {
        match start_operator(cluster, &local) {
            Ok(p) => Some(p),
            Err(e) => {
                say(format!("error: {e}"));
                None
            }
        }
    };

    apply_examples(&client, &args.examples, &mut operator).await;
    banner(cluster);

    let mut operator_reported = false;
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    // One future for the whole session, so the signal handlers stay registered between ticks.
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    let code = loop {
        tokio::select! {
            reason = &mut shutdown => {
                say(format!("{reason}: stopping"));
                break ExitCode::SUCCESS;
            }
            _ = ticker.tick() => {
                if let Err(e) = cluster.check_running() {
                    say(format!("error: {e}; see {}", cluster.dir().display()));
                    break ExitCode::FAILURE;
                }
                if !operator_reported && let Some(p) = operator.as_mut() && let Some(status) = p.exit_status() {
                    operator_reported = true;
                    say(format!(
                        "the operator exited ({}); the cluster stays up. Run it yourself with:\n    \
                         KUBECONFIG={} cargo run -- run",
                        super::process::describe_status(status),
                        cluster.kubeconfig().display()
                    ));
                }
            }
        }
    };
    if let Some(mut p) = operator.take() {
        p.terminate(Duration::from_secs(5));
    }
    code
}

fn banner(cluster: &ControlPlane) {
    let line = "=".repeat(78);
    eprintln!(
        "\n{line}\n  The dev cluster is up ({}). In another shell:\n\n    export KUBECONFIG={}\n    kubectl get customers,projects,projectmemberships -A\n\n  Logs: {}\n  Ctrl-C stops everything.\n{line}\n",
        cluster.server_url(),
        cluster.kubeconfig().display(),
        cluster.dir().display()
    );
}

/// Spawns `<this executable> run` against the cluster, its output prefixed with `[operator]`.
fn start_operator(
    cluster: &ControlPlane,
    local: &super::install::LocalOperator,
) -> Result<ManagedProcess, String> {
    let exe =
        std::env::current_exe().map_err(|e| format!("finding the current executable: {e}"))?;
    let metrics = free_port().map_err(|e| format!("picking a port: {e}"))?;
    let mut cmd = Command::new(exe);
    cmd.arg("run")
        .arg(format!("--metrics-addr=127.0.0.1:{metrics}"))
        .args(local.run_args())
        .env(
            "KUBECONFIG",
            cluster
                .kubeconfig_for(super::install::OPERATOR_USER, &["system:masters"])
                .map_err(|e| format!("the operator's kubeconfig: {e}"))?,
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut process = cluster.spawn("operator", cmd).map_err(|e| e.to_string())?;
    if let Some(stdout) = process.take_stdout() {
        prefix_lines(stdout);
    }
    if let Some(stderr) = process.take_stderr() {
        prefix_lines(stderr);
    }
    say(format!(
        "operator started (pid {}, metrics on 127.0.0.1:{metrics})",
        process.pid()
    ));
    Ok(process)
}

/// Copies a stream to stderr line by line, prefixed with `[operator]`, until it closes.
fn prefix_lines(stream: impl std::io::Read + Send + 'static) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            eprintln!("[operator] {line}");
        }
    });
}

/// Applies every manifest in `dir`, in file-name order. Objects whose namespace the operator
/// has yet to create (memberships) are retried for a while.
async fn apply_examples(client: &kube::Client, dir: &Path, operator: &mut Option<ManagedProcess>) {
    let dir = if dir.is_dir() || dir.is_absolute() {
        dir.to_path_buf()
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR")).join(dir)
    };
    let mut files: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
            .collect(),
        Err(e) => {
            say(format!("no examples applied: {}: {e}", dir.display()));
            return;
        }
    };
    files.sort();
    let mut pending = Vec::new();
    for file in &files {
        match std::fs::read_to_string(file)
            .map_err(|e| e.to_string())
            .and_then(|y| parse_documents(&y).map_err(|e| e.to_string()))
        {
            Ok(objects) => pending.extend(objects.into_iter().map(|o| (file.clone(), o))),
            Err(e) => say(format!("skipping {}: {e}", file.display())),
        }
    }
    let total = pending.len();
    // Without a running operator no project namespace will appear: do not wait long for one.
    let patience = if operator.as_mut().is_some_and(|p| p.is_running()) {
        60
    } else {
        10
    };
    let deadline = Instant::now() + Duration::from_secs(patience);
    let mut failures: Vec<(PathBuf, String, ApplyError)> = Vec::new();
    loop {
        failures.clear();
        let mut still = Vec::new();
        for (file, object) in pending {
            match apply_object(client, &object, "tenancy-operator-dev").await {
                Ok(_) => {}
                Err(e) => {
                    failures.push((file.clone(), describe(&object), e));
                    still.push((file, object));
                }
            }
        }
        pending = still;
        if pending.is_empty() || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    say(format!(
        "applied {} of {total} objects from {} files in {}",
        total - failures.len(),
        files.len(),
        dir.display()
    ));
    for (file, what, error) in &failures {
        say(format!(
            "  not applied: {what} ({}): {error}",
            file.display()
        ));
    }
}

/// Waits for Ctrl-C, SIGTERM or SIGHUP; returns which.
async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) else {
        let _ = tokio::signal::ctrl_c().await;
        return "interrupted";
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "interrupted",
        _ = term.recv() => "SIGTERM",
        _ = hup.recv() => "SIGHUP",
    }
}

/// Refuses to wipe the work dir of another `dev` that is still running.
fn refuse_if_running(pid_file: &Path) -> Result<(), String> {
    let Ok(text) = std::fs::read_to_string(pid_file) else {
        return Ok(());
    };
    let Ok(pid) = text.trim().parse::<i32>() else {
        return Ok(());
    };
    // SAFETY: signal 0 only checks that the process exists.
    let alive = pid != std::process::id() as i32 && unsafe { libc::kill(pid, 0) } == 0;
    let is_dev = std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| String::from_utf8_lossy(&c).contains("dev"))
        .unwrap_or(false);
    if alive && is_dev {
        return Err(format!(
            "another `tenancy-operator dev` (pid {pid}) is using this work dir ({}); stop it or pass --dir",
            pid_file.display()
        ));
    }
    Ok(())
}
