//! Node authorization: the upstream Node authorizer and NodeRestriction
//! admission, simplified, for identities in `system:nodes`. Called by the
//! resource dispatcher before anything is read or written; every other
//! identity passes untouched.
//!
//! The rules are pure (`rules`); this shell gathers what they need from the
//! registry: the pod named in the path, the pods bound to the node (the
//! "graph" behind secret/configmap/PVC/PV/token access), the current Node
//! for label changes, and the decoded request body.
//!
//! Invariants: a denial is a 403 `Forbidden` Status worded like upstream's
//! authorizer; a request the handler would reject anyway (missing object,
//! malformed body or patch) is let through so the handler gives its own
//! error; checks read the registry directly, never through the API.

pub mod rules;

use axum::http::{HeaderMap, Method};
use serde_json::{Value, json};

use super::AppState;
use super::error::{ApiError, ApiResult};
use super::handlers::{Query, Target};
use super::registry::{Identity, ListOptions, PatchType};
use crate::api::kinds::Resource;
use crate::api::selector::FieldSelector;
use rules::{Attrs, Check, NodeIdentity, RefKind};

/// The request as the dispatcher parsed it.
pub struct Request<'a> {
    pub target: &'a Target,
    pub res: &'a Resource,
    pub method: &'a Method,
    pub query: &'a Query,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
}

fn forbidden(user: &str, a: &Attrs, name: Option<&str>, reason: &str) -> ApiError {
    let mut e = ApiError::forbidden(rules::forbidden_message(user, a, name, reason));
    let mut d = json!({ "name": name.unwrap_or_default(), "kind": a.resource });
    if !a.group.is_empty() {
        d["group"] = json!(a.group);
    }
    e.details = Some(Box::new(d));
    e
}

/// `Ok` when `identity` may make request `r`.
pub async fn authorize(app: &AppState, identity: &Identity, r: &Request<'_>) -> ApiResult<()> {
    let node = match rules::node_identity(&identity.user, &identity.groups) {
        NodeIdentity::NotANode => return Ok(()),
        NodeIdentity::Node(n) => n,
        NodeIdentity::Unknown => {
            let a = attrs(r);
            return Err(forbidden(
                &identity.user,
                &a,
                a.name.as_deref(),
                &format!("unknown node for user {:?}", identity.user),
            ));
        }
    };
    let a = attrs(r);
    let deny = |name: Option<&str>, reason: &str| Err(forbidden(&identity.user, &a, name, reason));
    match rules::decide(&node, &a) {
        Check::Allow => Ok(()),
        Check::Deny(reason) => deny(a.name.as_deref(), &reason),
        Check::PodBoundHere => {
            let (Some(ns), Some(name)) = (a.namespace.as_deref(), a.name.as_deref()) else {
                return deny(a.name.as_deref(), "");
            };
            let Some(pod) = get(app, "pods", Some(ns), name).await else {
                return Ok(());
            };
            if pod.pointer("/spec/nodeName").and_then(Value::as_str) == Some(node.as_str()) {
                return Ok(());
            }
            let what = match (a.verb.as_str(), a.sub.as_deref()) {
                ("delete", _) => "delete pods",
                (_, Some("eviction")) => "evict pods",
                _ => "update pod status for pods",
            };
            deny(
                Some(name),
                &format!("node '{node}' can only {what} with spec.nodeName set to itself"),
            )
        }
        Check::Referenced(kind) => {
            let Some(name) = a.name.as_deref() else {
                return deny(None, "");
            };
            if referenced(app, &node, kind, a.namespace.as_deref(), name).await? {
                Ok(())
            } else {
                deny(Some(name), &rules::no_relationship(&node))
            }
        }
        Check::MirrorPod => {
            let Some(pod) = body(r) else { return Ok(()) };
            let name = meta_name(&pod);
            match rules::mirror_pod_violation(&node, &pod) {
                None => Ok(()),
                Some(why) => deny(name.as_deref(), &why),
            }
        }
        Check::CreateOwnNode => {
            let Some(obj) = body(r) else { return Ok(()) };
            let name = meta_name(&obj);
            if let Some(n) = name.as_deref()
                && n != node
            {
                return deny(Some(n), &format!("node '{node}' cannot modify node '{n}'"));
            }
            match rules::restricted_label_change(&node, None, obj.pointer("/metadata/labels")) {
                None => Ok(()),
                Some(why) => deny(name.as_deref(), &why),
            }
        }
        Check::OwnNodeLabels => {
            let Some(old) = get(app, "nodes", None, &node).await else {
                return Ok(());
            };
            let Some(new) = updated_object(r, &old) else {
                return Ok(());
            };
            match rules::restricted_label_change(
                &node,
                old.pointer("/metadata/labels"),
                new.pointer("/metadata/labels"),
            ) {
                None => Ok(()),
                Some(why) => deny(Some(&node), &why),
            }
        }
        Check::CreateOwnLease => {
            let Some(obj) = body(r) else { return Ok(()) };
            match meta_name(&obj) {
                Some(n) if n != node => deny(
                    Some(&n),
                    &format!("node '{node}' cannot access the lease of node '{n}'"),
                ),
                _ => Ok(()),
            }
        }
    }
}

