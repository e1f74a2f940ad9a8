//! Shared helpers of the end-to-end suite: the [`Env`] every test gets (one control plane for
//! the whole run, a shared tokio runtime), clients (admin and impersonated), `kubectl`, applying
//! YAML, polling, access checks, and starting the operator process.

// Helpers for every test module; not each is used by every module at every stage.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::ResourceExt;
use kube::api::{DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
pub use libtest_mimic::{Failed, Trial};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tenancy_operator::api::{Customer, MembershipPhase, Project, ProjectMembership};
use tenancy_operator::devcluster::apply::{self, ApplyError};
use tenancy_operator::devcluster::install::{LocalOperator, install};
use tenancy_operator::devcluster::process::ManagedProcess;
use tenancy_operator::devcluster::{ControlPlane, ControlPlaneOptions, free_port};
use tenancy_operator::ledger;

/// What a test returns. Anything that implements Display converts into a failure with `?`.
pub type TestResult = Result<(), Failed>;

/// Field manager of everything the tests apply.
pub const FIELD_MANAGER: &str = "tenancy-e2e";

/// Longest a single test may run before it fails as hung.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(300);

/// Everything a test needs, shared by all tests of one run.
pub struct Env {
    cluster: Option<ControlPlane>,
    local: Option<LocalOperator>,
    runtime: tokio::runtime::Runtime,
    operator: Option<OperatorProcess>,
}

impl Env {
    /// Starts the control plane and installs the CRDs. The operator is not started here: see
    /// [`Env::set_operator`] and [`start_operator`].
    pub fn start() -> Result<Env, String> {
        Env::start_with(ControlPlaneOptions::default())
    }

    /// [`Env::start`] on a control plane started with `opts`.
    pub fn start_with(opts: ControlPlaneOptions) -> Result<Env, String> {
        let runtime = runtime()?;
        let cluster = ControlPlane::start(opts).map_err(|e| e.to_string())?;
        let t = Instant::now();
        let local = LocalOperator::new().map_err(|e| format!("picking the webhook port: {e}"))?;
        runtime.block_on(async {
            let client = cluster.client().await;
            install(&client, &local)
                .await
                .map_err(|e| format!("installing the CRDs, roles and webhook configurations: {e}"))
        })?;
        eprintln!(
            "[e2e] CRDs, role ClusterRoles and webhook configurations installed in {:.1}s",
            t.elapsed().as_secs_f64()
        );
        Ok(Env {
            cluster: Some(cluster),
            local: Some(local),
            runtime,
            operator: None,
        })
    }

    /// An Env without a cluster, for `--list` (tests are named, never run).
    pub fn unstarted() -> Result<Env, String> {
        Ok(Env {
            cluster: None,
            local: None,
            runtime: runtime()?,
            operator: None,
        })
    }

    /// Records the operator process the tests run against (call before sharing the Env).
    pub fn set_operator(&mut self, operator: OperatorProcess) {
        self.operator = Some(operator);
    }

    /// Where the suite's operator serves its webhook, and the flags that say so.
    pub fn local(&self) -> &LocalOperator {
        self.local
            .as_ref()
            .expect("this Env has no control plane (--list)")
    }

    /// The file holding the operator's clock offset in seconds (tests that move time write it).
    pub fn clock_offset_file(&self) -> PathBuf {
        self.cluster().dir().join("clock-offset")
    }

    /// The operator process, if the suite started one.
    pub fn operator(&self) -> Option<&OperatorProcess> {
        self.operator.as_ref()
    }

    /// The control plane. Panics in an Env made by [`Env::unstarted`].
    pub fn cluster(&self) -> &ControlPlane {
        self.cluster
            .as_ref()
            .expect("this Env has no control plane (--list)")
    }

    pub fn kubeconfig(&self) -> &Path {
        self.cluster().kubeconfig()
    }

    /// The shared multi-thread runtime.
    pub fn handle(&self) -> &tokio::runtime::Handle {
        self.runtime.handle()
    }

    /// Runs a future to completion on the shared runtime (from a test thread).
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.runtime.handle().block_on(future)
    }

    /// Stops the operator (if any), then the control plane.
    pub fn shutdown(mut self) {
        if let Some(operator) = self.operator.take() {
            operator.stop();
        }
        if let Some(mut cluster) = self.cluster.take() {
            cluster.stop();
        }
        self.runtime.shutdown_timeout(Duration::from_secs(5));
    }

    /// An admin client (user `admin`, group `system:masters`).
    pub async fn client(&self) -> Client {
        self.cluster().client().await
    }

    /// A client that impersonates `user` in `groups` (the admin may impersonate anyone). The
    /// apiserver authorizes and admits its requests as that user; `system:authenticated` is
    /// added by the apiserver.
    pub async fn client_as(&self, user: &str, groups: &[&str]) -> Client {
        let mut config = self.cluster().client_config();
        config.auth_info.impersonate = Some(user.to_string());
        config.auth_info.impersonate_groups = Some(groups.iter().map(|g| g.to_string()).collect());
        Client::try_from(config).expect("an impersonating client config is valid")
    }

    /// Runs `kubectl` (from PATH) with the admin kubeconfig.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_with_input(args, None)
    }

    /// Runs `kubectl` with the admin kubeconfig and `input` on its stdin (e.g. `apply -f -`).
    pub fn kubectl_with_input(&self, args: &[&str], input: Option<&str>) -> Output {
        kubectl_with(self.kubeconfig(), args, input)
    }

    /// Server-side applies every document of a YAML stream as the admin, in order.
    pub async fn apply_yaml(&self, yaml: &str) -> Result<Vec<DynamicObject>, ApplyError> {
        apply::apply_yaml(&self.client().await, yaml, FIELD_MANAGER).await
    }

    /// Deletes objects (in reverse order); already-gone objects are fine.
    pub async fn delete_objects(&self, objects: &[DynamicObject]) -> Result<(), ApplyError> {
        let client = self.client().await;
        for object in objects.iter().rev() {
            apply::delete_object(&client, object).await?;
        }
        Ok(())
    }

    /// Whether `user` in `groups` may `verb` the `resource` (`pods`, `projects.tenancy.dev`,
    /// `pods/log`) in `namespace` (None: cluster-wide), as the apiserver's authorizer answers
    /// a SubjectAccessReview.
    pub async fn can_i(
        &self,
        user: &str,
        groups: &[&str],
        verb: &str,
        resource: &str,
        namespace: Option<&str>,
    ) -> bool {
        allowed(self, user, groups, verb, resource, None, namespace).await
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("e2e-runtime")
        .build()
        .map_err(|e| format!("starting the tokio runtime: {e}"))
}

