//! Node registration and heartbeats (upstream kubelet's node status manager
//! and node lease controller).
//!
//! Pure core: [`HostFacts`] parsers, [`node_labels`], [`new_node`],
//! [`build_status`] and [`status_changed`] turn facts into API objects and
//! are table-tested. Shell: [`HostFacts::gather`] reads `/proc`, `/etc`,
//! `/sys` and `statvfs`; [`register_and_heartbeat`] creates the Node (labels
//! and taints only on first registration, like upstream), renews the Lease
//! `kube-node-lease/<node>` every 10 s (duration 40 s, owned by the Node),
//! computes the status every 10 s and patches it when it changed or 60 s
//! after the last report. [`wait_for_pod_cidr`] waits for node IPAM.
//!
//! Invariants: API errors never end the loop (logged, retried next tick; a
//! deleted Node is registered again); a condition's `lastTransitionTime`
//! changes only when its status changes; the loop ends only when `stop`
//! turns true or its sender is dropped.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeSpec, NodeStatus,
    NodeSystemInfo, Taint,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference};
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use tokio::sync::watch;

use crate::controllers::podutil::{chrono_to_time, chrono_to_timestamp};

/// Lease renewal period (upstream: 1/4 of the lease duration).
pub const LEASE_RENEW_INTERVAL: Duration = Duration::from_secs(10);
pub const LEASE_DURATION_SECONDS: i32 = 40;
/// How often the status is computed (`nodeStatusUpdateFrequency`).
pub const STATUS_UPDATE_INTERVAL: Duration = Duration::from_secs(10);
/// Longest time between two status reports (`nodeStatusReportFrequency`).
pub const STATUS_REPORT_INTERVAL: Duration = Duration::from_secs(60);
/// The Kubernetes version skiff reports (same as `/version`).
pub const KUBELET_VERSION: &str = crate::apiserver::discovery::KUBE_VERSION;
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";
const FIELD_MANAGER: &str = "kubelet";

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("API: {0}")]
    Kube(#[from] kube::Error),
    #[error("stopped before {0}")]
    Stopped(&'static str),
}

/// Facts about the machine, gathered once per status computation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostFacts {
    pub cpus: u32,
    pub memory_bytes: u64,
    pub ephemeral_storage_bytes: u64,
    pub kernel_version: String,
    pub os_image: String,
    pub machine_id: String,
    pub system_uuid: String,
    pub boot_id: String,
    /// GOARCH spelling: `amd64`, `arm64`, …
    pub architecture: String,
    pub hostname: String,
}

/// What the caller decides about the node.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeSpecInput {
    pub name: String,
    pub ips: Vec<IpAddr>,
    /// Extra labels (`--node-label`), applied on first registration.
    pub labels: BTreeMap<String, String>,
    /// `--node-taint`, applied on first registration.
    pub taints: Vec<Taint>,
    /// The embedded agent of a server: `node-role.kubernetes.io/control-plane`.
    pub control_plane: bool,
    pub kubelet_port: u16,
    /// `containerd://1.6.20` (from CRI `Version`).
    pub container_runtime_version: String,
    /// What allocatable keeps back from capacity.
    pub allocatable: AllocatableSettings,
}

/// Upstream's node allocatable: capacity less `kube-reserved`,
/// `system-reserved` and the hard eviction thresholds of memory and nodefs.
#[derive(Clone, Debug, PartialEq)]
pub struct AllocatableSettings {
    pub reserved: crate::kubelet::settings::Reserved,
    pub max_pods: u32,
    /// `memory.available` hard threshold.
    pub eviction_memory: Option<crate::kubelet::eviction::thresholds::Amount>,
    /// `nodefs.available` hard threshold.
    pub eviction_nodefs: Option<crate::kubelet::eviction::thresholds::Amount>,
}

impl AllocatableSettings {
    pub fn from_settings(s: &crate::kubelet::settings::KubeletSettings) -> Self {
        use crate::kubelet::eviction::thresholds::Signal;
        let hard = |sig: Signal| {
            s.eviction_thresholds
                .iter()
                .find(|t| t.hard && t.signal == sig)
                .map(|t| t.value.clone())
        };
        AllocatableSettings {
            reserved: s.reserved,
            max_pods: s.max_pods,
            eviction_memory: hard(Signal::MemoryAvailable),
            eviction_nodefs: hard(Signal::NodeFsAvailable),
        }
    }
}

impl Default for AllocatableSettings {
    fn default() -> Self {
        Self::from_settings(&crate::kubelet::settings::KubeletSettings::default())
    }
}

