//! Resource endpoints: parses `/api/v1/...` and `/apis/<g>/<v>/...` paths
//! and query parameters, calls the registry, and encodes the answer.
//!
//! Invariant: this file decodes and encodes only; object semantics live in
//! `registry`. Every path that does not name a served resource is a 404
//! `Status`; every verb a resource does not support is a 405.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::AppState;
use super::error::{ApiError, ApiResult};
use super::negotiate::{self, IncludeObject, Output};
use super::registry::{
    DeleteOptions, FieldValidation, Identity, ListOptions, MAX_BODY, Part, PatchType, Propagation,
    WriteOptions, Written,
};
use super::{reviews, watch};
use crate::api::kinds::Resource;
use crate::api::selector::{FieldSelector, LabelSelector};

/// A parsed resource path.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub group: String,
    pub version: String,
    pub namespace: Option<String>,
    pub plural: String,
    pub name: Option<String>,
    pub sub: Option<String>,
}

/// Parse a request path into a target; `None` if it is not a resource path.
/// `is_namespaced` tells whether a plural names a namespaced resource in the
/// group/version (needed to read `/namespaces/{name}/status` correctly).
pub fn parse_path(path: &str, is_namespaced: impl Fn(&str, &str, &str) -> bool) -> Option<Target> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segs.as_slice() {
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return None,
    };
    if rest.is_empty() || rest.iter().any(|s| s.is_empty()) {
        return None;
    }
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    let (namespace, rest) =
        if rest[0] == "namespaces" && rest.len() >= 3 && is_namespaced(group, version, rest[2]) {
            (Some(decode(rest[1])), &rest[2..])
        } else {
            (None, rest)
        };
    Some(Target {
        group: group.to_string(),
        version: version.to_string(),
        namespace,
        plural: rest[0].to_string(),
        name: rest.get(1).map(|s| decode(s)),
        sub: if rest.len() > 2 {
            Some(rest[2..].join("/"))
        } else {
            None
        },
    })
}

pub type Query = HashMap<String, String>;

/// A request addressed to one named object (or one of its subresources).
pub struct ItemRequest<'a> {
    pub app: &'a Arc<AppState>,
    pub res: &'a Arc<Resource>,
    pub ns: Option<&'a str>,
    pub name: &'a str,
    pub method: &'a Method,
    pub q: &'a Query,
    pub headers: &'a HeaderMap,
    pub body: Bytes,
    /// The raw URI (repeated query keys such as exec's `command`).
    pub uri: &'a Uri,
    /// The connection upgrade (exec, attach, port-forward), if any.
    pub upgrade: Option<hyper::upgrade::OnUpgrade>,
}

pub fn parse_query(uri: &Uri) -> ApiResult<Query> {
    match uri.query() {
        None => Ok(HashMap::new()),
        Some(q) => {
            let pairs: Vec<(String, String)> = serde_urlencoded::from_str(q)
                .map_err(|e| ApiError::bad_request(format!("invalid query string: {e}")))?;
            Ok(pairs.into_iter().collect())
        }
    }
}

fn qbool(q: &Query, k: &str) -> bool {
    matches!(q.get(k).map(String::as_str), Some("true") | Some("1"))
}

/// A boolean query parameter that must parse when present (400 otherwise).
fn qbool_strict(q: &Query, k: &str) -> ApiResult<bool> {
    match q.get(k).map(String::as_str) {
        None | Some("") | Some("false") | Some("0") | Some("False") => Ok(false),
        Some("true") | Some("1") | Some("True") => Ok(true),
        Some(other) => Err(ApiError::bad_request(format!(
            "failed to parse {k}={other:?}: strconv.ParseBool: parsing {other:?}: invalid syntax"
        ))),
    }
}

fn invalid_options(kind: &str, field: &str, message: String) -> ApiError {
    ApiError::invalid(
        "meta.k8s.io",
        kind,
        "",
        vec![super::error::StatusCause {
            reason: "FieldValueNotSupported".into(),
            message,
            field: field.into(),
        }],
    )
}

