//! Node lifecycle: node health from heartbeats, controller-managed node
//! taints, NoExecute taint eviction and pod garbage collection — the pure
//! core of upstream's `nodelifecycle` controller, its taint-eviction
//! controller and `podgc`.
//!
//! Owns, per pass over a snapshot (nodes, node leases, pods) and `now`:
//! - node health: a node whose Ready heartbeat (or `kube-node-lease` Lease
//!   renewTime) has not *changed* for the grace period (40 s; 60 s while it
//!   never posted Ready) gets Ready/MemoryPressure/DiskPressure/PIDPressure
//!   set to `Unknown`. Staleness is measured with local observation times kept
//!   in [`State`], never with the remote timestamps (clock-skew safe);
//! - taints: `not-ready`/`unreachable` (NoSchedule + NoExecute), the pressure
//!   and `network-unavailable` NoSchedule taints from conditions, and
//!   `unschedulable:NoSchedule` mirrored from `spec.unschedulable`. When every
//!   node is not Ready ("full disruption") no NoExecute taint is kept, so a
//!   cluster-wide outage evicts nothing (upstream behaviour);
//! - taint eviction: pods not tolerating a NoExecute taint are deleted;
//!   pods tolerating it for `tolerationSeconds` are deleted when that expires;
//! - `MarkPodsNotReady`: pods on a node whose Ready is Unknown get Ready=False;
//! - pod GC: orphaned pods (node gone for 40 s), terminating pods on
//!   not-ready `out-of-service` nodes, unscheduled terminating pods, and
//!   terminated pods beyond a threshold (oldest, evicted first).
//!
//! Invariants: the output is a list of [`Action`]s to apply in order; the
//! function is idempotent for a given snapshot and state (re-running it after
//! a failed write re-issues what is still needed); nothing panics on objects
//! with missing fields.
//!
//! Must not: do I/O, read clocks, sleep, or rate-limit (the shell calls
//! [`plan`] on watch events and at least every `node_monitor_period`).

use crate::controllers::podutil::{
    chrono_to_time, is_terminal, time_to_chrono, timestamp_to_chrono,
};
use crate::scheduler::predicates::tolerates;
use chrono::{DateTime, Duration, Utc};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition, ObjectReference, Pod, PodCondition, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use std::collections::{BTreeMap, BTreeSet};

/// Namespace of the kubelet heartbeat leases.
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";
pub const TAINT_NOT_READY: &str = "node.kubernetes.io/not-ready";
pub const TAINT_UNREACHABLE: &str = "node.kubernetes.io/unreachable";
pub const TAINT_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";
pub const TAINT_MEMORY_PRESSURE: &str = "node.kubernetes.io/memory-pressure";
pub const TAINT_DISK_PRESSURE: &str = "node.kubernetes.io/disk-pressure";
pub const TAINT_PID_PRESSURE: &str = "node.kubernetes.io/pid-pressure";
pub const TAINT_NETWORK_UNAVAILABLE: &str = "node.kubernetes.io/network-unavailable";
pub const TAINT_OUT_OF_SERVICE: &str = "node.kubernetes.io/out-of-service";
/// Nodes with this label do not count when deciding "full disruption".
pub const LABEL_EXCLUDE_DISRUPTION: &str = "node.kubernetes.io/exclude-disruption";
/// `source.component` of node-health events.
pub const COMPONENT_NODE_CONTROLLER: &str = "node-controller";
/// `source.component` of taint-eviction events.
pub const COMPONENT_TAINT_EVICTION: &str = "taint-eviction-controller";

const NO_SCHEDULE: &str = "NoSchedule";
const NO_EXECUTE: &str = "NoExecute";
/// Conditions the controller turns Unknown (NetworkUnavailable is left alone).
const HEALTH_CONDITIONS: [&str; 4] = ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];
/// (condition type, status, taint key) giving the NoSchedule condition taints.
const CONDITION_TAINTS: [(&str, &str, &str); 6] = [
    ("Ready", "False", TAINT_NOT_READY),
    ("Ready", "Unknown", TAINT_UNREACHABLE),
    ("MemoryPressure", "True", TAINT_MEMORY_PRESSURE),
    ("DiskPressure", "True", TAINT_DISK_PRESSURE),
    ("NetworkUnavailable", "True", TAINT_NETWORK_UNAVAILABLE),
    ("PIDPressure", "True", TAINT_PID_PRESSURE),
];

/// Tunables (upstream kube-controller-manager defaults).
#[derive(Clone, Debug)]
pub struct Config {
    /// `--node-monitor-grace-period` (40 s).
    pub node_monitor_grace_period: Duration,
    /// `--node-startup-grace-period` (60 s), used while a node never posted Ready.
    pub node_startup_grace_period: Duration,
    /// `--node-monitor-period` (5 s): the longest `requeue_after` returned.
    pub node_monitor_period: Duration,
    /// `--terminated-pod-gc-threshold` (12 500); 0 disables that GC.
    pub terminated_pod_threshold: usize,
    /// How long a missing node must stay missing before its pods are GC'd (40 s).
    pub orphan_quarantine: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            node_monitor_grace_period: Duration::seconds(40),
            node_startup_grace_period: Duration::seconds(60),
            node_monitor_period: Duration::seconds(5),
            terminated_pod_threshold: 12_500,
            orphan_quarantine: Duration::seconds(40),
        }
    }
}

/// The objects one pass looks at (borrowed from the shell's caches).
/// Leases outside `kube-node-lease` are ignored.
#[derive(Clone, Copy, Debug, Default)]
pub struct Snapshot<'a> {
    pub nodes: &'a [&'a Node],
    pub leases: &'a [&'a Lease],
    pub pods: &'a [&'a Pod],
}

/// Memory kept by the shell between passes (start with `State::default()`;
/// losing it, e.g. on restart, only restarts the grace periods).
#[derive(Clone, Debug, Default)]
pub struct State {
    nodes: BTreeMap<String, NodeHealth>,
    evictions: BTreeMap<PodKey, DateTime<Utc>>,
    missing_nodes: BTreeMap<String, DateTime<Utc>>,
    full_disruption: bool,
}

impl State {
    /// Local time at which a heartbeat of `node` was last observed to change.
    pub fn last_observed_heartbeat(&self, node: &str) -> Option<DateTime<Utc>> {
        self.nodes.get(node).map(|h| h.probe)
    }

    /// Whether the last pass saw every node not Ready (evictions suspended).
    pub fn in_full_disruption(&self) -> bool {
        self.full_disruption
    }
}

/// What was last seen of one node's heartbeats, with local observation time.
#[derive(Clone, Debug)]
struct NodeHealth {
    /// Local time of the last observed heartbeat change.
    probe: DateTime<Utc>,
    /// `lastHeartbeatTime` of the Ready condition last seen (None: no Ready).
    ready_heartbeat: Option<Option<Time>>,
    /// renewTime of the lease last seen (None: no lease seen yet).
    lease_renew: Option<Option<DateTime<Utc>>>,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct PodKey {
    namespace: String,
    name: String,
    uid: String,
}

/// An event to record (the shell fills in timestamps, counts, reporting fields).
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub regarding: ObjectReference,
    /// "Normal" or "Warning".
    pub type_: &'static str,
    pub reason: &'static str,
    pub message: String,
    /// `source.component`.
    pub component: &'static str,
}

/// One write for the shell, applied in the order given.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Replace the node's status (`PUT nodes/{name}/status`); the object keeps
    /// the snapshot's resourceVersion, so a concurrent kubelet write makes it
    /// fail with 409 and the next pass retries.
    UpdateNodeStatus(Box<Node>),
    /// Set `spec.taints` to exactly `taints` (merge patch
    /// `{"metadata":{"resourceVersion":rv},"spec":{"taints":[...]}}`). If this
    /// batch already wrote the node, use the resourceVersion that write returned.
    SetNodeTaints {
        node: String,
        resource_version: Option<String>,
        taints: Vec<Taint>,
    },
    /// Replace the pod's status (`PUT pods/{ns}/{name}/status`), resourceVersion kept.
    UpdatePodStatus(Box<Pod>),
    /// Delete the pod (precondition uid when given). `grace_period_seconds`
    /// None = the pod's own grace period; Some(0) = force delete (PodGC).
    DeletePod {
        namespace: String,
        name: String,
        uid: Option<String>,
        grace_period_seconds: Option<i64>,
    },
    Event(Event),
}

