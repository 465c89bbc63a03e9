//! PersistentVolume binder (upstream `pkg/controller/volume/persistentvolume`)
//! and skiff's built-in local-path provisioner (like rancher's
//! local-path-provisioner shipped by k3s), as one pure planning step.
//!
//! Owns: given a snapshot of every PV, PVC and StorageClass (plus `now`),
//! deciding which claims bind to which volumes, which volumes to provision
//! for `rancher.io/local-path` / `skiff.io/local-path` classes, which released
//! volumes to delete, which phases to set (Available/Bound/Released/Failed,
//! Pending/Bound/Lost) and which events to record. Also the built-in default
//! `local-path` StorageClass.
//!
//! Invariants: level-triggered and idempotent — planning again over the
//! snapshot that results from applying the actions yields no new writes
//! (events aside). A volume is never handed to two claims in one plan. Binding
//! writes the PV side first (claimRef, then phase) and the claim side last,
//! as upstream does, so an interrupted bind is repaired by the next plan.
//!
//! Must not: do I/O, read clocks, touch the node's filesystem (the node agent
//! creates and removes the hostPath directories), or panic on odd objects.
//!
//! Deviation from upstream: for `WaitForFirstConsumer` classes, once the
//! scheduler has set `volume.kubernetes.io/selected-node`, this binder also
//! binds matching static volumes whose node affinity admits that node
//! (upstream leaves that to the scheduler's volume binder).

use crate::api::quantity::{Quantity as Q, parse_quantity};
use crate::controllers::podutil::{chrono_to_time, selector_matches};
use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{
    HostPathVolumeSource, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, ObjectReference,
    PersistentVolume, PersistentVolumeClaim, PersistentVolumeClaimStatus, PersistentVolumeSpec,
    PersistentVolumeStatus, VolumeNodeAffinity,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use std::collections::BTreeMap;

pub const PROVISIONER_LOCAL_PATH: &str = "rancher.io/local-path";
pub const PROVISIONER_SKIFF_LOCAL_PATH: &str = "skiff.io/local-path";
pub const DEFAULT_CLASS_NAME: &str = "local-path";

pub const ANN_BIND_COMPLETED: &str = "pv.kubernetes.io/bind-completed";
pub const ANN_BOUND_BY_CONTROLLER: &str = "pv.kubernetes.io/bound-by-controller";
pub const ANN_PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";
pub const ANN_SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
pub const ANN_STORAGE_PROVISIONER: &str = "volume.kubernetes.io/storage-provisioner";
pub const ANN_BETA_STORAGE_PROVISIONER: &str = "volume.beta.kubernetes.io/storage-provisioner";
pub const ANN_BETA_STORAGE_CLASS: &str = "volume.beta.kubernetes.io/storage-class";
pub const ANN_DEFAULT_CLASS: &str = "storageclass.kubernetes.io/is-default-class";
pub const ANN_BETA_DEFAULT_CLASS: &str = "storageclass.beta.kubernetes.io/is-default-class";
pub const LABEL_HOSTNAME: &str = "kubernetes.io/hostname";

const NO_PROVISIONER: &str = "kubernetes.io/no-provisioner";

/// Provisioner settings the shell reads from skiff's configuration.
#[derive(Debug, Clone)]
pub struct Config<'a> {
    /// Directory on each node under which local-path volumes live
    /// (k3s: `/var/lib/rancher/k3s/storage`).
    pub storage_dir: &'a str,
    /// Node used for `Immediate` local-path classes (no scheduler choice).
    pub default_node: Option<&'a str>,
}

/// Everything the binder looks at, borrowed from the shell's caches.
#[derive(Debug, Clone, Copy)]
pub struct Snapshot<'a> {
    pub volumes: &'a [PersistentVolume],
    pub claims: &'a [PersistentVolumeClaim],
    pub classes: &'a [StorageClass],
    /// Node name → labels, for PV node affinity. A node missing here is
    /// assumed to carry only `kubernetes.io/hostname=<name>`.
    pub node_labels: &'a BTreeMap<String, BTreeMap<String, String>>,
}

/// An event to record on `regarding` (a PV or a PVC).
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub regarding: ObjectReference,
    pub type_: String,
    pub reason: String,
    pub message: String,
}

/// What the shell must do, in order. On the first failed write the shell
/// should stop and plan again later (everything is recomputed).
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Create this volume (its status is ignored by the API server).
    CreatePv(PersistentVolume),
    /// Write this volume: when `spec`, replace the object (metadata/spec,
    /// with its resourceVersion); then when `status`, replace its status
    /// subresource with `pv.status` (on the object returned by the first write).
    UpdatePv {
        pv: PersistentVolume,
        spec: bool,
        status: bool,
    },
    /// Same contract as `UpdatePv`, for a claim.
    UpdatePvc {
        pvc: PersistentVolumeClaim,
        spec: bool,
        status: bool,
    },
    /// Delete a released volume (precondition: this uid). Upstream first
    /// re-reads the claim from the API server; the shell should too and
    /// skip the delete if the claim (same uid) still exists.
    DeletePv {
        name: String,
        uid: String,
    },
    Event(Event),
}

/// The built-in default StorageClass `local-path`.
pub fn default_storage_class() -> StorageClass {
    StorageClass {
        metadata: ObjectMeta {
            name: Some(DEFAULT_CLASS_NAME.to_string()),
            annotations: Some(
                [(ANN_DEFAULT_CLASS.to_string(), "true".to_string())]
                    .into_iter()
                    .collect(),
            ),
            ..Default::default()
        },
        provisioner: PROVISIONER_LOCAL_PATH.to_string(),
        reclaim_policy: Some("Delete".to_string()),
        volume_binding_mode: Some("WaitForFirstConsumer".to_string()),
        ..Default::default()
    }
}

/// Plans one full pass over the snapshot: claims first (binding and
/// provisioning), then volumes (phases, release, reclaim).
pub fn plan(snap: &Snapshot, cfg: &Config, now: DateTime<Utc>) -> Vec<Action> {
    let mut p = Planner::new(snap, cfg, now);
    let mut claim_keys: Vec<ClaimKey> = p.claims.keys().cloned().collect();
    claim_keys.sort_by_key(|k| {
        let c = &p.claims[k];
        (
            c.metadata.creation_timestamp.as_ref().map(|t| t.0),
            k.clone(),
        )
    });
    for key in claim_keys {
        p.sync_claim(&key);
    }
    let names: Vec<String> = p.volumes.keys().cloned().collect();
    for name in names {
        p.sync_volume(&name);
    }
    p.finish()
}

// ---------------------------------------------------------------------------
// Small facts about single objects.

type ClaimKey = (String, String);

fn ann<'a>(meta: &'a ObjectMeta, key: &str) -> Option<&'a str> {
    meta.annotations.as_ref()?.get(key).map(String::as_str)
}

fn set_ann(meta: &mut ObjectMeta, key: &str, value: &str) -> bool {
    let anns = meta.annotations.get_or_insert_with(BTreeMap::new);
    if anns.get(key).map(String::as_str) == Some(value) {
        return false;
    }
    anns.insert(key.to_string(), value.to_string());
    true
}

fn name_of(meta: &ObjectMeta) -> &str {
    meta.name.as_deref().unwrap_or("")
}

fn ns_of(meta: &ObjectMeta) -> &str {
    meta.namespace.as_deref().unwrap_or("")
}

fn uid_of(meta: &ObjectMeta) -> &str {
    meta.uid.as_deref().unwrap_or("")
}

fn claim_key(c: &PersistentVolumeClaim) -> ClaimKey {
    (
        ns_of(&c.metadata).to_string(),
        name_of(&c.metadata).to_string(),
    )
}

