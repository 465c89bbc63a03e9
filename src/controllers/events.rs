//! Event recorder for in-process components: writes core/v1 `Event`s (what
//! `kubectl describe` and `kubectl get events` read), aggregating repeats of
//! the same reason+message on the same object into one Event with a count,
//! like upstream's recorder.
//!
//! Recording only queues the event: each recorder (and its clones) has one
//! bounded queue of [`QUEUE_CAPACITY`] events drained by one task that
//! writes at most [`WRITES_IN_FLIGHT`] at a time, so a burst (10,000
//! `Scheduled` events) neither spawns a task per event nor competes without
//! bound with the writes it reports on (binds). Like upstream's broadcaster,
//! an event that finds the queue full is dropped and counted
//! ([`dropped_events`]).
//!
//! Invariant: recording never blocks or fails the caller; errors are logged.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use futures::StreamExt;
use tokio::sync::mpsc;

use chrono::Utc;
use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Resource, ResourceExt};

/// The upstream controller name that reports events about `kind`, which
/// `kubectl describe` shows under "From".
fn component_for(kind: &str) -> Option<&'static str> {
    Some(match kind {
        "Deployment" => "deployment-controller",
        "ReplicaSet" => "replicaset-controller",
        "ReplicationController" => "replication-controller",
        "StatefulSet" => "statefulset-controller",
        "DaemonSet" => "daemonset-controller",
        "Job" => "job-controller",
        "CronJob" => "cronjob-controller",
        "HorizontalPodAutoscaler" => "horizontal-pod-autoscaler",
        "Service" => "endpoint-controller",
        "Endpoints" => "endpoint-controller",
        "PersistentVolumeClaim" | "PersistentVolume" => "persistentvolume-controller",
        "Node" => "node-controller",
        "PodDisruptionBudget" => "controllermanager",
        _ => return None,
    })
}

/// `Normal` or `Warning`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Normal,
    Warning,
}

/// (object uid, reason, message)
type SeenKey = (String, String, String);
/// (event namespace, event name, count)
type SeenEvent = (String, String, i32);

/// Events one recorder may have queued before new ones are dropped
/// (upstream `maxQueuedEvents`).
pub const QUEUE_CAPACITY: usize = 1000;
/// Event writes of one recorder in flight at once.
pub const WRITES_IN_FLIGHT: usize = 8;

static DROPPED: AtomicU64 = AtomicU64::new(0);

/// Events dropped so far in this process because a recorder's queue was full.
pub fn dropped_events() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

/// One queued event.
struct Job {
    component: String,
    reference: ObjectReference,
    kind: Kind,
    reason: String,
    message: String,
}

#[derive(Clone)]
pub struct Recorder {
    component: String,
    writer: Arc<Writer>,
    /// The queue, created (with its task) on the first event: recorders
    /// may be built outside the runtime.
    queue: Arc<OnceLock<mpsc::Sender<Job>>>,
}

/// What the queue's task writes with (holds no sender: the task ends when
/// the last clone of the recorder is dropped).
struct Writer {
    client: kube::Client,
    /// `source.host` of the events (the node name, for a kubelet).
    host: Option<String>,
    /// (object uid, reason, message) → (event namespace, event name, count)
    seen: Mutex<HashMap<SeenKey, SeenEvent>>,
}

impl Recorder {
    pub fn new(client: kube::Client, component: &str) -> Self {
        Recorder {
            component: component.to_string(),
            writer: Arc::new(Writer {
                client,
                host: None,
                seen: Mutex::new(HashMap::new()),
            }),
            queue: Arc::new(OnceLock::new()),
        }
    }

    /// Events from this recorder name `host` as their source (kubelets).
    pub fn with_host(self, host: &str) -> Self {
        Recorder {
            component: self.component,
            writer: Arc::new(Writer {
                client: self.writer.client.clone(),
                host: Some(host.to_string()),
                seen: Mutex::new(HashMap::new()),
            }),
            queue: Arc::new(OnceLock::new()),
        }
    }

