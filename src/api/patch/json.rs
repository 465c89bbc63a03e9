//! RFC 6902 JSON patch and RFC 7386 merge patch over API objects. Parsing of
//! the operations is the `json-patch` crate's; applying them is done here so
//! that object key order is preserved (the crate's `remove` swaps keys) and
//! errors read like the upstream apiserver's (evanphx/json-patch wording).
//! Must not: know about kinds, schemas or HTTP; grow a document without bound
//! (copy sizes are capped); return anything but an object.

use serde_json::{Map, Value};

use super::{PatchError, check_input_depth, finish};
use json_patch::{Patch, PatchOperation};

/// Upstream's cap on the number of operations in one JSON patch (413 beyond).
pub const MAX_JSON_PATCH_OPERATIONS: usize = 10_000;

/// Total bytes that `copy` operations of one patch may add (upstream's
/// `AccumulatedCopySizeLimit` idea): 10,000 copies of a doubling value must
/// not exhaust memory.
const MAX_ACCUMULATED_COPY_BYTES: usize = 4 * 1024 * 1024;

/// Applies an RFC 6902 JSON patch to `doc`. Errors: unparsable patch → 400,
/// too many operations → 413, an operation that does not apply (missing path,
/// failed `test`, bad index) → 422. All-or-nothing: on error `doc` is unchanged.
pub fn json_patch(doc: &Value, patch_bytes: &[u8]) -> Result<Value, PatchError> {
    let raw: Value = serde_json::from_slice(patch_bytes)
        .map_err(|e| PatchError::BadRequest(format!("unable to parse JSON patch: {e}")))?;
    let count = match &raw {
        Value::Array(ops) => ops.len(),
        _ => {
            return Err(PatchError::BadRequest(
                "unable to parse JSON patch: the patch must be a JSON array of operations"
                    .to_string(),
            ));
        }
    };
    if count > MAX_JSON_PATCH_OPERATIONS {
        return Err(PatchError::RequestEntityTooLarge(format!(
            "The allowed number of operations in a JSON patch is {MAX_JSON_PATCH_OPERATIONS}, but found {count}"
        )));
    }
    let patch: Patch = serde_json::from_value(raw)
        .map_err(|e| PatchError::BadRequest(format!("unable to parse JSON patch: {e}")))?;
    check_input_depth(doc)?;

    let mut out = doc.clone();
    let mut copied_bytes = 0usize;
    for op in patch.0.iter() {
        apply_operation(&mut out, op, &mut copied_bytes)?;
    }
    finish(out)
}

fn tokens(pointer: &json_patch::jsonptr::Pointer) -> Vec<String> {
    pointer
        .tokens()
        .map(|token| token.decoded().into_owned())
        .collect()
}

fn unprocessable(message: String) -> PatchError {
    PatchError::Unprocessable(message)
}