fn attrs(r: &Request<'_>) -> Attrs {
    let watch = matches!(r.query.get("watch").map(String::as_str), Some("true" | "1"));
    Attrs {
        verb: rules::verb(r.method.as_str(), r.target.name.is_some(), watch).to_string(),
        group: r.res.group.clone(),
        resource: r.res.plural.clone(),
        sub: r.target.sub.clone(),
        namespace: r.target.namespace.clone(),
        name: r.target.name.clone(),
    }
}

fn meta_name(obj: &Value) -> Option<String> {
    obj.pointer("/metadata/name")
        .and_then(Value::as_str)
        .map(String::from)
}

/// The decoded request body; `None` when it does not decode (the handler
/// reports that).
fn body(r: &Request<'_>) -> Option<Value> {
    super::negotiate::decode_body(r.headers, r.body, Some((&r.res.api_version(), &r.res.kind))).ok()
}

/// The object an update or patch would produce from `old` (labels are all
/// that matter). For server-side apply, the applied labels over the old ones.
fn updated_object(r: &Request<'_>, old: &Value) -> Option<Value> {
    use crate::api::patch;
    if *r.method == Method::PUT {
        return body(r);
    }
    let ct = r
        .headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    match PatchType::from_content_type(ct)? {
        PatchType::Json => patch::json_patch(old, r.body).ok(),
        PatchType::Merge => patch::merge_patch(old, r.body).ok(),
        PatchType::Strategic => patch::strategic_merge_patch(
            old,
            r.body,
            &patch::BuiltinMergeSchema::for_kind("", "Node"),
        )
        .ok(),
        PatchType::Apply { .. } => {
            let applied: Value = serde_yaml_ng::from_slice(r.body).ok()?;
            let mut new = old.clone();
            if let Some(labels) = applied
                .pointer("/metadata/labels")
                .and_then(Value::as_object)
            {
                let target = new
                    .pointer_mut("/metadata")
                    .and_then(Value::as_object_mut)?
                    .entry("labels")
                    .or_insert_with(|| json!({}));
                if let Some(t) = target.as_object_mut() {
                    for (k, v) in labels {
                        t.insert(k.clone(), v.clone());
                    }
                }
            }
            Some(new)
        }
    }
}

async fn get(app: &AppState, plural: &str, ns: Option<&str>, name: &str) -> Option<Value> {
    let res = app.registry.kinds.get("", "v1", plural)?;
    app.registry.get(&res, ns, name).await.ok()
}

/// Pods bound to `node` (in `ns`, or everywhere).
async fn pods_on(app: &AppState, node: &str, ns: Option<&str>) -> ApiResult<Vec<Value>> {
    let Some(res) = app.registry.kinds.get("", "v1", "pods") else {
        return Ok(Vec::new());
    };
    let field = FieldSelector::parse(&format!("spec.nodeName={node}"), "", "Pod")
        .map_err(ApiError::bad_request)?;
    let opts = ListOptions {
        field,
        ..Default::default()
    };
    let listed = app.registry.list(&res, ns, &opts).await?;
    listed
        .items
        .iter()
        .map(|kv| app.registry.decode(&res, kv))
        .collect()
}

/// Whether a pod bound to `node` references the object.
async fn referenced(
    app: &AppState,
    node: &str,
    kind: RefKind,
    ns: Option<&str>,
    name: &str,
) -> ApiResult<bool> {
    if kind == RefKind::Volume {
        // PV ← PVC (spec.volumeName) ← pod on this node
        for pod in pods_on(app, node, None).await? {
            let pod_ns = pod
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            for claim in rules::pod_refs(&pod).claims {
                if let Some(c) = get(app, "persistentvolumeclaims", Some(&pod_ns), &claim).await
                    && c.pointer("/spec/volumeName").and_then(Value::as_str) == Some(name)
                {
                    return Ok(true);
                }
            }
        }
        return Ok(false);
    }
    let Some(ns) = ns else { return Ok(false) };
    Ok(pods_on(app, node, Some(ns)).await?.iter().any(|pod| {
        let refs = rules::pod_refs(pod);
        match kind {
            RefKind::Secret => refs.secrets.contains(name),
            RefKind::ConfigMap => refs.configmaps.contains(name),
            RefKind::Claim => refs.claims.contains(name),
            RefKind::ServiceAccount => refs.service_account == name,
            RefKind::Volume => false,
        }
    }))
}
