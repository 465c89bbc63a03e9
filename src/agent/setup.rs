//! `skiff agent` flags → a validated [`AgentSetup`] (the agent's
//! counterpart of `config::ServerConfig`), and the [`AgentConfig`] built
//! from it once the server's join answer supplies the cluster settings.
//!
//! Invariant: every error names the flag to fix; the token is never part of
//! an error or of `Debug` output.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

use super::AgentConfig;
use super::join::ClusterInfo;
use crate::cli::AgentArgs;
use crate::config::ConfigError;
use crate::kubelet::node::{parse_label, parse_taint};

/// Validated agent settings known before joining.
#[derive(Clone)]
pub struct AgentSetup {
    pub server_url: String,
    pub token: String,
    pub agent_dir: PathBuf,
    pub node_name: String,
    /// Never empty; the first is the primary node IP.
    pub node_ips: Vec<IpAddr>,
    pub node_labels: BTreeMap<String, String>,
    pub node_taints: Vec<k8s_openapi::api::core::v1::Taint>,
    pub container_runtime_endpoint: Option<PathBuf>,
    pub kubelet_port: u16,
    /// `--kubelet-arg` settings.
    pub kubelet: crate::kubelet::settings::KubeletSettings,
    pub flannel_backend: crate::agent::routes::plan::Backend,
    pub log_json: bool,
    pub debug: bool,
}

impl std::fmt::Debug for AgentSetup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentSetup")
            .field("server_url", &self.server_url)
            .field("token", &"[redacted]")
            .field("agent_dir", &self.agent_dir)
            .field("node_name", &self.node_name)
            .field("node_ips", &self.node_ips)
            .finish_non_exhaustive()
    }
}

impl AgentSetup {
    pub fn from_args(a: &AgentArgs) -> Result<Self, ConfigError> {
        let server_url = a
            .server
            .clone()
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| {
                ConfigError(
                    "--server (or SKIFF_URL) is required: the URL of the server to join, such as https://10.0.0.1:6443".into(),
                )
            })?;
        let token = match (&a.token, &a.token_file) {
            (Some(t), _) if !t.trim().is_empty() => t.trim().to_string(),
            (_, Some(path)) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    ConfigError(format!("cannot read --token-file {}: {e}", path.display()))
                })?;
                let t = text.trim().to_string();
                if t.is_empty() {
                    return Err(ConfigError(format!(
                        "--token-file {} is empty",
                        path.display()
                    )));
                }
                t
            }
            _ => {
                return Err(ConfigError(
                    "--token (or --token-file, SKIFF_TOKEN) is required: the join token printed by the server".into(),
                ));
            }
        };
        let node_name = a.node_name.clone().unwrap_or_else(crate::config::hostname);
        let errs = crate::api::validation::dns1123_subdomain_errors(&node_name);
        if !errs.is_empty() {
            return Err(ConfigError(format!(
                "invalid value {node_name:?} for --node-name: {}",
                errs.join("; ")
            )));
        }
        let mut node_ips = Vec::new();
        for s in &a.node_ip {
            let ip: IpAddr = s.trim().parse().map_err(|_| {
                ConfigError(format!(
                    "invalid value {s:?} for --node-ip: expected an IP address"
                ))
            })?;
            if ip.is_unspecified() || ip.is_multicast() {
                return Err(ConfigError(format!(
                    "invalid value {s:?} for --node-ip: expected a unicast address"
                )));
            }
            if !node_ips.contains(&ip) {
                node_ips.push(ip);
            }
        }
        if node_ips.is_empty() {
            node_ips.push(crate::config::default_node_ip());
        }
        let mut node_labels = BTreeMap::new();
        for l in &a.node_label {
            let (k, v) = parse_label(l).map_err(|e| ConfigError(format!("--node-label: {e}")))?;
            node_labels.insert(k, v);
        }
        let node_taints = a
            .node_taint
            .iter()
            .map(|t| parse_taint(t).map_err(|e| ConfigError(format!("--node-taint: {e}"))))
            .collect::<Result<Vec<_>, _>>()?;
        if a.kubelet_port == 0 {
            return Err(ConfigError("invalid value 0 for --kubelet-port".into()));
        }
        if a.log_format != "text" && a.log_format != "json" {
            return Err(ConfigError(format!(
                "invalid value {:?} for --log-format: use text or json",
                a.log_format
            )));
        }
        let kubelet = crate::kubelet::settings::KubeletSettings::from_args(&a.kubelet_arg)
            .map_err(ConfigError)?;
        let flannel_backend = a.flannel_backend.parse().map_err(ConfigError)?;
        Ok(AgentSetup {
            kubelet,
            flannel_backend,
            server_url,
            token,
            agent_dir: a.data_dir.join("agent"),
            node_name,
            node_ips,
            node_labels,
            node_taints,
            container_runtime_endpoint: a.container_runtime_endpoint.clone(),
            kubelet_port: a.kubelet_port,
            log_json: a.log_format == "json",
            debug: a.debug,
        })
    }

    /// The full agent configuration, with the cluster settings from the join.
    pub fn agent_config(&self, cluster: &ClusterInfo) -> AgentConfig {
        AgentConfig {
            agent_dir: self.agent_dir.clone(),
            node_name: self.node_name.clone(),
            node_ip: self.node_ips[0],
            cluster_cidr: cluster.cluster_cidr.clone(),
            service_cidr: cluster.service_cidr.clone(),
            cluster_dns: cluster.cluster_dns,
            cluster_domain: cluster.cluster_domain.clone(),
            container_runtime_endpoint: self.container_runtime_endpoint.clone(),
            kubelet_port: self.kubelet_port,
            node_labels: self.node_labels.clone(),
            node_taints: self.node_taints.clone(),
            control_plane: false,
            kubelet: self.kubelet.clone(),
            flannel_backend: self.flannel_backend,
        }
    }
}

