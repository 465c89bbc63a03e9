//! kube-rs (the Rust client) against a real `skiff server` process: CRUD,
//! pagination, watch from a resourceVersion, 409 on stale update, 404/422,
//! and a CRD + dynamic custom object round trip.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams, WatchEvent,
    WatchParams,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use kube::{Client, Config};

struct Server {
    child: Child,
    dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = dir.path().join("config.yaml");
    std::fs::write(&cfg, "").unwrap();
    let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_skiff"))
        .args([
            "server",
            "--disable-agent",
            "--bind-address",
            "127.0.0.1",
            "--advertise-address",
            "127.0.0.1",
        ])
        .arg("--config")
        .arg(&cfg)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--https-listen-port")
        .arg(port.to_string())
        .arg("--write-kubeconfig")
        .arg(dir.path().join("kubeconfig.yaml"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let s = Server { child, dir };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !s.kubeconfig().exists() {
        assert!(
            Instant::now() < deadline,
            "server did not write its kubeconfig"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    s
}

impl Server {
    fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig.yaml")
    }

    async fn client(&self) -> Client {
        let kc = Kubeconfig::read_from(self.kubeconfig()).unwrap();
        let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
            .await
            .unwrap();
        let client = Client::try_from(config).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match client.apiserver_version().await {
                Ok(v) => {
                    assert_eq!(v.major, "1");
                    return client;
                }
                Err(e) => {
                    assert!(Instant::now() < deadline, "server not ready: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

fn cm(name: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        data: Some([("k".to_string(), "v".to_string())].into()),
        ..Default::default()
    }
}

fn status_code(e: &kube::Error) -> u16 {
    match e {
        kube::Error::Api(s) => s.code,
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_rs_round_trips() {
    let server = start();
    let client = server.client().await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some("kube-rs".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();

    // CRUD
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "kube-rs");
    let created = cms.create(&PostParams::default(), &cm("a")).await.unwrap();
    let rv_a = created.metadata.resource_version.clone().unwrap();
    assert_eq!(
        status_code(
            &cms.create(&PostParams::default(), &cm("a"))
                .await
                .unwrap_err()
        ),
        409
    );
    let got = cms.get("a").await.unwrap();
    assert_eq!(got.data.unwrap()["k"], "v");
    assert_eq!(status_code(&cms.get("missing").await.unwrap_err()), 404);
    assert_eq!(
        status_code(
            &cms.create(&PostParams::default(), &cm("Bad_Name"))
                .await
                .unwrap_err()
        ),
        422
    );

    // stale update → 409
    let mut fresh = cms.get("a").await.unwrap();
    fresh.data = Some([("k".to_string(), "v2".to_string())].into());
    cms.replace("a", &PostParams::default(), &fresh)
        .await
        .unwrap();
    let mut stale = created.clone();
    stale.data = Some([("k".to_string(), "v3".to_string())].into());
    assert_eq!(
        status_code(
            &cms.replace("a", &PostParams::default(), &stale)
                .await
                .unwrap_err()
        ),
        409
    );

    // patch
    let p = serde_json::json!({"data": {"extra": "1"}});
    let patched = cms
        .patch("a", &PatchParams::default(), &Patch::Merge(&p))
        .await
        .unwrap();
    assert_eq!(patched.data.unwrap()["extra"], "1");

    // pagination
    for i in 0..25 {
        cms.create(&PostParams::default(), &cm(&format!("page-{i:02}")))
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    let mut lp = ListParams::default().limit(10);
    loop {
        let page = cms.list(&lp).await.unwrap();
        seen.extend(page.items.iter().map(|c| c.metadata.name.clone().unwrap()));
        match page.metadata.continue_ {
            Some(c) if !c.is_empty() => lp = lp.continue_token(&c),
            _ => break,
        }
    }
    let pages: Vec<&String> = seen.iter().filter(|n| n.starts_with("page-")).collect();
    assert_eq!(pages.len(), 25, "{seen:?}");

    // watch from a resourceVersion: sees the changes after it, in order
    let stream_cms = cms.clone();
    let watch = tokio::spawn(async move {
        let mut s = stream_cms
            .watch(&WatchParams::default().timeout(10), &rv_a)
            .await
            .unwrap()
            .boxed();
        let mut events = Vec::new();
        while let Some(ev) = s.next().await {
            match ev.unwrap() {
                WatchEvent::Added(o) => events.push(format!("ADDED {}", o.metadata.name.unwrap())),
                WatchEvent::Modified(o) => {
                    events.push(format!("MODIFIED {}", o.metadata.name.unwrap()))
                }
                WatchEvent::Deleted(o) => {
                    let name = o.metadata.name.unwrap();
                    let done = name == "watched";
                    events.push(format!("DELETED {name}"));
                    if done {
                        break;
                    }
                }
                _ => {}
            }
        }
        events
    });
    cms.create(&PostParams::default(), &cm("watched"))
        .await
        .unwrap();
    cms.delete("watched", &DeleteParams::default())
        .await
        .unwrap();
    let events: Vec<String> = tokio::time::timeout(Duration::from_secs(15), watch)
        .await
        .unwrap()
        .unwrap()
        .into_iter()
        // the namespace's root CA ConfigMap comes from a controller
        .filter(|e| !e.ends_with(" kube-root-ca.crt"))
        .collect();
    assert_eq!(
        events.first().map(String::as_str),
        Some("MODIFIED a"),
        "{events:?}"
    );
    assert!(events.contains(&"ADDED watched".to_string()), "{events:?}");
    assert_eq!(
        events.last().map(String::as_str),
        Some("DELETED watched"),
        "{events:?}"
    );

    // CRD + dynamic custom objects
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd: CustomResourceDefinition = serde_json::from_value(serde_json::json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced",
                 "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
                 "versions": [{"name": "v1", "served": true, "storage": true,
                               "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": {"type": "object", "properties": {"size": {"type": "integer"}}}}}}}]}
    }))
    .unwrap();
    crds.create(&PostParams::default(), &crd).await.unwrap();
    let gvk = GroupVersionKind::gvk("example.com", "v1", "Widget");
    let ar = ApiResource::from_gvk_with_plural(&gvk, "widgets");
    let widgets: Api<DynamicObject> = Api::namespaced_with(client.clone(), "kube-rs", &ar);
    let mut w = DynamicObject::new("w1", &ar);
    w.data = serde_json::json!({"spec": {"size": 3}});
    widgets.create(&PostParams::default(), &w).await.unwrap();
    let back = widgets.get("w1").await.unwrap();
    assert_eq!(back.data["spec"]["size"], 3);
    let bad = {
        let mut b = DynamicObject::new("w2", &ar);
        b.data = serde_json::json!({"spec": {"size": "big"}});
        b
    };
    assert_eq!(
        status_code(
            &widgets
                .create(&PostParams::default(), &bad)
                .await
                .unwrap_err()
        ),
        422
    );
    assert_eq!(
        widgets
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    widgets
        .delete("w1", &DeleteParams::default())
        .await
        .unwrap();
    assert_eq!(status_code(&widgets.get("w1").await.unwrap_err()), 404);
}
