//! Per-namespace defaults: the `default` ServiceAccount and the
//! `kube-root-ca.crt` ConfigMap (key `ca.crt`, the cluster CA) in every
//! active namespace, recreated if deleted and corrected if edited.
//!
//! Invariant: never writes into a terminating namespace.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::PostParams;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt};

use super::{Context, Error, informers::Informer};

pub const ROOT_CA: &str = "kube-root-ca.crt";

/// The ConfigMap every namespace gets (pure).
pub fn root_ca_configmap(ns: &str, ca_pem: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(ROOT_CA.into()),
            namespace: Some(ns.into()),
            annotations: Some(BTreeMap::from([(
                "kubernetes.io/description".to_string(),
                "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.".to_string(),
            )])),
            ..Default::default()
        },
        data: Some(BTreeMap::from([("ca.crt".to_string(), ca_pem.to_string())])),
        ..Default::default()
    }
}

async fn reconcile(ns: Arc<Namespace>, ctx: Arc<Context>) -> Result<Action, Error> {
    let name = ns.name_any();
    let terminating = ns.metadata.deletion_timestamp.is_some()
        || ns.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Terminating");
    if terminating {
        return Ok(Action::await_change());
    }
    let pp = PostParams::default();
    let sa_key = ObjectRef::<ServiceAccount>::new("default").within(&name);
    if ctx.serviceaccounts.store().get(&sa_key).is_none() {
        let sa = ServiceAccount {
            metadata: ObjectMeta {
                name: Some("default".into()),
                namespace: Some(name.clone()),
                ..Default::default()
            },
            ..Default::default()
        };
        ignore_conflict(
            Api::namespaced(ctx.client.clone(), &name)
                .create(&pp, &sa)
                .await,
        )?;
    }
    let cm_key = ObjectRef::<ConfigMap>::new(ROOT_CA).within(&name);
    let want = root_ca_configmap(&name, &ctx.ca_pem);
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &name);
    match ctx.configmaps.store().get(&cm_key) {
        None => ignore_conflict(api.create(&pp, &want).await)?,
        Some(cm) if cm.data != want.data => {
            let mut fixed = (*cm).clone();
            fixed.data = want.data;
            ignore_conflict(api.replace(ROOT_CA, &pp, &fixed).await)?;
        }
        Some(_) => {}
    }
    Ok(Action::await_change())
}

fn ignore_conflict<T>(r: kube::Result<T>) -> Result<(), Error> {
    match r {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 || s.code == 403 || s.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Build the controller now (taking its subscriptions); run it when awaited.
pub fn run(
    ctx: Arc<Context>,
    namespaces: &Arc<Informer<Namespace>>,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let by_ns = |name: Option<String>| name.map(|n| ObjectRef::<Namespace>::new(&n));
    let controller = Controller::for_shared_stream(namespaces.subscribe(), namespaces.store())
        .watches_shared_stream(
            ctx.serviceaccounts.subscribe(),
            move |sa: Arc<ServiceAccount>| {
                (sa.name_any() == "default")
                    .then(|| by_ns(sa.namespace()))
                    .flatten()
            },
        )
        .watches_shared_stream(ctx.configmaps.subscribe(), move |cm: Arc<ConfigMap>| {
            (cm.name_any() == ROOT_CA)
                .then(|| by_ns(cm.namespace()))
                .flatten()
        });
    controller
        .run(reconcile, super::error_policy, ctx)
        .for_each(|_| futures::future::ready(()))
}
