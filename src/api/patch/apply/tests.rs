//! Server-side apply and ownership-tracking cases, written against what
//! upstream kube-apiserver does for the same sequence of requests.

use super::super::schema::BuiltinMergeSchema;
use super::*;
use serde_json::json;

const T0: &str = "2025-01-01T00:00:00Z";
const T1: &str = "2025-01-01T00:01:00Z";
const T2: &str = "2025-01-01T00:02:00Z";

fn deploy_schema() -> BuiltinMergeSchema {
    BuiltinMergeSchema::for_kind("apps", "Deployment")
}

fn cm_schema() -> BuiltinMergeSchema {
    BuiltinMergeSchema::for_kind("", "ConfigMap")
}

fn deployment(replicas: i64, image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "nginx", "image": image, "ports": [{"containerPort": 80}]}]}
            }
        }
    })
}

fn configmap(data: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm", "namespace": "default"}, "data": data})
}

fn entries(obj: &Value) -> Vec<Value> {
    obj.pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

fn entry<'a>(entries: &'a [Value], manager: &str, operation: &str) -> Option<&'a Value> {
    entries
        .iter()
        .find(|e| e["manager"] == json!(manager) && e["operation"] == json!(operation))
}

fn owned_paths(obj: &Value, manager: &str, operation: &str) -> Vec<String> {
    let all = entries(obj);
    let Some(e) = entry(&all, manager, operation) else {
        return Vec::new();
    };
    let set = FieldSet::from_fields_v1(&e["fieldsV1"]).unwrap();
    set.paths().iter().map(|p| path_string(p)).collect()
}

/// A Deployment as `kubectl apply` (client-side) leaves it: created by an
/// Update from "kubectl-client-side-apply".
fn created_by_client_side_apply(replicas: i64) -> Value {
    let mut obj = deployment(replicas, "nginx:1.25");
    record_update(
        None,
        &mut obj,
        "kubectl-client-side-apply",
        "Update",
        "apps/v1",
        T0,
        None,
        &deploy_schema(),
    );
    obj
}

#[test]
fn create_by_apply_records_the_applied_fields() {
    let applied = configmap(json!({"a": "1"}));
    let mut applied_with_labels = applied.clone();
    applied_with_labels["metadata"]["labels"] = json!({"team": "x"});
    let out = server_side_apply(
        None,
        &applied_with_labels,
        "kubectl",
        false,
        &cm_schema(),
        "v1",
        T0,
    )
    .unwrap();
    assert_eq!(
        out["metadata"]["managedFields"],
        json!([{
            "manager": "kubectl", "operation": "Apply", "apiVersion": "v1", "time": T0,
            "fieldsType": "FieldsV1",
            "fieldsV1": {"f:data": {"f:a": {}}, "f:metadata": {"f:labels": {"f:team": {}}}}
        }])
    );
    assert_eq!(out["data"], json!({"a": "1"}));
    let keys: Vec<&String> = out["metadata"].as_object().unwrap().keys().collect();
    assert_eq!(keys, vec!["name", "namespace", "labels", "managedFields"]);
}

#[test]
fn conflict_on_replicas_with_another_manager() {
    let live = created_by_client_side_apply(1);
    assert!(
        owned_paths(&live, "kubectl-client-side-apply", "Update")
            .contains(&".spec.replicas".to_string())
    );

    let err = server_side_apply(
        Some(&live),
        &deployment(3, "nginx:1.25"),
        "kubectl",
        false,
        &deploy_schema(),
        "apps/v1",
        T1,
    )
    .unwrap_err();
    let ApplyError::Conflicts(conflicts) = &err else {
        panic!("{err:?}");
    };
    assert_eq!(
        conflicts,
        &vec![Conflict {
            manager: "kubectl-client-side-apply".into(),
            operation: "Update".into(),
            api_version: "apps/v1".into(),
            subresource: None,
            field: ".spec.replicas".into(),
        }]
    );
    assert_eq!(
        err.to_string(),
        "Apply failed with 1 conflict: conflict with \"kubectl-client-side-apply\" using apps/v1: .spec.replicas"
    );
    assert_eq!(
        conflicts[0].cause_message(),
        "conflict with \"kubectl-client-side-apply\" using apps/v1"
    );
}

