//! The scheduler of `skiff server` (upstream kube-scheduler): the I/O shell
//! around the pure core in this directory.
//!
//! - Its own informers (pods, nodes, namespaces, PVCs, PVs, StorageClasses,
//!   PDBs, PriorityClasses) feed the `Cache` (nodes, assigned pods,
//!   namespace labels) and the `SchedulingQueue` (pending pods whose
//!   `spec.schedulerName` is `default-scheduler` and that have no node);
//!   relevant changes become `queue.on_event` cluster events.
//! - One loop owns the cache and the queue: pop → volume facts from PVCs/PVs
//!   → `framework::schedule` → on success `cache.assume` and a spawned bind
//!   (WaitForFirstConsumer claims get `volume.kubernetes.io/selected-node`
//!   first, then `pods/<name>/binding`, then a `Scheduled` event); on
//!   failure `preemption::preempt` (victims get a `DisruptionTarget`
//!   condition, a `Preempted` event and are deleted; the pod gets
//!   `status.nominatedNodeName`), a `FailedScheduling` event with the
//!   upstream `0/N nodes are available: …` text and a
//!   `PodScheduled=False reason=Unschedulable` condition.
//!
//! Invariants: decisions are sequential against the cache (`assume` before
//! the next pop), binds run concurrently (at most `BIND_CONCURRENCY` in
//! flight); a failed bind `forget`s the assumption and backs the pod off;
//! an unbound copy of an assumed pod never re-enters the queue. The pod's
//! priority comes from `spec.priority`, else from its PriorityClass (the API
//! server resolves only the built-in classes).
//!
//! Everything here runs inside the `kube-scheduler` lease (see
//! `controllers::leader`); dropping the future stops the informers.

pub mod cache;
pub mod framework;
pub mod plugins;
pub mod predicates;
pub mod preemption;
pub mod queue;

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use futures::{FutureExt, Stream, StreamExt};
use k8s_openapi::api::core::v1::{
    Binding, Namespace, Node, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm,
    ObjectReference, PersistentVolume, PersistentVolumeClaim, Pod, PodCondition,
};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::scheduling::v1::PriorityClass;
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::reflector::ObjectRef;
use serde_json::json;
use tokio::sync::{Semaphore, mpsc};

use crate::controllers::events::{Kind, Recorder};
use crate::controllers::informers::Informer;
use cache::{Cache, pod_key};
use framework::{FitError, SchedulerState};
use plugins::VolumeInfo;
use queue::{ClusterEvent, SchedulingQueue};

/// The `spec.schedulerName` this scheduler serves (the API server's default).
pub const SCHEDULER_NAME: &str = "default-scheduler";
/// Binds (API round trips) in flight at once.
pub const BIND_CONCURRENCY: usize = 64;
/// The annotation the provisioner waits for on WaitForFirstConsumer claims.
pub const ANN_SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
const ANN_DEFAULT_CLASS: &str = "storageclass.kubernetes.io/is-default-class";

/// All informers the scheduler reads.
struct Informers {
    pods: Arc<Informer<Pod>>,
    nodes: Arc<Informer<Node>>,
    namespaces: Arc<Informer<Namespace>>,
    pvcs: Arc<Informer<PersistentVolumeClaim>>,
    pvs: Arc<Informer<PersistentVolume>>,
    classes: Arc<Informer<StorageClass>>,
    pdbs: Arc<Informer<PodDisruptionBudget>>,
    priority_classes: Arc<Informer<PriorityClass>>,
}

/// Aborts the informer tasks when the scheduler future is dropped.
struct AbortOnDrop(Vec<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for h in &self.0 {
            h.abort();
        }
    }
}

/// What a spawned bind reports back to the loop.
struct BindDone {
    pod: Arc<Pod>,
    result: Result<(), kube::Error>,
}

type Sub<K> = std::pin::Pin<Box<dyn Stream<Item = Arc<K>> + Send>>;

