//! Pod lifecycle on CRI: watches the pods bound to this node and runs one
//! worker task per pod uid that makes the runtime match the spec (sandbox,
//! init containers in order, app containers, restarts with back-off, hooks,
//! graceful termination) and reports the pod's status.
//!
//! Layout: `pods.rs` (this file: context, watch loop, relister, orphan
//! cleanup), `pods/worker.rs` (one pod's sync/terminate shell),
//! `pods/sandbox.rs` and `pods/container.rs` (pure CRI config builders),
//! `pods/runtime.rs` (CRI reads/verbs), `pods/dev.rs` (the hidden
//! `skiff kubelet-dev` test harness). Decisions live in `kubelet::plan`
//! and `kubelet::status` (pure).
//!
//! Pods come from two sources: the API (pods bound to this node, minus
//! mirror pods) and the manifest directory (`kubelet::static_pods`, read
//! before the API is listed, so a restarted kubelet never mistakes a static
//! pod's sandbox for an orphan).
//!
//! Invariants: at most one worker per pod uid, and only it touches that
//! pod's sandboxes and containers; sandboxes labelled with a uid that is not
//! bound here any more (after the initial list) and is not a static pod are
//! stopped and removed; a restarted kubelet adopts what it finds by label
//! and creates nothing twice; a replaced static pod's successor (same
//! namespace/name, new uid) starts only once the old worker is done.

mod container;
pub mod dev;
mod events;
mod runtime;
mod sandbox;
mod worker;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use tokio::sync::{Notify, mpsc, watch};

use crate::controllers::events::Recorder;
use crate::kubelet::probes::{ProbeManager, ProbeUpdate};
use crate::kubelet::static_pods;

pub use container::{format_pod, pull_policy};
pub use sandbox::{cgroup_parent, log_directory};

/// What the kubelet's pod side needs; built once by the agent.
pub struct KubeletContext {
    pub client: kube::Client,
    pub cri: crate::kubelet::cri::Cri,
    pub cfg: crate::agent::AgentConfig,
    /// Component `kubelet`, host = node name (`Recorder::with_host`).
    pub recorder: Recorder,
    /// What runs here, with the status last computed (`GET /pods`).
    pub running: crate::kubelet::running::RunningPods,
}

/// State every worker shares.
pub(crate) struct Shared {
    pub ctx: Arc<KubeletContext>,
    /// configMap/secret reads shared by the volume refreshes of running pods.
    pub volume_reads: Arc<crate::kubelet::volumes::sources::ReadCache>,
    pub probes: ProbeManager,
    /// Node allocatable CPU and memory: the downward API's default limits.
    pub alloc_cpu_millis: i128,
    pub alloc_memory_bytes: i128,
    /// Machine memory: the base of OOM score adjustments, as upstream.
    pub node_memory_bytes: i128,
    /// What admission checks new pods against.
    pub admission: crate::kubelet::admission::Allocatable,
}

struct Handle {
    /// `namespace/name`, to hold back a static pod's successor.
    name: String,
    pod: watch::Sender<Option<Arc<Pod>>>,
    kick: Arc<Notify>,
    probe: mpsc::UnboundedSender<ProbeUpdate>,
    join: tokio::task::JoinHandle<()>,
}

type Workers = Arc<Mutex<HashMap<String, Handle>>>;

/// How long a configMap/secret read serves the periodic volume refreshes
/// (an update reaches running pods within this plus one resync).
const VOLUME_READ_TTL: Duration = Duration::from_secs(10);

/// How often every pod is synced even when nothing happened (upstream's
/// `--sync-frequency` is 1 m): bounds how late a configMap/secret update
/// reaches a running pod's volumes, with [`VOLUME_READ_TTL`].
pub const RESYNC: Duration = Duration::from_secs(30);
/// How often the runtime is relisted to notice container exits while
/// containerd's event stream is down.
const RELIST: Duration = Duration::from_secs(1);
/// How often it is relisted while events flow (a resync for anything the
/// stream cannot tell, e.g. a container removed behind our back).
const RELIST_WITH_EVENTS: Duration = Duration::from_secs(10);
/// How often orphaned sandboxes are looked for.
const ORPHAN_SWEEP: Duration = Duration::from_secs(60);

