//! One reconcile step of the DaemonSet controller as pure logic (upstream
//! `pkg/controller/daemon`: `daemon_controller.go`, `update.go`, `util`).
//!
//! Owns: which nodes should run a daemon pod (template nodeName,
//! nodeSelector, required node affinity, NoSchedule/NoExecute taints against
//! the template's tolerations plus the ones upstream adds to every daemon
//! pod), the daemon pods to create (pinned with a required
//! `matchFields metadata.name In [node]` affinity; the scheduler binds them)
//! and to delete (misplaced, duplicates, failed with per-node backoff,
//! surplus surge pods), RollingUpdate (maxUnavailable / maxSurge) and
//! OnDelete, the status, the update revision and history truncation.
//!
//! Invariants: node predicates come from `crate::scheduler::predicates`;
//! at most 250 creates and 250 deletes per step (upstream burstReplicas);
//! the rolling update only runs in a step where the core loop had nothing
//! to create or delete (upstream runs it once expectations are satisfied).
//! Iteration is by node name, so plans are deterministic.
//!
//! Must not: do I/O, read clocks (`now` is an input), keep hidden state
//! (the failed-pod backoff is passed in and handed back), or panic.

use crate::controllers::history::{self, Owner, REVISION_HASH_LABEL, RevisionChange};
use crate::controllers::podutil;
use crate::scheduler::predicates::{self, EFFECT_NO_EXECUTE, EFFECT_NO_SCHEDULE};
use chrono::{DateTime, Duration, Utc};
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet, DaemonSetStatus};
use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod,
    PodSpec, PodTemplateSpec, Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::{BTreeMap, BTreeSet};

/// Pod label with the DaemonSet's template generation (legacy).
pub const TEMPLATE_GENERATION_LABEL: &str = "pod-template-generation";
/// DaemonSet annotation the apiserver keeps the template generation in.
pub const TEMPLATE_GENERATION_ANNOTATION: &str = "deprecated.daemonset.template.generation";
/// Upstream `burstReplicas`: creates (and deletes) per step.
pub const BURST_REPLICAS: usize = 250;
const DS_API_VERSION: &str = "apps/v1";
const DS_KIND: &str = "DaemonSet";
const BACKOFF_INITIAL_SECS: i64 = 1;
const BACKOFF_MAX_SECS: i64 = 15 * 60;

/// A snapshot of everything one step needs.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    pub ds: &'a DaemonSet,
    pub nodes: &'a [Node],
    /// Pods controlled by the DaemonSet, including ones this controller
    /// created that the informer has not shown yet.
    pub pods: &'a [Pod],
    /// ControllerRevisions controlled by the DaemonSet.
    pub revisions: &'a [ControllerRevision],
    /// The failed-pod backoff handed back by the previous step.
    pub backoff: &'a FailedPodBackoff,
    pub now: DateTime<Utc>,
}

/// Per-node exponential backoff for deleting failed daemon pods (1s
/// doubling to 15min, forgotten after 30min quiet), as upstream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FailedPodBackoff {
    /// node name → (current delay, last time a failed pod was deleted).
    pub entries: BTreeMap<String, (Duration, DateTime<Utc>)>,
}

impl FailedPodBackoff {
    fn expired(last: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        now - last > Duration::seconds(2 * BACKOFF_MAX_SECS)
    }

    /// Remaining wait for `node`, if still backing off at `now`.
    pub fn remaining(&self, node: &str, now: DateTime<Utc>) -> Option<Duration> {
        let (delay, last) = self.entries.get(node)?;
        if Self::expired(*last, now) || now - *last >= *delay {
            return None;
        }
        Some(*delay - (now - *last))
    }

    /// Records a deletion on `node` at `now` (doubles the delay).
    pub fn next(&mut self, node: &str, now: DateTime<Utc>) {
        let delay = match self.entries.get(node) {
            Some((d, last)) if !Self::expired(*last, now) => {
                (*d * 2).min(Duration::seconds(BACKOFF_MAX_SECS))
            }
            _ => Duration::seconds(BACKOFF_INITIAL_SECS),
        };
        self.entries.insert(node.to_string(), (delay, now));
    }

    /// Drops entries quiet for longer than twice the maximum delay.
    pub fn gc(&mut self, now: DateTime<Utc>) {
        self.entries
            .retain(|_, (_, last)| !Self::expired(*last, now));
    }
}

/// An event to record on the DaemonSet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// `Normal` or `Warning`.
    pub type_: String,
    pub reason: String,
    pub message: String,
}

impl Event {
    fn new(type_: &str, reason: &str, message: String) -> Event {
        Event {
            type_: type_.into(),
            reason: reason.into(),
            message,
        }
    }
}

/// One API call (or event) for the shell, in the DaemonSet's namespace.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Create this ControllerRevision. On AlreadyExists, bump
    /// `status.collisionCount` by one and requeue.
    CreateRevision(Box<ControllerRevision>),
    /// Set `revision` of an existing ControllerRevision.
    RenumberRevision {
        name: String,
        revision: i64,
    },
    /// Create a daemon pod (uses `generateName`) meant for `node`.
    CreatePod {
        pod: Box<Pod>,
        node: String,
    },
    /// Delete a pod (with `uid` as precondition when known).
    DeletePod {
        name: String,
        uid: Option<String>,
    },
    DeleteRevision {
        name: String,
    },
    /// An event known in advance (e.g. `FailedDaemonPod`).
    Event(Event),
}

/// The outcome of one step.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub actions: Vec<Action>,
    /// The status to write.
    pub status: DaemonSetStatus,
    /// The backoff to pass to the next step for this DaemonSet.
    pub backoff: FailedPodBackoff,
    /// Reconcile again after this long even without watch events.
    pub requeue_after: Option<Duration>,
}