fn apply_operation(
    doc: &mut Value,
    op: &PatchOperation,
    copied_bytes: &mut usize,
) -> Result<(), PatchError> {
    match op {
        PatchOperation::Add(add_op) => {
            let path = tokens(&add_op.path);
            add(doc, &path, add_op.value.clone()).map_err(|()| {
                unprocessable(format!(
                    "add operation does not apply: doc is missing path: \"{}\": missing value",
                    add_op.path.as_str()
                ))
            })
        }
        PatchOperation::Remove(remove_op) => {
            let path = tokens(&remove_op.path);
            remove(doc, &path).map(drop).map_err(|()| {
                unprocessable(format!(
                    "remove operation does not apply: doc is missing path: \"{}\": missing value",
                    remove_op.path.as_str()
                ))
            })
        }
        PatchOperation::Replace(replace_op) => {
            let path = tokens(&replace_op.path);
            match get_mut(doc, &path) {
                Some(target) => {
                    *target = replace_op.value.clone();
                    Ok(())
                }
                None => Err(unprocessable(format!(
                    "replace operation does not apply: doc is missing key: {}: missing value",
                    replace_op.path.as_str()
                ))),
            }
        }
        PatchOperation::Move(move_op) => {
            let from = tokens(&move_op.from);
            let path = tokens(&move_op.path);
            if from == path {
                return if get(doc, &from).is_some() {
                    Ok(())
                } else {
                    Err(unprocessable(format!(
                        "move operation does not apply: doc is missing from path: \"{}\": missing value",
                        move_op.from.as_str()
                    )))
                };
            }
            if path.len() > from.len() && path[..from.len()] == from[..] {
                return Err(unprocessable(format!(
                    "move operation does not apply: cannot move \"{}\" into its own child \"{}\"",
                    move_op.from.as_str(),
                    move_op.path.as_str()
                )));
            }
            // Check the destination's parent before removing anything, so a
            // failed move leaves nothing half done (we work on a copy anyway).
            let value = remove(doc, &from).map_err(|()| {
                unprocessable(format!(
                    "move operation does not apply: doc is missing from path: \"{}\": missing value",
                    move_op.from.as_str()
                ))
            })?;
            add(doc, &path, value).map_err(|()| {
                unprocessable(format!(
                    "move operation does not apply: doc is missing destination path: \"{}\": missing value",
                    move_op.path.as_str()
                ))
            })
        }
        PatchOperation::Copy(copy_op) => {
            let from = tokens(&copy_op.from);
            let path = tokens(&copy_op.path);
            let value = get(doc, &from).cloned().ok_or_else(|| {
                unprocessable(format!(
                    "copy operation does not apply: doc is missing from path: \"{}\": missing value",
                    copy_op.from.as_str()
                ))
            })?;
            *copied_bytes = copied_bytes.saturating_add(approximate_size(&value));
            if *copied_bytes > MAX_ACCUMULATED_COPY_BYTES {
                return Err(unprocessable(format!(
                    "Unable to complete the copy, the accumulated size increase of copy is {}, exceeding the limit {MAX_ACCUMULATED_COPY_BYTES}",
                    *copied_bytes
                )));
            }
            add(doc, &path, value).map_err(|()| {
                unprocessable(format!(
                    "copy operation does not apply: doc is missing destination path: \"{}\": missing value",
                    copy_op.path.as_str()
                ))
            })
        }
        PatchOperation::Test(test_op) => {
            let path = tokens(&test_op.path);
            match get(doc, &path) {
                Some(actual) if *actual == test_op.value => Ok(()),
                _ => Err(unprocessable(format!(
                    "testing value {} failed: test failed",
                    test_op.path.as_str()
                ))),
            }
        }
    }
}

/// RFC 6901 array index: "0" or digits without a leading zero. `-` (one past
/// the end) only where `allow_end`.
fn array_index(token: &str, len: usize, allow_end: bool) -> Option<usize> {
    if token == "-" {
        return allow_end.then_some(len);
    }
    let valid = !token.is_empty()
        && token.bytes().all(|b| b.is_ascii_digit())
        && (token == "0" || !token.starts_with('0'));
    if !valid {
        return None;
    }
    let index: usize = token.parse().ok()?;
    let limit = if allow_end { len } else { len.checked_sub(1)? };
    (index <= limit).then_some(index)
}

fn get<'a>(doc: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut current = doc;
    for token in path {
        current = match current {
            Value::Object(map) => map.get(token)?,
            Value::Array(items) => items.get(array_index(token, items.len(), false)?)?,
            _ => return None,
        };
    }
    Some(current)
}

fn get_mut<'a>(doc: &'a mut Value, path: &[String]) -> Option<&'a mut Value> {
    let mut current = doc;
    for token in path {
        current = match current {
            Value::Object(map) => map.get_mut(token)?,
            Value::Array(items) => {
                let index = array_index(token, items.len(), false)?;
                items.get_mut(index)?
            }
            _ => return None,
        };
    }
    Some(current)
}

