//! Discovery endpoints: `/version`, legacy `/api` `/apis` `/api/v1`
//! `/apis/<g>[/<v>]`, and aggregated discovery (apidiscovery.k8s.io v2 and
//! v2beta1) negotiated from `Accept`.
//!
//! Invariant: everything is derived from the kinds table at request time, so
//! CRDs appear and disappear live.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::AppState;
use super::error::ApiError;
use super::handlers::json_response;
use crate::api::kinds::{Kinds, Resource};

pub const KUBE_VERSION: &str = "v1.33.0+skiff";

pub async fn version() -> Response {
    json_response(
        StatusCode::OK,
        &json!({
            "major": "1",
            "minor": "33",
            "emulationMajor": "1",
            "emulationMinor": "33",
            "minCompatibilityMajor": "1",
            "minCompatibilityMinor": "32",
            "gitVersion": KUBE_VERSION,
            "gitCommit": env!("CARGO_PKG_VERSION"),
            "gitTreeState": "clean",
            "buildDate": "2026-01-01T00:00:00Z",
            "goVersion": "go1.24.0",
            "compiler": "gc",
            "platform": format!("{}/{}", std::env::consts::OS, if cfg!(target_arch = "x86_64") { "amd64" } else if cfg!(target_arch = "aarch64") { "arm64" } else { std::env::consts::ARCH }),
        }),
        &[],
    )
}

/// Which aggregated discovery version the client asked for, if any.
fn aggregated(headers: &HeaderMap) -> Option<&'static str> {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    for part in accept.split(',') {
        let p: Vec<&str> = part.split(';').map(str::trim).collect();
        let has = |kv: &str| p.contains(&kv);
        if p.first().is_some_and(|m| *m == "application/json")
            && has("g=apidiscovery.k8s.io")
            && has("as=APIGroupDiscoveryList")
        {
            if has("v=v2") {
                return Some("v2");
            }
            if has("v=v2beta1") {
                return Some("v2beta1");
            }
        }
        if p.first().is_some_and(|m| *m == "application/json") && !part.contains("as=") {
            return None;
        }
    }
    None
}

struct Sub {
    name: &'static str,
    verbs: &'static [&'static str],
    kind: Option<(&'static str, &'static str, &'static str)>,
}

fn subresources(r: &Resource) -> Vec<Sub> {
    let mut out = Vec::new();
    if r.has_status {
        out.push(Sub {
            name: "status",
            verbs: &["get", "patch", "update"],
            kind: None,
        });
    }
    if r.scale.is_some() {
        out.push(Sub {
            name: "scale",
            verbs: &["get", "patch", "update"],
            kind: Some(("autoscaling", "v1", "Scale")),
        });
    }
    match (r.group.as_str(), r.kind.as_str(), r.custom) {
        ("", "Pod", false) => {
            out.push(Sub {
                name: "attach",
                verbs: &["create", "get"],
                kind: Some(("", "v1", "PodAttachOptions")),
            });
            out.push(Sub {
                name: "binding",
                verbs: &["create"],
                kind: Some(("", "v1", "Binding")),
            });
            out.push(Sub {
                name: "ephemeralcontainers",
                verbs: &["get", "patch", "update"],
                kind: None,
            });
            out.push(Sub {
                name: "eviction",
                verbs: &["create"],
                kind: Some(("policy", "v1", "Eviction")),
            });
            out.push(Sub {
                name: "exec",
                verbs: &["create", "get"],
                kind: Some(("", "v1", "PodExecOptions")),
            });
            out.push(Sub {
                name: "log",
                verbs: &["get"],
                kind: None,
            });
            out.push(Sub {
                name: "portforward",
                verbs: &["create", "get"],
                kind: Some(("", "v1", "PodPortForwardOptions")),
            });
            out.push(Sub {
                name: "proxy",
                verbs: &["create", "delete", "get", "patch", "update"],
                kind: Some(("", "v1", "PodProxyOptions")),
            });
        }
        ("", "Namespace", false) => {
            out.push(Sub {
                name: "finalize",
                verbs: &["update"],
                kind: None,
            });
        }
        ("", "Node", false) => {
            out.push(Sub {
                name: "proxy",
                verbs: &["create", "delete", "get", "patch", "update"],
                kind: Some(("", "v1", "NodeProxyOptions")),
            });
        }
        ("", "Service", false) => {
            out.push(Sub {
                name: "proxy",
                verbs: &["create", "delete", "get", "patch", "update"],
                kind: Some(("", "v1", "ServiceProxyOptions")),
            });
        }
        _ => {}
    }
    out
}

fn legacy_resources(kinds: &Kinds, group: &str, version: &str) -> Value {
    let mut resources: Vec<Arc<Resource>> = kinds.resources_in(group, version);
    resources.sort_by(|a, b| a.plural.cmp(&b.plural));
    let mut list = Vec::new();
    for r in &resources {
        let mut e = json!({
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": r.verbs(),
        });
        if !r.short_names.is_empty() {
            e["shortNames"] = json!(r.short_names);
        }
        if !r.categories.is_empty() {
            e["categories"] = json!(r.categories);
        }
        if !r.virtual_create_only {
            e["storageVersionHash"] = json!(storage_hash(r));
        }
        list.push(e);
        for s in subresources(r) {
            let mut e = json!({
                "name": format!("{}/{}", r.plural, s.name),
                "singularName": "",
                "namespaced": r.namespaced,
                "kind": s.kind.map(|k| k.2).unwrap_or(&r.kind),
                "verbs": s.verbs,
            });
            if let Some((g, v, _)) = s.kind
                && (g != r.group || v != r.version)
            {
                e["group"] = json!(g);
                e["version"] = json!(v);
            }
            list.push(e);
        }
    }
    json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": crate::api::kinds::api_version(group, version),
        "resources": list,
    })
}

