//! Pods, pod templates and `PodSpec` (`ValidatePodSpec` and friends):
//! containers, ports, env, volumes and mounts, resources, probes, policies,
//! tolerations. Used for Pods and for every workload's template with the
//! right field prefix.
//!
//! Owns: the pod-spec rules. Must not: know which workload embeds the
//! template (workload-specific template rules live in `workloads`).

use std::collections::HashSet;

use serde_json::Value;

use super::meta::{validate_annotations, validate_labels};
use super::names::{
    config_map_key_errors, dns1123_label_errors, dns1123_subdomain_errors, port_name_errors,
    qualified_name_errors, relaxed_env_var_name_errors,
};
use super::{
    Errs, IS_NEGATIVE, child, get, get_arr, get_bool, get_i64, get_obj, get_str, go,
    inclusive_range, index, key, str_or_empty,
};
use crate::api::quantity::{QUANTITY_FORMAT_ERROR, Quantity, parse_quantity};

/// Every volume source a `Volume` may name (exactly one per volume).
const VOLUME_SOURCES: &[&str] = &[
    "hostPath",
    "emptyDir",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "gitRepo",
    "secret",
    "nfs",
    "iscsi",
    "glusterfs",
    "persistentVolumeClaim",
    "rbd",
    "flexVolume",
    "cinder",
    "cephfs",
    "flocker",
    "downwardAPI",
    "fc",
    "azureFile",
    "configMap",
    "vsphereVolume",
    "quobyte",
    "azureDisk",
    "photonPersistentDisk",
    "projected",
    "portworxVolume",
    "scaleIO",
    "storageos",
    "csi",
    "ephemeral",
    "image",
];

/// A Pod object.
pub(super) fn validate_pod(e: &mut Errs, pod: &Value) {
    let empty = Value::Null;
    let spec = get(pod, "spec").unwrap_or(&empty);
    validate_pod_spec(e, spec, "spec", true);
}

/// A `PodTemplateSpec` at `path` (`spec.template`, `template`, …):
/// template metadata (labels, annotations) and its spec.
pub(super) fn validate_pod_template(e: &mut Errs, t: &Value, path: &str, _for_workload: bool) {
    if let Some(meta) = get(t, "metadata") {
        let mp = child(path, "metadata");
        validate_labels(e, get(meta, "labels"), &child(&mp, "labels"));
        validate_annotations(e, get(meta, "annotations"), &child(&mp, "annotations"));
    }
    let empty = Value::Null;
    let spec = get(t, "spec").unwrap_or(&empty);
    validate_pod_spec(e, spec, &child(path, "spec"), false);
}

