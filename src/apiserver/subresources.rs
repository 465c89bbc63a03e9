//! Subresources: `status`, `scale`, `binding`, `eviction`,
//! `ephemeralcontainers`, namespace `finalize`, and the streaming ones
//! (`log`, `exec`, `attach`, `portforward`, `nodes/proxy`), which `proxy`
//! forwards to the node's kubelet (`pods/proxy`, `services/proxy`: 503).
//!
//! Invariant: each subresource writes only its own part of the object.

use std::sync::Arc;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

use super::AppState;
use super::error::{ApiError, ApiResult};
use super::handlers::{self, ItemRequest, Query, json_response};
use super::negotiate;
use super::registry::{DeleteOptions, Part, PatchType};
use crate::api::kinds::Resource;

pub async fn handle(r: ItemRequest<'_>, sub: &str) -> ApiResult<Response> {
    let (res, name, method) = (r.res, r.name, r.method);
    let is_pod = res.group.is_empty() && res.kind == "Pod";
    match sub {
        "status" if res.has_status => status(r).await,
        "scale" if res.scale.is_some() => scale(r).await,
        "finalize" if res.group.is_empty() && res.kind == "Namespace" && *method == Method::PUT => {
            finalize(r.app, res, name, r.q, r.headers, r.body).await
        }
        "binding" if is_pod && *method == Method::POST => {
            binding(r.app, res, r.ns, name, r.headers, r.body).await
        }
        "eviction" if is_pod && *method == Method::POST => {
            eviction(r.app, res, r.ns, name, r.headers, r.body).await
        }
        "ephemeralcontainers" if is_pod => ephemeral(r).await,
        "token"
            if res.group.is_empty() && res.kind == "ServiceAccount" && *method == Method::POST =>
        {
            token_request(r).await
        }
        "log" | "exec" | "attach" | "portforward" if is_pod => super::proxy::handle(r, sub).await,
        s if (s == "proxy" || s.starts_with("proxy/"))
            && res.group.is_empty()
            && res.kind == "Node" =>
        {
            super::proxy::handle(r, s).await
        }
        s if s == "proxy" || s.starts_with("proxy/") => Err(ApiError::service_unavailable(
            format!("{} \"{name}\": proxy is not available yet", res.plural),
        )),
        _ => Err(handlers::not_found_path("")),
    }
}

async fn status(r: ItemRequest<'_>) -> ApiResult<Response> {
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
            let obj = app.registry.get(res, ns, name).await?;
            Ok(json_response(StatusCode::OK, &obj, &[]))
        }
        Method::PUT => {
            let obj =
                negotiate::decode_body(headers, &body, Some((&res.api_version(), &res.kind)))?;
            let wo = handlers::write_options(q, headers, "unknown")?;
            let w = app
                .registry
                .update(res, ns, name, obj, Part::Status, &wo)
                .await?;
            Ok(json_response(StatusCode::OK, &w.object, &w.warnings))
        }
        Method::PATCH => handlers::patch(app, res, ns, name, Part::Status, q, headers, &body).await,
        _ => Err(ApiError::method_not_allowed(
            "the server does not allow this method on the requested resource",
        )),
    }
}

fn pointer_of(path: &str) -> String {
    path.trim_start_matches('.')
        .split('.')
        .fold(String::new(), |mut acc, seg| {
            acc.push('/');
            acc.push_str(seg);
            acc
        })
}

/// The autoscaling/v1 Scale view of an object.
fn scale_of(res: &Resource, obj: &Value) -> Value {
    let Some(paths) = &res.scale else {
        return json!({});
    };
    let spec = obj
        .pointer(&pointer_of(&paths.spec_replicas))
        .cloned()
        .unwrap_or(json!(0));
    let status = obj
        .pointer(&pointer_of(&paths.status_replicas))
        .cloned()
        .unwrap_or(json!(0));
    let mut selector = paths
        .label_selector
        .as_deref()
        .and_then(|p| obj.pointer(&pointer_of(p)))
        .and_then(Value::as_str)
        .map(String::from);
    if selector.is_none() {
        // built-in workloads: render spec.selector as a string
        if let Some(sel) = obj.pointer("/spec/selector") {
            selector = Some(selector_string(sel));
        }
    }
    let m = obj.get("metadata").cloned().unwrap_or(json!({}));
    let mut meta = json!({});
    for k in [
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "creationTimestamp",
    ] {
        if let Some(v) = m.get(k) {
            meta[k] = v.clone();
        }
    }
    let mut st = json!({ "replicas": status });
    if let Some(s) = selector {
        st["selector"] = json!(s);
    }
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": meta,
        "spec": { "replicas": spec },
        "status": st,
    })
}

