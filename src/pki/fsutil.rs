//! File effects for the PKI module: atomic writes with explicit modes, private
//! directories, mode tightening and reads that name the file on failure.
//!
//! Invariant: a file written here is either the old content or the complete
//! new content, never a prefix — data goes to a temp file in the same
//! directory, is fsynced, then renamed over the target, and the directory is
//! fsynced. Modes are set with `chmod` after creation so the umask cannot
//! widen or narrow them.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::error::PkiError;

/// Mode of private keys, tokens and other secrets.
pub(super) const SECRET_MODE: u32 = 0o600;
/// Mode of certificates and public keys.
pub(super) const PUBLIC_MODE: u32 = 0o644;
/// Mode of directories holding secrets.
pub(super) const PRIVATE_DIR_MODE: u32 = 0o700;

/// Whether `path` exists (a broken symlink counts as absent; permission
/// problems are errors, not "absent").
pub(super) fn exists(path: &Path) -> Result<bool, PkiError> {
    path.try_exists()
        .map_err(|e| PkiError::io("checking", path, e))
}

/// Read a whole file as UTF-8 text.
pub(super) fn read_text(path: &Path) -> Result<String, PkiError> {
    let bytes = fs::read(path).map_err(|e| PkiError::io("reading", path, e))?;
    String::from_utf8(bytes).map_err(|_| PkiError::corrupt(path, "not UTF-8 text"))
}

/// Create `dir` (and missing parents) with mode 0700, or tighten an existing
/// directory whose mode grants anything to group or others.
pub(super) fn ensure_private_dir(dir: &Path) -> Result<(), PkiError> {
    if !exists(dir)? {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(PRIVATE_DIR_MODE)
            .create(dir)
            .map_err(|e| PkiError::io("creating directory", dir, e))?;
    }
    let meta = fs::metadata(dir).map_err(|e| PkiError::io("inspecting", dir, e))?;
    if !meta.is_dir() {
        return Err(PkiError::corrupt(dir, "expected a directory"));
    }
    tighten_mode(dir, PRIVATE_DIR_MODE)
}

/// Create the parent directory of `path` if it is missing (mode 0755, like any
/// configuration directory; secrecy comes from the file's own mode).
pub(super) fn ensure_parent_dir(path: &Path) -> Result<(), PkiError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty())
        && !exists(parent)?
    {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(parent)
            .map_err(|e| PkiError::io("creating directory", parent, e))?;
    }
    Ok(())
}

/// If `path` grants any permission bit outside `max_mode`, chmod it to `max_mode`.
pub(super) fn tighten_mode(path: &Path, max_mode: u32) -> Result<(), PkiError> {
    let meta = fs::metadata(path).map_err(|e| PkiError::io("inspecting", path, e))?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & !max_mode != 0 {
        tracing::warn!(
            path = %path.display(),
            from = format_args!("{mode:o}"),
            to = format_args!("{max_mode:o}"),
            "tightening permissions"
        );
        set_mode(path, max_mode)?;
    }
    Ok(())
}

/// chmod `path` to exactly `mode`.
pub(super) fn set_mode(path: &Path, mode: u32) -> Result<(), PkiError> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(|e| PkiError::io("setting permissions on", path, e))
}

/// Atomically replace `path` with `data`, leaving it with exactly `mode`.
pub(super) fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<(), PkiError> {
    let file_name = path
        .file_name()
        .ok_or_else(|| PkiError::corrupt(path, "path has no file name"))?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let suffix: u64 = rand::random();
    let tmp = dir.join(format!(
        ".{}.tmp-{}-{suffix:016x}",
        file_name.to_string_lossy(),
        std::process::id()
    ));

    let result = write_then_rename(&tmp, path, data, mode);
    if result.is_err() {
        // Best effort: the temp file is garbage either way.
        let _ = fs::remove_file(&tmp);
        return result;
    }
    sync_dir(&dir)
}

fn write_then_rename(tmp: &Path, path: &Path, data: &[u8], mode: u32) -> Result<(), PkiError> {
    // Create with the final mode (minus umask) so the secret is never readable
    // by others, then chmod to the exact mode the caller asked for.
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(tmp)
        .map_err(|e| PkiError::io("creating", tmp, e))?;
    set_mode(tmp, mode)?;
    file.write_all(data)
        .map_err(|e| PkiError::io("writing", tmp, e))?;
    file.sync_all()
        .map_err(|e| PkiError::io("syncing", tmp, e))?;
    drop(file);
    fs::rename(tmp, path).map_err(|e| PkiError::io("renaming temp file onto", path, e))
}

fn sync_dir(dir: &Path) -> Result<(), PkiError> {
    let d = fs::File::open(dir).map_err(|e| PkiError::io("opening directory", dir, e))?;
    d.sync_all()
        .map_err(|e| PkiError::io("syncing directory", dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_sets_exact_mode_and_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        write_atomic(&p, b"one", 0o640).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"one");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o7777,
            0o640
        );
        write_atomic(&p, b"two", SECRET_MODE).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o7777,
            0o600
        );
        // No temp files left behind.
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn private_dir_is_created_and_tightened() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a/b/tls");
        ensure_private_dir(&p).unwrap();
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o7777,
            0o700
        );
        set_mode(&p, 0o755).unwrap();
        ensure_private_dir(&p).unwrap();
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o7777,
            0o700
        );
    }
}
