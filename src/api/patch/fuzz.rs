//! The fuzz target over patch paths: random patches (JSON patch, merge
//! patch, strategic merge patch, apply configurations, raw bytes) over random
//! documents must never panic, and every success must be a storable object.
//! Keys and values are drawn from the directive and field names the code
//! branches on, so the random inputs reach the interesting paths.

use proptest::prelude::*;
use serde_json::{Map, Value, json};

use super::schema::{BuiltinMergeSchema, ListMapKey, ListStrategy, MergeSchema};
use super::*;

/// Merge strategies at any depth, so random documents hit every list kind.
struct EverywhereSchema;

impl MergeSchema for EverywhereSchema {
    fn list_strategy(&self, path: &[&str]) -> Option<ListStrategy> {
        match path.last() {
            Some(&"containers") => Some(ListStrategy::MergeByKey("name")),
            Some(&"finalizers") => Some(ListStrategy::MergePrimitives),
            Some(&"ports") => Some(ListStrategy::MergeByKey("containerPort")),
            Some(&"a") => Some(ListStrategy::Replace),
            _ => None,
        }
    }

    fn list_map_keys(&self, path: &[&str]) -> Vec<ListMapKey> {
        match path.last() {
            Some(&"ports") => vec![
                ListMapKey {
                    name: "containerPort",
                    default: None,
                },
                ListMapKey {
                    name: "protocol",
                    default: Some("TCP"),
                },
            ],
            Some(&"containers") => vec![ListMapKey {
                name: "name",
                default: None,
            }],
            _ => Vec::new(),
        }
    }

    fn is_atomic_map(&self, path: &[&str]) -> bool {
        path.last() == Some(&"selector")
    }
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("$patch".to_string()),
        Just("$retainKeys".to_string()),
        Just("$setElementOrder/containers".to_string()),
        Just("$setElementOrder/finalizers".to_string()),
        Just("$deleteFromPrimitiveList/finalizers".to_string()),
        Just("$deleteFromPrimitiveList".to_string()),
        Just("containers".to_string()),
        Just("finalizers".to_string()),
        Just("ports".to_string()),
        Just("selector".to_string()),
        Just("name".to_string()),
        Just("containerPort".to_string()),
        Just("protocol".to_string()),
        Just("metadata".to_string()),
        Just("managedFields".to_string()),
        Just("status".to_string()),
        Just("spec".to_string()),
        Just("a".to_string()),
        "[a-c]{1,2}",
    ]
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-3i64..4).prop_map(|n| json!(n)),
        Just(json!(1.5)),
        Just(json!("delete")),
        Just(json!("replace")),
        Just(json!("merge")),
        Just(json!("x")),
        Just(json!("TCP")),
        "[a-c]{0,2}".prop_map(Value::String),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(5, 48, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..5)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect::<Map<String, Value>>())),
        ]
    })
}

fn object() -> impl Strategy<Value = Value> {
    prop::collection::vec((key(), json_value()), 0..6)
        .prop_map(|pairs| Value::Object(pairs.into_iter().collect()))
}

fn pointer() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            key(),
            Just("0".to_string()),
            Just("1".to_string()),
            Just("01".to_string()),
            Just("-".to_string()),
            Just("~0".to_string()),
            Just("~1".to_string()),
            Just("99999999999999999999999".to_string()),
        ],
        0..4,
    )
    .prop_map(|tokens| tokens.iter().map(|t| format!("/{t}")).collect())
}

fn json_patch_ops() -> impl Strategy<Value = Value> {
    let op = (
        prop_oneof![
            Just("add"),
            Just("remove"),
            Just("replace"),
            Just("move"),
            Just("copy"),
            Just("test"),
            Just("frob"),
        ],
        pointer(),
        pointer(),
        json_value(),
    )
        .prop_map(
            |(op, path, from, value)| json!({"op": op, "path": path, "from": from, "value": value}),
        );
    prop::collection::vec(op, 0..6).prop_map(Value::Array)
}

/// A managedFields list that is sometimes valid, sometimes not.
fn managed_fields() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        Just(json!([])),
        Just(json!([{}])),
        json_value(),
        (json_value(), prop_oneof![Just("Apply"), Just("Update"), Just("Nope")]).prop_map(|(v1, op)| json!([{
            "manager": "m", "operation": op, "apiVersion": "v1", "fieldsType": "FieldsV1", "fieldsV1": v1
        }])),
        Just(json!([{
            "manager": "m", "operation": "Apply", "apiVersion": "v1", "fieldsType": "FieldsV1",
            "fieldsV1": {"f:spec": {"f:containers": {"k:{\"name\":\"x\"}": {".": {}, "f:image": {}}}}, "f:finalizers": {"v:\"x\"": {}}}
        }])),
    ]
}

fn with_managed_fields(mut obj: Value, managed: Value) -> Value {
    if let Value::Object(map) = &mut obj {
        let meta = map.entry("metadata").or_insert_with(|| json!({}));
        if let Value::Object(meta) = meta {
            meta.insert("managedFields".to_string(), managed);
        }
    }
    obj
}

fn check(result: Result<Value, PatchError>) {
    if let Ok(v) = result {
        assert!(v.is_object());
        assert!(!depth_exceeds(&v, MAX_RESULT_DEPTH));
    }
}

