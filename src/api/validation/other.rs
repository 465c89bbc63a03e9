//! Kinds outside core and workloads: EndpointSlice, Lease, StorageClass,
//! PodDisruptionBudget, HorizontalPodAutoscaler (v2), Ingress,
//! IngressClass, NetworkPolicy, RBAC, PriorityClass and
//! CustomResourceDefinition (structural-schema checks stay in
//! `crd_schema`).
//!
//! Owns: their create-time rules. Must not: evaluate CRD schemas.

use std::collections::HashSet;

use serde_json::Value;

use super::meta::validate_label_selector;
use super::names::{
    cidr_errors, dns1035_label_errors, dns1123_label_errors, dns1123_subdomain_errors,
    path_segment_name_errors, port_name_errors, qualified_name_errors,
    wildcard_dns1123_subdomain_errors,
};
use super::pod::{one_of, protocol};
use super::{
    Errs, child, get, get_arr, get_bool, get_i64, get_obj, get_str, get_strs, go, inclusive_range,
    index, str_or_empty,
};

// ---------------------------------------------------------------------------
// discovery.k8s.io, coordination.k8s.io

pub(super) fn validate_endpoint_slice(e: &mut Errs, obj: &Value) {
    let ty = str_or_empty(obj, "addressType");
    let valid = ["IPv4", "IPv6", "FQDN"];
    if ty.is_empty() {
        e.required("addressType", "");
    } else if !valid.contains(&ty) {
        e.not_supported("addressType", go::q(ty), &valid);
    }
    for (i, ep) in get_arr(obj, "endpoints").iter().enumerate() {
        let ep_path = index("endpoints", i);
        let addrs = get_strs(ep, "addresses");
        let ap = child(&ep_path, "addresses");
        if addrs.is_empty() {
            e.required(&ap, "must contain at least 1 address");
        } else if addrs.len() > 100 {
            e.invalid(&ap, addrs.len().to_string(), "must have at most 100 items");
        }
        for (j, a) in addrs.iter().enumerate() {
            let fp = index(&ap, j);
            match ty {
                "IPv4" if a.parse::<std::net::Ipv4Addr>().is_err() => {
                    e.invalid(&fp, go::q(a), "must be a valid IPv4 address");
                }
                "IPv6" if a.parse::<std::net::Ipv6Addr>().is_err() => {
                    e.invalid(&fp, go::q(a), "must be a valid IPv6 address");
                }
                "FQDN" => e.invalid_each(&fp, a, dns1123_subdomain_errors(a)),
                _ => {}
            }
        }
        if let Some(n) = get_str(ep, "nodeName").filter(|n| !n.is_empty()) {
            e.invalid_each(&child(&ep_path, "nodeName"), n, dns1123_subdomain_errors(n));
        }
        if let Some(h) = get_str(ep, "hostname").filter(|n| !n.is_empty()) {
            e.invalid_each(&child(&ep_path, "hostname"), h, dns1123_label_errors(h));
        }
    }
    let mut names = HashSet::new();
    for (i, p) in get_arr(obj, "ports").iter().enumerate() {
        let pp = index("ports", i);
        if let Some(name) = get_str(p, "name").filter(|n| !n.is_empty()) {
            e.invalid_each(&child(&pp, "name"), name, dns1123_label_errors(name));
            if !names.insert(name) {
                e.duplicate(&child(&pp, "name"), go::q(name));
            }
        }
        if let Some(port) = get_i64(p, "port")
            && !(1..=65535).contains(&port)
        {
            e.invalid(
                &child(&pp, "port"),
                port.to_string(),
                &inclusive_range(1, 65535),
            );
        }
        if let Some(proto) = get_str(p, "protocol") {
            protocol(e, &child(&pp, "protocol"), proto);
        }
    }
}

pub(super) fn validate_lease(e: &mut Errs, obj: &Value) {
    let Some(spec) = get(obj, "spec") else {
        return;
    };
    if let Some(d) = get_i64(spec, "leaseDurationSeconds")
        && d <= 0
    {
        e.invalid(
            "spec.leaseDurationSeconds",
            d.to_string(),
            "must be greater than 0",
        );
    }
    e.nonnegative("spec.leaseTransitions", get_i64(spec, "leaseTransitions"));
}

// ---------------------------------------------------------------------------
// storage.k8s.io

