//! Review kinds answered without storage: `SelfSubjectReview` (kubectl auth
//! whoami), `SelfSubjectAccessReview` / `SelfSubjectRulesReview` /
//! `SubjectAccessReview` (kubectl auth can-i) and `TokenReview`.
//!
//! Invariant: until RBAC enforcement lands every authenticated user may do
//! everything, and the answers say so consistently.

use serde_json::{Value, json};

use super::AppState;
use super::error::{ApiError, ApiResult};
use super::registry::{Identity, now_rfc3339};
use crate::api::kinds::Resource;

pub async fn handle(
    app: &AppState,
    res: &Resource,
    ns: Option<&str>,
    identity: &Identity,
    mut obj: Value,
) -> ApiResult<Value> {
    obj["apiVersion"] = json!(res.api_version());
    obj["kind"] = json!(res.kind);
    let meta = obj.get("metadata").cloned().unwrap_or(json!({}));
    let mut meta = if meta.is_object() { meta } else { json!({}) };
    meta["creationTimestamp"] = json!(now_rfc3339());
    if let Some(ns) = ns {
        meta["namespace"] = json!(ns);
    }
    obj["metadata"] = meta;
    match res.kind.as_str() {
        "SelfSubjectReview" => {
            obj["status"] =
                json!({ "userInfo": { "username": identity.user, "groups": identity.groups } });
        }
        "SelfSubjectAccessReview" | "SubjectAccessReview" | "LocalSubjectAccessReview" => {
            if obj.get("spec").is_none_or(|s| !s.is_object()) {
                return Err(ApiError::invalid(
                    &res.group,
                    &res.kind,
                    "",
                    vec![super::error::StatusCause {
                        reason: "FieldValueRequired".into(),
                        message: "Required value: exactly one of nonResourceAttributes or resourceAttributes must be specified".into(),
                        field: "spec.resourceAttributes".into(),
                    }],
                ));
            }
            obj["status"] = json!({ "allowed": true, "reason": "skiff: every authenticated user is allowed (RBAC enforcement is not enabled)" });
        }
        "SelfSubjectRulesReview" => {
            obj["status"] = json!({
                "resourceRules": [{ "verbs": ["*"], "apiGroups": ["*"], "resources": ["*"] }],
                "nonResourceRules": [{ "verbs": ["*"], "nonResourceURLs": ["*"] }],
                "incomplete": false,
            });
        }
        "TokenReview" => {
            let token = obj
                .pointer("/spec/token")
                .and_then(Value::as_str)
                .unwrap_or_default();
            obj["status"] = match super::authn::authenticate_token(app, token).await {
                Some(id) => {
                    json!({ "authenticated": true, "user": { "username": id.user, "groups": id.groups } })
                }
                None => json!({ "authenticated": false }),
            };
        }
        other => return Err(ApiError::not_found(&res.group, &res.plural, other)),
    }
    Ok(obj)
}
