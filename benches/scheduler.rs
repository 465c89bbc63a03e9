//! Scheduler benchmark (`cargo bench --bench scheduler`): spawns the real
//! `skiff server` binary (`SKIFF_BIN`, default `target/release/skiff`),
//! creates 1,000 Node objects (Ready, 4 cpu / 8Gi / 110 pods) and then
//! 10,000 pending pods (10m cpu / 16Mi each), open loop at
//! `SKIFF_BENCH_RATE` creates/s (default 1,500; each create on its own
//! HTTP/2 stream, not waiting for the previous one), and watches the pods
//! until every one has `spec.nodeName`.
//!
//! Figures: pods/s bound end to end (pods ÷ time from the first create sent
//! to the last binding seen by the watch); per pod, the scheduling latency
//! (the watch showing the pod pending → the same watch showing it bound:
//! queueing, filters, scores and the binding write, with the create path
//! and the watch delay cancelling out; the figure the p99 budget is about)
//! and the end-to-end latency (the create being sent → the watch showing it
//! bound, which adds the API server's create path under the open-loop
//! load), p50 and p99 of each; also the server's RSS (`VmRSS`) with 1,000
//! nodes and 10,000 pods.
//!
//! Baseline, in the same run: a server started with `--disable-scheduler`
//! and a no-op scheduler in this process that watches pending pods
//! (`fieldSelector=spec.nodeName=`) and binds them round-robin through the
//! `binding` subresource with the same concurrency as skiff's scheduler
//! (64 binds in flight): what creating, binding and watching alone cost, so
//! the ratio is what real decisions (filters, scores, `Scheduled` events)
//! add. Budgets: ≥ 1,000 pods/s and p99 ≤ 50 ms, printed, never asserted.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http2;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::{Semaphore, mpsc};

use common::{SkiffServer, Target, load_average, ms, percentile, verdict};

const NODES: usize = 1_000;
const NAMESPACE: &str = "bench-sched";
const BIND_CONCURRENCY: usize = 64;
const DEADLINE: Duration = Duration::from_secs(180);
const RATE_BUDGET: f64 = 1_000.0;
const P99_BUDGET: Duration = Duration::from_millis(50);

type Sender = http2::SendRequest<Full<Bytes>>;
/// By pod sequence number: when the watch first showed it pending, and when
/// it first showed it bound, and where.
type BoundAt = Arc<Mutex<Vec<PodTimes>>>;

#[derive(Clone, Default)]
struct PodTimes {
    pending: Option<Duration>,
    bound: Option<(Duration, String)>,
}

fn main() {
    common::block_on(run());
}

/// `SKIFF_BENCH_PODS` (default 10,000; smaller for a quick smoke run).
fn pods() -> usize {
    std::env::var("SKIFF_BENCH_PODS")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(10_000)
}

fn rate() -> u32 {
    std::env::var("SKIFF_BENCH_RATE")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|r| *r > 0)
        .unwrap_or(1_500)
}

