//! Node IPAM controller (upstream `nodeipam` with the range allocator): gives
//! every Node without pod CIDRs one block of the cluster CIDR by patching
//! `spec.podCIDR`/`spec.podCIDRs`, and frees a node's blocks when it is
//! deleted. The bookkeeping is `ipam::CidrAllocator`; this shell is a
//! level-triggered loop over the shared node cache.
//!
//! Invariant: the allocator is rebuilt from the full node list before the
//! first allocation, and a block reserved for a node stays reserved until
//! that node (same uid) is gone or the patch definitively failed, so two
//! nodes never get the same block even while the cache lags our patches.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, ObjectReference};
use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt};

use super::Context;
use super::events::{Kind, Recorder};
use super::ipam::{CidrAllocator, IpNet, NodeCidrOutcome, node_pod_cidrs, pod_cidr_patch};
use super::passloop::{Waker, wait_ready};

/// How often the loop looks again without any change (and retries failures).
const RESYNC: Duration = Duration::from_secs(30);
const RETRY: Duration = Duration::from_secs(1);

/// What the allocator holds for one node.
struct Held {
    uid: String,
    cidrs: Vec<String>,
}

pub fn run(ctx: Arc<Context>) -> impl std::future::Future<Output = ()> + Send + 'static {
    start(ctx)
}

async fn start(ctx: Arc<Context>) {
    let allocator = match IpNet::from_str(&ctx.config.cluster_cidr)
        .and_then(|net| CidrAllocator::new(net, ctx.config.node_cidr_mask))
    {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!("node IPAM disabled: {e}");
            return;
        }
    };
    run_loop(ctx, allocator).await;
}

async fn run_loop(ctx: Arc<Context>, mut alloc: CidrAllocator) {
    let store = ctx.nodes.store();
    wait_ready(&store).await;
    let waker = Waker::new(vec![ctx.nodes.notifier()]);
    let recorder = Recorder::new(ctx.client.clone(), CidrAllocator::EVENT_COMPONENT);
    let api: Api<Node> = Api::all(ctx.client.clone());
    let mut held: HashMap<String, Held> = HashMap::new();
    {
        let nodes = store.state();
        for e in alloc.rebuild(nodes.iter().map(|n| &**n)) {
            tracing::warn!("node IPAM: ignoring an existing pod CIDR: {e}");
        }
        for n in &nodes {
            let cidrs = node_pod_cidrs(n);
            if !cidrs.is_empty() {
                held.insert(n.name_any(), held_for(n, cidrs));
            }
        }
    }
    loop {
        let armed = waker.arm();
        let nodes = store.state();
        let mut retry = false;
        // release the blocks of nodes that are gone (or were re-created)
        let live: HashMap<String, String> = nodes
            .iter()
            .map(|n| (n.name_any(), n.uid().unwrap_or_default()))
            .collect();
        held.retain(|name, h| {
            if live.get(name) == Some(&h.uid) {
                return true;
            }
            if let Err(e) = alloc.release_cidrs(&h.cidrs) {
                tracing::debug!("node IPAM: releasing {:?} of {name}: {e}", h.cidrs);
            }
            false
        });
        for node in &nodes {
            let name = node.name_any();
            let uid = node.uid().unwrap_or_default();
            let cidrs = node_pod_cidrs(node);
            match held.get(&name) {
                // our patch is not in the cache yet, or nothing changed
                Some(h) if cidrs.is_empty() || h.cidrs == cidrs => continue,
                // the node's CIDRs differ from what we hold: follow the node
                Some(h) => {
                    let _ = alloc.release_cidrs(&h.cidrs);
                    held.remove(&name);
                }
                None => {}
            }
            if node.metadata.deletion_timestamp.is_some() && cidrs.is_empty() {
                continue;
            }
            match alloc.allocate_or_occupy(node) {
                Ok(NodeCidrOutcome::Occupied) => {
                    held.insert(name, Held { uid, cidrs });
                }
                Ok(NodeCidrOutcome::Patch {
                    pod_cidr,
                    pod_cidrs,
                }) => {
                    let patch = pod_cidr_patch(&pod_cidr, &pod_cidrs);
                    match api
                        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                        .await
                    {
                        Ok(_) => {
                            held.insert(
                                name,
                                Held {
                                    uid,
                                    cidrs: pod_cidrs,
                                },
                            );
                        }
                        Err(e) => {
                            let _ = alloc.release_cidrs(&pod_cidrs);
                            retry = true;
                            if !matches!(&e, kube::Error::Api(s) if s.code == 404) {
                                tracing::info!("node IPAM: setting pod CIDR of {name}: {e}");
                                recorder.record_ref(
                                    node_ref(node),
                                    Kind::Warning,
                                    "CIDRAssignmentFailed",
                                    &format!("Node {name} failed to update pod CIDRs: {e}"),
                                );
                            }
                        }
                    }
                }
                Ok(NodeCidrOutcome::NotAvailable { event, error }) => {
                    tracing::info!("node IPAM: {name}: {error}");
                    let kind = if event.type_ == "Warning" {
                        Kind::Warning
                    } else {
                        Kind::Normal
                    };
                    // retried when a node change (a deletion frees a block) wakes the loop
                    recorder.record_ref(node_ref(node), kind, event.reason, &event.message);
                }
                Err(e) => {
                    tracing::warn!("node IPAM: {name}: {e}");
                    // remember the node so an unusable CIDR is not retried forever
                    held.insert(name, Held { uid, cidrs });
                }
            }
        }
        armed.wait(if retry { RETRY } else { RESYNC }).await;
    }
}

fn held_for(n: &Node, cidrs: Vec<String>) -> Held {
    Held {
        uid: n.uid().unwrap_or_default(),
        cidrs,
    }
}

fn node_ref(node: &Node) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Node".into()),
        name: node.metadata.name.clone(),
        uid: node.metadata.uid.clone(),
        ..Default::default()
    }
}
