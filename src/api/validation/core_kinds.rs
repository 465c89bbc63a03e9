//! Core (`v1`) kinds other than pods and controllers: Service, ConfigMap,
//! Secret, Namespace, Node, Event, Endpoints, PersistentVolume(Claim),
//! ResourceQuota, LimitRange (`pkg/apis/core/validation`).
//!
//! Owns: their create-time rules. Must not: allocate or check cluster IPs
//! and node ports against the cluster (the allocators do that).

use std::collections::HashSet;

use serde_json::Value;

use super::meta::validate_label_selector;
use super::names::{
    cidr_errors, config_map_key_errors, dns1123_label_errors, dns1123_subdomain_errors, ip_errors,
    qualified_name_errors,
};
use super::pod::{one_of, port_num_or_name, protocol, quantity_field};
use super::{
    Errs, IS_NOT_POSITIVE, child, get, get_arr, get_i64, get_obj, get_str, get_strs, go, index,
    key, str_or_empty,
};

/// Upstream `MaxSecretSize` (also the ConfigMap limit).
const MAX_SECRET_SIZE: usize = 1024 * 1024;

// ---------------------------------------------------------------------------
// Service

pub(super) fn validate_service(e: &mut Errs, obj: &Value) {
    let empty = Value::Null;
    let spec = get(obj, "spec").unwrap_or(&empty);
    let ty = get_str(spec, "type").unwrap_or("ClusterIP");
    let cluster_ips: Vec<&str> = match get(spec, "clusterIPs") {
        Some(_) => get_strs(spec, "clusterIPs"),
        None => get_str(spec, "clusterIP")
            .filter(|s| !s.is_empty())
            .into_iter()
            .collect(),
    };
    let headless = cluster_ips.first() == Some(&"None");
    let ports = get_arr(spec, "ports");
    if ports.is_empty() && !headless && ty != "ExternalName" {
        e.required("spec.ports", "");
    }
    match ty {
        "LoadBalancer" => {
            for (i, p) in ports.iter().enumerate() {
                if get_i64(p, "port") == Some(10250) {
                    e.invalid(
                        &index("spec.ports", i),
                        "10250",
                        "may not expose port 10250 externally since it is used by kubelet",
                    );
                }
            }
            if headless {
                e.invalid(
                    "spec.clusterIPs[0]",
                    "\"None\"",
                    "may not be set to 'None' for LoadBalancer services",
                );
            }
        }
        "NodePort" if headless => {
            e.invalid(
                "spec.clusterIPs[0]",
                "\"None\"",
                "may not be set to 'None' for NodePort services",
            );
        }
        "ExternalName" => {
            if !cluster_ips.is_empty() {
                e.forbidden(
                    "spec.clusterIPs",
                    "may not be set for ExternalName services",
                );
            }
            if !get_arr(spec, "ipFamilies").is_empty() {
                e.forbidden(
                    "spec.ipFamilies",
                    "may not be set for ExternalName services",
                );
            }
            if get(spec, "ipFamilyPolicy").is_some() {
                e.forbidden(
                    "spec.ipFamilyPolicy",
                    "may not be set for ExternalName services",
                );
            }
            let cname = str_or_empty(spec, "externalName");
            let cname = cname.strip_suffix('.').unwrap_or(cname);
            if cname.is_empty() {
                e.required("spec.externalName", "");
            } else {
                e.invalid_each("spec.externalName", cname, dns1123_subdomain_errors(cname));
            }
        }
        _ => {}
    }
    let mut names: HashSet<&str> = HashSet::new();
    for (i, p) in ports.iter().enumerate() {
        validate_service_port(e, p, ports.len() > 1, &mut names, &index("spec.ports", i));
    }
    super::meta::validate_labels(e, get(spec, "selector"), "spec.selector");
    if let Some(a) = get_str(spec, "sessionAffinity") {
        one_of(e, "spec.sessionAffinity", a, &["ClientIP", "None"]);
    }
    if let Some(t) = get_str(spec, "type") {
        one_of(
            e,
            "spec.type",
            t,
            &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"],
        );
    }
    if ty == "ClusterIP" {
        for (i, p) in ports.iter().enumerate() {
            if get_i64(p, "nodePort").is_some_and(|n| n != 0) {
                e.forbidden(
                    &child(&index("spec.ports", i), "nodePort"),
                    "may not be used when `type` is 'ClusterIP'",
                );
            }
        }
    }
    // Duplicate nodePorts and (port, protocol) pairs.
    let mut node_ports: HashSet<(i64, &str)> = HashSet::new();
    let mut pairs: HashSet<(i64, &str)> = HashSet::new();
    for (i, p) in ports.iter().enumerate() {
        let proto = get_str(p, "protocol").unwrap_or("TCP");
        if let Some(np) = get_i64(p, "nodePort").filter(|n| *n != 0)
            && !node_ports.insert((np, proto))
        {
            e.duplicate(&child(&index("spec.ports", i), "nodePort"), np.to_string());
        }
        let port = get_i64(p, "port").unwrap_or(0);
        if !pairs.insert((port, proto)) {
            e.duplicate(
                &index("spec.ports", i),
                format!(
                    "core.ServicePort{{Name:\"\", Protocol:{}, AppProtocol:(*string)(nil), Port:{port}, TargetPort:intstr.IntOrString{{Type:0, IntVal:0, StrVal:\"\"}}, NodePort:0}}",
                    go::q(proto)
                ),
            );
        }
    }
    // clusterIPs: "None" only alone and first; otherwise valid IPs.
    let cip_path = if get(spec, "clusterIPs").is_some() {
        "spec.clusterIPs"
    } else {
        "spec.clusterIP"
    };
    for (i, ip) in cluster_ips.iter().enumerate() {
        let fp = if cip_path == "spec.clusterIPs" {
            index(cip_path, i)
        } else {
            cip_path.to_string()
        };
        if i == 0 && *ip == "None" {
            if cluster_ips.len() > 1 {
                e.invalid(
                    cip_path,
                    go::string_slice(get(spec, "clusterIPs")),
                    "'None' must be the first and only value",
                );
            }
            continue;
        }
        e.invalid_each(&fp, ip, ip_errors(ip));
    }
    for (i, ip) in get_strs(spec, "externalIPs").iter().enumerate() {
        e.invalid_each(&index("spec.externalIPs", i), ip, ip_errors(ip));
    }
    for (i, r) in get_strs(spec, "loadBalancerSourceRanges")
        .iter()
        .enumerate()
    {
        e.invalid_each(
            &index("spec.loadBalancerSourceRanges", i),
            r,
            cidr_errors(r.trim()),
        );
    }
    for (k, valid) in [
        ("externalTrafficPolicy", &["Cluster", "Local"][..]),
        ("internalTrafficPolicy", &["Cluster", "Local"][..]),
        (
            "ipFamilyPolicy",
            &["SingleStack", "PreferDualStack", "RequireDualStack"][..],
        ),
    ] {
        if let Some(v) = get_str(spec, k) {
            one_of(e, &format!("spec.{k}"), v, valid);
        }
    }
    for (i, f) in get_strs(spec, "ipFamilies").iter().enumerate() {
        if !["IPv4", "IPv6"].contains(f) {
            e.not_supported(&index("spec.ipFamilies", i), go::q(f), &["IPv4", "IPv6"]);
        }
    }
}

