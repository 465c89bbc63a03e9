//! Control loops that belong to the API server itself: the built-in objects
//! a cluster starts with, CustomResourceDefinition serving and cleanup,
//! namespace deletion, and the ownerReference garbage collector.
//!
//! They work on the registry and the store's watch directly (no HTTP).
//! The GC's decision logic (`plan`) is a pure function over an in-memory
//! ownership graph; effects are applied through the registry, so all
//! finalizer and deletion semantics stay in one place.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};

use super::AppState;
use super::error::{ApiError, ApiResult};
use super::registry::{DeleteOptions, ListOptions, Part, Propagation, WriteOptions};
use crate::api::kinds::{Resource, ScalePaths, split_api_version};
use crate::store::{EventKind, KeyValue};

const CRD_FINALIZER: &str = "customresourcecleanup.apiextensions.k8s.io";

// ------------------------------------------------------------------ bootstrap

/// Create the namespaces and the `kubernetes` Service a cluster starts with.
pub async fn bootstrap(
    app: &Arc<AppState>,
    service_ip: &str,
    advertise_ip: &str,
    port: u16,
) -> ApiResult<()> {
    let kinds = &app.registry.kinds;
    let ns_res = kinds
        .get("", "v1", "namespaces")
        .ok_or_else(|| ApiError::internal("no namespaces"))?;
    let opts = WriteOptions {
        field_manager: "skiff-apiserver".into(),
        ..Default::default()
    };
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
        match app.registry.create(&ns_res, None, obj, &opts).await {
            Ok(_) => {}
            Err(e) if e.code == 409 => {}
            Err(e) => return Err(e),
        }
    }
    let svc_res = kinds
        .get("", "v1", "services")
        .ok_or_else(|| ApiError::internal("no services"))?;
    let svc = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {"type": "ClusterIP", "clusterIP": service_ip, "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}], "sessionAffinity": "None"},
    });
    match app
        .registry
        .create(&svc_res, Some("default"), svc, &opts)
        .await
    {
        Ok(_) => {}
        Err(e) if e.code == 409 => {}
        Err(e) => return Err(e),
    }
    let ep_res = kinds
        .get("", "v1", "endpoints")
        .ok_or_else(|| ApiError::internal("no endpoints"))?;
    let ep = json!({
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
        "subsets": [{"addresses": [{"ip": advertise_ip}], "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}],
    });
    upsert(app, &ep_res, Some("default"), "kubernetes", ep, &opts).await?;
    let eps_res = kinds
        .get("discovery.k8s.io", "v1", "endpointslices")
        .ok_or_else(|| ApiError::internal("no endpointslices"))?;
    let eps = json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"kubernetes.io/service-name": "kubernetes", "endpointslice.kubernetes.io/managed-by": "skiff-apiserver"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [advertise_ip], "conditions": {"ready": true}}],
        "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
    });
    upsert(app, &eps_res, Some("default"), "kubernetes", eps, &opts).await?;
    Ok(())
}

/// Create, or replace when the content differs.
async fn upsert(
    app: &Arc<AppState>,
    res: &Resource,
    ns: Option<&str>,
    name: &str,
    obj: Value,
    opts: &WriteOptions,
) -> ApiResult<()> {
    match app.registry.get(res, ns, name).await {
        Ok(mut current) => {
            let mut next = obj;
            if let Some(rv) = current.pointer("/metadata/resourceVersion").cloned() {
                next["metadata"]["resourceVersion"] = rv;
            }
            current["metadata"] = next["metadata"].clone();
            app.registry
                .update(res, ns, name, next, Part::Main, opts)
                .await
                .map(|_| ())
        }
        Err(e) if e.code == 404 => app.registry.create(res, ns, obj, opts).await.map(|_| ()),
        Err(e) => Err(e),
    }
}

// ------------------------------------------------------------------------ CRDs

