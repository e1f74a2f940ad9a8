//! Writing children: server-side apply only when the cached object differs from the desired one,
//! so a reconcile with nothing to change makes no write request.

use std::fmt::Debug;
use std::sync::Arc;

use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::core::ApiResource;
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{Context, Error};
use crate::desired::FIELD_MANAGER;
use crate::desired::quantity::same_quantity;

/// Paths (dot-separated, from the object root) of maps the operator owns whole: a key missing
/// from the desired map must also be missing from the live one.
const OWNED_MAPS: &[&str] = &["spec.hard"];

/// Whether `actual` already holds everything in `desired`.
///
/// Maps: every desired key is present and covered (extra keys are someone else's, or defaults),
/// except the maps in [`OWNED_MAPS`], whose key sets must match. Lists under `metadata` (owner
/// references, finalizers): every desired item is covered by some live item. Other lists: same
/// length, item by item. Strings that are both quantities compare by value (`1000m` == `1`).
pub fn covers(actual: &Value, desired: &Value) -> bool {
    covers_at(actual, desired, "")
}

fn covers_at(actual: &Value, desired: &Value, path: &str) -> bool {
    match (actual, desired) {
        (_, Value::Null) => true,
        (Value::Null, Value::Array(d)) => d.is_empty(),
        (Value::Null, Value::Object(d)) => d.is_empty(),
        (Value::Object(a), Value::Object(d)) => {
            if OWNED_MAPS.contains(&path) && a.keys().any(|k| !d.contains_key(k)) {
                return false;
            }
            d.iter().all(|(k, dv)| {
                let child = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match a.get(k) {
                    Some(av) => covers_at(av, dv, &child),
                    None => {
                        dv.is_null()
                            || dv.as_object().is_some_and(|o| o.is_empty())
                            || dv.as_array().is_some_and(|l| l.is_empty())
                    }
                }
            })
        }
        (Value::Array(a), Value::Array(d)) if path.starts_with("metadata.") => d
            .iter()
            .all(|dv| a.iter().any(|av| covers_at(av, dv, path))),
        (Value::Array(a), Value::Array(d)) => {
            a.len() == d.len() && a.iter().zip(d).all(|(av, dv)| covers_at(av, dv, path))
        }
        (Value::String(a), Value::String(d)) => a == d || same_quantity(a, d),
        (Value::Number(a), Value::String(d)) | (Value::String(d), Value::Number(a)) => {
            same_quantity(&a.to_string(), d)
        }
        (a, d) => a == d,
    }
}

fn dynamic_api<K: Resource<DynamicType = ()>>(
    ctx: &Context,
    namespace: Option<&str>,
) -> Api<DynamicObject> {
    let ar = ApiResource::erase::<K>(&());
    match namespace {
        Some(ns) => Api::namespaced_with(ctx.client.clone(), ns, &ar),
        None => Api::all_with(ctx.client.clone(), &ar),
    }
}

/// The kinds whose missing objects are created with a plain create instead of an apply: a
/// server-side apply costs kube-apiserver ~60 % more CPU than a create (1.4 ms more per object
/// in `make bench`), and most of the operator's writes are creates. Later changes are applied
/// as before (forced, same field manager), which takes over every field the create set. Only
/// kinds whose fields the operator never needs an apply to *remove* qualify: their lists
/// (subjects, rules, limits) are replaced whole by an apply, their roleRef cannot change, and
/// their labels and owner reference are the same for their lifetime. Not ResourceQuotas (a
/// resource dropped from `spec.hard` must go) nor Namespaces (adopted by another project
/// incarnation: the owner reference is replaced).
fn created_plainly(kind: &str) -> bool {
    matches!(
        kind,
        "RoleBinding" | "Role" | "ClusterRole" | "ClusterRoleBinding" | "LimitRange"
    )
}

