//! The server's PKI directory (`<data-dir>/server/tls`): create it on first
//! start, reuse it on every later start, renew leaves that need it, and hand
//! out PEMs, a rustls server configuration and new signed certificates.
//!
//! Layout (names as in k3s): `server-ca`, `client-ca`, `request-header-ca`
//! (`.crt` + `.key`), `serving-kube-apiserver`, `client-admin`,
//! `client-kube-apiserver`, `client-auth-proxy` (`.crt` = leaf followed by
//! its issuing CA, `.key`), and the service-account signing pair
//! `service.key` / `service.pub`.
//!
//! Invariants: a CA present on disk is never regenerated or overwritten; a
//! key is always written before its certificate (so a crash between the two
//! leaves a key/cert mismatch that the next start detects and repairs for
//! leaves); corrupt files are errors naming the file.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::PublicKeyData as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};

use super::certs::{
    self, Ca, CaLoadError, DAY, LeafSpec, Sans, Usage, first_cert_der, issue_leaf,
    leaf_reissue_reason, parse_key, validity_window,
};
use super::error::PkiError;
use super::fsutil::{
    PUBLIC_MODE, SECRET_MODE, ensure_private_dir, exists, read_text, tighten_mode, write_atomic,
};
use super::{CA_VALIDITY_DAYS, LEAF_VALIDITY_DAYS, RENEW_BEFORE_DAYS};

/// Names every API server serving certificate must cover.
const BUILTIN_DNS_SANS: &[&str] = &[
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
];

/// What the server PKI must cover. Build it from the validated config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PkiOptions {
    /// Cluster name, if configured. Not embedded in any certificate (k3s
    /// does not either); kept so configuration can be passed through whole.
    pub cluster_name: Option<String>,
    /// Host names the API server is reached by (e.g. the node's hostname).
    pub hostnames: Vec<String>,
    /// Addresses the API server is reached at (e.g. the node IPs).
    pub ips: Vec<IpAddr>,
    /// `--tls-san` values: each a DNS name or an IP address.
    pub extra_sans: Vec<String>,
    /// The `kubernetes` Service ClusterIP (first address of the service CIDR).
    pub service_ip: IpAddr,
}

impl Default for PkiOptions {
    fn default() -> Self {
        PkiOptions {
            cluster_name: None,
            hostnames: Vec::new(),
            ips: Vec::new(),
            extra_sans: Vec::new(),
            service_ip: IpAddr::V4(Ipv4Addr::new(10, 43, 0, 1)),
        }
    }
}

impl PkiOptions {
    /// All SANs of the API server serving certificate, validated.
    fn serving_sans(&self) -> Result<Sans, PkiError> {
        let mut sans = Sans::default();
        for h in &self.hostnames {
            sans.push_name(h)?;
        }
        for ip in &self.ips {
            sans.push_ip(*ip);
        }
        sans.push_ip(IpAddr::V4(Ipv4Addr::LOCALHOST));
        sans.push_ip(IpAddr::V6(Ipv6Addr::LOCALHOST));
        for d in BUILTIN_DNS_SANS {
            sans.push_name(d)?;
        }
        sans.push_ip(self.service_ip);
        for s in &self.extra_sans {
            sans.push_name(s)?;
        }
        Ok(sans)
    }
}

/// A certificate (PEM, possibly followed by its issuing CA) and its private
/// key (PKCS#8 PEM), with the files they live in.
#[derive(Clone, PartialEq, Eq)]
pub struct CertAndKey {
    cert_pem: String,
    key_pem: String,
    cert_path: PathBuf,
    key_path: PathBuf,
}

impl fmt::Debug for CertAndKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertAndKey")
            .field("cert_path", &self.cert_path)
            .field("key_path", &self.key_path)
            .field("key_pem", &"[redacted]")
            .finish_non_exhaustive()
    }
}

impl CertAndKey {
    /// The certificate file's content: for a CA its certificate; for a leaf
    /// the leaf followed by the CA that issued it.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The private key, PKCS#8 PEM.
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    pub fn cert_path(&self) -> &Path {
        &self.cert_path
    }

    pub fn key_path(&self) -> &Path {
        &self.key_path
    }

