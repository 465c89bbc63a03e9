//! Upstream DefaultPreemption (PostFilter): when a pod fits no node, find a
//! node where evicting lower-priority pods makes it fit, choosing the victim
//! set like upstream (remove all lower-priority pods, then reprieve the most
//! important ones — PDB-protected first — while the pod still fits) and the
//! node by: fewest PDB violations, lowest highest-victim priority, lowest
//! priority sum, fewest victims, latest start of the top victims.
//!
//! Owns: eligibility (`preemptionPolicy: Never`), candidate search over the
//! nodes a `FitError` marked resolvable (sampled like upstream: at least 100
//! or 10% of them, from a random offset), victim selection, and the
//! `preemption: …` message when nothing works.
//!
//! Invariants: victims always have strictly lower priority than the pod;
//! the cache is never modified (evictions are simulated on copies).
//!
//! Must not: do I/O, delete pods, or read clocks. The shell deletes the
//! victims, sets the pod's `status.nominatedNodeName` and requeues it.

use crate::controllers::podutil::selector_matches;
use crate::scheduler::cache::{Cache, NodeInfo, PodInfo};
use crate::scheduler::framework::{FitError, SchedulerState};
use crate::scheduler::plugins::{CycleState, Reason, VolumeInfo};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::sync::Arc;

const MIN_CANDIDATE_NODES_PERCENTAGE: usize = 10;
const MIN_CANDIDATE_NODES_ABSOLUTE: usize = 100;

/// A successful preemption: evict `victims` from `node`, then retry the pod
/// there (it becomes the pod's nominated node).
#[derive(Debug, Clone)]
pub struct Preemption {
    pub node: String,
    /// Most important first.
    pub victims: Vec<Arc<Pod>>,
    pub pdb_violations: usize,
}

/// The event message upstream puts on each victim (reason `Preempted`).
pub fn preempted_event_message(preemptor: &Pod, node: &str) -> String {
    format!(
        "Preempted by pod {} on node {node}",
        preemptor.metadata.uid.as_deref().unwrap_or("")
    )
}

/// Tries preemption for a pod that just failed with `fit_error`. `Err` is
/// the post-filter message for `fit_error.post_filter_msg`.
pub fn preempt(
    pod: &Pod,
    cache: &Cache,
    volumes: &VolumeInfo,
    fit_error: &FitError,
    pdbs: &[PodDisruptionBudget],
    state: &mut SchedulerState,
) -> Result<Preemption, String> {
    if pod
        .spec
        .as_ref()
        .and_then(|s| s.preemption_policy.as_deref())
        == Some("Never")
    {
        return Err("preemption: not eligible due to preemptionPolicy=Never".into());
    }
    let all = fit_error.num_all_nodes;
    let fail = |statuses: BTreeMap<Reason, usize>| {
        format!(
            "preemption: 0/{all} nodes are available: {}",
            FitError::histogram(&statuses)
        )
    };
    let mut statuses: BTreeMap<Reason, usize> = BTreeMap::new();
    let not_helpful = all.saturating_sub(fit_error.resolvable_nodes.len());
    if not_helpful > 0 {
        statuses.insert(Reason::PreemptionNotHelpful, not_helpful);
    }
    let cycle = match CycleState::new(pod, cache, volumes) {
        Ok(c) if !fit_error.resolvable_nodes.is_empty() => c,
        _ => {
            return Err(fail([(Reason::PreemptionNotHelpful, all.max(1))].into()));
        }
    };
    let potential = &fit_error.resolvable_nodes;
    let want = num_candidates(potential.len());
    let offset = state.below(potential.len());
    let mut candidates: Vec<Candidate<'_>> = Vec::new();
    for i in 0..potential.len() {
        let non_violating = candidates.iter().filter(|c| c.pdb_violations == 0).count();
        if non_violating > 0 && candidates.len() >= want {
            break;
        }
        let Some(ni) = cache.node(&potential[(offset + i) % potential.len()]) else {
            continue;
        };
        match select_victims(&cycle, ni, pdbs) {
            Ok(c) => candidates.push(c),
            Err(reasons) => {
                for r in reasons {
                    *statuses.entry(r).or_insert(0) += 1;
                }
            }
        }
    }
    let best = candidates.into_iter().reduce(|a, b| {
        if compare_candidates(&b, &a) == Ordering::Less {
            b
        } else {
            a
        }
    });
    match best {
        Some(c) => Ok(Preemption {
            node: c.node.name.clone(),
            victims: c.victims.iter().map(|v| v.pod.clone()).collect(),
            pdb_violations: c.pdb_violations,
        }),
        None => Err(fail(statuses)),
    }
}

/// Upstream `calculateNumCandidates`.
fn num_candidates(num_nodes: usize) -> usize {
    (num_nodes * MIN_CANDIDATE_NODES_PERCENTAGE / 100)
        .max(MIN_CANDIDATE_NODES_ABSOLUTE)
        .min(num_nodes)
}

struct Candidate<'c> {
    node: &'c NodeInfo,
    victims: Vec<&'c PodInfo>,
    pdb_violations: usize,
}