/// `matchLabels` / RC map selectors as a label-selector string.
fn selector_string(sel: &Value) -> String {
    let mut parts = Vec::new();
    let labels = sel
        .get("matchLabels")
        .and_then(Value::as_object)
        .or_else(|| {
            if sel.get("matchExpressions").is_none() {
                sel.as_object()
            } else {
                None
            }
        });
    if let Some(m) = labels {
        for (k, v) in m {
            parts.push(format!("{k}={}", v.as_str().unwrap_or_default()));
        }
    }
    if let Some(exprs) = sel.get("matchExpressions").and_then(Value::as_array) {
        for e in exprs {
            let key = e.get("key").and_then(Value::as_str).unwrap_or_default();
            let vals: Vec<&str> = e
                .get("values")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            match e.get("operator").and_then(Value::as_str) {
                Some("In") => parts.push(format!("{key} in ({})", vals.join(","))),
                Some("NotIn") => parts.push(format!("{key} notin ({})", vals.join(","))),
                Some("Exists") => parts.push(key.to_string()),
                Some("DoesNotExist") => parts.push(format!("!{key}")),
                _ => {}
            }
        }
    }
    parts.join(",")
}

async fn scale(r: ItemRequest<'_>) -> ApiResult<Response> {
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
    let (kv, obj) = app.registry.get_kv(res, ns, name).await?;
    let current = scale_of(res, &obj);
    let desired = match *method {
        Method::GET => return Ok(json_response(StatusCode::OK, &current, &[])),
        Method::PUT => {
            let s = negotiate::decode_body(headers, &body, Some(("autoscaling/v1", "Scale")))?;
            if let Some(rv) = s
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                && !rv.is_empty()
                && rv != kv.mod_revision.to_string()
            {
                return Err(ApiError::conflict(
                    &res.group,
                    &res.plural,
                    name,
                    "the object has been modified; please apply your changes to the latest version and try again",
                ));
            }
            s
        }
        Method::PATCH => patch_view(&current, headers, &body, "autoscaling", "Scale")?,
        _ => {
            return Err(ApiError::method_not_allowed(
                "the server does not allow this method on the requested resource",
            ));
        }
    };
    let replicas = desired
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    if replicas < 0 {
        return Err(ApiError::invalid(
            "autoscaling",
            "Scale",
            name,
            vec![super::error::StatusCause {
                reason: "FieldValueInvalid".into(),
                message: format!("Invalid value: {replicas}: must be greater than or equal to 0"),
                field: "spec.replicas".into(),
            }],
        ));
    }
    let Some(paths) = &res.scale else {
        return Err(ApiError::not_found(&res.group, &res.plural, name));
    };
    let mut next = obj.clone();
    let ptr = pointer_of(&paths.spec_replicas);
    set_pointer(&mut next, &ptr, json!(replicas));
    if let Some(m) = next.get_mut("metadata").and_then(Value::as_object_mut) {
        m.insert("resourceVersion".into(), json!(kv.mod_revision.to_string()));
    }
    let wo = handlers::write_options(q, headers, "unknown")?;
    let w = app
        .registry
        .update(res, ns, name, next, Part::Main, &wo)
        .await?;
    Ok(json_response(
        StatusCode::OK,
        &scale_of(res, &w.object),
        &w.warnings,
    ))
}