/// Applies `desired` unless `current` (from a watch cache) already covers it, or, missing from
/// the cache, it was just made as desired now (`super::expect`). Returns whether a write was made.
pub async fn ensure<K>(ctx: &Context, current: Option<Arc<K>>, desired: &K) -> Result<bool, Error>
where
    K: Resource<DynamicType = ()> + Serialize + DeserializeOwned + Clone + Debug,
{
    let want = serde_json::to_value(desired).map_err(Error::Serialization)?;
    let name = desired.name_any();
    let key = super::expect::key(&K::kind(&()), desired.meta().namespace.as_deref(), &name);
    // Only a child missing from its cache is compared with what was made (no digest otherwise).
    let digest = current.is_none().then(|| super::expect::digest(&want));
    match &current {
        Some(cur) => {
            ctx.expected.seen(&key);
            let have = serde_json::to_value(cur.as_ref()).map_err(Error::Serialization)?;
            if covers(&have, &want) {
                return Ok(false);
            }
        }
        None if digest
            .is_some_and(|d| ctx.expected.expected(&key, d, std::time::Instant::now())) =>
        {
            return Ok(false);
        }
        None => {}
    }
    let made = |ctx: &Context| {
        if let Some(digest) = digest {
            let owner = desired.owner_references().first().map(|o| o.uid.clone());
            ctx.expected
                .made(key.clone(), owner, digest, std::time::Instant::now());
        }
    };
    let api = dynamic_api::<K>(ctx, desired.meta().namespace.as_deref());
    if current.is_none() && created_plainly(&K::kind(&())) {
        let object: DynamicObject =
            serde_json::from_value(want.clone()).map_err(Error::Serialization)?;
        let params = kube::api::PostParams {
            field_manager: Some(FIELD_MANAGER.to_string()),
            ..Default::default()
        };
        match api.create(&params, &object).await {
            Ok(_) => {
                ctx.metrics.write(K::kind(&()).as_ref(), "create");
                made(ctx);
                return Ok(true);
            }
            // The cache had not seen it yet: applied below, as any change is.
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(Error::Kube(e)),
        }
    }
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&want),
    )
    .await
    .map_err(Error::Kube)?;
    ctx.metrics.write(
        K::kind(&()).as_ref(),
        if current.is_some() { "patch" } else { "create" },
    );
    made(ctx);
    Ok(true)
}

/// Patch parameters for the operator's patches that are not server-side applies (JSON and merge
/// patches of finalizers, replica counts, audit annotations): the writes still carry the
/// operator's field manager, so managedFields say who owns what.
pub fn patch_params() -> PatchParams {
    PatchParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..Default::default()
    }
}

/// Applies `desired` when there is one (see [`ensure`]), else removes `current`.
pub async fn ensure_or_remove<K>(
    ctx: &Context,
    current: Option<Arc<K>>,
    desired: Option<&K>,
) -> Result<(), Error>
where
    K: Resource<DynamicType = ()> + Serialize + DeserializeOwned + Clone + Debug,
{
    match (desired, current) {
        (Some(d), current) => ensure(ctx, current, d).await.map(|_| ()),
        (None, Some(c)) => remove(ctx, c.as_ref()).await,
        (None, None) => Ok(()),
    }
}

/// Like [`ensure`] for a RoleBinding, whose `roleRef` cannot change: when the role differs (a
/// membership's role changed), the binding is deleted and made again.
pub async fn ensure_role_binding(
    ctx: &Context,
    current: Option<Arc<k8s_openapi::api::rbac::v1::RoleBinding>>,
    desired: &k8s_openapi::api::rbac::v1::RoleBinding,
) -> Result<bool, Error> {
    let current = match current {
        Some(c) if c.role_ref != desired.role_ref => {
            remove(ctx, c.as_ref()).await?;
            None
        }
        other => other,
    };
    ensure(ctx, current, desired).await
}