/// The claim's class: the beta annotation wins, then `spec.storageClassName`;
/// `None` means "not set at all" (eligible for the default class).
pub fn claim_class(c: &PersistentVolumeClaim) -> Option<&str> {
    ann(&c.metadata, ANN_BETA_STORAGE_CLASS)
        .or_else(|| c.spec.as_ref()?.storage_class_name.as_deref())
}

/// The volume's class ("" when none).
pub fn volume_class(v: &PersistentVolume) -> &str {
    ann(&v.metadata, ANN_BETA_STORAGE_CLASS)
        .or_else(|| v.spec.as_ref()?.storage_class_name.as_deref())
        .unwrap_or("")
}

fn claim_request(c: &PersistentVolumeClaim) -> Option<&Quantity> {
    c.spec
        .as_ref()?
        .resources
        .as_ref()?
        .requests
        .as_ref()?
        .get("storage")
}

/// Capacity in thousandths of a byte (0 when missing or malformed).
fn volume_capacity(v: &PersistentVolume) -> i128 {
    v.spec
        .as_ref()
        .and_then(|s| s.capacity.as_ref())
        .and_then(|c| c.get("storage"))
        .and_then(|q| parse_quantity(&q.0))
        .map_or(0, |q| q.milli_value())
}

fn request_milli(c: &PersistentVolumeClaim) -> i128 {
    claim_request(c)
        .and_then(|q| parse_quantity(&q.0))
        .map_or(0, |q: Q| q.milli_value())
}

fn claim_mode(c: &PersistentVolumeClaim) -> &str {
    c.spec
        .as_ref()
        .and_then(|s| s.volume_mode.as_deref())
        .unwrap_or("Filesystem")
}

fn volume_mode(v: &PersistentVolume) -> &str {
    v.spec
        .as_ref()
        .and_then(|s| s.volume_mode.as_deref())
        .unwrap_or("Filesystem")
}

fn claim_access_modes(c: &PersistentVolumeClaim) -> &[String] {
    c.spec
        .as_ref()
        .and_then(|s| s.access_modes.as_deref())
        .unwrap_or(&[])
}

fn volume_access_modes(v: &PersistentVolume) -> &[String] {
    v.spec
        .as_ref()
        .and_then(|s| s.access_modes.as_deref())
        .unwrap_or(&[])
}

/// Every mode the claim asks for is offered by the volume.
fn access_modes_ok(c: &PersistentVolumeClaim, v: &PersistentVolume) -> bool {
    let offered = volume_access_modes(v);
    claim_access_modes(c).iter().all(|m| offered.contains(m))
}

fn claim_ref(v: &PersistentVolume) -> Option<&ObjectReference> {
    v.spec.as_ref()?.claim_ref.as_ref()
}

/// The volume points at this claim (namespace/name, and uid when set).
fn bound_to_claim(v: &PersistentVolume, c: &PersistentVolumeClaim) -> bool {
    let Some(r) = claim_ref(v) else {
        return false;
    };
    r.namespace.as_deref().unwrap_or("") == ns_of(&c.metadata)
        && r.name.as_deref().unwrap_or("") == name_of(&c.metadata)
        && r.uid
            .as_deref()
            .is_none_or(|u| u.is_empty() || u == uid_of(&c.metadata))
}

fn claim_reference(c: &PersistentVolumeClaim) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".to_string()),
        kind: Some("PersistentVolumeClaim".to_string()),
        namespace: c.metadata.namespace.clone(),
        name: c.metadata.name.clone(),
        uid: c.metadata.uid.clone(),
        resource_version: c.metadata.resource_version.clone(),
        field_path: None,
    }
}

fn volume_reference(v: &PersistentVolume) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".to_string()),
        kind: Some("PersistentVolume".to_string()),
        name: v.metadata.name.clone(),
        uid: v.metadata.uid.clone(),
        resource_version: v.metadata.resource_version.clone(),
        ..Default::default()
    }
}

fn pv_phase(v: &PersistentVolume) -> &str {
    v.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn is_local_path(provisioner: &str) -> bool {
    provisioner == PROVISIONER_LOCAL_PATH || provisioner == PROVISIONER_SKIFF_LOCAL_PATH
}

fn is_default_class(sc: &StorageClass) -> bool {
    [ANN_DEFAULT_CLASS, ANN_BETA_DEFAULT_CLASS]
        .iter()
        .any(|k| ann(&sc.metadata, k) == Some("true"))
}

/// The default class: the newest of those annotated default (upstream picks
/// the most recently created when several claim to be default).
fn default_class(classes: &[StorageClass]) -> Option<&StorageClass> {
    classes
        .iter()
        .filter(|sc| is_default_class(sc))
        .max_by_key(|sc| {
            (
                sc.metadata.creation_timestamp.as_ref().map(|t| t.0),
                std::cmp::Reverse(name_of(&sc.metadata).to_string()),
            )
        })
}

fn requirement_matches(r: &NodeSelectorRequirement, get: impl Fn(&str) -> Option<String>) -> bool {
    let vals = r.values.as_deref().unwrap_or(&[]);
    let got = get(&r.key);
    let as_int = |s: &str| s.parse::<i64>().ok();
    match r.operator.as_str() {
        "In" => got.is_some_and(|g| vals.contains(&g)),
        "NotIn" => got.is_none_or(|g| !vals.contains(&g)),
        "Exists" => got.is_some(),
        "DoesNotExist" => got.is_none(),
        "Gt" | "Lt" => {
            let (Some(g), Some(v)) = (
                got.as_deref().and_then(as_int),
                vals.first().and_then(|v| as_int(v)),
            ) else {
                return false;
            };
            if r.operator == "Gt" { g > v } else { g < v }
        }
        _ => false,
    }
}

fn term_matches(t: &NodeSelectorTerm, node: &str, labels: &BTreeMap<String, String>) -> bool {
    let exprs = t.match_expressions.as_deref().unwrap_or(&[]);
    let fields = t.match_fields.as_deref().unwrap_or(&[]);
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    exprs
        .iter()
        .all(|r| requirement_matches(r, |k| labels.get(k).cloned()))
        && fields
            .iter()
            .all(|r| requirement_matches(r, |k| (k == "metadata.name").then(|| node.to_string())))
}

/// Whether a volume's required node affinity admits `node` (no affinity
/// admits every node).
pub fn node_affinity_admits(
    v: &PersistentVolume,
    node: &str,
    node_labels: &BTreeMap<String, BTreeMap<String, String>>,
) -> bool {
    let Some(required) = v
        .spec
        .as_ref()
        .and_then(|s| s.node_affinity.as_ref())
        .and_then(|a| a.required.as_ref())
    else {
        return true;
    };
    let fallback: BTreeMap<String, String> = [(LABEL_HOSTNAME.to_string(), node.to_string())]
        .into_iter()
        .collect();
    let labels = node_labels.get(node).unwrap_or(&fallback);
    required
        .node_selector_terms
        .iter()
        .any(|t| term_matches(t, node, labels))
}

/// Why a volume the user named in `spec.volumeName` cannot serve the claim.
fn check_volume_satisfies_claim(
    v: &PersistentVolume,
    c: &PersistentVolumeClaim,
) -> Result<(), String> {
    if v.metadata.deletion_timestamp.is_some() {
        return Err(format!(
            "the volume is marked for deletion {:?}",
            name_of(&v.metadata)
        ));
    }
    if volume_capacity(v) < request_milli(c) {
        return Err("requested PV is too small".to_string());
    }
    if volume_class(v) != claim_class(c).unwrap_or("") {
        return Err("storageClassName does not match".to_string());
    }
    if volume_mode(v) != claim_mode(c) {
        return Err("incompatible volumeMode".to_string());
    }
    if !access_modes_ok(c, v) {
        return Err("incompatible accessMode".to_string());
    }
    Ok(())
}

/// The local-path volume for a claim on `node`.
pub fn local_path_volume(
    claim: &PersistentVolumeClaim,
    class: &StorageClass,
    node: &str,
    storage_dir: &str,
) -> PersistentVolume {
    let name = format!("pvc-{}", uid_of(&claim.metadata));
    let dir = storage_dir.trim_end_matches('/');
    let path = format!(
        "{dir}/{name}_{}_{}",
        ns_of(&claim.metadata),
        name_of(&claim.metadata)
    );
    let capacity =
        claim_request(claim).map(|q| [("storage".to_string(), q.clone())].into_iter().collect());
    let affinity = VolumeNodeAffinity {
        required: Some(NodeSelector {
            node_selector_terms: vec![NodeSelectorTerm {
                match_expressions: Some(vec![NodeSelectorRequirement {
                    key: LABEL_HOSTNAME.to_string(),
                    operator: "In".to_string(),
                    values: Some(vec![node.to_string()]),
                }]),
                match_fields: None,
            }],
        }),
    };
    PersistentVolume {
        metadata: ObjectMeta {
            name: Some(name),
            annotations: Some(
                [(ANN_PROVISIONED_BY.to_string(), class.provisioner.clone())]
                    .into_iter()
                    .collect(),
            ),
            ..Default::default()
        },
        spec: Some(PersistentVolumeSpec {
            access_modes: Some(claim_access_modes(claim).to_vec()),
            capacity,
            claim_ref: Some(claim_reference(claim)),
            host_path: Some(HostPathVolumeSource {
                path,
                type_: Some("DirectoryOrCreate".to_string()),
            }),
            mount_options: class.mount_options.clone(),
            node_affinity: Some(affinity),
            persistent_volume_reclaim_policy: Some(
                class
                    .reclaim_policy
                    .clone()
                    .unwrap_or_else(|| "Delete".to_string()),
            ),
            storage_class_name: class.metadata.name.clone(),
            volume_mode: Some(claim_mode(claim).to_string()),
            ..Default::default()
        }),
        status: None,
    }
}

// ---------------------------------------------------------------------------
// The planner: working copies of every object, with what changed.

#[derive(Default, Clone, Copy)]
struct Dirty {
    spec: bool,
    status: bool,
}

struct Planner<'a> {
    cfg: &'a Config<'a>,
    now: DateTime<Utc>,
    classes: &'a [StorageClass],
    node_labels: &'a BTreeMap<String, BTreeMap<String, String>>,
    volumes: BTreeMap<String, PersistentVolume>,
    claims: BTreeMap<ClaimKey, PersistentVolumeClaim>,
    pv_dirty: BTreeMap<String, Dirty>,
    pvc_dirty: BTreeMap<ClaimKey, Dirty>,
    created: Vec<PersistentVolume>,
    deleted: Vec<(String, String)>,
    events: Vec<Event>,
}

