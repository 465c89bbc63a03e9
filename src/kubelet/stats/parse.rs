//! Pure parsers for the files resource stats come from: `/proc/stat`,
//! `/proc/meminfo`, `/proc/vmstat` and cgroup v1/v2 accounting files.
//!
//! Invariant: a malformed or missing figure is `None`, never a panic or a
//! made-up number.

use super::MemRaw;

/// A v1 memory limit above this is "no limit" (the kernel reports
/// PAGE_COUNTER_MAX rounded to pages).
const UNLIMITED: u64 = 1 << 62;

/// Cumulative busy CPU time of the host in nanoseconds from the `cpu` line
/// of `/proc/stat` (user nice system idle iowait irq softirq steal …):
/// everything but idle and iowait, in `clk_tck` ticks per second.
pub fn proc_stat_cpu_ns(text: &str, clk_tck: u64) -> Option<u64> {
    if clk_tck == 0 {
        return None;
    }
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().ok())
        .collect::<Option<Vec<u64>>>()?;
    if f.len() < 4 {
        return None;
    }
    let busy: u64 = f
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4 && *i < 8)
        .map(|(_, v)| *v)
        .sum();
    busy.checked_mul(1_000_000_000 / clk_tck)
}

/// Boot time (seconds since the epoch) from `/proc/stat`'s `btime`.
pub fn proc_stat_btime(text: &str) -> Option<i64> {
    text.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// `key value` pairs (`/proc/vmstat`, cgroup `memory.stat`, `cpu.stat`).
pub fn kv(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let mut it = l.split_whitespace();
        (it.next()? == key).then(|| it.next()?.parse().ok())?
    })
}

/// `Key:   123 kB` from `/proc/meminfo`, in bytes.
fn meminfo_bytes(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, rest) = l.split_once(':')?;
        if k.trim() != key {
            return None;
        }
        let mut it = rest.split_whitespace();
        let n: u64 = it.next()?.parse().ok()?;
        match it.next() {
            Some("kB") => n.checked_mul(1024),
            None => Some(n),
            Some(_) => None,
        }
    })
}

/// Host memory like cAdvisor's root cgroup: usage = total − free, working
/// set = usage − inactive file pages, available = total − working set.
pub fn host_memory(meminfo: &str, vmstat: &str) -> MemRaw {
    let total = meminfo_bytes(meminfo, "MemTotal");
    let free = meminfo_bytes(meminfo, "MemFree");
    let inactive_file = meminfo_bytes(meminfo, "Inactive(file)").unwrap_or(0);
    let usage = match (total, free) {
        (Some(t), Some(f)) => Some(t.saturating_sub(f)),
        _ => None,
    };
    let working_set = usage.map(|u| u.saturating_sub(inactive_file));
    let available = match (total, working_set) {
        (Some(t), Some(ws)) => Some(t.saturating_sub(ws)),
        _ => None,
    };
    MemRaw {
        usage,
        working_set,
        available,
        rss: meminfo_bytes(meminfo, "AnonPages"),
        page_faults: kv(vmstat, "pgfault"),
        major_page_faults: kv(vmstat, "pgmajfault"),
    }
}

/// cgroup v1 memory controller: `memory.usage_in_bytes`, `memory.stat`
/// (hierarchical `total_*` keys) and `memory.limit_in_bytes`.
pub fn cgroup_v1_memory(usage: &str, stat: &str, limit: Option<&str>) -> MemRaw {
    let usage: Option<u64> = usage.trim().parse().ok();
    let inactive = kv(stat, "total_inactive_file").unwrap_or(0);
    let working_set = usage.map(|u| u.saturating_sub(inactive));
    let limit = limit
        .and_then(|l| l.trim().parse::<u64>().ok())
        .filter(|l| *l < UNLIMITED);
    MemRaw {
        usage,
        working_set,
        available: match (limit, working_set) {
            (Some(l), Some(ws)) => Some(l.saturating_sub(ws)),
            _ => None,
        },
        rss: kv(stat, "total_rss"),
        page_faults: kv(stat, "total_pgfault"),
        major_page_faults: kv(stat, "total_pgmajfault"),
    }
}