pub fn write_options(
    q: &Query,
    headers: &HeaderMap,
    default_manager: &str,
) -> ApiResult<WriteOptions> {
    let dry_run = match q.get("dryRun").map(String::as_str) {
        None | Some("") => false,
        Some("All") => true,
        Some(other) => {
            return Err(invalid_options(
                "CreateOptions",
                "dryRun",
                format!("Unsupported value: []string{{\"{other}\"}}: supported values: \"All\""),
            ));
        }
    };
    let field_manager = match q.get("fieldManager") {
        Some(m) if !m.is_empty() => {
            if m.len() > 128 || m.chars().any(|c| c.is_control()) {
                return Err(ApiError::unprocessable(format!(
                    "fieldManager: Invalid value: {m:?}: must be less than 128 characters and printable"
                )));
            }
            m.clone()
        }
        _ => {
            let ua = headers
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .unwrap_or(default_manager);
            let prefix = ua.split('/').next().unwrap_or(default_manager);
            if prefix.is_empty() {
                default_manager.to_string()
            } else {
                prefix.chars().take(128).collect()
            }
        }
    };
    Ok(WriteOptions {
        dry_run,
        field_manager,
        field_validation: FieldValidation::parse(q.get("fieldValidation").map(String::as_str))
            .map_err(|_| {
                invalid_options(
                    "CreateOptions",
                    "fieldValidation",
                    format!(
                        "Unsupported value: {:?}: supported values: \"Ignore\", \"Strict\", \"Warn\"",
                        q.get("fieldValidation").cloned().unwrap_or_default()
                    ),
                )
            })?,
    })
}

fn list_options(q: &Query, res: &Resource) -> ApiResult<ListOptions> {
    let label = match q.get("labelSelector") {
        Some(s) => LabelSelector::parse(s)
            .map_err(|e| ApiError::bad_request(format!("unable to parse requirement: {e}")))?,
        None => LabelSelector::default(),
    };
    let field = match q.get("fieldSelector") {
        Some(s) => FieldSelector::parse(s, &res.group, &res.kind).map_err(|e| {
            if e.starts_with("field label not supported") {
                ApiError::bad_request(e.to_string())
            } else {
                ApiError::bad_request(e)
            }
        })?,
        None => FieldSelector::default(),
    };
    let limit = match q.get("limit") {
        Some(l) if !l.is_empty() => {
            let n: i64 = l
                .parse()
                .map_err(|_| ApiError::bad_request(format!("invalid limit: {l:?}")))?;
            n.max(0) as usize
        }
        _ => 0,
    };
    if let Some(t) = q.get("timeoutSeconds")
        && t.parse::<u64>().is_err()
    {
        return Err(ApiError::bad_request(format!(
            "invalid timeoutSeconds: {t:?}"
        )));
    }
    qbool_strict(q, "watch")?;
    qbool_strict(q, "allowWatchBookmarks")?;
    if let Some(rv) = q.get("resourceVersion").filter(|s| !s.is_empty())
        && rv.parse::<u64>().is_err()
    {
        return Err(ApiError::bad_request(format!(
            "invalid resource version \"{rv}\""
        )));
    }
    let rv_set = q.get("resourceVersion").is_some_and(|s| !s.is_empty());
    match q.get("resourceVersionMatch").map(String::as_str) {
        None | Some("") => {}
        Some("Exact") | Some("NotOlderThan") => {
            if !rv_set {
                return Err(invalid_options(
                    "ListOptions",
                    "resourceVersionMatch",
                    "Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided".into(),
                ));
            }
            if q.get("continue").is_some_and(|c| !c.is_empty()) {
                return Err(invalid_options(
                    "ListOptions",
                    "resourceVersionMatch",
                    "Forbidden: resourceVersionMatch is forbidden when continue is provided".into(),
                ));
            }
        }
        Some(other) => {
            return Err(invalid_options(
                "ListOptions",
                "resourceVersionMatch",
                format!(
                    "Unsupported value: \"{other}\": supported values: \"Exact\", \"NotOlderThan\""
                ),
            ));
        }
    }
    Ok(ListOptions {
        label,
        field,
        limit,
        continue_token: q.get("continue").filter(|s| !s.is_empty()).cloned(),
        resource_version: q.get("resourceVersion").cloned(),
        resource_version_match: q.get("resourceVersionMatch").cloned(),
    })
}

pub fn json_response(status: StatusCode, v: &Value, warnings: &[String]) -> Response {
    let body = serde_json::to_vec(v).unwrap_or_default();
    bytes_response(status, body, warnings)
}

