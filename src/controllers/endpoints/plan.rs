//! Pure planning for the legacy **Endpoints** controller (upstream
//! `pkg/controller/endpoint`): given a Service, the pods of its namespace and
//! the Endpoints object that exists today, compute the Endpoints object that
//! should exist and whether it must be created, replaced, deleted or left
//! alone.
//!
//! Also owns the helpers shared with the EndpointSlice planner: which pods
//! belong in endpoints, target-port resolution, hostname rule, IP family
//! detection and the last-change trigger-time tracker.
//!
//! Invariants:
//! - Services without a selector (or with an empty one) and `ExternalName`
//!   services are user-managed: the plan is always [`EndpointsAction::Nothing`].
//! - Subsets are in a canonical packed form (addresses grouped by identical
//!   port sets, addresses sorted by IP then pod UID, ports sorted), so the
//!   same inputs always give the same object and [`needs_update`] never
//!   reports ordering noise.
//! - At most [`MAX_CAPACITY`] addresses are written; beyond that the object
//!   is truncated (ready addresses first) and annotated
//!   `endpoints.kubernetes.io/over-capacity: truncated`.
//!
//! Must not: do I/O, read clocks, or touch Endpoints of selector-less
//! services. Events and API calls belong to the shell.

use crate::controllers::podutil;
use chrono::{DateTime, SecondsFormat, Utc};
use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, ObjectReference, Pod, Service,
    ServicePort,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::borrow::Borrow;
use std::collections::BTreeMap;

/// Label set on Endpoints/EndpointSlices of headless services.
pub const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";
/// Annotation carrying the time of the change that triggered the write.
pub const TRIGGER_TIME_ANNOTATION: &str = "endpoints.kubernetes.io/last-change-trigger-time";
/// Annotation set when the address list was truncated.
pub const OVER_CAPACITY_ANNOTATION: &str = "endpoints.kubernetes.io/over-capacity";
/// Annotation of leader-election records stored in Endpoints (never deleted).
pub const LEADER_ANNOTATION: &str = "control-plane.alpha.kubernetes.io/leader";
/// Maximum number of addresses (ready + not ready) in one Endpoints object.
pub const MAX_CAPACITY: usize = 1000;

/// What the shell must do with the Endpoints object named like the Service.
#[derive(Clone, Debug, PartialEq)]
pub enum EndpointsAction {
    /// Leave whatever exists alone.
    Nothing,
    /// POST this object (no resourceVersion).
    Create(Endpoints),
    /// PUT this object (carries the existing resourceVersion).
    Update(Endpoints),
    /// DELETE the Endpoints (the Service is gone). Ignore NotFound.
    Delete { namespace: String, name: String },
}

/// A Warning event the shell should record on the Endpoints when its write fails.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub type_: String,
    pub reason: String,
    pub message: String,
}

/// Plans one sync of the Endpoints controller for the Service `namespace/name`.
///
/// - `service`: the Service, or `None` when it no longer exists.
/// - `pods`: pods of the namespace (unfiltered is fine: the selector is applied here).
/// - `existing`: the Endpoints object named like the Service, if any.
/// - `trigger_time`: from [`TriggerTimeTracker::compute`]; `None` removes the annotation.
pub fn plan<P: Borrow<Pod>>(
    service: Option<&Service>,
    pods: &[P],
    existing: Option<&Endpoints>,
    trigger_time: Option<DateTime<Utc>>,
) -> EndpointsAction {
    let Some(svc) = service else {
        return plan_orphan(existing);
    };
    if !is_managed_service(svc) {
        return EndpointsAction::Nothing;
    }
    let selected = selected_pods(svc, pods);
    let subsets = desired_subsets(svc, &selected);
    let desired = build_endpoints(svc, existing, subsets, trigger_time);
    match existing {
        None => EndpointsAction::Create(desired),
        Some(cur) if needs_update(cur, &desired) => EndpointsAction::Update(desired),
        Some(_) => EndpointsAction::Nothing,
    }
}

fn plan_orphan(existing: Option<&Endpoints>) -> EndpointsAction {
    let Some(ep) = existing else {
        return EndpointsAction::Nothing;
    };
    let leader = ep
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(LEADER_ANNOTATION));
    if leader {
        return EndpointsAction::Nothing;
    }
    EndpointsAction::Delete {
        namespace: ep.metadata.namespace.clone().unwrap_or_default(),
        name: ep.metadata.name.clone().unwrap_or_default(),
    }
}

/// Whether the endpoint controllers manage this Service: it has a non-empty
/// selector and is not of type `ExternalName`.
pub fn is_managed_service(svc: &Service) -> bool {
    let Some(spec) = svc.spec.as_ref() else {
        return false;
    };
    if spec.type_.as_deref() == Some("ExternalName") {
        return false;
    }
    spec.selector.as_ref().is_some_and(|s| !s.is_empty())
}

