use super::*;

const WEB: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n  hostNetwork: true\n  containers:\n  - name: c\n    image: skiff.test/busybox:1\n";

fn pods(text: &str, node: &str) -> Vec<Pod> {
    pods_from_file("/m/web.yaml", text, node, "2026-01-01T00:00:00Z").unwrap()
}

#[test]
fn manifest_names() {
    for (name, want) in [
        ("web.yaml", true),
        ("web.yml", true),
        ("web.json", true),
        (".web.yaml", false),
        (".web.yaml.swp", false),
        ("web.yaml~", false),
        ("README", false),
    ] {
        assert_eq!(is_manifest_name(name), want, "{name}");
    }
}

#[test]
fn static_pod_is_named_defaulted_and_annotated() {
    let p = &pods(WEB, "node-1")[0];
    let m = &p.metadata;
    assert_eq!(m.name.as_deref(), Some("web-node-1"));
    assert_eq!(m.namespace.as_deref(), Some("default"));
    let uid = m.uid.clone().unwrap();
    assert_eq!(uid.len(), 32);
    let ann = m.annotations.as_ref().unwrap();
    assert_eq!(ann[SOURCE_ANNOTATION], "file");
    assert_eq!(ann[HASH_ANNOTATION], uid);
    assert_eq!(ann[SEEN_ANNOTATION], "2026-01-01T00:00:00Z");
    let spec = p.spec.as_ref().unwrap();
    assert_eq!(spec.node_name.as_deref(), Some("node-1"));
    // API defaults applied
    assert_eq!(spec.restart_policy.as_deref(), Some("Always"));
    assert_eq!(
        spec.containers[0].image_pull_policy.as_deref(),
        Some("IfNotPresent")
    );
    assert!(is_static(p) && !is_mirror(p));
}

#[test]
fn uid_is_deterministic_and_follows_content_and_node() {
    let a = pods(WEB, "n1")[0].metadata.uid.clone();
    let again = pods_from_file("/m/web.yaml", WEB, "n1", "later").unwrap()[0]
        .metadata
        .uid
        .clone();
    assert_eq!(a, again, "seen time is not part of the hash");
    let other_node = pods(WEB, "n2")[0].metadata.uid.clone();
    assert_ne!(a, other_node);
    let edited = pods(&WEB.replace("busybox:1", "busybox:2"), "n1")[0]
        .metadata
        .uid
        .clone();
    assert_ne!(a, edited);
}

#[test]
fn multi_document_yaml_and_json() {
    let two = format!(
        "{WEB}---\n---\n{}",
        WEB.replace("name: web", "name: db\n  namespace: kube-system")
    );
    let ps = pods(&two, "n1");
    let names: Vec<(Option<String>, Option<String>)> = ps
        .iter()
        .map(|p| (p.metadata.namespace.clone(), p.metadata.name.clone()))
        .collect();
    assert_eq!(
        names,
        vec![
            (Some("default".into()), Some("web-n1".into())),
            (Some("kube-system".into()), Some("db-n1".into()))
        ]
    );
    let json = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"j"},
        "spec":{"containers":[{"name":"c","image":"i:1"}]}}"#;
    let p = pods_from_file("/m/j.json", json, "n1", "s").unwrap();
    assert_eq!(p[0].metadata.name.as_deref(), Some("j-n1"));
}

#[test]
fn bad_manifests_name_the_file() {
    let cases = [
        ("/m/a.yaml", "{not: [yaml", "a.yaml"),
        ("/m/b.json", "{", "b.json"),
        (
            "/m/c.yaml",
            "apiVersion: v1\nkind: Service\nmetadata: {name: s}\n",
            "kind Pod",
        ),
        (
            "/m/d.yaml",
            "apiVersion: v1\nkind: Pod\nmetadata: {}\nspec: {containers: [{name: c, image: i}]}\n",
            "metadata.name",
        ),
        (
            "/m/e.yaml",
            "apiVersion: v1\nkind: Pod\nmetadata: {name: e}\nspec: {containers: [{name: c}]}\n",
            "image",
        ),
        ("/m/f.yaml", "- 1\n- 2\n", "not an object"),
    ];
    for (file, text, want) in cases {
        let e = pods_from_file(file, text, "n1", "s")
            .unwrap_err()
            .to_string();
        assert!(e.contains(file), "{e}");
        assert!(e.contains(want), "{file}: {e}");
    }
    // one bad document spoils the file
    let mixed = format!("{WEB}---\napiVersion: v1\nkind: Pod\nmetadata: {{}}\n");
    assert!(pods_from_file("/m/x.yaml", &mixed, "n1", "s").is_err());
}

#[test]
fn mirror_carries_hash_and_node_owner() {
    let s = &pods(WEB, "n1")[0];
    let m = mirror_of(s, "n1", "node-uid");
    assert!(is_mirror(&m) && !is_static(&m));
    assert_eq!(m.metadata.uid, None);
    assert_eq!(
        m.metadata.annotations.as_ref().unwrap()[MIRROR_ANNOTATION],
        s.metadata.uid.clone().unwrap()
    );
    let o = &m.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (o.kind.as_str(), o.name.as_str(), o.uid.as_str()),
        ("Node", "n1", "node-uid")
    );
    assert_eq!(o.controller, Some(true));
    assert_eq!(m.metadata.name, s.metadata.name);
}

fn api_mirror(s: &Pod, uid: &str) -> Pod {
    let mut m = mirror_of(s, "n1", "nu");
    m.metadata.uid = Some(uid.into());
    m
}

