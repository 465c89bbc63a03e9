//! One pod's worker: on every wake (pod update, container state change,
//! probe result, back-off expiry, 10 s resync) it observes the runtime,
//! asks `plan` what to do, does it through CRI, and patches the status
//! `status::pod_status` computes when it changed. On deletion it runs
//! preStop hooks, stops containers within the grace period, removes the
//! sandbox, volumes, logs and cgroup, then deletes the pod object.
//!
//! Invariant: only this task mutates the runtime objects of its pod uid.

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, LifecycleHandler, ObjectReference, Pod, Secret, Service,
};
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{Notify, mpsc, watch};

use super::container::{self, ContainerInputs, DEFAULT_TERMINATION_MESSAGE_PATH, format_pod};
use super::{RESYNC, Shared, runtime, sandbox};
use crate::controllers::events::Kind;
use crate::kubelet::cri::api;
use crate::kubelet::env::{self, EnvSources};
use crate::kubelet::plan::{
    self, Backoff, CState, KillReason, Plan, PodRuntime, ProbeVerdicts, SECOND, ToStart,
    go_duration,
};
use crate::kubelet::probes::{ProbeKind, ProbeUpdate};
use crate::kubelet::static_pods;
use crate::kubelet::status::{self, StatusInput, Waiting};
use crate::kubelet::volumes::{self, PreparedVolumes, VolumeContext};

pub(super) struct Inbox {
    pub pod: watch::Receiver<Option<Arc<Pod>>>,
    pub kick: Arc<Notify>,
    pub probe: mpsc::UnboundedReceiver<ProbeUpdate>,
    /// Admission refused the pod: it is failed, never started.
    pub rejected: Option<crate::kubelet::admission::Rejection>,
}

/// The smallest stop timeout the kubelet gives a container (upstream's
/// `minimumGracePeriodInSeconds`).
const MIN_GRACE: i64 = 2;
/// Upper bound of a termination message read from its file.
const MAX_MESSAGE: usize = 4096;
/// Log tail used by `FallbackToLogsOnError`.
const LOG_TAIL_LINES: usize = 80;
const LOG_TAIL_BYTES: usize = 2048;

fn now_nanos() -> i64 {
    Utc::now().timestamp_nanos_opt().unwrap_or(0)
}

struct Worker {
    shared: Arc<Shared>,
    uid: String,
    restart_backoff: Backoff,
    pull_backoff: Backoff,
    waiting: Waiting,
    verdicts: ProbeVerdicts,
    last_pod: Option<Arc<Pod>>,
    last_patched: Option<serde_json::Value>,
    next_wake: Option<Duration>,
    lap: Lap,
    /// Set by `sync` when `activeDeadlineSeconds` has run out.
    deadline_exceeded: bool,
    /// Admission's refusal (reported once as an event, then as the status).
    rejected: Option<crate::kubelet::admission::Rejection>,
}

/// Step timing of a sync, logged at debug under target `skiff::startup`
/// (`SKIFF_LOG=info,skiff::startup=debug`): where pod startup time goes.
struct Lap(std::sync::Mutex<(Instant, Instant)>);

impl Lap {
    fn new() -> Self {
        let now = Instant::now();
        Lap(std::sync::Mutex::new((now, now)))
    }

    fn reset(&self) {
        let now = Instant::now();
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = (now, now);
    }

    fn mark(&self, uid: &str, step: &str) {
        let now = Instant::now();
        let mut g = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let (start, last) = *g;
        tracing::debug!(
            target: "skiff::startup",
            uid,
            step,
            ms = (now - last).as_secs_f64() * 1e3,
            total_ms = (now - start).as_secs_f64() * 1e3,
        );
        g.1 = now;
    }
}

