//! The store: a revisioned key-value log (kine-shaped) holding every API object.
//!
//! It owns the [`Backend`] contract the API server is written against and the
//! default SQLite implementation ([`SqliteBackend`]). Invariants every backend
//! keeps: one global revision counter, strictly increasing and never reused
//! (also across restarts and compaction); every successful write gets exactly
//! one new revision and that revision is written into the stored object as
//! `metadata.resourceVersion`, so the stored bytes are exactly what a GET
//! returns; nothing is acknowledged before it is durable; watchers see every
//! event under their prefix in revision order or get an error and a closed
//! stream, never a silent gap. The store knows nothing of HTTP, kinds or
//! Kubernetes semantics beyond the `metadata.resourceVersion` field.
//!
//! Layout of the SQLite backend:
//! - `schema.rs`: tables (an append-only `log` and `meta`), connections,
//!   rebuilding the in-memory state from the log at open;
//! - `writer.rs`: the one writer thread (group commit) and its syncer thread
//!   (fsync, then publish and acknowledge);
//! - `cache.rs`: the in-memory index of live values, the ring of recent
//!   changes and the broadcast to watchers;
//! - `watch.rs`: watch streams over the cache, falling back to the log;
//! - `sqlite.rs`: open/close, the [`Backend`] impl, reads of history through a
//!   pool of read-only connections.

mod cache;
mod schema;
mod sqlite;
mod watch;
mod writer;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;

pub use sqlite::{SqliteBackend, SqliteOptions};

/// A store revision; the `resourceVersion` clients see.
pub type Revision = i64;

/// One stored object as of some revision.
#[derive(Clone, Debug)]
pub struct KeyValue {
    pub key: String,
    /// The object's JSON, with `metadata.resourceVersion` equal to `mod_revision`.
    pub value: bytes::Bytes,
    pub create_revision: Revision,
    pub mod_revision: Revision,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    Added,
    Modified,
    Deleted,
}

#[derive(Clone, Debug)]
pub struct Event {
    pub kind: EventKind,
    /// For `Deleted`: the last value, rewritten with the delete revision.
    pub kv: KeyValue,
    pub revision: Revision,
}

#[derive(Clone, Debug)]
pub struct ListResult {
    pub items: Vec<KeyValue>,
    /// The revision the list is consistent at.
    pub revision: Revision,
    pub more: bool,
    /// Items after this page, best effort.
    pub remaining: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("key {0} already exists")]
    AlreadyExists(String),
    #[error("key {0} not found")]
    NotFound(String),
    #[error("revision mismatch on {key}: expected {expected}, current {current}")]
    Conflict {
        key: String,
        expected: Revision,
        current: Revision,
    },
    #[error("required revision {requested} has been compacted (compact revision {compacted})")]
    Compacted {
        requested: Revision,
        compacted: Revision,
    },
    #[error("revision {0} is in the future")]
    FutureRevision(Revision),
    #[error("store closed")]
    Closed,
    #[error("sqlite: {0}")]
    Sqlite(String),
    #[error("corrupt value under {0}: {1}")]
    Corrupt(String, String),
}

pub type WatchStream =
    std::pin::Pin<Box<dyn futures::Stream<Item = Result<Event, StoreError>> + Send>>;

/// A revisioned key-value store. Object safe: held as `Arc<dyn Backend>`.
pub trait Backend: Send + Sync + 'static {
    /// Stores a new key. The store sets `metadata.resourceVersion` to the new
    /// revision (a decimal string) before storing. `AlreadyExists` if live.
    fn create(
        &self,
        key: &str,
        value: serde_json::Value,
    ) -> BoxFuture<'_, Result<KeyValue, StoreError>>;

    /// Compare-and-swap update: with `expected = Some(rev)` the current
    /// `mod_revision` must equal `rev`, else `Conflict`. `NotFound` if absent.
    fn update(
        &self,
        key: &str,
        expected: Option<Revision>,
        value: serde_json::Value,
    ) -> BoxFuture<'_, Result<KeyValue, StoreError>>;

    /// Deletes (CAS like `update`); returns the last value rewritten with
    /// `resourceVersion` = the delete revision, which is also the `Deleted`
    /// event's value.
    fn delete(
        &self,
        key: &str,
        expected: Option<Revision>,
    ) -> BoxFuture<'_, Result<KeyValue, StoreError>>;

    fn get(&self, key: &str) -> BoxFuture<'_, Result<Option<KeyValue>, StoreError>>;

    /// Live keys under `prefix`, sorted by key, strictly after `start_after`,
    /// at most `limit` of them (0 = unlimited). `at = None` lists the current
    /// head; `Some(rev)` a consistent snapshot as of `rev` (`Compacted` below
    /// the compact revision, `FutureRevision` above the head).
    fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        at: Option<Revision>,
    ) -> BoxFuture<'_, Result<ListResult, StoreError>>;

    /// Number of live keys under `prefix`.
    fn count(&self, prefix: &str) -> BoxFuture<'_, Result<i64, StoreError>>;

    /// Events for keys under `prefix` with revision > `after`, in revision
    /// order: retained history first, then live events, until the store
    /// closes. `Compacted` if `after` is below the compact revision. A watcher
    /// that falls too far behind gets one error item and the stream ends.
    fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream, StoreError>;

    /// The newest committed revision.
    fn current_revision(&self) -> Revision;

    /// History at or below this revision may be gone.
    fn compact_revision(&self) -> Revision;

    /// Removes history older than `keep` revisions behind the head (never the
    /// latest value of a live key). Returns the new compact revision.
    fn compact(&self, keep: i64) -> BoxFuture<'_, Result<Revision, StoreError>>;
}

/// Compacts `backend` every `every`, keeping `keep` revisions of history.
/// The task ends when the store reports it is closed.
pub fn spawn_compactor(
    backend: Arc<dyn Backend>,
    every: Duration,
    keep: i64,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(every.max(Duration::from_millis(1)));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first tick fires at once; skip it so a restart does not compact
        // before the server had a chance to serve old revisions.
        ticker.tick().await;
        loop {
            ticker.tick().await;
            match backend.compact(keep).await {
                Ok(rev) => tracing::debug!(compact_revision = rev, "store compacted"),
                Err(StoreError::Closed) => {
                    tracing::debug!("store closed, compactor stops");
                    return;
                }
                Err(err) => tracing::warn!(error = %err, "store compaction failed"),
            }
        }
    })
}
