//! Filesystem effects of volumes on the host: hostPath type checks,
//! emptyDir directories and tmpfs mounts, safe `subPath` resolution, and
//! the teardown of a pod directory.
//!
//! Invariants: teardown unmounts everything mounted below the pod directory
//! first and then removes the tree without following symlinks and without
//! crossing into another filesystem, so hostPath and PVC contents (never
//! mounted below the pod directory) can never be deleted; `subPath`
//! resolution refuses any path that leaves the volume directory, whether by
//! `..` or through a symlink.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

/// Upstream's hostPath `type` checks, with its messages. `DirectoryOrCreate`
/// and `FileOrCreate` create what is missing (0755 / 0644).
pub fn check_host_path(path: &Path, kind: &str) -> Result<(), String> {
    let shown = path.display();
    let md = fs::metadata(path);
    let exists = md.is_ok();
    let ft = md.as_ref().ok().map(|m| m.file_type());
    match kind {
        "" => Ok(()),
        "DirectoryOrCreate" | "Directory" => {
            if !exists && kind == "DirectoryOrCreate" {
                return fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o755)
                    .create(path)
                    .map_err(|e| {
                        format!("hostPath type check failed: cannot create {shown}: {e}")
                    });
            }
            if ft.is_some_and(|t| t.is_dir()) {
                Ok(())
            } else {
                Err(format!(
                    "hostPath type check failed: {shown} is not a directory"
                ))
            }
        }
        "FileOrCreate" | "File" => {
            if !exists && kind == "FileOrCreate" {
                if let Some(parent) = path.parent() {
                    fs::DirBuilder::new()
                        .recursive(true)
                        .mode(0o755)
                        .create(parent)
                        .map_err(|e| format!("hostPath type check failed: {e}"))?;
                }
                return fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .and_then(|f| f.set_permissions(fs::Permissions::from_mode(0o644)))
                    .map_err(|e| {
                        format!("hostPath type check failed: cannot create {shown}: {e}")
                    });
            }
            if ft.is_some_and(|t| t.is_file()) {
                Ok(())
            } else {
                Err(format!("hostPath type check failed: {shown} is not a file"))
            }
        }
        "Socket" if ft.is_some_and(|t| t.is_socket()) => Ok(()),
        "Socket" => Err(format!(
            "hostPath type check failed: {shown} is not a socket file"
        )),
        "CharDevice" if ft.is_some_and(|t| t.is_char_device()) => Ok(()),
        "CharDevice" => Err(format!(
            "hostPath type check failed: {shown} is not a character device"
        )),
        "BlockDevice" if ft.is_some_and(|t| t.is_block_device()) => Ok(()),
        "BlockDevice" => Err(format!(
            "hostPath type check failed: {shown} is not a block device"
        )),
        other => Err(format!("{other} is an invalid volume type")),
    }
}

