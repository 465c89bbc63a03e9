//! Pure node/pod predicates shared by the scheduler and the DaemonSet
//! controller, behaving like upstream kube-scheduler's helpers
//! (`component-helpers/resource`, `component-helpers/scheduling/corev1`,
//! `v1helper.ToleratesTaint`).
//!
//! Owns: a pod's effective resource requests (containers, sidecar and plain
//! init containers, overhead), toleration/taint matching, nodeSelector and
//! required node-affinity matching, node readiness.
//!
//! Invariants: CPU is in millicores, memory and ephemeral storage in bytes,
//! extended/scalar resources in whole units (rounded up). Unparseable
//! quantities count as zero; an invalid selector term matches nothing.
//!
//! Must not: do I/O, read clocks, allocate per call beyond the returned
//! value (these run once per node per scheduling decision), or panic.

use crate::api::quantity::parse_quantity;
use k8s_openapi::api::core::v1::{
    Container, Node, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, PodSpec, Taint,
    Toleration,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use std::collections::BTreeMap;

pub const RESOURCE_CPU: &str = "cpu";
pub const RESOURCE_MEMORY: &str = "memory";
pub const RESOURCE_EPHEMERAL_STORAGE: &str = "ephemeral-storage";
pub const RESOURCE_PODS: &str = "pods";

/// Upstream's default CPU request used for *scoring* a container without one.
pub const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;
/// Upstream's default memory request used for *scoring* (200 MiB).
pub const DEFAULT_MEMORY_REQUEST: i64 = 200 * 1024 * 1024;

pub const EFFECT_NO_SCHEDULE: &str = "NoSchedule";
pub const EFFECT_PREFER_NO_SCHEDULE: &str = "PreferNoSchedule";
pub const EFFECT_NO_EXECUTE: &str = "NoExecute";

pub const TAINT_NOT_READY: &str = "node.kubernetes.io/not-ready";
pub const TAINT_UNREACHABLE: &str = "node.kubernetes.io/unreachable";
pub const TAINT_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";

/// A set of resource amounts (a pod's requests, a node's allocatable, sums).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    pub milli_cpu: i64,
    pub memory: i64,
    pub ephemeral_storage: i64,
    /// Extended and other scalar resources (`nvidia.com/gpu`,
    /// `hugepages-2Mi`, …) in whole units. Zero entries may be present.
    pub scalar: BTreeMap<String, i64>,
}

impl Resources {
    /// Adds `other` into `self` (saturating).
    pub fn add(&mut self, other: &Resources) {
        self.milli_cpu = self.milli_cpu.saturating_add(other.milli_cpu);
        self.memory = self.memory.saturating_add(other.memory);
        self.ephemeral_storage = self
            .ephemeral_storage
            .saturating_add(other.ephemeral_storage);
        for (k, v) in &other.scalar {
            let e = self.scalar.entry(k.clone()).or_insert(0);
            *e = e.saturating_add(*v);
        }
    }

    /// Subtracts `other` from `self` (saturating; never below zero).
    pub fn sub(&mut self, other: &Resources) {
        self.milli_cpu = self.milli_cpu.saturating_sub(other.milli_cpu).max(0);
        self.memory = self.memory.saturating_sub(other.memory).max(0);
        self.ephemeral_storage = self
            .ephemeral_storage
            .saturating_sub(other.ephemeral_storage)
            .max(0);
        for (k, v) in &other.scalar {
            if let Some(e) = self.scalar.get_mut(k) {
                *e = e.saturating_sub(*v).max(0);
            }
        }
    }

    /// Raises each amount of `self` to at least the one in `other`.
    pub fn max_with(&mut self, other: &Resources) {
        self.milli_cpu = self.milli_cpu.max(other.milli_cpu);
        self.memory = self.memory.max(other.memory);
        self.ephemeral_storage = self.ephemeral_storage.max(other.ephemeral_storage);
        for (k, v) in &other.scalar {
            let e = self.scalar.entry(k.clone()).or_insert(0);
            *e = (*e).max(*v);
        }
    }

    /// The amount of a resource by its API name (0 when absent).
    pub fn get(&self, name: &str) -> i64 {
        match name {
            RESOURCE_CPU => self.milli_cpu,
            RESOURCE_MEMORY => self.memory,
            RESOURCE_EPHEMERAL_STORAGE => self.ephemeral_storage,
            other => self.scalar.get(other).copied().unwrap_or(0),
        }
    }

