//! The join token (`<data-dir>/server/token`), in k3s's format:
//! `K10<sha256 hex of the server CA PEM>::server:<secret>`.
//!
//! The CA hash lets an agent check, before it trusts anything, that the
//! server it reached holds the expected CA; the secret is the credential.
//! Invariants: the secret survives restarts (an existing file's secret is
//! always reused); the token file is mode 0600; the secret is never logged
//! and never appears in an error message.

use std::path::Path;

use sha2::{Digest, Sha256};

use super::error::PkiError;
use super::fsutil::{
    SECRET_MODE, ensure_private_dir, exists, read_text, tighten_mode, write_atomic,
};

const TOKEN_PREFIX: &str = "K10";
/// Username k3s gives a token that is a bare secret.
const BARE_TOKEN_USERNAME: &str = "node";
const SERVER_USERNAME: &str = "server";

/// A join token split into its parts.
#[derive(Clone, PartialEq, Eq)]
pub struct ParsedToken {
    /// Hex SHA-256 of the server CA PEM, when the token carries one.
    pub ca_hash: Option<String>,
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for ParsedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParsedToken")
            .field("ca_hash", &self.ca_hash)
            .field("username", &self.username)
            .field("password", &"[redacted]")
            .finish()
    }
}

/// Hex SHA-256 of the CA certificate PEM bytes, as embedded in join tokens.
pub fn ca_hash(ca_pem: &str) -> String {
    hex::encode(Sha256::digest(ca_pem.as_bytes()))
}

/// Parse a token: the full `K10<hash>::<user>:<secret>` form (the hash may be
/// empty), `K10<hash>::<id>.<secret>` (a bootstrap token, username `node`),
/// or a bare secret, which like k3s gets the username `node`.
pub fn parse_token(s: &str) -> Result<ParsedToken, PkiError> {
    let s = s.trim();
    if s.is_empty() {
        return Err(PkiError::InvalidToken("empty token".into()));
    }
    let Some(rest) = s.strip_prefix(TOKEN_PREFIX) else {
        return Ok(ParsedToken {
            ca_hash: None,
            username: BARE_TOKEN_USERNAME.to_string(),
            password: s.to_string(),
        });
    };
    let (hash, creds) = rest.split_once("::").ok_or_else(|| {
        PkiError::InvalidToken("K10 token without '::' between CA hash and credentials".into())
    })?;
    let ca_hash = if hash.is_empty() {
        None
    } else if hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        Some(hash.to_ascii_lowercase())
    } else {
        return Err(PkiError::InvalidToken(
            "CA hash in K10 token is not hexadecimal".into(),
        ));
    };
    // kubeadm-style bootstrap token credentials: `K10<hash>::<id>.<secret>`
    if !creds.contains(':') && crate::tokens::BootstrapToken::parse(creds).is_some() {
        return Ok(ParsedToken {
            ca_hash,
            username: BARE_TOKEN_USERNAME.to_string(),
            password: creds.to_string(),
        });
    }
    let (username, password) = creds.split_once(':').ok_or_else(|| {
        PkiError::InvalidToken(
            "K10 token credentials are not <username>:<secret> or <token-id>.<token-secret>".into(),
        )
    })?;
    if username.is_empty() || password.is_empty() {
        return Err(PkiError::InvalidToken(
            "K10 token has an empty username or secret".into(),
        ));
    }
    Ok(ParsedToken {
        ca_hash,
        username: username.to_string(),
        password: password.to_string(),
    })
}

/// Format a full server token.
fn format_server_token(ca_pem: &str, secret: &str) -> String {
    format!(
        "{TOKEN_PREFIX}{}::{SERVER_USERNAME}:{secret}",
        ca_hash(ca_pem)
    )
}

/// A new random 32-hex-character secret.
fn new_secret() -> String {
    let bytes: [u8; 16] = rand::random();
    hex::encode(bytes)
}

