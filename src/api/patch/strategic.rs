//! Kubernetes strategic merge patch (server side of
//! `application/strategic-merge-patch+json`), following upstream
//! `strategicpatch.StrategicMergeMapPatch`: lists with a merge key merge by
//! key, primitive merge lists union, other lists are replaced; `$patch`
//! (replace / delete / merge), `$retainKeys`, `$setElementOrder/<field>` and
//! `$deleteFromPrimitiveList/<field>` directives; `null` deletes. Item order
//! follows upstream (patch items placed by the live order where known).
//! Must not: accept custom resources (the caller answers 415, see
//! [`strategic_merge_allowed`]), leave directive keys in the result, or
//! recurse deeper than its input.
//!
//! Deliberate differences from upstream, all towards cleaner stored objects:
//! directives and `null`s inside values that are added wholesale are resolved
//! rather than stored; `$patch: merge` is accepted as the no-op it names;
//! `$deleteFromPrimitiveList` on an absent list is a no-op (upstream would
//! store the deletion list).

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value};

use super::schema::{ListStrategy, MergeSchema};
use super::{PatchError, canonical, check_input_depth, finish};

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList";
const SET_ELEMENT_ORDER: &str = "$setElementOrder";

/// Upstream's 415 text for a strategic merge patch of a custom resource.
pub const STRATEGIC_MERGE_UNSUPPORTED: &str = "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml";

/// Strategic merge patch is only defined for built-in kinds (it needs their
/// Go struct tags); for a custom resource this is the 415 to answer.
pub fn strategic_merge_allowed(builtin: bool) -> Result<(), PatchError> {
    if builtin {
        Ok(())
    } else {
        Err(PatchError::UnsupportedMediaType(
            STRATEGIC_MERGE_UNSUPPORTED.to_string(),
        ))
    }
}

/// Applies a strategic merge patch to `doc`. Malformed patches and directives
/// are 400s; lists of lists are 422 (as upstream).
pub fn strategic_merge_patch(
    doc: &Value,
    patch_bytes: &[u8],
    schema: &dyn MergeSchema,
) -> Result<Value, PatchError> {
    let patch: Value = serde_json::from_slice(patch_bytes).map_err(|e| {
        PatchError::BadRequest(format!("unable to parse strategic merge patch: {e}"))
    })?;
    let Value::Object(patch) = patch else {
        return Err(bad(
            "unable to parse strategic merge patch: the patch must be a JSON object".to_string(),
        ));
    };
    let Value::Object(original) = doc else {
        return Err(PatchError::Unprocessable(
            "the object to patch is not a JSON object".to_string(),
        ));
    };
    check_input_depth(doc)?;
    let mut merger = Merger {
        schema,
        path: Vec::new(),
    };
    let merged = merger.merge_map(original.clone(), patch)?;
    finish(Value::Object(merged))
}

fn bad(message: String) -> PatchError {
    PatchError::BadRequest(message)
}

fn no_merge_key(item: &Value, key: &str) -> PatchError {
    bad(format!(
        "map: {} does not contain declared merge key: {key}",
        brief(item)
    ))
}

/// `v` as JSON for an error message, cut short: messages echo patches, and
/// patches can be megabytes.
fn brief(v: &Value) -> String {
    const LIMIT: usize = 256;
    let text = v.to_string();
    if text.len() <= LIMIT {
        return text;
    }
    let mut end = LIMIT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

/// Text after `<prefix>/` in a parallel-list directive key.
fn directive_field<'k>(key: &'k str, prefix: &str) -> Option<&'k str> {
    key.strip_prefix(prefix)?
        .strip_prefix('/')
        .filter(|field| !field.is_empty())
}

/// The identity an item is ordered and matched by: its merge key's value for
/// objects, itself otherwise.
fn order_key(item: &Value, merge_key: Option<&str>) -> Option<String> {
    match (merge_key, item) {
        (Some(key), Value::Object(map)) => map.get(key).map(canonical),
        (Some(_), _) => None,
        (None, other) => Some(canonical(other)),
    }
}

fn first_positions<'a>(keys: impl Iterator<Item = Option<String>> + 'a) -> HashMap<String, usize> {
    let mut positions = HashMap::new();
    for (i, key) in keys.enumerate() {
        if let Some(key) = key {
            positions.entry(key).or_insert(i);
        }
    }
    positions
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum ElementKind {
    Object,
    Scalar,
}

struct Merger<'s> {
    schema: &'s dyn MergeSchema,
    /// Field names from the root to the value being merged (list items add none).
    path: Vec<String>,
}

