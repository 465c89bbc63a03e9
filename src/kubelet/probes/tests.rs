//! The manager end to end with real TCP/HTTP targets and a fake API server
//! that captures the events it records.

use super::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

/// A kube client whose API records POSTed events.
fn event_client() -> (kube::Client, Arc<Mutex<Vec<Value>>>) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let ev2 = events.clone();
    let svc = tower::service_fn(move |req: http::Request<kube::client::Body>| {
        let events = ev2.clone();
        async move {
            let post = req.method() == http::Method::POST;
            let body = req
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let v: Value = serde_json::from_slice(&body).unwrap_or(json!({}));
            if post {
                events.lock().unwrap().push(v.clone());
            }
            let out = json!({"apiVersion": "v1", "kind": "Event",
                             "metadata": {"name": v.pointer("/metadata/name").cloned().unwrap_or(json!("e"))},
                             "involvedObject": {}});
            Ok::<_, std::convert::Infallible>(
                http::Response::builder()
                    .status(if post { 201 } else { 200 })
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from(out.to_string())))
                    .unwrap(),
            )
        }
    });
    (kube::Client::new(svc, "default"), events)
}

fn manager() -> (
    ProbeManager,
    UnboundedReceiver<ProbeUpdate>,
    Arc<Mutex<Vec<Value>>>,
) {
    let (client, events) = event_client();
    let (tx, rx) = unbounded_channel();
    // nothing listens there: exec probes are not used in these tests
    let cri = Cri::new(std::path::Path::new("/nonexistent/skiff-probes.sock")).unwrap();
    (
        ProbeManager::new(cri, Recorder::new(client, "kubelet"), tx),
        rx,
        events,
    )
}

fn pod(container: Value) -> (Pod, Container) {
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": "ns1", "uid": "pod-uid"},
        "spec": {"containers": [container]}
    }))
    .unwrap();
    let c = pod.spec.as_ref().unwrap().containers[0].clone();
    (pod, c)
}

async fn next_update(rx: &mut UnboundedReceiver<ProbeUpdate>) -> ProbeUpdate {
    tokio::time::timeout(Duration::from_secs(15), rx.recv())
        .await
        .expect("a probe update within 15s")
        .expect("channel open")
}

async fn wait_event(events: &Arc<Mutex<Vec<Value>>>, message: &str) -> Value {
    for _ in 0..150 {
        if let Some(e) = events
            .lock()
            .unwrap()
            .iter()
            .find(|e| e["message"] == message)
        {
            return e.clone();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "no event {message:?}; got {:?}",
        events
            .lock()
            .unwrap()
            .iter()
            .map(|e| e["message"].clone())
            .collect::<Vec<_>>()
    );
}

async fn flip_server(healthy: Arc<AtomicBool>) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            let ok = healthy.load(Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = [0u8; 2048];
                let _ = s.read(&mut buf).await;
                let status = if ok {
                    "200 OK"
                } else {
                    "500 Internal Server Error"
                };
                let _ = s
                    .write_all(
                        format!(
                            "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                        )
                        .as_bytes(),
                    )
                    .await;
            });
        }
    });
    port
}

