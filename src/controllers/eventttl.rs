//! Events compaction: upstream keeps Events for one hour (the API server's
//! `--event-ttl`, an etcd lease refreshed on every write). Here a sweep every
//! minute pages through core/v1 and events.k8s.io/v1 Events (stored apart in
//! skiff) and deletes those last seen more than [`EVENT_TTL`] ago. "Last
//! seen" is the latest of `lastTimestamp` / `deprecatedLastTimestamp` /
//! `eventTime` / `series.lastObservedTime`, else `creationTimestamp`.
//!
//! Invariant: a delete carries the listed uid and resourceVersion, so an
//! Event updated (count bumped) since the list is kept.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use kube::api::{ApiResource, DeleteParams, DynamicObject, ListParams, Preconditions};
use kube::{Api, ResourceExt};
use serde_json::Value;

use super::Context;

/// How long an Event is kept after it was last seen.
pub const EVENT_TTL: Duration = Duration::from_secs(3600);
/// Time between sweeps.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(60);
/// Events per list page.
const PAGE_SIZE: u32 = 500;

fn parse_time(v: Option<&Value>) -> Option<DateTime<Utc>> {
    let s = v?.as_str()?;
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// When an Event (either API version, as JSON) was last seen.
pub fn last_seen(ev: &Value) -> Option<DateTime<Utc>> {
    [
        ev.get("lastTimestamp"),
        ev.get("deprecatedLastTimestamp"),
        ev.get("eventTime"),
        ev.pointer("/series/lastObservedTime"),
    ]
    .into_iter()
    .filter_map(parse_time)
    .max()
    .or_else(|| parse_time(ev.pointer("/metadata/creationTimestamp")))
}

/// Whether the Event is older than the TTL at `now`.
pub fn expired(ev: &Value, now: DateTime<Utc>) -> bool {
    let ttl = chrono::Duration::from_std(EVENT_TTL).unwrap_or(chrono::Duration::hours(1));
    last_seen(ev).is_some_and(|t| t + ttl < now)
}

fn resource(group: &str, version: &str) -> ApiResource {
    ApiResource {
        group: group.into(),
        version: version.into(),
        api_version: if group.is_empty() {
            version.into()
        } else {
            format!("{group}/{version}")
        },
        kind: "Event".into(),
        plural: "events".into(),
    }
}

/// One pass over every Event of one API; returns how many were deleted.
async fn sweep(client: &kube::Client, ar: &ApiResource) -> Result<usize, kube::Error> {
    let all: Api<DynamicObject> = Api::all_with(client.clone(), ar);
    let mut token: Option<String> = None;
    let mut deleted = 0;
    loop {
        let mut lp = ListParams::default().limit(PAGE_SIZE);
        if let Some(t) = &token {
            lp = lp.continue_token(t);
        }
        let page = all.list(&lp).await?;
        let now = Utc::now();
        for ev in &page.items {
            let json = serde_json::to_value(ev).unwrap_or(Value::Null);
            if !expired(&json, now) {
                continue;
            }
            let api: Api<DynamicObject> =
                Api::namespaced_with(client.clone(), &ev.namespace().unwrap_or_default(), ar);
            let dp = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: ev.metadata.uid.clone(),
                    resource_version: ev.metadata.resource_version.clone(),
                }),
                ..Default::default()
            };
            match api.delete(&ev.name_any(), &dp).await {
                Ok(_) => deleted += 1,
                Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
                Err(e) => return Err(e),
            }
        }
        token = page.metadata.continue_.filter(|t| !t.is_empty());
        if token.is_none() {
            return Ok(deleted);
        }
    }
}

pub fn run(ctx: Arc<Context>) -> impl std::future::Future<Output = ()> + Send + 'static {
    let client = ctx.client.clone();
    async move {
        let apis = [resource("", "v1"), resource("events.k8s.io", "v1")];
        let mut tick = tokio::time::interval(SWEEP_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            for ar in &apis {
                match sweep(&client, ar).await {
                    Ok(0) => {}
                    Ok(n) => tracing::debug!("deleted {n} expired {} events", ar.api_version),
                    Err(e) => tracing::debug!("event sweep ({}): {e}", ar.api_version),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn last_seen_prefers_the_latest_activity() {
        let ev = json!({
            "metadata": {"creationTimestamp": "2025-01-01T00:00:00Z"},
            "lastTimestamp": "2025-01-01T02:00:00Z",
            "eventTime": "2025-01-01T01:00:00.000000Z",
        });
        assert_eq!(
            last_seen(&ev).unwrap().to_rfc3339(),
            "2025-01-01T02:00:00+00:00"
        );
        let series = json!({
            "metadata": {"creationTimestamp": "2025-01-01T00:00:00Z"},
            "eventTime": "2025-01-01T00:00:00.000000Z",
            "series": {"count": 2, "lastObservedTime": "2025-01-01T03:00:00.000000Z"},
        });
        assert_eq!(last_seen(&series).unwrap().hour(), 3);
        let bare = json!({"metadata": {"creationTimestamp": "2025-01-01T00:00:00Z"}});
        assert_eq!(last_seen(&bare).unwrap().hour(), 0);
        assert_eq!(last_seen(&json!({})), None);
    }

    #[test]
    fn expiry_after_one_hour() {
        let ev = json!({"lastTimestamp": "2025-01-01T00:00:00Z"});
        let t = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        assert!(!expired(&ev, t("2025-01-01T01:00:00Z")));
        assert!(expired(&ev, t("2025-01-01T01:00:01Z")));
        assert!(!expired(&json!({}), t("2030-01-01T00:00:00Z")));
    }

    use chrono::Timelike;
}
