//! What the agent puts on disk for containerd: the conflist in its `net.d`
//! and the plugin symlinks in its CNI bin dir.
//!
//! Invariants: the conflist is a pure function of its arguments; symlinks
//! are replaced atomically (rename over), and left alone when they already
//! point at this executable.

use std::fs;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;

use serde_json::json;

/// Names containerd executes; both are this binary.
pub const PLUGIN_NAMES: &[&str] = &["skiff-cni", "loopback"];

/// The `10-skiff.conflist` document.
pub fn conflist(
    bridge: &str,
    subnet: &str,
    cluster_cidr: &str,
    mtu: u32,
    data_dir: &Path,
) -> String {
    let doc = json!({
        "cniVersion": "1.0.0",
        "name": "skiff",
        "plugins": [{
            "type": "skiff-cni",
            "bridge": bridge,
            "subnet": subnet,
            "clusterCIDR": cluster_cidr,
            "mtu": mtu,
            "dataDir": data_dir.to_string_lossy(),
            "ipMasq": true,
            "hairpinMode": true,
            "capabilities": {"portMappings": true},
        }],
    });
    // serde_json cannot fail on a Value; fall back to compact just in case
    serde_json::to_string_pretty(&doc).unwrap_or_else(|_| doc.to_string()) + "\n"
}

/// Creates or refreshes `skiff-cni` and `loopback` in `bin_dir` as symlinks
/// to the running executable.
pub fn install_binaries(bin_dir: &Path) -> io::Result<()> {
    let exe = std::env::current_exe()?;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(bin_dir)?;
    for name in PLUGIN_NAMES {
        let link = bin_dir.join(name);
        if fs::read_link(&link).is_ok_and(|t| t == exe) {
            continue;
        }
        let tmp = bin_dir.join(format!(".{name}.{}", std::process::id()));
        let _ = fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&exe, &tmp)?;
        if let Err(e) = fs::rename(&tmp, &link) {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflist_parses_as_plugin_config() {
        let s = conflist(
            "skiff0",
            "10.42.3.0/24",
            "10.42.0.0/16",
            1450,
            Path::new("/var/lib/skiff/agent/cni"),
        );
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["cniVersion"], "1.0.0");
        assert_eq!(v["name"], "skiff");
        let plugins = v["plugins"].as_array().unwrap();
        assert_eq!(plugins.len(), 1);
        assert_eq!(plugins[0]["type"], "skiff-cni");
        assert_eq!(plugins[0]["capabilities"]["portMappings"], true);
        // what libcni hands the plugin: the plugin object plus name and cniVersion
        let mut p = plugins[0].clone();
        p["name"] = v["name"].clone();
        p["cniVersion"] = v["cniVersion"].clone();
        let c = crate::cni::config::NetConf::parse(p.to_string().as_bytes()).unwrap();
        assert_eq!(c.subnet.to_string(), "10.42.3.0/24");
        assert_eq!(c.cluster_cidr.unwrap().to_string(), "10.42.0.0/16");
        assert_eq!(c.mtu, 1450);
        assert_eq!(c.state_dir(), Path::new("/var/lib/skiff/agent/cni/skiff"));
        assert!(c.ip_masq && c.hairpin_mode);
    }

    #[test]
    fn symlinks_are_idempotent() {
        let tmp = tempfile::tempdir().unwrap();
        let bin = tmp.path().join("bin");
        install_binaries(&bin).unwrap();
        let exe = std::env::current_exe().unwrap();
        for n in PLUGIN_NAMES {
            assert_eq!(fs::read_link(bin.join(n)).unwrap(), exe);
        }
        // a stale link and a plain file are both replaced
        fs::remove_file(bin.join("loopback")).unwrap();
        std::os::unix::fs::symlink("/nonexistent", bin.join("loopback")).unwrap();
        fs::remove_file(bin.join("skiff-cni")).unwrap();
        fs::write(bin.join("skiff-cni"), "x").unwrap();
        install_binaries(&bin).unwrap();
        install_binaries(&bin).unwrap();
        for n in PLUGIN_NAMES {
            assert_eq!(fs::read_link(bin.join(n)).unwrap(), exe);
        }
        assert_eq!(fs::read_dir(&bin).unwrap().count(), 2);
    }
}
