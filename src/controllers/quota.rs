//! ResourceQuota controller (upstream `pkg/controller/resourcequota`): keeps
//! every quota's `status.hard` equal to `spec.hard` and `status.used` equal
//! to what its namespace really holds. Usage comes from `quota::plan`
//! (`quota_status`); this shell decides when to recompute:
//!
//! - a quota whose `status` does not cover its `spec.hard` (new or edited);
//! - any change of a pod, service, claim, configmap, secret or
//!   replication controller in a namespace that has quotas, debounced per
//!   namespace (changes within `DEBOUNCE` are computed once);
//! - every `RESYNC` for all quotas (other `count/<resource>.<group>` kinds,
//!   and charges the API server's admission made for creates that failed).
//!
//! Status is written with `UpdateStatus` under the cached resourceVersion:
//! when admission charged the quota meanwhile the write conflicts and the
//! namespace is computed again after the new object reached the caches.
//! The admission side (charging `status.used` before an object is stored)
//! lives in `apiserver::admission`.

pub mod plan;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures::StreamExt;
use futures::stream::BoxStream;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, ResourceQuota, Secret, Service};
use kube::api::{DynamicObject, ListParams, PostParams};
use kube::runtime::watcher::{self, watcher};
use kube::{Api, Resource, ResourceExt};
use tokio::sync::mpsc;

use super::informers::Informer;
use super::{Context, Error, run_forever};

/// Changes within this window are computed once per namespace.
const DEBOUNCE: Duration = Duration::from_millis(250);
/// Every quota is recomputed at least this often.
const RESYNC: Duration = Duration::from_secs(60);

const LEGACY_COUNTS: &[&str] = &[
    "configmaps",
    "secrets",
    "replicationcontrollers",
    "resourcequotas",
];

/// Whether the quota's status does not describe its spec yet.
fn needs_sync(q: &ResourceQuota) -> bool {
    let hard = q.spec.as_ref().and_then(|s| s.hard.as_ref());
    let status = q.status.as_ref();
    if status.and_then(|s| s.hard.as_ref()) != hard {
        return true;
    }
    let used = status.and_then(|s| s.used.as_ref());
    hard.into_iter()
        .flatten()
        .any(|(k, _)| used.is_none_or(|u| !u.contains_key(k)))
}

/// `<resource>` or `<resource>.<group>` keys of object counts the quotas
/// need that the usage functions do not measure themselves.
fn counted_resources(quotas: &[Arc<ResourceQuota>]) -> BTreeSet<String> {
    quotas
        .iter()
        .filter_map(|q| q.spec.as_ref().and_then(|s| s.hard.as_ref()))
        .flatten()
        .filter_map(|(k, _)| {
            k.strip_prefix("count/")
                .or(LEGACY_COUNTS.contains(&k.as_str()).then_some(k.as_str()))
        })
        .filter(|r| !matches!(*r, "pods" | "services" | "persistentvolumeclaims"))
        .map(String::from)
        .collect()
}

fn unshare<K: Clone>(v: Vec<Arc<K>>) -> Vec<K> {
    v.iter().map(|o| (**o).clone()).collect()
}

struct Shell {
    ctx: Arc<Context>,
    quotas: Arc<Informer<ResourceQuota>>,
    pvcs: Arc<Informer<PersistentVolumeClaim>>,
}

