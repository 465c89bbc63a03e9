//! IPv4 prefixes (`10.42.0.0/24`, `10.42.0.7/24`): parsing, containment and
//! the arithmetic IPAM needs. Pure; no I/O.
//!
//! Invariant: `prefix <= 32`. A value parsed with [`Ipv4Net::parse_network`]
//! also has no host bits set.

use std::fmt;
use std::net::Ipv4Addr;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ipv4Net {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

impl Ipv4Net {
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Result<Self, String> {
        if prefix > 32 {
            return Err(format!("prefix length {prefix} is larger than 32"));
        }
        Ok(Ipv4Net { addr, prefix })
    }

    /// `a.b.c.d/n`, host bits allowed (an interface address).
    pub fn parse(s: &str) -> Result<Self, String> {
        let (ip, prefix) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?} is not in CIDR notation (a.b.c.d/n)"))?;
        let addr: Ipv4Addr = ip
            .parse()
            .map_err(|_| format!("{s:?}: {ip:?} is not an IPv4 address"))?;
        let prefix: u8 = prefix
            .parse()
            .map_err(|_| format!("{s:?}: {prefix:?} is not a prefix length"))?;
        Ipv4Net::new(addr, prefix).map_err(|e| format!("{s:?}: {e}"))
    }

    /// A network: like [`parse`](Self::parse) but host bits must be zero.
    pub fn parse_network(s: &str) -> Result<Self, String> {
        let net = Self::parse(s)?;
        if net.network() != net.addr {
            return Err(format!(
                "{s:?} has host bits set (did you mean {}/{}?)",
                net.network(),
                net.prefix
            ));
        }
        Ok(net)
    }

    pub fn mask(&self) -> u32 {
        if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(self.prefix))
        }
    }

    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) & self.mask())
    }

    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) | !self.mask())
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.network())
    }

    /// Whether `other` lies entirely inside `self`.
    pub fn contains_net(&self, other: &Ipv4Net) -> bool {
        other.prefix >= self.prefix && self.contains(other.network())
    }

    /// The same prefix with another address (an interface address in this subnet).
    pub fn with_addr(&self, addr: Ipv4Addr) -> Ipv4Net {
        Ipv4Net {
            addr,
            prefix: self.prefix,
        }
    }
}

impl fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_table() {
        let ok: &[(&str, &str, &str, &str)] = &[
            // input, network, broadcast, display
            ("10.42.0.0/24", "10.42.0.0", "10.42.0.255", "10.42.0.0/24"),
            ("10.42.3.7/16", "10.42.0.0", "10.42.255.255", "10.42.3.7/16"),
            ("0.0.0.0/0", "0.0.0.0", "255.255.255.255", "0.0.0.0/0"),
            (
                "192.168.1.1/32",
                "192.168.1.1",
                "192.168.1.1",
                "192.168.1.1/32",
            ),
        ];
        for (s, net, brd, disp) in ok {
            let n = Ipv4Net::parse(s).unwrap();
            assert_eq!(n.network().to_string(), *net, "{s}");
            assert_eq!(n.broadcast().to_string(), *brd, "{s}");
            assert_eq!(n.to_string(), *disp);
        }
        for bad in [
            "10.42.0.0",
            "10.42.0.0/33",
            "10.42.0/24",
            "x/24",
            "10.0.0.0/-1",
            "::1/64",
            "",
        ] {
            assert!(Ipv4Net::parse(bad).is_err(), "{bad}");
        }
        assert!(
            Ipv4Net::parse_network("10.42.0.5/24")
                .unwrap_err()
                .contains("did you mean 10.42.0.0/24")
        );
        assert!(Ipv4Net::parse_network("10.42.0.0/24").is_ok());
    }

    #[test]
    fn containment() {
        let c = Ipv4Net::parse("10.42.0.0/16").unwrap();
        let s = Ipv4Net::parse("10.42.3.0/24").unwrap();
        assert!(c.contains("10.42.200.1".parse().unwrap()));
        assert!(!c.contains("10.43.0.1".parse().unwrap()));
        assert!(c.contains_net(&s));
        assert!(!s.contains_net(&c));
    }
}
