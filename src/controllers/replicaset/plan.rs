//! Pure planning for the **ReplicaSet** (apps/v1) and **ReplicationController**
//! (v1) controllers (upstream `pkg/controller/replicaset`; the RC controller
//! upstream is the same code behind a conversion, and so it is here).
//!
//! Owns: the generic [`Owner`] view of either kind; pod adoption/release
//! ([`OwnerPatch`]); how many pods to create or which pods to delete (ranked
//! like upstream `ActivePodsWithRanks`); the computed [`Status`] (including
//! the `ReplicaFailure` condition); the event texts; the slow-start batch
//! sizes. (The per-owner expectations that keep a lagging cache from
//! causing double creates live in `controllers::expectations`.)
//!
//! Invariants:
//! - Only active pods (not terminal, not being deleted) of the owner's
//!   namespace are considered; pods controlled by someone else are never
//!   touched, pods being deleted are never adopted.
//! - An owner that is being deleted neither adopts, releases, creates nor
//!   deletes; only its status is computed.
//! - At most [`BURST_REPLICAS`] creates or deletes per sync.
//! - An empty selector selects nothing (upstream validation forbids it).
//!
//! Must not: do I/O, read clocks, or keep state between calls (the shell owns
//! the expectations).
//!
//! Shell usage: see `controllers::replicaset` (plan → adopt/release patches
//! → creates in [`slow_start_batches`] / deletes → [`record_manage_error`] on
//! failure → status write when changed → requeue after `requeue_after`).

use crate::controllers::podutil;
use chrono::{DateTime, Utc};
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetCondition, ReplicaSetStatus};
use k8s_openapi::api::core::v1::{
    Pod, PodTemplateSpec, ReplicationController, ReplicationControllerCondition,
    ReplicationControllerStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use serde_json::{Value, json};
use std::borrow::Borrow;
use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::time::Duration;

/// Most pods created or deleted in one sync (upstream `BurstReplicas`).
pub const BURST_REPLICAS: usize = 500;
/// Annotation whose integer value makes a pod cheaper (lower) to delete.
pub const POD_DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";
/// Status condition type set when creating/deleting pods failed.
pub const REPLICA_FAILURE: &str = "ReplicaFailure";

/// A status condition of either kind.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Condition {
    pub type_: String,
    pub status: String,
    pub reason: Option<String>,
    pub message: Option<String>,
    pub last_transition_time: Option<DateTime<Utc>>,
}

/// The kind-independent view of a ReplicaSet or ReplicationController.
#[derive(Clone, Debug)]
pub struct Owner<'a> {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub namespace: String,
    pub uid: String,
    /// `spec.replicas` (default 1).
    pub replicas: i32,
    pub selector: LabelSelector,
    /// `None` only for a template-less RC: nothing can be created.
    pub template: Option<&'a PodTemplateSpec>,
    pub min_ready_seconds: i32,
    pub generation: Option<i64>,
    /// `metadata.deletionTimestamp` is set.
    pub deleting: bool,
    /// Current `status.conditions`.
    pub conditions: Vec<Condition>,
}

impl<'a> Owner<'a> {
    /// View of an apps/v1 ReplicaSet.
    pub fn from_replica_set(rs: &'a ReplicaSet) -> Self {
        let spec = rs.spec.as_ref();
        let conditions = rs
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .map(|cs| cs.iter().map(rs_cond_to_generic).collect())
            .unwrap_or_default();
        Owner {
            api_version: "apps/v1".into(),
            kind: "ReplicaSet".into(),
            template: spec.and_then(|s| s.template.as_ref()),
            selector: spec.map(|s| s.selector.clone()).unwrap_or_default(),
            replicas: spec.and_then(|s| s.replicas).unwrap_or(1),
            min_ready_seconds: spec.and_then(|s| s.min_ready_seconds).unwrap_or(0),
            conditions,
            ..Self::base(&rs.metadata)
        }
    }

