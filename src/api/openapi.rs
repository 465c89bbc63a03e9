//! The OpenAPI documents clients read: the `/openapi/v3` index, one OpenAPI
//! 3.0 document per group-version (`/openapi/v3/api/v1`,
//! `/openapi/v3/apis/<group>/<version>`) and the swagger 2.0 document at
//! `/openapi/v2` (JSON, and protobuf via [`v2_protobuf`]).
//!
//! kubectl depends on details here: every PATCH operation lists the
//! `fieldValidation` query parameter (that is how kubectl ≥1.27 decides the
//! server validates), operations and kind schemas carry
//! `x-kubernetes-group-version-kind`, and `kubectl explain` prints the
//! schemas' descriptions. Built-in schemas come from k8s-openapi's
//! `schemars` support; custom resources from their CRD's `openAPIV3Schema`.
//!
//! Pure functions of the served resources: no I/O, no caching (the server
//! caches the rendered documents and serves them by hash).

#[path = "openapi/catalog.rs"]
mod catalog;
#[path = "openapi/protobuf.rs"]
mod protobuf;

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use catalog::{
    Catalog, DELETE_OPTIONS, KindEntry, PATCH, REF_PREFIX, SCALE, STATUS, for_each_ref, gvk,
};

pub use protobuf::v2_protobuf;

/// Kubernetes version the documents describe.
const KUBERNETES_VERSION: &str = "v1.33.0";

/// One resource (group/version/plural) the API server serves.
#[derive(Clone, Debug, PartialEq)]
pub struct ServedResource {
    pub group: String,
    pub version: String,
    pub kind: String,
    pub plural: String,
    pub namespaced: bool,
    pub has_status: bool,
    pub has_scale: bool,
    /// The CRD's `openAPIV3Schema` for custom resources; `None` for built-ins.
    pub custom_schema: Option<Value>,
}

/// The `/openapi/v3` discovery index:
/// `{"paths": {"api/v1": {"serverRelativeURL": "/openapi/v3/api/v1?hash=<HASH>"}, …}}`.
pub fn v3_index(resources: &[ServedResource]) -> Value {
    v3_all(resources).0
}

/// The index and every group-version document at once (one catalog build),
/// keyed like the index (`api/v1`, `apis/apps/v1`): what a server caches.
pub fn v3_all(resources: &[ServedResource]) -> (Value, BTreeMap<String, Value>) {
    let all: Vec<&ServedResource> = resources.iter().collect();
    let (catalog, entries) = Catalog::build(&all);
    let mut rendered = BTreeMap::new();
    let mut docs = BTreeMap::new();
    let mut paths = Map::new();
    for (group, version) in group_versions(resources) {
        let members: Vec<(&ServedResource, &KindEntry)> = all
            .iter()
            .zip(&entries)
            .filter(|(r, _)| r.group == group && r.version == version)
            .map(|(r, e)| (*r, e))
            .collect();
        let doc = gv_document(&catalog, &mut rendered, &members);
        let key = gv_key(&group, &version);
        paths.insert(
            key.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{key}?hash={}", document_hash(&doc))}),
        );
        docs.insert(key, doc);
    }
    let mut index = Map::new();
    index.insert("paths".into(), Value::Object(paths));
    (Value::Object(index), docs)
}