pub(super) fn validate_storage_class(e: &mut Errs, obj: &Value) {
    let p = str_or_empty(obj, "provisioner");
    if p.is_empty() {
        e.required("provisioner", "");
    } else {
        if p.len() > 63 {
            e.too_long("provisioner", 63);
        }
        let lower = p.to_lowercase();
        e.invalid_each("provisioner", &lower, qualified_name_errors(&lower));
    }
    if let Some(params) = get_obj(obj, "parameters") {
        let mut total = 0;
        for (k, v) in params {
            if k.is_empty() {
                e.invalid("parameters", "\"\"", "field can not be empty.");
            }
            total += k.len() + v.as_str().map_or(0, str::len);
        }
        if params.len() > 512 {
            e.too_long("parameters", 512);
        }
        if total > 256 * 1024 {
            e.too_long("parameters", 256 * 1024);
        }
    }
    if let Some(r) = get_str(obj, "reclaimPolicy") {
        one_of(e, "reclaimPolicy", r, &["Delete", "Retain"]);
    }
    if let Some(m) = get_str(obj, "volumeBindingMode") {
        one_of(
            e,
            "volumeBindingMode",
            m,
            &["Immediate", "WaitForFirstConsumer"],
        );
    }
}

// ---------------------------------------------------------------------------
// policy, autoscaling

pub(super) fn validate_pdb(e: &mut Errs, obj: &Value) {
    let Some(spec) = get(obj, "spec") else {
        return;
    };
    let min = get(spec, "minAvailable");
    let max = get(spec, "maxUnavailable");
    if min.is_some() && max.is_some() {
        e.invalid(
            "spec",
            "policy.PodDisruptionBudgetSpec{...}",
            "minAvailable and maxUnavailable cannot be both set",
        );
    }
    for (k, v) in [("minAvailable", min), ("maxUnavailable", max)] {
        let fp = child("spec", k);
        match v {
            Some(Value::String(s)) => {
                let pct = s
                    .strip_suffix('%')
                    .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|n| n.parse::<u64>().ok());
                match pct {
                    None => e.invalid(
                        &fp,
                        go::int_or_string(v),
                        "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')",
                    ),
                    Some(p) if p > 100 => {
                        e.invalid(&fp, go::int_or_string(v), "must not be greater than 100%")
                    }
                    Some(_) => {}
                }
            }
            Some(Value::Number(n)) => e.nonnegative(&fp, n.as_i64()),
            _ => {}
        }
    }
    if let Some(sel) = get(spec, "selector") {
        validate_label_selector(e, sel, "spec.selector");
    }
    if let Some(p) = get_str(spec, "unhealthyPodEvictionPolicy") {
        one_of(
            e,
            "spec.unhealthyPodEvictionPolicy",
            p,
            &["AlwaysAllow", "IfHealthyBudget"],
        );
    }
}

pub(super) fn validate_hpa(e: &mut Errs, obj: &Value) {
    let empty = Value::Null;
    let spec = get(obj, "spec").unwrap_or(&empty);
    let min = get_i64(spec, "minReplicas");
    if let Some(m) = min
        && m < 1
    {
        e.invalid(
            "spec.minReplicas",
            m.to_string(),
            "must be greater than or equal to 1",
        );
    }
    let max = get_i64(spec, "maxReplicas").unwrap_or(0);
    if max < 1 {
        e.invalid(
            "spec.maxReplicas",
            max.to_string(),
            "must be greater than 0",
        );
    }
    if let Some(m) = min
        && max < m
    {
        e.invalid(
            "spec.maxReplicas",
            max.to_string(),
            "must be greater than or equal to `minReplicas`",
        );
    }
    let target = get(spec, "scaleTargetRef").unwrap_or(&empty);
    for k in ["kind", "name"] {
        let v = str_or_empty(target, k);
        let fp = child("spec.scaleTargetRef", k);
        if v.is_empty() {
            e.required(&fp, "");
        } else {
            e.invalid_each(&fp, v, path_segment_name_errors(v));
        }
    }
    const METRIC_TYPES: &[&str] = &[
        "ContainerResource",
        "External",
        "Object",
        "Pods",
        "Resource",
    ];
    for (i, m) in get_arr(spec, "metrics").iter().enumerate() {
        let mp = index("spec.metrics", i);
        let ty = str_or_empty(m, "type");
        if ty.is_empty() {
            e.required(&child(&mp, "type"), "must specify a metric source type");
        } else if !METRIC_TYPES.contains(&ty) {
            e.not_supported(&child(&mp, "type"), go::q(ty), METRIC_TYPES);
        }
    }
}

