//! StatefulSet controller: stable pod identities `<set>-<ordinal>` with
//! their PersistentVolumeClaims, ordered (or parallel) scaling, rolling
//! updates above a partition, ControllerRevision history and the status
//! `kubectl rollout status` reads. Decisions are `statefulset::plan`; this
//! shell claims pods and revisions (adopt/release), lays in-flight pod
//! writes over the cache, applies the plan's actions in order (stopping at
//! the first failure), records events and writes status.
//!
//! Owns informers for StatefulSets, ControllerRevisions and PVCs; pods come
//! from the shared informer in `Context`.

pub mod plan;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt};
use serde_json::json;

use super::events::Kind;
use super::informers::Informer;
use super::owned::{self, Inflight};
use super::{Context, Error, podutil};
use crate::controllers::history;

const KIND: &str = "StatefulSet";

struct Ctx {
    base: Arc<Context>,
    revisions: Arc<Informer<ControllerRevision>>,
    claims: Arc<Informer<PersistentVolumeClaim>>,
    inflight: Inflight,
}

fn record(ctx: &Context, set: &StatefulSet, ev: &plan::Event) {
    let kind = if ev.type_ == "Warning" {
        Kind::Warning
    } else {
        Kind::Normal
    };
    ctx.recorder.record(set, kind, &ev.reason, &ev.message);
}

/// Outcome of creating a ControllerRevision.
pub(crate) enum RevisionCreate {
    Done,
    /// The name is taken by a different revision: bump collisionCount.
    Collision,
}

/// Creates `cr`; an existing equal revision (our own earlier write not yet
/// cached) counts as created, a different one is a hash collision.
pub(crate) async fn create_revision(
    api: &Api<ControllerRevision>,
    cr: &ControllerRevision,
) -> kube::Result<RevisionCreate> {
    match api.create(&PostParams::default(), cr).await {
        Ok(_) => Ok(RevisionCreate::Done),
        Err(kube::Error::Api(s)) if s.code == 409 => {
            let existing = api.get(&cr.name_any()).await?;
            Ok(if history::equal_revision(&existing, cr) {
                RevisionCreate::Done
            } else {
                RevisionCreate::Collision
            })
        }
        Err(e) => Err(e),
    }
}

pub(crate) async fn renumber_revision(
    api: &Api<ControllerRevision>,
    name: &str,
    revision: i64,
) -> kube::Result<()> {
    let patch = json!({ "revision": revision });
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map(|_| ())
}

pub(crate) fn delete_with_uid(uid: Option<&String>) -> DeleteParams {
    DeleteParams {
        preconditions: uid.map(|u| Preconditions {
            uid: Some(u.clone()),
            resource_version: None,
        }),
        ..Default::default()
    }
}

fn gone_ok(r: kube::Result<()>) -> kube::Result<()> {
    match r {
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        r => r,
    }
}

