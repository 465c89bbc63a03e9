//! The kubelet HTTPS server (port 10250): `/healthz`, `/pods`,
//! `/containerLogs`, `/exec`, `/attach`, `/portForward`, `/runningpods/`,
//! `/stats/summary` and `/metrics/resource` (`stats`), as upstream. `/pods`
//! lists what the pod workers run (static pods included) from
//! `kubelet::running`.
//!
//! Containers are found through CRI only (label filters from the contract in
//! `kubelet/mod.rs`); logs are read from the CRI log file (`logs`). For
//! exec/attach/port-forward the runtime's streaming URL is fetched from CRI
//! and the client's upgrade request (SPDY or WebSocket, whatever protocol it
//! offers) is relayed to containerd's streaming server unchanged; after the
//! 101 the bytes are copied both ways.
//!
//! Invariants: every endpoint except `/healthz` needs a client certificate
//! verified against the cluster client CA (401 without one) whose identity
//! is the API server or in `system:masters` (403 otherwise). A bad request
//! is a 4xx with a plain-text message, never a panic.

pub mod dev;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::cri::{Cri, api};
use super::labels;
use super::logs::{self, LogOptions};
use super::stats::{self, collect::StatsProvider};
use crate::agent::AgentConfig;

type Body = BoxBody<Bytes, std::io::Error>;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("kubelet TLS: {0}")]
    Tls(String),
}

/// Who may call the kubelet: the API server's client identity or an admin.
pub fn authorized(user: &str, groups: &[String]) -> bool {
    user == "system:kube-apiserver" || groups.iter().any(|g| g == "system:masters")
}

/// A rustls config serving `serving_cert_pem` (leaf first) that asks for a
/// client certificate signed by `client_ca_pem`. Clients without one still
/// complete the handshake and get 401, like upstream without anonymous auth.
pub fn tls_config(
    serving_cert_pem: &str,
    serving_key_pem: &str,
    client_ca_pem: &str,
) -> Result<Arc<rustls::ServerConfig>, ServerError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut client_ca_pem.as_bytes()) {
        let c = c.map_err(|e| ServerError::Tls(format!("client CA PEM: {e}")))?;
        roots
            .add(c)
            .map_err(|e| ServerError::Tls(format!("client CA: {e}")))?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|e| ServerError::Tls(format!("client verifier: {e}")))?;
    let chain = rustls_pemfile::certs(&mut serving_cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ServerError::Tls(format!("serving certificate PEM: {e}")))?;
    if chain.is_empty() {
        return Err(ServerError::Tls("no serving certificate".into()));
    }
    let key = rustls_pemfile::private_key(&mut serving_key_pem.as_bytes())
        .map_err(|e| ServerError::Tls(format!("serving key PEM: {e}")))?
        .ok_or_else(|| ServerError::Tls("no serving key".into()))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ServerError::Tls(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| ServerError::Tls(format!("serving certificate: {e}")))?;
    // upgrades (SPDY, WebSocket) need HTTP/1.1
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

struct Ctx {
    cri: Cri,
    running: super::running::RunningPods,
    #[allow(dead_code)]
    cfg: AgentConfig,
    stats: StatsProvider,
}

