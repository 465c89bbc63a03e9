//! CustomResourceDefinition v1 structural schemas: the pure functions the API
//! server applies to a CRD's `openAPIV3Schema` when the CRD is written
//! (`check_structural`) and to every custom object it stores (`apply_defaults`,
//! `prune`, `validate`), with upstream's field paths, reasons and messages.
//!
//! The schema and the objects are plain `serde_json::Value`s; nothing here
//! knows about HTTP, storage or the kinds table. Not implemented (by choice,
//! documented for callers): `x-kubernetes-validations` CEL rules are only
//! checked for being non-empty, never evaluated; validation ratcheting on
//! update is not done; the numeric formats `int32`/`int64`/`float`/`double`
//! are not range-checked (upstream strips them before validating too).
//!
//! Order of use for a custom object, as upstream: `prune` (report the paths
//! for `fieldValidation`), `apply_defaults`, then `validate`.

use std::collections::HashMap;

use base64::Engine as _;
use serde_json::{Map, Number, Value};

/// One validation failure of a custom object: (field path like
/// `spec.replicas`, `metav1.CauseType` reason like `FieldValueInvalid`,
/// message like `Invalid value: 11: spec.replicas in body should be less than
/// or equal to 10`). Field and message are what a `Status` cause carries.
pub type Violation = (String, String, String);

pub const REASON_REQUIRED: &str = "FieldValueRequired";
pub const REASON_INVALID: &str = "FieldValueInvalid";
pub const REASON_TYPE_INVALID: &str = "FieldValueTypeInvalid";
pub const REASON_NOT_SUPPORTED: &str = "FieldValueNotSupported";
pub const REASON_TOO_LONG: &str = "FieldValueTooLong";
pub const REASON_TOO_MANY: &str = "FieldValueTooMany";
pub const REASON_DUPLICATE: &str = "FieldValueDuplicate";
pub const REASON_FORBIDDEN: &str = "FieldValueForbidden";

/// Fields of `ObjectMeta` kept when a resource's `metadata` is pruned.
const OBJECT_META_FIELDS: &[&str] = &[
    "name",
    "generateName",
    "namespace",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "managedFields",
];

const META_FIELDS: &[&str] = &["apiVersion", "kind", "metadata"];

const OPENAPI_V3_TYPES: &[&str] = &["array", "boolean", "integer", "number", "object", "string"];

// ---------------------------------------------------------------------------
// Field paths and upstream error bodies (k8s.io/apimachinery field.Error)
// ---------------------------------------------------------------------------

fn child(base: &str, name: &str) -> String {
    if base.is_empty() {
        name.to_string()
    } else {
        format!("{base}.{name}")
    }
}

fn key(base: &str, k: &str) -> String {
    format!("{base}[{k}]")
}

fn index(base: &str, i: usize) -> String {
    format!("{base}[{i}]")
}

/// Go's `%q` for a string (close enough: JSON escaping).
fn quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| format!("\"{s}\""))
}

/// Go's `%v` for a float64.
fn go_float(f: f64) -> String {
    if !f.is_finite() {
        return if f.is_nan() {
            "NaN".into()
        } else if f > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    let abs = f.abs();
    if abs != 0.0 && !(1e-4..1e21).contains(&abs) {
        let s = format!("{f:e}");
        // Rust prints `1e21`, Go `1e+21`.
        match s.split_once('e') {
            Some((m, e)) if !e.starts_with('-') => format!("{m}e+{e:0>2}"),
            Some((m, e)) => format!("{m}e-{:0>2}", &e[1..]),
            None => s,
        }
    } else if f.fract() == 0.0 {
        format!("{}", f as i64)
    } else {
        format!("{f}")
    }
}

fn go_number(n: &Number) -> String {
    if let Some(i) = n.as_i64() {
        i.to_string()
    } else if let Some(u) = n.as_u64() {
        u.to_string()
    } else {
        go_float(n.as_f64().unwrap_or(0.0))
    }
}

/// How `field.Error.ErrorBody` prints a bad value.
fn go_value(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => go_number(n),
        Value::String(s) => quote(s),
        other => serde_json::to_string(other).unwrap_or_default(),
    }
}

/// kube-openapi's subject of a message: `spec.replicas in body`.
fn in_body(path: &str) -> String {
    if path.is_empty() {
        "in body".to_string()
    } else {
        format!("{path} in body")
    }
}

fn with_detail(head: String, detail: &str) -> String {
    if detail.is_empty() {
        head
    } else {
        format!("{head}: {detail}")
    }
}

fn body_required(detail: &str) -> String {
    with_detail("Required value".into(), detail)
}

fn body_forbidden(detail: &str) -> String {
    with_detail("Forbidden".into(), detail)
}

fn body_invalid(value: &Value, detail: &str) -> String {
    with_detail(format!("Invalid value: {}", go_value(value)), detail)
}

fn body_not_supported(value: &Value, supported: &[String]) -> String {
    let list: Vec<String> = supported.iter().map(|s| quote(s)).collect();
    with_detail(
        format!("Unsupported value: {}", go_value(value)),
        &if list.is_empty() {
            String::new()
        } else {
            format!("supported values: {}", list.join(", "))
        },
    )
}

fn plural(n: i64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

// ---------------------------------------------------------------------------
// Schema accessors (tolerant: a keyword of the wrong JSON type is absent)
// ---------------------------------------------------------------------------

fn s_type(s: &Value) -> &str {
    s.get("type").and_then(Value::as_str).unwrap_or("")
}

fn s_flag(s: &Value, k: &str) -> bool {
    s.get(k).and_then(Value::as_bool).unwrap_or(false)
}

fn s_props(s: &Value) -> Option<&Map<String, Value>> {
    s.get("properties").and_then(Value::as_object)
}

fn s_items(s: &Value) -> Option<&Value> {
    s.get("items").filter(|i| i.is_object())
}

fn s_list<'a>(s: &'a Value, k: &str) -> &'a [Value] {
    s.get(k)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn s_i64(s: &Value, k: &str) -> Option<i64> {
    s.get(k).and_then(|v| {
        v.as_i64()
            .or_else(|| v.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))
    })
}

fn s_f64(s: &Value, k: &str) -> Option<f64> {
    s.get(k).and_then(Value::as_f64)
}

#[derive(Clone, Copy)]
enum Additional<'a> {
    Absent,
    Bool(bool),
    Schema(&'a Value),
}

fn s_additional(s: &Value) -> Additional<'_> {
    match s.get("additionalProperties") {
        Some(Value::Bool(b)) => Additional::Bool(*b),
        Some(v @ Value::Object(_)) => Additional::Schema(v),
        _ => Additional::Absent,
    }
}

fn s_nullable(s: &Value) -> bool {
    s_flag(s, "nullable")
}

fn s_embedded(s: &Value) -> bool {
    s_flag(s, "x-kubernetes-embedded-resource")
}

fn s_preserve(s: &Value) -> bool {
    s_flag(s, "x-kubernetes-preserve-unknown-fields")
}

fn s_int_or_string(s: &Value) -> bool {
    s_flag(s, "x-kubernetes-int-or-string")
}

// ---------------------------------------------------------------------------
// JSON helpers
// ---------------------------------------------------------------------------

fn is_integer(v: &Value) -> bool {
    match v {
        Value::Number(n) => {
            n.is_i64()
                || n.is_u64()
                || n.as_f64()
                    .is_some_and(|f| f.is_finite() && f.fract() == 0.0)
        }
        _ => false,
    }
}

/// The OpenAPI type name of a JSON value, as kube-openapi reports it.
fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn type_matches(t: &str, v: &Value) -> bool {
    match t {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "boolean" => v.is_boolean(),
        "number" => v.is_number(),
        "integer" => is_integer(v),
        _ => true,
    }
}

/// JSON equality with numbers compared by value (1 == 1.0).
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(i), Some(j)) => i == j,
            _ => match (x.as_u64(), y.as_u64()) {
                (Some(i), Some(j)) => i == j,
                _ => x.as_f64() == y.as_f64(),
            },
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_eq(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, a)| y.get(k).is_some_and(|b| json_eq(a, b)))
        }
        _ => a == b,
    }
}

// ---------------------------------------------------------------------------
// check_structural
// ---------------------------------------------------------------------------

/// Violations of a CRD version's `openAPIV3Schema`, each as
/// `"<path>: <message>"` with the path relative to the schema root, e.g.
/// `properties[spec].type: Required value: must not be empty for specified
/// object fields`. An empty list means the schema is accepted. Callers that
/// build a 422 use [`check_structural_causes`] with the full base path.
pub fn check_structural(schema: &Value) -> Vec<String> {
    check_structural_causes("", schema)
        .into_iter()
        .map(|(path, message)| {
            if path.is_empty() {
                message
            } else {
                format!("{path}: {message}")
            }
        })
        .collect()
}

/// Like [`check_structural`], as `(field, message)` pairs under `base`
/// (e.g. `spec.versions[0].schema.openAPIV3Schema`), ready for `Status`
/// causes (`reason: FieldValueInvalid` etc. is the message's first words).
pub fn check_structural_causes(base: &str, schema: &Value) -> Vec<(String, String)> {
    let mut c = SchemaCheck { errs: Vec::new() };
    if !schema.is_object() {
        c.errs
            .push((base.to_string(), body_invalid(schema, "must be an object")));
        return c.errs;
    }
    if s_nullable(schema) {
        c.errs.push((
            child(base, "nullable"),
            body_forbidden("nullable cannot be true at the root"),
        ));
    }
    c.openapi(schema, base, true, false, None);

    let mut structural = Vec::new();
    invariants(schema, Level::Root, base, &mut structural);
    completeness(schema, base, &mut structural);
    structural.sort_by(|a, b| format!("{}: {}", a.0, a.1).cmp(&format!("{}: {}", b.0, b.1)));
    structural.dedup();
    let structural_ok = structural.is_empty();
    c.errs.extend(structural);

    if structural_ok && c.errs.is_empty() {
        check_defaults(schema, base, true, &mut c.errs);
    }
    c.errs
}

struct SchemaCheck {
    errs: Vec<(String, String)>,
}

impl SchemaCheck {
    fn push(&mut self, path: String, message: String) {
        self.errs.push((path, message));
    }

