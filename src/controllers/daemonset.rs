//! DaemonSet controller: one daemon pod on every node that should run it
//! (nodeSelector, node affinity, taints vs tolerations), pinned to its node
//! by a required `matchFields metadata.name` affinity so the scheduler
//! binds it there; RollingUpdate (maxUnavailable / maxSurge) or OnDelete;
//! ControllerRevision history; the status `kubectl rollout status` reads.
//! Decisions are `daemonset::plan`; this shell claims pods and revisions,
//! lays in-flight pod writes over the cache, keeps the failed-pod backoff of
//! each DaemonSet between steps, applies the actions, records events and
//! writes status.
//!
//! Owns informers for DaemonSets and ControllerRevisions; pods and nodes
//! come from the shared informers in `Context`.

pub mod plan;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{DeleteParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt};

use super::events::Kind;
use super::informers::Informer;
use super::owned::{self, Inflight};
use super::statefulset::{RevisionCreate, create_revision, delete_with_uid, renumber_revision};
use super::{Context, Error, podutil};

const KIND: &str = "DaemonSet";

struct Ctx {
    base: Arc<Context>,
    revisions: Arc<Informer<ControllerRevision>>,
    inflight: Inflight,
    /// DaemonSet uid → failed-pod backoff handed back by the last step.
    backoff: Mutex<HashMap<String, plan::FailedPodBackoff>>,
}

fn record(ctx: &Context, ds: &DaemonSet, ev: &plan::Event) {
    let kind = if ev.type_ == "Warning" {
        Kind::Warning
    } else {
        Kind::Normal
    };
    ctx.recorder.record(ds, kind, &ev.reason, &ev.message);
}

async fn reconcile(ds: Arc<DaemonSet>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let base = &ctx.base;
    let ns = ds.namespace().unwrap_or_default();
    let name = ds.name_any();
    let uid = ds.uid().unwrap_or_default();
    let now = Utc::now();
    let deleting = ds.metadata.deletion_timestamp.is_some();
    let ds_ref = podutil::owner_ref("apps/v1", KIND, &name, &uid);
    let selector = ds
        .spec
        .as_ref()
        .map(|s| s.selector.clone())
        .unwrap_or_default();
    let pod_api: Api<Pod> = Api::namespaced(base.client.clone(), &ns);
    let cr_api: Api<ControllerRevision> = Api::namespaced(base.client.clone(), &ns);

    let (mut pods, patches) = owned::claim(
        &base.pods.in_namespace(&ns),
        &ds_ref,
        &selector,
        deleting,
        |_| true,
    );
    pods.extend(owned::apply_claims(&pod_api, &patches).await?);
    let (mut revisions, patches) = owned::claim(
        &ctx.revisions.in_namespace(&ns),
        &ds_ref,
        &selector,
        deleting,
        |_| true,
    );
    revisions.extend(owned::apply_claims(&cr_api, &patches).await?);
    let pods = ctx.inflight.overlay(&uid, pods, now);
    let nodes: Vec<Node> = base
        .nodes
        .store()
        .state()
        .iter()
        .map(|n| (**n).clone())
        .collect();
    let backoff = ctx
        .backoff
        .lock()
        .unwrap()
        .get(&uid)
        .cloned()
        .unwrap_or_default();
    let out = plan::plan(&plan::Input {
        ds: &ds,
        nodes: &nodes,
        pods: &pods,
        revisions: &revisions,
        backoff: &backoff,
        now,
    });
    {
        let mut b = ctx.backoff.lock().unwrap();
        if out.backoff.entries.is_empty() {
            b.remove(&uid);
        } else {
            b.insert(uid.clone(), out.backoff.clone());
        }
    }

    let mut status = out.status.clone();
    let mut failed = false;
    let mut requeue_soon = false;
    let mut creating = true;
    for action in &out.actions {
        let res: kube::Result<Option<String>> = match action {
            plan::Action::CreateRevision(cr) => match create_revision(&cr_api, cr).await {
                Ok(RevisionCreate::Done) => Ok(None),
                Ok(RevisionCreate::Collision) => {
                    status.collision_count = Some(status.collision_count.unwrap_or(0) + 1);
                    requeue_soon = true;
                    break;
                }
                // pods must not carry a revision that does not exist
                Err(e) => {
                    tracing::debug!("daemonset {ns}/{name}: creating revision: {e}");
                    failed = true;
                    break;
                }
            },
            plan::Action::RenumberRevision { name, revision } => {
                renumber_revision(&cr_api, name, *revision)
                    .await
                    .map(|_| None)
            }
            // after a failed create the rest wait for the next step (upstream
            // slow start stops at the first error)
            plan::Action::CreatePod { .. } if !creating => continue,
            plan::Action::CreatePod { pod, .. } => {
                match pod_api.create(&PostParams::default(), pod).await {
                    Ok(p) => {
                        let created = p.name_any();
                        ctx.inflight.created(&uid, p, now);
                        Ok(Some(created))
                    }
                    Err(e) => {
                        creating = false;
                        Err(e)
                    }
                }
            }
            plan::Action::DeletePod { name, uid: pod_uid } => {
                match pod_api
                    .delete(name, &delete_with_uid(pod_uid.as_ref()))
                    .await
                {
                    Ok(_) => {
                        ctx.inflight.deleted(&uid, name, pod_uid.clone(), now);
                        Ok(None)
                    }
                    Err(kube::Error::Api(s)) if s.code == 404 => {
                        ctx.inflight.deleted(&uid, name, pod_uid.clone(), now);
                        continue;
                    }
                    Err(e) => Err(e),
                }
            }
            plan::Action::DeleteRevision { name } => {
                match cr_api.delete(name, &DeleteParams::default()).await {
                    Err(kube::Error::Api(s)) if s.code == 404 => Ok(None),
                    r => r.map(|_| None),
                }
            }
            plan::Action::Event(ev) => {
                record(base, &ds, ev);
                continue;
            }
        };
        match res {
            Ok(created) => {
                if let Some(ev) = plan::success_event(action, created.as_deref()) {
                    record(base, &ds, &ev);
                }
            }
            Err(e) => {
                if let Some(ev) = plan::failure_event(action, &e.to_string()) {
                    record(base, &ds, &ev);
                }
                tracing::debug!("daemonset {ns}/{name}: {e}");
                failed = true;
            }
        }
    }

    if ds.status.as_ref() != Some(&status) {
        super::patch_status::<DaemonSet, _>(&base.client, &ns, &name, ds.status.as_ref(), &status)
            .await?;
    }
    if failed {
        return Ok(Action::requeue(Duration::from_secs(2)));
    }
    if requeue_soon {
        return Ok(Action::requeue(Duration::from_millis(200)));
    }
    Ok(match out.requeue_after.and_then(|d| d.to_std().ok()) {
        Some(d) => Action::requeue(d.max(Duration::from_millis(100))),
        None => Action::await_change(),
    })
}

