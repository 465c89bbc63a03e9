//! What the `api` and `watch` benches share (`mod common;` in each):
//!
//! - [`SkiffServer`]: the real `skiff server` binary (`SKIFF_BIN`, default
//!   `target/release/skiff`) started with its agent disabled in a temporary
//!   data dir, waited on until `/readyz` answers, killed on drop; its admin
//!   client comes from the kubeconfig it writes ([`read_kubeconfig`]).
//! - [`Target`] and [`H1`]: the HTTPS client (rustls with ring, ALPN
//!   `http/1.1` or `h2`, `TCP_NODELAY`).
//! - [`Stub`]: the in-process stand-in server (TLS, HTTP/1.1 or HTTP/2, its
//!   own 2-worker runtime); each bench brings the handler it answers with.
//! - [`block_on`]: the bench's own multi-threaded tokio runtime.
//! - Reporting: [`load_average`], [`percentile`], [`ms`], [`verdict`], and
//!   [`bench_secs`] for `SKIFF_BENCH_SECS`.

// Each bench compiles this module on its own and uses only part of it.
#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Incoming};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use serde::Deserialize;
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// Run a bench's `run` on a multi-threaded tokio runtime.
pub fn block_on<F: Future>(run: F) -> F::Output {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("build the tokio runtime");
    runtime.block_on(run)
}

// ---------------------------------------------------------------- reporting

/// `SKIFF_BENCH_SECS` in seconds, or `default` when unset or unparsable.
pub fn bench_secs(default: f64) -> f64 {
    std::env::var("SKIFF_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

pub fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1e3)
}

pub fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "MISSED" }
}

// ---------------------------------------------------------------- HTTPS client

/// Where to connect and how to authenticate.
#[derive(Clone)]
pub struct Target {
    pub addr: SocketAddr,
    /// The same client configuration, offering `http/1.1` and `h2` by ALPN.
    h1: Arc<ClientConfig>,
    h2: Arc<ClientConfig>,
}

impl Target {
    pub fn new(
        addr: SocketAddr,
        roots: RootCertStore,
        identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    ) -> Self {
        let builder =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .expect("rustls protocol versions")
                .with_root_certificates(roots);
        let mut tls = match identity {
            Some((certs, key)) => builder
                .with_client_auth_cert(certs, key)
                .expect("client certificate and key"),
            None => builder.with_no_client_auth(),
        };
        tls.alpn_protocols = vec![b"h2".to_vec()];
        let h2 = Arc::new(tls.clone());
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        Target {
            addr,
            h1: Arc::new(tls),
            h2,
        }
    }

    async fn tls(
        &self,
        config: &Arc<ClientConfig>,
    ) -> Result<tokio_rustls::client::TlsStream<TcpStream>, String> {
        let tcp = TcpStream::connect(self.addr)
            .await
            .map_err(|e| format!("TCP: {e}"))?;
        tcp.set_nodelay(true)
            .map_err(|e| format!("TCP_NODELAY: {e}"))?;
        let name = ServerName::IpAddress(self.addr.ip().into());
        TlsConnector::from(config.clone())
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS: {e}"))
    }

    /// One TLS connection speaking HTTP/1.1 with keep-alive.
    pub async fn connect_h1(&self) -> H1 {
        self.try_connect_h1()
            .await
            .unwrap_or_else(|e| panic!("connect to {}: {e}", self.addr))
    }

    pub async fn try_connect_h1(&self) -> Result<H1, String> {
        let tls = self.tls(&self.h1).await?;
        let (sender, conn) = http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| format!("HTTP/1.1: {e}"))?;
        tokio::spawn(conn);
        Ok(H1 {
            sender,
            target: self.clone(),
        })
    }

    /// One TLS connection speaking HTTP/2; clone the sender for more streams.
    pub async fn connect_h2(&self) -> http2::SendRequest<Full<Bytes>> {
        let tls = self
            .tls(&self.h2)
            .await
            .unwrap_or_else(|e| panic!("connect to {}: {e}", self.addr));
        assert_eq!(
            tls.get_ref().1.alpn_protocol(),
            Some(&b"h2"[..]),
            "server did not negotiate HTTP/2"
        );
        let (sender, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .expect("HTTP/2 handshake");
        tokio::spawn(conn);
        sender
    }
}

/// An HTTP/1.1 connection; requests on it are sequential.
pub struct H1 {
    sender: http1::SendRequest<Full<Bytes>>,
    pub target: Target,
}

