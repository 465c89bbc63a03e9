//! Pure planning for the **EndpointSlice** controller (upstream
//! `pkg/controller/endpointslice` + the `k8s.io/endpointslice` reconciler):
//! given a Service, the pods of its namespace, the nodes and the
//! EndpointSlices this controller already manages for the Service, compute
//! the creates, updates and deletes that make the slices match the pods.
//!
//! Invariants (as upstream):
//! - Only Services with a non-empty selector that are not `ExternalName` are
//!   handled; for any other Service the plan is empty.
//! - One group of slices per (address type, resolved port set); at most
//!   `max_endpoints_per_slice` endpoints per slice.
//! - Minimal churn: existing slices are kept, trimmed and refilled before
//!   anything is created; a create that coincides with a delete becomes an
//!   update of the slice that would have been deleted; unchanged slices get
//!   no action.
//! - Every address type the Service supports keeps at least one slice: an
//!   empty placeholder slice (no ports, no endpoints) when there are no
//!   endpoints.
//! - No creates while the Service is being deleted.
//!
//! Must not: do I/O, read clocks, touch slices not labelled as managed by
//! `endpointslice-controller.k8s.io`, or handle topology hints /
//! trafficDistribution (hints are never written).

use crate::controllers::endpoints::plan::{
    self as ep, Event, find_port, is_headless, is_ipv6, is_managed_service, pod_ips,
    protocol_or_tcp, selected_pods, service_ip_set, should_pod_be_in_endpoints,
    should_set_hostname,
};
use crate::controllers::podutil;
use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{Node, ObjectReference, Pod, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use std::borrow::Borrow;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

/// Label naming the Service a slice belongs to.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// Label naming the controller that manages a slice.
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
/// Value of [`MANAGED_BY_LABEL`] for this controller.
pub const CONTROLLER_NAME: &str = "endpointslice-controller.k8s.io";
/// Node label carrying the zone.
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";
/// Upstream default of `--max-endpoints-per-slice`.
pub const DEFAULT_MAX_ENDPOINTS_PER_SLICE: usize = 100;

/// One API call for the shell to make, in order.
#[derive(Clone, Debug, PartialEq)]
pub enum SliceAction {
    /// POST (the slice has `generateName`, no name).
    Create(EndpointSlice),
    /// PUT (name and resourceVersion of the slice it replaces).
    Update(EndpointSlice),
    /// DELETE by name (use `uid` as a precondition when present); ignore NotFound.
    Delete { name: String, uid: Option<String> },
}

/// Result of one sync.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SlicePlan {
    pub actions: Vec<SliceAction>,
    /// Problems that did not stop the plan (e.g. a pod on an unknown node).
    /// When non-empty the shell should apply `actions`, requeue the Service
    /// with backoff and record [`failed_sync_event`].
    pub errors: Vec<String>,
}

/// Everything one sync looks at.
#[derive(Clone, Copy, Debug)]
pub struct SliceInput<'a, P: Borrow<Pod> = Pod, N: Borrow<Node> = Node> {
    pub service: &'a Service,
    /// Pods of the namespace (the selector is applied here).
    pub pods: &'a [P],
    /// All nodes (for zone lookup and the missing-node rule).
    pub nodes: &'a [N],
    /// Slices labelled with the Service's name (filtered further here).
    pub existing: &'a [EndpointSlice],
    /// From `endpoints::plan::TriggerTimeTracker::compute`.
    pub trigger_time: Option<DateTime<Utc>>,
    /// Usually [`DEFAULT_MAX_ENDPOINTS_PER_SLICE`].
    pub max_endpoints_per_slice: usize,
}

/// Plans one sync. An unmanaged Service yields an empty plan.
pub fn plan<P: Borrow<Pod>, N: Borrow<Node>>(input: &SliceInput<P, N>) -> SlicePlan {
    let svc = input.service;
    let mut out = SlicePlan::default();
    if !is_managed_service(svc) {
        return out;
    }
    let max = input.max_endpoints_per_slice.max(1);
    let nodes: BTreeMap<&str, &Node> = input
        .nodes
        .iter()
        .map(|n| n.borrow())
        .filter_map(|n| Some((n.metadata.name.as_deref()?, n)))
        .collect();
    let pods = selected_pods(svc, input.pods);
    let existing: Vec<&EndpointSlice> = input
        .existing
        .iter()
        .filter(|s| is_candidate(svc, s))
        .collect();
    let types = address_types(svc);
    let mut stale = Vec::new();
    for t in &types {
        let mine: Vec<&EndpointSlice> = existing
            .iter()
            .copied()
            .filter(|s| &s.address_type == t)
            .collect();
        let desired = desired_endpoints(svc, &pods, &nodes, t, &mut out.errors);
        out.actions.extend(reconcile_type(
            svc,
            mine,
            desired,
            t,
            max,
            input.trigger_time,
        ));
    }
    for s in existing.iter().filter(|s| !types.contains(&s.address_type)) {
        stale.push(delete_action(s));
    }
    out.actions.extend(stale);
    out
}

