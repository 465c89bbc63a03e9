//! Behavioural tests of the store through the public [`Backend`] API:
//! CRUD and CAS, lists at head and at past revisions, watches (history, live,
//! compaction, lag, fan-out), group commit under concurrency, restart and
//! crash recovery, damaged data, and a randomized check against a model.

use std::collections::BTreeMap;

use bytes::Bytes;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};

use super::*;

fn object(name: &str, data: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "default", "resourceVersion": "stale"},
        "data": {"k": data},
    })
}

fn key(name: &str) -> String {
    format!("/registry/configmaps/default/{name}")
}

fn json_of(kv: &KeyValue) -> Value {
    serde_json::from_slice(&kv.value).unwrap()
}

fn rv_of(kv: &KeyValue) -> String {
    json_of(kv)["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn fast() -> SqliteOptions {
    SqliteOptions {
        synchronous_full: false,
        ..SqliteOptions::default()
    }
}

async fn open(dir: &Path) -> Arc<SqliteBackend> {
    SqliteBackend::open(&dir.join("state.db"), fast())
        .await
        .unwrap()
}

async fn open_with(dir: &Path, opts: SqliteOptions) -> Arc<SqliteBackend> {
    SqliteBackend::open(&dir.join("state.db"), opts)
        .await
        .unwrap()
}

async fn next_event(stream: &mut WatchStream) -> Event {
    tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("watch event in time")
        .expect("stream still open")
        .expect("no watch error")
}

fn keys(list: &ListResult) -> Vec<&str> {
    list.items.iter().map(|kv| kv.key.as_str()).collect()
}

#[tokio::test]
async fn crud_with_cas_and_resource_versions() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    assert_eq!(store.current_revision(), 0);

    let created = store.create(&key("a"), object("a", "1")).await.unwrap();
    assert_eq!((created.create_revision, created.mod_revision), (1, 1));
    assert_eq!(rv_of(&created), "1");
    // Key order is preserved and the stored bytes are what GET returns.
    assert!(
        std::str::from_utf8(&created.value)
            .unwrap()
            .starts_with(r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a""#)
    );
    let got = store.get(&key("a")).await.unwrap().unwrap();
    assert_eq!(got.value, created.value);
    assert_eq!((got.create_revision, got.mod_revision), (1, 1));

    assert!(matches!(
        store.create(&key("a"), object("a", "x")).await,
        Err(StoreError::AlreadyExists(k)) if k == key("a")
    ));
    assert!(matches!(
        store.update(&key("a"), Some(7), object("a", "2")).await,
        Err(StoreError::Conflict {
            expected: 7,
            current: 1,
            ..
        })
    ));
    assert!(matches!(
        store.update(&key("missing"), None, object("m", "2")).await,
        Err(StoreError::NotFound(_))
    ));
    // Rejected operations consume no revision.
    assert_eq!(store.current_revision(), 1);

    let updated = store
        .update(&key("a"), Some(1), object("a", "2"))
        .await
        .unwrap();
    assert_eq!((updated.create_revision, updated.mod_revision), (1, 2));
    assert_eq!(rv_of(&updated), "2");
    let updated = store
        .update(&key("a"), None, object("a", "3"))
        .await
        .unwrap();
    assert_eq!(updated.mod_revision, 3);
    assert_eq!(json_of(&updated)["data"]["k"], "3");

    assert!(matches!(
        store.delete(&key("a"), Some(2)).await,
        Err(StoreError::Conflict {
            expected: 2,
            current: 3,
            ..
        })
    ));
    let deleted = store.delete(&key("a"), Some(3)).await.unwrap();
    assert_eq!((deleted.create_revision, deleted.mod_revision), (1, 4));
    assert_eq!(rv_of(&deleted), "4");
    assert_eq!(json_of(&deleted)["data"]["k"], "3");
    assert!(store.get(&key("a")).await.unwrap().is_none());
    assert!(matches!(
        store.delete(&key("a"), None).await,
        Err(StoreError::NotFound(_))
    ));

    // A key can be created again after a delete and starts a new life.
    let again = store.create(&key("a"), object("a", "4")).await.unwrap();
    assert_eq!((again.create_revision, again.mod_revision), (5, 5));
    assert_eq!(store.current_revision(), 5);
    assert_eq!(store.count("/registry/configmaps/").await.unwrap(), 1);
}

#[tokio::test]
async fn values_without_metadata_get_one_and_non_objects_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let kv = store.create("/k/plain", json!({"spec": 1})).await.unwrap();
    assert_eq!(
        json_of(&kv),
        json!({"spec": 1, "metadata": {"resourceVersion": "1"}})
    );
    assert!(matches!(
        store.create("/k/array", json!([1, 2])).await,
        Err(StoreError::Corrupt(..))
    ));
    assert!(matches!(
        store.create("/k/meta", json!({"metadata": 5})).await,
        Err(StoreError::Corrupt(..))
    ));
    assert!(matches!(
        store.update("/k/plain", None, json!("text")).await,
        Err(StoreError::Corrupt(..))
    ));
    assert_eq!(store.current_revision(), 1);
}

