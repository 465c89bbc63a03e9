//! The node lifecycle loop's own index of pods: by key, by node, and the
//! terminal or terminating ones, so a pass looks only at the pods
//! [`plan::PodScope`] says can need an action (pods of not-Ready, NoExecute
//! tainted or missing nodes, terminal/terminating pods, pending evictions)
//! instead of every pod, and a pod change wakes the loop only when it
//! concerns such a pod ([`PodIndex::apply`]'s answer).
//!
//! Invariants: `by_node`, `always` and `terminal` always describe exactly
//! the objects in `pods` (each pod under the node of its current version);
//! pure, no I/O.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;

use super::plan::{self, PodScope};
use crate::controllers::podutil::is_terminal;

/// (namespace, name)
pub type Key = (String, String);

/// What the last pass knew about nodes, to judge whether a pod change matters.
#[derive(Debug, Default)]
pub struct NodeFacts {
    /// Nodes whose pods the last pass watched ([`PodScope::watched_nodes`]).
    pub watched: HashSet<String>,
    /// Every node the last pass saw.
    pub existing: HashSet<String>,
}

impl NodeFacts {
    pub fn from_scope(scope: &PodScope<'_>, all: impl Iterator<Item = String>) -> Self {
        NodeFacts {
            watched: scope.watched_nodes().map(str::to_string).collect(),
            existing: all.collect(),
        }
    }

    /// Whether a pod bound to `node` must be seen by a pass.
    fn concerns(&self, node: &str) -> bool {
        self.watched.contains(node) || !self.existing.contains(node)
    }
}

#[derive(Debug, Default)]
pub struct PodIndex {
    pods: HashMap<Key, Arc<Pod>>,
    by_node: HashMap<String, HashSet<Key>>,
    /// Terminating or terminal pods.
    always: HashSet<Key>,
    /// Terminal pods (a subset of `always`).
    terminal: HashSet<Key>,
}

fn node_of(pod: &Pod) -> Option<&str> {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .filter(|n| !n.is_empty())
}

impl PodIndex {
    pub fn len(&self) -> usize {
        self.pods.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pods.is_empty()
    }

    /// Records the current version of `key` (None: gone). Returns whether a
    /// pass must run for it: the old or new version is on a node the last
    /// pass watched or that does not exist, the pod is terminating, or it
    /// turned terminal while more than `terminated_threshold` are (0: that
    /// GC is off).
    pub fn apply(
        &mut self,
        key: Key,
        current: Option<Arc<Pod>>,
        facts: &NodeFacts,
        terminated_threshold: usize,
    ) -> bool {
        let mut wake = false;
        if let Some(old) = self.pods.remove(&key) {
            if let Some(n) = node_of(&old) {
                wake |= facts.concerns(n);
                if let Some(set) = self.by_node.get_mut(n) {
                    set.remove(&key);
                    if set.is_empty() {
                        self.by_node.remove(n);
                    }
                }
            }
            self.always.remove(&key);
            self.terminal.remove(&key);
        }
        let Some(pod) = current else {
            return wake;
        };
        if let Some(n) = node_of(&pod) {
            wake |= facts.concerns(n);
            self.by_node
                .entry(n.to_string())
                .or_default()
                .insert(key.clone());
        }
        if plan::pod_always_in_scope(&pod) {
            self.always.insert(key.clone());
            if pod.metadata.deletion_timestamp.is_some() {
                wake = true;
            }
            if is_terminal(&pod) {
                self.terminal.insert(key.clone());
                wake |= terminated_threshold > 0 && self.terminal.len() > terminated_threshold;
            }
        }
        self.pods.insert(key, pod);
        wake
    }

    /// The pods a pass with this scope must see (see [`PodScope`]), each once.
    pub fn select(&self, scope: &PodScope<'_>) -> Vec<Arc<Pod>> {
        let mut keys: HashSet<&Key> = self.always.iter().collect();
        for node in scope.watched_nodes() {
            if let Some(set) = self.by_node.get(node) {
                keys.extend(set.iter());
            }
        }
        for (node, set) in &self.by_node {
            if !scope.has_node(node) {
                keys.extend(set.iter());
            }
        }
        for (ns, name) in scope.evicting() {
            if let Some((k, _)) = self.pods.get_key_value(&(ns.to_string(), name.to_string())) {
                keys.insert(k);
            }
        }
        let mut keys: Vec<&Key> = keys.into_iter().collect();
        keys.sort();
        let out: Vec<Arc<Pod>> = keys
            .into_iter()
            .filter_map(|k| self.pods.get(k).cloned())
            .collect();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    fn pod(name: &str, node: &str, phase: &str, terminating: bool) -> Arc<Pod> {
        Arc::new(Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                deletion_timestamp: terminating.then(|| Time(Default::default())),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: (!node.is_empty()).then(|| node.to_string()),
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: Some(phase.into()),
                ..Default::default()
            }),
        })
    }

    fn key(name: &str) -> Key {
        ("ns".into(), name.into())
    }

    #[test]
    fn wakes_only_for_pods_a_pass_must_see() {
        let facts = NodeFacts {
            watched: ["sick".to_string()].into(),
            existing: ["ok".to_string(), "sick".to_string()].into(),
        };
        let mut idx = PodIndex::default();
        // (pod, threshold, wakes)
        let table = [
            (pod("p", "", "Pending", false), 0, false),
            (pod("p", "ok", "Pending", false), 0, false),
            (pod("p", "ok", "Running", false), 0, false),
            (pod("q", "sick", "Running", false), 0, true),
            (pod("r", "gone", "Running", false), 0, true),
            (pod("s", "ok", "Running", true), 0, true),
            (pod("t", "ok", "Succeeded", false), 0, false),
            (pod("u", "ok", "Failed", false), 1, true),
        ];
        for (i, (p, threshold, wakes)) in table.into_iter().enumerate() {
            let k = key(p.metadata.name.as_deref().unwrap());
            assert_eq!(idx.apply(k, Some(p), &facts, threshold), wakes, "row {i}");
        }
        assert_eq!(idx.len(), 6);
        // leaving a watched node wakes too; deleting a pod on a fine node does not
        assert!(idx.apply(key("q"), Some(pod("q", "ok", "Running", false)), &facts, 0));
        assert!(!idx.apply(key("p"), None, &facts, 0));
        assert_eq!(idx.len(), 5);
        assert!(!idx.by_node.contains_key("sick"));
        assert_eq!(idx.always.len(), 3);
        assert_eq!(idx.terminal.len(), 2);
        idx.apply(key("u"), None, &facts, 0);
        assert_eq!(idx.terminal.len(), 1);
    }
}
