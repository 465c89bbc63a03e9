//! One reconcile step of the StatefulSet controller as pure logic (upstream
//! `pkg/controller/statefulset`: `stateful_set_control.go`,
//! `stateful_set_utils.go`, `stateful_pod_control.go`).
//!
//! Owns: the update revision (via `controllers::history`), which pods and
//! PersistentVolumeClaims to create or delete and in which order
//! (OrderedReady or Parallel, scale-down from the highest ordinal, rolling
//! update above the partition one pod at a time, OnDelete), claim owner
//! references for `persistentVolumeClaimRetentionPolicy`, pod identity
//! labels, the resulting status, history truncation and the events upstream
//! records.
//!
//! Invariants: actions are ordered and a later one may rely on an earlier
//! one (a claim is created before its pod, a success event follows its
//! action): the shell applies them in order and stops at the first failure.
//! In OrderedReady mode at most one pod is created or deleted per step.
//! A pod deleted in this step is treated as terminating for the rest of it.
//!
//! Must not: do I/O, read clocks (`now` is an input), or panic on odd input.

use crate::controllers::history::{self, Owner, REVISION_HASH_LABEL, RevisionChange};
use crate::controllers::podutil;
use chrono::{DateTime, Duration, Utc};
use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, PodTemplateSpec, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use std::collections::{BTreeMap, BTreeSet};

/// Label with the pod's own name (lets a Service select one replica).
pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
/// Label with the pod's ordinal.
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";

const SET_API_VERSION: &str = "apps/v1";
const SET_KIND: &str = "StatefulSet";

/// A snapshot of everything one step needs.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    pub set: &'a StatefulSet,
    /// Pods controlled by the set (controllerRef = the set); others ignored.
    pub pods: &'a [Pod],
    /// PVCs of the set's namespace by name (at least `<template>-<set>-<n>`).
    pub claims: &'a BTreeMap<String, PersistentVolumeClaim>,
    /// ControllerRevisions controlled by the set.
    pub revisions: &'a [ControllerRevision],
    pub now: DateTime<Utc>,
}

/// An event to record on the StatefulSet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// `Normal` or `Warning`.
    pub type_: String,
    pub reason: String,
    pub message: String,
}

impl Event {
    fn new(type_: &str, reason: &str, message: String) -> Event {
        Event {
            type_: type_.into(),
            reason: reason.into(),
            message,
        }
    }
}

/// One API call (or event) for the shell, in the set's namespace.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Create this ControllerRevision. On AlreadyExists, bump
    /// `status.collisionCount` by one and requeue.
    CreateRevision(Box<ControllerRevision>),
    /// Set `revision` of an existing ControllerRevision (rollback reuse).
    RenumberRevision {
        name: String,
        revision: i64,
    },
    /// Create a claim for `pod`.
    CreateClaim {
        claim: Box<PersistentVolumeClaim>,
        pod: String,
    },
    /// Replace `metadata.ownerReferences` of claim `claim` (belongs to `pod`).
    SetClaimOwners {
        claim: String,
        pod: String,
        owner_references: Vec<OwnerReference>,
    },
    CreatePod(Box<Pod>),
    /// Merge these labels into pod `pod` (identity repair).
    SetPodLabels {
        pod: String,
        labels: BTreeMap<String, String>,
    },
    /// Delete a pod (with `uid` as precondition when known).
    DeletePod {
        name: String,
        uid: Option<String>,
    },
    DeleteRevision {
        name: String,
    },
    Event(Event),
}

/// The outcome of one step.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub actions: Vec<Action>,
    /// The status to write (also after a failed action).
    pub status: StatefulSetStatus,
    /// Reconcile again after this long even without watch events (a ready
    /// pod becomes available once minReadySeconds have passed).
    pub requeue_after: Option<Duration>,
}

/// The `Warning` event upstream records when applying `action` failed.
pub fn failure_event(set_name: &str, action: &Action, error: &str) -> Option<Event> {
    let pod_event = |verb: &str, reason: &str, pod: &str| {
        Event::new(
            "Warning",
            reason,
            format!("{verb} Pod {pod} in StatefulSet {set_name} failed error: {error}"),
        )
    };
    match action {
        Action::CreatePod(p) => Some(pod_event("create", "FailedCreate", name_of(&p.metadata))),
        Action::DeletePod { name, .. } => Some(pod_event("delete", "FailedDelete", name)),
        Action::SetPodLabels { pod, .. } | Action::SetClaimOwners { pod, .. } => {
            Some(pod_event("update", "FailedUpdate", pod))
        }
        Action::CreateClaim { claim, pod } => Some(Event::new(
            "Warning",
            "FailedCreate",
            format!(
                "create Claim {} for Pod {pod} in StatefulSet {set_name} failed error: {error}",
                name_of(&claim.metadata)
            ),
        )),
        _ => None,
    }
}

fn name_of(meta: &ObjectMeta) -> &str {
    meta.name.as_deref().unwrap_or_default()
}

/// The ordinal of a pod named `<set>-<n>` (None for other names).
pub fn ordinal_of(set_name: &str, pod_name: &str) -> Option<i32> {
    let (parent, digits) = pod_name.rsplit_once('-')?;
    if parent != set_name || digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or_default()
}

fn terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

fn pod_revision(pod: &Pod) -> &str {
    pod.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(REVISION_HASH_LABEL))
        .map(String::as_str)
        .unwrap_or_default()
}

/// Per-step context: the set's settings and the actions so far.
struct Ctx<'a> {
    input: &'a Input<'a>,
    name: &'a str,
    namespace: Option<&'a str>,
    uid: &'a str,
    start: i32,
    min_ready: i32,
    monotonic: bool,
    scaled_delete: bool,
    deleted_delete: bool,
    current_name: String,
    update_name: String,
    current_tpl: PodTemplateSpec,
    update_tpl: PodTemplateSpec,
    actions: Vec<Action>,
    deleted: BTreeSet<String>,
}