    /// Whether every amount is zero.
    pub fn is_zero(&self) -> bool {
        self.milli_cpu == 0
            && self.memory == 0
            && self.ephemeral_storage == 0
            && self.scalar.values().all(|v| *v == 0)
    }

    /// Builds resources from an API resource list (`requests`, `allocatable`,
    /// `overhead`). `pods` is ignored here (see [`allocatable_pods`]).
    pub fn from_list(list: &BTreeMap<String, Quantity>) -> Resources {
        let mut r = Resources::default();
        for (name, q) in list {
            r.set_from(name, q);
        }
        r
    }

    fn set_from(&mut self, name: &str, q: &Quantity) {
        match name {
            RESOURCE_CPU => self.milli_cpu = milli_value(q),
            RESOURCE_MEMORY => self.memory = value(q),
            RESOURCE_EPHEMERAL_STORAGE => self.ephemeral_storage = value(q),
            RESOURCE_PODS => {}
            other => {
                self.scalar.insert(other.to_string(), value(q));
            }
        }
    }
}

/// A quantity in thousandths, rounded up; 0 when unparseable.
pub fn milli_value(q: &Quantity) -> i64 {
    parse_quantity(&q.0)
        .map(|p| clamp_i64(p.milli_value()))
        .unwrap_or(0)
}

/// A quantity in whole units, rounded up; 0 when unparseable.
pub fn value(q: &Quantity) -> i64 {
    parse_quantity(&q.0)
        .map(|p| {
            let m = p.milli_value();
            clamp_i64(m.div_euclid(1000) + i128::from(m.rem_euclid(1000) != 0))
        })
        .unwrap_or(0)
}

fn clamp_i64(v: i128) -> i64 {
    v.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

/// The number of pods a node admits (`status.allocatable.pods`, else
/// `capacity.pods`, else 110 like the kubelet default).
pub fn allocatable_pods(node: &Node) -> i64 {
    let status = node.status.as_ref();
    status
        .and_then(|s| s.allocatable.as_ref())
        .and_then(|a| a.get(RESOURCE_PODS))
        .or_else(|| {
            status
                .and_then(|s| s.capacity.as_ref())
                .and_then(|c| c.get(RESOURCE_PODS))
        })
        .map(value)
        .unwrap_or(110)
}

/// A node's allocatable resources (`status.allocatable`, falling back to
/// `status.capacity` when allocatable is absent).
pub fn node_allocatable(node: &Node) -> Resources {
    let status = node.status.as_ref();
    status
        .and_then(|s| s.allocatable.as_ref().or(s.capacity.as_ref()))
        .map(Resources::from_list)
        .unwrap_or_default()
}

/// One container's requests; a resource with a limit but no request counts
/// the limit (as API defaulting would). With `non_zero`, missing CPU/memory
/// take upstream's scoring defaults (100m, 200Mi).
fn container_requests(c: &Container, non_zero: bool) -> Resources {
    let mut r = Resources::default();
    let res = c.resources.as_ref();
    if let Some(limits) = res.and_then(|r| r.limits.as_ref()) {
        for (name, q) in limits {
            r.set_from(name, q);
        }
    }
    if let Some(reqs) = res.and_then(|r| r.requests.as_ref()) {
        for (name, q) in reqs {
            r.set_from(name, q);
        }
    }
    if non_zero {
        let has = |name: &str| {
            res.is_some_and(|r| {
                r.requests.as_ref().is_some_and(|m| m.contains_key(name))
                    || r.limits.as_ref().is_some_and(|m| m.contains_key(name))
            })
        };
        if !has(RESOURCE_CPU) {
            r.milli_cpu = DEFAULT_MILLI_CPU_REQUEST;
        }
        if !has(RESOURCE_MEMORY) {
            r.memory = DEFAULT_MEMORY_REQUEST;
        }
    }
    r
}

fn requests_impl(spec: &PodSpec, non_zero: bool) -> Resources {
    let mut total = Resources::default();
    for c in &spec.containers {
        total.add(&container_requests(c, non_zero));
    }
    // Sidecars (restartable init containers) run alongside everything that
    // starts after them; plain init containers run one at a time.
    let mut sidecars = Resources::default();
    let mut init_peak = Resources::default();
    for ic in spec.init_containers.iter().flatten() {
        let mut r = container_requests(ic, non_zero);
        if ic.restart_policy.as_deref() == Some("Always") {
            total.add(&r);
            sidecars.add(&r);
            r = sidecars.clone();
        } else {
            r.add(&sidecars);
        }
        init_peak.max_with(&r);
    }
    total.max_with(&init_peak);
    if let Some(overhead) = &spec.overhead {
        total.add(&Resources::from_list(overhead));
    }
    total
}

/// The resources a pod needs on a node, as upstream computes them:
/// max(sum of containers + sidecars, peak init container) + overhead.
pub fn pod_requests(spec: &PodSpec) -> Resources {
    requests_impl(spec, false)
}

/// Like [`pod_requests`] but with upstream's non-zero defaults for containers
/// that request no CPU/memory; used only for scoring (spreading best-effort
/// pods).
pub fn pod_requests_non_zero(spec: &PodSpec) -> Resources {
    requests_impl(spec, true)
}

/// Whether a toleration tolerates a taint (upstream `ToleratesTaint`): an
/// empty effect matches every effect, an empty key with `Exists` matches
/// every key, `Equal` (or no operator) compares values.
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    if let Some(effect) = toleration.effect.as_deref().filter(|e| !e.is_empty())
        && effect != taint.effect
    {
        return false;
    }
    if let Some(key) = toleration.key.as_deref().filter(|k| !k.is_empty())
        && key != taint.key
    {
        return false;
    }
    match toleration.operator.as_deref().unwrap_or("") {
        "Exists" => true,
        "" | "Equal" => {
            toleration.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
        }
        _ => false,
    }
}

