//! Runs the scripts of `nft` through the `nft` binary (`nft -f -`), under a
//! per-network lock so concurrent ADD/DEL never rebuild `hostports` from a
//! stale listing.
//!
//! Invariant: the lock (`<state dir>/nft.lock`, flock) is held from listing
//! the table to applying the script.

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::net::Ipv4Addr;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::fcntl::{Flock, FlockArg};

use super::config::NetConf;
use super::error::CniError;
use super::nft;

/// `nft` from PATH, else the usual sbin locations (the runtime may run us
/// with a minimal PATH).
fn nft_binary() -> PathBuf {
    let from_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    from_path
        .into_iter()
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|d| d.join("nft"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("nft"))
}

fn run_nft(args: &[&str], stdin: Option<&str>) -> Result<(bool, String, String), CniError> {
    let mut child = Command::new(nft_binary())
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| CniError::Nft(format!("cannot run nft: {e}")))?;
    if let (Some(script), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(script.as_bytes())
            .map_err(|e| CniError::Nft(format!("cannot write to nft: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| CniError::Nft(format!("cannot run nft: {e}")))?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

fn apply(script: &str) -> Result<(), CniError> {
    let (ok, _, stderr) = run_nft(&["-f", "-"], Some(script))?;
    if ok {
        Ok(())
    } else {
        Err(CniError::Nft(format!(
            "nft -f failed: {}\nscript:\n{script}",
            stderr.trim()
        )))
    }
}

/// The table's listing as JSON, or `None` when the table does not exist.
fn list_table(table: &str) -> Result<Option<String>, CniError> {
    let (ok, stdout, stderr) = run_nft(&["-j", "list", "table", "ip", table], None)?;
    if ok {
        Ok(Some(stdout))
    } else if stderr.contains("No such file or directory") {
        Ok(None)
    } else {
        Err(CniError::Nft(format!(
            "nft list table ip {table} failed: {}",
            stderr.trim()
        )))
    }
}

fn pod_chains(listing: Option<&str>) -> Result<BTreeSet<String>, CniError> {
    match listing {
        None => Ok(BTreeSet::new()),
        Some(l) => nft::pod_chains_from_json(l).map_err(CniError::Nft),
    }
}

fn with_lock<T>(dir: &Path, f: impl FnOnce() -> Result<T, CniError>) -> Result<T, CniError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| CniError::io(format!("cannot create {}", dir.display()), e))?;
    let path = dir.join("nft.lock");
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| CniError::io(format!("cannot open {}", path.display()), e))?;
    let _guard = Flock::lock(file, FlockArg::LockExclusive)
        .map_err(|(_, e)| CniError::io(format!("cannot lock {}", path.display()), e.into()))?;
    f()
}

/// Installs the base rules and the container's port mappings. Without
/// mappings, and with the base rules already as the config renders them,
/// nothing is applied (the common pod: one `nft` run instead of two).
pub fn add_container(
    conf: &NetConf,
    container_id: &str,
    ifname: &str,
    pod_ip: Ipv4Addr,
) -> Result<(), CniError> {
    with_lock(&conf.state_dir(), || {
        let listing = list_table(&nft::table_name(&conf.bridge))?;
        let existing = pod_chains(listing.as_deref())?;
        if conf.port_mappings.is_empty()
            && !existing.contains(&nft::pod_chain(container_id, ifname))
            && listing
                .as_deref()
                .is_some_and(|l| nft::base_in_place(l, conf, &existing))
        {
            return Ok(());
        }
        apply(&nft::render_add(
            conf,
            &existing,
            container_id,
            ifname,
            pod_ip,
        ))
    })
}

/// Removes the container's port mappings (nothing when it has none).
pub fn del_container(conf: &NetConf, container_id: &str, ifname: &str) -> Result<(), CniError> {
    let table = nft::table_name(&conf.bridge);
    // cheap exit without creating state for networks that never had rules
    let Some(listing) = list_table(&table)? else {
        return Ok(());
    };
    if !pod_chains(Some(&listing))?.contains(&nft::pod_chain(container_id, ifname)) {
        return Ok(());
    }
    with_lock(&conf.state_dir(), || {
        let listing = list_table(&table)?;
        let existing = pod_chains(listing.as_deref())?;
        match nft::render_del(conf, &existing, container_id, ifname) {
            Some(script) => apply(&script),
            None => Ok(()),
        }
    })
}

/// CHECK: the container's DNAT chain holds one rule per mapping.
pub fn check_container(conf: &NetConf, container_id: &str, ifname: &str) -> Result<(), CniError> {
    if conf.port_mappings.is_empty() {
        return Ok(());
    }
    let table = nft::table_name(&conf.bridge);
    let listing = list_table(&table)?
        .ok_or_else(|| CniError::CheckFailed(format!("nftables table ip {table} is missing")))?;
    let chain = nft::pod_chain(container_id, ifname);
    let n = nft::pod_rules_in_json(&listing, &chain);
    if n != conf.port_mappings.len() {
        return Err(CniError::CheckFailed(format!(
            "nftables chain {chain} has {n} port mapping rules, want {}",
            conf.port_mappings.len()
        )));
    }
    Ok(())
}
