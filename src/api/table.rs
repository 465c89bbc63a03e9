//! Server-side Table printing (`Accept: application/json;as=Table;g=meta.k8s.io;v=v1`)
//! for `kubectl get`: per-kind column definitions and row cells modelled on
//! upstream's `pkg/printers/internalversion/printers.go` (Kubernetes v1.33), the
//! CustomResourceDefinition `additionalPrinterColumns` convertor, and
//! `duration.HumanDuration`.
//!
//! Everything here is a pure function of the stored JSON object and a clock
//! value passed in; it owns no state beyond an interner for CRD column texts and
//! does no I/O. It must never panic on any JSON: missing or wrong-typed fields
//! print the way upstream prints zero values (`<none>`, `<unknown>`, `0`, "").
//! Like upstream's server-side convertor, rows always carry the wide
//! (priority 1) cells too; kubectl hides them unless `-o wide`.

use std::collections::{BTreeSet, HashSet};
use std::sync::{Mutex, OnceLock};

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use serde_json::{Map, Value};

/// One column definition of a `meta.k8s.io/v1` Table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: &'static str,
    /// "string" | "integer" | "date" | "number" | "boolean"
    pub type_: &'static str,
    /// "name" for the object-name column, otherwise usually "".
    pub format: &'static str,
    pub description: &'static str,
    /// 0, or 1 for columns shown only with `-o wide`.
    pub priority: i32,
}

const fn col(name: &'static str, type_: &'static str, description: &'static str) -> Column {
    Column {
        name,
        type_,
        format: "",
        description,
        priority: 0,
    }
}

const fn wide(name: &'static str, type_: &'static str, description: &'static str) -> Column {
    Column {
        name,
        type_,
        format: "",
        description,
        priority: 1,
    }
}

const NAME_DESC: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";
const CREATED_DESC: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.";

const NAME: Column = Column {
    name: "Name",
    type_: "string",
    format: "name",
    description: NAME_DESC,
    priority: 0,
};
/// Upstream's built-in printers declare Age as a "string" column whose cell is
/// already a HumanDuration; only CRD defaults use the "date" type.
const AGE: Column = col("Age", "string", CREATED_DESC);
const CREATED_AT: Column = col("Created At", "date", CREATED_DESC);
const CONTAINERS: Column = wide(
    "Containers",
    "string",
    "Names of each container in the template.",
);
const IMAGES: Column = wide(
    "Images",
    "string",
    "Images referenced by each container in the template.",
);
const SELECTOR: Column = wide(
    "Selector",
    "string",
    "A label query over pods that should match the replica count.",
);

type Now = DateTime<Utc>;
type RowFn = fn(&Value, Now) -> Vec<Value>;
type ColumnsFn = fn() -> Vec<Column>;

// ---------------------------------------------------------------------------
// Public API

/// Column definitions for a built-in kind; `None` for a kind without a printer.
pub fn columns(group: &str, kind: &str) -> Option<Vec<Column>> {
    printer(group, kind).map(|(cols, _)| cols())
}

/// Row cells for an object of a built-in kind, in the order of [`columns`].
/// For a kind without a printer this is the default `Name, Age` row.
pub fn cells(group: &str, kind: &str, obj: &Value, now: Now) -> Vec<Value> {
    match printer(group, kind) {
        Some((_, row)) => row(obj, now),
        None => crd_cells(&Value::Array(Vec::new()), obj, now),
    }
}

/// `k8s.io/apimachinery/pkg/util/duration.HumanDuration`.
pub fn human_duration(d: Duration) -> String {
    // Up to one second into the future is tolerated as clock skew.
    let seconds = d.num_seconds();
    if seconds < -1 {
        return "<invalid>".to_string();
    } else if seconds < 0 {
        return "0s".to_string();
    } else if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        if s == 0 {
            return format!("{minutes}m");
        }
        return format!("{minutes}m{s}s");
    } else if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = seconds / 3600;
    if hours < 8 {
        let m = minutes % 60;
        if m == 0 {
            return format!("{hours}h");
        }
        format!("{hours}h{m}m")
    } else if hours < 48 {
        format!("{hours}h")
    } else if hours < 24 * 8 {
        let h = hours % 24;
        if h == 0 {
            return format!("{}d", hours / 24);
        }
        format!("{}d{h}h", hours / 24)
    } else if hours < 24 * 365 * 2 {
        format!("{}d", hours / 24)
    } else if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        if dy == 0 {
            return format!("{}y", hours / 24 / 365);
        }
        format!("{}y{dy}d", hours / 24 / 365)
    } else {
        format!("{}y", hours / 24 / 365)
    }
}

// ---------------------------------------------------------------------------
// JSON access helpers: every lookup tolerates missing and wrong-typed fields.

static NULL: Value = Value::Null;

fn at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |cur, key| cur.get(*key))
}

fn node<'a>(v: &'a Value, path: &[&str]) -> &'a Value {
    at(v, path).unwrap_or(&NULL)
}

/// An object-valued field, or `None` when missing, null or not an object
/// (Go's nil pointer to a struct).
fn obj_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    at(v, path).filter(|x| x.is_object())
}

fn s<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    at(v, path).and_then(Value::as_str).unwrap_or("")
}

fn opt_s<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    at(v, path).and_then(Value::as_str)
}

fn lenient_i64(v: &Value) -> Option<i64> {
    v.as_i64()
        .or_else(|| v.as_u64().map(|u| i64::try_from(u).unwrap_or(i64::MAX)))
        .or_else(|| v.as_f64().map(|f| f as i64))
}

fn opt_int(v: &Value, path: &[&str]) -> Option<i64> {
    at(v, path).and_then(lenient_i64)
}

fn int(v: &Value, path: &[&str]) -> i64 {
    opt_int(v, path).unwrap_or(0)
}

fn opt_bool(v: &Value, path: &[&str]) -> Option<bool> {
    at(v, path).and_then(Value::as_bool)
}

fn list<'a>(v: &'a Value, path: &[&str]) -> &'a [Value] {
    at(v, path)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn map_len(v: &Value, path: &[&str]) -> usize {
    at(v, path).and_then(Value::as_object).map_or(0, Map::len)
}

fn name(o: &Value) -> Value {
    Value::from(s(o, &["metadata", "name"]))
}

fn parse_time(v: &Value) -> Option<Now> {
    let text = v.as_str()?;
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

fn ts(v: &Value, path: &[&str]) -> Option<Now> {
    at(v, path).and_then(parse_time)
}

/// Upstream `translateTimestampSince`.
fn since(t: Option<Now>, now: Now) -> String {
    match t {
        Some(t) => human_duration(now.signed_duration_since(t)),
        None => "<unknown>".to_string(),
    }
}

fn age(o: &Value, now: Now) -> Value {
    Value::from(since(ts(o, &["metadata", "creationTimestamp"]), now))
}

/// `Created At` cells: RFC3339 in UTC, like `CreationTimestamp.UTC().Format(time.RFC3339)`.
fn created_at(o: &Value) -> Value {
    let text = match ts(o, &["metadata", "creationTimestamp"]) {
        Some(t) => t.to_rfc3339_opts(SecondsFormat::Secs, true),
        None => "0001-01-01T00:00:00Z".to_string(),
    };
    Value::from(text)
}

fn deleting(o: &Value) -> bool {
    at(o, &["metadata", "deletionTimestamp"]).is_some_and(|v| !v.is_null())
}

fn or_str<'a>(text: &'a str, fallback: &'a str) -> &'a str {
    if text.is_empty() { fallback } else { text }
}

/// Renders a JSON scalar the way Go's `fmt` renders the typed field
/// (quantities, int-or-string).
fn scalar_string(v: &Value) -> String {
    match v {
        Value::String(x) => x.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => String::new(),
    }
}

fn quantity(v: &Value, path: &[&str]) -> String {
    match at(v, path) {
        Some(q) if !q.is_null() => scalar_string(q),
        _ => "0".to_string(),
    }
}

/// `labels.FormatLabels`: sorted `k=v` pairs, `<none>` when empty.
fn format_labels(v: &Value) -> String {
    let mut pairs: Vec<String> = v
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, val)| format!("{k}={}", scalar_string(val)))
                .collect()
        })
        .unwrap_or_default();
    if pairs.is_empty() {
        return "<none>".to_string();
    }
    pairs.sort();
    pairs.join(",")
}

/// `metav1.LabelSelectorAsSelector(sel).String()`; `Err` for an invalid selector.
fn selector_string(sel: &Value) -> Result<String, ()> {
    if !sel.is_object() {
        return Ok(String::new());
    }
    let mut reqs: Vec<(String, String)> = Vec::new();
    if let Some(m) = sel.get("matchLabels").and_then(Value::as_object) {
        for (k, v) in m {
            reqs.push((k.clone(), format!("{k}={}", scalar_string(v))));
        }
    }
    for expr in list(sel, &["matchExpressions"]) {
        let key = s(expr, &["key"]).to_string();
        let values: BTreeSet<String> = list(expr, &["values"]).iter().map(scalar_string).collect();
        let joined = values.iter().cloned().collect::<Vec<_>>().join(",");
        let rendered = match s(expr, &["operator"]) {
            "In" if !values.is_empty() => format!("{key} in ({joined})"),
            "NotIn" if !values.is_empty() => format!("{key} notin ({joined})"),
            "Exists" if values.is_empty() => key.clone(),
            "DoesNotExist" if values.is_empty() => format!("!{key}"),
            _ => return Err(()),
        };
        reqs.push((key, rendered));
    }
    reqs.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(reqs
        .into_iter()
        .map(|(_, r)| r)
        .collect::<Vec<_>>()
        .join(","))
}

/// `metav1.FormatLabelSelector`.
fn format_label_selector(sel: &Value) -> String {
    match selector_string(sel) {
        Ok(text) if text.is_empty() => "<none>".to_string(),
        Ok(text) => text,
        Err(()) => "<error>".to_string(),
    }
}

/// `layoutContainerCells`: comma-joined container names and images.
fn container_cells(containers: &[Value]) -> (Value, Value) {
    let names: Vec<&str> = containers.iter().map(|c| s(c, &["name"])).collect();
    let images: Vec<&str> = containers.iter().map(|c| s(c, &["image"])).collect();
    (Value::from(names.join(",")), Value::from(images.join(",")))
}

fn with_more(list: &[String], more: bool, count: usize, max: usize, empty: &str) -> String {
    let ret = list.join(",");
    if more {
        return format!("{ret} + {} more...", count.saturating_sub(max));
    }
    if ret.is_empty() {
        empty.to_string()
    } else {
        ret
    }
}

fn condition_true(conditions: &[Value], type_: &str) -> bool {
    conditions
        .iter()
        .find(|c| s(c, &["type"]) == type_)
        .is_some_and(|c| s(c, &["status"]) == "True")
}

fn bool_word(b: bool) -> &'static str {
    if b { "True" } else { "False" }
}

// ---------------------------------------------------------------------------
// Kind → printer

fn printer(group: &str, kind: &str) -> Option<(ColumnsFn, RowFn)> {
    let p: (ColumnsFn, RowFn) = match (group, kind) {
        ("", "Pod") => (pod_columns, pod_row),
        ("", "PodTemplate") => (pod_template_columns, pod_template_row),
        ("", "Node") => (node_columns, node_row),
        ("", "Namespace") => (namespace_columns, namespace_row),
        ("", "Service") => (service_columns, service_row),
        ("", "Endpoints") => (endpoints_columns, endpoints_row),
        ("", "ConfigMap") => (config_map_columns, config_map_row),
        ("", "Secret") => (secret_columns, secret_row),
        ("", "ServiceAccount") => (service_account_columns, service_account_row),
        ("", "Event") => (event_columns, core_event_row),
        ("events.k8s.io", "Event") => (event_columns, events_event_row),
        ("", "PersistentVolume") => (pv_columns, pv_row),
        ("", "PersistentVolumeClaim") => (pvc_columns, pvc_row),
        ("", "LimitRange") => (name_created_columns, name_created_row),
        ("", "ResourceQuota") => (resource_quota_columns, resource_quota_row),
        ("", "ReplicationController") => (rc_columns, rc_row),
        ("apps", "Deployment") => (deployment_columns, deployment_row),
        ("apps", "ReplicaSet") => (replica_set_columns, replica_set_row),
        ("apps", "StatefulSet") => (stateful_set_columns, stateful_set_row),
        ("apps", "DaemonSet") => (daemon_set_columns, daemon_set_row),
        ("apps", "ControllerRevision") => (controller_revision_columns, controller_revision_row),
        ("batch", "Job") => (job_columns, job_row),
        ("batch", "CronJob") => (cron_job_columns, cron_job_row),
        ("autoscaling", "HorizontalPodAutoscaler") => (hpa_columns, hpa_row),
        ("networking.k8s.io", "Ingress") => (ingress_columns, ingress_row),
        ("networking.k8s.io", "IngressClass") => (ingress_class_columns, ingress_class_row),
        ("networking.k8s.io", "NetworkPolicy") => (network_policy_columns, network_policy_row),
        ("discovery.k8s.io", "EndpointSlice") => (endpoint_slice_columns, endpoint_slice_row),
        ("coordination.k8s.io", "Lease") => (lease_columns, lease_row),
        ("rbac.authorization.k8s.io", "Role" | "ClusterRole") => {
            (name_created_columns, name_created_row)
        }
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => {
            (role_binding_columns, role_binding_row)
        }
        ("storage.k8s.io", "StorageClass") => (storage_class_columns, storage_class_row),
        ("policy", "PodDisruptionBudget") => (pdb_columns, pdb_row),
        ("scheduling.k8s.io", "PriorityClass") => (priority_class_columns, priority_class_row),
        // Upstream serves these through the default convertor: Name, Created At.
        ("apiextensions.k8s.io", "CustomResourceDefinition") => {
            (name_created_columns, name_created_row)
        }
        _ => return None,
    };
    Some(p)
}

fn name_created_columns() -> Vec<Column> {
    vec![NAME, CREATED_AT]
}

fn name_created_row(o: &Value, _now: Now) -> Vec<Value> {
    vec![name(o), created_at(o)]
}

// ---------------------------------------------------------------------------
// core/v1

fn pod_columns() -> Vec<Column> {
    vec![
        NAME,
        col(
            "Ready",
            "string",
            "The aggregate readiness state of this pod for accepting traffic.",
        ),
        col(
            "Status",
            "string",
            "The aggregate status of the containers in this pod.",
        ),
        col(
            "Restarts",
            "string",
            "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
        ),
        AGE,
        wide("IP", "string", "IP address allocated to the pod."),
        wide("Node", "string", "The node the pod is scheduled onto."),
        wide(
            "Nominated Node",
            "string",
            "The node where preemption was done to make room for this pod.",
        ),
        wide(
            "Readiness Gates",
            "string",
            "Readiness gates satisfied out of those declared.",
        ),
    ]
}

