//! ReplicaSet and ReplicationController controller: keeps `replicas` pods of
//! each owner alive, adopting orphans that match its selector and releasing
//! pods that no longer do. Decisions come from `replicaset::plan`; this shell
//! applies them (slow-start create batches, deletes with uid preconditions),
//! keeps expectations so a lagging cache never double-creates, records events
//! and writes status.

pub mod plan;

use std::sync::Arc;

use chrono::Utc;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Pod, ReplicationController};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::controller::{Action, Controller};
use kube::{Api, Resource, ResourceExt};

use super::events::Kind;
use super::{Context, Error, ignore_gone};

/// One sync of either kind; `write_status` gets the computed status.
async fn sync<K>(
    obj: &K,
    owner: plan::Owner<'_>,
    ctx: &Context,
    status_changed: impl Fn(&plan::Status) -> Option<(serde_json::Value, serde_json::Value)>,
) -> Result<Action, Error>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let now = Utc::now();
    let ns = owner.namespace.clone();
    let pods = ctx.pods.in_namespace(&ns);
    let cached = |name: &str| {
        pods.iter()
            .find(|p| p.metadata.name.as_deref() == Some(name))
            .map(|p| p.metadata.deletion_timestamp.is_some())
    };
    let manage = ctx.expectations.satisfied(&owner.uid, now, cached);
    let mut out = plan::plan(&owner, &pods, now, manage);
    let pod_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    for p in out.adopt.iter().chain(out.release.iter()) {
        ignore_gone(
            pod_api
                .patch(
                    &p.name,
                    &PatchParams::default(),
                    &Patch::Strategic(&p.patch),
                )
                .await,
        )?;
    }
    let mut failure = None;
    if !out.create.is_empty() {
        let mut remaining = out.create.drain(..);
        'batches: for size in plan::slow_start_batches(remaining.len()) {
            let batch: Vec<Pod> = remaining.by_ref().take(size).collect();
            let pp = PostParams::default();
            let results =
                futures::future::join_all(batch.iter().map(|p| pod_api.create(&pp, p))).await;
            for r in results {
                match r {
                    Ok(p) => {
                        let name = p.name_any();
                        ctx.expectations.created(&owner.uid, name.clone(), now);
                        let ev = plan::event_created(&name);
                        ctx.recorder
                            .record(obj, Kind::Normal, ev.reason, &ev.message);
                    }
                    Err(e) => {
                        let ev = plan::event_create_failed(&e.to_string());
                        ctx.recorder
                            .record(obj, Kind::Warning, ev.reason, &ev.message);
                        failure = Some(e.to_string());
                    }
                }
            }
            if failure.is_some() {
                break 'batches;
            }
        }
    }
    for d in &out.delete {
        let dp = DeleteParams {
            preconditions: Some(Preconditions {
                uid: Some(d.uid.clone()),
                resource_version: None,
            }),
            ..Default::default()
        };
        ctx.expectations.deleted(&owner.uid, d.name.clone(), now);
        match ignore_gone(pod_api.delete(&d.name, &dp).await) {
            Ok(()) => {
                let ev = plan::event_deleted(&d.name);
                ctx.recorder
                    .record(obj, Kind::Normal, ev.reason, &ev.message);
            }
            Err(e) => {
                let ev = plan::event_delete_failed(&e.to_string());
                ctx.recorder
                    .record(obj, Kind::Warning, ev.reason, &ev.message);
                failure = Some(e.to_string());
            }
        }
    }
    if let Some(err) = &failure {
        plan::record_manage_error(&owner, &mut out.status, out.diff, err, now);
    }
    if let Some((previous, status)) = status_changed(&out.status) {
        super::patch_status::<K, _>(&ctx.client, &ns, &owner.name, Some(&previous), &status)
            .await?;
    }
    if failure.is_some() {
        return Ok(Action::requeue(std::time::Duration::from_secs(2)));
    }
    Ok(match out.requeue_after {
        Some(d) => Action::requeue(d),
        None => Action::await_change(),
    })
}

async fn reconcile_rs(rs: Arc<ReplicaSet>, ctx: Arc<Context>) -> Result<Action, Error> {
    let owner = plan::Owner::from_replica_set(&rs);
    sync(&*rs, owner, &ctx, |st| {
        let new = st.to_replica_set();
        (rs.status.as_ref() != Some(&new)).then(|| {
            let value = |v| serde_json::to_value(v).unwrap_or_default();
            (value(&rs.status), value(&Some(new)))
        })
    })
    .await
}

async fn reconcile_rc(rc: Arc<ReplicationController>, ctx: Arc<Context>) -> Result<Action, Error> {
    let owner = plan::Owner::from_replication_controller(&rc);
    sync(&*rc, owner, &ctx, |st| {
        let new = st.to_replication_controller();
        (rc.status.as_ref() != Some(&new)).then(|| {
            let value = |v| serde_json::to_value(v).unwrap_or_default();
            (value(&rc.status), value(&Some(new)))
        })
    })
    .await
}

pub fn run_replicasets(
    ctx: Arc<Context>,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let owners = ctx.replicasets.clone();
    Controller::for_shared_stream(ctx.replicasets.subscribe(), ctx.replicasets.store())
        .watches_shared_stream(ctx.pods.subscribe(), move |pod: Arc<Pod>| {
            owners.owners_of(&pod.metadata, |o, labels| {
                plan::Owner::from_replica_set(o).selects(Some(labels))
            })
        })
        .run(reconcile_rs, super::error_policy, ctx)
        .for_each(|_| futures::future::ready(()))
}

pub fn run_replicationcontrollers(
    ctx: Arc<Context>,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let owners = ctx.replicationcontrollers.clone();
    Controller::for_shared_stream(
        ctx.replicationcontrollers.subscribe(),
        ctx.replicationcontrollers.store(),
    )
    .watches_shared_stream(ctx.pods.subscribe(), move |pod: Arc<Pod>| {
        owners.owners_of(&pod.metadata, |o, labels| {
            plan::Owner::from_replication_controller(o).selects(Some(labels))
        })
    })
    .run(reconcile_rc, super::error_policy, ctx)
    .for_each(|_| futures::future::ready(()))
}
