//! One scheduling decision, as upstream's `schedulePod`: PreFilter, Filter
//! over an adaptive sample of nodes starting at a rotating index
//! (`percentageOfNodesToScore` defaulting), Score, and a random pick among
//! the best; or a `FitError` whose text matches upstream's
//! `0/N nodes are available: …` message.
//!
//! Owns: node sampling/rotation, tie-breaking (seeded, deterministic),
//! the nominated-node fast path and `FitError` formatting.
//!
//! Invariants: at most `num_feasible_nodes_to_find(n)` feasible nodes are
//! scored; every node is filtered before a `FitError` is returned; the
//! rotation index always stays in range.
//!
//! Must not: do I/O, read clocks, mutate the cache (the shell `assume`s the
//! result) or check `schedulerName`.

use crate::scheduler::cache::{Cache, NodeInfo};
use crate::scheduler::plugins::{CycleState, Reason, VolumeInfo};
use k8s_openapi::api::core::v1::Pod;
use std::collections::BTreeMap;
use std::fmt;

/// Upstream: below this many nodes, all are evaluated.
const MIN_FEASIBLE_NODES_TO_FIND: usize = 100;
/// Upstream: never sample fewer than this percentage.
const MIN_FEASIBLE_NODES_PERCENTAGE: usize = 5;

/// State carried between decisions: the rotating start index and the
/// tie-breaking random generator.
#[derive(Debug, Clone)]
pub struct SchedulerState {
    pub next_start_node_index: usize,
    rng: u64,
}

impl SchedulerState {
    pub fn new(seed: u64) -> SchedulerState {
        SchedulerState {
            next_start_node_index: 0,
            rng: seed | 1,
        }
    }

    /// xorshift64*: cheap, deterministic for a seed.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A value in `0..n` (0 when n is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }
}

impl Default for SchedulerState {
    fn default() -> Self {
        SchedulerState::new(0x9E37_79B9_7F4A_7C15)
    }
}

/// Why a pod fits no node; `Display` is upstream's `FitError.Error()`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FitError {
    pub num_all_nodes: usize,
    /// Whole-cycle failure (e.g. `persistentvolumeclaim "x" not found`).
    pub pre_filter_msg: Option<String>,
    /// Reason → number of nodes that failed with it.
    pub reasons: BTreeMap<Reason, usize>,
    /// Nodes where evicting pods might help (all their reasons resolvable).
    pub resolvable_nodes: Vec<String>,
    /// Set from the preemption outcome (`preemption: …`), if it failed.
    pub post_filter_msg: Option<String>,
}

impl FitError {
    /// Adds one node's failing reasons.
    pub fn record(&mut self, node: &str, reasons: Vec<Reason>) {
        if reasons.iter().all(Reason::resolvable) {
            self.resolvable_nodes.push(node.to_string());
        }
        for r in reasons {
            *self.reasons.entry(r).or_insert(0) += 1;
        }
    }

    /// `1 Insufficient cpu, 2 node(s) …` sorted as strings, like upstream.
    pub fn histogram(reasons: &BTreeMap<Reason, usize>) -> String {
        let mut parts: Vec<String> = reasons.iter().map(|(r, n)| format!("{n} {r}")).collect();
        parts.sort();
        parts.join(", ")
    }
}

impl fmt::Display for FitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.num_all_nodes == 0 && self.pre_filter_msg.is_none() {
            return f.write_str("no nodes available to schedule pods");
        }
        write!(f, "0/{} nodes are available:", self.num_all_nodes)?;
        match &self.pre_filter_msg {
            Some(msg) => write!(f, " {msg}.")?,
            None => {
                let h = FitError::histogram(&self.reasons);
                if !h.is_empty() {
                    write!(f, " {h}.")?;
                }
            }
        }
        if let Some(msg) = &self.post_filter_msg {
            write!(f, " {msg}.")?;
        }
        Ok(())
    }
}

impl std::error::Error for FitError {}

/// Upstream's adaptive `numFeasibleNodesToFind` (percentageOfNodesToScore
/// unset): all nodes below 100, else 50% minus 1% per 125 nodes, at least
/// 5% and at least 100 nodes.
pub fn num_feasible_nodes_to_find(num_all_nodes: usize) -> usize {
    if num_all_nodes < MIN_FEASIBLE_NODES_TO_FIND {
        return num_all_nodes;
    }
    let pct = 50usize
        .saturating_sub(num_all_nodes / 125)
        .max(MIN_FEASIBLE_NODES_PERCENTAGE);
    (num_all_nodes * pct / 100).max(MIN_FEASIBLE_NODES_TO_FIND)
}

