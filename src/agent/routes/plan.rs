//! Pure core of the node-routes module: which routes, VXLAN forwarding
//! entries and neighbours this node needs to reach the pods of every other
//! node, and the difference to what the kernel has now. No I/O.
//!
//! Invariants: a node never routes to itself; only peers with an IPv4
//! podCIDR and an IPv4 InternalIP appear; host-gw routes are planned only
//! for peers whose IP lies in a subnet directly attached to a local link
//! (others are reported as skipped); VXLAN entries only for peers that
//! published their VTEP MAC; removals only ever come from the set the
//! shell listed as ours (our route protocol / our VXLAN device).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::Node;

use crate::cni::ipnet::Ipv4Net;

/// The VXLAN device linking the nodes (flannel calls it `flannel.1`).
pub const VXLAN_DEVICE: &str = "skiff.vxlan";
/// VXLAN network identifier, as flannel's default.
pub const VXLAN_VNI: u32 = 1;
/// UDP port of the overlay (the Linux kernel's historical VXLAN port, flannel's default).
pub const VXLAN_PORT: u16 = 8472;
/// MTU of the VXLAN device: equals the bridge/pod MTU (1500 - 50 bytes of VXLAN header).
pub const VXLAN_MTU: u32 = 1450;
/// Node annotation carrying the node's VTEP MAC address.
pub const VTEP_MAC_ANNOTATION: &str = "skiff.io/vtep-mac";
/// Node annotation with the node's backend (informational; mixed backends do not interoperate).
pub const BACKEND_ANNOTATION: &str = "skiff.io/flannel-backend";
/// `rtm_protocol` of every route this module installs: the mark by which it
/// recognises its own routes (unassigned in `/etc/iproute2/rt_protos`).
pub const ROUTE_PROTOCOL: u8 = 83;

/// `--flannel-backend`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Backend {
    /// Overlay: works across L3 boundaries (the default, like k3s).
    #[default]
    Vxlan,
    /// Plain routes via the peer's node IP; all nodes must share an L2 link.
    HostGw,
    /// No cross-node routing (bring your own).
    None,
}

impl Backend {
    pub fn as_str(&self) -> &'static str {
        match self {
            Backend::Vxlan => "vxlan",
            Backend::HostGw => "host-gw",
            Backend::None => "none",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Backend {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "vxlan" => Ok(Backend::Vxlan),
            "host-gw" => Ok(Backend::HostGw),
            "none" => Ok(Backend::None),
            other => Err(format!(
                "invalid value {other:?} for --flannel-backend: use vxlan, host-gw or none"
            )),
        }
    }
}

/// What this module needs to know of a Node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    pub name: String,
    pub pod_cidrs: Vec<Ipv4Net>,
    pub node_ip: Ipv4Addr,
    pub vtep_mac: Option<[u8; 6]>,
}

/// `aa:bb:cc:dd:ee:ff` (either case) → bytes.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = s.trim().split(':');
    for b in out.iter_mut() {
        let p = parts.next()?;
        if p.len() != 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(out)
}

pub fn format_mac(m: &[u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// A stable, locally administered unicast VTEP MAC for `node`: survives
/// restarts and device re-creation, so peers' FDB entries stay valid.
pub fn vtep_mac(node: &str) -> [u8; 6] {
    use sha2::Digest;
    let d = sha2::Sha256::digest(format!("skiff-vtep/{node}").as_bytes());
    [0x02, d[0], d[1], d[2], d[3], d[4]]
}

/// The IPv4 podCIDRs of a node (`spec.podCIDRs`, else `spec.podCIDR`).
pub fn pod_cidrs(node: &Node) -> Vec<Ipv4Net> {
    let spec = node.spec.as_ref();
    let mut raw: Vec<&str> = spec
        .and_then(|s| s.pod_cidrs.as_ref())
        .map(|v| v.iter().map(String::as_str).collect())
        .unwrap_or_default();
    if raw.is_empty()
        && let Some(c) = spec.and_then(|s| s.pod_cidr.as_deref())
    {
        raw.push(c);
    }
    let mut out = Vec::new();
    for c in raw {
        if let Ok(n) = Ipv4Net::parse_network(c)
            && !out.contains(&n)
        {
            out.push(n);
        }
    }
    out
}

/// `None` for nodes without a name, an IPv4 InternalIP or an IPv4 podCIDR.
pub fn peer_from_node(node: &Node) -> Option<Peer> {
    let name = node.metadata.name.clone()?;
    let pod_cidrs = pod_cidrs(node);
    if pod_cidrs.is_empty() {
        return None;
    }
    let node_ip = node
        .status
        .as_ref()?
        .addresses
        .as_ref()?
        .iter()
        .filter(|a| a.type_ == "InternalIP")
        .find_map(|a| a.address.parse::<Ipv4Addr>().ok())?;
    let vtep_mac = node
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(VTEP_MAC_ANNOTATION))
        .and_then(|m| parse_mac(m));
    Some(Peer {
        name,
        pod_cidrs,
        node_ip,
        vtep_mac,
    })
}

/// An IPv4 address assigned to a local link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocalAddr {
    pub ifindex: u32,
    pub net: Ipv4Net,
}