/// Apply a PATCH body to a subresource's view of an object (apply patches
/// on these views behave as merge patches).
fn patch_view(
    current: &Value,
    headers: &HeaderMap,
    body: &[u8],
    group: &str,
    kind: &str,
) -> ApiResult<Value> {
    let ct = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let schema = crate::api::patch::BuiltinMergeSchema::for_kind(group, kind);
    let patched = match PatchType::from_content_type(ct) {
        Some(PatchType::Json) => crate::api::patch::json_patch(current, body),
        Some(PatchType::Merge) | Some(PatchType::Apply { .. }) => {
            crate::api::patch::merge_patch(current, body)
        }
        Some(PatchType::Strategic) => {
            crate::api::patch::strategic_merge_patch(current, body, &schema)
        }
        None => {
            return Err(ApiError::new(
                415,
                "UnsupportedMediaType",
                format!("unsupported patch type {ct:?}"),
            ));
        }
    };
    patched.map_err(|e| ApiError::bad_request(e.to_string()))
}

/// Set a JSON pointer, creating intermediate objects.
fn set_pointer(v: &mut Value, ptr: &str, val: Value) {
    let mut cur = v;
    let segs: Vec<&str> = ptr.trim_start_matches('/').split('/').collect();
    for (i, s) in segs.iter().enumerate() {
        if !cur.is_object() {
            *cur = json!({});
        }
        let Some(m) = cur.as_object_mut() else { return };
        if i + 1 == segs.len() {
            m.insert((*s).to_string(), val);
            return;
        }
        cur = m.entry((*s).to_string()).or_insert_with(|| json!({}));
    }
}

async fn finalize(
    app: &Arc<AppState>,
    res: &Arc<Resource>,
    name: &str,
    q: &Query,
    headers: &HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let body = negotiate::decode_body(headers, &body, Some(("v1", "Namespace")))?;
    let (kv, mut obj) = app.registry.get_kv(res, None, name).await?;
    let fins = body
        .pointer("/spec/finalizers")
        .cloned()
        .unwrap_or(json!([]));
    obj["spec"]["finalizers"] = fins;
    if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        m.insert("resourceVersion".into(), json!(kv.mod_revision.to_string()));
    }
    let wo = handlers::write_options(q, headers, "unknown")?;
    let w = app
        .registry
        .update(res, None, name, obj, Part::Main, &wo)
        .await?;
    Ok(json_response(StatusCode::OK, &w.object, &[]))
}

async fn binding(
    app: &Arc<AppState>,
    res: &Arc<Resource>,
    ns: Option<&str>,
    name: &str,
    headers: &HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let b = negotiate::decode_body(headers, &body, Some(("v1", "Binding")))?;
    let node = b
        .pointer("/target/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if node.is_empty() {
        return Err(ApiError::invalid(
            "",
            "Binding",
            name,
            vec![super::error::StatusCause {
                reason: "FieldValueRequired".into(),
                message: "Required value".into(),
                field: "target.name".into(),
            }],
        ));
    }
    for _ in 0..5 {
        let (kv, mut pod) = app.registry.get_kv(res, ns, name).await?;
        if pod.pointer("/metadata/deletionTimestamp").is_some() {
            return Err(ApiError::conflict(
                "",
                "pods",
                name,
                "pod is being deleted, cannot be assigned to a host",
            ));
        }
        if let Some(existing) = pod.pointer("/spec/nodeName").and_then(Value::as_str)
            && !existing.is_empty()
        {
            return Err(ApiError::conflict(
                "",
                "pods",
                name,
                &format!("pod {name} is already assigned to node \"{existing}\""),
            ));
        }
        pod["spec"]["nodeName"] = json!(node);
        let now = super::registry::now_rfc3339();
        let cond = json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": now});
        let conds = pod["status"]["conditions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let mut conds: Vec<Value> = conds
            .into_iter()
            .filter(|c| c["type"] != "PodScheduled")
            .collect();
        conds.push(cond);
        pod["status"]["conditions"] = json!(conds);
        match app
            .registry
            .controller_update(&kv.key, kv.mod_revision, pod)
            .await
        {
            Ok(_) => {
                let s = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201});
                return Ok(json_response(StatusCode::CREATED, &s, &[]));
            }
            Err(crate::store::StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(ApiError::from_store(e, "", "pods", name)),
        }
    }
    Err(ApiError::conflict(
        "",
        "pods",
        name,
        "too many concurrent updates",
    ))
}