pub(super) async fn run(shared: Arc<Shared>, uid: String, mut inbox: Inbox) {
    let mut w = Worker {
        shared,
        uid,
        restart_backoff: Backoff::containers(),
        pull_backoff: Backoff::containers(),
        waiting: Waiting::new(),
        verdicts: ProbeVerdicts::default(),
        last_pod: None,
        last_patched: None,
        next_wake: None,
        lap: Lap::new(),
        deadline_exceeded: false,
        rejected: inbox.rejected.take(),
    };
    loop {
        let current = inbox.pod.borrow_and_update().clone();
        // boxed: the sync/terminate state machines are large and would
        // otherwise stay allocated in every idle worker task
        let finished = match current {
            None => Box::pin(w.terminate(None)).await,
            Some(p) if p.metadata.deletion_timestamp.is_some() => {
                w.last_pod = Some(p.clone());
                Box::pin(w.terminate(Some(p))).await
            }
            Some(p) => {
                w.last_pod = Some(p.clone());
                Box::pin(w.sync(&p)).await;
                false
            }
        };
        if finished {
            w.shared.ctx.running.remove(&w.uid);
            return;
        }
        let wait = w.next_wake.take().unwrap_or(RESYNC).min(RESYNC);
        tokio::select! {
            r = inbox.pod.changed() => if r.is_err() { return },
            _ = inbox.kick.notified() => {}
            Some(u) = inbox.probe.recv() => w.on_probe(u),
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

fn container_ref(pod: &Pod, c: &str, init: bool) -> ObjectReference {
    let m = &pod.metadata;
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        name: m.name.clone(),
        namespace: m.namespace.clone(),
        uid: m.uid.clone(),
        resource_version: m.resource_version.clone(),
        field_path: Some(if init {
            format!("spec.initContainers{{{c}}}")
        } else if pod
            .spec
            .iter()
            .flat_map(|s| s.ephemeral_containers.iter().flatten())
            .any(|e| e.name == c)
        {
            format!("spec.ephemeralContainers{{{c}}}")
        } else {
            format!("spec.containers{{{c}}}")
        }),
    }
}

/// The spec of container `name` and whether it is an init container; an
/// ephemeral container comes as the `Container` its fields make.
fn find_spec<'a>(pod: &'a Pod, name: &str) -> Option<(Cow<'a, Container>, bool)> {
    let spec = pod.spec.as_ref()?;
    if let Some(c) = spec.containers.iter().find(|c| c.name == name) {
        return Some((Cow::Borrowed(c), false));
    }
    if let Some(c) = spec
        .init_containers
        .iter()
        .flatten()
        .find(|c| c.name == name)
    {
        return Some((Cow::Borrowed(c), true));
    }
    let e = spec
        .ephemeral_containers
        .iter()
        .flatten()
        .find(|c| c.name == name)?;
    Some((Cow::Owned(plan::from_ephemeral(e)), false))
}

fn spec_grace(pod: &Pod) -> i64 {
    pod.spec
        .as_ref()
        .and_then(|s| s.termination_grace_period_seconds)
        .unwrap_or(30)
}

impl Worker {
    fn ctx(&self) -> &super::KubeletContext {
        &self.shared.ctx
    }

    fn event(&self, pod: &Pod, c: Option<(&str, bool)>, kind: Kind, reason: &str, msg: &str) {
        match c {
            Some((name, init)) => {
                self.ctx()
                    .recorder
                    .record_ref(container_ref(pod, name, init), kind, reason, msg)
            }
            None => self.ctx().recorder.record(pod, kind, reason, msg),
        }
    }

    fn on_probe(&mut self, u: ProbeUpdate) {
        let set = match u.kind {
            ProbeKind::Liveness => &mut self.verdicts.liveness_failed,
            ProbeKind::Startup => &mut self.verdicts.startup_failed,
            ProbeKind::Readiness => return,
        };
        if u.success {
            set.remove(&u.container_id);
        } else {
            set.insert(u.container_id);
        }
    }

    /// A static pod's status lives only in this kubelet: put the one last
    /// computed back on the pod from the file.
    fn with_local_status(&self, pod: &Arc<Pod>) -> Arc<Pod> {
        if !static_pods::is_static(pod) {
            return pod.clone();
        }
        match self.ctx().running.get(&self.uid) {
            Some(r) if r.status.is_some() => Arc::new(Pod {
                status: r.status.clone(),
                ..(**pod).clone()
            }),
            _ => pod.clone(),
        }
    }

    fn log_dir(&self, pod: &Pod) -> std::path::PathBuf {
        let m = &pod.metadata;
        std::path::PathBuf::from(sandbox::log_directory(
            &self.ctx().cfg.pod_logs_dir(),
            m.namespace.as_deref().unwrap_or_default(),
            m.name.as_deref().unwrap_or_default(),
            &self.uid,
        ))
    }

    fn termination_file(&self, name: &str, restart_count: i32) -> std::path::PathBuf {
        self.ctx()
            .cfg
            .pods_dir()
            .join(&self.uid)
            .join("containers")
            .join(name)
            .join(restart_count.to_string())
    }

    async fn sync(&mut self, pod: &Arc<Pod>) {
        let pod = &self.with_local_status(pod);
        let cri = self.ctx().cri.clone();
        self.lap.reset();
        let mut rt = match runtime::observe(&cri, &self.uid).await {
            Ok(rt) => rt,
            Err(e) => {
                tracing::warn!("kubelet: pod {}: reading the runtime: {e}", format_pod(pod));
                self.next_wake = Some(Duration::from_secs(1));
                return;
            }
        };
        self.lap.mark(&self.uid, "observe");
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        let terminal = matches!(phase, Some("Succeeded" | "Failed"));
        self.deadline_exceeded = false;
        if !terminal && let Some(left) = status::active_deadline_left(pod, Utc::now()) {
            if left <= 0 {
                self.deadline_exceeded = true;
                self.event(
                    pod,
                    None,
                    Kind::Normal,
                    status::DEADLINE_REASON,
                    status::DEADLINE_MESSAGE,
                );
            } else {
                let left = Duration::from_secs(left as u64);
                self.next_wake = Some(self.next_wake.map_or(left, |w| w.min(left)));
            }
        }
        if let Some(r) = &self.rejected
            && !terminal
        {
            self.event(pod, None, Kind::Warning, &r.reason, &r.message);
        }
        let acted = if terminal || self.deadline_exceeded || self.rejected.is_some() {
            self.waiting.clear();
            let p = Plan {
                kill_pod: true,
                ..Default::default()
            };
            self.execute(pod, &rt, p).await
        } else {
            let probes = &self.shared.probes;
            self.verdicts.startup_pending = rt
                .containers
                .iter()
                .filter(|c| c.state == CState::Running && !probes.is_started(&c.id))
                .map(|c| c.id.clone())
                .collect();
            let p = plan::plan(pod, &rt, &self.verdicts);
            self.execute(pod, &rt, p).await
        };
        if acted {
            match runtime::observe(&cri, &self.uid).await {
                Ok(r) => rt = r,
                Err(e) => tracing::warn!("kubelet: pod {}: {e}", format_pod(pod)),
            }
            self.lap.mark(&self.uid, "re-observe");
        }
        self.fill_messages(pod, &mut rt);
        self.report(pod, &rt).await;
        self.lap.mark(&self.uid, "report");
        self.restart_backoff.gc(now_nanos());
    }

    /// Carry out a plan; true when the runtime changed.
    async fn execute(&mut self, pod: &Arc<Pod>, rt: &PodRuntime, plan: Plan) -> bool {
        let cri = self.ctx().cri.clone();
        let starting: HashSet<&str> = plan.start.iter().map(|s| s.name.as_str()).collect();
        self.waiting.retain(|n, _| starting.contains(n.as_str()));
        let mut acted = false;
        let grace = spec_grace(pod).max(MIN_GRACE);
        for (id, name, reason) in &plan.kill {
            let msg = match reason {
                KillReason::Liveness => {
                    format!("Container {name} failed liveness probe, will be restarted")
                }
                KillReason::Startup => {
                    format!("Container {name} failed startup probe, will be restarted")
                }
                KillReason::SpecChanged => {
                    format!("Container {name} definition changed, will be restarted")
                }
            };
            self.kill_container(pod, id, name, grace, &msg, rt).await;
            self.verdicts.liveness_failed.remove(id);
            self.verdicts.startup_failed.remove(id);
            acted = true;
        }
        if plan.kill_pod && (rt.any_running() || rt.sandboxes.iter().any(|s| s.ready)) {
            self.kill_all(pod, rt, grace).await;
            for s in rt.sandboxes.iter().filter(|s| s.ready) {
                if let Err(e) = runtime::stop_sandbox(&cri, &s.id).await {
                    tracing::warn!("kubelet: stopping sandbox {}: {e}", s.id);
                }
            }
            acted = true;
        }
        for id in &plan.remove_containers {
            if let Some(c) = rt.containers.iter().find(|c| &c.id == id) {
                let log = self
                    .log_dir(pod)
                    .join(&c.name)
                    .join(format!("{}.log", c.restart_count));
                let _ = std::fs::remove_file(log);
                let _ = std::fs::remove_file(self.termination_file(&c.name, c.restart_count));
            }
            if let Err(e) = runtime::remove_container(&cri, id).await {
                tracing::warn!("kubelet: removing container {id}: {e}");
            }
        }
        for id in &plan.remove_sandboxes {
            if let Err(e) = runtime::remove_sandbox(&cri, id).await {
                tracing::warn!("kubelet: removing sandbox {id}: {e}");
            }
        }
        let mut vctx = VolumeContext {
            client: self.ctx().client.clone(),
            pods_dir: self.ctx().cfg.pods_dir(),
            node_name: self.ctx().cfg.node_name.clone(),
            reads: None,
        };
        if plan.start.is_empty() && plan.create_sandbox.is_none() {
            vctx.reads = Some(self.shared.volume_reads.clone());
            // nothing to start: still refresh configMap/secret/downwardAPI/
            // projected contents of a running pod, so updates propagate
            if !plan.kill_pod
                && pod.metadata.deletion_timestamp.is_none()
                && rt.any_running()
                && has_refreshable_volumes(pod)
                && let Err(e) = volumes::prepare(&vctx, pod).await
            {
                self.event(pod, None, Kind::Warning, "FailedMount", &e.to_string());
            }
            return acted;
        }

        // a new sandbox is created while the volumes are prepared: neither
        // needs the other, and containers need both
        let sandbox_step = async {
            let attempt = plan.create_sandbox?;
            let cfg = sandbox::sandbox_config(pod, attempt, &self.ctx().cfg);
            Some(self.run_sandbox(cfg).await)
        };
        let (prepared, created) = tokio::join!(volumes::prepare(&vctx, pod), sandbox_step);
        self.lap.mark(&self.uid, "volumes+sandbox");
        let created = match created {
            Some(Ok(c)) => {
                acted = true;
                Some(c)
            }
            Some(Err(msg)) => {
                self.event(pod, None, Kind::Warning, "FailedCreatePodSandBox", &msg);
                self.next_wake = Some(Duration::from_secs(2));
                return true;
            }
            None => None,
        };
        let prepared = match prepared {
            Ok(p) => p,
            Err(e) => {
                let msg = e.to_string();
                self.event(pod, None, Kind::Warning, "FailedMount", &msg);
                self.next_wake = Some(Duration::from_secs(2));
                return acted;
            }
        };

        let (sandbox_id, sandbox_cfg, pod_ips) = match created {
            Some(c) => c,
            None => {
                let Some(s) = rt.current_sandbox() else {
                    return acted;
                };
                (
                    s.id.clone(),
                    sandbox::sandbox_config(pod, s.attempt, &self.ctx().cfg),
                    s.ips.clone(),
                )
            }
        };
        let pod_ips = if pod
            .spec
            .as_ref()
            .and_then(|s| s.host_network)
            .unwrap_or(false)
        {
            vec![self.ctx().cfg.node_ip.to_string()]
        } else {
            pod_ips
        };

        for s in &plan.start {
            let Some((spec, init)) = find_spec(pod, &s.name) else {
                continue;
            };
            if let Some(latest) = rt.latest(&s.name)
                && matches!(latest.state, CState::Exited | CState::Unknown)
                && plan.create_sandbox.is_none()
            {
                let key = format!("{}_{}", self.uid, s.name);
                let now = now_nanos();
                if let Some(b) =
                    self.restart_backoff
                        .in_backoff_since(&key, latest.finished_at, now)
                {
                    self.event(
                        pod,
                        Some((&s.name, init)),
                        Kind::Warning,
                        "BackOff",
                        &format!(
                            "Back-off restarting failed container {} in pod {}",
                            s.name,
                            format_pod(pod)
                        ),
                    );
                    self.waiting.insert(
                        s.name.clone(),
                        (
                            "CrashLoopBackOff".into(),
                            format!(
                                "back-off {} restarting failed container={} pod={}",
                                go_duration(b),
                                s.name,
                                format_pod(pod)
                            ),
                        ),
                    );
                    let left = (latest.finished_at + b - now).max(SECOND / 10);
                    let left = Duration::from_nanos(left as u64);
                    self.next_wake = Some(self.next_wake.map_or(left, |w| w.min(left)));
                    if init && !plan::is_sidecar(&spec) {
                        break;
                    }
                    continue;
                }
                self.restart_backoff.next(&key, latest.finished_at, now);
            }
            match self
                .start_container(
                    pod,
                    &spec,
                    init,
                    s,
                    &sandbox_id,
                    &sandbox_cfg,
                    &prepared,
                    &pod_ips,
                )
                .await
            {
                Ok(_) => {
                    self.waiting.remove(&s.name);
                    acted = true;
                }
                Err((reason, msg)) => {
                    self.waiting.insert(s.name.clone(), (reason, msg));
                    self.next_wake = Some(
                        self.next_wake
                            .map_or(Duration::from_secs(2), |w| w.min(Duration::from_secs(2))),
                    );
                    if init && !plan::is_sidecar(&spec) {
                        break;
                    }
                }
            }
        }
        acted
    }

    /// RunPodSandbox, then its IPs; the FailedCreatePodSandBox message on
    /// failure.
    async fn run_sandbox(
        &self,
        cfg: api::PodSandboxConfig,
    ) -> Result<(String, api::PodSandboxConfig, Vec<String>), String> {
        let cri = self.ctx().cri.clone();
        if let Err(e) = tokio::fs::create_dir_all(&cfg.log_directory).await {
            tracing::warn!("kubelet: creating {}: {e}", cfg.log_directory);
        }
        let res = cri
            .runtime
            .clone()
            .run_pod_sandbox(api::RunPodSandboxRequest {
                config: Some(cfg.clone()),
                runtime_handler: String::new(),
            })
            .await;
        self.lap.mark(&self.uid, "run_pod_sandbox");
        let id = match res {
            Ok(r) => r.into_inner().pod_sandbox_id,
            Err(e) => return Err(format!("Failed to create pod sandbox: {}", e.message())),
        };
        let ips = match cri
            .runtime
            .clone()
            .pod_sandbox_status(api::PodSandboxStatusRequest {
                pod_sandbox_id: id.clone(),
                verbose: false,
            })
            .await
        {
            Ok(r) => r
                .into_inner()
                .status
                .and_then(|s| s.network)
                .map(|n| {
                    let mut v = vec![n.ip];
                    v.extend(n.additional_ips.into_iter().map(|i| i.ip));
                    v.retain(|i| !i.is_empty());
                    v
                })
                .unwrap_or_default(),
            Err(_) => Vec::new(),
        };
        self.lap.mark(&self.uid, "sandbox_status");
        Ok((id, cfg, ips))
    }

    /// Make sure the image is there per pull policy; its id and user.
    async fn ensure_image(
        &mut self,
        pod: &Pod,
        c: &Container,
        init: bool,
        sandbox_cfg: &api::PodSandboxConfig,
    ) -> Result<api::Image, (String, String)> {
        let cri = self.ctx().cri.clone();
        let image = c.image.clone().unwrap_or_default();
        let policy = container::pull_policy(c);
        let who = Some((c.name.as_str(), init));
        let status = |cri: crate::kubelet::cri::Cri, image: String| async move {
            cri.image
                .clone()
                .image_status(api::ImageStatusRequest {
                    image: Some(api::ImageSpec {
                        image,
                        ..Default::default()
                    }),
                    verbose: false,
                })
                .await
                .map(|r| r.into_inner().image)
        };
        let present = match status(cri.clone(), image.clone()).await {
            Ok(p) => p,
            Err(e) => {
                let msg = format!("Failed to inspect image \"{image}\": {}", e.message());
                self.event(pod, who, Kind::Warning, "InspectFailed", &msg);
                return Err(("ImageInspectError".into(), msg));
            }
        };
        match (policy.as_str(), present) {
            ("Never", None) => {
                let msg =
                    format!("Container image \"{image}\" is not present with pull policy of Never");
                self.event(pod, who, Kind::Warning, "ErrImageNeverPull", &msg);
                Err(("ErrImageNeverPull".into(), msg))
            }
            (p, Some(img)) if p != "Always" => {
                self.event(
                    pod,
                    who,
                    Kind::Normal,
                    "Pulled",
                    &format!("Container image \"{image}\" already present on machine"),
                );
                Ok(img)
            }
            _ => {
                let key = format!("{}_{image}", self.uid);
                let now = now_nanos();
                if self.pull_backoff.in_backoff_since_update(&key, now) {
                    let msg = format!("Back-off pulling image \"{image}\"");
                    self.event(pod, who, Kind::Normal, "BackOff", &msg);
                    return Err(("ImagePullBackOff".into(), msg));
                }
                self.event(
                    pod,
                    who,
                    Kind::Normal,
                    "Pulling",
                    &format!("Pulling image \"{image}\""),
                );
                let started = Instant::now();
                let res = cri
                    .image
                    .clone()
                    .pull_image(api::PullImageRequest {
                        image: Some(api::ImageSpec {
                            image: image.clone(),
                            ..Default::default()
                        }),
                        auth: None,
                        sandbox_config: Some(sandbox_cfg.clone()),
                    })
                    .await;
                match res {
                    Ok(_) => {
                        let took = started.elapsed();
                        self.event(
                            pod,
                            who,
                            Kind::Normal,
                            "Pulled",
                            &format!(
                                "Successfully pulled image \"{image}\" in {:.3}s",
                                took.as_secs_f64()
                            ),
                        );
                        match status(cri, image.clone()).await {
                            Ok(Some(img)) => Ok(img),
                            _ => Err((
                                "ErrImagePull".into(),
                                format!("image \"{image}\" not found after pull"),
                            )),
                        }
                    }
                    Err(e) => {
                        self.pull_backoff.next(&key, now, now);
                        let msg = format!("Failed to pull image \"{image}\": {}", e.message());
                        self.event(pod, who, Kind::Warning, "Failed", &msg);
                        self.event(pod, who, Kind::Warning, "Failed", "Error: ErrImagePull");
                        Err(("ErrImagePull".into(), msg))
                    }
                }
            }
        }
    }

    async fn env_for(
        &self,
        pod: &Pod,
        c: &Container,
        pod_ips: &[String],
    ) -> Result<Vec<(String, String)>, String> {
        let client = self.ctx().client.clone();
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let (cm_names, secret_names) = env::referenced_objects(&[c]);
        let cms_api: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
        let secrets_api: Api<Secret> = Api::namespaced(client.clone(), &ns);
        let mut cms = Vec::new();
        for n in cm_names {
            match cms_api.get_opt(&n).await {
                Ok(Some(cm)) => cms.push(cm),
                Ok(None) => {}
                Err(e) => return Err(format!("configmap \"{n}\": {e}")),
            }
        }
        let mut secrets = Vec::new();
        for n in secret_names {
            match secrets_api.get_opt(&n).await {
                Ok(Some(s)) => secrets.push(s),
                Ok(None) => {}
                Err(e) => return Err(format!("secret \"{n}\": {e}")),
            }
        }
        let links = pod
            .spec
            .as_ref()
            .and_then(|s| s.enable_service_links)
            .unwrap_or(true);
        let mut services: Vec<Service> = Vec::new();
        if links {
            let svc_api: Api<Service> = Api::namespaced(client.clone(), &ns);
            if let Ok(l) = svc_api.list(&Default::default()).await {
                services.extend(l.items);
            }
        }
        if ns != "default" || !links {
            let svc_api: Api<Service> = Api::namespaced(client, "default");
            if let Ok(Some(k)) = svc_api.get_opt("kubernetes").await {
                services.retain(|s| s.metadata.name.as_deref() != Some("kubernetes"));
                services.push(k);
            }
        }
        let refs: Vec<&Service> = services.iter().collect();
        let src = EnvSources {
            node_name: self.ctx().cfg.node_name.clone(),
            host_ips: vec![self.ctx().cfg.node_ip.to_string()],
            pod_ips: pod_ips.to_vec(),
            config_maps: cms
                .iter()
                .filter_map(|c| Some((c.metadata.name.clone()?, c)))
                .collect(),
            secrets: secrets
                .iter()
                .filter_map(|c| Some((c.metadata.name.clone()?, c)))
                .collect(),
            service_env: env::service_env(&refs),
            node_cpu_millis: self.shared.alloc_cpu_millis,
            node_memory_bytes: self.shared.alloc_memory_bytes,
        };
        env::container_env(pod, c, &src).map_err(|e| e.to_string())
    }

    #[allow(clippy::too_many_arguments)]
    async fn start_container(
        &mut self,
        pod: &Pod,
        c: &Container,
        init: bool,
        s: &ToStart,
        sandbox_id: &str,
        sandbox_cfg: &api::PodSandboxConfig,
        prepared: &PreparedVolumes,
        pod_ips: &[String],
    ) -> Result<String, (String, String)> {
        let cri = self.ctx().cri.clone();
        let who = Some((c.name.as_str(), init));
        let image = self.ensure_image(pod, c, init, sandbox_cfg).await?;
        self.lap.mark(&self.uid, "image");
        let config_error = |w: &Worker, msg: String| {
            w.event(pod, who, Kind::Warning, "Failed", &format!("Error: {msg}"));
            ("CreateContainerConfigError".to_string(), msg)
        };
        if let Err(m) =
            container::verify_run_as_non_root(pod, c, image.uid.map(|u| u.value), &image.username)
        {
            return Err(config_error(self, m));
        }
        let env = match self.env_for(pod, c, pod_ips).await {
            Ok(e) => e,
            Err(m) => return Err(config_error(self, m)),
        };
        self.lap.mark(&self.uid, "env");
        let mut mounts = match prepared.mounts_for(c) {
            Ok(m) => m,
            Err(e) => return Err(config_error(self, e.to_string())),
        };
        let tm_path = c
            .termination_message_path
            .clone()
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| DEFAULT_TERMINATION_MESSAGE_PATH.into());
        let tm_file = self.termination_file(&c.name, s.restart_count);
        if let Err(e) = create_world_writable(&tm_file) {
            return Err(config_error(
                self,
                format!("creating termination message file: {e}"),
            ));
        }
        // the kubelet-managed /etc/hosts (pod IP, hostname, hostAliases), as upstream,
        // unless the pod shares the host's network or mounts its own
        let host_network = pod
            .spec
            .as_ref()
            .and_then(|s| s.host_network)
            .unwrap_or(false);
        if !host_network && !mounts.iter().any(|m| m.container_path == "/etc/hosts") {
            let ip = pod_ips.first().and_then(|i| i.parse().ok());
            let domain = self.ctx().cfg.cluster_domain.clone();
            match prepared.write_etc_hosts_in_domain(pod, ip, &domain).await {
                Ok(()) => mounts.extend(prepared.etc_hosts_mount()),
                Err(e) => tracing::warn!("kubelet: writing /etc/hosts: {e}"),
            }
        }
        if !mounts.iter().any(|m| m.container_path == tm_path) {
            mounts.push(api::Mount {
                container_path: tm_path,
                host_path: tm_file.display().to_string(),
                ..Default::default()
            });
        }
        let _ =
            std::fs::create_dir_all(std::path::Path::new(&sandbox_cfg.log_directory).join(&c.name));
        let config = container::container_config(
            pod,
            c,
            ContainerInputs {
                restart_count: s.restart_count,
                image_ref: image.id.clone(),
                env,
                mounts,
                qos: sandbox::qos_class(pod),
                node_memory_bytes: self.shared.node_memory_bytes,
                pid_target: s.pid_target.clone(),
            },
        );
        self.lap.mark(&self.uid, "mounts");
        let created = cri
            .runtime
            .clone()
            .create_container(api::CreateContainerRequest {
                pod_sandbox_id: sandbox_id.to_string(),
                config: Some(config),
                sandbox_config: Some(sandbox_cfg.clone()),
            })
            .await;
        self.lap.mark(&self.uid, "create_container");
        let id = match created {
            Ok(r) => r.into_inner().container_id,
            Err(e) => {
                let msg = e.message().to_string();
                self.event(pod, who, Kind::Warning, "Failed", &format!("Error: {msg}"));
                return Err(("CreateContainerError".into(), msg));
            }
        };
        self.event(
            pod,
            who,
            Kind::Normal,
            "Created",
            &format!("Created container: {}", c.name),
        );
        if let Err(e) = cri
            .runtime
            .clone()
            .start_container(api::StartContainerRequest {
                container_id: id.clone(),
            })
            .await
        {
            let msg = e.message().to_string();
            self.event(pod, who, Kind::Warning, "Failed", &format!("Error: {msg}"));
            return Err(("RunContainerError".into(), msg));
        }
        self.lap.mark(&self.uid, "start_container");
        self.event(
            pod,
            who,
            Kind::Normal,
            "Started",
            &format!("Started container {}", c.name),
        );
        let pod_ip = pod_ips.first().and_then(|i| i.parse().ok());
        if !init || plan::is_sidecar(c) {
            self.shared.probes.add_container(pod, c, &id, pod_ip);
        }
        if let Some(h) = c.lifecycle.as_ref().and_then(|l| l.post_start.as_ref())
            && let Err(msg) = self.run_hook(c, &id, h, pod_ips, spec_grace(pod)).await
        {
            self.event(pod, who, Kind::Warning, "FailedPostStartHook", &msg);
            self.shared.probes.remove_container(&id);
            let _ = runtime::stop_container(&cri, &id, spec_grace(pod).max(MIN_GRACE)).await;
            return Err(("PostStartHookError".into(), msg));
        }
        Ok(id)
    }

    /// Run a lifecycle hook; `Err` carries upstream-like failure text.
    async fn run_hook(
        &self,
        c: &Container,
        id: &str,
        h: &LifecycleHandler,
        pod_ips: &[String],
        timeout: i64,
    ) -> Result<(), String> {
        if let Some(exec) = &h.exec {
            let cmd = exec.command.clone().unwrap_or_default();
            let r = self
                .ctx()
                .cri
                .runtime
                .clone()
                .exec_sync(api::ExecSyncRequest {
                    container_id: id.to_string(),
                    cmd: cmd.clone(),
                    timeout,
                })
                .await
                .map_err(|e| {
                    format!(
                        "Exec lifecycle hook ({cmd:?}) for Container \"{}\" failed - error: {}",
                        c.name,
                        e.message()
                    )
                })?
                .into_inner();
            if r.exit_code != 0 {
                let mut out = String::from_utf8_lossy(&r.stdout).into_owned();
                out.push_str(&String::from_utf8_lossy(&r.stderr));
                return Err(format!(
                    "Exec lifecycle hook ({cmd:?}) for Container \"{}\" failed - error: command '{}' exited with {}: {out}",
                    c.name,
                    cmd.join(" "),
                    r.exit_code
                ));
            }
            return Ok(());
        }
        if let Some(get) = &h.http_get {
            let host = get
                .host
                .clone()
                .filter(|h| !h.is_empty())
                .or_else(|| pod_ips.first().cloned())
                .unwrap_or_else(|| "127.0.0.1".into());
            let port = match &get.port {
                k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(p) => *p,
                k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(name) => c
                    .ports
                    .iter()
                    .flatten()
                    .find(|p| p.name.as_deref() == Some(name))
                    .map(|p| p.container_port)
                    .unwrap_or(0),
            };
            let path = get.path.clone().unwrap_or_else(|| "/".into());
            let fut = http_get(&host, port, &path);
            return match tokio::time::timeout(Duration::from_secs(timeout.max(1) as u64), fut).await
            {
                Ok(Ok(code)) if (200..400).contains(&code) => Ok(()),
                Ok(Ok(code)) => Err(format!(
                    "HTTP lifecycle hook ({path}) for Container \"{}\" failed - error: HTTP status {code}",
                    c.name
                )),
                Ok(Err(e)) => Err(format!(
                    "HTTP lifecycle hook ({path}) for Container \"{}\" failed - error: {e}",
                    c.name
                )),
                Err(_) => Err(format!(
                    "HTTP lifecycle hook ({path}) for Container \"{}\" failed - error: timeout",
                    c.name
                )),
            };
        }
        if let Some(sleep) = &h.sleep {
            tokio::time::sleep(Duration::from_secs(
                sleep.seconds.clamp(0, timeout.max(0)) as u64
            ))
            .await;
        }
        Ok(())
    }

    /// preStop, then StopContainer with what is left of `grace`.
    async fn kill_container(
        &self,
        pod: &Pod,
        id: &str,
        name: &str,
        grace: i64,
        msg: &str,
        rt: &PodRuntime,
    ) {
        let spec = find_spec(pod, name);
        let init = spec.as_ref().is_some_and(|(_, i)| *i);
        self.event(pod, Some((name, init)), Kind::Normal, "Killing", msg);
        let mut grace = grace;
        if let Some((c, init)) = spec
            && (!init || plan::is_sidecar(&c))
            && let Some(h) = c.lifecycle.as_ref().and_then(|l| l.pre_stop.as_ref())
        {
            let started = Instant::now();
            let ips = rt
                .current_sandbox()
                .map(|s| s.ips.clone())
                .unwrap_or_default();
            let hook = self.run_hook(&c, id, h, &ips, grace);
            match tokio::time::timeout(Duration::from_secs(grace.max(1) as u64), hook).await {
                Ok(Ok(())) => {}
                Ok(Err(m)) => self.event(
                    pod,
                    Some((name, false)),
                    Kind::Warning,
                    "FailedPreStopHook",
                    &m,
                ),
                Err(_) => {}
            }
            grace -= started.elapsed().as_secs() as i64;
        }
        self.shared.probes.remove_container(id);
        if let Err(e) = runtime::stop_container(&self.ctx().cri, id, grace.max(MIN_GRACE)).await {
            tracing::warn!("kubelet: stopping container {id}: {e}");
        }
    }

    /// Stop every running container of the pod concurrently.
    /// Stops every running container: app containers (and any regular init
    /// container) together first, then sidecars one by one in reverse
    /// order, as upstream, all within `grace` seconds.
    async fn kill_all(&self, pod: &Pod, rt: &PodRuntime, grace: i64) {
        let sidecars: Vec<&str> = pod
            .spec
            .iter()
            .flat_map(|s| s.init_containers.iter().flatten())
            .filter(|c| plan::is_sidecar(c))
            .map(|c| c.name.as_str())
            .collect();
        let running = || rt.containers.iter().filter(|c| c.state == CState::Running);
        let deadline = Instant::now() + Duration::from_secs(grace.max(0) as u64);
        let left =
            || (deadline.saturating_duration_since(Instant::now()).as_secs() as i64).max(MIN_GRACE);
        let kills = running()
            .filter(|c| !sidecars.contains(&c.name.as_str()))
            .map(|c| {
                let msg = format!("Stopping container {}", c.name);
                async move {
                    self.kill_container(pod, &c.id, &c.name, grace, &msg, rt)
                        .await
                }
            });
        futures::future::join_all(kills).await;
        for name in sidecars.iter().rev() {
            for c in running().filter(|c| c.name == *name) {
                let msg = format!("Stopping container {}", c.name);
                self.kill_container(pod, &c.id, &c.name, left(), &msg, rt)
                    .await;
            }
        }
    }

    /// Delete everything of the pod; true when done (and the pod object,
    /// if it still exists, deleted).
    async fn terminate(&mut self, pod: Option<Arc<Pod>>) -> bool {
        let cri = self.ctx().cri.clone();
        let rt = match runtime::observe(&cri, &self.uid).await {
            Ok(rt) => rt,
            Err(e) => {
                tracing::warn!("kubelet: pod uid {}: reading the runtime: {e}", self.uid);
                self.next_wake = Some(Duration::from_secs(1));
                return false;
            }
        };
        let known = pod.clone().or_else(|| self.last_pod.clone());
        let grace = match pod
            .as_ref()
            .and_then(|p| p.metadata.deletion_timestamp.as_ref())
        {
            Some(ts) => {
                let deadline = crate::controllers::podutil::time_to_chrono(ts);
                (deadline - Utc::now()).num_seconds()
            }
            None => MIN_GRACE,
        }
        .max(MIN_GRACE);
        if let Some(p) = known.as_ref() {
            self.kill_all(p, &rt, grace).await;
        }
        for s in &rt.sandboxes {
            if let Err(e) = runtime::remove_sandbox(&cri, &s.id).await {
                tracing::warn!("kubelet: removing sandbox {}: {e}", s.id);
                self.next_wake = Some(Duration::from_secs(1));
                return false;
            }
        }
        // containers of sandboxes already gone
        for c in &rt.containers {
            let _ = runtime::remove_container(&cri, &c.id).await;
        }
        self.shared.probes.remove_pod(&self.uid);
        if let Some(p) = known.as_ref() {
            let _ = tokio::fs::remove_dir_all(self.log_dir(p)).await;
        }
        release_pod_resources(&self.shared, &self.uid).await;
        let Some(p) = pod else { return true };
        let ns = p.metadata.namespace.clone().unwrap_or_default();
        let name = p.metadata.name.clone().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.ctx().client.clone(), &ns);
        let dp = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(self.uid.clone()),
                resource_version: None,
            }),
            ..Default::default()
        };
        match api.delete(&name, &dp).await {
            Ok(_) => true,
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => true,
            Err(e) => {
                tracing::warn!("kubelet: deleting pod {ns}/{name}: {e}");
                self.next_wake = Some(Duration::from_secs(1));
                false
            }
        }
    }

    /// Fill termination messages of exited instances (file, or log tail).
    fn fill_messages(&self, pod: &Pod, rt: &mut PodRuntime) {
        let log_dir = self.log_dir(pod);
        for c in rt.containers.iter_mut() {
            if c.state != CState::Exited || !c.message.is_empty() {
                continue;
            }
            let file = self.termination_file(&c.name, c.restart_count);
            let mut msg = std::fs::read(&file)
                .map(|mut b| {
                    b.truncate(MAX_MESSAGE);
                    String::from_utf8_lossy(&b).into_owned()
                })
                .unwrap_or_default();
            let fallback = find_spec(pod, &c.name).is_some_and(|(s, _)| {
                s.termination_message_policy.as_deref() == Some("FallbackToLogsOnError")
            });
            if msg.is_empty() && fallback && c.exit_code != 0 {
                let log = log_dir
                    .join(&c.name)
                    .join(format!("{}.log", c.restart_count));
                if let Ok(text) = std::fs::read_to_string(log) {
                    msg = log_tail(&text);
                }
            }
            c.message = msg;
        }
    }

    async fn report(&mut self, pod: &Pod, rt: &PodRuntime) {
        let probes = &self.shared.probes;
        let ips: Option<std::net::IpAddr> = rt
            .current_sandbox()
            .and_then(|s| s.ips.first())
            .and_then(|i| i.parse().ok());
        for spec in pod.spec.iter().flat_map(|s| s.containers.iter()) {
            if let Some(c) = rt.latest(&spec.name)
                && c.state == CState::Running
            {
                probes.add_container(pod, spec, &c.id, ips);
            }
        }
        let st = status::pod_status(&StatusInput {
            pod,
            rt,
            waiting: &self.waiting,
            ready: &|id| probes.is_ready(id),
            started: &|id| probes.is_started(id),
            host_ips: vec![self.ctx().cfg.node_ip.to_string()],
            now: Utc::now(),
        });
        let mut st = st;
        if self.deadline_exceeded {
            status::mark_deadline_exceeded(&mut st);
        }
        if let Some(r) = &self.rejected {
            // as upstream's rejectPod: no container ever existed
            st.phase = Some("Failed".into());
            st.reason = Some(r.reason.clone());
            st.message = Some(r.message.clone());
            st.container_statuses = None;
            st.init_container_statuses = None;
            st.ephemeral_container_statuses = None;
        }
        self.ctx().running.set(Pod {
            status: Some(st.clone()),
            ..pod.clone()
        });
        let new = serde_json::to_value(&st).unwrap_or_default();
        if static_pods::is_static(pod) {
            // the mirror-pod manager copies it to the API
            self.last_patched = Some(new);
            return;
        }
        let old = serde_json::to_value(pod.status.clone().unwrap_or_default()).unwrap_or_default();
        if self.last_patched.as_ref() == Some(&new) || new == old {
            return;
        }
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.ctx().client.clone(), &ns);
        let body = serde_json::json!({"metadata": {"uid": self.uid}, "status": new});
        match api
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&body))
            .await
        {
            Ok(_) => self.last_patched = Some(new),
            Err(e) => {
                tracing::warn!("kubelet: updating status of pod {ns}/{name}: {e}");
                self.next_wake = Some(Duration::from_secs(1));
            }
        }
    }
}

