//! The single writer: one OS thread owns the read-write SQLite connection and
//! applies every mutation (create, update, delete, compaction) with group
//! commit; a second thread, the syncer, makes committed batches durable and
//! only then publishes and acknowledges them.
//!
//! Invariants: revisions are assigned here and only here, one per successful
//! write, in arrival order; a batch of up to `max_batch` queued writes is one
//! transaction in which each operation's precondition is checked against the
//! committed state (the writer's own map of live keys, which includes batches
//! committed but not yet published) overlaid with the earlier operations of
//! the batch; an
//! operation whose precondition fails is answered alone and consumes no
//! revision; an SQLite failure rolls the whole batch back and every operation
//! in it gets the error. Nothing is answered and nothing reaches the cache
//! before the WAL holding it has been fsynced (with `synchronous_full`;
//! otherwise before the commit returned): while the syncer fsyncs, the writer
//! already builds the next batch, and one fsync covers every batch committed
//! before it started. Batches are published in commit order. Checkpoints
//! run on a third thread with its own connection, nudged by the writer every
//! few MiB of log, so the write path never waits for one. If an fsync
//! fails, nothing after it is ever acknowledged: the store refuses writes
//! until reopened. Each write is one appended log row. Neither thread ever
//! blocks the async runtime: they are fed through a channel and answer
//! through oneshots.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc as std_mpsc};

use bytes::Bytes;
use rusqlite::{Connection, TransactionBehavior, params};
use serde_json::Value;
use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::{mpsc, oneshot};

use super::cache::{Cache, Change, Entry};
use super::schema::{META_COMPACT, META_MAX_REVISION, set_meta, sql_err};
use super::{EventKind, KeyValue, Revision, StoreError};

pub(super) type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// Committed batches the syncer may lag behind before the writer waits.
const UNSYNCED_BATCHES: usize = 64;

/// Log bytes written between two checkpoint nudges (about 1,000 pages).
const CHECKPOINT_EVERY_BYTES: usize = 4 << 20;

pub(super) enum Command {
    Write(WriteOp),
    /// Compacts up to `target` (clamped to the head) in one transaction.
    Compact {
        target: Revision,
        reply: Reply<Revision>,
    },
    Close {
        reply: oneshot::Sender<()>,
    },
}

pub(super) struct WriteOp {
    pub key: String,
    pub kind: WriteKind,
    /// Gets the stored value (shared with the cache).
    pub reply: Reply<Arc<KeyValue>>,
}

pub(super) enum WriteKind {
    Create(Template),
    Update(Option<Revision>, Template),
    Delete(Option<Revision>),
}

/// Why one operation of a batch did not apply.
enum OpError {
    /// Its own precondition failed: the rest of the batch goes on.
    Rejected(StoreError),
    /// SQLite failed: the whole batch is rolled back.
    Fatal(StoreError),
}

impl From<rusqlite::Error> for OpError {
    fn from(err: rusqlite::Error) -> Self {
        OpError::Fatal(sql_err(err))
    }
}

type Answer = (Reply<Arc<KeyValue>>, Result<Arc<KeyValue>, StoreError>);

/// What the writer hands the syncer, in commit order.
enum Committed {
    Batch {
        head: Revision,
        changes: Vec<Change>,
        answers: Vec<Answer>,
    },
    Compacted {
        revision: Revision,
        reply: Reply<Revision>,
    },
    /// Everything before this is published; answer when done.
    Drain(std_mpsc::Sender<()>),
}

pub(super) struct Writer {
    conn: Connection,
    head: Revision,
    compact: Revision,
    max_batch: usize,
    cache: Arc<Cache>,
    /// Every live key as of the last commit (published or not): what
    /// preconditions are checked against, without touching the cache lock.
    live: HashSet<Entry>,
    syncer: std_mpsc::SyncSender<Committed>,
    /// Set by the syncer when an fsync failed.
    failed: Arc<AtomicBool>,
    checkpointer: Checkpointer,
    /// Held for the writer's lifetime: one process per database.
    lock: File,
}