fn bytes_response(status: StatusCode, body: Vec<u8>, warnings: &[String]) -> Response {
    let mut resp = (status, body).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    for w in warnings {
        let text = format!("299 - {}", serde_json::to_string(w).unwrap_or_default());
        if let Ok(v) = HeaderValue::from_str(&text) {
            resp.headers_mut().append("warning", v);
        }
    }
    resp
}

/// Render one object per the negotiated output.
fn render_object(res: &Resource, obj: &Value, out: Output) -> Value {
    negotiate::render(res, obj.clone(), out)
}

/// Duplicate JSON keys: an error under `fieldValidation=Strict`, warnings under Warn.
fn check_duplicates(
    headers: &HeaderMap,
    body: &[u8],
    wo: &WriteOptions,
    kind: &str,
    version: &str,
) -> ApiResult<Vec<String>> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let is_json = ct.is_empty() || ct.starts_with("application/json");
    if !is_json || wo.field_validation == FieldValidation::Ignore {
        return Ok(Vec::new());
    }
    let dups = negotiate::json_duplicate_fields(body);
    if dups.is_empty() {
        return Ok(dups);
    }
    let msgs: Vec<String> = dups
        .iter()
        .map(|d| format!("json: duplicate field \"{d}\""))
        .collect();
    if wo.field_validation == FieldValidation::Strict {
        return Err(ApiError::bad_request(format!(
            "{kind} in version \"{version}\" cannot be handled as a {kind}: strict decoding error: {}",
            msgs.join(", ")
        )));
    }
    Ok(msgs)
}