/// The result of a pass.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    pub actions: Vec<Action>,
    /// Call again after this long at the latest (≤ `node_monitor_period`):
    /// the earliest grace-period expiry, scheduled eviction or quarantine end.
    pub requeue_after: Option<Duration>,
}

/// One full pass: node health, taints, taint eviction, pods-not-ready, pod GC.
pub fn plan(snap: &Snapshot, state: &mut State, cfg: &Config, now: DateTime<Utc>) -> Plan {
    plan_scoped(snap.nodes, snap.leases, state, cfg, now, |_| {
        snap.pods.to_vec()
    })
}

/// What the node part of a pass decided, for choosing the pods the pod part
/// must see. The pod part gives the same actions for a subset of the pods
/// as for all of them when the subset holds at least every pod that
/// - is bound to a node [`PodScope::watched_nodes`] names (not Ready, or
///   NoExecute / out-of-service tainted, after this pass's node updates),
/// - is bound to a node that does not exist ([`PodScope::has_node`] false),
/// - is terminal or terminating, or
/// - has a pending taint eviction ([`PodScope::evicting`]).
///
/// Every other pod is on a Ready, untainted node and needs nothing.
pub struct PodScope<'s> {
    views: &'s [NodeView<'s>],
    names: BTreeSet<&'s str>,
    evictions: &'s BTreeMap<PodKey, DateTime<Utc>>,
}

impl PodScope<'_> {
    /// Names of the nodes whose pods the pod part must see.
    pub fn watched_nodes(&self) -> impl Iterator<Item = &str> + '_ {
        self.views
            .iter()
            .filter(|v| view_needs_pods(v))
            .map(|v| node_name(v.node))
    }

    /// Whether the node exists (its pods are not orphans).
    pub fn has_node(&self, name: &str) -> bool {
        self.names.contains(name)
    }

    /// (namespace, name) of the pods with a taint eviction pending.
    pub fn evicting(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.evictions
            .keys()
            .map(|k| (k.namespace.as_str(), k.name.as_str()))
    }
}

/// Whether a node's pods can need an action: not Ready=True, or carrying a
/// NoExecute or out-of-service taint.
fn view_needs_pods(v: &NodeView) -> bool {
    v.ready_status() != Some("True")
        || v.taints
            .iter()
            .any(|t| t.effect == NO_EXECUTE || t.key == TAINT_OUT_OF_SERVICE)
}

/// Whether a pod must be seen by every pass whatever its node (terminal or
/// terminating); see [`PodScope`].
pub fn pod_always_in_scope(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some() || is_terminal(pod)
}

/// [`plan`] with the pods chosen after the node part: `pods` gets the
/// [`PodScope`] and returns the pods the pod part looks at (see there for
/// what they must include).
pub fn plan_scoped<P: std::ops::Deref<Target = Pod>>(
    nodes: &[&Node],
    leases: &[&Lease],
    state: &mut State,
    cfg: &Config,
    now: DateTime<Utc>,
    pods: impl FnOnce(&PodScope<'_>) -> Vec<P>,
) -> Plan {
    let mut pass = Pass::new(now, cfg);
    let leases = lease_index(leases);
    track_node_set(nodes, state, &mut pass);
    let views: Vec<NodeView> = nodes
        .iter()
        .map(|n| node_health_pass(n, leases.get(node_name(n)).copied(), state, &mut pass))
        .collect();
    update_disruption(&views, state, now);
    let views: Vec<NodeView> = views
        .into_iter()
        .map(|v| node_taint_pass(v, state.full_disruption, &mut pass))
        .collect();
    let pods = pods(&PodScope {
        views: &views,
        names: views.iter().map(|v| node_name(v.node)).collect(),
        evictions: &state.evictions,
    });
    let pods: Vec<&Pod> = pods.iter().map(|p| &**p).collect();
    pod_pass(&pods, &views, state, &mut pass);
    pass.finish()
}

/// Accumulates actions, per-pod status edits and the next deadline.
struct Pass<'c> {
    now: DateTime<Utc>,
    cfg: &'c Config,
    node_actions: Vec<Action>,
    pod_status: BTreeMap<PodKey, Pod>,
    pod_actions: Vec<Action>,
    deleted: BTreeSet<PodKey>,
    next: Option<DateTime<Utc>>,
}

impl<'c> Pass<'c> {
    fn new(now: DateTime<Utc>, cfg: &'c Config) -> Self {
        Self {
            now,
            cfg,
            node_actions: Vec::new(),
            pod_status: BTreeMap::new(),
            pod_actions: Vec::new(),
            deleted: BTreeSet::new(),
            next: None,
        }
    }

    fn wake_at(&mut self, t: DateTime<Utc>) {
        if t > self.now && self.next.is_none_or(|n| t < n) {
            self.next = Some(t);
        }
    }

    /// The pod as edited so far in this pass (starts from the snapshot copy).
    fn edit_pod(&mut self, pod: &Pod) -> &mut Pod {
        self.pod_status
            .entry(pod_key(pod))
            .or_insert_with(|| pod.clone())
    }

    /// Sets a condition on the pod's pending status write, if it changes anything.
    fn set_condition(&mut self, pod: &Pod, cond: &PodCondition) {
        let key = pod_key(pod);
        let current = self.pod_status.get(&key).unwrap_or(pod);
        if let Some(conds) = set_pod_condition(current, cond, self.now) {
            let edited = self.edit_pod(pod);
            edited
                .status
                .get_or_insert_with(Default::default)
                .conditions = Some(conds);
        }
    }

    fn delete_pod(&mut self, pod: &Pod, grace: Option<i64>) {
        let key = pod_key(pod);
        if !self.deleted.insert(key.clone()) {
            return;
        }
        self.pod_actions.push(Action::DeletePod {
            namespace: key.namespace,
            name: key.name,
            uid: pod.metadata.uid.clone(),
            grace_period_seconds: grace,
        });
    }

    fn finish(self) -> Plan {
        let mut actions = self.node_actions;
        let status_first: Vec<Action> = self
            .pod_status
            .into_values()
            .map(|p| Action::UpdatePodStatus(Box::new(p)))
            .collect();
        actions.extend(status_first);
        actions.extend(self.pod_actions);
        let cap = self.cfg.node_monitor_period;
        let requeue = self.next.map(|t| (t - self.now).min(cap)).unwrap_or(cap);
        Plan {
            actions,
            requeue_after: Some(requeue),
        }
    }
}

/// What the rest of the pass needs to know about one node.
struct NodeView<'a> {
    node: &'a Node,
    /// Conditions after this pass's health update.
    conditions: Vec<NodeCondition>,
    /// Taints after this pass's taint update.
    taints: Vec<Taint>,
}

impl NodeView<'_> {
    fn ready_status(&self) -> Option<&str> {
        condition_status(&self.conditions, "Ready")
    }
}

// ---------------------------------------------------------------- nodes

fn lease_index<'a>(leases: &[&'a Lease]) -> BTreeMap<&'a str, &'a Lease> {
    leases
        .iter()
        .filter(|l| {
            l.metadata
                .namespace
                .as_deref()
                .is_none_or(|ns| ns == NODE_LEASE_NAMESPACE)
        })
        .filter_map(|l| Some((l.metadata.name.as_deref()?, *l)))
        .collect()
}

/// RegisteredNode / RemovingNode events, and forgetting deleted nodes.
fn track_node_set(nodes: &[&Node], state: &mut State, pass: &mut Pass) {
    let present: BTreeSet<&str> = nodes.iter().map(|n| node_name(n)).collect();
    for n in nodes {
        if !state.nodes.contains_key(node_name(n)) {
            let msg = format!("Registered Node {} in Controller", node_name(n));
            pass.node_actions
                .push(node_event(n, "Normal", "RegisteredNode", &msg));
        }
    }
    let gone: Vec<String> = state
        .nodes
        .keys()
        .filter(|k| !present.contains(k.as_str()))
        .cloned()
        .collect();
    for name in gone {
        state.nodes.remove(&name);
        let reference = ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Node".into()),
            name: Some(name.clone()),
            ..Default::default()
        };
        pass.node_actions.push(Action::Event(Event {
            regarding: reference,
            type_: "Normal",
            reason: "RemovingNode",
            message: format!("Node {name} event: Removing Node {name} from Controller"),
            component: COMPONENT_NODE_CONTROLLER,
        }));
    }
}

