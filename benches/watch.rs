//! Watch fan-out benchmark (`cargo bench --bench watch`): spawns the real
//! `skiff server` binary (`SKIFF_BIN`, default `target/release/skiff`) with
//! its agent disabled, opens 1,000 concurrent watches on the ConfigMaps of one
//! namespace (HTTP/2, `WATCHERS / CONNECTIONS` streams per connection: the
//! server's hyper default allows 200 concurrent streams per connection), then
//! one writer starts 100 creates/s for `SKIFF_BENCH_SECS` seconds (default
//! 10), open loop (each create on its own HTTP/2 stream, not waiting for the
//! previous one). Each object carries its send time in an annotation; each
//! watcher parses every event, records receive − send, and checks it sees
//! every create exactly once, in strictly increasing resourceVersion order.
//!
//! The stand-in baseline, run first in the same process, is the same client
//! against a trivial in-process HTTPS server (same hyper + tokio-rustls stack)
//! that answers each create with `201` and fans the object out to every open
//! watch through a `tokio::sync::broadcast` channel and one relay task per
//! watch (skiff's shape, minus the store), on its own 2-thread runtime: it
//! measures what the client, TLS and the machine alone cost. Budget: p99 ≤ 25 ms, printed,
//! never asserted.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, mpsc};
use tokio_rustls::{TlsAcceptor, TlsConnector};

const WATCHERS: usize = 1_000;
const CONNECTIONS: usize = 10;
const WRITES_PER_SEC: u32 = 100;
const NAMESPACE: &str = "bench-watch";
const SENT_ANNOTATION: &str = "bench.skiff.io/sent-us";
/// How long a watcher waits for events after the writer's last create.
const GRACE: Duration = Duration::from_secs(5);
const P99_BUDGET: Duration = Duration::from_millis(25);

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("build the tokio runtime");
    runtime.block_on(run());
}

async fn run() {
    let events = event_count();
    println!(
        "watch bench: {WATCHERS} watchers over {CONNECTIONS} HTTP/2 connections, {events} creates at {WRITES_PER_SEC}/s, \
         {} cores, load average {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_average()
    );
    let clock = Instant::now();

    let stub = Stub::start();
    let baseline = run_phase(&stub.target, "0", events, clock).await;
    drop(stub);
    report("stand-in", &baseline, events);

    let server = SkiffServer::start().await;
    let skiff = server.target();
    let rv = prepare_namespace(&skiff).await;
    let measured = run_phase(&skiff, &rv, events, clock).await;
    report("skiff", &measured, events);

    let (p99, base_p99) = (measured.percentile(0.99), baseline.percentile(0.99));
    println!(
        "watch: p50 {} ms p99 {} ms | stand-in: p50 {} ms p99 {} ms | ratio p99 {:.2}",
        ms(measured.percentile(0.5)),
        ms(p99),
        ms(baseline.percentile(0.5)),
        ms(base_p99),
        p99.as_secs_f64() / base_p99.as_secs_f64().max(1e-9)
    );
    let complete = measured.missing(events) == 0 && measured.broken == 0;
    println!(
        "  budget p99 ≤ {} ms with no event missing: {}; load average after: {}",
        ms(P99_BUDGET),
        verdict(p99 <= P99_BUDGET && complete),
        load_average()
    );
}

fn event_count() -> usize {
    let secs: f64 = std::env::var("SKIFF_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10.0);
    (secs * f64::from(WRITES_PER_SEC)).round() as usize
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn configmaps_path(target: &Target) -> String {
    format!(
        "https://{}/api/v1/namespaces/{NAMESPACE}/configmaps",
        target.addr
    )
}

/// Create the namespace; return the resourceVersion to watch from.
async fn prepare_namespace(skiff: &Target) -> String {
    let mut conn = skiff.connect_h1().await;
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}});
    let (status, body) = conn
        .request(
            Method::POST,
            "/api/v1/namespaces",
            Bytes::from(ns.to_string()),
        )
        .await
        .expect("create the namespace");
    assert_eq!(
        status,
        StatusCode::CREATED,
        "create namespace: {}",
        String::from_utf8_lossy(&body)
    );
    let path = format!("/api/v1/namespaces/{NAMESPACE}/configmaps?limit=1");
    let (status, body) = conn
        .request(Method::GET, &path, Bytes::new())
        .await
        .expect("list configmaps");
    assert_eq!(
        status,
        StatusCode::OK,
        "list: {}",
        String::from_utf8_lossy(&body)
    );
    let list: Value = serde_json::from_slice(&body).expect("list is JSON");
    let rv = list
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str);
    rv.expect("list carries metadata.resourceVersion")
        .to_string()
}

