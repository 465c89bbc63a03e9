//! The pod sync planner: from a pod's spec and what the runtime holds for it
//! (sandboxes and container instances, read through CRI), decide what to do
//! next — upstream kubelet's `computePodActions`, as a pure function.
//!
//! Also the per-container restart back-off (10 s doubling to 5 min, reset
//! when a container ran for 10 min), with time passed in explicitly.
//!
//! Invariants: init containers run strictly one at a time, in order, each
//! to exit 0 (a sidecar, `restartPolicy: Always`: to be running and past its
//! startup probe) before the next starts and before any app container;
//! sidecars are restarted whenever they exit until the app containers are
//! done for good, then stop with the pod; the
//! newest instance of a container decides restarts; the two newest
//! instances of every container are kept (the running one and the
//! previous one for `kubectl logs --previous`), older ones are removed.

use std::collections::{HashMap, HashSet};

use k8s_openapi::api::core::v1::{Container, Pod};

/// State of a container instance as CRI reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CState {
    Created,
    Running,
    Exited,
    Unknown,
}

/// One container instance of the pod, from `ListContainers`/`ContainerStatus`.
#[derive(Clone, Debug)]
pub struct ObservedContainer {
    pub id: String,
    pub name: String,
    pub sandbox_id: String,
    /// From the `io.kubernetes.container.restartCount` annotation.
    pub restart_count: i32,
    pub state: CState,
    /// Unix nanoseconds (0 = unknown).
    pub created_at: i64,
    pub started_at: i64,
    pub finished_at: i64,
    pub exit_code: i32,
    /// CRI reason (`Completed`, `Error`, `OOMKilled`).
    pub reason: String,
    /// Termination message read by the shell (file, or log tail on error).
    pub message: String,
    pub image: String,
    pub image_ref: String,
    /// From the `io.kubernetes.container.hash` annotation; empty when the
    /// instance predates it (then it never counts as changed).
    pub hash: String,
}

/// One sandbox of the pod, from `ListPodSandbox`/`PodSandboxStatus`.
#[derive(Clone, Debug)]
pub struct ObservedSandbox {
    pub id: String,
    pub attempt: u32,
    pub ready: bool,
    pub created_at: i64,
    pub ips: Vec<String>,
}

/// Everything the runtime holds for one pod uid; both lists newest first.
#[derive(Clone, Debug, Default)]
pub struct PodRuntime {
    pub sandboxes: Vec<ObservedSandbox>,
    pub containers: Vec<ObservedContainer>,
}

impl PodRuntime {
    /// Sort both lists newest first (by creation time, then attempt).
    pub fn normalize(&mut self) {
        self.sandboxes
            .sort_by_key(|s| std::cmp::Reverse((s.created_at, s.attempt)));
        self.containers
            .sort_by_key(|c| std::cmp::Reverse((c.created_at, c.restart_count)));
    }
    pub fn latest(&self, name: &str) -> Option<&ObservedContainer> {
        self.containers.iter().find(|c| c.name == name)
    }
    pub fn instances<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a ObservedContainer> {
        self.containers.iter().filter(move |c| c.name == name)
    }
    pub fn current_sandbox(&self) -> Option<&ObservedSandbox> {
        self.sandboxes.first()
    }
    pub fn any_running(&self) -> bool {
        self.containers.iter().any(|c| c.state == CState::Running)
    }
}

/// Why a running container is killed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KillReason {
    Liveness,
    Startup,
    /// The container's spec (e.g. its image) no longer hashes to what the
    /// running instance was created from.
    SpecChanged,
}