    /// Keywords whose JSON type is wrong would be a decode error upstream;
    /// here they are reported as invalid values.
    fn keyword_types(&mut self, s: &Map<String, Value>, path: &str) {
        for (k, v) in s {
            let expected = match k.as_str() {
                "type"
                | "format"
                | "title"
                | "description"
                | "pattern"
                | "$ref"
                | "id"
                | "$schema"
                | "x-kubernetes-list-type"
                | "x-kubernetes-map-type" => (!v.is_string()).then_some("string"),
                "properties" | "patternProperties" | "definitions" | "dependencies" | "not" => {
                    (!v.is_object()).then_some("object")
                }
                "required" | "x-kubernetes-list-map-keys" => {
                    (!v.as_array().is_some_and(|a| a.iter().all(Value::is_string)))
                        .then_some("list of strings")
                }
                "enum" | "allOf" | "anyOf" | "oneOf" | "x-kubernetes-validations" => {
                    (!v.is_array()).then_some("list")
                }
                "nullable"
                | "uniqueItems"
                | "exclusiveMinimum"
                | "exclusiveMaximum"
                | "x-kubernetes-int-or-string"
                | "x-kubernetes-embedded-resource"
                | "x-kubernetes-preserve-unknown-fields" => (!v.is_boolean()).then_some("boolean"),
                "minimum" | "maximum" | "multipleOf" => (!v.is_number()).then_some("number"),
                "minLength" | "maxLength" | "minItems" | "maxItems" | "minProperties"
                | "maxProperties" => v
                    .as_i64()
                    .is_none_or(|n| n < 0)
                    .then_some("non-negative integer"),
                "items" | "additionalProperties" | "additionalItems" => {
                    (!(v.is_object() || v.is_boolean() || (k == "items" && v.is_array())))
                        .then_some("schema")
                }
                _ => None,
            };
            if let Some(expected) = expected {
                self.push(
                    child(path, k),
                    body_invalid(v, &format!("must be a {expected}")),
                );
            }
        }
    }

    /// `ValidateCustomResourceDefinitionOpenAPISchema` + the v3 standard
    /// validator: unsupported keywords, list/map extensions, defaults allowed.
    fn openapi(
        &mut self,
        s: &Value,
        path: &str,
        is_root: bool,
        inside_meta: bool,
        defaults_forbidden: Option<&str>,
    ) {
        let Some(obj) = s.as_object() else {
            self.push(
                path.to_string(),
                body_invalid(s, "must be a JSON schema object"),
            );
            return;
        };
        self.keyword_types(obj, path);
        let t = s_type(s);

        // The standard validator.
        if !t.is_empty() && !OPENAPI_V3_TYPES.contains(&t) {
            let supported: Vec<String> = OPENAPI_V3_TYPES.iter().map(|s| s.to_string()).collect();
            self.push(
                child(path, "type"),
                body_not_supported(&Value::String(t.into()), &supported),
            );
        }
        if obj.contains_key("default")
            && let Some(reason) = defaults_forbidden
        {
            self.push(
                child(path, "default"),
                body_forbidden(&format!("must not be set {reason}")),
            );
        }
        for (kw, msg) in [
            ("id", "id is not supported"),
            ("additionalItems", "additionalItems is not supported"),
            ("patternProperties", "patternProperties is not supported"),
            ("definitions", "definitions is not supported"),
            ("dependencies", "dependencies is not supported"),
            ("$ref", "$ref is not supported"),
        ] {
            let present = match obj.get(kw) {
                None | Some(Value::Null) => false,
                Some(Value::Object(m)) => !(m.is_empty() && kw != "additionalItems"),
                Some(Value::String(st)) => !st.is_empty(),
                Some(_) => true,
            };
            if present {
                self.push(child(path, kw), body_forbidden(msg));
            }
        }
        if t == "null" {
            self.push(
                child(path, "type"),
                body_forbidden("type cannot be set to null, use nullable as an alternative"),
            );
        }
        if obj.get("items").is_some_and(Value::is_array) {
            self.push(
                child(path, "items"),
                body_forbidden("items must be a schema object and not an array"),
            );
        }
        if inside_meta && s_embedded(s) {
            self.push(
                child(path, "x-kubernetes-embedded-resource"),
                body_forbidden("must not be used inside of resource meta"),
            );
        }

        if s_flag(s, "uniqueItems") {
            self.push(
                child(path, "uniqueItems"),
                body_forbidden(
                    "uniqueItems cannot be set to true since the runtime complexity becomes quadratic",
                ),
            );
        }

        let props = s_props(s);
        let has_props = props.is_some_and(|p| !p.is_empty());
        match s_additional(s) {
            Additional::Absent => {}
            Additional::Bool(allows) => {
                if has_props && !allows {
                    self.push(
                        child(path, "additionalProperties"),
                        body_forbidden("additionalProperties and properties are mutual exclusive"),
                    );
                }
            }
            Additional::Schema(ap) => {
                if has_props {
                    self.push(
                        child(path, "additionalProperties"),
                        body_forbidden("additionalProperties and properties are mutual exclusive"),
                    );
                }
                let forbidden = if inside_meta {
                    Some("inside additionalProperties applying to object metadata")
                } else {
                    defaults_forbidden
                };
                self.openapi(
                    ap,
                    &child(path, "additionalProperties"),
                    false,
                    inside_meta,
                    forbidden,
                );
            }
        }

        if let Some(props) = props {
            for (name, sub) in props {
                let mut sub_meta = inside_meta;
                let mut sub_forbidden = defaults_forbidden.map(str::to_string);
                if (is_root || s_embedded(s)) && META_FIELDS.contains(&name.as_str()) {
                    sub_meta = true;
                    if is_root {
                        sub_forbidden = Some(format!("in top-level {name}"));
                    }
                }
                self.openapi(
                    sub,
                    &key(&child(path, "properties"), name),
                    false,
                    sub_meta,
                    sub_forbidden.as_deref(),
                );
            }
        }
        if let Some(not) = obj.get("not").filter(|n| n.is_object()) {
            self.openapi(
                not,
                &child(path, "not"),
                false,
                inside_meta,
                defaults_forbidden,
            );
        }
        for junctor in ["allOf", "oneOf", "anyOf"] {
            for (i, sub) in s_list(s, junctor).iter().enumerate() {
                self.openapi(
                    sub,
                    &index(&child(path, junctor), i),
                    false,
                    inside_meta,
                    defaults_forbidden,
                );
            }
        }
        if let Some(items) = s_items(s) {
            self.openapi(
                items,
                &child(path, "items"),
                false,
                inside_meta,
                defaults_forbidden,
            );
        }

        if obj.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(false)) {
            self.push(
                child(path, "x-kubernetes-preserve-unknown-fields"),
                body_invalid(&Value::Bool(false), "must be true or undefined"),
            );
        }

        let map_type = obj.get("x-kubernetes-map-type").and_then(Value::as_str);
        if let Some(mt) = map_type {
            if t != "object" {
                let detail = "must be object if x-kubernetes-map-type is specified";
                self.type_must_be(path, t, detail);
            }
            if mt != "atomic" && mt != "granular" {
                self.push(
                    child(path, "x-kubernetes-map-type"),
                    body_not_supported(
                        &Value::String(mt.into()),
                        &["atomic".into(), "granular".into()],
                    ),
                );
            }
        }

        let list_type = obj.get("x-kubernetes-list-type").and_then(Value::as_str);
        if let Some(lt) = list_type {
            if t != "array" {
                self.type_must_be(
                    path,
                    t,
                    "must be array if x-kubernetes-list-type is specified",
                );
            } else if lt == "set"
                && let Some(items) = s_items(s)
            {
                match s_type(items) {
                    "array" => {
                        if let Some(ilt) =
                            items.get("x-kubernetes-list-type").and_then(Value::as_str)
                            && ilt != "atomic"
                        {
                            self.push(
                                child(&child(path, "items"), "x-kubernetes-list-type"),
                                body_invalid(
                                    &Value::String(ilt.into()),
                                    "must be atomic as item of a list with x-kubernetes-list-type=set",
                                ),
                            );
                        }
                    }
                    "object" => {
                        let imt = items.get("x-kubernetes-map-type").and_then(Value::as_str);
                        if imt != Some("atomic") {
                            self.push(
                                child(&child(path, "items"), "x-kubernetes-map-type"),
                                body_invalid(
                                    &imt.map_or(Value::Null, |m| Value::String(m.into())),
                                    "must be atomic as item of a list with x-kubernetes-list-type=set",
                                ),
                            );
                        }
                    }
                    _ => {}
                }
            }
            if lt != "atomic" && lt != "set" && lt != "map" {
                self.push(
                    child(path, "x-kubernetes-list-type"),
                    body_not_supported(
                        &Value::String(lt.into()),
                        &["atomic".into(), "set".into(), "map".into()],
                    ),
                );
            }
        }

        let map_keys: Vec<&str> = s_list(s, "x-kubernetes-list-map-keys")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        if !map_keys.is_empty() {
            match list_type {
                None => self.push(
                    child(path, "x-kubernetes-list-type"),
                    body_required("must be map if x-kubernetes-list-map-keys is non-empty"),
                ),
                Some("map") => {}
                Some(other) => self.push(
                    child(path, "x-kubernetes-list-type"),
                    body_invalid(
                        &Value::String(other.into()),
                        "must be map if x-kubernetes-list-map-keys is non-empty",
                    ),
                ),
            }
        }
        if list_type == Some("map") {
            self.list_map(s, path, &map_keys);
        }
        if matches!(list_type, Some("map") | Some("set"))
            && let Some(items) = s_items(s)
            && s_nullable(items)
        {
            self.push(
                child(&child(path, "items"), "nullable"),
                body_forbidden(&format!(
                    "cannot be nullable when x-kubernetes-list-type is {}",
                    list_type.unwrap_or_default()
                )),
            );
        }

