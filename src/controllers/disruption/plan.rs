//! PodDisruptionBudget status (upstream `pkg/controller/disruption`) and the
//! eviction check of `pods/eviction` (upstream
//! `pkg/registry/core/pod/storage/eviction.go`), as pure functions.
//!
//! Owns: which pods a PDB covers, expected/desired/current healthy counts
//! (integer or percentage `minAvailable`/`maxUnavailable`, percentages rounded
//! up against the controllers' scale), `disruptionsAllowed`, the
//! `disruptedPods` bookkeeping with its 2-minute deletion timeout, the
//! `DisruptionAllowed` condition, and whether one eviction may proceed
//! (with the PDB status write that must precede the pod deletion).
//!
//! Invariants: `sync_pdb` is idempotent (`changed == false` on its own
//! output); condition transition times only move when the status flips.
//!
//! Must not: do I/O, read clocks, look up controllers (the shell resolves
//! each pod's controller to its scale), or panic on odd objects.

use crate::controllers::podutil::{
    chrono_to_time, controller_ref, is_ready, selector_matches, time_to_chrono,
};
use chrono::{DateTime, Duration, Utc};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::BTreeMap;

/// How long an eviction's victim may linger before the PDB counts it again.
pub const DELETION_TIMEOUT_SECONDS: i64 = 120;
/// Upstream refuses evictions while more disruptions than this are pending.
pub const MAX_DISRUPTED_POD_SIZE: usize = 2000;
pub const DISRUPTION_ALLOWED: &str = "DisruptionAllowed";
/// The 429 message of a refused eviction.
pub const EVICTION_REFUSED: &str =
    "Cannot evict pod as it would violate the pod's disruption budget.";

/// The scale of the controller behind a pod, resolved by the shell from the
/// pod's controllerRef uid. For a ReplicaSet owned by a Deployment, report
/// the Deployment (its uid and `spec.replicas`), as upstream's finders do,
/// so the ReplicaSets of one rollout count once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControllerScale {
    pub uid: String,
    pub replicas: i32,
}

/// An event to record: on the PDB, or on the named pod of its namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PdbEvent {
    pub pod: Option<String>,
    pub type_: String,
    pub reason: String,
    pub message: String,
}

/// Result of one PDB sync.
#[derive(Debug, Clone, PartialEq)]
pub struct PdbSync {
    /// The status to write with `UpdateStatus` when `changed`.
    pub status: PodDisruptionBudgetStatus,
    pub changed: bool,
    pub events: Vec<PdbEvent>,
    /// Sync again after this long (a pending disruption times out).
    pub recheck_after: Option<Duration>,
}

/// Why an eviction is refused, as the API status to return.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvictionError {
    /// 429, 403 or 500.
    pub code: u16,
    /// `TooManyRequests`, `Forbidden`, or "" for the 500.
    pub reason: String,
    pub message: String,
    /// A `DisruptionBudget` status cause, when upstream adds one.
    pub cause: Option<String>,
    pub retry_after_seconds: Option<i32>,
}

/// An eviction that may proceed.
#[derive(Debug, Clone, PartialEq)]
pub struct EvictionOk {
    /// Write this PDB with `UpdateStatus` (resourceVersion precondition; on
    /// conflict re-read and re-check) before deleting the pod. Skip the write
    /// for dry-run requests.
    pub pdb_update: Option<PodDisruptionBudget>,
    /// Delete the pod with a `preconditions.resourceVersion` of the pod read
    /// here (it was unhealthy; it must not have become ready meanwhile). A
    /// conflict then becomes a 429 with `EVICTION_REFUSED`.
    pub require_pod_resource_version: bool,
}

fn empty_selector(sel: &LabelSelector) -> bool {
    sel.match_labels.as_ref().is_none_or(|m| m.is_empty())
        && sel.match_expressions.as_ref().is_none_or(|e| e.is_empty())
}

fn labels_of(pod: &Pod) -> BTreeMap<String, String> {
    pod.metadata.labels.clone().unwrap_or_default()
}