/// Runs `PRAGMA wal_checkpoint(PASSIVE)` on its own thread when nudged. A
/// passive checkpoint never blocks the writer or readers; SQLite restarts
/// the WAL from the top at the next write once a checkpoint got through.
struct Checkpointer {
    nudge: Option<std_mpsc::SyncSender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    written: usize,
}

impl Checkpointer {
    fn start(conn: Connection) -> Result<Checkpointer, std::io::Error> {
        let (nudge, nudged) = std_mpsc::sync_channel::<()>(1);
        let thread = std::thread::Builder::new()
            .name("skiff-store-checkpoint".to_owned())
            .spawn(move || {
                while nudged.recv().is_ok() {
                    if let Err(err) = conn.execute_batch("PRAGMA wal_checkpoint(PASSIVE);") {
                        tracing::warn!(error = %err, "store checkpoint failed");
                    }
                }
            })?;
        Ok(Checkpointer {
            nudge: Some(nudge),
            thread: Some(thread),
            written: 0,
        })
    }

    /// Counts log bytes written; nudges the thread every few MiB.
    fn wrote(&mut self, bytes: usize) {
        self.written += bytes;
        if self.written >= CHECKPOINT_EVERY_BYTES {
            self.written = 0;
            if let Some(nudge) = &self.nudge {
                // Full means a checkpoint is pending already.
                let _ = nudge.try_send(());
            }
        }
    }