/// The event upstream records once `action` succeeded; `created_name` is
/// the name the API server gave a created pod.
pub fn success_event(action: &Action, created_name: Option<&str>) -> Option<Event> {
    match action {
        Action::CreatePod { .. } => Some(Event::new(
            "Normal",
            "SuccessfulCreate",
            format!("Created pod: {}", created_name.unwrap_or_default()),
        )),
        Action::DeletePod { name, .. } => Some(Event::new(
            "Normal",
            "SuccessfulDelete",
            format!("Deleted pod: {name}"),
        )),
        _ => None,
    }
}

/// The `Warning` event upstream records when `action` failed.
pub fn failure_event(action: &Action, error: &str) -> Option<Event> {
    match action {
        Action::CreatePod { .. } => Some(Event::new(
            "Warning",
            "FailedCreate",
            format!("Error creating: {error}"),
        )),
        Action::DeletePod { .. } => Some(Event::new(
            "Warning",
            "FailedDelete",
            format!("Error deleting: {error}"),
        )),
        _ => None,
    }
}

fn name_of(meta: &ObjectMeta) -> &str {
    meta.name.as_deref().unwrap_or_default()
}

fn toleration(key: &str, effect: &str) -> Toleration {
    Toleration {
        key: Some(key.into()),
        operator: Some("Exists".into()),
        effect: Some(effect.into()),
        ..Default::default()
    }
}

/// Adds (or replaces a same key/operator/value/effect one with) `t`, like
/// upstream `AddOrUpdateTolerationInPodSpec`.
fn add_or_update_toleration(spec: &mut PodSpec, t: Toleration) {
    let tols = spec.tolerations.get_or_insert_with(Vec::new);
    let same = |o: &Toleration| {
        o.key == t.key && o.operator == t.operator && o.value == t.value && o.effect == t.effect
    };
    match tols.iter_mut().find(|o| same(o)) {
        Some(o) => *o = t,
        None => tols.push(t),
    }
}

/// The tolerations upstream adds to every daemon pod.
pub fn add_daemon_tolerations(spec: &mut PodSpec) {
    let mut add = vec![
        toleration("node.kubernetes.io/not-ready", EFFECT_NO_EXECUTE),
        toleration("node.kubernetes.io/unreachable", EFFECT_NO_EXECUTE),
        toleration("node.kubernetes.io/disk-pressure", EFFECT_NO_SCHEDULE),
        toleration("node.kubernetes.io/memory-pressure", EFFECT_NO_SCHEDULE),
        toleration("node.kubernetes.io/pid-pressure", EFFECT_NO_SCHEDULE),
        toleration("node.kubernetes.io/unschedulable", EFFECT_NO_SCHEDULE),
    ];
    if spec.host_network == Some(true) {
        add.push(toleration(
            "node.kubernetes.io/network-unavailable",
            EFFECT_NO_SCHEDULE,
        ));
    }
    for t in add {
        add_or_update_toleration(spec, t);
    }
}

/// Pins a pod to `node` by replacing its required node-affinity terms
/// (upstream `ReplaceDaemonSetPodNodeNameNodeAffinity`).
pub fn pin_to_node(affinity: Option<Affinity>, node: &str) -> Affinity {
    let term = NodeSelectorTerm {
        match_fields: Some(vec![NodeSelectorRequirement {
            key: "metadata.name".into(),
            operator: "In".into(),
            values: Some(vec![node.to_string()]),
        }]),
        match_expressions: None,
    };
    let mut affinity = affinity.unwrap_or_default();
    let na = affinity
        .node_affinity
        .get_or_insert_with(NodeAffinity::default);
    na.required_during_scheduling_ignored_during_execution = Some(NodeSelector {
        node_selector_terms: vec![term],
    });
    affinity
}

/// The node a daemon pod is for: `spec.nodeName`, else its pinning affinity.
pub fn target_node(pod: &Pod) -> Option<&str> {
    let spec = pod.spec.as_ref()?;
    if let Some(n) = spec.node_name.as_deref().filter(|n| !n.is_empty()) {
        return Some(n);
    }
    predicates::required_node_selector(spec)?
        .node_selector_terms
        .iter()
        .flat_map(|t| t.match_fields.iter().flatten())
        .find(|r| r.key == "metadata.name" && r.operator == "In")
        .and_then(|r| match r.values.as_deref() {
            Some([one]) => Some(one.as_str()),
            _ => None,
        })
}

/// Whether a daemon pod should run on `node`, and whether one already
/// there may keep running (upstream `NodeShouldRunDaemonPod`).
pub fn node_should_run(ds: &DaemonSet, node: &Node) -> (bool, bool) {
    let mut spec = template(ds).spec.clone().unwrap_or_default();
    let node_name = name_of(&node.metadata);
    if spec
        .node_name
        .as_deref()
        .is_some_and(|n| !n.is_empty() && n != node_name)
    {
        return (false, false);
    }
    if !predicates::node_selector_matches(&spec, node) {
        return (false, false);
    }
    add_daemon_tolerations(&mut spec);
    let tols = spec.tolerations.as_deref().unwrap_or(&[]);
    let taints = predicates::node_taints(node);
    let effects = [EFFECT_NO_EXECUTE, EFFECT_NO_SCHEDULE];
    if predicates::find_untolerated_taint(taints, tols, &effects).is_some() {
        let evicting = predicates::find_untolerated_taint(taints, tols, &[EFFECT_NO_EXECUTE]);
        return (false, evicting.is_none());
    }
    (true, true)
}

fn template(ds: &DaemonSet) -> &PodTemplateSpec {
    static EMPTY: PodTemplateSpec = PodTemplateSpec {
        metadata: None,
        spec: None,
    };
    ds.spec.as_ref().map(|s| &s.template).unwrap_or(&EMPTY)
}