/// Node cpu (millicores) and memory (bytes) as the kernel reports them.
pub fn node_capacity() -> (i128, i128) {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1) as i128;
    let mem_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<i128>().ok())
        })
        .unwrap_or(0);
    (cpus * 1000, mem_kib * 1024)
}

fn lock(w: &Workers) -> std::sync::MutexGuard<'_, HashMap<String, Handle>> {
    w.lock().unwrap_or_else(|e| e.into_inner())
}

/// Run the pod side of the kubelet forever.
pub async fn run(ctx: Arc<KubeletContext>) {
    let (probe_tx, mut probe_rx) = mpsc::unbounded_channel();
    let probes = ProbeManager::new(ctx.cri.clone(), ctx.recorder.clone(), probe_tx);
    // the downward API's default limits are the node's allocatable
    let (cpu, node_memory_bytes) = node_capacity();
    let alloc = crate::kubelet::node::AllocatableSettings::from_settings(&ctx.cfg.kubelet);
    let alloc_cpu_millis = i128::from(alloc.cpu_millis(u64::try_from(cpu).unwrap_or(0)));
    let alloc_memory_bytes =
        i128::from(alloc.memory_bytes(u64::try_from(node_memory_bytes).unwrap_or(0)));
    let shared = Arc::new(Shared {
        ctx: ctx.clone(),
        volume_reads: Arc::new(crate::kubelet::volumes::sources::ReadCache::new(
            VOLUME_READ_TTL,
        )),
        probes,
        alloc_cpu_millis,
        alloc_memory_bytes,
        node_memory_bytes,
        admission: crate::kubelet::admission::Allocatable {
            milli_cpu: i64::try_from(alloc_cpu_millis).unwrap_or(i64::MAX),
            memory: i64::try_from(alloc_memory_bytes).unwrap_or(i64::MAX),
            // not tracked per pod here: the eviction manager guards the disk
            ephemeral_storage: i64::MAX,
            pods: i64::from(alloc.max_pods),
        },
    });
    let workers: Workers = Arc::new(Mutex::new(HashMap::new()));
    tokio::spawn(relist(shared.clone(), workers.clone()));

    // static pods first: they must be known before the API list ends
    let mut scanner = static_pods::Scanner::new(ctx.cfg.pod_manifests_dir(), &ctx.cfg.node_name);
    scanner.scan();
    let (static_tx, mut static_rx) = watch::channel(Arc::new(scanner.pods()));
    tokio::spawn(static_pods::watch_dir(scanner, static_tx));
    let mirrors = Arc::new(static_pods::MirrorCache::default());
    tokio::spawn(static_pods::mirror_loop(
        ctx.clone(),
        static_rx.clone(),
        mirrors.clone(),
    ));
    let mut statics = StaticSet::default();
    let first = static_rx.borrow_and_update().clone();
    statics.apply(&shared, &workers, &first);

    let api: Api<Pod> = Api::all(ctx.client.clone());
    let cfg = watcher::Config::default().fields(&format!("spec.nodeName={}", ctx.cfg.node_name));
    let stream = watcher::watcher(api, cfg).default_backoff();
    futures::pin_mut!(stream);
    let mut listing: Option<HashSet<String>> = None;
    let mut listed_once = false;
    let mut sweep = tokio::time::interval(ORPHAN_SWEEP);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            ev = stream.next() => match ev {
                Some(Ok(Event::Init)) => {
                    listing = Some(HashSet::new());
                    mirrors.relist_started();
                }
                Some(Ok(Event::InitApply(p))) => {
                    mirrors.apply(&p);
                    if let (Some(set), Some(uid)) = (listing.as_mut(), p.metadata.uid.clone()) {
                        set.insert(uid);
                    }
                    upsert(&shared, &workers, p);
                }
                Some(Ok(Event::InitDone)) => {
                    mirrors.relist_done();
                    let seen = listing.take().unwrap_or_default();
                    for (uid, h) in lock(&workers).iter() {
                        if !seen.contains(uid) && !statics.uids.contains(uid) {
                            let _ = h.pod.send(None);
                        }
                    }
                    listed_once = true;
                    cleanup_orphans(&shared, &workers).await;
                }
                Some(Ok(Event::Apply(p))) => {
                    mirrors.apply(&p);
                    upsert(&shared, &workers, p);
                }
                Some(Ok(Event::Delete(p))) => {
                    if let Some(uid) = p.metadata.uid.as_deref() {
                        mirrors.delete(uid);
                        if let Some(h) = lock(&workers).get(uid) {
                            let _ = h.pod.send(None);
                        }
                    }
                }
                Some(Err(e)) => tracing::warn!("kubelet: watching pods: {e}"),
                None => tokio::time::sleep(Duration::from_secs(1)).await,
            },
            r = static_rx.changed() => {
                if r.is_ok() {
                    let set = static_rx.borrow_and_update().clone();
                    statics.apply(&shared, &workers, &set);
                }
            }
            _ = tokio::time::sleep(Duration::from_millis(500)), if !statics.pending.is_empty() => {
                statics.start_pending(&shared, &workers);
            }
            Some(u) = probe_rx.recv() => {
                if let Some(h) = lock(&workers).get(&u.pod_uid) {
                    let _ = h.probe.send(u);
                }
            }
            _ = sweep.tick() => {
                lock(&workers).retain(|_, h| !h.join.is_finished());
                if listed_once {
                    cleanup_orphans(&shared, &workers).await;
                }
            }
        }
    }
}