/// Run the scheduler until the future is dropped (the lease is lost).
pub fn run(
    client: kube::Client,
    shared: crate::controllers::informers::Shared,
) -> impl Future<Output = ()> + Send + 'static {
    let inf = Informers {
        pods: shared.pods,
        nodes: shared.nodes,
        namespaces: Informer::new(Api::all(client.clone())),
        pvcs: Informer::new(Api::all(client.clone())),
        pvs: Informer::new(Api::all(client.clone())),
        classes: Informer::new(Api::all(client.clone())),
        pdbs: Informer::new(Api::all(client.clone())),
        priority_classes: Informer::new(Api::all(client.clone())),
    };
    let subs = Subs {
        pods: inf.pods.subscribe().boxed(),
        nodes: inf.nodes.subscribe().boxed(),
        namespaces: inf.namespaces.subscribe().boxed(),
        pvcs: inf.pvcs.subscribe().boxed(),
        pvs: inf.pvs.subscribe().boxed(),
        classes: inf.classes.subscribe().boxed(),
    };
    async move {
        let _guard = AbortOnDrop(vec![
            inf.namespaces.start(),
            inf.pvcs.start(),
            inf.pvs.start(),
            inf.classes.start(),
            inf.pdbs.start(),
            inf.priority_classes.start(),
        ]);
        // like upstream, decide only once the cache holds every node and
        // every assigned pod
        inf.pods.ready().await;
        inf.nodes.ready().await;
        let _ = inf.priority_classes.store().wait_until_ready().await;
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let mut s = Scheduler {
            recorder: Recorder::new(client.clone(), SCHEDULER_NAME),
            client,
            inf,
            cache: Cache::new(),
            queue: SchedulingQueue::new(),
            state: SchedulerState::new(seed()),
            binds: Arc::new(Semaphore::new(BIND_CONCURRENCY)),
            done_tx,
        };
        s.run(subs, done_rx).await;
    }
}

fn seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
}

struct Subs {
    pods: Sub<Pod>,
    nodes: Sub<Node>,
    namespaces: Sub<Namespace>,
    pvcs: Sub<PersistentVolumeClaim>,
    pvs: Sub<PersistentVolume>,
    classes: Sub<StorageClass>,
}

/// Everything immediately available on a subscription (after `first`).
fn drain<K>(first: Option<Arc<K>>, sub: &mut Sub<K>) -> Vec<Arc<K>> {
    let mut out: Vec<Arc<K>> = first.into_iter().collect();
    while let Some(Some(o)) = sub.next().now_or_never() {
        out.push(o);
    }
    out
}

struct Scheduler {
    client: kube::Client,
    recorder: Recorder,
    inf: Informers,
    cache: Cache,
    queue: SchedulingQueue,
    state: SchedulerState,
    binds: Arc<Semaphore>,
    done_tx: mpsc::UnboundedSender<BindDone>,
}

impl Scheduler {
    async fn run(&mut self, mut subs: Subs, mut done_rx: mpsc::UnboundedReceiver<BindDone>) {
        loop {
            self.apply_all(&mut subs, &mut done_rx);
            if let Some(pod) = self.queue.pop(Instant::now()) {
                self.schedule_one(pod).await;
                continue;
            }
            let wake = self
                .queue
                .next_wakeup()
                .map(tokio::time::Instant::from_std)
                .unwrap_or_else(|| {
                    tokio::time::Instant::now() + std::time::Duration::from_secs(60)
                });
            tokio::select! {
                Some(p) = subs.pods.next() => { let v = drain(Some(p), &mut subs.pods); self.on_pods(v); }
                Some(n) = subs.nodes.next() => { let v = drain(Some(n), &mut subs.nodes); self.on_nodes(v); }
                Some(n) = subs.namespaces.next() => { let v = drain(Some(n), &mut subs.namespaces); self.on_namespaces(v); }
                Some(_) = subs.pvcs.next() => self.on_volume_change(),
                Some(_) = subs.pvs.next() => self.on_volume_change(),
                Some(_) = subs.classes.next() => self.on_volume_change(),
                Some(d) = done_rx.recv() => self.on_bind_done(d),
                _ = tokio::time::sleep_until(wake) => {}
            }
        }
    }

