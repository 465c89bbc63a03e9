//! The SQLite [`Backend`]: opening and closing the database, the pool of
//! read-only connections, and every read (get, list at the head or at a past
//! revision, count, history for watchers).
//!
//! Invariants: reads at the head are answered from the cache (memory) under
//! its read lock, so an answer and the revision it reports agree; reads of
//! history run on tokio's blocking pool in one SQLite read transaction each,
//! never on the async runtime, and never report a row above the cache's head
//! (SQLite may hold committed rows whose fsync is still running); writes
//! only ever go through the writer thread (`writer.rs`); a database file is
//! used by one process at a time (an advisory lock next to it); the database
//! and its WAL are created mode 0600 because they hold Secrets.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::FutureExt;
use futures::future::BoxFuture;
use rusqlite::{Connection, OptionalExtension};
use serde_json::Value;
use tokio::sync::{Semaphore, mpsc, oneshot};

use super::cache::{self, Cache, KeyRange, PastItem};
use super::schema::{self, META_COMPACT, event_kind, read_meta, read_revisions, sql_err};
use super::watch::{self, HistorySource};
use super::writer::{self, Command, Reply, Template, WriteKind, WriteOp};
use super::{Backend, Event, KeyValue, ListResult, Revision, StoreError, WatchStream};

/// How many revisions one compaction transaction covers, so writers queued
/// behind a large compaction wait for one chunk, not all of it.
const COMPACT_CHUNK: Revision = 10_000;

#[derive(Clone, Debug)]
pub struct SqliteOptions {
    /// Acknowledge a write only once the WAL holding it is fsynced (what
    /// SQLite's `synchronous = FULL` does in every commit; here one fsync
    /// covers every batch committed while the previous one ran): durable
    /// across power loss. `false` acknowledges after the commit (SQLite
    /// `NORMAL`): durable across a process crash only.
    pub synchronous_full: bool,
    /// Most writes committed in one transaction.
    pub max_batch: usize,
    /// Read-only connections for reads of history (watchers catching up
    /// from before the watch cache, lists at past revisions).
    pub readers: usize,
    /// Most recent events kept in memory for watchers.
    pub watch_cache_events: usize,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            synchronous_full: true,
            max_batch: 256,
            readers: 4,
            watch_cache_events: 10_000,
        }
    }
}

pub struct SqliteBackend {
    commands: mpsc::Sender<Command>,
    cache: Arc<Cache>,
    readers: Arc<Readers>,
}

impl SqliteBackend {
    /// Opens (creating if needed) the database at `path`, loads the live
    /// keys and the newest events into memory and starts the writer. Fails if
    /// another process (or another open in this one) has it.
    pub async fn open(path: &Path, opts: SqliteOptions) -> Result<Arc<Self>, StoreError> {
        let path = path.to_owned();
        let reader_count = opts.readers.max(1);
        let ring_capacity = opts.watch_cache_events;
        let synchronous_full = opts.synchronous_full;
        let (lock, conn, checkpoints, wal, loaded, readers) =
            tokio::task::spawn_blocking(move || {
                prepare_files(&path)?;
                let lock = lock_database(&path)?;
                let conn = schema::open_writer(&path)?;
                let checkpoints = schema::open_checkpointer(&path)?;
                let wal = if synchronous_full {
                    Some(open_wal(&path)?)
                } else {
                    None
                };
                let loaded = schema::load(&conn, ring_capacity)?;
                let readers = (0..reader_count)
                    .map(|_| schema::open_reader(&path))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok::<_, StoreError>((lock, conn, checkpoints, wal, loaded, readers))
            })
            .await
            .map_err(|err| StoreError::Sqlite(format!("opening the store failed: {err}")))??;

        let (head, compact) = (loaded.head, loaded.compact);
        tracing::info!(head, compact, keys = loaded.index.len(), "store opened");
        let cache = Arc::new(Cache::new(loaded, ring_capacity));
        let max_batch = opts.max_batch.max(1);
        let (commands, rx) = mpsc::channel(max_batch.saturating_mul(4).max(1024));
        writer::start(
            conn,
            checkpoints,
            Arc::clone(&cache),
            max_batch,
            wal,
            lock,
            rx,
        )?;
        Ok(Arc::new(SqliteBackend {
            commands,
            cache,
            readers: Arc::new(Readers {
                pool: Mutex::new(readers),
                permits: Arc::new(Semaphore::new(reader_count)),
            }),
        }))
    }