/// Resolve on SIGTERM or SIGINT.
pub async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    fn setup(args: &[&str]) -> Result<AgentSetup, String> {
        let mut argv = vec!["skiff", "agent", "--config", "/nonexistent-skiff-test.yaml"];
        argv.extend_from_slice(args);
        let cli = crate::cli::Cli::try_parse_from(argv).map_err(|e| e.to_string())?;
        let crate::cli::Command::Agent(a) = cli.command else {
            return Err("not agent".into());
        };
        AgentSetup::from_args(&a).map_err(|e| e.0)
    }

    #[test]
    fn flag_validation_names_the_flag() {
        let base = ["--server", "https://h:6443", "--token", "K10ab::server:x"];
        let with = |extra: &[&str]| {
            let mut v = base.to_vec();
            v.extend_from_slice(extra);
            setup(&v)
        };
        let ok = with(&[
            "--node-name",
            "n1",
            "--node-ip",
            "10.0.0.1",
            "--node-label",
            "a=b",
            "--node-taint",
            "k:NoSchedule",
        ])
        .unwrap();
        assert_eq!(ok.node_ips, vec!["10.0.0.1".parse::<IpAddr>().unwrap()]);
        assert_eq!(ok.node_labels["a"], "b");
        assert_eq!(ok.node_taints[0].key, "k");
        assert!(!format!("{ok:?}").contains("server:x"));
        for (extra, flag) in [
            (&["--node-name", "Bad_Name"][..], "--node-name"),
            (&["--node-ip", "nope"][..], "--node-ip"),
            (&["--node-label", "novalue"][..], "--node-label"),
            (&["--node-taint", "k=v"][..], "--node-taint"),
            (&["--log-format", "xml"][..], "--log-format"),
            (&["--kubelet-port", "0"][..], "--kubelet-port"),
            (&["--kubelet-arg", "bogus=1"][..], "--kubelet-arg"),
            (
                &["--kubelet-arg", "eviction-hard=memory.available<x"][..],
                "--kubelet-arg",
            ),
            (&["--flannel-backend", "udp"][..], "--flannel-backend"),
        ] {
            let e = with(extra).unwrap_err();
            assert!(e.contains(flag), "{extra:?}: {e}");
        }
        let e = setup(&["--token", "x"]).unwrap_err();
        assert!(e.contains("--server"), "{e}");
        let e = setup(&["--server", "https://h"]).unwrap_err();
        assert!(e.contains("--token"), "{e}");
        let e = setup(&["--server", "https://h", "--token-file", "/nonexistent/tok"]).unwrap_err();
        assert!(e.contains("--token-file"), "{e}");
    }
}
