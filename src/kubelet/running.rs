//! The pods this kubelet runs, each with the status it last computed:
//! API pods and static pods alike. Written only by pod workers (one entry
//! per pod uid, removed when the worker is done); read by the kubelet
//! server's `GET /pods` and by the mirror-pod manager, which is woken when a
//! static pod's status changes.
//!
//! Invariant: for a static pod this is the only place its status lives —
//! the API holds a copy on the mirror pod, never the original.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use k8s_openapi::api::core::v1::Pod;
use tokio::sync::Notify;

#[derive(Clone, Default)]
pub struct RunningPods {
    pods: Arc<RwLock<BTreeMap<String, Arc<Pod>>>>,
    static_changed: Arc<Notify>,
}

impl RunningPods {
    /// Every pod, ordered by uid.
    pub fn list(&self) -> Vec<Arc<Pod>> {
        let map = self.pods.read().unwrap_or_else(|e| e.into_inner());
        map.values().cloned().collect()
    }

    pub fn get(&self, uid: &str) -> Option<Arc<Pod>> {
        let map = self.pods.read().unwrap_or_else(|e| e.into_inner());
        map.get(uid).cloned()
    }

    /// Record a pod with its latest status; wakes [`Self::static_changed`]
    /// when a static pod's status differs from what was recorded.
    pub fn set(&self, pod: Pod) {
        let Some(uid) = pod.metadata.uid.clone() else {
            return;
        };
        let is_static = crate::kubelet::static_pods::is_static(&pod);
        let mut map = self.pods.write().unwrap_or_else(|e| e.into_inner());
        let changed = map.get(&uid).is_none_or(|old| old.status != pod.status);
        map.insert(uid, Arc::new(pod));
        drop(map);
        if is_static && changed {
            self.static_changed.notify_one();
        }
    }

    pub fn remove(&self, uid: &str) {
        let mut map = self.pods.write().unwrap_or_else(|e| e.into_inner());
        let gone = map.remove(uid);
        drop(map);
        if gone.is_some_and(|p| crate::kubelet::static_pods::is_static(&p)) {
            self.static_changed.notify_one();
        }
    }

    /// Completes after a static pod's recorded status changed.
    pub async fn static_changed(&self) {
        self.static_changed.notified().await
    }

    /// The `PodList` JSON `GET /pods` answers with.
    pub fn pod_list_json(&self) -> serde_json::Value {
        let items: Vec<serde_json::Value> = self
            .list()
            .iter()
            .map(|p| {
                let mut v = serde_json::to_value(p.as_ref()).unwrap_or_default();
                if let Some(o) = v.as_object_mut() {
                    o.insert("apiVersion".into(), "v1".into());
                    o.insert("kind".into(), "Pod".into());
                }
                v
            })
            .collect();
        serde_json::json!({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items})
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn records_lists_and_removes() {
        let r = RunningPods::default();
        let p: Pod = serde_json::from_value(json!({
            "metadata": {"name": "a", "namespace": "n", "uid": "u1"},
            "status": {"phase": "Running"}
        }))
        .unwrap();
        r.set(p);
        assert_eq!(r.list().len(), 1);
        let l = r.pod_list_json();
        assert_eq!(l["kind"], "PodList");
        assert_eq!(l["items"][0]["kind"], "Pod");
        assert_eq!(l["items"][0]["status"]["phase"], "Running");
        r.remove("u1");
        assert!(r.get("u1").is_none());
    }
}