/// Whether any of `tolerations` tolerates `taint`.
pub fn taint_tolerated(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations.iter().any(|t| tolerates(t, taint))
}

/// The first taint whose effect is in `effects` that no toleration tolerates.
pub fn find_untolerated_taint<'a>(
    taints: &'a [Taint],
    tolerations: &[Toleration],
    effects: &[&str],
) -> Option<&'a Taint> {
    taints
        .iter()
        .filter(|t| effects.contains(&t.effect.as_str()))
        .find(|t| !taint_tolerated(tolerations, t))
}

/// The node's taints (empty when none).
pub fn node_taints(node: &Node) -> &[Taint] {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or(&[])
}

/// Whether the node's `Ready` condition is `True`.
pub fn node_is_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == "True")
}

/// The taint upstream's node lifecycle controller would put on a node whose
/// Ready condition is not `True` (`not-ready` for `False`, `unreachable` for
/// `Unknown`/missing), unless the node already carries it. Lets a scheduler
/// work without that controller. `None` for a ready node.
pub fn readiness_taint(node: &Node) -> Option<Taint> {
    if node_is_ready(node) {
        return None;
    }
    let ready_false = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == "False");
    let key = if ready_false {
        TAINT_NOT_READY
    } else {
        TAINT_UNREACHABLE
    };
    let already = node_taints(node)
        .iter()
        .any(|t| t.key == key && t.effect == EFFECT_NO_SCHEDULE);
    (!already).then(|| Taint {
        key: key.to_string(),
        effect: EFFECT_NO_SCHEDULE.to_string(),
        ..Default::default()
    })
}

/// Whether the node's labels satisfy the pod's `nodeSelector` and its
/// required node affinity (upstream `GetRequiredNodeAffinity(pod).Match`).
pub fn node_selector_matches(spec: &PodSpec, node: &Node) -> bool {
    let empty = BTreeMap::new();
    let labels = node.metadata.labels.as_ref().unwrap_or(&empty);
    if let Some(sel) = &spec.node_selector
        && sel.iter().any(|(k, v)| labels.get(k) != Some(v))
    {
        return false;
    }
    match required_node_selector(spec) {
        Some(ns) => node_selector_matches_node(ns, node),
        None => true,
    }
}

/// The pod's `requiredDuringSchedulingIgnoredDuringExecution` node selector.
pub fn required_node_selector(spec: &PodSpec) -> Option<&NodeSelector> {
    spec.affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()
}