/// `api/v1` or `apis/<group>/<version>`: the key of a group-version in the
/// index and the tail of its URL.
pub fn gv_key(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// A stable hex digest of a document's content (what `?hash=` carries).
pub fn document_hash(doc: &Value) -> String {
    let bytes = serde_json::to_vec(doc).unwrap_or_default();
    hex::encode_upper(Sha256::digest(&bytes))
}

/// The OpenAPI 3.0 document of one group-version: the paths of its
/// resources and the component schemas they reference, transitively and
/// nothing else. `None` when nothing is served in that group-version.
pub fn v3_document(resources: &[ServedResource], group: &str, version: &str) -> Option<Value> {
    let served: Vec<&ServedResource> = resources
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .collect();
    if served.is_empty() {
        return None;
    }
    let (catalog, entries) = Catalog::build(&served);
    let members: Vec<(&ServedResource, &KindEntry)> =
        served.iter().copied().zip(&entries).collect();
    Some(gv_document(&catalog, &mut BTreeMap::new(), &members))
}

/// One group-version's v3 document from a catalog holding (at least) its
/// kinds; `rendered` memoizes v3 renderings of components across documents.
fn gv_document(
    catalog: &Catalog,
    rendered: &mut BTreeMap<String, Value>,
    members: &[(&ServedResource, &KindEntry)],
) -> Value {
    let mut paths = Map::new();
    for (r, entry) in members {
        resource_paths(r, entry, Flavor::V3, &mut paths);
    }
    let mut wanted: Vec<String> = Vec::new();
    for item in paths.values() {
        for_each_ref(item, &mut |n| wanted.push(n.to_string()));
    }
    wanted.extend(members.iter().map(|(_, e)| e.definition.clone()));
    let mut schemas = Map::new();
    for name in closure(catalog, wanted) {
        if let Some(schema) = catalog.defs.get(&name) {
            let v3 = rendered
                .entry(name.clone())
                .or_insert_with(|| render_schema(schema, Flavor::V3));
            schemas.insert(name, v3.clone());
        }
    }
    // Built by hand: `json!` would deep-copy the large maps it interpolates.
    let mut components = Map::new();
    components.insert("schemas".into(), Value::Object(schemas));
    components.insert("securitySchemes".into(), security_definitions());
    let mut doc = Map::new();
    doc.insert("openapi".into(), "3.0.0".into());
    doc.insert("info".into(), info());
    doc.insert("paths".into(), Value::Object(paths));
    doc.insert("components".into(), Value::Object(components));
    doc.insert("security".into(), json!([{"BearerToken": []}]));
    Value::Object(doc)
}

fn info() -> Value {
    json!({"title": "Kubernetes", "version": KUBERNETES_VERSION})
}

fn security_definitions() -> Value {
    json!({
        "BearerToken": {
            "type": "apiKey",
            "in": "header",
            "name": "authorization",
            "description": "Bearer Token authentication",
        },
    })
}

/// The swagger 2.0 document of everything served (`/openapi/v2`).
pub fn v2_document(resources: &[ServedResource]) -> Value {
    let served: Vec<&ServedResource> = resources.iter().collect();
    let (catalog, entries) = Catalog::build(&served);
    let mut paths = Map::new();
    for (r, entry) in served.iter().zip(&entries) {
        resource_paths(r, entry, Flavor::V2, &mut paths);
    }
    let definitions: Map<String, Value> = catalog
        .defs
        .iter()
        .map(|(name, schema)| (name.clone(), render_schema(schema, Flavor::V2)))
        .collect();
    let mut doc = Map::new();
    doc.insert("swagger".into(), "2.0".into());
    doc.insert("info".into(), info());
    doc.insert("paths".into(), Value::Object(paths));
    doc.insert("definitions".into(), Value::Object(definitions));
    doc.insert("securityDefinitions".into(), security_definitions());
    doc.insert("security".into(), json!([{"BearerToken": []}]));
    Value::Object(doc)
}

/// Served group-versions in first-seen order.
fn group_versions(resources: &[ServedResource]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for r in resources {
        if !out.iter().any(|(g, v)| *g == r.group && *v == r.version) {
            out.push((r.group.clone(), r.version.clone()));
        }
    }
    out
}

/// Every component reachable from `roots`, sorted by name.
fn closure(catalog: &Catalog, roots: Vec<String>) -> BTreeSet<String> {
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut stack = roots;
    while let Some(name) = stack.pop() {
        if !seen.insert(name.clone()) {
            continue;
        }
        if let Some(schema) = catalog.defs.get(&name) {
            for_each_ref(schema, &mut |n| {
                if !seen.contains(n) {
                    stack.push(n.to_string());
                }
            });
        }
    }
    seen
}

/// Create-only review kinds: no storage, only `POST` on the collection.
fn is_create_only(r: &ServedResource) -> bool {
    r.custom_schema.is_none()
        && matches!(
            r.group.as_str(),
            "authentication.k8s.io" | "authorization.k8s.io"
        )
        && r.kind.ends_with("Review")
}

fn is_listable(r: &ServedResource) -> bool {
    !is_create_only(r)
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Flavor {
    V2,
    V3,
}

impl Flavor {
    fn reference(self, name: &str) -> Value {
        match self {
            Flavor::V2 => json!({ "$ref": format!("#/definitions/{name}") }),
            Flavor::V3 => json!({ "$ref": format!("{REF_PREFIX}{name}") }),
        }
    }
}

/// Converts a canonical catalog schema for a document flavor: v3 wraps a
/// `$ref` that has siblings in `allOf` (OpenAPI 3.0 ignores siblings of a
/// `$ref`); v2 points refs at `#/definitions/` and drops what swagger 2.0
/// cannot say (`oneOf`, `anyOf`, `not`, `nullable`).
fn render_schema(schema: &Value, flavor: Flavor) -> Value {
    let Value::Object(m) = schema else {
        return schema.clone();
    };
    let mut out = Map::new();
    let nullable = m.get("nullable") == Some(&Value::Bool(true));
    for (k, v) in m {
        let rendered = match k.as_str() {
            "$ref" => match (flavor, v.as_str().and_then(|r| r.strip_prefix(REF_PREFIX))) {
                (Flavor::V2, Some(name)) => Value::String(format!("#/definitions/{name}")),
                _ => v.clone(),
            },
            "properties" | "patternProperties" | "definitions" => match v {
                Value::Object(props) => Value::Object(
                    props
                        .iter()
                        .map(|(name, s)| (name.clone(), render_schema(s, flavor)))
                        .collect(),
                ),
                other => other.clone(),
            },
            "items" | "additionalProperties" | "not" | "additionalItems" => match v {
                Value::Array(list) => {
                    Value::Array(list.iter().map(|s| render_schema(s, flavor)).collect())
                }
                other => render_schema(other, flavor),
            },
            "allOf" | "anyOf" | "oneOf" => match v {
                Value::Array(list) => {
                    Value::Array(list.iter().map(|s| render_schema(s, flavor)).collect())
                }
                other => other.clone(),
            },
            _ => v.clone(),
        };
        if flavor == Flavor::V2 {
            match k.as_str() {
                "oneOf" | "anyOf" | "not" | "nullable" => continue,
                "type" if nullable => continue,
                _ => {}
            }
        }
        out.insert(k.clone(), rendered);
    }
    // A union of JSON types (IntOrString, Quantity) is a string in swagger 2.0.
    if flavor == Flavor::V2
        && !m.contains_key("type")
        && m.get("oneOf")
            .and_then(Value::as_array)
            .is_some_and(|branches| {
                !branches.is_empty()
                    && branches.iter().all(|b| {
                        b.as_object().is_some_and(|o| {
                            o.len() == 1 && o.get("type").is_some_and(Value::is_string)
                        })
                    })
            })
    {
        out.insert("type".into(), "string".into());
    }
    if flavor == Flavor::V3
        && out.len() > 1
        && let Some(r) = out.shift_remove("$ref")
    {
        let mut wrapped = Map::new();
        wrapped.insert("allOf".into(), json!([{ "$ref": r }]));
        wrapped.extend(out);
        return Value::Object(wrapped);
    }
    Value::Object(out)
}

// ---------------------------------------------------------------------------
// Paths and operations
// ---------------------------------------------------------------------------

/// A non-body parameter.
struct Param {
    name: &'static str,
    location: &'static str,
    ty: &'static str,
    required: bool,
    unique: bool,
    description: String,
}

impl Param {
    fn query(name: &'static str, ty: &'static str, description: &str) -> Param {
        Param {
            name,
            location: "query",
            ty,
            required: false,
            unique: true,
            description: description.to_string(),
        }
    }

    fn path(name: &'static str, description: String) -> Param {
        Param {
            name,
            location: "path",
            ty: "string",
            required: true,
            unique: true,
            description,
        }
    }

    fn render(&self, flavor: Flavor) -> Value {
        let mut p = Map::new();
        p.insert(
            "description".into(),
            Value::String(self.description.clone()),
        );
        p.insert("in".into(), self.location.into());
        p.insert("name".into(), self.name.into());
        if self.required {
            p.insert("required".into(), Value::Bool(true));
        }
        let mut ty = Map::new();
        ty.insert("type".into(), self.ty.into());
        if self.unique {
            ty.insert("uniqueItems".into(), Value::Bool(true));
        }
        match flavor {
            Flavor::V2 => p.extend(ty),
            Flavor::V3 => {
                p.insert("schema".into(), Value::Object(ty));
            }
        }
        Value::Object(p)
    }
}

const DRY_RUN: &str = "When present, indicates that modifications should not be persisted. An invalid or unrecognized dryRun directive will result in an error response and no further processing of the request. Valid values are: - All: all dry run stages will be processed";
const FIELD_MANAGER: &str = "fieldManager is a name associated with the actor or entity that is making these changes. The value must be less than or 128 characters long, and only contain printable characters, as defined by https://golang.org/pkg/unicode/#IsPrint.";
const FIELD_MANAGER_APPLY: &str = "fieldManager is a name associated with the actor or entity that is making these changes. The value must be less than or 128 characters long, and only contain printable characters, as defined by https://golang.org/pkg/unicode/#IsPrint. This field is required for apply requests (application/apply-patch) but optional for non-apply patch types (JsonPatch, MergePatch, StrategicMergePatch).";
const FIELD_VALIDATION: &str = "fieldValidation instructs the server on how to handle objects in the request (POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: - Ignore: This will ignore any unknown fields that are silently dropped from the object, and will ignore all but the last duplicate field that the decoder encounters. This is the default behavior prior to v1.23. - Warn: This will send a warning via the standard warning response header for each unknown field that is dropped from the object, and for each duplicate field that is encountered. The request will still succeed if there are no other errors, and will only persist the last of any duplicate fields. This is the default in v1.23+ - Strict: This will fail the request with a BadRequest error if any unknown fields would be dropped from the object, or if any duplicate fields are present. The error returned from the server will contain all unknown and duplicate fields encountered.";
const FORCE: &str = "Force is going to \"force\" Apply requests. It means user will re-acquire conflicting fields owned by other people. Force flag must be unset for non-apply patch requests.";
const PRETTY: &str = "If 'true', then the output is pretty printed. Defaults to 'false' unless the user-agent indicates a browser or command-line HTTP tool (curl and wget).";
const NAMESPACE: &str = "object name and auth scope, such as for teams and projects";
const GRACE_PERIOD: &str = "The duration in seconds before the object should be deleted. Value must be non-negative integer. The value zero indicates delete immediately. If this value is nil, the default grace period for the specified type will be used. Defaults to a per object value if not specified. zero means delete immediately.";
const IGNORE_STORE_READ_ERROR: &str = "if set to true, it will trigger an unsafe deletion of the resource in case the normal deletion flow fails with a corrupt object error. A resource is considered corrupt if it can not be retrieved from the underlying storage successfully because of a) its data can not be transformed e.g. decryption failure, or b) it fails to decode into an object. NOTE: unsafe deletion ignores finalizer constraints, skips precondition checks, and removes the object from the storage. WARNING: This may potentially break the cluster if the workload associated with the resource being unsafe-deleted relies on normal deletion flow. Use only if you REALLY know what you are doing. The default value is false, and the user must opt in to enable it";
const ORPHAN_DEPENDENTS: &str = "Deprecated: please use the PropagationPolicy, this field will be deprecated in 1.7. Should the dependent objects be orphaned. If true/false, the \"orphan\" finalizer will be added to/removed from the object's finalizers list. Either this field or PropagationPolicy may be set, but not both.";
const PROPAGATION_POLICY: &str = "Whether and how garbage collection will be performed. Either this field or OrphanDependents may be set, but not both. The default policy is decided by the existing finalizer set in the metadata.finalizers and the resource-specific default policy. Acceptable values are: 'Orphan' - orphan the dependents; 'Background' - allow the garbage collector to delete the dependents in the background; 'Foreground' - a cascading policy that deletes all dependents in the foreground.";
const ALLOW_WATCH_BOOKMARKS: &str = "allowWatchBookmarks requests watch events with type \"BOOKMARK\". Servers that do not implement bookmarks may ignore this flag and bookmarks are sent at the server's discretion. Clients should not assume bookmarks are returned at any specific interval, nor may they assume the server will send any BOOKMARK event during a session. If this is not a watch, this field is ignored.";
const CONTINUE: &str = "The continue option should be set when retrieving more results from the server. Since this value is server defined, clients may only use the continue value from a previous query result with identical query parameters (except for the value of continue) and the server may reject a continue value it does not recognize.";
const FIELD_SELECTOR: &str =
    "A selector to restrict the list of returned objects by their fields. Defaults to everything.";
const LABEL_SELECTOR: &str =
    "A selector to restrict the list of returned objects by their labels. Defaults to everything.";
const LIMIT: &str = "limit is a maximum number of responses to return for a list call. If more items exist, the server will set the `continue` field on the list metadata to a value that can be used with the same initial query to retrieve the next set of results.";
const RESOURCE_VERSION: &str = "resourceVersion sets a constraint on what resource versions a request may be served from. See https://kubernetes.io/docs/reference/using-api/api-concepts/#resource-versions for details.\n\nDefaults to unset";
const RESOURCE_VERSION_MATCH: &str = "resourceVersionMatch determines how resourceVersion is applied to list calls. It is highly recommended that resourceVersionMatch be set for list calls where resourceVersion is set See https://kubernetes.io/docs/reference/using-api/api-concepts/#resource-versions for details.\n\nDefaults to unset";
const SEND_INITIAL_EVENTS: &str = "`sendInitialEvents=true` may be set together with `watch=true`. In that case, the watch stream will begin with synthetic events to produce the current state of objects in the collection. Once all such events have been sent, a synthetic \"Bookmark\" event  will be sent.";
const TIMEOUT_SECONDS: &str = "Timeout for the list/watch call. This limits the duration of the call, regardless of any activity or inactivity.";
const WATCH: &str = "Watch for changes to the described resources and return them as a stream of add, update, and remove notifications. Specify resourceVersion.";

fn write_params(apply: bool) -> Vec<Param> {
    let mut p = vec![
        Param::query("dryRun", "string", DRY_RUN),
        Param::query(
            "fieldManager",
            "string",
            if apply {
                FIELD_MANAGER_APPLY
            } else {
                FIELD_MANAGER
            },
        ),
        Param::query("fieldValidation", "string", FIELD_VALIDATION),
    ];
    if apply {
        p.push(Param::query("force", "boolean", FORCE));
    }
    p
}

fn list_params() -> Vec<Param> {
    vec![
        Param::query("allowWatchBookmarks", "boolean", ALLOW_WATCH_BOOKMARKS),
        Param::query("continue", "string", CONTINUE),
        Param::query("fieldSelector", "string", FIELD_SELECTOR),
        Param::query("labelSelector", "string", LABEL_SELECTOR),
        Param::query("limit", "integer", LIMIT),
        Param::query("resourceVersion", "string", RESOURCE_VERSION),
        Param::query("resourceVersionMatch", "string", RESOURCE_VERSION_MATCH),
        Param::query("sendInitialEvents", "boolean", SEND_INITIAL_EVENTS),
        Param::query("timeoutSeconds", "integer", TIMEOUT_SECONDS),
        Param::query("watch", "boolean", WATCH),
    ]
}

fn delete_params() -> Vec<Param> {
    vec![
        Param::query("dryRun", "string", DRY_RUN),
        Param::query("gracePeriodSeconds", "integer", GRACE_PERIOD),
        Param::query(
            "ignoreStoreReadErrorWithClusterBreakingPotential",
            "boolean",
            IGNORE_STORE_READ_ERROR,
        ),
        Param::query("orphanDependents", "boolean", ORPHAN_DEPENDENTS),
        Param::query("propagationPolicy", "string", PROPAGATION_POLICY),
    ]
}

/// What one resource's operations share.
struct Ctx<'a> {
    flavor: Flavor,
    tag: String,
    id_gv: String,
    gvk: Value,
    custom: bool,
    kind: &'a str,
}

struct Body<'a> {
    definition: &'a str,
    content_types: &'a [&'a str],
    required: bool,
}

