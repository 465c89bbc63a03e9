//! API server benchmark (`cargo bench --bench api`): spawns the real
//! `skiff server` binary (`SKIFF_BIN`, default `target/release/skiff`) with
//! its agent disabled and drives it over HTTPS with the admin client
//! certificate from the kubeconfig it writes, one HTTP/1.1 keep-alive
//! connection per client task.
//!
//! - create: 64 concurrent clients `POST` small ConfigMaps with unique names
//!   for `SKIFF_BENCH_SECS` seconds (default 5): objects/s, p50, p99. The
//!   baseline is the same client against a trivial HTTPS server in this
//!   process, on its own 2-thread runtime (tokio-rustls + hyper, the same
//!   server stack skiff uses), that reads the body and answers `201` with a
//!   fixed body: the ratio shows how much of the budget the client and TLS
//!   alone take on this machine.
//! - list: 10,000 ConfigMaps in one namespace, listed 20 times as JSON, as a
//!   `meta.k8s.io/v1` Table, and with a label selector (1,000 matches):
//!   median and p99 (with 20 samples, p99 is the slowest). The baseline is
//!   the in-process server answering with the bytes of skiff's own JSON list.
//!
//! It also times `fdatasync` on the data dir's file system: the floor under
//! a durable create.
//!
//! Budgets (2 cores, client on the same machine): create ≥ 6,000 objects/s
//! with p99 ≤ 10 ms, list ≤ 150 ms. They are printed, never asserted.

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
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

const CLIENTS: usize = 64;
const LIST_OBJECTS: usize = 10_000;
const LIST_RUNS: usize = 20;
const LIST_NAMESPACE: &str = "bench-list";
const BUCKET_LABEL: &str = "bench.skiff.io/bucket";
const TABLE_ACCEPT: &str = "application/json;as=Table;v=v1;g=meta.k8s.io";

const CREATE_BUDGET_PER_SEC: f64 = 6_000.0;
const CREATE_P99_BUDGET: Duration = Duration::from_millis(10);
const LIST_BUDGET: Duration = Duration::from_millis(150);

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("build the tokio runtime");
    runtime.block_on(run());
}

async fn run() {
    let secs = env_secs();
    println!(
        "api bench: {CLIENTS} clients, {secs:?} per create run, {} cores, load average {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_average()
    );
    let server = SkiffServer::start().await;
    let skiff = server.target();

    let stub = Stub::start(
        StatusCode::CREATED,
        Bytes::from(configmap("stub", "default", 0).to_string()),
    );
    let baseline = create_load(&stub.target, "default", "base", secs).await;
    let created = create_load(&skiff, "default", "run", secs).await;
    report_create(&created, &baseline);
    let dir = server.dir.path().to_path_buf();
    let (sync_p50, sync_p99) = tokio::task::spawn_blocking(move || fdatasync_times(&dir))
        .await
        .expect("fdatasync probe");
    println!(
        "  disk: fdatasync of a 4 KiB append in the data dir's file system p50 {} ms p99 {} ms \
         (a durable create waits for one, up to two with group commit)",
        ms(sync_p50),
        ms(sync_p99)
    );

    list_bench(&skiff).await;
    println!("load average after: {}", load_average());
}

fn env_secs() -> Duration {
    let secs = std::env::var("SKIFF_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5.0);
    Duration::from_secs_f64(secs)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// A small ConfigMap like the ones controllers write.
fn configmap(name: &str, namespace: &str, index: usize) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/name": "bench", BUCKET_LABEL: format!("b{}", index % 10)},
        },
        "data": {
            "config.yaml": "listen: 0.0.0.0:8080\nlog_level: info\nworkers: 4\n",
            "feature-flags": "alpha=false,beta=true",
        },
    })
}

// ---------------------------------------------------------------- create

/// The outcome of one load run.
struct Measured {
    ok: usize,
    errors: usize,
    first_error: Option<String>,
    elapsed: Duration,
    /// Latency of each successful request, sorted.
    latencies: Vec<Duration>,
}

impl Measured {
    fn per_sec(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }
}

