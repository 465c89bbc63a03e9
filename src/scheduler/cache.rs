//! The scheduler's view of the cluster (upstream `internal/cache`): every
//! node with the pods bound or assumed on it and precomputed sums, updated
//! incrementally from watch events so a decision never walks all pods just to
//! add up requests.
//!
//! Owns: `NodeInfo` (node, pods with precomputed requests, requested and
//! non-zero requested sums, used host ports, allocatable, effective taints)
//! and `Cache` (node/pod/namespace upserts and removals, `assume`/`forget`).
//!
//! Invariants: a pod is on at most one node (keyed by uid, else
//! namespace/name); `requested` always equals the sum of the pods' requests;
//! terminal (Succeeded/Failed) and unassigned pods are never held; a node
//! deleted while pods still point at it stays as a node-less entry (skipped by
//! scheduling) until those pods go.
//!
//! Must not: do I/O, read clocks, or panic on odd objects.

use crate::scheduler::predicates::{
    Resources, allocatable_pods, node_allocatable, node_taints, pod_requests,
    pod_requests_non_zero, readiness_taint,
};
use k8s_openapi::api::core::v1::{Node, Pod, Taint};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

/// One host port a pod uses (`hostIP` defaults to 0.0.0.0, protocol to TCP).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    pub ip: String,
    pub protocol: String,
    pub port: i32,
}

impl HostPort {
    /// Whether two host ports collide (same protocol and port, and the same
    /// IP or either is the wildcard).
    pub fn conflicts(&self, other: &HostPort) -> bool {
        self.port == other.port
            && self.protocol == other.protocol
            && (self.ip == other.ip || is_wildcard(&self.ip) || is_wildcard(&other.ip))
    }
}

fn is_wildcard(ip: &str) -> bool {
    ip.is_empty() || ip == "0.0.0.0" || ip == "::"
}

/// The host ports a pod asks for (containers and sidecars, hostPort > 0).
pub fn pod_host_ports(pod: &Pod) -> Vec<HostPort> {
    let Some(spec) = &pod.spec else {
        return Vec::new();
    };
    let sidecars = spec
        .init_containers
        .iter()
        .flatten()
        .filter(|c| c.restart_policy.as_deref() == Some("Always"));
    spec.containers
        .iter()
        .chain(sidecars)
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            let port = p.host_port.filter(|hp| *hp > 0)?;
            Some(HostPort {
                ip: p.host_ip.clone().unwrap_or_else(|| "0.0.0.0".into()),
                protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                port,
            })
        })
        .collect()
}

/// The cache key of a pod: its uid, else `namespace/name`.
pub fn pod_key(pod: &Pod) -> String {
    match pod.metadata.uid.as_deref().filter(|u| !u.is_empty()) {
        Some(uid) => uid.to_string(),
        None => format!(
            "{}/{}",
            pod.metadata.namespace.as_deref().unwrap_or(""),
            pod.metadata.name.as_deref().unwrap_or("")
        ),
    }
}

/// A pod's priority (`spec.priority`, resolved by the API server; 0 if unset).
pub fn pod_priority(pod: &Pod) -> i32 {
    pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0)
}

fn is_terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// A pod on a node with everything filters and scores need precomputed.
#[derive(Debug, Clone)]
pub struct PodInfo {
    pub pod: Arc<Pod>,
    pub key: String,
    pub requests: Resources,
    /// CPU (millis) / memory (bytes) with upstream's scoring defaults.
    pub non_zero_cpu: i64,
    pub non_zero_memory: i64,
    pub host_ports: Vec<HostPort>,
    pub priority: i32,
    /// Has any pod affinity or anti-affinity term (required or preferred).
    pub has_affinity: bool,
    /// Has required pod anti-affinity terms.
    pub has_required_anti_affinity: bool,
}

