//! Per-kind validation of built-in objects, as upstream's
//! `k8s.io/kubernetes/pkg/apis/*/validation` (Kubernetes v1.33): ObjectMeta,
//! pod specs (also inside every workload template), workloads, Services,
//! ConfigMaps/Secrets, storage, RBAC, CRDs and the update-only immutability
//! rules. Each failure is a [`Cause`] whose `message` is upstream's text after
//! the field (`Required value`, `Invalid value: "Foo": ...`), so the server can
//! build the same `Invalid` Status a real API server returns.
//!
//! Owns: the pure checks and upstream's wording, plus the shared name syntax
//! helpers (`is_dns1123_subdomain`, …) and `resource.Quantity` parsing.
//! Must not: mutate or default anything (that is `defaults`), look anything
//! up, or panic on any JSON — a field of the wrong type is skipped (the
//! decoder reports type errors), never unwrapped.
//!
//! Runs after defaulting, but every defaulted field that is absent is treated
//! as "will be defaulted" rather than reported, so manifests exactly as
//! `kubectl create --dry-run=client` prints them validate cleanly too.

mod core_kinds;
mod cron;
mod meta;
mod names;
mod other;
mod pod;
use super::quantity;
mod update;
mod workloads;

use serde_json::{Map, Value};

pub use names::{
    dns1035_label_errors, dns1123_label_errors, dns1123_subdomain_errors, is_dns1035_label,
    is_dns1123_label, is_dns1123_subdomain, label_value_errors, qualified_name_errors,
};
use quantity::Quantity;

/// The value of a `resource.Quantity` string (`500m` → 0.5, `1Gi` →
/// 1073741824), `None` when upstream would reject it. Lossy for huge or
/// nano-precise values; exact comparisons happen inside validation.
pub fn parse_quantity(s: &str) -> Option<f64> {
    quantity::parse_quantity(s).map(|q| q.as_f64())
}

