//! ResourceQuota usage and admission (upstream `pkg/quota/v1/evaluator/core`,
//! `pkg/controller/resourcequota`, the `ResourceQuota` admission plugin) and
//! LimitRange defaulting/validation (the `LimitRanger` admission plugin).
//!
//! Owns: what one pod/service/claim consumes (`pods`, `cpu`,
//! `requests.cpu`, `limits.memory`, `count/<resource>.<group>`,
//! `services.nodeports`, `requests.storage`, per-class storage, hugepages,
//! extended `requests.*`), quota scopes for pods, a quota's `status.used`,
//! whether a new object fits each quota (and the `used` to write back so
//! concurrent creates cannot overrun it), LimitRange defaults and limits —
//! all with upstream's messages.
//!
//! Invariants: quantities are summed exactly (`crate::api::quantity`) and
//! printed canonically; output maps are sorted; terminal pods (and pods past
//! their deletion grace period) consume nothing but `count/pods`.
//!
//! Must not: do I/O, read clocks, or panic on odd objects (an unparseable
//! quantity counts as absent).

use crate::api::quantity::{Quantity as Q, parse_quantity};
use crate::controllers::podutil::{is_terminal, time_to_chrono};
use chrono::{DateTime, Duration, Utc};
use k8s_openapi::api::core::v1::{
    Container, LimitRange, LimitRangeItem, PersistentVolumeClaim, Pod, ResourceQuota,
    ResourceQuotaStatus, ScopedResourceSelectorRequirement, Service,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use std::collections::{BTreeMap, BTreeSet};

/// Resource name → amount.
pub type Usage = BTreeMap<String, Q>;
/// A resource list as stored in objects.
pub type ResourceList = BTreeMap<String, Quantity>;

pub const LIMIT_RANGER_ANNOTATION: &str = "kubernetes.io/limit-ranger";

const POD_RESOURCES: &[&str] = &[
    "count/pods",
    "cpu",
    "memory",
    "ephemeral-storage",
    "requests.cpu",
    "requests.memory",
    "requests.ephemeral-storage",
    "limits.cpu",
    "limits.memory",
    "limits.ephemeral-storage",
    "pods",
];
const SERVICE_RESOURCES: &[&str] = &[
    "count/services",
    "services",
    "services.nodeports",
    "services.loadbalancers",
];
const PVC_RESOURCES: &[&str] = &[
    "count/persistentvolumeclaims",
    "persistentvolumeclaims",
    "requests.storage",
];
const STORAGE_CLASS_SUFFIX: &str = ".storageclass.storage.k8s.io/";
/// Quotas on these force every container to state them (an upstream wart).
const VALIDATION_SET: &[&str] = &[
    "cpu",
    "memory",
    "requests.cpu",
    "requests.memory",
    "limits.cpu",
    "limits.memory",
];

// ---------------------------------------------------------------------------
// Quantity helpers.

/// Inserts the integer `n` under `key`.
fn put(out: &mut Usage, key: impl Into<String>, n: i64) {
    if let Some(q) = parse_quantity(&n.to_string()) {
        out.insert(key.into(), q);
    }
}

/// Upstream `Quantity.Add`: a zero takes the other side's format.
fn add(a: &Q, b: &Q) -> Q {
    if a.is_zero() {
        *b
    } else {
        a.checked_add(b).unwrap_or(*a)
    }
}

fn add_into(list: &mut Usage, name: &str, q: &Q) {
    let sum = list.get(name).map_or(*q, |cur| add(cur, q));
    list.insert(name.to_string(), sum);
}

fn add_list(into: &mut Usage, from: &Usage) {
    for (k, v) in from {
        add_into(into, k, v);
    }
}

fn max_list(into: &mut Usage, from: &Usage) {
    for (k, v) in from {
        if into.get(k).is_none_or(|cur| v > cur) {
            into.insert(k.clone(), *v);
        }
    }
}

fn parse_list(list: Option<&ResourceList>) -> Usage {
    list.into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), parse_quantity(&v.0)?)))
        .collect()
}

/// Back to the stored form, canonical strings.
pub fn to_resource_list(u: &Usage) -> ResourceList {
    u.iter()
        .map(|(k, v)| (k.clone(), Quantity(v.canonical())))
        .collect()
}