/// Updates the observation record of one node (upstream `tryUpdateNodeHealth`
/// bookkeeping) and returns its local "last heartbeat" time.
fn observe_heartbeat(
    prev: Option<&NodeHealth>,
    node: &Node,
    lease: Option<&Lease>,
    now: DateTime<Utc>,
) -> NodeHealth {
    let ready =
        find_condition(node_conditions(node), "Ready").map(|c| c.last_heartbeat_time.clone());
    let mut h = match (prev, &ready) {
        (None, None) => NodeHealth {
            probe: creation_time(node).unwrap_or(now),
            ready_heartbeat: None,
            lease_renew: None,
        },
        (None, Some(_)) => NodeHealth {
            probe: now,
            ready_heartbeat: ready.clone(),
            lease_renew: None,
        },
        (Some(p), None) => NodeHealth {
            ready_heartbeat: None,
            ..p.clone()
        },
        (Some(p), Some(hb)) => {
            let changed = p.ready_heartbeat.as_ref() != Some(hb);
            NodeHealth {
                probe: if changed { now } else { p.probe },
                ready_heartbeat: ready.clone(),
                lease_renew: p.lease_renew,
            }
        }
    };
    if let Some(l) = lease {
        let renew = lease_renew_time(l);
        if h.lease_renew.is_none_or(|saved| saved < renew) {
            h.lease_renew = Some(renew);
            h.probe = now;
        }
    }
    h
}

/// Health step for one node: observe, and mark Unknown when the heartbeat is stale.
fn node_health_pass<'a>(
    node: &'a Node,
    lease: Option<&Lease>,
    state: &mut State,
    pass: &mut Pass,
) -> NodeView<'a> {
    let name = node_name(node).to_string();
    let health = observe_heartbeat(state.nodes.get(&name), node, lease, pass.now);
    let conditions = node_conditions(node).to_vec();
    let has_ready = find_condition(&conditions, "Ready").is_some();
    let grace = if has_ready {
        pass.cfg.node_monitor_grace_period
    } else {
        pass.cfg.node_startup_grace_period
    };
    let deadline = health.probe + grace;
    let mut view = NodeView {
        node,
        conditions,
        taints: node_taints(node).to_vec(),
    };
    state.nodes.insert(name, health);
    if pass.now <= deadline {
        pass.wake_at(deadline + Duration::milliseconds(1));
        return view;
    }
    let was_ready = view.ready_status() == Some("True");
    if let Some(new) = unknown_conditions(node, pass.now) {
        let mut updated = node.clone();
        updated
            .status
            .get_or_insert_with(Default::default)
            .conditions = Some(new.clone());
        pass.node_actions
            .push(Action::UpdateNodeStatus(Box::new(updated)));
        view.conditions = new;
        if let Some(h) = state.nodes.get_mut(node_name(node)) {
            h.ready_heartbeat =
                find_condition(&view.conditions, "Ready").map(|c| c.last_heartbeat_time.clone());
        }
    }
    if was_ready && view.ready_status() != Some("True") {
        let msg = format!("Node {} status is now: NodeNotReady", node_name(node));
        pass.node_actions
            .push(status_event(node, "NodeNotReady", msg));
    }
    view
}

/// The node's conditions with the health ones forced to Unknown, or None when
/// they already are (upstream: "Kubelet stopped/never posted node status.").
pub fn unknown_conditions(node: &Node, now: DateTime<Utc>) -> Option<Vec<NodeCondition>> {
    let mut conds = node_conditions(node).to_vec();
    let mut changed = false;
    for ty in HEALTH_CONDITIONS {
        match conds.iter_mut().find(|c| c.type_ == ty) {
            None => {
                conds.push(NodeCondition {
                    type_: ty.to_string(),
                    status: "Unknown".into(),
                    reason: Some("NodeStatusNeverUpdated".into()),
                    message: Some("Kubelet never posted node status.".into()),
                    last_heartbeat_time: node.metadata.creation_timestamp.clone(),
                    last_transition_time: Some(chrono_to_time(now)),
                });
                changed = true;
            }
            Some(c) if c.status != "Unknown" => {
                c.status = "Unknown".into();
                c.reason = Some("NodeStatusUnknown".into());
                c.message = Some("Kubelet stopped posting node status.".into());
                c.last_transition_time = Some(chrono_to_time(now));
                changed = true;
            }
            Some(_) => {}
        }
    }
    changed.then_some(conds)
}

/// Full disruption = every counted node is not Ready. Leaving it restarts
/// every node's grace period (upstream resets probe timestamps).
fn update_disruption(views: &[NodeView], state: &mut State, now: DateTime<Utc>) {
    let counted: Vec<&NodeView> = views
        .iter()
        .filter(|v| !has_label(v.node, LABEL_EXCLUDE_DISRUPTION))
        .collect();
    let full = !counted.is_empty() && counted.iter().all(|v| v.ready_status() != Some("True"));
    if state.full_disruption && !full {
        for h in state.nodes.values_mut() {
            h.probe = now;
        }
    }
    state.full_disruption = full;
}

/// The controller-managed taints the node should carry.
/// `None` for NoExecute means "leave the existing ones alone" (no Ready condition).
fn desired_taints(
    view: &NodeView,
    full_disruption: bool,
) -> (Vec<&'static str>, Option<Vec<&'static str>>) {
    let mut no_schedule: Vec<&'static str> = CONDITION_TAINTS
        .iter()
        .filter(|(ty, st, _)| condition_status(&view.conditions, ty) == Some(*st))
        .map(|(_, _, key)| *key)
        .collect();
    if view.node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true) {
        no_schedule.push(TAINT_UNSCHEDULABLE);
    }
    let no_execute = view.ready_status().map(|st| match (st, full_disruption) {
        (_, true) => vec![],
        ("False", _) => vec![TAINT_NOT_READY],
        ("Unknown", _) => vec![TAINT_UNREACHABLE],
        _ => vec![],
    });
    (no_schedule, no_execute)
}

fn is_managed(t: &Taint, include_no_execute: bool) -> bool {
    match t.effect.as_str() {
        NO_SCHEDULE => {
            t.key == TAINT_UNSCHEDULABLE || CONDITION_TAINTS.iter().any(|(_, _, k)| *k == t.key)
        }
        NO_EXECUTE => {
            include_no_execute && (t.key == TAINT_NOT_READY || t.key == TAINT_UNREACHABLE)
        }
        _ => false,
    }
}

/// `current` with managed taints reconciled to the desired (key, effect) set:
/// kept ones keep their value and timeAdded, new ones get timeAdded = now,
/// foreign taints are untouched.
pub fn reconcile_taints(
    current: &[Taint],
    no_schedule: &[&str],
    no_execute: Option<&[&str]>,
    now: DateTime<Utc>,
) -> Vec<Taint> {
    let wanted = |t: &Taint| match t.effect.as_str() {
        NO_SCHEDULE => no_schedule.contains(&t.key.as_str()),
        _ => no_execute.is_some_and(|ne| ne.contains(&t.key.as_str())),
    };
    let mut out: Vec<Taint> = Vec::with_capacity(current.len() + 2);
    for t in current {
        let managed = is_managed(t, no_execute.is_some());
        let dup = out.iter().any(|o| o.key == t.key && o.effect == t.effect);
        if !managed || (wanted(t) && !dup) {
            out.push(t.clone());
        }
    }
    let adds = no_schedule
        .iter()
        .map(|k| (*k, NO_SCHEDULE))
        .chain(no_execute.unwrap_or(&[]).iter().map(|k| (*k, NO_EXECUTE)));
    for (key, effect) in adds {
        if !out.iter().any(|o| o.key == key && o.effect == effect) {
            out.push(Taint {
                key: key.to_string(),
                effect: effect.to_string(),
                value: None,
                time_added: Some(chrono_to_time(now)),
            });
        }
    }
    out
}

fn node_taint_pass<'a>(
    mut view: NodeView<'a>,
    full_disruption: bool,
    pass: &mut Pass,
) -> NodeView<'a> {
    let (ns, ne) = desired_taints(&view, full_disruption);
    let taints = reconcile_taints(&view.taints, &ns, ne.as_deref(), pass.now);
    if taints != view.taints {
        pass.node_actions.push(Action::SetNodeTaints {
            node: node_name(view.node).to_string(),
            resource_version: view.node.metadata.resource_version.clone(),
            taints: taints.clone(),
        });
        view.taints = taints;
    }
    view
}

// ---------------------------------------------------------------- pods

