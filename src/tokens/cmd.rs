//! `skiff token create|list|delete`: bootstrap-token Secrets managed through
//! the API with the admin credentials (the shell around `tokens`).
//!
//! Credentials: `--kubeconfig`, else `/etc/skiff/skiff.yaml`, else the admin
//! client certificate under `<data-dir>/server/tls` with `--server`.
//! Invariant: only `create` ever prints a token secret (that is its output).

use std::path::PathBuf;

use base64::Engine as _;
use chrono::Utc;
use serde_json::{Value, json};

use super::{BootstrapToken, SYSTEM_NAMESPACE};
use crate::cli::{TokenApiArgs, TokenCommand};

const DEFAULT_KUBECONFIG: &str = "/etc/skiff/skiff.yaml";

#[derive(Debug, thiserror::Error)]
pub enum TokenCmdError {
    #[error("{0}")]
    Usage(String),
    #[error("no admin credentials: {0}")]
    Credentials(String),
    #[error("{0}")]
    Api(String),
}

/// Run a token command; returns what to print on stdout.
pub async fn run(cmd: &TokenCommand) -> Result<String, TokenCmdError> {
    match cmd {
        TokenCommand::Create(a) => {
            let ttl = crate::config::parse_duration(&a.ttl).ok_or_else(|| {
                TokenCmdError::Usage(format!(
                    "invalid value {:?} for --ttl: expected a duration such as 24h, 30m or 0 (never expires)",
                    a.ttl
                ))
            })?;
            let client = admin_client(&a.api).await?;
            create(&client, ttl, &a.description).await
        }
        TokenCommand::List(a) => list(&admin_client(a).await?).await,
        TokenCommand::Delete(a) => {
            let ids = a
                .ids
                .iter()
                .map(|s| token_id_of(s))
                .collect::<Result<Vec<_>, _>>()?;
            let client = admin_client(&a.api).await?;
            let mut out = String::new();
            for id in ids {
                delete(&client, &id).await?;
                out.push_str(&format!("bootstrap token \"{id}\" deleted\n"));
            }
            Ok(out)
        }
    }
}

/// The token id in `<id>`, `<id>.<secret>` or `K10<hash>::<id>.<secret>`.
fn token_id_of(s: &str) -> Result<String, TokenCmdError> {
    let s = s.trim();
    let cred = s.rsplit_once("::").map_or(s, |(_, c)| c);
    let id = cred.split_once('.').map_or(cred, |(id, _)| id);
    if super::is_token_id(id) {
        Ok(id.to_string())
    } else {
        Err(TokenCmdError::Usage(format!(
            "invalid token id {id:?}: expected 6 characters [a-z0-9] (the TOKEN ID column of `skiff token list`)"
        )))
    }
}

async fn admin_client(a: &TokenApiArgs) -> Result<kube::Client, TokenCmdError> {
    let path = match &a.kubeconfig {
        Some(p) => Some(p.clone()),
        None => Some(PathBuf::from(DEFAULT_KUBECONFIG)).filter(|p| p.exists()),
    };
    if let Some(path) = path {
        return crate::agent::join::client_from_kubeconfig(&path)
            .await
            .map_err(|e| TokenCmdError::Credentials(e.to_string()));
    }
    let tls = a.data_dir.join("server/tls");
    let read = |name: &str| -> Result<String, TokenCmdError> {
        let p = tls.join(name);
        std::fs::read_to_string(&p).map_err(|e| {
            TokenCmdError::Credentials(format!(
                "{DEFAULT_KUBECONFIG} does not exist and {} is unreadable ({e}); pass --kubeconfig or --data-dir",
                p.display()
            ))
        })
    };
    let (ca, cert, key) = (
        read("server-ca.crt")?,
        read("client-admin.crt")?,
        read("client-admin.key")?,
    );
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    // JSON is YAML: build the kubeconfig in memory
    let doc = json!({
        "apiVersion": "v1", "kind": "Config", "current-context": "default",
        "clusters": [{"name": "default", "cluster": {"server": a.server, "certificate-authority-data": b64(&ca)}}],
        "users": [{"name": "default", "user": {"client-certificate-data": b64(&cert), "client-key-data": b64(&key)}}],
        "contexts": [{"name": "default", "context": {"cluster": "default", "user": "default"}}],
    });
    let kc = kube::config::Kubeconfig::from_yaml(&doc.to_string())
        .map_err(|e| TokenCmdError::Credentials(e.to_string()))?;
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .map_err(|e| TokenCmdError::Credentials(e.to_string()))?;
    kube::Client::try_from(cfg).map_err(|e| TokenCmdError::Credentials(e.to_string()))
}

fn api_err(what: &str, e: kube::Error) -> TokenCmdError {
    match e {
        kube::Error::Api(s) => TokenCmdError::Api(format!("{what}: {}", s.message)),
        other => TokenCmdError::Api(format!("{what}: {other}")),
    }
}

