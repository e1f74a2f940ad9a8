//! The ProjectMembership reconciler: one RoleBinding per Active membership, removed at the exact
//! instant the membership expires.

use std::sync::Arc;
use std::time::Duration;

use futures::Future;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::ResourceExt;
use kube::runtime::Controller;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;

use super::queue::Queue;
use super::{Changes, Context, Error, apply};
use crate::api::{Project, ProjectMembership, ProjectMembershipStatus};
use crate::desired::access::{self, Grant};
use crate::desired::conditions::Conditions;
use crate::desired::namespace::{Standing, standing};
use crate::lifecycle;

pub const CONTROLLER: &str = "membership";

/// Builds the controller; the returned future runs it.
pub fn controller(
    ctx: &Arc<Context>,
    memberships: Changes<ProjectMembership>,
    projects: Changes<Project>,
    namespaces: Changes<Namespace>,
    role_bindings: Changes<RoleBinding>,
    concurrency: u16,
) -> impl Future<Output = ()> + use<> {
    let store = ctx.caches.memberships.clone();
    let in_namespace = move |ns: String| {
        store
            .state()
            .into_iter()
            .filter(|m| m.namespace().as_deref() == Some(ns.as_str()))
            .map(|m| ObjectRef::from_obj(m.as_ref()))
            .collect::<Vec<_>>()
    };
    let by_project = in_namespace.clone();
    let queue = Queue::<ProjectMembership>::new(ctx.metrics.clone(), CONTROLLER);
    let store = ctx.caches.memberships.clone();
    let controller = Controller::for_shared_stream(queue.own(memberships), store.clone())
        .with_config(super::controller_config(concurrency))
        .reconcile_all_on(queue.all_on(store, ctx.on_leadership_or_clock_jump()))
        .watches_shared_stream(role_bindings, queue.owners())
        .watches_shared_stream(
            super::queue::spec_changes(projects, ctx.caches.projects.clone()),
            queue.mapped(move |p: Arc<Project>| by_project(p.name_any())),
        )
        .watches_shared_stream(
            namespaces,
            queue.mapped(move |n: Arc<Namespace>| in_namespace(n.name_any())),
        );
    let ctx = ctx.clone();
    async move {
        let stream = controller.run(
            reconcile,
            |m, e, c| super::error_policy(CONTROLLER, m, e, c),
            ctx,
        );
        super::drain(queue, stream).await
    }
}

/// Whether the project of this namespace exists, owns the namespace (this very incarnation of
/// it) and is in use: only then does a membership bind anything. A membership in `kube-system`,
/// or in the namespace an earlier project of the same name left behind, binds nothing.
pub fn project_binds(caches: &super::Caches, namespace: &str) -> bool {
    let project = caches.projects.get(&ObjectRef::new(namespace));
    let ns = caches.namespaces.get(&ObjectRef::new(namespace));
    match (project, ns) {
        (Some(p), Some(n)) => {
            p.metadata.deletion_timestamp.is_none() && standing(&n, &p) == Standing::Owned
        }
        _ => false,
    }
}

