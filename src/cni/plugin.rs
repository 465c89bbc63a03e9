//! The `skiff-cni` plugin: ADD, DEL and CHECK of a pod on the node bridge.
//! Orchestration only; the pieces are `ipam_store`, `link`, `netns`,
//! `nft_apply`.
//!
//! Invariants: ADD either succeeds or releases the address it took; DEL is
//! idempotent and succeeds when the namespace, the links, the address or the
//! rules are already gone; the host-side veth name is a function of
//! (container id, ifname), so DEL finds it without any saved state.

use std::net::Ipv4Addr;

use sha2::{Digest, Sha256};

use super::config::NetConf;
use super::env::CniEnv;
use super::error::CniError;
use super::ipam;
use super::ipam_store::IpamStore;
use super::ipnet::Ipv4Net;
use super::link;
use super::netns;
use super::nft_apply;
use super::result::{CniResult, Interface, IpConfig, Route};

/// Host-side veth name: `veth` + 10 hex digits of sha256(container id/ifname).
pub fn host_veth_name(container_id: &str, ifname: &str) -> String {
    let digest = Sha256::digest(format!("{container_id}/{ifname}").as_bytes());
    format!("veth{}", &hex::encode(digest)[..10])
}

fn enable_ip_forward() -> Result<(), CniError> {
    let path = "/proc/sys/net/ipv4/ip_forward";
    if std::fs::read_to_string(path).is_ok_and(|v| v.trim() == "1") {
        return Ok(());
    }
    std::fs::write(path, "1").map_err(|e| CniError::io("cannot enable net.ipv4.ip_forward", e))
}

pub fn add(conf: &NetConf, env: &CniEnv) -> Result<CniResult, CniError> {
    let ns = netns::open(&env.netns)?.ok_or_else(|| {
        CniError::netns(
            format!("network namespace {} does not exist", env.netns),
            "the runtime must create it before ADD",
        )
    })?;
    let store = IpamStore::open(&conf.state_dir())?;
    let ip = store.allocate(&conf.subnet, &env.container_id, &env.ifname)?;
    match add_with_ip(conf, env, &ns, ip) {
        Ok(r) => Ok(r),
        Err(e) => {
            // the runtime may never call DEL for a failed ADD: do not leak
            let _ = store.release(&env.container_id, &env.ifname);
            let host_veth = host_veth_name(&env.container_id, &env.ifname);
            let _ = netns::in_host(async |h| link::delete(&h, &host_veth).await);
            let _ = nft_apply::del_container(conf, &env.container_id, &env.ifname);
            Err(e)
        }
    }
}

fn add_with_ip(
    conf: &NetConf,
    env: &CniEnv,
    ns: &std::fs::File,
    ip: Ipv4Addr,
) -> Result<CniResult, CniError> {
    let gateway = conf.gateway();
    let pod_addr = conf.subnet.with_addr(ip);
    let host_veth = host_veth_name(&env.container_id, &env.ifname);
    enable_ip_forward()?;

    // a repeated ADD starts from scratch: the host end of an earlier pair is
    // deleted (taking its pod end along); a pod end still there under our
    // name (another link) is dropped only when creating the pair finds it,
    // so the common ADD enters the namespace once
    let ifname = env.ifname.clone();
    let host_side = async |h: rtnetlink::Handle| {
        let bridge =
            link::ensure_bridge(&h, &conf.bridge, conf.mtu, conf.subnet.with_addr(gateway)).await?;
        link::delete(&h, &host_veth).await?;
        if !link::create_veth(&h, &host_veth, &env.ifname, conf.mtu, ns).await? {
            return Ok(None);
        }
        let host = link::attach_to_bridge(&h, &host_veth, bridge.index, conf.hairpin_mode).await?;
        Ok(Some((bridge, host)))
    };
    let (bridge, host) = match netns::in_host(host_side)? {
        Some(v) => v,
        None => {
            netns::in_netns(ns, async |h| link::delete(&h, &ifname).await)?;
            netns::in_host(host_side)?.ok_or_else(|| {
                CniError::netlink(
                    format!("cannot create veth pair {host_veth}/{ifname}"),
                    "File exists",
                )
            })?
        }
    };

    let pod = netns::in_netns(ns, async |h| {
        link::configure_pod_interface(&h, &ifname, pod_addr, gateway).await
    })?;

    nft_apply::add_container(conf, &env.container_id, &env.ifname, ip)?;

    Ok(CniResult {
        interfaces: vec![
            Interface {
                name: conf.bridge.clone(),
                mac: bridge.mac,
                sandbox: None,
            },
            Interface {
                name: host_veth,
                mac: host.mac,
                sandbox: None,
            },
            Interface {
                name: env.ifname.clone(),
                mac: pod.mac,
                sandbox: Some(env.netns.clone()),
            },
        ],
        ips: vec![IpConfig {
            interface: Some(2),
            address: pod_addr,
            gateway: Some(gateway),
        }],
        routes: vec![Route {
            dst: Ipv4Net {
                addr: Ipv4Addr::UNSPECIFIED,
                prefix: 0,
            },
            gw: Some(gateway),
        }],
    })
}