/// `ValidatePodSpec` at `path`. `is_pod` adds the rules upstream applies to
/// pods only (an image is required; templates may leave it to admission).
pub(super) fn validate_pod_spec(e: &mut Errs, spec: &Value, path: &str, is_pod: bool) {
    let volumes = validate_volumes(e, get_arr(spec, "volumes"), &child(path, "volumes"));
    let containers = get_arr(spec, "containers");
    let init = get_arr(spec, "initContainers");
    let mut names: HashSet<&str> = HashSet::new();
    for (i, c) in init.iter().enumerate() {
        let cp = index(&child(path, "initContainers"), i);
        validate_container(e, c, &cp, &volumes, is_pod, &mut names, true);
    }
    if containers.is_empty() {
        e.required(&child(path, "containers"), "");
    }
    for (i, c) in containers.iter().enumerate() {
        let cp = index(&child(path, "containers"), i);
        validate_container(e, c, &cp, &volumes, is_pod, &mut names, false);
    }
    let targets: HashSet<&str> = names.clone();
    for (i, c) in get_arr(spec, "ephemeralContainers").iter().enumerate() {
        let cp = index(&child(path, "ephemeralContainers"), i);
        validate_container(e, c, &cp, &volumes, is_pod, &mut names, false);
        for k in [
            "ports",
            "livenessProbe",
            "readinessProbe",
            "startupProbe",
            "lifecycle",
            "resources",
            "resizePolicy",
            "restartPolicy",
        ] {
            // upstream rejects non-zero values only (`resources: {}` is fine)
            let set = get(c, k).is_some_and(|v| match v {
                Value::Null => false,
                Value::Object(m) => !m.is_empty(),
                Value::Array(a) => !a.is_empty(),
                Value::String(s) => !s.is_empty(),
                _ => true,
            });
            if set {
                e.forbidden(&child(&cp, k), "cannot be set for an Ephemeral Container");
            }
        }
        if let Some(t) = get_str(c, "targetContainerName").filter(|t| !t.is_empty())
            && !targets.contains(t)
        {
            e.not_found(&child(&cp, "targetContainerName"), go::q(t));
        }
    }
    if get_bool(spec, "hostNetwork") == Some(true) {
        validate_host_network(e, spec, path);
    }

    if let Some(p) = get_str(spec, "restartPolicy") {
        one_of(
            e,
            &child(path, "restartPolicy"),
            p,
            &["Always", "OnFailure", "Never"],
        );
    }
    if let Some(p) = get_str(spec, "dnsPolicy") {
        one_of(
            e,
            &child(path, "dnsPolicy"),
            p,
            &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"],
        );
        if p == "None" && get(spec, "dnsConfig").is_none() {
            e.required(
                &child(path, "dnsConfig"),
                "must provide `dnsConfig` when `dnsPolicy` is None",
            );
        }
    }
    validate_labels(e, get(spec, "nodeSelector"), &child(path, "nodeSelector"));
    for k in ["serviceAccountName", "nodeName", "priorityClassName"] {
        if let Some(v) = get_str(spec, k).filter(|v| !v.is_empty()) {
            e.invalid_each(&child(path, k), v, dns1123_subdomain_errors(v));
        }
    }
    for k in ["hostname", "subdomain"] {
        if let Some(v) = get_str(spec, k).filter(|v| !v.is_empty()) {
            e.invalid_each(&child(path, k), v, dns1123_label_errors(v));
        }
    }
    if let Some(v) = get_i64(spec, "terminationGracePeriodSeconds")
        && v < 0
    {
        e.invalid(
            &child(path, "terminationGracePeriodSeconds"),
            v.to_string(),
            IS_NEGATIVE,
        );
    }
    if let Some(v) = get_i64(spec, "activeDeadlineSeconds")
        && !(1..=i64::from(i32::MAX)).contains(&v)
    {
        e.invalid(
            &child(path, "activeDeadlineSeconds"),
            v.to_string(),
            &inclusive_range(1, i64::from(i32::MAX)),
        );
    }
    validate_tolerations(e, get_arr(spec, "tolerations"), &child(path, "tolerations"));
    for (i, s) in get_arr(spec, "imagePullSecrets").iter().enumerate() {
        if str_or_empty(s, "name").is_empty() {
            e.required(
                &child(&index(&child(path, "imagePullSecrets"), i), "name"),
                "",
            );
        }
    }
    if let Some(sc) = get(spec, "securityContext") {
        validate_pod_security_context(e, sc, &child(path, "securityContext"));
    }
    if let Some(p) = get_str(spec, "preemptionPolicy") {
        one_of(
            e,
            &child(path, "preemptionPolicy"),
            p,
            &["Never", "PreemptLowerPriority"],
        );
    }
}

/// A string field that must be one of `valid` (upstream's switch with a
/// `Required` for "" and a `NotSupported` otherwise).
pub(super) fn one_of(e: &mut Errs, path: &str, v: &str, valid: &[&str]) {
    if v.is_empty() {
        e.required(path, "");
    } else if !valid.contains(&v) {
        e.not_supported(path, go::q(v), valid);
    }
}

fn validate_pod_security_context(e: &mut Errs, sc: &Value, path: &str) {
    for k in ["runAsUser", "runAsGroup", "fsGroup"] {
        if let Some(v) = get_i64(sc, k)
            && !(0..=i64::from(i32::MAX)).contains(&v)
        {
            e.invalid(
                &child(path, k),
                v.to_string(),
                &inclusive_range(0, i64::from(i32::MAX)),
            );
        }
    }
    if let Some(p) = get_str(sc, "fsGroupChangePolicy") {
        one_of(
            e,
            &child(path, "fsGroupChangePolicy"),
            p,
            &["OnRootMismatch", "Always"],
        );
    }
}