/// Return the server's join token, creating `path` (mode 0600, parent
/// directory 0700 if missing) with a new random secret on first start. On
/// later starts the file's secret is reused; the file is rewritten only if
/// its CA hash or form differs from the current one.
pub fn ensure_server_token(path: &Path, ca_pem: &str) -> Result<String, PkiError> {
    if exists(path)? {
        tighten_mode(path, SECRET_MODE)?;
        let text = read_text(path)?;
        let parsed = parse_token(&text).map_err(|e| PkiError::TokenFile {
            path: path.to_path_buf(),
            reason: match e {
                PkiError::InvalidToken(r) => r,
                other => other.to_string(),
            },
        })?;
        let token = format_server_token(ca_pem, &parsed.password);
        if text.trim() != token {
            tracing::info!(path = %path.display(), "rewriting token file with the current CA hash");
            write_atomic(path, format!("{token}\n").as_bytes(), SECRET_MODE)?;
        }
        return Ok(token);
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty())
        && !exists(parent)?
    {
        ensure_private_dir(parent)?;
    }
    let token = format_server_token(ca_pem, &new_secret());
    write_atomic(path, format!("{token}\n").as_bytes(), SECRET_MODE)?;
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const CA: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

    #[test]
    fn token_round_trips_and_hash_matches() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server/token");
        let token = ensure_server_token(&path, CA).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o600);

        let parsed = parse_token(&token).unwrap();
        assert_eq!(parsed.ca_hash.as_deref(), Some(ca_hash(CA).as_str()));
        assert_eq!(parsed.username, "server");
        assert_eq!(parsed.password.len(), 32);
        assert!(parsed.password.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(
            ca_hash(CA),
            hex::encode(Sha256::digest(CA.as_bytes())),
            "hash is sha256 of the PEM bytes"
        );
        assert_eq!(ca_hash(CA).len(), 64);

        // Second start: same token, same file.
        let before = std::fs::read(&path).unwrap();
        assert_eq!(ensure_server_token(&path, CA).unwrap(), token);
        assert_eq!(std::fs::read(&path).unwrap(), before);
    }

    #[test]
    fn existing_secret_is_reused_with_new_ca_hash_and_mode_fixed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "mysecret\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let token = ensure_server_token(&path, CA).unwrap();
        assert_eq!(token, format!("K10{}::server:mysecret", ca_hash(CA)));
        assert_eq!(std::fs::read_to_string(&path).unwrap().trim(), token);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn garbage_token_file_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "K10nothex::server:x").unwrap();
        let err = ensure_server_token(&path, CA).unwrap_err();
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
        std::fs::write(&path, "\n").unwrap();
        assert!(ensure_server_token(&path, CA).is_err());
    }

    #[test]
    fn parse_token_cases() {
        let ok = |s: &str| parse_token(s).unwrap();
        let p = ok("K10abcDEF::server:s3cret");
        assert_eq!(p.ca_hash.as_deref(), Some("abcdef"));
        assert_eq!(
            (p.username.as_str(), p.password.as_str()),
            ("server", "s3cret")
        );
        let p = ok("K10::node:pw:with:colons");
        assert_eq!(p.ca_hash, None);
        assert_eq!(
            (p.username.as_str(), p.password.as_str()),
            ("node", "pw:with:colons")
        );
        let p = ok("  baresecret\n");
        assert_eq!(p.ca_hash, None);
        assert_eq!(
            (p.username.as_str(), p.password.as_str()),
            ("node", "baresecret")
        );
        let p = ok("K10abc::abcdef.0123456789abcdef");
        assert_eq!(p.ca_hash.as_deref(), Some("abc"));
        assert_eq!(
            (p.username.as_str(), p.password.as_str()),
            ("node", "abcdef.0123456789abcdef")
        );
        let p = ok("abcdef.0123456789abcdef");
        assert_eq!(
            (p.username.as_str(), p.password.as_str()),
            ("node", "abcdef.0123456789abcdef")
        );
        for bad in [
            "",
            "  ",
            "K10abc::abcdef.short",
            "K10abc",
            "K10abc::nocolon",
            "K10abc:::pw",
            "K10abc::user:",
            "K10xyz::a:b",
        ] {
            assert!(parse_token(bad).is_err(), "{bad:?}");
        }
        // The secret never leaks through Debug or errors.
        assert!(!format!("{:?}", ok("K10::server:topsecret")).contains("topsecret"));
        let err = parse_token("K10zz::server:topsecret").unwrap_err();
        assert!(!err.to_string().contains("topsecret"));
    }
}
