//! Built-in admission for creates (upstream `LimitRanger` and
//! `ResourceQuota` plugins). The decisions are the pure functions of
//! `controllers::quota::plan`; this module reads the namespace's
//! LimitRanges and ResourceQuotas through the registry and applies them.
//!
//! - `mutate` (after defaulting, before validation): LimitRange container
//!   defaults for pods, then the LimitRange checks for pods and claims.
//! - `charge_quota` (just before the object is stored): checks the new
//!   object against every quota of its namespace and writes the quotas'
//!   new `status.used` with a resourceVersion precondition (re-reading on
//!   conflict), so concurrent creates can never overrun a quota; the quota
//!   controller later recomputes `used` from what really exists.
//!
//! Invariant: refusals are 403 `<plural> "<name>" is forbidden: <why>`;
//! dry-run requests are checked but charge nothing.

use k8s_openapi::api::core::v1::{LimitRange, PersistentVolumeClaim, Pod, ResourceQuota, Service};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::error::{ApiError, ApiResult};
use super::registry::{ListOptions, Registry};
use crate::api::kinds::Resource;
use crate::controllers::quota::plan;
use crate::store::{KeyValue, StoreError};

fn is_core(res: &Resource, kind: &str) -> bool {
    !res.custom && res.group.is_empty() && res.kind == kind
}

fn name_of(obj: &Value) -> &str {
    obj.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn forbidden(res: &Resource, obj: &Value, why: &str) -> ApiError {
    let name = name_of(obj);
    let mut e = ApiError::forbidden(format!(
        "{} \"{name}\" is forbidden: {why}",
        res.qualified_plural()
    ));
    let mut d = json!({"name": name, "kind": res.plural});
    if !res.group.is_empty() {
        d["group"] = json!(res.group);
    }
    e.details = Some(Box::new(d));
    e
}

/// The stored objects of one core kind in a namespace, decoded.
async fn list_typed<T: DeserializeOwned>(
    reg: &Registry,
    plural: &str,
    ns: &str,
) -> ApiResult<Vec<(KeyValue, T)>> {
    let Some(res) = reg.kinds.get("", "v1", plural) else {
        return Ok(Vec::new());
    };
    let out = reg.list(&res, Some(ns), &ListOptions::default()).await?;
    Ok(out
        .items
        .into_iter()
        .filter_map(|kv| {
            let t = serde_json::from_slice(&kv.value).ok()?;
            Some((kv, t))
        })
        .collect())
}

/// LimitRanger: defaults and checks for pods, checks for claims. True when
/// a pod was changed.
pub async fn mutate(
    reg: &Registry,
    res: &Resource,
    ns: Option<&str>,
    obj: &mut Value,
) -> ApiResult<bool> {
    let (Some(ns), true) = (
        ns,
        is_core(res, "Pod") || is_core(res, "PersistentVolumeClaim"),
    ) else {
        return Ok(false);
    };
    let ranges: Vec<LimitRange> = list_typed::<LimitRange>(reg, "limitranges", ns)
        .await?
        .into_iter()
        .map(|(_, r)| r)
        .collect();
    if ranges.is_empty() {
        return Ok(false);
    }
    if res.kind == "Pod" {
        // an undecodable pod is left to validation to reject
        let Ok(mut pod) = serde_json::from_value::<Pod>(obj.clone()) else {
            return Ok(false);
        };
        let before = pod.clone();
        plan::apply_limit_ranges(&mut pod, &ranges).map_err(|e| forbidden(res, obj, &e))?;
        if pod != before {
            write_back_pod(obj, &pod);
            return Ok(true);
        }
    } else if let Ok(pvc) = serde_json::from_value::<PersistentVolumeClaim>(obj.clone()) {
        plan::validate_pvc_limit_ranges(&pvc, &ranges).map_err(|e| forbidden(res, obj, &e))?;
    }
    Ok(false)
}

/// Where the kube-api-access volume is mounted in every container.
pub const SERVICE_ACCOUNT_MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// The ServiceAccount admission plugin on pod create: defaults
/// `serviceAccountName` to `default` and, unless the pod or its service
/// account opts out with `automountServiceAccountToken: false`, adds the
/// projected `kube-api-access-xxxxx` volume (bound token, cluster CA,
/// namespace) mounted read-only in every container. Unlike upstream, a
/// service account that does not exist yet does not reject the pod: the
/// controller creates `default` moments after the namespace, and the
/// kubelet's token request fails visibly until then.
pub async fn service_account(
    reg: &Registry,
    res: &Resource,
    ns: Option<&str>,
    obj: &mut Value,
) -> ApiResult<()> {
    let (Some(ns), true) = (ns, is_core(res, "Pod")) else {
        return Ok(());
    };
    if obj["metadata"]["annotations"]["kubernetes.io/config.mirror"].is_string() {
        // a mirror pod's spec is the kubelet's static pod: never touched
        return match obj.get("spec").and_then(mirror_pod_violation) {
            Some(why) => Err(forbidden(res, obj, why)),
            None => Ok(()),
        };
    }
    let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
        return Ok(());
    };
    let sa_name = match spec.get("serviceAccountName").and_then(Value::as_str) {
        Some(n) if !n.is_empty() => n.to_string(),
        _ => spec
            .get("serviceAccount")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .unwrap_or("default")
            .to_string(),
    };
    spec.insert("serviceAccountName".into(), json!(sa_name));
    spec.insert("serviceAccount".into(), json!(sa_name));
    let sa_automount = match reg.kinds.get("", "v1", "serviceaccounts") {
        Some(sa_res) => match reg.get(&sa_res, Some(ns), &sa_name).await {
            Ok(sa) => sa["automountServiceAccountToken"].as_bool(),
            Err(_) => None,
        },
        None => None,
    };
    let suffix: String = {
        use rand::Rng;
        const CHARS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
        let mut rng = rand::rng();
        (0..5)
            .map(|_| CHARS[rng.random_range(0..CHARS.len())] as char)
            .collect()
    };
    inject_api_access(spec, sa_automount, &suffix);
    Ok(())
}

