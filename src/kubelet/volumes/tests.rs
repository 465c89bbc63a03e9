//! `prepare` / `mounts_for` / `teardown` against a fake API server (a tower
//! service answering GETs from a map) on the real filesystem. Tmpfs cases
//! run only as root.

use super::*;
use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::sync::{Arc, Mutex};

use base64::Engine;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use serde_json::{Value, json};

#[derive(Clone, Default)]
struct FakeApi {
    objects: Arc<Mutex<HashMap<String, Value>>>,
    token_requests: Arc<Mutex<Vec<String>>>,
}

impl FakeApi {
    fn put(&self, path: &str, v: Value) {
        self.objects.lock().unwrap().insert(path.to_string(), v);
    }
    fn client(&self) -> kube::Client {
        let me = self.clone();
        let svc = tower::service_fn(move |req: Request<kube::client::Body>| {
            let me = me.clone();
            async move {
                let path = req.uri().path().to_string();
                let (status, body) = if req.method() == http::Method::POST
                    && path.ends_with("/token")
                {
                    me.token_requests.lock().unwrap().push(path.clone());
                    let now = chrono::Utc::now().timestamp();
                    let b64 = |v: Value| {
                        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
                    };
                    let n = me.token_requests.lock().unwrap().len();
                    let tok = format!(
                        "{}.{}.sig{n}",
                        b64(json!({"alg": "ES256"})),
                        b64(json!({"iat": now, "exp": now + 3607}))
                    );
                    (
                        StatusCode::CREATED,
                        json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                               "spec": {"audiences": []}, "status": {"token": tok, "expirationTimestamp": "2030-01-01T00:00:00Z"}}),
                    )
                } else if let Some(v) = me.objects.lock().unwrap().get(&path) {
                    (StatusCode::OK, v.clone())
                } else {
                    let name = path.rsplit('/').next().unwrap_or_default().to_string();
                    (
                        StatusCode::NOT_FOUND,
                        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                               "reason": "NotFound", "code": 404, "message": format!("{name} not found")}),
                    )
                };
                let resp = Response::builder()
                    .status(status)
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from(body.to_string())))
                    .unwrap();
                Ok::<_, std::convert::Infallible>(resp)
            }
        });
        kube::Client::new(svc, "default")
    }
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn pod_with(volumes: Value, mounts: Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": "ns1", "uid": format!("uid-{}", rand::random::<u32>()),
                     "labels": {"app": "web"}},
        "spec": {"nodeName": "n1", "containers": [{"name": "app", "image": "x",
                 "env": [{"name": "SUB", "value": "logs"}],
                 "volumeMounts": mounts}],
                 "volumes": volumes}
    }))
    .unwrap()
}

fn ctx(api: &FakeApi, dir: &Path) -> VolumeContext {
    VolumeContext {
        client: api.client(),
        pods_dir: dir.to_path_buf(),
        node_name: "n1".into(),
        reads: None,
    }
}

