//! Child processes that never outlive the harness that started them.
//!
//! Every child is started with `PR_SET_PDEATHSIG = SIGKILL` and in its own process group.
//! Linux delivers the parent-death signal when the *thread* that forked the child exits, not
//! when the process does. So children are not forked from whatever thread happens to call
//! [`Spawner::spawn`]: a dedicated spawner thread forks them, and that thread lives exactly as
//! long as its [`Spawner`] (owned by the [`ControlPlane`](super::ControlPlane)). If the harness
//! process dies in any way (panic, `process::exit`, SIGKILL), all its threads die and the
//! kernel kills the children. The process group lets [`ManagedProcess::terminate`] reach
//! anything a child started in turn.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::net::TcpListener;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

type SpawnRequest = (Command, mpsc::Sender<io::Result<Child>>);

/// A long-lived thread that forks children on request, so that their parent-death signal is
/// tied to the lifetime of this value rather than to the calling thread.
pub struct Spawner {
    requests: Option<mpsc::Sender<SpawnRequest>>,
    thread: Option<JoinHandle<()>>,
}

impl Spawner {
    pub fn new() -> io::Result<Self> {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        let thread = std::thread::Builder::new()
            .name("devcluster-spawner".into())
            .spawn(move || {
                // Ends when the Spawner drops its sender; the children it forked then get SIGKILL
                // from the kernel unless they were stopped before.
                for (mut command, reply) in rx {
                    let _ = reply.send(command.spawn());
                }
            })?;
        Ok(Spawner {
            requests: Some(tx),
            thread: Some(thread),
        })
    }

    /// Starts `command` from the spawner thread, in its own process group, with
    /// `PR_SET_PDEATHSIG = SIGKILL`.
    pub fn spawn(&self, mut command: Command) -> io::Result<Child> {
        guard(&mut command);
        let (reply_tx, reply_rx) = mpsc::channel();
        let requests = self
            .requests
            .as_ref()
            .ok_or_else(|| io::Error::other("the spawner has been shut down"))?;
        requests
            .send((command, reply_tx))
            .map_err(|_| io::Error::other("the spawner thread has exited"))?;
        reply_rx
            .recv()
            .map_err(|_| io::Error::other("the spawner thread exited while spawning"))?
    }

    /// Ends the spawner thread. Children it started and that are still running get SIGKILL.
    pub fn shutdown(&mut self) {
        self.requests.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Spawner {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Own process group + parent-death signal, set between fork and exec.
fn guard(command: &mut Command) {
    command.process_group(0);
    // SAFETY: getpid is async-signal-safe and called before the fork.
    let parent = unsafe { libc::getpid() };
    // SAFETY: the closure runs in the forked child before exec and only calls
    // async-signal-safe functions (prctl, getppid); it allocates nothing.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died between fork and prctl: then nobody will ever stop us.
            if libc::getppid() != parent {
                return Err(io::Error::other("parent exited before the child started"));
            }
            Ok(())
        });
    }
}

/// A running child whose output goes to a log file, stopped (SIGTERM, then SIGKILL) on drop.
#[derive(Debug)]
pub struct ManagedProcess {
    name: String,
    child: Child,
    log: Option<PathBuf>,
    status: Option<ExitStatus>,
}