    /// Record an event about `obj` (any namespaced or cluster object).
    pub fn record<K>(&self, obj: &K, kind: Kind, reason: &str, message: &str)
    where
        K: Resource<DynamicType = ()>,
    {
        let meta = obj.meta();
        let reference = ObjectReference {
            api_version: Some(K::api_version(&()).into_owned()),
            kind: Some(K::kind(&()).into_owned()),
            name: meta.name.clone(),
            namespace: meta.namespace.clone(),
            uid: meta.uid.clone(),
            resource_version: meta.resource_version.clone(),
            ..Default::default()
        };
        self.record_ref(reference, kind, reason, message);
    }

    pub fn record_ref(&self, reference: ObjectReference, kind: Kind, reason: &str, message: &str) {
        let component = match reference.kind.as_deref().and_then(component_for) {
            Some(c) if self.component == "kube-controller-manager" => c.to_string(),
            _ => self.component.clone(),
        };
        let job = Job {
            component,
            reference,
            kind,
            reason: reason.to_string(),
            message: message.to_string(),
        };
        let queue = self.queue.get_or_init(|| {
            let (tx, rx) = mpsc::channel::<Job>(QUEUE_CAPACITY);
            let writer = self.writer.clone();
            tokio::spawn(async move {
                tokio_stream::wrappers::ReceiverStream::new(rx)
                    .for_each_concurrent(WRITES_IN_FLIGHT, |job| {
                        let writer = writer.clone();
                        async move { writer.write(job).await }
                    })
                    .await
            });
            tx
        });
        if queue.try_send(job).is_err() {
            let n = DROPPED.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::warn!("event queue full: {n} events dropped so far");
            }
        }
    }
}

impl Writer {
    async fn write(&self, job: Job) {
        let Job {
            component,
            reference,
            kind,
            reason,
            message,
        } = job;
        let ns = reference
            .namespace
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "default".into());
        let key = (
            reference.uid.clone().unwrap_or_default(),
            reason.clone(),
            message.clone(),
        );
        let now = Utc::now();
        let api: Api<Event> = Api::namespaced(self.client.clone(), &ns);
        let prior = self.seen.lock().unwrap().get(&key).cloned();
        if let Some((ens, name, count)) = prior
            && ens == ns
        {
            let patch = serde_json::json!({
                "count": count + 1,
                "lastTimestamp": super::podutil::chrono_to_time(now),
            });
            if api
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .is_ok()
            {
                self.seen.lock().unwrap().insert(key, (ns, name, count + 1));
                return;
            }
        }
        let base = reference.name.clone().unwrap_or_else(|| "object".into());
        let name = format!("{base}.{:x}", now.timestamp_nanos_opt().unwrap_or(0));
        let ev = Event {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(ns.clone()),
                ..Default::default()
            },
            involved_object: reference,
            reason: Some(reason),
            message: Some(message),
            type_: Some(match kind {
                Kind::Normal => "Normal".into(),
                Kind::Warning => "Warning".into(),
            }),
            count: Some(1),
            first_timestamp: Some(super::podutil::chrono_to_time(now)),
            last_timestamp: Some(super::podutil::chrono_to_time(now)),
            event_time: None::<MicroTime>,
            source: Some(EventSource {
                component: Some(component.clone()),
                host: self.host.clone(),
            }),
            reporting_component: Some(component),
            reporting_instance: Some(crate::config::hostname()),
            ..Default::default()
        };
        match api.create(&PostParams::default(), &ev).await {
            Ok(created) => {
                let mut seen = self.seen.lock().unwrap();
                if seen.len() > 4096 {
                    seen.clear();
                }
                seen.insert(key, (ns, created.name_any(), 1));
            }
            Err(e) => tracing::debug!("recording event: {e}"),
        }
    }
}
