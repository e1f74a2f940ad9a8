//! A real, local Kubernetes control plane: etcd, kube-apiserver and kube-controller-manager on
//! free loopback ports, with their own CA and an admin kubeconfig. Used by the end-to-end tests
//! and by `tenancy-operator dev`. No kubelet: pods are objects that never run.
//!
//! ```no_run
//! use tenancy_operator::devcluster::{ControlPlane, ControlPlaneOptions};
//! let cluster = ControlPlane::start(ControlPlaneOptions::default())?;
//! println!("export KUBECONFIG={}", cluster.kubeconfig().display());
//! # Ok::<(), tenancy_operator::devcluster::Error>(())
//! ```
//!
//! Child processes never outlive the harness: see [`process`] for how (parent-death signal from
//! a spawner thread that lives as long as the [`ControlPlane`], and a process group each).

pub mod apply;
pub mod bench_table;
pub mod dev;
pub mod install;
pub mod process;

use std::ffi::OsString;
use std::future::Future;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ServiceAccount;
use kube::Api;

use self::process::{FreePort, ManagedProcess, Spawner, describe_status, terminate_all};
use crate::tls::{self as certs, CertAndKey, Pki};

pub use self::process::free_port;

/// Lines of a failing process's log included in a start error.
const LOG_TAIL_LINES: usize = 40;
/// A file that marks a directory as a control plane's work dir, so that a directory given in
/// [`ControlPlaneOptions::work_dir`] is only ever wiped or removed if this module made it.
const DIR_MARKER: &str = ".tenancy-devcluster";
/// Set (to anything) to keep the work dir (logs, etcd data, certificates) after `stop()`.
pub const KEEP_DIR_ENV: &str = "TENANCY_KEEP_CLUSTER_DIR";

/// What can go wrong when getting binaries or starting the control plane.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    #[error("control-plane binaries: {0}")]
    Binaries(String),
    #[error("generating certificates: {0}")]
    Certs(#[from] rcgen::Error),
    #[error(
        "{component} did not become ready: {reason}\n--- last lines of {log} ---\n{tail}\n--- end of {log} ---"
    )]
    Start {
        component: String,
        reason: String,
        log: String,
        tail: String,
    },
}

trait IoContext<T> {
    fn context(self, context: impl FnOnce() -> String) -> Result<T, Error>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn context(self, context: impl FnOnce() -> String) -> Result<T, Error> {
        self.map_err(|source| Error::Io {
            context: context(),
            source,
        })
    }
}

