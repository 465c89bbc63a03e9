//! The SQLite schema, connection setup, loading the in-memory state at open,
//! and the small SQL helpers shared by the writer and the readers.
//!
//! Tables: `log` holds one row per revision (append-only apart from
//! compaction) and is the only record of objects; `meta` holds the compact
//! revision and the highest revision ever assigned. There is deliberately no
//! on-disk index by key: every key-ordered B-tree updated per write costs a
//! random page per operation in each group commit (measured: it caps the
//! write rate at about 30% of a bare append), so the "current" view lives in
//! memory ([`super::cache`]) and is rebuilt here from the log at open.
//! Invariants: the head revision is `max(meta.max_revision,
//! max(log.revision))`, so it survives compaction removing the newest rows;
//! `prev_revision` of a row names the key's previous live row (0 for a
//! create), which is what compaction and past-revision lists follow. This file
//! decides nothing about ordering or durability policy.

use std::path::Path;
use std::time::Duration;

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;

use bytes::Bytes;
use rusqlite::{Connection, OpenFlags, OptionalExtension};

use super::cache::{Change, Entry, Loaded};
use super::{EventKind, KeyValue, Revision, StoreError};

/// Bumped when the on-disk layout changes incompatibly.
const SCHEMA_VERSION: i64 = 1;

const DDL: &str = "
CREATE TABLE IF NOT EXISTS log (
    revision        INTEGER PRIMARY KEY,
    key             TEXT    NOT NULL,
    create_revision INTEGER NOT NULL,
    prev_revision   INTEGER NOT NULL,
    deleted         INTEGER NOT NULL,
    value           BLOB    NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    name  TEXT    PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
";

pub(super) const META_COMPACT: &str = "compact_revision";
pub(super) const META_MAX_REVISION: &str = "max_revision";
const META_SCHEMA: &str = "schema_version";

pub(super) fn sql_err(err: rusqlite::Error) -> StoreError {
    StoreError::Sqlite(err.to_string())
}

/// Opens the read-write connection, creates the schema if needed and checks
/// its version.
///
/// `synchronous = NORMAL`: a commit writes the WAL without syncing it (the
/// writer's syncer thread syncs the WAL before anything is acknowledged,
/// which is what `FULL` would do inside every commit); checkpoints still sync
/// the WAL before and the database after, so the file cannot be corrupted.
pub(super) fn open_writer(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sql_err)?;
    conn.busy_timeout(Duration::from_secs(5)).map_err(sql_err)?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
        .map_err(sql_err)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Sqlite(format!(
            "cannot switch {} to WAL mode (got {mode})",
            path.display()
        )));
    }
    conn.execute_batch("PRAGMA synchronous = NORMAL;")
        .map_err(sql_err)?;
    // Checkpoints run on their own thread (see `open_checkpointer`), off
    // the write path; this only catches a WAL that grew far beyond that
    // thread's threshold. The WAL is truncated back to 64 MiB after a
    // checkpoint. Writes append to the log and touch the right edges of
    // the indexes, so a 4 MiB page cache serves them as well as a larger
    // one (measured by `cargo bench --bench store`) and keeps the server
    // within its memory budget with 10,000 pods.
    conn.execute_batch(
        "PRAGMA wal_autocheckpoint = 25000;
         PRAGMA journal_size_limit = 67108864;
         PRAGMA temp_store = MEMORY;
         PRAGMA cache_size = -4096;",
    )
    .map_err(sql_err)?;
    conn.set_prepared_statement_cache_capacity(32);

    let tx = conn.unchecked_transaction().map_err(sql_err)?;
    tx.execute_batch(DDL).map_err(sql_err)?;
    match read_meta(&tx, META_SCHEMA)? {
        None => set_meta(&tx, META_SCHEMA, SCHEMA_VERSION)?,
        Some(SCHEMA_VERSION) => {}
        Some(other) => {
            return Err(StoreError::Corrupt(
                path.display().to_string(),
                format!("schema version {other}, this build understands {SCHEMA_VERSION}"),
            ));
        }
    }
    tx.commit().map_err(sql_err)?;
    Ok(conn)
}

/// A connection that only runs checkpoints (the writer opened the database
/// first). `NORMAL` makes a checkpoint sync the WAL before copying it and the
/// database after.
pub(super) fn open_checkpointer(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sql_err)?;
    conn.busy_timeout(Duration::from_secs(5)).map_err(sql_err)?;
    conn.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA wal_autocheckpoint = 0;")
        .map_err(sql_err)?;
    Ok(conn)
}