/// Hash of a container's spec as the kubelet records it in the
/// `io.kubernetes.container.hash` annotation (FNV-1a 32 of its JSON, hex).
/// `resources` and `resizePolicy` are left out: resizing is not a
/// definition change that restarts a container.
pub fn container_hash(c: &Container) -> String {
    let mut c = c.clone();
    c.resources = None;
    c.resize_policy = None;
    let bytes = serde_json::to_vec(&c).unwrap_or_default();
    let mut h: u32 = 0x811c_9dc5;
    for b in bytes {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    format!("{h:x}")
}

/// Whether a running instance was created from another definition than `spec`.
pub fn spec_changed(spec: &Container, running: &ObservedContainer) -> bool {
    !running.hash.is_empty() && running.hash != container_hash(spec)
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ToStart {
    pub name: String,
    pub init: bool,
    pub restart_count: i32,
    /// An ephemeral container's `targetContainerName`, as the running
    /// container id whose PID namespace it joins.
    pub pid_target: Option<String>,
}

/// What one sync should do.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Stop every container and the sandbox (before creating a new one, or
    /// because nothing will run again).
    pub kill_pod: bool,
    /// Create a sandbox with this attempt number.
    pub create_sandbox: Option<u32>,
    /// Running containers to kill: (container id, name, reason).
    pub kill: Vec<(String, String, KillReason)>,
    /// Containers to (re)start, in order; the shell applies back-off.
    pub start: Vec<ToStart>,
    /// Exited instances to remove (beyond the two newest per name).
    pub remove_containers: Vec<String>,
    /// Old, stopped sandboxes no kept container belongs to.
    pub remove_sandboxes: Vec<String>,
}

/// What probes say about running containers (by container id).
#[derive(Default)]
pub struct ProbeVerdicts {
    pub liveness_failed: HashSet<String>,
    pub startup_failed: HashSet<String>,
    /// Running containers whose startup probe has not succeeded yet.
    pub startup_pending: HashSet<String>,
}

/// An ephemeral container as a `Container` (the same fields, less the
/// target, which the worker resolves to a PID namespace).
pub fn from_ephemeral(e: &k8s_openapi::api::core::v1::EphemeralContainer) -> Container {
    Container {
        name: e.name.clone(),
        image: e.image.clone(),
        command: e.command.clone(),
        args: e.args.clone(),
        working_dir: e.working_dir.clone(),
        env: e.env.clone(),
        env_from: e.env_from.clone(),
        volume_mounts: e.volume_mounts.clone(),
        volume_devices: e.volume_devices.clone(),
        image_pull_policy: e.image_pull_policy.clone(),
        security_context: e.security_context.clone(),
        stdin: e.stdin,
        stdin_once: e.stdin_once,
        tty: e.tty,
        termination_message_path: e.termination_message_path.clone(),
        termination_message_policy: e.termination_message_policy.clone(),
        ..Default::default()
    }
}

/// A restartable init container (`restartPolicy: Always`): a sidecar.
pub fn is_sidecar(c: &Container) -> bool {
    c.restart_policy.as_deref() == Some("Always")
}

fn restart_policy(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or("Always")
}

fn host_network(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.host_network)
        .unwrap_or(false)
}

/// Upstream `ShouldContainerBeRestarted` for an app container.
pub fn should_restart(policy: &str, latest: Option<&ObservedContainer>) -> bool {
    let Some(c) = latest else { return true };
    match c.state {
        CState::Running => false,
        CState::Created | CState::Unknown => true,
        CState::Exited => match policy {
            "Never" => false,
            "OnFailure" => c.exit_code != 0,
            _ => true,
        },
    }
}

/// What the init containers need, upstream `computeInitContainerActions`
/// with sidecars: before the pod is initialized they are walked in order, a
/// regular one must exit 0 and a sidecar must be running (and past its
/// startup probe) before the next starts; afterwards only sidecars are kept
/// running, whatever the pod's restart policy.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct InitStep {
    /// Every init container is through: app containers may run.
    pub done: bool,
    /// Init containers to (re)start, by index, in order.
    pub start: Vec<usize>,
    /// Running sidecars to kill first (probe failures), by index.
    pub kill: Vec<(usize, KillReason)>,
    /// A regular init container failed under `restartPolicy: Never`.
    pub pod_failed: bool,
}

impl InitStep {
    fn wait(mut self) -> Self {
        self.done = false;
        self
    }
}

/// Init containers' next step for the current sandbox (instances of other
/// sandboxes do not count: a new sandbox runs every init container again).
pub fn init_step(pod: &Pod, rt: &PodRuntime, probes: &ProbeVerdicts) -> InitStep {
    let mut step = InitStep::default();
    let Some(spec) = pod.spec.as_ref() else {
        step.done = true;
        return step;
    };
    let inits = spec.init_containers.as_deref().unwrap_or_default();
    let current = rt.current_sandbox().map(|s| s.id.as_str());
    let latest = |name: &str| {
        rt.latest(name)
            .filter(|c| current.is_none() || Some(c.sandbox_id.as_str()) == current)
    };
    // upstream's "previously initialized": an app container was created
    let initialized = spec.containers.iter().any(|c| latest(&c.name).is_some());
    for (i, c) in inits.iter().enumerate() {
        let sidecar = is_sidecar(c);
        if initialized && !sidecar {
            continue;
        }
        let Some(s) = latest(&c.name) else {
            step.start.push(i);
            if initialized {
                continue;
            }
            return step.wait();
        };
        match s.state {
            CState::Created if !initialized => return step.wait(),
            CState::Created => {}
            CState::Running if !sidecar => return step.wait(),
            CState::Running => {
                let failed = if probes.startup_failed.contains(&s.id) {
                    Some(KillReason::Startup)
                } else if probes.liveness_failed.contains(&s.id) {
                    Some(KillReason::Liveness)
                } else {
                    None
                };
                if let Some(reason) = failed {
                    step.kill.push((i, reason));
                    step.start.push(i);
                    if !initialized {
                        return step.wait();
                    }
                } else if !initialized && probes.startup_pending.contains(&s.id) {
                    return step.wait();
                }
            }
            CState::Exited | CState::Unknown if sidecar => {
                step.start.push(i);
                if !initialized {
                    return step.wait();
                }
            }
            CState::Exited if s.exit_code == 0 => {}
            CState::Exited | CState::Unknown => {
                if restart_policy(pod) == "Never" {
                    step.pod_failed = true;
                } else {
                    step.start.push(i);
                }
                return step.wait();
            }
        }
    }
    step.done = true;
    step
}