/// Why a mirror pod spec may not be admitted, as upstream: a static pod
/// cannot use the API credentials a service account or a secret carries.
fn mirror_pod_violation(spec: &Value) -> Option<&'static str> {
    let named = |v: &Value| v.as_str().is_some_and(|s| !s.is_empty());
    if named(&spec["serviceAccountName"]) || named(&spec["serviceAccount"]) {
        return Some("a mirror pod may not reference service accounts");
    }
    let volumes = spec["volumes"].as_array().into_iter().flatten();
    for v in volumes {
        if v.get("secret").is_some() {
            return Some("a mirror pod may not reference secrets");
        }
        for src in v["projected"]["sources"].as_array().into_iter().flatten() {
            if src.get("secret").is_some() {
                return Some("a mirror pod may not reference secrets");
            }
            if src.get("serviceAccountToken").is_some() {
                return Some("a mirror pod may not use ServiceAccountToken volume projections");
            }
        }
    }
    let containers = ["containers", "initContainers", "ephemeralContainers"]
        .iter()
        .flat_map(|k| spec[*k].as_array().into_iter().flatten());
    for c in containers {
        let env_secret = c["env"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|e| e["valueFrom"].get("secretKeyRef").is_some());
        let env_from_secret = c["envFrom"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|e| e.get("secretRef").is_some());
        if env_secret || env_from_secret {
            return Some("a mirror pod may not reference secrets");
        }
    }
    if spec["imagePullSecrets"]
        .as_array()
        .is_some_and(|a| !a.is_empty())
    {
        return Some("a mirror pod may not reference secrets");
    }
    None
}

/// Pure part of [`service_account`]: adds the volume and the mounts.
fn inject_api_access(
    spec: &mut serde_json::Map<String, Value>,
    sa_automount: Option<bool>,
    suffix: &str,
) {
    let automount = spec
        .get("automountServiceAccountToken")
        .and_then(Value::as_bool)
        .or(sa_automount)
        .unwrap_or(true);
    if !automount {
        return;
    }
    let mounted = |c: &Value| {
        c["volumeMounts"].as_array().is_some_and(|ms| {
            ms.iter()
                .any(|m| m["mountPath"] == SERVICE_ACCOUNT_MOUNT_PATH)
        })
    };
    let name = format!("kube-api-access-{suffix}");
    let mut added = false;
    for key in ["initContainers", "containers"] {
        let Some(cs) = spec.get_mut(key).and_then(Value::as_array_mut) else {
            continue;
        };
        for c in cs.iter_mut().filter(|c| c.is_object() && !mounted(c)) {
            if !c["volumeMounts"].is_array() {
                c["volumeMounts"] = json!([]);
            }
            if let Some(ms) = c["volumeMounts"].as_array_mut() {
                ms.push(json!({"name": name, "readOnly": true, "mountPath": SERVICE_ACCOUNT_MOUNT_PATH}));
                added = true;
            }
        }
    }
    if !added {
        return;
    }
    let volume = json!({
        "name": name,
        "projected": {
            "defaultMode": 420,
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}
            ]
        }
    });
    match spec.get_mut("volumes").and_then(Value::as_array_mut) {
        Some(vs) => vs.push(volume),
        None => {
            spec.insert("volumes".into(), json!([volume]));
        }
    }
}