    /// Applies every change and bind result already waiting.
    fn apply_all(&mut self, subs: &mut Subs, done_rx: &mut mpsc::UnboundedReceiver<BindDone>) {
        let nodes = drain(None, &mut subs.nodes);
        if !nodes.is_empty() {
            self.on_nodes(nodes);
        }
        let nss = drain(None, &mut subs.namespaces);
        if !nss.is_empty() {
            self.on_namespaces(nss);
        }
        let pods = drain(None, &mut subs.pods);
        if !pods.is_empty() {
            self.on_pods(pods);
        }
        let vol = !drain(None, &mut subs.pvcs).is_empty()
            | !drain(None, &mut subs.pvs).is_empty()
            | !drain(None, &mut subs.classes).is_empty();
        if vol {
            self.on_volume_change();
        }
        while let Ok(d) = done_rx.try_recv() {
            self.on_bind_done(d);
        }
    }

    // ------------------------------------------------------------ events

    /// Pod changes: each touched pod is reconciled against the informer's
    /// store (the subscription sends old and new objects alike).
    fn on_pods(&mut self, seen: Vec<Arc<Pod>>) {
        let now = Instant::now();
        let store = self.inf.pods.store();
        let mut done: HashSet<(String, String)> = HashSet::new();
        for old in seen.into_iter().rev() {
            let ns = old.metadata.namespace.clone().unwrap_or_default();
            let name = old.metadata.name.clone().unwrap_or_default();
            let uid = old.metadata.uid.clone().unwrap_or_default();
            if !done.insert((format!("{ns}/{name}"), uid)) {
                continue;
            }
            let current = store
                .get(&ObjectRef::new(&name).within(&ns))
                .filter(|p| p.metadata.uid == old.metadata.uid);
            match current {
                None => {
                    let was_placed = self.cache.pod_node(&pod_key(&old)).is_some();
                    self.cache.remove_pod(&old);
                    self.queue.delete(&old);
                    if was_placed {
                        self.queue.on_event(ClusterEvent::AssignedPodDelete, now);
                    }
                }
                Some(pod) => self.on_pod(pod, now),
            }
        }
    }

    fn on_pod(&mut self, pod: Arc<Pod>, now: Instant) {
        let pod = self.resolve_priority(pod);
        let key = pod_key(&pod);
        let spec = pod.spec.as_ref();
        let assigned = spec
            .and_then(|s| s.node_name.as_deref())
            .is_some_and(|n| !n.is_empty());
        if assigned {
            self.queue.delete(&pod);
            let before = self.cache.pod_node(&key).is_some();
            self.cache.upsert_pod(pod);
            let after = self.cache.pod_node(&key).is_some();
            if before && !after {
                self.queue.on_event(ClusterEvent::AssignedPodDelete, now);
            } else if after && !before {
                self.queue.on_event(ClusterEvent::AssignedPodAdd, now);
            }
            return;
        }
        if self.cache.is_assumed(&key) {
            // a stale unbound copy while our bind is in flight
            return;
        }
        let ours = spec.and_then(|s| s.scheduler_name.as_deref()) == Some(SCHEDULER_NAME);
        if ours && pod.metadata.deletion_timestamp.is_none() && !is_terminal(&pod) {
            self.queue.add(pod, now);
        } else {
            self.queue.delete(&pod);
        }
    }

