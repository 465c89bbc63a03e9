//! Node lifecycle controller (upstream `nodelifecycle` + taint-eviction +
//! `podgc`): one loop that recomputes `nodelifecycle::plan` over all nodes
//! and node leases on any change of them (debounced) and at the plan's
//! `requeue_after`, and applies its actions in order. Pods are kept in a
//! [`PodIndex`] fed by the pod subscription; a pod change wakes the loop
//! only when it concerns a pass, and a pass looks only at the pods its
//! `PodScope` names (so 10,000 pods bound one by one cost no passes).
//!
//! Invariant: actions are applied in the plan's order; the first failed node
//! or pod write ends the batch (the next pass, soon after, recomputes what is
//! still needed). Own writes are laid over the caches (`passloop::Overlay`)
//! so a lagging watch never repeats them.

pub mod plan;
pub mod podindex;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures::{FutureExt, Stream, StreamExt};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt};
use podindex::{NodeFacts, PodIndex};
use serde_json::json;

use super::events::{Kind, Recorder};
use super::informers::Informer;
use super::passloop::{DEBOUNCE, Overlay, Waker, wait_ready};
use super::{Context, run_forever};

/// Pause before retrying after a failed write.
const RETRY: Duration = Duration::from_secs(1);

pub fn run(ctx: Arc<Context>) -> impl std::future::Future<Output = ()> + Send + 'static {
    let leases: Arc<Informer<Lease>> = Informer::new(Api::namespaced(
        ctx.client.clone(),
        plan::NODE_LEASE_NAMESPACE,
    ));
    async move {
        // polled here, not spawned, so the informer dies with this future
        let informer = run_forever(leases.start());
        futures::future::join(informer, run_loop(ctx, leases)).await;
    }
}

struct Shell {
    ctx: Arc<Context>,
    node_recorder: Recorder,
    eviction_recorder: Recorder,
    nodes: Overlay<Node>,
    pods: Overlay<Pod>,
    /// Every pod, by node; fed by the pod subscription.
    index: PodIndex,
    /// What the last pass knew of nodes (which pod changes matter).
    facts: NodeFacts,
}

async fn run_loop(ctx: Arc<Context>, leases: Arc<Informer<Lease>>) {
    wait_ready(&ctx.nodes.store()).await;
    wait_ready(&ctx.pods.store()).await;
    wait_ready(&leases.store()).await;
    let cfg = plan::Config {
        node_monitor_grace_period: chrono::Duration::from_std(ctx.config.node_monitor_grace_period)
            .unwrap_or(chrono::Duration::seconds(40)),
        ..Default::default()
    };
    // pods are not a wake-up source: their changes come through `pod_changes`
    // and wake the loop only when they concern a pass (`PodIndex::apply`)
    let waker = Waker::new(vec![ctx.nodes.notifier(), leases.notifier()]);
    let mut pod_changes = ctx.pods.subscribe().boxed();
    let mut shell = Shell {
        node_recorder: Recorder::new(ctx.client.clone(), plan::COMPONENT_NODE_CONTROLLER),
        eviction_recorder: Recorder::new(ctx.client.clone(), plan::COMPONENT_TAINT_EVICTION),
        nodes: Overlay::default(),
        pods: Overlay::default(),
        index: PodIndex::default(),
        facts: NodeFacts::default(),
        ctx,
    };
    let mut state = plan::State::default();
    loop {
        let armed = waker.arm();
        shell.take_pod_changes(&mut pod_changes, &cfg, None);
        let nodes = shell.nodes.merge(shell.ctx.nodes.store().state());
        let lease_objs = leases.store().state();
        let node_refs: Vec<&Node> = nodes.iter().map(|n| &**n).collect();
        let lease_refs: Vec<&Lease> = lease_objs.iter().map(|l| &**l).collect();
        let mut facts = NodeFacts::default();
        let (index, overlay) = (&shell.index, &mut shell.pods);
        let out = plan::plan_scoped(
            &node_refs,
            &lease_refs,
            &mut state,
            &cfg,
            Utc::now(),
            |scope| {
                facts = NodeFacts::from_scope(
                    scope,
                    node_refs.iter().filter_map(|n| n.metadata.name.clone()),
                );
                overlay.merge_subset(index.select(scope))
            },
        );
        shell.facts = facts;
        let mut wait = out
            .requeue_after
            .and_then(|d| d.to_std().ok())
            .unwrap_or(Duration::from_secs(5));
        if let Err(e) = shell.apply(out.actions).await {
            tracing::debug!("node lifecycle: {e}");
            wait = wait.min(RETRY);
        }
        // a deadline just passed: give the clock a moment so the pass sees it expired
        let deadline = tokio::time::Instant::now() + wait.max(Duration::from_millis(10));
        let changed = armed.wait(wait.max(Duration::from_millis(10)));
        tokio::pin!(changed);
        loop {
            tokio::select! {
                _ = &mut changed => break,
                Some(p) = pod_changes.next() => {
                    if shell.take_pod_changes(&mut pod_changes, &cfg, Some(p)) {
                        let soon = tokio::time::Instant::now() + DEBOUNCE;
                        tokio::time::sleep_until(soon.min(deadline)).await;
                        break;
                    }
                }
            }
        }
    }
}