/// Pods of the Service's namespace matched by its selector.
pub fn selected_pods<'a, P: Borrow<Pod>>(svc: &Service, pods: &'a [P]) -> Vec<&'a Pod> {
    let empty = BTreeMap::new();
    let sel = svc
        .spec
        .as_ref()
        .and_then(|s| s.selector.as_ref())
        .unwrap_or(&empty);
    let ns = svc.metadata.namespace.as_deref().unwrap_or_default();
    pods.iter()
        .map(|p| p.borrow())
        .filter(|p| p.metadata.namespace.as_deref().unwrap_or_default() == ns)
        .filter(|p| {
            podutil::map_selector_matches(sel, p.metadata.labels.as_ref().unwrap_or(&empty))
        })
        .collect()
}

/// Upstream `ShouldPodBeInEndpoints`: not terminal, has an IP, and (unless
/// `include_terminating`) not being deleted.
pub fn should_pod_be_in_endpoints(pod: &Pod, include_terminating: bool) -> bool {
    if podutil::is_terminal(pod) || pod_ips(pod).is_empty() {
        return false;
    }
    include_terminating || pod.metadata.deletion_timestamp.is_none()
}

/// The pod's IPs (`status.podIPs`, falling back to `status.podIP`).
pub fn pod_ips(pod: &Pod) -> Vec<String> {
    let Some(st) = pod.status.as_ref() else {
        return vec![];
    };
    let ips: Vec<String> = st
        .pod_ips
        .iter()
        .flatten()
        .map(|p| p.ip.clone())
        .filter(|ip| !ip.is_empty())
        .collect();
    if !ips.is_empty() {
        return ips;
    }
    st.pod_ip
        .iter()
        .filter(|ip| !ip.is_empty())
        .cloned()
        .collect()
}

/// Whether a textual IP is IPv6.
pub fn is_ipv6(ip: &str) -> bool {
    ip.contains(':')
}

/// The hostname rule: the pod names a hostname and its subdomain is the
/// Service's name in the same namespace.
pub fn should_set_hostname(pod: &Pod, svc: &Service) -> bool {
    let Some(spec) = pod.spec.as_ref() else {
        return false;
    };
    let host = spec.hostname.as_deref().unwrap_or_default();
    !host.is_empty()
        && spec.subdomain.as_deref() == svc.metadata.name.as_deref()
        && pod.metadata.namespace == svc.metadata.namespace
}

/// Whether the Service has a cluster IP (not headless).
pub fn service_ip_set(svc: &Service) -> bool {
    let ip = cluster_ip(svc);
    !ip.is_empty() && ip != "None"
}

fn cluster_ip(svc: &Service) -> &str {
    svc.spec
        .as_ref()
        .and_then(|s| s.cluster_ip.as_deref())
        .unwrap_or_default()
}

/// Whether `clusterIP` is literally `None`.
pub fn is_headless(svc: &Service) -> bool {
    cluster_ip(svc) == "None"
}

/// Protocol with the API default applied.
pub fn protocol_or_tcp(p: Option<&str>) -> &str {
    p.filter(|p| !p.is_empty()).unwrap_or("TCP")
}

/// Upstream `FindPort`: resolves a Service port's targetPort on a pod.
/// Numeric targets are used as-is (absent defaults to `port`); named
/// targets are looked up in the containers' (then sidecar init containers')
/// ports with the same protocol. `None` means the pod does not offer it.
pub fn find_port(pod: &Pod, sp: &ServicePort) -> Option<i32> {
    match sp.target_port.as_ref() {
        None => Some(sp.port),
        Some(IntOrString::Int(n)) => Some(*n),
        Some(IntOrString::String(name)) => find_named_port(pod, name, sp.protocol.as_deref()),
    }
}

fn find_named_port(pod: &Pod, name: &str, protocol: Option<&str>) -> Option<i32> {
    let spec = pod.spec.as_ref()?;
    let want = protocol_or_tcp(protocol);
    let sidecars = spec
        .init_containers
        .iter()
        .flatten()
        .filter(|c| c.restart_policy.as_deref() == Some("Always"));
    spec.containers
        .iter()
        .chain(sidecars)
        .flat_map(|c| c.ports.iter().flatten())
        .find(|p| p.name.as_deref() == Some(name) && protocol_or_tcp(p.protocol.as_deref()) == want)
        .map(|p| p.container_port)
}

/// The IP family of the Service used by the Endpoints controller.
fn wants_ipv6(svc: &Service, pod: &Pod) -> bool {
    let spec = svc.spec.as_ref();
    if let Some(first) = spec
        .and_then(|s| s.ip_families.as_ref())
        .and_then(|f| f.first())
    {
        return first == "IPv6";
    }
    if service_ip_set(svc) {
        return is_ipv6(cluster_ip(svc));
    }
    let primary = pod.status.as_ref().and_then(|s| s.pod_ip.as_deref());
    primary.is_some_and(is_ipv6)
}

fn pod_target_ref(pod: &Pod) -> ObjectReference {
    ObjectReference {
        kind: Some("Pod".to_string()),
        namespace: pod.metadata.namespace.clone(),
        name: pod.metadata.name.clone(),
        uid: pod.metadata.uid.clone(),
        ..Default::default()
    }
}

