//! Typed checks of built-in objects through `k8s-openapi`: a body is decoded
//! into the upstream Go-equivalent type to find wrong types (400) and
//! unknown fields (for `fieldValidation`). The stored object is never the
//! re-encoded one — only the original minus pruned unknown fields — so
//! clients get back what they sent.
//!
//! Invariant: pure; no I/O; never panics on any JSON.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Result of checking one object against its built-in type.
#[derive(Debug, Default, PartialEq)]
pub struct TypedCheck {
    /// Dotted paths of fields the type does not declare (`spec.foo`).
    pub unknown: Vec<String>,
}

fn roundtrip<T: DeserializeOwned + Serialize>(v: &Value) -> Result<Value, String> {
    let t: T = serde_path_to_error::deserialize(v.clone()).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        if path.is_empty() || path == "." {
            inner
        } else {
            format!("{path}: {inner}")
        }
    })?;
    serde_json::to_value(&t).map_err(|e| e.to_string())
}

macro_rules! dispatch {
    ($group:expr, $version:expr, $kind:expr, $obj:expr, { $( ($g:literal, $v:literal, $k:literal) => $t:ty ),* $(,)? }) => {
        match ($group, $version, $kind) {
            $( ($g, $v, $k) => Some(roundtrip::<$t>($obj)), )*
            _ => None,
        }
    };
}

/// Decode as the built-in type. `None` when the kind has no typed model
/// (custom resources, review kinds).
fn typed_roundtrip(
    group: &str,
    version: &str,
    kind: &str,
    obj: &Value,
) -> Option<Result<Value, String>> {
    use k8s_openapi::api::*;
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiext;
    dispatch!(group, version, kind, obj, {
        ("", "v1", "Namespace") => core::v1::Namespace,
        ("", "v1", "Pod") => core::v1::Pod,
        ("", "v1", "Service") => core::v1::Service,
        ("", "v1", "Endpoints") => core::v1::Endpoints,
        ("", "v1", "ConfigMap") => core::v1::ConfigMap,
        ("", "v1", "Secret") => core::v1::Secret,
        ("", "v1", "ServiceAccount") => core::v1::ServiceAccount,
        ("", "v1", "Node") => core::v1::Node,
        ("", "v1", "Event") => core::v1::Event,
        ("", "v1", "PersistentVolume") => core::v1::PersistentVolume,
        ("", "v1", "PersistentVolumeClaim") => core::v1::PersistentVolumeClaim,
        ("", "v1", "LimitRange") => core::v1::LimitRange,
        ("", "v1", "ResourceQuota") => core::v1::ResourceQuota,
        ("", "v1", "ReplicationController") => core::v1::ReplicationController,
        ("", "v1", "PodTemplate") => core::v1::PodTemplate,
        ("apps", "v1", "Deployment") => apps::v1::Deployment,
        ("apps", "v1", "ReplicaSet") => apps::v1::ReplicaSet,
        ("apps", "v1", "StatefulSet") => apps::v1::StatefulSet,
        ("apps", "v1", "DaemonSet") => apps::v1::DaemonSet,
        ("apps", "v1", "ControllerRevision") => apps::v1::ControllerRevision,
        ("batch", "v1", "Job") => batch::v1::Job,
        ("batch", "v1", "CronJob") => batch::v1::CronJob,
        ("autoscaling", "v2", "HorizontalPodAutoscaler") => autoscaling::v2::HorizontalPodAutoscaler,
        ("autoscaling", "v1", "HorizontalPodAutoscaler") => autoscaling::v1::HorizontalPodAutoscaler,
        ("networking.k8s.io", "v1", "Ingress") => networking::v1::Ingress,
        ("networking.k8s.io", "v1", "IngressClass") => networking::v1::IngressClass,
        ("networking.k8s.io", "v1", "NetworkPolicy") => networking::v1::NetworkPolicy,
        ("discovery.k8s.io", "v1", "EndpointSlice") => discovery::v1::EndpointSlice,
        ("coordination.k8s.io", "v1", "Lease") => coordination::v1::Lease,
        ("events.k8s.io", "v1", "Event") => events::v1::Event,
        ("rbac.authorization.k8s.io", "v1", "Role") => rbac::v1::Role,
        ("rbac.authorization.k8s.io", "v1", "ClusterRole") => rbac::v1::ClusterRole,
        ("rbac.authorization.k8s.io", "v1", "RoleBinding") => rbac::v1::RoleBinding,
        ("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding") => rbac::v1::ClusterRoleBinding,
        ("storage.k8s.io", "v1", "StorageClass") => storage::v1::StorageClass,
        ("policy", "v1", "PodDisruptionBudget") => policy::v1::PodDisruptionBudget,
        ("scheduling.k8s.io", "v1", "PriorityClass") => scheduling::v1::PriorityClass,
        ("apiextensions.k8s.io", "v1", "CustomResourceDefinition") => apiext::CustomResourceDefinition,
    })
}

/// Map keys whose values are resource quantities: Go accepts JSON numbers
/// there (`cpu: 1`) and stores them as strings, so we do the same.
const QUANTITY_MAPS: &[&str] = &[
    "limits",
    "requests",
    "capacity",
    "allocatable",
    "hard",
    "used",
    "max",
    "min",
    "default",
    "defaultRequest",
    "maxLimitRequestRatio",
    "overhead",
];
const QUANTITY_FIELDS: &[&str] = &["sizeLimit", "storage"];