async fn run() {
    let rate = rate();
    println!(
        "scheduler bench: {NODES} nodes, {} pods created at {rate}/s, {} cores, load average {}",
        pods(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_average()
    );
    let baseline = {
        let server = SkiffServer::start_with(&["--disable-scheduler"]).await;
        let r = phase(&server, rate, true).await;
        report(
            "baseline (no-op round-robin binder, scheduler disabled)",
            &r,
        );
        r
    };
    let skiff = {
        let server = SkiffServer::start().await;
        let r = phase(&server, rate, false).await;
        report("skiff scheduler", &r);
        r
    };
    println!(
        "  ratio skiff/baseline: throughput {:.2}, scheduling p99 {:.2}, end-to-end p99 {:.2}",
        skiff.per_sec / baseline.per_sec,
        skiff.sched_p99.as_secs_f64() / baseline.sched_p99.as_secs_f64().max(1e-9),
        skiff.p99.as_secs_f64() / baseline.p99.as_secs_f64().max(1e-9)
    );
    println!(
        "  budget ≥ {RATE_BUDGET:.0} pods/s: {}; scheduling p99 ≤ {} ms: {}",
        verdict(skiff.per_sec >= RATE_BUDGET && skiff.bound == pods()),
        ms(P99_BUDGET),
        verdict(skiff.sched_p99 <= P99_BUDGET && skiff.bound == pods())
    );
}

struct PhaseResult {
    bound: usize,
    per_sec: f64,
    p50: Duration,
    p99: Duration,
    max: Duration,
    sched_p50: Duration,
    sched_p99: Duration,
    sched_max: Duration,
    create_rate: f64,
    nodes_used: usize,
    rss_kib: u64,
}

fn report(label: &str, r: &PhaseResult) {
    println!("  {label}:");
    println!(
        "    bound {}/{} on {} nodes: {:.0} pods/s end to end (creates went out at {:.0}/s); \
         create → bound p50 {} ms p99 {} ms max {} ms",
        r.bound,
        pods(),
        r.nodes_used,
        r.per_sec,
        r.create_rate,
        ms(r.p50),
        ms(r.p99),
        ms(r.max)
    );
    println!(
        "    scheduling latency (watch: pending → bound) p50 {} ms p99 {} ms max {} ms",
        ms(r.sched_p50),
        ms(r.sched_p99),
        ms(r.sched_max)
    );
    println!(
        "    server RSS with {NODES} nodes + {} pods: {:.1} MiB",
        pods(),
        r.rss_kib as f64 / 1024.0
    );
}

async fn phase(server: &SkiffServer, rate: u32, noop_scheduler: bool) -> PhaseResult {
    let target = server.target();
    let setup = target.connect_h2().await;
    let t = Instant::now();
    let (status, body) = send(&setup, "POST", &target, "/api/v1/namespaces", ns_body()).await;
    assert_eq!(status, StatusCode::CREATED, "namespace: {body}");
    create_nodes(&target, &setup).await;
    println!(
        "    {NODES} Ready nodes created in {:.2} s",
        t.elapsed().as_secs_f64()
    );
    let (status, body) = send(
        &setup,
        "GET",
        &target,
        &format!("/api/v1/namespaces/{NAMESPACE}/pods?limit=1"),
        String::new(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "list pods: {body}");
    let list: Value = serde_json::from_str(&body).expect("pod list is JSON");
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .expect("list resourceVersion")
        .to_string();

    // the watch that measures
    let clock = Instant::now();
    let watch = open_watch(
        &target,
        &format!("/api/v1/namespaces/{NAMESPACE}/pods?watch=1&resourceVersion={rv}"),
    )
    .await;
    let bound_at: BoundAt = Arc::new(Mutex::new(vec![PodTimes::default(); pods()]));
    let (all_bound_tx, mut all_bound_rx) = mpsc::channel::<()>(1);
    let reader = {
        let bound_at = bound_at.clone();
        tokio::spawn(async move {
            let mut count = 0usize;
            let total = pods();
            read_watch(watch, |ev| {
                let Some(seq) = ev.seq else { return };
                let mut b = bound_at.lock().unwrap();
                let t = &mut b[seq];
                match ev.node {
                    None => {
                        t.pending.get_or_insert(clock.elapsed());
                    }
                    Some(node) if t.bound.is_none() => {
                        t.bound = Some((clock.elapsed(), node.to_string()));
                        count += 1;
                        if count == total {
                            let _ = all_bound_tx.try_send(());
                        }
                    }
                    Some(_) => {}
                }
            })
            .await;
        })
    };
    let noop = if noop_scheduler {
        let w = open_watch(
            &target,
            &format!(
                "/api/v1/namespaces/{NAMESPACE}/pods?watch=1&resourceVersion={rv}&fieldSelector=spec.nodeName%3D"
            ),
        )
        .await;
        let binder = target.connect_h2().await;
        Some(tokio::spawn(noop_schedule(target.clone(), binder, w)))
    } else {
        None
    };

    // paced creates
    let creator = target.connect_h2().await;
    let mut sent = Vec::with_capacity(pods());
    let mut tick = tokio::time::interval(Duration::from_secs(1) / rate);
    let mut creates = Vec::with_capacity(pods());
    for seq in 0..pods() {
        tick.tick().await;
        sent.push(clock.elapsed());
        creates.push(tokio::spawn(create_pod(
            creator.clone(),
            target.clone(),
            seq,
        )));
    }
    let create_rate = pods() as f64 / (clock.elapsed() - sent[0]).as_secs_f64();
    for c in creates {
        c.await.expect("create task");
    }
    let finished = tokio::time::timeout(DEADLINE, all_bound_rx.recv())
        .await
        .is_ok();
    let rss_kib = vm_rss_kib(server.pid());
    reader.abort();
    if let Some(n) = noop {
        n.abort();
    }
    if !finished {
        println!("    NOT all pods were bound within {DEADLINE:?}");
    }

    let b = bound_at.lock().unwrap();
    let mut latencies: Vec<Duration> = Vec::with_capacity(pods());
    let mut scheduling: Vec<Duration> = Vec::with_capacity(pods());
    let mut last = Duration::ZERO;
    let mut nodes = std::collections::HashSet::new();
    for (seq, t) in b.iter().enumerate() {
        if let Some((at, node)) = &t.bound {
            latencies.push(at.saturating_sub(sent[seq]));
            // A pod first seen already bound waited no time pending.
            scheduling.push(at.saturating_sub(t.pending.unwrap_or(*at)));
            last = last.max(*at);
            nodes.insert(node.clone());
        }
    }
    latencies.sort();
    scheduling.sort();
    let bound = latencies.len();
    PhaseResult {
        bound,
        per_sec: bound as f64 / (last.saturating_sub(sent[0])).as_secs_f64().max(1e-9),
        p50: percentile(&latencies, 0.50),
        p99: percentile(&latencies, 0.99),
        max: latencies.last().copied().unwrap_or_default(),
        sched_p50: percentile(&scheduling, 0.50),
        sched_p99: percentile(&scheduling, 0.99),
        sched_max: scheduling.last().copied().unwrap_or_default(),
        create_rate,
        nodes_used: nodes.len(),
        rss_kib,
    }
}

fn vm_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn ns_body() -> String {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}).to_string()
}

