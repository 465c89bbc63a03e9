//! Resident memory of the node agent: the async runtime it runs on and a
//! one-off trim after start-up, so that `skiff agent` stays near its working
//! set (budget: ≤ 40 MiB with 100 pods).
//!
//! Where an agent's RSS goes without this (see `benches/agent.py`,
//! `AGENT_BENCH_DETAIL=1`): about 30 MiB are pages of the executable's code
//! and read-only data, most of them touched once at start-up (join,
//! containerd config, image import, TLS set-up) and mapped in 64 KiB
//! fault-around windows; the rest is heap.
//!
//! - [`runtime`]: a small tokio runtime (at most [`MAX_WORKERS`] workers,
//!   [`MAX_BLOCKING`] blocking threads that exit after [`KEEP_ALIVE`] idle):
//!   every thread costs a stack and an allocator heap;
//! - [`release_startup_pages`]: unmaps the executable's clean file-backed
//!   pages; they stay in the page cache and whatever code still runs faults
//!   back in from there (a minor fault), so RSS settles at the working set;
//! - [`collect_heap`]: returns free allocator pages to the kernel.
//!
//! Invariants: only mappings of the executable that are read-only and hold
//! no private (copy-on-write) page are touched, so `MADV_DONTNEED` loses
//! nothing; everything here is an optimisation and never fails the agent.

use std::time::Duration;

// the allocator whose `mi_collect` is called below: named so that it is
// linked into every binary of this crate (unit tests too)
use mimalloc as _;

/// Upper bound of async worker threads of `skiff agent` (fewer on fewer cores).
pub const MAX_WORKERS: usize = 4;
/// Upper bound of blocking threads (`tokio::fs`, volume and image I/O); more
/// requests queue.
pub const MAX_BLOCKING: usize = 16;
/// Idle blocking threads exit after this long.
pub const KEEP_ALIVE: Duration = Duration::from_secs(2);
/// Delay after the agent is up before [`release_startup_pages`] runs.
pub const TRIM_AFTER: Duration = Duration::from_secs(20);

/// The multi-threaded runtime `skiff agent` runs on.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores.clamp(1, MAX_WORKERS))
        .max_blocking_threads(MAX_BLOCKING)
        .thread_keep_alive(KEEP_ALIVE)
        .enable_all()
        .build()
}

/// Address ranges `[start, end)` of `exe`'s mappings in `smaps` text
/// (`/proc/self/smaps`) that are read-only, private and hold no anonymous
/// (copy-on-write) page: their resident pages can be dropped and re-read.
pub fn clean_exe_ranges(smaps: &str, exe: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    // (range, eligible so far)
    let mut cur: Option<((usize, usize), bool)> = None;
    let mut flush = |cur: &mut Option<((usize, usize), bool)>| {
        if let Some((r, true)) = cur.take() {
            out.push(r);
        }
    };
    for line in smaps.lines() {
        let mut f = line.split_whitespace();
        let Some(first) = f.next() else { continue };
        if let Some((a, b)) = first.split_once('-')
            && let (Ok(a), Ok(b)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16))
        {
            flush(&mut cur);
            let perms = f.next().unwrap_or_default();
            // offset, device, inode, then the path (may contain spaces)
            let path = f.skip(3).collect::<Vec<_>>().join(" ");
            let ok = perms.len() == 4
                && perms.starts_with('r')
                && perms.as_bytes()[1] == b'-'
                && perms.ends_with('p')
                && path == exe
                && a < b;
            cur = Some(((a, b), ok));
        } else if first == "Anonymous:"
            && let Some((_, ok)) = cur.as_mut()
            && f.next() != Some("0")
        {
            *ok = false;
        }
    }
    flush(&mut cur);
    out
}