fn pod_address(svc: &Service, pod: &Pod) -> Option<EndpointAddress> {
    let v6 = wants_ipv6(svc, pod);
    let ip = pod_ips(pod).into_iter().find(|ip| is_ipv6(ip) == v6)?;
    let node = pod.spec.as_ref().and_then(|s| s.node_name.clone());
    let hostname = should_set_hostname(pod, svc)
        .then(|| pod.spec.as_ref().and_then(|s| s.hostname.clone()))
        .flatten();
    Some(EndpointAddress {
        ip,
        hostname,
        node_name: node.filter(|n| !n.is_empty()),
        target_ref: Some(pod_target_ref(pod)),
    })
}

fn endpoint_port(sp: &ServicePort, port: i32) -> EndpointPort {
    EndpointPort {
        name: sp.name.clone().filter(|n| !n.is_empty()),
        port,
        protocol: Some(protocol_or_tcp(sp.protocol.as_deref()).to_string()),
        app_protocol: sp.app_protocol.clone(),
    }
}

/// One (address, port, ready) fact before packing. `port` is `None` only
/// for headless services without ports.
struct Fact {
    addr: EndpointAddress,
    port: Option<EndpointPort>,
    ready: bool,
}

fn pod_facts(svc: &Service, pod: &Pod, out: &mut Vec<Fact>) {
    let spec = svc.spec.as_ref();
    let publish = spec
        .and_then(|s| s.publish_not_ready_addresses)
        .unwrap_or(false);
    if !should_pod_be_in_endpoints(pod, publish) {
        return;
    }
    let Some(addr) = pod_address(svc, pod) else {
        return;
    };
    let ready = publish || podutil::is_ready(pod);
    let ports = spec.and_then(|s| s.ports.as_deref()).unwrap_or_default();
    if ports.is_empty() {
        if is_headless(svc) {
            out.push(Fact {
                addr,
                port: None,
                ready,
            });
        }
        return;
    }
    for sp in ports {
        if let Some(n) = find_port(pod, sp) {
            let port = Some(endpoint_port(sp, n));
            out.push(Fact {
                addr: addr.clone(),
                port,
                ready,
            });
        }
    }
}

/// The canonical subsets the Service should have today (before truncation).
pub fn desired_subsets(svc: &Service, selected: &[&Pod]) -> Vec<EndpointSubset> {
    let mut facts = Vec::new();
    for pod in selected {
        pod_facts(svc, pod, &mut facts);
    }
    pack(facts)
}

type PortKey = (Option<String>, i32, String, Option<String>);
type AddrKey = (String, String);

fn port_key(p: &EndpointPort) -> PortKey {
    (
        p.name.clone().filter(|n| !n.is_empty()),
        p.port,
        protocol_or_tcp(p.protocol.as_deref()).to_string(),
        p.app_protocol.clone(),
    )
}

fn addr_key(a: &EndpointAddress) -> AddrKey {
    let uid = a.target_ref.as_ref().and_then(|r| r.uid.clone());
    (a.ip.clone(), uid.unwrap_or_default())
}

/// A port (absent for port-less headless services) and the readiness of
/// each address offering it.
type PortAddrs = (Option<EndpointPort>, BTreeMap<AddrKey, bool>);

/// Packs facts into the canonical layout: each distinct port maps to a set of
/// (address, ready) pairs (not-ready wins over ready); ports sharing the same
/// set form one subset.
fn pack(facts: Vec<Fact>) -> Vec<EndpointSubset> {
    let mut addrs: BTreeMap<AddrKey, EndpointAddress> = BTreeMap::new();
    let mut by_port: BTreeMap<Option<PortKey>, PortAddrs> = BTreeMap::new();
    for f in facts {
        let ak = addr_key(&f.addr);
        addrs.entry(ak.clone()).or_insert(f.addr);
        let pk = f.port.as_ref().map(port_key);
        let entry = by_port
            .entry(pk)
            .or_insert_with(|| (f.port, BTreeMap::new()));
        let ready = entry.1.entry(ak).or_insert(true);
        *ready = *ready && f.ready;
    }
    let mut groups: BTreeMap<Vec<(AddrKey, bool)>, Vec<EndpointPort>> = BTreeMap::new();
    for (port, set) in by_port.into_values() {
        let ports = groups.entry(set.into_iter().collect()).or_default();
        ports.extend(port);
    }
    let mut out: Vec<EndpointSubset> = groups
        .into_iter()
        .map(|(set, ports)| make_subset(&set, &addrs, ports))
        .collect();
    out.sort_by_key(subset_sort_key);
    out
}

fn make_subset(
    set: &[(AddrKey, bool)],
    addrs: &BTreeMap<AddrKey, EndpointAddress>,
    ports: Vec<EndpointPort>,
) -> EndpointSubset {
    let pick = |want: bool| -> Vec<EndpointAddress> {
        set.iter()
            .filter(|(_, r)| *r == want)
            .filter_map(|(k, _)| addrs.get(k).cloned())
            .collect()
    };
    EndpointSubset {
        addresses: non_empty(pick(true)),
        not_ready_addresses: non_empty(pick(false)),
        ports: non_empty(ports),
    }
}