impl Merger<'_> {
    fn list_strategy(&self) -> Option<ListStrategy> {
        let path: Vec<&str> = self.path.iter().map(String::as_str).collect();
        self.schema.list_strategy(&path)
    }

    fn display_path(&self) -> String {
        if self.path.is_empty() {
            ".".to_string()
        } else {
            self.path.iter().map(|f| format!(".{f}")).collect()
        }
    }

    /// A patch value put where the original has nothing (or something of
    /// another type): merged onto an empty value so its directives resolve.
    fn resolve(&mut self, patch: Value) -> Result<Value, PatchError> {
        match patch {
            Value::Object(map) => Ok(Value::Object(self.merge_map(Map::new(), map)?)),
            Value::Array(items) => Ok(Value::Array(self.merge_list_field(Vec::new(), items)?)),
            other => Ok(other),
        }
    }

    fn merge_value(&mut self, original: Value, patch: Value) -> Result<Value, PatchError> {
        match (original, patch) {
            (Value::Object(o), Value::Object(p)) => Ok(Value::Object(self.merge_map(o, p)?)),
            (Value::Array(o), Value::Array(p)) => Ok(Value::Array(self.merge_list_field(o, p)?)),
            (_, p) => self.resolve(p),
        }
    }

    fn merge_map(
        &mut self,
        mut original: Map<String, Value>,
        mut patch: Map<String, Value>,
    ) -> Result<Map<String, Value>, PatchError> {
        if let Some(directive) = patch.shift_remove(DIRECTIVE) {
            match directive.as_str() {
                Some("replace") => return self.merge_map(Map::new(), patch),
                Some("delete") => return Ok(Map::new()),
                Some("merge") => {}
                _ => {
                    return Err(bad(format!(
                        "unknown patch type: {} in map: {}",
                        brief(&directive),
                        brief(&Value::Object(patch))
                    )));
                }
            }
        }

        if let Some(retain) = patch.shift_remove(RETAIN_KEYS) {
            apply_retain_keys(&mut original, &patch, retain)?;
        }

        let order_directives: Vec<String> = patch
            .keys()
            .filter(|k| k.starts_with(SET_ELEMENT_ORDER))
            .cloned()
            .collect();
        for directive_key in order_directives {
            let order = patch.shift_remove(&directive_key).unwrap_or(Value::Null);
            self.apply_set_element_order(&mut original, &mut patch, &directive_key, order)?;
        }

        for (key, patch_value) in patch {
            if key.starts_with(DELETE_FROM_PRIMITIVE_LIST) {
                delete_from_primitive_list(&mut original, &key, patch_value)?;
                continue;
            }
            if patch_value.is_null() {
                original.shift_remove(&key);
                continue;
            }
            self.path.push(key.clone());
            let merged = match original.get_mut(&key) {
                Some(slot) => {
                    let current = std::mem::take(slot);
                    let merged = self.merge_value(current, patch_value)?;
                    *slot = merged;
                    Ok(())
                }
                None => self.resolve(patch_value).map(|v| {
                    original.insert(key.clone(), v);
                }),
            };
            self.path.pop();
            merged?;
        }
        Ok(original)
    }

    fn apply_set_element_order(
        &mut self,
        original: &mut Map<String, Value>,
        patch: &mut Map<String, Value>,
        directive_key: &str,
        order: Value,
    ) -> Result<(), PatchError> {
        let invalid = || bad("invalid patch format of setElementOrder list".to_string());
        let Value::Array(order) = order else {
            return Err(invalid());
        };
        let field = directive_field(directive_key, SET_ELEMENT_ORDER)
            .ok_or_else(invalid)?
            .to_string();
        let original_list = match original.get(&field) {
            Some(Value::Array(items)) => Some(items.clone()),
            _ => None,
        };
        let patch_list = match patch.shift_remove(&field) {
            Some(Value::Array(items)) => Some(items),
            None => None,
            Some(other) => {
                return Err(bad(format!(
                    "expected a list for {field} next to its {SET_ELEMENT_ORDER} directive, got {}",
                    brief(&other)
                )));
            }
        };
        self.path.push(field.clone());
        let result = self.ordered_merge(original_list, patch_list, &order);
        self.path.pop();
        if let Some(merged) = result? {
            original.insert(field, Value::Array(merged));
        }
        Ok(())
    }

    /// Merges a list whose final order is dictated by `$setElementOrder`.
    fn ordered_merge(
        &mut self,
        original_list: Option<Vec<Value>>,
        patch_list: Option<Vec<Value>>,
        order: &[Value],
    ) -> Result<Option<Vec<Value>>, PatchError> {
        let merge_key = match self.list_strategy() {
            Some(ListStrategy::MergeByKey(key)) => Some(key),
            _ => None,
        };
        validate_patch_with_set_order(patch_list.as_deref().unwrap_or(&[]), order, merge_key)?;
        // The live order, for placing items `$setElementOrder` does not name.
        let server_order_keys: Vec<Option<String>> = original_list
            .as_deref()
            .map(|original| {
                let key = items_merge_key(original, merge_key);
                original.iter().map(|item| order_key(item, key)).collect()
            })
            .unwrap_or_default();
        let merged = match (original_list, patch_list) {
            (None, None) => return Ok(None),
            (Some(original), None) => original,
            (original, Some(patch)) => {
                self.merge_list_field(original.unwrap_or_default(), patch)?
            }
        };
        let key = items_merge_key(&merged, merge_key);
        let in_order: HashSet<String> = order
            .iter()
            .map(|item| order_key(item, key).ok_or_else(|| no_merge_key(item, key.unwrap_or(""))))
            .collect::<Result<_, _>>()?;
        let mut patch_items = Vec::new();
        let mut server_only = Vec::new();
        for item in merged {
            let item_key =
                order_key(&item, key).ok_or_else(|| no_merge_key(&item, key.unwrap_or("")))?;
            if in_order.contains(&item_key) {
                patch_items.push(item);
            } else {
                server_only.push(item);
            }
        }
        let patch_positions = first_positions(order.iter().map(|item| order_key(item, key)));
        let server_positions = first_positions(server_order_keys.into_iter());
        Ok(Some(normalize_element_order(
            patch_items,
            server_only,
            &patch_positions,
            &server_positions,
            key,
        )))
    }

    /// A list field merged by its schema strategy (mergeSliceHandler).
    fn merge_list_field(
        &mut self,
        original: Vec<Value>,
        patch: Vec<Value>,
    ) -> Result<Vec<Value>, PatchError> {
        match self.list_strategy() {
            Some(ListStrategy::MergeByKey(key)) => self.merge_list(original, patch, Some(key)),
            Some(ListStrategy::MergePrimitives) => self.merge_list(original, patch, None),
            Some(ListStrategy::Replace) | None => self.replace_list(patch),
        }
    }

    /// The patch's list replaces the original; directive-only items are
    /// dropped and items' own directives resolved.
    fn replace_list(&mut self, patch: Vec<Value>) -> Result<Vec<Value>, PatchError> {
        let mut out = Vec::with_capacity(patch.len());
        for item in patch {
            match item {
                Value::Object(map) if map.len() == 1 && map.contains_key(DIRECTIVE) => {}
                Value::Object(map) => out.push(Value::Object(self.merge_map(Map::new(), map)?)),
                other => out.push(other),
            }
        }
        Ok(out)
    }

    fn element_kind(&self, original: &[Value], patch: &[Value]) -> Result<ElementKind, PatchError> {
        let mut kind = None;
        for item in original.iter().chain(patch) {
            let this = match item {
                Value::Array(_) => {
                    return Err(PatchError::Unprocessable(
                        "lists of lists are not supported".to_string(),
                    ));
                }
                Value::Object(_) => ElementKind::Object,
                _ => ElementKind::Scalar,
            };
            match kind {
                None => kind = Some(this),
                Some(k) if k != this => {
                    return Err(bad(format!(
                        "list element types are not identical in {}",
                        self.display_path()
                    )));
                }
                Some(_) => {}
            }
        }
        Ok(kind.unwrap_or(ElementKind::Scalar))
    }

    /// mergeSlice: a list with patch strategy "merge".
    fn merge_list(
        &mut self,
        original: Vec<Value>,
        patch: Vec<Value>,
        merge_key: Option<&'static str>,
    ) -> Result<Vec<Value>, PatchError> {
        if original.is_empty() && patch.is_empty() {
            return Ok(original);
        }
        match self.element_kind(&original, &patch)? {
            ElementKind::Scalar => Ok(merge_scalar_list(original, patch)),
            ElementKind::Object => {
                let Some(key) = merge_key else {
                    return Err(bad(format!(
                        "cannot merge lists without merge key for {}",
                        self.display_path()
                    )));
                };
                self.merge_object_list(original, patch, key)
            }
        }
    }

    fn merge_object_list(
        &mut self,
        original: Vec<Value>,
        patch: Vec<Value>,
        key: &'static str,
    ) -> Result<Vec<Value>, PatchError> {
        // Special elements first: `$patch: delete` removes by key, `$patch:
        // replace` makes the other items the whole list.
        let mut plain: Vec<Map<String, Value>> = Vec::with_capacity(patch.len());
        let mut deleted: HashSet<String> = HashSet::new();
        let mut replace = false;
        for item in patch {
            let Value::Object(mut map) = item else {
                return Err(bad(format!("expected a map in {}", self.display_path())));
            };
            let Some(directive) = map.get(DIRECTIVE) else {
                plain.push(map);
                continue;
            };
            match directive.as_str() {
                Some("delete") => {
                    let value = map
                        .get(key)
                        .ok_or_else(|| no_merge_key(&Value::Object(map.clone()), key))?;
                    deleted.insert(canonical(value));
                }
                Some("replace") => replace = true,
                Some("merge") => {
                    map.shift_remove(DIRECTIVE);
                    if map.contains_key(key) {
                        plain.push(map);
                    }
                }
                _ => {
                    return Err(bad(format!(
                        "unknown patch type: {} in map: {}",
                        brief(directive),
                        brief(&Value::Object(map.clone()))
                    )));
                }
            }
        }

        let (original, patch) = if replace {
            let mut replaced = Vec::with_capacity(plain.len());
            for map in plain {
                replaced.push(Value::Object(self.merge_map(Map::new(), map)?));
            }
            (replaced, Vec::new())
        } else if deleted.is_empty() {
            (original, plain)
        } else {
            let kept = original
                .into_iter()
                .filter(|item| order_key(item, Some(key)).is_none_or(|k| !deleted.contains(&k)))
                .collect();
            (kept, plain)
        };

        let server_positions =
            first_positions(original.iter().map(|item| order_key(item, Some(key))));
        let mut patch_keys: Vec<Option<String>> = Vec::with_capacity(patch.len());
        let mut merged = original;
        let mut index = server_positions.clone();
        for map in patch {
            let value = map
                .get(key)
                .ok_or_else(|| no_merge_key(&Value::Object(map.clone()), key))?;
            let item_key = canonical(value);
            patch_keys.push(Some(item_key.clone()));
            match index.get(&item_key).copied() {
                Some(i) => {
                    let current = std::mem::take(&mut merged[i]);
                    merged[i] = match current {
                        Value::Object(current) => Value::Object(self.merge_map(current, map)?),
                        _ => Value::Object(self.merge_map(Map::new(), map)?),
                    };
                }
                None => {
                    index.insert(item_key, merged.len());
                    merged.push(Value::Object(self.merge_map(Map::new(), map)?));
                }
            }
        }

        let in_patch: HashSet<&String> = patch_keys.iter().flatten().collect();
        let mut patch_items = Vec::new();
        let mut server_only = Vec::new();
        for item in merged {
            let item_key = order_key(&item, Some(key)).ok_or_else(|| no_merge_key(&item, key))?;
            if in_patch.contains(&item_key) {
                patch_items.push(item);
            } else {
                server_only.push(item);
            }
        }
        let patch_positions = first_positions(patch_keys.into_iter());
        Ok(normalize_element_order(
            patch_items,
            server_only,
            &patch_positions,
            &server_positions,
            Some(key),
        ))
    }
}