fn pod_pass(pods: &[&Pod], views: &[NodeView], state: &mut State, pass: &mut Pass) {
    let by_name: BTreeMap<&str, &NodeView> = views.iter().map(|v| (node_name(v.node), v)).collect();
    let mut live: BTreeSet<PodKey> = BTreeSet::new();
    for pod in pods {
        let Some(view) = pod_node(pod).and_then(|n| by_name.get(n)) else {
            continue;
        };
        live.insert(pod_key(pod));
        taint_eviction(pod, view, state, pass);
        mark_not_ready(pod, view, pass);
    }
    state.evictions.retain(|k, _| live.contains(k));
    gc_terminated(pods, pass);
    gc_terminating_out_of_service(pods, &by_name, pass);
    gc_orphaned(pods, &by_name, state, pass);
    gc_unscheduled_terminating(pods, pass);
}

/// Taint manager step for one pod on an existing node.
fn taint_eviction(pod: &Pod, view: &NodeView, state: &mut State, pass: &mut Pass) {
    let key = pod_key(pod);
    if pod.metadata.deletion_timestamp.is_some() {
        state.evictions.remove(&key);
        return;
    }
    let taints: Vec<&Taint> = view
        .taints
        .iter()
        .filter(|t| t.effect == NO_EXECUTE)
        .collect();
    let decision = eviction_decision(pod, &taints);
    let fire = match decision {
        Eviction::Keep => return cancel_eviction(pod, state, pass),
        Eviction::Now => pass.now,
        Eviction::After(secs) => {
            let start = *state
                .evictions
                .entry(key.clone())
                .or_insert_with(|| eviction_start(pod, &taints, pass.now));
            start + Duration::seconds(secs)
        }
    };
    if fire > pass.now {
        pass.wake_at(fire);
        return;
    }
    state.evictions.remove(&key);
    evict(pod, pass);
}

/// What the taint manager does with a pod (upstream `processPodOnNode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Eviction {
    /// No NoExecute taint, or all tolerated forever.
    Keep,
    /// Some NoExecute taint is not tolerated (or tolerated for ≤ 0 s).
    Now,
    /// All tolerated; the shortest `tolerationSeconds` of the matching tolerations.
    After(i64),
}

/// Matches each NoExecute taint with the first toleration that tolerates it.
pub fn eviction_decision(pod: &Pod, no_execute: &[&Taint]) -> Eviction {
    if no_execute.is_empty() {
        return Eviction::Keep;
    }
    let tolerations = pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or(&[]);
    let mut min: Option<i64> = None;
    for taint in no_execute {
        let Some(tol) = tolerations.iter().find(|t| tolerates(t, taint)) else {
            return Eviction::Now;
        };
        if let Some(s) = tol.toleration_seconds {
            min = Some(min.map_or(s, |m| m.min(s)));
        }
    }
    match min {
        None => Eviction::Keep,
        Some(s) if s <= 0 => Eviction::Now,
        Some(s) => Eviction::After(s),
    }
}

/// When the toleration clock of a newly seen pod starts: the earliest
/// timeAdded of the node's NoExecute taints, but not before the pod was
/// created and not after `now`.
fn eviction_start(pod: &Pod, taints: &[&Taint], now: DateTime<Utc>) -> DateTime<Utc> {
    let tainted = taints
        .iter()
        .filter_map(|t| t.time_added.as_ref().map(time_to_chrono))
        .min()
        .unwrap_or(now);
    let created = pod
        .metadata
        .creation_timestamp
        .as_ref()
        .map(time_to_chrono)
        .unwrap_or(tainted);
    tainted.max(created).min(now)
}

fn cancel_eviction(pod: &Pod, state: &mut State, pass: &mut Pass) {
    if state.evictions.remove(&pod_key(pod)).is_some() {
        let msg = format!("Cancelling deletion of Pod {}", ns_name(pod));
        pass.pod_actions.push(pod_event(
            pod,
            "Normal",
            "TaintManagerEviction",
            msg,
            COMPONENT_TAINT_EVICTION,
        ));
    }
}

fn evict(pod: &Pod, pass: &mut Pass) {
    let msg = format!("Marking for deletion Pod {}", ns_name(pod));
    pass.pod_actions.push(pod_event(
        pod,
        "Normal",
        "TaintManagerEviction",
        msg,
        COMPONENT_TAINT_EVICTION,
    ));
    let cond = disruption_condition(
        "DeletionByTaintManager",
        "Taint manager: deleting due to NoExecute taint",
    );
    pass.set_condition(pod, &cond);
    pass.delete_pod(pod, None);
}

/// Upstream `MarkPodsNotReady` for a node the controller found unresponsive.
fn mark_not_ready(pod: &Pod, view: &NodeView, pass: &mut Pass) {
    if view.ready_status() != Some("Unknown") {
        return;
    }
    let ready = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"));
    let Some(ready) = ready.filter(|c| c.status != "False") else {
        return;
    };
    let cond = PodCondition {
        status: "False".into(),
        ..ready.clone()
    };
    pass.set_condition(pod, &cond);
    pass.pod_actions.push(pod_event(
        pod,
        "Warning",
        "NodeNotReady",
        "Node is not ready".into(),
        COMPONENT_NODE_CONTROLLER,
    ));
}

/// The pod's conditions with `cond` set like upstream `UpdatePodCondition`
/// (transition time moves only when the status changes), or None if unchanged.
pub fn set_pod_condition(
    pod: &Pod,
    cond: &PodCondition,
    now: DateTime<Utc>,
) -> Option<Vec<PodCondition>> {
    let mut conds = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    match conds.iter_mut().find(|c| c.type_ == cond.type_) {
        None => conds.push(PodCondition {
            last_transition_time: Some(chrono_to_time(now)),
            ..cond.clone()
        }),
        Some(old) => {
            let status_changed = old.status != cond.status;
            if !status_changed && old.reason == cond.reason && old.message == cond.message {
                return None;
            }
            let transition = if status_changed {
                Some(chrono_to_time(now))
            } else {
                old.last_transition_time.clone()
            };
            *old = PodCondition {
                last_transition_time: transition,
                last_probe_time: old.last_probe_time.clone(),
                ..cond.clone()
            };
        }
    }
    Some(conds)
}

fn disruption_condition(reason: &str, message: &str) -> PodCondition {
    PodCondition {
        type_: "DisruptionTarget".into(),
        status: "True".into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        ..Default::default()
    }
}

// ---------------------------------------------------------------- pod GC

/// PodGC `markFailedAndDeletePod`: phase Failed (+ condition) unless already
/// terminal, then force delete.
fn gc_delete(pod: &Pod, cond: Option<PodCondition>, pass: &mut Pass) {
    if pass.deleted.contains(&pod_key(pod)) {
        return;
    }
    if !is_terminal(pod) {
        if let Some(c) = cond {
            pass.set_condition(pod, &c);
        }
        let status = pass
            .edit_pod(pod)
            .status
            .get_or_insert_with(Default::default);
        status.phase = Some("Failed".into());
    }
    pass.delete_pod(pod, Some(0));
}

/// Terminated pods beyond the threshold, evicted ones first, then oldest.
fn gc_terminated(pods: &[&Pod], pass: &mut Pass) {
    let threshold = pass.cfg.terminated_pod_threshold;
    if threshold == 0 {
        return;
    }
    let mut done: Vec<&Pod> = pods.iter().copied().filter(|p| is_terminal(p)).collect();
    if done.len() <= threshold {
        return;
    }
    let excess = done.len() - threshold;
    done.sort_by_key(|p| (!is_evicted(p), creation_time(*p), p.metadata.name.clone()));
    for p in done.into_iter().take(excess) {
        gc_delete(p, None, pass);
    }
}

fn gc_terminating_out_of_service(
    pods: &[&Pod],
    nodes: &BTreeMap<&str, &NodeView>,
    pass: &mut Pass,
) {
    for pod in pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_some())
    {
        let Some(view) = pod_node(pod).and_then(|n| nodes.get(n)) else {
            continue;
        };
        let oos = view.taints.iter().any(|t| t.key == TAINT_OUT_OF_SERVICE);
        if oos && view.ready_status() != Some("True") {
            gc_delete(pod, None, pass);
        }
    }
}