fn node_name(i: usize) -> String {
    format!("node-{i:04}")
}

/// One request on an HTTP/2 connection; (status, body as text).
async fn send(
    sender: &Sender,
    method: &str,
    target: &Target,
    path: &str,
    body: String,
) -> (StatusCode, String) {
    let content_type = if method == "PATCH" {
        "application/merge-patch+json"
    } else {
        "application/json"
    };
    let req = Request::builder()
        .method(method)
        .uri(format!("https://{}{path}", target.addr))
        .header(header::CONTENT_TYPE, content_type)
        .header(header::ACCEPT, "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("request");
    let mut sender = sender.clone();
    sender.ready().await.expect("connection ready");
    let resp = sender.send_request(req).await.expect("response");
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .expect("response body")
        .to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// Creates the nodes and marks them Ready with capacity, 64 at a time.
async fn create_nodes(target: &Target, sender: &Sender) {
    let sem = Arc::new(Semaphore::new(64));
    let mut tasks = Vec::with_capacity(NODES);
    for i in 0..NODES {
        let permit = sem.clone().acquire_owned().await.expect("semaphore");
        let (target, sender) = (target.clone(), sender.clone());
        tasks.push(tokio::spawn(async move {
            let name = node_name(i);
            let node = json!({
                "apiVersion": "v1", "kind": "Node",
                "metadata": {"name": name, "labels": {
                    "kubernetes.io/hostname": name,
                    "kubernetes.io/os": "linux",
                    "topology.kubernetes.io/zone": format!("zone-{}", i % 3),
                }},
            });
            let (status, body) =
                send(&sender, "POST", &target, "/api/v1/nodes", node.to_string()).await;
            assert_eq!(status, StatusCode::CREATED, "node {name}: {body}");
            let resources = json!({"cpu": "4", "memory": "8Gi", "pods": "110"});
            let patch = json!({"status": {
                "capacity": resources, "allocatable": resources,
                "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                                "message": "kubelet is posting ready status"}],
            }});
            let (status, body) = send(
                &sender,
                "PATCH",
                &target,
                &format!("/api/v1/nodes/{name}/status"),
                patch.to_string(),
            )
            .await;
            assert_eq!(status, StatusCode::OK, "node {name} status: {body}");
            drop(permit);
        }));
    }
    for t in tasks {
        t.await.expect("node task");
    }
}

async fn create_pod(sender: Sender, target: Target, seq: usize) {
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("p-{seq:05}"), "namespace": NAMESPACE,
                     "labels": {"app": "bench"}},
        "spec": {"containers": [{
            "name": "c", "image": "registry.k8s.io/pause:3.10",
            "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
        }]},
    });
    let (status, body) = send(
        &sender,
        "POST",
        &target,
        &format!("/api/v1/namespaces/{NAMESPACE}/pods"),
        pod.to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "pod {seq}: {body}");
}

