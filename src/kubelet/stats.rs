//! Resource usage of the node and its pods, served by the kubelet as the
//! Summary API (`/stats/summary`) and as Prometheus text
//! (`/metrics/resource`, what metrics-server scrapes).
//!
//! This file is pure: the Summary types, the assembly of a `Summary` from
//! raw samples (`Inputs`), the CPU rate cache and the Prometheus renderer.
//! `stats/parse.rs` turns `/proc` and cgroup files into numbers (pure);
//! `stats/collect.rs` is the shell that reads them and asks CRI.
//!
//! Invariants: `usageNanoCores` always comes from two samples of the same
//! cumulative counter at least `MIN_RATE_INTERVAL_NS` apart (a counter that
//! went backwards, e.g. a restarted container, yields no rate); the rate
//! cache holds only keys seen in the latest assembly, so it never grows
//! past the node's live containers; nothing here panics on odd input.

pub mod collect;
pub mod parse;

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use serde::Serialize;

/// Samples closer together than this reuse the previous rate (two scrapers
/// back to back must not produce a rate over a few microseconds).
pub const MIN_RATE_INTERVAL_NS: i64 = 1_000_000_000;

/// A point in time, nanoseconds since the Unix epoch; serialized like
/// `metav1.Time` (RFC 3339, seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Time(pub i64);

impl Time {
    pub fn rfc3339(&self) -> String {
        let secs = self.0.div_euclid(1_000_000_000);
        chrono::DateTime::from_timestamp(secs, 0)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_else(|| "1970-01-01T00:00:00Z".to_string())
    }
    pub fn millis(&self) -> i64 {
        self.0.div_euclid(1_000_000)
    }
    pub fn seconds_f64(&self) -> f64 {
        self.0 as f64 / 1e9
    }
}