/// The merge key to order `items` by: the schema's key when the items are
/// objects, none (identity) for scalars.
fn items_merge_key(items: &[Value], merge_key: Option<&'static str>) -> Option<&'static str> {
    if items.iter().any(Value::is_object) {
        merge_key
    } else {
        None
    }
}

/// Union of two scalar lists, original first, without duplicates, then put
/// in upstream's order.
fn merge_scalar_list(original: Vec<Value>, patch: Vec<Value>) -> Vec<Value> {
    let server_positions = first_positions(original.iter().map(|v| Some(canonical(v))));
    let patch_keys: Vec<String> = patch.iter().map(canonical).collect();
    let in_patch: HashSet<&String> = patch_keys.iter().collect();
    let patch_positions = first_positions(patch_keys.iter().cloned().map(Some));
    let mut seen = HashSet::new();
    let mut patch_items = Vec::new();
    let mut server_only = Vec::new();
    for item in original.into_iter().chain(patch) {
        let key = canonical(&item);
        if !seen.insert(key.clone()) {
            continue;
        }
        if in_patch.contains(&key) {
            patch_items.push(item);
        } else {
            server_only.push(item);
        }
    }
    normalize_element_order(
        patch_items,
        server_only,
        &patch_positions,
        &server_positions,
        None,
    )
}

/// normalizeElementOrder: patch items sorted by the patch (or
/// `$setElementOrder`) order, server-only items by the live order, then
/// interleaved by the live order where both are known. Items new to the
/// server come before server-only items they are compared with, as upstream.
fn normalize_element_order(
    mut patch_items: Vec<Value>,
    mut server_only: Vec<Value>,
    patch_positions: &HashMap<String, usize>,
    server_positions: &HashMap<String, usize>,
    key: Option<&str>,
) -> Vec<Value> {
    let position = |positions: &HashMap<String, usize>, item: &Value| {
        order_key(item, key).and_then(|k| positions.get(&k).copied())
    };
    patch_items.sort_by_key(|item| position(patch_positions, item).unwrap_or(usize::MAX));
    server_only.sort_by_key(|item| position(server_positions, item).unwrap_or(usize::MAX));

    let mut out = Vec::with_capacity(patch_items.len() + server_only.len());
    let mut left = server_only.into_iter().peekable();
    let mut right = patch_items.into_iter().peekable();
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(l), Some(r)) => matches!(
                (position(server_positions, l), position(server_positions, r)),
                (Some(li), Some(ri)) if li < ri
            ),
        };
        let next = if take_left { left.next() } else { right.next() };
        out.extend(next);
    }
    out
}