// ---------------------------------------------------------------- one phase

/// What all watchers of one phase saw, plus the writer's own figures.
struct PhaseResult {
    /// Write → event-delivered latency of every delivered event, sorted.
    latencies: Vec<Duration>,
    delivered: usize,
    /// Watchers that saw an error, a gap or a reordering.
    broken: usize,
    first_error: Option<String>,
    /// Delivery time minus the time the writer had the create's `201`, in
    /// ms, sorted: near zero or negative when the fan-out adds nothing to
    /// the write path (events leave before the response reaches the writer).
    after_ack: Vec<f64>,
    /// Create latencies, sorted.
    writer: Vec<Duration>,
    writer_elapsed: Duration,
}

impl PhaseResult {
    fn percentile(&self, p: f64) -> Duration {
        percentile(&self.latencies, p)
    }

    fn missing(&self, events: usize) -> usize {
        (WATCHERS * events).saturating_sub(self.delivered)
    }
}

async fn run_phase(target: &Target, rv: &str, events: usize, clock: Instant) -> PhaseResult {
    let uri = format!(
        "{}?watch=true&resourceVersion={rv}",
        configmaps_path(target)
    );
    let watchers = open_watches(target, &uri).await;
    let deadline =
        Instant::now() + Duration::from_secs_f64(events as f64 / f64::from(WRITES_PER_SEC)) + GRACE;
    let readers: Vec<_> = watchers
        .into_iter()
        .map(|body| {
            tokio::spawn(read_events(
                body,
                events,
                clock,
                tokio::time::Instant::from_std(deadline),
            ))
        })
        .collect();
    let started = Instant::now();
    let created = write_paced(target, events, clock).await;
    let writer_elapsed = started.elapsed();

    let mut result = PhaseResult {
        latencies: Vec::with_capacity(WATCHERS * events),
        delivered: 0,
        broken: 0,
        first_error: None,
        after_ack: Vec::with_capacity(WATCHERS * events),
        writer: Vec::new(),
        writer_elapsed,
    };
    for reader in readers {
        let seen = reader.await.expect("watch reader task");
        result.delivered += seen.delivered.len();
        for (seq, latency) in seen.delivered {
            result.latencies.push(latency);
            result
                .after_ack
                .push((latency.as_secs_f64() - created[seq].as_secs_f64()) * 1e3);
        }
        if let Some(e) = seen.error {
            result.broken += 1;
            result.first_error.get_or_insert(e);
        }
    }
    result.latencies.sort_unstable();
    result.after_ack.sort_unstable_by(f64::total_cmp);
    result.writer = created;
    result.writer.sort_unstable();
    result
}

