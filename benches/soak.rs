//! `make soak`: a bounded run of a seeded random workload against two operator replicas with
//! leader election, the leader killed with SIGKILL every few minutes, then the cluster compared
//! with a model of what must exist. One fresh local control plane, the release operator.
//!
//! - **Replicas**: A and B run `tenancy-operator run --leader-election` on Lease `soak-leader`
//!   (15 s), each serving the webhook and the read API on its own port. A small TCP proxy on the
//!   port the webhook configurations and the APIService point at passes each connection to a
//!   replica that accepts it (a Service with two endpoints). Every `SOAK_KILL_EVERY` seconds
//!   (default: 180, or a third of a shorter run) the replica holding the Lease gets SIGKILL and
//!   is started again at once, so the Lease moves (to the other one, or to the new process).
//! - **Workload** (`SOAK_RATE` operations a minute, default 30, seeded by `SOAK_SEED`), one
//!   operation at a time over fixed pools of 24 project names, 16 users and 4 customers (each
//!   with an owner and a quota every project reserves in its ledger), as staff: create a
//!   project; add a membership (Manager, Administrator or Member; a third with an expiration
//!   20–60 s ahead, none in the last 75 s); change a role; remove a membership; drop an
//!   expiration; move a project to another customer (preserving permissions or not); set the
//!   end date to yesterday (Expired) or a year ahead (Active again); soft delete; recover (with
//!   or without restoring the team). A move, a soft delete and a recovery start once the
//!   operator has seen every membership of the project and wait until it has done them, so
//!   the model knows exactly which memberships they touch.
//! - **Model**: per project name: absent, live (customer, ended, memberships with role,
//!   expiration and whether revoked) or archived (customer, the team the archive keeps).
//! - **Checks**: every minute between operations, invariants that hold at every moment (every
//!   stored project is in its customer's ledger; an archived namespace holds no RoleBinding).
//!   At the end, once every expiration has passed and the operator's writes stand still: every
//!   Project (customer, phase, member counts), namespace (live, or archived for the right
//!   customer with no RoleBinding), membership (role, phase), the ledger of every customer
//!   (exactly the live projects and what they hold), and a SubjectAccessReview for every user
//!   and owner in every project (list pods; create deployments for Managers and
//!   Administrators). Mismatches are printed; if any, the comparison is repeated for up to
//!   60 s before it counts as failed.
//! - **Figures**: operations by kind, leader kills and takeover times, invariant checks and
//!   failures, the leader's RSS at the start, every 30 s and at the end (flat: the end within
//!   20% or 16 MiB of the start), CPU, reconcile errors, and the writes of both replicas in a
//!   30 s quiet window at the end (must be 0). One table, and `target/bench/soak.json`.
//!
//! Exits non-zero on any mismatch, failed invariant, failed operation, RSS that is not flat or
//! a write in the quiet window.

#[path = "../tests/e2e/support.rs"]
#[allow(unused_imports)]
mod support;

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tenancy_operator::api::{MembershipPhase, Project, ProjectMembership, ProjectPhase};
use tenancy_operator::devcluster::free_port;
use tenancy_operator::devcluster::install::OPERATOR_USER;

use common::{
    cpu_seconds, env_usize, operator_metrics, print_table, rss_mib, total, transient, write_report,
};
use support::{Env, OperatorProcess, Rng};

const PROJECTS: usize = 24;
const USERS: usize = 16;
const CUSTOMERS: usize = 4;
const LEASE: &str = "soak-leader";
const LEASE_SECONDS: u64 = 15;
const ROLES: [&str; 3] = ["Manager", "Administrator", "Member"];
/// How long one operation's own waits may take (a leader kill included) before it fails.
const OP_TIMEOUT: Duration = Duration::from_secs(120);
const QUIET_WINDOW: Duration = Duration::from_secs(30);
const RSS_EVERY: Duration = Duration::from_secs(30);
const INVARIANTS_EVERY: Duration = Duration::from_secs(60);
/// No expiration within this of a soft delete or a recovery (which team it keeps or restores
/// would be a race between the operation and the clock).
const EXPIRY_MARGIN: i64 = 10;

fn project_name(i: usize) -> String {
    format!("soak-p{i:02}")
}
fn user_name(i: usize) -> String {
    format!("soak-u{i:02}")
}
fn customer_name(i: usize) -> String {
    format!("soak-c{i}")
}
fn owner_name(i: usize) -> String {
    format!("soak-owner-{i}")
}
fn pods_quota() -> Value {
    json!({"hard": {"pods": "10"}})
}

// ---------------------------------------------------------------------------------------------
// The model

#[derive(Clone, Debug)]
struct Member {
    role: &'static str,
    expires: Option<Timestamp>,
    revoked: bool,
}

