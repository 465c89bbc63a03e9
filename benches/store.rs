//! Store benchmark (`cargo bench --bench store`): create throughput and
//! latency of `SqliteBackend` with 1, 16 and 64 concurrent writers, against
//! raw rusqlite baselines measured in the same run: one thread building the
//! same object per row (as the store's callers do), serialising it and
//! inserting it into a one-table log, committing in groups of as many rows as
//! there are writers, with the same durability (nothing counted before it is
//! on disk):
//!
//! - `raw FULL`: WAL, `synchronous = FULL` (SQLite fsyncs the WAL in every
//!   commit; the bundled SQLite uses `fsync`, not `fdatasync`);
//! - `raw fdatasync`: WAL, `synchronous = NORMAL` plus `fdatasync` of the WAL
//!   after every commit: the sync primitive the store itself uses.
//!
//! The store acknowledges only after an fdatasync of the WAL
//! (`synchronous_full`), but overlaps that fsync with building the next
//! batch. Also times listing 10,000 objects against a raw `SELECT`.
//!
//! Raw and store runs alternate for `SKIFF_BENCH_ROUNDS` rounds (default 5)
//! of `SKIFF_BENCH_SECS` seconds (default 1) each. Rates and latency
//! percentiles are over all rounds; the ratio store/raw is the median of the
//! ratios of runs from the same round, so load from elsewhere on the machine
//! that comes and goes skews it less. It never asserts on times.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use skiff::store::{Backend, SqliteBackend, SqliteOptions};

const WRITERS: [usize; 3] = [1, 16, 64];
const LIST_OBJECTS: usize = 10_000;

fn object(name: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name,
            "namespace": "default",
            "uid": "6f1c6c1e-3f0a-4b8e-9d55-2d8f6f3b8a10",
            "creationTimestamp": "2025-01-01T00:00:00Z",
            "labels": {"app.kubernetes.io/name": "bench", "app.kubernetes.io/part-of": "skiff"},
            "annotations": {"skiff.io/note": "a typical small object of a few hundred bytes"},
        },
        "data": {
            "config.yaml": "listen: 0.0.0.0:8080\nlog_level: info\nworkers: 4\ncache_size: 1024\n",
            "feature-flags": "alpha=false,beta=true,gamma=false",
        },
    })
}

fn key(name: &str) -> String {
    format!("/registry/configmaps/default/{name}")
}

struct Measured {
    ops: usize,
    elapsed: Duration,
    /// Per-operation latency, sorted.
    latencies: Vec<Duration>,
}

impl Measured {
    fn rate(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }

    fn percentile(&self, p: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let index = ((self.latencies.len() - 1) as f64 * p).round() as usize;
        self.latencies[index.min(self.latencies.len() - 1)]
    }
}

#[derive(Clone, Copy)]
enum Sync {
    /// `synchronous = FULL`.
    Full,
    /// `synchronous = NORMAL` + `fdatasync` of the WAL after each commit.
    Fdatasync,
}

fn raw_connection(path: &Path, sync: Sync) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(path).expect("open raw database");
    conn.query_row("PRAGMA journal_mode = WAL", [], |row| {
        row.get::<_, String>(0)
    })
    .expect("WAL");
    conn.execute_batch(match sync {
        Sync::Full => "PRAGMA synchronous = FULL;",
        Sync::Fdatasync => "PRAGMA synchronous = NORMAL;",
    })
    .expect("synchronous");
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS log (revision INTEGER PRIMARY KEY, key TEXT NOT NULL, value BLOB NOT NULL);",
    )
    .expect("raw schema");
    conn
}

