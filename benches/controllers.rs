//! Controller benchmark (`cargo bench --bench controllers`): spawns the real
//! `skiff server` and measures how fast the in-process Deployment and
//! ReplicaSet controllers fan a 1,000-replica Deployment out into pods.
//!
//! - deployment: create a Deployment with 1,000 replicas (pods pinned to a
//!   node name, so the scheduler is not part of the measurement) and watch
//!   the namespace until 1,000 pods exist: seconds from the create to the
//!   last pod. Repeated `SKIFF_BENCH_ROUNDS` times (default 3), each in a
//!   fresh namespace.
//! - baseline, same run: this process creates the same 1,000 pods itself
//!   through the API with 64 concurrent requests: the ratio shows what the
//!   controllers add on top of the API's own create cost.
//!
//! It also prints the server's RSS after the rounds.
//! Budget: 1,000 pods created ≤ 3 s. Printed, never asserted.

mod common;

use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, PostParams, WatchEvent, WatchParams};
use serde_json::json;

use common::{SkiffServer, load_average, verdict};

const REPLICAS: usize = 1000;

fn main() {
    common::block_on(run());
}

async fn client(server: &SkiffServer) -> kube::Client {
    let kc =
        kube::config::Kubeconfig::read_from(server.dir.path().join("kc.yaml")).expect("kubeconfig");
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .expect("client config");
    kube::Client::try_from(cfg).expect("client")
}

fn template(app: &str) -> serde_json::Value {
    json!({
        "metadata": {"labels": {"app": app}},
        "spec": {"nodeName": "bench-node", "containers": [{"name": "c", "image": "busybox:1"}]}
    })
}

async fn namespace(c: &kube::Client, name: &str) {
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    Api::<Namespace>::all(c.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("create namespace");
}

/// Seconds until `n` pods have been ADDED in `ns`, counting from `start`
/// (the watch is opened before `kick` runs).
async fn count_pods<F: std::future::Future<Output = ()>>(
    c: &kube::Client,
    ns: &str,
    n: usize,
    kick: F,
) -> f64 {
    let pods: Api<Pod> = Api::namespaced(c.clone(), ns);
    let mut stream = pods
        .watch(&WatchParams::default().timeout(120), "0")
        .await
        .expect("watch pods")
        .boxed();
    let start = Instant::now();
    kick.await;
    let mut seen = 0;
    while let Some(ev) = stream.try_next().await.expect("watch event") {
        if let WatchEvent::Added(_) = ev {
            seen += 1;
            if seen == n {
                return start.elapsed().as_secs_f64();
            }
        }
    }
    panic!("watch ended after {seen} pods");
}

async fn run() {
    println!("load average: {}", load_average());
    let server = SkiffServer::start().await;
    let c = client(&server).await;
    let rounds: usize = std::env::var("SKIFF_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let mut ctrl = Vec::new();
    let mut base = Vec::new();
    for round in 0..rounds {
        let ns = format!("deploy-{round}");
        namespace(&c, &ns).await;
        let d: Deployment = serde_json::from_value(json!({
            "metadata": {"name": "big", "namespace": ns},
            "spec": {"replicas": REPLICAS, "selector": {"matchLabels": {"app": "big"}}, "template": template("big")}
        }))
        .unwrap();
        let api: Api<Deployment> = Api::namespaced(c.clone(), &ns);
        let secs = count_pods(&c, &ns, REPLICAS, async {
            api.create(&PostParams::default(), &d)
                .await
                .expect("create deployment");
        })
        .await;
        ctrl.push(secs);

        let ns = format!("direct-{round}");
        namespace(&c, &ns).await;
        let pods: Api<Pod> = Api::namespaced(c.clone(), &ns);
        let secs = count_pods(&c, &ns, REPLICAS, async {
            futures::stream::iter(0..REPLICAS)
                .map(|i| {
                    let pods = pods.clone();
                    async move {
                        let mut p = template("direct");
                        p["metadata"]["name"] = json!(format!("p-{i}"));
                        let p: Pod = serde_json::from_value(p).unwrap();
                        pods.create(&PostParams::default(), &p)
                            .await
                            .expect("create pod");
                    }
                })
                .buffer_unordered(64)
                .collect::<Vec<_>>()
                .await;
        })
        .await;
        base.push(secs);
        println!(
            "round {round}: deployment → {REPLICAS} pods {:.3} s; direct creates {:.3} s",
            ctrl[round], base[round]
        );
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v[v.len() / 2]
    };
    let (c_med, b_med) = (median(&mut ctrl), median(&mut base));
    println!(
        "deployment of {REPLICAS} replicas: all pods created in {c_med:.3} s (median of {rounds}); \
         direct creates {b_med:.3} s; ratio {:.2}  [budget ≤ 3 s: {}]",
        c_med / b_med,
        verdict(c_med <= 3.0)
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    println!(
        "server RSS after {} pods: {}",
        2 * rounds * REPLICAS,
        server.rss()
    );
}