#[tokio::test]
async fn list_by_prefix_with_pages() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    for name in ["e", "a", "c", "b", "d"] {
        store.create(&key(name), object(name, name)).await.unwrap();
    }
    // Neighbours that share a string prefix but not the key prefix.
    store
        .create("/registry/configmaps/defaultx/z", object("z", ""))
        .await
        .unwrap();
    store
        .create("/registry/configmaps/default", object("y", ""))
        .await
        .unwrap();
    store
        .create("/registry/secrets/default/a", object("s", ""))
        .await
        .unwrap();

    let prefix = "/registry/configmaps/default/";
    let all = store.list(prefix, None, 0, None).await.unwrap();
    assert_eq!(keys(&all), ["a", "b", "c", "d", "e"].map(key));
    assert_eq!((all.revision, all.more, all.remaining), (8, false, 0));
    assert_eq!(store.count(prefix).await.unwrap(), 5);
    assert_eq!(store.count("/registry/").await.unwrap(), 8);
    assert_eq!(store.count("").await.unwrap(), 8);

    let page = store.list(prefix, None, 2, None).await.unwrap();
    assert_eq!(keys(&page), ["a", "b"].map(key));
    assert_eq!((page.more, page.remaining), (true, 3));
    let page = store.list(prefix, Some(&key("b")), 2, None).await.unwrap();
    assert_eq!(keys(&page), ["c", "d"].map(key));
    assert_eq!((page.more, page.remaining), (true, 1));
    let page = store.list(prefix, Some(&key("d")), 2, None).await.unwrap();
    assert_eq!(keys(&page), [key("e")]);
    assert_eq!((page.more, page.remaining), (false, 0));
    // Exact fit: no phantom next page.
    let page = store.list(prefix, Some(&key("c")), 2, None).await.unwrap();
    assert_eq!((page.items.len(), page.more), (2, false));
    // A start key before the prefix or after it.
    let page = store.list(prefix, Some("/a"), 1, None).await.unwrap();
    assert_eq!(keys(&page), [key("a")]);
    let page = store.list(prefix, Some("/z"), 1, None).await.unwrap();
    assert!(page.items.is_empty() && !page.more);
    // A start key between existing keys.
    let page = store.list(prefix, Some(&key("bb")), 0, None).await.unwrap();
    assert_eq!(keys(&page), ["c", "d", "e"].map(key));
    assert!(
        store
            .list("/nothing/", None, 0, None)
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

#[tokio::test]
async fn list_at_past_revisions_sees_deleted_and_old_values() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let prefix = "/registry/configmaps/";
    store.create(&key("a"), object("a", "a1")).await.unwrap(); // 1
    store.create(&key("b"), object("b", "b1")).await.unwrap(); // 2
    store.create(&key("c"), object("c", "c1")).await.unwrap(); // 3
    store
        .update(&key("b"), None, object("b", "b2"))
        .await
        .unwrap(); // 4
    store.delete(&key("a"), None).await.unwrap(); // 5
    store.create(&key("d"), object("d", "d1")).await.unwrap(); // 6
    store.delete(&key("c"), None).await.unwrap(); // 7
    store.create(&key("c"), object("c", "c2")).await.unwrap(); // 8

    let data = |list: &ListResult| -> Vec<String> {
        list.items
            .iter()
            .map(|kv| json_of(kv)["data"]["k"].as_str().unwrap().to_owned())
            .collect()
    };
    let at = |rev| store.list(prefix, None, 0, Some(rev));
    assert_eq!(data(&at(0).await.unwrap()), Vec::<String>::new());
    assert_eq!(data(&at(3).await.unwrap()), ["a1", "b1", "c1"]);
    assert_eq!(data(&at(4).await.unwrap()), ["a1", "b2", "c1"]);
    assert_eq!(data(&at(5).await.unwrap()), ["b2", "c1"]);
    assert_eq!(data(&at(6).await.unwrap()), ["b2", "c1", "d1"]);
    assert_eq!(data(&at(7).await.unwrap()), ["b2", "d1"]);
    assert_eq!(data(&at(8).await.unwrap()), ["b2", "c2", "d1"]);
    let past = at(4).await.unwrap();
    assert_eq!(past.revision, 4);
    let b = &past.items[1];
    assert_eq!(
        (b.create_revision, b.mod_revision, rv_of(b)),
        (2, 4, "4".to_owned())
    );
    assert!(matches!(at(9).await, Err(StoreError::FutureRevision(9))));

    // Pages of a past snapshot, continued with the last key.
    let first = store.list(prefix, None, 1, Some(4)).await.unwrap();
    assert_eq!(data(&first), ["a1"]);
    assert_eq!((first.more, first.remaining), (true, 2));
    let second = store
        .list(prefix, Some(&key("a")), 1, Some(4))
        .await
        .unwrap();
    assert_eq!(data(&second), ["b2"]);
    assert_eq!((second.more, second.remaining), (true, 1));
    let third = store
        .list(prefix, Some(&key("b")), 1, Some(4))
        .await
        .unwrap();
    assert_eq!(data(&third), ["c1"]);
    assert!(!third.more);
    let paged = store
        .list(prefix, Some(&key("a")), 1, Some(7))
        .await
        .unwrap();
    assert_eq!(data(&paged), ["b2"]);
    assert_eq!((paged.more, paged.remaining), (true, 1));

    // Compaction keeps every snapshot at or above the compact revision.
    assert_eq!(store.compact(2).await.unwrap(), 6);
    assert_eq!(store.compact_revision(), 6);
    assert!(matches!(
        at(5).await,
        Err(StoreError::Compacted {
            requested: 5,
            compacted: 6
        })
    ));
    assert_eq!(data(&at(6).await.unwrap()), ["b2", "c1", "d1"]);
    assert_eq!(data(&at(7).await.unwrap()), ["b2", "d1"]);
    assert_eq!(
        data(&store.list(prefix, None, 0, None).await.unwrap()),
        ["b2", "c2", "d1"]
    );
    // Compacting again below the compact revision is a no-op.
    assert_eq!(store.compact(5).await.unwrap(), 6);
}