fn is_executable(path: &Path) -> bool {
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// The folder holding `etcd`, `kube-apiserver` and (usually) `kube-controller-manager`.
///
/// `KUBEBUILDER_ASSETS`, when set and holding etcd and kube-apiserver, wins (envtest assets have
/// no kube-controller-manager; the control plane then runs without one). Otherwise
/// `tests/control-plane/build.sh` (looked up under the current directory, then under this
/// crate's source directory) builds them once into the cache outside the repository, its
/// progress streamed to stderr, and its last stdout line names the folder.
pub fn ensure_binaries() -> Result<PathBuf, Error> {
    if let Some(assets) = std::env::var_os("KUBEBUILDER_ASSETS").filter(|v| !v.is_empty()) {
        let dir = PathBuf::from(assets);
        if is_executable(&dir.join("etcd")) && is_executable(&dir.join("kube-apiserver")) {
            eprintln!(
                "[devcluster] using control-plane binaries from KUBEBUILDER_ASSETS={}",
                dir.display()
            );
            return Ok(dir);
        }
        eprintln!(
            "[devcluster] KUBEBUILDER_ASSETS={} holds no etcd and kube-apiserver; building them instead",
            dir.display()
        );
    }
    let candidates: Vec<PathBuf> = std::env::current_dir()
        .ok()
        .into_iter()
        .chain(std::iter::once(PathBuf::from(env!("CARGO_MANIFEST_DIR"))))
        .map(|root| root.join("tests/control-plane/build.sh"))
        .collect();
    let script = candidates.iter().find(|p| p.is_file()).ok_or_else(|| {
        Error::Binaries(format!(
            "no build script found (looked for {}); set KUBEBUILDER_ASSETS to a folder with etcd and kube-apiserver",
            candidates.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
        ))
    })?;
    let started = Instant::now();
    let output = Command::new("bash")
        .arg(script)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .output()
        .context(|| format!("running {}", script.display()))?;
    if !output.status.success() {
        return Err(Error::Binaries(format!(
            "{} failed ({}); its progress and errors are above",
            script.display(),
            describe_status(output.status)
        )));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let dir = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(|l| PathBuf::from(l.trim()))
        .ok_or_else(|| Error::Binaries(format!("{} printed no bin folder", script.display())))?;
    for name in ["etcd", "kube-apiserver"] {
        if !is_executable(&dir.join(name)) {
            return Err(Error::Binaries(format!(
                "{} has no {name} after {}",
                dir.display(),
                script.display()
            )));
        }
    }
    if started.elapsed() > Duration::from_secs(5) {
        eprintln!(
            "[devcluster] control-plane binaries ready in {:.0?}",
            started.elapsed()
        );
    }
    Ok(dir)
}

/// `helm` from the bin folder, else from `PATH`.
pub fn find_helm(bin_dir: &Path) -> Option<PathBuf> {
    let local = bin_dir.join("helm");
    if is_executable(&local) {
        return Some(local);
    }
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|p| p.join("helm"))
        .find(|p| is_executable(p))
}

/// The common name of kube-apiserver's front-proxy client certificate (the one name aggregated
/// API servers accept `X-Remote-*` headers from).
pub const FRONT_PROXY_CLIENT: &str = "front-proxy-client";

/// How to start a [`ControlPlane`].
#[derive(Clone, Debug)]
pub struct ControlPlaneOptions {
    /// Folder with the binaries; `None` calls [`ensure_binaries`].
    pub bin_dir: Option<PathBuf>,
    /// Start kube-controller-manager (namespace deletion, quota status, garbage collection,
    /// service accounts). Default true; ignored (with a warning) when the binary is missing.
    pub controller_manager: bool,
    /// Appended to kube-apiserver's arguments (a later flag overrides an earlier one).
    pub extra_apiserver_args: Vec<String>,
    /// Appended to kube-controller-manager's arguments (a later flag overrides an earlier one).
    pub extra_controller_manager_args: Vec<String>,
    /// Where certificates, etcd data, logs and kubeconfigs go. `None`: a fresh temp dir. A
    /// given folder must be empty, missing, or a previous control plane's (it is then wiped).
    pub work_dir: Option<PathBuf>,
}

impl Default for ControlPlaneOptions {
    fn default() -> Self {
        ControlPlaneOptions {
            bin_dir: None,
            controller_manager: true,
            extra_apiserver_args: Vec::new(),
            extra_controller_manager_args: Vec::new(),
            work_dir: None,
        }
    }
}

/// A running etcd + kube-apiserver (+ kube-controller-manager). Stopped by [`ControlPlane::stop`]
/// or on drop; its processes also die if the harness process dies.
pub struct ControlPlane {
    dir: PathBuf,
    bin_dir: PathBuf,
    server_url: String,
    kubeconfig: PathBuf,
    pki: Pki,
    ca_file: PathBuf,
    admin_cert: PathBuf,
    admin_key: PathBuf,
    etcd: Option<ManagedProcess>,
    apiserver: Option<ManagedProcess>,
    controller_manager: Option<ManagedProcess>,
    /// How etcd and kube-apiserver were started, to start them again the same way.
    etcd_launch: Option<Launch>,
    apiserver_launch: Option<Launch>,
    etcd_addr: String,
    spawner: Spawner,
    keep_dir: bool,
    stopped: bool,
    startup: Duration,
}

impl std::fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlane")
            .field("dir", &self.dir)
            .field("server_url", &self.server_url)
            .finish()
    }
}