    /// The pod with `spec.priority` filled from its PriorityClass when the
    /// API server left it unset.
    fn resolve_priority(&self, pod: Arc<Pod>) -> Arc<Pod> {
        let Some(spec) = pod.spec.as_ref() else {
            return pod;
        };
        if spec.priority.is_some() {
            return pod;
        }
        let class = match spec
            .priority_class_name
            .as_deref()
            .filter(|c| !c.is_empty())
        {
            Some(name) => self.inf.priority_classes.store().get(&ObjectRef::new(name)),
            None => self
                .inf
                .priority_classes
                .store()
                .state()
                .into_iter()
                .find(|c| c.global_default == Some(true)),
        };
        let mut p = (*pod).clone();
        let s = p.spec.get_or_insert_with(Default::default);
        s.priority = Some(class.as_ref().map_or(0, |c| c.value));
        if s.preemption_policy.is_none() {
            s.preemption_policy = Some(
                class
                    .and_then(|c| c.preemption_policy.clone())
                    .unwrap_or_else(|| "PreemptLowerPriority".into()),
            );
        }
        Arc::new(p)
    }

    fn on_nodes(&mut self, seen: Vec<Arc<Node>>) {
        let now = Instant::now();
        let store = self.inf.nodes.store();
        let mut done: HashSet<String> = HashSet::new();
        let mut event = None;
        for n in seen.into_iter().rev() {
            let name = n.metadata.name.clone().unwrap_or_default();
            if !done.insert(name.clone()) {
                continue;
            }
            match store.get(&ObjectRef::new(&name)) {
                None => self.cache.remove_node(&name),
                Some(node) => {
                    let old = self.cache.node(&name).and_then(|ni| ni.node.clone());
                    match old {
                        None => event = Some(ClusterEvent::NodeAdd),
                        Some(o) if node_changed(&o, &node) => {
                            event = event.or(Some(ClusterEvent::NodeUpdate))
                        }
                        Some(_) => {}
                    }
                    self.cache.upsert_node(node);
                }
            }
        }
        if let Some(e) = event {
            self.queue.on_event(e, now);
        }
    }

    fn on_namespaces(&mut self, seen: Vec<Arc<Namespace>>) {
        let store = self.inf.namespaces.store();
        let mut changed = false;
        for n in seen {
            let name = n.metadata.name.clone().unwrap_or_default();
            match store.get(&ObjectRef::new(&name)) {
                None => self.cache.remove_namespace(&name),
                Some(ns) => {
                    let labels = ns.metadata.labels.clone().unwrap_or_default();
                    if self.cache.namespace_labels().get(&name) != Some(&labels) {
                        changed = true;
                        self.cache.upsert_namespace(&name, labels);
                    }
                }
            }
        }
        if changed {
            self.queue
                .on_event(ClusterEvent::NamespaceChange, Instant::now());
        }
    }

    fn on_volume_change(&mut self) {
        self.queue
            .on_event(ClusterEvent::VolumeChange, Instant::now());
    }

    fn on_bind_done(&mut self, d: BindDone) {
        match d.result {
            Ok(()) => self.queue.done_scheduled(&d.pod),
            Err(e) => {
                self.cache.forget(&d.pod);
                if matches!(&e, kube::Error::Api(s) if s.code == 404) {
                    self.queue.delete(&d.pod);
                } else {
                    tracing::debug!("binding {}: {e}", queue::queue_key(&d.pod));
                    self.recorder.record(
                        &*d.pod,
                        Kind::Warning,
                        "FailedScheduling",
                        &format!("Binding rejected: {}", api_message(&e)),
                    );
                    self.queue.done_error(&d.pod, Instant::now());
                }
            }
        }
    }

    // ------------------------------------------------------------ one pod