/// Turn numeric quantities into their string form, in place.
pub fn normalize_quantities(v: &mut Value) {
    normalize(v, 0);
}

fn normalize(v: &mut Value, depth: usize) {
    if depth > 64 {
        return;
    }
    match v {
        Value::Object(m) => {
            for (k, child) in m.iter_mut() {
                if QUANTITY_MAPS.contains(&k.as_str())
                    && let Value::Object(q) = child
                {
                    for qv in q.values_mut() {
                        if let Value::Number(n) = qv {
                            *qv = Value::String(n.to_string());
                        }
                    }
                }
                if QUANTITY_FIELDS.contains(&k.as_str())
                    && let Value::Number(n) = child
                {
                    *child = Value::String(n.to_string());
                    continue;
                }
                normalize(child, depth + 1);
            }
        }
        Value::Array(a) => {
            for x in a {
                normalize(x, depth + 1);
            }
        }
        _ => {}
    }
}

/// Check `obj` against its built-in type. `Ok(None)` when there is no typed
/// model; `Err(message)` when a field has the wrong type.
pub fn check(
    group: &str,
    version: &str,
    kind: &str,
    obj: &Value,
) -> Result<Option<TypedCheck>, String> {
    let Some(result) = typed_roundtrip(group, version, kind, obj) else {
        return Ok(None);
    };
    let round = result?;
    let mut unknown = Vec::new();
    diff_keys(obj, &round, "", &mut unknown, 0);
    Ok(Some(TypedCheck { unknown }))
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

/// Keys present in `orig` but absent from the typed round trip are unknown.
fn diff_keys(orig: &Value, round: &Value, path: &str, out: &mut Vec<String>, depth: usize) {
    if depth > 64 {
        return;
    }
    match (orig, round) {
        (Value::Object(o), Value::Object(r)) => {
            for (k, v) in o {
                if v.is_null() {
                    continue;
                }
                match r.get(k) {
                    Some(rv) => diff_keys(v, rv, &join(path, k), out, depth + 1),
                    None => {
                        // the typed model drops empty optional containers; that is not unknown
                        let empty = matches!(v, Value::Object(m) if m.is_empty())
                            || matches!(v, Value::Array(a) if a.is_empty());
                        if !empty && !(path.is_empty() && (k == "apiVersion" || k == "kind")) {
                            out.push(join(path, k));
                        }
                    }
                }
            }
        }
        (Value::Array(o), Value::Array(r)) => {
            for (i, (ov, rv)) in o.iter().zip(r.iter()).enumerate() {
                diff_keys(ov, rv, &format!("{path}[{i}]"), out, depth + 1);
            }
        }
        _ => {}
    }
}

/// Remove the given unknown dotted paths (as produced by `check`) from `obj`.
pub fn prune(obj: &mut Value, paths: &[String]) {
    for p in paths {
        remove_path(obj, p);
    }
}

fn remove_path(obj: &mut Value, path: &str) {
    let mut cur = obj;
    let segments = split_path(path);
    let Some((last, parents)) = segments.split_last() else {
        return;
    };
    for seg in parents {
        let next = match seg {
            Seg::Key(k) => cur.get_mut(k.as_str()),
            Seg::Index(k, i) => cur.get_mut(k.as_str()).and_then(|a| a.get_mut(*i)),
        };
        match next {
            Some(n) => cur = n,
            None => return,
        }
    }
    match last {
        Seg::Key(k) => {
            if let Some(m) = cur.as_object_mut() {
                m.remove(k);
            }
        }
        Seg::Index(..) => {}
    }
}

enum Seg {
    Key(String),
    Index(String, usize),
}

fn split_path(path: &str) -> Vec<Seg> {
    path.split('.')
        .map(|s| match s.split_once('[') {
            Some((k, rest)) => match rest.trim_end_matches(']').parse() {
                Ok(i) => Seg::Index(k.to_string(), i),
                Err(_) => Seg::Key(s.to_string()),
            },
            None => Seg::Key(s.to_string()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_unknown_fields() {
        let d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"},
            "spec": {"replicas": 1, "foo": 1, "selector": {"matchLabels": {"a": "b"}},
                     "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "i", "bogus": true}]}}}});
        let c = check("apps", "v1", "Deployment", &d).unwrap().unwrap();
        assert_eq!(
            c.unknown,
            vec!["spec.foo", "spec.template.spec.containers[0].bogus"]
        );
        let mut d2 = d.clone();
        prune(&mut d2, &c.unknown);
        assert!(d2["spec"].get("foo").is_none());
        assert!(
            d2["spec"]["template"]["spec"]["containers"][0]
                .get("bogus")
                .is_none()
        );
    }

    #[test]
    fn wrong_type_is_an_error() {
        let d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"}, "spec": {"replicas": "three"}});
        let e = check("apps", "v1", "Deployment", &d).unwrap_err();
        assert!(e.contains("spec.replicas"), "{e}");
    }

    #[test]
    fn numeric_quantities_become_strings() {
        let mut p = json!({"spec": {"containers": [{"resources": {"limits": {"cpu": 1, "memory": "1Gi"}}}]}});
        normalize_quantities(&mut p);
        assert_eq!(
            p["spec"]["containers"][0]["resources"]["limits"]["cpu"],
            json!("1")
        );
    }

    #[test]
    fn unknown_kinds_are_unchecked() {
        assert_eq!(check("example.com", "v1", "Thing", &json!({})), Ok(None));
    }
}