impl ControlPlane {
    /// Starts etcd, kube-apiserver and kube-controller-manager and waits until each is ready.
    /// Synchronous and usable with or without a tokio runtime around (the health checks run on
    /// a private runtime on a scoped thread). Prints the time it took to stderr.
    pub fn start(opts: ControlPlaneOptions) -> Result<ControlPlane, Error> {
        let began = Instant::now();
        let bin_dir = match &opts.bin_dir {
            Some(dir) => dir.clone(),
            None => ensure_binaries()?,
        };
        for name in ["etcd", "kube-apiserver"] {
            if !is_executable(&bin_dir.join(name)) {
                return Err(Error::Binaries(format!(
                    "{} has no executable {name}",
                    bin_dir.display()
                )));
            }
        }
        let with_kcm = opts.controller_manager
            && {
                let found = is_executable(&bin_dir.join("kube-controller-manager"));
                if !found {
                    eprintln!(
                        "[devcluster] WARNING: no kube-controller-manager in {}: namespaces will not finish deleting, \
                     quotas get no status.used, owner references do not cascade",
                        bin_dir.display()
                    );
                }
                found
            };
        let dir = prepare_dir(opts.work_dir.as_deref())?;
        let pki_dir = dir.join("pki");
        std::fs::create_dir_all(&pki_dir).context(|| format!("creating {}", pki_dir.display()))?;
        let pki = Pki::new()?;
        let ca_file = write_file(&pki_dir.join("ca.crt"), pki.ca_pem(), false)?;
        let admin = pki.client_cert("admin", &["system:masters"])?;
        let admin_cert = write_file(&pki_dir.join("admin.crt"), &admin.cert_pem, false)?;
        let admin_key = write_file(&pki_dir.join("admin.key"), &admin.key_pem, true)?;

        let mut cp = ControlPlane {
            server_url: String::new(),
            kubeconfig: dir.join("kubeconfig"),
            dir,
            bin_dir,
            pki,
            ca_file,
            admin_cert,
            admin_key,
            etcd: None,
            apiserver: None,
            controller_manager: None,
            etcd_launch: None,
            apiserver_launch: None,
            etcd_addr: String::new(),
            spawner: Spawner::new().context(|| "starting the spawner thread".into())?,
            keep_dir: false,
            stopped: false,
            startup: Duration::ZERO,
        };
        match cp.boot(&opts, &admin, with_kcm, began) {
            Ok(()) => {
                cp.startup = began.elapsed();
                eprintln!(
                    "[devcluster] control plane ready at {} in {:.1}s (dir {})",
                    cp.server_url,
                    cp.startup.as_secs_f64(),
                    cp.dir.display()
                );
                Ok(cp)
            }
            Err(e) => {
                // Keep the logs for whoever reads the error.
                cp.keep_dir = true;
                cp.stop();
                eprintln!(
                    "[devcluster] start failed; logs kept in {}",
                    cp.dir.display()
                );
                Err(e)
            }
        }
    }