/// Applies ClusterRoles and ClusterRoleBindings that differ from the cached ones (a binding of
/// nobody is not made: [`crate::desired::access::binding_written`]).
pub async fn ensure_cluster_rbac(
    ctx: &Context,
    roles: &[k8s_openapi::api::rbac::v1::ClusterRole],
    bindings: &[k8s_openapi::api::rbac::v1::ClusterRoleBinding],
) -> Result<(), Error> {
    use kube::runtime::reflector::ObjectRef;
    // Roles before the bindings that name them (binding a role the operator does not hold needs
    // the role to exist); each group at once, so a reconcile waits two round trips, not four.
    futures::future::try_join_all(roles.iter().map(|role| {
        ensure(
            ctx,
            ctx.caches
                .cluster_roles
                .get(&ObjectRef::new(&role.name_any())),
            role,
        )
    }))
    .await?;
    futures::future::try_join_all(bindings.iter().filter_map(|binding| {
        let name = binding.name_any();
        let current = ctx.caches.cluster_role_bindings.get(&ObjectRef::new(&name));
        // One just made and not in its cache yet exists all the same: emptied like any other.
        let exists = current.is_some()
            || ctx.expected.made_recently(
                &super::expect::key(
                    &k8s_openapi::api::rbac::v1::ClusterRoleBinding::kind(&()),
                    None,
                    &name,
                ),
                std::time::Instant::now(),
            );
        crate::desired::access::binding_written(binding, exists)
            .then(|| ensure(ctx, current, binding))
    }))
    .await?;
    Ok(())
}

/// Deletes the per-project ClusterRoles and ClusterRoleBindings of a project: the two of each it
/// makes (`desired::access::project_access`), by name, if they are labelled as its own.
pub async fn remove_project_cluster_rbac(ctx: &Context, project: &str) -> Result<(), Error> {
    use crate::desired::access::{project_manager_role_name, project_reader_role_name};
    use kube::runtime::reflector::ObjectRef;
    let ours = |l: &std::collections::BTreeMap<String, String>| {
        l.get(crate::desired::labels::PROJECT).map(String::as_str) == Some(project)
    };
    for name in [
        project_reader_role_name(project),
        project_manager_role_name(project),
    ] {
        if let Some(role) = ctx.caches.cluster_roles.get(&ObjectRef::new(&name))
            && ours(role.labels())
        {
            remove(ctx, role.as_ref()).await?;
        }
        if let Some(binding) = ctx.caches.cluster_role_bindings.get(&ObjectRef::new(&name))
            && ours(binding.labels())
        {
            remove(ctx, binding.as_ref()).await?;
        }
    }
    Ok(())
}

/// Deletes an object the operator made that is no longer desired. Gone already is fine.
pub async fn remove<K>(ctx: &Context, obj: &K) -> Result<(), Error>
where
    K: Resource<DynamicType = ()>,
{
    let name = obj.name_any();
    let namespace = obj.meta().namespace.as_deref();
    // Made again later, it is written whatever was made before.
    ctx.expected
        .seen(&super::expect::key(&K::kind(&()), namespace, &name));
    let api = dynamic_api::<K>(ctx, namespace);
    match api.delete(&name, &DeleteParams::background()).await {
        Ok(_) => {
            ctx.metrics.write(K::kind(&()).as_ref(), "delete");
            Ok(())
        }
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(Error::Kube(e)),
    }
}

/// Sets (or, with `None`, removes) one annotation of an object with a merge patch, leaving the
/// rest of its metadata as it is.
pub async fn set_annotation<K>(
    ctx: &Context,
    obj: &K,
    key: &str,
    value: Option<&str>,
) -> Result<(), Error>
where
    K: Resource<DynamicType = ()>,
{
    let patch = serde_json::json!({"metadata": {"annotations": {key: value}}});
    dynamic_api::<K>(ctx, obj.meta().namespace.as_deref())
        .patch(
            &obj.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .map_err(Error::Kube)?;
    ctx.metrics.write(K::kind(&()).as_ref(), "patch");
    Ok(())
}

/// The kinds whose status the operator writes, with the watch cache that holds them.
pub trait Cached: Resource<DynamicType = ()> + Clone + Sized + 'static {
    fn store(caches: &crate::watch::Caches) -> &(dyn crate::watch::Lookup<Self> + Sync);
}

macro_rules! cached {
    ($($kind:ty => $field:ident),* $(,)?) => {
        $(impl Cached for $kind {
            fn store(caches: &crate::watch::Caches) -> &(dyn crate::watch::Lookup<Self> + Sync) {
                &caches.$field
            }
        })*
    };
}

cached! {
    crate::api::Project => projects,
    crate::api::ProjectMembership => memberships,
    crate::api::Customer => customers,
    crate::api::Checklist => checklists,
}