// ---------------------------------------------------------------------------
// Containers

#[allow(clippy::too_many_arguments)]
fn validate_container<'a>(
    e: &mut Errs,
    c: &'a Value,
    path: &str,
    volumes: &HashSet<String>,
    is_pod: bool,
    names: &mut HashSet<&'a str>,
    is_init: bool,
) {
    let name = str_or_empty(c, "name");
    let np = child(path, "name");
    if name.is_empty() {
        e.required(&np, "");
    } else {
        e.invalid_each(&np, name, dns1123_label_errors(name));
        if !names.insert(name) {
            e.duplicate(&np, go::q(name));
        }
    }
    let image = str_or_empty(c, "image");
    if image.is_empty() {
        if is_pod {
            e.required(&child(path, "image"), "");
        }
    } else if image.trim() != image {
        e.invalid(
            &child(path, "image"),
            go::q(image),
            "must not have leading or trailing whitespace",
        );
    }
    if let Some(p) = get_str(c, "imagePullPolicy") {
        one_of(
            e,
            &child(path, "imagePullPolicy"),
            p,
            &["Always", "IfNotPresent", "Never"],
        );
    }
    if let Some(p) = get_str(c, "terminationMessagePolicy") {
        one_of(
            e,
            &child(path, "terminationMessagePolicy"),
            p,
            &["File", "FallbackToLogsOnError"],
        );
    }
    if let Some(p) = get_str(c, "restartPolicy") {
        if is_init {
            if p != "Always" {
                e.not_supported(&child(path, "restartPolicy"), go::q(p), &["Always"]);
            }
        } else {
            e.forbidden(
                &child(path, "restartPolicy"),
                "may not be set for non-init containers",
            );
        }
    }
    validate_container_ports(e, get_arr(c, "ports"), &child(path, "ports"));
    validate_env(e, get_arr(c, "env"), &child(path, "env"));
    for (i, src) in get_arr(c, "envFrom").iter().enumerate() {
        validate_env_from(e, src, &index(&child(path, "envFrom"), i));
    }
    validate_volume_mounts(
        e,
        get_arr(c, "volumeMounts"),
        &child(path, "volumeMounts"),
        volumes,
    );
    if let Some(r) = get(c, "resources") {
        validate_resources(e, r, &child(path, "resources"));
    }
    let sidecar = is_init && get_str(c, "restartPolicy") == Some("Always");
    for (probe_key, must_be_one) in [
        ("livenessProbe", true),
        ("readinessProbe", false),
        ("startupProbe", true),
    ] {
        if let Some(p) = get(c, probe_key) {
            let pp = child(path, probe_key);
            if is_init && !sidecar {
                e.forbidden(
                    &pp,
                    "may not be set for init containers without restartPolicy=Always",
                );
                continue;
            }
            validate_probe(e, p, &pp);
            if must_be_one
                && let Some(s) = get_i64(p, "successThreshold")
                && s != 1
            {
                e.invalid(&child(&pp, "successThreshold"), s.to_string(), "must be 1");
            }
        }
    }
    if let Some(lc) = get(c, "lifecycle") {
        for k in ["postStart", "preStop"] {
            if let Some(h) = get(lc, k) {
                validate_handler(e, h, &child(&child(path, "lifecycle"), k), false);
            }
        }
    }
    if let Some(sc) = get(c, "securityContext") {
        let sp = child(path, "securityContext");
        for k in ["runAsUser", "runAsGroup"] {
            if let Some(v) = get_i64(sc, k)
                && !(0..=i64::from(i32::MAX)).contains(&v)
            {
                e.invalid(
                    &child(&sp, k),
                    v.to_string(),
                    &inclusive_range(0, i64::from(i32::MAX)),
                );
            }
        }
        if get_bool(sc, "privileged") == Some(true)
            && get_bool(sc, "allowPrivilegeEscalation") == Some(false)
        {
            e.invalid(
                &sp,
                "core.SecurityContext{...}",
                "cannot set `allowPrivilegeEscalation` to false and `privileged` to true",
            );
        }
    }
}