fn error_policy(_ds: Arc<DaemonSet>, err: &Error, _ctx: Arc<Ctx>) -> Action {
    tracing::debug!("daemonset reconcile failed: {err}");
    Action::requeue(Duration::from_millis(500))
}

pub fn run(ctx: Arc<Context>) -> impl std::future::Future<Output = ()> + Send + 'static {
    let client = ctx.client.clone();
    let daemonsets: Arc<Informer<DaemonSet>> = Informer::new(Api::all(client.clone()));
    let revisions: Arc<Informer<ControllerRevision>> = Informer::new(Api::all(client));
    let owners = daemonsets.clone();
    let node_store = daemonsets.store();
    let controller = Controller::for_shared_stream(daemonsets.subscribe(), daemonsets.store())
        .watches_shared_stream(ctx.pods.subscribe(), move |pod: Arc<Pod>| {
            owners.owners_of(&pod.metadata, |d, labels| {
                d.spec
                    .as_ref()
                    .is_some_and(|sp| podutil::selector_matches(&sp.selector, labels))
            })
        })
        .watches_shared_stream(ctx.nodes.subscribe(), move |_node: Arc<Node>| {
            node_store
                .state()
                .iter()
                .map(|d| ObjectRef::from_obj(&**d))
                .collect::<Vec<_>>()
        })
        .watches_shared_stream(revisions.subscribe(), |cr: Arc<ControllerRevision>| {
            podutil::controller_ref(&cr.metadata)
                .filter(|r| r.kind == KIND)
                .map(|r| ObjectRef::new(&r.name).within(&cr.namespace().unwrap_or_default()))
        });
    let me = Arc::new(Ctx {
        base: ctx,
        revisions: revisions.clone(),
        inflight: Inflight::default(),
        backoff: Mutex::new(HashMap::new()),
    });
    async move {
        let mut tasks = tokio::task::JoinSet::new();
        tasks.spawn(super::run_forever(daemonsets.start()));
        tasks.spawn(super::run_forever(revisions.start()));
        controller
            .run(reconcile, error_policy, me)
            .for_each(|_| futures::future::ready(()))
            .await;
    }
}