    /// View of a v1 ReplicationController (map selector; it defaults to the
    /// template labels when empty, as the API server would).
    pub fn from_replication_controller(rc: &'a ReplicationController) -> Self {
        let spec = rc.spec.as_ref();
        let template = spec.and_then(|s| s.template.as_ref());
        let mut sel = spec.and_then(|s| s.selector.clone()).unwrap_or_default();
        if sel.is_empty() {
            sel = template
                .and_then(|t| t.metadata.as_ref())
                .and_then(|m| m.labels.clone())
                .unwrap_or_default();
        }
        let conditions = rc
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .map(|cs| cs.iter().map(rc_cond_to_generic).collect())
            .unwrap_or_default();
        Owner {
            api_version: "v1".into(),
            kind: "ReplicationController".into(),
            template,
            selector: LabelSelector {
                match_labels: Some(sel),
                match_expressions: None,
            },
            replicas: spec.and_then(|s| s.replicas).unwrap_or(1),
            min_ready_seconds: spec.and_then(|s| s.min_ready_seconds).unwrap_or(0),
            conditions,
            ..Self::base(&rc.metadata)
        }
    }

    fn base(meta: &ObjectMeta) -> Self {
        Owner {
            api_version: String::new(),
            kind: String::new(),
            name: meta.name.clone().unwrap_or_default(),
            namespace: meta.namespace.clone().unwrap_or_default(),
            uid: meta.uid.clone().unwrap_or_default(),
            replicas: 1,
            selector: LabelSelector::default(),
            template: None,
            min_ready_seconds: 0,
            generation: meta.generation,
            deleting: meta.deletion_timestamp.is_some(),
            conditions: Vec::new(),
        }
    }

    /// Whether the owner's selector matches these labels (empty selects nothing).
    pub fn selects(&self, labels: Option<&BTreeMap<String, String>>) -> bool {
        let empty = self
            .selector
            .match_labels
            .as_ref()
            .is_none_or(|m| m.is_empty())
            && self
                .selector
                .match_expressions
                .as_ref()
                .is_none_or(|e| e.is_empty());
        let none = BTreeMap::new();
        !empty && podutil::selector_matches(&self.selector, labels.unwrap_or(&none))
    }
}

fn rs_cond_to_generic(c: &ReplicaSetCondition) -> Condition {
    Condition {
        type_: c.type_.clone(),
        status: c.status.clone(),
        reason: c.reason.clone(),
        message: c.message.clone(),
        last_transition_time: c.last_transition_time.as_ref().map(podutil::time_to_chrono),
    }
}

fn rc_cond_to_generic(c: &ReplicationControllerCondition) -> Condition {
    Condition {
        type_: c.type_.clone(),
        status: c.status.clone(),
        reason: c.reason.clone(),
        message: c.message.clone(),
        last_transition_time: c.last_transition_time.as_ref().map(podutil::time_to_chrono),
    }
}

/// The computed status, convertible to either kind's status.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Status {
    pub replicas: i32,
    pub fully_labeled_replicas: i32,
    pub ready_replicas: i32,
    pub available_replicas: i32,
    pub observed_generation: Option<i64>,
    pub conditions: Vec<Condition>,
}

impl Status {
    pub fn to_replica_set(&self) -> ReplicaSetStatus {
        let conds: Vec<ReplicaSetCondition> = self
            .conditions
            .iter()
            .map(|c| ReplicaSetCondition {
                type_: c.type_.clone(),
                status: c.status.clone(),
                reason: c.reason.clone(),
                message: c.message.clone(),
                last_transition_time: c.last_transition_time.map(podutil::chrono_to_time),
            })
            .collect();
        ReplicaSetStatus {
            replicas: self.replicas,
            fully_labeled_replicas: nonzero(self.fully_labeled_replicas),
            ready_replicas: nonzero(self.ready_replicas),
            available_replicas: nonzero(self.available_replicas),
            observed_generation: self.observed_generation.filter(|g| *g != 0),
            conditions: (!conds.is_empty()).then_some(conds),
            terminating_replicas: None,
        }
    }

    pub fn to_replication_controller(&self) -> ReplicationControllerStatus {
        let conds: Vec<ReplicationControllerCondition> = self
            .conditions
            .iter()
            .map(|c| ReplicationControllerCondition {
                type_: c.type_.clone(),
                status: c.status.clone(),
                reason: c.reason.clone(),
                message: c.message.clone(),
                last_transition_time: c.last_transition_time.map(podutil::chrono_to_time),
            })
            .collect();
        ReplicationControllerStatus {
            replicas: self.replicas,
            fully_labeled_replicas: nonzero(self.fully_labeled_replicas),
            ready_replicas: nonzero(self.ready_replicas),
            available_replicas: nonzero(self.available_replicas),
            observed_generation: self.observed_generation.filter(|g| *g != 0),
            conditions: (!conds.is_empty()).then_some(conds),
        }
    }
}