/// Picks a node for `pod`. The shell then `cache.assume`s and binds it.
pub fn schedule(
    pod: &Pod,
    cache: &Cache,
    volumes: &VolumeInfo,
    state: &mut SchedulerState,
) -> Result<String, FitError> {
    let num_all_nodes = cache.node_count();
    if num_all_nodes == 0 {
        return Err(FitError::default());
    }
    let cycle = match CycleState::new(pod, cache, volumes) {
        Ok(c) => c,
        Err(msg) => {
            return Err(FitError {
                num_all_nodes,
                pre_filter_msg: Some(msg),
                ..Default::default()
            });
        }
    };
    if let Some(node) = nominated_fit(pod, cache, &cycle) {
        return Ok(node);
    }
    let mut fit_error = FitError {
        num_all_nodes,
        ..Default::default()
    };
    let feasible = find_feasible(&cycle, cache, state, &mut fit_error);
    match feasible.len() {
        0 => Err(fit_error),
        1 => Ok(feasible[0].name.clone()),
        _ => {
            let scores = cycle.score(cache, &feasible);
            Ok(feasible[select_host(&scores, state)].name.clone())
        }
    }
}

/// Upstream evaluates the nominated node (set by an earlier preemption)
/// first and takes it when it fits.
fn nominated_fit(pod: &Pod, cache: &Cache, cycle: &CycleState<'_>) -> Option<String> {
    let name = pod.status.as_ref()?.nominated_node_name.as_deref()?;
    let ni = cache.node(name)?;
    cycle.filter(ni).ok().map(|_| ni.name.clone())
}

/// Filters nodes from the rotating start until enough are feasible;
/// records failures into `fit_error` (complete when none is feasible).
fn find_feasible<'c>(
    cycle: &CycleState<'_>,
    cache: &'c Cache,
    state: &mut SchedulerState,
    fit_error: &mut FitError,
) -> Vec<&'c NodeInfo> {
    let nodes = cache.nodes();
    if let Some(names) = &cycle.node_names {
        let mut feasible = Vec::new();
        for ni in nodes.iter().filter(|n| n.node.is_some()) {
            if !names.contains(&ni.name.as_str()) {
                fit_error.record(&ni.name, vec![Reason::NodeAffinityPreFilter]);
                continue;
            }
            match cycle.filter(ni) {
                Ok(()) => feasible.push(ni),
                Err(r) => fit_error.record(&ni.name, r),
            }
        }
        return feasible;
    }
    let want = num_feasible_nodes_to_find(fit_error.num_all_nodes);
    let len = nodes.len();
    let start = state.next_start_node_index % len.max(1);
    let mut feasible = Vec::with_capacity(want.min(len));
    let mut processed = 0;
    for i in 0..len {
        if feasible.len() >= want {
            break;
        }
        processed += 1;
        let ni = &nodes[(start + i) % len];
        if ni.node.is_none() {
            continue;
        }
        match cycle.filter(ni) {
            Ok(()) => feasible.push(ni),
            Err(r) => fit_error.record(&ni.name, r),
        }
    }
    state.next_start_node_index = (start + processed) % len.max(1);
    feasible
}

