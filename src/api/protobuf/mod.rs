//! Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`)
//! turned into the JSON object the same Go object marshals to, so the API
//! server can treat them like any JSON body. kubectl ≥ 1.32 sends built-in
//! kinds this way (`create configmap/secret/deployment/…`, `create token`,
//! `auth can-i`, drain's Eviction) and never retries in JSON.
//!
//! A body is `k8s\0` followed by a `runtime.Unknown` message whose `raw` field
//! holds the object's own message. Field numbers, wire kinds and the JSON
//! facts protobuf cannot carry (names, pointer-ness, `omitempty`, inline) come
//! from the generated table in `schema.rs` (see `tools/gen_proto_schema.py`).
//! The output follows Go's `encoding/json`: struct field order, sorted map
//! keys, `null` for a zero `metav1.Time`, `{}` for an empty non-pointer
//! struct, zero values kept for pointer fields.
//!
//! This module only decodes; it must never panic or run unbounded on hostile
//! input (lengths are checked, nesting is capped at 100, output size is
//! bounded by the body size). It does not encode, validate or default.

mod decode;
mod model;
mod schema;
mod wire;

#[cfg(test)]
mod tests;

/// The media type of Kubernetes protobuf bodies.
pub const PROTOBUF_CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// Why a protobuf body could not be turned into JSON; every variant is a
/// client error (400, or 415 for `UnknownKind`/`UnsupportedEncoding`).
#[derive(Debug, thiserror::Error)]
pub enum ProtobufError {
    #[error("protobuf body does not start with the Kubernetes magic prefix \"k8s\\x00\"")]
    BadMagic,
    #[error("protobuf body is truncated")]
    Truncated,
    #[error("protobuf varint is longer than 64 bits")]
    VarintOverflow,
    #[error("protobuf field number {0} is invalid")]
    InvalidTag(u64),
    #[error("protobuf wire type {0} (group) is not supported")]
    UnsupportedWireType(u8),
    #[error("protobuf field {tag} ({field}) of {message} has wire type {got}, expected {want}")]
    WireType {
        message: &'static str,
        field: String,
        tag: u32,
        got: u8,
        want: u8,
    },
    #[error("no protobuf decoding is known for kind {kind:?} in {api_version:?}")]
    UnknownKind { api_version: String, kind: String },
    #[error("protobuf body names no apiVersion and kind")]
    MissingTypeMeta,
    #[error("protobuf contentEncoding {0:?} is not supported")]
    UnsupportedEncoding(String),
    #[error("protobuf messages are nested deeper than {0} levels")]
    TooDeep(usize),
    #[error("protobuf body expands to too large an object")]
    TooLarge,
    #[error("invalid value in {message}: {reason}")]
    InvalidValue {
        message: &'static str,
        reason: String,
    },
    #[error("protobuf schema table has no message {0}")]
    Schema(u16),
}

/// Decodes a protobuf body into the JSON object with `kind` and `apiVersion`
/// set from the body's typeMeta, or from `expected` (apiVersion, kind) where
/// the typeMeta leaves them empty (client-go sometimes does).
pub fn decode_to_json(
    body: &[u8],
    expected: Option<(&str, &str)>,
) -> Result<serde_json::Value, ProtobufError> {
    decode::Decoder::new(body.len()).envelope(body, expected, 0)
}

/// Whether bodies of this kind can be decoded (`apiVersion` like `apps/v1`).
pub fn is_supported_kind(api_version: &str, kind: &str) -> bool {
    decode::kind_index(api_version, kind).is_some()
}