    fn stop(&mut self) {
        self.nudge = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The operations of the batch being built, applied to the open transaction.
struct Batch {
    head: Revision,
    /// Keys written earlier in this batch: their value and whether live.
    overlay: HashMap<Entry, bool>,
    answers: Vec<Answer>,
    changes: Vec<Change>,
    fatal: Option<StoreError>,
}

impl Batch {
    fn apply(&mut self, conn: &Connection, live: &HashSet<Entry>, op: WriteOp) {
        let current = match self.overlay.get_key_value(op.key.as_str()) {
            Some((entry, true)) => Some(Arc::clone(&entry.0)),
            Some((_, false)) => None,
            None => live.get(op.key.as_str()).map(|entry| Arc::clone(&entry.0)),
        };
        match apply_one(conn, op.key, current, op.kind, self.head + 1) {
            Ok(change) => {
                self.head += 1;
                remember(&mut self.overlay, &change);
                self.answers.push((op.reply, Ok(Arc::clone(&change.kv))));
                self.changes.push(change);
            }
            Err(OpError::Rejected(err)) => self.answers.push((op.reply, Err(err))),
            Err(OpError::Fatal(err)) => {
                self.answers.push((op.reply, Err(StoreError::Closed)));
                self.fatal = Some(err);
            }
        }
    }
}

fn remember(map: &mut HashMap<Entry, bool>, change: &Change) {
    // `insert` on an existing key would keep the old key's Arc.
    map.remove(change.kv.key.as_str());
    map.insert(
        Entry(Arc::clone(&change.kv)),
        change.kind != EventKind::Deleted,
    );
}

fn apply_to_live(live: &mut HashSet<Entry>, change: &Change) {
    if change.kind == EventKind::Deleted {
        live.remove(change.kv.key.as_str());
    } else {
        live.replace(Entry(Arc::clone(&change.kv)));
    }
}

/// Starts the writer, its syncer and its checkpointer. `wal` is the
/// database's WAL file, to be fsynced before acknowledging (`None`:
/// acknowledge after the commit); `checkpoints` the checkpointer's connection.
pub(super) fn start(
    conn: Connection,
    checkpoints: Connection,
    cache: Arc<Cache>,
    max_batch: usize,
    wal: Option<File>,
    lock: File,
    rx: mpsc::Receiver<Command>,
) -> Result<(), StoreError> {
    let (syncer_tx, syncer_rx) = std_mpsc::sync_channel(UNSYNCED_BATCHES);
    let failed = Arc::new(AtomicBool::new(false));
    let syncer = Syncer {
        cache: Arc::clone(&cache),
        wal,
        failed: Arc::clone(&failed),
    };
    let spawn_error =
        |err: std::io::Error| StoreError::Sqlite(format!("cannot start a store thread: {err}"));
    std::thread::Builder::new()
        .name("skiff-store-sync".to_owned())
        .spawn(move || syncer.run(syncer_rx))
        .map_err(spawn_error)?;
    let live: HashSet<Entry> = cache.read().index.iter().cloned().collect();
    let checkpointer = Checkpointer::start(checkpoints).map_err(spawn_error)?;
    let writer = Writer {
        conn,
        head: cache.head(),
        compact: cache.compact(),
        max_batch: max_batch.max(1),
        cache,
        live,
        syncer: syncer_tx,
        failed,
        checkpointer,
        lock,
    };
    std::thread::Builder::new()
        .name("skiff-store-writer".to_owned())
        .spawn(move || writer.run(rx))
        .map_err(spawn_error)?;
    Ok(())
}

impl Writer {
    fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        // Should this thread ever die unexpectedly, watchers still end.
        let _close_on_exit = CloseOnDrop(Arc::clone(&self.cache));
        let mut carried: Option<Command> = None;
        loop {
            let Some(command) = carried.take().or_else(|| rx.blocking_recv()) else {
                break;
            };
            match command {
                Command::Write(op) => {
                    carried = self.write_batch(op, &mut rx);
                }
                Command::Compact { target, reply } => match self.compact_to(target) {
                    Ok(revision) => self.hand_over(Committed::Compacted { revision, reply }),
                    Err(err) => {
                        let _ = reply.send(Err(err));
                    }
                },
                Command::Close { reply } => {
                    // Operations queued behind the close are dropped
                    // unapplied; their callers see `Closed`.
                    rx.close();
                    self.shutdown();
                    let _ = reply.send(());
                    return;
                }
            }
        }
        self.shutdown();
    }

    /// Passes committed work to the syncer (waiting if it is far behind).
    fn hand_over(&self, committed: Committed) {
        if let Err(std_mpsc::SendError(lost)) = self.syncer.send(committed) {
            // The syncer is gone: nothing can be acknowledged any more.
            fail_all(lost, "the store syncer stopped");
        }
    }

    fn shutdown(mut self) {
        let (done, published) = std_mpsc::channel();
        self.hand_over(Committed::Drain(done));
        let _ = published.recv();
        drop(self.syncer);
        self.checkpointer.stop();
        self.cache.close();
        // Best effort: fold the WAL back so the next open starts small.
        if let Err(err) = self.conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);") {
            tracing::debug!(error = %err, "final checkpoint skipped");
        }
        if let Err((_, err)) = self.conn.close() {
            tracing::warn!(error = %err, "closing the store database failed");
        }
        drop(self.lock);
    }

    /// One group commit: applies `first` and every write already queued
    /// (up to `max_batch`) to one transaction, commits it and hands it to the
    /// syncer. Returns a non-write command that ended the batch.
    ///
    /// It never waits for more writes: while the syncer fsyncs, the writes
    /// arriving meanwhile are committed here and the next fsync covers them
    /// all, so durability is grouped anyway and no write waits for nothing.
    fn write_batch(&mut self, first: WriteOp, rx: &mut mpsc::Receiver<Command>) -> Option<Command> {
        if self.failed.load(Ordering::Acquire) {
            let _ = first.reply.send(Err(StoreError::Sqlite(
                "an earlier fsync failed; reopen the store".to_owned(),
            )));
            return None;
        }
        let mut batch = Batch {
            head: self.head,
            overlay: HashMap::new(),
            answers: Vec::new(),
            changes: Vec::new(),
            fatal: None,
        };
        let mut carried = None;
        match self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
        {
            Err(err) => {
                batch.answers.push((first.reply, Err(StoreError::Closed)));
                batch.fatal = Some(sql_err(err));
            }
            Ok(tx) => {
                batch.apply(&tx, &self.live, first);
                while batch.answers.len() < self.max_batch && batch.fatal.is_none() {
                    match rx.try_recv() {
                        Ok(Command::Write(op)) => batch.apply(&tx, &self.live, op),
                        Ok(other) => {
                            carried = Some(other);
                            break;
                        }
                        Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
                    }
                }
                if batch.fatal.is_none()
                    && let Err(err) = tx.commit()
                {
                    batch.fatal = Some(sql_err(err));
                }
                // On failure the transaction rolled back (commit failed or
                // `tx` dropped here).
            }
        }
        if let Some(err) = batch.fatal {
            tracing::error!(error = %err, ops = batch.answers.len(), "store batch failed, rolled back");
            let message = err.to_string();
            for (reply, _) in batch.answers {
                let _ = reply.send(Err(StoreError::Sqlite(message.clone())));
            }
            return carried;
        }
        self.head = batch.head;
        for change in &batch.changes {
            apply_to_live(&mut self.live, change);
            self.checkpointer
                .wrote(change.kv.value.len() + change.kv.key.len());
        }
        self.hand_over(Committed::Batch {
            head: batch.head,
            changes: batch.changes,
            answers: batch.answers,
        });
        carried
    }

    /// Drops history at or below `target` that is not the latest value of a
    /// key as of `target`, and every delete marker at or below it.
    fn compact_to(&mut self, target: Revision) -> Result<Revision, StoreError> {
        let target = target.min(self.head);
        if target <= self.compact {
            return Ok(self.compact);
        }
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql_err)?;
        // A row is superseded exactly when a later row names it as its
        // previous revision; only rows written since the last compaction can
        // name rows that are still there.
        tx.execute(
            "DELETE FROM log WHERE revision IN (
                 SELECT prev_revision FROM log
                 WHERE revision > ?1 AND revision <= ?2 AND prev_revision > 0)",
            params![self.compact, target],
        )
        .map_err(sql_err)?;
        tx.execute(
            "DELETE FROM log WHERE revision > ?1 AND revision <= ?2 AND deleted = 1",
            params![self.compact, target],
        )
        .map_err(sql_err)?;
        // A compaction may remove the newest row (a delete marker): keep the
        // head so revisions never go back after a restart.
        set_meta(&tx, META_MAX_REVISION, self.head)?;
        set_meta(&tx, META_COMPACT, target)?;
        tx.commit().map_err(sql_err)?;
        self.compact = target;
        Ok(target)
    }
}