/// What kube-apiserver answers for an aggregated API (`views.tenancy.dev`) between a failed and
/// the next passing availability check of its APIService (on a loaded machine a check can time
/// out). A user runs the command again; so does [`kubectl_with`].
const AGGREGATED_API_UNAVAILABLE: &str = "the server is currently unable to handle the request";

/// Runs `kubectl` from PATH with this kubeconfig, again (up to 20 times, a second apart) while
/// kube-apiserver says an aggregated API is momentarily unavailable. Panics if there is no
/// kubectl.
pub fn kubectl_with(kubeconfig: &Path, args: &[&str], input: Option<&str>) -> Output {
    let mut out = kubectl_once(kubeconfig, args, input);
    for _ in 0..20 {
        if out.status.success()
            || !String::from_utf8_lossy(&out.stderr).contains(AGGREGATED_API_UNAVAILABLE)
        {
            break;
        }
        eprintln!(
            "[e2e] kubectl {}: an aggregated API was unavailable for a moment (503); again",
            args.join(" ")
        );
        std::thread::sleep(Duration::from_secs(1));
        out = kubectl_once(kubeconfig, args, input);
    }
    out
}

fn kubectl_once(kubeconfig: &Path, args: &[&str], input: Option<&str>) -> Output {
    use std::io::Write;
    let mut child = Command::new("kubectl")
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        // Discovery and OpenAPI caches inside the cluster's dir, removed with it.
        .env(
            "KUBECACHEDIR",
            kubeconfig
                .parent()
                .unwrap_or(Path::new("."))
                .join("kubectl-cache"),
        )
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run kubectl (is it on PATH?): {e}"));
    if let Some(input) = input {
        child
            .stdin
            .take()
            .expect("piped")
            .write_all(input.as_bytes())
            .expect("writing kubectl's stdin");
    }
    child.wait_with_output().expect("waiting for kubectl")
}

/// A name no other test of this run uses: `<prefix>-<n>` (lowercase, DNS-safe if the prefix is).
pub fn unique_name(prefix: &str) -> String {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);
    format!(
        "{prefix}-{}",
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
}

