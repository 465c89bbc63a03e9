//! The resource metrics API (`metrics.k8s.io/v1beta1`), served in-process
//! like a built-in metrics-server: a loop scrapes every Ready node's
//! kubelet `/metrics/resource` (with the API server's kubelet-client
//! certificate), keeps only the latest window per node in memory, and the
//! handlers answer `NodeMetrics` / `PodMetrics` get and list (label and
//! `metadata.name`/`metadata.namespace` field selectors), joined with the
//! Node/Pod objects for labels. Also its discovery documents.
//!
//! Pure parts live in `metrics_api/model.rs`.
//!
//! Invariants: nothing is stored on disk; a node that is not Ready or whose
//! scrape fails has no metrics (never stale ones); watch is refused with
//! `MethodNotAllowed` like metrics-server; every request needs an
//! authenticated identity.

pub mod model;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, Full, Limited};
use serde_json::{Value, json};

use super::AppState;
use super::error::{ApiError, ApiResult};
use super::handlers::{json_response, parse_query};
use super::negotiate::{self, IncludeObject, Output};
use super::registry::{Identity, ListOptions, now_rfc3339};
use crate::api::selector::{FieldSelector, LabelSelector};
use model::{NodeWindow, Scrape};

pub const GROUP: &str = "metrics.k8s.io";
pub const VERSION: &str = "v1beta1";
/// How often every node is scraped (metrics-server's `--metric-resolution`).
pub const RESOLUTION: Duration = Duration::from_secs(15);
/// The next scrape when something still lacks a usage (new pod or node).
const QUICK: Duration = Duration::from_secs(5);
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_SCRAPE_BYTES: usize = 16 << 20;

/// The latest window of every scraped node.
#[derive(Default)]
pub struct ResourceMetrics {
    nodes: Mutex<HashMap<String, NodeWindow>>,
}

impl ResourceMetrics {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, NodeWindow>> {
        self.nodes.lock().unwrap_or_else(|e| e.into_inner())
    }
}

// ---- scraping ----

fn node_ready(node: &Value) -> bool {
    node.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                c.get("type").and_then(Value::as_str) == Some("Ready")
                    && c.get("status").and_then(Value::as_str) == Some("True")
            })
        })
}