fn template_generation(ds: &DaemonSet) -> Option<i64> {
    ds.metadata
        .annotations
        .as_ref()?
        .get(TEMPLATE_GENERATION_ANNOTATION)?
        .parse()
        .ok()
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or_default()
}

fn label<'p>(pod: &'p Pod, key: &str) -> Option<&'p str> {
    pod.metadata.labels.as_ref()?.get(key).map(String::as_str)
}

/// Upstream `IsPodUpdated`: the hash label matches, or the legacy
/// template-generation label does.
fn is_updated(pod: &Pod, hash: &str, generation: Option<i64>) -> bool {
    let hash_ok = !hash.is_empty() && label(pod, REVISION_HASH_LABEL) == Some(hash);
    let gen_ok = generation
        .is_some_and(|g| label(pod, TEMPLATE_GENERATION_LABEL) == Some(g.to_string().as_str()));
    hash_ok || gen_ok
}

/// Scheduled pods first, then oldest, then by name.
fn sort_pods(pods: &mut [&Pod]) {
    pods.sort_by(|a, b| {
        let unscheduled = |p: &Pod| {
            p.spec
                .as_ref()
                .and_then(|s| s.node_name.as_deref())
                .is_none_or(str::is_empty)
        };
        let created = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
        unscheduled(a)
            .cmp(&unscheduled(b))
            .then_with(|| created(a).cmp(&created(b)))
            .then_with(|| a.metadata.name.cmp(&b.metadata.name))
    });
}

/// `IntOrString` scaled against `total`, rounding up; None when invalid.
fn scaled(v: &IntOrString, total: i64) -> Option<i64> {
    match v {
        IntOrString::Int(i) => Some(i64::from(*i)),
        IntOrString::String(s) => {
            let pct: i64 = s.strip_suffix('%')?.parse().ok()?;
            Some((pct * total + 99).div_euclid(100))
        }
    }
}

/// Per-step context.
struct Ctx<'a> {
    input: &'a Input<'a>,
    hash: String,
    generation: Option<i64>,
    min_ready: i32,
    surge_allowed: bool,
    /// node → daemon pods targeting it (deleted terminal pods left out).
    node_pods: BTreeMap<String, Vec<&'a Pod>>,
    /// node → (should run, should continue running) for listed nodes.
    fit: BTreeMap<String, (bool, bool)>,
    events: Vec<Action>,
    backoff: FailedPodBackoff,
    requeue: Option<Duration>,
}

impl<'a> Ctx<'a> {
    fn available(&self, pod: &Pod) -> bool {
        podutil::is_available(pod, self.min_ready, self.input.now)
    }

    fn wait(&mut self, d: Duration) {
        self.requeue = Some(self.requeue.map_or(d, |r| r.min(d)));
    }

