//! The ProjectMembership reconciler: one RoleBinding per Active membership, removed at the exact
//! instant the membership expires.

use std::sync::Arc;
use std::time::Duration;

use futures::Future;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::ResourceExt;
use kube::runtime::Controller;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;

use super::handle::{self, Handle};
use super::queue::Queue;
use super::{Changes, Context, Error, apply};
use crate::api::{Project, ProjectMembership};
use crate::desired::{self, access};

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
    let caches = ctx.caches.clone();
    let in_namespace = move |ns: String| {
        caches
            .memberships_in(&ns)
            .iter()
            .map(|m| handle::handle_ref(&ObjectRef::from_obj(m.as_ref())))
            .collect::<Vec<_>>()
    };
    let by_project = in_namespace.clone();
    let queue = Queue::<Handle<ProjectMembership>>::new(ctx.metrics.clone(), CONTROLLER);
    let (own, store) = handle::handles(memberships, ctx.caches.memberships.clone(), |_| true);
    let controller = Controller::for_shared_stream(queue.own(own), store.clone())
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
    match (
        caches.projects.get(&ObjectRef::new(namespace)),
        caches.namespaces.get(&ObjectRef::new(namespace)),
    ) {
        (Some(p), Some(n)) => crate::desired::namespace::binds(&p, &n),
        _ => false,
    }
}

async fn reconcile(
    handle: Arc<Handle<ProjectMembership>>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let Some(_timer) = ctx.begin(CONTROLLER, handle.as_ref()) else {
        return Ok(Action::await_change());
    };
    let Some(m) = handle::current(&ctx.caches.memberships, &handle) else {
        return Ok(Action::await_change());
    };
    if let Some(wait) = ctx.wait_for_caches() {
        return Ok(wait);
    }
    let Some(ns) = m.namespace() else {
        return Ok(Action::await_change());
    };
    let now = ctx.clock.now();
    let siblings: Vec<Arc<ProjectMembership>> = ctx.caches.memberships_in(&ns);
    let sibling_refs: Vec<&ProjectMembership> = siblings.iter().map(|o| o.as_ref()).collect();
    let caches = &ctx.caches;
    let grant = access::evaluate(
        &m,
        &sibling_refs,
        project_binds(caches, &ns),
        now,
        &|n: &str| caches.is_project_namespace(n),
    );

    let plan = desired::membership::plan(&m, &grant, &ctx.config.roles, now);

    // Its RoleBinding, and while it is a pending invitation the Role and RoleBinding that let
    // its subject accept it.
    let binding_name = access::membership_binding_name(&m.name_any());
    let current = caches
        .role_bindings
        .get(&ObjectRef::new(&binding_name).within(&ns));
    match (&plan.binding, current) {
        (Some(rb), current) => {
            apply::ensure_role_binding(&ctx, current, rb).await?;
        }
        (None, Some(rb)) => apply::remove(&ctx, rb.as_ref()).await?,
        (None, None) => {}
    }
    let invitation = access::invitation_name(&m.name_any());
    let current_role = caches.roles.get(&ObjectRef::new(&invitation).within(&ns));
    let current_rb = caches
        .role_bindings
        .get(&ObjectRef::new(&invitation).within(&ns));
    // The Role before its binding (RBAC checks the binder holds what the Role grants, and the
    // operator holds no `bind`), the binding before its Role when they go.
    match &plan.invitation {
        Some((role, rb)) => {
            apply::ensure(&ctx, current_role, role).await?;
            apply::ensure(&ctx, current_rb, rb).await?;
        }
        None => {
            apply::ensure_or_remove::<RoleBinding>(&ctx, current_rb, None).await?;
            apply::ensure_or_remove::<Role>(&ctx, current_role, None).await?;
        }
    }

    // The phase is also written by the soft delete and the recovery (Revoked, Pending, Active):
    // a status computed from an older cached copy must not undo theirs. On a conflict the newer
    // membership is on its way through the watch; reconcile again with it.
    if let Some(status) = &plan.status {
        match apply::ensure_status_of_version(&ctx, m.as_ref(), m.status.as_ref(), status).await {
            Err(e) if apply::is_conflict(&e) => {
                return Ok(Action::requeue(Duration::from_secs(1)));
            }
            result => result?,
        };
    }
    // After the status (a write to the object first would make that one conflict).
    if let Some(want) = plan.marker {
        apply::set_annotation(&ctx, m.as_ref(), desired::annotations::PHASE, want).await?;
    }
    ctx.succeeded(CONTROLLER, m.as_ref());
    Ok(ctx.come_back(m.as_ref(), plan.wake))
}