/// The resources a CRD serves (one per served version).
pub fn crd_resources(crd: &Value) -> Vec<Resource> {
    let spec = crd.get("spec").cloned().unwrap_or(json!({}));
    let group = spec
        .get("group")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let names = spec.get("names").cloned().unwrap_or(json!({}));
    let s = |v: &Value, k: &str| {
        v.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let list = |v: &Value, k: &str| super::registry::string_list(v.get(k));
    let plural = s(&names, "plural");
    let kind = s(&names, "kind");
    let singular = match s(&names, "singular") {
        x if x.is_empty() => kind.to_lowercase(),
        x => x,
    };
    let namespaced = spec.get("scope").and_then(Value::as_str) != Some("Cluster");
    let versions = spec
        .get("versions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let storage_version = versions
        .iter()
        .find(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
        .map(|v| s(v, "name"))
        .unwrap_or_default();
    if group.is_empty() || plural.is_empty() || kind.is_empty() {
        return Vec::new();
    }
    versions
        .iter()
        .filter(|v| v.get("served").and_then(Value::as_bool).unwrap_or(true))
        .map(|v| {
            let subs = v.get("subresources").cloned().unwrap_or(json!({}));
            let scale = subs.get("scale").map(|sc| ScalePaths {
                spec_replicas: s(sc, "specReplicasPath"),
                status_replicas: s(sc, "statusReplicasPath"),
                label_selector: sc
                    .get("labelSelectorPath")
                    .and_then(Value::as_str)
                    .map(String::from),
            });
            Resource {
                group: group.clone(),
                version: s(v, "name"),
                kind: kind.clone(),
                plural: plural.clone(),
                singular: singular.clone(),
                namespaced,
                short_names: list(&names, "shortNames"),
                categories: list(&names, "categories"),
                has_status: subs.get("status").is_some(),
                scale,
                generation: true,
                virtual_create_only: false,
                storage_version: storage_version.clone(),
                custom: true,
                schema: v.pointer("/schema/openAPIV3Schema").cloned().map(Arc::new),
                printer_columns: v.get("additionalPrinterColumns").cloned().map(Arc::new),
            }
        })
        .collect()
}

/// Status of an accepted, established CRD.
pub fn established_status(crd: &Value, now: &str) -> Value {
    let names = crd.pointer("/spec/names").cloned().unwrap_or(json!({}));
    let storage: Vec<Value> = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .map(|vs| {
            vs.iter()
                .filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
                .filter_map(|v| v.get("name").cloned())
                .collect()
        })
        .unwrap_or_default();
    let mut stored: Vec<Value> = crd
        .pointer("/status/storedVersions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for v in storage {
        if !stored.contains(&v) {
            stored.push(v);
        }
    }
    let mut accepted = names.clone();
    if accepted.get("singular").is_none()
        && let Some(k) = names.get("kind").and_then(Value::as_str)
    {
        accepted["singular"] = json!(k.to_lowercase());
    }
    if accepted.get("listKind").is_none()
        && let Some(k) = names.get("kind").and_then(Value::as_str)
    {
        accepted["listKind"] = json!(format!("{k}List"));
    }
    json!({
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "lastTransitionTime": now, "reason": "NoConflicts", "message": "no conflicts found"},
            {"type": "Established", "status": "True", "lastTransitionTime": now, "reason": "InitialNamesAccepted", "message": "the initial names have been accepted"},
        ],
        "acceptedNames": accepted,
        "storedVersions": stored,
    })
}

fn crd_name(crd: &Value) -> String {
    crd.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// Register every stored CRD, then keep the kinds table in sync and clean up
/// the custom resources of deleted CRDs.
pub async fn run_crds(app: Arc<AppState>) {
    loop {
        if let Err(e) = crd_loop(&app).await {
            tracing::warn!("CRD controller restarting: {e}");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Load CRDs synchronously (before serving).
pub async fn load_crds(app: &Arc<AppState>) -> ApiResult<i64> {
    let res = crd_resource(app)?;
    let listed = app
        .registry
        .list(&res, None, &ListOptions::default())
        .await?;
    for kv in &listed.items {
        let crd = app.registry.decode(&res, kv)?;
        app.registry
            .kinds
            .set_crd(&crd_name(&crd), crd_resources(&crd));
    }
    Ok(listed.revision)
}

fn crd_resource(app: &AppState) -> ApiResult<Arc<Resource>> {
    app.registry
        .kinds
        .get("apiextensions.k8s.io", "v1", "customresourcedefinitions")
        .ok_or_else(|| ApiError::internal("CRD resource missing"))
}

async fn crd_loop(app: &Arc<AppState>) -> ApiResult<()> {
    let res = crd_resource(app)?;
    let rev = load_crds(app).await?;
    // CRDs that were being deleted when we stopped
    let listed = app
        .registry
        .list(&res, None, &ListOptions::default())
        .await?;
    for kv in &listed.items {
        let crd = app.registry.decode(&res, kv)?;
        reconcile_crd(app, &res, &crd).await;
    }
    let mut w = app.registry.store.watch(&res.prefix(), rev)?;
    while let Some(ev) = w.next().await {
        let ev = ev?;
        let crd = app.registry.decode(&res, &ev.kv)?;
        match ev.kind {
            EventKind::Deleted => app.registry.kinds.set_crd(&crd_name(&crd), Vec::new()),
            _ => {
                app.registry
                    .kinds
                    .set_crd(&crd_name(&crd), crd_resources(&crd));
                reconcile_crd(app, &res, &crd).await;
            }
        }
    }
    Ok(())
}

async fn reconcile_crd(app: &Arc<AppState>, res: &Arc<Resource>, crd: &Value) {
    let name = crd_name(crd);
    let deleting = crd.pointer("/metadata/deletionTimestamp").is_some();
    let has_finalizer = super::registry::finalizers(crd)
        .iter()
        .any(|f| f == CRD_FINALIZER);
    if !deleting || !has_finalizer {
        return;
    }
    // delete every custom resource, then release the CRD
    let served = crd_resources(crd);
    if let Some(r) = served
        .iter()
        .find(|r| r.version == r.storage_version)
        .or(served.first())
    {
        let r = Arc::new(r.clone());
        if let Ok(listed) = app.registry.store.list(&r.prefix(), None, 0, None).await {
            for kv in listed.items {
                let _ = app
                    .registry
                    .store
                    .delete(&kv.key, Some(kv.mod_revision))
                    .await;
            }
        }
    }
    let _ = mutate(app, res, None, &name, |obj| {
        remove_finalizer(obj, CRD_FINALIZER)
    })
    .await;
    app.registry.kinds.set_crd(&name, Vec::new());
}

fn remove_finalizer(obj: &mut Value, f: &str) -> bool {
    let Some(list) = obj
        .pointer_mut("/metadata/finalizers")
        .and_then(Value::as_array_mut)
    else {
        return false;
    };
    let before = list.len();
    list.retain(|x| x.as_str() != Some(f));
    before != list.len()
}

/// Read-modify-write an object through the registry with CAS retries.
/// `f` returns false when there is nothing to change.
pub async fn mutate(
    app: &Arc<AppState>,
    res: &Resource,
    ns: Option<&str>,
    name: &str,
    mut f: impl FnMut(&mut Value) -> bool,
) -> ApiResult<()> {
    let opts = WriteOptions {
        field_manager: "skiff-controller".into(),
        field_validation: super::registry::FieldValidation::Ignore,
        ..Default::default()
    };
    for _ in 0..8 {
        let mut obj = match app.registry.get(res, ns, name).await {
            Ok(o) => o,
            Err(e) if e.code == 404 => return Ok(()),
            Err(e) => return Err(e),
        };
        if !f(&mut obj) {
            return Ok(());
        }
        match app
            .registry
            .update(res, ns, name, obj, Part::Main, &opts)
            .await
        {
            Ok(_) => return Ok(()),
            Err(e) if e.code == 409 => continue,
            Err(e) if e.code == 404 => return Ok(()),
            Err(e) => return Err(e),
        }
    }
    Err(ApiError::conflict(
        &res.group,
        &res.plural,
        name,
        "too many concurrent updates",
    ))
}

// ------------------------------------------------------------ namespaces

/// Delete the content of terminating namespaces, then the namespaces.
pub async fn run_namespaces(app: Arc<AppState>) {
    loop {
        if let Err(e) = namespace_pass(&app).await {
            tracing::warn!("namespace controller: {e}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn namespace_pass(app: &Arc<AppState>) -> ApiResult<()> {
    let ns_res = app
        .registry
        .kinds
        .get("", "v1", "namespaces")
        .ok_or_else(|| ApiError::internal("no namespaces"))?;
    let listed = app
        .registry
        .list(&ns_res, None, &ListOptions::default())
        .await?;
    for kv in listed.items {
        let ns = app.registry.decode(&ns_res, &kv)?;
        if ns.pointer("/metadata/deletionTimestamp").is_none() {
            continue;
        }
        let name = crd_name(&ns);
        let remaining = delete_namespace_content(app, &name).await?;
        if remaining > 0 {
            continue;
        }
        let spec_fins: Vec<Value> = ns
            .pointer("/spec/finalizers")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if spec_fins.iter().any(|f| f == "kubernetes") {
            mutate(app, &ns_res, None, &name, |obj| {
                if let Some(a) = obj
                    .pointer_mut("/spec/finalizers")
                    .and_then(Value::as_array_mut)
                {
                    a.retain(|f| f != "kubernetes");
                    true
                } else {
                    false
                }
            })
            .await?;
        }
        let fresh = match app.registry.get(&ns_res, None, &name).await {
            Ok(o) => o,
            Err(e) if e.code == 404 => continue,
            Err(e) => return Err(e),
        };
        let spec_empty = fresh
            .pointer("/spec/finalizers")
            .and_then(Value::as_array)
            .is_none_or(|a| a.is_empty());
        if spec_empty && super::registry::finalizers(&fresh).is_empty() {
            app.registry.remove_namespace(&name).await?;
        }
    }
    Ok(())
}

/// Delete everything in a namespace; returns how many objects remain.
async fn delete_namespace_content(app: &Arc<AppState>, ns: &str) -> ApiResult<usize> {
    let mut remaining = 0;
    for res in app.registry.kinds.storage_resources() {
        if !res.namespaced {
            continue;
        }
        let listed = app
            .registry
            .store
            .list(&res.list_prefix(Some(ns)), None, 0, None)
            .await?;
        for kv in listed.items {
            remaining += 1;
            let obj = match app.registry.decode(&res, &kv) {
                Ok(o) => o,
                Err(_) => continue,
            };
            if obj.pointer("/metadata/deletionTimestamp").is_some() {
                continue;
            }
            let name = crd_name(&obj);
            let opts = DeleteOptions {
                propagation: Some(Propagation::Background),
                ..Default::default()
            };
            match app.registry.delete(&res, Some(ns), &name, &opts).await {
                Ok(d) if d.gone => remaining -= 1,
                Ok(_) => {}
                Err(e) if e.code == 404 => remaining -= 1,
                Err(e) => tracing::debug!("namespace {ns}: deleting {name}: {e}"),
            }
        }
    }
    Ok(remaining)
}

// ------------------------------------------------------------------------ GC

#[derive(Clone, Debug, PartialEq)]
pub struct OwnerRef {
    pub uid: String,
    pub block: bool,
}

#[derive(Clone, Debug)]
pub struct GcNode {
    pub key: String,
    pub res: Arc<Resource>,
    pub namespace: Option<String>,
    pub name: String,
    pub owners: Vec<OwnerRef>,
    pub deleting: bool,
    pub finalizers: Vec<String>,
}

/// The ownership graph: every stored object by uid, and owner → dependents.
#[derive(Default)]
pub struct GcGraph {
    pub nodes: HashMap<String, GcNode>,
    by_key: HashMap<String, String>,
    dependents: HashMap<String, HashSet<String>>,
    /// uids that were observed deleted (absent owners we know are gone)
    absent: HashSet<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum GcAction {
    Delete {
        uid: String,
        propagation: Propagation,
    },
    RemoveOwnerRef {
        dependent: String,
        owner: String,
    },
    RemoveFinalizer {
        uid: String,
        finalizer: &'static str,
    },
}

impl GcGraph {
    /// Insert/replace an object; returns uids whose state may need work.
    pub fn upsert(&mut self, uid: String, node: GcNode) -> Vec<String> {
        let mut touched = vec![uid.clone()];
        if let Some(old) = self.nodes.get(&uid) {
            for o in &old.owners {
                if let Some(d) = self.dependents.get_mut(&o.uid) {
                    d.remove(&uid);
                }
            }
        }
        for o in &node.owners {
            self.dependents
                .entry(o.uid.clone())
                .or_default()
                .insert(uid.clone());
            touched.push(o.uid.clone());
        }
        self.absent.remove(&uid);
        self.by_key.insert(node.key.clone(), uid.clone());
        if node.deleting {
            touched.extend(self.dependents.get(&uid).into_iter().flatten().cloned());
        }
        self.nodes.insert(uid, node);
        touched
    }

    pub fn remove_key(&mut self, key: &str) -> Vec<String> {
        let Some(uid) = self.by_key.remove(key) else {
            return Vec::new();
        };
        let mut touched = Vec::new();
        if let Some(node) = self.nodes.remove(&uid) {
            for o in &node.owners {
                if let Some(d) = self.dependents.get_mut(&o.uid) {
                    d.remove(&uid);
                }
                touched.push(o.uid.clone());
            }
        }
        self.absent.insert(uid.clone());
        touched.extend(self.dependents.get(&uid).into_iter().flatten().cloned());
        touched
    }

    fn deps(&self, uid: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .dependents
            .get(uid)
            .into_iter()
            .flatten()
            .filter(|d| self.nodes.contains_key(*d))
            .cloned()
            .collect();
        v.sort();
        v
    }

    /// What to do about one uid (pure).
    pub fn plan(&self, uid: &str) -> Vec<GcAction> {
        let mut out = Vec::new();
        let Some(node) = self.nodes.get(uid) else {
            return out;
        };
        if node.deleting && node.finalizers.iter().any(|f| f == "orphan") {
            for d in self.deps(uid) {
                out.push(GcAction::RemoveOwnerRef {
                    dependent: d,
                    owner: uid.to_string(),
                });
            }
            out.push(GcAction::RemoveFinalizer {
                uid: uid.to_string(),
                finalizer: "orphan",
            });
            return out;
        }
        if node.deleting && node.finalizers.iter().any(|f| f == "foregroundDeletion") {
            let deps = self.deps(uid);
            let blocking: Vec<&String> = deps
                .iter()
                .filter(|d| {
                    self.nodes
                        .get(*d)
                        .is_some_and(|n| n.owners.iter().any(|o| o.uid == uid && o.block))
                })
                .collect();
            for d in &deps {
                if self.nodes.get(d).is_some_and(|n| !n.deleting) {
                    out.push(GcAction::Delete {
                        uid: d.clone(),
                        propagation: Propagation::Foreground,
                    });
                }
            }
            if blocking.is_empty() {
                out.push(GcAction::RemoveFinalizer {
                    uid: uid.to_string(),
                    finalizer: "foregroundDeletion",
                });
            }
            return out;
        }
        if !node.owners.is_empty() && !node.deleting {
            let gone: Vec<&OwnerRef> = node
                .owners
                .iter()
                .filter(|o| !self.nodes.contains_key(&o.uid))
                .collect();
            let owner_deleting_fg = node.owners.iter().any(|o| {
                self.nodes.get(&o.uid).is_some_and(|n| {
                    n.deleting && n.finalizers.iter().any(|f| f == "foregroundDeletion")
                })
            });
            if owner_deleting_fg {
                out.push(GcAction::Delete {
                    uid: uid.to_string(),
                    propagation: Propagation::Foreground,
                });
            } else if gone.len() == node.owners.len() {
                out.push(GcAction::Delete {
                    uid: uid.to_string(),
                    propagation: Propagation::Background,
                });
            } else {
                for o in gone {
                    out.push(GcAction::RemoveOwnerRef {
                        dependent: uid.to_string(),
                        owner: o.uid.clone(),
                    });
                }
            }
        }
        out
    }
}

/// Only `metadata` of a stored object: the rest is skipped unparsed (the
/// collector sees every write, so a full parse of each would be waste).
#[derive(serde::Deserialize)]
struct MetadataOnly {
    metadata: Option<Value>,
}

fn gc_node(res: &Arc<Resource>, kv: &KeyValue) -> Option<(String, GcNode)> {
    let obj: MetadataOnly = serde_json::from_slice(&kv.value).ok()?;
    let m = obj.metadata.as_ref()?;
    let uid = m.get("uid")?.as_str()?.to_string();
    let owners = m
        .get("ownerReferences")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|o| {
                    Some(OwnerRef {
                        uid: o.get("uid")?.as_str()?.to_string(),
                        block: o
                            .get("blockOwnerDeletion")
                            .and_then(Value::as_bool)
                            .unwrap_or(false),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    Some((
        uid,
        GcNode {
            key: kv.key.clone(),
            res: res.clone(),
            namespace: m.get("namespace").and_then(Value::as_str).map(String::from),
            name: m
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            owners,
            deleting: m.get("deletionTimestamp").is_some(),
            finalizers: super::registry::string_list(m.get("finalizers")),
        },
    ))
}

/// Which resource a storage key belongs to, memoized per (group, plural)
/// until the set of kinds changes (its generation moves).
#[derive(Default)]
struct ResourceForKey {
    generation: u64,
    known: HashMap<(String, String), Option<Arc<Resource>>>,
}

impl ResourceForKey {
    fn get(&mut self, app: &AppState, key: &str) -> Option<Arc<Resource>> {
        let rest = key.strip_prefix("/registry/")?;
        let mut parts = rest.splitn(3, '/');
        let group = parts.next()?;
        let plural = parts.next()?;
        let group = if group == "core" { "" } else { group };
        let generation = app.registry.kinds.generation();
        if generation != self.generation {
            self.known.clear();
            self.generation = generation;
        }
        if let Some(r) = self.known.get(&(group.to_string(), plural.to_string())) {
            return r.clone();
        }
        let found = app
            .registry
            .kinds
            .storage_resources()
            .into_iter()
            .find(|r| r.group == group && r.plural == plural);
        self.known
            .insert((group.to_string(), plural.to_string()), found.clone());
        found
    }
}

pub async fn run_gc(app: Arc<AppState>) {
    loop {
        if let Err(e) = gc_loop(&app).await {
            tracing::warn!("garbage collector restarting: {e}");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn gc_loop(app: &Arc<AppState>) -> ApiResult<()> {
    let mut graph = GcGraph::default();
    let mut queue: VecDeque<String> = VecDeque::new();
    let mut resource_for_key = ResourceForKey::default();
    let rev = app.registry.store.current_revision();
    let listed = app
        .registry
        .store
        .list("/registry/", None, 0, Some(rev))
        .await?;
    for kv in &listed.items {
        if let Some(res) = resource_for_key.get(app, &kv.key)
            && let Some((uid, node)) = gc_node(&res, kv)
        {
            queue.extend(graph.upsert(uid, node));
        }
    }
    let mut w = app.registry.store.watch("/registry/", listed.revision)?;
    let mut tick = tokio::time::interval(Duration::from_secs(30));
    loop {
        // drain the queue
        let mut seen = HashSet::new();
        while let Some(uid) = queue.pop_front() {
            if !seen.insert(uid.clone()) {
                continue;
            }
            for action in graph.plan(&uid) {
                apply(app, &graph, action).await;
            }
        }
        tokio::select! {
            ev = w.next() => {
                let Some(ev) = ev else { return Ok(()) };
                let ev = ev?;
                let Some(res) = resource_for_key.get(app, &ev.kv.key) else { continue };
                match ev.kind {
                    EventKind::Deleted => queue.extend(graph.remove_key(&ev.kv.key)),
                    _ => {
                        if let Some((uid, node)) = gc_node(&res, &ev.kv) {
                            queue.extend(graph.upsert(uid, node));
                        }
                    }
                }
            }
            _ = tick.tick() => {
                // periodic resync of everything with owners or pending GC finalizers
                queue.extend(graph.nodes.iter().filter(|(_, n)| !n.owners.is_empty() || n.deleting).map(|(u, _)| u.clone()));
            }
        }
    }
}

async fn apply(app: &Arc<AppState>, graph: &GcGraph, action: GcAction) {
    let result = match &action {
        GcAction::Delete { uid, propagation } => {
            let Some(n) = graph.nodes.get(uid) else {
                return;
            };
            let opts = DeleteOptions {
                propagation: Some(*propagation),
                precondition_uid: Some(uid.clone()),
                ..Default::default()
            };
            app.registry
                .delete(&n.res, n.namespace.as_deref(), &n.name, &opts)
                .await
                .map(|_| ())
        }
        GcAction::RemoveOwnerRef { dependent, owner } => {
            let Some(n) = graph.nodes.get(dependent) else {
                return;
            };
            let owner = owner.clone();
            mutate(app, &n.res, n.namespace.as_deref(), &n.name, |obj| {
                let Some(refs) = obj
                    .pointer_mut("/metadata/ownerReferences")
                    .and_then(Value::as_array_mut)
                else {
                    return false;
                };
                let before = refs.len();
                refs.retain(|r| r.get("uid").and_then(Value::as_str) != Some(owner.as_str()));
                let changed = before != refs.len();
                if refs.is_empty()
                    && let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut)
                {
                    m.remove("ownerReferences");
                }
                changed
            })
            .await
        }
        GcAction::RemoveFinalizer { uid, finalizer } => {
            let Some(n) = graph.nodes.get(uid) else {
                return;
            };
            mutate(app, &n.res, n.namespace.as_deref(), &n.name, |obj| {
                remove_finalizer(obj, finalizer)
            })
            .await
        }
    };
    if let Err(e) = result
        && e.code != 404
        && e.code != 409
    {
        tracing::debug!("gc {action:?}: {e}");
    }
}

/// Split `group/version` of an ownerReference's apiVersion (helper for tests).
pub fn owner_group(api_version: &str) -> &str {
    split_api_version(api_version).0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::kinds::Kinds;

    fn node(key: &str, owners: &[(&str, bool)], deleting: bool, fins: &[&str]) -> GcNode {
        let k = Kinds::with_builtins();
        GcNode {
            key: key.into(),
            res: k.get("", "v1", "configmaps").unwrap(),
            namespace: Some("d".into()),
            name: key.into(),
            owners: owners
                .iter()
                .map(|(u, b)| OwnerRef {
                    uid: u.to_string(),
                    block: *b,
                })
                .collect(),
            deleting,
            finalizers: fins.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn background_deletes_orphans() {
        let mut g = GcGraph::default();
        g.upsert("o".into(), node("o", &[], false, &[]));
        g.upsert("d".into(), node("d", &[("o", false)], false, &[]));
        assert!(g.plan("d").is_empty());
        let touched = g.remove_key("o");
        assert!(touched.contains(&"d".to_string()));
        assert_eq!(
            g.plan("d"),
            vec![GcAction::Delete {
                uid: "d".into(),
                propagation: Propagation::Background
            }]
        );
    }

    #[test]
    fn foreground_waits_for_blocking_dependents() {
        let mut g = GcGraph::default();
        g.upsert("o".into(), node("o", &[], true, &["foregroundDeletion"]));
        g.upsert("d".into(), node("d", &[("o", true)], false, &[]));
        assert_eq!(
            g.plan("o"),
            vec![GcAction::Delete {
                uid: "d".into(),
                propagation: Propagation::Foreground
            }]
        );
        g.remove_key("d");
        assert_eq!(
            g.plan("o"),
            vec![GcAction::RemoveFinalizer {
                uid: "o".into(),
                finalizer: "foregroundDeletion"
            }]
        );
    }

    #[test]
    fn orphan_removes_references() {
        let mut g = GcGraph::default();
        g.upsert("o".into(), node("o", &[], true, &["orphan"]));
        g.upsert("d".into(), node("d", &[("o", false)], false, &[]));
        assert_eq!(
            g.plan("o"),
            vec![
                GcAction::RemoveOwnerRef {
                    dependent: "d".into(),
                    owner: "o".into()
                },
                GcAction::RemoveFinalizer {
                    uid: "o".into(),
                    finalizer: "orphan"
                }
            ]
        );
    }

    #[test]
    fn partial_owner_loss_drops_reference() {
        let mut g = GcGraph::default();
        g.upsert("a".into(), node("a", &[], false, &[]));
        g.upsert(
            "d".into(),
            node("d", &[("a", false), ("b", false)], false, &[]),
        );
        assert_eq!(
            g.plan("d"),
            vec![GcAction::RemoveOwnerRef {
                dependent: "d".into(),
                owner: "b".into()
            }]
        );
    }

    #[test]
    fn crd_resources_from_spec() {
        let crd = json!({"metadata": {"name": "crontabs.stable.example.com"}, "spec": {"group": "stable.example.com", "scope": "Namespaced",
            "names": {"plural": "crontabs", "singular": "crontab", "kind": "CronTab", "shortNames": ["ct"]},
            "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {"type": "object"}}, "subresources": {"status": {}}}]}});
        let r = crd_resources(&crd);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].kind, "CronTab");
        assert!(r[0].has_status && r[0].custom && r[0].namespaced);
        let st = established_status(&crd, "2024-01-01T00:00:00Z");
        assert_eq!(st["storedVersions"], json!(["v1"]));
        assert_eq!(st["acceptedNames"]["listKind"], "CronTabList");
    }
}