fn later(a: Option<Now>, b: Option<Now>) -> Option<Now> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

/// FinishedAt of a container status' last termination, if any.
fn last_terminated_at(c: &Value) -> Option<Now> {
    obj_at(c, &["lastState", "terminated"]).and_then(|t| ts(t, &["finishedAt"]))
}

/// Upstream `printPod`, including its STATUS reason precedence.
fn pod_row(o: &Value, now: Now) -> Vec<Value> {
    let spec = node(o, &["spec"]);
    let status = node(o, &["status"]);
    let conditions = list(status, &["conditions"]);
    let init_specs = list(spec, &["initContainers"]);
    let is_restartable = |container: &str| {
        init_specs
            .iter()
            .rev()
            .find(|c| s(c, &["name"]) == container)
            .is_some_and(|c| s(c, &["restartPolicy"]) == "Always")
    };

    let mut restarts: i64 = 0;
    let mut restartable_restarts: i64 = 0;
    let mut last_restart: Option<Now> = None;
    let mut last_restartable_restart: Option<Now> = None;
    let mut ready: i64 = 0;
    let total = list(spec, &["containers"]).len()
        + init_specs
            .iter()
            .filter(|c| s(c, &["restartPolicy"]) == "Always")
            .count();

    let phase = s(status, &["phase"]);
    let mut reason = or_str(s(status, &["reason"]), phase).to_string();
    if conditions
        .iter()
        .any(|c| s(c, &["type"]) == "PodScheduled" && s(c, &["reason"]) == "SchedulingGated")
    {
        reason = "SchedulingGated".to_string();
    }

    let mut initializing = false;
    for (i, c) in list(status, &["initContainerStatuses"]).iter().enumerate() {
        let count = int(c, &["restartCount"]);
        restarts = restarts.saturating_add(count);
        last_restart = later(last_restart, last_terminated_at(c));
        let restartable = is_restartable(s(c, &["name"]));
        if restartable {
            restartable_restarts = restartable_restarts.saturating_add(count);
            last_restartable_restart = later(last_restartable_restart, last_terminated_at(c));
        }
        let terminated = obj_at(c, &["state", "terminated"]);
        let waiting = obj_at(c, &["state", "waiting"]);
        if let Some(t) = terminated
            && int(t, &["exitCode"]) == 0
        {
            continue;
        }
        if restartable && opt_bool(c, &["started"]) == Some(true) {
            if opt_bool(c, &["ready"]) == Some(true) {
                ready += 1;
            }
            continue;
        }
        if let Some(t) = terminated {
            let term_reason = s(t, &["reason"]);
            reason = if !term_reason.is_empty() {
                format!("Init:{term_reason}")
            } else if int(t, &["signal"]) != 0 {
                format!("Init:Signal:{}", int(t, &["signal"]))
            } else {
                format!("Init:ExitCode:{}", int(t, &["exitCode"]))
            };
        } else if let Some(w) = waiting
            && !s(w, &["reason"]).is_empty()
            && s(w, &["reason"]) != "PodInitializing"
        {
            reason = format!("Init:{}", s(w, &["reason"]));
        } else {
            reason = format!("Init:{i}/{}", init_specs.len());
        }
        initializing = true;
        break;
    }

    if !initializing || condition_true(conditions, "Initialized") {
        restarts = restartable_restarts;
        last_restart = last_restartable_restart;
        let mut has_running = false;
        for c in list(status, &["containerStatuses"]).iter().rev() {
            restarts = restarts.saturating_add(int(c, &["restartCount"]));
            last_restart = later(last_restart, last_terminated_at(c));
            let waiting = obj_at(c, &["state", "waiting"]);
            let terminated = obj_at(c, &["state", "terminated"]);
            if let Some(w) = waiting
                && !s(w, &["reason"]).is_empty()
            {
                reason = s(w, &["reason"]).to_string();
            } else if let Some(t) = terminated {
                let term_reason = s(t, &["reason"]);
                reason = if !term_reason.is_empty() {
                    term_reason.to_string()
                } else if int(t, &["signal"]) != 0 {
                    format!("Signal:{}", int(t, &["signal"]))
                } else {
                    format!("ExitCode:{}", int(t, &["exitCode"]))
                };
            } else if opt_bool(c, &["ready"]) == Some(true)
                && obj_at(c, &["state", "running"]).is_some()
            {
                has_running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && has_running {
            reason = if condition_true(conditions, "Ready") {
                "Running"
            } else {
                "NotReady"
            }
            .to_string();
        }
    }

    if deleting(o) && s(status, &["reason"]) == "NodeLost" {
        reason = "Unknown".to_string();
    } else if deleting(o) && phase != "Succeeded" && phase != "Failed" {
        reason = "Terminating".to_string();
    }

    let restarts_text = match last_restart {
        Some(t) if restarts != 0 => format!("{restarts} ({} ago)", since(Some(t), now)),
        _ => restarts.to_string(),
    };

    // v1 → internal conversion fills podIPs from podIP when only the latter is set.
    let pod_ip = list(status, &["podIPs"])
        .first()
        .map_or_else(|| s(status, &["podIP"]), |ip| s(ip, &["ip"]));
    let gates = list(spec, &["readinessGates"]);
    let readiness_gates = if gates.is_empty() {
        "<none>".to_string()
    } else {
        let satisfied = gates
            .iter()
            .filter(|g| condition_true(conditions, s(g, &["conditionType"])))
            .count();
        format!("{satisfied}/{}", gates.len())
    };

    vec![
        name(o),
        Value::from(format!("{ready}/{total}")),
        Value::from(reason),
        Value::from(restarts_text),
        age(o, now),
        Value::from(or_str(pod_ip, "<none>")),
        Value::from(or_str(s(spec, &["nodeName"]), "<none>")),
        Value::from(or_str(s(status, &["nominatedNodeName"]), "<none>")),
        Value::from(readiness_gates),
    ]
}

fn pod_template_columns() -> Vec<Column> {
    vec![
        NAME,
        col(
            "Containers",
            "string",
            "Names of each container in the template.",
        ),
        col(
            "Images",
            "string",
            "Images referenced by each container in the template.",
        ),
        col("Pod Labels", "string", "The labels for the pod template."),
    ]
}

fn pod_template_row(o: &Value, _now: Now) -> Vec<Value> {
    let (names, images) = container_cells(list(o, &["template", "spec", "containers"]));
    vec![
        name(o),
        names,
        images,
        Value::from(format_labels(node(o, &["template", "metadata", "labels"]))),
    ]
}

fn node_columns() -> Vec<Column> {
    vec![
        NAME,
        col("Status", "string", "The status of the node"),
        col("Roles", "string", "The roles of the node"),
        AGE,
        col("Version", "string", "Kubelet Version reported by the node."),
        wide(
            "Internal-IP",
            "string",
            "List of addresses reachable to the node.",
        ),
        wide(
            "External-IP",
            "string",
            "List of addresses reachable to the node.",
        ),
        wide(
            "OS-Image",
            "string",
            "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).",
        ),
        wide(
            "Kernel-Version",
            "string",
            "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).",
        ),
        wide(
            "Container-Runtime",
            "string",
            "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2).",
        ),
    ]
}

fn node_row(o: &Value, now: Now) -> Vec<Value> {
    let mut status: Vec<&str> = Vec::new();
    // upstream keeps the last condition of a type (map insert)
    if let Some(c) = list(o, &["status", "conditions"])
        .iter()
        .rev()
        .find(|c| s(c, &["type"]) == "Ready")
    {
        status.push(if s(c, &["status"]) == "True" {
            "Ready"
        } else {
            "NotReady"
        });
    }
    if status.is_empty() {
        status.push("Unknown");
    }
    if opt_bool(o, &["spec", "unschedulable"]) == Some(true) {
        status.push("SchedulingDisabled");
    }

    let mut roles: BTreeSet<String> = BTreeSet::new();
    if let Some(labels) = at(o, &["metadata", "labels"]).and_then(Value::as_object) {
        for (k, v) in labels {
            if let Some(role) = k.strip_prefix("node-role.kubernetes.io/") {
                if !role.is_empty() {
                    roles.insert(role.to_string());
                }
            } else if k == "kubernetes.io/role" {
                let v = scalar_string(v);
                if !v.is_empty() {
                    roles.insert(v);
                }
            }
        }
    }
    let roles = roles.into_iter().collect::<Vec<_>>().join(",");

    let address = |type_: &str| {
        list(o, &["status", "addresses"])
            .iter()
            .find(|a| s(a, &["type"]) == type_)
            .map_or("<none>", |a| s(a, &["address"]))
    };
    let info = node(o, &["status", "nodeInfo"]);
    vec![
        name(o),
        Value::from(status.join(",")),
        Value::from(or_str(&roles, "<none>")),
        age(o, now),
        Value::from(s(info, &["kubeletVersion"])),
        Value::from(address("InternalIP")),
        Value::from(address("ExternalIP")),
        Value::from(or_str(s(info, &["osImage"]), "<unknown>")),
        Value::from(or_str(s(info, &["kernelVersion"]), "<unknown>")),
        Value::from(or_str(s(info, &["containerRuntimeVersion"]), "<unknown>")),
    ]
}

fn namespace_columns() -> Vec<Column> {
    vec![
        NAME,
        col("Status", "string", "The status of the namespace"),
        AGE,
    ]
}

fn namespace_row(o: &Value, now: Now) -> Vec<Value> {
    vec![
        name(o),
        Value::from(s(o, &["status", "phase"])),
        age(o, now),
    ]
}

fn service_columns() -> Vec<Column> {
    vec![
        NAME,
        col(
            "Type",
            "string",
            "type determines how the Service is exposed.",
        ),
        col(
            "Cluster-IP",
            "string",
            "clusterIP is the IP address of the service.",
        ),
        col(
            "External-IP",
            "string",
            "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service.",
        ),
        col(
            "Port(s)",
            "string",
            "The list of ports that are exposed by this service.",
        ),
        AGE,
        wide(
            "Selector",
            "string",
            "Route service traffic to pods with label keys and values matching this selector.",
        ),
    ]
}

/// `loadBalancerStatusStringer` (wide: never truncated server-side).
fn load_balancer_ingress(lb: &Value) -> String {
    let mut set: BTreeSet<&str> = BTreeSet::new();
    for ing in list(lb, &["ingress"]) {
        let ip = s(ing, &["ip"]);
        let host = s(ing, &["hostname"]);
        if !ip.is_empty() {
            set.insert(ip);
        } else if !host.is_empty() {
            set.insert(host);
        }
    }
    set.into_iter().collect::<Vec<_>>().join(",")
}

fn service_row(o: &Value, now: Now) -> Vec<Value> {
    let spec = node(o, &["spec"]);
    let cluster_ip = list(spec, &["clusterIPs"])
        .first()
        .and_then(Value::as_str)
        .or_else(|| opt_s(spec, &["clusterIP"]).filter(|ip| !ip.is_empty()))
        .unwrap_or("<none>");
    let external_ips: Vec<String> = list(spec, &["externalIPs"])
        .iter()
        .map(scalar_string)
        .collect();
    let external = match s(spec, &["type"]) {
        "ClusterIP" | "NodePort" => {
            if external_ips.is_empty() {
                "<none>".to_string()
            } else {
                external_ips.join(",")
            }
        }
        "LoadBalancer" => {
            let lb = load_balancer_ingress(node(o, &["status", "loadBalancer"]));
            if !external_ips.is_empty() {
                let mut all: Vec<String> = Vec::new();
                if !lb.is_empty() {
                    all.extend(lb.split(',').map(str::to_string));
                }
                all.extend(external_ips);
                all.join(",")
            } else if !lb.is_empty() {
                lb
            } else {
                "<pending>".to_string()
            }
        }
        "ExternalName" => s(spec, &["externalName"]).to_string(),
        _ => "<unknown>".to_string(),
    };
    let ports: Vec<String> = list(spec, &["ports"])
        .iter()
        .map(|p| {
            let port = int(p, &["port"]);
            let proto = s(p, &["protocol"]);
            let node_port = int(p, &["nodePort"]);
            if node_port > 0 {
                format!("{port}:{node_port}/{proto}")
            } else {
                format!("{port}/{proto}")
            }
        })
        .collect();
    let ports = if ports.is_empty() {
        "<none>".to_string()
    } else {
        ports.join(",")
    };
    vec![
        name(o),
        Value::from(s(spec, &["type"])),
        Value::from(cluster_ip),
        Value::from(external),
        Value::from(ports),
        age(o, now),
        Value::from(format_labels(node(spec, &["selector"]))),
    ]
}

fn endpoints_columns() -> Vec<Column> {
    vec![
        NAME,
        col(
            "Endpoints",
            "string",
            "The set of all endpoints is the union of all subsets.",
        ),
        AGE,
    ]
}

fn join_host_port(host: &str, port: i64) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Upstream `formatEndpoints` with no port filter.
fn endpoints_row(o: &Value, now: Now) -> Vec<Value> {
    const MAX: usize = 3;
    let subsets = list(o, &["subsets"]);
    let text = if subsets.is_empty() {
        "<none>".to_string()
    } else {
        let mut out: Vec<String> = Vec::new();
        let mut more = false;
        let mut count = 0usize;
        for ss in subsets {
            let addresses = list(ss, &["addresses"]);
            let ports = list(ss, &["ports"]);
            if ports.is_empty() {
                count += addresses.len();
                for a in addresses {
                    if out.len() == MAX {
                        more = true;
                        break;
                    }
                    out.push(s(a, &["ip"]).to_string());
                }
                continue;
            }
            for p in ports {
                count += addresses.len();
                for a in addresses {
                    if out.len() == MAX {
                        more = true;
                        break;
                    }
                    out.push(join_host_port(s(a, &["ip"]), int(p, &["port"])));
                }
            }
        }
        with_more(&out, more, count, MAX, "")
    };
    vec![name(o), Value::from(text), age(o, now)]
}

fn config_map_columns() -> Vec<Column> {
    vec![
        NAME,
        col("Data", "string", "Number of data entries in the ConfigMap."),
        AGE,
    ]
}

fn config_map_row(o: &Value, now: Now) -> Vec<Value> {
    let n = map_len(o, &["data"]) + map_len(o, &["binaryData"]);
    vec![name(o), Value::from(n), age(o, now)]
}

fn secret_columns() -> Vec<Column> {
    vec![
        NAME,
        col(
            "Type",
            "string",
            "Used to facilitate programmatic handling of secret data.",
        ),
        col("Data", "string", "Number of data entries in the Secret."),
        AGE,
    ]
}

fn secret_row(o: &Value, now: Now) -> Vec<Value> {
    // stringData is folded into data on write; count both in case it was not.
    let n = map_len(o, &["data"]) + map_len(o, &["stringData"]);
    vec![
        name(o),
        Value::from(s(o, &["type"])),
        Value::from(n),
        age(o, now),
    ]
}

fn service_account_columns() -> Vec<Column> {
    vec![
        NAME,
        col(
            "Secrets",
            "string",
            "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use.",
        ),
        AGE,
    ]
}

fn service_account_row(o: &Value, now: Now) -> Vec<Value> {
    vec![
        name(o),
        Value::from(list(o, &["secrets"]).len()),
        age(o, now),
    ]
}

fn event_columns() -> Vec<Column> {
    vec![
        col(
            "Last Seen",
            "string",
            "The time at which the most recent occurrence of this event was recorded.",
        ),
        col(
            "Type",
            "string",
            "Type of this event (Normal, Warning), new types could be added in the future",
        ),
        col(
            "Reason",
            "string",
            "This should be a short, machine understandable string that gives the reason for the transition into the object's current status.",
        ),
        col("Object", "string", "The object that this event is about."),
        wide(
            "Subobject",
            "string",
            "The field of the object that this event is about.",
        ),
        wide("Source", "string", "The component reporting this event."),
        col(
            "Message",
            "string",
            "A human-readable description of the status of this operation.",
        ),
        wide(
            "First Seen",
            "string",
            "The time at which the event was first recorded.",
        ),
        wide(
            "Count",
            "string",
            "The number of times this event has occurred.",
        ),
        Column {
            priority: 1,
            ..NAME
        },
    ]
}

/// The fields of an Event after conversion to upstream's internal type.
struct EventView<'a> {
    first: Option<Now>,
    last: Option<Now>,
    event_time: Option<Now>,
    count: i64,
    series: Option<&'a Value>,
    regarding: &'a Value,
    type_: &'a str,
    reason: &'a str,
    message: &'a str,
    component: &'a str,
    host: &'a str,
    reporting_controller: &'a str,
    reporting_instance: &'a str,
}

fn core_event_row(o: &Value, now: Now) -> Vec<Value> {
    event_row(
        o,
        &EventView {
            first: ts(o, &["firstTimestamp"]),
            last: ts(o, &["lastTimestamp"]),
            event_time: ts(o, &["eventTime"]),
            count: int(o, &["count"]),
            series: obj_at(o, &["series"]),
            regarding: node(o, &["involvedObject"]),
            type_: s(o, &["type"]),
            reason: s(o, &["reason"]),
            message: s(o, &["message"]),
            component: s(o, &["source", "component"]),
            host: s(o, &["source", "host"]),
            reporting_controller: s(o, &["reportingComponent"]),
            reporting_instance: s(o, &["reportingInstance"]),
        },
        now,
    )
}

fn events_event_row(o: &Value, now: Now) -> Vec<Value> {
    event_row(
        o,
        &EventView {
            first: ts(o, &["deprecatedFirstTimestamp"]),
            last: ts(o, &["deprecatedLastTimestamp"]),
            event_time: ts(o, &["eventTime"]),
            count: int(o, &["deprecatedCount"]),
            series: obj_at(o, &["series"]),
            regarding: node(o, &["regarding"]),
            type_: s(o, &["type"]),
            reason: s(o, &["reason"]),
            message: s(o, &["note"]),
            component: s(o, &["deprecatedSource", "component"]),
            host: s(o, &["deprecatedSource", "host"]),
            reporting_controller: s(o, &["reportingController"]),
            reporting_instance: s(o, &["reportingInstance"]),
        },
        now,
    )
}

/// Upstream `printEvent`.
fn event_row(o: &Value, e: &EventView<'_>, now: Now) -> Vec<Value> {
    let first = match e.first {
        Some(t) => since(Some(t), now),
        None => since(e.event_time, now),
    };
    let mut last = match e.last {
        Some(t) => since(Some(t), now),
        None => first.clone(),
    };
    let mut count = e.count;
    if let Some(series) = e.series {
        last = since(ts(series, &["lastObservedTime"]), now);
        count = int(series, &["count"]);
    } else if count == 0 {
        count = 1;
    }
    let kind = s(e.regarding, &["kind"]).to_lowercase();
    let target_name = s(e.regarding, &["name"]);
    let target = if target_name.is_empty() {
        kind
    } else {
        format!("{kind}/{target_name}")
    };
    let component = or_str(e.component, e.reporting_controller);
    let host = or_str(e.host, e.reporting_instance);
    let source = if host.is_empty() {
        component.to_string()
    } else {
        format!("{component}, {host}")
    };
    vec![
        Value::from(last),
        Value::from(e.type_),
        Value::from(e.reason),
        Value::from(target),
        Value::from(s(e.regarding, &["fieldPath"])),
        Value::from(source),
        Value::from(e.message.trim()),
        Value::from(first),
        Value::from(count),
        name(o),
    ]
}

/// `helper.GetAccessModesAsString`.
fn access_modes(modes: &[Value]) -> String {
    let has = |m: &str| modes.iter().any(|x| x.as_str() == Some(m));
    [
        ("ReadWriteOnce", "RWO"),
        ("ReadOnlyMany", "ROX"),
        ("ReadWriteMany", "RWX"),
        ("ReadWriteOncePod", "RWOP"),
    ]
    .iter()
    .filter(|(mode, _)| has(mode))
    .map(|(_, short)| *short)
    .collect::<Vec<_>>()
    .join(",")
}

/// The beta annotation wins over `spec.storageClassName`, as upstream.
fn storage_class_of(o: &Value) -> &str {
    opt_s(
        o,
        &[
            "metadata",
            "annotations",
            "volume.beta.kubernetes.io/storage-class",
        ],
    )
    .unwrap_or_else(|| s(o, &["spec", "storageClassName"]))
}

fn pv_columns() -> Vec<Column> {
    vec![
        NAME,
        col(
            "Capacity",
            "string",
            "capacity is the description of the persistent volume's resources and capacity.",
        ),
        col(
            "Access Modes",
            "string",
            "accessModes contains all ways the volume can be mounted.",
        ),
        col(
            "Reclaim Policy",
            "string",
            "persistentVolumeReclaimPolicy defines what happens to a persistent volume when released from its claim.",
        ),
        col(
            "Status",
            "string",
            "phase indicates if a volume is available, bound to a claim, or released by a claim.",
        ),
        col(
            "Claim",
            "string",
            "claimRef is part of a bi-directional binding between PersistentVolume and PersistentVolumeClaim.",
        ),
        col("StorageClass", "string", "StorageClass of the pv"),
        col(
            "VolumeAttributesClass",
            "string",
            "VolumeAttributesClass of the pv",
        ),
        col(
            "Reason",
            "string",
            "reason is a brief CamelCase string that describes any failure and is meant for machine parsing and tidy display in the CLI.",
        ),
        AGE,
        wide(
            "VolumeMode",
            "string",
            "volumeMode defines if a volume is intended to be used with a formatted filesystem or to remain in raw block state.",
        ),
    ]
}

fn pv_row(o: &Value, now: Now) -> Vec<Value> {
    let spec = node(o, &["spec"]);
    let claim = match obj_at(spec, &["claimRef"]) {
        Some(c) => format!("{}/{}", s(c, &["namespace"]), s(c, &["name"])),
        None => String::new(),
    };
    let phase = if deleting(o) {
        "Terminating"
    } else {
        s(o, &["status", "phase"])
    };
    vec![
        name(o),
        Value::from(quantity(spec, &["capacity", "storage"])),
        Value::from(access_modes(list(spec, &["accessModes"]))),
        Value::from(s(spec, &["persistentVolumeReclaimPolicy"])),
        Value::from(phase),
        Value::from(claim),
        Value::from(storage_class_of(o)),
        Value::from(opt_s(spec, &["volumeAttributesClassName"]).unwrap_or("<unset>")),
        Value::from(s(o, &["status", "reason"])),
        age(o, now),
        Value::from(opt_s(spec, &["volumeMode"]).unwrap_or("<unset>")),
    ]
}

fn pvc_columns() -> Vec<Column> {
    vec![
        NAME,
        col(
            "Status",
            "string",
            "phase represents the current phase of PersistentVolumeClaim.",
        ),
        col(
            "Volume",
            "string",
            "volumeName is the binding reference to the PersistentVolume backing this claim.",
        ),
        col(
            "Capacity",
            "string",
            "capacity represents the actual resources of the underlying volume.",
        ),
        col(
            "Access Modes",
            "string",
            "accessModes contains the actual access modes the volume backing the PVC has.",
        ),
        col("StorageClass", "string", "StorageClass of the pvc"),
        col(
            "VolumeAttributesClass",
            "string",
            "VolumeAttributesClass of the pvc",
        ),
        AGE,
        wide(
            "VolumeMode",
            "string",
            "volumeMode defines what type of volume is required by the claim.",
        ),
    ]
}

fn pvc_row(o: &Value, now: Now) -> Vec<Value> {
    let spec = node(o, &["spec"]);
    let phase = if deleting(o) {
        "Terminating"
    } else {
        s(o, &["status", "phase"])
    };
    let volume = s(spec, &["volumeName"]);
    let (capacity, modes) = if volume.is_empty() {
        (String::new(), String::new())
    } else {
        (
            quantity(o, &["status", "capacity", "storage"]),
            access_modes(list(o, &["status", "accessModes"])),
        )
    };
    vec![
        name(o),
        Value::from(phase),
        Value::from(volume),
        Value::from(capacity),
        Value::from(modes),
        Value::from(or_str(storage_class_of(o), "<unset>")),
        Value::from(opt_s(spec, &["volumeAttributesClassName"]).unwrap_or("<unset>")),
        age(o, now),
        Value::from(opt_s(spec, &["volumeMode"]).unwrap_or("<unset>")),
    ]
}

fn resource_quota_columns() -> Vec<Column> {
    vec![
        NAME,
        AGE,
        col(
            "Request",
            "string",
            "Request represents a minimum amount of cpu/memory that a container may consume.",
        ),
        col(
            "Limit",
            "string",
            "Limits control the maximum amount of cpu/memory that a container may use independent of contention on the node.",
        ),
    ]
}

fn resource_quota_row(o: &Value, now: Now) -> Vec<Value> {
    let mut requests: Vec<String> = Vec::new();
    let mut limits: Vec<String> = Vec::new();
    if let Some(hard) = at(o, &["status", "hard"]).and_then(Value::as_object) {
        let mut names: Vec<&String> = hard.keys().collect();
        names.sort();
        for res in names {
            let used = quantity(o, &["status", "used", res]);
            let limit = quantity(o, &["status", "hard", res]);
            let entry = format!("{res}: {used}/{limit}");
            let mut pieces = res.split('.');
            if pieces.next() == Some("limits") && pieces.next().is_some() {
                limits.push(entry);
            } else {
                requests.push(entry);
            }
        }
    }
    vec![
        name(o),
        age(o, now),
        Value::from(requests.join(", ")),
        Value::from(limits.join(", ")),
    ]
}

fn rc_columns() -> Vec<Column> {
    vec![
        NAME,
        col("Desired", "integer", "Number of desired pods."),
        col(
            "Current",
            "integer",
            "The most recently observed number of replicas.",
        ),
        col(
            "Ready",
            "integer",
            "The number of ready replicas for this replication controller.",
        ),
        AGE,
        CONTAINERS,
        IMAGES,
        SELECTOR,
    ]
}

/// Desired replicas with the v1 default of 1 when unset.
fn desired_replicas(o: &Value) -> i64 {
    opt_int(o, &["spec", "replicas"]).unwrap_or(1)
}

fn rc_row(o: &Value, now: Now) -> Vec<Value> {
    let (names, images) = container_cells(list(o, &["spec", "template", "spec", "containers"]));
    vec![
        name(o),
        Value::from(desired_replicas(o)),
        Value::from(int(o, &["status", "replicas"])),
        Value::from(int(o, &["status", "readyReplicas"])),
        age(o, now),
        names,
        images,
        Value::from(format_labels(node(o, &["spec", "selector"]))),
    ]
}

// ---------------------------------------------------------------------------
// apps/v1

fn deployment_columns() -> Vec<Column> {
    vec![
        NAME,
        col("Ready", "string", "Number of the pod with ready state"),
        col(
            "Up-to-date",
            "string",
            "Total number of non-terminated pods targeted by this deployment that have the desired template spec.",
        ),
        col(
            "Available",
            "string",
            "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment.",
        ),
        AGE,
        CONTAINERS,
        IMAGES,
        wide(
            "Selector",
            "string",
            "Label selector for pods. Existing ReplicaSets whose pods are selected by this will be the ones affected by this deployment.",
        ),
    ]
}

fn deployment_row(o: &Value, now: Now) -> Vec<Value> {
    let (names, images) = container_cells(list(o, &["spec", "template", "spec", "containers"]));
    let selector = selector_string(node(o, &["spec", "selector"]))
        .unwrap_or_else(|()| "<invalid>".to_string());
    vec![
        name(o),
        Value::from(format!(
            "{}/{}",
            int(o, &["status", "readyReplicas"]),
            desired_replicas(o)
        )),
        Value::from(int(o, &["status", "updatedReplicas"])),
        Value::from(int(o, &["status", "availableReplicas"])),
        age(o, now),
        names,
        images,
        Value::from(selector),
    ]
}

fn replica_set_columns() -> Vec<Column> {
    vec![
        NAME,
        col(
            "Desired",
            "integer",
            "Replicas is the number of desired pods.",
        ),
        col(
            "Current",
            "integer",
            "Replicas is the most recently observed number of replicas.",
        ),
        col(
            "Ready",
            "integer",
            "The number of ready replicas for this replica set.",
        ),
        AGE,
        CONTAINERS,
        IMAGES,
        wide(
            "Selector",
            "string",
            "Selector is a label query over pods that should match the replica count.",
        ),
    ]
}

fn replica_set_row(o: &Value, now: Now) -> Vec<Value> {
    let (names, images) = container_cells(list(o, &["spec", "template", "spec", "containers"]));
    vec![
        name(o),
        Value::from(desired_replicas(o)),
        Value::from(int(o, &["status", "replicas"])),
        Value::from(int(o, &["status", "readyReplicas"])),
        age(o, now),
        names,
        images,
        Value::from(format_label_selector(node(o, &["spec", "selector"]))),
    ]
}

fn stateful_set_columns() -> Vec<Column> {
    vec![
        NAME,
        col("Ready", "string", "Number of the pod with ready state"),
        AGE,
        CONTAINERS,
        IMAGES,
    ]
}

fn stateful_set_row(o: &Value, now: Now) -> Vec<Value> {
    let (names, images) = container_cells(list(o, &["spec", "template", "spec", "containers"]));
    vec![
        name(o),
        Value::from(format!(
            "{}/{}",
            int(o, &["status", "readyReplicas"]),
            desired_replicas(o)
        )),
        age(o, now),
        names,
        images,
    ]
}

fn daemon_set_columns() -> Vec<Column> {
    vec![
        NAME,
        col(
            "Desired",
            "integer",
            "The total number of nodes that should be running the daemon pod.",
        ),
        col(
            "Current",
            "integer",
            "The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod.",
        ),
        col(
            "Ready",
            "integer",
            "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and ready.",
        ),
        col(
            "Up-to-date",
            "integer",
            "The total number of nodes that are running updated daemon pod",
        ),
        col(
            "Available",
            "integer",
            "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available.",
        ),
        col(
            "Node Selector",
            "string",
            "NodeSelector is a selector which must be true for the pod to fit on a node.",
        ),
        AGE,
        CONTAINERS,
        IMAGES,
        wide(
            "Selector",
            "string",
            "A label query over pods that are managed by the daemon set.",
        ),
    ]
}

fn daemon_set_row(o: &Value, now: Now) -> Vec<Value> {
    let template = node(o, &["spec", "template"]);
    let (names, images) = container_cells(list(template, &["spec", "containers"]));
    vec![
        name(o),
        Value::from(int(o, &["status", "desiredNumberScheduled"])),
        Value::from(int(o, &["status", "currentNumberScheduled"])),
        Value::from(int(o, &["status", "numberReady"])),
        Value::from(int(o, &["status", "updatedNumberScheduled"])),
        Value::from(int(o, &["status", "numberAvailable"])),
        Value::from(format_labels(node(template, &["spec", "nodeSelector"]))),
        age(o, now),
        names,
        images,
        Value::from(format_label_selector(node(o, &["spec", "selector"]))),
    ]
}

fn controller_revision_columns() -> Vec<Column> {
    vec![
        NAME,
        col("Controller", "string", "Controller of the object"),
        col(
            "Revision",
            "string",
            "Revision indicates the revision of the state represented by Data.",
        ),
        AGE,
    ]
}

fn controller_revision_row(o: &Value, now: Now) -> Vec<Value> {
    let controller = list(o, &["metadata", "ownerReferences"])
        .iter()
        .find(|r| opt_bool(r, &["controller"]) == Some(true))
        .map_or_else(
            || "<none>".to_string(),
            |r| {
                let group = s(r, &["apiVersion"])
                    .rsplit_once('/')
                    .map_or("", |(g, _)| g);
                let kind = s(r, &["kind"]);
                let group_kind = if group.is_empty() {
                    kind.to_string()
                } else {
                    format!("{kind}.{group}")
                };
                if group_kind.is_empty() {
                    s(r, &["name"]).to_string()
                } else {
                    format!("{}/{}", group_kind.to_lowercase(), s(r, &["name"]))
                }
            },
        );
    vec![
        name(o),
        Value::from(controller),
        Value::from(int(o, &["revision"])),
        age(o, now),
    ]
}

// ---------------------------------------------------------------------------
// batch/v1

fn job_columns() -> Vec<Column> {
    vec![
        NAME,
        col("Status", "string", "Status of the job."),
        col("Completions", "string", "The completed job."),
        col("Duration", "string", "Job duration."),
        AGE,
        CONTAINERS,
        IMAGES,
        wide(
            "Selector",
            "string",
            "A label query over pods that should match the pod count.",
        ),
    ]
}

fn job_row(o: &Value, now: Now) -> Vec<Value> {
    let spec = node(o, &["spec"]);
    let st = node(o, &["status"]);
    let succeeded = int(st, &["succeeded"]);
    let completions = match opt_int(spec, &["completions"]) {
        Some(c) => format!("{succeeded}/{c}"),
        None => {
            let parallelism = int(spec, &["parallelism"]);
            if parallelism > 1 {
                format!("{succeeded}/1 of {parallelism}")
            } else {
                format!("{succeeded}/1")
            }
        }
    };
    let duration = match (ts(st, &["startTime"]), ts(st, &["completionTime"])) {
        (None, _) => String::new(),
        (Some(start), None) => human_duration(now.signed_duration_since(start)),
        (Some(start), Some(end)) => human_duration(end.signed_duration_since(start)),
    };
    let conditions = list(st, &["conditions"]);
    let status = if condition_true(conditions, "Complete") {
        "Complete"
    } else if condition_true(conditions, "Failed") {
        "Failed"
    } else if deleting(o) {
        "Terminating"
    } else if condition_true(conditions, "Suspended") {
        "Suspended"
    } else if condition_true(conditions, "FailureTarget") {
        "FailureTarget"
    } else if condition_true(conditions, "SuccessCriteriaMet") {
        "SuccessCriteriaMet"
    } else {
        "Running"
    };
    let (names, images) = container_cells(list(spec, &["template", "spec", "containers"]));
    vec![
        name(o),
        Value::from(status),
        Value::from(completions),
        Value::from(duration),
        age(o, now),
        names,
        images,
        Value::from(format_label_selector(node(spec, &["selector"]))),
    ]
}

fn cron_job_columns() -> Vec<Column> {
    vec![
        NAME,
        col(
            "Schedule",
            "string",
            "The schedule in Cron format, see https://en.wikipedia.org/wiki/Cron.",
        ),
        col(
            "Timezone",
            "string",
            "The time zone name for the given schedule.",
        ),
        col(
            "Suspend",
            "boolean",
            "This flag tells the controller to suspend subsequent executions.",
        ),
        col(
            "Active",
            "integer",
            "A list of pointers to currently running jobs.",
        ),
        col(
            "Last Schedule",
            "string",
            "Information when was the last time the job was successfully scheduled.",
        ),
        AGE,
        CONTAINERS,
        IMAGES,
        wide(
            "Selector",
            "string",
            "A label query over pods that should match the pod count.",
        ),
    ]
}

fn cron_job_row(o: &Value, now: Now) -> Vec<Value> {
    let spec = node(o, &["spec"]);
    let last = match at(o, &["status", "lastScheduleTime"]) {
        Some(v) if !v.is_null() => since(parse_time(v), now),
        _ => "<none>".to_string(),
    };
    let suspend = opt_bool(spec, &["suspend"]).map_or("<unset>", bool_word);
    let job_spec = node(spec, &["jobTemplate", "spec"]);
    let (names, images) = container_cells(list(job_spec, &["template", "spec", "containers"]));
    vec![
        name(o),
        Value::from(s(spec, &["schedule"])),
        Value::from(opt_s(spec, &["timeZone"]).unwrap_or("<none>")),
        Value::from(suspend),
        Value::from(list(o, &["status", "active"]).len()),
        Value::from(last),
        age(o, now),
        names,
        images,
        Value::from(format_label_selector(node(job_spec, &["selector"]))),
    ]
}

// ---------------------------------------------------------------------------
// autoscaling/v2

fn hpa_columns() -> Vec<Column> {
    vec![
        NAME,
        col(
            "Reference",
            "string",
            "reference to scaled resource; horizontal pod autoscaler will learn the current resource consumption and will set the desired number of pods by using its Scale subresource.",
        ),
        col(
            "Targets",
            "string",
            "metrics contains the specifications for which to use to calculate the desired replica count.",
        ),
        col(
            "MinPods",
            "string",
            "minReplicas is the lower limit for the number of replicas to which the autoscaler can scale down.",
        ),
        col(
            "MaxPods",
            "string",
            "maxReplicas is the upper limit for the number of replicas to which the autoscaler can scale up.",
        ),
        col(
            "Replicas",
            "string",
            "currentReplicas is current number of replicas of pods managed by this autoscaler.",
        ),
        AGE,
    ]
}

fn quantity_or_unknown(v: Option<&Value>) -> String {
    match v {
        Some(q) if !q.is_null() => scalar_string(q),
        _ => "<unknown>".to_string(),
    }
}

/// One `formatHPAMetrics` entry for Resource/ContainerResource metrics.
fn hpa_resource_metric(source: &Value, current: Option<&Value>) -> String {
    let target = node(source, &["target"]);
    let resource = s(source, &["name"]);
    if let Some(avg) = at(target, &["averageValue"]).filter(|v| !v.is_null()) {
        let cur = quantity_or_unknown(current.and_then(|c| at(c, &["current", "averageValue"])));
        return format!("{resource}: {cur}/{}", scalar_string(avg));
    }
    let cur = current
        .and_then(|c| opt_int(c, &["current", "averageUtilization"]))
        .map_or_else(|| "<unknown>".to_string(), |u| format!("{u}%"));
    let tgt = opt_int(target, &["averageUtilization"])
        .map_or_else(|| "<auto>".to_string(), |u| format!("{u}%"));
    format!("{resource}: {cur}/{tgt}")
}

/// One `formatHPAMetrics` entry for Object/External metrics.
fn hpa_value_metric(source: &Value, current: Option<&Value>) -> String {
    let target = node(source, &["target"]);
    if let Some(avg) = at(target, &["averageValue"]).filter(|v| !v.is_null()) {
        let cur = quantity_or_unknown(current.and_then(|c| at(c, &["current", "averageValue"])));
        return format!("{cur}/{} (avg)", scalar_string(avg));
    }
    let cur = match current {
        Some(c) => quantity(c, &["current", "value"]),
        None => "<unknown>".to_string(),
    };
    format!("{cur}/{}", quantity(target, &["value"]))
}

fn hpa_metrics(specs: &[Value], statuses: &[Value]) -> String {
    const MAX: usize = 2;
    if specs.is_empty() {
        return "<none>".to_string();
    }
    let mut out: Vec<String> = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        let status = statuses.get(i);
        let field = |key: &str| status.and_then(|st| obj_at(st, &[key]));
        let entry = match s(spec, &["type"]) {
            "External" => hpa_value_metric(node(spec, &["external"]), field("external")),
            "Object" => hpa_value_metric(node(spec, &["object"]), field("object")),
            "Pods" => {
                let cur = quantity_or_unknown(
                    field("pods").and_then(|p| at(p, &["current", "averageValue"])),
                );
                format!(
                    "{cur}/{}",
                    quantity(spec, &["pods", "target", "averageValue"])
                )
            }
            "Resource" => hpa_resource_metric(node(spec, &["resource"]), field("resource")),
            "ContainerResource" => hpa_resource_metric(
                node(spec, &["containerResource"]),
                field("containerResource"),
            ),
            _ => "<unknown type>".to_string(),
        };
        out.push(entry);
    }
    let count = out.len();
    if count > MAX {
        out.truncate(MAX);
        return format!("{} + {} more...", out.join(", "), count - MAX);
    }
    out.join(", ")
}

