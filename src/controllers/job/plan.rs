//! Pure planning for the **Job** controller (upstream `pkg/controller/job`,
//! batch/v1, behaviour of 1.33 with its default feature gates): given a Job,
//! the pods it owns (plus orphans matching its selector, for adoption) and
//! `now`, compute the ordered list of API actions and the new status.
//!
//! Owns: pod claiming (adopt/release), pod creation from the template
//! (NonIndexed and Indexed completion modes), scale-down/suspend deletion,
//! success/failure accounting through the `batch.kubernetes.io/job-tracking`
//! finalizer and `status.uncountedTerminatedPods`, backoffLimit, pod failure
//! backoff delay, activeDeadlineSeconds, podFailurePolicy (FailJob / Ignore /
//! Count), the interim `SuccessCriteriaMet` / `FailureTarget` conditions and
//! the terminal `Complete` / `Failed` ones, suspend/resume, events, and the
//! ttlSecondsAfterFinished decision ([`ttl_expired`]).
//!
//! Invariants:
//! - A finished pod is counted exactly once: its UID is first written to
//!   `status.uncountedTerminatedPods` (in the [`JobAction::UpdateStatus`] that
//!   precedes the [`JobAction::RemoveFinalizer`] of that pod), and only a later
//!   sync that sees the pod without the finalizer (or gone) moves it into
//!   `succeeded`/`failed`. Indexed jobs count successes by index instead.
//! - `Complete`/`Failed` are only set once no pod is uncounted and no pod is
//!   terminating; until then the interim condition records the verdict.
//! - Never more pods are created than remaining completions, never more than
//!   [`MAX_POD_CREATE_DELETE_PER_SYNC`] per sync, and a sync either deletes
//!   or creates pods, not both.
//! - `status.active` counts pods that exist and are active after this plan's
//!   deletions; pods created by this plan are counted by the next sync.
//!
//! Must not: do I/O, read clocks, keep state between calls (the pod failure
//! backoff is derived from the finished pods that are still around).
//! backoffLimitPerIndex, successPolicy and managedBy other than the built-in
//! controller are not handled (such jobs are left alone or treated without
//! the feature).

use crate::controllers::podutil;
use chrono::{DateTime, Utc};
use k8s_openapi::api::batch::v1::{
    Job, JobCondition, JobSpec, JobStatus, PodFailurePolicy, UncountedTerminatedPods,
};
use k8s_openapi::api::core::v1::{
    Container, EnvVar, EnvVarSource, ObjectFieldSelector, Pod, PodCondition, PodSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

/// Finalizer the controller puts on every pod it creates or adopts.
pub const TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";
/// Annotation (and label) carrying an Indexed pod's completion index.
pub const COMPLETION_INDEX_ANNOTATION: &str = "batch.kubernetes.io/job-completion-index";
pub const CONTROLLER_UID_LABEL: &str = "batch.kubernetes.io/controller-uid";
pub const JOB_NAME_LABEL: &str = "batch.kubernetes.io/job-name";
pub const LEGACY_CONTROLLER_UID_LABEL: &str = "controller-uid";
pub const LEGACY_JOB_NAME_LABEL: &str = "job-name";
/// Env var exposing the completion index to containers of Indexed jobs.
pub const COMPLETION_INDEX_ENV: &str = "JOB_COMPLETION_INDEX";
/// The built-in controller's name for `spec.managedBy`.
pub const JOB_CONTROLLER_NAME: &str = "kubernetes.io/job-controller";
/// `spec.backoffLimit` when unset.
pub const DEFAULT_BACKOFF_LIMIT: i32 = 6;
/// First delay before replacing a failed pod; doubles per consecutive failure.
pub const POD_FAILURE_BACKOFF: Duration = Duration::from_secs(10);
/// Cap of the pod failure delay (upstream `MaxJobPodFailureBackOff`).
pub const MAX_POD_FAILURE_BACKOFF: Duration = Duration::from_secs(600);
/// Upper bound of pod creations or deletions in one sync.
pub const MAX_POD_CREATE_DELETE_PER_SYNC: usize = 500;
/// Upper bound of UIDs added to `uncountedTerminatedPods` in one sync.
pub const MAX_UNCOUNTED_PODS: usize = 500;
/// Longest `generateName` the API server keeps before adding its suffix.
const MAX_GENERATED_NAME_LENGTH: usize = 58;

/// An event to record on the Job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// `Normal` or `Warning`.
    pub type_: String,
    pub reason: String,
    pub message: String,
}

impl Event {
    fn normal(reason: &str, message: impl Into<String>) -> Self {
        Event {
            type_: "Normal".into(),
            reason: reason.into(),
            message: message.into(),
        }
    }
    fn warning(reason: &str, message: impl Into<String>) -> Self {
        Event {
            type_: "Warning".into(),
            reason: reason.into(),
            message: message.into(),
        }
    }
}

/// The event the shell records after a [`JobAction::CreatePod`] succeeded
/// (the name is only known from the API server's answer).
pub fn created_pod_event(pod_name: &str) -> Event {
    Event::normal("SuccessfulCreate", format!("Created pod: {pod_name}"))
}

/// The event the shell records when a [`JobAction::CreatePod`] failed.
pub fn failed_create_event(err: &str) -> Event {
    Event::warning("FailedCreate", format!("Error creating: {err}"))
}

/// One API call (or event) for the shell, in the order they must happen.
#[derive(Clone, Debug, PartialEq)]
pub enum JobAction {
    /// Adopt an orphan: strategic-merge patch adding `owner` to
    /// `metadata.ownerReferences` and [`TRACKING_FINALIZER`] to
    /// `metadata.finalizers`, with `metadata.uid` as precondition.
    AdoptPod {
        name: String,
        uid: String,
        owner: OwnerReference,
    },
    /// Release a pod that no longer matches the selector: remove the owner
    /// reference whose uid is `owner_uid` (precondition `metadata.uid`).
    ReleasePod {
        name: String,
        uid: String,
        owner_uid: String,
    },
    /// PUT `/status` with this status (carry the Job's resourceVersion so a
    /// stale snapshot fails with Conflict).
    UpdateStatus(Box<JobStatus>),
    /// Patch the pod removing [`TRACKING_FINALIZER`] from `metadata.finalizers`
    /// (NotFound counts as success).
    RemoveFinalizer { name: String, uid: String },
    /// DELETE the pod (precondition uid; NotFound counts as success).
    DeletePod { name: String, uid: String },
    /// POST this pod (it uses `generateName`); on success record
    /// [`created_pod_event`], on failure [`failed_create_event`].
    CreatePod(Box<Pod>),
    /// Record this event on the Job.
    Event(Event),
}

/// Result of one sync.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct JobPlan {
    /// Apply in order; stop at the first failure and retry the sync later.
    pub actions: Vec<JobAction>,
    /// Sync again after this delay (pod failure backoff, active deadline).
    pub requeue_after: Option<Duration>,
}

/// What [`ttl_expired`] decided for a finished Job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TtlAction {
    /// Delete the Job now (foreground propagation, precondition uid and
    /// resourceVersion, like upstream's TTL-after-finished controller).
    Delete,
    /// Check again after this delay.
    RequeueAfter(Duration),
}

/// Plans one sync of the Job.
///
/// `pods`: the pods whose controller reference is this Job, plus pods of the
/// Job's namespace without a controller reference (they are adopted when they
/// match the selector); others are ignored. The list must be fresh enough to
/// contain the pods created by earlier plans (list from the API or wait for
/// the informer to observe them), or pods would be created twice.
pub fn plan(job: &Job, pods: &[Pod], now: DateTime<Utc>) -> JobPlan {
    let default_spec = JobSpec::default();
    let spec = job.spec.as_ref().unwrap_or(&default_spec);
    if is_finished(job) {
        return finished_cleanup(job, pods);
    }
    if spec
        .managed_by
        .as_deref()
        .is_some_and(|m| m != JOB_CONTROLLER_NAME)
    {
        return JobPlan::default();
    }
    if let Some(mode) = spec.completion_mode.as_deref()
        && mode != "NonIndexed"
        && mode != "Indexed"
    {
        let ev = Event::warning(
            "UnknownCompletionMode",
            "Skipped Job sync because completion mode is unknown",
        );
        return JobPlan {
            actions: vec![JobAction::Event(ev)],
            requeue_after: None,
        };
    }
    Sync::new(job, spec, pods, now).run()
}

/// Whether the Job has a `Complete` or `Failed` condition that is True.
pub fn is_finished(job: &Job) -> bool {
    finished_condition(job).is_some()
}

/// The True `Complete`/`Failed` condition of a finished Job.
pub fn finished_condition(job: &Job) -> Option<&JobCondition> {
    conditions(job)
        .iter()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
}

/// Whether a pod with our tracking finalizer whose controller Job is `job`
/// (None: the Job is gone) should lose the finalizer (upstream orphan sync).
pub fn orphan_needs_finalizer_removal(pod: &Pod, job: Option<&Job>) -> bool {
    has_tracking_finalizer(pod) && job.is_none_or(is_finished)
}

/// ttlSecondsAfterFinished: None when the Job has no TTL, is not finished or
/// is already being deleted; otherwise delete now or check again later.
pub fn ttl_expired(job: &Job, now: DateTime<Utc>) -> Option<TtlAction> {
    let ttl = job.spec.as_ref()?.ttl_seconds_after_finished?;
    if job.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let finished_at = finished_condition(job)?
        .last_transition_time
        .as_ref()
        .map(podutil::time_to_chrono)?;
    let expire_at = finished_at + chrono::Duration::seconds(i64::from(ttl));
    if now >= expire_at {
        Some(TtlAction::Delete)
    } else {
        Some(TtlAction::RequeueAfter(
            (expire_at - now).to_std().unwrap_or_default(),
        ))
    }
}