fn next_restart_count(rt: &PodRuntime, name: &str) -> i32 {
    rt.latest(name).map(|c| c.restart_count + 1).unwrap_or(0)
}

/// Upstream `computePodActions` (plus container/sandbox garbage
/// collection): the pod's own containers, then its ephemeral containers,
/// each started once in the running sandbox (whatever the init state) and
/// never restarted.
pub fn plan(pod: &Pod, rt: &PodRuntime, probes: &ProbeVerdicts) -> Plan {
    let mut plan = pod_plan(pod, rt, probes);
    if plan.kill_pod || plan.create_sandbox.is_some() {
        return plan;
    }
    let ephemeral = pod
        .spec
        .iter()
        .flat_map(|s| s.ephemeral_containers.iter().flatten());
    for e in ephemeral {
        if rt.latest(&e.name).is_none() {
            let pid_target = e
                .target_container_name
                .as_deref()
                .and_then(|t| rt.latest(t))
                .filter(|c| c.state == CState::Running)
                .map(|c| c.id.clone());
            plan.start.push(ToStart {
                name: e.name.clone(),
                init: false,
                restart_count: 0,
                pid_target,
            });
        }
    }
    plan
}

fn pod_plan(pod: &Pod, rt: &PodRuntime, probes: &ProbeVerdicts) -> Plan {
    let mut plan = Plan::default();
    let Some(spec) = pod.spec.as_ref() else {
        return plan;
    };
    let policy = restart_policy(pod);
    let inits = spec.init_containers.as_deref().unwrap_or_default();
    gc(rt, &mut plan);

    let sandbox_needed = match rt.current_sandbox() {
        None => Some(0),
        Some(s) if !s.ready => Some(s.attempt + 1),
        Some(s) if !host_network(pod) && s.ips.is_empty() => Some(s.attempt + 1),
        Some(_) => None,
    };
    if let Some(attempt) = sandbox_needed {
        plan.kill_pod = !rt.sandboxes.is_empty();
        if policy == "Never" && !rt.sandboxes.is_empty() && !rt.containers.is_empty() {
            // the pod ran once and must not run again
            return plan;
        }
        if let Some(first) = inits.first() {
            plan.create_sandbox = Some(attempt);
            plan.start.push(ToStart {
                name: first.name.clone(),
                init: true,
                restart_count: next_restart_count(rt, &first.name),
                pid_target: None,
            });
            return plan;
        }
        for c in &spec.containers {
            let succeeded = rt
                .latest(&c.name)
                .is_some_and(|s| s.state == CState::Exited && s.exit_code == 0);
            if policy == "OnFailure" && succeeded {
                continue;
            }
            plan.start.push(ToStart {
                name: c.name.clone(),
                init: false,
                restart_count: next_restart_count(rt, &c.name),
                pid_target: None,
            });
        }
        if !plan.start.is_empty() {
            plan.create_sandbox = Some(attempt);
        }
        return plan;
    }

    let step = init_step(pod, rt, probes);
    if step.pod_failed {
        plan.kill_pod = true;
        return plan;
    }
    for (i, reason) in &step.kill {
        if let Some(s) = inits.get(*i).and_then(|c| rt.latest(&c.name)) {
            plan.kill.push((s.id.clone(), s.name.clone(), *reason));
        }
    }
    for i in &step.start {
        if let Some(c) = inits.get(*i) {
            plan.start.push(ToStart {
                name: c.name.clone(),
                init: true,
                restart_count: next_restart_count(rt, &c.name),
                pid_target: None,
            });
        }
    }
    if !step.done {
        return plan;
    }
    let sidecar_actions = plan.start.len();

    let mut keep = 0;
    for c in &spec.containers {
        let latest = rt.latest(&c.name);
        if let Some(s) = latest
            && s.state == CState::Running
        {
            let changed = spec_changed(c, s);
            let reason = if changed {
                Some(KillReason::SpecChanged)
            } else if probes.startup_failed.contains(&s.id) {
                Some(KillReason::Startup)
            } else if probes.liveness_failed.contains(&s.id) {
                Some(KillReason::Liveness)
            } else {
                None
            };
            match reason {
                Some(r) => {
                    plan.kill.push((s.id.clone(), c.name.clone(), r));
                    // a changed definition restarts whatever the policy
                    if policy != "Never" || changed {
                        plan.start.push(ToStart {
                            name: c.name.clone(),
                            init: false,
                            restart_count: s.restart_count + 1,
                            pid_target: None,
                        });
                    }
                }
                None => keep += 1,
            }
            continue;
        }
        if should_restart(policy, latest) {
            plan.start.push(ToStart {
                name: c.name.clone(),
                init: false,
                restart_count: next_restart_count(rt, &c.name),
                pid_target: None,
            });
        }
    }
    if keep == 0 && plan.start.len() == sidecar_actions {
        // every app container is done for good: sidecars stop with the pod
        plan.kill_pod = true;
        plan.start.clear();
    }
    plan
}