/// Entry point for every `/api/...` and `/apis/...` path that is not discovery.
pub async fn resource_request(
    State(app): State<Arc<AppState>>,
    identity: Option<axum::Extension<Identity>>,
    upgrade: Option<axum::Extension<hyper::upgrade::OnUpgrade>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(axum::Extension(identity)) = identity else {
        return ApiError::unauthorized().into_response();
    };
    // discovery documents of one group or group/version share the prefix
    let segs: Vec<&str> = uri.path().trim_matches('/').split('/').collect();
    if method == Method::GET {
        match segs.as_slice() {
            ["api", "v1"] => return super::discovery::core_v1(&app),
            ["apis", g] => return super::discovery::group(&app, g),
            ["apis", g, v] => return super::discovery::group_version(&app, g, v),
            _ => {}
        }
    }
    let upgrade = upgrade.map(|axum::Extension(u)| u);
    match dispatch(&app, &identity, &method, &uri, &headers, body, upgrade).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn dispatch(
    app: &Arc<AppState>,
    identity: &Identity,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Bytes,
    upgrade: Option<hyper::upgrade::OnUpgrade>,
) -> ApiResult<Response> {
    let kinds = &app.registry.kinds;
    let Some(t) = parse_path(uri.path(), |g, v, p| {
        kinds.get(g, v, p).is_some_and(|r| r.namespaced)
    }) else {
        return Err(not_found_path(uri.path()));
    };
    let Some(res) = kinds.get(&t.group, &t.version, &t.plural) else {
        return Err(not_found_path(uri.path()));
    };
    if res.namespaced && t.namespace.is_none() && t.name.is_some() {
        return Err(not_found_path(uri.path()));
    }
    if body.len() > MAX_BODY {
        return Err(ApiError::too_large());
    }
    let q = parse_query(uri)?;
    super::node_authz::authorize(
        app,
        identity,
        &super::node_authz::Request {
            target: &t,
            res: &res,
            method,
            query: &q,
            headers,
            body: &body,
        },
    )
    .await?;
    if res.virtual_create_only {
        if *method != Method::POST || t.name.is_some() {
            return Err(ApiError::method_not_allowed(
                "the server does not allow this method on the requested resource".to_string(),
            ));
        }
        let obj = negotiate::decode_body(headers, &body, Some((&res.api_version(), &res.kind)))?;
        let out = reviews::handle(app, &res, t.namespace.as_deref(), identity, obj).await?;
        return Ok(json_response(StatusCode::CREATED, &out, &[]));
    }
    let ns = t.namespace.as_deref();
    match (&t.name, t.sub.as_deref()) {
        (None, _) => collection(app, &res, ns, method, &q, headers, body).await,
        (Some(name), sub) => {
            let r = ItemRequest {
                app,
                res: &res,
                ns,
                name,
                method,
                q: &q,
                headers,
                body,
                uri,
                upgrade,
            };
            match sub {
                None => item(r).await,
                Some(sub) => super::subresources::handle(r, sub).await,
            }
        }
    }
}

pub fn not_found_path(path: &str) -> ApiError {
    let _ = path;
    ApiError::new(
        404,
        "NotFound",
        "the server could not find the requested resource",
    )
}

async fn collection(
    app: &Arc<AppState>,
    res: &Arc<Resource>,
    ns: Option<&str>,
    method: &Method,
    q: &Query,
    headers: &HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    match *method {
        Method::GET => {
            let out = negotiate::output(headers, q.get("includeObject").map(String::as_str))?;
            let opts = list_options(q, res)?;
            if qbool_strict(q, "watch")? {
                return watch::serve(app, res, ns, q, opts, out).await;
            }
            list(app, res, ns, &opts, out).await
        }
        Method::POST => {
            let wo = write_options(q, headers, "unknown")?;
            let out = negotiate::output(headers, None)?;
            let dup_warnings = check_duplicates(headers, &body, &wo, &res.kind, &res.version)?;
            let obj =
                negotiate::decode_body(headers, &body, Some((&res.api_version(), &res.kind)))?;
            let mut w = app.registry.create(res, ns, obj, &wo).await?;
            w.warnings.extend(dup_warnings);
            Ok(written_response(res, w, out))
        }
        Method::DELETE => {
            let opts = list_options(q, res)?;
            let dopts = delete_options(q, headers, &body)?;
            let listed = app.registry.list(res, ns, &opts).await?;
            let mut deleted = Vec::new();
            for kv in listed.items {
                let obj = app.registry.decode(res, &kv)?;
                let name = obj
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                let ons = obj
                    .pointer("/metadata/namespace")
                    .and_then(Value::as_str)
                    .map(String::from);
                match app
                    .registry
                    .delete(res, ons.as_deref(), &name, &dopts)
                    .await
                {
                    Ok(d) => deleted.push(d.object),
                    Err(e) if e.code == 404 => {}
                    Err(e) => return Err(e),
                }
            }
            let list = json!({
                "kind": format!("{}List", res.kind),
                "apiVersion": res.api_version(),
                "metadata": {},
                "items": deleted,
            });
            Ok(json_response(StatusCode::OK, &list, &[]))
        }
        _ => Err(ApiError::method_not_allowed(
            "the server does not allow this method on the requested resource".to_string(),
        )),
    }
}

async fn list(
    app: &Arc<AppState>,
    res: &Arc<Resource>,
    ns: Option<&str>,
    opts: &ListOptions,
    out: Output,
) -> ApiResult<Response> {
    let listed = app.registry.list(res, ns, opts).await?;
    let mut meta = json!({ "resourceVersion": listed.revision.to_string() });
    if let Some(c) = &listed.continue_token {
        meta["continue"] = json!(c);
    }
    if let Some(r) = listed.remaining {
        meta["remainingItemCount"] = json!(r);
    }
    match out {
        Output::Json if res.version == res.storage_version => {
            // fast path: stored bytes are exactly what a GET returns
            let head = json!({
                "kind": format!("{}List", res.kind),
                "apiVersion": res.api_version(),
                "metadata": meta,
            });
            let mut buf = serde_json::to_vec(&head).unwrap_or_default();
            buf.pop(); // drop the closing brace
            buf.extend_from_slice(b",\"items\":[");
            for (i, kv) in listed.items.iter().enumerate() {
                if i > 0 {
                    buf.push(b',');
                }
                buf.extend_from_slice(&kv.value);
            }
            buf.extend_from_slice(b"]}");
            Ok(bytes_response(StatusCode::OK, buf, &[]))
        }
        _ => {
            let objs: Vec<Value> = listed
                .items
                .iter()
                .map(|kv| app.registry.decode(res, kv))
                .collect::<ApiResult<_>>()?;
            let v = match out {
                Output::Table(include) => negotiate::table(res, objs, include, meta, true),
                Output::PartialMetadata => json!({
                    "kind": "PartialObjectMetadataList",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": meta,
                    "items": objs.into_iter().map(negotiate::partial_metadata_owned).collect::<Vec<_>>(),
                }),
                Output::Json => json!({
                    "kind": format!("{}List", res.kind),
                    "apiVersion": res.api_version(),
                    "metadata": meta,
                    "items": objs,
                }),
            };
            Ok(json_response(StatusCode::OK, &v, &[]))
        }
    }
}

fn written_response(res: &Resource, w: Written, out: Output) -> Response {
    let status = if w.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    json_response(status, &render_object(res, &w.object, out), &w.warnings)
}

pub fn delete_options(q: &Query, headers: &HeaderMap, body: &[u8]) -> ApiResult<DeleteOptions> {
    let mut o = DeleteOptions::default();
    let body_opts: Value = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        negotiate::decode_body(headers, body, Some(("meta.k8s.io/v1", "DeleteOptions")))?
    };
    if let Some(kind) = body_opts.get("kind").and_then(Value::as_str)
        && kind != "DeleteOptions"
    {
        return Err(ApiError::bad_request(format!(
            "DeleteOptions in version \"v1\" cannot be handled as a DeleteOptions: the kind in the data ({kind}) does not match the expected kind (DeleteOptions)"
        )));
    }
    let get = |k: &str| -> Option<String> {
        q.get(k).cloned().or_else(|| match body_opts.get(k) {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            Some(Value::Array(a)) => a.first().and_then(|x| x.as_str().map(String::from)),
            _ => None,
        })
    };
    if let Some(g) = get("gracePeriodSeconds") {
        o.grace_period_seconds =
            Some(g.parse().map_err(|_| {
                ApiError::bad_request(format!("invalid gracePeriodSeconds: {g:?}"))
            })?);
    }
    o.propagation = match get("propagationPolicy").as_deref() {
        None | Some("") => match body_opts.get("orphanDependents").and_then(Value::as_bool) {
            Some(true) => Some(Propagation::Orphan),
            Some(false) => Some(Propagation::Background),
            None => match q.get("orphanDependents").map(String::as_str) {
                Some("true") => Some(Propagation::Orphan),
                _ => None,
            },
        },
        Some("Background") => Some(Propagation::Background),
        Some("Foreground") => Some(Propagation::Foreground),
        Some("Orphan") => Some(Propagation::Orphan),
        Some(other) => {
            return Err(ApiError::unprocessable(format!(
                "DeleteOptions.meta.k8s.io \"\" is invalid: propagationPolicy: Unsupported value: \"{other}\": supported values: \"Foreground\", \"Background\", \"Orphan\", \"nil\""
            )));
        }
    };
    o.dry_run = match get("dryRun").as_deref() {
        None | Some("") => false,
        Some("All") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "Invalid dry run value: {other}: supported values: \"All\""
            )));
        }
    };
    if let Some(p) = body_opts.get("preconditions") {
        o.precondition_uid = p.get("uid").and_then(Value::as_str).map(String::from);
        o.precondition_rv = p
            .get("resourceVersion")
            .and_then(Value::as_str)
            .map(String::from);
    }
    Ok(o)
}

