//! Node-pressure eviction (upstream's eviction manager). Every
//! `housekeeping-interval` it observes `memory.available`, `nodefs.*`,
//! `imagefs.*` and `pid.available`, reports MemoryPressure / DiskPressure /
//! PIDPressure through the node status (`node::Readiness::pressure`; the
//! node lifecycle controller turns them into `node.kubernetes.io/*-pressure`
//! taints), and when a threshold is met past its grace period reclaims:
//! for disk first by image GC, then by evicting one pod per cycle.
//!
//! Eviction of a pod: status `Failed`, reason `Evicted`, upstream's message
//! and a `DisruptionTarget` condition (so the pod worker, which never
//! restarts a pod in a terminal phase, tears it down), a `Evicted` Warning
//! event, then its containers are stopped at once (grace 0 for hard
//! thresholds, the pod's own grace for soft ones) — the one place outside
//! the pod worker that stops a pod's containers, as upstream's eviction
//! manager kills through the pod killer.
//!
//! Layout: `thresholds` (flag parsing), `policy` (decisions), `observe`
//! (signal readers), this file (the loop). Invariants: static, mirror and
//! critical pods are never evicted; an evicted pod that the API still shows
//! non-terminal (a racing status write) is marked Failed again next cycle.

pub mod observe;
pub mod policy;
pub mod thresholds;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::api::core::v1::{Pod, PodCondition};
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams};
use tokio::sync::watch;

use crate::controllers::events::Kind;
use crate::kubelet::cri::api;
use crate::kubelet::imagegc::{ImageGc, node_ref};
use crate::kubelet::node::Readiness;
use crate::kubelet::pods::KubeletContext;
use policy::{Candidate, Observations, Offender, Pressure};
use thresholds::{PressureKind, Threshold};

/// An eviction carried out, to enforce until the API shows it.
struct Evicted {
    message: String,
}

struct Manager {
    ctx: Arc<KubeletContext>,
    gc: Arc<ImageGc>,
    readiness: watch::Sender<Readiness>,
    imagefs: PathBuf,
    state: policy::State,
    reported: Pressure,
    evicted: HashMap<String, Evicted>,
}

/// Run the eviction manager until `stop`.
pub async fn run(
    ctx: Arc<KubeletContext>,
    gc: Arc<ImageGc>,
    readiness: watch::Sender<Readiness>,
    mut stop: watch::Receiver<bool>,
) {
    let imagefs = observe::image_fs_path(&ctx.cri, &ctx.cfg.containerd_dir()).await;
    let interval = ctx.cfg.kubelet.housekeeping_interval;
    let mut m = Manager {
        ctx,
        gc,
        readiness,
        imagefs,
        state: policy::State::default(),
        reported: Pressure::default(),
        evicted: HashMap::new(),
    };
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            r = stop.changed() => if r.is_err() || *stop.borrow() { return },
        }
        m.cycle().await;
    }
}

fn condition_kind_flips(old: Pressure, new: Pressure) -> Vec<(PressureKind, bool)> {
    [
        (PressureKind::Memory, old.memory, new.memory),
        (PressureKind::Disk, old.disk, new.disk),
        (PressureKind::Pid, old.pid, new.pid),
    ]
    .into_iter()
    .filter(|(_, a, b)| a != b)
    .map(|(k, _, b)| (k, b))
    .collect()
}

impl Manager {
    fn observe(&self) -> Observations {
        observe::observations(&self.ctx.cfg.agent_dir, &self.imagefs)
    }