/// Serve until `stop` turns true. `client_ca_pem` must be the CA `tls`
/// verifies client certificates against (kept for symmetry with the agent's
/// wiring; the TLS layer does the verification).
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    cri: Cri,
    cfg: AgentConfig,
    running: super::running::RunningPods,
    client_ca_pem: String,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let _ = client_ca_pem;
    let stats = StatsProvider::new(cri.clone(), &cfg.node_name, &cfg.agent_dir);
    let ctx = Arc::new(Ctx {
        cri,
        running,
        cfg,
        stats,
    });
    let acceptor = TlsAcceptor::from(tls);
    loop {
        let (tcp, peer): (tokio::net::TcpStream, SocketAddr) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!("kubelet server: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            r = stop.changed() => {
                if r.is_err() || *stop.borrow() { return; }
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let Some((tls, identity)) =
                crate::pki::accept_tls(&acceptor, tcp, peer, "kubelet").await
            else {
                return;
            };
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let ctx = ctx.clone();
                let identity = identity.clone();
                async move {
                    let allowed = identity.as_ref().map(|i| authorized(&i.user, &i.groups));
                    Ok::<_, std::convert::Infallible>(
                        route(&ctx, allowed, req)
                            .await
                            .unwrap_or_else(|e| text(e.code, e.msg)),
                    )
                }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            if let Err(e) = builder
                .serve_connection_with_upgrades(TokioIo::new(tls), svc)
                .await
            {
                tracing::debug!(%peer, "kubelet connection ended: {e}");
            }
        });
    }
}

fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).map_err(|e| match e {}).boxed()
}