/// One validation failure, shaped like a `StatusCause`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cause {
    /// `FieldValueRequired`, `FieldValueInvalid`, `FieldValueNotSupported`,
    /// `FieldValueDuplicate`, `FieldValueForbidden`, `FieldValueTooLong`,
    /// `FieldValueTypeInvalid` or `FieldValueNotFound`.
    pub reason: &'static str,
    /// Upstream's text after the field, e.g. `Required value`.
    pub message: String,
    /// The field path, e.g. `spec.containers[0].image`.
    pub field: String,
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Validates a whole object of `group`/`kind` on create (and, called again
/// by the server, the new object of an update).
pub fn validate_create(group: &str, kind: &str, obj: &Value) -> Vec<Cause> {
    let mut e = Errs::default();
    meta::validate_object_meta(&mut e, group, kind, obj);
    match (group, kind) {
        ("", "Pod") => pod::validate_pod(&mut e, obj),
        ("", "PodTemplate") => {
            if let Some(t) = get(obj, "template") {
                pod::validate_pod_template(&mut e, t, "template", false);
            }
        }
        ("", "ReplicationController") => workloads::validate_rc(&mut e, obj),
        ("", "Service") => core_kinds::validate_service(&mut e, obj),
        ("", "ConfigMap") => core_kinds::validate_config_map(&mut e, obj),
        ("", "Secret") => core_kinds::validate_secret(&mut e, obj),
        ("", "Namespace") => core_kinds::validate_namespace(&mut e, obj),
        ("", "Node") => core_kinds::validate_node(&mut e, obj),
        ("", "Event") => core_kinds::validate_event(&mut e, obj, false),
        ("events.k8s.io", "Event") => core_kinds::validate_event(&mut e, obj, true),
        ("", "Endpoints") => core_kinds::validate_endpoints(&mut e, obj),
        ("", "PersistentVolume") => core_kinds::validate_pv(&mut e, obj),
        ("", "PersistentVolumeClaim") => core_kinds::validate_pvc(&mut e, obj),
        ("", "ResourceQuota") => core_kinds::validate_resource_quota(&mut e, obj),
        ("", "LimitRange") => core_kinds::validate_limit_range(&mut e, obj),
        ("apps", "Deployment") => workloads::validate_deployment(&mut e, obj),
        ("apps", "ReplicaSet") => workloads::validate_replica_set(&mut e, obj),
        ("apps", "StatefulSet") => workloads::validate_stateful_set(&mut e, obj),
        ("apps", "DaemonSet") => workloads::validate_daemon_set(&mut e, obj),
        ("apps", "ControllerRevision") => workloads::validate_controller_revision(&mut e, obj),
        ("batch", "Job") => workloads::validate_job(&mut e, obj),
        ("batch", "CronJob") => workloads::validate_cron_job(&mut e, obj),
        ("discovery.k8s.io", "EndpointSlice") => other::validate_endpoint_slice(&mut e, obj),
        ("coordination.k8s.io", "Lease") => other::validate_lease(&mut e, obj),
        ("storage.k8s.io", "StorageClass") => other::validate_storage_class(&mut e, obj),
        ("policy", "PodDisruptionBudget") => other::validate_pdb(&mut e, obj),
        ("autoscaling", "HorizontalPodAutoscaler") => other::validate_hpa(&mut e, obj),
        ("networking.k8s.io", "Ingress") => other::validate_ingress(&mut e, obj),
        ("networking.k8s.io", "IngressClass") => other::validate_ingress_class(&mut e, obj),
        ("networking.k8s.io", "NetworkPolicy") => other::validate_network_policy(&mut e, obj),
        ("rbac.authorization.k8s.io", "Role") => other::validate_role(&mut e, obj, true),
        ("rbac.authorization.k8s.io", "ClusterRole") => other::validate_role(&mut e, obj, false),
        ("rbac.authorization.k8s.io", "RoleBinding") => {
            other::validate_role_binding(&mut e, obj, true)
        }
        ("rbac.authorization.k8s.io", "ClusterRoleBinding") => {
            other::validate_role_binding(&mut e, obj, false)
        }
        ("scheduling.k8s.io", "PriorityClass") => other::validate_priority_class(&mut e, obj),
        ("apiextensions.k8s.io", "CustomResourceDefinition") => other::validate_crd(&mut e, obj),
        _ => {}
    }
    e.0
}

/// The `pods/ephemeralcontainers` rule between `old` and `new` pods:
/// ephemeral containers may only be added, never changed or removed.
pub fn validate_ephemeral_update(old: &Value, new: &Value) -> Vec<Cause> {
    let mut e = Errs::default();
    let list = |v: &Value| -> Vec<Value> {
        v.pointer("/spec/ephemeralContainers")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let new_list = list(new);
    for o in list(old) {
        let name = o.get("name").and_then(Value::as_str).unwrap_or_default();
        let detail = match new_list.iter().find(|n| n.get("name") == o.get("name")) {
            None => format!(
                "existing ephemeral containers {} may not be removed",
                go::q(name)
            ),
            Some(n) if *n != o => {
                format!(
                    "existing ephemeral containers {} may not be changed",
                    go::q(name)
                )
            }
            Some(_) => continue,
        };
        e.forbidden("spec.ephemeralContainers", &detail);
    }
    e.0
}

/// The update-only rules (immutability) between `old` and `new`; the server
/// also runs [`validate_create`] on `new`.
pub fn validate_update(group: &str, kind: &str, old: &Value, new: &Value) -> Vec<Cause> {
    let mut e = Errs::default();
    update::validate_update(&mut e, group, kind, old, new);
    e.0
}

// ---------------------------------------------------------------------------
// Causes, with upstream's `field.Error` wording

/// The causes collected so far.
#[derive(Default)]
pub(crate) struct Errs(pub(crate) Vec<Cause>);

impl Errs {
    fn push(&mut self, reason: &'static str, field: &str, message: String) {
        self.0.push(Cause {
            reason,
            message,
            field: field.to_string(),
        });
    }

    /// `field.Required`: `Required value[: detail]`.
    pub(crate) fn required(&mut self, field: &str, detail: &str) {
        self.push(
            "FieldValueRequired",
            field,
            with_detail("Required value", detail),
        );
    }

    /// `field.Invalid`: `Invalid value: <bad>[: detail]`; `bad` is already
    /// printed the way Go's `%v`/`%q`/`%#v` would (see [`go`]).
    pub(crate) fn invalid(&mut self, field: &str, bad: impl AsRef<str>, detail: &str) {
        let body = format!("Invalid value: {}", bad.as_ref());
        self.push("FieldValueInvalid", field, with_detail(&body, detail));
    }

    /// `field.Invalid` for each message of a name/syntax check.
    pub(crate) fn invalid_each(&mut self, field: &str, value: &str, msgs: Vec<String>) {
        for m in msgs {
            self.invalid(field, go::q(value), &m);
        }
    }

    /// `field.NotSupported`: `Unsupported value: <bad>: supported values: "a", "b"`.
    pub(crate) fn not_supported(&mut self, field: &str, bad: impl AsRef<str>, valid: &[&str]) {
        let body = format!("Unsupported value: {}", bad.as_ref());
        let detail = if valid.is_empty() {
            String::new()
        } else {
            let quoted: Vec<String> = valid.iter().map(|v| go::q(v)).collect();
            format!("supported values: {}", quoted.join(", "))
        };
        self.push("FieldValueNotSupported", field, with_detail(&body, &detail));
    }

    /// `field.Duplicate`: `Duplicate value: <bad>`.
    pub(crate) fn duplicate(&mut self, field: &str, bad: impl AsRef<str>) {
        self.push(
            "FieldValueDuplicate",
            field,
            format!("Duplicate value: {}", bad.as_ref()),
        );
    }

    /// `field.NotFound`: `Not found: <bad>`.
    pub(crate) fn not_found(&mut self, field: &str, bad: impl AsRef<str>) {
        self.push(
            "FieldValueNotFound",
            field,
            format!("Not found: {}", bad.as_ref()),
        );
    }

    /// `field.Forbidden`: `Forbidden: detail`.
    pub(crate) fn forbidden(&mut self, field: &str, detail: &str) {
        self.push(
            "FieldValueForbidden",
            field,
            with_detail("Forbidden", detail),
        );
    }

    /// `field.TooLong`: `Too long: must have at most N bytes`.
    pub(crate) fn too_long(&mut self, field: &str, max: usize) {
        self.push(
            "FieldValueTooLong",
            field,
            format!("Too long: must have at most {max} bytes"),
        );
    }

    /// Upstream `ValidateNonnegativeField`.
    pub(crate) fn nonnegative(&mut self, field: &str, v: Option<i64>) {
        if let Some(v) = v
            && v < 0
        {
            self.invalid(field, v.to_string(), IS_NEGATIVE);
        }
    }

    /// `field.Invalid(..., "field is immutable")` when the values differ.
    pub(crate) fn immutable(&mut self, field: &str, new_repr: String, old: &Value, new: &Value) {
        if !same(old, new) {
            self.invalid(field, new_repr, FIELD_IMMUTABLE);
        }
    }
}

fn with_detail(body: &str, detail: &str) -> String {
    if detail.is_empty() {
        body.to_string()
    } else {
        format!("{body}: {detail}")
    }
}

pub(crate) const IS_NEGATIVE: &str = "must be greater than or equal to 0";
pub(crate) const IS_NOT_POSITIVE: &str = "must be greater than zero";
pub(crate) const FIELD_IMMUTABLE: &str = "field is immutable";

/// `validation.InclusiveRangeError`.
pub(crate) fn inclusive_range(lo: i64, hi: i64) -> String {
    format!("must be between {lo} and {hi}, inclusive")
}

// ---------------------------------------------------------------------------
// Field paths (`field.Path.String()`)

pub(crate) fn child(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}

pub(crate) fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

pub(crate) fn key(path: &str, k: &str) -> String {
    format!("{path}[{k}]")
}

// ---------------------------------------------------------------------------
// JSON access that never fails: wrong types read as absent

/// The value under `k`, `None` when absent, null, or `v` is not an object.
pub(crate) fn get<'a>(v: &'a Value, k: &str) -> Option<&'a Value> {
    v.get(k).filter(|x| !x.is_null())
}