/// Run `CLIENTS` creating clients until `duration` has passed.
async fn create_load(
    target: &Target,
    namespace: &str,
    prefix: &str,
    duration: Duration,
) -> Measured {
    let conns = join_all(
        (0..CLIENTS).map(|_| {
            let target = target.clone();
            tokio::spawn(async move { target.connect_h1().await })
        }),
        "connect",
    )
    .await;
    let start = Instant::now();
    let deadline = start + duration;
    let clients = conns.into_iter().enumerate().map(|(c, conn)| {
        let path = format!("/api/v1/namespaces/{namespace}/configmaps");
        let namespace = namespace.to_string();
        let prefix = format!("{prefix}-{c}");
        let objects = (0..).map(move |i| configmap(&format!("{prefix}-{i}"), &namespace, i));
        tokio::spawn(async move { create_all(conn, &path, objects, Some(deadline)).await })
    });
    let parts = join_all(clients, "create client").await;
    merge(parts, start.elapsed())
}

/// Per-client result: latencies, error count, first error.
type ClientResult = (Vec<Duration>, usize, Option<String>);

/// Create `objects` one after the other on `conn` until they run out or
/// `deadline` passes.
async fn create_all(
    mut conn: H1,
    path: &str,
    objects: impl Iterator<Item = Value>,
    deadline: Option<Instant>,
) -> ClientResult {
    let mut latencies = Vec::new();
    let (mut errors, mut first_error) = (0, None);
    for object in objects {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        let body = Bytes::from(object.to_string());
        let started = Instant::now();
        match conn.request(Method::POST, path, None, body).await {
            Ok((StatusCode::CREATED, _)) => latencies.push(started.elapsed()),
            Ok((status, body)) => {
                errors += 1;
                first_error
                    .get_or_insert_with(|| format!("{status}: {}", String::from_utf8_lossy(&body)));
            }
            Err(e) => {
                errors += 1;
                first_error.get_or_insert(e);
                conn = conn.target.connect_h1().await;
            }
        }
    }
    (latencies, errors, first_error)
}

fn merge(parts: Vec<ClientResult>, elapsed: Duration) -> Measured {
    let mut m = Measured {
        ok: 0,
        errors: 0,
        first_error: None,
        elapsed,
        latencies: Vec::new(),
    };
    for (latencies, errors, first_error) in parts {
        m.ok += latencies.len();
        m.latencies.extend(latencies);
        m.errors += errors;
        m.first_error = m.first_error.or(first_error);
    }
    m.latencies.sort_unstable();
    m
}

fn report_create(run: &Measured, base: &Measured) {
    let (p50, p99) = (
        percentile(&run.latencies, 0.50),
        percentile(&run.latencies, 0.99),
    );
    println!(
        "create: {:.0} obj/s p50 {} ms p99 {} ms | baseline: {:.0} req/s (p50 {} ms p99 {} ms) | ratio {:.3}",
        run.per_sec(),
        ms(p50),
        ms(p99),
        base.per_sec(),
        ms(percentile(&base.latencies, 0.50)),
        ms(percentile(&base.latencies, 0.99)),
        run.per_sec() / base.per_sec(),
    );
    for (name, m) in [("create", run), ("baseline", base)] {
        if m.errors > 0 {
            println!(
                "  {name}: {} errors, first: {}",
                m.errors,
                m.first_error.as_deref().unwrap_or("?")
            );
        }
    }
    let met = run.per_sec() >= CREATE_BUDGET_PER_SEC && p99 <= CREATE_P99_BUDGET && run.errors == 0;
    println!(
        "  budget ≥ {CREATE_BUDGET_PER_SEC:.0} obj/s and p99 ≤ {} ms: {}",
        ms(CREATE_P99_BUDGET),
        verdict(met)
    );
}

/// The disk's floor under a durable create: `fdatasync` after a 4 KiB
/// append, 200 times, in `dir`'s file system.
fn fdatasync_times(dir: &Path) -> (Duration, Duration) {
    use std::io::Write;
    let path = dir.join("fdatasync-probe");
    let mut file = std::fs::File::create(&path).expect("create the fdatasync probe file");
    let mut times = Vec::with_capacity(200);
    for _ in 0..200 {
        file.write_all(&[0u8; 4096]).expect("write the probe file");
        let started = Instant::now();
        file.sync_data().expect("fdatasync the probe file");
        times.push(started.elapsed());
    }
    let _ = std::fs::remove_file(&path);
    times.sort_unstable();
    (percentile(&times, 0.5), percentile(&times, 0.99))
}

// ---------------------------------------------------------------- list