async fn get_kubelet(
    tls: Arc<rustls::ClientConfig>,
    host: &str,
    port: u16,
    path: &str,
) -> Result<String, String> {
    let (mut sender, authority) = super::proxy::dial_kubelet(tls, host, port).await?;
    let req = hyper::Request::get(path)
        .header(header::HOST, authority)
        .header(header::ACCEPT, "text/plain")
        .body(Full::new(Bytes::new()))
        .map_err(|e| e.to_string())?;
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status();
    let body = Limited::new(resp.into_body(), MAX_SCRAPE_BYTES)
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    if !status.is_success() {
        return Err(format!(
            "{status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        ));
    }
    String::from_utf8(body.to_vec()).map_err(|e| e.to_string())
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// One round over every Ready node; true when a quick re-scrape is due.
async fn scrape_round(app: &Arc<AppState>) -> bool {
    let Some(tls) = app.kubelet_tls.clone() else {
        return false;
    };
    let Some(res) = app.registry.kinds.get("", "v1", "nodes") else {
        return false;
    };
    let nodes: Vec<Value> = match app.registry.list(&res, None, &ListOptions::default()).await {
        Ok(l) => l
            .items
            .iter()
            .filter_map(|kv| app.registry.decode(&res, kv).ok())
            .collect(),
        Err(e) => {
            tracing::debug!("metrics: listing nodes: {e}");
            return true;
        }
    };
    let targets: Vec<(String, String, u16)> = nodes
        .iter()
        .filter(|n| node_ready(n))
        .filter_map(|n| {
            let name = n.pointer("/metadata/name")?.as_str()?.to_string();
            let (host, port) = super::proxy::kubelet_endpoint(n)?;
            Some((name, host, port))
        })
        .collect();
    let scrapes = futures::future::join_all(targets.into_iter().map(|(name, host, port)| {
        let tls = tls.clone();
        async move {
            let r = tokio::time::timeout(
                SCRAPE_TIMEOUT,
                get_kubelet(tls, &host, port, "/metrics/resource"),
            )
            .await
            .unwrap_or_else(|_| Err("timed out".into()));
            (name, r)
        }
    }))
    .await;
    let mut pending = scrapes.is_empty();
    let mut store = app.resource_metrics.lock();
    let mut fresh: HashMap<String, NodeWindow> = HashMap::new();
    for (name, r) in scrapes {
        match r {
            Ok(text) => {
                let scrape = Scrape::from_samples(&model::parse_prometheus(&text), now_ms());
                let mut w = store.remove(&name).unwrap_or_default();
                pending |= w.update(&scrape);
                fresh.insert(name, w);
            }
            Err(e) => tracing::debug!(node = %name, "metrics: scrape failed: {e}"),
        }
    }
    *store = fresh;
    pending
}

/// The scrape loop; runs for the life of the server.
pub async fn run(app: Arc<AppState>) {
    // let the embedded agent register first
    tokio::time::sleep(Duration::from_secs(2)).await;
    ensure_reader_role(&app).await;
    loop {
        let pending = scrape_round(&app).await;
        tokio::time::sleep(if pending { QUICK } else { RESOLUTION }).await;
    }
}

// ---- HTTP ----

fn method_not_supported(resource: &str, action: &str) -> ApiError {
    let mut e = ApiError::new(
        405,
        "MethodNotAllowed",
        format!("{action} is not supported on resources of kind \"{resource}.{GROUP}\""),
    );
    e.details = Some(Box::new(json!({ "group": GROUP, "kind": resource })));
    e
}

fn list_options(q: &HashMap<String, String>, kind: &str) -> ApiResult<ListOptions> {
    let label = match q.get("labelSelector") {
        Some(s) => LabelSelector::parse(s)
            .map_err(|e| ApiError::bad_request(format!("unable to parse requirement: {e}")))?,
        None => LabelSelector::default(),
    };
    let field = match q.get("fieldSelector") {
        Some(s) => FieldSelector::parse(s, GROUP, kind).map_err(ApiError::bad_request)?,
        None => FieldSelector::default(),
    };
    Ok(ListOptions {
        label,
        field,
        ..Default::default()
    })
}

fn list_json(kind: &str, items: Vec<Value>) -> Value {
    json!({
        "kind": kind,
        "apiVersion": format!("{GROUP}/{VERSION}"),
        "metadata": {},
        "items": items,
    })
}

async fn objects(
    app: &AppState,
    plural: &str,
    ns: Option<&str>,
    opts: &ListOptions,
) -> ApiResult<Vec<Value>> {
    let res = app
        .registry
        .kinds
        .get("", "v1", plural)
        .ok_or_else(|| ApiError::internal(format!("no {plural}")))?;
    let listed = app.registry.list(&res, ns, opts).await?;
    Ok(listed
        .items
        .iter()
        .filter_map(|kv| app.registry.decode(&res, kv).ok())
        .collect())
}

fn name_of(o: &Value) -> &str {
    o.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn node_item(app: &AppState, node: &Value, now: &str) -> Option<Value> {
    let name = name_of(node);
    let u = app.resource_metrics.lock().get(name)?.node_usage()?;
    Some(model::node_metrics(
        name,
        node.pointer("/metadata/labels"),
        &u,
        now,
    ))
}

fn pod_item(app: &AppState, pod: &Value, now: &str) -> Option<Value> {
    let name = name_of(pod);
    let ns = pod
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let store = app.resource_metrics.lock();
    // the pod's node first; any node if it moved or is not bound yet
    let on = pod.pointer("/spec/nodeName").and_then(Value::as_str);
    let cs = on
        .and_then(|n| store.get(n))
        .and_then(|w| w.pod_usage(ns, name))
        .or_else(|| store.values().find_map(|w| w.pod_usage(ns, name)))?;
    Some(model::pod_metrics(
        ns,
        name,
        pod.pointer("/metadata/labels"),
        &cs,
        now,
    ))
}

fn group_doc() -> Response {
    let mut v = group_json();
    v["kind"] = json!("APIGroup");
    v["apiVersion"] = json!("v1");
    json_response(StatusCode::OK, &v, &[])
}

/// `/apis/metrics.k8s.io` and everything under it.
pub async fn handle(
    State(app): State<Arc<AppState>>,
    identity: Option<axum::Extension<Identity>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    if identity.is_none() {
        return ApiError::unauthorized().into_response();
    }
    match dispatch(&app, &method, &uri, &headers).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

/// The answer as JSON, or as a Table when the client asked for one.
fn respond(
    headers: &HeaderMap,
    q: &HashMap<String, String>,
    items: &[Value],
    obj: Value,
) -> ApiResult<Response> {
    match negotiate::output(headers, q.get("includeObject").map(String::as_str))? {
        Output::Table(inc) => Ok(json_response(
            StatusCode::OK,
            &model::table(
                items,
                inc == IncludeObject::Object,
                inc != IncludeObject::None,
            ),
            &[],
        )),
        _ => Ok(json_response(StatusCode::OK, &obj, &[])),
    }
}

async fn dispatch(
    app: &AppState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
) -> ApiResult<Response> {
    let segs: Vec<String> = uri
        .path()
        .trim_matches('/')
        .split('/')
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect();
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    let rest = match segs.as_slice() {
        ["apis", GROUP] if *method == Method::GET => return Ok(group_doc()),
        ["apis", GROUP, VERSION, rest @ ..] => rest,
        _ => return Err(super::handlers::not_found_path(uri.path())),
    };
    // (plural, namespace, name)
    let (plural, ns, name) = match rest {
        [] => {
            if *method != Method::GET {
                return Err(method_not_allowed());
            }
            return Ok(json_response(StatusCode::OK, &resource_list(), &[]));
        }
        ["nodes"] => ("nodes", None, None),
        ["nodes", n] => ("nodes", None, Some(*n)),
        ["pods"] => ("pods", None, None),
        ["namespaces", ns, "pods"] => ("pods", Some(*ns), None),
        ["namespaces", ns, "pods", n] => ("pods", Some(*ns), Some(*n)),
        _ => return Err(super::handlers::not_found_path(uri.path())),
    };
    if *method != Method::GET {
        return Err(method_not_allowed());
    }
    let q = parse_query(uri)?;
    if matches!(q.get("watch").map(String::as_str), Some("true" | "1")) {
        return Err(method_not_supported(plural, "watch"));
    }
    let now = now_rfc3339();
    let kind = if plural == "nodes" {
        "NodeMetrics"
    } else {
        "PodMetrics"
    };
    match name {
        Some(name) => {
            let res = app
                .registry
                .kinds
                .get("", "v1", plural)
                .ok_or_else(|| ApiError::internal("no such resource"))?;
            let obj = app.registry.get(&res, ns, name).await?;
            let item = if plural == "nodes" {
                node_item(app, &obj, &now)
            } else {
                pod_item(app, &obj, &now)
            };
            let item = item.ok_or_else(|| {
                let key = match ns {
                    Some(ns) => format!("{ns}/{name}"),
                    None => name.to_string(),
                };
                let metrics_plural = if plural == "nodes" {
                    "nodemetrics"
                } else {
                    "podmetrics"
                };
                ApiError::not_found(GROUP, metrics_plural, &key)
            })?;
            respond(headers, &q, std::slice::from_ref(&item), item.clone())
        }
        None => {
            let opts = list_options(&q, kind)?;
            let objs = objects(app, plural, ns, &opts).await?;
            let items: Vec<Value> = objs
                .iter()
                .filter_map(|o| {
                    if plural == "nodes" {
                        node_item(app, o, &now)
                    } else {
                        pod_item(app, o, &now)
                    }
                })
                .collect();
            let list = list_json(&format!("{kind}List"), items.clone());
            respond(headers, &q, &items, list)
        }
    }
}

fn method_not_allowed() -> ApiError {
    ApiError::method_not_allowed("the server does not allow this method on the requested resource")
}

// ---- discovery ----

/// The group in the legacy `/apis` `APIGroupList`.
pub fn group_json() -> Value {
    let gv = json!({ "groupVersion": format!("{GROUP}/{VERSION}"), "version": VERSION });
    json!({ "name": GROUP, "versions": [gv.clone()], "preferredVersion": gv })
}

/// `/apis/metrics.k8s.io/v1beta1`.
pub fn resource_list() -> Value {
    json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": format!("{GROUP}/{VERSION}"),
        "resources": [
            { "name": "nodes", "singularName": "", "namespaced": false, "kind": "NodeMetrics", "verbs": ["get", "list"] },
            { "name": "pods", "singularName": "", "namespaced": true, "kind": "PodMetrics", "verbs": ["get", "list"] },
        ],
    })
}

/// The group's entry in the aggregated discovery document (`/apis`).
pub fn aggregated_group() -> Value {
    let r = |plural: &str, kind: &str, singular: &str, scope: &str| {
        json!({
            "resource": plural,
            "responseKind": { "group": GROUP, "version": VERSION, "kind": kind },
            "scope": scope,
            "singularResource": singular,
            "verbs": ["get", "list"],
        })
    };
    json!({
        "metadata": { "name": GROUP, "creationTimestamp": null },
        "versions": [{
            "version": VERSION,
            "resources": [
                r("nodes", "NodeMetrics", "nodemetrics", "Cluster"),
                r("pods", "PodMetrics", "podmetrics", "Namespaced"),
            ],
            "freshness": "Current",
        }],
    })
}

/// `system:aggregated-metrics-reader`, as metrics-server installs it.
pub fn aggregated_reader_role() -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {
            "name": "system:aggregated-metrics-reader",
            "labels": {
                "rbac.authorization.k8s.io/aggregate-to-admin": "true",
                "rbac.authorization.k8s.io/aggregate-to-edit": "true",
                "rbac.authorization.k8s.io/aggregate-to-view": "true",
            },
        },
        "rules": [{ "apiGroups": [GROUP], "resources": ["nodes", "pods"], "verbs": ["get", "list"] }],
    })
}

