//! nftables rules of the pod network, rendered as `nft -f` scripts. Pure:
//! running `nft` is `nft_apply`'s job.
//!
//! One table per bridge, `ip skiffcni_<bridge>`, so networks on different
//! bridges (a test next to a real agent) never touch each other's rules:
//! - `postrouting` (nat): masquerade pod traffic leaving `clusterCIDR`
//!   (when `ipMasq`) and hairpin/pod-to-pod hostPort traffic;
//! - `prerouting` / `output` (nat): traffic to a local address jumps to
//!   `hostports`;
//! - `hostports`: one `jump hp_<hash>` per container with port mappings;
//! - `hp_<hash>`: that container's DNAT rules, `<hash>` derived from
//!   (container id, ifname).
//!
//! Invariants: every script is one atomic transaction; an ADD flushes and
//! refills the base chains unless the listing shows them exactly as the
//! config renders them (`base_in_place`: the last `postrouting` rule carries
//! a stamp hashing the rendered base rules, and every base chain holds the
//! expected number of rules), so after any ADD they match the config; DEL
//! removes exactly the container's chain and its jump and nothing else.
//!
//! `127.0.0.1:hostPort` is deliberately not forwarded: that needs
//! `route_localnet` on the bridge, which exposes the host's loopback-only
//! services to pods (CVE-2020-8558); use a host address instead.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::Ipv4Addr;

use sha2::{Digest, Sha256};

use super::config::{NetConf, PortMapping};

pub const POD_CHAIN_PREFIX: &str = "hp_";

/// The table of the network on `bridge`.
pub fn table_name(bridge: &str) -> String {
    let safe: String = bridge
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("skiffcni_{safe}")
}

/// The chain holding the DNAT rules of one container interface.
pub fn pod_chain(container_id: &str, ifname: &str) -> String {
    let digest = Sha256::digest(format!("{container_id}/{ifname}").as_bytes());
    format!("{POD_CHAIN_PREFIX}{}", &hex::encode(digest)[..16])
}

/// A comment naming the owner; only characters that need no quoting rules.
fn owner_comment(container_id: &str, ifname: &str) -> String {
    format!("{container_id}/{ifname}")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '/'))
        .take(120)
        .collect()
}

/// The comment on the last `postrouting` rule: a hash of the base rules the
/// config renders, so a listing tells whether they are in place.
pub fn base_stamp(conf: &NetConf) -> String {
    let digest = Sha256::digest(render_base_rules(conf, None).as_bytes());
    format!("skiff-base {}", &hex::encode(digest)[..16])
}

/// The base table with `hostports` dispatching to `pod_chains`.
fn render_base(conf: &NetConf, pod_chains: &BTreeSet<String>) -> String {
    let t = table_name(&conf.bridge);
    let mut s = render_base_rules(conf, Some(&base_stamp(conf)));
    for c in pod_chains {
        let _ = writeln!(s, "add rule ip {t} hostports jump {c}");
    }
    s
}

/// The base chains and their rules (no pod jumps), the last `postrouting`
/// rule commented with `stamp`.
fn render_base_rules(conf: &NetConf, stamp: Option<&str>) -> String {
    let t = table_name(&conf.bridge);
    let subnet = conf.subnet;
    let mut s = String::new();
    let _ = writeln!(s, "add table ip {t}");
    let _ = writeln!(
        s,
        "add chain ip {t} postrouting {{ type nat hook postrouting priority 100; policy accept; }}"
    );
    let _ = writeln!(
        s,
        "add chain ip {t} prerouting {{ type nat hook prerouting priority -100; policy accept; }}"
    );
    let _ = writeln!(
        s,
        "add chain ip {t} output {{ type nat hook output priority -100; policy accept; }}"
    );
    let _ = writeln!(s, "add chain ip {t} hostports");
    for c in ["postrouting", "prerouting", "output", "hostports"] {
        let _ = writeln!(s, "flush chain ip {t} {c}");
    }
    let _ = writeln!(
        s,
        "add rule ip {t} prerouting fib daddr type local jump hostports"
    );
    let _ = writeln!(
        s,
        "add rule ip {t} output fib daddr type local jump hostports"
    );
    // a pod reaching a hostPort (its own: hairpin) must see replies come back
    // through the host, so the source is rewritten
    let comment = stamp
        .map(|c| format!(" comment \"{c}\""))
        .unwrap_or_default();
    let (hairpin, egress) = if conf.ip_masq {
        ("", comment.as_str())
    } else {
        (comment.as_str(), "")
    };
    let _ = writeln!(
        s,
        "add rule ip {t} postrouting ip saddr {subnet} ct status dnat ip daddr {subnet} masquerade{hairpin}"
    );
    if conf.ip_masq {
        let inside = conf.cluster_cidr.unwrap_or(subnet);
        let _ = writeln!(
            s,
            "add rule ip {t} postrouting ip saddr {subnet} ip daddr != {inside} ip daddr != 224.0.0.0/4 masquerade{egress}"
        );
    }
    s
}