        for (i, rule) in s_list(s, "x-kubernetes-validations").iter().enumerate() {
            let rule_text = rule.get("rule").and_then(Value::as_str).unwrap_or("");
            if rule_text.trim().is_empty() {
                self.push(
                    child(&index(&child(path, "x-kubernetes-validations"), i), "rule"),
                    body_required("rule is not specified"),
                );
            }
        }
    }

    fn type_must_be(&mut self, path: &str, t: &str, detail: &str) {
        if t.is_empty() {
            self.push(child(path, "type"), body_required(detail));
        } else {
            self.push(
                child(path, "type"),
                body_invalid(&Value::String(t.into()), detail),
            );
        }
    }

    fn list_map(&mut self, s: &Value, path: &str, map_keys: &[&str]) {
        if map_keys.is_empty() {
            self.push(
                child(path, "x-kubernetes-list-map-keys"),
                body_required("must not be empty if x-kubernetes-list-type is map"),
            );
        }
        let Some(items) = s_items(s) else {
            if s.get("items").is_none() {
                self.push(
                    child(path, "items"),
                    body_required("must have a schema if x-kubernetes-list-type is map"),
                );
            }
            return;
        };
        let it = s_type(items);
        if it != "object" {
            self.push(
                child(&child(path, "items"), "type"),
                body_invalid(
                    &Value::String(it.into()),
                    "must be object if parent array's x-kubernetes-list-type is map",
                ),
            );
            return;
        }
        let all_keys = Value::Array(
            map_keys
                .iter()
                .map(|k| Value::String(k.to_string()))
                .collect(),
        );
        let required: Vec<&str> = s_list(items, "required")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let mut seen: Vec<&str> = Vec::new();
        for k in map_keys {
            match s_props(items).and_then(|p| p.get(*k)) {
                Some(ks) => {
                    let kt = s_type(ks);
                    if kt == "array" || kt == "object" {
                        self.push(
                            child(&key(&child(&child(path, "items"), "properties"), k), "type"),
                            body_invalid(
                                &Value::String(it.into()),
                                "must be a scalar type if parent array's x-kubernetes-list-type is map",
                            ),
                        );
                    }
                    let kpath = key(&child(&child(path, "items"), "properties"), k);
                    if !required.contains(k) && ks.get("default").is_none() {
                        self.push(
                            child(&kpath, "default"),
                            body_required(
                                "this property is in x-kubernetes-list-map-keys, so it must have a default or be a required property",
                            ),
                        );
                    }
                    if s_nullable(ks) {
                        self.push(
                            child(&kpath, "nullable"),
                            body_forbidden("this property is in x-kubernetes-list-map-keys, so it cannot be nullable"),
                        );
                    }
                }
                None => self.push(
                    child(path, "x-kubernetes-list-map-keys"),
                    body_invalid(&all_keys, "entries must all be names of item properties"),
                ),
            }
            if seen.contains(k) {
                self.push(
                    child(path, "x-kubernetes-list-map-keys"),
                    body_invalid(&all_keys, "must not contain duplicate entries"),
                );
            }
            seen.push(k);
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Level {
    Root,
    Item,
    Field,
}

/// `validateStructuralInvariants` for the structural part of the schema.
fn invariants(s: &Value, lvl: Level, path: &str, errs: &mut Vec<(String, String)>) {
    if !s.is_object() {
        return;
    }
    let t = s_type(s);
    if t == "array" && s.get("items").is_none() {
        errs.push((child(path, "items"), body_required("must be specified")));
    }
    if let Some(items) = s_items(s) {
        invariants(items, Level::Item, &child(path, "items"), errs);
    }
    if let Some(props) = s_props(s) {
        for (k, v) in props {
            invariants(v, Level::Field, &key(&child(path, "properties"), k), errs);
        }
    }
    // validateGeneric
    if s.get("additionalProperties").is_some_and(|a| !a.is_null()) {
        if lvl == Level::Root {
            errs.push((
                child(path, "additionalProperties"),
                body_forbidden("must not be used at the root"),
            ));
        }
        if let Additional::Schema(ap) = s_additional(s) {
            invariants(ap, Level::Field, &child(path, "additionalProperties"), errs);
        }
    }
    if lvl == Level::Root && s.get("default").is_some() {
        errs.push((
            child(path, "default"),
            body_forbidden("must not be set at the root"),
        ));
    }
    // validateExtensions
    let ios = s_int_or_string(s);
    if ios && s_preserve(s) {
        errs.push((
            child(path, "x-kubernetes-preserve-unknown-fields"),
            body_invalid(
                &Value::Bool(true),
                "must be false if x-kubernetes-int-or-string is true",
            ),
        ));
    }
    if ios && s_embedded(s) {
        errs.push((
            child(path, "x-kubernetes-embedded-resource"),
            body_invalid(
                &Value::Bool(true),
                "must be false if x-kubernetes-int-or-string is true",
            ),
        ));
    }

    let skip_any_of = is_int_or_string_any_of(s_list(s, "anyOf"));
    let skip_first_all_of_any_of = s_list(s, "allOf")
        .first()
        .is_some_and(|a| is_int_or_string_any_of(s_list(a, "anyOf")));
    value_validation(s, skip_any_of, skip_first_all_of_any_of, path, errs);

    let embedded = s_embedded(s);
    let check_metadata = lvl == Level::Root || embedded;
    if embedded && t != "object" {
        let detail = "must be object if x-kubernetes-embedded-resource is true";
        if t.is_empty() {
            errs.push((child(path, "type"), body_required(detail)));
        } else {
            errs.push((
                child(path, "type"),
                body_invalid(&Value::String(t.into()), detail),
            ));
        }
    } else if t.is_empty() && !ios && !s_preserve(s) {
        let detail = match lvl {
            Level::Root => "must not be empty at the root",
            Level::Item => "must not be empty for specified array items",
            Level::Field => "must not be empty for specified object fields",
        };
        errs.push((child(path, "type"), body_required(detail)));
    }
    if embedded && s.get("additionalProperties").is_some() {
        errs.push((
            child(path, "additionalProperties"),
            body_forbidden("must not be used if x-kubernetes-embedded-resource is set"),
        ));
    }
    if lvl == Level::Root && !t.is_empty() && t != "object" {
        errs.push((
            child(path, "type"),
            body_invalid(&Value::String(t.into()), "must be object at the root"),
        ));
    }

    let props = s_props(s);
    let prop_path = |name: &str| key(&child(path, "properties"), name);
    if check_metadata && let Some(props) = props {
        for (name, want) in [
            ("kind", "string"),
            ("apiVersion", "string"),
            ("metadata", "object"),
        ] {
            if let Some(p) = props.get(name) {
                let pt = s_type(p);
                if pt != want {
                    errs.push((
                        child(&prop_path(name), "type"),
                        body_invalid(&Value::String(pt.into()), &format!("must be {want}")),
                    ));
                }
            }
        }
    }
    if lvl == Level::Root
        && let Some(meta) = props.and_then(|p| p.get("metadata"))
        && let Some(m) = meta.as_object()
    {
        let only_names = |p: &Value| {
            p.as_object()
                .is_some_and(|p| p.keys().all(|k| k == "name" || k == "generateName"))
        };
        let acceptable = m.iter().all(|(k, v)| match k.as_str() {
            "type" | "default" | "description" => true,
            "properties" => only_names(v),
            _ => false,
        });
        if !acceptable {
            errs.push((
                prop_path("metadata"),
                body_forbidden(
                    "must not specify anything other than name and generateName, but metadata is implicitly specified",
                ),
            ));
        }
    }

    if embedded && !s_preserve(s) && props.is_none_or(|p| p.is_empty()) {
        errs.push((
            child(path, "properties"),
            body_required(
                "must not be empty if x-kubernetes-embedded-resource is true without x-kubernetes-preserve-unknown-fields",
            ),
        ));
    }
}

fn is_int_or_string_any_of(any_of: &[Value]) -> bool {
    any_of.len() == 2
        && any_of[0].as_object().is_some_and(|o| o.len() == 1)
        && any_of[0].get("type").and_then(Value::as_str) == Some("integer")
        && any_of[1].as_object().is_some_and(|o| o.len() == 1)
        && any_of[1].get("type").and_then(Value::as_str) == Some("string")
}

/// `validateValueValidation`: the junctors of a node (structural or nested).
fn value_validation(
    s: &Value,
    skip_any_of: bool,
    skip_first_all_of_any_of: bool,
    path: &str,
    errs: &mut Vec<(String, String)>,
) {
    if !skip_any_of {
        for (i, sub) in s_list(s, "anyOf").iter().enumerate() {
            nested_value_validation(sub, false, false, &index(&child(path, "anyOf"), i), errs);
        }
    }
    for (i, sub) in s_list(s, "allOf").iter().enumerate() {
        let skip = skip_first_all_of_any_of && i == 0;
        nested_value_validation(sub, skip, false, &index(&child(path, "allOf"), i), errs);
    }
    for (i, sub) in s_list(s, "oneOf").iter().enumerate() {
        nested_value_validation(sub, false, false, &index(&child(path, "oneOf"), i), errs);
    }
    if let Some(not) = s.get("not").filter(|n| n.is_object()) {
        nested_value_validation(not, false, false, &child(path, "not"), errs);
    }
    if let Some(pattern) = s.get("pattern").and_then(Value::as_str)
        && let Err(e) = regex::Regex::new(pattern)
    {
        let detail = format!(
            "must be a valid regular expression, but isn't: {}",
            last_line(&e.to_string())
        );
        errs.push((
            child(path, "pattern"),
            body_invalid(&Value::String(pattern.into()), &detail),
        ));
    }
}

/// The last non-empty line of a multi-line error (regex puts the cause there).
fn last_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or(s)
        .to_string()
}

/// `validateNestedValueValidation`: what a schema under anyOf/allOf/oneOf/not
/// may not contain to keep the schema structural.
fn nested_value_validation(
    s: &Value,
    skip_any_of: bool,
    skip_all_of_any_of: bool,
    path: &str,
    errs: &mut Vec<(String, String)>,
) {
    let Some(obj) = s.as_object() else {
        return;
    };
    value_validation(s, skip_any_of, skip_all_of_any_of, path, errs);
    if let Some(items) = s_items(s) {
        nested_value_validation(items, false, false, &child(path, "items"), errs);
    }
    if let Some(props) = s_props(s) {
        for (k, v) in props {
            nested_value_validation(v, false, false, &key(&child(path, "properties"), k), errs);
        }
    }
    let present = |k: &str| obj.get(k).is_some_and(|v| !v.is_null());
    if !s_type(s).is_empty() {
        errs.push((
            child(path, "type"),
            body_forbidden("must be empty to be structural"),
        ));
    }
    if present("additionalProperties") {
        errs.push((
            child(path, "additionalProperties"),
            body_forbidden("must be undefined to be structural"),
        ));
    }
    if present("default") {
        errs.push((
            child(path, "default"),
            body_forbidden("must be undefined to be structural"),
        ));
    }
    if obj
        .get("title")
        .and_then(Value::as_str)
        .is_some_and(|t| !t.is_empty())
    {
        errs.push((
            child(path, "title"),
            body_forbidden("must be empty to be structural"),
        ));
    }
    if obj
        .get("description")
        .and_then(Value::as_str)
        .is_some_and(|t| !t.is_empty())
    {
        errs.push((
            child(path, "description"),
            body_forbidden("must be empty to be structural"),
        ));
    }
    if s_nullable(s) {
        errs.push((
            child(path, "nullable"),
            body_forbidden("must be false to be structural"),
        ));
    }
    if s_preserve(s) {
        errs.push((
            child(path, "x-kubernetes-preserve-unknown-fields"),
            body_forbidden("must be false to be structural"),
        ));
    }
    if s_embedded(s) {
        errs.push((
            child(path, "x-kubernetes-embedded-resource"),
            body_forbidden("must be false to be structural"),
        ));
    }
    if s_int_or_string(s) {
        errs.push((
            child(path, "x-kubernetes-int-or-string"),
            body_forbidden("must be false to be structural"),
        ));
    }
    if !s_list(s, "x-kubernetes-list-map-keys").is_empty() {
        errs.push((
            child(path, "x-kubernetes-list-map-keys"),
            body_forbidden("must be empty to be structural"),
        ));
    }
    if present("x-kubernetes-list-type") {
        errs.push((
            child(path, "x-kubernetes-list-type"),
            body_forbidden("must be undefined to be structural"),
        ));
    }
    if present("x-kubernetes-map-type") {
        errs.push((
            child(path, "x-kubernetes-map-type"),
            body_forbidden("must be undefined to be structural"),
        ));
    }
    if !s_list(s, "x-kubernetes-validations").is_empty() {
        errs.push((
            child(path, "x-kubernetes-validations"),
            body_forbidden("must be empty to be structural"),
        ));
    }
    if s_props(s).is_some_and(|p| p.contains_key("metadata")) {
        errs.push((
            key(&child(path, "properties"), "metadata"),
            body_forbidden("must not be specified in a nested context"),
        ));
    }
}

/// `validateStructuralCompleteness`: every field or array a value validation
/// mentions must also be specified in the structural part.
fn completeness(s: &Value, path: &str, errs: &mut Vec<(String, String)>) {
    if !s.is_object() {
        return;
    }
    junctor_completeness(s, Some(s), path, path, errs);
    if let Some(items) = s_items(s) {
        completeness(items, &child(path, "items"), errs);
    }
    if let Some(props) = s_props(s) {
        for (k, v) in props {
            completeness(v, &key(&child(path, "properties"), k), errs);
        }
    }
    if let Additional::Schema(ap) = s_additional(s) {
        completeness(ap, &child(path, "additionalProperties"), errs);
    }
}

fn junctor_completeness(
    v: &Value,
    s: Option<&Value>,
    s_path: &str,
    v_path: &str,
    errs: &mut Vec<(String, String)>,
) {
    if let Some(not) = v.get("not").filter(|n| n.is_object()) {
        nested_completeness(not, s, s_path, &child(v_path, "not"), errs);
    }
    for junctor in ["allOf", "anyOf", "oneOf"] {
        for (i, sub) in s_list(v, junctor).iter().enumerate() {
            nested_completeness(sub, s, s_path, &index(&child(v_path, junctor), i), errs);
        }
    }
}

fn nested_completeness(
    v: &Value,
    s: Option<&Value>,
    s_path: &str,
    v_path: &str,
    errs: &mut Vec<(String, String)>,
) {
    if !v.is_object() {
        return;
    }
    let Some(s) = s else {
        errs.push((
            s_path.to_string(),
            body_required(&format!("because it is defined in {v_path}")),
        ));
        return;
    };
    junctor_completeness(v, Some(s), s_path, v_path, errs);
    if let Some(items) = s_items(v) {
        nested_completeness(
            items,
            s_items(s),
            &child(s_path, "items"),
            &child(v_path, "items"),
            errs,
        );
    }
    if let Some(props) = s_props(v) {
        for (k, vf) in props {
            let vp = key(&child(v_path, "properties"), k);
            match s_props(s).and_then(|p| p.get(k)) {
                Some(sf) => nested_completeness(
                    vf,
                    Some(sf),
                    &key(&child(s_path, "properties"), k),
                    &vp,
                    errs,
                ),
                None => match s_additional(s) {
                    Additional::Schema(ap) => nested_completeness(
                        vf,
                        Some(ap),
                        &child(s_path, "additionalProperties"),
                        &vp,
                        errs,
                    ),
                    _ => errs.push((
                        key(&child(s_path, "properties"), k),
                        body_required(&format!("because it is defined in {vp}")),
                    )),
                },
            }
        }
    }
}

/// `ValidateDefaults`: every default validates against its own schema and
/// is unchanged by pruning.
fn check_defaults(s: &Value, path: &str, is_root: bool, errs: &mut Vec<(String, String)>) {
    if !s.is_object() {
        return;
    }
    if !is_root && let Some(default) = s.get("default") {
        let default_path = child(path, "default");
        let mut v = Validation::new();
        v.node(s, default, "", s_embedded(s), 0);
        for (field, _, message) in v.errs {
            let field = if field.is_empty() {
                default_path.clone()
            } else {
                format!("{default_path}.{field}")
            };
            errs.push((field, message));
        }
        let mut pruned = default.clone();
        let mut paths = Vec::new();
        prune_value(&mut pruned, Some(s), s_embedded(s), "", &mut paths);
        if !paths.is_empty() || !json_eq(&pruned, default) {
            errs.push((
                default_path,
                body_invalid(default, "must not have unknown fields"),
            ));
        }
    }
    if let Some(items) = s_items(s) {
        check_defaults(items, &child(path, "items"), false, errs);
    }
    if let Some(props) = s_props(s) {
        for (k, v) in props {
            if is_root && k == "metadata" {
                continue;
            }
            check_defaults(v, &key(&child(path, "properties"), k), false, errs);
        }
    }
    if let Additional::Schema(ap) = s_additional(s) {
        check_defaults(ap, &child(path, "additionalProperties"), false, errs);
    }
}

// ---------------------------------------------------------------------------
// validate
// ---------------------------------------------------------------------------

/// Validates a custom object against its version's (structural) schema, the
/// way kube-openapi does for a CR, translated into field errors like
/// upstream. The root `metadata` (and the metadata of embedded resources) is
/// never validated here: name rules live with the generic ObjectMeta checks.
pub fn validate(schema: &Value, obj: &Value) -> Vec<Violation> {
    let mut v = Validation::new();
    v.node(schema, obj, "", true, 0);
    v.errs
}

/// Deeper nesting than this is not validated further (a malicious object
/// must not blow the stack; upstream limits JSON nesting when decoding).
const MAX_DEPTH: usize = 256;

struct Validation {
    errs: Vec<Violation>,
    regexes: HashMap<String, Option<regex::Regex>>,
}

impl Validation {
    fn new() -> Self {
        Validation {
            errs: Vec::new(),
            regexes: HashMap::new(),
        }
    }

    fn push(&mut self, path: &str, reason: &str, message: String) {
        self.errs
            .push((path.to_string(), reason.to_string(), message));
    }

    fn invalid(&mut self, path: &str, value: &Value, detail: &str) {
        self.push(path, REASON_INVALID, body_invalid(value, detail));
    }

    fn type_invalid(&mut self, path: &str, type_name: &str, value: &str) {
        let msg = format!(
            "{} must be of type {type_name}: {}",
            in_body(path),
            quote(value)
        );
        self.push(
            path,
            REASON_TYPE_INVALID,
            body_invalid(&Value::String(value.into()), &msg),
        );
    }

    /// A sub-validation whose errors are collected separately (junctors).
    fn sub(&mut self, s: &Value, v: &Value, path: &str, depth: usize) -> Vec<Violation> {
        let saved = std::mem::take(&mut self.errs);
        self.node(s, v, path, false, depth + 1);
        std::mem::replace(&mut self.errs, saved)
    }

    /// Validates `v` at `path` against `s`. `embedded` is true at the root
    /// and for `x-kubernetes-embedded-resource` nodes: apiVersion, kind and
    /// metadata are then implicitly allowed.
    fn node(&mut self, s: &Value, v: &Value, path: &str, embedded: bool, depth: usize) {
        if !s.is_object() || depth > MAX_DEPTH {
            return;
        }
        let embedded = embedded || s_embedded(s);
        if v.is_null() {
            if s_nullable(s) {
                return;
            }
            if s_int_or_string(s) {
                self.type_invalid(path, "integer,string", "null");
            } else if !s_type(s).is_empty() {
                self.type_invalid(path, s_type(s), "null");
            }
            return;
        }
        if s_int_or_string(s) {
            if !(v.is_string() || is_integer(v)) {
                self.type_invalid(path, "integer,string", json_kind(v));
                return;
            }
        } else {
            let t = s_type(s);
            if !t.is_empty() && !type_matches(t, v) {
                self.type_invalid(path, t, json_kind(v));
                return;
            }
        }
        if let (Some(format), Value::String(st)) = (s.get("format").and_then(Value::as_str), v)
            && !format_ok(format, st)
        {
            let msg = format!("{} must be of type {format}: {}", in_body(path), quote(st));
            self.push(path, REASON_TYPE_INVALID, body_invalid(v, &msg));
        }
        if let Some(Value::Array(allowed)) = s.get("enum")
            && !allowed.iter().any(|a| json_eq(a, v))
        {
            let supported: Vec<String> = allowed
                .iter()
                .map(|a| match a {
                    Value::String(s) => s.clone(),
                    other => serde_json::to_string(other).unwrap_or_default(),
                })
                .collect();
            self.push(
                path,
                REASON_NOT_SUPPORTED,
                body_not_supported(v, &supported),
            );
        }
        match v {
            Value::Number(n) => self.number(s, n, v, path),
            Value::String(st) => self.string(s, st, v, path),
            Value::Array(items) => self.array(s, items, path, depth),
            Value::Object(map) => self.object(s, map, path, embedded, depth),
            _ => {}
        }
        self.junctors(s, v, path, depth);
    }

    fn number(&mut self, s: &Value, n: &Number, v: &Value, path: &str) {
        let x = n.as_f64().unwrap_or(0.0);
        if let Some(m) = s_f64(s, "multipleOf")
            && m > 0.0
        {
            let q = x / m;
            if (q - q.round()).abs() > 1e-9 * q.abs().max(1.0) {
                self.invalid(
                    path,
                    v,
                    &format!("{} should be a multiple of {}", in_body(path), go_float(m)),
                );
            }
        }
        if let Some(max) = s_f64(s, "maximum") {
            let exclusive = s_flag(s, "exclusiveMaximum");
            if (exclusive && x >= max) || (!exclusive && x > max) {
                let cmp = if exclusive {
                    "less than"
                } else {
                    "less than or equal to"
                };
                self.invalid(
                    path,
                    v,
                    &format!("{} should be {cmp} {}", in_body(path), go_float(max)),
                );
            }
        }
        if let Some(min) = s_f64(s, "minimum") {
            let exclusive = s_flag(s, "exclusiveMinimum");
            if (exclusive && x <= min) || (!exclusive && x < min) {
                let cmp = if exclusive {
                    "greater than"
                } else {
                    "greater than or equal to"
                };
                self.invalid(
                    path,
                    v,
                    &format!("{} should be {cmp} {}", in_body(path), go_float(min)),
                );
            }
        }
    }

    fn string(&mut self, s: &Value, st: &str, v: &Value, path: &str) {
        let len = st.chars().count() as i64;
        if let Some(max) = s_i64(s, "maxLength")
            && len > max
        {
            let msg = format!(
                "Too long: may not be more than {}",
                plural(max, "byte", "bytes")
            );
            self.push(path, REASON_TOO_LONG, msg);
        }
        if let Some(min) = s_i64(s, "minLength")
            && len < min
        {
            self.invalid(
                path,
                v,
                &format!("{} should be at least {min} chars long", in_body(path)),
            );
        }
        if let Some(pattern) = s.get("pattern").and_then(Value::as_str) {
            let re = self
                .regexes
                .entry(pattern.to_string())
                .or_insert_with(|| regex::Regex::new(pattern).ok());
            // An uncompilable pattern was rejected when the CRD was written;
            // if one slips through, it constrains nothing.
            if let Some(re) = re
                && !re.is_match(st)
            {
                self.invalid(
                    path,
                    v,
                    &format!("{} should match '{pattern}'", in_body(path)),
                );
            }
        }
    }

    fn array(&mut self, s: &Value, items: &[Value], path: &str, depth: usize) {
        let n = items.len() as i64;
        if let Some(max) = s_i64(s, "maxItems")
            && n > max
        {
            let msg = format!(
                "Too many: {n}: must have at most {}",
                plural(max, "item", "items")
            );
            self.push(path, REASON_TOO_MANY, msg);
        }
        if let Some(min) = s_i64(s, "minItems")
            && n < min
        {
            self.invalid(
                path,
                &Value::from(n),
                &format!("{} should have at least {min} items", in_body(path)),
            );
        }
        if s_flag(s, "uniqueItems") && has_duplicates(items) {
            self.invalid(
                path,
                &Value::String(String::new()),
                &format!("{} shouldn't contain duplicates", in_body(path)),
            );
        }
        match s.get("x-kubernetes-list-type").and_then(Value::as_str) {
            Some("set") => {
                for (i, item) in items.iter().enumerate() {
                    if items[..i].iter().any(|prev| json_eq(prev, item)) {
                        self.push(
                            &index(path, i),
                            REASON_DUPLICATE,
                            format!("Duplicate value: {}", go_value(item)),
                        );
                    }
                }
            }
            Some("map") => {
                let keys: Vec<&str> = s_list(s, "x-kubernetes-list-map-keys")
                    .iter()
                    .filter_map(Value::as_str)
                    .collect();
                let key_of = |item: &Value| -> Value {
                    let mut m = Map::new();
                    for k in &keys {
                        if let Some(kv) = item.get(*k) {
                            m.insert((*k).to_string(), kv.clone());
                        }
                    }
                    Value::Object(m)
                };
                let tuples: Vec<Value> = items.iter().map(key_of).collect();
                for (i, t) in tuples.iter().enumerate() {
                    if items[i].is_object() && tuples[..i].iter().any(|p| json_eq(p, t)) {
                        self.push(
                            &index(path, i),
                            REASON_DUPLICATE,
                            format!("Duplicate value: {}", go_value(t)),
                        );
                    }
                }
            }
            _ => {}
        }
        if let Some(item_schema) = s_items(s) {
            for (i, item) in items.iter().enumerate() {
                self.node(item_schema, item, &index(path, i), false, depth + 1);
            }
        }
    }

    fn object(
        &mut self,
        s: &Value,
        map: &Map<String, Value>,
        path: &str,
        embedded: bool,
        depth: usize,
    ) {
        let n = map.len() as i64;
        if let Some(max) = s_i64(s, "maxProperties")
            && n > max
        {
            let msg = format!(
                "Too many: {n}: must have at most {}",
                plural(max, "item", "items")
            );
            self.push(path, REASON_TOO_MANY, msg);
        }
        if let Some(min) = s_i64(s, "minProperties")
            && n < min
        {
            self.invalid(
                path,
                &Value::from(min),
                &format!("{} should have at least {min} properties", in_body(path)),
            );
        }
        let skip_meta = |k: &str| embedded && k == "metadata";
        for req in s_list(s, "required").iter().filter_map(Value::as_str) {
            if !map.contains_key(req) && (!embedded || !META_FIELDS.contains(&req)) {
                self.push(&child(path, req), REASON_REQUIRED, body_required(""));
            }
        }
        if embedded && s_embedded(s) {
            self.embedded_resource(map, path);
        }
        let props = s_props(s);
        let additional = s_additional(s);
        for (k, v) in map {
            if skip_meta(k) {
                continue;
            }
            let sub_path = child(path, k);
            if let Some(ps) = props.and_then(|p| p.get(k)) {
                self.node(ps, v, &sub_path, false, depth + 1);
                continue;
            }
            if embedded && META_FIELDS.contains(&k.as_str()) {
                continue;
            }
            match additional {
                Additional::Schema(ap) => self.node(ap, v, &sub_path, false, depth + 1),
                Additional::Bool(false) => {
                    let msg = format!("{} is a forbidden property", in_body(&sub_path));
                    self.invalid(path, &Value::String(k.clone()), &msg);
                }
                _ => {}
            }
        }
    }

    /// apiVersion and kind of an `x-kubernetes-embedded-resource` object.
    fn embedded_resource(&mut self, map: &Map<String, Value>, path: &str) {
        for k in ["apiVersion", "kind"] {
            let p = child(path, k);
            match map.get(k) {
                None => self.push(&p, REASON_REQUIRED, body_required("must not be empty")),
                Some(Value::String(st)) if st.is_empty() => {
                    self.invalid(&p, &Value::String(String::new()), "must not be empty")
                }
                Some(Value::String(st)) if k == "apiVersion" && st.matches('/').count() > 1 => {
                    let detail = format!("unexpected GroupVersion string: {st}");
                    self.invalid(&p, &Value::String(st.clone()), &detail);
                }
                Some(Value::String(_)) => {}
                Some(other) => self.invalid(&p, other, "must be a string"),
            }
        }
        if let Some(meta) = map.get("metadata")
            && !meta.is_object()
            && !meta.is_null()
        {
            self.invalid(&child(path, "metadata"), meta, "must be an object");
        }
    }

    fn junctors(&mut self, s: &Value, v: &Value, path: &str, depth: usize) {
        let all_of = s_list(s, "allOf");
        if !all_of.is_empty() {
            let mut valid = 0;
            for sub in all_of {
                let errs = self.sub(sub, v, path, depth);
                if errs.is_empty() {
                    valid += 1;
                }
                self.errs.extend(errs);
            }
            if valid < all_of.len() {
                let extra = if valid == 0 { ". None validated" } else { "" };
                let msg = format!(
                    "{} must validate all the schemas (allOf){extra}",
                    quote(path)
                );
                self.invalid(path, &Value::String(String::new()), &msg);
            }
        }
        let any_of = s_list(s, "anyOf");
        if !any_of.is_empty() {
            let mut best: Option<Vec<Violation>> = None;
            let mut ok = false;
            for sub in any_of {
                let errs = self.sub(sub, v, path, depth);
                if errs.is_empty() {
                    ok = true;
                    break;
                }
                if best.as_ref().is_none_or(|b| errs.len() < b.len()) {
                    best = Some(errs);
                }
            }
            if !ok {
                let msg = format!("{} must validate at least one schema (anyOf)", quote(path));
                self.invalid(path, &Value::String(String::new()), &msg);
                self.errs.extend(best.unwrap_or_default());
            }
        }
        let one_of = s_list(s, "oneOf");
        if !one_of.is_empty() {
            let mut valid = 0;
            let mut best: Option<Vec<Violation>> = None;
            for sub in one_of {
                let errs = self.sub(sub, v, path, depth);
                if errs.is_empty() {
                    valid += 1;
                } else if best.as_ref().is_none_or(|b| errs.len() < b.len()) {
                    best = Some(errs);
                }
            }
            if valid != 1 {
                let extra = if valid == 0 {
                    "Found none valid".to_string()
                } else {
                    format!("Found {valid} valid alternatives")
                };
                let msg = format!(
                    "{} must validate one and only one schema (oneOf). {extra}",
                    quote(path)
                );
                self.invalid(path, &Value::String(String::new()), &msg);
                if valid == 0 {
                    self.errs.extend(best.unwrap_or_default());
                }
            }
        }
        if let Some(not) = s.get("not").filter(|n| n.is_object())
            && self.sub(not, v, path, depth).is_empty()
        {
            let msg = format!("{} must not validate the schema (not)", quote(path));
            self.invalid(path, &Value::String(String::new()), &msg);
        }
    }
}

fn has_duplicates(items: &[Value]) -> bool {
    items
        .iter()
        .enumerate()
        .any(|(i, a)| items[..i].iter().any(|b| json_eq(a, b)))
}

/// The string formats kube-openapi keeps for CRDs; anything else passes.
fn format_ok(format: &str, s: &str) -> bool {
    match format.replace('-', "").as_str() {
        "datetime" => is_date_time(s),
        "date" => chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok(),
        "byte" => base64::engine::general_purpose::STANDARD.decode(s).is_ok(),
        "uuid" | "uuid3" | "uuid4" | "uuid5" => is_uuid(s),
        "ipv4" => s.parse::<std::net::Ipv4Addr>().is_ok(),
        "ipv6" => s.parse::<std::net::Ipv6Addr>().is_ok(),
        "cidr" => is_cidr(s),
        "mac" => is_mac(s),
        "hostname" => is_hostname(s),
        "email" => is_email(s),
        "duration" => is_duration(s),
        "uri" => is_uri(s),
        "bsonobjectid" => s.len() == 24 && s.bytes().all(|b| b.is_ascii_hexdigit()),
        _ => true,
    }
}

fn is_date_time(s: &str) -> bool {
    chrono::DateTime::parse_from_rfc3339(s).is_ok()
        || chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f").is_ok()
        || chrono::DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f%z").is_ok()
}

fn is_uuid(s: &str) -> bool {
    let s = s.strip_prefix("urn:uuid:").unwrap_or(s);
    let groups: Vec<&str> = s.split('-').collect();
    if groups.len() == 1 {
        return s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit());
    }
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn is_cidr(s: &str) -> bool {
    let Some((addr, prefix)) = s.split_once('/') else {
        return false;
    };
    let Ok(prefix) = prefix.parse::<u8>() else {
        return false;
    };
    match addr.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(_)) => prefix <= 32,
        Ok(std::net::IpAddr::V6(_)) => prefix <= 128,
        Err(_) => false,
    }
}

