//! Running netlink work in the host or in a pod's network namespace.
//!
//! Namespace work happens on a dedicated scoped thread that `setns`es into
//! the namespace and then opens its netlink socket, so the socket belongs to
//! that namespace; the thread ends with the work, so no thread of the
//! process is ever left in a foreign namespace. Each piece of work gets a
//! small current-thread tokio runtime (rtnetlink is async).

use std::fs::File;
use std::io::ErrorKind;

use nix::sched::{CloneFlags, setns};
use rtnetlink::Handle;

use super::error::CniError;

/// Opens a netns path; `Ok(None)` when it does not exist (any more).
pub fn open(path: &str) -> Result<Option<File>, CniError> {
    if path.is_empty() {
        return Ok(None);
    }
    match File::open(path) {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(CniError::io(
            format!("cannot open network namespace {path}"),
            e,
        )),
    }
}

/// Runs `f` with a netlink handle of the current (host) namespace.
pub fn in_host<T>(f: impl AsyncFnOnce(Handle) -> Result<T, CniError>) -> Result<T, CniError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(|e| CniError::io("cannot start an async runtime", e))?;
    rt.block_on(async move {
        let (conn, handle, _) = rtnetlink::new_connection()
            .map_err(|e| CniError::io("cannot open a netlink socket", e))?;
        let task = tokio::spawn(conn);
        let out = f(handle).await;
        task.abort();
        out
    })
}

/// Runs `f` inside the network namespace `ns` (on a thread of its own).
pub fn in_netns<T: Send>(
    ns: &File,
    f: impl AsyncFnOnce(Handle) -> Result<T, CniError> + Send,
) -> Result<T, CniError> {
    std::thread::scope(|s| {
        s.spawn(move || {
            setns(ns, CloneFlags::CLONE_NEWNET)
                .map_err(|e| CniError::netns("cannot enter the network namespace", e))?;
            in_host(f)
        })
        .join()
        .unwrap_or_else(|_| Err(CniError::netns("netns worker thread", "panicked")))
    })
}
