//! What happens to a project's workloads after its end date plus grace period: Suspend (scale
//! to zero, suspend Jobs and CronJobs, remember what to restore), Delete, or nothing. Moving the
//! end date later undoes a Suspend.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, ListParams, Patch};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use super::{Context, Error};
use crate::api::project::SuspensionRecord;

async fn list<K>(client: &Client, ns: &str) -> Result<Vec<K>, Error>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    Ok(Api::<K>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .map_err(Error::Kube)?
        .items)
}

async fn merge<K>(
    ctx: &Context,
    ns: &str,
    name: &str,
    patch: serde_json::Value,
) -> Result<(), Error>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    match Api::<K>::namespaced(ctx.client.clone(), ns)
        .patch(name, &super::apply::patch_params(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 404 => return Ok(()),
        Err(e) => return Err(Error::Kube(e)),
    }
    ctx.metrics.write(&K::kind(&()), "patch");
    Ok(())
}

/// What a suspension will change: Deployments and StatefulSets with replicas (and how many),
/// running Jobs and CronJobs not already suspended by their owners. Reads only: the record is
/// stored in the Project's status before anything is scaled, so a failed write can never lose
/// the sizes to restore.
pub async fn plan_suspension(ctx: &Context, ns: &str) -> Result<SuspensionRecord, Error> {
    let mut record = SuspensionRecord {
        time: Some(Time(ctx.clock.now())),
        ..Default::default()
    };
    for d in list::<Deployment>(&ctx.client, ns).await? {
        let replicas = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        if replicas > 0 {
            record
                .replicas
                .insert(format!("Deployment/{}", d.name_any()), replicas);
        }
    }
    for s in list::<StatefulSet>(&ctx.client, ns).await? {
        let replicas = s.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        if replicas > 0 {
            record
                .replicas
                .insert(format!("StatefulSet/{}", s.name_any()), replicas);
        }
    }
    for c in list::<CronJob>(&ctx.client, ns).await? {
        if !c.spec.as_ref().and_then(|s| s.suspend).unwrap_or(false) {
            record.cron_jobs.push(c.name_any());
        }
    }
    for j in list::<Job>(&ctx.client, ns).await? {
        let finished = j.status.as_ref().is_some_and(|s| {
            s.completion_time.is_some() || s.failed.unwrap_or(0) > 0 && s.active.unwrap_or(0) == 0
        });
        if !finished && !j.spec.as_ref().and_then(|s| s.suspend).unwrap_or(false) {
            record.jobs.push(j.name_any());
        }
    }
    Ok(record)
}

/// Carries out a stored suspension plan: scale to zero, suspend. Safe to repeat.
pub async fn suspend(ctx: &Context, ns: &str, record: &SuspensionRecord) -> Result<(), Error> {
    set_suspended(ctx, ns, record, true).await
}

/// Undoes a suspension: replicas back to what they were, Jobs and CronJobs resumed.
pub async fn resume(ctx: &Context, ns: &str, record: &SuspensionRecord) -> Result<(), Error> {
    set_suspended(ctx, ns, record, false).await
}

/// Puts every workload of the record in the suspended state (0 replicas, `suspend: true`) or
/// back (its recorded replicas, `suspend: false`).
async fn set_suspended(
    ctx: &Context,
    ns: &str,
    record: &SuspensionRecord,
    suspended: bool,
) -> Result<(), Error> {
    for (key, recorded) in &record.replicas {
        let replicas =
            serde_json::json!({"spec": {"replicas": if suspended { 0 } else { *recorded }}});
        match key.split_once('/') {
            Some(("Deployment", name)) => merge::<Deployment>(ctx, ns, name, replicas).await?,
            Some(("StatefulSet", name)) => merge::<StatefulSet>(ctx, ns, name, replicas).await?,
            _ => continue,
        }
        crate::fault::point(if suspended {
            "suspend/workload-scaled"
        } else {
            "resume/workload-restored"
        });
    }
    let suspend = serde_json::json!({"spec": {"suspend": suspended}});
    for name in &record.cron_jobs {
        merge::<CronJob>(ctx, ns, name, suspend.clone()).await?;
    }
    for name in &record.jobs {
        merge::<Job>(ctx, ns, name, suspend.clone()).await?;
    }
    Ok(())
}

async fn delete_all<K>(ctx: &Context, ns: &str) -> Result<usize, Error>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    let api = Api::<K>::namespaced(ctx.client.clone(), ns);
    let items = list::<K>(&ctx.client, ns).await?;
    for item in &items {
        match api
            .delete(&item.name_any(), &DeleteParams::background())
            .await
        {
            Ok(_) => ctx.metrics.write(&K::kind(&()), "delete"),
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(Error::Kube(e)),
        }
    }
    Ok(items.len())
}

/// The Delete policy: removes every workload in the namespace. Returns counts by kind.
pub async fn delete_workloads(
    ctx: &Context,
    ns: &str,
) -> Result<BTreeMap<&'static str, usize>, Error> {
    Ok(BTreeMap::from([
        ("deployments", delete_all::<Deployment>(ctx, ns).await?),
        ("statefulsets", delete_all::<StatefulSet>(ctx, ns).await?),
        ("daemonsets", delete_all::<DaemonSet>(ctx, ns).await?),
        ("cronjobs", delete_all::<CronJob>(ctx, ns).await?),
        ("jobs", delete_all::<Job>(ctx, ns).await?),
        ("pods", delete_all::<Pod>(ctx, ns).await?),
    ]))
}