/// `POST pods/<name>/eviction`: delete the pod unless that would violate
/// its PodDisruptionBudget (upstream `EvictionREST`). The decision is
/// `disruption::plan::eviction_allowed`; an allowed eviction first records
/// the disruption in the PDB's status (resourceVersion precondition; on a
/// conflict everything is read and decided again), then deletes the pod.
async fn eviction(
    app: &Arc<AppState>,
    res: &Arc<Resource>,
    ns: Option<&str>,
    name: &str,
    headers: &HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    use crate::controllers::disruption::plan as pdb_plan;
    let ev = negotiate::decode_body(headers, &body, Some(("policy/v1", "Eviction")))?;
    let mut opts = DeleteOptions::default();
    if let Some(d) = ev.get("deleteOptions").filter(|d| d.is_object()) {
        opts.grace_period_seconds = d.get("gracePeriodSeconds").and_then(Value::as_i64);
        opts.dry_run = d
            .get("dryRun")
            .and_then(Value::as_array)
            .is_some_and(|a| a.iter().any(|x| x == "All"));
        opts.precondition_uid = d
            .pointer("/preconditions/uid")
            .and_then(Value::as_str)
            .map(String::from);
        opts.precondition_rv = d
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
            .map(String::from);
    }
    let pdb_res = app
        .registry
        .kinds
        .get("policy", "v1", "poddisruptionbudgets")
        .ok_or_else(|| ApiError::internal("poddisruptionbudgets are not served"))?;
    let refused = || {
        let mut e = ApiError::new(429, "TooManyRequests", pdb_plan::EVICTION_REFUSED);
        e.details = Some(Box::new(json!({})));
        e
    };
    for _ in 0..10 {
        let (kv, pod_json) = app.registry.get_kv(res, ns, name).await?;
        let Ok(pod) = serde_json::from_value::<k8s_openapi::api::core::v1::Pod>(pod_json) else {
            break;
        };
        let listed = app
            .registry
            .list(&pdb_res, ns, &super::registry::ListOptions::default())
            .await?;
        let pdbs: Vec<k8s_openapi::api::policy::v1::PodDisruptionBudget> = listed
            .items
            .iter()
            .filter_map(|kv| serde_json::from_slice(&kv.value).ok())
            .collect();
        let ok = match pdb_plan::eviction_allowed(&pdbs, &pod, chrono::Utc::now()) {
            Ok(ok) => ok,
            Err(e) => {
                let reason = match e.reason.as_str() {
                    "TooManyRequests" => "TooManyRequests",
                    "Forbidden" => "Forbidden",
                    _ => "",
                };
                let mut err = ApiError::new(e.code, reason, e.message);
                if let Some(cause) = e.cause {
                    err.details = Some(Box::new(json!({
                        "causes": [{"reason": "DisruptionBudget", "message": cause}]
                    })));
                }
                err.retry_after = e
                    .retry_after_seconds
                    .and_then(|s| u32::try_from(s).ok())
                    .filter(|s| *s > 0);
                return Err(err);
            }
        };
        if let Some(update) = ok.pdb_update.filter(|_| !opts.dry_run) {
            let pdb_name = update.metadata.name.clone().unwrap_or_default();
            let Some(pdb_kv) = listed
                .items
                .iter()
                .find(|kv| kv.key == pdb_res.key(ns, &pdb_name))
            else {
                continue;
            };
            let body =
                serde_json::to_value(&update).map_err(|e| ApiError::internal(e.to_string()))?;
            match app
                .registry
                .controller_update(&pdb_kv.key, pdb_kv.mod_revision, body)
                .await
            {
                Ok(_) => {}
                Err(crate::store::StoreError::Conflict { .. }) => continue,
                Err(e) => {
                    return Err(ApiError::from_store(
                        e,
                        "policy",
                        "poddisruptionbudgets",
                        &pdb_name,
                    ));
                }
            }
        }
        let mut del = opts.clone();
        if ok.require_pod_resource_version && del.precondition_rv.is_none() {
            del.precondition_rv = Some(kv.mod_revision.to_string());
        }
        return match app.registry.delete(res, ns, name, &del).await {
            Ok(_) => {
                let s = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201});
                Ok(json_response(StatusCode::CREATED, &s, &[]))
            }
            Err(e)
                if e.code == 409
                    && ok.require_pod_resource_version
                    && opts.precondition_rv.is_none() =>
            {
                Err(refused())
            }
            Err(e) => Err(e),
        };
    }
    // undecodable pod, or too many concurrent PDB writes: plain delete / 429
    match app.registry.get(res, ns, name).await {
        Ok(p) if serde_json::from_value::<k8s_openapi::api::core::v1::Pod>(p.clone()).is_err() => {
            app.registry.delete(res, ns, name, &opts).await?;
            let s = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201});
            Ok(json_response(StatusCode::CREATED, &s, &[]))
        }
        Ok(_) => Err(refused()),
        Err(e) => Err(e),
    }
}

