//! Job controller (upstream `pkg/controller/job`): runs each Job's pods to
//! completion. Decisions come from `job::plan`; this shell reads the Job
//! fresh from the API (the two-phase counting through
//! `status.uncountedTerminatedPods` and the `batch.kubernetes.io/job-tracking`
//! finalizer must never see an older status than it wrote), takes the pods
//! from the shared informer gated by expectations (keyed by Job uid, so a
//! lagging cache never creates or deletes twice), applies the actions in
//! order and stops at the first failure.
//!
//! A second loop watches pods for the tracking finalizer on pods whose Job is
//! gone or finished (or that have no controller at all) and removes it, so
//! such pods can always be deleted (upstream orphan pod sync).
//!
//! The Job informer lives in `Context::jobs` (shared with the CronJob and
//! TTL-after-finished controllers).

pub mod plan;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures::{Stream, StreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt};
use serde_json::json;

use super::events::Kind;
use super::{Context, Error, ignore_gone, podutil};
use plan::{JobAction, TRACKING_FINALIZER};

fn record(ctx: &Context, job: &Job, ev: &plan::Event) {
    let kind = if ev.type_ == "Warning" {
        Kind::Warning
    } else {
        Kind::Normal
    };
    ctx.recorder.record(job, kind, &ev.reason, &ev.message);
}

fn uid_precondition(uid: &str) -> DeleteParams {
    DeleteParams {
        preconditions: Some(Preconditions {
            uid: Some(uid.to_string()),
            resource_version: None,
        }),
        ..Default::default()
    }
}

/// Strategic merge patch removing the tracking finalizer (upstream
/// `removeTrackingFinalizerPatch`), with the pod uid as precondition.
fn remove_finalizer_patch(uid: &str) -> serde_json::Value {
    json!({"metadata": {
        "$deleteFromPrimitiveList/finalizers": [TRACKING_FINALIZER],
        "uid": uid,
    }})
}

async fn remove_finalizer(api: &Api<Pod>, name: &str, uid: &str) -> Result<(), Error> {
    let r = api
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Strategic(&remove_finalizer_patch(uid)),
        )
        .await;
    match r {
        // a pod of the same name but another uid is not ours to touch
        Err(kube::Error::Api(s)) if s.code == 409 || s.code == 422 => Ok(()),
        other => ignore_gone(other),
    }
}

