//! The success result of ADD (spec 1.0.0 "Success" shape) and the reading of
//! a `prevResult`. Pure.
//!
//! Invariant: the rendered result's `cniVersion` is the configuration's, and
//! results for 0.3.x/0.4.0 carry `"version": "4"` in each IP entry (the field
//! those versions require and 1.0.0 dropped).

use std::net::Ipv4Addr;

use serde_json::{Value, json};

use super::ipnet::Ipv4Net;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    pub mac: String,
    /// The netns path for interfaces inside the container.
    pub sandbox: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpConfig {
    /// Index into `interfaces`.
    pub interface: Option<usize>,
    /// Address with the subnet's prefix length.
    pub address: Ipv4Net,
    pub gateway: Option<Ipv4Addr>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub dst: Ipv4Net,
    pub gw: Option<Ipv4Addr>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CniResult {
    pub interfaces: Vec<Interface>,
    pub ips: Vec<IpConfig>,
    pub routes: Vec<Route>,
}

/// Formats a hardware address as `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

impl CniResult {
    pub fn to_json(&self, cni_version: &str) -> Value {
        let legacy = cni_version != "1.0.0";
        let interfaces: Vec<Value> = self
            .interfaces
            .iter()
            .map(|i| {
                let mut v = json!({"name": i.name, "mac": i.mac});
                if let Some(s) = &i.sandbox {
                    v["sandbox"] = json!(s);
                }
                v
            })
            .collect();
        let ips: Vec<Value> = self
            .ips
            .iter()
            .map(|ip| {
                let mut v = json!({"address": ip.address.to_string()});
                if legacy {
                    v["version"] = json!("4");
                }
                if let Some(g) = ip.gateway {
                    v["gateway"] = json!(g.to_string());
                }
                if let Some(i) = ip.interface {
                    v["interface"] = json!(i);
                }
                v
            })
            .collect();
        let routes: Vec<Value> = self
            .routes
            .iter()
            .map(|r| {
                let mut v = json!({"dst": r.dst.to_string()});
                if let Some(g) = r.gw {
                    v["gw"] = json!(g.to_string());
                }
                v
            })
            .collect();
        json!({
            "cniVersion": cni_version,
            "interfaces": interfaces,
            "ips": ips,
            "routes": routes,
            "dns": {},
        })
    }

    /// Reads the parts of a `prevResult` CHECK needs; unknown or malformed
    /// entries are skipped (the runtime, not us, produced this document).
    pub fn from_prev(v: &Value) -> CniResult {
        let interfaces = v["interfaces"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|i| Interface {
                        name: i["name"].as_str().unwrap_or_default().to_string(),
                        mac: i["mac"].as_str().unwrap_or_default().to_string(),
                        sandbox: i["sandbox"].as_str().map(str::to_string),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let ips = v["ips"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|i| {
                        let address = Ipv4Net::parse(i["address"].as_str()?).ok()?;
                        Some(IpConfig {
                            interface: i["interface"].as_u64().map(|n| n as usize),
                            address,
                            gateway: i["gateway"].as_str().and_then(|g| g.parse().ok()),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        let routes = v["routes"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|r| {
                        Some(Route {
                            dst: Ipv4Net::parse(r["dst"].as_str()?).ok()?,
                            gw: r["gw"].as_str().and_then(|g| g.parse().ok()),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        CniResult {
            interfaces,
            ips,
            routes,
        }
    }

    /// The first IP assigned to the interface named `ifname`.
    pub fn ip_of(&self, ifname: &str) -> Option<Ipv4Net> {
        self.ips
            .iter()
            .find(|ip| {
                ip.interface
                    .and_then(|i| self.interfaces.get(i))
                    .is_some_and(|i| i.name == ifname)
            })
            .map(|ip| ip.address)
    }
}

/// Result of the `loopback` plugin.
pub fn loopback_result(cni_version: &str, netns: &str) -> Value {
    CniResult {
        interfaces: vec![Interface {
            name: "lo".into(),
            mac: "00:00:00:00:00:00".into(),
            sandbox: Some(netns.to_string()),
        }],
        ips: vec![IpConfig {
            interface: Some(0),
            address: Ipv4Net {
                addr: Ipv4Addr::LOCALHOST,
                prefix: 8,
            },
            gateway: None,
        }],
        routes: vec![],
    }
    .to_json(cni_version)
}

/// Answer to `VERSION`.
pub fn version_result(cni_version: &str) -> Value {
    json!({
        "cniVersion": cni_version,
        "supportedVersions": super::config::SUPPORTED_VERSIONS,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> CniResult {
        CniResult {
            interfaces: vec![
                Interface {
                    name: "skiff0".into(),
                    mac: "02:00:00:00:00:01".into(),
                    sandbox: None,
                },
                Interface {
                    name: "veth0123456789".into(),
                    mac: "02:00:00:00:00:02".into(),
                    sandbox: None,
                },
                Interface {
                    name: "eth0".into(),
                    mac: "02:00:00:00:00:03".into(),
                    sandbox: Some("/run/netns/x".into()),
                },
            ],
            ips: vec![IpConfig {
                interface: Some(2),
                address: Ipv4Net::parse("10.42.0.5/24").unwrap(),
                gateway: Some("10.42.0.1".parse().unwrap()),
            }],
            routes: vec![Route {
                dst: Ipv4Net::parse("0.0.0.0/0").unwrap(),
                gw: Some("10.42.0.1".parse().unwrap()),
            }],
        }
    }

    #[test]
    fn render_1_0_0() {
        let v = sample().to_json("1.0.0");
        assert_eq!(
            v,
            json!({
                "cniVersion": "1.0.0",
                "interfaces": [
                    {"name": "skiff0", "mac": "02:00:00:00:00:01"},
                    {"name": "veth0123456789", "mac": "02:00:00:00:00:02"},
                    {"name": "eth0", "mac": "02:00:00:00:00:03", "sandbox": "/run/netns/x"}
                ],
                "ips": [{"address": "10.42.0.5/24", "gateway": "10.42.0.1", "interface": 2}],
                "routes": [{"dst": "0.0.0.0/0", "gw": "10.42.0.1"}],
                "dns": {}
            })
        );
    }

    #[test]
    fn render_legacy_has_ip_version() {
        for v in ["0.3.0", "0.3.1", "0.4.0"] {
            let r = sample().to_json(v);
            assert_eq!(r["cniVersion"], v);
            assert_eq!(r["ips"][0]["version"], "4");
        }
    }

    #[test]
    fn prev_result_round_trip() {
        let s = sample();
        assert_eq!(CniResult::from_prev(&s.to_json("1.0.0")), s);
        assert_eq!(CniResult::from_prev(&s.to_json("0.4.0")), s);
        assert_eq!(s.ip_of("eth0").unwrap().to_string(), "10.42.0.5/24");
        assert_eq!(s.ip_of("eth1"), None);
        assert_eq!(
            CniResult::from_prev(&json!({"ips": [{"address": "junk"}]})),
            CniResult::default()
        );
    }

    #[test]
    fn loopback_and_version() {
        let l = loopback_result("0.3.1", "/run/netns/x");
        assert_eq!(l["interfaces"][0]["name"], "lo");
        assert_eq!(l["ips"][0]["address"], "127.0.0.1/8");
        assert_eq!(l["ips"][0]["interface"], 0);
        assert_eq!(l["ips"][0]["version"], "4");
        let v = version_result("1.0.0");
        assert_eq!(
            v["supportedVersions"],
            json!(["0.3.0", "0.3.1", "0.4.0", "1.0.0"])
        );
        assert_eq!(format_mac(&[0x02, 0xab, 0, 1, 2, 255]), "02:ab:00:01:02:ff");
    }
}
