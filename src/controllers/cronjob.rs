//! CronJob controller (upstream `cronjob_controllerv2.go`): creates a Job
//! per scheduled time, keeps `status.active` / `lastScheduleTime` /
//! `lastSuccessfulTime`, applies the concurrency policy and prunes finished
//! Jobs beyond the history limits. Decisions come from `cronjob::plan`; this
//! shell applies them in order, stops at the first failure and requeues for
//! the next activation.
//!
//! Jobs for a scheduled time have a deterministic name, so a lagging Job
//! cache can never start a time twice (the create answers AlreadyExists and
//! the plan's `job_created` adopts the existing Job into `status.active`);
//! status writes carry the CronJob's resourceVersion, so a stale CronJob
//! fails with Conflict and is retried.
//!
//! Time zone when neither `spec.timeZone` nor a `TZ=` prefix is given: the
//! server's local zone (`TZ`, else the `/etc/localtime` link), else UTC.

pub mod plan;

use std::sync::{Arc, OnceLock};

use chrono::Utc;
use chrono_tz::Tz;
use futures::StreamExt;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use kube::api::{DeleteParams, PostParams, Preconditions, PropagationPolicy};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt};

use super::events::Kind;
use super::informers::Informer;
use super::{Context, Error, ignore_gone, podutil};
use plan::CronJobAction;

/// The zone named by a `TZ` value (leading `:` allowed) or the target of
/// the `/etc/localtime` link (`…/zoneinfo/Area/City`); UTC otherwise.
pub fn local_zone(tz_env: Option<&str>, localtime_link: Option<&str>) -> Tz {
    if let Some(v) = tz_env
        && let Ok(tz) = v.trim_start_matches(':').parse::<Tz>()
    {
        return tz;
    }
    if let Some(link) = localtime_link
        && let Some(i) = link.find("zoneinfo/")
        && let Ok(tz) = link[i + "zoneinfo/".len()..].parse::<Tz>()
    {
        return tz;
    }
    Tz::UTC
}

fn default_zone() -> Tz {
    static ZONE: OnceLock<Tz> = OnceLock::new();
    *ZONE.get_or_init(|| {
        let env = std::env::var("TZ").ok();
        let link = std::fs::read_link("/etc/localtime")
            .ok()
            .map(|p| p.to_string_lossy().into_owned());
        local_zone(env.as_deref(), link.as_deref())
    })
}

fn record(ctx: &Context, cj: &CronJob, ev: &super::job::plan::Event) {
    let kind = if ev.type_ == "Warning" {
        Kind::Warning
    } else {
        Kind::Normal
    };
    ctx.recorder.record(cj, kind, &ev.reason, &ev.message);
}

fn owned_by(job: &Job, uid: &str) -> bool {
    podutil::controller_ref(&job.metadata).is_some_and(|r| r.uid == uid)
}

async fn reconcile(cached: Arc<CronJob>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ns = cached.namespace().unwrap_or_default();
    let name = cached.name_any();
    let api: Api<CronJob> = Api::namespaced(ctx.client.clone(), &ns);
    // the status this controller last wrote (a stale `active` list would
    // report the Job just created as unexpected)
    let Some(cj) = api.get_opt(&name).await? else {
        return Ok(Action::await_change());
    };
    let uid = cj.metadata.uid.clone().unwrap_or_default();
    let mut jobs: Vec<Job> = ctx
        .jobs
        .in_namespace(&ns)
        .iter()
        .filter(|j| owned_by(j, &uid))
        .map(|j| (**j).clone())
        .collect();
    let job_api: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    // Active Jobs the cache does not show yet are read from the API, so a
    // slow watch never reports them missing (upstream does the same).
    let refs = cj
        .status
        .as_ref()
        .and_then(|s| s.active.clone())
        .unwrap_or_default();
    for r in refs {
        if jobs.iter().any(|j| j.metadata.uid == r.uid) {
            continue;
        }
        if let Some(j) = job_api
            .get_opt(r.name.as_deref().unwrap_or_default())
            .await?
            && j.metadata.uid == r.uid
            && owned_by(&j, &uid)
        {
            jobs.push(j);
        }
    }
    let mut out = plan::plan(&cj, &jobs, Utc::now(), default_zone());
    let mut i = 0;
    while i < out.actions.len() {
        let action = out.actions[i].clone();
        i += 1;
        match action {
            CronJobAction::DeleteJob { name, uid } => {
                let dp = DeleteParams {
                    propagation_policy: Some(PropagationPolicy::Background),
                    preconditions: Some(Preconditions {
                        uid: Some(uid),
                        resource_version: None,
                    }),
                    ..Default::default()
                };
                ignore_gone(job_api.delete(&name, &dp).await)?;
            }
            CronJobAction::CreateJob(job) => {
                match job_api.create(&PostParams::default(), &job).await {
                    Ok(created) => {
                        out.job_created(&created);
                        record(&ctx, &cj, &plan::created_job_event(&created.name_any()));
                    }
                    Err(kube::Error::Api(s)) if s.code == 409 => {
                        let existing = job_api.get(&job.name_any()).await?;
                        if !owned_by(&existing, &uid) {
                            return Err(Error::Other(format!(
                                "job {} exists and is not owned by cronjob {name}",
                                job.name_any()
                            )));
                        }
                        out.job_created(&existing);
                    }
                    Err(e) => {
                        record(&ctx, &cj, &plan::failed_create_job_event(&e.to_string()));
                        return Err(e.into());
                    }
                }
            }
            CronJobAction::UpdateStatus(status) => {
                let mut c = cj.clone();
                c.status = Some(*status);
                match api.replace_status(&name, &PostParams::default(), &c).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(s)) if s.code == 404 => {
                        return Ok(Action::await_change());
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            CronJobAction::Event(ev) => record(&ctx, &cj, &ev),
        }
    }
    Ok(match out.requeue_after {
        Some(d) => Action::requeue(d),
        None => Action::await_change(),
    })
}

pub fn run(ctx: Arc<Context>) -> impl std::future::Future<Output = ()> + Send + 'static {
    let cronjobs: Arc<Informer<CronJob>> = Informer::new(Api::all(ctx.client.clone()));
    let controller = Controller::for_shared_stream(cronjobs.subscribe(), cronjobs.store())
        .watches_shared_stream(ctx.jobs.subscribe(), |job: Arc<Job>| {
            let ns = job.namespace().unwrap_or_default();
            podutil::controller_ref(&job.metadata)
                .filter(|r| r.kind == "CronJob" && r.api_version.starts_with("batch/"))
                .map(|r| ObjectRef::new(&r.name).within(&ns))
        })
        .run(reconcile, super::error_policy, ctx)
        .for_each(|_| futures::future::ready(()));
    async move {
        futures::future::join(controller, super::run_forever(cronjobs.start())).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_zone_from_env_link_or_utc() {
        assert_eq!(local_zone(Some("Europe/Berlin"), None), Tz::Europe__Berlin);
        assert_eq!(local_zone(Some(":Asia/Tokyo"), None), Tz::Asia__Tokyo);
        assert_eq!(
            local_zone(Some("bogus"), Some("/usr/share/zoneinfo/America/New_York")),
            Tz::America__New_York
        );
        assert_eq!(local_zone(None, Some("/etc/whatever")), Tz::UTC);
        assert_eq!(local_zone(None, None), Tz::UTC);
    }
}
