//! Streaming subresources proxied to the kubelet of the pod's node:
//! `pods/log`, `pods/exec`, `pods/attach`, `pods/portforward` and
//! `nodes/proxy/*`.
//!
//! The API server checks the request against the pod (bound, container
//! name valid or defaulted) with upstream's messages, then opens HTTPS to
//! the node's kubelet (`status.addresses` InternalIP, port from
//! `status.daemonEndpoints.kubeletEndpoint`, default 10250), verifying the
//! kubelet's serving certificate against the server CA and presenting the
//! API server's kubelet-client certificate. Logs stream through; SPDY
//! upgrades and WebSocket protocols the kubelet speaks itself are relayed
//! byte for byte after the 101; WebSocket `v5.channel.k8s.io` exec/attach
//! is translated to SPDY `v4.channel.k8s.io` and the WebSocket port-forward
//! tunnel (`SPDY/3.1+portforward.k8s.io`) is unwrapped into SPDY (`spdy`).
//!
//! Invariant: the client gets its 101 only after the kubelet sent its own,
//! so any kubelet failure reaches the client as a plain HTTP error (which
//! also makes WebSocket clients fall back to SPDY).

mod spdy;

use std::net::IpAddr;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::FromRequestParts;
use axum::extract::ws::WebSocketUpgrade;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use serde_json::Value;

use super::error::{ApiError, ApiResult};
use super::handlers::ItemRequest;

const V5: &str = "v5.channel.k8s.io";
const V4: &str = "v4.channel.k8s.io";
const PF_TUNNEL: &str = "SPDY/3.1+portforward.k8s.io";
const DEFAULT_KUBELET_PORT: u16 = 10250;

/// rustls client config towards kubelets: trust the server CA, present the
/// API server's kubelet-client certificate (chain PEM + key PEM).
pub fn kubelet_tls(
    server_ca_pem: &str,
    client_cert_pem: &str,
    client_key_pem: &str,
) -> Result<Arc<rustls::ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut server_ca_pem.as_bytes()) {
        roots
            .add(c.map_err(|e| format!("server CA PEM: {e}"))?)
            .map_err(|e| format!("server CA: {e}"))?;
    }
    let chain = rustls_pemfile::certs(&mut client_cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("kubelet client certificate PEM: {e}"))?;
    let key = rustls_pemfile::private_key(&mut client_key_pem.as_bytes())
        .map_err(|e| format!("kubelet client key PEM: {e}"))?
        .ok_or("no kubelet client key")?;
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| format!("kubelet client certificate: {e}"))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// Entry point from `subresources`: `pods/{log,exec,attach,portforward}`
/// and `nodes/proxy[/…]`.
pub async fn handle(r: ItemRequest<'_>, sub: &str) -> ApiResult<Response> {
    let is_pod = r.res.group.is_empty() && r.res.kind == "Pod";
    let is_node = r.res.group.is_empty() && r.res.kind == "Node";
    match sub {
        "log" if is_pod => logs(r).await,
        "exec" | "attach" if is_pod => exec_attach(r, sub).await,
        "portforward" if is_pod => port_forward(r).await,
        s if is_node && (s == "proxy" || s.starts_with("proxy/")) => node_proxy(r, s).await,
        _ => Err(ApiError::service_unavailable(format!(
            "{} \"{}\": {sub} is not available",
            r.res.plural, r.name
        ))),
    }
}

// ---- pure checks ----