impl H1 {
    /// Send one request and read the whole response; `Err` on transport
    /// errors. `accept` defaults to `application/json`.
    pub async fn request(
        &mut self,
        method: Method,
        path: &str,
        accept: Option<&str>,
        body: Bytes,
    ) -> Result<(StatusCode, Bytes), String> {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, self.target.addr.to_string())
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, accept.unwrap_or("application/json"))
            .body(Full::new(body))
            .map_err(|e| e.to_string())?;
        self.sender
            .ready()
            .await
            .map_err(|e| format!("connection not ready: {e}"))?;
        let resp = self
            .sender
            .send_request(req)
            .await
            .map_err(|e| format!("request: {e}"))?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("response body: {e}"))?;
        Ok((status, body.to_bytes()))
    }

    /// `POST` a Namespace called `name`: the status and body of the answer;
    /// panics on transport errors.
    pub async fn create_namespace(&mut self, name: &str) -> (StatusCode, Bytes) {
        let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
        self.request(
            Method::POST,
            "/api/v1/namespaces",
            None,
            Bytes::from(ns.to_string()),
        )
        .await
        .unwrap_or_else(|e| panic!("create namespace {name}: {e}"))
    }
}

// ---------------------------------------------------------------- skiff server

/// A `skiff server` child process in a temporary data dir; killed on drop.
pub struct SkiffServer {
    child: Child,
    pub dir: tempfile::TempDir,
    addr: SocketAddr,
}

impl SkiffServer {
    pub async fn start() -> SkiffServer {
        SkiffServer::start_with(&[]).await
    }

    /// Like `start`, with extra `skiff server` flags.
    pub async fn start_with(extra_args: &[&str]) -> SkiffServer {
        let bin = skiff_binary();
        let dir = tempfile::tempdir().expect("temporary data dir");
        let config = dir.path().join("config.yaml");
        std::fs::write(&config, "").expect("write the empty config file");
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("server.log")).expect("server log file");
        let child = Command::new(&bin)
            .args(["server", "--disable-agent", "--config"])
            .arg(&config)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--https-listen-port", &port.to_string()])
            .args([
                "--bind-address",
                "127.0.0.1",
                "--advertise-address",
                "127.0.0.1",
            ])
            .arg("--write-kubeconfig")
            .arg(dir.path().join("kc.yaml"))
            .args(extra_args)
            .stdout(log.try_clone().expect("clone the log file"))
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
        let mut server = SkiffServer {
            child,
            dir,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        };
        let started = Instant::now();
        server.wait_ready().await;
        println!(
            "skiff server {} ready in {:.2} s",
            bin.display(),
            started.elapsed().as_secs_f64()
        );
        server
    }

    /// The server's resident memory (`VmRSS` from /proc), e.g. "52 MiB".
    pub fn rss(&self) -> String {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches(" kB").parse::<u64>().ok())
            .map(|kb| format!("{} MiB", kb / 1024))
            .unwrap_or_else(|| "unknown".into())
    }

    /// The server's process id (for `/proc/<pid>/status`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The admin client from the kubeconfig the server wrote.
    pub fn target(&self) -> Target {
        let creds = read_kubeconfig(&self.dir.path().join("kc.yaml")).expect("kubeconfig written");
        Target::new(self.addr, creds.roots, Some((creds.certs, creds.key)))
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "skiff server exited with {status}; log:\n{}",
                    self.log_tail()
                );
            }
            assert!(
                Instant::now() < deadline,
                "skiff server not ready after 60 s; log:\n{}",
                self.log_tail()
            );
            if read_kubeconfig(&self.dir.path().join("kc.yaml")).is_some() && self.readyz().await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn readyz(&self) -> bool {
        let Ok(mut conn) = self.target().try_connect_h1().await else {
            return false;
        };
        matches!(
            conn.request(Method::GET, "/readyz", None, Bytes::new())
                .await,
            Ok((StatusCode::OK, _))
        )
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for SkiffServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn skiff_binary() -> PathBuf {
    std::env::var_os("SKIFF_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/skiff"))
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("ephemeral port").port()
}

// ---------------------------------------------------------------- kubeconfig