/// Warning event recorded on the Service when a sync reports errors.
pub fn failed_sync_event(svc: &Service, errors: &[String]) -> Event {
    let ns = svc.metadata.namespace.as_deref().unwrap_or_default();
    let name = svc.metadata.name.as_deref().unwrap_or_default();
    let agg = match errors {
        [one] => one.clone(),
        many => format!("[{}]", many.join(", ")),
    };
    Event {
        type_: "Warning".to_string(),
        reason: "FailedToUpdateEndpointSlices".to_string(),
        message: format!("Error updating Endpoint Slices for Service {ns}/{name}: {agg}"),
    }
}

/// A slice this controller manages for this Service and that is not being deleted.
fn is_candidate(svc: &Service, s: &EndpointSlice) -> bool {
    let labels = s.metadata.labels.as_ref();
    let label = |k: &str| labels.and_then(|l| l.get(k)).map(String::as_str);
    s.metadata.name.as_deref().is_some_and(|n| !n.is_empty())
        && s.metadata.deletion_timestamp.is_none()
        && s.metadata.namespace == svc.metadata.namespace
        && label(SERVICE_NAME_LABEL) == svc.metadata.name.as_deref()
        && label(MANAGED_BY_LABEL) == Some(CONTROLLER_NAME)
}

/// Address types the Service supports (upstream `getAddressTypesForService`).
pub fn address_types(svc: &Service) -> BTreeSet<String> {
    let spec = svc.spec.as_ref();
    let mut out: BTreeSet<String> = spec
        .and_then(|s| s.ip_families.as_ref())
        .into_iter()
        .flatten()
        .filter(|f| *f == "IPv4" || *f == "IPv6")
        .cloned()
        .collect();
    if !out.is_empty() {
        return out;
    }
    if service_ip_set(svc) {
        let ip = spec
            .and_then(|s| s.cluster_ip.as_deref())
            .unwrap_or_default();
        out.insert(if is_ipv6(ip) { "IPv6" } else { "IPv4" }.to_string());
        return out;
    }
    ["IPv4", "IPv6"].iter().map(|s| s.to_string()).collect()
}

/// Canonical identity of a port set (order-free, `""` name == absent name).
type PortKey = Vec<(String, Option<i32>, String, Option<String>)>;
/// Identity of an endpoint inside a port group (upstream endpoint hash).
type EpKey = (Vec<String>, String, String, String);

fn port_key(ports: &[EndpointPort]) -> PortKey {
    let mut k: PortKey = ports
        .iter()
        .map(|p| {
            (
                p.name.clone().unwrap_or_default(),
                p.port,
                protocol_or_tcp(p.protocol.as_deref()).to_string(),
                p.app_protocol.clone(),
            )
        })
        .collect();
    k.sort();
    k
}

fn ep_key(e: &Endpoint) -> EpKey {
    let mut addrs = e.addresses.clone();
    addrs.sort();
    let r = e.target_ref.as_ref();
    let field = |f: fn(&ObjectReference) -> &Option<String>| {
        r.and_then(|r| f(r).clone()).unwrap_or_default()
    };
    (
        addrs,
        e.hostname.clone().unwrap_or_default(),
        field(|r| &r.namespace),
        field(|r| &r.name),
    )
}

/// Upstream `EndpointsEqualBeyondHash`: node, zone, conditions and
/// targetRef (ignoring its resourceVersion).
pub fn endpoints_equal_beyond_key(a: &Endpoint, b: &Endpoint) -> bool {
    let conds = |e: &Endpoint| e.conditions.clone().unwrap_or_default();
    let tref = |e: &Endpoint| {
        e.target_ref.clone().map(|mut r| {
            r.resource_version = None;
            r
        })
    };
    a.node_name == b.node_name && a.zone == b.zone && conds(a) == conds(b) && tref(a) == tref(b)
}

/// Desired endpoints of one address type, grouped by resolved port set.
struct Group {
    ports: Vec<EndpointPort>,
    endpoints: BTreeMap<EpKey, Endpoint>,
}

fn desired_endpoints(
    svc: &Service,
    pods: &[&Pod],
    nodes: &BTreeMap<&str, &Node>,
    addr_type: &str,
    errors: &mut Vec<String>,
) -> BTreeMap<PortKey, Group> {
    let publish = publish_not_ready(svc);
    let mut out: BTreeMap<PortKey, Group> = BTreeMap::new();
    for pod in pods {
        if !should_pod_be_in_endpoints(pod, true) {
            continue;
        }
        let ports = endpoint_ports(svc, pod);
        let node_name = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .unwrap_or_default();
        let node = nodes.get(node_name).copied();
        if node.is_none() && !publish {
            errors.push(missing_node_error(svc, pod, node_name));
            continue;
        }
        let group = out.entry(port_key(&ports)).or_insert_with(|| Group {
            ports: sorted_ports(ports),
            endpoints: BTreeMap::new(),
        });
        let e = pod_to_endpoint(pod, node, svc, addr_type);
        if !e.addresses.is_empty() {
            group.endpoints.insert(ep_key(&e), e);
        }
    }
    out
}

