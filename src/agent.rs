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
//! 4. kubelet: register the Node, start the kubelet HTTPS server and the
//!    pod workers (static pods run from their files whether or not the API
//!    answers), wait for the node's podCIDR and write the CNI config
//!    (`kubelet`).
//! 5. memory: once the agent has settled, drop start-up pages and free heap
//!    (`memory`; `skiff agent` also runs on `memory::runtime`).

pub mod containerd;
pub mod images;
pub mod join;
pub mod memory;
pub mod routes;
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
    /// `--kubelet-arg` settings (image GC, eviction).
    pub kubelet: crate::kubelet::settings::KubeletSettings,
    /// `--flannel-backend`: how pods reach pods on other nodes.
    pub flannel_backend: routes::plan::Backend,
}

impl AgentConfig {
    /// A config with the cluster defaults (`10.42.0.0/16`, `10.43.0.0/16`,
    /// DNS `10.43.0.10`, `cluster.local`, containerd as a child, kubelet on
    /// 10250, no labels or taints): tests and developer harnesses start here.
    pub fn with_defaults(
        agent_dir: impl Into<PathBuf>,
        node_name: &str,
        node_ip: IpAddr,
    ) -> AgentConfig {
        AgentConfig {
            agent_dir: agent_dir.into(),
            node_name: node_name.to_string(),
            node_ip,
            cluster_cidr: "10.42.0.0/16".into(),
            service_cidr: "10.43.0.0/16".into(),
            cluster_dns: IpAddr::V4(std::net::Ipv4Addr::new(10, 43, 0, 10)),
            cluster_domain: "cluster.local".into(),
            container_runtime_endpoint: None,
            kubelet_port: 10250,
            node_labels: BTreeMap::new(),
            node_taints: Vec::new(),
            control_plane: false,
            kubelet: Default::default(),
            flannel_backend: routes::plan::Backend::default(),
        }
    }

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

/// What the kubelet's HTTPS server needs besides the config: its serving
/// certificate and the CA that signs the API server's client certificate.
#[derive(Clone)]
pub struct KubeletCredentials {
    pub serving_cert_pem: String,
    pub serving_key_pem: String,
    pub client_ca_pem: String,
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("{0}")]
    Join(#[from] join::JoinError),
    #[error("{0}")]
    Containerd(#[from] containerd::ContainerdError),
    #[error("{0}")]
    Cri(#[from] crate::kubelet::cri::CriError),
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("kubelet server: {0}")]
    KubeletServer(String),
}

fn io_err(what: &'static str, path: &std::path::Path) -> impl FnOnce(std::io::Error) -> AgentError {
    let path = path.display().to_string();
    move |source| AgentError::Io { what, path, source }
}

/// MTU of pod interfaces: leaves room for a VXLAN header, so the same value
/// works once nodes are linked by an overlay.
const POD_MTU: u32 = 1450;

/// Run a joined agent until SIGTERM/SIGINT.
pub async fn run_joined(cfg: AgentConfig, joined: join::JoinedNode) -> Result<(), AgentError> {
    let client = joined.client().await?;
    let creds = KubeletCredentials {
        serving_cert_pem: joined.serving_cert_pem.clone(),
        serving_key_pem: joined.serving_key_pem.clone(),
        client_ca_pem: joined.client_ca_pem.clone(),
    };
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let agent = tokio::spawn(run(cfg, client, creds, stop_rx));
    tokio::select! {
        r = agent => {
            return match r {
                Ok(r) => r,
                Err(e) => Err(AgentError::KubeletServer(format!("agent task failed: {e}"))),
            };
        }
        _ = setup::wait_for_signal() => {}
    }
    tracing::info!("shutting down");
    let _ = stop_tx.send(true);
    // containerd gets its SIGTERM from the supervisor; pods keep running
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    Ok(())
}

/// The node agent: containerd, images, CNI, node status, pod workers and the
/// kubelet HTTPS server. Returns only on a start-up error; runs until `stop`.
pub async fn run(
    cfg: AgentConfig,
    client: kube::Client,
    creds: KubeletCredentials,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(), AgentError> {
    use std::os::unix::fs::DirBuilderExt;
    use std::sync::Arc;
    use std::time::Duration;
    let started = std::time::Instant::now();
    for dir in [
        cfg.agent_dir.clone(),
        cfg.pods_dir(),
        cfg.pod_logs_dir(),
        cfg.images_dir(),
        cfg.pod_manifests_dir(),
        cfg.cni_conf_dir(),
        cfg.cni_bin_dir(),
        cfg.cni_state_dir(),
    ] {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(io_err("creating directory", &dir))?;
    }
    crate::cni::install_binaries(&cfg.cni_bin_dir())
        .map_err(io_err("installing CNI plugins into", &cfg.cni_bin_dir()))?;

    // 1. the container runtime
    let mut tasks = Vec::new();
    if cfg.container_runtime_endpoint.is_none() {
        let ctd =
            containerd::Containerd::start(&cfg, std::path::Path::new(containerd::REGISTRIES_PATH))
                .await?;
        tasks.push(tokio::spawn(ctd.supervise(stop.clone())));
    }
    let cri = crate::kubelet::cri::Cri::new(&cfg.cri_socket())?;
    let version = cri.wait_ready(Duration::from_secs(60)).await?;
    tracing::info!(
        "container runtime {} {} ready after {:?}",
        version.runtime_name,
        version.runtime_version,
        started.elapsed()
    );

    // 2. images: the built-in pause image and airgap tarballs
    // imported images are pinned: image GC never removes them (as k3s)
    let mut pinned_images: std::collections::HashSet<String> =
        [images::PAUSE_IMAGE.to_string()].into();
    match images::import_all(&cfg.cri_socket(), &cfg.images_dir()).await {
        Ok(report) => {
            pinned_images.extend(report.images.iter().map(|i| i.name.clone()));
            for f in &report.failures {
                tracing::error!("importing image tarball {}: {}", f.file.display(), f.error);
            }
            tracing::info!(
                "images: {} ready ({} failed) in {:?}",
                report.images.len(),
                report.failures.len(),
                report.elapsed
            );
        }
        Err(e) => tracing::error!("importing images: {e}"),
    }

    // 3. the Node, its Lease and status; NotReady until the network is set up
    let (ready_tx, ready_rx) = tokio::sync::watch::channel(crate::kubelet::node::Readiness {
        runtime_ready: true,
        network_ready: false,
        pressure: Default::default(),
        message: "container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady message:Network plugin returns error: cni plugin not initialized".into(),
    });
    let input = crate::kubelet::node::NodeSpecInput {
        name: cfg.node_name.clone(),
        ips: vec![cfg.node_ip],
        labels: cfg.node_labels.clone(),
        taints: cfg.node_taints.clone(),
        control_plane: cfg.control_plane,
        kubelet_port: cfg.kubelet_port,
        container_runtime_version: crate::kubelet::node::runtime_version_string(
            &version.runtime_name,
            &version.runtime_version,
        ),
        allocatable: crate::kubelet::node::AllocatableSettings::from_settings(&cfg.kubelet),
    };
    tasks.push(tokio::spawn(crate::kubelet::node::register_and_heartbeat(
        client.clone(),
        input,
        cfg.agent_dir.clone(),
        ready_rx,
        stop.clone(),
    )));

    // routes to the pods of other nodes (own loop: waits for the Node itself)
    tasks.push(tokio::spawn(routes::run(
        client.clone(),
        routes::RoutesConfig {
            backend: cfg.flannel_backend,
            node_name: cfg.node_name.clone(),
            node_ip: cfg.node_ip,
            cluster_cidr: cfg.cluster_cidr.clone(),
        },
        stop.clone(),
    )));

    // 4. the kubelet HTTPS server (logs, exec, attach, port-forward)
    let tls = crate::kubelet::server::tls_config(
        &creds.serving_cert_pem,
        &creds.serving_key_pem,
        &creds.client_ca_pem,
    )
    .map_err(|e| AgentError::KubeletServer(e.to_string()))?;
    let addr = std::net::SocketAddr::new(
        if cfg.node_ip.is_loopback() {
            cfg.node_ip
        } else {
            std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)
        },
        cfg.kubelet_port,
    );
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| AgentError::KubeletServer(format!("listening on {addr}: {e}")))?;
    let running = crate::kubelet::running::RunningPods::default();
    tasks.push(tokio::spawn(crate::kubelet::server::serve(
        listener,
        tls,
        cri.clone(),
        cfg.clone(),
        running.clone(),
        creds.client_ca_pem.clone(),
        stop.clone(),
    )));

    // 5. pod workers: static pods run from their files even while the API
    // server cannot be reached (API pods wait for the network below)
    let ctx = Arc::new(crate::kubelet::pods::KubeletContext {
        recorder: crate::controllers::events::Recorder::new(client.clone(), "kubelet")
            .with_host(&cfg.node_name),
        client: client.clone(),
        cri: cri.clone(),
        cfg: cfg.clone(),
        running,
    });
    let pods = tokio::spawn(crate::kubelet::pods::run(ctx.clone()));

    // 6. pod network: the node's podCIDR becomes the CNI config
    let pod_cidr = match crate::kubelet::node::wait_for_pod_cidr(
        &client,
        &cfg.node_name,
        stop.clone(),
    )
    .await
    {
        Ok(c) => c,
        Err(e) => {
            tracing::info!("agent stopping before the node got a podCIDR: {e}");
            pods.abort();
            return Ok(());
        }
    };
    let conflist = crate::cni::conflist(
        "skiff0",
        &pod_cidr,
        &cfg.cluster_cidr,
        POD_MTU,
        &cfg.cni_state_dir(),
    );
    let conf_path = cfg.cni_conf_dir().join("10-skiff.conflist");
    let tmp = conf_path.with_extension("tmp");
    std::fs::write(&tmp, conflist)
        .and_then(|_| std::fs::rename(&tmp, &conf_path))
        .map_err(io_err("writing CNI config", &conf_path))?;
    // containerd picks the config up within about a second
    let mut network_ready = false;
    for _ in 0..100 {
        let mut rt = cri.runtime.clone();
        if let Ok(st) = rt
            .status(crate::kubelet::cri::api::StatusRequest::default())
            .await
            && st.into_inner().status.is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.r#type == "NetworkReady" && c.status)
            })
        {
            network_ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if !network_ready {
        tracing::warn!("containerd has not reported NetworkReady yet; continuing");
    }
    let _ = ready_tx.send(crate::kubelet::node::Readiness::ready());
    tracing::info!(
        "node {} ready (podCIDR {pod_cidr}) after {:?}",
        cfg.node_name,
        started.elapsed()
    );

    // 7. image GC and node-pressure eviction
    let gc = crate::kubelet::imagegc::ImageGc::new(
        ctx.cri.clone(),
        crate::kubelet::imagegc::ImageGcConfig {
            high_threshold: ctx.cfg.kubelet.image_gc_high_threshold,
            low_threshold: ctx.cfg.kubelet.image_gc_low_threshold,
            min_age: ctx.cfg.kubelet.minimum_image_ttl,
            pinned_names: pinned_images,
            fallback_fs: ctx.cfg.containerd_dir(),
            node_name: ctx.cfg.node_name.clone(),
        },
        ctx.recorder.clone(),
    );
    tasks.push(tokio::spawn(crate::kubelet::imagegc::run(
        gc.clone(),
        ctx.cfg.kubelet.image_gc_period,
        stop.clone(),
    )));
    tasks.push(tokio::spawn(crate::kubelet::eviction::run(
        ctx,
        gc,
        ready_tx,
        stop.clone(),
    )));
    tasks.push(tokio::spawn(memory::trim_after_startup(stop.clone())));
    let mut stop = stop;
    let _ = stop.wait_for(|s| *s).await;
    pods.abort();
    for t in tasks {
        // the containerd supervisor stops containerd itself on `stop`
        let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
    }
    Ok(())
}