/// The link through which `ip` is directly reachable (same subnet as one of
/// our addresses), if any. Host routes (/32) and loopback-only prefixes
/// never count; the longest prefix wins.
pub fn onlink_link(addrs: &[LocalAddr], ip: Ipv4Addr) -> Option<u32> {
    addrs
        .iter()
        .filter(|a| a.net.prefix < 32 && !a.net.addr.is_loopback())
        .filter(|a| a.net.contains(ip) && a.net.addr != ip)
        .max_by_key(|a| a.net.prefix)
        .map(|a| a.ifindex)
}

/// A route in the main table: `dst via gateway dev oif [onlink]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Route {
    pub dst: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
    pub oif: u32,
    pub onlink: bool,
}

impl Route {
    pub fn key(&self) -> (Ipv4Addr, u8) {
        (self.dst, self.prefix)
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{} via {} dev #{}{}",
            self.dst,
            self.prefix,
            self.gateway,
            self.oif,
            if self.onlink { " onlink" } else { "" }
        )
    }
}

/// A VXLAN forwarding entry: frames for `mac` go to `dst` (a node IP).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Fdb {
    pub mac: [u8; 6],
    pub dst: Ipv4Addr,
}

/// A permanent neighbour on the VXLAN device: a peer's gateway address → its VTEP MAC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Neigh {
    pub ip: Ipv4Addr,
    pub mac: [u8; 6],
}

/// Everything the kernel should hold for the peers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Desired {
    pub routes: BTreeSet<Route>,
    pub fdb: BTreeSet<Fdb>,
    pub neigh: BTreeSet<Neigh>,
    /// Peers left out, with the reason (logged by the shell).
    pub skipped: Vec<(String, String)>,
}

/// The desired state for `backend`. `vxlan_index` is the VXLAN device's
/// ifindex (required for [`Backend::Vxlan`]); `cluster_cidr`, when given,
/// bounds which podCIDRs are routed (anything else is skipped).
pub fn desired(
    backend: Backend,
    self_name: &str,
    peers: &[Peer],
    addrs: &[LocalAddr],
    vxlan_index: Option<u32>,
    cluster_cidr: Option<Ipv4Net>,
) -> Desired {
    let mut d = Desired::default();
    let mut seen: BTreeMap<(Ipv4Addr, u8), String> = BTreeMap::new();
    for p in peers {
        if p.name == self_name {
            continue;
        }
        let cidrs: Vec<Ipv4Net> = p
            .pod_cidrs
            .iter()
            .copied()
            .filter(|c| cluster_cidr.is_none_or(|cc| cc.contains_net(c)))
            .collect();
        if cidrs.is_empty() {
            d.skipped
                .push((p.name.clone(), "no podCIDR inside the cluster CIDR".into()));
            continue;
        }
        if addrs.iter().any(|a| a.net.addr == p.node_ip) {
            d.skipped.push((
                p.name.clone(),
                format!("its node IP {} is one of ours", p.node_ip),
            ));
            continue;
        }
        match backend {
            Backend::None => {}
            Backend::HostGw => {
                let Some(oif) = onlink_link(addrs, p.node_ip) else {
                    d.skipped.push((
                        p.name.clone(),
                        format!(
                            "node IP {} is not on a directly attached network (host-gw needs one L2 segment; use --flannel-backend=vxlan)",
                            p.node_ip
                        ),
                    ));
                    continue;
                };
                for c in cidrs {
                    if seen.insert((c.addr, c.prefix), p.name.clone()).is_some() {
                        d.skipped
                            .push((p.name.clone(), format!("podCIDR {c} is used twice")));
                        continue;
                    }
                    d.routes.insert(Route {
                        dst: c.addr,
                        prefix: c.prefix,
                        gateway: p.node_ip,
                        oif,
                        onlink: false,
                    });
                }
            }
            Backend::Vxlan => {
                let Some(vx) = vxlan_index else {
                    d.skipped
                        .push((p.name.clone(), "the VXLAN device is missing".into()));
                    continue;
                };
                let Some(mac) = p.vtep_mac else {
                    d.skipped.push((
                        p.name.clone(),
                        format!("no {VTEP_MAC_ANNOTATION} annotation yet"),
                    ));
                    continue;
                };
                d.fdb.insert(Fdb {
                    mac,
                    dst: p.node_ip,
                });
                for c in cidrs {
                    if seen.insert((c.addr, c.prefix), p.name.clone()).is_some() {
                        d.skipped
                            .push((p.name.clone(), format!("podCIDR {c} is used twice")));
                        continue;
                    }
                    // the peer's VXLAN device holds the network address of its podCIDR
                    d.neigh.insert(Neigh { ip: c.addr, mac });
                    d.routes.insert(Route {
                        dst: c.addr,
                        prefix: c.prefix,
                        gateway: c.addr,
                        oif: vx,
                        onlink: true,
                    });
                }
            }
        }
    }
    d
}