/// A replica slot: an existing pod or an ordinal with no pod.
#[derive(Clone, Copy)]
enum Slot<'a> {
    Live(&'a Pod),
    Missing(i32),
}

impl<'a> Ctx<'a> {
    fn event(&mut self, reason: &str, message: String) {
        self.actions
            .push(Action::Event(Event::new("Normal", reason, message)));
    }

    fn running_ready(&self, pod: &Pod) -> bool {
        phase(pod) == "Running" && podutil::is_ready(pod)
    }

    fn running_available(&self, pod: &Pod) -> bool {
        phase(pod) == "Running" && podutil::is_available(pod, self.min_ready, self.input.now)
    }

    /// Terminating, or deleted earlier in this step.
    fn going(&self, pod: &Pod) -> bool {
        terminating(pod) || self.deleted.contains(name_of(&pod.metadata))
    }

    fn unavailable(&self, pod: &Pod) -> bool {
        !self.running_available(pod) || self.going(pod)
    }

    fn delete_pod(&mut self, pod: &Pod) {
        let name = name_of(&pod.metadata).to_string();
        self.actions.push(Action::DeletePod {
            name: name.clone(),
            uid: pod.metadata.uid.clone(),
        });
        let msg = format!("delete Pod {name} in StatefulSet {} successful", self.name);
        self.event("SuccessfulDelete", msg);
        self.deleted.insert(name);
    }

    fn pod_name(&self, ordinal: i32) -> String {
        format!("{}-{}", self.name, ordinal)
    }

    fn in_range(&self, ordinal: i32) -> bool {
        let replicas = replicas_of(self.input.set);
        ordinal >= self.start && i64::from(ordinal) < i64::from(self.start) + i64::from(replicas)
    }

    /// Upstream `newVersionedStatefulSetPod`: below the partition a missing
    /// pod comes back at the current revision, otherwise at the update one.
    fn uses_current(&self, ordinal: i32) -> bool {
        let spec = self.input.set.spec.as_ref();
        let strategy = spec.and_then(|s| s.update_strategy.as_ref());
        let rolling = strategy
            .is_none_or(|s| s.type_.as_deref().unwrap_or("RollingUpdate") == "RollingUpdate");
        let idx = i64::from(ordinal) - i64::from(self.start);
        match strategy.and_then(|s| s.rolling_update.as_ref()) {
            Some(ru) => idx < i64::from(ru.partition.unwrap_or(0)),
            None => {
                let cur = self
                    .input
                    .set
                    .status
                    .as_ref()
                    .and_then(|s| s.current_replicas);
                rolling && idx < i64::from(cur.unwrap_or(0))
            }
        }
    }

    fn new_pod(&self, ordinal: i32) -> Pod {
        let (tpl, rev) = if self.uses_current(ordinal) {
            (&self.current_tpl, &self.current_name)
        } else {
            (&self.update_tpl, &self.update_name)
        };
        let name = self.pod_name(ordinal);
        let tm = tpl.metadata.clone().unwrap_or_default();
        let mut labels = tm.labels.unwrap_or_default();
        labels.insert(POD_NAME_LABEL.into(), name.clone());
        labels.insert(POD_INDEX_LABEL.into(), ordinal.to_string());
        labels.insert(REVISION_HASH_LABEL.into(), rev.clone());
        let mut spec = tpl.spec.clone().unwrap_or_default();
        spec.hostname = Some(name.clone());
        spec.subdomain = self
            .input
            .set
            .spec
            .as_ref()
            .and_then(|s| s.service_name.clone())
            .filter(|s| !s.is_empty());
        spec.volumes = Some(self.volumes(ordinal, spec.volumes.take().unwrap_or_default()));
        Pod {
            metadata: ObjectMeta {
                name: Some(name),
                generate_name: Some(format!("{}-", self.name)),
                namespace: self.namespace.map(str::to_string),
                labels: Some(labels),
                annotations: tm.annotations,
                finalizers: tm.finalizers,
                owner_references: Some(vec![self.set_ref()]),
                ..Default::default()
            },
            spec: Some(spec),
            status: None,
        }
    }