fn validate_container_ports(e: &mut Errs, ports: &[Value], path: &str) {
    let mut names: HashSet<&str> = HashSet::new();
    for (i, p) in ports.iter().enumerate() {
        let ip = index(path, i);
        if let Some(name) = get_str(p, "name").filter(|n| !n.is_empty()) {
            let errs = port_name_errors(name);
            if !errs.is_empty() {
                e.invalid_each(&child(&ip, "name"), name, errs);
            } else if !names.insert(name) {
                e.duplicate(&child(&ip, "name"), go::q(name));
            }
        }
        match get_i64(p, "containerPort").unwrap_or(0) {
            0 => e.required(&child(&ip, "containerPort"), ""),
            n if !(1..=65535).contains(&n) => {
                e.invalid(
                    &child(&ip, "containerPort"),
                    n.to_string(),
                    &inclusive_range(1, 65535),
                );
            }
            _ => {}
        }
        if let Some(h) = get_i64(p, "hostPort")
            && h != 0
            && !(1..=65535).contains(&h)
        {
            e.invalid(
                &child(&ip, "hostPort"),
                h.to_string(),
                &inclusive_range(1, 65535),
            );
        }
        if let Some(proto) = get_str(p, "protocol") {
            protocol(e, &child(&ip, "protocol"), proto);
        }
    }
}

/// Port protocols, checked like upstream (`sets.List` order).
pub(super) fn protocol(e: &mut Errs, path: &str, p: &str) {
    one_of(e, path, p, &["SCTP", "TCP", "UDP"]);
}

fn validate_host_network(e: &mut Errs, spec: &Value, path: &str) {
    for key_name in ["containers", "initContainers"] {
        for (i, c) in get_arr(spec, key_name).iter().enumerate() {
            for (j, p) in get_arr(c, "ports").iter().enumerate() {
                let cport = get_i64(p, "containerPort").unwrap_or(0);
                if let Some(h) = get_i64(p, "hostPort")
                    && h != 0
                    && h != cport
                {
                    let pp = index(&child(&index(&child(path, key_name), i), "ports"), j);
                    e.invalid(
                        &child(&pp, "containerPort"),
                        cport.to_string(),
                        "must match `hostPort` when `hostNetwork` is true",
                    );
                }
            }
        }
    }
}

fn validate_env(e: &mut Errs, env: &[Value], path: &str) {
    for (i, ev) in env.iter().enumerate() {
        let ip = index(path, i);
        let name = str_or_empty(ev, "name");
        if name.is_empty() {
            e.required(&child(&ip, "name"), "");
        }
        e.invalid_each(&child(&ip, "name"), name, relaxed_env_var_name_errors(name));
        if let Some(from) = get(ev, "valueFrom") {
            validate_env_value_from(e, ev, from, &child(&ip, "valueFrom"));
        }
    }
}

fn validate_env_value_from(e: &mut Errs, ev: &Value, from: &Value, path: &str) {
    let mut n = 0;
    if let Some(f) = get(from, "fieldRef") {
        n += 1;
        let fp = child(path, "fieldRef");
        if str_or_empty(f, "fieldPath").is_empty() {
            e.required(&child(&fp, "fieldPath"), "");
        }
    }
    if let Some(r) = get(from, "resourceFieldRef") {
        n += 1;
        if str_or_empty(r, "resource").is_empty() {
            e.required(&child(&child(path, "resourceFieldRef"), "resource"), "");
        }
    }
    for (k, name_key) in [("configMapKeyRef", "name"), ("secretKeyRef", "name")] {
        if let Some(r) = get(from, k) {
            n += 1;
            let rp = child(path, k);
            let name = str_or_empty(r, name_key);
            if name.is_empty() {
                e.required(&child(&rp, "name"), "");
            } else {
                e.invalid_each(&child(&rp, "name"), name, dns1123_subdomain_errors(name));
            }
            let k = str_or_empty(r, "key");
            if k.is_empty() {
                e.required(&child(&rp, "key"), "");
            } else {
                e.invalid_each(&child(&rp, "key"), k, config_map_key_errors(k));
            }
        }
    }
    if n == 0 {
        e.invalid(
            path,
            "\"\"",
            "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`",
        );
    } else if n > 1 {
        e.invalid(
            path,
            "\"\"",
            "may not have more than one field specified at a time",
        );
    } else if !str_or_empty(ev, "value").is_empty() {
        e.invalid(
            path,
            "\"\"",
            "may not be specified when `value` is not empty",
        );
    }
}

