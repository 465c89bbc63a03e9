//! Joining a cluster: turn `--server` + `--token` into node credentials in
//! `<agent-dir>` (the agent half of `apiserver::join`).
//!
//! 1. Fetch `<server>/cacerts`. With a token carrying a CA hash
//!    (`K10<sha256>::…`) the fetch skips certificate verification (the only
//!    unverified request) and the PEM must hash to the token's value. A token
//!    without a hash is accepted only when `<agent-dir>/ca.crt` exists from an
//!    earlier join: then the fetch is verified against that CA. skiff never
//!    trusts a CA on first use (k3s instead requires the server to be trusted
//!    by the system roots; self-signed clusters have no such anchor).
//! 2. If `<agent-dir>` already holds credentials for this node from the same
//!    CA that are not close to expiry, reuse them: no token is spent, so an
//!    agent restarts fine after its bootstrap token expired.
//! 3. Otherwise `POST /v1-skiff/node-credentials` over TLS verified against
//!    that CA, with the token as HTTP Basic credentials and the node password
//!    (`<agent-dir>/node-password`, random, created once).
//!
//! Files (agent dir 0700): `ca.crt`, `client.crt`, `client.key` (0600),
//! `serving.crt`, `serving.key` (0600), `cluster.json`, `kubelet.kubeconfig`
//! (0600), `node-password` (0600). Each is written atomically, keys before
//! certificates. Invariant: the token and node password are never logged and
//! never part of an error message.

use std::io::Write as _;
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use x509_parser::prelude::*;

pub use crate::apiserver::join::ClusterInfo;
use crate::apiserver::join::{
    NODE_CREDENTIALS_PATH, NodeCredentialsRequest, NodeCredentialsResponse,
};
use crate::pki;

/// Reissue credentials expiring within this many days.
const RENEW_BEFORE_DAYS: i64 = 90;
const SECRET_MODE: u32 = 0o600;
const PUBLIC_MODE: u32 = 0o644;

/// Errors of `join`; each reads as a CLI message naming the flag to fix.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error("invalid value for --token: {0}")]
    BadToken(String),
    #[error("invalid value {url:?} for --server: {reason}")]
    BadServer { url: String, reason: String },
    #[error(
        "the join token (--token) has no CA hash and {ca} does not exist: use the full \
         K10<sha256>::… token printed by the server (`skiff token create` or <data-dir>/server/token)"
    )]
    NoCaHash { ca: PathBuf },
    #[error("cannot reach the server at {url} (--server): {reason}")]
    Unreachable { url: String, reason: String },
    #[error(
        "the server's CA certificate does not match the hash in the token: token expects sha256 \
         {expected}, server presented {got} — check --token and --server"
    )]
    CaMismatch { expected: String, got: String },
    #[error("the server rejected the join token (--token): {0}")]
    Rejected(String),
    /// The node name belongs to another node (the server's 403 message).
    #[error("{0}")]
    NodeNameTaken(String),
    #[error("the server at {url} refused to join this node: {reason}")]
    Refused { url: String, reason: String },
    #[error("the server at {url} answered something unusable: {reason}")]
    BadResponse { url: String, reason: String },
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Pki(#[from] pki::PkiError),
    #[error("building the API client from {path}: {reason}")]
    Client { path: PathBuf, reason: String },
}

/// A node's credentials and the cluster settings, as written under the agent dir.
#[derive(Clone)]
pub struct JoinedNode {
    pub server_url: String,
    pub node_name: String,
    /// `<agent-dir>/kubelet.kubeconfig`: server URL, CA, node client cert.
    pub kubeconfig_path: PathBuf,
    pub ca_pem: String,
    pub serving_cert_pem: String,
    pub serving_key_pem: String,
    /// The CA that signs client certificates (the last block of the node's
    /// client certificate chain): the kubelet server trusts the API server
    /// through it.
    pub client_ca_pem: String,
    pub cluster: ClusterInfo,
    /// True when existing credentials were reused (no token was used).
    pub reused: bool,
}