/// Open `WATCHERS` watches spread over `CONNECTIONS` HTTP/2 connections and
/// wait until every one has its response headers.
async fn open_watches(target: &Target, uri: &str) -> Vec<Incoming> {
    let mut conns = Vec::with_capacity(CONNECTIONS);
    for _ in 0..CONNECTIONS {
        conns.push(target.connect_h2().await);
    }
    let started = Instant::now();
    let opening: Vec<_> = (0..WATCHERS)
        .map(|i| {
            let mut sender = conns[i % CONNECTIONS].clone();
            let req = Request::get(uri)
                .body(Full::new(Bytes::new()))
                .expect("watch request");
            tokio::spawn(async move {
                sender.ready().await.expect("HTTP/2 connection ready");
                sender
                    .send_request(req)
                    .await
                    .expect("watch response headers")
            })
        })
        .collect();
    let mut bodies = Vec::with_capacity(WATCHERS);
    for task in opening {
        let resp = task.await.expect("watch open task");
        assert_eq!(resp.status(), StatusCode::OK, "watch refused");
        bodies.push(resp.into_body());
    }
    println!(
        "  {WATCHERS} watches open in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    bodies
}

/// Start one create every `1 / WRITES_PER_SEC` seconds, each on its own
/// HTTP/2 stream and not waiting for the previous one (open loop: a slow
/// server gets the same load, not less); return each create's latency, by
/// sequence number.
async fn write_paced(target: &Target, events: usize, clock: Instant) -> Vec<Duration> {
    let sender = target.connect_h2().await;
    let uri = configmaps_path(target);
    let mut tick = tokio::time::interval(Duration::from_secs(1) / WRITES_PER_SEC);
    let mut creates = Vec::with_capacity(events);
    for seq in 0..events {
        tick.tick().await;
        let (sender, uri) = (sender.clone(), uri.clone());
        creates.push(tokio::spawn(create_event(sender, uri, seq, clock)));
    }
    let mut latencies = Vec::with_capacity(events);
    for create in creates {
        latencies.push(create.await.expect("create task"));
    }
    latencies
}

/// Create ConfigMap number `seq`, stamped with its send time.
async fn create_event(
    mut sender: http2::SendRequest<Full<Bytes>>,
    uri: String,
    seq: usize,
    clock: Instant,
) -> Duration {
    let started = Instant::now();
    let body = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": format!("ev-{seq:06}"),
            "namespace": NAMESPACE,
            "labels": {"app.kubernetes.io/name": "bench"},
            "annotations": {SENT_ANNOTATION: started.duration_since(clock).as_micros().to_string()},
        },
        "data": {"config.yaml": "listen: 0.0.0.0:8080\nlog_level: info\nworkers: 4\n"},
    });
    let req = Request::post(uri)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("create request");
    sender.ready().await.expect("writer connection ready");
    let resp = sender.send_request(req).await.expect("create response");
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .expect("create response body")
        .to_bytes();
    assert_eq!(
        status,
        StatusCode::CREATED,
        "create ev-{seq}: {}",
        String::from_utf8_lossy(&body)
    );
    started.elapsed()
}

// ---------------------------------------------------------------- one watcher

/// What one watcher saw.
struct Seen {
    /// Sequence number and send → receive latency of each event, as they came.
    delivered: Vec<(usize, Duration)>,
    error: Option<String>,
    /// Which `ev-N` objects arrived.
    arrived: Vec<bool>,
    last_revision: u64,
}

#[derive(Deserialize)]
struct Event<'a> {
    #[serde(rename = "type", borrow)]
    kind: &'a str,
    #[serde(borrow)]
    object: EventObject<'a>,
}

#[derive(Deserialize)]
struct EventObject<'a> {
    #[serde(borrow, default)]
    metadata: Option<Metadata<'a>>,
}

#[derive(Deserialize)]
struct Metadata<'a> {
    #[serde(borrow)]
    name: &'a str,
    #[serde(rename = "resourceVersion", borrow)]
    resource_version: &'a str,
    #[serde(borrow, default)]
    annotations: Option<Annotations<'a>>,
}

#[derive(Deserialize)]
struct Annotations<'a> {
    #[serde(rename = "bench.skiff.io/sent-us", borrow)]
    sent_us: Option<&'a str>,
}

/// Read newline-delimited watch events until `events` creates were seen,
/// the stream ends, or `deadline` passes.
async fn read_events(
    mut body: Incoming,
    events: usize,
    clock: Instant,
    deadline: tokio::time::Instant,
) -> Seen {
    let mut seen = Seen {
        delivered: Vec::with_capacity(events),
        error: None,
        arrived: vec![false; events],
        last_revision: 0,
    };
    let mut buf: Vec<u8> = Vec::with_capacity(16 * 1024);
    while seen.delivered.len() < events && seen.error.is_none() {
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) => break,
            Ok(None) => {
                seen.error = Some("watch stream ended early".into());
                break;
            }
            Ok(Some(Err(e))) => {
                seen.error = Some(format!("watch stream: {e}"));
                break;
            }
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        let received = Instant::now();
        buf.extend_from_slice(&data);
        let consumed = take_lines(&buf, |line| seen.record(line, received, clock));
        buf.drain(..consumed);
    }
    if seen.error.is_none() && seen.delivered.len() < events {
        seen.error = Some(format!(
            "saw {} of {events} events before the deadline",
            seen.delivered.len()
        ));
    }
    seen
}

