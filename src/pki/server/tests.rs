//! Tests for the server PKI: layout, modes, reuse, renewal, corruption
//! handling, issuing, and TLS end to end.

use std::fs;
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::{ServerName, UnixTime};
use rustls::{ClientConfig, RootCertStore};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::super::certs::{ClientIdentity, DAY, identity_from_der, issue_leaf};
use super::*;

const ALL_FILES: &[&str] = &[
    "server-ca.crt",
    "server-ca.key",
    "client-ca.crt",
    "client-ca.key",
    "request-header-ca.crt",
    "request-header-ca.key",
    "serving-kube-apiserver.crt",
    "serving-kube-apiserver.key",
    "client-admin.crt",
    "client-admin.key",
    "client-kube-apiserver.crt",
    "client-kube-apiserver.key",
    "client-auth-proxy.crt",
    "client-auth-proxy.key",
    "service.key",
    "service.pub",
];

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

fn opts() -> PkiOptions {
    PkiOptions {
        hostnames: vec!["node-a".into()],
        ips: vec![IpAddr::V4(Ipv4Addr::new(192, 168, 1, 10))],
        ..PkiOptions::default()
    }
}

fn tls_dir() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("server/tls");
    (tmp, dir)
}

fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    ALL_FILES
        .iter()
        .map(|f| (f.to_string(), fs::read(dir.join(f)).unwrap()))
        .collect()
}

/// (DNS SANs, IP SANs, notAfter unix seconds) of the first cert in a PEM.
fn inspect(pem: &str) -> (Vec<String>, Vec<IpAddr>, i64) {
    let der = first_cert_der(pem).unwrap();
    let (_, cert) = X509Certificate::from_der(&der).unwrap();
    let mut dns = Vec::new();
    let mut ips = Vec::new();
    if let Some(ext) = cert.subject_alternative_name().unwrap() {
        for n in &ext.value.general_names {
            match n {
                x509_parser::extensions::GeneralName::DNSName(d) => dns.push(d.to_string()),
                x509_parser::extensions::GeneralName::IPAddress(b) => {
                    if let Ok(a) = <[u8; 4]>::try_from(*b) {
                        ips.push(IpAddr::from(a));
                    } else {
                        ips.push(IpAddr::from(<[u8; 16]>::try_from(*b).unwrap()));
                    }
                }
                _ => {}
            }
        }
    }
    (dns, ips, cert.validity().not_after.timestamp())
}

