//! containerd's event stream (`/tasks/start`, `/tasks/exit` in the CRI
//! namespace `k8s.io`) as the relister's trigger: a container that starts or
//! exits is relisted at once instead of at the next poll, so its worker
//! reports it (and restarts it, and a Job completes) within milliseconds.
//!
//! Invariants: the stream only ever *hints* — every decision is taken from a
//! CRI relist, never from an event's payload; `Signal::Up` is sent each time
//! a subscription is (re)established and `Signal::Down` each time it is
//! lost, so the relister polls fast whenever events may be missed; the task
//! reconnects forever (1 s apart) and ends only when the receiver is gone.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use containerd_client::events::{TaskExit, TaskStart};
use containerd_client::services::v1::SubscribeRequest;
use containerd_client::services::v1::events_client::EventsClient;
use hyper_util::rt::TokioIo;
use prost::Message;
use tokio::sync::mpsc;
use tonic::transport::{Endpoint, Uri};

use crate::kubelet::cri::api::ContainerState;

/// The containerd namespace CRI keeps its objects in.
const NAMESPACE: &str = "k8s.io";
/// Between two subscription attempts.
const RETRY: Duration = Duration::from_secs(1);

/// What the relister hears from the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Signal {
    /// Subscribed: events flow from now on (relist once to catch up).
    Up,
    /// The subscription broke: fall back to fast polling.
    Down,
    /// Container `id` should now be in CRI state `want`.
    Changed { id: String, want: i32 },
}

/// Containers an event announced whose new state a relist has not shown
/// yet: CRI updates its store after containerd publishes, so the relist is
/// retried (10 ms, doubling) a few times until it agrees. Pure.
#[derive(Debug, Default)]
pub(super) struct Pending {
    /// container id → (wanted CRI state, relists that did not show it)
    ids: HashMap<String, (i32, u32)>,
}

/// First retry delay; doubled per further attempt.
const FIRST_RETRY: Duration = Duration::from_millis(10);
/// Relists per event before it is left to the periodic resync.
const ATTEMPTS: u32 = 6;

impl Pending {
    pub fn note(&mut self, id: String, want: i32) {
        self.ids.insert(id, (want, 0));
    }

    /// Drop what the relist `states` (container id → CRI state) settled:
    /// the wanted state is there, or the container is not a pod's.
    pub fn settle(&mut self, states: &HashMap<&str, i32>) {
        self.ids
            .retain(|id, (want, tries)| match states.get(id.as_str()) {
                Some(s) if s != want => {
                    *tries += 1;
                    *tries < ATTEMPTS
                }
                _ => false,
            });
    }

    /// When to relist again for the events still unsettled.
    pub fn retry_in(&self) -> Option<Duration> {
        let tries = self.ids.values().map(|(_, t)| *t).min()?;
        Some(FIRST_RETRY * 2u32.pow(tries.saturating_sub(1)))
    }
}

/// Subscription filters: task starts and exits of the CRI namespace.
pub(super) fn filters() -> Vec<String> {
    ["/tasks/start", "/tasks/exit"]
        .iter()
        .map(|t| format!("namespace=={NAMESPACE},topic==\"{t}\""))
        .collect()
}

/// The signal of one envelope (`None`: not ours, or undecodable).
pub(super) fn decode(namespace: &str, topic: &str, payload: &[u8]) -> Option<Signal> {
    if namespace != NAMESPACE {
        return None;
    }
    let (id, want) = match topic {
        "/tasks/start" => (
            TaskStart::decode(payload).ok()?.container_id,
            ContainerState::ContainerRunning,
        ),
        "/tasks/exit" => (
            TaskExit::decode(payload).ok()?.container_id,
            ContainerState::ContainerExited,
        ),
        _ => return None,
    };
    if id.is_empty() {
        return None;
    }
    Some(Signal::Changed {
        id,
        want: want as i32,
    })
}

/// Follow containerd's events at `socket` for as long as the receiver lives.
pub(super) fn spawn(socket: PathBuf) -> mpsc::UnboundedReceiver<Signal> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let err = follow(&socket, &tx).await;
            if tx.is_closed() {
                return;
            }
            tracing::debug!("kubelet: containerd event stream: {err}");
            if tx.send(Signal::Down).is_err() {
                return;
            }
            tokio::time::sleep(RETRY).await;
        }
    });
    rx
}