fn hpa_row(o: &Value, now: Now) -> Vec<Value> {
    let spec = node(o, &["spec"]);
    let reference = format!(
        "{}/{}",
        s(spec, &["scaleTargetRef", "kind"]),
        s(spec, &["scaleTargetRef", "name"])
    );
    let min =
        opt_int(spec, &["minReplicas"]).map_or_else(|| "<unset>".to_string(), |m| m.to_string());
    vec![
        name(o),
        Value::from(reference),
        Value::from(hpa_metrics(
            list(spec, &["metrics"]),
            list(o, &["status", "currentMetrics"]),
        )),
        Value::from(min),
        Value::from(int(spec, &["maxReplicas"])),
        Value::from(int(o, &["status", "currentReplicas"])),
        age(o, now),
    ]
}

// ---------------------------------------------------------------------------
// networking.k8s.io, discovery.k8s.io, coordination.k8s.io

fn ingress_columns() -> Vec<Column> {
    vec![
        NAME,
        col(
            "Class",
            "string",
            "The name of the IngressClass resource that should be used for ingress.",
        ),
        col(
            "Hosts",
            "string",
            "Hosts that incoming requests are matched against before the ingress rule",
        ),
        col(
            "Address",
            "string",
            "Address is a list containing ingress points for the load-balancer",
        ),
        col("Ports", "string", "Ports of TLS configurations that open"),
        AGE,
    ]
}