/// Ensure the reader ClusterRole exists when the cluster has the upstream
/// `view` ClusterRole to aggregate it into (no bootstrap RBAC, no role).
pub async fn ensure_reader_role(app: &AppState) {
    let Some(res) = app
        .registry
        .kinds
        .get("rbac.authorization.k8s.io", "v1", "clusterroles")
    else {
        return;
    };
    if app.registry.get(&res, None, "view").await.is_err() {
        return;
    }
    let opts = super::registry::WriteOptions {
        field_manager: "skiff-apiserver".into(),
        ..Default::default()
    };
    match app
        .registry
        .create(&res, None, aggregated_reader_role(), &opts)
        .await
    {
        Ok(_) => {}
        Err(e) if e.code == 409 => {}
        Err(e) => tracing::warn!("metrics: creating the aggregated reader role: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness() {
        let ready = json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}});
        let not = json!({"status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}});
        assert!(node_ready(&ready));
        assert!(!node_ready(&not));
        assert!(!node_ready(&json!({})));
    }

    #[test]
    fn watch_is_refused_like_upstream() {
        let e = method_not_supported("pods", "watch");
        assert_eq!(e.code, 405);
        assert_eq!(
            e.message,
            "watch is not supported on resources of kind \"pods.metrics.k8s.io\""
        );
    }

    #[test]
    fn discovery_documents() {
        assert_eq!(
            group_json()["preferredVersion"]["groupVersion"],
            "metrics.k8s.io/v1beta1"
        );
        let list = resource_list();
        let names: Vec<&str> = list["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["nodes", "pods"]);
        assert_eq!(
            aggregated_group()["versions"][0]["resources"][1]["scope"],
            "Namespaced"
        );
    }

    #[test]
    fn selectors_are_checked() {
        let q = HashMap::from([("fieldSelector".to_string(), "spec.nodeName=x".to_string())]);
        assert_eq!(list_options(&q, "PodMetrics").unwrap_err().code, 400);
        let q = HashMap::from([("fieldSelector".to_string(), "metadata.name=x".to_string())]);
        assert!(list_options(&q, "PodMetrics").is_ok());
        let q = HashMap::from([("labelSelector".to_string(), "a in (".to_string())]);
        assert_eq!(list_options(&q, "PodMetrics").unwrap_err().code, 400);
    }
}