/// Copies what LimitRanger may change (container resources, the
/// annotation) into the JSON object, leaving every other byte as sent.
fn write_back_pod(obj: &mut Value, pod: &Pod) {
    if let Some(ann) = pod.metadata.annotations.as_ref()
        && let Some(v) = ann.get(plan::LIMIT_RANGER_ANNOTATION)
    {
        if !obj["metadata"]["annotations"].is_object() {
            obj["metadata"]["annotations"] = json!({});
        }
        obj["metadata"]["annotations"][plan::LIMIT_RANGER_ANNOTATION] = json!(v);
    }
    let Some(spec) = pod.spec.as_ref() else {
        return;
    };
    let lists = [
        ("containers", Some(&spec.containers)),
        ("initContainers", spec.init_containers.as_ref()),
    ];
    for (field, containers) in lists {
        let Some(containers) = containers else {
            continue;
        };
        let Some(arr) = obj["spec"][field].as_array_mut() else {
            continue;
        };
        for (c, typed) in arr.iter_mut().zip(containers) {
            if let Some(r) = typed.resources.as_ref()
                && let Ok(v) = serde_json::to_value(r)
            {
                c["resources"] = v;
            }
        }
    }
}

/// What creating `obj` charges, for quotas that are not pod-specific.
fn usage_of(res: &Resource, obj: &Value) -> Option<plan::Usage> {
    if is_core(res, "Service") {
        let svc: Service = serde_json::from_value(obj.clone()).ok()?;
        return Some(plan::service_usage(&svc));
    }
    if is_core(res, "PersistentVolumeClaim") {
        let pvc: PersistentVolumeClaim = serde_json::from_value(obj.clone()).ok()?;
        return Some(plan::pvc_usage(&pvc));
    }
    Some(plan::object_count_usage(&res.plural, &res.group))
}

