//! Pure planning for the **Deployment** controller (upstream
//! `pkg/controller/deployment`): given a Deployment, the ReplicaSets and pods
//! of its namespace and `now`, compute the ReplicaSet writes, events, the
//! Deployment's revision annotation, its status and when to look again.
//!
//! Owns: ReplicaSet adoption/release; the pod-template-hash and new
//! ReplicaSet naming (plus the hash-collision decision); new vs old
//! ReplicaSets and the revision annotations; RollingUpdate (surge /
//! unavailability fenceposts, `reconcileOldReplicaSets`), Recreate,
//! proportional scaling, pause/resume conditions, history cleanup, and
//! status with the `Available` / `Progressing` / `ReplicaFailure` conditions.
//!
//! Invariants:
//! - One sync either scales the new ReplicaSet up or old ones down, never
//!   both (RollingUpdate), so total pods stay ≤ replicas + maxSurge and
//!   available pods ≥ replicas − maxUnavailable.
//! - Recreate never scales the new ReplicaSet up while an old pod runs.
//! - Each ReplicaSet is written at most once per plan (one full-object
//!   update carrying the cache's resourceVersion), and a ReplicaSet written
//!   in this plan is never deleted by it.
//! - A Deployment being deleted only gets its status computed.
//!
//! Must not: do I/O or read clocks. The hash need not equal upstream's FNV
//! value; it is stable for a given template and collision count.
//!
//! Shell usage (one sync):
//! 1. `let p = plan(&deployment, &replica_sets_in_ns, &pods_in_ns, now)`.
//! 2. Apply `p.actions` in order, stopping at the first failure (requeue
//!    with backoff): adopt/release are strategic-merge patches, creates/updates
//!    full objects (updates carry the cached resourceVersion), deletes by
//!    name with a UID precondition (NotFound is success), events recorded on
//!    the Deployment. If `CreateReplicaSet` fails with AlreadyExists, fetch
//!    the existing object and call [`on_create_conflict`]; with another error,
//!    call [`on_create_error`]; in both cases write what they return and stop.
//! 3. If `p.revision` is set, merge-patch the Deployment's
//!    `metadata.annotations["deployment.kubernetes.io/revision"]`.
//! 4. If `p.status` is set, write it through the status subresource.
//! 5. Requeue after `p.requeue_after` when set.

use crate::controllers::podutil;
use crate::controllers::replicaset::plan::{Event, OwnerPatch, adopt_patch, release_patch};
use chrono::{DateTime, Utc};
use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet, ReplicaSetSpec,
};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::borrow::Borrow;
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

pub const REVISION: &str = "deployment.kubernetes.io/revision";
pub const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";
pub const ROLLBACK_TO: &str = "deprecated.deployment.rollback.to";
pub const POD_TEMPLATE_HASH: &str = "pod-template-hash";
/// Longest `revision-history` annotation kept (upstream 2000 chars).
const MAX_REV_HISTORY_CHARS: usize = 2000;
/// Upstream `rand.SafeEncodeString` alphabet (no vowels, no 0/1/3).
const SAFE_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

const AVAILABLE: &str = "Available";
const PROGRESSING: &str = "Progressing";
const REPLICA_FAILURE: &str = "ReplicaFailure";
const NEW_RS_CREATED: &str = "NewReplicaSetCreated";
const FOUND_NEW_RS: &str = "FoundNewReplicaSet";
const RS_UPDATED: &str = "ReplicaSetUpdated";
const NEW_RS_AVAILABLE: &str = "NewReplicaSetAvailable";
const TIMED_OUT: &str = "ProgressDeadlineExceeded";
const PAUSED: &str = "DeploymentPaused";
const RESUMED: &str = "DeploymentResumed";
const RS_CREATE_ERROR: &str = "ReplicaSetCreateError";

/// One write for the shell, in order.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Strategic-merge patch making the Deployment a ReplicaSet's controller.
    AdoptReplicaSet(OwnerPatch),
    /// Strategic-merge patch removing the Deployment's owner reference.
    ReleaseReplicaSet(OwnerPatch),
    CreateReplicaSet(ReplicaSet),
    /// Full-object update (replicas, annotations, minReadySeconds).
    UpdateReplicaSet(ReplicaSet),
    DeleteReplicaSet {
        name: String,
        uid: String,
    },
    Event(Event),
}

/// What one sync should do.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    pub actions: Vec<Action>,
    /// New value of the Deployment's `deployment.kubernetes.io/revision`.
    pub revision: Option<String>,
    /// New status, when it differs from the current one.
    pub status: Option<DeploymentStatus>,
    pub requeue_after: Option<Duration>,
}

/// Resolved update strategy of a Deployment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    Recreate,
    RollingUpdate {
        max_surge: i32,
        max_unavailable: i32,
    },
}

/// The strategy with fenceposts resolved against `spec.replicas`
/// (defaults: RollingUpdate, 25% / 25%).
pub fn strategy(d: &Deployment) -> Strategy {
    let s = d.spec.as_ref().and_then(|s| s.strategy.as_ref());
    if s.and_then(|s| s.type_.as_deref()) == Some("Recreate") {
        return Strategy::Recreate;
    }
    let ru = s.and_then(|s| s.rolling_update.as_ref());
    let (max_surge, max_unavailable) = resolve_fenceposts(
        ru.and_then(|r| r.max_surge.as_ref()),
        ru.and_then(|r| r.max_unavailable.as_ref()),
        replicas(d),
    );
    Strategy::RollingUpdate {
        max_surge,
        max_unavailable,
    }
}

/// Upstream `ResolveFenceposts`: surge rounds up, unavailable rounds down,
/// both zero → unavailable 1. Missing values default to 25%.
pub fn resolve_fenceposts(
    surge: Option<&IntOrString>,
    unavailable: Option<&IntOrString>,
    desired: i32,
) -> (i32, i32) {
    let quarter = IntOrString::String("25%".into());
    let s = scaled_value(surge.unwrap_or(&quarter), desired, true);
    let u = scaled_value(unavailable.unwrap_or(&quarter), desired, false);
    if s == 0 && u == 0 { (0, 1) } else { (s, u) }
}

/// `GetScaledValueFromIntOrPercent`; an unparsable string counts as 0.
fn scaled_value(v: &IntOrString, total: i32, round_up: bool) -> i32 {
    match v {
        IntOrString::Int(i) => (*i).max(0),
        IntOrString::String(s) => {
            let Some(p) = s.strip_suffix('%').and_then(|p| p.parse::<i64>().ok()) else {
                return 0;
            };
            let num = p * total as i64;
            let v = if round_up {
                (num + 99).div_euclid(100)
            } else {
                num.div_euclid(100)
            };
            v.clamp(0, i32::MAX as i64) as i32
        }
    }
}

fn replicas(d: &Deployment) -> i32 {
    d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1).max(0)
}

fn max_surge(d: &Deployment) -> i32 {
    match strategy(d) {
        Strategy::RollingUpdate { max_surge, .. } => max_surge,
        Strategy::Recreate => 0,
    }
}

/// Upstream `MaxUnavailable`: 0 for Recreate or zero replicas, else ≤ replicas.
pub fn max_unavailable(d: &Deployment) -> i32 {
    match strategy(d) {
        Strategy::RollingUpdate {
            max_unavailable, ..
        } if replicas(d) > 0 => max_unavailable.min(replicas(d)),
        _ => 0,
    }
}

fn progress_deadline(d: &Deployment) -> Option<i32> {
    let v = d
        .spec
        .as_ref()
        .and_then(|s| s.progress_deadline_seconds)
        .unwrap_or(600);
    (v != i32::MAX).then_some(v)
}

fn paused(d: &Deployment) -> bool {
    d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false)
}

fn template(d: &Deployment) -> PodTemplateSpec {
    d.spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default()
}

fn min_ready_seconds(d: &Deployment) -> i32 {
    d.spec
        .as_ref()
        .and_then(|s| s.min_ready_seconds)
        .unwrap_or(0)
}

// ---------------------------------------------------------------- hashing

/// Stable pod-template-hash of `template` and `collision_count`: FNV-1a (32
/// bit) over the template's JSON (struct order, sorted maps) and the count's
/// little-endian bytes, its decimal form mapped onto the safe alphabet.
pub fn pod_template_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let mut bytes = serde_json::to_vec(template).unwrap_or_default();
    if let Some(c) = collision_count {
        bytes.extend_from_slice(&(c as u32).to_le_bytes());
    }
    let mut h: u32 = 0x811c_9dc5;
    for b in bytes {
        h ^= b as u32;
        h = h.wrapping_mul(0x0100_0193);
    }
    h.to_string()
        .bytes()
        .map(|c| SAFE_ALPHABET[c as usize % SAFE_ALPHABET.len()] as char)
        .collect()
}

/// Templates equal ignoring the `pod-template-hash` label (empty label or
/// annotation maps count as absent).
pub fn equal_ignore_hash(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    normalized(a) == normalized(b)
}

fn normalized(t: &PodTemplateSpec) -> PodTemplateSpec {
    let mut t = t.clone();
    let mut meta = t.metadata.take().unwrap_or_default();
    if let Some(l) = meta.labels.as_mut() {
        l.remove(POD_TEMPLATE_HASH);
    }
    meta.labels = meta.labels.filter(|l| !l.is_empty());
    meta.annotations = meta.annotations.filter(|l| !l.is_empty());
    t.metadata = (meta != ObjectMeta::default()).then_some(meta);
    t
}

/// What to do when creating the new ReplicaSet hit AlreadyExists.
#[derive(Clone, Debug, PartialEq)]
pub enum CreateConflict {
    /// The existing object is ours with our template: requeue and carry on.
    Ours,
    /// A hash collision: write this status (collisionCount bumped) and requeue.
    BumpCollisionCount(DeploymentStatus),
}

/// Decide about an AlreadyExists answer to `CreateReplicaSet`.
pub fn on_create_conflict(d: &Deployment, existing: &ReplicaSet) -> CreateConflict {
    let ours = podutil::controller_ref(&existing.metadata)
        .is_some_and(|r| Some(&r.uid) == d.metadata.uid.as_ref());
    let same = existing
        .spec
        .as_ref()
        .and_then(|s| s.template.as_ref())
        .is_some_and(|t| equal_ignore_hash(t, &template(d)));
    if ours && same {
        return CreateConflict::Ours;
    }
    let mut st = d.status.clone().unwrap_or_default();
    st.collision_count = Some(st.collision_count.unwrap_or(0).saturating_add(1));
    CreateConflict::BumpCollisionCount(st)
}

