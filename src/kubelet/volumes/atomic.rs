//! Atomic writer for API-data volumes (configMap, secret, downwardAPI,
//! projected), with the directory scheme upstream uses and containers rely
//! on:
//!
//! ```text
//! <vol>/..2024_05_01_10_00_00.123456789/<files>   one generation of data
//! <vol>/..data -> ..2024_05_01_10_00_00.123456789
//! <vol>/<top-level name> -> ..data/<top-level name>
//! ```
//!
//! An update writes a new generation, then swaps `..data` with one
//! `rename`, so a reader sees either the old or the new set, never a mix.
//! A container that mounted one file via `subPath` keeps the generation it
//! resolved (as upstream: subPath mounts do not see updates).
//!
//! Invariants: only names starting with `..` are bookkeeping; user-visible
//! entries are symlinks into `..data`; nothing outside `<vol>` is touched
//! and no symlink is followed when cleaning up.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt, symlink};
use std::path::Path;

use super::plan::{FileProjection, Payload, check_payload_path};

const DATA_LINK: &str = "..data";
const DATA_TMP_LINK: &str = "..data_tmp";

/// Write `payload` into `dir`; true when something changed.
pub fn write(
    dir: &Path,
    payload: &Payload,
    now: chrono::DateTime<chrono::Utc>,
) -> io::Result<bool> {
    for p in payload.keys() {
        check_payload_path(p).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    }
    mkdir(dir, 0o755)?;
    let current = fs::read_link(dir.join(DATA_LINK))
        .ok()
        .and_then(|t| t.to_str().map(String::from))
        .filter(|t| t.starts_with("..") && !t.contains('/'));
    let unchanged = match &current {
        Some(gen_name) => read_generation(&dir.join(gen_name)).ok().as_ref() == Some(payload),
        None => false,
    };
    let mut changed = false;
    let live = if unchanged {
        current.clone().unwrap_or_default()
    } else {
        let gen_name = new_generation(dir, now)?;
        let gen_dir = dir.join(&gen_name);
        for (rel, file) in payload {
            let target = gen_dir.join(rel);
            if let Some(parent) = target.parent() {
                mkdir_all(&gen_dir, parent)?;
            }
            fs::write(&target, &file.data)?;
            fs::set_permissions(&target, fs::Permissions::from_mode(file.mode))?;
        }
        let tmp = dir.join(DATA_TMP_LINK);
        match fs::remove_file(&tmp) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        symlink(&gen_name, &tmp)?;
        fs::rename(&tmp, dir.join(DATA_LINK))?;
        changed = true;
        gen_name
    };
    // user-visible names: one symlink per top-level element
    let wanted: BTreeSet<&str> = payload.keys().filter_map(|p| p.split('/').next()).collect();
    for name in &wanted {
        let link = dir.join(name);
        let target = format!("{DATA_LINK}/{name}");
        match fs::read_link(&link) {
            Ok(t) if t.as_os_str() == target.as_str() => {}
            Ok(_) => {
                fs::remove_file(&link)?;
                symlink(&target, &link)?;
                changed = true;
            }
            Err(_) => {
                if fs::symlink_metadata(&link).is_ok() {
                    // a real file or directory where a link belongs: only
                    // ever left by something else; replace it safely
                    remove_entry(&link)?;
                }
                symlink(&target, &link)?;
                changed = true;
            }
        }
    }
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with("..") {
            if name != DATA_LINK && name != live {
                remove_entry(&entry.path())?;
            }
            continue;
        }
        if !wanted.contains(name) {
            // only our own links are removed
            if let Ok(t) = fs::read_link(entry.path())
                && t.to_string_lossy().starts_with("..data/")
            {
                fs::remove_file(entry.path())?;
                changed = true;
            }
        }
    }
    Ok(changed)
}

/// Everything one generation holds, to compare with a new payload.
fn read_generation(gen_dir: &Path) -> io::Result<Payload> {
    let mut out = BTreeMap::new();
    walk(gen_dir, "", &mut out)?;
    Ok(out)
}

fn walk(dir: &Path, prefix: &str, out: &mut Payload) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let rel = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        let md = fs::symlink_metadata(entry.path())?;
        if md.is_dir() {
            walk(&entry.path(), &rel, out)?;
        } else if md.is_file() {
            out.insert(
                rel,
                FileProjection {
                    data: fs::read(entry.path())?,
                    mode: md.permissions().mode() & 0o777,
                },
            );
        }
    }
    Ok(())
}

