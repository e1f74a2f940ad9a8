//! Serving `views.tenancy.dev`: who is asking (the front proxy's headers, trusted only from its
//! verified client certificate), whether they may (a SubjectAccessReview, cached), and the
//! answers: discovery, get, list (filters, ordering, consistent pages) and watch (events as
//! access changes, resumable from a recent resourceVersion, bookmarks, initial events).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use futures::{Stream, StreamExt};
use jiff::Timestamp;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use tokio::sync::watch;

use super::select::{MemberQuery, Order, ProjectQuery};
use super::table::{self, IncludeObject};
use super::{
    API_VERSION, Changed, Dirty, GROUP, Index, Lookup, Member, MyProject, VERSION, Viewer,
};
use crate::desired::access::Requester;
use crate::https::Peer;
use crate::lifecycle::Clock;
use crate::watch::Caches;
use kube::runtime::reflector::ObjectRef;

/// The front proxy (kube-apiserver's aggregator) as `kube-system/extension-apiserver-authentication`
/// describes it.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct FrontProxy {
    pub client_ca: String,
    /// Common names allowed to send the headers; empty: any certificate the CA signed.
    pub allowed_names: Vec<String>,
    pub username_headers: Vec<String>,
    pub group_headers: Vec<String>,
    pub extra_prefixes: Vec<String>,
}

pub const AUTH_CONFIG_MAP: &str = "extension-apiserver-authentication";

impl FrontProxy {
    /// From the ConfigMap's data; `None` when kube-apiserver runs without the aggregation layer.
    pub fn from_data(data: &BTreeMap<String, String>) -> Result<Option<Self>, String> {
        let Some(ca) = data
            .get("requestheader-client-ca-file")
            .filter(|s| !s.trim().is_empty())
        else {
            return Ok(None);
        };
        let list = |key: &str| -> Result<Vec<String>, String> {
            match data.get(key) {
                None => Ok(Vec::new()),
                Some(s) if s.trim().is_empty() => Ok(Vec::new()),
                Some(s) => {
                    serde_json::from_str(s).map_err(|e| format!("{AUTH_CONFIG_MAP} key {key}: {e}"))
                }
            }
        };
        Ok(Some(FrontProxy {
            client_ca: ca.clone(),
            allowed_names: list("requestheader-allowed-names")?,
            username_headers: list("requestheader-username-headers")?,
            group_headers: list("requestheader-group-headers")?,
            extra_prefixes: list("requestheader-extra-headers-prefix")?,
        }))
    }
}

/// A requester the front proxy vouched for.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Authenticated {
    pub user: String,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

/// Who is asking: `Ok(None)` when the front proxy connected without naming a user (its own
/// discovery and availability checks). Headers from anyone but the front proxy are never read.
pub fn authenticate(
    proxy: Option<&FrontProxy>,
    peer: &Peer,
    headers: &HeaderMap,
) -> Result<Option<Authenticated>, String> {
    let Some(proxy) = proxy else {
        return Err("this API is served through kube-apiserver's aggregation layer only; kube-apiserver runs without it (no requestheader-client-ca-file in kube-system/extension-apiserver-authentication)".into());
    };
    let Some(cn) = &peer.common_name else {
        return Err(
            "no client certificate from the front proxy: call this API through kube-apiserver"
                .into(),
        );
    };
    if !proxy.allowed_names.is_empty() && !proxy.allowed_names.contains(cn) {
        return Err(format!(
            "client certificate {cn:?} is not one of the front proxy's allowed names"
        ));
    }
    let values = |name: &str| -> Vec<String> {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::to_string)
            .filter(|v| !v.is_empty())
            .collect()
    };
    let Some(user) = proxy.username_headers.iter().flat_map(|h| values(h)).next() else {
        return Ok(None);
    };
    let groups = proxy.group_headers.iter().flat_map(|h| values(h)).collect();
    let mut extra: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in headers {
        let lower = name.as_str().to_ascii_lowercase();
        for prefix in &proxy.extra_prefixes {
            if let Some(key) = lower.strip_prefix(&prefix.to_ascii_lowercase())
                && let Ok(v) = value.to_str()
            {
                extra
                    .entry(key.to_string())
                    .or_default()
                    .push(v.to_string());
            }
        }
    }
    Ok(Some(Authenticated {
        user,
        groups,
        extra,
    }))
}

/// A list's remaining items, kept for its `continue` token: every page of one list comes from
/// the same moment.
struct Snapshot {
    user: String,
    items: Arc<Items>,
    revision: u64,
    made: Instant,
}

enum Items {
    Projects(Vec<MyProject>),
    Members(Vec<Member>),
    Usage(Vec<super::usage::Usage>),
}

impl Items {
    fn len(&self) -> usize {
        match self {
            Items::Projects(v) => v.len(),
            Items::Members(v) => v.len(),
            Items::Usage(v) => v.len(),
        }
    }
}

/// How long a `continue` token stays valid (then 410, as the apiserver answers after a
/// compaction).
pub const CONTINUE_TTL: Duration = Duration::from_secs(300);
const MAX_SNAPSHOTS: usize = 1024;
const SNAPSHOTS_PER_REQUESTER: usize = 8;
/// How many recent indexes a watch can resume from, ...
const HISTORY: usize = 64;
/// ... for how long after a newer one replaced them (kube-apiserver's own watch cache promises
/// 75 s): once changes stop, the older indexes (and the older entries only they hold) go.
const RESUME_WINDOW: Duration = Duration::from_secs(75);
/// How often the index is built from everything while anything changes (it is updated from the
/// changes in between).
const FULL_BUILD_EVERY: Duration = Duration::from_secs(60);
const AUTHZ_TTL: Duration = Duration::from_secs(10);