fn upsert(shared: &Arc<Shared>, workers: &Workers, mut pod: Pod) {
    let Some(uid) = pod.metadata.uid.clone() else {
        return;
    };
    // the API's copy of a static pod: the static pod itself runs
    if static_pods::is_mirror(&pod) {
        return;
    }
    let name = format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default()
    );
    // workers never read managedFields; a pod keeps them only in memory
    pod.metadata.managed_fields = None;
    let pod = Arc::new(pod);
    let mut map = lock(workers);
    if let Some(h) = map.get(&uid)
        && !h.join.is_finished()
    {
        let _ = h.pod.send(Some(pod));
        return;
    }
    tracing::debug!(target: "skiff::startup", uid, pod = %format_pod(&pod), "new pod worker");
    // admission, once, for a pod this kubelet never started (no startTime):
    // it must fit next to the pods already here
    let fresh = pod.status.as_ref().is_none_or(|s| s.start_time.is_none())
        && crate::kubelet::admission::is_active(&pod)
        && !static_pods::is_static(&pod);
    let rejected = if fresh {
        let admitted: Vec<Arc<Pod>> = map
            .values()
            .filter(|h| !h.join.is_finished())
            .filter_map(|h| h.pod.borrow().clone())
            .collect();
        crate::kubelet::admission::admit(
            &pod,
            admitted.iter().map(|p| p.as_ref()),
            &shared.admission,
        )
        .err()
    } else {
        None
    };
    let (pod_tx, pod_rx) = watch::channel(Some(pod));
    let kick = Arc::new(Notify::new());
    let (probe_tx, probe_rx) = mpsc::unbounded_channel();
    let inbox = worker::Inbox {
        pod: pod_rx,
        kick: kick.clone(),
        probe: probe_rx,
        rejected,
    };
    let join = tokio::spawn(worker::run(shared.clone(), uid.clone(), inbox));
    map.insert(
        uid,
        Handle {
            name,
            pod: pod_tx,
            kick,
            probe: probe_tx,
            join,
        },
    );
}

/// The static pods handed to workers, and those waiting for a predecessor
/// with the same namespace/name to finish.
#[derive(Default)]
struct StaticSet {
    uids: HashSet<String>,
    /// Static pods told to stop whose workers may still be running.
    stopping: HashSet<String>,
    pending: Vec<Pod>,
}

impl StaticSet {
    /// Make the workers follow a new set of static pods.
    fn apply(&mut self, shared: &Arc<Shared>, workers: &Workers, pods: &[Pod]) {
        let want: HashSet<String> = pods.iter().filter_map(|p| p.metadata.uid.clone()).collect();
        {
            let map = lock(workers);
            for uid in self.uids.difference(&want) {
                if let Some(h) = map.get(uid) {
                    let _ = h.pod.send(None);
                    self.stopping.insert(uid.clone());
                }
            }
        }
        self.uids.retain(|u| want.contains(u));
        self.pending = pods.to_vec();
        self.start_pending(shared, workers);
    }