/// Event and (with a progress deadline) status after creating the new
/// ReplicaSet `rs_name` failed with `err`.
pub fn on_create_error(
    d: &Deployment,
    rs_name: &str,
    err: &str,
    now: DateTime<Utc>,
) -> (Event, Option<DeploymentStatus>) {
    let msg = format!("Failed to create new replica set {rs_name:?}: {err}");
    let status = progress_deadline(d).map(|_| {
        let mut st = d.status.clone().unwrap_or_default();
        set_condition(
            &mut st,
            condition(PROGRESSING, "False", RS_CREATE_ERROR, &msg, now),
        );
        st
    });
    (warning(RS_CREATE_ERROR, msg), status)
}

// ------------------------------------------------------------- conditions

fn condition(
    type_: &str,
    status: &str,
    reason: &str,
    msg: &str,
    now: DateTime<Utc>,
) -> DeploymentCondition {
    let t = podutil::chrono_to_time(truncate(now));
    DeploymentCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(msg.into()),
        last_update_time: Some(t.clone()),
        last_transition_time: Some(t),
    }
}

/// API times have second precision; keep ours comparable with read-backs.
fn truncate(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(t.timestamp(), 0).unwrap_or(t)
}

fn get_condition<'s>(st: &'s DeploymentStatus, type_: &str) -> Option<&'s DeploymentCondition> {
    st.conditions.as_ref()?.iter().find(|c| c.type_ == type_)
}

/// Upstream `SetDeploymentCondition`: same status+reason is a no-op; same
/// status keeps lastTransitionTime; the condition moves to the end.
fn set_condition(st: &mut DeploymentStatus, mut c: DeploymentCondition) {
    if let Some(cur) = get_condition(st, &c.type_) {
        if cur.status == c.status && cur.reason == c.reason {
            return;
        }
        if cur.status == c.status {
            c.last_transition_time = cur.last_transition_time.clone();
        }
    }
    remove_condition(st, &c.type_);
    st.conditions.get_or_insert_with(Vec::new).push(c);
}

fn remove_condition(st: &mut DeploymentStatus, type_: &str) {
    if let Some(cs) = st.conditions.as_mut() {
        cs.retain(|c| c.type_ != type_);
    }
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

/// The status as Go would put it on the wire (zero integers and empty
/// lists omitted), so equal statuses compare equal after a round trip.
pub fn normalize_status(s: &DeploymentStatus) -> DeploymentStatus {
    let nz = |v: Option<i32>| v.filter(|v| *v != 0);
    DeploymentStatus {
        available_replicas: nz(s.available_replicas),
        collision_count: s.collision_count,
        conditions: s.conditions.clone().filter(|c| !c.is_empty()),
        observed_generation: s.observed_generation.filter(|g| *g != 0),
        ready_replicas: nz(s.ready_replicas),
        replicas: nz(s.replicas),
        terminating_replicas: nz(s.terminating_replicas),
        unavailable_replicas: nz(s.unavailable_replicas),
        updated_replicas: nz(s.updated_replicas),
    }
}

// ------------------------------------------------------- replica set facts

fn rs_spec_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec
        .as_ref()
        .map(|s| s.replicas.unwrap_or(1))
        .unwrap_or(0)
}

fn rs_status(rs: &ReplicaSet) -> (i32, i32, i32) {
    rs.status
        .as_ref()
        .map(|s| {
            (
                s.replicas,
                s.ready_replicas.unwrap_or(0),
                s.available_replicas.unwrap_or(0),
            )
        })
        .unwrap_or_default()
}

fn annotation<'r>(rs: &'r ReplicaSet, key: &str) -> Option<&'r str> {
    rs.metadata
        .annotations
        .as_ref()?
        .get(key)
        .map(String::as_str)
}

fn revision_of(rs: &ReplicaSet) -> i64 {
    annotation(rs, REVISION)
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

fn int_annotation(rs: &ReplicaSet, key: &str) -> Option<i32> {
    annotation(rs, key)?.parse().ok()
}

/// Upstream `SetReplicasAnnotations`; true when something changed.
fn set_replicas_annotations(rs: &mut ReplicaSet, desired: i32, max: i32) -> bool {
    let a = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
    let mut changed = false;
    for (k, v) in [(DESIRED_REPLICAS, desired), (MAX_REPLICAS, max)] {
        let v = v.to_string();
        if a.get(k) != Some(&v) {
            a.insert(k.into(), v);
            changed = true;
        }
    }
    changed
}

fn replicas_annotations_need_update(rs: &ReplicaSet, desired: i32, max: i32) -> bool {
    annotation(rs, DESIRED_REPLICAS) != Some(desired.to_string().as_str())
        || annotation(rs, MAX_REPLICAS) != Some(max.to_string().as_str())
}

fn skip_copy(key: &str) -> bool {
    [
        LAST_APPLIED,
        REVISION,
        REVISION_HISTORY,
        DESIRED_REPLICAS,
        MAX_REPLICAS,
        ROLLBACK_TO,
    ]
    .contains(&key)
}

/// Copy the Deployment's annotations onto the ReplicaSet (except the skipped ones).
fn copy_annotations(d: &Deployment, rs: &mut ReplicaSet) -> bool {
    let a = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
    let mut changed = false;
    for (k, v) in d.metadata.annotations.iter().flatten() {
        if skip_copy(k) || a.get(k) == Some(v) {
            continue;
        }
        a.insert(k.clone(), v.clone());
        changed = true;
    }
    changed
}

/// Upstream `SetNewReplicaSetAnnotations`.
fn set_new_rs_annotations(d: &Deployment, rs: &mut ReplicaSet, new_rev: i64, exists: bool) -> bool {
    let mut changed = copy_annotations(d, rs);
    let a = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
    let old = a.get(REVISION).cloned();
    let old_int = match old.as_deref().map(str::parse::<i64>) {
        Some(Ok(v)) => v,
        Some(Err(_)) if old.as_deref() != Some("") => return changed,
        _ => 0,
    };
    if old_int < new_rev {
        a.insert(REVISION.into(), new_rev.to_string());
        changed = true;
        if let Some(old) = old.filter(|o| !o.is_empty()) {
            push_history(a, &old);
        }
    }
    let desired = replicas(d);
    if !exists && set_replicas_annotations(rs, desired, desired + max_surge(d)) {
        changed = true;
    }
    changed
}

fn push_history(a: &mut BTreeMap<String, String>, old: &str) {
    let hist = a.get(REVISION_HISTORY).cloned().unwrap_or_default();
    if hist.is_empty() {
        a.insert(REVISION_HISTORY.into(), old.into());
        return;
    }
    let mut revs: Vec<&str> = hist.split(',').collect();
    let mut total = hist.len() + old.len() + 1;
    let mut start = 0;
    while total > MAX_REV_HISTORY_CHARS && start < revs.len() {
        total -= revs[start].len() + 1;
        start += 1;
    }
    if total <= MAX_REV_HISTORY_CHARS {
        revs = revs.split_off(start);
        revs.push(old);
        a.insert(REVISION_HISTORY.into(), revs.join(","));
    }
}

// ------------------------------------------------------------ the planner

struct Work {
    rs: ReplicaSet,
    created: bool,
    changed: bool,
}

struct Sync<'a> {
    d: &'a Deployment,
    name: String,
    replicas: i32,
    now: DateTime<Utc>,
    rss: Vec<Work>,
    new: Option<usize>,
    resolved: bool,
    /// The Deployment's status as upstream mutates it in place during a sync.
    status: DeploymentStatus,
    revision: Option<String>,
    events: Vec<Event>,
    deletes: Vec<(String, String)>,
}

/// Plan one sync of `d`. `replica_sets` and `pods` may be everything in the
/// namespace; unrelated objects are ignored.
pub fn plan<R: Borrow<ReplicaSet>, P: Borrow<Pod>>(
    d: &Deployment,
    replica_sets: &[R],
    pods: &[P],
    now: DateTime<Utc>,
) -> Plan {
    let pods: Vec<&Pod> = pods.iter().map(|p| p.borrow()).collect();
    let replica_sets: Vec<&ReplicaSet> = replica_sets.iter().map(|r| r.borrow()).collect();
    let original = d.status.clone().unwrap_or_default();
    let selector = d
        .spec
        .as_ref()
        .map(|s| s.selector.clone())
        .unwrap_or_default();
    if selects_everything(&selector) {
        return selecting_all(d, &original);
    }
    let (claims, owned) = claim_replica_sets(d, &selector, &replica_sets);
    let mut s = Sync::new(d, owned, original.clone(), now);
    let status = s.run(&pods);
    let requeue_after = s.requeue(&status);
    let mut actions = claims;
    actions.extend(s.writes());
    let changed = normalize_status(&status) != normalize_status(&original);
    Plan {
        actions,
        revision: s.revision,
        status: changed.then(|| normalize_status(&status)),
        requeue_after,
    }
}

fn selects_everything(sel: &LabelSelector) -> bool {
    sel.match_labels.as_ref().is_none_or(|m| m.is_empty())
        && sel.match_expressions.as_ref().is_none_or(|e| e.is_empty())
}

fn selecting_all(d: &Deployment, original: &DeploymentStatus) -> Plan {
    let ev = warning(
        "SelectingAll",
        "This deployment is selecting all pods. A non-empty selector is required.".into(),
    );
    let mut status = None;
    if original.observed_generation.unwrap_or(0) < d.metadata.generation.unwrap_or(0) {
        let mut st = original.clone();
        st.observed_generation = d.metadata.generation;
        status = Some(normalize_status(&st));
    }
    Plan {
        actions: vec![Action::Event(ev)],
        status,
        ..Default::default()
    }
}

