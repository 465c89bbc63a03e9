//! Per-kind defaulting of built-in objects, as upstream's `SetDefaults_*`
//! functions (`pkg/apis/*/v1/defaults.go`) plus the few fields upstream fills
//! in its registry strategies or admission plugins that every client sees:
//! the Job selector/labels, a Namespace's `kubernetes` finalizer and phase, a
//! Service's IP-family fields, a Pod's priority, QoS class, phase and the
//! `DefaultTolerationSeconds` tolerations.
//!
//! Owns: filling absent fields of one JSON object in place. Idempotent: running
//! it again (on update, or on an object read back) changes nothing.
//! Must not: look anything up (no store, no clock, no randomness), allocate
//! cluster IPs or node ports, generate names or uids, or reject anything —
//! a malformed field is left as it is for validation to report.
//!
//! A JSON `null` counts as absent, like a nil pointer after Go decoding.

use serde_json::{Map, Value, json};

use super::quantity::{Quantity, parse_quantity};

type Obj = Map<String, Value>;

/// Fills upstream defaults into `obj` (a whole object of `group`/`kind`).
///
/// Job selector generation needs `metadata.uid` and `metadata.name`: call this
/// after the registry has set them (upstream does it in the Job strategy's
/// `Validate`, after `BeforeCreate`).
pub fn apply_defaults(group: &str, kind: &str, obj: &mut Value) {
    let Some(root) = obj.as_object_mut() else {
        return;
    };
    match (group, kind) {
        ("", "Pod") => default_pod(root),
        ("", "PodTemplate") => {
            if let Some(t) = child(root, "template") {
                default_pod_template(t);
            }
        }
        ("", "ReplicationController") => default_replication_controller(root),
        ("", "Service") => default_service(root),
        ("", "Namespace") => default_namespace(root),
        ("", "Secret") => default_secret(root),
        ("", "PersistentVolume") => default_persistent_volume(root),
        ("", "PersistentVolumeClaim") => default_pvc(root),
        ("", "Endpoints") => default_endpoints(root),
        ("", "LimitRange") => default_limit_range(root),
        ("", "ResourceQuota") => default_resource_quota(root),
        ("", "Node") => default_node(root),
        ("apps", "Deployment") => default_deployment(root),
        ("apps", "ReplicaSet") => default_replica_set(root),
        ("apps", "StatefulSet") => default_stateful_set(root),
        ("apps", "DaemonSet") => default_daemon_set(root),
        ("batch", "Job") => default_job(root),
        ("batch", "CronJob") => default_cron_job(root),
        ("autoscaling", "HorizontalPodAutoscaler") => default_hpa(root),
        ("networking.k8s.io", "NetworkPolicy") => default_network_policy(root),
        ("networking.k8s.io", "IngressClass") => default_ingress_class(root),
        ("discovery.k8s.io", "EndpointSlice") => default_endpoint_slice(root),
        ("storage.k8s.io", "StorageClass") => {
            set_default(root, "reclaimPolicy", json!("Delete"));
            set_default(root, "volumeBindingMode", json!("Immediate"));
        }
        ("scheduling.k8s.io", "PriorityClass") => {
            set_default(root, "preemptionPolicy", json!("PreemptLowerPriority"));
        }
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => {
            default_role_binding(root)
        }
        ("apiextensions.k8s.io", "CustomResourceDefinition") => default_crd(root),
        _ => {}
    }
}

// ---------------------------------------------------------------------------
// JSON helpers

fn is_absent(v: Option<&Value>) -> bool {
    matches!(v, None | Some(Value::Null))
}

/// Inserts `value` under `key` when the key is absent or null.
fn set_default(m: &mut Obj, key: &str, value: Value) {
    if is_absent(m.get(key)) {
        m.insert(key.to_string(), value);
    }
}

/// The object under `key`, if it is one.
fn child<'a>(m: &'a mut Obj, key: &str) -> Option<&'a mut Obj> {
    m.get_mut(key).and_then(Value::as_object_mut)
}

/// The object under `key`, created empty when absent or null. `None` when the
/// key holds something else (left for validation to report).
fn child_or_default<'a>(m: &'a mut Obj, key: &str) -> Option<&'a mut Obj> {
    set_default(m, key, Value::Object(Obj::new()));
    child(m, key)
}

/// Every object element of the array under `key`.
fn each_item<'a>(m: &'a mut Obj, key: &str) -> impl Iterator<Item = &'a mut Obj> {
    m.get_mut(key)
        .and_then(Value::as_array_mut)
        .into_iter()
        .flat_map(|a| a.iter_mut().filter_map(Value::as_object_mut))
}

fn str_of<'a>(m: &'a Obj, key: &str) -> Option<&'a str> {
    m.get(key).and_then(Value::as_str)
}

fn is_empty_value(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => true,
        Some(Value::Object(o)) => o.is_empty(),
        Some(Value::Array(a)) => a.is_empty(),
        Some(Value::String(s)) => s.is_empty(),
        _ => false,
    }
}

/// Re-orders a string map by key: Go serialises maps sorted, so a map we add
/// keys to should read back the way upstream would print it.
fn sort_map(m: &mut Obj) {
    let mut entries: Vec<(String, Value)> = std::mem::take(m).into_iter().collect();
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    m.extend(entries);
}

/// Moves `apiVersion` and `kind` to the front, where Go's TypeMeta puts them.
fn type_meta_first(m: &mut Obj, api_version: &str, kind: &str) {
    let rest = std::mem::take(m);
    m.insert("apiVersion".into(), json!(api_version));
    m.insert("kind".into(), json!(kind));
    for (k, v) in rest {
        if k == "apiVersion" || k == "kind" {
            if !v.is_null() {
                m.insert(k, v);
            }
        } else {
            m.insert(k, v);
        }
    }
}

/// Rewrites every parseable quantity of a resource list in canonical form,
/// as upstream's serializer does (`0.5` → `500m`, `1024Mi` → `1Gi`, a JSON
/// number → a string). Unparseable values are left for validation.
fn canonicalize_resource_list(list: Option<&mut Value>) {
    let Some(list) = list.and_then(Value::as_object_mut) else {
        return;
    };
    for v in list.values_mut() {
        let parsed = match v {
            Value::String(s) => parse_quantity(s),
            Value::Number(n) => parse_quantity(&n.to_string()),
            _ => None,
        };
        if let Some(q) = parsed {
            *v = Value::String(q.canonical());
        }
    }
}

// ---------------------------------------------------------------------------
// Pods and pod templates

/// `SetDefaults_Pod` + `SetDefaults_PodSpec` + what upstream's admission and
/// registry add to every created Pod.
fn default_pod(pod: &mut Obj) {
    let Some(spec) = child(pod, "spec") else {
        return;
    };
    // SetDefaults_Pod: requests default to limits, for pods only.
    for key in ["containers", "initContainers"] {
        for c in each_item(spec, key) {
            if let Some(res) = child(c, "resources") {
                default_requests_from_limits(res);
            }
        }
    }
    set_default(spec, "enableServiceLinks", json!(true));
    if spec.get("hostNetwork") == Some(&Value::Bool(true)) {
        for key in ["containers", "initContainers"] {
            for c in each_item(spec, key) {
                default_host_network_ports(c);
            }
        }
    }
    default_pod_spec(spec);
    default_toleration_seconds(spec);
    default_priority(spec);
    let qos = pod_qos_class(pod);
    if let Some(status) = child_or_default(pod, "status") {
        set_default(status, "phase", json!("Pending"));
        set_default(status, "qosClass", json!(qos));
    }
}

