//! The one error type of the PKI module.
//!
//! Every variant that concerns a file carries its path so an operator can see
//! which file to inspect; no variant ever carries key material or a token
//! secret.

use std::path::PathBuf;

/// Errors from creating, loading or using the server PKI.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// A filesystem operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A file exists but its content cannot be used (bad PEM, bad DER, wrong kind of key…).
    #[error("corrupt or unusable file {path}: {reason}")]
    Corrupt { path: PathBuf, reason: String },

    /// A CA certificate is present but its private key is not; skiff refuses to
    /// regenerate a CA because every issued credential would become invalid.
    #[error(
        "CA certificate {cert} exists but its private key {key} is missing; restore the key \
         (skiff never regenerates an existing CA)"
    )]
    CaKeyMissing { cert: PathBuf, key: PathBuf },

    /// A CA certificate and the key next to it do not belong together.
    #[error(
        "CA private key {key} does not match certificate {cert}; restore the original pair \
         (skiff never regenerates an existing CA)"
    )]
    CaKeyMismatch { cert: PathBuf, key: PathBuf },

    /// A requested subject alternative name is not a valid DNS name or IP address.
    #[error("invalid subject alternative name {value:?}: {reason}")]
    InvalidSan { value: String, reason: String },

    /// A caller asked for something that cannot be issued (empty common name, zero days…).
    #[error("invalid certificate request: {0}")]
    InvalidRequest(String),

    /// Key generation or certificate signing failed.
    #[error("generating {what}: {reason}")]
    Generate { what: String, reason: String },

    /// A certificate handed in (e.g. a TLS peer certificate) cannot be parsed.
    #[error("invalid certificate: {0}")]
    InvalidCertificate(String),

    /// Building a rustls configuration failed.
    #[error("building TLS configuration: {0}")]
    Tls(String),

    /// A join token string is malformed. The token itself is never included.
    #[error("invalid join token: {0}")]
    InvalidToken(String),

    /// The token file exists but does not hold a usable token.
    #[error("invalid token file {path}: {reason}")]
    TokenFile { path: PathBuf, reason: String },

    /// Serializing a kubeconfig failed.
    #[error("writing kubeconfig {path}: {reason}")]
    Kubeconfig { path: PathBuf, reason: String },
}

impl PkiError {
    pub(super) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        PkiError::Io {
            op,
            path: path.into(),
            source,
        }
    }

    pub(super) fn corrupt(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        PkiError::Corrupt {
            path: path.into(),
            reason: reason.into(),
        }
    }

    pub(super) fn generate(what: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        PkiError::Generate {
            what: what.into(),
            reason: reason.to_string(),
        }
    }
}