#[tokio::test]
async fn readiness_transitions_and_events() {
    let (m, mut rx, events) = manager();
    let healthy = Arc::new(AtomicBool::new(false));
    let port = flip_server(healthy.clone()).await;
    let (pod, c) = pod(json!({"name": "app", "image": "x",
        "ports": [{"name": "http", "containerPort": port}],
        "readinessProbe": {"httpGet": {"path": "/ready", "port": "http"}, "periodSeconds": 1, "failureThreshold": 2}}));
    m.add_container(&pod, &c, "cid-1", Some("127.0.0.1".parse().unwrap()));
    m.add_container(&pod, &c, "cid-1", Some("127.0.0.1".parse().unwrap()));
    assert!(!m.is_ready("cid-1"));
    assert!(m.is_started("cid-1"));
    let ev = wait_event(
        &events,
        "Readiness probe failed: HTTP probe failed with statuscode: 500",
    )
    .await;
    assert_eq!(ev["reason"], "Unhealthy");
    assert_eq!(ev["type"], "Warning");
    assert_eq!(ev["involvedObject"]["fieldPath"], "spec.containers{app}");
    assert_eq!(ev["involvedObject"]["uid"], "pod-uid");
    healthy.store(true, Ordering::SeqCst);
    let u = next_update(&mut rx).await;
    assert_eq!(
        u,
        ProbeUpdate {
            pod_uid: "pod-uid".into(),
            container_id: "cid-1".into(),
            container_name: "app".into(),
            kind: ProbeKind::Readiness,
            success: true,
        }
    );
    assert!(m.is_ready("cid-1"));
    healthy.store(false, Ordering::SeqCst);
    let u = next_update(&mut rx).await;
    assert_eq!((u.kind, u.success), (ProbeKind::Readiness, false));
    assert!(!m.is_ready("cid-1"));
    m.remove_pod("pod-uid");
    assert!(
        m.is_ready("cid-1"),
        "unknown containers count as probe-less"
    );
}

#[tokio::test]
async fn startup_gates_liveness_which_reports_once() {
    let (m, mut rx, events) = manager();
    // reserve a port for the startup probe, closed for now
    let startup_l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sport = startup_l.local_addr().unwrap().port();
    drop(startup_l);
    let dead = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dport = dead.local_addr().unwrap().port();
    drop(dead);
    let (pod, c) = pod(json!({"name": "app", "image": "x",
        "startupProbe": {"tcpSocket": {"port": sport}, "periodSeconds": 1, "failureThreshold": 30},
        "livenessProbe": {"tcpSocket": {"port": dport}, "periodSeconds": 1, "failureThreshold": 1}}));
    m.add_container(&pod, &c, "cid-2", Some("127.0.0.1".parse().unwrap()));
    assert!(!m.is_started("cid-2"));
    assert!(!m.is_ready("cid-2"), "not ready before startup succeeded");
    wait_event(
        &events,
        &format!("Startup probe failed: dial tcp 127.0.0.1:{sport}: connect: connection refused"),
    )
    .await;
    let liveness_msg =
        format!("Liveness probe failed: dial tcp 127.0.0.1:{dport}: connect: connection refused");
    assert!(
        !events
            .lock()
            .unwrap()
            .iter()
            .any(|e| e["message"] == liveness_msg.as_str()),
        "liveness must not run before startup succeeded"
    );
    let _open = TcpListener::bind(("127.0.0.1", sport)).await.unwrap();
    let u = next_update(&mut rx).await;
    assert_eq!((u.kind, u.success), (ProbeKind::Startup, true));
    assert!(m.is_started("cid-2"));
    assert!(
        m.is_ready("cid-2"),
        "no readiness probe: ready once started"
    );
    let u = next_update(&mut rx).await;
    assert_eq!((u.kind, u.success), (ProbeKind::Liveness, false));
    wait_event(&events, &liveness_msg).await;
    // held: no further updates while the container is not replaced
    let more = tokio::time::timeout(Duration::from_millis(2500), rx.recv()).await;
    assert!(more.is_err(), "liveness reports once: {more:?}");
    m.remove_container("cid-2");
}

#[tokio::test]
async fn invalid_targets_fail_clearly() {
    let (m, mut rx, events) = manager();
    let (pod, c) = pod(json!({"name": "app", "image": "x",
        "livenessProbe": {"httpGet": {"port": "nope"}, "periodSeconds": 1, "failureThreshold": 1}}));
    m.add_container(&pod, &c, "cid-3", None);
    let u = next_update(&mut rx).await;
    assert_eq!((u.kind, u.success), (ProbeKind::Liveness, false));
    wait_event(
        &events,
        "Liveness probe errored: couldn't find port: nope in container app",
    )
    .await;
    m.remove_container("cid-3");
}