/// Index of a highest score, ties broken uniformly at random (reservoir
/// sampling, as upstream `selectHost`).
pub fn select_host(scores: &[i64], state: &mut SchedulerState) -> usize {
    let mut best = 0;
    let mut ties = 0usize;
    for (i, s) in scores.iter().enumerate() {
        if i == 0 || *s > scores[best] {
            best = i;
            ties = 1;
        } else if *s == scores[best] {
            ties += 1;
            if state.below(ties) == 0 {
                best = i;
            }
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::cache::tests::{make_node, make_pod};
    use crate::scheduler::preemption::preempt;
    use k8s_openapi::api::core::v1::{
        Affinity, PodAffinityTerm, PodAntiAffinity, PodStatus, Taint,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
    use std::collections::HashMap;

    fn tainted(name: &str) -> k8s_openapi::api::core::v1::Node {
        let mut n = make_node(name, 4000, 8, &[]);
        n.spec.as_mut().unwrap().taints = Some(vec![Taint {
            key: "node-role".into(),
            value: Some("x".into()),
            effect: "NoSchedule".into(),
            time_added: None,
        }]);
        n
    }

    #[test]
    fn num_feasible_table() {
        for (all, want) in [
            (0, 0),
            (50, 50),
            (99, 99),
            (100, 100),
            (200, 100),
            (1000, 420),
            (5000, 500),
            (10000, 500),
        ] {
            assert_eq!(num_feasible_nodes_to_find(all), want, "{all}");
        }
    }

    #[test]
    fn fit_error_reads_like_upstream() {
        let mut cache = Cache::new();
        cache.upsert_node(make_node("small", 1000, 8, &[]));
        cache.upsert_node(tainted("t1"));
        cache.upsert_node(tainted("t2"));
        let pod = make_pod("p", 2000, 10, None);
        let vols = VolumeInfo::default();
        let mut st = SchedulerState::default();
        let mut err = schedule(&pod, &cache, &vols, &mut st).unwrap_err();
        assert_eq!(
            err.to_string(),
            "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had untolerated taint {node-role: x}."
        );
        let msg = preempt(&pod, &cache, &vols, &err, &[], &mut st).unwrap_err();
        err.post_filter_msg = Some(msg);
        assert_eq!(
            err.to_string(),
            "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had untolerated taint {node-role: x}. \
             preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
        );
        // resolvable but nothing to evict
        let pod = make_pod("p", 900, 10, None);
        cache.upsert_pod(make_pod("x", 500, 10, Some("small")));
        let mut err = schedule(&pod, &cache, &vols, &mut st).unwrap_err();
        err.post_filter_msg = Some(preempt(&pod, &cache, &vols, &err, &[], &mut st).unwrap_err());
        assert_eq!(
            err.to_string(),
            "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had untolerated taint {node-role: x}. \
             preemption: 0/3 nodes are available: 1 No preemption victims found for incoming pod, \
             2 Preemption is not helpful for scheduling."
        );
    }

    #[test]
    fn prefilter_and_empty_cluster_messages() {
        let mut cache = Cache::new();
        let vols = VolumeInfo {
            missing_claim: Some("data".into()),
            ..Default::default()
        };
        let pod = make_pod("p", 1, 1, None);
        let mut st = SchedulerState::default();
        let err = schedule(&pod, &cache, &vols, &mut st).unwrap_err();
        assert_eq!(err.to_string(), "no nodes available to schedule pods");
        cache.upsert_node(make_node("n1", 1000, 1, &[]));
        let mut err = schedule(&pod, &cache, &vols, &mut st).unwrap_err();
        err.post_filter_msg = Some(preempt(&pod, &cache, &vols, &err, &[], &mut st).unwrap_err());
        assert_eq!(
            err.to_string(),
            "0/1 nodes are available: persistentvolumeclaim \"data\" not found. \
             preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling."
        );
    }

    #[test]
    fn nominated_node_is_taken_first() {
        let mut cache = Cache::new();
        for i in 0..5 {
            cache.upsert_node(make_node(&format!("n{i}"), 4000, 8, &[]));
        }
        cache.upsert_pod(make_pod("busy", 3000, 10, Some("n3")));
        let mut pod = make_pod("p", 100, 10, None);
        pod.status = Some(PodStatus {
            nominated_node_name: Some("n3".into()),
            ..Default::default()
        });
        let mut st = SchedulerState::default();
        assert_eq!(
            schedule(&pod, &cache, &VolumeInfo::default(), &mut st).unwrap(),
            "n3"
        );
    }

    #[test]
    fn required_anti_affinity_spreads_replicas_one_per_node() {
        let mut cache = Cache::new();
        for i in 0..3 {
            cache.upsert_node(make_node(&format!("n{i}"), 4000, 8, &[]));
        }
        let vols = VolumeInfo::default();
        let mut st = SchedulerState::new(7);
        let replica = |i: usize| {
            let mut p = make_pod(&format!("r{i}"), 10, 10, None);
            p.metadata.labels = Some([("app".to_string(), "db".to_string())].into());
            p.spec.as_mut().unwrap().affinity = Some(Affinity {
                pod_anti_affinity: Some(PodAntiAffinity {
                    required_during_scheduling_ignored_during_execution: Some(vec![
                        PodAffinityTerm {
                            label_selector: Some(LabelSelector {
                                match_labels: Some([("app".to_string(), "db".to_string())].into()),
                                ..Default::default()
                            }),
                            topology_key: "kubernetes.io/hostname".into(),
                            ..Default::default()
                        },
                    ]),
                    ..Default::default()
                }),
                ..Default::default()
            });
            p
        };
        let mut used = Vec::new();
        for i in 0..3 {
            let p = replica(i);
            let node = schedule(&p, &cache, &vols, &mut st).unwrap();
            cache.assume(&p, &node);
            used.push(node);
        }
        used.sort();
        assert_eq!(used, vec!["n0", "n1", "n2"]);
        let err = schedule(&replica(3), &cache, &vols, &mut st).unwrap_err();
        assert_eq!(
            err.to_string(),
            "0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules."
        );
    }

    #[test]
    fn pinned_daemon_pod_reports_like_upstream() {
        use k8s_openapi::api::core::v1::{
            NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm,
        };
        let mut cache = Cache::new();
        for i in 0..3 {
            cache.upsert_node(make_node(&format!("n{i}"), 1000, 8, &[]));
        }
        cache.upsert_pod(make_pod("big", 1000, 10, Some("n1")));
        let mut pod = make_pod("ds", 100, 10, None);
        pod.spec.as_mut().unwrap().affinity = Some(Affinity {
            node_affinity: Some(NodeAffinity {
                required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                    node_selector_terms: vec![NodeSelectorTerm {
                        match_expressions: None,
                        match_fields: Some(vec![NodeSelectorRequirement {
                            key: "metadata.name".into(),
                            operator: "In".into(),
                            values: Some(vec!["n1".into()]),
                        }]),
                    }],
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
        let mut st = SchedulerState::default();
        let err = schedule(&pod, &cache, &VolumeInfo::default(), &mut st).unwrap_err();
        assert_eq!(
            err.to_string(),
            "0/3 nodes are available: 1 Insufficient cpu, \
             2 node(s) didn't satisfy plugin(s) [NodeAffinity]."
        );
        cache.remove_pod(&make_pod("big", 0, 0, None));
        assert_eq!(
            schedule(&pod, &cache, &VolumeInfo::default(), &mut st).unwrap(),
            "n1"
        );
    }

    #[test]
    fn select_host_breaks_ties_among_best_only() {
        let mut st = SchedulerState::new(1);
        let mut seen = [0; 4];
        for _ in 0..400 {
            seen[select_host(&[5, 9, 9, 1], &mut st)] += 1;
        }
        assert_eq!((seen[0], seen[3]), (0, 0));
        assert!(seen[1] > 100 && seen[2] > 100, "{seen:?}");
    }

    /// 2,000 pods over 1,000 nodes through the cache (assume after each).
    /// Run with `--nocapture` to see the time per decision.
    #[test]
    fn schedules_2000_pods_on_1000_nodes() {
        let mut cache = Cache::new();
        for i in 0..1000 {
            let zone = format!("zone-{}", i % 3);
            if i % 100 == 0 {
                cache.upsert_node(tainted(&format!("node-{i}")));
            } else {
                cache.upsert_node(make_node(
                    &format!("node-{i}"),
                    4000,
                    16,
                    &[("zone", &zone)],
                ));
            }
        }
        let pods: Vec<Pod> = (0..2000)
            .map(|i| make_pod(&format!("p{i}"), 100, 128, None))
            .collect();
        let vols = VolumeInfo::default();
        let mut st = SchedulerState::new(42);
        let start = std::time::Instant::now();
        for p in &pods {
            let node = schedule(p, &cache, &vols, &mut st).expect("fits");
            cache.assume(p, &node);
        }
        let elapsed = start.elapsed();
        println!(
            "scheduled 2000 pods on 1000 nodes in {elapsed:?} ({:?} per decision)",
            elapsed / 2000
        );
        let mut per_node: HashMap<&str, usize> = HashMap::new();
        for ni in cache.nodes() {
            per_node.insert(&ni.name, ni.pods.len());
            assert!(ni.requested.milli_cpu <= ni.allocatable.milli_cpu);
        }
        for i in (0..1000).step_by(100) {
            assert_eq!(
                per_node[format!("node-{i}").as_str()],
                0,
                "tainted node used"
            );
        }
        let counts: Vec<usize> = (0..1000)
            .filter(|i| i % 100 != 0)
            .map(|i| per_node[format!("node-{i}").as_str()])
            .collect();
        let (min, max) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
        assert_eq!(counts.iter().sum::<usize>(), 2000);
        assert!(*max - *min <= 2, "spread min {min} max {max}");
    }
}
