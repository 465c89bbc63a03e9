//! The network configuration the runtime hands the plugin on stdin: parsing,
//! defaults and validation. Pure; no I/O.
//!
//! Invariants of a [`NetConf`]: `cniVersion` is one we support; `subnet` is a
//! network of at most /30 (room for network, gateway, broadcast and one pod);
//! `clusterCIDR`, when set, contains `subnet`; `bridge` is a valid interface
//! name; `name` is usable as a single directory component; `dataDir` is
//! absolute; every port mapping has ports in 1..=65535 and a known protocol.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use serde::Deserialize;

use super::error::CniError;
use super::ipnet::Ipv4Net;

/// Versions this plugin speaks, oldest first (what `VERSION` reports).
pub const SUPPORTED_VERSIONS: &[&str] = &["0.3.0", "0.3.1", "0.4.0", "1.0.0"];
pub const DEFAULT_BRIDGE: &str = "skiff0";
pub const DEFAULT_MTU: u32 = 1500;
pub const DEFAULT_DATA_DIR: &str = "/var/lib/skiff/agent/cni";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    pub fn as_str(&self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

/// One `runtimeConfig.portMappings` entry (IPv4 only; IPv6 host IPs are dropped).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortMapping {
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: Protocol,
    /// `None` = every local address of the host.
    pub host_ip: Option<Ipv4Addr>,
}

