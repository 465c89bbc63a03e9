//! Reading a pod's state out of CRI (sandboxes, container instances) into
//! the planner's `PodRuntime`, and the small CRI verbs the worker uses.
//!
//! Invariant: a pod's runtime objects are found by the
//! `io.kubernetes.pod.uid` label only — that is how a restarted kubelet
//! adopts what it created before.

use std::collections::HashMap;

use crate::kubelet::cri::{Cri, CriError, api};
use crate::kubelet::labels;
use crate::kubelet::plan::{CState, ObservedContainer, ObservedSandbox, PodRuntime};

fn uid_filter(uid: &str) -> HashMap<String, String> {
    HashMap::from([(labels::POD_UID.to_string(), uid.to_string())])
}

fn cstate(s: i32) -> CState {
    match api::ContainerState::try_from(s) {
        Ok(api::ContainerState::ContainerCreated) => CState::Created,
        Ok(api::ContainerState::ContainerRunning) => CState::Running,
        Ok(api::ContainerState::ContainerExited) => CState::Exited,
        _ => CState::Unknown,
    }
}

/// Everything CRI holds for pod `uid`, newest first. The two listings, and
/// then the statuses, are asked for concurrently.
pub async fn observe(cri: &Cri, uid: &str) -> Result<PodRuntime, CriError> {
    let rt = cri.runtime.clone();
    let mut c1 = rt.clone();
    let list_sandboxes = c1.list_pod_sandbox(api::ListPodSandboxRequest {
        filter: Some(api::PodSandboxFilter {
            label_selector: uid_filter(uid),
            ..Default::default()
        }),
    });
    let mut c2 = rt.clone();
    let list_containers = c2.list_containers(api::ListContainersRequest {
        filter: Some(api::ContainerFilter {
            label_selector: uid_filter(uid),
            ..Default::default()
        }),
    });
    let (sandboxes, containers) = tokio::try_join!(list_sandboxes, list_containers)?;
    let (sandboxes, containers) = (
        sandboxes.into_inner().items,
        containers.into_inner().containers,
    );
    let mut out = PodRuntime::default();
    for s in sandboxes {
        out.sandboxes.push(ObservedSandbox {
            id: s.id.clone(),
            attempt: s.metadata.as_ref().map(|m| m.attempt).unwrap_or(0),
            ready: s.state == api::PodSandboxState::SandboxReady as i32,
            created_at: s.created_at,
            ips: Vec::new(),
        });
    }
    out.normalize();
    let current = out
        .sandboxes
        .first()
        .filter(|s| s.ready)
        .map(|s| s.id.clone());
    let sandbox_status = async {
        match current {
            Some(id) => rt
                .clone()
                .pod_sandbox_status(api::PodSandboxStatusRequest {
                    pod_sandbox_id: id,
                    verbose: false,
                })
                .await
                .map(|r| r.into_inner().status),
            None => Ok(None),
        }
    };
    let statuses = futures::future::join_all(containers.iter().map(|c| {
        let mut client = rt.clone();
        let container_id = c.id.clone();
        async move {
            client
                .container_status(api::ContainerStatusRequest {
                    container_id,
                    verbose: false,
                })
                .await
        }
    }));
    let (sandbox_status, statuses) = tokio::join!(sandbox_status, statuses);
    if let (Some(cur), Some(net)) = (
        out.sandboxes.first_mut(),
        sandbox_status?.and_then(|s| s.network),
    ) {
        if !net.ip.is_empty() {
            cur.ips.push(net.ip);
        }
        cur.ips.extend(
            net.additional_ips
                .into_iter()
                .map(|i| i.ip)
                .filter(|i| !i.is_empty()),
        );
    }
    for (c, st) in containers.into_iter().zip(statuses) {
        let st = match st {
            Ok(r) => r.into_inner().status,
            Err(e) if e.code() == tonic::Code::NotFound => continue,
            Err(e) => return Err(e.into()),
        };
        let Some(st) = st else { continue };
        let name = c
            .labels
            .get(labels::CONTAINER_NAME)
            .cloned()
            .or_else(|| c.metadata.as_ref().map(|m| m.name.clone()))
            .unwrap_or_default();
        let restart_count = c
            .annotations
            .get(labels::RESTART_COUNT)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| c.metadata.as_ref().map(|m| m.attempt as i32).unwrap_or(0));
        out.containers.push(ObservedContainer {
            id: c.id.clone(),
            name,
            sandbox_id: c.pod_sandbox_id.clone(),
            restart_count,
            state: cstate(st.state),
            created_at: st.created_at,
            started_at: st.started_at,
            finished_at: st.finished_at,
            exit_code: st.exit_code,
            reason: st.reason.clone(),
            message: st.message.clone(),
            image: st.image.map(|i| i.image).unwrap_or_default(),
            image_ref: st.image_ref.clone(),
            hash: c
                .annotations
                .get(labels::CONTAINER_HASH)
                .cloned()
                .unwrap_or_default(),
        });
    }
    out.normalize();
    Ok(out)
}