/// validatePatchWithSetOrderList: the patch's items (deletions and other
/// directive items aside) must appear in the same relative order as in
/// `$setElementOrder`.
fn validate_patch_with_set_order(
    patch: &[Value],
    order: &[Value],
    merge_key: Option<&str>,
) -> Result<(), PatchError> {
    if patch.is_empty() || order.is_empty() {
        return Ok(());
    }
    let is_directive = |item: &Value| item.get(DIRECTIVE).is_some();
    let items: Vec<&Value> = patch.iter().filter(|item| !is_directive(item)).collect();
    let key = if patch.iter().chain(order).any(Value::is_object) {
        merge_key
    } else {
        None
    };
    let (mut pi, mut oi) = (0, 0);
    while pi < items.len() && oi < order.len() {
        let left =
            order_key(items[pi], key).ok_or_else(|| no_merge_key(items[pi], key.unwrap_or("")))?;
        let right = order_key(&order[oi], key)
            .ok_or_else(|| no_merge_key(&order[oi], key.unwrap_or("")))?;
        if left == right {
            pi += 1;
        }
        oi += 1;
    }
    if pi < items.len() {
        return Err(bad(format!(
            "The order in patch list:\n{}\n doesn't match {SET_ELEMENT_ORDER} list:\n{}\n",
            brief(&Value::Array(patch.to_vec())),
            brief(&Value::Array(order.to_vec()))
        )));
    }
    Ok(())
}