    /// The pod's volume facts, and the unbound WaitForFirstConsumer claims
    /// that need the chosen node annotated before the bind.
    fn volumes(&self, pod: &Pod) -> (VolumeInfo, Vec<String>) {
        let mut info = VolumeInfo::default();
        let mut wffc = Vec::new();
        let ns = pod.metadata.namespace.as_deref().unwrap_or("");
        let pod_name = pod.metadata.name.as_deref().unwrap_or("");
        let Some(vols) = pod.spec.as_ref().and_then(|s| s.volumes.as_ref()) else {
            return (info, wffc);
        };
        let pvcs = self.inf.pvcs.store();
        for v in vols {
            let claim = match (&v.persistent_volume_claim, &v.ephemeral) {
                (Some(c), _) => c.claim_name.clone(),
                (None, Some(_)) => format!("{pod_name}-{}", v.name),
                _ => continue,
            };
            let Some(pvc) = pvcs.get(&ObjectRef::new(&claim).within(ns)) else {
                if info.missing_claim.is_none() {
                    info.missing_claim = Some(claim);
                }
                continue;
            };
            let spec = pvc.spec.as_ref();
            let volume = spec
                .and_then(|s| s.volume_name.as_deref())
                .filter(|v| !v.is_empty());
            if let Some(pv_name) = volume {
                if let Some(sel) = self
                    .inf
                    .pvs
                    .store()
                    .get(&ObjectRef::new(pv_name))
                    .and_then(|pv| pv.spec.as_ref()?.node_affinity.as_ref()?.required.clone())
                {
                    info.pv_node_affinity.push(sel);
                }
                continue;
            }
            let selected = pvc
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(ANN_SELECTED_NODE));
            if self.wait_for_first_consumer(&pvc) {
                match selected {
                    // provisioning already started on that node: stay there
                    Some(node) => info.pv_node_affinity.push(only_node(node)),
                    None => wffc.push(claim),
                }
            } else {
                info.unbound_immediate = true;
            }
        }
        (info, wffc)
    }

    fn wait_for_first_consumer(&self, pvc: &PersistentVolumeClaim) -> bool {
        let classes = self.inf.classes.store();
        let class = match pvc
            .spec
            .as_ref()
            .and_then(|s| s.storage_class_name.as_deref())
        {
            Some("") => None,
            Some(name) => classes.get(&ObjectRef::new(name)),
            None => classes.state().into_iter().find(|c| {
                c.metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(ANN_DEFAULT_CLASS))
                    .is_some_and(|v| v == "true")
            }),
        };
        class.and_then(|c| c.volume_binding_mode.clone()).as_deref() == Some("WaitForFirstConsumer")
    }

    async fn schedule_one(&mut self, pod: Arc<Pod>) {
        let (volumes, wffc) = self.volumes(&pod);
        match framework::schedule(&pod, &self.cache, &volumes, &mut self.state) {
            Ok(node) => {
                let Ok(permit) = self.binds.clone().acquire_owned().await else {
                    return;
                };
                self.cache.assume(&pod, &node);
                let client = self.client.clone();
                let recorder = self.recorder.clone();
                let tx = self.done_tx.clone();
                tokio::spawn(async move {
                    let started = std::time::Instant::now();
                    let result = bind(&client, &pod, &node, &wffc).await;
                    tracing::debug!(
                        target: "skiff::startup",
                        pod = %queue::queue_key(&pod),
                        uid = pod.metadata.uid.as_deref().unwrap_or_default(),
                        ms = started.elapsed().as_secs_f64() * 1e3,
                        "bound"
                    );
                    if result.is_ok() {
                        recorder.record(
                            &*pod,
                            Kind::Normal,
                            "Scheduled",
                            &format!("Successfully assigned {} to {node}", queue::queue_key(&pod)),
                        );
                    }
                    drop(permit);
                    let _ = tx.send(BindDone { pod, result });
                });
            }
            Err(mut fit) => {
                let mut nominated = None;
                let mut victims = Vec::new();
                if fit.num_all_nodes > 0 {
                    let pdbs: Vec<PodDisruptionBudget> = self
                        .inf
                        .pdbs
                        .store()
                        .state()
                        .iter()
                        .map(|p| (**p).clone())
                        .collect();
                    match preemption::preempt(
                        &pod,
                        &self.cache,
                        &volumes,
                        &fit,
                        &pdbs,
                        &mut self.state,
                    ) {
                        Ok(p) => {
                            nominated = Some(p.node);
                            victims = p.victims;
                        }
                        Err(msg) => fit.post_filter_msg = Some(msg),
                    }
                }
                self.queue
                    .done_unschedulable(&pod, queue::rejection_mask(&fit), Instant::now());
                let client = self.client.clone();
                let recorder = self.recorder.clone();
                tokio::spawn(async move {
                    report_unschedulable(&client, &recorder, &pod, &fit, nominated, victims).await
                });
            }
        }
    }
}

