//! The HTTPS server that feeds admission requests to the decision functions, with its TLS
//! certificate (generated and shared through a Secret, or mounted from cert-manager).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::rbac::v1::RoleBinding;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use kube::runtime::reflector::ObjectRef;
use kube::{Client, ResourceExt};
use serde::de::DeserializeOwned;

use super::{BindingNamespace, MembershipSnapshot, Policy, ProjectSnapshot, Requester, Verdict};
use crate::api::{Customer, Project, ProjectMembership};
use crate::desired::namespace::{Standing, standing};
use crate::desired::{annotations, labels};
use crate::ledger::{Ledger, LedgerError, allocation};
use crate::lifecycle::Clock;
use crate::lifecycle::archive::Archive;
use crate::metrics::Metrics;
use crate::watch::Caches;
use crate::watch::inventory::Inventory;

/// Where and how the webhook serves.
#[derive(Clone, Debug)]
pub struct WebhookOptions {
    pub addr: SocketAddr,
    /// A folder with `tls.crt` and `tls.key` (cert-manager); when absent a certificate is
    /// generated once and shared by all replicas through `secret_name`.
    pub cert_dir: Option<PathBuf>,
    /// The operator's namespace (Secret, ledgers).
    pub namespace: String,
    pub secret_name: String,
    /// DNS names and IPs for the generated certificate.
    pub hosts: Vec<String>,
    /// Webhook configurations (validating and mutating) whose caBundle the operator keeps.
    pub config_name: Option<String>,
}

/// The admission handler's state: what it reads (the operator's watch caches and inventory),
/// the ledger it reserves in, its clock and its metrics.
pub struct Admission {
    pub client: Client,
    pub caches: Caches,
    pub inventory: Arc<Inventory>,
    pub ledger: Arc<Ledger>,
    pub clock: Clock,
    pub metrics: Arc<Metrics>,
    pub policy: Policy,
}

/// The request's object as `T`, if it can be read (for mutation, which is best effort: an
/// object that cannot be read is refused by validation).
fn typed<T: DeserializeOwned>(obj: &Option<DynamicObject>) -> Option<T> {
    obj.as_ref()
        .and_then(|o| serde_json::to_value(o).ok())
        .and_then(|v| crate::api::read(&v).ok())
}

fn respond(req: &AdmissionRequest<DynamicObject>, verdict: Verdict) -> AdmissionResponse {
    let resp = AdmissionResponse::from(req);
    match verdict {
        Verdict::Allow => resp,
        Verdict::Deny {
            code,
            reason,
            message,
        } => {
            let mut resp = resp.deny(message);
            resp.result.code = code;
            resp.result.reason = reason.to_string();
            resp
        }
    }
}

impl Admission {
    fn requester(req: &AdmissionRequest<DynamicObject>) -> Requester {
        Requester {
            username: req.user_info.username.clone().unwrap_or_default(),
            groups: req.user_info.groups.clone().unwrap_or_default(),
        }
    }