impl Shell {
    /// Applies `first` and every pod change already waiting to the index;
    /// true when one of them concerns a pass.
    fn take_pod_changes(
        &mut self,
        changes: &mut (impl Stream<Item = Arc<Pod>> + Unpin),
        cfg: &plan::Config,
        first: Option<Arc<Pod>>,
    ) -> bool {
        let store = self.ctx.pods.store();
        let mut wake = false;
        let mut next = first;
        loop {
            let seen = match next.take() {
                Some(p) => p,
                None => match changes.next().now_or_never() {
                    Some(Some(p)) => p,
                    _ => break,
                },
            };
            let ns = seen.metadata.namespace.clone().unwrap_or_default();
            let name = seen.metadata.name.clone().unwrap_or_default();
            let current = store.get(&ObjectRef::new(&name).within(&ns));
            wake |= self.index.apply(
                (ns, name),
                current,
                &self.facts,
                cfg.terminated_pod_threshold,
            );
        }
        wake
    }

    /// Applies the actions in order. A failed write skips the later writes
    /// of the same node or pod (their preconditions no longer hold) and is
    /// reported at the end, so one stuck object does not block the others.
    async fn apply(&mut self, actions: Vec<plan::Action>) -> Result<(), kube::Error> {
        let client = self.ctx.client.clone();
        let node_api: Api<Node> = Api::all(client.clone());
        // resourceVersion of nodes this batch wrote
        let mut written: HashMap<String, String> = HashMap::new();
        let mut failed_nodes: HashSet<String> = HashSet::new();
        let mut failed_pods: HashSet<(String, String)> = HashSet::new();
        let mut first_err = None;
        for action in actions {
            match action {
                plan::Action::UpdateNodeStatus(node) => {
                    let name = node.name_any();
                    match node_api
                        .replace_status(&name, &PostParams::default(), &*node)
                        .await
                    {
                        Ok(n) => {
                            written.insert(name, n.resource_version().unwrap_or_default());
                            self.nodes.written(n);
                        }
                        Err(e) => {
                            failed_nodes.insert(name);
                            first_err.get_or_insert(e);
                        }
                    }
                }
                plan::Action::SetNodeTaints {
                    node,
                    resource_version,
                    taints,
                } => {
                    if failed_nodes.contains(&node) {
                        continue;
                    }
                    let rv = written.get(&node).cloned().or(resource_version);
                    let patch = json!({
                        "metadata": { "resourceVersion": rv },
                        "spec": { "taints": taints },
                    });
                    match node_api
                        .patch(&node, &PatchParams::default(), &Patch::Merge(&patch))
                        .await
                    {
                        Ok(n) => {
                            written.insert(node, n.resource_version().unwrap_or_default());
                            self.nodes.written(n);
                        }
                        Err(e) => {
                            failed_nodes.insert(node);
                            first_err.get_or_insert(e);
                        }
                    }
                }
                plan::Action::UpdatePodStatus(pod) => {
                    let ns = pod.namespace().unwrap_or_default();
                    let name = pod.name_any();
                    let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
                    match api
                        .replace_status(&name, &PostParams::default(), &*pod)
                        .await
                    {
                        Ok(p) => self.pods.written(p),
                        Err(kube::Error::Api(s)) if s.code == 404 => {}
                        Err(e) => {
                            failed_pods.insert((ns, name));
                            first_err.get_or_insert(e);
                        }
                    }
                }
                plan::Action::DeletePod {
                    namespace,
                    name,
                    uid,
                    grace_period_seconds,
                } => {
                    if failed_pods.contains(&(namespace.clone(), name.clone())) {
                        continue;
                    }
                    let api: Api<Pod> = Api::namespaced(client.clone(), &namespace);
                    let dp = DeleteParams {
                        grace_period_seconds: grace_period_seconds.map(|g| g.max(0) as u32),
                        preconditions: uid.clone().map(|u| Preconditions {
                            uid: Some(u),
                            resource_version: None,
                        }),
                        ..Default::default()
                    };
                    match api.delete(&name, &dp).await {
                        Ok(res) => match res.left() {
                            Some(p) => self.pods.written(p),
                            None => self.pods.deleted(&namespace, &name, uid),
                        },
                        // gone, or replaced by another pod of the same name
                        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {
                            self.pods.deleted(&namespace, &name, uid)
                        }
                        Err(e) => {
                            first_err.get_or_insert(e);
                        }
                    }
                }
                plan::Action::Event(ev) => {
                    let recorder = if ev.component == plan::COMPONENT_TAINT_EVICTION {
                        &self.eviction_recorder
                    } else {
                        &self.node_recorder
                    };
                    let kind = if ev.type_ == "Warning" {
                        Kind::Warning
                    } else {
                        Kind::Normal
                    };
                    recorder.record_ref(ev.regarding, kind, ev.reason, &ev.message);
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}