/// The controller owner reference pods of `job` carry.
pub fn job_owner_ref(job: &Job) -> OwnerReference {
    podutil::owner_ref(
        "batch/v1",
        "Job",
        job.metadata.name.as_deref().unwrap_or_default(),
        job.metadata.uid.as_deref().unwrap_or_default(),
    )
}

fn finished_cleanup(job: &Job, pods: &[Pod]) -> JobPlan {
    let uid = job.metadata.uid.as_deref().unwrap_or_default();
    let actions = pods
        .iter()
        .filter(|p| owned_by(p, uid) && has_tracking_finalizer(p))
        .map(|p| JobAction::RemoveFinalizer {
            name: pod_name(p).to_string(),
            uid: pod_uid(p).to_string(),
        })
        .collect();
    JobPlan {
        actions,
        requeue_after: None,
    }
}

// ---------------------------------------------------------------------------
// Small accessors

fn conditions(job: &Job) -> &[JobCondition] {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or(&[])
}

fn pod_name(p: &Pod) -> &str {
    p.metadata.name.as_deref().unwrap_or_default()
}

fn pod_uid(p: &Pod) -> &str {
    p.metadata.uid.as_deref().unwrap_or_default()
}

fn phase(p: &Pod) -> &str {
    p.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or_default()
}

fn has_tracking_finalizer(p: &Pod) -> bool {
    p.metadata
        .finalizers
        .as_ref()
        .is_some_and(|f| f.iter().any(|x| x == TRACKING_FINALIZER))
}

fn owned_by(p: &Pod, uid: &str) -> bool {
    !uid.is_empty() && podutil::controller_ref(&p.metadata).is_some_and(|r| r.uid == uid)
}

fn is_terminating(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_some() && !podutil::is_terminal(p)
}

/// The completion index annotation, None when absent, invalid or negative.
pub fn completion_index(p: &Pod) -> Option<i32> {
    let v = p
        .metadata
        .annotations
        .as_ref()?
        .get(COMPLETION_INDEX_ANNOTATION)?;
    v.parse::<i32>().ok().filter(|i| *i >= 0)
}

fn is_indexed(spec: &JobSpec) -> bool {
    spec.completion_mode.as_deref() == Some("Indexed")
}

fn is_suspended(spec: &JobSpec) -> bool {
    spec.suspend == Some(true)
}

/// Only Failed pods are replaced (terminating ones are waited for).
fn only_replace_failed(spec: &JobSpec) -> bool {
    spec.pod_replacement_policy.as_deref() == Some("Failed") || spec.pod_failure_policy.is_some()
}

/// A pod that counts as failed: phase Failed, or deleted before succeeding
/// (unless only Failed pods are replaced).
fn is_pod_failed(p: &Pod, spec: &JobSpec) -> bool {
    if phase(p) == "Failed" {
        return true;
    }
    if only_replace_failed(spec) {
        return false;
    }
    p.metadata.deletion_timestamp.is_some() && phase(p) != "Succeeded"
}

/// When a pod finished: last container termination, else when Ready turned
/// False, else its deletion or creation time.
fn finish_time(p: &Pod) -> DateTime<Utc> {
    let status = p.status.as_ref();
    let from_containers = status.and_then(|s| {
        let all = s.container_statuses.as_deref().unwrap_or(&[]);
        let mut max: Option<DateTime<Utc>> = None;
        for cs in all {
            let t = cs
                .state
                .as_ref()?
                .terminated
                .as_ref()?
                .finished_at
                .as_ref()?;
            let t = podutil::time_to_chrono(t);
            max = Some(max.map_or(t, |m| m.max(t)));
        }
        max
    });
    let from_ready = || {
        status?
            .conditions
            .as_ref()?
            .iter()
            .find(|c| c.type_ == "Ready" && c.status == "False")?
            .last_transition_time
            .as_ref()
            .map(podutil::time_to_chrono)
    };
    from_containers
        .or_else(from_ready)
        .or_else(|| {
            p.metadata
                .deletion_timestamp
                .as_ref()
                .map(podutil::time_to_chrono)
        })
        .or_else(|| {
            p.metadata
                .creation_timestamp
                .as_ref()
                .map(podutil::time_to_chrono)
        })
        .unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
}

fn new_condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: DateTime<Utc>,
) -> JobCondition {
    let t = podutil::chrono_to_time(now);
    JobCondition {
        type_: type_.into(),
        status: status.into(),
        reason: (!reason.is_empty()).then(|| reason.to_string()),
        message: (!message.is_empty()).then(|| message.to_string()),
        last_probe_time: Some(t.clone()),
        last_transition_time: Some(t),
    }
}

/// Sets a condition, appending it unless it would be a new False one.
/// Returns whether the list changed.
fn ensure_condition(list: &mut Vec<JobCondition>, new: JobCondition) -> bool {
    if let Some(c) = list.iter_mut().find(|c| c.type_ == new.type_) {
        if c.status != new.status || c.reason != new.reason || c.message != new.message {
            *c = new;
            return true;
        }
        return false;
    }
    if new.status != "False" {
        list.push(new);
        return true;
    }
    false
}

fn true_condition<'a>(list: &'a [JobCondition], type_: &str) -> Option<&'a JobCondition> {
    list.iter().find(|c| c.type_ == type_ && c.status == "True")
}

// ---------------------------------------------------------------------------
// Pod failure policy

/// The outcome of matching a failed pod against `spec.podFailurePolicy`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyMatch {
    /// Set when a FailJob rule matched: the Job failure message.
    pub fail_job_message: Option<String>,
    /// Whether the failure counts towards backoffLimit (false for Ignore).
    pub count_failed: bool,
    /// The action of the matching rule, if any.
    pub action: Option<String>,
}

/// Upstream `matchPodFailurePolicy`: the first rule that matches wins.
pub fn match_pod_failure_policy(policy: Option<&PodFailurePolicy>, pod: &Pod) -> PolicyMatch {
    let unmatched = PolicyMatch {
        fail_job_message: None,
        count_failed: true,
        action: None,
    };
    let Some(policy) = policy else {
        return unmatched;
    };
    for (index, rule) in policy.rules.iter().enumerate() {
        let failure = if let Some(req) = &rule.on_exit_codes {
            match_exit_codes(pod, req).map(|(name, code)| {
                format!(
                    "Container {name} for pod {}/{} failed with exit code {code} matching {} rule at index {index}",
                    pod.metadata.namespace.as_deref().unwrap_or_default(),
                    pod_name(pod),
                    rule.action
                )
            })
        } else if let Some(patterns) = &rule.on_pod_conditions {
            match_pod_conditions(pod, patterns).map(|c| {
                format!(
                    "Pod {}/{} has condition {} matching {} rule at index {index}",
                    pod.metadata.namespace.as_deref().unwrap_or_default(),
                    pod_name(pod),
                    c.type_,
                    rule.action
                )
            })
        } else {
            None
        };
        let Some(message) = failure else { continue };
        let action = Some(rule.action.clone());
        match rule.action.as_str() {
            "Ignore" => {
                return PolicyMatch {
                    fail_job_message: None,
                    count_failed: false,
                    action,
                };
            }
            "Count" => {
                return PolicyMatch {
                    fail_job_message: None,
                    count_failed: true,
                    action,
                };
            }
            "FailJob" => {
                return PolicyMatch {
                    fail_job_message: Some(message),
                    count_failed: true,
                    action,
                };
            }
            // FailIndex needs backoffLimitPerIndex; unknown actions are skipped.
            _ => continue,
        }
    }
    unmatched
}

fn match_exit_codes(
    pod: &Pod,
    req: &k8s_openapi::api::batch::v1::PodFailurePolicyOnExitCodesRequirement,
) -> Option<(String, i32)> {
    let status = pod.status.as_ref()?;
    let lists = [
        status.container_statuses.as_deref().unwrap_or(&[]),
        status.init_container_statuses.as_deref().unwrap_or(&[]),
    ];
    for list in lists {
        for cs in list {
            let Some(term) = cs.state.as_ref().and_then(|s| s.terminated.as_ref()) else {
                continue;
            };
            if req.container_name.as_ref().is_some_and(|n| *n != cs.name) || term.exit_code == 0 {
                continue;
            }
            let listed = req.values.contains(&term.exit_code);
            let ok = match req.operator.as_str() {
                "In" => listed,
                "NotIn" => !listed,
                _ => false,
            };
            if ok {
                return Some((cs.name.clone(), term.exit_code));
            }
        }
    }
    None
}

fn match_pod_conditions<'a>(
    pod: &'a Pod,
    patterns: &[k8s_openapi::api::batch::v1::PodFailurePolicyOnPodConditionsPattern],
) -> Option<&'a PodCondition> {
    let conds = pod.status.as_ref()?.conditions.as_deref()?;
    conds.iter().find(|c| {
        patterns
            .iter()
            .any(|p| p.type_ == c.type_ && p.status == c.status)
    })
}

// ---------------------------------------------------------------------------
// Completed indexes

/// Ordered, merged intervals of completion indexes (`status.completedIndexes`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Intervals(pub Vec<(i32, i32)>);

