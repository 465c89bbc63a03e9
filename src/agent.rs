//! Wires a node agent: `skiff agent` on a worker, and the agent that
//! `skiff server` embeds unless `--disable-agent`.
//!
//! Start order (each step needs the one before):
//! 1. join: obtain node credentials from the server (`join`), or take them
//!    straight from the server's PKI when embedded;
//! 2. containerd: start it as a child with a generated config, or use
//!    `--container-runtime-endpoint` (`containerd`);
//! 3. images: import the built-in pause image and `<agent-dir>/images/*.tar`
//!    (`images`);
//! 4. kubelet: register the Node, wait for its podCIDR, write the CNI
//!    config, then run pod workers and the kubelet HTTPS server (`kubelet`).

pub mod containerd;
pub mod images;
pub mod join;
pub mod setup;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

/// Everything an agent needs, resolved once from flags, config file and the
/// server's join answer.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// `<data-dir>/agent`: credentials, containerd state, CNI state, pod dirs.
    pub agent_dir: PathBuf,
    pub node_name: String,
    pub node_ip: IpAddr,
    /// Pod network of the whole cluster (`--cluster-cidr` of the server).
    pub cluster_cidr: String,
    pub service_cidr: String,
    pub cluster_dns: IpAddr,
    pub cluster_domain: String,
    /// Existing CRI socket; `None` runs containerd as a child.
    pub container_runtime_endpoint: Option<PathBuf>,
    /// Port of the kubelet HTTPS server (logs, exec, attach, port-forward).
    pub kubelet_port: u16,
    /// `--node-label`, applied when the Node is first registered.
    pub node_labels: BTreeMap<String, String>,
    /// `--node-taint`, applied when the Node is first registered.
    pub node_taints: Vec<k8s_openapi::api::core::v1::Taint>,
    /// The embedded agent of a server (labelled as control plane).
    pub control_plane: bool,
}

impl AgentConfig {
    /// Where the generated containerd config, its state and its socket live.
    pub fn containerd_dir(&self) -> PathBuf {
        self.agent_dir.join("containerd")
    }
    /// Airgap image tarballs imported at start.
    pub fn images_dir(&self) -> PathBuf {
        self.agent_dir.join("images")
    }
    /// CNI config directory containerd watches (`net.d`).
    pub fn cni_conf_dir(&self) -> PathBuf {
        self.agent_dir.join("etc/cni/net.d")
    }
    /// CNI binaries: `skiff-cni` and `loopback`, symlinks to this executable.
    pub fn cni_bin_dir(&self) -> PathBuf {
        self.agent_dir.join("bin")
    }
    /// CNI IPAM state (`skiff-cni` reads this from its config as `dataDir`).
    pub fn cni_state_dir(&self) -> PathBuf {
        self.agent_dir.join("cni")
    }
    /// Per-pod directories: `<pods>/<uid>/volumes/<plugin>/<name>`.
    pub fn pods_dir(&self) -> PathBuf {
        self.agent_dir.join("pods")
    }
    /// Container logs: `<pod-logs>/<ns>_<name>_<uid>/<container>/<restart>.log`.
    pub fn pod_logs_dir(&self) -> PathBuf {
        self.agent_dir.join("pod-logs")
    }
    /// Static pod manifests.
    pub fn pod_manifests_dir(&self) -> PathBuf {
        self.agent_dir.join("pod-manifests")
    }
    /// The CRI socket the kubelet talks to.
    pub fn cri_socket(&self) -> PathBuf {
        self.container_runtime_endpoint
            .clone()
            .unwrap_or_else(|| self.containerd_dir().join("containerd.sock"))
    }
}

/// Run a joined agent until SIGTERM/SIGINT.
///
/// For now (until the kubelet, CNI and containerd parts are wired in) this
/// only registers the Node and keeps its Lease and status fresh, reporting
/// Ready: enough to test joining end to end without containerd.
pub async fn run_joined(cfg: AgentConfig, joined: join::JoinedNode) -> Result<(), join::JoinError> {
    let client = joined.client().await?;
    let input = crate::kubelet::node::NodeSpecInput {
        name: cfg.node_name.clone(),
        ips: vec![cfg.node_ip],
        labels: cfg.node_labels.clone(),
        taints: cfg.node_taints.clone(),
        control_plane: cfg.control_plane,
        kubelet_port: cfg.kubelet_port,
        container_runtime_version: "containerd://unknown".into(),
    };
    let (_ready_tx, ready_rx) =
        tokio::sync::watch::channel(crate::kubelet::node::Readiness::ready());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let heartbeat = tokio::spawn(crate::kubelet::node::register_and_heartbeat(
        client,
        input,
        cfg.agent_dir.clone(),
        ready_rx,
        stop_rx,
    ));
    setup::wait_for_signal().await;
    tracing::info!("shutting down");
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), heartbeat).await;
    Ok(())
}