    /// Upstream `podsShouldBeOnNode`: (create on node?, pods to delete).
    fn pods_for_node(&mut self, node: &str) -> (bool, Vec<&'a Pod>) {
        let (should_run, should_continue) = self.fit.get(node).copied().unwrap_or((false, false));
        let pods = self.node_pods.get(node).cloned();
        let Some(pods) = pods else {
            return (should_run, vec![]);
        };
        if !should_continue {
            let gone = pods
                .into_iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none());
            return (false, gone.collect());
        }
        let mut delete = Vec::new();
        let mut running = Vec::new();
        for pod in pods
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
        {
            match phase(pod) {
                "Failed" => {
                    if let Some(wait) = self.backoff.remaining(node, self.input.now) {
                        self.wait(wait);
                        continue;
                    }
                    self.backoff.next(node, self.input.now);
                    let msg = format!(
                        "Found failed daemon pod {}/{} on node {node}, will try to kill it",
                        pod.metadata.namespace.as_deref().unwrap_or_default(),
                        name_of(&pod.metadata)
                    );
                    self.events
                        .push(Action::Event(Event::new("Warning", "FailedDaemonPod", msg)));
                    delete.push(pod);
                }
                "Succeeded" => delete.push(pod),
                _ => running.push(pod),
            }
        }
        sort_pods(&mut running);
        if !self.surge_allowed {
            delete.extend(running.iter().skip(1));
            return (false, delete);
        }
        if running.len() <= 1 {
            return (running.is_empty() && should_run, delete);
        }
        delete.extend(self.surplus_surge_pods(&running));
        (false, delete)
    }

    /// With surge: keep the oldest new pod and the oldest old pod; the old
    /// one goes once it is not ready or the new one is available.
    fn surplus_surge_pods(&self, running: &[&'a Pod]) -> Vec<&'a Pod> {
        let mut delete = Vec::new();
        let (mut new, mut old) = (None, None);
        for pod in running {
            let slot = if is_updated(pod, &self.hash, self.generation) {
                &mut new
            } else {
                &mut old
            };
            if slot.is_none() {
                *slot = Some(*pod);
            } else {
                delete.push(*pod);
            }
        }
        if let (Some(new), Some(old)) = (new, old)
            && (!podutil::is_ready(old) || self.available(new))
        {
            delete.push(old);
        }
        delete
    }

    /// Upstream `manage`: creates/deletes from scheduling facts.
    fn manage(&mut self) -> (Vec<String>, Vec<&'a Pod>) {
        let mut create = Vec::new();
        let mut delete = Vec::new();
        let nodes: Vec<String> = self
            .input
            .nodes
            .iter()
            .map(|n| name_of(&n.metadata).to_string())
            .collect();
        for node in &nodes {
            let (c, d) = self.pods_for_node(node);
            if c {
                create.push(node.clone());
            }
            delete.extend(d);
        }
        let listed: BTreeSet<&str> = nodes.iter().map(String::as_str).collect();
        for (node, pods) in &self.node_pods {
            if listed.contains(node.as_str()) {
                continue;
            }
            let unscheduled = pods.iter().filter(|p| {
                p.spec
                    .as_ref()
                    .and_then(|s| s.node_name.as_deref())
                    .is_none_or(str::is_empty)
            });
            delete.extend(unscheduled);
        }
        (create, delete)
    }

    /// (new pod, old pod) on a node, None when there are several of a kind.
    fn updated_pods_on(&self, node: &str) -> Option<(Option<&'a Pod>, Option<&'a Pod>)> {
        let (mut new, mut old) = (None, None);
        for pod in self.node_pods.get(node).into_iter().flatten() {
            if pod.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let slot = if is_updated(pod, &self.hash, self.generation) {
                &mut new
            } else {
                &mut old
            };
            if slot.is_some() {
                return None;
            }
            *slot = Some(*pod);
        }
        Some((new, old))
    }

    /// Nodes considered by the rolling update: nodes with pods plus nodes
    /// that should run one.
    fn rolling_nodes(&self) -> BTreeSet<String> {
        let mut nodes: BTreeSet<String> = self.node_pods.keys().cloned().collect();
        nodes.extend(self.fit.iter().filter(|(_, f)| f.0).map(|(n, _)| n.clone()));
        nodes
    }

    fn desired(&self) -> i64 {
        self.fit.values().filter(|f| f.0).count() as i64
    }

    /// (maxSurge, maxUnavailable) as upstream `updatedDesiredNodeCounts`.
    fn rolling_limits(&self) -> (i64, i64) {
        let desired = self.desired();
        let ru = self
            .input
            .ds
            .spec
            .as_ref()
            .and_then(|s| s.update_strategy.as_ref())
            .and_then(|u| u.rolling_update.as_ref());
        let unavailable = ru
            .and_then(|r| r.max_unavailable.as_ref())
            .map_or(Some(1), |v| scaled(v, desired))
            .unwrap_or(1);
        let surge = ru
            .and_then(|r| r.max_surge.as_ref())
            .map_or(Some(0), |v| scaled(v, desired))
            .unwrap_or(0);
        if desired > 0 && unavailable == 0 && surge == 0 {
            return (0, 1);
        }
        (surge, unavailable)
    }

    /// Upstream `rollingUpdate` without surge: delete old pods while the
    /// number of unavailable nodes stays within maxUnavailable.
    fn roll_unavailable(&self, max_unavailable: i64) -> Vec<&'a Pod> {
        let mut unavailable = 0;
        let mut replace = Vec::new();
        let mut candidates = Vec::new();
        for node in self.rolling_nodes() {
            let Some((new, old)) = self.updated_pods_on(&node) else {
                unavailable += 1;
                continue;
            };
            match (new, old) {
                (None, None) | (Some(_), Some(_)) => unavailable += 1,
                (Some(new), None) => unavailable += i64::from(!self.available(new)),
                (None, Some(old)) if !self.available(old) => {
                    replace.push(old);
                    unavailable += 1;
                }
                (None, Some(_)) if unavailable >= max_unavailable => {}
                (None, Some(old)) => candidates.push(old),
            }
        }
        let room = (max_unavailable - unavailable).clamp(0, candidates.len() as i64) as usize;
        replace.extend(candidates.into_iter().take(room));
        replace
    }

    /// Upstream `rollingUpdate` with surge: start new pods next to old
    /// ones (at most maxSurge at once), delete old ones when the new one is
    /// available.
    fn roll_surge(&self, max_surge: i64) -> (Vec<String>, Vec<&'a Pod>) {
        let mut delete = Vec::new();
        let mut should_not_run = Vec::new();
        let mut allowed = Vec::new();
        let mut candidates = Vec::new();
        let (mut surge, mut available) = (0, 0);
        for node in self.rolling_nodes() {
            let Some((new, old)) = self.updated_pods_on(&node) else {
                surge += 1;
                continue;
            };
            if let Some(p) = old.or(new) {
                available += i64::from(self.available(p));
            }
            let runs = self.fit.get(&node).is_some_and(|f| f.0);
            match (new, old) {
                (_, None) => {}
                (None, Some(old)) if !self.available(old) => {
                    if runs {
                        allowed.push(node.clone());
                    } else {
                        delete.push(old);
                    }
                }
                (None, Some(old)) if !runs => should_not_run.push(old),
                (None, Some(_)) if surge >= max_surge => {}
                (None, Some(_)) => candidates.push(node.clone()),
                (Some(new), Some(_)) if !self.available(new) => surge += 1,
                (Some(_), Some(old)) => delete.push(old),
            }
        }
        let deletable = (available - self.desired()).clamp(0, should_not_run.len() as i64) as usize;
        delete.extend(should_not_run.into_iter().take(deletable));
        let room = (max_surge - surge).clamp(0, candidates.len() as i64) as usize;
        allowed.extend(candidates.into_iter().take(room));
        (allowed, delete)
    }

    fn new_pod(&self, node: &str) -> Pod {
        let ds = self.input.ds;
        let tpl = template(ds);
        let tm = tpl.metadata.clone().unwrap_or_default();
        let mut labels = tm.labels.unwrap_or_default();
        if let Some(g) = self.generation {
            labels.insert(TEMPLATE_GENERATION_LABEL.into(), g.to_string());
        }
        if !self.hash.is_empty() {
            labels.insert(REVISION_HASH_LABEL.into(), self.hash.clone());
        }
        let mut spec = tpl.spec.clone().unwrap_or_default();
        add_daemon_tolerations(&mut spec);
        spec.affinity = Some(pin_to_node(spec.affinity.take(), node));
        let name = name_of(&ds.metadata);
        Pod {
            metadata: ObjectMeta {
                generate_name: Some(format!("{name}-")),
                namespace: ds.metadata.namespace.clone(),
                labels: Some(labels),
                annotations: tm.annotations,
                finalizers: tm.finalizers,
                owner_references: Some(vec![podutil::owner_ref(
                    DS_API_VERSION,
                    DS_KIND,
                    name,
                    ds.metadata.uid.as_deref().unwrap_or_default(),
                )]),
                ..Default::default()
            },
            spec: Some(spec),
            status: None,
        }
    }

    /// Upstream `syncNodes`: at most [`BURST_REPLICAS`] of each.
    fn sync_nodes(&self, create: &[String], delete: &[&Pod], out: &mut Vec<Action>) {
        for node in create.iter().take(BURST_REPLICAS) {
            out.push(Action::CreatePod {
                pod: Box::new(self.new_pod(node)),
                node: node.clone(),
            });
        }
        let mut seen = BTreeSet::new();
        for pod in delete
            .iter()
            .filter(|p| seen.insert(name_of(&p.metadata)))
            .take(BURST_REPLICAS)
        {
            out.push(Action::DeletePod {
                name: name_of(&pod.metadata).to_string(),
                uid: pod.metadata.uid.clone(),
            });
        }
    }

    /// Upstream `updateDaemonSetStatus`.
    fn status(&self, old: &DaemonSetStatus, observe: bool) -> DaemonSetStatus {
        let (mut desired, mut current, mut mis, mut ready, mut updated, mut avail) =
            (0, 0, 0, 0, 0, 0);
        for (node, (should_run, _)) in &self.fit {
            let mut pods = self.node_pods.get(node).cloned().unwrap_or_default();
            if !should_run {
                mis += i32::from(!pods.is_empty());
                continue;
            }
            desired += 1;
            sort_pods(&mut pods);
            let Some(pod) = pods.first() else { continue };
            current += 1;
            if podutil::is_ready(pod) {
                ready += 1;
                avail += i32::from(self.available(pod));
            }
            updated += i32::from(is_updated(pod, &self.hash, self.generation));
        }
        let observed = if observe {
            self.input.ds.metadata.generation
        } else {
            old.observed_generation
        };
        DaemonSetStatus {
            desired_number_scheduled: desired,
            current_number_scheduled: current,
            number_misscheduled: mis,
            number_ready: ready,
            updated_number_scheduled: Some(updated),
            number_available: Some(avail),
            number_unavailable: Some(desired - avail),
            observed_generation: observed,
            collision_count: old.collision_count,
            conditions: old.conditions.clone(),
        }
    }
}