/// stdout of a successful command, or a failure with its stderr.
pub fn stdout_of(output: &Output, what: &str) -> Result<String, Failed> {
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(format!(
            "{what} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )
        .into())
    }
}

/// A test named `name` that runs `test` on the shared runtime, failing it after
/// [`TEST_TIMEOUT`].
pub fn trial<F, Fut>(env: &Arc<Env>, name: &str, test: F) -> Trial
where
    F: FnOnce(Arc<Env>) -> Fut + Send + 'static,
    Fut: Future<Output = TestResult>,
{
    let env = env.clone();
    let name_owned = name.to_string();
    Trial::test(name, move || {
        let future = test(env.clone());
        env.block_on(async move {
            match tokio::time::timeout(TEST_TIMEOUT, future).await {
                Ok(result) => result,
                Err(_) => {
                    Err(format!("{name_owned} did not finish within {TEST_TIMEOUT:?}").into())
                }
            }
        })
    })
}

/// Polls `check` every 200 ms until it returns `Some`, or fails after `timeout` naming `what`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<T, Failed>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return Ok(value);
        }
        if Instant::now() > deadline {
            return Err(format!("timed out after {timeout:?} waiting for {what}").into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Polls `check` every 200 ms until it returns `Ok`, or fails after `timeout` naming `what` and
/// what `check` saw last (its `Err`).
pub async fn wait_until<T, F, Fut>(what: &str, timeout: Duration, check: F) -> Result<T, Failed>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    wait_until_every(what, timeout, Duration::from_millis(200), check).await
}

/// [`wait_until`], polling every `every` (a module whose printed figures are measured by its
/// waits picks its own resolution).
pub async fn wait_until_every<T, F, Fut>(
    what: &str,
    timeout: Duration,
    every: Duration,
    mut check: F,
) -> Result<T, Failed>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let seen = match check().await {
            Ok(value) => return Ok(value),
            Err(seen) => seen,
        };
        if Instant::now() > deadline {
            return Err(format!(
                "timed out after {timeout:?} waiting for {what}; last seen: {seen}"
            )
            .into());
        }
        tokio::time::sleep(every).await;
    }
}

/// The message of an apiserver error (`Status.message`), or the error's text.
pub fn error_message(error: &ApplyError) -> String {
    match error.kube_error() {
        Some(kube::Error::Api(status)) => status.message.clone(),
        _ => error.to_string(),
    }
}

/// The crate's `examples/` folder.
pub fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
}

/// The operator binary running against the test cluster (`tenancy-operator run`).
pub struct OperatorProcess {
    process: Mutex<ManagedProcess>,
    metrics_addr: SocketAddr,
    log: PathBuf,
    /// How it was started, so that [`OperatorProcess::resume`] starts it the same way.
    name: String,
    kubeconfig: PathBuf,
    args: Vec<String>,
}

impl OperatorProcess {
    /// `http://127.0.0.1:<port>`: /metrics, /healthz, /readyz.
    pub fn metrics_url(&self) -> String {
        format!("http://{}", self.metrics_addr)
    }

    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics_addr
    }

    /// `<cluster dir>/<name>.log` (`operator.log` for the suite's operator).
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The last `lines` lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        self.process.lock().expect("operator lock").log_tail(lines)
    }

    pub fn is_running(&self) -> bool {
        self.process.lock().expect("operator lock").is_running()
    }

    pub fn pid(&self) -> u32 {
        self.process.lock().expect("operator lock").pid()
    }

    /// SIGKILL (no chance to release its Lease or finish anything), and reap it.
    pub fn kill(&self) {
        self.process.lock().expect("operator lock").kill();
    }

    /// Stops it (SIGTERM, up to 10 s, then SIGKILL) but keeps this handle, so that
    /// [`OperatorProcess::resume`] can start it again. For exclusive tests that run other
    /// operator processes against the cluster.
    pub fn pause(&self) {
        self.process
            .lock()
            .expect("operator lock")
            .terminate(Duration::from_secs(10));
    }

    /// Starts it again as it was first started (same arguments and metrics port, appending to
    /// the same log) and waits until it is ready. A no-op while it runs.
    pub fn resume(&self, cluster: &ControlPlane) -> Result<(), String> {
        let mut process = self.process.lock().expect("operator lock");
        if process.is_running() {
            return Ok(());
        }
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        *process = spawn_ready(
            cluster,
            &self.name,
            &self.kubeconfig,
            self.metrics_addr,
            &args,
        )?;
        Ok(())
    }

    /// SIGTERM, up to 10 s to exit, then SIGKILL.
    pub fn stop(self) {
        self.process
            .into_inner()
            .expect("operator lock")
            .terminate(Duration::from_secs(10));
    }
}