/// Whether `nft -j list table` output shows the base chains exactly as
/// `conf` renders them with `pod_chains` jumped to from `hostports`: the
/// stamp on the last `postrouting` rule, and the rule count of every base
/// chain. Then an ADD without port mappings has nothing to change.
pub fn base_in_place(listing: &str, conf: &NetConf, pod_chains: &BTreeSet<String>) -> bool {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(listing) else {
        return false;
    };
    let Some(items) = v["nftables"].as_array() else {
        return false;
    };
    let rules: Vec<&serde_json::Value> = items
        .iter()
        .map(|i| &i["rule"])
        .filter(|r| r.is_object())
        .collect();
    let in_chain = |c: &str| -> Vec<&&serde_json::Value> {
        rules
            .iter()
            .filter(|r| r["chain"].as_str() == Some(c))
            .collect()
    };
    let post = in_chain("postrouting");
    let stamp = base_stamp(conf);
    post.len() == 1 + usize::from(conf.ip_masq)
        && post.last().and_then(|r| r["comment"].as_str()) == Some(stamp.as_str())
        && in_chain("prerouting").len() == 1
        && in_chain("output").len() == 1
        && in_chain("hostports").len() == pod_chains.len()
}

fn render_mapping(
    t: &str,
    chain: &str,
    pod_ip: Ipv4Addr,
    m: &PortMapping,
    comment: &str,
) -> String {
    let daddr = m
        .host_ip
        .map(|ip| format!("ip daddr {ip} "))
        .unwrap_or_default();
    format!(
        "add rule ip {t} {chain} {daddr}meta l4proto {proto} th dport {hp} dnat to {pod_ip}:{cp} comment \"{comment}\"\n",
        proto = m.protocol.as_str(),
        hp = m.host_port,
        cp = m.container_port,
    )
}

/// ADD: base chains plus this container's DNAT chain (or its removal when
/// it has no mappings any more). `existing` = pod chains now in the table.
pub fn render_add(
    conf: &NetConf,
    existing: &BTreeSet<String>,
    container_id: &str,
    ifname: &str,
    pod_ip: Ipv4Addr,
) -> String {
    let t = table_name(&conf.bridge);
    let chain = pod_chain(container_id, ifname);
    let mut wanted = existing.clone();
    if conf.port_mappings.is_empty() {
        wanted.remove(&chain);
    } else {
        wanted.insert(chain.clone());
    }
    // the chain must exist before `hostports` can jump to it
    let mut s = String::new();
    if !conf.port_mappings.is_empty() {
        let _ = writeln!(s, "add table ip {t}");
        let _ = writeln!(s, "add chain ip {t} {chain}");
        let _ = writeln!(s, "flush chain ip {t} {chain}");
        let comment = owner_comment(container_id, ifname);
        for m in &conf.port_mappings {
            s.push_str(&render_mapping(&t, &chain, pod_ip, m, &comment));
        }
    }
    s.push_str(&render_base(conf, &wanted));
    if conf.port_mappings.is_empty() && existing.contains(&chain) {
        let _ = writeln!(s, "flush chain ip {t} {chain}");
        let _ = writeln!(s, "delete chain ip {t} {chain}");
    }
    s
}