fn common_name(pem: &str) -> String {
    let der = first_cert_der(pem).unwrap();
    let (_, cert) = X509Certificate::from_der(&der).unwrap();
    cert.subject()
        .iter_common_name()
        .next()
        .unwrap()
        .as_str()
        .unwrap()
        .to_string()
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(ca_pem: &str) -> Arc<RootCertStore> {
    let mut roots = RootCertStore::empty();
    roots.add(first_cert_der(ca_pem).unwrap()).unwrap();
    Arc::new(roots)
}

/// Verify a client chain PEM against a CA with webpki (as the server would).
fn verify_client_chain(ca_pem: &str, chain_pem: &str) -> Result<(), rustls::Error> {
    let verifier = WebPkiClientVerifier::builder_with_provider(roots(ca_pem), provider())
        .build()
        .unwrap();
    let chain = certs::certs_der(chain_pem).unwrap();
    verifier
        .verify_client_cert(&chain[0], &chain[1..], UnixTime::now())
        .map(|_| ())
}

/// Verify a serving chain PEM for `name` against a CA with webpki (as a client would).
fn verify_server_chain(ca_pem: &str, chain_pem: &str, name: &str) -> Result<(), rustls::Error> {
    let verifier =
        rustls::client::WebPkiServerVerifier::builder_with_provider(roots(ca_pem), provider())
            .build()
            .unwrap();
    let chain = certs::certs_der(chain_pem).unwrap();
    verifier
        .verify_server_cert(
            &chain[0],
            &chain[1..],
            &ServerName::try_from(name.to_string()).unwrap(),
            &[],
            UnixTime::now(),
        )
        .map(|_| ())
}

#[test]
fn first_run_creates_everything_with_modes() {
    let (_tmp, dir) = tls_dir();
    let pki = ensure_server_pki(&dir, &opts()).unwrap();

    assert_eq!(mode(&dir), 0o700);
    for f in ALL_FILES {
        let p = dir.join(f);
        assert!(p.is_file(), "{f} missing");
        if f.ends_with(".key") {
            assert_eq!(mode(&p), 0o600, "{f}");
        } else {
            assert_eq!(mode(&p) & 0o022, 0, "{f} writable by others");
        }
    }
    // Nothing else (no temp files).
    assert_eq!(fs::read_dir(&dir).unwrap().count(), ALL_FILES.len());

    assert!(common_name(pki.server_ca_pem()).starts_with("skiff-server-ca@"));
    assert!(common_name(pki.client_ca_pem()).starts_with("skiff-client-ca@"));
    assert!(
        common_name(pki.request_header_ca().cert_pem()).starts_with("skiff-request-header-ca@")
    );
    assert_eq!(
        pki.server_ca().cert_pem(),
        fs::read_to_string(dir.join("server-ca.crt")).unwrap()
    );

    // CA ten years, leaves one year.
    let now = chrono::Utc::now().timestamp();
    let (_, _, ca_expiry) = inspect(pki.server_ca_pem());
    assert!((ca_expiry - now - 3650 * DAY).abs() < 3600);
    let (dns, ips, leaf_expiry) = inspect(pki.serving().cert_pem());
    assert!((leaf_expiry - now - 365 * DAY).abs() < 3600);

    for d in [
        "node-a",
        "localhost",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    ] {
        assert!(dns.iter().any(|x| x == d), "missing DNS SAN {d}: {dns:?}");
    }
    for ip in ["192.168.1.10", "127.0.0.1", "::1", "10.43.0.1"] {
        let ip: IpAddr = ip.parse().unwrap();
        assert!(ips.contains(&ip), "missing IP SAN {ip}: {ips:?}");
    }

    // Identities and chains.
    let id = |c: &CertAndKey| identity_from_der(&c.leaf_der().unwrap()).unwrap();
    assert_eq!(
        id(pki.admin()),
        ClientIdentity {
            user: "system:admin".into(),
            groups: vec!["system:masters".into()]
        }
    );
    assert_eq!(
        id(pki.kube_apiserver_client()),
        ClientIdentity {
            user: "system:kube-apiserver".into(),
            groups: vec!["system:masters".into()]
        }
    );
    assert_eq!(
        id(pki.auth_proxy()),
        ClientIdentity {
            user: "system:auth-proxy".into(),
            groups: vec![]
        }
    );
    verify_client_chain(pki.client_ca_pem(), pki.admin().cert_pem()).unwrap();
    verify_client_chain(pki.client_ca_pem(), pki.kube_apiserver_client().cert_pem()).unwrap();
    verify_client_chain(
        pki.request_header_ca().cert_pem(),
        pki.auth_proxy().cert_pem(),
    )
    .unwrap();
    // Cross-CA use is rejected.
    assert!(verify_client_chain(pki.client_ca_pem(), pki.auth_proxy().cert_pem()).is_err());
    for name in [
        "kubernetes.default.svc",
        "localhost",
        "127.0.0.1",
        "10.43.0.1",
        "node-a",
    ] {
        verify_server_chain(pki.server_ca_pem(), pki.serving().cert_pem(), name).unwrap();
    }
    assert!(
        verify_server_chain(
            pki.server_ca_pem(),
            pki.serving().cert_pem(),
            "evil.example"
        )
        .is_err()
    );

    // Service-account pair matches.
    let sa_key = rcgen::KeyPair::from_pem(pki.service_account_key_pem()).unwrap();
    assert_eq!(sa_key.public_key_pem(), pki.service_account_pub_pem());
    assert_eq!(pki.service_account_key_path(), dir.join("service.key"));
    assert_eq!(pki.service_account_pub_path(), dir.join("service.pub"));

    // Debug never prints keys.
    let dbg = format!("{pki:?} {:?}", pki.admin());
    assert!(!dbg.contains("PRIVATE KEY"), "{dbg}");
}

#[test]
fn second_run_reuses_identical_bytes() {
    let (_tmp, dir) = tls_dir();
    let first = ensure_server_pki(&dir, &opts()).unwrap();
    let before = snapshot(&dir);
    let second = ensure_server_pki(&dir, &opts()).unwrap();
    assert_eq!(first, second);
    assert_eq!(before, snapshot(&dir));
}

#[test]
fn expiring_leaf_is_renewed_and_ca_kept() {
    let (_tmp, dir) = tls_dir();
    let first = ensure_server_pki(&dir, &opts()).unwrap();
    let now = chrono::Utc::now().timestamp();

    // Replace the serving cert with one expiring in 30 days from the same CA.
    let ca = first.load_ca(first.server_ca()).unwrap();
    let spec = LeafSpec {
        common_name: "kube-apiserver".into(),
        organizations: vec![],
        usage: Usage::Server,
        sans: opts().serving_sans().unwrap(),
    };
    let short = issue_leaf(&ca, &spec, now - DAY, now + 30 * DAY).unwrap();
    let short_chain = chain_pem(&short.cert_pem, &ca.cert_pem);
    write_atomic(
        &dir.join("serving-kube-apiserver.key"),
        short.key_pem.as_bytes(),
        SECRET_MODE,
    )
    .unwrap();
    write_atomic(
        &dir.join("serving-kube-apiserver.crt"),
        short_chain.as_bytes(),
        PUBLIC_MODE,
    )
    .unwrap();
    // A 100-day client cert is not due yet and must be kept.
    let admin_spec = client_spec("system:admin", &["system:masters"]);
    let client_ca = first.load_ca(first.client_ca()).unwrap();
    let kept = issue_leaf(&client_ca, &admin_spec, now - DAY, now + 100 * DAY).unwrap();
    let kept_chain = chain_pem(&kept.cert_pem, &client_ca.cert_pem);
    write_atomic(
        &dir.join("client-admin.key"),
        kept.key_pem.as_bytes(),
        SECRET_MODE,
    )
    .unwrap();
    write_atomic(
        &dir.join("client-admin.crt"),
        kept_chain.as_bytes(),
        PUBLIC_MODE,
    )
    .unwrap();

    let second = ensure_server_pki(&dir, &opts()).unwrap();
    assert_ne!(second.serving().cert_pem(), short_chain);
    assert_ne!(second.serving().key_pem(), short.key_pem);
    let (_, _, expiry) = inspect(second.serving().cert_pem());
    assert!(expiry > now + 300 * DAY);
    verify_server_chain(
        second.server_ca_pem(),
        second.serving().cert_pem(),
        "kubernetes",
    )
    .unwrap();
    assert_eq!(second.admin().cert_pem(), kept_chain);
    // CAs untouched.
    assert_eq!(first.server_ca(), second.server_ca());
    assert_eq!(first.client_ca(), second.client_ca());
    assert_eq!(first.request_header_ca(), second.request_header_ca());

    // The clock moving on renews every leaf, still without touching CAs.
    let later = ensure_server_pki_at(&dir, &opts(), now + 300 * DAY).unwrap();
    assert_ne!(later.admin(), second.admin());
    assert_ne!(
        later.kube_apiserver_client(),
        second.kube_apiserver_client()
    );
    assert_ne!(later.auth_proxy(), second.auth_proxy());
    assert_ne!(later.serving(), second.serving());
    assert_eq!(later.server_ca(), first.server_ca());
    assert_eq!(later.client_ca(), first.client_ca());
    assert_eq!(
        later.service_account_key_pem(),
        first.service_account_key_pem()
    );
}

#[test]
fn san_change_triggers_reissue() {
    let (_tmp, dir) = tls_dir();
    let first = ensure_server_pki(&dir, &opts()).unwrap();

    let mut wider = opts();
    wider.extra_sans = vec!["API.Example.com".into(), "203.0.113.7".into()];
    let second = ensure_server_pki(&dir, &wider).unwrap();
    assert_ne!(first.serving(), second.serving());
    assert_eq!(
        first.admin(),
        second.admin(),
        "only the serving cert changes"
    );
    assert_eq!(first.server_ca(), second.server_ca());
    let (dns, ips, _) = inspect(second.serving().cert_pem());
    assert!(dns.contains(&"api.example.com".to_string()));
    assert!(ips.contains(&"203.0.113.7".parse().unwrap()));
    verify_server_chain(
        second.server_ca_pem(),
        second.serving().cert_pem(),
        "api.example.com",
    )
    .unwrap();

    // Same options again: kept.
    assert_eq!(ensure_server_pki(&dir, &wider).unwrap(), second);
    // A subset of the names is still covered: kept.
    assert_eq!(
        ensure_server_pki(&dir, &opts()).unwrap().serving(),
        second.serving()
    );
    // A new node IP: re-issued.
    let mut moved = wider.clone();
    moved.ips.push("10.0.0.5".parse().unwrap());
    let third = ensure_server_pki(&dir, &moved).unwrap();
    assert_ne!(third.serving(), second.serving());
    // A different service IP: re-issued.
    let mut svc = moved.clone();
    svc.service_ip = "10.96.0.1".parse().unwrap();
    assert_ne!(
        ensure_server_pki(&dir, &svc).unwrap().serving(),
        third.serving()
    );
}

#[test]
fn invalid_san_is_rejected_before_touching_disk() {
    let (_tmp, dir) = tls_dir();
    let mut bad = opts();
    bad.extra_sans = vec!["not a name".into()];
    let err = ensure_server_pki(&dir, &bad).unwrap_err();
    assert!(matches!(err, PkiError::InvalidSan { .. }), "{err}");
    assert!(!dir.exists());
}

#[test]
fn loose_modes_are_tightened() {
    let (_tmp, dir) = tls_dir();
    ensure_server_pki(&dir, &opts()).unwrap();
    let before = snapshot(&dir);
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    for f in ["server-ca.key", "client-admin.key", "service.key"] {
        fs::set_permissions(dir.join(f), fs::Permissions::from_mode(0o644)).unwrap();
    }
    ensure_server_pki(&dir, &opts()).unwrap();
    assert_eq!(mode(&dir), 0o700);
    for f in ["server-ca.key", "client-admin.key", "service.key"] {
        assert_eq!(mode(&dir.join(f)), 0o600, "{f}");
    }
    assert_eq!(before, snapshot(&dir));
}

fn assert_error_names(dir: &Path, file: &str) {
    let before = fs::read(dir.join(file)).unwrap();
    let err = ensure_server_pki(dir, &opts()).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains(&dir.join(file).display().to_string()),
        "{file}: {msg}"
    );
    assert_eq!(
        fs::read(dir.join(file)).unwrap(),
        before,
        "{file} was modified"
    );
}