#[test]
fn same_values_are_shared_without_conflict() {
    let live = created_by_client_side_apply(1);
    let out = server_side_apply(
        Some(&live),
        &deployment(1, "nginx:1.25"),
        "kubectl",
        false,
        &deploy_schema(),
        "apps/v1",
        T1,
    )
    .unwrap();
    assert!(owned_paths(&out, "kubectl", "Apply").contains(&".spec.replicas".to_string()));
    assert!(
        owned_paths(&out, "kubectl-client-side-apply", "Update")
            .contains(&".spec.replicas".to_string())
    );
    // Apply entries are listed first.
    assert_eq!(entries(&out)[0]["operation"], json!("Apply"));
}

#[test]
fn force_moves_ownership() {
    let live = created_by_client_side_apply(1);
    let out = server_side_apply(
        Some(&live),
        &deployment(3, "nginx:1.25"),
        "kubectl",
        true,
        &deploy_schema(),
        "apps/v1",
        T1,
    )
    .unwrap();
    assert_eq!(out["spec"]["replicas"], json!(3));
    assert!(owned_paths(&out, "kubectl", "Apply").contains(&".spec.replicas".to_string()));
    let old_owner = owned_paths(&out, "kubectl-client-side-apply", "Update");
    assert!(!old_owner.contains(&".spec.replicas".to_string()));
    assert!(
        old_owner.contains(&".spec.template.spec.containers[name=\"nginx\"].image".to_string())
    );
    // The old owner keeps its time; the applier's is now.
    let all = entries(&out);
    assert_eq!(
        entry(&all, "kubectl-client-side-apply", "Update").unwrap()["time"],
        json!(T0)
    );
    assert_eq!(entry(&all, "kubectl", "Apply").unwrap()["time"], json!(T1));
}

#[test]
fn removing_a_field_from_the_applied_config_deletes_it() {
    let first = server_side_apply(
        None,
        &configmap(json!({"a": "1", "b": "2"})),
        "kubectl",
        false,
        &cm_schema(),
        "v1",
        T0,
    )
    .unwrap();
    let second = server_side_apply(
        Some(&first),
        &configmap(json!({"a": "1"})),
        "kubectl",
        false,
        &cm_schema(),
        "v1",
        T1,
    )
    .unwrap();
    assert_eq!(second["data"], json!({"a": "1"}));
    assert_eq!(owned_paths(&second, "kubectl", "Apply"), vec![".data.a"]);
    // Dropping every key removes the emptied map too.
    let third = server_side_apply(
        Some(&second),
        &configmap(json!({})),
        "kubectl",
        false,
        &cm_schema(),
        "v1",
        T2,
    )
    .unwrap();
    assert_eq!(
        third["data"],
        json!({}),
        "an explicit {{}} is applied as is"
    );
    let mut no_data = configmap(json!({}));
    no_data.as_object_mut().unwrap().shift_remove("data");
    let fourth = server_side_apply(
        Some(&second),
        &no_data,
        "kubectl",
        false,
        &cm_schema(),
        "v1",
        T2,
    )
    .unwrap();
    assert_eq!(fourth.get("data"), None);
    assert_eq!(fourth.pointer("/metadata/managedFields"), None);
}

