//! The I/O shell of the stats: one round of CRI reads (ready sandboxes,
//! running containers, `ListContainerStats`, `ImageFsInfo`, concurrently —
//! a fixed number of calls, never one per pod), then `/proc`, the pod and
//! container cgroups (cgroupfs layout of `pods::cgroup_parent`, v1 or v2)
//! and `statvfs`, then the pure `assemble` with the shared rate cache.
//!
//! containerd 1.6 reports only cumulative CPU and the working set per
//! container; the cgroups fill in usage, RSS and page faults, and give the
//! pod totals (pause and exited containers included, like upstream).
//!
//! Invariant: a CRI failure still yields the node's figures (the caller
//! reports it as `scrape_error 1`); file reads never block the runtime.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::parse;
use super::{ContainerInfo, FsStats, Inputs, RateCache, Sample, SandboxInfo, Summary, Time};
use crate::kubelet::cri::{Cri, api};

const CRI_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
enum CgroupLayout {
    V1 { cpuacct: PathBuf, memory: PathBuf },
    V2 { root: PathBuf },
}

impl CgroupLayout {
    fn detect(base: &Path) -> CgroupLayout {
        if base.join("cgroup.controllers").exists() {
            return CgroupLayout::V2 {
                root: base.to_path_buf(),
            };
        }
        let cpuacct = ["cpuacct", "cpu,cpuacct", "cpuacct,cpu"]
            .iter()
            .map(|d| base.join(d))
            .find(|p| p.join("cpuacct.usage").exists())
            .unwrap_or_else(|| base.join("cpuacct"));
        CgroupLayout::V1 {
            cpuacct,
            memory: base.join("memory"),
        }
    }

    fn exists(&self, rel: &str) -> bool {
        let rel = rel.trim_start_matches('/');
        match self {
            CgroupLayout::V1 { cpuacct, memory } => {
                cpuacct.join(rel).is_dir() || memory.join(rel).is_dir()
            }
            CgroupLayout::V2 { root } => root.join(rel).is_dir(),
        }
    }

    fn read(&self, rel: &str, now: Time) -> Option<Sample> {
        let rel = rel.trim_start_matches('/');
        let rd = |p: PathBuf| std::fs::read_to_string(p).ok();
        let (cpu_ns, mem) = match self {
            CgroupLayout::V1 { cpuacct, memory } => {
                let cpu = rd(cpuacct.join(rel).join("cpuacct.usage"))
                    .and_then(|t| parse::cpuacct_usage(&t));
                let dir = memory.join(rel);
                let mem = match rd(dir.join("memory.usage_in_bytes")) {
                    Some(usage) => parse::cgroup_v1_memory(
                        &usage,
                        &rd(dir.join("memory.stat")).unwrap_or_default(),
                        rd(dir.join("memory.limit_in_bytes")).as_deref(),
                    ),
                    None => Default::default(),
                };
                (cpu, mem)
            }
            CgroupLayout::V2 { root } => {
                let dir = root.join(rel);
                let cpu = rd(dir.join("cpu.stat")).and_then(|t| parse::cpu_stat_v2_ns(&t));
                let mem = match rd(dir.join("memory.current")) {
                    Some(cur) => parse::cgroup_v2_memory(
                        &cur,
                        &rd(dir.join("memory.stat")).unwrap_or_default(),
                        rd(dir.join("memory.max")).as_deref(),
                    ),
                    None => Default::default(),
                };
                (cpu, mem)
            }
        };
        if cpu_ns.is_none() && mem == Default::default() {
            return None;
        }
        Some(Sample {
            time: now,
            cpu_ns,
            mem,
        })
    }
}

/// Computes Summaries for this node; shared by `/stats/summary` and
/// `/metrics/resource` (one rate cache).
pub struct StatsProvider {
    cri: Cri,
    node_name: String,
    /// The filesystem reported as the node's (`fs`): the agent directory's.
    fs_path: PathBuf,
    layout: CgroupLayout,
    cache: tokio::sync::Mutex<RateCache>,
}

fn now() -> Time {
    Time(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
            .unwrap_or(0),
    )
}

fn statvfs(path: &Path, now: Time) -> Option<FsStats> {
    let f = crate::kubelet::fsinfo::FsInfo::of(path)?;
    Some(FsStats {
        time: now,
        available_bytes: Some(f.available_bytes),
        capacity_bytes: Some(f.capacity_bytes),
        used_bytes: Some(f.used_bytes),
        inodes_free: Some(f.inodes_free),
        inodes: Some(f.inodes),
        inodes_used: Some(f.inodes_used()),
    })
}