    /// Of the namespaces of these ServiceAccount subjects, those that are projects'.
    fn project_namespaces<'a>(
        &self,
        subjects: impl IntoIterator<Item = &'a crate::api::Subject>,
    ) -> BTreeSet<String> {
        subjects
            .into_iter()
            .filter(|s| s.kind == crate::api::SubjectKind::ServiceAccount)
            .filter_map(|s| s.namespace.clone())
            .filter(|ns| self.caches.is_project_namespace(ns))
            .collect()
    }

    /// Whether the namespace of this name is not `project`'s own (an earlier project's, someone
    /// else's, or an archive): then its memberships make nobody the project's manager.
    fn namespace_not_owned(&self, project: Option<&Project>, name: &str) -> bool {
        let ns = self.caches.namespaces.get(&ObjectRef::new(name));
        let cached = self.caches.projects.get(&ObjectRef::new(name));
        match (ns, project.or(cached.as_deref())) {
            (Some(n), Some(p)) => standing(&n, p) != Standing::Owned,
            (Some(_), None) => true,
            (None, _) => false,
        }
    }

    fn project_snapshot(&self, project: &Project) -> ProjectSnapshot {
        let (name, customer) = (project.name_any(), project.spec.customer.clone());
        let (name, customer) = (name.as_str(), customer.as_str());
        let caches = &self.caches;
        let mut snap = ProjectSnapshot {
            customer: caches
                .customers
                .get(&ObjectRef::new(customer))
                .map(|c| c.as_ref().clone()),
            memberships: caches
                .memberships_in(name)
                .iter()
                .map(|m| m.as_ref().clone())
                .collect(),
            // What a namespace the project does not own holds is not the project's (a project
            // named `default` in Conflict is deleted at once).
            contents: caches
                .namespaces
                .get(&ObjectRef::new(name))
                .filter(|n| crate::desired::namespace::namespace_belongs_to(n, name))
                .map(|_| self.inventory.contents(name))
                .unwrap_or_default(),
            archive: caches
                .namespaces
                .get(&ObjectRef::new(name))
                .and_then(|n| Archive::of(&n)),
            namespace_not_owned: self.namespace_not_owned(Some(project), name),
            project_namespaces: BTreeSet::new(),
            checklist: None,
        };
        snap.checklist = snap
            .customer
            .as_ref()
            .and_then(|c| c.spec.project_checklist.as_deref())
            .and_then(|n| caches.checklists.get(&ObjectRef::new(n)))
            .map(|c| c.as_ref().clone());
        snap.project_namespaces = self.subject_namespaces(&snap);
        snap
    }

    fn subject_namespaces(&self, snap: &ProjectSnapshot) -> BTreeSet<String> {
        let holders: Vec<crate::api::Subject> = snap
            .customer
            .iter()
            .flat_map(|c| c.spec.owners.iter().chain(c.spec.support.iter()))
            .map(|h| h.subject())
            .collect();
        self.project_namespaces(
            holders
                .iter()
                .chain(snap.memberships.iter().map(|m| &m.spec.subject)),
        )
    }

    /// The request's old and new objects as `T` (see [`super::read_objects`]).
    fn objects<T: DeserializeOwned + kube::Resource<DynamicType = ()>>(
        &self,
        req: &AdmissionRequest<DynamicObject>,
    ) -> Result<(Option<T>, Option<T>), Verdict> {
        let [old, new] = [&req.old_object, &req.object]
            .map(|o| o.as_ref().and_then(|o| serde_json::to_value(o).ok()));
        super::read_objects::<T>(
            &T::kind(&()),
            old.as_ref(),
            new.as_ref(),
            &Self::requester(req),
            &self.policy,
        )
    }

    /// Decides a request on a Project; `warnings` gets the checklist guidance that applies to
    /// answers it gives (kubectl prints it).
    async fn validate_project(
        &self,
        req: &AdmissionRequest<DynamicObject>,
        warnings: &mut Vec<String>,
    ) -> Result<Verdict, String> {
        let (old, new) = match self.objects::<Project>(req) {
            Ok(objects) => objects,
            Err(verdict) => return Ok(verdict),
        };
        let Some(subject) = new.as_ref().or(old.as_ref()) else {
            return Ok(Verdict::Allow);
        };
        let mut snap = self.project_snapshot(subject);
        // The cache sees a Customer (or its Checklist) a moment after it is created; objects
        // applied together must not fail on that, so a miss is asked of the API.
        self.complete_snapshot(&mut snap, subject).await?;
        let now = self.clock.now();
        let verdict = super::decide_project(
            &req.operation,
            &Self::requester(req),
            old.as_ref(),
            new.as_ref(),
            &snap,
            &self.policy,
            now,
        );
        if !verdict.is_allowed() {
            return Ok(verdict);
        }
        // Guidance when answers are given (not on every later change of the project).
        if let Some(new) = &new
            && old
                .as_ref()
                .is_none_or(|o| o.spec.checklist_answers != new.spec.checklist_answers)
        {
            *warnings = super::checklist_warnings(new, &snap);
        }
        if req.operation == Operation::Delete
            && !req.dry_run
            && let Some(old) = &old
        {
            self.record_deleter(old, &Self::requester(req)).await?;
        }
        // Reserve the allocation when it is new or changed. Creating a name that is already
        // stored fails with AlreadyExists after admission: it reserves nothing, so the stored
        // project's reservation stays as it is.
        let exists = req.operation == Operation::Create
            && new
                .as_ref()
                .is_some_and(|n| self.caches.projects.contains(&ObjectRef::from_obj(n)));
        if let (Some(new), Some(customer), false) = (&new, &snap.customer, exists) {
            let changed = match &old {
                None => true,
                Some(old) => {
                    old.spec.customer != new.spec.customer || allocation(old) != allocation(new)
                }
            };
            if changed && new.metadata.deletion_timestamp.is_none() {
                let existing: Vec<Arc<Project>> = self
                    .caches
                    .projects_of(&new.spec.customer)
                    .into_iter()
                    .filter(|p| p.name_any() != new.name_any())
                    .collect();
                match self
                    .ledger
                    .reserve(customer, new, &existing, now, req.dry_run)
                    .await
                {
                    Ok(()) => {}
                    Err(LedgerError::Exhausted(msg)) => return Ok(Verdict::conflict(msg)),
                    Err(e) => return Err(e.to_string()),
                }
            }
        }
        Ok(verdict)
    }

    /// Records who deletes a project (annotation `tenancy.dev/deleted-by`, read by the soft
    /// delete into the archive) once the delete is admitted. A project without the soft-delete
    /// finalizer is gone at once: nothing to record.
    async fn record_deleter(&self, project: &Project, r: &Requester) -> Result<(), String> {
        if !project
            .finalizers()
            .iter()
            .any(|f| f == super::SOFT_DELETE_FINALIZER)
            || project.metadata.deletion_timestamp.is_some()
            || project.annotations().get(annotations::DELETED_BY) == Some(&r.username)
        {
            return Ok(());
        }
        let patch = serde_json::json!({
            "metadata": {"annotations": {annotations::DELETED_BY: r.username}}
        });
        match Api::<Project>::all(self.client.clone())
            .patch(
                &project.name_any(),
                &PatchParams {
                    field_manager: Some(crate::desired::FIELD_MANAGER.to_string()),
                    ..Default::default()
                },
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            Err(e) => Err(format!(
                "recording who deletes project {}: {e}",
                project.name_any()
            )),
        }
    }

    async fn validate_membership(
        &self,
        req: &AdmissionRequest<DynamicObject>,
    ) -> Result<Verdict, String> {
        let (old, new) = match self.objects::<ProjectMembership>(req) {
            Ok(objects) => objects,
            Err(verdict) => return Ok(verdict),
        };
        let ns = req.namespace.clone().unwrap_or_default();
        let caches = &self.caches;
        // A Project created a moment ago (a restore, or GitOps applying a project and its team
        // at once) may not be in the cache yet: asked of the API before refusing "no project".
        let project = match &new {
            Some(_) => {
                self.read_through::<Project>(&self.caches.projects, &ns)
                    .await?
            }
            None => caches
                .projects
                .get(&ObjectRef::new(&ns))
                .map(|p| p.as_ref().clone()),
        };
        let customer = match &project {
            Some(p) => {
                self.read_through::<Customer>(&caches.customers, &p.spec.customer)
                    .await?
            }
            None => None,
        };
        let memberships: Vec<ProjectMembership> = caches
            .memberships_in(&ns)
            .iter()
            .map(|m| m.as_ref().clone())
            .collect();
        let holders: Vec<crate::api::Subject> = customer
            .iter()
            .flat_map(|c| c.spec.owners.iter().chain(c.spec.support.iter()))
            .map(|h| h.subject())
            .collect();
        let project_namespaces = self.project_namespaces(
            holders
                .iter()
                .chain(memberships.iter().map(|m| &m.spec.subject))
                .chain(new.iter().map(|m| &m.spec.subject)),
        );
        let snap = MembershipSnapshot {
            namespace_not_owned: self.namespace_not_owned(project.as_ref(), &ns),
            project,
            customer,
            memberships,
            project_namespaces,
        };
        Ok(super::decide_membership(
            &req.operation,
            &Self::requester(req),
            old.as_ref(),
            new.as_ref(),
            &snap,
            &self.policy,
            self.clock.now(),
        ))
    }

    async fn validate_customer(
        &self,
        req: &AdmissionRequest<DynamicObject>,
    ) -> Result<Verdict, String> {
        let (old, new) = match self.objects::<Customer>(req) {
            Ok(objects) => objects,
            Err(verdict) => return Ok(verdict),
        };
        let name = new.as_ref().or(old.as_ref()).map(|c| c.name_any());
        let holders: Vec<crate::api::Subject> = new
            .iter()
            .flat_map(|c| c.spec.owners.iter().chain(c.spec.support.iter()))
            .map(|h| h.subject())
            .chain(
                old.iter()
                    .flat_map(|c| c.spec.owners.iter())
                    .map(|h| h.subject()),
            )
            .collect();
        let snap = super::CustomerSnapshot {
            projects: name
                .as_deref()
                .map(|n| self.caches.projects_of(n))
                .unwrap_or_default()
                .iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .map(|p| p.as_ref().clone())
                .collect(),
            project_namespaces: self.project_namespaces(&holders),
        };
        Ok(super::decide_customer(
            &req.operation,
            &Self::requester(req),
            old.as_ref(),
            new.as_ref(),
            &snap,
            &self.policy,
            self.clock.now(),
        ))
    }

    fn validate_role_binding(&self, req: &AdmissionRequest<DynamicObject>) -> Verdict {
        let [old, new] = [&req.old_object, &req.object].map(typed::<RoleBinding>);
        let ns = req.namespace.clone().unwrap_or_default();
        // The webhook is only asked about namespaces labelled as the operator's (tenants cannot
        // label namespaces), so one the cache has not seen yet is a new project's. A project
        // being deleted is archived from the moment the delete is admitted.
        let deleting = self
            .caches
            .projects
            .get(&ObjectRef::new(&ns))
            .is_some_and(|p| p.metadata.deletion_timestamp.is_some());
        let namespace = match self.caches.namespaces.get(&ObjectRef::new(&ns)) {
            _ if deleting => BindingNamespace::Archived,
            Some(n) if crate::lifecycle::archive::is_archived(&n) => BindingNamespace::Archived,
            Some(n) if !crate::desired::namespace::namespace_belongs_to(&n, &ns) => {
                BindingNamespace::Other
            }
            _ => BindingNamespace::Active,
        };
        super::decide_role_binding(
            &req.operation,
            &Self::requester(req),
            old.as_ref(),
            new.as_ref(),
            namespace,
            &self.policy,
        )
    }

    pub async fn validate(&self, req: &AdmissionRequest<DynamicObject>) -> AdmissionResponse {
        if !self.metrics.is_ready() {
            return respond(
                req,
                Verdict::Deny {
                    code: 503,
                    reason: "ServiceUnavailable",
                    message:
                        "tenancy-operator is starting (caches syncing); retry in a few seconds"
                            .into(),
                },
            );
        }
        let started = std::time::Instant::now();
        let mut warnings = Vec::new();
        let result = match req.kind.kind.as_str() {
            "Project" => self.validate_project(req, &mut warnings).await,
            "ProjectMembership" => self.validate_membership(req).await,
            "Customer" => self.validate_customer(req).await,
            "Checklist" => Ok(match self.objects::<crate::api::Checklist>(req) {
                Ok((_, new)) => super::decide_checklist(
                    &req.operation,
                    &Self::requester(req),
                    new.as_ref(),
                    &self.policy,
                ),
                Err(verdict) => verdict,
            }),
            "RoleBinding" => Ok(self.validate_role_binding(req)),
            other => Ok(Verdict::invalid(format!(
                "tenancy-operator does not validate {other}"
            ))),
        };
        let verdict = result.unwrap_or_else(|e| Verdict::Deny {
            code: 500,
            reason: "InternalError",
            message: e,
        });
        self.metrics
            .admission(&req.kind.kind, verdict_label(&verdict));
        self.metrics
            .admission_took(&req.kind.kind, started.elapsed());
        let mut resp = respond(req, verdict);
        if !warnings.is_empty() && resp.allowed {
            resp.warnings = Some(warnings);
        }
        resp
    }

    /// A cluster-scoped object from its cache, or, when the cache has not seen it yet (created a
    /// moment ago), from the API.
    async fn read_through<K>(
        &self,
        cache: &(dyn crate::watch::Lookup<K> + Sync),
        name: &str,
    ) -> Result<Option<K>, String>
    where
        K: kube::Resource<DynamicType = (), Scope = k8s_openapi::ClusterResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        if let Some(cached) = cache.lookup(&ObjectRef::new(name)) {
            return Ok(Some(cached.as_ref().clone()));
        }
        Api::<K>::all(self.client.clone())
            .get_opt(name)
            .await
            .map_err(|e| format!("reading {} {name:?}: {e}", K::kind(&()).to_lowercase()))
    }

    /// Reads from the API what the caches have not seen yet: a Customer, and its Checklist,
    /// created together with the Project (GitOps applies them at once).
    async fn complete_snapshot(
        &self,
        snap: &mut ProjectSnapshot,
        subject: &Project,
    ) -> Result<(), String> {
        if snap.customer.is_none() {
            snap.customer = self
                .read_through::<Customer>(&self.caches.customers, &subject.spec.customer)
                .await?;
            snap.project_namespaces = self.subject_namespaces(snap);
        }
        let wanted = snap
            .customer
            .as_ref()
            .and_then(|c| c.spec.project_checklist.clone());
        if let Some(name) = wanted
            && snap.checklist.is_none()
        {
            snap.checklist = self
                .read_through::<crate::api::Checklist>(&self.caches.checklists, &name)
                .await?;
        }
        Ok(())
    }

    pub fn mutate(&self, req: &AdmissionRequest<DynamicObject>) -> AdmissionResponse {
        let r = Self::requester(req);
        let ops = match req.kind.kind.as_str() {
            "Project" => match typed::<Project>(&req.object) {
                Some(new) => {
                    let old = typed::<Project>(&req.old_object);
                    let verdict = super::incarnation_verdict(
                        &req.operation,
                        &r,
                        old.as_ref(),
                        &new,
                        &self.policy,
                    );
                    if !verdict.is_allowed() {
                        return respond(req, verdict);
                    }
                    super::mutate_project(
                        &req.operation,
                        &r,
                        old.as_ref(),
                        &new,
                        &self.policy,
                        self.clock.now(),
                        &super::fresh_incarnation(),
                    )
                }
                None => Vec::new(),
            },
            "ProjectMembership" => match typed::<ProjectMembership>(&req.object) {
                Some(new) => super::mutate_membership(
                    &req.operation,
                    &r,
                    typed::<ProjectMembership>(&req.old_object).as_ref(),
                    &new,
                    &self.policy,
                ),
                None => Vec::new(),
            },
            _ => Vec::new(),
        };
        let resp = AdmissionResponse::from(req);
        if ops.is_empty() {
            return resp;
        }
        match resp.with_patch(json_patch::Patch(ops)) {
            Ok(r) => r,
            Err(e) => AdmissionResponse::from(req).deny(format!("cannot build patch: {e}")),
        }
    }
}