    fn boot(
        &mut self,
        opts: &ControlPlaneOptions,
        admin: &CertAndKey,
        with_kcm: bool,
        began: Instant,
    ) -> Result<(), Error> {
        let pki_dir = self.dir.join("pki");
        let serving = self.pki.serving_cert(
            "kube-apiserver",
            &[
                "127.0.0.1",
                "::1",
                "localhost",
                "10.0.0.1",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            ],
        )?;
        let serving_cert = write_file(&pki_dir.join("apiserver.crt"), &serving.cert_pem, false)?;
        let serving_key = write_file(&pki_dir.join("apiserver.key"), &serving.key_pem, true)?;
        let (sa_private, sa_public) = certs::service_account_key_pair()?;
        let sa_key = write_file(&pki_dir.join("sa.key"), &sa_private, true)?;
        let sa_pub = write_file(&pki_dir.join("sa.pub"), &sa_public, false)?;
        // The aggregation layer: a CA of its own for the front proxy (kube-apiserver presents
        // its client certificate to aggregated API servers, which trust the X-Remote-* headers
        // only from it), as kubeadm sets it up.
        let front_proxy = Pki::named("tenancy-devcluster-front-proxy-ca")?;
        let front_proxy_ca = write_file(
            &pki_dir.join("front-proxy-ca.crt"),
            front_proxy.ca_pem(),
            false,
        )?;
        let proxy_client = front_proxy.client_cert(FRONT_PROXY_CLIENT, &[])?;
        let proxy_cert = write_file(
            &pki_dir.join("front-proxy-client.crt"),
            &proxy_client.cert_pem,
            false,
        )?;
        let proxy_key = write_file(
            &pki_dir.join("front-proxy-client.key"),
            &proxy_client.key_pem,
            true,
        )?;

        let mut etcd_client = FreePort::pick().context(|| "picking a port".into())?;
        let mut etcd_peer = FreePort::pick().context(|| "picking a port".into())?;
        let mut apiserver_port = FreePort::pick().context(|| "picking a port".into())?;
        let mut kcm_port = FreePort::pick().context(|| "picking a port".into())?;

        // etcd
        let t = Instant::now();
        let client_url = format!("http://127.0.0.1:{}", etcd_client.port());
        let peer_url = format!("http://127.0.0.1:{}", etcd_peer.port());
        let mut etcd = Command::new(self.bin_dir.join("etcd"));
        etcd.arg("--name=default")
            .arg(format!(
                "--data-dir={}",
                self.dir.join("etcd-data").display()
            ))
            .arg(format!("--listen-client-urls={client_url}"))
            .arg(format!("--advertise-client-urls={client_url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=default={peer_url}"))
            .arg("--initial-cluster-state=new")
            .arg("--unsafe-no-fsync=true")
            .current_dir(&self.dir);
        etcd_client.release();
        etcd_peer.release();
        self.etcd_launch = Some(Launch::of(&etcd));
        self.etcd = Some(self.spawn_logged("etcd", etcd)?);
        self.etcd_addr = format!("127.0.0.1:{}", etcd_client.port());
        self.wait_etcd()?;
        let etcd_time = t.elapsed();

        // kube-apiserver
        let t = Instant::now();
        let port = apiserver_port.release();
        self.server_url = format!("https://127.0.0.1:{port}");
        let mut apiserver = Command::new(self.bin_dir.join("kube-apiserver"));
        apiserver
            .arg(format!("--etcd-servers={client_url}"))
            .arg("--bind-address=127.0.0.1")
            .arg("--advertise-address=127.0.0.1")
            .arg(format!("--secure-port={port}"))
            .arg(format!("--cert-dir={}", self.dir.join("apiserver-certs").display()))
            .arg(format!("--tls-cert-file={}", serving_cert.display()))
            .arg(format!("--tls-private-key-file={}", serving_key.display()))
            .arg(format!("--client-ca-file={}", self.ca_file.display()))
            .arg("--authorization-mode=RBAC")
            .arg("--service-account-issuer=https://kubernetes.default.svc.cluster.local")
            .arg(format!("--service-account-key-file={}", sa_pub.display()))
            .arg(format!("--service-account-signing-key-file={}", sa_key.display()))
            .arg("--service-cluster-ip-range=10.0.0.0/24")
            .arg("--allow-privileged=true")
            .arg(format!(
                "--requestheader-client-ca-file={}",
                front_proxy_ca.display()
            ))
            .arg(format!("--requestheader-allowed-names={FRONT_PROXY_CLIENT}"))
            .arg("--requestheader-username-headers=X-Remote-User")
            .arg("--requestheader-group-headers=X-Remote-Group")
            .arg("--requestheader-extra-headers-prefix=X-Remote-Extra-")
            .arg(format!("--proxy-client-cert-file={}", proxy_cert.display()))
            .arg(format!("--proxy-client-key-file={}", proxy_key.display()))
            // The defaults already include most of these; listing them makes the intent plain.
            .arg(
                "--enable-admission-plugins=NamespaceLifecycle,LimitRanger,ServiceAccount,DefaultTolerationSeconds,\
                 MutatingAdmissionWebhook,ValidatingAdmissionWebhook,ValidatingAdmissionPolicy,ResourceQuota",
            )
            // The `kubernetes` Service would point at 127.0.0.1, which Endpoints refuse; there is
            // no pod network to reach it from anyway.
            .arg("--endpoint-reconciler-type=none")
            .arg("--profiling=false")
            .args(&opts.extra_apiserver_args)
            .current_dir(&self.dir);
        self.apiserver_launch = Some(Launch::of(&apiserver));
        self.apiserver = Some(self.spawn_logged("kube-apiserver", apiserver)?);
        write_file(
            &self.kubeconfig,
            &certs::kubeconfig_yaml(&self.server_url, self.pki.ca_pem(), "admin", admin),
            true,
        )?;
        let config = self.client_config();
        self.wait_apiserver(Duration::from_secs(180))?;
        let apiserver_time = t.elapsed();

        // kube-controller-manager
        let mut kcm_time = None;
        if with_kcm {
            let t = Instant::now();
            // The namespace controller deletes every kind in a namespace, CRs included, and with
            // --use-service-account-credentials=false all controllers act as this one user: give
            // it system:masters rather than chase the per-controller roles.
            let kcm_cert = self
                .pki
                .client_cert("system:kube-controller-manager", &["system:masters"])?;
            let kcm_kubeconfig = write_file(
                &self.dir.join("kube-controller-manager.kubeconfig"),
                &certs::kubeconfig_yaml(
                    &self.server_url,
                    self.pki.ca_pem(),
                    "system:kube-controller-manager",
                    &kcm_cert,
                ),
                true,
            )?;
            let port = kcm_port.release();
            let mut kcm = Command::new(self.bin_dir.join("kube-controller-manager"));
            kcm.arg(format!("--kubeconfig={}", kcm_kubeconfig.display()))
                .arg("--bind-address=127.0.0.1")
                .arg(format!("--secure-port={port}"))
                .arg(format!(
                    "--cert-dir={}",
                    self.dir.join("kcm-certs").display()
                ))
                .arg(format!("--controllers={}", CONTROLLERS.join(",")))
                .arg(format!(
                    "--service-account-private-key-file={}",
                    sa_key.display()
                ))
                .arg(format!("--root-ca-file={}", self.ca_file.display()))
                .arg("--use-service-account-credentials=false")
                .arg("--leader-elect=false")
                // Recount every quota every 15 s (default 5 min), so a quota that counts a kind
                // discovered after it was made (a new CRD) gets its status soon.
                .arg("--resource-quota-sync-period=15s")
                .arg("--profiling=false")
                .args(&opts.extra_controller_manager_args)
                .current_dir(&self.dir);
            self.controller_manager = Some(self.spawn_logged("kube-controller-manager", kcm)?);
            // Ready = the serviceaccount controller has made `default` in `default`.
            wait_ready(
                self.controller_manager.as_mut().expect("just set"),
                Duration::from_secs(120),
                || {
                    let config = config.clone();
                    async move {
                        let client = kube::Client::try_from(config).map_err(|e| e.to_string())?;
                        let sas: Api<ServiceAccount> = Api::namespaced(client, "default");
                        match sas.get_opt("default").await {
                            Ok(Some(_)) => Ok(()),
                            Ok(None) => Err("no ServiceAccount default/default yet".to_string()),
                            Err(e) => Err(e.to_string()),
                        }
                    }
                },
            )?;
            kcm_time = Some(t.elapsed());
        } else {
            drop(kcm_port);
        }
        eprintln!(
            "[devcluster] etcd {:.1}s, kube-apiserver {:.1}s, kube-controller-manager {}; total {:.1}s",
            etcd_time.as_secs_f64(),
            apiserver_time.as_secs_f64(),
            kcm_time
                .map(|d| format!("{:.1}s", d.as_secs_f64()))
                .unwrap_or_else(|| "not started".into()),
            began.elapsed().as_secs_f64()
        );
        Ok(())
    }