/// `POST serviceaccounts/<name>/token` (TokenRequest): a bound ES256 token.
async fn token_request(r: ItemRequest<'_>) -> ApiResult<Response> {
    let (app, ns, name) = (r.app, r.ns.unwrap_or("default"), r.name);
    let invalid = |field: &str, reason: &str, message: String| {
        ApiError::invalid(
            "authentication.k8s.io",
            "TokenRequest",
            name,
            vec![super::error::StatusCause {
                reason: reason.into(),
                message,
                field: field.into(),
            }],
        )
    };
    let signer = app.sa_signer.as_ref().ok_or_else(|| {
        ApiError::service_unavailable("service-account token signing is not configured".to_string())
    })?;
    let mut req = negotiate::decode_body(
        r.headers,
        &r.body,
        Some(("authentication.k8s.io/v1", "TokenRequest")),
    )?;
    let sa = app.registry.get(r.res, Some(ns), name).await?;
    let sa_uid = sa
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let spec = req.get("spec").cloned().unwrap_or(json!({}));
    let expiration = spec
        .get("expirationSeconds")
        .and_then(Value::as_i64)
        .unwrap_or(3600);
    if expiration < 600 {
        return Err(invalid(
            "spec.expirationSeconds",
            "FieldValueInvalid",
            format!("Invalid value: {expiration}: may not specify a duration less than 10 minutes"),
        ));
    }
    if expiration > 1 << 32 {
        return Err(invalid(
            "spec.expirationSeconds",
            "FieldValueInvalid",
            format!(
                "Invalid value: {expiration}: may not specify a duration larger than 2^32 seconds"
            ),
        ));
    }
    let audiences: Vec<String> = match spec.get("audiences").and_then(Value::as_array) {
        Some(a) if !a.is_empty() => a
            .iter()
            .filter_map(|x| x.as_str().map(String::from))
            .collect(),
        _ => vec![super::satoken::ISSUER.to_string()],
    };
    let mut bound = None;
    if let Some(b) = spec.get("boundObjectRef").filter(|b| b.is_object()) {
        let kind = b.get("kind").and_then(Value::as_str).unwrap_or_default();
        let bname = b
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let (kind, plural, bns): (&'static str, &str, Option<&str>) = match kind {
            "Pod" => ("Pod", "pods", Some(ns)),
            "Secret" => ("Secret", "secrets", Some(ns)),
            "Node" => ("Node", "nodes", None),
            other => {
                return Err(invalid(
                    "spec.boundObjectRef.kind",
                    "FieldValueNotSupported",
                    format!(
                        "Unsupported value: \"{other}\": supported values: \"Pod\", \"Secret\", \"Node\""
                    ),
                ));
            }
        };
        let bres = app
            .registry
            .kinds
            .get("", "v1", plural)
            .ok_or_else(|| handlers::not_found_path(""))?;
        let obj = app.registry.get(&bres, bns, &bname).await?;
        let uid = obj
            .pointer("/metadata/uid")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if let Some(want) = b
            .get("uid")
            .and_then(Value::as_str)
            .filter(|u| !u.is_empty())
            && want != uid
        {
            return Err(ApiError::conflict(
                "",
                kind,
                &bname,
                &format!(
                    "the UID in the bound object reference ({want}) does not match the UID in record. The object might have been deleted and then recreated"
                ),
            ));
        }
        bound = Some((kind, bname, uid));
    }
    let sub = super::satoken::Subject {
        namespace: ns.to_string(),
        name: name.to_string(),
        uid: sa_uid.to_string(),
        bound: bound.clone(),
    };
    let now = chrono::Utc::now();
    let claims = super::satoken::bound_claims(
        &sub,
        audiences.clone(),
        expiration,
        now.timestamp(),
        uuid::Uuid::new_v4().to_string(),
    );
    let token = signer.sign(&claims);
    let exp = (now + chrono::Duration::seconds(expiration))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    req["apiVersion"] = json!("authentication.k8s.io/v1");
    req["kind"] = json!("TokenRequest");
    req["metadata"] =
        json!({"name": name, "namespace": ns, "creationTimestamp": super::registry::now_rfc3339()});
    let mut out_spec =
        json!({"audiences": audiences, "expirationSeconds": expiration, "boundObjectRef": null});
    if let (Some(b), Some((kind, bname, uid))) = (spec.get("boundObjectRef"), bound) {
        out_spec["boundObjectRef"] = json!({
            "kind": kind,
            "apiVersion": b.get("apiVersion").cloned().unwrap_or(json!("v1")),
            "name": bname,
            "uid": uid,
        });
    }
    req["spec"] = out_spec;
    req["status"] = json!({"token": token, "expirationTimestamp": exp});
    Ok(json_response(StatusCode::CREATED, &req, &[]))
}