fn validate_service_port<'a>(
    e: &mut Errs,
    p: &'a Value,
    require_name: bool,
    names: &mut HashSet<&'a str>,
    path: &str,
) {
    let name = str_or_empty(p, "name");
    if require_name && name.is_empty() {
        e.required(&child(path, "name"), "");
    } else if !name.is_empty() {
        e.invalid_each(&child(path, "name"), name, dns1123_label_errors(name));
        if !names.insert(name) {
            e.duplicate(&child(path, "name"), go::q(name));
        }
    }
    let port = get_i64(p, "port").unwrap_or(0);
    if !(1..=65535).contains(&port) {
        e.invalid(
            &child(path, "port"),
            port.to_string(),
            &super::inclusive_range(1, 65535),
        );
    }
    if let Some(proto) = get_str(p, "protocol") {
        protocol(e, &child(path, "protocol"), proto);
    }
    if let Some(tp) = get(p, "targetPort") {
        port_num_or_name(e, Some(tp), &child(path, "targetPort"));
    }
    if let Some(np) = get_i64(p, "nodePort")
        && np != 0
        && !(1..=65535).contains(&np)
    {
        e.invalid(
            &child(path, "nodePort"),
            np.to_string(),
            &super::inclusive_range(1, 65535),
        );
    }
    if let Some(ap) = get_str(p, "appProtocol") {
        e.invalid_each(&child(path, "appProtocol"), ap, qualified_name_errors(ap));
    }
}