    /// The admin kubeconfig (user `admin`, group `system:masters`).
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// `https://127.0.0.1:<port>`.
    pub fn server_url(&self) -> &str {
        &self.server_url
    }

    /// The cluster CA certificate (PEM); it signs the serving and all client certificates.
    pub fn ca_pem(&self) -> &str {
        self.pki.ca_pem()
    }

    /// The work dir: `pki/`, `etcd-data/`, `<process>.log`, kubeconfigs.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The folder the binaries came from.
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// Whether kube-controller-manager runs.
    pub fn has_controller_manager(&self) -> bool {
        self.controller_manager.is_some()
    }

    /// How long [`ControlPlane::start`] took (binaries, certificates, etcd, apiserver, kcm).
    pub fn startup_time(&self) -> Duration {
        self.startup
    }

    /// A client config for the admin (user `admin`, group `system:masters`). Set the
    /// `auth_info.impersonate*` fields on it to act as someone else.
    pub fn client_config(&self) -> kube::Config {
        let mut config =
            kube::Config::new(self.server_url.parse().expect("server_url is a valid URI"));
        config.root_cert = Some(vec![self.pki.ca_der().to_vec()]);
        config.auth_info.client_certificate = Some(self.admin_cert.display().to_string());
        config.auth_info.client_key = Some(self.admin_key.display().to_string());
        config.connect_timeout = Some(Duration::from_secs(10));
        config
    }

    /// An admin client. Must be called inside a tokio runtime.
    pub async fn client(&self) -> kube::Client {
        kube::Client::try_from(self.client_config())
            .expect("the admin client config is always valid")
    }

