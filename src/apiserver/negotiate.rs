//! Content negotiation: decoding request bodies (JSON, YAML, protobuf) and
//! choosing the response representation from `Accept` (plain JSON, `Table`,
//! `PartialObjectMetadata`). Also renders Tables and partial metadata.
//!
//! Invariant: a body that cannot be decoded is a 4xx `ApiError`, never a panic.

use axum::http::HeaderMap;
use serde_json::{Value, json};

use super::error::{ApiError, ApiResult};
use crate::api::kinds::Resource;
use crate::api::{protobuf, table};

/// How the client wants objects back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    Json,
    Table(IncludeObject),
    PartialMetadata,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IncludeObject {
    None,
    Metadata,
    Object,
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// Decode a request body into a JSON object according to `Content-Type`.
/// `expected` is (apiVersion, kind) for protobuf bodies that omit typeMeta.
pub fn decode_body(
    headers: &HeaderMap,
    body: &[u8],
    expected: Option<(&str, &str)>,
) -> ApiResult<Value> {
    let ct = header(headers, "content-type");
    let base = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let value: Value = match base.as_str() {
        "" | "application/json" | "*/*" => {
            if body.iter().all(u8::is_ascii_whitespace) {
                return Err(ApiError::bad_request("the body of the request is empty"));
            }
            serde_json::from_slice(body).map_err(|e| {
                ApiError::bad_request(format!("couldn't get version/kind; json parse error: {e}"))
            })?
        }
        "application/yaml" | "application/x-yaml" | "text/yaml" => serde_yaml_ng::from_slice(body)
            .map_err(|e| {
                ApiError::bad_request(format!("error converting YAML to JSON: yaml: {e}"))
            })?,
        protobuf::PROTOBUF_CONTENT_TYPE => protobuf::decode_to_json(body, expected)
            .map_err(|e| ApiError::bad_request(format!("failed to decode protobuf body: {e}")))?,
        other => return Err(ApiError::unsupported_media_type(other)),
    };
    if !value.is_object() {
        return Err(ApiError::bad_request(
            "couldn't get version/kind; json parse error: expected an object",
        ));
    }
    Ok(value)
}

/// Dotted paths of keys that appear twice in the same JSON object
/// (`fieldValidation=Strict` rejects them like upstream).
pub fn json_duplicate_fields(body: &[u8]) -> Vec<String> {
    use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
    struct Walk<'a> {
        path: String,
        out: &'a mut Vec<String>,
        depth: usize,
    }
    impl<'de> DeserializeSeed<'de> for Walk<'_> {
        type Value = ();
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_any(self)
        }
    }
    impl<'de> Visitor<'de> for Walk<'_> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_bool<E>(self, _: bool) -> Result<(), E> {
            Ok(())
        }
        fn visit_i64<E>(self, _: i64) -> Result<(), E> {
            Ok(())
        }
        fn visit_u64<E>(self, _: u64) -> Result<(), E> {
            Ok(())
        }
        fn visit_f64<E>(self, _: f64) -> Result<(), E> {
            Ok(())
        }
        fn visit_str<E>(self, _: &str) -> Result<(), E> {
            Ok(())
        }
        fn visit_unit<E>(self) -> Result<(), E> {
            Ok(())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            let mut i = 0;
            while seq
                .next_element_seed(Walk {
                    path: format!("{}[{i}]", self.path),
                    out: &mut *self.out,
                    depth: self.depth + 1,
                })?
                .is_some()
            {
                i += 1;
            }
            Ok(())
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            let mut seen = std::collections::HashSet::new();
            while let Some(key) = map.next_key::<String>()? {
                let path = if self.path.is_empty() {
                    key.clone()
                } else {
                    format!("{}.{key}", self.path)
                };
                if !seen.insert(key) {
                    self.out.push(path.clone());
                }
                if self.depth > 100 {
                    map.next_value::<serde::de::IgnoredAny>()?;
                } else {
                    map.next_value_seed(Walk {
                        path,
                        out: &mut *self.out,
                        depth: self.depth + 1,
                    })?;
                }
            }
            Ok(())
        }
    }
    let mut out = Vec::new();
    let mut de = serde_json::Deserializer::from_slice(body);
    let _ = Walk {
        path: String::new(),
        out: &mut out,
        depth: 0,
    }
    .deserialize(&mut de);
    out
}

