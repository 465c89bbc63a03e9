//! ObjectMeta and the meta/v1 building blocks every kind shares: names per
//! kind, namespaces, labels, annotations, owner references, finalizers, and
//! label selectors (syntax and matching).
//!
//! Owns: `ValidateObjectMeta` and `ValidateLabelSelector` semantics. Must
//! not: know about any kind's spec.

use serde_json::Value;

use super::names::{
    dns1035_label_errors, dns1123_label_errors, dns1123_subdomain_errors, label_value_errors,
    path_segment_name_errors, qualified_name_errors,
};
use super::{Errs, child, get, get_arr, get_obj, get_str, go, index, str_or_empty};

/// Upstream `TotalAnnotationSizeLimitB`.
const TOTAL_ANNOTATION_SIZE_LIMIT: usize = 256 * 1024;

/// Kinds whose objects live outside namespaces.
fn is_cluster_scoped(group: &str, kind: &str) -> bool {
    matches!(
        (group, kind),
        ("", "Namespace" | "Node" | "PersistentVolume")
            | (
                "rbac.authorization.k8s.io",
                "ClusterRole" | "ClusterRoleBinding"
            )
            | (
                "storage.k8s.io",
                "StorageClass" | "CSIDriver" | "CSINode" | "VolumeAttachment"
            )
            | ("scheduling.k8s.io", "PriorityClass")
            | ("apiextensions.k8s.io", "CustomResourceDefinition")
            | ("networking.k8s.io", "IngressClass")
            | ("apiregistration.k8s.io", "APIService")
            | (
                "admissionregistration.k8s.io",
                "MutatingWebhookConfiguration" | "ValidatingWebhookConfiguration"
            )
            | ("certificates.k8s.io", "CertificateSigningRequest")
            | ("authentication.k8s.io", _)
            | (
                "authorization.k8s.io",
                "SubjectAccessReview" | "SelfSubjectAccessReview"
            )
            | ("authorization.k8s.io", "SelfSubjectRulesReview")
    )
}

/// The name rule of a kind (upstream's `ValidateNameFunc`), as messages.
fn name_errors(group: &str, kind: &str, name: &str) -> Vec<String> {
    match (group, kind) {
        ("", "Namespace") => dns1123_label_errors(name),
        ("", "Service") => dns1035_label_errors(name),
        ("rbac.authorization.k8s.io", _) => path_segment_name_errors(name),
        ("coordination.k8s.io", "Lease") => dns1123_subdomain_errors(name),
        ("autoscaling", "HorizontalPodAutoscaler") => path_segment_name_errors(name),
        // Event names are "<involved object>.<hex>": upstream accepts any
        // DNS subdomain, like most kinds.
        _ => dns1123_subdomain_errors(name),
    }
}

/// `ValidateObjectMeta` for a top-level object of `group`/`kind`.
pub(super) fn validate_object_meta(e: &mut Errs, group: &str, kind: &str, obj: &Value) {
    let empty = Value::Null;
    let meta = get(obj, "metadata").unwrap_or(&empty);
    let name = str_or_empty(meta, "name");
    if name.is_empty() {
        e.required("metadata.name", "name or generateName is required");
    } else {
        e.invalid_each("metadata.name", name, name_errors(group, kind, name));
    }
    let ns = str_or_empty(meta, "namespace");
    if is_cluster_scoped(group, kind) {
        if !ns.is_empty() {
            e.forbidden("metadata.namespace", "not allowed on this type");
        }
    } else if ns.is_empty() {
        e.required("metadata.namespace", "");
    } else {
        e.invalid_each("metadata.namespace", ns, dns1123_label_errors(ns));
    }
    validate_meta_common(e, meta, "metadata");
}

/// Labels, annotations, owner references and finalizers (shared with
/// template metadata, which has no name rules).
pub(super) fn validate_meta_common(e: &mut Errs, meta: &Value, path: &str) {
    validate_labels(e, get(meta, "labels"), &child(path, "labels"));
    validate_annotations(e, get(meta, "annotations"), &child(path, "annotations"));
    for (i, r) in get_arr(meta, "ownerReferences").iter().enumerate() {
        validate_owner_reference(e, r, &index(&child(path, "ownerReferences"), i));
    }
    let controllers = get_arr(meta, "ownerReferences")
        .iter()
        .filter(|r| r.get("controller").and_then(Value::as_bool) == Some(true))
        .count();
    if controllers > 1 {
        e.invalid(
            &child(path, "ownerReferences"),
            "[]v1.OwnerReference{...}",
            "Only one reference can have Controller set to true",
        );
    }
    let finalizers = get_arr(meta, "finalizers");
    for (i, f) in finalizers.iter().enumerate() {
        if let Some(f) = f.as_str() {
            e.invalid_each(
                &index(&child(path, "finalizers"), i),
                f,
                qualified_name_errors(f),
            );
        }
    }
    let has = |n: &str| finalizers.iter().any(|f| f.as_str() == Some(n));
    if has("orphan") && has("foregroundDeletion") {
        e.invalid(
            &child(path, "finalizers"),
            go::string_slice(get(meta, "finalizers")),
            "finalizer orphan and foregroundDeletion cannot be both set",
        );
    }
}

