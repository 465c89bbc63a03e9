//! The eviction manager's decisions (pure): which thresholds are met, which
//! pressure conditions the node reports (held for the transition period),
//! which threshold to reclaim for, which pod goes first, and the upstream
//! texts of the pod's eviction.
//!
//! Invariants: a soft threshold drives eviction only after it has been met
//! continuously for its grace period, yet drives the node condition at
//! once; a condition stays True until `transition` has passed since it was
//! last observed; static, mirror and critical pods (priority ≥
//! 2000000000) and pods already terminal or terminating are never chosen.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;

use super::thresholds::{PressureKind, Signal, Threshold};

/// Upstream `scheduling.SystemCriticalPriority`.
pub const SYSTEM_CRITICAL_PRIORITY: i32 = 2_000_000_000;

/// What a signal measured: available amount and the capacity behind it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Observation {
    pub available: i128,
    pub capacity: i128,
}

pub type Observations = BTreeMap<Signal, Observation>;

/// Which pressure conditions are True.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pressure {
    pub memory: bool,
    pub disk: bool,
    pub pid: bool,
}

impl Pressure {
    fn set(&mut self, k: PressureKind) {
        match k {
            PressureKind::Memory => self.memory = true,
            PressureKind::Disk => self.disk = true,
            PressureKind::Pid => self.pid = true,
        }
    }
}

/// The observation a threshold reads (containerfs is the image filesystem
/// when it is not split out, as here).
pub fn observed(obs: &Observations, s: Signal) -> Option<Observation> {
    let s = match s {
        Signal::ContainerFsAvailable => Signal::ImageFsAvailable,
        Signal::ContainerFsInodesFree => Signal::ImageFsInodesFree,
        s => s,
    };
    obs.get(&s).copied()
}

/// The thresholds whose signal is below them; with `enforce_min_reclaim`
/// the bar is raised by the threshold's minimum reclaim.
pub fn thresholds_met(
    thresholds: &[Threshold],
    obs: &Observations,
    enforce_min_reclaim: bool,
) -> Vec<Threshold> {
    thresholds
        .iter()
        .filter(|t| {
            let Some(o) = observed(obs, t.signal) else {
                return false;
            };
            let mut bar = t.value.resolve(o.capacity);
            if enforce_min_reclaim && let Some(m) = &t.min_reclaim {
                bar += m.resolve(o.capacity);
            }
            o.available < bar
        })
        .cloned()
        .collect()
}

/// Memory across cycles.
#[derive(Clone, Debug, Default)]
pub struct State {
    met: Vec<Threshold>,
    first_observed: HashMap<(Signal, bool), Instant>,
    last_observed: HashMap<PressureKind, Instant>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// Conditions to report.
    pub pressure: Pressure,
    /// Thresholds met now (before grace periods), for the message.
    pub met: Vec<Threshold>,
    /// The threshold to reclaim for, if any has passed its grace period.
    pub reclaim: Option<Threshold>,
}

/// Reclaim order: memory first, then disk, then pids (stable otherwise).
fn reclaim_rank(t: &Threshold) -> u8 {
    match t.signal.pressure() {
        PressureKind::Memory => 0,
        PressureKind::Disk => 1,
        PressureKind::Pid => 2,
    }
}

/// One housekeeping cycle (upstream `synchronize` up to ranking).
pub fn step(
    state: &mut State,
    thresholds: &[Threshold],
    obs: &Observations,
    transition: Duration,
    now: Instant,
) -> Decision {
    let mut met = thresholds_met(thresholds, obs, false);
    // thresholds met last time stay met until their minimum reclaim is done
    for t in thresholds_met(&state.met, obs, true) {
        if !met.iter().any(|m| m.key() == t.key()) {
            met.push(t);
        }
    }
    state
        .first_observed
        .retain(|k, _| met.iter().any(|t| t.key() == *k));
    for t in &met {
        state.first_observed.entry(t.key()).or_insert(now);
    }
    for t in &met {
        state.last_observed.insert(t.signal.pressure(), now);
    }
    let mut pressure = Pressure::default();
    for (k, at) in &state.last_observed {
        if now.saturating_duration_since(*at) < transition || *at == now {
            pressure.set(*k);
        }
    }
    state
        .last_observed
        .retain(|_, at| now.saturating_duration_since(*at) < transition);
    let mut due: Vec<Threshold> = met
        .iter()
        .filter(|t| {
            state
                .first_observed
                .get(&t.key())
                .is_some_and(|at| now.saturating_duration_since(*at) >= t.grace_period)
        })
        .cloned()
        .collect();
    due.sort_by_key(reclaim_rank);
    state.met = met.clone();
    Decision {
        pressure,
        met,
        reclaim: due.into_iter().next(),
    }
}