pub(crate) fn get_str<'a>(v: &'a Value, k: &str) -> Option<&'a str> {
    get(v, k).and_then(Value::as_str)
}

/// The string under `k`, "" when absent or not a string.
pub(crate) fn str_or_empty<'a>(v: &'a Value, k: &str) -> &'a str {
    get_str(v, k).unwrap_or("")
}

pub(crate) fn get_i64(v: &Value, k: &str) -> Option<i64> {
    get(v, k).and_then(Value::as_i64)
}

pub(crate) fn get_bool(v: &Value, k: &str) -> Option<bool> {
    get(v, k).and_then(Value::as_bool)
}

pub(crate) fn get_obj<'a>(v: &'a Value, k: &str) -> Option<&'a Map<String, Value>> {
    get(v, k).and_then(Value::as_object)
}

/// The array under `k`; empty when absent or not an array.
pub(crate) fn get_arr<'a>(v: &'a Value, k: &str) -> &'a [Value] {
    get(v, k)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// The string elements of the array under `k`.
pub(crate) fn get_strs<'a>(v: &'a Value, k: &str) -> Vec<&'a str> {
    get_arr(v, k).iter().filter_map(Value::as_str).collect()
}

/// Whether a JSON value is "empty" the way Go's zero value is.
pub(crate) fn is_empty(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => true,
        Some(Value::Object(o)) => o.is_empty(),
        Some(Value::Array(a)) => a.is_empty(),
        Some(Value::String(s)) => s.is_empty(),
        Some(Value::Bool(b)) => !b,
        Some(Value::Number(n)) => n.as_f64() == Some(0.0),
    }
}

/// Semantic equality: null, absent, empty and zero values are all the same
/// (Go's omitempty round-trips them into one another).
pub(crate) fn same(a: &Value, b: &Value) -> bool {
    if is_empty(Some(a)) && is_empty(Some(b)) {
        return true;
    }
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => x
            .keys()
            .chain(y.keys())
            .all(|k| same_opt(x.get(k), y.get(k))),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

/// Semantic equality of two optional values (absent == null == empty).
pub(crate) fn same_opt(a: Option<&Value>, b: Option<&Value>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => same(a, b),
        (Some(v), None) | (None, Some(v)) => is_empty(Some(v)),
        (None, None) => true,
    }
}