fn missing_node_error(svc: &Service, pod: &Pod, node: &str) -> String {
    let ns = svc.metadata.namespace.as_deref().unwrap_or_default();
    let name = svc.metadata.name.as_deref().unwrap_or_default();
    let pod_name = pod.metadata.name.as_deref().unwrap_or_default();
    format!("skipping Pod {pod_name} for Service {ns}/{name}: Node {node} Not Found")
}

fn publish_not_ready(svc: &Service) -> bool {
    svc.spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        .unwrap_or(false)
}

fn sorted_ports(mut ports: Vec<EndpointPort>) -> Vec<EndpointPort> {
    ports.sort_by_key(|p| port_key(std::slice::from_ref(p)));
    ports
}

/// Ports of the Service resolved on one pod (upstream `getEndpointPorts`).
pub fn endpoint_ports(svc: &Service, pod: &Pod) -> Vec<EndpointPort> {
    let sports = svc
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_deref())
        .unwrap_or_default();
    if sports.is_empty() && is_headless(svc) {
        return vec![];
    }
    sports
        .iter()
        .filter_map(|sp| {
            let n = find_port(pod, sp)?;
            Some(EndpointPort {
                name: Some(sp.name.clone().unwrap_or_default()),
                port: Some(n),
                protocol: Some(protocol_or_tcp(sp.protocol.as_deref()).to_string()),
                app_protocol: sp.app_protocol.clone(),
            })
        })
        .collect()
}

/// The endpoint for a pod (upstream `podToEndpoint`).
pub fn pod_to_endpoint(pod: &Pod, node: Option<&Node>, svc: &Service, addr_type: &str) -> Endpoint {
    let serving = podutil::is_ready(pod);
    let terminating = pod.metadata.deletion_timestamp.is_some();
    let ready = publish_not_ready(svc) || (serving && !terminating);
    let want_v6 = addr_type == "IPv6";
    let addresses = pod_ips(pod)
        .into_iter()
        .filter(|ip| is_ipv6(ip) == want_v6)
        .map(|ip| ip.parse::<IpAddr>().map_or(ip, |a| a.to_string()))
        .collect();
    let spec = pod.spec.as_ref();
    let zone = node
        .and_then(|n| n.metadata.labels.as_ref())
        .and_then(|l| l.get(ZONE_LABEL))
        .filter(|z| !z.is_empty())
        .cloned();
    Endpoint {
        addresses,
        conditions: Some(EndpointConditions {
            ready: Some(ready),
            serving: Some(serving),
            terminating: Some(terminating),
        }),
        hostname: should_set_hostname(pod, svc)
            .then(|| spec.and_then(|s| s.hostname.clone()))
            .flatten(),
        node_name: spec
            .and_then(|s| s.node_name.clone())
            .filter(|n| !n.is_empty()),
        target_ref: Some(ObjectReference {
            kind: Some("Pod".to_string()),
            namespace: pod.metadata.namespace.clone(),
            name: pod.metadata.name.clone(),
            uid: pod.metadata.uid.clone(),
            ..Default::default()
        }),
        zone,
        ..Default::default()
    }
}