fn storage_hash(r: &Resource) -> String {
    use base64::Engine;
    use sha2::Digest;
    let d = sha2::Sha256::digest(format!("{}/{}/{}", r.group, r.storage_version, r.kind));
    base64::engine::general_purpose::STANDARD.encode(&d[..8])
}

fn aggregated_group(kinds: &Kinds, group: &str, versions: &[String]) -> Value {
    let mut vs = Vec::new();
    for v in versions {
        let mut resources = kinds.resources_in(group, v);
        resources.sort_by(|a, b| a.plural.cmp(&b.plural));
        let rs: Vec<Value> = resources
            .iter()
            .map(|r| {
                let mut e = json!({
                    "resource": r.plural,
                    "responseKind": { "group": r.group, "version": r.version, "kind": r.kind },
                    "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
                    "singularResource": r.singular,
                    "verbs": r.verbs(),
                });
                if !r.short_names.is_empty() {
                    e["shortNames"] = json!(r.short_names);
                }
                if !r.categories.is_empty() {
                    e["categories"] = json!(r.categories);
                }
                let subs: Vec<Value> = subresources(r)
                    .iter()
                    .map(|s| {
                        let (g, ver, k) = s.kind.unwrap_or((&r.group, &r.version, &r.kind));
                        json!({
                            "subresource": s.name,
                            "responseKind": { "group": g, "version": ver, "kind": k },
                            "verbs": s.verbs,
                        })
                    })
                    .collect();
                if !subs.is_empty() {
                    e["subresources"] = json!(subs);
                }
                e
            })
            .collect();
        vs.push(json!({ "version": v, "resources": rs, "freshness": "Current" }));
    }
    json!({ "metadata": { "name": group, "creationTimestamp": null }, "versions": vs })
}

fn aggregated_response(kinds: &Kinds, legacy: bool, v: &str) -> Response {
    let mut items: Vec<Value> = kinds
        .groups()
        .iter()
        .filter(|(g, _)| g.is_empty() == legacy)
        .map(|(g, vs)| aggregated_group(kinds, g, vs))
        .collect();
    if !legacy {
        items.push(super::metrics_api::aggregated_group());
    }
    let body = json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": format!("apidiscovery.k8s.io/{v}"),
        "metadata": {},
        "items": items,
    });
    let mut resp = (
        StatusCode::OK,
        serde_json::to_vec(&body).unwrap_or_default(),
    )
        .into_response();
    if let Ok(ct) = HeaderValue::from_str(&format!(
        "application/json;g=apidiscovery.k8s.io;v={v};as=APIGroupDiscoveryList"
    )) {
        resp.headers_mut().insert(header::CONTENT_TYPE, ct);
    }
    resp.headers_mut()
        .insert("vary", HeaderValue::from_static("Accept"));
    resp
}

pub async fn api(State(app): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if let Some(v) = aggregated(&headers) {
        return aggregated_response(&app.registry.kinds, true, v);
    }
    json_response(
        StatusCode::OK,
        &json!({
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{ "clientCIDR": "0.0.0.0/0", "serverAddress": app.advertise.clone() }],
        }),
        &[],
    )
}

fn group_json(group: &str, versions: &[String]) -> Value {
    let vs: Vec<Value> = versions
        .iter()
        .map(|v| json!({ "groupVersion": format!("{group}/{v}"), "version": v }))
        .collect();
    json!({
        "name": group,
        "versions": vs,
        "preferredVersion": vs.first().cloned().unwrap_or(Value::Null),
    })
}

pub async fn apis(State(app): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let kinds = &app.registry.kinds;
    if let Some(v) = aggregated(&headers) {
        return aggregated_response(kinds, false, v);
    }
    let mut groups: Vec<Value> = kinds
        .groups()
        .iter()
        .filter(|(g, _)| !g.is_empty())
        .map(|(g, vs)| group_json(g, vs))
        .collect();
    groups.push(super::metrics_api::group_json());
    json_response(
        StatusCode::OK,
        &json!({ "kind": "APIGroupList", "apiVersion": "v1", "groups": groups }),
        &[],
    )
}

pub fn core_v1(app: &AppState) -> Response {
    json_response(
        StatusCode::OK,
        &legacy_resources(&app.registry.kinds, "", "v1"),
        &[],
    )
}

pub fn group(app: &AppState, group: &str) -> Response {
    match app
        .registry
        .kinds
        .groups()
        .iter()
        .find(|(g, _)| g == group && !g.is_empty())
    {
        Some((g, vs)) => {
            let mut v = group_json(g, vs);
            v["kind"] = json!("APIGroup");
            v["apiVersion"] = json!("v1");
            json_response(StatusCode::OK, &v, &[])
        }
        None => ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
        .into_response(),
    }
}

pub fn group_version(app: &AppState, group: &str, version: &str) -> Response {
    if app.registry.kinds.resources_in(group, version).is_empty() {
        return ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
        .into_response();
    }
    json_response(
        StatusCode::OK,
        &legacy_resources(&app.registry.kinds, group, version),
        &[],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_lists_subresources() {
        let k = Kinds::with_builtins();
        let v = legacy_resources(&k, "apps", "v1");
        let names: Vec<&str> = v["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        assert!(names.contains(&"deployments"));
        assert!(names.contains(&"deployments/scale"));
        assert!(names.contains(&"deployments/status"));
    }

    #[test]
    fn accept_parsing() {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, HeaderValue::from_static("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json"));
        assert_eq!(aggregated(&h), Some("v2"));
        h.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/json, */*"),
        );
        assert_eq!(aggregated(&h), None);
    }
}
