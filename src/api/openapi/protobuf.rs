//! Protobuf encoding of the swagger 2.0 document as gnostic's
//! `openapi.v2.Document` (served as
//! `application/com.github.proto-openapi.spec.v2@v1.0+protobuf`; kubectl
//! 1.27/1.28 and client-go's discovery client ask for it).
//!
//! A hand-written encoder of just the messages a Kubernetes swagger document
//! uses; field numbers follow gnostic's `openapiv2/OpenAPIv2.proto`. Values
//! gnostic keeps as `Any` (defaults, examples, enums, vendor extensions) are
//! written as their JSON text in `Any.yaml`, which YAML readers accept.
//! Keys the messages have no field for are dropped, as gnostic does.

use serde_json::{Map, Value};

/// Encodes a document produced by [`super::v2_document`] as gnostic's
/// `openapi.v2.Document`.
pub fn v2_protobuf(doc: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 << 20);
    if let Value::Object(d) = doc {
        document(&mut out, d);
    }
    out
}

// ---------------------------------------------------------------------------
// Wire format
// ---------------------------------------------------------------------------

const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn tag(out: &mut Vec<u8>, field: u32, wire: u8) {
    varint(out, (u64::from(field) << 3) | u64::from(wire));
}

fn bytes_field(out: &mut Vec<u8>, field: u32, b: &[u8]) {
    tag(out, field, LEN);
    varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// A length-delimited sub-message, written even when empty (presence).
fn message(out: &mut Vec<u8>, field: u32, body: impl FnOnce(&mut Vec<u8>)) {
    let mut inner = Vec::new();
    body(&mut inner);
    bytes_field(out, field, &inner);
}

/// proto3 scalars: defaults (empty, false, 0) are not written.
fn string(out: &mut Vec<u8>, field: u32, v: Option<&Value>) {
    if let Some(s) = v.and_then(Value::as_str)
        && !s.is_empty()
    {
        bytes_field(out, field, s.as_bytes());
    }
}

fn boolean(out: &mut Vec<u8>, field: u32, v: Option<&Value>) {
    if v.and_then(Value::as_bool) == Some(true) {
        tag(out, field, VARINT);
        out.push(1);
    }
}

fn double(out: &mut Vec<u8>, field: u32, v: Option<&Value>) {
    if let Some(f) = v.and_then(Value::as_f64)
        && f != 0.0
    {
        tag(out, field, FIXED64);
        out.extend_from_slice(&f.to_le_bytes());
    }
}

fn int64(out: &mut Vec<u8>, field: u32, v: Option<&Value>) {
    if let Some(i) = v.and_then(Value::as_i64)
        && i != 0
    {
        tag(out, field, VARINT);
        varint(out, i as u64);
    }
}

fn strings(out: &mut Vec<u8>, field: u32, v: Option<&Value>) {
    match v {
        Some(Value::Array(items)) => {
            for s in items.iter().filter_map(Value::as_str) {
                bytes_field(out, field, s.as_bytes());
            }
        }
        Some(Value::String(s)) => bytes_field(out, field, s.as_bytes()),
        _ => {}
    }
}

// ---------------------------------------------------------------------------
// openapi.v2 messages
// ---------------------------------------------------------------------------

/// `Any { string yaml = 2; }` holding the value's JSON text.
fn any(out: &mut Vec<u8>, field: u32, v: &Value) {
    let text = serde_json::to_string(v).unwrap_or_default();
    message(out, field, |m| bytes_field(m, 2, text.as_bytes()));
}

/// `repeated NamedAny vendor_extension` for every `x-` key.
fn vendor_extensions(out: &mut Vec<u8>, field: u32, m: &Map<String, Value>) {
    for (k, v) in m.iter().filter(|(k, _)| k.starts_with("x-")) {
        message(out, field, |na| {
            bytes_field(na, 1, k.as_bytes());
            any(na, 2, v);
        });
    }
}

fn document(out: &mut Vec<u8>, d: &Map<String, Value>) {
    string(out, 1, d.get("swagger"));
    if let Some(Value::Object(info)) = d.get("info") {
        message(out, 2, |m| {
            string(m, 1, info.get("title"));
            string(m, 2, info.get("version"));
            string(m, 3, info.get("description"));
            string(m, 4, info.get("termsOfService"));
            vendor_extensions(m, 7, info);
        });
    }
    string(out, 3, d.get("host"));
    string(out, 4, d.get("basePath"));
    strings(out, 5, d.get("schemes"));
    strings(out, 6, d.get("consumes"));
    strings(out, 7, d.get("produces"));
    if let Some(Value::Object(paths)) = d.get("paths") {
        message(out, 8, |m| {
            vendor_extensions(m, 1, paths);
            for (name, item) in paths.iter().filter(|(k, _)| !k.starts_with("x-")) {
                if let Value::Object(item) = item {
                    message(m, 2, |np| {
                        bytes_field(np, 1, name.as_bytes());
                        message(np, 2, |pi| path_item(pi, item));
                    });
                }
            }
        });
    }
    if let Some(Value::Object(defs)) = d.get("definitions") {
        message(out, 9, |m| named_schemas(m, 1, defs));
    }
    if let Some(Value::Array(security)) = d.get("security") {
        for requirement in security.iter().filter_map(Value::as_object) {
            message(out, 12, |m| security_requirement(m, requirement));
        }
    }
    if let Some(Value::Object(defs)) = d.get("securityDefinitions") {
        message(out, 13, |m| {
            for (name, def) in defs {
                let Value::Object(def) = def else {
                    continue;
                };
                message(m, 1, |n| {
                    bytes_field(n, 1, name.as_bytes());
                    message(n, 2, |item| security_definition(item, def));
                });
            }
        });
    }
    vendor_extensions(out, 16, d);
}

fn security_requirement(out: &mut Vec<u8>, requirement: &Map<String, Value>) {
    for (name, scopes) in requirement {
        message(out, 1, |n| {
            bytes_field(n, 1, name.as_bytes());
            message(n, 2, |sa| strings(sa, 1, Some(scopes)));
        });
    }
}

/// `SecurityDefinitionsItem`: basic (1) or apiKey (2); OAuth2 flows are not
/// something a Kubernetes document declares.
fn security_definition(out: &mut Vec<u8>, def: &Map<String, Value>) {
    match def.get("type").and_then(Value::as_str) {
        Some("basic") => message(out, 1, |m| {
            string(m, 1, def.get("type"));
            string(m, 2, def.get("description"));
            vendor_extensions(m, 3, def);
        }),
        _ => message(out, 2, |m| {
            string(m, 1, def.get("type"));
            string(m, 2, def.get("name"));
            string(m, 3, def.get("in"));
            string(m, 4, def.get("description"));
            vendor_extensions(m, 5, def);
        }),
    }
}

fn path_item(out: &mut Vec<u8>, item: &Map<String, Value>) {
    string(out, 1, item.get("$ref"));
    for (method, field) in [
        ("get", 2),
        ("put", 3),
        ("post", 4),
        ("delete", 5),
        ("options", 6),
        ("head", 7),
        ("patch", 8),
    ] {
        if let Some(Value::Object(op)) = item.get(method) {
            message(out, field, |m| operation(m, op));
        }
    }
    if let Some(Value::Array(params)) = item.get("parameters") {
        for p in params.iter().filter_map(Value::as_object) {
            message(out, 9, |m| parameters_item(m, p));
        }
    }
    vendor_extensions(out, 10, item);
}

fn operation(out: &mut Vec<u8>, op: &Map<String, Value>) {
    strings(out, 1, op.get("tags"));
    string(out, 2, op.get("summary"));
    string(out, 3, op.get("description"));
    string(out, 5, op.get("operationId"));
    strings(out, 6, op.get("produces"));
    strings(out, 7, op.get("consumes"));
    if let Some(Value::Array(params)) = op.get("parameters") {
        for p in params.iter().filter_map(Value::as_object) {
            message(out, 8, |m| parameters_item(m, p));
        }
    }
    if let Some(Value::Object(responses)) = op.get("responses") {
        message(out, 9, |m| {
            for (code, r) in responses.iter().filter(|(k, _)| !k.starts_with("x-")) {
                let Value::Object(r) = r else {
                    continue;
                };
                message(m, 1, |n| {
                    bytes_field(n, 1, code.as_bytes());
                    message(n, 2, |rv| response_value(rv, r));
                });
            }
            vendor_extensions(m, 2, responses);
        });
    }
    strings(out, 10, op.get("schemes"));
    boolean(out, 11, op.get("deprecated"));
    if let Some(Value::Array(security)) = op.get("security") {
        for requirement in security.iter().filter_map(Value::as_object) {
            message(out, 12, |m| security_requirement(m, requirement));
        }
    }
    vendor_extensions(out, 13, op);
}

fn json_reference(out: &mut Vec<u8>, r: &Map<String, Value>) {
    string(out, 1, r.get("$ref"));
    string(out, 2, r.get("description"));
}

fn response_value(out: &mut Vec<u8>, r: &Map<String, Value>) {
    if r.contains_key("$ref") {
        message(out, 2, |m| json_reference(m, r));
        return;
    }
    message(out, 1, |m| {
        string(m, 1, r.get("description"));
        if let Some(Value::Object(s)) = r.get("schema") {
            message(m, 2, |item| message(item, 1, |sm| schema(sm, s)));
        }
        vendor_extensions(m, 5, r);
    });
}

/// `ParametersItem`: a parameter (1) or a JSON reference (2).
fn parameters_item(out: &mut Vec<u8>, p: &Map<String, Value>) {
    if p.contains_key("$ref") {
        message(out, 2, |m| json_reference(m, p));
        return;
    }
    message(out, 1, |param| match p.get("in").and_then(Value::as_str) {
        Some("body") => message(param, 1, |m| {
            string(m, 1, p.get("description"));
            string(m, 2, p.get("name"));
            string(m, 3, p.get("in"));
            boolean(m, 4, p.get("required"));
            if let Some(Value::Object(s)) = p.get("schema") {
                message(m, 5, |sm| schema(sm, s));
            }
            vendor_extensions(m, 6, p);
        }),
        location => message(param, 2, |non_body| {
            // Query and formData sub-schemas have `allowEmptyValue` as field
            // 5, shifting every later field by one against header and path.
            let (field, shifted) = match location {
                Some("header") => (1, false),
                Some("formData") => (2, true),
                Some("path") => (4, false),
                _ => (3, true),
            };
            message(non_body, field, |m| non_body_parameter(m, p, shifted));
        }),
    });
}

fn non_body_parameter(out: &mut Vec<u8>, p: &Map<String, Value>, shifted: bool) {
    boolean(out, 1, p.get("required"));
    string(out, 2, p.get("in"));
    string(out, 3, p.get("description"));
    string(out, 4, p.get("name"));
    let o = u32::from(shifted);
    if shifted {
        boolean(out, 5, p.get("allowEmptyValue"));
    }
    string(out, 5 + o, p.get("type"));
    string(out, 6 + o, p.get("format"));
    if let Some(Value::Object(items)) = p.get("items") {
        message(out, 7 + o, |m| primitives_items(m, items));
    }
    string(out, 8 + o, p.get("collectionFormat"));
    if let Some(d) = p.get("default") {
        any(out, 9 + o, d);
    }
    double(out, 10 + o, p.get("maximum"));
    boolean(out, 11 + o, p.get("exclusiveMaximum"));
    double(out, 12 + o, p.get("minimum"));
    boolean(out, 13 + o, p.get("exclusiveMinimum"));
    int64(out, 14 + o, p.get("maxLength"));
    int64(out, 15 + o, p.get("minLength"));
    string(out, 16 + o, p.get("pattern"));
    int64(out, 17 + o, p.get("maxItems"));
    int64(out, 18 + o, p.get("minItems"));
    boolean(out, 19 + o, p.get("uniqueItems"));
    if let Some(Value::Array(values)) = p.get("enum") {
        for v in values {
            any(out, 20 + o, v);
        }
    }
    double(out, 21 + o, p.get("multipleOf"));
    vendor_extensions(out, 22 + o, p);
}

fn primitives_items(out: &mut Vec<u8>, p: &Map<String, Value>) {
    string(out, 1, p.get("type"));
    string(out, 2, p.get("format"));
    if let Some(Value::Object(items)) = p.get("items") {
        message(out, 3, |m| primitives_items(m, items));
    }
    string(out, 4, p.get("collectionFormat"));
    if let Some(d) = p.get("default") {
        any(out, 5, d);
    }
    double(out, 6, p.get("maximum"));
    boolean(out, 7, p.get("exclusiveMaximum"));
    double(out, 8, p.get("minimum"));
    boolean(out, 9, p.get("exclusiveMinimum"));
    int64(out, 10, p.get("maxLength"));
    int64(out, 11, p.get("minLength"));
    string(out, 12, p.get("pattern"));
    int64(out, 13, p.get("maxItems"));
    int64(out, 14, p.get("minItems"));
    boolean(out, 15, p.get("uniqueItems"));
    if let Some(Value::Array(values)) = p.get("enum") {
        for v in values {
            any(out, 16, v);
        }
    }
    double(out, 17, p.get("multipleOf"));
    vendor_extensions(out, 18, p);
}

fn named_schemas(out: &mut Vec<u8>, field: u32, schemas: &Map<String, Value>) {
    for (name, s) in schemas {
        let Value::Object(s) = s else {
            continue;
        };
        message(out, field, |n| {
            bytes_field(n, 1, name.as_bytes());
            message(n, 2, |m| schema(m, s));
        });
    }
}

fn schema(out: &mut Vec<u8>, s: &Map<String, Value>) {
    string(out, 1, s.get("$ref"));
    string(out, 2, s.get("format"));
    string(out, 3, s.get("title"));
    string(out, 4, s.get("description"));
    if let Some(d) = s.get("default") {
        any(out, 5, d);
    }
    double(out, 6, s.get("multipleOf"));
    double(out, 7, s.get("maximum"));
    boolean(out, 8, s.get("exclusiveMaximum"));
    double(out, 9, s.get("minimum"));
    boolean(out, 10, s.get("exclusiveMinimum"));
    int64(out, 11, s.get("maxLength"));
    int64(out, 12, s.get("minLength"));
    string(out, 13, s.get("pattern"));
    int64(out, 14, s.get("maxItems"));
    int64(out, 15, s.get("minItems"));
    boolean(out, 16, s.get("uniqueItems"));
    int64(out, 17, s.get("maxProperties"));
    int64(out, 18, s.get("minProperties"));
    strings(out, 19, s.get("required"));
    if let Some(Value::Array(values)) = s.get("enum") {
        for v in values {
            any(out, 20, v);
        }
    }
    match s.get("additionalProperties") {
        Some(Value::Object(ap)) => message(out, 21, |m| message(m, 1, |sm| schema(sm, ap))),
        Some(Value::Bool(b)) => message(out, 21, |m| {
            // A oneof member is written even when it holds the default.
            tag(m, 2, VARINT);
            m.push(u8::from(*b));
        }),
        _ => {}
    }
    if let Some(t) = s.get("type") {
        message(out, 22, |m| strings(m, 1, Some(t)));
    }
    match s.get("items") {
        Some(Value::Object(items)) => message(out, 23, |m| message(m, 1, |sm| schema(sm, items))),
        Some(Value::Array(items)) => message(out, 23, |m| {
            for item in items.iter().filter_map(Value::as_object) {
                message(m, 1, |sm| schema(sm, item));
            }
        }),
        _ => {}
    }
    if let Some(Value::Array(all_of)) = s.get("allOf") {
        for sub in all_of.iter().filter_map(Value::as_object) {
            message(out, 24, |m| schema(m, sub));
        }
    }
    if let Some(Value::Object(props)) = s.get("properties") {
        message(out, 25, |m| named_schemas(m, 1, props));
    }
    string(out, 26, s.get("discriminator"));
    boolean(out, 27, s.get("readOnly"));
    if let Some(e) = s.get("example") {
        any(out, 30, e);
    }
    vendor_extensions(out, 31, s);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A minimal protobuf reader for the tests: (field, wire type, payload).
    enum Field<'a> {
        Varint(u64),
        Fixed64(u64),
        Bytes(&'a [u8]),
    }

    fn read_varint(b: &[u8], pos: &mut usize) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *b.get(*pos)?;
            *pos += 1;
            v |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }

    fn fields(b: &[u8]) -> Vec<(u32, Field<'_>)> {
        let mut out = Vec::new();
        let mut pos = 0;
        while pos < b.len() {
            let Some(key) = read_varint(b, &mut pos) else {
                panic!("truncated key")
            };
            let field = (key >> 3) as u32;
            let value = match (key & 7) as u8 {
                VARINT => {
                    Field::Varint(read_varint(b, &mut pos).unwrap_or_else(|| panic!("varint")))
                }
                FIXED64 => {
                    let mut a = [0u8; 8];
                    a.copy_from_slice(&b[pos..pos + 8]);
                    pos += 8;
                    Field::Fixed64(u64::from_le_bytes(a))
                }
                LEN => {
                    let n = read_varint(b, &mut pos).unwrap_or_else(|| panic!("len")) as usize;
                    let s = &b[pos..pos + n];
                    pos += n;
                    Field::Bytes(s)
                }
                w => panic!("unexpected wire type {w}"),
            };
            out.push((field, value));
        }
        out
    }

    fn sub(b: &[u8], field: u32) -> Vec<&[u8]> {
        fields(b)
            .into_iter()
            .filter_map(|(f, v)| match v {
                Field::Bytes(s) if f == field => Some(s),
                _ => None,
            })
            .collect()
    }

    fn text(b: &[u8], field: u32) -> Vec<String> {
        sub(b, field)
            .into_iter()
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect()
    }

    /// The value of a `repeated NamedX` entry called `name`.
    fn named<'a>(b: &'a [u8], field: u32, name: &str) -> Option<&'a [u8]> {
        sub(b, field)
            .into_iter()
            .find(|n| text(n, 1).first().map(String::as_str) == Some(name))
            .and_then(|n| sub(n, 2).first().copied())
    }

    #[test]
    fn varints_and_doubles_encode_like_protobuf() {
        let mut b = Vec::new();
        varint(&mut b, 300);
        assert_eq!(b, [0xac, 0x02]);
        let mut b = Vec::new();
        double(&mut b, 7, Some(&json!(1.5)));
        assert_eq!(b[0], (7 << 3) | FIXED64);
        assert!(matches!(fields(&b)[0].1, Field::Fixed64(v) if f64::from_bits(v) == 1.5));
        let mut b = Vec::new();
        int64(&mut b, 11, Some(&json!(-1)));
        assert_eq!(b.len(), 11);
    }

    #[test]
    fn document_round_trips_through_a_reader() {
        let doc = json!({
            "swagger": "2.0",
            "info": {"title": "Kubernetes", "version": "v1.33.0"},
            "paths": {
                "/apis/apps/v1/namespaces/{namespace}/deployments/{name}": {
                    "patch": {
                        "operationId": "patchAppsV1NamespacedDeployment",
                        "consumes": ["application/merge-patch+json"],
                        "parameters": [
                            {"in": "body", "name": "body", "required": true,
                             "schema": {"$ref": "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.Patch"}},
                            {"in": "query", "name": "fieldValidation", "type": "string", "uniqueItems": true},
                        ],
                        "responses": {"200": {"description": "OK",
                            "schema": {"$ref": "#/definitions/io.k8s.api.apps.v1.Deployment"}}},
                        "x-kubernetes-action": "patch",
                        "x-kubernetes-group-version-kind": {"group": "apps", "kind": "Deployment", "version": "v1"},
                    },
                    "parameters": [{"in": "path", "name": "name", "required": true, "type": "string"}],
                },
            },
            "definitions": {
                "io.k8s.api.apps.v1.DeploymentSpec": {
                    "type": "object",
                    "required": ["selector"],
                    "properties": {
                        "replicas": {"type": "integer", "format": "int32", "description": "Number of desired pods."},
                        "paused": {"type": "boolean", "default": false},
                    },
                    "additionalProperties": false,
                },
            },
            "securityDefinitions": {"BearerToken": {"type": "apiKey", "in": "header", "name": "authorization"}},
            "security": [{"BearerToken": []}],
        });
        let b = v2_protobuf(&doc);
        assert_eq!(text(&b, 1), ["2.0"]);
        assert_eq!(text(sub(&b, 2)[0], 1), ["Kubernetes"]);

        let paths = sub(&b, 8)[0];
        let item = named(
            paths,
            2,
            "/apis/apps/v1/namespaces/{namespace}/deployments/{name}",
        )
        .expect("path");
        let patch = sub(item, 8)[0];
        assert_eq!(text(patch, 5), ["patchAppsV1NamespacedDeployment"]);
        let params = sub(patch, 8);
        assert_eq!(params.len(), 2);
        // ParametersItem.parameter → Parameter.body_parameter → BodyParameter.schema._ref
        let body = sub(sub(params[0], 1)[0], 1)[0];
        assert_eq!(
            text(sub(body, 5)[0], 1),
            ["#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.Patch"]
        );
        // ParametersItem.parameter → Parameter.non_body_parameter → query sub-schema (3).name
        let query = sub(sub(sub(params[1], 1)[0], 2)[0], 3)[0];
        assert_eq!(text(query, 4), ["fieldValidation"]);
        assert_eq!(text(query, 6), ["string"]);
        assert!(
            fields(query)
                .iter()
                .any(|(f, v)| *f == 20 && matches!(v, Field::Varint(1)))
        );
        let gvk = named(patch, 13, "x-kubernetes-group-version-kind").expect("gvk extension");
        let yaml = text(gvk, 2);
        let parsed: Value = serde_json::from_str(&yaml[0]).unwrap_or_default();
        assert_eq!(parsed["kind"], "Deployment");
        let response = named(sub(patch, 9)[0], 1, "200").expect("200");
        let schema = sub(sub(sub(response, 1)[0], 2)[0], 1)[0];
        assert_eq!(
            text(schema, 1),
            ["#/definitions/io.k8s.api.apps.v1.Deployment"]
        );
        // PathItem.parameters → path sub-schema (4)
        let path_param = sub(sub(sub(sub(item, 9)[0], 1)[0], 2)[0], 4)[0];
        assert_eq!(text(path_param, 4), ["name"]);
        assert_eq!(text(path_param, 5), ["string"]);

        let defs = sub(&b, 9)[0];
        let spec = named(defs, 1, "io.k8s.api.apps.v1.DeploymentSpec").expect("definition");
        assert_eq!(text(sub(spec, 22)[0], 1), ["object"]);
        assert_eq!(text(spec, 19), ["selector"]);
        let replicas = named(sub(spec, 25)[0], 1, "replicas").expect("replicas");
        assert_eq!(text(replicas, 4), ["Number of desired pods."]);
        assert_eq!(text(replicas, 2), ["int32"]);
        let paused = named(sub(spec, 25)[0], 1, "paused").expect("paused");
        assert_eq!(text(sub(paused, 5)[0], 2), ["false"]);
        let ap = sub(spec, 21)[0];
        assert!(matches!(fields(ap)[..], [(2, Field::Varint(0))]));

        let security_defs = sub(&b, 13)[0];
        let bearer = named(security_defs, 1, "BearerToken").expect("bearer");
        assert_eq!(text(sub(bearer, 2)[0], 2), ["authorization"]);
        let requirement = sub(&b, 12)[0];
        assert_eq!(text(sub(requirement, 1)[0], 1), ["BearerToken"]);
    }

    #[test]
    fn full_v2_document_encodes() {
        let resources = vec![super::super::ServedResource {
            group: "apps".into(),
            version: "v1".into(),
            kind: "Deployment".into(),
            plural: "deployments".into(),
            namespaced: true,
            has_status: true,
            has_scale: true,
            custom_schema: None,
        }];
        let doc = super::super::v2_document(&resources);
        let b = v2_protobuf(&doc);
        let defs = sub(&b, 9)[0];
        let deployment = named(defs, 1, "io.k8s.api.apps.v1.Deployment").expect("Deployment");
        let gvk = named(deployment, 31, "x-kubernetes-group-version-kind").expect("gvk");
        let parsed: Value = serde_json::from_str(&text(gvk, 2)[0]).unwrap_or_default();
        assert_eq!(parsed[0]["kind"], "Deployment");
        assert!(b.len() > 100_000);
    }
}
