//! Node IPAM: hands out per-node pod CIDRs (`spec.podCIDR`/`spec.podCIDRs`)
//! from the cluster CIDR(s), like upstream's `nodeipam` range allocator
//! (`cidrset.CidrSet` + `rangeAllocator`).
//!
//! Owns: the bookkeeping of which node-sized blocks of each cluster CIDR are
//! taken ([`CidrSet`], one per IP family), the rotating "next free block"
//! choice, and the decision for one Node ([`CidrAllocator::allocate_or_occupy`]):
//! occupy what it already has, or reserve new blocks and return the patch.
//!
//! Invariants: a block is handed out at most once until released; blocks are
//! aligned to the node prefix inside the cluster CIDR; the first set is the
//! primary family (its block goes to `spec.podCIDR`); nothing panics on odd
//! input (unparseable CIDRs are errors, not crashes).
//!
//! Must not: talk to the API or read clocks. The shell owns the I/O: build the
//! allocator once from the listed nodes ([`CidrAllocator::rebuild`]), then for
//! every node add/update without pod CIDRs call `allocate_or_occupy` and patch,
//! and call `release_node` when a node is deleted or a patch definitively fails.

use k8s_openapi::api::core::v1::Node;
use std::collections::BTreeSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// Default IPv4 cluster CIDR.
pub const DEFAULT_CLUSTER_CIDR: &str = "10.42.0.0/16";
/// Default per-node prefix length for IPv4 (upstream `--node-cidr-mask-size-ipv4`).
pub const DEFAULT_NODE_MASK_V4: u8 = 24;
/// Default per-node prefix length for IPv6 (upstream `--node-cidr-mask-size-ipv6`).
pub const DEFAULT_NODE_MASK_V6: u8 = 64;
/// Upstream limits node prefix - cluster prefix to 16 bits for IPv6.
const MAX_V6_SUBNET_DIFF: u8 = 16;
/// Our own cap for IPv4 (a /0 split into /32s is not a real configuration).
const MAX_V4_SUBNET_DIFF: u8 = 24;

/// Errors, worded like upstream's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IpamError {
    /// Every block of the range is taken.
    NoCidrsRemaining,
    /// The node prefix is too long relative to the cluster prefix.
    SubnetTooBig,
    /// The node prefix is shorter than the cluster prefix or beyond the family width.
    InvalidNodeMask { cluster: IpNet, node_mask: u8 },
    /// A CIDR does not overlap the cluster CIDR.
    OutOfRange { cidr: IpNet, cluster: IpNet },
    /// A CIDR of the other IP family.
    FamilyMismatch { cidr: IpNet, cluster: IpNet },
    /// Text that is not `addr/prefix`.
    Parse(String),
    /// A node carries more pod CIDRs than there are cluster CIDRs.
    ExtraCidr {
        node: String,
        cidr: String,
        index: usize,
    },
}

impl fmt::Display for IpamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoCidrsRemaining => write!(
                f,
                "CIDR allocation failed; there are no remaining CIDRs left to allocate in the accepted range"
            ),
            Self::SubnetTooBig => {
                write!(f, "New CIDR set failed; the node CIDR size is too big")
            }
            Self::InvalidNodeMask { cluster, node_mask } => write!(
                f,
                "node CIDR mask size {node_mask} is invalid for cluster CIDR {cluster}"
            ),
            Self::OutOfRange { cidr, cluster } => {
                write!(f, "cidr {cidr} is out the range of cluster cidr {cluster}")
            }
            Self::FamilyMismatch { cidr, cluster } => write!(
                f,
                "cidr {cidr} is not of the same IP family as cluster cidr {cluster}"
            ),
            Self::Parse(s) => write!(f, "invalid CIDR address: {s}"),
            Self::ExtraCidr { node, cidr, index } => write!(
                f,
                "node:{node} has an allocated cidr: {cidr} at index:{index} that does not exist in cluster cidrs configuration"
            ),
        }
    }
}

impl std::error::Error for IpamError {}