/// What CRI said in one round.
#[derive(Default)]
struct CriRound {
    sandboxes: Vec<SandboxInfo>,
    containers: Vec<ContainerInfo>,
    stats: HashMap<String, Sample>,
    image_fs: Option<(String, Option<u64>, Option<u64>, Time)>,
}

async fn cri_round(cri: &Cri) -> Result<CriRound, tonic::Status> {
    let (mut a, mut b, mut c, mut d) = (
        cri.runtime.clone(),
        cri.runtime.clone(),
        cri.runtime.clone(),
        cri.image.clone(),
    );
    let sandboxes = a.list_pod_sandbox(api::ListPodSandboxRequest {
        filter: Some(api::PodSandboxFilter {
            state: Some(api::PodSandboxStateValue {
                state: api::PodSandboxState::SandboxReady as i32,
            }),
            ..Default::default()
        }),
    });
    let containers = b.list_containers(api::ListContainersRequest {
        filter: Some(api::ContainerFilter {
            state: Some(api::ContainerStateValue {
                state: api::ContainerState::ContainerRunning as i32,
            }),
            ..Default::default()
        }),
    });
    let stats = c.list_container_stats(api::ListContainerStatsRequest { filter: None });
    let image_fs = d.image_fs_info(api::ImageFsInfoRequest {});
    let all = async { tokio::join!(sandboxes, containers, stats, image_fs) };
    let (sandboxes, containers, stats, image_fs) = tokio::time::timeout(CRI_TIMEOUT, all)
        .await
        .map_err(|_| tonic::Status::deadline_exceeded("container runtime did not answer"))?;
    let mut round = CriRound::default();
    for s in sandboxes?.into_inner().items {
        let m = s.metadata.unwrap_or_default();
        round.sandboxes.push(SandboxInfo {
            id: s.id,
            name: m.name,
            namespace: m.namespace,
            uid: m.uid,
            created: Time(s.created_at),
        });
    }
    for c in containers?.into_inner().containers {
        round.containers.push(ContainerInfo {
            id: c.id,
            sandbox_id: c.pod_sandbox_id,
            name: c.metadata.map(|m| m.name).unwrap_or_default(),
            created: Time(c.created_at),
        });
    }
    for s in stats?.into_inner().stats {
        let Some(id) = s.attributes.map(|a| a.id) else {
            continue;
        };
        let cpu = s.cpu.and_then(|c| {
            c.usage_core_nano_seconds
                .map(|u| (Time(c.timestamp), u.value))
        });
        let v = |x: Option<api::UInt64Value>| x.map(|x| x.value);
        let mem = s.memory.map(|m| super::MemRaw {
            usage: v(m.usage_bytes).filter(|x| *x > 0),
            working_set: v(m.working_set_bytes),
            available: v(m.available_bytes).filter(|x| *x > 0),
            rss: v(m.rss_bytes).filter(|x| *x > 0),
            page_faults: v(m.page_faults).filter(|x| *x > 0),
            major_page_faults: v(m.major_page_faults).filter(|x| *x > 0),
        });
        let time = cpu
            .map(|c| c.0)
            .or(s.memory.map(|m| Time(m.timestamp)))
            .unwrap_or_else(now);
        round.stats.insert(
            id,
            Sample {
                time,
                cpu_ns: cpu.map(|c| c.1),
                mem: mem.unwrap_or_default(),
            },
        );
    }
    // image filesystem figures are optional: an error here is not a CRI failure
    if let Ok(fs) = image_fs
        && let Some(f) = fs.into_inner().image_filesystems.into_iter().next()
    {
        round.image_fs = Some((
            f.fs_id.map(|i| i.mountpoint).unwrap_or_default(),
            f.used_bytes.map(|x| x.value),
            f.inodes_used.map(|x| x.value),
            Time(f.timestamp),
        ));
    }
    Ok(round)
}

impl StatsProvider {
    pub fn new(cri: Cri, node_name: &str, fs_path: &Path) -> StatsProvider {
        StatsProvider {
            cri,
            node_name: node_name.to_string(),
            fs_path: fs_path.to_path_buf(),
            layout: CgroupLayout::detect(Path::new("/sys/fs/cgroup")),
            cache: tokio::sync::Mutex::new(RateCache::default()),
        }
    }

