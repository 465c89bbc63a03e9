//! Kubeconfig files with embedded credentials (like k3s's `k3s.yaml`).
//!
//! Owns only the rendering and the atomic write; the caller picks the path,
//! mode, server URL and credentials. Invariant: the file ends up with exactly
//! the requested mode even if it already existed with another one, and is
//! never observable half-written.

use std::path::Path;

use base64::Engine as _;
use serde::Serialize;

use super::error::PkiError;
use super::fsutil::{ensure_parent_dir, exists, set_mode, write_atomic};

#[derive(Serialize)]
struct Kubeconfig<'a> {
    #[serde(rename = "apiVersion")]
    api_version: &'a str,
    kind: &'a str,
    clusters: Vec<NamedCluster<'a>>,
    contexts: Vec<NamedContext<'a>>,
    #[serde(rename = "current-context")]
    current_context: &'a str,
    preferences: Preferences,
    users: Vec<NamedUser<'a>>,
}

#[derive(Serialize)]
struct NamedCluster<'a> {
    name: &'a str,
    cluster: Cluster<'a>,
}

#[derive(Serialize)]
struct Cluster<'a> {
    server: &'a str,
    #[serde(rename = "certificate-authority-data")]
    certificate_authority_data: String,
}

#[derive(Serialize)]
struct NamedContext<'a> {
    name: &'a str,
    context: Context<'a>,
}

#[derive(Serialize)]
struct Context<'a> {
    cluster: &'a str,
    user: &'a str,
}

#[derive(Serialize)]
struct Preferences {}

#[derive(Serialize)]
struct NamedUser<'a> {
    name: &'a str,
    user: User,
}

#[derive(Serialize)]
struct User {
    #[serde(rename = "client-certificate-data")]
    client_certificate_data: String,
    #[serde(rename = "client-key-data")]
    client_key_data: String,
}

/// Render a kubeconfig whose cluster, user and context are all named `name`.
fn render(
    server_url: &str,
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
    name: &str,
) -> Result<String, String> {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
    let doc = Kubeconfig {
        api_version: "v1",
        kind: "Config",
        clusters: vec![NamedCluster {
            name,
            cluster: Cluster {
                server: server_url,
                certificate_authority_data: b64(ca_pem),
            },
        }],
        contexts: vec![NamedContext {
            name,
            context: Context {
                cluster: name,
                user: name,
            },
        }],
        current_context: name,
        preferences: Preferences {},
        users: vec![NamedUser {
            name,
            user: User {
                client_certificate_data: b64(cert_pem),
                client_key_data: b64(key_pem),
            },
        }],
    };
    serde_yaml_ng::to_string(&doc).map_err(|e| e.to_string())
}

/// Write a kubeconfig at `path` with file mode `mode` (applied even when the
/// file already exists), creating the parent directory if needed. `context`
/// names the cluster, the user and the context (k3s uses `default`). The PEMs
/// are embedded base64-encoded.
pub fn write_kubeconfig(
    path: &Path,
    mode: u32,
    server_url: &str,
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
    context: &str,
) -> Result<(), PkiError> {
    if context.is_empty() {
        return Err(PkiError::Kubeconfig {
            path: path.to_path_buf(),
            reason: "empty context name".into(),
        });
    }
    let yaml = render(server_url, ca_pem, cert_pem, key_pem, context).map_err(|reason| {
        PkiError::Kubeconfig {
            path: path.to_path_buf(),
            reason,
        }
    })?;
    ensure_parent_dir(path)?;
    // Leave an identical file alone (tools may watch it), but still fix its mode.
    if exists(path)?
        && std::fs::read(path).map_err(|e| PkiError::io("reading", path, e))? == yaml.as_bytes()
    {
        return set_mode(path, mode);
    }
    write_atomic(path, yaml.as_bytes(), mode)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn decode(v: &serde_yaml_ng::Value) -> String {
        let s = v.as_str().unwrap();
        String::from_utf8(base64::engine::general_purpose::STANDARD.decode(s).unwrap()).unwrap()
    }

    #[test]
    fn kubeconfig_has_mode_and_fields() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("etc/skiff/skiff.yaml");
        write_kubeconfig(
            &path,
            0o600,
            "https://127.0.0.1:6443",
            "CA PEM\n",
            "CERT PEM\n",
            "KEY PEM\n",
            "default",
        )
        .unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o600);

        let doc: serde_yaml_ng::Value =
            serde_yaml_ng::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(doc["apiVersion"].as_str(), Some("v1"));
        assert_eq!(doc["kind"].as_str(), Some("Config"));
        assert_eq!(doc["current-context"].as_str(), Some("default"));
        let cluster = &doc["clusters"][0];
        assert_eq!(cluster["name"].as_str(), Some("default"));
        assert_eq!(
            cluster["cluster"]["server"].as_str(),
            Some("https://127.0.0.1:6443")
        );
        assert_eq!(
            decode(&cluster["cluster"]["certificate-authority-data"]),
            "CA PEM\n"
        );
        let ctx = &doc["contexts"][0];
        assert_eq!(ctx["name"].as_str(), Some("default"));
        assert_eq!(ctx["context"]["cluster"].as_str(), Some("default"));
        assert_eq!(ctx["context"]["user"].as_str(), Some("default"));
        let user = &doc["users"][0];
        assert_eq!(user["name"].as_str(), Some("default"));
        assert_eq!(
            decode(&user["user"]["client-certificate-data"]),
            "CERT PEM\n"
        );
        assert_eq!(decode(&user["user"]["client-key-data"]), "KEY PEM\n");
    }

    #[test]
    fn existing_kubeconfig_is_rechmodded_and_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.yaml");
        std::fs::write(&path, "old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        let write = |mode| {
            write_kubeconfig(&path, mode, "https://s:6443", "c", "e", "k", "default").unwrap()
        };
        write(0o600);
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o7777,
            0o600
        );
        assert!(
            std::fs::read_to_string(&path)
                .unwrap()
                .contains("https://s:6443")
        );
        // Same content, different mode: only the mode changes.
        write(0o644);
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o7777,
            0o644
        );
    }
}