/// Call `f` on every complete line in `buf`; return the bytes consumed.
fn take_lines(buf: &[u8], mut f: impl FnMut(&[u8])) -> usize {
    let mut start = 0;
    while let Some(n) = buf[start..].iter().position(|&b| b == b'\n') {
        f(&buf[start..start + n]);
        start += n + 1;
    }
    start
}

impl Seen {
    fn record(&mut self, line: &[u8], received: Instant, clock: Instant) {
        if line.is_empty() || self.error.is_some() {
            return;
        }
        match parse_event(line) {
            Ok(Some(added)) => {
                if let Err(e) = self.check(&added) {
                    self.error = Some(e);
                    return;
                }
                let sent = clock + Duration::from_micros(added.sent_us);
                let latency = received.saturating_duration_since(sent);
                self.delivered.push((added.seq, latency));
            }
            Ok(None) => {}
            Err(e) => self.error = Some(e),
        }
    }

    /// Every object once, in strictly increasing revision order.
    fn check(&mut self, added: &Added) -> Result<(), String> {
        if added.revision <= self.last_revision {
            return Err(format!(
                "ev-{:06} at revision {} after revision {}: out of order",
                added.seq, added.revision, self.last_revision
            ));
        }
        self.last_revision = added.revision;
        match self.arrived.get_mut(added.seq) {
            Some(arrived) if !*arrived => {
                *arrived = true;
                Ok(())
            }
            Some(_) => Err(format!("ev-{:06} delivered twice", added.seq)),
            None => Err(format!("unexpected object ev-{:06}", added.seq)),
        }
    }
}

/// The fields of an ADDED event the bench checks.
struct Added {
    seq: usize,
    revision: u64,
    sent_us: u64,
}

/// An ADDED event; `None` for events to skip (bookmarks); an error for
/// anything else.
fn parse_event(line: &[u8]) -> Result<Option<Added>, String> {
    let shown = || String::from_utf8_lossy(&line[..line.len().min(300)]).into_owned();
    let event: Event =
        serde_json::from_slice(line).map_err(|e| format!("bad event ({e}): {}", shown()))?;
    match event.kind {
        "ADDED" => {}
        "BOOKMARK" => return Ok(None),
        other => return Err(format!("unexpected {other} event: {}", shown())),
    }
    let meta = event
        .object
        .metadata
        .ok_or_else(|| format!("event without metadata: {}", shown()))?;
    let seq = meta.name.strip_prefix("ev-").and_then(|n| n.parse().ok());
    let seq = seq.ok_or_else(|| format!("unexpected object {}", meta.name))?;
    let revision = meta
        .resource_version
        .parse()
        .map_err(|e| format!("{}: bad resourceVersion: {e}", meta.name))?;
    let sent = meta
        .annotations
        .and_then(|a| a.sent_us)
        .ok_or_else(|| format!("{} has no send time", meta.name))?;
    let sent_us = sent
        .parse()
        .map_err(|e| format!("{}: bad send time {sent:?}: {e}", meta.name))?;
    Ok(Some(Added {
        seq,
        revision,
        sent_us,
    }))
}

