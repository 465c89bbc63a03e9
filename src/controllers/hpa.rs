//! HorizontalPodAutoscaler controller: every 15 s per HPA, read the target's
//! scale subresource and the pods' usage from the `metrics.k8s.io` API,
//! then let `hpa::plan` decide; write the scale and the HPA status. Until a
//! metrics API is served the conditions say why no replica count could be
//! computed, and only out-of-bounds replica counts are corrected.

pub mod plan;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use futures::StreamExt;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::runtime::controller::{Action, Controller};
use serde_json::{Value, json};

use super::events::Kind;
use super::informers::Informer;
use super::{Context, Error, run_forever};

const SYNC_PERIOD: Duration = Duration::from_secs(15);

/// (when, replicas) recommendations of one HPA.
type Recommendations = Vec<(chrono::DateTime<Utc>, i32)>;

struct State {
    ctx: Arc<Context>,
    /// HPA uid → recent recommendations (stabilization window).
    history: Mutex<HashMap<String, Recommendations>>,
}

/// The target's current replicas and pod selector, via its scale subresource.
async fn get_scale(
    client: &kube::Client,
    ns: &str,
    h: &HorizontalPodAutoscaler,
) -> Result<(i32, String), String> {
    let r = &h.spec.as_ref().ok_or("no spec")?.scale_target_ref;
    let api_version = r.api_version.clone().unwrap_or_else(|| "v1".into());
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", &api_version));
    let gvk = GroupVersionKind::gvk(group, version, &r.kind);
    let (ar, _) = kube::discovery::pinned_kind(client, &gvk)
        .await
        .map_err(|e| format!("unable to get the target's scale: no matches for kind \"{}\" in group \"{group}\": {e}", r.kind))?;
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &ar);
    let scale = api.get_scale(&r.name).await.map_err(|e| match e {
        kube::Error::Api(s) => s.message,
        e => e.to_string(),
    })?;
    let replicas = scale.spec.and_then(|s| s.replicas).unwrap_or(0);
    let selector = scale.status.and_then(|s| s.selector).unwrap_or_default();
    Ok((replicas, selector))
}

async fn set_scale(
    client: &kube::Client,
    ns: &str,
    h: &HorizontalPodAutoscaler,
    n: i32,
) -> Result<(), String> {
    let r = &h.spec.as_ref().ok_or("no spec")?.scale_target_ref;
    let api_version = r.api_version.clone().unwrap_or_else(|| "v1".into());
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", &api_version));
    let gvk = GroupVersionKind::gvk(group, version, &r.kind);
    let (ar, _) = kube::discovery::pinned_kind(client, &gvk)
        .await
        .map_err(|e| e.to_string())?;
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &ar);
    api.patch_scale(
        &r.name,
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": n}})),
    )
    .await
    .map(|_| ())
    .map_err(|e| e.to_string())
}

/// Per resource, per pod usage in milli-units from `metrics.k8s.io`.
async fn get_usage(
    client: &kube::Client,
    ns: &str,
    selector: &str,
) -> Result<BTreeMap<String, plan::PodUsage>, String> {
    let path = format!(
        "/apis/metrics.k8s.io/v1beta1/namespaces/{ns}/pods?labelSelector={}",
        percent_encoding::utf8_percent_encode(selector, percent_encoding::NON_ALPHANUMERIC)
    );
    let req = http::Request::get(path)
        .body(Vec::new())
        .map_err(|e| e.to_string())?;
    let list: Value = client.request(req).await.map_err(|e| {
        let msg = match e {
            kube::Error::Api(s) => s.message,
            e => e.to_string(),
        };
        format!("unable to get metrics for resource cpu: unable to fetch metrics from resource metrics API: {msg} (get pods.metrics.k8s.io)")
    })?;
    let mut out: BTreeMap<String, plan::PodUsage> = BTreeMap::new();
    for item in list["items"].as_array().into_iter().flatten() {
        let pod = item["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        for c in item["containers"].as_array().into_iter().flatten() {
            for (res, q) in c["usage"].as_object().into_iter().flatten() {
                let milli = q
                    .as_str()
                    .and_then(crate::api::quantity::parse_quantity)
                    .map(|q| q.milli_value() as i64)
                    .unwrap_or(0);
                *out.entry(res.clone())
                    .or_default()
                    .entry(pod.clone())
                    .or_default() += milli;
            }
        }
    }
    Ok(out)
}