/// `a=1,b=2`, sorted, as upstream's messages print resource lists.
fn pretty(u: &Usage) -> String {
    u.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Upstream `utilerrors.NewAggregate(...).Error()`.
fn aggregate(errs: &[String]) -> Option<String> {
    let mut seen: Vec<&String> = Vec::new();
    for e in errs {
        if !seen.contains(&e) {
            seen.push(e);
        }
    }
    match seen.as_slice() {
        [] => None,
        [one] => Some((*one).clone()),
        many => Some(format!(
            "[{}]",
            many.iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

// ---------------------------------------------------------------------------
// Pods.

fn container_list(c: &Container, limits: bool) -> Usage {
    let r = c.resources.as_ref();
    parse_list(if limits {
        r.and_then(|r| r.limits.as_ref())
    } else {
        r.and_then(|r| r.requests.as_ref())
    })
}

/// Containers summed, sidecars added, and the largest init-container step
/// taken (component-helpers' `AggregateContainerRequests/Limits`).
fn aggregate_containers(pod: &Pod, limits: bool) -> Usage {
    let Some(spec) = pod.spec.as_ref() else {
        return Usage::new();
    };
    let mut total = Usage::new();
    for c in &spec.containers {
        add_list(&mut total, &container_list(c, limits));
    }
    let mut sidecars = Usage::new();
    let mut init_max = Usage::new();
    for c in spec.init_containers.iter().flatten() {
        let own = container_list(c, limits);
        let step = if c.restart_policy.as_deref() == Some("Always") {
            add_list(&mut total, &own);
            add_list(&mut sidecars, &own);
            sidecars.clone()
        } else {
            let mut step = own;
            add_list(&mut step, &sidecars);
            step
        };
        max_list(&mut init_max, &step);
    }
    max_list(&mut total, &init_max);
    total
}

/// The pod's effective requests, overhead included (upstream `PodRequests`).
pub fn pod_requests(pod: &Pod) -> Usage {
    let mut reqs = aggregate_containers(pod, false);
    let overhead = parse_list(pod.spec.as_ref().and_then(|s| s.overhead.as_ref()));
    add_list(&mut reqs, &overhead);
    reqs
}

/// The pod's effective limits; overhead only adds to limits that exist.
pub fn pod_limits(pod: &Pod) -> Usage {
    let mut limits = aggregate_containers(pod, true);
    let overhead = parse_list(pod.spec.as_ref().and_then(|s| s.overhead.as_ref()));
    for (k, v) in &overhead {
        if limits.contains_key(k) {
            add_into(&mut limits, k, v);
        }
    }
    limits
}

fn is_native_resource(name: &str) -> bool {
    !name.contains('/') || name.contains("kubernetes.io/")
}

fn is_extended_resource(name: &str) -> bool {
    !is_native_resource(name) && !name.starts_with("requests.")
}

/// Upstream `podComputeUsageHelper`: what requests and limits charge.
fn compute_usage(requests: &Usage, limits: &Usage) -> Usage {
    let mut out = Usage::new();
    put(&mut out, "pods", 1);
    for res in ["cpu", "memory", "ephemeral-storage"] {
        if let Some(q) = requests.get(res) {
            out.insert(res.into(), *q);
            out.insert(format!("requests.{res}"), *q);
        }
        if let Some(q) = limits.get(res) {
            out.insert(format!("limits.{res}"), *q);
        }
    }
    for (res, q) in requests {
        if res.starts_with("hugepages-") {
            out.insert(res.clone(), *q);
            out.insert(format!("requests.{res}"), *q);
        }
        if is_extended_resource(res) {
            out.insert(format!("requests.{res}"), *q);
        }
    }
    out
}

/// Terminal pods, and pods whose deletion grace period has run out, no
/// longer consume compute quota (upstream `QuotaV1Pod`).
pub fn pod_consumes_quota(pod: &Pod, now: DateTime<Utc>) -> bool {
    if is_terminal(pod) {
        return false;
    }
    match (
        pod.metadata.deletion_timestamp.as_ref(),
        pod.metadata.deletion_grace_period_seconds,
    ) {
        (Some(at), Some(grace)) => time_to_chrono(at) + Duration::seconds(grace) >= now,
        _ => true,
    }
}

/// Everything one pod charges (upstream `PodUsageFunc`).
pub fn pod_usage(pod: &Pod, now: DateTime<Utc>) -> Usage {
    let mut out = Usage::new();
    put(&mut out, "count/pods", 1);
    if pod_consumes_quota(pod, now) {
        out.extend(compute_usage(&pod_requests(pod), &pod_limits(pod)));
    }
    out
}

fn is_pod_resource(name: &str) -> bool {
    POD_RESOURCES.contains(&name)
        || name.starts_with("hugepages-")
        || name.starts_with("requests.hugepages-")
        || (!is_native_resource(name) && name.starts_with("requests."))
}

fn is_best_effort(pod: &Pod) -> bool {
    let Some(spec) = pod.spec.as_ref() else {
        return true;
    };
    let states = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten());
    !states.into_iter().any(|c| {
        [false, true].into_iter().any(|limits| {
            container_list(c, limits)
                .iter()
                .any(|(k, v)| (k == "cpu" || k == "memory") && !v.is_zero())
        })
    })
}

fn cross_namespace_affinity(pod: &Pod) -> bool {
    let Some(aff) = pod.spec.as_ref().and_then(|s| s.affinity.as_ref()) else {
        return false;
    };
    let cross = |t: &k8s_openapi::api::core::v1::PodAffinityTerm| {
        t.namespaces.as_ref().is_some_and(|n| !n.is_empty()) || t.namespace_selector.is_some()
    };
    let a = aff.pod_affinity.as_ref();
    let anti = aff.pod_anti_affinity.as_ref();
    let req = a
        .and_then(|x| {
            x.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .into_iter()
        .chain(anti.and_then(|x| {
            x.required_during_scheduling_ignored_during_execution
                .as_ref()
        }))
        .flatten()
        .any(cross);
    let pref = a
        .and_then(|x| {
            x.preferred_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .into_iter()
        .chain(anti.and_then(|x| {
            x.preferred_during_scheduling_ignored_during_execution
                .as_ref()
        }))
        .flatten()
        .any(|w| cross(&w.pod_affinity_term));
    req || pref
}

/// `activeDeadlineSeconds` set (and not negative).
fn is_terminating(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.active_deadline_seconds)
        .is_some_and(|d| d >= 0)
}

fn scope_matches(sel: &ScopedResourceSelectorRequirement, pod: &Pod) -> bool {
    let spec = pod.spec.as_ref();
    match sel.scope_name.as_str() {
        "Terminating" => is_terminating(pod),
        "NotTerminating" => !is_terminating(pod),
        "BestEffort" => is_best_effort(pod),
        "NotBestEffort" => !is_best_effort(pod),
        "CrossNamespacePodAffinity" => cross_namespace_affinity(pod),
        "PriorityClass" => {
            let class = spec
                .and_then(|s| s.priority_class_name.as_deref())
                .unwrap_or("");
            let vals = sel.values.as_deref().unwrap_or(&[]);
            let has = !class.is_empty();
            match sel.operator.as_str() {
                "Exists" => has,
                "DoesNotExist" => !has,
                "In" => has && vals.iter().any(|v| v == class),
                "NotIn" => !has || !vals.iter().any(|v| v == class),
                _ => false,
            }
        }
        _ => false,
    }
}

fn scope_selectors(quota: &ResourceQuota) -> Vec<ScopedResourceSelectorRequirement> {
    let spec = quota.spec.as_ref();
    let mut out: Vec<ScopedResourceSelectorRequirement> = spec
        .and_then(|s| s.scopes.as_ref())
        .into_iter()
        .flatten()
        .map(|s| ScopedResourceSelectorRequirement {
            scope_name: s.clone(),
            operator: "Exists".into(),
            values: None,
        })
        .collect();
    if let Some(sel) = spec.and_then(|s| s.scope_selector.as_ref()) {
        out.extend(sel.match_expressions.iter().flatten().cloned());
    }
    out
}

/// Whether a pod falls in every scope of the quota (no scopes: all pods).
pub fn pod_matches_scopes(quota: &ResourceQuota, pod: &Pod) -> bool {
    scope_selectors(quota).iter().all(|s| scope_matches(s, pod))
}

// ---------------------------------------------------------------------------
// Services, claims, object counts.

/// What one Service charges.
pub fn service_usage(svc: &Service) -> Usage {
    let spec = svc.spec.as_ref();
    let ports = spec.and_then(|s| s.ports.as_ref()).map_or(0, |p| p.len()) as i64;
    let mut out = Usage::new();
    put(&mut out, "count/services", 1);
    put(&mut out, "services", 1);
    put(&mut out, "services.loadbalancers", 0);
    put(&mut out, "services.nodeports", 0);
    match spec.and_then(|s| s.type_.as_deref()) {
        Some("NodePort") => {
            put(&mut out, "services.nodeports", ports);
        }
        Some("LoadBalancer") => {
            let allocate = spec.and_then(|s| s.allocate_load_balancer_node_ports) != Some(false);
            let node_ports = if allocate {
                ports
            } else {
                spec.and_then(|s| s.ports.as_ref())
                    .into_iter()
                    .flatten()
                    .filter(|p| p.node_port.is_some_and(|n| n != 0))
                    .count() as i64
            };
            put(&mut out, "services.nodeports", node_ports);
            put(&mut out, "services.loadbalancers", 1);
        }
        _ => {}
    }
    out
}

fn pvc_class(pvc: &PersistentVolumeClaim) -> &str {
    pvc.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("volume.beta.kubernetes.io/storage-class"))
        .map(String::as_str)
        .or_else(|| pvc.spec.as_ref()?.storage_class_name.as_deref())
        .unwrap_or("")
}

/// What one claim charges: the larger of its request and what was
/// allocated to it.
pub fn pvc_usage(pvc: &PersistentVolumeClaim) -> Usage {
    let mut out = Usage::new();
    put(&mut out, "count/persistentvolumeclaims", 1);
    put(&mut out, "persistentvolumeclaims", 1);
    let class = pvc_class(pvc);
    if !class.is_empty() {
        put(
            &mut out,
            format!("{class}{STORAGE_CLASS_SUFFIX}persistentvolumeclaims"),
            1,
        );
    }
    let request = pvc
        .spec
        .as_ref()
        .and_then(|s| s.resources.as_ref())
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .and_then(|q| parse_quantity(&q.0));
    let allocated = pvc
        .status
        .as_ref()
        .and_then(|s| s.allocated_resources.as_ref())
        .and_then(|r| r.get("storage"))
        .and_then(|q| parse_quantity(&q.0));
    let charged = match (request, allocated) {
        (Some(r), Some(a)) => Some(r.max(a)),
        (r, a) => r.or(a),
    };
    if let Some(q) = charged {
        out.insert("requests.storage".into(), q);
        if !class.is_empty() {
            out.insert(format!("{class}{STORAGE_CLASS_SUFFIX}requests.storage"), q);
        }
    }
    out
}

/// What creating one object of `resource` in API `group` charges
/// (`count/<resource>[.<group>]`, plus the legacy name for core kinds).
pub fn object_count_usage(resource: &str, group: &str) -> Usage {
    let mut out = Usage::new();
    let key = if group.is_empty() {
        format!("count/{resource}")
    } else {
        format!("count/{resource}.{group}")
    };
    put(&mut out, key, 1);
    let legacy = [
        "configmaps",
        "secrets",
        "replicationcontrollers",
        "resourcequotas",
    ];
    if group.is_empty() && legacy.contains(&resource) {
        put(&mut out, resource.to_string(), 1);
    }
    out
}

// ---------------------------------------------------------------------------
// The quota controller.

/// The namespace's objects the quota controller counts.
#[derive(Debug, Clone, Copy)]
pub struct QuotaInputs<'a> {
    pub pods: &'a [Pod],
    pub services: &'a [Service],
    pub pvcs: &'a [PersistentVolumeClaim],
    /// Object counts keyed `<resource>` (core) or `<resource>.<group>`
    /// (e.g. `configmaps`, `deployments.apps`), for `count/…` and the legacy
    /// `configmaps`/`secrets`/`replicationcontrollers`/`resourcequotas`.
    pub object_counts: &'a BTreeMap<String, i64>,
}

fn hard_of(quota: &ResourceQuota) -> Option<&ResourceList> {
    quota.spec.as_ref().and_then(|s| s.hard.as_ref())
}

/// The sum of `key` over all usages, printed ("0" when nothing charges it).
fn sum_usage(items: impl Iterator<Item = Usage>, key: &str) -> Quantity {
    let sum = items.fold(None, |acc: Option<Q>, u| match (acc, u.get(key)) {
        (Some(a), Some(q)) => Some(add(&a, q)),
        (None, Some(q)) => Some(*q),
        (acc, None) => acc,
    });
    Quantity(sum.map_or_else(|| "0".to_string(), |q| q.canonical()))
}

fn used_for(
    key: &str,
    quota: &ResourceQuota,
    inputs: &QuotaInputs,
    now: DateTime<Utc>,
) -> Option<Quantity> {
    let scoped = !scope_selectors(quota).is_empty();
    if is_pod_resource(key) {
        let pods = inputs.pods.iter().filter(|p| pod_matches_scopes(quota, p));
        return Some(sum_usage(pods.map(|p| pod_usage(p, now)), key));
    }
    if scoped {
        return None;
    }
    if SERVICE_RESOURCES.contains(&key) {
        return Some(sum_usage(inputs.services.iter().map(service_usage), key));
    }
    if PVC_RESOURCES.contains(&key) || key.contains(STORAGE_CLASS_SUFFIX) {
        return Some(sum_usage(inputs.pvcs.iter().map(pvc_usage), key));
    }
    let legacy = [
        "configmaps",
        "secrets",
        "replicationcontrollers",
        "resourcequotas",
    ];
    let counted = key
        .strip_prefix("count/")
        .or(legacy.contains(&key).then_some(key))?;
    let n = inputs.object_counts.get(counted).copied().unwrap_or(0);
    let q = parse_quantity(&n.to_string()).map_or_else(|| n.to_string(), |q| q.canonical());
    Some(Quantity(q))
}

/// `status.used` for every key of `spec.hard` this controller can measure.
pub fn quota_usage(
    quota: &ResourceQuota,
    inputs: &QuotaInputs,
    now: DateTime<Utc>,
) -> ResourceList {
    hard_of(quota)
        .into_iter()
        .flatten()
        .filter_map(|(k, _)| Some((k.clone(), used_for(k, quota, inputs, now)?)))
        .collect()
}

/// The full status to write (`hard` mirrors `spec.hard`).
pub fn quota_status(
    quota: &ResourceQuota,
    inputs: &QuotaInputs,
    now: DateTime<Utc>,
) -> ResourceQuotaStatus {
    ResourceQuotaStatus {
        hard: hard_of(quota).cloned(),
        used: Some(quota_usage(quota, inputs, now)),
    }
}

// ---------------------------------------------------------------------------
// Quota admission.

fn status_lists(quota: &ResourceQuota) -> (Usage, Usage) {
    let st = quota.status.as_ref();
    (
        parse_list(st.and_then(|s| s.hard.as_ref())),
        parse_list(st.and_then(|s| s.used.as_ref())),
    )
}

fn quota_name(quota: &ResourceQuota) -> &str {
    quota.metadata.name.as_deref().unwrap_or("")
}

/// Upstream `enforcePodContainerConstraints` over every container.
fn pod_constraints(required: &BTreeSet<&str>, pod: &Pod) -> Result<(), String> {
    let mut missing: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    if let Some(spec) = pod.spec.as_ref() {
        for c in spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
        {
            let usage = compute_usage(&container_list(c, false), &container_list(c, true));
            for r in required.iter().filter(|r| !usage.contains_key(**r)) {
                missing.entry(r).or_default().insert(c.name.clone());
            }
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let parts: Vec<String> = missing
        .iter()
        .map(|(r, names)| {
            format!(
                "{r} for: {}",
                names.iter().cloned().collect::<Vec<_>>().join(",")
            )
        })
        .collect();
    Err(format!("must specify {}", parts.join("; ")))
}

/// Charges `usage` against one quota whose tracked resources are
/// `restricted`: the new `status.used` to write, None when nothing changes.
fn charge(
    quota: &ResourceQuota,
    restricted: &BTreeSet<&str>,
    usage: &Usage,
) -> Result<Option<ResourceList>, String> {
    let name = quota_name(quota);
    let (hard, used) = status_lists(quota);
    if restricted.iter().any(|r| !used.contains_key(*r)) {
        let names: Vec<&str> = restricted.iter().copied().collect();
        return Err(format!(
            "status unknown for quota: {name}, resources: {}",
            names.join(",")
        ));
    }
    let negative: Vec<&str> = usage
        .iter()
        .filter(|(_, q)| q.is_negative())
        .map(|(k, _)| k.as_str())
        .collect();
    if !negative.is_empty() {
        return Err(format!(
            "quota usage is negative for resource(s): {}",
            negative.join(",")
        ));
    }
    let requested: Usage = usage
        .iter()
        .filter(|(k, q)| !q.is_zero() && hard.contains_key(*k))
        .map(|(k, q)| (k.clone(), *q))
        .collect();
    if requested.is_empty() {
        return Ok(None);
    }
    let mut new_used = used.clone();
    add_list(&mut new_used, &requested);
    let exceeded: Vec<&String> = requested
        .keys()
        .filter(|k| matches!((new_used.get(*k), hard.get(*k)), (Some(n), Some(h)) if n > h))
        .collect();
    if !exceeded.is_empty() {
        let mask = |u: &Usage| -> Usage {
            u.iter()
                .filter(|(k, _)| exceeded.contains(k))
                .map(|(k, v)| (k.clone(), *v))
                .collect()
        };
        return Err(format!(
            "exceeded quota: {name}, requested: {}, used: {}, limited: {}",
            pretty(&mask(&requested)),
            pretty(&mask(&used)),
            pretty(&mask(&hard))
        ));
    }
    Ok(Some(to_resource_list(&new_used)))
}

/// Admits a pod create against one quota of its namespace. `Ok(Some(used))`:
/// write `status.used = used` on the quota (resourceVersion precondition;
/// on conflict re-read and retry) before persisting the pod; `Ok(None)`:
/// the quota is unaffected. `Err` is the text of a 403
/// (`pods "<name>" is forbidden: <text>`).
pub fn admit_pod_against_quota(
    quota: &ResourceQuota,
    pod: &Pod,
    now: DateTime<Utc>,
) -> Result<Option<ResourceList>, String> {
    let (hard, _) = status_lists(quota);
    let restricted: BTreeSet<&str> = hard
        .keys()
        .map(String::as_str)
        .filter(|k| is_pod_resource(k))
        .collect();
    if restricted.is_empty() || !pod_matches_scopes(quota, pod) {
        return Ok(None);
    }
    let required: BTreeSet<&str> = restricted
        .iter()
        .copied()
        .filter(|r| VALIDATION_SET.contains(r))
        .collect();
    pod_constraints(&required, pod)
        .map_err(|e| format!("failed quota: {}: {e}", quota_name(quota)))?;
    charge(quota, &restricted, &pod_usage(pod, now))
}

/// Admits a pod against every quota of its namespace: the quota names and
/// `used` maps to write, or the first refusal.
pub fn admit_pod_against_quotas(
    quotas: &[ResourceQuota],
    pod: &Pod,
    now: DateTime<Utc>,
) -> Result<Vec<(String, ResourceList)>, String> {
    let mut out = Vec::new();
    for q in quotas {
        if let Some(used) = admit_pod_against_quota(q, pod, now)? {
            out.push((quota_name(q).to_string(), used));
        }
    }
    Ok(out)
}

/// Admits a non-pod object (its `service_usage`, `pvc_usage` or
/// `object_count_usage`) against one quota; scoped quotas only track pods.
pub fn admit_usage_against_quota(
    quota: &ResourceQuota,
    usage: &Usage,
) -> Result<Option<ResourceList>, String> {
    if !scope_selectors(quota).is_empty() {
        return Ok(None);
    }
    let (hard, _) = status_lists(quota);
    let restricted: BTreeSet<&str> = hard
        .keys()
        .map(String::as_str)
        .filter(|k| usage.contains_key(*k))
        .collect();
    if restricted.is_empty() {
        return Ok(None);
    }
    charge(quota, &restricted, usage)
}

// ---------------------------------------------------------------------------
// LimitRange.

/// An item's lists with the API defaults applied (max → default,
/// default → defaultRequest, min → defaultRequest for Container items), so
/// objects stored without defaulting behave the same.
struct Item {
    type_: String,
    min: Usage,
    max: Usage,
    default: Usage,
    default_request: Usage,
    ratio: Usage,
}

fn item(i: &LimitRangeItem) -> Item {
    let mut it = Item {
        type_: i.type_.clone(),
        min: parse_list(i.min.as_ref()),
        max: parse_list(i.max.as_ref()),
        default: parse_list(i.default.as_ref()),
        default_request: parse_list(i.default_request.as_ref()),
        ratio: parse_list(i.max_limit_request_ratio.as_ref()),
    };
    if it.type_ == "Container" {
        for (k, v) in &it.max {
            it.default.entry(k.clone()).or_insert(*v);
        }
        for (k, v) in it.default.iter().chain(it.min.iter()) {
            it.default_request.entry(k.clone()).or_insert(*v);
        }
    }
    it
}

fn items(range: &LimitRange) -> Vec<Item> {
    range
        .spec
        .as_ref()
        .map(|s| s.limits.iter().map(item).collect())
        .unwrap_or_default()
}

/// Fills missing container requests/limits from one range's Container
/// defaults; returns the annotation fragments (upstream wording).
fn default_container(c: &mut Container, defaults: &Item, kind: &str) -> Vec<String> {
    let res = c.resources.get_or_insert_with(Default::default);
    let fill = |list: &mut Option<ResourceList>, from: &Usage| -> Vec<String> {
        let list = list.get_or_insert_with(BTreeMap::new);
        let mut set = Vec::new();
        for (k, v) in from {
            if !list.contains_key(k) {
                list.insert(k.clone(), Quantity(v.canonical()));
                set.push(k.clone());
            }
        }
        set
    };
    let limits = fill(&mut res.limits, &defaults.default);
    let requests = fill(&mut res.requests, &defaults.default_request);
    let name = &c.name;
    let mut notes = Vec::new();
    if !requests.is_empty() {
        notes.push(format!("{} request for {kind} {name}", requests.join(", ")));
    }
    if !limits.is_empty() {
        notes.push(format!("{} limit for {kind} {name}", limits.join(", ")));
    }
    notes
}

/// Upstream `PodMutateLimitFunc` for one range.
fn mutate_pod(pod: &mut Pod, range: &LimitRange) {
    let mut defaults = Item {
        type_: "Container".into(),
        min: Usage::new(),
        max: Usage::new(),
        default: Usage::new(),
        default_request: Usage::new(),
        ratio: Usage::new(),
    };
    for it in items(range).into_iter().filter(|i| i.type_ == "Container") {
        defaults.default.extend(it.default);
        defaults.default_request.extend(it.default_request);
    }
    let Some(spec) = pod.spec.as_mut() else {
        return;
    };
    let mut notes = Vec::new();
    for c in spec.containers.iter_mut() {
        notes.extend(default_container(c, &defaults, "container"));
    }
    for c in spec.init_containers.iter_mut().flatten() {
        notes.extend(default_container(c, &defaults, "init container"));
    }
    if !notes.is_empty() {
        pod.metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(
                LIMIT_RANGER_ANNOTATION.to_string(),
                format!("LimitRanger plugin set: {}", notes.join("; ")),
            );
    }
}

fn min_constraint(kind: &str, res: &str, enforced: &Q, req: &Usage, lim: &Usage) -> Option<String> {
    let Some(r) = req.get(res) else {
        return Some(format!(
            "minimum {res} usage per {kind} is {enforced}.  No request is specified"
        ));
    };
    if r < enforced {
        return Some(format!(
            "minimum {res} usage per {kind} is {enforced}, but request is {r}"
        ));
    }
    match lim.get(res) {
        Some(l) if l < enforced => Some(format!(
            "minimum {res} usage per {kind} is {enforced}, but limit is {l}"
        )),
        _ => None,
    }
}

fn max_constraint(kind: &str, res: &str, enforced: &Q, req: &Usage, lim: &Usage) -> Option<String> {
    let Some(l) = lim.get(res) else {
        return Some(format!(
            "maximum {res} usage per {kind} is {enforced}.  No limit is specified"
        ));
    };
    if l > enforced {
        return Some(format!(
            "maximum {res} usage per {kind} is {enforced}, but limit is {l}"
        ));
    }
    match req.get(res) {
        Some(r) if r > enforced => Some(format!(
            "maximum {res} usage per {kind} is {enforced}, but request is {r}"
        )),
        _ => None,
    }
}

fn max_request_constraint(kind: &str, res: &str, enforced: &Q, req: &Usage) -> Option<String> {
    match req.get(res) {
        None => Some(format!(
            "maximum {res} usage per {kind} is {enforced}.  No request is specified"
        )),
        Some(r) if r > enforced => Some(format!(
            "maximum {res} usage per {kind} is {enforced}, but request is {r}"
        )),
        _ => None,
    }
}

fn ratio_constraint(
    kind: &str,
    res: &str,
    enforced: &Q,
    req: &Usage,
    lim: &Usage,
) -> Option<String> {
    let r = req.get(res).map_or(0, |q| q.milli_value());
    if r == 0 {
        return Some(format!(
            "{res} max limit to request ratio per {kind} is {enforced}, but no request is specified or request is 0"
        ));
    }
    let l = lim.get(res).map_or(0, |q| q.milli_value());
    if l == 0 {
        return Some(format!(
            "{res} max limit to request ratio per {kind} is {enforced}, but no limit is specified or limit is 0"
        ));
    }
    let ratio = l as f64 / r as f64;
    if ratio * 1000.0 > enforced.milli_value() as f64 {
        return Some(format!(
            "{res} max limit to request ratio per {kind} is {enforced}, but provided ratio is {ratio:.6}"
        ));
    }
    None
}

fn check_all(it: &Item, kind: &str, req: &Usage, lim: &Usage, errs: &mut Vec<String>) {
    for (k, v) in &it.min {
        errs.extend(min_constraint(kind, k, v, req, lim));
    }
    for (k, v) in &it.max {
        errs.extend(max_constraint(kind, k, v, req, lim));
    }
    for (k, v) in &it.ratio {
        errs.extend(ratio_constraint(kind, k, v, req, lim));
    }
}

/// Upstream `PodValidateLimitFunc` for one range.
fn validate_pod(pod: &Pod, range: &LimitRange) -> Result<(), String> {
    let mut errs = Vec::new();
    for it in items(range) {
        match it.type_.as_str() {
            "Container" => {
                let spec = pod.spec.as_ref();
                let all = spec
                    .map(|s| {
                        s.containers
                            .iter()
                            .chain(s.init_containers.iter().flatten())
                    })
                    .into_iter()
                    .flatten();
                for c in all {
                    check_all(
                        &it,
                        "Container",
                        &container_list(c, false),
                        &container_list(c, true),
                        &mut errs,
                    );
                }
            }
            "Pod" => {
                let req = aggregate_containers(pod, false);
                let lim = aggregate_containers(pod, true);
                check_all(&it, "Pod", &req, &lim, &mut errs);
            }
            _ => {}
        }
    }
    aggregate(&errs).map_or(Ok(()), Err)
}

/// LimitRanger admission for a pod create: applies every range's container
/// defaults (and the `kubernetes.io/limit-ranger` annotation), then checks
/// every range. `Err` is the text of a 403 (`pods "<name>" is forbidden: …`).
pub fn apply_limit_ranges(pod: &mut Pod, ranges: &[LimitRange]) -> Result<(), String> {
    for r in ranges {
        mutate_pod(pod, r);
    }
    ranges.iter().try_for_each(|r| validate_pod(pod, r))
}

/// LimitRanger admission for a claim: `PersistentVolumeClaim` items bound
/// the requested storage (claims are never defaulted).
pub fn validate_pvc_limit_ranges(
    pvc: &PersistentVolumeClaim,
    ranges: &[LimitRange],
) -> Result<(), String> {
    let req = parse_list(
        pvc.spec
            .as_ref()
            .and_then(|s| s.resources.as_ref())
            .and_then(|r| r.requests.as_ref()),
    );
    for r in ranges {
        let mut errs = Vec::new();
        for it in items(r)
            .iter()
            .filter(|i| i.type_ == "PersistentVolumeClaim")
        {
            for (k, v) in &it.min {
                errs.extend(min_constraint(
                    "PersistentVolumeClaim",
                    k,
                    v,
                    &req,
                    &Usage::new(),
                ));
            }
            for (k, v) in &it.max {
                errs.extend(max_request_constraint("PersistentVolumeClaim", k, v, &req));
            }
        }
        if let Some(e) = aggregate(&errs) {
            return Err(e);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        LimitRangeSpec, PersistentVolumeClaimSpec, PodSpec, PodStatus, ResourceQuotaSpec,
        ResourceRequirements, ScopeSelector, ServicePort, ServiceSpec, VolumeResourceRequirements,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default()
    }

    fn rl(pairs: &[(&str, &str)]) -> ResourceList {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
            .collect()
    }

    fn opt(pairs: &[(&str, &str)]) -> Option<ResourceList> {
        (!pairs.is_empty()).then(|| rl(pairs))
    }

    fn container(name: &str, req: &[(&str, &str)], lim: &[(&str, &str)]) -> Container {
        Container {
            name: name.into(),
            resources: Some(ResourceRequirements {
                requests: opt(req),
                limits: opt(lim),
                claims: None,
            }),
            ..Default::default()
        }
    }

    fn pod_of(name: &str, containers: Vec<Container>) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                containers,
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: Some("Running".into()),
                ..Default::default()
            }),
        }
    }

    fn quota(name: &str, hard: &[(&str, &str)], used: &[(&str, &str)]) -> ResourceQuota {
        ResourceQuota {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                ..Default::default()
            },
            spec: Some(ResourceQuotaSpec {
                hard: Some(rl(hard)),
                ..Default::default()
            }),
            status: Some(ResourceQuotaStatus {
                hard: Some(rl(hard)),
                used: Some(rl(used)),
            }),
        }
    }

    fn pvc(class: Option<&str>, storage: &str) -> PersistentVolumeClaim {
        PersistentVolumeClaim {
            spec: Some(PersistentVolumeClaimSpec {
                storage_class_name: class.map(str::to_string),
                resources: Some(VolumeResourceRequirements {
                    requests: Some(rl(&[("storage", storage)])),
                    limits: None,
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn service(type_: &str, node_ports: &[Option<i32>], allocate: Option<bool>) -> Service {
        Service {
            spec: Some(ServiceSpec {
                type_: Some(type_.into()),
                allocate_load_balancer_node_ports: allocate,
                ports: Some(
                    node_ports
                        .iter()
                        .map(|n| ServicePort {
                            port: 80,
                            node_port: *n,
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn printed(u: &Usage) -> Vec<(String, String)> {
        u.iter().map(|(k, v)| (k.clone(), v.canonical())).collect()
    }

    #[test]
    fn pod_requests_table() {
        let mut sidecar = container("side", &[("cpu", "500m")], &[]);
        sidecar.restart_policy = Some("Always".into());
        let cases: Vec<(&str, Vec<Container>, Vec<Container>, &str)> = vec![
            (
                "containers sum",
                vec![
                    container("a", &[("cpu", "1")], &[]),
                    container("b", &[("cpu", "250m")], &[]),
                ],
                vec![],
                "1250m",
            ),
            (
                "init max wins",
                vec![container("a", &[("cpu", "1")], &[])],
                vec![container("i", &[("cpu", "3")], &[])],
                "3",
            ),
            (
                "containers win",
                vec![container("a", &[("cpu", "4")], &[])],
                vec![container("i", &[("cpu", "3")], &[])],
                "4",
            ),
            (
                "sidecar adds to both",
                vec![
                    container("a", &[("cpu", "1")], &[]),
                    container("b", &[("cpu", "1")], &[]),
                ],
                vec![sidecar, container("i", &[("cpu", "3")], &[])],
                "3500m",
            ),
        ];
        for (name, containers, init, want) in cases {
            let mut p = pod_of("p", containers);
            if let Some(s) = p.spec.as_mut() {
                s.init_containers = Some(init);
            }
            assert_eq!(
                pod_requests(&p)
                    .get("cpu")
                    .map(|q| q.canonical())
                    .as_deref(),
                Some(want),
                "{name}"
            );
        }
    }

    #[test]
    fn quota_usage_table() {
        let mut done = pod_of("done", vec![container("a", &[("cpu", "8")], &[])]);
        if let Some(s) = done.status.as_mut() {
            s.phase = Some("Succeeded".into());
        }
        let pods = vec![
            pod_of(
                "a",
                vec![container(
                    "a",
                    &[("cpu", "500m"), ("memory", "1Gi")],
                    &[("memory", "1Gi")],
                )],
            ),
            pod_of(
                "b",
                vec![container(
                    "b",
                    &[("cpu", "1"), ("memory", "512Mi"), ("nvidia.com/gpu", "1")],
                    &[("cpu", "2")],
                )],
            ),
            done,
        ];
        let services = vec![
            service("ClusterIP", &[None], None),
            service("NodePort", &[Some(30001), Some(30002)], None),
            service("LoadBalancer", &[Some(30003), None, None], Some(false)),
        ];
        let pvcs = vec![pvc(Some("gold"), "5Gi"), pvc(None, "1Gi")];
        let counts: BTreeMap<String, i64> = [
            ("configmaps".to_string(), 3),
            ("deployments.apps".to_string(), 2),
        ]
        .into();
        let hard: Vec<(&str, &str)> = [
            "pods",
            "count/pods",
            "cpu",
            "requests.cpu",
            "requests.memory",
            "limits.cpu",
            "limits.memory",
            "requests.nvidia.com/gpu",
            "services",
            "services.nodeports",
            "services.loadbalancers",
            "count/services",
            "persistentvolumeclaims",
            "requests.storage",
            "gold.storageclass.storage.k8s.io/requests.storage",
            "configmaps",
            "count/configmaps",
            "count/deployments.apps",
            "count/secrets",
            "bogus",
        ]
        .iter()
        .map(|k| (*k, "100"))
        .collect();
        let q = quota("q", &hard, &[]);
        let inputs = QuotaInputs {
            pods: &pods,
            services: &services,
            pvcs: &pvcs,
            object_counts: &counts,
        };
        let used = quota_usage(&q, &inputs, now());
        let want = [
            ("pods", "2"),
            ("count/pods", "3"),
            ("cpu", "1500m"),
            ("requests.cpu", "1500m"),
            ("requests.memory", "1536Mi"),
            ("limits.cpu", "2"),
            ("limits.memory", "1Gi"),
            ("requests.nvidia.com/gpu", "1"),
            ("services", "3"),
            ("services.nodeports", "3"),
            ("services.loadbalancers", "1"),
            ("count/services", "3"),
            ("persistentvolumeclaims", "2"),
            ("requests.storage", "6Gi"),
            ("gold.storageclass.storage.k8s.io/requests.storage", "5Gi"),
            ("configmaps", "3"),
            ("count/configmaps", "3"),
            ("count/deployments.apps", "2"),
            ("count/secrets", "0"),
        ];
        for (k, v) in want {
            assert_eq!(used.get(k).map(|q| q.0.as_str()), Some(v), "{k}");
        }
        assert!(!used.contains_key("bogus"));
        let st = quota_status(&q, &inputs, now());
        assert_eq!(st.hard, q.spec.as_ref().and_then(|s| s.hard.clone()));
    }

    #[test]
    fn scopes_table() {
        let best_effort = pod_of("be", vec![container("a", &[], &[])]);
        let burstable = pod_of("bu", vec![container("a", &[("cpu", "1")], &[])]);
        let mut terminating = burstable.clone();
        let mut high = burstable.clone();
        if let Some(s) = terminating.spec.as_mut() {
            s.active_deadline_seconds = Some(30);
        }
        if let Some(s) = high.spec.as_mut() {
            s.priority_class_name = Some("high".into());
        }
        let scoped = |scopes: &[&str]| {
            let mut q = quota("q", &[("pods", "1")], &[("pods", "0")]);
            if let Some(s) = q.spec.as_mut() {
                s.scopes = Some(scopes.iter().map(|s| s.to_string()).collect());
            }
            q
        };
        let mut priority = quota("q", &[("pods", "1")], &[("pods", "0")]);
        if let Some(s) = priority.spec.as_mut() {
            s.scope_selector = Some(ScopeSelector {
                match_expressions: Some(vec![ScopedResourceSelectorRequirement {
                    scope_name: "PriorityClass".into(),
                    operator: "In".into(),
                    values: Some(vec!["high".into()]),
                }]),
            });
        }
        let cases = vec![
            (
                "BestEffort matches best effort",
                scoped(&["BestEffort"]),
                &best_effort,
                true,
            ),
            (
                "BestEffort skips burstable",
                scoped(&["BestEffort"]),
                &burstable,
                false,
            ),
            (
                "NotBestEffort",
                scoped(&["NotBestEffort"]),
                &burstable,
                true,
            ),
            ("Terminating", scoped(&["Terminating"]), &terminating, true),
            (
                "NotTerminating",
                scoped(&["NotTerminating"]),
                &terminating,
                false,
            ),
            (
                "all scopes must match",
                scoped(&["NotBestEffort", "Terminating"]),
                &burstable,
                false,
            ),
            ("priority class in", priority.clone(), &high, true),
            ("priority class missing", priority, &burstable, false),
        ];
        for (name, q, p, want) in cases {
            assert_eq!(pod_matches_scopes(&q, p), want, "{name}");
            let charged = admit_pod_against_quota(&q, p, now());
            assert_eq!(charged.map(|c| c.is_some()), Ok(want), "{name}");
        }
    }

    #[test]
    fn pod_admission_table() {
        let hard = [
            ("requests.cpu", "2"),
            ("requests.memory", "1Gi"),
            ("pods", "10"),
        ];
        let used = [
            ("requests.cpu", "1"),
            ("requests.memory", "0"),
            ("pods", "1"),
        ];
        let two_cpu = pod_of(
            "big",
            vec![container("x", &[("cpu", "2"), ("memory", "100Mi")], &[])],
        );
        let small = pod_of(
            "small",
            vec![container("x", &[("cpu", "500m"), ("memory", "100Mi")], &[])],
        );
        let no_mem = pod_of(
            "nomem",
            vec![
                container("x", &[("cpu", "500m")], &[]),
                container("y", &[], &[]),
            ],
        );
        type Want = Result<Vec<(&'static str, &'static str)>, &'static str>;
        let cases: Vec<(&str, ResourceQuota, &Pod, Want)> = vec![
            (
                "exceeds",
                quota("compute-resources", &hard, &used),
                &two_cpu,
                Err(
                    "exceeded quota: compute-resources, requested: requests.cpu=2, used: requests.cpu=1, limited: requests.cpu=2",
                ),
            ),
            (
                "fits",
                quota("compute-resources", &hard, &used),
                &small,
                Ok(vec![
                    ("pods", "2"),
                    ("requests.cpu", "1500m"),
                    ("requests.memory", "100Mi"),
                ]),
            ),
            (
                "missing requests",
                quota("compute-resources", &hard, &used),
                &no_mem,
                Err(
                    "failed quota: compute-resources: must specify requests.cpu for: y; requests.memory for: x,y",
                ),
            ),
            (
                "limits required",
                quota(
                    "compute-resources",
                    &[("limits.cpu", "4")],
                    &[("limits.cpu", "0")],
                ),
                &small,
                Err("failed quota: compute-resources: must specify limits.cpu for: x"),
            ),
            (
                "status not computed yet",
                quota("compute-resources", &hard, &[]),
                &small,
                Err(
                    "status unknown for quota: compute-resources, resources: pods,requests.cpu,requests.memory",
                ),
            ),
            (
                "unrelated quota",
                quota("objects", &[("services", "1")], &[("services", "0")]),
                &small,
                Ok(vec![]),
            ),
        ];
        for (name, q, p, want) in cases {
            let got = admit_pod_against_quotas(std::slice::from_ref(&q), p, now());
            match want {
                Ok(w) => {
                    let got = got.expect(name);
                    let flat: Vec<(String, String)> = got
                        .iter()
                        .flat_map(|(_, u)| u.iter().map(|(k, v)| (k.clone(), v.0.clone())))
                        .collect();
                    let w: Vec<(String, String)> = w
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect();
                    assert_eq!(flat, w, "{name}");
                }
                Err(msg) => assert_eq!(got, Err(msg.to_string()), "{name}"),
            }
        }
    }

    #[test]
    fn object_admission() {
        let q = quota(
            "objects",
            &[("services.nodeports", "2"), ("services", "5")],
            &[("services.nodeports", "1"), ("services", "1")],
        );
        let np = service("NodePort", &[None, None], None);
        assert_eq!(
            admit_usage_against_quota(&q, &service_usage(&np)),
            Err("exceeded quota: objects, requested: services.nodeports=2, used: services.nodeports=1, limited: services.nodeports=2".to_string())
        );
        let ok =
            admit_usage_against_quota(&q, &service_usage(&service("ClusterIP", &[None], None)));
        assert_eq!(
            ok,
            Ok(Some(rl(&[("services", "2"), ("services.nodeports", "1")])))
        );
        let cm = quota(
            "cm",
            &[("count/configmaps", "1")],
            &[("count/configmaps", "1")],
        );
        assert_eq!(
            admit_usage_against_quota(&cm, &object_count_usage("configmaps", "")),
            Err("exceeded quota: cm, requested: count/configmaps=1, used: count/configmaps=1, limited: count/configmaps=1".to_string())
        );
        assert_eq!(
            printed(&object_count_usage("deployments", "apps")),
            vec![("count/deployments.apps".to_string(), "1".to_string())]
        );
        let claim = pvc_usage(&pvc(Some("gold"), "5Gi"));
        assert_eq!(
            claim
                .get("gold.storageclass.storage.k8s.io/persistentvolumeclaims")
                .map(|q| q.canonical())
                .as_deref(),
            Some("1")
        );
    }

    fn range(items: Vec<LimitRangeItem>) -> LimitRange {
        LimitRange {
            metadata: ObjectMeta::default(),
            spec: Some(LimitRangeSpec { limits: items }),
        }
    }

    fn lr_item(type_: &str, f: impl FnOnce(&mut LimitRangeItem)) -> LimitRangeItem {
        let mut it = LimitRangeItem {
            type_: type_.into(),
            ..Default::default()
        };
        f(&mut it);
        it
    }

    #[test]
    fn limit_range_defaults() {
        let r = range(vec![lr_item("Container", |i| {
            i.default = opt(&[("cpu", "500m"), ("memory", "256Mi")]);
            i.default_request = opt(&[("cpu", "100m")]);
        })]);
        let mut p = pod_of(
            "p",
            vec![
                container("nginx", &[], &[]),
                container(
                    "side",
                    &[("cpu", "50m")],
                    &[("cpu", "1"), ("memory", "1Gi")],
                ),
            ],
        );
        assert_eq!(apply_limit_ranges(&mut p, &[r]), Ok(()));
        let spec = p.spec.as_ref().expect("spec");
        let res = spec.containers[0].resources.as_ref().expect("resources");
        assert_eq!(res.limits, opt(&[("cpu", "500m"), ("memory", "256Mi")]));
        assert_eq!(res.requests, opt(&[("cpu", "100m"), ("memory", "256Mi")]));
        let side = spec.containers[1].resources.as_ref().expect("resources");
        assert_eq!(side.requests, opt(&[("cpu", "50m"), ("memory", "256Mi")]));
        assert_eq!(
            p.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(LIMIT_RANGER_ANNOTATION))
                .map(String::as_str),
            Some(
                "LimitRanger plugin set: cpu, memory request for container nginx; cpu, memory limit for container nginx; memory request for container side"
            )
        );
    }

    #[test]
    fn limit_range_validation_table() {
        let cases: Vec<(&str, LimitRangeItem, Vec<Container>, Option<&str>)> = vec![
            (
                "max limit",
                lr_item("Container", |i| i.max = opt(&[("cpu", "1")])),
                vec![container("x", &[("cpu", "500m")], &[("cpu", "2")])],
                Some("maximum cpu usage per Container is 1, but limit is 2"),
            ),
            (
                "max defaults the limit",
                lr_item("Container", |i| i.max = opt(&[("cpu", "1")])),
                vec![container("x", &[], &[])],
                None,
            ),
            (
                "min request",
                lr_item("Container", |i| i.min = opt(&[("memory", "100Mi")])),
                vec![container("x", &[("memory", "50Mi")], &[])],
                Some("minimum memory usage per Container is 100Mi, but request is 50Mi"),
            ),
            (
                "ratio",
                lr_item("Container", |i| {
                    i.max_limit_request_ratio = opt(&[("cpu", "2")])
                }),
                vec![container("x", &[("cpu", "100m")], &[("cpu", "500m")])],
                Some(
                    "cpu max limit to request ratio per Container is 2, but provided ratio is 5.000000",
                ),
            ),
            (
                "ratio without limit",
                lr_item("Container", |i| {
                    i.max_limit_request_ratio = opt(&[("cpu", "2")])
                }),
                vec![container("x", &[("cpu", "100m")], &[])],
                Some(
                    "cpu max limit to request ratio per Container is 2, but no limit is specified or limit is 0",
                ),
            ),
            (
                "pod max",
                lr_item("Pod", |i| i.max = opt(&[("cpu", "1")])),
                vec![
                    container("a", &[], &[("cpu", "600m")]),
                    container("b", &[], &[("cpu", "600m")]),
                ],
                Some("maximum cpu usage per Pod is 1, but limit is 1200m"),
            ),
            (
                "several errors",
                lr_item("Container", |i| {
                    i.max = opt(&[("cpu", "1"), ("memory", "1Gi")])
                }),
                vec![container("x", &[], &[("cpu", "2"), ("memory", "2Gi")])],
                Some(
                    "[maximum cpu usage per Container is 1, but limit is 2, maximum memory usage per Container is 1Gi, but limit is 2Gi]",
                ),
            ),
        ];
        for (name, it, containers, want) in cases {
            let mut p = pod_of("p", containers);
            let got = apply_limit_ranges(&mut p, &[range(vec![it])]);
            assert_eq!(got, want.map_or(Ok(()), |m| Err(m.to_string())), "{name}");
        }
    }

    #[test]
    fn pvc_limit_range() {
        let r = range(vec![lr_item("PersistentVolumeClaim", |i| {
            i.min = opt(&[("storage", "1Gi")]);
            i.max = opt(&[("storage", "10Gi")]);
        })]);
        let cases = [
            ("5Gi", None),
            (
                "20Gi",
                Some(
                    "maximum storage usage per PersistentVolumeClaim is 10Gi, but request is 20Gi",
                ),
            ),
            (
                "500Mi",
                Some(
                    "minimum storage usage per PersistentVolumeClaim is 1Gi, but request is 500Mi",
                ),
            ),
        ];
        for (size, want) in cases {
            let got = validate_pvc_limit_ranges(&pvc(None, size), std::slice::from_ref(&r));
            assert_eq!(got, want.map_or(Ok(()), |m| Err(m.to_string())), "{size}");
        }
    }
}
