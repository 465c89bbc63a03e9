//! PersistentVolume controller (upstream `persistentvolume` binder) with the
//! built-in local-path provisioner: one loop that plans `volume::plan` over
//! every PV, PVC and StorageClass (plus node labels) on any change of them
//! (debounced) and applies the actions in order. At start it creates the
//! default StorageClass `local-path` unless a class of that name exists.
//!
//! Invariant: the first failed write ends the batch and the pass is planned
//! again shortly (everything is recomputed); own writes are laid over the
//! caches (`passloop::Overlay`) so a lagging watch never repeats them; a
//! released volume is deleted only after a live GET shows its claim gone.
//! Must not: touch the node's filesystem (the node agent does).

pub mod plan;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{DeleteParams, PostParams, Preconditions};
use kube::{Api, ResourceExt};

use super::events::{Kind, Recorder};
use super::informers::Informer;
use super::passloop::{Overlay, Waker, wait_ready};
use super::{Context, run_forever};

/// `source.component` of the binder's events (upstream's name).
pub const COMPONENT: &str = "persistentvolume-controller";
/// Periodic re-plan without changes (upstream `--pvclaimbinder-sync-period`, 15 s).
const RESYNC: Duration = Duration::from_secs(15);
const RETRY: Duration = Duration::from_secs(1);

pub fn run(ctx: Arc<Context>) -> impl std::future::Future<Output = ()> + Send + 'static {
    let pvs: Arc<Informer<PersistentVolume>> = Informer::new(Api::all(ctx.client.clone()));
    let pvcs: Arc<Informer<PersistentVolumeClaim>> = Informer::new(Api::all(ctx.client.clone()));
    let classes: Arc<Informer<StorageClass>> = Informer::new(Api::all(ctx.client.clone()));
    async move {
        ensure_default_class(&ctx).await;
        // polled here, not spawned, so the informers die with this future
        let informers = futures::future::join3(
            run_forever(pvs.start()),
            run_forever(pvcs.start()),
            run_forever(classes.start()),
        );
        futures::future::join(informers, run_loop(ctx, pvs, pvcs, classes)).await;
    }
}