/// Starts `tenancy-operator run` against the cluster, with `--metrics-addr 127.0.0.1:<free
/// port>` and `extra_args`, logging to `<cluster dir>/operator.log`; returns once its
/// `/readyz` answers 200 (or fails with the log tail if it exits or is not ready in 60 s).
pub fn start_operator(
    cluster: &ControlPlane,
    extra_args: &[&str],
) -> Result<OperatorProcess, String> {
    let kubeconfig = cluster
        .kubeconfig_for(
            tenancy_operator::devcluster::install::OPERATOR_USER,
            &["system:masters"],
        )
        .map_err(|e| format!("the operator's kubeconfig: {e}"))?;
    start_operator_as(cluster, "operator", &kubeconfig, extra_args)
}

/// Like [`start_operator`], but with its own `kubeconfig` (whose credentials it acts with) and
/// logging to `<cluster dir>/<name>.log`: for tests that run further operator processes.
pub fn start_operator_as(
    cluster: &ControlPlane,
    name: &str,
    kubeconfig: &Path,
    extra_args: &[&str],
) -> Result<OperatorProcess, String> {
    let port = free_port().map_err(|e| format!("picking a port: {e}"))?;
    let metrics_addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let process = spawn_ready(cluster, name, kubeconfig, metrics_addr, extra_args)?;
    let log = process
        .log_path()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    Ok(OperatorProcess {
        process: Mutex::new(process),
        metrics_addr,
        log,
        name: name.to_string(),
        kubeconfig: kubeconfig.to_path_buf(),
        args: extra_args.iter().map(|a| a.to_string()).collect(),
    })
}

fn spawn_ready(
    cluster: &ControlPlane,
    name: &str,
    kubeconfig: &Path,
    metrics_addr: SocketAddr,
    extra_args: &[&str],
) -> Result<ManagedProcess, String> {
    let binary = env!("CARGO_BIN_EXE_tenancy-operator");
    // TENANCY_OPERATOR_WRAPPER: a command the operator runs under, given the binary and its
    // arguments (a profiler; it should `exec` the operator so that signals reach it).
    let mut cmd = match std::env::var("TENANCY_OPERATOR_WRAPPER") {
        Ok(wrapper) if !wrapper.is_empty() => {
            let mut cmd = Command::new(wrapper);
            cmd.arg(binary);
            cmd
        }
        _ => Command::new(binary),
    };
    cmd.arg("run")
        .arg("--metrics-addr")
        .arg(metrics_addr.to_string())
        .args(extra_args)
        .env("KUBECONFIG", kubeconfig)
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
        );
    let mut process = cluster.spawn_logged(name, cmd).map_err(|e| e.to_string())?;
    let log = process
        .log_path()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = process.exit_status() {
            return Err(format!(
                "the operator exited ({status}) before it was ready\n--- last lines of {} ---\n{}",
                log.display(),
                process.log_tail(40)
            ));
        }
        if http_get_ok(metrics_addr, "/readyz") {
            return Ok(process);
        }
        if Instant::now() > deadline {
            let tail = process.log_tail(40);
            process.terminate(Duration::from_secs(5));
            return Err(format!(
                "the operator's /readyz did not answer 200 within 60s\n--- last lines of {} ---\n{tail}",
                log.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Whether `GET path` on a plain-HTTP loopback server answers 200.
pub fn http_get_ok(addr: SocketAddr, path: &str) -> bool {
    http_get(addr, path).is_some_and(|(status, _)| status == 200)
}

/// A minimal HTTP/1.0 GET: (status code, body).
pub fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((status, body))
}

// ---------------------------------------------------------------------------------------------
// Objects, requests and access checks shared by the test modules

/// Whether `user` in `groups` may `verb` `resource` (`projects.tenancy.dev`, or with a
/// subresource `projects.tenancy.dev/status`), the object `name` of it if given, in `namespace`,
/// as the apiserver's authorizer answers a SubjectAccessReview made with `client`.
pub async fn access_review(
    client: &Client,
    user: &str,
    groups: &[&str],
    verb: &str,
    resource: &str,
    name: Option<&str>,
    namespace: Option<&str>,
) -> Result<bool, kube::Error> {
    let (resource, subresource) = match resource.split_once('/') {
        Some((r, s)) => (r, Some(s.to_string())),
        None => (resource, None),
    };
    let (resource, group) = resource.split_once('.').unwrap_or((resource, ""));
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(user.to_string()),
            groups: (!groups.is_empty()).then(|| groups.iter().map(|g| g.to_string()).collect()),
            resource_attributes: Some(ResourceAttributes {
                group: Some(group.to_string()),
                resource: Some(resource.to_string()),
                subresource,
                verb: Some(verb.to_string()),
                name: name.map(str::to_string),
                namespace: namespace.map(str::to_string),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let answer = Api::<SubjectAccessReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await?;
    Ok(answer.status.is_some_and(|s| s.allowed))
}

/// Whether `user` (no groups) may `verb` the object `name` of `resource` (`projects.tenancy.dev`)
/// in `namespace`, as the apiserver's authorizer answers a SubjectAccessReview. Like
/// [`Env::can_i`], but for rules limited to resource names.
pub async fn can_i_named(
    env: &Env,
    user: &str,
    verb: &str,
    resource: &str,
    name: &str,
    namespace: Option<&str>,
) -> bool {
    allowed(env, user, &[], verb, resource, Some(name), namespace).await
}

/// [`access_review`] with the suite's client (a SubjectAccessReview is always served).
async fn allowed(
    env: &Env,
    user: &str,
    groups: &[&str],
    verb: &str,
    resource: &str,
    name: Option<&str>,
    namespace: Option<&str>,
) -> bool {
    access_review(
        &env.client().await,
        user,
        groups,
        verb,
        resource,
        name,
        namespace,
    )
    .await
    .expect("SubjectAccessReview is always served")
}

pub fn customer(name: &str, spec: Value) -> Customer {
    from_json(json!({
        "apiVersion": "tenancy.dev/v1alpha1", "kind": "Customer",
        "metadata": {"name": name}, "spec": spec,
    }))
}

/// A Deployment that never runs (no kubelet, no deployment controller): it only has to exist.
pub fn deployment(name: &str) -> Deployment {
    from_json(json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": "registry.invalid/app:1"}]},
            },
        },
    }))
}