// ---- pods -------------------------------------------------------------------

/// Never evicted: static and mirror pods, and critical ones.
pub fn is_critical(pod: &Pod) -> bool {
    let ann = pod.metadata.annotations.as_ref();
    let mirror = ann.is_some_and(|a| a.contains_key("kubernetes.io/config.mirror"));
    let static_pod = ann
        .and_then(|a| a.get("kubernetes.io/config.source"))
        .is_some_and(|s| s != "api");
    mirror || static_pod || priority(pod) >= SYSTEM_CRITICAL_PRIORITY
}

pub fn priority(pod: &Pod) -> i32 {
    pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0)
}

/// A pod the eviction manager may choose: running here, not terminal, not
/// being deleted, not critical.
pub fn evictable(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    !matches!(phase, Some("Succeeded" | "Failed"))
        && pod.metadata.deletion_timestamp.is_none()
        && !is_critical(pod)
}

/// Bytes a pod requests of `resource` (`memory`, `ephemeral-storage`):
/// the larger of the app containers' sum and any init container's.
pub fn pod_request(pod: &Pod, resource: &str) -> i128 {
    let req = |c: &k8s_openapi::api::core::v1::Container| -> i128 {
        c.resources
            .as_ref()
            .and_then(|r| r.requests.as_ref())
            .and_then(|r| r.get(resource))
            .and_then(|q| crate::api::quantity::parse_quantity(&q.0))
            .map(|q| (q.milli_value() + 999) / 1000)
            .unwrap_or(0)
    };
    let Some(spec) = pod.spec.as_ref() else {
        return 0;
    };
    let sum: i128 = spec.containers.iter().map(req).sum();
    let init = spec
        .init_containers
        .iter()
        .flatten()
        .map(req)
        .max()
        .unwrap_or(0);
    sum.max(init)
}

/// A pod and what it uses of the starved resource (`None`: no stats).
#[derive(Clone, Debug)]
pub struct Candidate<'a> {
    pub pod: &'a Pod,
    pub usage: Option<i128>,
}

/// Upstream's ranking: for memory and disk, pods whose usage exceeds their
/// request first, then lower priority, then larger usage above request;
/// for pids, lower priority then larger usage. Pods without stats first.
pub fn rank(cands: &mut [Candidate], kind: PressureKind) {
    let resource = match kind {
        PressureKind::Memory => "memory",
        PressureKind::Disk => "ephemeral-storage",
        PressureKind::Pid => "",
    };
    cands.sort_by(|a, b| {
        use std::cmp::Ordering;
        let (ua, ub) = match (a.usage, b.usage) {
            (Some(x), Some(y)) => (x, y),
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (None, None) => return priority(a.pod).cmp(&priority(b.pod)),
        };
        let (ra, rb) = if resource.is_empty() {
            (0, 0)
        } else {
            (pod_request(a.pod, resource), pod_request(b.pod, resource))
        };
        let exceeds = if resource.is_empty() {
            Ordering::Equal
        } else {
            (ub > rb).cmp(&(ua > ra))
        };
        exceeds
            .then_with(|| priority(a.pod).cmp(&priority(b.pod)))
            .then_with(|| (ub - rb).cmp(&(ua - ra)))
    });
}

/// An amount as upstream prints a quantity of bytes (`BinarySI`) or of
/// a count (`DecimalSI`).
pub fn format_amount(value: i128, bytes: bool) -> String {
    if bytes && value.abs() >= 1024 {
        let (mut amount, mut exp) = (value, 0usize);
        while amount % 1024 == 0 && exp < 6 {
            amount /= 1024;
            exp += 1;
        }
        return format!("{amount}{}", ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"][exp]);
    }
    crate::api::quantity::parse_quantity(&value.to_string())
        .map(|q| q.canonical())
        .unwrap_or_else(|| value.to_string())
}

/// A container whose usage exceeds its request, for the message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Offender {
    pub container: String,
    pub usage: i128,
    pub request: i128,
}