// ---------------------------------------------------------------------------
// ConfigMap and Secret

/// Decoded length of a base64 string (standard alphabet, padded).
fn base64_decoded_len(s: &str) -> usize {
    let trimmed = s.trim_end_matches('=');
    trimmed.len() * 3 / 4
}

/// Decodes standard base64 (padding optional); `None` when malformed.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut buf = 0u32;
    let mut bits = 0;
    for c in s.trim_end_matches('=').bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        buf = (buf << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buf >> bits) as u8);
            buf &= (1 << bits) - 1;
        }
    }
    Some(out)
}

pub(super) fn validate_config_map(e: &mut Errs, obj: &Value) {
    let data = get_obj(obj, "data");
    let binary = get_obj(obj, "binaryData");
    let mut total = 0usize;
    if let Some(d) = data {
        for (k, v) in d {
            let fp = key("data", k);
            e.invalid_each(&fp, k, config_map_key_errors(k));
            if binary.is_some_and(|b| b.contains_key(k)) {
                e.invalid(&fp, go::q(k), "duplicate of key present in binaryData");
            }
            total += v.as_str().map_or(0, str::len);
        }
    }
    if let Some(b) = binary {
        for (k, v) in b {
            let fp = key("binaryData", k);
            e.invalid_each(&fp, k, config_map_key_errors(k));
            if data.is_some_and(|d| d.contains_key(k)) {
                e.invalid(&fp, go::q(k), "duplicate of key present in data");
            }
            total += v.as_str().map_or(0, base64_decoded_len);
        }
    }
    if total > MAX_SECRET_SIZE {
        e.too_long("", MAX_SECRET_SIZE);
    }
}

