//! Pure planning for the HorizontalPodAutoscaler controller (autoscaling/v2,
//! upstream `pkg/controller/podautoscaler`): desired replicas from resource
//! metrics, bounds, the scale-down stabilization window and scale-up rate
//! limits, and the status conditions `kubectl describe hpa` shows.
//!
//! Owns: the arithmetic and the texts. Must not: fetch metrics or scales
//! (the shell passes them in, or the error it got).
//!
//! Invariants: the result is always within [minReplicas, maxReplicas]
//! (except scaling is disabled when the target has 0 replicas and
//! minReplicas > 0); without metrics the controller only corrects
//! out-of-bounds replica counts.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use k8s_openapi::api::autoscaling::v2::{
    HorizontalPodAutoscaler, HorizontalPodAutoscalerCondition, HorizontalPodAutoscalerStatus,
    MetricStatus, MetricValueStatus, ResourceMetricStatus,
};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as K8sQuantity;

use crate::api::quantity::parse_quantity;
use crate::controllers::podutil;

/// Usage ratio within 10 % of the target does not scale (upstream tolerance).
pub const TOLERANCE: f64 = 0.1;
/// Default scale-down stabilization window.
pub const DOWNSCALE_WINDOW_SECONDS: i64 = 300;

/// Per-pod usage of one resource (milli-units), from the metrics API.
pub type PodUsage = BTreeMap<String, i64>;

/// What the shell learned this round.
pub struct Observed<'a> {
    /// Current `spec.replicas` of the target (from its scale subresource), or the error text.
    pub scale: Result<i32, String>,
    /// Pods selected by the target's scale selector.
    pub pods: &'a [&'a Pod],
    /// resource name → (pod name → usage in milli-units), or the fetch error.
    pub usage: Result<BTreeMap<String, PodUsage>, String>,
    /// Recent recommendations (time, replicas), kept by the shell per HPA.
    pub history: &'a [(DateTime<Utc>, i32)],
    pub now: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Write the target's scale to this.
    pub scale_to: Option<i32>,
    /// The raw recommendation to remember (for the stabilization window).
    pub recommendation: Option<i32>,
    pub status: HorizontalPodAutoscalerStatus,
    /// `(type, reason, message)` events.
    pub events: Vec<(&'static str, &'static str, String)>,
}

fn min_replicas(h: &HorizontalPodAutoscaler) -> i32 {
    h.spec.as_ref().and_then(|s| s.min_replicas).unwrap_or(1)
}

fn max_replicas(h: &HorizontalPodAutoscaler) -> i32 {
    h.spec.as_ref().map(|s| s.max_replicas).unwrap_or(1)
}

fn cond(
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    now: DateTime<Utc>,
) -> HorizontalPodAutoscalerCondition {
    HorizontalPodAutoscalerCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_transition_time: Some(podutil::chrono_to_time(now)),
    }
}

/// Keep `lastTransitionTime` of conditions whose status did not change.
fn merge_conditions(
    old: Option<&Vec<HorizontalPodAutoscalerCondition>>,
    mut new: Vec<HorizontalPodAutoscalerCondition>,
) -> Vec<HorizontalPodAutoscalerCondition> {
    for c in &mut new {
        if let Some(o) = old.into_iter().flatten().find(|o| o.type_ == c.type_)
            && o.status == c.status
        {
            c.last_transition_time = o.last_transition_time.clone();
        }
    }
    new
}

/// Sum of a resource's requests over a pod's containers (milli-units).
fn pod_request(pod: &Pod, resource: &str) -> Option<i64> {
    let spec = pod.spec.as_ref()?;
    let mut total = 0i64;
    for c in &spec.containers {
        let q = c.resources.as_ref()?.requests.as_ref()?.get(resource)?;
        total += parse_quantity(&q.0)?.milli_value() as i64;
    }
    Some(total)
}

