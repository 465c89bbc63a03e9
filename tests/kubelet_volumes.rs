//! Volumes and exec probes against a real containerd: prepared volumes are
//! bind-mounted by the runtime into a busybox container (configMap
//! read-only, emptyDir subPath, managed /etc/hosts) and exec probes run
//! through CRI `ExecSync` (success, failure with output, timeout).
//!
//! Needs root and a containerd with `skiff.test/busybox:1` imported and a
//! sandbox image; set `SKIFF_TEST_CRI_SOCKET` to its socket, e.g.
//!
//! ```sh
//! bash /work/shared/tools/host-containerd.sh up /tmp/x
//! python3 /work/shared/tools/mkimage.py busybox --name skiff.test/busybox:1 -o /tmp/x/bb.tar
//! python3 /work/shared/tools/mkimage.py busybox --name skiff.test/pause:1 --cmd '["sleep","1000000"]' -o /tmp/x/p.tar
//! ctr -a /tmp/x/containerd.sock -n k8s.io images import /tmp/x/bb.tar   # and p.tar
//! SKIFF_TEST_CRI_SOCKET=/tmp/x/containerd.sock cargo test --test kubelet_volumes
//! ```
//!
//! Without the variable the test prints why and passes (CI sets it).

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use k8s_openapi::api::core::v1::Pod;
use serde_json::json;
use skiff::kubelet::cri::{Cri, api};
use skiff::kubelet::probes::handlers;
use skiff::kubelet::probes::state::Outcome;
use skiff::kubelet::volumes::{self, VolumeContext};

/// A kube client that answers one configMap GET.
fn client() -> kube::Client {
    let svc = tower::service_fn(|req: http::Request<kube::client::Body>| async move {
        let (code, body) = if req.uri().path() == "/api/v1/namespaces/ns1/configmaps/cfg" {
            (
                200,
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"},
                       "data": {"app.conf": "hello from configmap"}}),
            )
        } else {
            (
                404,
                json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found"}),
            )
        };
        Ok::<_, std::convert::Infallible>(
            http::Response::builder()
                .status(code)
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(body.to_string())))
                .unwrap(),
        )
    });
    kube::Client::new(svc, "default")
}

