//! The generic registry: Kubernetes object semantics over the store, for
//! every kind (the upstream "generic registry + strategy" pattern).
//!
//! It owns create/update/patch/delete/get/list semantics: namespaces that must
//! exist, generateName, uid/creationTimestamp/generation, status split,
//! defaulting and validation, managedFields, finalizers and graceful
//! deletion, optimistic concurrency. It knows nothing of HTTP: handlers
//! decode requests into these calls, and in-process controllers (GC,
//! namespace deletion) call it directly.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value, json};

use super::error::{ApiError, ApiResult, StatusCause};
use crate::api::kinds::{Kinds, Resource};
use crate::api::selector::{FieldSelector, LabelSelector};
use crate::api::{convert, crd_schema, defaults, patch, typed, validation};
use crate::store::{Backend, KeyValue, Revision, StoreError};

/// Who is making a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub user: String,
    pub groups: Vec<String>,
}

impl Identity {
    pub fn system(user: &str) -> Self {
        Identity {
            user: user.to_string(),
            groups: vec!["system:masters".into(), "system:authenticated".into()],
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum FieldValidation {
    Strict,
    #[default]
    Warn,
    Ignore,
}

impl FieldValidation {
    pub fn parse(s: Option<&str>) -> ApiResult<Self> {
        match s {
            None | Some("") | Some("Warn") => Ok(Self::Warn),
            Some("Strict") => Ok(Self::Strict),
            Some("Ignore") => Ok(Self::Ignore),
            Some(other) => Err(ApiError::bad_request(format!(
                "fieldValidation parameter unsupported: {other}"
            ))),
        }
    }
}

/// Options common to every write.
#[derive(Clone, Debug, Default)]
pub struct WriteOptions {
    pub dry_run: bool,
    pub field_manager: String,
    pub field_validation: FieldValidation,
}

/// A written object plus the warnings to send back (`Warning:` headers).
#[derive(Debug)]
pub struct Written {
    pub object: Value,
    pub warnings: Vec<String>,
    /// True when a new object was created (201 instead of 200).
    pub created: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Propagation {
    Background,
    Foreground,
    Orphan,
}

#[derive(Clone, Debug, Default)]
pub struct DeleteOptions {
    pub dry_run: bool,
    pub grace_period_seconds: Option<i64>,
    pub propagation: Option<Propagation>,
    pub precondition_uid: Option<String>,
    pub precondition_rv: Option<String>,
}

/// Outcome of a delete: the object and whether it is gone already.
#[derive(Debug)]
pub struct Deleted {
    pub object: Value,
    pub gone: bool,
}

#[derive(Clone, Debug, Default)]
pub struct ListOptions {
    pub label: LabelSelector,
    pub field: FieldSelector,
    pub limit: usize,
    pub continue_token: Option<String>,
    pub resource_version: Option<String>,
    pub resource_version_match: Option<String>,
}

pub struct ListOutput {
    pub items: Vec<KeyValue>,
    pub revision: Revision,
    pub continue_token: Option<String>,
    pub remaining: Option<i64>,
    /// Items were filtered by selectors (raw fast path not possible for counts).
    pub filtered: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchType {
    Json,
    Merge,
    Strategic,
    Apply { force: bool },
}

impl PatchType {
    pub fn from_content_type(ct: &str) -> Option<Self> {
        let base = ct.split(';').next().unwrap_or("").trim();
        match base {
            "application/json-patch+json" => Some(Self::Json),
            "application/merge-patch+json" => Some(Self::Merge),
            "application/strategic-merge-patch+json" => Some(Self::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+json" => {
                Some(Self::Apply { force: false })
            }
            _ => None,
        }
    }
}

/// Which part of an object a write addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    Main,
    Status,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct NsState {
    terminating: bool,
}

pub struct Registry {
    pub store: Arc<dyn Backend>,
    pub kinds: Arc<Kinds>,
    namespaces: Mutex<HashMap<String, NsState>>,
    service_alloc: tokio::sync::Mutex<()>,
    service_cidr: (u32, u8),
}

pub fn now_rfc3339() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn random_suffix(n: usize) -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    (0..n)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

fn meta(obj: &Value) -> Option<&Map<String, Value>> {
    obj.get("metadata").and_then(Value::as_object)
}

fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    meta(obj).and_then(|m| m.get(field)).and_then(Value::as_str)
}

fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.is_object() {
        *obj = Value::Object(Map::new());
    }
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    match obj.get_mut("metadata") {
        Some(Value::Object(m)) => m,
        _ => unreachable!("metadata was made an object just above"),
    }
}

pub fn finalizers(obj: &Value) -> Vec<String> {
    string_list(meta(obj).and_then(|m| m.get("finalizers")))
}

/// The strings of a JSON array (non-strings skipped; absent → empty).
pub fn string_list(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

pub(super) fn causes_from(v: Vec<validation::Cause>) -> Vec<StatusCause> {
    v.into_iter()
        .map(|c| StatusCause {
            reason: c.reason.to_string(),
            message: c.message,
            field: c.field,
        })
        .collect()
}

/// Parse `10.43.0.0/16` into (network as u32, prefix length).
pub fn parse_cidr(s: &str) -> Option<(u32, u8)> {
    let (ip, len) = s.split_once('/')?;
    let ip: std::net::Ipv4Addr = ip.parse().ok()?;
    let len: u8 = len.parse().ok()?;
    if len > 32 {
        return None;
    }
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    Some((u32::from(ip) & mask, len))
}

impl Registry {
    pub fn new(store: Arc<dyn Backend>, kinds: Arc<Kinds>, service_cidr: &str) -> Self {
        Registry {
            store,
            kinds,
            namespaces: Mutex::new(HashMap::new()),
            service_alloc: tokio::sync::Mutex::new(()),
            service_cidr: parse_cidr(service_cidr).unwrap_or((0x0a2b_0000, 16)),
        }
    }

    fn ns_resource(&self) -> ApiResult<Arc<Resource>> {
        self.kinds
            .get("", "v1", "namespaces")
            .ok_or_else(|| ApiError::internal("namespaces resource missing"))
    }

    fn cache_ns(&self, name: &str, state: Option<NsState>) {
        let mut m = self.namespaces.lock().unwrap_or_else(|e| e.into_inner());
        match state {
            Some(s) => {
                m.insert(name.to_string(), s);
            }
            None => {
                m.remove(name);
            }
        }
    }

    /// Keep the kinds table in step with CRD writes (before the response).
    fn note_crd(&self, res: &Resource, obj: &Value, gone: bool) {
        if !is_crd(res) {
            return;
        }
        let name = meta_str(obj, "name").unwrap_or_default();
        if gone {
            self.kinds.set_crd(name, Vec::new());
        } else {
            self.kinds
                .set_crd(name, super::controllers::crd_resources(obj));
        }
    }

    fn note_namespace(&self, obj: &Value, gone: bool) {
        if let Some(name) = meta_str(obj, "name") {
            if gone {
                self.cache_ns(name, None);
            } else {
                let terminating = meta(obj).is_some_and(|m| m.contains_key("deletionTimestamp"))
                    || obj.pointer("/status/phase").and_then(Value::as_str) == Some("Terminating");
                self.cache_ns(name, Some(NsState { terminating }));
            }
        }
    }

    async fn namespace_state(&self, ns: &str) -> ApiResult<Option<NsState>> {
        if let Some(s) = self
            .namespaces
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(ns)
            .copied()
        {
            return Ok(Some(s));
        }
        let res = self.ns_resource()?;
        match self.store.get(&res.key(None, ns)).await? {
            Some(kv) => {
                let obj: Value = serde_json::from_slice(&kv.value)
                    .map_err(|e| ApiError::internal(e.to_string()))?;
                self.note_namespace(&obj, false);
                Ok(self
                    .namespaces
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(ns)
                    .copied())
            }
            None => Ok(None),
        }
    }

    pub async fn get(&self, res: &Resource, ns: Option<&str>, name: &str) -> ApiResult<Value> {
        Ok(self.get_kv(res, ns, name).await?.1)
    }

    pub async fn get_kv(
        &self,
        res: &Resource,
        ns: Option<&str>,
        name: &str,
    ) -> ApiResult<(KeyValue, Value)> {
        let key = res.key(ns, name);
        match self.store.get(&key).await? {
            Some(kv) => {
                let obj = self.decode(res, &kv)?;
                Ok((kv, obj))
            }
            None => Err(ApiError::not_found(&res.group, &res.plural, name)),
        }
    }

    /// Decode a stored value, presenting it in the resource's requested version.
    pub fn decode(&self, res: &Resource, kv: &KeyValue) -> ApiResult<Value> {
        Ok(self.present(res, Self::decode_stored(kv)?))
    }

    /// The stored form of an object (storage version, no conversion).
    fn decode_stored(kv: &KeyValue) -> ApiResult<Value> {
        serde_json::from_slice(&kv.value)
            .map_err(|e| ApiError::internal(format!("corrupt object {}: {e}", kv.key)))
    }

    /// A stored object as the requested version presents it.
    pub fn present(&self, res: &Resource, mut obj: Value) -> Value {
        if res.version == res.storage_version {
            return obj;
        }
        if res.custom {
            obj["apiVersion"] = json!(res.api_version());
            obj
        } else {
            convert::from_storage(&res.group, &res.kind, &res.version, obj)
        }
    }

    /// A request object in the storage version.
    fn to_storage(res: &Resource, obj: Value) -> Value {
        if !res.custom && convert::needed(&res.group, &res.kind, &res.version, &res.storage_version)
        {
            convert::to_storage(&res.group, &res.kind, obj)
        } else {
            obj
        }
    }

    // ---------------------------------------------------------------- list

    pub async fn list(
        &self,
        res: &Resource,
        ns: Option<&str>,
        opts: &ListOptions,
    ) -> ApiResult<ListOutput> {
        let prefix = res.list_prefix(ns);
        let (mut start_after, mut at) = (None, None);
        if let Some(tok) = &opts.continue_token {
            let (rev, key) = decode_continue(tok)?;
            if !key.starts_with(&prefix) {
                return Err(ApiError::bad_request(
                    "continue key is not valid for this request",
                ));
            }
            start_after = Some(key);
            at = Some(rev);
        } else if let Some(rv) = opts.resource_version.as_deref().filter(|s| !s.is_empty()) {
            let rev: Revision = rv
                .parse()
                .map_err(|_| ApiError::bad_request(format!("invalid resource version \"{rv}\"")))?;
            if opts.resource_version_match.as_deref() == Some("Exact") {
                at = Some(rev);
            } else if rev > self.store.current_revision() && rev != 0 {
                let mut e = ApiError::timeout(format!(
                    "Too large resource version: {rev}, current: {}",
                    self.store.current_revision()
                ));
                e.retry_after = Some(1);
                return Err(e);
            }
        }
        match opts.resource_version_match.as_deref() {
            None | Some("") | Some("NotOlderThan") | Some("Exact") => {}
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "invalid resourceVersionMatch: {other:?}: supported values: \"Exact\", \"NotOlderThan\""
                )));
            }
        }
        let filtering = !opts.label.is_empty() || !opts.field.is_empty();
        let limit = opts.limit;
        let mut items = Vec::new();
        let mut revision;
        let mut more;
        let mut remaining = None;
        let mut last_key: Option<String> = start_after.clone();
        loop {
            // without selectors the store pages exactly, so its count of what
            // remains is exact; with selectors we read ahead in larger pages
            let page_limit = match (limit, filtering) {
                (0, _) => 0,
                (_, true) => limit.max(64),
                (_, false) => limit - items.len(),
            };
            let page = self
                .store
                .list(&prefix, last_key.as_deref(), page_limit, at)
                .await
                .map_err(|e| match e {
                    StoreError::Compacted { .. } if opts.continue_token.is_some() => ApiError::gone(
                        "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.",
                    ),
                    other => ApiError::from_store(other, &res.group, &res.plural, ""),
                })?;
            revision = page.revision;
            at = Some(page.revision);
            let mut page_items = page.items.into_iter();
            let mut full = false;
            for kv in page_items.by_ref() {
                last_key = Some(kv.key.clone());
                if filtering {
                    let obj: Value = serde_json::from_slice(&kv.value).map_err(|e| {
                        ApiError::internal(format!("corrupt object {}: {e}", kv.key))
                    })?;
                    if !(opts.label.matches(&obj) && opts.field.matches(&obj)) {
                        continue;
                    }
                }
                items.push(kv);
                if limit != 0 && items.len() >= limit {
                    full = true;
                    break;
                }
            }
            let unread = page_items.len() > 0;
            more = page.more || unread;
            if full || !page.more || limit == 0 {
                if !filtering && limit != 0 && more {
                    remaining = Some(page.remaining.max(0));
                }
                break;
            }
        }
        let continue_token = if limit != 0 && more {
            items.last().map(|kv| encode_continue(revision, &kv.key))
        } else {
            None
        };
        if continue_token.is_none() {
            remaining = None;
        }
        Ok(ListOutput {
            items,
            revision,
            continue_token,
            remaining,
            filtered: filtering,
        })
    }