struct CloseOnDrop(Arc<Cache>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// Answers everything in `committed` with an error (it cannot be made durable).
fn fail_all(committed: Committed, why: &str) {
    match committed {
        Committed::Batch { answers, .. } => {
            for (reply, _) in answers {
                let _ = reply.send(Err(StoreError::Sqlite(why.to_owned())));
            }
        }
        Committed::Compacted { reply, .. } => {
            let _ = reply.send(Err(StoreError::Sqlite(why.to_owned())));
        }
        Committed::Drain(done) => {
            let _ = done.send(());
        }
    }
}

/// Makes committed batches durable, then publishes and answers them.
struct Syncer {
    cache: Arc<Cache>,
    wal: Option<File>,
    failed: Arc<AtomicBool>,
}

impl Syncer {
    fn run(self, rx: std_mpsc::Receiver<Committed>) {
        let mut group = Vec::new();
        while let Ok(first) = rx.recv() {
            group.push(first);
            // One fsync for everything committed so far.
            while let Ok(more) = rx.try_recv() {
                group.push(more);
            }
            if !self.failed.load(Ordering::Acquire)
                && let Some(wal) = &self.wal
                && let Err(err) = wal.sync_data()
            {
                tracing::error!(error = %err, "fsync of the store WAL failed; refusing writes until reopened");
                self.failed.store(true, Ordering::Release);
            }
            let failed = self.failed.load(Ordering::Acquire);
            for committed in group.drain(..) {
                if failed {
                    fail_all(committed, "fsync of the store WAL failed; reopen the store");
                    continue;
                }
                match committed {
                    Committed::Batch {
                        head,
                        changes,
                        answers,
                    } => {
                        self.cache.publish(changes, head);
                        for (reply, answer) in answers {
                            let _ = reply.send(answer);
                        }
                    }
                    Committed::Compacted { revision, reply } => {
                        self.cache.set_compact(revision);
                        let _ = reply.send(Ok(revision));
                    }
                    Committed::Drain(done) => {
                        let _ = done.send(());
                    }
                }
            }
        }
    }
}

fn apply_one(
    conn: &Connection,
    key: String,
    current: Option<Arc<KeyValue>>,
    kind: WriteKind,
    revision: Revision,
) -> Result<Change, OpError> {
    let (kind, create_revision, prev_revision, bytes) = match kind {
        WriteKind::Create(template) => {
            if current.is_some() {
                return Err(OpError::Rejected(StoreError::AlreadyExists(key)));
            }
            (EventKind::Added, revision, 0, template.render(revision))
        }
        WriteKind::Update(expected, template) => {
            let current = check(&key, current, expected)?;
            let bytes = template.render(revision);
            (
                EventKind::Modified,
                current.create_revision,
                current.mod_revision,
                bytes,
            )
        }
        WriteKind::Delete(expected) => {
            let current = check(&key, current, expected)?;
            let bytes = match serde_json::from_slice::<Value>(&current.value) {
                Ok(value) => match Template::new(value) {
                    Ok(template) => template.render(revision),
                    Err(_) => current.value.clone(),
                },
                Err(err) => {
                    // Never let a damaged object become undeletable: the
                    // delete goes through and carries the bytes as they were.
                    tracing::warn!(key, error = %err, "deleting an object that is not valid JSON");
                    current.value.clone()
                }
            };
            (
                EventKind::Deleted,
                current.create_revision,
                current.mod_revision,
                bytes,
            )
        }
    };
    conn.prepare_cached(
        "INSERT INTO log (revision, key, create_revision, prev_revision, deleted, value)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        revision,
        key,
        create_revision,
        prev_revision,
        kind == EventKind::Deleted,
        &bytes[..]
    ])?;
    Ok(Change {
        kind,
        kv: Arc::new(KeyValue {
            key,
            value: bytes,
            create_revision,
            mod_revision: revision,
        }),
        prev_revision,
    })
}

