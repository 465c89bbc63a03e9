//! The node join endpoint: `POST /v1-skiff/node-credentials` trades a join
//! token for a node's credentials (the equivalent of k3s's
//! `/v1-k3s/client-kubelet.crt` & co. in one JSON call).
//!
//! Protocol:
//! - Authentication: HTTP Basic, `Authorization: Basic base64(<user>:<secret>)`
//!   where `<user>:<secret>` is the credential part of the join token
//!   (`server:<secret>` / `node:<secret>` for the server token, `node:<id>.<secret>`
//!   for a bootstrap token). Basic, not Bearer, so the general authenticator
//!   never mistakes a join credential for an API credential; the path is
//!   public for that authenticator and this handler checks the credential.
//! - Request (JSON): [`NodeCredentialsRequest`]. Response (JSON, 200):
//!   [`NodeCredentialsResponse`]. Errors are `Status` objects: 401 for a
//!   missing, unknown, wrong or expired token; 403 when the node name is
//!   taken by a node with another password; 400 for a malformed request;
//!   404 when the server was started without join support.
//!
//! Invariants: nothing is issued before both the token and the node password
//! are verified; a node's first successful join stores only a salted hash
//! of its password (Secret `kube-system/<node>.node-password.skiff`), and a
//! later join under that name must present the same password; tokens and
//! passwords are never logged.

use std::net::IpAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::AppState;
use super::error::ApiError;
use super::registry::WriteOptions;
use crate::tokens::{self, BootstrapToken};

/// Path of the join endpoint.
pub const NODE_CREDENTIALS_PATH: &str = "/v1-skiff/node-credentials";
/// Days a node client certificate is valid.
const NODE_CLIENT_CERT_DAYS: u32 = 365;

/// What the agent sends.
#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeCredentialsRequest {
    pub node_name: String,
    #[serde(default, rename = "nodeIPs")]
    pub node_ips: Vec<IpAddr>,
    /// The agent's random node password (`<agent-dir>/node-password`).
    pub node_password: String,
}

/// Cluster-wide settings an agent needs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterInfo {
    #[serde(rename = "clusterCIDR")]
    pub cluster_cidr: String,
    #[serde(rename = "serviceCIDR")]
    pub service_cidr: String,
    #[serde(rename = "clusterDNS")]
    pub cluster_dns: IpAddr,
    pub cluster_domain: String,
    /// The API server URL the server advertises (`https://<advertise>:<port>`).
    #[serde(rename = "apiServerURL")]
    pub api_server_url: String,
}

/// What the server answers.
#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeCredentialsResponse {
    /// Server CA (trust anchor for the API server and kubelet serving certs).
    pub ca_pem: String,
    /// `CN=system:node:<name>, O=system:nodes`, issued by the client CA
    /// (chain: leaf then client CA).
    pub client_cert_pem: String,
    pub client_key_pem: String,
    /// Kubelet serving certificate for the node name and IPs (server CA).
    pub serving_cert_pem: String,
    pub serving_key_pem: String,
    pub cluster: ClusterInfo,
}

/// Issues node certificates; implemented by the server PKI.
pub trait NodeCertIssuer: Send + Sync {
    /// (chain PEM, key PEM) of a client certificate.
    fn issue_client(&self, cn: &str, orgs: &[&str], days: u32) -> Result<(String, String), String>;
    /// (chain PEM, key PEM) of a serving certificate.
    fn issue_serving(
        &self,
        cn: &str,
        names: &[&str],
        ips: &[IpAddr],
    ) -> Result<(String, String), String>;
}

impl NodeCertIssuer for crate::pki::ServerPki {
    fn issue_client(&self, cn: &str, orgs: &[&str], days: u32) -> Result<(String, String), String> {
        self.issue_client_cert(cn, orgs, days)
            .map_err(|e| e.to_string())
    }
    fn issue_serving(
        &self,
        cn: &str,
        names: &[&str],
        ips: &[IpAddr],
    ) -> Result<(String, String), String> {
        self.issue_serving_cert(cn, names, ips)
            .map_err(|e| e.to_string())
    }
}

/// What the server hands the join endpoint.
#[derive(Clone)]
pub struct JoinConfig {
    pub issuer: Arc<dyn NodeCertIssuer>,
    pub cluster: ClusterInfo,
    /// The secret of the server token (`…::server:<secret>`).
    pub server_secret: String,
}

/// Who presented what, after parsing the `Authorization` header.
#[derive(PartialEq, Eq)]
enum Credential {
    ServerSecret,
    Bootstrap(BootstrapToken),
}