    async fn cycle(&mut self) {
        let ctx = self.ctx.clone();
        let cfg = &ctx.cfg;
        let obs = self.observe();
        let thresholds = cfg.kubelet.eviction_thresholds.clone();
        let decision = policy::step(
            &mut self.state,
            &thresholds,
            &obs,
            cfg.kubelet.eviction_pressure_transition_period,
            Instant::now(),
        );
        self.report_pressure(decision.pressure);
        // the API list is needed only to re-enforce earlier evictions or to
        // pick a victim: an idle node lists nothing
        if self.evicted.is_empty() && decision.reclaim.is_none() {
            return;
        }
        let pods = self.list_pods().await;
        if let Some(pods) = &pods {
            self.enforce_evicted(pods).await;
        }
        let Some(threshold) = decision.reclaim else {
            return;
        };
        let resource = threshold.signal.resource();
        self.ctx.recorder.record_ref(
            node_ref(&cfg.node_name),
            Kind::Warning,
            "EvictionThresholdMet",
            &format!("Attempting to reclaim {resource}"),
        );
        let mut obs = obs;
        if threshold.signal.pressure() == PressureKind::Disk {
            match self.gc.delete_unused().await {
                Ok(freed) => tracing::info!("eviction: image GC freed {freed} bytes"),
                Err(e) => tracing::warn!("eviction: image GC: {e}"),
            }
            obs = self.observe();
            if policy::thresholds_met(std::slice::from_ref(&threshold), &obs, true).is_empty() {
                tracing::info!(
                    "eviction: {} resolved by reclaiming node-level resources",
                    threshold.signal.as_str()
                );
                return;
            }
        }
        let Some(pods) = pods else { return };
        self.evict_one(&threshold, &obs, &pods).await;
    }

    fn report_pressure(&mut self, p: Pressure) {
        if p == self.reported {
            return;
        }
        for (kind, on) in condition_kind_flips(self.reported, p) {
            let (ty, _, _) = policy::condition_texts(kind, on);
            tracing::info!(
                condition = ty,
                pressure = on,
                "eviction: node condition changed"
            );
            let reason = policy::node_event_reason(kind, on);
            self.ctx.recorder.record_ref(
                node_ref(&self.ctx.cfg.node_name),
                Kind::Normal,
                reason,
                &format!("Node {} status is now: {reason}", self.ctx.cfg.node_name),
            );
        }
        self.reported = p;
        self.readiness.send_modify(|r| r.pressure = p);
    }

    async fn list_pods(&self) -> Option<Vec<Pod>> {
        let api: Api<Pod> = Api::all(self.ctx.client.clone());
        let lp = ListParams::default().fields(&format!("spec.nodeName={}", self.ctx.cfg.node_name));
        match api.list(&lp).await {
            Ok(l) => Some(l.items),
            Err(e) => {
                tracing::warn!("eviction: listing pods: {e}");
                None
            }
        }
    }

    /// Pods evicted earlier that a racing status write made non-terminal again.
    async fn enforce_evicted(&mut self, pods: &[Pod]) {
        let by_uid: BTreeMap<&str, &Pod> = pods
            .iter()
            .filter_map(|p| Some((p.metadata.uid.as_deref()?, p)))
            .collect();
        self.evicted
            .retain(|uid, _| by_uid.contains_key(uid.as_str()));
        let redo: Vec<(String, String)> = self
            .evicted
            .iter()
            .filter(|(uid, _)| {
                by_uid.get(uid.as_str()).is_some_and(|p| {
                    p.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Failed")
                })
            })
            .map(|(uid, e)| (uid.clone(), e.message.clone()))
            .collect();
        for (uid, message) in redo {
            if let Some(pod) = by_uid.get(uid.as_str()) {
                tracing::info!(
                    "eviction: pod {} is not Failed yet; marking it again",
                    crate::kubelet::pods::format_pod(pod)
                );
                if self.mark_failed(pod, &message).await {
                    self.stop_containers(&uid, 0).await;
                }
            }
        }
    }