#[test]
fn corrupt_files_are_errors_naming_the_file() {
    for file in [
        "server-ca.crt",
        "server-ca.key",
        "client-ca.key",
        "request-header-ca.crt",
        "serving-kube-apiserver.crt",
        "client-admin.key",
        "service.key",
    ] {
        let (_tmp, dir) = tls_dir();
        ensure_server_pki(&dir, &opts()).unwrap();
        fs::write(
            dir.join(file),
            "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        assert_error_names(&dir, file);
        fs::write(dir.join(file), [0xff, 0xfe, 0x00]).unwrap();
        assert_error_names(&dir, file);
        fs::write(dir.join(file), "").unwrap();
        assert_error_names(&dir, file);
    }
}

#[test]
fn ca_problems_never_regenerate_the_ca() {
    // Certificate without its key.
    let (_tmp, dir) = tls_dir();
    ensure_server_pki(&dir, &opts()).unwrap();
    fs::remove_file(dir.join("client-ca.key")).unwrap();
    let err = ensure_server_pki(&dir, &opts()).unwrap_err();
    assert!(matches!(err, PkiError::CaKeyMissing { .. }), "{err}");
    assert!(!dir.join("client-ca.key").exists());

    // Key belonging to another CA.
    let (_tmp2, dir2) = tls_dir();
    ensure_server_pki(&dir2, &opts()).unwrap();
    fs::copy(dir2.join("client-ca.key"), dir2.join("server-ca.key")).unwrap();
    let err = ensure_server_pki(&dir2, &opts()).unwrap_err();
    assert!(matches!(err, PkiError::CaKeyMismatch { .. }), "{err}");
    assert_error_names(&dir2, "server-ca.key");

    // A leaf certificate where a CA should be.
    let (_tmp3, dir3) = tls_dir();
    ensure_server_pki(&dir3, &opts()).unwrap();
    fs::copy(dir3.join("client-admin.crt"), dir3.join("client-ca.crt")).unwrap();
    fs::copy(dir3.join("client-admin.key"), dir3.join("client-ca.key")).unwrap();
    assert_error_names(&dir3, "client-ca.crt");
}

#[test]
fn crash_after_ca_key_write_recovers_with_same_key() {
    let (_tmp, dir) = tls_dir();
    let first = ensure_server_pki(&dir, &opts()).unwrap();
    fs::remove_file(dir.join("server-ca.crt")).unwrap();
    let second = ensure_server_pki(&dir, &opts()).unwrap();
    assert_eq!(second.server_ca().key_pem(), first.server_ca().key_pem());
    // The serving leaf was re-issued under the new CA certificate.
    assert_ne!(second.serving(), first.serving());
    verify_server_chain(
        second.server_ca_pem(),
        second.serving().cert_pem(),
        "localhost",
    )
    .unwrap();
    let chain = second.serving().cert_chain_der().unwrap();
    assert_eq!(chain.len(), 2);
    assert_eq!(chain[1], second.server_ca().leaf_der().unwrap());
    // Leaves of the untouched CAs are kept.
    assert_eq!(second.admin(), first.admin());
}

#[test]
fn leaf_with_mismatched_key_or_missing_half_is_reissued() {
    let (_tmp, dir) = tls_dir();
    let first = ensure_server_pki(&dir, &opts()).unwrap();
    // A crash between writing a new key and its certificate.
    fs::copy(
        dir.join("client-kube-apiserver.key"),
        dir.join("client-admin.key"),
    )
    .unwrap();
    fs::remove_file(dir.join("client-auth-proxy.crt")).unwrap();
    fs::remove_file(dir.join("service.pub")).unwrap();
    let second = ensure_server_pki(&dir, &opts()).unwrap();
    assert_ne!(second.admin(), first.admin());
    assert_ne!(second.auth_proxy(), first.auth_proxy());
    assert_eq!(
        second.kube_apiserver_client(),
        first.kube_apiserver_client()
    );
    assert_eq!(
        second.service_account_pub_pem(),
        first.service_account_pub_pem()
    );
    verify_client_chain(second.client_ca_pem(), second.admin().cert_pem()).unwrap();
}

#[test]
fn issued_client_certs_carry_every_group_and_verify() {
    let (_tmp, dir) = tls_dir();
    let pki = ensure_server_pki(&dir, &opts()).unwrap();
    let (cert, key) = pki
        .issue_client_cert("system:node:n1", &["system:nodes", "team-a", "team-b"], 30)
        .unwrap();
    assert!(key.contains("PRIVATE KEY"));
    let der = first_cert_der(&cert).unwrap();
    assert_eq!(
        identity_from_der(&der).unwrap(),
        ClientIdentity {
            user: "system:node:n1".into(),
            groups: vec!["system:nodes".into(), "team-a".into(), "team-b".into()],
        }
    );
    verify_client_chain(pki.client_ca_pem(), &cert).unwrap();
    let (_, _, expiry) = inspect(&cert);
    assert!((expiry - chrono::Utc::now().timestamp() - 30 * DAY).abs() < 3600);
    // The key really belongs to the certificate.
    let kp = rcgen::KeyPair::from_pem(&key).unwrap();
    let (_, parsed) = X509Certificate::from_der(&der).unwrap();
    assert_eq!(
        parsed.public_key().subject_public_key.data.as_ref(),
        kp.public_key_raw()
    );

    assert!(pki.issue_client_cert("x", &[], 0).is_err());
    assert!(pki.issue_client_cert("", &[], 1).is_err());
    assert!(pki.issue_client_cert("x", &["ok", ""], 1).is_err());
    // Issuing writes nothing.
    assert_eq!(fs::read_dir(&dir).unwrap().count(), ALL_FILES.len());
}

#[test]
fn issued_serving_certs_verify_for_their_names() {
    let (_tmp, dir) = tls_dir();
    let pki = ensure_server_pki(&dir, &opts()).unwrap();
    let ip: IpAddr = "10.1.2.3".parse().unwrap();
    let (cert, _key) = pki
        .issue_serving_cert("node1", &["node1", "node1.lan"], &[ip])
        .unwrap();
    for name in ["node1", "node1.lan", "10.1.2.3"] {
        verify_server_chain(pki.server_ca_pem(), &cert, name).unwrap();
    }
    assert!(verify_server_chain(pki.server_ca_pem(), &cert, "node2").is_err());
    assert!(pki.issue_serving_cert("node1", &[], &[]).is_err());
    assert!(pki.issue_serving_cert("node1", &["bad name"], &[]).is_err());
}

#[test]
fn identity_from_garbage_is_an_error() {
    assert!(identity_from_der(b"").is_err());
    assert!(identity_from_der(&[0x30, 0x03, 0x02, 0x01, 0x01]).is_err());
}

// ---- TLS end to end -------------------------------------------------------

fn client_config(ca_pem: &str, client: Option<&CertAndKey>) -> Arc<ClientConfig> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots(ca_pem));
    let mut cfg = match client {
        Some(c) => builder
            .with_client_auth_cert(c.cert_chain_der().unwrap(), c.key_der().unwrap())
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(cfg)
}