    /// Commits everything queued, stops the writer, closes the database and
    /// ends every watch. Later calls fail with `Closed`.
    pub async fn close(&self) {
        let (reply, done) = oneshot::channel();
        if self.commands.send(Command::Close { reply }).await.is_ok() {
            let _ = done.await;
        }
        self.readers.close();
        self.cache.close();
    }

    async fn write(&self, key: String, kind: WriteKind) -> Result<KeyValue, StoreError> {
        let stored = self
            .submit(|reply| Command::Write(WriteOp { key, kind, reply }))
            .await?;
        Ok(KeyValue::clone(&stored))
    }

    async fn submit<T>(&self, command: impl FnOnce(Reply<T>) -> Command) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(command(reply))
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }
}

impl Backend for SqliteBackend {
    fn create(&self, key: &str, value: Value) -> BoxFuture<'_, Result<KeyValue, StoreError>> {
        let key = key.to_owned();
        async move {
            let template =
                Template::new(value).map_err(|why| StoreError::Corrupt(key.clone(), why))?;
            self.write(key, WriteKind::Create(template)).await
        }
        .boxed()
    }

    fn update(
        &self,
        key: &str,
        expected: Option<Revision>,
        value: Value,
    ) -> BoxFuture<'_, Result<KeyValue, StoreError>> {
        let key = key.to_owned();
        async move {
            let template =
                Template::new(value).map_err(|why| StoreError::Corrupt(key.clone(), why))?;
            self.write(key, WriteKind::Update(expected, template)).await
        }
        .boxed()
    }

    fn delete(
        &self,
        key: &str,
        expected: Option<Revision>,
    ) -> BoxFuture<'_, Result<KeyValue, StoreError>> {
        self.write(key.to_owned(), WriteKind::Delete(expected))
            .boxed()
    }

    fn get(&self, key: &str) -> BoxFuture<'_, Result<Option<KeyValue>, StoreError>> {
        let result = if self.cache.is_closed() {
            Err(StoreError::Closed)
        } else {
            Ok(self.cache.get(key).map(|kv| KeyValue::clone(&kv)))
        };
        futures::future::ready(result).boxed()
    }

    fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        at: Option<Revision>,
    ) -> BoxFuture<'_, Result<ListResult, StoreError>> {
        let range = KeyRange::new(prefix, start_after);
        async move {
            if self.cache.is_closed() {
                return Err(StoreError::Closed);
            }
            let compacted = self.cache.compact();
            match at {
                Some(at) if at < compacted => {
                    return Err(StoreError::Compacted {
                        requested: at,
                        compacted,
                    });
                }
                Some(at) if at > self.cache.head() => return Err(StoreError::FutureRevision(at)),
                _ => {}
            }
            // At the head (or at a revision that still is the head), the
            // index answers alone; large pages are copied off the runtime.
            let cache = Arc::clone(&self.cache);
            let head_range = range.clone();
            // `Err(at)`: the head moved past `at`.
            let from_index = move || -> Result<ListResult, Revision> {
                let inner = cache.read();
                if let Some(at) = at
                    && at != inner.head
                {
                    return Err(at);
                }
                let page = cache::head_page(&inner, &head_range, limit);
                drop(inner);
                Ok(ListResult {
                    items: page.items.iter().map(|kv| KeyValue::clone(kv)).collect(),
                    revision: page.revision,
                    more: page.more,
                    remaining: page.remaining,
                })
            };
            // small results (a page, or a whole range that turns out small,
            // like the per-create LimitRange/ResourceQuota lookups) are
            // copied right here: a blocking-pool hop costs more than them
            let small = (limit != 0 && limit <= 64)
                || (limit == 0 && self.cache.read().range(&range).nth(64).is_none());
            let listed = if small {
                from_index()
            } else {
                tokio::task::spawn_blocking(from_index)
                    .await
                    .map_err(|err| StoreError::Sqlite(format!("list task failed: {err}")))?
            };
            match listed {
                Ok(listed) => Ok(listed),
                Err(at) => {
                    let cache = Arc::clone(&self.cache);
                    self.readers
                        .run(move |conn| list_past(conn, &cache, &range, limit, at))
                        .await
                }
            }
        }
        .boxed()
    }

    fn count(&self, prefix: &str) -> BoxFuture<'_, Result<i64, StoreError>> {
        let result = if self.cache.is_closed() {
            Err(StoreError::Closed)
        } else {
            let range = KeyRange::new(prefix, None);
            let count = self.cache.read().range(&range).count();
            Ok(i64::try_from(count).unwrap_or(i64::MAX))
        };
        futures::future::ready(result).boxed()
    }

    fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream, StoreError> {
        let history: Arc<dyn HistorySource> = Arc::new(LogHistory {
            readers: Arc::clone(&self.readers),
        });
        watch::watch(&self.cache, history, prefix, after)
    }

    fn current_revision(&self) -> Revision {
        self.cache.head()
    }

    fn compact_revision(&self) -> Revision {
        self.cache.compact()
    }

    fn compact(&self, keep: i64) -> BoxFuture<'_, Result<Revision, StoreError>> {
        async move {
            if self.commands.is_closed() {
                return Err(StoreError::Closed);
            }
            let target = self.cache.head().saturating_sub(keep.max(0));
            let mut compacted = self.cache.compact();
            while compacted < target {
                let step = target.min(compacted.saturating_add(COMPACT_CHUNK));
                let reached = self
                    .submit(|reply| Command::Compact {
                        target: step,
                        reply,
                    })
                    .await?;
                if reached <= compacted {
                    break;
                }
                compacted = reached;
            }
            Ok(compacted)
        }
        .boxed()
    }
}

