//! Authentication: x509 client certificates verified by the TLS layer
//! against the client CA, and bearer tokens (the server token for now).
//! Anonymous requests get 401 everywhere except the health and CA endpoints.
//!
//! Invariant: the `Identity` a handler sees was set here (or by the
//! in-process client layer, which the TLS listener can never reach); a
//! request header can never choose it.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::error::ApiError;
use super::registry::Identity;

/// Identity proven by the TLS client certificate of the connection.
#[derive(Clone, Debug)]
pub struct ConnIdentity(pub Option<Identity>);

/// Marker set only by the in-process client: the identity is trusted as is.
#[derive(Clone, Debug)]
pub struct InProcess(pub Identity);

pub struct Authenticator {
    tokens: Vec<(String, Identity)>,
}

impl Authenticator {
    /// `server_token` is the full `K10…::server:<secret>` token.
    pub fn new(server_token: &str) -> Self {
        let mut tokens = Vec::new();
        let admin = Identity {
            user: "system:skiff:server".into(),
            groups: vec!["system:masters".into(), "system:authenticated".into()],
        };
        tokens.push((server_token.to_string(), admin.clone()));
        if let Some((_, secret)) = server_token.rsplit_once("::server:") {
            tokens.push((secret.to_string(), admin));
        }
        Authenticator { tokens }
    }

    pub fn token_identity(&self, token: &str) -> Option<Identity> {
        if token.is_empty() {
            return None;
        }
        self.tokens
            .iter()
            .find(|(t, _)| constant_time_eq(t.as_bytes(), token.as_bytes()))
            .map(|(_, id)| id.clone())
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A bearer token's identity: the server token, or a service-account JWT
/// whose service account (and bound object) still exist with the same uid.
pub async fn authenticate_token(app: &AppState, token: &str) -> Option<Identity> {
    if let Some(id) = app.authn.token_identity(token) {
        return Some(id);
    }
    let signer = app.sa_signer.as_ref()?;
    let now = chrono::Utc::now().timestamp();
    let claims = signer
        .verify(token, &[super::satoken::ISSUER], now)
        .map_err(|e| tracing::debug!("service-account token rejected: {e}"))
        .ok()?;
    let sub = super::satoken::subject(&claims).ok()?;
    let uid_of = |plural: &'static str, ns: Option<String>, name: String| async move {
        let res = app.registry.kinds.get("", "v1", plural)?;
        let obj = app.registry.get(&res, ns.as_deref(), &name).await.ok()?;
        let deleting = obj.pointer("/metadata/deletionTimestamp").is_some();
        let uid = obj.pointer("/metadata/uid")?.as_str()?.to_string();
        Some((uid, deleting))
    };
    let (sa_uid, _) = uid_of(
        "serviceaccounts",
        Some(sub.namespace.clone()),
        sub.name.clone(),
    )
    .await?;
    if sa_uid != sub.uid {
        return None;
    }
    if let Some((kind, name, uid)) = &sub.bound {
        let (plural, ns) = match *kind {
            "Pod" => ("pods", Some(sub.namespace.clone())),
            "Secret" => ("secrets", Some(sub.namespace.clone())),
            _ => ("nodes", None),
        };
        let (got, deleting) = uid_of(plural, ns, name.clone()).await?;
        if (!uid.is_empty() && got != *uid) || (*kind == "Pod" && deleting) {
            return None;
        }
    }
    Some(Identity {
        user: format!("system:serviceaccount:{}:{}", sub.namespace, sub.name),
        groups: vec![
            "system:serviceaccounts".into(),
            format!("system:serviceaccounts:{}", sub.namespace),
            "system:authenticated".into(),
        ],
    })
}

/// Reachable without an identity. The join endpoint checks its own
/// credential (the join token as HTTP Basic auth, see `join`).
const PUBLIC_PATHS: &[&str] = &[
    "/healthz",
    "/livez",
    "/readyz",
    "/cacerts",
    "/ping",
    super::join::NODE_CREDENTIALS_PATH,
];

pub async fn middleware(
    State(app): State<Arc<AppState>>,
    mut req: Request,
    next: Next,
) -> Response {
    let in_process = req.extensions().get::<InProcess>().map(|x| x.0.clone());
    let from_cert = req
        .extensions()
        .get::<ConnIdentity>()
        .and_then(|c| c.0.clone());
    let bearer = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(|t| t.trim().to_string());
    req.extensions_mut().remove::<Identity>();
    let identity = if let Some(id) = in_process {
        Some(id)
    } else if let Some(token) = bearer {
        match authenticate_token(&app, &token).await {
            Some(id) => Some(id),
            None => return ApiError::unauthorized().into_response(),
        }
    } else {
        from_cert
    };
    match identity {
        Some(mut id) => {
            if !id.groups.iter().any(|g| g == "system:authenticated") {
                id.groups.push("system:authenticated".into());
            }
            req.extensions_mut().insert(id);
            next.run(req).await
        }
        None => {
            let path = req.uri().path();
            let public = PUBLIC_PATHS
                .iter()
                .any(|p| path == *p || path.starts_with(&format!("{p}/")));
            if public {
                next.run(req).await
            } else {
                ApiError::unauthorized().into_response()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens() {
        let a = Authenticator::new("K10abc::server:s3cret");
        assert!(a.token_identity("K10abc::server:s3cret").is_some());
        assert!(a.token_identity("s3cret").is_some());
        assert!(a.token_identity("nope").is_none());
        assert!(a.token_identity("").is_none());
    }
}
