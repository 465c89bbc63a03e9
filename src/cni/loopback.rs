//! The `loopback` plugin: containerd's CRI always runs it (from the same bin
//! dir as ours) to bring `lo` up in every pod namespace.
//!
//! Invariant: DEL succeeds when the namespace is already gone.

use super::env::{CniEnv, Command};
use super::error::CniError;
use super::link;
use super::netns;

/// Runs one loopback command; returns the stdout document (if any).
pub fn run(env: &CniEnv, cni_version: &str) -> Result<Option<serde_json::Value>, CniError> {
    match env.command {
        Command::Add => {
            let ns = netns::open(&env.netns)?.ok_or_else(|| {
                CniError::netns(
                    format!("network namespace {} does not exist", env.netns),
                    "",
                )
            })?;
            netns::in_netns(&ns, async |h| link::loopback_up(&h).await)?;
            Ok(Some(super::result::loopback_result(
                cni_version,
                &env.netns,
            )))
        }
        Command::Del => {
            if let Some(ns) = netns::open(&env.netns)? {
                // a namespace being torn down may refuse this: nothing to undo then
                let _ = netns::in_netns(&ns, async |h| link::loopback_down(&h).await);
            }
            Ok(None)
        }
        Command::Check => {
            let ns = netns::open(&env.netns)?.ok_or_else(|| {
                CniError::CheckFailed(format!("network namespace {} is gone", env.netns))
            })?;
            netns::in_netns(&ns, async |h| match link::get(&h, "lo").await? {
                Some(lo) if lo.up => Ok(()),
                _ => Err(CniError::CheckFailed("lo is not up".into())),
            })?;
            Ok(None)
        }
        Command::Version | Command::Gc | Command::Status => Ok(None),
    }
}