proptest! {
    // 384 cases by default (seconds in CI); `PROPTEST_CASES=100000` to soak.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(384),
        ..ProptestConfig::default()
    })]

    #[test]
    fn fuzz_random_patches_over_random_docs_never_panic(
        doc in object(),
        patch in json_value(),
        ops in json_patch_ops(),
        raw in prop::collection::vec(any::<u8>(), 0..24),
    ) {
        let patch_bytes = patch.to_string();
        let op_bytes = ops.to_string();
        let pod = BuiltinMergeSchema::for_kind("", "Pod");
        for bytes in [patch_bytes.as_bytes(), op_bytes.as_bytes(), raw.as_slice()] {
            check(json_patch(&doc, bytes));
            check(merge_patch(&doc, bytes));
            check(strategic_merge_patch(&doc, bytes, &EverywhereSchema));
            check(strategic_merge_patch(&doc, bytes, &pod));
        }
        // Patching non-object documents must fail cleanly, not panic.
        for not_object in [json!("s"), json!([1, {"a": 2}]), Value::Null] {
            let _ = json_patch(&not_object, op_bytes.as_bytes());
            let _ = merge_patch(&not_object, patch_bytes.as_bytes());
            let _ = strategic_merge_patch(&not_object, patch_bytes.as_bytes(), &EverywhereSchema);
        }
    }

    #[test]
    fn fuzz_random_applies_and_updates_never_panic(
        live in object(),
        applied in object(),
        next in object(),
        managed in managed_fields(),
        force in any::<bool>(),
        manager in prop_oneof![Just("m"), Just("kubectl"), Just("before-first-apply")],
    ) {
        let live = with_managed_fields(live, managed);
        for schema in [&EverywhereSchema as &dyn MergeSchema, &BuiltinMergeSchema::for_kind("", "Pod")] {
            let created = server_side_apply(None, &applied, manager, force, schema, "v1", "2025-01-01T00:00:00Z");
            let updated = server_side_apply(Some(&live), &applied, manager, force, schema, "v1", "2025-01-01T00:00:01Z");
            for result in [created, updated].into_iter().flatten() {
                prop_assert!(result.is_object());
                // What an apply stores must decode and re-apply cleanly.
                let again = server_side_apply(Some(&result), &next, "other", true, schema, "v1", "2025-01-01T00:00:02Z");
                if let Ok(again) = again {
                    prop_assert!(again.is_object());
                }
                let mut written = next.clone();
                record_update(Some(&result), &mut written, "writer", "Update", "v1", "2025-01-01T00:00:03Z", None, schema);
                prop_assert!(written.is_object());
            }
            let mut written = applied.clone();
            record_update(Some(&live), &mut written, manager, "Update", "v1", "2025-01-01T00:00:04Z", Some("status"), schema);
            let mut created = live.clone();
            record_update(None, &mut created, manager, "Update", "v1", "2025-01-01T00:00:04Z", None, schema);
            let _ = fields_v1_of(&live, schema);
        }
    }

    /// Without directives, lists or merge keys, a strategic merge patch is
    /// exactly an RFC 7386 merge patch.
    #[test]
    fn fuzz_plain_strategic_patch_equals_merge_patch(doc in object(), patch in object()) {
        fn plain(v: Value) -> Value {
            match v {
                Value::Object(map) => Value::Object(
                    map.into_iter()
                        .filter(|(k, _)| !k.starts_with('$'))
                        .map(|(k, v)| (k, plain(v)))
                        .collect(),
                ),
                Value::Array(_) => json!("list"),
                other => other,
            }
        }
        struct NoLists;
        impl MergeSchema for NoLists {
            fn list_strategy(&self, _: &[&str]) -> Option<ListStrategy> {
                None
            }
        }
        let patch = plain(patch).to_string();
        prop_assert_eq!(
            strategic_merge_patch(&doc, patch.as_bytes(), &NoLists),
            merge_patch(&doc, patch.as_bytes())
        );
    }

    /// Applying the same configuration twice changes nothing the second
    /// time. (When the first apply left nothing owned, the object is
    /// untracked and the second apply hands its fields to
    /// "before-first-apply", as upstream does; only the content is compared then.)
    #[test]
    fn fuzz_apply_is_idempotent(live in object(), applied in object()) {
        let schema = EverywhereSchema;
        let live = with_managed_fields(live, Value::Null);
        if let Ok(once) = server_side_apply(Some(&live), &applied, "m", true, &schema, "v1", "2025-01-01T00:00:00Z") {
            let twice = server_side_apply(Some(&once), &applied, "m", false, &schema, "v1", "2025-01-01T00:00:01Z");
            let tracked = once.pointer("/metadata/managedFields").is_some();
            let strip = |mut v: Value| {
                if let Some(Value::Object(meta)) = v.get_mut("metadata") {
                    meta.shift_remove("managedFields");
                }
                v
            };
            match twice {
                Ok(twice) if tracked => prop_assert_eq!(twice, once),
                Ok(twice) => prop_assert_eq!(strip(twice), strip(once)),
                Err(e) => prop_assert!(false, "second apply failed: {e}"),
            }
        }
    }
}

#[test]
fn deep_documents_are_refused_everywhere() {
    let mut deep = json!({});
    for _ in 0..600 {
        deep = json!({"spec": deep});
    }
    let schema = EverywhereSchema;
    assert!(json_patch(&deep, b"[]").is_err());
    assert!(merge_patch(&deep, b"{}").is_err());
    assert!(strategic_merge_patch(&deep, b"{}", &schema).is_err());
    assert!(server_side_apply(Some(&deep), &json!({}), "m", false, &schema, "v1", "t").is_err());
    assert!(server_side_apply(None, &deep, "m", false, &schema, "v1", "t").is_err());
    let mut new = deep.clone();
    record_update(
        Some(&deep),
        &mut new,
        "m",
        "Update",
        "v1",
        "t",
        None,
        &schema,
    );
    assert_eq!(new, deep);
    assert_eq!(fields_v1_of(&deep, &schema), json!({}));
}
