//! Join credentials that live in the API rather than on disk: kubeadm-style
//! bootstrap tokens (`<id>.<secret>`, stored as Secret
//! `kube-system/bootstrap-token-<id>` of type `bootstrap.kubernetes.io/token`)
//! and node passwords (a per-node secret whose salted hash the server keeps
//! in Secret `kube-system/<node>.node-password.skiff`, like k3s).
//!
//! Pure functions only: building and reading the Secret objects, expiry,
//! hashing and verifying. The API calls live in `apiserver::join` (server),
//! `agent::join` (agent) and the `skiff token` commands.
//!
//! Invariants: a token secret or node password is never logged and never put
//! into an error message or a `Debug` output; secrets are compared in
//! constant time; a Secret that is malformed, of the wrong type, not marked
//! for authentication or past its expiration never authenticates.

pub mod cmd;

use std::fmt;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

/// Secret type of bootstrap tokens.
pub const BOOTSTRAP_TOKEN_TYPE: &str = "bootstrap.kubernetes.io/token";
/// Namespace holding bootstrap tokens and node passwords.
pub const SYSTEM_NAMESPACE: &str = "kube-system";
/// Name prefix of bootstrap-token Secrets.
pub const BOOTSTRAP_SECRET_PREFIX: &str = "bootstrap-token-";
/// Secret type of node-password Secrets.
pub const NODE_PASSWORD_TYPE: &str = "skiff.io/node-password";

const ID_LEN: usize = 6;
const SECRET_LEN: usize = 16;
const TOKEN_ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// A bootstrap token `<id>.<secret>` (`[a-z0-9]{6}.[a-z0-9]{16}`).
#[derive(Clone, PartialEq, Eq)]
pub struct BootstrapToken {
    pub id: String,
    pub secret: String,
}

impl fmt::Debug for BootstrapToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BootstrapToken")
            .field("id", &self.id)
            .field("secret", &"[redacted]")
            .finish()
    }
}

fn all_token_chars(s: &str) -> bool {
    s.bytes().all(|b| TOKEN_ALPHABET.contains(&b))
}

/// True for a well-formed token id (`[a-z0-9]{6}`).
pub fn is_token_id(id: &str) -> bool {
    id.len() == ID_LEN && all_token_chars(id)
}

impl BootstrapToken {
    /// Parse `<id>.<secret>`; `None` when it does not have that exact shape.
    pub fn parse(s: &str) -> Option<Self> {
        let (id, secret) = s.split_once('.')?;
        (is_token_id(id) && secret.len() == SECRET_LEN && all_token_chars(secret)).then(|| {
            BootstrapToken {
                id: id.to_string(),
                secret: secret.to_string(),
            }
        })
    }

    /// A new random token.
    pub fn generate() -> Self {
        use rand::Rng as _;
        let mut rng = rand::rng();
        let mut pick = |n: usize| -> String {
            (0..n)
                .map(|_| TOKEN_ALPHABET[rng.random_range(0..TOKEN_ALPHABET.len())] as char)
                .collect()
        };
        let id = pick(ID_LEN);
        let secret = pick(SECRET_LEN);
        BootstrapToken { id, secret }
    }

    /// `<id>.<secret>`: the credential part of a join token.
    pub fn credential(&self) -> String {
        format!("{}.{}", self.id, self.secret)
    }

    pub fn secret_name(&self) -> String {
        bootstrap_secret_name(&self.id)
    }
}

/// `bootstrap-token-<id>`.
pub fn bootstrap_secret_name(id: &str) -> String {
    format!("{BOOTSTRAP_SECRET_PREFIX}{id}")
}

/// Constant-time byte comparison (length is not secret).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s.as_bytes())
}

/// One string value of a Secret, from `data` (base64) or `stringData`.
fn secret_value(secret: &Value, key: &str) -> Option<String> {
    if let Some(v) = secret
        .pointer(&format!("/data/{key}"))
        .and_then(Value::as_str)
    {
        let bytes = base64::engine::general_purpose::STANDARD.decode(v).ok()?;
        return String::from_utf8(bytes).ok();
    }
    secret
        .pointer(&format!("/stringData/{key}"))
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// The Secret that stores `token`, expiring `ttl` after `now` (`None`: never).
pub fn bootstrap_secret(
    token: &BootstrapToken,
    expires: Option<DateTime<Utc>>,
    description: &str,
) -> Value {
    let mut data = serde_json::Map::new();
    data.insert("token-id".into(), json!(b64(&token.id)));
    data.insert("token-secret".into(), json!(b64(&token.secret)));
    data.insert("usage-bootstrap-authentication".into(), json!(b64("true")));
    if let Some(t) = expires {
        data.insert(
            "expiration".into(),
            json!(b64(&t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))),
        );
    }
    if !description.is_empty() {
        data.insert("description".into(), json!(b64(description)));
    }
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": token.secret_name(), "namespace": SYSTEM_NAMESPACE},
        "type": BOOTSTRAP_TOKEN_TYPE,
        "data": data,
    })
}