/// Desired replicas and the metric status for one resource metric.
/// `Err` carries the upstream-style reason text.
pub fn resource_recommendation(
    resource: &str,
    target_utilization: Option<i32>,
    target_average_milli: Option<i64>,
    current: i32,
    pods: &[&Pod],
    usage: &PodUsage,
) -> Result<(i32, MetricStatus), String> {
    let ready: Vec<&&Pod> = pods
        .iter()
        .filter(|p| podutil::is_active(p) && podutil::is_ready(p))
        .collect();
    let with_metrics: Vec<(&&Pod, i64)> = ready
        .iter()
        .filter_map(|p| usage.get(p.metadata.name.as_deref()?).map(|u| (*p, *u)))
        .collect();
    if with_metrics.is_empty() {
        return Err(format!(
            "unable to get metrics for resource {resource}: no metrics returned from resource metrics API"
        ));
    }
    let usage_sum: i64 = with_metrics.iter().map(|(_, u)| u).sum();
    let n = with_metrics.len() as i64;
    if let Some(target) = target_utilization {
        let mut req_sum = 0i64;
        for (p, _) in &with_metrics {
            match pod_request(p, resource) {
                Some(r) if r > 0 => req_sum += r,
                _ => {
                    return Err(format!(
                        "failed to get {resource} utilization: missing request for {resource} in container of Pod {}",
                        p.metadata.name.as_deref().unwrap_or_default()
                    ));
                }
            }
        }
        let utilization = (usage_sum * 100 / req_sum) as i32;
        let ratio = utilization as f64 / target.max(1) as f64;
        let desired = if (ratio - 1.0).abs() <= TOLERANCE {
            current
        } else {
            (ratio * n as f64).ceil() as i32
        };
        let status = resource_status(resource, Some(utilization), usage_sum / n);
        return Ok((desired, status));
    }
    let target = target_average_milli.unwrap_or(1).max(1);
    let avg = usage_sum / n;
    let ratio = avg as f64 / target as f64;
    let desired = if (ratio - 1.0).abs() <= TOLERANCE {
        current
    } else {
        (usage_sum as f64 / target as f64).ceil() as i32
    };
    Ok((desired, resource_status(resource, None, avg)))
}

fn resource_status(resource: &str, utilization: Option<i32>, avg_milli: i64) -> MetricStatus {
    MetricStatus {
        type_: "Resource".into(),
        resource: Some(ResourceMetricStatus {
            name: resource.into(),
            current: MetricValueStatus {
                average_utilization: utilization,
                average_value: Some(K8sQuantity(format!("{avg_milli}m"))),
                value: None,
            },
        }),
        ..Default::default()
    }
}

/// One reconcile of `h`.
pub fn plan(h: &HorizontalPodAutoscaler, o: &Observed) -> Plan {
    let now = o.now;
    let (min, max) = (min_replicas(h), max_replicas(h));
    let old = h.status.as_ref();
    let mut status = HorizontalPodAutoscalerStatus {
        current_replicas: old.and_then(|s| s.current_replicas),
        desired_replicas: old.map(|s| s.desired_replicas).unwrap_or(0),
        last_scale_time: old.and_then(|s| s.last_scale_time.clone()),
        observed_generation: h.metadata.generation,
        current_metrics: None,
        conditions: None,
    };
    let mut out = Plan {
        scale_to: None,
        recommendation: None,
        status: status.clone(),
        events: Vec::new(),
    };
    let current = match &o.scale {
        Ok(r) => *r,
        Err(e) => {
            let msg =
                format!("the HPA controller was unable to get the target's current scale: {e}");
            out.events.push(("Warning", "FailedGetScale", e.clone()));
            status.conditions = Some(merge_conditions(
                old.and_then(|s| s.conditions.as_ref()),
                vec![cond("AbleToScale", "False", "FailedGetScale", msg, now)],
            ));
            out.status = status;
            return out;
        }
    };
    status.current_replicas = Some(current);
    let mut conds = vec![cond(
        "AbleToScale",
        "True",
        "SucceededGetScale",
        "the HPA controller was able to get the target's current scale".into(),
        now,
    )];
    let mut desired = current;
    let mut rescale_reason = None;
    if current == 0 && min != 0 {
        conds.push(cond(
            "ScalingActive",
            "False",
            "ScalingDisabled",
            "scaling is disabled since the replica count of the target is zero".into(),
            now,
        ));
        status.desired_replicas = 0;
        status.conditions = Some(merge_conditions(
            old.and_then(|s| s.conditions.as_ref()),
            conds,
        ));
        out.status = status;
        return out;
    } else if current > max {
        desired = max;
        rescale_reason = Some("Current number of replicas above Spec.MaxReplicas".to_string());
    } else if current < min {
        desired = min;
        rescale_reason = Some("Current number of replicas below Spec.MinReplicas".to_string());
    } else {
        match metrics_recommendation(h, current, o) {
            Ok((rec, metrics, metric_name)) => {
                status.current_metrics = Some(metrics);
                out.recommendation = Some(rec);
                conds.push(cond(
                    "ScalingActive",
                    "True",
                    "ValidMetricFound",
                    format!("the HPA was able to successfully calculate a replica count from {metric_name}"),
                    now,
                ));
                let stabilized = stabilize(rec, current, o.history, now);
                let (bounded, limited) = bound(stabilized, current, min, max);
                if let Some((reason, msg)) = limited {
                    conds.push(cond("ScalingLimited", "True", reason, msg.into(), now));
                } else {
                    conds.push(cond(
                        "ScalingLimited",
                        "False",
                        "DesiredWithinRange",
                        "the desired count is within the acceptable range".into(),
                        now,
                    ));
                }
                if bounded != current {
                    rescale_reason = Some(format!("{metric_name} above target"));
                    if bounded < current {
                        rescale_reason = Some("All metrics below target".into());
                    }
                }
                desired = bounded;
            }
            Err(e) => {
                let msg = format!("the HPA was unable to compute the replica count: {e}");
                out.events
                    .push(("Warning", "FailedGetResourceMetric", e.clone()));
                out.events.push(("Warning", "FailedComputeMetricsReplicas", format!("invalid metrics (1 invalid out of 1), first error is: failed to get metric value: {e}")));
                conds.push(cond(
                    "ScalingActive",
                    "False",
                    "FailedGetResourceMetric",
                    msg,
                    now,
                ));
            }
        }
    }
    if let (Some(reason), true) = (rescale_reason, desired != current) {
        out.scale_to = Some(desired);
        status.last_scale_time = Some(podutil::chrono_to_time(now));
        out.events.push((
            "Normal",
            "SuccessfulRescale",
            format!("New size: {desired}; reason: {reason}"),
        ));
    }
    status.desired_replicas = desired;
    status.conditions = Some(merge_conditions(
        old.and_then(|s| s.conditions.as_ref()),
        conds,
    ));
    out.status = status;
    out
}