struct Op<'a> {
    action: &'static str,
    id: String,
    description: String,
    params: Vec<Param>,
    body: Option<Body<'a>>,
    /// (status code, response schema).
    responses: Vec<(&'static str, &'a str)>,
    streams: bool,
    gvk: Option<Value>,
}

const PATCH_TYPES_BUILTIN: &[&str] = &[
    "application/apply-patch+yaml",
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
];
const PATCH_TYPES_CUSTOM: &[&str] = &[
    "application/apply-patch+yaml",
    "application/json-patch+json",
    "application/merge-patch+json",
];
const ANY: &[&str] = &["*/*"];

impl Ctx<'_> {
    fn produces(&self, streams: bool) -> Vec<&'static str> {
        let mut media = vec!["application/json", "application/yaml"];
        if !self.custom {
            media.push("application/vnd.kubernetes.protobuf");
        }
        if streams {
            media.push("application/json;stream=watch");
            if !self.custom {
                media.push("application/vnd.kubernetes.protobuf;stream=watch");
            }
        }
        media
    }

    fn render(&self, op: Op<'_>) -> Value {
        let f = self.flavor;
        let mut o = Map::new();
        o.insert("tags".into(), json!([self.tag]));
        o.insert("description".into(), Value::String(op.description));
        o.insert("operationId".into(), Value::String(op.id));
        let produces = self.produces(op.streams);
        let mut params: Vec<Value> = op.params.iter().map(|p| p.render(f)).collect();
        match (f, &op.body) {
            (Flavor::V2, Some(body)) => {
                o.insert("consumes".into(), json!(body.content_types));
                o.insert("produces".into(), json!(produces));
                o.insert("schemes".into(), json!(["https"]));
                let mut b = Map::new();
                b.insert("in".into(), "body".into());
                b.insert("name".into(), "body".into());
                if body.required {
                    b.insert("required".into(), Value::Bool(true));
                }
                b.insert("schema".into(), f.reference(body.definition));
                params.insert(0, Value::Object(b));
            }
            (Flavor::V2, None) => {
                o.insert("consumes".into(), json!(ANY));
                o.insert("produces".into(), json!(produces));
                o.insert("schemes".into(), json!(["https"]));
            }
            (Flavor::V3, Some(body)) => {
                let content: Map<String, Value> = body
                    .content_types
                    .iter()
                    .map(|ct| {
                        (
                            (*ct).to_string(),
                            json!({"schema": f.reference(body.definition)}),
                        )
                    })
                    .collect();
                o.insert(
                    "requestBody".into(),
                    json!({"content": content, "required": body.required}),
                );
            }
            (Flavor::V3, None) => {}
        }
        if !params.is_empty() {
            o.insert("parameters".into(), Value::Array(params));
        }
        let mut responses = Map::new();
        for (code, definition) in &op.responses {
            let description = match *code {
                "200" => "OK",
                "201" => "Created",
                "202" => "Accepted",
                _ => "",
            };
            let r = match f {
                Flavor::V2 => {
                    json!({"description": description, "schema": f.reference(definition)})
                }
                Flavor::V3 => {
                    let content: Map<String, Value> = produces
                        .iter()
                        .map(|m| ((*m).to_string(), json!({"schema": f.reference(definition)})))
                        .collect();
                    json!({"description": description, "content": content})
                }
            };
            responses.insert((*code).to_string(), r);
        }
        responses.insert("401".into(), json!({"description": "Unauthorized"}));
        o.insert("responses".into(), Value::Object(responses));
        o.insert("x-kubernetes-action".into(), op.action.into());
        o.insert(
            "x-kubernetes-group-version-kind".into(),
            op.gvk.unwrap_or_else(|| self.gvk.clone()),
        );
        Value::Object(o)
    }
}