// ---------------------------------------------------------------------------
// networking.k8s.io

pub(super) fn validate_ingress(e: &mut Errs, obj: &Value) {
    let empty = Value::Null;
    let spec = get(obj, "spec").unwrap_or(&empty);
    let rules = get_arr(spec, "rules");
    if rules.is_empty() && get(spec, "defaultBackend").is_none() {
        e.invalid(
            "spec",
            "[]networking.IngressRule(nil)",
            "either `defaultBackend` or `rules` must be specified",
        );
    }
    if let Some(b) = get(spec, "defaultBackend") {
        ingress_backend(e, b, "spec.defaultBackend");
    }
    for (i, r) in rules.iter().enumerate() {
        let rp = index("spec.rules", i);
        if let Some(host) = get_str(r, "host").filter(|h| !h.is_empty()) {
            let hp = child(&rp, "host");
            if host.parse::<std::net::IpAddr>().is_ok() {
                e.invalid(&hp, go::q(host), "must be a DNS name, not an IP address");
            }
            if host.contains('*') {
                e.invalid_each(&hp, host, wildcard_dns1123_subdomain_errors(host));
            } else {
                e.invalid_each(&hp, host, dns1123_subdomain_errors(host));
            }
        }
        let Some(http) = get(r, "http") else { continue };
        let hp = child(&rp, "http");
        let paths = get_arr(http, "paths");
        if paths.is_empty() {
            e.required(&child(&hp, "paths"), "");
        }
        for (j, p) in paths.iter().enumerate() {
            let pp = index(&child(&hp, "paths"), j);
            let path = str_or_empty(p, "path");
            match get_str(p, "pathType") {
                None => e.required(&child(&pp, "pathType"), "pathType must be specified"),
                Some(t @ ("Exact" | "Prefix")) => {
                    if !path.starts_with('/') {
                        e.invalid(&child(&pp, "path"), go::q(path), "must be an absolute path");
                    }
                    if t == "Prefix" || t == "Exact" {
                        for bad in ["//", "/./", "/../", "%2f", "%2F"] {
                            if path.contains(bad) {
                                e.invalid(
                                    &child(&pp, "path"),
                                    go::q(path),
                                    &format!("must not contain '{bad}'"),
                                );
                            }
                        }
                    }
                }
                Some("ImplementationSpecific") => {
                    if !path.is_empty() && !path.starts_with('/') {
                        e.invalid(&child(&pp, "path"), go::q(path), "must be an absolute path");
                    }
                }
                Some(t) => e.not_supported(
                    &child(&pp, "pathType"),
                    go::q(t),
                    &["Exact", "ImplementationSpecific", "Prefix"],
                ),
            }
            match get(p, "backend") {
                Some(b) => ingress_backend(e, b, &child(&pp, "backend")),
                None => e.invalid(
                    &child(&pp, "backend"),
                    "\"\"",
                    "resource or service backend is required",
                ),
            }
        }
    }
    for (i, t) in get_arr(spec, "tls").iter().enumerate() {
        for (j, h) in get_strs(t, "hosts").iter().enumerate() {
            let hp = index(&child(&index("spec.tls", i), "hosts"), j);
            if h.contains('*') {
                e.invalid_each(&hp, h, wildcard_dns1123_subdomain_errors(h));
            } else {
                e.invalid_each(&hp, h, dns1123_subdomain_errors(h));
            }
        }
    }
    if let Some(c) = get_str(spec, "ingressClassName").filter(|c| !c.is_empty()) {
        e.invalid_each("spec.ingressClassName", c, dns1123_subdomain_errors(c));
    }
}