#[tokio::test]
async fn config_map_secret_downward_and_mounts() {
    let tmp = tempfile::tempdir().unwrap();
    let api = FakeApi::default();
    api.put(
        "/api/v1/namespaces/ns1/configmaps/cfg",
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"},
               "data": {"app.conf": "v1", "other": "o"}}),
    );
    api.put(
        "/api/v1/namespaces/ns1/secrets/sec",
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "sec"},
               "data": {"password": "aHVudGVyMg=="}}),
    );
    let pod = pod_with(
        json!([
            {"name": "cfg", "configMap": {"name": "cfg", "items": [{"key": "app.conf", "path": "conf/app.conf", "mode": 0o600}]}},
            {"name": "sec", "secret": {"secretName": "sec", "defaultMode": 0o400}},
            {"name": "info", "downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}},
            {"name": "scratch", "emptyDir": {}},
            {"name": "host", "hostPath": {"path": tmp.path().join("hp").to_str().unwrap(), "type": "DirectoryOrCreate"}},
            {"name": "optional", "configMap": {"name": "nope", "optional": true}}
        ]),
        json!([
            {"name": "cfg", "mountPath": "/etc/app"},
            {"name": "cfg", "mountPath": "/etc/one.conf", "subPath": "conf/app.conf"},
            {"name": "sec", "mountPath": "/secret"},
            {"name": "info", "mountPath": "/info"},
            {"name": "scratch", "mountPath": "/scratch", "mountPropagation": "HostToContainer"},
            {"name": "scratch", "mountPath": "/logs", "subPathExpr": "$(SUB)/x"},
            {"name": "host", "mountPath": "/host", "readOnly": true}
        ]),
    );
    let c = ctx(&api, tmp.path());
    let uid = pod.metadata.uid.clone().unwrap();
    let prepared = prepare(&c, &pod).await.unwrap();
    let vol = tmp.path().join(&uid).join("volumes");
    assert_eq!(
        fs::read_to_string(vol.join("kubernetes.io~configmap/cfg/conf/app.conf")).unwrap(),
        "v1"
    );
    assert!(!vol.join("kubernetes.io~configmap/cfg/other").exists());
    assert_eq!(
        fs::read_to_string(vol.join("kubernetes.io~secret/sec/password")).unwrap(),
        "hunter2"
    );
    let mode = fs::metadata(vol.join("kubernetes.io~secret/sec/password"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o400);
    assert_eq!(
        fs::read_to_string(vol.join("kubernetes.io~downward-api/info/labels")).unwrap(),
        "app=\"web\""
    );
    let ed = fs::metadata(vol.join("kubernetes.io~empty-dir/scratch")).unwrap();
    assert_eq!(ed.permissions().mode() & 0o777, 0o777);
    assert!(tmp.path().join("hp").is_dir());
    if is_root() {
        assert!(host::is_mount_point(&vol.join("kubernetes.io~secret/sec")).unwrap());
    }

    let mounts = prepared
        .mounts_for(&pod.spec.as_ref().unwrap().containers[0])
        .unwrap();
    let by_path: HashMap<&str, &Mount> = mounts
        .iter()
        .map(|m| (m.container_path.as_str(), m))
        .collect();
    assert!(by_path["/etc/app"].readonly, "configMap is read-only");
    assert!(
        by_path["/etc/one.conf"].host_path.contains("/..20"),
        "subPath binds one generation: {}",
        by_path["/etc/one.conf"].host_path
    );
    assert!(
        by_path["/etc/one.conf"]
            .host_path
            .ends_with("/conf/app.conf")
    );
    assert!(by_path["/secret"].readonly);
    assert!(!by_path["/scratch"].readonly);
    assert_eq!(
        by_path["/scratch"].propagation,
        MountPropagation::PropagationHostToContainer as i32
    );
    assert!(
        by_path["/logs"]
            .host_path
            .ends_with("kubernetes.io~empty-dir/scratch/logs/x")
    );
    assert!(Path::new(&by_path["/logs"].host_path).is_dir());
    assert!(by_path["/host"].readonly);

    // an update propagates through the ..data link; an idempotent re-run
    // with unchanged data keeps the same generation
    let gen_before = fs::read_link(vol.join("kubernetes.io~configmap/cfg/..data")).unwrap();
    prepare(&c, &pod).await.unwrap();
    assert_eq!(
        fs::read_link(vol.join("kubernetes.io~configmap/cfg/..data")).unwrap(),
        gen_before
    );
    api.put(
        "/api/v1/namespaces/ns1/configmaps/cfg",
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"},
               "data": {"app.conf": "v2"}}),
    );
    prepare(&c, &pod).await.unwrap();
    assert_eq!(
        fs::read_to_string(vol.join("kubernetes.io~configmap/cfg/conf/app.conf")).unwrap(),
        "v2"
    );

    // /etc/hosts
    assert!(prepared.etc_hosts_mount().is_none());
    prepared
        .write_etc_hosts(&pod, Some("10.42.0.9".parse().unwrap()))
        .await
        .unwrap();
    let m = prepared.etc_hosts_mount().unwrap();
    assert!(
        fs::read_to_string(&m.host_path)
            .unwrap()
            .contains("10.42.0.9\tweb\n")
    );

    // a file placed in hostPath survives teardown
    fs::write(tmp.path().join("hp/keep"), "1").unwrap();
    teardown(tmp.path(), &uid).await.unwrap();
    assert!(!tmp.path().join(&uid).exists());
    assert!(tmp.path().join("hp/keep").exists());
    teardown(tmp.path(), &uid).await.unwrap();
    assert!(teardown(tmp.path(), "../x").await.is_err());
}

