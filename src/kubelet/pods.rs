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
//! Invariants: at most one worker per pod uid, and only it touches that
//! pod's sandboxes and containers; sandboxes labelled with a uid that is not
//! bound here any more (after the initial list) are stopped and removed;
//! a restarted kubelet adopts what it finds by label and creates nothing
//! twice.

mod container;
pub mod dev;
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

pub use container::{format_pod, pull_policy};
pub use sandbox::{cgroup_parent, log_directory};

/// What the kubelet's pod side needs; built once by the agent.
pub struct KubeletContext {
    pub client: kube::Client,
    pub cri: crate::kubelet::cri::Cri,
    pub cfg: crate::agent::AgentConfig,
    /// Component `kubelet`, host = node name (`Recorder::with_host`).
    pub recorder: Recorder,
}

/// State every worker shares.
pub(crate) struct Shared {
    pub ctx: Arc<KubeletContext>,
    pub probes: ProbeManager,
    pub node_cpu_millis: i128,
    pub node_memory_bytes: i128,
}

struct Handle {
    pod: watch::Sender<Option<Arc<Pod>>>,
    kick: Arc<Notify>,
    probe: mpsc::UnboundedSender<ProbeUpdate>,
    join: tokio::task::JoinHandle<()>,
}

type Workers = Arc<Mutex<HashMap<String, Handle>>>;

/// How often every pod is synced even when nothing happened.
pub const RESYNC: Duration = Duration::from_secs(10);
/// How often the runtime is relisted to notice container exits.
const RELIST: Duration = Duration::from_secs(1);
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
    let (node_cpu_millis, node_memory_bytes) = node_capacity();
    let shared = Arc::new(Shared {
        ctx: ctx.clone(),
        probes,
        node_cpu_millis,
        node_memory_bytes,
    });
    let workers: Workers = Arc::new(Mutex::new(HashMap::new()));
    tokio::spawn(relist(shared.clone(), workers.clone()));

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
                Some(Ok(Event::Init)) => listing = Some(HashSet::new()),
                Some(Ok(Event::InitApply(p))) => {
                    if let (Some(set), Some(uid)) = (listing.as_mut(), p.metadata.uid.clone()) {
                        set.insert(uid);
                    }
                    upsert(&shared, &workers, p);
                }
                Some(Ok(Event::InitDone)) => {
                    let seen = listing.take().unwrap_or_default();
                    for (uid, h) in lock(&workers).iter() {
                        if !seen.contains(uid) {
                            let _ = h.pod.send(None);
                        }
                    }
                    listed_once = true;
                    cleanup_orphans(&shared, &workers).await;
                }
                Some(Ok(Event::Apply(p))) => upsert(&shared, &workers, p),
                Some(Ok(Event::Delete(p))) => {
                    if let Some(uid) = p.metadata.uid.as_deref()
                        && let Some(h) = lock(&workers).get(uid)
                    {
                        let _ = h.pod.send(None);
                    }
                }
                Some(Err(e)) => tracing::warn!("kubelet: watching pods: {e}"),
                None => tokio::time::sleep(Duration::from_secs(1)).await,
            },
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
    let (pod_tx, pod_rx) = watch::channel(Some(pod));
    let kick = Arc::new(Notify::new());
    let (probe_tx, probe_rx) = mpsc::unbounded_channel();
    let inbox = worker::Inbox {
        pod: pod_rx,
        kick: kick.clone(),
        probe: probe_rx,
    };
    let join = tokio::spawn(worker::run(shared.clone(), uid.clone(), inbox));
    map.insert(
        uid,
        Handle {
            pod: pod_tx,
            kick,
            probe: probe_tx,
            join,
        },
    );
}

/// Wake the worker of every pod whose containers changed state (the
/// kubelet's PLEG, by polling: containerd 1.6 has no CRI event stream).
async fn relist(shared: Arc<Shared>, workers: Workers) {
    let mut last: HashMap<String, Vec<(String, i32)>> = HashMap::new();
    loop {
        tokio::time::sleep(RELIST).await;
        let Ok(states) = runtime::container_states(&shared.ctx.cri).await else {
            continue;
        };
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