impl std::fmt::Debug for JoinedNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinedNode")
            .field("server_url", &self.server_url)
            .field("node_name", &self.node_name)
            .field("kubeconfig_path", &self.kubeconfig_path)
            .field("cluster", &self.cluster)
            .field("reused", &self.reused)
            .finish_non_exhaustive()
    }
}

impl JoinedNode {
    /// A `kube::Client` acting as `system:node:<name>`.
    pub async fn client(&self) -> Result<kube::Client, JoinError> {
        client_from_kubeconfig(&self.kubeconfig_path).await
    }
}

/// A `kube::Client` from a kubeconfig file (its current context).
pub async fn client_from_kubeconfig(path: &Path) -> Result<kube::Client, JoinError> {
    let err = |reason: String| JoinError::Client {
        path: path.to_path_buf(),
        reason,
    };
    let kc = kube::config::Kubeconfig::read_from(path).map_err(|e| err(e.to_string()))?;
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .map_err(|e| err(e.to_string()))?;
    kube::Client::try_from(cfg).map_err(|e| err(e.to_string()))
}

/// File paths under the agent dir.
struct Files {
    dir: PathBuf,
}

impl Files {
    fn ca(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }
    fn client_cert(&self) -> PathBuf {
        self.dir.join("client.crt")
    }
    fn client_key(&self) -> PathBuf {
        self.dir.join("client.key")
    }
    fn serving_cert(&self) -> PathBuf {
        self.dir.join("serving.crt")
    }
    fn serving_key(&self) -> PathBuf {
        self.dir.join("serving.key")
    }
    fn cluster(&self) -> PathBuf {
        self.dir.join("cluster.json")
    }
    fn kubeconfig(&self) -> PathBuf {
        self.dir.join("kubelet.kubeconfig")
    }
    fn password(&self) -> PathBuf {
        self.dir.join("node-password")
    }
}