#[test]
fn a_field_another_applier_owns_is_not_deleted() {
    let first = server_side_apply(
        None,
        &configmap(json!({"a": "1", "b": "2"})),
        "alice",
        false,
        &cm_schema(),
        "v1",
        T0,
    )
    .unwrap();
    let shared = server_side_apply(
        Some(&first),
        &configmap(json!({"b": "2"})),
        "bob",
        false,
        &cm_schema(),
        "v1",
        T1,
    )
    .unwrap();
    let out = server_side_apply(
        Some(&shared),
        &configmap(json!({"a": "1"})),
        "alice",
        false,
        &cm_schema(),
        "v1",
        T2,
    )
    .unwrap();
    assert_eq!(out["data"], json!({"a": "1", "b": "2"}));
    assert_eq!(owned_paths(&out, "bob", "Apply"), vec![".data.b"]);
    assert_eq!(owned_paths(&out, "alice", "Apply"), vec![".data.a"]);
}

#[test]
fn two_conflicts_message_lists_paths_per_manager() {
    let mut live = configmap(json!({"a": "1", "b": "2"}));
    record_update(None, &mut live, "x", "Update", "v1", T0, None, &cm_schema());
    let err = server_side_apply(
        Some(&live),
        &configmap(json!({"a": "9", "b": "9"})),
        "kubectl",
        false,
        &cm_schema(),
        "v1",
        T1,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "Apply failed with 2 conflicts: conflicts with \"x\" using v1:\n- .data.a\n- .data.b"
    );
}

#[test]
fn conflicts_with_an_applier_do_not_say_using() {
    let first = server_side_apply(
        None,
        &configmap(json!({"a": "1"})),
        "alice",
        false,
        &cm_schema(),
        "v1",
        T0,
    )
    .unwrap();
    let err = server_side_apply(
        Some(&first),
        &configmap(json!({"a": "2"})),
        "bob",
        false,
        &cm_schema(),
        "v1",
        T1,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "Apply failed with 1 conflict: conflict with \"alice\": .data.a"
    );
}

#[test]
fn keyed_lists_merge_by_key_and_conflicts_name_the_item() {
    let schema = deploy_schema();
    let applied = server_side_apply(
        None,
        &deployment(1, "nginx:1.25"),
        "kubectl",
        false,
        &schema,
        "apps/v1",
        T0,
    )
    .unwrap();
    assert!(owned_paths(&applied, "kubectl", "Apply")
        .contains(&".spec.template.spec.containers[name=\"nginx\"].ports[containerPort=80,protocol=\"TCP\"].containerPort".to_string()));
    assert!(
        owned_paths(&applied, "kubectl", "Apply").contains(&".spec.selector".to_string()),
        "selectors are atomic"
    );

    // A controller adds a sidecar and bumps nginx's image with an update.
    let mut edited = applied.clone();
    edited["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:1.26");
    edited["spec"]["template"]["spec"]["containers"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "sidecar", "image": "busybox"}));
    record_update(
        Some(&applied),
        &mut edited,
        "injector",
        "Update",
        "apps/v1",
        T1,
        None,
        &schema,
    );
    let injector = owned_paths(&edited, "injector", "Update");
    assert!(injector.contains(&".spec.template.spec.containers[name=\"sidecar\"]".to_string()));
    assert!(injector.contains(&".spec.template.spec.containers[name=\"nginx\"].image".to_string()));
    assert!(
        !owned_paths(&edited, "kubectl", "Apply")
            .contains(&".spec.template.spec.containers[name=\"nginx\"].image".to_string())
    );

    // Re-applying the old image conflicts on the item's field.
    let err = server_side_apply(
        Some(&edited),
        &deployment(1, "nginx:1.25"),
        "kubectl",
        false,
        &schema,
        "apps/v1",
        T2,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "Apply failed with 1 conflict: conflict with \"injector\" using apps/v1: .spec.template.spec.containers[name=\"nginx\"].image"
    );

    // Applying without touching the image keeps the sidecar and the new image.
    let out = server_side_apply(
        Some(&edited),
        &deployment(2, "nginx:1.26"),
        "kubectl",
        false,
        &schema,
        "apps/v1",
        T2,
    )
    .unwrap();
    let containers = &out["spec"]["template"]["spec"]["containers"];
    assert_eq!(containers[0]["name"], json!("nginx"));
    assert_eq!(containers[0]["image"], json!("nginx:1.26"));
    assert_eq!(containers[1]["name"], json!("sidecar"));
    assert_eq!(out["spec"]["replicas"], json!(2));
}

