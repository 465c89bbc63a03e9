//! Deployment controller: rolls a Deployment's ReplicaSets towards its
//! template (RollingUpdate within maxSurge/maxUnavailable, or Recreate),
//! keeps revision annotations, cleans old ReplicaSets and writes the status
//! `kubectl rollout status` reads. Decisions are `deployment::plan`.

pub mod plan;

use std::sync::Arc;

use chrono::Utc;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt};
use serde_json::json;

use super::events::Kind;
use super::{Context, Error, ignore_gone};
use crate::controllers::replicaset::plan::Event;

fn record(ctx: &Context, d: &Deployment, ev: &Event) {
    let kind = if ev.type_ == "Warning" {
        Kind::Warning
    } else {
        Kind::Normal
    };
    ctx.recorder.record(d, kind, ev.reason, &ev.message);
}

/// Write `st` as the Deployment's whole status.
async fn write_status(ctx: &Context, d: &Deployment, st: &DeploymentStatus) -> Result<(), Error> {
    let ns = d.namespace().unwrap_or_default();
    super::patch_status::<Deployment, _>(&ctx.client, &ns, &d.name_any(), d.status.as_ref(), st)
        .await
}

async fn reconcile(d: Arc<Deployment>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ns = d.namespace().unwrap_or_default();
    let name = d.name_any();
    let now = Utc::now();
    let rss = ctx.replicasets.in_namespace(&ns);
    let pods = ctx.pods.in_namespace(&ns);
    let out = plan::plan(&d, &rss, &pods, now);
    let rs_api: Api<ReplicaSet> = Api::namespaced(ctx.client.clone(), &ns);
    let api: Api<Deployment> = Api::namespaced(ctx.client.clone(), &ns);
    let pp = PostParams::default();
    for action in &out.actions {
        match action {
            plan::Action::AdoptReplicaSet(p) | plan::Action::ReleaseReplicaSet(p) => {
                ignore_gone(
                    rs_api
                        .patch(
                            &p.name,
                            &PatchParams::default(),
                            &Patch::Strategic(&p.patch),
                        )
                        .await,
                )?;
            }
            plan::Action::CreateReplicaSet(rs) => match rs_api.create(&pp, rs).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 409 => {
                    let existing = rs_api.get(&rs.name_any()).await?;
                    if let plan::CreateConflict::BumpCollisionCount(st) =
                        plan::on_create_conflict(&d, &existing)
                    {
                        write_status(&ctx, &d, &st).await?;
                    }
                    return Ok(Action::requeue(std::time::Duration::from_millis(200)));
                }
                Err(e) => {
                    let (ev, st) = plan::on_create_error(&d, &rs.name_any(), &e.to_string(), now);
                    record(&ctx, &d, &ev);
                    if let Some(st) = st {
                        write_status(&ctx, &d, &st).await?;
                    }
                    return Err(e.into());
                }
            },
            plan::Action::UpdateReplicaSet(rs) => {
                ignore_gone(rs_api.replace(&rs.name_any(), &pp, rs).await)?;
            }
            plan::Action::DeleteReplicaSet { name, uid } => {
                let dp = DeleteParams {
                    preconditions: Some(Preconditions {
                        uid: Some(uid.clone()),
                        resource_version: None,
                    }),
                    ..Default::default()
                };
                ignore_gone(rs_api.delete(name, &dp).await)?;
            }
            plan::Action::Event(ev) => record(&ctx, &d, ev),
        }
    }
    if let Some(rev) = &out.revision
        && d.annotations().get(plan::REVISION) != Some(rev)
    {
        let patch = json!({ "metadata": { "annotations": { plan::REVISION: rev } } });
        ignore_gone(
            api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await,
        )?;
    }
    if let Some(st) = &out.status {
        write_status(&ctx, &d, st).await?;
    }
    Ok(match out.requeue_after {
        Some(d) => Action::requeue(d),
        None => Action::await_change(),
    })
}

pub fn run(ctx: Arc<Context>) -> impl std::future::Future<Output = ()> + Send + 'static {
    let owners = ctx.deployments.clone();
    let rs_store = ctx.replicasets.store();
    let deploy_store = ctx.deployments.store();
    Controller::for_shared_stream(ctx.deployments.subscribe(), ctx.deployments.store())
        .watches_shared_stream(ctx.replicasets.subscribe(), move |rs: Arc<ReplicaSet>| {
            owners.owners_of(&rs.metadata, |d, labels| {
                d.spec
                    .as_ref()
                    .is_some_and(|s| super::podutil::selector_matches(&s.selector, labels))
            })
        })
        // Recreate waits for old pods to go away: pod → ReplicaSet → Deployment
        .watches_shared_stream(ctx.pods.subscribe(), move |pod: Arc<Pod>| {
            let ns = pod.namespace().unwrap_or_default();
            let rs = super::podutil::controller_ref(&pod.metadata)
                .filter(|r| r.kind == "ReplicaSet")
                .and_then(|r| rs_store.get(&ObjectRef::new(&r.name).within(&ns)))?;
            let d =
                super::podutil::controller_ref(&rs.metadata).filter(|r| r.kind == "Deployment")?;
            let key = ObjectRef::new(&d.name).within(&ns);
            let recreate = deploy_store.get(&key).is_some_and(|d| {
                d.spec
                    .as_ref()
                    .and_then(|s| s.strategy.as_ref())
                    .and_then(|s| s.type_.as_deref())
                    == Some("Recreate")
            });
            recreate.then_some(key)
        })
        .run(reconcile, super::error_policy, ctx)
        .for_each(|_| futures::future::ready(()))
}