fn names(pod: &Value, field: &str) -> Vec<String> {
    pod.pointer(&format!("/spec/{field}"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|c| c.get("name").and_then(Value::as_str).map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// The container a request targets: the named one (must exist in the pod),
/// else the `kubectl.kubernetes.io/default-container`, else the only one.
pub fn resolve_container(pod: &Value, requested: Option<&str>) -> Result<String, String> {
    let pod_name = pod
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let containers = names(pod, "containers");
    let inits = names(pod, "initContainers");
    let ephemeral = names(pod, "ephemeralContainers");
    match requested.filter(|c| !c.is_empty()) {
        Some(c) => {
            if containers
                .iter()
                .chain(&inits)
                .chain(&ephemeral)
                .any(|n| n == c)
            {
                Ok(c.to_string())
            } else {
                Err(format!("container {c} is not valid for pod {pod_name}"))
            }
        }
        None => {
            let annotated = pod
                .pointer("/metadata/annotations/kubectl.kubernetes.io~1default-container")
                .and_then(Value::as_str)
                .filter(|a| containers.iter().any(|n| n == a));
            if let Some(a) = annotated {
                return Ok(a.to_string());
            }
            if containers.len() == 1 {
                return Ok(containers[0].clone());
            }
            let mut msg = format!(
                "a container name must be specified for pod {pod_name}, choose one of: [{}]",
                containers.join(" ")
            );
            if !inits.is_empty() {
                msg.push_str(&format!(
                    " or one of the init containers: [{}]",
                    inits.join(" ")
                ));
            }
            Err(msg)
        }
    }
}

fn container_status<'a>(pod: &'a Value, container: &str) -> Option<&'a Value> {
    [
        "containerStatuses",
        "initContainerStatuses",
        "ephemeralContainerStatuses",
    ]
    .iter()
    .filter_map(|f| {
        pod.pointer(&format!("/status/{f}"))
            .and_then(Value::as_array)
    })
    .flatten()
    .find(|s| s.get("name").and_then(Value::as_str) == Some(container))
}

/// Can the logs of `container` be read now? (upstream's kubelet-side check,
/// done here so a pending pod gets a 400 without a node round trip).
pub fn check_log_status(pod: &Value, container: &str, previous: bool) -> Result<(), String> {
    let pod_name = pod
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let status = container_status(pod, container);
    if previous {
        let has_previous = status
            .and_then(|s| s.pointer("/lastState/terminated"))
            .is_some();
        if has_previous || status.is_none() {
            // without a recorded status let the kubelet decide
            return Ok(());
        }
        return Err(format!(
            "previous terminated container {container:?} in pod {pod_name:?} not found"
        ));
    }
    let waiting_reason = match status {
        None => Some("ContainerCreating".to_string()),
        Some(s) => {
            let running_or_done =
                s.pointer("/state/running").is_some() || s.pointer("/state/terminated").is_some();
            let has_last = s.pointer("/lastState/terminated").is_some();
            match s.pointer("/state/waiting") {
                Some(w) if !running_or_done && !has_last => Some(
                    w.get("reason")
                        .and_then(Value::as_str)
                        .unwrap_or("ContainerCreating")
                        .to_string(),
                ),
                None if !running_or_done && !has_last => Some("ContainerCreating".to_string()),
                _ => None,
            }
        }
    };
    match waiting_reason {
        Some(reason) => Err(format!(
            "container {container:?} in pod {pod_name:?} is waiting to start: {reason}"
        )),
        None => Ok(()),
    }
}

/// Host and port of a node's kubelet from its status.
pub fn kubelet_endpoint(node: &Value) -> Option<(String, u16)> {
    let addrs = node
        .pointer("/status/addresses")
        .and_then(Value::as_array)?;
    let pick = |t: &str| {
        addrs
            .iter()
            .find(|a| a.get("type").and_then(Value::as_str) == Some(t))
            .and_then(|a| a.get("address").and_then(Value::as_str))
    };
    let host = pick("InternalIP")
        .or_else(|| pick("ExternalIP"))
        .or_else(|| pick("Hostname"))?;
    let port = node
        .pointer("/status/daemonEndpoints/kubeletEndpoint/Port")
        .and_then(Value::as_u64)
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p != 0)
        .unwrap_or(DEFAULT_KUBELET_PORT);
    Some((host.to_string(), port))
}

/// The raw query pairs (repeated keys kept), minus the ones in `drop`.
fn query_without(query: Option<&str>, drop: &[&str]) -> ApiResult<String> {
    let pairs: Vec<(String, String)> = match query {
        None => Vec::new(),
        Some(q) => serde_urlencoded::from_str(q)
            .map_err(|e| ApiError::bad_request(format!("invalid query string: {e}")))?,
    };
    let kept: Vec<(String, String)> = pairs
        .into_iter()
        .filter(|(k, _)| !drop.contains(&k.as_str()))
        .collect();
    serde_urlencoded::to_string(kept).map_err(|e| ApiError::internal(e.to_string()))
}

fn query_value(query: Option<&str>, key: &str) -> Option<String> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query?).ok()?;
    pairs.into_iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

