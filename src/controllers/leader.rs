//! Leader election on a `coordination.k8s.io/v1` Lease in `kube-system`,
//! one per component (`kube-scheduler`, `kube-controller-manager`), so a
//! second server can join later without two schedulers acting at once.
//!
//! Invariant: the guarded work runs only while this process holds an
//! unexpired lease; when a renewal fails past the renew deadline the work is
//! aborted before anyone else can acquire the lease (renew deadline <
//! lease duration).

use std::future::Future;
use std::time::Duration;

use chrono::Utc;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Api;
use kube::api::PostParams;

use super::podutil::{chrono_to_timestamp as to_timestamp, timestamp_to_chrono};

const LEASE_SECONDS: i32 = 15;
const RENEW_DEADLINE: Duration = Duration::from_secs(10);
const RETRY: Duration = Duration::from_secs(2);

/// What to do with a lease observed as `current` (pure).
#[derive(Debug, PartialEq)]
pub enum Decision {
    /// Free or expired or already ours: write it with us as holder.
    Take { transitions: i32 },
    /// Someone else holds it until it expires.
    Wait,
}

pub fn decide(current: Option<&LeaseSpec>, me: &str, now: chrono::DateTime<Utc>) -> Decision {
    let Some(spec) = current else {
        return Decision::Take { transitions: 0 };
    };
    let transitions = spec.lease_transitions.unwrap_or(0);
    let holder = spec.holder_identity.as_deref().unwrap_or("");
    if holder == me || holder.is_empty() {
        return Decision::Take { transitions };
    }
    let renewed = spec.renew_time.as_ref().or(spec.acquire_time.as_ref());
    let duration = spec.lease_duration_seconds.unwrap_or(LEASE_SECONDS) as i64;
    match renewed {
        Some(t) if timestamp_to_chrono(&t.0) + chrono::Duration::seconds(duration) > now => {
            Decision::Wait
        }
        _ => Decision::Take {
            transitions: transitions + 1,
        },
    }
}

/// Try once to hold the lease `name`; true when we hold it now.
async fn try_acquire(api: &Api<Lease>, name: &str, me: &str) -> bool {
    let now = Utc::now();
    let existing = match api.get_opt(name).await {
        Ok(l) => l,
        Err(e) => {
            tracing::debug!("lease {name}: {e}");
            return false;
        }
    };
    let spec = existing.as_ref().and_then(|l| l.spec.as_ref());
    let Decision::Take { transitions } = decide(spec, me, now) else {
        return false;
    };
    let was_ours = spec.and_then(|s| s.holder_identity.as_deref()) == Some(me);
    let acquire_time = if was_ours {
        spec.and_then(|s| s.acquire_time.clone())
    } else {
        Some(MicroTime(to_timestamp(now)))
    };
    let new_spec = LeaseSpec {
        holder_identity: Some(me.to_string()),
        lease_duration_seconds: Some(LEASE_SECONDS),
        acquire_time,
        renew_time: Some(MicroTime(to_timestamp(now))),
        lease_transitions: Some(transitions),
        ..Default::default()
    };
    let res = match existing {
        Some(mut l) => {
            l.spec = Some(new_spec);
            api.replace(name, &PostParams::default(), &l)
                .await
                .map(|_| ())
        }
        None => {
            let l = Lease {
                metadata: ObjectMeta {
                    name: Some(name.to_string()),
                    namespace: Some("kube-system".into()),
                    ..Default::default()
                },
                spec: Some(new_spec),
            };
            api.create(&PostParams::default(), &l).await.map(|_| ())
        }
    };
    res.is_ok()
}

/// Run `work` whenever this process leads `name`; never returns.
pub async fn run<F, Fut>(client: kube::Client, name: &str, me: String, work: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let api: Api<Lease> = Api::namespaced(client, "kube-system");
    loop {
        while !try_acquire(&api, name, &me).await {
            tokio::time::sleep(RETRY).await;
        }
        tracing::info!("became leader for {name} as {me}");
        let task = tokio::spawn(work());
        let mut last_renew = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(RETRY).await;
            if try_acquire(&api, name, &me).await {
                last_renew = tokio::time::Instant::now();
            } else if last_renew.elapsed() > RENEW_DEADLINE {
                tracing::warn!("lost the {name} lease; stopping");
                task.abort();
                break;
            }
            if task.is_finished() {
                tracing::warn!("{name} stopped while leading; restarting it");
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(holder: &str, renewed_ago: i64) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(15),
            renew_time: Some(MicroTime(to_timestamp(
                Utc::now() - chrono::Duration::seconds(renewed_ago),
            ))),
            lease_transitions: Some(2),
            ..Default::default()
        }
    }

    #[test]
    fn lease_decisions() {
        let now = Utc::now();
        assert_eq!(decide(None, "a", now), Decision::Take { transitions: 0 });
        assert_eq!(
            decide(Some(&spec("a", 1)), "a", now),
            Decision::Take { transitions: 2 }
        );
        assert_eq!(decide(Some(&spec("b", 1)), "a", now), Decision::Wait);
        assert_eq!(
            decide(Some(&spec("b", 20)), "a", now),
            Decision::Take { transitions: 3 }
        );
    }
}