pub fn from_json<T: DeserializeOwned>(value: Value) -> T {
    serde_json::from_value(value).expect("a test object deserializes")
}

pub fn merge(value: Value) -> Patch<Value> {
    Patch::Merge(value)
}

pub fn owners(users: &[&str]) -> Value {
    Value::Array(
        users
            .iter()
            .map(|u| json!({"kind": "User", "name": u}))
            .collect(),
    )
}

pub fn patch_params() -> PatchParams {
    PatchParams::default()
}

pub fn pp() -> PostParams {
    PostParams::default()
}

pub fn project(name: &str, spec: Value) -> Project {
    from_json(json!({
        "apiVersion": "tenancy.dev/v1alpha1", "kind": "Project",
        "metadata": {"name": name}, "spec": spec,
    }))
}

/// The HTTP code and message of an apiserver refusal, or the error's text.
pub fn refusal(error: &kube::Error) -> (u16, String) {
    match error {
        kube::Error::Api(s) => (s.code, s.message.clone()),
        other => (0, other.to_string()),
    }
}

pub fn status_text<T: Serialize>(status: &Option<T>) -> String {
    serde_json::to_string(status).unwrap_or_default()
}

/// How long the suite waits for access to be granted or taken away. Generous on purpose (CI is a
/// loaded 2-core machine); how fast it really happens is measured and printed, not asserted.
pub const ACCESS_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the suite waits for the operator to reconcile a change (same reasoning).
pub const RECONCILE_TIMEOUT: Duration = Duration::from_secs(60);

/// Waits until `user` may (`want`) or may not `verb` `resource` in `namespace`.
pub async fn wait_access(
    env: &Env,
    user: &str,
    verb: &str,
    resource: &str,
    namespace: Option<&str>,
    want: bool,
) -> TestResult {
    wait_access_as(env, user, &[], verb, resource, namespace, want).await
}

/// Waits until `user` in `groups` may (`want`) or may not `verb` `resource` in `namespace`.
pub async fn wait_access_as(
    env: &Env,
    user: &str,
    groups: &[&str],
    verb: &str,
    resource: &str,
    namespace: Option<&str>,
    want: bool,
) -> TestResult {
    let what = format!(
        "{user} to be {} {verb} {resource} in {}",
        if want { "allowed to" } else { "refused to" },
        namespace.unwrap_or("the cluster scope")
    );
    wait_for(&what, ACCESS_TIMEOUT, || async {
        (env.can_i(user, groups, verb, resource, namespace).await == want).then_some(())
    })
    .await
}