impl PodInfo {
    pub fn new(pod: Arc<Pod>) -> PodInfo {
        let (requests, non_zero) = match &pod.spec {
            Some(spec) => (pod_requests(spec), pod_requests_non_zero(spec)),
            None => (Resources::default(), Resources::default()),
        };
        let affinity = pod.spec.as_ref().and_then(|s| s.affinity.as_ref());
        let pa = affinity.and_then(|a| a.pod_affinity.as_ref());
        let paa = affinity.and_then(|a| a.pod_anti_affinity.as_ref());
        let has_required_anti_affinity = paa
            .and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })
            .is_some_and(|t| !t.is_empty());
        let has_affinity = has_required_anti_affinity
            || pa.is_some_and(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_ref()
                    .is_some_and(|t| !t.is_empty())
                    || a.preferred_during_scheduling_ignored_during_execution
                        .as_ref()
                        .is_some_and(|t| !t.is_empty())
            })
            || paa.is_some_and(|a| {
                a.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
                    .is_some_and(|t| !t.is_empty())
            });
        PodInfo {
            key: pod_key(&pod),
            host_ports: pod_host_ports(&pod),
            priority: pod_priority(&pod),
            requests,
            non_zero_cpu: non_zero.milli_cpu,
            non_zero_memory: non_zero.memory,
            has_affinity,
            has_required_anti_affinity,
            pod,
        }
    }

    pub fn namespace(&self) -> &str {
        self.pod.metadata.namespace.as_deref().unwrap_or("")
    }

    pub fn labels(&self) -> &BTreeMap<String, String> {
        static EMPTY: BTreeMap<String, String> = BTreeMap::new();
        self.pod.metadata.labels.as_ref().unwrap_or(&EMPTY)
    }

    /// Being deleted (still holds resources, but not counted for spreading).
    pub fn terminating(&self) -> bool {
        self.pod.metadata.deletion_timestamp.is_some()
    }
}

/// One node and what is placed on it.
#[derive(Debug, Clone, Default)]
pub struct NodeInfo {
    pub name: String,
    /// None while the node is deleted but pods still reference it.
    pub node: Option<Arc<Node>>,
    pub allocatable: Resources,
    pub allowed_pods: i64,
    pub requested: Resources,
    pub non_zero_cpu: i64,
    pub non_zero_memory: i64,
    pub pods: Vec<PodInfo>,
    /// Node taints plus the readiness taint the lifecycle controller would add.
    pub taints: Vec<Taint>,
    pub unschedulable: bool,
    pub pods_with_affinity: usize,
    pub pods_with_required_anti_affinity: usize,
}

impl NodeInfo {
    /// A NodeInfo for a node with no pods yet.
    pub fn new(node: Arc<Node>) -> NodeInfo {
        let mut ni = NodeInfo {
            name: node.metadata.name.clone().unwrap_or_default(),
            ..Default::default()
        };
        ni.set_node(node);
        ni
    }

    fn set_node(&mut self, node: Arc<Node>) {
        self.allocatable = node_allocatable(&node);
        self.allowed_pods = allocatable_pods(&node);
        let mut taints = node_taints(&node).to_vec();
        taints.extend(readiness_taint(&node));
        self.taints = taints;
        self.unschedulable = node
            .spec
            .as_ref()
            .and_then(|s| s.unschedulable)
            .unwrap_or(false);
        self.node = Some(node);
    }

    /// The node's labels (empty when none or node-less).
    pub fn labels(&self) -> &BTreeMap<String, String> {
        static EMPTY: BTreeMap<String, String> = BTreeMap::new();
        self.node
            .as_ref()
            .and_then(|n| n.metadata.labels.as_ref())
            .unwrap_or(&EMPTY)
    }

    /// Adds a pod and its sums.
    pub fn add_pod(&mut self, pi: PodInfo) {
        self.requested.add(&pi.requests);
        self.non_zero_cpu += pi.non_zero_cpu;
        self.non_zero_memory += pi.non_zero_memory;
        self.pods_with_affinity += usize::from(pi.has_affinity);
        self.pods_with_required_anti_affinity += usize::from(pi.has_required_anti_affinity);
        self.pods.push(pi);
    }

    /// Removes a pod by key, returning it.
    pub fn remove_pod(&mut self, key: &str) -> Option<PodInfo> {
        let idx = self.pods.iter().position(|p| p.key == key)?;
        let pi = self.pods.swap_remove(idx);
        self.requested.sub(&pi.requests);
        self.non_zero_cpu -= pi.non_zero_cpu;
        self.non_zero_memory -= pi.non_zero_memory;
        self.pods_with_affinity -= usize::from(pi.has_affinity);
        self.pods_with_required_anti_affinity -= usize::from(pi.has_required_anti_affinity);
        Some(pi)
    }