/// A validated `skiff-cni` (or `loopback`) configuration.
#[derive(Clone, Debug)]
pub struct NetConf {
    pub cni_version: String,
    pub name: String,
    pub plugin_type: String,
    pub bridge: String,
    pub subnet: Ipv4Net,
    pub cluster_cidr: Option<Ipv4Net>,
    pub mtu: u32,
    pub data_dir: PathBuf,
    pub ip_masq: bool,
    pub hairpin_mode: bool,
    pub port_mappings: Vec<PortMapping>,
    pub prev_result: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawConf {
    cni_version: Option<String>,
    name: Option<String>,
    #[serde(rename = "type")]
    plugin_type: Option<String>,
    bridge: Option<String>,
    subnet: Option<String>,
    #[serde(rename = "clusterCIDR")]
    cluster_cidr: Option<String>,
    mtu: Option<u32>,
    data_dir: Option<String>,
    ip_masq: Option<bool>,
    hairpin_mode: Option<bool>,
    runtime_config: Option<RawRuntimeConfig>,
    prev_result: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawRuntimeConfig {
    #[serde(default)]
    port_mappings: Vec<RawPortMapping>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawPortMapping {
    host_port: i64,
    container_port: i64,
    protocol: Option<String>,
    #[serde(rename = "hostIP")]
    host_ip: Option<String>,
}

/// The `cniVersion` of a document, if it has one (for error replies even
/// when the rest of the document is bad).
pub fn sniff_version(stdin: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(stdin).ok()?;
    v.get("cniVersion")?.as_str().map(str::to_string)
}

pub fn check_version(v: &str) -> Result<(), CniError> {
    if SUPPORTED_VERSIONS.contains(&v) {
        Ok(())
    } else {
        Err(CniError::IncompatibleVersion(v.to_string()))
    }
}

/// Linux interface-name rules (IFNAMSIZ 16 incl. NUL; no '/', ':' or whitespace).
pub fn validate_ifname(what: &str, name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 15 {
        return Err(format!("{what} {name:?} must be 1 to 15 characters long"));
    }
    if name == "." || name == ".." {
        return Err(format!("{what} {name:?} is not a valid interface name"));
    }
    if name
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
    {
        return Err(format!(
            "{what} {name:?} must not contain '/', ':' or whitespace"
        ));
    }
    Ok(())
}

fn validate_network_name(name: &str) -> Result<(), String> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-');
    if name.is_empty() || name == "." || name == ".." || !name.chars().all(ok_char) {
        return Err(format!(
            "name {name:?} must be non-empty and use only letters, digits, '_', '.', '-'"
        ));
    }
    Ok(())
}

fn parse_port(what: &str, p: i64) -> Result<u16, CniError> {
    u16::try_from(p)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| CniError::InvalidConfig(format!("{what} {p} is not in 1..=65535")))
}

fn parse_mapping(raw: RawPortMapping) -> Result<Option<PortMapping>, CniError> {
    let host_port = parse_port("portMappings hostPort", raw.host_port)?;
    let container_port = parse_port("portMappings containerPort", raw.container_port)?;
    let protocol = match raw
        .protocol
        .as_deref()
        .unwrap_or("tcp")
        .to_ascii_lowercase()
        .as_str()
    {
        "" | "tcp" => Protocol::Tcp,
        "udp" => Protocol::Udp,
        "sctp" => Protocol::Sctp,
        other => {
            return Err(CniError::InvalidConfig(format!(
                "portMappings protocol {other:?} is not one of tcp, udp, sctp"
            )));
        }
    };
    let host_ip = match raw.host_ip.as_deref().unwrap_or("") {
        "" | "0.0.0.0" => None,
        s => match s.parse::<std::net::IpAddr>() {
            Ok(std::net::IpAddr::V4(ip)) => Some(ip),
            // the pod network is IPv4-only: an IPv6 host address has nothing to forward to
            Ok(std::net::IpAddr::V6(_)) => return Ok(None),
            Err(_) => {
                return Err(CniError::InvalidConfig(format!(
                    "portMappings hostIP {s:?} is not an IP address"
                )));
            }
        },
    };
    Ok(Some(PortMapping {
        host_port,
        container_port,
        protocol,
        host_ip,
    }))
}

impl NetConf {
    /// Parses and validates the stdin document of ADD/DEL/CHECK.
    pub fn parse(stdin: &[u8]) -> Result<NetConf, CniError> {
        let raw: RawConf = serde_json::from_slice(stdin)
            .map_err(|e| CniError::Decode(format!("cannot decode network config: {e}")))?;
        let cni_version = raw
            .cni_version
            .ok_or_else(|| CniError::InvalidConfig("cniVersion is required".into()))?;
        check_version(&cni_version)?;
        let name = raw
            .name
            .ok_or_else(|| CniError::InvalidConfig("name is required".into()))?;
        validate_network_name(&name).map_err(CniError::InvalidConfig)?;
        let plugin_type = raw.plugin_type.unwrap_or_default();
        let bridge = raw.bridge.unwrap_or_else(|| DEFAULT_BRIDGE.to_string());
        validate_ifname("bridge", &bridge).map_err(CniError::InvalidConfig)?;
        let subnet_s = raw
            .subnet
            .ok_or_else(|| CniError::InvalidConfig("subnet is required".into()))?;
        let subnet = Ipv4Net::parse_network(&subnet_s)
            .map_err(|e| CniError::InvalidConfig(format!("subnet: {e}")))?;
        if subnet.prefix > 30 {
            return Err(CniError::InvalidConfig(format!(
                "subnet {subnet} is too small: need at least a /30 (network, gateway, broadcast and one pod)"
            )));
        }
        let cluster_cidr = match raw.cluster_cidr.as_deref() {
            None | Some("") => None,
            Some(s) => {
                let c = Ipv4Net::parse_network(s)
                    .map_err(|e| CniError::InvalidConfig(format!("clusterCIDR: {e}")))?;
                if !c.contains_net(&subnet) {
                    return Err(CniError::InvalidConfig(format!(
                        "subnet {subnet} is not inside clusterCIDR {c}"
                    )));
                }
                Some(c)
            }
        };
        let mtu = raw.mtu.unwrap_or(DEFAULT_MTU);
        if !(68..=65535).contains(&mtu) {
            return Err(CniError::InvalidConfig(format!(
                "mtu {mtu} is not in 68..=65535"
            )));
        }
        let data_dir = PathBuf::from(raw.data_dir.unwrap_or_else(|| DEFAULT_DATA_DIR.into()));
        if !data_dir.is_absolute() {
            return Err(CniError::InvalidConfig(format!(
                "dataDir {:?} must be an absolute path",
                data_dir.display()
            )));
        }
        let mut port_mappings = Vec::new();
        for m in raw
            .runtime_config
            .map(|r| r.port_mappings)
            .unwrap_or_default()
        {
            if let Some(m) = parse_mapping(m)? {
                port_mappings.push(m);
            }
        }
        Ok(NetConf {
            cni_version,
            name,
            plugin_type,
            bridge,
            subnet,
            cluster_cidr,
            mtu,
            data_dir,
            ip_masq: raw.ip_masq.unwrap_or(true),
            hairpin_mode: raw.hairpin_mode.unwrap_or(true),
            port_mappings,
            prev_result: raw.prev_result,
        })
    }