fn is_terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// Whether a node change can make a pending pod fit (heartbeats cannot).
fn node_changed(old: &Node, new: &Node) -> bool {
    let alloc = |n: &Node| n.status.as_ref().and_then(|s| s.allocatable.clone());
    old.metadata.labels != new.metadata.labels
        || old.spec != new.spec
        || alloc(old) != alloc(new)
        || predicates::node_is_ready(old) != predicates::node_is_ready(new)
}

/// A node selector matching exactly the node called `node`.
fn only_node(node: &str) -> NodeSelector {
    NodeSelector {
        node_selector_terms: vec![NodeSelectorTerm {
            match_fields: Some(vec![NodeSelectorRequirement {
                key: "metadata.name".into(),
                operator: "In".into(),
                values: Some(vec![node.to_string()]),
            }]),
            ..Default::default()
        }],
    }
}

fn api_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.message.clone(),
        other => other.to_string(),
    }
}

/// Annotates unbound WaitForFirstConsumer claims with the node, then binds.
async fn bind(
    client: &kube::Client,
    pod: &Pod,
    node: &str,
    wffc: &[String],
) -> Result<(), kube::Error> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let name = pod.metadata.name.as_deref().unwrap_or("");
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    for claim in wffc {
        let patch = json!({"metadata": {"annotations": {ANN_SELECTED_NODE: node}}});
        pvcs.patch(claim, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
    }
    let binding = Binding {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(ns.to_string()),
            uid: pod.metadata.uid.clone(),
            ..Default::default()
        },
        target: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Node".into()),
            name: Some(node.to_string()),
            ..Default::default()
        },
    };
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    pods.create_subresource::<_, serde_json::Value>(
        "binding",
        name,
        &PostParams::default(),
        &binding,
    )
    .await
    .map(|_| ())
}

/// The pod's `PodScheduled=False` condition after a failed attempt.
fn unschedulable_condition(pod: &Pod, message: &str) -> Option<PodCondition> {
    let existing = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "PodScheduled"));
    if let Some(c) = existing
        && c.status == "False"
        && c.reason.as_deref() == Some("Unschedulable")
        && c.message.as_deref() == Some(message)
    {
        return None;
    }
    let transition = match existing {
        Some(c) if c.status == "False" => c.last_transition_time.clone(),
        _ => None,
    };
    Some(PodCondition {
        type_: "PodScheduled".into(),
        status: "False".into(),
        reason: Some("Unschedulable".into()),
        message: Some(message.to_string()),
        last_transition_time: transition.or_else(|| {
            Some(crate::controllers::podutil::chrono_to_time(
                chrono::Utc::now(),
            ))
        }),
        ..Default::default()
    })
}

/// Reports a failed attempt: evicts preemption victims, records the
/// `FailedScheduling` event and writes the pod's condition (and nominated
/// node).
async fn report_unschedulable(
    client: &kube::Client,
    recorder: &Recorder,
    pod: &Pod,
    fit: &FitError,
    nominated: Option<String>,
    victims: Vec<Arc<Pod>>,
) {
    let message = fit.to_string();
    if let Some(node) = &nominated {
        for v in &victims {
            evict_victim(client, recorder, pod, v, node).await;
        }
    }
    recorder.record(pod, Kind::Warning, "FailedScheduling", &message);
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let name = pod.metadata.name.as_deref().unwrap_or("");
    let condition = unschedulable_condition(pod, &message);
    let current_nominated = pod
        .status
        .as_ref()
        .and_then(|s| s.nominated_node_name.clone());
    let nominated_changed = nominated.is_some() && nominated != current_nominated;
    if condition.is_none() && !nominated_changed {
        return;
    }
    let mut status = serde_json::Map::new();
    if let Some(c) = condition {
        status.insert("conditions".into(), json!([c]));
    }
    if nominated_changed {
        status.insert("nominatedNodeName".into(), json!(nominated));
    }
    let patch = json!({ "status": status });
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    if let Err(e) = pods
        .patch_status(name, &PatchParams::default(), &Patch::Strategic(&patch))
        .await
    {
        tracing::debug!("updating the status of pod {ns}/{name}: {e}");
    }
}