/// The largest recommendation over the resource metrics, with their statuses.
fn metrics_recommendation(
    h: &HorizontalPodAutoscaler,
    current: i32,
    o: &Observed,
) -> Result<(i32, Vec<MetricStatus>, String), String> {
    let specs = h
        .spec
        .as_ref()
        .and_then(|s| s.metrics.clone())
        .unwrap_or_default();
    let usage = o.usage.as_ref().map_err(|e| e.clone())?;
    let mut best: Option<(i32, String)> = None;
    let mut statuses = Vec::new();
    for m in &specs {
        let Some(r) = m.resource.as_ref().filter(|_| m.type_ == "Resource") else {
            return Err(format!(
                "unable to fetch metrics of type {:?}: only Resource metrics are supported",
                m.type_
            ));
        };
        let target_avg = r
            .target
            .average_value
            .as_ref()
            .and_then(|q| parse_quantity(&q.0))
            .map(|q| q.milli_value() as i64);
        let empty = PodUsage::new();
        let pod_usage = usage.get(&r.name).unwrap_or(&empty);
        let (rec, st) = resource_recommendation(
            &r.name,
            r.target.average_utilization,
            target_avg,
            current,
            o.pods,
            pod_usage,
        )?;
        statuses.push(st);
        let name = format!(
            "{} resource{}",
            r.name,
            if r.target.average_utilization.is_some() {
                " utilization (percentage of request)"
            } else {
                ""
            }
        );
        if best.as_ref().is_none_or(|(b, _)| rec > *b) {
            best = Some((rec, name));
        }
    }
    let (rec, name) = best.ok_or("no metrics specified")?;
    Ok((rec, statuses, name))
}

/// Scale-down stabilization: never go below the highest recommendation of
/// the last five minutes.
fn stabilize(rec: i32, current: i32, history: &[(DateTime<Utc>, i32)], now: DateTime<Utc>) -> i32 {
    if rec >= current {
        return rec;
    }
    let window = chrono::Duration::seconds(DOWNSCALE_WINDOW_SECONDS);
    history
        .iter()
        .filter(|(t, _)| now - *t <= window)
        .map(|(_, r)| *r)
        .chain(std::iter::once(rec))
        .max()
        .unwrap_or(rec)
        .min(current)
}