    /// The gateway of the pod subnet: its first host address, held by the bridge.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.subnet.network()) + 1)
    }

    /// Where this network keeps its IPAM state.
    pub fn state_dir(&self) -> PathBuf {
        self.data_dir.join(&self.name)
    }
}

/// The stdin of `loopback` and `VERSION`: only `cniVersion` matters.
pub fn parse_minimal(stdin: &[u8]) -> Result<String, CniError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Min {
        cni_version: Option<String>,
    }
    let m: Min = serde_json::from_slice(stdin)
        .map_err(|e| CniError::Decode(format!("cannot decode network config: {e}")))?;
    let v = m
        .cni_version
        .ok_or_else(|| CniError::InvalidConfig("cniVersion is required".into()))?;
    check_version(&v)?;
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"{"cniVersion":"1.0.0","name":"skiff","type":"skiff-cni","bridge":"skiff0",
        "subnet":"10.42.0.0/24","clusterCIDR":"10.42.0.0/16","mtu":1450,"dataDir":"/var/lib/skiff/agent/cni",
        "ipMasq":true,"hairpinMode":true,"capabilities":{"portMappings":true},
        "runtimeConfig":{"portMappings":[{"hostPort":8080,"containerPort":80,"protocol":"tcp","hostIP":""},
                                         {"hostPort":53,"containerPort":5353,"protocol":"UDP","hostIP":"192.168.1.2"},
                                         {"hostPort":9,"containerPort":9,"protocol":"tcp","hostIP":"::1"}]}}"#;

    #[test]
    fn full_config() {
        let c = NetConf::parse(FULL.as_bytes()).unwrap();
        assert_eq!(c.cni_version, "1.0.0");
        assert_eq!(c.name, "skiff");
        assert_eq!(c.plugin_type, "skiff-cni");
        assert_eq!(c.bridge, "skiff0");
        assert_eq!(c.subnet.to_string(), "10.42.0.0/24");
        assert_eq!(c.cluster_cidr.unwrap().to_string(), "10.42.0.0/16");
        assert_eq!(c.mtu, 1450);
        assert_eq!(c.gateway().to_string(), "10.42.0.1");
        assert_eq!(
            c.state_dir(),
            PathBuf::from("/var/lib/skiff/agent/cni/skiff")
        );
        assert_eq!(
            c.port_mappings,
            vec![
                PortMapping {
                    host_port: 8080,
                    container_port: 80,
                    protocol: Protocol::Tcp,
                    host_ip: None
                },
                PortMapping {
                    host_port: 53,
                    container_port: 5353,
                    protocol: Protocol::Udp,
                    host_ip: Some("192.168.1.2".parse().unwrap())
                },
            ]
        );
    }

    #[test]
    fn defaults() {
        let c =
            NetConf::parse(br#"{"cniVersion":"0.4.0","name":"n","subnet":"10.1.0.0/16"}"#).unwrap();
        assert_eq!(c.bridge, DEFAULT_BRIDGE);
        assert_eq!(c.mtu, DEFAULT_MTU);
        assert!(c.ip_masq && c.hairpin_mode);
        assert!(c.cluster_cidr.is_none());
        assert!(c.port_mappings.is_empty());
        assert_eq!(c.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
    }

    #[test]
    fn errors() {
        let base = r#""name":"n","subnet":"10.1.0.0/24""#;
        let cases: &[(String, u32, &str)] = &[
            ("not json".into(), 6, "cannot decode"),
            (format!(r#"{{{base}}}"#), 7, "cniVersion is required"),
            (
                format!(r#"{{"cniVersion":"2.0.0",{base}}}"#),
                1,
                "incompatible CNI version",
            ),
            (
                r#"{"cniVersion":"1.0.0","subnet":"10.1.0.0/24"}"#.into(),
                7,
                "name is required",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"../x","subnet":"10.1.0.0/24"}"#.into(),
                7,
                "name \"../x\"",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"n"}"#.into(),
                7,
                "subnet is required",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"n","subnet":"10.1.0.9/24"}"#.into(),
                7,
                "host bits",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"n","subnet":"10.1.0.0/31"}"#.into(),
                7,
                "too small",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"n","subnet":"banana"}"#.into(),
                7,
                "CIDR",
            ),
            (
                format!(r#"{{"cniVersion":"1.0.0",{base},"clusterCIDR":"10.2.0.0/16"}}"#),
                7,
                "not inside clusterCIDR",
            ),
            (
                format!(r#"{{"cniVersion":"1.0.0",{base},"mtu":10}}"#),
                7,
                "mtu 10",
            ),
            (
                format!(r#"{{"cniVersion":"1.0.0",{base},"mtu":"x"}}"#),
                6,
                "cannot decode",
            ),
            (
                format!(r#"{{"cniVersion":"1.0.0",{base},"bridge":"averyveryverylongbridge"}}"#),
                7,
                "1 to 15",
            ),
            (
                format!(r#"{{"cniVersion":"1.0.0",{base},"bridge":"a/b"}}"#),
                7,
                "must not contain",
            ),
            (
                format!(r#"{{"cniVersion":"1.0.0",{base},"dataDir":"rel/dir"}}"#),
                7,
                "absolute",
            ),
            (
                format!(
                    r#"{{"cniVersion":"1.0.0",{base},"runtimeConfig":{{"portMappings":[{{"hostPort":0,"containerPort":80}}]}}}}"#
                ),
                7,
                "hostPort 0",
            ),
            (
                format!(
                    r#"{{"cniVersion":"1.0.0",{base},"runtimeConfig":{{"portMappings":[{{"hostPort":80,"containerPort":70000}}]}}}}"#
                ),
                7,
                "containerPort 70000",
            ),
            (
                format!(
                    r#"{{"cniVersion":"1.0.0",{base},"runtimeConfig":{{"portMappings":[{{"hostPort":80,"containerPort":80,"protocol":"icmp"}}]}}}}"#
                ),
                7,
                "protocol \"icmp\"",
            ),
            (
                format!(
                    r#"{{"cniVersion":"1.0.0",{base},"runtimeConfig":{{"portMappings":[{{"hostPort":80,"containerPort":80,"hostIP":"nope"}}]}}}}"#
                ),
                7,
                "hostIP \"nope\"",
            ),
        ];
        for (input, code, needle) in cases {
            let err = NetConf::parse(input.as_bytes()).unwrap_err();
            assert_eq!(err.code(), *code, "{input}: {err}");
            assert!(err.to_string().contains(needle), "{input}: {err}");
        }
    }

    #[test]
    fn minimal_and_sniff() {
        assert_eq!(
            parse_minimal(br#"{"cniVersion":"0.3.1","name":"cni-loopback","type":"loopback"}"#)
                .unwrap(),
            "0.3.1"
        );
        assert_eq!(
            parse_minimal(br#"{"cniVersion":"9"}"#).unwrap_err().code(),
            1
        );
        assert_eq!(
            sniff_version(br#"{"cniVersion":"0.4.0","subnet":5}"#).as_deref(),
            Some("0.4.0")
        );
        assert_eq!(sniff_version(b"garbage"), None);
    }

    #[test]
    fn ifnames() {
        for ok in ["eth0", "net1", "veth0123456789a"] {
            assert!(validate_ifname("ifname", ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", "a b", "a:b", "a/b", "0123456789abcdef"] {
            assert!(validate_ifname("ifname", bad).is_err(), "{bad}");
        }
    }
}
