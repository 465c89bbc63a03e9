//! Reads the eviction signals from the machine and per-container usage
//! from CRI. Parsers are pure and tested; the readers are thin.
//!
//! - `memory.available` = `MemTotal` − working set, the working set being
//!   the root memory cgroup's usage minus its inactive file pages (cgroup
//!   v1), or `MemTotal − MemFree − Inactive(file)` from `/proc/meminfo`;
//! - `nodefs.*` = `statvfs` of the agent directory, `imagefs.*` = `statvfs`
//!   of the runtime's image filesystem (CRI `ImageFsInfo` mountpoint);
//! - `pid.available` = min(`pid_max`, `threads-max`) − tasks (`sysinfo`).
//!
//! Invariant: a signal that cannot be read is left out (never guessed).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::policy::{Observation, Observations};
use super::thresholds::Signal;
use crate::kubelet::cri::{Cri, CriError, api};

/// A `Key:   123 kB` line of `/proc/meminfo`, in bytes.
pub fn meminfo_bytes(text: &str, key: &str) -> Option<i128> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(key)?.strip_prefix(':')?;
        let mut parts = rest.split_whitespace();
        let n: i128 = parts.next()?.parse().ok()?;
        match parts.next() {
            Some("kB") => Some(n * 1024),
            None => Some(n),
            _ => None,
        }
    })
}

/// A `key value` line of a cgroup `memory.stat`.
pub fn memory_stat(text: &str, key: &str) -> Option<i128> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// `memory.available` from the memory capacity and the working set parts.
pub fn memory_observation(capacity: i128, usage: i128, inactive_file: i128) -> Observation {
    let working_set = (usage - inactive_file).max(0);
    Observation {
        available: (capacity - working_set).max(0),
        capacity,
    }
}

/// `memory.available` of this machine.
pub fn memory() -> Option<Observation> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let capacity = meminfo_bytes(&meminfo, "MemTotal")?;
    let v1 = Path::new("/sys/fs/cgroup/memory");
    if let (Ok(usage), Ok(stat)) = (
        std::fs::read_to_string(v1.join("memory.usage_in_bytes")),
        std::fs::read_to_string(v1.join("memory.stat")),
    ) && let (Ok(usage), Some(inactive)) = (
        usage.trim().parse::<i128>(),
        memory_stat(&stat, "total_inactive_file"),
    ) {
        return Some(memory_observation(capacity, usage, inactive));
    }
    let free = meminfo_bytes(&meminfo, "MemFree")?;
    let inactive = meminfo_bytes(&meminfo, "Inactive(file)").unwrap_or(0);
    Some(memory_observation(capacity, capacity - free, inactive))
}

/// Bytes and inodes of the filesystem holding `path`.
pub fn filesystem(path: &Path) -> Option<(Observation, Observation)> {
    let f = crate::kubelet::fsinfo::FsInfo::of(path)?;
    Some((
        Observation {
            available: f.available_bytes as i128,
            capacity: f.capacity_bytes as i128,
        },
        Observation {
            available: f.inodes_free as i128,
            capacity: f.inodes as i128,
        },
    ))
}

/// `pid.available` of this machine.
pub fn pids() -> Option<Observation> {
    let read = |p: &str| -> Option<i128> { std::fs::read_to_string(p).ok()?.trim().parse().ok() };
    let pid_max = read("/proc/sys/kernel/pid_max")?;
    let capacity = read("/proc/sys/kernel/threads-max").map_or(pid_max, |t| t.min(pid_max));
    let running = nix::sys::sysinfo::sysinfo().ok()?.process_count() as i128;
    Some(Observation {
        available: (capacity - running).max(0),
        capacity,
    })
}

/// Where the runtime keeps images: the mountpoint CRI reports, else `fallback`.
pub async fn image_fs_path(cri: &Cri, fallback: &Path) -> PathBuf {
    let mut c = cri.image.clone();
    match c.image_fs_info(api::ImageFsInfoRequest {}).await {
        Ok(r) => r
            .into_inner()
            .image_filesystems
            .into_iter()
            .filter_map(|f| f.fs_id.map(|id| PathBuf::from(id.mountpoint)))
            .find(|p| p.exists())
            .unwrap_or_else(|| fallback.to_path_buf()),
        Err(_) => fallback.to_path_buf(),
    }
}