async fn item(r: ItemRequest<'_>) -> ApiResult<Response> {
    let ItemRequest {
        app,
        res,
        ns,
        name,
        method,
        q,
        headers,
        body,
        ..
    } = r;
    match *method {
        Method::GET => {
            let out = negotiate::output(headers, q.get("includeObject").map(String::as_str))?;
            if let Some(rv) = q.get("resourceVersion").filter(|s| !s.is_empty())
                && rv.parse::<u64>().is_err()
            {
                return Err(ApiError::bad_request(format!(
                    "invalid resource version \"{rv}\""
                )));
            }
            let obj = app.registry.get(res, ns, name).await?;
            Ok(json_response(
                StatusCode::OK,
                &render_object(res, &obj, out),
                &[],
            ))
        }
        Method::PUT => {
            let wo = write_options(q, headers, "unknown")?;
            let out = negotiate::output(headers, None)?;
            let dup_warnings = check_duplicates(headers, &body, &wo, &res.kind, &res.version)?;
            let obj =
                negotiate::decode_body(headers, &body, Some((&res.api_version(), &res.kind)))?;
            let mut w = app
                .registry
                .update(res, ns, name, obj, Part::Main, &wo)
                .await?;
            w.warnings.extend(dup_warnings);
            Ok(written_response(res, w, out))
        }
        Method::PATCH => patch(app, res, ns, name, Part::Main, q, headers, &body).await,
        Method::DELETE => {
            let dopts = delete_options(q, headers, &body)?;
            let d = app.registry.delete(res, ns, name, &dopts).await?;
            let out = negotiate::output(headers, None)?;
            let status = if d.gone {
                StatusCode::OK
            } else {
                StatusCode::ACCEPTED
            };
            if d.gone && returns_status_on_delete(res) {
                let uid = d
                    .object
                    .pointer("/metadata/uid")
                    .cloned()
                    .unwrap_or(Value::Null);
                let mut details = json!({ "name": name, "kind": res.plural, "uid": uid });
                if !res.group.is_empty() {
                    details["group"] = json!(res.group);
                }
                let s = json!({
                    "kind": "Status",
                    "apiVersion": "v1",
                    "metadata": {},
                    "status": "Success",
                    "details": details,
                });
                return Ok(json_response(StatusCode::OK, &s, &[]));
            }
            Ok(json_response(
                status,
                &render_object(res, &d.object, out),
                &[],
            ))
        }
        _ => Err(ApiError::method_not_allowed(
            "the server does not allow this method on the requested resource",
        )),
    }
}