impl Shell {
    /// How many objects of `resource` (`configmaps`, `deployments.apps`)
    /// the namespace holds: from the caches when there is one, else a
    /// metadata list.
    async fn count(&self, ns: &str, resource: &str) -> Result<i64, Error> {
        let ctx = &self.ctx;
        let cached = match resource {
            "configmaps" => Some(ctx.configmaps.in_namespace(ns).len()),
            "replicationcontrollers" => Some(ctx.replicationcontrollers.in_namespace(ns).len()),
            "resourcequotas" => Some(self.quotas.in_namespace(ns).len()),
            "replicasets.apps" => Some(ctx.replicasets.in_namespace(ns).len()),
            "deployments.apps" => Some(ctx.deployments.in_namespace(ns).len()),
            "endpoints" => Some(ctx.endpoints.in_namespace(ns).len()),
            "serviceaccounts" => Some(ctx.serviceaccounts.in_namespace(ns).len()),
            _ => None,
        };
        if let Some(n) = cached {
            return Ok(n as i64);
        }
        let lp = ListParams::default();
        if resource == "secrets" {
            let api: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
            return Ok(api.list_metadata(&lp).await?.items.len() as i64);
        }
        let (plural, group) = resource.split_once('.').unwrap_or((resource, ""));
        let Ok(apigroup) = kube::discovery::oneshot::group(&ctx.client, group).await else {
            return Ok(0);
        };
        let Some((ar, caps)) = apigroup
            .recommended_resources()
            .into_iter()
            .find(|(ar, _)| ar.plural == plural)
        else {
            return Ok(0);
        };
        if caps.scope != kube::discovery::Scope::Namespaced {
            return Ok(0);
        }
        let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), ns, &ar);
        Ok(api.list_metadata(&lp).await?.items.len() as i64)
    }

    /// Recompute and write every quota of one namespace.
    async fn sync_namespace(&self, ns: &str) -> Result<(), Error> {
        let quotas = self.quotas.in_namespace(ns);
        if quotas.is_empty() {
            return Ok(());
        }
        let pods: Vec<Pod> = unshare(self.ctx.pods.in_namespace(ns));
        let services: Vec<Service> = unshare(self.ctx.services.in_namespace(ns));
        let pvcs: Vec<PersistentVolumeClaim> = unshare(self.pvcs.in_namespace(ns));
        let mut counts = BTreeMap::new();
        for r in counted_resources(&quotas) {
            let n = self.count(ns, &r).await?;
            counts.insert(r, n);
        }
        let inputs = plan::QuotaInputs {
            pods: &pods,
            services: &services,
            pvcs: &pvcs,
            object_counts: &counts,
        };
        let api: Api<ResourceQuota> = Api::namespaced(self.ctx.client.clone(), ns);
        let mut conflict = None;
        for q in quotas {
            if q.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let status = plan::quota_status(&q, &inputs, Utc::now());
            if q.status.as_ref() == Some(&status) {
                continue;
            }
            let mut next = (*q).clone();
            next.status = Some(status);
            match api
                .replace_status(&q.name_any(), &PostParams::default(), &next)
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => conflict = Some(e),
            }
        }
        match conflict {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }
}

/// Forwards the namespace of every object of `stream` that lives in a
/// namespace with quotas.
fn forward<K>(
    stream: BoxStream<'static, Arc<K>>,
    quotas: Arc<Informer<ResourceQuota>>,
    tx: mpsc::UnboundedSender<String>,
) -> impl std::future::Future<Output = ()> + Send + 'static
where
    K: Resource + Send + Sync + 'static,
{
    stream.for_each(move |o| {
        if let Some(ns) = o.meta().namespace.as_deref()
            && !quotas.in_namespace(ns).is_empty()
        {
            let _ = tx.send(ns.to_string());
        }
        futures::future::ready(())
    })
}

