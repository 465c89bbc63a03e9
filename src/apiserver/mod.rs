//! The Kubernetes API server: an axum `Router` served over rustls.
//!
//! Owns HTTP concerns only — routing, authentication, negotiation, metrics,
//! the TLS listener — over the generic `registry`. Knows nothing of
//! controllers, scheduler or kubelet; those reach it through the same
//! router (in-process) or over HTTPS.

pub mod admission;
pub mod authn;
pub mod controllers;
pub mod discovery;
pub mod error;
pub mod handlers;
pub mod join;
pub mod metrics;
pub mod metrics_api;
pub mod negotiate;
pub mod node_authz;
pub mod openapi_routes;
pub mod proxy;
pub mod registry;
pub mod reviews;
pub mod satoken;
pub mod subresources;
pub mod watch;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::Service;

use crate::api::kinds::Kinds;
use crate::store::Backend;
use authn::{Authenticator, ConnIdentity};
use registry::{Identity, Registry};

/// Shared state of every request.
pub struct AppState {
    pub registry: Registry,
    pub authn: Authenticator,
    pub metrics: metrics::Metrics,
    /// `host:port` clients should use (discovery's serverAddressByClientCIDRs).
    pub advertise: String,
    /// PEM of the server CA (`/cacerts`).
    pub ca_pem: String,
    pub openapi: openapi_routes::OpenApiCache,
    /// Encoded watch events shared across watchers.
    pub watch_lines: watch::LineCache,
    /// Signs and verifies service-account tokens.
    pub sa_signer: Option<satoken::Signer>,
    /// Node join support (`join::NODE_CREDENTIALS_PATH`); `None` refuses joins.
    pub join: Option<join::JoinConfig>,
    /// TLS towards kubelets (logs, exec, attach, port-forward, node proxy).
    pub kubelet_tls: Option<Arc<rustls::ClientConfig>>,
    /// Latest resource usage scraped from kubelets (`metrics.k8s.io`).
    pub resource_metrics: metrics_api::ResourceMetrics,
}

pub struct ApiServerConfig {
    pub service_cidr: String,
    pub advertise: String,
    pub server_token: String,
    pub ca_pem: String,
    /// PKCS#8 PEM of the service-account signing key (tokens are disabled without it).
    pub service_account_key_pem: Option<String>,
    /// Node join support; `None` refuses joins.
    pub join: Option<join::JoinConfig>,
    /// The API server's client certificate towards kubelets: (chain PEM, key PEM).
    pub kubelet_client: Option<(String, String)>,
}

impl AppState {
    pub fn new(store: Arc<dyn Backend>, cfg: ApiServerConfig) -> Arc<Self> {
        let kinds = Arc::new(Kinds::with_builtins());
        let kubelet_tls = cfg.kubelet_client.as_ref().and_then(|(cert, key)| {
            proxy::kubelet_tls(&cfg.ca_pem, cert, key)
                .map_err(|e| tracing::warn!("kubelet client disabled: {e}"))
                .ok()
        });
        Arc::new(AppState {
            registry: Registry::new(store, kinds, &cfg.service_cidr),
            authn: Authenticator::new(&cfg.server_token),
            metrics: metrics::Metrics::default(),
            advertise: cfg.advertise,
            ca_pem: cfg.ca_pem,
            openapi: openapi_routes::OpenApiCache::default(),
            watch_lines: watch::LineCache::default(),
            kubelet_tls,
            resource_metrics: Default::default(),
            sa_signer: cfg.service_account_key_pem.as_deref().and_then(|pem| {
                satoken::Signer::from_pem(pem)
                    .map_err(|e| tracing::warn!("service-account tokens disabled: {e}"))
                    .ok()
            }),
            join: cfg.join,
        })
    }
}

async fn healthz() -> &'static str {
    "ok"
}

async fn cacerts(State(app): State<Arc<AppState>>) -> Response {
    let mut r = app.ca_pem.clone().into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    r
}

async fn metrics_handler(State(app): State<Arc<AppState>>) -> Response {
    let store = &app.registry.store;
    let text = app
        .metrics
        .render(store.current_revision(), store.compact_revision());
    let mut r = text.into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}

async fn not_found() -> Response {
    error::ApiError::new(
        404,
        "NotFound",
        "the server could not find the requested resource",
    )
    .into_response()
}