impl ManagedProcess {
    /// Spawns `command` through `spawner` with stdin closed and stdout and stderr appended to
    /// `log` (when given; else the command's own stdio settings are kept).
    pub fn spawn(
        spawner: &Spawner,
        name: &str,
        mut command: Command,
        log: Option<&Path>,
    ) -> io::Result<Self> {
        command.stdin(Stdio::null());
        if let Some(log) = log {
            let file = File::options().create(true).append(true).open(log)?;
            command.stdout(file.try_clone()?).stderr(file);
        }
        let child = spawner.spawn(command)?;
        Ok(ManagedProcess {
            name: name.to_string(),
            child,
            log: log.map(Path::to_path_buf),
            status: None,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The file its stdout and stderr go to, if any.
    pub fn log_path(&self) -> Option<&Path> {
        self.log.as_deref()
    }

    /// Its stdout, when it was spawned with `Stdio::piped()` and not taken yet.
    pub fn take_stdout(&mut self) -> Option<std::process::ChildStdout> {
        self.child.stdout.take()
    }

    /// Its stderr, when it was spawned with `Stdio::piped()` and not taken yet.
    pub fn take_stderr(&mut self) -> Option<std::process::ChildStderr> {
        self.child.stderr.take()
    }

    /// The exit status if it has exited (never blocks).
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }

    pub fn is_running(&mut self) -> bool {
        self.exit_status().is_none()
    }

    /// The last `lines` lines of its log ("" without a log).
    pub fn log_tail(&self, lines: usize) -> String {
        self.log
            .as_deref()
            .map(|p| tail_file(p, lines))
            .unwrap_or_default()
    }

    /// Sends `signal` to its whole process group (no-op once it has been reaped).
    pub fn signal(&mut self, signal: i32) {
        if self.exit_status().is_some() {
            return;
        }
        let pgid = self.child.id() as libc::pid_t;
        // SAFETY: plain syscall; the pid is our unreaped child, so it cannot have been reused.
        unsafe {
            libc::kill(-pgid, signal);
        }
    }

    /// Waits up to `timeout` for it to exit.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exit_status() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, up to `grace` to exit, then SIGKILL; always reaps it.
    pub fn terminate(&mut self, grace: Duration) -> Option<ExitStatus> {
        self.signal(libc::SIGTERM);
        if self.wait_timeout(grace).is_none() {
            self.kill();
        }
        self.status
    }

    /// SIGKILL to the group and reap.
    pub fn kill(&mut self) {
        self.signal(libc::SIGKILL);
        if self.status.is_none() {
            self.status = self.child.wait().ok();
        }
    }
}

impl Drop for ManagedProcess {
    fn drop(&mut self) {
        self.terminate(Duration::from_secs(5));
    }
}

/// Terminates several processes at once: SIGTERM to all, up to `grace` for all of them, then
/// SIGKILL to the rest.
pub fn terminate_all(processes: &mut [&mut ManagedProcess], grace: Duration) {
    for p in processes.iter_mut() {
        p.signal(libc::SIGTERM);
    }
    let deadline = Instant::now() + grace;
    for p in processes.iter_mut() {
        if p.wait_timeout(deadline.saturating_duration_since(Instant::now()))
            .is_none()
        {
            p.kill();
        }
    }
}

/// Describes an exit status for humans (`exit code 1`, `signal 9`).
pub fn describe_status(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(signal)) => format!("signal {signal}"),
        _ => status.to_string(),
    }
}

/// The last `lines` lines of a file (reads at most its last 256 KiB).
pub fn tail_file(path: &Path, lines: usize) -> String {
    let Ok(mut file) = File::open(path) else {
        return format!("(no log at {})", path.display());
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(256 * 1024);
    let mut bytes = Vec::new();
    if file.seek(SeekFrom::Start(start)).is_err() || file.read_to_end(&mut bytes).is_err() {
        return format!("(cannot read {})", path.display());
    }
    let text = String::from_utf8_lossy(&bytes);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A loopback port that was free a moment ago. The listener is held until [`FreePort::release`]
/// so that two ports picked in a row never coincide.
pub struct FreePort {
    listener: Option<TcpListener>,
    port: u16,
}

impl FreePort {
    pub fn pick() -> io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        Ok(FreePort {
            listener: Some(listener),
            port,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Frees the port for the process about to bind it; returns the number.
    pub fn release(&mut self) -> u16 {
        self.listener.take();
        self.port
    }
}

/// Picks a free loopback port and releases it at once (for callers that bind it right away).
pub fn free_port() -> io::Result<u16> {
    Ok(FreePort::pick()?.release())
}

/// `text` without terminal escape sequences (`ESC [ ... letter`, such as colours): a log
/// written to a terminal, or by an older operator, read as plain text.
pub fn without_colours(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_differ_while_held() {
        let a = FreePort::pick().unwrap();
        let b = FreePort::pick().unwrap();
        assert_ne!(a.port(), b.port());
    }

    #[test]
    fn tail_keeps_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        std::fs::write(
            &path,
            (1..=100).map(|i| format!("line {i}\n")).collect::<String>(),
        )
        .unwrap();
        assert_eq!(tail_file(&path, 3), "line 98\nline 99\nline 100");
    }

    #[test]
    fn children_are_stopped_and_in_their_own_group() {
        let spawner = Spawner::new().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("sleep.log");
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo started; exec sleep 60"]);
        let mut p = ManagedProcess::spawn(&spawner, "sleep", cmd, Some(&log)).unwrap();
        let pid = p.pid() as libc::pid_t;
        // SAFETY: plain syscall.
        assert_eq!(unsafe { libc::getpgid(pid) }, pid, "own process group");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !p.log_tail(5).contains("started") {
            assert!(
                Instant::now() < deadline,
                "the child never wrote to its log"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(p.is_running());
        let status = p.terminate(Duration::from_secs(5)).expect("reaped");
        assert_eq!(status.signal(), Some(libc::SIGTERM));
    }

    #[test]
    fn children_die_with_the_spawner_thread() {
        let mut spawner = Spawner::new().unwrap();
        let mut cmd = Command::new("sleep");
        cmd.arg("60");
        let mut p = ManagedProcess::spawn(&spawner, "sleep", cmd, None).unwrap();
        spawner.shutdown();
        let status = p
            .wait_timeout(Duration::from_secs(5))
            .expect("killed by PR_SET_PDEATHSIG");
        assert_eq!(status.signal(), Some(libc::SIGKILL));
    }
}
