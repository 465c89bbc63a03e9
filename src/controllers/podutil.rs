//! Small pure helpers about pods and owner references shared by every
//! controller (readiness, activity, controller refs, label matching).
//!
//! Owns: facts derived from one object. Must not: talk to the API.

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, OwnerReference};
use std::collections::BTreeMap;

/// A pod still counts towards its controller: not terminal and not being deleted.
pub fn is_active(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none() && !is_terminal(pod)
}

/// Phase Succeeded or Failed.
pub fn is_terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded") | Some("Failed")
    )
}

/// The pod's `Ready` condition is True.
pub fn is_ready(pod: &Pod) -> bool {
    ready_since(pod).is_some()
}

/// When the `Ready` condition last became True (None when not ready).
/// A ready pod without a transition time counts as ready since the epoch.
pub fn ready_since(pod: &Pod) -> Option<DateTime<Utc>> {
    let c = pod
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")?;
    if c.status != "True" {
        return None;
    }
    Some(
        c.last_transition_time
            .as_ref()
            .map(time_to_chrono)
            .unwrap_or(DateTime::<Utc>::UNIX_EPOCH),
    )
}

/// A k8s `Time` (a `jiff::Timestamp` in k8s-openapi 0.29) as chrono UTC.
/// Out-of-range values collapse to the epoch.
pub fn time_to_chrono(t: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time) -> DateTime<Utc> {
    timestamp_to_chrono(&t.0)
}

/// A `jiff::Timestamp` (inside `Time`/`MicroTime`) as chrono UTC.
pub fn timestamp_to_chrono(t: &k8s_openapi::jiff::Timestamp) -> DateTime<Utc> {
    let nanos = u32::try_from(t.subsec_nanosecond()).unwrap_or(0);
    DateTime::from_timestamp(t.as_second(), nanos).unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
}

/// A chrono UTC instant as the `jiff::Timestamp` inside `Time`/`MicroTime`.
/// Out-of-range values collapse to the epoch.
pub fn chrono_to_timestamp(t: DateTime<Utc>) -> k8s_openapi::jiff::Timestamp {
    k8s_openapi::jiff::Timestamp::new(t.timestamp(), t.timestamp_subsec_nanos() as i32)
        .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH)
}

/// A chrono UTC instant as a k8s `Time`.
pub fn chrono_to_time(t: DateTime<Utc>) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Time {
    k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(chrono_to_timestamp(t))
}

/// Ready for at least `min_ready_seconds` at `now` (upstream `IsPodAvailable`).
pub fn is_available(pod: &Pod, min_ready_seconds: i32, now: DateTime<Utc>) -> bool {
    match ready_since(pod) {
        None => false,
        Some(_) if min_ready_seconds <= 0 => true,
        Some(t) => t + chrono::Duration::seconds(min_ready_seconds as i64) <= now,
    }
}

/// The owner reference with `controller: true`, if any.
pub fn controller_ref(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> Option<&OwnerReference> {
    meta.owner_references
        .as_ref()?
        .iter()
        .find(|o| o.controller == Some(true))
}

/// A controller owner reference pointing at `owner` (blockOwnerDeletion set, like upstream).
pub fn owner_ref(api_version: &str, kind: &str, name: &str, uid: &str) -> OwnerReference {
    OwnerReference {
        api_version: api_version.to_string(),
        kind: kind.to_string(),
        name: name.to_string(),
        uid: uid.to_string(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// Whether `labels` satisfy a `LabelSelector` (matchLabels and matchExpressions).
/// An empty selector matches everything; an invalid operator matches nothing.
pub fn selector_matches(sel: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    if let Some(ml) = &sel.match_labels
        && ml.iter().any(|(k, v)| labels.get(k) != Some(v))
    {
        return false;
    }
    for e in sel.match_expressions.iter().flatten() {
        let vals = e.values.as_deref().unwrap_or(&[]);
        let got = labels.get(&e.key);
        let ok = match e.operator.as_str() {
            "In" => got.is_some_and(|g| vals.contains(g)),
            "NotIn" => got.is_none_or(|g| !vals.contains(g)),
            "Exists" => got.is_some(),
            "DoesNotExist" => got.is_none(),
            _ => false,
        };
        if !ok {
            return false;
        }
    }
    true
}

/// Whether a plain map selector (Service, ReplicationController) matches.
/// An empty map matches nothing, as for Services.
pub fn map_selector_matches(
    sel: &BTreeMap<String, String>,
    labels: &BTreeMap<String, String>,
) -> bool {
    !sel.is_empty() && sel.iter().all(|(k, v)| labels.get(k) == Some(v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodCondition, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn pod_ready(since: Option<DateTime<Utc>>, status: &str) -> Pod {
        Pod {
            status: Some(PodStatus {
                phase: Some("Running".into()),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: status.into(),
                    last_transition_time: since.map(chrono_to_time),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn availability_respects_min_ready_seconds() {
        let now = Utc::now();
        let p = pod_ready(Some(now - chrono::Duration::seconds(5)), "True");
        assert!(is_available(&p, 0, now));
        assert!(is_available(&p, 5, now));
        assert!(!is_available(&p, 6, now));
        assert!(!is_available(&pod_ready(Some(now), "False"), 0, now));
        assert!(is_active(&p));
    }

    #[test]
    fn label_selector_operators() {
        let labels: BTreeMap<String, String> = [("app".to_string(), "web".to_string())]
            .into_iter()
            .collect();
        let req = |op: &str, vals: &[&str]| LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "app".into(),
                operator: op.into(),
                values: Some(vals.iter().map(|s| s.to_string()).collect()),
            }]),
            ..Default::default()
        };
        assert!(selector_matches(&LabelSelector::default(), &labels));
        assert!(selector_matches(&req("In", &["web"]), &labels));
        assert!(!selector_matches(&req("NotIn", &["web"]), &labels));
        assert!(selector_matches(&req("Exists", &[]), &labels));
        assert!(!selector_matches(&req("DoesNotExist", &[]), &labels));
        assert!(!selector_matches(&req("Bogus", &[]), &labels));
        assert!(!map_selector_matches(&BTreeMap::new(), &labels));
    }
}