/// cgroup v2: `memory.current`, `memory.stat`, `memory.max`.
pub fn cgroup_v2_memory(current: &str, stat: &str, max: Option<&str>) -> MemRaw {
    let usage: Option<u64> = current.trim().parse().ok();
    let inactive = kv(stat, "inactive_file").unwrap_or(0);
    let working_set = usage.map(|u| u.saturating_sub(inactive));
    let limit = max.and_then(|l| l.trim().parse::<u64>().ok());
    MemRaw {
        usage,
        working_set,
        available: match (limit, working_set) {
            (Some(l), Some(ws)) => Some(l.saturating_sub(ws)),
            _ => None,
        },
        rss: kv(stat, "anon"),
        page_faults: kv(stat, "pgfault"),
        major_page_faults: kv(stat, "pgmajfault"),
    }
}

/// cgroup v1 `cpuacct.usage` (nanoseconds).
pub fn cpuacct_usage(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

/// cgroup v2 `cpu.stat` `usage_usec`, in nanoseconds.
pub fn cpu_stat_v2_ns(text: &str) -> Option<u64> {
    kv(text, "usage_usec")?.checked_mul(1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_stat() {
        let text = "cpu  100 5 50 1000 20 1 2 3 4 0\ncpu0 1 2 3 4\nbtime 1700000000\n";
        // user+nice+system+irq+softirq+steal = 161 ticks of 10 ms
        assert_eq!(proc_stat_cpu_ns(text, 100), Some(1_610_000_000));
        assert_eq!(proc_stat_btime(text), Some(1_700_000_000));
        assert_eq!(proc_stat_cpu_ns("cpu  1 2\n", 100), None);
        assert_eq!(proc_stat_cpu_ns("cpu  x 2 3 4\n", 100), None);
        assert_eq!(proc_stat_cpu_ns(text, 0), None);
        assert_eq!(proc_stat_cpu_ns("", 100), None);
    }

    #[test]
    fn meminfo_and_vmstat() {
        let meminfo = "MemTotal:        1000 kB\nMemFree:          200 kB\nMemAvailable:     600 kB\nInactive(file):   300 kB\nAnonPages:        100 kB\n";
        let vmstat = "pgfault 77\npgmajfault 3\n";
        let m = host_memory(meminfo, vmstat);
        assert_eq!(m.usage, Some(800 * 1024));
        assert_eq!(m.working_set, Some(500 * 1024));
        assert_eq!(m.available, Some(500 * 1024));
        assert_eq!(m.rss, Some(100 * 1024));
        assert_eq!(m.page_faults, Some(77));
        assert_eq!(m.major_page_faults, Some(3));
        assert_eq!(host_memory("", ""), MemRaw::default());
    }

    #[test]
    fn cgroup_v1() {
        let stat = "cache 10\nrss 5\ntotal_rss 4096\ntotal_inactive_file 1000\ntotal_pgfault 9\ntotal_pgmajfault 1\n";
        let m = cgroup_v1_memory("10000\n", stat, Some("9223372036854771712\n"));
        assert_eq!(m.usage, Some(10000));
        assert_eq!(m.working_set, Some(9000));
        assert_eq!(m.available, None, "no limit");
        assert_eq!(m.rss, Some(4096));
        assert_eq!(m.page_faults, Some(9));
        let m = cgroup_v1_memory("10000", stat, Some("20000"));
        assert_eq!(m.available, Some(11000));
        // inactive above usage never underflows
        let m = cgroup_v1_memory("10", stat, None);
        assert_eq!(m.working_set, Some(0));
        assert_eq!(cgroup_v1_memory("garbage", "", None).usage, None);
        assert_eq!(cpuacct_usage("123456789\n"), Some(123456789));
        assert_eq!(cpuacct_usage(""), None);
    }

    #[test]
    fn cgroup_v2() {
        let stat = "anon 4096\nfile 100\ninactive_file 50\npgfault 5\npgmajfault 0\n";
        let m = cgroup_v2_memory("1000\n", stat, Some("max\n"));
        assert_eq!(m.working_set, Some(950));
        assert_eq!(m.available, None);
        assert_eq!(m.rss, Some(4096));
        assert_eq!(
            cgroup_v2_memory("1000", stat, Some("2000")).available,
            Some(1050)
        );
        assert_eq!(
            cpu_stat_v2_ns("usage_usec 1500\nuser_usec 1000\n"),
            Some(1_500_000)
        );
        assert_eq!(cpu_stat_v2_ns("user_usec 1000\n"), None);
    }
}