/// The live value of a key whose CAS precondition holds.
fn check(
    key: &str,
    current: Option<Arc<KeyValue>>,
    expected: Option<Revision>,
) -> Result<Arc<KeyValue>, OpError> {
    let Some(current) = current else {
        return Err(OpError::Rejected(StoreError::NotFound(key.to_owned())));
    };
    match expected {
        Some(expected) if expected != current.mod_revision => {
            Err(OpError::Rejected(StoreError::Conflict {
                key: key.to_owned(),
                expected,
                current: current.mod_revision,
            }))
        }
        _ => Ok(current),
    }
}

/// An object serialised once, with a hole where `metadata.resourceVersion`'s
/// value goes, so the writer only splices the revision in. Built by the
/// caller's task: serialisation stays off the single writer thread.
pub(super) struct Template {
    bytes: Vec<u8>,
    /// Offset of the hole: right after `"resourceVersion":`.
    split: usize,
}

impl Template {
    /// Fails if the value is not a JSON object or its `metadata` is not one.
    /// A missing `metadata` or `resourceVersion` is added.
    pub(super) fn new(mut value: Value) -> Result<Template, String> {
        let Value::Object(object) = &mut value else {
            return Err("the object is not a JSON object".to_owned());
        };
        let metadata = object
            .entry("metadata")
            .or_insert_with(|| Value::Object(serde_json::Map::new()));
        let Value::Object(metadata) = metadata else {
            return Err("metadata is not a JSON object".to_owned());
        };
        if !metadata.contains_key("resourceVersion") {
            metadata.insert("resourceVersion".to_owned(), Value::Null);
        }
        // The same compact form serde_json::to_vec writes, field by field.
        let mut bytes = Vec::with_capacity(512);
        let mut split = 0;
        let json = |err: serde_json::Error| err.to_string();
        bytes.push(b'{');
        for (i, (name, field)) in object.iter().enumerate() {
            if i > 0 {
                bytes.push(b',');
            }
            serde_json::to_writer(&mut bytes, name).map_err(json)?;
            bytes.push(b':');
            match field {
                Value::Object(metadata) if name == "metadata" => {
                    bytes.push(b'{');
                    for (j, (name, field)) in metadata.iter().enumerate() {
                        if j > 0 {
                            bytes.push(b',');
                        }
                        serde_json::to_writer(&mut bytes, name).map_err(json)?;
                        bytes.push(b':');
                        if name == "resourceVersion" {
                            split = bytes.len();
                        } else {
                            serde_json::to_writer(&mut bytes, field).map_err(json)?;
                        }
                    }
                    bytes.push(b'}');
                }
                _ => serde_json::to_writer(&mut bytes, field).map_err(json)?,
            }
        }
        bytes.push(b'}');
        // Room for the revision, so the writer renders without allocating;
        // no more, since the buffer is what the cache keeps.
        bytes.shrink_to(bytes.len() + REVISION_ROOM);
        bytes.reserve_exact(REVISION_ROOM);
        Ok(Template { bytes, split })
    }