impl Intervals {
    /// Parses "1,3-5"; entries at or beyond `completions` are dropped and
    /// corrupt entries skipped, like upstream.
    pub fn parse(s: &str, completions: i32) -> Self {
        let mut out: Vec<(i32, i32)> = Vec::new();
        if s.is_empty() {
            return Intervals(out);
        }
        for part in s.split(',') {
            let mut limits = part.split('-');
            let Some(Ok(first)) = limits.next().map(str::parse::<i32>) else {
                continue;
            };
            if first >= completions {
                break;
            }
            let last = match limits.next() {
                Some(l) => match l.parse::<i32>() {
                    Ok(l) => l.min(completions - 1),
                    Err(_) => continue,
                },
                None => first,
            };
            match out.last_mut() {
                Some(prev) if prev.1 == first - 1 => prev.1 = last,
                _ => out.push((first, last)),
            }
        }
        Intervals(out)
    }

    /// A copy that also holds `new` (sorted ascending).
    pub fn with_indexes(&self, new: &[i32]) -> Self {
        let mut all: Vec<(i32, i32)> = self.0.clone();
        all.extend(new.iter().map(|&i| (i, i)));
        all.sort();
        let mut out: Vec<(i32, i32)> = Vec::with_capacity(all.len());
        for iv in all {
            match out.last_mut() {
                Some(last) if iv.0 <= last.1 + 1 => last.1 = last.1.max(iv.1),
                _ => out.push(iv),
            }
        }
        Intervals(out)
    }

    /// How many indexes are held.
    pub fn total(&self) -> i32 {
        self.0.iter().map(|(a, b)| b - a + 1).sum()
    }

    pub fn has(&self, ix: i32) -> bool {
        self.0.iter().any(|&(a, b)| a <= ix && ix <= b)
    }
}

impl fmt::Display for Intervals {
    /// Upstream format: runs of three or more as "a-b", pairs as "a,b".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, &(a, b)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{a}")?;
            if b == a + 1 {
                write!(f, ",{b}")?;
            } else if b > a {
                write!(f, "-{b}")?;
            }
        }
        Ok(())
    }
}

/// The lowest `count` indexes below `completions` held neither by `taken`.
fn first_pending_indexes(taken: &Intervals, count: usize, completions: i32) -> Vec<i32> {
    let mut out = Vec::with_capacity(count);
    let mut candidate = 0;
    while candidate < completions && out.len() < count {
        if !taken.has(candidate) {
            out.push(candidate);
        }
        candidate += 1;
    }
    out
}

// ---------------------------------------------------------------------------
// Pod ordering and creation

fn phase_ordinal(p: &Pod) -> u8 {
    match phase(p) {
        "Unknown" => 1,
        "Running" => 2,
        _ => 0,
    }
}

fn max_restarts(p: &Pod) -> i32 {
    p.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map(|c| c.iter().map(|c| c.restart_count).max().unwrap_or(0))
        .unwrap_or(0)
}

/// Upstream `controller.ActivePods`: Less means "delete first".
fn deletion_order(a: &Pod, b: &Pod) -> Ordering {
    let node = |p: &Pod| {
        p.spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .is_some_and(|n| !n.is_empty())
    };
    let created = |p: &Pod| {
        p.metadata
            .creation_timestamp
            .as_ref()
            .map(podutil::time_to_chrono)
    };
    node(a)
        .cmp(&node(b))
        .then_with(|| phase_ordinal(a).cmp(&phase_ordinal(b)))
        .then_with(|| podutil::is_ready(a).cmp(&podutil::is_ready(b)))
        .then_with(|| podutil::ready_since(b).cmp(&podutil::ready_since(a)))
        .then_with(|| max_restarts(b).cmp(&max_restarts(a)))
        .then_with(|| created(b).cmp(&created(a)))
}

/// Active pods to delete: (Indexed) duplicated, index-less or out-of-range
/// pods, then the first ones in deletion order up to `at_least`.
fn pods_for_removal<'a>(
    spec: &JobSpec,
    active: &[&'a Pod],
    at_least: usize,
    completions: i32,
) -> Vec<&'a Pod> {
    let mut rm: Vec<&Pod> = Vec::new();
    let mut left: Vec<&Pod> = Vec::new();
    if is_indexed(spec) {
        let mut by_index: BTreeMap<i32, Vec<&Pod>> = BTreeMap::new();
        for p in active {
            match completion_index(p) {
                Some(ix) if ix < completions => by_index.entry(ix).or_default().push(p),
                _ => rm.push(p),
            }
        }
        for (_, mut group) in by_index {
            group.sort_by(|a, b| deletion_order(a, b));
            if let Some(keep) = group.pop() {
                left.push(keep);
            }
            rm.extend(group);
        }
    } else {
        left = active.to_vec();
    }
    if rm.len() < at_least {
        left.sort_by(|a, b| deletion_order(a, b));
        let more = (at_least - rm.len()).min(left.len());
        rm.extend(left.into_iter().take(more));
    }
    rm
}

fn job_labels(job: &Job) -> [(&'static str, String); 4] {
    let uid = job.metadata.uid.clone().unwrap_or_default();
    let name = job.metadata.name.clone().unwrap_or_default();
    [
        (CONTROLLER_UID_LABEL, uid.clone()),
        (JOB_NAME_LABEL, name.clone()),
        (LEGACY_CONTROLLER_UID_LABEL, uid),
        (LEGACY_JOB_NAME_LABEL, name),
    ]
}

fn add_index_env(c: &mut Container) {
    let env = c.env.get_or_insert_with(Vec::new);
    if env.iter().any(|e| e.name == COMPLETION_INDEX_ENV) {
        return;
    }
    env.push(EnvVar {
        name: COMPLETION_INDEX_ENV.into(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                api_version: None,
                field_path: format!("metadata.labels['{COMPLETION_INDEX_ANNOTATION}']"),
            }),
            ..Default::default()
        }),
    });
}

fn generate_name_with_index(job_name: &str, index: i32) -> String {
    let suffix = format!("-{index}-");
    let full = format!("{job_name}{suffix}");
    if full.len() <= MAX_GENERATED_NAME_LENGTH {
        return full;
    }
    let keep = MAX_GENERATED_NAME_LENGTH.saturating_sub(suffix.len());
    let mut cut = keep.min(job_name.len());
    while !job_name.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{suffix}", &job_name[..cut])
}

/// The pod the controller creates from the Job's template (with the
/// completion index for Indexed jobs).
pub fn new_pod(job: &Job, index: Option<i32>) -> Pod {
    let default_spec = JobSpec::default();
    let spec = job.spec.as_ref().unwrap_or(&default_spec);
    let tmpl_meta = spec.template.metadata.clone().unwrap_or_default();
    let job_name = job.metadata.name.clone().unwrap_or_default();
    let mut labels = tmpl_meta.labels.unwrap_or_default();
    if spec.manual_selector != Some(true) {
        for (k, v) in job_labels(job) {
            labels.entry(k.to_string()).or_insert(v);
        }
    }
    let mut annotations = tmpl_meta.annotations.unwrap_or_default();
    let mut finalizers = tmpl_meta.finalizers.unwrap_or_default();
    if !finalizers.iter().any(|f| f == TRACKING_FINALIZER) {
        finalizers.push(TRACKING_FINALIZER.to_string());
    }
    let mut pod_spec: PodSpec = spec.template.spec.clone().unwrap_or_default();
    let mut generate_name = format!("{job_name}-");
    if is_indexed(spec) {
        pod_spec
            .init_containers
            .iter_mut()
            .flatten()
            .for_each(add_index_env);
        pod_spec.containers.iter_mut().for_each(add_index_env);
    }
    if let Some(ix) = index {
        annotations.insert(COMPLETION_INDEX_ANNOTATION.into(), ix.to_string());
        labels.insert(COMPLETION_INDEX_ANNOTATION.into(), ix.to_string());
        pod_spec.hostname = Some(format!("{job_name}-{ix}"));
        generate_name = generate_name_with_index(&job_name, ix);
    }
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(generate_name),
            namespace: job.metadata.namespace.clone(),
            labels: (!labels.is_empty()).then_some(labels),
            annotations: (!annotations.is_empty()).then_some(annotations),
            finalizers: Some(finalizers),
            owner_references: Some(vec![job_owner_ref(job)]),
            ..Default::default()
        },
        spec: Some(pod_spec),
        status: None,
    }
}

// ---------------------------------------------------------------------------
// The sync

/// The verdict reached for the Job in this sync (upstream `finishedCondition`).
#[derive(Clone, Debug, PartialEq)]
struct Verdict {
    type_: &'static str,
    reason: String,
    message: String,
}

impl Verdict {
    fn failure(reason: &str, message: &str) -> Self {
        Verdict {
            type_: "FailureTarget",
            reason: reason.into(),
            message: message.into(),
        }
    }
    fn is_success(&self) -> bool {
        self.type_ == "SuccessCriteriaMet" || self.type_ == "Complete"
    }
}

/// A claimed pod and whether it (now) carries the tracking finalizer.
struct Claimed<'a> {
    pod: &'a Pod,
    finalizer: bool,
}

struct Sync<'a> {
    job: &'a Job,
    spec: &'a JobSpec,
    now: DateTime<Utc>,
    pods: Vec<Claimed<'a>>,
    claim_actions: Vec<JobAction>,
    status: JobStatus,
    uncounted_succeeded: BTreeSet<String>,
    uncounted_failed: BTreeSet<String>,
    completions: Option<i32>,
    requeue: Option<Duration>,
    pod_actions: Vec<JobAction>,
    events: Vec<Event>,
}

