//! The in-memory side of the store: the current value of every live key (the
//! index), a ring of the most recent changes, and one broadcast channel that
//! fans each committed batch out to every watcher.
//!
//! Invariants: only the writer thread changes it, through [`Cache::publish`],
//! after the batch's transaction committed and before any caller of that
//! batch is answered; index, ring, broadcast and head change together under
//! one write lock, so a reader holding the read lock sees one revision
//! (`Inner::head`) everywhere, and a watcher registered under it sees every
//! later change exactly once; the index equals "the last row of each key in
//! the log unless it is a delete" as of `head`; the ring holds every change
//! with a revision above `floor`, in order. One `Arc<KeyValue>` per change is
//! shared by the index, the ring and the broadcast. It never touches SQLite
//! and its lock is only ever held for memory work.

use std::borrow::Borrow;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::ops::Bound;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use tokio::sync::broadcast;

use super::{Event, EventKind, KeyValue, Revision, StoreError};

/// One committed change.
#[derive(Clone, Debug)]
pub(super) struct Change {
    pub kind: EventKind,
    /// The new value; for a delete, the last value rewritten with the delete
    /// revision. `kv.mod_revision` is the change's revision.
    pub kv: Arc<KeyValue>,
    /// The key's previous live revision (0 if it did not exist).
    pub prev_revision: Revision,
}

impl Change {
    pub(super) fn revision(&self) -> Revision {
        self.kv.mod_revision
    }

    pub(super) fn to_event(&self) -> Event {
        Event {
            kind: self.kind,
            kv: KeyValue::clone(&self.kv),
            revision: self.kv.mod_revision,
        }
    }
}

pub(super) type Batch = Arc<[Change]>;

/// A live value, ordered and looked up by its key.
#[derive(Clone, Debug)]
pub(super) struct Entry(pub Arc<KeyValue>);

impl Borrow<str> for Entry {
    fn borrow(&self) -> &str {
        &self.0.key
    }
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.0.key == other.0.key
    }
}

impl Eq for Entry {}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Entry {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.key.cmp(&other.0.key)
    }
}

impl std::hash::Hash for Entry {
    // Must hash like the `str` it borrows as.
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.key.as_str().hash(state);
    }
}

pub(super) struct Cache {
    inner: RwLock<Inner>,
    head: AtomicI64,
    compact: AtomicI64,
    capacity: usize,
}

pub(super) struct Inner {
    pub index: BTreeSet<Entry>,
    pub ring: VecDeque<Change>,
    /// Every change with a revision above `floor` is in `ring`.
    pub floor: Revision,
    /// `None` once the store is closed.
    pub sender: Option<broadcast::Sender<Batch>>,
    pub head: Revision,
}

/// What the cache starts from, as loaded from the log.
pub(super) struct Loaded {
    pub index: BTreeSet<Entry>,
    /// The newest retained changes (at most the ring capacity), in order.
    pub ring: VecDeque<Change>,
    pub floor: Revision,
    pub head: Revision,
    pub compact: Revision,
}

impl Cache {
    pub(super) fn new(loaded: Loaded, capacity: usize) -> Self {
        let lanes = (capacity / 16).clamp(64, 4096);
        let (sender, _) = broadcast::channel(lanes);
        Cache {
            inner: RwLock::new(Inner {
                index: loaded.index,
                ring: loaded.ring,
                floor: loaded.floor,
                sender: Some(sender),
                head: loaded.head,
            }),
            head: AtomicI64::new(loaded.head),
            compact: AtomicI64::new(loaded.compact),
            capacity,
        }
    }

    // A panic while holding the lock cannot leave the maps half-updated in a
    // way that breaks ordering (publish only mutates after the commit), so
    // poisoning is not fatal.
    pub(super) fn read(&self) -> RwLockReadGuard<'_, Inner> {
        self.inner
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(super) fn head(&self) -> Revision {
        self.head.load(Ordering::Acquire)
    }

    pub(super) fn compact(&self) -> Revision {
        self.compact.load(Ordering::Acquire)
    }

    pub(super) fn set_compact(&self, revision: Revision) {
        self.compact.fetch_max(revision, Ordering::AcqRel);
    }

    pub(super) fn get(&self, key: &str) -> Option<Arc<KeyValue>> {
        self.read().index.get(key).map(|entry| Arc::clone(&entry.0))
    }