/// Creates the built-in `local-path` class unless one of that name exists.
async fn ensure_default_class(ctx: &Context) {
    let api: Api<StorageClass> = Api::all(ctx.client.clone());
    for attempt in 0..10u32 {
        match api.get_opt(plan::DEFAULT_CLASS_NAME).await {
            Ok(Some(_)) => return,
            Ok(None) => match api
                .create(&PostParams::default(), &plan::default_storage_class())
                .await
            {
                Ok(_) => return,
                Err(kube::Error::Api(s)) if s.code == 409 => return,
                Err(e) => tracing::debug!("creating StorageClass local-path: {e}"),
            },
            Err(e) => tracing::debug!("reading StorageClass local-path: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(200 * (attempt as u64 + 1))).await;
    }
    tracing::warn!("could not create the default StorageClass local-path");
}

struct Shell {
    ctx: Arc<Context>,
    recorder: Recorder,
    pvs: Overlay<PersistentVolume>,
    pvcs: Overlay<PersistentVolumeClaim>,
}

async fn run_loop(
    ctx: Arc<Context>,
    pvs: Arc<Informer<PersistentVolume>>,
    pvcs: Arc<Informer<PersistentVolumeClaim>>,
    classes: Arc<Informer<StorageClass>>,
) {
    wait_ready(&pvs.store()).await;
    wait_ready(&pvcs.store()).await;
    wait_ready(&classes.store()).await;
    wait_ready(&ctx.nodes.store()).await;
    let waker = Waker::new(vec![
        pvs.notifier(),
        pvcs.notifier(),
        classes.notifier(),
        ctx.nodes.notifier(),
    ]);
    let storage_dir = ctx.config.storage_dir.to_string_lossy().into_owned();
    let mut shell = Shell {
        recorder: Recorder::new(ctx.client.clone(), COMPONENT),
        pvs: Overlay::default(),
        pvcs: Overlay::default(),
        ctx,
    };
    loop {
        let armed = waker.arm();
        let volumes: Vec<PersistentVolume> = shell
            .pvs
            .merge(pvs.store().state())
            .into_iter()
            .map(|v| (*v).clone())
            .collect();
        let claims: Vec<PersistentVolumeClaim> = shell
            .pvcs
            .merge(pvcs.store().state())
            .into_iter()
            .map(|c| (*c).clone())
            .collect();
        let class_list: Vec<StorageClass> = classes
            .store()
            .state()
            .into_iter()
            .map(|c| (*c).clone())
            .collect();
        let nodes = shell.ctx.nodes.store().state();
        let node_labels: BTreeMap<String, BTreeMap<String, String>> = nodes
            .iter()
            .map(|n| (n.name_any(), n.labels().clone()))
            .collect();
        let default_node = default_node(&nodes);
        let snap = plan::Snapshot {
            volumes: &volumes,
            claims: &claims,
            classes: &class_list,
            node_labels: &node_labels,
        };
        let cfg = plan::Config {
            storage_dir: &storage_dir,
            default_node: default_node.as_deref(),
        };
        let actions = plan::plan(&snap, &cfg, Utc::now());
        let wait = match shell.apply(actions, &volumes).await {
            Ok(()) => RESYNC,
            Err(e) => {
                tracing::debug!("volume binder: {e}");
                RETRY
            }
        };
        armed.wait(wait).await;
    }
}

/// The node `Immediate` local-path classes provision on: the first Ready
/// node by name (no scheduler choice exists for them).
fn default_node(nodes: &[Arc<k8s_openapi::api::core::v1::Node>]) -> Option<String> {
    let ready = |n: &k8s_openapi::api::core::v1::Node| {
        n.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
    };
    let mut names: Vec<String> = nodes
        .iter()
        .filter(|n| ready(n) && n.metadata.deletion_timestamp.is_none())
        .map(|n| n.name_any())
        .collect();
    names.sort();
    names.into_iter().next()
}

impl Shell {
    async fn apply(
        &mut self,
        actions: Vec<plan::Action>,
        volumes: &[PersistentVolume],
    ) -> Result<(), kube::Error> {
        let client = self.ctx.client.clone();
        let pv_api: Api<PersistentVolume> = Api::all(client.clone());
        let pp = PostParams::default();
        for action in actions {
            match action {
                plan::Action::CreatePv(pv) => match pv_api.create(&pp, &pv).await {
                    Ok(created) => self.pvs.written(created),
                    Err(kube::Error::Api(s)) if s.code == 409 => {}
                    Err(e) => return Err(e),
                },
                plan::Action::UpdatePv { pv, spec, status } => {
                    let name = pv.name_any();
                    let mut cur = pv.clone();
                    if spec {
                        cur = pv_api.replace(&name, &pp, &pv).await?;
                        self.pvs.written(cur.clone());
                    }
                    if status {
                        cur.status = pv.status.clone();
                        let got = pv_api.replace_status(&name, &pp, &cur).await?;
                        self.pvs.written(got);
                    }
                }
                plan::Action::UpdatePvc { pvc, spec, status } => {
                    let ns = pvc.namespace().unwrap_or_default();
                    let name = pvc.name_any();
                    let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
                    let mut cur = pvc.clone();
                    if spec {
                        cur = api.replace(&name, &pp, &pvc).await?;
                        self.pvcs.written(cur.clone());
                    }
                    if status {
                        cur.status = pvc.status.clone();
                        let got = api.replace_status(&name, &pp, &cur).await?;
                        self.pvcs.written(got);
                    }
                }
                plan::Action::DeletePv { name, uid } => {
                    if self.claim_still_exists(volumes, &name).await? {
                        continue;
                    }
                    let dp = DeleteParams {
                        preconditions: Some(Preconditions {
                            uid: Some(uid.clone()),
                            resource_version: None,
                        }),
                        ..Default::default()
                    };
                    match pv_api.delete(&name, &dp).await {
                        Ok(res) => match res.left() {
                            // finalizers keep it for now
                            Some(pv) => self.pvs.written(pv),
                            None => self.pvs.deleted("", &name, Some(uid)),
                        },
                        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {
                            self.pvs.deleted("", &name, Some(uid))
                        }
                        Err(e) => return Err(e),
                    }
                }
                plan::Action::Event(ev) => {
                    let kind = if ev.type_ == "Warning" {
                        Kind::Warning
                    } else {
                        Kind::Normal
                    };
                    self.recorder
                        .record_ref(ev.regarding, kind, &ev.reason, &ev.message);
                }
            }
        }
        Ok(())
    }

    /// Upstream re-reads the claim before deleting a released volume: a
    /// claim (same uid) that still exists means the cache lied.
    async fn claim_still_exists(
        &self,
        volumes: &[PersistentVolume],
        pv_name: &str,
    ) -> Result<bool, kube::Error> {
        let Some(cref) = volumes
            .iter()
            .find(|v| v.metadata.name.as_deref() == Some(pv_name))
            .and_then(|v| v.spec.as_ref()?.claim_ref.clone())
        else {
            return Ok(false);
        };
        let (Some(ns), Some(name)) = (cref.namespace.as_deref(), cref.name.as_deref()) else {
            return Ok(false);
        };
        let api: Api<PersistentVolumeClaim> = Api::namespaced(self.ctx.client.clone(), ns);
        Ok(match api.get_opt(name).await? {
            None => false,
            Some(c) => cref
                .uid
                .as_deref()
                .is_none_or(|u| u.is_empty() || c.metadata.uid.as_deref() == Some(u)),
        })
    }
}