/// What `skiff token list` shows of a bootstrap-token Secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenInfo {
    pub id: String,
    /// `None`: the token never expires. `Some(Err)`: unparseable expiration.
    pub expires: Option<Result<DateTime<Utc>, String>>,
    pub description: String,
    pub usages: Vec<String>,
}

/// Read a bootstrap-token Secret; `None` when it is not one.
pub fn token_info(secret: &Value) -> Option<TokenInfo> {
    if secret.get("type").and_then(Value::as_str) != Some(BOOTSTRAP_TOKEN_TYPE) {
        return None;
    }
    let name = secret.pointer("/metadata/name").and_then(Value::as_str)?;
    let id = secret_value(secret, "token-id").or_else(|| {
        name.strip_prefix(BOOTSTRAP_SECRET_PREFIX)
            .map(str::to_string)
    })?;
    let expires = secret_value(secret, "expiration").map(|s| {
        DateTime::parse_from_rfc3339(s.trim())
            .map(|t| t.with_timezone(&Utc))
            .map_err(|_| s.clone())
    });
    let mut usages: Vec<String> = ["authentication", "signing"]
        .into_iter()
        .filter(|u| {
            secret_value(secret, &format!("usage-bootstrap-{u}")).as_deref() == Some("true")
        })
        .map(str::to_string)
        .collect();
    usages.sort();
    Some(TokenInfo {
        id,
        expires,
        description: secret_value(secret, "description").unwrap_or_default(),
        usages,
    })
}

/// True when the Secret is a bootstrap token whose expiration has passed
/// (an unparseable expiration counts as expired, as upstream).
pub fn is_expired(secret: &Value, now: DateTime<Utc>) -> bool {
    match token_info(secret).and_then(|i| i.expires) {
        Some(Ok(t)) => t <= now,
        Some(Err(_)) => true,
        None => false,
    }
}

/// Why a presented bootstrap token was refused. Messages never contain the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenRejection {
    #[error("bootstrap token {0:?} does not exist")]
    Unknown(String),
    #[error("bootstrap token {0:?} has expired")]
    Expired(String),
    #[error("bootstrap token {0:?} is not valid for authentication")]
    NotForAuthentication(String),
    #[error("bootstrap token {0:?}: wrong secret")]
    WrongSecret(String),
}

/// Check a presented token against its Secret (`None`: no such Secret).
pub fn check_bootstrap_token(
    secret: Option<&Value>,
    presented: &BootstrapToken,
    now: DateTime<Utc>,
) -> Result<(), TokenRejection> {
    let id = presented.id.clone();
    let secret = secret
        .filter(|s| s.get("type").and_then(Value::as_str) == Some(BOOTSTRAP_TOKEN_TYPE))
        .ok_or_else(|| TokenRejection::Unknown(id.clone()))?;
    if secret.pointer("/metadata/deletionTimestamp").is_some() {
        return Err(TokenRejection::Unknown(id));
    }
    if secret_value(secret, "token-id").as_deref() != Some(presented.id.as_str()) {
        return Err(TokenRejection::Unknown(id));
    }
    let stored = secret_value(secret, "token-secret").unwrap_or_default();
    if !constant_time_eq(stored.as_bytes(), presented.secret.as_bytes()) {
        return Err(TokenRejection::WrongSecret(id));
    }
    if is_expired(secret, now) {
        return Err(TokenRejection::Expired(id));
    }
    if secret_value(secret, "usage-bootstrap-authentication").as_deref() != Some("true") {
        return Err(TokenRejection::NotForAuthentication(id));
    }
    Ok(())
}