fn ingress_backend(e: &mut Errs, b: &Value, path: &str) {
    let resource = get(b, "resource");
    let service = get(b, "service");
    match (resource, service) {
        (Some(_), Some(_)) => e.invalid(
            path,
            "\"\"",
            "cannot set both resource and service backends",
        ),
        (Some(r), None) => {
            for k in ["kind", "name"] {
                if str_or_empty(r, k).is_empty() {
                    e.required(&child(&child(path, "resource"), k), "");
                }
            }
        }
        (None, Some(s)) => {
            let name = str_or_empty(s, "name");
            let np = child(path, "service.name");
            if name.is_empty() {
                e.required(&np, "");
            } else {
                e.invalid_each(&np, name, dns1035_label_errors(name));
            }
            let empty = Value::Null;
            let port = get(s, "port").unwrap_or(&empty);
            let pname = str_or_empty(port, "name");
            let pnum = get_i64(port, "number").unwrap_or(0);
            let pp = child(path, "service.port");
            match (pname.is_empty(), pnum == 0) {
                (false, false) => {
                    e.invalid(path, "\"\"", "cannot set both port name & port number")
                }
                (false, true) => {
                    e.invalid_each(&child(&pp, "name"), pname, port_name_errors(pname))
                }
                (true, false) => {
                    if !(1..=65535).contains(&pnum) {
                        e.invalid(
                            &child(&pp, "number"),
                            pnum.to_string(),
                            &inclusive_range(1, 65535),
                        );
                    }
                }
                (true, true) => e.required(&pp, "port name or number is required"),
            }
        }
        (None, None) => e.invalid(path, "\"\"", "resource or service backend is required"),
    }
}

pub(super) fn validate_ingress_class(e: &mut Errs, obj: &Value) {
    let empty = Value::Null;
    let spec = get(obj, "spec").unwrap_or(&empty);
    let c = str_or_empty(spec, "controller");
    let cp = "spec.controller";
    if c.is_empty() {
        e.required(cp, "");
        return;
    }
    if c.len() > 250 {
        e.too_long(cp, 250);
    }
    match c.split_once('/') {
        Some((host, rest)) if !host.is_empty() && !rest.is_empty() => {
            e.invalid_each(cp, host, dns1123_subdomain_errors(host));
            let ok = rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"/-._~%!$&'()*+,;=:".contains(&b));
            if !ok {
                e.invalid(
                    cp,
                    go::q(rest),
                    "Invalid path (regex used for validation is '[A-Za-z0-9/\\-._~%!$&'()*+,;=:]+')",
                );
            }
        }
        _ => e.invalid(
            cp,
            go::q(c),
            "must be a domain-prefixed path (such as \"acme.io/foo\")",
        ),
    }
}

