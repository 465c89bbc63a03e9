//! Event recorder for in-process components: writes core/v1 `Event`s (what
//! `kubectl describe` and `kubectl get events` read), aggregating repeats of
//! the same reason+message on the same object into one Event with a count,
//! like upstream's recorder.
//!
//! Invariant: recording never blocks or fails the caller; errors are logged.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

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

#[derive(Clone)]
pub struct Recorder {
    client: kube::Client,
    component: String,
    /// `source.host` of the events (the node name, for a kubelet).
    host: Option<String>,
    /// (object uid, reason, message) → (event namespace, event name, count)
    seen: Arc<Mutex<HashMap<SeenKey, SeenEvent>>>,
}

impl Recorder {
    pub fn new(client: kube::Client, component: &str) -> Self {
        Recorder {
            client,
            component: component.to_string(),
            host: None,
            seen: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Events from this recorder name `host` as their source (kubelets).
    pub fn with_host(mut self, host: &str) -> Self {
        self.host = Some(host.to_string());
        self
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
        let mut me = self.clone();
        if me.component == "kube-controller-manager"
            && let Some(c) = reference.kind.as_deref().and_then(component_for)
        {
            me.component = c.to_string();
        }
        let reason = reason.to_string();
        let message = message.to_string();
        tokio::spawn(async move { me.write(reference, kind, reason, message).await });
    }

    async fn write(&self, reference: ObjectReference, kind: Kind, reason: String, message: String) {
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
                component: Some(self.component.clone()),
                host: self.host.clone(),
            }),
            reporting_component: Some(self.component.clone()),
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