fn validate_env_from(e: &mut Errs, src: &Value, path: &str) {
    let mut n = 0;
    for k in ["configMapRef", "secretRef"] {
        if let Some(r) = get(src, k) {
            n += 1;
            let name = str_or_empty(r, "name");
            let np = child(&child(path, k), "name");
            if name.is_empty() {
                e.required(&np, "");
            } else {
                e.invalid_each(&np, name, dns1123_subdomain_errors(name));
            }
        }
    }
    if n == 0 {
        e.invalid(
            path,
            "\"\"",
            "must specify one of: `configMapRef` or `secretRef`",
        );
    } else if n > 1 {
        e.invalid(
            path,
            "\"\"",
            "may not have more than one field specified at a time",
        );
    }
}

fn validate_volume_mounts(e: &mut Errs, mounts: &[Value], path: &str, volumes: &HashSet<String>) {
    let mut paths: HashSet<&str> = HashSet::new();
    for (i, m) in mounts.iter().enumerate() {
        let ip = index(path, i);
        let name = str_or_empty(m, "name");
        if name.is_empty() {
            e.required(&child(&ip, "name"), "");
        }
        if !volumes.contains(name) {
            e.not_found(&child(&ip, "name"), go::q(name));
        }
        let mp = str_or_empty(m, "mountPath");
        if mp.is_empty() {
            e.required(&child(&ip, "mountPath"), "");
        }
        if !paths.insert(mp) {
            e.invalid(&child(&ip, "mountPath"), go::q(mp), "must be unique");
        }
        if let Some(sp) = get_str(m, "subPath").filter(|s| !s.is_empty()) {
            local_descending_path(e, sp, &child(&ip, "subPath"));
        }
        if let Some(p) = get_str(m, "mountPropagation") {
            one_of(
                e,
                &child(&ip, "mountPropagation"),
                p,
                &["Bidirectional", "HostToContainer", "None"],
            );
        }
    }
}

/// `validateLocalDescendingPath`: relative, no `..` element.
fn local_descending_path(e: &mut Errs, p: &str, path: &str) {
    if p.starts_with('/') {
        e.invalid(path, go::q(p), "must be a relative path");
    }
    if p.split('/').any(|part| part == "..") {
        e.invalid(path, go::q(p), "must not contain '..'");
    }
}

// ---------------------------------------------------------------------------
// Volumes

/// Validates the volumes and returns the set of their names.
fn validate_volumes(e: &mut Errs, volumes: &[Value], path: &str) -> HashSet<String> {
    let mut names = HashSet::new();
    for (i, v) in volumes.iter().enumerate() {
        let ip = index(path, i);
        validate_volume_source(e, v, &ip);
        let name = str_or_empty(v, "name");
        let np = child(&ip, "name");
        if name.is_empty() {
            e.required(&np, "");
        } else {
            e.invalid_each(&np, name, dns1123_label_errors(name));
        }
        if !names.insert(name.to_string()) {
            e.duplicate(&np, go::q(name));
        }
    }
    names
}