fn same_namespace(pdb: &PodDisruptionBudget, pod: &Pod) -> bool {
    pdb.metadata.namespace.as_deref().unwrap_or("")
        == pod.metadata.namespace.as_deref().unwrap_or("")
}

/// Whether the PDB controller counts this pod: same namespace, and the
/// selector matches (policy/v1: an empty selector selects every pod, a
/// missing one none).
pub fn pdb_selects(pdb: &PodDisruptionBudget, pod: &Pod) -> bool {
    let Some(sel) = pdb.spec.as_ref().and_then(|s| s.selector.as_ref()) else {
        return false;
    };
    same_namespace(pdb, pod) && selector_matches(sel, &labels_of(pod))
}

/// The PDBs the eviction handler applies to a pod (there, an empty selector
/// matches nothing).
pub fn pdbs_guarding<'a>(
    pdbs: &'a [PodDisruptionBudget],
    pod: &Pod,
) -> Vec<&'a PodDisruptionBudget> {
    pdbs.iter()
        .filter(|pdb| {
            pdb.spec
                .as_ref()
                .and_then(|s| s.selector.as_ref())
                .is_some_and(|sel| !empty_selector(sel))
                && pdb_selects(pdb, pod)
        })
        .collect()
}

/// Upstream `GetScaledValueFromIntOrPercent`, rounding up.
pub fn scaled_value(v: &IntOrString, total: i32) -> Result<i32, String> {
    match v {
        IntOrString::Int(i) => Ok(*i),
        IntOrString::String(s) => {
            let Some(num) = s.strip_suffix('%') else {
                return Err(
                    "invalid value for IntOrString: invalid type: string is not a percentage"
                        .to_string(),
                );
            };
            let pct: i64 = num.parse().map_err(|_| {
                format!("invalid value for IntOrString: invalid value {s:?}: strconv.Atoi: parsing {num:?}: invalid syntax")
            })?;
            let scaled = (pct * i64::from(total) + 99).div_euclid(100);
            Ok(scaled.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32)
        }
    }
}

/// Sum of the scales of the controllers behind `pods` (each counted once),
/// plus the names of pods without a controller.
fn expected_scale(
    pods: &[&Pod],
    scales: &BTreeMap<String, ControllerScale>,
) -> Result<(i32, Vec<String>), String> {
    let mut seen: BTreeMap<&str, i32> = BTreeMap::new();
    let mut unmanaged = Vec::new();
    for pod in pods {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let Some(owner) = controller_ref(&pod.metadata) else {
            unmanaged.push(name);
            continue;
        };
        let Some(scale) = scales.get(&owner.uid) else {
            return Err(format!("found no controllers for pod {name:?}"));
        };
        seen.insert(scale.uid.as_str(), scale.replicas);
    }
    let total = seen.values().fold(0i32, |a, b| a.saturating_add(*b));
    Ok((total, unmanaged))
}

/// `(expectedPods, desiredHealthy, unmanaged pod names)` for a PDB.
pub fn expected_pod_count(
    pdb: &PodDisruptionBudget,
    pods: &[&Pod],
    scales: &BTreeMap<String, ControllerScale>,
) -> Result<(i32, i32, Vec<String>), String> {
    let spec = pdb.spec.as_ref();
    if let Some(max) = spec.and_then(|s| s.max_unavailable.as_ref()) {
        let (expected, unmanaged) = expected_scale(pods, scales)?;
        let max = scaled_value(max, expected)?;
        return Ok((expected, expected.saturating_sub(max).max(0), unmanaged));
    }
    match spec.and_then(|s| s.min_available.as_ref()) {
        Some(IntOrString::Int(n)) => Ok((pods.len() as i32, *n, Vec::new())),
        Some(min) => {
            let (expected, unmanaged) = expected_scale(pods, scales)?;
            Ok((expected, scaled_value(min, expected)?, unmanaged))
        }
        None => Ok((0, 0, Vec::new())),
    }
}