fn verdict_label(v: &Verdict) -> &'static str {
    match v {
        Verdict::Allow => "allowed",
        Verdict::Deny { code: 403, .. } => "forbidden",
        Verdict::Deny { code: 409, .. } => "conflict",
        Verdict::Deny { code: 422, .. } => "invalid",
        Verdict::Deny { .. } => "error",
    }
}

fn review_request(
    review: AdmissionReview<DynamicObject>,
) -> Result<AdmissionRequest<DynamicObject>, Box<AdmissionResponse>> {
    review
        .try_into()
        .map_err(|e: kube::core::admission::ConvertAdmissionReviewError| {
            Box::new(AdmissionResponse::invalid(e.to_string()))
        })
}

async fn validate_handler(
    State(adm): State<Arc<Admission>>,
    Json(review): Json<AdmissionReview<DynamicObject>>,
) -> Json<AdmissionReview<DynamicObject>> {
    let resp = match review_request(review) {
        Ok(req) => adm.validate(&req).await,
        Err(resp) => *resp,
    };
    Json(resp.into_review())
}

async fn mutate_handler(
    State(adm): State<Arc<Admission>>,
    Json(review): Json<AdmissionReview<DynamicObject>>,
) -> Json<AdmissionReview<DynamicObject>> {
    let resp = match review_request(review) {
        Ok(req) => adm.mutate(&req),
        Err(resp) => *resp,
    };
    Json(resp.into_review())
}

