//! Cross-node pod networking (flannel's job in k3s): watches Nodes and keeps
//! the kernel able to reach every other node's podCIDR, with the backend of
//! `--flannel-backend`:
//! - `host-gw`: a route `podCIDR via <node IP>` per peer on a directly
//!   attached network;
//! - `vxlan`: device `skiff.vxlan` (VNI 1, UDP 8472, MTU 1450, no learning,
//!   a MAC derived from the node name, published as the Node annotation
//!   `skiff.io/vtep-mac`), the network address of our podCIDR as a /32 on it,
//!   and per peer an FDB entry (VTEP MAC → node IP), a permanent neighbour
//!   (peer podCIDR network address → VTEP MAC) and a route
//!   `podCIDR via <network address> dev skiff.vxlan onlink`;
//! - `none`: nothing but `ip_forward`.
//!
//! The decisions are `plan` (pure); this file lists kernel state, applies the
//! changes through rtnetlink (never the `ip` command) and talks to the API.
//!
//! Invariants: every route we install carries `rtm_protocol`
//! [`plan::ROUTE_PROTOCOL`] in the main table, and only routes with that mark
//! (plus FDB/neighbour entries on our own VXLAN device) are ever removed;
//! each reconcile lists the kernel afresh, so stale entries from an earlier
//! run (deleted nodes, changed CIDRs, another backend) go on the first pass;
//! nothing is torn down when the agent stops (pods keep their network).
//! Failures are logged and retried on the next pass, never fatal.

pub mod plan;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube::api::{Patch, PatchParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use netlink_packet_route::AddressFamily;
use netlink_packet_route::address::AddressAttribute;
use netlink_packet_route::link::{InfoData, InfoVxlan, LinkAttribute, LinkInfo};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteHeader, RouteMessage, RouteProtocol,
};
use rtnetlink::{Handle, LinkUnspec, LinkVxlan, RouteMessageBuilder};

use crate::cni::ipnet::Ipv4Net;
use crate::cni::link::errno;
use plan::{Backend, Fdb, LocalAddr, Neigh, Route};

/// What the module needs from the agent's config.
#[derive(Clone, Debug)]
pub struct RoutesConfig {
    pub backend: Backend,
    pub node_name: String,
    pub node_ip: IpAddr,
    /// Pod network of the whole cluster; podCIDRs outside it are not routed.
    pub cluster_cidr: String,
}