/// TLS material from an admin kubeconfig.
pub struct Credentials {
    pub roots: RootCertStore,
    pub certs: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

#[derive(Deserialize)]
struct Kubeconfig {
    clusters: Vec<NamedCluster>,
    users: Vec<NamedUser>,
}

#[derive(Deserialize)]
struct NamedCluster {
    cluster: Cluster,
}

#[derive(Deserialize)]
struct Cluster {
    #[serde(rename = "certificate-authority-data")]
    ca: String,
}

#[derive(Deserialize)]
struct NamedUser {
    user: User,
}

#[derive(Deserialize)]
struct User {
    #[serde(rename = "client-certificate-data")]
    cert: String,
    #[serde(rename = "client-key-data")]
    key: String,
}

/// `None` until the file exists and holds complete credentials.
pub fn read_kubeconfig(path: &Path) -> Option<Credentials> {
    let kc: Kubeconfig = serde_yaml_ng::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
    let b64 = |s: &str| {
        base64::engine::general_purpose::STANDARD
            .decode(s.trim())
            .ok()
    };
    let ca = b64(&kc.clusters.first()?.cluster.ca)?;
    let user = &kc.users.first()?.user;
    let certs = pem_certs(&b64(&user.cert)?)?;
    let key = rustls_pemfile::private_key(&mut b64(&user.key)?.as_slice()).ok()??;
    let mut roots = RootCertStore::empty();
    for cert in pem_certs(&ca)? {
        roots.add(cert).ok()?;
    }
    Some(Credentials { roots, certs, key })
}

fn pem_certs(pem: &[u8]) -> Option<Vec<CertificateDer<'static>>> {
    let certs = rustls_pemfile::certs(&mut &pem[..])
        .collect::<Result<Vec<_>, _>>()
        .ok()?;
    (!certs.is_empty()).then_some(certs)
}

// ---------------------------------------------------------------- stand-in

/// A trivial HTTPS server in this process, over the same hyper +
/// tokio-rustls stack as skiff (ring, a self-signed certificate for
/// 127.0.0.1, ALPN h2/http1.1), on its own runtime; stopped on drop.
pub struct Stub {
    /// The client for it, trusting its certificate.
    pub target: Target,
    _runtime: StubRuntime,
}

impl Stub {
    /// Start the stand-in; `handle` answers each request.
    pub fn start<H, Fut, B>(handle: H) -> Stub
    where
        H: Fn(Request<Incoming>) -> Fut + Clone + Send + 'static,
        Fut: Future<Output = Response<B>> + Send + 'static,
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let (tls, cert) = stub_tls();
        let acceptor = TlsAcceptor::from(tls);
        // Serve HTTP/1.1 or HTTP/2 (auto builder) on each TLS connection.
        let (addr, runtime) = StubRuntime::spawn(move |listener| async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let _ = tcp.set_nodelay(true);
                let (acceptor, handle) = (acceptor.clone(), handle.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let response = handle(req);
                        async move { Ok::<_, Infallible>(response.await) }
                    });
                    let builder =
                        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    let _ = builder.serve_connection(TokioIo::new(tls), service).await;
                });
            }
        });
        let mut roots = RootCertStore::empty();
        roots.add(cert).expect("stand-in certificate as a root");
        Stub {
            target: Target::new(addr, roots, None),
            _runtime: runtime,
        }
    }
}

/// The stand-in's own 2-worker tokio runtime on its own threads, so that it
/// is scheduled like a separate server process instead of sharing the
/// client's workers; stopped on drop.
struct StubRuntime {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl StubRuntime {
    fn spawn<F, Fut>(serve: F) -> (SocketAddr, StubRuntime)
    where
        F: FnOnce(TcpListener) -> Fut + Send + 'static,
        Fut: Future<Output = ()>,
    {
        let listener =
            std::net::TcpListener::bind("127.0.0.1:0").expect("bind the stand-in server");
        let addr = listener.local_addr().expect("stand-in address");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("stand-in runtime");
            runtime.block_on(async move {
                let listener = TcpListener::from_std(listener).expect("stand-in listener");
                tokio::select! {
                    () = serve(listener) => {}
                    _ = stopped => {}
                }
            });
        });
        (
            addr,
            StubRuntime {
                stop: Some(stop),
                thread: Some(thread),
            },
        )
    }
}

impl Drop for StubRuntime {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn stub_tls() -> (Arc<ServerConfig>, CertificateDer<'static>) {
    let generated = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()])
        .expect("stand-in certificate");
    let cert = generated.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        generated.signing_key.serialize_der(),
    ));
    let mut config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("rustls protocol versions")
            .with_no_client_auth()
            .with_single_cert(vec![cert.clone()], key)
            .expect("stand-in server certificate");
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    (Arc::new(config), cert)
}