/// `Some(v)` unless zero: the wire form of Go's `omitempty` integers, so a
/// written status compares equal to what is read back.
fn nonzero(v: i32) -> Option<i32> {
    (v != 0).then_some(v)
}

/// A strategic-merge patch of one object's owner references (`uid` in the
/// body makes the API server reject it if the object was replaced).
#[derive(Clone, Debug, PartialEq)]
pub struct OwnerPatch {
    pub name: String,
    pub uid: String,
    pub patch: Value,
}

/// A pod to delete (send `preconditions.uid` with the delete).
#[derive(Clone, Debug, PartialEq)]
pub struct PodRef {
    pub name: String,
    pub uid: String,
}

/// An event to record on the owner.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub type_: &'static str,
    pub reason: &'static str,
    pub message: String,
}

/// What one sync should do.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    pub adopt: Vec<OwnerPatch>,
    pub release: Vec<OwnerPatch>,
    /// Pods to create (generateName set), at most [`BURST_REPLICAS`].
    pub create: Vec<Pod>,
    /// Pods to delete, best candidates first, at most [`BURST_REPLICAS`].
    pub delete: Vec<PodRef>,
    /// Active owned pods minus desired replicas (negative: too few).
    pub diff: i32,
    /// Status assuming creates/deletes succeed (see [`record_manage_error`]).
    pub status: Status,
    /// Resync then (a ready pod becomes available after `minReadySeconds`).
    pub requeue_after: Option<Duration>,
}

/// Plan one sync. `manage` is false while expectations are unsatisfied:
/// ownership and status are still computed, but nothing is created/deleted.
pub fn plan<P: Borrow<Pod>>(owner: &Owner, pods: &[P], now: DateTime<Utc>, manage: bool) -> Plan {
    let mut out = Plan::default();
    let mut owned: Vec<&Pod> = Vec::new();
    for pod in pods
        .iter()
        .map(|p| p.borrow())
        .filter(|p| in_scope(owner, p))
    {
        match claim(owner, pod) {
            Claim::Owned => owned.push(pod),
            Claim::Adopt => {
                let r =
                    podutil::owner_ref(&owner.api_version, &owner.kind, &owner.name, &owner.uid);
                out.adopt.push(adopt_patch(&pod.metadata, r));
                owned.push(pod);
            }
            Claim::Release => out.release.push(release_patch(&pod.metadata, &owner.uid)),
            Claim::Ignore => {}
        }
    }
    out.diff = owned.len() as i32 - owner.replicas.max(0);
    if manage && !owner.deleting {
        if out.diff < 0 {
            out.create = creates(owner, (-out.diff) as usize);
        } else if out.diff > 0 {
            let n = (out.diff as usize).min(BURST_REPLICAS);
            out.delete = pods_to_delete(&owned, n, now);
        }
    }
    out.status = compute_status(owner, &owned, now);
    out.requeue_after = availability_requeue(owner, &owned, now);
    out
}

fn in_scope(owner: &Owner, pod: &Pod) -> bool {
    let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
    (ns.is_empty() || owner.namespace.is_empty() || ns == owner.namespace)
        && podutil::is_active(pod)
}

enum Claim {
    Owned,
    Adopt,
    Release,
    Ignore,
}

/// Upstream `ClaimObject` for one active pod.
fn claim(owner: &Owner, pod: &Pod) -> Claim {
    let matches = owner.selects(pod.metadata.labels.as_ref());
    match podutil::controller_ref(&pod.metadata) {
        Some(r) if r.uid != owner.uid => Claim::Ignore,
        Some(_) if matches => Claim::Owned,
        Some(_) if owner.deleting => Claim::Ignore,
        Some(_) => Claim::Release,
        None if matches && !owner.deleting => Claim::Adopt,
        None => Claim::Ignore,
    }
}

/// Strategic-merge patch adding controller reference `r` to an object.
pub fn adopt_patch(meta: &ObjectMeta, r: OwnerReference) -> OwnerPatch {
    let uid = meta.uid.clone().unwrap_or_default();
    OwnerPatch {
        name: meta.name.clone().unwrap_or_default(),
        patch: json!({"metadata": {"ownerReferences": [r], "uid": uid}}),
        uid,
    }
}

/// Strategic-merge patch removing the owner reference with `owner_uid`.
pub fn release_patch(meta: &ObjectMeta, owner_uid: &str) -> OwnerPatch {
    let uid = meta.uid.clone().unwrap_or_default();
    OwnerPatch {
        name: meta.name.clone().unwrap_or_default(),
        patch: json!({"metadata": {
            "ownerReferences": [{"$patch": "delete", "uid": owner_uid}],
            "uid": uid,
        }}),
        uid,
    }
}

