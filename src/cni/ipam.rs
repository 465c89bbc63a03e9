//! IPAM core: which addresses of the node subnet may be handed out, and in
//! which order. Pure; the file-backed state lives in `ipam_store`.
//!
//! Invariants: the network address, the gateway (first host address, held
//! by the bridge) and the broadcast address are never candidates; candidates
//! go round-robin from just after the last reserved address, so a released
//! address is reused as late as possible.

use std::collections::HashSet;
use std::net::Ipv4Addr;

use super::ipnet::Ipv4Net;

/// The gateway of `subnet`: its first host address.
pub fn gateway(subnet: &Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(subnet.network()).wrapping_add(1))
}

/// First and last address a pod may get (inclusive), or `None` for subnets
/// too small to hold one.
fn pod_range(subnet: &Ipv4Net) -> Option<(u32, u32)> {
    if subnet.prefix > 30 {
        return None;
    }
    let first = u32::from(subnet.network()) + 2;
    let last = u32::from(subnet.broadcast()) - 1;
    Some((first, last))
}

/// Whether `ip` may be given to a pod.
pub fn is_assignable(subnet: &Ipv4Net, ip: Ipv4Addr) -> bool {
    pod_range(subnet).is_some_and(|(first, last)| (first..=last).contains(&u32::from(ip)))
}

/// Every assignable address once, starting after `cursor` and wrapping.
pub fn candidates(subnet: &Ipv4Net, cursor: Option<Ipv4Addr>) -> impl Iterator<Item = Ipv4Addr> {
    let (first, count) = match pod_range(subnet) {
        Some((first, last)) => (first, u64::from(last - first) + 1),
        None => (0, 0),
    };
    // offset of the first candidate: just after the cursor when it is in range
    let start = match cursor.map(u32::from) {
        Some(c) if count > 0 && c >= first && u64::from(c - first) < count => {
            (u64::from(c - first) + 1) % count
        }
        _ => 0,
    };
    (0..count).map(move |i| Ipv4Addr::from(first + ((start + i) % count) as u32))
}

/// The address the store should try first-to-last: pure version of allocation.
pub fn pick(
    subnet: &Ipv4Net,
    cursor: Option<Ipv4Addr>,
    taken: &HashSet<Ipv4Addr>,
) -> Option<Ipv4Addr> {
    candidates(subnet, cursor).find(|ip| !taken.contains(ip))
}

/// Content of an allocation file: who holds the address.
pub fn format_owner(container_id: &str, ifname: &str) -> String {
    format!("{container_id}\n{ifname}")
}

/// Inverse of [`format_owner`]; tolerates `\r\n` and a missing interface line.
pub fn parse_owner(content: &str) -> (String, Option<String>) {
    let mut lines = content.lines().map(|l| l.trim_end_matches('\r').trim());
    let cid = lines.next().unwrap_or("").to_string();
    let ifname = lines.next().filter(|s| !s.is_empty()).map(str::to_string);
    (cid, ifname)
}

/// Whether an allocation file's owner is `(container_id, ifname)`.
pub fn owned_by(content: &str, container_id: &str, ifname: &str) -> bool {
    let (cid, ifn) = parse_owner(content);
    cid == container_id && ifn.as_deref().is_none_or(|i| i == ifname)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        Ipv4Net::parse_network(s).unwrap()
    }
    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn candidate_order() {
        let cases: &[(&str, Option<&str>, &[&str])] = &[
            (
                "10.0.0.0/29",
                None,
                &["10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"],
            ),
            (
                "10.0.0.0/29",
                Some("10.0.0.4"),
                &["10.0.0.5", "10.0.0.6", "10.0.0.2", "10.0.0.3", "10.0.0.4"],
            ),
            (
                "10.0.0.0/29",
                Some("10.0.0.6"),
                &["10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"],
            ),
            (
                "10.0.0.0/29",
                Some("10.0.0.2"),
                &["10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6", "10.0.0.2"],
            ),
            // a cursor outside the subnet (subnet changed) restarts at the beginning
            (
                "10.0.0.0/29",
                Some("192.168.0.1"),
                &["10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"],
            ),
            ("10.0.0.0/30", None, &["10.0.0.2"]),
            ("10.0.0.0/30", Some("10.0.0.2"), &["10.0.0.2"]),
            ("10.0.0.0/31", None, &[]),
        ];
        for (subnet, cursor, want) in cases {
            let got: Vec<String> = candidates(&net(subnet), cursor.map(ip))
                .map(|i| i.to_string())
                .collect();
            assert_eq!(&got, want, "{subnet} after {cursor:?}");
        }
    }

    #[test]
    fn never_hands_out_reserved() {
        let s = net("10.42.0.0/24");
        let all: Vec<Ipv4Addr> = candidates(&s, Some(ip("10.42.0.100"))).collect();
        assert_eq!(all.len(), 253);
        let uniq: HashSet<_> = all.iter().collect();
        assert_eq!(uniq.len(), 253);
        for reserved in ["10.42.0.0", "10.42.0.1", "10.42.0.255"] {
            assert!(!all.contains(&ip(reserved)));
            assert!(!is_assignable(&s, ip(reserved)));
        }
        assert_eq!(gateway(&s), ip("10.42.0.1"));
        assert!(is_assignable(&s, ip("10.42.0.254")));
        assert!(!is_assignable(&s, ip("10.42.1.5")));
    }

    #[test]
    fn pick_skips_taken_and_exhausts() {
        let s = net("10.0.0.0/29");
        let mut taken = HashSet::new();
        let mut cursor = None;
        let mut got = vec![];
        while let Some(a) = pick(&s, cursor, &taken) {
            taken.insert(a);
            cursor = Some(a);
            got.push(a.to_string());
        }
        assert_eq!(
            got,
            ["10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"]
        );
        // release one in the middle: it is the only choice
        taken.remove(&ip("10.0.0.4"));
        assert_eq!(pick(&s, cursor, &taken), Some(ip("10.0.0.4")));
    }

    #[test]
    fn owners() {
        assert_eq!(format_owner("c1", "eth0"), "c1\neth0");
        assert_eq!(parse_owner("c1\neth0"), ("c1".into(), Some("eth0".into())));
        assert_eq!(
            parse_owner("c1\r\neth0\r\n"),
            ("c1".into(), Some("eth0".into()))
        );
        assert_eq!(parse_owner("c1"), ("c1".into(), None));
        assert!(owned_by("c1\neth0", "c1", "eth0"));
        assert!(owned_by("c1", "c1", "eth0"));
        assert!(!owned_by("c1\neth1", "c1", "eth0"));
        assert!(!owned_by("c2\neth0", "c1", "eth0"));
    }
}