#[tokio::test]
async fn failures_have_upstream_messages() {
    let tmp = tempfile::tempdir().unwrap();
    let api = FakeApi::default();
    api.put(
        "/api/v1/namespaces/ns1/persistentvolumeclaims/pending",
        json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "pending"},
               "spec": {}, "status": {"phase": "Pending"}}),
    );
    let c = ctx(&api, tmp.path());
    let cases = [
        (
            json!({"name": "cfg", "configMap": {"name": "x"}}),
            "MountVolume.SetUp failed for volume \"cfg\" : configmap \"x\" not found",
        ),
        (
            json!({"name": "s", "secret": {"secretName": "y"}}),
            "MountVolume.SetUp failed for volume \"s\" : secret \"y\" not found",
        ),
        (
            json!({"name": "d", "persistentVolumeClaim": {"claimName": "pending"}}),
            "MountVolume.SetUp failed for volume \"d\" : persistentvolumeclaim \"pending\" is not bound",
        ),
        (
            json!({"name": "d", "persistentVolumeClaim": {"claimName": "gone"}}),
            "MountVolume.SetUp failed for volume \"d\" : persistentvolumeclaim \"gone\" not found",
        ),
        (
            json!({"name": "h", "hostPath": {"path": "/nonexistent-skiff", "type": "Directory"}}),
            "MountVolume.SetUp failed for volume \"h\" : hostPath type check failed: /nonexistent-skiff is not a directory",
        ),
        (
            json!({"name": "n", "nfs": {"server": "s", "path": "/"}}),
            "MountVolume.SetUp failed for volume \"n\" : unsupported volume type \"nfs\": this node supports emptyDir, hostPath, configMap, secret, downwardAPI, projected, persistentVolumeClaim and ephemeral",
        ),
    ];
    for (vol, want) in cases {
        let pod = pod_with(json!([vol]), json!([]));
        let err = prepare(&c, &pod).await.unwrap_err();
        assert_eq!(err.to_string(), want);
    }
    // a mount naming no volume, and an escaping subPath
    let pod = pod_with(
        json!([{"name": "e", "emptyDir": {}}]),
        json!([{"name": "zz", "mountPath": "/x"}]),
    );
    let p = prepare(&c, &pod).await.unwrap();
    let err = p
        .mounts_for(&pod.spec.as_ref().unwrap().containers[0])
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot find volume \"zz\" to mount into container \"app\""
    );
    let uid = pod.metadata.uid.clone().unwrap();
    let ed = tmp
        .path()
        .join(&uid)
        .join("volumes/kubernetes.io~empty-dir/e");
    std::os::unix::fs::symlink("/etc", ed.join("evil")).unwrap();
    let c2: Container = serde_json::from_value(json!({"name": "app",
        "volumeMounts": [{"name": "e", "mountPath": "/x", "subPath": "evil"}]}))
    .unwrap();
    let err = p.mounts_for(&c2).unwrap_err().to_string();
    assert!(
        err.starts_with("failed to prepare subPath for volumeMount \"e\" of container \"app\": subpath \"/etc\" not within volume path"),
        "{err}"
    );
    teardown(tmp.path(), &uid).await.unwrap();
    assert!(Path::new("/etc/passwd").exists());
}

#[tokio::test]
async fn projected_kube_api_access_and_token_reuse() {
    let tmp = tempfile::tempdir().unwrap();
    let api = FakeApi::default();
    api.put(
        "/api/v1/namespaces/ns1/configmaps/kube-root-ca.crt",
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "kube-root-ca.crt"},
               "data": {"ca.crt": "PEM"}}),
    );
    let pod = pod_with(
        json!([{"name": "kube-api-access-abcde", "projected": {"defaultMode": 0o644, "sources": [
            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}
        ]}}]),
        json!([{"name": "kube-api-access-abcde", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}]),
    );
    let c = ctx(&api, tmp.path());
    let uid = pod.metadata.uid.clone().unwrap();
    let p = prepare(&c, &pod).await.unwrap();
    let dir = tmp
        .path()
        .join(&uid)
        .join("volumes/kubernetes.io~projected/kube-api-access-abcde");
    let tok = fs::read_to_string(dir.join("token")).unwrap();
    assert!(tok.ends_with(".sig1"));
    assert_eq!(fs::read_to_string(dir.join("ca.crt")).unwrap(), "PEM");
    assert_eq!(fs::read_to_string(dir.join("namespace")).unwrap(), "ns1");
    assert_eq!(
        api.token_requests.lock().unwrap().as_slice(),
        ["/api/v1/namespaces/ns1/serviceaccounts/default/token"]
    );
    // a fresh token is reused on the next sync
    prepare(&c, &pod).await.unwrap();
    assert_eq!(api.token_requests.lock().unwrap().len(), 1);
    let m = p
        .mounts_for(&pod.spec.as_ref().unwrap().containers[0])
        .unwrap();
    assert!(m[0].readonly);
    teardown(tmp.path(), &uid).await.unwrap();
    assert!(!tmp.path().join(&uid).exists());
}

#[tokio::test]
async fn memory_empty_dir_is_tmpfs_and_unmounted() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let api = FakeApi::default();
    let pod = pod_with(
        json!([{"name": "m", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}}]),
        json!([]),
    );
    let uid = pod.metadata.uid.clone().unwrap();
    let c = ctx(&api, tmp.path());
    prepare(&c, &pod).await.unwrap();
    prepare(&c, &pod).await.unwrap();
    let dir = tmp
        .path()
        .join(&uid)
        .join("volumes/kubernetes.io~empty-dir/m");
    assert!(host::is_mount_point(&dir).unwrap());
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let mine: Vec<&str> = info
        .lines()
        .filter(|l| l.contains(dir.to_str().unwrap()))
        .collect();
    assert_eq!(mine.len(), 1, "mounted once: {mine:?}");
    assert!(mine[0].contains("size=1024k"), "{}", mine[0]);
    teardown(tmp.path(), &uid).await.unwrap();
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!info.contains(dir.to_str().unwrap()));
    assert!(!tmp.path().join(&uid).exists());
}