pub fn del(conf: &NetConf, env: &CniEnv) -> Result<(), CniError> {
    nft_apply::del_container(conf, &env.container_id, &env.ifname)?;
    if let Some(ns) = netns::open(&env.netns)? {
        let ifname = env.ifname.clone();
        // a namespace being torn down may refuse entry: the host side below suffices
        let _ = netns::in_netns(&ns, async |h| link::delete(&h, &ifname).await);
    }
    let host_veth = host_veth_name(&env.container_id, &env.ifname);
    netns::in_host(async |h| link::delete(&h, &host_veth).await)?;
    if let Some(store) = IpamStore::open_existing(&conf.state_dir()) {
        store.release(&env.container_id, &env.ifname)?;
    }
    Ok(())
}

pub fn check(conf: &NetConf, env: &CniEnv) -> Result<(), CniError> {
    if !matches!(conf.cni_version.as_str(), "0.4.0" | "1.0.0") {
        return Err(CniError::IncompatibleVersion(format!(
            "{} (CHECK needs 0.4.0 or later)",
            conf.cni_version
        )));
    }
    let store = IpamStore::open_existing(&conf.state_dir())
        .ok_or_else(|| CniError::CheckFailed("no IPAM state for this network".into()))?;
    let ip = store.find(&env.container_id, &env.ifname)?.ok_or_else(|| {
        CniError::CheckFailed(format!("container {} holds no address", env.container_id))
    })?;
    if let Some(prev) = &conf.prev_result {
        let prev = CniResult::from_prev(prev);
        if let Some(want) = prev.ip_of(&env.ifname)
            && want.addr != ip
        {
            return Err(CniError::CheckFailed(format!(
                "prevResult has {want} for {} but IPAM holds {ip}",
                env.ifname
            )));
        }
    }
    if !ipam::is_assignable(&conf.subnet, ip) {
        return Err(CniError::CheckFailed(format!(
            "{ip} is not in subnet {}",
            conf.subnet
        )));
    }
    let ns = netns::open(&env.netns)?
        .ok_or_else(|| CniError::CheckFailed(format!("network namespace {} is gone", env.netns)))?;
    let host_veth = host_veth_name(&env.container_id, &env.ifname);
    netns::in_host(async |h| {
        let br = link::get(&h, &conf.bridge)
            .await?
            .ok_or_else(|| CniError::CheckFailed(format!("bridge {} is missing", conf.bridge)))?;
        let v = link::get(&h, &host_veth)
            .await?
            .ok_or_else(|| CniError::CheckFailed(format!("host veth {host_veth} is missing")))?;
        if v.controller != Some(br.index) {
            return Err(CniError::CheckFailed(format!(
                "{host_veth} is not attached to {}",
                conf.bridge
            )));
        }
        Ok(())
    })?;
    let ifname = env.ifname.clone();
    netns::in_netns(&ns, async |h| {
        let l = link::get(&h, &ifname).await?.ok_or_else(|| {
            CniError::CheckFailed(format!("{ifname} is missing in the pod namespace"))
        })?;
        if !l.up {
            return Err(CniError::CheckFailed(format!("{ifname} is down")));
        }
        if !link::has_address(&h, l.index, ip).await? {
            return Err(CniError::CheckFailed(format!(
                "{ifname} does not have {ip}"
            )));
        }
        Ok(())
    })?;
    nft_apply::check_container(conf, &env.container_id, &env.ifname)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn veth_names() {
        let a = host_veth_name("0123456789abcdef", "eth0");
        assert_eq!(a.len(), 14);
        assert!(a.starts_with("veth"));
        assert!(crate::cni::config::validate_ifname("veth", &a).is_ok());
        assert_eq!(a, host_veth_name("0123456789abcdef", "eth0"));
        assert_ne!(a, host_veth_name("0123456789abcdef", "eth1"));
        assert_ne!(a, host_veth_name("0123456789abcdeF", "eth0"));
    }
}