/// Upstream `MoreImportantPod`: higher priority, then earlier start.
fn more_important(a: &PodInfo, b: &PodInfo) -> Ordering {
    b.priority
        .cmp(&a.priority)
        .then_with(|| start_time(a).cmp(&start_time(b)))
}

fn start_time(p: &PodInfo) -> Option<i64> {
    p.pod
        .status
        .as_ref()
        .and_then(|s| s.start_time.as_ref())
        .map(|t| t.0.as_second())
}

/// The victims needed on one node, or the reasons it cannot work.
fn select_victims<'c>(
    cycle: &CycleState<'c>,
    ni: &'c NodeInfo,
    pdbs: &[PodDisruptionBudget],
) -> Result<Candidate<'c>, Vec<Reason>> {
    let mut potential: Vec<&'c PodInfo> = ni
        .pods
        .iter()
        .filter(|p| p.priority < cycle.priority)
        .collect();
    if potential.is_empty() {
        return Err(vec![Reason::NoPreemptionVictims]);
    }
    let mut sim = ni.clone();
    let mut cs = cycle.clone();
    for p in &potential {
        sim.remove_pod(&p.key);
        cs.update_pod(p, ni, -1);
    }
    cs.filter(&sim)?;
    potential.sort_by(|a, b| more_important(a, b));
    let violating_flags = pdb_violations(&potential, pdbs);
    let (violating, non_violating): (Vec<_>, Vec<_>) = potential
        .into_iter()
        .zip(violating_flags)
        .partition(|(_, v)| *v);
    let mut victims: Vec<&'c PodInfo> = Vec::new();
    let mut pdb_violations = 0;
    for (p, was_violating) in violating.into_iter().chain(non_violating) {
        sim.add_pod(p.clone());
        cs.update_pod(p, ni, 1);
        if cs.filter(&sim).is_err() {
            sim.remove_pod(&p.key);
            cs.update_pod(p, ni, -1);
            victims.push(p);
            pdb_violations += usize::from(was_violating);
        }
    }
    victims.sort_by(|a, b| more_important(a, b));
    Ok(Candidate {
        node: ni,
        victims,
        pdb_violations,
    })
}

/// Upstream `filterPodsWithPDBViolation`: per pod (in order), whether
/// evicting it would exceed a matching PDB's allowed disruptions.
fn pdb_violations(pods: &[&PodInfo], pdbs: &[PodDisruptionBudget]) -> Vec<bool> {
    let mut allowed: Vec<i64> = pdbs
        .iter()
        .map(|p| {
            p.status
                .as_ref()
                .map_or(0, |s| i64::from(s.disruptions_allowed))
        })
        .collect();
    pods.iter()
        .map(|p| {
            let labels = p.labels();
            if labels.is_empty() {
                return false;
            }
            let mut violated = false;
            for (i, pdb) in pdbs.iter().enumerate() {
                if pdb.metadata.namespace.as_deref().unwrap_or("") != p.namespace() {
                    continue;
                }
                let Some(sel) = pdb.spec.as_ref().and_then(|s| s.selector.as_ref()) else {
                    continue;
                };
                let empty = sel.match_labels.as_ref().is_none_or(|m| m.is_empty())
                    && sel.match_expressions.as_ref().is_none_or(|m| m.is_empty());
                if empty || !selector_matches(sel, labels) {
                    continue;
                }
                let disrupted = pdb
                    .status
                    .as_ref()
                    .and_then(|s| s.disrupted_pods.as_ref())
                    .is_some_and(|d| d.contains_key(p.pod.metadata.name.as_deref().unwrap_or("")));
                if disrupted {
                    continue;
                }
                allowed[i] -= 1;
                if allowed[i] < 0 {
                    violated = true;
                }
            }
            violated
        })
        .collect()
}