// ---------------------------------------------------------------------------
// Go value printing, for `Invalid value: <bad>`

pub(crate) mod go {
    use serde_json::Value;

    /// Go's `%q` of a string (`strconv.Quote`).
    pub(crate) fn q(s: &str) -> String {
        let mut out = String::with_capacity(s.len() + 2);
        out.push('"');
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\u{7}' => out.push_str("\\a"),
                '\u{8}' => out.push_str("\\b"),
                '\u{c}' => out.push_str("\\f"),
                '\u{b}' => out.push_str("\\v"),
                c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                    out.push_str(&format!("\\x{:02x}", c as u32));
                }
                c if c.is_control() => {
                    let n = c as u32;
                    if n <= 0xffff {
                        out.push_str(&format!("\\u{n:04x}"));
                    } else {
                        out.push_str(&format!("\\U{n:08x}"));
                    }
                }
                c => out.push(c),
            }
        }
        out.push('"');
        out
    }

    /// `%#v` of a `map[string]string` held in JSON (`nil` when absent).
    pub(crate) fn string_map(v: Option<&Value>) -> String {
        match v.and_then(Value::as_object) {
            None => "map[string]string(nil)".into(),
            Some(m) => {
                let mut entries: Vec<(&String, String)> = m
                    .iter()
                    .map(|(k, v)| (k, v.as_str().map(q).unwrap_or_else(|| q(&v.to_string()))))
                    .collect();
                entries.sort_by(|a, b| a.0.cmp(b.0));
                let body: Vec<String> = entries
                    .into_iter()
                    .map(|(k, v)| format!("{}:{v}", q(k)))
                    .collect();
                format!("map[string]string{{{}}}", body.join(", "))
            }
        }
    }

    /// `%#v` of a `[]string` held in JSON (`nil` when absent).
    pub(crate) fn string_slice(v: Option<&Value>) -> String {
        match v.and_then(Value::as_array) {
            None => "[]string(nil)".into(),
            Some(a) => {
                let items: Vec<String> = a
                    .iter()
                    .map(|x| x.as_str().map(q).unwrap_or_else(|| q(&x.to_string())))
                    .collect();
                format!("[]string{{{}}}", items.join(", "))
            }
        }
    }

    /// `%#v` of an `intstr.IntOrString` held in JSON.
    pub(crate) fn int_or_string(v: Option<&Value>) -> String {
        match v {
            Some(Value::String(s)) => {
                format!("intstr.IntOrString{{Type:1, IntVal:0, StrVal:{}}}", q(s))
            }
            Some(Value::Number(n)) => format!(
                "intstr.IntOrString{{Type:0, IntVal:{}, StrVal:\"\"}}",
                n.as_i64().unwrap_or(0)
            ),
            _ => "intstr.IntOrString{Type:0, IntVal:0, StrVal:\"\"}".into(),
        }
    }

    /// `%#v` of a `metav1.LabelSelector` held in JSON.
    pub(crate) fn label_selector(v: Option<&Value>) -> String {
        let ml = v
            .and_then(|s| s.get("matchLabels"))
            .filter(|x| !x.is_null());
        let me = v
            .and_then(|s| s.get("matchExpressions"))
            .and_then(Value::as_array);
        let exprs = match me {
            None => "[]v1.LabelSelectorRequirement(nil)".to_string(),
            Some(a) => {
                let items: Vec<String> = a
                    .iter()
                    .map(|r| {
                        format!(
                            "v1.LabelSelectorRequirement{{Key:{}, Operator:{}, Values:{}}}",
                            q(r.get("key").and_then(Value::as_str).unwrap_or("")),
                            q(r.get("operator").and_then(Value::as_str).unwrap_or("")),
                            string_slice(r.get("values").filter(|x| !x.is_null()))
                        )
                    })
                    .collect();
                format!("[]v1.LabelSelectorRequirement{{{}}}", items.join(", "))
            }
        };
        format!(
            "v1.LabelSelector{{MatchLabels:{}, MatchExpressions:{exprs}}}",
            string_map(ml)
        )
    }

    /// `%v` of a scalar JSON value (numbers bare, strings quoted).
    pub(crate) fn scalar(v: Option<&Value>) -> String {
        match v {
            None | Some(Value::Null) => "null".into(),
            Some(Value::String(s)) => q(s),
            Some(Value::Number(n)) => n.to_string(),
            Some(Value::Bool(b)) => b.to_string(),
            Some(other) => other.to_string(),
        }
    }
}

#[cfg(test)]
mod tests;