/// DEL: drop the container's jump and chain; `None` when it has none.
pub fn render_del(
    conf: &NetConf,
    existing: &BTreeSet<String>,
    container_id: &str,
    ifname: &str,
) -> Option<String> {
    let t = table_name(&conf.bridge);
    let chain = pod_chain(container_id, ifname);
    if !existing.contains(&chain) {
        return None;
    }
    let t_hostports = format!("flush chain ip {t} hostports\n");
    let mut s = t_hostports;
    for c in existing.iter().filter(|c| **c != chain) {
        let _ = writeln!(s, "add rule ip {t} hostports jump {c}");
    }
    let _ = writeln!(s, "flush chain ip {t} {chain}");
    let _ = writeln!(s, "delete chain ip {t} {chain}");
    Some(s)
}

/// Pod chains present in `nft -j list table` output.
pub fn pod_chains_from_json(listing: &str) -> Result<BTreeSet<String>, String> {
    let v: serde_json::Value =
        serde_json::from_str(listing).map_err(|e| format!("cannot parse nft -j output: {e}"))?;
    let items = v["nftables"]
        .as_array()
        .ok_or_else(|| "nft -j output has no \"nftables\" array".to_string())?;
    Ok(items
        .iter()
        .filter_map(|i| i["chain"]["name"].as_str())
        .filter(|n| n.starts_with(POD_CHAIN_PREFIX))
        .map(str::to_string)
        .collect())
}