impl AllocatableSettings {
    /// Allocatable CPU millicores of `capacity_millis`.
    pub fn cpu_millis(&self, capacity_millis: u64) -> u64 {
        capacity_millis.saturating_sub(self.reserved.cpu_millis)
    }

    /// Allocatable memory bytes of `capacity`.
    pub fn memory_bytes(&self, capacity: u64) -> u64 {
        capacity
            .saturating_sub(self.reserved.memory_bytes)
            .saturating_sub(threshold_bytes(self.eviction_memory.as_ref(), capacity))
    }
}

/// A threshold in bytes of `capacity`.
fn threshold_bytes(a: Option<&crate::kubelet::eviction::thresholds::Amount>, capacity: u64) -> u64 {
    use crate::kubelet::eviction::thresholds::Amount;
    match a {
        None => 0,
        Some(Amount::Quantity { value, .. }) => u64::try_from(*value).unwrap_or(0),
        Some(Amount::Percentage(f)) => (capacity as f64 * f) as u64,
    }
}

/// CPU millicores as upstream prints them: whole cores plainly, else `m`.
fn millicores(m: u64) -> Quantity {
    if m.is_multiple_of(1000) {
        Quantity((m / 1000).to_string())
    } else {
        Quantity(format!("{m}m"))
    }
}

/// Whether the kubelet may report Ready.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Readiness {
    pub runtime_ready: bool,
    pub network_ready: bool,
    /// Why not ready (upstream-style text); ignored when ready.
    pub message: String,
    /// MemoryPressure / DiskPressure / PIDPressure (the eviction manager's).
    pub pressure: crate::kubelet::eviction::policy::Pressure,
}

impl Readiness {
    pub fn ready() -> Self {
        Readiness {
            runtime_ready: true,
            network_ready: true,
            message: String::new(),
            pressure: Default::default(),
        }
    }
    pub fn is_ready(&self) -> bool {
        self.runtime_ready && self.network_ready
    }
}

// ---- host facts ----------------------------------------------------------

/// `MemTotal` of `/proc/meminfo`, in bytes.
pub fn parse_meminfo_total(text: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix("MemTotal:")?;
        let mut parts = rest.split_whitespace();
        let n: u64 = parts.next()?.parse().ok()?;
        match parts.next() {
            Some("kB") | None => n.checked_mul(1024),
            _ => None,
        }
    })
}

/// Number of `processor` entries in `/proc/cpuinfo`.
pub fn parse_cpuinfo_count(text: &str) -> u32 {
    text.lines()
        .filter(|l| l.split(':').next().is_some_and(|k| k.trim() == "processor"))
        .count() as u32
}

/// CPUs in a cgroup `cpuset.cpus` list (`0-3,6`); `None` if malformed or empty.
pub fn parse_cpuset(text: &str) -> Option<u32> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    let mut n = 0u32;
    for part in text.split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (u32, u32) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
                n += b.checked_sub(a)? + 1;
            }
            None => {
                part.trim().parse::<u32>().ok()?;
                n += 1;
            }
        }
    }
    Some(n)
}

/// `PRETTY_NAME` of `/etc/os-release` (quotes removed).
pub fn parse_os_release(text: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let v = l.strip_prefix("PRETTY_NAME=")?.trim();
        Some(v.trim_matches('"').trim_matches('\'').to_string())
    })
}

/// Rust's target arch in Go's spelling.
pub fn go_arch(rust_arch: &str) -> String {
    match rust_arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
    .to_string()
}