/// A read-only connection on an existing database (the writer opened it first).
pub(super) fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sql_err)?;
    conn.busy_timeout(Duration::from_secs(5)).map_err(sql_err)?;
    conn.execute_batch("PRAGMA temp_store = MEMORY; PRAGMA cache_size = -16384;")
        .map_err(sql_err)?;
    conn.set_prepared_statement_cache_capacity(32);
    Ok(conn)
}

pub(super) fn read_meta(conn: &Connection, name: &str) -> Result<Option<i64>, StoreError> {
    conn.prepare_cached("SELECT value FROM meta WHERE name = ?1")
        .and_then(|mut stmt| stmt.query_row([name], |row| row.get(0)).optional())
        .map_err(sql_err)
}

pub(super) fn set_meta(conn: &Connection, name: &str, value: i64) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO meta (name, value) VALUES (?1, ?2)
         ON CONFLICT (name) DO UPDATE SET value = excluded.value",
    )
    .and_then(|mut stmt| stmt.execute(rusqlite::params![name, value]))
    .map(|_| ())
    .map_err(sql_err)
}

/// `(head, compact)` as seen by `conn`'s current transaction.
pub(super) fn read_revisions(conn: &Connection) -> Result<(Revision, Revision), StoreError> {
    let log_max: Option<i64> = conn
        .prepare_cached("SELECT max(revision) FROM log")
        .and_then(|mut stmt| stmt.query_row([], |row| row.get(0)))
        .map_err(sql_err)?;
    let meta_max = read_meta(conn, META_MAX_REVISION)?;
    let compact = read_meta(conn, META_COMPACT)?.unwrap_or(0);
    let head = log_max.unwrap_or(0).max(meta_max.unwrap_or(0));
    if compact > head || compact < 0 {
        return Err(StoreError::Corrupt(
            "meta".to_owned(),
            format!("compact revision {compact} is beyond head {head}"),
        ));
    }
    Ok((head, compact))
}

/// The event a log row records.
pub(super) fn event_kind(
    revision: Revision,
    create_revision: Revision,
    deleted: bool,
) -> EventKind {
    if deleted {
        EventKind::Deleted
    } else if create_revision == revision {
        EventKind::Added
    } else {
        EventKind::Modified
    }
}

/// Rebuilds the in-memory state from the log: the latest value of every live
/// key, and the newest `ring_capacity` events for watchers.
pub(super) fn load(conn: &Connection, ring_capacity: usize) -> Result<Loaded, StoreError> {
    let tx = conn.unchecked_transaction().map_err(sql_err)?;
    let (head, compact) = read_revisions(&tx)?;
    let mut index: BTreeSet<Entry> = BTreeSet::new();
    let mut ring: VecDeque<Change> = VecDeque::with_capacity(ring_capacity.min(4096));
    // Every retained change above the compact revision is still in the log.
    let mut floor = compact;
    {
        let mut stmt = tx
            .prepare(
                "SELECT revision, key, create_revision, prev_revision, deleted, value
                 FROM log ORDER BY revision",
            )
            .map_err(sql_err)?;
        let mut rows = stmt.query([]).map_err(sql_err)?;
        while let Some(row) = rows.next().map_err(sql_err)? {
            let revision: Revision = row.get(0).map_err(sql_err)?;
            let create_revision: Revision = row.get(2).map_err(sql_err)?;
            let prev_revision: Revision = row.get(3).map_err(sql_err)?;
            let deleted: bool = row.get(4).map_err(sql_err)?;
            let kv = Arc::new(KeyValue {
                key: row.get(1).map_err(sql_err)?,
                value: Bytes::from(row.get::<_, Vec<u8>>(5).map_err(sql_err)?),
                create_revision,
                mod_revision: revision,
            });
            if deleted {
                index.remove(kv.key.as_str());
            } else {
                index.replace(Entry(Arc::clone(&kv)));
            }
            if revision > compact {
                ring.push_back(Change {
                    kind: event_kind(revision, create_revision, deleted),
                    kv,
                    prev_revision,
                });
                if ring.len() > ring_capacity
                    && let Some(evicted) = ring.pop_front()
                {
                    floor = evicted.revision();
                }
            }
        }
    }
    tx.finish().map_err(sql_err)?;
    Ok(Loaded {
        index,
        ring,
        floor,
        head,
        compact,
    })
}