/// Whether the DNAT chain of a container is in the listing with one rule per mapping.
pub fn pod_rules_in_json(listing: &str, chain: &str) -> usize {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(listing) else {
        return 0;
    };
    v["nftables"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|i| i["rule"]["chain"].as_str() == Some(chain))
                .count()
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cni::config::Protocol;
    use crate::cni::ipnet::Ipv4Net;

    fn conf(extra: &str) -> NetConf {
        NetConf::parse(
            format!(
                r#"{{"cniVersion":"1.0.0","name":"skiff","type":"skiff-cni","bridge":"skiff0",
                    "subnet":"10.42.0.0/24","clusterCIDR":"10.42.0.0/16"{extra}}}"#
            )
            .as_bytes(),
        )
        .unwrap()
    }

    #[test]
    fn names() {
        assert_eq!(table_name("skiff0"), "skiffcni_skiff0");
        assert_eq!(table_name("cni-t.1"), "skiffcni_cni_t_1");
        let c = pod_chain("abc", "eth0");
        assert_eq!(c.len(), 3 + 16);
        assert!(c.starts_with("hp_"));
        assert_ne!(c, pod_chain("abc", "eth1"));
        assert_eq!(c, pod_chain("abc", "eth0"));
        assert_eq!(owner_comment("abc", "e\"th0"), "abc/eth0");
    }

    #[test]
    fn add_without_mappings() {
        let c = conf("");
        let s = render_add(
            &c,
            &BTreeSet::new(),
            "abc",
            "eth0",
            "10.42.0.5".parse().unwrap(),
        );
        let want = "\
add table ip skiffcni_skiff0
add chain ip skiffcni_skiff0 postrouting { type nat hook postrouting priority 100; policy accept; }
add chain ip skiffcni_skiff0 prerouting { type nat hook prerouting priority -100; policy accept; }
add chain ip skiffcni_skiff0 output { type nat hook output priority -100; policy accept; }
add chain ip skiffcni_skiff0 hostports
flush chain ip skiffcni_skiff0 postrouting
flush chain ip skiffcni_skiff0 prerouting
flush chain ip skiffcni_skiff0 output
flush chain ip skiffcni_skiff0 hostports
add rule ip skiffcni_skiff0 prerouting fib daddr type local jump hostports
add rule ip skiffcni_skiff0 output fib daddr type local jump hostports
add rule ip skiffcni_skiff0 postrouting ip saddr 10.42.0.0/24 ct status dnat ip daddr 10.42.0.0/24 masquerade
add rule ip skiffcni_skiff0 postrouting ip saddr 10.42.0.0/24 ip daddr != 10.42.0.0/16 ip daddr != 224.0.0.0/4 masquerade comment \"STAMP\"
"
        .replace("STAMP", &base_stamp(&c));
        assert_eq!(s, want);
        // no masquerade rule for egress when ipMasq is off; the subnet bounds it without clusterCIDR
        let s = render_add(
            &conf(r#","ipMasq":false"#),
            &BTreeSet::new(),
            "abc",
            "eth0",
            "10.42.0.5".parse().unwrap(),
        );
        assert!(!s.contains("224.0.0.0/4"));
        let mut c2 = conf("");
        c2.cluster_cidr = None;
        let s = render_add(
            &c2,
            &BTreeSet::new(),
            "abc",
            "eth0",
            "10.42.0.5".parse().unwrap(),
        );
        assert!(s.contains("ip daddr != 10.42.0.0/24 ip daddr != 224.0.0.0/4 masquerade"));
    }

    #[test]
    fn add_with_mappings_keeps_other_pods() {
        let mut c = conf("");
        c.port_mappings = vec![
            PortMapping {
                host_port: 8080,
                container_port: 80,
                protocol: Protocol::Tcp,
                host_ip: None,
            },
            PortMapping {
                host_port: 53,
                container_port: 5353,
                protocol: Protocol::Udp,
                host_ip: Some("192.168.1.2".parse().unwrap()),
            },
        ];
        let other = pod_chain("other", "eth0");
        let mine = pod_chain("abc", "eth0");
        let existing: BTreeSet<String> = [other.clone()].into();
        let s = render_add(&c, &existing, "abc", "eth0", "10.42.0.5".parse().unwrap());
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines[1], format!("add chain ip skiffcni_skiff0 {mine}"));
        assert_eq!(lines[2], format!("flush chain ip skiffcni_skiff0 {mine}"));
        assert_eq!(
            lines[3],
            format!(
                "add rule ip skiffcni_skiff0 {mine} meta l4proto tcp th dport 8080 dnat to 10.42.0.5:80 comment \"abc/eth0\""
            )
        );
        assert_eq!(
            lines[4],
            format!(
                "add rule ip skiffcni_skiff0 {mine} ip daddr 192.168.1.2 meta l4proto udp th dport 53 dnat to 10.42.0.5:5353 comment \"abc/eth0\""
            )
        );
        // jumps for both pods, sorted, after the chains exist
        let jumps: Vec<&&str> = lines
            .iter()
            .filter(|l| l.contains("hostports jump"))
            .collect();
        assert_eq!(jumps.len(), 2);
        assert!(jumps.iter().any(|l| l.ends_with(&other)));
        assert!(jumps.iter().any(|l| l.ends_with(&mine)));
    }

    #[test]
    fn readd_without_mappings_drops_chain() {
        let c = conf("");
        let mine = pod_chain("abc", "eth0");
        let s = render_add(
            &c,
            &[mine.clone()].into(),
            "abc",
            "eth0",
            "10.42.0.5".parse().unwrap(),
        );
        assert!(!s.contains(&format!("jump {mine}")));
        assert!(s.ends_with(&format!(
            "flush chain ip skiffcni_skiff0 {mine}\ndelete chain ip skiffcni_skiff0 {mine}\n"
        )));
    }

    #[test]
    fn del() {
        let c = conf("");
        let mine = pod_chain("abc", "eth0");
        let other = pod_chain("other", "eth0");
        assert_eq!(render_del(&c, &[other.clone()].into(), "abc", "eth0"), None);
        let s = render_del(&c, &[mine.clone(), other.clone()].into(), "abc", "eth0").unwrap();
        assert_eq!(
            s,
            format!(
                "flush chain ip skiffcni_skiff0 hostports\nadd rule ip skiffcni_skiff0 hostports jump {other}\n\
                 flush chain ip skiffcni_skiff0 {mine}\ndelete chain ip skiffcni_skiff0 {mine}\n"
            )
        );
    }

    #[test]
    fn stamps_follow_the_config() {
        let a = base_stamp(&conf(""));
        assert!(a.starts_with("skiff-base ") && a.len() == 11 + 16, "{a}");
        assert_eq!(a, base_stamp(&conf("")));
        assert_ne!(a, base_stamp(&conf(r#","ipMasq":false"#)));
        let mut other = conf("");
        other.cluster_cidr = Some(Ipv4Net::parse("10.0.0.0/8").unwrap());
        assert_ne!(a, base_stamp(&other));
        // without ipMasq the stamp sits on the hairpin rule, still the last one
        let s = render_add(
            &conf(r#","ipMasq":false"#),
            &BTreeSet::new(),
            "abc",
            "eth0",
            "10.42.0.5".parse().unwrap(),
        );
        assert!(s.trim_end().ends_with(&format!(
            "masquerade comment \"{}\"",
            base_stamp(&conf(r#","ipMasq":false"#))
        )));
    }

    /// A listing of the table: `(chain, comment)` per rule.
    fn listing(rules: &[(&str, Option<&str>)]) -> String {
        let mut items = vec![serde_json::json!({"metainfo": {"version": "1.0.6"}})];
        for (chain, comment) in rules {
            let mut r = serde_json::json!({"family": "ip", "table": "skiffcni_skiff0",
                "chain": chain, "handle": 2, "expr": []});
            if let Some(c) = comment {
                r["comment"] = serde_json::json!(c);
            }
            items.push(serde_json::json!({"rule": r}));
        }
        serde_json::json!({"nftables": items}).to_string()
    }

    #[test]
    fn base_in_place_table() {
        let c = conf("");
        let stamp = base_stamp(&c);
        let stamp = stamp.as_str();
        let old = "skiff-base 0000000000000000";
        let pod: BTreeSet<String> = [pod_chain("x", "eth0")].into();
        let none = BTreeSet::new();
        fn full(post_comment: &str, hostports: usize) -> Vec<(&str, Option<&str>)> {
            let mut r = vec![
                ("prerouting", None),
                ("output", None),
                ("postrouting", None),
                ("postrouting", Some(post_comment)),
            ];
            r.extend(std::iter::repeat_n(("hostports", None), hostports));
            r
        }
        type Rules<'a> = Vec<(&'a str, Option<&'a str>)>;
        let cases: Vec<(&str, Rules, &BTreeSet<String>, bool)> = vec![
            ("as rendered", full(stamp, 0), &none, true),
            ("with a pod's jump", full(stamp, 1), &pod, true),
            ("jump missing", full(stamp, 0), &pod, false),
            ("stale jump", full(stamp, 1), &none, false),
            ("other config", full(old, 0), &none, false),
            ("no table", vec![], &none, false),
            (
                "prerouting flushed",
                vec![
                    ("output", None),
                    ("postrouting", None),
                    ("postrouting", Some(stamp)),
                ],
                &none,
                false,
            ),
            (
                "stamp not last",
                vec![
                    ("prerouting", None),
                    ("output", None),
                    ("postrouting", Some(stamp)),
                    ("postrouting", None),
                ],
                &none,
                false,
            ),
        ];
        for (what, rules, pods, want) in cases {
            assert_eq!(base_in_place(&listing(&rules), &c, pods), want, "{what}");
        }
        assert!(!base_in_place("garbage", &c, &none));
    }

    #[test]
    fn parse_listing() {
        let listing = r#"{"nftables":[{"metainfo":{"version":"1.0.6"}},
            {"table":{"family":"ip","name":"skiffcni_skiff0"}},
            {"chain":{"family":"ip","table":"skiffcni_skiff0","name":"hostports"}},
            {"chain":{"family":"ip","table":"skiffcni_skiff0","name":"hp_0011223344556677"}},
            {"rule":{"family":"ip","table":"skiffcni_skiff0","chain":"hp_0011223344556677","expr":[]}},
            {"rule":{"family":"ip","table":"skiffcni_skiff0","chain":"hp_0011223344556677","expr":[]}}]}"#;
        let chains = pod_chains_from_json(listing).unwrap();
        assert_eq!(chains, ["hp_0011223344556677".to_string()].into());
        assert_eq!(pod_rules_in_json(listing, "hp_0011223344556677"), 2);
        assert!(pod_chains_from_json("nope").is_err());
        assert!(pod_chains_from_json("{}").is_err());
    }
}
