//! Static pods: pods defined by manifest files in the agent's
//! `pod-manifests` directory (`AgentConfig::pod_manifests_dir`), run by this
//! kubelet from the file whether or not the API server answers, and shown
//! in the API as *mirror pods*.
//!
//! Pure part: parsing a manifest (`*.yaml`, `*.yml` — several documents
//! allowed — or `*.json`; dotfiles ignored), turning each document into the
//! pod the kubelet runs (`static_pod`: name `<name>-<node>`, namespace
//! `default` unless given, `spec.nodeName`, API defaults, a uid hashed from
//! the document, the file path and the node name, and the annotations
//! `kubernetes.io/config.source: file`, `config.hash: <uid>`,
//! `config.seen`), the mirror pod of a static pod (`mirror_of`: annotation
//! `kubernetes.io/config.mirror: <hash>`, owned by the Node as controller),
//! and what to do about mirrors (`plan_mirrors`).
//!
//! Shells: `Scanner` re-reads files whose mtime or size changed (a bad file
//! is logged once, naming it, and contributes no pods); `watch_dir` rescans
//! every `SCAN_PERIOD`; `mirror_loop` keeps one mirror per static pod in
//! the API with the status the pod's worker computed. It reads the mirrors
//! from [`MirrorCache`], which the kubelet's pod watch keeps (no list of
//! the node's pods per round), and acts only when the static set, a static
//! pod's status or a mirror changed (plus a slow safety round).
//!
//! Invariants: the same manifest on the same node always yields the same
//! uid, so a restarted kubelet adopts the pod's containers; a changed
//! manifest yields a new uid (the old pod stops, the new one starts, the
//! mirror is replaced); deleting a mirror never stops its static pod (the
//! mirror is recreated); a mirror whose static pod is gone is deleted; the
//! kubelet's API pod source never runs a mirror pod.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::{Notify, watch};

use super::pods::KubeletContext;

pub const SOURCE_ANNOTATION: &str = "kubernetes.io/config.source";
pub const HASH_ANNOTATION: &str = "kubernetes.io/config.hash";
pub const SEEN_ANNOTATION: &str = "kubernetes.io/config.seen";
pub const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";
/// `config.source` of pods read from files.
pub const FILE_SOURCE: &str = "file";
/// How often the manifest directory is looked at.
pub const SCAN_PERIOD: Duration = Duration::from_secs(5);
/// How long after deleting a mirror pod the next one may be created.
const RECREATE_DELAY: Duration = Duration::from_secs(1);
/// How often mirror pods are reconciled even when nothing changed here.
const MIRROR_PERIOD: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("static pod manifest {file}: {msg}")]
    Invalid { file: String, msg: String },
    #[error("static pod manifest {file}: {source}")]
    Io {
        file: String,
        source: std::io::Error,
    },
}

fn invalid(file: &str, msg: impl Into<String>) -> ManifestError {
    ManifestError::Invalid {
        file: file.to_string(),
        msg: msg.into(),
    }
}

fn annotation<'a>(pod: &'a Pod, key: &str) -> Option<&'a str> {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

/// A mirror pod: the API's copy of a static pod (never run from the API).
pub fn is_mirror(pod: &Pod) -> bool {
    annotation(pod, MIRROR_ANNOTATION).is_some()
}

/// A pod this kubelet read from a manifest file.
pub fn is_static(pod: &Pod) -> bool {
    annotation(pod, SOURCE_ANNOTATION) == Some(FILE_SOURCE) && !is_mirror(pod)
}

/// Files the scanner reads: `*.yaml`, `*.yml`, `*.json`, not dotfiles.
pub fn is_manifest_name(name: &str) -> bool {
    !name.starts_with('.')
        && (name.ends_with(".yaml") || name.ends_with(".yml") || name.ends_with(".json"))
}

/// The documents of one manifest file (empty YAML documents skipped).
pub fn parse_manifest(file: &str, text: &str) -> Result<Vec<Value>, ManifestError> {
    if file.ends_with(".json") {
        let v: Value = serde_json::from_str(text).map_err(|e| invalid(file, e.to_string()))?;
        return Ok(vec![v]);
    }
    let mut out = Vec::new();
    for (i, doc) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        use serde::Deserialize;
        let v = Value::deserialize(doc)
            .map_err(|e| invalid(file, format!("document {}: {e}", i + 1)))?;
        if !v.is_null() {
            out.push(v);
        }
    }
    Ok(out)
}