async fn exec(cri: &Cri, id: &str, cmd: &[&str]) -> (i32, String) {
    let mut rt = cri.runtime.clone();
    let r = rt
        .exec_sync(api::ExecSyncRequest {
            container_id: id.into(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            timeout: 5,
        })
        .await
        .unwrap()
        .into_inner();
    let mut out = r.stdout;
    out.extend(r.stderr);
    (r.exit_code, String::from_utf8_lossy(&out).into_owned())
}

#[tokio::test]
async fn volumes_and_exec_probes_in_containerd() {
    let Ok(socket) = std::env::var("SKIFF_TEST_CRI_SOCKET") else {
        eprintln!("skipped: SKIFF_TEST_CRI_SOCKET is not set");
        return;
    };
    let cri = Cri::new(Path::new(&socket)).unwrap();
    cri.wait_ready(Duration::from_secs(10)).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let uid = format!("volumes-test-{}", std::process::id());
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "vt", "namespace": "ns1", "uid": uid},
        "spec": {
            "hostAliases": [{"ip": "10.1.2.3", "hostnames": ["alias.example"]}],
            "containers": [{"name": "app", "image": "skiff.test/busybox:1",
                "env": [{"name": "DIR", "value": "from-expr"}],
                "volumeMounts": [
                    {"name": "cfg", "mountPath": "/etc/cfg"},
                    {"name": "scratch", "mountPath": "/scratch"},
                    {"name": "scratch", "mountPath": "/sub", "subPathExpr": "$(DIR)"}
                ]}],
            "volumes": [
                {"name": "cfg", "configMap": {"name": "cfg"}},
                {"name": "scratch", "emptyDir": {}}
            ]}
    }))
    .unwrap();
    let ctx = VolumeContext {
        client: client(),
        pods_dir: tmp.path().join("pods"),
        node_name: "n1".into(),
        reads: None,
    };
    let prepared = volumes::prepare(&ctx, &pod).await.unwrap();
    let container = &pod.spec.as_ref().unwrap().containers[0];
    let mut mounts = prepared.mounts_for(container).unwrap();
    prepared
        .write_etc_hosts(&pod, Some("10.9.9.9".parse().unwrap()))
        .await
        .unwrap();
    mounts.push(prepared.etc_hosts_mount().unwrap());

    let sandbox_config = api::PodSandboxConfig {
        metadata: Some(api::PodSandboxMetadata {
            name: "vt".into(),
            uid: uid.clone(),
            namespace: "ns1".into(),
            attempt: 0,
        }),
        log_directory: tmp.path().join("logs").to_string_lossy().into_owned(),
        linux: Some(api::LinuxPodSandboxConfig {
            security_context: Some(api::LinuxSandboxSecurityContext {
                namespace_options: Some(api::NamespaceOption {
                    network: api::NamespaceMode::Node as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut rt = cri.runtime.clone();
    let sandbox = rt
        .run_pod_sandbox(api::RunPodSandboxRequest {
            config: Some(sandbox_config.clone()),
            runtime_handler: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .pod_sandbox_id;
    let created = rt
        .create_container(api::CreateContainerRequest {
            pod_sandbox_id: sandbox.clone(),
            config: Some(api::ContainerConfig {
                metadata: Some(api::ContainerMetadata {
                    name: "app".into(),
                    attempt: 0,
                }),
                image: Some(api::ImageSpec {
                    image: "skiff.test/busybox:1".into(),
                    ..Default::default()
                }),
                command: vec!["sleep".into(), "100000".into()],
                mounts,
                log_path: "app/0.log".into(),
                ..Default::default()
            }),
            sandbox_config: Some(sandbox_config),
        })
        .await;
    let result = async {
        let id = created
            .map_err(|e| format!("create: {e}"))?
            .into_inner()
            .container_id;
        rt.start_container(api::StartContainerRequest {
            container_id: id.clone(),
        })
        .await
        .map_err(|e| format!("start: {e}"))?;
        let checks = async {
            assert_eq!(
                exec(&cri, &id, &["cat", "/etc/cfg/app.conf"]).await,
                (0, "hello from configmap".into())
            );
            let (code, _) = exec(&cri, &id, &["touch", "/etc/cfg/new"]).await;
            assert_ne!(code, 0, "configMap volumes are read-only");
            assert_eq!(
                exec(&cri, &id, &["sh", "-c", "echo hi > /sub/f"]).await.0,
                0
            );
            let on_host = prepared.host_path("scratch").unwrap().join("from-expr/f");
            assert_eq!(std::fs::read_to_string(on_host).unwrap(), "hi\n");
            let (_, hosts) = exec(&cri, &id, &["cat", "/etc/hosts"]).await;
            assert!(hosts.contains("10.9.9.9\tvt\n"), "{hosts}");
            assert!(hosts.contains("10.1.2.3\talias.example\n"), "{hosts}");

            let t = Duration::from_secs(1);
            let cmd = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
            assert_eq!(
                handlers::exec(&cri, &id, &cmd(&["sh", "-c", "exit 0"]), t).await,
                Outcome::Success
            );
            assert_eq!(
                handlers::exec(
                    &cri,
                    &id,
                    &cmd(&["sh", "-c", "echo not healthy; exit 3"]),
                    t
                )
                .await,
                Outcome::Failure("not healthy\n".into())
            );
            assert_eq!(
                handlers::exec(&cri, &id, &cmd(&["sleep", "5"]), t).await,
                Outcome::Failure("command \"sleep 5\" timed out".into())
            );
        };
        // a failed assertion must not leak the sandbox: catch it
        let outcome = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(checks)).await;
        let _ = rt
            .stop_container(api::StopContainerRequest {
                container_id: id.clone(),
                timeout: 0,
            })
            .await;
        let _ = rt
            .remove_container(api::RemoveContainerRequest { container_id: id })
            .await;
        outcome.map_err(|_| "checks failed (see panic above)".to_string())
    }
    .await;
    let _ = rt
        .stop_pod_sandbox(api::StopPodSandboxRequest {
            pod_sandbox_id: sandbox.clone(),
        })
        .await;
    let _ = rt
        .remove_pod_sandbox(api::RemovePodSandboxRequest {
            pod_sandbox_id: sandbox,
        })
        .await;
    volumes::teardown(&ctx.pods_dir, &uid).await.unwrap();
    assert!(!ctx.pods_dir.join(&uid).exists());
    result.unwrap();
}