pub(super) fn validate_secret(e: &mut Errs, obj: &Value) {
    let data = get_obj(obj, "data");
    let string_data = get_obj(obj, "stringData");
    let mut total = 0usize;
    if let Some(d) = data {
        for (k, v) in d {
            e.invalid_each(&key("data", k), k, config_map_key_errors(k));
            total += v.as_str().map_or(0, base64_decoded_len);
        }
    }
    if let Some(d) = string_data {
        for (k, v) in d {
            if data.is_some_and(|d| d.contains_key(k)) {
                continue;
            }
            e.invalid_each(&key("stringData", k), k, config_map_key_errors(k));
            total += v.as_str().map_or(0, str::len);
        }
    }
    if total > MAX_SECRET_SIZE {
        e.too_long("data", MAX_SECRET_SIZE);
    }
    let has = |k: &str| {
        data.is_some_and(|d| d.contains_key(k)) || string_data.is_some_and(|d| d.contains_key(k))
    };
    // The bytes of a data key, from data (base64) or stringData.
    let bytes = |k: &str| -> Option<Vec<u8>> {
        if let Some(v) = data.and_then(|d| d.get(k)).and_then(Value::as_str) {
            return base64_decode(v);
        }
        string_data
            .and_then(|d| d.get(k))
            .and_then(Value::as_str)
            .map(|s| s.as_bytes().to_vec())
    };
    let ty = get_str(obj, "type").unwrap_or("Opaque");
    match ty {
        "kubernetes.io/service-account-token" => {
            let name = get(obj, "metadata")
                .and_then(|m| get(m, "annotations"))
                .and_then(|a| get_str(a, "kubernetes.io/service-account.name"))
                .unwrap_or("");
            if name.is_empty() {
                e.required(
                    "metadata.annotations[kubernetes.io/service-account.name]",
                    "",
                );
            }
        }
        "kubernetes.io/dockercfg" | "kubernetes.io/dockerconfigjson" => {
            let k = if ty == "kubernetes.io/dockercfg" {
                ".dockercfg"
            } else {
                ".dockerconfigjson"
            };
            if !has(k) {
                e.required(&key("data", k), "");
            } else if let Some(b) = bytes(k) {
                let parsed: Result<serde_json::Map<String, Value>, _> = serde_json::from_slice(&b);
                if let Err(err) = parsed {
                    e.invalid(
                        &key("data", k),
                        "\"<secret contents redacted>\"",
                        &err.to_string(),
                    );
                }
            }
        }
        "kubernetes.io/basic-auth" if !has("username") && !has("password") => {
            e.required("data[username]", "");
            e.required("data[password]", "");
        }
        "kubernetes.io/ssh-auth" if bytes("ssh-privatekey").is_none_or(|b| b.is_empty()) => {
            e.required("data[ssh-privatekey]", "");
        }
        "kubernetes.io/tls" => {
            if !has("tls.crt") {
                e.required("data[tls.crt]", "");
            }
            if !has("tls.key") {
                e.required("data[tls.key]", "");
            }
        }
        _ => {}
    }
}

// ---------------------------------------------------------------------------
// Namespace, Node, Event, Endpoints

pub(super) fn validate_namespace(e: &mut Errs, obj: &Value) {
    if let Some(spec) = get(obj, "spec") {
        for f in get_strs(spec, "finalizers") {
            e.invalid_each("spec.finalizers", f, qualified_name_errors(f));
            if !f.contains('/') && f != "kubernetes" {
                e.not_supported("spec.finalizers", go::q(f), &["kubernetes"]);
            }
        }
    }
}

pub(super) fn validate_node(e: &mut Errs, obj: &Value) {
    let Some(spec) = get(obj, "spec") else {
        return;
    };
    let mut cidrs = get_strs(spec, "podCIDRs");
    if cidrs.is_empty()
        && let Some(c) = get_str(spec, "podCIDR").filter(|c| !c.is_empty())
    {
        cidrs.push(c);
    }
    for (i, c) in cidrs.iter().enumerate() {
        e.invalid_each(&index("spec.podCIDRs", i), c, cidr_errors(c));
    }
    for (i, t) in get_arr(spec, "taints").iter().enumerate() {
        let tp = index("spec.taints", i);
        let k = str_or_empty(t, "key");
        if k.is_empty() {
            e.required(&child(&tp, "key"), "");
        } else {
            e.invalid_each(&child(&tp, "key"), k, qualified_name_errors(k));
        }
        let v = str_or_empty(t, "value");
        e.invalid_each(&child(&tp, "value"), v, super::names::label_value_errors(v));
        one_of(
            e,
            &child(&tp, "effect"),
            str_or_empty(t, "effect"),
            &["NoSchedule", "PreferNoSchedule", "NoExecute"],
        );
    }
}