/// PEM certificate chain, key and CA of the serving certificate.
pub struct ServingCert {
    pub cert_pem: String,
    pub key_pem: String,
    pub ca_pem: Option<String>,
}

/// Loads the mounted certificate, or the shared generated one (creating it if this replica is
/// first).
pub async fn serving_cert(client: &Client, opts: &WebhookOptions) -> Result<ServingCert, String> {
    if let Some(dir) = &opts.cert_dir {
        let read = |f: &str| std::fs::read_to_string(dir.join(f));
        if let (Ok(cert_pem), Ok(key_pem)) = (read("tls.crt"), read("tls.key")) {
            return Ok(ServingCert {
                cert_pem,
                key_pem,
                ca_pem: read("ca.crt").ok(),
            });
        }
    }
    let api: Api<Secret> = Api::namespaced(client.clone(), &opts.namespace);
    let decode = |s: &Secret, k: &str| {
        s.data
            .as_ref()
            .and_then(|d| d.get(k))
            .map(|b| String::from_utf8_lossy(&b.0).into_owned())
    };
    for _ in 0..5 {
        if let Some(s) = api
            .get_opt(&opts.secret_name)
            .await
            .map_err(|e| e.to_string())?
            && let (Some(cert_pem), Some(key_pem), Some(ca)) = (
                decode(&s, "tls.crt"),
                decode(&s, "tls.key"),
                decode(&s, "ca.crt"),
            )
        {
            return Ok(ServingCert {
                cert_pem,
                key_pem,
                ca_pem: Some(ca),
            });
        }
        let pki =
            crate::tls::Pki::named("tenancy-operator-webhook-ca").map_err(|e| e.to_string())?;
        let hosts: Vec<&str> = opts.hosts.iter().map(String::as_str).collect();
        let cert = pki
            .serving_cert("tenancy-operator-webhook", &hosts)
            .map_err(|e| e.to_string())?;
        let data = BTreeMap::from([
            (
                "tls.crt".to_string(),
                ByteString(cert.cert_pem.clone().into_bytes()),
            ),
            (
                "tls.key".to_string(),
                ByteString(cert.key_pem.clone().into_bytes()),
            ),
            (
                "ca.crt".to_string(),
                ByteString(pki.ca_pem().as_bytes().to_vec()),
            ),
        ]);
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(opts.secret_name.clone()),
                namespace: Some(opts.namespace.clone()),
                labels: Some(BTreeMap::from([(
                    labels::MANAGED_BY.to_string(),
                    labels::MANAGED_BY_VALUE.to_string(),
                )])),
                ..Default::default()
            },
            type_: Some("kubernetes.io/tls".into()),
            data: Some(data),
            ..Default::default()
        };
        match api.create(&PostParams::default(), &secret).await {
            Ok(_) => {
                return Ok(ServingCert {
                    cert_pem: cert.cert_pem,
                    key_pem: cert.key_pem,
                    ca_pem: Some(pki.ca_pem().to_string()),
                });
            }
            // Another replica won the race: use theirs.
            Err(kube::Error::Api(e)) if e.code == 409 => continue,
            Err(e) => {
                return Err(format!(
                    "cannot store the webhook certificate in Secret {}/{}: {e}",
                    opts.namespace, opts.secret_name
                ));
            }
        }
    }
    Err("could not agree on a webhook certificate with the other replicas".into())
}