/// Join (or re-join) the cluster at `server_url` as `node_name`.
pub async fn join(
    server_url: &str,
    token: &str,
    node_name: &str,
    node_ips: &[IpAddr],
    agent_dir: &Path,
) -> Result<JoinedNode, JoinError> {
    let parsed = pki::parse_token(token).map_err(|e| match e {
        pki::PkiError::InvalidToken(r) => JoinError::BadToken(r),
        other => JoinError::BadToken(other.to_string()),
    })?;
    let url = normalize_server_url(server_url)?;
    ensure_private_dir(agent_dir)?;
    let files = Files {
        dir: agent_dir.to_path_buf(),
    };
    let local_ca = read_optional(&files.ca())?;

    let fetched = match (&parsed.ca_hash, &local_ca) {
        (Some(_), _) => fetch_cacerts(&url, None).await,
        (None, Some(ca)) => fetch_cacerts(&url, Some(ca)).await,
        (None, None) => return Err(JoinError::NoCaHash { ca: files.ca() }),
    };
    // a node that joined before starts from its stored credentials while
    // the server is down (its pods keep running; the kubelet reconnects)
    if let (Err(JoinError::Unreachable { reason, .. }), Some(ca)) = (&fetched, &local_ca)
        && parsed
            .ca_hash
            .as_ref()
            .is_none_or(|h| pki::ca_hash(ca).eq_ignore_ascii_case(h))
        && let Some(joined) = try_reuse(&files, &url, ca, node_name, node_ips)?
    {
        tracing::warn!(
            node = node_name,
            server = %url,
            %reason,
            "server unreachable: starting from the stored node credentials"
        );
        return Ok(joined);
    }
    let fetched = fetched?;
    let ca_pem = match (&parsed.ca_hash, &local_ca) {
        (Some(expected), _) => {
            let got = fetched;
            let got_hash = pki::ca_hash(&got);
            if !got_hash.eq_ignore_ascii_case(expected) {
                return Err(JoinError::CaMismatch {
                    expected: expected.clone(),
                    got: got_hash,
                });
            }
            got
        }
        (None, Some(ca)) => {
            let got = fetched;
            if got != *ca {
                return Err(JoinError::BadResponse {
                    url: url.clone(),
                    reason: format!(
                        "its CA differs from {} (a token with a CA hash is needed to change CAs)",
                        files.ca().display()
                    ),
                });
            }
            got
        }
        (None, None) => return Err(JoinError::NoCaHash { ca: files.ca() }),
    };

    if local_ca.as_deref() == Some(ca_pem.as_str())
        && let Some(joined) = try_reuse(&files, &url, &ca_pem, node_name, node_ips)?
    {
        tracing::info!(node = node_name, "reusing existing node credentials");
        return Ok(joined);
    }

    let password = ensure_node_password(&files.password())?;
    let resp = request_credentials(&url, &ca_pem, &parsed, node_name, node_ips, &password).await?;
    if resp.ca_pem != ca_pem {
        return Err(JoinError::BadResponse {
            url,
            reason: "the CA in the join answer differs from /cacerts".into(),
        });
    }
    let cluster_json = serde_json::to_vec_pretty(&resp.cluster).unwrap_or_default();
    write_atomic(
        &files.client_key(),
        resp.client_key_pem.as_bytes(),
        SECRET_MODE,
    )?;
    write_atomic(
        &files.client_cert(),
        resp.client_cert_pem.as_bytes(),
        PUBLIC_MODE,
    )?;
    write_atomic(
        &files.serving_key(),
        resp.serving_key_pem.as_bytes(),
        SECRET_MODE,
    )?;
    write_atomic(
        &files.serving_cert(),
        resp.serving_cert_pem.as_bytes(),
        PUBLIC_MODE,
    )?;
    write_atomic(&files.cluster(), &cluster_json, SECRET_MODE)?;
    write_atomic(&files.ca(), ca_pem.as_bytes(), PUBLIC_MODE)?;
    pki::write_kubeconfig(
        &files.kubeconfig(),
        SECRET_MODE,
        &url,
        &ca_pem,
        &resp.client_cert_pem,
        &resp.client_key_pem,
        "default",
    )?;
    tracing::info!(node = node_name, server = %url, "joined the cluster");
    Ok(JoinedNode {
        server_url: url,
        node_name: node_name.to_string(),
        kubeconfig_path: files.kubeconfig(),
        ca_pem,
        serving_cert_pem: resp.serving_cert_pem,
        serving_key_pem: resp.serving_key_pem,
        client_ca_pem: last_pem_block(&resp.client_cert_pem),
        cluster: resp.cluster,
        reused: false,
    })
}

/// The last `-----BEGIN …-----` block of a PEM chain (the issuing CA).
fn last_pem_block(chain: &str) -> String {
    match chain.rfind("-----BEGIN") {
        Some(i) => chain[i..].to_string(),
        None => String::new(),
    }
}

/// `https://host[:port]` without a trailing slash.
fn normalize_server_url(s: &str) -> Result<String, JoinError> {
    let bad = |reason: &str| JoinError::BadServer {
        url: s.to_string(),
        reason: reason.to_string(),
    };
    let trimmed = s.trim().trim_end_matches('/');
    let rest = trimmed
        .strip_prefix("https://")
        .ok_or_else(|| bad("expected an https:// URL such as https://10.0.0.1:6443"))?;
    if rest.is_empty() || rest.contains('/') || rest.contains('?') || rest.contains('@') {
        return Err(bad("expected https://<host>[:<port>] with no path"));
    }
    let uri: http::Uri = trimmed.parse().map_err(|_| bad("not a valid URL"))?;
    if uri.host().is_none_or(str::is_empty) {
        return Err(bad("the URL has no host"));
    }
    Ok(trimmed.to_string())
}