/// The read API's state: the index, its recent history, the front proxy, paging snapshots and
/// cached authorization decisions.
pub struct Views {
    client: Client,
    /// The checklists, for `checklistevaluations`.
    checklists: kube::runtime::reflector::Store<crate::api::Checklist>,
    clock: Clock,
    staff_groups: Vec<String>,
    index: watch::Sender<Option<Arc<Index>>>,
    /// The recent indexes and when each was published, oldest first.
    history: Mutex<VecDeque<(Arc<Index>, Instant)>>,
    front_proxy: RwLock<Option<FrontProxy>>,
    /// The front proxy's CA, for the HTTPS server's client certificate verification.
    pub client_ca: watch::Sender<Option<String>>,
    snapshots: Mutex<HashMap<String, Snapshot>>,
    decisions: Mutex<HashMap<String, (bool, Instant)>>,
    metrics: Arc<crate::metrics::Metrics>,
    /// Prices for open months, the low-credit threshold.
    billing: super::usage::Billing,
}

/// A request refused, answered as a `Status`.
#[derive(Debug)]
pub struct Failure {
    code: StatusCode,
    reason: &'static str,
    message: String,
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let body = json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": self.message, "reason": self.reason,
            "code": self.code.as_u16(),
        });
        (
            self.code,
            [("content-type", "application/json")],
            body.to_string(),
        )
            .into_response()
    }
}

fn status(code: StatusCode, reason: &'static str, message: impl Into<String>) -> Failure {
    Failure {
        code,
        reason,
        message: message.into(),
    }
}

fn json_response(value: &Value) -> Response {
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        value.to_string(),
    )
        .into_response()
}

fn resource_list() -> Value {
    json!({
        "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": API_VERSION,
        "resources": [
            {"name": "myprojects", "singularName": "myproject", "namespaced": false,
             "kind": "MyProject", "verbs": ["get", "list", "watch"], "shortNames": ["myp"]},
            {"name": "members", "singularName": "member", "namespaced": false,
             "kind": "Member", "verbs": ["list", "watch"]},
            {"name": "usage", "singularName": "usage", "namespaced": false,
             "kind": "Usage", "verbs": ["get", "list"]},
            {"name": "checklistevaluations", "singularName": "checklistevaluation",
             "namespaced": false, "kind": "ChecklistEvaluation", "verbs": ["create"]},
        ]
    })
}

fn api_group() -> Value {
    let version = json!({"groupVersion": API_VERSION, "version": VERSION});
    json!({"kind": "APIGroup", "apiVersion": "v1", "name": GROUP,
           "versions": [version.clone()], "preferredVersion": version})
}

/// The request's query parameters that matter here.
#[derive(Default)]
struct Params(HashMap<String, String>);

impl Params {
    fn get(&self, key: &str) -> &str {
        self.0.get(key).map(String::as_str).unwrap_or_default()
    }
    fn flag(&self, key: &str) -> Option<bool> {
        match self.get(key) {
            "" => None,
            "true" | "1" => Some(true),
            _ => Some(false),
        }
    }
}

/// What one list or watch selects.
enum Selection {
    Projects(ProjectQuery, Order),
    Members(MemberQuery),
    Usage(super::usage::UsageQuery),
}

impl Views {
    pub fn new(
        client: Client,
        clock: Clock,
        staff_groups: Vec<String>,
        metrics: Arc<crate::metrics::Metrics>,
        checklists: kube::runtime::reflector::Store<crate::api::Checklist>,
        billing: super::usage::Billing,
    ) -> Arc<Self> {
        Arc::new(Views {
            client,
            checklists,
            clock,
            staff_groups,
            index: watch::channel(None).0,
            history: Mutex::new(VecDeque::new()),
            front_proxy: RwLock::new(None),
            client_ca: watch::channel(None).0,
            snapshots: Mutex::new(HashMap::new()),
            decisions: Mutex::new(HashMap::new()),
            metrics,
            billing,
        })
    }

    /// The index in force (`None` until the caches have listed).
    pub fn index(&self) -> Option<Arc<Index>> {
        self.index.borrow().clone()
    }

    fn publish(&self, index: Arc<Index>) {
        self.trim_history(Some(index.clone()));
        self.index.send_replace(Some(index));
    }

    /// Adds `published` to the history, and lets go of the indexes a watch may no longer resume
    /// from.
    fn trim_history(&self, published: Option<Arc<Index>>) {
        let now = Instant::now();
        let mut h = self.history.lock().expect("history lock");
        h.extend(published.map(|i| (i, now)));
        let times: Vec<Instant> = h.iter().map(|(_, at)| *at).collect();
        h.drain(..expired_history(&times, now));
    }

    /// The index of everything the caches hold, sharing `previous`'s entries that come out the
    /// same. It reads the caches one name at a time, as an update does: projects, memberships
    /// and namespaces are kept compressed, and all of them read back at once would hold every
    /// one decoded for the length of the build.
    fn build(&self, caches: &Caches, revision: u64, previous: Option<&Index>) -> Index {
        let started = Instant::now();
        let everything = Dirty {
            projects: caches.projects.refs().into_iter().map(|r| r.name).collect(),
            customers: caches
                .customers
                .state()
                .iter()
                .map(|c| c.name_any())
                .collect(),
            namespaces: caches
                .namespaces
                .refs()
                .into_iter()
                .map(|r| r.name)
                .collect(),
            usages: caches.usages.state().iter().map(|u| u.name_any()).collect(),
        };
        let index = Index::rebuild(
            &CacheLookup(caches),
            everything,
            revision,
            self.clock.now(),
            previous,
        );
        self.metrics
            .view_index_built(started.elapsed().as_secs_f64());
        index
    }

    /// `previous` after the changes in `dirty` (only their entries built again).
    fn update(&self, caches: &Caches, previous: &Index, dirty: &Dirty, revision: u64) -> Index {
        let started = Instant::now();
        let index = previous.update(&CacheLookup(caches), dirty, revision, self.clock.now());
        self.metrics
            .view_index_built(started.elapsed().as_secs_f64());
        index
    }