    /// Claim volumes first (template order), then the template's own
    /// volumes whose names do not clash.
    fn volumes(&self, ordinal: i32, own: Vec<Volume>) -> Vec<Volume> {
        let templates = claim_templates(self.input.set);
        let mut out: Vec<Volume> = templates
            .iter()
            .map(|t| Volume {
                name: name_of(&t.metadata).to_string(),
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: self.claim_name(t, ordinal),
                    read_only: None,
                }),
                ..Default::default()
            })
            .collect();
        let taken: BTreeSet<&str> = templates.iter().map(|t| name_of(&t.metadata)).collect();
        out.extend(own.into_iter().filter(|v| !taken.contains(v.name.as_str())));
        out
    }

    fn claim_name(&self, template: &PersistentVolumeClaim, ordinal: i32) -> String {
        format!("{}-{}-{}", name_of(&template.metadata), self.name, ordinal)
    }

    fn set_ref(&self) -> OwnerReference {
        podutil::owner_ref(SET_API_VERSION, SET_KIND, self.name, self.uid)
    }

    /// The claim upstream creates for `ordinal` from a template.
    fn new_claim(&self, template: &PersistentVolumeClaim, ordinal: i32) -> PersistentVolumeClaim {
        let mut claim = template.clone();
        claim.status = None;
        let selector = self
            .input
            .set
            .spec
            .as_ref()
            .and_then(|s| s.selector.match_labels.clone());
        let labels = match (claim.metadata.labels.take(), selector) {
            (Some(mut l), Some(sel)) => {
                l.extend(sel);
                Some(l)
            }
            (l, sel) => l.or(sel),
        };
        claim.metadata = ObjectMeta {
            name: Some(self.claim_name(template, ordinal)),
            namespace: self.namespace.map(str::to_string),
            labels,
            annotations: claim.metadata.annotations.take(),
            finalizers: claim.metadata.finalizers.take(),
            ..Default::default()
        };
        if self.deleted_delete {
            claim.metadata.owner_references = Some(vec![self.set_ref()]);
        }
        claim
    }

    /// Claims of `ordinal`: (template, name, existing claim).
    fn claims_for(
        &self,
        ordinal: i32,
    ) -> Vec<(
        &'a PersistentVolumeClaim,
        String,
        Option<&'a PersistentVolumeClaim>,
    )> {
        claim_templates(self.input.set)
            .iter()
            .map(|t| {
                let name = self.claim_name(t, ordinal);
                let existing = self.input.claims.get(&name);
                (t, name, existing)
            })
            .collect()
    }

    /// Creates the missing claims of `ordinal`; false when one is being
    /// deleted (the pod cannot be created yet).
    fn ensure_claims(&mut self, ordinal: i32) -> bool {
        let pod = self.pod_name(ordinal);
        let mut ok = true;
        for (tpl, name, existing) in self.claims_for(ordinal) {
            match existing {
                None => {
                    let claim = self.new_claim(tpl, ordinal);
                    self.actions.push(Action::CreateClaim {
                        claim: Box::new(claim),
                        pod: pod.clone(),
                    });
                    let msg = format!(
                        "create Claim {name} Pod {pod} in StatefulSet {} success",
                        self.name
                    );
                    self.event("SuccessfulCreate", msg);
                }
                Some(c) if c.metadata.deletion_timestamp.is_some() => ok = false,
                Some(_) => {}
            }
        }
        ok
    }

    /// Owner-reference patches bringing the existing claims of a pod in line
    /// with the retention policy (upstream `isClaimOwnerUpToDate` /
    /// `updateClaimOwnerRefForSetAndPod`).
    fn fix_claim_owners(&mut self, ordinal: i32, pod_uid: &str) {
        let pod = self.pod_name(ordinal);
        let in_range = self.in_range(ordinal);
        for (_, name, existing) in self.claims_for(ordinal) {
            let Some(claim) = existing else { continue };
            if let Some(refs) = self.claim_owner_update(claim, &pod, pod_uid, in_range) {
                self.actions.push(Action::SetClaimOwners {
                    claim: name,
                    pod: pod.clone(),
                    owner_references: refs,
                });
            }
        }
    }

    fn claim_owner_update(
        &self,
        claim: &PersistentVolumeClaim,
        pod: &str,
        pod_uid: &str,
        in_range: bool,
    ) -> Option<Vec<OwnerReference>> {
        let refs = claim.metadata.owner_references.clone().unwrap_or_default();
        let is_set = |r: &OwnerReference| {
            r.api_version == SET_API_VERSION && r.kind == SET_KIND && r.name == self.name
        };
        let is_pod = |r: &OwnerReference| r.api_version == "v1" && r.kind == "Pod" && r.name == pod;
        let stale = |f: &dyn Fn(&OwnerReference) -> bool, uid: &str| {
            refs.iter().find(|r| f(r)).is_some_and(|r| r.uid != uid)
        };
        if stale(&is_set, self.uid) || stale(&is_pod, pod_uid) {
            return None;
        }
        let has = |uid: &str| refs.iter().any(|r| r.uid == uid);
        let retain_all = !self.scaled_delete && !self.deleted_delete;
        let unexpected = !retain_all
            && refs
                .iter()
                .any(|r| !is_set(r) && !is_pod(r) && r.controller == Some(true));
        let scrubbed: Vec<OwnerReference> = refs
            .iter()
            .filter(|r| !is_set(r) && !is_pod(r))
            .cloned()
            .collect();
        if unexpected {
            return (has(self.uid) || has(pod_uid)).then_some(scrubbed);
        }
        let want_set = self.deleted_delete && (in_range || !self.scaled_delete);
        let want_pod = self.scaled_delete && !in_range;
        let non_controller = refs
            .iter()
            .any(|r| (r.uid == self.uid || r.uid == pod_uid) && r.controller != Some(true));
        if !non_controller && has(self.uid) == want_set && has(pod_uid) == want_pod {
            return None;
        }
        let mut out = scrubbed;
        if want_set {
            out.push(self.set_ref());
        }
        if want_pod {
            out.push(podutil::owner_ref("v1", "Pod", pod, pod_uid));
        }
        Some(out)
    }

    /// Upstream `PodClaimIsStale`: with WhenScaled=Delete, a claim still
    /// owned by an earlier pod of that name blocks the new pod.
    fn claims_stale(&self, ordinal: i32) -> bool {
        if !self.scaled_delete {
            return false;
        }
        let pod = self.pod_name(ordinal);
        self.claims_for(ordinal).iter().any(|(_, _, c)| {
            c.and_then(|c| c.metadata.owner_references.as_ref())
                .is_some_and(|refs| {
                    refs.iter()
                        .any(|r| r.kind == "Pod" && r.api_version == "v1" && r.name == pod)
                })
        })
    }

    /// Upstream `processReplica`; true means "stop here" in OrderedReady.
    fn process_replica(&mut self, slot: Slot<'a>) -> bool {
        match slot {
            Slot::Missing(ordinal) => self.create_replica(ordinal),
            Slot::Live(pod) => self.check_replica(pod),
        }
    }

    fn create_replica(&mut self, ordinal: i32) -> bool {
        if self.claims_stale(ordinal) {
            return true;
        }
        let pod = self.new_pod(ordinal);
        let name = name_of(&pod.metadata).to_string();
        if !self.ensure_claims(ordinal) {
            let claim = self
                .claims_for(ordinal)
                .into_iter()
                .find(|(_, _, c)| c.is_some_and(|c| c.metadata.deletion_timestamp.is_some()))
                .map(|(_, n, _)| n)
                .unwrap_or_default();
            self.actions.push(Action::Event(Event::new(
                "Warning",
                "FailedCreate",
                format!(
                    "create Pod {name} in StatefulSet {} failed error: pvc {claim} is being deleted",
                    self.name
                ),
            )));
            return true;
        }
        self.actions.push(Action::CreatePod(Box::new(pod)));
        let msg = format!("create Pod {name} in StatefulSet {} successful", self.name);
        self.event("SuccessfulCreate", msg);
        self.fix_claim_owners(ordinal, "");
        true
    }

    fn check_replica(&mut self, pod: &'a Pod) -> bool {
        let ordinal = ordinal_of(self.name, name_of(&pod.metadata)).unwrap_or(-1);
        if matches!(phase(pod), "Failed" | "Succeeded") {
            if !terminating(pod) {
                self.delete_pod(pod);
            }
            return true;
        }
        if matches!(phase(pod), "Pending" | "") && !self.going(pod) && !self.ensure_claims(ordinal)
        {
            return true;
        }
        if self.monotonic
            && (self.going(pod) || !self.running_ready(pod) || !self.running_available(pod))
        {
            return true;
        }
        self.repair_identity(pod, ordinal);
        false
    }

    /// Identity labels and claim owners (upstream `UpdateStatefulPod`).
    fn repair_identity(&mut self, pod: &Pod, ordinal: i32) {
        let before = self.actions.len();
        let name = name_of(&pod.metadata).to_string();
        self.fix_claim_owners(ordinal, pod.metadata.uid.as_deref().unwrap_or_default());
        let labels = pod.metadata.labels.as_ref();
        if labels.and_then(|l| l.get(POD_NAME_LABEL)) != Some(&name) {
            let want: BTreeMap<String, String> = [
                (POD_NAME_LABEL.to_string(), name.clone()),
                (POD_INDEX_LABEL.to_string(), ordinal.to_string()),
            ]
            .into();
            self.actions.push(Action::SetPodLabels {
                pod: name.clone(),
                labels: want,
            });
        }
        if self.actions.len() > before {
            let msg = format!("update Pod {name} in StatefulSet {} successful", self.name);
            self.event("SuccessfulUpdate", msg);
        }
    }

    /// Upstream `processCondemned`; true means "stop here".
    fn process_condemned(&mut self, pod: &'a Pod, first_unavailable: Option<&str>) -> bool {
        if self.going(pod) {
            return self.monotonic;
        }
        let first = first_unavailable == Some(name_of(&pod.metadata));
        if self.monotonic && !first && (!self.running_ready(pod) || !self.running_available(pod)) {
            return true;
        }
        self.delete_pod(pod);
        true
    }
}