async fn open_watch(target: &Target, path: &str) -> Incoming {
    let mut sender = target.connect_h2().await;
    let req = Request::get(format!("https://{}{path}", target.addr))
        .body(Full::new(Bytes::new()))
        .expect("watch request");
    sender.ready().await.expect("watch connection ready");
    let resp = sender.send_request(req).await.expect("watch response");
    assert_eq!(resp.status(), StatusCode::OK, "watch refused");
    resp.into_body()
}

/// What the bench needs from one watch event.
struct Seen<'a> {
    kind: &'a str,
    name: &'a str,
    seq: Option<usize>,
    node: Option<&'a str>,
}

#[derive(Deserialize)]
struct WatchEvent<'a> {
    #[serde(rename = "type", borrow)]
    kind: &'a str,
    #[serde(borrow)]
    object: Object<'a>,
}

#[derive(Deserialize)]
struct Object<'a> {
    #[serde(borrow, default)]
    metadata: Option<Meta<'a>>,
    #[serde(borrow, default)]
    spec: Option<Spec<'a>>,
}

#[derive(Deserialize)]
struct Meta<'a> {
    #[serde(borrow, default)]
    name: Option<&'a str>,
}

#[derive(Deserialize)]
struct Spec<'a> {
    #[serde(rename = "nodeName", borrow, default)]
    node_name: Option<&'a str>,
}

/// Calls `f` for every event of a watch stream until it ends.
async fn read_watch(mut body: Incoming, mut f: impl FnMut(Seen<'_>)) {
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    while let Some(Ok(frame)) = body.frame().await {
        let Ok(data) = frame.into_data() else {
            continue;
        };
        buf.extend_from_slice(&data);
        let mut start = 0;
        while let Some(n) = buf[start..].iter().position(|&b| b == b'\n') {
            let line = &buf[start..start + n];
            start += n + 1;
            let Ok(ev) = serde_json::from_slice::<WatchEvent>(line) else {
                continue;
            };
            let name = ev.object.metadata.and_then(|m| m.name).unwrap_or("");
            f(Seen {
                kind: ev.kind,
                name,
                seq: name.strip_prefix("p-").and_then(|s| s.parse().ok()),
                node: ev
                    .object
                    .spec
                    .and_then(|s| s.node_name)
                    .filter(|n| !n.is_empty()),
            });
        }
        buf.drain(..start);
    }
}

/// The baseline "scheduler": binds every pending pod it is told of to the
/// next node in turn, `BIND_CONCURRENCY` binds in flight.
async fn noop_schedule(target: Target, binder: Sender, watch: Incoming) {
    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    let reader = tokio::spawn(read_watch(watch, move |ev| {
        if ev.kind == "ADDED" && ev.node.is_none() && ev.seq.is_some() {
            let _ = tx.send(ev.name.to_string());
        }
    }));
    let sem = Arc::new(Semaphore::new(BIND_CONCURRENCY));
    let mut next = 0usize;
    while let Some(name) = rx.recv().await {
        let permit = sem.clone().acquire_owned().await.expect("semaphore");
        let node = node_name(next % NODES);
        next += 1;
        let (target, binder) = (target.clone(), binder.clone());
        tokio::spawn(async move {
            let binding = json!({
                "apiVersion": "v1", "kind": "Binding",
                "metadata": {"name": name, "namespace": NAMESPACE},
                "target": {"apiVersion": "v1", "kind": "Node", "name": node},
            });
            let (status, body) = send(
                &binder,
                "POST",
                &target,
                &format!("/api/v1/namespaces/{NAMESPACE}/pods/{name}/binding"),
                binding.to_string(),
            )
            .await;
            assert_eq!(status, StatusCode::CREATED, "bind {name}: {body}");
            drop(permit);
        });
    }
    reader.abort();
}