async fn raw(
    client: &kube::Client,
    method: http::Method,
    path: &str,
    body: Option<&Value>,
) -> Result<String, kube::Error> {
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(body.map(|b| b.to_string().into_bytes()).unwrap_or_default())
        .map_err(kube::Error::HttpError)?;
    client.request_text(req).await
}

fn secrets_path(name: Option<&str>) -> String {
    match name {
        Some(n) => format!("/api/v1/namespaces/{SYSTEM_NAMESPACE}/secrets/{n}"),
        None => format!("/api/v1/namespaces/{SYSTEM_NAMESPACE}/secrets"),
    }
}

async fn create(
    client: &kube::Client,
    ttl: std::time::Duration,
    description: &str,
) -> Result<String, TokenCmdError> {
    let ca = raw(client, http::Method::GET, "/cacerts", None)
        .await
        .map_err(|e| api_err("reading the server CA", e))?;
    let expires = (!ttl.is_zero())
        .then(|| {
            chrono::Duration::from_std(ttl)
                .ok()
                .and_then(|d| Utc::now().checked_add_signed(d))
        })
        .map(|t| t.ok_or_else(|| TokenCmdError::Usage("--ttl is too large".into())))
        .transpose()?;
    // a random id can collide with an existing token: retry a few times
    for _ in 0..5 {
        let token = BootstrapToken::generate();
        let secret = super::bootstrap_secret(&token, expires, description);
        match raw(
            client,
            http::Method::POST,
            &secrets_path(None),
            Some(&secret),
        )
        .await
        {
            Ok(_) => {
                return Ok(format!(
                    "K10{}::{}\n",
                    crate::pki::ca_hash(&ca),
                    token.credential()
                ));
            }
            Err(kube::Error::Api(s)) if s.code == 409 => continue,
            Err(e) => return Err(api_err("creating the bootstrap token", e)),
        }
    }
    Err(TokenCmdError::Api(
        "creating the bootstrap token: token id collisions; try again".into(),
    ))
}

async fn list(client: &kube::Client) -> Result<String, TokenCmdError> {
    let text = raw(client, http::Method::GET, &secrets_path(None), None)
        .await
        .map_err(|e| api_err("listing bootstrap tokens", e))?;
    let v: Value = serde_json::from_str(&text)
        .map_err(|e| TokenCmdError::Api(format!("listing bootstrap tokens: {e}")))?;
    let now = Utc::now();
    let mut infos: Vec<super::TokenInfo> = v
        .get("items")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(super::token_info)
        .collect();
    infos.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(render_table(&infos, now))
}

/// The `skiff token list` table (pure).
pub fn render_table(infos: &[super::TokenInfo], now: chrono::DateTime<Utc>) -> String {
    let mut rows = vec![[
        "TOKEN ID".to_string(),
        "TTL".into(),
        "EXPIRES".into(),
        "USAGES".into(),
        "DESCRIPTION".into(),
    ]];
    for i in infos {
        let expires = match &i.expires {
            None => "<never>".to_string(),
            Some(Ok(t)) => t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            Some(Err(s)) => s.clone(),
        };
        let desc = if i.description.is_empty() {
            "<none>".to_string()
        } else {
            i.description.clone()
        };
        rows.push([
            i.id.clone(),
            super::format_ttl(&i.expires, now),
            expires,
            i.usages.join(","),
            desc,
        ]);
    }
    let widths: Vec<usize> = (0..5)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in &rows {
        let mut line = String::new();
        for (c, cell) in r.iter().enumerate() {
            if c + 1 < r.len() {
                line.push_str(&format!("{cell:<w$}   ", w = widths[c]));
            } else {
                line.push_str(cell);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

async fn delete(client: &kube::Client, id: &str) -> Result<(), TokenCmdError> {
    let name = super::bootstrap_secret_name(id);
    match raw(
        client,
        http::Method::DELETE,
        &secrets_path(Some(&name)),
        None,
    )
    .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Err(TokenCmdError::Api(format!(
            "bootstrap token \"{id}\" not found"
        ))),
        Err(e) => Err(api_err(&format!("deleting bootstrap token \"{id}\""), e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_ids_from_any_form() {
        for (s, want) in [
            ("abcdef", Some("abcdef")),
            ("abcdef.0123456789abcdef", Some("abcdef")),
            ("K10ff::abcdef.0123456789abcdef", Some("abcdef")),
            ("ABCDEF", None),
            ("abc", None),
        ] {
            assert_eq!(token_id_of(s).ok().as_deref(), want, "{s}");
        }
    }

    #[test]
    fn table_columns() {
        let now = chrono::DateTime::parse_from_rfc3339("2025-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let infos = vec![super::super::TokenInfo {
            id: "abcdef".into(),
            expires: Some(Ok(now + chrono::Duration::hours(24))),
            description: "for n1".into(),
            usages: vec!["authentication".into()],
        }];
        let t = render_table(&infos, now);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("TOKEN ID   TTL   EXPIRES"), "{t}");
        assert!(
            lines[1].starts_with("abcdef     24h   2025-01-02T00:00:00Z"),
            "{t}"
        );
        assert!(lines[1].ends_with("for n1"), "{t}");
    }
}