/// Keeps the CA bundle of the webhook configurations (`config`) and of the read API's
/// APIService (`apiservice`) equal to ours (checks every 30 s; writes only when one differs).
pub async fn keep_ca_bundle(
    client: Client,
    config: Option<String>,
    apiservice: Option<String>,
    ca_pem: String,
) {
    let ca = ByteString(ca_pem.into_bytes());
    loop {
        if let Some(name) = &config
            && let Err(e) = inject_ca_bundle(&client, name, &ca).await
        {
            tracing::warn!(error = %e, config = name, "cannot set the webhook configurations' caBundle; retrying");
        }
        if let Some(name) = &apiservice
            && let Err(e) = inject_into_apiservice(&client, name, &ca).await
        {
            tracing::warn!(error = %e, apiservice = name, "cannot set the APIService's caBundle; retrying");
        }
        tokio::time::sleep(Duration::from_secs(30)).await;
    }
}

async fn inject_ca_bundle(client: &Client, name: &str, ca: &ByteString) -> Result<(), kube::Error> {
    inject_into::<ValidatingWebhookConfiguration>(client, name, ca).await?;
    inject_into::<MutatingWebhookConfiguration>(client, name, ca).await
}

/// Sets the APIService's caBundle if it differs.
async fn inject_into_apiservice(
    client: &Client,
    name: &str,
    ca: &ByteString,
) -> Result<(), kube::Error> {
    use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService;
    let api: Api<APIService> = Api::all(client.clone());
    let Some(svc) = api.get_opt(name).await? else {
        return Ok(());
    };
    if svc.spec.as_ref().and_then(|s| s.ca_bundle.as_ref()) == Some(ca) {
        return Ok(());
    }
    api.patch(
        name,
        &PatchParams {
            field_manager: Some(crate::desired::FIELD_MANAGER.to_string()),
            ..Default::default()
        },
        &Patch::Merge(serde_json::json!({"spec": {"caBundle": ca}})),
    )
    .await?;
    tracing::info!(apiservice = name, "set the caBundle of the APIService");
    Ok(())
}