/// Pick the representation from `Accept` (first acceptable media type wins).
pub fn output(headers: &HeaderMap, include_object: Option<&str>) -> ApiResult<Output> {
    let accept = header(headers, "accept");
    if accept.trim().is_empty() {
        return Ok(Output::Json);
    }
    let include = match include_object {
        Some("None") => IncludeObject::None,
        Some("Object") => IncludeObject::Object,
        _ => IncludeObject::Metadata,
    };
    let mut saw_protobuf = false;
    for part in accept.split(',') {
        let mut params = part.split(';').map(str::trim);
        let media = params.next().unwrap_or("").to_ascii_lowercase();
        let mut as_ = None;
        let mut g = None;
        for p in params {
            if let Some((k, v)) = p.split_once('=') {
                match k.trim() {
                    "as" => as_ = Some(v.trim().to_string()),
                    "g" => g = Some(v.trim().to_string()),
                    _ => {}
                }
            }
        }
        match media.as_str() {
            "application/json" | "*/*" | "application/*" | "application/yaml" => {}
            "application/vnd.kubernetes.protobuf" => {
                saw_protobuf = true;
                continue;
            }
            _ => continue,
        }
        match (as_.as_deref(), g.as_deref()) {
            (None, _) => return Ok(Output::Json),
            (Some("Table"), Some("meta.k8s.io")) => return Ok(Output::Table(include)),
            (Some("PartialObjectMetadata"), Some("meta.k8s.io"))
            | (Some("PartialObjectMetadataList"), Some("meta.k8s.io")) => {
                return Ok(Output::PartialMetadata);
            }
            _ => continue,
        }
    }
    if saw_protobuf {
        // clients asking protobuf-only still understand JSON
        return Ok(Output::Json);
    }
    Err(ApiError::not_acceptable(format!(
        "only the following media types are accepted: application/json, application/yaml, application/vnd.kubernetes.protobuf (got {accept:?})"
    )))
}

/// Table column definitions for a resource.
pub fn table_columns(res: &Resource) -> Vec<Value> {
    let cols = if res.custom {
        match &res.printer_columns {
            Some(pc) => table::crd_columns(pc),
            None => table::crd_columns(&json!([])),
        }
    } else {
        table::columns(&res.group, &res.kind).unwrap_or_else(|| table::crd_columns(&json!([])))
    };
    cols.iter()
        .map(|c| {
            json!({
                "name": c.name,
                "type": c.type_,
                "format": c.format,
                "description": c.description,
                "priority": c.priority,
            })
        })
        .collect()
}

/// One Table row for an object (consumed: its metadata moves into the row).
pub fn table_row(res: &Resource, obj: Value, include: IncludeObject) -> Value {
    let now = chrono::Utc::now();
    let cells = if res.custom {
        match &res.printer_columns {
            Some(pc) => table::crd_cells(pc, &obj, now),
            None => table::crd_cells(&json!([]), &obj, now),
        }
    } else if table::columns(&res.group, &res.kind).is_some() {
        table::cells(&res.group, &res.kind, &obj, now)
    } else {
        table::crd_cells(&json!([]), &obj, now)
    };
    let mut row = serde_json::Map::new();
    row.insert("cells".into(), Value::Array(cells));
    match include {
        IncludeObject::None => {}
        IncludeObject::Metadata => {
            row.insert("object".into(), partial_metadata_owned(obj));
        }
        IncludeObject::Object => {
            row.insert("object".into(), obj);
        }
    }
    Value::Object(row)
}

/// A Table of objects.
pub fn table(
    res: &Resource,
    objs: Vec<Value>,
    include: IncludeObject,
    list_meta: Value,
    with_columns: bool,
) -> Value {
    let rows: Vec<Value> = objs
        .into_iter()
        .map(|o| table_row(res, o, include))
        .collect();
    let mut t = json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
    });
    if with_columns {
        t["columnDefinitions"] = Value::Array(table_columns(res));
    } else {
        t["columnDefinitions"] = Value::Null;
    }
    t["rows"] = Value::Array(rows);
    t
}

/// One object in the negotiated representation (a one-row Table, partial
/// metadata, or the object itself).
pub fn render(res: &Resource, obj: Value, out: Output) -> Value {
    match out {
        Output::Json => obj,
        Output::PartialMetadata => partial_metadata_owned(obj),
        Output::Table(include) => {
            let rv = obj
                .pointer("/metadata/resourceVersion")
                .cloned()
                .unwrap_or(json!(""));
            table(
                res,
                vec![obj],
                include,
                json!({ "resourceVersion": rv }),
                true,
            )
        }
    }
}