fn gc(rt: &PodRuntime, plan: &mut Plan) {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    let mut kept_sandboxes: HashSet<&str> = HashSet::new();
    for c in &rt.containers {
        let n = seen.entry(c.name.as_str()).or_default();
        *n += 1;
        if *n > 2 && c.state != CState::Running {
            plan.remove_containers.push(c.id.clone());
        } else {
            kept_sandboxes.insert(c.sandbox_id.as_str());
        }
    }
    for s in rt.sandboxes.iter().skip(1) {
        if !s.ready && !kept_sandboxes.contains(s.id.as_str()) {
            plan.remove_sandboxes.push(s.id.clone());
        }
    }
}

/// Upstream's `flowcontrol.Backoff` for container restarts and image pulls,
/// with explicit time (unix nanoseconds).
#[derive(Debug)]
pub struct Backoff {
    initial: i64,
    max: i64,
    /// key → (current back-off, last update)
    entries: HashMap<String, (i64, i64)>,
}

pub const SECOND: i64 = 1_000_000_000;

impl Backoff {
    pub fn new(initial_secs: i64, max_secs: i64) -> Self {
        Backoff {
            initial: initial_secs * SECOND,
            max: max_secs * SECOND,
            entries: HashMap::new(),
        }
    }

    /// The restart back-off of the kubelet: 10 s doubling to 300 s.
    pub fn containers() -> Self {
        Self::new(10, 300)
    }

    fn expired(&self, event_time: i64, last_update: i64) -> bool {
        event_time - last_update > 2 * self.max
    }

    /// The current back-off, if `now - event_time` is still inside it.
    pub fn in_backoff_since(&self, key: &str, event_time: i64, now: i64) -> Option<i64> {
        let (backoff, last) = *self.entries.get(key)?;
        if self.expired(now, last) {
            return None;
        }
        (now - event_time < backoff).then_some(backoff)
    }

    /// Whether `now` is still inside the back-off counted from the last
    /// failure (`IsInBackOffSinceUpdate`, used for image pulls).
    pub fn in_backoff_since_update(&self, key: &str, now: i64) -> bool {
        self.entries
            .get(key)
            .is_some_and(|&(b, last)| now - last < b)
    }

    /// Record one more failure: start at the initial back-off or double it.
    pub fn next(&mut self, key: &str, event_time: i64, now: i64) {
        let entry = match self.entries.get(key) {
            Some(&(b, last)) if !self.expired(event_time, last) => ((b * 2).min(self.max), now),
            _ => (self.initial, now),
        };
        self.entries.insert(key.to_string(), entry);
    }

    pub fn get(&self, key: &str) -> i64 {
        self.entries.get(key).map(|e| e.0).unwrap_or(0)
    }

    /// Drop entries not updated for twice the maximum.
    pub fn gc(&mut self, now: i64) {
        let max = self.max;
        self.entries.retain(|_, (_, last)| now - *last <= 2 * max);
    }
}