/// Sets the caBundle of every webhook of one configuration, if any differs.
async fn inject_into<K>(client: &Client, name: &str, ca: &ByteString) -> Result<(), kube::Error>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
{
    let api: Api<K> = Api::all(client.clone());
    let Some(cfg) = api.get_opt(name).await? else {
        return Ok(());
    };
    let value = serde_json::to_value(&cfg).map_err(kube::Error::SerdeError)?;
    let want = serde_json::to_value(ca).map_err(kube::Error::SerdeError)?;
    let hooks = value["webhooks"].as_array().cloned().unwrap_or_default();
    if hooks.iter().all(|w| w["clientConfig"]["caBundle"] == want) {
        return Ok(());
    }
    let patch: Vec<_> = hooks
        .iter()
        .map(|w| serde_json::json!({"name": w["name"], "clientConfig": {"caBundle": want}}))
        .collect();
    api.patch(
        name,
        &PatchParams {
            field_manager: Some(crate::desired::FIELD_MANAGER.to_string()),
            ..Default::default()
        },
        &Patch::Strategic(serde_json::json!({"webhooks": patch})),
    )
    .await?;
    tracing::info!(config = name, kind = %K::kind(&()), "set the caBundle of the webhook configuration");
    Ok(())
}

/// The webhook's routes: /validate and /mutate.
pub fn routes(adm: Arc<Admission>) -> Router {
    Router::new()
        .route("/validate", post(validate_handler))
        .route("/mutate", post(mutate_handler))
        .with_state(adm)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admission(metrics: Arc<Metrics>) -> Admission {
        let client = Client::try_from(kube::Config::new(
            "http://127.0.0.1:9".parse().expect("a URL"),
        ))
        .expect("a client that is never used");
        Admission {
            client: client.clone(),
            caches: crate::watch::Watches::new().caches(),
            inventory: Arc::new(Inventory::default()),
            ledger: Arc::new(Ledger::new(client, "tenancy-system".into())),
            clock: Clock::default(),
            metrics,
            policy: Policy::default(),
        }
    }

    fn project_create() -> AdmissionRequest<DynamicObject> {
        let review: AdmissionReview<DynamicObject> = serde_json::from_value(serde_json::json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {
                "uid": "1",
                "kind": {"group": "tenancy.dev", "version": "v1alpha1", "kind": "Project"},
                "resource": {"group": "tenancy.dev", "version": "v1alpha1", "resource": "projects"},
                "operation": "CREATE",
                "userInfo": {"username": "olga", "groups": ["system:authenticated"]},
                "object": {"apiVersion": "tenancy.dev/v1alpha1", "kind": "Project",
                    "metadata": {"name": "web"}, "spec": {"customer": "acme"}},
                "dryRun": false,
            }
        }))
        .expect("an AdmissionReview");
        review.try_into().expect("a request")
    }

    #[tokio::test]
    async fn the_webhook_decides_nothing_until_every_cache_has_listed() {
        let metrics = Arc::new(Metrics::default());
        let adm = admission(metrics.clone());
        let resp = adm.validate(&project_create()).await;
        assert!(!resp.allowed);
        assert_eq!(resp.result.code, 503, "{:?}", resp.result);
        assert!(resp.result.message.contains("caches syncing"));
        // Once ready it decides (here: the customer does not exist in the empty caches, and the
        // lookup of the API fails, so it answers an error, not 503).
        metrics.set_ready();
        let resp = adm.validate(&project_create()).await;
        assert_ne!(resp.result.code, 503, "{:?}", resp.result);
    }
}
