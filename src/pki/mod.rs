//! PKI for a skiff server: certificate authorities, leaf certificates,
//! kubeconfigs and the join token (the equivalent of k3s's `server/tls`).
//!
//! Owns everything under `<data-dir>/server/tls/` plus the token file and the
//! kubeconfig files it is asked to write. Knows nothing of HTTP, the store or
//! the CLI: callers hand in paths and typed options and get typed values and
//! [`PkiError`]s back.
//!
//! Invariants:
//! - A CA on disk is never overwritten or regenerated. A corrupt, mismatched or
//!   half-present CA is an error naming the file, never a silent replacement.
//! - Leaf certificates are reused byte for byte across restarts, and re-issued
//!   from the same CA only when they expire within [`RENEW_BEFORE_DAYS`], no
//!   longer cover the requested names, no longer match their key or CA, or no
//!   longer carry the expected subject.
//! - Every file is written atomically (temp file, fsync, rename), keys and
//!   secrets with mode 0600, directories created 0700; looser modes on
//!   existing keys and the TLS directory are tightened at start.
//! - Secrets (keys, token secrets) are never logged.
//! - Nothing here panics on anything read from disk or the clock.

mod accept;
mod certs;
mod der;
mod error;
mod fsutil;
mod kubeconfig;
mod server;
mod token;

pub use accept::accept_tls;
pub use certs::{ClientIdentity, identity_from_der};
pub use error::PkiError;
pub use kubeconfig::write_kubeconfig;
pub use server::{CertAndKey, PkiOptions, ServerPki, ensure_server_pki};
pub use token::{ParsedToken, ca_hash, ensure_server_token, parse_token};

/// Days a CA certificate is valid for when first generated.
pub const CA_VALIDITY_DAYS: u32 = 3650;
/// Days a leaf certificate is valid for when issued.
pub const LEAF_VALIDITY_DAYS: u32 = 365;
/// A leaf certificate expiring within this many days is re-issued at start.
pub const RENEW_BEFORE_DAYS: u32 = 90;