/// Serve one TLS connection; reply with "<user>|<groups>|<alpn>" and return
/// the server-side handshake result (identity or error text).
async fn handshake(
    server: Arc<rustls::ServerConfig>,
    client: Arc<ClientConfig>,
) -> (
    Result<Option<ClientIdentity>, String>,
    Result<String, String>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server_task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut tls = match tokio_rustls::TlsAcceptor::from(server).accept(tcp).await {
            Ok(t) => t,
            Err(e) => return Err(e.to_string()),
        };
        let (_, conn) = tls.get_ref();
        let identity = match conn.peer_certificates().and_then(|c| c.first()) {
            Some(cert) => Some(identity_from_der(cert).map_err(|e| e.to_string())?),
            None => None,
        };
        let alpn = String::from_utf8_lossy(conn.alpn_protocol().unwrap_or(b"-")).to_string();
        let line = match &identity {
            Some(id) => format!("{}|{}|{alpn}", id.user, id.groups.join(",")),
            None => format!("anonymous||{alpn}"),
        };
        tls.write_all(line.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        tls.shutdown().await.map_err(|e| e.to_string())?;
        Ok(identity)
    });

    let client_result = async {
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| e.to_string())?;
        let name = ServerName::try_from("kubernetes.default.svc").map_err(|e| e.to_string())?;
        let mut tls = tokio_rustls::TlsConnector::from(client)
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        let mut out = String::new();
        tls.read_to_string(&mut out)
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>(out)
    }
    .await;
    let server_result = server_task.await.unwrap();
    (server_result, client_result)
}

