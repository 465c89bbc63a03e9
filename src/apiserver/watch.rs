//! Watch: streams newline-delimited JSON watch events from the store's watch
//! cache, with initial state (`resourceVersion` unset/"0",
//! `sendInitialEvents`), bookmarks, selectors, Table output and timeouts.
//!
//! Invariant: events are delivered in revision order with no gaps; a
//! watcher that cannot be served from history gets a 410 `ERROR` event.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::body::Bytes;
use axum::response::Response;
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::AppState;
use super::error::{ApiError, ApiResult};
use super::handlers::{Query, stream_response};
use super::negotiate::{self, Output};
use super::registry::ListOptions;
use crate::api::kinds::Resource;
use crate::store::{EventKind, KeyValue, Revision, StoreError};

struct Watcher {
    res: Arc<Resource>,
    opts: ListOptions,
    out: Output,
    filtering: bool,
    app: Arc<AppState>,
}

impl Watcher {
    /// Encode one event line (None when the object does not match).
    /// Unfiltered JSON watches share one encoded line per store event
    /// (`revision` given): the first watcher encodes, the others clone it.
    fn encode(&self, kind: &str, kv: &KeyValue, revision: Option<Revision>) -> Option<Bytes> {
        let raw_ok = !self.filtering
            && self.out == Output::Json
            && self.res.version == self.res.storage_version;
        if raw_ok {
            let build = || {
                let mut buf = Vec::with_capacity(kv.value.len() + 32);
                buf.extend_from_slice(b"{\"type\":\"");
                buf.extend_from_slice(kind.as_bytes());
                buf.extend_from_slice(b"\",\"object\":");
                buf.extend_from_slice(&kv.value);
                buf.extend_from_slice(b"}\n");
                Bytes::from(buf)
            };
            return Some(match revision {
                Some(rev) => self.app.watch_lines.get_or_insert(rev, build),
                None => build(),
            });
        }
        let obj = self.app.registry.decode(&self.res, kv).ok()?;
        if self.filtering && !(self.opts.label.matches(&obj) && self.opts.field.matches(&obj)) {
            return None;
        }
        let rendered = negotiate::render(&self.res, obj, self.out);
        Some(line(kind, &rendered))
    }

    /// A store event for a watcher with selectors: the event type follows
    /// whether the object matched before and matches now.
    fn encode_filtered(
        &self,
        kind: EventKind,
        kv: &KeyValue,
        matching: &mut HashSet<String>,
    ) -> Option<Bytes> {
        let obj = self.app.registry.decode(&self.res, kv).ok()?;
        let now = kind != EventKind::Deleted
            && self.opts.label.matches(&obj)
            && self.opts.field.matches(&obj);
        let was = matching.contains(&kv.key);
        let event = selector_transition(now, was)?;
        if now {
            matching.insert(kv.key.clone());
        } else {
            matching.remove(&kv.key);
        }
        Some(line(event, &negotiate::render(&self.res, obj, self.out)))
    }

    fn bookmark(&self, rev: Revision, initial_end: bool) -> Bytes {
        let mut meta = json!({ "resourceVersion": rev.to_string() });
        if initial_end {
            meta["annotations"] = json!({ "k8s.io/initial-events-end": "true" });
        }
        let obj = json!({
            "kind": self.res.kind,
            "apiVersion": self.res.api_version(),
            "metadata": meta,
        });
        line("BOOKMARK", &obj)
    }
}

/// The most recent encoded watch lines, by store revision, shared by every
/// unfiltered JSON watcher so an event is encoded once, not once per watcher.
#[derive(Default)]
pub struct LineCache {
    lines: std::sync::Mutex<std::collections::VecDeque<(Revision, Bytes)>>,
}

impl LineCache {
    const CAPACITY: usize = 256;

    pub fn get_or_insert(&self, rev: Revision, build: impl FnOnce() -> Bytes) -> Bytes {
        let mut lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, b)) = lines.iter().rev().find(|(r, _)| *r == rev) {
            return b.clone();
        }
        let b = build();
        lines.push_back((rev, b.clone()));
        if lines.len() > Self::CAPACITY {
            lines.pop_front();
        }
        b
    }
}

