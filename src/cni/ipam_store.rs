//! File-backed IPAM state for one network: `<dataDir>/<network name>/`.
//!
//! Layout: one file per allocated address, named after the address
//! (`10.42.0.7`), containing `<container id>\n<ifname>`; `last_reserved_ip`
//! holds the round-robin cursor. Invariants: an allocation file appears
//! atomically with its content (written to a temp file, then hard-linked to
//! its final name, which fails if the name exists), so concurrent ADDs never
//! share an address and a crash never leaves an ownerless file; a container
//! that already holds an address gets the same one back; DEL removes exactly
//! the files owned by (container id, ifname).

use std::collections::HashSet;
use std::fs;
use std::io::{ErrorKind, Write};
use std::net::Ipv4Addr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::error::CniError;
use super::ipam;
use super::ipnet::Ipv4Net;

const CURSOR_FILE: &str = "last_reserved_ip";

pub struct IpamStore {
    dir: PathBuf,
}

fn unique_suffix() -> String {
    format!("{}-{}", std::process::id(), uuid::Uuid::new_v4().simple())
}

impl IpamStore {
    /// Opens (creating, mode 0700) the state directory.
    pub fn open(dir: &Path) -> Result<IpamStore, CniError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| {
                CniError::io(format!("cannot create IPAM directory {}", dir.display()), e)
            })?;
        Ok(IpamStore {
            dir: dir.to_path_buf(),
        })
    }

    /// Opens the directory only if it exists (DEL must not create state).
    pub fn open_existing(dir: &Path) -> Option<IpamStore> {
        dir.is_dir().then(|| IpamStore {
            dir: dir.to_path_buf(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Every allocation: (address, file content).
    fn allocations(&self) -> Result<Vec<(Ipv4Addr, String)>, CniError> {
        let rd = fs::read_dir(&self.dir)
            .map_err(|e| CniError::io(format!("cannot list {}", self.dir.display()), e))?;
        let mut out = Vec::new();
        for entry in rd {
            let entry = entry
                .map_err(|e| CniError::io(format!("cannot list {}", self.dir.display()), e))?;
            let Some(ip) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<Ipv4Addr>().ok())
            else {
                continue;
            };
            match fs::read_to_string(entry.path()) {
                Ok(content) => out.push((ip, content)),
                // released concurrently
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(CniError::io(
                        format!("cannot read {}", entry.path().display()),
                        e,
                    ));
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// The address held by (container id, ifname), if any.
    pub fn find(&self, container_id: &str, ifname: &str) -> Result<Option<Ipv4Addr>, CniError> {
        Ok(self
            .allocations()?
            .into_iter()
            .find(|(_, c)| ipam::owned_by(c, container_id, ifname))
            .map(|(ip, _)| ip))
    }

    /// Who holds `ip`: (container id, ifname).
    pub fn owner(&self, ip: Ipv4Addr) -> Option<(String, Option<String>)> {
        fs::read_to_string(self.dir.join(ip.to_string()))
            .ok()
            .map(|c| ipam::parse_owner(&c))
    }

    fn read_cursor(&self) -> Option<Ipv4Addr> {
        fs::read_to_string(self.dir.join(CURSOR_FILE))
            .ok()
            .and_then(|s| s.trim().parse().ok())
    }

    fn write_cursor(&self, ip: Ipv4Addr) -> Result<(), CniError> {
        let tmp = self.dir.join(format!(".cursor.{}", unique_suffix()));
        let path = self.dir.join(CURSOR_FILE);
        fs::write(&tmp, ip.to_string())
            .and_then(|_| fs::rename(&tmp, &path))
            .map_err(|e| {
                let _ = fs::remove_file(&tmp);
                CniError::io(format!("cannot write {}", path.display()), e)
            })
    }

    /// Gives (container id, ifname) an address of `subnet`: the one it
    /// already holds, or the next free one after the cursor.
    pub fn allocate(
        &self,
        subnet: &Ipv4Net,
        container_id: &str,
        ifname: &str,
    ) -> Result<Ipv4Addr, CniError> {
        if let Some(ip) = self.find(container_id, ifname)? {
            return Ok(ip);
        }
        let taken: HashSet<Ipv4Addr> = self.allocations()?.into_iter().map(|(ip, _)| ip).collect();
        let tmp = self.dir.join(format!(".alloc.{}", unique_suffix()));
        let write_tmp = || -> std::io::Result<()> {
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(ipam::format_owner(container_id, ifname).as_bytes())?;
            f.sync_all()
        };
        write_tmp().map_err(|e| {
            let _ = fs::remove_file(&tmp);
            CniError::io(format!("cannot write {}", tmp.display()), e)
        })?;
        let result = (|| {
            for ip in ipam::candidates(subnet, self.read_cursor()) {
                if taken.contains(&ip) {
                    continue;
                }
                match fs::hard_link(&tmp, self.dir.join(ip.to_string())) {
                    Ok(()) => {
                        self.write_cursor(ip)?;
                        return Ok(ip);
                    }
                    // lost a race with a concurrent ADD: try the next one
                    Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
                    Err(e) => {
                        return Err(CniError::io(
                            format!("cannot reserve {ip} in {}", self.dir.display()),
                            e,
                        ));
                    }
                }
            }
            Err(CniError::IpamExhausted(subnet.to_string()))
        })();
        let _ = fs::remove_file(&tmp);
        result
    }

    /// Releases every address held by (container id, ifname); returns them.
    pub fn release(&self, container_id: &str, ifname: &str) -> Result<Vec<Ipv4Addr>, CniError> {
        let mut released = Vec::new();
        for (ip, content) in self.allocations()? {
            if ipam::owned_by(&content, container_id, ifname) {
                match fs::remove_file(self.dir.join(ip.to_string())) {
                    Ok(()) => released.push(ip),
                    Err(e) if e.kind() == ErrorKind::NotFound => {}
                    Err(e) => return Err(CniError::io(format!("cannot release {ip}"), e)),
                }
            }
        }
        Ok(released)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        Ipv4Net::parse_network(s).unwrap()
    }

    #[test]
    fn alloc_reuse_release_exhaust() {
        let tmp = tempfile::tempdir().unwrap();
        let store = IpamStore::open(&tmp.path().join("skiff")).unwrap();
        let s = net("10.9.0.0/29"); // pods: .2 ..= .6
        let a = store.allocate(&s, "c1", "eth0").unwrap();
        assert_eq!(a.to_string(), "10.9.0.2");
        // same container + ifname: same address
        assert_eq!(store.allocate(&s, "c1", "eth0").unwrap(), a);
        // another interface of the same container: another address
        assert_eq!(
            store.allocate(&s, "c1", "net1").unwrap().to_string(),
            "10.9.0.3"
        );
        for (i, want) in ["10.9.0.4", "10.9.0.5", "10.9.0.6"].iter().enumerate() {
            assert_eq!(
                store
                    .allocate(&s, &format!("x{i}"), "eth0")
                    .unwrap()
                    .to_string(),
                *want
            );
        }
        let err = store.allocate(&s, "full", "eth0").unwrap_err();
        assert_eq!(err.code(), crate::cni::error::CODE_IPAM_EXHAUSTED);
        assert_eq!(store.owner(a), Some(("c1".into(), Some("eth0".into()))));
        assert_eq!(
            store.find("c1", "net1").unwrap().unwrap().to_string(),
            "10.9.0.3"
        );

        // release is by (container, ifname) and idempotent
        assert_eq!(store.release("c1", "eth0").unwrap(), vec![a]);
        assert!(store.release("c1", "eth0").unwrap().is_empty());
        assert!(store.find("c1", "eth0").unwrap().is_none());
        assert!(store.find("c1", "net1").unwrap().is_some());
        // the only free address is the released one
        assert_eq!(store.allocate(&s, "new", "eth0").unwrap(), a);

        // state survives a reopen (restart) and nothing leaks
        let store2 = IpamStore::open(&tmp.path().join("skiff")).unwrap();
        assert_eq!(store2.find("new", "eth0").unwrap(), Some(a));
        for id in ["c1", "x0", "x1", "x2", "new"] {
            let _ = store2.release(id, "eth0");
        }
        store2.release("c1", "net1").unwrap();
        let left: Vec<_> = fs::read_dir(store2.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(left, vec![CURSOR_FILE.to_string()]);
    }

    #[test]
    fn round_robin_after_release() {
        let tmp = tempfile::tempdir().unwrap();
        let store = IpamStore::open(tmp.path()).unwrap();
        let s = net("10.9.0.0/24");
        let a = store.allocate(&s, "a", "eth0").unwrap();
        store.release("a", "eth0").unwrap();
        // a released address is not immediately handed out again
        let b = store.allocate(&s, "b", "eth0").unwrap();
        assert_ne!(a, b);
        assert_eq!(b.to_string(), "10.9.0.3");
    }

    #[test]
    fn concurrent_adds_never_collide() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let s = net("10.9.0.0/26"); // 61 pod addresses
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let dir = dir.clone();
                std::thread::spawn(move || {
                    let store = IpamStore::open(&dir).unwrap();
                    (0..7)
                        .map(|i| store.allocate(&s, &format!("t{t}c{i}"), "eth0").unwrap())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let all: Vec<Ipv4Addr> = threads
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        let uniq: HashSet<_> = all.iter().collect();
        assert_eq!(all.len(), 56);
        assert_eq!(uniq.len(), 56, "duplicate address handed out");
        assert!(all.iter().all(|ip| ipam::is_assignable(&s, *ip)));
        let store = IpamStore::open(&dir).unwrap();
        for t in 0..8 {
            for i in 0..7 {
                let ip = store.find(&format!("t{t}c{i}"), "eth0").unwrap().unwrap();
                assert_eq!(store.owner(ip).unwrap().0, format!("t{t}c{i}"));
            }
        }
    }
}