fn is_mac(s: &str) -> bool {
    let groups: Vec<&str> = if s.contains(':') {
        s.split(':').collect()
    } else if s.contains('-') {
        s.split('-').collect()
    } else {
        let dotted: Vec<&str> = s.split('.').collect();
        return matches!(dotted.len(), 3 | 4 | 10)
            && dotted
                .iter()
                .all(|g| g.len() == 4 && g.bytes().all(|b| b.is_ascii_hexdigit()));
    };
    matches!(groups.len(), 6 | 8 | 20)
        && groups
            .iter()
            .all(|g| g.len() == 2 && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn is_hostname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 255
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

fn is_email(s: &str) -> bool {
    let Some((local, domain)) = s.rsplit_once('@') else {
        return false;
    };
    !local.is_empty() && !local.contains(char::is_whitespace) && is_hostname(domain)
}

/// Go-style (`1h30m`, `300ms`) or strfmt-style (`3 days`, `1d`) durations.
fn is_duration(s: &str) -> bool {
    let s = s.trim();
    if s.is_empty() {
        return false;
    }
    let mut rest = s.strip_prefix(['-', '+']).unwrap_or(s);
    let units = [
        "nanoseconds",
        "nanosecond",
        "ns",
        "microseconds",
        "microsecond",
        "us",
        "µs",
        "milliseconds",
        "millisecond",
        "ms",
        "seconds",
        "second",
        "sec",
        "s",
        "minutes",
        "minute",
        "min",
        "m",
        "hours",
        "hour",
        "hr",
        "h",
        "days",
        "day",
        "d",
        "weeks",
        "week",
        "wk",
        "w",
    ];
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if digits == 0 {
            return false;
        }
        rest = rest[digits..].trim_start();
        let Some(unit) = units.iter().find(|u| rest.starts_with(**u)) else {
            return false;
        };
        rest = rest[unit.len()..].trim_start();
    }
    true
}

fn is_uri(s: &str) -> bool {
    if s.starts_with('/') {
        return !s.contains(char::is_whitespace);
    }
    match s.split_once(':') {
        Some((scheme, rest)) => {
            !scheme.is_empty()
                && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
                && !rest.contains(char::is_whitespace)
        }
        None => false,
    }
}

// ---------------------------------------------------------------------------
// prune
// ---------------------------------------------------------------------------

/// Drops every field the schema does not specify (structural pruning), keeping
/// whatever lies under `x-kubernetes-preserve-unknown-fields`. At the root
/// (and in embedded resources) `apiVersion`, `kind` and `metadata` stay, and
/// `metadata` is cut down to ObjectMeta's fields. Returns the pruned paths
/// (`spec.foo`, `spec.items[0].bar`, `metadata.foo`) in document order, for
/// `fieldValidation=Strict|Warn` (`unknown field "spec.foo"`).
pub fn prune(schema: &Value, obj: &mut Value) -> Vec<String> {
    let mut out = Vec::new();
    prune_value(obj, Some(schema), true, "", &mut out);
    out
}

fn prune_value(x: &mut Value, s: Option<&Value>, root: bool, path: &str, out: &mut Vec<String>) {
    let s = s.filter(|s| s.is_object());
    if let Some(s) = s
        && s_preserve(s)
    {
        skip_prune(x, s, root, path, out);
        return;
    }
    match x {
        Value::Object(map) => {
            let Some(s) = s else {
                for k in map.keys() {
                    out.push(child(path, k));
                }
                map.clear();
                return;
            };
            let embedded = root || s_embedded(s);
            let props = s_props(s);
            let additional = s_additional(s);
            let mut dropped = Vec::new();
            for (k, v) in map.iter_mut() {
                if embedded {
                    match k.as_str() {
                        "apiVersion" | "kind" if v.is_string() => continue,
                        "metadata" if v.is_object() => {
                            prune_object_meta(v, &child(path, k), out);
                            continue;
                        }
                        _ => {}
                    }
                }
                let sub = child(path, k);
                if let Some(ps) = props.and_then(|p| p.get(k)) {
                    prune_value(v, Some(ps), false, &sub, out);
                } else {
                    match additional {
                        Additional::Schema(ap) => prune_value(v, Some(ap), false, &sub, out),
                        Additional::Bool(_) => prune_value(v, None, false, &sub, out),
                        Additional::Absent => {
                            if !META_FIELDS.contains(&k.as_str()) || !path.is_empty() {
                                out.push(sub);
                            }
                            dropped.push(k.clone());
                        }
                    }
                }
            }
            for k in dropped {
                map.shift_remove(&k);
            }
        }
        Value::Array(items) => {
            let item_schema = s.and_then(s_items);
            for (i, v) in items.iter_mut().enumerate() {
                prune_value(v, item_schema, false, &index(path, i), out);
            }
        }
        _ => {}
    }
}

fn skip_prune(x: &mut Value, s: &Value, root: bool, path: &str, out: &mut Vec<String>) {
    match x {
        Value::Object(map) => {
            let embedded = root || s_embedded(s);
            let props = s_props(s);
            let additional = s_additional(s);
            for (k, v) in map.iter_mut() {
                if embedded && META_FIELDS.contains(&k.as_str()) {
                    if k == "metadata" && v.is_object() {
                        prune_object_meta(v, &child(path, k), out);
                    }
                    continue;
                }
                let sub = child(path, k);
                if let Some(ps) = props.and_then(|p| p.get(k)) {
                    prune_value(v, Some(ps), false, &sub, out);
                } else {
                    match additional {
                        Additional::Schema(ap) => prune_value(v, Some(ap), false, &sub, out),
                        Additional::Bool(_) => prune_value(v, None, false, &sub, out),
                        Additional::Absent => {}
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = s_items(s) {
                for (i, v) in items.iter_mut().enumerate() {
                    skip_prune(v, item_schema, false, &index(path, i), out);
                }
            }
        }
        _ => {}
    }
}

fn prune_object_meta(meta: &mut Value, path: &str, out: &mut Vec<String>) {
    if let Value::Object(m) = meta {
        m.retain(|k, _| {
            let known = OBJECT_META_FIELDS.contains(&k.as_str());
            if !known {
                out.push(child(path, k));
            }
            known
        });
    }
}

// ---------------------------------------------------------------------------
// apply_defaults
// ---------------------------------------------------------------------------

/// Applies `default`s like upstream's structural defaulting: a missing
/// property (or a `null` one whose schema is not `nullable`) gets a deep copy
/// of its default, then defaulting recurses into every value, including the
/// defaults just inserted. `null`s in non-nullable properties without a
/// default are dropped (upstream does that while decoding). The root
/// `metadata` is left alone.
pub fn apply_defaults(schema: &Value, obj: &mut Value) {
    default_value(obj, schema, true, 0);
}

fn non_nullable_null(v: &Value, s: &Value) -> bool {
    v.is_null() && !s_nullable(s)
}

fn default_value(x: &mut Value, s: &Value, root: bool, depth: usize) {
    if !s.is_object() || depth > MAX_DEPTH {
        return;
    }
    match x {
        Value::Object(map) => {
            let embedded = root || s_embedded(s);
            let props = s_props(s);
            let additional = match s_additional(s) {
                Additional::Schema(ap) => Some(ap),
                _ => None,
            };
            let schema_of = |k: &str| -> Option<&Value> {
                if embedded && k == "metadata" {
                    return None;
                }
                props.and_then(|p| p.get(k)).or(additional)
            };
            if let Some(props) = props {
                for (k, ps) in props {
                    if embedded && k == "metadata" {
                        continue;
                    }
                    let Some(default) = ps.get("default") else {
                        continue;
                    };
                    match map.get_mut(k) {
                        None => {
                            map.insert(k.clone(), default.clone());
                        }
                        Some(v) if non_nullable_null(v, ps) => *v = default.clone(),
                        Some(_) => {}
                    }
                }
            }
            map.retain(|k, v| match schema_of(k) {
                Some(ps) => !(non_nullable_null(v, ps) && ps.get("default").is_none()),
                None => true,
            });
            for (k, v) in map.iter_mut() {
                let Some(ps) = schema_of(k) else {
                    continue;
                };
                match ps.get("default") {
                    Some(default) if non_nullable_null(v, ps) => *v = default.clone(),
                    _ => default_value(v, ps, false, depth + 1),
                }
            }
        }
        Value::Array(items) => {
            let Some(item_schema) = s_items(s) else {
                return;
            };
            for v in items.iter_mut() {
                match item_schema.get("default") {
                    Some(default) if non_nullable_null(v, item_schema) => *v = default.clone(),
                    _ => default_value(v, item_schema, false, depth + 1),
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The CronTab CRD of the Kubernetes docs, extended.
    fn crontab() -> Value {
        json!({
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "properties": {
                        "cronSpec": {"type": "string", "pattern": "^(\\d+|\\*)(/\\d+)?(\\s+(\\d+|\\*)(/\\d+)?){4}$"},
                        "image": {"type": "string", "maxLength": 20, "minLength": 2},
                        "replicas": {"type": "integer", "minimum": 1, "maximum": 10, "default": 1},
                        "policy": {"type": "string", "enum": ["Allow", "Forbid", "Replace"]},
                        "port": {"x-kubernetes-int-or-string": true},
                        "ratio": {"type": "number", "exclusiveMaximum": true, "maximum": 1.5, "multipleOf": 0.5},
                        "startAt": {"type": "string", "format": "date-time"},
                        "tags": {"type": "array", "maxItems": 2, "minItems": 1, "items": {"type": "string"}},
                        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                        "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                        "note": {"type": "string", "nullable": true},
                        "template": {
                            "type": "object",
                            "x-kubernetes-embedded-resource": true,
                            "x-kubernetes-preserve-unknown-fields": true
                        },
                        "ports": {
                            "type": "array",
                            "x-kubernetes-list-type": "map",
                            "x-kubernetes-list-map-keys": ["name"],
                            "items": {
                                "type": "object",
                                "required": ["name"],
                                "properties": {
                                    "name": {"type": "string"},
                                    "protocol": {"type": "string", "default": "TCP"}
                                }
                            }
                        },
                        "strategy": {
                            "type": "object",
                            "default": {},
                            "properties": {
                                "type": {"type": "string", "default": "Rolling"},
                                "maxSurge": {"type": "integer", "default": 1}
                            }
                        }
                    },
                    "required": ["cronSpec"]
                },
                "status": {"type": "object", "properties": {"replicas": {"type": "integer"}}}
            }
        })
    }

    fn ok_spec() -> Value {
        json!({"apiVersion": "stable.example.com/v1", "kind": "CronTab",
               "metadata": {"name": "x", "whatever": {"not": "validated"}},
               "spec": {"cronSpec": "* * * * */5", "image": "nginx", "replicas": 3}})
    }

    fn with_spec(field: &str, value: Value) -> Value {
        let mut o = ok_spec();
        o["spec"][field] = value;
        o
    }

    #[test]
    fn crontab_schema_is_structural() {
        assert_eq!(check_structural(&crontab()), Vec::<String>::new());
    }

    #[test]
    fn valid_object_passes() {
        assert_eq!(validate(&crontab(), &ok_spec()), vec![]);
    }

    #[test]
    fn validation_table() {
        let cases: Vec<(Value, &str, &str, &str)> = vec![
            (
                with_spec("replicas", json!("three")),
                "spec.replicas",
                REASON_TYPE_INVALID,
                r#"Invalid value: "string": spec.replicas in body must be of type integer: "string""#,
            ),
            (
                with_spec("replicas", json!(11)),
                "spec.replicas",
                REASON_INVALID,
                "Invalid value: 11: spec.replicas in body should be less than or equal to 10",
            ),
            (
                with_spec("replicas", json!(0)),
                "spec.replicas",
                REASON_INVALID,
                "Invalid value: 0: spec.replicas in body should be greater than or equal to 1",
            ),
            (
                with_spec("replicas", json!(2.5)),
                "spec.replicas",
                REASON_TYPE_INVALID,
                r#"Invalid value: "number": spec.replicas in body must be of type integer: "number""#,
            ),
            (
                with_spec("cronSpec", json!("every minute")),
                "spec.cronSpec",
                REASON_INVALID,
                r#"Invalid value: "every minute": spec.cronSpec in body should match '^(\d+|\*)(/\d+)?(\s+(\d+|\*)(/\d+)?){4}$'"#,
            ),
            (
                with_spec("policy", json!("Sometimes")),
                "spec.policy",
                REASON_NOT_SUPPORTED,
                r#"Unsupported value: "Sometimes": supported values: "Allow", "Forbid", "Replace""#,
            ),
            (
                with_spec("image", json!("a-very-long-image-name-indeed")),
                "spec.image",
                REASON_TOO_LONG,
                "Too long: may not be more than 20 bytes",
            ),
            (
                with_spec("image", json!("a")),
                "spec.image",
                REASON_INVALID,
                r#"Invalid value: "a": spec.image in body should be at least 2 chars long"#,
            ),
            (
                with_spec("tags", json!(["a", "b", "c"])),
                "spec.tags",
                REASON_TOO_MANY,
                "Too many: 3: must have at most 2 items",
            ),
            (
                with_spec("tags", json!([])),
                "spec.tags",
                REASON_INVALID,
                "Invalid value: 0: spec.tags in body should have at least 1 items",
            ),
            (
                with_spec("tags", json!(["a", 5])),
                "spec.tags[1]",
                REASON_TYPE_INVALID,
                r#"Invalid value: "integer": spec.tags[1] in body must be of type string: "integer""#,
            ),
            (
                with_spec("labels", json!({"a": true})),
                "spec.labels.a",
                REASON_TYPE_INVALID,
                r#"Invalid value: "boolean": spec.labels.a in body must be of type string: "boolean""#,
            ),
            (
                with_spec("port", json!(true)),
                "spec.port",
                REASON_TYPE_INVALID,
                r#"Invalid value: "boolean": spec.port in body must be of type integer,string: "boolean""#,
            ),
            (
                with_spec("ratio", json!(1.5)),
                "spec.ratio",
                REASON_INVALID,
                "Invalid value: 1.5: spec.ratio in body should be less than 1.5",
            ),
            (
                with_spec("ratio", json!(0.7)),
                "spec.ratio",
                REASON_INVALID,
                "Invalid value: 0.7: spec.ratio in body should be a multiple of 0.5",
            ),
            (
                with_spec("startAt", json!("yesterday")),
                "spec.startAt",
                REASON_TYPE_INVALID,
                r#"Invalid value: "yesterday": spec.startAt in body must be of type date-time: "yesterday""#,
            ),
            (
                with_spec("image", Value::Null),
                "spec.image",
                REASON_TYPE_INVALID,
                r#"Invalid value: "null": spec.image in body must be of type string: "null""#,
            ),
            (
                with_spec(
                    "ports",
                    json!([{"name": "a"}, {"name": "a", "protocol": "UDP"}]),
                ),
                "spec.ports[1]",
                REASON_DUPLICATE,
                r#"Duplicate value: {"name":"a"}"#,
            ),
            (
                with_spec("ports", json!([{"protocol": "UDP"}])),
                "spec.ports[0].name",
                REASON_REQUIRED,
                "Required value",
            ),
            (
                with_spec("template", json!({"kind": "Pod"})),
                "spec.template.apiVersion",
                REASON_REQUIRED,
                "Required value: must not be empty",
            ),
            (
                {
                    let mut o = ok_spec();
                    o["spec"].as_object_mut().map(|m| m.remove("cronSpec"));
                    o
                },
                "spec.cronSpec",
                REASON_REQUIRED,
                "Required value",
            ),
            (
                json!({"apiVersion": "stable.example.com/v1", "kind": "CronTab", "spec": "oops"}),
                "spec",
                REASON_TYPE_INVALID,
                r#"Invalid value: "string": spec in body must be of type object: "string""#,
            ),
        ];
        for (obj, field, reason, message) in cases {
            let errs = validate(&crontab(), &obj);
            assert_eq!(
                errs,
                vec![(field.to_string(), reason.to_string(), message.to_string())],
                "object {obj}"
            );
        }
    }

    #[test]
    fn nullable_and_preserved_values_pass() {
        let mut o = with_spec("note", Value::Null);
        o["spec"]["extra"] = json!({"anything": [1, {"goes": true}]});
        o["spec"]["template"] = json!({"apiVersion": "v1", "kind": "Pod", "spec": {"x": 1}});
        o["spec"]["port"] = json!("http");
        o["spec"]["startAt"] = json!("2024-01-02T03:04:05Z");
        o["spec"]["ratio"] = json!(1.0);
        assert_eq!(validate(&crontab(), &o), vec![]);
    }

    #[test]
    fn junctors_validate_values() {
        let schema = json!({"type": "object", "properties": {
            "a": {"type": "string", "anyOf": [{"pattern": "^x"}, {"maxLength": 1}]},
            "b": {"type": "integer", "not": {"minimum": 5}},
            "c": {"type": "integer", "oneOf": [{"minimum": 1}, {"maximum": 3}]},
            "d": {"type": "integer", "allOf": [{"minimum": 1}, {"maximum": 3}]},
        }});
        assert!(validate(&schema, &json!({"a": "xyz", "b": 4, "c": 0, "d": 2})).is_empty());
        let errs = validate(&schema, &json!({"a": "abc"}));
        assert_eq!(
            errs[0].2,
            r#"Invalid value: "": "a" must validate at least one schema (anyOf)"#
        );
        let errs = validate(&schema, &json!({"b": 7}));
        assert_eq!(
            errs[0].2,
            r#"Invalid value: "": "b" must not validate the schema (not)"#
        );
        let errs = validate(&schema, &json!({"c": 2}));
        assert_eq!(
            errs[0].2,
            r#"Invalid value: "": "c" must validate one and only one schema (oneOf). Found 2 valid alternatives"#
        );
        let errs = validate(&schema, &json!({"d": 9}));
        assert!(
            errs.iter()
                .any(|e| e.2.contains("should be less than or equal to 3"))
        );
        assert!(
            errs.iter()
                .any(|e| e.2.contains("must validate all the schemas (allOf)"))
        );
    }

    #[test]
    fn additional_properties_false_forbids_keys() {
        let schema = json!({"type": "object", "properties": {
            "m": {"type": "object", "additionalProperties": false}}});
        let errs = validate(&schema, &json!({"m": {"k": 1}}));
        assert_eq!(
            errs,
            vec![(
                "m".into(),
                REASON_INVALID.into(),
                r#"Invalid value: "k": m.k in body is a forbidden property"#.into()
            )]
        );
    }

    #[test]
    fn prune_table() {
        let cases: Vec<(Value, Value, Vec<&str>)> = vec![
            (
                json!({"apiVersion": "a/v1", "kind": "CronTab", "metadata": {"name": "x", "bogus": 1},
                       "spec": {"cronSpec": "x", "foo": 1, "tags": ["a"], "ports": [{"name": "a", "junk": true}]},
                       "top": 2}),
                json!({"apiVersion": "a/v1", "kind": "CronTab", "metadata": {"name": "x"},
                       "spec": {"cronSpec": "x", "tags": ["a"], "ports": [{"name": "a"}]}}),
                vec!["metadata.bogus", "spec.foo", "spec.ports[0].junk", "top"],
            ),
            (
                json!({"spec": {"extra": {"x": {"y": 1}}, "labels": {"a": "b"},
                                "template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "zzz": 1}, "spec": {"q": 1}}}}),
                json!({"spec": {"extra": {"x": {"y": 1}}, "labels": {"a": "b"},
                                "template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"q": 1}}}}),
                vec!["spec.template.metadata.zzz"],
            ),
            (
                json!({"status": {"replicas": 1, "ready": 1}}),
                json!({"status": {"replicas": 1}}),
                vec!["status.ready"],
            ),
        ];
        for (mut obj, want, paths) in cases {
            let got = prune(&crontab(), &mut obj);
            assert_eq!(obj, want);
            assert_eq!(got, paths);
        }
    }

    #[test]
    fn defaults_table() {
        let cases: Vec<(Value, Value)> = vec![
            (
                json!({"spec": {"cronSpec": "x"}}),
                json!({"spec": {"cronSpec": "x", "replicas": 1, "strategy": {"type": "Rolling", "maxSurge": 1}}}),
            ),
            (
                json!({"spec": {"cronSpec": "x", "replicas": null, "image": null, "note": null,
                                "strategy": {"type": "Recreate"}}}),
                json!({"spec": {"cronSpec": "x", "replicas": 1, "note": null,
                                "strategy": {"type": "Recreate", "maxSurge": 1}}}),
            ),
            (
                json!({"spec": {"cronSpec": "x", "replicas": 5, "ports": [{"name": "a"}, {"name": "b", "protocol": "UDP"}],
                                "strategy": {"type": "Recreate", "maxSurge": 0}}}),
                json!({"spec": {"cronSpec": "x", "replicas": 5, "ports": [{"name": "a", "protocol": "TCP"}, {"name": "b", "protocol": "UDP"}],
                                "strategy": {"type": "Recreate", "maxSurge": 0}}}),
            ),
            (
                json!({"metadata": {"name": "a"}}),
                json!({"metadata": {"name": "a"}}),
            ),
        ];
        for (mut obj, want) in cases {
            apply_defaults(&crontab(), &mut obj);
            assert_eq!(obj, want);
        }
    }

    #[test]
    fn structural_violations_table() {
        let cases: Vec<(Value, Vec<&str>)> = vec![
            (
                json!({"type": "object", "properties": {"spec": {"properties": {"a": {"type": "string"}}}}}),
                vec![
                    "properties[spec].type: Required value: must not be empty for specified object fields",
                ],
            ),
            (
                json!({"properties": {}}),
                vec!["type: Required value: must not be empty at the root"],
            ),
            (
                json!({"type": "object", "properties": {"l": {"type": "array", "items": {}}}}),
                vec![
                    "properties[l].items.type: Required value: must not be empty for specified array items",
                ],
            ),
            (
                json!({"type": "object", "properties": {"l": {"type": "array"}}}),
                vec!["properties[l].items: Required value: must be specified"],
            ),
            (
                json!({"type": "object", "properties": {"spec": {"type": "object",
                    "properties": {"a": {"type": "string"}}, "additionalProperties": {"type": "string"}}}}),
                vec![
                    "properties[spec].additionalProperties: Forbidden: additionalProperties and properties are mutual exclusive",
                ],
            ),
            (
                json!({"type": "object", "properties": {"spec": {"type": "object",
                    "properties": {"a": {"type": "string"}}, "additionalProperties": false}}}),
                vec![
                    "properties[spec].additionalProperties: Forbidden: additionalProperties and properties are mutual exclusive",
                ],
            ),
            (
                json!({"type": "object", "properties": {"s": {"$ref": "#/definitions/x", "type": "object"}}}),
                vec!["properties[s].$ref: Forbidden: $ref is not supported"],
            ),
            (
                json!({"type": "object", "properties": {"s": {"type": "string", "uniqueItems": true}}}),
                vec![
                    "properties[s].uniqueItems: Forbidden: uniqueItems cannot be set to true since the runtime complexity becomes quadratic",
                ],
            ),
            (
                json!({"type": "object", "properties": {"s": {"type": "object", "x-kubernetes-preserve-unknown-fields": false}}}),
                vec![
                    "properties[s].x-kubernetes-preserve-unknown-fields: Invalid value: false: must be true or undefined",
                ],
            ),
            (
                json!({"type": "object", "properties": {"s": {"type": "string", "anyOf": [{"type": "string"}]}}}),
                vec!["properties[s].anyOf[0].type: Forbidden: must be empty to be structural"],
            ),
            (
                json!({"type": "object", "properties": {"s": {"type": "object", "anyOf": [{"properties": {"x": {"minimum": 1}}}]}}}),
                vec![
                    "properties[s].properties[x]: Required value: because it is defined in properties[s].anyOf[0].properties[x]",
                ],
            ),
            (
                json!({"type": "object", "properties": {"p": {"x-kubernetes-int-or-string": true,
                    "anyOf": [{"type": "integer"}, {"type": "string"}]}}}),
                vec![],
            ),
            (
                json!({"type": "object", "properties": {"x": {"type": "object", "x-kubernetes-embedded-resource": true}}}),
                vec![
                    "properties[x].properties: Required value: must not be empty if x-kubernetes-embedded-resource is true without x-kubernetes-preserve-unknown-fields",
                ],
            ),
            (
                json!({"type": "object", "properties": {"metadata": {"type": "object", "properties": {"labels": {"type": "object"}}}}}),
                vec![
                    "properties[metadata]: Forbidden: must not specify anything other than name and generateName, but metadata is implicitly specified",
                ],
            ),
            (
                json!({"type": "object", "properties": {"metadata": {"type": "object", "properties": {"name": {"type": "string", "maxLength": 10}}}}}),
                vec![],
            ),
            (
                json!({"type": "object", "additionalProperties": {"type": "string"}}),
                vec!["additionalProperties: Forbidden: must not be used at the root"],
            ),
            (
                json!({"type": "object", "properties": {"r": {"type": "integer", "maximum": 3, "default": 5}}}),
                vec![
                    "properties[r].default: Invalid value: 5: in body should be less than or equal to 3",
                ],
            ),
            (
                json!({"type": "object", "properties": {"r": {"type": "object", "default": {"zz": 1}, "properties": {"a": {"type": "string"}}}}}),
                vec![
                    r#"properties[r].default: Invalid value: {"zz":1}: must not have unknown fields"#,
                ],
            ),
            (
                json!({"type": "object", "properties": {"s": {"type": "string", "pattern": "(unclosed"}}}),
                vec![
                    "properties[s].pattern: Invalid value: \"(unclosed\": must be a valid regular expression, but isn't: error: unclosed group",
                ],
            ),
            (
                json!({"type": "object", "properties": {"l": {"type": "array", "x-kubernetes-list-type": "map", "items": {"type": "object", "properties": {"n": {"type": "string"}}}}}}),
                vec![
                    "properties[l].x-kubernetes-list-map-keys: Required value: must not be empty if x-kubernetes-list-type is map",
                ],
            ),
            (
                json!({"type": "object", "properties": {"s": {"type": "null"}}}),
                vec![
                    r#"properties[s].type: Unsupported value: "null": supported values: "array", "boolean", "integer", "number", "object", "string""#,
                    "properties[s].type: Forbidden: type cannot be set to null, use nullable as an alternative",
                ],
            ),
        ];
        for (schema, want) in cases {
            assert_eq!(check_structural(&schema), want, "schema {schema}");
        }
    }

    #[test]
    fn causes_carry_the_base_path() {
        let schema = json!({"type": "object", "properties": {"spec": {}}});
        assert_eq!(
            check_structural_causes("spec.versions[0].schema.openAPIV3Schema", &schema),
            vec![(
                "spec.versions[0].schema.openAPIV3Schema.properties[spec].type".to_string(),
                "Required value: must not be empty for specified object fields".to_string()
            )]
        );
    }

    #[test]
    fn go_formatting() {
        assert_eq!(go_float(10.0), "10");
        assert_eq!(go_float(1.5), "1.5");
        assert_eq!(go_float(1e21), "1e+21");
        assert_eq!(go_value(&json!("a\"b")), r#""a\"b""#);
    }

    #[test]
    fn formats() {
        for (f, good, bad) in [
            ("date-time", "2024-01-02T03:04:05.123+02:00", "2024-01-02"),
            ("date", "2024-01-02", "2024-13-02"),
            ("byte", "aGVsbG8=", "!!"),
            ("uuid", "123e4567-e89b-12d3-a456-426614174000", "123e4567"),
            ("ipv4", "10.0.0.1", "10.0.0.256"),
            ("ipv6", "::1", "1::2::3"),
            ("cidr", "10.0.0.0/8", "10.0.0.0/33"),
            ("mac", "00:11:22:33:44:55", "00:11:22"),
            ("hostname", "a.b-c.example", "-bad-"),
            ("email", "a@b.c", "nope"),
            ("duration", "1h30m", "forever"),
            ("uri", "https://x.y/z", "not a uri"),
            ("int32", "anything", "anything"),
        ] {
            assert!(format_ok(f, good), "{f} {good}");
            if f != "int32" {
                assert!(!format_ok(f, bad), "{f} {bad}");
            }
        }
    }

    #[test]
    fn deep_nesting_does_not_overflow() {
        let mut schema = json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true});
        let mut obj = json!({});
        for _ in 0..300 {
            obj = json!({"a": obj});
        }
        assert!(validate(&schema, &obj).is_empty());
        apply_defaults(&schema, &mut obj);
        schema = json!({"type": "object", "properties": {"a": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}});
        assert!(validate(&schema, &obj).is_empty());
    }
}