impl<'a> Planner<'a> {
    fn new(snap: &Snapshot<'a>, cfg: &'a Config<'a>, now: DateTime<Utc>) -> Self {
        Planner {
            cfg,
            now,
            classes: snap.classes,
            node_labels: snap.node_labels,
            volumes: snap
                .volumes
                .iter()
                .map(|v| (name_of(&v.metadata).to_string(), v.clone()))
                .collect(),
            claims: snap
                .claims
                .iter()
                .map(|c| (claim_key(c), c.clone()))
                .collect(),
            pv_dirty: BTreeMap::new(),
            pvc_dirty: BTreeMap::new(),
            created: Vec::new(),
            deleted: Vec::new(),
            events: Vec::new(),
        }
    }

    fn finish(self) -> Vec<Action> {
        let mut out: Vec<Action> = self.created.into_iter().map(Action::CreatePv).collect();
        for (name, d) in &self.pv_dirty {
            if let Some(pv) = self.volumes.get(name) {
                out.push(Action::UpdatePv {
                    pv: pv.clone(),
                    spec: d.spec,
                    status: d.status,
                });
            }
        }
        for (key, d) in &self.pvc_dirty {
            if let Some(pvc) = self.claims.get(key) {
                out.push(Action::UpdatePvc {
                    pvc: pvc.clone(),
                    spec: d.spec,
                    status: d.status,
                });
            }
        }
        out.extend(
            self.deleted
                .into_iter()
                .map(|(name, uid)| Action::DeletePv { name, uid }),
        );
        out.extend(self.events.into_iter().map(Action::Event));
        out
    }

