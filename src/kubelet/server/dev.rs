//! Hidden developer commands (`skiff streaming-dev …`) for testing the kubelet
//! server without the rest of the agent: serve it with a serving certificate
//! issued on the spot from a server's TLS directory, and create/remove a pod
//! through CRI with the kubelet's label contract. Not for production use.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::super::cri::{Cri, api};
use super::super::labels;

#[derive(Subcommand, Debug)]
pub enum DevCommand {
    /// Serve the kubelet API until SIGTERM/SIGINT.
    Serve(ServeArgs),
    /// Create (or reuse) a pod sandbox and start one container in it; prints its id.
    RunContainer(RunArgs),
    /// Stop and remove every sandbox (and its containers) of a pod.
    RemovePod(PodArgs),
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    #[arg(long)]
    pub cri_socket: PathBuf,
    #[arg(long)]
    pub port: u16,
    #[arg(long, default_value = "127.0.0.1")]
    pub address: IpAddr,
    /// A skiff server TLS directory (server-ca.*, client-ca.crt).
    #[arg(long)]
    pub tls_dir: PathBuf,
    #[arg(long, default_value = "/tmp")]
    pub agent_dir: PathBuf,
}

#[derive(Args, Debug, Clone)]
pub struct PodArgs {
    #[arg(long)]
    pub cri_socket: PathBuf,
    #[arg(long, default_value = "default")]
    pub namespace: String,
    #[arg(long)]
    pub name: String,
    #[arg(long, default_value = "")]
    pub uid: String,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub pod: PodArgs,
    /// Root of pod log directories (`<dir>/<ns>_<name>_<uid>`).
    #[arg(long)]
    pub log_dir: PathBuf,
    #[arg(long)]
    pub container: String,
    #[arg(long)]
    pub image: String,
    #[arg(long, default_value_t = 0)]
    pub restart_count: u32,
    #[arg(long)]
    pub tty: bool,
    #[arg(long)]
    pub stdin: bool,
    /// Command and arguments.
    #[arg(trailing_var_arg = true)]
    pub command: Vec<String>,
}

pub async fn run(cmd: DevCommand) -> Result<(), String> {
    match cmd {
        DevCommand::Serve(a) => serve(a).await,
        DevCommand::RunContainer(a) => run_container(a).await,
        DevCommand::RemovePod(a) => remove_pod(a).await,
    }
}

fn issue_serving(tls_dir: &std::path::Path, ip: IpAddr) -> Result<(String, String), String> {
    let read = |n: &str| std::fs::read_to_string(tls_dir.join(n)).map_err(|e| format!("{n}: {e}"));
    let ca_key = rcgen::KeyPair::from_pem(&read("server-ca.key")?).map_err(|e| e.to_string())?;
    let issuer = rcgen::Issuer::from_ca_cert_pem(&read("server-ca.crt")?, ca_key)
        .map_err(|e| e.to_string())?;
    let mut params =
        rcgen::CertificateParams::new(vec!["localhost".to_string()]).map_err(|e| e.to_string())?;
    params.subject_alt_names.push(rcgen::SanType::IpAddress(ip));
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "skiff-kubelet-dev");
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let cert = params.signed_by(&key, &issuer).map_err(|e| e.to_string())?;
    Ok((cert.pem(), key.serialize_pem()))
}

async fn serve(a: ServeArgs) -> Result<(), String> {
    let (cert, key) = issue_serving(&a.tls_dir, a.address)?;
    let client_ca = std::fs::read_to_string(a.tls_dir.join("client-ca.crt"))
        .map_err(|e| format!("client-ca.crt: {e}"))?;
    let tls = super::tls_config(&cert, &key, &client_ca).map_err(|e| e.to_string())?;
    let cri = Cri::new(&a.cri_socket).map_err(|e| e.to_string())?;
    let listener = tokio::net::TcpListener::bind((a.address, a.port))
        .await
        .map_err(|e| format!("bind: {e}"))?;
    let cfg = crate::agent::AgentConfig {
        container_runtime_endpoint: Some(a.cri_socket.clone()),
        kubelet_port: a.port,
        ..crate::agent::AgentConfig::with_defaults(&a.agent_dir, "dev", a.address)
    };
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(super::serve(
        listener,
        tls,
        cri,
        cfg,
        Default::default(),
        client_ca,
        stop_rx,
    ));
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| e.to_string())?;
    eprintln!("kubelet dev server listening on {}:{}", a.address, a.port);
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    let _ = stop_tx.send(true);
    let _ = server.await;
    Ok(())
}

