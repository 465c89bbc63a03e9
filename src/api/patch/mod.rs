//! Pure patch and apply logic for API objects: RFC 6902 JSON patch, RFC 7386
//! merge patch, Kubernetes strategic merge patch and server-side apply with
//! `metadata.managedFields` (fieldsV1). Everything here is a function over
//! `serde_json::Value`s (key order preserved): no I/O, no clock (callers pass
//! `now`), no HTTP, no storage, and no knowledge of kinds beyond the list merge
//! keys in [`BuiltinMergeSchema`]. It must never panic on any input: a malformed
//! patch is a typed error ([`PatchError`], [`ApplyError`]) that the API layer
//! turns into a 400 / 413 / 415 / 422 `Status`. Defaulting, validation,
//! preconditions (resourceVersion, uid) and status/spec resets stay with the
//! caller's registry strategy.

mod apply;
mod fieldset;
mod json;
mod managed;
mod schema;
mod strategic;

#[cfg(test)]
mod fuzz;

pub use apply::{
    ApplyError, ApplyOptions, Conflict, apply, conflict_message, fields_v1_of, record_update,
    server_side_apply,
};
pub use json::{MAX_JSON_PATCH_OPERATIONS, json_patch, merge_patch};
pub use schema::{BuiltinMergeSchema, ListMapKey, ListStrategy, MergeSchema, is_builtin_group};
pub use strategic::{STRATEGIC_MERGE_UNSUPPORTED, strategic_merge_allowed, strategic_merge_patch};

use serde_json::Value;

/// Why a patch was refused. Each variant names the HTTP status the caller
/// answers with; the message is meant for the `Status.message` as is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    /// 400 `BadRequest`: the patch body cannot be parsed or is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// 422 (generic server response with code 422, like upstream): the patch
    /// is well formed but does not apply to this object.
    #[error("{0}")]
    Unprocessable(String),
    /// 415 `UnsupportedMediaType`: e.g. strategic merge patch on a custom resource.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 413 `RequestEntityTooLarge`: too many JSON patch operations.
    #[error("{0}")]
    RequestEntityTooLarge(String),
}

/// Deepest nesting (objects and arrays) a patch result may have: serde_json
/// refuses to parse anything deeper, so a deeper stored object could never be
/// read back.
pub const MAX_RESULT_DEPTH: usize = 127;

/// Deepest input document the recursive algorithms here accept; far above
/// anything that parses ([`MAX_RESULT_DEPTH`]) and far below stack limits.
pub(crate) const MAX_INPUT_DEPTH: usize = 512;

/// Nesting depth of `v` (a scalar is 0, `{}` and `[]` are 1), computed
/// without recursion; stops counting once `limit` is exceeded.
pub(crate) fn depth_exceeds(v: &Value, limit: usize) -> bool {
    let mut stack: Vec<(&Value, usize)> = vec![(v, 0)];
    while let Some((value, depth)) = stack.pop() {
        match value {
            Value::Object(map) => {
                if depth + 1 > limit {
                    return true;
                }
                stack.extend(map.values().map(|child| (child, depth + 1)));
            }
            Value::Array(items) => {
                if depth + 1 > limit {
                    return true;
                }
                stack.extend(items.iter().map(|child| (child, depth + 1)));
            }
            _ => {}
        }
    }
    false
}

pub(crate) fn check_input_depth(doc: &Value) -> Result<(), PatchError> {
    if depth_exceeds(doc, MAX_INPUT_DEPTH) {
        return Err(PatchError::Unprocessable(format!(
            "the object is nested more than {MAX_INPUT_DEPTH} levels deep"
        )));
    }
    Ok(())
}

/// Every patch result must be an object that can be stored and read back.
pub(crate) fn finish(result: Value) -> Result<Value, PatchError> {
    if !result.is_object() {
        return Err(PatchError::Unprocessable(
            "the patched document is not a JSON object".to_string(),
        ));
    }
    if depth_exceeds(&result, MAX_RESULT_DEPTH) {
        return Err(PatchError::Unprocessable(format!(
            "the patched object is nested more than {MAX_RESULT_DEPTH} levels deep"
        )));
    }
    Ok(result)
}

/// A JSON text for `v` that is the same for equal values whatever their key
/// order: object keys are sorted. Used as a hashable identity for list items
/// and merge-key values.
pub(crate) fn canonical(v: &Value) -> String {
    let mut out = String::new();
    write_canonical(v, &mut out, 0);
    out
}

fn write_canonical(v: &Value, out: &mut String, depth: usize) {
    match v {
        Value::Object(map) if depth < MAX_INPUT_DEPTH => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                if let Some(child) = map.get(key) {
                    write_canonical(child, out, depth + 1);
                }
            }
            out.push('}');
        }
        Value::Array(items) if depth < MAX_INPUT_DEPTH => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out, depth + 1);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn nested(depth: usize) -> Value {
        let mut v = json!(1);
        for _ in 0..depth {
            v = json!([v]);
        }
        v
    }

    #[test]
    fn max_result_depth_matches_what_serde_json_can_parse() {
        let ok = nested(MAX_RESULT_DEPTH).to_string();
        assert!(serde_json::from_str::<Value>(&ok).is_ok());
        let too_deep = nested(MAX_RESULT_DEPTH + 1).to_string();
        assert!(serde_json::from_str::<Value>(&too_deep).is_err());
        assert!(!depth_exceeds(&nested(MAX_RESULT_DEPTH), MAX_RESULT_DEPTH));
        assert!(depth_exceeds(
            &nested(MAX_RESULT_DEPTH + 1),
            MAX_RESULT_DEPTH
        ));
    }

    #[test]
    fn canonical_ignores_key_order() {
        let a = json!({"b": 1, "a": {"y": [1, {"q": 1, "p": 2}], "x": null}});
        let b = json!({"a": {"x": null, "y": [1, {"p": 2, "q": 1}]}, "b": 1});
        assert_eq!(canonical(&a), canonical(&b));
        assert_eq!(canonical(&json!("x")), "\"x\"");
    }
}