/// Pods bound to a node that has been missing for the quarantine period.
fn gc_orphaned(
    pods: &[&Pod],
    nodes: &BTreeMap<&str, &NodeView>,
    state: &mut State,
    pass: &mut Pass,
) {
    let missing: BTreeSet<&str> = pods
        .iter()
        .filter_map(|p| pod_node(p))
        .filter(|n| !nodes.contains_key(n))
        .collect();
    state
        .missing_nodes
        .retain(|n, _| missing.contains(n.as_str()));
    for n in &missing {
        state.missing_nodes.entry(n.to_string()).or_insert(pass.now);
    }
    let cond = disruption_condition("DeletionByPodGC", "PodGC: node no longer exists");
    for pod in pods {
        let Some(since) = pod_node(pod).and_then(|n| state.missing_nodes.get(n)) else {
            continue;
        };
        let due = *since + pass.cfg.orphan_quarantine;
        if pass.now >= due {
            gc_delete(pod, Some(cond.clone()), pass);
        } else {
            pass.wake_at(due);
        }
    }
}

fn gc_unscheduled_terminating(pods: &[&Pod], pass: &mut Pass) {
    for pod in pods {
        if pod.metadata.deletion_timestamp.is_some() && pod_node(pod).is_none() {
            gc_delete(pod, None, pass);
        }
    }
}

// ---------------------------------------------------------------- helpers

fn node_name(node: &Node) -> &str {
    node.metadata.name.as_deref().unwrap_or("")
}

fn node_conditions(node: &Node) -> &[NodeCondition] {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or(&[])
}

fn node_taints(node: &Node) -> &[Taint] {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or(&[])
}

fn find_condition<'a>(conds: &'a [NodeCondition], ty: &str) -> Option<&'a NodeCondition> {
    conds.iter().find(|c| c.type_ == ty)
}

fn condition_status<'a>(conds: &'a [NodeCondition], ty: &str) -> Option<&'a str> {
    find_condition(conds, ty).map(|c| c.status.as_str())
}

fn has_label(node: &Node, key: &str) -> bool {
    node.metadata
        .labels
        .as_ref()
        .is_some_and(|l| l.contains_key(key))
}

fn creation_time<
    T: k8s_openapi::Metadata<Ty = k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>,
>(
    obj: &T,
) -> Option<DateTime<Utc>> {
    obj.metadata()
        .creation_timestamp
        .as_ref()
        .map(time_to_chrono)
}

fn lease_renew_time(lease: &Lease) -> Option<DateTime<Utc>> {
    lease
        .spec
        .as_ref()
        .and_then(|s| s.renew_time.as_ref())
        .map(|t| timestamp_to_chrono(&t.0))
}

fn pod_node(pod: &Pod) -> Option<&str> {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .filter(|n| !n.is_empty())
}

fn pod_key(pod: &Pod) -> PodKey {
    PodKey {
        namespace: pod.metadata.namespace.clone().unwrap_or_default(),
        name: pod.metadata.name.clone().unwrap_or_default(),
        uid: pod.metadata.uid.clone().unwrap_or_default(),
    }
}

fn ns_name(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or(""),
        pod.metadata.name.as_deref().unwrap_or("")
    )
}

/// Kubelet eviction marks pods Failed with reason "Evicted".
fn is_evicted(pod: &Pod) -> bool {
    pod.status.as_ref().is_some_and(|s| {
        s.phase.as_deref() == Some("Failed") && s.reason.as_deref() == Some("Evicted")
    })
}

fn pod_event(
    pod: &Pod,
    type_: &'static str,
    reason: &'static str,
    message: String,
    component: &'static str,
) -> Action {
    Action::Event(Event {
        regarding: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            namespace: pod.metadata.namespace.clone(),
            name: pod.metadata.name.clone(),
            uid: pod.metadata.uid.clone(),
            ..Default::default()
        },
        type_,
        reason,
        message,
        component,
    })
}

fn node_ref(node: &Node) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Node".into()),
        name: node.metadata.name.clone(),
        uid: node.metadata.uid.clone(),
        ..Default::default()
    }
}

/// Upstream `RecordNodeEvent`: "Node X event: <what>".
fn node_event(node: &Node, type_: &'static str, reason: &'static str, what: &str) -> Action {
    Action::Event(Event {
        regarding: node_ref(node),
        type_,
        reason,
        message: format!("Node {} event: {}", node_name(node), what),
        component: COMPONENT_NODE_CONTROLLER,
    })
}