/// kubeadm-style short human duration for the TTL column (`23h`, `59m`,
/// `<forever>`, `<invalid>`).
pub fn format_ttl(expires: &Option<Result<DateTime<Utc>, String>>, now: DateTime<Utc>) -> String {
    let t = match expires {
        None => return "<forever>".into(),
        Some(Err(_)) => return "<invalid>".into(),
        Some(Ok(t)) => *t,
    };
    let left = t - now;
    if left <= chrono::Duration::zero() {
        return "<expired>".into();
    }
    // round up: a token with 0.5 s left is not expired
    let secs = (left.num_milliseconds() + 999) / 1000;
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 3600 * 2 => format!("{}m", s / 60),
        s if s < 86400 * 2 => format!("{}h", s / 3600),
        s if s < 86400 * 365 * 2 => format!("{}d", s / 86400),
        s => format!("{}y", s / (86400 * 365)),
    }
}

// ---- node passwords ----------------------------------------------------

const PBKDF2_ITERATIONS: u32 = 20_000;
const HASH_PREFIX: &str = "$pbkdf2-sha256$";

/// `<node>.node-password.skiff`.
pub fn node_password_secret_name(node: &str) -> String {
    format!("{node}.node-password.skiff")
}

/// A new random node password (32 hex characters).
pub fn new_node_password() -> String {
    let bytes: [u8; 16] = rand::random();
    hex::encode(bytes)
}

fn pbkdf2(password: &str, salt: &[u8], iterations: u32) -> [u8; 32] {
    let mut out = [0u8; 32];
    let iters = std::num::NonZeroU32::new(iterations.max(1)).unwrap_or(std::num::NonZeroU32::MIN);
    ring::pbkdf2::derive(
        ring::pbkdf2::PBKDF2_HMAC_SHA256,
        iters,
        salt,
        password.as_bytes(),
        &mut out,
    );
    out
}

/// Salted PBKDF2-SHA256 hash: `$pbkdf2-sha256$<iterations>$<salt hex>$<hash hex>`.
pub fn hash_node_password(password: &str) -> String {
    let salt: [u8; 16] = rand::random();
    let hash = pbkdf2(password, &salt, PBKDF2_ITERATIONS);
    format!(
        "{HASH_PREFIX}{PBKDF2_ITERATIONS}${}${}",
        hex::encode(salt),
        hex::encode(hash)
    )
}

/// True when `password` matches `hash` (from [`hash_node_password`]); a
/// malformed hash never matches.
pub fn verify_node_password(password: &str, hash: &str) -> bool {
    let Some(rest) = hash.strip_prefix(HASH_PREFIX) else {
        return false;
    };
    let mut parts = rest.split('$');
    let (Some(iters), Some(salt), Some(want), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let (Ok(iters), Ok(salt), Ok(want)) =
        (iters.parse::<u32>(), hex::decode(salt), hex::decode(want))
    else {
        return false;
    };
    if iters == 0 || iters > 10_000_000 {
        return false;
    }
    constant_time_eq(&pbkdf2(password, &salt, iters), &want)
}

/// The Secret holding a node's password hash.
pub fn node_password_secret(node: &str, hash: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": node_password_secret_name(node), "namespace": SYSTEM_NAMESPACE},
        "type": NODE_PASSWORD_TYPE,
        "immutable": true,
        "data": {"hash": b64(hash)},
    })
}