fn ingress_row(o: &Value, now: Now) -> Vec<Value> {
    const MAX: usize = 3;
    let spec = node(o, &["spec"]);
    let rules = list(spec, &["rules"]);
    let mut hosts: Vec<&str> = Vec::new();
    let mut more = false;
    for rule in rules {
        if hosts.len() == MAX {
            more = true;
        }
        let host = s(rule, &["host"]);
        if !more && !host.is_empty() {
            hosts.push(host);
        }
    }
    let hosts = if hosts.is_empty() {
        "*".to_string()
    } else if more {
        format!(
            "{} + {} more...",
            hosts.join(","),
            rules.len().saturating_sub(MAX)
        )
    } else {
        hosts.join(",")
    };
    let ports = if list(spec, &["tls"]).is_empty() {
        "80"
    } else {
        "80, 443"
    };
    vec![
        name(o),
        Value::from(opt_s(spec, &["ingressClassName"]).unwrap_or("<none>")),
        Value::from(hosts),
        Value::from(load_balancer_ingress(node(o, &["status", "loadBalancer"]))),
        Value::from(ports),
        age(o, now),
    ]
}

fn ingress_class_columns() -> Vec<Column> {
    vec![
        NAME,
        col(
            "Controller",
            "string",
            "Controller that is responsible for handling this class",
        ),
        col(
            "Parameters",
            "string",
            "A reference to a resource with additional parameters",
        ),
        AGE,
    ]
}

fn ingress_class_row(o: &Value, now: Now) -> Vec<Value> {
    let parameters = match obj_at(o, &["spec", "parameters"]) {
        Some(p) => {
            let mut text = s(p, &["kind"]).to_string();
            if let Some(group) = opt_s(p, &["apiGroup"]) {
                text = format!("{text}.{group}");
            }
            format!("{text}/{}", s(p, &["name"]))
        }
        None => "<none>".to_string(),
    };
    vec![
        name(o),
        Value::from(s(o, &["spec", "controller"])),
        Value::from(parameters),
        age(o, now),
    ]
}