    /// Writes a kubeconfig that authenticates as `user` in `groups` with a client certificate
    /// signed by the cluster CA, and returns its path (`<dir>/users/<user>.kubeconfig`).
    ///
    /// A certificate here carries at most two groups; with more, the kubeconfig uses the admin
    /// certificate and impersonates `user` and `groups` instead (`as` / `as-groups`), which the
    /// apiserver's authorizer and admission see the same way.
    pub fn kubeconfig_for(&self, user: &str, groups: &[&str]) -> Result<PathBuf, Error> {
        let users = self.dir.join("users");
        std::fs::create_dir_all(&users).context(|| format!("creating {}", users.display()))?;
        let safe: String = user
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let path = users.join(format!("{safe}.kubeconfig"));
        let yaml = if groups.len() <= certs::MAX_CERT_GROUPS {
            let cert = self.pki.client_cert(user, groups)?;
            certs::kubeconfig_yaml(&self.server_url, self.pki.ca_pem(), user, &cert)
        } else {
            let admin = CertAndKey {
                cert_pem: std::fs::read_to_string(&self.admin_cert)
                    .context(|| "reading the admin cert".into())?,
                key_pem: std::fs::read_to_string(&self.admin_key)
                    .context(|| "reading the admin key".into())?,
            };
            let base = certs::kubeconfig_yaml(&self.server_url, self.pki.ca_pem(), user, &admin);
            let mut extra = format!("    as: {user:?}\n    as-groups:\n");
            for g in groups {
                extra.push_str(&format!("    - {g:?}\n"));
            }
            base.replacen("contexts:\n", &format!("{extra}contexts:\n"), 1)
        };
        write_file(&path, &yaml, true)?;
        Ok(path)
    }

    /// Starts `command` so that it never outlives this control plane or the harness process
    /// (forked from the control plane's spawner thread, own process group, parent-death
    /// signal), with stdout and stderr appended to `<dir>/<name>.log`. Stop it before the
    /// control plane for an orderly end; it gets SIGKILL when the control plane stops anyway.
    pub fn spawn_logged(&self, name: &str, command: Command) -> Result<ManagedProcess, Error> {
        let log = self.dir.join(format!("{name}.log"));
        ManagedProcess::spawn(&self.spawner, name, command, Some(&log))
            .context(|| format!("starting {name} ({})", log.display()))
    }

    /// Like [`ControlPlane::spawn_logged`], but the command's own stdout and stderr settings
    /// are kept (inherited by default). stdin is closed.
    pub fn spawn(&self, name: &str, command: Command) -> Result<ManagedProcess, Error> {
        ManagedProcess::spawn(&self.spawner, name, command, None)
            .context(|| format!("starting {name}"))
    }

    /// The last lines of a component's log (`etcd`, `kube-apiserver`, `kube-controller-manager`
    /// or any name given to [`ControlPlane::spawn_logged`]).
    pub fn log_tail(&self, name: &str, lines: usize) -> String {
        process::tail_file(&self.dir.join(format!("{name}.log")), lines)
    }

    /// Whether etcd, kube-apiserver and (if started) kube-controller-manager are still running;
    /// the first one that is not, with its exit status.
    pub fn check_running(&mut self) -> Result<(), String> {
        for p in [
            &mut self.etcd,
            &mut self.apiserver,
            &mut self.controller_manager,
        ]
        .into_iter()
        .flatten()
        {
            if let Some(status) = p.exit_status() {
                return Err(format!("{} exited ({})", p.name(), describe_status(status)));
            }
        }
        Ok(())
    }

    /// The running processes of the control plane, by name (etcd, kube-apiserver,
    /// kube-controller-manager): what a benchmark weighs the CPU of.
    pub fn processes(&self) -> Vec<(&str, u32)> {
        [&self.etcd, &self.apiserver, &self.controller_manager]
            .into_iter()
            .flatten()
            .map(|p| (p.name(), p.pid()))
            .collect()
    }

    /// Kills kube-apiserver with SIGKILL, as a crash would: its clients' connections break and
    /// new ones are refused until [`ControlPlane::start_apiserver`]. A no-op if it is not running.
    pub fn kill_apiserver(&mut self) {
        if let Some(p) = self.apiserver.as_mut() {
            p.kill();
        }
    }

    /// Starts kube-apiserver again as it first ran (same port, flags, certificates and etcd; its
    /// log appended to) and waits until its `/readyz` answers. Returns how long that took; at
    /// once if it runs.
    pub fn start_apiserver(&mut self) -> Result<Duration, Error> {
        let t = Instant::now();
        if self.apiserver.as_mut().is_some_and(|p| p.is_running()) {
            return Ok(Duration::ZERO);
        }
        let launch = self
            .apiserver_launch
            .as_ref()
            .ok_or_else(|| Error::Binaries("kube-apiserver was never started".into()))?;
        let command = launch.command();
        self.apiserver = Some(self.spawn_logged("kube-apiserver", command)?);
        self.wait_apiserver(Duration::from_secs(180))?;
        Ok(t.elapsed())
    }

