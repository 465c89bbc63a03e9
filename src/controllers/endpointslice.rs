//! EndpointSlice controller: the `discovery.k8s.io/v1` slices of each
//! selector-bearing Service (at most 100 endpoints each), following pod
//! readiness, serving and terminating state. Decisions are
//! `endpointslice::plan`; this shell gathers the inputs and applies them.

pub mod plan;

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{DeleteParams, PostParams, Preconditions};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt};

use super::{Context, Error, ignore_gone};

async fn reconcile(svc: Arc<Service>, ctx: Arc<Context>) -> Result<Action, Error> {
    if svc.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let ns = svc.namespace().unwrap_or_default();
    let name = svc.name_any();
    let pods = ctx.pods.in_namespace(&ns);
    let nodes = ctx.nodes.store().state();
    let existing: Vec<EndpointSlice> = ctx
        .endpointslices
        .in_namespace(&ns)
        .iter()
        .filter(|s| s.labels().get(plan::SERVICE_NAME_LABEL) == Some(&name))
        .map(|s| (**s).clone())
        .collect();
    let out = plan::plan(&plan::SliceInput {
        service: &svc,
        pods: &pods,
        nodes: &nodes,
        existing: &existing,
        trigger_time: None,
        max_endpoints_per_slice: plan::DEFAULT_MAX_ENDPOINTS_PER_SLICE,
    });
    let api: Api<EndpointSlice> = Api::namespaced(ctx.client.clone(), &ns);
    let pp = PostParams::default();
    for action in out.actions {
        let res = match action {
            plan::SliceAction::Create(s) => api.create(&pp, &s).await.map(|_| ()),
            plan::SliceAction::Update(s) => api.replace(&s.name_any(), &pp, &s).await.map(|_| ()),
            plan::SliceAction::Delete { name, uid } => {
                let dp = DeleteParams {
                    preconditions: uid.map(|uid| Preconditions {
                        uid: Some(uid),
                        resource_version: None,
                    }),
                    ..Default::default()
                };
                api.delete(&name, &dp).await.map(|_| ())
            }
        };
        ignore_gone(res)?;
    }
    if !out.errors.is_empty() {
        let ev = plan::failed_sync_event(&svc, &out.errors);
        ctx.recorder
            .record(&*svc, super::events::Kind::Warning, &ev.reason, &ev.message);
        return Ok(Action::requeue(std::time::Duration::from_secs(5)));
    }
    Ok(Action::await_change())
}

pub fn run(ctx: Arc<Context>) -> impl std::future::Future<Output = ()> + Send + 'static {
    let services = ctx.services.store();
    let controller = Controller::for_shared_stream(ctx.services.subscribe(), ctx.services.store())
        .watches_shared_stream(ctx.pods.subscribe(), move |pod: Arc<Pod>| {
            super::endpoints::services_for_pod(&services, &pod)
        })
        .watches_shared_stream(ctx.endpointslices.subscribe(), |s: Arc<EndpointSlice>| {
            s.labels()
                .get(plan::SERVICE_NAME_LABEL)
                .map(|n| ObjectRef::<Service>::new(n).within(&s.namespace().unwrap_or_default()))
        });
    controller
        .run(reconcile, super::error_policy, ctx)
        .for_each(|_| futures::future::ready(()))
}