fn network_policy_columns() -> Vec<Column> {
    vec![
        NAME,
        col(
            "Pod-Selector",
            "string",
            "Selects the pods to which this NetworkPolicy object applies.",
        ),
        AGE,
    ]
}

fn network_policy_row(o: &Value, now: Now) -> Vec<Value> {
    // spec.podSelector is a non-pointer struct upstream: empty selects all ("<none>").
    let sel = match obj_at(o, &["spec", "podSelector"]) {
        Some(v) => v.clone(),
        None => Value::Object(Map::new()),
    };
    vec![
        name(o),
        Value::from(format_label_selector(&sel)),
        age(o, now),
    ]
}

fn endpoint_slice_columns() -> Vec<Column> {
    vec![
        NAME,
        col(
            "AddressType",
            "string",
            "addressType specifies the type of address carried by this EndpointSlice.",
        ),
        col(
            "Ports",
            "string",
            "ports specifies the list of network ports exposed by each endpoint in this slice.",
        ),
        col(
            "Endpoints",
            "string",
            "endpoints is a list of unique endpoints in this slice.",
        ),
        AGE,
    ]
}

fn endpoint_slice_row(o: &Value, now: Now) -> Vec<Value> {
    const MAX: usize = 3;
    let mut ports: Vec<String> = Vec::new();
    let mut more = false;
    let mut count = 0usize;
    for p in list(o, &["ports"]) {
        if ports.len() < MAX {
            let text = match (opt_int(p, &["port"]), opt_s(p, &["name"])) {
                (Some(n), _) => n.to_string(),
                (None, Some(n)) => n.to_string(),
                (None, None) => "*".to_string(),
            };
            ports.push(text);
        } else if ports.len() == MAX {
            more = true;
        }
        count += 1;
    }
    let ports = with_more(&ports, more, count, MAX, "<unset>");

    let mut addrs: Vec<String> = Vec::new();
    let mut more = false;
    let mut count = 0usize;
    for ep in list(o, &["endpoints"]) {
        for a in list(ep, &["addresses"]) {
            if addrs.len() < MAX {
                addrs.push(scalar_string(a));
            } else if addrs.len() == MAX {
                more = true;
            }
            count += 1;
        }
    }
    let addrs = with_more(&addrs, more, count, MAX, "<unset>");
    vec![
        name(o),
        Value::from(s(o, &["addressType"])),
        Value::from(ports),
        Value::from(addrs),
        age(o, now),
    ]
}

fn lease_columns() -> Vec<Column> {
    vec![
        NAME,
        col("Holder", "string", "The holder of the lease"),
        AGE,
    ]
}

fn lease_row(o: &Value, now: Now) -> Vec<Value> {
    vec![
        name(o),
        Value::from(s(o, &["spec", "holderIdentity"])),
        age(o, now),
    ]
}

// ---------------------------------------------------------------------------
// rbac.authorization.k8s.io, storage.k8s.io, policy, scheduling.k8s.io

fn role_binding_columns() -> Vec<Column> {
    vec![
        NAME,
        col(
            "Role",
            "string",
            "RoleRef can reference a Role in the current namespace or a ClusterRole in the global namespace.",
        ),
        AGE,
        wide("Users", "string", "Users in the roleBinding"),
        wide("Groups", "string", "Groups in the roleBinding"),
        wide(
            "ServiceAccounts",
            "string",
            "ServiceAccounts in the roleBinding",
        ),
    ]
}

fn role_binding_row(o: &Value, now: Now) -> Vec<Value> {
    let mut users: Vec<&str> = Vec::new();
    let mut groups: Vec<&str> = Vec::new();
    let mut sas: Vec<String> = Vec::new();
    for subject in list(o, &["subjects"]) {
        match s(subject, &["kind"]) {
            "ServiceAccount" => sas.push(format!(
                "{}/{}",
                s(subject, &["namespace"]),
                s(subject, &["name"])
            )),
            "User" => users.push(s(subject, &["name"])),
            "Group" => groups.push(s(subject, &["name"])),
            _ => {}
        }
    }
    vec![
        name(o),
        Value::from(format!(
            "{}/{}",
            s(o, &["roleRef", "kind"]),
            s(o, &["roleRef", "name"])
        )),
        age(o, now),
        Value::from(users.join(", ")),
        Value::from(groups.join(", ")),
        Value::from(sas.join(", ")),
    ]
}

fn storage_class_columns() -> Vec<Column> {
    vec![
        NAME,
        col(
            "Provisioner",
            "string",
            "provisioner indicates the type of the provisioner.",
        ),
        col(
            "ReclaimPolicy",
            "string",
            "reclaimPolicy controls the reclaimPolicy for dynamically provisioned PersistentVolumes of this storage class.",
        ),
        col(
            "VolumeBindingMode",
            "string",
            "volumeBindingMode indicates how PersistentVolumeClaims should be provisioned and bound.",
        ),
        col(
            "AllowVolumeExpansion",
            "string",
            "allowVolumeExpansion shows whether the storage class allow volume expand.",
        ),
        AGE,
    ]
}

fn storage_class_row(o: &Value, now: Now) -> Vec<Value> {
    let is_default = [
        "storageclass.kubernetes.io/is-default-class",
        "storageclass.beta.kubernetes.io/is-default-class",
    ]
    .iter()
    .any(|a| s(o, &["metadata", "annotations", a]) == "true");
    let mut display = s(o, &["metadata", "name"]).to_string();
    if is_default {
        display.push_str(" (default)");
    }
    vec![
        Value::from(display),
        Value::from(s(o, &["provisioner"])),
        Value::from(opt_s(o, &["reclaimPolicy"]).unwrap_or("Delete")),
        Value::from(opt_s(o, &["volumeBindingMode"]).unwrap_or("Immediate")),
        Value::from(opt_bool(o, &["allowVolumeExpansion"]).unwrap_or(false)),
        age(o, now),
    ]
}

fn pdb_columns() -> Vec<Column> {
    vec![
        NAME,
        col(
            "Min Available",
            "string",
            "The minimum number of pods that must be available.",
        ),
        col(
            "Max Unavailable",
            "string",
            "The maximum number of pods that may be unavailable.",
        ),
        col(
            "Allowed Disruptions",
            "integer",
            "Calculated number of pods that may be disrupted at this time.",
        ),
        AGE,
    ]
}

fn pdb_row(o: &Value, now: Now) -> Vec<Value> {
    let int_or_string = |key: &str| match at(o, &["spec", key]) {
        Some(v) if !v.is_null() => scalar_string(v),
        _ => "N/A".to_string(),
    };
    vec![
        name(o),
        Value::from(int_or_string("minAvailable")),
        Value::from(int_or_string("maxUnavailable")),
        Value::from(int(o, &["status", "disruptionsAllowed"])),
        age(o, now),
    ]
}

fn priority_class_columns() -> Vec<Column> {
    vec![
        NAME,
        col(
            "Value",
            "integer",
            "The integer value of this priority class.",
        ),
        col(
            "Global-Default",
            "boolean",
            "globalDefault specifies whether this PriorityClass should be considered as the default priority.",
        ),
        AGE,
        col(
            "PreemptionPolicy",
            "string",
            "PreemptionPolicy is the Policy for preempting pods with lower priority.",
        ),
    ]
}

fn priority_class_row(o: &Value, now: Now) -> Vec<Value> {
    vec![
        name(o),
        Value::from(int(o, &["value"])),
        Value::from(opt_bool(o, &["globalDefault"]).unwrap_or(false)),
        age(o, now),
        Value::from(opt_s(o, &["preemptionPolicy"]).unwrap_or("PreemptLowerPriority")),
    ]
}

// ---------------------------------------------------------------------------
// Custom resources: additionalPrinterColumns

/// CRD column texts are data, but [`Column`] holds `&'static str`; each distinct
/// text is leaked once and reused, so memory is bounded by the distinct column
/// names and descriptions ever declared, not by the number of requests.
fn intern(text: &str) -> &'static str {
    static POOL: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    let pool = POOL.get_or_init(|| Mutex::new(HashSet::new()));
    let mut set = match pool.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    };
    if let Some(existing) = set.get(text) {
        return existing;
    }
    let leaked: &'static str = Box::leak(text.to_owned().into_boxed_str());
    set.insert(leaked);
    leaked
}

/// The CRD default when no columns are declared (what upstream's defaulting adds).
fn default_crd_printer_columns() -> Value {
    serde_json::json!([{
        "name": "Age",
        "type": "date",
        "jsonPath": ".metadata.creationTimestamp",
    }])
}

fn effective_printer_columns(cols: &Value) -> Vec<Value> {
    match cols.as_array() {
        Some(a) if !a.is_empty() => a.clone(),
        _ => match default_crd_printer_columns() {
            Value::Array(a) => a,
            _ => Vec::new(),
        },
    }
}

fn crd_type(t: &str) -> &'static str {
    match t {
        "integer" => "integer",
        "number" => "number",
        "boolean" => "boolean",
        "date" => "date",
        _ => "string",
    }
}

fn crd_format(f: &str) -> &'static str {
    match f {
        "int32" => "int32",
        "int64" => "int64",
        "float" => "float",
        "double" => "double",
        "byte" => "byte",
        "date" => "date",
        "date-time" => "date-time",
        "password" => "password",
        "name" => "name",
        _ => "",
    }
}

/// Name plus the CRD version's `additionalPrinterColumns` (Name, Age when empty).
pub fn crd_columns(additional_printer_columns: &Value) -> Vec<Column> {
    let mut out = vec![NAME];
    for c in effective_printer_columns(additional_printer_columns) {
        let description = s(&c, &["description"]);
        out.push(Column {
            name: intern(s(&c, &["name"])),
            type_: crd_type(s(&c, &["type"])),
            format: crd_format(s(&c, &["format"])),
            description: if description.is_empty() {
                ""
            } else {
                intern(description)
            },
            priority: opt_int(&c, &["priority"])
                .and_then(|p| i32::try_from(p).ok())
                .unwrap_or(0),
        });
    }
    out
}

/// Cells for a custom resource, in the order of [`crd_columns`]: `null` where
/// the JSONPath finds nothing (kubectl prints `<none>`).
pub fn crd_cells(cols: &Value, obj: &Value, now: Now) -> Vec<Value> {
    let mut out = vec![name(obj)];
    for c in effective_printer_columns(cols) {
        let type_ = s(&c, &["type"]);
        let found = parse_json_path(s(&c, &["jsonPath"]))
            .and_then(|steps| eval_json_path(obj, &steps).into_iter().next());
        out.push(match found {
            None => Value::Null,
            Some(v) if type_ == "string" || type_.is_empty() => json_path_text(v),
            Some(v) => typed_cell(type_, v, now),
        });
    }
    out
}

#[derive(Debug, PartialEq)]
enum Step {
    Field(String),
    Index(i64),
    All,
}

/// Parses the simple JSONPath subset CRDs use: `.a.b`, `.a[0].b`, `.a[*]`,
/// `.a['b.c']`, `.a.b\.c`, optionally wrapped in `{}`. `None` when unsupported.
fn parse_json_path(path: &str) -> Option<Vec<Step>> {
    let path = path.trim();
    let path = path
        .strip_prefix('{')
        .and_then(|p| p.strip_suffix('}'))
        .unwrap_or(path)
        .trim();
    let path = path.strip_prefix('$').unwrap_or(path);
    let chars: Vec<char> = path.chars().collect();
    let mut steps = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '.' => {
                i += 1;
                let mut field = String::new();
                while i < chars.len() && chars[i] != '.' && chars[i] != '[' {
                    if chars[i] == '\\' && i + 1 < chars.len() {
                        i += 1;
                    }
                    field.push(chars[i]);
                    i += 1;
                }
                if !field.is_empty() {
                    steps.push(Step::Field(field));
                }
            }
            '[' => {
                let close = chars[i..].iter().position(|&c| c == ']')? + i;
                let inner: String = chars[i + 1..close].iter().collect();
                let inner = inner.trim();
                if inner == "*" {
                    steps.push(Step::All);
                } else if let Some(quoted) = inner
                    .strip_prefix('\'')
                    .and_then(|q| q.strip_suffix('\''))
                    .or_else(|| inner.strip_prefix('"').and_then(|q| q.strip_suffix('"')))
                {
                    steps.push(Step::Field(quoted.to_string()));
                } else {
                    steps.push(Step::Index(inner.parse().ok()?));
                }
                i = close + 1;
            }
            _ => return None,
        }
    }
    Some(steps)
}

fn eval_json_path<'a>(root: &'a Value, steps: &[Step]) -> Vec<&'a Value> {
    let mut current = vec![root];
    for step in steps {
        let mut next = Vec::new();
        for v in current {
            match step {
                Step::Field(f) => next.extend(v.get(f.as_str())),
                Step::Index(n) => {
                    if let Some(a) = v.as_array() {
                        let len = i64::try_from(a.len()).unwrap_or(i64::MAX);
                        let idx = if *n < 0 { len + n } else { *n };
                        if let Ok(idx) = usize::try_from(idx) {
                            next.extend(a.get(idx));
                        }
                    }
                }
                Step::All => match v {
                    Value::Array(a) => next.extend(a.iter()),
                    Value::Object(m) => next.extend(m.values()),
                    _ => {}
                },
            }
        }
        current = next;
    }
    current
}

/// Go's `json.Marshal` sorts object keys; mirror that for structured cells.
fn sorted_keys(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            Value::Object(
                keys.into_iter()
                    .map(|k| (k.clone(), m.get(k).map_or(Value::Null, sorted_keys)))
                    .collect(),
            )
        }
        Value::Array(a) => Value::Array(a.iter().map(sorted_keys).collect()),
        other => other.clone(),
    }
}

/// JSONPath text output: scalars as text, objects and arrays as compact JSON.
fn json_path_text(v: &Value) -> Value {
    match v {
        Value::Null => Value::Null,
        Value::String(x) => Value::from(x.clone()),
        Value::Number(_) | Value::Bool(_) => Value::from(scalar_string(v)),
        Value::Array(_) | Value::Object(_) => Value::from(sorted_keys(v).to_string()),
    }
}