/// Upstream `ClaimReplicaSets`: the owned set (adopted included) and patches.
fn claim_replica_sets(
    d: &Deployment,
    sel: &LabelSelector,
    all: &[&ReplicaSet],
) -> (Vec<Action>, Vec<ReplicaSet>) {
    let uid = d.metadata.uid.clone().unwrap_or_default();
    let ns = d.metadata.namespace.as_deref().unwrap_or_default();
    let deleting = d.metadata.deletion_timestamp.is_some();
    let (mut actions, mut owned) = (Vec::new(), Vec::new());
    let none = BTreeMap::new();
    for rs in all {
        let rs_ns = rs.metadata.namespace.as_deref().unwrap_or_default();
        if !ns.is_empty() && !rs_ns.is_empty() && rs_ns != ns {
            continue;
        }
        let matches = podutil::selector_matches(sel, rs.metadata.labels.as_ref().unwrap_or(&none));
        match podutil::controller_ref(&rs.metadata) {
            Some(r) if r.uid != uid => {}
            Some(_) if matches => owned.push((*rs).clone()),
            Some(_) if deleting => {}
            Some(_) => actions.push(Action::ReleaseReplicaSet(release_patch(&rs.metadata, &uid))),
            None if matches && !deleting && rs.metadata.deletion_timestamp.is_none() => {
                let name = d.metadata.name.as_deref().unwrap_or_default();
                let r = podutil::owner_ref("apps/v1", "Deployment", name, &uid);
                actions.push(Action::AdoptReplicaSet(adopt_patch(&rs.metadata, r)));
                owned.push((*rs).clone());
            }
            None => {}
        }
    }
    (actions, owned)
}

fn by_creation(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    let t = |r: &ReplicaSet| {
        r.metadata
            .creation_timestamp
            .as_ref()
            .map(podutil::time_to_chrono)
    };
    t(a).cmp(&t(b))
        .then_with(|| a.metadata.name.cmp(&b.metadata.name))
}

impl<'a> Sync<'a> {
    fn new(
        d: &'a Deployment,
        mut owned: Vec<ReplicaSet>,
        status: DeploymentStatus,
        now: DateTime<Utc>,
    ) -> Self {
        owned.sort_by(by_creation);
        Sync {
            d,
            name: d.metadata.name.clone().unwrap_or_default(),
            replicas: replicas(d),
            now,
            rss: owned
                .into_iter()
                .map(|rs| Work {
                    rs,
                    created: false,
                    changed: false,
                })
                .collect(),
            new: None,
            resolved: false,
            status,
            revision: None,
            events: Vec::new(),
            deletes: Vec::new(),
        }
    }

    /// Upstream `syncDeployment` after claiming; returns the new status.
    fn run(&mut self, pods: &[&Pod]) -> DeploymentStatus {
        if self.d.metadata.deletion_timestamp.is_some() {
            self.resolve_new(false);
            return self.calculate_status();
        }
        self.check_paused_conditions();
        if paused(self.d) || self.is_scaling_event() {
            return self.sync_scale();
        }
        match strategy(self.d) {
            Strategy::Recreate => self.rollout_recreate(pods),
            Strategy::RollingUpdate { .. } => self.rollout_rolling(),
        }
    }

    /// The actions for the ReplicaSet writes and events, in order.
    fn writes(&mut self) -> Vec<Action> {
        let mut out = Vec::new();
        for w in self.rss.iter().filter(|w| w.created) {
            out.push(Action::CreateReplicaSet(w.rs.clone()));
        }
        for w in self.rss.iter().filter(|w| w.changed && !w.created) {
            out.push(Action::UpdateReplicaSet(w.rs.clone()));
        }
        for (name, uid) in self.deletes.drain(..) {
            out.push(Action::DeleteReplicaSet { name, uid });
        }
        out.extend(self.events.drain(..).map(Action::Event));
        out
    }

    // ---- facts

    fn spec(&self, i: usize) -> i32 {
        rs_spec_replicas(&self.rss[i].rs)
    }

    fn rs_name(&self, i: usize) -> String {
        self.rss[i].rs.metadata.name.clone().unwrap_or_default()
    }

    fn old(&self) -> Vec<usize> {
        (0..self.rss.len())
            .filter(|i| Some(*i) != self.new)
            .collect()
    }

    fn all(&self) -> Vec<usize> {
        (0..self.rss.len()).collect()
    }

    fn active(&self, ids: &[usize]) -> Vec<usize> {
        ids.iter().copied().filter(|i| self.spec(*i) > 0).collect()
    }

    fn total_spec(&self, ids: &[usize]) -> i32 {
        ids.iter().map(|i| self.spec(*i)).sum()
    }

    fn available(&self, ids: &[usize]) -> i32 {
        ids.iter().map(|i| rs_status(&self.rss[*i].rs).2).sum()
    }

    fn has_deadline(&self) -> bool {
        progress_deadline(self.d).is_some()
    }

    fn complete(&self, st: &DeploymentStatus) -> bool {
        let r = Some(self.replicas).filter(|r| *r != 0);
        let nz = |v: Option<i32>| v.filter(|v| *v != 0);
        nz(st.updated_replicas) == r
            && nz(st.replicas) == r
            && nz(st.available_replicas) == r
            && st.observed_generation.unwrap_or(0) >= self.d.metadata.generation.unwrap_or(0)
    }