/// Whether a `NodeSelector` matches a node: its terms are ORed; an empty
/// list of terms matches nothing.
pub fn node_selector_matches_node(sel: &NodeSelector, node: &Node) -> bool {
    sel.node_selector_terms
        .iter()
        .any(|t| node_selector_term_matches(t, node))
}

/// Whether one `NodeSelectorTerm` matches: all its expressions and fields
/// hold; a term with neither matches nothing.
pub fn node_selector_term_matches(term: &NodeSelectorTerm, node: &Node) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or(&[]);
    let fields = term.match_fields.as_deref().unwrap_or(&[]);
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    let empty = BTreeMap::new();
    let labels = node.metadata.labels.as_ref().unwrap_or(&empty);
    exprs.iter().all(|r| label_requirement_matches(r, labels))
        && fields.iter().all(|r| field_requirement_matches(r, node))
}

/// One `matchExpressions` requirement against node labels.
pub fn label_requirement_matches(
    req: &NodeSelectorRequirement,
    labels: &BTreeMap<String, String>,
) -> bool {
    let values = req.values.as_deref().unwrap_or(&[]);
    let got = labels.get(&req.key);
    match req.operator.as_str() {
        "In" => got.is_some_and(|g| values.contains(g)),
        "NotIn" => got.is_none_or(|g| !values.contains(g)),
        "Exists" => got.is_some(),
        "DoesNotExist" => got.is_none(),
        "Gt" | "Lt" => {
            let [bound] = values else { return false };
            let (Ok(bound), Some(Ok(have))) = (bound.parse::<i64>(), got.map(|g| g.parse::<i64>()))
            else {
                return false;
            };
            if req.operator == "Gt" {
                have > bound
            } else {
                have < bound
            }
        }
        _ => false,
    }
}