fn creates(owner: &Owner, n: usize) -> Vec<Pod> {
    let Some(t) = owner.template else {
        return Vec::new();
    };
    let pod = pod_from_template(owner, t);
    vec![pod; n.min(BURST_REPLICAS)]
}

/// The pod a template stamps out (upstream `GetPodFromTemplate`).
pub fn pod_from_template(owner: &Owner, t: &PodTemplateSpec) -> Pod {
    let tm = t.metadata.clone().unwrap_or_default();
    let prefix = if owner.name.len() < 253 {
        format!("{}-", owner.name)
    } else {
        owner.name.clone()
    };
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(prefix),
            namespace: (!owner.namespace.is_empty()).then(|| owner.namespace.clone()),
            labels: tm.labels,
            annotations: tm.annotations,
            finalizers: tm.finalizers,
            owner_references: Some(vec![podutil::owner_ref(
                &owner.api_version,
                &owner.kind,
                &owner.name,
                &owner.uid,
            )]),
            ..Default::default()
        },
        spec: t.spec.clone(),
        status: None,
    }
}

/// Upstream `slowStartBatch` sizes: 1, 2, 4, … summing to `n`.
pub fn slow_start_batches(n: usize) -> Vec<usize> {
    let mut out = Vec::new();
    let (mut left, mut size) = (n, 1usize);
    while left > 0 {
        let b = size.min(left);
        out.push(b);
        left -= b;
        size = size.saturating_mul(2);
    }
    out
}

/// The `n` pods to delete first, ranked like upstream `ActivePodsWithRanks`
/// (rank = number of the owner's pods on the same node).
pub fn pods_to_delete(owned: &[&Pod], n: usize, now: DateTime<Utc>) -> Vec<PodRef> {
    let mut per_node: BTreeMap<&str, i32> = BTreeMap::new();
    for p in owned {
        *per_node.entry(node_name(p)).or_default() += 1;
    }
    let mut ranked: Vec<(&Pod, i32)> = owned
        .iter()
        .map(|p| (*p, per_node.get(node_name(p)).copied().unwrap_or(0)))
        .collect();
    ranked.sort_by(|a, b| compare_for_deletion(a, b, now));
    ranked
        .into_iter()
        .take(n)
        .map(|(p, _)| PodRef {
            name: p.metadata.name.clone().unwrap_or_default(),
            uid: p.metadata.uid.clone().unwrap_or_default(),
        })
        .collect()
}

fn node_name(p: &Pod) -> &str {
    p.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or_default()
}

fn phase_ordinal(p: &Pod) -> u8 {
    match p.status.as_ref().and_then(|s| s.phase.as_deref()) {
        Some("Unknown") => 1,
        Some("Running") => 2,
        _ => 0,
    }
}

fn deletion_cost(p: &Pod) -> i32 {
    p.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(POD_DELETION_COST))
        .and_then(|v| v.parse::<i32>().ok())
        .unwrap_or(0)
}

fn max_restarts(p: &Pod) -> (i32, i32) {
    let st = p.status.as_ref();
    let max = |v: Option<&Vec<k8s_openapi::api::core::v1::ContainerStatus>>| {
        v.into_iter()
            .flatten()
            .map(|c| c.restart_count)
            .max()
            .unwrap_or(0)
    };
    (
        max(st.and_then(|s| s.container_statuses.as_ref())),
        max(st.and_then(|s| s.init_container_statuses.as_ref())),
    )
}

/// `Less` of upstream `ActivePodsWithRanks`: Less sorts first = deleted first.
fn compare_for_deletion(a: &(&Pod, i32), b: &(&Pod, i32), now: DateTime<Utc>) -> Ordering {
    let (pa, pb) = (a.0, b.0);
    let (na, nb) = (node_name(pa), node_name(pb));
    if na != nb && (na.is_empty() || nb.is_empty()) {
        return nb.is_empty().cmp(&na.is_empty());
    }
    let ready = (podutil::ready_since(pa), podutil::ready_since(pb));
    let ord = phase_ordinal(pa)
        .cmp(&phase_ordinal(pb))
        .then(ready.0.is_some().cmp(&ready.1.is_some()))
        .then(deletion_cost(pa).cmp(&deletion_cost(pb)))
        .then(b.1.cmp(&a.1));
    if ord != Ordering::Equal {
        return ord;
    }
    if let (Some(ra), Some(rb)) = ready
        && ra != rb
    {
        return newer_first(ra, rb, now, pa, pb);
    }
    let (rsa, rsb) = (max_restarts(pa), max_restarts(pb));
    if rsa != rsb {
        return rsb.cmp(&rsa);
    }
    match (creation(pa), creation(pb)) {
        (Some(ca), Some(cb)) if ca != cb => newer_first(ca, cb, now, pa, pb),
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        _ => Ordering::Equal,
    }
}