impl Serialize for Time {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.rfc3339())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct Summary {
    pub node: NodeStats,
    pub pods: Vec<PodStats>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct NodeStats {
    pub node_name: String,
    pub start_time: Time,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<CpuStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<MemoryStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fs: Option<FsStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtime: Option<RuntimeStats>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeStats {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_fs: Option<FsStats>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct CpuStats {
    pub time: Time,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage_nano_cores: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage_core_nano_seconds: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct MemoryStats {
    pub time: Time,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub available_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub working_set_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rss_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page_faults: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub major_page_faults: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct FsStats {
    pub time: Time,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub available_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capacity_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub used_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inodes_free: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inodes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inodes_used: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct PodRef {
    pub name: String,
    pub namespace: String,
    pub uid: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct PodStats {
    pub pod_ref: PodRef,
    pub start_time: Time,
    pub containers: Vec<ContainerStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<CpuStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<MemoryStats>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ContainerStats {
    pub name: String,
    pub start_time: Time,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<CpuStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<MemoryStats>,
}

// ---- raw inputs ----

/// Memory figures of one cgroup (or the host), each optional.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct MemRaw {
    pub usage: Option<u64>,
    pub working_set: Option<u64>,
    pub available: Option<u64>,
    pub rss: Option<u64>,
    pub page_faults: Option<u64>,
    pub major_page_faults: Option<u64>,
}

impl MemRaw {
    /// Field by field: ours where present, else `other`'s.
    pub fn or(self, other: MemRaw) -> MemRaw {
        MemRaw {
            usage: self.usage.or(other.usage),
            working_set: self.working_set.or(other.working_set),
            available: self.available.or(other.available),
            rss: self.rss.or(other.rss),
            page_faults: self.page_faults.or(other.page_faults),
            major_page_faults: self.major_page_faults.or(other.major_page_faults),
        }
    }
    fn is_empty(&self) -> bool {
        *self == MemRaw::default()
    }
    fn stats(self, time: Time) -> Option<MemoryStats> {
        (!self.is_empty()).then_some(MemoryStats {
            time,
            available_bytes: self.available,
            usage_bytes: self.usage,
            working_set_bytes: self.working_set,
            rss_bytes: self.rss,
            page_faults: self.page_faults,
            major_page_faults: self.major_page_faults,
        })
    }
}

/// One reading of a cgroup (or of what CRI reported for a container).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Sample {
    pub time: Time,
    /// Cumulative CPU time in nanoseconds.
    pub cpu_ns: Option<u64>,
    pub mem: MemRaw,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct SandboxInfo {
    pub id: String,
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub created: Time,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct ContainerInfo {
    pub id: String,
    pub sandbox_id: String,
    pub name: String,
    pub created: Time,
}

/// Everything one assembly needs, gathered by the shell.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    pub node_name: String,
    pub now: Time,
    pub boot_time: Time,
    pub node: Sample,
    pub node_fs: Option<FsStats>,
    pub image_fs: Option<FsStats>,
    /// Ready sandboxes.
    pub sandboxes: Vec<SandboxInfo>,
    /// Running containers.
    pub containers: Vec<ContainerInfo>,
    /// CRI `ListContainerStats`, by container id.
    pub cri: HashMap<String, Sample>,
    /// Container cgroups, by container id (fills what CRI leaves out).
    pub container_cgroups: HashMap<String, Sample>,
    /// Pod cgroups, by pod uid.
    pub pod_cgroups: HashMap<String, Sample>,
}

// ---- CPU rates ----

#[derive(Debug, Clone, Copy)]
struct RateEntry {
    time: Time,
    usage_ns: u64,
    rate: Option<u64>,
}

/// Last sample per cumulative CPU counter, to turn counters into rates.
#[derive(Debug, Default)]
pub struct RateCache {
    entries: HashMap<String, RateEntry>,
    seen: std::collections::HashSet<String>,
}

impl RateCache {
    /// The rate in nanocores between the cached sample of `key` and this
    /// one; `None` for the first sample or a counter that went backwards.
    pub fn rate(&mut self, key: &str, time: Time, usage_ns: u64) -> Option<u64> {
        self.seen.insert(key.to_string());
        let fresh = RateEntry {
            time,
            usage_ns,
            rate: None,
        };
        let Some(prev) = self.entries.get(key).copied() else {
            self.entries.insert(key.to_string(), fresh);
            return None;
        };
        let dt = time.0 - prev.time.0;
        if usage_ns < prev.usage_ns || dt < 0 {
            self.entries.insert(key.to_string(), fresh);
            return None;
        }
        if dt < MIN_RATE_INTERVAL_NS {
            return prev.rate;
        }
        let rate = rate_nanocores(usage_ns - prev.usage_ns, dt);
        self.entries.insert(
            key.to_string(),
            RateEntry {
                time,
                usage_ns,
                rate,
            },
        );
        rate
    }

    /// Forget every key not used since the last `prune`.
    pub fn prune(&mut self) {
        let seen = std::mem::take(&mut self.seen);
        self.entries.retain(|k, _| seen.contains(k));
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// `delta_ns` of CPU time over `interval_ns` of wall time, in nanocores.
pub fn rate_nanocores(delta_ns: u64, interval_ns: i64) -> Option<u64> {
    if interval_ns <= 0 {
        return None;
    }
    let r = (delta_ns as u128 * 1_000_000_000u128) / interval_ns as u128;
    u64::try_from(r).ok()
}

fn cpu_stats(cache: &mut RateCache, key: &str, s: &Sample) -> Option<CpuStats> {
    let usage = s.cpu_ns?;
    Some(CpuStats {
        time: s.time,
        usage_nano_cores: cache.rate(key, s.time, usage),
        usage_core_nano_seconds: Some(usage),
    })
}

fn sum_opt(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.saturating_add(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

/// Build the Summary. Pods are the ready sandboxes (newest per uid);
/// containers are the running ones in them. Pod figures come from the pod
/// cgroup when it was read, else from the sum of the containers.
pub fn assemble(inp: &Inputs, cache: &mut RateCache) -> Summary {
    let node = NodeStats {
        node_name: inp.node_name.clone(),
        start_time: inp.boot_time,
        cpu: cpu_stats(cache, "node", &inp.node),
        memory: inp.node.mem.stats(inp.node.time),
        fs: inp.node_fs,
        runtime: inp.image_fs.map(|f| RuntimeStats { image_fs: Some(f) }),
    };
    // newest ready sandbox per pod uid
    let mut by_uid: BTreeMap<(String, String, String), &SandboxInfo> = BTreeMap::new();
    for sb in &inp.sandboxes {
        if sb.uid.is_empty() {
            continue;
        }
        let k = (sb.namespace.clone(), sb.name.clone(), sb.uid.clone());
        match by_uid.get(&k) {
            Some(old) if old.created >= sb.created => {}
            _ => {
                by_uid.insert(k, sb);
            }
        }
    }
    let mut pods = Vec::new();
    for ((ns, name, uid), sb) in by_uid {
        let mut containers: Vec<&ContainerInfo> = inp
            .containers
            .iter()
            .filter(|c| c.sandbox_id == sb.id)
            .collect();
        containers.sort_by(|a, b| a.name.cmp(&b.name).then(b.created.cmp(&a.created)));
        containers.dedup_by(|a, b| a.name == b.name);
        let mut cstats = Vec::new();
        let mut sum = Sample {
            time: inp.now,
            ..Default::default()
        };
        for c in containers {
            let cri = inp.cri.get(&c.id).copied();
            let cg = inp.container_cgroups.get(&c.id).copied();
            let sample = match (cri, cg) {
                (Some(a), Some(b)) => Sample {
                    time: if a.cpu_ns.is_some() { a.time } else { b.time },
                    cpu_ns: a.cpu_ns.or(b.cpu_ns),
                    mem: a.mem.or(b.mem),
                },
                (Some(a), None) => a,
                (None, Some(b)) => b,
                (None, None) => Sample {
                    time: inp.now,
                    ..Default::default()
                },
            };
            sum.cpu_ns = sum_opt(sum.cpu_ns, sample.cpu_ns);
            sum.mem.usage = sum_opt(sum.mem.usage, sample.mem.usage);
            sum.mem.working_set = sum_opt(sum.mem.working_set, sample.mem.working_set);
            sum.mem.rss = sum_opt(sum.mem.rss, sample.mem.rss);
            sum.mem.page_faults = sum_opt(sum.mem.page_faults, sample.mem.page_faults);
            sum.mem.major_page_faults =
                sum_opt(sum.mem.major_page_faults, sample.mem.major_page_faults);
            cstats.push(ContainerStats {
                name: c.name.clone(),
                start_time: c.created,
                cpu: cpu_stats(cache, &format!("ctr/{}", c.id), &sample),
                memory: sample.mem.stats(sample.time),
            });
        }
        let pod_sample = inp.pod_cgroups.get(&uid).copied().unwrap_or(sum);
        pods.push(PodStats {
            cpu: cpu_stats(cache, &format!("pod/{uid}"), &pod_sample),
            memory: pod_sample.mem.stats(pod_sample.time),
            pod_ref: PodRef {
                name,
                namespace: ns,
                uid,
            },
            start_time: sb.created,
            containers: cstats,
        });
    }
    cache.prune();
    Summary { node, pods }
}

// ---- Prometheus text (format 0.0.4) ----

pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

fn escape_label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for ch in v.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn float(v: f64) -> String {
    if v.is_finite() {
        format!("{v}")
    } else {
        "0".to_string()
    }
}

struct Family<'a> {
    name: &'a str,
    help: &'a str,
    kind: &'a str,
    samples: Vec<(String, f64, Option<i64>)>,
}

impl Family<'_> {
    fn render(&self, out: &mut String) {
        if self.samples.is_empty() {
            return;
        }
        let _ = writeln!(out, "# HELP {} {}", self.name, self.help);
        let _ = writeln!(out, "# TYPE {} {}", self.name, self.kind);
        for (labels, v, ts) in &self.samples {
            let _ = write!(out, "{}{} {}", self.name, labels, float(*v));
            if let Some(ts) = ts {
                let _ = write!(out, " {ts}");
            }
            out.push('\n');
        }
    }
}

fn labels(pairs: &[(&str, &str)]) -> String {
    if pairs.is_empty() {
        return String::new();
    }
    let inner: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape_label(v)))
        .collect();
    format!("{{{}}}", inner.join(","))
}

/// `/metrics/resource` like the upstream kubelet: cumulative CPU seconds
/// and working sets of the node, pods and containers, container start
/// times, each with the sample's timestamp in milliseconds.
pub fn render_prometheus(s: &Summary, scrape_error: bool) -> String {
    let mut ctr_cpu = Family {
        name: "container_cpu_usage_seconds_total",
        help: "[STABLE] Cumulative cpu time consumed by the container in core-seconds",
        kind: "counter",
        samples: vec![],
    };
    let mut ctr_mem = Family {
        name: "container_memory_working_set_bytes",
        help: "[STABLE] Current working set of the container in bytes",
        kind: "gauge",
        samples: vec![],
    };
    let mut ctr_start = Family {
        name: "container_start_time_seconds",
        help: "[STABLE] Start time of the container since unix epoch in seconds",
        kind: "gauge",
        samples: vec![],
    };
    let mut node_cpu = Family {
        name: "node_cpu_usage_seconds_total",
        help: "[STABLE] Cumulative cpu time consumed by the node in core-seconds",
        kind: "counter",
        samples: vec![],
    };
    let mut node_mem = Family {
        name: "node_memory_working_set_bytes",
        help: "[STABLE] Current working set of the node in bytes",
        kind: "gauge",
        samples: vec![],
    };
    let mut pod_cpu = Family {
        name: "pod_cpu_usage_seconds_total",
        help: "[STABLE] Cumulative cpu time consumed by the pod in core-seconds",
        kind: "counter",
        samples: vec![],
    };
    let mut pod_mem = Family {
        name: "pod_memory_working_set_bytes",
        help: "[STABLE] Current working set of the pod in bytes",
        kind: "gauge",
        samples: vec![],
    };
    if let Some(c) = &s.node.cpu
        && let Some(u) = c.usage_core_nano_seconds
    {
        node_cpu
            .samples
            .push((String::new(), u as f64 / 1e9, Some(c.time.millis())));
    }
    if let Some(m) = &s.node.memory
        && let Some(ws) = m.working_set_bytes
    {
        node_mem
            .samples
            .push((String::new(), ws as f64, Some(m.time.millis())));
    }
    for p in &s.pods {
        let (ns, pod) = (p.pod_ref.namespace.as_str(), p.pod_ref.name.as_str());
        let pl = labels(&[("namespace", ns), ("pod", pod)]);
        if let Some(c) = &p.cpu
            && let Some(u) = c.usage_core_nano_seconds
        {
            pod_cpu
                .samples
                .push((pl.clone(), u as f64 / 1e9, Some(c.time.millis())));
        }
        if let Some(m) = &p.memory
            && let Some(ws) = m.working_set_bytes
        {
            pod_mem
                .samples
                .push((pl.clone(), ws as f64, Some(m.time.millis())));
        }
        for c in &p.containers {
            let cl = labels(&[("container", &c.name), ("namespace", ns), ("pod", pod)]);
            let ts = c.cpu.map(|x| x.time).or(c.memory.map(|x| x.time));
            if let Some(cpu) = &c.cpu
                && let Some(u) = cpu.usage_core_nano_seconds
            {
                ctr_cpu
                    .samples
                    .push((cl.clone(), u as f64 / 1e9, Some(cpu.time.millis())));
            }
            if let Some(m) = &c.memory
                && let Some(ws) = m.working_set_bytes
            {
                ctr_mem
                    .samples
                    .push((cl.clone(), ws as f64, Some(m.time.millis())));
            }
            if let Some(ts) = ts {
                ctr_start
                    .samples
                    .push((cl, c.start_time.seconds_f64(), Some(ts.millis())));
            }
        }
    }
    let mut out = String::new();
    for f in [
        &ctr_cpu, &ctr_mem, &ctr_start, &node_cpu, &node_mem, &pod_cpu, &pod_mem,
    ] {
        f.render(&mut out);
    }
    let err = Family {
        name: "scrape_error",
        help: "[ALPHA] 1 if there was an error while getting container metrics, 0 otherwise",
        kind: "gauge",
        samples: vec![(String::new(), if scrape_error { 1.0 } else { 0.0 }, None)],
    };
    err.render(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    #[test]
    fn rates_from_two_samples() {
        // (time s, usage ns, expected nanocores)
        let cases: &[(i64, u64, Option<u64>)] = &[
            (100, 1_000, None),                              // first sample
            (110, 5_000_000_000 + 1_000, Some(500_000_000)), // 5 s over 10 s = 0.5 core
            (110, 9_000_000_000, Some(500_000_000)),         // same instant: previous rate
            (120, 15_000_001_000, Some(1_000_000_000)),
            (130, 10, None), // counter went backwards (restart)
            (140, 2_000_000_010, Some(200_000_000)),
        ];
        let mut c = RateCache::default();
        for (i, (t, u, want)) in cases.iter().enumerate() {
            assert_eq!(c.rate("k", Time(t * S), *u), *want, "case {i}");
        }
    }

    #[test]
    fn rate_arithmetic() {
        assert_eq!(rate_nanocores(1_000_000_000, S), Some(1_000_000_000));
        assert_eq!(rate_nanocores(250, 1_000), Some(250_000_000));
        assert_eq!(rate_nanocores(1, 0), None);
        assert_eq!(rate_nanocores(1, -5), None);
        assert_eq!(rate_nanocores(u64::MAX, 1), None);
    }

    #[test]
    fn prune_forgets_unseen_keys() {
        let mut c = RateCache::default();
        c.rate("a", Time(0), 1);
        c.rate("b", Time(0), 1);
        c.prune();
        assert_eq!(c.len(), 2);
        c.rate("a", Time(2 * S), 2);
        c.prune();
        assert_eq!(c.len(), 1);
        assert_eq!(c.rate("b", Time(4 * S), 3), None);
    }

    fn inputs() -> Inputs {
        let mem = |ws| MemRaw {
            usage: Some(ws + 100),
            working_set: Some(ws),
            ..Default::default()
        };
        Inputs {
            node_name: "n1".into(),
            now: Time(1000 * S),
            boot_time: Time(10 * S),
            node: Sample {
                time: Time(1000 * S),
                cpu_ns: Some(50 * S as u64),
                mem: mem(4096),
            },
            sandboxes: vec![
                SandboxInfo {
                    id: "sb-old".into(),
                    name: "web".into(),
                    namespace: "default".into(),
                    uid: "u1".into(),
                    created: Time(500 * S),
                },
                SandboxInfo {
                    id: "sb1".into(),
                    name: "web".into(),
                    namespace: "default".into(),
                    uid: "u1".into(),
                    created: Time(600 * S),
                },
                SandboxInfo {
                    id: "sb2".into(),
                    name: "db".into(),
                    namespace: "prod".into(),
                    uid: "u2".into(),
                    created: Time(700 * S),
                },
            ],
            containers: vec![
                ContainerInfo {
                    id: "c1".into(),
                    sandbox_id: "sb1".into(),
                    name: "main".into(),
                    created: Time(601 * S),
                },
                ContainerInfo {
                    id: "c2".into(),
                    sandbox_id: "sb1".into(),
                    name: "side".into(),
                    created: Time(602 * S),
                },
                ContainerInfo {
                    id: "c3".into(),
                    sandbox_id: "sb2".into(),
                    name: "db".into(),
                    created: Time(701 * S),
                },
            ],
            cri: HashMap::from([
                (
                    "c1".to_string(),
                    Sample {
                        time: Time(999 * S),
                        cpu_ns: Some(3 * S as u64),
                        mem: MemRaw {
                            working_set: Some(1024),
                            ..Default::default()
                        },
                    },
                ),
                (
                    "c2".to_string(),
                    Sample {
                        time: Time(999 * S),
                        cpu_ns: Some(S as u64),
                        mem: mem(2048),
                    },
                ),
            ]),
            container_cgroups: HashMap::from([
                (
                    "c1".to_string(),
                    Sample {
                        time: Time(1000 * S),
                        cpu_ns: Some(7),
                        mem: MemRaw {
                            working_set: Some(1),
                            rss: Some(512),
                            ..Default::default()
                        },
                    },
                ),
                (
                    "c3".to_string(),
                    Sample {
                        time: Time(1000 * S),
                        cpu_ns: Some(9 * S as u64),
                        mem: mem(8192),
                    },
                ),
            ]),
            pod_cgroups: HashMap::from([(
                "u2".to_string(),
                Sample {
                    time: Time(1000 * S),
                    cpu_ns: Some(10 * S as u64),
                    mem: mem(9000),
                },
            )]),
            ..Default::default()
        }
    }

    #[test]
    fn summary_assembly() {
        let mut cache = RateCache::default();
        let s = assemble(&inputs(), &mut cache);
        assert_eq!(s.node.node_name, "n1");
        assert_eq!(
            s.node.cpu.unwrap().usage_core_nano_seconds,
            Some(50 * S as u64)
        );
        assert_eq!(s.node.cpu.unwrap().usage_nano_cores, None);
        assert_eq!(s.pods.len(), 2);
        // sorted by namespace/name: default/web, prod/db
        let web = &s.pods[0];
        assert_eq!(web.pod_ref.uid, "u1");
        assert_eq!(web.start_time, Time(600 * S), "newest sandbox wins");
        let names: Vec<&str> = web.containers.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["main", "side"]);
        let main = &web.containers[0];
        // CRI figures win, the cgroup fills the rest
        assert_eq!(
            main.cpu.unwrap().usage_core_nano_seconds,
            Some(3 * S as u64)
        );
        assert_eq!(main.memory.unwrap().working_set_bytes, Some(1024));
        assert_eq!(main.memory.unwrap().rss_bytes, Some(512));
        // no pod cgroup: the sum of the containers
        assert_eq!(web.cpu.unwrap().usage_core_nano_seconds, Some(4 * S as u64));
        assert_eq!(web.memory.unwrap().working_set_bytes, Some(1024 + 2048));
        let db = &s.pods[1];
        assert_eq!(db.cpu.unwrap().usage_core_nano_seconds, Some(10 * S as u64));
        assert_eq!(
            db.containers[0].memory.unwrap().working_set_bytes,
            Some(8192)
        );
        // second round, 10 s later: rates everywhere
        let mut next = inputs();
        next.node.time = Time(1010 * S);
        next.node.cpu_ns = Some(60 * S as u64);
        next.pod_cgroups.get_mut("u2").unwrap().time = Time(1010 * S);
        next.pod_cgroups.get_mut("u2").unwrap().cpu_ns = Some(15 * S as u64);
        let s2 = assemble(&next, &mut cache);
        assert_eq!(s2.node.cpu.unwrap().usage_nano_cores, Some(1_000_000_000));
        assert_eq!(s2.pods[1].cpu.unwrap().usage_nano_cores, Some(500_000_000));
        let json = serde_json::to_value(&s2).unwrap();
        assert_eq!(json["node"]["startTime"], "1970-01-01T00:00:10Z");
        assert_eq!(json["pods"][1]["podRef"]["namespace"], "prod");
        assert_eq!(json["pods"][1]["cpu"]["usageNanoCores"], 500_000_000);
        assert!(
            json["pods"][0]["containers"][0]["memory"]
                .get("usageBytes")
                .is_none()
        );
    }

    #[test]
    fn prometheus_text() {
        let mut cache = RateCache::default();
        let mut inp = inputs();
        inp.sandboxes[2].name = "d\"b".into();
        let s = assemble(&inp, &mut cache);
        let text = render_prometheus(&s, false);
        let want_lines = [
            "# TYPE container_cpu_usage_seconds_total counter",
            "container_cpu_usage_seconds_total{container=\"main\",namespace=\"default\",pod=\"web\"} 3 999000",
            "container_memory_working_set_bytes{container=\"side\",namespace=\"default\",pod=\"web\"} 2048 999000",
            "container_start_time_seconds{container=\"main\",namespace=\"default\",pod=\"web\"} 601 999000",
            "node_cpu_usage_seconds_total 50 1000000",
            "node_memory_working_set_bytes 4096 1000000",
            "pod_cpu_usage_seconds_total{namespace=\"prod\",pod=\"d\\\"b\"} 10 1000000",
            "pod_memory_working_set_bytes{namespace=\"default\",pod=\"web\"} 3072 1000000",
            "# TYPE scrape_error gauge",
            "scrape_error 0",
        ];
        for l in want_lines {
            assert!(text.lines().any(|x| x == l), "missing {l:?} in\n{text}");
        }
        assert!(text.ends_with('\n'));
        assert!(render_prometheus(&Summary::default(), true).contains("scrape_error 1\n"));
        // a family without samples prints no header
        assert!(!render_prometheus(&Summary::default(), false).contains("node_cpu"));
    }
}