    /// Keeps the index current: built once the caches have listed, then updated after each
    /// burst of changes (`changes`: the resourceVersion and name of every changed or deleted
    /// project, customer, membership, namespace and usage record). What a relist dropped
    /// without a deletion event is caught by a build from everything at least every
    /// [`FULL_BUILD_EVERY`] while anything changes.
    pub async fn maintain(
        self: Arc<Self>,
        caches: Caches,
        mut changes: impl Stream<Item = (u64, Changed)> + Unpin,
    ) {
        for (_, listed) in caches.listed() {
            listed.await;
        }
        let rv = |m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
            m.resource_version
                .as_deref()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let mut revision = caches
            .customers
            .state()
            .iter()
            .map(|o| rv(&o.metadata))
            .max()
            .unwrap_or(0);
        caches
            .projects
            .each(|o| revision = revision.max(rv(&o.metadata)));
        caches
            .memberships
            .each(|o| revision = revision.max(rv(&o.metadata)));
        caches
            .namespaces
            .each(|o| revision = revision.max(rv(&o.metadata)));
        let started = Instant::now();
        let mut current = Arc::new(self.build(&caches, revision, None));
        let mut took = started.elapsed();
        self.publish(current.clone());
        tracing::info!(revision, "views index built");
        let mut full_at = Instant::now();
        let mut since_full = false;
        loop {
            let first = match tokio::time::timeout(FULL_BUILD_EVERY, changes.next()).await {
                Ok(Some(change)) => Some(change),
                Ok(None) => {
                    // The watches never end while the operator runs: say so if they did.
                    tracing::error!("the views index stopped: its watches ended");
                    return;
                }
                Err(_) => None,
            };
            let mut dirty = Dirty::default();
            if let Some((rv, change)) = first {
                revision = revision.max(rv);
                dirty.add(change);
                // Gather the rest of a burst into one update: at most four a second, and at
                // most a fifth of a core however long they take.
                let until = tokio::time::Instant::now() + gather_window(took);
                while let Ok(Some((rv, change))) =
                    tokio::time::timeout_at(until, changes.next()).await
                {
                    revision = revision.max(rv);
                    dirty.add(change);
                }
                since_full = true;
            }
            let started = Instant::now();
            let full = since_full && full_at.elapsed() >= FULL_BUILD_EVERY;
            let index = if full {
                full_at = Instant::now();
                since_full = false;
                self.build(&caches, revision, Some(&current))
            } else if dirty.is_empty() {
                // Quiet: nothing to build, history to let go of.
                self.trim_history(None);
                continue;
            } else {
                self.update(&caches, &current, &dirty, revision)
            };
            took = started.elapsed();
            current = Arc::new(index);
            self.publish(current.clone());
        }
    }