fn non_empty<T>(v: Vec<T>) -> Option<Vec<T>> {
    (!v.is_empty()).then_some(v)
}

fn subset_sort_key(s: &EndpointSubset) -> (Vec<PortKey>, Vec<AddrKey>) {
    let ports = s.ports.iter().flatten().map(port_key).collect();
    let addrs = s.addresses.iter().flatten().map(addr_key).collect();
    (ports, addrs)
}

/// Re-packs arbitrary subsets into the canonical layout (ignores targetRef
/// resourceVersion). Used to compare objects written by anyone.
pub fn canonical_subsets(subsets: &[EndpointSubset]) -> Vec<EndpointSubset> {
    let mut facts = Vec::new();
    for s in subsets {
        let ports: Vec<Option<EndpointPort>> = match s.ports.as_deref() {
            None | Some([]) => vec![None],
            Some(ps) => ps.iter().cloned().map(Some).collect(),
        };
        let lists = [
            (s.addresses.iter().flatten(), true),
            (s.not_ready_addresses.iter().flatten(), false),
        ];
        for (list, ready) in lists {
            for a in list {
                let mut addr = a.clone();
                if let Some(r) = addr.target_ref.as_mut() {
                    r.resource_version = None;
                }
                for port in &ports {
                    facts.push(Fact {
                        addr: addr.clone(),
                        port: port.clone(),
                        ready,
                    });
                }
            }
        }
    }
    pack(facts)
}

/// Upstream `truncateEndpoints`: keeps at most [`MAX_CAPACITY`] addresses,
/// spreading the budget over subsets proportionally; ready addresses are
/// kept before not-ready ones. Returns whether anything was cut.
pub fn truncate(subsets: &mut [EndpointSubset]) -> bool {
    let count = |f: fn(&EndpointSubset) -> usize| subsets.iter().map(f).sum::<usize>();
    let total_ready = count(|s| s.addresses.as_ref().map_or(0, Vec::len));
    let total_not_ready = count(|s| s.not_ready_addresses.as_ref().map_or(0, Vec::len));
    if total_ready + total_not_ready <= MAX_CAPACITY {
        return false;
    }
    let truncate_ready = total_ready > MAX_CAPACITY;
    let (budget, total) = if truncate_ready {
        (MAX_CAPACITY, total_ready)
    } else {
        (MAX_CAPACITY - total_ready, total_not_ready)
    };
    let mut left = budget;
    for s in subsets.iter_mut() {
        let list = if truncate_ready {
            &mut s.addresses
        } else {
            &mut s.not_ready_addresses
        };
        let n = list.as_ref().map_or(0, Vec::len);
        let share = (n * budget).div_ceil(total.max(1)).min(left);
        if let Some(v) = list.as_mut() {
            v.truncate(share);
        }
        left -= list.as_ref().map_or(0, Vec::len);
        if truncate_ready {
            s.not_ready_addresses = None;
        }
        normalize_empty(s);
    }
    true
}

fn normalize_empty(s: &mut EndpointSubset) {
    if s.addresses.as_ref().is_some_and(Vec::is_empty) {
        s.addresses = None;
    }
    if s.not_ready_addresses.as_ref().is_some_and(Vec::is_empty) {
        s.not_ready_addresses = None;
    }
}

/// Labels the Endpoints must carry: the Service's labels, plus the headless
/// label exactly when the Service has no cluster IP.
pub fn desired_labels(svc: &Service) -> BTreeMap<String, String> {
    let mut labels = svc.metadata.labels.clone().unwrap_or_default();
    if service_ip_set(svc) {
        labels.remove(HEADLESS_LABEL);
    } else {
        labels.insert(HEADLESS_LABEL.to_string(), String::new());
    }
    labels
}

/// RFC 3339 with nanoseconds, as upstream writes the trigger-time annotation.
pub fn format_trigger_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

fn build_endpoints(
    svc: &Service,
    existing: Option<&Endpoints>,
    mut subsets: Vec<EndpointSubset>,
    trigger_time: Option<DateTime<Utc>>,
) -> Endpoints {
    let mut ep = existing.cloned().unwrap_or_else(|| Endpoints {
        metadata: ObjectMeta {
            name: svc.metadata.name.clone(),
            namespace: svc.metadata.namespace.clone(),
            ..Default::default()
        },
        ..Default::default()
    });
    let mut ann = ep.metadata.annotations.take().unwrap_or_default();
    match trigger_time {
        Some(t) => ann.insert(TRIGGER_TIME_ANNOTATION.to_string(), format_trigger_time(t)),
        None => ann.remove(TRIGGER_TIME_ANNOTATION),
    };
    if truncate(&mut subsets) {
        ann.insert(
            OVER_CAPACITY_ANNOTATION.to_string(),
            "truncated".to_string(),
        );
    } else {
        ann.remove(OVER_CAPACITY_ANNOTATION);
    }
    ep.metadata.annotations = non_empty_map(ann);
    ep.metadata.labels = non_empty_map(desired_labels(svc));
    ep.subsets = non_empty(subsets);
    ep
}