/// The event a selector-filtered watcher sees, from whether the object
/// matched before and matches after the change (None: nothing to send).
fn selector_transition(now: bool, was: bool) -> Option<&'static str> {
    match (now, was) {
        (true, true) => Some("MODIFIED"),
        (true, false) => Some("ADDED"),
        (false, true) => Some("DELETED"),
        (false, false) => None,
    }
}

fn line(kind: &str, obj: &Value) -> Bytes {
    let mut v = serde_json::to_vec(&json!({ "type": kind, "object": obj })).unwrap_or_default();
    v.push(b'\n');
    Bytes::from(v)
}

fn error_line(e: &ApiError) -> Bytes {
    line("ERROR", &e.status_json())
}

struct WatchGuard(Arc<AppState>);
impl Drop for WatchGuard {
    fn drop(&mut self) {
        self.0.metrics.watchers.fetch_sub(1, Ordering::Relaxed);
    }
}

pub async fn serve(
    app: &Arc<AppState>,
    res: &Arc<Resource>,
    ns: Option<&str>,
    q: &Query,
    opts: ListOptions,
    out: Output,
) -> ApiResult<Response> {
    let bookmarks = matches!(
        q.get("allowWatchBookmarks").map(String::as_str),
        Some("true") | Some("1")
    );
    let send_initial = match q.get("sendInitialEvents").map(String::as_str) {
        Some("true") | Some("1") => Some(true),
        Some("false") | Some("0") => Some(false),
        _ => None,
    };
    if send_initial.is_some() && opts.resource_version_match.as_deref() != Some("NotOlderThan") {
        return Err(ApiError::unprocessable(
            "ListOptions.meta.k8s.io \"\" is invalid: resourceVersionMatch: Forbidden: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
        ));
    }
    if send_initial == Some(true) && !bookmarks {
        return Err(ApiError::unprocessable(
            "ListOptions.meta.k8s.io \"\" is invalid: allowWatchBookmarks: Forbidden: sendInitialEvents requires setting allowWatchBookmarks to true",
        ));
    }
    let timeout = match q.get("timeoutSeconds") {
        Some(t) => Duration::from_secs(
            t.parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("invalid timeoutSeconds: {t:?}")))?,
        ),
        None => Duration::from_secs(1800 + rand::random::<u64>() % 1800),
    };
    let rv = opts.resource_version.clone().unwrap_or_default();
    let initial_state = match send_initial {
        Some(b) => b,
        None => rv.is_empty() || rv == "0",
    };
    let start_rev: Option<Revision> = if initial_state || rv.is_empty() || rv == "0" {
        None
    } else {
        Some(
            rv.parse()
                .map_err(|_| ApiError::bad_request(format!("invalid resource version \"{rv}\"")))?,
        )
    };
    let prefix = match opts.field.exact_name() {
        Some(name) if !name.is_empty() => res.key(ns, name),
        _ => res.list_prefix(ns),
    };
    let exact_key = prefix != res.list_prefix(ns);
    let watcher = Watcher {
        res: res.clone(),
        filtering: !opts.label.is_empty() || !opts.field.is_empty(),
        opts: opts.clone(),
        out,
        app: app.clone(),
    };
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(256);
    app.metrics.watchers.fetch_add(1, Ordering::Relaxed);
    let guard = WatchGuard(app.clone());
    let app2 = app.clone();
    let ns_owned = ns.map(String::from);
    tokio::spawn(async move {
        let _guard = guard;
        let w = watcher;
        let mut after = start_rev.unwrap_or(0);
        // keys whose last state matched the selectors: lets an object that
        // stops (or starts) matching turn into DELETED (or ADDED), like upstream
        let mut matching: HashSet<String> = HashSet::new();
        if let (true, Some(rev)) = (w.filtering, start_rev) {
            let mut at = w.opts.clone();
            at.limit = 0;
            at.continue_token = None;
            at.resource_version = Some(rev.to_string());
            at.resource_version_match = Some("Exact".into());
            match app2.registry.list(&w.res, ns_owned.as_deref(), &at).await {
                Ok(listed) => matching.extend(listed.items.into_iter().map(|kv| kv.key)),
                Err(e) => {
                    let _ = tx.send(Ok(error_line(&e))).await;
                    return;
                }
            }
        }
        if initial_state || start_rev.is_none() {
            let mut list_opts = w.opts.clone();
            list_opts.limit = 0;
            list_opts.continue_token = None;
            list_opts.resource_version = None;
            list_opts.resource_version_match = None;
            match app2
                .registry
                .list(&w.res, ns_owned.as_deref(), &list_opts)
                .await
            {
                Ok(listed) => {
                    after = listed.revision;
                    if w.filtering {
                        matching.extend(listed.items.iter().map(|kv| kv.key.clone()));
                    }
                    if initial_state {
                        for kv in &listed.items {
                            if exact_key && kv.key != prefix {
                                continue;
                            }
                            if let Some(b) = w.encode("ADDED", kv, None)
                                && tx.send(Ok(b)).await.is_err()
                            {
                                return;
                            }
                        }
                    }
                    if send_initial == Some(true) {
                        let _ = tx.send(Ok(w.bookmark(after, true))).await;
                    }
                }
                Err(e) => {
                    let _ = tx.send(Ok(error_line(&e))).await;
                    return;
                }
            }
        }
        let stream = match app2.registry.store.watch(&prefix, after) {
            Ok(s) => s,
            Err(StoreError::Compacted {
                requested,
                compacted,
            }) => {
                let e = ApiError::gone(format!(
                    "too old resource version: {requested} ({compacted})"
                ));
                let _ = tx.send(Ok(error_line(&e))).await;
                return;
            }
            Err(e) => {
                let _ = tx
                    .send(Ok(error_line(&ApiError::internal(e.to_string()))))
                    .await;
                return;
            }
        };
        let mut stream = stream;
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut tick = tokio::time::interval(Duration::from_secs(if cfg!(test) { 1 } else { 10 }));
        tick.tick().await;
        let mut last_rev = after;
        loop {
            tokio::select! {
                _ = &mut deadline => return,
                _ = tx.closed() => return,
                _ = tick.tick(), if bookmarks => {
                    let rev = last_rev;
                    if tx.send(Ok(w.bookmark(rev, false))).await.is_err() { return; }
                }
                ev = stream.next() => {
                    let Some(ev) = ev else { return };
                    match ev {
                        Ok(ev) => {
                            last_rev = ev.revision;
                            if exact_key && ev.kv.key != prefix {
                                continue;
                            }
                            let line = if w.filtering {
                                w.encode_filtered(ev.kind, &ev.kv, &mut matching)
                            } else {
                                let kind = match ev.kind {
                                    EventKind::Added => "ADDED",
                                    EventKind::Modified => "MODIFIED",
                                    EventKind::Deleted => "DELETED",
                                };
                                w.encode(kind, &ev.kv, Some(ev.revision))
                            };
                            if let Some(b) = line
                                && tx.send(Ok(b)).await.is_err() { return; }
                        }
                        Err(StoreError::Compacted { requested, compacted }) => {
                            let e = ApiError::gone(format!("too old resource version: {requested} ({compacted})"));
                            let _ = tx.send(Ok(error_line(&e))).await;
                            return;
                        }
                        Err(e) => {
                            let _ = tx.send(Ok(error_line(&ApiError::gone(format!("watch ended: {e}"))))).await;
                            return;
                        }
                    }
                }
            }
        }
    });
    Ok(stream_response(
        tokio_stream::wrappers::ReceiverStream::new(rx),
    ))
}

#[cfg(test)]
mod tests {
    use super::selector_transition;

    #[test]
    fn transitions() {
        assert_eq!(selector_transition(true, false), Some("ADDED"));
        assert_eq!(selector_transition(true, true), Some("MODIFIED"));
        assert_eq!(selector_transition(false, true), Some("DELETED"));
        assert_eq!(selector_transition(false, false), None);
    }
}