fn new_generation(dir: &Path, now: chrono::DateTime<chrono::Utc>) -> io::Result<String> {
    let stamp = now.format("%Y_%m_%d_%H_%M_%S").to_string();
    for _ in 0..16 {
        let name = format!("..{stamp}.{}", rand::random::<u32>());
        match fs::DirBuilder::new().mode(0o755).create(dir.join(&name)) {
            Ok(()) => {
                fs::set_permissions(dir.join(&name), fs::Permissions::from_mode(0o755))?;
                return Ok(name);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other("cannot create a new data generation"))
}

fn mkdir(dir: &Path, mode: u32) -> io::Result<()> {
    match fs::DirBuilder::new().mode(mode).create(dir) {
        Ok(()) => fs::set_permissions(dir, fs::Permissions::from_mode(mode)),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            if fs::symlink_metadata(dir)?.is_dir() {
                Ok(())
            } else {
                Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{} exists and is not a directory", dir.display()),
                ))
            }
        }
        Err(e) => Err(e),
    }
}

/// Create `path` and its parents, all below `root` (which exists).
fn mkdir_all(root: &Path, path: &Path) -> io::Result<()> {
    let rel = path.strip_prefix(root).map_err(io::Error::other)?;
    let mut cur = root.to_path_buf();
    for c in rel.components() {
        cur.push(c);
        mkdir(&cur, 0o755)?;
    }
    Ok(())
}

/// Remove a file, a symlink (not its target) or a directory tree.
fn remove_entry(p: &Path) -> io::Result<()> {
    let md = fs::symlink_metadata(p)?;
    if md.is_dir() {
        // std's remove_dir_all does not follow symlinks
        fs::remove_dir_all(p)
    } else {
        fs::remove_file(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(files: &[(&str, &str, u32)]) -> Payload {
        files
            .iter()
            .map(|(p, d, m)| {
                (
                    p.to_string(),
                    FileProjection {
                        data: d.as_bytes().to_vec(),
                        mode: *m,
                    },
                )
            })
            .collect()
    }

    fn visible(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with(".."))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn generations_swap_atomically_and_clean_up() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("vol");
        let now = chrono::Utc::now();
        let p1 = payload(&[("a", "1", 0o644), ("sub/b", "2", 0o600)]);
        assert!(write(&dir, &p1, now).unwrap());
        assert_eq!(fs::read_to_string(dir.join("a")).unwrap(), "1");
        assert_eq!(fs::read_to_string(dir.join("sub/b")).unwrap(), "2");
        assert_eq!(
            fs::read_link(dir.join("a")).unwrap().to_str(),
            Some("..data/a")
        );
        let mode = fs::metadata(dir.join("sub/b"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        let gen1 = fs::read_link(dir.join("..data")).unwrap();
        // same payload: nothing changes
        assert!(!write(&dir, &p1, now).unwrap());
        assert_eq!(fs::read_link(dir.join("..data")).unwrap(), gen1);
        // mode change alone is a change
        let p2 = payload(&[("a", "1", 0o640), ("sub/b", "2", 0o600)]);
        assert!(write(&dir, &p2, now).unwrap());
        // keys removed and added
        let p3 = payload(&[("c", "3", 0o644)]);
        assert!(write(&dir, &p3, now).unwrap());
        assert_eq!(visible(&dir), vec!["c"]);
        let gens: Vec<String> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("..") && n != "..data")
            .collect();
        assert_eq!(gens.len(), 1, "old generations removed: {gens:?}");
        // empty payload: empty directory except bookkeeping
        assert!(write(&dir, &Payload::new(), now).unwrap());
        assert!(visible(&dir).is_empty());
    }

    #[test]
    fn refuses_escaping_paths_and_leaves_foreign_files() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("vol");
        let bad = payload(&[("../x", "1", 0o644)]);
        assert!(write(&dir, &bad, chrono::Utc::now()).is_err());
        fs::create_dir_all(&dir).unwrap();
        let outside = tmp.path().join("outside");
        fs::write(&outside, "keep").unwrap();
        symlink(&outside, dir.join("foreign")).unwrap();
        write(&dir, &payload(&[("a", "1", 0o644)]), chrono::Utc::now()).unwrap();
        assert_eq!(fs::read_to_string(&outside).unwrap(), "keep");
        assert!(fs::symlink_metadata(dir.join("foreign")).is_ok());
    }
}