async fn reconcile(set: Arc<StatefulSet>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let base = &ctx.base;
    let ns = set.namespace().unwrap_or_default();
    let name = set.name_any();
    let uid = set.uid().unwrap_or_default();
    let now = Utc::now();
    let deleting = set.metadata.deletion_timestamp.is_some();
    let set_ref = podutil::owner_ref("apps/v1", KIND, &name, &uid);
    let selector = set
        .spec
        .as_ref()
        .map(|s| s.selector.clone())
        .unwrap_or_default();
    let pod_api: Api<Pod> = Api::namespaced(base.client.clone(), &ns);
    let cr_api: Api<ControllerRevision> = Api::namespaced(base.client.clone(), &ns);
    let pvc_api: Api<PersistentVolumeClaim> = Api::namespaced(base.client.clone(), &ns);

    let (mut pods, patches) = owned::claim(
        &base.pods.in_namespace(&ns),
        &set_ref,
        &selector,
        deleting,
        |p: &Pod| plan::ordinal_of(&name, p.metadata.name.as_deref().unwrap_or_default()).is_some(),
    );
    pods.extend(owned::apply_claims(&pod_api, &patches).await?);
    let (mut revisions, patches) = owned::claim(
        &ctx.revisions.in_namespace(&ns),
        &set_ref,
        &selector,
        deleting,
        |_| true,
    );
    revisions.extend(owned::apply_claims(&cr_api, &patches).await?);
    let pods = ctx.inflight.overlay(&uid, pods, now);
    let claims: BTreeMap<String, PersistentVolumeClaim> = ctx
        .claims
        .in_namespace(&ns)
        .iter()
        .map(|c| (c.name_any(), (**c).clone()))
        .collect();
    let out = plan::plan(&plan::Input {
        set: &set,
        pods: &pods,
        claims: &claims,
        revisions: &revisions,
        now,
    });

    let mut status = out.status.clone();
    let mut failed = false;
    let mut requeue_soon = false;
    for action in &out.actions {
        let res: kube::Result<()> = match action {
            plan::Action::CreateRevision(cr) => match create_revision(&cr_api, cr).await {
                Ok(RevisionCreate::Done) => Ok(()),
                Ok(RevisionCreate::Collision) => {
                    status.collision_count = Some(status.collision_count.unwrap_or(0) + 1);
                    requeue_soon = true;
                    break;
                }
                Err(e) => Err(e),
            },
            plan::Action::RenumberRevision { name, revision } => {
                renumber_revision(&cr_api, name, *revision).await
            }
            plan::Action::CreateClaim { claim, .. } => {
                match pvc_api.create(&PostParams::default(), claim).await {
                    Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
                    r => r.map(|_| ()),
                }
            }
            plan::Action::SetClaimOwners {
                claim,
                owner_references,
                ..
            } => {
                let patch = json!({ "metadata": { "ownerReferences": owner_references } });
                pvc_api
                    .patch(claim, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .map(|_| ())
            }
            plan::Action::CreatePod(pod) => {
                match pod_api.create(&PostParams::default(), pod).await {
                    Ok(p) => {
                        ctx.inflight.created(&uid, p, now);
                        Ok(())
                    }
                    Err(e) => Err(e),
                }
            }
            plan::Action::SetPodLabels { pod, labels } => {
                let patch = json!({ "metadata": { "labels": labels } });
                pod_api
                    .patch(pod, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .map(|_| ())
            }
            plan::Action::DeletePod { name, uid: pod_uid } => {
                let r = pod_api
                    .delete(name, &delete_with_uid(pod_uid.as_ref()))
                    .await;
                let r = gone_ok(r.map(|_| ()));
                if r.is_ok() {
                    ctx.inflight.deleted(&uid, name, pod_uid.clone(), now);
                }
                r
            }
            plan::Action::DeleteRevision { name } => gone_ok(
                cr_api
                    .delete(name, &DeleteParams::default())
                    .await
                    .map(|_| ()),
            ),
            plan::Action::Event(ev) => {
                record(base, &set, ev);
                Ok(())
            }
        };
        if let Err(e) = res {
            if let Some(ev) = plan::failure_event(&name, action, &e.to_string()) {
                record(base, &set, &ev);
            }
            tracing::debug!("statefulset {ns}/{name}: {e}");
            failed = true;
            break;
        }
    }

    if set.status.as_ref() != Some(&status) {
        super::patch_status::<StatefulSet, _>(
            &base.client,
            &ns,
            &name,
            set.status.as_ref(),
            &status,
        )
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

fn error_policy(_set: Arc<StatefulSet>, err: &Error, _ctx: Arc<Ctx>) -> Action {
    tracing::debug!("statefulset reconcile failed: {err}");
    Action::requeue(Duration::from_millis(500))
}

pub fn run(ctx: Arc<Context>) -> impl std::future::Future<Output = ()> + Send + 'static {
    let client = ctx.client.clone();
    let sets: Arc<Informer<StatefulSet>> = Informer::new(Api::all(client.clone()));
    let revisions: Arc<Informer<ControllerRevision>> = Informer::new(Api::all(client.clone()));
    let claims: Arc<Informer<PersistentVolumeClaim>> = Informer::new(Api::all(client));
    let owners = sets.clone();
    let claim_store = sets.store();
    let controller = Controller::for_shared_stream(sets.subscribe(), sets.store())
        .watches_shared_stream(ctx.pods.subscribe(), move |pod: Arc<Pod>| {
            owners.owners_of(&pod.metadata, |s, labels| {
                s.spec
                    .as_ref()
                    .is_some_and(|sp| podutil::selector_matches(&sp.selector, labels))
            })
        })
        .watches_shared_stream(revisions.subscribe(), |cr: Arc<ControllerRevision>| {
            podutil::controller_ref(&cr.metadata)
                .filter(|r| r.kind == KIND)
                .map(|r| ObjectRef::new(&r.name).within(&cr.namespace().unwrap_or_default()))
        })
        .watches_shared_stream(
            claims.subscribe(),
            move |pvc: Arc<PersistentVolumeClaim>| {
                // claims are named <template>-<set>-<ordinal>
                let ns = pvc.namespace().unwrap_or_default();
                let name = pvc.name_any();
                claim_store
                    .state()
                    .iter()
                    .filter(|s| s.namespace().as_deref() == Some(ns.as_str()))
                    .filter(|s| {
                        let set = s.name_any();
                        s.spec
                            .as_ref()
                            .and_then(|sp| sp.volume_claim_templates.as_ref())
                            .is_some_and(|ts| {
                                ts.iter().any(|t| {
                                    name.strip_prefix(&format!("{}-", t.name_any()))
                                        .is_some_and(|rest| plan::ordinal_of(&set, rest).is_some())
                                })
                            })
                    })
                    .map(|s| ObjectRef::from_obj(&**s))
                    .collect::<Vec<_>>()
            },
        );
    let me = Arc::new(Ctx {
        base: ctx,
        revisions: revisions.clone(),
        claims: claims.clone(),
        inflight: Inflight::default(),
    });
    async move {
        let mut tasks = tokio::task::JoinSet::new();
        tasks.spawn(super::run_forever(sets.start()));
        tasks.spawn(super::run_forever(revisions.start()));
        tasks.spawn(super::run_forever(claims.start()));
        controller
            .run(reconcile, error_policy, me)
            .for_each(|_| futures::future::ready(()))
            .await;
    }
}