fn qflag(query: Option<&str>, key: &str) -> bool {
    matches!(
        query_value(query, key).as_deref(),
        Some("1" | "true" | "True" | "")
    )
}

fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

// ---- pod and node lookup ----

struct Target {
    host: String,
    port: u16,
}

async fn pod_and_node(r: &ItemRequest<'_>) -> ApiResult<(Value, Target)> {
    let pod = r.app.registry.get(r.res, r.ns, r.name).await?;
    let node_name = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            ApiError::bad_request(format!("pod {} does not have a host assigned", r.name))
        })?
        .to_string();
    let target = node_target(r, &node_name).await?;
    Ok((pod, target))
}

async fn node_target(r: &ItemRequest<'_>, node_name: &str) -> ApiResult<Target> {
    let nodes = r
        .app
        .registry
        .kinds
        .get("", "v1", "nodes")
        .ok_or_else(|| ApiError::internal("nodes are not served"))?;
    let node = r.app.registry.get(&nodes, None, node_name).await?;
    let (host, port) = kubelet_endpoint(&node).ok_or_else(|| {
        ApiError::bad_request(format!(
            "node {node_name:?} has no address to reach its kubelet"
        ))
    })?;
    Ok(Target { host, port })
}

// ---- kubelet connection ----

fn dial_error(e: impl std::fmt::Display) -> ApiError {
    ApiError::internal(format!("error dialing backend: {e}"))
}

/// An HTTP/1 connection over TLS (the apiserver's kubelet-client
/// certificate) to a kubelet, upgrades allowed, and the `Host` value for its
/// requests. Used by the proxy and the metrics scraper.
pub(crate) async fn dial_kubelet(
    tls: Arc<rustls::ClientConfig>,
    host: &str,
    port: u16,
) -> Result<(hyper::client::conn::http1::SendRequest<Full<Bytes>>, String), String> {
    let server_name = match host.parse::<IpAddr>() {
        Ok(ip) => ServerName::IpAddress(ip.into()),
        Err(_) => ServerName::try_from(host.to_string()).map_err(|e| e.to_string())?,
    };
    let tcp = tokio::net::TcpStream::connect((host, port))
        .await
        .map_err(|e| e.to_string())?;
    let _ = tcp.set_nodelay(true);
    let stream = tokio_rustls::TlsConnector::from(tls)
        .connect(server_name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    let authority = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    Ok((sender, authority))
}

async fn kubelet_request(
    r: &ItemRequest<'_>,
    target: &Target,
    method: Method,
    path_and_query: &str,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<hyper::Response<Incoming>> {
    let tls = r.app.kubelet_tls.clone().ok_or_else(|| {
        ApiError::service_unavailable("this server has no kubelet client certificate")
    })?;
    let (mut sender, host) = dial_kubelet(tls, &target.host, target.port)
        .await
        .map_err(dial_error)?;
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(path_and_query)
        .body(Full::new(body))
        .map_err(|e| ApiError::internal(e.to_string()))?;
    *req.headers_mut() = headers;
    if let Ok(h) = HeaderValue::from_str(&host) {
        req.headers_mut().insert(header::HOST, h);
    }
    sender.send_request(req).await.map_err(dial_error)
}

/// Headers forwarded to the kubelet: everything but credentials and
/// per-hop framing.
fn forwarded(headers: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    for (k, v) in headers {
        if !matches!(
            k.as_str(),
            "host"
                | "authorization"
                | "cookie"
                | "content-length"
                | "transfer-encoding"
                | "impersonate-user"
                | "impersonate-group"
        ) {
            out.append(k.clone(), v.clone());
        }
    }
    out
}

fn reason_for(code: u16) -> &'static str {
    match code {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        405 => "MethodNotAllowed",
        409 => "Conflict",
        503 => "ServiceUnavailable",
        504 => "Timeout",
        _ => "InternalError",
    }
}

/// A kubelet error as a `Status` (what upstream's response checker does).
async fn kubelet_error(resp: hyper::Response<Incoming>) -> ApiError {
    let code = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&body).trim().to_string();
    let code = if (400..600).contains(&code) {
        code
    } else {
        500
    };
    ApiError::new(code, reason_for(code), text)
}

