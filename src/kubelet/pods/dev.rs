//! `skiff kubelet-dev` (hidden, for tests): runs the pod side of the
//! kubelet against an existing CRI socket and API server, with a minimal
//! Node (Ready, capacity) and a Lease heartbeat standing in for
//! `kubelet::node`. The real agent wiring replaces this.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::json;

use super::KubeletContext;
use crate::agent::AgentConfig;
use crate::controllers::events::Recorder;
use crate::kubelet::cri::{Cri, CriError};

#[derive(Debug, thiserror::Error)]
pub enum DevError {
    #[error("kubeconfig: {0}")]
    Kubeconfig(String),
    #[error(transparent)]
    Cri(#[from] CriError),
    #[error("registering node: {0}")]
    Node(#[from] kube::Error),
}

pub struct DevArgs {
    pub kubeconfig: PathBuf,
    pub node_name: String,
    pub node_ip: IpAddr,
    pub cri_socket: PathBuf,
    pub agent_dir: PathBuf,
    pub cluster_dns: IpAddr,
    pub cluster_domain: String,
}

pub async fn run(args: DevArgs) -> Result<(), DevError> {
    let kc =
        Kubeconfig::read_from(&args.kubeconfig).map_err(|e| DevError::Kubeconfig(e.to_string()))?;
    let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .map_err(|e| DevError::Kubeconfig(e.to_string()))?;
    let client = kube::Client::try_from(config).map_err(|e| DevError::Kubeconfig(e.to_string()))?;
    let cri = Cri::new(&args.cri_socket)?;
    let version = cri.wait_ready(Duration::from_secs(30)).await?;
    let cfg = AgentConfig {
        cluster_dns: args.cluster_dns,
        cluster_domain: args.cluster_domain.clone(),
        container_runtime_endpoint: Some(args.cri_socket.clone()),
        ..AgentConfig::with_defaults(&args.agent_dir, &args.node_name, args.node_ip)
    };
    for d in [cfg.pods_dir(), cfg.pod_logs_dir()] {
        let _ = std::fs::create_dir_all(d);
    }
    register(&client, &cfg, &version.runtime_version).await?;
    tokio::spawn(heartbeat(client.clone(), cfg.node_name.clone()));
    let ctx = Arc::new(KubeletContext {
        recorder: Recorder::new(client.clone(), "kubelet").with_host(&cfg.node_name),
        client,
        cri,
        cfg,
        running: Default::default(),
    });
    super::run(ctx).await;
    Ok(())
}

fn ready_condition() -> serde_json::Value {
    let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
    json!({"type": "Ready", "status": "True", "reason": "KubeletReady",
           "message": "kubelet is posting ready status",
           "lastHeartbeatTime": now, "lastTransitionTime": now})
}

async fn register(
    client: &kube::Client,
    cfg: &AgentConfig,
    runtime_version: &str,
) -> Result<(), kube::Error> {
    let nodes: Api<Node> = Api::all(client.clone());
    let node: Node = serde_json::from_value(json!({
        "metadata": {"name": cfg.node_name, "labels": {
            "kubernetes.io/hostname": cfg.node_name, "kubernetes.io/os": "linux",
            "kubernetes.io/arch": std::env::consts::ARCH}},
        "spec": {}
    }))
    .unwrap_or_default();
    match nodes.create(&PostParams::default(), &node).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => return Err(e),
    }
    let (cpu, mem) = super::node_capacity();
    let capacity =
        json!({"cpu": format!("{}m", cpu), "memory": format!("{}Ki", mem / 1024), "pods": "110"});
    let status = json!({"status": {
        "capacity": capacity, "allocatable": capacity,
        "conditions": [ready_condition()],
        "addresses": [{"type": "InternalIP", "address": cfg.node_ip.to_string()},
                      {"type": "Hostname", "address": cfg.node_name}],
        "nodeInfo": {"kubeletVersion": "v1.33.0-skiff", "kubeProxyVersion": "",
                     "containerRuntimeVersion": format!("containerd://{runtime_version}"),
                     "operatingSystem": "linux", "architecture": "amd64", "osImage": "skiff",
                     "kernelVersion": "", "machineID": "", "systemUUID": "", "bootID": ""}
    }});
    nodes
        .patch_status(
            &cfg.node_name,
            &PatchParams::default(),
            &Patch::Merge(&status),
        )
        .await?;
    Ok(())
}

async fn heartbeat(client: kube::Client, node: String) {
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let nodes: Api<Node> = Api::all(client);
    loop {
        let now = chrono::Utc::now()
            .format("%Y-%m-%dT%H:%M:%S%.6fZ")
            .to_string();
        let lease = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": node, "namespace": "kube-node-lease"},
            "spec": {"holderIdentity": node, "leaseDurationSeconds": 40, "renewTime": now}});
        let pp = PatchParams::apply("kubelet").force();
        if let Err(e) = leases.patch(&node, &pp, &Patch::Apply(&lease)).await {
            tracing::debug!("kubelet-dev: lease: {e}");
        }
        let st = json!({"status": {"conditions": [ready_condition()]}});
        if let Err(e) = nodes
            .patch_status(&node, &PatchParams::default(), &Patch::Strategic(&st))
            .await
        {
            tracing::debug!("kubelet-dev: node heartbeat: {e}");
        }
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
}