/// Events (`legacyValidateEvent` plus the events.k8s.io required fields).
pub(super) fn validate_event(e: &mut Errs, obj: &Value, events_group: bool) {
    let ns = get(obj, "metadata")
        .map(|m| str_or_empty(m, "namespace"))
        .unwrap_or("");
    let involved_key = if events_group {
        "regarding"
    } else {
        "involvedObject"
    };
    let involved_ns = get(obj, involved_key)
        .map(|o| str_or_empty(o, "namespace"))
        .unwrap_or("");
    let involved_ns_path = format!("{involved_key}.namespace");
    let event_time =
        get(obj, "eventTime").is_some_and(|t| t.as_str().is_some_and(|s| !s.is_empty()));
    if !event_time && !events_group {
        let ok = if involved_ns.is_empty() {
            ns.is_empty() || ns == "default"
        } else {
            ns == involved_ns
        };
        if !ok {
            e.invalid(
                &involved_ns_path,
                go::q(involved_ns),
                "does not match event.namespace",
            );
        }
    } else {
        if involved_ns.is_empty() && ns != "default" && ns != "kube-system" {
            e.invalid(
                &involved_ns_path,
                go::q(involved_ns),
                "does not match event.namespace",
            );
        }
        let rc_field = if events_group {
            "reportingController"
        } else {
            "source"
        };
        // The v1 JSON name of ReportingController is reportingComponent.
        let rc_key = if events_group {
            "reportingController"
        } else {
            "reportingComponent"
        };
        let rc = str_or_empty(obj, rc_key);
        if rc.is_empty() {
            e.required(rc_field, "");
        } else {
            e.invalid_each(rc_field, rc, qualified_name_errors(rc));
        }
        let ri = str_or_empty(obj, "reportingInstance");
        if ri.is_empty() {
            e.required("reportingInstance", "");
        } else if ri.len() > 128 {
            e.invalid(
                "reportingInstance",
                "\"\"",
                "can have at most 128 characters",
            );
        }
        let action = str_or_empty(obj, "action");
        if action.is_empty() {
            e.required("action", "");
        } else if action.len() > 128 {
            e.invalid("action", "\"\"", "can have at most 128 characters");
        }
        let reason = str_or_empty(obj, "reason");
        if reason.is_empty() {
            e.required("reason", "");
        } else if reason.len() > 128 {
            e.invalid("reason", "\"\"", "can have at most 128 characters");
        }
        let note_key = if events_group { "note" } else { "message" };
        if str_or_empty(obj, note_key).len() > 1024 {
            e.invalid(note_key, "\"\"", "can have at most 1024 characters");
        }
    }
}