#[derive(Debug, thiserror::Error)]
pub enum RoutesError {
    #[error("{what}: {detail}")]
    Netlink { what: String, detail: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("publishing the VTEP MAC on the Node: {0}")]
    Api(#[from] kube::Error),
}

fn nl(what: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> RoutesError {
    let what = what.into();
    move |e| RoutesError::Netlink {
        what,
        detail: e.to_string(),
    }
}

/// How often the kernel is checked again without any Node change.
const RESYNC: Duration = Duration::from_secs(30);
/// Node events arriving together are handled in one pass.
const DEBOUNCE: Duration = Duration::from_millis(100);

/// Turns on IPv4 forwarding in this network namespace (pods reach other
/// nodes and the world through the host).
pub fn enable_ip_forward() -> Result<(), RoutesError> {
    let path = "/proc/sys/net/ipv4/ip_forward";
    if std::fs::read_to_string(path).is_ok_and(|s| s.trim() == "1") {
        return Ok(());
    }
    std::fs::write(path, "1").map_err(|source| RoutesError::Io {
        what: format!("writing {path}"),
        source,
    })
}

/// Runs until `stop`: watches Nodes and reconciles routes on every change
/// and every [`RESYNC`].
pub async fn run(
    client: kube::Client,
    cfg: RoutesConfig,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    if let Err(e) = enable_ip_forward() {
        tracing::error!("node routes: {e}");
    }
    if cfg.backend == Backend::None {
        tracing::info!("flannel backend none: no routes to other nodes are managed");
        return;
    }
    let handle = match rtnetlink::new_connection() {
        Ok((conn, handle, _)) => {
            tokio::spawn(conn);
            handle
        }
        Err(e) => {
            tracing::error!("node routes: cannot open a netlink socket: {e}");
            return;
        }
    };
    let cluster_cidr = Ipv4Net::parse_network(&cfg.cluster_cidr).ok();
    let mut r = Reconciler {
        h: handle,
        cfg,
        cluster_cidr,
        api: Api::all(client),
        last_skipped: Vec::new(),
    };
    let stream = watcher::watcher(r.api.clone(), watcher::Config::default()).default_backoff();
    let mut stream = std::pin::pin!(stream);
    let mut nodes: BTreeMap<String, Node> = BTreeMap::new();
    let mut init: Option<BTreeMap<String, Node>> = None;
    let mut synced = false;
    let mut dirty = false;
    let mut tick = tokio::time::interval(RESYNC);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let debounce = async {
            if dirty && synced {
                tokio::time::sleep(DEBOUNCE).await
            } else {
                std::future::pending().await
            }
        };
        tokio::select! {
            _ = async { let _ = stop.wait_for(|s| *s).await; } => return,
            ev = stream.next() => match ev {
                Some(Ok(Event::Init)) => init = Some(BTreeMap::new()),
                Some(Ok(Event::InitApply(n))) => {
                    if let (Some(m), Some(name)) = (init.as_mut(), n.metadata.name.clone()) {
                        m.insert(name, n);
                    }
                }
                Some(Ok(Event::InitDone)) => {
                    if let Some(m) = init.take() {
                        nodes = m;
                    }
                    synced = true;
                    dirty = true;
                }
                Some(Ok(Event::Apply(n))) => {
                    if let Some(name) = n.metadata.name.clone() {
                        nodes.insert(name, n);
                        dirty = true;
                    }
                }
                Some(Ok(Event::Delete(n))) => {
                    if let Some(name) = &n.metadata.name {
                        nodes.remove(name);
                        dirty = true;
                    }
                }
                Some(Err(e)) => tracing::debug!("node routes: watching nodes: {e}"),
                None => return,
            },
            _ = debounce => {
                dirty = false;
                if let Err(e) = r.reconcile(&nodes).await {
                    tracing::warn!("node routes: {e}");
                    dirty = true;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
            _ = tick.tick() => if synced { dirty = true; },
        }
    }
}

struct Reconciler {
    h: Handle,
    cfg: RoutesConfig,
    cluster_cidr: Option<Ipv4Net>,
    api: Api<Node>,
    last_skipped: Vec<(String, String)>,
}

impl Reconciler {
    async fn reconcile(&mut self, nodes: &BTreeMap<String, Node>) -> Result<(), RoutesError> {
        let me = nodes.get(&self.cfg.node_name);
        let vxlan_index = match self.cfg.backend {
            Backend::Vxlan => Some(self.ensure_vxlan(me).await?),
            _ => {
                // a node switched away from VXLAN: the device (and with it its
                // routes, FDB and neighbours) is ours to remove
                if let Some(l) = link_by_name(&self.h, plan::VXLAN_DEVICE).await? {
                    self.h
                        .link()
                        .del(l)
                        .execute()
                        .await
                        .map_err(nl(format!("deleting {}", plan::VXLAN_DEVICE)))?;
                }
                None
            }
        };
        let peers: Vec<plan::Peer> = nodes.values().filter_map(plan::peer_from_node).collect();
        let addrs = local_addrs(&self.h).await?;
        let want = plan::desired(
            self.cfg.backend,
            &self.cfg.node_name,
            &peers,
            &addrs,
            vxlan_index,
            self.cluster_cidr,
        );
        if want.skipped != self.last_skipped {
            for (node, why) in &want.skipped {
                tracing::warn!("node routes: no route to the pods of node {node}: {why}");
            }
            self.last_skipped = want.skipped.clone();
        }
        let routes = our_routes(&self.h).await?;
        let (fdb, neigh) = match vxlan_index {
            Some(ix) => (
                vxlan_fdb(&self.h, ix).await?,
                vxlan_neigh(&self.h, ix).await?,
            ),
            None => (BTreeSet::new(), BTreeSet::new()),
        };
        let changes = plan::diff(&routes, &fdb, &neigh, &want);
        if changes.is_empty() {
            return Ok(());
        }
        // FDB/neighbour changes exist only with the VXLAN device
        let ix = vxlan_index.unwrap_or(0);
        // FDB and neighbours before the routes that need them; removals last
        for f in &changes.add_fdb {
            self.h
                .neighbours()
                .add_bridge(ix, &f.mac)
                .destination(IpAddr::V4(f.dst))
                .flags(NeighbourFlags::Own)
                .replace()
                .execute()
                .await
                .map_err(nl(format!(
                    "adding FDB entry {} dst {}",
                    plan::format_mac(&f.mac),
                    f.dst
                )))?;
        }
        for n in &changes.add_neigh {
            self.h
                .neighbours()
                .add(ix, IpAddr::V4(n.ip))
                .link_layer_address(&n.mac)
                .replace()
                .execute()
                .await
                .map_err(nl(format!("adding neighbour {}", n.ip)))?;
        }
        for r in &changes.set_routes {
            self.h
                .route()
                .add(route_message(r))
                .replace()
                .execute()
                .await
                .map_err(nl(format!("adding route {r}")))?;
            tracing::info!("node routes: route {r}");
        }
        for r in &changes.del_routes {
            match self.h.route().del(route_message(r)).execute().await {
                Ok(()) => tracing::info!("node routes: removed route {r}"),
                Err(e) if errno(&e) == Some(libc::ESRCH) => {}
                Err(e) => return Err(nl(format!("removing route {r}"))(e)),
            }
        }
        for n in &changes.del_neigh {
            match self
                .h
                .neighbours()
                .del(neigh_message(ix, n))
                .execute()
                .await
            {
                Ok(()) => {}
                Err(e) if matches!(errno(&e), Some(libc::ENOENT | libc::ESRCH)) => {}
                Err(e) => return Err(nl(format!("removing neighbour {}", n.ip))(e)),
            }
        }
        for f in &changes.del_fdb {
            match self.h.neighbours().del(fdb_message(ix, f)).execute().await {
                Ok(()) => {}
                Err(e) if matches!(errno(&e), Some(libc::ENOENT | libc::ESRCH)) => {}
                Err(e) => {
                    return Err(nl(format!("removing FDB entry dst {}", f.dst))(e));
                }
            }
        }
        Ok(())
    }

    /// The VXLAN device exists with our parameters, is up, carries the
    /// network address of our podCIDR, and our Node publishes its MAC.
    async fn ensure_vxlan(&mut self, me: Option<&Node>) -> Result<u32, RoutesError> {
        let IpAddr::V4(local) = self.cfg.node_ip else {
            return Err(RoutesError::Netlink {
                what: "VXLAN backend".into(),
                detail: format!("node IP {} is not IPv4", self.cfg.node_ip),
            });
        };
        let mac = plan::vtep_mac(&self.cfg.node_name);
        let name = plan::VXLAN_DEVICE;
        let existing = vxlan_params(&self.h, name).await?;
        let ix = match existing {
            Some(p)
                if p.vni == plan::VXLAN_VNI
                    && p.local == Some(local)
                    && p.port == plan::VXLAN_PORT
                    && p.mac == mac =>
            {
                p.index
            }
            other => {
                if let Some(p) = other {
                    tracing::info!("node routes: re-creating {name} (parameters changed)");
                    self.h
                        .link()
                        .del(p.index)
                        .execute()
                        .await
                        .map_err(nl(format!("deleting {name}")))?;
                }
                let addrs = local_addrs(&self.h).await?;
                let mut b = LinkVxlan::new(name, plan::VXLAN_VNI)
                    .local(local)
                    .port(plan::VXLAN_PORT)
                    .learning(false)
                    .mtu(plan::VXLAN_MTU)
                    .address(mac.to_vec());
                if let Some(dev) = addrs
                    .iter()
                    .find(|a| a.net.addr == local && !local.is_loopback())
                {
                    b = b.dev(dev.ifindex);
                }
                match self.h.link().add(b.build()).execute().await {
                    Ok(()) => {}
                    Err(e) if errno(&e) == Some(libc::EEXIST) => {}
                    Err(e) => return Err(nl(format!("creating {name}"))(e)),
                }
                link_by_name(&self.h, name)
                    .await?
                    .ok_or_else(|| RoutesError::Netlink {
                        what: format!("creating {name}"),
                        detail: "missing right after creation".into(),
                    })?
            }
        };
        self.h
            .link()
            .set(
                LinkUnspec::new_with_index(ix)
                    .mtu(plan::VXLAN_MTU)
                    .up()
                    .build(),
            )
            .execute()
            .await
            .map_err(nl(format!("bringing {name} up")))?;
        if let Some(cidr) = me.map(plan::pod_cidrs).and_then(|c| c.first().copied()) {
            let want = cidr.network();
            let have = addrs_of(&self.h, ix).await?;
            for a in have.iter().filter(|a| **a != want) {
                // our podCIDR changed (node re-created): drop the old one
                let _ = self.h.address().del(addr_message(ix, *a)).execute().await;
            }
            if !have.contains(&want) {
                match self
                    .h
                    .address()
                    .add(ix, IpAddr::V4(want), 32)
                    .execute()
                    .await
                {
                    Ok(()) => {}
                    Err(e) if errno(&e) == Some(libc::EEXIST) => {}
                    Err(e) => return Err(nl(format!("adding {want}/32 to {name}"))(e)),
                }
            }
        }
        self.publish_mac(me, &plan::format_mac(&mac)).await?;
        Ok(ix)
    }

    async fn publish_mac(&self, me: Option<&Node>, mac: &str) -> Result<(), RoutesError> {
        let Some(me) = me else {
            return Ok(()); // registered soon; the watch brings it
        };
        let annotations = me.metadata.annotations.as_ref();
        let has = |k: &str, v: &str| annotations.and_then(|a| a.get(k)).is_some_and(|x| x == v);
        if has(plan::VTEP_MAC_ANNOTATION, mac)
            && has(plan::BACKEND_ANNOTATION, self.cfg.backend.as_str())
        {
            return Ok(());
        }
        let patch = serde_json::json!({"metadata": {"annotations": {
            plan::VTEP_MAC_ANNOTATION: mac,
            plan::BACKEND_ANNOTATION: self.cfg.backend.as_str(),
        }}});
        self.api
            .patch(
                &self.cfg.node_name,
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await?;
        tracing::info!("node routes: published VTEP MAC {mac}");
        Ok(())
    }
}

fn route_message(r: &Route) -> RouteMessage {
    let mut b = RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(r.dst, r.prefix)
        .gateway(r.gateway)
        .output_interface(r.oif)
        .protocol(RouteProtocol::Other(plan::ROUTE_PROTOCOL));
    if r.onlink {
        b = b.onlink();
    }
    b.build()
}

fn neigh_message(ix: u32, n: &Neigh) -> NeighbourMessage {
    let mut m = NeighbourMessage::default();
    m.header.family = AddressFamily::Inet;
    m.header.ifindex = ix;
    m.attributes
        .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(
            n.ip,
        )));
    m
}

fn fdb_message(ix: u32, f: &Fdb) -> NeighbourMessage {
    let mut m = NeighbourMessage::default();
    m.header.family = AddressFamily::Bridge;
    m.header.ifindex = ix;
    m.header.flags = NeighbourFlags::Own;
    m.header.state = NeighbourState::Permanent;
    m.attributes
        .push(NeighbourAttribute::LinkLayerAddress(f.mac.to_vec()));
    m.attributes
        .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(
            f.dst,
        )));
    m
}

