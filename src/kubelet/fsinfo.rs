//! Size of the filesystem holding a path, as every kubelet part sees it
//! (node capacity, the Summary API, eviction signals).
//!
//! Invariant: `capacity = used + available`, the space writers other than
//! the reserved owner can use (what `df` shows as Size-minus-reserve and
//! bases `Use%` on). Blocks reserved for another uid are neither used nor
//! available to pods, so counting them in the capacity would make a
//! percentage threshold such as `nodefs.available<5%` fire on a disk that
//! `df` reports as far from full (a filesystem mounted with a large
//! `resuid` reserve has `f_blocks` several times `f_bfree`).

use std::path::Path;

/// Bytes and inodes of one filesystem.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FsInfo {
    pub capacity_bytes: u64,
    pub available_bytes: u64,
    pub used_bytes: u64,
    pub inodes: u64,
    pub inodes_free: u64,
}

impl FsInfo {
    /// From raw `statvfs` counts (pure, unit-tested).
    pub fn from_counts(
        fragment: u64,
        blocks: u64,
        free: u64,
        available: u64,
        files: u64,
        files_free: u64,
    ) -> FsInfo {
        let used = blocks.saturating_sub(free).saturating_mul(fragment);
        let available_bytes = available.min(free).saturating_mul(fragment);
        FsInfo {
            capacity_bytes: used.saturating_add(available_bytes),
            available_bytes,
            used_bytes: used,
            inodes: files,
            inodes_free: files_free,
        }
    }

    /// `statvfs` of `path`; `None` when it cannot be read.
    pub fn of(path: &Path) -> Option<FsInfo> {
        let s = nix::sys::statvfs::statvfs(path).ok()?;
        Some(FsInfo::from_counts(
            s.fragment_size() as u64,
            s.blocks() as u64,
            s.blocks_free() as u64,
            s.blocks_available() as u64,
            s.files() as u64,
            s.files_free() as u64,
        ))
    }

    pub fn inodes_used(&self) -> u64 {
        self.inodes.saturating_sub(self.inodes_free)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_blocks_are_not_capacity() {
        // 66M blocks, 46M free, only 3.9M available: a 63 % reserve.
        let f = FsInfo::from_counts(4096, 66_053_021, 46_109_966, 3_878_417, 100, 40);
        assert_eq!(f.used_bytes, (66_053_021 - 46_109_966) * 4096);
        assert_eq!(f.available_bytes, 3_878_417 * 4096);
        assert_eq!(f.capacity_bytes, f.used_bytes + f.available_bytes);
        // df's view: about 16 % free, far from a 5 % threshold.
        let pct = f.available_bytes as f64 / f.capacity_bytes as f64;
        assert!(pct > 0.15 && pct < 0.17, "{pct}");
        assert_eq!(f.inodes_used(), 60);
    }

    #[test]
    fn no_reserve_keeps_the_whole_disk() {
        let f = FsInfo::from_counts(512, 1000, 400, 400, 0, 0);
        assert_eq!(f.capacity_bytes, 1000 * 512);
        assert_eq!(f.available_bytes, 400 * 512);
    }
}
