//! Upstream kube-scheduler's default filter and score plugins, evaluated for
//! one pending pod against `NodeInfo`s from the cache.
//!
//! Owns: the per-decision `CycleState` (the pod's precomputed requests,
//! ports, tolerations, inter-pod affinity and topology-spread counts — the
//! upstream PreFilter step), `CycleState::filter` (NodeUnschedulable,
//! NodeName, TaintToleration, NodeAffinity, NodePorts, NodeResourcesFit,
//! volume node affinity, PodTopologySpread, InterPodAffinity, in upstream
//! order, stopping at the first failing plugin) with upstream's reason
//! strings, and `CycleState::score` (TaintToleration ×3, NodeAffinity ×2,
//! NodeResourcesFit LeastAllocated ×1, PodTopologySpread ×2, InterPodAffinity
//! ×2, BalancedAllocation ×1; each normalised to 0–100 like upstream).
//!
//! Invariants: pods without affinity/spread terms cost no affinity/spread
//! work (the states are `None`); counts are kept per (topology key, value)
//! and can be adjusted with `add_pod`/`remove_pod` so preemption can simulate
//! evictions without recomputing.
//!
//! Must not: do I/O, read clocks, check `schedulerName` (the shell does) or
//! panic on odd objects.

use crate::controllers::podutil::selector_matches;
use crate::scheduler::cache::{Cache, HostPort, NodeInfo, PodInfo, pod_host_ports};
use crate::scheduler::predicates::{
    EFFECT_NO_EXECUTE, EFFECT_NO_SCHEDULE, EFFECT_PREFER_NO_SCHEDULE, Resources,
    TAINT_UNSCHEDULABLE, find_untolerated_taint, node_selector_matches, node_selector_matches_node,
    node_selector_term_matches, pod_requests, pod_requests_non_zero, taint_tolerated,
};
use k8s_openapi::api::core::v1::{
    NodeSelector, Pod, PodAffinityTerm, PodSpec, Taint, Toleration, TopologySpreadConstraint,
    WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use std::collections::{BTreeMap, HashMap};
use std::fmt;

pub const LABEL_HOSTNAME: &str = "kubernetes.io/hostname";
/// Upstream's maximum node score.
pub const MAX_NODE_SCORE: i64 = 100;

const WEIGHT_TAINT_TOLERATION: i64 = 3;
const WEIGHT_NODE_AFFINITY: i64 = 2;
const WEIGHT_LEAST_ALLOCATED: i64 = 1;
const WEIGHT_TOPOLOGY_SPREAD: i64 = 2;
const WEIGHT_INTER_POD_AFFINITY: i64 = 2;
const WEIGHT_BALANCED_ALLOCATION: i64 = 1;
/// Weight given to existing pods' *required* affinity terms when scoring.
const HARD_POD_AFFINITY_WEIGHT: i64 = 1;

/// Why a node was rejected; `Display` gives upstream's text.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    NodeUnschedulable,
    NodeName,
    UntoleratedTaint {
        key: String,
        value: String,
    },
    NodeAffinity,
    /// Excluded before filtering by a `matchFields metadata.name` pin.
    NodeAffinityPreFilter,
    NodePorts,
    TooManyPods,
    /// `Insufficient <resource>`; `unresolvable` when the request exceeds
    /// the node's whole allocatable (evicting cannot help).
    Insufficient {
        resource: String,
        unresolvable: bool,
    },
    VolumeNodeAffinityConflict,
    TopologySpread,
    TopologySpreadMissingLabel,
    ExistingAntiAffinity,
    Affinity,
    AntiAffinity,
    /// Preemption outcome for a node where evicting cannot help.
    PreemptionNotHelpful,
    /// Preemption outcome for a node where no victim set works.
    NoPreemptionVictims,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::NodeUnschedulable => f.write_str("node(s) were unschedulable"),
            Reason::NodeName => f.write_str("node(s) didn't match the requested node name"),
            Reason::UntoleratedTaint { key, value } => {
                write!(f, "node(s) had untolerated taint {{{key}: {value}}}")
            }
            Reason::NodeAffinity => {
                f.write_str("node(s) didn't match Pod's node affinity/selector")
            }
            Reason::NodeAffinityPreFilter => {
                f.write_str("node(s) didn't satisfy plugin(s) [NodeAffinity]")
            }
            Reason::NodePorts => {
                f.write_str("node(s) didn't have free ports for the requested pod ports")
            }
            Reason::TooManyPods => f.write_str("Too many pods"),
            Reason::Insufficient { resource, .. } => write!(f, "Insufficient {resource}"),
            Reason::VolumeNodeAffinityConflict => {
                f.write_str("node(s) had volume node affinity conflict")
            }
            Reason::TopologySpread => {
                f.write_str("node(s) didn't match pod topology spread constraints")
            }
            Reason::TopologySpreadMissingLabel => f.write_str(
                "node(s) didn't match pod topology spread constraints (missing required label)",
            ),
            Reason::ExistingAntiAffinity => {
                f.write_str("node(s) didn't satisfy existing pods anti-affinity rules")
            }
            Reason::Affinity => f.write_str("node(s) didn't match pod affinity rules"),
            Reason::AntiAffinity => f.write_str("node(s) didn't match pod anti-affinity rules"),
            Reason::PreemptionNotHelpful => f.write_str("Preemption is not helpful for scheduling"),
            Reason::NoPreemptionVictims => {
                f.write_str("No preemption victims found for incoming pod")
            }
        }
    }
}

impl Reason {
    /// Whether evicting pods from the node could remove this reason
    /// (upstream `Unschedulable` vs `UnschedulableAndUnresolvable`).
    pub fn resolvable(&self) -> bool {
        match self {
            Reason::NodePorts
            | Reason::TooManyPods
            | Reason::TopologySpread
            | Reason::ExistingAntiAffinity
            | Reason::AntiAffinity => true,
            Reason::Insufficient { unresolvable, .. } => !unresolvable,
            _ => false,
        }
    }
}

/// What the shell knows about the pod's volumes (from PVCs and PVs).
#[derive(Debug, Clone, Default)]
pub struct VolumeInfo {
    /// `spec.nodeAffinity.required` of every PV bound to the pod's PVCs.
    pub pv_node_affinity: Vec<NodeSelector>,
    /// Name of a PVC the pod uses that does not exist.
    pub missing_claim: Option<String>,
    /// A PVC the pod uses is unbound and its class binds Immediately.
    pub unbound_immediate: bool,
}