#[tokio::test]
async fn compaction_keeps_latest_values_and_drops_history() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    for i in 0..50 {
        store
            .create(&key(&format!("k{i:02}")), object("k", "0"))
            .await
            .unwrap();
    }
    for round in 1..=4 {
        for i in 0..50 {
            store
                .update(
                    &key(&format!("k{i:02}")),
                    None,
                    object("k", &round.to_string()),
                )
                .await
                .unwrap();
        }
    }
    for i in 0..25 {
        store.delete(&key(&format!("k{i:02}")), None).await.unwrap();
    }
    let head = store.current_revision();
    assert_eq!(head, 275);
    assert_eq!(store.compact(0).await.unwrap(), head);
    let list = store.list("/registry/", None, 0, Some(head)).await.unwrap();
    assert_eq!(list.items.len(), 25);
    for kv in &list.items {
        assert_eq!(json_of(kv)["data"]["k"], "4");
    }
    store.close().await;

    let conn = rusqlite::Connection::open(dir.path().join("state.db")).unwrap();
    let rows: i64 = conn
        .query_row("SELECT count(*) FROM log", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 25, "only the live values remain");
    drop(conn);
    // The head survives even though its row (a delete) was compacted away.
    let store = open(dir.path()).await;
    assert_eq!(store.current_revision(), head);
    assert_eq!(store.compact_revision(), head);
    let kv = store.create(&key("new"), object("new", "")).await.unwrap();
    assert_eq!(kv.mod_revision, head + 1);
}

#[tokio::test]
async fn watch_replays_history_then_follows_live() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let prefix = "/registry/configmaps/";
    store.create(&key("a"), object("a", "1")).await.unwrap(); // 1
    store
        .create("/registry/secrets/default/s", object("s", ""))
        .await
        .unwrap(); // 2
    store
        .update(&key("a"), None, object("a", "2"))
        .await
        .unwrap(); // 3

    let mut from_start = store.watch(prefix, 0).unwrap();
    let mut from_two = store.watch(prefix, 2).unwrap();
    let mut at_head = store.watch(prefix, 3).unwrap();

    let e = next_event(&mut from_start).await;
    assert_eq!(
        (e.kind, e.revision, e.kv.key.as_str()),
        (EventKind::Added, 1, key("a").as_str())
    );
    let e = next_event(&mut from_start).await;
    assert_eq!((e.kind, e.revision), (EventKind::Modified, 3));
    assert_eq!(rv_of(&e.kv), "3");
    let e = next_event(&mut from_two).await;
    assert_eq!((e.kind, e.revision), (EventKind::Modified, 3));

    store
        .create("/registry/secrets/default/t", object("t", ""))
        .await
        .unwrap(); // 4
    let deleted = store.delete(&key("a"), None).await.unwrap(); // 5
    store.create(&key("b"), object("b", "")).await.unwrap(); // 6
    for stream in [&mut from_start, &mut from_two, &mut at_head] {
        let e = next_event(stream).await;
        assert_eq!((e.kind, e.revision), (EventKind::Deleted, 5));
        assert_eq!(e.kv.value, deleted.value);
        assert_eq!((e.kv.create_revision, e.kv.mod_revision), (1, 5));
        assert_eq!(rv_of(&e.kv), "5");
        let e = next_event(stream).await;
        assert_eq!(
            (e.kind, e.revision, e.kv.key.as_str()),
            (EventKind::Added, 6, key("b").as_str())
        );
    }
    // A watch from the future starts quietly and picks up later events.
    let mut future = store.watch(prefix, 7).unwrap();
    store
        .update(&key("b"), None, object("b", "x"))
        .await
        .unwrap(); // 7
    store
        .update(&key("b"), None, object("b", "y"))
        .await
        .unwrap(); // 8
    assert_eq!(next_event(&mut future).await.revision, 8);
}

#[tokio::test]
async fn watch_reads_the_log_when_the_ring_does_not_reach_back() {
    let dir = tempfile::tempdir().unwrap();
    let opts = SqliteOptions {
        watch_cache_events: 8,
        ..fast()
    };
    let store = open_with(dir.path(), opts).await;
    // More than one history page (512) under the prefix, interleaved with
    // events under another prefix.
    for i in 0..700 {
        store
            .create(&key(&format!("k{i:04}")), object("k", ""))
            .await
            .unwrap();
        if i % 7 == 0 {
            store
                .create(&format!("/other/{i}"), object("o", ""))
                .await
                .unwrap();
        }
    }
    let head = store.current_revision();
    let mut stream = store.watch("/registry/", 0).unwrap();
    let mut last = 0;
    for i in 0..700 {
        let e = next_event(&mut stream).await;
        assert!(e.revision > last);
        last = e.revision;
        assert_eq!(e.kv.key, key(&format!("k{i:04}")));
        assert_eq!(e.kind, EventKind::Added);
    }
    let live = store.create(&key("live"), object("l", "")).await.unwrap();
    let e = next_event(&mut stream).await;
    assert_eq!(e.revision, live.mod_revision);
    assert_eq!(live.mod_revision, head + 1);
}