impl<'a> Sync<'a> {
    fn new(job: &'a Job, spec: &'a JobSpec, pods: &'a [Pod], now: DateTime<Utc>) -> Self {
        let status = job.status.clone().unwrap_or_default();
        let uncounted = status.uncounted_terminated_pods.clone().unwrap_or_default();
        let (claimed, claim_actions) = claim_pods(job, spec, pods);
        Sync {
            job,
            spec,
            now,
            pods: claimed,
            claim_actions,
            status,
            uncounted_succeeded: uncounted
                .succeeded
                .unwrap_or_default()
                .into_iter()
                .collect(),
            uncounted_failed: uncounted.failed.unwrap_or_default().into_iter().collect(),
            completions: spec.completions,
            requeue: None,
            pod_actions: Vec::new(),
            events: Vec::new(),
        }
    }

    fn indexed_completions(&self) -> i32 {
        self.completions.unwrap_or(0).max(0)
    }

    fn valid_index(&self, p: &Pod) -> bool {
        !is_indexed(self.spec)
            || completion_index(p).is_some_and(|i| i < self.indexed_completions())
    }

    fn is_uncounted(&self, uid: &str) -> bool {
        self.uncounted_succeeded.contains(uid) || self.uncounted_failed.contains(uid)
    }

    /// Finished pods not yet accounted anywhere (upstream `getNewFinishedPods`).
    fn new_finished(&self) -> (Vec<&'a Pod>, Vec<&'a Pod>) {
        let mut ok = Vec::new();
        let mut failed = Vec::new();
        for c in &self.pods {
            let uid = pod_uid(c.pod);
            if !c.finalizer || !self.valid_index(c.pod) {
                continue;
            }
            if phase(c.pod) == "Succeeded" && !self.uncounted_succeeded.contains(uid) {
                ok.push(c.pod);
            } else if is_pod_failed(c.pod, self.spec) && !self.uncounted_failed.contains(uid) {
                failed.push(c.pod);
            }
        }
        (ok, failed)
    }