#[tokio::test]
async fn tls_end_to_end_with_client_certificates() {
    let (_tmp, dir) = tls_dir();
    let pki = ensure_server_pki(&dir, &opts()).unwrap();
    let server = pki.rustls_server_config().unwrap();
    assert_eq!(
        server.alpn_protocols,
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    );

    // Admin certificate: the server sees the identity.
    let (srv, cli) = handshake(
        server.clone(),
        client_config(pki.server_ca_pem(), Some(pki.admin())),
    )
    .await;
    assert_eq!(
        srv.unwrap(),
        Some(ClientIdentity {
            user: "system:admin".into(),
            groups: vec!["system:masters".into()]
        })
    );
    assert_eq!(cli.unwrap(), "system:admin|system:masters|h2");

    // No certificate (bearer-token clients): allowed, anonymous at TLS level.
    let (srv, cli) = handshake(server.clone(), client_config(pki.server_ca_pem(), None)).await;
    assert_eq!(srv.unwrap(), None);
    assert_eq!(cli.unwrap(), "anonymous||h2");

    // A freshly issued multi-group certificate works too.
    let (cert, key) = pki
        .issue_client_cert("system:node:n1", &["system:nodes", "extra"], 1)
        .unwrap();
    let node = CertAndKey {
        cert_pem: cert,
        key_pem: key,
        cert_path: PathBuf::from("node.crt"),
        key_path: PathBuf::from("node.key"),
    };
    let (srv, _) = handshake(
        server.clone(),
        client_config(pki.server_ca_pem(), Some(&node)),
    )
    .await;
    assert_eq!(srv.unwrap().unwrap().groups, vec!["system:nodes", "extra"]);

    // A client certificate from another cluster's CA: rejected in the handshake.
    let (_tmp2, other_dir) = tls_dir();
    let other = ensure_server_pki(&other_dir, &opts()).unwrap();
    let (srv, cli) = handshake(
        server.clone(),
        client_config(pki.server_ca_pem(), Some(other.admin())),
    )
    .await;
    let srv_err = srv.expect_err("server accepted a foreign client cert");
    assert!(srv_err.contains("invalid peer certificate"), "{srv_err}");
    assert!(cli.is_err(), "client got a reply: {cli:?}");

    // The front-proxy certificate is not a user certificate here.
    let (srv, _) = handshake(
        server.clone(),
        client_config(pki.server_ca_pem(), Some(pki.auth_proxy())),
    )
    .await;
    assert!(srv.is_err());

    // And the client refuses a server from another CA.
    let (_, cli) = handshake(server, client_config(other.server_ca_pem(), None)).await;
    assert!(cli.is_err());
}