/// A baseline: group commits of `batch` inserts, as fast as possible.
fn raw_group_commit(dir: &Path, batch: usize, run_for: Duration, sync: Sync) -> Measured {
    let path = dir.join(format!("raw-{batch}.db"));
    for suffix in ["", "-wal", "-shm"] {
        let mut file = path.clone().into_os_string();
        file.push(suffix);
        let _ = std::fs::remove_file(file);
    }
    let mut conn = raw_connection(&path, sync);
    let wal = {
        let mut wal = path.clone().into_os_string();
        wal.push("-wal");
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(wal)
            .expect("open WAL")
    };
    let mut revision: i64 = 0;
    let mut latencies = Vec::new();
    let start = Instant::now();
    while start.elapsed() < run_for {
        let began = Instant::now();
        let tx = conn.transaction().expect("begin");
        {
            let mut insert = tx
                .prepare_cached("INSERT INTO log (revision, key, value) VALUES (?1, ?2, ?3)")
                .expect("prepare");
            for _ in 0..batch {
                revision += 1;
                // Built per row like the store's callers build theirs.
                let name = format!("raw-{revision}");
                let mut value = object(&name);
                value["metadata"]["resourceVersion"] = Value::String(revision.to_string());
                let bytes = serde_json::to_vec(&value).expect("serialize");
                insert
                    .execute(rusqlite::params![revision, key(&name), bytes])
                    .expect("insert");
            }
        }
        tx.commit().expect("commit");
        if let Sync::Fdatasync = sync {
            wal.sync_data().expect("fdatasync");
        }
        let took = began.elapsed();
        latencies.extend(std::iter::repeat_n(took, batch));
    }
    let elapsed = start.elapsed();
    latencies.sort_unstable();
    Measured {
        ops: revision as usize,
        elapsed,
        latencies,
    }
}

async fn store_creates(store: Arc<SqliteBackend>, writers: usize, run_for: Duration) -> Measured {
    let start = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut i = 0usize;
                while start.elapsed() < run_for {
                    let name = format!("w{w}-{i}");
                    let value = object(&name);
                    let began = Instant::now();
                    store.create(&key(&name), value).await.expect("create");
                    latencies.push(began.elapsed());
                    i += 1;
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.expect("writer task"));
    }
    let elapsed = start.elapsed();
    latencies.sort_unstable();
    Measured {
        ops: latencies.len(),
        elapsed,
        latencies,
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1e3)
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// All rounds as one measurement.
fn merged(rounds: &[Measured]) -> Measured {
    let mut latencies: Vec<Duration> = rounds
        .iter()
        .flat_map(|round| round.latencies.iter().copied())
        .collect();
    latencies.sort_unstable();
    Measured {
        ops: rounds.iter().map(|round| round.ops).sum(),
        elapsed: rounds.iter().map(|round| round.elapsed).sum(),
        latencies,
    }
}

/// Median over rounds of `store / raw` within each round, in percent.
fn paired_ratio(store: &[Measured], raw: &[Measured]) -> f64 {
    let mut ratios: Vec<f64> = store
        .iter()
        .zip(raw)
        .map(|(store, raw)| 100.0 * store.rate() / raw.rate())
        .collect();
    ratios.sort_by(f64::total_cmp);
    ratios.get(ratios.len() / 2).copied().unwrap_or(0.0)
}