fn report(label: &str, r: &PhaseResult, events: usize) {
    println!(
        "watch {label}: delivered {}/{} events, missing {}, broken watchers {}; latency p50 {} ms p99 {} ms max {} ms; \
         writer {:.0} creates/s (open loop), create p50 {} ms p99 {} ms",
        r.delivered,
        WATCHERS * events,
        r.missing(events),
        r.broken,
        ms(r.percentile(0.5)),
        ms(r.percentile(0.99)),
        ms(r.percentile(1.0)),
        r.writer.len() as f64 / r.writer_elapsed.as_secs_f64(),
        ms(percentile(&r.writer, 0.5)),
        ms(percentile(&r.writer, 0.99)),
    );
    let after_ack = |p: f64| {
        let i = ((r.after_ack.len().saturating_sub(1)) as f64 * p).round() as usize;
        r.after_ack.get(i).copied().unwrap_or(0.0)
    };
    println!(
        "  split: delivered − create's 201 at the writer: p50 {:+.2} ms p99 {:+.2} ms",
        after_ack(0.5),
        after_ack(0.99)
    );
    if let Some(e) = &r.first_error {
        println!("  first error: {e}");
    }
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
    /// The same client configuration, offering `http/1.1` and `h2` by ALPN.
    h1: Arc<ClientConfig>,
    h2: Arc<ClientConfig>,
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
    async fn connect_h1(&self) -> H1 {
        self.try_connect_h1()
            .await
            .unwrap_or_else(|e| panic!("connect to {}: {e}", self.addr))
    }

    async fn try_connect_h1(&self) -> Result<H1, String> {
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
    async fn connect_h2(&self) -> http2::SendRequest<Full<Bytes>> {
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
        body: Bytes,
    ) -> Result<(StatusCode, Bytes), String> {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, self.target.addr.to_string())
            .header(header::CONTENT_TYPE, "application/json")
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
            conn.request(Method::GET, "/readyz", Bytes::new()).await,
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

// ---------------------------------------------------------------- stand-in

/// A trivial HTTPS watch server in this process (same hyper + tokio-rustls
/// stack as skiff): a `POST` is answered `201` with its own body and that body
/// is broadcast as an ADDED event to every open `GET` (watch) stream. It runs
/// on its own runtime and threads, as a server process would.
struct Stub {
    target: Target,
    _runtime: StubRuntime,
}

type StubBody = UnsyncBoxBody<Bytes, Infallible>;

impl Stub {
    fn start() -> Stub {
        let (tls, cert) = stub_tls();
        let acceptor = TlsAcceptor::from(tls);
        let (addr, runtime) = StubRuntime::spawn(move |listener| {
            let (events, _) = broadcast::channel::<Bytes>(4096);
            let state = Arc::new(StubState {
                events,
                revision: Mutex::new(0),
            });
            serve_stub(listener, acceptor, state)
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

/// The stand-in's whole state: the event feed and the last revision.
struct StubState {
    events: broadcast::Sender<Bytes>,
    revision: Mutex<u64>,
}

async fn serve_stub(listener: TcpListener, acceptor: TlsAcceptor, state: Arc<StubState>) {
    while let Ok((tcp, _)) = listener.accept().await {
        let _ = tcp.set_nodelay(true);
        let (acceptor, state) = (acceptor.clone(), state.clone());
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(stub_handle(req, &state).await) }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let _ = builder.serve_connection(TokioIo::new(tls), service).await;
        });
    }
}

async fn stub_handle(req: Request<Incoming>, state: &StubState) -> Response<StubBody> {
    if req.method() == Method::GET {
        return Response::new(watch_stream(state.events.subscribe()));
    }
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let Ok(mut object) = serde_json::from_slice::<Value>(&body) else {
        let mut resp = Response::new(Full::new(Bytes::from_static(b"bad JSON")).boxed_unsync());
        *resp.status_mut() = StatusCode::BAD_REQUEST;
        return resp;
    };
    // Stamp and publish under one lock so revisions reach watchers in order.
    let object = {
        let mut revision = state
            .revision
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *revision += 1;
        object["metadata"]["resourceVersion"] = Value::String(revision.to_string());
        let object = Bytes::from(object.to_string());
        let mut line = Vec::with_capacity(object.len() + 32);
        line.extend_from_slice(b"{\"type\":\"ADDED\",\"object\":");
        line.extend_from_slice(&object);
        line.extend_from_slice(b"}\n");
        let _ = state.events.send(Bytes::from(line));
        object
    };
    let mut resp = Response::new(Full::new(object).boxed_unsync());
    *resp.status_mut() = StatusCode::CREATED;
    resp
}

/// A response body relaying broadcast events through a per-watch channel,
/// like a server's per-watcher task.
fn watch_stream(mut events: broadcast::Receiver<Bytes>) -> StubBody {
    let (tx, rx) = mpsc::channel::<Bytes>(256);
    tokio::spawn(async move {
        while let Ok(line) = events.recv().await {
            if tx.send(line).await.is_err() {
                return;
            }
        }
    });
    let frames = futures_stream(rx);
    StreamBody::new(frames).boxed_unsync()
}

/// The receiver as a stream of body frames.
fn futures_stream(
    rx: mpsc::Receiver<Bytes>,
) -> impl futures::Stream<Item = Result<Frame<Bytes>, Infallible>> + Send + 'static {
    futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok(Frame::data(b)), rx))
    })
}