/// Upstream's eviction message, e.g. `The node was low on resource:
/// memory. Threshold quantity: 100Mi, available: 9216Ki. Container hog was
/// using 300Mi, request is 0, has larger consumption of memory. `.
pub fn eviction_message(
    threshold: &Threshold,
    obs: &Observations,
    offenders: &[Offender],
) -> String {
    let resource = threshold.signal.resource();
    let bytes = threshold.signal.is_bytes();
    let mut m = format!("The node was low on resource: {resource}. ");
    if let Some(o) = observed(obs, threshold.signal) {
        let quantity = match &threshold.value {
            super::thresholds::Amount::Quantity { text, .. } => text.clone(),
            a => format_amount(a.resolve(o.capacity), bytes),
        };
        m += &format!(
            "Threshold quantity: {quantity}, available: {}. ",
            format_amount(o.available, bytes)
        );
    }
    for c in offenders {
        m += &format!(
            "Container {} was using {}, request is {}, has larger consumption of {resource}. ",
            c.container,
            format_amount(c.usage, bytes),
            format_amount(c.request, bytes)
        );
    }
    m
}

/// The node condition texts: `(type, reason, message)` for True and False.
pub fn condition_texts(
    kind: PressureKind,
    pressure: bool,
) -> (&'static str, &'static str, &'static str) {
    match (kind, pressure) {
        (PressureKind::Memory, true) => (
            "MemoryPressure",
            "KubeletHasInsufficientMemory",
            "kubelet has insufficient memory available",
        ),
        (PressureKind::Memory, false) => (
            "MemoryPressure",
            "KubeletHasSufficientMemory",
            "kubelet has sufficient memory available",
        ),
        (PressureKind::Disk, true) => (
            "DiskPressure",
            "KubeletHasDiskPressure",
            "kubelet has disk pressure",
        ),
        (PressureKind::Disk, false) => (
            "DiskPressure",
            "KubeletHasNoDiskPressure",
            "kubelet has no disk pressure",
        ),
        (PressureKind::Pid, true) => (
            "PIDPressure",
            "KubeletHasInsufficientPID",
            "kubelet has insufficient PID available",
        ),
        (PressureKind::Pid, false) => (
            "PIDPressure",
            "KubeletHasSufficientPID",
            "kubelet has sufficient PID available",
        ),
    }
}

/// The Node event recorded when a condition flips (upstream's setters).
pub fn node_event_reason(kind: PressureKind, pressure: bool) -> &'static str {
    match (kind, pressure) {
        (PressureKind::Memory, true) => "NodeHasInsufficientMemory",
        (PressureKind::Memory, false) => "NodeHasSufficientMemory",
        (PressureKind::Disk, true) => "NodeHasDiskPressure",
        (PressureKind::Disk, false) => "NodeHasNoDiskPressure",
        (PressureKind::Pid, true) => "NodeHasInsufficientPID",
        (PressureKind::Pid, false) => "NodeHasSufficientPID",
    }
}

#[cfg(test)]
mod tests {
    use super::super::thresholds::{ThresholdFlags, parse_thresholds};
    use super::*;
    use serde_json::json;

    fn thresholds(hard: &str, soft: &str, grace: &str, reclaim: &str) -> Vec<Threshold> {
        parse_thresholds(&ThresholdFlags {
            hard,
            soft,
            soft_grace_period: grace,
            minimum_reclaim: reclaim,
        })
        .unwrap()
    }

    fn obs(mem: i128, disk_pct: i128) -> Observations {
        Observations::from([
            (
                Signal::MemoryAvailable,
                Observation {
                    available: mem,
                    capacity: 1 << 30,
                },
            ),
            (
                Signal::ImageFsAvailable,
                Observation {
                    available: disk_pct,
                    capacity: 100,
                },
            ),
        ])
    }

    const MI: i128 = 1 << 20;