pub(super) fn validate_endpoints(e: &mut Errs, obj: &Value) {
    for (i, subset) in get_arr(obj, "subsets").iter().enumerate() {
        let sp = index("subsets", i);
        for list in ["addresses", "notReadyAddresses"] {
            for (j, a) in get_arr(subset, list).iter().enumerate() {
                let ap = index(&child(&sp, list), j);
                let ip = str_or_empty(a, "ip");
                e.invalid_each(&child(&ap, "ip"), ip, ip_errors(ip));
                if let Some(h) = get_str(a, "hostname").filter(|h| !h.is_empty()) {
                    e.invalid_each(&child(&ap, "hostname"), h, dns1123_label_errors(h));
                }
                if let Some(n) = get_str(a, "nodeName").filter(|h| !h.is_empty()) {
                    e.invalid_each(&child(&ap, "nodeName"), n, dns1123_subdomain_errors(n));
                }
            }
        }
        let ports = get_arr(subset, "ports");
        let mut names = HashSet::new();
        for (j, p) in ports.iter().enumerate() {
            let pp = index(&child(&sp, "ports"), j);
            let name = str_or_empty(p, "name");
            if ports.len() > 1 && name.is_empty() {
                e.required(&child(&pp, "name"), "");
            } else if !name.is_empty() {
                e.invalid_each(&child(&pp, "name"), name, dns1123_label_errors(name));
                if !names.insert(name) {
                    e.duplicate(&child(&pp, "name"), go::q(name));
                }
            }
            let port = get_i64(p, "port").unwrap_or(0);
            if !(1..=65535).contains(&port) {
                e.invalid(
                    &child(&pp, "port"),
                    port.to_string(),
                    &super::inclusive_range(1, 65535),
                );
            }
            if let Some(proto) = get_str(p, "protocol") {
                protocol(e, &child(&pp, "protocol"), proto);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Storage

const ACCESS_MODES: &[&str] = &[
    "ReadOnlyMany",
    "ReadWriteMany",
    "ReadWriteOnce",
    "ReadWriteOncePod",
];

fn access_modes(e: &mut Errs, spec: &Value, path: &str, required_detail: &str) {
    let modes = get_strs(spec, "accessModes");
    let mp = child(path, "accessModes");
    if modes.is_empty() {
        e.required(&mp, required_detail);
    }
    for m in &modes {
        if !ACCESS_MODES.contains(m) {
            e.not_supported(&mp, go::q(m), ACCESS_MODES);
        }
    }
    if modes.contains(&"ReadWriteOncePod") && modes.len() > 1 {
        e.forbidden(&mp, "may not use ReadWriteOncePod with other access modes");
    }
}

const PV_SOURCES: &[&str] = &[
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "hostPath",
    "glusterfs",
    "nfs",
    "rbd",
    "quobyte",
    "iscsi",
    "cephfs",
    "cinder",
    "fc",
    "flocker",
    "flexVolume",
    "azureFile",
    "vsphereVolume",
    "azureDisk",
    "photonPersistentDisk",
    "portworxVolume",
    "scaleIO",
    "local",
    "storageos",
    "csi",
];

pub(super) fn validate_pv(e: &mut Errs, obj: &Value) {
    let empty = Value::Null;
    let spec = get(obj, "spec").unwrap_or(&empty);
    access_modes(e, spec, "spec", "");
    match get_obj(spec, "capacity") {
        None => e.required("spec.capacity", ""),
        Some(cap) if cap.is_empty() => e.required("spec.capacity", ""),
        Some(cap) => {
            if !cap.contains_key("storage") || cap.len() > 1 {
                let keys: Vec<String> = cap.keys().map(|k| go::q(k)).collect();
                e.not_supported(
                    "spec.capacity",
                    format!("core.ResourceList{{{}}}", keys.join(", ")),
                    &["storage"],
                );
            }
            for (k, v) in cap {
                quantity_field(e, v, &key("spec.capacity", k), true);
            }
        }
    }
    if let Some(p) = get_str(spec, "persistentVolumeReclaimPolicy") {
        one_of(
            e,
            "spec.persistentVolumeReclaimPolicy",
            p,
            &["Delete", "Recycle", "Retain"],
        );
    }
    if let Some(m) = get_str(spec, "volumeMode") {
        one_of(e, "spec.volumeMode", m, &["Block", "Filesystem"]);
    }
    let mut n = 0;
    for &src in PV_SOURCES {
        let Some(s) = get(spec, src) else { continue };
        if n > 0 {
            e.forbidden(
                &child("spec", src),
                "may not specify more than 1 volume type",
            );
            continue;
        }
        n += 1;
        let sp = child("spec", src);
        match src {
            "hostPath" | "local" => {
                let p = str_or_empty(s, "path");
                if p.is_empty() {
                    e.required(&child(&sp, "path"), "");
                }
            }
            "nfs" => {
                if str_or_empty(s, "server").is_empty() {
                    e.required(&child(&sp, "server"), "");
                }
                if str_or_empty(s, "path").is_empty() {
                    e.required(&child(&sp, "path"), "");
                }
            }
            "csi" => {
                if str_or_empty(s, "driver").is_empty() {
                    e.required(&child(&sp, "driver"), "");
                }
                if str_or_empty(s, "volumeHandle").is_empty() {
                    e.required(&child(&sp, "volumeHandle"), "");
                }
            }
            _ => {}
        }
    }
    if n == 0 {
        e.required("spec", "must specify a volume type");
    }
    if let Some(sc) = get_str(spec, "storageClassName").filter(|s| !s.is_empty()) {
        e.invalid_each("spec.storageClassName", sc, dns1123_subdomain_errors(sc));
    }
}

pub(super) fn validate_pvc(e: &mut Errs, obj: &Value) {
    let empty = Value::Null;
    let spec = get(obj, "spec").unwrap_or(&empty);
    validate_pvc_spec(e, spec, "spec");
}

/// `ValidatePersistentVolumeClaimSpec` at `path` (also StatefulSet
/// volumeClaimTemplates).
pub(super) fn validate_pvc_spec(e: &mut Errs, spec: &Value, path: &str) {
    access_modes(e, spec, path, "at least 1 access mode is required");
    if let Some(sel) = get(spec, "selector") {
        validate_label_selector(e, sel, &child(path, "selector"));
    }
    let storage_path = key(&child(path, "resources"), "storage");
    match get(spec, "resources")
        .and_then(|r| get(r, "requests"))
        .and_then(|r| get(r, "storage"))
    {
        None => e.required(&storage_path, ""),
        Some(v) => {
            if let Some(q) = quantity_field(e, v, &storage_path, false)
                && (q.is_zero() || q.is_negative())
            {
                e.invalid(&storage_path, go::q(&q.canonical()), IS_NOT_POSITIVE);
            }
        }
    }
    if let Some(sc) = get_str(spec, "storageClassName").filter(|s| !s.is_empty()) {
        e.invalid_each(
            &child(path, "storageClassName"),
            sc,
            dns1123_subdomain_errors(sc),
        );
    }
    if let Some(m) = get_str(spec, "volumeMode")
        && !["Block", "Filesystem"].contains(&m)
    {
        e.not_supported(
            &child(path, "volumeMode"),
            go::q(m),
            &["Block", "Filesystem"],
        );
    }
}

// ---------------------------------------------------------------------------
// Quota and limits

/// Resource names as `ValidateResourceQuotaResourceName` / limit ranges
/// accept them: qualified names.
fn resource_name(e: &mut Errs, name: &str, path: &str) {
    e.invalid_each(path, name, qualified_name_errors(name));
}

pub(super) fn validate_resource_quota(e: &mut Errs, obj: &Value) {
    let Some(spec) = get(obj, "spec") else {
        return;
    };
    if let Some(hard) = get_obj(spec, "hard") {
        for (k, v) in hard {
            let fp = key("spec.hard", k);
            resource_name(e, k, &fp);
            quantity_field(e, v, &fp, true);
        }
    }
    const SCOPES: &[&str] = &[
        "BestEffort",
        "CrossNamespacePodAffinity",
        "NotBestEffort",
        "NotTerminating",
        "PriorityClass",
        "Terminating",
    ];
    for s in get_strs(spec, "scopes") {
        if !SCOPES.contains(&s) {
            e.not_supported("spec.scopes", go::q(s), SCOPES);
        }
    }
}

pub(super) fn validate_limit_range(e: &mut Errs, obj: &Value) {
    let Some(spec) = get(obj, "spec") else {
        return;
    };
    for (i, l) in get_arr(spec, "limits").iter().enumerate() {
        let lp = index("spec.limits", i);
        let ty = str_or_empty(l, "type");
        if ty.is_empty() {
            e.required(&child(&lp, "type"), "");
        } else {
            e.invalid_each(&child(&lp, "type"), ty, qualified_name_errors(ty));
        }
        for list in [
            "max",
            "min",
            "default",
            "defaultRequest",
            "maxLimitRequestRatio",
        ] {
            if let Some(m) = get_obj(l, list) {
                for (k, v) in m {
                    let fp = key(&child(&lp, list), k);
                    resource_name(e, k, &fp);
                    quantity_field(e, v, &fp, true);
                }
            }
        }
        if ty == "Pod" {
            for list in ["default", "defaultRequest"] {
                if get_obj(l, list).is_some_and(|m| !m.is_empty()) {
                    e.forbidden(
                        &child(&lp, list),
                        "may not be specified when `type` is 'Pod'",
                    );
                }
            }
        }
    }
}