    async fn evict_one(&mut self, threshold: &Threshold, obs: &Observations, pods: &[Pod]) {
        let usage = match observe::container_usage(&self.ctx.cri).await {
            Ok(u) => u,
            Err(e) => {
                tracing::warn!("eviction: reading container stats: {e}");
                HashMap::new()
            }
        };
        let kind = threshold.signal.pressure();
        let per_container = |c: &observe::ContainerUsage| -> Option<i128> {
            match kind {
                PressureKind::Memory => c.memory_working_set,
                PressureKind::Disk => c.writable_layer,
                PressureKind::Pid => None,
            }
        };
        let mut cands: Vec<Candidate> = pods
            .iter()
            .filter(|p| policy::evictable(p))
            .filter(|p| {
                p.metadata
                    .uid
                    .as_deref()
                    .is_some_and(|u| !self.evicted.contains_key(u))
            })
            .map(|p| {
                let stats = p.metadata.uid.as_deref().and_then(|u| usage.get(u));
                Candidate {
                    pod: p,
                    usage: stats.map(|cs| cs.iter().filter_map(per_container).sum()),
                }
            })
            .collect();
        if cands.is_empty() {
            tracing::warn!(
                "eviction: {} threshold met but no pod can be evicted",
                threshold.signal.as_str()
            );
            return;
        }
        policy::rank(&mut cands, kind);
        let pod = cands[0].pod;
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let resource = threshold.signal.resource();
        let offenders: Vec<Offender> = pod
            .spec
            .iter()
            .flat_map(|s| s.containers.iter())
            .filter_map(|c| {
                let used = usage
                    .get(&uid)?
                    .iter()
                    .filter(|u| u.container == c.name)
                    .filter_map(per_container)
                    .max()?;
                let one = Pod {
                    spec: Some(k8s_openapi::api::core::v1::PodSpec {
                        containers: vec![c.clone()],
                        ..Default::default()
                    }),
                    ..Default::default()
                };
                let request = policy::pod_request(&one, resource);
                (kind != PressureKind::Pid && used > request).then(|| Offender {
                    container: c.name.clone(),
                    usage: used,
                    request,
                })
            })
            .collect();
        let message = policy::eviction_message(threshold, obs, &offenders);
        tracing::info!(
            "eviction: evicting pod {}: {message}",
            crate::kubelet::pods::format_pod(pod)
        );
        if !self.mark_failed(pod, &message).await {
            return;
        }
        self.ctx
            .recorder
            .record(pod, Kind::Warning, "Evicted", &message);
        let grace = if threshold.hard {
            0
        } else {
            pod.spec
                .as_ref()
                .and_then(|s| s.termination_grace_period_seconds)
                .unwrap_or(30)
        };
        self.stop_containers(&uid, grace).await;
        self.evicted.insert(uid, Evicted { message });
    }

    /// Patch the pod's status to Failed/Evicted; false when that failed.
    async fn mark_failed(&self, pod: &Pod, message: &str) -> bool {
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let mut conditions = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default();
        conditions.retain(|c| c.type_ != "DisruptionTarget");
        conditions.push(PodCondition {
            type_: "DisruptionTarget".into(),
            status: "True".into(),
            reason: Some("TerminationByKubelet".into()),
            message: Some(message.to_string()),
            last_transition_time: Some(crate::controllers::podutil::chrono_to_time(
                chrono::Utc::now(),
            )),
            ..Default::default()
        });
        let body = serde_json::json!({
            "metadata": {"uid": pod.metadata.uid},
            "status": {
                "phase": "Failed",
                "reason": "Evicted",
                "message": message,
                "conditions": conditions,
            },
        });
        let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &ns);
        match api
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&body))
            .await
        {
            Ok(_) => true,
            Err(e) => {
                tracing::warn!("eviction: marking pod {ns}/{name} Failed: {e}");
                false
            }
        }
    }

    async fn stop_containers(&self, uid: &str, grace: i64) {
        let mut rt = self.ctx.cri.runtime.clone();
        let filter = api::ContainerFilter {
            label_selector: [(crate::kubelet::labels::POD_UID.to_string(), uid.to_string())].into(),
            ..Default::default()
        };
        let containers = match rt
            .list_containers(api::ListContainersRequest {
                filter: Some(filter),
            })
            .await
        {
            Ok(r) => r.into_inner().containers,
            Err(e) => {
                tracing::warn!(
                    "eviction: listing containers of pod uid {uid}: {}",
                    e.message()
                );
                return;
            }
        };
        for c in containers {
            if c.state != api::ContainerState::ContainerRunning as i32 {
                continue;
            }
            if let Err(e) = rt
                .stop_container(api::StopContainerRequest {
                    container_id: c.id.clone(),
                    timeout: grace,
                })
                .await
            {
                tracing::warn!("eviction: stopping container {}: {}", c.id, e.message());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flips() {
        let a = Pressure::default();
        let b = Pressure {
            memory: true,
            ..Default::default()
        };
        assert_eq!(
            condition_kind_flips(a, b),
            vec![(PressureKind::Memory, true)]
        );
        assert_eq!(
            condition_kind_flips(b, a),
            vec![(PressureKind::Memory, false)]
        );
        assert!(condition_kind_flips(a, a).is_empty());
    }
}