#[tokio::test]
async fn watch_below_the_compact_revision_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    for i in 0..10 {
        store
            .create(&key(&format!("k{i}")), object("k", ""))
            .await
            .unwrap();
    }
    assert_eq!(store.compact(4).await.unwrap(), 6);
    assert!(matches!(
        store.watch("/registry/", 5).err(),
        Some(StoreError::Compacted {
            requested: 5,
            compacted: 6
        })
    ));
    let mut stream = store.watch("/registry/", 6).unwrap();
    assert_eq!(next_event(&mut stream).await.revision, 7);

    // Same when the history has to come from the log, not the ring.
    store.close().await;
    let store = open_with(
        dir.path(),
        SqliteOptions {
            watch_cache_events: 2,
            ..fast()
        },
    )
    .await;
    assert!(matches!(
        store.watch("/registry/", 0).err(),
        Some(StoreError::Compacted { .. })
    ));
    let mut stream = store.watch("/registry/", 6).unwrap();
    assert_eq!(next_event(&mut stream).await.revision, 7);
    assert_eq!(next_event(&mut stream).await.revision, 8);
}

#[tokio::test]
async fn a_watcher_too_far_behind_gets_an_error_and_the_stream_ends() {
    let dir = tempfile::tempdir().unwrap();
    let opts = SqliteOptions {
        watch_cache_events: 16,
        ..fast()
    };
    let store = open_with(dir.path(), opts).await;
    let mut slow = store.watch("/registry/", 0).unwrap();
    // One batch per write; far more batches than the broadcast holds.
    for i in 0..300 {
        store
            .create(&key(&format!("k{i}")), object("k", ""))
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    let error = loop {
        match tokio::time::timeout(Duration::from_secs(10), slow.next())
            .await
            .unwrap()
        {
            Some(Ok(e)) => seen.push(e.revision),
            Some(Err(err)) => break err,
            None => panic!("stream ended without an error"),
        }
    };
    assert!(matches!(error, StoreError::Compacted { .. }), "{error:?}");
    // What was delivered before the error has no gap.
    assert_eq!(seen, (1..=seen.len() as i64).collect::<Vec<_>>());
    assert!(slow.next().await.is_none());
}

#[tokio::test]
async fn a_lagging_watcher_resumes_from_the_ring_without_gaps() {
    let dir = tempfile::tempdir().unwrap();
    // The broadcast holds 64 batches, the ring all 300 events.
    let opts = SqliteOptions {
        watch_cache_events: 1000,
        ..fast()
    };
    let store = open_with(dir.path(), opts).await;
    let mut slow = store.watch("/registry/", 0).unwrap();
    for i in 0..300 {
        store
            .create(&key(&format!("k{i}")), object("k", ""))
            .await
            .unwrap();
    }
    for revision in 1..=300 {
        assert_eq!(next_event(&mut slow).await.revision, revision);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_watchers_each_see_every_event_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    const EVENTS: usize = 100;
    let mut tasks = Vec::new();
    for w in 0..1000 {
        let prefix = if w % 2 == 0 {
            "/registry/"
        } else {
            "/registry/configmaps/default/"
        };
        let stream = store.watch(prefix, 0).unwrap();
        tasks.push(tokio::spawn(async move {
            stream
                .take(EVENTS)
                .map(|e| e.unwrap().revision)
                .collect::<Vec<_>>()
                .await
        }));
    }
    let writers: Vec<_> = (0..4)
        .map(|t| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                for i in 0..EVENTS / 4 {
                    store
                        .create(&key(&format!("t{t}-{i}")), object("k", ""))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    let expected: Vec<Revision> = (1..=EVENTS as i64).collect();
    for task in tasks {
        let got = tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, expected);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_get_unique_increasing_revisions() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let tasks: Vec<_> = (0..64)
        .map(|t| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let mut revisions = Vec::new();
                for i in 0..40 {
                    let kv = store
                        .create(&key(&format!("t{t}-{i}")), object("k", ""))
                        .await
                        .unwrap();
                    assert_eq!(rv_of(&kv), kv.mod_revision.to_string());
                    revisions.push(kv.mod_revision);
                }
                revisions
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        let revisions = task.await.unwrap();
        assert!(revisions.windows(2).all(|w| w[0] < w[1]));
        all.extend(revisions);
    }
    all.sort_unstable();
    assert_eq!(all, (1..=64 * 40).collect::<Vec<_>>());
    assert_eq!(store.current_revision(), 64 * 40);
    assert_eq!(store.count("/registry/").await.unwrap(), 64 * 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_writers_on_one_key_have_exactly_one_winner() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let creates: Vec<_> = (0..32)
        .map(|i| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { store.create(&key("x"), object("x", &i.to_string())).await })
        })
        .collect();
    let mut won = 0;
    for task in creates {
        match task.await.unwrap() {
            Ok(_) => won += 1,
            Err(StoreError::AlreadyExists(_)) => {}
            Err(err) => panic!("{err}"),
        }
    }
    assert_eq!(won, 1);
    let base = store.get(&key("x")).await.unwrap().unwrap().mod_revision;
    let updates: Vec<_> = (0..32)
        .map(|i| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                store
                    .update(&key("x"), Some(base), object("x", &format!("u{i}")))
                    .await
            })
        })
        .collect();
    let mut won = 0;
    for task in updates {
        match task.await.unwrap() {
            Ok(kv) => {
                won += 1;
                assert_eq!(kv.mod_revision, base + 1);
            }
            Err(StoreError::Conflict { current, .. }) => assert_eq!(current, base + 1),
            Err(err) => panic!("{err}"),
        }
    }
    assert_eq!(won, 1);
    assert_eq!(store.current_revision(), base + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_mixed_writes_replay_to_the_final_state() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let mut watch = store.watch("/", 0).unwrap();
    let tasks: Vec<_> = (0..16u64)
        .map(|t| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let mut done = Vec::new();
                let mut seed = t * 7919 + 1;
                for i in 0..150 {
                    seed = seed
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let k = key(&format!("k{}", (seed >> 33) % 6));
                    let result = match (seed >> 20) % 3 {
                        0 => store.create(&k, object("k", &format!("{t}-{i}"))).await,
                        1 => {
                            store
                                .update(&k, None, object("k", &format!("{t}-{i}")))
                                .await
                        }
                        _ => store.delete(&k, None).await,
                    };
                    match result {
                        Ok(kv) => done.push(kv.mod_revision),
                        Err(StoreError::AlreadyExists(_) | StoreError::NotFound(_)) => {}
                        Err(err) => panic!("{err}"),
                    }
                }
                done
            })
        })
        .collect();
    let mut revisions = Vec::new();
    for task in tasks {
        revisions.extend(task.await.unwrap());
    }
    revisions.sort_unstable();
    let head = store.current_revision();
    assert_eq!(revisions, (1..=head).collect::<Vec<_>>());

    // Replaying the watch gives exactly the final state, and every event's
    // kind agrees with the state before it.
    let mut replayed: BTreeMap<String, KeyValue> = BTreeMap::new();
    for revision in 1..=head {
        let e = next_event(&mut watch).await;
        assert_eq!(e.revision, revision);
        let existed = replayed.contains_key(&e.kv.key);
        match e.kind {
            EventKind::Added => assert!(!existed && e.kv.create_revision == revision),
            EventKind::Modified => assert!(existed),
            EventKind::Deleted => assert!(existed),
        }
        if e.kind == EventKind::Deleted {
            replayed.remove(&e.kv.key);
        } else {
            replayed.insert(e.kv.key.clone(), e.kv);
        }
    }
    let list = store.list("/", None, 0, None).await.unwrap();
    assert_eq!(list.revision, head);
    let listed: Vec<(String, Revision, Bytes)> = list
        .items
        .into_iter()
        .map(|kv| (kv.key, kv.mod_revision, kv.value))
        .collect();
    let expected: Vec<(String, Revision, Bytes)> = replayed
        .into_values()
        .map(|kv| (kv.key, kv.mod_revision, kv.value))
        .collect();
    assert_eq!(listed, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_lists_stay_consistent_while_writes_race() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    for i in 0..200 {
        store
            .create(&key(&format!("k{i:03}")), object("k", "0"))
            .await
            .unwrap();
    }
    let at = store.current_revision();
    let churn: Vec<_> = (0..4)
        .map(|t| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                for round in 0..40 {
                    for i in (t..200).step_by(16) {
                        let k = key(&format!("k{i:03}"));
                        if round % 3 == 2 {
                            let _ = store.delete(&k, None).await;
                        } else if store
                            .update(&k, None, object("k", &round.to_string()))
                            .await
                            .is_err()
                        {
                            store.create(&k, object("k", "new")).await.unwrap();
                        }
                        store
                            .create(&key(&format!("n{t}-{round}-{i}")), object("n", ""))
                            .await
                            .unwrap();
                    }
                }
            })
        })
        .collect();
    let paged = |limit: usize| {
        let store = Arc::clone(&store);
        async move {
            let mut items = Vec::new();
            let mut after: Option<String> = None;
            loop {
                let page = store
                    .list("/registry/configmaps/", after.as_deref(), limit, Some(at))
                    .await
                    .unwrap();
                assert_eq!(page.revision, at);
                items.extend(
                    page.items
                        .into_iter()
                        .map(|kv| (kv.key, kv.mod_revision, kv.value)),
                );
                after = items.last().map(|(k, _, _)| k.clone());
                if !page.more {
                    return items;
                }
            }
        }
    };
    let mut during = Vec::new();
    for limit in [7, 50, 0, 13] {
        during.push(paged(limit).await);
    }
    for task in churn {
        task.await.unwrap();
    }
    let after_writes = paged(0).await;
    assert_eq!(after_writes.len(), 200);
    assert!(after_writes.iter().all(|(_, revision, _)| *revision <= at));
    for snapshot in during {
        assert_eq!(snapshot, after_writes);
    }
}