fn non_empty_map(m: BTreeMap<String, String>) -> Option<BTreeMap<String, String>> {
    (!m.is_empty()).then_some(m)
}

/// Whether writing `desired` over `existing` changes anything that matters:
/// subsets (compared in canonical order, ignoring targetRef
/// resourceVersion), labels, or the over-capacity annotation. The
/// trigger-time annotation alone never causes a write.
pub fn needs_update(existing: &Endpoints, desired: &Endpoints) -> bool {
    let subsets = |e: &Endpoints| canonical_subsets(e.subsets.as_deref().unwrap_or_default());
    let labels = |e: &Endpoints| e.metadata.labels.clone().unwrap_or_default();
    let over = |e: &Endpoints| {
        e.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(OVER_CAPACITY_ANNOTATION).cloned())
    };
    subsets(existing) != subsets(desired)
        || labels(existing) != labels(desired)
        || over(existing) != over(desired)
}

/// Warning event for a failed create (`creating`) or update of the Endpoints.
pub fn failed_write_event(svc: &Service, creating: bool, err: &str) -> Event {
    let ns = svc.metadata.namespace.as_deref().unwrap_or_default();
    let name = svc.metadata.name.as_deref().unwrap_or_default();
    let (reason, message) = if creating {
        (
            "FailedToCreateEndpoint",
            format!("Failed to create endpoint for service {ns}/{name}: {err}"),
        )
    } else {
        (
            "FailedToUpdateEndpoint",
            format!("Failed to update endpoint {ns}/{name}: {err}"),
        )
    };
    Event {
        type_: "Warning".to_string(),
        reason: reason.to_string(),
        message,
    }
}

/// Per-service memory of the last seen trigger times (upstream
/// `TriggerTimeTracker`). Keep one per controller, keyed by `namespace/name`.
#[derive(Clone, Debug, Default)]
pub struct TriggerTimeTracker {
    states: BTreeMap<String, TriggerState>,
}

#[derive(Clone, Debug, Default)]
struct TriggerState {
    pods: BTreeMap<String, DateTime<Utc>>,
    service: Option<DateTime<Utc>>,
}

impl TriggerTimeTracker {
    /// The earliest change (pod Ready transition or Service creation) seen
    /// since the previous call for this Service; the creation time on the
    /// first call. Call on every sync, even no-op ones, with the selected pods.
    pub fn compute(&mut self, svc: &Service, pods: &[&Pod]) -> Option<DateTime<Utc>> {
        let key = service_key(svc);
        let prev = self.states.get(&key).cloned();
        let old = prev.clone().unwrap_or_default();
        let mut next = TriggerState::default();
        let mut min: Option<DateTime<Utc>> = None;
        for pod in pods {
            let (Some(name), Some(t)) = (pod.metadata.name.clone(), ready_transition(pod)) else {
                continue;
            };
            if old.pods.get(&name).is_none_or(|o| t > *o) {
                min = Some(min.map_or(t, |m| m.min(t)));
            }
            next.pods.insert(name, t);
        }
        let created = svc.metadata.creation_timestamp.as_ref().and_then(to_chrono);
        if let Some(c) = created.filter(|c| old.service.is_none_or(|o| *c > o)) {
            min = Some(min.map_or(c, |m| m.min(c)));
        }
        next.service = created;
        self.states.insert(key, next);
        if prev.is_none() {
            return created;
        }
        min
    }

    /// Forget a deleted Service.
    pub fn delete_service(&mut self, namespace: &str, name: &str) {
        self.states.remove(&format!("{namespace}/{name}"));
    }
}

fn service_key(svc: &Service) -> String {
    let ns = svc.metadata.namespace.as_deref().unwrap_or_default();
    let name = svc.metadata.name.as_deref().unwrap_or_default();
    format!("{ns}/{name}")
}

fn ready_transition(pod: &Pod) -> Option<DateTime<Utc>> {
    let conds = pod.status.as_ref()?.conditions.as_ref()?;
    let c = conds.iter().find(|c| c.type_ == "Ready")?;
    c.last_transition_time.as_ref().and_then(to_chrono)
}

