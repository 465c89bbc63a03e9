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

mod common;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::client::conn::http2;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};

use common::{SkiffServer, Stub, Target, bench_secs, load_average, ms, percentile, verdict};

const WATCHERS: usize = 1_000;
const CONNECTIONS: usize = 10;
const WRITES_PER_SEC: u32 = 100;
const NAMESPACE: &str = "bench-watch";
const SENT_ANNOTATION: &str = "bench.skiff.io/sent-us";
/// How long a watcher waits for events after the writer's last create.
const GRACE: Duration = Duration::from_secs(5);
const P99_BUDGET: Duration = Duration::from_millis(25);

fn main() {
    common::block_on(run());
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

    let stub = start_stub();
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
    (bench_secs(10.0) * f64::from(WRITES_PER_SEC)).round() as usize
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
    let (status, body) = conn.create_namespace(NAMESPACE).await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "create namespace: {}",
        String::from_utf8_lossy(&body)
    );
    let path = format!("/api/v1/namespaces/{NAMESPACE}/configmaps?limit=1");
    let (status, body) = conn
        .request(Method::GET, &path, None, Bytes::new())
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

// ---------------------------------------------------------------- stand-in

/// A trivial HTTPS watch server in this process (same hyper + tokio-rustls
/// stack as skiff): a `POST` is answered `201` with its own body and that body
/// is broadcast as an ADDED event to every open `GET` (watch) stream. It runs
/// on its own runtime and threads, as a server process would.
fn start_stub() -> Stub {
    let (events, _) = broadcast::channel::<Bytes>(4096);
    let state = Arc::new(StubState {
        events,
        revision: Mutex::new(0),
    });
    Stub::start(move |req: Request<Incoming>| {
        let state = state.clone();
        async move { stub_handle(req, &state).await }
    })
}

type StubBody = UnsyncBoxBody<Bytes, Infallible>;

/// The stand-in's whole state: the event feed and the last revision.
struct StubState {
    events: broadcast::Sender<Bytes>,
    revision: Mutex<u64>,
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
