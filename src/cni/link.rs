//! Netlink operations of the pod network (through `rtnetlink`, never the
//! `ip` command): the bridge, veth pairs, addresses, routes, link state.
//!
//! Invariants: every "ensure" is idempotent and tolerates a concurrent
//! plugin doing the same (EEXIST is success); "delete" of something absent
//! is success.

use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;

use futures::TryStreamExt;
use netlink_packet_route::address::AddressAttribute;
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkMessage,
};
use rtnetlink::{
    Handle, LinkBridge, LinkBridgePort, LinkMessageBuilder, LinkUnspec, LinkVeth,
    RouteMessageBuilder,
};
use sha2::Digest;

use super::error::CniError;
use super::ipnet::Ipv4Net;
use super::result::format_mac;

/// What we need to know of a link.
#[derive(Clone, Debug)]
pub struct Link {
    pub index: u32,
    pub mac: String,
    pub controller: Option<u32>,
    pub up: bool,
}

/// The positive errno of a netlink error, if it is one.
pub fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.code.map(|c| -c.get()),
        _ => None,
    }
}

fn to_link(m: &LinkMessage) -> Link {
    let mut l = Link {
        index: m.header.index,
        mac: String::new(),
        controller: None,
        up: m.header.flags.contains(LinkFlags::Up),
    };
    for a in &m.attributes {
        match a {
            LinkAttribute::Address(b) => l.mac = format_mac(b),
            LinkAttribute::Controller(c) => l.controller = Some(*c),
            _ => {}
        }
    }
    l
}

/// The link called `name`, if any.
pub async fn get(h: &Handle, name: &str) -> Result<Option<Link>, CniError> {
    let mut s = h.link().get().match_name(name.to_string()).execute();
    match s.try_next().await {
        Ok(Some(m)) => Ok(Some(to_link(&m))),
        Ok(None) => Ok(None),
        Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(None),
        Err(e) => Err(CniError::netlink(format!("cannot look up link {name}"), e)),
    }
}

async fn set_up(h: &Handle, index: u32, name: &str) -> Result<(), CniError> {
    h.link()
        .set(LinkUnspec::new_with_index(index).up().build())
        .execute()
        .await
        .map_err(|e| CniError::netlink(format!("cannot bring {name} up"), e))
}

/// Deletes the link called `name`; `false` when there was none.
pub async fn delete(h: &Handle, name: &str) -> Result<bool, CniError> {
    let Some(l) = get(h, name).await? else {
        return Ok(false);
    };
    match h.link().del(l.index).execute().await {
        Ok(()) => Ok(true),
        Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(false),
        Err(e) => Err(CniError::netlink(format!("cannot delete link {name}"), e)),
    }
}

/// Adds `addr` to link `index` unless it is there already.
async fn ensure_address(h: &Handle, index: u32, name: &str, addr: Ipv4Net) -> Result<(), CniError> {
    let mut s = h.address().get().set_link_index_filter(index).execute();
    while let Some(m) = s
        .try_next()
        .await
        .map_err(|e| CniError::netlink(format!("cannot list addresses of {name}"), e))?
    {
        let has = m.attributes.iter().any(|a| {
            matches!(a, AddressAttribute::Address(IpAddr::V4(ip)) | AddressAttribute::Local(IpAddr::V4(ip)) if *ip == addr.addr)
        });
        if has && m.header.prefix_len == addr.prefix {
            return Ok(());
        }
    }
    match h
        .address()
        .add(index, IpAddr::V4(addr.addr), addr.prefix)
        .execute()
        .await
    {
        Ok(()) => Ok(()),
        Err(e) if errno(&e) == Some(libc::EEXIST) => Ok(()),
        Err(e) => Err(CniError::netlink(format!("cannot add {addr} to {name}"), e)),
    }
}

