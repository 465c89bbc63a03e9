//! TTL-after-finished controller (upstream `pkg/controller/ttlafterfinished`):
//! deletes a finished Job once `spec.ttlSecondsAfterFinished` has passed since
//! its `Complete`/`Failed` condition, with foreground propagation so its pods
//! go first. The decision is `job::plan::ttl_expired`; before deleting, the
//! Job is read fresh and judged again (the TTL may have been changed), and
//! the delete carries its uid and resourceVersion as preconditions.

use std::sync::Arc;

use chrono::Utc;
use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use kube::api::{DeleteParams, Preconditions, PropagationPolicy};
use kube::runtime::controller::{Action, Controller};
use kube::{Api, ResourceExt};

use super::job::plan::{TtlAction, ttl_expired};
use super::{Context, Error};

fn wait(action: Option<TtlAction>) -> Action {
    match action {
        Some(TtlAction::RequeueAfter(d)) => Action::requeue(d),
        _ => Action::await_change(),
    }
}

async fn reconcile(cached: Arc<Job>, ctx: Arc<Context>) -> Result<Action, Error> {
    let decision = ttl_expired(&cached, Utc::now());
    if decision != Some(TtlAction::Delete) {
        return Ok(wait(decision));
    }
    let api: Api<Job> =
        Api::namespaced(ctx.client.clone(), &cached.namespace().unwrap_or_default());
    let Some(job) = api.get_opt(&cached.name_any()).await? else {
        return Ok(Action::await_change());
    };
    let decision = ttl_expired(&job, Utc::now());
    if decision != Some(TtlAction::Delete) {
        return Ok(wait(decision));
    }
    let dp = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Foreground),
        preconditions: Some(Preconditions {
            uid: job.metadata.uid.clone(),
            resource_version: job.metadata.resource_version.clone(),
        }),
        ..Default::default()
    };
    match api.delete(&job.name_any(), &dp).await {
        Ok(_) => Ok(Action::await_change()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(Action::await_change()),
        Err(e) => Err(e.into()),
    }
}

pub fn run(ctx: Arc<Context>) -> impl std::future::Future<Output = ()> + Send + 'static {
    Controller::for_shared_stream(ctx.jobs.subscribe(), ctx.jobs.store())
        .run(reconcile, super::error_policy, ctx)
        .for_each(|_| futures::future::ready(()))
}