fn apply_retain_keys(
    original: &mut Map<String, Value>,
    patch: &Map<String, Value>,
    retain: Value,
) -> Result<(), PatchError> {
    let invalid = || bad("invalid patch format of retainKeys".to_string());
    let Value::Array(list) = retain else {
        return Err(invalid());
    };
    let keep: HashSet<&str> = list.iter().filter_map(Value::as_str).collect();
    for (key, value) in patch {
        if value.is_null()
            || key.starts_with(DELETE_FROM_PRIMITIVE_LIST)
            || key.starts_with(SET_ELEMENT_ORDER)
        {
            continue;
        }
        if !keep.contains(key.as_str()) {
            return Err(invalid());
        }
    }
    original.retain(|key, _| keep.contains(key.as_str()));
    Ok(())
}

fn delete_from_primitive_list(
    original: &mut Map<String, Value>,
    directive_key: &str,
    to_delete: Value,
) -> Result<(), PatchError> {
    let invalid = || bad("invalid patch format of primitive list".to_string());
    let field = directive_field(directive_key, DELETE_FROM_PRIMITIVE_LIST).ok_or_else(invalid)?;
    let Value::Array(to_delete) = to_delete else {
        return Err(invalid());
    };
    let doomed: HashSet<String> = to_delete.iter().map(canonical).collect();
    if let Some(Value::Array(items)) = original.get_mut(field) {
        items.retain(|item| !doomed.contains(&canonical(item)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::schema::BuiltinMergeSchema;
    use super::*;
    use serde_json::json;

    fn pod() -> BuiltinMergeSchema {
        BuiltinMergeSchema::for_kind("", "Pod")
    }

    fn smp(doc: &Value, patch: Value, schema: &dyn MergeSchema) -> Result<Value, PatchError> {
        strategic_merge_patch(doc, patch.to_string().as_bytes(), schema)
    }

    fn names(v: &Value, pointer: &str) -> Vec<String> {
        v.pointer(pointer)
            .and_then(Value::as_array)
            .map(|items| {
                items
                    .iter()
                    .map(|i| match i.get("name") {
                        Some(Value::String(s)) => s.clone(),
                        _ => i.to_string(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    fn pod_doc() -> Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "labels": {"app": "web", "tier": "fe"}, "finalizers": ["a/x", "b/y"]},
            "spec": {
                "containers": [
                    {"name": "nginx", "image": "nginx:1.25", "ports": [{"containerPort": 80}],
                     "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]},
                    {"name": "sidecar", "image": "busybox", "args": ["sleep", "1d"]}
                ],
                "tolerations": [{"key": "k1", "operator": "Exists"}],
                "volumes": [{"name": "data", "emptyDir": {}}]
            }
        })
    }

    #[test]
    fn strategic_merge_patch_table() {
        let doc = pod_doc();
        struct Case {
            name: &'static str,
            patch: Value,
            check: fn(&Value),
        }
        let cases = vec![
            Case {
                name: "container image by name keeps other containers",
                patch: json!({"spec": {"containers": [{"name": "sidecar", "image": "busybox:2"}]}}),
                check: |v| {
                    assert_eq!(names(v, "/spec/containers"), vec!["nginx", "sidecar"]);
                    assert_eq!(
                        v.pointer("/spec/containers/1/image"),
                        Some(&json!("busybox:2"))
                    );
                    assert_eq!(
                        v.pointer("/spec/containers/1/args"),
                        Some(&json!(["sleep", "1d"]))
                    );
                    assert_eq!(
                        v.pointer("/spec/containers/0/image"),
                        Some(&json!("nginx:1.25"))
                    );
                },
            },
            Case {
                name: "new container is added (before unmatched server items, as upstream)",
                patch: json!({"spec": {"containers": [{"name": "log", "image": "fluent"}]}}),
                check: |v| {
                    assert_eq!(
                        names(v, "/spec/containers"),
                        vec!["log", "nginx", "sidecar"]
                    )
                },
            },
            Case {
                name: "$patch delete removes a container by key",
                patch: json!({"spec": {"containers": [{"name": "sidecar", "$patch": "delete"}]}}),
                check: |v| assert_eq!(names(v, "/spec/containers"), vec!["nginx"]),
            },
            Case {
                name: "$patch replace on a list",
                patch: json!({"spec": {"containers": [{"$patch": "replace"}, {"name": "only", "image": "x"}]}}),
                check: |v| {
                    assert_eq!(
                        v.pointer("/spec/containers"),
                        Some(&json!([{"name": "only", "image": "x"}]))
                    )
                },
            },
            Case {
                name: "$patch replace on a map",
                patch: json!({"metadata": {"labels": {"$patch": "replace", "new": "1"}}}),
                check: |v| assert_eq!(v.pointer("/metadata/labels"), Some(&json!({"new": "1"}))),
            },
            Case {
                name: "$patch delete on a map",
                patch: json!({"metadata": {"labels": {"$patch": "delete"}}}),
                check: |v| assert_eq!(v.pointer("/metadata/labels"), Some(&json!({}))),
            },
            Case {
                name: "finalizers union",
                patch: json!({"metadata": {"finalizers": ["b/y", "c/z"]}}),
                check: |v| {
                    let mut f: Vec<String> = v
                        .pointer("/metadata/finalizers")
                        .and_then(Value::as_array)
                        .unwrap()
                        .iter()
                        .map(|x| x.as_str().unwrap().to_string())
                        .collect();
                    assert_eq!(f.len(), 3);
                    f.sort();
                    assert_eq!(f, vec!["a/x", "b/y", "c/z"]);
                },
            },
            Case {
                name: "$deleteFromPrimitiveList",
                patch: json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a/x"]}}),
                check: |v| assert_eq!(v.pointer("/metadata/finalizers"), Some(&json!(["b/y"]))),
            },
            Case {
                name: "lists without strategy are replaced",
                patch: json!({"spec": {"tolerations": [{"key": "k2", "operator": "Exists"}]}}),
                check: |v| {
                    assert_eq!(
                        v.pointer("/spec/tolerations"),
                        Some(&json!([{"key": "k2", "operator": "Exists"}]))
                    )
                },
            },
            Case {
                name: "null deletes a field, nested env merges by name",
                patch: json!({"metadata": {"labels": {"tier": null}},
                              "spec": {"containers": [{"name": "nginx", "env": [{"name": "B", "value": "3"}, {"name": "C", "value": "4"}]}]}}),
                check: |v| {
                    assert_eq!(v.pointer("/metadata/labels"), Some(&json!({"app": "web"})));
                    assert_eq!(names(v, "/spec/containers/0/env"), vec!["A", "B", "C"]);
                    assert_eq!(
                        v.pointer("/spec/containers/0/env/1/value"),
                        Some(&json!("3"))
                    );
                },
            },
            Case {
                name: "kubectl apply patch for a changed image ($setElementOrder)",
                patch: json!({"spec": {"$setElementOrder/containers": [{"name": "nginx"}, {"name": "sidecar"}],
                                       "containers": [{"image": "nginx:1.26", "name": "nginx"}]}}),
                check: |v| {
                    assert_eq!(names(v, "/spec/containers"), vec!["nginx", "sidecar"]);
                    assert_eq!(
                        v.pointer("/spec/containers/0/image"),
                        Some(&json!("nginx:1.26"))
                    );
                    assert_eq!(
                        v.pointer("/spec/containers/0/ports"),
                        Some(&json!([{"containerPort": 80}]))
                    );
                },
            },
            Case {
                name: "$setElementOrder reorders and places a new item",
                patch: json!({"spec": {"$setElementOrder/containers": [{"name": "sidecar"}, {"name": "new"}, {"name": "nginx"}],
                                       "containers": [{"name": "new", "image": "n"}]}}),
                check: |v| {
                    assert_eq!(
                        names(v, "/spec/containers"),
                        vec!["sidecar", "new", "nginx"]
                    )
                },
            },
            Case {
                name: "$setElementOrder on finalizers with a deletion",
                patch: json!({"metadata": {"$setElementOrder/finalizers": ["c/z", "b/y"],
                                           "$deleteFromPrimitiveList/finalizers": ["a/x"],
                                           "finalizers": ["c/z"]}}),
                check: |v| {
                    assert_eq!(
                        v.pointer("/metadata/finalizers"),
                        Some(&json!(["c/z", "b/y"]))
                    )
                },
            },
            Case {
                name: "$retainKeys clears other keys",
                patch: json!({"spec": {"volumes": [{"name": "data", "$retainKeys": ["name", "hostPath"], "hostPath": {"path": "/x"}}]}}),
                check: |v| {
                    assert_eq!(
                        v.pointer("/spec/volumes"),
                        Some(&json!([{"name": "data", "hostPath": {"path": "/x"}}]))
                    )
                },
            },
            Case {
                name: "directives inside a wholly added value are resolved",
                patch: json!({"spec": {"initContainers": [{"name": "i", "image": "x", "env": [{"name": "Z", "$patch": "delete"}], "tty": null}]}}),
                check: |v| {
                    assert_eq!(
                        v.pointer("/spec/initContainers"),
                        Some(&json!([{"name": "i", "image": "x", "env": []}]))
                    )
                },
            },
            Case {
                name: "object replaces scalar and vice versa",
                patch: json!({"metadata": {"name": {"x": {"y": null, "z": 1}}}, "spec": {"volumes": "gone"}}),
                check: |v| {
                    assert_eq!(v.pointer("/metadata/name"), Some(&json!({"x": {"z": 1}})));
                    assert_eq!(v.pointer("/spec/volumes"), Some(&json!("gone")));
                },
            },
        ];
        for case in cases {
            match smp(&doc, case.patch.clone(), &pod()) {
                Ok(v) => (case.check)(&v),
                Err(e) => panic!("{}: {e}", case.name),
            }
        }
    }

    #[test]
    fn strategic_merge_patch_preserves_key_order() {
        let doc = pod_doc();
        let out = smp(
            &doc,
            json!({"metadata": {"labels": {"app": null, "z": "1"}}, "apiVersion": "v1"}),
            &pod(),
        )
        .unwrap();
        let top: Vec<&String> = out.as_object().unwrap().keys().collect();
        assert_eq!(top, vec!["apiVersion", "kind", "metadata", "spec"]);
        let labels: Vec<&String> = out["metadata"]["labels"]
            .as_object()
            .unwrap()
            .keys()
            .collect();
        assert_eq!(labels, vec!["tier", "z"]);
    }

    #[test]
    fn strategic_merge_patch_errors() {
        let doc = pod_doc();
        let cases: Vec<(Value, &str)> = vec![
            (
                json!({"spec": {"containers": [{"image": "x"}]}}),
                "does not contain declared merge key: name",
            ),
            (
                json!({"spec": {"containers": [{"name": "x", "$patch": "frob"}]}}),
                "unknown patch type",
            ),
            (
                json!({"metadata": {"labels": {"$patch": "frob"}}}),
                "unknown patch type: \"frob\"",
            ),
            (
                json!({"metadata": {"$deleteFromPrimitiveList/finalizers": "a"}}),
                "invalid patch format of primitive list",
            ),
            (
                json!({"metadata": {"$deleteFromPrimitiveList": ["a"]}}),
                "invalid patch format of primitive list",
            ),
            (
                json!({"spec": {"$setElementOrder/containers": {"name": "x"}}}),
                "invalid patch format of setElementOrder list",
            ),
            (
                json!({"spec": {"$setElementOrder/containers": [{"name": "sidecar"}, {"name": "nginx"}],
                             "containers": [{"name": "nginx", "image": "a"}, {"name": "sidecar", "image": "b"}]}}),
                "doesn't match $setElementOrder list",
            ),
            (
                json!({"spec": {"volumes": [{"name": "data", "$retainKeys": ["name"], "hostPath": {}}]}}),
                "invalid patch format of retainKeys",
            ),
            (
                json!({"spec": {"containers": ["x"]}}),
                "list element types are not identical",
            ),
        ];
        for (patch, want) in cases {
            match smp(&doc, patch.clone(), &pod()) {
                Err(PatchError::BadRequest(msg)) => assert!(msg.contains(want), "{patch}: {msg}"),
                other => panic!("{patch}: {other:?}"),
            }
        }
        assert!(matches!(
            smp(&doc, json!({"spec": {"containers": [[1]]}}), &pod()),
            Err(PatchError::Unprocessable(_))
        ));
        assert!(matches!(
            strategic_merge_patch(&doc, b"[]", &pod()),
            Err(PatchError::BadRequest(_))
        ));
        assert!(matches!(
            strategic_merge_patch(&doc, b"{", &pod()),
            Err(PatchError::BadRequest(_))
        ));
        assert_eq!(
            strategic_merge_allowed(false),
            Err(PatchError::UnsupportedMediaType(
                STRATEGIC_MERGE_UNSUPPORTED.to_string()
            ))
        );
        assert_eq!(strategic_merge_allowed(true), Ok(()));
    }

    #[test]
    fn set_element_order_without_patch_list_uses_live_order_for_the_rest() {
        let doc = json!({"spec": {"containers": [
            {"name": "a"}, {"name": "b"}, {"name": "c"}]}});
        let out = smp(
            &doc,
            json!({"spec": {"$setElementOrder/containers": [{"name": "c"}, {"name": "a"}]}}),
            &pod(),
        )
        .unwrap();
        // Upstream: named items in the given order, "b" placed by the live order.
        assert_eq!(names(&out, "/spec/containers"), vec!["b", "c", "a"]);
    }

    #[test]
    fn error_messages_do_not_echo_huge_patches() {
        let big = "x".repeat(100_000);
        let patch = json!({"spec": {"containers": [{"image": big}]}});
        match smp(&pod_doc(), patch, &pod()) {
            Err(PatchError::BadRequest(msg)) => {
                assert!(msg.len() < 400, "{} bytes", msg.len());
                assert!(
                    msg.ends_with("does not contain declared merge key: name"),
                    "{msg}"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn deployment_template_containers_merge_by_name() {
        let schema = BuiltinMergeSchema::for_kind("apps", "Deployment");
        let doc = json!({"spec": {"replicas": 1, "template": {"spec": {"containers": [
            {"name": "a", "image": "a:1"}, {"name": "b", "image": "b:1"}]}}}});
        let out = smp(&doc, json!({"spec": {"template": {"spec": {"containers": [{"name": "b", "image": "b:2"}]}}}}), &schema).unwrap();
        assert_eq!(
            out.pointer("/spec/template/spec/containers"),
            Some(&json!([{"name": "a", "image": "a:1"}, {"name": "b", "image": "b:2"}]))
        );
        // The same patch on a custom kind replaces the list (no merge keys known).
        let custom = BuiltinMergeSchema::for_kind("example.com", "Widget");
        let out = smp(&doc, json!({"spec": {"template": {"spec": {"containers": [{"name": "b", "image": "b:2"}]}}}}), &custom).unwrap();
        assert_eq!(
            out.pointer("/spec/template/spec/containers"),
            Some(&json!([{"name": "b", "image": "b:2"}]))
        );
    }
}