/// Upstream `cellForJSONValue`.
fn typed_cell(type_: &str, v: &Value, now: Now) -> Value {
    match (type_, v) {
        ("integer", Value::Number(n)) => n
            .as_i64()
            .or_else(|| n.as_f64().map(|f| f as i64))
            .map_or(Value::Null, Value::from),
        ("number", Value::Number(n)) => n.as_f64().map_or(Value::Null, Value::from),
        ("boolean", Value::Bool(b)) => Value::Bool(*b),
        ("date", Value::String(text)) => {
            if text.is_empty() || text == "null" {
                Value::from("<unknown>")
            } else {
                match parse_time(v) {
                    Some(t) => Value::from(human_duration(now.signed_duration_since(t))),
                    None => Value::from("<invalid>"),
                }
            }
        }
        _ => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> Now {
        DateTime::parse_from_rfc3339("2024-05-01T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    /// A timestamp `secs` seconds before [`now`].
    fn ago(secs: i64) -> String {
        (now() - Duration::seconds(secs)).to_rfc3339_opts(SecondsFormat::Secs, true)
    }

    fn meta(name: &str) -> Value {
        json!({"name": name, "namespace": "default", "creationTimestamp": ago(300)})
    }

    fn cell(group: &str, kind: &str, obj: &Value, column: &str) -> Value {
        let cols = columns(group, kind).unwrap();
        let idx = cols.iter().position(|c| c.name == column).unwrap();
        cells(group, kind, obj, now())[idx].clone()
    }

    const ALL_KINDS: &[(&str, &str)] = &[
        ("", "Pod"),
        ("", "PodTemplate"),
        ("", "Node"),
        ("", "Namespace"),
        ("", "Service"),
        ("", "Endpoints"),
        ("", "ConfigMap"),
        ("", "Secret"),
        ("", "ServiceAccount"),
        ("", "Event"),
        ("events.k8s.io", "Event"),
        ("", "PersistentVolume"),
        ("", "PersistentVolumeClaim"),
        ("", "LimitRange"),
        ("", "ResourceQuota"),
        ("", "ReplicationController"),
        ("apps", "Deployment"),
        ("apps", "ReplicaSet"),
        ("apps", "StatefulSet"),
        ("apps", "DaemonSet"),
        ("apps", "ControllerRevision"),
        ("batch", "Job"),
        ("batch", "CronJob"),
        ("autoscaling", "HorizontalPodAutoscaler"),
        ("networking.k8s.io", "Ingress"),
        ("networking.k8s.io", "IngressClass"),
        ("networking.k8s.io", "NetworkPolicy"),
        ("discovery.k8s.io", "EndpointSlice"),
        ("coordination.k8s.io", "Lease"),
        ("rbac.authorization.k8s.io", "Role"),
        ("rbac.authorization.k8s.io", "ClusterRole"),
        ("rbac.authorization.k8s.io", "RoleBinding"),
        ("rbac.authorization.k8s.io", "ClusterRoleBinding"),
        ("storage.k8s.io", "StorageClass"),
        ("policy", "PodDisruptionBudget"),
        ("scheduling.k8s.io", "PriorityClass"),
        ("apiextensions.k8s.io", "CustomResourceDefinition"),
    ];

    #[test]
    fn human_duration_matches_upstream_thresholds() {
        let cases: &[(i64, &str)] = &[
            (-5, "<invalid>"),
            (-2, "<invalid>"),
            (-1, "0s"),
            (0, "0s"),
            (59, "59s"),
            (90, "90s"),
            (119, "119s"),
            (120, "2m"),
            (330, "5m30s"),
            (599, "9m59s"),
            (600, "10m"),
            (179 * 60 + 59, "179m"),
            (3 * 3600, "3h"),
            (3 * 3600 + 30 * 60, "3h30m"),
            (8 * 3600, "8h"),
            (47 * 3600, "47h"),
            (2 * 86400, "2d"),
            (2 * 86400 + 5 * 3600, "2d5h"),
            (8 * 86400, "8d"),
            (400 * 86400, "400d"),
            (2 * 365 * 86400, "2y"),
            (3 * 365 * 86400 + 10 * 86400, "3y10d"),
            (8 * 365 * 86400, "8y"),
            (20 * 365 * 86400 + 100 * 86400, "20y"),
        ];
        for (secs, want) in cases {
            assert_eq!(human_duration(Duration::seconds(*secs)), *want, "{secs}s");
        }
        assert_eq!(human_duration(Duration::milliseconds(-1500)), "0s");
    }

    #[test]
    fn every_printer_has_matching_columns_and_cells_and_survives_junk() {
        let junk = [
            json!(null),
            json!([]),
            json!("x"),
            json!({}),
            json!({"metadata": 5, "spec": [], "status": "x"}),
            json!({"metadata": {"name": 1, "labels": [], "annotations": 7, "creationTimestamp": "garbage",
                    "ownerReferences": [{"controller": true, "apiVersion": 3}], "deletionTimestamp": 1},
                   "spec": {"containers": [1, {"name": []}], "initContainers": "x", "ports": [{"port": "a"}],
                            "selector": {"matchExpressions": [{"operator": "Bogus"}]}, "metrics": [{"type": "Resource"}],
                            "rules": [1, 2, 3, 4, 5], "capacity": {"storage": null}, "replicas": 1e300},
                   "status": {"conditions": [1], "containerStatuses": [{"state": {"waiting": 3, "terminated": {}}, "restartCount": 9.0e18},
                                                    {"restartCount": i64::MAX, "lastState": {"terminated": {"finishedAt": "9999-12-31T23:59:59Z"}}}],
                              "initContainerStatuses": [{"state": {"terminated": {"exitCode": "x"}}}], "hard": {"pods": []}},
                   "subsets": [{"ports": [{}], "addresses": [1]}], "endpoints": [{"addresses": [1]}], "subjects": [3]}),
        ];
        for (group, kind) in ALL_KINDS {
            let cols =
                columns(group, kind).unwrap_or_else(|| panic!("{group}/{kind} has no printer"));
            assert_eq!(
                cols.iter().filter(|c| c.format == "name").count(),
                1,
                "{kind}"
            );
            for obj in &junk {
                assert_eq!(
                    cells(group, kind, obj, now()).len(),
                    cols.len(),
                    "{group}/{kind} {obj}"
                );
            }
        }
        assert!(columns("example.com", "Widget").is_none());
        assert_eq!(
            cells(
                "example.com",
                "Widget",
                &json!({"metadata": meta("w")}),
                now()
            ),
            vec![json!("w"), json!("5m")]
        );
    }

    fn container(name: &str, state: Value, ready: bool, restarts: i64) -> Value {
        json!({"name": name, "state": state, "ready": ready, "restartCount": restarts, "image": "nginx"})
    }

    #[test]
    fn pod_status_reasons() {
        let running = json!({"running": {"startedAt": ago(100)}});
        let cases: Vec<(&str, Value, &str, &str, &str)> = vec![
            (
                "running and ready",
                json!({"metadata": meta("web"), "spec": {"containers": [{"name": "a"}], "nodeName": "n1"},
                       "status": {"phase": "Running", "podIP": "10.42.0.5",
                                  "conditions": [{"type": "Ready", "status": "True"}],
                                  "containerStatuses": [container("a", running.clone(), true, 0)]}}),
                "1/1",
                "Running",
                "0",
            ),
            (
                "pending without statuses",
                json!({"metadata": meta("p"), "spec": {"containers": [{"name": "a"}, {"name": "b"}]},
                       "status": {"phase": "Pending"}}),
                "0/2",
                "Pending",
                "0",
            ),
            (
                "container creating",
                json!({"metadata": meta("p"), "spec": {"containers": [{"name": "a"}]},
                       "status": {"phase": "Pending", "containerStatuses": [
                           container("a", json!({"waiting": {"reason": "ContainerCreating"}}), false, 0)]}}),
                "0/1",
                "ContainerCreating",
                "0",
            ),
            (
                "crash loop with last restart",
                json!({"metadata": meta("crash"), "spec": {"containers": [{"name": "a"}]},
                       "status": {"phase": "Running", "containerStatuses": [{
                           "name": "a", "ready": false, "restartCount": 3,
                           "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off"}},
                           "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": ago(10)}}}]}}),
                "0/1",
                "CrashLoopBackOff",
                "3 (10s ago)",
            ),
            (
                "image pull backoff",
                json!({"metadata": meta("p"), "spec": {"containers": [{"name": "a"}]},
                       "status": {"phase": "Pending", "containerStatuses": [
                           container("a", json!({"waiting": {"reason": "ImagePullBackOff"}}), false, 0)]}}),
                "0/1",
                "ImagePullBackOff",
                "0",
            ),
            (
                "completed job pod",
                json!({"metadata": meta("job-x"), "spec": {"containers": [{"name": "a"}]},
                       "status": {"phase": "Succeeded", "containerStatuses": [
                           container("a", json!({"terminated": {"exitCode": 0, "reason": "Completed"}}), false, 0)]}}),
                "0/1",
                "Completed",
                "0",
            ),
            (
                "failed without reason",
                json!({"metadata": meta("p"), "spec": {"containers": [{"name": "a"}]},
                       "status": {"phase": "Failed", "containerStatuses": [
                           container("a", json!({"terminated": {"exitCode": 137}}), false, 0)]}}),
                "0/1",
                "ExitCode:137",
                "0",
            ),
            (
                "killed by signal",
                json!({"metadata": meta("p"), "spec": {"containers": [{"name": "a"}]},
                       "status": {"phase": "Failed", "containerStatuses": [
                           container("a", json!({"terminated": {"exitCode": 0, "signal": 9}}), false, 0)]}}),
                "0/1",
                "Signal:9",
                "0",
            ),
            (
                "terminating",
                json!({"metadata": {"name": "t", "creationTimestamp": ago(300), "deletionTimestamp": ago(1)},
                       "spec": {"containers": [{"name": "a"}]},
                       "status": {"phase": "Running", "containerStatuses": [container("a", running.clone(), true, 0)]}}),
                "1/1",
                "Terminating",
                "0",
            ),
            (
                "node lost while deleting",
                json!({"metadata": {"name": "t", "creationTimestamp": ago(300), "deletionTimestamp": ago(1)},
                       "spec": {"containers": [{"name": "a"}]},
                       "status": {"phase": "Running", "reason": "NodeLost"}}),
                "0/1",
                "Unknown",
                "0",
            ),
            (
                "deleted but already succeeded",
                json!({"metadata": {"name": "t", "creationTimestamp": ago(300), "deletionTimestamp": ago(1)},
                       "spec": {"containers": [{"name": "a"}]}, "status": {"phase": "Succeeded"}}),
                "0/1",
                "Succeeded",
                "0",
            ),
            (
                "init waiting",
                json!({"metadata": meta("p"), "spec": {"initContainers": [{"name": "i"}], "containers": [{"name": "a"}]},
                       "status": {"phase": "Pending",
                                  "initContainerStatuses": [container("i", json!({"running": {}}), false, 0)],
                                  "containerStatuses": [container("a", json!({"waiting": {"reason": "PodInitializing"}}), false, 0)]}}),
                "0/1",
                "Init:0/1",
                "0",
            ),
            (
                "init failed",
                json!({"metadata": meta("p"), "spec": {"initContainers": [{"name": "i"}], "containers": [{"name": "a"}]},
                       "status": {"phase": "Pending",
                                  "initContainerStatuses": [container("i", json!({"terminated": {"exitCode": 1, "reason": "Error"}}), false, 2)]}}),
                "0/1",
                "Init:Error",
                "2",
            ),
            (
                "init crash loop",
                json!({"metadata": meta("p"), "spec": {"initContainers": [{"name": "i"}], "containers": [{"name": "a"}]},
                       "status": {"phase": "Pending",
                                  "initContainerStatuses": [container("i", json!({"waiting": {"reason": "CrashLoopBackOff"}}), false, 4)]}}),
                "0/1",
                "Init:CrashLoopBackOff",
                "4",
            ),
            (
                "pod initializing after init",
                json!({"metadata": meta("p"), "spec": {"initContainers": [{"name": "i"}], "containers": [{"name": "a"}]},
                       "status": {"phase": "Pending",
                                  "conditions": [{"type": "Initialized", "status": "True"}],
                                  "initContainerStatuses": [container("i", json!({"terminated": {"exitCode": 0, "reason": "Completed"}}), false, 0)],
                                  "containerStatuses": [container("a", json!({"waiting": {"reason": "PodInitializing"}}), false, 0)]}}),
                "0/1",
                "PodInitializing",
                "0",
            ),
            (
                "sidecar counts as a container",
                json!({"metadata": meta("p"), "spec": {"initContainers": [{"name": "side", "restartPolicy": "Always"}], "containers": [{"name": "a"}]},
                       "status": {"phase": "Running",
                                  "conditions": [{"type": "Initialized", "status": "True"}, {"type": "Ready", "status": "True"}],
                                  "initContainerStatuses": [{"name": "side", "started": true, "ready": true, "restartCount": 1,
                                                             "state": {"running": {}}}],
                                  "containerStatuses": [container("a", running.clone(), true, 0)]}}),
                "2/2",
                "Running",
                "1",
            ),
            (
                "completed with one still running is NotReady",
                json!({"metadata": meta("p"), "spec": {"containers": [{"name": "a"}, {"name": "b"}]},
                       "status": {"phase": "Running",
                                  "containerStatuses": [container("a", json!({"terminated": {"exitCode": 0, "reason": "Completed"}}), false, 0),
                                                        container("b", running.clone(), true, 0)]}}),
                "1/2",
                "NotReady",
                "0",
            ),
            (
                "scheduling gated",
                json!({"metadata": meta("p"), "spec": {"containers": [{"name": "a"}], "schedulingGates": [{"name": "g"}]},
                       "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]}}),
                "0/1",
                "SchedulingGated",
                "0",
            ),
            (
                "evicted",
                json!({"metadata": meta("p"), "spec": {"containers": [{"name": "a"}]},
                       "status": {"phase": "Failed", "reason": "Evicted"}}),
                "0/1",
                "Evicted",
                "0",
            ),
        ];
        for (label, pod, ready, status, restarts) in cases {
            let row = cells("", "Pod", &pod, now());
            assert_eq!(row[1], json!(ready), "{label} ready");
            assert_eq!(row[2], json!(status), "{label} status");
            assert_eq!(row[3], json!(restarts), "{label} restarts");
            assert_eq!(row[4], json!("5m"), "{label} age");
        }
    }

    #[test]
    fn pod_wide_cells() {
        let pod = json!({"metadata": meta("web"),
            "spec": {"containers": [{"name": "a"}], "nodeName": "n1", "readinessGates": [{"conditionType": "x/y"}, {"conditionType": "z"}]},
            "status": {"phase": "Running", "podIPs": [{"ip": "10.42.0.7"}, {"ip": "fd00::7"}],
                       "conditions": [{"type": "x/y", "status": "True"}, {"type": "z", "status": "False"}]}});
        let row = cells("", "Pod", &pod, now());
        assert_eq!(row[0], json!("web"));
        assert_eq!(
            &row[5..],
            &[
                json!("10.42.0.7"),
                json!("n1"),
                json!("<none>"),
                json!("1/2")
            ]
        );
        let bare = cells("", "Pod", &json!({"metadata": {"name": "x"}}), now());
        assert_eq!(
            &bare[4..],
            &[
                json!("<unknown>"),
                json!("<none>"),
                json!("<none>"),
                json!("<none>"),
                json!("<none>")
            ]
        );
    }

    #[test]
    fn node_rows() {
        let node = json!({
            "metadata": {"name": "server-1", "creationTimestamp": ago(2 * 86400),
                         "labels": {"node-role.kubernetes.io/master": "true", "node-role.kubernetes.io/control-plane": "true", "kubernetes.io/hostname": "server-1"}},
            "spec": {"unschedulable": true},
            "status": {"conditions": [{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": "True"}],
                       "addresses": [{"type": "InternalIP", "address": "192.168.1.10"}, {"type": "Hostname", "address": "server-1"}],
                       "nodeInfo": {"kubeletVersion": "v1.33.1+skiff", "osImage": "Ubuntu 24.04 LTS", "kernelVersion": "6.8.0", "containerRuntimeVersion": "containerd://2.0.5"}}});
        let row = cells("", "Node", &node, now());
        assert_eq!(
            row,
            vec![
                json!("server-1"),
                json!("Ready,SchedulingDisabled"),
                json!("control-plane,master"),
                json!("2d"),
                json!("v1.33.1+skiff"),
                json!("192.168.1.10"),
                json!("<none>"),
                json!("Ubuntu 24.04 LTS"),
                json!("6.8.0"),
                json!("containerd://2.0.5"),
            ]
        );
        let not_ready = json!({"metadata": {"name": "a", "labels": {"kubernetes.io/role": "worker"}},
                               "status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}});
        assert_eq!(cell("", "Node", &not_ready, "Status"), json!("NotReady"));
        assert_eq!(cell("", "Node", &not_ready, "Roles"), json!("worker"));
        let fresh = json!({"metadata": {"name": "b"}});
        assert_eq!(cell("", "Node", &fresh, "Status"), json!("Unknown"));
        assert_eq!(cell("", "Node", &fresh, "Roles"), json!("<none>"));
        assert_eq!(cell("", "Node", &fresh, "OS-Image"), json!("<unknown>"));
    }

    #[test]
    fn namespace_configmap_secret_serviceaccount() {
        let ns = json!({"metadata": meta("kube-system"), "status": {"phase": "Active"}});
        assert_eq!(
            cells("", "Namespace", &ns, now()),
            vec![json!("kube-system"), json!("Active"), json!("5m")]
        );
        let cm = json!({"metadata": meta("cfg"), "data": {"a": "1", "b": "2"}, "binaryData": {"c": "AA=="}});
        assert_eq!(
            cells("", "ConfigMap", &cm, now()),
            vec![json!("cfg"), json!(3), json!("5m")]
        );
        let secret = json!({"metadata": meta("tls"), "type": "kubernetes.io/tls", "data": {"tls.crt": "", "tls.key": ""}});
        assert_eq!(
            cells("", "Secret", &secret, now()),
            vec![
                json!("tls"),
                json!("kubernetes.io/tls"),
                json!(2),
                json!("5m")
            ]
        );
        let sa = json!({"metadata": meta("default")});
        assert_eq!(
            cells("", "ServiceAccount", &sa, now()),
            vec![json!("default"), json!(0), json!("5m")]
        );
    }

    #[test]
    fn service_rows() {
        let node_port = json!({"metadata": meta("web"),
            "spec": {"type": "NodePort", "clusterIP": "10.43.0.12", "clusterIPs": ["10.43.0.12"],
                     "ports": [{"port": 80, "protocol": "TCP", "nodePort": 30080}, {"port": 443, "protocol": "TCP", "nodePort": 30443}],
                     "selector": {"tier": "front", "app": "web"}}});
        assert_eq!(
            cells("", "Service", &node_port, now()),
            vec![
                json!("web"),
                json!("NodePort"),
                json!("10.43.0.12"),
                json!("<none>"),
                json!("80:30080/TCP,443:30443/TCP"),
                json!("5m"),
                json!("app=web,tier=front"),
            ]
        );
        let pending = json!({"metadata": meta("lb"), "spec": {"type": "LoadBalancer", "clusterIPs": ["10.43.0.9"], "ports": [{"port": 53, "protocol": "UDP"}]}});
        assert_eq!(
            cell("", "Service", &pending, "External-IP"),
            json!("<pending>")
        );
        assert_eq!(cell("", "Service", &pending, "Port(s)"), json!("53/UDP"));
        assert_eq!(cell("", "Service", &pending, "Selector"), json!("<none>"));
        let lb = json!({"metadata": meta("lb"), "spec": {"type": "LoadBalancer", "externalIPs": ["1.2.3.4"]},
                        "status": {"loadBalancer": {"ingress": [{"ip": "192.168.1.11"}, {"ip": "192.168.1.10"}, {"hostname": "lb.example"}]}}});
        assert_eq!(
            cell("", "Service", &lb, "External-IP"),
            json!("192.168.1.10,192.168.1.11,lb.example,1.2.3.4")
        );
        assert_eq!(cell("", "Service", &lb, "Cluster-IP"), json!("<none>"));
        assert_eq!(cell("", "Service", &lb, "Port(s)"), json!("<none>"));
        let headless = json!({"metadata": meta("db"), "spec": {"type": "ClusterIP", "clusterIP": "None", "clusterIPs": ["None"], "ports": [{"port": 5432, "protocol": "TCP"}]}});
        assert_eq!(cell("", "Service", &headless, "Cluster-IP"), json!("None"));
        let ext = json!({"metadata": meta("ext"), "spec": {"type": "ExternalName", "externalName": "example.com"}});
        assert_eq!(
            cell("", "Service", &ext, "External-IP"),
            json!("example.com")
        );
    }

    #[test]
    fn endpoints_and_slices() {
        let ep = json!({"metadata": meta("web"), "subsets": [{
            "addresses": [{"ip": "10.42.0.1"}, {"ip": "10.42.0.2"}, {"ip": "10.42.1.3"}, {"ip": "10.42.1.4"}],
            "ports": [{"port": 80}, {"port": 443}]}]});
        assert_eq!(
            cell("", "Endpoints", &ep, "Endpoints"),
            json!("10.42.0.1:80,10.42.0.2:80,10.42.1.3:80 + 5 more...")
        );
        let two = json!({"metadata": meta("web"), "subsets": [{"addresses": [{"ip": "10.0.0.1"}, {"ip": "fd00::1"}], "ports": [{"port": 80}]}]});
        assert_eq!(
            cell("", "Endpoints", &two, "Endpoints"),
            json!("10.0.0.1:80,[fd00::1]:80")
        );
        assert_eq!(
            cell(
                "",
                "Endpoints",
                &json!({"metadata": meta("x")}),
                "Endpoints"
            ),
            json!("<none>")
        );
        let slice = json!({"metadata": meta("web-abc"), "addressType": "IPv4",
            "ports": [{"name": "http", "port": 80}, {"name": "x"}],
            "endpoints": [{"addresses": ["10.42.0.1"]}, {"addresses": ["10.42.0.2"]}, {"addresses": ["10.42.0.3"]}, {"addresses": ["10.42.0.4"]}]});
        assert_eq!(
            cells("discovery.k8s.io", "EndpointSlice", &slice, now()),
            vec![
                json!("web-abc"),
                json!("IPv4"),
                json!("80,x"),
                json!("10.42.0.1,10.42.0.2,10.42.0.3 + 1 more..."),
                json!("5m")
            ]
        );
        let empty = json!({"metadata": meta("e"), "addressType": "IPv4"});
        assert_eq!(
            cell("discovery.k8s.io", "EndpointSlice", &empty, "Endpoints"),
            json!("<unset>")
        );
    }

    #[test]
    fn deployment_replicaset_statefulset_daemonset() {
        let template = json!({"spec": {"containers": [{"name": "web", "image": "nginx:1.27"}, {"name": "log", "image": "busybox"}]}});
        let dep = json!({"metadata": meta("web"),
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}, "template": template},
            "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}});
        assert_eq!(
            cells("apps", "Deployment", &dep, now()),
            vec![
                json!("web"),
                json!("2/3"),
                json!(3),
                json!(2),
                json!("5m"),
                json!("web,log"),
                json!("nginx:1.27,busybox"),
                json!("app=web")
            ]
        );
        let rs = json!({"metadata": meta("web-5d4f"),
            "spec": {"replicas": 2, "template": template,
                     "selector": {"matchLabels": {"pod-template-hash": "5d4f", "app": "web"},
                                  "matchExpressions": [{"key": "env", "operator": "In", "values": ["prod", "dev"]}, {"key": "canary", "operator": "DoesNotExist"}]}},
            "status": {"replicas": 2, "readyReplicas": 1}});
        assert_eq!(
            cells("apps", "ReplicaSet", &rs, now()),
            vec![
                json!("web-5d4f"),
                json!(2),
                json!(2),
                json!(1),
                json!("5m"),
                json!("web,log"),
                json!("nginx:1.27,busybox"),
                json!("app=web,!canary,env in (dev,prod),pod-template-hash=5d4f"),
            ]
        );
        let sts = json!({"metadata": meta("db"), "spec": {"template": template}, "status": {"readyReplicas": 1}});
        assert_eq!(cell("apps", "StatefulSet", &sts, "Ready"), json!("1/1"));
        let ds = json!({"metadata": meta("svclb"),
            "spec": {"selector": {"matchLabels": {"app": "svclb"}}, "template": {"spec": {"nodeSelector": {"kubernetes.io/os": "linux"}, "containers": []}}},
            "status": {"desiredNumberScheduled": 2, "currentNumberScheduled": 2, "numberReady": 1, "updatedNumberScheduled": 2, "numberAvailable": 1}});
        assert_eq!(
            cells("apps", "DaemonSet", &ds, now()),
            vec![
                json!("svclb"),
                json!(2),
                json!(2),
                json!(1),
                json!(2),
                json!(1),
                json!("kubernetes.io/os=linux"),
                json!("5m"),
                json!(""),
                json!(""),
                json!("app=svclb")
            ]
        );
        let cr = json!({"metadata": {"name": "web-6c9", "creationTimestamp": ago(60),
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web", "controller": true}]}, "revision": 2});
        assert_eq!(
            cells("apps", "ControllerRevision", &cr, now()),
            vec![
                json!("web-6c9"),
                json!("statefulset.apps/web"),
                json!(2),
                json!("60s")
            ]
        );
        let rc = json!({"metadata": meta("old"), "spec": {"selector": {"app": "old"}}});
        assert_eq!(
            cell("", "ReplicationController", &rc, "Selector"),
            json!("app=old")
        );
        assert_eq!(cell("", "ReplicationController", &rc, "Desired"), json!(1));
    }

    #[test]
    fn jobs_and_cronjobs() {
        let done = json!({"metadata": meta("pi"),
            "spec": {"completions": 1, "parallelism": 1, "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "u1"}},
                     "template": {"spec": {"containers": [{"name": "pi", "image": "perl"}]}}},
            "status": {"succeeded": 1, "startTime": ago(200), "completionTime": ago(150),
                       "conditions": [{"type": "SuccessCriteriaMet", "status": "True"}, {"type": "Complete", "status": "True"}]}});
        assert_eq!(
            cells("batch", "Job", &done, now()),
            vec![
                json!("pi"),
                json!("Complete"),
                json!("1/1"),
                json!("50s"),
                json!("5m"),
                json!("pi"),
                json!("perl"),
                json!("batch.kubernetes.io/controller-uid=u1")
            ]
        );
        let running = json!({"metadata": meta("work"), "spec": {"parallelism": 3}, "status": {"succeeded": 1, "startTime": ago(30)}});
        assert_eq!(cell("batch", "Job", &running, "Status"), json!("Running"));
        assert_eq!(
            cell("batch", "Job", &running, "Completions"),
            json!("1/1 of 3")
        );
        assert_eq!(cell("batch", "Job", &running, "Duration"), json!("30s"));
        let failed = json!({"metadata": meta("f"), "status": {"conditions": [{"type": "FailureTarget", "status": "True"}, {"type": "Failed", "status": "True"}]}});
        assert_eq!(cell("batch", "Job", &failed, "Status"), json!("Failed"));
        let suspended = json!({"metadata": meta("s"), "spec": {"completions": 5}, "status": {"conditions": [{"type": "Suspended", "status": "True"}]}});
        assert_eq!(
            cell("batch", "Job", &suspended, "Status"),
            json!("Suspended")
        );
        assert_eq!(
            cell("batch", "Job", &suspended, "Completions"),
            json!("0/5")
        );
        assert_eq!(cell("batch", "Job", &suspended, "Duration"), json!(""));

        let cj = json!({"metadata": meta("hello"),
            "spec": {"schedule": "*/5 * * * *", "suspend": false, "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}},
            "status": {"active": [{"name": "hello-1"}], "lastScheduleTime": ago(120)}});
        assert_eq!(
            cells("batch", "CronJob", &cj, now()),
            vec![
                json!("hello"),
                json!("*/5 * * * *"),
                json!("<none>"),
                json!("False"),
                json!(1),
                json!("2m"),
                json!("5m"),
                json!("c"),
                json!("busybox"),
                json!("<none>")
            ]
        );
        let never = json!({"metadata": meta("n"), "spec": {"timeZone": "Etc/UTC"}});
        assert_eq!(
            cell("batch", "CronJob", &never, "Last Schedule"),
            json!("<none>")
        );
        assert_eq!(
            cell("batch", "CronJob", &never, "Suspend"),
            json!("<unset>")
        );
        assert_eq!(
            cell("batch", "CronJob", &never, "Timezone"),
            json!("Etc/UTC")
        );
    }

    #[test]
    fn events_core_and_events_k8s_io() {
        let ev = json!({"metadata": meta("web.17a"), "type": "Warning", "reason": "BackOff",
            "involvedObject": {"kind": "Pod", "name": "web", "fieldPath": "spec.containers{web}"},
            "message": " Back-off restarting failed container \n", "source": {"component": "kubelet", "host": "n1"},
            "firstTimestamp": ago(600), "lastTimestamp": ago(20), "count": 7});
        assert_eq!(
            cells("", "Event", &ev, now()),
            vec![
                json!("20s"),
                json!("Warning"),
                json!("BackOff"),
                json!("pod/web"),
                json!("spec.containers{web}"),
                json!("kubelet, n1"),
                json!("Back-off restarting failed container"),
                json!("10m"),
                json!(7),
                json!("web.17a"),
            ]
        );
        let new_style = json!({"metadata": meta("x.1"), "type": "Normal", "reason": "Scheduled",
            "involvedObject": {"kind": "Pod", "name": "x"}, "message": "assigned",
            "eventTime": "2024-05-01T11:59:00.123456Z", "reportingComponent": "default-scheduler", "reportingInstance": ""});
        let row = cells("", "Event", &new_style, now());
        // 59.88s: truncated like Go's int(d.Seconds())
        assert_eq!(row[0], json!("59s"));
        assert_eq!(row[5], json!("default-scheduler"));
        assert_eq!(row[7], json!("59s"));
        assert_eq!(row[8], json!(1));

        let v1 = json!({"metadata": meta("y.2"), "type": "Normal", "reason": "ScalingReplicaSet",
            "regarding": {"kind": "Deployment", "name": "web"}, "note": "Scaled up",
            "eventTime": ago(90), "series": {"count": 4, "lastObservedTime": ago(5)},
            "reportingController": "deployment-controller", "reportingInstance": "server-1"});
        assert_eq!(
            cells("events.k8s.io", "Event", &v1, now()),
            vec![
                json!("5s"),
                json!("Normal"),
                json!("ScalingReplicaSet"),
                json!("deployment/web"),
                json!(""),
                json!("deployment-controller, server-1"),
                json!("Scaled up"),
                json!("90s"),
                json!(4),
                json!("y.2"),
            ]
        );
    }

    #[test]
    fn volumes_and_storage_classes() {
        let pv = json!({"metadata": meta("pvc-123"),
            "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteMany", "ReadWriteOnce"], "persistentVolumeReclaimPolicy": "Delete",
                     "claimRef": {"namespace": "default", "name": "data"}, "storageClassName": "local-path", "volumeMode": "Filesystem"},
            "status": {"phase": "Bound"}});
        assert_eq!(
            cells("", "PersistentVolume", &pv, now()),
            vec![
                json!("pvc-123"),
                json!("1Gi"),
                json!("RWO,RWX"),
                json!("Delete"),
                json!("Bound"),
                json!("default/data"),
                json!("local-path"),
                json!("<unset>"),
                json!(""),
                json!("5m"),
                json!("Filesystem")
            ]
        );
        let pending = json!({"metadata": meta("data"), "spec": {"resources": {"requests": {"storage": "2Gi"}}, "storageClassName": "local-path"}, "status": {"phase": "Pending"}});
        assert_eq!(
            cells("", "PersistentVolumeClaim", &pending, now()),
            vec![
                json!("data"),
                json!("Pending"),
                json!(""),
                json!(""),
                json!(""),
                json!("local-path"),
                json!("<unset>"),
                json!("5m"),
                json!("<unset>")
            ]
        );
        let bound = json!({"metadata": meta("data"), "spec": {"volumeName": "pvc-123"}, "status": {"phase": "Bound", "capacity": {"storage": "2Gi"}, "accessModes": ["ReadWriteOncePod"]}});
        assert_eq!(
            cell("", "PersistentVolumeClaim", &bound, "Capacity"),
            json!("2Gi")
        );
        assert_eq!(
            cell("", "PersistentVolumeClaim", &bound, "Access Modes"),
            json!("RWOP")
        );
        assert_eq!(
            cell("", "PersistentVolumeClaim", &bound, "StorageClass"),
            json!("<unset>")
        );

        let sc = json!({"metadata": {"name": "local-path", "creationTimestamp": ago(3 * 86400),
                                     "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
                        "provisioner": "rancher.io/local-path", "volumeBindingMode": "WaitForFirstConsumer"});
        assert_eq!(
            cells("storage.k8s.io", "StorageClass", &sc, now()),
            vec![
                json!("local-path (default)"),
                json!("rancher.io/local-path"),
                json!("Delete"),
                json!("WaitForFirstConsumer"),
                json!(false),
                json!("3d")
            ]
        );
    }

    #[test]
    fn misc_kinds() {
        let rq = json!({"metadata": meta("quota"), "status": {
            "hard": {"requests.cpu": "2", "pods": "10", "limits.memory": "4Gi", "limits.cpu": "4"},
            "used": {"requests.cpu": "500m", "pods": "3", "limits.cpu": "1"}}});
        assert_eq!(
            cells("", "ResourceQuota", &rq, now()),
            vec![
                json!("quota"),
                json!("5m"),
                json!("pods: 3/10, requests.cpu: 500m/2"),
                json!("limits.cpu: 1/4, limits.memory: 0/4Gi")
            ]
        );
        let role =
            json!({"metadata": {"name": "view", "creationTimestamp": "2024-04-01T10:00:00Z"}});
        assert_eq!(
            cells("rbac.authorization.k8s.io", "ClusterRole", &role, now()),
            vec![json!("view"), json!("2024-04-01T10:00:00Z")]
        );
        assert_eq!(columns("", "LimitRange").unwrap()[1].type_, "date");
        let rb = json!({"metadata": meta("rb"), "roleRef": {"kind": "ClusterRole", "name": "view"},
            "subjects": [{"kind": "User", "name": "alice"}, {"kind": "Group", "name": "devs"}, {"kind": "User", "name": "bob"},
                         {"kind": "ServiceAccount", "namespace": "ci", "name": "runner"}]});
        assert_eq!(
            cells("rbac.authorization.k8s.io", "RoleBinding", &rb, now()),
            vec![
                json!("rb"),
                json!("ClusterRole/view"),
                json!("5m"),
                json!("alice, bob"),
                json!("devs"),
                json!("ci/runner")
            ]
        );
        let hpa = json!({"metadata": meta("web"),
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "minReplicas": 1, "maxReplicas": 5,
                     "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}},
                                 {"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "100Mi"}}},
                                 {"type": "Pods", "pods": {"metric": {"name": "qps"}, "target": {"type": "AverageValue", "averageValue": "10"}}}]},
            "status": {"currentReplicas": 2, "currentMetrics": [{"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 10, "averageValue": "50m"}}}]}});
        assert_eq!(
            cells("autoscaling", "HorizontalPodAutoscaler", &hpa, now()),
            vec![
                json!("web"),
                json!("Deployment/web"),
                json!("cpu: 10%/50%, memory: <unknown>/100Mi + 1 more..."),
                json!("1"),
                json!(5),
                json!(2),
                json!("5m")
            ]
        );
        let ing = json!({"metadata": meta("web"), "spec": {"ingressClassName": "traefik", "tls": [{"hosts": ["a.example"]}],
            "rules": [{"host": "a.example"}, {"host": "b.example"}, {}, {"host": "c.example"}, {"host": "d.example"}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "192.168.1.10"}]}}});
        assert_eq!(
            cells("networking.k8s.io", "Ingress", &ing, now()),
            vec![
                json!("web"),
                json!("traefik"),
                json!("a.example,b.example,c.example + 2 more..."),
                json!("192.168.1.10"),
                json!("80, 443"),
                json!("5m")
            ]
        );
        let no_rules = json!({"metadata": meta("x"), "spec": {}});
        assert_eq!(
            cell("networking.k8s.io", "Ingress", &no_rules, "Hosts"),
            json!("*")
        );
        assert_eq!(
            cell("networking.k8s.io", "Ingress", &no_rules, "Class"),
            json!("<none>")
        );
        let ic = json!({"metadata": meta("traefik"), "spec": {"controller": "traefik.io/ingress-controller",
            "parameters": {"apiGroup": "k8s.example.com", "kind": "IngressParameters", "name": "p"}}});
        assert_eq!(
            cell("networking.k8s.io", "IngressClass", &ic, "Parameters"),
            json!("IngressParameters.k8s.example.com/p")
        );
        let np = json!({"metadata": meta("deny"), "spec": {"podSelector": {}}});
        assert_eq!(
            cell("networking.k8s.io", "NetworkPolicy", &np, "Pod-Selector"),
            json!("<none>")
        );
        let lease =
            json!({"metadata": meta("kube-scheduler"), "spec": {"holderIdentity": "server-1_abc"}});
        assert_eq!(
            cell("coordination.k8s.io", "Lease", &lease, "Holder"),
            json!("server-1_abc")
        );
        let pdb = json!({"metadata": meta("web"), "spec": {"minAvailable": "50%"}, "status": {"disruptionsAllowed": 1}});
        assert_eq!(
            cells("policy", "PodDisruptionBudget", &pdb, now()),
            vec![
                json!("web"),
                json!("50%"),
                json!("N/A"),
                json!(1),
                json!("5m")
            ]
        );
        let pc = json!({"metadata": meta("system-node-critical"), "value": 2000001000, "preemptionPolicy": "PreemptLowerPriority"});
        assert_eq!(
            cells("scheduling.k8s.io", "PriorityClass", &pc, now()),
            vec![
                json!("system-node-critical"),
                json!(2000001000),
                json!(false),
                json!("5m"),
                json!("PreemptLowerPriority")
            ]
        );
        let pt = json!({"metadata": meta("t"), "template": {"metadata": {"labels": {"app": "x"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}});
        assert_eq!(
            cells("", "PodTemplate", &pt, now()),
            vec![json!("t"), json!("c"), json!("i"), json!("app=x")]
        );
        let crd = json!({"metadata": {"name": "widgets.example.com", "creationTimestamp": "2024-04-30T01:02:03.5Z"}});
        assert_eq!(
            cells(
                "apiextensions.k8s.io",
                "CustomResourceDefinition",
                &crd,
                now()
            ),
            vec![json!("widgets.example.com"), json!("2024-04-30T01:02:03Z")]
        );
    }

    #[test]
    fn wide_columns_have_priority_one() {
        let pod = columns("", "Pod").unwrap();
        let wide_names: Vec<&str> = pod
            .iter()
            .filter(|c| c.priority == 1)
            .map(|c| c.name)
            .collect();
        assert_eq!(
            wide_names,
            ["IP", "Node", "Nominated Node", "Readiness Gates"]
        );
        let ev = columns("", "Event").unwrap();
        let shown: Vec<&str> = ev
            .iter()
            .filter(|c| c.priority == 0)
            .map(|c| c.name)
            .collect();
        assert_eq!(shown, ["Last Seen", "Type", "Reason", "Object", "Message"]);
    }

    #[test]
    fn crd_default_columns_are_name_and_age() {
        let cols = crd_columns(&json!([]));
        let names: Vec<&str> = cols.iter().map(|c| c.name).collect();
        assert_eq!(names, ["Name", "Age"]);
        assert_eq!(cols[0].format, "name");
        assert_eq!(cols[1].type_, "date");
        let obj = json!({"metadata": {"name": "w1", "creationTimestamp": ago(3 * 3600)}});
        assert_eq!(
            crd_cells(&json!([]), &obj, now()),
            vec![json!("w1"), json!("3h")]
        );
        assert_eq!(
            crd_cells(&json!(null), &json!({"metadata": {"name": "w2"}}), now()),
            vec![json!("w2"), Value::Null]
        );
        assert_eq!(crd_columns(&json!("junk")).len(), 2);
    }

    #[test]
    fn crd_declared_columns() {
        let pc = json!([
            {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas", "description": "desired replicas"},
            {"name": "Ratio", "type": "number", "jsonPath": ".status.ratio"},
            {"name": "Ready", "type": "boolean", "jsonPath": ".status.ready", "priority": 1},
            {"name": "Phase", "type": "string", "jsonPath": ".status.conditions[0].type"},
            {"name": "Last", "type": "string", "jsonPath": ".status.conditions[-1].type"},
            {"name": "App", "type": "string", "jsonPath": ".metadata.labels.app"},
            {"name": "Dotted", "type": "string", "jsonPath": ".metadata.annotations['example.com/owner']"},
            {"name": "Escaped", "type": "string", "jsonPath": ".metadata.annotations.example\\.com/owner"},
            {"name": "Spec", "type": "string", "jsonPath": ".spec.nested"},
            {"name": "Count", "type": "string", "jsonPath": ".spec.replicas"},
            {"name": "Missing", "type": "string", "jsonPath": ".status.nothing"},
            {"name": "Started", "type": "date", "jsonPath": ".status.startedAt"},
            {"name": "Bad", "type": "date", "jsonPath": ".status.bad"},
            {"name": "WrongType", "type": "integer", "jsonPath": ".metadata.name"},
            {"name": "AllHosts", "type": "string", "jsonPath": ".spec.hosts[*]"},
            {"name": "Unparsable", "type": "string", "jsonPath": "spec..x[?(@.a)]"}
        ]);
        let cols = crd_columns(&pc);
        assert_eq!(cols.len(), 17);
        assert_eq!(
            cols[1],
            Column {
                name: "Replicas",
                type_: "integer",
                format: "",
                description: "desired replicas",
                priority: 0
            }
        );
        assert_eq!(cols[3].priority, 1);
        let obj = json!({
            "metadata": {"name": "w", "labels": {"app": "shop"}, "annotations": {"example.com/owner": "team-a"}},
            "spec": {"replicas": 3, "nested": {"b": 1, "a": [true]}, "hosts": ["x.example", "y.example"]},
            "status": {"ratio": 0.5, "ready": true, "conditions": [{"type": "Ready"}, {"type": "Synced"}],
                       "startedAt": ago(90), "bad": "yesterday"}});
        assert_eq!(
            crd_cells(&pc, &obj, now()),
            vec![
                json!("w"),
                json!(3),
                json!(0.5),
                json!(true),
                json!("Ready"),
                json!("Synced"),
                json!("shop"),
                json!("team-a"),
                json!("team-a"),
                json!(r#"{"a":[true],"b":1}"#),
                json!("3"),
                Value::Null,
                json!("90s"),
                json!("<invalid>"),
                Value::Null,
                json!("x.example"),
                Value::Null,
            ]
        );
        // cells stay aligned with columns whatever the object looks like
        for junk in [
            json!(null),
            json!([1]),
            json!({"spec": "x", "status": {"conditions": 5}}),
        ] {
            assert_eq!(crd_cells(&pc, &junk, now()).len(), cols.len());
        }
    }

    #[test]
    fn interned_texts_are_reused() {
        let a = intern("Some Column");
        let b = intern(&String::from("Some Column"));
        assert!(std::ptr::eq(a, b));
    }
}