fn creation(p: &Pod) -> Option<DateTime<Utc>> {
    p.metadata
        .creation_timestamp
        .as_ref()
        .map(podutil::time_to_chrono)
}

/// Newer first, compared on a log2 scale of age (upstream
/// `LogarithmicScaleDown`); same bucket → by UID.
fn newer_first(
    ta: DateTime<Utc>,
    tb: DateTime<Utc>,
    now: DateTime<Utc>,
    pa: &Pod,
    pb: &Pod,
) -> Ordering {
    let bucket = |t: DateTime<Utc>| -> i64 {
        let d = (now - t).num_nanoseconds().unwrap_or(i64::MAX);
        if d > 0 { (d as f64).log2() as i64 } else { -1 }
    };
    match bucket(ta).cmp(&bucket(tb)) {
        Ordering::Equal => pa.metadata.uid.cmp(&pb.metadata.uid),
        o => o,
    }
}

/// Status from the owned active pods (upstream `calculateStatus`), with any
/// `ReplicaFailure` condition cleared (no error assumed).
pub fn compute_status(owner: &Owner, owned: &[&Pod], now: DateTime<Utc>) -> Status {
    let tmpl_labels = owner
        .template
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let mut st = Status {
        replicas: owned.len() as i32,
        observed_generation: owner.generation,
        conditions: owner
            .conditions
            .iter()
            .filter(|c| c.type_ != REPLICA_FAILURE)
            .cloned()
            .collect(),
        ..Default::default()
    };
    for p in owned {
        let labels = p.metadata.labels.as_ref();
        if tmpl_labels
            .iter()
            .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
        {
            st.fully_labeled_replicas += 1;
        }
        if podutil::is_ready(p) {
            st.ready_replicas += 1;
            if podutil::is_available(p, owner.min_ready_seconds, now) {
                st.available_replicas += 1;
            }
        }
    }
    st
}

/// Mark a failed create/delete in `status` (upstream keeps an existing
/// `ReplicaFailure` condition untouched). `diff` is [`Plan::diff`], `err` the
/// API error text.
pub fn record_manage_error(
    owner: &Owner,
    status: &mut Status,
    diff: i32,
    err: &str,
    now: DateTime<Utc>,
) {
    status.conditions.retain(|c| c.type_ != REPLICA_FAILURE);
    if let Some(c) = owner.conditions.iter().find(|c| c.type_ == REPLICA_FAILURE) {
        status.conditions.push(c.clone());
        return;
    }
    let reason = match diff.cmp(&0) {
        Ordering::Less => "FailedCreate",
        Ordering::Greater => "FailedDelete",
        Ordering::Equal => "",
    };
    status.conditions.push(Condition {
        type_: REPLICA_FAILURE.into(),
        status: "True".into(),
        reason: Some(reason.into()),
        message: Some(err.into()),
        last_transition_time: Some(now),
    });
}

fn availability_requeue(owner: &Owner, owned: &[&Pod], now: DateTime<Utc>) -> Option<Duration> {
    if owner.min_ready_seconds <= 0 {
        return None;
    }
    let mrs = chrono::Duration::seconds(owner.min_ready_seconds as i64);
    owned
        .iter()
        .filter(|p| !podutil::is_available(p, owner.min_ready_seconds, now))
        .filter_map(|p| podutil::ready_since(p))
        .map(|t| (t + mrs - now).num_milliseconds().max(1000) as u64)
        .min()
        .map(Duration::from_millis)
}

/// `SuccessfulCreate` event for a created pod.
pub fn event_created(pod: &str) -> Event {
    normal("SuccessfulCreate", format!("Created pod: {pod}"))
}

/// `FailedCreate` warning for a failed create (`err` is the API error text).
pub fn event_create_failed(err: &str) -> Event {
    warning("FailedCreate", format!("Error creating: {err}"))
}

