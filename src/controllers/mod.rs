//! In-process controllers of `skiff server` (upstream kube-controller-manager)
//! and the shared machinery they use. Each controller is one file (its pure
//! "plan" in a `plan.rs` beside it) built on kube-runtime's `Controller`
//! over shared informers, talking to the API only through `kube::Client`.
//!
//! Invariant: everything here runs inside the `kube-controller-manager`
//! lease (see `leader`), so at most one server acts at a time.

pub mod cronjob;
pub mod daemonset;
pub mod deployment;
pub mod disruption;
pub mod endpoints;
pub mod endpointslice;
pub mod events;
pub mod eventttl;
pub mod expectations;
pub mod history;
pub mod hpa;
pub mod informers;
pub mod ipam;
pub mod job;
pub mod leader;
pub mod nodeipam;
pub mod nodelifecycle;
pub mod owned;
pub mod passloop;
pub mod podutil;
pub mod quota;
pub mod replicaset;
pub mod serviceaccount;
pub mod statefulset;
pub mod tokencleaner;
pub mod ttl;
pub mod volume;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{
    ConfigMap, Endpoints, Namespace, Node, Pod, ReplicationController, Service, ServiceAccount,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::runtime::controller::Action;
use tokio::task::JoinSet;

use informers::Informer;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Kube(#[from] kube::Error),
    #[error("{0}")]
    Other(String),
}

/// Settings the controllers take from the server configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub ca_pem: String,
    pub cluster_cidr: String,
    pub node_cidr_mask: u8,
    pub storage_dir: std::path::PathBuf,
    pub node_monitor_grace_period: Duration,
}

/// What every controller shares: the client, the recorder, the informers.
pub struct Context {
    pub client: kube::Client,
    pub recorder: events::Recorder,
    pub ca_pem: String,
    pub config: Config,
    pub pods: Arc<Informer<Pod>>,
    pub nodes: Arc<Informer<Node>>,
    pub serviceaccounts: Arc<Informer<ServiceAccount>>,
    pub configmaps: Arc<Informer<ConfigMap>>,
    pub services: Arc<Informer<Service>>,
    pub endpoints: Arc<Informer<Endpoints>>,
    pub endpointslices: Arc<Informer<EndpointSlice>>,
    pub replicasets: Arc<Informer<ReplicaSet>>,
    pub replicationcontrollers: Arc<Informer<ReplicationController>>,
    pub deployments: Arc<Informer<Deployment>>,
    pub jobs: Arc<Informer<Job>>,
    pub expectations: expectations::Expectations,
}

/// Write the whole `status` of namespaced object `name` (through the status
/// subresource) as a merge patch; an object that is already gone is not an
/// error. `previous` is the status the caller computed from: a field it had
/// that `status` no longer has (a count back to zero, which the API omits) is
/// sent as `null`, or the merge would keep the stale value.
pub async fn patch_status<K, S>(
    client: &kube::Client,
    ns: &str,
    name: &str,
    previous: Option<&S>,
    status: &S,
) -> Result<(), Error>
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    S: serde::Serialize,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    let to_value = |v: &S| serde_json::to_value(v).map_err(|e| Error::Other(e.to_string()));
    let previous = previous.map(to_value).transpose()?;
    let patch = serde_json::json!({ "status": status_merge(previous.as_ref(), to_value(status)?) });
    ignore_gone(
        api.patch_status(
            name,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await,
    )
}

/// `status` plus a `null` for each top-level field of `previous` it lacks.
fn status_merge(
    previous: Option<&serde_json::Value>,
    mut status: serde_json::Value,
) -> serde_json::Value {
    if let (Some(serde_json::Value::Object(prev)), serde_json::Value::Object(cur)) =
        (previous, &mut status)
    {
        for k in prev.keys() {
            cur.entry(k.clone()).or_insert(serde_json::Value::Null);
        }
    }
    status
}