fn kinds(actions: &[MirrorAction]) -> Vec<String> {
    actions
        .iter()
        .map(|a| match a {
            MirrorAction::Create(p, _) => format!("create {}", p.metadata.name.clone().unwrap()),
            MirrorAction::Delete { name, uid, .. } => format!("delete {name} {uid}"),
            MirrorAction::Status { name, uid, .. } => format!("status {name} {uid}"),
        })
        .collect()
}

#[test]
fn mirror_plans() {
    let mut s = pods(WEB, "n1")[0].clone();
    s.status = Some(serde_json::from_value(json!({"phase": "Running"})).unwrap());
    let st = serde_json::to_value(s.status.as_ref().unwrap()).unwrap();
    let edited = pods(&WEB.replace("busybox:1", "busybox:2"), "n1")[0].clone();
    let mut deleting = api_mirror(&s, "m1");
    deleting.metadata.deletion_timestamp = Some(crate::controllers::podutil::chrono_to_time(
        chrono::Utc::now(),
    ));
    let mut orphan = api_mirror(&s, "m9");
    orphan.metadata.name = Some("gone-n1".into());
    let done: HashMap<String, Value> = HashMap::from([("m1".to_string(), st.clone())]);
    let none = HashMap::new();
    type Case<'a> = (
        &'a str,
        Vec<Pod>,
        Vec<Pod>,
        &'a HashMap<String, Value>,
        Vec<&'a str>,
    );
    let cases: Vec<Case> = vec![
        (
            "no mirror yet: create",
            vec![s.clone()],
            vec![],
            &none,
            vec!["create web-n1"],
        ),
        (
            "mirror without status: write it",
            vec![s.clone()],
            vec![api_mirror(&s, "m1")],
            &none,
            vec!["status web-n1 m1"],
        ),
        (
            "status already written: nothing",
            vec![s.clone()],
            vec![api_mirror(&s, "m1")],
            &done,
            vec![],
        ),
        (
            "user deleted the mirror: finish the delete, recreate next round",
            vec![s.clone()],
            vec![deleting],
            &done,
            vec!["delete web-n1 m1"],
        ),
        (
            "manifest changed: replace the stale mirror",
            vec![edited],
            vec![api_mirror(&s, "m1")],
            &done,
            vec!["delete web-n1 m1"],
        ),
        (
            "file removed: delete the orphan",
            vec![],
            vec![orphan],
            &none,
            vec!["delete gone-n1 m9"],
        ),
    ];
    for (what, statics, mirrors, patched, want) in cases {
        let got = plan_mirrors(&statics, &mirrors, patched, "n1", "nu");
        assert_eq!(kinds(&got), want, "{what}");
    }
}

#[test]
fn scanner_follows_files() {
    let dir = tempfile::tempdir().unwrap();
    let mut sc = Scanner::new(dir.path(), "n1");
    assert!(!sc.scan());
    std::fs::write(dir.path().join("web.yaml"), WEB).unwrap();
    std::fs::write(dir.path().join(".hidden.yaml"), WEB).unwrap();
    std::fs::write(dir.path().join("bad.yaml"), "{nope").unwrap();
    assert!(sc.scan());
    let ps = sc.pods();
    assert_eq!(ps.len(), 1);
    let uid = ps[0].metadata.uid.clone();
    assert!(!sc.scan(), "unchanged files are not read again");
    // a duplicate name in another file is ignored
    std::fs::write(dir.path().join("zz.yml"), WEB).unwrap();
    assert!(sc.scan());
    assert_eq!(sc.pods().len(), 1);
    std::fs::write(
        dir.path().join("web.yaml"),
        WEB.replace("busybox:1", "busybox:22"),
    )
    .unwrap();
    assert!(sc.scan());
    let now = sc.pods();
    assert_ne!(now[0].metadata.uid, uid);
    std::fs::remove_file(dir.path().join("web.yaml")).unwrap();
    std::fs::remove_file(dir.path().join("zz.yml")).unwrap();
    assert!(sc.scan());
    assert!(sc.pods().is_empty());
}

fn api_pod(uid: &str, mirror: bool) -> Pod {
    let mut p = Pod::default();
    p.metadata.uid = Some(uid.into());
    p.metadata.name = Some(format!("p-{uid}"));
    if mirror {
        p.metadata.annotations = Some(BTreeMap::from([(
            MIRROR_ANNOTATION.to_string(),
            "h".into(),
        )]));
    }
    p
}

fn uids(c: &MirrorCache) -> Option<Vec<String>> {
    c.snapshot().map(|v| {
        let mut u: Vec<String> = v.into_iter().filter_map(|p| p.metadata.uid).collect();
        u.sort();
        u
    })
}

#[test]
fn mirror_cache_follows_the_watch() {
    let c = MirrorCache::default();
    assert_eq!(uids(&c), None, "not synced before the first list ends");
    c.relist_started();
    c.apply(&api_pod("a", true));
    c.apply(&api_pod("b", false));
    assert_eq!(uids(&c), None);
    c.relist_done();
    assert_eq!(
        uids(&c),
        Some(vec!["a".to_string()]),
        "only mirrors are kept"
    );
    c.apply(&api_pod("c", true));
    c.delete("a");
    assert_eq!(uids(&c), Some(vec!["c".to_string()]));
    // a relist replaces the set: a mirror deleted while disconnected goes
    c.relist_started();
    c.apply(&api_pod("d", true));
    assert_eq!(
        uids(&c),
        Some(vec!["c".to_string()]),
        "old set until the list ends"
    );
    c.relist_done();
    assert_eq!(uids(&c), Some(vec!["d".to_string()]));
}