    /// Start (or update) every pending pod whose name is free.
    fn start_pending(&mut self, shared: &Arc<Shared>, workers: &Workers) {
        let busy: HashSet<String> = {
            let map = lock(workers);
            self.stopping
                .retain(|uid| map.get(uid).is_some_and(|h| !h.join.is_finished()));
            self.stopping
                .iter()
                .filter_map(|uid| Some(map.get(uid)?.name.clone()))
                .collect()
        };
        let mut still = Vec::new();
        for p in std::mem::take(&mut self.pending) {
            let Some(uid) = p.metadata.uid.clone() else {
                continue;
            };
            let name = format!(
                "{}/{}",
                p.metadata.namespace.as_deref().unwrap_or_default(),
                p.metadata.name.as_deref().unwrap_or_default()
            );
            // also the same uid: a stopping worker would drop the update
            if busy.contains(&name) {
                still.push(p);
                continue;
            }
            let unchanged = lock(workers).get(&uid).is_some_and(|h| {
                !h.join.is_finished()
                    && h.pod.borrow().as_deref().is_some_and(|old| {
                        old.metadata.annotations == p.metadata.annotations && old.spec == p.spec
                    })
            });
            self.uids.insert(uid);
            if !unchanged {
                upsert(shared, workers, p);
            }
        }
        self.pending = still;
    }
}

/// Wake the worker of every pod whose containers changed state (the
/// kubelet's PLEG): a CRI relist at once when containerd's event stream
/// announces a task start or exit (containerd 1.6 has no CRI event stream),
/// else every `RELIST` (stream down) or `RELIST_WITH_EVENTS` (stream up).
async fn relist(shared: Arc<Shared>, workers: Workers) {
    let mut events = events::spawn(shared.ctx.cri.socket.clone());
    let mut streaming = false;
    let mut open = true;
    let mut pending = events::Pending::default();
    let mut next_poll = tokio::time::Instant::now() + RELIST;
    let mut last: HashMap<String, Vec<(String, i32)>> = HashMap::new();
    loop {
        let wake = match pending.retry_in() {
            Some(d) => next_poll.min(tokio::time::Instant::now() + d),
            None => next_poll,
        };
        let mut first = None;
        tokio::select! {
            _ = tokio::time::sleep_until(wake) => {}
            sig = events.recv(), if open => match sig {
                Some(s) => first = Some(s),
                None => open = false,
            },
        }
        // take everything already queued: one relist for a burst
        while let Some(sig) = first.take().or_else(|| events.try_recv().ok()) {
            match sig {
                events::Signal::Up => streaming = true,
                events::Signal::Down => streaming = false,
                events::Signal::Changed { id, want } => pending.note(id, want),
            }
        }
        streaming &= open;
        next_poll = tokio::time::Instant::now()
            + if streaming {
                RELIST_WITH_EVENTS
            } else {
                RELIST
            };
        let Ok(states) = runtime::container_states(&shared.ctx.cri).await else {
            continue;
        };
        pending.settle(
            &states
                .iter()
                .map(|(_, id, st)| (id.as_str(), *st))
                .collect(),
        );
        let mut now: HashMap<String, Vec<(String, i32)>> = HashMap::new();
        for (uid, id, state) in states {
            now.entry(uid).or_default().push((id, state));
        }
        for v in now.values_mut() {
            v.sort();
        }
        let map = lock(&workers);
        for (uid, v) in &now {
            if last.get(uid) != Some(v)
                && let Some(h) = map.get(uid)
            {
                h.kick.notify_one();
            }
        }
        drop(map);
        last = now;
    }
}

/// Stop and remove sandboxes whose pod is not bound here any more.
async fn cleanup_orphans(shared: &Arc<Shared>, workers: &Workers) {
    let cri = &shared.ctx.cri;
    let Ok(sandboxes) = runtime::sandbox_uids(cri).await else {
        return;
    };
    let live: HashSet<String> = lock(workers)
        .iter()
        .filter(|(_, h)| !h.join.is_finished())
        .map(|(k, _)| k.clone())
        .collect();
    let mut gone = HashSet::new();
    for (uid, sid) in sandboxes {
        if live.contains(&uid) {
            continue;
        }
        tracing::info!("kubelet: removing orphaned sandbox {sid} of pod uid {uid}");
        if let Err(e) = runtime::remove_sandbox(cri, &sid).await {
            tracing::warn!("kubelet: removing orphaned sandbox {sid}: {e}");
            continue;
        }
        gone.insert(uid);
    }
    for uid in gone {
        worker::release_pod_resources(shared, &uid).await;
    }
}
