//! Wires `skiff server`: data directories, PKI and token, the SQLite store,
//! the API server and its in-process loops, the admin kubeconfig, and
//! signal handling (SIGTERM/SIGINT drain HTTP, flush the store, exit 0).

use std::net::SocketAddr;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::apiserver::{self, ApiServerConfig, AppState, controllers};
use crate::config::ServerConfig;
use crate::pki;
use crate::store::{self, Backend};

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("{0}")]
    Pki(#[from] pki::PkiError),
    #[error("store: {0}")]
    Store(#[from] store::StoreError),
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Api(#[from] apiserver::error::ApiError),
    #[error("{0}")]
    Config(String),
}

fn mkdir_private(path: &Path) -> Result<(), ServerError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(|source| ServerError::Io {
            what: "creating directory",
            path: path.display().to_string(),
            source,
        })
}

pub async fn run(cfg: ServerConfig) -> Result<(), ServerError> {
    let server_dir = cfg.data_dir.join("server");
    mkdir_private(&server_dir.join("db"))?;
    let tls_dir = server_dir.join("tls");
    let mut ips = vec![cfg.advertise_address];
    if !cfg.bind_address.is_unspecified() && !ips.contains(&cfg.bind_address) {
        ips.push(cfg.bind_address);
    }
    let pki = pki::ensure_server_pki(
        &tls_dir,
        &pki::PkiOptions {
            cluster_name: None,
            hostnames: vec![crate::config::hostname()],
            ips,
            extra_sans: cfg.tls_sans.clone(),
            service_ip: std::net::IpAddr::V4(cfg.service_ip),
        },
    )?;
    let token_path = server_dir.join("token");
    let token = match &cfg.token {
        Some(t) => {
            let parsed = pki::parse_token(t)?;
            if let Some(h) = &parsed.ca_hash
                && *h != pki::ca_hash(pki.server_ca_pem())
            {
                return Err(ServerError::Config(
                        "the --token CA hash does not match this server's CA; pass only the secret part or the token printed by this server".into(),
                    ));
            }
            let full = format!(
                "K10{}::server:{}",
                pki::ca_hash(pki.server_ca_pem()),
                parsed.password
            );
            write_token(&token_path, &full)?;
            full
        }
        None => pki::ensure_server_token(&token_path, pki.server_ca_pem())?,
    };
    let db_path = server_dir.join("db").join("state.db");
    let backend = store::SqliteBackend::open(&db_path, store::SqliteOptions::default()).await?;
    let store_dyn: Arc<dyn Backend> = backend.clone();
    let advertise = SocketAddr::new(cfg.advertise_address, cfg.port).to_string();
    let app = AppState::new(
        store_dyn.clone(),
        ApiServerConfig {
            service_cidr: cfg.service_cidr.clone(),
            advertise: advertise.clone(),
            server_token: token.clone(),
            ca_pem: pki.server_ca_pem().to_string(),
            service_account_key_pem: Some(pki.service_account_key_pem().to_string()),
            join: Some(apiserver::join::JoinConfig {
                issuer: Arc::new(pki.clone()),
                cluster: apiserver::join::ClusterInfo {
                    cluster_cidr: cfg.cluster_cidr.clone(),
                    service_cidr: cfg.service_cidr.clone(),
                    cluster_dns: std::net::IpAddr::V4(cfg.cluster_dns),
                    cluster_domain: cfg.cluster_domain.clone(),
                    api_server_url: format!("https://{advertise}"),
                },
                server_secret: pki::parse_token(&token)?.password,
            }),
            kubelet_client: Some((
                pki.kube_apiserver_client().cert_pem().to_string(),
                pki.kube_apiserver_client().key_pem().to_string(),
            )),
        },
    );
    controllers::load_crds(&app).await?;
    controllers::bootstrap(
        &app,
        &cfg.service_ip.to_string(),
        &cfg.advertise_address.to_string(),
        cfg.port,
    )
    .await?;
    let compactor = store::spawn_compactor(
        store_dyn.clone(),
        Duration::from_secs(cfg.compact_interval_secs),
        cfg.compact_keep,
    );
    let router = apiserver::router(app.clone());
    // stable across restarts of this server (same host and data dir), so a
    // restart takes its own lease back at once instead of waiting it out
    let identity = {
        use sha2::Digest;
        let dir = std::fs::canonicalize(&cfg.data_dir).unwrap_or(cfg.data_dir.clone());
        let h = sha2::Sha256::digest(dir.to_string_lossy().as_bytes());
        format!("{}_{}", crate::config::hostname(), hex::encode(&h[..4]))
    };
    let cm_config = crate::controllers::Config {
        ca_pem: pki.server_ca_pem().to_string(),
        cluster_cidr: cfg.cluster_cidr.clone(),
        node_cidr_mask: 24,
        storage_dir: cfg.data_dir.join("storage"),
        node_monitor_grace_period: cfg.node_monitor_grace_period,
    };
    let cm_client = crate::inproc::client(
        router.clone(),
        crate::inproc::users::CONTROLLER_MANAGER,
        &[],
    );
    let (shared, informer_tasks) = crate::controllers::informers::Shared::start(&cm_client);
    let cm_shared = shared.clone();
    let mut tasks = vec![
        tokio::spawn(crate::controllers::leader::run(
            cm_client.clone(),
            "kube-controller-manager",
            identity.clone(),
            move || {
                crate::controllers::run_all(cm_client.clone(), cm_config.clone(), cm_shared.clone())
            },
        )),
        tokio::spawn(controllers::run_crds(app.clone())),
        tokio::spawn(controllers::run_namespaces(app.clone())),
        tokio::spawn(controllers::run_gc(app.clone())),
        tokio::spawn(apiserver::metrics_api::run(app.clone())),
        compactor,
    ];
    tasks.extend(informer_tasks);
    if !cfg.disable_scheduler {
        let sched_client =
            crate::inproc::client(router.clone(), crate::inproc::users::SCHEDULER, &[]);
        tasks.push(tokio::spawn(crate::controllers::leader::run(
            sched_client.clone(),
            "kube-scheduler",
            identity.clone(),
            move || crate::scheduler::run(sched_client.clone(), shared.clone()),
        )));
    }
    let addr = SocketAddr::new(cfg.bind_address, cfg.port);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Io {
            what: "listening on",
            path: addr.to_string(),
            source,
        })?;
    let tls = pki.rustls_server_config()?;
    let local_url = format!("https://127.0.0.1:{}", cfg.port);
    pki::write_kubeconfig(
        &cfg.kubeconfig_path,
        cfg.kubeconfig_mode,
        &local_url,
        pki.server_ca_pem(),
        pki.admin().cert_pem(),
        pki.admin().key_pem(),
        "default",
    )?;
    tracing::info!(
        "skiff server listening on https://{addr}; admin kubeconfig at {}",
        cfg.kubeconfig_path.display()
    );
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(apiserver::serve_tls(
        listener,
        tls,
        router.clone(),
        stop_rx.clone(),
    ));
    let mut agent = match cfg.disable_agent {
        true => None,
        false => Some(tokio::spawn(run_embedded_agent(
            &cfg,
            &pki,
            router,
            stop_rx.clone(),
        )?)),
    };
    tokio::select! {
        _ = wait_for_signal() => {}
        Some(r) = async { match agent.as_mut() { Some(a) => Some(a.await), None => None } } => {
            let msg = match r {
                Ok(Ok(())) => "the embedded agent stopped".to_string(),
                Ok(Err(e)) => format!("embedded agent: {e}"),
                Err(e) => format!("embedded agent: {e}"),
            };
            let _ = stop_tx.send(true);
            let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
            backend.close().await;
            return Err(ServerError::Config(format!(
                "{msg} (run with --disable-agent for a control plane without a node)"
            )));
        }
    }
    tracing::info!("shutting down");
    let _ = stop_tx.send(true);
    if let Some(a) = agent {
        let _ = tokio::time::timeout(Duration::from_secs(5), a).await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    for t in tasks {
        t.abort();
    }
    backend.close().await;
    Ok(())
}

/// The node agent in this process: its API identity is `system:node:<name>`
/// over the in-process transport, and its kubelet serving certificate comes
/// straight from the server's CA (no join round trip).
fn run_embedded_agent(
    cfg: &ServerConfig,
    pki: &pki::ServerPki,
    router: axum::Router,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Result<
    impl std::future::Future<Output = Result<(), crate::agent::AgentError>> + Send + use<>,
    ServerError,
> {
    let node = cfg.node_name.clone();
    let (serving_cert_pem, serving_key_pem) =
        pki.issue_serving_cert(&node, &[node.as_str()], &[cfg.node_ip])?;
    let agent_cfg = crate::agent::AgentConfig {
        agent_dir: cfg.data_dir.join("agent"),
        node_name: node.clone(),
        node_ip: cfg.node_ip,
        cluster_cidr: cfg.cluster_cidr.clone(),
        service_cidr: cfg.service_cidr.clone(),
        cluster_dns: std::net::IpAddr::V4(cfg.cluster_dns),
        cluster_domain: cfg.cluster_domain.clone(),
        container_runtime_endpoint: cfg.container_runtime_endpoint.clone(),
        kubelet_port: cfg.kubelet_port,
        node_labels: cfg.node_labels.clone(),
        node_taints: cfg.node_taints.clone(),
        control_plane: true,
        kubelet: cfg.kubelet.clone(),
        flannel_backend: cfg.flannel_backend,
    };
    let client = crate::inproc::client(router, &format!("system:node:{node}"), &["system:nodes"]);
    let creds = crate::agent::KubeletCredentials {
        serving_cert_pem,
        serving_key_pem,
        client_ca_pem: pki.client_ca_pem().to_string(),
    };
    Ok(crate::agent::run(agent_cfg, client, creds, stop))
}

fn write_token(path: &Path, token: &str) -> Result<(), ServerError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|source| ServerError::Io {
            what: "writing",
            path: tmp.display().to_string(),
            source,
        })?;
    f.write_all(format!("{token}\n").as_bytes())
        .and_then(|_| f.sync_all())
        .and_then(|_| std::fs::rename(&tmp, path))
        .map_err(|source| ServerError::Io {
            what: "writing",
            path: path.display().to_string(),
            source,
        })
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