    /// Every certificate of [`Self::cert_pem`] as DER, leaf first.
    pub fn cert_chain_der(&self) -> Result<Vec<CertificateDer<'static>>, PkiError> {
        let chain =
            certs::certs_der(&self.cert_pem).map_err(|r| PkiError::corrupt(&self.cert_path, r))?;
        if chain.is_empty() {
            return Err(PkiError::corrupt(
                &self.cert_path,
                "no CERTIFICATE PEM block",
            ));
        }
        Ok(chain)
    }

    /// The first certificate of [`Self::cert_pem`] as DER.
    pub fn leaf_der(&self) -> Result<CertificateDer<'static>, PkiError> {
        first_cert_der(&self.cert_pem).map_err(|r| PkiError::corrupt(&self.cert_path, r))
    }

    /// The private key as DER, for rustls.
    pub fn key_der(&self) -> Result<PrivateKeyDer<'static>, PkiError> {
        rustls_pemfile::private_key(&mut self.key_pem.as_bytes())
            .map_err(|e| PkiError::corrupt(&self.key_path, format!("bad PEM: {e}")))?
            .ok_or_else(|| PkiError::corrupt(&self.key_path, "no private key PEM block"))
    }
}

/// The loaded server PKI. Cheap to clone; holds PEM text, not parsed keys.
#[derive(Clone, PartialEq, Eq)]
pub struct ServerPki {
    tls_dir: PathBuf,
    server_ca: CertAndKey,
    client_ca: CertAndKey,
    request_header_ca: CertAndKey,
    serving: CertAndKey,
    admin: CertAndKey,
    kube_apiserver_client: CertAndKey,
    auth_proxy: CertAndKey,
    service_account_key_path: PathBuf,
    service_account_pub_path: PathBuf,
    service_account_key_pem: String,
    service_account_pub_pem: String,
}

impl fmt::Debug for ServerPki {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerPki")
            .field("tls_dir", &self.tls_dir)
            .finish_non_exhaustive()
    }
}

/// Create or load the server PKI in `tls_dir` (see the module docs for the
/// layout). Safe to call on every start: existing material is reused byte
/// for byte unless a leaf needs renewing.
pub fn ensure_server_pki(tls_dir: &Path, opts: &PkiOptions) -> Result<ServerPki, PkiError> {
    ensure_server_pki_at(tls_dir, opts, chrono::Utc::now().timestamp())
}

/// [`ensure_server_pki`] with an explicit "now" (unix seconds).
pub(super) fn ensure_server_pki_at(
    tls_dir: &Path,
    opts: &PkiOptions,
    now: i64,
) -> Result<ServerPki, PkiError> {
    // Validate input before touching the disk.
    let serving_sans = opts.serving_sans()?;
    ensure_private_dir(tls_dir)?;

    let (server_ca, server_ca_files) = ensure_ca(tls_dir, "server-ca", "skiff-server-ca", now)?;
    let (client_ca, client_ca_files) = ensure_ca(tls_dir, "client-ca", "skiff-client-ca", now)?;
    let (rh_ca, rh_ca_files) =
        ensure_ca(tls_dir, "request-header-ca", "skiff-request-header-ca", now)?;

    let serving = ensure_leaf(
        tls_dir,
        "serving-kube-apiserver",
        &server_ca,
        &LeafSpec {
            common_name: "kube-apiserver".into(),
            organizations: Vec::new(),
            usage: Usage::Server,
            sans: serving_sans,
        },
        now,
    )?;
    let admin = ensure_leaf(
        tls_dir,
        "client-admin",
        &client_ca,
        &client_spec("system:admin", &["system:masters"]),
        now,
    )?;
    let kube_apiserver_client = ensure_leaf(
        tls_dir,
        "client-kube-apiserver",
        &client_ca,
        &client_spec("system:kube-apiserver", &["system:masters"]),
        now,
    )?;
    let auth_proxy = ensure_leaf(
        tls_dir,
        "client-auth-proxy",
        &rh_ca,
        &client_spec("system:auth-proxy", &[]),
        now,
    )?;
    let (sa_key_path, sa_key_pem, sa_pub_path, sa_pub_pem) = ensure_service_account_key(tls_dir)?;

    Ok(ServerPki {
        tls_dir: tls_dir.to_path_buf(),
        server_ca: server_ca_files,
        client_ca: client_ca_files,
        request_header_ca: rh_ca_files,
        serving,
        admin,
        kube_apiserver_client,
        auth_proxy,
        service_account_key_path: sa_key_path,
        service_account_pub_path: sa_pub_path,
        service_account_key_pem: sa_key_pem,
        service_account_pub_pem: sa_pub_pem,
    })
}

fn client_spec(common_name: &str, organizations: &[&str]) -> LeafSpec {
    LeafSpec {
        common_name: common_name.to_string(),
        organizations: organizations.iter().map(|s| s.to_string()).collect(),
        usage: Usage::Client,
        sans: Sans::default(),
    }
}

impl ServerPki {
    pub fn tls_dir(&self) -> &Path {
        &self.tls_dir
    }