    /// Applies a committed batch (in revision order) and announces it.
    pub(super) fn publish(&self, changes: Vec<Change>, head: Revision) {
        let batch = Batch::from(changes);
        let mut inner = self.write();
        for change in batch.iter() {
            match change.kind {
                EventKind::Deleted => {
                    inner.index.remove(change.kv.key.as_str());
                }
                EventKind::Added | EventKind::Modified => {
                    inner.index.replace(Entry(Arc::clone(&change.kv)));
                }
            }
            inner.ring.push_back(change.clone());
        }
        while inner.ring.len() > self.capacity {
            if let Some(evicted) = inner.ring.pop_front() {
                inner.floor = evicted.revision();
            }
        }
        if inner.ring.is_empty() {
            inner.floor = inner.floor.max(head);
        }
        inner.head = inner.head.max(head);
        self.head.fetch_max(head, Ordering::AcqRel);
        if let Some(sender) = &inner.sender
            && !batch.is_empty()
        {
            // An error only means nobody is watching right now.
            let _ = sender.send(batch);
        }
    }

    /// Ends every watch stream (after they drained what was sent).
    pub(super) fn close(&self) {
        self.write().sender = None;
    }

    pub(super) fn is_closed(&self) -> bool {
        self.read().sender.is_none()
    }
}

impl Inner {
    /// Ring changes with a revision above `after`.
    pub(super) fn ring_after(&self, after: Revision) -> impl Iterator<Item = &Change> {
        let first = self
            .ring
            .partition_point(|change| change.revision() <= after);
        self.ring.range(first..)
    }

    /// Live values in `range`, in key order.
    pub(super) fn range<'a>(
        &'a self,
        range: &'a KeyRange,
    ) -> impl Iterator<Item = &'a Arc<KeyValue>> {
        let lower = if range.lower_exclusive {
            Bound::Excluded(range.lower.as_str())
        } else {
            Bound::Included(range.lower.as_str())
        };
        let upper = match &range.upper {
            Some(upper) => Bound::Excluded(upper.as_str()),
            None => Bound::Unbounded,
        };
        // An inverted range would make BTreeSet::range panic.
        (!range.is_empty())
            .then(|| self.index.range::<str, _>((lower, upper)))
            .into_iter()
            .flatten()
            .map(|entry| &entry.0)
    }
}

/// `[lower, upper)` key bounds for a prefix, optionally strictly after a key.
#[derive(Clone, Debug)]
pub(super) struct KeyRange {
    pub lower: String,
    pub lower_exclusive: bool,
    pub upper: Option<String>,
}

impl KeyRange {
    pub(super) fn new(prefix: &str, start_after: Option<&str>) -> Self {
        let (lower, upper) = prefix_range(prefix);
        match start_after {
            Some(after) if after >= lower.as_str() => KeyRange {
                lower: after.to_owned(),
                lower_exclusive: true,
                upper,
            },
            _ => KeyRange {
                lower,
                lower_exclusive: false,
                upper,
            },
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        match &self.upper {
            Some(upper) => self.lower.as_str() >= upper.as_str(),
            None => false,
        }
    }

    pub(super) fn contains(&self, key: &str) -> bool {
        let above = if self.lower_exclusive {
            key > self.lower.as_str()
        } else {
            key >= self.lower.as_str()
        };
        above && self.upper.as_deref().is_none_or(|upper| key < upper)
    }
}

/// The key range `[lower, upper)` that holds exactly the keys starting with
/// `prefix`; `upper` is `None` when no bound is needed.
///
/// UTF-8 byte order equals code point order, so bumping the last code point
/// gives the smallest string above every key with the prefix.
pub(super) fn prefix_range(prefix: &str) -> (String, Option<String>) {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let mut next = last as u32 + 1;
        if (0xD800..=0xDFFF).contains(&next) {
            next = 0xE000;
        }
        if let Some(bumped) = char::from_u32(next) {
            chars.push(bumped);
            return (prefix.to_owned(), Some(chars.into_iter().collect()));
        }
    }
    (prefix.to_owned(), None)
}

/// A page of a list at the head, taken under the read lock.
pub(super) struct HeadPage {
    pub items: Vec<Arc<KeyValue>>,
    pub revision: Revision,
    pub more: bool,
    pub remaining: i64,
}