    #[test]
    fn conditions_follow_thresholds_with_grace_reclaim_and_transition() {
        let ts = thresholds(
            "memory.available<100Mi,imagefs.available<10%",
            "memory.available<300Mi",
            "memory.available=30s",
            "imagefs.available=5%",
        );
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let transition = s(60);
        let mut st = State::default();
        // (seconds, memory available, imagefs available %, memory?, disk?, reclaim signal)
        type Step = (u64, i128, i128, bool, bool, Option<(Signal, bool)>);
        let steps: &[Step] = &[
            (0, 500 * MI, 50, false, false, None),
            // soft threshold met: condition at once, eviction only after 30 s
            (10, 200 * MI, 50, true, false, None),
            (39, 200 * MI, 50, true, false, None),
            (
                40,
                200 * MI,
                50,
                true,
                false,
                Some((Signal::MemoryAvailable, false)),
            ),
            // hard threshold: immediate; memory first, disk second
            (
                50,
                50 * MI,
                5,
                true,
                true,
                Some((Signal::MemoryAvailable, true)),
            ),
            (
                60,
                500 * MI,
                5,
                true,
                true,
                Some((Signal::ImageFsAvailable, true)),
            ),
            // 12 % available: above 10 % but not above 10 % + 5 % minimum reclaim
            (
                70,
                500 * MI,
                12,
                true,
                true,
                Some((Signal::ImageFsAvailable, true)),
            ),
            (80, 500 * MI, 20, true, true, None),
            // memory last observed at 50 s: condition stays until 110 s
            (109, 500 * MI, 20, true, true, None),
            (110, 500 * MI, 20, false, true, None),
            (140, 500 * MI, 20, false, false, None),
        ];
        for (at, mem, disk, want_mem, want_disk, want_reclaim) in steps {
            let d = step(&mut st, &ts, &obs(*mem, *disk), transition, t0 + s(*at));
            assert_eq!(
                (d.pressure.memory, d.pressure.disk, d.pressure.pid),
                (*want_mem, *want_disk, false),
                "at {at}s"
            );
            assert_eq!(
                d.reclaim.map(|t| (t.signal, t.hard)),
                *want_reclaim,
                "at {at}s"
            );
        }
        // zero transition period: the condition clears on the next good cycle
        let mut st = State::default();
        assert!(
            step(&mut st, &ts, &obs(50 * MI, 50), Duration::ZERO, t0)
                .pressure
                .memory
        );
        assert!(
            !step(&mut st, &ts, &obs(500 * MI, 50), Duration::ZERO, t0 + s(1))
                .pressure
                .memory
        );
    }

