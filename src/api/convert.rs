//! Version conversion for built-in kinds served in more than one version.
//! Objects are stored in the storage version; requests in another version
//! are converted on the way in (`to_storage`) and out (`from_storage`).
//!
//! Today only autoscaling/v1 ↔ v2 HorizontalPodAutoscaler needs it
//! (`kubectl autoscale` up to 1.27 writes v1). Pure functions.

use serde_json::{Map, Value, json};

/// Whether objects of this built-in resource need converting.
pub fn needed(group: &str, kind: &str, version: &str, storage_version: &str) -> bool {
    version != storage_version && group == "autoscaling" && kind == "HorizontalPodAutoscaler"
}

fn cpu_utilization(metrics: Option<&Value>, field: &str) -> Option<Value> {
    metrics?.as_array()?.iter().find_map(|m| {
        let r = m.get("resource")?;
        if m.get("type").and_then(Value::as_str) != Some("Resource")
            || r.get("name").and_then(Value::as_str) != Some("cpu")
        {
            return None;
        }
        r.get(field)?.get("averageUtilization").cloned()
    })
}

/// An autoscaling/v1 HPA as autoscaling/v2 (the storage version).
pub fn to_storage(group: &str, kind: &str, mut obj: Value) -> Value {
    if group != "autoscaling" || kind != "HorizontalPodAutoscaler" {
        return obj;
    }
    obj["apiVersion"] = json!("autoscaling/v2");
    if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
        let target = spec
            .remove("targetCPUUtilizationPercentage")
            .unwrap_or(json!(80));
        spec.insert(
            "metrics".into(),
            json!([{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": target}}}]),
        );
    }
    if let Some(status) = obj.get_mut("status").and_then(Value::as_object_mut)
        && let Some(cur) = status.remove("currentCPUUtilizationPercentage")
    {
        status.insert(
            "currentMetrics".into(),
            json!([{"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": cur}}}]),
        );
    }
    obj
}

/// A stored (autoscaling/v2) HPA presented in `version`.
pub fn from_storage(group: &str, kind: &str, version: &str, mut obj: Value) -> Value {
    if group != "autoscaling" || kind != "HorizontalPodAutoscaler" || version != "v1" {
        return obj;
    }
    obj["apiVersion"] = json!("autoscaling/v1");
    if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
        let target = cpu_utilization(spec.get("metrics"), "target");
        spec.remove("metrics");
        spec.remove("behavior");
        if let Some(t) = target {
            spec.insert("targetCPUUtilizationPercentage".into(), t);
        }
    }
    if let Some(status) = obj.get_mut("status").and_then(Value::as_object_mut) {
        let current = cpu_utilization(status.get("currentMetrics"), "current");
        status.remove("currentMetrics");
        status.remove("conditions");
        if let Some(c) = current {
            status.insert("currentCPUUtilizationPercentage".into(), c);
        }
        if !status.contains_key("currentReplicas") {
            status.insert("currentReplicas".into(), json!(0));
        }
    }
    if obj.get("status").is_none() {
        obj["status"] = Value::Object(Map::new());
    }
    obj
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hpa_round_trip() {
        let v1 = json!({"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "web"},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}, "minReplicas": 1, "maxReplicas": 3, "targetCPUUtilizationPercentage": 50},
            "status": {"currentReplicas": 2, "desiredReplicas": 2, "currentCPUUtilizationPercentage": 40}});
        let v2 = to_storage("autoscaling", "HorizontalPodAutoscaler", v1.clone());
        assert_eq!(v2["apiVersion"], "autoscaling/v2");
        assert_eq!(
            v2["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
            50
        );
        assert_eq!(
            v2["status"]["currentMetrics"][0]["resource"]["current"]["averageUtilization"],
            40
        );
        let back = from_storage("autoscaling", "HorizontalPodAutoscaler", "v1", v2);
        assert_eq!(back, v1);
    }

    #[test]
    fn default_target_is_80_percent() {
        let v1 = json!({"spec": {"maxReplicas": 3}});
        let v2 = to_storage("autoscaling", "HorizontalPodAutoscaler", v1);
        assert_eq!(
            v2["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
            80
        );
        assert!(needed("autoscaling", "HorizontalPodAutoscaler", "v1", "v2"));
        assert!(!needed(
            "autoscaling",
            "HorizontalPodAutoscaler",
            "v2",
            "v2"
        ));
    }
}