#[test]
fn dropping_an_applied_list_item_removes_it() {
    let schema = deploy_schema();
    let mut two = deployment(1, "nginx:1.25");
    two["spec"]["template"]["spec"]["containers"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "extra", "image": "e"}));
    let first = server_side_apply(None, &two, "kubectl", false, &schema, "apps/v1", T0).unwrap();
    let out = server_side_apply(
        Some(&first),
        &deployment(1, "nginx:1.25"),
        "kubectl",
        false,
        &schema,
        "apps/v1",
        T1,
    )
    .unwrap();
    let names: Vec<&Value> = out["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| &c["name"])
        .collect();
    assert_eq!(names, vec![&json!("nginx")]);
}

#[test]
fn list_items_keep_both_orders() {
    let schema = deploy_schema();
    let with = |names: &[&str]| {
        let mut d = deployment(1, "x");
        d["spec"]["template"]["spec"]["containers"] = Value::Array(
            names
                .iter()
                .map(|n| json!({"name": n, "image": "i"}))
                .collect(),
        );
        d
    };
    let first = server_side_apply(
        None,
        &with(&["a", "b", "c"]),
        "kubectl",
        false,
        &schema,
        "apps/v1",
        T0,
    )
    .unwrap();
    let out = server_side_apply(
        Some(&first),
        &with(&["a", "x", "c"]),
        "kubectl",
        false,
        &schema,
        "apps/v1",
        T1,
    )
    .unwrap();
    let names: Vec<&str> = out["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["a", "x", "c"]);
}

#[test]
fn finalizers_are_a_set() {
    let schema = cm_schema();
    let mut applied = configmap(json!({}));
    applied["metadata"]["finalizers"] = json!(["a/x", "b/y"]);
    let first = server_side_apply(None, &applied, "kubectl", false, &schema, "v1", T0).unwrap();
    assert_eq!(
        first["metadata"]["managedFields"][0]["fieldsV1"]["f:metadata"],
        json!({"f:finalizers": {"v:\"a/x\"": {}, "v:\"b/y\"": {}}})
    );
    let mut other = first.clone();
    other["metadata"]["finalizers"] = json!(["a/x", "b/y", "c/z"]);
    record_update(
        Some(&first),
        &mut other,
        "controller",
        "Update",
        "v1",
        T1,
        None,
        &schema,
    );
    applied["metadata"]["finalizers"] = json!(["a/x"]);
    let out =
        server_side_apply(Some(&other), &applied, "kubectl", false, &schema, "v1", T2).unwrap();
    assert_eq!(out["metadata"]["finalizers"], json!(["a/x", "c/z"]));
}

#[test]
fn object_without_managed_fields_is_owned_before_first_apply() {
    let live = deployment(1, "nginx:1.25");
    let err = server_side_apply(
        Some(&live),
        &deployment(5, "nginx:1.25"),
        "kubectl",
        false,
        &deploy_schema(),
        "apps/v1",
        T1,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "Apply failed with 1 conflict: conflict with \"before-first-apply\" using apps/v1: .spec.replicas"
    );
    let ok = server_side_apply(
        Some(&live),
        &deployment(1, "nginx:1.25"),
        "kubectl",
        false,
        &deploy_schema(),
        "apps/v1",
        T1,
    )
    .unwrap();
    assert!(!owned_paths(&ok, "before-first-apply", "Update").is_empty());
}

#[test]
fn status_and_server_metadata_are_neither_applied_nor_owned() {
    let mut live = created_by_client_side_apply(1);
    live["metadata"]["uid"] = json!("u-1");
    live["metadata"]["resourceVersion"] = json!("7");
    live["status"] = json!({"replicas": 1});
    let mut applied = deployment(1, "nginx:1.25");
    applied["status"] = json!({"replicas": 99});
    applied["metadata"]["uid"] = json!("other");
    applied["metadata"]["resourceVersion"] = json!("1");
    let out = server_side_apply(
        Some(&live),
        &applied,
        "kubectl",
        false,
        &deploy_schema(),
        "apps/v1",
        T1,
    )
    .unwrap();
    assert_eq!(out["status"], json!({"replicas": 1}));
    assert_eq!(out["metadata"]["uid"], json!("u-1"));
    assert_eq!(out["metadata"]["resourceVersion"], json!("7"));
    let mine = owned_paths(&out, "kubectl", "Apply");
    assert!(
        mine.iter().all(|p| !p.starts_with(".status")
            && !p.starts_with(".metadata.uid")
            && p != ".metadata.name"),
        "{mine:?}"
    );
}

#[test]
fn status_subresource_apply_owns_status_only() {
    let live = created_by_client_side_apply(1);
    let mut applied = deployment(7, "other");
    applied["status"] = json!({"readyReplicas": 1});
    let out = apply(
        Some(&live),
        &applied,
        &deploy_schema(),
        &ApplyOptions {
            manager: "controller",
            force: false,
            api_version: "apps/v1",
            now: T1,
            subresource: Some("status"),
            reset_fields: &[&["spec"], &["metadata"]],
        },
    )
    .unwrap();
    assert_eq!(out["spec"], live["spec"]);
    assert_eq!(out["status"], json!({"readyReplicas": 1}));
    let all = entries(&out);
    let e = entry(&all, "controller", "Apply").unwrap();
    assert_eq!(e["subresource"], json!("status"));
    assert_eq!(e["fieldsV1"], json!({"f:status": {"f:readyReplicas": {}}}));
}

#[test]
fn invalid_applied_configurations() {
    let schema = deploy_schema();
    let mut missing_key = deployment(1, "x");
    missing_key["spec"]["template"]["spec"]["containers"] = json!([{"image": "x"}]);
    let mut duplicate = deployment(1, "x");
    duplicate["spec"]["template"]["spec"]["containers"] = json!([{"name": "a"}, {"name": "a"}]);
    let mut with_managed = deployment(1, "x");
    with_managed["metadata"]["managedFields"] = json!([]);
    let cases = vec![
        (
            missing_key,
            "failed to create typed patch object: .spec.template.spec.containers: element 0: associative list with keys has an element that omits key field \"name\" (and doesn't have default value)",
        ),
        (
            duplicate,
            "failed to create typed patch object: .spec.template.spec.containers: duplicate entries for key [name=\"a\"]",
        ),
        (with_managed, "metadata.managedFields must be nil"),
        (
            json!([1]),
            "the applied configuration must be a JSON object",
        ),
    ];
    for (applied, want) in cases {
        assert_eq!(
            server_side_apply(None, &applied, "kubectl", false, &schema, "apps/v1", T0),
            Err(ApplyError::Invalid(want.to_string()))
        );
    }
}

#[test]
fn record_update_tracks_changes_and_moves_ownership() {
    let schema = cm_schema();
    let mut created = configmap(json!({"a": "1"}));
    record_update(
        None,
        &mut created,
        "creator",
        "Update",
        "v1",
        T0,
        None,
        &schema,
    );
    assert_eq!(
        created["metadata"]["managedFields"],
        json!([{"manager": "creator", "operation": "Update", "apiVersion": "v1", "time": T0,
                "fieldsType": "FieldsV1", "fieldsV1": {"f:data": {".": {}, "f:a": {}}}}])
    );

    let mut edited = created.clone();
    edited["data"] = json!({"a": "2", "b": "1"});
    record_update(
        Some(&created),
        &mut edited,
        "editor",
        "Update",
        "v1",
        T1,
        None,
        &schema,
    );
    assert_eq!(
        owned_paths(&edited, "editor", "Update"),
        vec![".data.a", ".data.b"]
    );
    assert_eq!(owned_paths(&edited, "creator", "Update"), vec![".data"]);

    // A no-op write changes nothing, not even times.
    let mut same = edited.clone();
    record_update(
        Some(&edited),
        &mut same,
        "third",
        "Update",
        "v1",
        T2,
        None,
        &schema,
    );
    assert_eq!(same, edited);

    // Removing a field takes it out of every set.
    let mut removed = edited.clone();
    removed["data"].as_object_mut().unwrap().shift_remove("b");
    record_update(
        Some(&edited),
        &mut removed,
        "third",
        "Update",
        "v1",
        T2,
        None,
        &schema,
    );
    assert_eq!(owned_paths(&removed, "editor", "Update"), vec![".data.a"]);
    assert!(entry(&entries(&removed), "third", "Update").is_none());
}

#[test]
fn record_update_managed_fields_rules() {
    let schema = cm_schema();
    let mut created = configmap(json!({"a": "1"}));
    record_update(
        None,
        &mut created,
        "creator",
        "Update",
        "v1",
        T0,
        None,
        &schema,
    );

    // `[{}]` resets: the object stops being tracked.
    let mut reset = created.clone();
    reset["metadata"]["managedFields"] = json!([{}]);
    reset["data"]["a"] = json!("2");
    record_update(
        Some(&created),
        &mut reset,
        "editor",
        "Update",
        "v1",
        T1,
        None,
        &schema,
    );
    assert_eq!(reset.pointer("/metadata/managedFields"), None);

    // An untracked object stays untracked on update.
    let mut later = reset.clone();
    later["data"]["a"] = json!("3");
    record_update(
        Some(&reset),
        &mut later,
        "editor",
        "Update",
        "v1",
        T2,
        None,
        &schema,
    );
    assert_eq!(later.pointer("/metadata/managedFields"), None);

    // A client that drops managedFields does not erase them.
    let mut dropped = created.clone();
    dropped["metadata"]
        .as_object_mut()
        .unwrap()
        .shift_remove("managedFields");
    dropped["data"]["b"] = json!("x");
    record_update(
        Some(&created),
        &mut dropped,
        "editor",
        "Update",
        "v1",
        T1,
        None,
        &schema,
    );
    assert_eq!(
        owned_paths(&dropped, "creator", "Update"),
        vec![".data", ".data.a"]
    );
    assert_eq!(owned_paths(&dropped, "editor", "Update"), vec![".data.b"]);

    // Garbage managedFields from a client fall back to the live ones.
    let mut garbage = created.clone();
    garbage["metadata"]["managedFields"] = json!([{"manager": "m", "operation": "Nope"}]);
    record_update(
        Some(&created),
        &mut garbage,
        "editor",
        "Update",
        "v1",
        T1,
        None,
        &schema,
    );
    assert_eq!(
        owned_paths(&garbage, "creator", "Update"),
        vec![".data", ".data.a"]
    );

    // Status writes are recorded with their subresource.
    let mut with_status = created.clone();
    with_status["status"] = json!({"phase": "ok"});
    record_update(
        Some(&created),
        &mut with_status,
        "kubelet",
        "Update",
        "v1",
        T1,
        Some("status"),
        &schema,
    );
    let all = entries(&with_status);
    let kubelet = entry(&all, "kubelet", "Update").unwrap();
    assert_eq!(kubelet["subresource"], json!("status"));
}

#[test]
fn fields_v1_of_an_object() {
    let obj = deployment(1, "nginx");
    let v1 = fields_v1_of(&obj, &deploy_schema());
    assert_eq!(v1["f:spec"]["f:replicas"], json!({}));
    assert_eq!(v1["f:spec"]["f:selector"], json!({}));
    assert!(
        v1["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"nginx\"}"].is_object()
    );
    assert!(v1.get("f:apiVersion").is_none());
    assert!(v1["f:metadata"].get("f:name").is_none());
}