    fn pod(name: &str, priority: i32, mem_request: Option<&str>, extra: serde_json::Value) -> Pod {
        let mut resources = json!({});
        if let Some(r) = mem_request {
            resources = json!({"requests": {"memory": r}, "limits": {"memory": r}});
        }
        let mut p: Pod = serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "ns", "uid": name},
            "spec": {"priority": priority, "containers": [{"name": "c", "image": "i", "resources": resources}]},
            "status": {"phase": "Running"},
        }))
        .unwrap();
        if let Some(a) = extra.get("annotations") {
            p.metadata.annotations = serde_json::from_value(a.clone()).unwrap();
        }
        if let Some(ph) = extra.get("phase") {
            p.status.as_mut().unwrap().phase = ph.as_str().map(String::from);
        }
        p
    }

    #[test]
    fn ranking_and_eligibility() {
        let pods = [
            pod("guaranteed", 0, Some("500Mi"), json!({})),
            pod("besteffort-small", 0, None, json!({})),
            pod("besteffort-big", 0, None, json!({})),
            pod("important-besteffort", 1000, None, json!({})),
            pod("over-request", 0, Some("10Mi"), json!({})),
            pod("no-stats", 0, None, json!({})),
        ];
        let usage = |n: &str| -> Option<i128> {
            match n {
                "guaranteed" => Some(400 * MI),
                "besteffort-small" => Some(5 * MI),
                "besteffort-big" => Some(300 * MI),
                "important-besteffort" => Some(900 * MI),
                "over-request" => Some(20 * MI),
                _ => None,
            }
        };
        let mut cands: Vec<Candidate> = pods
            .iter()
            .map(|p| Candidate {
                pod: p,
                usage: usage(p.metadata.name.as_deref().unwrap()),
            })
            .collect();
        rank(&mut cands, PressureKind::Memory);
        let order: Vec<&str> = cands
            .iter()
            .map(|c| c.pod.metadata.name.as_deref().unwrap())
            .collect();
        assert_eq!(
            order,
            [
                "no-stats",
                // exceeding requests, low priority, most above request first
                "besteffort-big",
                "over-request",
                "besteffort-small",
                "important-besteffort",
                // within its request
                "guaranteed",
            ]
        );
        rank(&mut cands, PressureKind::Pid);
        assert_eq!(
            cands.last().unwrap().pod.metadata.name.as_deref(),
            Some("important-besteffort")
        );

        let cases = [
            (pod("p", 0, None, json!({})), true),
            (pod("p", 2_000_000_000, None, json!({})), false),
            (pod("p", 2_000_001_000, None, json!({})), false),
            (pod("p", 1_999_999_999, None, json!({})), true),
            (
                pod(
                    "p",
                    0,
                    None,
                    json!({"annotations": {"kubernetes.io/config.mirror": "x"}}),
                ),
                false,
            ),
            (
                pod(
                    "p",
                    0,
                    None,
                    json!({"annotations": {"kubernetes.io/config.source": "file"}}),
                ),
                false,
            ),
            (
                pod(
                    "p",
                    0,
                    None,
                    json!({"annotations": {"kubernetes.io/config.source": "api"}}),
                ),
                true,
            ),
            (pod("p", 0, None, json!({"phase": "Failed"})), false),
            (pod("p", 0, None, json!({"phase": "Succeeded"})), false),
        ];
        for (p, want) in cases {
            assert_eq!(
                evictable(&p),
                want,
                "{:?} {:?}",
                p.metadata.annotations,
                p.spec.as_ref().unwrap().priority
            );
        }
        assert_eq!(pod_request(&pods[0], "memory"), 500 * MI);
        assert_eq!(pod_request(&pods[1], "memory"), 0);
    }

    #[test]
    fn messages_like_upstream() {
        let ts = thresholds(
            "memory.available<100Mi,nodefs.available<10%,pid.available<1k",
            "",
            "",
            "",
        );
        let o = Observations::from([
            (
                Signal::MemoryAvailable,
                Observation {
                    available: 92468 * 1024,
                    capacity: 1 << 30,
                },
            ),
            (
                Signal::NodeFsAvailable,
                Observation {
                    available: 1000 * 1024 * 1024,
                    capacity: 20 * 1024 * 1024 * 1024,
                },
            ),
            (
                Signal::PidAvailable,
                Observation {
                    available: 900,
                    capacity: 32768,
                },
            ),
        ]);
        let hog = Offender {
            container: "hog".into(),
            usage: 300 * MI,
            request: 0,
        };
        let cases = [
            (
                &ts[0],
                vec![hog.clone()],
                "The node was low on resource: memory. Threshold quantity: 100Mi, available: 92468Ki. Container hog was using 300Mi, request is 0, has larger consumption of memory. ",
            ),
            (
                &ts[0],
                vec![],
                "The node was low on resource: memory. Threshold quantity: 100Mi, available: 92468Ki. ",
            ),
            (
                &ts[1],
                vec![],
                "The node was low on resource: ephemeral-storage. Threshold quantity: 2Gi, available: 1000Mi. ",
            ),
            (
                &ts[2],
                vec![],
                "The node was low on resource: pids. Threshold quantity: 1k, available: 900. ",
            ),
        ];
        for (t, off, want) in cases {
            assert_eq!(eviction_message(t, &o, &off), want);
        }
        for (v, bytes, want) in [
            (1536, true, "1536"),
            (1024, true, "1Ki"),
            (500, true, "500"),
            (0, true, "0"),
            (3 << 30, true, "3Gi"),
            (32000, false, "32k"),
        ] {
            assert_eq!(format_amount(v, bytes), want);
        }
        assert_eq!(
            condition_texts(PressureKind::Memory, true),
            (
                "MemoryPressure",
                "KubeletHasInsufficientMemory",
                "kubelet has insufficient memory available"
            )
        );
        assert_eq!(
            node_event_reason(PressureKind::Disk, false),
            "NodeHasNoDiskPressure"
        );
    }
}
