//! The nftables ruleset generation of the host namespace, asked of the
//! kernel over nfnetlink (`NFT_MSG_GETGEN`): one datagram each way, no `nft`
//! process. Every committed nftables transaction, by anyone, bumps it, so an
//! unchanged generation proves an earlier listing still holds.
//!
//! Layout: `request` and `parse_reply` are pure (unit-tested); `current`
//! does the socket I/O.

use std::io;

const NETLINK_NETFILTER: libc::c_int = 12;
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFT_MSG_NEWGEN: u16 = 15;
const NFT_MSG_GETGEN: u16 = 16;
const NFTA_GEN_ID: u16 = 1;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 1;
const NLMSG_HDRLEN: usize = 16;
const NFGENMSG_LEN: usize = 4;

/// The GETGEN request: `nlmsghdr` + `nfgenmsg` (family unspec, version 0).
pub fn request(seq: u32) -> Vec<u8> {
    let len = (NLMSG_HDRLEN + NFGENMSG_LEN) as u32;
    let mut b = Vec::with_capacity(len as usize);
    b.extend_from_slice(&len.to_ne_bytes());
    b.extend_from_slice(&((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETGEN).to_ne_bytes());
    b.extend_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    b.extend_from_slice(&seq.to_ne_bytes());
    b.extend_from_slice(&0u32.to_ne_bytes());
    b.extend_from_slice(&[0, 0, 0, 0]);
    b
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// The generation id in a NEWGEN reply; an error for a netlink error
/// message or anything malformed.
pub fn parse_reply(b: &[u8]) -> io::Result<u32> {
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "malformed nfnetlink reply");
    let len = u32_at(b, 0).ok_or_else(bad)? as usize;
    let kind = u16_at(b, 4).ok_or_else(bad)?;
    if len < NLMSG_HDRLEN || len > b.len() {
        return Err(bad());
    }
    if kind == NLMSG_ERROR {
        let errno = u32_at(b, NLMSG_HDRLEN).ok_or_else(bad)? as i32;
        return Err(io::Error::from_raw_os_error(-errno));
    }
    if kind != (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWGEN {
        return Err(bad());
    }
    let mut at = NLMSG_HDRLEN + NFGENMSG_LEN;
    while at + 4 <= len {
        let alen = u16_at(b, at).ok_or_else(bad)? as usize;
        let atype = u16_at(b, at + 2).ok_or_else(bad)? & 0x3fff;
        if alen < 4 || at + alen > len {
            return Err(bad());
        }
        if atype == NFTA_GEN_ID && alen >= 8 {
            let v: [u8; 4] = b[at + 4..at + 8].try_into().map_err(|_| bad())?;
            return Ok(u32::from_be_bytes(v));
        }
        at += (alen + 3) & !3;
    }
    Err(bad())
}

/// The current generation of the calling thread's network namespace.
pub fn current() -> io::Result<u32> {
    // SAFETY: plain socket(2); the fd is owned by `OwnedFd` right after.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            NETLINK_NETFILTER,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor nobody else owns.
    let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let raw = std::os::fd::AsRawFd::as_raw_fd(&fd);
    let timeout = libc::timeval {
        tv_sec: 2,
        tv_usec: 0,
    };
    // SAFETY: `timeout` outlives the call; the size matches its type.
    unsafe {
        libc::setsockopt(
            raw,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&timeout as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        );
    }
    let req = request(1);
    // SAFETY: `addr` is a zeroed sockaddr_nl (the kernel) with its family set.
    let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    // SAFETY: `req` and `addr` are valid for the lengths passed.
    let sent = unsafe {
        libc::sendto(
            raw,
            req.as_ptr().cast(),
            req.len(),
            0,
            (&addr as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut buf = [0u8; 512];
    // SAFETY: `buf` is valid for writes of its length.
    let n = unsafe { libc::recv(raw, buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    parse_reply(&buf[..n as usize])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(kind: u16, payload: &[u8]) -> Vec<u8> {
        let len = (NLMSG_HDRLEN + payload.len()) as u32;
        let mut b = Vec::new();
        b.extend_from_slice(&len.to_ne_bytes());
        b.extend_from_slice(&kind.to_ne_bytes());
        b.extend_from_slice(&0u16.to_ne_bytes());
        b.extend_from_slice(&1u32.to_ne_bytes());
        b.extend_from_slice(&0u32.to_ne_bytes());
        b.extend_from_slice(payload);
        b
    }

    #[test]
    fn request_layout() {
        let r = request(7);
        assert_eq!(r.len(), 20);
        assert_eq!(u32_at(&r, 0), Some(20));
        assert_eq!(u16_at(&r, 4), Some((10 << 8) | 16));
        assert_eq!(u32_at(&r, 8), Some(7));
    }

    #[test]
    fn parses_generation_and_errors() {
        let mut p = vec![0, 0, 0, 0];
        // NFTA_GEN_PROC_PID first, then NFTA_GEN_ID (big endian)
        p.extend_from_slice(&8u16.to_ne_bytes());
        p.extend_from_slice(&2u16.to_ne_bytes());
        p.extend_from_slice(&99u32.to_be_bytes());
        p.extend_from_slice(&8u16.to_ne_bytes());
        p.extend_from_slice(&1u16.to_ne_bytes());
        p.extend_from_slice(&4242u32.to_be_bytes());
        assert_eq!(parse_reply(&reply((10 << 8) | 15, &p)).unwrap(), 4242);

        let e = reply(2, &(-libc::EPERM).to_ne_bytes());
        assert_eq!(
            parse_reply(&e).unwrap_err().raw_os_error(),
            Some(libc::EPERM)
        );
        assert!(parse_reply(&[1, 2, 3]).is_err());
        assert!(parse_reply(&reply((10 << 8) | 15, &[0, 0, 0, 0])).is_err());
        // an attribute claiming more than the message holds
        let mut bad = vec![0, 0, 0, 0];
        bad.extend_from_slice(&64u16.to_ne_bytes());
        bad.extend_from_slice(&1u16.to_ne_bytes());
        assert!(parse_reply(&reply((10 << 8) | 15, &bad)).is_err());
    }

    #[test]
    fn live_generation_when_root() {
        // in CI (root) the kernel answers; elsewhere EPERM/unsupported is fine
        if nix::unistd::geteuid().is_root() {
            let a = current().expect("GETGEN as root");
            let b = current().expect("GETGEN as root");
            assert!(b >= a);
        }
    }
}