    /// Whether `port` collides with a port already used on this node.
    pub fn port_in_use(&self, port: &HostPort) -> bool {
        self.pods
            .iter()
            .flat_map(|p| p.host_ports.iter())
            .any(|u| u.conflicts(port))
    }
}

/// All nodes, kept in a stable vector for cheap rotating iteration.
#[derive(Debug, Default, Clone)]
pub struct Cache {
    nodes: Vec<NodeInfo>,
    index: HashMap<String, usize>,
    pod_node: HashMap<String, String>,
    assumed: HashSet<String>,
    namespace_labels: HashMap<String, BTreeMap<String, String>>,
    pods_with_affinity: usize,
    pods_with_required_anti_affinity: usize,
}

impl Cache {
    pub fn new() -> Cache {
        Cache::default()
    }

    /// Every node entry, including node-less ones (check `node.is_some()`).
    pub fn nodes(&self) -> &[NodeInfo] {
        &self.nodes
    }

    pub fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.index.get(name).map(|i| &self.nodes[*i])
    }

    /// Number of real nodes (entries with a Node object).
    pub fn node_count(&self) -> usize {
        self.nodes.iter().filter(|n| n.node.is_some()).count()
    }

    /// The node a pod is on (bound or assumed), by pod key.
    pub fn pod_node(&self, key: &str) -> Option<&str> {
        self.pod_node.get(key).map(String::as_str)
    }

    pub fn is_assumed(&self, key: &str) -> bool {
        self.assumed.contains(key)
    }

    /// Pods cluster-wide with any pod (anti-)affinity term.
    pub fn pods_with_affinity(&self) -> usize {
        self.pods_with_affinity
    }

    /// Pods cluster-wide with required pod anti-affinity.
    pub fn pods_with_required_anti_affinity(&self) -> usize {
        self.pods_with_required_anti_affinity
    }

    /// Labels of a namespace (for affinity `namespaceSelector`).
    pub fn namespace_labels(&self) -> &HashMap<String, BTreeMap<String, String>> {
        &self.namespace_labels
    }

    pub fn upsert_namespace(&mut self, name: &str, labels: BTreeMap<String, String>) {
        self.namespace_labels.insert(name.to_string(), labels);
    }

    pub fn remove_namespace(&mut self, name: &str) {
        self.namespace_labels.remove(name);
    }

    fn entry(&mut self, name: &str) -> &mut NodeInfo {
        let idx = match self.index.get(name) {
            Some(i) => *i,
            None => {
                self.nodes.push(NodeInfo {
                    name: name.to_string(),
                    ..Default::default()
                });
                self.index.insert(name.to_string(), self.nodes.len() - 1);
                self.nodes.len() - 1
            }
        };
        &mut self.nodes[idx]
    }

    /// Adds or replaces a node (watch add/update).
    pub fn upsert_node(&mut self, node: impl Into<Arc<Node>>) {
        let node = node.into();
        let Some(name) = node.metadata.name.clone() else {
            return;
        };
        self.entry(&name).set_node(node);
    }

    /// Removes a node (watch delete). Pods still bound to it keep a
    /// node-less entry until they are removed.
    pub fn remove_node(&mut self, name: &str) {
        let Some(&idx) = self.index.get(name) else {
            return;
        };
        if self.nodes[idx].pods.is_empty() {
            self.drop_entry(idx);
        } else {
            let ni = &mut self.nodes[idx];
            ni.node = None;
            ni.taints.clear();
            ni.allocatable = Resources::default();
            ni.allowed_pods = 0;
        }
    }

    fn drop_entry(&mut self, idx: usize) {
        let removed = self.nodes.swap_remove(idx);
        self.index.remove(&removed.name);
        if let Some(moved) = self.nodes.get(idx) {
            self.index.insert(moved.name.clone(), idx);
        }
    }

    /// Adds or replaces a pod from the watch. Unassigned or terminal pods
    /// are removed (except that an unbound copy of an assumed pod is
    /// ignored); a pod confirmed by the watch stops being "assumed".
    pub fn upsert_pod(&mut self, pod: impl Into<Arc<Pod>>) {
        let pod = pod.into();
        let key = pod_key(&pod);
        let node = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .filter(|n| !n.is_empty());
        if node.is_none() && !is_terminal(&pod) && self.assumed.contains(&key) {
            // A stale unbound copy must not undo `assume`.
            return;
        }
        self.remove_key(&key);
        self.assumed.remove(&key);
        match node {
            Some(node) if !is_terminal(&pod) => self.place(PodInfo::new(pod), node),
            _ => {}
        }
    }

    /// Removes a pod (watch delete).
    pub fn remove_pod(&mut self, pod: &Pod) {
        let key = pod_key(pod);
        self.remove_key(&key);
        self.assumed.remove(&key);
    }

    /// Records a pod as placed on `node` right after deciding, before the
    /// binding shows up in the watch, so the next decision sees it.
    pub fn assume(&mut self, pod: &Pod, node: &str) {
        let mut placed = pod.clone();
        placed.spec.get_or_insert_with(Default::default).node_name = Some(node.to_string());
        let key = pod_key(&placed);
        self.remove_key(&key);
        self.place(PodInfo::new(Arc::new(placed)), node.to_string());
        self.assumed.insert(key);
    }

    /// Undoes `assume` after a failed bind (no-op if the watch confirmed it).
    pub fn forget(&mut self, pod: &Pod) {
        let key = pod_key(pod);
        if self.assumed.remove(&key) {
            self.remove_key(&key);
        }
    }

    fn place(&mut self, pi: PodInfo, node: String) {
        self.pods_with_affinity += usize::from(pi.has_affinity);
        self.pods_with_required_anti_affinity += usize::from(pi.has_required_anti_affinity);
        self.pod_node.insert(pi.key.clone(), node.clone());
        self.entry(&node).add_pod(pi);
    }

    fn remove_key(&mut self, key: &str) {
        let Some(node) = self.pod_node.remove(key) else {
            return;
        };
        let Some(&idx) = self.index.get(&node) else {
            return;
        };
        let ni = &mut self.nodes[idx];
        if let Some(pi) = ni.remove_pod(key) {
            self.pods_with_affinity -= usize::from(pi.has_affinity);
            self.pods_with_required_anti_affinity -= usize::from(pi.has_required_anti_affinity);
        }
        if ni.node.is_none() && ni.pods.is_empty() {
            self.drop_entry(idx);
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        Container, ContainerPort, NodeCondition, NodeSpec, NodeStatus, PodSpec, PodStatus,
        ResourceRequirements,
    };
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    /// A ready node with the given cpu (millis), memory (Gi) and labels.
    pub(crate) fn make_node(name: &str, cpu_m: i64, mem_gi: i64, labels: &[(&str, &str)]) -> Node {
        let mut l: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        l.insert("kubernetes.io/hostname".into(), name.into());
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some(l),
                ..Default::default()
            },
            spec: Some(NodeSpec::default()),
            status: Some(NodeStatus {
                allocatable: Some(
                    [
                        ("cpu".to_string(), Quantity(format!("{cpu_m}m"))),
                        ("memory".to_string(), Quantity(format!("{mem_gi}Gi"))),
                        ("pods".to_string(), Quantity("110".into())),
                    ]
                    .into(),
                ),
                conditions: Some(vec![NodeCondition {
                    type_: "Ready".into(),
                    status: "True".into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        }
    }

    /// A pod requesting cpu (millis) and memory (Mi), optionally bound.
    pub(crate) fn make_pod(name: &str, cpu_m: i64, mem_mi: i64, node: Option<&str>) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                uid: Some(format!("uid-{name}")),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: node.map(str::to_string),
                containers: vec![Container {
                    name: "c".into(),
                    resources: Some(ResourceRequirements {
                        requests: Some(
                            [
                                ("cpu".to_string(), Quantity(format!("{cpu_m}m"))),
                                ("memory".to_string(), Quantity(format!("{mem_mi}Mi"))),
                            ]
                            .into(),
                        ),
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: None,
        }
    }

    #[test]
    fn sums_follow_pod_events() {
        let mut c = Cache::new();
        c.upsert_node(make_node("n1", 4000, 8, &[]));
        c.upsert_pod(make_pod("a", 500, 256, Some("n1")));
        c.upsert_pod(make_pod("b", 250, 256, Some("n1")));
        let n = c.node("n1").unwrap();
        assert_eq!(n.requested.milli_cpu, 750);
        assert_eq!(n.pods.len(), 2);
        // update in place: request change
        c.upsert_pod(make_pod("a", 100, 256, Some("n1")));
        assert_eq!(c.node("n1").unwrap().requested.milli_cpu, 350);
        // terminal pods leave
        let mut done = make_pod("b", 250, 256, Some("n1"));
        done.status = Some(PodStatus {
            phase: Some("Succeeded".into()),
            ..Default::default()
        });
        c.upsert_pod(done);
        assert_eq!(c.node("n1").unwrap().requested.milli_cpu, 100);
        c.remove_pod(&make_pod("a", 0, 0, None));
        let n = c.node("n1").unwrap();
        assert_eq!((n.requested.milli_cpu, n.pods.len()), (0, 0));
        assert_eq!(n.non_zero_cpu, 0);
    }

    #[test]
    fn assume_then_confirm_or_forget() {
        let mut c = Cache::new();
        c.upsert_node(make_node("n1", 4000, 8, &[]));
        let p = make_pod("a", 500, 256, None);
        c.assume(&p, "n1");
        assert!(c.is_assumed("uid-a"));
        c.upsert_pod(p.clone()); // stale unbound copy from the watch
        assert!(c.is_assumed("uid-a"));
        assert_eq!(c.node("n1").unwrap().requested.milli_cpu, 500);
        // the watch confirms
        c.upsert_pod(make_pod("a", 500, 256, Some("n1")));
        assert!(!c.is_assumed("uid-a"));
        c.forget(&p); // no-op once confirmed
        assert_eq!(c.node("n1").unwrap().pods.len(), 1);
        let q = make_pod("b", 100, 1, None);
        c.assume(&q, "n1");
        c.forget(&q);
        assert_eq!(c.node("n1").unwrap().pods.len(), 1);
    }

    #[test]
    fn node_removal_keeps_pods_until_gone() {
        let mut c = Cache::new();
        c.upsert_node(make_node("n1", 4000, 8, &[]));
        c.upsert_node(make_node("n2", 4000, 8, &[]));
        c.upsert_pod(make_pod("a", 500, 256, Some("n1")));
        c.remove_node("n1");
        assert_eq!(c.node_count(), 1);
        assert!(c.node("n1").unwrap().node.is_none());
        c.remove_pod(&make_pod("a", 0, 0, None));
        assert!(c.node("n1").is_none());
        assert_eq!(c.node("n2").unwrap().name, "n2");
        // pod on an unknown node creates a node-less entry, node arrives later
        c.upsert_pod(make_pod("z", 1, 1, Some("n3")));
        c.upsert_node(make_node("n3", 1000, 1, &[]));
        assert_eq!(c.node("n3").unwrap().requested.milli_cpu, 1);
    }

    #[test]
    fn not_ready_node_gets_taint_and_ports_conflict() {
        let mut n = make_node("n1", 1000, 1, &[]);
        n.status.as_mut().unwrap().conditions = None;
        let ni = NodeInfo::new(Arc::new(n));
        assert_eq!(ni.taints.len(), 1);
        let mut p = make_pod("a", 1, 1, Some("n1"));
        p.spec.as_mut().unwrap().containers[0].ports = Some(vec![ContainerPort {
            container_port: 80,
            host_port: Some(8080),
            ..Default::default()
        }]);
        let mut ni = ni;
        ni.add_pod(PodInfo::new(Arc::new(p)));
        let want = |ip: &str, proto: &str| HostPort {
            ip: ip.into(),
            protocol: proto.into(),
            port: 8080,
        };
        assert!(ni.port_in_use(&want("10.0.0.1", "TCP")));
        assert!(!ni.port_in_use(&want("0.0.0.0", "UDP")));
    }
}