/// The uid (and `config.hash`) of a static pod: a hash of the document as
/// written, the file and the node, as 32 hex digits.
pub fn static_uid(doc: &Value, file: &str, node: &str) -> String {
    let mut h = Sha256::new();
    h.update(serde_json::to_vec(doc).unwrap_or_default());
    h.update(b"\0host:");
    h.update(node.as_bytes());
    h.update(b"\0file:");
    h.update(file.as_bytes());
    hex::encode(&h.finalize()[..16])
}

/// One manifest document as the pod this kubelet runs.
pub fn static_pod(doc: &Value, file: &str, node: &str, seen: &str) -> Result<Pod, ManifestError> {
    let Some(obj) = doc.as_object() else {
        return Err(invalid(file, "a document is not an object"));
    };
    if obj.get("apiVersion").and_then(Value::as_str) != Some("v1")
        || obj.get("kind").and_then(Value::as_str) != Some("Pod")
    {
        return Err(invalid(
            file,
            format!(
                "want apiVersion v1, kind Pod, got {} {}",
                obj.get("apiVersion").unwrap_or(&Value::Null),
                obj.get("kind").unwrap_or(&Value::Null)
            ),
        ));
    }
    let uid = static_uid(doc, file, node);
    let mut v = doc.clone();
    let name = v["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if name.is_empty() {
        return Err(invalid(file, "metadata.name: Required value"));
    }
    let meta = v
        .as_object_mut()
        .map(|o| o.entry("metadata").or_insert_with(|| json!({})))
        .and_then(Value::as_object_mut)
        .ok_or_else(|| invalid(file, "metadata: must be an object"))?;
    meta.insert(
        "name".into(),
        json!(format!("{name}-{}", node.to_lowercase())),
    );
    if meta
        .get("namespace")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        meta.insert("namespace".into(), json!("default"));
    }
    meta.insert("uid".into(), json!(uid));
    for k in [
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "selfLink",
    ] {
        meta.remove(k);
    }
    let ann = meta
        .entry("annotations")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .ok_or_else(|| invalid(file, "metadata.annotations: must be a map"))?;
    ann.insert(SOURCE_ANNOTATION.into(), json!(FILE_SOURCE));
    ann.insert(HASH_ANNOTATION.into(), json!(uid));
    ann.insert(SEEN_ANNOTATION.into(), json!(seen));
    ann.remove(MIRROR_ANNOTATION);
    if let Some(spec) = v.get_mut("spec").and_then(Value::as_object_mut) {
        spec.insert("nodeName".into(), json!(node));
    } else {
        return Err(invalid(file, "spec: Required value"));
    }
    if let Some(o) = v.as_object_mut() {
        o.remove("status");
    }
    crate::api::defaults::apply_defaults("", "Pod", &mut v);
    let causes = crate::api::validation::validate_create("", "Pod", &v);
    if !causes.is_empty() {
        let msgs: Vec<String> = causes
            .iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect();
        return Err(invalid(file, format!("pod {name}: {}", msgs.join(", "))));
    }
    serde_json::from_value(v).map_err(|e| invalid(file, format!("pod {name}: {e}")))
}

/// Every pod of one manifest file; a file with one bad document gives none.
pub fn pods_from_file(
    file: &str,
    text: &str,
    node: &str,
    seen: &str,
) -> Result<Vec<Pod>, ManifestError> {
    parse_manifest(file, text)?
        .iter()
        .map(|d| static_pod(d, file, node, seen))
        .collect()
}

/// The mirror pod the API shows for a static pod.
pub fn mirror_of(pod: &Pod, node: &str, node_uid: &str) -> Pod {
    let mut m = pod.clone();
    let hash = annotation(pod, HASH_ANNOTATION)
        .map(str::to_string)
        .or_else(|| pod.metadata.uid.clone())
        .unwrap_or_default();
    m.metadata.uid = None;
    m.metadata.resource_version = None;
    m.metadata.creation_timestamp = None;
    m.metadata.managed_fields = None;
    m.metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(MIRROR_ANNOTATION.into(), hash);
    m.metadata.owner_references = Some(vec![OwnerReference {
        api_version: "v1".into(),
        kind: "Node".into(),
        name: node.to_string(),
        uid: node_uid.to_string(),
        controller: Some(true),
        block_owner_deletion: None,
    }]);
    m.status = None;
    m
}