/// What to change in the kernel.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// Routes to install with replace semantics (new or different).
    pub set_routes: Vec<Route>,
    /// Our routes whose destination is no longer wanted.
    pub del_routes: Vec<Route>,
    pub add_fdb: Vec<Fdb>,
    pub del_fdb: Vec<Fdb>,
    pub add_neigh: Vec<Neigh>,
    pub del_neigh: Vec<Neigh>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        *self == Changes::default()
    }
}

/// The changes turning `current` (ours only) into `want`. A route whose
/// destination stays but whose next hop changed is replaced in place, never
/// deleted (no window without a route).
pub fn diff(
    current_routes: &BTreeSet<Route>,
    current_fdb: &BTreeSet<Fdb>,
    current_neigh: &BTreeSet<Neigh>,
    want: &Desired,
) -> Changes {
    let wanted_keys: BTreeSet<_> = want.routes.iter().map(Route::key).collect();
    // a neighbour entry is keyed by its IP: a changed MAC is a replace
    let wanted_neigh_ips: BTreeSet<_> = want.neigh.iter().map(|n| n.ip).collect();
    Changes {
        set_routes: want.routes.difference(current_routes).copied().collect(),
        del_routes: current_routes
            .iter()
            .filter(|r| !wanted_keys.contains(&r.key()))
            .copied()
            .collect(),
        add_fdb: want.fdb.difference(current_fdb).copied().collect(),
        del_fdb: current_fdb.difference(&want.fdb).copied().collect(),
        add_neigh: want.neigh.difference(current_neigh).copied().collect(),
        del_neigh: current_neigh
            .iter()
            .filter(|n| !wanted_neigh_ips.contains(&n.ip))
            .copied()
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{NodeAddress, NodeSpec, NodeStatus};

    fn net(s: &str) -> Ipv4Net {
        Ipv4Net::parse(s).unwrap()
    }
    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }
    fn peer(name: &str, cidr: &str, node_ip: &str, mac: Option<u8>) -> Peer {
        Peer {
            name: name.into(),
            pod_cidrs: vec![net(cidr)],
            node_ip: ip(node_ip),
            vtep_mac: mac.map(|m| [2, 0, 0, 0, 0, m]),
        }
    }
    fn addrs() -> Vec<LocalAddr> {
        vec![
            LocalAddr {
                ifindex: 1,
                net: net("127.0.0.1/8"),
            },
            LocalAddr {
                ifindex: 2,
                net: net("192.168.1.10/24"),
            },
            LocalAddr {
                ifindex: 3,
                net: net("10.0.0.5/16"),
            },
            LocalAddr {
                ifindex: 4,
                net: net("10.0.7.5/24"),
            },
        ]
    }

    #[test]
    fn backend_flag_values() {
        for (s, b) in [
            ("vxlan", Backend::Vxlan),
            ("host-gw", Backend::HostGw),
            ("none", Backend::None),
        ] {
            assert_eq!(s.parse::<Backend>().unwrap(), b);
            assert_eq!(b.to_string(), s);
        }
        let e = "wireguard".parse::<Backend>().unwrap_err();
        assert!(e.contains("--flannel-backend"), "{e}");
        assert_eq!(Backend::default(), Backend::Vxlan);
    }

    #[test]
    fn macs() {
        let m = vtep_mac("node-a");
        assert_eq!(m, vtep_mac("node-a"));
        assert_ne!(m, vtep_mac("node-b"));
        assert_eq!(m[0] & 0x03, 0x02, "unicast, locally administered");
        assert_eq!(parse_mac(&format_mac(&m)), Some(m));
        assert_eq!(
            parse_mac("02:AB:cd:00:01:ff"),
            Some([2, 0xab, 0xcd, 0, 1, 0xff])
        );
        for bad in [
            "",
            "02:00:00:00:00",
            "02:00:00:00:00:00:00",
            "zz:00:00:00:00:00",
            "2:0:0:0:0:0",
        ] {
            assert_eq!(parse_mac(bad), None, "{bad}");
        }
    }

    #[test]
    fn onlink_picks_longest_directly_attached_prefix() {
        let a = addrs();
        for (target, want) in [
            ("192.168.1.20", Some(2)),
            ("10.0.9.9", Some(3)),
            ("10.0.7.9", Some(4)),
            ("172.16.0.1", None),
            ("127.0.0.2", None),
            ("192.168.1.10", None),
        ] {
            assert_eq!(onlink_link(&a, ip(target)), want, "{target}");
        }
    }

    fn node(
        name: &str,
        cidrs: &[&str],
        single: Option<&str>,
        addrs: &[(&str, &str)],
        mac: Option<&str>,
    ) -> Node {
        let mut n = Node::default();
        n.metadata.name = Some(name.into());
        if let Some(m) = mac {
            n.metadata.annotations =
                Some([(VTEP_MAC_ANNOTATION.to_string(), m.to_string())].into());
        }
        n.spec = Some(NodeSpec {
            pod_cidr: single.map(String::from),
            pod_cidrs: (!cidrs.is_empty()).then(|| cidrs.iter().map(|s| s.to_string()).collect()),
            ..Default::default()
        });
        n.status = Some(NodeStatus {
            addresses: Some(
                addrs
                    .iter()
                    .map(|(t, a)| NodeAddress {
                        type_: t.to_string(),
                        address: a.to_string(),
                    })
                    .collect(),
            ),
            ..Default::default()
        });
        n
    }

    #[test]
    fn peers_from_nodes() {
        let n = node(
            "a",
            &["fd00::/64", "10.42.1.0/24"],
            Some("fd00::/64"),
            &[
                ("Hostname", "a"),
                ("InternalIP", "fd00::1"),
                ("InternalIP", "192.168.1.20"),
            ],
            Some("02:00:00:00:00:07"),
        );
        assert_eq!(
            peer_from_node(&n),
            Some(Peer {
                name: "a".into(),
                pod_cidrs: vec![net("10.42.1.0/24")],
                node_ip: ip("192.168.1.20"),
                vtep_mac: Some([2, 0, 0, 0, 0, 7]),
            })
        );
        // podCIDR alone counts; a bad annotation is just no MAC
        let n = node(
            "b",
            &[],
            Some("10.42.2.0/24"),
            &[("InternalIP", "192.168.1.21")],
            Some("junk"),
        );
        let p = peer_from_node(&n).unwrap();
        assert_eq!(p.pod_cidrs, vec![net("10.42.2.0/24")]);
        assert_eq!(p.vtep_mac, None);
        // no podCIDR yet, no InternalIP, or host bits in the CIDR: not a peer
        assert_eq!(
            peer_from_node(&node("c", &[], None, &[("InternalIP", "1.2.3.4")], None)),
            None
        );
        assert_eq!(
            peer_from_node(&node(
                "d",
                &["10.42.3.0/24"],
                None,
                &[("ExternalIP", "1.2.3.4")],
                None
            )),
            None
        );
        assert_eq!(
            peer_from_node(&node(
                "e",
                &["10.42.3.1/24"],
                None,
                &[("InternalIP", "1.2.3.4")],
                None
            )),
            None
        );
    }

    #[test]
    fn host_gw_routes_only_directly_reachable_peers() {
        let peers = [
            peer("me", "10.42.0.0/24", "192.168.1.10", None),
            peer("near", "10.42.1.0/24", "192.168.1.20", None),
            peer("far", "10.42.2.0/24", "172.16.0.9", None),
            peer("outside", "10.99.0.0/24", "192.168.1.30", None),
            peer("clash", "10.42.1.0/24", "192.168.1.40", None),
        ];
        let d = desired(
            Backend::HostGw,
            "me",
            &peers,
            &addrs(),
            None,
            Some(net("10.42.0.0/16")),
        );
        assert_eq!(
            d.routes.into_iter().collect::<Vec<_>>(),
            vec![Route {
                dst: ip("10.42.1.0"),
                prefix: 24,
                gateway: ip("192.168.1.20"),
                oif: 2,
                onlink: false
            }]
        );
        assert!(d.fdb.is_empty() && d.neigh.is_empty());
        let skipped: Vec<&str> = d.skipped.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(skipped, ["far", "outside", "clash"]);
        assert!(d.skipped[0].1.contains("vxlan"), "{:?}", d.skipped[0]);
    }

    #[test]
    fn vxlan_routes_fdb_and_neighbours() {
        let peers = [
            peer("me", "10.42.0.0/24", "192.168.1.10", Some(1)),
            peer("near", "10.42.1.0/24", "192.168.1.20", Some(2)),
            peer("far", "10.42.2.0/24", "172.16.0.9", Some(3)),
            peer("new", "10.42.3.0/24", "172.16.0.10", None),
        ];
        let d = desired(Backend::Vxlan, "me", &peers, &addrs(), Some(9), None);
        let routes: Vec<_> = d.routes.iter().map(|r| r.to_string()).collect();
        assert_eq!(
            routes,
            [
                "10.42.1.0/24 via 10.42.1.0 dev #9 onlink",
                "10.42.2.0/24 via 10.42.2.0 dev #9 onlink"
            ]
        );
        assert_eq!(
            d.fdb.iter().map(|f| (f.mac[5], f.dst)).collect::<Vec<_>>(),
            [(2, ip("192.168.1.20")), (3, ip("172.16.0.9"))]
        );
        assert_eq!(
            d.neigh.iter().map(|n| (n.ip, n.mac[5])).collect::<Vec<_>>(),
            [(ip("10.42.1.0"), 2), (ip("10.42.2.0"), 3)]
        );
        assert_eq!(d.skipped.len(), 1);
        assert_eq!(d.skipped[0].0, "new");
        // without the device nothing is planned
        let d = desired(Backend::Vxlan, "me", &peers, &addrs(), None, None);
        assert!(d.routes.is_empty() && d.skipped.len() == 3);
        // backend none plans nothing
        let d = desired(Backend::None, "me", &peers, &addrs(), Some(9), None);
        assert_eq!(d, Desired::default());
    }

    #[test]
    fn diff_cases() {
        let r = |dst: &str, gw: &str| Route {
            dst: ip(dst),
            prefix: 24,
            gateway: ip(gw),
            oif: 2,
            onlink: false,
        };
        let f = |m: u8, dst: &str| Fdb {
            mac: [2, 0, 0, 0, 0, m],
            dst: ip(dst),
        };
        let n = |a: &str, m: u8| Neigh {
            ip: ip(a),
            mac: [2, 0, 0, 0, 0, m],
        };
        let want = Desired {
            routes: [
                r("10.42.1.0", "192.168.1.20"),
                r("10.42.2.0", "192.168.1.21"),
            ]
            .into(),
            fdb: [f(1, "192.168.1.20"), f(2, "192.168.1.22")].into(),
            neigh: [n("10.42.1.0", 1), n("10.42.2.0", 2)].into(),
            skipped: vec![],
        };
        // from nothing: everything is added
        let c = diff(&BTreeSet::new(), &BTreeSet::new(), &BTreeSet::new(), &want);
        assert_eq!(c.set_routes.len(), 2);
        assert_eq!(c.add_fdb.len(), 2);
        assert_eq!(c.add_neigh.len(), 2);
        assert!(c.del_routes.is_empty() && c.del_fdb.is_empty() && c.del_neigh.is_empty());
        // in sync: nothing
        let c = diff(&want.routes, &want.fdb, &want.neigh, &want);
        assert!(c.is_empty());
        // stale (deleted node), changed next hop (replace, no delete), moved peer IP, changed MAC
        let current_routes = [
            r("10.42.1.0", "192.168.1.99"),
            r("10.42.2.0", "192.168.1.21"),
            r("10.42.5.0", "192.168.1.50"),
        ]
        .into();
        let current_fdb = [
            f(1, "192.168.1.20"),
            f(2, "192.168.1.99"),
            f(5, "192.168.1.50"),
        ]
        .into();
        let current_neigh = [n("10.42.1.0", 7), n("10.42.2.0", 2), n("10.42.5.0", 5)].into();
        let c = diff(&current_routes, &current_fdb, &current_neigh, &want);
        assert_eq!(c.set_routes, vec![r("10.42.1.0", "192.168.1.20")]);
        assert_eq!(c.del_routes, vec![r("10.42.5.0", "192.168.1.50")]);
        assert_eq!(c.add_fdb, vec![f(2, "192.168.1.22")]);
        assert_eq!(c.del_fdb, vec![f(2, "192.168.1.99"), f(5, "192.168.1.50")]);
        assert_eq!(c.add_neigh, vec![n("10.42.1.0", 1)]);
        assert_eq!(c.del_neigh, vec![n("10.42.5.0", 5)]);
    }
}