/// Create `dir` (and parents) with `mode` on the last element; an existing
/// directory is kept as it is.
pub fn ensure_dir(dir: &Path, mode: u32) -> io::Result<()> {
    if fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir()) {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o750)
            .create(parent)?;
    }
    match fs::DirBuilder::new().mode(mode).create(dir) {
        Ok(()) => fs::set_permissions(dir, fs::Permissions::from_mode(mode)),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Whether `dir` is the root of a mount (its device differs from its
/// parent's).
pub fn is_mount_point(dir: &Path) -> io::Result<bool> {
    let md = fs::symlink_metadata(dir)?;
    let parent = dir.parent().unwrap_or(Path::new("/"));
    let pmd = fs::symlink_metadata(parent)?;
    Ok(md.dev() != pmd.dev())
}

/// Mount a tmpfs on `dir` unless one is already there. `size` is in bytes.
pub fn mount_tmpfs(dir: &Path, size: Option<u64>, mode: u32) -> io::Result<()> {
    if is_mount_point(dir)? {
        return Ok(());
    }
    let mut opts = format!("mode={mode:o}");
    if let Some(s) = size.filter(|s| *s > 0) {
        opts.push_str(&format!(",size={s}"));
    }
    nix::mount::mount(
        Some("tmpfs"),
        dir,
        Some("tmpfs"),
        nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV,
        Some(opts.as_str()),
    )
    .map_err(io::Error::from)
}

/// Resolve `sub` below `base`, creating missing directories, and refuse a
/// result outside `base` (through `..` or a symlink). Returns the resolved
/// path the runtime should bind.
///
/// A container writing to the volume concurrently could still swap a
/// directory for a symlink between this check and the runtime's bind; the
/// window is small and the result is checked once more at the end.
pub fn resolve_sub_path(base: &Path, sub: &str) -> Result<PathBuf, String> {
    let base = fs::canonicalize(base)
        .map_err(|e| format!("cannot resolve volume path {}: {e}", base.display()))?;
    let outside = |p: &Path| {
        format!(
            "subpath {:?} not within volume path {:?}",
            p.display().to_string(),
            base.display().to_string()
        )
    };
    let mut cur = base.clone();
    let rel = Path::new(sub);
    let comps: Vec<Component> = rel.components().collect();
    for (i, c) in comps.iter().enumerate() {
        let name = match c {
            Component::Normal(n) => n,
            Component::CurDir => continue,
            _ => return Err(outside(&base.join(rel))),
        };
        let next = cur.join(name);
        match fs::symlink_metadata(&next) {
            Ok(md) if md.file_type().is_symlink() => {
                let resolved = fs::canonicalize(&next)
                    .map_err(|e| format!("cannot resolve subpath {}: {e}", next.display()))?;
                if !resolved.starts_with(&base) {
                    return Err(outside(&resolved));
                }
                cur = resolved;
            }
            Ok(md) if md.is_dir() => cur = next,
            Ok(_) if i + 1 == comps.len() => cur = next,
            Ok(_) => return Err(format!("subpath {}: not a directory", next.display())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                match fs::DirBuilder::new().mode(0o755).create(&next) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(format!("cannot create subpath {}: {e}", next.display())),
                }
                // re-check: it may have been replaced concurrently
                if fs::symlink_metadata(&next).is_ok_and(|m| m.file_type().is_symlink()) {
                    return Err(outside(&next));
                }
                cur = next;
            }
            Err(e) => return Err(format!("cannot stat subpath {}: {e}", next.display())),
        }
    }
    let fin = fs::canonicalize(&cur).map_err(|e| format!("cannot resolve subpath: {e}"))?;
    if !fin.starts_with(&base) {
        return Err(outside(&fin));
    }
    Ok(fin)
}

/// Unescape a mountinfo path (`\040` for space and friends).
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 4 <= b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let oct = std::str::from_utf8(&b[i + 1..i + 4]).unwrap_or("0");
            if let Ok(v) = u8::from_str_radix(oct, 8) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Mount points strictly below `root`, deepest first, from a mountinfo text.
pub fn mounts_below(mountinfo: &str, root: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape_mountinfo(p)))
        .filter(|p| p.starts_with(root) && p != root)
        .collect();
    out.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    out.dedup();
    out
}

/// Unmount everything below `root` (tmpfs of memory emptyDirs and secret
/// volumes). Errors if something stays mounted.
pub fn unmount_below(root: &Path) -> io::Result<()> {
    for _ in 0..3 {
        let info = fs::read_to_string("/proc/self/mountinfo")?;
        let mounts = mounts_below(&info, root);
        if mounts.is_empty() {
            return Ok(());
        }
        for m in mounts {
            if nix::mount::umount2(&m, nix::mount::MntFlags::empty()).is_err() {
                let _ = nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH);
            }
        }
    }
    let info = fs::read_to_string("/proc/self/mountinfo")?;
    let left = mounts_below(&info, root);
    if left.is_empty() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "still mounted: {}",
            left.iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )))
    }
}

/// Remove `dir` and everything in it, never following symlinks and never
/// descending into a directory on another device (a mount we missed).
pub fn remove_tree(dir: &Path) -> io::Result<()> {
    let md = match fs::symlink_metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !md.is_dir() {
        return fs::remove_file(dir);
    }
    remove_tree_on(dir, md.dev())
}