/// Labels a slice of this Service must carry (upstream `setEndpointSliceLabels`).
pub fn slice_labels(svc: &Service) -> BTreeMap<String, String> {
    let reserved = [SERVICE_NAME_LABEL, MANAGED_BY_LABEL, ep::HEADLESS_LABEL];
    let mut labels: BTreeMap<String, String> = svc
        .metadata
        .labels
        .iter()
        .flatten()
        .filter(|(k, _)| !reserved.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if !service_ip_set(svc) {
        labels.insert(ep::HEADLESS_LABEL.to_string(), String::new());
    }
    let name = svc.metadata.name.clone().unwrap_or_default();
    labels.insert(SERVICE_NAME_LABEL.to_string(), name);
    labels.insert(MANAGED_BY_LABEL.to_string(), CONTROLLER_NAME.to_string());
    labels
}

/// A fresh, unnamed slice for the Service (upstream `newEndpointSlice`).
pub fn new_slice(svc: &Service, ports: Vec<EndpointPort>, addr_type: &str) -> EndpointSlice {
    let name = svc.metadata.name.clone().unwrap_or_default();
    let uid = svc.metadata.uid.clone().unwrap_or_default();
    EndpointSlice {
        metadata: ObjectMeta {
            generate_name: Some(format!("{name}-")),
            namespace: svc.metadata.namespace.clone(),
            labels: Some(slice_labels(svc)),
            owner_references: Some(vec![podutil::owner_ref("v1", "Service", &name, &uid)]),
            ..Default::default()
        },
        address_type: addr_type.to_string(),
        endpoints: vec![],
        ports: Some(ports),
    }
}

fn owned_by(s: &EndpointSlice, svc: &Service) -> bool {
    s.metadata.owner_references.iter().flatten().any(|o| {
        Some(&o.uid) == svc.metadata.uid.as_ref() && o.kind == "Service" && o.api_version == "v1"
    })
}

fn delete_action(s: &EndpointSlice) -> SliceAction {
    SliceAction::Delete {
        name: s.metadata.name.clone().unwrap_or_default(),
        uid: s.metadata.uid.clone(),
    }
}

/// Creates, updates and deletes for one address type, after the
/// create→update folding, in the order the shell should apply them.
#[derive(Default)]
struct Changes {
    create: Vec<EndpointSlice>,
    update: Vec<EndpointSlice>,
    delete: Vec<EndpointSlice>,
}

fn reconcile_type(
    svc: &Service,
    existing: Vec<&EndpointSlice>,
    mut desired: BTreeMap<PortKey, Group>,
    addr_type: &str,
    max: usize,
    trigger: Option<DateTime<Utc>>,
) -> Vec<SliceAction> {
    let mut ch = Changes::default();
    let mut by_port: BTreeMap<PortKey, Vec<&EndpointSlice>> = BTreeMap::new();
    for s in &existing {
        if owned_by(s, svc) {
            by_port
                .entry(port_key(s.ports.as_deref().unwrap_or_default()))
                .or_default()
                .push(s);
        } else {
            ch.delete.push((*s).clone());
        }
    }
    for (key, slices) in by_port {
        match desired.remove(&key) {
            Some(group) => reconcile_group(svc, slices, group, addr_type, max, &mut ch),
            None => ch.delete.extend(slices.into_iter().cloned()),
        }
    }
    for (_, group) in desired {
        reconcile_group(svc, vec![], group, addr_type, max, &mut ch);
    }
    keep_placeholder(svc, existing.len(), addr_type, &mut ch);
    finalize(svc, ch, trigger, &existing)
}

/// Upstream `reconcileByPortMapping`.
fn reconcile_group(
    svc: &Service,
    existing: Vec<&EndpointSlice>,
    group: Group,
    addr_type: &str,
    max: usize,
    ch: &mut Changes,
) {
    let Group {
        ports,
        endpoints: mut want,
    } = group;
    let labels = slice_labels(svc);
    let mut slices: BTreeMap<String, EndpointSlice> = BTreeMap::new();
    let mut unchanged = BTreeSet::new();
    let mut to_update = BTreeSet::new();
    // 1. Keep desired endpoints in place, drop the rest, refresh changed ones.
    for s in existing {
        let name = s.metadata.name.clone().unwrap_or_default();
        let (kept, changed) = keep_desired(s, &mut want);
        let labels_changed = s.metadata.labels.as_ref() != Some(&labels);
        let mut copy = s.clone();
        if changed || kept.len() != s.endpoints.len() {
            if kept.is_empty() {
                ch.delete.push(copy);
                continue;
            }
            copy.endpoints = kept;
            copy.metadata.labels = Some(labels.clone());
            to_update.insert(name.clone());
        } else if labels_changed {
            copy.metadata.labels = Some(labels.clone());
            to_update.insert(name.clone());
        } else {
            unchanged.insert(name.clone());
        }
        slices.insert(name, copy);
    }
    // 2. Top up the slices that are being written anyway, fullest first.
    let mut order: Vec<&String> = to_update.iter().collect();
    order.sort_by_key(|n| std::cmp::Reverse(slices[*n].endpoints.len()));
    for n in order {
        if let Some(s) = slices.get_mut(n) {
            fill(s, &mut want, max);
        }
    }
    // 3. Place the rest in the unchanged slice that fits best, else new slices.
    while !want.is_empty() {
        let target = if want.len() < max {
            best_fit(&slices, &unchanged, want.len(), max)
        } else {
            None
        };
        match target {
            Some(n) => {
                if let Some(s) = slices.get_mut(&n) {
                    fill(s, &mut want, max);
                }
                unchanged.remove(&n);
                to_update.insert(n);
            }
            None => {
                let mut s = new_slice(svc, ports.clone(), addr_type);
                fill(&mut s, &mut want, max);
                ch.create.push(s);
            }
        }
    }
    for n in to_update {
        ch.update.extend(slices.remove(&n));
    }
}

/// Endpoints of `s` still desired (desired version), and whether any changed.
fn keep_desired(s: &EndpointSlice, want: &mut BTreeMap<EpKey, Endpoint>) -> (Vec<Endpoint>, bool) {
    let mut kept = Vec::new();
    let mut changed = false;
    for e in &s.endpoints {
        if let Some(d) = want.remove(&ep_key(e)) {
            changed |= !endpoints_equal_beyond_key(&d, e);
            kept.push(d);
        }
    }
    (kept, changed)
}

fn fill(s: &mut EndpointSlice, want: &mut BTreeMap<EpKey, Endpoint>, max: usize) {
    while s.endpoints.len() < max {
        let Some((_, e)) = want.pop_first() else {
            break;
        };
        s.endpoints.push(e);
    }
}

/// Upstream `getSliceToFill`: the unchanged slice closest to full after adding `n`.
fn best_fit(
    slices: &BTreeMap<String, EndpointSlice>,
    unchanged: &BTreeSet<String>,
    n: usize,
    max: usize,
) -> Option<String> {
    let mut best: Option<(usize, &String)> = None;
    for name in unchanged {
        let used = slices.get(name).map_or(0, |s| s.endpoints.len());
        let Some(diff) = max.checked_sub(n + used) else {
            continue;
        };
        if best.is_none_or(|(d, _)| diff < d) {
            best = Some((diff, name));
        }
    }
    best.map(|(_, n)| n.clone())
}

/// When nothing else would exist for this address type, keep (or create)
/// the empty placeholder slice.
fn keep_placeholder(svc: &Service, n_existing: usize, addr_type: &str, ch: &mut Changes) {
    if n_existing != ch.delete.len() || !ch.create.is_empty() {
        return;
    }
    let placeholder = new_slice(svc, vec![], addr_type);
    if let [only] = ch.delete.as_slice()
        && placeholder_equal(only, &placeholder)
    {
        ch.delete.clear();
        return;
    }
    ch.create.push(placeholder);
}

fn placeholder_equal(a: &EndpointSlice, p: &EndpointSlice) -> bool {
    a.metadata.namespace == p.metadata.namespace
        && a.metadata.labels.clone().unwrap_or_default()
            == p.metadata.labels.clone().unwrap_or_default()
        && a.metadata.owner_references.clone().unwrap_or_default()
            == p.metadata.owner_references.clone().unwrap_or_default()
        && a.address_type == p.address_type
        && a.endpoints.is_empty()
        && a.ports.as_ref().is_none_or(Vec::is_empty)
}

/// Upstream `finalize`: turns creates into updates of slices about to be
/// deleted, drops creates while the Service is being deleted, stamps the
/// trigger time, and drops updates that change nothing.
fn finalize(
    svc: &Service,
    mut ch: Changes,
    trigger: Option<DateTime<Utc>>,
    existing: &[&EndpointSlice],
) -> Vec<SliceAction> {
    let mut i = 0;
    while i < ch.delete.len() && !ch.create.is_empty() {
        let victim = &ch.delete[i];
        let last = ch.create.len() - 1;
        if victim.address_type == ch.create[last].address_type && owned_by(victim, svc) {
            let mut s = ch.create.remove(last);
            let old = ch.delete.remove(i);
            s.metadata.name = old.metadata.name;
            s.metadata.resource_version = old.metadata.resource_version;
            s.metadata.annotations = old.metadata.annotations;
            ch.update.push(s);
        } else {
            i += 1;
        }
    }
    if svc.metadata.deletion_timestamp.is_some() {
        ch.create.clear();
    }
    let mut out = Vec::new();
    for mut s in ch.create {
        stamp_trigger_time(&mut s, trigger);
        out.push(SliceAction::Create(s));
    }
    for mut s in ch.update {
        let same = existing
            .iter()
            .any(|e| e.metadata.name == s.metadata.name && slices_equivalent(e, &s));
        if !same {
            stamp_trigger_time(&mut s, trigger);
            out.push(SliceAction::Update(s));
        }
    }
    out.extend(ch.delete.iter().map(delete_action));
    out
}

fn stamp_trigger_time(s: &mut EndpointSlice, t: Option<DateTime<Utc>>) {
    let mut ann = s.metadata.annotations.take().unwrap_or_default();
    match t {
        Some(t) => ann.insert(
            ep::TRIGGER_TIME_ANNOTATION.to_string(),
            ep::format_trigger_time(t),
        ),
        None => ann.remove(ep::TRIGGER_TIME_ANNOTATION),
    };
    s.metadata.annotations = (!ann.is_empty()).then_some(ann);
}

/// Whether two slices carry the same content: address type, port set,
/// labels, owner references and the same endpoints (order-free, targetRef
/// resourceVersion ignored). Annotations are not compared.
pub fn slices_equivalent(a: &EndpointSlice, b: &EndpointSlice) -> bool {
    let ports = |s: &EndpointSlice| port_key(s.ports.as_deref().unwrap_or_default());
    let eps = |s: &EndpointSlice| -> BTreeMap<EpKey, Endpoint> {
        s.endpoints.iter().map(|e| (ep_key(e), e.clone())).collect()
    };
    let (ea, eb) = (eps(a), eps(b));
    a.address_type == b.address_type
        && ports(a) == ports(b)
        && a.metadata.labels == b.metadata.labels
        && a.metadata.owner_references == b.metadata.owner_references
        && a.endpoints.len() == b.endpoints.len()
        && ea.len() == eb.len()
        && ea.iter().all(|(k, e)| {
            eb.get(k)
                .is_some_and(|f| endpoints_equal_beyond_key(e, f) && e.hints == f.hints)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::endpoints::plan::tests::{api_time, pod, sport, svc, with_http_port};
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

    fn node(name: &str, zone: &str) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some([(ZONE_LABEL.to_string(), zone.to_string())].into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn http_svc() -> Service {
        svc(
            "web",
            vec![sport("http", 80, IntOrString::String("http".into()))],
        )
    }

    fn pods(n: usize) -> Vec<Pod> {
        (0..n)
            .map(|i| {
                pod(
                    &format!("p{i:03}"),
                    &format!("10.0.{}.{}", i / 200, i % 200),
                    true,
                )
            })
            .collect()
    }

    fn run(s: &Service, pods: &[Pod], existing: &[EndpointSlice]) -> SlicePlan {
        let nodes = [node("node-1", "zone-a")];
        plan(&SliceInput {
            service: s,
            pods,
            nodes: &nodes,
            existing,
            trigger_time: None,
            max_endpoints_per_slice: DEFAULT_MAX_ENDPOINTS_PER_SLICE,
        })
    }

    /// Applies a plan like the API server would and returns the resulting slices.
    fn apply(existing: &[EndpointSlice], p: &SlicePlan) -> Vec<EndpointSlice> {
        let mut all: BTreeMap<String, EndpointSlice> = existing
            .iter()
            .map(|s| (s.metadata.name.clone().unwrap(), s.clone()))
            .collect();
        for (i, a) in p.actions.iter().enumerate() {
            match a {
                SliceAction::Create(s) => {
                    let mut s = s.clone();
                    let name = format!(
                        "{}{i}x{}",
                        s.metadata.generate_name.clone().unwrap(),
                        all.len()
                    );
                    s.metadata.name = Some(name.clone());
                    s.metadata.uid = Some(format!("uid-{name}"));
                    all.insert(name, s);
                }
                SliceAction::Update(s) => {
                    all.insert(s.metadata.name.clone().unwrap(), s.clone());
                }
                SliceAction::Delete { name, .. } => {
                    all.remove(name);
                }
            }
        }
        all.into_values().collect()
    }

    fn counts(p: &SlicePlan) -> (usize, usize, usize) {
        let c = |f: fn(&SliceAction) -> bool| p.actions.iter().filter(|a| f(a)).count();
        (
            c(|a| matches!(a, SliceAction::Create(_))),
            c(|a| matches!(a, SliceAction::Update(_))),
            c(|a| matches!(a, SliceAction::Delete { .. })),
        )
    }

    fn creates(p: &SlicePlan) -> Vec<&EndpointSlice> {
        p.actions
            .iter()
            .filter_map(|a| match a {
                SliceAction::Create(s) => Some(s),
                _ => None,
            })
            .collect()
    }

    fn conds(e: &Endpoint) -> (bool, bool, bool) {
        let c = e.conditions.clone().unwrap();
        (c.ready.unwrap(), c.serving.unwrap(), c.terminating.unwrap())
    }

    #[test]
    fn unmanaged_service_yields_nothing() {
        let mut s = http_svc();
        s.spec.as_mut().unwrap().selector = None;
        assert_eq!(run(&s, &pods(3), &[]), SlicePlan::default());
        let mut ext = http_svc();
        ext.spec.as_mut().unwrap().type_ = Some("ExternalName".into());
        assert_eq!(run(&ext, &pods(3), &[]), SlicePlan::default());
    }

    #[test]
    fn slices_split_at_max_and_converge() {
        let s = http_svc();
        let ps = pods(250);
        let p = run(&s, &ps, &[]);
        let sizes: Vec<usize> = creates(&p).iter().map(|s| s.endpoints.len()).collect();
        assert_eq!(sizes, [100, 100, 50]);
        let first = creates(&p)[0];
        assert_eq!(first.metadata.generate_name.as_deref(), Some("web-"));
        assert_eq!(first.address_type, "IPv4");
        let labels = first.metadata.labels.clone().unwrap();
        assert_eq!(
            labels.get(SERVICE_NAME_LABEL).map(String::as_str),
            Some("web")
        );
        assert_eq!(
            labels.get(MANAGED_BY_LABEL).map(String::as_str),
            Some(CONTROLLER_NAME)
        );
        assert_eq!(labels.get("team").map(String::as_str), Some("a"));
        let owner = &first.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str()),
            ("Service", "svc-uid-web")
        );
        assert_eq!(
            (owner.controller, owner.block_owner_deletion),
            (Some(true), Some(true))
        );
        let e = &first.endpoints[0];
        assert_eq!(e.zone.as_deref(), Some("zone-a"));
        assert_eq!(e.node_name.as_deref(), Some("node-1"));
        // Second sync over the result: nothing to do.
        let now = apply(&[], &p);
        assert_eq!(run(&s, &ps, &now).actions, vec![]);
        // One pod replaced: a single update, no creates or deletes.
        let mut ps2 = ps.clone();
        ps2[0] = pod("new", "10.9.9.9", true);
        assert_eq!(counts(&run(&s, &ps2, &now)), (0, 1, 0));
    }

    #[test]
    fn named_ports_with_different_numbers_make_two_slices() {
        let s = http_svc();
        let ps = [
            with_http_port(pod("a", "10.0.0.1", true), 8080),
            with_http_port(pod("b", "10.0.0.2", true), 9090),
        ];
        let p = run(&s, &ps, &[]);
        let mut got: Vec<(Option<i32>, usize)> = creates(&p)
            .iter()
            .map(|s| (s.ports.as_ref().unwrap()[0].port, s.endpoints.len()))
            .collect();
        got.sort();
        assert_eq!(got, [(Some(8080), 1), (Some(9090), 1)]);
    }

    #[test]
    fn readiness_flip_updates_in_place() {
        let s = http_svc();
        let ps = pods(3);
        let now = apply(&[], &run(&s, &ps, &[]));
        let mut flipped = ps.clone();
        flipped[1] = pod("p001", "10.0.0.1", false);
        let p = run(&s, &flipped, &now);
        assert_eq!(counts(&p), (0, 1, 0));
        let SliceAction::Update(u) = &p.actions[0] else {
            panic!()
        };
        assert_eq!(u.metadata.name, now[0].metadata.name);
        let e = u
            .endpoints
            .iter()
            .find(|e| e.addresses == ["10.0.0.1"])
            .unwrap();
        assert_eq!(conds(e), (false, false, false));
    }

    #[test]
    fn terminating_and_publish_not_ready() {
        let mut t = pod("t", "10.0.0.7", true);
        t.metadata.deletion_timestamp = Some(api_time(Utc::now()));
        let ps = [t, pod("u", "10.0.0.8", false)];
        let p = run(&http_svc(), &ps, &[]);
        let eps = &creates(&p)[0].endpoints;
        assert_eq!(conds(&eps[0]), (false, true, true));
        assert_eq!(conds(&eps[1]), (false, false, false));
        let mut s = http_svc();
        s.spec.as_mut().unwrap().publish_not_ready_addresses = Some(true);
        let p = run(&s, &ps, &[]);
        let eps = &creates(&p)[0].endpoints;
        assert_eq!(conds(&eps[0]), (true, true, true));
        assert_eq!(conds(&eps[1]), (true, false, false));
    }

    #[test]
    fn headless_without_ports() {
        let mut s = svc("db", vec![]);
        s.spec.as_mut().unwrap().cluster_ip = Some("None".into());
        let mut p0 = pod("db-0", "10.0.0.1", true);
        p0.spec.as_mut().unwrap().hostname = Some("db-0".into());
        p0.spec.as_mut().unwrap().subdomain = Some("db".into());
        let p = run(&s, &[p0], &[]);
        let c = creates(&p);
        assert_eq!(c.len(), 1);
        assert!(
            c[0].metadata
                .labels
                .as_ref()
                .unwrap()
                .contains_key(ep::HEADLESS_LABEL)
        );
        assert_eq!(c[0].ports.as_deref(), Some(&[][..]));
        assert_eq!(c[0].endpoints[0].hostname.as_deref(), Some("db-0"));
    }

    #[test]
    fn placeholder_kept_then_reused() {
        let s = http_svc();
        let p = run(&s, &[], &[]);
        assert_eq!(counts(&p), (1, 0, 0));
        assert!(creates(&p)[0].endpoints.is_empty());
        let now = apply(&[], &p);
        assert_eq!(run(&s, &[], &now).actions, vec![]);
        // Pods appear: the placeholder is rewritten instead of delete + create.
        let p = run(&s, &pods(2), &now);
        assert_eq!(counts(&p), (0, 1, 0));
        let SliceAction::Update(u) = &p.actions[0] else {
            panic!()
        };
        assert_eq!(u.metadata.name, now[0].metadata.name);
        assert_eq!(u.endpoints.len(), 2);
        // Pods gone again: back to the placeholder via an update.
        let now = apply(&now, &p);
        let p = run(&s, &[], &now);
        assert_eq!(counts(&p), (0, 1, 0));
    }

    #[test]
    fn missing_node_skips_pod_and_reports() {
        let s = http_svc();
        let mut lost = pod("lost", "10.0.0.9", true);
        lost.spec.as_mut().unwrap().node_name = Some("gone".into());
        let p = run(&s, &[lost.clone(), pod("a", "10.0.0.1", true)], &[]);
        assert_eq!(creates(&p)[0].endpoints.len(), 1);
        assert_eq!(
            p.errors,
            ["skipping Pod lost for Service ns/web: Node gone Not Found"]
        );
        let ev = failed_sync_event(&s, &p.errors);
        assert_eq!(ev.reason, "FailedToUpdateEndpointSlices");
        assert!(
            ev.message.starts_with(
                "Error updating Endpoint Slices for Service ns/web: skipping Pod lost"
            )
        );
        let mut publish = s.clone();
        publish.spec.as_mut().unwrap().publish_not_ready_addresses = Some(true);
        let p = run(&publish, &[lost], &[]);
        assert!(p.errors.is_empty());
        assert_eq!(creates(&p)[0].endpoints[0].zone, None);
    }

    #[test]
    fn dual_stack_and_stale_address_types() {
        let mut s = http_svc();
        s.spec.as_mut().unwrap().ip_families = Some(vec!["IPv4".into(), "IPv6".into()]);
        let mut p0 = pod("a", "10.0.0.1", true);
        p0.status.as_mut().unwrap().pod_ips = Some(vec![
            k8s_openapi::api::core::v1::PodIP {
                ip: "10.0.0.1".into(),
            },
            k8s_openapi::api::core::v1::PodIP {
                ip: "fd00::1".into(),
            },
        ]);
        let p = run(&s, std::slice::from_ref(&p0), &[]);
        let types: Vec<(&str, Vec<String>)> = creates(&p)
            .iter()
            .map(|s| (s.address_type.as_str(), s.endpoints[0].addresses.clone()))
            .collect();
        assert_eq!(
            types,
            [
                ("IPv4", vec!["10.0.0.1".to_string()]),
                ("IPv6", vec!["fd00::1".to_string()])
            ]
        );
        // The service goes single-stack: the IPv6 slice is deleted.
        let now = apply(&[], &p);
        s.spec.as_mut().unwrap().ip_families = Some(vec!["IPv4".into()]);
        assert_eq!(counts(&run(&s, &[p0], &now)), (0, 0, 1));
    }

    #[test]
    fn foreign_and_unowned_slices() {
        let s = http_svc();
        let now = apply(&[], &run(&s, &pods(2), &[]));
        // A slice managed by someone else is ignored.
        let mut foreign = now[0].clone();
        foreign.metadata.name = Some("other".into());
        foreign
            .metadata
            .labels
            .as_mut()
            .unwrap()
            .insert(MANAGED_BY_LABEL.into(), "someone".into());
        let mut all = now.clone();
        all.push(foreign);
        assert_eq!(run(&s, &pods(2), &all).actions, vec![]);
        // Recreated service (new uid): old slices are deleted, never rewritten.
        let mut s2 = s.clone();
        s2.metadata.uid = Some("new-uid".into());
        assert_eq!(counts(&run(&s2, &pods(2), &now)), (1, 0, 1));
        // Service being deleted: no creates.
        let mut dying = s.clone();
        dying.metadata.deletion_timestamp = Some(api_time(Utc::now()));
        assert_eq!(run(&dying, &pods(2), &[]).actions, vec![]);
    }

    #[test]
    fn shrink_deletes_emptied_slices() {
        let s = http_svc();
        let ps = pods(250);
        let now = apply(&[], &run(&s, &ps, &[]));
        let p = run(&s, &ps[..100], &now);
        let (c, _, d) = counts(&p);
        assert_eq!(c, 0);
        let after = apply(&now, &p);
        let total: usize = after.iter().map(|s| s.endpoints.len()).sum();
        assert_eq!(total, 100);
        assert!(d >= 1);
        assert_eq!(run(&s, &ps[..100], &after).actions, vec![]);
    }

    #[test]
    fn label_change_updates_without_endpoint_churn() {
        let s = http_svc();
        let now = apply(&[], &run(&s, &pods(2), &[]));
        let mut relabeled = s.clone();
        relabeled.metadata.labels = Some([("team".to_string(), "b".to_string())].into());
        let p = run(&relabeled, &pods(2), &now);
        assert_eq!(counts(&p), (0, 1, 0));
        let SliceAction::Update(u) = &p.actions[0] else {
            panic!()
        };
        assert_eq!(
            u.metadata
                .labels
                .as_ref()
                .unwrap()
                .get("team")
                .map(String::as_str),
            Some("b")
        );
        assert!(slices_equivalent(&now[0], &now[0]));
        assert!(!slices_equivalent(&now[0], u));
    }
}