fn addr_message(ix: u32, a: Ipv4Addr) -> netlink_packet_route::address::AddressMessage {
    let mut m = netlink_packet_route::address::AddressMessage::default();
    m.header.family = AddressFamily::Inet;
    m.header.index = ix;
    m.header.prefix_len = 32;
    m.attributes.push(AddressAttribute::Local(IpAddr::V4(a)));
    m.attributes.push(AddressAttribute::Address(IpAddr::V4(a)));
    m
}

async fn link_by_name(h: &Handle, name: &str) -> Result<Option<u32>, RoutesError> {
    let mut s = h.link().get().match_name(name.to_string()).execute();
    match s.try_next().await {
        Ok(m) => Ok(m.map(|m| m.header.index)),
        Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(None),
        Err(e) => Err(nl(format!("looking up {name}"))(e)),
    }
}

struct VxlanParams {
    index: u32,
    vni: u32,
    local: Option<Ipv4Addr>,
    port: u16,
    mac: [u8; 6],
}

/// The parameters of link `name`; a non-VXLAN link of that name reads as
/// VNI 0, so it is replaced.
async fn vxlan_params(h: &Handle, name: &str) -> Result<Option<VxlanParams>, RoutesError> {
    let mut s = h.link().get().match_name(name.to_string()).execute();
    let m = match s.try_next().await {
        Ok(Some(m)) => m,
        Ok(None) => return Ok(None),
        Err(e) if errno(&e) == Some(libc::ENODEV) => return Ok(None),
        Err(e) => return Err(nl(format!("looking up {name}"))(e)),
    };
    let mut p = VxlanParams {
        index: m.header.index,
        vni: 0,
        local: None,
        port: 0,
        mac: [0; 6],
    };
    for a in &m.attributes {
        match a {
            LinkAttribute::Address(b) if b.len() == 6 => p.mac.copy_from_slice(b),
            LinkAttribute::LinkInfo(infos) => {
                for i in infos {
                    if let LinkInfo::Data(InfoData::Vxlan(v)) = i {
                        for x in v {
                            match x {
                                InfoVxlan::Id(id) => p.vni = *id,
                                InfoVxlan::Local(l) => p.local = Some(*l),
                                InfoVxlan::Port(port) => p.port = *port,
                                _ => {}
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }
    Ok(Some(p))
}

async fn local_addrs(h: &Handle) -> Result<Vec<LocalAddr>, RoutesError> {
    let mut out = Vec::new();
    let mut s = h.address().get().execute();
    while let Some(m) = s.try_next().await.map_err(nl("listing addresses"))? {
        let ip = m.attributes.iter().find_map(|a| match a {
            AddressAttribute::Local(IpAddr::V4(ip)) => Some(*ip),
            _ => None,
        });
        let ip = ip.or_else(|| {
            m.attributes.iter().find_map(|a| match a {
                AddressAttribute::Address(IpAddr::V4(ip)) => Some(*ip),
                _ => None,
            })
        });
        if let Some(ip) = ip
            && let Ok(net) = Ipv4Net::new(ip, m.header.prefix_len)
        {
            out.push(LocalAddr {
                ifindex: m.header.index,
                net,
            });
        }
    }
    Ok(out)
}

async fn addrs_of(h: &Handle, ix: u32) -> Result<Vec<Ipv4Addr>, RoutesError> {
    Ok(local_addrs(h)
        .await?
        .into_iter()
        .filter(|a| a.ifindex == ix)
        .map(|a| a.net.addr)
        .collect())
}

/// Routes in the main table carrying our protocol mark.
async fn our_routes(h: &Handle) -> Result<BTreeSet<Route>, RoutesError> {
    let mut out = BTreeSet::new();
    let mut s = h
        .route()
        .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
        .execute();
    while let Some(m) = s.try_next().await.map_err(nl("listing routes"))? {
        if m.header.protocol != RouteProtocol::Other(plan::ROUTE_PROTOCOL) {
            continue;
        }
        let table = m
            .attributes
            .iter()
            .find_map(|a| match a {
                RouteAttribute::Table(t) => Some(*t),
                _ => None,
            })
            .unwrap_or(u32::from(m.header.table));
        if table != u32::from(RouteHeader::RT_TABLE_MAIN) {
            continue;
        }
        let mut r = Route {
            dst: Ipv4Addr::UNSPECIFIED,
            prefix: m.header.destination_prefix_length,
            gateway: Ipv4Addr::UNSPECIFIED,
            oif: 0,
            onlink: m.header.flags.contains(RouteFlags::Onlink),
        };
        for a in &m.attributes {
            match a {
                RouteAttribute::Destination(RouteAddress::Inet(d)) => r.dst = *d,
                RouteAttribute::Gateway(RouteAddress::Inet(g)) => r.gateway = *g,
                RouteAttribute::Oif(o) => r.oif = *o,
                _ => {}
            }
        }
        out.insert(r);
    }
    Ok(out)
}

/// The link-layer address (6 bytes) and IPv4 destination of a neighbour
/// or FDB message, when present.
fn mac_and_ipv4(attrs: &[NeighbourAttribute]) -> (Option<[u8; 6]>, Option<std::net::Ipv4Addr>) {
    let mut mac = None;
    let mut ip = None;
    for a in attrs {
        match a {
            NeighbourAttribute::LinkLayerAddress(b) if b.len() == 6 => {
                let mut x = [0u8; 6];
                x.copy_from_slice(b);
                mac = Some(x);
            }
            NeighbourAttribute::Destination(NeighbourAddress::Inet(d)) => ip = Some(*d),
            _ => {}
        }
    }
    (mac, ip)
}

/// Unicast FDB entries with a remote destination on the VXLAN device.
async fn vxlan_fdb(h: &Handle, ix: u32) -> Result<BTreeSet<Fdb>, RoutesError> {
    let mut out = BTreeSet::new();
    let mut s = h
        .neighbours()
        .get()
        .set_address_family(AddressFamily::Bridge)
        .execute();
    while let Some(m) = s.try_next().await.map_err(nl("listing FDB entries"))? {
        if m.header.ifindex != ix {
            continue;
        }
        let (mac, dst) = mac_and_ipv4(&m.attributes);
        if let (Some(mac), Some(dst)) = (mac, dst)
            && mac != [0; 6]
        {
            out.insert(Fdb { mac, dst });
        }
    }
    Ok(out)
}

/// Permanent IPv4 neighbours on the VXLAN device.
async fn vxlan_neigh(h: &Handle, ix: u32) -> Result<BTreeSet<Neigh>, RoutesError> {
    let mut out = BTreeSet::new();
    let mut s = h
        .neighbours()
        .get()
        .set_address_family(AddressFamily::Inet)
        .execute();
    while let Some(m) = s.try_next().await.map_err(nl("listing neighbours"))? {
        if m.header.ifindex != ix || m.header.state != NeighbourState::Permanent {
            continue;
        }
        let (mac, ip) = mac_and_ipv4(&m.attributes);
        if let (Some(mac), Some(ip)) = (mac, ip) {
            out.insert(Neigh { ip, mac });
        }
    }
    Ok(out)
}