fn replicas_of(set: &StatefulSet) -> i32 {
    set.spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1)
        .max(0)
}

fn claim_templates(set: &StatefulSet) -> &[PersistentVolumeClaim] {
    set.spec
        .as_ref()
        .and_then(|s| s.volume_claim_templates.as_deref())
        .unwrap_or(&[])
}

fn retention(set: &StatefulSet) -> (bool, bool) {
    let p = set
        .spec
        .as_ref()
        .and_then(|s| s.persistent_volume_claim_retention_policy.as_ref());
    let is_delete = |v: Option<&String>| v.map(String::as_str) == Some("Delete");
    (
        is_delete(p.and_then(|p| p.when_scaled.as_ref())),
        is_delete(p.and_then(|p| p.when_deleted.as_ref())),
    )
}

fn strategy_type(set: &StatefulSet) -> &str {
    set.spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|u| u.type_.as_deref())
        .unwrap_or("RollingUpdate")
}

fn partition(set: &StatefulSet) -> i64 {
    set.spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|u| u.rolling_update.as_ref())
        .map(|r| i64::from(r.partition.unwrap_or(0)))
        .unwrap_or(0)
}

/// Plans one reconcile step of a StatefulSet.
pub fn plan(input: &Input) -> Plan {
    let set = input.set;
    let default_tpl = PodTemplateSpec::default();
    let template = set
        .spec
        .as_ref()
        .map(|s| &s.template)
        .unwrap_or(&default_tpl);
    let owner = Owner {
        api_version: SET_API_VERSION,
        kind: SET_KIND,
        meta: &set.metadata,
        template,
    };
    let old_status = set.status.clone().unwrap_or_default();
    let resolved = history::resolve(
        &owner,
        input.revisions,
        old_status.collision_count.unwrap_or(0),
    );
    let revisions = history::apply_change(input.revisions, resolved.change.as_ref());
    let update = resolved.update.clone();
    let current = revisions
        .iter()
        .find(|r| r.metadata.name.is_some() && r.metadata.name == old_status.current_revision)
        .cloned()
        .unwrap_or_else(|| update.clone());
    let (scaled_delete, deleted_delete) = retention(set);
    let mut ctx = Ctx {
        input,
        name: name_of(&set.metadata),
        namespace: set.metadata.namespace.as_deref(),
        uid: set.metadata.uid.as_deref().unwrap_or_default(),
        start: set
            .spec
            .as_ref()
            .and_then(|s| s.ordinals.as_ref())
            .and_then(|o| o.start)
            .unwrap_or(0)
            .max(0),
        min_ready: set
            .spec
            .as_ref()
            .and_then(|s| s.min_ready_seconds)
            .unwrap_or(0),
        monotonic: set
            .spec
            .as_ref()
            .and_then(|s| s.pod_management_policy.as_deref())
            != Some("Parallel"),
        scaled_delete,
        deleted_delete,
        current_name: name_of(&current.metadata).to_string(),
        update_name: name_of(&update.metadata).to_string(),
        current_tpl: history::template_of(&current).unwrap_or_else(|| template.clone()),
        update_tpl: history::template_of(&update).unwrap_or_else(|| template.clone()),
        actions: Vec::new(),
        deleted: BTreeSet::new(),
    };
    match resolved.change.clone() {
        Some(RevisionChange::Create(cr)) => ctx.actions.push(Action::CreateRevision(cr)),
        Some(RevisionChange::Renumber { name, revision }) => ctx
            .actions
            .push(Action::RenumberRevision { name, revision }),
        None => {}
    }

    let members: Vec<(i32, &Pod)> = input
        .pods
        .iter()
        .filter_map(|p| ordinal_of(ctx.name, name_of(&p.metadata)).map(|o| (o, p)))
        .collect();
    let mut status = compute_status(&ctx, &members, &old_status, set.metadata.generation);
    status.collision_count = Some(resolved.collision_count);
    if set.metadata.deletion_timestamp.is_none() {
        reconcile_pods(&mut ctx, &members, &mut status);
    }
    complete_rolling_update(set, &mut status);

    let live: BTreeSet<&str> = input
        .pods
        .iter()
        .map(pod_revision)
        .chain([ctx.current_name.as_str(), ctx.update_name.as_str()])
        .collect();
    let limit = set
        .spec
        .as_ref()
        .and_then(|s| s.revision_history_limit)
        .unwrap_or(history::DEFAULT_REVISION_HISTORY_LIMIT);
    let is_live = |r: &ControllerRevision| live.contains(name_of(&r.metadata));
    for name in history::prune(
        &revisions,
        is_live,
        limit,
        history::LimitMode::NonLive,
        None,
    ) {
        ctx.actions.push(Action::DeleteRevision { name });
    }
    let requeue_after = requeue(&ctx, &members);
    Plan {
        actions: ctx.actions,
        status,
        requeue_after,
    }
}

