//! Helpers for controllers that are a loop of whole passes over their caches
//! (node lifecycle, node IPAM, volume binder) rather than per-object
//! kube-runtime `Controller`s: waiting for informer changes with a debounce
//! and a deadline, and an [`Overlay`] of the controller's own writes so a
//! pass never plans from a cache that has not yet seen them.
//!
//! Invariant: a pass sees every write of the earlier passes of the same loop
//! (the overlay object wins while its resourceVersion is newer than the
//! cache's), so a lagging watch never makes a pass re-issue writes or events.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::select_all;
use kube::Resource;
use kube::runtime::reflector::Store;
use tokio::sync::Notify;
use tokio::sync::futures::Notified;

/// How long after the informers report a change the pass starts (batches bursts).
pub const DEBOUNCE: Duration = Duration::from_millis(100);

/// Wakes a loop on any of several informers' changes. Call [`Waker::arm`]
/// before a pass and [`Waker::wait`] after it: changes during the pass count.
pub struct Waker {
    notifies: Vec<Arc<Notify>>,
}

/// Registered interest in the next change of each informer.
pub struct Armed<'a> {
    waits: Vec<Pin<Box<Notified<'a>>>>,
}

impl Waker {
    pub fn new(notifies: Vec<Arc<Notify>>) -> Self {
        Waker { notifies }
    }

    pub fn arm(&self) -> Armed<'_> {
        let mut waits: Vec<Pin<Box<Notified<'_>>>> = self
            .notifies
            .iter()
            .map(|n| Box::pin(n.notified()))
            .collect();
        for w in &mut waits {
            w.as_mut().enable();
        }
        Armed { waits }
    }
}

impl Armed<'_> {
    /// Returns after a change (plus [`DEBOUNCE`]) or after `at_most`.
    pub async fn wait(self, at_most: Duration) {
        if self.waits.is_empty() {
            tokio::time::sleep(at_most).await;
            return;
        }
        let deadline = tokio::time::Instant::now() + at_most;
        if tokio::time::timeout_at(deadline, select_all(self.waits))
            .await
            .is_ok()
        {
            tokio::time::sleep_until(deadline.min(tokio::time::Instant::now() + DEBOUNCE)).await;
        }
    }
}

/// Waits until the store has seen its first list. Polls: kube-runtime's
/// readiness wakes only one of several concurrent waiters on a shared store.
pub async fn wait_ready<K>(store: &Store<K>)
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    while tokio::time::timeout(Duration::from_millis(50), store.wait_until_ready())
        .await
        .is_err()
    {}
}

/// Overlay entries older than this are dropped (the cache must have caught up).
const OVERLAY_TTL: Duration = Duration::from_secs(5);

enum Entry<K> {
    Written(Arc<K>, Instant),
    Deleted(Option<String>, Instant),
}

/// The controller's own recent writes, laid over a lagging cache.
pub struct Overlay<K> {
    entries: HashMap<(String, String), Entry<K>>,
}

impl<K> Default for Overlay<K> {
    fn default() -> Self {
        Overlay {
            entries: HashMap::new(),
        }
    }
}

fn key_of<K: Resource>(o: &K) -> (String, String) {
    let m = o.meta();
    (
        m.namespace.clone().unwrap_or_default(),
        m.name.clone().unwrap_or_default(),
    )
}

fn rv_of<K: Resource>(o: &K) -> Option<u64> {
    o.meta().resource_version.as_deref()?.parse().ok()
}

impl<K: Resource + Clone> Overlay<K> {
    /// Remember an object a write returned.
    pub fn written(&mut self, obj: K) {
        self.entries
            .insert(key_of(&obj), Entry::Written(Arc::new(obj), Instant::now()));
    }

    /// Remember that the object `namespace/name` (of this uid, if known) is gone.
    pub fn deleted(&mut self, namespace: &str, name: &str, uid: Option<String>) {
        self.entries.insert(
            (namespace.to_string(), name.to_string()),
            Entry::Deleted(uid, Instant::now()),
        );
    }