#[tokio::test]
async fn reopen_keeps_data_and_revisions_move_on() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = SqliteBackend::open(&dir.path().join("state.db"), SqliteOptions::default())
            .await
            .unwrap();
        store.create(&key("a"), object("a", "1")).await.unwrap();
        store.create(&key("b"), object("b", "1")).await.unwrap();
        store
            .update(&key("a"), None, object("a", "2"))
            .await
            .unwrap();
        store.delete(&key("b"), None).await.unwrap(); // 4
        drop(store); // no close: the writer winds down on its own
    }
    let store = open(dir.path()).await;
    assert_eq!(store.current_revision(), 4);
    let a = store.get(&key("a")).await.unwrap().unwrap();
    assert_eq!(
        (a.create_revision, a.mod_revision, rv_of(&a)),
        (1, 3, "3".to_owned())
    );
    assert!(store.get(&key("b")).await.unwrap().is_none());
    let mut stream = store.watch("/registry/", 0).unwrap();
    let revisions: Vec<_> = [
        next_event(&mut stream).await,
        next_event(&mut stream).await,
        next_event(&mut stream).await,
        next_event(&mut stream).await,
    ]
    .iter()
    .map(|e| (e.revision, e.kind))
    .collect();
    assert_eq!(
        revisions,
        [
            (1, EventKind::Added),
            (2, EventKind::Added),
            (3, EventKind::Modified),
            (4, EventKind::Deleted)
        ]
    );
    let c = store.create(&key("c"), object("c", "")).await.unwrap();
    assert_eq!(c.mod_revision, 5);
    assert_eq!(next_event(&mut stream).await.revision, 5);
}