fn selector_text(sel: Option<&LabelSelector>) -> String {
    let Some(sel) = sel else {
        return "nil".to_string();
    };
    let labels: String = sel
        .match_labels
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}: {v},"))
        .collect();
    let exprs: String = sel
        .match_expressions
        .iter()
        .flatten()
        .map(|e| {
            format!(
                "LabelSelectorRequirement{{Key:{},Operator:{},Values:[{}],}},",
                e.key,
                e.operator,
                e.values.clone().unwrap_or_default().join(" ")
            )
        })
        .collect();
    format!(
        "&LabelSelector{{MatchLabels:map[string]string{{{labels}}},MatchExpressions:[]LabelSelectorRequirement{{{exprs}}},}}"
    )
}

/// Sets (or adds) the `DisruptionAllowed` condition like `SetStatusCondition`.
fn set_condition(
    status: &mut PodDisruptionBudgetStatus,
    ok: bool,
    reason: &str,
    message: &str,
    now: DateTime<Utc>,
) {
    let value = if ok { "True" } else { "False" };
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    let generation = status.observed_generation;
    match conditions
        .iter_mut()
        .find(|c| c.type_ == DISRUPTION_ALLOWED)
    {
        Some(c) => {
            if c.status != value {
                c.status = value.to_string();
                c.last_transition_time = chrono_to_time(now);
            }
            c.reason = reason.to_string();
            c.message = message.to_string();
            c.observed_generation = generation;
        }
        None => conditions.push(Condition {
            type_: DISRUPTION_ALLOWED.to_string(),
            status: value.to_string(),
            reason: reason.to_string(),
            message: message.to_string(),
            observed_generation: generation,
            last_transition_time: chrono_to_time(now),
        }),
    }
}

/// Upstream `UpdateDisruptionAllowedCondition`.
fn update_allowed_condition(status: &mut PodDisruptionBudgetStatus, now: DateTime<Utc>) {
    if status.disruptions_allowed > 0 {
        set_condition(status, true, "SufficientPods", "", now);
    } else {
        set_condition(status, false, "InsufficientPods", "", now);
    }
}

/// Keeps the disruptions of pods still expected to go; reports the others.
fn prune_disrupted(
    pdb: &PodDisruptionBudget,
    pods: &[&Pod],
    now: DateTime<Utc>,
    events: &mut Vec<PdbEvent>,
) -> (BTreeMap<String, Time>, Option<DateTime<Utc>>) {
    let mut kept = BTreeMap::new();
    let mut recheck: Option<DateTime<Utc>> = None;
    let Some(disrupted) = pdb.status.as_ref().and_then(|s| s.disrupted_pods.as_ref()) else {
        return (kept, recheck);
    };
    let ns = pdb.metadata.namespace.as_deref().unwrap_or("");
    let pdb_name = pdb.metadata.name.as_deref().unwrap_or("");
    for pod in pods {
        let name = pod.metadata.name.as_deref().unwrap_or("");
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let Some(at) = disrupted.get(name) else {
            continue;
        };
        let expected = time_to_chrono(at) + Duration::seconds(DELETION_TIMEOUT_SECONDS);
        if expected < now {
            events.push(PdbEvent {
                pod: Some(name.to_string()),
                type_: "Warning".into(),
                reason: "NotDeleted".into(),
                message: format!(
                    "Pod was expected by PDB {ns}/{pdb_name} to be deleted but it wasn't"
                ),
            });
        } else {
            recheck = Some(recheck.map_or(expected, |r| r.min(expected)));
            kept.insert(name.to_string(), at.clone());
        }
    }
    (kept, recheck)
}

fn count_healthy(pods: &[&Pod], disrupted: &BTreeMap<String, Time>, now: DateTime<Utc>) -> i32 {
    pods.iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| {
            let name = p.metadata.name.as_deref().unwrap_or("");
            disrupted.get(name).is_none_or(|at| {
                time_to_chrono(at) + Duration::seconds(DELETION_TIMEOUT_SECONDS) <= now
            })
        })
        .filter(|p| is_ready(p))
        .count() as i32
}