fn text(code: StatusCode, msg: impl Into<String>) -> Response<Body> {
    let mut r = Response::new(full(msg.into()));
    *r.status_mut() = code;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn with_type(body: Body, content_type: &'static str) -> Response<Body> {
    let mut r = Response::new(body);
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// A refusal: status code and plain-text message.
#[derive(Debug)]
struct HttpError {
    code: StatusCode,
    msg: String,
}

impl HttpError {
    fn new(code: StatusCode, msg: impl Into<String>) -> Self {
        HttpError {
            code,
            msg: msg.into(),
        }
    }
}

type Answer = Result<Response<Body>, HttpError>;

fn query_pairs(req: &Request<Incoming>) -> Result<Vec<(String, String)>, HttpError> {
    match req.uri().query() {
        None => Ok(Vec::new()),
        Some(q) => serde_urlencoded::from_str(q)
            .map_err(|e| HttpError::new(StatusCode::BAD_REQUEST, format!("invalid query: {e}"))),
    }
}

fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

async fn route(ctx: &Ctx, allowed: Option<bool>, req: Request<Incoming>) -> Answer {
    let path = req.uri().path().to_string();
    let segs: Vec<String> = path
        .trim_start_matches('/')
        .split('/')
        .map(decode)
        .collect();
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    if matches!(segs.as_slice(), ["healthz"]) {
        return Ok(text(StatusCode::OK, "ok"));
    }
    match allowed {
        None => return Err(HttpError::new(StatusCode::UNAUTHORIZED, "Unauthorized")),
        Some(false) => {
            return Err(HttpError::new(
                StatusCode::FORBIDDEN,
                "Forbidden (only the API server may use the kubelet API)",
            ));
        }
        Some(true) => {}
    }
    let method = req.method().clone();
    match (method, segs.as_slice()) {
        (Method::GET, ["containerLogs", ns, pod, container]) => {
            container_logs(ctx, ns, pod, container, &req).await
        }
        (Method::GET | Method::POST, ["exec" | "attach", ns, pod, container])
        | (Method::GET | Method::POST, ["exec" | "attach", ns, pod, _, container]) => {
            let uid = if segs.len() == 5 { Some(segs[3]) } else { None };
            let attach = segs[0] == "attach";
            exec_or_attach(ctx, ns, pod, uid, container, attach, req).await
        }
        (Method::GET | Method::POST, ["portForward", ns, pod])
        | (Method::GET | Method::POST, ["portForward", ns, pod, _]) => {
            let uid = segs.get(3).copied();
            port_forward(ctx, ns, pod, uid, req).await
        }
        (Method::GET, ["runningpods", ..]) => running_pods(ctx).await,
        (Method::GET, ["pods"]) => Ok(json_response(&ctx.running.pod_list_json())),
        (Method::GET, ["stats", "summary"] | ["stats", "summary", ""]) => {
            let (summary, _) = ctx.stats.summary().await;
            let body = serde_json::to_vec(&summary)
                .map_err(|e| HttpError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
            Ok(with_type(full(body), "application/json"))
        }
        (Method::GET, ["metrics", "resource"]) => {
            let (summary, failed) = ctx.stats.summary().await;
            let text = stats::render_prometheus(&summary, failed);
            Ok(with_type(full(text), stats::PROMETHEUS_CONTENT_TYPE))
        }
        (
            _,
            [
                "containerLogs" | "exec" | "attach" | "portForward" | "runningpods" | "pods"
                | "stats" | "metrics",
                ..,
            ],
        ) => Err(HttpError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed",
        )),
        _ => Err(HttpError::new(StatusCode::NOT_FOUND, "404 page not found")),
    }
}

// ---- container lookup (CRI) ----

fn restart_count(c: &api::Container) -> u32 {
    c.annotations
        .get(labels::RESTART_COUNT)
        .and_then(|v| v.parse().ok())
        .or_else(|| c.metadata.as_ref().map(|m| m.attempt))
        .unwrap_or(0)
}

fn is_running(state: i32) -> bool {
    state == api::ContainerState::ContainerRunning as i32
}

/// The current instance: highest restart count, newest on ties.
pub fn pick_current(cs: &[api::Container]) -> Option<&api::Container> {
    cs.iter().max_by_key(|c| (restart_count(c), c.created_at))
}

/// The previous instance: an exited one with the highest restart count
/// below the current one's.
pub fn pick_previous(cs: &[api::Container]) -> Option<&api::Container> {
    let current = restart_count(pick_current(cs)?);
    cs.iter()
        .filter(|c| restart_count(c) < current && !is_running(c.state))
        .max_by_key(|c| (restart_count(c), c.created_at))
}

fn pod_selector(ns: &str, pod: &str, uid: Option<&str>) -> HashMap<String, String> {
    let mut m = HashMap::from([
        (labels::POD_NAME.to_string(), pod.to_string()),
        (labels::POD_NAMESPACE.to_string(), ns.to_string()),
    ]);
    if let Some(u) = uid.filter(|u| !u.is_empty()) {
        m.insert(labels::POD_UID.to_string(), u.to_string());
    }
    m
}

fn cri_error(e: tonic::Status) -> HttpError {
    HttpError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("container runtime: {}", e.message()),
    )
}

async fn containers_of(
    ctx: &Ctx,
    ns: &str,
    pod: &str,
    uid: Option<&str>,
    container: &str,
) -> Result<Vec<api::Container>, HttpError> {
    let mut sel = pod_selector(ns, pod, uid);
    sel.insert(labels::CONTAINER_NAME.to_string(), container.to_string());
    let mut rt = ctx.cri.runtime.clone();
    let resp = rt
        .list_containers(api::ListContainersRequest {
            filter: Some(api::ContainerFilter {
                label_selector: sel,
                ..Default::default()
            }),
        })
        .await
        .map_err(cri_error)?;
    Ok(resp.into_inner().containers)
}

async fn running_container(
    ctx: &Ctx,
    ns: &str,
    pod: &str,
    uid: Option<&str>,
    container: &str,
) -> Result<String, HttpError> {
    let cs = containers_of(ctx, ns, pod, uid, container).await?;
    match pick_current(&cs) {
        Some(c) if is_running(c.state) => Ok(c.id.clone()),
        Some(_) => Err(HttpError::new(
            StatusCode::BAD_REQUEST,
            format!("container {container} is not running in pod {pod}_{ns}"),
        )),
        None => Err(HttpError::new(
            StatusCode::NOT_FOUND,
            format!("container not found ({container:?})"),
        )),
    }
}

async fn container_status(cri: &Cri, id: &str) -> Result<api::ContainerStatus, tonic::Status> {
    let mut rt = cri.runtime.clone();
    rt.container_status(api::ContainerStatusRequest {
        container_id: id.to_string(),
        verbose: false,
    })
    .await?
    .into_inner()
    .status
    .ok_or_else(|| tonic::Status::not_found("no status"))
}

// ---- logs ----

async fn container_logs(
    ctx: &Ctx,
    ns: &str,
    pod: &str,
    container: &str,
    req: &Request<Incoming>,
) -> Answer {
    let pairs = query_pairs(req)?;
    let opts = LogOptions::from_query(&pairs, chrono::Utc::now())
        .map_err(|e| HttpError::new(StatusCode::BAD_REQUEST, e.to_string()))?;
    let cs = containers_of(ctx, ns, pod, None, container).await?;
    let chosen = if opts.previous {
        pick_previous(&cs).ok_or_else(|| {
            HttpError::new(
                StatusCode::BAD_REQUEST,
                format!("previous terminated container {container:?} in pod {pod:?} not found"),
            )
        })?
    } else {
        pick_current(&cs).ok_or_else(|| {
            HttpError::new(
                StatusCode::BAD_REQUEST,
                format!("container {container:?} in pod {pod:?} is not available"),
            )
        })?
    };
    let id = chosen.id.clone();
    let status = container_status(&ctx.cri, &id).await.map_err(cri_error)?;
    if status.log_path.is_empty() {
        return Err(HttpError::new(
            StatusCode::BAD_REQUEST,
            format!("container {container:?} in pod {pod:?} has no log file"),
        ));
    }
    let path = std::path::PathBuf::from(&status.log_path);
    let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(16);
    let runtime = ctx.cri.clone();
    let mut opts = opts;
    opts.follow = opts.follow && is_running(status.state);
    let path2 = path.clone();
    tokio::spawn(async move {
        let running = || {
            let rt = runtime.clone();
            let id = id.clone();
            async move {
                match container_status(&rt, &id).await {
                    Ok(s) => is_running(s.state),
                    Err(_) => false,
                }
            }
        };
        if let Err(e) = logs::stream_file(&path2, &opts, tx, running).await {
            tracing::debug!(path = %path2.display(), "log stream ended: {e}");
        }
    });
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
    let body = StreamBody::new(futures::StreamExt::map(stream, |chunk| {
        Ok::<_, std::io::Error>(Frame::data(Bytes::from(chunk)))
    }));
    let mut r = Response::new(BodyExt::boxed(body));
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    Ok(r)
}

// ---- exec / attach / port-forward ----

fn flag(pairs: &[(String, String)], k: &str) -> bool {
    pairs
        .iter()
        .any(|(n, v)| n == k && matches!(v.as_str(), "1" | "true" | "True" | ""))
}

async fn exec_or_attach(
    ctx: &Ctx,
    ns: &str,
    pod: &str,
    uid: Option<&str>,
    container: &str,
    attach: bool,
    req: Request<Incoming>,
) -> Answer {
    let pairs = query_pairs(&req)?;
    let tty = flag(&pairs, "tty");
    let stdin = flag(&pairs, "stdin") || flag(&pairs, "input");
    let stdout = flag(&pairs, "stdout") || flag(&pairs, "output");
    let stderr = (flag(&pairs, "stderr") || flag(&pairs, "error")) && !tty;
    if !stdin && !stdout && !stderr {
        return Err(HttpError::new(
            StatusCode::BAD_REQUEST,
            "you must specify at least 1 of stdin, stdout, stderr",
        ));
    }
    let id = running_container(ctx, ns, pod, uid, container).await?;
    let mut rt = ctx.cri.runtime.clone();
    let url = if attach {
        rt.attach(api::AttachRequest {
            container_id: id,
            stdin,
            tty,
            stdout,
            stderr,
        })
        .await
        .map_err(cri_error)?
        .into_inner()
        .url
    } else {
        let cmd: Vec<String> = pairs
            .iter()
            .filter(|(k, _)| k == "command")
            .map(|(_, v)| v.clone())
            .collect();
        if cmd.is_empty() {
            return Err(HttpError::new(
                StatusCode::BAD_REQUEST,
                "you must specify at least 1 command",
            ));
        }
        rt.exec(api::ExecRequest {
            container_id: id,
            cmd,
            tty,
            stdin,
            stdout,
            stderr,
        })
        .await
        .map_err(cri_error)?
        .into_inner()
        .url
    };
    relay_upgrade(&url, req).await
}

async fn port_forward(
    ctx: &Ctx,
    ns: &str,
    pod: &str,
    uid: Option<&str>,
    req: Request<Incoming>,
) -> Answer {
    let pairs = query_pairs(&req)?;
    let mut ports = Vec::new();
    for (k, v) in &pairs {
        if k == "port" || k == "ports" {
            for p in v.split(',') {
                let n: u16 = p.trim().parse().map_err(|_| {
                    HttpError::new(StatusCode::BAD_REQUEST, format!("invalid port {p:?}"))
                })?;
                ports.push(i32::from(n));
            }
        }
    }
    let mut rt = ctx.cri.runtime.clone();
    let sandboxes = rt
        .list_pod_sandbox(api::ListPodSandboxRequest {
            filter: Some(api::PodSandboxFilter {
                label_selector: pod_selector(ns, pod, uid),
                ..Default::default()
            }),
        })
        .await
        .map_err(cri_error)?
        .into_inner()
        .items;
    let sandbox = sandboxes
        .iter()
        .filter(|s| s.state == api::PodSandboxState::SandboxReady as i32)
        .max_by_key(|s| s.created_at)
        .ok_or_else(|| {
            HttpError::new(
                StatusCode::NOT_FOUND,
                format!("pod {pod:?} in namespace {ns:?} not found"),
            )
        })?;
    let url = rt
        .port_forward(api::PortForwardRequest {
            pod_sandbox_id: sandbox.id.clone(),
            port: ports,
        })
        .await
        .map_err(cri_error)?
        .into_inner()
        .url;
    relay_upgrade(&url, req).await
}

/// Headers that belong to one hop only and are never relayed.
fn relay_header(name: &header::HeaderName) -> bool {
    !matches!(
        name.as_str(),
        "host" | "authorization" | "content-length" | "transfer-encoding" | "cookie"
    )
}

/// Relay an upgrade request to the runtime's streaming URL
/// (`http://host:port/path`) and, after its 101, the bytes both ways.
async fn relay_upgrade(url: &str, mut req: Request<Incoming>) -> Answer {
    let uri: http::Uri = url.parse().map_err(|_| {
        HttpError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("bad streaming URL {url:?}"),
        )
    })?;
    let authority = uri
        .authority()
        .map(|a| a.as_str().to_string())
        .ok_or_else(|| {
            HttpError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "streaming URL without host",
            )
        })?;
    let path = uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    let tcp = tokio::net::TcpStream::connect(&authority)
        .await
        .map_err(|e| HttpError::new(StatusCode::BAD_GATEWAY, format!("streaming server: {e}")))?;
    let _ = tcp.set_nodelay(true);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| HttpError::new(StatusCode::BAD_GATEWAY, format!("streaming server: {e}")))?;
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    let mut out = Request::builder()
        .method(req.method().clone())
        .uri(path)
        .body(Full::new(Bytes::new()))
        .map_err(|e| HttpError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    copy_headers(req.headers(), out.headers_mut());
    if let Ok(h) = HeaderValue::from_str(&authority) {
        out.headers_mut().insert(header::HOST, h);
    }
    let mut resp = sender
        .send_request(out)
        .await
        .map_err(|e| HttpError::new(StatusCode::BAD_GATEWAY, format!("streaming server: {e}")))?;
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        let (parts, body) = resp.into_parts();
        let bytes = body
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        let mut r = Response::from_parts(parts, full(bytes));
        r.headers_mut().remove(header::TRANSFER_ENCODING);
        return Ok(r);
    }
    let client_up = hyper::upgrade::on(&mut req);
    let server_up = hyper::upgrade::on(&mut resp);
    tokio::spawn(async move {
        let (Ok(a), Ok(b)) = (client_up.await, server_up.await) else {
            return;
        };
        let mut a = TokioIo::new(a);
        let mut b = TokioIo::new(b);
        let _ = tokio::io::copy_bidirectional(&mut a, &mut b).await;
    });
    let mut r = Response::new(full(Bytes::new()));
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    copy_headers(resp.headers(), r.headers_mut());
    Ok(r)
}