fn default_requests_from_limits(res: &mut Obj) {
    let Some(limits) = res.get("limits").and_then(Value::as_object).cloned() else {
        return;
    };
    if limits.is_empty() {
        return;
    }
    let Some(requests) = child_or_default(res, "requests") else {
        return;
    };
    for (k, v) in limits {
        if !requests.contains_key(&k) {
            requests.insert(k, v);
        }
    }
}

fn default_host_network_ports(container: &mut Obj) {
    for port in each_item(container, "ports") {
        if is_absent(port.get("hostPort"))
            && let Some(cp) = port.get("containerPort").cloned()
        {
            port.insert("hostPort".into(), cp);
        }
    }
}

/// `DefaultTolerationSeconds` admission: tolerate not-ready/unreachable nodes
/// for 300s unless the pod already tolerates them.
fn default_toleration_seconds(spec: &mut Obj) {
    let tolerates = |tols: &[Value], key: &str| {
        tols.iter().any(|t| {
            let k = t.get("key").and_then(Value::as_str).unwrap_or("");
            let e = t.get("effect").and_then(Value::as_str).unwrap_or("");
            (k == key || k.is_empty()) && (e == "NoExecute" || e.is_empty())
        })
    };
    set_default(spec, "tolerations", json!([]));
    let Some(tols) = spec.get_mut("tolerations").and_then(Value::as_array_mut) else {
        return;
    };
    for key in [
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
    ] {
        if !tolerates(tols, key) {
            tols.push(json!({
                "key": key,
                "operator": "Exists",
                "effect": "NoExecute",
                "tolerationSeconds": 300,
            }));
        }
    }
}

/// The `Priority` admission plugin for the classes that need no lookup: no
/// class (priority 0) and the two built-in system classes. Any other class
/// must be resolved by the caller from the PriorityClass object.
fn default_priority(spec: &mut Obj) {
    let value = match str_of(spec, "priorityClassName").unwrap_or("") {
        "" => 0,
        "system-node-critical" => 2_000_001_000,
        "system-cluster-critical" => 2_000_000_000,
        _ => return,
    };
    set_default(spec, "priority", json!(value));
    set_default(spec, "preemptionPolicy", json!("PreemptLowerPriority"));
}

fn default_pod_template(template: &mut Obj) {
    if let Some(spec) = child(template, "spec") {
        default_pod_spec(spec);
    }
}

/// `SetDefaults_PodSpec` and the nested per-type defaults the generated
/// defaulters apply to containers, probes and volumes.
fn default_pod_spec(spec: &mut Obj) {
    set_default(spec, "dnsPolicy", json!("ClusterFirst"));
    set_default(spec, "restartPolicy", json!("Always"));
    set_default(spec, "securityContext", json!({}));
    set_default(spec, "terminationGracePeriodSeconds", json!(30));
    set_default(spec, "schedulerName", json!("default-scheduler"));
    for key in ["initContainers", "containers", "ephemeralContainers"] {
        for c in each_item(spec, key) {
            default_container(c);
        }
    }
    for v in each_item(spec, "volumes") {
        default_volume(v);
    }
}

fn default_container(c: &mut Obj) {
    set_default(c, "terminationMessagePath", json!("/dev/termination-log"));
    set_default(c, "terminationMessagePolicy", json!("File"));
    if is_absent(c.get("imagePullPolicy")) {
        let policy = default_pull_policy(str_of(c, "image").unwrap_or(""));
        c.insert("imagePullPolicy".into(), json!(policy));
    }
    set_default(c, "resources", json!({}));
    if let Some(res) = child(c, "resources") {
        canonicalize_resource_list(res.get_mut("limits"));
        canonicalize_resource_list(res.get_mut("requests"));
    }
    for port in each_item(c, "ports") {
        set_default(port, "protocol", json!("TCP"));
    }
    for env in each_item(c, "env") {
        if let Some(from) = child(env, "valueFrom") {
            default_env_source(from);
        }
    }
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = child(c, probe) {
            default_probe(p);
        }
    }
    if let Some(lifecycle) = child(c, "lifecycle") {
        for hook in ["postStart", "preStop"] {
            if let Some(h) = child(lifecycle, hook) {
                default_handler(h);
            }
        }
    }
}

fn default_env_source(from: &mut Obj) {
    if let Some(f) = child(from, "fieldRef") {
        set_default(f, "apiVersion", json!("v1"));
    }
    if let Some(r) = child(from, "resourceFieldRef") {
        // A resource.Quantity field that is never omitted: zero prints as "0".
        set_default(r, "divisor", json!("0"));
    }
}

/// `imagePullPolicy`: `Always` for `:latest` or an untagged, undigested image,
/// `IfNotPresent` otherwise (including names upstream fails to parse).
pub fn default_pull_policy(image: &str) -> &'static str {
    if image_tag(image).as_deref() == Some("latest") {
        "Always"
    } else {
        "IfNotPresent"
    }
}

/// The tag `parsers.ParseImageName` reports: the explicit tag, `latest` when
/// there is neither tag nor digest, nothing for an unparseable reference.
fn image_tag(image: &str) -> Option<String> {
    if image.is_empty() || image.chars().any(|c| c.is_whitespace()) {
        return None;
    }
    let (name, digest) = match image.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (image, None),
    };
    let last = name.rsplit('/').next().unwrap_or(name);
    let (repo_last, tag) = match last.split_once(':') {
        Some((r, t)) => (r, Some(t)),
        None => (last, None),
    };
    let path_ok = |s: &str| {
        !s.is_empty()
            && s.chars().all(|c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-' | '/')
            })
    };
    // Everything but the domain must be lowercase for the reference to parse.
    let repo_path = match name.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            rest.rsplit_once(':').map_or(rest, |(r, _)| r).to_string()
        }
        _ => {
            let prefix = name.len() - last.len();
            format!("{}{}", &name[..prefix], repo_last)
        }
    };
    if !path_ok(&repo_path) {
        return None;
    }
    match (tag, digest) {
        (Some(t), _) if !t.is_empty() => Some(t.to_string()),
        (Some(_), _) => None,
        (None, Some(_)) => Some(String::new()),
        (None, None) => Some("latest".into()),
    }
}

fn default_probe(p: &mut Obj) {
    default_handler(p);
    set_default(p, "timeoutSeconds", json!(1));
    set_default(p, "periodSeconds", json!(10));
    set_default(p, "successThreshold", json!(1));
    set_default(p, "failureThreshold", json!(3));
}

fn default_handler(h: &mut Obj) {
    if let Some(get) = child(h, "httpGet") {
        set_default(get, "path", json!("/"));
        set_default(get, "scheme", json!("HTTP"));
    }
    if let Some(grpc) = child(h, "grpc") {
        set_default(grpc, "service", json!(""));
    }
}

const VOLUME_MODE_420: i64 = 0o644;

fn default_volume(v: &mut Obj) {
    // SetDefaults_Volume: a volume naming no source is an emptyDir.
    if v.iter().all(|(k, val)| k == "name" || val.is_null()) {
        v.insert("emptyDir".into(), json!({}));
    }
    for key in ["secret", "configMap", "downwardAPI", "projected"] {
        if let Some(src) = child(v, key) {
            set_default(src, "defaultMode", json!(VOLUME_MODE_420));
        }
    }
    if let Some(d) = child(v, "downwardAPI") {
        default_downward_items(d);
    }
    if let Some(p) = child(v, "projected") {
        for source in each_item(p, "sources") {
            if let Some(t) = child(source, "serviceAccountToken") {
                set_default(t, "expirationSeconds", json!(3600));
            }
            if let Some(d) = child(source, "downwardAPI") {
                default_downward_items(d);
            }
        }
    }
    if let Some(h) = child(v, "hostPath") {
        set_default(h, "type", json!(""));
    }
    if let Some(e) = child(v, "emptyDir") {
        canonicalize_one_quantity(e, "sizeLimit");
    }
    if let Some(spec) = child(v, "ephemeral")
        .and_then(|e| child(e, "volumeClaimTemplate"))
        .and_then(|t| child(t, "spec"))
    {
        default_pvc_spec(spec);
    }
}

