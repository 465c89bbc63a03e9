//! Watch streams: "events under prefix P after revision R, forever", served
//! from the cache's ring and broadcast, reading the backend's log only for
//! the part of history the ring no longer holds.
//!
//! Invariants: a watcher is registered (subscribed and its backlog copied)
//! under the cache's read lock, which `publish` needs exclusively, so it sees
//! every later event exactly once; it yields events in revision order and
//! tracks the last revision yielded, so a resubscription never repeats or
//! skips one; history missing from the ring is read from the log once, at
//! registration ([`HistorySource`]); a watcher that falls behind the
//! broadcast is resumed from the ring or, if the ring moved past it, gets one
//! `Compacted` error and its stream ends (the client re-lists). It never
//! reads SQLite itself.

use std::collections::VecDeque;
use std::sync::Arc;

use futures::future::BoxFuture;
use tokio::sync::broadcast;

use super::cache::{Batch, Cache, Inner, check_watch_start};
use super::{Event, Revision, StoreError, WatchStream};

/// How many events one history read returns at most.
const HISTORY_PAGE: usize = 512;

/// Reads retained history from the backend's log.
pub(super) trait HistorySource: Send + Sync + 'static {
    /// Events under `prefix` with `after < revision <= until`, in revision
    /// order, at most `limit`. `Compacted` if history after `after` is gone.
    fn events(
        &self,
        prefix: String,
        after: Revision,
        until: Revision,
        limit: usize,
    ) -> BoxFuture<'static, Result<Vec<Event>, StoreError>>;
}

/// Where a watcher starts.
struct Start {
    backlog: VecDeque<Event>,
    rx: broadcast::Receiver<Batch>,
    /// `Some(head)` when `(after, head]` must first be read from the log.
    history_until: Option<Revision>,
}

fn backlog(inner: &Inner, prefix: &str, after: Revision) -> VecDeque<Event> {
    inner
        .ring_after(after)
        .filter(|change| change.kv.key.starts_with(prefix))
        .map(|change| change.to_event())
        .collect()
}

fn start(cache: &Cache, prefix: &str, after: Revision) -> Result<Start, StoreError> {
    let inner = cache.read();
    let from_ring = check_watch_start(&inner, cache.compact(), after)?;
    let Some(sender) = &inner.sender else {
        return Err(StoreError::Closed);
    };
    let rx = sender.subscribe();
    if from_ring {
        Ok(Start {
            backlog: backlog(&inner, prefix, after),
            rx,
            history_until: None,
        })
    } else {
        Ok(Start {
            backlog: VecDeque::new(),
            rx,
            history_until: Some(inner.head),
        })
    }
}

/// Like `start`, for a live watcher that lagged: only the ring may fill the
/// gap (reading the log again for a consumer that cannot keep up would only
/// make it fall further behind).
fn resume(cache: &Cache, prefix: &str, after: Revision) -> Result<Start, StoreError> {
    let inner = cache.read();
    let Some(sender) = &inner.sender else {
        return Err(StoreError::Closed);
    };
    if inner.floor > after {
        return Err(StoreError::Compacted {
            requested: after,
            compacted: inner.floor,
        });
    }
    Ok(Start {
        backlog: backlog(&inner, prefix, after),
        rx: sender.subscribe(),
        history_until: None,
    })
}

/// Opens a watch on `cache`, reading from `history` what the ring lacks.
pub(super) fn watch(
    cache: &Arc<Cache>,
    history: Arc<dyn HistorySource>,
    prefix: &str,
    after: Revision,
) -> Result<WatchStream, StoreError> {
    let start = start(cache, prefix, after)?;
    let state = Watcher {
        prefix: prefix.to_owned(),
        cursor: after,
        pending: start.backlog,
        history_until: start.history_until,
        rx: start.rx,
        cache: Arc::clone(cache),
        history,
        done: false,
    };
    Ok(Box::pin(futures::stream::unfold(
        state,
        |mut state| async move {
            let item = state.next().await?;
            Some((item, state))
        },
    )))
}

struct Watcher {
    prefix: String,
    /// Every matching event up to here was yielded (or was not there).
    cursor: Revision,
    pending: VecDeque<Event>,
    history_until: Option<Revision>,
    rx: broadcast::Receiver<Batch>,
    cache: Arc<Cache>,
    history: Arc<dyn HistorySource>,
    done: bool,
}

impl Watcher {
    async fn next(&mut self) -> Option<Result<Event, StoreError>> {
        if self.done {
            return None;
        }
        loop {
            if let Some(event) = self.pending.pop_front() {
                self.cursor = event.revision;
                return Some(Ok(event));
            }
            if let Some(until) = self.history_until {
                if self.cursor >= until {
                    self.history_until = None;
                    continue;
                }
                let read = self
                    .history
                    .events(self.prefix.clone(), self.cursor, until, HISTORY_PAGE)
                    .await;
                match read {
                    Ok(events) => {
                        if events.len() < HISTORY_PAGE {
                            // Nothing more under the prefix up to `until`.
                            self.history_until = None;
                            if events.is_empty() {
                                self.cursor = until;
                            }
                        }
                        self.pending.extend(events);
                        continue;
                    }
                    Err(err) => return Some(self.fail(err)),
                }
            }
            match self.rx.recv().await {
                Ok(batch) => {
                    let cursor = self.cursor;
                    self.pending.extend(
                        batch
                            .iter()
                            .filter(|c| c.revision() > cursor && c.kv.key.starts_with(&self.prefix))
                            .map(|c| c.to_event()),
                    );
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::debug!(prefix = %self.prefix, missed, "watcher lagged, resuming from the ring");
                    match resume(&self.cache, &self.prefix, self.cursor) {
                        Ok(start) => {
                            self.rx = start.rx;
                            self.pending = start.backlog;
                        }
                        Err(err) => return Some(self.fail(err)),
                    }
                }
                Err(broadcast::error::RecvError::Closed) => {
                    return Some(self.fail(StoreError::Closed));
                }
            }
        }
    }

    fn fail(&mut self, err: StoreError) -> Result<Event, StoreError> {
        self.done = true;
        Err(err)
    }
}