/// Decode `Authorization: Basic …` into the credential kind (pure).
fn parse_basic(headers: &HeaderMap, server_secret: &str) -> Result<Credential, ApiError> {
    let unauthorized = |m: &str| ApiError::new(401, "Unauthorized", m.to_string());
    let value = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| unauthorized("joining requires a join token (HTTP Basic credentials)"))?;
    let encoded = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))
        .ok_or_else(|| {
            unauthorized("the join endpoint takes the join token as HTTP Basic credentials")
        })?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| unauthorized("malformed Basic credentials"))?;
    let (user, secret) = decoded
        .split_once(':')
        .ok_or_else(|| unauthorized("malformed Basic credentials"))?;
    if (user == "server" || user == "node")
        && !server_secret.is_empty()
        && tokens::constant_time_eq(secret.as_bytes(), server_secret.as_bytes())
    {
        return Ok(Credential::ServerSecret);
    }
    if let Some(t) = BootstrapToken::parse(secret) {
        return Ok(Credential::Bootstrap(t));
    }
    Err(unauthorized(
        "the join token is not valid for this server (neither its server token nor a bootstrap token)",
    ))
}

/// Check a request body (pure).
fn validate_request(req: &NodeCredentialsRequest) -> Result<(), ApiError> {
    let errs = crate::api::validation::dns1123_subdomain_errors(&req.node_name);
    if !errs.is_empty() {
        return Err(ApiError::bad_request(format!(
            "invalid node name {:?}: {}",
            req.node_name,
            errs.join("; ")
        )));
    }
    if req.node_password.len() < 16 {
        return Err(ApiError::bad_request(
            "node password must be at least 16 characters",
        ));
    }
    if req
        .node_ips
        .iter()
        .any(|ip| ip.is_unspecified() || ip.is_multicast())
    {
        return Err(ApiError::bad_request("node IPs must be unicast addresses"));
    }
    Ok(())
}

/// The 403 for a node name held by another password.
fn name_taken(node: &str) -> ApiError {
    ApiError::forbidden(format!(
        "node password does not match for node {node:?}: a node with this name already joined; \
         remove the Secret kube-system/{} or pick another --node-name",
        tokens::node_password_secret_name(node)
    ))
}

async fn get_secret(app: &AppState, name: &str) -> Result<Option<Value>, ApiError> {
    let res = app
        .registry
        .kinds
        .get("", "v1", "secrets")
        .ok_or_else(|| ApiError::internal("secrets are not served"))?;
    match app
        .registry
        .get(&res, Some(tokens::SYSTEM_NAMESPACE), name)
        .await
    {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.code == 404 => Ok(None),
        Err(e) => Err(e),
    }
}

async fn authenticate(app: &AppState, cred: &Credential) -> Result<(), ApiError> {
    let Credential::Bootstrap(token) = cred else {
        return Ok(());
    };
    let secret = get_secret(app, &token.secret_name()).await?;
    tokens::check_bootstrap_token(secret.as_ref(), token, chrono::Utc::now()).map_err(|r| {
        tracing::info!("join refused: {r}");
        ApiError::new(401, "Unauthorized", r.to_string())
    })
}

/// Verify the node password, storing its hash on the first join.
async fn check_node_password(app: &AppState, node: &str, password: &str) -> Result<(), ApiError> {
    let name = tokens::node_password_secret_name(node);
    let verify = |secret: &Value| -> Result<(), ApiError> {
        match tokens::node_password_hash(secret) {
            Some(h) if tokens::verify_node_password(password, &h) => Ok(()),
            _ => Err(name_taken(node)),
        }
    };
    if let Some(existing) = get_secret(app, &name).await? {
        return verify(&existing);
    }
    let pw = password.to_string();
    let hash = tokio::task::spawn_blocking(move || tokens::hash_node_password(&pw))
        .await
        .map_err(|e| ApiError::internal(format!("hashing node password: {e}")))?;
    let res = app
        .registry
        .kinds
        .get("", "v1", "secrets")
        .ok_or_else(|| ApiError::internal("secrets are not served"))?;
    let opts = WriteOptions {
        field_manager: "skiff-join".into(),
        ..Default::default()
    };
    match app
        .registry
        .create(
            &res,
            Some(tokens::SYSTEM_NAMESPACE),
            tokens::node_password_secret(node, &hash),
            &opts,
        )
        .await
    {
        Ok(_) => Ok(()),
        // a concurrent first join of the same name: the winner's hash decides
        Err(e) if e.code == 409 => match get_secret(app, &name).await? {
            Some(s) => verify(&s),
            None => Err(name_taken(node)),
        },
        Err(e) => Err(e),
    }
}