/// Pass a kubelet response through (status, headers, streamed body).
fn passthrough(resp: hyper::Response<Incoming>) -> Response {
    let (parts, body) = resp.into_parts();
    let mut out = Response::new(Body::new(body));
    *out.status_mut() = parts.status;
    for (k, v) in &parts.headers {
        if !matches!(
            k.as_str(),
            "connection" | "transfer-encoding" | "keep-alive"
        ) {
            out.headers_mut().append(k.clone(), v.clone());
        }
    }
    out
}

// ---- logs ----

async fn logs(r: ItemRequest<'_>) -> ApiResult<Response> {
    if *r.method != Method::GET {
        return Err(ApiError::method_not_allowed(
            "the server does not allow this method on the requested resource",
        ));
    }
    let query = r.uri.query();
    for k in ["tailLines", "limitBytes", "sinceSeconds"] {
        if let Some(v) = query_value(query, k) {
            let n: i64 = v
                .parse()
                .map_err(|_| ApiError::bad_request(format!("invalid {k}: {v:?}")))?;
            let min = if k == "tailLines" { 0 } else { 1 };
            if n < min {
                return Err(ApiError::unprocessable(format!(
                    "PodLogOptions \"{}\" is invalid: {k}: Invalid value: {n}: must be {}",
                    r.name,
                    if min == 0 {
                        "greater than or equal to 0"
                    } else {
                        "greater than 0"
                    }
                )));
            }
        }
    }
    if query_value(query, "sinceSeconds").is_some() && query_value(query, "sinceTime").is_some() {
        return Err(ApiError::unprocessable(format!(
            "PodLogOptions \"{}\" is invalid: sinceSeconds: Forbidden: at most one of `sinceTime` or `sinceSeconds` may be specified",
            r.name
        )));
    }
    let (pod, target) = pod_and_node(&r).await?;
    let container = resolve_container(&pod, query_value(query, "container").as_deref())
        .map_err(ApiError::bad_request)?;
    check_log_status(&pod, &container, qflag(query, "previous")).map_err(ApiError::bad_request)?;
    let ns = r.ns.unwrap_or("default");
    let q = query_without(
        query,
        &["container", "pretty", "insecureSkipTLSVerifyBackend"],
    )?;
    let path = format!(
        "/containerLogs/{}/{}/{}{}{}",
        enc(ns),
        enc(r.name),
        enc(&container),
        if q.is_empty() { "" } else { "?" },
        q
    );
    let resp = kubelet_request(
        &r,
        &target,
        Method::GET,
        &path,
        HeaderMap::new(),
        Bytes::new(),
    )
    .await?;
    if !resp.status().is_success() {
        return Err(kubelet_error(resp).await);
    }
    let mut out = passthrough(resp);
    out.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    Ok(out)
}

// ---- exec / attach / port-forward ----

fn header_has(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.to_str()
            .map(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
            .unwrap_or(false)
    })
}

fn ws_protocols(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|s| s.split(','))
        .map(|s| s.trim().to_string())
        .collect()
}

fn spdy_headers(protocol: &'static str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("SPDY/3.1"));
    h.insert(
        "x-stream-protocol-version",
        HeaderValue::from_static(protocol),
    );
    h
}

async fn ws_upgrade(r: &mut ItemRequest<'_>) -> ApiResult<WebSocketUpgrade> {
    let mut req = axum::http::Request::builder()
        .method(Method::GET)
        .uri(r.uri.clone())
        .body(())
        .map_err(|e| ApiError::internal(e.to_string()))?;
    *req.headers_mut() = r.headers.clone();
    if let Some(up) = r.upgrade.take() {
        req.extensions_mut().insert(up);
    }
    let (mut parts, ()) = req.into_parts();
    WebSocketUpgrade::from_request_parts(&mut parts, &())
        .await
        .map_err(|e| ApiError::bad_request(format!("websocket upgrade: {e}")))
}