async fn reconcile(cached: Arc<Job>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ns = cached.namespace().unwrap_or_default();
    let name = cached.name_any();
    let api: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    // Counting needs the status this controller last wrote, not the cache's.
    let Some(job) = api.get_opt(&name).await? else {
        if let Some(uid) = &cached.metadata.uid {
            ctx.expectations.forget(uid);
        }
        return Ok(Action::await_change());
    };
    let uid = job.metadata.uid.clone().unwrap_or_default();
    let now = Utc::now();
    let in_ns = ctx.pods.in_namespace(&ns);
    if plan::is_finished(&job) {
        ctx.expectations.forget(&uid);
    } else {
        let seen = |n: &str| {
            in_ns
                .iter()
                .find(|p| p.metadata.name.as_deref() == Some(n))
                .map(|p| p.metadata.deletion_timestamp.is_some())
        };
        if !ctx.expectations.satisfied(&uid, now, seen) {
            // the pod watch wakes us as soon as the cache catches up
            return Ok(Action::requeue(Duration::from_secs(1)));
        }
    }
    let pods: Vec<Pod> = in_ns
        .iter()
        .filter(|p| podutil::controller_ref(&p.metadata).is_none_or(|r| r.uid == uid))
        .map(|p| (**p).clone())
        .collect();
    let out = plan::plan(&job, &pods, now);
    let pod_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let mut actions = out.actions.into_iter().peekable();
    while let Some(action) = actions.next() {
        match action {
            JobAction::AdoptPod { name, uid, owner } => {
                let patch = json!({"metadata": {
                    "ownerReferences": [owner],
                    "finalizers": [TRACKING_FINALIZER],
                    "uid": uid,
                }});
                ignore_gone(
                    pod_api
                        .patch(&name, &PatchParams::default(), &Patch::Strategic(&patch))
                        .await,
                )?;
            }
            JobAction::ReleasePod {
                name,
                uid,
                owner_uid,
            } => {
                let patch = json!({"metadata": {
                    "ownerReferences": [{"$patch": "delete", "uid": owner_uid}],
                    "uid": uid,
                }});
                ignore_gone(
                    pod_api
                        .patch(&name, &PatchParams::default(), &Patch::Strategic(&patch))
                        .await,
                )?;
            }
            JobAction::UpdateStatus(status) => {
                let mut j = job.clone();
                j.status = Some(*status);
                match api.replace_status(&name, &PostParams::default(), &j).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(s)) if s.code == 404 => {
                        return Ok(Action::await_change());
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            JobAction::RemoveFinalizer { name, uid } => {
                remove_finalizer(&pod_api, &name, &uid).await?;
            }
            JobAction::DeletePod { name, uid: pod_uid } => {
                ctx.expectations.deleted(&uid, name.clone(), now);
                if let Err(e) =
                    ignore_gone(pod_api.delete(&name, &uid_precondition(&pod_uid)).await)
                {
                    ctx.expectations.forget(&uid);
                    return Err(e);
                }
            }
            JobAction::CreatePod(first) => {
                let mut batch = vec![*first];
                while let Some(JobAction::CreatePod(_)) = actions.peek() {
                    if let Some(JobAction::CreatePod(p)) = actions.next() {
                        batch.push(*p);
                    }
                }
                create_pods(&ctx, &job, &uid, &pod_api, batch).await?;
            }
            JobAction::Event(ev) => record(&ctx, &job, &ev),
        }
    }
    Ok(match out.requeue_after {
        Some(d) => Action::requeue(d),
        None => Action::await_change(),
    })
}

/// Creates pods in slow-start batches (1, 2, 4, …), stopping after the
/// first batch with a failure. Each created pod becomes an expectation.
async fn create_pods(
    ctx: &Context,
    job: &Job,
    job_uid: &str,
    api: &Api<Pod>,
    pods: Vec<Pod>,
) -> Result<(), Error> {
    let now = Utc::now();
    let mut remaining = pods.into_iter();
    let pp = PostParams::default();
    for size in super::replicaset::plan::slow_start_batches(remaining.len()) {
        let batch: Vec<Pod> = remaining.by_ref().take(size).collect();
        let results = futures::future::join_all(batch.iter().map(|p| api.create(&pp, p))).await;
        let mut failure = None;
        for r in results {
            match r {
                Ok(p) => {
                    let name = p.name_any();
                    ctx.expectations.created(job_uid, name.clone(), now);
                    record(ctx, job, &plan::created_pod_event(&name));
                }
                Err(e) => {
                    record(ctx, job, &plan::failed_create_event(&e.to_string()));
                    failure = Some(e);
                }
            }
        }
        if let Some(e) = failure {
            return Err(e.into());
        }
    }
    Ok(())
}

fn has_tracking_finalizer(pod: &Pod) -> bool {
    pod.metadata
        .finalizers
        .as_ref()
        .is_some_and(|f| f.iter().any(|x| x == TRACKING_FINALIZER))
}

/// Whether the pod's tracking finalizer should go: no controller at all, or
/// a Job controller that is gone or finished (confirmed against the API).
async fn orphan_needs_removal(ctx: &Context, pod: &Pod) -> Result<bool, Error> {
    let Some(r) = podutil::controller_ref(&pod.metadata) else {
        return Ok(true);
    };
    if r.kind != "Job" || !r.api_version.starts_with("batch/") {
        return Ok(false);
    }
    let ns = pod.namespace().unwrap_or_default();
    let api: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    let job = api
        .get_opt(&r.name)
        .await?
        .filter(|j| j.metadata.uid.as_deref() == Some(&r.uid));
    if let Some(j) = &job
        && j.spec
            .as_ref()
            .and_then(|s| s.managed_by.as_deref())
            .is_some_and(|m| m != plan::JOB_CONTROLLER_NAME)
    {
        return Ok(false);
    }
    Ok(plan::orphan_needs_finalizer_removal(pod, job.as_ref()))
}

/// Cheap pre-filter on the cache: could this pod's finalizer be orphaned?
fn maybe_orphan(ctx: &Context, pod: &Pod) -> bool {
    if !has_tracking_finalizer(pod) {
        return false;
    }
    let Some(r) = podutil::controller_ref(&pod.metadata) else {
        return true;
    };
    if r.kind != "Job" {
        return false;
    }
    let ns = pod.namespace().unwrap_or_default();
    let job = ctx
        .jobs
        .store()
        .get(&ObjectRef::new(&r.name).within(&ns))
        .filter(|j| j.metadata.uid.as_deref() == Some(&r.uid));
    // a cached unfinished Job handles its own pods
    job.is_none_or(|j| plan::is_finished(&j))
}

/// Removes the tracking finalizer from pods whose Job is gone or finished.
async fn orphan_pods(
    ctx: Arc<Context>,
    mut pods: impl Stream<Item = Arc<Pod>> + Send + Unpin + 'static,
) {
    // pod uids being handled; the work runs inside this future so it stops
    // with the leader lease
    let mut inflight: HashSet<String> = HashSet::new();
    let mut work = futures::stream::FuturesUnordered::new();
    loop {
        tokio::select! {
            seen = pods.next() => {
                let Some(seen) = seen else { return };
                // judge the latest cached version, not an older side of an update
                let Some(pod) = ctx.pods.store().get(&ObjectRef::from_obj(&*seen)) else {
                    continue;
                };
                if !maybe_orphan(&ctx, &pod) {
                    continue;
                }
                let uid = pod.metadata.uid.clone().unwrap_or_default();
                if inflight.insert(uid.clone()) {
                    work.push(release_orphan(ctx.clone(), pod, uid));
                }
            }
            Some(uid) = work.next(), if !work.is_empty() => {
                inflight.remove(&uid);
            }
        }
    }
}

/// Removes the tracking finalizer of one orphan, retrying with backoff;
/// returns the pod uid.
async fn release_orphan(ctx: Arc<Context>, pod: Arc<Pod>, uid: String) -> String {
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &pod.namespace().unwrap_or_default());
    let mut delay = Duration::from_millis(500);
    for _ in 0..8 {
        let r = match orphan_needs_removal(&ctx, &pod).await {
            Ok(true) => remove_finalizer(&api, &pod.name_any(), &uid).await,
            Ok(false) => Ok(()),
            Err(e) => Err(e),
        };
        match r {
            Ok(()) => break,
            Err(e) => tracing::debug!("orphan pod {}: {e}", pod.name_any()),
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(30));
    }
    uid
}