fn strategy_type(ds: &DaemonSet) -> &str {
    ds.spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|u| u.type_.as_deref())
        .unwrap_or("RollingUpdate")
}

/// Upstream `AllowsSurge`: maxSurge scaled against one node is non-zero.
fn allows_surge(ds: &DaemonSet) -> bool {
    if strategy_type(ds) != "RollingUpdate" {
        return false;
    }
    ds.spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|u| u.rolling_update.as_ref())
        .and_then(|r| r.max_surge.as_ref())
        .and_then(|v| scaled(v, 1))
        .is_some_and(|v| v != 0)
}

fn index_pods(pods: &[Pod]) -> BTreeMap<String, Vec<&Pod>> {
    let mut map: BTreeMap<String, Vec<&Pod>> = BTreeMap::new();
    for pod in pods {
        let deleted_terminal =
            podutil::is_terminal(pod) && pod.metadata.deletion_timestamp.is_some();
        if deleted_terminal {
            continue;
        }
        if let Some(node) = target_node(pod) {
            map.entry(node.to_string()).or_default().push(pod);
        }
    }
    map
}

/// Plans one reconcile step of a DaemonSet.
pub fn plan(input: &Input) -> Plan {
    let ds = input.ds;
    let old_status = ds.status.clone().unwrap_or_default();
    let owner = Owner {
        api_version: DS_API_VERSION,
        kind: DS_KIND,
        meta: &ds.metadata,
        template: template(ds),
    };
    let resolved = history::resolve(
        &owner,
        input.revisions,
        old_status.collision_count.unwrap_or(0),
    );
    let update = &resolved.update;
    let hash = update
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(REVISION_HASH_LABEL))
        .cloned()
        .unwrap_or_else(|| name_of(&update.metadata).to_string());
    let mut actions = Vec::new();
    match resolved.change.clone() {
        Some(RevisionChange::Create(cr)) => actions.push(Action::CreateRevision(cr)),
        Some(RevisionChange::Renumber { name, revision }) => {
            actions.push(Action::RenumberRevision { name, revision })
        }
        None => {}
    }
    let mut backoff = input.backoff.clone();
    backoff.gc(input.now);
    let mut ctx = Ctx {
        input,
        hash,
        generation: template_generation(ds),
        min_ready: ds
            .spec
            .as_ref()
            .and_then(|s| s.min_ready_seconds)
            .unwrap_or(0),
        surge_allowed: allows_surge(ds),
        node_pods: index_pods(input.pods),
        fit: input
            .nodes
            .iter()
            .map(|n| (name_of(&n.metadata).to_string(), node_should_run(ds, n)))
            .collect(),
        events: Vec::new(),
        backoff,
        requeue: None,
    };
    let deleting = ds.metadata.deletion_timestamp.is_some();
    if !deleting {
        let (create, delete) = ctx.manage();
        actions.append(&mut ctx.events);
        if create.is_empty() && delete.is_empty() {
            if strategy_type(ds) == "RollingUpdate" {
                let (surge, unavailable) = ctx.rolling_limits();
                let (create, delete) = if surge == 0 {
                    (vec![], ctx.roll_unavailable(unavailable))
                } else {
                    ctx.roll_surge(surge)
                };
                ctx.sync_nodes(&create, &delete, &mut actions);
            }
        } else {
            ctx.sync_nodes(&create, &delete, &mut actions);
        }
    }
    let mut status = ctx.status(&old_status, !deleting);
    status.collision_count = Some(resolved.collision_count);
    actions.extend(prune_history(&ctx, input.revisions, &resolved));
    if ctx.min_ready > 0 && status.number_ready != status.number_available.unwrap_or(0) {
        ctx.wait(Duration::seconds(i64::from(ctx.min_ready)));
    }
    Plan {
        actions,
        status,
        backoff: ctx.backoff,
        requeue_after: ctx.requeue,
    }
}