/// Classify a request for metrics: (verb, group, resource).
fn classify(method: &axum::http::Method, uri: &axum::http::Uri) -> (String, String, String) {
    let path = uri.path();
    let watch = uri
        .query()
        .is_some_and(|q| q.contains("watch=true") || q.contains("watch=1"));
    match handlers::parse_path(path, |_, _, p| {
        p != "namespaces" && p != "status" && p != "finalize"
    }) {
        Some(t) => {
            let verb = match (method.as_str(), t.name.is_some()) {
                ("GET", _) if watch => "WATCH",
                ("GET", true) => "GET",
                ("GET", false) => "LIST",
                ("POST", _) => "POST",
                ("PUT", _) => "PUT",
                ("PATCH", _) => "PATCH",
                ("DELETE", true) => "DELETE",
                ("DELETE", false) => "DELETECOLLECTION",
                (m, _) => m,
            };
            let resource = match t.sub {
                Some(s) => format!("{}/{s}", t.plural),
                None => t.plural,
            };
            (verb.to_string(), t.group, resource)
        }
        None => (method.as_str().to_string(), String::new(), String::new()),
    }
}

/// Errors produced below our handlers (body limit, method routing) come as
/// plain text; clients expect a `Status`.
async fn status_errors(req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    match resp.status().as_u16() {
        413 if !is_json => error::ApiError::too_large().into_response(),
        405 if !is_json => error::ApiError::method_not_allowed(
            "the server does not allow this method on the requested resource",
        )
        .into_response(),
        _ => resp,
    }
}

async fn observe(State(app): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let (verb, group, resource) = classify(req.method(), req.uri());
    let resp = next.run(req).await;
    app.metrics.record(
        &verb,
        &group,
        &resource,
        resp.status().as_u16(),
        start.elapsed(),
    );
    resp
}

/// The whole API as a router (also used in-process as a tower service).
pub fn router(app: Arc<AppState>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/livez", get(healthz))
        .route("/readyz", get(healthz))
        .route("/ping", get(|| async { "pong" }))
        .route("/cacerts", get(cacerts))
        .route(
            join::NODE_CREDENTIALS_PATH,
            axum::routing::post(join::node_credentials),
        )
        .route("/version", get(discovery::version))
        .route("/metrics", get(metrics_handler))
        .route("/api", get(discovery::api))
        .route("/api/", get(discovery::api))
        .route("/apis", get(discovery::apis))
        .route("/apis/", get(discovery::apis))
        .route("/openapi/v2", get(openapi_routes::v2))
        .route("/openapi/v3", get(openapi_routes::v3_index))
        .route("/openapi/v3/{*path}", get(openapi_routes::v3_doc))
        .route(
            "/apis/metrics.k8s.io",
            axum::routing::any(metrics_api::handle),
        )
        .route(
            "/apis/metrics.k8s.io/{*rest}",
            axum::routing::any(metrics_api::handle),
        )
        .route(
            "/api/{*rest}",
            axum::routing::any(handlers::resource_request),
        )
        .route(
            "/apis/{*rest}",
            axum::routing::any(handlers::resource_request),
        )
        .fallback(not_found)
        // bodies up to 32 MiB are read so the client gets a 413 Status instead of a reset;
        // handlers enforce the 3 MiB API limit
        .layer(DefaultBodyLimit::max(32 * 1024 * 1024))
        .layer(middleware::from_fn(status_errors))
        .layer(middleware::from_fn_with_state(
            app.clone(),
            authn::middleware,
        ))
        .layer(middleware::from_fn_with_state(app.clone(), observe))
        .layer(middleware::from_fn(request_timeout))
        .with_state(app)
}

/// Requests other than watches and long-running streams time out after 60 s.
async fn request_timeout(req: Request, next: Next) -> Response {
    let long = req.uri().query().is_some_and(|q| {
        q.contains("watch=true") || q.contains("watch=1") || q.contains("follow=true")
    });
    if long {
        return next.run(req).await;
    }
    match tokio::time::timeout(Duration::from_secs(60), next.run(req)).await {
        Ok(r) => r,
        Err(_) => error::ApiError::timeout("request did not complete within 60s").into_response(),
    }
}

/// Serve the router over TLS until `shutdown` resolves.
pub async fn serve_tls(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    router: Router,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let acceptor = TlsAcceptor::from(tls);
    loop {
        let (tcp, peer): (tokio::net::TcpStream, SocketAddr) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let acceptor = acceptor.clone();
        let router = router.clone();
        tokio::spawn(async move {
            let Some((tls, identity)) = crate::pki::accept_tls(&acceptor, tcp, peer, "API").await
            else {
                return;
            };
            let identity = identity.map(|ci| Identity {
                user: ci.user,
                groups: ci.groups,
            });
            let conn_identity = ConnIdentity(identity);
            let svc = hyper::service::service_fn(
                move |mut req: hyper::Request<hyper::body::Incoming>| {
                    req.extensions_mut().remove::<authn::InProcess>();
                    req.extensions_mut().insert(conn_identity.clone());
                    let mut router = router.clone();
                    async move { router.call(req.map(axum::body::Body::new)).await }
                },
            );
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            if let Err(e) = builder
                .serve_connection_with_upgrades(TokioIo::new(tls), svc)
                .await
            {
                tracing::debug!(%peer, "connection ended: {e}");
            }
        });
    }
}