/// Whether link `index` carries `addr` (any prefix length).
pub async fn has_address(h: &Handle, index: u32, addr: Ipv4Addr) -> Result<bool, CniError> {
    let mut s = h.address().get().set_link_index_filter(index).execute();
    while let Some(m) = s
        .try_next()
        .await
        .map_err(|e| CniError::netlink("cannot list addresses", e))?
    {
        if m.attributes
            .iter()
            .any(|a| matches!(a, AddressAttribute::Local(IpAddr::V4(ip)) | AddressAttribute::Address(IpAddr::V4(ip)) if *ip == addr))
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// A stable, locally administered unicast MAC for the bridge `name`.
pub fn bridge_mac(name: &str) -> [u8; 6] {
    let d = sha2::Sha256::digest(format!("skiff-bridge/{name}").as_bytes());
    [0x02, d[0], d[1], d[2], d[3], d[4]]
}

/// The bridge exists, is up, has the MTU and the gateway address.
pub async fn ensure_bridge(
    h: &Handle,
    name: &str,
    mtu: u32,
    gateway: Ipv4Net,
) -> Result<Link, CniError> {
    if get(h, name).await?.is_none() {
        // an explicit MAC pins it: otherwise the bridge takes the lowest port
        // MAC and the gateway MAC of every pod changes as pods come and go
        let msg = LinkBridge::new(name)
            .mtu(mtu)
            .address(bridge_mac(name).to_vec())
            .build();
        match h.link().add(msg).execute().await {
            Ok(()) => {}
            // another ADD created it first
            Err(e) if errno(&e) == Some(libc::EEXIST) => {}
            Err(e) => return Err(CniError::netlink(format!("cannot create bridge {name}"), e)),
        }
    }
    let br = get(h, name).await?.ok_or_else(|| {
        CniError::netlink(format!("bridge {name}"), "vanished right after creation")
    })?;
    h.link()
        .set(LinkUnspec::new_with_index(br.index).mtu(mtu).up().build())
        .execute()
        .await
        .map_err(|e| CniError::netlink(format!("cannot set up bridge {name}"), e))?;
    ensure_address(h, br.index, name, gateway).await?;
    Ok(br)
}

/// Creates a veth pair: `host_name` here, `peer_name` directly inside the
/// namespace `netns` (so it never exists under a clashing name in the host).
/// `Ok(false)`: not created, one of the names is taken (EEXIST).
pub async fn create_veth(
    h: &Handle,
    host_name: &str,
    peer_name: &str,
    mtu: u32,
    netns: &std::fs::File,
) -> Result<bool, CniError> {
    let peer = LinkMessageBuilder::<LinkUnspec>::new()
        .name(peer_name.to_string())
        .mtu(mtu)
        .setns_by_fd(netns.as_raw_fd())
        .build();
    let msg = LinkMessageBuilder::<LinkVeth>::new_with_info_kind(InfoKind::Veth)
        .name(host_name.to_string())
        .mtu(mtu)
        .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
        .build();
    match h.link().add(msg).execute().await {
        Ok(()) => Ok(true),
        Err(e) if errno(&e) == Some(libc::EEXIST) => Ok(false),
        Err(e) => Err(CniError::netlink(
            format!("cannot create veth pair {host_name}/{peer_name}"),
            e,
        )),
    }
}

/// Attaches a link to the bridge, sets hairpin mode and brings it up.
pub async fn attach_to_bridge(
    h: &Handle,
    name: &str,
    bridge_index: u32,
    hairpin: bool,
) -> Result<Link, CniError> {
    let l = get(h, name)
        .await?
        .ok_or_else(|| CniError::netlink(format!("veth {name}"), "missing right after creation"))?;
    h.link()
        .set(
            LinkUnspec::new_with_index(l.index)
                .controller(bridge_index)
                .build(),
        )
        .execute()
        .await
        .map_err(|e| CniError::netlink(format!("cannot attach {name} to the bridge"), e))?;
    if hairpin {
        h.link()
            .set_port(LinkBridgePort::new(l.index).hairpin(true).build())
            .execute()
            .await
            .map_err(|e| CniError::netlink(format!("cannot set hairpin mode on {name}"), e))?;
    }
    set_up(h, l.index, name).await?;
    get(h, name)
        .await?
        .ok_or_else(|| CniError::netlink(format!("veth {name}"), "vanished"))
}

/// Inside the pod: address, up, default route via the gateway, `lo` up.
pub async fn configure_pod_interface(
    h: &Handle,
    ifname: &str,
    addr: Ipv4Net,
    gateway: Ipv4Addr,
) -> Result<Link, CniError> {
    let l = get(h, ifname).await?.ok_or_else(|| {
        CniError::netlink(
            format!("interface {ifname}"),
            "missing in the pod namespace",
        )
    })?;
    ensure_address(h, l.index, ifname, addr).await?;
    set_up(h, l.index, ifname).await?;
    loopback_up(h).await?;
    let route = RouteMessageBuilder::<Ipv4Addr>::new()
        .gateway(gateway)
        .output_interface(l.index)
        .build();
    h.route()
        .add(route)
        .replace()
        .execute()
        .await
        .map_err(|e| CniError::netlink(format!("cannot add the default route via {gateway}"), e))?;
    Ok(l)
}

/// Brings `lo` up (the loopback plugin and every pod).
pub async fn loopback_up(h: &Handle) -> Result<(), CniError> {
    let lo = get(h, "lo")
        .await?
        .ok_or_else(|| CniError::netlink("interface lo", "missing"))?;
    set_up(h, lo.index, "lo").await
}

/// Brings `lo` down (loopback DEL); absent `lo` is fine.
pub async fn loopback_down(h: &Handle) -> Result<(), CniError> {
    if let Some(lo) = get(h, "lo").await? {
        h.link()
            .set(LinkUnspec::new_with_index(lo.index).down().build())
            .execute()
            .await
            .map_err(|e| CniError::netlink("cannot bring lo down", e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bridge_mac_is_stable_unicast_local() {
        let m = bridge_mac("skiff0");
        assert_eq!(m, bridge_mac("skiff0"));
        assert_ne!(m, bridge_mac("skiff1"));
        assert_eq!(m[0] & 0x01, 0, "unicast");
        assert_eq!(m[0] & 0x02, 0x02, "locally administered");
    }
}