/// An IP network (`addr/prefix`), normalised so host bits are zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// A network from an address and prefix; host bits are cleared.
    pub fn new(addr: IpAddr, prefix: u8) -> Result<Self, IpamError> {
        let bits = family_bits(&addr);
        if prefix > bits {
            return Err(IpamError::Parse(format!("{addr}/{prefix}")));
        }
        let masked = from_u128(to_u128(&addr) & mask(prefix, bits), addr.is_ipv4());
        Ok(Self {
            addr: masked,
            prefix,
        })
    }

    /// The network address.
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether this is an IPv4 network.
    pub fn is_ipv4(&self) -> bool {
        self.addr.is_ipv4()
    }

    fn bits(&self) -> u8 {
        family_bits(&self.addr)
    }

    fn first(&self) -> u128 {
        to_u128(&self.addr)
    }

    fn last(&self) -> u128 {
        self.first() | (!mask(self.prefix, self.bits()) & full(self.bits()))
    }

    /// Whether `ip` lies in this network (same family only).
    pub fn contains(&self, ip: &IpAddr) -> bool {
        ip.is_ipv4() == self.is_ipv4()
            && to_u128(ip) & mask(self.prefix, self.bits()) == self.first()
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for IpNet {
    type Err = IpamError;

    /// Parses `addr/prefix` like Go's `net.ParseCIDR` (the network part is kept).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || IpamError::Parse(s.to_string());
        let (a, p) = s.trim().split_once('/').ok_or_else(err)?;
        let addr = IpAddr::from_str(a).map_err(|_| err())?;
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) || p.len() > 3 {
            return Err(err());
        }
        let prefix: u8 = p.parse().map_err(|_| err())?;
        Self::new(addr, prefix).map_err(|_| err())
    }
}

fn family_bits(addr: &IpAddr) -> u8 {
    if addr.is_ipv4() { 32 } else { 128 }
}

fn full(bits: u8) -> u128 {
    if bits >= 128 {
        u128::MAX
    } else {
        (1u128 << bits) - 1
    }
}

/// The netmask of `prefix` bits within a `bits`-wide address.
fn mask(prefix: u8, bits: u8) -> u128 {
    let host = bits.saturating_sub(prefix);
    if host >= 128 {
        0
    } else {
        full(bits) & !((1u128 << host) - 1)
    }
}

fn to_u128(addr: &IpAddr) -> u128 {
    match addr {
        IpAddr::V4(a) => u32::from(*a) as u128,
        IpAddr::V6(a) => u128::from(*a),
    }
}

fn from_u128(v: u128, v4: bool) -> IpAddr {
    if v4 {
        IpAddr::V4(Ipv4Addr::from(v as u32))
    } else {
        IpAddr::V6(Ipv6Addr::from(v))
    }
}

/// The node-sized blocks of one cluster CIDR and which are taken
/// (upstream `cidrset.CidrSet`). Allocation rotates: it starts after the
/// last block handed out, wrapping around, so a just-released block is not
/// immediately reused while others are free.
#[derive(Clone, Debug)]
pub struct CidrSet {
    cluster: IpNet,
    node_mask: u8,
    max: u64,
    used: BTreeSet<u64>,
    next_candidate: u64,
}

impl CidrSet {
    /// A set splitting `cluster` into `/node_mask` blocks.
    pub fn new(cluster: IpNet, node_mask: u8) -> Result<Self, IpamError> {
        if node_mask < cluster.prefix() || node_mask > cluster.bits() {
            return Err(IpamError::InvalidNodeMask { cluster, node_mask });
        }
        let diff = node_mask - cluster.prefix();
        let limit = if cluster.is_ipv4() {
            MAX_V4_SUBNET_DIFF
        } else {
            MAX_V6_SUBNET_DIFF
        };
        if diff > limit {
            return Err(IpamError::SubnetTooBig);
        }
        Ok(Self {
            cluster,
            node_mask,
            max: 1u64 << diff,
            used: BTreeSet::new(),
            next_candidate: 0,
        })
    }