/// ResourceQuota admission: refuse an object that would exceed a quota of
/// its namespace, else charge it to those quotas (unless `dry_run`).
pub async fn charge_quota(
    reg: &Registry,
    res: &Resource,
    ns: Option<&str>,
    obj: &Value,
    dry_run: bool,
) -> ApiResult<()> {
    let Some(ns) = ns.filter(|_| res.namespaced) else {
        return Ok(());
    };
    // Events are never quota-limited here (they are written constantly).
    if is_core(res, "Event") || (res.group == "events.k8s.io" && res.kind == "Event") {
        return Ok(());
    }
    let pod = if is_core(res, "Pod") {
        match serde_json::from_value::<Pod>(obj.clone()) {
            Ok(p) => Some(p),
            Err(_) => return Ok(()),
        }
    } else {
        None
    };
    let usage = match &pod {
        Some(_) => None,
        None => match usage_of(res, obj) {
            Some(u) => Some(u),
            None => return Ok(()),
        },
    };
    let now = chrono::Utc::now();
    // quotas already charged (by key), so a retry never charges them twice
    let mut done: std::collections::BTreeSet<String> = Default::default();
    for _attempt in 0..10 {
        let quotas = list_typed::<ResourceQuota>(reg, "resourcequotas", ns).await?;
        if quotas.is_empty() {
            return Ok(());
        }
        let mut writes: Vec<(&KeyValue, plan::ResourceList)> = Vec::new();
        for (kv, q) in quotas.iter().filter(|(kv, _)| !done.contains(&kv.key)) {
            let charged = match (&pod, &usage) {
                (Some(p), _) => plan::admit_pod_against_quota(q, p, now),
                (None, Some(u)) => plan::admit_usage_against_quota(q, u),
                (None, None) => Ok(None),
            };
            if let Some(used) = charged.map_err(|e| forbidden(res, obj, &e))? {
                writes.push((kv, used));
            }
        }
        if dry_run || writes.is_empty() {
            return Ok(());
        }
        let mut conflicted = false;
        for (kv, used) in writes {
            let mut stored: Value = serde_json::from_slice(&kv.value)
                .map_err(|e| ApiError::internal(format!("corrupt object {}: {e}", kv.key)))?;
            stored["status"]["used"] = json!(used);
            match reg
                .controller_update(&kv.key, kv.mod_revision, stored)
                .await
            {
                Ok(_) => {
                    done.insert(kv.key.clone());
                }
                Err(StoreError::Conflict { .. }) => {
                    conflicted = true;
                    break;
                }
                Err(e) => return Err(ApiError::from_store(e, "", "resourcequotas", "")),
            }
        }
        // on a conflict the quotas not yet charged are re-read and re-checked
        if !conflicted {
            return Ok(());
        }
    }
    Err(ApiError::conflict(
        "",
        "resourcequotas",
        "",
        "too many concurrent updates to the namespace's quotas",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_range_defaults_are_written_back_without_touching_the_rest() {
        let mut obj = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "labels": {"a": "b"}},
            "spec": {"containers": [{"name": "c", "image": "nginx", "extra": 1}]}
        });
        let mut pod: Pod = serde_json::from_value(obj.clone()).unwrap_or_default();
        let range: LimitRange = serde_json::from_value(json!({
            "spec": {"limits": [{"type": "Container", "default": {"cpu": "200m"}}]}
        }))
        .unwrap_or_default();
        assert!(plan::apply_limit_ranges(&mut pod, &[range]).is_ok());
        write_back_pod(&mut obj, &pod);
        assert_eq!(
            obj["spec"]["containers"][0]["resources"],
            json!({"limits": {"cpu": "200m"}, "requests": {"cpu": "200m"}})
        );
        assert_eq!(obj["spec"]["containers"][0]["extra"], json!(1));
        assert_eq!(obj["metadata"]["labels"], json!({"a": "b"}));
        assert!(
            obj["metadata"]["annotations"][plan::LIMIT_RANGER_ANNOTATION]
                .as_str()
                .is_some_and(|s| s.starts_with("LimitRanger plugin set: cpu request"))
        );
    }

    #[test]
    fn mirror_pods_may_not_reference_credentials() {
        for (spec, want) in [
            (json!({"containers": [{"name": "a", "image": "i"}]}), None),
            (
                json!({"serviceAccountName": "default", "containers": []}),
                Some("a mirror pod may not reference service accounts"),
            ),
            (
                json!({"volumes": [{"name": "s", "secret": {"secretName": "x"}}]}),
                Some("a mirror pod may not reference secrets"),
            ),
            (
                json!({"volumes": [{"name": "p", "projected": {"sources": [{"serviceAccountToken": {"path": "t"}}]}}]}),
                Some("a mirror pod may not use ServiceAccountToken volume projections"),
            ),
            (
                json!({"containers": [{"name": "a", "envFrom": [{"secretRef": {"name": "x"}}]}]}),
                Some("a mirror pod may not reference secrets"),
            ),
            (
                json!({"volumes": [{"name": "c", "configMap": {"name": "x"}}]}),
                None,
            ),
        ] {
            assert_eq!(mirror_pod_violation(&spec), want, "{spec}");
        }
    }

    #[test]
    fn api_access_volume_is_injected_unless_opted_out() {
        let spec = |v: Value| v.as_object().unwrap().clone();
        let mut s = spec(
            json!({"containers": [{"name": "a"}, {"name": "b", "volumeMounts": [{"name": "x", "mountPath": "/x"}]}], "initContainers": [{"name": "i"}]}),
        );
        inject_api_access(&mut s, None, "abcde");
        assert_eq!(s["volumes"][0]["name"], "kube-api-access-abcde");
        assert_eq!(
            s["volumes"][0]["projected"]["sources"][0]["serviceAccountToken"]["path"],
            "token"
        );
        for (k, i, n) in [
            ("containers", 0, 0),
            ("containers", 1, 1),
            ("initContainers", 0, 0),
        ] {
            assert_eq!(
                s[k][i]["volumeMounts"][n]["mountPath"], SERVICE_ACCOUNT_MOUNT_PATH,
                "{k}[{i}]"
            );
            assert_eq!(s[k][i]["volumeMounts"][n]["readOnly"], true);
        }
        // pod-level opt-out wins over the service account; SA opt-out applies otherwise
        for (pod, sa, injected) in [
            (Some(false), Some(true), false),
            (Some(true), Some(false), true),
            (None, Some(false), false),
            (None, None, true),
        ] {
            let mut s = spec(json!({"containers": [{"name": "a"}]}));
            if let Some(p) = pod {
                s.insert("automountServiceAccountToken".into(), json!(p));
            }
            inject_api_access(&mut s, sa, "zzzzz");
            assert_eq!(s.contains_key("volumes"), injected, "{pod:?} {sa:?}");
        }
        // a container that already mounts the path keeps its own volume
        let mut s = spec(
            json!({"containers": [{"name": "a", "volumeMounts": [{"name": "mine", "mountPath": SERVICE_ACCOUNT_MOUNT_PATH}]}]}),
        );
        inject_api_access(&mut s, None, "qqqqq");
        assert!(!s.contains_key("volumes"));
    }
}