#[tokio::test]
async fn a_second_open_of_the_same_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let second = SqliteBackend::open(&dir.path().join("state.db"), fast()).await;
    assert!(matches!(second, Err(StoreError::Sqlite(msg)) if msg.contains("in use")));
    store.close().await;
    let again = open(dir.path()).await;
    again.create(&key("a"), object("a", "")).await.unwrap();
}

#[tokio::test]
async fn close_flushes_and_ends_watches() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let mut stream = store.watch("/", 0).unwrap();
    store.create(&key("a"), object("a", "")).await.unwrap();
    store.close().await;
    assert_eq!(next_event(&mut stream).await.revision, 1);
    assert!(matches!(stream.next().await, Some(Err(StoreError::Closed))));
    assert!(stream.next().await.is_none());
    assert!(matches!(
        store.create(&key("b"), object("b", "")).await,
        Err(StoreError::Closed)
    ));
    assert!(matches!(
        store.get(&key("a")).await,
        Err(StoreError::Closed)
    ));
    assert!(matches!(
        store.list("/", None, 0, None).await,
        Err(StoreError::Closed)
    ));
    assert!(matches!(
        store.watch("/", 0).err(),
        Some(StoreError::Closed)
    ));
    assert!(matches!(store.compact(0).await, Err(StoreError::Closed)));
    store.close().await; // twice is fine
    let store = open(dir.path()).await;
    assert_eq!(store.get(&key("a")).await.unwrap().unwrap().mod_revision, 1);
}

#[tokio::test]
async fn database_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let nested = dir.path().join("server").join("db");
    let store = open(&nested).await;
    store.create(&key("a"), object("a", "")).await.unwrap();
    for name in ["state.db", "state.db-wal", "state.db.lock"] {
        let mode = std::fs::metadata(nested.join(name))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{name}");
    }
    let mode = std::fs::metadata(&nested).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700);
}