    /// The cluster CIDR this set splits.
    pub fn cluster(&self) -> IpNet {
        self.cluster
    }

    /// How many blocks exist in total.
    pub fn capacity(&self) -> u64 {
        self.max
    }

    /// How many blocks are taken.
    pub fn allocated(&self) -> u64 {
        self.used.len() as u64
    }

    fn block(&self, index: u64) -> IpNet {
        let host = self.cluster.bits() - self.node_mask;
        let v = self.cluster.first() | ((index as u128) << host);
        IpNet {
            addr: from_u128(v, self.cluster.is_ipv4()),
            prefix: self.node_mask,
        }
    }

    fn index_of(&self, ip: u128) -> u64 {
        let host = self.cluster.bits() - self.node_mask;
        (((ip ^ self.cluster.first()) >> host) as u64).min(self.max - 1)
    }

    /// The first free index at or after `start` (wrapping), if any.
    fn free_from(&self, start: u64) -> Option<u64> {
        let mut candidate = start;
        for &u in self.used.range(start..) {
            if u != candidate {
                return Some(candidate);
            }
            candidate += 1;
        }
        if candidate < self.max {
            return Some(candidate);
        }
        let mut candidate = 0;
        for &u in self.used.range(..start) {
            if u != candidate {
                return Some(candidate);
            }
            candidate += 1;
        }
        (candidate < start).then_some(candidate)
    }

    /// Takes the next free block (upstream `AllocateNext`).
    pub fn allocate(&mut self) -> Result<IpNet, IpamError> {
        if self.allocated() >= self.max {
            return Err(IpamError::NoCidrsRemaining);
        }
        let start = self.next_candidate % self.max;
        let idx = self.free_from(start).ok_or(IpamError::NoCidrsRemaining)?;
        self.used.insert(idx);
        self.next_candidate = (idx + 1) % self.max;
        Ok(self.block(idx))
    }

    /// The block index range `cidr` covers (upstream `getBeginningAndEndIndices`).
    fn range_of(&self, cidr: &IpNet) -> Result<(u64, u64), IpamError> {
        if cidr.is_ipv4() != self.cluster.is_ipv4() {
            return Err(IpamError::FamilyMismatch {
                cidr: *cidr,
                cluster: self.cluster,
            });
        }
        let overlaps = self.cluster.contains(&cidr.addr) || cidr.contains(&self.cluster.addr);
        if !overlaps {
            return Err(IpamError::OutOfRange {
                cidr: *cidr,
                cluster: self.cluster,
            });
        }
        if cidr.prefix() <= self.cluster.prefix() {
            return Ok((0, self.max - 1));
        }
        Ok((self.index_of(cidr.first()), self.index_of(cidr.last())))
    }

    /// Marks every block `cidr` overlaps as taken (idempotent; upstream `Occupy`).
    /// Also used to keep the service CIDR out of the pool.
    pub fn occupy(&mut self, cidr: &IpNet) -> Result<(), IpamError> {
        let (b, e) = self.range_of(cidr)?;
        self.used.extend(b..=e);
        Ok(())
    }

    /// Frees every block `cidr` overlaps (idempotent; upstream `Release`).
    pub fn release(&mut self, cidr: &IpNet) -> Result<(), IpamError> {
        let (b, e) = self.range_of(cidr)?;
        let taken: Vec<u64> = self.used.range(b..=e).copied().collect();
        for i in taken {
            self.used.remove(&i);
        }
        Ok(())
    }

    /// Whether the block containing `cidr`'s network address is taken.
    pub fn is_occupied(&self, cidr: &IpNet) -> bool {
        self.range_of(cidr)
            .is_ok_and(|(b, e)| self.used.range(b..=e).next().is_some())
    }
}

/// An event on the Node, for the shell to record (source component
/// [`CidrAllocator::EVENT_COMPONENT`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeEvent {
    pub type_: &'static str,
    pub reason: &'static str,
    pub message: String,
}

