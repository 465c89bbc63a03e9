//! Reads image tarballs (plain tar or gzip'd tar, recognised by content, not
//! by name) in two blocking passes: `scan` records every member (small JSON
//! documents kept in memory, other members hashed when their digest is not
//! their name), `stream` sends chosen members to an async consumer in
//! chunks. Memory stays bounded whatever the size of the layers.
//!
//! Runs on blocking threads (`spawn_blocking`); never touches containerd.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use super::oci::{Compression, Scan, ScannedEntry, clean_path, digest_from_blob_path};

/// Largest member kept in memory as a JSON document (manifests, configs).
const JSON_LIMIT: u64 = 4 << 20;
/// Size of the pieces a member is streamed in.
pub const CHUNK: usize = 1 << 20;

/// A piece of the second pass.
pub enum Piece {
    /// The next member starts; `member` as named in the plan.
    Begin {
        member: String,
    },
    Data(Vec<u8>),
    End,
}

fn open(path: &Path) -> Result<Box<dyn Read>, String> {
    let mut file = File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    let mut magic = [0u8; 2];
    let n = file
        .read(&mut magic)
        .map_err(|e| format!("cannot read: {e}"))?;
    let file = File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    let reader = BufReader::with_capacity(256 << 10, file);
    if n == 2 && magic == [0x1f, 0x8b] {
        Ok(Box::new(flate2::read::MultiGzDecoder::new(reader)))
    } else {
        Ok(Box::new(reader))
    }
}

/// Resolves a link member's target relative to the link's directory.
fn resolve_link(link_path: &str, target: &str) -> String {
    let mut parts: Vec<&str> = if target.starts_with('/') {
        Vec::new()
    } else {
        link_path.split('/').collect()
    };
    if !target.starts_with('/') {
        parts.pop();
    }
    for c in target.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    parts.join("/")
}

/// First pass: every regular member (and links to them) by cleaned path.
pub fn scan(path: &Path) -> Result<Scan, String> {
    let mut archive = tar::Archive::new(open(path)?);
    let mut scan = Scan::new();
    let mut links: Vec<(String, String)> = Vec::new();
    let entries = archive
        .entries()
        .map_err(|e| format!("not a tar archive: {e}"))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| format!("corrupt tar archive: {e}"))?;
        let name = clean_path(&String::from_utf8_lossy(&entry.path_bytes()));
        let kind = entry.header().entry_type();
        if kind.is_symlink() || kind.is_hard_link() {
            if let Ok(Some(target)) = entry.link_name() {
                let target = target.to_string_lossy().into_owned();
                let target = if kind.is_hard_link() {
                    clean_path(&target)
                } else {
                    resolve_link(&name, &target)
                };
                links.push((name, target));
            }
            continue;
        }
        if !kind.is_file() {
            continue;
        }
        let size = entry.size();
        let named_digest = digest_from_blob_path(&name);
        let mut scanned = ScannedEntry {
            size,
            ..Default::default()
        };
        if size <= JSON_LIMIT {
            let mut buf = Vec::with_capacity(size as usize);
            entry
                .read_to_end(&mut buf)
                .map_err(|e| format!("{name}: corrupt tar archive: {e}"))?;
            scanned.compression = Compression::sniff(&buf);
            scanned.digest = named_digest.unwrap_or_else(|| super::oci::sha256_digest(&buf));
            let first = buf.iter().find(|b| !b.is_ascii_whitespace());
            if matches!(first, Some(b'{') | Some(b'[')) {
                scanned.data = Some(buf);
            }
        } else {
            let mut hasher = named_digest.is_none().then(Sha256::new);
            let mut buf = vec![0u8; CHUNK];
            let mut first = true;
            loop {
                let n = entry
                    .read(&mut buf)
                    .map_err(|e| format!("{name}: corrupt tar archive: {e}"))?;
                if n == 0 {
                    break;
                }
                if first {
                    scanned.compression = Compression::sniff(&buf[..n]);
                    first = false;
                    if hasher.is_none() {
                        // The name is the digest: no need to read on here;
                        // the tar reader skips the rest of the member.
                        break;
                    }
                }
                if let Some(h) = hasher.as_mut() {
                    h.update(&buf[..n]);
                }
            }
            scanned.digest = match (named_digest, hasher) {
                (Some(d), _) => d,
                (None, Some(h)) => format!("sha256:{}", hex::encode(h.finalize())),
                (None, None) => String::new(),
            };
        }
        scan.insert(name, scanned);
    }
    for (link, target) in links {
        if let Some(t) = scan.get(&target).cloned() {
            let link_to = if t.link_to.is_empty() {
                target
            } else {
                t.link_to.clone()
            };
            scan.insert(link, ScannedEntry { link_to, ..t });
        }
    }
    Ok(scan)
}

/// Second pass: sends each wanted member (by cleaned path) as
/// `Begin, Data…, End`. Stops early when the consumer hangs up.
pub fn stream(
    path: &Path,
    wanted: &BTreeMap<String, u64>,
    tx: &mpsc::Sender<Piece>,
) -> Result<(), String> {
    let mut archive = tar::Archive::new(open(path)?);
    let mut remaining = wanted.clone();
    let entries = archive
        .entries()
        .map_err(|e| format!("not a tar archive: {e}"))?;
    for entry in entries {
        if remaining.is_empty() {
            break;
        }
        let mut entry = entry.map_err(|e| format!("corrupt tar archive: {e}"))?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = clean_path(&String::from_utf8_lossy(&entry.path_bytes()));
        if remaining.remove(&name).is_none() {
            continue;
        }
        if tx
            .blocking_send(Piece::Begin {
                member: name.clone(),
            })
            .is_err()
        {
            return Ok(());
        }
        loop {
            let mut buf = vec![0u8; CHUNK];
            let mut filled = 0;
            while filled < CHUNK {
                let n = entry
                    .read(&mut buf[filled..])
                    .map_err(|e| format!("{name}: corrupt tar archive: {e}"))?;
                if n == 0 {
                    break;
                }
                filled += n;
            }
            if filled == 0 {
                break;
            }
            buf.truncate(filled);
            if tx.blocking_send(Piece::Data(buf)).is_err() {
                return Ok(());
            }
        }
        if tx.blocking_send(Piece::End).is_err() {
            return Ok(());
        }
    }
    if let Some((missing, _)) = remaining.into_iter().next() {
        return Err(format!(
            "{missing} vanished between two reads of the tarball"
        ));
    }
    Ok(())
}

/// Image tarballs in a directory, sorted: `*.tar`, `*.tar.gz`, `*.tgz`.
pub fn list(dir: &Path) -> Result<Vec<PathBuf>, std::io::Error> {
    let mut out = Vec::new();
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for entry in rd {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_tarball = [".tar", ".tar.gz", ".tgz"]
            .iter()
            .any(|ext| name.ends_with(ext));
        if is_tarball && !name.starts_with('.') && entry.file_type()?.is_file() {
            out.push(entry.path());
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_resolve_relative_to_their_directory() {
        let cases = [
            ("a/layer.tar", "../b/layer.tar", "b/layer.tar"),
            ("a/layer.tar", "layer2.tar", "a/layer2.tar"),
            ("layer.tar", "/x/y", "x/y"),
            ("a/b/c", "./../d", "a/d"),
        ];
        for (link, target, want) in cases {
            assert_eq!(resolve_link(link, target), want, "{link} -> {target}");
        }
    }
}