/// The human reason behind a transport error: the innermost I/O error
/// ("connection refused"), else the deepest message.
fn transport_reason(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    let mut deepest = e.to_string();
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return match io.kind() {
                std::io::ErrorKind::ConnectionRefused => "connection refused".into(),
                std::io::ErrorKind::TimedOut => "connection timed out".into(),
                std::io::ErrorKind::ConnectionReset => "connection reset by peer".into(),
                _ => io.to_string(),
            };
        }
        let msg = err.to_string();
        if !msg.is_empty() {
            deepest = msg;
        }
        cur = err.source();
    }
    deepest
}

/// A client for `url`, verifying against `ca_pem` or, when `None`, not
/// verifying at all (only ever used for `/cacerts` with a hashed token).
fn bootstrap_client(url: &str, ca_pem: Option<&str>) -> Result<kube::Client, JoinError> {
    let uri: http::Uri = url.parse().map_err(|_| JoinError::BadServer {
        url: url.to_string(),
        reason: "not a valid URL".into(),
    })?;
    let mut cfg = kube::Config::new(uri);
    cfg.connect_timeout = Some(std::time::Duration::from_secs(10));
    cfg.read_timeout = Some(std::time::Duration::from_secs(30));
    match ca_pem {
        Some(pem) => {
            let ders = rustls_pemfile::certs(&mut pem.as_bytes())
                .map(|r| r.map(|c| c.to_vec()))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| JoinError::BadResponse {
                    url: url.to_string(),
                    reason: format!("CA certificate PEM: {e}"),
                })?;
            if ders.is_empty() {
                return Err(JoinError::BadResponse {
                    url: url.to_string(),
                    reason: "the CA PEM holds no certificate".into(),
                });
            }
            cfg.root_cert = Some(ders);
        }
        None => cfg.accept_invalid_certs = true,
    }
    kube::Client::try_from(cfg).map_err(|e| JoinError::Unreachable {
        url: url.to_string(),
        reason: transport_reason(&e),
    })
}

/// Map an HTTP-level failure of a join-phase request.
fn request_error(url: &str, e: kube::Error) -> JoinError {
    match e {
        kube::Error::Api(s) => match s.code {
            401 => JoinError::Rejected(s.message.clone()),
            403 => JoinError::NodeNameTaken(s.message.clone()),
            code => JoinError::Refused {
                url: url.to_string(),
                reason: format!("HTTP {code}: {}", s.message),
            },
        },
        kube::Error::SerdeError(e) => JoinError::BadResponse {
            url: url.to_string(),
            reason: e.to_string(),
        },
        other => JoinError::Unreachable {
            url: url.to_string(),
            reason: transport_reason(&other),
        },
    }
}

async fn fetch_cacerts(url: &str, verify_with: Option<&str>) -> Result<String, JoinError> {
    let client = bootstrap_client(url, verify_with)?;
    let req = http::Request::get("/cacerts")
        .body(Vec::new())
        .map_err(|e| JoinError::BadServer {
            url: url.to_string(),
            reason: e.to_string(),
        })?;
    let pem = client
        .request_text(req)
        .await
        .map_err(|e| request_error(url, e))?;
    if !pem.contains("-----BEGIN CERTIFICATE-----") {
        return Err(JoinError::BadResponse {
            url: url.to_string(),
            reason: "/cacerts did not return a PEM certificate (is this a skiff server?)".into(),
        });
    }
    Ok(pem)
}

