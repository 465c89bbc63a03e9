//! Update-only rules (`Validate*Update` upstream): what may not change once
//! an object exists — pod specs, workload selectors, StatefulSet specs, Job
//! templates, Service cluster IPs, immutable ConfigMaps/Secrets, PVC specs,
//! StorageClass fields, RoleBinding roleRefs, CRD identity.
//!
//! Owns: comparisons between the stored and the proposed object. Must not:
//! repeat create-time checks (the server runs `validate_create` on the new
//! object as well).

use serde_json::{Map, Value};

use super::pod::json_quantity;
use super::{
    Errs, FIELD_IMMUTABLE, get, get_arr, get_bool, get_i64, get_str, get_strs, go, index, same,
    same_opt,
};

pub(super) fn validate_update(e: &mut Errs, group: &str, kind: &str, old: &Value, new: &Value) {
    match (group, kind) {
        ("", "Pod") => pod_update(e, old, new),
        ("apps", "Deployment" | "ReplicaSet" | "DaemonSet") => selector_immutable(e, old, new),
        ("apps", "StatefulSet") => stateful_set_update(e, old, new),
        ("apps", "ControllerRevision") if !same_opt(get(old, "data"), get(new, "data")) => {
            e.invalid("data", "runtime.RawExtension{...}", FIELD_IMMUTABLE);
        }
        ("batch", "Job") => job_update(e, old, new),
        ("", "Service") => service_update(e, old, new),
        ("", "ConfigMap") => immutable_data(e, old, new, &["data", "binaryData"]),
        ("", "Secret") => {
            let ot = get_str(old, "type").unwrap_or("Opaque");
            let nt = get_str(new, "type").unwrap_or("Opaque");
            if ot != nt {
                e.invalid("type", go::q(nt), FIELD_IMMUTABLE);
            }
            immutable_data(e, old, new, &["data"]);
        }
        ("", "PersistentVolumeClaim") => pvc_update(e, old, new),
        ("", "PersistentVolume") => pv_update(e, old, new),
        ("", "Node") => node_update(e, old, new),
        ("storage.k8s.io", "StorageClass") => storage_class_update(e, old, new),
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding")
            if !same_opt(get(old, "roleRef"), get(new, "roleRef")) =>
        {
            let r = get(new, "roleRef");
            let s = |k: &str| go::q(r.and_then(|r| get_str(r, k)).unwrap_or(""));
            e.invalid(
                "roleRef",
                format!(
                    "rbac.RoleRef{{APIGroup:{}, Kind:{}, Name:{}}}",
                    s("apiGroup"),
                    s("kind"),
                    s("name")
                ),
                "cannot change roleRef",
            );
        }
        ("scheduling.k8s.io", "PriorityClass") => {
            if get_i64(old, "value") != get_i64(new, "value") {
                e.forbidden("value", "may not be changed in an update.");
            }
            if !same_opt(get(old, "preemptionPolicy"), get(new, "preemptionPolicy")) {
                e.invalid(
                    "preemptionPolicy",
                    go::scalar(get(new, "preemptionPolicy")),
                    FIELD_IMMUTABLE,
                );
            }
        }
        ("discovery.k8s.io", "EndpointSlice") => {
            let (o, n) = (get(old, "addressType"), get(new, "addressType"));
            e.immutable(
                "addressType",
                go::scalar(n),
                o.unwrap_or(&Value::Null),
                n.unwrap_or(&Value::Null),
            );
        }
        ("apiextensions.k8s.io", "CustomResourceDefinition") => crd_update(e, old, new),
        _ => {}
    }
}

fn spec_of(v: &Value) -> &Value {
    static NULL: Value = Value::Null;
    get(v, "spec").unwrap_or(&NULL)
}

// ---------------------------------------------------------------------------
// Pods

const POD_UPDATABLE: &str = "`spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

