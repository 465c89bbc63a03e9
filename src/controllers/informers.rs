//! Shared informers: one watch and one cache per kind for every in-process
//! controller, so 10,000 pods are held once, not once per controller.
//!
//! An `Informer` drives a kube-runtime `watcher` into a kube-runtime `Store`
//! and fans every change out to its subscribers: for an update it sends the
//! previous object then the new one, for a delete the last known object, so
//! mappers (pod → owner, pod → services) see both sides of a label or owner
//! change. (kube-runtime's own shared streams drop deletes.)
//!
//! Invariant: an object is in the store before any subscriber hears of it;
//! subscriptions taken before `start` see the initial list.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use futures::{Stream, StreamExt};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Api, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::{Notify, mpsc};
use tokio_stream::wrappers::UnboundedReceiverStream;

pub struct Informer<K>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    api: Api<K>,
    store: Store<K>,
    writer: Mutex<Option<reflector::store::Writer<K>>>,
    subscribers: Mutex<Vec<mpsc::UnboundedSender<Arc<K>>>>,
    /// Wakes `changed()` waiters (the scheduler) on every change.
    notify: Arc<Notify>,
    /// namespace → name → object, kept in step with the store.
    by_ns: std::sync::RwLock<HashMap<String, BTreeMap<String, Arc<K>>>>,
    /// True once the first list is in the store.
    listed: tokio::sync::watch::Sender<bool>,
}