/// Upstream default scale-up limit (max of 4 pods or 100 % per period) and
/// the min/max bounds; returns the ScalingLimited reason when one applied.
fn bound(
    desired: i32,
    current: i32,
    min: i32,
    max: i32,
) -> (i32, Option<(&'static str, &'static str)>) {
    let up_limit = (current * 2).max(current + 4);
    if desired > up_limit && up_limit < max {
        return (
            up_limit,
            Some((
                "ScaleUpLimit",
                "the desired replica count is increasing faster than the maximum scale rate",
            )),
        );
    }
    if desired > max {
        return (
            max,
            Some((
                "TooManyReplicas",
                "the desired replica count is more than the maximum replica count",
            )),
        );
    }
    if desired < min {
        return (
            min,
            Some((
                "TooFewReplicas",
                "the desired replica count is less than the minimum replica count",
            )),
        );
    }
    (desired, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::autoscaling::v2::{
        CrossVersionObjectReference, HorizontalPodAutoscalerSpec, MetricSpec, MetricTarget,
        ResourceMetricSource,
    };
    use k8s_openapi::api::core::v1::{
        Container, PodCondition, PodSpec, PodStatus, ResourceRequirements,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn hpa(min: i32, max: i32, util: i32) -> HorizontalPodAutoscaler {
        HorizontalPodAutoscaler {
            metadata: ObjectMeta {
                name: Some("h".into()),
                generation: Some(1),
                ..Default::default()
            },
            spec: Some(HorizontalPodAutoscalerSpec {
                min_replicas: Some(min),
                max_replicas: max,
                scale_target_ref: CrossVersionObjectReference {
                    api_version: Some("apps/v1".into()),
                    kind: "Deployment".into(),
                    name: "web".into(),
                },
                metrics: Some(vec![MetricSpec {
                    type_: "Resource".into(),
                    resource: Some(ResourceMetricSource {
                        name: "cpu".into(),
                        target: MetricTarget {
                            type_: "Utilization".into(),
                            average_utilization: Some(util),
                            ..Default::default()
                        },
                    }),
                    ..Default::default()
                }]),
                behavior: None,
            }),
            status: None,
        }
    }

    fn pod(name: &str, cpu_request: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "c".into(),
                    resources: Some(ResourceRequirements {
                        requests: Some(
                            [("cpu".to_string(), K8sQuantity(cpu_request.into()))].into(),
                        ),
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: Some("Running".into()),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: "True".into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        }
    }

    fn observed<'a>(
        pods: &'a [&'a Pod],
        usage: Result<BTreeMap<String, PodUsage>, String>,
        current: i32,
    ) -> Observed<'a> {
        Observed {
            scale: Ok(current),
            pods,
            usage,
            history: &[],
            now: Utc::now(),
        }
    }

    fn cpu(u: &[(&str, i64)]) -> Result<BTreeMap<String, PodUsage>, String> {
        Ok([(
            "cpu".to_string(),
            u.iter().map(|(n, v)| (n.to_string(), *v)).collect(),
        )]
        .into())
    }

    #[test]
    fn scales_up_on_high_utilization() {
        let (a, b) = (pod("a", "100m"), pod("b", "100m"));
        let pods = [&a, &b];
        // 90 % against a 50 % target: ceil(1.8 * 2) = 4
        let p = plan(
            &hpa(1, 10, 50),
            &observed(&pods, cpu(&[("a", 90), ("b", 90)]), 2),
        );
        assert_eq!(p.scale_to, Some(4));
        assert_eq!(p.status.desired_replicas, 4);
        assert!(p.events.iter().any(|e| e.1 == "SuccessfulRescale"));
    }

    #[test]
    fn tolerance_and_bounds() {
        let (a, b) = (pod("a", "100m"), pod("b", "100m"));
        let pods = [&a, &b];
        let p = plan(
            &hpa(1, 10, 50),
            &observed(&pods, cpu(&[("a", 52), ("b", 53)]), 2),
        );
        assert_eq!(p.scale_to, None, "within 10 % tolerance");
        let p = plan(
            &hpa(1, 3, 50),
            &observed(&pods, cpu(&[("a", 100), ("b", 100)]), 2),
        );
        assert_eq!(p.scale_to, Some(3), "capped at maxReplicas");
        let p = plan(&hpa(3, 5, 50), &observed(&pods, cpu(&[]), 2));
        assert_eq!(
            p.scale_to,
            Some(3),
            "below min is corrected even without metrics"
        );
    }

    #[test]
    fn missing_metrics_api_is_reported() {
        let a = pod("a", "100m");
        let pods = [&a];
        let p = plan(
            &hpa(1, 5, 50),
            &observed(
                &pods,
                Err("the server could not find the requested resource".into()),
                1,
            ),
        );
        assert_eq!(p.scale_to, None);
        let c = p.status.conditions.unwrap();
        let active = c.iter().find(|c| c.type_ == "ScalingActive").unwrap();
        assert_eq!(active.status, "False");
        assert_eq!(active.reason.as_deref(), Some("FailedGetResourceMetric"));
    }

    #[test]
    fn scale_down_is_stabilized() {
        let (a, b, c, d) = (
            pod("a", "100m"),
            pod("b", "100m"),
            pod("c", "100m"),
            pod("d", "100m"),
        );
        let pods = [&a, &b, &c, &d];
        let now = Utc::now();
        let history = [(now - chrono::Duration::seconds(60), 4)];
        let o = Observed {
            history: &history,
            ..observed(&pods, cpu(&[("a", 10), ("b", 10), ("c", 10), ("d", 10)]), 4)
        };
        assert_eq!(
            plan(&hpa(1, 10, 50), &o).scale_to,
            None,
            "a recent higher recommendation holds"
        );
        let o = observed(&pods, cpu(&[("a", 10), ("b", 10), ("c", 10), ("d", 10)]), 4);
        assert_eq!(plan(&hpa(1, 10, 50), &o).scale_to, Some(1));
    }
}