/// Upstream returns the deleted object for some kinds and a `Status` for most.
fn returns_status_on_delete(res: &Resource) -> bool {
    !(res.custom
        || matches!(
            (res.group.as_str(), res.kind.as_str()),
            ("", "Pod")
                | ("", "Namespace")
                | ("", "Service")
                | ("", "PersistentVolumeClaim")
                | ("", "PersistentVolume")
        ))
}

#[allow(clippy::too_many_arguments)]
pub async fn patch(
    app: &Arc<AppState>,
    res: &Arc<Resource>,
    ns: Option<&str>,
    name: &str,
    part: Part,
    q: &Query,
    headers: &HeaderMap,
    body: &[u8],
) -> ApiResult<Response> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let Some(mut pt) = PatchType::from_content_type(ct) else {
        return Err(ApiError::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json (got {ct:?})"
            ),
        ));
    };
    if let PatchType::Apply { .. } = pt {
        pt = PatchType::Apply {
            force: qbool(q, "force"),
        };
        if q.get("fieldManager").is_none_or(|m| m.is_empty()) {
            return Err(ApiError::bad_request(
                "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
            ));
        }
    } else if q.contains_key("force") {
        return Err(ApiError::unprocessable(
            "PatchOptions.meta.k8s.io \"\" is invalid: force: Forbidden: may not be specified for non-apply patch",
        ));
    }
    let wo = write_options(q, headers, "unknown")?;
    let out = negotiate::output(headers, None)?;
    let w = app
        .registry
        .patch(res, ns, name, pt, body, part, &wo)
        .await?;
    Ok(written_response(res, w, out))
}

/// A streaming response body from a stream of byte chunks.
pub fn stream_response<S>(stream: S) -> Response
where
    S: futures::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static,
{
    let mut resp = Response::new(Body::from_stream(stream));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, private"),
    );
    resp
}

pub fn include_object(q: &Query) -> IncludeObject {
    match q.get("includeObject").map(String::as_str) {
        Some("None") => IncludeObject::None,
        Some("Object") => IncludeObject::Object,
        _ => IncludeObject::Metadata,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns_aware(_: &str, _: &str, p: &str) -> bool {
        p != "namespaces" && p != "nodes" && p != "status" && p != "finalize"
    }

    #[test]
    fn paths() {
        let t = parse_path("/api/v1/namespaces/default/pods/web/log", ns_aware).unwrap();
        assert_eq!(t.namespace.as_deref(), Some("default"));
        assert_eq!(t.plural, "pods");
        assert_eq!(t.name.as_deref(), Some("web"));
        assert_eq!(t.sub.as_deref(), Some("log"));
        let t = parse_path("/api/v1/namespaces/kube-system/status", ns_aware).unwrap();
        assert_eq!(t.namespace, None);
        assert_eq!(t.plural, "namespaces");
        assert_eq!(t.name.as_deref(), Some("kube-system"));
        assert_eq!(t.sub.as_deref(), Some("status"));
        let t = parse_path("/apis/apps/v1/deployments", ns_aware).unwrap();
        assert_eq!(
            (t.group.as_str(), t.plural.as_str()),
            ("apps", "deployments")
        );
        assert!(parse_path("/apis/apps", ns_aware).is_none());
        assert!(parse_path("/foo", ns_aware).is_none());
        assert!(parse_path("/api/v1//pods", ns_aware).is_none());
    }
}