    fn policy(&self) -> Option<&'a PodFailurePolicy> {
        self.spec.pod_failure_policy.as_ref()
    }

    fn add_requeue(&mut self, d: Duration) {
        self.requeue = Some(self.requeue.map_or(d, |r| r.min(d)));
    }

    fn run(mut self) -> JobPlan {
        let active: Vec<&'a Pod> = self
            .pods
            .iter()
            .filter(|c| podutil::is_active(c.pod))
            .map(|c| c.pod)
            .collect();
        let mut terminating = self.pods.iter().filter(|c| is_terminating(c.pod)).count() as i32;
        let mut ready = active.iter().filter(|p| podutil::is_ready(p)).count() as i32;
        let (new_ok, new_failed) = self.new_finished();
        let mut succeeded = self.status.succeeded.unwrap_or(0)
            + new_ok.len() as i32
            + self.uncounted_succeeded.len() as i32;
        let counted_failures = new_failed
            .iter()
            .filter(|p| match_pod_failure_policy(self.policy(), p).count_failed)
            .count() as i32;
        let failed =
            self.status.failed.unwrap_or(0) + counted_failures + self.uncounted_failed.len() as i32;

        if self.status.start_time.is_none() && !is_suspended(self.spec) {
            self.status.start_time = Some(podutil::chrono_to_time(self.now));
        }

        let mut verdict = self.failure_verdict(failed);
        let (prev_indexes, mut indexes) = (
            Intervals::parse(
                self.status.completed_indexes.as_deref().unwrap_or_default(),
                self.indexed_completions(),
            ),
            Intervals::default(),
        );
        if is_indexed(self.spec) {
            indexes = prev_indexes.with_indexes(&self.new_succeeded_indexes(&prev_indexes));
            succeeded = indexes.total();
        }

        let mut active_count = active.len() as i32;
        if verdict.is_some() {
            // Finished: delete every active pod, keeping its finalizer so it
            // is counted (as failed, unless the Job succeeded).
            for p in &active {
                self.delete_pod(p, false);
                if podutil::is_ready(p) {
                    ready -= 1;
                }
            }
            terminating += active_count;
            active_count = 0;
        } else {
            let mut manage_called = false;
            if self.job.metadata.deletion_timestamp.is_none() {
                let m = self.manage(&active, succeeded, terminating, &indexes);
                active_count -= m.deleted;
                terminating += m.deleted;
                ready -= m.deleted_ready;
                manage_called = true;
            }
            let complete = match self.completions {
                None => succeeded > 0 && active_count == 0,
                Some(c) => succeeded >= c && active_count == 0,
            };
            if complete {
                verdict = Some(Verdict {
                    type_: "SuccessCriteriaMet",
                    reason: "CompletionsReached".into(),
                    message: "Reached expected number of succeeded pods".into(),
                });
            } else if manage_called {
                self.update_suspend_condition();
            }
        }

        self.status.active = Some(active_count);
        self.status.ready = Some(ready.max(0));
        self.status.terminating = Some(terminating);
        let final_verdict = self.track_finished_pods(verdict.as_ref(), &prev_indexes, &mut indexes);
        if is_indexed(self.spec) {
            self.status.succeeded = Some(indexes.total());
            let s = indexes.to_string();
            self.status.completed_indexes = (!s.is_empty()).then_some(s);
        }
        if let Some(v) = final_verdict {
            self.enact_finished(&v, terminating);
        }
        self.assemble()
    }

    /// Upstream order: existing FailureTarget, podFailurePolicy FailJob,
    /// backoffLimit, activeDeadlineSeconds. Also arms the deadline requeue.
    fn failure_verdict(&mut self, failed: i32) -> Option<Verdict> {
        let conds = self.status.conditions.clone().unwrap_or_default();
        if let Some(c) = true_condition(&conds, "SuccessCriteriaMet") {
            return Some(Verdict {
                type_: "SuccessCriteriaMet",
                reason: c.reason.clone().unwrap_or_default(),
                message: c.message.clone().unwrap_or_default(),
            });
        }
        if let Some(c) = true_condition(&conds, "FailureTarget") {
            return Some(Verdict {
                type_: "Failed",
                reason: c.reason.clone().unwrap_or_default(),
                message: c.message.clone().unwrap_or_default(),
            });
        }
        if self.policy().is_some() {
            for c in &self.pods {
                if !is_pod_failed(c.pod, self.spec) {
                    continue;
                }
                if let Some(msg) = match_pod_failure_policy(self.policy(), c.pod).fail_job_message {
                    return Some(Verdict::failure("PodFailurePolicy", &msg));
                }
            }
        }
        let limit = self.spec.backoff_limit.unwrap_or(DEFAULT_BACKOFF_LIMIT);
        if failed > limit || self.past_backoff_limit_on_failure(limit) {
            return Some(Verdict::failure(
                "BackoffLimitExceeded",
                "Job has reached the specified backoff limit",
            ));
        }
        let (Some(deadline), Some(start)) = (
            self.spec.active_deadline_seconds,
            self.status.start_time.as_ref(),
        ) else {
            return None;
        };
        if is_suspended(self.spec) {
            return None;
        }
        let elapsed = self.now - podutil::time_to_chrono(start);
        let allowed = chrono::Duration::seconds(deadline);
        if elapsed >= allowed {
            return Some(Verdict::failure(
                "DeadlineExceeded",
                "Job was active longer than specified deadline",
            ));
        }
        self.add_requeue((allowed - elapsed).to_std().unwrap_or_default());
        None
    }

    /// restartPolicy OnFailure: container restarts of running/pending pods
    /// reach the backoff limit.
    fn past_backoff_limit_on_failure(&self, limit: i32) -> bool {
        let policy = self
            .spec
            .template
            .spec
            .as_ref()
            .and_then(|s| s.restart_policy.as_deref());
        if policy != Some("OnFailure") {
            return false;
        }
        let restarts: i32 = self
            .pods
            .iter()
            .filter(|c| matches!(phase(c.pod), "Running" | "Pending"))
            .filter_map(|c| c.pod.status.as_ref())
            .flat_map(|s| {
                let init = s.init_container_statuses.iter().flatten();
                init.chain(s.container_statuses.iter().flatten())
            })
            .map(|cs| cs.restart_count)
            .sum();
        if limit == 0 {
            restarts > 0
        } else {
            restarts >= limit
        }
    }

    fn new_succeeded_indexes(&self, prev: &Intervals) -> Vec<i32> {
        let mut out: BTreeSet<i32> = BTreeSet::new();
        for c in &self.pods {
            if c.finalizer
                && phase(c.pod) == "Succeeded"
                && let Some(ix) = completion_index(c.pod)
                && ix < self.indexed_completions()
                && !prev.has(ix)
            {
                out.insert(ix);
            }
        }
        out.into_iter().collect()
    }

    fn delete_pod(&mut self, p: &Pod, remove_finalizer_first: bool) {
        let (name, uid) = (pod_name(p).to_string(), pod_uid(p).to_string());
        let tracked = self
            .pods
            .iter()
            .any(|c| pod_uid(c.pod) == uid && c.finalizer);
        if remove_finalizer_first && tracked {
            self.pod_actions.push(JobAction::RemoveFinalizer {
                name: name.clone(),
                uid: uid.clone(),
            });
        }
        self.pod_actions.push(JobAction::DeletePod {
            name: name.clone(),
            uid,
        });
        self.pod_actions.push(JobAction::Event(Event::normal(
            "SuccessfulDelete",
            format!("Deleted pod: {name}"),
        )));
    }

    /// Upstream `manageJob`: deletes (suspend, scale-down, duplicate indexes)
    /// or creates pods, honouring the pod failure backoff.
    fn manage(
        &mut self,
        active: &[&'a Pod],
        succeeded: i32,
        terminating: i32,
        succeeded_indexes: &Intervals,
    ) -> Managed {
        let parallelism = self.spec.parallelism.unwrap_or(1).max(0);
        if is_suspended(self.spec) {
            let rm = pods_for_removal(self.spec, active, active.len(), self.indexed_completions());
            return self.delete_for_manage(&rm);
        }
        let want = match self.completions {
            None if succeeded > 0 => active.len() as i32,
            None => parallelism,
            Some(c) => (c - succeeded).min(parallelism).max(0),
        };
        let at_least = (active.len() as i32 - want).max(0) as usize;
        let mut rm = pods_for_removal(self.spec, active, at_least, self.indexed_completions());
        rm.truncate(MAX_POD_CREATE_DELETE_PER_SYNC);
        if !rm.is_empty() {
            return self.delete_for_manage(&rm);
        }
        let waiting = if only_replace_failed(self.spec) {
            terminating
        } else {
            0
        };
        let diff = want - waiting - active.len() as i32;
        if diff <= 0 {
            return Managed::default();
        }
        let remaining = self.backoff_remaining();
        if !remaining.is_zero() {
            self.add_requeue(remaining);
            return Managed::default();
        }
        let diff = (diff as usize).min(MAX_POD_CREATE_DELETE_PER_SYNC);
        if is_indexed(self.spec) {
            let mut taken = succeeded_indexes.clone();
            let mut held: Vec<i32> = active.iter().filter_map(|p| completion_index(p)).collect();
            if only_replace_failed(self.spec) {
                held.extend(
                    self.pods
                        .iter()
                        .filter(|c| is_terminating(c.pod))
                        .filter_map(|c| completion_index(c.pod)),
                );
            }
            held.sort();
            taken = taken.with_indexes(&held);
            for ix in first_pending_indexes(&taken, diff, self.indexed_completions()) {
                self.pod_actions
                    .push(JobAction::CreatePod(Box::new(new_pod(self.job, Some(ix)))));
            }
        } else {
            for _ in 0..diff {
                self.pod_actions
                    .push(JobAction::CreatePod(Box::new(new_pod(self.job, None))));
            }
        }
        Managed::default()
    }

    fn delete_for_manage(&mut self, rm: &[&Pod]) -> Managed {
        let mut m = Managed::default();
        for p in rm {
            self.delete_pod(p, true);
            m.deleted += 1;
            if podutil::is_ready(p) {
                m.deleted_ready += 1;
            }
        }
        m
    }

    /// Remaining pod failure backoff: 10 s doubling per failure since the
    /// last success, capped, counted from the last failure.
    fn backoff_remaining(&self) -> Duration {
        let last_success = self
            .pods
            .iter()
            .filter(|c| phase(c.pod) == "Succeeded")
            .map(|c| finish_time(c.pod))
            .max();
        let failures: Vec<DateTime<Utc>> = self
            .pods
            .iter()
            .filter(|c| self.counts_for_backoff(c))
            .map(|c| finish_time(c.pod))
            .filter(|t| last_success.is_none_or(|s| *t >= s))
            .collect();
        let Some(last_failure) = failures.iter().max() else {
            return Duration::ZERO;
        };
        let exp = (failures.len() - 1).min(16) as u32;
        let delay = POD_FAILURE_BACKOFF
            .saturating_mul(1u32 << exp)
            .min(MAX_POD_FAILURE_BACKOFF);
        let elapsed = (self.now - *last_failure).to_std().unwrap_or_default();
        delay.saturating_sub(elapsed)
    }

    fn counts_for_backoff(&self, c: &Claimed) -> bool {
        if phase(c.pod) == "Failed" {
            return true;
        }
        is_pod_failed(c.pod, self.spec)
            && (c.finalizer || self.uncounted_failed.contains(pod_uid(c.pod)))
    }

    fn update_suspend_condition(&mut self) {
        let mut conds = self.status.conditions.take().unwrap_or_default();
        let changed;
        if is_suspended(self.spec) {
            let c = new_condition(
                "Suspended",
                "True",
                "JobSuspended",
                "Job suspended",
                self.now,
            );
            changed = ensure_condition(&mut conds, c);
            if changed {
                self.events
                    .push(Event::normal("Suspended", "Job suspended"));
            }
        } else {
            let c = new_condition("Suspended", "False", "JobResumed", "Job resumed", self.now);
            changed = ensure_condition(&mut conds, c);
            if changed {
                self.events.push(Event::normal("Resumed", "Job resumed"));
                self.status.start_time = Some(podutil::chrono_to_time(self.now));
            }
        }
        self.status.conditions = (!conds.is_empty()).then_some(conds);
    }

    /// Upstream `trackJobStatusAndRemoveFinalizers` up to the first flush:
    /// moves uncounted pods without finalizer into the counters, records newly
    /// finished pods as uncounted, schedules their finalizer removal, appends
    /// the interim condition. Returns the terminal verdict to enact, if any.
    fn track_finished_pods(
        &mut self,
        verdict: Option<&Verdict>,
        prev_indexes: &Intervals,
        indexes: &mut Intervals,
    ) -> Option<Verdict> {
        let with_finalizer: BTreeSet<String> = self
            .pods
            .iter()
            .filter(|c| c.finalizer)
            .map(|c| pod_uid(c.pod).to_string())
            .collect();
        self.clean_uncounted(&with_finalizer);
        let job_deleting = self.job.metadata.deletion_timestamp.is_some();
        let fails_all = verdict.is_some_and(|v| !v.is_success());
        let mut order: Vec<&Claimed> = self.pods.iter().filter(|c| c.finalizer).collect();
        if is_indexed(self.spec) {
            order.sort_by_key(|c| completion_index(c.pod).unwrap_or(-1));
        }
        let mut removals = Vec::new();
        let mut new_ok: Vec<String> = Vec::new();
        let mut new_failed: Vec<String> = Vec::new();
        let mut new_indexes = Vec::new();
        for c in order {
            let uid = pod_uid(c.pod).to_string();
            let failed = is_pod_failed(c.pod, self.spec);
            let succeeded = phase(c.pod) == "Succeeded";
            if !(job_deleting || verdict.is_some() || succeeded || failed) {
                continue;
            }
            removals.push(JobAction::RemoveFinalizer {
                name: pod_name(c.pod).to_string(),
                uid: uid.clone(),
            });
            if succeeded && !self.uncounted_failed.contains(&uid) {
                if is_indexed(self.spec) {
                    if let Some(ix) = completion_index(c.pod)
                        && ix < self.indexed_completions()
                        && !prev_indexes.has(ix)
                    {
                        new_indexes.push(ix);
                    }
                } else if !self.uncounted_succeeded.contains(&uid) {
                    new_ok.push(uid);
                }
            } else if (failed || fails_all)
                && !self.is_uncounted(&uid)
                && self.valid_index(c.pod)
                && match_pod_failure_policy(self.policy(), c.pod).count_failed
            {
                new_failed.push(uid);
            }
            if new_indexes.len()
                + self.uncounted_succeeded.len()
                + new_ok.len()
                + self.uncounted_failed.len()
                + new_failed.len()
                >= MAX_UNCOUNTED_PODS
            {
                break;
            }
        }
        new_indexes.sort();
        *indexes = indexes.with_indexes(&new_indexes);
        self.uncounted_succeeded.extend(new_ok);
        self.uncounted_failed.extend(new_failed);
        self.status.uncounted_terminated_pods = Some(UncountedTerminatedPods {
            succeeded: non_empty(&self.uncounted_succeeded),
            failed: non_empty(&self.uncounted_failed),
        });
        self.pod_actions.splice(0..0, removals);
        self.interim_condition(verdict)
    }

    /// Counters take the uncounted pods whose finalizer is gone.
    fn clean_uncounted(&mut self, with_finalizer: &BTreeSet<String>) {
        let before_ok = self.uncounted_succeeded.len() as i32;
        self.uncounted_succeeded
            .retain(|u| with_finalizer.contains(u));
        let moved_ok = before_ok - self.uncounted_succeeded.len() as i32;
        let before_failed = self.uncounted_failed.len() as i32;
        self.uncounted_failed.retain(|u| with_finalizer.contains(u));
        let moved_failed = before_failed - self.uncounted_failed.len() as i32;
        if moved_ok > 0 || self.status.succeeded.is_none() {
            self.status.succeeded = Some(self.status.succeeded.unwrap_or(0) + moved_ok);
        }
        if moved_failed > 0 || self.status.failed.is_none() {
            self.status.failed = Some(self.status.failed.unwrap_or(0) + moved_failed);
        }
    }

    /// Appends FailureTarget / SuccessCriteriaMet; returns Failed / Complete.
    fn interim_condition(&mut self, verdict: Option<&Verdict>) -> Option<Verdict> {
        let v = verdict?;
        let mut conds = self.status.conditions.take().unwrap_or_default();
        let final_type = match v.type_ {
            "FailureTarget" => {
                conds.push(new_condition(
                    v.type_, "True", &v.reason, &v.message, self.now,
                ));
                "Failed"
            }
            "SuccessCriteriaMet" => {
                if true_condition(&conds, "SuccessCriteriaMet").is_none() {
                    conds.push(new_condition(
                        v.type_, "True", &v.reason, &v.message, self.now,
                    ));
                }
                "Complete"
            }
            other => {
                if other == "Failed" {
                    "Failed"
                } else {
                    "Complete"
                }
            }
        };
        self.status.conditions = Some(conds);
        Some(Verdict {
            type_: final_type,
            reason: v.reason.clone(),
            message: v.message.clone(),
        })
    }

    /// Upstream `enactJobFinished`: only once nothing is uncounted or terminating.
    fn enact_finished(&mut self, v: &Verdict, terminating: i32) {
        if !self.uncounted_succeeded.is_empty() || !self.uncounted_failed.is_empty() {
            return;
        }
        if terminating > 0 {
            return;
        }
        let mut conds = self.status.conditions.take().unwrap_or_default();
        let c = new_condition(v.type_, "True", &v.reason, &v.message, self.now);
        let at = c.last_transition_time.clone();
        ensure_condition(&mut conds, c);
        self.status.conditions = Some(conds);
        if v.type_ == "Complete" {
            self.status.completion_time = at;
            let succeeded = self.status.succeeded.unwrap_or(0);
            if self.completions.is_some_and(|c| succeeded > c) {
                self.events.push(Event::warning(
                    "TooManySucceededPods",
                    "Too many succeeded pods running after completion count reached",
                ));
            }
            self.events
                .push(Event::normal("Completed", "Job completed"));
        } else {
            self.events
                .push(Event::warning(&v.reason, v.message.clone()));
        }
    }

    fn assemble(self) -> JobPlan {
        let mut actions = self.claim_actions;
        let old = self.job.status.clone().unwrap_or_default();
        let mut status = self.status;
        // Like upstream's JSON (`omitempty`): zero counters are absent.
        for n in [
            &mut status.active,
            &mut status.succeeded,
            &mut status.failed,
        ] {
            if *n == Some(0) {
                *n = None;
            }
        }
        if old != status {
            actions.push(JobAction::UpdateStatus(Box::new(status)));
        }
        actions.extend(self.pod_actions);
        actions.extend(self.events.into_iter().map(JobAction::Event));
        JobPlan {
            actions,
            requeue_after: self.requeue,
        }
    }
}