fn default_downward_items(d: &mut Obj) {
    for item in each_item(d, "items") {
        if let Some(f) = child(item, "fieldRef") {
            set_default(f, "apiVersion", json!("v1"));
        }
        if let Some(r) = child(item, "resourceFieldRef") {
            set_default(r, "divisor", json!("0"));
        }
    }
}

fn canonicalize_one_quantity(m: &mut Obj, key: &str) {
    let parsed = match m.get(key) {
        Some(Value::String(s)) => parse_quantity(s),
        Some(Value::Number(n)) => parse_quantity(&n.to_string()),
        _ => None,
    };
    if let Some(q) = parsed {
        m.insert(key.into(), Value::String(q.canonical()));
    }
}

/// Upstream's `qos.GetPodQOS`, over cpu and memory of all (init) containers.
pub fn pod_qos_class(pod: &Obj) -> &'static str {
    let Some(spec) = pod.get("spec") else {
        return "BestEffort";
    };
    let mut requests: Vec<(&str, Quantity)> = Vec::new();
    let mut limits: Vec<(&str, Quantity)> = Vec::new();
    let mut guaranteed = true;
    let add = |sums: &mut Vec<(&'static str, Quantity)>, name: &'static str, q: Quantity| {
        if let Some(entry) = sums.iter_mut().find(|(n, _)| *n == name) {
            entry.1 = entry.1.checked_add(&q).unwrap_or(entry.1);
        } else {
            sums.push((name, q));
        }
    };
    let containers = ["containers", "initContainers"]
        .into_iter()
        .filter_map(|k| spec.get(k).and_then(Value::as_array))
        .flatten();
    for c in containers {
        let res = c.get("resources");
        let mut limit_names = 0;
        for name in ["cpu", "memory"] {
            let quantity = |list: &str| {
                res.and_then(|r| r.get(list))
                    .and_then(|l| l.get(name))
                    .and_then(|v| match v {
                        Value::String(s) => parse_quantity(s),
                        Value::Number(n) => parse_quantity(&n.to_string()),
                        _ => None,
                    })
                    .filter(|q| !q.is_zero())
            };
            if let Some(q) = quantity("requests") {
                add(&mut requests, name, q);
            }
            if let Some(q) = quantity("limits") {
                add(&mut limits, name, q);
                limit_names += 1;
            }
        }
        if limit_names < 2 {
            guaranteed = false;
        }
    }
    if requests.is_empty() && limits.is_empty() {
        return "BestEffort";
    }
    if guaranteed {
        for (name, req) in &requests {
            match limits.iter().find(|(n, _)| n == name) {
                Some((_, lim)) if lim == req => {}
                _ => guaranteed = false,
            }
        }
    }
    if guaranteed && requests.len() == limits.len() {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

// ---------------------------------------------------------------------------
// Workloads

fn default_template_of(spec: &mut Obj) {
    if let Some(t) = child(spec, "template") {
        default_pod_template(t);
    }
}

fn default_replication_controller(rc: &mut Obj) {
    let template_labels = rc
        .get("spec")
        .and_then(|s| s.get("template"))
        .and_then(|t| t.get("metadata"))
        .and_then(|m| m.get("labels"))
        .filter(|l| !is_empty_value(Some(l)))
        .cloned();
    if let Some(labels) = template_labels {
        if let Some(spec) = child(rc, "spec")
            && is_empty_value(spec.get("selector"))
        {
            spec.insert("selector".into(), labels.clone());
        }
        if let Some(meta) = child_or_default(rc, "metadata")
            && is_empty_value(meta.get("labels"))
        {
            meta.insert("labels".into(), labels);
        }
    }
    if let Some(spec) = child(rc, "spec") {
        set_default(spec, "replicas", json!(1));
        default_template_of(spec);
    }
}

fn default_deployment(d: &mut Obj) {
    let Some(spec) = child(d, "spec") else {
        return;
    };
    set_default(spec, "replicas", json!(1));
    if let Some(strategy) = child_or_default(spec, "strategy") {
        set_default(strategy, "type", json!("RollingUpdate"));
        if str_of(strategy, "type") == Some("RollingUpdate")
            && let Some(ru) = child_or_default(strategy, "rollingUpdate")
        {
            set_default(ru, "maxUnavailable", json!("25%"));
            set_default(ru, "maxSurge", json!("25%"));
        }
    }
    set_default(spec, "revisionHistoryLimit", json!(10));
    set_default(spec, "progressDeadlineSeconds", json!(600));
    default_template_of(spec);
}

fn default_replica_set(rs: &mut Obj) {
    if let Some(spec) = child(rs, "spec") {
        set_default(spec, "replicas", json!(1));
        default_template_of(spec);
    }
}

fn default_stateful_set(s: &mut Obj) {
    let Some(spec) = child(s, "spec") else {
        return;
    };
    set_default(spec, "podManagementPolicy", json!("OrderedReady"));
    if let Some(strategy) = child_or_default(spec, "updateStrategy") {
        if is_absent(strategy.get("type")) {
            strategy.insert("type".into(), json!("RollingUpdate"));
            set_default(strategy, "rollingUpdate", json!({}));
        }
        if str_of(strategy, "type") == Some("RollingUpdate")
            && let Some(ru) = child(strategy, "rollingUpdate")
        {
            set_default(ru, "partition", json!(0));
        }
    }
    if let Some(policy) = child_or_default(spec, "persistentVolumeClaimRetentionPolicy") {
        set_default(policy, "whenDeleted", json!("Retain"));
        set_default(policy, "whenScaled", json!("Retain"));
    }
    set_default(spec, "replicas", json!(1));
    set_default(spec, "revisionHistoryLimit", json!(10));
    default_template_of(spec);
    for pvc in each_item(spec, "volumeClaimTemplates") {
        type_meta_first(pvc, "v1", "PersistentVolumeClaim");
        default_pvc(pvc);
    }
}

fn default_daemon_set(ds: &mut Obj) {
    let Some(spec) = child(ds, "spec") else {
        return;
    };
    if let Some(strategy) = child_or_default(spec, "updateStrategy") {
        set_default(strategy, "type", json!("RollingUpdate"));
        if str_of(strategy, "type") == Some("RollingUpdate")
            && let Some(ru) = child_or_default(strategy, "rollingUpdate")
        {
            set_default(ru, "maxUnavailable", json!(1));
            set_default(ru, "maxSurge", json!(0));
        }
    }
    set_default(spec, "revisionHistoryLimit", json!(10));
    default_template_of(spec);
}

const LEGACY_JOB_NAME_LABEL: &str = "job-name";
const JOB_NAME_LABEL: &str = "batch.kubernetes.io/job-name";
const LEGACY_CONTROLLER_UID_LABEL: &str = "controller-uid";
const CONTROLLER_UID_LABEL: &str = "batch.kubernetes.io/controller-uid";

fn default_job(job: &mut Obj) {
    let name = job
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let uid = job
        .get("metadata")
        .and_then(|m| m.get("uid"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let Some(spec) = child(job, "spec") else {
        return;
    };
    if is_absent(spec.get("completions")) && is_absent(spec.get("parallelism")) {
        spec.insert("completions".into(), json!(1));
        spec.insert("parallelism".into(), json!(1));
    }
    set_default(spec, "parallelism", json!(1));
    if is_absent(spec.get("backoffLimit")) {
        let limit = if is_absent(spec.get("backoffLimitPerIndex")) {
            6
        } else {
            i64::from(i32::MAX)
        };
        spec.insert("backoffLimit".into(), json!(limit));
    }
    set_default(spec, "completionMode", json!("NonIndexed"));
    set_default(spec, "suspend", json!(false));
    let has_failure_policy = !is_absent(spec.get("podFailurePolicy"));
    if let Some(policy) = child(spec, "podFailurePolicy") {
        for rule in each_item(policy, "rules") {
            for pattern in each_item(rule, "onPodConditions") {
                set_default(pattern, "status", json!("True"));
            }
        }
    }
    let replacement = if has_failure_policy {
        "Failed"
    } else {
        "TerminatingOrFailed"
    };
    set_default(spec, "podReplacementPolicy", json!(replacement));
    if spec.get("manualSelector") != Some(&Value::Bool(true)) && !uid.is_empty() {
        generate_job_selector(spec, &name, &uid);
    }
    default_template_of(spec);

    // SetDefaults_Job: an unlabelled Job takes its template's labels.
    let template_labels = spec
        .get("template")
        .and_then(|t| t.get("metadata"))
        .and_then(|m| m.get("labels"))
        .filter(|l| !is_empty_value(Some(l)))
        .cloned();
    if let Some(labels) = template_labels
        && let Some(meta) = child_or_default(job, "metadata")
        && is_empty_value(meta.get("labels"))
    {
        meta.insert("labels".into(), labels);
    }
}

/// The Job strategy's `generateSelector`: label the template with the job's
/// name and uid (unless the user set those labels) and select on the uid.
fn generate_job_selector(spec: &mut Obj, name: &str, uid: &str) {
    let Some(labels) = child_or_default(spec, "template")
        .and_then(|t| child_or_default(t, "metadata"))
        .and_then(|m| child_or_default(m, "labels"))
    else {
        return;
    };
    for key in [LEGACY_JOB_NAME_LABEL, JOB_NAME_LABEL] {
        if !labels.contains_key(key) {
            labels.insert(key.into(), json!(name));
        }
    }
    for key in [LEGACY_CONTROLLER_UID_LABEL, CONTROLLER_UID_LABEL] {
        if !labels.contains_key(key) {
            labels.insert(key.into(), json!(uid));
        }
    }
    sort_map(labels);
    if let Some(match_labels) =
        child_or_default(spec, "selector").and_then(|s| child_or_default(s, "matchLabels"))
        && !match_labels.contains_key(CONTROLLER_UID_LABEL)
    {
        match_labels.insert(CONTROLLER_UID_LABEL.into(), json!(uid));
        sort_map(match_labels);
    }
}

fn default_cron_job(cj: &mut Obj) {
    let Some(spec) = child(cj, "spec") else {
        return;
    };
    set_default(spec, "concurrencyPolicy", json!("Allow"));
    set_default(spec, "suspend", json!(false));
    set_default(spec, "successfulJobsHistoryLimit", json!(3));
    set_default(spec, "failedJobsHistoryLimit", json!(1));
    // Only the nested pod template is defaulted: SetDefaults_Job takes a Job,
    // not the JobSpec inside a JobTemplateSpec.
    if let Some(job_spec) = child(spec, "jobTemplate").and_then(|t| child(t, "spec")) {
        default_template_of(job_spec);
    }
}

// ---------------------------------------------------------------------------
// Core, networking, storage and the rest

fn default_service(svc: &mut Obj) {
    let Some(spec) = child(svc, "spec") else {
        return;
    };
    set_default(spec, "type", json!("ClusterIP"));
    set_default(spec, "sessionAffinity", json!("None"));
    if str_of(spec, "sessionAffinity") == Some("ClientIP")
        && let Some(config) = child_or_default(spec, "sessionAffinityConfig")
        && let Some(client_ip) = child_or_default(config, "clientIP")
    {
        set_default(client_ip, "timeoutSeconds", json!(10800));
    }
    for port in each_item(spec, "ports") {
        set_default(port, "protocol", json!("TCP"));
        let target_unset = match port.get("targetPort") {
            None | Some(Value::Null) => true,
            Some(Value::Number(n)) => n.as_i64() == Some(0),
            Some(Value::String(s)) => s.is_empty(),
            _ => false,
        };
        if target_unset && let Some(p) = port.get("port").cloned() {
            port.insert("targetPort".into(), p);
        }
    }
    let svc_type = str_of(spec, "type").unwrap_or("").to_string();
    if matches!(svc_type.as_str(), "NodePort" | "LoadBalancer") {
        set_default(spec, "externalTrafficPolicy", json!("Cluster"));
    }
    if matches!(svc_type.as_str(), "ClusterIP" | "NodePort" | "LoadBalancer") {
        set_default(spec, "internalTrafficPolicy", json!("Cluster"));
    }
    if svc_type == "LoadBalancer" {
        set_default(spec, "allocateLoadBalancerNodePorts", json!(true));
    }
    if svc_type != "ExternalName" {
        default_service_ip_fields(spec);
    }
    if let Some(status) = child_or_default(svc, "status") {
        set_default(status, "loadBalancer", json!({}));
    }
}

/// What the Service registry does before allocation: keep `clusterIP` and
/// `clusterIPs` in step and pick the IP families of a single-stack IPv4
/// cluster. Allocating the address itself is the caller's job.
fn default_service_ip_fields(spec: &mut Obj) {
    let first_ip = spec
        .get("clusterIPs")
        .and_then(Value::as_array)
        .and_then(|a| a.first())
        .cloned();
    match (is_absent(spec.get("clusterIP")), first_ip) {
        (true, Some(ip)) => {
            spec.insert("clusterIP".into(), ip);
        }
        (false, None) => {
            if let Some(ip) = spec.get("clusterIP").cloned()
                && ip.as_str().is_some_and(|s| !s.is_empty())
            {
                spec.insert("clusterIPs".into(), json!([ip]));
            }
        }
        _ => {}
    }
    let headless = str_of(spec, "clusterIP") == Some("None");
    if is_absent(spec.get("ipFamilyPolicy")) {
        let policy = if headless && is_empty_value(spec.get("selector")) {
            "RequireDualStack"
        } else {
            "SingleStack"
        };
        spec.insert("ipFamilyPolicy".into(), json!(policy));
    }
    if is_empty_value(spec.get("ipFamilies")) {
        let family = match str_of(spec, "clusterIP") {
            Some(ip) if ip.contains(':') => "IPv6",
            _ => "IPv4",
        };
        spec.insert("ipFamilies".into(), json!([family]));
    }
}

fn default_namespace(ns: &mut Obj) {
    let name = ns
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let deleting = ns
        .get("metadata")
        .is_some_and(|m| !is_absent(m.get("deletionTimestamp")));
    if !name.is_empty()
        && let Some(labels) =
            child_or_default(ns, "metadata").and_then(|m| child_or_default(m, "labels"))
        && labels
            .get("kubernetes.io/metadata.name")
            .and_then(Value::as_str)
            != Some(&name)
    {
        labels.insert("kubernetes.io/metadata.name".into(), json!(name));
        sort_map(labels);
    }
    // Upstream adds the finalizer on create only, so that the namespace
    // controller can remove it; "absent and not being deleted" is the
    // idempotent equivalent.
    if !deleting && let Some(spec) = child_or_default(ns, "spec") {
        set_default(spec, "finalizers", json!(["kubernetes"]));
    }
    if let Some(status) = child_or_default(ns, "status") {
        set_default(status, "phase", json!("Active"));
    }
}

fn default_secret(secret: &mut Obj) {
    set_default(secret, "type", json!("Opaque"));
    // The v1 → internal conversion folds stringData into data (stringData
    // wins); the stored object never carries stringData.
    let Some(Value::Object(string_data)) = secret.remove("stringData") else {
        return;
    };
    if string_data.is_empty() {
        return;
    }
    if let Some(data) = child_or_default(secret, "data") {
        for (k, v) in string_data {
            if let Some(s) = v.as_str() {
                data.insert(k, json!(base64_encode(s.as_bytes())));
            }
        }
    }
}

fn base64_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn default_persistent_volume(pv: &mut Obj) {
    if let Some(spec) = child(pv, "spec") {
        set_default(spec, "persistentVolumeReclaimPolicy", json!("Retain"));
        set_default(spec, "volumeMode", json!("Filesystem"));
        canonicalize_resource_list(spec.get_mut("capacity"));
        if let Some(h) = child(spec, "hostPath") {
            set_default(h, "type", json!(""));
        }
    }
    if let Some(status) = child_or_default(pv, "status") {
        set_default(status, "phase", json!("Pending"));
    }
}

fn default_pvc(pvc: &mut Obj) {
    if let Some(spec) = child(pvc, "spec") {
        default_pvc_spec(spec);
    }
    if let Some(status) = child_or_default(pvc, "status") {
        set_default(status, "phase", json!("Pending"));
        canonicalize_resource_list(status.get_mut("capacity"));
    }
}

fn default_pvc_spec(spec: &mut Obj) {
    set_default(spec, "volumeMode", json!("Filesystem"));
    if let Some(res) = child(spec, "resources") {
        canonicalize_resource_list(res.get_mut("requests"));
        canonicalize_resource_list(res.get_mut("limits"));
    }
}

fn default_endpoints(ep: &mut Obj) {
    for subset in each_item(ep, "subsets") {
        for port in each_item(subset, "ports") {
            set_default(port, "protocol", json!("TCP"));
        }
    }
}

fn default_endpoint_slice(slice: &mut Obj) {
    for port in each_item(slice, "ports") {
        set_default(port, "name", json!(""));
        set_default(port, "protocol", json!("TCP"));
    }
}

fn default_limit_range(lr: &mut Obj) {
    let Some(spec) = child(lr, "spec") else {
        return;
    };
    for item in each_item(spec, "limits") {
        for key in [
            "max",
            "min",
            "default",
            "defaultRequest",
            "maxLimitRequestRatio",
        ] {
            canonicalize_resource_list(item.get_mut(key));
        }
        if str_of(item, "type") != Some("Container") {
            continue;
        }
        // max → default → defaultRequest, then min → defaultRequest.
        let copy_missing = |item: &mut Obj, from: &str, to: &str| {
            let Some(src) = item.get(from).and_then(Value::as_object).cloned() else {
                return;
            };
            if src.is_empty() {
                return;
            }
            if let Some(dst) = child_or_default(item, to) {
                for (k, v) in src {
                    if !dst.contains_key(&k) {
                        dst.insert(k, v);
                    }
                }
            }
        };
        copy_missing(item, "max", "default");
        copy_missing(item, "default", "defaultRequest");
        copy_missing(item, "min", "defaultRequest");
    }
}

fn default_resource_quota(rq: &mut Obj) {
    if let Some(spec) = child(rq, "spec") {
        canonicalize_resource_list(spec.get_mut("hard"));
    }
}

fn default_node(node: &mut Obj) {
    if let Some(spec) = child(node, "spec") {
        sync_pod_cidrs(spec);
    }
    let Some(status) = child(node, "status") else {
        return;
    };
    canonicalize_resource_list(status.get_mut("capacity"));
    canonicalize_resource_list(status.get_mut("allocatable"));
    if is_empty_value(status.get("allocatable"))
        && let Some(capacity) = status.get("capacity").cloned()
        && !is_empty_value(Some(&capacity))
    {
        status.insert("allocatable".into(), capacity);
    }
}

/// Upstream keeps only `podCIDRs` internally: v1 → internal fills it from
/// `podCIDR` when it is absent, internal → v1 sets `podCIDR` to its first
/// entry. So `podCIDRs` wins when both are given, and a GET shows both.
fn sync_pod_cidrs(spec: &mut Obj) {
    if spec
        .get("podCIDR")
        .is_some_and(|v| !v.is_string() && !v.is_null())
    {
        return; // wrong type: left for validation
    }
    let single = spec
        .get("podCIDR")
        .and_then(Value::as_str)
        .filter(|c| !c.is_empty())
        .map(str::to_string);
    let list: Option<Vec<Value>> = match spec.get("podCIDRs") {
        None | Some(Value::Null) => single.map(|c| vec![Value::String(c)]),
        Some(Value::Array(a)) => Some(a.clone()),
        Some(_) => return, // wrong type: left for validation
    };
    match list.filter(|l| !l.is_empty()) {
        Some(l) => {
            spec.insert("podCIDR".into(), l[0].clone());
            spec.insert("podCIDRs".into(), Value::Array(l));
        }
        None => {
            spec.remove("podCIDR");
            spec.remove("podCIDRs");
        }
    }
}

fn default_hpa(hpa: &mut Obj) {
    let v1 = str_of(hpa, "apiVersion") == Some("autoscaling/v1");
    let Some(spec) = child(hpa, "spec") else {
        return;
    };
    set_default(spec, "minReplicas", json!(1));
    if v1 {
        // v1 objects read back from v2 storage carry the v2 default metric.
        set_default(spec, "targetCPUUtilizationPercentage", json!(80));
        return;
    }
    if is_empty_value(spec.get("metrics")) {
        spec.insert(
            "metrics".into(),
            json!([{
                "type": "Resource",
                "resource": {
                    "name": "cpu",
                    "target": {"type": "Utilization", "averageUtilization": 80},
                },
            }]),
        );
    }
    if let Some(behavior) = child(spec, "behavior") {
        if let Some(up) = child_or_default(behavior, "scaleUp") {
            set_default(up, "stabilizationWindowSeconds", json!(0));
            set_default(up, "selectPolicy", json!("Max"));
            set_default(
                up,
                "policies",
                json!([
                    {"type": "Pods", "value": 4, "periodSeconds": 15},
                    {"type": "Percent", "value": 100, "periodSeconds": 15},
                ]),
            );
        }
        if let Some(down) = child_or_default(behavior, "scaleDown") {
            set_default(down, "stabilizationWindowSeconds", json!(300));
            set_default(down, "selectPolicy", json!("Max"));
            set_default(
                down,
                "policies",
                json!([{"type": "Percent", "value": 100, "periodSeconds": 15}]),
            );
        }
    }
}

fn default_network_policy(np: &mut Obj) {
    let Some(spec) = child(np, "spec") else {
        return;
    };
    for rule in each_item(spec, "ingress") {
        for port in each_item(rule, "ports") {
            set_default(port, "protocol", json!("TCP"));
        }
    }
    let mut has_egress = false;
    for rule in each_item(spec, "egress") {
        has_egress = true;
        for port in each_item(rule, "ports") {
            set_default(port, "protocol", json!("TCP"));
        }
    }
    if is_empty_value(spec.get("policyTypes")) {
        let mut types = vec![json!("Ingress")];
        if has_egress {
            types.push(json!("Egress"));
        }
        spec.insert("policyTypes".into(), Value::Array(types));
    }
}

fn default_ingress_class(ic: &mut Obj) {
    if let Some(params) = child(ic, "spec").and_then(|s| child(s, "parameters")) {
        set_default(params, "scope", json!("Cluster"));
    }
}

fn default_role_binding(rb: &mut Obj) {
    if let Some(role_ref) = child(rb, "roleRef")
        && is_empty_value(role_ref.get("apiGroup"))
    {
        role_ref.insert("apiGroup".into(), json!("rbac.authorization.k8s.io"));
    }
    for subject in each_item(rb, "subjects") {
        if !is_empty_value(subject.get("apiGroup")) {
            continue;
        }
        let group = match str_of(subject, "kind") {
            Some("ServiceAccount") => "",
            Some("User" | "Group") => "rbac.authorization.k8s.io",
            _ => continue,
        };
        subject.insert("apiGroup".into(), json!(group));
    }
}

fn default_crd(crd: &mut Obj) {
    let Some(spec) = child(crd, "spec") else {
        return;
    };
    if let Some(names) = child(spec, "names") {
        let kind = str_of(names, "kind").unwrap_or("").to_string();
        if is_empty_value(names.get("singular")) {
            names.insert("singular".into(), json!(kind.to_lowercase()));
        }
        if is_empty_value(names.get("listKind")) && !kind.is_empty() {
            names.insert("listKind".into(), json!(format!("{kind}List")));
        }
    }
    if let Some(conversion) = child_or_default(spec, "conversion") {
        set_default(conversion, "strategy", json!("None"));
        if let Some(service) = child(conversion, "webhook")
            .and_then(|w| child(w, "clientConfig"))
            .and_then(|c| child(c, "service"))
        {
            set_default(service, "port", json!(443));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaulted(group: &str, kind: &str, mut v: Value) -> Value {
        apply_defaults(group, kind, &mut v);
        v
    }

    #[test]
    fn node_pod_cidrs_are_kept_in_step() {
        let spec = |v: Value| defaulted("", "Node", json!({"spec": v}))["spec"].clone();
        assert_eq!(
            spec(json!({"podCIDR": "10.42.0.0/24"})),
            json!({"podCIDR": "10.42.0.0/24", "podCIDRs": ["10.42.0.0/24"]})
        );
        // podCIDRs wins, as in upstream's conversion
        assert_eq!(
            spec(json!({"podCIDR": "10.42.9.0/24", "podCIDRs": ["10.42.0.0/24", "fd00::/64"]})),
            json!({"podCIDR": "10.42.0.0/24", "podCIDRs": ["10.42.0.0/24", "fd00::/64"]})
        );
        assert_eq!(spec(json!({"podCIDR": "", "podCIDRs": []})), json!({}));
        assert_eq!(spec(json!({"podCIDR": 5})), json!({"podCIDR": 5}));
    }

    #[test]
    fn pull_policy_follows_the_tag() {
        let cases = [
            ("nginx", "Always"),
            ("nginx:latest", "Always"),
            ("nginx:1.25", "IfNotPresent"),
            ("docker.io/library/nginx", "Always"),
            ("localhost:5000/app", "Always"),
            ("localhost:5000/app:v1", "IfNotPresent"),
            ("registry.k8s.io/pause:3.10", "IfNotPresent"),
            ("busybox@sha256:abcd", "IfNotPresent"),
            ("busybox:latest@sha256:abcd", "Always"),
            ("", "IfNotPresent"),
            ("Nginx", "IfNotPresent"),
        ];
        for (image, want) in cases {
            assert_eq!(default_pull_policy(image), want, "{image}");
        }
    }

    #[test]
    fn pod_gets_spec_container_and_admission_defaults() {
        let pod = defaulted(
            "",
            "Pod",
            json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "p", "namespace": "default"},
                "spec": {
                    "containers": [{
                        "name": "c", "image": "nginx",
                        "ports": [{"containerPort": 80}],
                        "livenessProbe": {"httpGet": {"port": 80}},
                        "resources": {"limits": {"cpu": "0.5", "memory": "128Mi"}},
                        "env": [{"name": "N", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                    }],
                    "volumes": [
                        {"name": "a"},
                        {"name": "b", "configMap": {"name": "cm"}},
                        {"name": "c", "hostPath": {"path": "/tmp"}},
                    ],
                },
            }),
        );
        let spec = &pod["spec"];
        assert_eq!(spec["restartPolicy"], "Always");
        assert_eq!(spec["dnsPolicy"], "ClusterFirst");
        assert_eq!(spec["schedulerName"], "default-scheduler");
        assert_eq!(spec["terminationGracePeriodSeconds"], 30);
        assert_eq!(spec["securityContext"], json!({}));
        assert_eq!(spec["enableServiceLinks"], true);
        assert_eq!(spec["priority"], 0);
        assert_eq!(spec["preemptionPolicy"], "PreemptLowerPriority");
        let c = &spec["containers"][0];
        assert_eq!(c["terminationMessagePath"], "/dev/termination-log");
        assert_eq!(c["terminationMessagePolicy"], "File");
        assert_eq!(c["imagePullPolicy"], "Always");
        assert_eq!(c["ports"][0]["protocol"], "TCP");
        assert_eq!(
            c["livenessProbe"],
            json!({"httpGet": {"port": 80, "path": "/", "scheme": "HTTP"},
                   "timeoutSeconds": 1, "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3})
        );
        assert_eq!(c["resources"]["limits"]["cpu"], "500m");
        assert_eq!(
            c["resources"]["requests"],
            json!({"cpu": "500m", "memory": "128Mi"})
        );
        assert_eq!(c["env"][0]["valueFrom"]["fieldRef"]["apiVersion"], "v1");
        assert_eq!(spec["volumes"][0]["emptyDir"], json!({}));
        assert_eq!(spec["volumes"][1]["configMap"]["defaultMode"], 420);
        assert_eq!(spec["volumes"][2]["hostPath"]["type"], "");
        assert_eq!(
            spec["tolerations"],
            json!([
                {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
            ])
        );
        assert_eq!(
            pod["status"],
            json!({"phase": "Pending", "qosClass": "Guaranteed"})
        );
    }

    #[test]
    fn defaulting_is_idempotent() {
        let kinds: &[(&str, &str, Value)] = &[
            (
                "",
                "Pod",
                json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "x:1"}]}}),
            ),
            (
                "apps",
                "Deployment",
                json!({"spec": {"template": {"spec": {"containers": [{"name": "c"}]}}}}),
            ),
            (
                "batch",
                "Job",
                json!({"metadata": {"name": "j", "uid": "u1"}, "spec": {"template": {"spec": {}}}}),
            ),
            (
                "",
                "Service",
                json!({"spec": {"ports": [{"port": 80}], "selector": {"a": "b"}}}),
            ),
            ("", "Namespace", json!({"metadata": {"name": "n"}})),
            ("", "Secret", json!({"stringData": {"a": "b"}})),
        ];
        for (g, k, v) in kinds {
            let once = defaulted(g, k, v.clone());
            let twice = defaulted(g, k, once.clone());
            assert_eq!(once, twice, "{k}");
        }
    }

    #[test]
    fn existing_tolerations_suppress_the_defaults() {
        let cases = [
            (json!([{"operator": "Exists"}]), 1),
            (
                json!([{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"}]),
                2,
            ),
            (json!([{"key": "other", "operator": "Exists"}]), 3),
        ];
        for (tols, want) in cases {
            let pod = defaulted(
                "",
                "Pod",
                json!({"spec": {"containers": [], "tolerations": tols}}),
            );
            assert_eq!(
                pod["spec"]["tolerations"].as_array().map(Vec::len),
                Some(want)
            );
        }
    }

    #[test]
    fn priority_class_resolution() {
        let cases = [
            (json!({}), Some(0)),
            (
                json!({"priorityClassName": "system-node-critical"}),
                Some(2_000_001_000),
            ),
            (
                json!({"priorityClassName": "system-cluster-critical"}),
                Some(2_000_000_000),
            ),
            (json!({"priorityClassName": "custom"}), None),
        ];
        for (spec, want) in cases {
            let pod = defaulted("", "Pod", json!({"spec": spec}));
            assert_eq!(pod["spec"]["priority"].as_i64(), want);
        }
    }

    #[test]
    fn qos_classes() {
        let pod = |res: Value| json!({"spec": {"containers": [{"name": "c", "resources": res}]}});
        let cases = [
            (json!({}), "BestEffort"),
            (json!({"requests": {"cpu": "100m"}}), "Burstable"),
            (
                json!({"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "1", "memory": "1Gi"}}),
                "Guaranteed",
            ),
            (
                json!({"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "500m", "memory": "1Gi"}}),
                "Burstable",
            ),
            (json!({"requests": {"cpu": "0"}}), "BestEffort"),
        ];
        for (res, want) in cases {
            let v = pod(res);
            assert_eq!(pod_qos_class(v.as_object().unwrap_or(&Obj::new())), want);
        }
    }

    #[test]
    fn workload_defaults() {
        let d = defaulted(
            "apps",
            "Deployment",
            json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "a:1"}]}}}}),
        );
        assert_eq!(d["spec"]["replicas"], 1);
        assert_eq!(
            d["spec"]["strategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}})
        );
        assert_eq!(d["spec"]["revisionHistoryLimit"], 10);
        assert_eq!(d["spec"]["progressDeadlineSeconds"], 600);
        let tspec = &d["spec"]["template"]["spec"];
        assert_eq!(tspec["restartPolicy"], "Always");
        assert!(tspec.get("enableServiceLinks").is_none());
        assert!(tspec.get("tolerations").is_none());
        assert_eq!(tspec["containers"][0]["imagePullPolicy"], "IfNotPresent");

        let recreate = defaulted(
            "apps",
            "Deployment",
            json!({"spec": {"strategy": {"type": "Recreate"}}}),
        );
        assert_eq!(recreate["spec"]["strategy"], json!({"type": "Recreate"}));

        let sts = defaulted(
            "apps",
            "StatefulSet",
            json!({"spec": {"volumeClaimTemplates": [{"metadata": {"name": "www"}, "spec": {"accessModes": ["ReadWriteOnce"]}}]}}),
        );
        assert_eq!(sts["spec"]["podManagementPolicy"], "OrderedReady");
        assert_eq!(
            sts["spec"]["updateStrategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})
        );
        assert_eq!(
            sts["spec"]["persistentVolumeClaimRetentionPolicy"],
            json!({"whenDeleted": "Retain", "whenScaled": "Retain"})
        );
        let vct = &sts["spec"]["volumeClaimTemplates"][0];
        assert_eq!(vct["apiVersion"], "v1");
        assert_eq!(vct["kind"], "PersistentVolumeClaim");
        assert_eq!(vct["spec"]["volumeMode"], "Filesystem");
        assert_eq!(vct["status"]["phase"], "Pending");
        let keys: Vec<&String> = vct
            .as_object()
            .map(|o| o.keys().collect())
            .unwrap_or_default();
        assert_eq!(keys[..2], ["apiVersion", "kind"]);

        let ds = defaulted("apps", "DaemonSet", json!({"spec": {}}));
        assert_eq!(
            ds["spec"]["updateStrategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}})
        );
        let rs = defaulted("apps", "ReplicaSet", json!({"spec": {}}));
        assert_eq!(rs["spec"]["replicas"], 1);
    }

    #[test]
    fn replication_controller_copies_template_labels() {
        let rc = defaulted(
            "",
            "ReplicationController",
            json!({"metadata": {"name": "r"}, "spec": {"template": {"metadata": {"labels": {"app": "x"}}}}}),
        );
        assert_eq!(rc["spec"]["selector"], json!({"app": "x"}));
        assert_eq!(rc["metadata"]["labels"], json!({"app": "x"}));
        assert_eq!(rc["spec"]["replicas"], 1);
    }

    #[test]
    fn job_selector_and_labels() {
        let job = defaulted(
            "batch",
            "Job",
            json!({
                "metadata": {"name": "pi", "uid": "abc"},
                "spec": {"template": {"spec": {"containers": [{"name": "pi", "image": "perl"}], "restartPolicy": "Never"}}},
            }),
        );
        let labels = json!({
            "batch.kubernetes.io/controller-uid": "abc",
            "batch.kubernetes.io/job-name": "pi",
            "controller-uid": "abc",
            "job-name": "pi",
        });
        assert_eq!(job["spec"]["template"]["metadata"]["labels"], labels);
        assert_eq!(
            job["spec"]["selector"],
            json!({"matchLabels": {"batch.kubernetes.io/controller-uid": "abc"}})
        );
        assert_eq!(job["metadata"]["labels"], labels);
        let spec = &job["spec"];
        assert_eq!(spec["completions"], 1);
        assert_eq!(spec["parallelism"], 1);
        assert_eq!(spec["backoffLimit"], 6);
        assert_eq!(spec["completionMode"], "NonIndexed");
        assert_eq!(spec["suspend"], false);
        assert_eq!(spec["podReplacementPolicy"], "TerminatingOrFailed");
        assert!(spec.get("manualSelector").is_none());

        let parallel = defaulted("batch", "Job", json!({"spec": {"parallelism": 3}}));
        assert!(parallel["spec"].get("completions").is_none());
        let per_index = defaulted("batch", "Job", json!({"spec": {"backoffLimitPerIndex": 1}}));
        assert_eq!(per_index["spec"]["backoffLimit"], 2147483647);
        let manual = defaulted(
            "batch",
            "Job",
            json!({"metadata": {"name": "m", "uid": "u"}, "spec": {"manualSelector": true, "template": {}}}),
        );
        assert!(manual["spec"].get("selector").is_none());
    }

    #[test]
    fn cron_job_defaults() {
        let cj = defaulted(
            "batch",
            "CronJob",
            json!({"spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": {"spec": {"containers": []}}}}}}),
        );
        assert_eq!(cj["spec"]["concurrencyPolicy"], "Allow");
        assert_eq!(cj["spec"]["suspend"], false);
        assert_eq!(cj["spec"]["successfulJobsHistoryLimit"], 3);
        assert_eq!(cj["spec"]["failedJobsHistoryLimit"], 1);
        let job_spec = &cj["spec"]["jobTemplate"]["spec"];
        assert_eq!(job_spec["template"]["spec"]["restartPolicy"], "Always");
        assert!(job_spec.get("backoffLimit").is_none());
    }

    #[test]
    fn service_defaults() {
        let svc = defaulted(
            "",
            "Service",
            json!({"spec": {"selector": {"app": "a"}, "ports": [{"port": 80}, {"port": 53, "protocol": "UDP", "targetPort": "dns"}]}}),
        );
        let spec = &svc["spec"];
        assert_eq!(spec["type"], "ClusterIP");
        assert_eq!(spec["sessionAffinity"], "None");
        assert_eq!(
            spec["ports"][0],
            json!({"port": 80, "protocol": "TCP", "targetPort": 80})
        );
        assert_eq!(spec["ports"][1]["targetPort"], "dns");
        assert_eq!(spec["internalTrafficPolicy"], "Cluster");
        assert!(spec.get("externalTrafficPolicy").is_none());
        assert_eq!(spec["ipFamilyPolicy"], "SingleStack");
        assert_eq!(spec["ipFamilies"], json!(["IPv4"]));
        assert_eq!(svc["status"], json!({"loadBalancer": {}}));

        let lb = defaulted(
            "",
            "Service",
            json!({"spec": {"type": "LoadBalancer", "ports": []}}),
        );
        assert_eq!(lb["spec"]["externalTrafficPolicy"], "Cluster");
        assert_eq!(lb["spec"]["allocateLoadBalancerNodePorts"], true);

        let headless = defaulted("", "Service", json!({"spec": {"clusterIP": "None"}}));
        assert_eq!(headless["spec"]["clusterIPs"], json!(["None"]));
        assert_eq!(headless["spec"]["ipFamilyPolicy"], "RequireDualStack");

        let ext = defaulted(
            "",
            "Service",
            json!({"spec": {"type": "ExternalName", "externalName": "x.y"}}),
        );
        assert!(ext["spec"].get("ipFamilies").is_none());
        assert!(ext["spec"].get("internalTrafficPolicy").is_none());

        let affinity = defaulted(
            "",
            "Service",
            json!({"spec": {"sessionAffinity": "ClientIP"}}),
        );
        assert_eq!(
            affinity["spec"]["sessionAffinityConfig"],
            json!({"clientIP": {"timeoutSeconds": 10800}})
        );
    }

    #[test]
    fn namespace_defaults() {
        let ns = defaulted(
            "",
            "Namespace",
            json!({"metadata": {"name": "team", "labels": {"z": "1"}}}),
        );
        assert_eq!(
            ns["metadata"]["labels"],
            json!({"kubernetes.io/metadata.name": "team", "z": "1"})
        );
        assert_eq!(ns["spec"]["finalizers"], json!(["kubernetes"]));
        assert_eq!(ns["status"]["phase"], "Active");
        let deleting = defaulted(
            "",
            "Namespace",
            json!({"metadata": {"name": "x", "deletionTimestamp": "2024-01-01T00:00:00Z"}, "spec": {}}),
        );
        assert!(deleting["spec"].get("finalizers").is_none());
    }

    #[test]
    fn secret_folds_string_data() {
        let s = defaulted(
            "",
            "Secret",
            json!({"data": {"a": "eA==", "b": "eQ=="}, "stringData": {"b": "hello", "c": "hi!"}}),
        );
        assert_eq!(s["type"], "Opaque");
        assert_eq!(
            s["data"],
            json!({"a": "eA==", "b": "aGVsbG8=", "c": "aGkh"})
        );
        assert!(s.get("stringData").is_none());
        for (input, want) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
        ] {
            assert_eq!(base64_encode(input.as_bytes()), want);
        }
    }

    #[test]
    fn storage_defaults() {
        let pv = defaulted(
            "",
            "PersistentVolume",
            json!({"spec": {"capacity": {"storage": "1024Mi"}}}),
        );
        assert_eq!(pv["spec"]["persistentVolumeReclaimPolicy"], "Retain");
        assert_eq!(pv["spec"]["volumeMode"], "Filesystem");
        assert_eq!(pv["spec"]["capacity"]["storage"], "1Gi");
        assert_eq!(pv["status"]["phase"], "Pending");
        let pvc = defaulted("", "PersistentVolumeClaim", json!({"spec": {}}));
        assert_eq!(pvc["spec"]["volumeMode"], "Filesystem");
        assert_eq!(pvc["status"]["phase"], "Pending");
        let sc = defaulted(
            "storage.k8s.io",
            "StorageClass",
            json!({"provisioner": "x"}),
        );
        assert_eq!(sc["reclaimPolicy"], "Delete");
        assert_eq!(sc["volumeBindingMode"], "Immediate");
    }

    #[test]
    fn small_kinds() {
        let np = defaulted(
            "networking.k8s.io",
            "NetworkPolicy",
            json!({"spec": {"ingress": [{"ports": [{"port": 80}]}], "egress": [{}]}}),
        );
        assert_eq!(np["spec"]["policyTypes"], json!(["Ingress", "Egress"]));
        assert_eq!(np["spec"]["ingress"][0]["ports"][0]["protocol"], "TCP");
        let np2 = defaulted("networking.k8s.io", "NetworkPolicy", json!({"spec": {}}));
        assert_eq!(np2["spec"]["policyTypes"], json!(["Ingress"]));

        let slice = defaulted(
            "discovery.k8s.io",
            "EndpointSlice",
            json!({"ports": [{"port": 80}]}),
        );
        assert_eq!(
            slice["ports"][0],
            json!({"port": 80, "name": "", "protocol": "TCP"})
        );

        let pc = defaulted("scheduling.k8s.io", "PriorityClass", json!({"value": 5}));
        assert_eq!(pc["preemptionPolicy"], "PreemptLowerPriority");

        let rb = defaulted(
            "rbac.authorization.k8s.io",
            "RoleBinding",
            json!({"roleRef": {"kind": "Role", "name": "r"}, "subjects": [{"kind": "User", "name": "u"}, {"kind": "ServiceAccount", "name": "s"}]}),
        );
        assert_eq!(rb["roleRef"]["apiGroup"], "rbac.authorization.k8s.io");
        assert_eq!(rb["subjects"][0]["apiGroup"], "rbac.authorization.k8s.io");
        assert_eq!(rb["subjects"][1]["apiGroup"], "");

        let crd = defaulted(
            "apiextensions.k8s.io",
            "CustomResourceDefinition",
            json!({"spec": {"names": {"kind": "Widget", "plural": "widgets"}}}),
        );
        assert_eq!(crd["spec"]["names"]["singular"], "widget");
        assert_eq!(crd["spec"]["names"]["listKind"], "WidgetList");
        assert_eq!(crd["spec"]["conversion"], json!({"strategy": "None"}));

        let node = defaulted(
            "",
            "Node",
            json!({"status": {"capacity": {"cpu": "4", "memory": "8Gi"}}}),
        );
        assert_eq!(
            node["status"]["allocatable"],
            json!({"cpu": "4", "memory": "8Gi"})
        );

        let lr = defaulted(
            "",
            "LimitRange",
            json!({"spec": {"limits": [{"type": "Container", "max": {"cpu": "2"}, "min": {"memory": "64Mi"}}]}}),
        );
        assert_eq!(lr["spec"]["limits"][0]["default"], json!({"cpu": "2"}));
        assert_eq!(
            lr["spec"]["limits"][0]["defaultRequest"],
            json!({"cpu": "2", "memory": "64Mi"})
        );

        let hpa = defaulted(
            "autoscaling",
            "HorizontalPodAutoscaler",
            json!({"apiVersion": "autoscaling/v2", "spec": {"maxReplicas": 3}}),
        );
        assert_eq!(hpa["spec"]["minReplicas"], 1);
        assert_eq!(
            hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
            80
        );
        let hpa1 = defaulted(
            "autoscaling",
            "HorizontalPodAutoscaler",
            json!({"apiVersion": "autoscaling/v1", "spec": {"maxReplicas": 3}}),
        );
        assert_eq!(hpa1["spec"]["targetCPUUtilizationPercentage"], 80);
        assert!(hpa1["spec"].get("metrics").is_none());
    }

    #[test]
    fn non_objects_are_left_alone() {
        for v in [json!(null), json!([1]), json!("x"), json!({"spec": "nope"})] {
            let out = defaulted("", "Pod", v.clone());
            assert_eq!(out, v);
        }
    }
}