impl VolumeInfo {
    /// The whole-cycle (PreFilter) failure message, if any.
    pub fn pre_filter_error(&self) -> Option<String> {
        if let Some(name) = &self.missing_claim {
            return Some(format!("persistentvolumeclaim \"{name}\" not found"));
        }
        self.unbound_immediate
            .then(|| "pod has unbound immediate PersistentVolumeClaims".to_string())
    }
}

/// Counts per topology key, then per topology value.
#[derive(Debug, Clone, Default)]
pub struct PairCounts<'a>(HashMap<&'a str, HashMap<&'a str, i64>>);

impl<'a> PairCounts<'a> {
    pub fn add(&mut self, key: &'a str, value: &'a str, delta: i64) {
        *self.0.entry(key).or_default().entry(value).or_insert(0) += delta;
    }

    pub fn get(&self, key: &str, value: &str) -> i64 {
        self.0
            .get(key)
            .and_then(|m| m.get(value))
            .copied()
            .unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.0.values().all(|m| m.values().all(|c| *c == 0))
    }

    /// Whether any (key, node's value) pair has a positive count.
    fn hits_node(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().any(|(k, m)| {
            labels
                .get(*k)
                .is_some_and(|v| m.get(v.as_str()).is_some_and(|c| *c > 0))
        })
    }

    /// Sum of counts for the node's (key, value) pairs.
    fn sum_for_node(&self, labels: &BTreeMap<String, String>) -> i64 {
        self.0
            .iter()
            .filter_map(|(k, m)| labels.get(*k).and_then(|v| m.get(v.as_str())))
            .sum()
    }
}

/// A pod (anti-)affinity term resolved against the namespace of the pod that
/// declares it.
#[derive(Debug, Clone, Copy)]
pub struct Term<'a> {
    selector: Option<&'a LabelSelector>,
    namespaces: &'a [String],
    own_namespace: Option<&'a str>,
    namespace_selector: Option<&'a LabelSelector>,
    pub topology_key: &'a str,
    pub weight: i64,
}

impl<'a> Term<'a> {
    fn new(t: &'a PodAffinityTerm, declaring_ns: &'a str, weight: i64) -> Term<'a> {
        let namespaces = t.namespaces.as_deref().unwrap_or(&[]);
        let own = (namespaces.is_empty() && t.namespace_selector.is_none()).then_some(declaring_ns);
        Term {
            selector: t.label_selector.as_ref(),
            namespaces,
            own_namespace: own,
            namespace_selector: t.namespace_selector.as_ref(),
            topology_key: &t.topology_key,
            weight,
        }
    }

    /// Whether a pod in `ns` with `labels` matches this term.
    pub fn matches(
        &self,
        ns: &str,
        labels: &BTreeMap<String, String>,
        ns_labels: &HashMap<String, BTreeMap<String, String>>,
    ) -> bool {
        let Some(sel) = self.selector else {
            return false;
        };
        let ns_ok = self.own_namespace == Some(ns)
            || self.namespaces.iter().any(|n| n == ns)
            || self.namespace_selector.is_some_and(|s| {
                static EMPTY: BTreeMap<String, String> = BTreeMap::new();
                selector_matches(s, ns_labels.get(ns).unwrap_or(&EMPTY))
            });
        ns_ok && selector_matches(sel, labels)
    }
}

fn required_terms<'a>(
    terms: Option<&'a Vec<PodAffinityTerm>>,
    ns: &'a str,
) -> impl Iterator<Item = Term<'a>> {
    terms
        .into_iter()
        .flatten()
        .map(move |t| Term::new(t, ns, 1))
}

fn weighted_terms<'a>(
    terms: Option<&'a Vec<WeightedPodAffinityTerm>>,
    ns: &'a str,
) -> impl Iterator<Item = Term<'a>> {
    terms
        .into_iter()
        .flatten()
        .map(move |t| Term::new(&t.pod_affinity_term, ns, i64::from(t.weight)))
}

/// The four term lists of a pod's spec.
#[derive(Debug, Clone, Default)]
pub struct PodTerms<'a> {
    pub required_affinity: Vec<Term<'a>>,
    pub required_anti: Vec<Term<'a>>,
    pub preferred_affinity: Vec<Term<'a>>,
    pub preferred_anti: Vec<Term<'a>>,
}

impl<'a> PodTerms<'a> {
    pub fn of(pod: &'a Pod) -> PodTerms<'a> {
        let ns = pod.metadata.namespace.as_deref().unwrap_or("");
        let aff = pod.spec.as_ref().and_then(|s| s.affinity.as_ref());
        let pa = aff.and_then(|a| a.pod_affinity.as_ref());
        let paa = aff.and_then(|a| a.pod_anti_affinity.as_ref());
        PodTerms {
            required_affinity: required_terms(
                pa.and_then(|a| {
                    a.required_during_scheduling_ignored_during_execution
                        .as_ref()
                }),
                ns,
            )
            .collect(),
            required_anti: required_terms(
                paa.and_then(|a| {
                    a.required_during_scheduling_ignored_during_execution
                        .as_ref()
                }),
                ns,
            )
            .collect(),
            preferred_affinity: weighted_terms(
                pa.and_then(|a| {
                    a.preferred_during_scheduling_ignored_during_execution
                        .as_ref()
                }),
                ns,
            )
            .collect(),
            preferred_anti: weighted_terms(
                paa.and_then(|a| {
                    a.preferred_during_scheduling_ignored_during_execution
                        .as_ref()
                }),
                ns,
            )
            .collect(),
        }
    }
}

/// InterPodAffinity PreFilter state.
#[derive(Debug, Clone, Default)]
pub struct AffinityState<'a> {
    affinity: Vec<Term<'a>>,
    anti: Vec<Term<'a>>,
    affinity_counts: PairCounts<'a>,
    anti_counts: PairCounts<'a>,
    existing_anti_counts: PairCounts<'a>,
    /// The incoming pod matches all its own affinity terms.
    self_match_all: bool,
}