/// Converts an API timestamp to chrono.
fn to_chrono(t: &Time) -> Option<DateTime<Utc>> {
    let nanos = u32::try_from(t.0.subsec_nanosecond()).ok()?;
    DateTime::from_timestamp(t.0.as_second(), nanos)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    const NO_PODS: &[Pod] = &[];
    use k8s_openapi::api::core::v1::{
        Container, ContainerPort, PodCondition, PodIP, PodSpec, PodStatus, ServiceSpec,
    };

    /// Test helper: chrono -> API time.
    pub(crate) fn api_time(d: DateTime<Utc>) -> Time {
        let ts =
            k8s_openapi::jiff::Timestamp::new(d.timestamp(), d.timestamp_subsec_nanos() as i32);
        Time(ts.expect("valid timestamp"))
    }

    pub(crate) fn svc(name: &str, ports: Vec<ServicePort>) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                uid: Some(format!("svc-uid-{name}")),
                labels: Some([("team".to_string(), "a".to_string())].into()),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                selector: Some([("app".to_string(), "web".to_string())].into()),
                cluster_ip: Some("10.96.0.10".into()),
                ip_families: Some(vec!["IPv4".into()]),
                ports: Some(ports),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    pub(crate) fn sport(name: &str, port: i32, target: IntOrString) -> ServicePort {
        ServicePort {
            name: Some(name.into()),
            port,
            target_port: Some(target),
            protocol: Some("TCP".into()),
            ..Default::default()
        }
    }

    pub(crate) fn pod(name: &str, ip: &str, ready: bool) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                uid: Some(format!("uid-{name}")),
                labels: Some([("app".to_string(), "web".to_string())].into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: Some("node-1".into()),
                containers: vec![Container {
                    name: "c".into(),
                    ports: Some(vec![ContainerPort {
                        name: Some("http".into()),
                        container_port: 8080,
                        protocol: Some("TCP".into()),
                        ..Default::default()
                    }]),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: Some("Running".into()),
                pod_ip: Some(ip.into()),
                pod_ips: Some(vec![PodIP { ip: ip.into() }]),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        }
    }

    pub(crate) fn with_http_port(mut p: Pod, port: i32) -> Pod {
        let spec = p.spec.as_mut().unwrap();
        spec.containers[0].ports.as_mut().unwrap()[0].container_port = port;
        p
    }

    fn ips(list: &Option<Vec<EndpointAddress>>) -> Vec<String> {
        list.iter().flatten().map(|a| a.ip.clone()).collect()
    }

    fn created(a: EndpointsAction) -> Endpoints {
        match a {
            EndpointsAction::Create(e) | EndpointsAction::Update(e) => e,
            other => panic!("expected a write, got {other:?}"),
        }
    }

    fn http_svc() -> Service {
        svc(
            "web",
            vec![sport("http", 80, IntOrString::String("http".into()))],
        )
    }

    #[test]
    fn unmanaged_services_are_left_alone() {
        let mut no_sel = http_svc();
        no_sel.spec.as_mut().unwrap().selector = None;
        let mut empty_sel = http_svc();
        empty_sel.spec.as_mut().unwrap().selector = Some(BTreeMap::new());
        let mut ext = http_svc();
        ext.spec.as_mut().unwrap().type_ = Some("ExternalName".into());
        let existing = Endpoints::default();
        for s in [no_sel, empty_sel, ext] {
            let pods = [pod("a", "10.0.0.1", true)];
            assert_eq!(
                plan(Some(&s), &pods, Some(&existing), None),
                EndpointsAction::Nothing
            );
            assert_eq!(plan(Some(&s), &pods, None, None), EndpointsAction::Nothing);
        }
    }

    #[test]
    fn deleted_service_deletes_endpoints_except_leader_records() {
        let ep = Endpoints {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("ns".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let del = EndpointsAction::Delete {
            namespace: "ns".into(),
            name: "web".into(),
        };
        assert_eq!(plan(None, NO_PODS, Some(&ep), None), del);
        let mut leader = ep.clone();
        leader.metadata.annotations =
            Some([(LEADER_ANNOTATION.to_string(), "{}".to_string())].into());
        assert_eq!(
            plan(None, NO_PODS, Some(&leader), None),
            EndpointsAction::Nothing
        );
        assert_eq!(plan(None, NO_PODS, None, None), EndpointsAction::Nothing);
    }

    #[test]
    fn readiness_terminating_and_skipped_pods() {
        let mut terminating = pod("t", "10.0.0.4", true);
        terminating.metadata.deletion_timestamp = Some(api_time(Utc::now()));
        let mut no_ip = pod("n", "", true);
        no_ip.status.as_mut().unwrap().pod_ips = None;
        let mut done = pod("d", "10.0.0.5", true);
        done.status.as_mut().unwrap().phase = Some("Succeeded".into());
        let mut other_ns = pod("o", "10.0.0.6", true);
        other_ns.metadata.namespace = Some("other".into());
        let pods = [
            pod("b", "10.0.0.2", true),
            pod("a", "10.0.0.1", true),
            pod("c", "10.0.0.3", false),
            terminating,
            no_ip,
            done,
            other_ns,
        ];
        let ep = created(plan(Some(&http_svc()), &pods, None, None));
        let subsets = ep.subsets.unwrap();
        assert_eq!(subsets.len(), 1);
        assert_eq!(ips(&subsets[0].addresses), ["10.0.0.1", "10.0.0.2"]);
        assert_eq!(ips(&subsets[0].not_ready_addresses), ["10.0.0.3"]);
        let port = &subsets[0].ports.as_ref().unwrap()[0];
        assert_eq!((port.name.as_deref(), port.port), (Some("http"), 8080));
        let a = &subsets[0].addresses.as_ref().unwrap()[0];
        assert_eq!(a.node_name.as_deref(), Some("node-1"));
        let r = a.target_ref.as_ref().unwrap();
        assert_eq!(
            (r.kind.as_deref(), r.name.as_deref(), r.uid.as_deref()),
            (Some("Pod"), Some("a"), Some("uid-a"))
        );
        assert_eq!(ep.metadata.name.as_deref(), Some("web"));
        assert_eq!(
            ep.metadata.labels.unwrap().get("team").map(String::as_str),
            Some("a")
        );
    }

    #[test]
    fn publish_not_ready_includes_everything_as_ready() {
        let mut s = http_svc();
        s.spec.as_mut().unwrap().publish_not_ready_addresses = Some(true);
        let mut terminating = pod("t", "10.0.0.4", false);
        terminating.metadata.deletion_timestamp = Some(api_time(Utc::now()));
        let pods = [pod("c", "10.0.0.3", false), terminating];
        let ep = created(plan(Some(&s), &pods, None, None));
        let subsets = ep.subsets.unwrap();
        assert_eq!(ips(&subsets[0].addresses), ["10.0.0.3", "10.0.0.4"]);
        assert!(subsets[0].not_ready_addresses.is_none());
    }

    #[test]
    fn named_ports_with_different_numbers_split_subsets() {
        let s = svc(
            "web",
            vec![
                sport("http", 80, IntOrString::String("http".into())),
                sport("metrics", 9090, IntOrString::Int(9090)),
            ],
        );
        let mut lacking = pod("x", "10.0.0.9", true);
        lacking.spec.as_mut().unwrap().containers[0].ports = None;
        let pods = [
            with_http_port(pod("a", "10.0.0.1", true), 8080),
            with_http_port(pod("b", "10.0.0.2", true), 8081),
            lacking,
        ];
        let subsets = created(plan(Some(&s), &pods, None, None)).subsets.unwrap();
        let shape: Vec<(Vec<String>, Vec<i32>)> = subsets
            .iter()
            .map(|s| {
                (
                    ips(&s.addresses),
                    s.ports.iter().flatten().map(|p| p.port).collect(),
                )
            })
            .collect();
        assert_eq!(
            shape,
            vec![
                (vec!["10.0.0.1".into()], vec![8080]),
                (vec!["10.0.0.2".into()], vec![8081]),
                (
                    vec!["10.0.0.1".into(), "10.0.0.2".into(), "10.0.0.9".into()],
                    vec![9090]
                ),
            ]
        );
    }

    #[test]
    fn headless_sets_label_hostname_and_allows_no_ports() {
        let mut s = svc("db", vec![]);
        s.spec.as_mut().unwrap().cluster_ip = Some("None".into());
        let mut p = pod("db-0", "10.0.0.1", true);
        let spec = p.spec.as_mut().unwrap();
        spec.hostname = Some("db-0".into());
        spec.subdomain = Some("db".into());
        let ep = created(plan(
            Some(&s),
            &[p, pod("x", "10.0.0.2", false)],
            None,
            None,
        ));
        assert!(
            ep.metadata
                .labels
                .as_ref()
                .unwrap()
                .contains_key(HEADLESS_LABEL)
        );
        let subsets = ep.subsets.unwrap();
        assert_eq!(subsets.len(), 1);
        assert!(subsets[0].ports.is_none());
        let a = &subsets[0].addresses.as_ref().unwrap()[0];
        assert_eq!(a.hostname.as_deref(), Some("db-0"));
        assert_eq!(ips(&subsets[0].not_ready_addresses), ["10.0.0.2"]);
        // A non-headless service without ports gets no addresses at all.
        let plain = svc("db", vec![]);
        let ep = created(plan(
            Some(&plain),
            &[pod("a", "10.0.0.1", true)],
            None,
            None,
        ));
        assert!(ep.subsets.is_none());
        assert!(!ep.metadata.labels.unwrap().contains_key(HEADLESS_LABEL));
    }

    #[test]
    fn ipv6_family_selects_v6_address() {
        let mut s = http_svc();
        s.spec.as_mut().unwrap().ip_families = Some(vec!["IPv6".into(), "IPv4".into()]);
        let mut p = pod("a", "10.0.0.1", true);
        p.status.as_mut().unwrap().pod_ips = Some(vec![
            PodIP {
                ip: "10.0.0.1".into(),
            },
            PodIP {
                ip: "fd00::1".into(),
            },
        ]);
        let subsets = created(plan(Some(&s), &[p], None, None)).subsets.unwrap();
        assert_eq!(ips(&subsets[0].addresses), ["fd00::1"]);
    }

    #[test]
    fn no_update_when_only_order_or_resource_version_differs() {
        let s = http_svc();
        let pods = [
            pod("a", "10.0.0.1", true),
            pod("b", "10.0.0.2", true),
            pod("c", "10.0.0.3", false),
        ];
        let mut cur = created(plan(Some(&s), &pods, None, Some(Utc::now())));
        cur.metadata.resource_version = Some("7".into());
        let sub = &mut cur.subsets.as_mut().unwrap()[0];
        sub.addresses.as_mut().unwrap().reverse();
        sub.addresses.as_mut().unwrap()[0]
            .target_ref
            .as_mut()
            .unwrap()
            .resource_version = Some("3".into());
        assert_eq!(
            plan(Some(&s), &pods, Some(&cur), Some(Utc::now())),
            EndpointsAction::Nothing
        );
        // Readiness flip -> update that keeps the resourceVersion.
        let flipped = [
            pod("a", "10.0.0.1", true),
            pod("b", "10.0.0.2", true),
            pod("c", "10.0.0.3", true),
        ];
        let up = plan(Some(&s), &flipped, Some(&cur), None);
        let EndpointsAction::Update(e) = up else {
            panic!("expected update")
        };
        assert_eq!(e.metadata.resource_version.as_deref(), Some("7"));
        assert_eq!(ips(&e.subsets.unwrap()[0].addresses).len(), 3);
        // Label change -> update.
        let mut relabeled = s.clone();
        relabeled.metadata.labels = None;
        assert!(matches!(
            plan(Some(&relabeled), &pods, Some(&cur), None),
            EndpointsAction::Update(_)
        ));
    }

    #[test]
    fn over_capacity_truncates_and_annotates() {
        let s = http_svc();
        let pods: Vec<Pod> = (0..1200)
            .map(|i| {
                pod(
                    &format!("p{i}"),
                    &format!("10.1.{}.{}", i / 250, i % 250),
                    i % 2 == 0,
                )
            })
            .collect();
        let ep = created(plan(Some(&s), &pods, None, None));
        let subsets = ep.subsets.clone().unwrap();
        assert_eq!(ips(&subsets[0].addresses).len(), 600);
        assert_eq!(ips(&subsets[0].not_ready_addresses).len(), 400);
        let ann = ep.metadata.annotations.clone().unwrap();
        assert_eq!(
            ann.get(OVER_CAPACITY_ANNOTATION).map(String::as_str),
            Some("truncated")
        );
        // Stable: a second sync over the truncated object writes nothing.
        assert_eq!(
            plan(Some(&s), &pods, Some(&ep), None),
            EndpointsAction::Nothing
        );
        // Back under capacity -> annotation removed.
        let EndpointsAction::Update(e) = plan(Some(&s), &pods[..10], Some(&ep), None) else {
            panic!("expected update")
        };
        assert!(e.metadata.annotations.is_none());
    }

    #[test]
    fn truncation_only_ready_when_ready_alone_overflows() {
        let addr = |i: usize| EndpointAddress {
            ip: format!("10.0.{}.{}", i / 200, i % 200),
            ..Default::default()
        };
        let mut subsets = vec![
            EndpointSubset {
                addresses: Some((0..900).map(addr).collect()),
                not_ready_addresses: Some(vec![addr(999)]),
                ports: None,
            },
            EndpointSubset {
                addresses: Some((900..1200).map(addr).collect()),
                ..Default::default()
            },
        ];
        assert!(truncate(&mut subsets));
        assert_eq!(subsets[0].addresses.as_ref().unwrap().len(), 750);
        assert!(subsets[0].not_ready_addresses.is_none());
        assert_eq!(subsets[1].addresses.as_ref().unwrap().len(), 250);
    }

    #[test]
    fn trigger_time_tracker() {
        let t0 = Utc::now() - chrono::Duration::seconds(100);
        let mut s = http_svc();
        s.metadata.creation_timestamp = Some(api_time(t0));
        let mut p = pod("a", "10.0.0.1", true);
        let set_t = |p: &mut Pod, t| {
            p.status.as_mut().unwrap().conditions.as_mut().unwrap()[0].last_transition_time =
                Some(api_time(t))
        };
        set_t(&mut p, t0 + chrono::Duration::seconds(10));
        let mut tr = TriggerTimeTracker::default();
        assert_eq!(tr.compute(&s, &[&p]), Some(t0));
        assert_eq!(tr.compute(&s, &[&p]), None);
        let t2 = t0 + chrono::Duration::seconds(50);
        set_t(&mut p, t2);
        assert_eq!(tr.compute(&s, &[&p]), Some(t2));
        let ep = created(plan(Some(&s), &[p], None, Some(t2)));
        let ann = ep.metadata.annotations.unwrap();
        assert_eq!(
            ann.get(TRIGGER_TIME_ANNOTATION),
            Some(&format_trigger_time(t2))
        );
    }

    #[test]
    fn failed_write_events_read_like_upstream() {
        let e = failed_write_event(&http_svc(), true, "boom");
        assert_eq!(e.reason, "FailedToCreateEndpoint");
        assert_eq!(
            e.message,
            "Failed to create endpoint for service ns/web: boom"
        );
        let e = failed_write_event(&http_svc(), false, "boom");
        assert_eq!(e.message, "Failed to update endpoint ns/web: boom");
    }
}