    /// One Summary; the flag is true when the runtime could not be read
    /// (the Summary then has the node's figures and no pods).
    pub async fn summary(&self) -> (Summary, bool) {
        let round = cri_round(&self.cri).await;
        let failed = match &round {
            Ok(_) => false,
            Err(e) => {
                tracing::debug!("stats: container runtime: {}", e.message());
                true
            }
        };
        let round = round.unwrap_or_default();
        let layout = self.layout.clone();
        let fs_path = self.fs_path.clone();
        let node_name = self.node_name.clone();
        let inputs =
            tokio::task::spawn_blocking(move || gather_host(node_name, &layout, &fs_path, round))
                .await
                .unwrap_or_default();
        let mut cache = self.cache.lock().await;
        (super::assemble(&inputs, &mut cache), failed)
    }
}

fn clk_tck() -> u64 {
    // SAFETY: sysconf only reads a configuration value.
    let v = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if v > 0 { v as u64 } else { 100 }
}

/// The blocking part: `/proc`, cgroups, statvfs.
fn gather_host(node_name: String, layout: &CgroupLayout, fs_path: &Path, r: CriRound) -> Inputs {
    let t = now();
    let rd = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let stat = rd("/proc/stat");
    let node = Sample {
        time: t,
        cpu_ns: parse::proc_stat_cpu_ns(&stat, clk_tck()),
        mem: parse::host_memory(&rd("/proc/meminfo"), &rd("/proc/vmstat")),
    };
    let boot_time = Time(
        parse::proc_stat_btime(&stat)
            .unwrap_or(0)
            .saturating_mul(1_000_000_000),
    );
    let mut pod_cgroups = HashMap::new();
    let mut container_cgroups = HashMap::new();
    for sb in &r.sandboxes {
        let Some(rel) = ["Guaranteed", "Burstable", "BestEffort"]
            .iter()
            .map(|q| crate::kubelet::pods::cgroup_parent(q, &sb.uid))
            .find(|rel| layout.exists(rel))
        else {
            continue;
        };
        if let Some(s) = layout.read(&rel, t) {
            pod_cgroups.insert(sb.uid.clone(), s);
        }
        for c in r.containers.iter().filter(|c| c.sandbox_id == sb.id) {
            if let Some(s) = layout.read(&format!("{rel}/{}", c.id), t) {
                container_cgroups.insert(c.id.clone(), s);
            }
        }
    }
    let image_fs = r.image_fs.as_ref().map(|(mount, used, inodes_used, ts)| {
        let mut f = statvfs(Path::new(mount), *ts).unwrap_or_default();
        f.time = *ts;
        f.used_bytes = used.or(f.used_bytes);
        f.inodes_used = inodes_used.or(f.inodes_used);
        f
    });
    Inputs {
        node_name,
        now: t,
        boot_time,
        node,
        node_fs: statvfs(fs_path, t),
        image_fs,
        sandboxes: r.sandboxes,
        containers: r.containers,
        cri: r.stats,
        container_cgroups,
        pod_cgroups,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_detection_and_reads() {
        let dir = std::env::temp_dir().join(format!("skiff-stats-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let pod = dir.join("cpuacct/skiff/podu1");
        let mem = dir.join("memory/skiff/podu1");
        std::fs::create_dir_all(&pod).unwrap();
        std::fs::create_dir_all(&mem).unwrap();
        std::fs::write(dir.join("cpuacct/cpuacct.usage"), "1").unwrap();
        std::fs::write(pod.join("cpuacct.usage"), "5000\n").unwrap();
        std::fs::write(mem.join("memory.usage_in_bytes"), "8192\n").unwrap();
        std::fs::write(mem.join("memory.stat"), "total_inactive_file 4096\n").unwrap();
        let l = CgroupLayout::detect(&dir);
        assert!(matches!(l, CgroupLayout::V1 { .. }));
        assert!(l.exists("/skiff/podu1"));
        assert!(!l.exists("/skiff/burstable/podu1"));
        let s = l.read("/skiff/podu1", Time(7)).unwrap();
        assert_eq!(s.cpu_ns, Some(5000));
        assert_eq!(s.mem.working_set, Some(4096));
        assert!(l.read("/skiff/nothing", Time(7)).is_none());
        std::fs::write(dir.join("cgroup.controllers"), "cpu memory").unwrap();
        assert!(matches!(
            CgroupLayout::detect(&dir),
            CgroupLayout::V2 { .. }
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