/// Upstream `prepareCandidate` for one victim: `DisruptionTarget`
/// condition, `Preempted` event, delete (uid precondition).
async fn evict_victim(
    client: &kube::Client,
    recorder: &Recorder,
    preemptor: &Pod,
    victim: &Pod,
    node: &str,
) {
    let ns = victim.metadata.namespace.as_deref().unwrap_or("default");
    let name = victim.metadata.name.as_deref().unwrap_or("");
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let condition = json!({"status": {"conditions": [{
        "type": "DisruptionTarget",
        "status": "True",
        "reason": "PreemptionByScheduler",
        "message": format!("{SCHEDULER_NAME}: preempting to accommodate a higher priority pod"),
        "lastTransitionTime": crate::controllers::podutil::chrono_to_time(chrono::Utc::now()),
    }]}});
    let _ = pods
        .patch_status(name, &PatchParams::default(), &Patch::Strategic(&condition))
        .await;
    recorder.record(
        victim,
        Kind::Normal,
        "Preempted",
        &preemption::preempted_event_message(preemptor, node),
    );
    let dp = DeleteParams {
        preconditions: Some(Preconditions {
            uid: victim.metadata.uid.clone(),
            resource_version: None,
        }),
        ..Default::default()
    };
    if let Err(e) = pods.delete(name, &dp).await {
        tracing::debug!("deleting preemption victim {ns}/{name}: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{NodeSpec, NodeStatus, PodStatus, Taint};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use std::collections::BTreeMap;

    fn node(labels: &[(&str, &str)]) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some("n1".into()),
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..Default::default()
            },
            status: Some(NodeStatus {
                allocatable: Some(BTreeMap::from([("cpu".into(), Quantity("4".into()))])),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn node_change_relevance() {
        let a = node(&[("a", "1")]);
        let mut b = a.clone();
        b.metadata.resource_version = Some("9".into());
        assert!(!node_changed(&a, &b), "metadata-only change is irrelevant");
        let c = node(&[("a", "2")]);
        assert!(node_changed(&a, &c));
        let mut d = a.clone();
        d.spec = Some(NodeSpec {
            taints: Some(vec![Taint {
                key: "k".into(),
                effect: "NoSchedule".into(),
                ..Default::default()
            }]),
            ..Default::default()
        });
        assert!(node_changed(&a, &d));
    }

    #[test]
    fn unschedulable_condition_written_once() {
        let mut pod = Pod::default();
        let c = unschedulable_condition(&pod, "0/1 nodes are available: 1 Insufficient cpu.")
            .expect("first failure writes the condition");
        assert_eq!(c.reason.as_deref(), Some("Unschedulable"));
        pod.status = Some(PodStatus {
            conditions: Some(vec![c.clone()]),
            ..Default::default()
        });
        assert!(
            unschedulable_condition(&pod, "0/1 nodes are available: 1 Insufficient cpu.").is_none()
        );
        let again = unschedulable_condition(&pod, "0/2 nodes are available: 2 Insufficient cpu.")
            .expect("a new message is written");
        assert_eq!(again.last_transition_time, c.last_transition_time);
    }

    #[test]
    fn only_node_selector_matches_that_node() {
        let sel = only_node("n1");
        assert!(predicates::node_selector_matches_node(&sel, &node(&[])));
        let mut other = node(&[]);
        other.metadata.name = Some("n2".into());
        assert!(!predicates::node_selector_matches_node(&sel, &other));
    }
}