impl<K> Informer<K>
where
    K: Resource<DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    pub fn new(api: Api<K>) -> Arc<Self> {
        let (store, writer) = reflector::store();
        Arc::new(Informer {
            api,
            store,
            writer: Mutex::new(Some(writer)),
            subscribers: Mutex::new(Vec::new()),
            notify: Arc::new(Notify::new()),
            by_ns: Default::default(),
            listed: tokio::sync::watch::Sender::new(false),
        })
    }

    /// The cache (readable at any time; empty until the first list).
    pub fn store(&self) -> Store<K> {
        self.store.clone()
    }

    /// Every object the informer applies, in order (old then new on update).
    /// A subscriber that joins after the first list first gets every cached
    /// object (so informers can be shared by components started later).
    pub fn subscribe(&self) -> impl Stream<Item = Arc<K>> + Send + 'static {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut subs = self.subscribers.lock().unwrap();
        if *self.listed.borrow() {
            for o in self.store.state() {
                let _ = tx.send(o);
            }
        }
        subs.push(tx);
        UnboundedReceiverStream::new(rx)
    }

    /// Resolves once the first list is in the cache.
    pub async fn ready(&self) {
        let mut rx = self.listed.subscribe();
        let _ = rx.wait_for(|listed| *listed).await;
    }

    /// Start watching; call once, after the subscriptions are taken.
    pub fn start(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            let Some(mut writer) = me.writer.lock().unwrap().take() else {
                return;
            };
            let cfg = watcher::Config::default().any_semantic();
            let mut stream = watcher(me.api.clone(), cfg).boxed();
            while let Some(ev) = stream.next().await {
                let mut ev = match ev {
                    Ok(ev) => ev,
                    Err(e) => {
                        tracing::debug!("informer watch error: {e}");
                        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                        continue;
                    }
                };
                // nobody here reads managedFields: do not keep them in memory
                match &mut ev {
                    watcher::Event::Apply(o)
                    | watcher::Event::InitApply(o)
                    | watcher::Event::Delete(o) => {
                        o.meta_mut().managed_fields = None;
                    }
                    _ => {}
                }
                let mut out: Vec<Arc<K>> = Vec::new();
                match &ev {
                    watcher::Event::Apply(obj) | watcher::Event::Delete(obj) => {
                        let key = ObjectRef::from_obj(obj);
                        if let Some(old) = me.store.get(&key) {
                            out.push(old);
                        }
                        if matches!(ev, watcher::Event::Apply(_)) {
                            writer.apply_watcher_event(&ev);
                            out.extend(me.store.get(&key));
                        } else {
                            writer.apply_watcher_event(&ev);
                        }
                    }
                    watcher::Event::InitDone => {
                        writer.apply_watcher_event(&ev);
                        me.listed.send_replace(true);
                        out = me.store.state();
                    }
                    _ => writer.apply_watcher_event(&ev),
                }
                me.index(&ev, &out);
                if !out.is_empty() {
                    let mut subs = me.subscribers.lock().unwrap();
                    subs.retain(|tx| out.iter().all(|o| tx.send(o.clone()).is_ok()));
                    drop(subs);
                    me.notify.notify_waiters();
                }
            }
        })
    }

    /// The cached objects of one namespace (cheap: no scan of other namespaces).
    pub fn in_namespace(&self, ns: &str) -> Vec<Arc<K>> {
        self.by_ns
            .read()
            .unwrap()
            .get(ns)
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    fn index(&self, ev: &watcher::Event<K>, out: &[Arc<K>]) {
        let mut idx = self.by_ns.write().unwrap();
        match ev {
            watcher::Event::InitDone => {
                idx.clear();
                for o in out {
                    idx.entry(o.meta().namespace.clone().unwrap_or_default())
                        .or_default()
                        .insert(o.meta().name.clone().unwrap_or_default(), o.clone());
                }
            }
            watcher::Event::Apply(_) => {
                if let Some(o) = out.last() {
                    idx.entry(o.meta().namespace.clone().unwrap_or_default())
                        .or_default()
                        .insert(o.meta().name.clone().unwrap_or_default(), o.clone());
                }
            }
            watcher::Event::Delete(o) => {
                let ns = o.meta().namespace.clone().unwrap_or_default();
                if let Some(m) = idx.get_mut(&ns) {
                    m.remove(o.meta().name.as_deref().unwrap_or_default());
                    if m.is_empty() {
                        idx.remove(&ns);
                    }
                }
            }
            _ => {}
        }
    }

    /// The cached objects a child change concerns: the child's controller
    /// when it is one of ours (kind `K`), or for an orphan every object of
    /// its namespace that `selects` its labels (so it can be adopted).
    pub fn owners_of(
        &self,
        child: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
        selects: impl Fn(&K, &BTreeMap<String, String>) -> bool,
    ) -> Vec<ObjectRef<K>> {
        let ns = child.namespace.clone().unwrap_or_default();
        if let Some(r) = super::podutil::controller_ref(child) {
            if r.kind == K::kind(&()) {
                return vec![ObjectRef::new(&r.name).within(&ns)];
            }
            return vec![];
        }
        let empty = BTreeMap::new();
        let labels = child.labels.as_ref().unwrap_or(&empty);
        self.in_namespace(&ns)
            .iter()
            .filter(|o| selects(o, labels))
            .map(|o| ObjectRef::from_obj(&**o))
            .collect()
    }

    /// Resolves after the next change the informer applies.
    pub fn notifier(&self) -> Arc<Notify> {
        self.notify.clone()
    }
}

/// The informers the scheduler and the controller manager share (pods and
/// nodes are the big ones): started once by the server, outside the leader
/// leases, so a component that (re)gains its lease finds them warm.
#[derive(Clone)]
pub struct Shared {
    pub pods: Arc<Informer<k8s_openapi::api::core::v1::Pod>>,
    pub nodes: Arc<Informer<k8s_openapi::api::core::v1::Node>>,
}

impl Shared {
    /// Create and start them; the handles stop them when aborted.
    pub fn start(client: &kube::Client) -> (Shared, Vec<tokio::task::JoinHandle<()>>) {
        let shared = Shared {
            pods: Informer::new(Api::all(client.clone())),
            nodes: Informer::new(Api::all(client.clone())),
        };
        let handles = vec![shared.pods.start(), shared.nodes.start()];
        (shared, handles)
    }
}
