//! Container probes: one tokio task per configured probe (liveness,
//! readiness, startup) of each running container, with upstream timing and
//! thresholds; results reach the pod workers as [`ProbeUpdate`]s and
//! through [`ProbeManager::is_ready`] / [`ProbeManager::is_started`].
//!
//! Invariants:
//! - liveness and readiness do not probe until the startup probe succeeded;
//!   a startup worker stops once it has;
//! - a liveness (or startup) failure at its threshold is reported once, then
//!   that worker holds until the container is replaced (`remove_container`);
//! - readiness reports every transition; a container with a readiness probe
//!   is not ready until its first success;
//! - each failed probe records an `Unhealthy` event on the pod with the
//!   upstream text; tasks die with `remove_container` / `remove_pod`.
//!
//! The threshold machine, targets and texts are pure (`state`); handlers do
//! the I/O (`handlers`).

pub mod handlers;
pub mod state;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::{Container, ObjectReference, Pod, Probe};
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinHandle;

use crate::controllers::events::{Kind as EventKind, Recorder};
use crate::kubelet::cri::Cri;
pub use state::ProbeKind;
use state::{Outcome, ProbeParams, ProbeState};

/// A change of a probe's reported result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeUpdate {
    pub pod_uid: String,
    pub container_id: String,
    pub container_name: String,
    pub kind: ProbeKind,
    pub success: bool,
}

struct Entry {
    pod_uid: String,
    has_readiness: bool,
    has_startup: bool,
    ready: bool,
    started: bool,
    tasks: Vec<JoinHandle<()>>,
}

struct Inner {
    cri: Cri,
    recorder: Recorder,
    notify: UnboundedSender<ProbeUpdate>,
    containers: Mutex<HashMap<String, Entry>>,
}

/// Runs probes for the containers of this node. Cheap to clone.
#[derive(Clone)]
pub struct ProbeManager {
    inner: Arc<Inner>,
}

/// What a worker probes, resolved once when the container is added.
#[derive(Clone, Debug)]
enum Action {
    Exec(Vec<String>),
    Http(handlers::HttpProbe),
    Tcp {
        host: String,
        port: u16,
    },
    Grpc {
        host: String,
        port: u16,
        service: String,
    },
    /// The probe cannot run (bad port, no pod IP): every run fails so.
    Invalid(String),
}

fn action_for(
    probe: &Probe,
    container: &Container,
    pod_ip: Option<IpAddr>,
    params: &ProbeParams,
) -> Action {
    let resolved = || -> Result<Action, String> {
        if let Some(e) = &probe.exec {
            return Ok(Action::Exec(e.command.clone().unwrap_or_default()));
        }
        if let Some(h) = &probe.http_get {
            let port = state::resolve_port(&h.port, container)?;
            let host = state::probe_host(h.host.as_deref(), pod_ip)?;
            let url = state::http_url(
                h.scheme.as_deref().unwrap_or("HTTP"),
                &host,
                port,
                h.path.as_deref().unwrap_or("/"),
            );
            let headers = h
                .http_headers
                .iter()
                .flatten()
                .map(|hh| (hh.name.clone(), hh.value.clone()))
                .collect();
            return Ok(Action::Http(handlers::HttpProbe {
                url,
                headers,
                timeout: params.timeout,
            }));
        }
        if let Some(t) = &probe.tcp_socket {
            let port = state::resolve_port(&t.port, container)?;
            let host = state::probe_host(t.host.as_deref(), pod_ip)?;
            return Ok(Action::Tcp { host, port });
        }
        if let Some(g) = &probe.grpc {
            let port = u16::try_from(g.port)
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| format!("invalid port number: {}", g.port))?;
            let host = state::probe_host(None, pod_ip)?;
            return Ok(Action::Grpc {
                host,
                port,
                service: g.service.clone().unwrap_or_default(),
            });
        }
        Err("missing probe handler".into())
    };
    resolved().unwrap_or_else(Action::Invalid)
}

/// Identity of the probed container, for updates and events.
#[derive(Clone)]
struct Target {
    pod_uid: String,
    container_id: String,
    container_name: String,
    reference: ObjectReference,
}