    /// The server CA: signs serving certificates; what clients trust.
    pub fn server_ca(&self) -> &CertAndKey {
        &self.server_ca
    }

    /// The server CA certificate PEM (the bytes the join token hashes).
    pub fn server_ca_pem(&self) -> &str {
        &self.server_ca.cert_pem
    }

    /// The client CA: signs client certificates the API server accepts.
    pub fn client_ca(&self) -> &CertAndKey {
        &self.client_ca
    }

    /// The client CA certificate PEM.
    pub fn client_ca_pem(&self) -> &str {
        &self.client_ca.cert_pem
    }

    /// The request-header (front-proxy) CA. Not trusted by
    /// [`Self::rustls_server_config`]: a request-header authenticator must
    /// verify it separately so proxy certificates never act as users.
    pub fn request_header_ca(&self) -> &CertAndKey {
        &self.request_header_ca
    }

    /// The API server serving certificate (chain: leaf, server CA) and key.
    pub fn serving(&self) -> &CertAndKey {
        &self.serving
    }

    /// `CN=system:admin, O=system:masters`, for the admin kubeconfig.
    pub fn admin(&self) -> &CertAndKey {
        &self.admin
    }

    /// `CN=system:kube-apiserver, O=system:masters`: the API server's client
    /// certificate towards kubelets.
    pub fn kube_apiserver_client(&self) -> &CertAndKey {
        &self.kube_apiserver_client
    }

    /// `CN=system:auth-proxy`, signed by the request-header CA.
    pub fn auth_proxy(&self) -> &CertAndKey {
        &self.auth_proxy
    }

    /// `service.key`: PKCS#8 ECDSA P-256 key for signing service-account tokens (ES256).
    pub fn service_account_key_path(&self) -> &Path {
        &self.service_account_key_path
    }

    /// `service.pub`: the matching SubjectPublicKeyInfo PEM, for verifying tokens.
    pub fn service_account_pub_path(&self) -> &Path {
        &self.service_account_pub_path
    }

    pub fn service_account_key_pem(&self) -> &str {
        &self.service_account_key_pem
    }

    pub fn service_account_pub_pem(&self) -> &str {
        &self.service_account_pub_pem
    }

    /// A rustls server configuration for the API server: the serving chain,
    /// optional client certificates verified against the client CA (clients
    /// without one still connect, e.g. to present a bearer token), ALPN
    /// `h2` then `http/1.1`. Uses the ring provider explicitly.
    pub fn rustls_server_config(&self) -> Result<Arc<ServerConfig>, PkiError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        for ca in self.client_ca.cert_chain_der()? {
            roots.add(ca).map_err(|e| {
                PkiError::Tls(format!(
                    "client CA {} not usable as a trust anchor: {e}",
                    self.client_ca.cert_path.display()
                ))
            })?;
        }
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .allow_unauthenticated()
                .build()
                .map_err(|e| PkiError::Tls(format!("client certificate verifier: {e}")))?;
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| PkiError::Tls(format!("protocol versions: {e}")))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.serving.cert_chain_der()?, self.serving.key_der()?)
            .map_err(|e| {
                PkiError::Tls(format!(
                    "serving certificate {}: {e}",
                    self.serving.cert_path.display()
                ))
            })?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    /// Issue a client certificate signed by the client CA, valid for `days`
    /// days. Kubernetes reads the user from `cn` and groups from `orgs`.
    /// Returns (certificate chain PEM: leaf then client CA, key PEM). Nothing
    /// is written to disk.
    pub fn issue_client_cert(
        &self,
        cn: &str,
        orgs: &[&str],
        days: u32,
    ) -> Result<(String, String), PkiError> {
        if days == 0 {
            return Err(PkiError::InvalidRequest("validity of zero days".into()));
        }
        let ca = self.load_ca(&self.client_ca)?;
        let spec = client_spec(cn, orgs);
        let (not_before, not_after) = validity_window(chrono::Utc::now().timestamp(), days);
        let issued = issue_leaf(&ca, &spec, not_before, not_after)?;
        Ok((chain_pem(&issued.cert_pem, &ca.cert_pem), issued.key_pem))
    }

    /// Issue a serving certificate (e.g. for a kubelet) signed by the server
    /// CA, valid for a year. `dns_names` may also hold IP literals. Returns
    /// (certificate chain PEM: leaf then server CA, key PEM). Nothing is
    /// written to disk.
    pub fn issue_serving_cert(
        &self,
        cn: &str,
        dns_names: &[&str],
        ips: &[IpAddr],
    ) -> Result<(String, String), PkiError> {
        let mut sans = Sans::default();
        for d in dns_names {
            sans.push_name(d)?;
        }
        for ip in ips {
            sans.push_ip(*ip);
        }
        if sans.dns.is_empty() && sans.ips.is_empty() {
            return Err(PkiError::InvalidRequest(
                "a serving certificate needs at least one DNS name or IP".into(),
            ));
        }
        let ca = self.load_ca(&self.server_ca)?;
        let spec = LeafSpec {
            common_name: cn.to_string(),
            organizations: Vec::new(),
            usage: Usage::Server,
            sans,
        };
        let (not_before, not_after) =
            validity_window(chrono::Utc::now().timestamp(), LEAF_VALIDITY_DAYS);
        let issued = issue_leaf(&ca, &spec, not_before, not_after)?;
        Ok((chain_pem(&issued.cert_pem, &ca.cert_pem), issued.key_pem))
    }

    fn load_ca(&self, files: &CertAndKey) -> Result<Ca, PkiError> {
        Ca::from_pem(&files.cert_pem, &files.key_pem).map_err(|e| ca_load_error(files, e))
    }
}