/// One `matchFields` requirement: only `metadata.name` with `In`/`NotIn`.
fn field_requirement_matches(req: &NodeSelectorRequirement, node: &Node) -> bool {
    if req.key != "metadata.name" {
        return false;
    }
    let values = req.values.as_deref().unwrap_or(&[]);
    let name = node.metadata.name.as_deref().unwrap_or("");
    match req.operator.as_str() {
        "In" => values.iter().any(|v| v == name),
        "NotIn" => !values.iter().any(|v| v == name),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        Affinity, NodeAffinity, NodeCondition, NodeSpec, NodeStatus, ResourceRequirements,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn q(s: &str) -> Quantity {
        Quantity(s.to_string())
    }

    fn container(reqs: &[(&str, &str)], restart: Option<&str>) -> Container {
        Container {
            name: "c".into(),
            restart_policy: restart.map(str::to_string),
            resources: Some(ResourceRequirements {
                requests: Some(reqs.iter().map(|(k, v)| (k.to_string(), q(v))).collect()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn node(name: &str, labels: &[(&str, &str)]) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn req(key: &str, op: &str, values: &[&str]) -> NodeSelectorRequirement {
        NodeSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: Some(values.iter().map(|s| s.to_string()).collect()),
        }
    }

    fn taint(key: &str, value: &str, effect: &str) -> Taint {
        Taint {
            key: key.into(),
            value: (!value.is_empty()).then(|| value.to_string()),
            effect: effect.into(),
            time_added: None,
        }
    }

    fn tol(key: &str, op: &str, value: &str, effect: &str) -> Toleration {
        let s = |v: &str| (!v.is_empty()).then(|| v.to_string());
        Toleration {
            key: s(key),
            operator: s(op),
            value: s(value),
            effect: s(effect),
            toleration_seconds: None,
        }
    }

    #[test]
    fn pod_requests_table() {
        struct Case {
            name: &'static str,
            containers: Vec<Container>,
            init: Vec<Container>,
            overhead: Vec<(&'static str, &'static str)>,
            cpu: i64,
            mem: i64,
        }
        let cases = vec![
            Case {
                name: "sum of containers",
                containers: vec![
                    container(&[("cpu", "100m"), ("memory", "1Gi")], None),
                    container(&[("cpu", "0.5"), ("memory", "512Mi")], None),
                ],
                init: vec![],
                overhead: vec![],
                cpu: 600,
                mem: 1536 * 1024 * 1024,
            },
            Case {
                name: "init container peak dominates",
                containers: vec![container(&[("cpu", "100m")], None)],
                init: vec![container(&[("cpu", "2")], None)],
                overhead: vec![],
                cpu: 2000,
                mem: 0,
            },
            Case {
                name: "sidecar adds to containers and later inits",
                containers: vec![container(&[("cpu", "100m")], None)],
                init: vec![
                    container(&[("cpu", "200m")], Some("Always")),
                    container(&[("cpu", "250m")], None),
                ],
                overhead: vec![],
                cpu: 450,
                mem: 0,
            },
            Case {
                name: "overhead added",
                containers: vec![container(&[("cpu", "1")], None)],
                init: vec![],
                overhead: vec![("cpu", "250m"), ("memory", "120Mi")],
                cpu: 1250,
                mem: 120 * 1024 * 1024,
            },
            Case {
                name: "garbage quantity is zero",
                containers: vec![container(&[("cpu", "lots")], None)],
                init: vec![],
                overhead: vec![],
                cpu: 0,
                mem: 0,
            },
        ];
        for c in cases {
            let spec = PodSpec {
                containers: c.containers,
                init_containers: Some(c.init),
                overhead: Some(
                    c.overhead
                        .iter()
                        .map(|(k, v)| (k.to_string(), q(v)))
                        .collect(),
                ),
                ..Default::default()
            };
            let r = pod_requests(&spec);
            assert_eq!((r.milli_cpu, r.memory), (c.cpu, c.mem), "{}", c.name);
        }
    }

    #[test]
    fn extended_resources_and_non_zero() {
        let spec = PodSpec {
            containers: vec![
                container(&[("nvidia.com/gpu", "2")], None),
                container(&[("cpu", "10m")], None),
            ],
            ..Default::default()
        };
        let r = pod_requests(&spec);
        assert_eq!(r.get("nvidia.com/gpu"), 2);
        assert_eq!(r.milli_cpu, 10);
        let nz = pod_requests_non_zero(&spec);
        assert_eq!(nz.milli_cpu, 110);
        assert_eq!(nz.memory, 2 * DEFAULT_MEMORY_REQUEST);
    }

    #[test]
    fn limits_stand_in_for_missing_requests() {
        let mut c = container(&[], None);
        c.resources.as_mut().unwrap().limits = Some([("cpu".to_string(), q("300m"))].into());
        let spec = PodSpec {
            containers: vec![c],
            ..Default::default()
        };
        assert_eq!(pod_requests(&spec).milli_cpu, 300);
    }

    #[test]
    fn tolerates_table() {
        let t = taint("k", "v", "NoSchedule");
        let cases = [
            (tol("k", "Equal", "v", "NoSchedule"), true),
            (tol("k", "", "v", ""), true),
            (tol("k", "Equal", "w", "NoSchedule"), false),
            (tol("k", "Exists", "", ""), true),
            (tol("", "Exists", "", ""), true),
            (tol("", "Exists", "", "NoExecute"), false),
            (tol("other", "Exists", "", ""), false),
            (tol("k", "Bogus", "v", ""), false),
        ];
        for (i, (tl, want)) in cases.iter().enumerate() {
            assert_eq!(tolerates(tl, &t), *want, "case {i}");
        }
    }

    #[test]
    fn untolerated_taint_respects_effect_filter() {
        let taints = vec![
            taint("soft", "", "PreferNoSchedule"),
            taint("a", "1", "NoSchedule"),
            taint("b", "2", "NoExecute"),
        ];
        let tols = vec![tol("a", "Equal", "1", "NoSchedule")];
        let found =
            find_untolerated_taint(&taints, &tols, &[EFFECT_NO_SCHEDULE, EFFECT_NO_EXECUTE]);
        assert_eq!(found.map(|t| t.key.as_str()), Some("b"));
        assert!(find_untolerated_taint(&taints, &tols, &[EFFECT_NO_SCHEDULE]).is_none());
    }

    /// (name, nodeSelector, required terms, expected match)
    type SelectorCase = (
        &'static str,
        Option<Vec<(&'static str, &'static str)>>,
        Vec<NodeSelectorTerm>,
        bool,
    );

    #[test]
    fn node_selector_table() {
        let n = node("n1", &[("zone", "a"), ("gen", "5")]);
        let term = |reqs: Vec<NodeSelectorRequirement>| NodeSelectorTerm {
            match_expressions: Some(reqs),
            match_fields: None,
        };
        let cases: Vec<SelectorCase> = vec![
            ("no constraints", None, vec![], true),
            ("selector ok", Some(vec![("zone", "a")]), vec![], true),
            ("selector miss", Some(vec![("zone", "b")]), vec![], false),
            (
                "In",
                None,
                vec![term(vec![req("zone", "In", &["a", "b"])])],
                true,
            ),
            (
                "NotIn",
                None,
                vec![term(vec![req("zone", "NotIn", &["a"])])],
                false,
            ),
            (
                "NotIn absent",
                None,
                vec![term(vec![req("x", "NotIn", &["a"])])],
                true,
            ),
            (
                "Exists",
                None,
                vec![term(vec![req("gen", "Exists", &[])])],
                true,
            ),
            (
                "DoesNotExist",
                None,
                vec![term(vec![req("gen", "DoesNotExist", &[])])],
                false,
            ),
            ("Gt", None, vec![term(vec![req("gen", "Gt", &["4"])])], true),
            (
                "Lt",
                None,
                vec![term(vec![req("gen", "Lt", &["5"])])],
                false,
            ),
            (
                "Gt bad",
                None,
                vec![term(vec![req("zone", "Gt", &["4"])])],
                false,
            ),
            (
                "terms ORed",
                None,
                vec![
                    term(vec![req("zone", "In", &["b"])]),
                    term(vec![req("zone", "In", &["a"])]),
                ],
                true,
            ),
            ("empty term", None, vec![term(vec![])], false),
            (
                "matchFields name",
                None,
                vec![NodeSelectorTerm {
                    match_expressions: None,
                    match_fields: Some(vec![req("metadata.name", "In", &["n1"])]),
                }],
                true,
            ),
            (
                "matchFields other",
                None,
                vec![NodeSelectorTerm {
                    match_expressions: None,
                    match_fields: Some(vec![req("metadata.name", "NotIn", &["n1"])]),
                }],
                false,
            ),
        ];
        for (name, sel, terms, want) in cases {
            let affinity = (!terms.is_empty()).then(|| Affinity {
                node_affinity: Some(NodeAffinity {
                    required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                        node_selector_terms: terms,
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            });
            let spec = PodSpec {
                node_selector: sel.map(|s| {
                    s.iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect()
                }),
                affinity,
                ..Default::default()
            };
            assert_eq!(node_selector_matches(&spec, &n), want, "{name}");
        }
    }

    #[test]
    fn readiness() {
        let mut n = node("n", &[]);
        assert!(!node_is_ready(&n));
        assert_eq!(readiness_taint(&n).unwrap().key, TAINT_UNREACHABLE);
        n.status = Some(NodeStatus {
            conditions: Some(vec![NodeCondition {
                type_: "Ready".into(),
                status: "False".into(),
                ..Default::default()
            }]),
            ..Default::default()
        });
        assert_eq!(readiness_taint(&n).unwrap().key, TAINT_NOT_READY);
        n.spec = Some(NodeSpec {
            taints: Some(vec![taint(TAINT_NOT_READY, "", EFFECT_NO_SCHEDULE)]),
            ..Default::default()
        });
        assert!(readiness_taint(&n).is_none());
        n.status.as_mut().unwrap().conditions.as_mut().unwrap()[0].status = "True".into();
        assert!(node_is_ready(&n));
        assert!(readiness_taint(&n).is_none());
    }

    #[test]
    fn allocatable() {
        let mut n = node("n", &[]);
        assert_eq!(allocatable_pods(&n), 110);
        n.status = Some(NodeStatus {
            allocatable: Some(
                [
                    ("cpu", "4"),
                    ("memory", "8Gi"),
                    ("pods", "30"),
                    ("example.com/foo", "3"),
                ]
                .iter()
                .map(|(k, v)| (k.to_string(), q(v)))
                .collect(),
            ),
            ..Default::default()
        });
        let a = node_allocatable(&n);
        assert_eq!(a.milli_cpu, 4000);
        assert_eq!(a.memory, 8 << 30);
        assert_eq!(a.get("example.com/foo"), 3);
        assert_eq!(allocatable_pods(&n), 30);
    }
}