impl Member {
    fn expired(&self, at: Timestamp) -> bool {
        self.expires.is_some_and(|e| e <= at)
    }
    fn active(&self, at: Timestamp) -> bool {
        !self.revoked && !self.expired(at)
    }
    fn phase(&self, at: Timestamp) -> MembershipPhase {
        if self.revoked {
            MembershipPhase::Revoked
        } else if self.expired(at) {
            MembershipPhase::Expired
        } else {
            MembershipPhase::Active
        }
    }
    /// Whether its expiration is within `EXPIRY_MARGIN` seconds of `at`.
    fn expires_near(&self, at: Timestamp) -> bool {
        self.expires
            .is_some_and(|e| (e.as_second() - at.as_second()).abs() <= EXPIRY_MARGIN)
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum State {
    Absent,
    Live,
    Archived,
}

#[derive(Clone, Debug)]
struct ProjectModel {
    state: State,
    customer: usize,
    /// endDate is yesterday (phase Expired).
    ended: bool,
    /// Memberships by user; they stay in the namespace while it is archived.
    members: BTreeMap<usize, Member>,
    /// While archived: the users the archive keeps (active when the soft delete ran).
    team: BTreeSet<usize>,
}

struct Model {
    projects: Vec<ProjectModel>,
}

impl Model {
    fn new() -> Model {
        Model {
            projects: (0..PROJECTS)
                .map(|_| ProjectModel {
                    state: State::Absent,
                    customer: 0,
                    ended: false,
                    members: BTreeMap::new(),
                    team: BTreeSet::new(),
                })
                .collect(),
        }
    }
    fn with(&self, state: State) -> Vec<usize> {
        (0..PROJECTS)
            .filter(|&p| self.projects[p].state == state)
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// Replicas and the webhook proxy

/// One operator replica; `up` is false while it is being started again after a kill (its
/// process handle is locked meanwhile).
struct Replica {
    name: &'static str,
    process: OperatorProcess,
    up: AtomicBool,
    /// Counters of its earlier lives, read just before each kill.
    past: std::sync::Mutex<Lives>,
}

#[derive(Clone, Debug, Default)]
struct Lives {
    writes: f64,
    reconciles: f64,
    errors: BTreeMap<String, f64>,
    cpu: f64,
    starts: u32,
}

impl Replica {
    fn pid(&self) -> Option<u32> {
        self.up.load(Ordering::SeqCst).then(|| self.process.pid())
    }
    fn metrics(&self) -> Option<String> {
        if !self.up.load(Ordering::SeqCst) {
            return None;
        }
        operator_metrics(self.process.metrics_addr()).ok()
    }
    /// Its counters over every life, the current one included.
    fn lives(&self) -> Lives {
        let mut all = self.past.lock().expect("lives lock").clone();
        if let Some(text) = self.metrics() {
            add_life(&mut all, &text, self.pid().map_or(0.0, cpu_seconds));
        }
        all
    }
}

fn add_life(lives: &mut Lives, text: &str, cpu: f64) {
    lives.writes += total(text, "tenancy_api_writes_total");
    lives.reconciles += total(text, "tenancy_reconciles_total");
    for (reason, v) in common::by_label(text, "tenancy_reconcile_errors_total", "reason") {
        *lives.errors.entry(reason).or_default() += v;
    }
    lives.cpu += cpu;
}

/// Passes each connection on `listener` to the first replica port (starting with the next in
/// turn) that accepts it.
async fn proxy(listener: tokio::net::TcpListener, ports: Vec<u16>) {
    let turn = Arc::new(AtomicUsize::new(0));
    loop {
        let Ok((mut inbound, _)) = listener.accept().await else {
            continue;
        };
        let (ports, turn) = (ports.clone(), turn.clone());
        tokio::spawn(async move {
            let first = turn.fetch_add(1, Ordering::Relaxed);
            for k in 0..ports.len() {
                let port = ports[(first + k) % ports.len()];
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await
                {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    return;
                }
            }
        });
    }
}

async fn lease_holder(client: &Client, namespace: &str) -> Option<String> {
    Api::<Lease>::namespaced(client.clone(), namespace)
        .get_opt(LEASE)
        .await
        .ok()
        .flatten()
        .and_then(|l| l.spec?.holder_identity)
}

/// The replica whose pid the Lease names, if it is up.
async fn leader(client: &Client, namespace: &str, replicas: &[Arc<Replica>]) -> Option<usize> {
    let holder = lease_holder(client, namespace).await?;
    replicas.iter().position(|r| {
        r.pid()
            .is_some_and(|pid| holder.ends_with(&format!("-{pid}")))
    })
}

// ---------------------------------------------------------------------------------------------
// The run

struct Settings {
    seconds: u64,
    seed: u64,
    rate_per_minute: usize,
    kill_every: Duration,
}

#[derive(Default)]
struct Tally {
    ops: BTreeMap<&'static str, u64>,
    op_failures: Vec<String>,
    invariant_checks: u64,
    invariant_failures: Vec<String>,
    kills: Vec<Value>,
    rss: Vec<Value>,
}

struct Soak {
    env: Arc<Env>,
    client: Client,
    namespace: String,
    replicas: Vec<Arc<Replica>>,
    model: Model,
    rng: Rng,
    tally: Tally,
    started: Instant,
    /// No new expirations after this (they must all have passed before the final check).
    last_expiring: Instant,
}

fn ts(seconds: i64) -> Timestamp {
    Timestamp::from_second(seconds).expect("a time within range")
}

fn rfc3339(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn is_conflict_or_transient(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409) || transient(e)
}

impl Soak {
    fn projects(&self) -> Api<Project> {
        Api::all(self.client.clone())
    }
    fn memberships(&self, p: usize) -> Api<ProjectMembership> {
        Api::namespaced(self.client.clone(), &project_name(p))
    }

    /// Runs `request` until it succeeds, again while the answer is transient (a webhook behind
    /// a killed replica, a conflict), for up to OP_TIMEOUT.
    async fn retry<T, F, Fut>(&self, what: &str, mut request: F) -> Result<T, String>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, kube::Error>>,
    {
        let deadline = Instant::now() + OP_TIMEOUT;
        loop {
            match request().await {
                Ok(v) => return Ok(v),
                Err(e) if is_conflict_or_transient(&e) && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => return Err(format!("{what}: {e}")),
            }
        }
    }

    /// Creates `object` through `api`, retried like [`Soak::retry`]; a retried create whose
    /// first answer was lost (it already exists) counts as done.
    async fn create<K>(&self, what: &str, api: Api<K>, object: K) -> Result<(), String>
    where
        K: Clone + DeserializeOwned + Serialize + std::fmt::Debug,
    {
        let mut attempts = 0;
        self.retry(what, || {
            attempts += 1;
            let (api, object) = (api.clone(), object.clone());
            async move {
                match api.create(&PostParams::default(), &object).await {
                    Err(kube::Error::Api(s)) if s.is_already_exists() && attempts > 1 => Ok(()),
                    other => other.map(|_| ()),
                }
            }
        })
        .await
    }

    /// Merge-patches the object `name` through `api`, retried like [`Soak::retry`].
    async fn patch<K>(
        &self,
        what: &str,
        api: Api<K>,
        name: String,
        patch: Value,
    ) -> Result<(), String>
    where
        K: Clone + DeserializeOwned + std::fmt::Debug,
    {
        self.retry(what, || {
            let (api, name, patch) = (api.clone(), name.clone(), patch.clone());
            async move {
                api.patch(&name, &support::patch_params(), &support::merge(patch))
                    .await
                    .map(|_| ())
            }
        })
        .await
    }

    /// Deletes the object `name` through `api`, retried like [`Soak::retry`]; gone already
    /// counts as done.
    async fn delete<K>(&self, what: &str, api: Api<K>, name: String) -> Result<(), String>
    where
        K: Clone + DeserializeOwned + std::fmt::Debug,
    {
        self.retry(what, || {
            let (api, name) = (api.clone(), name.clone());
            async move {
                match api.delete(&name, &DeleteParams::default()).await {
                    Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
                    other => other.map(|_| ()),
                }
            }
        })
        .await
    }

    /// Waits up to OP_TIMEOUT for `check` to hold.
    async fn until<F, Fut>(&self, what: &str, mut check: F) -> Result<(), String>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = bool>,
    {
        let deadline = Instant::now() + OP_TIMEOUT;
        loop {
            if check().await {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("timed out after {OP_TIMEOUT:?} waiting for {what}"));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    async fn project(&self, p: usize) -> Option<Project> {
        self.projects()
            .get_opt(&project_name(p))
            .await
            .ok()
            .flatten()
    }

    async fn namespace(&self, p: usize) -> Option<Namespace> {
        Api::<Namespace>::all(self.client.clone())
            .get_opt(&project_name(p))
            .await
            .ok()
            .flatten()
    }

    /// The operator has seen every membership of project `p` as the model has it: the same
    /// names, each with its current generation observed.
    async fn caught_up(&self, p: usize) -> Result<(), String> {
        let want: BTreeSet<String> = self.model.projects[p]
            .members
            .keys()
            .map(|&u| user_name(u))
            .collect();
        let api = self.memberships(p);
        self.until(
            &format!(
                "the operator to see every membership of {}",
                project_name(p)
            ),
            || {
                let (api, want) = (api.clone(), want.clone());
                async move {
                    let Ok(list) = api.list(&ListParams::default()).await else {
                        return false;
                    };
                    let names: BTreeSet<String> = list.items.iter().map(|m| m.name_any()).collect();
                    names == want
                        && list.items.iter().all(|m| {
                            m.status.as_ref().is_some_and(|s| {
                                s.phase.is_some() && s.observed_generation == m.metadata.generation
                            })
                        })
                }
            },
        )
        .await
    }

    // --- operations -------------------------------------------------------------------------

    /// Picks an operation that applies to the model and runs it.
    async fn step(&mut self) {
        let live = self.model.with(State::Live);
        let archived = self.model.with(State::Archived);
        let absent = self.model.with(State::Absent);
        let now = Timestamp::now();
        let with_members: Vec<usize> = live
            .iter()
            .copied()
            .filter(|&p| !self.model.projects[p].members.is_empty())
            .collect();
        let with_room: Vec<usize> = live
            .iter()
            .copied()
            .filter(|&p| self.model.projects[p].members.len() < USERS)
            .collect();
        let with_expiry: Vec<usize> = live
            .iter()
            .copied()
            .filter(|&p| {
                self.model.projects[p]
                    .members
                    .values()
                    .any(|m| m.expires.is_some())
            })
            .collect();
        let calm = |p: &usize| {
            !self.model.projects[*p]
                .members
                .values()
                .any(|m| m.expires_near(now))
        };
        let deletable: Vec<usize> = live.iter().copied().filter(calm).collect();
        let recoverable: Vec<usize> = archived.iter().copied().filter(calm).collect();
        let unended: Vec<usize> = live
            .iter()
            .copied()
            .filter(|&p| !self.model.projects[p].ended)
            .collect();
        let ended: Vec<usize> = live
            .iter()
            .copied()
            .filter(|&p| self.model.projects[p].ended)
            .collect();
        // (kind, weight, candidates)
        let choices: [(&'static str, usize, &Vec<usize>); 10] = [
            ("create project", 3, &absent),
            ("add membership", 6, &with_room),
            ("change role", 3, &with_members),
            ("remove membership", 2, &with_members),
            ("drop expiration", 1, &with_expiry),
            ("move", 2, &live),
            ("end date passed", 1, &unended),
            ("end date later", 1, &ended),
            ("soft delete", 2, &deletable),
            ("recover", 2, &recoverable),
        ];
        let weights: usize = choices
            .iter()
            .filter(|c| !c.2.is_empty())
            .map(|c| c.1)
            .sum();
        let mut roll = self.rng.below(weights);
        let mut chosen = None;
        for (kind, weight, candidates) in choices {
            if candidates.is_empty() {
                continue;
            }
            if roll < weight {
                chosen = Some((kind, candidates.clone()));
                break;
            }
            roll -= weight;
        }
        let Some((kind, candidates)) = chosen else {
            return;
        };
        let p = self.rng.pick(&candidates).expect("not empty");
        let result = match kind {
            "create project" => self.create_project(p).await,
            "add membership" => self.add_membership(p).await,
            "change role" => self.change_role(p).await,
            "remove membership" => self.remove_membership(p).await,
            "drop expiration" => self.drop_expiration(p).await,
            "move" => self.move_project(p).await,
            "end date passed" => self.set_end_date(p, true).await,
            "end date later" => self.set_end_date(p, false).await,
            "soft delete" => self.soft_delete(p).await,
            _ => self.recover(p).await,
        };
        *self.tally.ops.entry(kind).or_default() += 1;
        if let Err(e) = result {
            eprintln!("[soak] FAILED {kind} {}: {e}", project_name(p));
            self.tally
                .op_failures
                .push(format!("{kind} {}: {e}", project_name(p)));
        }
    }

    async fn create_project(&mut self, p: usize) -> Result<(), String> {
        let c = self.rng.below(CUSTOMERS);
        let object: Project = support::from_json(json!({
            "apiVersion": "tenancy.dev/v1alpha1", "kind": "Project",
            "metadata": {"name": project_name(p)},
            "spec": {"customer": customer_name(c), "quota": pods_quota()}}));
        self.create("creating the project", self.projects(), object)
            .await?;
        let m = &mut self.model.projects[p];
        m.state = State::Live;
        m.customer = c;
        m.ended = false;
        m.members.clear();
        self.until("the new project Active with its namespace", || async {
            self.live_and_owned(p).await
        })
        .await
    }

    /// The project is Active (or Expired), holds its soft-delete finalizer, and its namespace
    /// exists and is not archived.
    async fn live_and_owned(&self, p: usize) -> bool {
        let Some(project) = self.project(p).await else {
            return false;
        };
        let phase = project.status.as_ref().and_then(|s| s.phase);
        let finalized = project
            .finalizers()
            .iter()
            .any(|f| f == "tenancy.dev/soft-delete");
        let ns_live = self.namespace(p).await.is_some_and(|n| {
            n.labels().get("tenancy.dev/state").map(String::as_str) != Some("terminated")
        });
        matches!(phase, Some(ProjectPhase::Active | ProjectPhase::Expired)) && finalized && ns_live
    }

    async fn add_membership(&mut self, p: usize) -> Result<(), String> {
        let free: Vec<usize> = (0..USERS)
            .filter(|u| !self.model.projects[p].members.contains_key(u))
            .collect();
        let u = self.rng.pick(&free).expect("room");
        let role = ROLES[self.rng.below(3)];
        let expires = (Instant::now() < self.last_expiring && self.rng.chance(33))
            .then(|| ts(Timestamp::now().as_second() + 20 + self.rng.below(41) as i64));
        let mut spec = json!({"subject": {"kind": "User", "name": user_name(u)}, "role": role});
        if let Some(e) = expires {
            spec["expirationTime"] = json!(rfc3339(e));
        }
        let object: ProjectMembership = support::from_json(json!({
            "apiVersion": "tenancy.dev/v1alpha1", "kind": "ProjectMembership",
            "metadata": {"name": user_name(u), "namespace": project_name(p)}, "spec": spec}));
        self.create("creating the membership", self.memberships(p), object)
            .await?;
        self.model.projects[p].members.insert(
            u,
            Member {
                role,
                expires,
                revoked: false,
            },
        );
        Ok(())
    }

    async fn patch_membership(&self, p: usize, u: usize, patch: Value) -> Result<(), String> {
        self.patch(
            "patching the membership",
            self.memberships(p),
            user_name(u),
            patch,
        )
        .await
    }

    async fn change_role(&mut self, p: usize) -> Result<(), String> {
        let users: Vec<usize> = self.model.projects[p].members.keys().copied().collect();
        let u = self.rng.pick(&users).expect("members");
        let current = self.model.projects[p].members[&u].role;
        let others: Vec<&'static str> = ROLES.iter().copied().filter(|r| *r != current).collect();
        let role = self.rng.pick(&others).expect("two other roles");
        self.patch_membership(p, u, json!({"spec": {"role": role}}))
            .await?;
        if let Some(m) = self.model.projects[p].members.get_mut(&u) {
            m.role = role;
        }
        Ok(())
    }

    async fn drop_expiration(&mut self, p: usize) -> Result<(), String> {
        let users: Vec<usize> = self.model.projects[p]
            .members
            .iter()
            .filter(|(_, m)| m.expires.is_some())
            .map(|(u, _)| *u)
            .collect();
        let u = self.rng.pick(&users).expect("an expiring member");
        self.patch_membership(p, u, json!({"spec": {"expirationTime": null}}))
            .await?;
        if let Some(m) = self.model.projects[p].members.get_mut(&u) {
            m.expires = None;
        }
        Ok(())
    }

    async fn remove_membership(&mut self, p: usize) -> Result<(), String> {
        let users: Vec<usize> = self.model.projects[p].members.keys().copied().collect();
        let u = self.rng.pick(&users).expect("members");
        self.delete("deleting the membership", self.memberships(p), user_name(u))
            .await?;
        self.model.projects[p].members.remove(&u);
        Ok(())
    }

    async fn move_project(&mut self, p: usize) -> Result<(), String> {
        self.caught_up(p).await?;
        let from = self.model.projects[p].customer;
        let to = (from + 1 + self.rng.below(CUSTOMERS - 1)) % CUSTOMERS;
        let preserve = self.rng.chance(70);
        let patch = json!({"spec": {"customer": customer_name(to),
            "preservePermissionsOnMove": preserve}});
        self.patch(
            "moving the project",
            self.projects(),
            project_name(p),
            patch,
        )
        .await?;
        let m = &mut self.model.projects[p];
        m.customer = to;
        if !preserve {
            for member in m.members.values_mut() {
                member.revoked = true;
            }
        }
        let to_name = customer_name(to);
        self.until("the move recorded in status.lastMove", || async {
            self.project(p).await.is_some_and(|project| {
                project.status.as_ref().is_some_and(|s| {
                    s.customer.as_ref().is_some_and(|c| c.name == to_name)
                        && s.last_move.as_ref().is_some_and(|m| m.to == to_name)
                })
            })
        })
        .await
    }

    async fn set_end_date(&mut self, p: usize, passed: bool) -> Result<(), String> {
        let day = if passed {
            Timestamp::now() - SignedDuration::from_hours(24)
        } else {
            Timestamp::now() + SignedDuration::from_hours(24 * 365)
        };
        let patch = json!({"spec": {"endDate": day.strftime("%Y-%m-%d").to_string()}});
        self.patch(
            "setting the end date",
            self.projects(),
            project_name(p),
            patch,
        )
        .await?;
        self.model.projects[p].ended = passed;
        Ok(())
    }

    async fn soft_delete(&mut self, p: usize) -> Result<(), String> {
        self.caught_up(p).await?;
        self.delete("deleting the project", self.projects(), project_name(p))
            .await?;
        let now = Timestamp::now();
        let m = &mut self.model.projects[p];
        m.state = State::Archived;
        m.team = m
            .members
            .iter()
            .filter(|(_, member)| member.active(now))
            .map(|(u, _)| *u)
            .collect();
        for member in m.members.values_mut() {
            member.revoked = true;
        }
        self.until("the project gone after its soft delete", || async {
            self.project(p).await.is_none()
        })
        .await
    }

    async fn recover(&mut self, p: usize) -> Result<(), String> {
        let restore = self.rng.chance(60);
        let c = self.model.projects[p].customer;
        let object: Project = support::from_json(json!({
            "apiVersion": "tenancy.dev/v1alpha1", "kind": "Project",
            "metadata": {"name": project_name(p)},
            "spec": {"customer": customer_name(c), "quota": pods_quota(),
                "recovery": {"restoreTeamMembers": restore}}}));
        self.create("recovering the project", self.projects(), object)
            .await?;
        let now = Timestamp::now();
        let m = &mut self.model.projects[p];
        m.state = State::Live;
        m.ended = false;
        if restore {
            for u in std::mem::take(&mut m.team) {
                if let Some(member) = m.members.get_mut(&u)
                    && !member.expired(now)
                {
                    member.revoked = false;
                }
            }
        }
        m.team.clear();
        self.until("the recovery recorded and the namespace live", || async {
            self.live_and_owned(p).await
                && self
                    .project(p)
                    .await
                    .is_some_and(|pr| pr.status.as_ref().is_some_and(|s| s.recovery.is_some()))
        })
        .await
    }

    // --- leader kills and samples -----------------------------------------------------------

    /// SIGKILLs the replica holding the Lease and starts it again (in the background); records
    /// how long the other one took to hold the Lease. Answers false when there is no leader to
    /// kill right now (one replica still starting, the Lease between holders).
    async fn kill_leader(&mut self) -> bool {
        if self.replicas.iter().any(|r| !r.up.load(Ordering::SeqCst)) {
            return false;
        }
        let Some(i) = leader(&self.client, &self.namespace, &self.replicas).await else {
            return false;
        };
        let victim = self.replicas[i].clone();
        let rss = victim.pid().map_or(0.0, rss_mib);
        if let (Some(text), Some(pid)) = (victim.metrics(), victim.pid()) {
            let mut past = victim.past.lock().expect("lives lock");
            add_life(&mut past, &text, cpu_seconds(pid));
        }
        let victim_pid = victim.pid().unwrap_or(0);
        victim.up.store(false, Ordering::SeqCst);
        victim.process.kill();
        let killed = Instant::now();
        let at = self.started.elapsed().as_secs_f64();
        eprintln!(
            "[soak] {:>6.0} s: SIGKILL to leader {} ({rss:.0} MiB)",
            at, victim.name
        );
        let env = self.env.clone();
        let restarting = victim.clone();
        tokio::task::spawn_blocking(move || match restarting.process.resume(env.cluster()) {
            Ok(()) => {
                restarting.past.lock().expect("lives lock").starts += 1;
                restarting.up.store(true, Ordering::SeqCst);
            }
            Err(e) => eprintln!("[soak] starting {} again failed: {e}", restarting.name),
        });
        // The Lease moves to a live replica: the other one, or the killed one started again
        // (a new pid). Measured, not asserted: a slow takeover shows in the operations' waits.
        let victim_identity = format!("-{victim_pid}");
        let mut took_over = None;
        while killed.elapsed() < Duration::from_secs(60) {
            if let Some(h) = lease_holder(&self.client, &self.namespace).await
                && !h.ends_with(&victim_identity)
                && let Some(r) = self
                    .replicas
                    .iter()
                    .find(|r| r.pid().is_some_and(|pid| h.ends_with(&format!("-{pid}"))))
            {
                took_over = Some((killed.elapsed().as_secs_f64(), r.name));
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        eprintln!(
            "[soak] {:>6.0} s: the Lease is held again {:?} after the kill",
            self.started.elapsed().as_secs_f64(),
            took_over
        );
        if took_over.is_none() {
            self.tally.op_failures.push(format!(
                "leader kill at {at:.0} s: no live replica held the Lease within 60 s"
            ));
        }
        self.tally
            .kills
            .push(json!({"at_s": at, "killed": victim.name,
            "rss_mib_at_kill": rss, "takeover_s": took_over.map(|t| t.0),
            "new_leader": took_over.map(|t| t.1)}));
        true
    }

    async fn sample_rss(&mut self, label: &str) -> Option<f64> {
        let lead = leader(&self.client, &self.namespace, &self.replicas).await;
        let mut row = json!({"at_s": self.started.elapsed().as_secs_f64().round(), "when": label});
        for r in &self.replicas {
            row[r.name] = json!(r.pid().map(rss_mib));
        }
        let leader_rss = lead.and_then(|i| {
            let r = &self.replicas[i];
            row["leader"] = json!(r.name);
            r.pid().map(rss_mib)
        });
        row["leader_rss_mib"] = json!(leader_rss);
        self.tally.rss.push(row);
        leader_rss
    }

    // --- invariants -------------------------------------------------------------------------

    async fn ledgers(&self) -> BTreeMap<usize, BTreeMap<String, Value>> {
        let api = Api::<ConfigMap>::namespaced(self.client.clone(), &self.namespace);
        let mut out = BTreeMap::new();
        for c in 0..CUSTOMERS {
            let entries = api
                .get_opt(&format!("tenancy-ledger-{}", customer_name(c)))
                .await
                .ok()
                .flatten()
                .and_then(|cm| cm.data)
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, serde_json::from_str::<Value>(&v).unwrap_or(Value::Null)))
                .collect();
            out.insert(c, entries);
        }
        out
    }

    /// What holds at any moment between operations: every stored project is in its customer's
    /// ledger; an archived namespace holds no RoleBinding.
    async fn invariants(&mut self) {
        let mut failures = Vec::new();
        let mut checks = 0;
        let ledgers = self.ledgers().await;
        let projects = self
            .projects()
            .list(&ListParams::default())
            .await
            .map(|l| l.items)
            .unwrap_or_default();
        for project in &projects {
            checks += 1;
            let c = (0..CUSTOMERS).find(|&c| customer_name(c) == project.spec.customer);
            let held = c.is_some_and(|c| ledgers[&c].contains_key(&project.name_any()));
            if !held {
                failures.push(format!(
                    "stored project {} is not in the ledger of {}",
                    project.name_any(),
                    project.spec.customer
                ));
            }
        }
        for p in self.model.with(State::Archived) {
            checks += 1;
            let bindings = Api::<RoleBinding>::namespaced(self.client.clone(), &project_name(p))
                .list_metadata(&ListParams::default())
                .await
                .map(|l| l.items.len())
                .unwrap_or(0);
            if bindings > 0 {
                failures.push(format!(
                    "archived namespace {} holds {bindings} RoleBindings",
                    project_name(p)
                ));
            }
        }
        self.tally.invariant_checks += checks;
        for f in &failures {
            eprintln!("[soak] INVARIANT {f}");
        }
        self.tally.invariant_failures.extend(failures);
    }

    // --- the final comparison ---------------------------------------------------------------

    /// Compares the cluster with the model; answers (checks made, mismatches).
    async fn compare(&self) -> (u64, Vec<String>) {
        let now = Timestamp::now();
        let mut checks = 0u64;
        let mut bad = Vec::new();
        let mut check = |ok: bool, what: String| {
            checks += 1;
            if !ok {
                bad.push(what);
            }
        };
        for p in 0..PROJECTS {
            let m = &self.model.projects[p];
            let name = project_name(p);
            let project = self.project(p).await;
            let ns = self.namespace(p).await;
            let terminated = ns.as_ref().is_some_and(|n| {
                n.labels().get("tenancy.dev/state").map(String::as_str) == Some("terminated")
            });
            match m.state {
                State::Absent => {
                    check(
                        project.is_none(),
                        format!("{name}: a Project exists, none expected"),
                    );
                    check(
                        ns.is_none(),
                        format!("{name}: a namespace exists, none expected"),
                    );
                    continue;
                }
                State::Live => {
                    let Some(project) = project else {
                        check(false, format!("{name}: no Project, a live one expected"));
                        continue;
                    };
                    let status = project.status.clone().unwrap_or_default();
                    let want_customer = customer_name(m.customer);
                    check(
                        project.spec.customer == want_customer
                            && status.customer.as_ref().map(|c| c.name.as_str())
                                == Some(want_customer.as_str()),
                        format!(
                            "{name}: customer {} (status {:?}), expected {want_customer}",
                            project.spec.customer,
                            status.customer.as_ref().map(|c| &c.name)
                        ),
                    );
                    let want_phase = if m.ended {
                        ProjectPhase::Expired
                    } else {
                        ProjectPhase::Active
                    };
                    check(
                        status.phase == Some(want_phase)
                            && project.metadata.deletion_timestamp.is_none(),
                        format!("{name}: phase {:?}, expected {want_phase:?}", status.phase),
                    );
                    let count = |role: &str| {
                        m.members
                            .values()
                            .filter(|x| x.role == role && x.active(now))
                            .count() as i32
                    };
                    let want = (count("Manager"), count("Administrator"), count("Member"));
                    let got = status
                        .members
                        .as_ref()
                        .map(|c| (c.managers, c.administrators, c.members));
                    check(
                        got == Some(want),
                        format!(
                            "{name}: status.members (managers, administrators, members) {got:?}, expected {want:?}"
                        ),
                    );
                    check(
                        ns.is_some() && !terminated,
                        format!(
                            "{name}: namespace live expected, found {:?}",
                            ns.as_ref().map(|n| n.labels())
                        ),
                    );
                }
                State::Archived => {
                    check(
                        project.is_none(),
                        format!("{name}: a Project exists, archived expected"),
                    );
                    let archive_customer = ns
                        .as_ref()
                        .and_then(|n| n.annotations().get("tenancy.dev/archive").cloned())
                        .and_then(|a| serde_json::from_str::<Value>(&a).ok())
                        .and_then(|a| a["customer"].as_str().map(str::to_string));
                    check(
                        terminated
                            && archive_customer.as_deref()
                                == Some(customer_name(m.customer).as_str()),
                        format!(
                            "{name}: archived namespace of {} expected; terminated {terminated}, archive customer {archive_customer:?}",
                            customer_name(m.customer)
                        ),
                    );
                    let bindings = Api::<RoleBinding>::namespaced(self.client.clone(), &name)
                        .list_metadata(&ListParams::default())
                        .await
                        .map(|l| l.items.iter().map(|b| b.name_any()).collect::<Vec<_>>())
                        .unwrap_or_default();
                    check(
                        bindings.is_empty(),
                        format!("{name}: archived namespace holds RoleBindings {bindings:?}"),
                    );
                }
            }
            // Memberships: the same names, roles and phases.
            let stored: BTreeMap<String, ProjectMembership> = self
                .memberships(p)
                .list(&ListParams::default())
                .await
                .map(|l| l.items.into_iter().map(|x| (x.name_any(), x)).collect())
                .unwrap_or_default();
            let want: BTreeSet<String> = m.members.keys().map(|&u| user_name(u)).collect();
            let got: BTreeSet<String> = stored.keys().cloned().collect();
            check(
                got == want,
                format!("{name}: memberships {got:?}, expected {want:?}"),
            );
            for (u, member) in &m.members {
                let Some(stored) = stored.get(&user_name(*u)) else {
                    continue;
                };
                let phase = stored.status.as_ref().and_then(|s| s.phase);
                let want_phase = member.phase(now);
                check(
                    stored.spec.role.as_str() == member.role && phase == Some(want_phase),
                    format!(
                        "{name}/{}: {} {phase:?}, expected {} {want_phase:?}",
                        user_name(*u),
                        stored.spec.role.as_str(),
                        member.role
                    ),
                );
            }
            // Access, as the apiserver's authorizer answers it.
            let live = m.state == State::Live;
            for u in 0..USERS {
                let member = m.members.get(&u).filter(|x| live && x.active(now));
                let user = user_name(u);
                let reads = self
                    .env
                    .can_i(&user, &[], "list", "pods", Some(&name))
                    .await;
                check(
                    reads == member.is_some(),
                    format!(
                        "{name}: {user} may list pods: {reads}, expected {}",
                        member.is_some()
                    ),
                );
                let want_writes = member.is_some_and(|x| x.role != "Member");
                let writes = self
                    .env
                    .can_i(&user, &[], "create", "deployments.apps", Some(&name))
                    .await;
                check(
                    writes == want_writes,
                    format!(
                        "{name}: {user} may create deployments: {writes}, expected {want_writes}"
                    ),
                );
            }
            for c in 0..CUSTOMERS {
                let owner = owner_name(c);
                let want = live && m.customer == c;
                let reads = self
                    .env
                    .can_i(&owner, &[], "list", "pods", Some(&name))
                    .await;
                check(
                    reads == want,
                    format!("{name}: owner {owner} may list pods: {reads}, expected {want}"),
                );
            }
        }
        // Ledgers: exactly the live projects of each customer, with what they hold.
        let ledgers = self.ledgers().await;
        for c in 0..CUSTOMERS {
            let want: BTreeMap<String, Value> = (0..PROJECTS)
                .filter(|&p| {
                    self.model.projects[p].state == State::Live
                        && self.model.projects[p].customer == c
                })
                .map(|p| (project_name(p), json!({"pods": "10"})))
                .collect();
            let got: BTreeMap<String, Value> = ledgers[&c]
                .iter()
                .map(|(k, v)| (k.clone(), v["hard"].clone()))
                .collect();
            check(
                got == want,
                format!("ledger of {}: {got:?}, expected {want:?}", customer_name(c)),
            );
        }
        (checks, bad)
    }

    /// Sum over both replicas and all their lives.
    fn lives(&self) -> Lives {
        let mut all = Lives::default();
        for r in &self.replicas {
            let l = r.lives();
            all.writes += l.writes;
            all.reconciles += l.reconciles;
            all.cpu += l.cpu;
            all.starts += l.starts;
            for (k, v) in l.errors {
                *all.errors.entry(k).or_default() += v;
            }
        }
        all
    }
}

/// Waits until the operators' writes have stood still for 5 s (at most 180 s).
async fn settle(soak: &Soak) -> f64 {
    let started = Instant::now();
    let mut last = soak.lives().writes;
    let mut still = Instant::now();
    while still.elapsed() < Duration::from_secs(5) && started.elapsed() < Duration::from_secs(180) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = soak.lives().writes;
        if now != last {
            last = now;
            still = Instant::now();
        }
    }
    started.elapsed().as_secs_f64()
}

fn settings() -> Settings {
    let minutes: f64 = std::env::var("SOAK_MINUTES")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .filter(|m: &f64| *m > 0.0)
        .unwrap_or(30.0);
    let seconds = (minutes * 60.0).round() as u64;
    let seed = std::env::var("SOAK_SEED")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| Timestamp::now().as_second() as u64);
    let kill_every = Duration::from_secs(env_usize(
        "SOAK_KILL_EVERY",
        180.min((seconds / 3).max(30) as usize),
    ) as u64);
    Settings {
        seconds,
        seed,
        rate_per_minute: env_usize("SOAK_RATE", 30),
        kill_every,
    }
}

fn run(settings: &Settings) -> Result<Value, String> {
    let env = Arc::new(Env::start()?);
    let local = env.local().clone();
    let client = env.block_on(env.client());
    let kubeconfig = env
        .cluster()
        .kubeconfig_for(OPERATOR_USER, &["system:masters"])
        .map_err(|e| format!("the operator's kubeconfig: {e}"))?;

    // The webhook configurations and the APIService point at local.webhook_port: the proxy
    // listens there and passes connections to the replicas' own ports.
    let ports = [
        free_port().map_err(|e| e.to_string())?,
        free_port().map_err(|e| e.to_string())?,
    ];
    let listener = env
        .block_on(tokio::net::TcpListener::bind((
            "127.0.0.1",
            local.webhook_port,
        )))
        .map_err(|e| format!("listening on the webhook port {}: {e}", local.webhook_port))?;
    env.handle().spawn(proxy(listener, ports.to_vec()));
    let args_for = |port: u16| -> Vec<String> {
        local
            .run_args()
            .into_iter()
            .map(|a| {
                if a.starts_with("--webhook-addr=") {
                    format!("--webhook-addr=127.0.0.1:{port}")
                } else {
                    a
                }
            })
            .chain([
                "--leader-election".to_string(),
                format!("--lease-name={LEASE}"),
                format!("--lease-duration={LEASE_SECONDS}"),
            ])
            .collect()
    };
    let mut replicas = Vec::new();
    for (name, port) in [("a", ports[0]), ("b", ports[1])] {
        let args = args_for(port);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let process = support::start_operator_as(
            env.cluster(),
            &format!("operator-{name}"),
            &kubeconfig,
            &args,
        )?;
        replicas.push(Arc::new(Replica {
            name,
            process,
            up: AtomicBool::new(true),
            past: Default::default(),
        }));
        if name == "a" {
            // A leads first (and writes the webhook certificate B then reads).
            env.block_on(async {
                for _ in 0..150 {
                    if leader(&client, &local.namespace, &replicas).await.is_some() {
                        return Ok(());
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err("replica a did not take the Lease within 30 s".to_string())
            })?;
        }
    }

    let mut soak = Soak {
        env: env.clone(),
        client: client.clone(),
        namespace: local.namespace.clone(),
        replicas,
        model: Model::new(),
        rng: Rng(settings.seed),
        tally: Tally::default(),
        started: Instant::now(),
        last_expiring: Instant::now(),
    };
    let report = env.block_on(soak_run(&mut soak, settings));
    for r in &soak.replicas {
        if r.up.load(Ordering::SeqCst) {
            r.process.kill();
        }
    }
    drop(soak);
    match Arc::try_unwrap(env) {
        Ok(env) => env.shutdown(),
        Err(_) => eprintln!("[soak] the control plane is still shared; leaving it to the exit"),
    }
    report
}

async fn soak_run(soak: &mut Soak, settings: &Settings) -> Result<Value, String> {
    // The customers, each with an owner and a budget every project reserves in its ledger.
    let customers = Api::<tenancy_operator::api::Customer>::all(soak.client.clone());
    for c in 0..CUSTOMERS {
        let object = support::customer(
            &customer_name(c),
            json!({"owners": [{"kind": "User", "name": owner_name(c)}],
                "quota": {"hard": {"pods": "1000"}}}),
        );
        soak.retry("creating a customer", || {
            let (customers, object) = (customers.clone(), object.clone());
            async move { customers.create(&PostParams::default(), &object).await }
        })
        .await?;
    }

    let duration = Duration::from_secs(settings.seconds);
    let interval = Duration::from_secs_f64(60.0 / settings.rate_per_minute as f64);
    soak.started = Instant::now();
    let end = soak.started + duration;
    soak.last_expiring = end
        .checked_sub(Duration::from_secs(75))
        .unwrap_or(soak.started);
    eprintln!(
        "[soak] {} s, seed {}, {} operations a minute, a leader kill every {} s; {PROJECTS} project names, {USERS} users, {CUSTOMERS} customers",
        settings.seconds,
        settings.seed,
        settings.rate_per_minute,
        settings.kill_every.as_secs()
    );
    let cpu_start = soak.lives().cpu;
    let rss_start = soak.sample_rss("start").await;
    let (mut next_op, mut next_kill, mut next_rss, mut next_check) = (
        soak.started,
        soak.started + settings.kill_every,
        soak.started + RSS_EVERY,
        soak.started + INVARIANTS_EVERY,
    );
    let mut done = 0u64;
    while Instant::now() < end {
        let now = Instant::now();
        if now >= next_kill {
            if soak.kill_leader().await {
                next_kill = Instant::now() + settings.kill_every;
            } else {
                next_kill = Instant::now() + Duration::from_secs(5);
            }
        }
        if now >= next_rss {
            soak.sample_rss("interval").await;
            next_rss += RSS_EVERY;
        }
        if now >= next_check {
            soak.invariants().await;
            next_check += INVARIANTS_EVERY;
        }
        if now >= next_op {
            soak.step().await;
            done += 1;
            if done.is_multiple_of(50) {
                eprintln!(
                    "[soak] {:>6.0} s: {done} operations, {} failed",
                    soak.started.elapsed().as_secs_f64(),
                    soak.tally.op_failures.len()
                );
            }
            // A steady rate: the next one on schedule, or now when an operation's waits ran
            // over (no burst to catch up).
            next_op = (next_op + interval).max(Instant::now());
        }
        let wake = [next_op, next_kill, next_rss, next_check, end]
            .into_iter()
            .min()
            .unwrap_or(end);
        tokio::time::sleep(wake.saturating_duration_since(Instant::now())).await;
    }
    let ops_seconds = soak.started.elapsed().as_secs_f64();
    eprintln!(
        "[soak] operations stopped after {ops_seconds:.0} s; waiting for every replica and expiration"
    );

    // Both replicas up, every expiration past, the ledgers' settle window (30 s) over, the
    // operators' writes standing still.
    soak.until("both replicas running again", || async {
        soak.replicas.iter().all(|r| r.up.load(Ordering::SeqCst))
    })
    .await?;
    let last_expiry = soak
        .model
        .projects
        .iter()
        .flat_map(|p| p.members.values())
        .filter_map(|m| m.expires)
        .max();
    if let Some(t) = last_expiry {
        let left = t.as_second() + 2 - Timestamp::now().as_second();
        if left > 0 {
            tokio::time::sleep(Duration::from_secs(left as u64)).await;
        }
    }
    tokio::time::sleep(
        Duration::from_secs(35).saturating_sub(
            Instant::now()
                .saturating_duration_since(soak.started + Duration::from_secs_f64(ops_seconds)),
        ),
    )
    .await;
    let settle_seconds = settle(soak).await;

    // The comparison; repeated for up to 60 s while it finds mismatches.
    let compare_started = Instant::now();
    let (mut checks, mut mismatches) = soak.compare().await;
    let mut compares = 1;
    while !mismatches.is_empty() && compare_started.elapsed() < Duration::from_secs(60) {
        eprintln!(
            "[soak] {} mismatches, comparing again (first: {})",
            mismatches.len(),
            mismatches[0]
        );
        tokio::time::sleep(Duration::from_secs(5)).await;
        (checks, mismatches) = soak.compare().await;
        compares += 1;
    }
    for m in &mismatches {
        eprintln!("[soak] MISMATCH {m}");
    }
    soak.invariants().await;

    // The quiet window: nothing changes, so neither replica should write.
    settle(soak).await;
    let before = soak.lives();
    tokio::time::sleep(QUIET_WINDOW).await;
    let after = soak.lives();
    let quiet_writes = after.writes - before.writes;
    let quiet_reconciles = after.reconciles - before.reconciles;
    let rss_end = soak.sample_rss("end").await;
    let cpu_end = after.cpu;

    let lead_start = rss_start.unwrap_or(0.0);
    let lead_end = rss_end.unwrap_or(0.0);
    let flat = lead_end <= (lead_start * 1.2).max(lead_start + 16.0);
    let model_counts = json!({
        "live": soak.model.with(State::Live).len(),
        "archived": soak.model.with(State::Archived).len(),
        "absent": soak.model.with(State::Absent).len(),
        "memberships": soak.model.projects.iter().map(|p| p.members.len()).sum::<usize>(),
    });
    Ok(json!({
        "seed": settings.seed,
        "minutes": settings.seconds as f64 / 60.0,
        "rate_per_minute": settings.rate_per_minute,
        "kill_every_seconds": settings.kill_every.as_secs(),
        "build": if cfg!(debug_assertions) { "debug" } else { "release" },
        "operations_seconds": ops_seconds,
        "operations": soak.tally.ops.values().sum::<u64>(),
        "operations_by_kind": soak.tally.ops,
        "operation_failures": soak.tally.op_failures,
        "leader_kills": soak.tally.kills.len(),
        "kills": soak.tally.kills,
        "restarts": after.starts,
        "model": model_counts,
        "invariant_checks": soak.tally.invariant_checks + checks,
        "invariant_failures": soak.tally.invariant_failures.len() + mismatches.len(),
        "final_checks": checks,
        "final_comparisons": compares,
        "mismatches": mismatches,
        "periodic_invariant_failures": soak.tally.invariant_failures,
        "settle_seconds": settle_seconds,
        "rss_start_mib": rss_start,
        "rss_end_mib": rss_end,
        "rss_flat": flat,
        "rss_samples": soak.tally.rss,
        "cpu_seconds": cpu_end - cpu_start,
        "writes": after.writes,
        "reconciles": after.reconciles,
        "reconcile_errors": after.errors.values().fold(0.0, |a, b| a + b),
        "reconcile_errors_by_reason": after.errors,
        "quiet_window_seconds": QUIET_WINDOW.as_secs(),
        "quiet_writes": quiet_writes,
        "quiet_reconciles": quiet_reconciles,
    }))
}

fn table(r: &Value) {
    let f = |k: &str| r[k].as_f64().unwrap_or(f64::NAN);
    println!(
        "\nSoak: {:.1} minutes, seed {}, {} operations a minute, {} build\n",
        f("minutes"),
        r["seed"],
        r["rate_per_minute"],
        r["build"].as_str().unwrap_or("?")
    );
    let by_kind = r["operations_by_kind"]
        .as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    let takeovers: Vec<String> = r["kills"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|k| match k["takeover_s"].as_f64() {
            Some(s) => format!("{s:.1}"),
            None => "none".into(),
        })
        .collect();
    let rss: Vec<String> = r["rss_samples"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| match s["leader_rss_mib"].as_f64() {
            Some(m) => format!("{m:.0}"),
            None => "?".into(),
        })
        .collect();
    let rows = [
        (
            "operations done (by kind)".to_string(),
            format!("{} ({by_kind})", r["operations"]),
        ),
        (
            "operations that failed".into(),
            format!("{}", r["operation_failures"].as_array().map_or(0, Vec::len)),
        ),
        (
            "leader kills (SIGKILL); seconds until a live replica held the Lease again".into(),
            format!("{} ({} s)", r["leader_kills"], takeovers.join(", ")),
        ),
        (
            "end state (model): live / archived / never created projects; memberships".into(),
            format!(
                "{} / {} / {}; {}",
                r["model"]["live"],
                r["model"]["archived"],
                r["model"]["absent"],
                r["model"]["memberships"]
            ),
        ),
        (
            "invariant checks (failures)".into(),
            format!("{} ({})", r["invariant_checks"], r["invariant_failures"]),
        ),
        (
            "leader RSS start → end (flat?)".into(),
            format!(
                "{:.0} → {:.0} MiB ({})",
                f("rss_start_mib"),
                f("rss_end_mib"),
                if r["rss_flat"] == json!(true) {
                    "flat"
                } else {
                    "NOT flat"
                }
            ),
        ),
        ("leader RSS every 30 s (MiB)".into(), rss.join(" ")),
        (
            "CPU of both replicas over the run".into(),
            format!("{:.1} s", f("cpu_seconds")),
        ),
        (
            "operator writes / reconciles over the run".into(),
            format!("{:.0} / {:.0}", f("writes"), f("reconciles")),
        ),
        (
            "reconcile errors (by reason)".into(),
            format!(
                "{:.0} ({})",
                // An empty sum is -0.0.
                f("reconcile_errors") + 0.0,
                r["reconcile_errors_by_reason"]
            ),
        ),
        (
            format!(
                "writes (reconciles) in a {} s quiet window",
                r["quiet_window_seconds"]
            ),
            format!("{} ({})", f("quiet_writes"), f("quiet_reconciles")),
        ),
    ];
    print_table(&rows);
}

fn main() {
    // `cargo bench` passes --bench; nothing else is taken.
    let settings = settings();
    let report = match run(&settings) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("[soak] failed: {e}");
            std::process::exit(1);
        }
    };
    let (path, written) = write_report("soak.json", &report);
    table(&report);
    println!("\nwritten to {}", path.display());
    if let Err(e) = written {
        eprintln!("[soak] writing {}: {e}", path.display());
        std::process::exit(1);
    }
    let failures = report["operation_failures"].as_array().map_or(0, Vec::len) as f64
        + report["invariant_failures"].as_f64().unwrap_or(1.0)
        + report["quiet_writes"].as_f64().unwrap_or(1.0);
    if failures > 0.0 || report["rss_flat"] != json!(true) {
        eprintln!(
            "[soak] FAILED: {} failed operations, {} invariant failures, {} quiet-window writes, RSS {}",
            report["operation_failures"].as_array().map_or(0, Vec::len),
            report["invariant_failures"],
            report["quiet_writes"],
            if report["rss_flat"] == json!(true) {
                "flat"
            } else {
                "not flat"
            }
        );
        std::process::exit(1);
    }
}