/// `ValidateLabels`: every key a qualified name, every value a label value;
/// all reported at `path` itself, as upstream does.
pub(super) fn validate_labels(e: &mut Errs, labels: Option<&Value>, path: &str) {
    let Some(m) = labels.and_then(Value::as_object) else {
        return;
    };
    for (k, v) in m {
        e.invalid_each(path, k, qualified_name_errors(k));
        if let Some(v) = v.as_str() {
            e.invalid_each(path, v, label_value_errors(v));
        }
    }
}

/// `ValidateAnnotations`: keys are qualified names (case-insensitive) and
/// the total size is at most 256 KiB.
pub(super) fn validate_annotations(e: &mut Errs, annotations: Option<&Value>, path: &str) {
    let Some(m) = annotations.and_then(Value::as_object) else {
        return;
    };
    let mut total = 0usize;
    for (k, v) in m {
        e.invalid_each(path, k, qualified_name_errors(&k.to_lowercase()));
        total += k.len() + v.as_str().map_or(0, str::len);
    }
    if total > TOTAL_ANNOTATION_SIZE_LIMIT {
        e.too_long(path, TOTAL_ANNOTATION_SIZE_LIMIT);
    }
}

fn validate_owner_reference(e: &mut Errs, r: &Value, path: &str) {
    let api_version = str_or_empty(r, "apiVersion");
    let version = api_version.rsplit('/').next().unwrap_or("");
    if version.is_empty() {
        e.invalid(
            &child(path, "apiVersion"),
            go::q(api_version),
            "version must not be empty",
        );
    }
    let kind = str_or_empty(r, "kind");
    if kind.is_empty() {
        e.invalid(&child(path, "kind"), go::q(kind), "must not be empty");
    }
    let name = str_or_empty(r, "name");
    if name.is_empty() {
        e.invalid(&child(path, "name"), go::q(name), "must not be empty");
    }
    let uid = str_or_empty(r, "uid");
    if uid.is_empty() {
        e.invalid(&child(path, "uid"), go::q(uid), "must not be empty");
    }
    if version == "v1" && api_version == "v1" && kind == "List" {
        e.invalid(
            path,
            "v1.OwnerReference{...}",
            "/v1, Kind=List is disallowed from being an owner",
        );
    }
}

// ---------------------------------------------------------------------------
// Label selectors

/// `ValidateLabelSelector` (meta/v1) at `path`.
pub(super) fn validate_label_selector(e: &mut Errs, sel: &Value, path: &str) {
    for (i, r) in get_arr(sel, "matchExpressions").iter().enumerate() {
        let rp = index(&child(path, "matchExpressions"), i);
        let op = str_or_empty(r, "operator");
        let values = get_arr(r, "values");
        match op {
            "In" | "NotIn" => {
                if values.is_empty() {
                    e.required(
                        &child(&rp, "values"),
                        "must be specified when `operator` is 'In' or 'NotIn'",
                    );
                }
            }
            "Exists" | "DoesNotExist" => {
                if !values.is_empty() {
                    e.forbidden(
                        &child(&rp, "values"),
                        "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                    );
                }
            }
            _ => e.invalid(
                &child(&rp, "operator"),
                go::q(op),
                "not a valid selector operator",
            ),
        }
        let k = str_or_empty(r, "key");
        e.invalid_each(&child(&rp, "key"), k, qualified_name_errors(k));
        for v in values.iter().filter_map(Value::as_str) {
            e.invalid_each(&child(&rp, "values"), v, label_value_errors(v));
        }
    }
    validate_labels(e, get(sel, "matchLabels"), &child(path, "matchLabels"));
}

/// Whether a meta/v1 selector has no requirements at all.
pub(super) fn selector_is_empty(sel: &Value) -> bool {
    get_obj(sel, "matchLabels").is_none_or(|m| m.is_empty())
        && get_arr(sel, "matchExpressions").is_empty()
}

/// Whether a meta/v1 selector matches `labels`. A selector with a
/// malformed requirement matches nothing (upstream fails to convert it).
pub(super) fn selector_matches(sel: &Value, labels: Option<&Value>) -> bool {
    let label = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
    if let Some(ml) = get_obj(sel, "matchLabels") {
        for (k, v) in ml {
            if label(k) != v.as_str() {
                return false;
            }
        }
    }
    for r in get_arr(sel, "matchExpressions") {
        let k = str_or_empty(r, "key");
        let values: Vec<&str> = get_arr(r, "values")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let ok = match get_str(r, "operator").unwrap_or("") {
            "In" => label(k).is_some_and(|v| values.contains(&v)),
            "NotIn" => label(k).is_none_or(|v| !values.contains(&v)),
            "Exists" => label(k).is_some(),
            "DoesNotExist" => label(k).is_none(),
            _ => false,
        };
        if !ok {
            return false;
        }
    }
    true
}

/// Whether an equality-only (map) selector matches `labels`.
pub(super) fn map_selector_matches(sel: &Value, labels: Option<&Value>) -> bool {
    sel.as_object().is_none_or(|m| {
        m.iter()
            .all(|(k, v)| labels.and_then(|l| l.get(k)).and_then(Value::as_str) == v.as_str())
    })
}