    /// Follows `kube-system/extension-apiserver-authentication` (every 30 s): the front proxy's
    /// CA and header names.
    pub async fn follow_front_proxy(self: Arc<Self>) {
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), "kube-system");
        let mut last_error = String::new();
        loop {
            let found = match api.get_opt(AUTH_CONFIG_MAP).await {
                Ok(cm) => FrontProxy::from_data(&cm.and_then(|c| c.data).unwrap_or_default()),
                Err(e) => Err(format!("cannot read kube-system/{AUTH_CONFIG_MAP}: {e}")),
            };
            match found {
                Ok(proxy) => {
                    if proxy.is_none() && last_error != "none" {
                        tracing::warn!(
                            "kube-apiserver runs without the aggregation layer (no requestheader-client-ca-file in kube-system/{AUTH_CONFIG_MAP}): views.tenancy.dev answers 401 until it does"
                        );
                        last_error = "none".into();
                    } else if proxy.is_some() {
                        last_error.clear();
                    }
                    let ca = proxy.as_ref().map(|p| p.client_ca.clone());
                    self.client_ca.send_if_modified(|c| {
                        let changed = *c != ca;
                        *c = ca;
                        changed
                    });
                    *self.front_proxy.write().expect("front proxy lock") = proxy;
                }
                Err(e) => {
                    if e != last_error {
                        tracing::warn!(error = %e, "views.tenancy.dev cannot authenticate requests; retrying");
                        last_error = e;
                    }
                }
            }
            tokio::time::sleep(Duration::from_secs(30)).await;
        }
    }

    fn authenticate(
        &self,
        peer: &Peer,
        headers: &HeaderMap,
    ) -> Result<Option<Authenticated>, Failure> {
        let proxy = self.front_proxy.read().expect("front proxy lock").clone();
        authenticate(proxy.as_ref(), peer, headers)
            .map_err(|m| status(StatusCode::UNAUTHORIZED, "Unauthorized", m))
    }

    /// Delegated authorization, as every extension API server does it: the cluster's authorizer
    /// decides whether this user may `verb` the resource (decisions cached for 10 s).
    async fn authorize(
        &self,
        who: &Authenticated,
        verb: &str,
        resource: &str,
        name: &str,
    ) -> Result<(), Failure> {
        let key = format!(
            "{}\u{0}{}\u{0}{:?}\u{0}{verb}\u{0}{resource}\u{0}{name}",
            who.user,
            who.groups.join("\u{1}"),
            who.extra
        );
        let cached = self
            .decisions
            .lock()
            .expect("decisions lock")
            .get(&key)
            .filter(|(_, at)| at.elapsed() < AUTHZ_TTL)
            .map(|(allowed, _)| *allowed);
        let allowed = match cached {
            Some(a) => a,
            None => {
                let review = SubjectAccessReview {
                    spec: SubjectAccessReviewSpec {
                        user: Some(who.user.clone()),
                        groups: Some(who.groups.clone()),
                        extra: (!who.extra.is_empty()).then(|| who.extra.clone()),
                        resource_attributes: Some(ResourceAttributes {
                            group: Some(GROUP.into()),
                            version: Some(VERSION.into()),
                            resource: Some(resource.into()),
                            verb: Some(verb.into()),
                            name: (!name.is_empty()).then(|| name.to_string()),
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                    ..Default::default()
                };
                let api: Api<SubjectAccessReview> = Api::all(self.client.clone());
                let answer = api
                    .create(&PostParams::default(), &review)
                    .await
                    .map_err(|e| {
                        status(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "ServiceUnavailable",
                            format!("cannot authorize the request: {e}"),
                        )
                    })?;
                let allowed = answer.status.is_some_and(|s| s.allowed);
                let mut d = self.decisions.lock().expect("decisions lock");
                if d.len() > 10_000 {
                    d.retain(|_, (_, at)| at.elapsed() < AUTHZ_TTL);
                }
                d.insert(key, (allowed, Instant::now()));
                allowed
            }
        };
        if allowed {
            Ok(())
        } else {
            Err(status(
                StatusCode::FORBIDDEN,
                "Forbidden",
                format!(
                    "{resource}.{GROUP} is forbidden: User {:?} cannot {verb} resource {resource:?} in API group {GROUP:?}",
                    who.user
                ),
            ))
        }
    }

    fn viewer(&self, who: &Authenticated) -> Viewer {
        Viewer {
            staff: who.groups.iter().any(|g| self.staff_groups.contains(g)),
            requester: Requester {
                username: who.user.clone(),
                groups: who.groups.clone(),
            },
        }
    }

    /// The items this viewer sees at one index.
    fn select(
        &self,
        index: &Index,
        viewer: &Viewer,
        selection: &Selection,
        now: Timestamp,
    ) -> Items {
        match selection {
            Selection::Projects(q, order) => {
                let mut items: Vec<MyProject> = index
                    .projects_for(viewer, q.lifetimes.terminated(), q.lifetimes.live(), now)
                    .into_iter()
                    .filter(|p| q.matches(p))
                    .collect();
                order.sort(&mut items);
                Items::Projects(items)
            }
            Selection::Members(q) => Items::Members(
                index
                    .members_for(viewer, now)
                    .into_iter()
                    .filter(|m| q.matches(m))
                    .collect(),
            ),
            Selection::Usage(q) => Items::Usage(index.usage_for(viewer, q, &self.billing, now)),
        }
    }

    fn remember(&self, user: &str, items: Arc<Items>, revision: u64) -> String {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).expect("the system's random source");
        let id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let mut s = self.snapshots.lock().expect("snapshots lock");
        s.retain(|_, v| v.made.elapsed() < CONTINUE_TTL);
        // Each requester keeps at most a few lists open (one requester cannot fill the memory
        // by starting lists it never finishes), and all together at most MAX_SNAPSHOTS.
        let theirs = s.values().filter(|v| v.user == user).count();
        if theirs >= SNAPSHOTS_PER_REQUESTER
            && let Some(oldest) = s
                .iter()
                .filter(|(_, v)| v.user == user)
                .min_by_key(|(_, v)| v.made)
                .map(|(k, _)| k.clone())
        {
            s.remove(&oldest);
        }
        if s.len() >= MAX_SNAPSHOTS
            && let Some(oldest) = s.iter().min_by_key(|(_, v)| v.made).map(|(k, _)| k.clone())
        {
            s.remove(&oldest);
        }
        s.insert(
            id.clone(),
            Snapshot {
                user: user.to_string(),
                items,
                revision,
                made: Instant::now(),
            },
        );
        id
    }

    fn recall(&self, user: &str, id: &str) -> Option<(Arc<Items>, u64)> {
        let s = self.snapshots.lock().expect("snapshots lock");
        s.get(id)
            .filter(|v| v.user == user && v.made.elapsed() < CONTINUE_TTL)
            .map(|v| (v.items.clone(), v.revision))
    }
}

fn selection(resource: &str, params: &Params) -> Result<Selection, Failure> {
    let bad = |m: String| status(StatusCode::BAD_REQUEST, "BadRequest", m);
    let (fields, labels) = (params.get("fieldSelector"), params.get("labelSelector"));
    match resource {
        "myprojects" => Ok(Selection::Projects(
            ProjectQuery::parse(fields, labels).map_err(bad)?,
            Order::parse(params.get("orderBy")).map_err(bad)?,
        )),
        "usage" => {
            if !params.get("orderBy").is_empty() {
                return Err(bad("orderBy applies to myprojects only".into()));
            }
            Ok(Selection::Usage(
                super::usage::UsageQuery::parse(fields, labels).map_err(bad)?,
            ))
        }
        _ => {
            if !params.get("orderBy").is_empty() {
                return Err(bad("orderBy applies to myprojects only".into()));
            }
            Ok(Selection::Members(
                MemberQuery::parse(fields, labels).map_err(bad)?,
            ))
        }
    }
}

/// Renders items as a list or a Table.
fn render(
    items: &Items,
    range: std::ops::Range<usize>,
    table_as: Option<IncludeObject>,
    now: Timestamp,
    rv: &str,
    continue_: Option<&str>,
    remaining: usize,
) -> Value {
    if let Some(include) = table_as {
        let mut t = match items {
            Items::Projects(v) => table::projects(&v[range], include, now, rv, continue_),
            Items::Members(v) => table::members(&v[range], include, now, rv, continue_),
            Items::Usage(v) => super::usage::usage_table(&v[range], include, rv, continue_),
        };
        if remaining > 0 {
            t["metadata"]["remainingItemCount"] = json!(remaining);
        }
        return t;
    }
    let (kind, items) = match items {
        Items::Projects(v) => (
            "MyProjectList",
            serde_json::to_value(&v[range]).unwrap_or_default(),
        ),
        Items::Members(v) => (
            "MemberList",
            serde_json::to_value(&v[range]).unwrap_or_default(),
        ),
        Items::Usage(v) => (
            "UsageList",
            serde_json::to_value(&v[range]).unwrap_or_default(),
        ),
    };
    let mut metadata = json!({"resourceVersion": rv});
    if let Some(c) = continue_ {
        metadata["continue"] = json!(c);
        metadata["remainingItemCount"] = json!(remaining);
    }
    json!({"apiVersion": API_VERSION, "kind": kind, "metadata": metadata, "items": items})
}

fn table_as(headers: &HeaderMap, params: &Params) -> Result<Option<IncludeObject>, Failure> {
    let accept = headers
        .get("accept")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !table::wants_table(accept) {
        return Ok(None);
    }
    IncludeObject::parse(params.get("includeObject"))
        .map(Some)
        .map_err(|m| status(StatusCode::BAD_REQUEST, "BadRequest", m))
}

/// The routes of `views.tenancy.dev`.
pub fn routes(views: Arc<Views>) -> Router {
    let resources = Router::new()
        .route(
            "/apis/views.tenancy.dev/v1alpha1/checklistevaluations",
            any(evaluate_checklist),
        )
        .route(
            "/apis/views.tenancy.dev/v1alpha1/{resource}",
            any(collection),
        )
        .route(
            "/apis/views.tenancy.dev/v1alpha1/{resource}/{name}",
            any(object),
        )
        .route_layer(axum::middleware::from_fn_with_state(views.clone(), counted));
    Router::new()
        .route("/apis", get(discovery))
        .route("/apis/views.tenancy.dev", get(discovery))
        .route("/apis/views.tenancy.dev/v1alpha1", get(discovery))
        .merge(resources)
        .with_state(views)
}

/// Counts each request by resource, verb and answer (`tenancy_views_requests_total`).
async fn counted(
    State(views): State<Arc<Views>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let parts: Vec<String> = req.uri().path().split('/').map(str::to_string).collect();
    let watching = req
        .uri()
        .query()
        .unwrap_or_default()
        .split('&')
        .any(|p| p == "watch=true" || p == "watch=1");
    let resource = parts.get(4).cloned().unwrap_or_default();
    let verb = match (parts.len(), watching) {
        (n, _) if n > 5 => "get",
        (_, true) => "watch",
        _ => "list",
    };
    let verb = if resource == "checklistevaluations" {
        "create"
    } else {
        verb
    };
    let resource = if ["myprojects", "members", "usage", "checklistevaluations"]
        .contains(&resource.as_str())
    {
        resource
    } else {
        "unknown".into()
    };
    let response = next.run(req).await;
    views
        .metrics
        .view_request(&resource, verb, response.status().as_u16());
    response
}

async fn discovery(
    State(views): State<Arc<Views>>,
    axum::Extension(peer): axum::Extension<Peer>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Result<Response, Failure> {
    views.authenticate(&peer, &headers)?;
    Ok(match uri.path().trim_end_matches('/') {
        "/apis" => json_response(
            &json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": [api_group()]}),
        ),
        "/apis/views.tenancy.dev" => json_response(&api_group()),
        _ => json_response(&resource_list()),
    })
}

/// Authenticates and authorizes a request for a resource; the viewer and the index to answer
/// from.
async fn admit(
    views: &Views,
    peer: &Peer,
    headers: &HeaderMap,
    method: &Method,
    resource: &str,
    verb: &str,
    name: &str,
) -> Result<(Viewer, Arc<Index>), Failure> {
    if !["myprojects", "members", "usage"].contains(&resource) {
        return Err(status(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!(
                "the server could not find the requested resource {resource:?}; {GROUP}/{VERSION} serves myprojects, members and usage"
            ),
        ));
    }
    let who = views.authenticate(peer, headers)?.ok_or_else(|| {
        status(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "the front proxy named no user",
        )
    })?;
    if resource == "usage" && (method != Method::GET || verb == "watch") {
        return Err(status(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            format!(
                "usage.{GROUP} is read-only and served by the server: get and list only (an open month changes every instant; list again to see it now)"
            ),
        ));
    }
    if method != Method::GET || (resource == "members" && verb == "get") {
        return Err(status(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            format!(
                "{resource}.{GROUP} is read-only and served by the server: {} is {}",
                if resource == "members" {
                    "members"
                } else {
                    "myprojects"
                },
                if resource == "members" {
                    "list and watch only"
                } else {
                    "get, list and watch only"
                }
            ),
        ));
    }
    views.authorize(&who, verb, resource, name).await?;
    let index = views.index().ok_or_else(|| {
        status(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            "the operator's caches are still syncing; try again in a moment",
        )
    })?;
    Ok((views.viewer(&who), index))
}

/// `checklistevaluations` (create, like a SelfSubjectAccessReview): given a checklist's name
/// and answers so far, the questions asked, the guidance that applies, what does not fit yet and
/// what would need a review. Nothing is stored. `kubectl create -f evaluation.yaml -o yaml`.
async fn evaluate_checklist(
    State(views): State<Arc<Views>>,
    axum::Extension(peer): axum::Extension<Peer>,
    method: Method,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, Failure> {
    let who = views.authenticate(&peer, &headers)?.ok_or_else(|| {
        status(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "the front proxy named no user",
        )
    })?;
    if method != Method::POST {
        return Err(status(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            format!(
                "checklistevaluations.{GROUP} is create only: POST a ChecklistEvaluation with spec.checklist and spec.answers"
            ),
        ));
    }
    views
        .authorize(&who, "create", "checklistevaluations", "")
        .await?;
    let bad = |m: String| status(StatusCode::BAD_REQUEST, "BadRequest", m);
    let mut request: Value = serde_json::from_slice(&body)
        .map_err(|e| bad(format!("the body is not a JSON ChecklistEvaluation: {e}")))?;
    let name = request["spec"]["checklist"]
        .as_str()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| bad("spec.checklist: name the Checklist to evaluate".into()))?
        .to_string();
    let answers: crate::desired::checklist::Answers = match &request["spec"]["answers"] {
        Value::Null => Default::default(),
        v => serde_json::from_value(v.clone()).map_err(|_| {
            bad("spec.answers: a map of question id to answer, e.g. {personal-data: true}".into())
        })?,
    };
    let checklist = views
        .checklists
        .get(&kube::runtime::reflector::ObjectRef::new(&name))
        .ok_or_else(|| {
            status(
                StatusCode::NOT_FOUND,
                "NotFound",
                format!("checklists.tenancy.dev {name:?} not found"),
            )
        })?;
    let e = crate::desired::checklist::evaluate(&checklist.spec, &answers);
    let visible: Vec<&crate::api::Question> = checklist
        .spec
        .questions
        .iter()
        .filter(|q| e.visible.contains(&q.id))
        .collect();
    request["apiVersion"] = json!(API_VERSION);
    request["kind"] = json!("ChecklistEvaluation");
    request["status"] = json!({
        "visibleQuestions": visible,
        "guidance": e.guidance,
        "problems": e.problems,
        "needsReview": e.needs_review,
        "answered": e.answered,
        "required": e.required,
    });
    Ok((
        StatusCode::CREATED,
        [("content-type", "application/json")],
        request.to_string(),
    )
        .into_response())
}

async fn object(
    State(views): State<Arc<Views>>,
    axum::Extension(peer): axum::Extension<Peer>,
    method: Method,
    Path((resource, name)): Path<(String, String)>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, Failure> {
    let params = Params(params);
    let (viewer, index) = admit(&views, &peer, &headers, &method, &resource, "get", &name).await?;
    let now = views.clock.now();
    if resource == "usage" {
        let q = super::usage::UsageQuery::parse(&format!("metadata.name={name}"), "")
            .map_err(|m| status(StatusCode::BAD_REQUEST, "BadRequest", m))?;
        let found = index.usage_for(&viewer, &q, &views.billing, now);
        let Some(item) = found.into_iter().next() else {
            return Err(status(
                StatusCode::NOT_FOUND,
                "NotFound",
                format!("usage.{GROUP} {name:?} not found"),
            ));
        };
        return Ok(match table_as(&headers, &params)? {
            Some(include) => json_response(&super::usage::usage_table(
                std::slice::from_ref(&item),
                include,
                &index.revision.to_string(),
                None,
            )),
            None => json_response(&serde_json::to_value(&item).unwrap_or_default()),
        });
    }
    let terminated = index.may_see_terminated(&viewer, now);
    let found = index
        .projects_for(&viewer, terminated, true, now)
        .into_iter()
        .find(|p| p.metadata.name.as_deref() == Some(name.as_str()));
    // Whether it does not exist or is not theirs to see, the answer is the same.
    let Some(item) = found else {
        return Err(status(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("myprojects.{GROUP} {name:?} not found"),
        ));
    };
    Ok(match table_as(&headers, &params)? {
        Some(include) => json_response(&table::projects(
            std::slice::from_ref(&item),
            include,
            now,
            &index.revision.to_string(),
            None,
        )),
        None => json_response(&serde_json::to_value(&item).unwrap_or_default()),
    })
}

async fn collection(
    State(views): State<Arc<Views>>,
    axum::Extension(peer): axum::Extension<Peer>,
    method: Method,
    Path(resource): Path<String>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, Failure> {
    let params = Params(params);
    let watching = params.flag("watch") == Some(true);
    let verb = if watching { "watch" } else { "list" };
    let (viewer, index) = admit(&views, &peer, &headers, &method, &resource, verb, "").await?;
    let table_as = table_as(&headers, &params)?;
    let now = views.clock.now();
    // Pages belong to who asked, groups included.
    let user = format!(
        "{}\u{0}{}",
        viewer.requester.username,
        viewer.requester.groups.join("\u{1}")
    );

    // A next page: from the snapshot the first page was cut from.
    let token = params.get("continue");
    if !token.is_empty() {
        let parsed = token
            .split_once(':')
            .and_then(|(id, offset)| offset.parse::<usize>().ok().map(|o| (id, o)));
        let Some((items, revision, offset)) =
            parsed.and_then(|(id, o)| views.recall(&user, id).map(|(i, r)| (i, r, o)))
        else {
            return Err(status(
                StatusCode::GONE,
                "Expired",
                format!(
                    "the continue token has expired or is not yours (tokens last {} s and are served by the replica that made them): list again from the start",
                    CONTINUE_TTL.as_secs()
                ),
            ));
        };
        let id = token.split_once(':').map(|(i, _)| i).unwrap_or_default();
        return Ok(page(
            &items,
            offset,
            params.get("limit"),
            table_as,
            now,
            revision,
            |_| id.to_string(),
        ));
    }

    let selection = selection(&resource, &params)?;
    if let Selection::Projects(q, _) = &selection
        && q.lifetimes.terminated()
        && !index.may_see_terminated(&viewer, now)
    {
        return Err(status(
            StatusCode::FORBIDDEN,
            "Forbidden",
            "terminated projects are listed only for staff and for the owners and support of their customer",
        ));
    }
    if watching {
        return watch_response(views, viewer, selection, params, table_as, index).await;
    }
    let items = Arc::new(views.select(&index, &viewer, &selection, now));
    let revision = index.revision;
    Ok(page(
        &items,
        0,
        params.get("limit"),
        table_as,
        now,
        revision,
        |items| views.remember(&user, items, revision),
    ))
}

/// One page of `items` from `offset`; `remember` names the snapshot the next page comes from.
fn page(
    items: &Arc<Items>,
    offset: usize,
    limit: &str,
    table_as: Option<IncludeObject>,
    now: Timestamp,
    revision: u64,
    remember: impl FnOnce(Arc<Items>) -> String,
) -> Response {
    let total = items.len();
    let limit = limit
        .parse::<usize>()
        .ok()
        .filter(|l| *l > 0)
        .unwrap_or(usize::MAX);
    let start = offset.min(total);
    let end = start.saturating_add(limit).min(total);
    let continue_ = (end < total).then(|| format!("{}:{end}", remember(items.clone())));
    json_response(&render(
        items,
        start..end,
        table_as,
        now,
        &revision.to_string(),
        continue_.as_deref(),
        total - end,
    ))
}

/// One item of a watch, by name.
#[derive(Clone, Debug, PartialEq)]
enum Item {
    Project(Box<MyProject>),
    Member(Box<Member>),
}

impl Items {
    fn keyed(self) -> BTreeMap<String, Item> {
        match self {
            Items::Projects(v) => v
                .into_iter()
                .map(|p| {
                    (
                        p.metadata.name.clone().unwrap_or_default(),
                        Item::Project(Box::new(p)),
                    )
                })
                .collect(),
            Items::Members(v) => v
                .into_iter()
                .map(|m| {
                    (
                        m.metadata.name.clone().unwrap_or_default(),
                        Item::Member(Box::new(m)),
                    )
                })
                .collect(),
            // Not watched (refused before a watch starts).
            Items::Usage(_) => BTreeMap::new(),
        }
    }
}

/// A watch event line: the item at the watch's position `revision`, as an object or a one-row
/// Table.
fn event_line(
    kind: &str,
    item: &Item,
    revision: u64,
    table_as: Option<IncludeObject>,
    now: Timestamp,
) -> String {
    let rv = revision.to_string();
    let object = match (item.clone(), table_as) {
        (Item::Project(mut p), t) => {
            p.metadata.resource_version = Some(rv.clone());
            match t {
                Some(include) => table::projects(&[*p], include, now, &rv, None),
                None => serde_json::to_value(&p).unwrap_or_default(),
            }
        }
        (Item::Member(mut m), t) => {
            m.metadata.resource_version = Some(rv.clone());
            match t {
                Some(include) => table::members(&[*m], include, now, &rv, None),
                None => serde_json::to_value(&m).unwrap_or_default(),
            }
        }
    };
    format!("{}\n", json!({"type": kind, "object": object}))
}

fn bookmark_line(resource: &str, revision: u64, initial_events_end: bool) -> String {
    let kind = if resource == "members" {
        "Member"
    } else {
        "MyProject"
    };
    let mut metadata = json!({"resourceVersion": revision.to_string()});
    if initial_events_end {
        metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    format!(
        "{}\n",
        json!({"type": "BOOKMARK", "object": {"kind": kind, "apiVersion": API_VERSION, "metadata": metadata}})
    )
}

fn error_line(code: u16, reason: &str, message: &str) -> String {
    format!(
        "{}\n",
        json!({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": message, "reason": reason, "code": code}})
    )
}

/// The events that take a watcher from `sent` to `now_seen`.
fn diff(
    sent: &BTreeMap<String, Item>,
    now_seen: &BTreeMap<String, Item>,
) -> Vec<(&'static str, Item)> {
    let mut out = Vec::new();
    for (name, item) in now_seen {
        match sent.get(name) {
            None => out.push(("ADDED", item.clone())),
            Some(old) if old != item => out.push(("MODIFIED", item.clone())),
            Some(_) => {}
        }
    }
    for (name, item) in sent {
        if !now_seen.contains_key(name) {
            out.push(("DELETED", item.clone()));
        }
    }
    out
}

/// Counts a watch as open until dropped.
struct OpenWatch(Arc<crate::metrics::Metrics>);

impl Drop for OpenWatch {
    fn drop(&mut self) {
        self.0.view_watches(-1);
    }
}

/// How many of the oldest indexes (published at `published`, oldest first) go at `now`: those
/// beyond [`HISTORY`], and those a newer one replaced more than [`RESUME_WINDOW`] ago. The newest
/// always stays.
fn expired_history(published: &[Instant], now: Instant) -> usize {
    let beyond = published.len().saturating_sub(HISTORY);
    let replaced_long_ago = published
        .windows(2)
        .take_while(|pair| now.saturating_duration_since(pair[1]) > RESUME_WINDOW)
        .count();
    beyond.max(replaced_long_ago)
}

/// Where a watch starts.
enum Start {
    /// The client knows nothing: every item comes as ADDED (then, with sendInitialEvents, a
    /// bookmark saying the initial events are over).
    Everything { end_bookmark: bool },
    /// The client holds what this index showed it.
    From(Arc<Index>),
    /// The resourceVersion is older than the history kept: 410, list again.
    TooOld(String),
}

impl Views {
    /// The index a watch from resourceVersion `rv` resumes from: the newest one not newer than
    /// it (waiting up to 3 s for a version this replica has not seen yet).
    async fn resume_from(&self, rv: u64) -> Start {
        let mut rx = self.index.subscribe();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        while self.index().is_none_or(|i| i.revision < rv) {
            if tokio::time::timeout_at(deadline, rx.changed())
                .await
                .is_err()
            {
                break;
            }
        }
        let history = self.history.lock().expect("history lock");
        match history.iter().rev().find(|(i, _)| i.revision <= rv) {
            Some((i, _)) => Start::From(i.clone()),
            None => Start::TooOld(format!(
                "too old resource version: {rv} ({})",
                history.front().map(|(i, _)| i.revision).unwrap_or(0)
            )),
        }
    }
}

async fn watch_response(
    views: Arc<Views>,
    viewer: Viewer,
    selection: Selection,
    params: Params,
    table_as: Option<IncludeObject>,
    index: Arc<Index>,
) -> Result<Response, Failure> {
    let bad = |m: &str| status(StatusCode::BAD_REQUEST, "BadRequest", m.to_string());
    let send_initial = params.flag("sendInitialEvents");
    let bookmarks = params.flag("allowWatchBookmarks") == Some(true);
    let rv = params.get("resourceVersion");
    if send_initial == Some(true) {
        if params.get("resourceVersionMatch") != "NotOlderThan" {
            return Err(bad(
                "sendInitialEvents=true requires resourceVersionMatch=NotOlderThan",
            ));
        }
        if !bookmarks {
            return Err(bad(
                "sendInitialEvents=true requires allowWatchBookmarks=true",
            ));
        }
    } else if !params.get("resourceVersionMatch").is_empty() {
        return Err(bad(
            "resourceVersionMatch on a watch is allowed only with sendInitialEvents=true",
        ));
    }
    let start = match (send_initial, rv) {
        (Some(true), _) => Start::Everything { end_bookmark: true },
        (Some(false), "" | "0") => Start::From(index.clone()),
        (_, "" | "0") => Start::Everything {
            end_bookmark: false,
        },
        (_, rv) => match rv.parse::<u64>() {
            Ok(rv) => views.resume_from(rv).await,
            Err(_) => return Err(bad("resourceVersion must be a number this API returned")),
        },
    };
    let timeout = params
        .get("timeoutSeconds")
        .parse::<u64>()
        .ok()
        .filter(|t| *t > 0)
        .unwrap_or(1800);
    let resource = match selection {
        Selection::Projects(..) => "myprojects",
        Selection::Members(_) => "members",
        Selection::Usage(_) => "usage",
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<String>(64);
    tokio::spawn(async move {
        views.metrics.view_watches(1);
        let _open = OpenWatch(views.metrics.clone());
        let mut updates = views.index.subscribe();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
        let (mut sent, end_bookmark) = match start {
            Start::TooOld(message) => {
                let _ = tx.send(error_line(410, "Expired", &message)).await;
                return;
            }
            Start::Everything { end_bookmark } => (BTreeMap::new(), end_bookmark),
            Start::From(base) => (
                views
                    .select(&base, &viewer, &selection, views.clock.now())
                    .keyed(),
                false,
            ),
        };
        let mut current = views.index().unwrap_or(index);
        let mut last_mark = 0;
        let mut first = true;
        let mut tick = tokio::time::interval(Duration::from_secs(30));
        tick.tick().await;
        loop {
            let now = views.clock.now();
            let seen = views.select(&current, &viewer, &selection, now).keyed();
            for (kind, item) in diff(&sent, &seen) {
                if tx
                    .send(event_line(kind, &item, current.revision, table_as, now))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            sent = seen;
            if first && end_bookmark {
                if tx
                    .send(bookmark_line(resource, current.revision, true))
                    .await
                    .is_err()
                {
                    return;
                }
                last_mark = current.revision;
            }
            first = false;
            // Wake when the index changes, when one of the viewer's roles expires, for a
            // bookmark, or at the end.
            let expiry = current
                .next_change(&viewer, now)
                .map(|t| {
                    let ms = (t.as_millisecond() - now.as_millisecond()).clamp(0, 60_000) as u64;
                    tokio::time::Instant::now() + Duration::from_millis(ms + 1)
                })
                .unwrap_or(deadline);
            tokio::select! {
                changed = updates.changed() => {
                    if changed.is_err() { return; }
                    if let Some(i) = updates.borrow_and_update().clone() { current = i; }
                }
                _ = tokio::time::sleep_until(expiry.min(deadline)) => {
                    if tokio::time::Instant::now() >= deadline { return; }
                }
                _ = tick.tick(), if bookmarks => {
                    if current.revision > last_mark {
                        if tx.send(bookmark_line(resource, current.revision, false)).await.is_err() {
                            return;
                        }
                        last_mark = current.revision;
                    }
                }
                _ = tx.closed() => return,
            }
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|line| (Ok::<_, std::convert::Infallible>(line), rx))
    });
    Ok((
        StatusCode::OK,
        [("content-type", "application/json")],
        Body::from_stream(stream),
    )
        .into_response())
}

/// How long the views gather changes before the next build of the index, given how long the
/// last build took: at least 250 ms (at most four builds a second), and four times the last
/// build, so building takes at most a fifth of a core however large the index grows (a build
/// of 10,000 projects takes ~0.1 s: the views then follow changes within ~0.5 s).
pub fn gather_window(last_build: Duration) -> Duration {
    (last_build * 4).max(Duration::from_millis(250))
}

#[cfg(test)]
mod gather_tests {
    use super::*;

    #[test]
    fn the_index_is_built_at_most_four_times_a_second_and_with_at_most_a_fifth_of_a_core() {
        let ms = Duration::from_millis;
        for (last, want) in [
            (ms(0), ms(250)),
            (ms(16), ms(250)),
            (ms(62), ms(250)),
            (ms(63), ms(252)),
            (ms(126), ms(504)),
            (ms(1000), ms(4000)),
        ] {
            assert_eq!(gather_window(last), want, "after a build of {last:?}");
        }
    }

    #[test]
    fn a_watch_resumes_from_the_last_64_indexes_replaced_within_75_seconds() {
        let now = Instant::now() + Duration::from_secs(3600);
        let ago = |s: u64| now - Duration::from_secs(s);
        let burst = |n: usize, at: u64| vec![ago(at); n];
        for (published, gone, why) in [
            (vec![], 0, "nothing yet"),
            (vec![ago(3000)], 0, "the newest stays however old"),
            (burst(64, 10), 0, "64 recent"),
            (burst(70, 10), 6, "beyond 64"),
            (
                vec![ago(200), ago(100), ago(76)],
                2,
                "replaced more than 75 s ago",
            ),
            (
                vec![ago(200), ago(100), ago(74)],
                1,
                "replaced 74 s ago: kept",
            ),
            (
                [burst(70, 300), vec![ago(5)]].concat(),
                69,
                "a burst, then quiet, then one change: the burst's last and the newest",
            ),
            (
                [burst(70, 300), vec![ago(200)]].concat(),
                70,
                "long quiet after a burst: the newest alone",
            ),
        ] {
            assert_eq!(expired_history(&published, now), gone, "{why}");
        }
    }
}

#[cfg(test)]
mod tests;

/// The caches by name, for [`Index::update`].
struct CacheLookup<'a>(&'a Caches);

impl Lookup for CacheLookup<'_> {
    fn project(&self, name: &str) -> Option<Arc<crate::api::Project>> {
        self.0.projects.get(&ObjectRef::new(name))
    }
    fn customer(&self, name: &str) -> Option<Arc<crate::api::Customer>> {
        self.0.customers.get(&ObjectRef::new(name))
    }
    fn namespace(&self, name: &str) -> Option<Arc<k8s_openapi::api::core::v1::Namespace>> {
        self.0.namespaces.get(&ObjectRef::new(name))
    }
    fn memberships_in(&self, namespace: &str) -> Vec<Arc<crate::api::ProjectMembership>> {
        self.0.memberships_in(namespace)
    }
    fn usage(&self, name: &str) -> Option<Arc<crate::api::ProjectUsage>> {
        self.0.usages.get(&ObjectRef::new(name))
    }
    fn is_project_namespace(&self, namespace: &str) -> bool {
        self.0.is_project_namespace(namespace)
    }
}