async fn list_bench(skiff: &Target) {
    let mut conn = skiff.connect_h1().await;
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": LIST_NAMESPACE}});
    let (status, body) = conn
        .request(
            Method::POST,
            "/api/v1/namespaces",
            None,
            Bytes::from(ns.to_string()),
        )
        .await
        .expect("create the list namespace");
    assert!(
        status == StatusCode::CREATED || status == StatusCode::CONFLICT,
        "create namespace {LIST_NAMESPACE}: {status} {}",
        String::from_utf8_lossy(&body)
    );
    fill_list_namespace(skiff).await;

    let path = format!("/api/v1/namespaces/{LIST_NAMESPACE}/configmaps");
    let selected = format!(
        "{path}?labelSelector={}",
        BUCKET_LABEL.replace('/', "%2F") + "%3Db3"
    );
    let json = time_list(&mut conn, "json", &path, None, LIST_OBJECTS).await;
    time_list(&mut conn, "table", &path, Some(TABLE_ACCEPT), LIST_OBJECTS).await;
    time_list(
        &mut conn,
        "labelSelector",
        &selected,
        None,
        LIST_OBJECTS / 10,
    )
    .await;

    let stub = Stub::start(StatusCode::OK, json);
    let mut stub_conn = stub.target.connect_h1().await;
    time_list(
        &mut stub_conn,
        "baseline (same bytes)",
        "/",
        None,
        LIST_OBJECTS,
    )
    .await;
}

/// Create `LIST_OBJECTS` ConfigMaps with `CLIENTS` parallel clients.
async fn fill_list_namespace(skiff: &Target) {
    let started = Instant::now();
    let clients = (0..CLIENTS).map(|c| {
        let target = skiff.clone();
        tokio::spawn(async move {
            let conn = target.connect_h1().await;
            let path = format!("/api/v1/namespaces/{LIST_NAMESPACE}/configmaps");
            let objects = (c..LIST_OBJECTS)
                .step_by(CLIENTS)
                .map(|i| configmap(&format!("cm-{i:05}"), LIST_NAMESPACE, i));
            create_all(conn, &path, objects, None).await
        })
    });
    let m = merge(join_all(clients, "fill client").await, started.elapsed());
    assert_eq!(
        m.errors,
        0,
        "creating {LIST_OBJECTS} objects: {}",
        m.first_error.unwrap_or_default()
    );
    println!(
        "list setup: created {} objects in {:.2} s ({:.0} obj/s, p99 {} ms)",
        m.ok,
        m.elapsed.as_secs_f64(),
        m.per_sec(),
        ms(percentile(&m.latencies, 0.99))
    );
}

/// Time `LIST_RUNS` lists after one checked warm-up; returns the warm-up body.
async fn time_list(
    conn: &mut H1,
    label: &str,
    path: &str,
    accept: Option<&str>,
    expect: usize,
) -> Bytes {
    let (status, warm) = conn
        .request(Method::GET, path, accept, Bytes::new())
        .await
        .expect("warm-up list");
    assert_eq!(
        status,
        StatusCode::OK,
        "{label}: {}",
        String::from_utf8_lossy(&warm[..warm.len().min(300)])
    );
    let items = count_items(&warm);
    assert_eq!(
        items, expect,
        "{label}: list returned {items} items, expected {expect}"
    );

    let mut times = Vec::with_capacity(LIST_RUNS);
    for _ in 0..LIST_RUNS {
        let started = Instant::now();
        let (status, body) = conn
            .request(Method::GET, path, accept, Bytes::new())
            .await
            .expect("list");
        times.push(started.elapsed());
        assert_eq!(
            (status, !body.is_empty()),
            (StatusCode::OK, true),
            "{label}: list failed"
        );
    }
    times.sort_unstable();
    let p99 = percentile(&times, 0.99);
    println!(
        "list {label}: {items} items, {:.1} MB, median {} ms p99 {} ms (budget ≤ {} ms: {})",
        warm.len() as f64 / 1e6,
        ms(percentile(&times, 0.5)),
        ms(p99),
        ms(LIST_BUDGET),
        verdict(p99 <= LIST_BUDGET)
    );
    warm
}

/// Number of `items` (a List) or `rows` (a Table) in a response body.
fn count_items(body: &[u8]) -> usize {
    let v: Value = serde_json::from_slice(body).expect("list response is JSON");
    let items = v.get("items").or_else(|| v.get("rows"));
    items.and_then(Value::as_array).map_or(0, Vec::len)
}