fn validate_volume_source(e: &mut Errs, v: &Value, path: &str) {
    let mut n = 0;
    for &src in VOLUME_SOURCES {
        let Some(s) = get(v, src) else { continue };
        if n > 0 {
            e.forbidden(&child(path, src), "may not specify more than 1 volume type");
            continue;
        }
        n += 1;
        let sp = child(path, src);
        match src {
            "hostPath" => {
                if str_or_empty(s, "path").is_empty() {
                    e.required(&child(&sp, "path"), "");
                }
                if let Some(t) = get_str(s, "type") {
                    let valid = [
                        "",
                        "DirectoryOrCreate",
                        "Directory",
                        "FileOrCreate",
                        "File",
                        "Socket",
                        "CharDevice",
                        "BlockDevice",
                    ];
                    if !valid.contains(&t) {
                        e.not_supported(&child(&sp, "type"), go::q(t), &valid);
                    }
                }
            }
            "emptyDir" => {
                if let Some(m) = get_str(s, "medium")
                    && !["", "Memory", "HugePages"].contains(&m)
                    && !m.starts_with("HugePages-")
                {
                    e.not_supported(
                        &child(&sp, "medium"),
                        go::q(m),
                        &["", "Memory", "HugePages"],
                    );
                }
                if let Some(q) = get(s, "sizeLimit") {
                    quantity_field(e, q, &child(&sp, "sizeLimit"), true);
                }
            }
            "secret" => {
                let name = str_or_empty(s, "secretName");
                if name.is_empty() {
                    e.required(&child(&sp, "secretName"), "");
                } else {
                    e.invalid_each(
                        &child(&sp, "secretName"),
                        name,
                        dns1123_subdomain_errors(name),
                    );
                }
                key_to_path_items(e, s, &sp);
            }
            "configMap" => {
                let name = str_or_empty(s, "name");
                if name.is_empty() {
                    e.required(&child(&sp, "name"), "");
                } else {
                    e.invalid_each(&child(&sp, "name"), name, dns1123_subdomain_errors(name));
                }
                key_to_path_items(e, s, &sp);
            }
            "persistentVolumeClaim" if str_or_empty(s, "claimName").is_empty() => {
                e.required(&child(&sp, "claimName"), "");
            }
            "nfs" => {
                if str_or_empty(s, "server").is_empty() {
                    e.required(&child(&sp, "server"), "");
                }
                let p = str_or_empty(s, "path");
                if p.is_empty() {
                    e.required(&child(&sp, "path"), "");
                } else if !p.starts_with('/') {
                    e.invalid(&child(&sp, "path"), go::q(p), "must be an absolute path");
                }
            }
            "csi" if str_or_empty(s, "driver").is_empty() => {
                e.required(&child(&sp, "driver"), "");
            }
            "image" if str_or_empty(s, "reference").is_empty() => {
                e.required(&child(&sp, "reference"), "");
            }
            _ => {}
        }
        if let Some(mode) = get_i64(s, "defaultMode")
            && !(0..=0o777).contains(&mode)
        {
            e.invalid(
                &child(&sp, "defaultMode"),
                mode.to_string(),
                "must be a number between 0 and 0777 (octal), both inclusive",
            );
        }
    }
    if n == 0 {
        e.required(path, "must specify a volume type");
    }
}

fn key_to_path_items(e: &mut Errs, s: &Value, path: &str) {
    for (i, item) in get_arr(s, "items").iter().enumerate() {
        let ip = index(&child(path, "items"), i);
        if str_or_empty(item, "key").is_empty() {
            e.required(&child(&ip, "key"), "");
        }
        let p = str_or_empty(item, "path");
        if p.is_empty() {
            e.required(&child(&ip, "path"), "");
        } else {
            local_descending_path(e, p, &child(&ip, "path"));
        }
        if let Some(mode) = get_i64(item, "mode")
            && !(0..=0o777).contains(&mode)
        {
            e.invalid(
                &child(&ip, "mode"),
                mode.to_string(),
                "must be a number between 0 and 0777 (octal), both inclusive",
            );
        }
    }
}

// ---------------------------------------------------------------------------
// Resources

/// Parses a quantity held in JSON (string or number).
pub(super) fn json_quantity(v: &Value) -> Option<Quantity> {
    match v {
        Value::String(s) => parse_quantity(s),
        Value::Number(n) => parse_quantity(&n.to_string()),
        _ => None,
    }
}

/// A quantity field: parseable and (if `nonneg`) not negative. Returns it.
pub(super) fn quantity_field(
    e: &mut Errs,
    v: &Value,
    path: &str,
    nonneg: bool,
) -> Option<Quantity> {
    match json_quantity(v) {
        None => {
            e.invalid(path, go::scalar(Some(v)), QUANTITY_FORMAT_ERROR);
            None
        }
        Some(q) => {
            if nonneg && q.is_negative() {
                e.invalid(path, go::q(&q.canonical()), IS_NEGATIVE);
            }
            Some(q)
        }
    }
}