fn pod_labels(p: &PodArgs) -> HashMap<String, String> {
    HashMap::from([
        (labels::POD_NAME.to_string(), p.name.clone()),
        (labels::POD_NAMESPACE.to_string(), p.namespace.clone()),
        (labels::POD_UID.to_string(), p.uid.clone()),
    ])
}

async fn run_container(a: RunArgs) -> Result<(), String> {
    let cri = Cri::new(&a.pod.cri_socket).map_err(|e| e.to_string())?;
    let mut rt = cri.runtime.clone();
    let log_dir = a
        .log_dir
        .join(format!("{}_{}_{}", a.pod.namespace, a.pod.name, a.pod.uid));
    std::fs::create_dir_all(&log_dir).map_err(|e| e.to_string())?;
    let sandbox_config = api::PodSandboxConfig {
        metadata: Some(api::PodSandboxMetadata {
            name: a.pod.name.clone(),
            uid: a.pod.uid.clone(),
            namespace: a.pod.namespace.clone(),
            attempt: 0,
        }),
        hostname: a.pod.name.clone(),
        log_directory: log_dir.display().to_string(),
        labels: pod_labels(&a.pod),
        ..Default::default()
    };
    let existing = rt
        .list_pod_sandbox(api::ListPodSandboxRequest {
            filter: Some(api::PodSandboxFilter {
                label_selector: pod_selector(&a.pod),
                ..Default::default()
            }),
        })
        .await
        .map_err(|e| e.to_string())?
        .into_inner()
        .items
        .into_iter()
        .find(|s| s.state == api::PodSandboxState::SandboxReady as i32);
    let sandbox_id = match existing {
        Some(s) => s.id,
        None => {
            rt.run_pod_sandbox(api::RunPodSandboxRequest {
                config: Some(sandbox_config.clone()),
                runtime_handler: String::new(),
            })
            .await
            .map_err(|e| e.to_string())?
            .into_inner()
            .pod_sandbox_id
        }
    };
    let mut labels_c = pod_labels(&a.pod);
    labels_c.insert(labels::CONTAINER_NAME.to_string(), a.container.clone());
    let config = api::ContainerConfig {
        metadata: Some(api::ContainerMetadata {
            name: a.container.clone(),
            attempt: a.restart_count,
        }),
        image: Some(api::ImageSpec {
            image: a.image.clone(),
            ..Default::default()
        }),
        command: a.command.clone(),
        labels: labels_c,
        annotations: HashMap::from([(
            labels::RESTART_COUNT.to_string(),
            a.restart_count.to_string(),
        )]),
        log_path: format!("{}/{}.log", a.container, a.restart_count),
        stdin: a.stdin,
        tty: a.tty,
        ..Default::default()
    };
    let id = rt
        .create_container(api::CreateContainerRequest {
            pod_sandbox_id: sandbox_id,
            config: Some(config),
            sandbox_config: Some(sandbox_config),
        })
        .await
        .map_err(|e| e.to_string())?
        .into_inner()
        .container_id;
    rt.start_container(api::StartContainerRequest {
        container_id: id.clone(),
    })
    .await
    .map_err(|e| e.to_string())?;
    println!("{id}");
    Ok(())
}

/// Labels selecting a pod's sandboxes: the uid only when given.
fn pod_selector(p: &PodArgs) -> HashMap<String, String> {
    let mut m = pod_labels(p);
    if p.uid.is_empty() {
        m.remove(labels::POD_UID);
    }
    m
}

async fn remove_pod(a: PodArgs) -> Result<(), String> {
    let cri = Cri::new(&a.cri_socket).map_err(|e| e.to_string())?;
    let mut rt = cri.runtime.clone();
    let sandboxes = rt
        .list_pod_sandbox(api::ListPodSandboxRequest {
            filter: Some(api::PodSandboxFilter {
                label_selector: pod_selector(&a),
                ..Default::default()
            }),
        })
        .await
        .map_err(|e| e.to_string())?
        .into_inner()
        .items;
    for s in sandboxes {
        let _ = rt
            .stop_pod_sandbox(api::StopPodSandboxRequest {
                pod_sandbox_id: s.id.clone(),
            })
            .await;
        rt.remove_pod_sandbox(api::RemovePodSandboxRequest {
            pod_sandbox_id: s.id.clone(),
        })
        .await
        .map_err(|e| e.to_string())?;
    }
    Ok(())
}