async fn request_credentials(
    url: &str,
    ca_pem: &str,
    token: &pki::ParsedToken,
    node_name: &str,
    node_ips: &[IpAddr],
    password: &str,
) -> Result<NodeCredentialsResponse, JoinError> {
    let client = bootstrap_client(url, Some(ca_pem))?;
    let body = serde_json::to_vec(&NodeCredentialsRequest {
        node_name: node_name.to_string(),
        node_ips: node_ips.to_vec(),
        node_password: password.to_string(),
    })
    .unwrap_or_default();
    let basic = base64::engine::general_purpose::STANDARD
        .encode(format!("{}:{}", token.username, token.password));
    let req = http::Request::post(NODE_CREDENTIALS_PATH)
        .header(http::header::AUTHORIZATION, format!("Basic {basic}"))
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(body)
        .map_err(|e| JoinError::BadServer {
            url: url.to_string(),
            reason: e.to_string(),
        })?;
    client
        .request::<NodeCredentialsResponse>(req)
        .await
        .map_err(|e| request_error(url, e))
}

/// Existing credentials, if they are complete and still good for this node.
fn try_reuse(
    files: &Files,
    url: &str,
    ca_pem: &str,
    node: &str,
    ips: &[IpAddr],
) -> Result<Option<JoinedNode>, JoinError> {
    let read = |p: PathBuf| read_optional(&p);
    let (Some(client_cert), Some(client_key), Some(serving_cert), Some(serving_key), Some(cluster)) = (
        read(files.client_cert())?,
        read(files.client_key())?,
        read(files.serving_cert())?,
        read(files.serving_key())?,
        read(files.cluster())?,
    ) else {
        return Ok(None);
    };
    let Ok(cluster) = serde_json::from_str::<ClusterInfo>(&cluster) else {
        return Ok(None);
    };
    let now = chrono::Utc::now().timestamp();
    let creds = LocalCredentials {
        ca_pem,
        client_cert: &client_cert,
        client_key: &client_key,
        serving_cert: &serving_cert,
        serving_key: &serving_key,
    };
    if let Some(reason) = reuse_blocker(&creds, node, ips, now) {
        tracing::info!(node, %reason, "requesting new node credentials");
        return Ok(None);
    }
    pki::write_kubeconfig(
        &files.kubeconfig(),
        SECRET_MODE,
        url,
        ca_pem,
        &client_cert,
        &client_key,
        "default",
    )?;
    Ok(Some(JoinedNode {
        server_url: url.to_string(),
        node_name: node.to_string(),
        kubeconfig_path: files.kubeconfig(),
        ca_pem: ca_pem.to_string(),
        serving_cert_pem: serving_cert,
        serving_key_pem: serving_key,
        client_ca_pem: last_pem_block(&client_cert),
        cluster,
        reused: true,
    }))
}

/// PEM texts of stored credentials.
struct LocalCredentials<'a> {
    ca_pem: &'a str,
    client_cert: &'a str,
    client_key: &'a str,
    serving_cert: &'a str,
    serving_key: &'a str,
}