fn main() {
    let run_for = Duration::from_secs(env_number("SKIFF_BENCH_SECS", 1));
    let rounds = env_number("SKIFF_BENCH_ROUNDS", 5).max(1);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = SqliteOptions::default();
    println!(
        "store create benchmark: {rounds} rounds of {}s, synchronous=FULL, max_batch={}, {} cores",
        run_for.as_secs(),
        opts.max_batch,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "{:>7} | {:>24} | {:>24} | {:>26} | {:>9} {:>9}",
        "", "raw FULL", "raw fdatasync", "store", "store/raw (median)", ""
    );
    println!(
        "{:>7} | {:>8} {:>7} {:>7} | {:>8} {:>7} {:>7} | {:>8} {:>8} {:>8} | {:>9} {:>9}",
        "writers",
        "ops/s",
        "p50 ms",
        "p99 ms",
        "ops/s",
        "p50 ms",
        "p99 ms",
        "ops/s",
        "p50 ms",
        "p99 ms",
        "FULL",
        "fdatasync"
    );
    for writers in WRITERS {
        let mut full_rounds = Vec::new();
        let mut fdatasync_rounds = Vec::new();
        let mut store_rounds = Vec::new();
        for round in 0..rounds {
            full_rounds.push(raw_group_commit(dir.path(), writers, run_for, Sync::Full));
            fdatasync_rounds.push(raw_group_commit(
                dir.path(),
                writers,
                run_for,
                Sync::Fdatasync,
            ));
            let db = dir.path().join(format!("store-{writers}-{round}.db"));
            store_rounds.push(runtime.block_on(async {
                let store = SqliteBackend::open(&db, opts.clone())
                    .await
                    .expect("open store");
                let measured = store_creates(Arc::clone(&store), writers, run_for).await;
                store.close().await;
                measured
            }));
        }
        let (full, fdatasync, store) = (
            merged(&full_rounds),
            merged(&fdatasync_rounds),
            merged(&store_rounds),
        );
        println!(
            "{:>7} | {:>8.0} {:>7} {:>7} | {:>8.0} {:>7} {:>7} | {:>8.0} {:>8} {:>8} | {:>8.0}% {:>8.0}%",
            writers,
            full.rate(),
            ms(full.percentile(0.50)),
            ms(full.percentile(0.99)),
            fdatasync.rate(),
            ms(fdatasync.percentile(0.50)),
            ms(fdatasync.percentile(0.99)),
            store.rate(),
            ms(store.percentile(0.50)),
            ms(store.percentile(0.99)),
            paired_ratio(&store_rounds, &full_rounds),
            paired_ratio(&store_rounds, &fdatasync_rounds),
        );
    }

    // Listing: 10,000 objects at head and, paginated by 500, at a past
    // revision; the baseline selects the same rows from the raw table.
    let db = dir.path().join("list.db");
    let raw_db = dir.path().join("raw-list.db");
    let (head_list, past_list) = runtime.block_on(async {
        let store = SqliteBackend::open(&db, opts.clone())
            .await
            .expect("open store");
        let tasks: Vec<_> = (0..64)
            .map(|w| {
                let store = Arc::clone(&store);
                tokio::spawn(async move {
                    for i in (w..LIST_OBJECTS).step_by(64) {
                        let name = format!("obj-{i:05}");
                        store
                            .create(&key(&name), object(&name))
                            .await
                            .expect("create");
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("fill");
        }
        let at = store.current_revision();
        store
            .create("/registry/other/x", object("x"))
            .await
            .expect("create");
        let mut head_best = Duration::MAX;
        let mut past_best = Duration::MAX;
        for _ in 0..5 {
            let began = Instant::now();
            let list = store
                .list("/registry/configmaps/", None, 0, None)
                .await
                .expect("list");
            assert_eq!(list.items.len(), LIST_OBJECTS);
            head_best = head_best.min(began.elapsed());

            let began = Instant::now();
            let mut after: Option<String> = None;
            let mut seen = 0;
            loop {
                let page = store
                    .list("/registry/configmaps/", after.as_deref(), 500, Some(at))
                    .await
                    .expect("paged list");
                seen += page.items.len();
                after = page.items.last().map(|kv| kv.key.clone());
                if !page.more {
                    break;
                }
            }
            assert_eq!(seen, LIST_OBJECTS);
            past_best = past_best.min(began.elapsed());
        }
        store.close().await;
        (head_best, past_best)
    });
    let conn = raw_connection(&raw_db, Sync::Full);
    {
        let tx = conn.unchecked_transaction().expect("begin");
        let mut value = object("x");
        for i in 0..LIST_OBJECTS {
            let name = format!("obj-{i:05}");
            value["metadata"]["name"] = Value::String(name.clone());
            let bytes = serde_json::to_vec(&value).expect("serialize");
            tx.execute(
                "INSERT INTO log (key, value) VALUES (?1, ?2)",
                rusqlite::params![key(&name), bytes],
            )
            .expect("insert");
        }
        tx.commit().expect("commit");
    }
    let mut raw_best = Duration::MAX;
    for _ in 0..5 {
        let began = Instant::now();
        let mut stmt = conn
            .prepare_cached("SELECT key, value FROM log")
            .expect("prepare");
        let rows: Vec<(String, Vec<u8>)> = stmt
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .expect("select")
            .collect::<Result<_, _>>()
            .expect("rows");
        assert_eq!(rows.len(), LIST_OBJECTS);
        raw_best = raw_best.min(began.elapsed());
    }
    println!(
        "list {LIST_OBJECTS}: raw select {} ms | store at head {} ms ({:.1}x raw) | store at a past revision, pages of 500: {} ms ({:.1}x raw)",
        ms(raw_best),
        ms(head_list),
        head_list.as_secs_f64() / raw_best.as_secs_f64(),
        ms(past_list),
        past_list.as_secs_f64() / raw_best.as_secs_f64(),
    );
}
