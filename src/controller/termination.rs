//! Soft delete and recovery of projects (DESIGN §3).
//!
//! Delete: the finalizer freezes the namespace (`pods: 0`, `tenancy.dev/state=terminated`),
//! removes every binding, marks memberships Revoked, writes the archive annotation, releases
//! the quota reservation, then lets the Project go. Recover: a Project of the same name adopts
//! the archived namespace and brings back the team as `spec.recovery` says.

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Namespace, ResourceQuota};
use k8s_openapi::api::rbac::v1::RoleBinding;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;

use super::{Context, Error, apply};
use crate::api::project::RecoveryRecord;
use crate::api::{
    MembershipPhase, Project, ProjectMembership, ProjectMembershipStatus, ProjectStatus,
};
use crate::desired::access::{self, Grant};
use crate::desired::conditions::Conditions;
use crate::desired::namespace::{self as ns_desired, Freeze, NamespaceState, Standing};
use crate::desired::{FIELD_MANAGER, annotations};
use crate::lifecycle::archive::{self, Archive, Comeback, Remaining};
use kube::runtime::controller::Action;

use crate::api::vocabulary::SOFT_DELETE_FINALIZER as FINALIZER;

/// Adds the soft-delete finalizer to a project that has none: the mutating webhook gives every
/// new project its finalizer, so this is for one made while the webhook was not called (it was
/// down with `failurePolicy: Ignore`, or not installed yet). Answers the project as the patch
/// left it (`None` when it had the finalizer already).
pub async fn ensure_finalizer(ctx: &Context, project: &Project) -> Result<Option<Project>, Error> {
    if project.finalizers().iter().any(|f| f == FINALIZER) {
        return Ok(None);
    }
    let ops = if project.metadata.finalizers.is_none() {
        serde_json::json!([{"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]}])
    } else {
        serde_json::json!([{"op": "add", "path": "/metadata/finalizers/-", "value": FINALIZER}])
    };
    let patch: json_patch::Patch = serde_json::from_value(ops).map_err(Error::Serialization)?;
    let patched = Api::<Project>::all(ctx.client.clone())
        .patch(
            &project.name_any(),
            &apply::patch_params(),
            &Patch::Json::<()>(patch),
        )
        .await
        .map_err(Error::Kube)?;
    ctx.metrics.write("Project", "patch");
    Ok(Some(patched))
}

async fn release_finalizer(ctx: &Context, project: &Project) -> Result<(), Error> {
    let Some(i) = project.finalizers().iter().position(|f| f == FINALIZER) else {
        return Ok(());
    };
    let ops = serde_json::json!([
        {"op": "test", "path": format!("/metadata/finalizers/{i}"), "value": FINALIZER},
        {"op": "remove", "path": format!("/metadata/finalizers/{i}")},
    ]);
    let patch: json_patch::Patch = serde_json::from_value(ops).map_err(Error::Serialization)?;
    match Api::<Project>::all(ctx.client.clone())
        .patch(
            &project.name_any(),
            &apply::patch_params(),
            &Patch::Json::<()>(patch),
        )
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 404 => {}
        Err(e) => return Err(Error::Kube(e)),
    }
    ctx.metrics.write("Project", "patch");
    Ok(())
}

/// Sets a membership's phase (Revoked, Pending, Active) as the record of a lifecycle step.
pub(crate) async fn set_membership_phase(
    ctx: &Context,
    m: &ProjectMembership,
    phase: Option<MembershipPhase>,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> Result<(), Error> {
    let previous = m.status.clone().unwrap_or_default();
    let mut conds = Conditions::new(&previous.conditions, m.metadata.generation, now);
    // Active and Revoked are what was asked for (Ready); a pending invitation waits for its
    // subject (Reconciling), as the membership controller says.
    conds.set(
        "Ready",
        matches!(
            phase,
            Some(MembershipPhase::Active | MembershipPhase::Revoked)
        ),
        reason,
        message,
    );
    if phase == Some(MembershipPhase::Pending) {
        conds.set("Reconciling", true, reason, message);
    }
    let status = ProjectMembershipStatus {
        observed_generation: m.metadata.generation,
        phase,
        role_binding: None,
        conditions: conds.finish(),
    };
    apply::ensure_status(ctx, m, m.status.as_ref(), &status)
        .await
        .map(|_| ())
}

/// Runs the soft delete of a Project that is being deleted, then releases it.
///
/// Access goes first, and nothing after it can stop it: every RoleBinding in the namespace
/// (whoever made it) and the project's cluster roles are removed before anything else is
/// written. Then the namespace is archived, bindings made meanwhile are removed until none is
/// left, the namespace is frozen (`pods: 0`) and the memberships revoked. Each step is safe to
/// repeat: a pass that fails midway is retried from the start.
pub async fn soft_delete(ctx: &Context, project: &Project) -> Result<(), Error> {
    if !project.finalizers().iter().any(|f| f == FINALIZER) {
        return Ok(());
    }
    let name = project.name_any();
    // The cached Project may be stale: a reconcile queued while this soft delete ran would run
    // it again after the Project is gone, find every membership Revoked and overwrite the
    // archive with an empty team. Act only on the Project as the apiserver has it now.
    let live = Api::<Project>::all(ctx.client.clone())
        .get_opt(&name)
        .await
        .map_err(Error::Kube)?
        .filter(|p| p.uid() == project.uid() && p.finalizers().iter().any(|f| f == FINALIZER));
    let Some(live) = live else {
        return Ok(());
    };
    let project = &live;
    let now = ctx.clock.now();
    let namespace = ctx.caches.namespaces.get(&ObjectRef::new(&name));
    let standing = namespace
        .as_deref()
        .map(|n| ns_desired::standing(n, project));
    // Its own namespace, or its archive from an earlier pass of this soft delete.
    let ours = match (&standing, namespace.as_deref().and_then(Archive::of)) {
        (Some(Standing::Owned), _) => true,
        (Some(Standing::Archived), Some(a)) => a.project_uid == project.uid(),
        _ => false,
    };
    apply::remove_project_cluster_rbac(ctx, &name).await?;
    crate::fault::point("soft-delete/cluster-roles-removed");
    if ours {
        remove_every_binding(ctx, &name).await?;
        crate::fault::point("soft-delete/bindings-removed");
        let memberships = ctx.caches.memberships_in(&name);
        let no_sa_rule = |_: &str| false;
        let grants = access::grants(&memberships, true, now, &no_sa_rule);
        let kept: Vec<&ProjectMembership> = grants
            .iter()
            .filter(|(_, g)| matches!(g, Grant::Active | Grant::Pending))
            .map(|(m, _)| *m)
            .collect();
        // A soft delete retried after failing midway keeps the archive its first pass wrote
        // (by now some memberships are Revoked and would be missing from a new one).
        let archive = match namespace.as_deref().and_then(Archive::of) {
            Some(written) if written.project_uid == project.uid() => written,
            _ => {
                let mut archive = Archive::new(project.spec.clone(), now, &kept);
                archive.terminated_by = project.annotations().get(annotations::DELETED_BY).cloned();
                archive.retention_days = ctx
                    .caches
                    .customers
                    .get(&ObjectRef::new(&project.spec.customer))
                    .map(|c| crate::desired::customer::retention_days(&c));
                archive.project_uid = project.uid();
                archive.namespace_uid = namespace.as_ref().and_then(|n| n.uid());
                archive.within_budget()
            }
        };
        let mut ns = ns_desired::namespace_for(project, NamespaceState::Terminated, false);
        ns.annotations_mut()
            .insert(annotations::ARCHIVE.into(), archive.to_annotation());
        Api::<Namespace>::all(ctx.client.clone())
            .patch(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&ns),
            )
            .await
            .map_err(Error::Kube)?;
        ctx.metrics.write("Namespace", "patch");
        crate::fault::point("soft-delete/archived");
        // Bindings made while the first pass ran (before the webhook refused them: it does from
        // the moment the delete is admitted, on every replica once its cache has seen it) go too;
        // the namespace is released only once a pass finds none.
        remove_bindings_until_none_are_left(ctx, &name).await?;
        freeze(ctx, project).await?;
        crate::fault::point("soft-delete/frozen");

        for m in &memberships {
            if m.status.as_ref().and_then(|s| s.phase) != Some(MembershipPhase::Revoked) {
                set_membership_phase(
                    ctx,
                    m,
                    Some(MembershipPhase::Revoked),
                    "Revoked",
                    "revoked: the project was deleted; recovering it can restore this membership",
                    now,
                )
                .await?;
                crate::fault::point("soft-delete/membership-revoked");
            }
        }
        if let Some(n) = &namespace {
            // Once per soft delete, also when a crash repeats this pass.
            ctx.event_once(
                n.as_ref(),
                EventType::Normal,
                "SoftDeleted",
                format!(
                    "project {name} deleted: namespace kept frozen and archived with {} members",
                    archive.members.len()
                ),
                // A project incarnation is soft-deleted once (the archive's time would do too,
                // but a fresh one is finer than the stored one).
                &project.uid().unwrap_or_else(|| name.clone()),
            )
            .await;
        }
    }
    ctx.ledger
        .release(&project.spec.customer, &name)
        .await
        .map_err(Error::Ledger)?;
    crate::fault::point("soft-delete/ledger-released");
    release_finalizer(ctx, project).await
}

/// Removes every RoleBinding in a namespace, the operator's and everyone else's: after a soft
/// delete nobody but staff has access, whoever made the binding. Read from the API, not the
/// cache (which holds only the operator's own). Returns how many it removed.
async fn remove_every_binding(ctx: &Context, namespace: &str) -> Result<usize, Error> {
    let api = Api::<RoleBinding>::namespaced(ctx.client.clone(), namespace);
    let mut removed = 0;
    for rb in api
        .list_metadata(&Default::default())
        .await
        .map_err(Error::Kube)?
    {
        match api.delete(&rb.name_any(), &Default::default()).await {
            Ok(_) => {
                removed += 1;
                ctx.metrics.write("RoleBinding", "delete");
            }
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(Error::Kube(e)),
        }
    }
    Ok(removed)
}

/// Removes RoleBindings until a pass finds none (at most 50 passes, 100 ms apart; then the soft
/// delete fails and is retried, the Project kept).
async fn remove_bindings_until_none_are_left(ctx: &Context, namespace: &str) -> Result<(), Error> {
    for _ in 0..50 {
        if remove_every_binding(ctx, namespace).await? == 0 {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    Err(Error::Invalid(format!(
        "RoleBindings keep appearing in namespace {namespace} while its project is soft-deleted; retrying"
    )))
}

/// Freezes a soft-deleted project's namespace: its quota with `pods: 0`, built like every other
/// quota, and with no owner reference so it outlives the Project.
async fn freeze(ctx: &Context, project: &Project) -> Result<(), Error> {
    let limits = ctx
        .caches
        .customers
        .get(&ObjectRef::new(&project.spec.customer))
        .map(|c| crate::desired::quota::customer_limits(&c))
        .unwrap_or_default();
    let mut quota = ns_desired::resource_quota_for(project, Freeze::NoPods, &limits)
        .expect("a frozen namespace always has a quota");
    quota.metadata.owner_references = Some(vec![]);
    Api::<ResourceQuota>::namespaced(ctx.client.clone(), &project.name_any())
        .patch(
            ns_desired::QUOTA_NAME,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&quota),
        )
        .await
        .map_err(Error::Kube)?;
    ctx.metrics.write("ResourceQuota", "patch");
    Ok(())
}

/// When the project adopts an archived namespace: records what its recovery brings back (which
/// previous members are restored, invited, or skipped as expired) in `status.recovery` first,
/// so that from then on the project is known to be adopting that archive, then brings the team
/// back as `spec.recovery` says, and comes back to carry on. A pass that fails midway is
/// finished by the next (the plan sees a recorded member not yet restored or invited).
pub async fn recover(
    ctx: &Context,
    project: &Project,
    archive: &Archive,
    previous: &ProjectStatus,
) -> Result<Action, Error> {
    let name = project.name_any();
    let now = ctx.clock.now();
    let options = project.spec.recovery.clone().unwrap_or_default();
    let restore = options.restore_team_members.unwrap_or(false);
    let invite = options
        .send_invitations_to_previous_members
        .unwrap_or(false);
    let recorded = previous
        .recovery
        .clone()
        .filter(|r| r.terminated_at == archive.terminated_at);
    let mut record = recorded.clone().unwrap_or(RecoveryRecord {
        time: Time(now),
        terminated_at: archive.terminated_at.clone(),
        previous_customer: archive.customer.clone(),
        restored: vec![],
        invited: vec![],
        skipped_expired: vec![],
    });
    let memberships = ctx.caches.memberships_in(&name);
    if recorded.is_none() {
        for (member, comeback) in archive::comebacks(archive, &memberships, restore, invite, now) {
            match comeback {
                Comeback::Restore => record.restored.push(member),
                Comeback::Invite => record.invited.push(member),
                Comeback::SkipExpired => record.skipped_expired.push(member),
            }
        }
        // Sent before the record, once per recovery: a pass after a crash anywhere later finds
        // the record and would not know the Event was never sent.
        ctx.event_once(
            project,
            EventType::Normal,
            "Recovered",
            format!(
                "recovered the project deleted at {}: {} restored, {} invited, {} expired",
                archive.terminated_at.0,
                record.restored.len(),
                record.invited.len(),
                record.skipped_expired.len()
            ),
            &format!(
                "{}/{}",
                project.uid().unwrap_or_default(),
                archive.terminated_at.0
            ),
        )
        .await;
        let status = ProjectStatus {
            recovery: Some(record.clone()),
            ..previous.clone()
        };
        match apply::ensure_status_of_version(ctx, project, project.status.as_ref(), &status).await
        {
            Err(e) if apply::is_conflict(&e) => {
                return Ok(Action::requeue(std::time::Duration::from_secs(1)));
            }
            other => other?,
        };
        crate::fault::point("recover/recorded");
    }
    // The team, from the memberships still there (Revoked) or, where they are gone (a restore
    // from a backup), from the archive itself.
    let api = Api::<ProjectMembership>::namespaced(ctx.client.clone(), &name);
    for step in archive::remaining(&record, archive, &name, &memberships) {
        let (m, phase) = match step {
            Remaining::Phase(m, phase) => (m.as_ref().clone(), phase),
            Remaining::Create(m, phase) => match api
                .create(
                    &PostParams {
                        field_manager: Some(FIELD_MANAGER.into()),
                        ..Default::default()
                    },
                    &m,
                )
                .await
            {
                Ok(created) => {
                    ctx.metrics.write("ProjectMembership", "create");
                    (created, phase)
                }
                // Made by an earlier pass the cache has not shown yet: the next pass sees it.
                Err(kube::Error::Api(e)) if e.code == 409 => continue,
                Err(e) => return Err(Error::Kube(e)),
            },
        };
        if phase == MembershipPhase::Active {
            set_membership_phase(
                ctx,
                &m,
                Some(MembershipPhase::Active),
                "Restored",
                "restored on recovery",
                now,
            )
            .await?;
            crate::fault::point("recover/member-restored");
        } else {
            let msg = format!(
                "invited again on recovery: {} {} accepts by setting the annotation tenancy.dev/accept: \"true\" on this membership",
                m.spec.subject.kind.as_str(),
                m.spec.subject.name
            );
            set_membership_phase(
                ctx,
                &m,
                Some(MembershipPhase::Pending),
                "InvitationPending",
                &msg,
                now,
            )
            .await?;
        }
    }
    Ok(Action::requeue(std::time::Duration::from_millis(100)))
}