/// Volumes, pod directory and cgroups of a pod whose sandboxes are gone.
pub(super) async fn release_pod_resources(shared: &Shared, uid: &str) {
    let r = volumes::teardown(&shared.ctx.cfg.pods_dir(), uid).await;
    tracing::debug!("kubelet: volumes of pod uid {uid} torn down: {r:?}");
    let _ = tokio::fs::remove_dir_all(shared.ctx.cfg.pods_dir().join(uid)).await;
    runtime::remove_pod_cgroups(uid);
    if let Ok(rd) = std::fs::read_dir(shared.ctx.cfg.pod_logs_dir()) {
        let suffix = format!("_{uid}");
        for e in rd.flatten() {
            if e.file_name().to_string_lossy().ends_with(&suffix) {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}

fn create_world_writable(path: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    if !path.exists() {
        std::fs::write(path, b"")?;
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))
}

/// The message part of the last lines of a CRI log file.
fn log_tail(text: &str) -> String {
    let mut lines: Vec<String> = Vec::new();
    let mut partial = String::new();
    for l in text.lines() {
        let mut parts = l.splitn(4, ' ');
        let (_ts, _stream, tag, msg) = (parts.next(), parts.next(), parts.next(), parts.next());
        let msg = msg.unwrap_or_default();
        partial.push_str(msg);
        if tag != Some("P") {
            lines.push(std::mem::take(&mut partial));
        }
    }
    let start = lines.len().saturating_sub(LOG_TAIL_LINES);
    let mut out = lines[start..].join("\n");
    if out.len() > LOG_TAIL_BYTES {
        let mut cut = out.len() - LOG_TAIL_BYTES;
        while !out.is_char_boundary(cut) {
            cut += 1;
        }
        out = out[cut..].to_string();
    }
    out
}

/// A minimal HTTP/1.1 GET; the status code.
async fn http_get(host: &str, port: i32, path: &str) -> std::io::Result<u16> {
    let addr = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: kube-lifecycle/1.33\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await?;
    let mut buf = vec![0u8; 1024];
    let n = s.read(&mut buf).await?;
    let head = String::from_utf8_lossy(&buf[..n]);
    head.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other("malformed HTTP response"))
}

/// Volumes whose content follows API objects and so must be rewritten on resync.
fn has_refreshable_volumes(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .is_some_and(|vs| {
            vs.iter().any(|v| {
                v.config_map.is_some()
                    || v.secret.is_some()
                    || v.downward_api.is_some()
                    || v.projected.is_some()
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_tails() {
        let text = "2024-01-01T00:00:00Z stdout F one\n2024-01-01T00:00:00Z stderr P tw\n2024-01-01T00:00:00Z stderr F o\n";
        assert_eq!(log_tail(text), "one\ntwo");
        let many: String = (0..200).map(|i| format!("t stdout F line{i}\n")).collect();
        let t = log_tail(&many);
        assert!(t.starts_with("line120"), "{t}");
    }
}