/// Upstream `cleanupHistory`: old revisions beyond the limit whose hash no
/// pod carries.
fn prune_history(
    ctx: &Ctx,
    revisions: &[ControllerRevision],
    resolved: &history::Resolved,
) -> Vec<Action> {
    let revisions = history::apply_change(revisions, resolved.change.as_ref());
    let live: BTreeSet<&str> = ctx
        .input
        .pods
        .iter()
        .filter_map(|p| label(p, REVISION_HASH_LABEL))
        .chain([ctx.hash.as_str()])
        .collect();
    let current = name_of(&resolved.update.metadata);
    let is_live = |r: &ControllerRevision| {
        name_of(&r.metadata) == current
            || r.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(REVISION_HASH_LABEL))
                .is_some_and(|h| live.contains(h.as_str()))
    };
    let limit = ctx
        .input
        .ds
        .spec
        .as_ref()
        .and_then(|s| s.revision_history_limit)
        .unwrap_or(history::DEFAULT_REVISION_HISTORY_LIMIT);
    history::prune(
        &revisions,
        is_live,
        limit,
        history::LimitMode::AllButCurrent,
        Some(current),
    )
    .into_iter()
    .map(|name| Action::DeleteRevision { name })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{
        DaemonSetSpec, DaemonSetUpdateStrategy, RollingUpdateDaemonSet,
    };
    use k8s_openapi::api::core::v1::{Container, NodeSpec, PodCondition, PodStatus, Taint};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2024-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn ds(image: &str) -> DaemonSet {
        let labels: BTreeMap<String, String> = [("app".to_string(), "agent".to_string())].into();
        DaemonSet {
            metadata: ObjectMeta {
                name: Some("agent".into()),
                namespace: Some("kube-system".into()),
                uid: Some("ds-uid".into()),
                generation: Some(2),
                ..Default::default()
            },
            spec: Some(DaemonSetSpec {
                selector: LabelSelector {
                    match_labels: Some(labels.clone()),
                    ..Default::default()
                },
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(labels),
                        ..Default::default()
                    }),
                    spec: Some(PodSpec {
                        containers: vec![Container {
                            name: "a".into(),
                            image: Some(image.into()),
                            ..Default::default()
                        }],
                        ..Default::default()
                    }),
                },
                ..Default::default()
            }),
            status: None,
        }
    }

    fn node(name: &str, taint: Option<(&str, &str)>) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some([("kubernetes.io/hostname".to_string(), name.to_string())].into()),
                ..Default::default()
            },
            spec: Some(NodeSpec {
                taints: taint.map(|(k, e)| {
                    vec![Taint {
                        key: k.into(),
                        effect: e.into(),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            }),
            status: None,
        }
    }

    /// Applies plans: created pods are scheduled at once and can be made ready.
    struct Sim {
        ds: DaemonSet,
        nodes: Vec<Node>,
        pods: Vec<Pod>,
        revisions: Vec<ControllerRevision>,
        backoff: FailedPodBackoff,
        seq: u32,
    }

    impl Sim {
        fn new(ds: DaemonSet, nodes: Vec<Node>) -> Sim {
            Sim {
                ds,
                nodes,
                pods: vec![],
                revisions: vec![],
                backoff: FailedPodBackoff::default(),
                seq: 0,
            }
        }

        fn step(&mut self) -> Vec<Action> {
            let input = Input {
                ds: &self.ds,
                nodes: &self.nodes,
                pods: &self.pods,
                revisions: &self.revisions,
                backoff: &self.backoff,
                now: now(),
            };
            let plan = plan(&input);
            for a in &plan.actions {
                match a {
                    Action::CreateRevision(r) => self.revisions.push((**r).clone()),
                    Action::CreatePod { pod, node } => {
                        self.seq += 1;
                        let mut p = pod.clone();
                        p.metadata.name = Some(format!("agent-{:03}", self.seq));
                        p.metadata.uid = Some(format!("u{}", self.seq));
                        p.metadata.creation_timestamp = Some(podutil::chrono_to_time(
                            now() + Duration::seconds(i64::from(self.seq)),
                        ));
                        p.spec.as_mut().unwrap().node_name = Some(node.clone());
                        p.status = Some(PodStatus {
                            phase: Some("Pending".into()),
                            ..Default::default()
                        });
                        self.pods.push(*p);
                    }
                    Action::DeletePod { name, .. } => {
                        self.pods.retain(|p| name_of(&p.metadata) != name)
                    }
                    _ => {}
                }
            }
            self.ds.status = Some(plan.status);
            self.backoff = plan.backoff;
            plan.actions
        }

        fn ready_all(&mut self) {
            for p in &mut self.pods {
                p.status = Some(PodStatus {
                    phase: Some("Running".into()),
                    conditions: Some(vec![PodCondition {
                        type_: "Ready".into(),
                        status: "True".into(),
                        ..Default::default()
                    }]),
                    ..Default::default()
                });
            }
        }

        fn nodes_with_pods(&self) -> Vec<String> {
            let mut v: Vec<String> = self
                .pods
                .iter()
                .filter_map(|p| target_node(p).map(str::to_string))
                .collect();
            v.sort();
            v
        }
    }

    fn count(actions: &[Action]) -> (usize, usize) {
        let c = actions
            .iter()
            .filter(|a| matches!(a, Action::CreatePod { .. }))
            .count();
        let d = actions
            .iter()
            .filter(|a| matches!(a, Action::DeletePod { .. }))
            .count();
        (c, d)
    }

    fn three_nodes() -> Vec<Node> {
        vec![
            node("n1", None),
            node("n2", None),
            node("n3", Some(("dedicated", "NoSchedule"))),
        ]
    }

    #[test]
    fn taints_limit_placement_and_toleration_fixes_it() {
        let mut sim = Sim::new(ds("a:1"), three_nodes());
        let a = sim.step();
        assert_eq!(count(&a), (2, 0));
        assert_eq!(sim.nodes_with_pods(), vec!["n1", "n2"]);
        let st = sim.ds.status.clone().unwrap();
        assert_eq!(
            (st.desired_number_scheduled, st.current_number_scheduled),
            (2, 0)
        );
        sim.step();
        let st = sim.ds.status.clone().unwrap();
        assert_eq!(
            (
                st.desired_number_scheduled,
                st.current_number_scheduled,
                st.number_misscheduled
            ),
            (2, 2, 0)
        );
        assert_eq!(st.observed_generation, Some(2));

        sim.ds
            .spec
            .as_mut()
            .unwrap()
            .template
            .spec
            .as_mut()
            .unwrap()
            .tolerations = Some(vec![Toleration {
            key: Some("dedicated".into()),
            operator: Some("Exists".into()),
            ..Default::default()
        }]);
        sim.step();
        assert_eq!(sim.nodes_with_pods(), vec!["n1", "n2", "n3"]);
        assert_eq!(sim.ds.status.as_ref().unwrap().desired_number_scheduled, 3);
    }

    #[test]
    fn created_pod_shape() {
        let mut d = ds("a:1");
        d.metadata.annotations =
            Some([(TEMPLATE_GENERATION_ANNOTATION.to_string(), "4".to_string())].into());
        d.spec
            .as_mut()
            .unwrap()
            .template
            .spec
            .as_mut()
            .unwrap()
            .host_network = Some(true);
        let mut sim = Sim::new(d, vec![node("n1", None)]);
        let a = sim.step();
        let Some(Action::CreatePod { pod, node }) =
            a.iter().find(|a| matches!(a, Action::CreatePod { .. }))
        else {
            panic!("no create")
        };
        assert_eq!(node, "n1");
        assert_eq!(pod.metadata.generate_name.as_deref(), Some("agent-"));
        let l = pod.metadata.labels.as_ref().unwrap();
        let rev = &sim.revisions[0];
        assert_eq!(
            Some(&l[REVISION_HASH_LABEL]),
            rev.metadata
                .labels
                .as_ref()
                .unwrap()
                .get(REVISION_HASH_LABEL)
        );
        assert_eq!(l[TEMPLATE_GENERATION_LABEL], "4");
        let spec = pod.spec.as_ref().unwrap();
        assert_eq!(spec.tolerations.as_ref().unwrap().len(), 7);
        assert_eq!(
            target_node(&Pod {
                spec: Some(spec.clone()),
                ..Default::default()
            }),
            Some("n1")
        );
        assert_eq!(
            pod.metadata.owner_references.as_ref().unwrap()[0].kind,
            "DaemonSet"
        );
        assert_eq!(
            success_event(&a[1], Some("agent-x")).unwrap().message,
            "Created pod: agent-x"
        );
    }

    #[test]
    fn node_should_run_table() {
        let d = ds("a:1");
        let mut sel = ds("a:1");
        sel.spec
            .as_mut()
            .unwrap()
            .template
            .spec
            .as_mut()
            .unwrap()
            .node_selector =
            Some([("kubernetes.io/hostname".to_string(), "n1".to_string())].into());
        let cases = [
            (&d, node("n1", None), (true, true)),
            (&d, node("n1", Some(("x", "NoSchedule"))), (false, true)),
            (&d, node("n1", Some(("x", "NoExecute"))), (false, false)),
            (
                &d,
                node("n1", Some(("x", "PreferNoSchedule"))),
                (true, true),
            ),
            (
                &d,
                node("n1", Some(("node.kubernetes.io/not-ready", "NoExecute"))),
                (true, true),
            ),
            (
                &d,
                node(
                    "n1",
                    Some(("node.kubernetes.io/unschedulable", "NoSchedule")),
                ),
                (true, true),
            ),
            (
                &d,
                node(
                    "n1",
                    Some(("node.kubernetes.io/network-unavailable", "NoSchedule")),
                ),
                (false, true),
            ),
            (&sel, node("n1", None), (true, true)),
            (&sel, node("n2", None), (false, false)),
        ];
        for (i, (d, n, want)) in cases.iter().enumerate() {
            assert_eq!(node_should_run(d, n), *want, "case {i}");
        }
    }

    #[test]
    fn misplaced_duplicate_and_failed_pods_are_deleted() {
        let mut sim = Sim::new(ds("a:1"), vec![node("n1", None), node("n2", None)]);
        sim.step();
        sim.ready_all();
        // duplicate on n1: the newer one goes
        let mut dup = sim.pods[0].clone();
        dup.metadata.name = Some("agent-dup".into());
        dup.metadata.creation_timestamp =
            Some(podutil::chrono_to_time(now() + Duration::seconds(100)));
        sim.pods.push(dup);
        let a = sim.step();
        assert_eq!(
            a,
            vec![Action::DeletePod {
                name: "agent-dup".into(),
                uid: Some("u1".into())
            }]
        );
        // n2 gets a NoExecute taint: its pod is removed
        sim.nodes[1] = node("n2", Some(("x", "NoExecute")));
        let a = sim.step();
        assert_eq!(count(&a), (0, 1));
        assert_eq!(sim.nodes_with_pods(), vec!["n1"]);
        let st = sim.ds.status.clone().unwrap();
        assert_eq!(st.desired_number_scheduled, 1);
        // failed pod: warning + delete, then backoff, then recreate
        sim.pods[0].status.as_mut().unwrap().phase = Some("Failed".into());
        let a = sim.step();
        assert!(
            a.iter()
                .any(|a| matches!(a, Action::Event(e) if e.reason == "FailedDaemonPod"))
        );
        assert_eq!(count(&a), (0, 1));
        assert_eq!(count(&sim.step()), (1, 0));
        sim.pods[0].status.as_mut().unwrap().phase = Some("Failed".into());
        let input = Input {
            ds: &sim.ds,
            nodes: &sim.nodes,
            pods: &sim.pods,
            revisions: &sim.revisions,
            backoff: &sim.backoff,
            now: now(),
        };
        let p = plan(&input);
        assert_eq!(count(&p.actions), (0, 0), "in backoff");
        assert_eq!(p.requeue_after, Some(Duration::seconds(1)));
    }

    fn rolling(max_unavailable: Option<IntOrString>, max_surge: Option<IntOrString>) -> DaemonSet {
        let mut d = ds("a:1");
        d.spec.as_mut().unwrap().update_strategy = Some(DaemonSetUpdateStrategy {
            type_: Some("RollingUpdate".into()),
            rolling_update: Some(RollingUpdateDaemonSet {
                max_unavailable,
                max_surge,
            }),
        });
        d
    }

    fn set_image(sim: &mut Sim, image: &str) {
        sim.ds
            .spec
            .as_mut()
            .unwrap()
            .template
            .spec
            .as_mut()
            .unwrap()
            .containers[0]
            .image = Some(image.into());
    }

    fn nodes(n: usize) -> Vec<Node> {
        (1..=n).map(|i| node(&format!("n{i}"), None)).collect()
    }

    #[test]
    fn rolling_update_respects_max_unavailable() {
        let cases = [
            (IntOrString::Int(1), 1),
            (IntOrString::Int(2), 2),
            (IntOrString::String("50%".into()), 2),
        ];
        for (mu, per_round) in cases {
            let mut sim = Sim::new(rolling(Some(mu.clone()), None), nodes(4));
            sim.step();
            sim.ready_all();
            set_image(&mut sim, "a:2");
            let mut rounds = 0;
            loop {
                let a = sim.step();
                let (c, d) = count(&a);
                if d > 0 {
                    assert!(d <= per_round, "{mu:?}: {d}");
                    assert_eq!(d, per_round.min(4 - rounds * per_round), "{mu:?}");
                    rounds += 1;
                    // recreated next step, still unavailable: no more deletions
                    assert_eq!(count(&sim.step()), (d, 0));
                    assert_eq!(count(&sim.step()), (0, 0));
                    sim.ready_all();
                } else {
                    assert_eq!(c, 0);
                    break;
                }
            }
            let st = sim.ds.status.clone().unwrap();
            assert_eq!(st.updated_number_scheduled, Some(4), "{mu:?}");
            assert_eq!(st.number_available, Some(4));
            assert_eq!(st.number_unavailable, Some(0));
        }
    }

    #[test]
    fn rolling_update_with_surge() {
        let mut sim = Sim::new(
            rolling(Some(IntOrString::Int(0)), Some(IntOrString::Int(1))),
            nodes(2),
        );
        sim.step();
        sim.ready_all();
        set_image(&mut sim, "a:2");
        // one surge pod next to an old one
        assert_eq!(count(&sim.step()), (1, 0));
        assert_eq!(count(&sim.step()), (0, 0));
        sim.ready_all();
        // new pod available: the old one is deleted (by the core loop)
        assert_eq!(count(&sim.step()), (0, 1));
        assert_eq!(count(&sim.step()), (1, 0));
        sim.ready_all();
        assert_eq!(count(&sim.step()), (0, 1));
        assert_eq!(count(&sim.step()), (0, 0));
        assert_eq!(sim.pods.len(), 2);
        assert_eq!(
            sim.ds.status.as_ref().unwrap().updated_number_scheduled,
            Some(2)
        );
    }

    #[test]
    fn on_delete_and_history() {
        let mut d = ds("a:1");
        d.spec.as_mut().unwrap().update_strategy = Some(DaemonSetUpdateStrategy {
            type_: Some("OnDelete".into()),
            rolling_update: None,
        });
        d.spec.as_mut().unwrap().revision_history_limit = Some(0);
        let mut sim = Sim::new(d, nodes(1));
        sim.step();
        sim.ready_all();
        set_image(&mut sim, "a:2");
        let a = sim.step();
        assert_eq!(count(&a), (0, 0));
        assert_eq!(sim.revisions.len(), 2, "old revision still used by a pod");
        sim.pods.clear();
        let a = sim.step();
        assert_eq!(count(&a), (1, 0));
        assert!(a.iter().any(|a| matches!(a, Action::DeleteRevision { .. })));
        assert_eq!(
            failure_event(
                &Action::DeletePod {
                    name: "x".into(),
                    uid: None
                },
                "boom"
            )
            .unwrap()
            .message,
            "Error deleting: boom"
        );
    }

    #[test]
    fn backoff_doubles_and_expires() {
        let mut b = FailedPodBackoff::default();
        let t = now();
        assert_eq!(b.remaining("n", t), None);
        b.next("n", t);
        assert_eq!(b.remaining("n", t), Some(Duration::seconds(1)));
        b.next("n", t + Duration::seconds(1));
        assert_eq!(
            b.remaining("n", t + Duration::seconds(1)),
            Some(Duration::seconds(2))
        );
        b.gc(t + Duration::hours(1));
        assert!(b.entries.is_empty());
    }
}