fn remove_tree_on(dir: &Path, dev: u64) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let p = entry.path();
        let md = fs::symlink_metadata(&p)?;
        if md.is_dir() {
            if md.dev() != dev {
                return Err(io::Error::other(format!(
                    "refusing to remove {}: another filesystem is mounted there",
                    p.display()
                )));
            }
            remove_tree_on(&p, dev)?;
        } else {
            fs::remove_file(&p)?;
        }
    }
    fs::remove_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn host_path_types() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        let file = d.join("f");
        fs::write(&file, "x").unwrap();
        let s = |p: &Path| p.display().to_string();
        let cases: Vec<(PathBuf, &str, Result<(), String>)> = vec![
            (d.to_path_buf(), "", Ok(())),
            (d.to_path_buf(), "Directory", Ok(())),
            (
                file.clone(),
                "Directory",
                Err(format!(
                    "hostPath type check failed: {} is not a directory",
                    s(&file)
                )),
            ),
            (
                d.join("missing"),
                "Directory",
                Err(format!(
                    "hostPath type check failed: {} is not a directory",
                    s(&d.join("missing"))
                )),
            ),
            (d.join("new/dir"), "DirectoryOrCreate", Ok(())),
            (file.clone(), "File", Ok(())),
            (
                d.to_path_buf(),
                "File",
                Err(format!(
                    "hostPath type check failed: {} is not a file",
                    s(d)
                )),
            ),
            (d.join("nf/f2"), "FileOrCreate", Ok(())),
            (
                file.clone(),
                "Socket",
                Err(format!(
                    "hostPath type check failed: {} is not a socket file",
                    s(&file)
                )),
            ),
            (PathBuf::from("/dev/null"), "CharDevice", Ok(())),
            (
                file.clone(),
                "CharDevice",
                Err(format!(
                    "hostPath type check failed: {} is not a character device",
                    s(&file)
                )),
            ),
            (
                file.clone(),
                "BlockDevice",
                Err(format!(
                    "hostPath type check failed: {} is not a block device",
                    s(&file)
                )),
            ),
            (
                file.clone(),
                "Weird",
                Err("Weird is an invalid volume type".into()),
            ),
        ];
        for (p, kind, want) in cases {
            assert_eq!(check_host_path(&p, kind), want, "{} {kind}", p.display());
        }
        assert!(d.join("new/dir").is_dir());
        let m = fs::metadata(d.join("nf/f2")).unwrap();
        assert!(m.is_file());
        assert_eq!(m.permissions().mode() & 0o777, 0o644);
        let sock = d.join("s.sock");
        let _l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        assert_eq!(check_host_path(&sock, "Socket"), Ok(()));
    }

    #[test]
    fn sub_path_resolution() {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().join("vol");
        fs::create_dir_all(base.join("a")).unwrap();
        fs::write(base.join("a/file"), "x").unwrap();
        symlink("/etc", base.join("evil")).unwrap();
        symlink("a", base.join("good")).unwrap();
        symlink("../../", base.join("a/up")).unwrap();
        let canon = fs::canonicalize(&base).unwrap();
        assert_eq!(
            resolve_sub_path(&base, "a/file").unwrap(),
            canon.join("a/file")
        );
        assert_eq!(
            resolve_sub_path(&base, "good/file").unwrap(),
            canon.join("a/file")
        );
        assert_eq!(
            resolve_sub_path(&base, "new/dir").unwrap(),
            canon.join("new/dir")
        );
        assert!(canon.join("new/dir").is_dir());
        for bad in ["evil", "evil/passwd", "a/up", "a/up/x", "../x", "a/file/x"] {
            assert!(resolve_sub_path(&base, bad).is_err(), "{bad}");
        }
        assert!(!Path::new("/etc/passwd/x").exists());
    }

    #[test]
    fn mountinfo_parsing() {
        let info = "22 1 8:1 / / rw - ext4 /dev/sda1 rw\n\
                    40 22 0:50 / /pods/u1/volumes/kubernetes.io~empty-dir/m rw - tmpfs tmpfs rw\n\
                    41 22 0:51 / /pods/u1/volumes/kubernetes.io~secret/with\\040space rw - tmpfs tmpfs rw\n\
                    42 22 0:52 / /pods/u10/x rw - tmpfs tmpfs rw\n\
                    43 40 0:53 / /pods/u1/volumes/kubernetes.io~empty-dir/m/deeper rw - tmpfs tmpfs rw\n";
        let got = mounts_below(info, Path::new("/pods/u1"));
        assert_eq!(
            got,
            vec![
                PathBuf::from("/pods/u1/volumes/kubernetes.io~empty-dir/m/deeper"),
                PathBuf::from("/pods/u1/volumes/kubernetes.io~empty-dir/m"),
                PathBuf::from("/pods/u1/volumes/kubernetes.io~secret/with space"),
            ]
        );
    }

    #[test]
    fn remove_tree_keeps_symlink_targets() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        fs::create_dir_all(&outside).unwrap();
        fs::write(outside.join("keep"), "1").unwrap();
        let pod = tmp.path().join("pod");
        fs::create_dir_all(pod.join("volumes/x")).unwrap();
        symlink(&outside, pod.join("volumes/x/link")).unwrap();
        fs::write(pod.join("volumes/x/f"), "1").unwrap();
        remove_tree(&pod).unwrap();
        assert!(!pod.exists());
        assert!(outside.join("keep").exists());
        remove_tree(&pod).unwrap();
    }
}