/// Creates the parent directory (0700) and the database file (0600) if
/// missing; SQLite gives the WAL and shared-memory files the database's mode.
fn prepare_files(path: &Path) -> Result<(), StoreError> {
    let io = |what: &str, err: std::io::Error| {
        StoreError::Sqlite(format!("{what} {}: {err}", path.display()))
    };
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty())
        && !dir.exists()
    {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|err| io("cannot create the directory of", err))?;
    }
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(|err| io("cannot create", err))?;
    Ok(())
}

/// The database's WAL file, which the syncer fsyncs before acknowledging.
/// SQLite keeps using the same file (it only deletes it when the last
/// connection closes, after the writer is gone).
fn open_wal(path: &Path) -> Result<File, StoreError> {
    let mut wal_path: PathBuf = path.to_owned();
    wal_path.as_mut_os_string().push("-wal");
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&wal_path)
        .map_err(|err| StoreError::Sqlite(format!("cannot open {}: {err}", wal_path.display())))
}

/// Takes the advisory lock that keeps a second process (or a second open in
/// this one) off the database. Waits a little: a dropped backend's writer
/// may still be finishing.
fn lock_database(path: &Path) -> Result<File, StoreError> {
    let mut lock_path: PathBuf = path.to_owned();
    lock_path.as_mut_os_string().push(".lock");
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&lock_path)
        .map_err(|err| StoreError::Sqlite(format!("cannot open {}: {err}", lock_path.display())))?;
    for _ in 0..40 {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(std::fs::TryLockError::WouldBlock) => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(std::fs::TryLockError::Error(err)) => {
                return Err(StoreError::Sqlite(format!(
                    "cannot lock {}: {err}",
                    lock_path.display()
                )));
            }
        }
    }
    Err(StoreError::Sqlite(format!(
        "{} is in use by another process",
        path.display()
    )))
}