impl ProbeManager {
    pub fn new(cri: Cri, recorder: Recorder, notify: UnboundedSender<ProbeUpdate>) -> Self {
        ProbeManager {
            inner: Arc::new(Inner {
                cri,
                recorder,
                notify,
                containers: Mutex::new(HashMap::new()),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.inner
            .containers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Start the probes of a (just started) container. Idempotent per
    /// `container_id`.
    pub fn add_container(
        &self,
        pod: &Pod,
        container: &Container,
        container_id: &str,
        pod_ip: Option<IpAddr>,
    ) {
        let mut map = self.lock();
        if map.contains_key(container_id) {
            return;
        }
        let pod_uid = pod.metadata.uid.clone().unwrap_or_default();
        let is_init = pod
            .spec
            .as_ref()
            .and_then(|s| s.init_containers.as_ref())
            .is_some_and(|ics| ics.iter().any(|c| c.name == container.name));
        let field = if is_init {
            "initContainers"
        } else {
            "containers"
        };
        let target = Target {
            pod_uid: pod_uid.clone(),
            container_id: container_id.to_string(),
            container_name: container.name.clone(),
            reference: ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: pod.metadata.name.clone(),
                namespace: pod.metadata.namespace.clone(),
                uid: pod.metadata.uid.clone(),
                field_path: Some(format!("spec.{field}{{{}}}", container.name)),
                ..Default::default()
            },
        };
        let probes = [
            (ProbeKind::Startup, container.startup_probe.as_ref()),
            (ProbeKind::Liveness, container.liveness_probe.as_ref()),
            (ProbeKind::Readiness, container.readiness_probe.as_ref()),
        ];
        let mut entry = Entry {
            pod_uid,
            has_readiness: container.readiness_probe.is_some(),
            has_startup: container.startup_probe.is_some(),
            ready: false,
            started: container.startup_probe.is_none(),
            tasks: Vec::new(),
        };
        for (kind, probe) in probes {
            let Some(probe) = probe else { continue };
            let params = ProbeParams::from_probe(probe, kind);
            let action = action_for(probe, container, pod_ip, &params);
            let inner = self.inner.clone();
            let target = target.clone();
            entry.tasks.push(tokio::spawn(run_worker(
                inner, target, kind, params, action,
            )));
        }
        map.insert(container_id.to_string(), entry);
    }

    /// Stop the probes of a container (it exited or was replaced).
    pub fn remove_container(&self, container_id: &str) {
        if let Some(e) = self.lock().remove(container_id) {
            e.tasks.iter().for_each(JoinHandle::abort);
        }
    }

    /// Stop the probes of every container of a pod.
    pub fn remove_pod(&self, pod_uid: &str) {
        let mut map = self.lock();
        map.retain(|_, e| {
            if e.pod_uid == pod_uid {
                e.tasks.iter().for_each(JoinHandle::abort);
                false
            } else {
                true
            }
        });
    }

    /// Ready: no readiness probe, or its last reported result is success;
    /// never before the startup probe succeeded. Unknown containers (never
    /// added, or removed) count as having no probes.
    pub fn is_ready(&self, container_id: &str) -> bool {
        match self.lock().get(container_id) {
            None => true,
            Some(e) => {
                if e.has_startup && !e.started {
                    false
                } else {
                    !e.has_readiness || e.ready
                }
            }
        }
    }

    /// Started: no startup probe, or it succeeded.
    pub fn is_started(&self, container_id: &str) -> bool {
        self.lock().get(container_id).is_none_or(|e| e.started)
    }
}

impl Inner {
    fn started(&self, container_id: &str) -> bool {
        self.containers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(container_id)
            .is_none_or(|e| e.started)
    }

    fn set(&self, container_id: &str, kind: ProbeKind, value: bool) -> bool {
        let mut map = self.containers.lock().unwrap_or_else(|p| p.into_inner());
        let Some(e) = map.get_mut(container_id) else {
            return false;
        };
        match kind {
            ProbeKind::Readiness => e.ready = value,
            ProbeKind::Startup => e.started = value,
            ProbeKind::Liveness => {}
        }
        true
    }

    async fn run(&self, action: &Action, container_id: &str, params: &ProbeParams) -> Outcome {
        match action {
            Action::Exec(cmd) => handlers::exec(&self.cri, container_id, cmd, params.timeout).await,
            Action::Http(h) => handlers::http_get(h).await,
            Action::Tcp { host, port } => handlers::tcp(host, *port, params.timeout).await,
            Action::Grpc {
                host,
                port,
                service,
            } => handlers::grpc(host, *port, service, params.timeout).await,
            Action::Invalid(m) => Outcome::Error(m.clone()),
        }
    }
}

async fn run_worker(
    inner: Arc<Inner>,
    target: Target,
    kind: ProbeKind,
    params: ProbeParams,
    action: Action,
) {
    tokio::time::sleep(params.initial_delay).await;
    let mut st = ProbeState::new(kind, params);
    let mut ticker = tokio::time::interval(params.period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let started = inner.started(&target.container_id);
        match kind {
            ProbeKind::Startup if started => return,
            ProbeKind::Liveness | ProbeKind::Readiness if !started => continue,
            _ => {}
        }
        let outcome = inner.run(&action, &target.container_id, &params).await;
        if let Some((reason, message)) = outcome.event(kind) {
            tracing::debug!(container = %target.container_name, pod = %target.pod_uid, "{message}");
            inner.recorder.record_ref(
                target.reference.clone(),
                EventKind::Warning,
                reason,
                &message,
            );
        }
        if let Some(success) = st.observe(outcome.is_success()) {
            if !inner.set(&target.container_id, kind, success) {
                return; // removed meanwhile
            }
            let _ = inner.notify.send(ProbeUpdate {
                pod_uid: target.pod_uid.clone(),
                container_id: target.container_id.clone(),
                container_name: target.container_name.clone(),
                kind,
                success,
            });
        }
        if st.on_hold() {
            // waits for remove_container to abort this task
            std::future::pending::<()>().await;
        }
    }
}

#[cfg(test)]
mod tests;
