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

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use serde_json::{Value, json};

use common::{H1, SkiffServer, Stub, Target, bench_secs, load_average, ms, percentile, verdict};

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
    common::block_on(run());
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

    let stub = start_stub(
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
    Duration::from_secs_f64(bench_secs(5.0))
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
    let (status, body) = conn.create_namespace(LIST_NAMESPACE).await;
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

    let stub = start_stub(StatusCode::OK, json);
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

// ---------------------------------------------------------------- baseline stub

/// The stand-in: reads each request body and answers with a fixed status
/// and body.
fn start_stub(status: StatusCode, body: Bytes) -> Stub {
    Stub::start(move |req: Request<Incoming>| {
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
            resp
        }
    })
}