#[derive(Default)]
struct Managed {
    deleted: i32,
    deleted_ready: i32,
}

fn non_empty(set: &BTreeSet<String>) -> Option<Vec<String>> {
    (!set.is_empty()).then(|| set.iter().cloned().collect())
}

/// Upstream `ClaimPods`: owned pods matching the selector are kept, owned
/// pods that stopped matching are released, matching orphans adopted.
fn claim_pods<'a>(
    job: &Job,
    spec: &JobSpec,
    pods: &'a [Pod],
) -> (Vec<Claimed<'a>>, Vec<JobAction>) {
    let uid = job.metadata.uid.as_deref().unwrap_or_default();
    let deleting = job.metadata.deletion_timestamp.is_some();
    let empty = BTreeMap::new();
    let mut claimed = Vec::new();
    let mut actions = Vec::new();
    for p in pods {
        let labels = p.metadata.labels.as_ref().unwrap_or(&empty);
        let matches = spec
            .selector
            .as_ref()
            .map(|s| podutil::selector_matches(s, labels));
        match podutil::controller_ref(&p.metadata) {
            Some(r) if r.uid == uid && !uid.is_empty() => {
                if matches == Some(false) && !deleting {
                    actions.push(JobAction::ReleasePod {
                        name: pod_name(p).into(),
                        uid: pod_uid(p).into(),
                        owner_uid: uid.into(),
                    });
                } else {
                    claimed.push(Claimed {
                        pod: p,
                        finalizer: has_tracking_finalizer(p),
                    });
                }
            }
            Some(_) => {}
            None => {
                let adoptable = matches == Some(true)
                    && !deleting
                    && p.metadata.deletion_timestamp.is_none()
                    && !uid.is_empty();
                if adoptable {
                    actions.push(JobAction::AdoptPod {
                        name: pod_name(p).into(),
                        uid: pod_uid(p).into(),
                        owner: job_owner_ref(job),
                    });
                    claimed.push(Claimed {
                        pod: p,
                        finalizer: true,
                    });
                }
            }
        }
    }
    (claimed, actions)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::batch::v1::{
        PodFailurePolicyOnExitCodesRequirement, PodFailurePolicyOnPodConditionsPattern,
        PodFailurePolicyRule,
    };
    use k8s_openapi::api::core::v1::{
        ContainerState, ContainerStateTerminated, ContainerStatus, PodStatus, PodTemplateSpec,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

    fn t0() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2025-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn secs(n: i64) -> chrono::Duration {
        chrono::Duration::seconds(n)
    }

    fn job(completions: Option<i32>, parallelism: i32) -> Job {
        let labels: BTreeMap<String, String> =
            [(CONTROLLER_UID_LABEL.to_string(), "job-uid".to_string())].into();
        Job {
            metadata: ObjectMeta {
                name: Some("pi".into()),
                namespace: Some("ns".into()),
                uid: Some("job-uid".into()),
                ..Default::default()
            },
            spec: Some(JobSpec {
                completions,
                parallelism: Some(parallelism),
                selector: Some(LabelSelector {
                    match_labels: Some(labels.clone()),
                    ..Default::default()
                }),
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(labels),
                        ..Default::default()
                    }),
                    spec: Some(PodSpec {
                        containers: vec![Container {
                            name: "main".into(),
                            ..Default::default()
                        }],
                        restart_policy: Some("Never".into()),
                        ..Default::default()
                    }),
                },
                ..Default::default()
            }),
            status: None,
        }
    }

    /// An in-memory cluster the plans are applied to.
    struct World {
        job: Job,
        pods: Vec<Pod>,
        next: u32,
        events: Vec<Event>,
        now: DateTime<Utc>,
    }

    impl World {
        fn new(job: Job) -> Self {
            World {
                job,
                pods: Vec::new(),
                next: 0,
                events: Vec::new(),
                now: t0(),
            }
        }

        fn sync(&mut self) -> JobPlan {
            let plan = plan(&self.job, &self.pods, self.now);
            for a in plan.actions.clone() {
                self.apply(a);
            }
            plan
        }

        fn apply(&mut self, a: JobAction) {
            match a {
                JobAction::CreatePod(p) => {
                    let mut p = *p;
                    self.next += 1;
                    let name =
                        format!("{}{}", p.metadata.generate_name.clone().unwrap(), self.next);
                    p.metadata.name = Some(name.clone());
                    p.metadata.uid = Some(format!("uid-{}", self.next));
                    p.metadata.creation_timestamp = Some(podutil::chrono_to_time(self.now));
                    p.status = Some(PodStatus {
                        phase: Some("Pending".into()),
                        ..Default::default()
                    });
                    self.pods.push(p);
                    self.events.push(created_pod_event(&name));
                }
                JobAction::DeletePod { uid, .. } => {
                    let now = podutil::chrono_to_time(self.now);
                    if let Some(p) = self.pods.iter_mut().find(|p| pod_uid(p) == uid) {
                        p.metadata.deletion_timestamp = Some(now);
                    }
                    self.gc();
                }
                JobAction::RemoveFinalizer { uid, .. } => {
                    if let Some(p) = self.pods.iter_mut().find(|p| pod_uid(p) == uid)
                        && let Some(f) = p.metadata.finalizers.as_mut()
                    {
                        f.retain(|f| f != TRACKING_FINALIZER);
                    }
                    self.gc();
                }
                JobAction::UpdateStatus(s) => self.job.status = Some(*s),
                JobAction::Event(e) => self.events.push(e),
                JobAction::AdoptPod { uid, owner, .. } => {
                    let p = self.pods.iter_mut().find(|p| pod_uid(p) == uid).unwrap();
                    p.metadata.owner_references = Some(vec![owner]);
                    p.metadata
                        .finalizers
                        .get_or_insert_with(Vec::new)
                        .push(TRACKING_FINALIZER.into());
                }
                JobAction::ReleasePod { .. } => {}
            }
        }

        /// Deleted pods whose finalizers are gone and that are terminal (or
        /// were never running) disappear, as after the kubelet's kill.
        fn gc(&mut self) {
            self.pods.retain(|p| {
                !(p.metadata.deletion_timestamp.is_some()
                    && p.metadata.finalizers.as_ref().is_none_or(|f| f.is_empty()))
            });
        }

        fn kill_terminating(&mut self) {
            for p in &mut self.pods {
                if p.metadata.deletion_timestamp.is_some() && !podutil::is_terminal(p) {
                    p.status.as_mut().unwrap().phase = Some("Failed".into());
                }
            }
        }

        fn finish(&mut self, n: usize, phase_: &str, exit: i32) {
            let at = podutil::chrono_to_time(self.now);
            for p in self
                .pods
                .iter_mut()
                .filter(|p| podutil::is_active(p))
                .take(n)
            {
                let st = p.status.as_mut().unwrap();
                st.phase = Some(phase_.into());
                st.container_statuses = Some(vec![ContainerStatus {
                    name: "main".into(),
                    state: Some(ContainerState {
                        terminated: Some(ContainerStateTerminated {
                            exit_code: exit,
                            finished_at: Some(at.clone()),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }]);
            }
        }

        fn active(&self) -> usize {
            self.pods.iter().filter(|p| podutil::is_active(p)).count()
        }

        fn status(&self) -> JobStatus {
            self.job.status.clone().unwrap_or_default()
        }

        fn has_condition(&self, t: &str) -> bool {
            true_condition(self.status().conditions.as_deref().unwrap_or(&[]), t).is_some()
        }

        fn reasons(&self) -> Vec<String> {
            self.events.iter().map(|e| e.reason.clone()).collect()
        }
    }

    #[test]
    fn creates_pods_like_upstream() {
        let mut w = World::new(job(Some(5), 2));
        let plan = w.sync();
        let created: Vec<&Pod> = plan
            .actions
            .iter()
            .filter_map(|a| match a {
                JobAction::CreatePod(p) => Some(&**p),
                _ => None,
            })
            .collect();
        assert_eq!(created.len(), 2);
        let p = created[0];
        assert_eq!(p.metadata.generate_name.as_deref(), Some("pi-"));
        assert_eq!(p.metadata.namespace.as_deref(), Some("ns"));
        assert_eq!(
            p.metadata.finalizers,
            Some(vec![TRACKING_FINALIZER.to_string()])
        );
        let labels = p.metadata.labels.clone().unwrap();
        for k in [
            CONTROLLER_UID_LABEL,
            JOB_NAME_LABEL,
            LEGACY_CONTROLLER_UID_LABEL,
            LEGACY_JOB_NAME_LABEL,
        ] {
            assert!(labels.contains_key(k), "{k}");
        }
        let owner = &p.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str()),
            ("Job", "job-uid")
        );
        assert_eq!(owner.controller, Some(true));
        let st = w.status();
        assert_eq!(st.start_time, Some(podutil::chrono_to_time(t0())));
        assert_eq!(st.active, None, "created pods are counted next sync");
        w.sync();
        assert_eq!(w.status().active, Some(2));
        assert_eq!(w.events[0].message, "Created pod: pi-1");
    }

    #[test]
    fn completions_five_parallelism_two_reaches_complete() {
        let mut w = World::new(job(Some(5), 2));
        for _ in 0..20 {
            w.sync();
            if w.has_condition("Complete") {
                break;
            }
            assert!(w.active() <= 2, "parallelism respected");
            w.now += secs(5);
            w.finish(2, "Succeeded", 0);
        }
        let st = w.status();
        assert!(w.has_condition("Complete"));
        assert!(w.has_condition("SuccessCriteriaMet"));
        assert_eq!(st.succeeded, Some(5));
        assert_eq!(st.active, None);
        assert!(st.completion_time.is_some());
        assert_eq!(w.next, 5, "never more pods than completions");
        assert!(w.pods.iter().all(|p| !has_tracking_finalizer(p)));
        let c = true_condition(st.conditions.as_deref().unwrap(), "Complete").unwrap();
        assert_eq!(c.reason.as_deref(), Some("CompletionsReached"));
        assert_eq!(w.reasons().iter().filter(|r| *r == "Completed").count(), 1);
        assert!(w.events.iter().any(|e| e.message == "Job completed"));
        // Finished: nothing more to do.
        assert_eq!(w.sync(), JobPlan::default());
    }

    #[test]
    fn backoff_limit_fails_the_job_with_delays() {
        let mut j = job(Some(1), 1);
        j.spec.as_mut().unwrap().backoff_limit = Some(2);
        let mut w = World::new(j);
        let mut delays = Vec::new();
        for _ in 0..30 {
            let plan = w.sync();
            if w.has_condition("Failed") {
                break;
            }
            if let Some(d) = plan.requeue_after {
                delays.push(d.as_secs());
                w.now += chrono::Duration::from_std(d).unwrap();
                continue;
            }
            w.finish(1, "Failed", 1);
        }
        assert!(w.has_condition("FailureTarget"));
        let st = w.status();
        let c = true_condition(st.conditions.as_deref().unwrap(), "Failed").unwrap();
        assert_eq!(c.reason.as_deref(), Some("BackoffLimitExceeded"));
        assert_eq!(
            c.message.as_deref(),
            Some("Job has reached the specified backoff limit")
        );
        assert_eq!(st.failed, Some(3));
        assert_eq!(w.next, 3, "backoffLimit 2 allows 3 pods");
        assert_eq!(delays, vec![10, 20]);
        assert!(w.events.iter().any(|e| e.type_ == "Warning"
            && e.reason == "BackoffLimitExceeded"
            && e.message == "Job has reached the specified backoff limit"));
    }

    #[test]
    fn backoff_delay_table() {
        // (failures after last success, seconds since last failure, expected remaining)
        let cases = [
            (1, 0, 10),
            (1, 4, 6),
            (2, 0, 20),
            (3, 5, 35),
            (8, 0, 600),
            (1, 11, 0),
        ];
        for (failures, since, want) in cases {
            let mut j = job(Some(10), 1);
            j.spec.as_mut().unwrap().backoff_limit = Some(100);
            let mut w = World::new(j);
            w.sync();
            for _ in 0..failures {
                w.sync();
                w.finish(1, "Failed", 1);
                // Create the replacement without waiting for the backoff.
                let fresh = new_pod(&w.job, None);
                w.apply(JobAction::CreatePod(Box::new(fresh)));
            }
            w.now += secs(since);
            let sync = Sync::new(&w.job, w.job.spec.as_ref().unwrap(), &w.pods, w.now);
            assert_eq!(
                sync.backoff_remaining().as_secs(),
                want,
                "{failures} {since}"
            );
        }
    }

    #[test]
    fn indexed_job_tracks_completed_indexes() {
        let mut j = job(Some(6), 3);
        j.spec.as_mut().unwrap().completion_mode = Some("Indexed".into());
        let mut w = World::new(j);
        let plan = w.sync();
        let pods: Vec<Pod> = plan
            .actions
            .iter()
            .filter_map(|a| match a {
                JobAction::CreatePod(p) => Some((**p).clone()),
                _ => None,
            })
            .collect();
        assert_eq!(pods.len(), 3);
        let ix: Vec<Option<i32>> = pods.iter().map(completion_index).collect();
        assert_eq!(ix, vec![Some(0), Some(1), Some(2)]);
        let p1 = &pods[1];
        assert_eq!(p1.metadata.generate_name.as_deref(), Some("pi-1-"));
        assert_eq!(
            p1.metadata.labels.as_ref().unwrap()[COMPLETION_INDEX_ANNOTATION],
            "1"
        );
        let spec = p1.spec.as_ref().unwrap();
        assert_eq!(spec.hostname.as_deref(), Some("pi-1"));
        let env = &spec.containers[0].env.as_ref().unwrap()[0];
        assert_eq!(env.name, COMPLETION_INDEX_ENV);
        assert_eq!(
            env.value_from
                .as_ref()
                .unwrap()
                .field_ref
                .as_ref()
                .unwrap()
                .field_path,
            "metadata.labels['batch.kubernetes.io/job-completion-index']"
        );
        // Index 1 succeeds, 0 and 2 keep running: index 3 is created next.
        let i1 = w
            .pods
            .iter()
            .position(|p| completion_index(p) == Some(1))
            .unwrap();
        w.pods[i1].status.as_mut().unwrap().phase = Some("Succeeded".into());
        let plan = w.sync();
        assert_eq!(w.status().completed_indexes.as_deref(), Some("1"));
        let new_ix: Vec<Option<i32>> = plan
            .actions
            .iter()
            .filter_map(|a| match a {
                JobAction::CreatePod(p) => Some(completion_index(p)),
                _ => None,
            })
            .collect();
        assert_eq!(new_ix, vec![Some(3)]);
        for _ in 0..10 {
            w.sync();
            if w.has_condition("Complete") {
                break;
            }
            w.finish(3, "Succeeded", 0);
        }
        assert!(w.has_condition("Complete"));
        assert_eq!(w.status().completed_indexes.as_deref(), Some("0-5"));
        assert_eq!(w.status().succeeded, Some(6));
    }

    #[test]
    fn intervals_format_and_parse() {
        let cases: [(&[i32], &str); 5] = [
            (&[], ""),
            (&[1], "1"),
            (&[1, 3, 4, 5], "1,3-5"),
            (&[0, 1, 3], "0,1,3"),
            (&[2, 0, 1, 7, 8, 9, 10], "0-2,7-10"),
        ];
        for (ixs, want) in cases {
            let mut v = ixs.to_vec();
            v.sort();
            let iv = Intervals::default().with_indexes(&v);
            assert_eq!(iv.to_string(), want);
            assert_eq!(Intervals::parse(want, 100), iv, "{want}");
            assert_eq!(iv.total(), ixs.len() as i32);
        }
        assert_eq!(Intervals::parse("1,3-9,x,12", 6).to_string(), "1,3-5");
        assert_eq!(
            first_pending_indexes(&Intervals::parse("0,2-3", 9), 3, 9),
            vec![1, 4, 5]
        );
    }

    #[test]
    fn parallelism_shrink_deletes_not_ready_pods_first() {
        let mut w = World::new(job(None, 3));
        w.sync();
        w.sync();
        assert_eq!(w.active(), 3);
        let ready = PodCondition {
            type_: "Ready".into(),
            status: "True".into(),
            ..Default::default()
        };
        for (i, p) in w.pods.iter_mut().take(2).enumerate() {
            let st = p.status.as_mut().unwrap();
            st.phase = Some("Running".into());
            let mut c = ready.clone();
            // pi-1 has been ready longer than pi-2.
            c.last_transition_time = Some(podutil::chrono_to_time(t0() + secs(i as i64)));
            st.conditions = Some(vec![c]);
        }
        w.job.spec.as_mut().unwrap().parallelism = Some(1);
        let plan = w.sync();
        let deleted: Vec<&str> = plan
            .actions
            .iter()
            .filter_map(|a| match a {
                JobAction::DeletePod { name, .. } => Some(name.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(deleted, vec!["pi-3", "pi-2"]);
        assert_eq!(w.status().active, Some(1));
        assert!(w.events.iter().any(|e| e.message == "Deleted pod: pi-3"));
        assert_eq!(w.status().failed, None, "scale-down is not a failure");
    }

    #[test]
    fn suspend_and_resume() {
        let mut w = World::new(job(Some(4), 2));
        w.sync();
        w.sync();
        w.job.spec.as_mut().unwrap().suspend = Some(true);
        w.now += secs(30);
        w.sync();
        assert_eq!(w.active(), 0);
        assert!(w.has_condition("Suspended"));
        let st = w.status();
        let c = true_condition(st.conditions.as_deref().unwrap(), "Suspended").unwrap();
        assert_eq!(c.reason.as_deref(), Some("JobSuspended"));
        assert_eq!(c.message.as_deref(), Some("Job suspended"));
        assert!(w.events.iter().any(|e| e.reason == "Suspended"));
        assert_eq!(st.failed, None);
        w.job.spec.as_mut().unwrap().suspend = Some(false);
        w.now += secs(30);
        let plan = w.sync();
        assert!(!w.has_condition("Suspended"));
        assert!(
            w.events
                .iter()
                .any(|e| e.reason == "Resumed" && e.message == "Job resumed")
        );
        assert_eq!(w.status().start_time, Some(podutil::chrono_to_time(w.now)));
        assert_eq!(
            plan.actions
                .iter()
                .filter(|a| matches!(a, JobAction::CreatePod(_)))
                .count(),
            2
        );
    }

    #[test]
    fn active_deadline_fails_after_pods_terminate() {
        let mut j = job(Some(1), 1);
        j.spec.as_mut().unwrap().active_deadline_seconds = Some(60);
        let mut w = World::new(j);
        let plan = w.sync();
        assert_eq!(plan.requeue_after, Some(Duration::from_secs(60)));
        w.now += secs(60);
        w.sync();
        assert!(w.has_condition("FailureTarget"));
        assert!(!w.has_condition("Failed"), "waits for terminating pods");
        w.kill_terminating();
        w.sync();
        w.sync();
        let st = w.status();
        let c = true_condition(st.conditions.as_deref().unwrap(), "Failed").unwrap();
        assert_eq!(c.reason.as_deref(), Some("DeadlineExceeded"));
        assert_eq!(
            c.message.as_deref(),
            Some("Job was active longer than specified deadline")
        );
        assert_eq!(st.failed, Some(1));
        assert_eq!(st.terminating, Some(0));
    }

    fn exit_policy(action: &str, codes: Vec<i32>) -> PodFailurePolicy {
        PodFailurePolicy {
            rules: vec![PodFailurePolicyRule {
                action: action.into(),
                on_exit_codes: Some(PodFailurePolicyOnExitCodesRequirement {
                    container_name: Some("main".into()),
                    operator: "In".into(),
                    values: codes,
                }),
                on_pod_conditions: None,
            }],
        }
    }

    #[test]
    fn pod_failure_policy_fail_job() {
        let mut j = job(Some(3), 1);
        j.spec.as_mut().unwrap().pod_failure_policy = Some(exit_policy("FailJob", vec![42]));
        let mut w = World::new(j);
        w.sync();
        w.finish(1, "Failed", 42);
        w.sync();
        w.sync();
        let st = w.status();
        let c = true_condition(st.conditions.as_deref().unwrap(), "Failed").unwrap();
        assert_eq!(c.reason.as_deref(), Some("PodFailurePolicy"));
        assert_eq!(
            c.message.as_deref(),
            Some(
                "Container main for pod ns/pi-1 failed with exit code 42 matching FailJob rule at index 0"
            )
        );
        assert!(w.has_condition("FailureTarget"));
    }

    #[test]
    fn pod_failure_policy_ignore_does_not_count() {
        let mut j = job(Some(1), 1);
        {
            let s = j.spec.as_mut().unwrap();
            s.backoff_limit = Some(0);
            s.pod_failure_policy = Some(PodFailurePolicy {
                rules: vec![PodFailurePolicyRule {
                    action: "Ignore".into(),
                    on_exit_codes: None,
                    on_pod_conditions: Some(vec![PodFailurePolicyOnPodConditionsPattern {
                        type_: "DisruptionTarget".into(),
                        status: "True".into(),
                    }]),
                }],
            });
        }
        let mut w = World::new(j);
        w.sync();
        w.finish(1, "Failed", 137);
        w.pods[0].status.as_mut().unwrap().conditions = Some(vec![PodCondition {
            type_: "DisruptionTarget".into(),
            status: "True".into(),
            ..Default::default()
        }]);
        let plan = w.sync();
        assert_eq!(plan.requeue_after, Some(Duration::from_secs(10)));
        w.now += secs(10);
        w.sync();
        w.sync();
        assert!(!w.has_condition("FailureTarget"));
        assert_eq!(w.status().failed, None);
        assert_eq!(w.next, 2, "a replacement was created");
        assert_eq!(w.active(), 1);
    }

    #[test]
    fn policy_matching_table() {
        let pod = |code: i32, container: &str| Pod {
            metadata: ObjectMeta {
                name: Some("p".into()),
                namespace: Some("ns".into()),
                ..Default::default()
            },
            status: Some(PodStatus {
                phase: Some("Failed".into()),
                container_statuses: Some(vec![ContainerStatus {
                    name: container.into(),
                    state: Some(ContainerState {
                        terminated: Some(ContainerStateTerminated {
                            exit_code: code,
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let not_in = PodFailurePolicy {
            rules: vec![PodFailurePolicyRule {
                action: "Count".into(),
                on_exit_codes: Some(PodFailurePolicyOnExitCodesRequirement {
                    container_name: None,
                    operator: "NotIn".into(),
                    values: vec![1],
                }),
                on_pod_conditions: None,
            }],
        };
        let cases = [
            (
                exit_policy("FailJob", vec![42]),
                pod(42, "main"),
                Some("FailJob"),
                true,
            ),
            (
                exit_policy("FailJob", vec![42]),
                pod(42, "side"),
                None,
                true,
            ),
            (exit_policy("FailJob", vec![0]), pod(0, "main"), None, true),
            (
                exit_policy("Ignore", vec![3]),
                pod(3, "main"),
                Some("Ignore"),
                false,
            ),
            (not_in.clone(), pod(1, "x"), None, true),
            (not_in, pod(2, "x"), Some("Count"), true),
        ];
        for (policy, p, action, counts) in cases {
            let m = match_pod_failure_policy(Some(&policy), &p);
            assert_eq!(m.action.as_deref(), action);
            assert_eq!(m.count_failed, counts);
        }
    }

    #[test]
    fn adopts_orphans_and_ignores_foreign_pods() {
        let mut w = World::new(job(Some(1), 1));
        let labels = w
            .job
            .spec
            .as_ref()
            .unwrap()
            .selector
            .clone()
            .unwrap()
            .match_labels;
        w.pods.push(Pod {
            metadata: ObjectMeta {
                name: Some("orphan".into()),
                uid: Some("o1".into()),
                labels: labels.clone(),
                ..Default::default()
            },
            status: Some(PodStatus {
                phase: Some("Running".into()),
                ..Default::default()
            }),
            ..Default::default()
        });
        w.pods.push(Pod {
            metadata: ObjectMeta {
                name: Some("foreign".into()),
                uid: Some("f1".into()),
                labels,
                owner_references: Some(vec![podutil::owner_ref("v1", "X", "x", "other")]),
                ..Default::default()
            },
            status: Some(PodStatus {
                phase: Some("Running".into()),
                ..Default::default()
            }),
            ..Default::default()
        });
        let plan = w.sync();
        assert!(matches!(&plan.actions[0], JobAction::AdoptPod { name, .. } if name == "orphan"));
        assert!(
            !plan
                .actions
                .iter()
                .any(|a| matches!(a, JobAction::CreatePod(_)))
        );
        assert_eq!(w.status().active, Some(1));
    }

    #[test]
    fn ttl_decisions() {
        let mut j = job(Some(1), 1);
        assert_eq!(ttl_expired(&j, t0()), None);
        j.spec.as_mut().unwrap().ttl_seconds_after_finished = Some(100);
        assert_eq!(ttl_expired(&j, t0()), None, "not finished");
        j.status = Some(JobStatus {
            conditions: Some(vec![new_condition("Complete", "True", "", "", t0())]),
            ..Default::default()
        });
        assert_eq!(
            ttl_expired(&j, t0() + secs(40)),
            Some(TtlAction::RequeueAfter(Duration::from_secs(60)))
        );
        assert_eq!(ttl_expired(&j, t0() + secs(100)), Some(TtlAction::Delete));
    }

    #[test]
    fn restart_policy_on_failure_counts_restarts() {
        let mut j = job(Some(1), 1);
        {
            let s = j.spec.as_mut().unwrap();
            s.backoff_limit = Some(2);
            s.template.spec.as_mut().unwrap().restart_policy = Some("OnFailure".into());
        }
        let mut w = World::new(j);
        w.sync();
        let st = w.pods[0].status.as_mut().unwrap();
        st.phase = Some("Running".into());
        st.container_statuses = Some(vec![ContainerStatus {
            name: "main".into(),
            restart_count: 2,
            ..Default::default()
        }]);
        w.sync();
        assert!(w.has_condition("FailureTarget"));
    }
}