fn is_native_container_resource(name: &str) -> bool {
    matches!(name, "cpu" | "memory" | "ephemeral-storage") || name.starts_with("hugepages-")
}

/// An extended resource: a domain-prefixed name outside `kubernetes.io/`.
fn is_extended_resource(name: &str) -> bool {
    name.contains('/')
        && !name.contains("kubernetes.io/")
        && !name.starts_with("requests.")
        && qualified_name_errors(name).is_empty()
}

/// `ValidateResourceRequirements` for a container.
pub(super) fn validate_resources(e: &mut Errs, r: &Value, path: &str) {
    let limits_path = child(path, "limits");
    let requests_path = child(path, "requests");
    let mut limits: Vec<(&str, Quantity)> = Vec::new();
    if let Some(m) = get_obj(r, "limits") {
        for (name, v) in m {
            let fp = key(&limits_path, name);
            container_resource_name(e, name, &fp);
            if let Some(q) = quantity_field(e, v, &fp, true) {
                integer_resource(e, name, &q, &fp);
                limits.push((name, q));
            }
        }
    }
    if let Some(m) = get_obj(r, "requests") {
        for (name, v) in m {
            let fp = key(&requests_path, name);
            container_resource_name(e, name, &fp);
            let Some(q) = quantity_field(e, v, &fp, true) else {
                continue;
            };
            integer_resource(e, name, &q, &fp);
            match limits.iter().find(|(n, _)| n == name) {
                Some((_, lim)) => {
                    if is_extended_resource(name) && q != *lim {
                        e.invalid(
                            &requests_path,
                            go::q(&q.canonical()),
                            &format!("must be equal to {name} limit of {}", lim.canonical()),
                        );
                    } else if q > *lim {
                        e.invalid(
                            &requests_path,
                            go::q(&q.canonical()),
                            &format!(
                                "must be less than or equal to {name} limit of {}",
                                lim.canonical()
                            ),
                        );
                    }
                }
                None => {
                    if is_extended_resource(name) {
                        e.required(
                            &key(&limits_path, name),
                            "Limit must be set for non overcommitable resources",
                        );
                    }
                }
            }
        }
    }
}

fn container_resource_name(e: &mut Errs, name: &str, path: &str) {
    let errs = qualified_name_errors(name);
    if !errs.is_empty() {
        e.invalid_each(path, name, errs);
        return;
    }
    if !is_native_container_resource(name) && !is_extended_resource(name) {
        e.invalid(
            path,
            go::q(name),
            "must be a standard resource for containers",
        );
    }
}

fn integer_resource(e: &mut Errs, name: &str, q: &Quantity, path: &str) {
    if is_extended_resource(name) && q.milli_value() % 1000 != 0 {
        e.invalid(path, go::q(&q.canonical()), "must be an integer");
    }
}

// ---------------------------------------------------------------------------
// Probes and handlers

fn validate_probe(e: &mut Errs, p: &Value, path: &str) {
    validate_handler(e, p, path, true);
    for k in [
        "initialDelaySeconds",
        "timeoutSeconds",
        "periodSeconds",
        "successThreshold",
        "failureThreshold",
    ] {
        e.nonnegative(&child(path, k), get_i64(p, k));
    }
    if let Some(t) = get_i64(p, "terminationGracePeriodSeconds")
        && t <= 0
    {
        e.invalid(
            &child(path, "terminationGracePeriodSeconds"),
            t.to_string(),
            "must be greater than 0",
        );
    }
}

