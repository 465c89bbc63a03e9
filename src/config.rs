//! Typed, validated server configuration, built once from the CLI arguments
//! and handed down by value. No globals.
//!
//! Invariant: every field here has been checked; errors name the flag and
//! the fix.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use crate::cli::ServerArgs;

#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub data_dir: PathBuf,
    pub port: u16,
    pub bind_address: IpAddr,
    pub advertise_address: IpAddr,
    pub tls_sans: Vec<String>,
    pub kubeconfig_path: PathBuf,
    pub kubeconfig_mode: u32,
    pub token: Option<String>,
    pub disable_agent: bool,
    pub disable_scheduler: bool,
    pub cluster_cidr: String,
    pub service_cidr: String,
    /// First address of the service CIDR (the `kubernetes` Service).
    pub service_ip: Ipv4Addr,
    pub cluster_dns: Ipv4Addr,
    /// `--flannel-backend` of the embedded agent.
    pub flannel_backend: crate::agent::routes::plan::Backend,
    pub node_name: String,
    /// `--node-ip` (default: the address of the default route's interface).
    pub node_ip: IpAddr,
    pub node_labels: std::collections::BTreeMap<String, String>,
    pub node_taints: Vec<k8s_openapi::api::core::v1::Taint>,
    pub container_runtime_endpoint: Option<PathBuf>,
    pub kubelet_port: u16,
    /// `--kubelet-arg` settings of the embedded agent.
    pub kubelet: crate::kubelet::settings::KubeletSettings,
    pub cluster_domain: String,
    /// `--node-monitor-grace-period`.
    pub node_monitor_grace_period: std::time::Duration,
    pub compact_interval_secs: u64,
    pub compact_keep: i64,
    pub log_json: bool,
    pub debug: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

fn cidr(flag: &str, s: &str) -> Result<(Ipv4Addr, u8), ConfigError> {
    let bad = || {
        ConfigError(format!(
            "invalid value {s:?} for --{flag}: expected an IPv4 CIDR such as 10.43.0.0/16"
        ))
    };
    let (ip, len) = s.split_once('/').ok_or_else(bad)?;
    let ip: Ipv4Addr = ip.parse().map_err(|_| bad())?;
    let len: u8 = len.parse().map_err(|_| bad())?;
    if len > 30 {
        return Err(bad());
    }
    Ok((ip, len))
}

/// A Go-style duration (`40s`, `1m30s`, `500ms`, `1h`); a bare number is seconds.
pub fn parse_duration(s: &str) -> Option<std::time::Duration> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<u64>() {
        return Some(std::time::Duration::from_secs(secs));
    }
    let mut total = std::time::Duration::ZERO;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let n: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += std::time::Duration::try_from_secs_f64(n * scale).ok()?;
    }
    Some(total)
}

/// The first non-loopback IPv4 address of this machine, or 127.0.0.1.
pub fn default_node_ip() -> IpAddr {
    // a UDP "connect" picks the outgoing interface without sending anything
    if let Ok(sock) = std::net::UdpSocket::bind("0.0.0.0:0")
        && sock.connect("10.255.255.255:1").is_ok()
        && let Ok(addr) = sock.local_addr()
        && !addr.ip().is_unspecified()
    {
        return addr.ip();
    }
    IpAddr::V4(Ipv4Addr::LOCALHOST)
}

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_lowercase())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