/// Go's field name for a JSON key (for the diff under the Forbidden text).
fn go_field(k: &str) -> String {
    let mut c = k.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

fn pod_update(e: &mut Errs, old: &Value, new: &Value) {
    let old_spec = spec_of(old);
    let new_spec = spec_of(new);
    let mut munged = match new_spec.as_object() {
        Some(m) => m.clone(),
        None => Map::new(),
    };
    // Images may change (one for one, same container count).
    for k in ["containers", "initContainers"] {
        let olds = get_arr(old_spec, k);
        if let Some(Value::Array(news)) = munged.get_mut(k)
            && news.len() == olds.len()
        {
            for (i, (n, o)) in news.iter_mut().zip(olds).enumerate() {
                let image = n.get("image").and_then(Value::as_str).unwrap_or("");
                if image.is_empty() {
                    e.required(&format!("spec.{k}[{i}].image"), "");
                }
                if let (Some(n), Some(oi)) = (n.as_object_mut(), o.get("image")) {
                    n.insert("image".into(), oi.clone());
                } else if let Some(n) = n.as_object_mut() {
                    n.remove("image");
                }
            }
        }
    }
    // activeDeadlineSeconds: may be set, or lowered, never unset or raised.
    let old_ads = get_i64(old_spec, "activeDeadlineSeconds");
    let new_ads = get_i64(new_spec, "activeDeadlineSeconds");
    if let Some(o) = old_ads {
        match new_ads {
            None => e.invalid(
                "spec.activeDeadlineSeconds",
                "null",
                "must not update from a positive integer to nil value",
            ),
            Some(n) if n > o => e.invalid(
                "spec.activeDeadlineSeconds",
                n.to_string(),
                "must be less than or equal to previous value",
            ),
            _ => {}
        }
    }
    restore(&mut munged, old_spec, "activeDeadlineSeconds");
    // Tolerations: only additions (an existing one may change only its
    // tolerationSeconds).
    let old_tols = get_arr(old_spec, "tolerations");
    let new_tols = get_arr(new_spec, "tolerations");
    for o in old_tols {
        let kept = new_tols.iter().any(|n| {
            let strip = |v: &Value| {
                let mut v = v.clone();
                if let Some(m) = v.as_object_mut() {
                    m.remove("tolerationSeconds");
                }
                v
            };
            same(&strip(n), &strip(o))
        });
        if !kept {
            e.forbidden(
                "spec.tolerations",
                "existing toleration can not be modified except its tolerationSeconds",
            );
            break;
        }
    }
    restore(&mut munged, old_spec, "tolerations");
    // terminationGracePeriodSeconds: negative may become 1.
    let old_grace = get_i64(old_spec, "terminationGracePeriodSeconds");
    let new_grace = get_i64(new_spec, "terminationGracePeriodSeconds");
    if old_grace.is_some_and(|g| g < 0) && new_grace == Some(1) {
        restore(&mut munged, old_spec, "terminationGracePeriodSeconds");
    }
    // schedulingGates may only be removed.
    let old_gates = get_arr(old_spec, "schedulingGates");
    let new_gates = get_arr(new_spec, "schedulingGates");
    if new_gates
        .iter()
        .all(|g| old_gates.iter().any(|o| same(o, g)))
    {
        restore(&mut munged, old_spec, "schedulingGates");
    } else {
        e.forbidden(
            "spec.schedulingGates",
            "only deletion is allowed, but found new scheduling gate",
        );
        restore(&mut munged, old_spec, "schedulingGates");
    }
    // Ephemeral containers change only through their subresource.
    restore(&mut munged, old_spec, "ephemeralContainers");
    let munged = Value::Object(munged);
    if !same(&munged, old_spec) {
        let diff = spec_diff(old_spec, &munged);
        e.forbidden(
            "spec",
            &format!("pod updates may not change fields other than {POD_UPDATABLE}\n{diff}"),
        );
    }
}

/// Sets `m[k]` to the old spec's value (or removes it).
fn restore(m: &mut Map<String, Value>, old_spec: &Value, k: &str) {
    match get(old_spec, k) {
        Some(v) => {
            m.insert(k.into(), v.clone());
        }
        None => {
            m.remove(k);
        }
    }
}

/// A short `cmp.Diff`-like rendering of the top-level fields that differ.
fn spec_diff(old: &Value, new: &Value) -> String {
    let mut keys: Vec<&String> = Vec::new();
    for m in [old.as_object(), new.as_object()].into_iter().flatten() {
        for k in m.keys() {
            if !keys.contains(&k) {
                keys.push(k);
            }
        }
    }
    let mut out = String::from("  core.PodSpec{\n");
    for k in keys {
        let (o, n) = (get(old, k), get(new, k));
        if same_opt(o, n) {
            continue;
        }
        let show = |v: Option<&Value>| v.map_or("nil".to_string(), Value::to_string);
        out.push_str(&format!("- \t{}: {},\n", go_field(k), show(o)));
        out.push_str(&format!("+ \t{}: {},\n", go_field(k), show(n)));
    }
    out.push_str("  }\n");
    out
}

// ---------------------------------------------------------------------------
// Workloads

fn selector_immutable(e: &mut Errs, old: &Value, new: &Value) {
    let (o, n) = (get(spec_of(old), "selector"), get(spec_of(new), "selector"));
    if !same_opt(o, n) {
        e.invalid("spec.selector", go::label_selector(n), FIELD_IMMUTABLE);
    }
}

const STS_MUTABLE: &[&str] = &[
    "replicas",
    "template",
    "updateStrategy",
    "minReadySeconds",
    "ordinals",
    "revisionHistoryLimit",
    "persistentVolumeClaimRetentionPolicy",
];

fn stateful_set_update(e: &mut Errs, old: &Value, new: &Value) {
    let strip = |v: &Value| {
        let mut m = v.as_object().cloned().unwrap_or_default();
        for k in STS_MUTABLE {
            m.remove(*k);
        }
        Value::Object(m)
    };
    if !same(&strip(spec_of(old)), &strip(spec_of(new))) {
        e.forbidden(
            "spec",
            "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
        );
    }
}

fn job_update(e: &mut Errs, old: &Value, new: &Value) {
    let (os, ns) = (spec_of(old), spec_of(new));
    selector_immutable(e, old, new);
    // Elastic indexed jobs may change completions together with parallelism.
    let elastic = get_str(ns, "completionMode") == Some("Indexed")
        && get_i64(ns, "completions") == get_i64(ns, "parallelism")
        && get_i64(os, "completions") == get_i64(os, "parallelism");
    if !elastic {
        let (o, n) = (get(os, "completions"), get(ns, "completions"));
        if !same_opt(o, n) {
            e.invalid("spec.completions", go::scalar(n), FIELD_IMMUTABLE);
        }
    }
    let (o, n) = (get(os, "completionMode"), get(ns, "completionMode"));
    if !same_opt(o, n) {
        e.invalid("spec.completionMode", go::scalar(n), FIELD_IMMUTABLE);
    }
    // The template is immutable, except scheduling directives and
    // metadata of a job that is suspended.
    let suspended = get_bool(os, "suspend") == Some(true) && get_bool(ns, "suspend") == Some(true);
    let mask = |t: Option<&Value>| -> Value {
        let mut t = t.cloned().unwrap_or(Value::Null);
        if suspended {
            if let Some(m) = t.as_object_mut() {
                m.remove("metadata");
            }
            if let Some(s) = t.get_mut("spec").and_then(Value::as_object_mut) {
                for k in ["nodeSelector", "tolerations", "affinity", "schedulingGates"] {
                    s.remove(k);
                }
            }
        }
        t
    };
    if !same(&mask(get(os, "template")), &mask(get(ns, "template"))) {
        e.invalid(
            "spec.template",
            "core.PodTemplateSpec{...}",
            FIELD_IMMUTABLE,
        );
    }
}

// ---------------------------------------------------------------------------
// Service

fn effective_cluster_ips(spec: &Value) -> Vec<&str> {
    let ips: Vec<&str> = get_arr(spec, "clusterIPs")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    if !ips.is_empty() {
        return ips;
    }
    get_str(spec, "clusterIP")
        .filter(|s| !s.is_empty())
        .into_iter()
        .collect()
}

fn service_update(e: &mut Errs, old: &Value, new: &Value) {
    let (os, ns) = (spec_of(old), spec_of(new));
    let old_type = get_str(os, "type").unwrap_or("ClusterIP");
    let new_type = get_str(ns, "type").unwrap_or("ClusterIP");
    // Switching to or from ExternalName releases or allocates the IPs.
    if old_type == "ExternalName" || new_type == "ExternalName" {
        return;
    }
    let old_ips = effective_cluster_ips(os);
    let new_ips = effective_cluster_ips(ns);
    // An omitted clusterIP is carried over by the server's update strategy.
    if new_ips.is_empty() {
        return;
    }
    for (i, ip) in old_ips.iter().enumerate() {
        if new_ips.get(i).is_some_and(|n| n != ip) {
            let items: Vec<String> = new_ips.iter().map(|s| go::q(s)).collect();
            e.invalid(
                &index("spec.clusterIPs", i),
                format!("[]string{{{}}}", items.join(", ")),
                "may not change once set",
            );
        }
    }
}

// ---------------------------------------------------------------------------
// ConfigMap / Secret / storage

fn immutable_data(e: &mut Errs, old: &Value, new: &Value, fields: &[&str]) {
    if get_bool(old, "immutable") != Some(true) {
        return;
    }
    const MSG: &str = "field is immutable when `immutable` is set";
    if get_bool(new, "immutable") != Some(true) {
        e.forbidden("immutable", MSG);
    }
    for f in fields {
        if !same_opt(get(old, f), get(new, f)) {
            e.forbidden(f, MSG);
        }
    }
}

fn storage_request(v: &Value) -> Option<super::Quantity> {
    get(v, "spec")
        .and_then(|s| get(s, "resources"))
        .and_then(|r| get(r, "requests"))
        .and_then(|r| get(r, "storage"))
        .and_then(json_quantity)
}

fn pvc_update(e: &mut Errs, old: &Value, new: &Value) {
    let (os, ns) = (spec_of(old), spec_of(new));
    let mut old_clone = os.as_object().cloned().unwrap_or_default();
    let mut new_clone = ns.as_object().cloned().unwrap_or_default();
    // volumeName may be set once (binding).
    if get_str(os, "volumeName").is_none_or(str::is_empty) {
        match new_clone.get("volumeName") {
            Some(v) => {
                old_clone.insert("volumeName".into(), v.clone());
            }
            None => {
                old_clone.remove("volumeName");
            }
        }
    }
    // storageClassName may be set once from nil.
    if get(os, "storageClassName").is_none() {
        old_clone.remove("storageClassName");
        new_clone.remove("storageClassName");
    }
    let bound = get(new, "status").and_then(|s| get_str(s, "phase")) == Some("Bound");
    if bound {
        // Bound claims may resize and change their volume attributes class.
        for m in [&mut old_clone, &mut new_clone] {
            if let Some(req) = m
                .get_mut("resources")
                .and_then(|r| r.get_mut("requests"))
                .and_then(Value::as_object_mut)
            {
                req.remove("storage");
            }
            m.remove("volumeAttributesClassName");
        }
    }
    if !same(&Value::Object(old_clone), &Value::Object(new_clone)) {
        e.forbidden(
            "spec",
            "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims",
        );
    }
    if let (Some(o), Some(n)) = (storage_request(old), storage_request(new))
        && n < o
    {
        // RecoverVolumeExpansionFailure (on in v1.33): shrinking is allowed
        // down to, but not to or below, the recorded capacity.
        let status_size = get(old, "status")
            .and_then(|s| get(s, "capacity"))
            .and_then(|c| get(c, "storage"))
            .and_then(json_quantity);
        let zero = crate::api::quantity::parse_quantity("0");
        if status_size.or(zero).is_some_and(|s| n <= s) {
            e.forbidden(
                "spec.resources.requests.storage",
                "field can not be less than status.capacity",
            );
        }
    }
}

fn pv_update(e: &mut Errs, old: &Value, new: &Value) {
    let (os, ns) = (spec_of(old), spec_of(new));
    let mutable = [
        "capacity",
        "accessModes",
        "claimRef",
        "persistentVolumeReclaimPolicy",
        "storageClassName",
        "mountOptions",
        "volumeMode",
        "nodeAffinity",
        "volumeAttributesClassName",
    ];
    let strip = |v: &Value| {
        let mut m = v.as_object().cloned().unwrap_or_default();
        for k in mutable {
            m.remove(k);
        }
        Value::Object(m)
    };
    if !same(&strip(os), &strip(ns)) {
        e.forbidden(
            "spec.persistentvolumesource",
            "spec.persistentvolumesource is immutable after creation",
        );
    }
    let (o, n) = (get(os, "volumeMode"), get(ns, "volumeMode"));
    if o.is_some() && !same_opt(o, n) {
        e.invalid("spec.volumeMode", go::scalar(n), FIELD_IMMUTABLE);
    }
    let (o, n) = (get(os, "nodeAffinity"), get(ns, "nodeAffinity"));
    if o.is_some() && !same_opt(o, n) {
        e.forbidden("spec.nodeAffinity", FIELD_IMMUTABLE);
    }
}

fn node_update(e: &mut Errs, old: &Value, new: &Value) {
    let (os, ns) = (spec_of(old), spec_of(new));
    // podCIDR may be set once (from "" to valid), then never changed
    fn cidrs(spec: &Value) -> Vec<&str> {
        let list = get_strs(spec, "podCIDRs");
        match get_str(spec, "podCIDR").filter(|c| !c.is_empty()) {
            Some(c) if list.is_empty() => vec![c],
            _ => list,
        }
    }
    let old_cidrs = cidrs(os);
    if !old_cidrs.is_empty() && old_cidrs != cidrs(ns) {
        e.forbidden(
            "spec.podCIDRs",
            "node updates may not change podCIDR except from \"\" to valid",
        );
    }
    let old_id = get_str(os, "providerID").unwrap_or("");
    if !old_id.is_empty() && get_str(ns, "providerID").unwrap_or("") != old_id {
        e.forbidden(
            "spec.providerID",
            "node updates may not change providerID except from \"\" to valid",
        );
    }
}

fn storage_class_update(e: &mut Errs, old: &Value, new: &Value) {
    if !same_opt(get(old, "parameters"), get(new, "parameters")) {
        e.forbidden("parameters", "updates to parameters are forbidden.");
    }
    if get_str(old, "provisioner") != get_str(new, "provisioner") {
        e.forbidden("provisioner", "updates to provisioner are forbidden.");
    }
    let policy = |v: &Value| get_str(v, "reclaimPolicy").unwrap_or("Delete").to_string();
    if policy(old) != policy(new) {
        e.forbidden("reclaimPolicy", "updates to reclaimPolicy are forbidden.");
    }
    let mode = |v: &Value| {
        get_str(v, "volumeBindingMode")
            .unwrap_or("Immediate")
            .to_string()
    };
    if mode(old) != mode(new) {
        e.invalid("volumeBindingMode", go::q(&mode(new)), FIELD_IMMUTABLE);
    }
}

// ---------------------------------------------------------------------------
// CRDs

fn crd_update(e: &mut Errs, old: &Value, new: &Value) {
    let (os, ns) = (spec_of(old), spec_of(new));
    let field = |s: &Value, path: &[&str]| -> String {
        let mut v = s;
        for p in path {
            match get(v, p) {
                Some(x) => v = x,
                None => return String::new(),
            }
        }
        v.as_str().unwrap_or("").to_string()
    };
    let established = get(old, "status")
        .map(|s| get_arr(s, "conditions"))
        .unwrap_or(&[])
        .iter()
        .any(|c| get_str(c, "type") == Some("Established") && get_str(c, "status") == Some("True"));
    let mut check = |path: &[&str], name: &str| {
        let (o, n) = (field(os, path), field(ns, path));
        if o != n {
            e.invalid(name, go::q(&n), FIELD_IMMUTABLE);
        }
    };
    check(&["scope"], "spec.scope");
    check(&["group"], "spec.group");
    check(&["names", "plural"], "spec.names.plural");
    if established {
        check(&["names", "kind"], "spec.names.kind");
    }
}