/// One step of keeping mirrors in line with static pods.
#[derive(Clone, Debug, PartialEq)]
pub enum MirrorAction {
    /// Create this mirror (then write the static pod's status to it).
    Create(Box<Pod>, Option<Value>),
    /// Delete a stale, orphaned or user-deleted mirror (grace 0, by uid).
    Delete {
        namespace: String,
        name: String,
        uid: String,
    },
    /// Write a static pod's status to its mirror.
    Status {
        namespace: String,
        name: String,
        uid: String,
        status: Value,
    },
}

fn full_name(p: &Pod) -> (String, String) {
    (
        p.metadata.namespace.clone().unwrap_or_default(),
        p.metadata.name.clone().unwrap_or_default(),
    )
}

/// What to do so that every static pod has exactly one live mirror with its
/// hash and status. `statics` carry the status their worker computed;
/// `patched` is the status last written, by mirror uid.
pub fn plan_mirrors(
    statics: &[Pod],
    mirrors: &[Pod],
    patched: &HashMap<String, Value>,
    node: &str,
    node_uid: &str,
) -> Vec<MirrorAction> {
    let mut out = Vec::new();
    let by_name: HashMap<(String, String), &Pod> =
        statics.iter().map(|p| (full_name(p), p)).collect();
    let mut live: HashSet<(String, String)> = HashSet::new();
    let status_of = |p: &Pod| {
        p.status
            .as_ref()
            .and_then(|s| serde_json::to_value(s).ok())
            .filter(|v| v.as_object().is_some_and(|o| !o.is_empty()))
    };
    for m in mirrors {
        let key = full_name(m);
        let uid = m.metadata.uid.clone().unwrap_or_default();
        let wanted = by_name.get(&key).filter(|s| {
            annotation(m, MIRROR_ANNOTATION)
                == annotation(s, HASH_ANNOTATION).or(s.metadata.uid.as_deref())
        });
        let Some(s) = wanted.filter(|_| m.metadata.deletion_timestamp.is_none()) else {
            out.push(MirrorAction::Delete {
                namespace: key.0.clone(),
                name: key.1.clone(),
                uid,
            });
            // a stale mirror blocks the name: the new one comes next round
            live.insert(key);
            continue;
        };
        live.insert(key.clone());
        if let Some(st) = status_of(s)
            && patched.get(&uid) != Some(&st)
        {
            out.push(MirrorAction::Status {
                namespace: key.0,
                name: key.1,
                uid,
                status: st,
            });
        }
    }
    for s in statics {
        if !live.contains(&full_name(s)) {
            out.push(MirrorAction::Create(
                Box::new(mirror_of(s, node, node_uid)),
                status_of(s),
            ));
        }
    }
    out
}

// ---- files ----

struct FileEntry {
    mtime: Option<SystemTime>,
    size: u64,
    pods: Vec<Pod>,
}

/// The manifest directory as last read: per file its mtime, size and pods.
pub struct Scanner {
    dir: PathBuf,
    node: String,
    files: BTreeMap<PathBuf, FileEntry>,
}

fn now_seen() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

impl Scanner {
    pub fn new(dir: impl Into<PathBuf>, node: &str) -> Scanner {
        Scanner {
            dir: dir.into(),
            node: node.to_string(),
            files: BTreeMap::new(),
        }
    }

    fn read(&self, path: &Path) -> Result<Vec<Pod>, ManifestError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Io {
            file: file.clone(),
            source,
        })?;
        pods_from_file(&file, &text, &self.node, &now_seen())
    }

    /// Re-read new and changed files, forget removed ones; true when any
    /// file changed.
    pub fn scan(&mut self) -> bool {
        let mut present: BTreeMap<PathBuf, (Option<SystemTime>, u64)> = BTreeMap::new();
        match std::fs::read_dir(&self.dir) {
            Ok(rd) => {
                for e in rd.flatten() {
                    let name = e.file_name().to_string_lossy().into_owned();
                    if !is_manifest_name(&name) {
                        continue;
                    }
                    let path = e.path();
                    // follows symlinks, as editors and config tools use them
                    let Ok(md) = std::fs::metadata(&path) else {
                        continue;
                    };
                    if md.is_file() {
                        present.insert(path, (md.modified().ok(), md.len()));
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!("static pods: reading {}: {e}", self.dir.display());
                return false;
            }
        }
        let before = self.files.len();
        self.files.retain(|p, _| present.contains_key(p));
        let mut changed = self.files.len() != before;
        for (path, (mtime, size)) in present {
            if self
                .files
                .get(&path)
                .is_some_and(|f| f.mtime == mtime && f.size == size)
            {
                continue;
            }
            changed = true;
            let pods = match self.read(&path) {
                Ok(pods) => {
                    tracing::info!(
                        "static pods: {} defines {} pod(s)",
                        path.display(),
                        pods.len()
                    );
                    pods
                }
                Err(e) => {
                    tracing::error!("{e}; the file is skipped");
                    Vec::new()
                }
            };
            self.files.insert(path, FileEntry { mtime, size, pods });
        }
        changed
    }

    /// The static pods, one per namespace/name (the first file in name
    /// order wins; duplicates are logged).
    pub fn pods(&self) -> Vec<Pod> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for (path, f) in &self.files {
            for p in &f.pods {
                if seen.insert(full_name(p)) {
                    out.push(p.clone());
                } else {
                    tracing::error!(
                        "static pods: {} defines pod {}/{} again; ignored",
                        path.display(),
                        p.metadata.namespace.as_deref().unwrap_or_default(),
                        p.metadata.name.as_deref().unwrap_or_default()
                    );
                }
            }
        }
        out
    }
}