fn read_trim(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

fn statvfs_bytes(dir: &Path) -> Option<u64> {
    super::fsinfo::FsInfo::of(dir).map(|f| f.capacity_bytes)
}

impl HostFacts {
    /// Read the facts of this machine (best effort: unknown values stay empty
    /// or zero). Ephemeral storage is the filesystem holding `agent_dir`.
    pub fn gather(agent_dir: &Path) -> HostFacts {
        let cgroup_cpus =
            read_trim("/sys/fs/cgroup/cpuset.cpus.effective").and_then(|s| parse_cpuset(&s));
        let cpus = std::thread::available_parallelism()
            .map(|n| n.get() as u32)
            .ok()
            .or(cgroup_cpus)
            .or_else(|| read_trim("/proc/cpuinfo").map(|t| parse_cpuinfo_count(&t)))
            .unwrap_or(1)
            .max(1);
        let machine_id = read_trim("/etc/machine-id")
            .or_else(|| read_trim("/var/lib/dbus/machine-id"))
            .unwrap_or_default();
        let storage_dir = if agent_dir.exists() {
            agent_dir
        } else {
            Path::new("/")
        };
        HostFacts {
            cpus,
            memory_bytes: read_trim("/proc/meminfo")
                .and_then(|t| parse_meminfo_total(&t))
                .unwrap_or(0),
            ephemeral_storage_bytes: statvfs_bytes(storage_dir).unwrap_or(0),
            kernel_version: read_trim("/proc/sys/kernel/osrelease").unwrap_or_default(),
            os_image: read_trim("/etc/os-release")
                .and_then(|t| parse_os_release(&t))
                .unwrap_or_else(|| "Linux".into()),
            system_uuid: read_trim("/sys/class/dmi/id/product_uuid")
                .map(|s| s.to_ascii_lowercase())
                .unwrap_or_else(|| machine_id.clone()),
            machine_id,
            boot_id: read_trim("/proc/sys/kernel/random/boot_id").unwrap_or_default(),
            architecture: go_arch(std::env::consts::ARCH),
            hostname: crate::config::hostname(),
        }
    }
}

// ---- pure builders --------------------------------------------------------

/// Labels of a newly registered node: the well-known ones, then `--node-label`.
pub fn node_labels(input: &NodeSpecInput, facts: &HostFacts) -> BTreeMap<String, String> {
    let mut l = default_labels(input, facts);
    if input.control_plane {
        l.insert(
            "node-role.kubernetes.io/control-plane".into(),
            "true".into(),
        );
    }
    l.extend(input.labels.clone());
    l
}

/// The labels the kubelet keeps correct on every start (upstream
/// `updateDefaultLabels`).
fn default_labels(input: &NodeSpecInput, facts: &HostFacts) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("kubernetes.io/hostname".into(), input.name.clone()),
        ("kubernetes.io/os".into(), "linux".into()),
        ("kubernetes.io/arch".into(), facts.architecture.clone()),
        ("beta.kubernetes.io/os".into(), "linux".into()),
        ("beta.kubernetes.io/arch".into(), facts.architecture.clone()),
        ("node.kubernetes.io/instance-type".into(), "skiff".into()),
    ])
}

/// The Node object created on first registration (no status).
pub fn new_node(input: &NodeSpecInput, facts: &HostFacts) -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some(input.name.clone()),
            labels: Some(node_labels(input, facts)),
            annotations: Some(BTreeMap::from([(
                "node.alpha.kubernetes.io/ttl".to_string(),
                "0".to_string(),
            )])),
            ..Default::default()
        },
        spec: Some(NodeSpec {
            taints: (!input.taints.is_empty()).then(|| input.taints.clone()),
            ..Default::default()
        }),
        status: None,
    }
}

fn condition(
    type_: &str,
    ok: bool,
    ok_is_true: bool,
    reason: &str,
    message: &str,
    now: DateTime<Utc>,
    prev: Option<&NodeStatus>,
) -> NodeCondition {
    let status = if ok == ok_is_true { "True" } else { "False" };
    let transition = prev
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == type_))
        .filter(|c| c.status == status)
        .and_then(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| chrono_to_time(now));
    NodeCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_heartbeat_time: Some(chrono_to_time(now)),
        last_transition_time: Some(transition),
    }
}

/// Quantity in `Ki` like upstream reports memory and storage capacity.
fn kibibytes(bytes: u64) -> Quantity {
    Quantity(format!("{}Ki", bytes / 1024))
}