fn ca_load_error(files: &CertAndKey, e: CaLoadError) -> PkiError {
    match e {
        CaLoadError::Cert(r) => PkiError::corrupt(&files.cert_path, r),
        CaLoadError::Key(r) => PkiError::corrupt(&files.key_path, r),
        CaLoadError::Mismatch => PkiError::CaKeyMismatch {
            cert: files.cert_path.clone(),
            key: files.key_path.clone(),
        },
    }
}

/// Leaf PEM followed by CA PEM, newline-separated.
fn chain_pem(leaf_pem: &str, ca_pem: &str) -> String {
    let mut out = String::with_capacity(leaf_pem.len() + ca_pem.len() + 1);
    out.push_str(leaf_pem);
    if !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(ca_pem);
    out
}

fn pair_paths(dir: &Path, stem: &str) -> (PathBuf, PathBuf) {
    (
        dir.join(format!("{stem}.crt")),
        dir.join(format!("{stem}.key")),
    )
}

/// Load the CA `<stem>.crt`/`<stem>.key`, or create it if neither exists.
fn ensure_ca(
    dir: &Path,
    stem: &str,
    cn_prefix: &str,
    now: i64,
) -> Result<(Ca, CertAndKey), PkiError> {
    let (cert_path, key_path) = pair_paths(dir, stem);
    let cert_exists = exists(&cert_path)?;
    let key_exists = exists(&key_path)?;
    let common_name = format!("{cn_prefix}@{now}");
    let (not_before, not_after) = validity_window(now, CA_VALIDITY_DAYS);

    let (cert_pem, key_pem) = match (cert_exists, key_exists) {
        (true, true) => {
            tighten_mode(&key_path, SECRET_MODE)?;
            (read_text(&cert_path)?, read_text(&key_path)?)
        }
        (true, false) => {
            return Err(PkiError::CaKeyMissing {
                cert: cert_path,
                key: key_path,
            });
        }
        (false, true) => {
            // Only reachable after a crash between writing the key and the
            // certificate of a new CA (or a deleted certificate): nothing can
            // have trusted a certificate that does not exist, so self-sign one
            // for the existing key rather than replacing the key.
            tighten_mode(&key_path, SECRET_MODE)?;
            let key_pem = read_text(&key_path)?;
            let key = parse_key(&key_pem).map_err(|r| PkiError::corrupt(&key_path, r))?;
            tracing::warn!(
                cert = %cert_path.display(),
                "CA certificate missing next to its key; self-signing a new certificate for the existing key"
            );
            let cert_pem = certs::self_signed_ca(&common_name, &key, not_before, not_after)?;
            write_atomic(&cert_path, cert_pem.as_bytes(), PUBLIC_MODE)?;
            (cert_pem, key_pem)
        }
        (false, false) => {
            let key = certs::generate_key(&common_name)?;
            let key_pem = key.serialize_pem();
            let cert_pem = certs::self_signed_ca(&common_name, &key, not_before, not_after)?;
            write_atomic(&key_path, key_pem.as_bytes(), SECRET_MODE)?;
            write_atomic(&cert_path, cert_pem.as_bytes(), PUBLIC_MODE)?;
            tracing::info!(cert = %cert_path.display(), "generated CA {common_name}");
            (cert_pem, key_pem)
        }
    };

    let files = CertAndKey {
        cert_pem,
        key_pem,
        cert_path,
        key_path,
    };
    let ca = Ca::from_pem(&files.cert_pem, &files.key_pem).map_err(|e| ca_load_error(&files, e))?;
    match ca.not_after() {
        Ok(expiry) if expiry - now < i64::from(RENEW_BEFORE_DAYS) * DAY => tracing::warn!(
            cert = %files.cert_path.display(),
            days_left = (expiry - now) / DAY,
            "CA certificate expires soon; skiff never rotates a CA by itself"
        ),
        Ok(_) => {}
        Err(r) => return Err(PkiError::corrupt(&files.cert_path, r)),
    }
    Ok((ca, files))
}