/// A duration as Go's `time.Duration.String` prints whole seconds
/// (`10s`, `1m20s`, `5m0s`), as upstream messages show it.
pub fn go_duration(nanos: i64) -> String {
    let secs = nanos / SECOND;
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    if h > 0 {
        format!("{h}h{m}m{s}s")
    } else if m > 0 {
        format!("{m}m{s}s")
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(policy: &str, inits: &[&str], apps: &[&str]) -> Pod {
        let cs = |names: &[&str]| {
            names
                .iter()
                .map(|n| json!({"name": n, "image": "i"}))
                .collect::<Vec<_>>()
        };
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u"},
            "spec": {"restartPolicy": policy, "initContainers": cs(inits), "containers": cs(apps)}
        }))
        .unwrap()
    }

    fn sandbox(attempt: u32, ready: bool) -> ObservedSandbox {
        ObservedSandbox {
            id: format!("sb{attempt}"),
            attempt,
            ready,
            created_at: attempt as i64,
            ips: vec!["10.0.0.2".into()],
        }
    }

    /// name, restart count, state, exit code (created = restart count order)
    fn ctr(name: &str, rc: i32, state: CState, exit: i32) -> ObservedContainer {
        ObservedContainer {
            id: format!("{name}-{rc}"),
            name: name.into(),
            sandbox_id: "sb0".into(),
            restart_count: rc,
            state,
            created_at: 100 + rc as i64 + name.len() as i64 * 1000,
            started_at: 0,
            finished_at: 0,
            exit_code: exit,
            reason: String::new(),
            message: String::new(),
            image: "i".into(),
            image_ref: "sha256:x".into(),
            hash: String::new(),
        }
    }

    fn rt(sandboxes: Vec<ObservedSandbox>, containers: Vec<ObservedContainer>) -> PodRuntime {
        let mut r = PodRuntime {
            sandboxes,
            containers,
        };
        r.normalize();
        r
    }

    fn starts(p: &Plan) -> Vec<(String, i32)> {
        p.start
            .iter()
            .map(|s| (s.name.clone(), s.restart_count))
            .collect()
    }

    use CState::*;

    #[test]
    fn plans() {
        struct Case {
            what: &'static str,
            pod: Pod,
            rt: PodRuntime,
            sandbox: Option<u32>,
            kill_pod: bool,
            start: Vec<(&'static str, i32)>,
        }
        let cases = vec![
            Case {
                what: "fresh pod: sandbox and all app containers",
                pod: pod("Always", &[], &["a", "b"]),
                rt: rt(vec![], vec![]),
                sandbox: Some(0),
                kill_pod: false,
                start: vec![("a", 0), ("b", 0)],
            },
            Case {
                what: "fresh pod with init: only the first init",
                pod: pod("Always", &["i1", "i2"], &["a"]),
                rt: rt(vec![], vec![]),
                sandbox: Some(0),
                kill_pod: false,
                start: vec![("i1", 0)],
            },
            Case {
                what: "init 1 done: init 2 next",
                pod: pod("Always", &["i1", "i2"], &["a"]),
                rt: rt(vec![sandbox(0, true)], vec![ctr("i1", 0, Exited, 0)]),
                sandbox: None,
                kill_pod: false,
                start: vec![("i2", 0)],
            },
            Case {
                what: "init running: wait",
                pod: pod("Always", &["i1", "i2"], &["a"]),
                rt: rt(vec![sandbox(0, true)], vec![ctr("i1", 0, Running, 0)]),
                sandbox: None,
                kill_pod: false,
                start: vec![],
            },
            Case {
                what: "init failed, OnFailure: restart it",
                pod: pod("OnFailure", &["i1", "i2"], &["a"]),
                rt: rt(vec![sandbox(0, true)], vec![ctr("i1", 0, Exited, 1)]),
                sandbox: None,
                kill_pod: false,
                start: vec![("i1", 1)],
            },
            Case {
                what: "init failed, Never: pod fails",
                pod: pod("Never", &["i1"], &["a"]),
                rt: rt(vec![sandbox(0, true)], vec![ctr("i1", 0, Exited, 1)]),
                sandbox: None,
                kill_pod: true,
                start: vec![],
            },
            Case {
                what: "inits done: app containers",
                pod: pod("Always", &["i1", "i2"], &["a"]),
                rt: rt(
                    vec![sandbox(0, true)],
                    vec![ctr("i1", 0, Exited, 0), ctr("i2", 0, Exited, 0)],
                ),
                sandbox: None,
                kill_pod: false,
                start: vec![("a", 0)],
            },
            Case {
                what: "running: nothing",
                pod: pod("Always", &[], &["a"]),
                rt: rt(vec![sandbox(0, true)], vec![ctr("a", 0, Running, 0)]),
                sandbox: None,
                kill_pod: false,
                start: vec![],
            },
            Case {
                what: "Always: exited 0 restarts",
                pod: pod("Always", &[], &["a"]),
                rt: rt(vec![sandbox(0, true)], vec![ctr("a", 0, Exited, 0)]),
                sandbox: None,
                kill_pod: false,
                start: vec![("a", 1)],
            },
            Case {
                what: "OnFailure: exited 0 stays, pod done",
                pod: pod("OnFailure", &[], &["a"]),
                rt: rt(vec![sandbox(0, true)], vec![ctr("a", 0, Exited, 0)]),
                sandbox: None,
                kill_pod: true,
                start: vec![],
            },
            Case {
                what: "OnFailure: exited 1 restarts",
                pod: pod("OnFailure", &[], &["a"]),
                rt: rt(vec![sandbox(0, true)], vec![ctr("a", 2, Exited, 1)]),
                sandbox: None,
                kill_pod: false,
                start: vec![("a", 3)],
            },
            Case {
                what: "Never: exited, pod done",
                pod: pod("Never", &[], &["a", "b"]),
                rt: rt(
                    vec![sandbox(0, true)],
                    vec![ctr("a", 0, Exited, 1), ctr("b", 0, Exited, 0)],
                ),
                sandbox: None,
                kill_pod: true,
                start: vec![],
            },
            Case {
                what: "Never: one still running keeps the pod",
                pod: pod("Never", &[], &["a", "b"]),
                rt: rt(
                    vec![sandbox(0, true)],
                    vec![ctr("a", 0, Exited, 1), ctr("b", 0, Running, 0)],
                ),
                sandbox: None,
                kill_pod: false,
                start: vec![],
            },
            Case {
                what: "dead sandbox: new attempt, containers again",
                pod: pod("Always", &[], &["a"]),
                rt: rt(vec![sandbox(0, false)], vec![ctr("a", 0, Exited, 137)]),
                sandbox: Some(1),
                kill_pod: true,
                start: vec![("a", 1)],
            },
            Case {
                what: "dead sandbox, Never, containers ran: no new sandbox",
                pod: pod("Never", &[], &["a"]),
                rt: rt(vec![sandbox(0, false)], vec![ctr("a", 0, Exited, 137)]),
                sandbox: None,
                kill_pod: true,
                start: vec![],
            },
            Case {
                what: "dead sandbox with init: start over at init 0",
                pod: pod("Always", &["i1"], &["a"]),
                rt: rt(
                    vec![sandbox(0, false)],
                    vec![ctr("i1", 0, Exited, 0), ctr("a", 0, Exited, 137)],
                ),
                sandbox: Some(1),
                kill_pod: true,
                start: vec![("i1", 1)],
            },
            Case {
                what: "dead sandbox, OnFailure, all succeeded: nothing",
                pod: pod("OnFailure", &[], &["a"]),
                rt: rt(vec![sandbox(0, false)], vec![ctr("a", 0, Exited, 0)]),
                sandbox: None,
                kill_pod: true,
                start: vec![],
            },
        ];
        for c in cases {
            let p = plan(&c.pod, &c.rt, &ProbeVerdicts::default());
            assert_eq!(p.create_sandbox, c.sandbox, "{}", c.what);
            assert_eq!(p.kill_pod, c.kill_pod, "{}", c.what);
            let want: Vec<(String, i32)> =
                c.start.iter().map(|(n, r)| (n.to_string(), *r)).collect();
            assert_eq!(starts(&p), want, "{}", c.what);
        }
    }

    /// `pod` whose init containers named `side*` are sidecars.
    fn with_sidecars(policy: &str, inits: &[&str], apps: &[&str]) -> Pod {
        let mut p = pod(policy, inits, apps);
        for c in p
            .spec
            .as_mut()
            .unwrap()
            .init_containers
            .iter_mut()
            .flatten()
        {
            if c.name.starts_with("side") {
                c.restart_policy = Some("Always".into());
            }
        }
        p
    }

    #[test]
    fn sidecars_start_in_order_keep_running_and_stop_with_the_pod() {
        let none = ProbeVerdicts::default();
        let sb = || vec![sandbox(0, true)];
        let p = with_sidecars("Never", &["init", "side"], &["a"]);
        // the regular init first, then the sidecar, then the app
        let r = rt(sb(), vec![ctr("init", 0, Exited, 0)]);
        assert_eq!(starts(&plan(&p, &r, &none)), vec![("side".to_string(), 0)]);
        let r = rt(
            sb(),
            vec![ctr("init", 0, Exited, 0), ctr("side", 0, Running, 0)],
        );
        assert_eq!(starts(&plan(&p, &r, &none)), vec![("a".to_string(), 0)]);
        // a sidecar still in its startup probe holds the app back
        let mut pending = ProbeVerdicts::default();
        pending.startup_pending.insert("side-0".into());
        assert!(plan(&p, &r, &pending).start.is_empty());
        // a sidecar that exits is restarted even under Never
        let r = rt(
            sb(),
            vec![
                ctr("init", 0, Exited, 0),
                ctr("side", 0, Exited, 1),
                ctr("a", 0, Running, 0),
            ],
        );
        let pl = plan(&p, &r, &none);
        assert_eq!(starts(&pl), vec![("side".to_string(), 1)]);
        assert!(!pl.kill_pod);
        // the app is done for good: the pod stops, the sidecar is not restarted
        let r = rt(
            sb(),
            vec![
                ctr("init", 0, Exited, 0),
                ctr("side", 0, Running, 0),
                ctr("a", 0, Exited, 0),
            ],
        );
        let pl = plan(&p, &r, &none);
        assert!(pl.kill_pod);
        assert!(pl.start.is_empty());
        let r = rt(
            sb(),
            vec![
                ctr("init", 0, Exited, 0),
                ctr("side", 0, Exited, 137),
                ctr("a", 0, Exited, 0),
            ],
        );
        assert!(plan(&p, &r, &none).start.is_empty());
        // a sidecar failing its liveness probe is killed and restarted
        let r = rt(
            sb(),
            vec![ctr("side", 0, Running, 0), ctr("a", 0, Running, 0)],
        );
        let mut live = ProbeVerdicts::default();
        live.liveness_failed.insert("side-0".into());
        let pl = plan(&with_sidecars("Always", &["side"], &["a"]), &r, &live);
        assert_eq!(
            pl.kill,
            vec![("side-0".into(), "side".into(), KillReason::Liveness)]
        );
        assert_eq!(starts(&pl), vec![("side".to_string(), 1)]);
    }

    #[test]
    fn ephemeral_containers_start_once_in_the_running_sandbox() {
        let mut p = pod("Always", &[], &["a"]);
        p.spec.as_mut().unwrap().ephemeral_containers = Some(vec![
            serde_json::from_value(
                json!({"name": "dbg", "image": "i", "targetContainerName": "a"}),
            )
            .unwrap(),
        ]);
        let none = ProbeVerdicts::default();
        // no sandbox yet: the pod's own containers only
        let pl = plan(&p, &rt(vec![], vec![]), &none);
        assert_eq!(starts(&pl), vec![("a".to_string(), 0)]);
        // running pod: the debug container, in the target's PID namespace
        let r = rt(vec![sandbox(0, true)], vec![ctr("a", 0, Running, 0)]);
        let pl = plan(&p, &r, &none);
        assert_eq!(starts(&pl), vec![("dbg".to_string(), 0)]);
        assert_eq!(pl.start[0].pid_target.as_deref(), Some("a-0"));
        // it ran and exited: never again
        let r = rt(
            vec![sandbox(0, true)],
            vec![ctr("a", 0, Running, 0), ctr("dbg", 0, Exited, 1)],
        );
        assert!(plan(&p, &r, &none).start.is_empty());
    }

    #[test]
    fn init_containers_of_an_older_sandbox_do_not_count() {
        let p = pod("Always", &["i1", "i2"], &["a"]);
        let mut old_i2 = ctr("i2", 0, Exited, 0);
        old_i2.sandbox_id = "sb0".into();
        let mut new_i1 = ctr("i1", 1, Exited, 0);
        new_i1.sandbox_id = "sb1".into();
        let r = rt(
            vec![sandbox(1, true), sandbox(0, false)],
            vec![new_i1, old_i2],
        );
        let pl = plan(&p, &r, &ProbeVerdicts::default());
        assert_eq!(starts(&pl), vec![("i2".to_string(), 1)]);
    }

    #[test]
    fn liveness_failure_kills_and_restarts() {
        let r = rt(vec![sandbox(0, true)], vec![ctr("a", 0, Running, 0)]);
        let mut v = ProbeVerdicts::default();
        v.liveness_failed.insert("a-0".into());
        let p = plan(&pod("Always", &[], &["a"]), &r, &v);
        assert_eq!(
            p.kill,
            vec![("a-0".into(), "a".into(), KillReason::Liveness)]
        );
        assert_eq!(starts(&p), vec![("a".to_string(), 1)]);
        let p = plan(&pod("Never", &[], &["a"]), &r, &v);
        assert_eq!(p.kill.len(), 1);
        assert!(p.start.is_empty());
    }

    #[test]
    fn changed_definition_kills_and_restarts() {
        let p = pod("Always", &[], &["a"]);
        let spec = &p.spec.as_ref().unwrap().containers[0];
        let mut newer = spec.clone();
        newer.image = Some("other:2".into());
        let mut resized = spec.clone();
        resized.resources = Some(Default::default());
        struct Case {
            what: &'static str,
            policy: &'static str,
            hash: String,
            kill: Option<KillReason>,
            start: Vec<(&'static str, i32)>,
        }
        let cases = vec![
            Case {
                what: "same hash: keep",
                policy: "Always",
                hash: container_hash(spec),
                kill: None,
                start: vec![],
            },
            Case {
                what: "no hash (older instance): keep",
                policy: "Always",
                hash: String::new(),
                kill: None,
                start: vec![],
            },
            Case {
                what: "resources only: keep",
                policy: "Always",
                hash: container_hash(&resized),
                kill: None,
                start: vec![],
            },
            Case {
                what: "other image: kill and restart",
                policy: "Always",
                hash: container_hash(&newer),
                kill: Some(KillReason::SpecChanged),
                start: vec![("a", 1)],
            },
            Case {
                what: "Never still restarts a changed definition",
                policy: "Never",
                hash: container_hash(&newer),
                kill: Some(KillReason::SpecChanged),
                start: vec![("a", 1)],
            },
        ];
        for c in cases {
            let mut running = ctr("a", 0, Running, 0);
            running.hash = c.hash.clone();
            let r = rt(vec![sandbox(0, true)], vec![running]);
            let mut v = ProbeVerdicts::default();
            // a changed definition wins over a probe failure
            v.liveness_failed.insert("a-0".into());
            let p = plan(&pod(c.policy, &[], &["a"]), &r, &v);
            let want_kill = c.kill.unwrap_or(KillReason::Liveness);
            assert_eq!(
                p.kill,
                vec![("a-0".to_string(), "a".to_string(), want_kill)],
                "{}",
                c.what
            );
            if c.kill.is_some() {
                let want: Vec<(String, i32)> =
                    c.start.iter().map(|(n, r)| (n.to_string(), *r)).collect();
                assert_eq!(starts(&p), want, "{}", c.what);
                assert!(!p.kill_pod, "{}", c.what);
            }
        }
        assert_ne!(container_hash(spec), container_hash(&newer));
        assert_eq!(container_hash(spec), container_hash(&spec.clone()));
    }

    #[test]
    fn keeps_two_newest_instances() {
        let r = rt(
            vec![sandbox(0, true)],
            vec![
                ctr("a", 0, Exited, 1),
                ctr("a", 1, Exited, 1),
                ctr("a", 2, Exited, 1),
                ctr("a", 3, Running, 0),
            ],
        );
        let p = plan(&pod("Always", &[], &["a"]), &r, &ProbeVerdicts::default());
        let mut removed = p.remove_containers.clone();
        removed.sort();
        assert_eq!(removed, vec!["a-0", "a-1"]);
    }

    #[test]
    fn old_sandboxes_removed_when_unused() {
        let mut old = sandbox(0, false);
        old.id = "old".into();
        let mut c = ctr("a", 5, Running, 0);
        c.sandbox_id = "sb1".into();
        let r = rt(vec![old, sandbox(1, true)], vec![c]);
        let p = plan(&pod("Always", &[], &["a"]), &r, &ProbeVerdicts::default());
        assert_eq!(p.remove_sandboxes, vec!["old"]);
    }

    #[test]
    fn backoff_doubles_caps_and_resets() {
        let s = SECOND;
        let mut b = Backoff::containers();
        // first crash: not in back-off, restart at once
        assert_eq!(b.in_backoff_since("k", 0, s), None);
        b.next("k", 0, s);
        assert_eq!(b.get("k"), 10 * s);
        // second crash at 5s: in back-off until 15s
        assert_eq!(b.in_backoff_since("k", 5 * s, 6 * s), Some(10 * s));
        assert_eq!(b.in_backoff_since("k", 5 * s, 15 * s), None);
        b.next("k", 5 * s, 15 * s);
        assert_eq!(b.get("k"), 20 * s);
        for i in 0..10 {
            b.next("k", (20 + i) * s, (20 + i) * s);
        }
        assert_eq!(b.get("k"), 300 * s);
        // a container that ran more than 10 minutes starts over
        b.next("k", 2000 * s, 2000 * s);
        assert_eq!(b.get("k"), 10 * s);
    }

    #[test]
    fn go_durations() {
        for (secs, want) in [
            (10, "10s"),
            (20, "20s"),
            (80, "1m20s"),
            (160, "2m40s"),
            (300, "5m0s"),
        ] {
            assert_eq!(go_duration(secs * SECOND), want);
        }
    }
}