/// One PodTopologySpread constraint, resolved for the incoming pod.
#[derive(Debug, Clone)]
pub struct Constraint<'a> {
    pub topology_key: &'a str,
    pub max_skew: i64,
    pub min_domains: i64,
    selector: Option<&'a LabelSelector>,
    /// matchLabelKeys turned into `key == value` requirements.
    extra: Vec<(&'a str, &'a str)>,
    honor_affinity: bool,
    honor_taints: bool,
}

impl<'a> Constraint<'a> {
    fn new(c: &'a TopologySpreadConstraint, pod_labels: &'a BTreeMap<String, String>) -> Self {
        let extra = c
            .match_label_keys
            .iter()
            .flatten()
            .filter_map(|k| pod_labels.get_key_value(k))
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        Constraint {
            topology_key: &c.topology_key,
            max_skew: i64::from(c.max_skew.max(1)),
            min_domains: i64::from(c.min_domains.unwrap_or(1).max(1)),
            selector: c.label_selector.as_ref(),
            extra,
            honor_affinity: c.node_affinity_policy.as_deref() != Some("Ignore"),
            honor_taints: c.node_taints_policy.as_deref() == Some("Honor"),
        }
    }

    /// Whether a pod's labels match the constraint's selector.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.selector.is_some_and(|s| selector_matches(s, labels))
            && self
                .extra
                .iter()
                .all(|(k, v)| labels.get(*k).is_some_and(|l| l == v))
    }

    /// Whether a node counts toward this constraint's domains.
    fn includes_node(&self, spec: &PodSpec, tolerations: &[Toleration], ni: &NodeInfo) -> bool {
        let Some(node) = &ni.node else {
            return false;
        };
        (!self.honor_affinity || node_selector_matches(spec, node))
            && (!self.honor_taints
                || find_untolerated_taint(
                    &ni.taints,
                    tolerations,
                    &[EFFECT_NO_SCHEDULE, EFFECT_NO_EXECUTE],
                )
                .is_none())
    }
}

/// PodTopologySpread PreFilter state (DoNotSchedule constraints).
#[derive(Debug, Clone, Default)]
pub struct SpreadState<'a> {
    constraints: Vec<Constraint<'a>>,
    counts: PairCounts<'a>,
    /// Per constraint: the smallest count over its domains.
    min_match: Vec<i64>,
    /// Per constraint: whether the incoming pod matches its own selector.
    self_match: Vec<i64>,
}

impl SpreadState<'_> {
    fn recompute_min(&mut self) {
        self.min_match = self
            .constraints
            .iter()
            .map(|c| {
                let domains = self.counts.0.get(c.topology_key);
                let n = domains.map_or(0, |m| m.len() as i64);
                if n < c.min_domains {
                    0
                } else {
                    domains.and_then(|m| m.values().min().copied()).unwrap_or(0)
                }
            })
            .collect();
    }
}

/// Everything about one pending pod that filters and scores need, computed
/// once per scheduling attempt (upstream PreFilter + CycleState).
#[derive(Debug, Clone)]
pub struct CycleState<'a> {
    pub pod: &'a Pod,
    pub spec: &'a PodSpec,
    pub namespace: &'a str,
    pub labels: &'a BTreeMap<String, String>,
    pub requests: Resources,
    pub non_zero_cpu: i64,
    pub non_zero_memory: i64,
    pub priority: i32,
    pub ports: Vec<HostPort>,
    pub tolerations: &'a [Toleration],
    pub volumes: &'a VolumeInfo,
    pub terms: PodTerms<'a>,
    pub affinity: Option<AffinityState<'a>>,
    pub spread: Option<SpreadState<'a>>,
    /// Node names allowed by `matchFields metadata.name In` (DaemonSet
    /// pods), so only those are evaluated.
    pub node_names: Option<Vec<&'a str>>,
    ns_labels: &'a HashMap<String, BTreeMap<String, String>>,
}

fn empty_spec() -> &'static PodSpec {
    static SPEC: std::sync::OnceLock<PodSpec> = std::sync::OnceLock::new();
    SPEC.get_or_init(PodSpec::default)
}

fn empty_labels() -> &'static BTreeMap<String, String> {
    static EMPTY: BTreeMap<String, String> = BTreeMap::new();
    &EMPTY
}

/// Node names a required node affinity restricts the pod to, when every
/// term pins `metadata.name` with `In`.
fn pinned_node_names(spec: &PodSpec) -> Option<Vec<&str>> {
    let ns = crate::scheduler::predicates::required_node_selector(spec)?;
    let mut names = Vec::new();
    for term in &ns.node_selector_terms {
        let pinned = term
            .match_fields
            .iter()
            .flatten()
            .find(|r| r.key == "metadata.name" && r.operator == "In")?;
        names.extend(pinned.values.iter().flatten().map(String::as_str));
    }
    Some(names)
}

impl<'a> CycleState<'a> {
    /// Upstream PreFilter: precomputes the pod's data and the affinity and
    /// spread counts over the cache. `Err` is a whole-cycle failure message
    /// (missing/unbound claims) that applies to every node.
    pub fn new(pod: &'a Pod, cache: &'a Cache, volumes: &'a VolumeInfo) -> Result<Self, String> {
        if let Some(msg) = volumes.pre_filter_error() {
            return Err(msg);
        }
        let spec = pod.spec.as_ref().unwrap_or_else(|| empty_spec());
        let non_zero = pod_requests_non_zero(spec);
        let mut st = CycleState {
            pod,
            spec,
            namespace: pod.metadata.namespace.as_deref().unwrap_or(""),
            labels: pod
                .metadata
                .labels
                .as_ref()
                .unwrap_or_else(|| empty_labels()),
            requests: pod_requests(spec),
            non_zero_cpu: non_zero.milli_cpu,
            non_zero_memory: non_zero.memory,
            priority: spec.priority.unwrap_or(0),
            ports: pod_host_ports(pod),
            tolerations: spec.tolerations.as_deref().unwrap_or(&[]),
            volumes,
            terms: PodTerms::of(pod),
            affinity: None,
            spread: None,
            node_names: pinned_node_names(spec),
            ns_labels: cache.namespace_labels(),
        };
        st.affinity = st.build_affinity(cache);
        st.spread = st.build_spread(cache);
        Ok(st)
    }