/// Load the leaf `<stem>.crt`/`<stem>.key` if it is still good for `spec`,
/// otherwise issue a new one from `ca` and write it (key first).
fn ensure_leaf(
    dir: &Path,
    stem: &str,
    ca: &Ca,
    spec: &LeafSpec,
    now: i64,
) -> Result<CertAndKey, PkiError> {
    let (cert_path, key_path) = pair_paths(dir, stem);
    let cert_exists = exists(&cert_path)?;
    let key_exists = exists(&key_path)?;
    if cert_exists && key_exists {
        tighten_mode(&key_path, SECRET_MODE)?;
        let cert_pem = read_text(&cert_path)?;
        let key_pem = read_text(&key_path)?;
        let cert_der = first_cert_der(&cert_pem).map_err(|r| PkiError::corrupt(&cert_path, r))?;
        let key = parse_key(&key_pem).map_err(|r| PkiError::corrupt(&key_path, r))?;
        let renew_before = i64::from(RENEW_BEFORE_DAYS) * DAY;
        let chain = certs::certs_der(&cert_pem).map_err(|r| PkiError::corrupt(&cert_path, r))?;
        let reason = if chain.get(1..) != Some(std::slice::from_ref(&ca.cert_der)) {
            Some("the CA certificate bundled after the leaf is not the current CA".to_string())
        } else {
            leaf_reissue_reason(&cert_der, &key, ca, spec, now, renew_before)
                .map_err(|r| PkiError::corrupt(&cert_path, r))?
        };
        match reason {
            None => {
                return Ok(CertAndKey {
                    cert_pem,
                    key_pem,
                    cert_path,
                    key_path,
                });
            }
            Some(reason) => {
                tracing::info!(cert = %cert_path.display(), %reason, "re-issuing certificate");
            }
        }
    } else if cert_exists || key_exists {
        tracing::info!(cert = %cert_path.display(), "certificate or key missing; issuing a new pair");
    }

    let (not_before, not_after) = validity_window(now, LEAF_VALIDITY_DAYS);
    let issued = issue_leaf(ca, spec, not_before, not_after)?;
    let cert_pem = chain_pem(&issued.cert_pem, &ca.cert_pem);
    write_atomic(&key_path, issued.key_pem.as_bytes(), SECRET_MODE)?;
    write_atomic(&cert_path, cert_pem.as_bytes(), PUBLIC_MODE)?;
    Ok(CertAndKey {
        cert_pem,
        key_pem: issued.key_pem,
        cert_path,
        key_path,
    })
}

/// Load or create `service.key` and keep `service.pub` in step with it.
/// Returns (key path, key PEM, pub path, pub PEM).
fn ensure_service_account_key(dir: &Path) -> Result<(PathBuf, String, PathBuf, String), PkiError> {
    let key_path = dir.join("service.key");
    let pub_path = dir.join("service.pub");

    let (key_pem, key) = if exists(&key_path)? {
        tighten_mode(&key_path, SECRET_MODE)?;
        let key_pem = read_text(&key_path)?;
        let key = parse_key(&key_pem).map_err(|r| PkiError::corrupt(&key_path, r))?;
        (key_pem, key)
    } else {
        let key = certs::generate_key("service-account signing key")?;
        let key_pem = key.serialize_pem();
        write_atomic(&key_path, key_pem.as_bytes(), SECRET_MODE)?;
        (key_pem, key)
    };

    // service.pub is derived from service.key, so it is (re)written whenever
    // it is missing, unreadable or for another key: nothing is lost.
    let existing_pub = if exists(&pub_path)? {
        let text = read_text(&pub_path)?;
        match rcgen::SubjectPublicKeyInfo::from_pem(&text) {
            Ok(spki) if spki.der_bytes() == key.der_bytes() => Some(text),
            _ => None,
        }
    } else {
        None
    };
    let pub_pem = match existing_pub {
        Some(text) => text,
        None => {
            let text = key.public_key_pem();
            write_atomic(&pub_path, text.as_bytes(), PUBLIC_MODE)?;
            text
        }
    };
    Ok((key_path, key_pem, pub_path, pub_pem))
}

#[cfg(test)]
mod tests;