    fn class(&self, name: &str) -> Option<&'a StorageClass> {
        self.classes.iter().find(|sc| name_of(&sc.metadata) == name)
    }

    fn claim_event(&mut self, key: &ClaimKey, type_: &str, reason: &str, message: String) {
        if let Some(c) = self.claims.get(key) {
            self.events.push(Event {
                regarding: claim_reference(c),
                type_: type_.to_string(),
                reason: reason.to_string(),
                message,
            });
        }
    }

    fn volume_event(&mut self, name: &str, type_: &str, reason: &str, message: String) {
        if let Some(v) = self.volumes.get(name) {
            self.events.push(Event {
                regarding: volume_reference(v),
                type_: type_.to_string(),
                reason: reason.to_string(),
                message,
            });
        }
    }

    // -- writes on working copies ------------------------------------------

    fn set_pv_phase(&mut self, name: &str, phase: &str, message: Option<String>) {
        let Some(v) = self.volumes.get_mut(name) else {
            return;
        };
        if pv_phase(v) == phase && v.status.as_ref().and_then(|s| s.message.clone()) == message {
            return;
        }
        let status = v.status.get_or_insert_with(PersistentVolumeStatus::default);
        if status.phase.as_deref() != Some(phase) {
            status.last_phase_transition_time = Some(chrono_to_time(self.now));
        }
        status.phase = Some(phase.to_string());
        status.message = message;
        status.reason = None;
        self.pv_dirty.entry(name.to_string()).or_default().status = true;
    }

    fn edit_pv(&mut self, name: &str, f: impl FnOnce(&mut PersistentVolume)) {
        if let Some(v) = self.volumes.get_mut(name) {
            f(v);
            self.pv_dirty.entry(name.to_string()).or_default().spec = true;
        }
    }

    fn edit_pvc(&mut self, key: &ClaimKey, f: impl FnOnce(&mut PersistentVolumeClaim)) {
        if let Some(c) = self.claims.get_mut(key) {
            f(c);
            self.pvc_dirty.entry(key.clone()).or_default().spec = true;
        }
    }

    /// Sets the claim phase; Bound copies the volume's modes and capacity,
    /// any other phase clears them. Returns whether the phase changed.
    fn set_pvc_phase(&mut self, key: &ClaimKey, phase: &str, volume: Option<&str>) -> bool {
        let (modes, capacity) = match volume.and_then(|n| self.volumes.get(n)) {
            Some(v) => (
                v.spec.as_ref().and_then(|s| s.access_modes.clone()),
                v.spec.as_ref().and_then(|s| s.capacity.clone()),
            ),
            None => (None, None),
        };
        let Some(c) = self.claims.get_mut(key) else {
            return false;
        };
        let status = c
            .status
            .get_or_insert_with(PersistentVolumeClaimStatus::default);
        let phase_changed = status.phase.as_deref() != Some(phase);
        let changed = phase_changed || status.access_modes != modes || status.capacity != capacity;
        if changed {
            status.phase = Some(phase.to_string());
            status.access_modes = modes;
            status.capacity = capacity;
            self.pvc_dirty.entry(key.clone()).or_default().status = true;
        }
        phase_changed
    }

    // -- claims ------------------------------------------------------------

    fn sync_claim(&mut self, key: &ClaimKey) {
        let Some(claim) = self.claims.get(key) else {
            return;
        };
        if ann(&claim.metadata, ANN_BIND_COMPLETED).is_some() {
            self.sync_bound_claim(key);
            return;
        }
        if claim.metadata.deletion_timestamp.is_some() {
            return;
        }
        if let (None, Some(def)) = (claim_class(claim), default_class(self.classes)) {
            let name = name_of(&def.metadata).to_string();
            self.edit_pvc(key, |c| {
                c.spec
                    .get_or_insert_with(Default::default)
                    .storage_class_name = Some(name);
            });
            return;
        }
        let volume_name = claim
            .spec
            .as_ref()
            .and_then(|s| s.volume_name.clone())
            .unwrap_or_default();
        if volume_name.is_empty() {
            self.sync_unbound_claim(key);
        } else {
            self.sync_prebound_claim(key, &volume_name);
        }
    }

    /// A claim the user did not point at a volume.
    fn sync_unbound_claim(&mut self, key: &ClaimKey) {
        let Some(claim) = self.claims.get(key).cloned() else {
            return;
        };
        let class_name = claim_class(&claim).unwrap_or("").to_string();
        let class = self.class(&class_name);
        let wffc = class
            .is_some_and(|sc| sc.volume_binding_mode.as_deref() == Some("WaitForFirstConsumer"));
        let selected = ann(&claim.metadata, ANN_SELECTED_NODE).map(str::to_string);
        let node = if wffc { selected.as_deref() } else { None };
        let delay = wffc && selected.is_none();
        if let Some(pv) = self.find_best_match(&claim, node, delay) {
            self.bind(&pv, key);
            return;
        }
        if delay {
            self.claim_event(
                key,
                "Normal",
                "WaitForFirstConsumer",
                "waiting for first consumer to be created before binding".to_string(),
            );
        } else if !class_name.is_empty() {
            self.provision(key, &class_name, node);
        } else {
            self.claim_event(
                key,
                "Normal",
                "FailedBinding",
                "no persistent volumes available for this claim and no storage class is set"
                    .to_string(),
            );
        }
        self.set_pvc_phase(key, "Pending", None);
    }

    /// A claim whose `spec.volumeName` the user set and that is not bound yet.
    fn sync_prebound_claim(&mut self, key: &ClaimKey, volume_name: &str) {
        let Some(claim) = self.claims.get(key).cloned() else {
            return;
        };
        let Some(pv) = self.volumes.get(volume_name).cloned() else {
            self.set_pvc_phase(key, "Pending", None);
            return;
        };
        if claim_ref(&pv).is_none() {
            match check_volume_satisfies_claim(&pv, &claim) {
                Ok(()) => self.bind(volume_name, key),
                Err(why) => {
                    self.claim_event(
                        key,
                        "Warning",
                        "VolumeMismatch",
                        format!("Cannot bind to requested volume {volume_name:?}: {why}"),
                    );
                    self.set_pvc_phase(key, "Pending", None);
                }
            }
        } else if bound_to_claim(&pv, &claim) {
            self.bind(volume_name, key);
        } else {
            if ann(&claim.metadata, ANN_BOUND_BY_CONTROLLER).is_none() {
                self.claim_event(
                    key,
                    "Warning",
                    "FailedBinding",
                    format!("volume {volume_name:?} already bound to a different claim."),
                );
            }
            self.set_pvc_phase(key, "Pending", None);
        }
    }

    /// A claim that was bound once (`bind-completed`).
    fn sync_bound_claim(&mut self, key: &ClaimKey) {
        let Some(claim) = self.claims.get(key).cloned() else {
            return;
        };
        let volume_name = claim
            .spec
            .as_ref()
            .and_then(|s| s.volume_name.clone())
            .unwrap_or_default();
        let lost =
            "Bound claim has lost reference to PersistentVolume. Data on the volume is lost!";
        let Some(pv) = self.volumes.get(&volume_name).cloned() else {
            if self.set_pvc_phase(key, "Lost", None) {
                self.claim_event(key, "Warning", "ClaimLost", lost.to_string());
            }
            return;
        };
        let bound_here = claim_ref(&pv)
            .is_none_or(|r| r.uid.as_deref().unwrap_or("") == uid_of(&claim.metadata));
        if bound_here {
            self.bind(&volume_name, key);
        } else if self.set_pvc_phase(key, "Lost", None) {
            self.claim_event(
                key,
                "Warning",
                "ClaimMisbound",
                "Two claims are bound to the same volume, this one is bound incorrectly"
                    .to_string(),
            );
        }
    }

    /// The best volume for a claim: one pre-bound to it, else the Available
    /// volume of the right class, mode, labels and access modes with the
    /// fewest access modes and then the smallest sufficient capacity.
    fn find_best_match(
        &self,
        claim: &PersistentVolumeClaim,
        node: Option<&str>,
        delay: bool,
    ) -> Option<String> {
        let request = request_milli(claim);
        let class = claim_class(claim).unwrap_or("");
        let selector = claim.spec.as_ref().and_then(|s| s.selector.as_ref());
        let mut best: Option<(usize, i128, &str)> = None;
        for (name, v) in &self.volumes {
            if claim_ref(v).is_some() && !bound_to_claim(v, claim) {
                continue;
            }
            let capacity = volume_capacity(v);
            if capacity < request
                || volume_mode(v) != claim_mode(claim)
                || v.metadata.deletion_timestamp.is_some()
            {
                continue;
            }
            let affinity_ok = node.is_none_or(|n| node_affinity_admits(v, n, self.node_labels));
            if bound_to_claim(v, claim) {
                return affinity_ok.then(|| name.clone());
            }
            if (node.is_none() && delay)
                || pv_phase(v) != "Available"
                || volume_class(v) != class
                || !affinity_ok
                || !access_modes_ok(claim, v)
            {
                continue;
            }
            let empty = BTreeMap::new();
            let labels = v.metadata.labels.as_ref().unwrap_or(&empty);
            if selector.is_some_and(|s| !selector_matches(s, labels)) {
                continue;
            }
            let rank = (volume_access_modes(v).len(), capacity, name.as_str());
            if best.is_none_or(|b| rank < b) {
                best = Some(rank);
            }
        }
        best.map(|(_, _, n)| n.to_string())
    }

    /// Binds volume and claim both ways (idempotent): PV claimRef and
    /// phase first, then the claim's volumeName, annotations and status.
    fn bind(&mut self, volume_name: &str, key: &ClaimKey) {
        let Some(claim) = self.claims.get(key).cloned() else {
            return;
        };
        let Some(pv) = self.volumes.get(volume_name) else {
            return;
        };
        let uid_matches = claim_ref(pv)
            .is_some_and(|r| r.uid.as_deref().unwrap_or("") == uid_of(&claim.metadata));
        if !(bound_to_claim(pv, &claim) && uid_matches) {
            let by_controller = !bound_to_claim(pv, &claim);
            self.edit_pv(volume_name, |v| {
                v.spec.get_or_insert_with(Default::default).claim_ref =
                    Some(claim_reference(&claim));
                if by_controller {
                    set_ann(&mut v.metadata, ANN_BOUND_BY_CONTROLLER, "yes");
                }
            });
        }
        self.set_pv_phase(volume_name, "Bound", None);
        let current = claim.spec.as_ref().and_then(|s| s.volume_name.as_deref());
        let needs_name = current != Some(volume_name);
        let needs_ann = ann(&claim.metadata, ANN_BIND_COMPLETED).is_none();
        if needs_name || needs_ann {
            let volume = volume_name.to_string();
            self.edit_pvc(key, |c| {
                if needs_name {
                    c.spec.get_or_insert_with(Default::default).volume_name = Some(volume);
                    set_ann(&mut c.metadata, ANN_BOUND_BY_CONTROLLER, "yes");
                }
                set_ann(&mut c.metadata, ANN_BIND_COMPLETED, "yes");
            });
        }
        self.set_pvc_phase(key, "Bound", Some(volume_name));
    }

    // -- provisioning ------------------------------------------------------

    fn provision(&mut self, key: &ClaimKey, class_name: &str, node: Option<&str>) {
        let Some(class) = self.class(class_name) else {
            self.claim_event(
                key,
                "Warning",
                "ProvisioningFailed",
                format!("storageclass.storage.k8s.io {class_name:?} not found"),
            );
            return;
        };
        let provisioner = class.provisioner.clone();
        if provisioner == NO_PROVISIONER {
            return;
        }
        if let Some(c) = self.claims.get(key) {
            let missing = [ANN_STORAGE_PROVISIONER, ANN_BETA_STORAGE_PROVISIONER]
                .iter()
                .any(|k| ann(&c.metadata, k) != Some(provisioner.as_str()));
            if missing {
                let p = provisioner.clone();
                self.edit_pvc(key, |c| {
                    set_ann(&mut c.metadata, ANN_STORAGE_PROVISIONER, &p);
                    set_ann(&mut c.metadata, ANN_BETA_STORAGE_PROVISIONER, &p);
                });
            }
        }
        if !is_local_path(&provisioner) {
            self.claim_event(
                key,
                "Normal",
                "ExternalProvisioning",
                format!(
                    "Waiting for a volume to be created either by the external provisioner '{provisioner}' or manually by the system administrator. If volume creation is delayed, please verify that the provisioner is running and correctly registered."
                ),
            );
            return;
        }
        self.provision_local_path(key, class, node);
    }

    fn provision_local_path(&mut self, key: &ClaimKey, class: &StorageClass, node: Option<&str>) {
        let Some(claim) = self.claims.get(key).cloned() else {
            return;
        };
        let name = format!("pvc-{}", uid_of(&claim.metadata));
        if self.volumes.contains_key(&name) {
            return;
        }
        let node = node.or(self.cfg.default_node).filter(|n| !n.is_empty());
        let failure = local_path_precheck(&claim, node);
        let class_name = name_of(&class.metadata).to_string();
        let (Some(node), None) = (node, failure.as_ref()) else {
            let why = failure.unwrap_or_default();
            self.claim_event(
                key,
                "Warning",
                "ProvisioningFailed",
                format!("failed to provision volume with StorageClass {class_name:?}: {why}"),
            );
            return;
        };
        let pv = local_path_volume(&claim, class, node, self.cfg.storage_dir);
        let (ns, cname) = key.clone();
        self.claim_event(
            key,
            "Normal",
            "Provisioning",
            format!("External provisioner is provisioning volume for claim \"{ns}/{cname}\""),
        );
        self.claim_event(
            key,
            "Normal",
            "ProvisioningSucceeded",
            format!("Successfully provisioned volume {name}"),
        );
        self.volumes.insert(name, pv.clone());
        self.created.push(pv);
    }

    // -- volumes -----------------------------------------------------------

    fn sync_volume(&mut self, name: &str) {
        let Some(pv) = self.volumes.get(name).cloned() else {
            return;
        };
        if pv.metadata.deletion_timestamp.is_some()
            || self.created.iter().any(|c| name_of(&c.metadata) == name)
        {
            return;
        }
        let Some(r) = claim_ref(&pv) else {
            self.set_pv_phase(name, "Available", None);
            return;
        };
        if r.uid.as_deref().unwrap_or("").is_empty() {
            self.set_pv_phase(name, "Available", None);
            return;
        }
        let key = (
            r.namespace.clone().unwrap_or_default(),
            r.name.clone().unwrap_or_default(),
        );
        let claim = self
            .claims
            .get(&key)
            .filter(|c| uid_of(&c.metadata) == r.uid.as_deref().unwrap_or(""))
            .cloned();
        let Some(claim) = claim else {
            self.release(name);
            return;
        };
        let claim_volume = claim
            .spec
            .as_ref()
            .and_then(|s| s.volume_name.as_deref())
            .unwrap_or("");
        if claim_volume.is_empty() {
            // Not bound yet: the claim side finishes the job.
        } else if claim_volume == name {
            self.set_pv_phase(name, "Bound", None);
        } else if ann(&pv.metadata, ANN_PROVISIONED_BY).is_some() && reclaim_policy(&pv) == "Delete"
        {
            self.release(name);
        } else {
            self.unbind(name);
        }
    }

    /// The claim is gone: mark Released and apply the reclaim policy.
    fn release(&mut self, name: &str) {
        let Some(pv) = self.volumes.get(name).cloned() else {
            return;
        };
        if !matches!(pv_phase(&pv), "Released" | "Failed") {
            self.set_pv_phase(name, "Released", None);
        }
        match reclaim_policy(&pv) {
            "Delete" => self.reclaim_delete(&pv),
            "Recycle" => {
                let msg = format!(
                    "error getting recycler volume plugin for volume {name:?}: no recyclable volume plugin matched"
                );
                self.fail_volume(name, "VolumeFailedRecycle", msg);
            }
            _ => {}
        }
    }

    fn reclaim_delete(&mut self, pv: &PersistentVolume) {
        let name = name_of(&pv.metadata).to_string();
        match ann(&pv.metadata, ANN_PROVISIONED_BY) {
            Some(p) if is_local_path(p) => {
                self.deleted.push((name, uid_of(&pv.metadata).to_string()));
            }
            // Another provisioner deletes its own volumes.
            Some(_) => {}
            None => {
                let msg = format!(
                    "error getting deleter volume plugin for volume {name:?}: no deletable volume plugin matched"
                );
                self.fail_volume(&name, "VolumeFailedDelete", msg);
            }
        }
    }

    fn fail_volume(&mut self, name: &str, reason: &str, message: String) {
        let already = self
            .volumes
            .get(name)
            .is_some_and(|v| pv_phase(v) == "Failed");
        if already {
            return;
        }
        self.set_pv_phase(name, "Failed", Some(message.clone()));
        self.volume_event(name, "Warning", reason, message);
    }

    /// The claim got bound elsewhere: free the volume again.
    fn unbind(&mut self, name: &str) {
        self.edit_pv(name, |v| {
            let by_controller = ann(&v.metadata, ANN_BOUND_BY_CONTROLLER).is_some();
            let spec = v.spec.get_or_insert_with(Default::default);
            if by_controller {
                spec.claim_ref = None;
                if let Some(a) = v.metadata.annotations.as_mut() {
                    a.remove(ANN_BOUND_BY_CONTROLLER);
                    if a.is_empty() {
                        v.metadata.annotations = None;
                    }
                }
            } else if let Some(r) = spec.claim_ref.as_mut() {
                r.uid = None;
            }
        });
        self.set_pv_phase(name, "Available", None);
    }
}