/// Treat "already gone" (404) as success: the goal state is reached.
pub fn ignore_gone<T>(r: kube::Result<T>) -> Result<(), Error> {
    match r {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Requeue a failed reconcile with a short delay (the runtime adds backoff
/// on top through its scheduler).
pub fn error_policy<K>(_obj: Arc<K>, err: &Error, _ctx: Arc<Context>) -> Action {
    tracing::debug!("reconcile failed: {err}");
    Action::requeue(Duration::from_millis(500))
}

/// Run every controller until the future is dropped (the leader lease is lost).
pub async fn run_all(client: kube::Client, config: Config, shared: informers::Shared) {
    let ctx = Arc::new(Context {
        recorder: events::Recorder::new(client.clone(), "kube-controller-manager"),
        ca_pem: config.ca_pem.clone(),
        pods: shared.pods.clone(),
        nodes: shared.nodes.clone(),
        serviceaccounts: Informer::new(Api::all(client.clone())),
        configmaps: Informer::new(Api::all(client.clone())),
        services: Informer::new(Api::all(client.clone())),
        endpoints: Informer::new(Api::all(client.clone())),
        endpointslices: Informer::new(Api::all(client.clone())),
        replicasets: Informer::new(Api::all(client.clone())),
        replicationcontrollers: Informer::new(Api::all(client.clone())),
        deployments: Informer::new(Api::all(client.clone())),
        jobs: Informer::new(Api::all(client.clone())),
        expectations: Default::default(),
        config,
        client: client.clone(),
    });
    let namespaces: Arc<Informer<Namespace>> = Informer::new(Api::all(client.clone()));
    let mut set = JoinSet::new();
    set.spawn(serviceaccount::run(ctx.clone(), &namespaces));
    set.spawn(endpoints::run(ctx.clone()));
    set.spawn(endpointslice::run(ctx.clone()));
    set.spawn(replicaset::run_replicasets(ctx.clone()));
    set.spawn(replicaset::run_replicationcontrollers(ctx.clone()));
    set.spawn(deployment::run(ctx.clone()));
    set.spawn(hpa::run(ctx.clone()));
    set.spawn(disruption::run(ctx.clone()));
    set.spawn(quota::run(ctx.clone()));
    set.spawn(statefulset::run(ctx.clone()));
    set.spawn(daemonset::run(ctx.clone()));
    set.spawn(job::run(ctx.clone()));
    set.spawn(cronjob::run(ctx.clone()));
    set.spawn(ttl::run(ctx.clone()));
    set.spawn(eventttl::run(ctx.clone()));
    set.spawn(nodelifecycle::run(ctx.clone()));
    set.spawn(nodeipam::run(ctx.clone()));
    set.spawn(volume::run(ctx.clone()));
    set.spawn(tokencleaner::run(ctx.clone()));
    // informers start after every controller has subscribed
    set.spawn(run_forever(namespaces.start()));
    set.spawn(run_forever(ctx.serviceaccounts.start()));
    set.spawn(run_forever(ctx.configmaps.start()));
    set.spawn(run_forever(ctx.services.start()));
    set.spawn(run_forever(ctx.endpoints.start()));
    set.spawn(run_forever(ctx.endpointslices.start()));
    set.spawn(run_forever(ctx.replicasets.start()));
    set.spawn(run_forever(ctx.replicationcontrollers.start()));
    set.spawn(run_forever(ctx.deployments.start()));
    set.spawn(run_forever(ctx.jobs.start()));
    while set.join_next().await.is_some() {}
}

pub async fn run_forever(h: tokio::task::JoinHandle<()>) {
    struct AbortOnDrop(tokio::task::JoinHandle<()>);
    impl Drop for AbortOnDrop {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
    let mut g = AbortOnDrop(h);
    let _ = (&mut g.0).await;
}

#[cfg(test)]
mod status_merge_tests {
    use serde_json::json;

    #[test]
    fn a_field_gone_back_to_zero_is_sent_as_null() {
        let prev = json!({"replicas": 5, "updatedReplicas": 5, "observedGeneration": 7});
        let cur = json!({"replicas": 5, "observedGeneration": 8});
        assert_eq!(
            super::status_merge(Some(&prev), cur),
            json!({"replicas": 5, "updatedReplicas": null, "observedGeneration": 8})
        );
    }

    #[test]
    fn no_previous_status_sends_the_status_as_is() {
        let cur = json!({"replicas": 1});
        assert_eq!(super::status_merge(None, cur.clone()), cur);
        assert_eq!(super::status_merge(Some(&json!(null)), cur.clone()), cur);
    }
}