/// The node status from facts (pure). Transition times of unchanged
/// conditions are taken from `prev`.
pub fn build_status(
    input: &NodeSpecInput,
    facts: &HostFacts,
    readiness: &Readiness,
    now: DateTime<Utc>,
    prev: Option<&NodeStatus>,
) -> NodeStatus {
    let capacity = BTreeMap::from([
        ("cpu".to_string(), Quantity(facts.cpus.to_string())),
        ("memory".to_string(), kibibytes(facts.memory_bytes)),
        (
            "ephemeral-storage".to_string(),
            kibibytes(facts.ephemeral_storage_bytes),
        ),
        (
            "pods".to_string(),
            Quantity(input.allocatable.max_pods.to_string()),
        ),
        ("hugepages-1Gi".to_string(), Quantity("0".into())),
        ("hugepages-2Mi".to_string(), Quantity("0".into())),
    ]);
    let a = &input.allocatable;
    let mut allocatable = capacity.clone();
    allocatable.insert(
        "cpu".into(),
        millicores(a.cpu_millis(facts.cpus as u64 * 1000)),
    );
    allocatable.insert(
        "memory".into(),
        kibibytes(a.memory_bytes(facts.memory_bytes)),
    );
    let storage = facts.ephemeral_storage_bytes;
    allocatable.insert(
        "ephemeral-storage".into(),
        Quantity(
            storage
                .saturating_sub(a.reserved.ephemeral_storage_bytes)
                .saturating_sub(threshold_bytes(a.eviction_nodefs.as_ref(), storage))
                .to_string(),
        ),
    );
    let not_ready_message = if !readiness.message.is_empty() {
        readiness.message.clone()
    } else if !readiness.runtime_ready {
        "container runtime is down".into()
    } else {
        "container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady message:Network plugin returns error: cni plugin not initialized".into()
    };
    let ready = readiness.is_ready();
    let pressure = |kind, on: bool| {
        let (ty, reason, message) = crate::kubelet::eviction::policy::condition_texts(kind, on);
        condition(ty, !on, false, reason, message, now, prev)
    };
    use crate::kubelet::eviction::thresholds::PressureKind;
    let conditions = vec![
        pressure(PressureKind::Memory, readiness.pressure.memory),
        pressure(PressureKind::Disk, readiness.pressure.disk),
        pressure(PressureKind::Pid, readiness.pressure.pid),
        condition(
            "Ready",
            ready,
            true,
            if ready {
                "KubeletReady"
            } else {
                "KubeletNotReady"
            },
            if ready {
                "kubelet is posting ready status"
            } else {
                &not_ready_message
            },
            now,
            prev,
        ),
    ];
    let mut addresses: Vec<NodeAddress> = input
        .ips
        .iter()
        .map(|ip| NodeAddress {
            type_: "InternalIP".into(),
            address: ip.to_string(),
        })
        .collect();
    addresses.push(NodeAddress {
        type_: "Hostname".into(),
        address: input.name.clone(),
    });
    NodeStatus {
        capacity: Some(capacity),
        allocatable: Some(allocatable),
        conditions: Some(conditions),
        addresses: Some(addresses),
        daemon_endpoints: Some(NodeDaemonEndpoints {
            kubelet_endpoint: Some(DaemonEndpoint {
                port: i32::from(input.kubelet_port),
            }),
        }),
        node_info: Some(NodeSystemInfo {
            architecture: facts.architecture.clone(),
            boot_id: facts.boot_id.clone(),
            container_runtime_version: input.container_runtime_version.clone(),
            kernel_version: facts.kernel_version.clone(),
            kube_proxy_version: KUBELET_VERSION.into(),
            kubelet_version: KUBELET_VERSION.into(),
            machine_id: facts.machine_id.clone(),
            operating_system: "linux".into(),
            os_image: facts.os_image.clone(),
            system_uuid: facts.system_uuid.clone(),
            swap: None,
        }),
        ..Default::default()
    }
}

/// True when `next` differs from `prev` other than in heartbeat times, so
/// it must be reported before the report interval is up.
pub fn status_changed(prev: &NodeStatus, next: &NodeStatus) -> bool {
    let strip = |s: &NodeStatus| {
        let mut s = s.clone();
        for c in s.conditions.iter_mut().flatten() {
            c.last_heartbeat_time = None;
        }
        s.images = None;
        s
    };
    strip(prev) != strip(next)
}

/// The node Lease (pure).
pub fn build_lease(node: &str, node_uid: Option<&str>, now: DateTime<Utc>) -> Lease {
    Lease {
        metadata: ObjectMeta {
            name: Some(node.into()),
            namespace: Some(NODE_LEASE_NAMESPACE.into()),
            owner_references: node_uid.map(|uid| {
                vec![OwnerReference {
                    api_version: "v1".into(),
                    kind: "Node".into(),
                    name: node.into(),
                    uid: uid.into(),
                    ..Default::default()
                }]
            }),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(node.into()),
            lease_duration_seconds: Some(LEASE_DURATION_SECONDS),
            renew_time: Some(MicroTime(chrono_to_timestamp(now))),
            ..Default::default()
        }),
    }
}