/// Computes a PDB's status from the pods of its namespace (`pods` may hold
/// other pods too; they are filtered with `pdb_selects`).
pub fn sync_pdb(
    pdb: &PodDisruptionBudget,
    pods: &[Pod],
    scales: &BTreeMap<String, ControllerScale>,
    now: DateTime<Utc>,
) -> PdbSync {
    let old = pdb.status.clone().unwrap_or_default();
    let covered: Vec<&Pod> = pods.iter().filter(|p| pdb_selects(pdb, p)).collect();
    let mut events = Vec::new();
    let pdb_event = |type_: &str, reason: &str, message: String| PdbEvent {
        pod: None,
        type_: type_.to_string(),
        reason: reason.to_string(),
        message,
    };
    if covered.is_empty() {
        events.push(pdb_event(
            "Normal",
            "NoPods",
            "No matching pods found".to_string(),
        ));
    }
    let (expected, desired, unmanaged) = match expected_pod_count(pdb, &covered, scales) {
        Ok(v) => v,
        Err(err) => {
            events.push(pdb_event(
                "Warning",
                "CalculateExpectedPodCountFailed",
                format!("Failed to calculate the number of expected pods: {err}"),
            ));
            let mut status = old.clone();
            status.disruptions_allowed = 0;
            set_condition(&mut status, false, "SyncFailed", &err, now);
            let changed = status != old;
            return PdbSync {
                status,
                changed,
                events,
                recheck_after: None,
            };
        }
    };
    if !unmanaged.is_empty() {
        let sel = selector_text(pdb.spec.as_ref().and_then(|s| s.selector.as_ref()));
        events.push(pdb_event(
            "Warning",
            "UnmanagedPods",
            format!(
                "Pods selected by this PodDisruptionBudget (selector: {sel}) were found to be unmanaged. As a result, the status of the PDB cannot be calculated correctly, which may result in undefined behavior. To account for these pods please set \".spec.minAvailable\" field of the PDB to an integer value."
            ),
        ));
    }
    let (disrupted, recheck) = prune_disrupted(pdb, &covered, now, &mut events);
    let healthy = count_healthy(&covered, &disrupted, now);
    let allowed = if expected <= 0 {
        0
    } else {
        (healthy - desired).max(0)
    };
    let mut status = PodDisruptionBudgetStatus {
        current_healthy: healthy,
        desired_healthy: desired,
        expected_pods: expected,
        disruptions_allowed: allowed,
        disrupted_pods: (!disrupted.is_empty()).then_some(disrupted),
        observed_generation: pdb.metadata.generation,
        conditions: old.conditions.clone(),
    };
    update_allowed_condition(&mut status, now);
    let changed = status != old;
    PdbSync {
        status,
        changed,
        events,
        recheck_after: recheck.map(|t| t - now),
    }
}

fn too_many_requests(cause: String, retry: i32) -> EvictionError {
    EvictionError {
        code: 429,
        reason: "TooManyRequests".into(),
        message: EVICTION_REFUSED.into(),
        cause: Some(cause),
        retry_after_seconds: Some(retry),
    }
}

fn forbidden(pdb: &str, why: &str) -> EvictionError {
    EvictionError {
        code: 403,
        reason: "Forbidden".into(),
        message: format!("poddisruptionbudget.policy {pdb:?} is forbidden: {why}"),
        cause: None,
        retry_after_seconds: None,
    }
}

/// Evicting a terminal, pending or deleting pod skips every budget.
fn can_ignore_pdb(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    matches!(phase, Some("Succeeded" | "Failed" | "Pending"))
        || pod.metadata.deletion_timestamp.is_some()
}