async fn exec_attach(mut r: ItemRequest<'_>, sub: &str) -> ApiResult<Response> {
    if !matches!(*r.method, Method::GET | Method::POST) {
        return Err(ApiError::method_not_allowed(
            "the server does not allow this method on the requested resource",
        ));
    }
    let query = r.uri.query();
    let (pod, target) = pod_and_node(&r).await?;
    let container = resolve_container(&pod, query_value(query, "container").as_deref())
        .map_err(ApiError::bad_request)?;
    if sub == "exec" && query_value(query, "command").is_none() {
        return Err(ApiError::bad_request("you must specify at least 1 command"));
    }
    let ns = r.ns.unwrap_or("default").to_string();
    let q = query_without(query, &["container"])?;
    let path = format!(
        "/{sub}/{}/{}/{}?{q}",
        enc(&ns),
        enc(r.name),
        enc(&container)
    );
    let is_ws = header_has(r.headers, header::UPGRADE, "websocket");
    if is_ws && ws_protocols(r.headers).iter().any(|p| p == V5) {
        let resp = kubelet_request(
            &r,
            &target,
            Method::POST,
            &path,
            spdy_headers(V4),
            Bytes::new(),
        )
        .await?;
        if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
            return Err(kubelet_error(resp).await);
        }
        let streams = spdy::Streams {
            stdin: qflag(query, "stdin"),
            stdout: qflag(query, "stdout"),
            stderr: qflag(query, "stderr"),
            tty: qflag(query, "tty"),
        };
        let ws = ws_upgrade(&mut r).await?.protocols([V5]);
        return Ok(ws.on_upgrade(move |socket| async move {
            tracing::trace!("websocket upgraded; waiting for the kubelet's upgrade");
            match hyper::upgrade::on(resp).await {
                Ok(up) => spdy::bridge_exec(socket, TokioIo::new(up), streams).await,
                Err(e) => tracing::debug!("kubelet upgrade failed: {e}"),
            }
        }));
    }
    relay_upgrade(r, &target, &path).await
}

async fn port_forward(mut r: ItemRequest<'_>) -> ApiResult<Response> {
    if !matches!(*r.method, Method::GET | Method::POST) {
        return Err(ApiError::method_not_allowed(
            "the server does not allow this method on the requested resource",
        ));
    }
    let (_, target) = pod_and_node(&r).await?;
    let ns = r.ns.unwrap_or("default").to_string();
    let q = query_without(r.uri.query(), &[])?;
    let path = format!(
        "/portForward/{}/{}{}{}",
        enc(&ns),
        enc(r.name),
        if q.is_empty() { "" } else { "?" },
        q
    );
    let is_ws = header_has(r.headers, header::UPGRADE, "websocket");
    if is_ws && ws_protocols(r.headers).iter().any(|p| p == PF_TUNNEL) {
        let resp = kubelet_request(
            &r,
            &target,
            Method::POST,
            &path,
            spdy_headers("portforward.k8s.io"),
            Bytes::new(),
        )
        .await?;
        if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
            return Err(kubelet_error(resp).await);
        }
        let ws = ws_upgrade(&mut r).await?.protocols([PF_TUNNEL]);
        return Ok(ws.on_upgrade(move |socket| async move {
            match hyper::upgrade::on(resp).await {
                Ok(up) => spdy::tunnel(socket, TokioIo::new(up)).await,
                Err(e) => tracing::debug!("kubelet upgrade failed: {e}"),
            }
        }));
    }
    relay_upgrade(r, &target, &path).await
}

/// Relay an upgrade request as is; after the kubelet's 101 answer 101 with
/// its headers and copy bytes both ways. A kubelet refusal is passed on.
async fn relay_upgrade(r: ItemRequest<'_>, target: &Target, path: &str) -> ApiResult<Response> {
    if !header_has(r.headers, header::CONNECTION, "upgrade") {
        return Err(ApiError::bad_request("Upgrade request required"));
    }
    let client_up = r
        .upgrade
        .clone()
        .ok_or_else(|| ApiError::bad_request("this connection cannot be upgraded"))?;
    let mut resp = kubelet_request(
        &r,
        target,
        r.method.clone(),
        path,
        forwarded(r.headers),
        Bytes::new(),
    )
    .await?;
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        return Ok(passthrough(resp));
    }
    let kubelet_up = hyper::upgrade::on(&mut resp);
    tokio::spawn(async move {
        let (Ok(a), Ok(b)) = (client_up.await, kubelet_up.await) else {
            return;
        };
        let mut a = TokioIo::new(a);
        let mut b = TokioIo::new(b);
        let _ = tokio::io::copy_bidirectional(&mut a, &mut b).await;
    });
    let mut out = StatusCode::SWITCHING_PROTOCOLS.into_response();
    for (k, v) in resp.headers() {
        if !matches!(k.as_str(), "content-length" | "transfer-encoding") {
            out.headers_mut().append(k.clone(), v.clone());
        }
    }
    Ok(out)
}