/// Rescan every `SCAN_PERIOD` and publish the set when it changed.
pub async fn watch_dir(mut scanner: Scanner, tx: watch::Sender<Arc<Vec<Pod>>>) {
    loop {
        tokio::time::sleep(SCAN_PERIOD).await;
        let (changed, scanner_back) = match tokio::task::spawn_blocking(move || {
            let c = scanner.scan();
            (c, scanner)
        })
        .await
        {
            Ok(x) => x,
            Err(e) => {
                tracing::error!("static pods: scanner failed: {e}");
                return;
            }
        };
        scanner = scanner_back;
        if changed {
            let pods = scanner.pods();
            if tx.borrow().as_slice() != pods.as_slice() && tx.send(Arc::new(pods)).is_err() {
                return;
            }
        }
    }
}

// ---- mirrors ----

/// The mirror pods bound to this node, as the kubelet's pod watch last
/// showed them (by uid), plus the kubelet's own creations and deletions
/// until the watch catches up. Not synced until the watch's first list ends.
#[derive(Default)]
pub struct MirrorCache {
    state: std::sync::Mutex<MirrorState>,
    changed: Notify,
}

#[derive(Default)]
struct MirrorState {
    synced: bool,
    pods: HashMap<String, Pod>,
    /// Filled by a relist in progress; replaces `pods` when it ends.
    relist: Option<HashMap<String, Pod>>,
}

impl MirrorCache {
    fn state(&self) -> std::sync::MutexGuard<'_, MirrorState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The watch starts a (re)list.
    pub fn relist_started(&self) {
        self.state().relist = Some(HashMap::new());
    }

    /// A pod from the watch (list or event); non-mirrors are ignored.
    pub fn apply(&self, pod: &Pod) {
        let Some(uid) = pod.metadata.uid.clone().filter(|_| is_mirror(pod)) else {
            return;
        };
        let mut st = self.state();
        match st.relist.as_mut() {
            Some(r) => {
                r.insert(uid, pod.clone());
            }
            None => {
                st.pods.insert(uid, pod.clone());
                drop(st);
                self.changed.notify_one();
            }
        }
    }

    /// The watch's list ended: what it listed is the whole set.
    pub fn relist_done(&self) {
        let mut st = self.state();
        if let Some(r) = st.relist.take() {
            st.pods = r;
        }
        st.synced = true;
        drop(st);
        self.changed.notify_one();
    }

    pub fn delete(&self, uid: &str) {
        if self.state().pods.remove(uid).is_some() {
            self.changed.notify_one();
        }
    }

    /// The mirrors, or `None` before the first list ended.
    fn snapshot(&self) -> Option<Vec<Pod>> {
        let st = self.state();
        st.synced.then(|| st.pods.values().cloned().collect())
    }
}

