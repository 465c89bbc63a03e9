//! PodDisruptionBudget controller (upstream `pkg/controller/disruption`):
//! keeps each PDB's status (expected/desired/current healthy pods,
//! `disruptionsAllowed`, `disruptedPods`, the `DisruptionAllowed`
//! condition) in step with the pods it covers. The decision is
//! `disruption::plan::sync_pdb`; this shell maps pod changes to the PDBs
//! selecting them, resolves every covered pod's controller to its scale
//! (ReplicaSet → owning Deployment, StatefulSet, ReplicationController) from
//! the caches, writes the status with `UpdateStatus` (resourceVersion
//! precondition, so it never overwrites an eviction's write) and records the
//! plan's events. The eviction subresource (`apiserver::subresources`) uses
//! `plan::eviction_allowed` against the same status.

pub mod plan;

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::Utc;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::PostParams;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, ResourceExt};

use super::events::Kind;
use super::informers::Informer;
use super::{Context, Error, ignore_gone, run_forever};

/// PDBs of the pod's namespace that select it.
fn pdbs_for_pod(
    pdbs: &Store<PodDisruptionBudget>,
    pod: &Pod,
) -> Vec<ObjectRef<PodDisruptionBudget>> {
    pdbs.state()
        .iter()
        .filter(|p| plan::pdb_selects(p, pod))
        .map(|p| ObjectRef::from_obj(&**p))
        .collect()
}

/// The scale behind each covered pod's controller, keyed by the
/// controllerRef uid (pods whose controller is not found are left out; the
/// plan reports them).
fn scales(
    ctx: &Context,
    statefulsets: &Store<StatefulSet>,
    ns: &str,
    pods: &[Pod],
) -> BTreeMap<String, plan::ControllerScale> {
    let mut out = BTreeMap::new();
    for pod in pods {
        let Some(r) = super::podutil::controller_ref(&pod.metadata) else {
            continue;
        };
        if out.contains_key(&r.uid) {
            continue;
        }
        let found = match r.kind.as_str() {
            "ReplicaSet" => ctx
                .replicasets
                .store()
                .get(&ObjectRef::new(&r.name).within(ns))
                .filter(|rs| rs.metadata.uid.as_deref() == Some(r.uid.as_str()))
                .map(|rs| {
                    let dep = super::podutil::controller_ref(&rs.metadata)
                        .filter(|d| d.kind == "Deployment")
                        .and_then(|d| {
                            ctx.deployments
                                .store()
                                .get(&ObjectRef::new(&d.name).within(ns))
                                .filter(|x| x.metadata.uid.as_deref() == Some(d.uid.as_str()))
                        });
                    match dep {
                        Some(d) => plan::ControllerScale {
                            uid: d.metadata.uid.clone().unwrap_or_default(),
                            replicas: d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
                        },
                        None => plan::ControllerScale {
                            uid: r.uid.clone(),
                            replicas: rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
                        },
                    }
                }),
            "StatefulSet" => statefulsets
                .get(&ObjectRef::new(&r.name).within(ns))
                .filter(|s| s.metadata.uid.as_deref() == Some(r.uid.as_str()))
                .map(|s| plan::ControllerScale {
                    uid: r.uid.clone(),
                    replicas: s.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
                }),
            "ReplicationController" => ctx
                .replicationcontrollers
                .store()
                .get(&ObjectRef::new(&r.name).within(ns))
                .filter(|s| s.metadata.uid.as_deref() == Some(r.uid.as_str()))
                .map(|s| plan::ControllerScale {
                    uid: r.uid.clone(),
                    replicas: s.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
                }),
            _ => None,
        };
        if let Some(s) = found {
            out.insert(r.uid.clone(), s);
        }
    }
    out
}

struct Shell {
    ctx: Arc<Context>,
    statefulsets: Store<StatefulSet>,
}

async fn reconcile(pdb: Arc<PodDisruptionBudget>, shell: Arc<Shell>) -> Result<Action, Error> {
    if pdb.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let ctx = &shell.ctx;
    let ns = pdb.namespace().unwrap_or_default();
    let pods: Vec<Pod> = ctx
        .pods
        .in_namespace(&ns)
        .iter()
        .filter(|p| plan::pdb_selects(&pdb, p))
        .map(|p| (**p).clone())
        .collect();
    let scales = scales(ctx, &shell.statefulsets, &ns, &pods);
    let out = plan::sync_pdb(&pdb, &pods, &scales, Utc::now());
    for ev in &out.events {
        let kind = if ev.type_ == "Warning" {
            Kind::Warning
        } else {
            Kind::Normal
        };
        match &ev.pod {
            None => ctx.recorder.record(&*pdb, kind, &ev.reason, &ev.message),
            Some(name) => {
                let uid = pods
                    .iter()
                    .find(|p| p.metadata.name.as_deref() == Some(name))
                    .and_then(|p| p.metadata.uid.clone());
                let reference = ObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Pod".into()),
                    name: Some(name.clone()),
                    namespace: Some(ns.clone()),
                    uid,
                    ..Default::default()
                };
                ctx.recorder
                    .record_ref(reference, kind, &ev.reason, &ev.message);
            }
        }
    }
    if out.changed {
        let mut next = (*pdb).clone();
        next.status = Some(out.status);
        let api: Api<PodDisruptionBudget> = Api::namespaced(ctx.client.clone(), &ns);
        ignore_gone(
            api.replace_status(&pdb.name_any(), &PostParams::default(), &next)
                .await,
        )?;
    }
    Ok(match out.recheck_after.and_then(|d| d.to_std().ok()) {
        Some(d) => Action::requeue(d + std::time::Duration::from_secs(1)),
        None => Action::await_change(),
    })
}

fn error_policy(_pdb: Arc<PodDisruptionBudget>, err: &Error, _shell: Arc<Shell>) -> Action {
    tracing::debug!("pdb sync failed: {err}");
    Action::requeue(std::time::Duration::from_millis(500))
}

pub fn run(ctx: Arc<Context>) -> impl std::future::Future<Output = ()> + Send + 'static {
    let pdbs: Arc<Informer<PodDisruptionBudget>> = Informer::new(Api::all(ctx.client.clone()));
    let statefulsets: Arc<Informer<StatefulSet>> = Informer::new(Api::all(ctx.client.clone()));
    let store = pdbs.store();
    let shell = Arc::new(Shell {
        ctx: ctx.clone(),
        statefulsets: statefulsets.store(),
    });
    let controller = Controller::for_shared_stream(pdbs.subscribe(), pdbs.store())
        .watches_shared_stream(ctx.pods.subscribe(), move |pod: Arc<Pod>| {
            pdbs_for_pod(&store, &pod)
        })
        .run(reconcile, error_policy, shell)
        .for_each(|_| futures::future::ready(()));
    async move {
        futures::join!(
            controller,
            run_forever(pdbs.start()),
            run_forever(statefulsets.start())
        );
    }
}