pub fn run(ctx: Arc<Context>) -> impl std::future::Future<Output = ()> + Send + 'static {
    let jobs = ctx.jobs.clone();
    let controller = Controller::for_shared_stream(ctx.jobs.subscribe(), ctx.jobs.store())
        .watches_shared_stream(ctx.pods.subscribe(), move |pod: Arc<Pod>| {
            jobs.owners_of(&pod.metadata, |j, labels| {
                j.spec
                    .as_ref()
                    .and_then(|s| s.selector.as_ref())
                    .is_some_and(|s| podutil::selector_matches(s, labels))
            })
        })
        .run(reconcile, super::error_policy, ctx.clone())
        .for_each(|_| futures::future::ready(()));
    // pod changes, plus the pods of a Job that disappeared from the cache
    let c = ctx.clone();
    let job_changes = ctx.jobs.subscribe().boxed();
    let gone_jobs = job_changes.flat_map(move |job: Arc<Job>| {
        let pods = if c.jobs.store().get(&ObjectRef::from_obj(&*job)).is_none() {
            let uid = job.metadata.uid.clone().unwrap_or_default();
            c.pods
                .in_namespace(&job.namespace().unwrap_or_default())
                .into_iter()
                .filter(|p| podutil::controller_ref(&p.metadata).is_some_and(|r| r.uid == uid))
                .collect()
        } else {
            Vec::new()
        };
        futures::stream::iter(pods)
    });
    let pod_changes = ctx.pods.subscribe().boxed();
    let orphans = orphan_pods(ctx.clone(), futures::stream::select(pod_changes, gone_jobs));
    async move {
        futures::future::join(controller, orphans).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finalizer_patch_names_uid_and_finalizer() {
        let p = remove_finalizer_patch("u1");
        assert_eq!(p["metadata"]["uid"], "u1");
        assert_eq!(
            p["metadata"]["$deleteFromPrimitiveList/finalizers"],
            json!([TRACKING_FINALIZER])
        );
    }
}
