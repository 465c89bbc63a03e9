//! `/openapi/v2` and `/openapi/v3[/…]`: documents built by `api::openapi`
//! from the kinds table, cached until the table changes (a CRD comes or goes).
//!
//! Invariant: the cache key is the kinds-table generation, so a document is
//! never staler than the last CRD change.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::error::ApiError;
use crate::api::openapi::{self, ServedResource};

#[derive(Default)]
pub struct OpenApiCache {
    inner: Mutex<Cache>,
}

/// The v3 index and every group-version document, serialized.
type V3Docs = (Arc<Vec<u8>>, Arc<HashMap<String, Arc<Vec<u8>>>>);

#[derive(Default)]
struct Cache {
    generation: Option<u64>,
    v2: Option<Arc<Vec<u8>>>,
    v2_protobuf: Option<Arc<Vec<u8>>>,
    v3: Option<V3Docs>,
}

fn served(app: &AppState) -> Vec<ServedResource> {
    app.registry
        .kinds
        .all()
        .iter()
        .filter(|r| !r.virtual_create_only)
        .map(|r| ServedResource {
            group: r.group.clone(),
            version: r.version.clone(),
            kind: r.kind.clone(),
            plural: r.plural.clone(),
            namespaced: r.namespaced,
            has_status: r.has_status,
            has_scale: r.scale.is_some(),
            custom_schema: r.schema.as_deref().cloned(),
        })
        .collect()
}

impl OpenApiCache {
    fn with<T>(&self, app: &AppState, f: impl FnOnce(&mut Cache) -> T) -> T {
        let generation = app.registry.kinds.generation();
        let mut c = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if c.generation != Some(generation) {
            *c = Cache {
                generation: Some(generation),
                ..Cache::default()
            };
        }
        f(&mut c)
    }
}

fn json_bytes(body: Arc<Vec<u8>>) -> Response {
    let mut r = (StatusCode::OK, body.as_ref().clone()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

const V2_PROTOBUF: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

pub async fn v2(State(app): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let wants_protobuf = accept
        .split(',')
        .next()
        .is_some_and(|first| first.contains("com.github.proto-openapi.spec.v2"));
    if wants_protobuf {
        let body = app.openapi.with(&app, |c| {
            c.v2_protobuf
                .get_or_insert_with(|| {
                    Arc::new(openapi::v2_protobuf(&openapi::v2_document(&served(&app))))
                })
                .clone()
        });
        let mut r = (StatusCode::OK, body.as_ref().clone()).into_response();
        r.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(V2_PROTOBUF));
        return r;
    }
    let body = app.openapi.with(&app, |c| {
        c.v2.get_or_insert_with(|| {
            Arc::new(serde_json::to_vec(&openapi::v2_document(&served(&app))).unwrap_or_default())
        })
        .clone()
    });
    json_bytes(body)
}

/// Build (once per kinds generation) the v3 index and every group-version document.
fn v3(app: &AppState) -> V3Docs {
    app.openapi.with(app, |c| {
        c.v3.get_or_insert_with(|| {
            let (index, docs) = openapi::v3_all(&served(app));
            let docs: HashMap<String, Arc<Vec<u8>>> = docs
                .into_iter()
                .map(|(k, v)| (k, Arc::new(serde_json::to_vec(&v).unwrap_or_default())))
                .collect();
            (
                Arc::new(serde_json::to_vec(&index).unwrap_or_default()),
                Arc::new(docs),
            )
        })
        .clone()
    })
}

pub async fn v3_index(State(app): State<Arc<AppState>>) -> Response {
    json_bytes(v3(&app).0)
}

pub async fn v3_doc(State(app): State<Arc<AppState>>, Path(path): Path<String>) -> Response {
    let (_, docs) = v3(&app);
    match docs.get(path.trim_matches('/')) {
        Some(body) => {
            let mut r = json_bytes(body.clone());
            r.headers_mut().insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, immutable"),
            );
            r
        }
        None => ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
        .into_response(),
    }
}