async fn reconcile(h: Arc<HorizontalPodAutoscaler>, st: Arc<State>) -> Result<Action, Error> {
    let ctx = &st.ctx;
    let ns = h.namespace().unwrap_or_default();
    let uid = h.uid().unwrap_or_default();
    let now = Utc::now();
    let scale = get_scale(&ctx.client, &ns, &h).await;
    let selector = scale.as_ref().map(|s| s.1.clone()).unwrap_or_default();
    let selected: Vec<Arc<Pod>> = match crate::api::selector::LabelSelector::parse(&selector) {
        Ok(sel) if !selector.is_empty() => ctx
            .pods
            .in_namespace(&ns)
            .into_iter()
            .filter(|p| {
                let labels: serde_json::Map<String, Value> = p
                    .labels()
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                    .collect();
                sel.matches_labels(Some(&labels))
            })
            .collect(),
        _ => Vec::new(),
    };
    let pods: Vec<&Pod> = selected.iter().map(|p| &**p).collect();
    let usage = if scale.is_ok() {
        get_usage(&ctx.client, &ns, &selector).await
    } else {
        Err(String::new())
    };
    let history = st
        .history
        .lock()
        .unwrap()
        .get(&uid)
        .cloned()
        .unwrap_or_default();
    let out = plan::plan(
        &h,
        &plan::Observed {
            scale: scale.map(|s| s.0),
            pods: &pods,
            usage,
            history: &history,
            now,
        },
    );
    if let Some(rec) = out.recommendation {
        let mut m = st.history.lock().unwrap();
        let v = m.entry(uid).or_default();
        v.push((now, rec));
        v.retain(|(t, _)| now - *t <= chrono::Duration::seconds(plan::DOWNSCALE_WINDOW_SECONDS));
    }
    if let Some(n) = out.scale_to
        && let Err(e) = set_scale(&ctx.client, &ns, &h, n).await
    {
        ctx.recorder.record(
            &*h,
            Kind::Warning,
            "FailedRescale",
            &format!("New size: {n}; error: {e}"),
        );
    }
    for (t, reason, msg) in &out.events {
        let kind = if *t == "Warning" {
            Kind::Warning
        } else {
            Kind::Normal
        };
        ctx.recorder.record(&*h, kind, reason, msg);
    }
    if h.status.as_ref() != Some(&out.status) {
        super::patch_status::<HorizontalPodAutoscaler, _>(
            &ctx.client,
            &ns,
            &h.name_any(),
            h.status.as_ref(),
            &out.status,
        )
        .await?;
    }
    Ok(Action::requeue(SYNC_PERIOD))
}

fn error_policy(_h: Arc<HorizontalPodAutoscaler>, err: &Error, _st: Arc<State>) -> Action {
    tracing::debug!("hpa reconcile failed: {err}");
    Action::requeue(SYNC_PERIOD)
}

pub fn run(ctx: Arc<Context>) -> impl std::future::Future<Output = ()> + Send + 'static {
    let hpas: Arc<Informer<HorizontalPodAutoscaler>> = Informer::new(Api::all(ctx.client.clone()));
    let controller = Controller::for_shared_stream(hpas.subscribe(), hpas.store());
    let state = Arc::new(State {
        ctx,
        history: Mutex::new(HashMap::new()),
    });
    async move {
        let informer = run_forever(hpas.start());
        let run = controller
            .run(reconcile, error_policy, state)
            .for_each(|_| futures::future::ready(()));
        tokio::join!(informer, run);
    }
}