/// Waits until `user` may (`want`) or may not `verb` the object `name` of `resource`.
pub async fn wait_access_named(
    env: &Env,
    user: &str,
    verb: &str,
    resource: &str,
    name: &str,
    namespace: Option<&str>,
    want: bool,
) -> TestResult {
    let what = format!(
        "{user} to be {} {verb} {resource} {name}",
        if want { "allowed to" } else { "refused to" },
    );
    wait_for(&what, ACCESS_TIMEOUT, || async {
        (can_i_named(env, user, verb, resource, name, namespace).await == want).then_some(())
    })
    .await
}

/// The phase a membership's status holds, if any.
pub fn phase_of(m: &ProjectMembership) -> Option<MembershipPhase> {
    m.status.as_ref().and_then(|s| s.phase)
}

/// Waits until the membership `ns/name` is in `phase`.
pub async fn wait_membership_phase(
    client: &Client,
    ns: &str,
    name: &str,
    phase: MembershipPhase,
) -> Result<ProjectMembership, Failed> {
    let api: Api<ProjectMembership> = Api::namespaced(client.clone(), ns);
    wait_for(
        &format!("membership {ns}/{name} to be {phase:?}"),
        RECONCILE_TIMEOUT,
        || async {
            let m = api.get_opt(name).await.ok().flatten()?;
            (phase_of(&m) == Some(phase)).then_some(m)
        },
    )
    .await
}

/// Waits until the project's namespace `name` exists, is Active and carries
/// `tenancy.dev/state=<state>`.
pub async fn wait_namespace_state(
    client: &Client,
    name: &str,
    state: &str,
) -> Result<Namespace, Failed> {
    let api: Api<Namespace> = Api::all(client.clone());
    wait_for(
        &format!("namespace {name} to be {state}"),
        RECONCILE_TIMEOUT,
        || async {
            let ns = api.get_opt(name).await.ok().flatten()?;
            (ns.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Active")
                && ns.labels().get("tenancy.dev/state").map(String::as_str) == Some(state))
            .then_some(ns)
        },
    )
    .await
}

/// A customer's ledger in the operator's `namespace` (project -> reserved `hard`), None without
/// a ledger.
pub async fn ledger_of(
    client: &Client,
    namespace: &str,
    customer: &str,
) -> Result<Option<BTreeMap<String, BTreeMap<String, String>>>, Failed> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    Ok(api
        .get_opt(&ledger::ledger_name(customer))
        .await?
        .map(|cm| {
            ledger::decode(&cm)
                .into_iter()
                .map(|(p, r)| (p, r.hard))
                .collect()
        }))
}

/// What the customer's stored projects (not being deleted) hold: what its ledger must equal.
pub async fn stored_allocations(
    client: &Client,
    customer: &str,
) -> Result<BTreeMap<String, BTreeMap<String, String>>, Failed> {
    Ok(Api::<Project>::all(client.clone())
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .filter(|p| p.spec.customer == customer && p.metadata.deletion_timestamp.is_none())
        .map(|p| (p.name_any(), ledger::allocation(p)))
        .collect())
}

/// Waits until the project has the soft-delete finalizer (so deleting it archives it).
pub async fn wait_finalizer(client: &Client, name: &str) -> TestResult {
    wait_project(client, name, "soft-delete finalizer added", |p| {
        p.finalizers()
            .iter()
            .any(|f| f == "tenancy.dev/soft-delete")
            .then_some(())
    })
    .await
}

/// Waits until the Project is gone (its soft delete finished and released it).
pub async fn wait_project_gone(client: &Client, name: &str) -> TestResult {
    let projects: Api<Project> = Api::all(client.clone());
    wait_for(
        &format!("project {name} to be gone"),
        RECONCILE_TIMEOUT,
        || async { matches!(projects.get_opt(name).await, Ok(None)).then_some(()) },
    )
    .await
}