    fn build_affinity(&self, cache: &'a Cache) -> Option<AffinityState<'a>> {
        let t = &self.terms;
        let own = !t.required_affinity.is_empty() || !t.required_anti.is_empty();
        if !own && cache.pods_with_required_anti_affinity() == 0 {
            return None;
        }
        let mut st = AffinityState {
            affinity: t.required_affinity.clone(),
            anti: t.required_anti.clone(),
            self_match_all: t
                .required_affinity
                .iter()
                .all(|term| term.matches(self.namespace, self.labels, self.ns_labels)),
            ..Default::default()
        };
        for ni in cache.nodes() {
            if ni.node.is_none() || (!own && ni.pods_with_required_anti_affinity == 0) {
                continue;
            }
            for pi in &ni.pods {
                if own || pi.has_required_anti_affinity {
                    self.update_affinity(&mut st, pi, ni, 1);
                }
            }
        }
        Some(st)
    }

    /// Adds (`delta` 1) or removes (-1) an existing pod's contribution to the
    /// inter-pod affinity counts.
    fn update_affinity(
        &self,
        st: &mut AffinityState<'a>,
        pi: &'a PodInfo,
        ni: &'a NodeInfo,
        delta: i64,
    ) {
        let labels = ni.labels();
        if pi.has_required_anti_affinity {
            let existing = PodTerms::of(&pi.pod);
            for term in &existing.required_anti {
                if let Some(v) = labels.get(term.topology_key)
                    && term.matches(self.namespace, self.labels, self.ns_labels)
                {
                    st.existing_anti_counts.add(term.topology_key, v, delta);
                }
            }
        }
        let (ns, plabels) = (pi.namespace(), pi.labels());
        if !st.affinity.is_empty()
            && st
                .affinity
                .iter()
                .all(|t| t.matches(ns, plabels, self.ns_labels))
        {
            for term in &st.affinity {
                if let Some(v) = labels.get(term.topology_key) {
                    st.affinity_counts.add(term.topology_key, v, delta);
                }
            }
        }
        for term in &st.anti {
            if let Some(v) = labels.get(term.topology_key)
                && term.matches(ns, plabels, self.ns_labels)
            {
                st.anti_counts.add(term.topology_key, v, delta);
            }
        }
    }

    fn build_spread(&self, cache: &'a Cache) -> Option<SpreadState<'a>> {
        let constraints: Vec<Constraint<'a>> = self
            .spec
            .topology_spread_constraints
            .iter()
            .flatten()
            .filter(|c| c.when_unsatisfiable == "DoNotSchedule")
            .map(|c| Constraint::new(c, self.labels))
            .collect();
        if constraints.is_empty() {
            return None;
        }
        let mut st = SpreadState {
            self_match: constraints
                .iter()
                .map(|c| i64::from(c.matches(self.labels)))
                .collect(),
            constraints,
            ..Default::default()
        };
        for ni in cache.nodes() {
            let labels = ni.labels();
            if !st
                .constraints
                .iter()
                .all(|c| labels.contains_key(c.topology_key))
            {
                continue;
            }
            for c in &st.constraints {
                if !c.includes_node(self.spec, self.tolerations, ni) {
                    continue;
                }
                let value = labels.get(c.topology_key).map(String::as_str).unwrap_or("");
                let n = ni
                    .pods
                    .iter()
                    .filter(|p| self.counts_for_spread(c, p))
                    .count() as i64;
                st.counts.add(c.topology_key, value, n);
            }
        }
        st.recompute_min();
        Some(st)
    }

    fn counts_for_spread(&self, c: &Constraint<'_>, p: &PodInfo) -> bool {
        !p.terminating() && p.namespace() == self.namespace && c.matches(p.labels())
    }

    /// Simulates adding (`delta` 1) or removing (-1) a pod on a node in the
    /// affinity and spread counts (upstream AddPod/RemovePod), for preemption.
    pub fn update_pod(&mut self, pi: &'a PodInfo, ni: &'a NodeInfo, delta: i64) {
        if let Some(mut st) = self.affinity.take() {
            self.update_affinity(&mut st, pi, ni, delta);
            self.affinity = Some(st);
        }
        if let Some(mut st) = self.spread.take() {
            let labels = ni.labels();
            for c in &st.constraints {
                if let Some(v) = labels.get(c.topology_key)
                    && st
                        .counts
                        .0
                        .get(c.topology_key)
                        .is_some_and(|m| m.contains_key(v.as_str()))
                    && self.counts_for_spread(c, pi)
                {
                    st.counts.add(c.topology_key, v, delta);
                }
            }
            st.recompute_min();
            self.spread = Some(st);
        }
    }

    /// Runs the filters on one node; `Err` holds the failing plugin's
    /// reasons. `ni` may be a modified copy (preemption) of a cache entry.
    pub fn filter(&self, ni: &NodeInfo) -> Result<(), Vec<Reason>> {
        let Some(node) = &ni.node else {
            return Err(vec![Reason::NodeAffinity]);
        };
        let one = |r: Reason| Err(vec![r]);
        if ni.unschedulable && !self.tolerates_unschedulable() {
            return one(Reason::NodeUnschedulable);
        }
        if let Some(want) = self.spec.node_name.as_deref().filter(|n| !n.is_empty())
            && want != ni.name
        {
            return one(Reason::NodeName);
        }
        if let Some(t) = find_untolerated_taint(
            &ni.taints,
            self.tolerations,
            &[EFFECT_NO_SCHEDULE, EFFECT_NO_EXECUTE],
        ) {
            return one(Reason::UntoleratedTaint {
                key: t.key.clone(),
                value: t.value.clone().unwrap_or_default(),
            });
        }
        if !node_selector_matches(self.spec, node) {
            return one(Reason::NodeAffinity);
        }
        if self.ports.iter().any(|p| ni.port_in_use(p)) {
            return one(Reason::NodePorts);
        }
        self.fits_resources(ni)?;
        if self
            .volumes
            .pv_node_affinity
            .iter()
            .any(|s| !node_selector_matches_node(s, node))
        {
            return one(Reason::VolumeNodeAffinityConflict);
        }
        if let Some(st) = &self.spread {
            spread_filter(st, ni.labels())?;
        }
        if let Some(st) = &self.affinity {
            affinity_filter(st, ni.labels())?;
        }
        Ok(())
    }

    fn tolerates_unschedulable(&self) -> bool {
        let taint = Taint {
            key: TAINT_UNSCHEDULABLE.into(),
            effect: EFFECT_NO_SCHEDULE.into(),
            ..Default::default()
        };
        taint_tolerated(self.tolerations, &taint)
    }

    /// NodeResourcesFit filter.
    pub fn fits_resources(&self, ni: &NodeInfo) -> Result<(), Vec<Reason>> {
        let mut reasons = Vec::new();
        if ni.pods.len() as i64 + 1 > ni.allowed_pods {
            reasons.push(Reason::TooManyPods);
        }
        let req = &self.requests;
        let (alloc, used) = (&ni.allocatable, &ni.requested);
        let mut check = |name: &str, want: i64, have: i64, used: i64| {
            if want > 0 && want > have - used {
                reasons.push(Reason::Insufficient {
                    resource: name.to_string(),
                    unresolvable: want > have,
                });
            }
        };
        check("cpu", req.milli_cpu, alloc.milli_cpu, used.milli_cpu);
        check("memory", req.memory, alloc.memory, used.memory);
        check(
            "ephemeral-storage",
            req.ephemeral_storage,
            alloc.ephemeral_storage,
            used.ephemeral_storage,
        );
        for (name, want) in &req.scalar {
            check(name, *want, alloc.get(name), used.get(name));
        }
        if reasons.is_empty() {
            Ok(())
        } else {
            Err(reasons)
        }
    }

    /// Scores feasible nodes: the weighted sum of every score plugin's
    /// normalised (0–100) score, one total per node in `nodes` order.
    pub fn score(&self, cache: &Cache, nodes: &[&NodeInfo]) -> Vec<i64> {
        let mut total: Vec<i64> = nodes
            .iter()
            .map(|ni| {
                WEIGHT_LEAST_ALLOCATED * self.least_allocated(ni)
                    + WEIGHT_BALANCED_ALLOCATION * self.balanced_allocation(ni)
            })
            .collect();
        let mut add = |scores: Vec<i64>, weight: i64| {
            for (t, s) in total.iter_mut().zip(scores) {
                *t += weight * s;
            }
        };
        add(self.taint_scores(nodes), WEIGHT_TAINT_TOLERATION);
        if let Some(s) = self.node_affinity_scores(nodes) {
            add(s, WEIGHT_NODE_AFFINITY);
        }
        if let Some(s) = self.spread_scores(cache, nodes) {
            add(s, WEIGHT_TOPOLOGY_SPREAD);
        }
        if let Some(s) = self.inter_pod_affinity_scores(cache, nodes) {
            add(s, WEIGHT_INTER_POD_AFFINITY);
        }
        total
    }

    /// NodeResourcesFit LeastAllocated over cpu and memory (weights 1, 1).
    pub fn least_allocated(&self, ni: &NodeInfo) -> i64 {
        let free = |alloc: i64, req: i64| {
            if alloc <= 0 || req > alloc {
                0
            } else {
                (alloc - req) * MAX_NODE_SCORE / alloc
            }
        };
        let cpu = free(
            ni.allocatable.milli_cpu,
            ni.non_zero_cpu + self.non_zero_cpu,
        );
        let mem = free(
            ni.allocatable.memory,
            ni.non_zero_memory + self.non_zero_memory,
        );
        (cpu + mem) / 2
    }

    /// NodeResourcesBalancedAllocation over cpu and memory.
    pub fn balanced_allocation(&self, ni: &NodeInfo) -> i64 {
        let frac = |alloc: i64, req: i64| {
            if alloc <= 0 {
                1.0
            } else {
                (req as f64 / alloc as f64).min(1.0)
            }
        };
        let c = frac(
            ni.allocatable.milli_cpu,
            ni.non_zero_cpu + self.non_zero_cpu,
        );
        let m = frac(
            ni.allocatable.memory,
            ni.non_zero_memory + self.non_zero_memory,
        );
        let std = (c - m).abs() / 2.0;
        ((1.0 - std) * MAX_NODE_SCORE as f64) as i64
    }

    /// TaintToleration: fewer intolerable PreferNoSchedule taints is better.
    fn taint_scores(&self, nodes: &[&NodeInfo]) -> Vec<i64> {
        let prefer: Vec<&Toleration> = self
            .tolerations
            .iter()
            .filter(|t| {
                t.effect
                    .as_deref()
                    .is_none_or(|e| e.is_empty() || e == EFFECT_PREFER_NO_SCHEDULE)
            })
            .collect();
        let raw: Vec<i64> = nodes
            .iter()
            .map(|ni| {
                ni.taints
                    .iter()
                    .filter(|t| t.effect == EFFECT_PREFER_NO_SCHEDULE)
                    .filter(|t| {
                        !prefer
                            .iter()
                            .any(|tol| crate::scheduler::predicates::tolerates(tol, t))
                    })
                    .count() as i64
            })
            .collect();
        normalize(raw, true)
    }

    /// NodeAffinity preferred terms (None when the pod has none).
    fn node_affinity_scores(&self, nodes: &[&NodeInfo]) -> Option<Vec<i64>> {
        let terms = self
            .spec
            .affinity
            .as_ref()?
            .node_affinity
            .as_ref()?
            .preferred_during_scheduling_ignored_during_execution
            .as_ref()
            .filter(|t| !t.is_empty())?;
        let raw = nodes
            .iter()
            .map(|ni| {
                let Some(node) = &ni.node else { return 0 };
                terms
                    .iter()
                    .filter(|t| t.weight != 0 && node_selector_term_matches(&t.preference, node))
                    .map(|t| i64::from(t.weight))
                    .sum()
            })
            .collect();
        Some(normalize(raw, false))
    }

    /// PodTopologySpread ScheduleAnyway constraints (None when none).
    fn spread_scores(&self, cache: &Cache, nodes: &[&NodeInfo]) -> Option<Vec<i64>> {
        let constraints: Vec<Constraint<'a>> = self
            .spec
            .topology_spread_constraints
            .iter()
            .flatten()
            .filter(|c| c.when_unsatisfiable == "ScheduleAnyway")
            .map(|c| Constraint::new(c, self.labels))
            .collect();
        if constraints.is_empty() {
            return None;
        }
        let has_all = |ni: &NodeInfo| {
            let l = ni.labels();
            constraints.iter().all(|c| l.contains_key(c.topology_key))
        };
        // Domains present among the feasible nodes, and their sizes.
        let mut counts: PairCounts<'_> = PairCounts::default();
        for ni in nodes.iter().filter(|n| has_all(n)) {
            for c in &constraints {
                if let Some(v) = ni.labels().get(c.topology_key) {
                    counts.add(c.topology_key, v, 0);
                }
            }
        }
        let scored = nodes.iter().filter(|n| has_all(n)).count();
        let weights: Vec<f64> = constraints
            .iter()
            .map(|c| {
                let size = if c.topology_key == LABEL_HOSTNAME {
                    scored
                } else {
                    counts.0.get(c.topology_key).map_or(0, |m| m.len())
                };
                ((size + 2) as f64).ln()
            })
            .collect();
        for ni in cache.nodes().iter().filter(|n| has_all(n)) {
            for c in constraints
                .iter()
                .filter(|c| c.topology_key != LABEL_HOSTNAME)
            {
                let v = ni
                    .labels()
                    .get(c.topology_key)
                    .map(String::as_str)
                    .unwrap_or("");
                if counts
                    .0
                    .get(c.topology_key)
                    .is_some_and(|m| m.contains_key(v))
                    && c.includes_node(self.spec, self.tolerations, ni)
                {
                    let n = ni
                        .pods
                        .iter()
                        .filter(|p| self.counts_for_spread(c, p))
                        .count();
                    let slot = counts.0.get_mut(c.topology_key).and_then(|m| m.get_mut(v));
                    if let Some(slot) = slot {
                        *slot += n as i64;
                    }
                }
            }
        }
        let raw: Vec<Option<i64>> = nodes
            .iter()
            .map(|ni| {
                if !has_all(ni) {
                    return None;
                }
                let l = ni.labels();
                let mut score = 0.0;
                for (c, w) in constraints.iter().zip(&weights) {
                    let cnt = if c.topology_key == LABEL_HOSTNAME {
                        ni.pods
                            .iter()
                            .filter(|p| self.counts_for_spread(c, p))
                            .count() as i64
                    } else {
                        counts.get(c.topology_key, l.get(c.topology_key).map_or("", |v| v))
                    };
                    score += cnt as f64 * w + (c.max_skew - 1) as f64;
                }
                Some(score.round() as i64)
            })
            .collect();
        let valid = raw.iter().flatten();
        let max = valid.clone().copied().max().unwrap_or(0);
        let min = valid.copied().min().unwrap_or(0);
        Some(
            raw.into_iter()
                .map(|s| match s {
                    None => 0,
                    Some(_) if max == 0 => MAX_NODE_SCORE,
                    Some(s) => MAX_NODE_SCORE * (max + min - s) / max,
                })
                .collect(),
        )
    }

    /// InterPodAffinity preferred terms, both directions (None when neither
    /// the pod nor any existing pod has affinity terms).
    fn inter_pod_affinity_scores(&self, cache: &Cache, nodes: &[&NodeInfo]) -> Option<Vec<i64>> {
        let t = &self.terms;
        let own = !t.preferred_affinity.is_empty() || !t.preferred_anti.is_empty();
        if !own && cache.pods_with_affinity() == 0 {
            return None;
        }
        let mut scores: PairCounts<'_> = PairCounts::default();
        for ni in cache.nodes() {
            if ni.node.is_none() || (!own && ni.pods_with_affinity == 0) {
                continue;
            }
            let labels = ni.labels();
            for pi in ni.pods.iter().filter(|p| own || p.has_affinity) {
                self.score_existing_pod(&mut scores, pi, labels);
            }
        }
        let raw: Vec<i64> = nodes
            .iter()
            .map(|ni| scores.sum_for_node(ni.labels()))
            .collect();
        let max = raw.iter().copied().max().unwrap_or(0);
        let min = raw.iter().copied().min().unwrap_or(0);
        let diff = max - min;
        Some(
            raw.into_iter()
                .map(|s| {
                    if diff > 0 {
                        (MAX_NODE_SCORE as f64 * ((s - min) as f64 / diff as f64)) as i64
                    } else {
                        0
                    }
                })
                .collect(),
        )
    }

    fn score_existing_pod<'b>(
        &self,
        scores: &mut PairCounts<'b>,
        pi: &PodInfo,
        labels: &'b BTreeMap<String, String>,
    ) {
        let (ns, pl) = (pi.namespace(), pi.labels());
        let mut bump = |topology_key: &str, weight: i64| {
            if let Some((k, v)) = labels.get_key_value(topology_key) {
                scores.add(k, v, weight);
            }
        };
        let t = &self.terms;
        for term in &t.preferred_affinity {
            if term.matches(ns, pl, self.ns_labels) {
                bump(term.topology_key, term.weight);
            }
        }
        for term in &t.preferred_anti {
            if term.matches(ns, pl, self.ns_labels) {
                bump(term.topology_key, -term.weight);
            }
        }
        if !pi.has_affinity {
            return;
        }
        let existing = PodTerms::of(&pi.pod);
        let incoming = |term: &Term<'_>| term.matches(self.namespace, self.labels, self.ns_labels);
        for term in existing.required_affinity.iter().filter(|t| incoming(t)) {
            bump(term.topology_key, HARD_POD_AFFINITY_WEIGHT);
        }
        for term in existing.preferred_affinity.iter().filter(|t| incoming(t)) {
            bump(term.topology_key, term.weight);
        }
        for term in existing.preferred_anti.iter().filter(|t| incoming(t)) {
            bump(term.topology_key, -term.weight);
        }
    }
}

fn spread_filter(
    st: &SpreadState<'_>,
    labels: &BTreeMap<String, String>,
) -> Result<(), Vec<Reason>> {
    for (i, c) in st.constraints.iter().enumerate() {
        let Some(v) = labels.get(c.topology_key) else {
            return Err(vec![Reason::TopologySpreadMissingLabel]);
        };
        let matched = st.counts.get(c.topology_key, v);
        let min = st.min_match.get(i).copied().unwrap_or(0);
        let self_match = st.self_match.get(i).copied().unwrap_or(0);
        let has_domains = st.counts.0.contains_key(c.topology_key);
        if has_domains && matched + self_match - min > c.max_skew {
            return Err(vec![Reason::TopologySpread]);
        }
    }
    Ok(())
}

fn affinity_filter(
    st: &AffinityState<'_>,
    labels: &BTreeMap<String, String>,
) -> Result<(), Vec<Reason>> {
    let mut pods_exist = true;
    for term in &st.affinity {
        let Some(v) = labels.get(term.topology_key) else {
            return Err(vec![Reason::Affinity]);
        };
        if st.affinity_counts.get(term.topology_key, v) <= 0 {
            pods_exist = false;
        }
    }
    // The first pod of a group with affinity to itself may go anywhere.
    let first_of_group = st.affinity_counts.is_empty() && st.self_match_all;
    if !pods_exist && !first_of_group {
        return Err(vec![Reason::Affinity]);
    }
    let anti_hit = st.anti.iter().any(|term| {
        labels
            .get(term.topology_key)
            .is_some_and(|v| st.anti_counts.get(term.topology_key, v) > 0)
    });
    if anti_hit {
        return Err(vec![Reason::AntiAffinity]);
    }
    if st.existing_anti_counts.hits_node(labels) {
        return Err(vec![Reason::ExistingAntiAffinity]);
    }
    Ok(())
}

/// Upstream `DefaultNormalizeScore`: scale to 0..100 by the maximum;
/// `reverse` turns "more is worse" into "more is better".
pub fn normalize(raw: Vec<i64>, reverse: bool) -> Vec<i64> {
    let max = raw.iter().copied().max().unwrap_or(0);
    raw.into_iter()
        .map(|s| {
            if max == 0 {
                if reverse { MAX_NODE_SCORE } else { 0 }
            } else {
                let n = MAX_NODE_SCORE * s / max;
                if reverse { MAX_NODE_SCORE - n } else { n }
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::cache::tests::{make_node, make_pod};
    use k8s_openapi::api::core::v1::{
        Affinity, ContainerPort, Node, NodeSelectorRequirement, NodeSelectorTerm, PodAntiAffinity,
        PreferredSchedulingTerm,
    };

    /// (name, node, pods already on it, pending pod, volumes, expected reasons)
    type FilterCase<'v> = (
        &'static str,
        Node,
        Vec<Pod>,
        Pod,
        &'v VolumeInfo,
        Vec<&'static str>,
    );

    fn labelled(mut p: Pod, labels: &[(&str, &str)]) -> Pod {
        p.metadata.labels = Some(
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        p
    }

    fn anti_affinity(mut p: Pod, app: &str, key: &str) -> Pod {
        let term = PodAffinityTerm {
            label_selector: Some(LabelSelector {
                match_labels: Some([("app".to_string(), app.to_string())].into()),
                ..Default::default()
            }),
            topology_key: key.into(),
            ..Default::default()
        };
        p.spec.as_mut().unwrap().affinity = Some(Affinity {
            pod_anti_affinity: Some(PodAntiAffinity {
                required_during_scheduling_ignored_during_execution: Some(vec![term]),
                ..Default::default()
            }),
            ..Default::default()
        });
        p
    }

    fn with_port(mut p: Pod, port: i32) -> Pod {
        p.spec.as_mut().unwrap().containers[0].ports = Some(vec![ContainerPort {
            container_port: port,
            host_port: Some(port),
            ..Default::default()
        }]);
        p
    }

    fn taint(key: &str, value: &str, effect: &str) -> Taint {
        Taint {
            key: key.into(),
            value: Some(value.into()),
            effect: effect.into(),
            time_added: None,
        }
    }

    /// Filter table: (name, node, pods already on it, pending pod, volumes, expected reasons).
    #[test]
    fn filter_table() {
        let node = || make_node("n1", 1000, 1, &[("zone", "a")]);
        let mut unsched = node();
        unsched.spec.as_mut().unwrap().unschedulable = Some(true);
        let mut tainted = node();
        tainted.spec.as_mut().unwrap().taints = Some(vec![taint("dedicated", "gpu", "NoSchedule")]);
        let mut few_pods = node();
        few_pods
            .status
            .as_mut()
            .unwrap()
            .allocatable
            .as_mut()
            .unwrap()
            .insert(
                "pods".into(),
                k8s_openapi::apimachinery::pkg::api::resource::Quantity("1".into()),
            );
        let mut selector_pod = make_pod("p", 100, 10, None);
        selector_pod.spec.as_mut().unwrap().node_selector =
            Some([("zone".to_string(), "b".to_string())].into());
        let mut named = make_pod("p", 100, 10, None);
        named.spec.as_mut().unwrap().node_name = Some("other".into());
        let pv_elsewhere = VolumeInfo {
            pv_node_affinity: vec![NodeSelector {
                node_selector_terms: vec![NodeSelectorTerm {
                    match_expressions: Some(vec![NodeSelectorRequirement {
                        key: "zone".into(),
                        operator: "In".into(),
                        values: Some(vec!["b".into()]),
                    }]),
                    match_fields: None,
                }],
            }],
            ..Default::default()
        };
        let none = VolumeInfo::default();
        let existing_web = labelled(make_pod("w", 100, 10, Some("n1")), &[("app", "web")]);
        let existing_anti = anti_affinity(
            labelled(make_pod("x", 100, 10, Some("n1")), &[("app", "x")]),
            "web",
            "zone",
        );
        let cases: Vec<FilterCase<'_>> = vec![
            (
                "fits",
                node(),
                vec![],
                make_pod("p", 100, 10, None),
                &none,
                vec![],
            ),
            (
                "unschedulable",
                unsched,
                vec![],
                make_pod("p", 100, 10, None),
                &none,
                vec!["node(s) were unschedulable"],
            ),
            (
                "taint",
                tainted,
                vec![],
                make_pod("p", 100, 10, None),
                &none,
                vec!["node(s) had untolerated taint {dedicated: gpu}"],
            ),
            (
                "selector",
                node(),
                vec![],
                selector_pod,
                &none,
                vec!["node(s) didn't match Pod's node affinity/selector"],
            ),
            (
                "node name",
                node(),
                vec![],
                named,
                &none,
                vec!["node(s) didn't match the requested node name"],
            ),
            (
                "cpu and memory",
                node(),
                vec![make_pod("a", 900, 1000, Some("n1"))],
                make_pod("p", 200, 100, None),
                &none,
                vec!["Insufficient cpu", "Insufficient memory"],
            ),
            (
                "too many pods",
                few_pods,
                vec![make_pod("a", 1, 1, Some("n1"))],
                make_pod("p", 1, 1, None),
                &none,
                vec!["Too many pods"],
            ),
            (
                "ports",
                node(),
                vec![with_port(make_pod("a", 1, 1, Some("n1")), 80)],
                with_port(make_pod("p", 1, 1, None), 80),
                &none,
                vec!["node(s) didn't have free ports for the requested pod ports"],
            ),
            (
                "pv affinity",
                node(),
                vec![],
                make_pod("p", 1, 1, None),
                &pv_elsewhere,
                vec!["node(s) had volume node affinity conflict"],
            ),
            (
                "anti-affinity",
                node(),
                vec![existing_web.clone()],
                anti_affinity(
                    labelled(make_pod("p", 1, 1, None), &[("app", "web")]),
                    "web",
                    "zone",
                ),
                &none,
                vec!["node(s) didn't match pod anti-affinity rules"],
            ),
            (
                "existing anti-affinity",
                node(),
                vec![existing_anti],
                labelled(make_pod("p", 1, 1, None), &[("app", "web")]),
                &none,
                vec!["node(s) didn't satisfy existing pods anti-affinity rules"],
            ),
        ];
        for (name, n, pods, pod, vols, want) in cases {
            let mut cache = Cache::new();
            cache.upsert_node(n);
            for p in pods {
                cache.upsert_pod(p);
            }
            let cs = CycleState::new(&pod, &cache, vols).unwrap();
            let got: Vec<String> = match cs.filter(cache.node("n1").unwrap()) {
                Ok(()) => vec![],
                Err(r) => r.iter().map(|r| r.to_string()).collect(),
            };
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn prefilter_volume_errors() {
        let cache = Cache::new();
        let pod = make_pod("p", 1, 1, None);
        let missing = VolumeInfo {
            missing_claim: Some("data".into()),
            ..Default::default()
        };
        assert_eq!(
            CycleState::new(&pod, &cache, &missing).unwrap_err(),
            "persistentvolumeclaim \"data\" not found"
        );
        let unbound = VolumeInfo {
            unbound_immediate: true,
            ..Default::default()
        };
        assert_eq!(
            CycleState::new(&pod, &cache, &unbound).unwrap_err(),
            "pod has unbound immediate PersistentVolumeClaims"
        );
    }

    #[test]
    fn topology_spread_do_not_schedule() {
        let mut cache = Cache::new();
        cache.upsert_node(make_node("a1", 4000, 8, &[("zone", "a")]));
        cache.upsert_node(make_node("b1", 4000, 8, &[("zone", "b")]));
        cache.upsert_node(make_node("nolabel", 4000, 8, &[]));
        for i in 0..2 {
            cache.upsert_pod(labelled(
                make_pod(&format!("e{i}"), 1, 1, Some("a1")),
                &[("app", "web")],
            ));
        }
        let mut pod = labelled(make_pod("p", 1, 1, None), &[("app", "web")]);
        pod.spec.as_mut().unwrap().topology_spread_constraints =
            Some(vec![TopologySpreadConstraint {
                max_skew: 1,
                topology_key: "zone".into(),
                when_unsatisfiable: "DoNotSchedule".into(),
                label_selector: Some(LabelSelector {
                    match_labels: Some([("app".to_string(), "web".to_string())].into()),
                    ..Default::default()
                }),
                ..Default::default()
            }]);
        let vols = VolumeInfo::default();
        let cs = CycleState::new(&pod, &cache, &vols).unwrap();
        let reason = |n: &str| {
            cs.filter(cache.node(n).unwrap())
                .err()
                .map(|r| r[0].to_string())
        };
        assert_eq!(
            reason("a1").as_deref(),
            Some("node(s) didn't match pod topology spread constraints")
        );
        assert_eq!(reason("b1"), None);
        assert_eq!(
            reason("nolabel").as_deref(),
            Some("node(s) didn't match pod topology spread constraints (missing required label)")
        );
    }

    #[test]
    fn scores_prefer_empty_untainted_preferred_nodes() {
        let mut cache = Cache::new();
        cache.upsert_node(make_node("busy", 4000, 8, &[]));
        cache.upsert_node(make_node("idle", 4000, 8, &[]));
        let mut soft = make_node("soft", 4000, 8, &[("disk", "ssd")]);
        soft.spec.as_mut().unwrap().taints = Some(vec![taint("x", "y", "PreferNoSchedule")]);
        cache.upsert_node(soft);
        cache.upsert_pod(make_pod("a", 3000, 6000, Some("busy")));
        let vols = VolumeInfo::default();
        let pod = make_pod("p", 100, 100, None);
        let cs = CycleState::new(&pod, &cache, &vols).unwrap();
        let nodes: Vec<&NodeInfo> = ["busy", "idle", "soft"]
            .iter()
            .map(|n| cache.node(n).unwrap())
            .collect();
        let s = cs.score(&cache, &nodes);
        assert!(s[1] > s[0], "idle beats busy: {s:?}");
        assert!(s[1] > s[2], "untainted beats PreferNoSchedule: {s:?}");
        // a preferred node affinity adds weight 2 × 100 (less than the
        // soft taint's 3 × 100, as upstream)
        let mut pref = make_pod("q", 100, 100, None);
        pref.spec.as_mut().unwrap().affinity = Some(Affinity {
            node_affinity: Some(k8s_openapi::api::core::v1::NodeAffinity {
                preferred_during_scheduling_ignored_during_execution: Some(vec![
                    PreferredSchedulingTerm {
                        weight: 100,
                        preference: NodeSelectorTerm {
                            match_expressions: Some(vec![NodeSelectorRequirement {
                                key: "disk".into(),
                                operator: "In".into(),
                                values: Some(vec!["ssd".into()]),
                            }]),
                            match_fields: None,
                        },
                    },
                ]),
                ..Default::default()
            }),
            ..Default::default()
        });
        let cs = CycleState::new(&pref, &cache, &vols).unwrap();
        let with = cs.score(&cache, &nodes);
        assert_eq!(with[2] - with[1], s[2] - s[1] + 200, "{with:?} vs {s:?}");
        assert!(with[1] > with[2]);
    }

    #[test]
    fn normalize_table() {
        assert_eq!(normalize(vec![0, 5, 10], false), vec![0, 50, 100]);
        assert_eq!(normalize(vec![0, 5, 10], true), vec![100, 50, 0]);
        assert_eq!(normalize(vec![0, 0], true), vec![100, 100]);
        assert_eq!(normalize(vec![0, 0], false), vec![0, 0]);
    }
}