fn reclaim_policy(v: &PersistentVolume) -> &str {
    v.spec
        .as_ref()
        .and_then(|s| s.persistent_volume_reclaim_policy.as_deref())
        .unwrap_or("Retain")
}

/// Why local-path cannot provision this claim (None: it can).
fn local_path_precheck(claim: &PersistentVolumeClaim, node: Option<&str>) -> Option<String> {
    let spec = claim.spec.as_ref();
    if spec.is_some_and(|s| s.selector.is_some()) {
        return Some("claim.Spec.Selector is not supported".to_string());
    }
    let modes = claim_access_modes(claim);
    if modes
        .iter()
        .any(|m| m != "ReadWriteOnce" && m != "ReadWriteOncePod")
    {
        return Some(
            "NodePath only supports ReadWriteOnce and ReadWriteOncePod (1.22+) access modes"
                .to_string(),
        );
    }
    if claim_request(claim).is_none() {
        return Some("claim has no storage request".to_string());
    }
    if node.is_none() {
        return Some("configuration error, no node was specified".to_string());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PersistentVolumeClaimSpec, VolumeResourceRequirements};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};

    const UID: &str = "1111-2222";

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default()
    }

    fn q(s: &str) -> BTreeMap<String, Quantity> {
        [("storage".to_string(), Quantity(s.to_string()))]
            .into_iter()
            .collect()
    }

    fn modes(m: &[&str]) -> Option<Vec<String>> {
        Some(m.iter().map(|s| s.to_string()).collect())
    }

    fn pv(name: &str, cap: &str, class: &str, access: &[&str]) -> PersistentVolume {
        PersistentVolume {
            metadata: ObjectMeta {
                name: Some(name.into()),
                uid: Some(format!("uid-{name}")),
                ..Default::default()
            },
            spec: Some(PersistentVolumeSpec {
                capacity: Some(q(cap)),
                access_modes: modes(access),
                storage_class_name: (!class.is_empty()).then(|| class.to_string()),
                persistent_volume_reclaim_policy: Some("Retain".into()),
                host_path: Some(HostPathVolumeSource {
                    path: format!("/data/{name}"),
                    type_: None,
                }),
                ..Default::default()
            }),
            status: Some(PersistentVolumeStatus {
                phase: Some("Available".into()),
                ..Default::default()
            }),
        }
    }

    fn pvc(name: &str, req: &str, class: Option<&str>, access: &[&str]) -> PersistentVolumeClaim {
        PersistentVolumeClaim {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                uid: Some(format!("{UID}-{name}")),
                ..Default::default()
            },
            spec: Some(PersistentVolumeClaimSpec {
                access_modes: modes(access),
                resources: Some(VolumeResourceRequirements {
                    requests: Some(q(req)),
                    limits: None,
                }),
                storage_class_name: class.map(str::to_string),
                ..Default::default()
            }),
            status: Some(PersistentVolumeClaimStatus {
                phase: Some("Pending".into()),
                ..Default::default()
            }),
        }
    }

    fn class(name: &str, provisioner: &str, mode: &str) -> StorageClass {
        StorageClass {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            provisioner: provisioner.into(),
            volume_binding_mode: Some(mode.into()),
            reclaim_policy: Some("Delete".into()),
            ..Default::default()
        }
    }

    struct World {
        volumes: Vec<PersistentVolume>,
        claims: Vec<PersistentVolumeClaim>,
        classes: Vec<StorageClass>,
    }

    const CFG: Config<'static> = Config {
        storage_dir: "/var/lib/skiff/storage",
        default_node: Some("node-a"),
    };

    impl World {
        fn plan(&self) -> Vec<Action> {
            let nodes = BTreeMap::new();
            let snap = Snapshot {
                volumes: &self.volumes,
                claims: &self.claims,
                classes: &self.classes,
                node_labels: &nodes,
            };
            plan(&snap, &CFG, now())
        }

        /// Applies actions the way a shell would (the API server sets a
        /// created volume's phase to Pending).
        fn apply(&mut self, actions: &[Action]) {
            for a in actions {
                match a {
                    Action::CreatePv(v) => {
                        let mut v = v.clone();
                        v.metadata.uid = Some(format!("uid-{}", name_of(&v.metadata)));
                        v.status = Some(PersistentVolumeStatus {
                            phase: Some("Pending".into()),
                            ..Default::default()
                        });
                        self.volumes.push(v);
                    }
                    Action::UpdatePv { pv, .. } => {
                        for v in self.volumes.iter_mut() {
                            if v.metadata.name == pv.metadata.name {
                                *v = pv.clone();
                            }
                        }
                    }
                    Action::UpdatePvc { pvc, .. } => {
                        for c in self.claims.iter_mut() {
                            if c.metadata.name == pvc.metadata.name {
                                *c = pvc.clone();
                            }
                        }
                    }
                    Action::DeletePv { name, .. } => {
                        self.volumes.retain(|v| name_of(&v.metadata) != name);
                    }
                    Action::Event(_) => {}
                }
            }
        }

        /// Plans and applies until only events remain; returns every event.
        fn settle(&mut self) -> Vec<Event> {
            let mut events = Vec::new();
            for _ in 0..10 {
                let actions = self.plan();
                let writes = actions.iter().any(|a| !matches!(a, Action::Event(_)));
                for a in &actions {
                    if let Action::Event(e) = a {
                        events.push(e.clone());
                    }
                }
                self.apply(&actions);
                if !writes {
                    return events;
                }
            }
            panic!("did not settle");
        }

        fn claim(&self, name: &str) -> &PersistentVolumeClaim {
            self.claims
                .iter()
                .find(|c| name_of(&c.metadata) == name)
                .expect("claim")
        }

        fn volume(&self, name: &str) -> Option<&PersistentVolume> {
            self.volumes.iter().find(|v| name_of(&v.metadata) == name)
        }
    }

    fn bound_volume(w: &World, claim: &str) -> Option<String> {
        let c = w.claim(claim);
        if pvc_phase(c) != "Bound" {
            return None;
        }
        c.spec.as_ref()?.volume_name.clone()
    }

    fn pvc_phase(c: &PersistentVolumeClaim) -> &str {
        c.status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .unwrap_or("")
    }

    fn reasons(events: &[Event]) -> Vec<&str> {
        events.iter().map(|e| e.reason.as_str()).collect()
    }

    #[test]
    fn static_binding_table() {
        let rwo = &["ReadWriteOnce"][..];
        let labelled = |mut v: PersistentVolume| {
            v.metadata.labels = Some([("tier".to_string(), "gold".to_string())].into());
            v
        };
        let block = |mut v: PersistentVolume| {
            if let Some(s) = v.spec.as_mut() {
                s.volume_mode = Some("Block".into());
            }
            v
        };
        let with_selector = |mut c: PersistentVolumeClaim| {
            if let Some(s) = c.spec.as_mut() {
                s.selector = Some(LabelSelector {
                    match_labels: Some([("tier".to_string(), "gold".to_string())].into()),
                    ..Default::default()
                });
            }
            c
        };
        // (case, volumes, claim, expected volume)
        let cases: Vec<(
            &str,
            Vec<PersistentVolume>,
            PersistentVolumeClaim,
            Option<&str>,
        )> = vec![
            (
                "smallest fitting volume wins",
                vec![
                    pv("big", "10Gi", "", rwo),
                    pv("small", "2Gi", "", rwo),
                    pv("tiny", "500Mi", "", rwo),
                ],
                pvc("c", "1Gi", Some(""), rwo),
                Some("small"),
            ),
            (
                "empty class only matches classless volumes",
                vec![pv("fast", "2Gi", "fast", rwo)],
                pvc("c", "1Gi", Some(""), rwo),
                None,
            ),
            (
                "same class matches",
                vec![pv("fast", "2Gi", "fast", rwo), pv("plain", "1Gi", "", rwo)],
                pvc("c", "1Gi", Some("fast"), rwo),
                Some("fast"),
            ),
            (
                "access modes must be a superset",
                vec![
                    pv("rwo", "1Gi", "", rwo),
                    pv("both", "5Gi", "", &["ReadWriteOnce", "ReadWriteMany"]),
                ],
                pvc("c", "1Gi", Some(""), &["ReadWriteMany"]),
                Some("both"),
            ),
            (
                "fewest access modes preferred",
                vec![
                    pv("both", "1Gi", "", &["ReadWriteOnce", "ReadOnlyMany"]),
                    pv("rwo", "5Gi", "", rwo),
                ],
                pvc("c", "1Gi", Some(""), rwo),
                Some("rwo"),
            ),
            (
                "volume mode must match",
                vec![block(pv("blk", "1Gi", "", rwo))],
                pvc("c", "1Gi", Some(""), rwo),
                None,
            ),
            (
                "selector filters volumes",
                vec![
                    pv("plain", "1Gi", "", rwo),
                    labelled(pv("gold", "9Gi", "", rwo)),
                ],
                with_selector(pvc("c", "1Gi", Some(""), rwo)),
                Some("gold"),
            ),
            (
                "too small",
                vec![pv("tiny", "500Mi", "", rwo)],
                pvc("c", "1Gi", Some(""), rwo),
                None,
            ),
        ];
        for (name, volumes, claim, want) in cases {
            let mut w = World {
                volumes,
                claims: vec![claim],
                classes: vec![],
            };
            let events = w.settle();
            assert_eq!(bound_volume(&w, "c").as_deref(), want, "{name}");
            if let Some(v) = want {
                let v = w.volume(v).expect("volume");
                assert_eq!(pv_phase(v), "Bound", "{name}");
                assert_eq!(
                    ann(&v.metadata, ANN_BOUND_BY_CONTROLLER),
                    Some("yes"),
                    "{name}"
                );
                let c = w.claim("c");
                assert_eq!(ann(&c.metadata, ANN_BIND_COMPLETED), Some("yes"), "{name}");
                assert_eq!(
                    ann(&c.metadata, ANN_BOUND_BY_CONTROLLER),
                    Some("yes"),
                    "{name}"
                );
                let st = c.status.as_ref().expect("status");
                assert_eq!(
                    st.capacity,
                    v.spec.as_ref().and_then(|s| s.capacity.clone()),
                    "{name}"
                );
            } else {
                assert!(
                    reasons(&events).contains(&"FailedBinding"),
                    "{name}: {events:?}"
                );
                assert_eq!(pvc_phase(w.claim("c")), "Pending", "{name}");
            }
        }
    }

    #[test]
    fn one_volume_two_claims() {
        let rwo = &["ReadWriteOnce"][..];
        let mut w = World {
            volumes: vec![pv("only", "1Gi", "", rwo)],
            claims: vec![
                pvc("a", "1Gi", Some(""), rwo),
                pvc("b", "1Gi", Some(""), rwo),
            ],
            classes: vec![],
        };
        w.settle();
        let bound: Vec<_> = ["a", "b"]
            .iter()
            .filter_map(|c| bound_volume(&w, c))
            .collect();
        assert_eq!(bound, vec!["only".to_string()]);
    }

    #[test]
    fn binding_writes_volume_before_claim() {
        let rwo = &["ReadWriteOnce"][..];
        let w = World {
            volumes: vec![pv("v", "1Gi", "", rwo)],
            claims: vec![pvc("c", "1Gi", Some(""), rwo)],
            classes: vec![],
        };
        let actions = w.plan();
        assert!(matches!(
            &actions[0],
            Action::UpdatePv {
                spec: true,
                status: true,
                ..
            }
        ));
        assert!(matches!(
            &actions[1],
            Action::UpdatePvc {
                spec: true,
                status: true,
                ..
            }
        ));
        assert_eq!(actions.len(), 2);
    }

    #[test]
    fn wait_for_first_consumer_then_provision() {
        let rwo = &["ReadWriteOnce"][..];
        let mut w = World {
            volumes: vec![],
            claims: vec![pvc("data", "3Gi", None, rwo)],
            classes: vec![default_storage_class()],
        };
        let events = w.settle();
        assert_eq!(reasons(&events), vec!["WaitForFirstConsumer"]);
        assert_eq!(
            events[0].message,
            "waiting for first consumer to be created before binding"
        );
        let c = w.claim("data");
        assert_eq!(claim_class(c), Some("local-path"), "default class assigned");
        assert!(w.volumes.is_empty());

        // The scheduler picks a node.
        if let Some(c) = w.claims.first_mut() {
            set_ann(&mut c.metadata, ANN_SELECTED_NODE, "node-b");
        }
        let events = w.settle();
        let name = format!("pvc-{UID}-data");
        assert!(
            reasons(&events).contains(&"ProvisioningSucceeded"),
            "{events:?}"
        );
        assert!(
            events
                .iter()
                .any(|e| e.message == format!("Successfully provisioned volume {name}"))
        );
        assert_eq!(bound_volume(&w, "data"), Some(name.clone()));
        let v = w.volume(&name).expect("provisioned");
        let spec = v.spec.as_ref().expect("spec");
        let hp = spec.host_path.as_ref().expect("hostPath");
        assert_eq!(
            hp.path,
            format!("/var/lib/skiff/storage/{name}_default_data")
        );
        assert_eq!(hp.type_.as_deref(), Some("DirectoryOrCreate"));
        assert_eq!(spec.capacity, Some(q("3Gi")));
        assert_eq!(
            spec.persistent_volume_reclaim_policy.as_deref(),
            Some("Delete")
        );
        assert_eq!(spec.storage_class_name.as_deref(), Some("local-path"));
        assert!(node_affinity_admits(v, "node-b", &BTreeMap::new()));
        assert!(!node_affinity_admits(v, "node-a", &BTreeMap::new()));
        assert_eq!(
            ann(&v.metadata, ANN_PROVISIONED_BY),
            Some(PROVISIONER_LOCAL_PATH)
        );
        assert_eq!(
            ann(&v.metadata, ANN_BOUND_BY_CONTROLLER),
            None,
            "pre-bound by provisioner"
        );
        assert_eq!(pv_phase(v), "Bound");
        let c = w.claim("data");
        assert_eq!(
            ann(&c.metadata, ANN_STORAGE_PROVISIONER),
            Some(PROVISIONER_LOCAL_PATH)
        );
        assert_eq!(
            ann(&c.metadata, ANN_BETA_STORAGE_PROVISIONER),
            Some(PROVISIONER_LOCAL_PATH)
        );

        // Deleting the claim releases and deletes the volume.
        w.claims.clear();
        w.settle();
        assert!(w.volume(&name).is_none());
    }

    #[test]
    fn immediate_local_path_uses_default_node() {
        let rwo = &["ReadWriteOnce"][..];
        let mut w = World {
            volumes: vec![],
            claims: vec![pvc("c", "1Gi", Some("lp"), rwo)],
            classes: vec![class("lp", PROVISIONER_SKIFF_LOCAL_PATH, "Immediate")],
        };
        w.settle();
        let name = bound_volume(&w, "c").expect("bound");
        let v = w.volume(&name).expect("volume");
        assert!(node_affinity_admits(v, "node-a", &BTreeMap::new()));
    }

    #[test]
    fn provisioning_failures_table() {
        let cases: Vec<(&str, PersistentVolumeClaim, Vec<StorageClass>, &str, &str)> = vec![
            (
                "missing class",
                pvc("c", "1Gi", Some("nope"), &["ReadWriteOnce"]),
                vec![],
                "ProvisioningFailed",
                "storageclass.storage.k8s.io \"nope\" not found",
            ),
            (
                "rwx not supported",
                pvc("c", "1Gi", Some("lp"), &["ReadWriteMany"]),
                vec![class("lp", PROVISIONER_LOCAL_PATH, "Immediate")],
                "ProvisioningFailed",
                "failed to provision volume with StorageClass \"lp\": NodePath only supports ReadWriteOnce and ReadWriteOncePod (1.22+) access modes",
            ),
            (
                "external provisioner",
                pvc("c", "1Gi", Some("ebs"), &["ReadWriteOnce"]),
                vec![class("ebs", "ebs.csi.aws.com", "Immediate")],
                "ExternalProvisioning",
                "Waiting for a volume to be created either by the external provisioner 'ebs.csi.aws.com' or manually by the system administrator. If volume creation is delayed, please verify that the provisioner is running and correctly registered.",
            ),
        ];
        for (name, claim, classes, reason, message) in cases {
            let mut w = World {
                volumes: vec![],
                claims: vec![claim],
                classes,
            };
            let events = w.settle();
            assert!(
                events
                    .iter()
                    .any(|e| e.reason == reason && e.message == message),
                "{name}: {events:?}"
            );
            assert!(w.volumes.is_empty(), "{name}");
        }
    }

    #[test]
    fn release_table() {
        let rwo = &["ReadWriteOnce"][..];
        let bound = |policy: &str, provisioned: Option<&str>| {
            let mut v = pv("v", "1Gi", "", rwo);
            let c = pvc("gone", "1Gi", Some(""), rwo);
            if let Some(s) = v.spec.as_mut() {
                s.claim_ref = Some(claim_reference(&c));
                s.persistent_volume_reclaim_policy = Some(policy.into());
            }
            if let Some(p) = provisioned {
                set_ann(&mut v.metadata, ANN_PROVISIONED_BY, p);
            }
            v.status = Some(PersistentVolumeStatus {
                phase: Some("Bound".into()),
                ..Default::default()
            });
            v
        };
        // (case, volume, expected phase or None when deleted)
        let cases = vec![
            (
                "retain keeps the volume",
                bound("Retain", None),
                Some("Released"),
            ),
            (
                "delete local-path",
                bound("Delete", Some(PROVISIONER_LOCAL_PATH)),
                None,
            ),
            (
                "delete external",
                bound("Delete", Some("ebs.csi.aws.com")),
                Some("Released"),
            ),
            ("delete manual", bound("Delete", None), Some("Failed")),
        ];
        for (name, v, want) in cases {
            let mut w = World {
                volumes: vec![v],
                claims: vec![],
                classes: vec![],
            };
            w.settle();
            assert_eq!(w.volume("v").map(pv_phase), want, "{name}");
        }
    }

    #[test]
    fn lost_and_misbound_claims() {
        let rwo = &["ReadWriteOnce"][..];
        let mut c = pvc("c", "1Gi", Some(""), rwo);
        set_ann(&mut c.metadata, ANN_BIND_COMPLETED, "yes");
        if let Some(s) = c.spec.as_mut() {
            s.volume_name = Some("vanished".into());
        }
        c.status = Some(PersistentVolumeClaimStatus {
            phase: Some("Bound".into()),
            ..Default::default()
        });
        let mut w = World {
            volumes: vec![],
            claims: vec![c.clone()],
            classes: vec![],
        };
        let events = w.settle();
        assert_eq!(pvc_phase(w.claim("c")), "Lost");
        assert_eq!(reasons(&events), vec!["ClaimLost"]);
        assert!(w.settle().is_empty(), "event only on transition");

        let mut other = pv("vanished", "1Gi", "", rwo);
        if let Some(s) = other.spec.as_mut() {
            s.claim_ref = Some(claim_reference(&pvc("x", "1Gi", Some(""), rwo)));
        }
        let mut w = World {
            volumes: vec![other],
            claims: vec![c],
            classes: vec![],
        };
        let actions = w.plan();
        w.apply(&actions);
        assert_eq!(pvc_phase(w.claim("c")), "Lost");
        assert!(
            actions
                .iter()
                .any(|a| matches!(a, Action::Event(e) if e.reason == "ClaimMisbound"))
        );
    }

    #[test]
    fn prebound_claims_table() {
        let rwo = &["ReadWriteOnce"][..];
        let named = |volume: &str, req: &str| {
            let mut c = pvc("c", req, Some(""), rwo);
            if let Some(s) = c.spec.as_mut() {
                s.volume_name = Some(volume.into());
            }
            c
        };
        let mut taken = pv("taken", "5Gi", "", rwo);
        if let Some(s) = taken.spec.as_mut() {
            s.claim_ref = Some(claim_reference(&pvc("other", "1Gi", Some(""), rwo)));
        }
        // (case, volumes, claim, bound?, event message)
        let cases = vec![
            (
                "named volume binds",
                vec![pv("v", "1Gi", "", rwo)],
                named("v", "1Gi"),
                true,
                None,
            ),
            (
                "named volume too small",
                vec![pv("v", "1Gi", "", rwo)],
                named("v", "2Gi"),
                false,
                Some("Cannot bind to requested volume \"v\": requested PV is too small"),
            ),
            (
                "named volume taken",
                vec![taken],
                named("taken", "1Gi"),
                false,
                Some("volume \"taken\" already bound to a different claim."),
            ),
            (
                "named volume missing",
                vec![],
                named("nope", "1Gi"),
                false,
                None,
            ),
        ];
        for (name, volumes, claim, bound, message) in cases {
            let mut w = World {
                volumes,
                claims: vec![claim],
                classes: vec![],
            };
            let events = w.settle();
            assert_eq!(bound_volume(&w, "c").is_some(), bound, "{name}");
            if bound {
                let c = w.claim("c");
                assert_eq!(
                    ann(&c.metadata, ANN_BOUND_BY_CONTROLLER),
                    None,
                    "{name}: user chose the volume"
                );
            }
            if let Some(m) = message {
                assert!(events.iter().any(|e| e.message == m), "{name}: {events:?}");
            }
        }
    }

    #[test]
    fn volume_prebound_to_claim_and_unbinding() {
        let rwo = &["ReadWriteOnce"][..];
        // A user pre-binds a volume to a claim by name (no uid).
        let mut v = pv("mine", "9Gi", "", rwo);
        let mut r = claim_reference(&pvc("c", "1Gi", Some(""), rwo));
        r.uid = None;
        if let Some(s) = v.spec.as_mut() {
            s.claim_ref = Some(r);
        }
        let mut w = World {
            volumes: vec![v, pv("small", "1Gi", "", rwo)],
            claims: vec![pvc("c", "1Gi", Some(""), rwo)],
            classes: vec![],
        };
        w.settle();
        assert_eq!(bound_volume(&w, "c").as_deref(), Some("mine"));
        assert_eq!(w.volume("small").map(pv_phase), Some("Available"));

        // A controller-bound volume whose claim went to another volume is freed.
        let mut stray = pv("stray", "1Gi", "", rwo);
        let c = w.claim("c").clone();
        if let Some(s) = stray.spec.as_mut() {
            s.claim_ref = Some(claim_reference(&c));
        }
        set_ann(&mut stray.metadata, ANN_BOUND_BY_CONTROLLER, "yes");
        stray.status = Some(PersistentVolumeStatus {
            phase: Some("Bound".into()),
            last_phase_transition_time: Some(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH)),
            ..Default::default()
        });
        w.volumes.push(stray);
        w.settle();
        let s = w.volume("stray").expect("stray");
        assert_eq!(pv_phase(s), "Available");
        assert!(claim_ref(s).is_none());
        assert_eq!(ann(&s.metadata, ANN_BOUND_BY_CONTROLLER), None);
        assert_eq!(
            s.status
                .as_ref()
                .and_then(|st| st.last_phase_transition_time.clone()),
            Some(chrono_to_time(now()))
        );
    }

    #[test]
    fn default_class_object() {
        let sc = default_storage_class();
        assert!(is_default_class(&sc));
        assert_eq!(sc.provisioner, "rancher.io/local-path");
        assert_eq!(
            sc.volume_binding_mode.as_deref(),
            Some("WaitForFirstConsumer")
        );
        assert_eq!(sc.reclaim_policy.as_deref(), Some("Delete"));
    }
}