    /// The cache with this loop's writes applied; forgets what the cache has caught up with.
    pub fn merge(&mut self, cache: Vec<Arc<K>>) -> Vec<Arc<K>> {
        let now = Instant::now();
        self.entries.retain(|_, e| match e {
            Entry::Written(_, t) | Entry::Deleted(_, t) => now.duration_since(*t) < OVERLAY_TTL,
        });
        let mut out = Vec::with_capacity(cache.len());
        let mut seen = std::collections::HashSet::new();
        for obj in cache {
            let key = key_of(&*obj);
            match self.entries.get(&key) {
                None => out.push(obj),
                Some(Entry::Written(w, _)) => {
                    match (rv_of(&*obj), rv_of(&**w)) {
                        (Some(c), Some(o)) if c < o => out.push(w.clone()),
                        _ => {
                            self.entries.remove(&key);
                            out.push(obj);
                        }
                    }
                    seen.insert(key);
                }
                Some(Entry::Deleted(uid, _)) => {
                    let same = uid.is_none() || obj.meta().uid == *uid;
                    if same {
                        seen.insert(key);
                    } else {
                        self.entries.remove(&key);
                        out.push(obj);
                    }
                }
            }
        }
        // written but not in the cache yet (just created), or deleted and gone
        self.entries.retain(|k, e| match e {
            Entry::Written(w, _) => {
                if !seen.contains(k) {
                    out.push(w.clone());
                }
                true
            }
            Entry::Deleted(..) => seen.contains(k),
        });
        out
    }

    /// [`Overlay::merge`] over part of the cache (`subset`): a deleted entry
    /// missing from `subset` is kept (until its TTL) rather than taken as
    /// gone, since it may only be outside the subset.
    pub fn merge_subset(&mut self, subset: Vec<Arc<K>>) -> Vec<Arc<K>> {
        let deleted: Vec<((String, String), Option<String>, Instant)> = self
            .entries
            .iter()
            .filter_map(|(k, e)| match e {
                Entry::Deleted(uid, t) => Some((k.clone(), uid.clone(), *t)),
                Entry::Written(..) => None,
            })
            .collect();
        let out = self.merge(subset);
        let now = Instant::now();
        for (k, uid, t) in deleted {
            if now.duration_since(t) >= OVERLAY_TTL {
                continue;
            }
            self.entries.entry(k).or_insert(Entry::Deleted(uid, t));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn cm(name: &str, rv: &str, uid: &str) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                resource_version: Some(rv.into()),
                uid: Some(uid.into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn rvs(v: &[Arc<ConfigMap>]) -> Vec<String> {
        let mut out: Vec<String> = v
            .iter()
            .map(|c| {
                format!(
                    "{}@{}",
                    c.metadata.name.clone().unwrap(),
                    c.metadata.resource_version.clone().unwrap()
                )
            })
            .collect();
        out.sort();
        out
    }

    #[test]
    fn newer_write_wins_until_cache_catches_up() {
        let mut o = Overlay::default();
        o.written(cm("a", "5", "u"));
        let got = o.merge(vec![
            Arc::new(cm("a", "3", "u")),
            Arc::new(cm("b", "4", "v")),
        ]);
        assert_eq!(rvs(&got), vec!["a@5", "b@4"]);
        let got = o.merge(vec![Arc::new(cm("a", "6", "u"))]);
        assert_eq!(rvs(&got), vec!["a@6"]);
        assert!(o.entries.is_empty());
    }

    #[test]
    fn created_objects_show_before_the_cache_has_them() {
        let mut o = Overlay::default();
        o.written(cm("new", "9", "n"));
        assert_eq!(rvs(&o.merge(vec![])), vec!["new@9"]);
    }

    #[test]
    fn deleted_objects_hide_until_gone() {
        let mut o = Overlay::default();
        o.deleted("ns", "a", Some("u".into()));
        assert!(o.merge(vec![Arc::new(cm("a", "3", "u"))]).is_empty());
        // a new object of the same name is shown
        assert_eq!(
            rvs(&o.merge(vec![Arc::new(cm("a", "7", "w"))])),
            vec!["a@7"]
        );
        o.deleted("ns", "a", Some("w".into()));
        assert!(o.merge(vec![]).is_empty());
        assert!(o.entries.is_empty());
    }
}