// ---- nodes/proxy ----

async fn node_proxy(r: ItemRequest<'_>, sub: &str) -> ApiResult<Response> {
    let target = node_target(&r, r.name).await?;
    let rest = sub.strip_prefix("proxy").unwrap_or_default();
    let rest = if rest.is_empty() { "/" } else { rest };
    let path = match r.uri.query() {
        Some(q) => format!("{rest}?{q}"),
        None => rest.to_string(),
    };
    if header_has(r.headers, header::CONNECTION, "upgrade") {
        return relay_upgrade(r, &target, &path).await;
    }
    let resp = kubelet_request(
        &r,
        &target,
        r.method.clone(),
        &path,
        forwarded(r.headers),
        r.body.clone(),
    )
    .await?;
    Ok(passthrough(resp))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod() -> Value {
        json!({
            "metadata": {"name": "p"},
            "spec": {
                "containers": [{"name": "a"}, {"name": "b"}],
                "initContainers": [{"name": "i"}]
            }
        })
    }

    #[test]
    fn containers() {
        let p = pod();
        let cases: Vec<(Option<&str>, Result<&str, &str>)> = vec![
            (Some("a"), Ok("a")),
            (Some("i"), Ok("i")),
            (Some("x"), Err("container x is not valid for pod p")),
            (
                None,
                Err(
                    "a container name must be specified for pod p, choose one of: [a b] or one of the init containers: [i]",
                ),
            ),
        ];
        for (req, want) in cases {
            assert_eq!(
                resolve_container(&p, req),
                want.map(String::from).map_err(String::from)
            );
        }
        let mut p2 = pod();
        p2["metadata"]["annotations"] = json!({"kubectl.kubernetes.io/default-container": "b"});
        assert_eq!(resolve_container(&p2, None), Ok("b".into()));
        let one = json!({"metadata": {"name": "q"}, "spec": {"containers": [{"name": "c"}]}});
        assert_eq!(resolve_container(&one, Some("")), Ok("c".into()));
    }

    #[test]
    fn log_status() {
        let mk = |status: Value| json!({"metadata": {"name": "p"}, "status": {"containerStatuses": [status]}});
        let waiting =
            mk(json!({"name": "c", "state": {"waiting": {"reason": "ContainerCreating"}}}));
        assert_eq!(
            check_log_status(&waiting, "c", false),
            Err("container \"c\" in pod \"p\" is waiting to start: ContainerCreating".into())
        );
        let no_status = json!({"metadata": {"name": "p"}});
        assert!(check_log_status(&no_status, "c", false).is_err());
        let running = mk(json!({"name": "c", "state": {"running": {}}}));
        assert_eq!(check_log_status(&running, "c", false), Ok(()));
        assert_eq!(
            check_log_status(&running, "c", true),
            Err("previous terminated container \"c\" in pod \"p\" not found".into())
        );
        let crash = mk(
            json!({"name": "c", "state": {"waiting": {"reason": "CrashLoopBackOff"}},
            "lastState": {"terminated": {"exitCode": 1}}}),
        );
        assert_eq!(check_log_status(&crash, "c", false), Ok(()));
        assert_eq!(check_log_status(&crash, "c", true), Ok(()));
    }

    #[test]
    fn endpoints() {
        let n = json!({"status": {"addresses": [
            {"type": "Hostname", "address": "n1"},
            {"type": "InternalIP", "address": "10.0.0.5"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 12345}}}});
        assert_eq!(kubelet_endpoint(&n), Some(("10.0.0.5".into(), 12345)));
        let n = json!({"status": {"addresses": [{"type": "Hostname", "address": "n1"}]}});
        assert_eq!(kubelet_endpoint(&n), Some(("n1".into(), 10250)));
        assert_eq!(kubelet_endpoint(&json!({})), None);
    }

    #[test]
    fn queries() {
        assert_eq!(
            query_without(
                Some("command=sh&command=-c&container=a&stdin=true"),
                &["container"]
            )
            .unwrap(),
            "command=sh&command=-c&stdin=true"
        );
        assert!(qflag(Some("tty=1"), "tty"));
        assert!(!qflag(Some("tty=false"), "tty"));
    }
}