/// `SuccessfulDelete` event for a deleted pod.
pub fn event_deleted(pod: &str) -> Event {
    normal("SuccessfulDelete", format!("Deleted pod: {pod}"))
}

/// `FailedDelete` warning for a failed delete.
pub fn event_delete_failed(err: &str) -> Event {
    warning("FailedDelete", format!("Error deleting: {err}"))
}

fn normal(reason: &'static str, message: String) -> Event {
    Event {
        type_: "Normal",
        reason,
        message,
    }
}

fn warning(reason: &'static str, message: String) -> Event {
    Event {
        type_: "Warning",
        reason,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    const NO_PODS: &[Pod] = &[];
    use k8s_openapi::api::apps::v1::ReplicaSetSpec;
    use k8s_openapi::api::core::v1::{
        ContainerStatus, PodCondition, PodSpec, PodStatus, ReplicationControllerSpec,
    };

    fn t0() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2024-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn labels(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn rs(replicas: i32) -> ReplicaSet {
        ReplicaSet {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("ns".into()),
                uid: Some("rs-uid".into()),
                generation: Some(3),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(replicas),
                selector: LabelSelector {
                    match_labels: Some(labels(&[("app", "web")])),
                    ..Default::default()
                },
                template: Some(PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(labels(&[("app", "web"), ("tier", "fe")])),
                        annotations: Some(labels(&[("a", "b")])),
                        ..Default::default()
                    }),
                    spec: Some(PodSpec::default()),
                }),
                ..Default::default()
            }),
            status: None,
        }
    }

    struct P {
        name: &'static str,
        labels: &'static [(&'static str, &'static str)],
        owner: Option<&'static str>,
        node: &'static str,
        phase: &'static str,
        ready_ago: Option<i64>,
        created_ago: i64,
        restarts: i32,
    }

    const BASE: P = P {
        name: "p",
        labels: &[("app", "web"), ("tier", "fe")],
        owner: Some("rs-uid"),
        node: "n1",
        phase: "Running",
        ready_ago: Some(1000),
        created_ago: 2000,
        restarts: 0,
    };

    fn pod(p: P) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(p.name.into()),
                namespace: Some("ns".into()),
                uid: Some(format!("uid-{}", p.name)),
                labels: Some(labels(p.labels)),
                creation_timestamp: Some(podutil::chrono_to_time(
                    t0() - chrono::Duration::seconds(p.created_ago),
                )),
                owner_references: p.owner.map(|u| {
                    vec![OwnerReference {
                        uid: u.into(),
                        controller: Some(true),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: (!p.node.is_empty()).then(|| p.node.into()),
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: Some(p.phase.into()),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if p.ready_ago.is_some() {
                        "True"
                    } else {
                        "False"
                    }
                    .into(),
                    last_transition_time: p
                        .ready_ago
                        .map(|s| podutil::chrono_to_time(t0() - chrono::Duration::seconds(s))),
                    ..Default::default()
                }]),
                container_statuses: Some(vec![ContainerStatus {
                    restart_count: p.restarts,
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn claims_adopts_and_releases() {
        let r = rs(3);
        let pods = vec![
            pod(P {
                name: "mine",
                ..BASE
            }),
            pod(P {
                name: "orphan",
                owner: None,
                ..BASE
            }),
            pod(P {
                name: "other",
                owner: Some("x"),
                ..BASE
            }),
            pod(P {
                name: "stray",
                labels: &[("app", "db")],
                ..BASE
            }),
            pod(P {
                name: "foreign-orphan",
                labels: &[("app", "db")],
                owner: None,
                ..BASE
            }),
            pod(P {
                name: "done",
                phase: "Succeeded",
                owner: None,
                ..BASE
            }),
        ];
        let p = plan(&Owner::from_replica_set(&r), &pods, t0(), true);
        let names = |v: &[OwnerPatch]| v.iter().map(|x| x.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(&p.adopt), ["orphan"]);
        assert_eq!(names(&p.release), ["stray"]);
        assert_eq!(
            p.adopt[0].patch["metadata"]["ownerReferences"][0]["uid"],
            "rs-uid"
        );
        assert_eq!(p.adopt[0].patch["metadata"]["uid"], "uid-orphan");
        assert_eq!(
            p.release[0].patch["metadata"]["ownerReferences"][0]["$patch"],
            "delete"
        );
        assert_eq!(p.diff, -1);
        assert_eq!(p.create.len(), 1);
        assert_eq!(p.status.replicas, 2);
    }

    #[test]
    fn deleting_owner_only_computes_status() {
        let mut r = rs(0);
        r.metadata.deletion_timestamp = Some(podutil::chrono_to_time(t0()));
        let pods = vec![
            pod(P {
                name: "orphan",
                owner: None,
                ..BASE
            }),
            pod(P {
                name: "stray",
                labels: &[("app", "db")],
                ..BASE
            }),
            pod(P {
                name: "mine",
                ..BASE
            }),
        ];
        let p = plan(&Owner::from_replica_set(&r), &pods, t0(), true);
        assert!(p.adopt.is_empty() && p.release.is_empty() && p.delete.is_empty());
        assert_eq!(p.status.replicas, 1);
    }

    #[test]
    fn creates_from_template_capped_and_only_when_managing() {
        let r = rs(600);
        let o = Owner::from_replica_set(&r);
        let p = plan(&o, NO_PODS, t0(), true);
        assert_eq!(p.create.len(), BURST_REPLICAS);
        let c = &p.create[0];
        assert_eq!(c.metadata.generate_name.as_deref(), Some("web-"));
        assert_eq!(c.metadata.namespace.as_deref(), Some("ns"));
        assert_eq!(c.metadata.labels.as_ref().unwrap()["tier"], "fe");
        assert_eq!(c.metadata.annotations.as_ref().unwrap()["a"], "b");
        let or = &c.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (or.kind.as_str(), or.controller),
            ("ReplicaSet", Some(true))
        );
        assert!(plan(&o, NO_PODS, t0(), false).create.is_empty());
    }

    #[test]
    fn slow_start() {
        let cases: &[(usize, &[usize])] = &[
            (0, &[]),
            (1, &[1]),
            (3, &[1, 2]),
            (10, &[1, 2, 4, 3]),
            (15, &[1, 2, 4, 8]),
        ];
        for (n, want) in cases {
            assert_eq!(slow_start_batches(*n), *want, "n={n}");
        }
    }

    #[test]
    fn deletion_ranking_table() {
        // (description, pods preferred for deletion first → last)
        let cases: Vec<(&str, Vec<Pod>)> = vec![
            (
                "unassigned first",
                vec![
                    pod(P {
                        name: "a",
                        node: "",
                        ..BASE
                    }),
                    pod(P { name: "b", ..BASE }),
                ],
            ),
            (
                "pending < unknown < running",
                vec![
                    pod(P {
                        name: "a",
                        phase: "Pending",
                        ..BASE
                    }),
                    pod(P {
                        name: "b",
                        phase: "Unknown",
                        node: "n2",
                        ..BASE
                    }),
                    pod(P {
                        name: "c",
                        node: "n3",
                        ..BASE
                    }),
                ],
            ),
            (
                "not ready first",
                vec![
                    pod(P {
                        name: "a",
                        ready_ago: None,
                        node: "n2",
                        ..BASE
                    }),
                    pod(P { name: "b", ..BASE }),
                ],
            ),
            (
                "doubled-up node first",
                vec![
                    pod(P {
                        name: "a",
                        node: "n2",
                        ready_ago: Some(10),
                        ..BASE
                    }),
                    pod(P {
                        name: "b",
                        node: "n2",
                        ..BASE
                    }),
                    pod(P {
                        name: "c",
                        node: "n1",
                        ready_ago: Some(5),
                        ..BASE
                    }),
                ],
            ),
            (
                "recently ready first",
                vec![
                    pod(P {
                        name: "a",
                        ready_ago: Some(10),
                        node: "n2",
                        ..BASE
                    }),
                    pod(P {
                        name: "b",
                        ready_ago: Some(10_000),
                        ..BASE
                    }),
                ],
            ),
            (
                "more restarts first",
                vec![
                    pod(P {
                        name: "a",
                        restarts: 5,
                        node: "n2",
                        ..BASE
                    }),
                    pod(P { name: "b", ..BASE }),
                ],
            ),
            (
                "newer first",
                vec![
                    pod(P {
                        name: "a",
                        created_ago: 10,
                        node: "n2",
                        ..BASE
                    }),
                    pod(P {
                        name: "b",
                        created_ago: 100_000,
                        ..BASE
                    }),
                ],
            ),
        ];
        for (what, pods) in cases {
            let want: Vec<String> = pods
                .iter()
                .map(|p| p.metadata.name.clone().unwrap())
                .collect();
            let mut rev: Vec<&Pod> = pods.iter().collect();
            rev.reverse();
            let got: Vec<String> = pods_to_delete(&rev, pods.len(), t0())
                .into_iter()
                .map(|r| r.name)
                .collect();
            assert_eq!(got, want, "{what}");
        }
    }

    #[test]
    fn deletes_surplus_worst_first() {
        let r = rs(1);
        let pods = vec![
            pod(P {
                name: "good",
                ..BASE
            }),
            pod(P {
                name: "pending",
                phase: "Pending",
                ready_ago: None,
                node: "n2",
                ..BASE
            }),
        ];
        let p = plan(&Owner::from_replica_set(&r), &pods, t0(), true);
        assert_eq!(p.diff, 1);
        assert_eq!(
            p.delete,
            vec![PodRef {
                name: "pending".into(),
                uid: "uid-pending".into()
            }]
        );
    }

    #[test]
    fn status_counts_and_requeue() {
        let mut r = rs(3);
        r.spec.as_mut().unwrap().min_ready_seconds = Some(30);
        let pods = vec![
            pod(P {
                name: "avail",
                ready_ago: Some(100),
                ..BASE
            }),
            pod(P {
                name: "young",
                ready_ago: Some(10),
                ..BASE
            }),
            pod(P {
                name: "notready",
                ready_ago: None,
                labels: &[("app", "web")],
                ..BASE
            }),
        ];
        let p = plan(&Owner::from_replica_set(&r), &pods, t0(), true);
        let s = &p.status;
        assert_eq!(
            (
                s.replicas,
                s.fully_labeled_replicas,
                s.ready_replicas,
                s.available_replicas
            ),
            (3, 2, 2, 1)
        );
        assert_eq!(s.observed_generation, Some(3));
        assert_eq!(p.requeue_after, Some(Duration::from_secs(20)));
        let rss = s.to_replica_set();
        assert_eq!(rss.available_replicas, Some(1));
        assert_eq!(
            Status::default().to_replica_set(),
            ReplicaSetStatus::default()
        );
    }

    #[test]
    fn replica_failure_condition() {
        let r = rs(2);
        let o = Owner::from_replica_set(&r);
        let mut p = plan(&o, NO_PODS, t0(), true);
        record_manage_error(
            &o,
            &mut p.status,
            p.diff,
            "pods \"web-x\" is forbidden: quota",
            t0(),
        );
        let c = &p.status.conditions[0];
        assert_eq!(c.type_, "ReplicaFailure");
        assert_eq!(c.reason.as_deref(), Some("FailedCreate"));
        assert_eq!(
            c.message.as_deref(),
            Some("pods \"web-x\" is forbidden: quota")
        );
        // The next successful sync clears it.
        let mut r2 = r.clone();
        r2.status = Some(p.status.to_replica_set());
        let o2 = Owner::from_replica_set(&r2);
        assert_eq!(o2.conditions.len(), 1);
        assert!(plan(&o2, NO_PODS, t0(), true).status.conditions.is_empty());
    }

    #[test]
    fn replication_controller_view() {
        let rc = ReplicationController {
            metadata: ObjectMeta {
                name: Some("rc".into()),
                uid: Some("rc-uid".into()),
                ..Default::default()
            },
            spec: Some(ReplicationControllerSpec {
                replicas: Some(2),
                selector: None,
                template: rs(1).spec.unwrap().template,
                ..Default::default()
            }),
            status: None,
        };
        let o = Owner::from_replication_controller(&rc);
        assert_eq!(
            (o.api_version.as_str(), o.kind.as_str()),
            ("v1", "ReplicationController")
        );
        let pods = vec![pod(P {
            name: "orphan",
            owner: None,
            ..BASE
        })];
        let p = plan(&o, &pods, t0(), true);
        assert_eq!(p.adopt.len(), 1);
        assert_eq!(p.create.len(), 1);
        assert_eq!(p.status.to_replication_controller().replicas, 1);
        let empty = ReplicationController::default();
        let o = Owner::from_replication_controller(&empty);
        assert!(!o.selects(Some(&labels(&[("a", "b")]))));
        assert!(plan(&o, &pods, t0(), true).create.is_empty());
    }

    #[test]
    fn events_read_like_upstream() {
        assert_eq!(event_created("web-abc").message, "Created pod: web-abc");
        assert_eq!(event_deleted("web-abc").message, "Deleted pod: web-abc");
        let e = event_create_failed("boom");
        assert_eq!(
            (e.type_, e.reason, e.message.as_str()),
            ("Warning", "FailedCreate", "Error creating: boom")
        );
    }
}