/// Why stored credentials cannot be reused (`None`: they can). Pure.
fn reuse_blocker(c: &LocalCredentials, node: &str, ips: &[IpAddr], now: i64) -> Option<String> {
    let first_der = |pem: &str| -> Option<Vec<u8>> {
        rustls_pemfile::certs(&mut pem.as_bytes())
            .next()
            .and_then(Result::ok)
            .map(|c| c.to_vec())
    };
    let Some(ca_der) = first_der(c.ca_pem) else {
        return Some("CA certificate unreadable".into());
    };
    let Ok((_, ca)) = X509Certificate::from_der(&ca_der) else {
        return Some("CA certificate unreadable".into());
    };
    let check = |what: &str, cert_pem: &str, key_pem: &str| -> Result<Vec<u8>, String> {
        let der = first_der(cert_pem).ok_or(format!("{what} certificate unreadable"))?;
        let key =
            rcgen::KeyPair::from_pem(key_pem).map_err(|_| format!("{what} key unreadable"))?;
        let (_, cert) = X509Certificate::from_der(&der)
            .map_err(|_| format!("{what} certificate unreadable"))?;
        if cert.public_key().raw != rcgen::PublicKeyData::subject_public_key_info(&key).as_slice() {
            return Err(format!("{what} key does not match its certificate"));
        }
        if cert.validity().not_after.timestamp() - now < RENEW_BEFORE_DAYS * 86_400 {
            return Err(format!(
                "{what} certificate expires within {RENEW_BEFORE_DAYS} days"
            ));
        }
        if cert.validity().not_before.timestamp() > now + 300 {
            return Err(format!("{what} certificate is not valid yet"));
        }
        Ok(der)
    };
    let client_der = match check("client", c.client_cert, c.client_key) {
        Ok(d) => d,
        Err(r) => return Some(r),
    };
    let serving_der = match check("serving", c.serving_cert, c.serving_key) {
        Ok(d) => d,
        Err(r) => return Some(r),
    };
    let Ok(id) = pki::identity_from_der(&client_der) else {
        return Some("client certificate unreadable".into());
    };
    if id.user != format!("system:node:{node}") || !id.groups.iter().any(|g| g == "system:nodes") {
        return Some(format!(
            "client certificate is for {:?}, not this node",
            id.user
        ));
    }
    let Ok((_, serving)) = X509Certificate::from_der(&serving_der) else {
        return Some("serving certificate unreadable".into());
    };
    if serving.issuer().as_raw() != ca.subject().as_raw() {
        return Some("serving certificate was not issued by the cluster CA".into());
    }
    let (mut names, mut addrs) = (Vec::new(), Vec::new());
    if let Ok(Some(san)) = serving.subject_alternative_name() {
        for n in &san.value.general_names {
            match n {
                GeneralName::DNSName(d) => names.push(d.to_ascii_lowercase()),
                GeneralName::IPAddress(b) => match b.len() {
                    4 => addrs.push(IpAddr::from(<[u8; 4]>::try_from(*b).unwrap_or_default())),
                    16 => addrs.push(IpAddr::from(<[u8; 16]>::try_from(*b).unwrap_or_default())),
                    _ => {}
                },
                _ => {}
            }
        }
    }
    if !names.iter().any(|n| *n == node.to_ascii_lowercase()) {
        return Some("serving certificate does not name this node".into());
    }
    if let Some(ip) = ips.iter().find(|ip| !addrs.contains(ip)) {
        return Some(format!("serving certificate does not cover node IP {ip}"));
    }
    None
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> JoinError + use<> {
    let path = path.to_path_buf();
    move |source| JoinError::Io { op, path, source }
}

fn ensure_private_dir(dir: &Path) -> Result<(), JoinError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_err("creating directory", dir))?;
    let meta = std::fs::metadata(dir).map_err(io_err("inspecting", dir))?;
    if meta.permissions().mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(io_err("restricting permissions of", dir))?;
    }
    Ok(())
}

fn read_optional(path: &Path) -> Result<Option<String>, JoinError> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err("reading", path)(e)),
    }
}

/// Write `data` to `path` atomically (temp file, fsync, rename) with `mode`.
fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<(), JoinError> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io_err("writing", &tmp))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))
        .map_err(io_err("setting permissions of", &tmp))?;
    f.write_all(data)
        .and_then(|_| f.sync_all())
        .map_err(io_err("writing", &tmp))?;
    std::fs::rename(&tmp, path).map_err(io_err("renaming into", path))
}