fn copy_headers(from: &HeaderMap, to: &mut HeaderMap) {
    for (k, v) in from {
        if relay_header(k) {
            to.append(k.clone(), v.clone());
        }
    }
}

// ---- running pods ----

fn json_response(body: &serde_json::Value) -> Response<Body> {
    let mut r = Response::new(full(body.to_string()));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

async fn running_pods(ctx: &Ctx) -> Answer {
    let mut rt = ctx.cri.runtime.clone();
    let sandboxes = rt
        .list_pod_sandbox(api::ListPodSandboxRequest { filter: None })
        .await
        .map_err(cri_error)?
        .into_inner()
        .items;
    let containers = rt
        .list_containers(api::ListContainersRequest { filter: None })
        .await
        .map_err(cri_error)?
        .into_inner()
        .containers;
    let items: Vec<serde_json::Value> = sandboxes
        .iter()
        .filter(|s| s.state == api::PodSandboxState::SandboxReady as i32)
        .map(|s| {
            let l = |k: &str| s.labels.get(k).cloned().unwrap_or_default();
            let cs: Vec<serde_json::Value> = containers
                .iter()
                .filter(|c| c.pod_sandbox_id == s.id && is_running(c.state))
                .map(|c| {
                    serde_json::json!({
                        "name": c.labels.get(labels::CONTAINER_NAME).cloned().unwrap_or_default(),
                        "image": c.image.as_ref().map(|i| i.image.clone()).unwrap_or_default(),
                    })
                })
                .collect();
            serde_json::json!({
                "metadata": {
                    "name": l(labels::POD_NAME),
                    "namespace": l(labels::POD_NAMESPACE),
                    "uid": l(labels::POD_UID),
                },
                "spec": { "containers": cs },
            })
        })
        .collect();
    let body =
        serde_json::json!({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items});
    let mut r = Response::new(full(body.to_string()));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(id: &str, restart: u32, state: api::ContainerState, created: i64) -> api::Container {
        api::Container {
            id: id.into(),
            state: state as i32,
            created_at: created,
            annotations: HashMap::from([(labels::RESTART_COUNT.to_string(), restart.to_string())]),
            ..Default::default()
        }
    }

    #[test]
    fn current_and_previous() {
        use api::ContainerState::*;
        let cases: Vec<(Vec<api::Container>, Option<&str>, Option<&str>)> = vec![
            (vec![], None, None),
            (vec![c("a", 0, ContainerRunning, 1)], Some("a"), None),
            (
                vec![
                    c("a", 0, ContainerExited, 1),
                    c("b", 1, ContainerRunning, 2),
                ],
                Some("b"),
                Some("a"),
            ),
            (
                vec![
                    c("a", 0, ContainerExited, 1),
                    c("b", 1, ContainerExited, 2),
                    c("c", 2, ContainerCreated, 3),
                ],
                Some("c"),
                Some("b"),
            ),
            (vec![c("a", 3, ContainerExited, 1)], Some("a"), None),
        ];
        for (cs, cur, prev) in cases {
            assert_eq!(pick_current(&cs).map(|c| c.id.as_str()), cur);
            assert_eq!(pick_previous(&cs).map(|c| c.id.as_str()), prev);
        }
    }

    #[test]
    fn authz() {
        assert!(authorized("system:kube-apiserver", &[]));
        assert!(authorized("admin", &["system:masters".into()]));
        assert!(!authorized("system:node:n1", &["system:nodes".into()]));
    }
}