/// Waits until the project's status satisfies `check`; on timeout, says what the project and
/// its namespace looked like last.
pub async fn wait_project<T>(
    client: &Client,
    name: &str,
    what: &str,
    check: impl Fn(&Project) -> Option<T>,
) -> Result<T, Failed> {
    let projects = &Api::<Project>::all(client.clone());
    let check = &check;
    let waited = wait_for(
        &format!("project {name}: {what}"),
        RECONCILE_TIMEOUT,
        || async move {
            let p = projects.get_opt(name).await.ok().flatten()?;
            check(&p)
        },
    )
    .await;
    if let Err(e) = &waited {
        let project = projects.get_opt(name).await.ok().flatten();
        let ns = Api::<Namespace>::all(client.clone())
            .get_opt(name)
            .await
            .ok()
            .flatten();
        return Err(format!(
            "{}; the project's status: {}; its namespace's labels: {:?}, archive annotation: {}",
            e.message().unwrap_or_default(),
            project
                .map(|p| serde_json::to_string(&p.status).unwrap_or_default())
                .unwrap_or_else(|| "(no project)".into()),
            ns.as_ref().map(|n| n.labels().clone()),
            ns.as_ref()
                .map(|n| n.annotations().contains_key("tenancy.dev/archive"))
                .unwrap_or(false),
        )
        .into());
    }
    waited
}

/// What a request should come to, for [`Checks::row`]: each module names its own (the webhook
/// that refuses, the texts the message holds).
pub trait Expectation: std::fmt::Debug {
    /// Whether an answer with this HTTP code (200: allowed) and message meets it.
    fn met(&self, code: u16, message: &str) -> bool;
}

/// Checks collected rather than fatal, so one run reports every misbehaving row.
#[derive(Default)]
pub struct Checks {
    pub rows: Vec<String>,
    pub problems: Vec<String>,
}

impl Checks {
    fn record(&mut self, ok: bool, line: String, problem: String) -> bool {
        self.rows
            .push(format!("{} {line}", if ok { "ok  " } else { "FAIL" }));
        if !ok {
            self.problems.push(problem);
        }
        ok
    }

    /// A request and what it should come to.
    pub fn row<T>(
        &mut self,
        what: &str,
        expect: impl Expectation,
        result: Result<T, kube::Error>,
    ) -> bool {
        let (code, message) = match &result {
            Ok(_) => (200, String::new()),
            Err(e) => refusal(e),
        };
        let ok = expect.met(code, &message);
        let outcome = match &result {
            Ok(_) => "allowed".to_string(),
            Err(_) => format!("HTTP {code}: {message}"),
        };
        self.record(
            ok,
            format!("{what} -> {outcome}"),
            format!("{what}: expected {expect:?}, got {outcome}"),
        )
    }

    /// A fact about stored state, warnings or access; its detail is shown either way.
    pub fn fact(&mut self, what: &str, ok: bool, detail: impl Into<String>) {
        let detail = detail.into();
        let shown = if detail.is_empty() {
            String::new()
        } else {
            format!(" ({detail})")
        };
        self.record(ok, format!("{what}{shown}"), format!("{what}: {detail}"));
    }

    /// A check whose detail says what went wrong, shown only when it did.
    pub fn check(&mut self, what: &str, ok: bool, detail: impl Into<String>) {
        let detail = detail.into();
        let shown = if ok || detail.is_empty() {
            String::new()
        } else {
            format!(": {detail}")
        };
        self.record(ok, format!("{what}{shown}"), format!("{what}: {detail}"));
    }

    pub fn equal<T: PartialEq + std::fmt::Debug>(&mut self, what: &str, got: T, want: T) {
        let ok = got == want;
        self.check(what, ok, format!("expected {want:?}, got {got:?}"));
    }

    /// A wait whose failure does not stop the trial: its value or why it failed.
    pub fn outcome<T: std::fmt::Debug>(&mut self, what: &str, result: Result<T, Failed>) {
        match result {
            Ok(v) => self.fact(what, true, format!("{v:?}")),
            Err(e) => self.fact(what, false, e.message().unwrap_or_default().to_string()),
        }
    }

    /// A wait that must succeed for the rows after it to mean anything.
    pub fn waited<T>(&mut self, what: &str, result: Result<T, Failed>) -> Result<T, Failed> {
        match result {
            Ok(v) => {
                self.rows.push(format!("ok   {what}"));
                Ok(v)
            }
            Err(e) => {
                let why = e.message().unwrap_or_default().to_string();
                self.rows.push(format!("FAIL {what} ({why})"));
                self.problems.push(format!("{what}: {why}"));
                Err(format!("{what}: {why}\nrows so far:\n  {}", self.rows.join("\n  ")).into())
            }
        }
    }