/// Read-only connections, each used by one blocking task at a time.
struct Readers {
    pool: Mutex<Vec<Connection>>,
    permits: Arc<Semaphore>,
}

impl Readers {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Connection>> {
        self.pool
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn close(&self) {
        self.permits.close();
        self.lock().clear();
    }

    /// Runs `query` on a pooled connection on the blocking pool.
    async fn run<T, F>(self: &Arc<Self>, query: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Closed)?;
        let readers = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let conn = readers.lock().pop().ok_or(StoreError::Closed)?;
            // Returned to the pool even if the query panics or the caller
            // went away; the permit is released only after that.
            let lease = Lease {
                readers: &readers,
                conn: Some(conn),
            };
            let result = match &lease.conn {
                Some(conn) => query(conn),
                None => Err(StoreError::Closed),
            };
            drop(lease);
            drop(permit);
            result
        })
        .await
        .map_err(|err| StoreError::Sqlite(format!("read task failed: {err}")))?
    }
}

struct Lease<'a> {
    readers: &'a Readers,
    conn: Option<Connection>,
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take()
            && !self.readers.permits.is_closed()
        {
            self.readers.lock().push(conn);
        }
    }
}

struct LogHistory {
    readers: Arc<Readers>,
}

impl HistorySource for LogHistory {
    fn events(
        &self,
        prefix: String,
        after: Revision,
        until: Revision,
        limit: usize,
    ) -> BoxFuture<'static, Result<Vec<Event>, StoreError>> {
        let readers = Arc::clone(&self.readers);
        async move {
            readers
                .run(move |conn| history(conn, &prefix, after, until, limit))
                .await
        }
        .boxed()
    }
}

/// The `WHERE` condition on `key` for `range` (unary `+` keeps SQLite on
/// the revision order), binding `?1` (and `?2`), and the next free parameter.
fn key_condition(range: &KeyRange) -> (&'static str, usize) {
    match (range.lower_exclusive, range.upper.is_some()) {
        (false, false) => ("+key >= ?1", 2),
        (false, true) => ("+key >= ?1 AND +key < ?2", 3),
        (true, false) => ("+key > ?1", 2),
        (true, true) => ("+key > ?1 AND +key < ?2", 3),
    }
}

fn key_params(range: &KeyRange) -> Vec<&dyn rusqlite::ToSql> {
    let mut params: Vec<&dyn rusqlite::ToSql> = vec![&range.lower];
    if let Some(upper) = &range.upper {
        params.push(upper);
    }
    params
}

