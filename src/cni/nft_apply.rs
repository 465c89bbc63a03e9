//! Runs the scripts of `nft` through the `nft` binary (`nft -f -`), under a
//! per-network lock so concurrent ADD/DEL never rebuild `hostports` from a
//! stale listing.
//!
//! Invariants: the lock (`<state dir>/nft.lock`, flock) is held from listing
//! the table to applying the script. A listing is reused only while the
//! kernel's ruleset generation (`nftgen`) on the same boot is the one it
//! was taken at (`<state dir>/nft.seen`, written under the lock, replaced
//! atomically), so the common ADD and DEL run no `nft` process at all while
//! nobody changes nftables, and any change anywhere forces a fresh listing.

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::net::Ipv4Addr;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use super::config::NetConf;
use super::error::CniError;
use super::nft;
use super::nftgen;

const SEEN_FILE: &str = "nft.seen";

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

/// What one listing of the network's table showed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct TableView {
    /// Pod chains (`hp_*`) in the table.
    chains: BTreeSet<String>,
    /// Base chains exactly as the config (its `stamp`) renders them.
    base_in_place: bool,
}

/// A listing together with the ruleset generation it was taken at.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Seen {
    boot: String,
    generation: u32,
    table: String,
    stamp: String,
    view: TableView,
}

fn boot_id() -> String {
    fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn load_seen(dir: &Path) -> Option<Seen> {
    serde_json::from_slice(&fs::read(dir.join(SEEN_FILE)).ok()?).ok()
}

/// Best effort: a lost or stale file only costs the next run a listing.
fn store_seen(dir: &Path, seen: &Seen) {
    let tmp = dir.join(format!(".{SEEN_FILE}.{}", std::process::id()));
    let ok = serde_json::to_vec(seen).ok().is_some_and(|b| {
        fs::write(&tmp, b).is_ok() && fs::rename(&tmp, dir.join(SEEN_FILE)).is_ok()
    });
    if !ok {
        let _ = fs::remove_file(&tmp);
    }
}

/// The saved view when nothing in nftables changed since it was taken.
fn unchanged_view(
    dir: &Path,
    table: &str,
    stamp: &str,
    generation: Option<u32>,
) -> Option<TableView> {
    let seen = load_seen(dir)?;
    (Some(seen.generation) == generation
        && seen.table == table
        && seen.stamp == stamp
        && seen.boot == boot_id())
    .then_some(seen.view)
}

/// The table as it is now: from the saved view when the generation is
/// unchanged, else from `nft -j list` (saved when no change raced it).
/// Call under the lock.
fn observe(conf: &NetConf) -> Result<TableView, CniError> {
    let dir = conf.state_dir();
    let table = nft::table_name(&conf.bridge);
    let stamp = nft::base_stamp(conf);
    let generation = nftgen::current().ok();
    if let Some(view) = unchanged_view(&dir, &table, &stamp, generation) {
        return Ok(view);
    }
    let listing = list_table(&table)?;
    let chains = pod_chains(listing.as_deref())?;
    let view = TableView {
        base_in_place: listing
            .as_deref()
            .is_some_and(|l| nft::base_in_place(l, conf, &chains)),
        chains,
    };
    if let Some(g) = generation
        && nftgen::current().ok() == Some(g)
    {
        let seen = Seen {
            boot: boot_id(),
            generation: g,
            table,
            stamp,
            view: view.clone(),
        };
        store_seen(&dir, &seen);
    }
    Ok(view)
}

/// Installs the base rules and the container's port mappings. Without
/// mappings, and with the base rules already as the config renders them,
/// nothing is applied (the common pod: no `nft` run at all once a listing
/// is known current).
pub fn add_container(
    conf: &NetConf,
    container_id: &str,
    ifname: &str,
    pod_ip: Ipv4Addr,
) -> Result<(), CniError> {
    with_lock(&conf.state_dir(), || {
        let view = observe(conf)?;
        if conf.port_mappings.is_empty()
            && !view.chains.contains(&nft::pod_chain(container_id, ifname))
            && view.base_in_place
        {
            return Ok(());
        }
        apply(&nft::render_add(
            conf,
            &view.chains,
            container_id,
            ifname,
            pod_ip,
        ))
    })
}

/// Removes the container's port mappings (nothing when it has none).
pub fn del_container(conf: &NetConf, container_id: &str, ifname: &str) -> Result<(), CniError> {
    let dir = conf.state_dir();
    let table = nft::table_name(&conf.bridge);
    let chain = nft::pod_chain(container_id, ifname);
    // cheap exits, without creating state for networks that never had rules:
    // a current saved view, else a listing, without the chain
    let generation = nftgen::current().ok();
    if let Some(view) = unchanged_view(&dir, &table, &nft::base_stamp(conf), generation)
        && !view.chains.contains(&chain)
    {
        return Ok(());
    }
    let Some(listing) = list_table(&table)? else {
        return Ok(());
    };
    if !pod_chains(Some(&listing))?.contains(&chain) {
        return Ok(());
    }
    with_lock(&dir, || {
        let view = observe(conf)?;
        match nft::render_del(conf, &view.chains, container_id, ifname) {
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