async fn ephemeral(r: ItemRequest<'_>) -> ApiResult<Response> {
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
    let (kv, pod) = app.registry.get_kv(res, ns, name).await?;
    let desired = match *method {
        Method::GET => return Ok(json_response(StatusCode::OK, &pod, &[])),
        Method::PUT => negotiate::decode_body(headers, &body, Some(("v1", "Pod")))?,
        Method::PATCH => patch_view(&pod, headers, &body, "", "Pod")?,
        _ => {
            return Err(ApiError::method_not_allowed(
                "the server does not allow this method on the requested resource",
            ));
        }
    };
    let mut next = pod.clone();
    next["spec"]["ephemeralContainers"] = desired
        .pointer("/spec/ephemeralContainers")
        .cloned()
        .unwrap_or(json!([]));
    let causes = crate::api::validation::validate_ephemeral_update(&pod, &next);
    if !causes.is_empty() {
        return Err(ApiError::invalid(
            "",
            "Pod",
            name,
            super::registry::causes_from(causes),
        ));
    }
    if let Some(m) = next.get_mut("metadata").and_then(Value::as_object_mut) {
        m.insert("resourceVersion".into(), json!(kv.mod_revision.to_string()));
    }
    let wo = handlers::write_options(q, headers, "unknown")?;
    let w = app
        .registry
        .update(res, ns, name, next, Part::Main, &wo)
        .await?;
    Ok(json_response(StatusCode::OK, &w.object, &[]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selector_strings() {
        assert_eq!(
            selector_string(&json!({"matchLabels": {"app": "web"}})),
            "app=web"
        );
        assert_eq!(selector_string(&json!({"app": "web"})), "app=web");
        assert_eq!(
            selector_string(
                &json!({"matchExpressions": [{"key": "a", "operator": "In", "values": ["x", "y"]}]})
            ),
            "a in (x,y)"
        );
    }

    #[test]
    fn pointers() {
        let mut v = json!({});
        set_pointer(&mut v, "/spec/replicas", json!(3));
        assert_eq!(v, json!({"spec": {"replicas": 3}}));
        assert_eq!(pointer_of(".spec.replicas"), "/spec/replicas");
    }
}