/// A list as of `at` (below the head): the live index with every key that
/// changed after `at` rolled back to the row its first later change replaced.
fn list_past(
    conn: &Connection,
    cache: &Cache,
    range: &KeyRange,
    limit: usize,
    at: Revision,
) -> Result<ListResult, StoreError> {
    // One snapshot for the whole list: the rows rolled back to stay readable
    // in it even if a compaction runs meanwhile.
    let tx = conn.unchecked_transaction().map_err(sql_err)?;
    let (log_head, compacted) = read_revisions(&tx)?;
    if at < compacted {
        return Err(StoreError::Compacted {
            requested: at,
            compacted,
        });
    }
    // key -> (revision of its first change after `at`, the revision it replaced)
    let mut changed: BTreeMap<String, (Revision, Revision)> = BTreeMap::new();
    if !range.is_empty() {
        let (condition, next) = key_condition(range);
        let sql = format!(
            "SELECT revision, key, prev_revision FROM log
             WHERE revision > ?{next} AND revision <= ?{} AND {condition}
             ORDER BY revision",
            next + 1
        );
        let mut params = key_params(range);
        params.push(&at);
        params.push(&log_head);
        let mut stmt = tx.prepare_cached(&sql).map_err(sql_err)?;
        let mut rows = stmt.query(params.as_slice()).map_err(sql_err)?;
        while let Some(row) = rows.next().map_err(sql_err)? {
            let revision: Revision = row.get(0).map_err(sql_err)?;
            let key: String = row.get(1).map_err(sql_err)?;
            let prev: Revision = row.get(2).map_err(sql_err)?;
            changed.entry(key).or_insert((revision, prev));
        }
    }
    let page = {
        let inner = cache.read();
        if inner.head > log_head {
            // Batches committed after this snapshot began are already in the
            // index: their first changes come from the ring.
            if inner.floor > log_head {
                return Err(StoreError::Sqlite(
                    "the store moved on too fast to list at a past revision; retry".to_owned(),
                ));
            }
            for change in inner.ring_after(log_head) {
                let key = &change.kv.key;
                if range.contains(key) && !changed.contains_key(key) {
                    changed.insert(key.clone(), (change.revision(), change.prev_revision));
                }
            }
        }
        cache::past_page(&inner, range, limit, &changed)
    };
    let mut value_at = tx
        .prepare_cached("SELECT key, create_revision, deleted, value FROM log WHERE revision = ?1")
        .map_err(sql_err)?;
    let mut items = Vec::with_capacity(page.items.len());
    for item in page.items {
        match item {
            PastItem::Live(kv) => items.push(KeyValue::clone(&kv)),
            PastItem::Logged(revision) => {
                let row = value_at
                    .query_row([revision], |row| {
                        Ok((
                            row.get::<_, String>(0)?,
                            row.get::<_, Revision>(1)?,
                            row.get::<_, bool>(2)?,
                            row.get::<_, Vec<u8>>(3)?,
                        ))
                    })
                    .optional()
                    .map_err(sql_err)?;
                let Some((key, create_revision, false, value)) = row else {
                    return Err(StoreError::Corrupt(
                        format!("revision {revision}"),
                        "a change names a previous revision that is missing or a delete".to_owned(),
                    ));
                };
                items.push(KeyValue {
                    key,
                    value: Bytes::from(value),
                    create_revision,
                    mod_revision: revision,
                });
            }
        }
    }
    drop(value_at);
    tx.finish().map_err(sql_err)?;
    Ok(ListResult {
        items,
        revision: at,
        more: page.more,
        remaining: page.remaining,
    })
}

fn history(
    conn: &Connection,
    prefix: &str,
    after: Revision,
    until: Revision,
    limit: usize,
) -> Result<Vec<Event>, StoreError> {
    let tx = conn.unchecked_transaction().map_err(sql_err)?;
    // Compaction only removes rows at or below the compact revision, so if it
    // is still at or below `after` in this snapshot, nothing after is missing.
    let compacted = read_meta(&tx, META_COMPACT)?.unwrap_or(0);
    if compacted > after {
        return Err(StoreError::Compacted {
            requested: after,
            compacted,
        });
    }
    let range = KeyRange::new(prefix, None);
    let (condition, next) = key_condition(&range);
    let sql = format!(
        "SELECT revision, key, create_revision, deleted, value FROM log
         WHERE revision > ?{next} AND revision <= ?{} AND {condition}
         ORDER BY revision LIMIT ?{}",
        next + 1,
        next + 2,
    );
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut params = key_params(&range);
    params.push(&after);
    params.push(&until);
    params.push(&limit);
    let events = tx
        .prepare_cached(&sql)
        .and_then(|mut stmt| {
            stmt.query_map(params.as_slice(), |row| {
                let revision: Revision = row.get(0)?;
                let create_revision: Revision = row.get(2)?;
                let deleted: bool = row.get(3)?;
                Ok(Event {
                    kind: event_kind(revision, create_revision, deleted),
                    kv: KeyValue {
                        key: row.get(1)?,
                        value: Bytes::from(row.get::<_, Vec<u8>>(4)?),
                        create_revision,
                        mod_revision: revision,
                    },
                    revision,
                })
            })?
            .collect::<Result<Vec<_>, _>>()
        })
        .map_err(sql_err)?;
    tx.finish().map_err(sql_err)?;
    Ok(events)
}