/// Uids of every pod that has a sandbox in the runtime.
pub async fn sandbox_uids(cri: &Cri) -> Result<Vec<(String, String)>, CriError> {
    let items = cri
        .runtime
        .clone()
        .list_pod_sandbox(api::ListPodSandboxRequest { filter: None })
        .await?
        .into_inner()
        .items;
    Ok(items
        .into_iter()
        .filter_map(|s| {
            let uid = s.labels.get(labels::POD_UID)?.clone();
            Some((uid, s.id))
        })
        .collect())
}

/// `(pod uid, container id, state)` of every labelled container: the
/// relister compares these between rounds to wake pod workers.
pub async fn container_states(cri: &Cri) -> Result<Vec<(String, String, i32)>, CriError> {
    let items = cri
        .runtime
        .clone()
        .list_containers(api::ListContainersRequest { filter: None })
        .await?
        .into_inner()
        .containers;
    Ok(items
        .into_iter()
        .filter_map(|c| {
            let uid = c.labels.get(labels::POD_UID)?.clone();
            Some((uid, c.id, c.state))
        })
        .collect())
}

pub async fn stop_container(cri: &Cri, id: &str, timeout: i64) -> Result<(), CriError> {
    match cri
        .runtime
        .clone()
        .stop_container(api::StopContainerRequest {
            container_id: id.to_string(),
            timeout,
        })
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if e.code() == tonic::Code::NotFound => Ok(()),
        Err(e) => Err(e.into()),
    }
}

pub async fn remove_container(cri: &Cri, id: &str) -> Result<(), CriError> {
    match cri
        .runtime
        .clone()
        .remove_container(api::RemoveContainerRequest {
            container_id: id.to_string(),
        })
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if e.code() == tonic::Code::NotFound => Ok(()),
        Err(e) => Err(e.into()),
    }
}

pub async fn stop_sandbox(cri: &Cri, id: &str) -> Result<(), CriError> {
    match cri
        .runtime
        .clone()
        .stop_pod_sandbox(api::StopPodSandboxRequest {
            pod_sandbox_id: id.to_string(),
        })
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if e.code() == tonic::Code::NotFound => Ok(()),
        Err(e) => Err(e.into()),
    }
}

pub async fn remove_sandbox(cri: &Cri, id: &str) -> Result<(), CriError> {
    stop_sandbox(cri, id).await?;
    match cri
        .runtime
        .clone()
        .remove_pod_sandbox(api::RemovePodSandboxRequest {
            pod_sandbox_id: id.to_string(),
        })
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if e.code() == tonic::Code::NotFound => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Remove the pod cgroup (`cgroup_parent`) in every hierarchy; runc never
/// does. Directories still holding tasks stay.
pub fn remove_pod_cgroups(uid: &str) {
    let Ok(rd) = std::fs::read_dir("/sys/fs/cgroup") else {
        return;
    };
    for h in rd.flatten() {
        for qos in ["Guaranteed", "Burstable", "BestEffort"] {
            let rel = super::sandbox::cgroup_parent(qos, uid);
            let p = h.path().join(rel.trim_start_matches('/'));
            if p.is_dir() {
                let _ = std::fs::remove_dir(&p);
            }
        }
    }
}