/// `PartialObjectMetadata` made from an object it consumes.
pub fn partial_metadata_owned(mut obj: Value) -> Value {
    let metadata = obj
        .get_mut("metadata")
        .map(Value::take)
        .unwrap_or_else(|| json!({}));
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn h(accept: &str) -> HeaderMap {
        let mut m = HeaderMap::new();
        m.insert("accept", HeaderValue::from_str(accept).unwrap());
        m
    }

    #[test]
    fn negotiation() {
        assert_eq!(output(&h(""), None).unwrap(), Output::Json);
        assert_eq!(
            output(&h("application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"), None).unwrap(),
            Output::Table(IncludeObject::Metadata)
        );
        assert_eq!(
            output(&h("application/vnd.kubernetes.protobuf;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1;g=meta.k8s.io,application/json"), Some("Object")).unwrap(),
            Output::Table(IncludeObject::Object)
        );
        assert_eq!(
            output(&h("application/vnd.kubernetes.protobuf, */*"), None).unwrap(),
            Output::Json
        );
        assert!(output(&h("text/html"), None).is_err());
    }

    #[test]
    fn duplicates() {
        assert_eq!(
            json_duplicate_fields(br#"{"metadata":{"name":"a","name":"b"},"x":[{"k":1,"k":2}]}"#),
            vec!["metadata.name", "x[0].k"]
        );
        assert!(json_duplicate_fields(br#"{"a":{"b":1},"c":{"b":2}}"#).is_empty());
    }

    #[test]
    fn bodies() {
        let mut hm = HeaderMap::new();
        assert!(decode_body(&hm, b"{\"a\":1}", None).is_ok());
        assert_eq!(decode_body(&hm, b"{", None).unwrap_err().code, 400);
        assert_eq!(decode_body(&hm, b"[1]", None).unwrap_err().code, 400);
        hm.insert("content-type", HeaderValue::from_static("application/yaml"));
        assert_eq!(decode_body(&hm, b"a: 1\n", None).unwrap()["a"], 1);
        assert_eq!(decode_body(&hm, b"a: [", None).unwrap_err().code, 400);
        hm.insert("content-type", HeaderValue::from_static("text/plain"));
        assert_eq!(decode_body(&hm, b"x", None).unwrap_err().code, 415);
    }
}

/// Fuzz target over request decoding: arbitrary bytes under every content
/// type, and arbitrary `Accept` headers, never panic and never yield a 5xx.
#[cfg(test)]
mod fuzz {
    use super::*;
    use axum::http::HeaderValue;
    use proptest::prelude::*;

    const TYPES: &[&str] = &[
        "",
        "application/json",
        "application/yaml",
        "application/vnd.kubernetes.protobuf",
        "application/merge-patch+json",
        "text/plain",
    ];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn request_decoding_never_panics(body in proptest::collection::vec(any::<u8>(), 0..512), ct in 0usize..TYPES.len()) {
            let mut h = HeaderMap::new();
            if let Ok(v) = HeaderValue::from_str(TYPES[ct]) {
                h.insert("content-type", v);
            }
            if let Err(e) = decode_body(&h, &body, Some(("v1", "ConfigMap"))) {
                prop_assert!(e.code >= 400 && e.code < 500, "{e}");
            }
            let _ = json_duplicate_fields(&body);
        }

        #[test]
        fn json_like_bodies_never_panic(s in "[{}\\[\\]\":,a-z0-9 ]{0,200}") {
            let h = HeaderMap::new();
            if let Err(e) = decode_body(&h, s.as_bytes(), None) {
                prop_assert!(e.code >= 400 && e.code < 500);
            }
        }

        #[test]
        fn accept_negotiation_never_panics(accept in "[a-z/;=,.*+ A-Z0-9]{0,120}") {
            let mut h = HeaderMap::new();
            if let Ok(v) = HeaderValue::from_str(&accept) {
                h.insert("accept", v);
            }
            if let Err(e) = output(&h, None) {
                prop_assert_eq!(e.code, 406);
            }
        }

        #[test]
        fn selectors_never_panic(s in "[a-z0-9=!,()<> .-/]{0,80}") {
            let _ = crate::api::selector::LabelSelector::parse(&s);
            let _ = crate::api::selector::FieldSelector::parse(&s, "", "Pod");
        }
    }
}