#[tokio::test]
async fn damaged_rows_give_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    store.create(&key("a"), object("a", "")).await.unwrap();
    store.create(&key("b"), object("b", "")).await.unwrap();
    store.close().await;
    let damage = |sql: &str| {
        let conn = rusqlite::Connection::open(dir.path().join("state.db")).unwrap();
        conn.execute_batch(sql).unwrap();
    };
    damage("UPDATE log SET value = X'7B6E6F7420' WHERE revision = 1");
    let store = open(dir.path()).await;
    // Unparseable JSON is returned as stored and can still be deleted.
    assert_eq!(
        &store.get(&key("a")).await.unwrap().unwrap().value[..],
        b"{not "
    );
    let gone = store.delete(&key("a"), None).await.unwrap();
    assert_eq!(&gone.value[..], b"{not ");
    assert_eq!(gone.mod_revision, 3);
    store.close().await;

    // A wrongly typed row refuses the open instead of guessing.
    damage("UPDATE log SET create_revision = 'x' WHERE revision = 2");
    let reopened = SqliteBackend::open(&dir.path().join("state.db"), fast()).await;
    assert!(matches!(reopened, Err(StoreError::Sqlite(_))));
    damage("UPDATE log SET create_revision = 2 WHERE revision = 2");
    open(dir.path()).await.close().await;

    let conn = rusqlite::Connection::open(dir.path().join("state.db")).unwrap();
    conn.execute_batch("INSERT OR REPLACE INTO meta (name, value) VALUES ('compact_revision', 99)")
        .unwrap();
    drop(conn);
    let reopened = SqliteBackend::open(&dir.path().join("state.db"), fast()).await;
    assert!(matches!(reopened, Err(StoreError::Corrupt(..))));

    std::fs::write(
        dir.path().join("junk.db"),
        b"this is not a database at all, not even close",
    )
    .unwrap();
    let junk = SqliteBackend::open(&dir.path().join("junk.db"), fast()).await;
    assert!(matches!(junk, Err(StoreError::Sqlite(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compactor_task_compacts_and_stops_when_closed() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    for i in 0..20 {
        store
            .create(&key(&format!("k{i}")), object("k", ""))
            .await
            .unwrap();
    }
    let backend: Arc<dyn Backend> = store.clone();
    let task = spawn_compactor(backend, Duration::from_millis(20), 5);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while store.compact_revision() != 15 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "compactor never ran"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    store.close().await;
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap();
}

/// Name of `crash_child` as the test harness knows it.
fn crash_child_name() -> String {
    let module = module_path!();
    let module = module.split_once("::").map_or(module, |(_, rest)| rest);
    format!("{module}::crash_child")
}

/// Run by `kill_9_loses_no_acknowledged_write` in a child process: writes as
/// fast as it can and prints every acknowledged revision.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "child process of kill_9_loses_no_acknowledged_write"]
async fn crash_child() {
    use std::io::Write;
    let Ok(dir) = std::env::var("SKIFF_STORE_CRASH_DIR") else {
        return;
    };
    let store = SqliteBackend::open(&Path::new(&dir).join("state.db"), SqliteOptions::default())
        .await
        .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for t in 0..8 {
        let store = Arc::clone(&store);
        let tx = tx.clone();
        tokio::spawn(async move {
            for i in 0.. {
                let name = format!("t{t}-{i}");
                let kv = store.create(&key(&name), object(&name, "")).await.unwrap();
                if tx.send(kv).is_err() {
                    return;
                }
            }
        });
    }
    let mut out = std::io::stdout().lock();
    while let Some(kv) = rx.recv().await {
        writeln!(out, "ack {} {}", kv.mod_revision, kv.key).unwrap();
        out.flush().unwrap();
    }
}

#[test]
fn kill_9_loses_no_acknowledged_write() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            crash_child_name().as_str(),
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("SKIFF_STORE_CRASH_DIR", dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut acked = Vec::new();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    while acked.len() < 2000 {
        let Some(line) = lines.next() else { break };
        let line = line.unwrap();
        if let Some(rest) = line.strip_prefix("ack ") {
            let (revision, key) = rest.split_once(' ').unwrap();
            acked.push((revision.parse::<Revision>().unwrap(), key.to_owned()));
        }
    }
    child.kill().unwrap(); // SIGKILL, mid-write
    child.wait().unwrap();
    assert_eq!(acked.len(), 2000, "the child did not get going");

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let store = open(dir.path()).await;
        let max_acked = acked.iter().map(|(r, _)| *r).max().unwrap();
        assert!(store.current_revision() >= max_acked);
        for (revision, key) in &acked {
            let kv = store
                .get(key)
                .await
                .unwrap()
                .expect("acknowledged write survived");
            assert_eq!(kv.mod_revision, *revision);
        }
        let next = store.create("/after/crash", json!({})).await.unwrap();
        assert!(next.mod_revision > max_acked);
        // The log and the current table agree after recovery.
        let live = store.count("/").await.unwrap();
        let at_head = store
            .list("/", None, 0, Some(next.mod_revision - 1))
            .await
            .unwrap();
        assert_eq!(at_head.items.len() as i64 + 1, live);
    });
}

mod model {
    //! Random operation sequences against a `BTreeMap` model that keeps
    //! every past state, checking writes, gets, paged lists at head and at
    //! past revisions, compaction and one watch over everything.

    use super::*;
    use proptest::prelude::*;

    #[derive(Clone, Debug)]
    enum Op {
        Create(u8),
        Update(u8, bool),
        Delete(u8, bool),
        List { prefix: u8, limit: u8, back: u8 },
        Compact(u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => any::<u8>().prop_map(|k| Op::Create(k % 12)),
            3 => (any::<u8>(), any::<bool>()).prop_map(|(k, cas)| Op::Update(k % 12, cas)),
            2 => (any::<u8>(), any::<bool>()).prop_map(|(k, cas)| Op::Delete(k % 12, cas)),
            2 => (0u8..3, 0u8..4, any::<u8>()).prop_map(|(prefix, limit, back)| Op::List { prefix, limit, back }),
            1 => any::<u8>().prop_map(Op::Compact),
        ]
    }

    /// Key `k` lives under one of three groups, so prefixes matter.
    fn model_key(k: u8) -> String {
        format!("/g{}/k{:02}", k % 3, k)
    }

    type State = BTreeMap<String, (Revision, Revision, String)>;

    fn run(ops: Vec<Op>) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let store = open_with(
                dir.path(),
                SqliteOptions {
                    watch_cache_events: 5,
                    ..fast()
                },
            )
            .await;
            let mut watch = store.watch("/", 0).unwrap();
            // history[r] = state after revision r.
            let mut history: Vec<State> = vec![State::new()];
            let mut events: Vec<(Revision, EventKind, String)> = Vec::new();
            let mut compacted = 0;
            for (n, op) in ops.into_iter().enumerate() {
                let state = history.last().unwrap().clone();
                let head = (history.len() - 1) as Revision;
                let payload = format!("v{n}");
                match op {
                    Op::Create(k) => {
                        let key = model_key(k);
                        let got = store.create(&key, json!({"v": payload})).await;
                        if state.contains_key(&key) {
                            assert!(matches!(got, Err(StoreError::AlreadyExists(_))));
                        } else {
                            let kv = got.unwrap();
                            assert_eq!((kv.create_revision, kv.mod_revision), (head + 1, head + 1));
                            let mut next = state;
                            next.insert(key.clone(), (head + 1, head + 1, payload));
                            history.push(next);
                            events.push((head + 1, EventKind::Added, key));
                        }
                    }
                    Op::Update(k, cas) | Op::Delete(k, cas) => {
                        let key = model_key(k);
                        let is_update = matches!(op, Op::Update(..));
                        let live = state.get(&key).cloned();
                        // With CAS on, alternate between a right and a wrong guess.
                        let expected = match (&live, cas) {
                            (_, false) => None,
                            (Some((_, m, _)), true) if n % 2 == 0 => Some(*m),
                            (_, true) => Some(head + 100),
                        };
                        let got = if is_update {
                            store.update(&key, expected, json!({"v": payload})).await
                        } else {
                            store.delete(&key, expected).await
                        };
                        match live {
                            None => assert!(matches!(got, Err(StoreError::NotFound(_))), "{got:?}"),
                            Some((_, m, _)) if expected.is_some_and(|e| e != m) => {
                                assert!(matches!(got, Err(StoreError::Conflict { .. })), "{got:?}")
                            }
                            Some((c, _, old)) => {
                                let kv = got.unwrap();
                                assert_eq!((kv.create_revision, kv.mod_revision), (c, head + 1));
                                let mut next = state;
                                if is_update {
                                    next.insert(key.clone(), (c, head + 1, payload));
                                    events.push((head + 1, EventKind::Modified, key));
                                } else {
                                    assert_eq!(json_of(&kv)["v"], old);
                                    next.remove(&key);
                                    events.push((head + 1, EventKind::Deleted, key));
                                }
                                history.push(next);
                            }
                        }
                    }
                    Op::List {
                        prefix,
                        limit,
                        back,
                    } => {
                        let prefix = ["/", "/g1/", "/g2/k0"][prefix as usize];
                        let at = head - Revision::from(back % 8).min(head);
                        let at_arg = if back % 8 == 0 { None } else { Some(at) };
                        if at < compacted {
                            assert!(matches!(
                                store.list(prefix, None, 1, at_arg).await,
                                Err(StoreError::Compacted { .. })
                            ));
                            continue;
                        }
                        let expected: Vec<(String, Revision, Revision, String)> = history
                            [at as usize]
                            .iter()
                            .filter(|(k, _)| k.starts_with(prefix))
                            .map(|(k, (c, m, v))| (k.clone(), *c, *m, v.clone()))
                            .collect();
                        let mut got = Vec::new();
                        let mut after: Option<String> = None;
                        loop {
                            let page = store
                                .list(prefix, after.as_deref(), limit as usize, Some(at))
                                .await
                                .unwrap();
                            assert_eq!(page.revision, at);
                            for kv in &page.items {
                                let v = json_of(kv)["v"].as_str().unwrap().to_owned();
                                assert_eq!(
                                    json_of(kv)["metadata"]["resourceVersion"],
                                    kv.mod_revision.to_string()
                                );
                                got.push((kv.key.clone(), kv.create_revision, kv.mod_revision, v));
                            }
                            if !page.more {
                                break;
                            }
                            assert_eq!(page.remaining, (expected.len() - got.len()) as i64);
                            after = page.items.last().map(|kv| kv.key.clone());
                        }
                        assert_eq!(got, expected, "list {prefix} at {at}");
                        assert_eq!(
                            store.count(prefix).await.unwrap(),
                            history[head as usize]
                                .keys()
                                .filter(|k| k.starts_with(prefix))
                                .count() as i64
                        );
                    }
                    Op::Compact(keep) => {
                        let keep = i64::from(keep % 10);
                        let want = (head - keep).max(compacted);
                        assert_eq!(store.compact(keep).await.unwrap(), want);
                        compacted = want;
                    }
                }
                assert_eq!(store.current_revision(), (history.len() - 1) as Revision);
            }
            // Everything written shows up once, in order, on the watch that
            // started before any write (the ring is tiny, so this also covers
            // resuming after lag).
            let mut seen = Vec::new();
            while seen.len() < events.len() {
                match tokio::time::timeout(Duration::from_secs(10), watch.next())
                    .await
                    .unwrap()
                {
                    Some(Ok(e)) => seen.push((e.revision, e.kind, e.kv.key)),
                    Some(Err(StoreError::Compacted { .. })) => {
                        // Allowed only if the watcher really fell behind the ring.
                        break;
                    }
                    other => panic!("unexpected watch item {other:?}"),
                }
            }
            assert_eq!(seen[..], events[..seen.len()]);
            // A watch opened now from the compact revision replays the rest
            // from the log (the ring holds only 5 events).
            let expected: Vec<_> = events
                .iter()
                .filter(|(r, _, _)| *r > compacted)
                .cloned()
                .collect();
            let mut late = store.watch("/", compacted).unwrap();
            let mut replayed = Vec::new();
            while replayed.len() < expected.len() {
                let e = next_event(&mut late).await;
                replayed.push((e.revision, e.kind, e.kv.key));
            }
            assert_eq!(replayed, expected);
            store.close().await;
            let store = open(dir.path()).await;
            assert_eq!(store.current_revision(), (history.len() - 1) as Revision);
            let list = store.list("/", None, 0, None).await.unwrap();
            let expected: Vec<&String> = history.last().unwrap().keys().collect();
            assert_eq!(
                list.items.iter().map(|kv| &kv.key).collect::<Vec<_>>(),
                expected
            );
        });
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
        #[test]
        fn store_matches_model(ops in proptest::collection::vec(op(), 1..80)) {
            run(ops);
        }
    }
}