/// Keep one mirror pod per static pod in the API, with its status.
pub async fn mirror_loop(
    ctx: Arc<KubeletContext>,
    mut statics: watch::Receiver<Arc<Vec<Pod>>>,
    cache: Arc<MirrorCache>,
) {
    let node = ctx.cfg.node_name.clone();
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    let mut patched: HashMap<String, Value> = HashMap::new();
    let mut last_error: HashMap<String, String> = HashMap::new();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(MIRROR_PERIOD) => {}
            _ = ctx.running.static_changed() => {}
            _ = cache.changed.notified() => {}
            r = statics.changed() => if r.is_err() { return },
        }
        let wanted: Vec<Pod> = statics
            .borrow_and_update()
            .iter()
            .map(|p| {
                let uid = p.metadata.uid.as_deref().unwrap_or_default();
                match ctx.running.get(uid) {
                    Some(r) => Pod {
                        status: r.status.clone(),
                        ..p.clone()
                    },
                    None => p.clone(),
                }
            })
            .collect();
        let Some(mirrors) = cache.snapshot() else {
            continue;
        };
        patched.retain(|uid, _| {
            mirrors
                .iter()
                .any(|m| m.metadata.uid.as_deref() == Some(uid))
        });
        let mut actions = plan_mirrors(&wanted, &mirrors, &patched, &node, "");
        if actions
            .iter()
            .any(|a| matches!(a, MirrorAction::Create(..)))
        {
            // the owner is the Node as it is now (it may have been re-created)
            match nodes.get_opt(&node).await {
                Ok(Some(n)) => {
                    let uid = n.metadata.uid.unwrap_or_default();
                    actions = plan_mirrors(&wanted, &mirrors, &patched, &node, &uid);
                }
                Ok(None) => continue,
                Err(e) => {
                    tracing::debug!("static pods: reading node {node}: {e}");
                    continue;
                }
            }
        }
        let deleting = actions
            .iter()
            .any(|a| matches!(a, MirrorAction::Delete { .. }));
        for action in actions {
            let (key, result) = run_action(&ctx.client, action, &mut patched, &cache).await;
            match result {
                Ok(()) => {
                    last_error.remove(&key);
                }
                Err(msg) => {
                    if last_error.get(&key) != Some(&msg) {
                        tracing::warn!("static pods: mirror pod {key}: {msg}");
                        last_error.insert(key, msg);
                    }
                }
            }
        }
        if deleting {
            // A mirror deleted by a user comes back, but not at once: a
            // client waiting for the deletion (`kubectl delete --wait`)
            // must get to see the name gone rather than a new object.
            tokio::time::sleep(RECREATE_DELAY).await;
        }
    }
}

async fn patch_status(
    client: &kube::Client,
    ns: &str,
    name: &str,
    uid: &str,
    status: &Value,
) -> Result<(), kube::Error> {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let body = json!({"metadata": {"uid": uid}, "status": status});
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&body))
        .await
        .map(|_| ())
}

async fn run_action(
    client: &kube::Client,
    action: MirrorAction,
    patched: &mut HashMap<String, Value>,
    cache: &MirrorCache,
) -> (String, Result<(), String>) {
    match action {
        MirrorAction::Create(pod, status) => {
            let (ns, name) = full_name(&pod);
            let key = format!("{ns}/{name}");
            let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
            let created = match api.create(&PostParams::default(), &pod).await {
                Ok(p) => p,
                Err(kube::Error::Api(e)) if e.code == 409 => {
                    return (key, Err("another pod of that name exists".into()));
                }
                Err(e) => return (key, Err(format!("creating: {e}"))),
            };
            tracing::info!("static pods: created mirror pod {key}");
            cache.apply(&created);
            let uid = created.metadata.uid.unwrap_or_default();
            if let Some(st) = status {
                match patch_status(client, &ns, &name, &uid, &st).await {
                    Ok(()) => {
                        patched.insert(uid, st);
                    }
                    Err(e) => return (key, Err(format!("writing status: {e}"))),
                }
            }
            (key, Ok(()))
        }
        MirrorAction::Delete {
            namespace,
            name,
            uid,
        } => {
            let key = format!("{namespace}/{name}");
            let api: Api<Pod> = Api::namespaced(client.clone(), &namespace);
            let dp = DeleteParams {
                grace_period_seconds: Some(0),
                preconditions: Some(Preconditions {
                    uid: Some(uid.clone()),
                    resource_version: None,
                }),
                ..Default::default()
            };
            let result = api.delete(&name, &dp).await;
            if result.is_ok() || matches!(&result, Err(kube::Error::Api(e)) if e.code == 404) {
                cache.delete(&uid);
            }
            match result {
                Ok(_) => {
                    tracing::info!("static pods: deleted mirror pod {key}");
                    (key, Ok(()))
                }
                Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => (key, Ok(())),
                Err(e) => (key, Err(format!("deleting: {e}"))),
            }
        }
        MirrorAction::Status {
            namespace,
            name,
            uid,
            status,
        } => {
            let key = format!("{namespace}/{name}");
            match patch_status(client, &namespace, &name, &uid, &status).await {
                Ok(()) => {
                    patched.insert(uid, status);
                    (key, Ok(()))
                }
                Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => (key, Ok(())),
                Err(e) => (key, Err(format!("writing status: {e}"))),
            }
        }
    }
}

#[cfg(test)]
mod tests;