fn add(doc: &mut Value, path: &[String], value: Value) -> Result<(), ()> {
    let Some((last, parent_path)) = path.split_last() else {
        *doc = value;
        return Ok(());
    };
    match get_mut(doc, parent_path).ok_or(())? {
        Value::Object(map) => {
            // `insert` keeps the position of an existing key.
            map.insert(last.clone(), value);
            Ok(())
        }
        Value::Array(items) => {
            let index = array_index(last, items.len(), true).ok_or(())?;
            items.insert(index, value);
            Ok(())
        }
        _ => Err(()),
    }
}

fn remove(doc: &mut Value, path: &[String]) -> Result<Value, ()> {
    let (last, parent_path) = path.split_last().ok_or(())?;
    match get_mut(doc, parent_path).ok_or(())? {
        Value::Object(map) => map.shift_remove(last).ok_or(()),
        Value::Array(items) => {
            let index = array_index(last, items.len(), false).ok_or(())?;
            Ok(items.remove(index))
        }
        _ => Err(()),
    }
}

/// Roughly the serialized size of `v`, computed without recursion.
fn approximate_size(v: &Value) -> usize {
    let mut total = 0usize;
    let mut stack = vec![v];
    while let Some(value) = stack.pop() {
        total = total.saturating_add(match value {
            Value::Null | Value::Bool(_) => 5,
            Value::Number(_) => 8,
            Value::String(s) => s.len() + 2,
            Value::Array(items) => {
                stack.extend(items.iter());
                2 + items.len()
            }
            Value::Object(map) => {
                stack.extend(map.values());
                2 + map.keys().map(|k| k.len() + 4).sum::<usize>()
            }
        });
    }
    total
}

/// Applies an RFC 7386 JSON merge patch: objects merge recursively, `null`
/// deletes, anything else replaces. The patch must be a JSON object (the
/// result has to stay an API object); otherwise 400.
pub fn merge_patch(doc: &Value, patch_bytes: &[u8]) -> Result<Value, PatchError> {
    let patch: Value = serde_json::from_slice(patch_bytes)
        .map_err(|e| PatchError::BadRequest(format!("unable to parse merge patch: {e}")))?;
    if !patch.is_object() {
        return Err(PatchError::BadRequest(
            "unable to parse merge patch: the patch must be a JSON object".to_string(),
        ));
    }
    check_input_depth(doc)?;
    let mut out = doc.clone();
    merge_into(&mut out, &patch);
    finish(out)
}

