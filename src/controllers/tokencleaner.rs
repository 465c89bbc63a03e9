//! Token cleaner (upstream `bootstrap.TokenCleaner`): deletes bootstrap-token
//! Secrets (`kube-system`, type `bootstrap.kubernetes.io/token`) whose
//! `expiration` has passed. The join endpoint refuses expired tokens on its
//! own; this only keeps `skiff token list` and the Secret list tidy.
//!
//! Invariant: a Secret is deleted only if it is still the one judged
//! expired (uid and resourceVersion preconditions); errors are retried on the
//! next pass, never fatal.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, ListParams, Preconditions};
use kube::{Api, ResourceExt};

use super::Context;
use crate::tokens;

/// Longest wait between two passes.
const MAX_INTERVAL: Duration = Duration::from_secs(60);

pub async fn run(ctx: Arc<Context>) {
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), tokens::SYSTEM_NAMESPACE);
    loop {
        let wait = match pass(&api).await {
            Ok(next) => next,
            Err(e) => {
                tracing::debug!("token cleaner: {e}");
                Duration::from_secs(5)
            }
        };
        tokio::time::sleep(wait).await;
    }
}

/// Delete what has expired; return how long to sleep until the next expiry.
async fn pass(api: &Api<Secret>) -> Result<Duration, kube::Error> {
    let list = api.list(&ListParams::default()).await?;
    let now = Utc::now();
    let mut next = MAX_INTERVAL;
    for s in list.items {
        let Ok(value) = serde_json::to_value(&s) else {
            continue;
        };
        let Some(info) = tokens::token_info(&value) else {
            continue;
        };
        if tokens::is_expired(&value, now) {
            let dp = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: s.metadata.uid.clone(),
                    resource_version: s.metadata.resource_version.clone(),
                }),
                ..Default::default()
            };
            match api.delete(&s.name_any(), &dp).await {
                Ok(_) => tracing::info!(token = %info.id, "deleted expired bootstrap token"),
                Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
                Err(e) => return Err(e),
            }
        } else if let Some(Ok(t)) = info.expires
            && let Ok(d) = (t - now).to_std()
        {
            next = next.min(d + Duration::from_millis(100));
        }
    }
    Ok(next)
}