    fn set_revision(&mut self, rev: &str) {
        let cur = self
            .d
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(REVISION))
            .map(String::as_str);
        if cur != Some(rev) {
            self.revision = Some(rev.to_string());
        }
    }

    // ---- new / old replica sets

    /// Upstream `getAllReplicaSetsAndSyncRevision` / `getNewReplicaSet`.
    fn resolve_new(&mut self, create: bool) {
        if !self.resolved {
            self.resolved = true;
            let tmpl = template(self.d);
            self.new = self.rss.iter().position(|w| {
                w.rs.spec
                    .as_ref()
                    .and_then(|s| s.template.as_ref())
                    .is_some_and(|t| equal_ignore_hash(t, &tmpl))
            });
            if let Some(i) = self.new {
                self.sync_existing_new(i);
            }
        }
        if self.new.is_none() && create {
            self.create_new();
        }
    }

    fn max_old_revision(&self) -> i64 {
        self.old()
            .iter()
            .map(|i| revision_of(&self.rss[*i].rs))
            .max()
            .unwrap_or(0)
    }

    fn sync_existing_new(&mut self, i: usize) {
        let new_rev = self.max_old_revision() + 1;
        let mrs = min_ready_seconds(self.d);
        let w = &mut self.rss[i];
        let mut changed = set_new_rs_annotations(self.d, &mut w.rs, new_rev, true);
        let spec = w.rs.spec.get_or_insert_with(Default::default);
        if spec.min_ready_seconds.unwrap_or(0) != mrs {
            spec.min_ready_seconds = Some(mrs);
            changed = true;
        }
        w.changed |= changed;
        let rev = annotation(&w.rs, REVISION).unwrap_or_default().to_string();
        let msg = format!("Found new replica set {:?}", self.rs_name(i));
        self.set_revision(&rev);
        if self.has_deadline() && get_condition(&self.status, PROGRESSING).is_none() {
            let c = condition(PROGRESSING, "True", FOUND_NEW_RS, &msg, self.now);
            set_condition(&mut self.status, c);
        }
    }

    fn create_new(&mut self) {
        let d = self.d;
        let new_rev = self.max_old_revision() + 1;
        let collision = d.status.as_ref().and_then(|s| s.collision_count);
        let hash = pod_template_hash(&template(d), collision);
        let mut tmpl = template(d);
        let meta = tmpl.metadata.get_or_insert_with(Default::default);
        meta.labels
            .get_or_insert_with(BTreeMap::new)
            .insert(POD_TEMPLATE_HASH.into(), hash.clone());
        let labels = meta.labels.clone();
        let mut selector = d
            .spec
            .as_ref()
            .map(|s| s.selector.clone())
            .unwrap_or_default();
        selector
            .match_labels
            .get_or_insert_with(BTreeMap::new)
            .insert(POD_TEMPLATE_HASH.into(), hash.clone());
        let mrs = min_ready_seconds(d);
        let name = format!("{}-{}", self.name, hash);
        let uid = d.metadata.uid.clone().unwrap_or_default();
        let rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: d.metadata.namespace.clone(),
                owner_references: Some(vec![podutil::owner_ref(
                    "apps/v1",
                    "Deployment",
                    &self.name,
                    &uid,
                )]),
                labels,
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(0),
                min_ready_seconds: (mrs != 0).then_some(mrs),
                selector,
                template: Some(tmpl),
            }),
            status: None,
        };
        self.rss.push(Work {
            rs,
            created: true,
            changed: true,
        });
        let i = self.rss.len() - 1;
        self.new = Some(i);
        let n = self.new_rs_new_replicas(i);
        let w = &mut self.rss[i];
        if let Some(s) = w.rs.spec.as_mut() {
            s.replicas = Some(n);
        }
        set_new_rs_annotations(d, &mut w.rs, new_rev, false);
        if n > 0 {
            let msg = format!("Scaled up replica set {name} from 0 to {n}");
            self.events.push(normal("ScalingReplicaSet", msg));
        }
        self.set_revision(&new_rev.to_string());
        if self.has_deadline() {
            let msg = format!("Created new replica set {name:?}");
            let c = condition(PROGRESSING, "True", NEW_RS_CREATED, &msg, self.now);
            set_condition(&mut self.status, c);
        }
    }

    /// Upstream `NewRSNewReplicas`.
    fn new_rs_new_replicas(&self, new: usize) -> i32 {
        match strategy(self.d) {
            Strategy::Recreate => self.replicas,
            Strategy::RollingUpdate { max_surge, .. } => {
                let current = self.total_spec(&self.all());
                let max_total = self.replicas + max_surge;
                let spec = self.spec(new);
                if current >= max_total {
                    return spec;
                }
                spec + (max_total - current).min(self.replicas - spec)
            }
        }
    }

    // ---- scaling primitives

    /// Upstream `scaleReplicaSet`: writes size and replica annotations.
    fn scale_rs(&mut self, i: usize, n: i32, op: &str) -> bool {
        let (desired, max) = (self.replicas, self.replicas + max_surge(self.d));
        let old = self.spec(i);
        let size = old != n;
        if size || replicas_annotations_need_update(&self.rss[i].rs, desired, max) {
            let w = &mut self.rss[i];
            if let Some(s) = w.rs.spec.as_mut() {
                s.replicas = Some(n);
            }
            set_replicas_annotations(&mut w.rs, desired, max);
            w.changed = true;
        }
        if size {
            let msg = format!(
                "Scaled {op} replica set {} from {old} to {n}",
                self.rs_name(i)
            );
            self.events.push(normal("ScalingReplicaSet", msg));
        }
        size
    }

    /// Upstream `scaleReplicaSetAndRecordEvent`.
    fn scale_and_record(&mut self, i: usize, n: i32) -> bool {
        let old = self.spec(i);
        if old == n {
            return false;
        }
        self.scale_rs(i, n, if old < n { "up" } else { "down" })
    }

    // ---- strategies

    fn rollout_rolling(&mut self) -> DeploymentStatus {
        self.resolve_new(true);
        if self.reconcile_new() || self.reconcile_old() {
            return self.sync_rollout_status();
        }
        if self.complete(&self.status.clone()) {
            self.cleanup();
        }
        self.sync_rollout_status()
    }

    fn reconcile_new(&mut self) -> bool {
        let Some(new) = self.new else { return false };
        let spec = self.spec(new);
        match spec.cmp(&self.replicas) {
            Ordering::Equal => false,
            Ordering::Greater => self.scale_and_record(new, self.replicas),
            Ordering::Less => {
                let n = self.new_rs_new_replicas(new);
                self.scale_and_record(new, n)
            }
        }
    }

    /// Upstream `reconcileOldReplicaSets`.
    fn reconcile_old(&mut self) -> bool {
        let old = self.active(&self.old());
        if self.total_spec(&old) == 0 {
            return false;
        }
        let all = self.total_spec(&self.all());
        let min_available = self.replicas - max_unavailable(self.d);
        let new_unavailable = self
            .new
            .map(|n| self.spec(n) - rs_status(&self.rss[n].rs).2)
            .unwrap_or(0);
        let max_scaled_down = all - min_available - new_unavailable;
        if max_scaled_down <= 0 {
            return false;
        }
        let cleaned = self.cleanup_unhealthy(&old, max_scaled_down);
        let scaled = self.scale_down_old_rolling(&old);
        cleaned + scaled > 0
    }

    fn cleanup_unhealthy(&mut self, old: &[usize], max: i32) -> i32 {
        let mut total = 0;
        for &i in old {
            if total >= max {
                break;
            }
            let (spec, avail) = (self.spec(i), rs_status(&self.rss[i].rs).2);
            if spec == 0 || spec <= avail {
                continue;
            }
            let down = (max - total).min(spec - avail);
            self.scale_and_record(i, spec - down);
            total += down;
        }
        total
    }

    fn scale_down_old_rolling(&mut self, old: &[usize]) -> i32 {
        let min_available = self.replicas - max_unavailable(self.d);
        let mut all: Vec<usize> = old.to_vec();
        all.extend(self.new);
        let available = self.available(&all);
        if available <= min_available {
            return 0;
        }
        let budget = available - min_available;
        let mut total = 0;
        for &i in old {
            if total >= budget {
                break;
            }
            let spec = self.spec(i);
            if spec == 0 {
                continue;
            }
            let down = spec.min(budget - total);
            self.scale_and_record(i, spec - down);
            total += down;
        }
        total
    }

    fn rollout_recreate(&mut self, pods: &[&Pod]) -> DeploymentStatus {
        self.resolve_new(false);
        let mut scaled = false;
        for i in self.active(&self.old()) {
            scaled |= self.scale_and_record(i, 0);
        }
        if scaled || self.old_pods_running(pods) {
            return self.sync_rollout_status();
        }
        self.resolve_new(true);
        if let Some(new) = self.new {
            self.scale_and_record(new, self.replicas);
        }
        if self.complete(&self.status.clone()) {
            self.cleanup();
        }
        self.sync_rollout_status()
    }

    /// Upstream `oldPodsRunning`.
    fn old_pods_running(&self, pods: &[&Pod]) -> bool {
        let old = self.old();
        if old
            .iter()
            .map(|i| rs_status(&self.rss[*i].rs).0)
            .sum::<i32>()
            > 0
        {
            return true;
        }
        let uids: BTreeSet<&str> = old
            .iter()
            .filter_map(|i| self.rss[*i].rs.metadata.uid.as_deref())
            .collect();
        pods.iter().any(|p| {
            podutil::controller_ref(&p.metadata).is_some_and(|r| uids.contains(r.uid.as_str()))
                && !podutil::is_terminal(p)
        })
    }

    // ---- scaling events / paused

    fn is_scaling_event(&mut self) -> bool {
        self.resolve_new(false);
        self.active(&self.all()).iter().any(|i| {
            int_annotation(&self.rss[*i].rs, DESIRED_REPLICAS).is_some_and(|d| d != self.replicas)
        })
    }

    fn check_paused_conditions(&mut self) {
        if !self.has_deadline() {
            return;
        }
        let reason = get_condition(&self.status, PROGRESSING).and_then(|c| c.reason.clone());
        if reason.as_deref() == Some(TIMED_OUT) {
            return;
        }
        let paused_cond = reason.as_deref() == Some(PAUSED);
        let c = match (paused(self.d), paused_cond) {
            (true, false) => condition(
                PROGRESSING,
                "Unknown",
                PAUSED,
                "Deployment is paused",
                self.now,
            ),
            (false, true) => condition(
                PROGRESSING,
                "Unknown",
                RESUMED,
                "Deployment is resumed",
                self.now,
            ),
            _ => return,
        };
        set_condition(&mut self.status, c);
    }

    /// Upstream `sync`: scaling only (paused Deployments or replica changes).
    fn sync_scale(&mut self) -> DeploymentStatus {
        self.resolve_new(false);
        self.proportional_scale();
        if paused(self.d) {
            self.cleanup();
        }
        self.calculate_status()
    }

    /// Upstream `FindActiveOrLatest`.
    fn active_or_latest(&self) -> Option<usize> {
        let mut old = self.old();
        if self.new.is_none() && old.is_empty() {
            return None;
        }
        old.reverse();
        let mut all = old.clone();
        all.extend(self.new);
        let active = self.active(&all);
        match active.len() {
            0 => self.new.or(old.first().copied()),
            1 => Some(active[0]),
            _ => None,
        }
    }

    fn is_saturated(&self, i: usize) -> bool {
        let rs = &self.rss[i].rs;
        self.spec(i) == self.replicas
            && int_annotation(rs, DESIRED_REPLICAS) == Some(self.replicas)
            && rs_status(rs).2 == self.replicas
    }

    /// Upstream `scale`.
    fn proportional_scale(&mut self) {
        if let Some(i) = self.active_or_latest() {
            if self.spec(i) != self.replicas {
                self.scale_and_record(i, self.replicas);
            }
            return;
        }
        if self.new.is_some_and(|n| self.is_saturated(n)) {
            for i in self.active(&self.old()) {
                self.scale_and_record(i, 0);
            }
            return;
        }
        if !matches!(strategy(self.d), Strategy::RollingUpdate { .. }) {
            return;
        }
        let mut ids = self.old();
        ids.extend(self.new);
        let mut ids = self.active(&ids);
        let allowed = if self.replicas > 0 {
            self.replicas + max_surge(self.d)
        } else {
            0
        };
        let to_add = allowed - self.total_spec(&ids);
        let newer_first = to_add > 0;
        ids.sort_by(|a, b| {
            let by_age = by_creation(&self.rss[*a].rs, &self.rss[*b].rs);
            let by_age = if newer_first {
                by_age.reverse()
            } else {
                by_age
            };
            self.spec(*b).cmp(&self.spec(*a)).then(by_age)
        });
        let op = match to_add.cmp(&0) {
            Ordering::Greater => "up",
            Ordering::Less => "down",
            Ordering::Equal => "",
        };
        let mut added = 0;
        let mut sizes = Vec::with_capacity(ids.len());
        for &i in &ids {
            let p = if to_add != 0 {
                self.proportion(i, to_add, added)
            } else {
                0
            };
            sizes.push(self.spec(i) + p);
            added += p;
        }
        if let Some(first) = sizes.first_mut()
            && to_add != 0
        {
            *first = (*first + to_add - added).max(0);
        }
        for (k, &i) in ids.iter().enumerate() {
            self.scale_rs(i, sizes[k], op);
        }
    }

    /// Upstream `GetReplicaSetProportion`.
    fn proportion(&self, i: usize, to_add: i32, added: i32) -> i32 {
        let spec = self.spec(i);
        if spec == 0 || to_add == 0 || to_add == added {
            return 0;
        }
        let fraction = self.fraction(i);
        let allowed = to_add - added;
        if to_add > 0 {
            fraction.min(allowed)
        } else {
            fraction.max(allowed)
        }
    }

    fn fraction(&self, i: usize) -> i32 {
        let spec = self.spec(i);
        if self.replicas == 0 {
            return -spec;
        }
        let max_now = self.replicas + max_surge(self.d);
        let before = match int_annotation(&self.rss[i].rs, MAX_REPLICAS) {
            Some(v) if v != 0 => v,
            _ => self.d.status.as_ref().and_then(|s| s.replicas).unwrap_or(0),
        };
        if before == 0 {
            return 0;
        }
        let size = (spec as f64 * max_now as f64) / before as f64;
        size.round() as i32 - spec
    }

    // ---- cleanup

    /// Upstream `cleanupDeployment`: delete the oldest surplus empty old RSes.
    fn cleanup(&mut self) {
        let limit = self
            .d
            .spec
            .as_ref()
            .and_then(|s| s.revision_history_limit)
            .unwrap_or(10);
        if limit == i32::MAX {
            return;
        }
        let mut alive: Vec<usize> = self
            .old()
            .into_iter()
            .filter(|i| self.rss[*i].rs.metadata.deletion_timestamp.is_none())
            .collect();
        let diff = alive.len() as i64 - limit.max(0) as i64;
        if diff <= 0 {
            return;
        }
        alive.sort_by(|a, b| {
            let (ra, rb) = (&self.rss[*a].rs, &self.rss[*b].rs);
            revision_of(ra)
                .cmp(&revision_of(rb))
                .then_with(|| by_creation(ra, rb))
        });
        for &i in alive.iter().take(diff as usize) {
            let w = &self.rss[i];
            let rs = &w.rs;
            let observed = rs
                .status
                .as_ref()
                .and_then(|s| s.observed_generation)
                .unwrap_or(0);
            if w.changed
                || rs_status(rs).0 != 0
                || self.spec(i) != 0
                || rs.metadata.generation.unwrap_or(0) > observed
            {
                continue;
            }
            let name = rs.metadata.name.clone().unwrap_or_default();
            let uid = rs.metadata.uid.clone().unwrap_or_default();
            self.deletes.push((name, uid));
        }
    }

    // ---- status

    /// Upstream `calculateStatus` (conditions from the working status).
    fn calculate_status(&self) -> DeploymentStatus {
        let all = self.all();
        let available = self.available(&all);
        let total = self.total_spec(&all);
        let sum = |f: fn((i32, i32, i32)) -> i32, ids: &[usize]| -> i32 {
            ids.iter().map(|i| f(rs_status(&self.rss[*i].rs))).sum()
        };
        let mut st = DeploymentStatus {
            observed_generation: self.d.metadata.generation,
            replicas: Some(sum(|s| s.0, &all)),
            updated_replicas: Some(self.new.map(|n| rs_status(&self.rss[n].rs).0).unwrap_or(0)),
            ready_replicas: Some(sum(|s| s.1, &all)),
            available_replicas: Some(available),
            unavailable_replicas: Some((total - available).max(0)),
            collision_count: self.d.status.as_ref().and_then(|s| s.collision_count),
            conditions: self.status.conditions.clone(),
            terminating_replicas: None,
        };
        let c = if available >= self.replicas - max_unavailable(self.d) {
            condition(
                AVAILABLE,
                "True",
                "MinimumReplicasAvailable",
                "Deployment has minimum availability.",
                self.now,
            )
        } else {
            condition(
                AVAILABLE,
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.",
                self.now,
            )
        };
        set_condition(&mut st, c);
        st
    }

    fn subject(&self) -> String {
        match self.new {
            Some(i) => format!("ReplicaSet {:?}", self.rs_name(i)),
            None => format!("Deployment {:?}", self.name),
        }
    }

    /// Upstream `syncRolloutStatus`.
    fn sync_rollout_status(&mut self) -> DeploymentStatus {
        let mut ns = self.calculate_status();
        if !self.has_deadline() {
            remove_condition(&mut ns, PROGRESSING);
        }
        let cur = get_condition(&self.status, PROGRESSING).cloned();
        let done = ns.replicas == ns.updated_replicas
            && cur.as_ref().and_then(|c| c.reason.as_deref()) == Some(NEW_RS_AVAILABLE);
        if self.has_deadline() && !done {
            self.estimate_progress(&mut ns, cur);
        }
        match self.replica_failure() {
            Some(c) => set_condition(&mut ns, c),
            None => remove_condition(&mut ns, REPLICA_FAILURE),
        }
        ns
    }

    fn estimate_progress(&self, ns: &mut DeploymentStatus, cur: Option<DeploymentCondition>) {
        let subject = self.subject();
        if self.complete(ns) {
            let msg = format!("{subject} has successfully progressed.");
            set_condition(
                ns,
                condition(PROGRESSING, "True", NEW_RS_AVAILABLE, &msg, self.now),
            );
        } else if self.progressed(ns) {
            let msg = format!("{subject} is progressing.");
            let mut c = condition(PROGRESSING, "True", RS_UPDATED, &msg, self.now);
            if let Some(cur) = cur {
                if cur.status == "True" {
                    c.last_transition_time = cur.last_transition_time;
                }
                remove_condition(ns, PROGRESSING);
            }
            set_condition(ns, c);
        } else if self.timed_out(ns) {
            let msg = format!("{subject} has timed out progressing.");
            set_condition(
                ns,
                condition(PROGRESSING, "False", TIMED_OUT, &msg, self.now),
            );
        }
    }

    /// Upstream `DeploymentProgressing`.
    fn progressed(&self, ns: &DeploymentStatus) -> bool {
        let o = &self.status;
        let v = |x: Option<i32>| x.unwrap_or(0);
        let old_old = v(o.replicas) - v(o.updated_replicas);
        let new_old = v(ns.replicas) - v(ns.updated_replicas);
        v(ns.updated_replicas) > v(o.updated_replicas)
            || new_old < old_old
            || v(ns.ready_replicas) > v(o.ready_replicas)
            || v(ns.available_replicas) > v(o.available_replicas)
    }

    /// Upstream `DeploymentTimedOut`.
    fn timed_out(&self, ns: &DeploymentStatus) -> bool {
        let (Some(deadline), Some(c)) = (progress_deadline(self.d), get_condition(ns, PROGRESSING))
        else {
            return false;
        };
        match c.reason.as_deref() {
            Some(NEW_RS_AVAILABLE) => false,
            Some(TIMED_OUT) => true,
            _ => c.last_update_time.as_ref().is_some_and(|t| {
                podutil::time_to_chrono(t) + chrono::Duration::seconds(deadline as i64) < self.now
            }),
        }
    }

    /// Upstream `getReplicaFailures`: the new RS's failure wins.
    fn replica_failure(&self) -> Option<DeploymentCondition> {
        let mut order: Vec<usize> = self.new.into_iter().collect();
        order.extend(self.old());
        order.iter().find_map(|i| {
            let c = self.rss[*i]
                .rs
                .status
                .as_ref()?
                .conditions
                .as_ref()?
                .iter()
                .find(|c| c.type_ == REPLICA_FAILURE)?;
            Some(DeploymentCondition {
                type_: REPLICA_FAILURE.into(),
                status: c.status.clone(),
                reason: c.reason.clone(),
                message: c.message.clone(),
                last_update_time: c.last_transition_time.clone(),
                last_transition_time: c.last_transition_time.clone(),
            })
        })
    }

    /// Upstream `requeueStuckDeployment` (plus a minReadySeconds recheck).
    fn requeue(&self, ns: &DeploymentStatus) -> Option<Duration> {
        let mut out: Option<Duration> = None;
        let c = get_condition(ns, PROGRESSING);
        if let (Some(deadline), Some(c), false) = (progress_deadline(self.d), c, paused(self.d))
            && !self.complete(ns)
            && c.reason.as_deref() != Some(TIMED_OUT)
            && let Some(t) = c.last_update_time.as_ref()
        {
            let at = podutil::time_to_chrono(t) + chrono::Duration::seconds(deadline as i64);
            let after = (at - self.now).num_milliseconds();
            let ms = if after < 1000 { 1000 } else { after + 1000 };
            out = Some(Duration::from_millis(ms as u64));
        }
        let mrs = min_ready_seconds(self.d);
        if mrs > 0 && ns.ready_replicas.unwrap_or(0) > ns.available_replicas.unwrap_or(0) {
            let d = Duration::from_secs(mrs as u64);
            out = Some(out.map_or(d, |o| o.min(d)));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    const NO_PODS: &[Pod] = &[];
    const NO_RS: &[ReplicaSet] = &[];
    use crate::controllers::replicaset::plan as rsplan;
    use k8s_openapi::api::apps::v1::{DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment};
    use k8s_openapi::api::core::v1::{Container, PodCondition, PodSpec, PodStatus};

    fn t0() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2024-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn secs(n: i64) -> chrono::Duration {
        chrono::Duration::seconds(n)
    }

    fn labels(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn tmpl(image: &str) -> PodTemplateSpec {
        PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some(labels(&[("app", "web")])),
                ..Default::default()
            }),
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "c".into(),
                    image: Some(image.into()),
                    ..Default::default()
                }],
                ..Default::default()
            }),
        }
    }

    fn ios(v: &str) -> IntOrString {
        match v.parse::<i32>() {
            Ok(i) => IntOrString::Int(i),
            Err(_) => IntOrString::String(v.into()),
        }
    }

    fn deploy(replicas: i32, surge: &str, unavail: &str) -> Deployment {
        Deployment {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("ns".into()),
                uid: Some("d-uid".into()),
                generation: Some(1),
                ..Default::default()
            },
            spec: Some(DeploymentSpec {
                replicas: Some(replicas),
                selector: LabelSelector {
                    match_labels: Some(labels(&[("app", "web")])),
                    ..Default::default()
                },
                template: tmpl("v1"),
                strategy: Some(DeploymentStrategy {
                    type_: Some("RollingUpdate".into()),
                    rolling_update: Some(RollingUpdateDeployment {
                        max_surge: Some(ios(surge)),
                        max_unavailable: Some(ios(unavail)),
                    }),
                }),
                ..Default::default()
            }),
            status: None,
        }
    }

    /// An owned RS of `d` with `template`, `spec`/`available` replicas.
    fn owned_rs(
        d: &Deployment,
        t: &PodTemplateSpec,
        rev: i64,
        spec: i32,
        avail: i32,
        age: i64,
    ) -> ReplicaSet {
        let hash = pod_template_hash(t, None);
        let mut t = t.clone();
        let mut l = labels(&[("app", "web")]);
        l.insert(POD_TEMPLATE_HASH.into(), hash.clone());
        t.metadata.as_mut().unwrap().labels = Some(l.clone());
        ReplicaSet {
            metadata: ObjectMeta {
                name: Some(format!("web-{hash}")),
                namespace: Some("ns".into()),
                uid: Some(format!("rs-{hash}")),
                labels: Some(l),
                generation: Some(1),
                creation_timestamp: Some(podutil::chrono_to_time(t0() - secs(age))),
                annotations: Some(labels(&[
                    (REVISION, &rev.to_string()),
                    (DESIRED_REPLICAS, &replicas(d).to_string()),
                    (MAX_REPLICAS, &(replicas(d) + max_surge(d)).to_string()),
                ])),
                owner_references: Some(vec![podutil::owner_ref(
                    "apps/v1",
                    "Deployment",
                    "web",
                    "d-uid",
                )]),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(spec),
                selector: d.spec.as_ref().unwrap().selector.clone(),
                template: Some(t),
                min_ready_seconds: None,
            }),
            status: Some(k8s_openapi::api::apps::v1::ReplicaSetStatus {
                replicas: spec,
                ready_replicas: Some(avail),
                available_replicas: Some(avail),
                observed_generation: Some(1),
                ..Default::default()
            }),
        }
    }

    fn events(p: &Plan) -> Vec<String> {
        p.actions
            .iter()
            .filter_map(|a| match a {
                Action::Event(e) => Some(e.message.clone()),
                _ => None,
            })
            .collect()
    }

    fn cond<'s>(p: &'s Plan, t: &str) -> &'s DeploymentCondition {
        get_condition(p.status.as_ref().expect("status"), t).expect("condition")
    }

    #[test]
    fn fenceposts() {
        let cases = [
            ("25%", "25%", 10, (3, 2)),
            ("25%", "25%", 1, (1, 0)),
            ("0", "0", 5, (0, 1)),
            ("0%", "10%", 5, (0, 1)),
            ("2", "1", 10, (2, 1)),
            ("50%", "50%", 3, (2, 1)),
            ("bogus", "1", 3, (0, 1)),
        ];
        for (s, u, n, want) in cases {
            assert_eq!(
                resolve_fenceposts(Some(&ios(s)), Some(&ios(u)), n),
                want,
                "{s}/{u} of {n}"
            );
        }
        assert_eq!(resolve_fenceposts(None, None, 4), (1, 1));
    }

    #[test]
    fn hash_is_stable_and_safe() {
        let a = pod_template_hash(&tmpl("v1"), None);
        assert_eq!(a, pod_template_hash(&tmpl("v1"), None));
        assert_ne!(a, pod_template_hash(&tmpl("v2"), None));
        assert_ne!(a, pod_template_hash(&tmpl("v1"), Some(1)));
        assert!(a.bytes().all(|c| SAFE_ALPHABET.contains(&c)), "{a}");
        let mut with_hash = tmpl("v1");
        with_hash
            .metadata
            .as_mut()
            .unwrap()
            .labels
            .as_mut()
            .unwrap()
            .insert(POD_TEMPLATE_HASH.into(), a);
        assert!(equal_ignore_hash(&with_hash, &tmpl("v1")));
        assert!(!equal_ignore_hash(&with_hash, &tmpl("v2")));
    }

    #[test]
    fn creates_new_replica_set() {
        let mut d = deploy(3, "1", "0");
        d.metadata.annotations = Some(labels(&[(LAST_APPLIED, "{}"), ("team", "a")]));
        let p = plan(&d, NO_RS, NO_PODS, t0());
        let Some(Action::CreateReplicaSet(rs)) = p.actions.first() else {
            panic!("{:?}", p.actions)
        };
        let hash = pod_template_hash(&tmpl("v1"), None);
        assert_eq!(
            rs.metadata.name.as_deref(),
            Some(format!("web-{hash}").as_str())
        );
        let spec = rs.spec.as_ref().unwrap();
        assert_eq!(spec.replicas, Some(3));
        assert_eq!(
            spec.selector.match_labels.as_ref().unwrap()[POD_TEMPLATE_HASH],
            hash
        );
        let tl = spec
            .template
            .as_ref()
            .unwrap()
            .metadata
            .as_ref()
            .unwrap()
            .labels
            .as_ref()
            .unwrap();
        assert_eq!(tl[POD_TEMPLATE_HASH], hash);
        assert_eq!(
            rs.metadata.labels.as_ref().unwrap()[POD_TEMPLATE_HASH],
            hash
        );
        let a = rs.metadata.annotations.as_ref().unwrap();
        assert_eq!(a[REVISION], "1");
        assert_eq!(a[DESIRED_REPLICAS], "3");
        assert_eq!(a[MAX_REPLICAS], "4");
        assert_eq!(a["team"], "a");
        assert!(!a.contains_key(LAST_APPLIED));
        assert_eq!(
            rs.metadata.owner_references.as_ref().unwrap()[0].uid,
            "d-uid"
        );
        assert_eq!(p.revision.as_deref(), Some("1"));
        assert_eq!(
            events(&p),
            [format!("Scaled up replica set web-{hash} from 0 to 3")]
        );
        let c = cond(&p, "Progressing");
        assert_eq!(c.reason.as_deref(), Some("NewReplicaSetCreated"));
        assert_eq!(
            c.message.clone().unwrap(),
            format!("Created new replica set \"web-{hash}\"")
        );
        let a = cond(&p, "Available");
        assert_eq!(
            a.message.as_deref(),
            Some("Deployment does not have minimum availability.")
        );
        assert_eq!(p.status.as_ref().unwrap().observed_generation, Some(1));
        assert!(p.requeue_after.is_some());
    }

    #[test]
    fn rolling_update_steps() {
        // (replicas, surge, unavail, old spec/avail, new spec/avail, want old, want new)
        let cases = [
            (4, "1", "0", (4, 4), None, 4, 1),
            (4, "1", "0", (4, 4), Some((1, 1)), 3, 1),
            (4, "1", "0", (3, 3), Some((1, 0)), 3, 2),
            (4, "0", "1", (4, 4), None, 3, 0),
            (4, "0", "1", (3, 3), Some((0, 0)), 3, 1),
            (4, "2", "2", (4, 4), None, 2, 2),
            (4, "2", "2", (4, 4), Some((2, 0)), 2, 2),
            (4, "1", "1", (4, 2), Some((1, 0)), 3, 1),
        ];
        for (n, s, u, (os, oa), new, want_old, want_new) in cases {
            let d = {
                let mut d = deploy(n, s, u);
                d.spec.as_mut().unwrap().template = tmpl("v2");
                d
            };
            let mut rss = vec![owned_rs(&d, &tmpl("v1"), 1, os, oa, 100)];
            if let Some((ns, na)) = new {
                rss.push(owned_rs(&d, &tmpl("v2"), 2, ns, na, 10));
            }
            let p = plan(&d, &rss, NO_PODS, t0());
            let mut got = (os, new.map(|x| x.0).unwrap_or(0));
            for a in &p.actions {
                if let Action::CreateReplicaSet(rs) | Action::UpdateReplicaSet(rs) = a {
                    let r = rs.spec.as_ref().unwrap().replicas.unwrap();
                    if rs.metadata.name == rss[0].metadata.name {
                        got.0 = r;
                    } else {
                        got.1 = r;
                    }
                }
            }
            assert_eq!(
                got,
                (want_old, want_new),
                "case {n} {s} {u} {os}/{oa} {new:?}: {:?}",
                events(&p)
            );
        }
    }

    #[test]
    fn scale_event_texts() {
        let mut d = deploy(4, "0", "1");
        d.spec.as_mut().unwrap().template = tmpl("v2");
        let rss = vec![
            owned_rs(&d, &tmpl("v1"), 1, 4, 4, 100),
            owned_rs(&d, &tmpl("v2"), 2, 0, 0, 10),
        ];
        let p = plan(&d, &rss, NO_PODS, t0());
        let old = rss[0].metadata.name.clone().unwrap();
        assert_eq!(
            events(&p),
            [format!("Scaled down replica set {old} from 4 to 3")]
        );
        assert!(
            matches!(&p.actions[0], Action::UpdateReplicaSet(rs) if rs.metadata.name == rss[0].metadata.name)
        );
    }

    #[test]
    fn rollback_reuses_old_replica_set() {
        let d = deploy(2, "1", "0");
        let mut old = owned_rs(&d, &tmpl("v1"), 1, 0, 0, 100);
        old.metadata
            .annotations
            .as_mut()
            .unwrap()
            .insert(REVISION_HISTORY.into(), "0".into());
        let cur = owned_rs(&d, &tmpl("v2"), 2, 2, 2, 10);
        let p = plan(&d, &[old.clone(), cur], NO_PODS, t0());
        let upd: Vec<&ReplicaSet> = p
            .actions
            .iter()
            .filter_map(|a| match a {
                Action::UpdateReplicaSet(rs) if rs.metadata.name == old.metadata.name => Some(rs),
                _ => None,
            })
            .collect();
        assert_eq!(upd.len(), 1, "{:?}", p.actions);
        let a = upd[0].metadata.annotations.as_ref().unwrap();
        assert_eq!(a[REVISION], "3");
        assert_eq!(a[REVISION_HISTORY], "0,1");
        assert_eq!(upd[0].spec.as_ref().unwrap().replicas, Some(1));
        assert_eq!(p.revision.as_deref(), Some("3"));
        assert!(
            !p.actions
                .iter()
                .any(|a| matches!(a, Action::CreateReplicaSet(_)))
        );
    }

    #[test]
    fn complete_rollout_conditions_and_cleanup() {
        let mut d = deploy(2, "1", "0");
        d.spec.as_mut().unwrap().revision_history_limit = Some(1);
        d.spec.as_mut().unwrap().template = tmpl("v3");
        d.metadata.annotations = Some(labels(&[(REVISION, "3")]));
        d.status = Some(DeploymentStatus {
            observed_generation: Some(1),
            replicas: Some(2),
            updated_replicas: Some(2),
            available_replicas: Some(2),
            ready_replicas: Some(2),
            conditions: Some(vec![condition(
                PROGRESSING,
                "True",
                RS_UPDATED,
                "x",
                t0() - secs(30),
            )]),
            ..Default::default()
        });
        let rss = vec![
            owned_rs(&d, &tmpl("v1"), 1, 0, 0, 300),
            owned_rs(&d, &tmpl("v2"), 2, 0, 0, 200),
            owned_rs(&d, &tmpl("v3"), 3, 2, 2, 100),
        ];
        let p = plan(&d, &rss, NO_PODS, t0());
        let deleted: Vec<_> = p
            .actions
            .iter()
            .filter_map(|a| match a {
                Action::DeleteReplicaSet { name, .. } => Some(name.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(deleted, [rss[0].metadata.name.clone().unwrap()]);
        let c = cond(&p, "Progressing");
        let name = rss[2].metadata.name.clone().unwrap();
        assert_eq!(c.reason.as_deref(), Some("NewReplicaSetAvailable"));
        assert_eq!(
            c.message.clone().unwrap(),
            format!("ReplicaSet \"{name}\" has successfully progressed.")
        );
        assert_eq!(
            c.last_transition_time,
            Some(podutil::chrono_to_time(t0() - secs(30)))
        );
        assert_eq!(
            cond(&p, "Available").reason.as_deref(),
            Some("MinimumReplicasAvailable")
        );
        assert_eq!(p.requeue_after, None);
        assert_eq!(p.revision, None);
    }

    #[test]
    fn progress_deadline_and_requeue() {
        let mut d = deploy(2, "1", "0");
        d.spec.as_mut().unwrap().progress_deadline_seconds = Some(60);
        d.spec.as_mut().unwrap().template = tmpl("v2");
        let rss = vec![
            owned_rs(&d, &tmpl("v1"), 1, 2, 2, 300),
            owned_rs(&d, &tmpl("v2"), 2, 1, 0, 100),
        ];
        let status = DeploymentStatus {
            observed_generation: Some(1),
            replicas: Some(3),
            updated_replicas: Some(1),
            available_replicas: Some(2),
            ready_replicas: Some(2),
            conditions: Some(vec![condition(
                PROGRESSING,
                "True",
                RS_UPDATED,
                "x",
                t0() - secs(20),
            )]),
            ..Default::default()
        };
        d.status = Some(status.clone());
        // Stuck but within the deadline: nothing to write, requeue at the deadline + 1s.
        let p = plan(&d, &rss, NO_PODS, t0());
        let reason = p
            .status
            .as_ref()
            .and_then(|s| get_condition(s, PROGRESSING))
            .and_then(|c| c.reason.clone());
        assert!(
            reason.is_none() || reason.as_deref() == Some(RS_UPDATED),
            "{reason:?}"
        );
        assert_eq!(p.requeue_after, Some(Duration::from_secs(41)));
        // Past the deadline.
        let p = plan(&d, &rss, NO_PODS, t0() + secs(60));
        let c = cond(&p, "Progressing");
        let name = rss[1].metadata.name.clone().unwrap();
        assert_eq!(
            (c.status.as_str(), c.reason.as_deref()),
            ("False", Some("ProgressDeadlineExceeded"))
        );
        assert_eq!(
            c.message.clone().unwrap(),
            format!("ReplicaSet \"{name}\" has timed out progressing.")
        );
        // Progress (a pod became available) refreshes lastUpdateTime, keeps lastTransitionTime.
        let mut rss2 = rss.clone();
        rss2[1].status.as_mut().unwrap().available_replicas = Some(1);
        rss2[1].status.as_mut().unwrap().ready_replicas = Some(1);
        let p = plan(&d, &rss2, NO_PODS, t0() + secs(50));
        let c = cond(&p, "Progressing");
        assert_eq!(
            c.message.clone().unwrap(),
            format!("ReplicaSet \"{name}\" is progressing.")
        );
        assert_eq!(
            c.last_update_time,
            Some(podutil::chrono_to_time(t0() + secs(50)))
        );
        assert_eq!(
            c.last_transition_time,
            Some(podutil::chrono_to_time(t0() - secs(20)))
        );
    }

    #[test]
    fn paused_only_scales_and_sets_conditions() {
        let mut d = deploy(3, "1", "0");
        d.spec.as_mut().unwrap().paused = Some(true);
        d.spec.as_mut().unwrap().template = tmpl("v2");
        let rss = vec![owned_rs(&deploy(2, "1", "0"), &tmpl("v1"), 1, 2, 2, 100)];
        let p = plan(&d, &rss, NO_PODS, t0());
        assert!(
            !p.actions
                .iter()
                .any(|a| matches!(a, Action::CreateReplicaSet(_)))
        );
        assert_eq!(
            events(&p),
            [format!(
                "Scaled up replica set {} from 2 to 3",
                rss[0].metadata.name.clone().unwrap()
            )]
        );
        let c = cond(&p, "Progressing");
        assert_eq!(
            (c.status.as_str(), c.reason.as_deref(), c.message.as_deref()),
            (
                "Unknown",
                Some("DeploymentPaused"),
                Some("Deployment is paused")
            )
        );
        // Resume.
        d.spec.as_mut().unwrap().paused = Some(false);
        d.status = p.status.clone();
        let rss = vec![owned_rs(&d, &tmpl("v1"), 1, 3, 3, 100)];
        let p = plan(&d, &rss, NO_PODS, t0() + secs(5));
        let c = cond(&p, "Progressing");
        assert!(
            p.actions
                .iter()
                .any(|a| matches!(a, Action::CreateReplicaSet(_)))
        );
        // Created this sync, and old pods became ready since: "is progressing".
        assert_eq!(
            (c.status.as_str(), c.reason.as_deref()),
            ("True", Some("ReplicaSetUpdated"))
        );
    }

    #[test]
    fn resume_condition_when_nothing_else_changes() {
        let mut d = deploy(2, "1", "0");
        d.status = Some(DeploymentStatus {
            conditions: Some(vec![condition(
                PROGRESSING,
                "Unknown",
                PAUSED,
                "Deployment is paused",
                t0(),
            )]),
            replicas: Some(2),
            updated_replicas: Some(2),
            ..Default::default()
        });
        let rss = vec![owned_rs(&d, &tmpl("v1"), 1, 2, 0, 100)];
        let p = plan(&d, &rss, NO_PODS, t0());
        assert_eq!(
            cond(&p, "Progressing").reason.as_deref(),
            Some("DeploymentResumed")
        );
    }

    #[test]
    fn proportional_scaling_mid_rollout() {
        // 10 replicas, surge 3, mid rollout: old 8, new 5 (13 = 10 + 3); scale to 20.
        let d10 = deploy(10, "3", "2");
        let mut d = deploy(20, "3", "2");
        d.spec.as_mut().unwrap().template = tmpl("v2");
        d.status = Some(DeploymentStatus {
            replicas: Some(13),
            ..Default::default()
        });
        let rss = vec![
            owned_rs(&d10, &tmpl("v1"), 1, 8, 8, 100),
            owned_rs(&d10, &tmpl("v2"), 2, 5, 0, 10),
        ];
        let p = plan(&d, &rss, NO_PODS, t0());
        let sizes: BTreeMap<String, i32> = p
            .actions
            .iter()
            .filter_map(|a| match a {
                Action::UpdateReplicaSet(rs) => Some((
                    rs.metadata.name.clone().unwrap(),
                    rs.spec.as_ref().unwrap().replicas.unwrap(),
                )),
                _ => None,
            })
            .collect();
        // allowed 23: 8*23/13 = 14.15 → 14, 5*23/13 = 8.8 → 9 (leftover 0).
        assert_eq!(sizes[rss[0].metadata.name.as_ref().unwrap()], 14);
        assert_eq!(sizes[rss[1].metadata.name.as_ref().unwrap()], 9);
        for a in &p.actions {
            if let Action::UpdateReplicaSet(rs) = a {
                let an = rs.metadata.annotations.as_ref().unwrap();
                assert_eq!(
                    (an[DESIRED_REPLICAS].as_str(), an[MAX_REPLICAS].as_str()),
                    ("20", "23")
                );
            }
        }
    }

    #[test]
    fn recreate_waits_for_old_pods() {
        let mut d = deploy(2, "1", "0");
        d.spec.as_mut().unwrap().strategy = Some(DeploymentStrategy {
            type_: Some("Recreate".into()),
            rolling_update: None,
        });
        d.spec.as_mut().unwrap().template = tmpl("v2");
        let mut old = owned_rs(&d, &tmpl("v1"), 1, 2, 2, 100);
        // Step 1: scale old to zero, nothing created.
        let p = plan(&d, std::slice::from_ref(&old), NO_PODS, t0());
        assert_eq!(
            events(&p),
            [format!(
                "Scaled down replica set {} from 2 to 0",
                old.metadata.name.clone().unwrap()
            )]
        );
        assert!(
            !p.actions
                .iter()
                .any(|a| matches!(a, Action::CreateReplicaSet(_)))
        );
        // Step 2: spec 0, a terminating pod still running → wait.
        old.spec.as_mut().unwrap().replicas = Some(0);
        old.status = Some(Default::default());
        let pod = Pod {
            metadata: ObjectMeta {
                owner_references: Some(vec![podutil::owner_ref(
                    "apps/v1",
                    "ReplicaSet",
                    "x",
                    old.metadata.uid.as_ref().unwrap(),
                )]),
                deletion_timestamp: Some(podutil::chrono_to_time(t0())),
                ..Default::default()
            },
            status: Some(PodStatus {
                phase: Some("Running".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let p = plan(
            &d,
            std::slice::from_ref(&old),
            std::slice::from_ref(&pod),
            t0(),
        );
        assert!(
            !p.actions
                .iter()
                .any(|a| matches!(a, Action::CreateReplicaSet(_)))
        );
        // Step 3: pods gone → new RS at full size.
        let p = plan(&d, std::slice::from_ref(&old), NO_PODS, t0());
        let created = p.actions.iter().find_map(|a| match a {
            Action::CreateReplicaSet(rs) => rs.spec.as_ref().unwrap().replicas,
            _ => None,
        });
        assert_eq!(created, Some(2));
        let rs = p
            .actions
            .iter()
            .find_map(|a| match a {
                Action::CreateReplicaSet(rs) => Some(rs),
                _ => None,
            })
            .unwrap();
        assert_eq!(rs.metadata.annotations.as_ref().unwrap()[MAX_REPLICAS], "2");
    }

    #[test]
    fn adopts_and_releases_replica_sets() {
        let d = deploy(1, "1", "0");
        let mut orphan = owned_rs(&d, &tmpl("v1"), 1, 1, 1, 100);
        orphan.metadata.owner_references = None;
        let mut stray = owned_rs(&d, &tmpl("v0"), 0, 0, 0, 200);
        stray.metadata.labels = Some(labels(&[("app", "db")]));
        let mut foreign = owned_rs(&d, &tmpl("v9"), 0, 0, 0, 300);
        foreign.metadata.owner_references.as_mut().unwrap()[0].uid = "other".into();
        let p = plan(&d, &[orphan.clone(), stray.clone(), foreign], NO_PODS, t0());
        assert!(
            matches!(&p.actions[0], Action::AdoptReplicaSet(x) if Some(&x.name) == orphan.metadata.name.as_ref())
        );
        assert!(
            matches!(&p.actions[1], Action::ReleaseReplicaSet(x) if Some(&x.name) == stray.metadata.name.as_ref())
        );
        // The adopted RS is the new one: nothing created.
        assert!(
            !p.actions
                .iter()
                .any(|a| matches!(a, Action::CreateReplicaSet(_)))
        );
    }

    #[test]
    fn selecting_all_is_refused() {
        let mut d = deploy(1, "1", "0");
        d.spec.as_mut().unwrap().selector = LabelSelector::default();
        let p = plan(&d, NO_RS, NO_PODS, t0());
        assert_eq!(
            events(&p),
            ["This deployment is selecting all pods. A non-empty selector is required."]
        );
        assert_eq!(p.status.unwrap().observed_generation, Some(1));
    }

    #[test]
    fn collision_decision() {
        let d = deploy(1, "1", "0");
        let ours = owned_rs(&d, &tmpl("v1"), 1, 1, 1, 1);
        assert_eq!(on_create_conflict(&d, &ours), CreateConflict::Ours);
        let other = owned_rs(&d, &tmpl("other"), 1, 1, 1, 1);
        match on_create_conflict(&d, &other) {
            CreateConflict::BumpCollisionCount(s) => assert_eq!(s.collision_count, Some(1)),
            c => panic!("{c:?}"),
        }
        let (ev, st) = on_create_error(&d, "web-abc", "quota", t0());
        assert_eq!(
            ev.message,
            "Failed to create new replica set \"web-abc\": quota"
        );
        assert_eq!(
            get_condition(&st.unwrap(), PROGRESSING)
                .unwrap()
                .reason
                .as_deref(),
            Some("ReplicaSetCreateError")
        );
        // A bumped collision count changes the name.
        let mut d2 = d.clone();
        d2.status = Some(DeploymentStatus {
            collision_count: Some(1),
            ..Default::default()
        });
        let name = |d: &Deployment| match &plan(d, NO_RS, NO_PODS, t0()).actions[0] {
            Action::CreateReplicaSet(rs) => rs.metadata.name.clone(),
            _ => None,
        };
        assert_ne!(name(&d), name(&d2));
    }

    #[test]
    fn replica_failure_is_surfaced() {
        let d = deploy(2, "1", "0");
        let mut rs = owned_rs(&d, &tmpl("v1"), 1, 2, 0, 100);
        rs.status.as_mut().unwrap().conditions =
            Some(vec![k8s_openapi::api::apps::v1::ReplicaSetCondition {
                type_: "ReplicaFailure".into(),
                status: "True".into(),
                reason: Some("FailedCreate".into()),
                message: Some("quota".into()),
                last_transition_time: Some(podutil::chrono_to_time(t0())),
            }]);
        let p = plan(&d, &[rs], NO_PODS, t0());
        assert_eq!(cond(&p, "ReplicaFailure").message.as_deref(), Some("quota"));
    }

    #[test]
    fn status_is_stable_after_round_trip() {
        let d = deploy(2, "1", "0");
        let rs = owned_rs(&d, &tmpl("v1"), 1, 2, 2, 100);
        let mut d = d;
        d.metadata.annotations = Some(labels(&[(REVISION, "1")]));
        let p = plan(&d, std::slice::from_ref(&rs), NO_PODS, t0());
        d.status = p.status.clone();
        let p2 = plan(&d, std::slice::from_ref(&rs), NO_PODS, t0() + secs(10));
        assert_eq!(p2, Plan::default(), "steady state must be a no-op");
    }

    // ------------------------------------------------------ simulation

    struct Sim {
        d: Deployment,
        rss: Vec<ReplicaSet>,
        pods: Vec<Pod>,
        now: DateTime<Utc>,
        seq: u32,
    }

    impl Sim {
        fn new(d: Deployment) -> Self {
            Sim {
                d,
                rss: Vec::new(),
                pods: Vec::new(),
                now: t0(),
                seq: 0,
            }
        }

        fn uid(&mut self) -> String {
            self.seq += 1;
            format!("u{}", self.seq)
        }

        fn sync_deployment(&mut self) {
            let p = plan(&self.d, &self.rss, &self.pods, self.now);
            for a in p.actions {
                match a {
                    Action::CreateReplicaSet(mut rs) => {
                        rs.metadata.uid = Some(self.uid());
                        rs.metadata.generation = Some(1);
                        rs.metadata.creation_timestamp = Some(podutil::chrono_to_time(self.now));
                        self.rss.push(rs);
                    }
                    Action::UpdateReplicaSet(mut rs) => {
                        let cur = self
                            .rss
                            .iter_mut()
                            .find(|r| r.metadata.uid == rs.metadata.uid)
                            .unwrap();
                        if cur.spec != rs.spec {
                            rs.metadata.generation = Some(rs.metadata.generation.unwrap_or(0) + 1);
                        }
                        rs.status = cur.status.clone();
                        *cur = rs;
                    }
                    Action::DeleteReplicaSet { uid, .. } => {
                        self.rss.retain(|r| r.metadata.uid.as_deref() != Some(&uid))
                    }
                    Action::AdoptReplicaSet(_)
                    | Action::ReleaseReplicaSet(_)
                    | Action::Event(_) => {}
                }
            }
            if let Some(r) = p.revision {
                self.d
                    .metadata
                    .annotations
                    .get_or_insert_with(BTreeMap::new)
                    .insert(REVISION.into(), r);
            }
            if let Some(s) = p.status {
                self.d.status = Some(s);
            }
        }

        fn sync_replica_sets(&mut self) {
            for k in 0..self.rss.len() {
                let rs = self.rss[k].clone();
                let owner = rsplan::Owner::from_replica_set(&rs);
                let p = rsplan::plan(&owner, &self.pods, self.now, true);
                for mut pod in p.create {
                    pod.metadata.uid = Some(self.uid());
                    pod.metadata.name = pod.metadata.uid.clone();
                    pod.metadata.creation_timestamp = Some(podutil::chrono_to_time(self.now));
                    pod.status = Some(PodStatus {
                        phase: Some("Pending".into()),
                        ..Default::default()
                    });
                    self.pods.push(pod);
                }
                let gone: BTreeSet<String> = p.delete.into_iter().map(|r| r.uid).collect();
                self.pods
                    .retain(|p| !gone.contains(p.metadata.uid.as_ref().unwrap()));
                let after = rsplan::plan(&owner, &self.pods, self.now, false);
                let mut st = after.status.to_replica_set();
                st.observed_generation = rs.metadata.generation;
                self.rss[k].status = Some(st);
            }
        }

        fn make_ready(&mut self) {
            for p in &mut self.pods {
                let st = p.status.get_or_insert_with(Default::default);
                if st.phase.as_deref() != Some("Running") {
                    st.phase = Some("Running".into());
                    st.conditions = Some(vec![PodCondition {
                        type_: "Ready".into(),
                        status: "True".into(),
                        last_transition_time: Some(podutil::chrono_to_time(self.now)),
                        ..Default::default()
                    }]);
                }
            }
        }

        fn available(&self) -> i32 {
            self.pods
                .iter()
                .filter(|p| podutil::is_available(p, 0, self.now))
                .count() as i32
        }

        /// `kubectl rollout status` success criteria.
        fn rolled_out(&self) -> bool {
            let s = self.d.status.clone().unwrap_or_default();
            let r = replicas(&self.d);
            let v = |x: Option<i32>| x.unwrap_or(0);
            s.observed_generation >= self.d.metadata.generation
                && v(s.updated_replicas) == r
                && v(s.replicas) == v(s.updated_replicas)
                && v(s.available_replicas) == v(s.updated_replicas)
        }

        /// Run rounds until rolled out; check the invariants after every change.
        fn run(&mut self, check: bool) -> usize {
            let (r, (surge, unavail)) = (
                replicas(&self.d),
                (max_surge(&self.d), max_unavailable(&self.d)),
            );
            for round in 0..200 {
                self.sync_deployment();
                self.sync_replica_sets();
                let check_now = |s: &Sim| {
                    if check {
                        assert!(
                            s.pods.len() as i32 <= r + surge,
                            "round {round}: {} pods > {r}+{surge}",
                            s.pods.len()
                        );
                        assert!(
                            s.available() >= r - unavail,
                            "round {round}: {} available < {r}-{unavail}",
                            s.available()
                        );
                    }
                };
                check_now(self);
                self.now += secs(10);
                self.make_ready();
                self.sync_replica_sets();
                check_now(self);
                if self.rolled_out() {
                    return round;
                }
            }
            panic!("rollout did not finish: {:?}", self.d.status);
        }
    }

    #[test]
    fn simulated_rollouts_respect_surge_and_availability() {
        let cases = [
            (10, "25%", "25%"),
            (10, "0", "1"),
            (10, "1", "0"),
            (5, "50%", "0"),
            (3, "100%", "100%"),
            (1, "25%", "25%"),
            (7, "2", "3"),
        ];
        for (n, s, u) in cases {
            let mut sim = Sim::new(deploy(n, s, u));
            sim.run(false);
            assert_eq!(sim.pods.len() as i32, n);
            for (generation, image) in [(2, "v2"), (3, "v3"), (4, "v1")] {
                sim.d.spec.as_mut().unwrap().template = tmpl(image);
                sim.d.metadata.generation = Some(generation);
                sim.run(true);
                assert_eq!(sim.pods.len() as i32, n, "{n} {s} {u} {image}");
                let cond = get_condition(sim.d.status.as_ref().unwrap(), PROGRESSING).unwrap();
                assert_eq!(cond.reason.as_deref(), Some(NEW_RS_AVAILABLE));
            }
            // v1 again reuses the first RS with revision 4.
            let revs: Vec<i64> = sim.rss.iter().map(revision_of).collect();
            assert_eq!(revs.iter().max(), Some(&4), "{revs:?}");
            assert_eq!(sim.rss.len(), 3);
            assert_eq!(sim.d.metadata.annotations.as_ref().unwrap()[REVISION], "4");
        }
    }

    #[test]
    fn simulated_recreate_never_overlaps() {
        let mut d = deploy(3, "1", "0");
        d.spec.as_mut().unwrap().strategy = Some(DeploymentStrategy {
            type_: Some("Recreate".into()),
            rolling_update: None,
        });
        let mut sim = Sim::new(d);
        sim.run(false);
        sim.d.spec.as_mut().unwrap().template = tmpl("v2");
        sim.d.metadata.generation = Some(2);
        for _ in 0..20 {
            sim.sync_deployment();
            sim.sync_replica_sets();
            let hashes: BTreeSet<String> = sim
                .pods
                .iter()
                .map(|p| p.metadata.labels.as_ref().unwrap()[POD_TEMPLATE_HASH].clone())
                .collect();
            assert!(hashes.len() <= 1, "old and new pods together");
            sim.now += secs(10);
            sim.make_ready();
            sim.sync_replica_sets();
            if sim.rolled_out() {
                return;
            }
        }
        panic!("recreate did not finish");
    }

    #[test]
    fn simulated_scale_during_rollout() {
        let mut sim = Sim::new(deploy(10, "3", "2"));
        sim.run(false);
        sim.d.spec.as_mut().unwrap().template = tmpl("v2");
        sim.d.metadata.generation = Some(2);
        sim.sync_deployment();
        sim.sync_replica_sets();
        sim.d.spec.as_mut().unwrap().replicas = Some(20);
        sim.d.metadata.generation = Some(3);
        sim.run(false);
        assert_eq!(sim.pods.len(), 20);
        sim.d.spec.as_mut().unwrap().replicas = Some(4);
        sim.d.metadata.generation = Some(4);
        sim.run(false);
        assert_eq!(sim.pods.len(), 4);
    }
}