/// One subscription, until it fails; the reason.
async fn follow(socket: &std::path::Path, tx: &mpsc::UnboundedSender<Signal>) -> String {
    let path = socket.to_path_buf();
    let channel =
        match Endpoint::try_from("http://[::]:50051") {
            Ok(e) => e.connect_timeout(Duration::from_secs(5)),
            Err(e) => return e.to_string(),
        }
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let p = path.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(p).await?))
            }
        }))
        .await;
    let channel = match channel {
        Ok(c) => c,
        Err(e) => return format!("connecting: {e}"),
    };
    let mut stream = match EventsClient::new(channel)
        .subscribe(SubscribeRequest { filters: filters() })
        .await
    {
        Ok(r) => r.into_inner(),
        Err(e) => return format!("subscribing: {}", e.message()),
    };
    if tx.send(Signal::Up).is_err() {
        return "receiver gone".into();
    }
    loop {
        match stream.message().await {
            Ok(Some(env)) => {
                let payload = env.event.as_ref().map(|a| &a.value[..]).unwrap_or(&[]);
                if let Some(sig) = decode(&env.namespace, &env.topic, payload)
                    && tx.send(sig).is_err()
                {
                    return "receiver gone".into();
                }
            }
            Ok(None) => return "closed by containerd".into(),
            Err(e) => return e.message().to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_task_events() {
        let exit = TaskExit {
            container_id: "c1".into(),
            id: "c1".into(),
            pid: 7,
            exit_status: 1,
            exited_at: None,
        }
        .encode_to_vec();
        let start = TaskStart {
            container_id: "c2".into(),
            pid: 8,
        }
        .encode_to_vec();
        let cases: Vec<(&str, &str, &[u8], Option<Signal>)> = vec![
            (
                "k8s.io",
                "/tasks/exit",
                &exit,
                Some(Signal::Changed {
                    id: "c1".into(),
                    want: ContainerState::ContainerExited as i32,
                }),
            ),
            (
                "k8s.io",
                "/tasks/start",
                &start,
                Some(Signal::Changed {
                    id: "c2".into(),
                    want: ContainerState::ContainerRunning as i32,
                }),
            ),
            ("default", "/tasks/exit", &exit, None),
            ("k8s.io", "/tasks/oom", &exit, None),
            ("k8s.io", "/tasks/exit", &[], None),
            ("k8s.io", "/tasks/exit", &[0xff, 0xff], None),
        ];
        for (ns, topic, payload, want) in cases {
            assert_eq!(decode(ns, topic, payload), want, "{ns} {topic}");
        }
    }

    #[test]
    fn pending_settles_or_gives_up() {
        let running = ContainerState::ContainerRunning as i32;
        let exited = ContainerState::ContainerExited as i32;
        let mut p = Pending::default();
        assert_eq!(p.retry_in(), None);
        p.note("a".into(), exited);
        p.note("b".into(), running);
        p.note("c".into(), exited);
        // a: already exited; b: still created; c: not a pod container
        p.settle(&HashMap::from([("a", exited), ("b", 0)]));
        assert_eq!(p.retry_in(), Some(Duration::from_millis(10)));
        p.settle(&HashMap::from([("b", 0)]));
        assert_eq!(p.retry_in(), Some(Duration::from_millis(20)));
        for _ in 2..ATTEMPTS {
            p.settle(&HashMap::from([("b", 0)]));
        }
        assert_eq!(p.retry_in(), None, "given up after {ATTEMPTS} relists");
        p.note("b".into(), running);
        p.settle(&HashMap::from([("b", running)]));
        assert_eq!(p.retry_in(), None);
    }

    #[test]
    fn filters_name_namespace_and_topics() {
        assert_eq!(
            filters(),
            vec![
                "namespace==k8s.io,topic==\"/tasks/start\"".to_string(),
                "namespace==k8s.io,topic==\"/tasks/exit\"".to_string(),
            ]
        );
    }
}