/// Upstream `pickOneNodeForPreemption` ordering (Less = better).
fn compare_candidates(a: &Candidate<'_>, b: &Candidate<'_>) -> Ordering {
    let top = |c: &Candidate<'_>| {
        c.victims
            .first()
            .map_or(i64::MIN, |v| i64::from(v.priority))
    };
    let sum = |c: &Candidate<'_>| {
        c.victims
            .iter()
            .map(|v| i64::from(v.priority) + i64::from(i32::MAX) + 1)
            .sum::<i64>()
    };
    // Earliest start among the highest-priority victims; later is better.
    let earliest = |c: &Candidate<'_>| {
        let t = top(c);
        c.victims
            .iter()
            .filter(|v| i64::from(v.priority) == t)
            .filter_map(|v| start_time(v))
            .min()
    };
    a.pdb_violations
        .cmp(&b.pdb_violations)
        .then_with(|| top(a).cmp(&top(b)))
        .then_with(|| sum(a).cmp(&sum(b)))
        .then_with(|| a.victims.len().cmp(&b.victims.len()))
        .then_with(|| earliest(b).cmp(&earliest(a)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::cache::tests::{make_node, make_pod};
    use crate::scheduler::framework::schedule;
    use k8s_openapi::api::policy::v1::{PodDisruptionBudgetSpec, PodDisruptionBudgetStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

    fn prio(mut p: Pod, priority: i32, app: &str) -> Pod {
        p.spec.as_mut().unwrap().priority = Some(priority);
        p.metadata.labels = Some([("app".to_string(), app.to_string())].into());
        p
    }

    fn pdb(app: &str, allowed: i32) -> PodDisruptionBudget {
        PodDisruptionBudget {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                namespace: Some("default".into()),
                name: Some(app.into()),
                ..Default::default()
            },
            spec: Some(PodDisruptionBudgetSpec {
                selector: Some(LabelSelector {
                    match_labels: Some([("app".to_string(), app.to_string())].into()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            status: Some(PodDisruptionBudgetStatus {
                disruptions_allowed: allowed,
                ..Default::default()
            }),
        }
    }

    fn run(cache: &Cache, pod: &Pod, pdbs: &[PodDisruptionBudget]) -> Result<Preemption, String> {
        let vols = VolumeInfo::default();
        let mut st = SchedulerState::new(3);
        let err = schedule(pod, cache, &vols, &mut st).expect_err("must not fit");
        preempt(pod, cache, &vols, &err, pdbs, &mut st)
    }

    fn names(p: &Preemption) -> Vec<&str> {
        p.victims
            .iter()
            .map(|v| v.metadata.name.as_deref().unwrap_or(""))
            .collect()
    }

    #[test]
    fn evicts_fewest_lowest_priority_pods() {
        let mut cache = Cache::new();
        cache.upsert_node(make_node("n1", 1000, 8, &[]));
        cache.upsert_node(make_node("n2", 1000, 8, &[]));
        // n1: two low pods (need both); n2: one mid pod and one low pod
        cache.upsert_pod(prio(make_pod("a", 500, 10, Some("n1")), 1, "a"));
        cache.upsert_pod(prio(make_pod("b", 500, 10, Some("n1")), 1, "b"));
        cache.upsert_pod(prio(make_pod("c", 600, 10, Some("n2")), 5, "c"));
        cache.upsert_pod(prio(make_pod("d", 400, 10, Some("n2")), 1, "d"));
        let pod = prio(make_pod("p", 900, 10, None), 10, "p");
        let got = run(&cache, &pod, &[]).unwrap();
        // n2 needs c (prio 5) and d; n1 needs a and b (max prio 1): n1 wins
        assert_eq!(got.node, "n1");
        assert_eq!(names(&got).len(), 2);
        // only the needed victims: a 500m pod needs just one of n1's pods
        let small = prio(make_pod("s", 500, 10, None), 10, "s");
        let got = run(&cache, &small, &[]).unwrap();
        assert_eq!((got.node.as_str(), got.victims.len()), ("n1", 1));
    }

    #[test]
    fn pdb_violations_are_a_tiebreak() {
        let mut cache = Cache::new();
        cache.upsert_node(make_node("n1", 1000, 8, &[]));
        cache.upsert_node(make_node("n2", 1000, 8, &[]));
        cache.upsert_pod(prio(make_pod("a", 1000, 10, Some("n1")), 1, "guarded"));
        cache.upsert_pod(prio(make_pod("b", 1000, 10, Some("n2")), 1, "free"));
        let pod = prio(make_pod("p", 500, 10, None), 10, "p");
        let got = run(&cache, &pod, &[pdb("guarded", 0)]).unwrap();
        assert_eq!((got.node.as_str(), got.pdb_violations), ("n2", 0));
        assert_eq!(names(&got), vec!["b"]);
    }

    #[test]
    fn never_policy_and_equal_priority() {
        let mut cache = Cache::new();
        cache.upsert_node(make_node("n1", 1000, 8, &[]));
        cache.upsert_pod(prio(make_pod("a", 1000, 10, Some("n1")), 10, "a"));
        let mut pod = prio(make_pod("p", 500, 10, None), 10, "p");
        assert_eq!(
            run(&cache, &pod, &[]).unwrap_err(),
            "preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod"
        );
        pod.spec.as_mut().unwrap().preemption_policy = Some("Never".into());
        pod.spec.as_mut().unwrap().priority = Some(100);
        assert_eq!(
            run(&cache, &pod, &[]).unwrap_err(),
            "preemption: not eligible due to preemptionPolicy=Never"
        );
    }

    #[test]
    fn victims_that_do_not_help_report_filter_reasons() {
        let mut cache = Cache::new();
        cache.upsert_node(make_node("n1", 1000, 8, &[]));
        cache.upsert_pod(prio(make_pod("hi", 800, 10, Some("n1")), 50, "hi"));
        cache.upsert_pod(prio(make_pod("lo", 100, 10, Some("n1")), 1, "lo"));
        let pod = prio(make_pod("p", 500, 10, None), 10, "p");
        assert_eq!(
            run(&cache, &pod, &[]).unwrap_err(),
            "preemption: 0/1 nodes are available: 1 Insufficient cpu"
        );
    }

    #[test]
    fn event_message() {
        let mut p = make_pod("p", 1, 1, None);
        p.metadata.uid = Some("u-1".into());
        assert_eq!(
            preempted_event_message(&p, "n1"),
            "Preempted by pod u-1 on node n1"
        );
    }
}
