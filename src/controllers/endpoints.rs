//! Endpoints controller: keeps the `Endpoints` object named like each
//! selector-bearing Service equal to the addresses of its selected pods.
//! The decision is `endpoints::plan`; this shell maps pod changes to the
//! Services that select (or selected) the pod and applies the plan.

pub mod plan;

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use kube::api::{DeleteParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, ResourceExt};

use super::{Context, Error, ignore_gone};

/// Services in the pod's namespace whose selector matches the pod.
pub fn services_for_pod(services: &Store<Service>, pod: &Pod) -> Vec<ObjectRef<Service>> {
    let ns = pod.namespace().unwrap_or_default();
    let empty = Default::default();
    let labels = pod.metadata.labels.as_ref().unwrap_or(&empty);
    services
        .state()
        .iter()
        .filter(|s| s.namespace().as_deref() == Some(ns.as_str()))
        .filter(|s| {
            s.spec
                .as_ref()
                .and_then(|sp| sp.selector.as_ref())
                .is_some_and(|sel| super::podutil::map_selector_matches(sel, labels))
        })
        .map(|s| ObjectRef::from_obj(&**s))
        .collect()
}

async fn reconcile(svc: Arc<Service>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ns = svc.namespace().unwrap_or_default();
    let name = svc.name_any();
    let pods = ctx.pods.in_namespace(&ns);
    let existing = ctx
        .endpoints
        .store()
        .get(&ObjectRef::new(&name).within(&ns));
    let api: Api<Endpoints> = Api::namespaced(ctx.client.clone(), &ns);
    let pp = PostParams::default();
    let action = if svc.metadata.deletion_timestamp.is_some() {
        plan::plan::<Arc<Pod>>(None, &[], existing.as_deref(), None)
    } else {
        plan::plan(Some(&svc), &pods, existing.as_deref(), None)
    };
    let res = match action {
        plan::EndpointsAction::Nothing => Ok(()),
        plan::EndpointsAction::Create(ep) => api.create(&pp, &ep).await.map(|_| ()),
        plan::EndpointsAction::Update(ep) => api.replace(&name, &pp, &ep).await.map(|_| ()),
        plan::EndpointsAction::Delete { name, .. } => api
            .delete(&name, &DeleteParams::default())
            .await
            .map(|_| ()),
    };
    if let Err(e) = ignore_gone(res) {
        let ev = plan::failed_write_event(&svc, existing.is_none(), &e.to_string());
        ctx.recorder
            .record(&*svc, super::events::Kind::Warning, &ev.reason, &ev.message);
        return Err(e);
    }
    Ok(Action::await_change())
}

pub fn run(ctx: Arc<Context>) -> impl std::future::Future<Output = ()> + Send + 'static {
    let services = ctx.services.store();
    let controller = Controller::for_shared_stream(ctx.services.subscribe(), ctx.services.store())
        .watches_shared_stream(ctx.pods.subscribe(), move |pod: Arc<Pod>| {
            services_for_pod(&services, &pod)
        })
        .watches_shared_stream(ctx.endpoints.subscribe(), |ep: Arc<Endpoints>| {
            Some(
                ObjectRef::<Service>::new(&ep.name_any())
                    .within(&ep.namespace().unwrap_or_default()),
            )
        });
    controller
        .run(reconcile, super::error_policy, ctx)
        .for_each(|_| futures::future::ready(()))
}