    /// Kills etcd with SIGKILL, as a crash would; kube-apiserver keeps running and answers
    /// errors until [`ControlPlane::start_etcd`]. A no-op if it is not running.
    pub fn kill_etcd(&mut self) {
        if let Some(p) = self.etcd.as_mut() {
            p.kill();
        }
    }

    /// Starts etcd again as it first ran (same ports and data dir; its log appended to) and
    /// waits until its `/health` answers. kube-apiserver reconnects by itself. Returns how long
    /// that took; at once if it runs.
    pub fn start_etcd(&mut self) -> Result<Duration, Error> {
        let t = Instant::now();
        if self.etcd.as_mut().is_some_and(|p| p.is_running()) {
            return Ok(Duration::ZERO);
        }
        let launch = self
            .etcd_launch
            .as_ref()
            .ok_or_else(|| Error::Binaries("etcd was never started".into()))?;
        let command = launch.command();
        self.etcd = Some(self.spawn_logged("etcd", command)?);
        self.wait_etcd()?;
        Ok(t.elapsed())
    }

    /// Waits up to 60 s for etcd's `/health`.
    fn wait_etcd(&mut self) -> Result<(), Error> {
        let addr = self.etcd_addr.clone();
        wait_ready(
            self.etcd.as_mut().expect("etcd was started"),
            Duration::from_secs(60),
            || {
                let addr = addr.clone();
                async move { etcd_health(&addr) }
            },
        )
    }

    /// Waits up to `timeout` for kube-apiserver's `/readyz` to answer 200.
    fn wait_apiserver(&mut self, timeout: Duration) -> Result<(), Error> {
        let config = self.client_config();
        wait_ready(
            self.apiserver.as_mut().expect("kube-apiserver was started"),
            timeout,
            || {
                let config = config.clone();
                async move {
                    let client = kube::Client::try_from(config).map_err(|e| e.to_string())?;
                    let req = http::Request::get("/readyz")
                        .body(Vec::new())
                        .map_err(|e| e.to_string())?;
                    client
                        .request_text(req)
                        .await
                        .map(|_| ())
                        .map_err(|e| e.to_string())
                }
            },
        )
    }