    /// The object's JSON with `"resourceVersion":"<revision>"`.
    pub(super) fn render(self, revision: Revision) -> Bytes {
        let Template { mut bytes, split } = self;
        let mut digits = [0u8; REVISION_ROOM];
        let quoted = quoted_decimal(revision, &mut digits);
        let split = split.min(bytes.len());
        bytes.splice(split..split, quoted.iter().copied());
        Bytes::from(bytes)
    }
}

/// Bytes of `"-9223372036854775808"` (the longest quoted i64).
const REVISION_ROOM: usize = 22;

/// `value` as a quoted decimal JSON string, written into `buf`.
fn quoted_decimal(value: i64, buf: &mut [u8; REVISION_ROOM]) -> &[u8] {
    let mut end = REVISION_ROOM - 1;
    buf[end] = b'"';
    let mut magnitude = value.unsigned_abs();
    loop {
        end -= 1;
        buf[end] = b'0' + (magnitude % 10) as u8;
        magnitude /= 10;
        if magnitude == 0 {
            break;
        }
    }
    if value < 0 {
        end -= 1;
        buf[end] = b'-';
    }
    end -= 1;
    buf[end] = b'"';
    &buf[end..]
}

#[cfg(test)]
mod tests {
    use super::Template;
    use serde_json::{Value, json};

    fn expected(mut value: Value, revision: i64) -> Vec<u8> {
        let metadata = value
            .as_object_mut()
            .unwrap()
            .entry("metadata")
            .or_insert_with(|| json!({}));
        metadata.as_object_mut().unwrap().insert(
            "resourceVersion".to_owned(),
            Value::String(revision.to_string()),
        );
        serde_json::to_vec(&value).unwrap()
    }

    #[test]
    fn template_renders_exactly_what_serde_json_writes() {
        let cases = [
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a", "resourceVersion": "9", "uid": "u"}, "spec": {}}),
            json!({"metadata": {"name": "\"quoted\" \u{1} é"}, "data": {"resourceVersion": "not this one"}}),
            json!({"kind": "X"}),
            json!({"metadata": {}}),
            json!({"a": [1, 2.5, null, true], "metadata": {"labels": {"x": "y"}}, "z": {"metadata": {"resourceVersion": 1}}}),
        ];
        for value in cases {
            for revision in [1, 42, 0, -3, i64::MAX] {
                let template = Template::new(value.clone()).unwrap();
                assert_eq!(
                    template.render(revision).to_vec(),
                    expected(value.clone(), revision),
                    "{value}"
                );
            }
        }
    }

    #[test]
    fn revisions_render_as_quoted_decimals() {
        for value in [0, 1, 9, 10, 12345, -7, i64::MAX, i64::MIN] {
            let mut buf = [0u8; super::REVISION_ROOM];
            assert_eq!(
                super::quoted_decimal(value, &mut buf),
                format!("\"{value}\"").as_bytes()
            );
        }
    }

    #[test]
    fn template_refuses_non_objects() {
        assert!(Template::new(json!([1])).is_err());
        assert!(Template::new(json!("s")).is_err());
        assert!(Template::new(json!({"metadata": []})).is_err());
    }
}