/// The node password: read `path`, or create it (0600) on first use.
fn ensure_node_password(path: &Path) -> Result<String, JoinError> {
    if let Some(text) = read_optional(path)? {
        let pw = text.trim().to_string();
        if pw.len() >= 16 {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(SECRET_MODE))
                .map_err(io_err("setting permissions of", path))?;
            return Ok(pw);
        }
        tracing::warn!(path = %path.display(), "node password file is too short; generating a new password");
    }
    let pw = crate::tokens::new_node_password();
    write_atomic(path, format!("{pw}\n").as_bytes(), SECRET_MODE)?;
    Ok(pw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_url_normalization() {
        for (input, want) in [
            ("https://127.0.0.1:6443", Some("https://127.0.0.1:6443")),
            (
                "https://server.example:6443/",
                Some("https://server.example:6443"),
            ),
            ("https://[::1]:6443", Some("https://[::1]:6443")),
            ("http://127.0.0.1:6443", None),
            ("127.0.0.1:6443", None),
            ("https://", None),
            ("https://h:6443/path", None),
            ("https://user@h:6443", None),
        ] {
            let got = normalize_server_url(input).ok();
            assert_eq!(got.as_deref(), want, "{input}");
        }
        let e = normalize_server_url("http://x").unwrap_err().to_string();
        assert!(e.contains("--server"), "{e}");
    }

    #[test]
    fn node_password_is_created_once_private() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("node-password");
        let a = ensure_node_password(&p).unwrap();
        let b = ensure_node_password(&p).unwrap();
        assert_eq!(a, b);
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn transport_reasons() {
        let io = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let wrapped = JoinError::Io {
            op: "x",
            path: "/".into(),
            source: io,
        };
        assert_eq!(transport_reason(&wrapped), "connection refused");
    }

    #[test]
    fn bad_token_names_the_flag() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let e = rt
            .block_on(join(
                "https://127.0.0.1:1",
                "K10zz::server:x",
                "n1",
                &[],
                dir.path(),
            ))
            .unwrap_err()
            .to_string();
        assert!(e.contains("--token") && !e.contains("server:x"), "{e}");
        let e = rt
            .block_on(join(
                "https://127.0.0.1:1",
                "K10::server:x",
                "n1",
                &[],
                dir.path(),
            ))
            .unwrap_err()
            .to_string();
        assert!(e.contains("no CA hash"), "{e}");
    }

    /// Credentials from a real server PKI: reusable for the right node and
    /// IPs, not for another name, another IP, or a mismatched key.
    #[test]
    fn reuse_decisions() {
        let dir = tempfile::tempdir().unwrap();
        let pki =
            pki::ensure_server_pki(&dir.path().join("tls"), &pki::PkiOptions::default()).unwrap();
        let ip: IpAddr = "10.0.0.5".parse().unwrap();
        let (cc, ck) = pki
            .issue_client_cert("system:node:n1", &["system:nodes"], 365)
            .unwrap();
        let (sc, sk) = pki.issue_serving_cert("n1", &["n1"], &[ip]).unwrap();
        let (_, other_key) = pki.issue_serving_cert("n1", &["n1"], &[ip]).unwrap();
        let (short_c, short_k) = pki
            .issue_client_cert("system:node:n1", &["system:nodes"], 30)
            .unwrap();
        let ca = pki.server_ca_pem();
        let now = chrono::Utc::now().timestamp();
        let mk =
            |client_cert: &str, client_key: &str, serving_key: &str, node: &str, ips: &[IpAddr]| {
                reuse_blocker(
                    &LocalCredentials {
                        ca_pem: ca,
                        client_cert,
                        client_key,
                        serving_cert: &sc,
                        serving_key,
                    },
                    node,
                    ips,
                    now,
                )
            };
        assert_eq!(mk(&cc, &ck, &sk, "n1", &[ip]), None);
        assert!(
            mk(&cc, &ck, &sk, "n2", &[ip])
                .unwrap()
                .contains("not this node")
        );
        assert!(
            mk(&cc, &ck, &sk, "n1", &["10.0.0.6".parse().unwrap()])
                .unwrap()
                .contains("10.0.0.6")
        );
        assert!(
            mk(&cc, &ck, &other_key, "n1", &[ip])
                .unwrap()
                .contains("does not match")
        );
        assert!(
            mk(&short_c, &short_k, &sk, "n1", &[ip])
                .unwrap()
                .contains("expires")
        );
    }
}