/// Recursion depth is bounded by the patch's, which serde_json caps at parse.
fn merge_into(target: &mut Value, patch: &Value) {
    let Value::Object(patch_map) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(target_map) = target {
        for (key, patch_value) in patch_map {
            if patch_value.is_null() {
                target_map.shift_remove(key);
            } else {
                merge_into(
                    target_map.entry(key.clone()).or_insert(Value::Null),
                    patch_value,
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn keys(v: &Value) -> Vec<&str> {
        v.as_object()
            .map(|m| m.keys().map(String::as_str).collect())
            .unwrap_or_default()
    }

    #[test]
    fn json_patch_table() {
        let doc = json!({"metadata": {"name": "a", "labels": {"x": "1", "y": "2", "z": "3"}},
                         "spec": {"replicas": 1, "list": [1, 2, 3]}});
        let cases: Vec<(&str, Value, Result<Value, &str>)> = vec![
            (
                "replace scalar",
                json!([{"op": "replace", "path": "/spec/replicas", "value": 3}]),
                Ok(
                    json!({"metadata": {"name": "a", "labels": {"x": "1", "y": "2", "z": "3"}},
                          "spec": {"replicas": 3, "list": [1, 2, 3]}}),
                ),
            ),
            (
                "add to end of list with -",
                json!([{"op": "add", "path": "/spec/list/-", "value": 4}]),
                Ok(
                    json!({"metadata": {"name": "a", "labels": {"x": "1", "y": "2", "z": "3"}},
                          "spec": {"replicas": 1, "list": [1, 2, 3, 4]}}),
                ),
            ),
            (
                "test then remove",
                json!([{"op": "test", "path": "/spec/replicas", "value": 1},
                       {"op": "remove", "path": "/spec/list/0"}]),
                Ok(
                    json!({"metadata": {"name": "a", "labels": {"x": "1", "y": "2", "z": "3"}},
                          "spec": {"replicas": 1, "list": [2, 3]}}),
                ),
            ),
            (
                "escaped tokens",
                json!([{"op": "add", "path": "/metadata/labels/a~1b~0c", "value": "v"}]),
                Ok(
                    json!({"metadata": {"name": "a", "labels": {"x": "1", "y": "2", "z": "3", "a/b~c": "v"}},
                          "spec": {"replicas": 1, "list": [1, 2, 3]}}),
                ),
            ),
            (
                "move and copy",
                json!([{"op": "copy", "from": "/spec/replicas", "path": "/spec/copied"},
                       {"op": "move", "from": "/metadata/labels/x", "path": "/metadata/labels/w"}]),
                Ok(
                    json!({"metadata": {"name": "a", "labels": {"y": "2", "z": "3", "w": "1"}},
                          "spec": {"replicas": 1, "list": [1, 2, 3], "copied": 1}}),
                ),
            ),
            (
                "missing parent",
                json!([{"op": "add", "path": "/spec/nope/x", "value": 1}]),
                Err(
                    "add operation does not apply: doc is missing path: \"/spec/nope/x\": missing value",
                ),
            ),
            (
                "replace missing",
                json!([{"op": "replace", "path": "/x", "value": 1}]),
                Err("replace operation does not apply: doc is missing key: /x: missing value"),
            ),
            (
                "remove missing",
                json!([{"op": "remove", "path": "/x"}]),
                Err("remove operation does not apply: doc is missing path: \"/x\": missing value"),
            ),
            (
                "failed test",
                json!([{"op": "test", "path": "/spec/replicas", "value": 2}]),
                Err("testing value /spec/replicas failed: test failed"),
            ),
            (
                "index out of range",
                json!([{"op": "add", "path": "/spec/list/9", "value": 1}]),
                Err(
                    "add operation does not apply: doc is missing path: \"/spec/list/9\": missing value",
                ),
            ),
            (
                "leading zero index",
                json!([{"op": "remove", "path": "/spec/list/01"}]),
                Err(
                    "remove operation does not apply: doc is missing path: \"/spec/list/01\": missing value",
                ),
            ),
            (
                "move into own child",
                json!([{"op": "move", "from": "/spec", "path": "/spec/x"}]),
                Err(
                    "move operation does not apply: cannot move \"/spec\" into its own child \"/spec/x\"",
                ),
            ),
            (
                "replace root with a scalar",
                json!([{"op": "replace", "path": "", "value": 1}]),
                Err("the patched document is not a JSON object"),
            ),
        ];
        for (name, patch, want) in cases {
            let got = json_patch(&doc, patch.to_string().as_bytes());
            match want {
                Ok(v) => assert_eq!(got, Ok(v), "{name}"),
                Err(msg) => assert_eq!(
                    got,
                    Err(PatchError::Unprocessable(msg.to_string())),
                    "{name}"
                ),
            }
        }
    }

    #[test]
    fn json_patch_remove_keeps_key_order() {
        let doc = json!({"a": 1, "b": 2, "c": 3, "d": 4});
        let out = json_patch(&doc, br#"[{"op":"remove","path":"/b"}]"#).unwrap();
        assert_eq!(keys(&out), vec!["a", "c", "d"]);
        let out = json_patch(&doc, br#"[{"op":"move","from":"/a","path":"/e"}]"#).unwrap();
        assert_eq!(keys(&out), vec!["b", "c", "d", "e"]);
    }

    #[test]
    fn json_patch_parse_errors_are_bad_requests() {
        let doc = json!({});
        for body in [
            &b"{"[..],
            b"{}",
            b"[{\"op\":\"frob\",\"path\":\"/a\"}]",
            b"[{\"op\":\"add\",\"path\":\"a\",\"value\":1}]",
            b"[{\"op\":\"add\",\"path\":\"/a\"}]",
        ] {
            match json_patch(&doc, body) {
                Err(PatchError::BadRequest(msg)) => {
                    assert!(msg.starts_with("unable to parse JSON patch"), "{msg}")
                }
                other => panic!("{}: {other:?}", String::from_utf8_lossy(body)),
            }
        }
    }

    #[test]
    fn json_patch_limits() {
        let ops: Vec<Value> = (0..=MAX_JSON_PATCH_OPERATIONS)
            .map(|_| json!({"op": "test", "path": "", "value": {}}))
            .collect();
        let body = Value::Array(ops).to_string();
        assert!(matches!(
            json_patch(&json!({}), body.as_bytes()),
            Err(PatchError::RequestEntityTooLarge(_))
        ));

        // Doubling by copy stops at the copy budget instead of exhausting memory.
        let mut ops =
            vec![json!({"op": "add", "path": "/a", "value": ["xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"]})];
        for _ in 0..64 {
            ops.push(json!({"op": "copy", "from": "/a", "path": "/a/-"}));
        }
        let body = Value::Array(ops).to_string();
        match json_patch(&json!({}), body.as_bytes()) {
            Err(PatchError::Unprocessable(msg)) => {
                assert!(msg.contains("accumulated size"), "{msg}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn merge_patch_table() {
        let doc = json!({"a": 1, "b": {"c": 2, "d": 3}, "e": [1, 2]});
        let cases = vec![
            (
                json!({"a": null}),
                json!({"b": {"c": 2, "d": 3}, "e": [1, 2]}),
            ),
            (
                json!({"b": {"c": null, "x": {"y": null, "z": 1}}}),
                json!({"a": 1, "b": {"d": 3, "x": {"z": 1}}, "e": [1, 2]}),
            ),
            (
                json!({"e": [3]}),
                json!({"a": 1, "b": {"c": 2, "d": 3}, "e": [3]}),
            ),
            (
                json!({"a": {"n": 1}}),
                json!({"a": {"n": 1}, "b": {"c": 2, "d": 3}, "e": [1, 2]}),
            ),
            (json!({"b": "s"}), json!({"a": 1, "b": "s", "e": [1, 2]})),
        ];
        for (patch, want) in cases {
            let got = merge_patch(&doc, patch.to_string().as_bytes()).unwrap();
            assert_eq!(got, want, "patch {patch}");
        }
        let out = merge_patch(&doc, br#"{"a": null, "z": 0}"#).unwrap();
        assert_eq!(keys(&out), vec!["b", "e", "z"]);
        assert!(matches!(
            merge_patch(&doc, b"[1]"),
            Err(PatchError::BadRequest(_))
        ));
        assert!(matches!(
            merge_patch(&doc, b"null"),
            Err(PatchError::BadRequest(_))
        ));
        assert!(matches!(
            merge_patch(&doc, b"{"),
            Err(PatchError::BadRequest(_))
        ));
    }

    #[test]
    fn deep_inputs_are_refused_not_overflowed() {
        let mut deep = json!({});
        for _ in 0..600 {
            deep = json!({"a": deep});
        }
        assert!(matches!(
            merge_patch(&deep, b"{}"),
            Err(PatchError::Unprocessable(_))
        ));
        assert!(matches!(
            json_patch(&deep, b"[]"),
            Err(PatchError::Unprocessable(_))
        ));
        // A patch nested beyond serde_json's limit is a parse error.
        let body = format!("{}1{}", "{\"a\":".repeat(200), "}".repeat(200));
        assert!(matches!(
            merge_patch(&json!({}), body.as_bytes()),
            Err(PatchError::BadRequest(_))
        ));
        // Growing a document past the readable depth is refused.
        let mut almost = json!(1);
        for _ in 0..120 {
            almost = json!({"a": almost});
        }
        let doc = json!({"x": {"y": {"z": {"w": {"v": {"u": {"t": {"s": {}}}}}}}}});
        let patch = json!([{"op": "add", "path": "/x/y/z/w/v/u/t/s/b", "value": almost}]);
        let grown = json_patch(&doc, patch.to_string().as_bytes());
        assert!(
            matches!(grown, Err(PatchError::Unprocessable(_))),
            "{grown:?}"
        );
    }
}