impl ServerConfig {
    pub fn from_args(a: &ServerArgs) -> Result<Self, ConfigError> {
        let bind_address: IpAddr = a.bind_address.parse().map_err(|_| {
            ConfigError(format!(
                "invalid value {:?} for --bind-address: expected an IP address such as 0.0.0.0",
                a.bind_address
            ))
        })?;
        let node_ip = match &a.node_ip {
            Some(s) => s.parse().map_err(|_| {
                ConfigError(format!(
                    "invalid value {s:?} for --node-ip: expected an IP address"
                ))
            })?,
            None => default_node_ip(),
        };
        let advertise_address = match &a.advertise_address {
            Some(s) => s.parse().map_err(|_| {
                ConfigError(format!(
                    "invalid value {s:?} for --advertise-address: expected an IP address"
                ))
            })?,
            None => node_ip,
        };
        let mode = u32::from_str_radix(a.write_kubeconfig_mode.trim_start_matches("0o"), 8).map_err(|_| {
            ConfigError(format!("invalid value {:?} for --write-kubeconfig-mode: expected an octal file mode such as 0600 or 644", a.write_kubeconfig_mode))
        })?;
        if mode > 0o777 {
            return Err(ConfigError(format!(
                "invalid value {:?} for --write-kubeconfig-mode: mode must be at most 0777",
                a.write_kubeconfig_mode
            )));
        }
        cidr("cluster-cidr", &a.cluster_cidr)?;
        let (svc_net, _) = cidr("service-cidr", &a.service_cidr)?;
        let service_ip = Ipv4Addr::from(u32::from(svc_net) + 1);
        let cluster_dns: Ipv4Addr = a.cluster_dns.parse().map_err(|_| {
            ConfigError(format!("invalid value {:?} for --cluster-dns: expected an IPv4 address inside --service-cidr", a.cluster_dns))
        })?;
        if a.log_format != "text" && a.log_format != "json" {
            return Err(ConfigError(format!(
                "invalid value {:?} for --log-format: use text or json",
                a.log_format
            )));
        }
        if a.store_compact_keep < 100 {
            return Err(ConfigError(
                "invalid value for --store-compact-keep: keep at least 100 revisions".into(),
            ));
        }
        let node_monitor_grace_period = parse_duration(&a.node_monitor_grace_period)
            .filter(|d| !d.is_zero())
            .ok_or_else(|| {
                ConfigError(format!(
                    "invalid value {:?} for --node-monitor-grace-period: expected a positive duration such as 40s or 1m",
                    a.node_monitor_grace_period
                ))
            })?;
        let mut node_labels = std::collections::BTreeMap::new();
        for l in &a.node_label {
            let (k, v) = crate::kubelet::node::parse_label(l)
                .map_err(|e| ConfigError(format!("invalid value {l:?} for --node-label: {e}")))?;
            node_labels.insert(k, v);
        }
        let node_taints = a
            .node_taint
            .iter()
            .map(|t| {
                crate::kubelet::node::parse_taint(t)
                    .map_err(|e| ConfigError(format!("invalid value {t:?} for --node-taint: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let node_name = a
            .node_name
            .clone()
            .unwrap_or_else(|| hostname().to_lowercase());
        if !crate::api::validation::is_dns1123_subdomain(&node_name) {
            return Err(ConfigError(format!(
                "invalid node name {node_name:?} (--node-name, default: the hostname): use lowercase letters, digits, '-' and '.'"
            )));
        }
        let kubelet = crate::kubelet::settings::KubeletSettings::from_args(&a.kubelet_arg)
            .map_err(ConfigError)?;
        let flannel_backend = a.flannel_backend.parse().map_err(ConfigError)?;
        Ok(ServerConfig {
            kubelet,
            flannel_backend,
            node_ip,
            node_labels,
            node_taints,
            container_runtime_endpoint: a.container_runtime_endpoint.clone(),
            kubelet_port: a.kubelet_port,
            cluster_domain: a.cluster_domain.clone(),
            data_dir: a.data_dir.clone(),
            port: a.https_listen_port,
            bind_address,
            advertise_address,
            tls_sans: a.tls_san.clone(),
            kubeconfig_path: a.write_kubeconfig.clone(),
            kubeconfig_mode: mode,
            token: a.token.clone().filter(|t| !t.is_empty()),
            disable_agent: a.disable_agent,
            disable_scheduler: a.disable_scheduler,
            cluster_cidr: a.cluster_cidr.clone(),
            service_cidr: a.service_cidr.clone(),
            service_ip,
            cluster_dns,
            node_name,
            node_monitor_grace_period,
            compact_interval_secs: a.store_compact_interval.max(1),
            compact_keep: a.store_compact_keep,
            log_json: a.log_format == "json",
            debug: a.debug,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn go_durations() {
        assert_eq!(parse_duration("40s"), Some(Duration::from_secs(40)));
        assert_eq!(parse_duration("40"), Some(Duration::from_secs(40)));
        assert_eq!(parse_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration(""), None);
        assert_eq!(parse_duration("5x"), None);
        assert_eq!(parse_duration("s"), None);
    }
}