    // -------------------------------------------------------------- create

    /// Common checks of a body against the URL: kind/apiVersion, namespace, name.
    fn check_body(
        &self,
        res: &Resource,
        ns: Option<&str>,
        obj: &mut Value,
        url_name: Option<&str>,
    ) -> ApiResult<()> {
        if !obj.is_object() {
            return Err(ApiError::bad_request(format!(
                "Object '{}' is not an object",
                res.kind
            )));
        }
        let api_version = res.api_version();
        match obj.get("apiVersion").and_then(Value::as_str) {
            None | Some("") => obj["apiVersion"] = json!(api_version),
            Some(v) if v == api_version => {}
            Some(v) if res.custom && crate::api::kinds::split_api_version(v).0 == res.group => {
                obj["apiVersion"] = json!(api_version)
            }
            Some(v) => {
                return Err(ApiError::bad_request(format!(
                    "the API version in the data ({v}) does not match the expected API version ({api_version})"
                )));
            }
        }
        match obj.get("kind").and_then(Value::as_str) {
            None | Some("") => obj["kind"] = json!(res.kind),
            Some(k) if k == res.kind => {}
            Some(k) => {
                return Err(ApiError::bad_request(format!(
                    "the kind in the data ({k}) does not match the expected kind ({})",
                    res.kind
                )));
            }
        }
        if obj
            .get("metadata")
            .is_some_and(|m| !m.is_object() && !m.is_null())
        {
            return Err(ApiError::bad_request(
                "metadata: expected an object".to_string(),
            ));
        }
        let m = meta_mut(obj);
        if res.namespaced {
            let url_ns = ns.unwrap_or_default();
            match m.get("namespace").and_then(Value::as_str) {
                None | Some("") => {
                    m.insert("namespace".into(), json!(url_ns));
                }
                Some(x) if x == url_ns => {}
                Some(_) => {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ));
                }
            }
        } else {
            m.remove("namespace");
        }
        if let Some(url_name) = url_name {
            match m.get("name").and_then(Value::as_str) {
                None | Some("") => {
                    m.insert("name".into(), json!(url_name));
                }
                Some(x) if x == url_name => {}
                Some(x) => {
                    return Err(ApiError::bad_request(format!(
                        "the name of the object ({x}) does not match the name on the URL ({url_name})"
                    )));
                }
            }
        }
        Ok(())
    }

    /// Unknown-field handling per `fieldValidation`; prunes the object.
    fn check_fields(
        &self,
        res: &Resource,
        obj: &mut Value,
        fv: FieldValidation,
        warnings: &mut Vec<String>,
    ) -> ApiResult<()> {
        let unknown = if res.custom {
            match &res.schema {
                Some(schema) => crd_schema::prune(schema, obj),
                None => Vec::new(),
            }
        } else {
            typed::normalize_quantities(obj);
            match typed::check(&res.group, &res.version, &res.kind, obj) {
                Ok(Some(check)) => {
                    typed::prune(obj, &check.unknown);
                    check.unknown
                }
                Ok(None) => Vec::new(),
                Err(msg) => {
                    return Err(ApiError::bad_request(format!(
                        "{kind} in version \"{v}\" cannot be handled as a {kind}: {msg}",
                        kind = res.kind,
                        v = res.version
                    )));
                }
            }
        };
        if unknown.is_empty() {
            return Ok(());
        }
        match fv {
            FieldValidation::Strict => {
                let list: Vec<String> = unknown
                    .iter()
                    .map(|u| format!("unknown field \"{u}\""))
                    .collect();
                Err(ApiError::bad_request(format!(
                    "{kind} in version \"{v}\" cannot be handled as a {kind}: strict decoding error: {}",
                    list.join(", "),
                    kind = res.kind,
                    v = res.version
                )))
            }
            FieldValidation::Warn => {
                warnings.extend(unknown.iter().map(|u| format!("unknown field \"{u}\"")));
                Ok(())
            }
            FieldValidation::Ignore => Ok(()),
        }
    }

    fn apply_defaults(&self, res: &Resource, obj: &mut Value) {
        if res.custom {
            if let Some(schema) = &res.schema {
                crd_schema::apply_defaults(schema, obj);
            }
        } else {
            defaults::apply_defaults(&res.group, &res.kind, obj);
        }
    }

    fn validate(&self, res: &Resource, old: Option<&Value>, obj: &Value) -> ApiResult<()> {
        let name = meta_str(obj, "name").unwrap_or_default().to_string();
        let mut causes = Vec::new();
        if res.custom {
            causes.extend(custom_meta_causes(obj));
            if let Some(schema) = &res.schema {
                for (field, reason, message) in crd_schema::validate(schema, obj) {
                    causes.push(StatusCause {
                        reason,
                        message,
                        field,
                    });
                }
            }
        } else {
            causes.extend(causes_from(validation::validate_create(
                &res.group, &res.kind, obj,
            )));
            if let Some(old) = old {
                causes.extend(causes_from(validation::validate_update(
                    &res.group, &res.kind, old, obj,
                )));
            }
            if res.kind == "CustomResourceDefinition"
                && let Some(versions) = obj.pointer("/spec/versions").and_then(Value::as_array)
            {
                for (i, v) in versions.iter().enumerate() {
                    if let Some(schema) = v.pointer("/schema/openAPIV3Schema") {
                        for msg in crd_schema::check_structural(schema) {
                            causes.push(StatusCause {
                                reason: "FieldValueInvalid".into(),
                                message: msg,
                                field: format!("spec.versions[{i}].schema.openAPIV3Schema"),
                            });
                        }
                    }
                }
            }
        }
        if causes.is_empty() {
            Ok(())
        } else {
            Err(ApiError::invalid(&res.group, &res.kind, &name, causes))
        }
    }

    /// Reset the status of a new object like upstream's PrepareForCreate.
    fn reset_status_for_create(res: &Resource, obj: &mut Value) {
        if !res.has_status || res.kind == "Node" || (res.kind == "Event") {
            return;
        }
        let initial = match (res.group.as_str(), res.kind.as_str()) {
            ("", "Pod") => {
                json!({"phase": "Pending", "qosClass": obj.as_object().map(defaults::pod_qos_class).unwrap_or("BestEffort")})
            }
            ("", "Namespace") => json!({"phase": "Active"}),
            ("", "PersistentVolumeClaim") | ("", "PersistentVolume") => {
                json!({"phase": "Pending"})
            }
            ("", "Service") => json!({"loadBalancer": {}}),
            // fields upstream serializes even when zero (no omitempty);
            // typed clients reject a status without them
            ("apps", "ReplicaSet") | ("", "ReplicationController") => json!({"replicas": 0}),
            ("apps", "StatefulSet") => json!({"replicas": 0, "availableReplicas": 0}),
            ("apps", "DaemonSet") => json!({
                "currentNumberScheduled": 0,
                "numberMisscheduled": 0,
                "desiredNumberScheduled": 0,
                "numberReady": 0,
            }),
            ("autoscaling", "HorizontalPodAutoscaler") => json!({"desiredReplicas": 0}),
            ("policy", "PodDisruptionBudget") => json!({
                "disruptionsAllowed": 0,
                "currentHealthy": 0,
                "desiredHealthy": 0,
                "expectedPods": 0,
            }),
            _ => json!({}),
        };
        if let Some(m) = obj.as_object_mut() {
            if res.custom && !m.contains_key("status") {
                return;
            }
            m.insert("status".into(), initial);
        }
    }

    pub async fn create(
        &self,
        res: &Resource,
        ns: Option<&str>,
        mut obj: Value,
        opts: &WriteOptions,
    ) -> ApiResult<Written> {
        let mut warnings = Vec::new();
        self.check_body(res, ns, &mut obj, None)?;
        self.check_fields(res, &mut obj, opts.field_validation, &mut warnings)?;
        let mut obj = Self::to_storage(res, obj);
        self.prepare_create(res, ns, &mut obj).await?;
        let now = now_rfc3339();
        patch::record_update(
            None,
            &mut obj,
            &opts.field_manager,
            "Update",
            &res.api_version(),
            &now,
            None,
            &merge_schema(res),
        );
        self.finish_create(res, ns, obj, opts, warnings).await
    }

    /// Everything about a new object that does not depend on how it was sent.
    async fn prepare_create(
        &self,
        res: &Resource,
        ns: Option<&str>,
        obj: &mut Value,
    ) -> ApiResult<()> {
        {
            let m = meta_mut(obj);
            let has_name = m
                .get("name")
                .and_then(Value::as_str)
                .is_some_and(|s| !s.is_empty());
            if !has_name
                && let Some(prefix) = m.get("generateName").and_then(Value::as_str)
                && !prefix.is_empty()
            {
                let name = format!("{prefix}{}", random_suffix(5));
                m.insert("name".into(), json!(name));
            }
            if m.get("name")
                .and_then(Value::as_str)
                .is_none_or(|s| s.is_empty())
            {
                let kind = res.kind.clone();
                return Err(ApiError::invalid(
                    &res.group,
                    &kind,
                    "",
                    vec![StatusCause {
                        reason: "FieldValueRequired".into(),
                        message: "Required value: name or generateName is required".into(),
                        field: "metadata.name".into(),
                    }],
                ));
            }
            for k in [
                "resourceVersion",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "selfLink",
            ] {
                m.remove(k);
            }
            m.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
            m.insert("creationTimestamp".into(), json!(now_rfc3339()));
            if res.generation || res.custom {
                m.insert("generation".into(), json!(1));
            } else {
                m.remove("generation");
            }
        }
        if res.namespaced {
            let ns = ns.unwrap_or_default();
            match self.namespace_state(ns).await? {
                None => return Err(ApiError::not_found("", "namespaces", ns)),
                Some(s) if s.terminating => {
                    let mut e = ApiError::forbidden(format!(
                        "{} \"{}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                        res.qualified_plural(),
                        meta_str(obj, "name").unwrap_or_default()
                    ));
                    e.details = Some(Box::new(
                        json!({"name": meta_str(obj, "name").unwrap_or_default(), "kind": res.plural, "causes": [{"reason": "NamespaceTerminating", "message": format!("namespace {ns} is being terminated"), "field": "metadata.namespace"}]}),
                    ));
                    return Err(e);
                }
                Some(_) => {}
            }
        }
        Self::reset_status_for_create(res, obj);
        self.apply_defaults(res, obj);
        super::admission::service_account(self, res, ns, obj).await?;
        if super::admission::mutate(self, res, ns, obj).await? && obj["status"].is_object() {
            // LimitRange defaults may change the pod's QoS class
            let qos = obj.as_object().map(defaults::pod_qos_class);
            obj["status"]["qosClass"] = json!(qos.unwrap_or("BestEffort"));
        }
        self.validate(res, None, obj)?;
        if is_crd(res) {
            let status = super::controllers::established_status(obj, &now_rfc3339());
            obj["status"] = status;
            let m = meta_mut(obj);
            let mut fins: Vec<Value> = m
                .get("finalizers")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            if !fins.iter().any(|f| f == CRD_FINALIZER) {
                fins.push(json!(CRD_FINALIZER));
            }
            m.insert("finalizers".into(), Value::Array(fins));
        }
        Ok(())
    }

    async fn finish_create(
        &self,
        res: &Resource,
        ns: Option<&str>,
        mut obj: Value,
        opts: &WriteOptions,
        warnings: Vec<String>,
    ) -> ApiResult<Written> {
        let name = meta_str(&obj, "name").unwrap_or_default().to_string();
        let key = res.key(ns, &name);
        let is_service = !res.custom && res.group.is_empty() && res.kind == "Service";
        let _guard = if is_service {
            let g = self.service_alloc.lock().await;
            self.allocate_service(res, ns, &mut obj).await?;
            Some(g)
        } else {
            None
        };
        super::admission::charge_quota(self, res, ns, &obj, opts.dry_run).await?;
        if opts.dry_run {
            return Ok(Written {
                object: self.present(res, obj),
                warnings,
                created: true,
            });
        }
        let kv = self
            .store
            .create(&key, obj)
            .await
            .map_err(|e| ApiError::from_store(e, &res.group, &res.plural, &name))?;
        let out = self.decode(res, &kv)?;
        if res.group.is_empty() && res.kind == "Namespace" {
            self.note_namespace(&out, false);
        }
        self.note_crd(res, &out, false);
        Ok(Written {
            object: out,
            warnings,
            created: true,
        })
    }

    /// ClusterIP and NodePort allocation for Services (under `service_alloc`).
    async fn allocate_service(
        &self,
        res: &Resource,
        ns: Option<&str>,
        obj: &mut Value,
    ) -> ApiResult<()> {
        let svc_type = obj
            .pointer("/spec/type")
            .and_then(Value::as_str)
            .unwrap_or("ClusterIP")
            .to_string();
        let name = meta_str(obj, "name").unwrap_or_default().to_string();
        let all = self.store.list(&res.prefix(), None, 0, None).await?;
        let mut used_ips = std::collections::HashSet::new();
        let mut used_ports = std::collections::HashSet::new();
        for kv in &all.items {
            if let Ok(o) = serde_json::from_slice::<Value>(&kv.value) {
                if Some(kv.key.as_str()) == Some(res.key(ns, &name).as_str()) {
                    continue;
                }
                if let Some(ip) = o.pointer("/spec/clusterIP").and_then(Value::as_str) {
                    used_ips.insert(ip.to_string());
                }
                if let Some(ports) = o.pointer("/spec/ports").and_then(Value::as_array) {
                    for p in ports {
                        if let Some(np) = p.get("nodePort").and_then(Value::as_i64) {
                            used_ports.insert(np);
                        }
                    }
                }
            }
        }
        if svc_type != "ExternalName" {
            let requested = obj
                .pointer("/spec/clusterIP")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            if requested.is_empty() {
                let (net, len) = self.service_cidr;
                let size: u32 = if len >= 32 { 1 } else { 1u32 << (32 - len) };
                // .0 network, .1 kubernetes, .10 DNS are taken by convention through used_ips
                let mut chosen = None;
                let start = 11u32.min(size.saturating_sub(2));
                for off in (start..size.saturating_sub(1)).chain(1..start) {
                    let ip = std::net::Ipv4Addr::from(net.wrapping_add(off)).to_string();
                    if !used_ips.contains(&ip) {
                        chosen = Some(ip);
                        break;
                    }
                }
                let Some(ip) = chosen else {
                    return Err(ApiError::internal(
                        "failed to allocate a serviceIP: range is full",
                    ));
                };
                obj["spec"]["clusterIP"] = json!(ip);
                obj["spec"]["clusterIPs"] = json!([ip]);
            } else if requested != "None" {
                let ok = requested
                    .parse::<std::net::Ipv4Addr>()
                    .ok()
                    .map(u32::from)
                    .is_some_and(|ip| {
                        let (net, len) = self.service_cidr;
                        let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
                        ip & mask == net
                    });
                let cause = |msg: String| {
                    ApiError::invalid(
                        "",
                        "Service",
                        &name,
                        vec![StatusCause {
                            reason: "FieldValueInvalid".into(),
                            message: msg,
                            field: "spec.clusterIPs".into(),
                        }],
                    )
                };
                if !ok {
                    return Err(cause(format!(
                        "Invalid value: [\"{requested}\"]: failed to allocate IP {requested}: the provided IP ({requested}) is not in the valid range. The range of valid IPs is {}/{}",
                        std::net::Ipv4Addr::from(self.service_cidr.0),
                        self.service_cidr.1
                    )));
                }
                if used_ips.contains(&requested) {
                    return Err(cause(format!(
                        "Invalid value: [\"{requested}\"]: failed to allocate IP {requested}: provided IP is already allocated"
                    )));
                }
                obj["spec"]["clusterIPs"] = json!([requested]);
            } else {
                obj["spec"]["clusterIPs"] = json!(["None"]);
            }
        }
        if (svc_type == "NodePort" || svc_type == "LoadBalancer")
            && let Some(ports) = obj.pointer_mut("/spec/ports").and_then(Value::as_array_mut)
        {
            let mut next = 30000i64;
            for p in ports.iter_mut() {
                if let Some(np) = p.get("nodePort").and_then(Value::as_i64) {
                    if used_ports.contains(&np) {
                        return Err(ApiError::invalid(
                            "",
                            "Service",
                            &name,
                            vec![StatusCause {
                                reason: "FieldValueInvalid".into(),
                                message: format!(
                                    "Invalid value: {np}: provided port is already allocated"
                                ),
                                field: "spec.ports[0].nodePort".into(),
                            }],
                        ));
                    }
                    used_ports.insert(np);
                    continue;
                }
                while used_ports.contains(&next) && next <= 32767 {
                    next += 1;
                }
                if next > 32767 {
                    return Err(ApiError::internal(
                        "failed to allocate a nodePort: range is full",
                    ));
                }
                p["nodePort"] = json!(next);
                used_ports.insert(next);
            }
        }
        Ok(())
    }

    // -------------------------------------------------------------- update

    /// PUT semantics. `expected` is the body's resourceVersion precondition.
    pub async fn update(
        &self,
        res: &Resource,
        ns: Option<&str>,
        name: &str,
        mut obj: Value,
        part: Part,
        opts: &WriteOptions,
    ) -> ApiResult<Written> {
        let mut warnings = Vec::new();
        self.check_body(res, ns, &mut obj, Some(name))?;
        self.check_fields(res, &mut obj, opts.field_validation, &mut warnings)?;
        let expected =
            match meta_str(&obj, "resourceVersion") {
                None | Some("") => None,
                Some(rv) => Some(rv.parse::<Revision>().map_err(|_| {
                    ApiError::bad_request(format!("invalid resourceVersion \"{rv}\""))
                })?),
            };
        let current = match self.store.get(&res.key(ns, name)).await? {
            Some(kv) => kv,
            None => {
                if part == Part::Main && allow_create_on_update(res) {
                    let mut w = self.create(res, ns, obj, opts).await?;
                    w.warnings.extend(warnings);
                    return Ok(w);
                }
                return Err(ApiError::not_found(&res.group, &res.plural, name));
            }
        };
        if let Some(exp) = expected
            && exp != current.mod_revision
        {
            return Err(ApiError::conflict(
                &res.group,
                &res.plural,
                name,
                "the object has been modified; please apply your changes to the latest version and try again",
            ));
        }
        let old = Self::decode_stored(&current)?;
        let mut obj = Self::to_storage(res, obj);
        let now = now_rfc3339();
        let sub = match part {
            Part::Main => None,
            Part::Status => Some("status"),
        };
        patch::record_update(
            Some(&old),
            &mut obj,
            &opts.field_manager,
            "Update",
            &res.api_version(),
            &now,
            sub,
            &merge_schema(res),
        );
        self.write_update(res, name, &current, old, obj, part, opts, warnings)
            .await
    }

    /// Finish an update whose new object is computed: merge system fields,
    /// default, validate, bump generation, and write with CAS on `current`.
    #[allow(clippy::too_many_arguments)]
    async fn write_update(
        &self,
        res: &Resource,
        name: &str,
        current: &KeyValue,
        old: Value,
        mut obj: Value,
        part: Part,
        opts: &WriteOptions,
        warnings: Vec<String>,
    ) -> ApiResult<Written> {
        match part {
            Part::Main => {
                if res.has_status {
                    match old.get("status") {
                        Some(s) => obj["status"] = s.clone(),
                        None => {
                            if let Some(m) = obj.as_object_mut() {
                                m.remove("status");
                            }
                        }
                    }
                }
            }
            Part::Status => {
                // only status changes (plus managedFields bookkeeping)
                let status = obj.get("status").cloned();
                let managed = meta(&obj).and_then(|m| m.get("managedFields")).cloned();
                let mut next = old.clone();
                match status {
                    Some(s) => next["status"] = s,
                    None => {
                        if let Some(m) = next.as_object_mut() {
                            m.remove("status");
                        }
                    }
                }
                if let Some(mf) = managed {
                    meta_mut(&mut next).insert("managedFields".into(), mf);
                }
                obj = next;
            }
        }
        // system metadata is owned by the server
        {
            let old_meta = meta(&old).cloned().unwrap_or_default();
            let m = meta_mut(&mut obj);
            for k in [
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
                "namespace",
                "name",
            ] {
                match old_meta.get(k) {
                    Some(v) => {
                        m.insert(k.into(), v.clone());
                    }
                    None => {
                        m.remove(k);
                    }
                }
            }
            m.remove("resourceVersion");
            m.remove("selfLink");
            // once deleting, finalizers may only be removed
            if old_meta.contains_key("deletionTimestamp") {
                let old_f: Vec<Value> = old_meta
                    .get("finalizers")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                let new_f: Vec<Value> = m
                    .get("finalizers")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                if new_f.iter().any(|f| !old_f.contains(f)) {
                    let kind = res.kind.clone();
                    return Err(ApiError::invalid(
                        &res.group,
                        &kind,
                        name,
                        vec![StatusCause {
                            reason: "FieldValueForbidden".into(),
                            message: "Forbidden: no new finalizers can be added if the object is being deleted".into(),
                            field: "metadata.finalizers".into(),
                        }],
                    ));
                }
            }
        }
        if part == Part::Main {
            self.apply_defaults(res, &mut obj);
            if is_crd(res) {
                let status = super::controllers::established_status(&obj, &now_rfc3339());
                obj["status"] = status;
            }
        }
        self.validate(res, Some(&old), &obj)?;
        if (res.generation || res.custom) && spec_changed(&old, &obj) {
            let g = meta(&old)
                .and_then(|m| m.get("generation"))
                .and_then(Value::as_i64)
                .unwrap_or(0);
            meta_mut(&mut obj).insert("generation".into(), json!(g + 1));
        }
        // a no-op write does not create a new revision
        if same_ignoring_times(&old, &obj) {
            return Ok(Written {
                object: self.present(res, old),
                warnings,
                created: false,
            });
        }
        if opts.dry_run {
            // a dry run shows the object as it would be stored, at the live revision
            meta_mut(&mut obj).insert(
                "resourceVersion".into(),
                json!(current.mod_revision.to_string()),
            );
            return Ok(Written {
                object: self.present(res, obj),
                warnings,
                created: false,
            });
        }
        // the last finalizer removed from a deleting object completes the delete
        if meta(&obj).is_some_and(|m| m.contains_key("deletionTimestamp"))
            && finalizers(&obj).is_empty()
            && !(res.group.is_empty() && res.kind == "Namespace")
            && !graceful_pending(res, &obj)
        {
            let kv = self
                .store
                .delete(&current.key, Some(current.mod_revision))
                .await
                .map_err(|e| ApiError::from_store(e, &res.group, &res.plural, name))?;
            let out = self.decode(res, &kv)?;
            self.note_crd(res, &out, true);
            return Ok(Written {
                object: out,
                warnings,
                created: false,
            });
        }
        let kv = self
            .store
            .update(&current.key, Some(current.mod_revision), obj)
            .await
            .map_err(|e| ApiError::from_store(e, &res.group, &res.plural, name))?;
        let out = self.decode(res, &kv)?;
        if res.group.is_empty() && res.kind == "Namespace" {
            self.note_namespace(&out, false);
        }
        self.note_crd(res, &out, false);
        Ok(Written {
            object: out,
            warnings,
            created: false,
        })
    }

    // --------------------------------------------------------------- patch

    #[allow(clippy::too_many_arguments)]
    pub async fn patch(
        &self,
        res: &Resource,
        ns: Option<&str>,
        name: &str,
        patch_type: PatchType,
        body: &[u8],
        part: Part,
        opts: &WriteOptions,
    ) -> ApiResult<Written> {
        if matches!(patch_type, PatchType::Strategic) && res.custom {
            return Err(ApiError::new(
                415,
                "UnsupportedMediaType",
                "strategic merge patch format is not supported",
            ));
        }
        if body.len() > MAX_BODY {
            return Err(ApiError::too_large());
        }
        let mut attempts = 0;
        loop {
            attempts += 1;
            let result = self
                .patch_once(res, ns, name, patch_type, body, part, opts)
                .await;
            match result {
                Err(e)
                    if e.reason == "Conflict"
                        && attempts < 5
                        && !e.message.contains("precondition") =>
                {
                    continue;
                }
                other => return other,
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn patch_once(
        &self,
        res: &Resource,
        ns: Option<&str>,
        name: &str,
        patch_type: PatchType,
        body: &[u8],
        part: Part,
        opts: &WriteOptions,
    ) -> ApiResult<Written> {
        let now = now_rfc3339();
        let current = self.store.get(&res.key(ns, name)).await?;
        let schema = merge_schema(res);
        let sub = match part {
            Part::Main => None,
            Part::Status => Some("status"),
        };
        let Some(current) = current else {
            if let PatchType::Apply { force } = patch_type {
                if part != Part::Main {
                    return Err(ApiError::not_found(&res.group, &res.plural, name));
                }
                let mut obj = parse_apply_body(body)?;
                let mut warnings = Vec::new();
                self.check_body(res, ns, &mut obj, Some(name))?;
                self.check_fields(res, &mut obj, opts.field_validation, &mut warnings)?;
                let obj = patch::server_side_apply(
                    None,
                    &obj,
                    &opts.field_manager,
                    force,
                    &schema,
                    &res.api_version(),
                    &now,
                )
                .map_err(|e| apply_error(res, name, e))?;
                let mut obj = Self::to_storage(res, obj);
                self.prepare_create(res, ns, &mut obj).await?;
                return self.finish_create(res, ns, obj, opts, warnings).await;
            }
            return Err(ApiError::not_found(&res.group, &res.plural, name));
        };
        // patches apply to the object as the request's version shows it
        let old = self.decode(res, &current)?;
        let stored_old = Self::decode_stored(&current)?;
        let patched = match patch_type {
            PatchType::Json => patch::json_patch(&old, body).map_err(patch_error)?,
            PatchType::Merge => patch::merge_patch(&old, body).map_err(patch_error)?,
            PatchType::Strategic => {
                patch::strategic_merge_patch(&old, body, &schema).map_err(patch_error)?
            }
            PatchType::Apply { force } => {
                let mut applied = parse_apply_body(body)?;
                self.check_body(res, ns, &mut applied, Some(name))?;
                let mut discard = Vec::new();
                self.check_fields(res, &mut applied, opts.field_validation, &mut discard)?;
                let mut out = patch::server_side_apply(
                    Some(&old),
                    &applied,
                    &opts.field_manager,
                    force,
                    &schema,
                    &res.api_version(),
                    &now,
                )
                .map_err(|e| apply_error(res, name, e))?;
                meta_mut(&mut out).insert(
                    "resourceVersion".into(),
                    json!(current.mod_revision.to_string()),
                );
                let out = Self::to_storage(res, out);
                return self
                    .write_update(res, name, &current, stored_old, out, part, opts, discard)
                    .await;
            }
        };
        let mut obj = patched;
        // a resourceVersion in the patch is a precondition
        if let Some(rv) = meta_str(&obj, "resourceVersion")
            && !rv.is_empty()
            && rv != current.mod_revision.to_string()
        {
            return Err(ApiError::conflict(
                &res.group,
                &res.plural,
                name,
                "the object has been modified; please apply your changes to the latest version and try again",
            ));
        }
        let mut warnings = Vec::new();
        self.check_body(res, ns, &mut obj, Some(name))?;
        self.check_fields(res, &mut obj, opts.field_validation, &mut warnings)?;
        let mut obj = Self::to_storage(res, obj);
        patch::record_update(
            Some(&stored_old),
            &mut obj,
            &opts.field_manager,
            "Update",
            &res.api_version(),
            &now,
            sub,
            &merge_schema(res),
        );
        self.write_update(res, name, &current, stored_old, obj, part, opts, warnings)
            .await
    }

    // -------------------------------------------------------------- delete

    /// Delete (or start deleting) an object. A concurrent write between our
    /// read and our write is retried, as upstream's GuaranteedUpdate does;
    /// only a caller's own preconditions can make a delete conflict.
    pub async fn delete(
        &self,
        res: &Resource,
        ns: Option<&str>,
        name: &str,
        opts: &DeleteOptions,
    ) -> ApiResult<Deleted> {
        let mut attempt = 0;
        loop {
            match self.delete_once(res, ns, name, opts).await {
                Err(e)
                    if e.code == 409
                        && e.message.contains("the object has been modified")
                        && attempt < 16 =>
                {
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn delete_once(
        &self,
        res: &Resource,
        ns: Option<&str>,
        name: &str,
        opts: &DeleteOptions,
    ) -> ApiResult<Deleted> {
        let (current, old) = self.get_kv(res, ns, name).await?;
        if let Some(uid) = &opts.precondition_uid {
            let actual = meta_str(&old, "uid").unwrap_or_default();
            if uid != actual {
                return Err(ApiError::conflict(
                    &res.group,
                    &res.plural,
                    name,
                    &format!(
                        "Precondition failed: UID in precondition: {uid}, UID in object meta: {actual}"
                    ),
                ));
            }
        }
        if let Some(rv) = &opts.precondition_rv {
            let actual = current.mod_revision.to_string();
            if *rv != actual {
                return Err(ApiError::conflict(
                    &res.group,
                    &res.plural,
                    name,
                    &format!(
                        "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {actual}"
                    ),
                ));
            }
        }
        let mut obj = old.clone();
        let is_namespace = res.group.is_empty() && res.kind == "Namespace";
        let is_pod = res.group.is_empty() && res.kind == "Pod";
        let already_deleting = meta(&old).is_some_and(|m| m.contains_key("deletionTimestamp"));
        let mut fins = finalizers(&obj);
        match opts.propagation {
            Some(Propagation::Orphan) if !fins.iter().any(|f| f == "orphan") => {
                fins.push("orphan".into())
            }
            Some(Propagation::Foreground)
                if !fins.iter().any(|f| f == "foregroundDeletion")
                    && (has_dependents_hint(&old) || !already_deleting) =>
            {
                fins.push("foregroundDeletion".into())
            }
            _ => {}
        }
        let now = chrono::Utc::now();
        let grace = if is_pod {
            let spec_grace = old
                .pointer("/spec/terminationGracePeriodSeconds")
                .and_then(Value::as_i64)
                .unwrap_or(30);
            let g = opts.grace_period_seconds.unwrap_or(spec_grace).max(0);
            let scheduled = old
                .pointer("/spec/nodeName")
                .and_then(Value::as_str)
                .is_some_and(|s| !s.is_empty());
            let terminal = matches!(
                old.pointer("/status/phase").and_then(Value::as_str),
                Some("Succeeded") | Some("Failed")
            );
            if scheduled && !terminal { g } else { 0 }
        } else {
            0
        };
        let needs_deferral = is_namespace || !fins.is_empty() || grace > 0;
        if opts.dry_run {
            return Ok(Deleted {
                object: old,
                gone: !needs_deferral,
            });
        }
        if needs_deferral {
            if already_deleting && fins == finalizers(&old) {
                // shortening the grace period of a terminating pod
                let cur_grace = meta(&old)
                    .and_then(|m| m.get("deletionGracePeriodSeconds"))
                    .and_then(Value::as_i64)
                    .unwrap_or(0);
                if !(is_pod && grace < cur_grace) {
                    if is_pod && grace == 0 && fins.is_empty() {
                        // force delete
                    } else {
                        return Ok(Deleted {
                            object: old,
                            gone: false,
                        });
                    }
                }
                if !(is_pod && grace == 0 && fins.is_empty()) {
                    let m = meta_mut(&mut obj);
                    m.insert("deletionGracePeriodSeconds".into(), json!(grace));
                    let ts = (now + chrono::Duration::seconds(grace))
                        .format("%Y-%m-%dT%H:%M:%SZ")
                        .to_string();
                    m.insert("deletionTimestamp".into(), json!(ts));
                    let kv = self
                        .store
                        .update(&current.key, Some(current.mod_revision), obj)
                        .await
                        .map_err(|e| ApiError::from_store(e, &res.group, &res.plural, name))?;
                    return Ok(Deleted {
                        object: self.decode(res, &kv)?,
                        gone: false,
                    });
                }
            } else {
                let m = meta_mut(&mut obj);
                if !already_deleting {
                    let ts = (now + chrono::Duration::seconds(grace))
                        .format("%Y-%m-%dT%H:%M:%SZ")
                        .to_string();
                    m.insert("deletionTimestamp".into(), json!(ts));
                    m.insert("deletionGracePeriodSeconds".into(), json!(grace));
                }
                if fins.is_empty() {
                    m.remove("finalizers");
                } else {
                    m.insert("finalizers".into(), json!(fins));
                }
                if is_namespace {
                    obj["status"]["phase"] = json!("Terminating");
                }
                let kv = self
                    .store
                    .update(&current.key, Some(current.mod_revision), obj)
                    .await
                    .map_err(|e| ApiError::from_store(e, &res.group, &res.plural, name))?;
                let out = self.decode(res, &kv)?;
                if is_namespace {
                    self.note_namespace(&out, false);
                }
                return Ok(Deleted {
                    object: out,
                    gone: false,
                });
            }
        }
        let kv = self
            .store
            .delete(&current.key, Some(current.mod_revision))
            .await
            .map_err(|e| ApiError::from_store(e, &res.group, &res.plural, name))?;
        let out = self.decode(res, &kv)?;
        if is_namespace {
            self.note_namespace(&out, true);
        }
        Ok(Deleted {
            object: out,
            gone: true,
        })
    }

    /// Remove a namespace for good (after its content is gone).
    pub async fn remove_namespace(&self, name: &str) -> ApiResult<()> {
        let res = self.ns_resource()?;
        match self.store.get(&res.key(None, name)).await? {
            Some(kv) => {
                match self.store.delete(&kv.key, Some(kv.mod_revision)).await {
                    Ok(_) | Err(StoreError::NotFound(_)) => {}
                    Err(e) => return Err(ApiError::from_store(e, "", "namespaces", name)),
                }
                self.cache_ns(name, None);
                Ok(())
            }
            None => {
                self.cache_ns(name, None);
                Ok(())
            }
        }
    }

    /// Write an object computed by an in-process controller (CAS on `rev`),
    /// bypassing request decoding but not metadata rules.
    pub async fn controller_update(
        &self,
        key: &str,
        rev: Revision,
        obj: Value,
    ) -> Result<KeyValue, StoreError> {
        self.store.update(key, Some(rev), obj).await
    }
}

const CRD_FINALIZER: &str = "customresourcecleanup.apiextensions.k8s.io";

fn is_crd(res: &Resource) -> bool {
    !res.custom && res.group == "apiextensions.k8s.io" && res.kind == "CustomResourceDefinition"
}

/// Merge keys for a kind (custom resources have none: their lists are atomic).
fn merge_schema(res: &Resource) -> patch::BuiltinMergeSchema {
    if res.custom {
        patch::BuiltinMergeSchema::for_kind("", "")
    } else {
        patch::BuiltinMergeSchema::for_kind(&res.group, &res.kind)
    }
}

/// The max request body (like upstream's 3 MiB).
pub const MAX_BODY: usize = 3 * 1024 * 1024;

fn allow_create_on_update(res: &Resource) -> bool {
    !res.custom
        && matches!(
            (res.group.as_str(), res.kind.as_str()),
            ("", "Endpoints")
                | ("", "Event")
                | ("coordination.k8s.io", "Lease")
                | ("events.k8s.io", "Event")
                | ("rbac.authorization.k8s.io", _)
                | ("", "LimitRange")
                | ("discovery.k8s.io", "EndpointSlice")
        )
}

/// A pod with a pending graceful deletion is deleted by its kubelet.
fn graceful_pending(res: &Resource, obj: &Value) -> bool {
    res.group.is_empty()
        && res.kind == "Pod"
        && meta(obj)
            .and_then(|m| m.get("deletionGracePeriodSeconds"))
            .and_then(Value::as_i64)
            .unwrap_or(0)
            > 0
}

fn has_dependents_hint(_obj: &Value) -> bool {
    true
}

fn spec_changed(old: &Value, new: &Value) -> bool {
    let strip = |v: &Value| -> Value {
        let mut v = v.clone();
        if let Some(m) = v.as_object_mut() {
            m.remove("metadata");
            m.remove("status");
        }
        v
    };
    strip(old) != strip(new)
}

/// Equal except for managedFields timestamps and resourceVersion.
fn same_ignoring_times(old: &Value, new: &Value) -> bool {
    let norm = |v: &Value| -> Value {
        let mut v = v.clone();
        if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("resourceVersion");
            if let Some(Value::Array(mf)) = m.get_mut("managedFields") {
                for e in mf.iter_mut() {
                    if let Some(e) = e.as_object_mut() {
                        e.remove("time");
                    }
                }
            }
        }
        v
    };
    norm(old) == norm(new)
}

fn custom_meta_causes(obj: &Value) -> Vec<StatusCause> {
    let name = meta_str(obj, "name").unwrap_or_default();
    if validation::is_dns1123_subdomain(name) {
        Vec::new()
    } else {
        vec![StatusCause {
            reason: "FieldValueInvalid".into(),
            message: format!(
                "Invalid value: \"{name}\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
            ),
            field: "metadata.name".into(),
        }]
    }
}

fn parse_apply_body(body: &[u8]) -> ApiResult<Value> {
    let v: Value = serde_yaml_ng::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?;
    if !v.is_object() {
        return Err(ApiError::bad_request(
            "apply patch must be a YAML or JSON object",
        ));
    }
    Ok(v)
}

fn patch_error(e: patch::PatchError) -> ApiError {
    match e {
        patch::PatchError::BadRequest(m) => ApiError::bad_request(m),
        patch::PatchError::Unprocessable(m) => ApiError::unprocessable(m),
        patch::PatchError::UnsupportedMediaType(m) => ApiError::new(415, "UnsupportedMediaType", m),
        patch::PatchError::RequestEntityTooLarge(m) => {
            ApiError::new(413, "RequestEntityTooLarge", m)
        }
    }
}

fn apply_error(res: &Resource, name: &str, e: patch::ApplyError) -> ApiError {
    match e {
        patch::ApplyError::Conflicts(c) => {
            let mut err = ApiError::new(409, "Conflict", patch::conflict_message(&c));
            err.details = Some(Box::new(json!({
                "name": name,
                "group": res.group,
                "kind": res.plural,
                "causes": c.iter().map(|x| json!({"reason": "FieldManagerConflict", "message": format!("conflict with \"{}\"", x.manager), "field": x.field})).collect::<Vec<_>>(),
            })));
            err
        }
        patch::ApplyError::Invalid(m) => ApiError::unprocessable(m),
    }
}

/// Continue tokens: base64 of `{"v":"meta.k8s.io/v1","rv":N,"start":"key"}`.
pub fn encode_continue(rev: Revision, key: &str) -> String {
    use base64::Engine;
    let tok = json!({"v": "meta.k8s.io/v1", "rv": rev, "start": key});
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(tok.to_string())
}

pub fn decode_continue(tok: &str) -> ApiResult<(Revision, String)> {
    use base64::Engine;
    let bad = || {
        ApiError::bad_request(
            "continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)",
        )
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(tok.trim_end_matches('='))
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    let rev = v.get("rv").and_then(Value::as_i64).ok_or_else(bad)?;
    let key = v.get("start").and_then(Value::as_str).ok_or_else(bad)?;
    Ok((rev, key.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continue_roundtrip() {
        let t = encode_continue(42, "/registry/core/pods/default/x");
        assert_eq!(
            decode_continue(&t).unwrap(),
            (42, "/registry/core/pods/default/x".into())
        );
        assert!(decode_continue("!!!").is_err());
    }

    #[test]
    fn cidr() {
        assert_eq!(parse_cidr("10.43.0.0/16"), Some((0x0a2b0000, 16)));
        assert_eq!(parse_cidr("10.43.0.0/33"), None);
    }
}