/// The hash stored in a node-password Secret.
pub fn node_password_hash(secret: &Value) -> Option<String> {
    secret_value(secret, "hash")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn bootstrap_token_shapes() {
        for (s, ok) in [
            ("abcdef.0123456789abcdef", true),
            ("abc123.zzzzzzzzzzzzzzzz", true),
            ("ABCDEF.0123456789abcdef", false),
            ("abcde.0123456789abcdef", false),
            ("abcdef.0123456789abcde", false),
            ("abcdef0123456789abcdef", false),
            ("abcdef.0123456789abcdef.x", false),
            ("abcdef-0123456789abcdef", false),
            ("", false),
        ] {
            assert_eq!(BootstrapToken::parse(s).is_some(), ok, "{s:?}");
        }
        let t = BootstrapToken::generate();
        assert_eq!(BootstrapToken::parse(&t.credential()), Some(t.clone()));
        assert_eq!(t.secret_name(), format!("bootstrap-token-{}", t.id));
        assert!(!format!("{t:?}").contains(&t.secret));
    }

    #[test]
    fn bootstrap_secret_checks() {
        let now = at("2025-01-01T00:00:00Z");
        let t = BootstrapToken::parse("abcdef.0123456789abcdef").unwrap();
        let wrong = BootstrapToken::parse("abcdef.ffffffffffffffff").unwrap();
        let later = Some(at("2025-01-02T00:00:00Z"));
        let earlier = Some(at("2024-12-31T23:59:59Z"));
        let good = bootstrap_secret(&t, later, "for n1");
        let forever = bootstrap_secret(&t, None, "");
        let expired = bootstrap_secret(&t, earlier, "");
        let mut not_auth = good.clone();
        not_auth["data"]
            .as_object_mut()
            .unwrap()
            .remove("usage-bootstrap-authentication");
        let mut opaque = good.clone();
        opaque["type"] = json!("Opaque");
        let mut bad_exp = good.clone();
        bad_exp["data"]["expiration"] = json!(b64("tomorrow"));
        type Case<'a> = (
            &'a str,
            Option<&'a Value>,
            &'a BootstrapToken,
            Result<(), TokenRejection>,
        );
        let cases: Vec<Case> = vec![
            ("valid", Some(&good), &t, Ok(())),
            ("no expiry", Some(&forever), &t, Ok(())),
            (
                "missing",
                None,
                &t,
                Err(TokenRejection::Unknown("abcdef".into())),
            ),
            (
                "wrong type",
                Some(&opaque),
                &t,
                Err(TokenRejection::Unknown("abcdef".into())),
            ),
            (
                "wrong secret",
                Some(&good),
                &wrong,
                Err(TokenRejection::WrongSecret("abcdef".into())),
            ),
            (
                "expired",
                Some(&expired),
                &t,
                Err(TokenRejection::Expired("abcdef".into())),
            ),
            (
                "bad expiration",
                Some(&bad_exp),
                &t,
                Err(TokenRejection::Expired("abcdef".into())),
            ),
            (
                "not for authentication",
                Some(&not_auth),
                &t,
                Err(TokenRejection::NotForAuthentication("abcdef".into())),
            ),
        ];
        for (what, secret, presented, want) in cases {
            assert_eq!(
                check_bootstrap_token(secret, presented, now),
                want,
                "{what}"
            );
        }
        let info = token_info(&good).unwrap();
        assert_eq!(info.id, "abcdef");
        assert_eq!(info.description, "for n1");
        assert_eq!(info.usages, vec!["authentication"]);
        assert_eq!(format_ttl(&info.expires, now), "24h");
        assert_eq!(
            format_ttl(&token_info(&forever).unwrap().expires, now),
            "<forever>"
        );
        assert!(is_expired(&expired, now));
        assert!(!is_expired(&forever, now));
        assert!(token_info(&opaque).is_none());
        // the secret never shows in a rejection
        assert!(
            !TokenRejection::WrongSecret("abcdef".into())
                .to_string()
                .contains("0123456789abcdef")
        );
    }

    #[test]
    fn ttl_format() {
        let now = at("2025-01-01T00:00:00Z");
        let after = |secs: i64| Some(Ok(now + chrono::Duration::seconds(secs)));
        for (secs, want) in [
            (0, "<expired>"),
            (-5, "<expired>"),
            (30, "30s"),
            (600, "10m"),
            (3 * 3600, "3h"),
            (5 * 86400, "5d"),
        ] {
            assert_eq!(format_ttl(&after(secs), now), want, "{secs}");
        }
        assert_eq!(format_ttl(&Some(Err("x".into())), now), "<invalid>");
    }

    #[test]
    fn node_password_hash_round_trip() {
        let h = hash_node_password("pw1");
        assert!(h.starts_with("$pbkdf2-sha256$"));
        assert!(!h.contains("pw1"));
        assert!(verify_node_password("pw1", &h));
        assert!(!verify_node_password("pw2", &h));
        assert_ne!(h, hash_node_password("pw1"), "salted");
        for bad in [
            "",
            "pw1",
            "$pbkdf2-sha256$x$00$00",
            "$pbkdf2-sha256$0$00$00",
            "$pbkdf2-sha256$1$zz$00",
        ] {
            assert!(!verify_node_password("pw1", bad), "{bad:?}");
        }
        let s = node_password_secret("n1", &h);
        assert_eq!(s["metadata"]["name"], "n1.node-password.skiff");
        assert_eq!(node_password_hash(&s).as_deref(), Some(h.as_str()));
        assert_eq!(new_node_password().len(), 32);
    }
}