/// What to do with one Node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeCidrOutcome {
    /// The node already has pod CIDRs; they are now marked as taken.
    Occupied,
    /// New blocks were reserved: patch the Node's `spec.podCIDR` and
    /// `spec.podCIDRs` to these values. If the patch fails for good (not a
    /// timeout), call [`CidrAllocator::release_cidrs`] with `pod_cidrs`.
    Patch {
        pod_cidr: String,
        pod_cidrs: Vec<String>,
    },
    /// No block left in some family: record the event; nothing was reserved.
    NotAvailable { event: NodeEvent, error: IpamError },
}

/// The range allocator: one [`CidrSet`] per cluster CIDR (one per family
/// for dual-stack; the first is the primary family).
#[derive(Clone, Debug)]
pub struct CidrAllocator {
    sets: Vec<CidrSet>,
}

impl CidrAllocator {
    /// The `source.component` of the events this allocator produces.
    pub const EVENT_COMPONENT: &'static str = "cidrAllocator";

    /// One cluster CIDR (single stack) split into `/node_mask` blocks.
    pub fn new(cluster_cidr: IpNet, node_mask: u8) -> Result<Self, IpamError> {
        Self::dual_stack(&[(cluster_cidr, node_mask)])
    }

    /// The default: `10.42.0.0/16` split into `/24`s.
    pub fn default_v4() -> Self {
        let cidr = IpNet::from_str(DEFAULT_CLUSTER_CIDR).expect("constant CIDR parses");
        Self::new(cidr, DEFAULT_NODE_MASK_V4).expect("constant CIDR is valid")
    }

    /// Several cluster CIDRs (at most one per family), each with its node prefix.
    pub fn dual_stack(cidrs: &[(IpNet, u8)]) -> Result<Self, IpamError> {
        let sets = cidrs
            .iter()
            .map(|(c, m)| CidrSet::new(*c, *m))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { sets })
    }

    /// From `--cluster-cidr`-style text: one CIDR, or two comma-separated
    /// (dual-stack, one per family), each split with the mask of its family.
    pub fn from_flags(
        cluster_cidr: &str,
        node_mask_v4: u8,
        node_mask_v6: u8,
    ) -> Result<Self, IpamError> {
        let cidrs = cluster_cidr
            .split(',')
            .map(|c| {
                let net = IpNet::from_str(c)?;
                let m = if net.is_ipv4() {
                    node_mask_v4
                } else {
                    node_mask_v6
                };
                Ok((net, m))
            })
            .collect::<Result<Vec<_>, IpamError>>()?;
        Self::dual_stack(&cidrs)
    }

    /// The per-family sets, primary first.
    pub fn sets(&self) -> &[CidrSet] {
        &self.sets
    }

    /// Keeps the blocks overlapping `service_cidr` out of every set of its family
    /// (upstream `filterOutServiceRange`); non-overlapping CIDRs are ignored.
    pub fn filter_out_service_range(&mut self, service_cidr: &IpNet) {
        for s in &mut self.sets {
            let _ = s.occupy(service_cidr);
        }
    }

    /// Rebuilds from the existing nodes at start: every valid pod CIDR in
    /// range is marked taken. Pod CIDRs that are unparseable, out of range
    /// or beyond the configured families are skipped and returned as errors
    /// for the shell to log (upstream would refuse to start).
    pub fn rebuild<'a>(&mut self, nodes: impl IntoIterator<Item = &'a Node>) -> Vec<IpamError> {
        let mut errors = Vec::new();
        for node in nodes {
            for (idx, text) in node_pod_cidrs(node).iter().enumerate() {
                if let Err(e) = self.occupy_one(node, idx, text) {
                    errors.push(e);
                }
            }
        }
        errors
    }

    fn occupy_one(&mut self, node: &Node, idx: usize, text: &str) -> Result<(), IpamError> {
        let cidr = IpNet::from_str(text)?;
        let set = self.sets.get_mut(idx).ok_or_else(|| IpamError::ExtraCidr {
            node: node_name(node).to_string(),
            cidr: text.to_string(),
            index: idx,
        })?;
        set.occupy(&cidr)
    }

    /// The decision for a Node (upstream `AllocateOrOccupyCIDR`): a node with
    /// pod CIDRs has them occupied; otherwise one block per family is
    /// reserved and returned as a patch. On exhaustion nothing stays reserved
    /// and a `CIDRNotAvailable` event is returned.
    pub fn allocate_or_occupy(&mut self, node: &Node) -> Result<NodeCidrOutcome, IpamError> {
        let existing = node_pod_cidrs(node);
        if !existing.is_empty() {
            for (idx, text) in existing.iter().enumerate() {
                self.occupy_one(node, idx, text)?;
            }
            return Ok(NodeCidrOutcome::Occupied);
        }
        let mut got: Vec<IpNet> = Vec::with_capacity(self.sets.len());
        for i in 0..self.sets.len() {
            match self.sets[i].allocate() {
                Ok(c) => got.push(c),
                Err(error) => {
                    for (j, c) in got.iter().enumerate() {
                        let _ = self.sets[j].release(c);
                    }
                    return Ok(NodeCidrOutcome::NotAvailable {
                        event: status_event(node, "CIDRNotAvailable"),
                        error,
                    });
                }
            }
        }
        let pod_cidrs: Vec<String> = got.iter().map(|c| c.to_string()).collect();
        Ok(NodeCidrOutcome::Patch {
            pod_cidr: pod_cidrs.first().cloned().unwrap_or_default(),
            pod_cidrs,
        })
    }

    /// Frees the node's pod CIDRs (upstream `ReleaseCIDR`), e.g. on node deletion.
    pub fn release_node(&mut self, node: &Node) -> Result<(), IpamError> {
        self.release_cidrs(&node_pod_cidrs(node))
    }

    /// Frees CIDRs given as text, index-aligned with the cluster CIDRs.
    pub fn release_cidrs<S: AsRef<str>>(&mut self, cidrs: &[S]) -> Result<(), IpamError> {
        for (idx, text) in cidrs.iter().enumerate() {
            let cidr = IpNet::from_str(text.as_ref())?;
            if let Some(set) = self.sets.get_mut(idx) {
                set.release(&cidr)?;
            }
        }
        Ok(())
    }
}