    /// Prints every row; fails naming those that misbehaved.
    pub fn finish(self, title: &str) -> TestResult {
        eprintln!(
            "[e2e] {title} ({} rows):\n  {}",
            self.rows.len(),
            self.rows.join("\n  ")
        );
        if self.problems.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{title}: {} of {} rows misbehaved:\n{}",
                self.problems.len(),
                self.rows.len(),
                self.problems.join("\n")
            )
            .into())
        }
    }
}

// ---------------------------------------------------------------------------------------------
// A second operator process started like the suite's (the crash-consistency tests)

/// An operator process started like another one (same arguments and kubeconfig; see
/// [`OperatorProcess::start_like`]) with extra environment variables. Unlike an
/// [`OperatorProcess`], it may exit on its own, before or after it is ready (an armed fault
/// point aborts it): that is what it is for, so its exit is reported, not an error. Stopped
/// (SIGTERM, then SIGKILL) when dropped.
pub struct SideOperator {
    process: ManagedProcess,
    metrics_addr: SocketAddr,
    log: PathBuf,
    exited_before_ready: Option<std::process::ExitStatus>,
}

impl SideOperator {
    /// How it exited before its `/readyz` answered 200, if it did.
    pub fn exited_before_ready(&self) -> Option<std::process::ExitStatus> {
        self.exited_before_ready
    }

    /// Its exit status once it has exited (never blocks).
    pub fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.process.exit_status()
    }

    pub fn is_running(&mut self) -> bool {
        self.process.is_running()
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics_addr
    }

    /// `<cluster dir>/<name>.log`.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The last `lines` lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        self.process.log_tail(lines)
    }

    /// SIGTERM, up to `grace` to exit, then SIGKILL; returns how it exited.
    pub fn stop(&mut self, grace: Duration) -> Option<std::process::ExitStatus> {
        self.process.terminate(grace)
    }
}

impl OperatorProcess {
    /// The arguments it runs with (after `run --metrics-addr <addr>`).
    pub fn args(&self) -> &[String] {
        &self.args
    }

    /// The kubeconfig it acts with.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// Starts another `tenancy-operator run` with this one's arguments and kubeconfig (so it
    /// serves the same webhook port and reads the same clock file), its own metrics port, its log
    /// in `<cluster dir>/<name>.log`, and `envs` added to its environment (e.g.
    /// `TENANCY_FAULT=<point>`). Returns once its `/readyz` answers 200 or it has exited,
    /// whichever comes first; fails if neither happens within 60 s. Pause this one first: the
    /// test operator has no leader election, and only one operator may act at a time.
    pub fn start_like(
        &self,
        cluster: &ControlPlane,
        name: &str,
        envs: &[(&str, &str)],
    ) -> Result<SideOperator, String> {
        let port = free_port().map_err(|e| format!("picking a port: {e}"))?;
        let metrics_addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tenancy-operator"));
        cmd.arg("run")
            .arg("--metrics-addr")
            .arg(metrics_addr.to_string())
            .args(&self.args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            );
        for (key, value) in envs {
            cmd.env(key, value);
        }
        let mut process = cluster.spawn_logged(name, cmd).map_err(|e| e.to_string())?;
        let log = process
            .log_path()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = process.exit_status() {
                return Ok(SideOperator {
                    process,
                    metrics_addr,
                    log,
                    exited_before_ready: Some(status),
                });
            }
            if http_get_ok(metrics_addr, "/readyz") {
                return Ok(SideOperator {
                    process,
                    metrics_addr,
                    log,
                    exited_before_ready: None,
                });
            }
            if Instant::now() > deadline {
                let tail = process.log_tail(40);
                process.terminate(Duration::from_secs(5));
                return Err(format!(
                    "operator {name}'s /readyz did not answer 200 within 60s\n--- last lines of {} ---\n{tail}",
                    log.display()
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// SplitMix64: small, seeded, the same sequence on every platform (the generated-manifest round,
/// the soak): a run is repeated from its seed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform-ish in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// True with probability `percent` / 100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    /// One of `items`, if there is any.
    pub fn pick<T: Clone>(&mut self, items: &[T]) -> Option<T> {
        (!items.is_empty()).then(|| items[self.below(items.len())].clone())
    }

    /// One of `items`, which must not be empty.
    pub fn one<T: Clone>(&mut self, items: &[T]) -> T {
        self.pick(items).expect("something to choose from")
    }
}