/// Whether `pod` may be evicted given the PDBs of its namespace (all of
/// them, or only those matching: they are filtered here), and the PDB
/// status write that must happen first.
pub fn eviction_allowed(
    pdbs: &[PodDisruptionBudget],
    pod: &Pod,
    now: DateTime<Utc>,
) -> Result<EvictionOk, EvictionError> {
    let free = EvictionOk {
        pdb_update: None,
        require_pod_resource_version: false,
    };
    if can_ignore_pdb(pod) {
        return Ok(free);
    }
    let guarding = pdbs_guarding(pdbs, pod);
    let pdb = match guarding.as_slice() {
        [] => return Ok(free),
        [one] => *one,
        _ => {
            return Err(EvictionError {
                code: 500,
                reason: String::new(),
                message: "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.".into(),
                cause: None,
                retry_after_seconds: None,
            });
        }
    };
    let status = pdb.status.clone().unwrap_or_default();
    if !is_ready(pod) {
        let policy = pdb
            .spec
            .as_ref()
            .and_then(|s| s.unhealthy_pod_eviction_policy.as_deref());
        let budget_met =
            status.current_healthy >= status.desired_healthy && status.desired_healthy > 0;
        if policy == Some("AlwaysAllow") || budget_met {
            return Ok(EvictionOk {
                pdb_update: None,
                require_pod_resource_version: true,
            });
        }
    }
    let name = pdb.metadata.name.clone().unwrap_or_default();
    if status.observed_generation.unwrap_or(0) < pdb.metadata.generation.unwrap_or(0) {
        return Err(too_many_requests(
            format!("The disruption budget {name} is still being processed by the server."),
            10,
        ));
    }
    if status.disruptions_allowed < 0 {
        return Err(forbidden(&name, "pdb disruptions allowed is negative"));
    }
    if status.disrupted_pods.as_ref().map_or(0, |d| d.len()) > MAX_DISRUPTED_POD_SIZE {
        return Err(forbidden(
            &name,
            "DisruptedPods map too big - too many evictions not confirmed by PDB controller",
        ));
    }
    if status.disruptions_allowed == 0 {
        return Err(too_many_requests(
            format!(
                "The disruption budget {name} needs {} healthy pods and has {} currently",
                status.desired_healthy, status.current_healthy
            ),
            0,
        ));
    }
    let mut updated = pdb.clone();
    let st = updated.status.get_or_insert_with(Default::default);
    st.disruptions_allowed -= 1;
    if st.disruptions_allowed == 0 {
        update_allowed_condition(st, now);
    }
    let pod_name = pod.metadata.name.clone().unwrap_or_default();
    st.disrupted_pods
        .get_or_insert_with(BTreeMap::new)
        .insert(pod_name, chrono_to_time(now));
    Ok(EvictionOk {
        pdb_update: Some(updated),
        require_pod_resource_version: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodCondition, PodStatus};
    use k8s_openapi::api::policy::v1::PodDisruptionBudgetSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default()
    }

    fn labels() -> BTreeMap<String, String> {
        [("app".to_string(), "web".to_string())].into()
    }

    fn pod(name: &str, ready: bool, owner: Option<&str>) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                labels: Some(labels()),
                owner_references: owner.map(|uid| {
                    vec![OwnerReference {
                        uid: uid.into(),
                        controller: Some(true),
                        kind: "ReplicaSet".into(),
                        name: uid.into(),
                        api_version: "apps/v1".into(),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            },
            spec: None,
            status: Some(PodStatus {
                phase: Some("Running".into()),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        }
    }

    fn pdb(min: Option<IntOrString>, max: Option<IntOrString>) -> PodDisruptionBudget {
        PodDisruptionBudget {
            metadata: ObjectMeta {
                name: Some("web-pdb".into()),
                namespace: Some("ns".into()),
                generation: Some(1),
                ..Default::default()
            },
            spec: Some(PodDisruptionBudgetSpec {
                min_available: min,
                max_unavailable: max,
                selector: Some(LabelSelector {
                    match_labels: Some(labels()),
                    ..Default::default()
                }),
                unhealthy_pod_eviction_policy: None,
            }),
            status: None,
        }
    }

    fn scales(entries: &[(&str, &str, i32)]) -> BTreeMap<String, ControllerScale> {
        entries
            .iter()
            .map(|(rs, owner, n)| {
                (
                    rs.to_string(),
                    ControllerScale {
                        uid: owner.to_string(),
                        replicas: *n,
                    },
                )
            })
            .collect()
    }

    fn int(i: i32) -> Option<IntOrString> {
        Some(IntOrString::Int(i))
    }

    fn pct(s: &str) -> Option<IntOrString> {
        Some(IntOrString::String(s.into()))
    }

    fn condition(st: &PodDisruptionBudgetStatus) -> (String, String) {
        let c = st
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == DISRUPTION_ALLOWED)
            .expect("condition");
        (c.status.clone(), c.reason.clone())
    }

    #[test]
    fn status_table() {
        let three_ready = vec![
            pod("a", true, Some("rs1")),
            pod("b", true, Some("rs1")),
            pod("c", true, Some("rs1")),
        ];
        let two_of_three = vec![
            pod("a", true, Some("rs1")),
            pod("b", true, Some("rs1")),
            pod("c", false, Some("rs1")),
        ];
        let rs3 = scales(&[("rs1", "deploy", 3)]);
        let rollout = scales(&[("rs1", "deploy", 4), ("rs2", "deploy", 4)]);
        let mixed_rs = vec![
            pod("a", true, Some("rs1")),
            pod("b", true, Some("rs2")),
            pod("c", true, Some("rs2")),
        ];
        // (case, pdb, pods, scales, (expected, desired, healthy, allowed), reason)
        let cases = vec![
            (
                "int minAvailable",
                pdb(int(2), None),
                three_ready.clone(),
                BTreeMap::new(),
                (3, 2, 3, 1),
                "SufficientPods",
            ),
            (
                "percent minAvailable rounds up",
                pdb(pct("50%"), None),
                three_ready.clone(),
                rs3.clone(),
                (3, 2, 3, 1),
                "SufficientPods",
            ),
            (
                "int maxUnavailable",
                pdb(None, int(1)),
                two_of_three.clone(),
                rs3.clone(),
                (3, 2, 2, 0),
                "InsufficientPods",
            ),
            (
                "percent maxUnavailable rounds up",
                pdb(None, pct("34%")),
                three_ready.clone(),
                rs3.clone(),
                (3, 1, 3, 2),
                "SufficientPods",
            ),
            (
                "rollout counts deployment once",
                pdb(None, int(1)),
                mixed_rs,
                rollout,
                (4, 3, 3, 0),
                "InsufficientPods",
            ),
            (
                "maxUnavailable above scale",
                pdb(None, int(5)),
                three_ready.clone(),
                rs3.clone(),
                (3, 0, 3, 3),
                "SufficientPods",
            ),
            (
                "no pods",
                pdb(int(1), None),
                vec![],
                BTreeMap::new(),
                (0, 1, 0, 0),
                "InsufficientPods",
            ),
        ];
        for (name, p, pods, sc, (expected, desired, healthy, allowed), reason) in cases {
            let out = sync_pdb(&p, &pods, &sc, now());
            let st = &out.status;
            assert_eq!(
                (
                    st.expected_pods,
                    st.desired_healthy,
                    st.current_healthy,
                    st.disruptions_allowed
                ),
                (expected, desired, healthy, allowed),
                "{name}"
            );
            assert_eq!(condition(st).1, reason, "{name}");
            assert_eq!(st.observed_generation, Some(1), "{name}");
            assert!(out.changed, "{name}");
            let mut again = p.clone();
            again.status = Some(out.status.clone());
            let second = sync_pdb(&again, &pods, &sc, now() + Duration::seconds(5));
            assert!(!second.changed, "{name}: idempotent");
        }
    }

    #[test]
    fn events_table() {
        let cases = vec![
            (
                "no pods",
                pdb(int(1), None),
                vec![],
                "NoPods",
                "No matching pods found",
            ),
            (
                "unknown controller",
                pdb(pct("50%"), None),
                vec![pod("a", true, Some("rs-x"))],
                "CalculateExpectedPodCountFailed",
                "Failed to calculate the number of expected pods: found no controllers for pod \"a\"",
            ),
            (
                "unmanaged",
                pdb(pct("50%"), None),
                vec![pod("a", true, None)],
                "UnmanagedPods",
                "Pods selected by this PodDisruptionBudget (selector: &LabelSelector{MatchLabels:map[string]string{app: web,},MatchExpressions:[]LabelSelectorRequirement{},}) were found to be unmanaged. As a result, the status of the PDB cannot be calculated correctly, which may result in undefined behavior. To account for these pods please set \".spec.minAvailable\" field of the PDB to an integer value.",
            ),
        ];
        for (name, p, pods, reason, message) in cases {
            let out = sync_pdb(&p, &pods, &BTreeMap::new(), now());
            assert!(
                out.events
                    .iter()
                    .any(|e| e.reason == reason && e.message == message),
                "{name}: {:?}",
                out.events
            );
        }
        let failed = sync_pdb(
            &pdb(pct("50%"), None),
            &[pod("a", true, Some("rs-x"))],
            &BTreeMap::new(),
            now(),
        );
        assert_eq!(
            condition(&failed.status),
            ("False".to_string(), "SyncFailed".to_string())
        );
        assert_eq!(failed.status.disruptions_allowed, 0);
    }

    #[test]
    fn disrupted_pods_timeout() {
        let pods = vec![
            pod("a", true, None),
            pod("b", true, None),
            pod("c", true, None),
        ];
        let mut p = pdb(int(1), None);
        p.status = Some(PodDisruptionBudgetStatus {
            disrupted_pods: Some(
                [
                    (
                        "a".to_string(),
                        chrono_to_time(now() - Duration::seconds(30)),
                    ),
                    (
                        "b".to_string(),
                        chrono_to_time(now() - Duration::seconds(200)),
                    ),
                    ("gone".to_string(), chrono_to_time(now())),
                ]
                .into(),
            ),
            ..Default::default()
        });
        let out = sync_pdb(&p, &pods, &BTreeMap::new(), now());
        assert_eq!(out.status.current_healthy, 2, "a is on its way out");
        let kept: Vec<_> = out
            .status
            .disrupted_pods
            .iter()
            .flatten()
            .map(|(k, _)| k.clone())
            .collect();
        assert_eq!(kept, vec!["a".to_string()]);
        assert_eq!(out.recheck_after, Some(Duration::seconds(90)));
        let ev = out
            .events
            .iter()
            .find(|e| e.reason == "NotDeleted")
            .expect("event");
        assert_eq!(ev.pod.as_deref(), Some("b"));
        assert_eq!(
            ev.message,
            "Pod was expected by PDB ns/web-pdb to be deleted but it wasn't"
        );
    }

    fn with_status(
        mut p: PodDisruptionBudget,
        allowed: i32,
        current: i32,
        desired: i32,
    ) -> PodDisruptionBudget {
        p.status = Some(PodDisruptionBudgetStatus {
            disruptions_allowed: allowed,
            current_healthy: current,
            desired_healthy: desired,
            expected_pods: current,
            observed_generation: Some(1),
            ..Default::default()
        });
        p
    }

    #[test]
    fn eviction_table() {
        let ready = pod("a", true, None);
        let unready = pod("a", false, None);
        let mut pending = pod("a", true, None);
        if let Some(s) = pending.status.as_mut() {
            s.phase = Some("Pending".into());
        }
        let mut stale = with_status(pdb(int(1), None), 1, 2, 1);
        stale.metadata.generation = Some(2);
        let mut always = with_status(pdb(int(3), None), 0, 2, 3);
        if let Some(s) = always.spec.as_mut() {
            s.unhealthy_pod_eviction_policy = Some("AlwaysAllow".into());
        }
        let mut other_ns = with_status(pdb(int(1), None), 0, 1, 1);
        other_ns.metadata.namespace = Some("elsewhere".into());
        let mut empty_sel = with_status(pdb(int(1), None), 0, 1, 1);
        if let Some(s) = empty_sel.spec.as_mut() {
            s.selector = Some(LabelSelector::default());
        }
        // (case, pdbs, pod, Ok(decrements?) or Err(code, cause))
        type Want = Result<bool, (u16, Option<&'static str>)>;
        let cases: Vec<(&str, Vec<PodDisruptionBudget>, &Pod, Want)> = vec![
            ("no budget", vec![], &ready, Ok(false)),
            (
                "budget in another namespace",
                vec![other_ns],
                &ready,
                Ok(false),
            ),
            (
                "empty selector guards nothing",
                vec![empty_sel],
                &ready,
                Ok(false),
            ),
            (
                "allowed",
                vec![with_status(pdb(int(1), None), 1, 2, 1)],
                &ready,
                Ok(true),
            ),
            (
                "not allowed",
                vec![with_status(pdb(int(2), None), 0, 2, 2)],
                &ready,
                Err((
                    429,
                    Some("The disruption budget web-pdb needs 2 healthy pods and has 2 currently"),
                )),
            ),
            (
                "stale status",
                vec![stale],
                &ready,
                Err((
                    429,
                    Some("The disruption budget web-pdb is still being processed by the server."),
                )),
            ),
            (
                "negative",
                vec![with_status(pdb(int(1), None), -1, 0, 1)],
                &ready,
                Err((403, None)),
            ),
            (
                "two budgets",
                vec![
                    with_status(pdb(int(1), None), 1, 2, 1),
                    with_status(pdb(int(1), None), 1, 2, 1),
                ],
                &ready,
                Err((500, None)),
            ),
            (
                "pending pod skips budgets",
                vec![with_status(pdb(int(2), None), 0, 2, 2)],
                &pending,
                Ok(false),
            ),
            (
                "unready pod, budget met",
                vec![with_status(pdb(int(2), None), 0, 2, 2)],
                &unready,
                Ok(false),
            ),
            (
                "unready pod, budget not met",
                vec![with_status(pdb(int(3), None), 0, 2, 3)],
                &unready,
                Err((
                    429,
                    Some("The disruption budget web-pdb needs 3 healthy pods and has 2 currently"),
                )),
            ),
            (
                "unready pod, AlwaysAllow",
                vec![always],
                &unready,
                Ok(false),
            ),
        ];
        for (name, pdbs, pod, want) in cases {
            let got = eviction_allowed(&pdbs, pod, now());
            match (got, want) {
                (Ok(ok), Ok(decrements)) => {
                    assert_eq!(ok.pdb_update.is_some(), decrements, "{name}");
                    if let Some(p) = ok.pdb_update {
                        let st = p.status.expect("status");
                        assert_eq!(st.disruptions_allowed, 0, "{name}");
                        assert!(
                            st.disrupted_pods
                                .as_ref()
                                .is_some_and(|d| d.contains_key("a")),
                            "{name}"
                        );
                        assert_eq!(condition(&st).1, "InsufficientPods", "{name}");
                    }
                }
                (Err(e), Err((code, cause))) => {
                    assert_eq!(e.code, code, "{name}");
                    if code == 429 {
                        assert_eq!(e.message, EVICTION_REFUSED, "{name}");
                    }
                    if let Some(c) = cause {
                        assert_eq!(e.cause.as_deref(), Some(c), "{name}");
                    }
                }
                (got, want) => panic!("{name}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn scaled_values() {
        let cases = [
            (IntOrString::Int(3), 10, Ok(3)),
            (IntOrString::String("50%".into()), 3, Ok(2)),
            (IntOrString::String("0%".into()), 3, Ok(0)),
            (IntOrString::String("100%".into()), 7, Ok(7)),
            (IntOrString::String("10%".into()), 0, Ok(0)),
        ];
        for (v, total, want) in cases {
            assert_eq!(scaled_value(&v, total), want, "{v:?}");
        }
        assert!(scaled_value(&IntOrString::String("5".into()), 3).is_err());
        assert!(scaled_value(&IntOrString::String("x%".into()), 3).is_err());
    }
}