/// Parse a `--node-taint` value `key[=value]:Effect`.
pub fn parse_taint(s: &str) -> Result<Taint, String> {
    let (kv, effect) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("invalid taint {s:?}: expected key[=value]:Effect"))?;
    if !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
        return Err(format!(
            "invalid taint {s:?}: effect must be NoSchedule, PreferNoSchedule or NoExecute"
        ));
    }
    let (key, value) = match kv.split_once('=') {
        Some((k, v)) => (k, Some(v.to_string())),
        None => (kv, None),
    };
    let errs = crate::api::validation::qualified_name_errors(key);
    if !errs.is_empty() {
        return Err(format!("invalid taint key {key:?}: {}", errs.join("; ")));
    }
    if let Some(v) = &value {
        let errs = crate::api::validation::label_value_errors(v);
        if !errs.is_empty() {
            return Err(format!("invalid taint value {v:?}: {}", errs.join("; ")));
        }
    }
    Ok(Taint {
        key: key.into(),
        value: value.filter(|v| !v.is_empty()),
        effect: effect.into(),
        time_added: None,
    })
}

/// Parse a `--node-label` value `key=value`.
pub fn parse_label(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("invalid label {s:?}: expected key=value"))?;
    let mut errs = crate::api::validation::qualified_name_errors(k);
    errs.extend(crate::api::validation::label_value_errors(v));
    if !errs.is_empty() {
        return Err(format!("invalid label {s:?}: {}", errs.join("; ")));
    }
    Ok((k.into(), v.into()))
}

// ---- shell ----------------------------------------------------------------

/// Create the Node if it does not exist (labels, taints); on an existing
/// Node only correct the default labels. Returns the Node.
pub async fn register(
    client: &kube::Client,
    input: &NodeSpecInput,
    facts: &HostFacts,
) -> Result<Node, kube::Error> {
    let api: Api<Node> = Api::all(client.clone());
    match api.get_opt(&input.name).await? {
        None => match api
            .create(&PostParams::default(), &new_node(input, facts))
            .await
        {
            Ok(n) => {
                tracing::info!(node = %input.name, "registered node");
                Ok(n)
            }
            Err(kube::Error::Api(s)) if s.code == 409 => api.get(&input.name).await,
            Err(e) => Err(e),
        },
        Some(existing) => {
            let want = default_labels(input, facts);
            let have = existing.metadata.labels.clone().unwrap_or_default();
            if want.iter().all(|(k, v)| have.get(k) == Some(v)) {
                return Ok(existing);
            }
            let patch = serde_json::json!({"metadata": {"labels": want}});
            api.patch(&input.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
        }
    }
}

async fn renew_lease(
    client: &kube::Client,
    node: &str,
    uid: Option<&str>,
) -> Result<(), kube::Error> {
    let api: Api<Lease> = Api::namespaced(client.clone(), NODE_LEASE_NAMESPACE);
    let lease = build_lease(node, uid, Utc::now());
    let patch = serde_json::json!({"spec": lease.spec});
    match api
        .patch(node, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => {
            match api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(()),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(e),
    }
}

async fn patch_status(
    client: &kube::Client,
    node: &str,
    status: &NodeStatus,
) -> Result<Node, kube::Error> {
    let api: Api<Node> = Api::all(client.clone());
    let patch = serde_json::json!({"status": status});
    api.patch_status(
        node,
        &PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..Default::default()
        },
        &Patch::Merge(&patch),
    )
    .await
}

/// Register the node, then keep its Lease and status fresh until `stop`
/// turns true (or its sender is dropped). Never returns early on API errors.
pub async fn register_and_heartbeat(
    client: kube::Client,
    input: NodeSpecInput,
    agent_dir: std::path::PathBuf,
    mut readiness: watch::Receiver<Readiness>,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(200);
    let mut readiness_open = true;
    let mut node_uid: Option<String> = None;
    let mut last_reported: Option<(NodeStatus, tokio::time::Instant)> = None;
    let mut lease_tick = tokio::time::interval(LEASE_RENEW_INTERVAL);
    let mut status_tick = tokio::time::interval(STATUS_UPDATE_INTERVAL);
    lease_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    status_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if *stop.borrow() {
            return;
        }
        if node_uid.is_none() {
            let facts = HostFacts::gather(&agent_dir);
            match register(&client, &input, &facts).await {
                Ok(n) => {
                    node_uid = n.metadata.uid.clone();
                    last_reported = None;
                    backoff = Duration::from_millis(200);
                    status_tick.reset_immediately();
                    lease_tick.reset_immediately();
                }
                Err(e) => {
                    tracing::warn!(node = %input.name, "registering node failed (retrying in {backoff:?}): {e}");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        r = stop.changed() => if r.is_err() { return },
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(7));
                    continue;
                }
            }
        }
        let mut force = false;
        tokio::select! {
            r = stop.changed() => {
                if r.is_err() { return }
                continue;
            }
            _ = lease_tick.tick() => {
                if let Err(e) = renew_lease(&client, &input.name, node_uid.as_deref()).await {
                    tracing::warn!(node = %input.name, "renewing node lease failed: {e}");
                }
                continue;
            }
            _ = status_tick.tick() => {}
            r = readiness.changed(), if readiness_open => {
                // sender gone: keep the last value, stop listening
                readiness_open = r.is_ok();
                force = true;
            }
        }
        let facts = HostFacts::gather(&agent_dir);
        let current = readiness.borrow().clone();
        let prev = last_reported.as_ref().map(|(s, _)| s);
        let status = build_status(&input, &facts, &current, Utc::now(), prev);
        let due = match &last_reported {
            None => true,
            Some((p, at)) => {
                force || status_changed(p, &status) || at.elapsed() >= STATUS_REPORT_INTERVAL
            }
        };
        if !due {
            continue;
        }
        match patch_status(&client, &input.name, &status).await {
            Ok(_) => last_reported = Some((status, tokio::time::Instant::now())),
            Err(kube::Error::Api(s)) if s.code == 404 => {
                tracing::warn!(node = %input.name, "node object is gone; registering it again");
                node_uid = None;
            }
            Err(e) => tracing::warn!(node = %input.name, "updating node status failed: {e}"),
        }
    }
}