// ---------------------------------------------------------------- helpers

async fn join_all<T: Send + 'static>(
    tasks: impl IntoIterator<Item = tokio::task::JoinHandle<T>>,
    what: &str,
) -> Vec<T> {
    // Spawn every task before awaiting the first: the iterator is lazy.
    let tasks: Vec<_> = tasks.into_iter().collect();
    let mut out = Vec::with_capacity(tasks.len());
    for task in tasks {
        out.push(
            task.await
                .unwrap_or_else(|e| panic!("{what} task failed: {e}")),
        );
    }
    out
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1e3)
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "MISSED" }
}

// ---------------------------------------------------------------- HTTPS client

/// Where to connect and how to authenticate.
#[derive(Clone)]
struct Target {
    addr: SocketAddr,
    tls: Arc<ClientConfig>,
}

impl Target {
    fn new(
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
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        Target {
            addr,
            tls: Arc::new(tls),
        }
    }

    /// One TLS connection speaking HTTP/1.1 with keep-alive.
    async fn connect_h1(&self) -> H1 {
        self.try_connect_h1()
            .await
            .unwrap_or_else(|e| panic!("connect to {}: {e}", self.addr))
    }

    async fn try_connect_h1(&self) -> Result<H1, String> {
        let tcp = TcpStream::connect(self.addr)
            .await
            .map_err(|e| format!("TCP: {e}"))?;
        tcp.set_nodelay(true)
            .map_err(|e| format!("TCP_NODELAY: {e}"))?;
        let name = ServerName::IpAddress(self.addr.ip().into());
        let tls = TlsConnector::from(self.tls.clone())
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS: {e}"))?;
        let (sender, conn) = http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| format!("HTTP/1.1: {e}"))?;
        tokio::spawn(conn);
        Ok(H1 {
            sender,
            target: self.clone(),
        })
    }
}

/// An HTTP/1.1 connection; requests on it are sequential.
struct H1 {
    sender: http1::SendRequest<Full<Bytes>>,
    target: Target,
}

impl H1 {
    /// Send one request and read the whole response; `Err` on transport errors.
    async fn request(
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
}

// ---------------------------------------------------------------- skiff server

/// A `skiff server` child process in a temporary data dir; killed on drop.
struct SkiffServer {
    child: Child,
    dir: tempfile::TempDir,
    addr: SocketAddr,
}

impl SkiffServer {
    async fn start() -> SkiffServer {
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

    /// The admin client from the kubeconfig the server wrote.
    fn target(&self) -> Target {
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

/// TLS material from an admin kubeconfig.
struct Credentials {
    roots: RootCertStore,
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
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
fn read_kubeconfig(path: &Path) -> Option<Credentials> {
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

// ---------------------------------------------------------------- baseline stub

/// A trivial HTTPS server in this process: reads each request body and
/// answers with a fixed status and body, over the same hyper + tokio-rustls
/// stack as skiff (ring, ALPN h2/http1.1, auto builder), on its own runtime.
struct Stub {
    target: Target,
    _runtime: StubRuntime,
}

impl Stub {
    fn start(status: StatusCode, body: Bytes) -> Stub {
        let (tls, cert) = stub_tls();
        let acceptor = TlsAcceptor::from(tls);
        let (addr, runtime) =
            StubRuntime::spawn(move |listener| serve_stub(listener, acceptor, status, body));
        let mut roots = RootCertStore::empty();
        roots.add(cert).expect("stub certificate as a root");
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
        .expect("stub certificate");
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
            .expect("stub server certificate");
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    (Arc::new(config), cert)
}

async fn serve_stub(listener: TcpListener, acceptor: TlsAcceptor, status: StatusCode, body: Bytes) {
    while let Ok((tcp, _)) = listener.accept().await {
        let _ = tcp.set_nodelay(true);
        let (acceptor, body) = (acceptor.clone(), body.clone());
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let body = body.clone();
                async move {
                    // Read the request like a real server would before answering.
                    let _ = req.into_body().collect().await;
                    let mut resp = Response::new(Full::new(body));
                    *resp.status_mut() = status;
                    resp.headers_mut().insert(
                        header::CONTENT_TYPE,
                        header::HeaderValue::from_static("application/json"),
                    );
                    Ok::<_, Infallible>(resp)
                }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let _ = builder.serve_connection(TokioIo::new(tls), service).await;
        });
    }
}