pub(super) fn head_page(inner: &Inner, range: &KeyRange, limit: usize) -> HeadPage {
    let mut entries = inner.range(range);
    let take = if limit == 0 { usize::MAX } else { limit };
    let items: Vec<Arc<KeyValue>> = entries.by_ref().take(take).cloned().collect();
    let remaining = if limit == 0 { 0 } else { entries.count() };
    HeadPage {
        items,
        revision: inner.head,
        more: remaining > 0,
        remaining: i64::try_from(remaining).unwrap_or(i64::MAX),
    }
}

/// Where an item of a past-revision list gets its value.
pub(super) enum PastItem {
    /// Unchanged since the list revision: the live value.
    Live(Arc<KeyValue>),
    /// Changed since: the log row at this revision held its value then.
    Logged(Revision),
}

pub(super) struct PastPage {
    pub items: Vec<PastItem>,
    pub more: bool,
    pub remaining: i64,
}

/// Merges the live index (as of `inner.head`) with the first change after
/// the list revision of each changed key (`key -> (first revision, previous
/// revision)`) into the list as it was at that revision.
///
/// Changes after `inner.head` are ignored: the index does not reflect them.
pub(super) fn past_page(
    inner: &Inner,
    range: &KeyRange,
    limit: usize,
    changed: &BTreeMap<String, (Revision, Revision)>,
) -> PastPage {
    let head = inner.head;
    let mut live = inner.range(range).peekable();
    let mut undo = changed
        .iter()
        .filter(|(key, (first, _))| *first <= head && range.contains(key))
        .peekable();
    let mut items = Vec::new();
    let mut remaining: i64 = 0;
    loop {
        let next = match (live.peek(), undo.peek()) {
            (None, None) => break,
            (Some(_), None) => live.next().map(|kv| PastItem::Live(Arc::clone(kv))),
            (None, Some(_)) => undo.next().map(|(_, (_, prev))| PastItem::Logged(*prev)),
            (Some(kv), Some((undo_key, _))) => {
                if kv.key.as_str() < undo_key.as_str() {
                    live.next().map(|kv| PastItem::Live(Arc::clone(kv)))
                } else {
                    if kv.key.as_str() == undo_key.as_str() {
                        live.next();
                    }
                    undo.next().map(|(_, (_, prev))| PastItem::Logged(*prev))
                }
            }
        };
        match next {
            // Created after the list revision: it did not exist then.
            Some(PastItem::Logged(0)) => continue,
            None => break,
            Some(item) => {
                if limit != 0 && items.len() == limit {
                    remaining += 1;
                } else {
                    items.push(item);
                }
            }
        }
    }
    PastPage {
        items,
        more: remaining > 0,
        remaining,
    }
}

/// Checks where a watcher from `after` can start: `Ok(true)` if the ring
/// covers it, `Ok(false)` if history must come from the log first.
pub(super) fn check_watch_start(
    inner: &Inner,
    compact: Revision,
    after: Revision,
) -> Result<bool, StoreError> {
    if inner.sender.is_none() {
        return Err(StoreError::Closed);
    }
    if after < compact {
        return Err(StoreError::Compacted {
            requested: after,
            compacted: compact,
        });
    }
    Ok(inner.floor <= after)
}

#[cfg(test)]
mod tests {
    use super::prefix_range;

    #[test]
    fn prefix_range_bounds_exactly_the_prefixed_keys() {
        let cases = [
            ("/registry/pods/", Some("/registry/pods0")),
            ("", None),
            ("a", Some("b")),
            ("a\u{10FFFF}", Some("b")),
            ("\u{10FFFF}", None),
            ("x\u{D7FF}", Some("x\u{E000}")),
        ];
        for (prefix, upper) in cases {
            let (lower, got) = prefix_range(prefix);
            assert_eq!(lower, prefix);
            assert_eq!(got.as_deref(), upper, "prefix {prefix:?}");
        }
        let (lower, upper) = prefix_range("/registry/pods/");
        let upper = upper.unwrap();
        for key in [
            "/registry/pods/a",
            "/registry/pods/\u{10FFFF}",
            "/registry/pods/",
        ] {
            assert!(key >= lower.as_str() && key < upper.as_str(), "{key}");
        }
        for key in ["/registry/pods", "/registry/pods0", "/registry/podsx/"] {
            assert!(!(key >= lower.as_str() && key < upper.as_str()), "{key}");
        }
    }
}