/// `validateHandler` (probes: exec/httpGet/tcpSocket/grpc; lifecycle
/// hooks: exec/httpGet/tcpSocket/sleep).
fn validate_handler(e: &mut Errs, h: &Value, path: &str, probe: bool) {
    let kinds: &[&str] = if probe {
        &["exec", "httpGet", "tcpSocket", "grpc"]
    } else {
        &["exec", "httpGet", "tcpSocket", "sleep"]
    };
    let mut n = 0;
    for &k in kinds {
        let Some(v) = get(h, k) else { continue };
        if n > 0 {
            e.forbidden(&child(path, k), "may not specify more than 1 handler type");
            continue;
        }
        n += 1;
        let hp = child(path, k);
        match k {
            "exec" if get_arr(v, "command").is_empty() => {
                e.required(&child(&hp, "command"), "");
            }
            "httpGet" => {
                if let Some(p) = get_str(v, "path")
                    && p.is_empty()
                {
                    e.required(&child(&hp, "path"), "");
                }
                port_num_or_name(e, get(v, "port"), &child(&hp, "port"));
                if let Some(s) = get_str(v, "scheme")
                    && !["HTTP", "HTTPS"].contains(&s)
                {
                    e.not_supported(&child(&hp, "scheme"), go::q(s), &["HTTP", "HTTPS"]);
                }
            }
            "tcpSocket" => port_num_or_name(e, get(v, "port"), &child(&hp, "port")),
            "grpc" => {
                let port = get_i64(v, "port").unwrap_or(0);
                if !(1..=65535).contains(&port) {
                    e.invalid(
                        &child(&hp, "port"),
                        port.to_string(),
                        &inclusive_range(1, 65535),
                    );
                }
            }
            "sleep" => {
                if let Some(s) = get_i64(v, "seconds")
                    && s < 0
                {
                    e.invalid(&child(&hp, "seconds"), s.to_string(), IS_NEGATIVE);
                }
            }
            _ => {}
        }
    }
    if n == 0 {
        e.required(path, "must specify a handler type");
    }
}

/// `ValidatePortNumOrName` of an IntOrString held in JSON.
pub(super) fn port_num_or_name(e: &mut Errs, v: Option<&Value>, path: &str) {
    match v {
        Some(Value::String(s)) => e.invalid_each(path, s, port_name_errors(s)),
        Some(Value::Number(n)) => {
            let n = n.as_i64().unwrap_or(0);
            if !(1..=65535).contains(&n) {
                e.invalid(path, n.to_string(), &inclusive_range(1, 65535));
            }
        }
        _ => e.invalid(path, "0", &inclusive_range(1, 65535)),
    }
}

// ---------------------------------------------------------------------------
// Tolerations

pub(super) fn validate_tolerations(e: &mut Errs, tolerations: &[Value], path: &str) {
    for (i, t) in tolerations.iter().enumerate() {
        let ip = index(path, i);
        let k = str_or_empty(t, "key");
        if !k.is_empty() {
            e.invalid_each(&child(&ip, "key"), k, qualified_name_errors(k));
        }
        let op = str_or_empty(t, "operator");
        if k.is_empty() && op != "Exists" {
            e.invalid(
                &child(&ip, "operator"),
                go::q(op),
                "operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
            );
        }
        let effect = str_or_empty(t, "effect");
        if get(t, "tolerationSeconds").is_some() && effect != "NoExecute" {
            e.invalid(
                &child(&ip, "effect"),
                go::q(effect),
                "effect must be 'NoExecute' when `tolerationSeconds` is set",
            );
        }
        let value = str_or_empty(t, "value");
        match op {
            "Equal" | "" => {
                let errs = super::names::label_value_errors(value);
                if !errs.is_empty() {
                    e.invalid(&child(&ip, "operator"), go::q(value), &errs.join(";"));
                }
            }
            "Exists" => {
                if !value.is_empty() {
                    e.invalid(
                        &child(&ip, "operator"),
                        format!(
                            "core.Toleration{{Key:{}, Operator:{}, Value:{}, Effect:{}, TolerationSeconds:(*int64)(nil)}}",
                            go::q(k),
                            go::q(op),
                            go::q(value),
                            go::q(effect)
                        ),
                        "value must be empty when `operator` is 'Exists'",
                    );
                }
            }
            _ => e.not_supported(&child(&ip, "operator"), go::q(op), &["Equal", "Exists"]),
        }
        if !effect.is_empty() && !["NoSchedule", "PreferNoSchedule", "NoExecute"].contains(&effect)
        {
            e.not_supported(
                &child(&ip, "effect"),
                go::q(effect),
                &["NoSchedule", "PreferNoSchedule", "NoExecute"],
            );
        }
    }
}