/// `POST /v1-skiff/node-credentials`.
pub async fn node_credentials(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match issue(&app, &headers, &body).await {
        Ok(resp) => {
            let body = serde_json::to_vec(&resp).unwrap_or_default();
            let mut r = (StatusCode::OK, body).into_response();
            r.headers_mut().insert(
                axum::http::header::CONTENT_TYPE,
                axum::http::HeaderValue::from_static("application/json"),
            );
            r
        }
        Err(e) => e.into_response(),
    }
}

async fn issue(
    app: &AppState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<NodeCredentialsResponse, ApiError> {
    let Some(cfg) = app.join.as_ref() else {
        return Err(ApiError::new(
            404,
            "NotFound",
            "this server does not accept node joins",
        ));
    };
    let cred = parse_basic(headers, &cfg.server_secret)?;
    authenticate(app, &cred).await?;
    let req: NodeCredentialsRequest = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid node credentials request: {e}")))?;
    validate_request(&req)?;
    check_node_password(app, &req.node_name, &req.node_password).await?;

    let node = req.node_name.as_str();
    let user = format!("system:node:{node}");
    let (client_cert_pem, client_key_pem) = cfg
        .issuer
        .issue_client(&user, &["system:nodes"], NODE_CLIENT_CERT_DAYS)
        .map_err(|e| ApiError::internal(format!("issuing the node client certificate: {e}")))?;
    let (serving_cert_pem, serving_key_pem) = cfg
        .issuer
        .issue_serving(node, &[node], &req.node_ips)
        .map_err(|e| ApiError::internal(format!("issuing the kubelet serving certificate: {e}")))?;
    tracing::info!(
        node,
        via = match cred {
            Credential::ServerSecret => "server token".to_string(),
            Credential::Bootstrap(t) => format!("bootstrap token {}", t.id),
        },
        "issued node credentials"
    );
    Ok(NodeCredentialsResponse {
        ca_pem: app.ca_pem.clone(),
        client_cert_pem,
        client_key_pem,
        serving_cert_pem,
        serving_key_pem,
        cluster: cfg.cluster.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(s: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        let v = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(s)
        );
        h.insert(axum::http::header::AUTHORIZATION, v.parse().unwrap());
        h
    }

    #[test]
    fn credentials_from_basic_auth() {
        let secret = "0123456789abcdef0123456789abcdef";
        let ok = |h: &HeaderMap| parse_basic(h, secret).map_err(|e| e.code);
        assert!(matches!(
            ok(&basic(&format!("server:{secret}"))),
            Ok(Credential::ServerSecret)
        ));
        assert!(matches!(
            ok(&basic(&format!("node:{secret}"))),
            Ok(Credential::ServerSecret)
        ));
        assert!(matches!(
            ok(&basic("node:abcdef.0123456789abcdef")),
            Ok(Credential::Bootstrap(t)) if t.id == "abcdef"
        ));
        for bad in [
            basic("server:wrong"),
            basic("admin:0123456789abcdef0123456789abcdef"),
            basic("nocolon"),
            HeaderMap::new(),
        ] {
            assert_eq!(ok(&bad).err(), Some(401));
        }
        let mut bearer = HeaderMap::new();
        bearer.insert(
            axum::http::header::AUTHORIZATION,
            "Bearer x".parse().unwrap(),
        );
        assert_eq!(ok(&bearer).err(), Some(401));
        // an empty server secret never matches an empty password
        assert!(parse_basic(&basic("server:"), "").is_err());
    }

    #[test]
    fn request_validation() {
        let req = |name: &str, pw: &str, ips: &[&str]| NodeCredentialsRequest {
            node_name: name.into(),
            node_ips: ips.iter().map(|s| s.parse().unwrap()).collect(),
            node_password: pw.into(),
        };
        let pw = "0123456789abcdef";
        assert!(validate_request(&req("n1", pw, &["10.0.0.1"])).is_ok());
        assert!(validate_request(&req("node-1.example", pw, &[])).is_ok());
        for bad in [
            req("N1", pw, &[]),
            req("", pw, &[]),
            req("n_1", pw, &[]),
            req("n1", "short", &[]),
            req("n1", pw, &["0.0.0.0"]),
        ] {
            assert_eq!(validate_request(&bad).unwrap_err().code, 400);
        }
        let m = name_taken("n1").message;
        assert!(
            m.contains("kube-system/n1.node-password.skiff") && m.contains("--node-name"),
            "{m}"
        );
    }
}