async fn reconcile(m: Arc<ProjectMembership>, ctx: Arc<Context>) -> Result<Action, Error> {
    let Some(_timer) = ctx.begin(CONTROLLER, m.as_ref()) else {
        return Ok(Action::await_change());
    };
    let Some(ns) = m.namespace() else {
        return Ok(Action::await_change());
    };
    let now = ctx.clock.now();
    let siblings: Vec<Arc<ProjectMembership>> = ctx
        .caches
        .memberships
        .state()
        .into_iter()
        .filter(|o| o.namespace().as_deref() == Some(ns.as_str()))
        .collect();
    let sibling_refs: Vec<&ProjectMembership> = siblings.iter().map(|o| o.as_ref()).collect();
    let caches = &ctx.caches;
    let grant = access::evaluate(
        &m,
        &sibling_refs,
        project_binds(caches, &ns),
        now,
        &|n: &str| caches.is_project_namespace(n),
    );

    let binding_name = access::membership_binding_name(&m.name_any());
    let current = ctx
        .caches
        .role_bindings
        .get(&ObjectRef::new(&binding_name).within(&ns));
    if grant == Grant::Active {
        apply::ensure_role_binding(
            &ctx,
            current,
            &access::membership_binding(&m, &ctx.config.roles),
        )
        .await?;
    } else if let Some(rb) = current {
        apply::remove(&ctx, rb.as_ref()).await?;
    }
    // A pending invitation lets its subject accept it, and nothing else.
    let invitation = access::invitation_name(&m.name_any());
    let current_role = ctx
        .caches
        .roles
        .get(&ObjectRef::new(&invitation).within(&ns));
    let current_rb = ctx
        .caches
        .role_bindings
        .get(&ObjectRef::new(&invitation).within(&ns));
    if grant == Grant::Pending {
        let (role, rb) = access::invitation_access(&m);
        apply::ensure(&ctx, current_role, &role).await?;
        apply::ensure(&ctx, current_rb, &rb).await?;
    } else {
        if let Some(rb) = current_rb {
            apply::remove(&ctx, rb.as_ref()).await?;
        }
        if let Some(role) = current_role {
            apply::remove(&ctx, role.as_ref()).await?;
        }
    }

    // A membership being deleted keeps no access, whatever finalizers keep the object.
    if grant == Grant::Deleting {
        ctx.succeeded(CONTROLLER, m.as_ref());
        return Ok(Action::await_change());
    }
    let previous = m.status.clone().unwrap_or_default();
    let mut conds = Conditions::new(&previous.conditions, m.metadata.generation, now);
    let who = format!("{} {}", m.spec.subject.kind.as_str(), m.spec.subject.name);
    let role = m.spec.role.as_str();
    match &grant {
        Grant::Active => {
            conds.set(
                "Ready",
                true,
                "Bound",
                format!("{who} holds {role} through RoleBinding {binding_name}"),
            );
            conds.set(
                "Duplicate",
                false,
                "Unique",
                "no other membership gives this subject this role",
            );
        }
        Grant::Expired => {
            conds.set(
                "Ready",
                false,
                "Expired",
                format!(
                    "expired at {}; set spec.expirationTime later (or remove it) to restore",
                    m.spec
                        .expiration_time
                        .as_ref()
                        .map(|t| t.0.to_string())
                        .unwrap_or_default()
                ),
            );
        }
        Grant::Revoked => {
            conds.set(
                "Ready",
                false,
                "Revoked",
                "revoked when the project was deleted or moved; recover the project to restore it",
            );
        }
        Grant::Pending => {
            conds.set("Ready", false, "InvitationPending", format!("waiting for {who} to accept: they set the annotation tenancy.dev/accept: \"true\" on this membership"));
        }
        Grant::Duplicate(other) => {
            conds.set(
                "Ready",
                false,
                "Duplicate",
                format!("{who} already holds {role} through membership {other}; delete this one"),
            );
            conds.set(
                "Duplicate",
                true,
                "Duplicate",
                format!("duplicate of membership {other}"),
            );
        }
        Grant::Refused(why) => {
            conds.set(
                "Ready",
                false,
                "NotAllowed",
                format!("nothing is bound: {why}"),
            );
        }
        Grant::Deleting => unreachable!("returned above"),
        Grant::NoProject => {
            conds.set(
                "Ready",
                false,
                "ProjectNotFound",
                format!(
                    "namespace {ns} is not the namespace of an active project; nothing is bound"
                ),
            );
        }
    }
    let status = ProjectMembershipStatus {
        observed_generation: m.metadata.generation,
        phase: grant.phase().or(if matches!(grant, Grant::NoProject) {
            previous.phase
        } else {
            None
        }),
        role_binding: (grant == Grant::Active).then_some(binding_name),
        conditions: conds.finish(),
    };
    // The phase is also written by the soft delete and the recovery (Revoked, Pending, Active):
    // a status computed from an older cached copy must not undo theirs. On a conflict the newer
    // membership is on its way through the watch; reconcile again with it.
    match apply::ensure_status_of_version(&ctx, m.as_ref(), m.status.as_ref(), &status).await {
        Err(e) if apply::is_conflict(&e) => return Ok(Action::requeue(Duration::from_secs(1))),
        result => result?,
    };
    ctx.succeeded(CONTROLLER, m.as_ref());

    Ok(match (&grant, m.spec.expiration_time.as_ref()) {
        (Grant::Active, Some(t)) => Action::requeue(lifecycle::until(now, t.0)),
        _ => Action::requeue(Duration::from_secs(3600)),
    })
}