/// Wait until node IPAM assigned `spec.podCIDR`, and return it.
pub async fn wait_for_pod_cidr(
    client: &kube::Client,
    node: &str,
    mut stop: watch::Receiver<bool>,
) -> Result<String, NodeError> {
    let api: Api<Node> = Api::all(client.clone());
    let mut logged = false;
    loop {
        match api.get_opt(node).await {
            Ok(Some(n)) => {
                if let Some(cidr) = n.spec.and_then(|s| s.pod_cidr).filter(|c| !c.is_empty()) {
                    return Ok(cidr);
                }
            }
            Ok(None) => {}
            Err(e) => tracing::debug!(node, "reading node for its podCIDR: {e}"),
        }
        if !logged {
            tracing::info!(node, "waiting for the node's podCIDR");
            logged = true;
        }
        if *stop.borrow() {
            return Err(NodeError::Stopped("the podCIDR was assigned"));
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            r = stop.changed() => if r.is_err() || *stop.borrow() {
                return Err(NodeError::Stopped("the podCIDR was assigned"));
            },
        }
    }
}

/// `<runtime>://<version>` from a CRI `Version` answer.
pub fn runtime_version_string(name: &str, version: &str) -> String {
    format!("{name}://{version}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> HostFacts {
        HostFacts {
            cpus: 2,
            memory_bytes: 4 * 1024 * 1024 * 1024,
            ephemeral_storage_bytes: 100 * 1024 * 1024 * 1024,
            kernel_version: "6.1.0".into(),
            os_image: "Debian GNU/Linux 12 (bookworm)".into(),
            machine_id: "m".into(),
            system_uuid: "u".into(),
            boot_id: "b".into(),
            architecture: "amd64".into(),
            hostname: "host".into(),
        }
    }

    fn input() -> NodeSpecInput {
        NodeSpecInput {
            name: "n1".into(),
            ips: vec!["10.0.0.5".parse().unwrap()],
            labels: BTreeMap::from([("tier".into(), "edge".into())]),
            taints: vec![parse_taint("dedicated=gpu:NoSchedule").unwrap()],
            control_plane: false,
            kubelet_port: 10250,
            container_runtime_version: "containerd://1.6.20".into(),
            allocatable: AllocatableSettings::default(),
        }
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn host_fact_parsers() {
        assert_eq!(
            parse_meminfo_total("MemTotal:       8029820 kB\nMemFree: 1 kB\n"),
            Some(8029820 * 1024)
        );
        assert_eq!(parse_meminfo_total("MemFree: 1 kB\n"), None);
        assert_eq!(
            parse_cpuinfo_count("processor\t: 0\nmodel\t: x\n\nprocessor\t: 1\n"),
            2
        );
        for (s, want) in [
            ("0-3", Some(4)),
            ("0-3,6", Some(5)),
            ("5", Some(1)),
            ("", None),
            ("3-1", None),
            ("x", None),
        ] {
            assert_eq!(parse_cpuset(s), want, "{s:?}");
        }
        assert_eq!(
            parse_os_release("NAME=\"Debian\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n")
                .as_deref(),
            Some("Debian GNU/Linux 12 (bookworm)")
        );
        assert_eq!(go_arch("x86_64"), "amd64");
        assert_eq!(go_arch("aarch64"), "arm64");
        let f = HostFacts::gather(Path::new("/"));
        assert!(
            f.cpus >= 1 && f.memory_bytes > 0 && f.ephemeral_storage_bytes > 0,
            "{f:?}"
        );
    }

    #[test]
    fn labels_and_taints_of_a_new_node() {
        let mut i = input();
        let n = new_node(&i, &facts());
        let labels = n.metadata.labels.unwrap();
        for (k, v) in [
            ("kubernetes.io/hostname", "n1"),
            ("kubernetes.io/os", "linux"),
            ("kubernetes.io/arch", "amd64"),
            ("node.kubernetes.io/instance-type", "skiff"),
            ("tier", "edge"),
        ] {
            assert_eq!(labels.get(k).map(String::as_str), Some(v), "{k}");
        }
        assert!(!labels.contains_key("node-role.kubernetes.io/control-plane"));
        assert_eq!(n.spec.unwrap().taints.unwrap()[0].key, "dedicated");
        i.control_plane = true;
        i.taints.clear();
        let n = new_node(&i, &facts());
        assert_eq!(
            n.metadata.labels.unwrap()["node-role.kubernetes.io/control-plane"],
            "true"
        );
        assert!(n.spec.unwrap().taints.is_none());
    }

    #[test]
    fn taint_and_label_flags() {
        let t = parse_taint("key=value:NoExecute").unwrap();
        assert_eq!(
            (t.key.as_str(), t.value.as_deref(), t.effect.as_str()),
            ("key", Some("value"), "NoExecute")
        );
        let t = parse_taint("example.com/k:PreferNoSchedule").unwrap();
        assert_eq!(
            (t.key.as_str(), t.value, t.effect.as_str()),
            ("example.com/k", None, "PreferNoSchedule")
        );
        for bad in [
            "key=value",
            "key:Bogus",
            "bad key:NoSchedule",
            ":NoSchedule",
        ] {
            assert!(parse_taint(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_label("a/b=c").unwrap(), ("a/b".into(), "c".into()));
        assert_eq!(parse_label("a=").unwrap(), ("a".into(), "".into()));
        for bad in ["a", "bad key=v", "a=bad value"] {
            assert!(parse_label(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn status_from_facts() {
        let now = at("2025-01-01T00:00:00Z");
        let cases = [
            (Readiness::ready(), "True", "KubeletReady", "kubelet is posting ready status".to_string()),
            (
                Readiness { runtime_ready: false, network_ready: true, message: String::new(), pressure: Default::default() },
                "False",
                "KubeletNotReady",
                "container runtime is down".to_string(),
            ),
            (
                Readiness { runtime_ready: true, network_ready: false, message: String::new(), pressure: Default::default() },
                "False",
                "KubeletNotReady",
                "container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady message:Network plugin returns error: cni plugin not initialized".to_string(),
            ),
            (
                Readiness { runtime_ready: true, network_ready: false, message: "custom".into(), pressure: Default::default() },
                "False",
                "KubeletNotReady",
                "custom".to_string(),
            ),
        ];
        for (r, status, reason, message) in cases {
            let s = build_status(&input(), &facts(), &r, now, None);
            let conds = s.conditions.as_ref().unwrap();
            let types: Vec<&str> = conds.iter().map(|c| c.type_.as_str()).collect();
            assert_eq!(
                types,
                ["MemoryPressure", "DiskPressure", "PIDPressure", "Ready"]
            );
            let ready = &conds[3];
            assert_eq!(
                (ready.status.as_str(), ready.reason.as_deref()),
                (status, Some(reason))
            );
            assert_eq!(ready.message.as_deref(), Some(message.as_str()));
            assert!(conds[..3].iter().all(|c| c.status == "False"));
        }
        let s = build_status(&input(), &facts(), &Readiness::ready(), now, None);
        let cap = s.capacity.as_ref().unwrap();
        assert_eq!(cap["cpu"].0, "2");
        assert_eq!(cap["memory"].0, "4194304Ki");
        assert_eq!(cap["pods"].0, "110");
        assert_eq!(cap["hugepages-2Mi"].0, "0");
        let alloc = s.allocatable.as_ref().unwrap();
        assert_eq!(alloc["memory"].0, "4091904Ki");
        assert_eq!(alloc["cpu"].0, "2");
        // kube-reserved + system-reserved + eviction-hard come off capacity
        let settings = crate::kubelet::settings::KubeletSettings::from_args(&[
            "kube-reserved=cpu=250m,memory=512Mi".to_string(),
            "system-reserved=memory=512Mi,ephemeral-storage=1Gi".to_string(),
            "eviction-hard=memory.available<10%,nodefs.available<1Gi".to_string(),
            "max-pods=20".to_string(),
        ])
        .unwrap();
        let mut reserved = input();
        reserved.allocatable = AllocatableSettings::from_settings(&settings);
        let s = build_status(&reserved, &facts(), &Readiness::ready(), now, None);
        let alloc = s.allocatable.as_ref().unwrap();
        assert_eq!(alloc["cpu"].0, "1750m");
        // 4 GiB - 1 GiB - 10 % of 4 GiB, in whole KiB
        let bytes: u64 = (3 << 30) - (4u64 << 30) / 10;
        assert_eq!(alloc["memory"].0, format!("{}Ki", bytes / 1024));
        let storage = facts().ephemeral_storage_bytes;
        assert_eq!(
            alloc["ephemeral-storage"].0,
            (storage - (2 << 30)).to_string()
        );
        assert_eq!(alloc["pods"].0, "20");
        assert_eq!(s.capacity.as_ref().unwrap()["pods"].0, "20");
        let addrs: Vec<(&str, &str)> = s
            .addresses
            .as_ref()
            .unwrap()
            .iter()
            .map(|a| (a.type_.as_str(), a.address.as_str()))
            .collect();
        assert_eq!(addrs, [("InternalIP", "10.0.0.5"), ("Hostname", "n1")]);
        let info = s.node_info.as_ref().unwrap();
        assert_eq!(info.kubelet_version, KUBELET_VERSION);
        assert_eq!(info.container_runtime_version, "containerd://1.6.20");
        assert_eq!(info.operating_system, "linux");
        assert_eq!(
            s.daemon_endpoints
                .as_ref()
                .unwrap()
                .kubelet_endpoint
                .as_ref()
                .unwrap()
                .port,
            10250
        );
    }

    #[test]
    fn transitions_and_change_detection() {
        let t0 = at("2025-01-01T00:00:00Z");
        let t1 = at("2025-01-01T00:00:10Z");
        let s0 = build_status(&input(), &facts(), &Readiness::ready(), t0, None);
        // same readiness later: heartbeat moves, transition stays, not "changed"
        let s1 = build_status(&input(), &facts(), &Readiness::ready(), t1, Some(&s0));
        let ready1 = &s1.conditions.as_ref().unwrap()[3];
        assert_eq!(ready1.last_transition_time, Some(chrono_to_time(t0)));
        assert_eq!(ready1.last_heartbeat_time, Some(chrono_to_time(t1)));
        assert!(!status_changed(&s0, &s1));
        // readiness flips: transition moves, changed
        let down = Readiness {
            runtime_ready: false,
            network_ready: true,
            message: String::new(),
            pressure: Default::default(),
        };
        let s2 = build_status(&input(), &facts(), &down, t1, Some(&s1));
        assert_eq!(
            s2.conditions.as_ref().unwrap()[3].last_transition_time,
            Some(chrono_to_time(t1))
        );
        assert_eq!(
            s2.conditions.as_ref().unwrap()[0].last_transition_time,
            Some(chrono_to_time(t0))
        );
        assert!(status_changed(&s1, &s2));
        // a fact change is a change
        let mut f = facts();
        f.memory_bytes *= 2;
        assert!(status_changed(
            &s1,
            &build_status(&input(), &f, &Readiness::ready(), t1, Some(&s1))
        ));
    }

    #[test]
    fn lease_shape() {
        let now = at("2025-01-01T00:00:00Z");
        let l = build_lease("n1", Some("uid-1"), now);
        assert_eq!(l.metadata.namespace.as_deref(), Some("kube-node-lease"));
        let o = &l.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (o.kind.as_str(), o.name.as_str(), o.uid.as_str()),
            ("Node", "n1", "uid-1")
        );
        let spec = l.spec.unwrap();
        assert_eq!(spec.lease_duration_seconds, Some(40));
        assert_eq!(spec.holder_identity.as_deref(), Some("n1"));
        assert!(
            build_lease("n1", None, now)
                .metadata
                .owner_references
                .is_none()
        );
    }
}