/// Namespaces with secret changes (metadata only: secrets are not cached).
async fn watch_secrets(
    client: kube::Client,
    quotas: Arc<Informer<ResourceQuota>>,
    tx: mpsc::UnboundedSender<String>,
) {
    let api: Api<kube::core::PartialObjectMeta<Secret>> = Api::all(client);
    let mut stream = watcher(api, watcher::Config::default()).boxed();
    while let Some(ev) = stream.next().await {
        let obj = match ev {
            Ok(watcher::Event::Apply(o) | watcher::Event::Delete(o)) => o,
            Ok(_) => continue,
            Err(e) => {
                tracing::debug!("quota: secret watch: {e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        if let Some(ns) = obj.metadata.namespace.as_deref()
            && !quotas.in_namespace(ns).is_empty()
        {
            let _ = tx.send(ns.to_string());
        }
    }
}

async fn worker(
    shell: Arc<Shell>,
    mut rx: mpsc::UnboundedReceiver<String>,
    tx: mpsc::UnboundedSender<String>,
) {
    let _ = shell.quotas.store().wait_until_ready().await;
    let _ = shell.pvcs.store().wait_until_ready().await;
    shell.ctx.pods.ready().await;
    let mut resync = tokio::time::interval(RESYNC);
    loop {
        let mut pending = BTreeSet::new();
        tokio::select! {
            ns = rx.recv() => match ns {
                Some(ns) => { pending.insert(ns); }
                None => return,
            },
            _ = resync.tick() => {
                for q in shell.quotas.store().state() {
                    pending.extend(q.namespace());
                }
            }
        }
        tokio::time::sleep(DEBOUNCE).await;
        while let Ok(ns) = rx.try_recv() {
            pending.insert(ns);
        }
        for ns in pending {
            if let Err(e) = shell.sync_namespace(&ns).await {
                tracing::debug!("quota sync of namespace {ns}: {e}");
                let tx = tx.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    let _ = tx.send(ns);
                });
            }
        }
    }
}

pub fn run(ctx: Arc<Context>) -> impl std::future::Future<Output = ()> + Send + 'static {
    let quotas: Arc<Informer<ResourceQuota>> = Informer::new(Api::all(ctx.client.clone()));
    let pvcs: Arc<Informer<PersistentVolumeClaim>> = Informer::new(Api::all(ctx.client.clone()));
    let (tx, rx) = mpsc::unbounded_channel::<String>();
    // subscriptions are taken now, before any informer starts
    let pods = forward(ctx.pods.subscribe().boxed(), quotas.clone(), tx.clone());
    let services = forward(ctx.services.subscribe().boxed(), quotas.clone(), tx.clone());
    let configmaps = forward(
        ctx.configmaps.subscribe().boxed(),
        quotas.clone(),
        tx.clone(),
    );
    let rcs = forward(
        ctx.replicationcontrollers.subscribe().boxed(),
        quotas.clone(),
        tx.clone(),
    );
    let claims = forward(pvcs.subscribe().boxed(), quotas.clone(), tx.clone());
    let quota_tx = tx.clone();
    let quota_stream: BoxStream<'static, Arc<ResourceQuota>> = quotas.subscribe().boxed();
    let quota_changes = quota_stream.for_each(move |q: Arc<ResourceQuota>| {
        if needs_sync(&q)
            && let Some(ns) = q.namespace()
        {
            let _ = quota_tx.send(ns);
        }
        futures::future::ready(())
    });
    let secrets = watch_secrets(ctx.client.clone(), quotas.clone(), tx.clone());
    let shell = Arc::new(Shell {
        ctx,
        quotas: quotas.clone(),
        pvcs: pvcs.clone(),
    });
    async move {
        futures::join!(
            worker(shell, rx, tx),
            pods,
            services,
            configmaps,
            rcs,
            claims,
            quota_changes,
            secrets,
            run_forever(quotas.start()),
            run_forever(pvcs.start()),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ResourceQuotaSpec, ResourceQuotaStatus};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    type Pairs<'a> = &'a [(&'a str, &'a str)];

    fn quota(hard: Pairs, status: Option<(Pairs, Pairs)>) -> ResourceQuota {
        let list = |kv: &[(&str, &str)]| -> BTreeMap<String, Quantity> {
            kv.iter()
                .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
                .collect()
        };
        ResourceQuota {
            spec: Some(ResourceQuotaSpec {
                hard: Some(list(hard)),
                ..Default::default()
            }),
            status: status.map(|(h, u)| ResourceQuotaStatus {
                hard: Some(list(h)),
                used: Some(list(u)),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn syncs_only_when_status_lags_spec() {
        let hard: &[(&str, &str)] = &[("pods", "2"), ("secrets", "3")];
        assert!(needs_sync(&quota(hard, None)));
        assert!(needs_sync(&quota(
            hard,
            Some((&[("pods", "2")], &[("pods", "0")]))
        )));
        assert!(needs_sync(&quota(hard, Some((hard, &[("pods", "1")])))));
        // a charge by admission (used changed) does not trigger a sync
        assert!(!needs_sync(&quota(
            hard,
            Some((hard, &[("pods", "1"), ("secrets", "0")]))
        )));
    }

    #[test]
    fn counts_what_usage_functions_do_not_measure() {
        let q = Arc::new(quota(
            &[
                ("count/pods", "1"),
                ("count/deployments.apps", "1"),
                ("secrets", "1"),
                ("count/configmaps", "1"),
                ("services", "1"),
                ("requests.cpu", "1"),
            ],
            None,
        ));
        let got: Vec<String> = counted_resources(&[q]).into_iter().collect();
        assert_eq!(got, ["configmaps", "deployments.apps", "secrets"]);
    }
}