    /// Stops kube-controller-manager and kube-apiserver, then etcd (SIGTERM, up to 5 s each,
    /// then SIGKILL), ends the spawner thread (so anything else started through this control
    /// plane gets SIGKILL), and removes the work dir unless `TENANCY_KEEP_CLUSTER_DIR` is set.
    /// Idempotent.
    pub fn stop(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        let t = Instant::now();
        {
            let mut first: Vec<&mut ManagedProcess> =
                [&mut self.controller_manager, &mut self.apiserver]
                    .into_iter()
                    .flatten()
                    .collect();
            terminate_all(&mut first, Duration::from_secs(5));
        }
        if let Some(etcd) = self.etcd.as_mut() {
            etcd.terminate(Duration::from_secs(5));
        }
        self.spawner.shutdown();
        let keep = self.keep_dir || std::env::var_os(KEEP_DIR_ENV).is_some_and(|v| !v.is_empty());
        if keep {
            eprintln!(
                "[devcluster] stopped in {:.1}s; kept {}",
                t.elapsed().as_secs_f64(),
                self.dir.display()
            );
        } else {
            if self.dir.join(DIR_MARKER).exists()
                && let Err(e) = std::fs::remove_dir_all(&self.dir)
            {
                eprintln!("[devcluster] could not remove {}: {e}", self.dir.display());
            }
            eprintln!("[devcluster] stopped in {:.1}s", t.elapsed().as_secs_f64());
        }
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A program, its arguments and its working dir: how a component was started, so that it can
/// be started again the same way (a `Command` cannot be cloned).
#[derive(Clone, Debug)]
struct Launch {
    program: OsString,
    args: Vec<OsString>,
    dir: Option<PathBuf>,
}

impl Launch {
    fn of(command: &Command) -> Launch {
        Launch {
            program: command.get_program().to_owned(),
            args: command.get_args().map(|a| a.to_owned()).collect(),
            dir: command.get_current_dir().map(Path::to_path_buf),
        }
    }

    fn command(&self) -> Command {
        let mut command = Command::new(&self.program);
        command.args(&self.args);
        if let Some(dir) = &self.dir {
            command.current_dir(dir);
        }
        command
    }
}

/// The kube-controller-manager controllers that make a control plane without nodes behave:
/// namespaces finish deleting, quotas get status, owner references cascade, service accounts
/// and their tokens and the root CA ConfigMap exist, and the aggregated `admin`/`edit`/`view`
/// ClusterRoles get their rules.
pub const CONTROLLERS: &[&str] = &[
    "namespace-controller",
    "garbage-collector-controller",
    "resourcequota-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "root-ca-certificate-publisher-controller",
    "clusterrole-aggregation-controller",
];

/// Creates (or wipes, if it is a previous control plane's) the work dir and marks it.
fn prepare_dir(requested: Option<&Path>) -> Result<PathBuf, Error> {
    let dir = match requested {
        None => tempfile::Builder::new()
            .prefix("tenancy-cluster-")
            .tempdir()
            .context(|| "creating a temp dir".into())?
            .keep(),
        Some(dir) => {
            if dir.exists() {
                let empty = std::fs::read_dir(dir)
                    .context(|| format!("reading {}", dir.display()))?
                    .next()
                    .is_none();
                if !empty {
                    if !dir.join(DIR_MARKER).exists() {
                        return Err(Error::Io {
                            context: format!(
                                "{} is not empty and not a control plane's work dir",
                                dir.display()
                            ),
                            source: io::Error::from(io::ErrorKind::AlreadyExists),
                        });
                    }
                    std::fs::remove_dir_all(dir).context(|| format!("wiping {}", dir.display()))?;
                }
            }
            std::fs::create_dir_all(dir).context(|| format!("creating {}", dir.display()))?;
            dir.to_path_buf()
        }
    };
    std::fs::write(
        dir.join(DIR_MARKER),
        "a tenancy-operator devcluster work dir; removed when it stops\n",
    )
    .context(|| format!("writing into {}", dir.display()))?;
    Ok(dir)
}

fn write_file(path: &Path, contents: &str, private: bool) -> Result<PathBuf, Error> {
    std::fs::write(path, contents).context(|| format!("writing {}", path.display()))?;
    if private {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .context(|| format!("chmod {}", path.display()))?;
    }
    Ok(path.to_path_buf())
}

/// Runs `f` on a scoped thread with its own current-thread tokio runtime, so that callers need
/// no runtime and callers inside one do not block it from within.
fn on_private_runtime<R: Send>(f: impl FnOnce(&tokio::runtime::Runtime) -> R + Send) -> R {
    std::thread::scope(|s| {
        s.spawn(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a current-thread runtime always builds");
            f(&rt)
        })
        .join()
        .expect("the readiness probe thread panicked")
    })
}

/// Polls `probe` every 100 ms until it succeeds, the process exits, or `timeout` passes.
fn wait_ready<F, Fut>(
    process: &mut ManagedProcess,
    timeout: Duration,
    probe: F,
) -> Result<(), Error>
where
    F: Fn() -> Fut + Send + Sync,
    Fut: Future<Output = Result<(), String>>,
{
    let fail = |process: &ManagedProcess, reason: String| Error::Start {
        component: process.name().to_string(),
        reason,
        log: process
            .log_path()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        tail: process.log_tail(LOG_TAIL_LINES),
    };
    let started = Instant::now();
    let outcome = on_private_runtime(|rt| {
        rt.block_on(async {
            let mut last: String;
            loop {
                if let Some(status) = process.exit_status() {
                    return Err(format!("it exited ({})", describe_status(status)));
                }
                match tokio::time::timeout(Duration::from_secs(10), probe()).await {
                    Ok(Ok(())) => return Ok(()),
                    Ok(Err(e)) => last = e,
                    Err(_) => last = "probe timed out".into(),
                }
                if started.elapsed() > timeout {
                    return Err(format!("not ready after {timeout:?}; last probe: {last}"));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    });
    outcome.map_err(|reason| fail(process, reason))
}

/// etcd's `/health` over plain HTTP on loopback.
fn etcd_health(addr: &str) -> Result<(), String> {
    use std::io::{Read, Write};
    let addr: std::net::SocketAddr = addr.parse().map_err(|e| format!("{e}"))?;
    let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1))
        .map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(format!("GET /health HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .map_err(|e| e.to_string())?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|e| e.to_string())?;
    if response.contains("\"health\":\"true\"") {
        Ok(())
    } else {
        Err(format!(
            "etcd /health: {}",
            response.lines().last().unwrap_or_default()
        ))
    }
}

/// `PATH` with `dir` in front (for running `kubectl`, `helm` next to the control plane's own).
pub fn path_with(dir: &Path) -> OsString {
    let mut paths = vec![dir.to_path_buf()];
    paths.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    std::env::join_paths(paths).unwrap_or_default()
}