pub(super) fn validate_network_policy(e: &mut Errs, obj: &Value) {
    let empty = Value::Null;
    let spec = get(obj, "spec").unwrap_or(&empty);
    if let Some(sel) = get(spec, "podSelector") {
        validate_label_selector(e, sel, "spec.podSelector");
    }
    let types = get_strs(spec, "policyTypes");
    if types.len() > 2 {
        e.invalid(
            "spec.policyTypes",
            format!(
                "&{}",
                go::string_slice(get(spec, "policyTypes"))
                    .replace("[]string", "[]networking.PolicyType")
            ),
            "may not specify more than two policyTypes",
        );
    }
    for (i, t) in types.iter().enumerate() {
        if *t != "Ingress" && *t != "Egress" {
            e.not_supported(
                &index("spec.policyTypes", i),
                go::q(t),
                &["Ingress", "Egress"],
            );
        }
    }
    for (dir, peers_key) in [("ingress", "from"), ("egress", "to")] {
        for (i, rule) in get_arr(spec, dir).iter().enumerate() {
            let rp = index(&child("spec", dir), i);
            for (j, port) in get_arr(rule, "ports").iter().enumerate() {
                let pp = index(&child(&rp, "ports"), j);
                if let Some(proto) = get_str(port, "protocol") {
                    protocol(e, &child(&pp, "protocol"), proto);
                }
                match get(port, "port") {
                    Some(Value::Number(n)) => {
                        let n = n.as_i64().unwrap_or(0);
                        if !(1..=65535).contains(&n) {
                            e.invalid(
                                &child(&pp, "port"),
                                n.to_string(),
                                &inclusive_range(1, 65535),
                            );
                        }
                    }
                    Some(Value::String(s)) => {
                        e.invalid_each(&child(&pp, "port"), s, port_name_errors(s))
                    }
                    _ => {}
                }
            }
            for (j, peer) in get_arr(rule, peers_key).iter().enumerate() {
                let pp = index(&child(&rp, peers_key), j);
                let mut n = 0;
                if let Some(s) = get(peer, "podSelector") {
                    n += 1;
                    validate_label_selector(e, s, &child(&pp, "podSelector"));
                }
                if let Some(s) = get(peer, "namespaceSelector") {
                    n += 1;
                    validate_label_selector(e, s, &child(&pp, "namespaceSelector"));
                }
                if let Some(b) = get(peer, "ipBlock") {
                    n += 1;
                    let bp = child(&pp, "ipBlock");
                    let cidr = str_or_empty(b, "cidr");
                    if cidr.is_empty() {
                        e.required(&child(&bp, "cidr"), "");
                    } else {
                        e.invalid_each(&child(&bp, "cidr"), cidr, cidr_errors(cidr));
                    }
                    for (k, ex) in get_strs(b, "except").iter().enumerate() {
                        e.invalid_each(&index(&child(&bp, "except"), k), ex, cidr_errors(ex));
                    }
                }
                if n == 0 {
                    e.required(&pp, "must specify a peer");
                } else if n > 1 && get(peer, "ipBlock").is_some() {
                    e.forbidden(&pp, "may not specify both ipBlock and another peer");
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// rbac.authorization.k8s.io

pub(super) fn validate_role(e: &mut Errs, obj: &Value, namespaced: bool) {
    for (i, rule) in get_arr(obj, "rules").iter().enumerate() {
        let rp = index("rules", i);
        if get_arr(rule, "verbs").is_empty() {
            e.required(
                &child(&rp, "verbs"),
                "verbs must contain at least one value",
            );
        }
        let urls = get(rule, "nonResourceURLs");
        if !get_arr(rule, "nonResourceURLs").is_empty() {
            if namespaced {
                e.invalid(
                    &child(&rp, "nonResourceURLs"),
                    go::string_slice(urls),
                    "namespaced rules cannot apply to non-resource URLs",
                );
            }
            if !get_arr(rule, "apiGroups").is_empty()
                || !get_arr(rule, "resources").is_empty()
                || !get_arr(rule, "resourceNames").is_empty()
            {
                e.invalid(
                    &child(&rp, "nonResourceURLs"),
                    go::string_slice(urls),
                    "rules cannot apply to both regular resources and non-resource URLs",
                );
            }
            continue;
        }
        if get(rule, "apiGroups")
            .and_then(Value::as_array)
            .is_none_or(|a| a.is_empty())
        {
            e.required(
                &child(&rp, "apiGroups"),
                "resource rules must supply at least one api group",
            );
        }
        if get_arr(rule, "resources").is_empty() {
            e.required(
                &child(&rp, "resources"),
                "resource rules must supply at least one resource",
            );
        }
    }
    if !namespaced && let Some(ar) = get(obj, "aggregationRule") {
        for (i, sel) in get_arr(ar, "clusterRoleSelectors").iter().enumerate() {
            validate_label_selector(e, sel, &index("aggregationRule.clusterRoleSelectors", i));
        }
    }
}

pub(super) fn validate_role_binding(e: &mut Errs, obj: &Value, namespaced: bool) {
    let empty = Value::Null;
    let role_ref = get(obj, "roleRef").unwrap_or(&empty);
    let group = str_or_empty(role_ref, "apiGroup");
    if group != "rbac.authorization.k8s.io" {
        e.not_supported(
            "roleRef.apiGroup",
            go::q(group),
            &["rbac.authorization.k8s.io"],
        );
    }
    let kind = str_or_empty(role_ref, "kind");
    let kinds: &[&str] = if namespaced {
        &["Role", "ClusterRole"]
    } else {
        &["ClusterRole"]
    };
    if !kinds.contains(&kind) {
        e.not_supported("roleRef.kind", go::q(kind), kinds);
    }
    let name = str_or_empty(role_ref, "name");
    if name.is_empty() {
        e.required("roleRef.name", "");
    } else {
        e.invalid_each("roleRef.name", name, path_segment_name_errors(name));
    }
    for (i, s) in get_arr(obj, "subjects").iter().enumerate() {
        let sp = index("subjects", i);
        let name = str_or_empty(s, "name");
        if name.is_empty() {
            e.required(&child(&sp, "name"), "");
        }
        let group = get_str(s, "apiGroup");
        match str_or_empty(s, "kind") {
            "ServiceAccount" => {
                if !name.is_empty() {
                    e.invalid_each(&child(&sp, "name"), name, dns1123_subdomain_errors(name));
                }
                if let Some(g) = group.filter(|g| !g.is_empty()) {
                    e.not_supported(&child(&sp, "apiGroup"), go::q(g), &[""]);
                }
                if !namespaced && str_or_empty(s, "namespace").is_empty() {
                    e.required(&child(&sp, "namespace"), "");
                }
            }
            "User" | "Group" => {
                if let Some(g) = group
                    && g != "rbac.authorization.k8s.io"
                {
                    e.not_supported(
                        &child(&sp, "apiGroup"),
                        go::q(g),
                        &["rbac.authorization.k8s.io"],
                    );
                }
            }
            other => e.not_supported(
                &child(&sp, "kind"),
                go::q(other),
                &["ServiceAccount", "User", "Group"],
            ),
        }
    }
}

// ---------------------------------------------------------------------------
// scheduling.k8s.io

const HIGHEST_USER_DEFINABLE_PRIORITY: i64 = 1_000_000_000;

pub(super) fn validate_priority_class(e: &mut Errs, obj: &Value) {
    let name = get(obj, "metadata").map_or("", |m| str_or_empty(m, "name"));
    let value = get_i64(obj, "value").unwrap_or(0);
    if name.starts_with("system-") {
        let known = match name {
            "system-node-critical" => Some(2_000_001_000),
            "system-cluster-critical" => Some(2_000_000_000),
            _ => None,
        };
        let err = match known {
            None => Some(format!("{name} is not a known system priority class")),
            Some(v) if v != value => Some(format!("value of {name} PriorityClass must be {v}")),
            Some(_) if get_bool(obj, "globalDefault") == Some(true) => Some(format!(
                "globalDefault of {name} PriorityClass must be false"
            )),
            Some(_) => None,
        };
        if let Some(err) = err {
            e.forbidden(
                "metadata.name",
                &format!(
                    "priority class names with 'system-' prefix are reserved for system use only. error: {err}"
                ),
            );
        }
    } else if value > HIGHEST_USER_DEFINABLE_PRIORITY {
        e.forbidden(
            "value",
            &format!(
                "maximum allowed value of a user defined priority is {HIGHEST_USER_DEFINABLE_PRIORITY}"
            ),
        );
    }
    if let Some(p) = get_str(obj, "preemptionPolicy") {
        one_of(e, "preemptionPolicy", p, &["Never", "PreemptLowerPriority"]);
    }
}

// ---------------------------------------------------------------------------
// apiextensions.k8s.io

fn crd_versions_repr(v: Option<&Value>) -> String {
    match v.and_then(Value::as_array) {
        None => "[]apiextensions.CustomResourceDefinitionVersion(nil)".into(),
        Some(a) => {
            let items: Vec<String> = a
                .iter()
                .map(|x| {
                    format!(
                        "apiextensions.CustomResourceDefinitionVersion{{Name:{}, Served:{}, Storage:{}, ...}}",
                        go::q(str_or_empty(x, "name")),
                        get_bool(x, "served").unwrap_or(false),
                        get_bool(x, "storage").unwrap_or(false)
                    )
                })
                .collect();
            format!(
                "[]apiextensions.CustomResourceDefinitionVersion{{{}}}",
                items.join(", ")
            )
        }
    }
}

pub(super) fn validate_crd(e: &mut Errs, obj: &Value) {
    let empty = Value::Null;
    let spec = get(obj, "spec").unwrap_or(&empty);
    let names = get(spec, "names").unwrap_or(&empty);
    let group = str_or_empty(spec, "group");
    let plural = str_or_empty(names, "plural");
    let name = get(obj, "metadata").map_or("", |m| str_or_empty(m, "name"));
    if !name.is_empty() && name != format!("{plural}.{group}") {
        e.invalid(
            "metadata.name",
            go::q(name),
            "must be spec.names.plural+\".\"+spec.group",
        );
    }
    if group.is_empty() {
        e.required("spec.group", "");
    } else {
        let errs = dns1123_subdomain_errors(group);
        if !errs.is_empty() {
            e.invalid("spec.group", go::q(group), &errs.join(","));
        } else if !group.contains('.') {
            e.invalid(
                "spec.group",
                go::q(group),
                "should be a domain with at least one dot",
            );
        }
    }
    match str_or_empty(spec, "scope") {
        "" => e.required("spec.scope", ""),
        "Cluster" | "Namespaced" => {}
        other => e.not_supported("spec.scope", go::q(other), &["Cluster", "Namespaced"]),
    }
    validate_crd_names(e, names, "spec.names");
    let versions = get_arr(spec, "versions");
    let mut seen = HashSet::new();
    let mut unique = true;
    let mut storage = 0;
    for (i, v) in versions.iter().enumerate() {
        let vp = index("spec.versions", i);
        let vname = str_or_empty(v, "name");
        if get_bool(v, "storage") == Some(true) {
            storage += 1;
        }
        if !seen.insert(vname) {
            unique = false;
        }
        let errs = dns1035_label_errors(vname);
        if !errs.is_empty() {
            e.invalid(&child(&vp, "name"), go::q(vname), &errs.join(","));
        }
        if get(v, "schema")
            .and_then(|s| get(s, "openAPIV3Schema"))
            .is_none()
        {
            e.required(
                &child(&vp, "schema.openAPIV3Schema"),
                "schemas are required",
            );
        }
        for (j, c) in get_arr(v, "additionalPrinterColumns").iter().enumerate() {
            let cp = index(&child(&vp, "additionalPrinterColumns"), j);
            for k in ["name", "type", "jsonPath"] {
                if str_or_empty(c, k).is_empty() {
                    e.required(&child(&cp, k), "");
                }
            }
            if let Some(t) = get_str(c, "type") {
                let valid = ["integer", "number", "string", "boolean", "date"];
                if !t.is_empty() && !valid.contains(&t) {
                    e.not_supported(&child(&cp, "type"), go::q(t), &valid);
                }
            }
        }
    }
    if !unique {
        e.invalid(
            "spec.versions",
            crd_versions_repr(get(spec, "versions")),
            "must contain unique version names",
        );
    }
    if storage != 1 {
        e.invalid(
            "spec.versions",
            crd_versions_repr(get(spec, "versions")),
            "must have exactly one version marked as storage version",
        );
    }
    if let Some(conv) = get(spec, "conversion") {
        let s = str_or_empty(conv, "strategy");
        match s {
            "None" => {
                if get(conv, "webhook").is_some() {
                    e.forbidden(
                        "spec.conversion.webhook",
                        "should not be set when strategy is not set to Webhook",
                    );
                }
            }
            "Webhook" => {
                if get(conv, "webhook").is_none() {
                    e.required(
                        "spec.conversion.webhook",
                        "required when strategy is set to Webhook",
                    );
                }
            }
            other => e.not_supported(
                "spec.conversion.strategy",
                go::q(other),
                &["None", "Webhook"],
            ),
        }
    }
}

fn validate_crd_names(e: &mut Errs, names: &Value, path: &str) {
    let plural = str_or_empty(names, "plural");
    let kind = str_or_empty(names, "kind");
    if plural.is_empty() {
        e.required(&child(path, "plural"), "");
    }
    if kind.is_empty() {
        e.required(&child(path, "kind"), "");
    }
    // singular and listKind are defaulted; only an explicit "" is missing.
    for k in ["singular", "listKind"] {
        if get_str(names, k) == Some("") {
            e.required(&child(path, k), "");
        }
    }
    for k in ["plural", "singular"] {
        let v = str_or_empty(names, k);
        let errs = dns1035_label_errors(v);
        if !v.is_empty() && !errs.is_empty() {
            e.invalid(&child(path, k), go::q(v), &errs.join(","));
        }
    }
    for k in ["kind", "listKind"] {
        let v = str_or_empty(names, k);
        let errs = dns1035_label_errors(&v.to_lowercase());
        if !v.is_empty() && !errs.is_empty() {
            e.invalid(
                &child(path, k),
                go::q(v),
                &format!(
                    "may have mixed case, but should otherwise match: {}",
                    errs.join(",")
                ),
            );
        }
    }
    let list_kind = str_or_empty(names, "listKind");
    if !kind.is_empty() && kind == list_kind {
        e.invalid(
            &child(path, "listKind"),
            go::q(list_kind),
            "kind and listKind may not be the same",
        );
    }
    for list in ["shortNames", "categories"] {
        for (i, v) in get_strs(names, list).iter().enumerate() {
            let errs = dns1035_label_errors(v);
            if !errs.is_empty() {
                e.invalid(&index(&child(path, list), i), go::q(v), &errs.join(","));
            }
        }
    }
}