/// Every signal that can be read now.
pub fn observations(nodefs: &Path, imagefs: &Path) -> Observations {
    let mut obs = Observations::new();
    if let Some(m) = memory() {
        obs.insert(Signal::MemoryAvailable, m);
    }
    if let Some((bytes, inodes)) = filesystem(nodefs) {
        obs.insert(Signal::NodeFsAvailable, bytes);
        obs.insert(Signal::NodeFsInodesFree, inodes);
    }
    if let Some((bytes, inodes)) = filesystem(imagefs) {
        obs.insert(Signal::ImageFsAvailable, bytes);
        obs.insert(Signal::ImageFsInodesFree, inodes);
    }
    if let Some(p) = pids() {
        obs.insert(Signal::PidAvailable, p);
    }
    obs
}

/// What one container uses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerUsage {
    pub container: String,
    pub memory_working_set: Option<i128>,
    pub writable_layer: Option<i128>,
}

/// Container usage by pod uid (CRI `ListContainerStats`).
pub async fn container_usage(cri: &Cri) -> Result<HashMap<String, Vec<ContainerUsage>>, CriError> {
    let mut rt = cri.runtime.clone();
    let stats = rt
        .list_container_stats(api::ListContainerStatsRequest::default())
        .await?
        .into_inner()
        .stats;
    let mut out: HashMap<String, Vec<ContainerUsage>> = HashMap::new();
    for s in stats {
        let Some(attr) = s.attributes else { continue };
        let Some(uid) = attr.labels.get(crate::kubelet::labels::POD_UID) else {
            continue;
        };
        out.entry(uid.clone()).or_default().push(ContainerUsage {
            container: attr.metadata.map(|m| m.name).unwrap_or_default(),
            memory_working_set: s
                .memory
                .and_then(|m| m.working_set_bytes)
                .map(|v| v.value as i128),
            writable_layer: s
                .writable_layer
                .and_then(|w| w.used_bytes)
                .map(|v| v.value as i128),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsers() {
        let mi = "MemTotal:       24683656 kB\nMemFree:        14867516 kB\nInactive(file):  4511000 kB\nHugePages_Total:       0\n";
        assert_eq!(meminfo_bytes(mi, "MemTotal"), Some(24683656 * 1024));
        assert_eq!(meminfo_bytes(mi, "Inactive(file)"), Some(4511000 * 1024));
        assert_eq!(meminfo_bytes(mi, "HugePages_Total"), Some(0));
        assert_eq!(meminfo_bytes(mi, "Mem"), None);
        assert_eq!(meminfo_bytes(mi, "Cached"), None);
        let st = "cache 100\ninactive_file 86016\ntotal_inactive_file 4619415552\n";
        assert_eq!(memory_stat(st, "total_inactive_file"), Some(4619415552));
        assert_eq!(memory_stat(st, "inactive_file"), Some(86016));
        assert_eq!(memory_stat(st, "nope"), None);
        for (cap, usage, inactive, want) in [
            (1000, 600, 100, 500),
            (1000, 100, 200, 1000),
            (1000, 2000, 0, 0),
        ] {
            assert_eq!(
                memory_observation(cap, usage, inactive),
                Observation {
                    available: want,
                    capacity: cap
                }
            );
        }
    }

    #[test]
    fn this_machine_has_signals() {
        let obs = observations(Path::new("/"), Path::new("/"));
        for s in [
            Signal::MemoryAvailable,
            Signal::NodeFsAvailable,
            Signal::ImageFsInodesFree,
            Signal::PidAvailable,
        ] {
            let o = obs.get(&s).unwrap_or_else(|| panic!("{s:?} missing"));
            assert!(o.capacity > 0 && o.available <= o.capacity, "{s:?}: {o:?}");
        }
    }
}