/// `""` → `Core`, `rbac.authorization.k8s.io` → `RbacAuthorization`,
/// `stable.example.com` → `StableExampleCom` (upstream's operation ids).
fn group_id(group: &str) -> String {
    if group.is_empty() {
        return "Core".into();
    }
    group
        .trim_end_matches(".k8s.io")
        .split(['.', '-'])
        .map(upper_first)
        .collect()
}

fn upper_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}

fn path_item(params: &[Param], flavor: Flavor, ops: Vec<(&str, Value)>) -> Value {
    let mut item = Map::new();
    for (method, op) in ops {
        item.insert(method.to_string(), op);
    }
    if !params.is_empty() {
        item.insert(
            "parameters".into(),
            Value::Array(params.iter().map(|p| p.render(flavor)).collect()),
        );
    }
    Value::Object(item)
}

fn resource_paths(
    r: &ServedResource,
    entry: &KindEntry,
    flavor: Flavor,
    paths: &mut Map<String, Value>,
) {
    let prefix = if r.group.is_empty() {
        format!("/api/{}", r.version)
    } else {
        format!("/apis/{}/{}", r.group, r.version)
    };
    let gid = group_id(&r.group);
    let ctx = Ctx {
        flavor,
        tag: format!("{}_{}", lower_first(&gid), r.version),
        id_gv: format!("{gid}{}", upper_first(&r.version)),
        gvk: gvk(&r.group, &r.version, &r.kind),
        custom: r.custom_schema.is_some(),
        kind: &r.kind,
    };
    let kind_def = entry.definition.as_str();
    let scope = if r.namespaced { "Namespaced" } else { "" };
    let collection = if r.namespaced {
        format!("{prefix}/namespaces/{{namespace}}/{}", r.plural)
    } else {
        format!("{prefix}/{}", r.plural)
    };
    let item_path = format!("{collection}/{{name}}");
    let ns_param = || Param::path("namespace", NAMESPACE.to_string());
    let name_param = |what: &str| Param::path("name", format!("name of the {what}"));
    let pretty = || Param::query("pretty", "string", PRETTY);
    let base_params = |with_name: Option<&str>| {
        let mut v = Vec::new();
        if let Some(what) = with_name {
            v.push(name_param(what));
        }
        if r.namespaced {
            v.push(ns_param());
        }
        v.push(pretty());
        v
    };
    let id = |verb: &str, suffix: &str| format!("{verb}{}{scope}{}{suffix}", ctx.id_gv, ctx.kind);
    let patch_types = if ctx.custom {
        PATCH_TYPES_CUSTOM
    } else {
        PATCH_TYPES_BUILTIN
    };

    // Collection: list, create, deletecollection.
    let mut collection_ops = Vec::new();
    if let Some(list_def) = entry.list.as_deref() {
        collection_ops.push((
            "get",
            ctx.render(Op {
                action: "list",
                id: id("list", ""),
                description: format!("list or watch objects of kind {}", r.kind),
                params: list_params(),
                body: None,
                responses: vec![("200", list_def)],
                streams: true,
                gvk: None,
            }),
        ));
    }
    collection_ops.push((
        "post",
        ctx.render(Op {
            action: "post",
            id: id("create", ""),
            description: format!("create a {}", r.kind),
            params: write_params(false),
            body: Some(Body {
                definition: kind_def,
                content_types: ANY,
                required: true,
            }),
            responses: vec![("200", kind_def), ("201", kind_def), ("202", kind_def)],
            streams: false,
            gvk: None,
        }),
    ));
    if entry.list.is_some() {
        let mut params = delete_params();
        params.extend(
            list_params()
                .into_iter()
                .filter(|p| p.name != "watch" && p.name != "allowWatchBookmarks"),
        );
        collection_ops.push((
            "delete",
            ctx.render(Op {
                action: "deletecollection",
                id: format!("delete{}Collection{scope}{}", ctx.id_gv, ctx.kind),
                description: format!("delete collection of {}", r.kind),
                params,
                body: Some(Body {
                    definition: DELETE_OPTIONS,
                    content_types: ANY,
                    required: false,
                }),
                responses: vec![("200", STATUS)],
                streams: false,
                gvk: None,
            }),
        ));
    }
    paths.insert(
        collection.clone(),
        path_item(&base_params(None), flavor, collection_ops),
    );
    if entry.list.is_none() {
        return;
    }

    // Item: read, replace, patch, delete.
    let item_ops = vec![
        (
            "get",
            ctx.render(Op {
                action: "get",
                id: id("read", ""),
                description: format!("read the specified {}", r.kind),
                params: vec![],
                body: None,
                responses: vec![("200", kind_def)],
                streams: false,
                gvk: None,
            }),
        ),
        (
            "put",
            ctx.render(Op {
                action: "put",
                id: id("replace", ""),
                description: format!("replace the specified {}", r.kind),
                params: write_params(false),
                body: Some(Body {
                    definition: kind_def,
                    content_types: ANY,
                    required: true,
                }),
                responses: vec![("200", kind_def), ("201", kind_def)],
                streams: false,
                gvk: None,
            }),
        ),
        (
            "patch",
            ctx.render(Op {
                action: "patch",
                id: id("patch", ""),
                description: format!("partially update the specified {}", r.kind),
                params: write_params(true),
                body: Some(Body {
                    definition: PATCH,
                    content_types: patch_types,
                    required: true,
                }),
                responses: vec![("200", kind_def), ("201", kind_def)],
                streams: false,
                gvk: None,
            }),
        ),
        (
            "delete",
            ctx.render(Op {
                action: "delete",
                id: id("delete", ""),
                description: format!("delete a {}", r.kind),
                params: delete_params(),
                body: Some(Body {
                    definition: DELETE_OPTIONS,
                    content_types: ANY,
                    required: false,
                }),
                responses: vec![("200", STATUS), ("202", STATUS)],
                streams: false,
                gvk: None,
            }),
        ),
    ];
    paths.insert(
        item_path.clone(),
        path_item(&base_params(Some(&r.kind)), flavor, item_ops),
    );

    // Cluster-wide list of a namespaced resource.
    if r.namespaced
        && let Some(list_def) = entry.list.as_deref()
    {
        let op = ctx.render(Op {
            action: "list",
            id: format!("list{}{}ForAllNamespaces", ctx.id_gv, ctx.kind),
            description: format!("list or watch objects of kind {}", r.kind),
            params: list_params(),
            body: None,
            responses: vec![("200", list_def)],
            streams: true,
            gvk: None,
        });
        paths.insert(
            format!("{prefix}/{}", r.plural),
            path_item(&[pretty()], flavor, vec![("get", op)]),
        );
    }

    // Subresources.
    let mut sub = |name: &str, definition: &str, sub_gvk: Option<Value>| {
        let suffix = upper_first(name);
        let what = format!("{} of the specified {}", name, r.kind);
        let ops = vec![
            (
                "get",
                ctx.render(Op {
                    action: "get",
                    id: id("read", &suffix),
                    description: format!("read {what}"),
                    params: vec![],
                    body: None,
                    responses: vec![("200", definition)],
                    streams: false,
                    gvk: sub_gvk.clone(),
                }),
            ),
            (
                "put",
                ctx.render(Op {
                    action: "put",
                    id: id("replace", &suffix),
                    description: format!("replace {what}"),
                    params: write_params(false),
                    body: Some(Body {
                        definition,
                        content_types: ANY,
                        required: true,
                    }),
                    responses: vec![("200", definition), ("201", definition)],
                    streams: false,
                    gvk: sub_gvk.clone(),
                }),
            ),
            (
                "patch",
                ctx.render(Op {
                    action: "patch",
                    id: id("patch", &suffix),
                    description: format!("partially update {what}"),
                    params: write_params(true),
                    body: Some(Body {
                        definition: PATCH,
                        content_types: patch_types,
                        required: true,
                    }),
                    responses: vec![("200", definition), ("201", definition)],
                    streams: false,
                    gvk: sub_gvk.clone(),
                }),
            ),
        ];
        let noun = if name == "scale" {
            "Scale"
        } else {
            r.kind.as_str()
        };
        paths.insert(
            format!("{item_path}/{name}"),
            path_item(&base_params(Some(noun)), flavor, ops),
        );
    };
    if r.has_status {
        sub("status", kind_def, None);
    }
    if r.has_scale {
        sub("scale", SCALE, Some(gvk("autoscaling", "v1", "Scale")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn builtin(
        group: &str,
        version: &str,
        kind: &str,
        plural: &str,
        namespaced: bool,
    ) -> ServedResource {
        ServedResource {
            group: group.into(),
            version: version.into(),
            kind: kind.into(),
            plural: plural.into(),
            namespaced,
            has_status: true,
            has_scale: false,
            custom_schema: None,
        }
    }

    fn crontab() -> ServedResource {
        ServedResource {
            group: "stable.example.com".into(),
            version: "v1".into(),
            kind: "CronTab".into(),
            plural: "crontabs".into(),
            namespaced: true,
            has_status: false,
            has_scale: true,
            custom_schema: Some(json!({
                "type": "object",
                "properties": {
                    "spec": {
                        "type": "object",
                        "description": "The CronTab's desired state.",
                        "properties": {
                            "cronSpec": {"type": "string"},
                            "replicas": {"type": "integer", "minimum": 1, "maximum": 10, "nullable": true},
                        }
                    }
                }
            })),
        }
    }

    /// Roughly what skiff serves.
    fn served() -> Vec<ServedResource> {
        let mut deployments = builtin("apps", "v1", "Deployment", "deployments", true);
        deployments.has_scale = true;
        let mut configmaps = builtin("", "v1", "ConfigMap", "configmaps", true);
        configmaps.has_status = false;
        vec![
            builtin("", "v1", "Pod", "pods", true),
            builtin("", "v1", "Node", "nodes", false),
            builtin("", "v1", "Namespace", "namespaces", false),
            builtin("", "v1", "Service", "services", true),
            configmaps,
            builtin("", "v1", "Secret", "secrets", true),
            builtin("", "v1", "Event", "events", true),
            builtin("", "v1", "ServiceAccount", "serviceaccounts", true),
            builtin(
                "",
                "v1",
                "PersistentVolumeClaim",
                "persistentvolumeclaims",
                true,
            ),
            deployments,
            builtin("apps", "v1", "ReplicaSet", "replicasets", true),
            builtin("apps", "v1", "StatefulSet", "statefulsets", true),
            builtin("apps", "v1", "DaemonSet", "daemonsets", true),
            builtin("batch", "v1", "Job", "jobs", true),
            builtin("batch", "v1", "CronJob", "cronjobs", true),
            builtin(
                "rbac.authorization.k8s.io",
                "v1",
                "ClusterRole",
                "clusterroles",
                false,
            ),
            builtin(
                "rbac.authorization.k8s.io",
                "v1",
                "RoleBinding",
                "rolebindings",
                true,
            ),
            builtin(
                "authorization.k8s.io",
                "v1",
                "SelfSubjectAccessReview",
                "selfsubjectaccessreviews",
                false,
            ),
            builtin(
                "apiextensions.k8s.io",
                "v1",
                "CustomResourceDefinition",
                "customresourcedefinitions",
                false,
            ),
            builtin(
                "discovery.k8s.io",
                "v1",
                "EndpointSlice",
                "endpointslices",
                true,
            ),
            builtin("coordination.k8s.io", "v1", "Lease", "leases", true),
            crontab(),
        ]
    }

    fn assert_refs_resolve(doc: &Value, container: &Value, prefix: &str) {
        let mut missing = Vec::new();
        fn walk(v: &Value, prefix: &str, container: &Value, missing: &mut Vec<String>) {
            match v {
                Value::Object(m) => {
                    for (k, c) in m {
                        if let ("$ref", Some(r)) = (k.as_str(), c.as_str()) {
                            match r.strip_prefix(prefix) {
                                Some(name) if container.get(name).is_some() => {}
                                _ => missing.push(r.to_string()),
                            }
                        } else {
                            walk(c, prefix, container, missing);
                        }
                    }
                }
                Value::Array(a) => a.iter().for_each(|c| walk(c, prefix, container, missing)),
                _ => {}
            }
        }
        walk(doc, prefix, container, &mut missing);
        assert!(missing.is_empty(), "unresolved refs: {missing:?}");
    }

    #[test]
    fn apps_v1_document_has_deployment_with_gvk_and_descriptions() {
        let doc = v3_document(&served(), "apps", "v1").expect("apps/v1 is served");
        let schemas = &doc["components"]["schemas"];
        let deployment = &schemas["io.k8s.api.apps.v1.Deployment"];
        assert_eq!(
            deployment["x-kubernetes-group-version-kind"],
            json!([{"group": "apps", "kind": "Deployment", "version": "v1"}])
        );
        assert_eq!(
            deployment["properties"]["spec"]["allOf"][0]["$ref"],
            "#/components/schemas/io.k8s.api.apps.v1.DeploymentSpec"
        );
        assert!(deployment["properties"]["spec"]["description"].is_string());
        let replicas = &schemas["io.k8s.api.apps.v1.DeploymentSpec"]["properties"]["replicas"];
        assert_eq!(replicas["type"], "integer");
        assert!(
            replicas["description"]
                .as_str()
                .is_some_and(|d| d.starts_with("Number of desired pods"))
        );
        assert_eq!(
            schemas["io.k8s.api.apps.v1.DeploymentList"]["x-kubernetes-group-version-kind"][0]["kind"],
            "DeploymentList"
        );
        assert!(schemas.get("io.k8s.api.core.v1.PodSpec").is_some());
        assert_eq!(
            schemas["io.k8s.apimachinery.pkg.util.intstr.IntOrString"]["oneOf"],
            json!([{"type": "integer"}, {"type": "string"}])
        );
        assert!(schemas.get("io.k8s.api.autoscaling.v1.Scale").is_some());
        // Only what apps/v1 needs: no core kinds of their own.
        assert!(schemas.get("io.k8s.api.core.v1.Pod").is_none());
        assert!(schemas.get("io.k8s.api.batch.v1.Job").is_none());
        assert_refs_resolve(&doc, schemas, "#/components/schemas/");
        let containers = &schemas["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
        assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
        assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
    }

    #[test]
    fn every_patch_operation_carries_field_validation_and_gvk() {
        let resources = served();
        let (_, docs) = v3_all(&resources);
        let mut patches = 0;
        for doc in docs.values() {
            for (path, item) in doc["paths"].as_object().into_iter().flatten() {
                for (method, op) in item.as_object().into_iter().flatten() {
                    if method == "parameters" {
                        continue;
                    }
                    assert!(op["x-kubernetes-action"].is_string(), "{path} {method}");
                    assert!(
                        op["x-kubernetes-group-version-kind"]["kind"].is_string(),
                        "{path} {method}"
                    );
                    if matches!(method.as_str(), "patch" | "post" | "put") {
                        let names: Vec<&str> = op["parameters"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(|p| p["name"].as_str())
                            .collect();
                        for want in ["dryRun", "fieldManager", "fieldValidation"] {
                            assert!(names.contains(&want), "{path} {method} lacks {want}");
                        }
                        if method == "patch" {
                            patches += 1;
                        }
                    }
                }
            }
        }
        assert!(patches > 30);
        let core = &docs["api/v1"]["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"]["patch"];
        assert_eq!(
            core["x-kubernetes-group-version-kind"],
            json!({"group": "", "kind": "Pod", "version": "v1"})
        );
        assert!(
            core["requestBody"]["content"]
                .get("application/strategic-merge-patch+json")
                .is_some()
        );
    }

    #[test]
    fn index_lists_every_group_version_with_stable_hashes() {
        let resources = served();
        let index = v3_index(&resources);
        let paths = index["paths"].as_object().expect("paths");
        for key in [
            "api/v1",
            "apis/apps/v1",
            "apis/batch/v1",
            "apis/stable.example.com/v1",
        ] {
            let url = paths[key]["serverRelativeURL"].as_str().expect("url");
            assert!(
                url.starts_with(&format!("/openapi/v3/{key}?hash=")),
                "{url}"
            );
        }
        assert_eq!(index, v3_index(&resources));
        let mut changed = resources.clone();
        changed.retain(|r| r.kind != "CronJob");
        let other = v3_index(&changed);
        assert_eq!(other["paths"]["api/v1"], index["paths"]["api/v1"]);
        assert_ne!(
            other["paths"]["apis/batch/v1"],
            index["paths"]["apis/batch/v1"]
        );
        assert!(v3_document(&resources, "nope", "v1").is_none());
    }

    #[test]
    fn crd_document_includes_its_schema() {
        let doc = v3_document(&served(), "stable.example.com", "v1").expect("served");
        let schemas = &doc["components"]["schemas"];
        let crontab = &schemas["com.example.stable.v1.CronTab"];
        assert_eq!(
            crontab["x-kubernetes-group-version-kind"],
            json!([{"group": "stable.example.com", "kind": "CronTab", "version": "v1"}])
        );
        assert_eq!(
            crontab["properties"]["spec"]["properties"]["cronSpec"]["type"],
            "string"
        );
        assert_eq!(
            crontab["properties"]["metadata"]["allOf"][0]["$ref"],
            "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
        );
        assert_eq!(crontab["properties"]["apiVersion"]["type"], "string");
        assert!(schemas.get("com.example.stable.v1.CronTabList").is_some());
        assert!(
            schemas
                .get("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta")
                .is_some()
        );
        assert_refs_resolve(&doc, schemas, "#/components/schemas/");
        let patch = &doc["paths"]["/apis/stable.example.com/v1/namespaces/{namespace}/crontabs/{name}"]
            ["patch"];
        assert!(
            patch["requestBody"]["content"]
                .get("application/strategic-merge-patch+json")
                .is_none()
        );
        let scale = &doc["paths"]["/apis/stable.example.com/v1/namespaces/{namespace}/crontabs/{name}/scale"]
            ["get"];
        assert_eq!(scale["x-kubernetes-group-version-kind"]["kind"], "Scale");
    }

    #[test]
    fn create_only_kinds_have_only_post() {
        let doc = v3_document(&served(), "authorization.k8s.io", "v1").expect("served");
        let paths = doc["paths"].as_object().expect("paths");
        assert_eq!(paths.len(), 1);
        let item = &paths["/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"];
        assert!(item.get("post").is_some());
        assert!(item.get("get").is_none());
    }

    #[test]
    fn v2_document_is_swagger_with_resolving_refs() {
        let doc = v2_document(&served());
        assert_eq!(doc["swagger"], "2.0");
        let defs = &doc["definitions"];
        assert_refs_resolve(&doc, defs, "#/definitions/");
        assert_eq!(
            defs["io.k8s.api.apps.v1.Deployment"]["properties"]["spec"]["$ref"],
            "#/definitions/io.k8s.api.apps.v1.DeploymentSpec"
        );
        assert!(
            defs["com.example.stable.v1.CronTab"]["properties"]["spec"]["properties"]["replicas"]
                .get("nullable")
                .is_none()
        );
        let ios = &defs["io.k8s.apimachinery.pkg.util.intstr.IntOrString"];
        assert_eq!(ios["format"], "int-or-string");
        assert_eq!(ios["type"], "string");
        assert!(ios.get("oneOf").is_none());
        assert_eq!(
            defs["io.k8s.apimachinery.pkg.api.resource.Quantity"]["type"],
            "string"
        );
        let patch =
            &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        let names: Vec<&str> = patch["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["name"].as_str())
            .collect();
        assert!(names.contains(&"fieldValidation"));
        assert_eq!(patch["parameters"][0]["in"], "body");
        assert_eq!(
            patch["x-kubernetes-group-version-kind"]["kind"],
            "Deployment"
        );
        let or_bool =
            &defs["io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaPropsOrBool"];
        assert!(or_bool.get("oneOf").is_none());
        assert!(or_bool["description"].is_string());
    }

    #[test]
    fn every_builtin_kind_renders() {
        // All of k8s-openapi's kinds at once: a smoke test of the table and
        // of the generation cost.
        let mut resources = Vec::new();
        for b in catalog_builtins() {
            resources.push(builtin(
                b.0,
                b.1,
                b.2,
                &format!("{}s", b.2.to_lowercase()),
                true,
            ));
        }
        let start = Instant::now();
        let (index, docs) = v3_all(&resources);
        let v2 = v2_document(&resources);
        let elapsed = start.elapsed();
        assert!(index["paths"].as_object().is_some_and(|p| p.len() > 30));
        for doc in docs.values() {
            assert_refs_resolve(doc, &doc["components"]["schemas"], "#/components/schemas/");
        }
        assert_refs_resolve(&v2, &v2["definitions"], "#/definitions/");
        eprintln!("all documents generated in {elapsed:?}");
    }

    fn catalog_builtins() -> Vec<(&'static str, &'static str, &'static str)> {
        catalog::builtin_gvks()
    }
}