/// Replicas, condemned pods, scale down and rolling update (upstream
/// `updateStatefulSet` after the status is computed).
fn reconcile_pods<'a>(
    ctx: &mut Ctx<'a>,
    members: &[(i32, &'a Pod)],
    status: &mut StatefulSetStatus,
) {
    let count = replicas_of(ctx.input.set);
    let by_ordinal: BTreeMap<i32, &Pod> = members.iter().map(|(o, p)| (*o, *p)).collect();
    let slots: Vec<Slot> = (0..count)
        .map(|i| ctx.start.saturating_add(i))
        .map(|o| {
            by_ordinal
                .get(&o)
                .map_or(Slot::Missing(o), |p| Slot::Live(p))
        })
        .collect();
    let mut condemned: Vec<(i32, &Pod)> = members
        .iter()
        .filter(|(o, _)| !ctx.in_range(*o))
        .copied()
        .collect();
    condemned.sort_by_key(|c| std::cmp::Reverse(c.0));
    let first_unavailable = first_unavailable(ctx, &slots, &condemned);

    for slot in &slots {
        if ctx.process_replica(*slot) && ctx.monotonic {
            return;
        }
    }
    for (o, pod) in &condemned {
        ctx.fix_claim_owners(*o, pod.metadata.uid.as_deref().unwrap_or_default());
    }
    for (_, pod) in &condemned {
        if ctx.process_condemned(pod, first_unavailable.as_deref()) && ctx.monotonic {
            return;
        }
    }
    if strategy_type(ctx.input.set) == "OnDelete" {
        return;
    }
    rolling_update(ctx, &slots, status);
}

/// The first unavailable replica (in ordinal order; a missing one counts),
/// else the lowest-ordinal unavailable condemned pod.
fn first_unavailable(ctx: &Ctx, slots: &[Slot], condemned: &[(i32, &Pod)]) -> Option<String> {
    for slot in slots {
        match slot {
            Slot::Missing(o) => return Some(ctx.pod_name(*o)),
            Slot::Live(p) if ctx.unavailable(p) => return Some(name_of(&p.metadata).to_string()),
            Slot::Live(_) => {}
        }
    }
    condemned
        .iter()
        .rev()
        .find(|(_, p)| ctx.unavailable(p))
        .map(|(_, p)| name_of(&p.metadata).to_string())
}

/// Deletes the highest-ordinal pod at or above the partition that is not at
/// the update revision, after every higher one is available again.
fn rolling_update(ctx: &mut Ctx, slots: &[Slot], status: &mut StatefulSetStatus) {
    let min = partition(ctx.input.set).max(0);
    for (idx, slot) in slots.iter().enumerate().rev() {
        if (idx as i64) < min {
            break;
        }
        let Slot::Live(pod) = slot else { return };
        if pod_revision(pod) != ctx.update_name && !ctx.going(pod) {
            ctx.delete_pod(pod);
            status.current_replicas = Some((status.current_replicas.unwrap_or(0) - 1).max(0));
            return;
        }
        if ctx.unavailable(pod) {
            return;
        }
    }
}

fn compute_status(
    ctx: &Ctx,
    members: &[(i32, &Pod)],
    old: &StatefulSetStatus,
    generation: Option<i64>,
) -> StatefulSetStatus {
    let (mut replicas, mut ready, mut available, mut current, mut updated) = (0, 0, 0, 0, 0);
    for (_, pod) in members {
        replicas += 1;
        if ctx.running_ready(pod) {
            ready += 1;
            if ctx.running_available(pod) {
                available += 1;
            }
        }
        if !terminating(pod) {
            let rev = pod_revision(pod);
            current += i32::from(rev == ctx.current_name);
            updated += i32::from(rev == ctx.update_name);
        }
    }
    StatefulSetStatus {
        observed_generation: generation,
        replicas,
        ready_replicas: Some(ready),
        available_replicas: Some(available),
        current_replicas: Some(current),
        updated_replicas: Some(updated),
        current_revision: Some(ctx.current_name.clone()),
        update_revision: Some(ctx.update_name.clone()),
        collision_count: old.collision_count,
        conditions: old.conditions.clone(),
    }
}

/// Upstream `completeRollingUpdate`: once every pod is updated and ready,
/// the update revision becomes the current one.
fn complete_rolling_update(set: &StatefulSet, status: &mut StatefulSetStatus) {
    if strategy_type(set) == "RollingUpdate"
        && status.updated_replicas == Some(status.replicas)
        && status.ready_replicas == Some(status.replicas)
    {
        status.current_replicas = status.updated_replicas;
        status.current_revision = status.update_revision.clone();
    }
}

/// When the next ready-but-not-yet-available pod becomes available.
fn requeue(ctx: &Ctx, members: &[(i32, &Pod)]) -> Option<Duration> {
    if ctx.min_ready <= 0 {
        return None;
    }
    members
        .iter()
        .filter(|(_, p)| ctx.running_ready(p) && !ctx.running_available(p))
        .filter_map(|(_, p)| podutil::ready_since(p))
        .map(|since| since + Duration::seconds(i64::from(ctx.min_ready)) - ctx.input.now)
        .map(|d| d.max(Duration::seconds(1)))
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{
        RollingUpdateStatefulSetStrategy, StatefulSetPersistentVolumeClaimRetentionPolicy,
        StatefulSetSpec, StatefulSetUpdateStrategy,
    };
    use k8s_openapi::api::core::v1::{Container, PodCondition, PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2024-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn labels() -> BTreeMap<String, String> {
        [("app".to_string(), "web".to_string())].into()
    }

    fn set(replicas: i32, image: &str) -> StatefulSet {
        StatefulSet {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("default".into()),
                uid: Some("set-uid".into()),
                generation: Some(3),
                ..Default::default()
            },
            spec: Some(StatefulSetSpec {
                replicas: Some(replicas),
                service_name: Some("nginx".into()),
                selector: LabelSelector {
                    match_labels: Some(labels()),
                    ..Default::default()
                },
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(labels()),
                        ..Default::default()
                    }),
                    spec: Some(PodSpec {
                        containers: vec![Container {
                            name: "nginx".into(),
                            image: Some(image.into()),
                            ..Default::default()
                        }],
                        ..Default::default()
                    }),
                },
                volume_claim_templates: Some(vec![PersistentVolumeClaim {
                    metadata: ObjectMeta {
                        name: Some("www".into()),
                        ..Default::default()
                    },
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            status: None,
        }
    }

    /// A tiny cluster: applies plans and lets the test flip pod states.
    struct Sim {
        set: StatefulSet,
        pods: Vec<Pod>,
        claims: BTreeMap<String, PersistentVolumeClaim>,
        revisions: Vec<ControllerRevision>,
        uid: u32,
    }

    impl Sim {
        fn new(set: StatefulSet) -> Sim {
            Sim {
                set,
                pods: vec![],
                claims: BTreeMap::new(),
                revisions: vec![],
                uid: 0,
            }
        }

        fn step(&mut self) -> Vec<Action> {
            let input = Input {
                set: &self.set,
                pods: &self.pods,
                claims: &self.claims,
                revisions: &self.revisions,
                now: now(),
            };
            let plan = plan(&input);
            for a in &plan.actions {
                self.apply(a);
            }
            self.set.status = Some(plan.status);
            plan.actions
        }

        fn apply(&mut self, a: &Action) {
            self.uid += 1;
            match a {
                Action::CreateRevision(r) => self.revisions.push((**r).clone()),
                Action::CreateClaim { claim, .. } => {
                    self.claims
                        .insert(name_of(&claim.metadata).into(), (**claim).clone());
                }
                Action::CreatePod(p) => {
                    let mut p = (**p).clone();
                    p.metadata.uid = Some(format!("uid-{}", self.uid));
                    p.status = Some(PodStatus {
                        phase: Some("Pending".into()),
                        ..Default::default()
                    });
                    self.pods.push(p);
                }
                // deletion completes at once in this simulation
                Action::DeletePod { name, .. } => {
                    self.pods.retain(|p| name_of(&p.metadata) != name)
                }
                Action::DeleteRevision { name } => {
                    self.revisions.retain(|r| name_of(&r.metadata) != name)
                }
                _ => {}
            }
        }

        fn make_ready(&mut self, name: &str) {
            for p in self
                .pods
                .iter_mut()
                .filter(|p| name_of(&p.metadata) == name)
            {
                p.status = Some(PodStatus {
                    phase: Some("Running".into()),
                    conditions: Some(vec![PodCondition {
                        type_: "Ready".into(),
                        status: "True".into(),
                        last_transition_time: Some(podutil::chrono_to_time(
                            now() - Duration::seconds(60),
                        )),
                        ..Default::default()
                    }]),
                    ..Default::default()
                });
            }
        }

        fn ready_all(&mut self) {
            let names: Vec<String> = self
                .pods
                .iter()
                .map(|p| name_of(&p.metadata).to_string())
                .collect();
            for n in names {
                self.make_ready(&n);
            }
        }

        fn names(&self) -> Vec<String> {
            let mut v: Vec<String> = self
                .pods
                .iter()
                .map(|p| name_of(&p.metadata).to_string())
                .collect();
            v.sort();
            v
        }
    }

    fn created(actions: &[Action]) -> Vec<String> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::CreatePod(p) => Some(name_of(&p.metadata).to_string()),
                _ => None,
            })
            .collect()
    }

    fn deleted(actions: &[Action]) -> Vec<String> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::DeletePod { name, .. } => Some(name.clone()),
                _ => None,
            })
            .collect()
    }

    fn events(actions: &[Action]) -> Vec<String> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Event(e) => Some(format!("{} {}", e.reason, e.message)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn ordered_ready_creates_one_at_a_time() {
        let mut sim = Sim::new(set(3, "nginx:1"));
        let a = sim.step();
        assert!(matches!(a[0], Action::CreateRevision(_)));
        assert_eq!(created(&a), vec!["web-0"]);
        assert_eq!(
            events(&a),
            vec![
                "SuccessfulCreate create Claim www-web-0 Pod web-0 in StatefulSet web success",
                "SuccessfulCreate create Pod web-0 in StatefulSet web successful",
            ]
        );
        // claim precedes the pod; pod has identity and storage
        let claim_idx = a
            .iter()
            .position(|x| matches!(x, Action::CreateClaim { .. }))
            .unwrap();
        let pod_idx = a
            .iter()
            .position(|x| matches!(x, Action::CreatePod(_)))
            .unwrap();
        assert!(claim_idx < pod_idx);
        let pod = &sim.pods[0];
        let l = pod.metadata.labels.as_ref().unwrap();
        assert_eq!(l[POD_NAME_LABEL], "web-0");
        assert_eq!(l[POD_INDEX_LABEL], "0");
        assert_eq!(l[REVISION_HASH_LABEL], name_of(&sim.revisions[0].metadata));
        let spec = pod.spec.as_ref().unwrap();
        assert_eq!(spec.hostname.as_deref(), Some("web-0"));
        assert_eq!(spec.subdomain.as_deref(), Some("nginx"));
        let vol = &spec.volumes.as_ref().unwrap()[0];
        assert_eq!(
            vol.persistent_volume_claim.as_ref().unwrap().claim_name,
            "www-web-0"
        );
        assert_eq!(sim.claims["www-web-0"].metadata.labels, Some(labels()));

        // web-0 pending: nothing new
        assert!(created(&sim.step()).is_empty());
        sim.make_ready("web-0");
        assert_eq!(created(&sim.step()), vec!["web-1"]);
        assert!(created(&sim.step()).is_empty());
        sim.make_ready("web-1");
        assert_eq!(created(&sim.step()), vec!["web-2"]);
        sim.make_ready("web-2");
        assert!(sim.step().iter().all(|a| !matches!(a, Action::Event(_))));
        let st = sim.set.status.clone().unwrap();
        assert_eq!(
            (st.replicas, st.ready_replicas, st.available_replicas),
            (3, Some(3), Some(3))
        );
        assert_eq!(st.current_revision, st.update_revision);
        assert_eq!(st.observed_generation, Some(3));
        assert_eq!(st.collision_count, Some(0));
    }

    #[test]
    fn parallel_creates_all() {
        let mut s = set(3, "nginx:1");
        s.spec.as_mut().unwrap().pod_management_policy = Some("Parallel".into());
        let mut sim = Sim::new(s);
        assert_eq!(created(&sim.step()), vec!["web-0", "web-1", "web-2"]);
    }

    #[test]
    fn scale_down_highest_first_when_healthy() {
        let mut sim = Sim::new(set(3, "nginx:1"));
        for _ in 0..3 {
            sim.step();
            sim.ready_all();
        }
        assert_eq!(sim.names(), vec!["web-0", "web-1", "web-2"]);
        sim.set.spec.as_mut().unwrap().replicas = Some(1);
        // an unhealthy survivor blocks scale-down
        sim.pods[0].status.as_mut().unwrap().conditions = None;
        assert!(deleted(&sim.step()).is_empty());
        sim.ready_all();
        let a = sim.step();
        assert_eq!(deleted(&a), vec!["web-2"]);
        assert!(events(&a).contains(
            &"SuccessfulDelete delete Pod web-2 in StatefulSet web successful".to_string()
        ));
        assert_eq!(deleted(&sim.step()), vec!["web-1"]);
        assert!(deleted(&sim.step()).is_empty());
        assert_eq!(sim.names(), vec!["web-0"]);
    }

    #[test]
    fn failed_pod_is_deleted_then_recreated_and_terminating_waited_for() {
        let mut sim = Sim::new(set(2, "nginx:1"));
        for _ in 0..2 {
            sim.step();
            sim.ready_all();
        }
        sim.pods[0].status.as_mut().unwrap().phase = Some("Failed".into());
        let a = sim.step();
        assert_eq!(deleted(&a), vec!["web-0"]);
        assert!(created(&a).is_empty());
        assert_eq!(created(&sim.step()), vec!["web-0"]);
        // a terminating pod blocks everything after it
        sim.ready_all();
        sim.pods[0].metadata.deletion_timestamp = Some(podutil::chrono_to_time(now()));
        sim.set.spec.as_mut().unwrap().replicas = Some(3);
        assert!(
            sim.step()
                .iter()
                .all(|a| !matches!(a, Action::CreatePod(_) | Action::DeletePod { .. }))
        );
    }

    #[test]
    fn partition_rollout_highest_first() {
        let mut s = set(3, "nginx:1");
        s.spec.as_mut().unwrap().update_strategy = Some(StatefulSetUpdateStrategy {
            type_: Some("RollingUpdate".into()),
            rolling_update: Some(RollingUpdateStatefulSetStrategy {
                partition: Some(1),
                max_unavailable: None,
            }),
        });
        let mut sim = Sim::new(s);
        for _ in 0..3 {
            sim.step();
            sim.ready_all();
        }
        let old_rev = sim
            .set
            .status
            .as_ref()
            .unwrap()
            .current_revision
            .clone()
            .unwrap();
        sim.set
            .spec
            .as_mut()
            .unwrap()
            .template
            .spec
            .as_mut()
            .unwrap()
            .containers[0]
            .image = Some("nginx:2".into());
        let a = sim.step();
        assert!(matches!(a[0], Action::CreateRevision(_)));
        assert_eq!(deleted(&a), vec!["web-2"]);
        // recreated at the update revision; the next one waits for readiness
        let a = sim.step();
        assert_eq!(created(&a), vec!["web-2"]);
        let st = sim.set.status.clone().unwrap();
        let new_rev = st.update_revision.clone().unwrap();
        assert_ne!(new_rev, old_rev);
        assert_eq!(st.current_revision.as_deref(), Some(old_rev.as_str()));
        let web2 = sim
            .pods
            .iter()
            .find(|p| name_of(&p.metadata) == "web-2")
            .unwrap();
        assert_eq!(pod_revision(web2), new_rev);
        assert!(deleted(&sim.step()).is_empty());
        sim.ready_all();
        assert_eq!(deleted(&sim.step()), vec!["web-1"]);
        sim.step();
        sim.ready_all();
        // web-0 is below the partition: untouched, rollout incomplete
        assert!(deleted(&sim.step()).is_empty());
        let st = sim.set.status.clone().unwrap();
        assert_eq!(
            (st.updated_replicas, st.current_replicas),
            (Some(2), Some(1))
        );
        assert_eq!(st.current_revision.as_deref(), Some(old_rev.as_str()));
        // a missing pod below the partition comes back at the current revision
        sim.pods.retain(|p| name_of(&p.metadata) != "web-0");
        sim.step();
        let web0 = sim
            .pods
            .iter()
            .find(|p| name_of(&p.metadata) == "web-0")
            .unwrap();
        assert_eq!(pod_revision(web0), old_rev);
        let web0_img = &web0.spec.as_ref().unwrap().containers[0].image;
        assert_eq!(web0_img.as_deref(), Some("nginx:1"));
        // partition 0 completes the rollout
        sim.ready_all();
        sim.set
            .spec
            .as_mut()
            .unwrap()
            .update_strategy
            .as_mut()
            .unwrap()
            .rolling_update = None;
        assert_eq!(deleted(&sim.step()), vec!["web-0"]);
        sim.step();
        sim.ready_all();
        sim.step();
        let st = sim.set.status.clone().unwrap();
        assert_eq!(st.current_revision.as_deref(), Some(new_rev.as_str()));
        assert_eq!(st.current_replicas, Some(3));
    }

    #[test]
    fn on_delete_does_not_roll() {
        let mut s = set(2, "nginx:1");
        s.spec.as_mut().unwrap().update_strategy = Some(StatefulSetUpdateStrategy {
            type_: Some("OnDelete".into()),
            rolling_update: None,
        });
        let mut sim = Sim::new(s);
        for _ in 0..2 {
            sim.step();
            sim.ready_all();
        }
        sim.set
            .spec
            .as_mut()
            .unwrap()
            .template
            .spec
            .as_mut()
            .unwrap()
            .containers[0]
            .image = Some("nginx:2".into());
        assert!(deleted(&sim.step()).is_empty());
        sim.pods.retain(|p| name_of(&p.metadata) != "web-1");
        sim.step();
        let st = sim.set.status.clone().unwrap();
        let web1 = sim
            .pods
            .iter()
            .find(|p| name_of(&p.metadata) == "web-1")
            .unwrap();
        assert_eq!(Some(pod_revision(web1)), st.update_revision.as_deref());
        assert_ne!(st.current_revision, st.update_revision);
    }

    #[test]
    fn retention_policy_owner_refs() {
        let mut s = set(2, "nginx:1");
        s.spec
            .as_mut()
            .unwrap()
            .persistent_volume_claim_retention_policy =
            Some(StatefulSetPersistentVolumeClaimRetentionPolicy {
                when_deleted: Some("Delete".into()),
                when_scaled: Some("Delete".into()),
            });
        let mut sim = Sim::new(s);
        for _ in 0..2 {
            sim.step();
            sim.ready_all();
        }
        let refs = sim.claims["www-web-1"]
            .metadata
            .owner_references
            .clone()
            .unwrap();
        assert_eq!(refs.len(), 1);
        assert_eq!(
            (refs[0].kind.as_str(), refs[0].controller),
            ("StatefulSet", Some(true))
        );
        // scaled down: the claim moves to the pod before the pod goes
        sim.set.spec.as_mut().unwrap().replicas = Some(1);
        let a = sim.step();
        let web1_uid = sim_uid(&a);
        let fix = a.iter().find_map(|x| match x {
            Action::SetClaimOwners {
                claim,
                owner_references,
                ..
            } if claim == "www-web-1" => Some(owner_references.clone()),
            _ => None,
        });
        let fix = fix.expect("claim owner patch");
        assert_eq!(fix.len(), 1);
        assert_eq!(fix[0].kind, "Pod");
        assert_eq!(Some(fix[0].uid.clone()), web1_uid);
        assert_eq!(deleted(&a), vec!["web-1"]);
    }

    fn sim_uid(actions: &[Action]) -> Option<String> {
        actions.iter().find_map(|a| match a {
            Action::DeletePod { uid, .. } => uid.clone(),
            _ => None,
        })
    }

    #[test]
    fn history_is_truncated_and_naming_helpers() {
        let mut s = set(1, "v0");
        s.spec.as_mut().unwrap().revision_history_limit = Some(1);
        let mut sim = Sim::new(s);
        for i in 1..5 {
            sim.step();
            sim.ready_all();
            sim.step();
            sim.set
                .spec
                .as_mut()
                .unwrap()
                .template
                .spec
                .as_mut()
                .unwrap()
                .containers[0]
                .image = Some(format!("v{i}"));
        }
        // live: current and update (and the pod's); at most one more kept
        assert!(sim.revisions.len() <= 3, "{}", sim.revisions.len());
        let cases = [
            ("web-0", Some(0)),
            ("web-12", Some(12)),
            ("web-x", None),
            ("web2-1", None),
            ("web-", None),
        ];
        for (n, want) in cases {
            assert_eq!(ordinal_of("web", n), want, "{n}");
        }
        let e = failure_event(
            "web",
            &Action::DeletePod {
                name: "web-1".into(),
                uid: None,
            },
            "boom",
        )
        .unwrap();
        assert_eq!(
            e.message,
            "delete Pod web-1 in StatefulSet web failed error: boom"
        );
    }
}