/// Upstream `RecordNodeStatusChange`: "Node X status is now: <status>".
fn status_event(node: &Node, reason: &'static str, message: String) -> Action {
    Action::Event(Event {
        regarding: node_ref(node),
        type_: "Normal",
        reason,
        message,
        component: COMPONENT_NODE_CONTROLLER,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::podutil::chrono_to_timestamp;
    use k8s_openapi::api::coordination::v1::LeaseSpec;
    use k8s_openapi::api::core::v1::{NodeSpec, NodeStatus, PodSpec, PodStatus, Toleration};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + secs, 0).unwrap()
    }

    fn cond(ty: &str, status: &str, heartbeat: i64) -> NodeCondition {
        NodeCondition {
            type_: ty.into(),
            status: status.into(),
            last_heartbeat_time: Some(chrono_to_time(t(heartbeat))),
            last_transition_time: Some(chrono_to_time(t(-1000))),
            reason: Some("KubeletReady".into()),
            message: None,
        }
    }

    fn node(name: &str, conds: Vec<NodeCondition>, taints: Vec<Taint>) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                uid: Some(format!("uid-{name}")),
                resource_version: Some("7".into()),
                creation_timestamp: Some(chrono_to_time(t(-2000))),
                ..Default::default()
            },
            spec: Some(NodeSpec {
                taints: (!taints.is_empty()).then_some(taints),
                ..Default::default()
            }),
            status: Some(NodeStatus {
                conditions: (!conds.is_empty()).then_some(conds),
                ..Default::default()
            }),
        }
    }

    fn ready_node(name: &str, status: &str) -> Node {
        node(
            name,
            vec![
                cond("Ready", status, -100),
                cond("MemoryPressure", "False", -100),
            ],
            vec![],
        )
    }

    fn lease(name: &str, renew: i64) -> Lease {
        Lease {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(NODE_LEASE_NAMESPACE.into()),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                renew_time: Some(MicroTime(chrono_to_timestamp(t(renew)))),
                ..Default::default()
            }),
        }
    }

    fn taint(key: &str, effect: &str, added: Option<i64>) -> Taint {
        Taint {
            key: key.into(),
            effect: effect.into(),
            value: None,
            time_added: added.map(|s| chrono_to_time(t(s))),
        }
    }

    fn toleration(key: &str, seconds: Option<i64>) -> Toleration {
        Toleration {
            key: Some(key.into()),
            operator: Some("Exists".into()),
            effect: Some(NO_EXECUTE.into()),
            toleration_seconds: seconds,
            ..Default::default()
        }
    }

    fn pod(name: &str, node: &str, tolerations: Vec<Toleration>) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                uid: Some(format!("uid-{name}")),
                creation_timestamp: Some(chrono_to_time(t(-500))),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: (!node.is_empty()).then(|| node.to_string()),
                tolerations: Some(tolerations),
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: Some("Running".into()),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: "True".into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        }
    }

    fn run(nodes: &[Node], leases: &[Lease], pods: &[Pod], state: &mut State, now: i64) -> Plan {
        let nodes: Vec<&Node> = nodes.iter().collect();
        let leases: Vec<&Lease> = leases.iter().collect();
        let pods: Vec<&Pod> = pods.iter().collect();
        let snap = Snapshot {
            nodes: &nodes,
            leases: &leases,
            pods: &pods,
        };
        plan(&snap, state, &Config::default(), t(now))
    }

    fn status_updates(p: &Plan) -> Vec<&Node> {
        p.actions
            .iter()
            .filter_map(|a| match a {
                Action::UpdateNodeStatus(n) => Some(n.as_ref()),
                _ => None,
            })
            .collect()
    }

    fn taints_set(p: &Plan, name: &str) -> Option<Vec<(String, String)>> {
        p.actions.iter().find_map(|a| match a {
            Action::SetNodeTaints { node, taints, .. } if node == name => Some(
                taints
                    .iter()
                    .map(|t| (t.key.clone(), t.effect.clone()))
                    .collect(),
            ),
            _ => None,
        })
    }

    fn deleted(p: &Plan) -> Vec<(String, Option<i64>)> {
        p.actions
            .iter()
            .filter_map(|a| match a {
                Action::DeletePod {
                    name,
                    grace_period_seconds,
                    ..
                } => Some((name.clone(), *grace_period_seconds)),
                _ => None,
            })
            .collect()
    }

    fn events(p: &Plan) -> Vec<(&'static str, String)> {
        p.actions
            .iter()
            .filter_map(|a| match a {
                Action::Event(e) => Some((e.reason, e.message.clone())),
                _ => None,
            })
            .collect()
    }

    fn kv(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    /// Table: a node whose lease was last renewed at 0, observed at 0, then at `at`.
    #[test]
    fn lease_staleness_transitions() {
        let cases: [(i64, bool); 4] = [(10, false), (40, false), (41, true), (300, true)];
        for (at, stale) in cases {
            let nodes = [ready_node("a", "True"), ready_node("b", "True")];
            let mut state = State::default();
            let first = run(&nodes, &[lease("a", 0), lease("b", 0)], &[], &mut state, 0);
            assert_eq!(events(&first).len(), 2, "RegisteredNode x2");
            assert!(status_updates(&first).is_empty());
            let p = run(
                &nodes,
                &[lease("a", 0), lease("b", at)],
                &[],
                &mut state,
                at,
            );
            let updates = status_updates(&p);
            assert_eq!(!updates.is_empty(), stale, "at {at}");
            if !stale {
                assert!(taints_set(&p, "a").is_none());
                assert_eq!(state.last_observed_heartbeat("a"), Some(t(0)));
                continue;
            }
            let conds = node_conditions(updates[0]);
            let ready = find_condition(conds, "Ready").unwrap();
            assert_eq!(ready.status, "Unknown");
            assert_eq!(ready.reason.as_deref(), Some("NodeStatusUnknown"));
            assert_eq!(
                ready.message.as_deref(),
                Some("Kubelet stopped posting node status.")
            );
            assert_eq!(ready.last_heartbeat_time, Some(chrono_to_time(t(-100))));
            assert_eq!(ready.last_transition_time, Some(chrono_to_time(t(at))));
            for ty in ["MemoryPressure", "DiskPressure", "PIDPressure"] {
                assert_eq!(condition_status(conds, ty), Some("Unknown"), "{ty}");
            }
            let never = find_condition(conds, "DiskPressure").unwrap();
            assert_eq!(never.reason.as_deref(), Some("NodeStatusNeverUpdated"));
            assert_eq!(
                taints_set(&p, "a"),
                Some(kv(&[
                    (TAINT_UNREACHABLE, NO_SCHEDULE),
                    (TAINT_UNREACHABLE, NO_EXECUTE)
                ]))
            );
            assert!(taints_set(&p, "b").is_none());
            assert!(
                events(&p).contains(&("NodeNotReady", "Node a status is now: NodeNotReady".into()))
            );
        }
    }

    #[test]
    fn renewed_lease_keeps_node_healthy_and_requeues_at_grace_end() {
        let nodes = [ready_node("a", "True")];
        let mut state = State::default();
        run(&nodes, &[lease("a", 0)], &[], &mut state, 0);
        // the kubelet's clock is far ahead: only the local observation time counts
        let p = run(&nodes, &[lease("a", 10_000)], &[], &mut state, 30);
        assert!(p.actions.is_empty(), "{:?}", p.actions);
        assert_eq!(state.last_observed_heartbeat("a"), Some(t(30)));
        let p = run(&nodes, &[lease("a", 10_000)], &[], &mut state, 69);
        assert!(p.actions.is_empty());
        assert!(p.requeue_after.unwrap() <= Duration::seconds(2));
        // single node: it goes Unknown but, all nodes being down, gets no NoExecute taint
        let p = run(&nodes, &[lease("a", 10_000)], &[], &mut state, 71);
        assert_eq!(status_updates(&p).len(), 1);
        assert_eq!(
            taints_set(&p, "a"),
            Some(kv(&[(TAINT_UNREACHABLE, NO_SCHEDULE)]))
        );
    }

    #[test]
    fn ready_heartbeat_without_lease() {
        let mut state = State::default();
        run(
            &[ready_node("a", "True"), ready_node("b", "True")],
            &[lease("b", 0)],
            &[],
            &mut state,
            0,
        );
        let mut fresh = ready_node("a", "True");
        fresh.status.as_mut().unwrap().conditions.as_mut().unwrap()[0].last_heartbeat_time =
            Some(chrono_to_time(t(30)));
        let p = run(
            &[fresh.clone(), ready_node("b", "True")],
            &[lease("b", 60)],
            &[],
            &mut state,
            60,
        );
        assert!(status_updates(&p).is_empty());
        // the change was observed at 60 (local time), so it is stale after 100
        let p = run(
            &[fresh.clone(), ready_node("b", "True")],
            &[lease("b", 100)],
            &[],
            &mut state,
            100,
        );
        assert!(status_updates(&p).is_empty());
        let p = run(
            &[fresh, ready_node("b", "True")],
            &[lease("b", 101)],
            &[],
            &mut state,
            101,
        );
        assert_eq!(status_updates(&p).len(), 1);
    }

    #[test]
    fn never_posted_status_uses_startup_grace() {
        let mut bare = node("a", vec![], vec![]);
        bare.metadata.creation_timestamp = Some(chrono_to_time(t(0)));
        let other = ready_node("b", "True");
        let mut state = State::default();
        let p = run(
            &[bare.clone(), other.clone()],
            &[lease("b", 0)],
            &[],
            &mut state,
            59,
        );
        assert!(status_updates(&p).is_empty());
        let p = run(&[bare, other], &[lease("b", 61)], &[], &mut state, 61);
        let conds = node_conditions(status_updates(&p)[0]);
        assert_eq!(conds.len(), 4);
        let ready = find_condition(conds, "Ready").unwrap();
        assert_eq!(ready.reason.as_deref(), Some("NodeStatusNeverUpdated"));
        assert_eq!(
            ready.message.as_deref(),
            Some("Kubelet never posted node status.")
        );
        assert_eq!(ready.last_heartbeat_time, Some(chrono_to_time(t(0))));
        assert_eq!(
            taints_set(&p, "a"),
            Some(kv(&[
                (TAINT_UNREACHABLE, NO_SCHEDULE),
                (TAINT_UNREACHABLE, NO_EXECUTE)
            ]))
        );
    }

    /// (Ready status, spec.unschedulable, existing taints, taints written).
    type TaintCase = (
        &'static str,
        bool,
        Vec<Taint>,
        Option<Vec<(String, String)>>,
    );

    /// Table: (Ready status, spec.unschedulable, existing taints) -> taints after.
    #[test]
    fn taint_table() {
        let user = taint("dedicated", NO_SCHEDULE, None);
        let cases: Vec<TaintCase> = vec![
            ("True", false, vec![], None),
            ("True", false, vec![user.clone()], None),
            (
                "False",
                false,
                vec![],
                Some(kv(&[
                    (TAINT_NOT_READY, NO_SCHEDULE),
                    (TAINT_NOT_READY, NO_EXECUTE),
                ])),
            ),
            // recovers: controller taints go, the user's stay
            (
                "True",
                false,
                vec![
                    taint(TAINT_UNREACHABLE, NO_SCHEDULE, Some(0)),
                    user.clone(),
                    taint(TAINT_UNREACHABLE, NO_EXECUTE, Some(0)),
                ],
                Some(kv(&[("dedicated", NO_SCHEDULE)])),
            ),
            // kubelet's registration taint is dropped once Ready
            (
                "True",
                false,
                vec![taint(TAINT_NOT_READY, NO_SCHEDULE, None)],
                Some(vec![]),
            ),
            // unreachable -> not-ready swap
            (
                "False",
                false,
                vec![
                    taint(TAINT_UNREACHABLE, NO_SCHEDULE, Some(0)),
                    taint(TAINT_UNREACHABLE, NO_EXECUTE, Some(0)),
                ],
                Some(kv(&[
                    (TAINT_NOT_READY, NO_SCHEDULE),
                    (TAINT_NOT_READY, NO_EXECUTE),
                ])),
            ),
            (
                "True",
                true,
                vec![],
                Some(kv(&[(TAINT_UNSCHEDULABLE, NO_SCHEDULE)])),
            ),
            (
                "True",
                true,
                vec![taint(TAINT_UNSCHEDULABLE, NO_SCHEDULE, Some(0))],
                None,
            ),
            (
                "True",
                false,
                vec![taint(TAINT_UNSCHEDULABLE, NO_SCHEDULE, Some(0))],
                Some(vec![]),
            ),
        ];
        for (i, (ready, unsched, taints, want)) in cases.into_iter().enumerate() {
            let mut n = node("a", vec![cond("Ready", ready, 0)], taints);
            n.spec.as_mut().unwrap().unschedulable = Some(unsched);
            let healthy = ready_node("b", "True");
            let mut state = State::default();
            let p = run(
                &[n, healthy],
                &[lease("a", 0), lease("b", 0)],
                &[],
                &mut state,
                0,
            );
            assert_eq!(taints_set(&p, "a"), want, "case {i}");
        }
    }

    #[test]
    fn pressure_conditions_taint_no_schedule_and_new_taints_get_time_added() {
        let n = node(
            "a",
            vec![
                cond("Ready", "True", 0),
                cond("MemoryPressure", "True", 0),
                cond("PIDPressure", "True", 0),
            ],
            vec![],
        );
        let mut state = State::default();
        let p = run(&[n], &[lease("a", 0)], &[], &mut state, 5);
        let Some(Action::SetNodeTaints {
            taints,
            resource_version,
            ..
        }) = p
            .actions
            .iter()
            .find(|a| matches!(a, Action::SetNodeTaints { .. }))
        else {
            panic!("no taints action");
        };
        assert_eq!(resource_version.as_deref(), Some("7"));
        let keys: Vec<&str> = taints.iter().map(|t| t.key.as_str()).collect();
        assert_eq!(keys, [TAINT_MEMORY_PRESSURE, TAINT_PID_PRESSURE]);
        assert!(
            taints
                .iter()
                .all(|x| x.time_added == Some(chrono_to_time(t(5))))
        );
    }

    #[test]
    fn full_disruption_keeps_no_execute_off_and_exit_restarts_grace() {
        let nodes = [ready_node("a", "True")];
        let mut state = State::default();
        run(&nodes, &[lease("a", 0)], &[], &mut state, 0);
        let p = run(&nodes, &[lease("a", 0)], &[], &mut state, 41);
        assert_eq!(status_updates(&p).len(), 1);
        assert_eq!(
            taints_set(&p, "a"),
            Some(kv(&[(TAINT_UNREACHABLE, NO_SCHEDULE)]))
        );
        assert!(state.in_full_disruption());
        // the kubelet comes back on "a": the other, still-silent node "b" gets a fresh grace
        let b = node("b", vec![cond("Ready", "Unknown", -100)], vec![]);
        state.nodes.insert(
            "b".into(),
            NodeHealth {
                probe: t(-500),
                ready_heartbeat: Some(Some(chrono_to_time(t(-100)))),
                lease_renew: None,
            },
        );
        let p = run(
            &[ready_node("a", "True"), b.clone()],
            &[lease("a", 50)],
            &[],
            &mut state,
            50,
        );
        assert!(!state.in_full_disruption());
        assert_eq!(state.last_observed_heartbeat("b"), Some(t(50)));
        assert_eq!(
            taints_set(&p, "b"),
            Some(kv(&[
                (TAINT_UNREACHABLE, NO_SCHEDULE),
                (TAINT_UNREACHABLE, NO_EXECUTE)
            ]))
        );
    }

    /// Table: tolerations of a pod on a node tainted unreachable:NoExecute at 0.
    #[test]
    fn taint_eviction_table() {
        let cases: Vec<(Vec<Toleration>, i64, bool)> = vec![
            (vec![], 0, true),
            (vec![toleration("other", None)], 0, true),
            (vec![toleration(TAINT_UNREACHABLE, Some(5))], 4, false),
            (vec![toleration(TAINT_UNREACHABLE, Some(5))], 5, true),
            (vec![toleration(TAINT_UNREACHABLE, Some(0))], 0, true),
            (vec![toleration(TAINT_UNREACHABLE, None)], 10_000, false),
            (vec![toleration("", None)], 10_000, false),
            (vec![toleration(TAINT_UNREACHABLE, Some(300))], 299, false),
            (vec![toleration(TAINT_UNREACHABLE, Some(300))], 300, true),
        ];
        for (i, (tols, at, evicted)) in cases.into_iter().enumerate() {
            let tainted = node(
                "a",
                vec![cond("Ready", "Unknown", -100)],
                vec![
                    taint(TAINT_UNREACHABLE, NO_SCHEDULE, Some(0)),
                    taint(TAINT_UNREACHABLE, NO_EXECUTE, Some(0)),
                ],
            );
            let nodes = [tainted, ready_node("b", "True")];
            let mut state = State::default();
            let p = run(
                &nodes,
                &[lease("b", at)],
                &[pod("p", "a", tols)],
                &mut state,
                at,
            );
            let want = if evicted {
                vec![("p".to_string(), None)]
            } else {
                vec![]
            };
            assert_eq!(deleted(&p), want, "case {i}");
            let ev = (
                "TaintManagerEviction",
                "Marking for deletion Pod default/p".to_string(),
            );
            assert_eq!(events(&p).contains(&ev), evicted, "case {i}");
        }
    }

    #[test]
    fn toleration_clock_runs_across_passes_and_cancels_on_recovery() {
        let tainted = node(
            "a",
            vec![cond("Ready", "Unknown", -100)],
            vec![
                taint(TAINT_UNREACHABLE, NO_EXECUTE, Some(0)),
                taint(TAINT_UNREACHABLE, NO_SCHEDULE, Some(0)),
            ],
        );
        let pods = [pod("p", "a", vec![toleration(TAINT_UNREACHABLE, Some(5))])];
        let nodes = [tainted, ready_node("b", "True")];
        let mut state = State::default();
        let p = run(&nodes, &[lease("b", 2)], &pods, &mut state, 2);
        assert!(deleted(&p).is_empty());
        assert_eq!(p.requeue_after, Some(Duration::seconds(3)));
        let p = run(&nodes, &[lease("b", 5)], &pods, &mut state, 5);
        assert_eq!(deleted(&p), vec![("p".to_string(), None)]);
        let status = p.actions.iter().find_map(|a| match a {
            Action::UpdatePodStatus(p) => Some(p),
            _ => None,
        });
        let conds = status
            .unwrap()
            .status
            .as_ref()
            .unwrap()
            .conditions
            .clone()
            .unwrap();
        let dt = conds
            .iter()
            .find(|c| c.type_ == "DisruptionTarget")
            .unwrap();
        assert_eq!(dt.reason.as_deref(), Some("DeletionByTaintManager"));
        // a second pod is scheduled, then the node recovers: eviction cancelled
        let mut state = State::default();
        run(&nodes, &[lease("b", 2)], &pods, &mut state, 2);
        let recovered = [ready_node("a", "True"), ready_node("b", "True")];
        let p = run(
            &recovered,
            &[lease("a", 3), lease("b", 3)],
            &pods,
            &mut state,
            3,
        );
        assert!(deleted(&p).is_empty());
        assert!(events(&p).contains(&(
            "TaintManagerEviction",
            "Cancelling deletion of Pod default/p".into()
        )));
    }

    #[test]
    fn pods_marked_not_ready_when_node_goes_unknown() {
        let nodes = [ready_node("a", "True"), ready_node("b", "True")];
        let pods = [pod(
            "p",
            "a",
            vec![toleration(TAINT_UNREACHABLE, Some(300))],
        )];
        let mut state = State::default();
        run(
            &nodes,
            &[lease("a", 0), lease("b", 0)],
            &pods,
            &mut state,
            0,
        );
        let p = run(
            &nodes,
            &[lease("a", 0), lease("b", 41)],
            &pods,
            &mut state,
            41,
        );
        let updated: Vec<&Pod> = p
            .actions
            .iter()
            .filter_map(|a| match a {
                Action::UpdatePodStatus(p) => Some(p.as_ref()),
                _ => None,
            })
            .collect();
        assert_eq!(updated.len(), 1);
        let ready = updated[0]
            .status
            .as_ref()
            .unwrap()
            .conditions
            .as_ref()
            .unwrap()[0]
            .clone();
        assert_eq!(
            (ready.type_.as_str(), ready.status.as_str()),
            ("Ready", "False")
        );
        assert_eq!(ready.last_transition_time, Some(chrono_to_time(t(41))));
        assert!(events(&p).contains(&("NodeNotReady", "Node is not ready".into())));
        assert!(deleted(&p).is_empty());
        // order: node status, node taints, pod status, then pod events/deletes
        let idx = |f: fn(&Action) -> bool| p.actions.iter().position(f).unwrap();
        assert!(
            idx(|a| matches!(a, Action::UpdateNodeStatus(_)))
                < idx(|a| matches!(a, Action::SetNodeTaints { .. }))
        );
        assert!(
            idx(|a| matches!(a, Action::SetNodeTaints { .. }))
                < idx(|a| matches!(a, Action::UpdatePodStatus(_)))
        );
    }

    #[test]
    fn orphaned_pods_deleted_after_quarantine() {
        let nodes = [ready_node("b", "True")];
        let pods = [pod("p", "gone", vec![]), pod("q", "b", vec![])];
        let mut state = State::default();
        let p = run(&nodes, &[lease("b", 0)], &pods, &mut state, 0);
        assert!(deleted(&p).is_empty());
        let p = run(&nodes, &[lease("b", 39)], &pods, &mut state, 39);
        assert!(deleted(&p).is_empty());
        assert_eq!(p.requeue_after, Some(Duration::seconds(1)));
        let p = run(&nodes, &[lease("b", 40)], &pods, &mut state, 40);
        assert_eq!(deleted(&p), vec![("p".to_string(), Some(0))]);
        let Some(Action::UpdatePodStatus(up)) = p
            .actions
            .iter()
            .find(|a| matches!(a, Action::UpdatePodStatus(_)))
        else {
            panic!("no status update");
        };
        let st = up.status.as_ref().unwrap();
        assert_eq!(st.phase.as_deref(), Some("Failed"));
        let dt = st
            .conditions
            .as_ref()
            .unwrap()
            .iter()
            .find(|c| c.type_ == "DisruptionTarget")
            .unwrap();
        assert_eq!(dt.message.as_deref(), Some("PodGC: node no longer exists"));
        // a node that reappears clears the quarantine
        let mut state = State::default();
        run(&nodes, &[lease("b", 0)], &pods, &mut state, 0);
        let back = [ready_node("b", "True"), ready_node("gone", "True")];
        let p = run(
            &back,
            &[lease("b", 45), lease("gone", 45)],
            &pods,
            &mut state,
            45,
        );
        assert!(deleted(&p).is_empty());
    }

    #[test]
    fn terminated_pods_beyond_threshold_evicted_then_oldest() {
        let mk = |name: &str, created: i64, reason: Option<&str>| {
            let mut p = pod(name, "b", vec![]);
            p.metadata.creation_timestamp = Some(chrono_to_time(t(created)));
            let st = p.status.as_mut().unwrap();
            st.phase = Some("Failed".into());
            st.reason = reason.map(String::from);
            p
        };
        let pods = [
            mk("new", 30, None),
            mk("old", 10, None),
            mk("evicted", 40, Some("Evicted")),
            mk("mid", 20, None),
            pod("running", "b", vec![]),
        ];
        let nodes = [ready_node("b", "True")];
        let refs: Vec<&Node> = nodes.iter().collect();
        let prefs: Vec<&Pod> = pods.iter().collect();
        let leases = [lease("b", 0)];
        let lrefs: Vec<&Lease> = leases.iter().collect();
        let cfg = Config {
            terminated_pod_threshold: 2,
            ..Config::default()
        };
        let snap = Snapshot {
            nodes: &refs,
            leases: &lrefs,
            pods: &prefs,
        };
        let p = plan(&snap, &mut State::default(), &cfg, t(0));
        assert_eq!(
            deleted(&p),
            vec![
                ("evicted".to_string(), Some(0)),
                ("old".to_string(), Some(0))
            ]
        );
        assert!(
            !p.actions
                .iter()
                .any(|a| matches!(a, Action::UpdatePodStatus(_)))
        );
    }

    #[test]
    fn terminating_pods_force_deleted_when_unscheduled_or_out_of_service() {
        let mut oos = node(
            "a",
            vec![cond("Ready", "False", 0)],
            vec![taint(TAINT_OUT_OF_SERVICE, NO_EXECUTE, Some(0))],
        );
        oos.metadata.labels = Some([(LABEL_EXCLUDE_DISRUPTION.to_string(), String::new())].into());
        let nodes = [oos, ready_node("b", "True")];
        let terminating = |name: &str, node: &str| {
            let mut p = pod(name, node, vec![toleration("", None)]);
            p.metadata.deletion_timestamp = Some(chrono_to_time(t(-10)));
            p
        };
        let pods = [
            terminating("x", "a"),
            terminating("y", ""),
            terminating("z", "b"),
        ];
        let p = run(
            &nodes,
            &[lease("a", 0), lease("b", 0)],
            &pods,
            &mut State::default(),
            0,
        );
        let mut got = deleted(&p);
        got.sort();
        assert_eq!(
            got,
            vec![("x".to_string(), Some(0)), ("y".to_string(), Some(0))]
        );
    }

    #[test]
    fn reconcile_taints_keeps_existing_time_added() {
        let current = [taint(TAINT_UNREACHABLE, NO_EXECUTE, Some(3))];
        let out = reconcile_taints(
            &current,
            &[TAINT_UNREACHABLE],
            Some(&[TAINT_UNREACHABLE]),
            t(9),
        );
        assert_eq!(out[0].time_added, Some(chrono_to_time(t(3))));
        assert_eq!(out[1].time_added, Some(chrono_to_time(t(9))));
        // no Ready condition: NoExecute taints left alone
        let out = reconcile_taints(&current, &[], None, t(9));
        assert_eq!(out.len(), 1);
    }

    /// The pod part over the pods `PodIndex::select` picks gives exactly the
    /// actions of the pod part over every pod, pass after pass.
    #[test]
    fn scoped_passes_equal_full_passes() {
        use crate::controllers::nodelifecycle::podindex::{NodeFacts, PodIndex};
        use std::sync::Arc;
        let tainted = node(
            "c",
            vec![cond("Ready", "True", -100)],
            vec![taint("dedicated", NO_EXECUTE, Some(-30))],
        );
        let nodes = [
            ready_node("a", "True"),
            ready_node("b", "True"),
            tainted,
            ready_node("d", "True"),
        ];
        let mut pods = vec![
            pod("a1", "a", vec![]),
            pod("a2", "a", vec![toleration(TAINT_UNREACHABLE, Some(5))]),
            pod("b1", "b", vec![]),
            pod("b2", "b", vec![toleration(TAINT_UNREACHABLE, Some(5))]),
            pod("b3", "b", vec![toleration("", None)]),
            pod("c1", "c", vec![]),
            pod("c2", "c", vec![toleration("dedicated", Some(60))]),
            pod("d1", "d", vec![]),
            pod("o1", "gone", vec![]),
            pod("u1", "", vec![]),
        ];
        for (name, node, phase) in [
            ("t1", "a", "Succeeded"),
            ("t2", "d", "Failed"),
            ("t3", "a", "Failed"),
        ] {
            let mut p = pod(name, node, vec![]);
            p.status.as_mut().unwrap().phase = Some(phase.into());
            p.metadata.creation_timestamp = Some(chrono_to_time(t(-600)));
            pods.push(p);
        }
        for (name, node) in [("x1", "d"), ("x2", "")] {
            let mut p = pod(name, node, vec![]);
            p.metadata.deletion_timestamp = Some(chrono_to_time(t(-10)));
            pods.push(p);
        }
        pods.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        let cfg = Config {
            terminated_pod_threshold: 2,
            ..Config::default()
        };
        let mut index = PodIndex::default();
        for p in &pods {
            let key = ("default".to_string(), p.metadata.name.clone().unwrap());
            index.apply(key, Some(Arc::new(p.clone())), &NodeFacts::default(), 0);
        }
        let node_refs: Vec<&Node> = nodes.iter().collect();
        let pod_refs: Vec<&Pod> = pods.iter().collect();
        let (mut full, mut scoped) = (State::default(), State::default());
        let mut acted = 0;
        for now in [0, 39, 41, 45, 47, 61, 81, 100] {
            // b stops renewing its lease at 0
            let leases: Vec<Lease> = ["a", "c", "d"]
                .iter()
                .map(|n| lease(n, now))
                .chain([lease("b", 0)])
                .collect();
            let lease_refs: Vec<&Lease> = leases.iter().collect();
            let snap = Snapshot {
                nodes: &node_refs,
                leases: &lease_refs,
                pods: &pod_refs,
            };
            let want = plan(&snap, &mut full, &cfg, t(now));
            let mut picked = 0;
            let got = plan_scoped(
                &node_refs,
                &lease_refs,
                &mut scoped,
                &cfg,
                t(now),
                |scope| {
                    let sel = index.select(scope);
                    picked = sel.len();
                    sel
                },
            );
            assert_eq!(got, want, "at {now}");
            assert!(picked < pods.len(), "at {now}: {picked} pods picked");
            acted += deleted(&got).len();
        }
        // evictions (c1 at once, b1 then b2 once b is unreachable), orphan,
        // terminating and terminated GC all happened
        assert!(acted >= 6, "{acted} deletions");
    }
}