/// How long a status write waits for its own watch cache to hold what it wrote.
const CACHE_CATCH_UP: std::time::Duration = std::time::Duration::from_millis(300);

/// Waits (at most [`CACHE_CATCH_UP`]) until the cache holds `obj` at `version` or later. The next
/// reconcile of the object, often asked for by the very children this one wrote, then starts
/// from what was written: from an older cached copy it would compute the same status again and
/// write it onto a version that no longer is (409, and a second try a second later).
/// Resource versions are compared as the numbers kube-apiserver gives (etcd revisions); one
/// that is not a number is waited for exactly.
async fn until_cached<K: Cached>(
    store: &(dyn crate::watch::Lookup<K> + Sync),
    obj: &K,
    version: &str,
) {
    let at = kube::runtime::reflector::ObjectRef::from_obj(obj);
    let deadline = tokio::time::Instant::now() + CACHE_CATCH_UP;
    while tokio::time::Instant::now() < deadline {
        let cached = store
            .lookup(&at)
            .and_then(|o| o.meta().resource_version.clone());
        if cached.as_deref().is_some_and(|c| caught_up(c, version)) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// Whether a cached resource version `cached` is `written` or later.
fn caught_up(cached: &str, written: &str) -> bool {
    match (cached.parse::<u64>(), written.parse::<u64>()) {
        (Ok(c), Ok(w)) => c >= w,
        _ => cached == written,
    }
}

/// The JSON merge patch (RFC 7396) that turns `from` into `to`: new and changed keys with their
/// values, keys `to` no longer has as `null`; objects are compared key by key, anything else
/// (lists, strings, numbers) is replaced whole. Statuses are written this way rather than by
/// server-side apply, which costs kube-apiserver markedly more CPU per write (`make bench`);
/// the `null`s do what an apply does to fields its manager stops setting.
pub fn merge_diff(from: &Value, to: &Value) -> Value {
    match (from, to) {
        (Value::Object(f), Value::Object(t)) => {
            let mut out = serde_json::Map::new();
            for (k, tv) in t {
                match f.get(k) {
                    Some(fv) if fv == tv => {}
                    Some(fv) if fv.is_object() && tv.is_object() => {
                        out.insert(k.clone(), merge_diff(fv, tv));
                    }
                    _ => {
                        out.insert(k.clone(), tv.clone());
                    }
                }
            }
            for k in f.keys().filter(|k| !t.contains_key(*k)) {
                out.insert(k.clone(), Value::Null);
            }
            Value::Object(out)
        }
        _ => to.clone(),
    }
}

/// Writes a status (as a merge patch from the cached one, see [`merge_diff`]), unless it equals
/// the one already there.
pub async fn ensure_status<K, S>(
    ctx: &Context,
    obj: &K,
    current: Option<&S>,
    status: &S,
) -> Result<bool, Error>
where
    K: Resource<DynamicType = ()> + Cached,
    S: Serialize + PartialEq,
{
    write_status(ctx, obj, current, status, None).await
}

/// Like [`ensure_status`], but only onto the version of `obj` the status was computed from: when
/// someone else changed the object since (e.g. the soft delete revoked a membership while this
/// reconcile read the cached copy), the apiserver answers 409 Conflict instead of the stale
/// status overwriting the newer one. [`is_conflict`] tells that error apart.
pub async fn ensure_status_of_version<K, S>(
    ctx: &Context,
    obj: &K,
    current: Option<&S>,
    status: &S,
) -> Result<bool, Error>
where
    K: Resource<DynamicType = ()> + Cached,
    S: Serialize + PartialEq,
{
    let version = obj.meta().resource_version.clone();
    write_status(ctx, obj, current, status, version).await
}

/// Whether an error is the apiserver's 409 Conflict (a precondition or version no longer holds).
pub fn is_conflict(err: &Error) -> bool {
    matches!(err, Error::Kube(kube::Error::Api(e)) if e.code == 409)
}

async fn write_status<K, S>(
    ctx: &Context,
    obj: &K,
    current: Option<&S>,
    status: &S,
    resource_version: Option<String>,
) -> Result<bool, Error>
where
    K: Resource<DynamicType = ()> + Cached,
    S: Serialize + PartialEq,
{
    if current == Some(status) {
        return Ok(false);
    }
    let was = match current {
        Some(c) => serde_json::to_value(c).map_err(Error::Serialization)?,
        None => Value::Object(Default::default()),
    };
    let want = serde_json::to_value(status).map_err(Error::Serialization)?;
    let diff = merge_diff(&was, &want);
    if diff.as_object().is_some_and(|d| d.is_empty()) {
        return Ok(false);
    }
    tracing::debug!(
        kind = %K::kind(&()),
        name = %obj.name_any(),
        first = current.is_none(),
        change = %diff,
        "writing status"
    );
    let mut patch = serde_json::json!({"status": diff});
    if let Some(v) = resource_version {
        // In a merge patch, a resourceVersion is a precondition.
        patch["metadata"] = serde_json::json!({"resourceVersion": v});
    }
    let api = dynamic_api::<K>(ctx, obj.meta().namespace.as_deref());
    let written = api
        .patch_status(&obj.name_any(), &patch_params(), &Patch::Merge(&patch))
        .await
        .map_err(Error::Kube)?;
    if let Some(version) = written.metadata.resource_version.as_deref() {
        until_cached(K::store(&ctx.caches), obj, version).await;
    }
    ctx.metrics
        .write(&format!("{}/status", K::kind(&())), "patch");
    Ok(true)
}

/// Writes usage records in order: a record with a resourceVersion replaces exactly that version
/// (another writer's newer accrual answers 409 and nothing is counted twice), one without is
/// created (409 if it exists already). Returns false on a conflict: the caller tries again from
/// fresher caches.
pub async fn write_usage(
    ctx: &Context,
    records: &[crate::api::ProjectUsage],
) -> Result<bool, Error> {
    let api: Api<crate::api::ProjectUsage> = Api::all(ctx.client.clone());
    let pp = kube::api::PostParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..Default::default()
    };
    for r in records {
        let result = match r.metadata.resource_version {
            Some(_) => api.replace(&r.name_any(), &pp, r).await.map(|_| "update"),
            None => api.create(&pp, r).await.map(|_| "create"),
        };
        match result {
            Ok(verb) => {
                ctx.metrics.write("ProjectUsage", verb);
                crate::fault::point("usage/record-written");
            }
            Err(kube::Error::Api(e)) if e.code == 409 => return Ok(false),
            Err(e) => return Err(Error::Kube(e)),
        }
    }
    Ok(true)
}

#[cfg(test)]
mod merge_diff_tests {
    use super::merge_diff;
    use serde_json::json;

    #[test]
    fn a_cached_version_is_caught_up_at_the_written_one_or_later() {
        use super::caught_up;
        let cases = [
            ("same", "120", "120", true),
            ("later (someone wrote after us)", "131", "120", true),
            (
                "earlier: the watch has not brought it yet",
                "119",
                "120",
                false,
            ),
            ("numbers, not strings: 99 < 100", "99", "100", false),
            ("not numbers: exactly", "abc", "abc", true),
            ("not numbers, different", "abd", "abc", false),
        ];
        for (what, cached, written, want) in cases {
            assert_eq!(caught_up(cached, written), want, "{what}");
        }
    }

    #[test]
    fn a_merge_patch_from_the_cached_status_sets_what_changed_and_removes_what_went() {
        let cases = [
            (
                "equal: nothing",
                json!({"a": 1, "b": {"c": 2}}),
                json!({"a": 1, "b": {"c": 2}}),
                json!({}),
            ),
            (
                "new key",
                json!({}),
                json!({"phase": "Active"}),
                json!({"phase": "Active"}),
            ),
            (
                "changed scalar",
                json!({"phase": "Pending"}),
                json!({"phase": "Active"}),
                json!({"phase": "Active"}),
            ),
            (
                "gone key: null",
                json!({"phase": "Active", "suspension": {"at": "x"}}),
                json!({"phase": "Active"}),
                json!({"suspension": null}),
            ),
            (
                "nested map: only the change, gone keys null",
                json!({"cost": {"cpu": "1", "memory": "2"}}),
                json!({"cost": {"cpu": "3"}}),
                json!({"cost": {"cpu": "3", "memory": null}}),
            ),
            (
                "list replaced whole",
                json!({"conditions": [{"type": "Ready"}, {"type": "X"}]}),
                json!({"conditions": [{"type": "Ready"}]}),
                json!({"conditions": [{"type": "Ready"}]}),
            ),
            (
                "object becomes scalar",
                json!({"a": {"b": 1}}),
                json!({"a": 2}),
                json!({"a": 2}),
            ),
        ];
        for (what, from, to, want) in cases {
            assert_eq!(merge_diff(&from, &to), want, "{what}");
        }
    }

    /// Applying the diff (RFC 7396) to `from` gives `to`, for any pair of these shapes.
    #[test]
    fn the_patch_applied_to_the_cached_status_gives_the_desired_one() {
        let shapes = [
            json!({}),
            json!({"phase": "Active", "members": {"active": 3}}),
            json!({"phase": "Expired", "members": {"active": 1, "pending": 2}, "suspension": {"at": "t"}}),
            json!({"conditions": [{"type": "Ready", "status": "True"}], "members": {}}),
        ];
        for from in &shapes {
            for to in &shapes {
                let mut applied = from.clone();
                json_patch::merge(&mut applied, &merge_diff(from, to));
                assert_eq!(&applied, to, "{from} -> {to}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn extra_live_fields_and_defaults_are_covered() {
        let actual = json!({"metadata": {"name": "a", "labels": {"x": "1", "other": "2"}, "uid": "u"}, "spec": {"finalizers": ["kubernetes"]}});
        let desired = json!({"metadata": {"name": "a", "labels": {"x": "1"}}});
        assert!(covers(&actual, &desired));
    }

    #[test]
    fn a_changed_or_missing_label_is_not_covered() {
        let actual = json!({"metadata": {"labels": {"x": "2"}}});
        assert!(!covers(
            &actual,
            &json!({"metadata": {"labels": {"x": "1"}}})
        ));
        assert!(!covers(
            &json!({"metadata": {}}),
            &json!({"metadata": {"labels": {"x": "1"}}})
        ));
    }

    #[test]
    fn quantities_compare_by_value() {
        let actual = json!({"spec": {"hard": {"cpu": "1", "memory": "1Gi"}}});
        let desired = json!({"spec": {"hard": {"cpu": "1000m", "memory": "1024Mi"}}});
        assert!(covers(&actual, &desired));
    }

    #[test]
    fn a_quota_key_the_operator_no_longer_wants_is_not_covered() {
        let actual = json!({"spec": {"hard": {"cpu": "1", "pods": "0"}}});
        assert!(!covers(&actual, &json!({"spec": {"hard": {"cpu": "1"}}})));
    }

    #[test]
    fn subject_lists_must_match_exactly() {
        let actual = json!({"subjects": [{"kind": "User", "name": "a", "apiGroup": "rbac.authorization.k8s.io"}]});
        assert!(covers(
            &actual,
            &json!({"subjects": [{"kind": "User", "name": "a"}]})
        ));
        assert!(!covers(
            &actual,
            &json!({"subjects": [{"kind": "User", "name": "a"}, {"kind": "User", "name": "b"}]})
        ));
        assert!(!covers(
            &json!({"subjects": [{"kind": "User", "name": "a"}, {"kind": "User", "name": "b"}]}),
            &json!({"subjects": [{"kind": "User", "name": "a"}]})
        ));
    }

    #[test]
    fn someone_elses_owner_reference_does_not_cause_a_write() {
        let actual = json!({"metadata": {"ownerReferences": [{"uid": "other"}, {"uid": "ours", "kind": "Project"}]}});
        assert!(covers(
            &actual,
            &json!({"metadata": {"ownerReferences": [{"uid": "ours", "kind": "Project"}]}})
        ));
    }

    #[test]
    fn empty_desired_collections_match_absent_ones() {
        assert!(covers(&json!({"subjects": null}), &json!({"subjects": []})));
        assert!(covers(&json!({}), &json!({"subjects": []})));
    }
}