/// The JSON merge patch body setting the pod CIDRs of a Node.
pub fn pod_cidr_patch(pod_cidr: &str, pod_cidrs: &[String]) -> serde_json::Value {
    serde_json::json!({ "spec": { "podCIDR": pod_cidr, "podCIDRs": pod_cidrs } })
}

/// The node's pod CIDRs: `spec.podCIDRs`, else `spec.podCIDR`, else none.
pub fn node_pod_cidrs(node: &Node) -> Vec<String> {
    let Some(spec) = node.spec.as_ref() else {
        return Vec::new();
    };
    match (&spec.pod_cidrs, &spec.pod_cidr) {
        (Some(v), _) if !v.is_empty() => v.clone(),
        (_, Some(c)) if !c.is_empty() => vec![c.clone()],
        _ => Vec::new(),
    }
}

fn node_name(node: &Node) -> &str {
    node.metadata.name.as_deref().unwrap_or("")
}

/// Upstream `RecordNodeStatusChange`: "Node X status is now: <status>".
fn status_event(node: &Node, status: &'static str) -> NodeEvent {
    NodeEvent {
        type_: "Normal",
        reason: status,
        message: format!("Node {} status is now: {}", node_name(node), status),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::NodeSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn net(s: &str) -> IpNet {
        IpNet::from_str(s).unwrap()
    }

    fn node(name: &str, cidrs: &[&str]) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            spec: Some(NodeSpec {
                pod_cidr: cidrs.first().map(|s| s.to_string()),
                pod_cidrs: (!cidrs.is_empty())
                    .then(|| cidrs.iter().map(|s| s.to_string()).collect()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn parse_and_display() {
        let cases = [
            ("10.42.0.0/16", Some("10.42.0.0/16")),
            ("10.42.3.7/16", Some("10.42.0.0/16")),
            ("fd00::1/48", Some("fd00::/48")),
            ("10.0.0.0/33", None),
            ("10.0.0.0", None),
            ("10.0.0.0/-1", None),
            ("bogus/8", None),
        ];
        for (input, want) in cases {
            let got = IpNet::from_str(input).ok().map(|n| n.to_string());
            assert_eq!(got.as_deref(), want, "{input}");
        }
    }

    #[test]
    fn rotating_allocation_and_exhaustion() {
        let mut s = CidrSet::new(net("10.42.0.0/22"), 24).unwrap();
        let got: Vec<String> = (0..4).map(|_| s.allocate().unwrap().to_string()).collect();
        assert_eq!(
            got,
            [
                "10.42.0.0/24",
                "10.42.1.0/24",
                "10.42.2.0/24",
                "10.42.3.0/24"
            ]
        );
        let err = s.allocate().unwrap_err();
        assert_eq!(
            err.to_string(),
            "CIDR allocation failed; there are no remaining CIDRs left to allocate in the accepted range"
        );
        s.release(&net("10.42.1.0/24")).unwrap();
        assert_eq!(s.allocate().unwrap().to_string(), "10.42.1.0/24");
        assert!(s.allocate().is_err());
    }

    #[test]
    fn rotation_skips_released_until_wrap() {
        let mut s = CidrSet::new(net("10.42.0.0/22"), 24).unwrap();
        s.allocate().unwrap(); // .0
        s.allocate().unwrap(); // .1
        s.release(&net("10.42.0.0/24")).unwrap();
        assert_eq!(s.allocate().unwrap().to_string(), "10.42.2.0/24");
        assert_eq!(s.allocate().unwrap().to_string(), "10.42.3.0/24");
        assert_eq!(s.allocate().unwrap().to_string(), "10.42.0.0/24");
    }

    #[test]
    fn occupy_ranges_and_out_of_range() {
        let mut s = CidrSet::new(net("10.42.0.0/16"), 24).unwrap();
        s.occupy(&net("10.42.0.0/23")).unwrap(); // two blocks
        s.occupy(&net("10.42.2.128/25")).unwrap(); // part of one block
        assert_eq!(s.allocated(), 3);
        assert_eq!(s.allocate().unwrap().to_string(), "10.42.3.0/24");
        let err = s.occupy(&net("10.43.0.0/24")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cidr 10.43.0.0/24 is out the range of cluster cidr 10.42.0.0/16"
        );
        assert!(s.occupy(&net("fd00::/64")).is_err());
        // a CIDR containing the whole cluster occupies everything
        s.occupy(&net("10.0.0.0/8")).unwrap();
        assert_eq!(s.allocated(), s.capacity());
    }

    #[test]
    fn invalid_masks() {
        assert!(matches!(
            CidrSet::new(net("10.42.0.0/16"), 8),
            Err(IpamError::InvalidNodeMask { .. })
        ));
        assert_eq!(
            CidrSet::new(net("fd00::/48"), 80).unwrap_err(),
            IpamError::SubnetTooBig
        );
        assert!(CidrSet::new(net("fd00::/48"), 64).is_ok());
    }

    #[test]
    fn ipv6_blocks() {
        let mut s = CidrSet::new(net("fd00:10::/56"), 64).unwrap();
        assert_eq!(s.capacity(), 256);
        assert_eq!(s.allocate().unwrap().to_string(), "fd00:10::/64");
        assert_eq!(s.allocate().unwrap().to_string(), "fd00:10:0:1::/64");
        s.occupy(&net("fd00:10:0:ff::/64")).unwrap();
        assert!(s.is_occupied(&net("fd00:10:0:ff::/64")));
    }

    #[test]
    fn rebuild_from_existing_nodes_ignores_foreign_cidrs() {
        let mut a = CidrAllocator::new(net("10.42.0.0/22"), 24).unwrap();
        let nodes = [
            node("a", &["10.42.0.0/24"]),
            node("b", &["10.42.2.0/24"]),
            node("c", &["192.168.0.0/24"]),
            node("d", &["garbage"]),
            node("e", &[]),
        ];
        let errs = a.rebuild(nodes.iter());
        assert_eq!(errs.len(), 2);
        assert_eq!(a.sets()[0].allocated(), 2);
        let out = a.allocate_or_occupy(&node("f", &[])).unwrap();
        assert_eq!(
            out,
            NodeCidrOutcome::Patch {
                pod_cidr: "10.42.1.0/24".into(),
                pod_cidrs: vec!["10.42.1.0/24".into()],
            }
        );
        assert_eq!(
            a.allocate_or_occupy(&node("b", &["10.42.2.0/24"])).unwrap(),
            NodeCidrOutcome::Occupied
        );
        let out = a.allocate_or_occupy(&node("g", &[])).unwrap();
        assert!(
            matches!(out, NodeCidrOutcome::Patch { ref pod_cidr, .. } if pod_cidr == "10.42.3.0/24")
        );
        match a.allocate_or_occupy(&node("h", &[])).unwrap() {
            NodeCidrOutcome::NotAvailable { event, error } => {
                assert_eq!(event.reason, "CIDRNotAvailable");
                assert_eq!(event.message, "Node h status is now: CIDRNotAvailable");
                assert_eq!(error, IpamError::NoCidrsRemaining);
            }
            other => panic!("unexpected {other:?}"),
        }
        // deleting a node frees its block for the next one
        a.release_node(&node("a", &["10.42.0.0/24"])).unwrap();
        let out = a.allocate_or_occupy(&node("h", &[])).unwrap();
        assert!(
            matches!(out, NodeCidrOutcome::Patch { ref pod_cidr, .. } if pod_cidr == "10.42.0.0/24")
        );
    }

    #[test]
    fn dual_stack_allocates_one_per_family_and_rolls_back() {
        let mut a = CidrAllocator::dual_stack(&[(net("10.42.0.0/24"), 24), (net("fd00::/63"), 64)])
            .unwrap();
        let out = a.allocate_or_occupy(&node("a", &[])).unwrap();
        assert_eq!(
            out,
            NodeCidrOutcome::Patch {
                pod_cidr: "10.42.0.0/24".into(),
                pod_cidrs: vec!["10.42.0.0/24".into(), "fd00::/64".into()],
            }
        );
        // v4 exhausted: the v6 block must not leak
        let out = a.allocate_or_occupy(&node("b", &[])).unwrap();
        assert!(matches!(out, NodeCidrOutcome::NotAvailable { .. }));
        assert_eq!(a.sets()[1].allocated(), 1);
        let err = a
            .allocate_or_occupy(&node("c", &["10.42.0.0/24", "fd00::/64", "fd01::/64"]))
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("does not exist in cluster cidrs configuration")
        );
    }

    #[test]
    fn service_range_is_filtered_and_patch_body() {
        let mut a = CidrAllocator::new(net("10.42.0.0/23"), 24).unwrap();
        a.filter_out_service_range(&net("10.42.0.0/28"));
        a.filter_out_service_range(&net("10.96.0.0/12"));
        assert_eq!(a.sets()[0].allocated(), 1);
        assert_eq!(
            pod_cidr_patch("10.42.1.0/24", &["10.42.1.0/24".into()]),
            serde_json::json!({"spec": {"podCIDR": "10.42.1.0/24", "podCIDRs": ["10.42.1.0/24"]}})
        );
        assert_eq!(CidrAllocator::default_v4().sets()[0].capacity(), 256);
        let a = CidrAllocator::from_flags("10.42.0.0/16, fd00:42::/56", 24, 64).unwrap();
        assert_eq!(a.sets().len(), 2);
        assert_eq!(a.sets()[1].capacity(), 256);
        assert!(CidrAllocator::from_flags("nope", 24, 64).is_err());
    }
}