/// Unmap the resident clean pages of this executable (see the module
/// header); the number of bytes of address space advised.
pub fn release_startup_pages() -> usize {
    let Ok(exe) = std::fs::read_link("/proc/self/exe") else {
        return 0;
    };
    let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else {
        return 0;
    };
    let mut advised = 0;
    for (a, b) in clean_exe_ranges(&smaps, &exe.to_string_lossy()) {
        // SAFETY: [a, b) is a whole private, read-only mapping of the
        // executable with no copy-on-write page (checked just above; nothing
        // writes to read-only memory without mprotect, which we never call).
        // MADV_DONTNEED only drops its page-table entries: the next access
        // faults the unchanged file contents back in from the page cache.
        let r = unsafe { libc::madvise(a as *mut libc::c_void, b - a, libc::MADV_DONTNEED) };
        if r == 0 {
            advised += b - a;
        }
    }
    advised
}

unsafe extern "C" {
    // mimalloc (the global allocator, `src/main.rs`): frees this thread's
    // empty pages and, with `force`, purges free memory process-wide.
    fn mi_collect(force: bool);
}

/// Give free heap memory back to the kernel (after a burst of work).
pub fn collect_heap() {
    // SAFETY: mimalloc is linked into every skiff binary (`mimalloc` crate);
    // mi_collect takes no pointers and is safe to call from any thread.
    unsafe { mi_collect(true) }
}

/// Wait [`TRIM_AFTER`], then drop start-up pages and free heap memory; gives
/// up early on `stop`.
pub async fn trim_after_startup(mut stop: tokio::sync::watch::Receiver<bool>) {
    tokio::select! {
        _ = tokio::time::sleep(TRIM_AFTER) => {}
        _ = stop.wait_for(|s| *s) => return,
    }
    collect_heap();
    let advised = release_startup_pages();
    tracing::debug!(
        "released start-up pages of {} MiB of executable mappings",
        advised >> 20
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMAPS: &str = "\
55d000000000-55d000010000 r--p 00000000 fe:01 42   /usr/bin/skiff
Size:                 64 kB
Rss:                  64 kB
Anonymous:             0 kB
55d000010000-55d000020000 r-xp 00010000 fe:01 42   /usr/bin/skiff
Rss:                  12 kB
Anonymous:             0 kB
55d000020000-55d000030000 r--p 00020000 fe:01 42   /usr/bin/skiff
Anonymous:             8 kB
55d000030000-55d000040000 rw-p 00030000 fe:01 42   /usr/bin/skiff
Anonymous:             0 kB
55d000040000-55d000050000 rwxp 00000000 00:00 0
Anonymous:             0 kB
7f0000000000-7f0000001000 r-xp 00000000 fe:01 77   /usr/lib/libc.so.6
Anonymous:             0 kB
7f0000002000-7f0000003000 r-xs 00000000 fe:01 42   /usr/bin/skiff
Anonymous:             0 kB
7f0000004000-7f0000005000 r-xp 00000000 fe:01 43   /opt/my dir/skiff (deleted)
Anonymous:             0 kB
";

    #[test]
    fn clean_ranges() {
        let cases: &[(&str, &[(usize, usize)])] = &[
            (
                "/usr/bin/skiff",
                &[
                    (0x55d000000000, 0x55d000010000),
                    (0x55d000010000, 0x55d000020000),
                ],
            ),
            (
                "/opt/my dir/skiff (deleted)",
                &[(0x7f0000004000, 0x7f0000005000)],
            ),
            ("/nowhere", &[]),
        ];
        for (exe, want) in cases {
            assert_eq!(clean_exe_ranges(SMAPS, exe), *want, "{exe}");
        }
        assert!(clean_exe_ranges("", "/usr/bin/skiff").is_empty());
        assert!(clean_exe_ranges("garbage\nAnonymous: 4 kB\n", "/x").is_empty());
    }

    #[test]
    fn release_and_collect_do_not_crash() {
        // the test binary keeps running code from the pages it just dropped
        let _ = release_startup_pages();
        collect_heap();
        let v: Vec<u64> = (0..1000).collect();
        assert_eq!(v.iter().sum::<u64>(), 499_500);
    }
}
