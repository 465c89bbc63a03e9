//! A pod's status as the kubelet reports it, computed from the spec, the
//! previous status and what the runtime holds — upstream's
//! `generateAPIPodStatus`/`convertToAPIContainerStatuses`/`getPhase` and the
//! condition generators, as one pure function.
//!
//! Invariants: a terminal phase (Succeeded/Failed) never changes back; a
//! condition's `lastTransitionTime` moves only when its status flips;
//! conditions the kubelet does not own (PodScheduled, DisruptionTarget…)
//! are kept as they were; timestamps are whole seconds (as the API prints
//! them), so an unchanged pod yields an identical status.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus, HostIP, Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::plan::{CState, ObservedContainer, PodRuntime, ProbeVerdicts, is_sidecar};
use crate::controllers::podutil::chrono_to_time;

/// Why a container could not be started in the last sync (upstream's
/// reason cache): `(reason, message)`, e.g. `("CrashLoopBackOff", "back-off 10s …")`.
pub type Waiting = HashMap<String, (String, String)>;

pub struct StatusInput<'a> {
    pub pod: &'a Pod,
    pub rt: &'a PodRuntime,
    pub waiting: &'a Waiting,
    /// Readiness and startup probe verdicts by container id.
    pub ready: &'a dyn Fn(&str) -> bool,
    pub started: &'a dyn Fn(&str) -> bool,
    pub host_ips: Vec<String>,
    pub now: DateTime<Utc>,
}

fn nanos_to_time(n: i64) -> Option<Time> {
    if n <= 0 {
        return None;
    }
    DateTime::from_timestamp(n / 1_000_000_000, 0).map(chrono_to_time)
}

fn second_time(t: DateTime<Utc>) -> Time {
    chrono_to_time(DateTime::from_timestamp(t.timestamp(), 0).unwrap_or(t))
}

pub const CONTAINER_ID_PREFIX: &str = "containerd://";

fn terminated(c: &ObservedContainer) -> ContainerStateTerminated {
    let reason = if !c.reason.is_empty() {
        c.reason.clone()
    } else if c.exit_code == 0 {
        "Completed".into()
    } else {
        "Error".into()
    };
    ContainerStateTerminated {
        exit_code: c.exit_code,
        reason: Some(reason),
        message: (!c.message.is_empty()).then(|| c.message.clone()),
        started_at: nanos_to_time(c.started_at),
        finished_at: nanos_to_time(c.finished_at),
        container_id: Some(format!("{CONTAINER_ID_PREFIX}{}", c.id)),
        signal: None,
    }
}

fn state_of(c: &ObservedContainer) -> ContainerState {
    match c.state {
        CState::Running => ContainerState {
            running: Some(ContainerStateRunning {
                started_at: nanos_to_time(c.started_at),
            }),
            ..Default::default()
        },
        CState::Exited => ContainerState {
            terminated: Some(terminated(c)),
            ..Default::default()
        },
        CState::Created => ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some("ContainerCreating".into()),
                message: None,
            }),
            ..Default::default()
        },
        CState::Unknown => ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code: 137,
                reason: Some("ContainerStatusUnknown".into()),
                message: Some(
                    "The container could not be located when the pod was terminated".into(),
                ),
                container_id: Some(format!("{CONTAINER_ID_PREFIX}{}", c.id)),
                ..Default::default()
            }),
            ..Default::default()
        },
    }
}

fn container_statuses(
    input: &StatusInput,
    specs: &[k8s_openapi::api::core::v1::Container],
    default_reason: &str,
    old: Option<&Vec<ContainerStatus>>,
) -> Vec<ContainerStatus> {
    let mut out = Vec::new();
    for spec in specs {
        let old_status = old.and_then(|o| o.iter().find(|s| s.name == spec.name));
        let mut instances = input.rt.instances(&spec.name);
        let newest = instances.next();
        let previous = instances.find(|c| c.state == CState::Exited);
        let mut st = ContainerStatus {
            name: spec.name.clone(),
            image: spec.image.clone().unwrap_or_default(),
            image_id: String::new(),
            restart_count: old_status.map(|s| s.restart_count).unwrap_or(0),
            last_state: Some(
                old_status
                    .and_then(|s| s.last_state.clone())
                    .unwrap_or_default(),
            ),
            state: Some(ContainerState {
                waiting: Some(ContainerStateWaiting {
                    reason: Some(default_reason.to_string()),
                    message: None,
                }),
                ..Default::default()
            }),
            ready: false,
            started: Some(false),
            ..Default::default()
        };
        if let Some(c) = newest {
            st.container_id = Some(format!("{CONTAINER_ID_PREFIX}{}", c.id));
            if !c.image.is_empty() && !c.image.starts_with("sha256:") {
                st.image = c.image.clone();
            }
            st.image_id = c.image_ref.clone();
            st.restart_count = c.restart_count;
            st.state = Some(state_of(c));
            if let Some(p) = previous {
                st.last_state = Some(ContainerState {
                    terminated: Some(terminated(p)),
                    ..Default::default()
                });
            }
            let running = c.state == CState::Running;
            st.started = Some(running && (input.started)(&c.id));
            st.ready = running && (input.ready)(&c.id) && st.started == Some(true);
        }
        let running = newest.is_some_and(|c| c.state == CState::Running);
        if !running && let Some((reason, message)) = input.waiting.get(&spec.name) {
            if let Some(t) = st.state.as_ref().and_then(|s| s.terminated.clone()) {
                st.last_state = Some(ContainerState {
                    terminated: Some(t),
                    ..Default::default()
                });
            }
            st.state = Some(ContainerState {
                waiting: Some(ContainerStateWaiting {
                    reason: Some(reason.clone()),
                    message: (!message.is_empty()).then(|| message.clone()),
                }),
                ..Default::default()
            });
        }
        out.push(st);
    }
    out
}

/// Upstream `getPhase`. `sidecars[i]`: init container `i` is restartable;
/// a sidecar never fails the pod and, once the pod is `initialized`, never
/// holds it pending.
pub fn phase(
    restart_policy: &str,
    init: &[ContainerStatus],
    sidecars: &[bool],
    initialized: bool,
    apps: &[ContainerStatus],
) -> &'static str {
    let (mut pending_init, mut failed_init) = (0, 0);
    for (i, s) in init.iter().enumerate() {
        let state = s.state.clone().unwrap_or_default();
        let last = s.last_state.as_ref().and_then(|l| l.terminated.as_ref());
        if sidecars.get(i).copied().unwrap_or(false) {
            let up = state.running.is_some() && s.started == Some(true);
            if !initialized && !up {
                pending_init += 1;
            }
            continue;
        }
        if state.running.is_some() {
            pending_init += 1;
        } else if let Some(t) = &state.terminated {
            if t.exit_code != 0 {
                failed_init += 1;
            }
        } else if state.waiting.is_some() {
            match last {
                Some(t) if t.exit_code != 0 => failed_init += 1,
                Some(_) => {}
                None => pending_init += 1,
            }
        } else {
            pending_init += 1;
        }
    }
    let (mut running, mut waiting, mut stopped, mut succeeded, mut unknown) = (0, 0, 0, 0, 0);
    for s in apps {
        let Some(state) = &s.state else {
            unknown += 1;
            continue;
        };
        if state.running.is_some() {
            running += 1;
        } else if let Some(t) = &state.terminated {
            stopped += 1;
            if t.exit_code == 0 {
                succeeded += 1;
            }
        } else if state.waiting.is_some() {
            if s.last_state
                .as_ref()
                .and_then(|l| l.terminated.as_ref())
                .is_some()
            {
                stopped += 1;
            } else {
                waiting += 1;
            }
        } else {
            unknown += 1;
        }
    }
    if failed_init > 0 && restart_policy == "Never" {
        return "Failed";
    }
    if pending_init > 0 || waiting > 0 {
        return "Pending";
    }
    if running > 0 && unknown == 0 {
        return "Running";
    }
    if running == 0 && stopped > 0 && unknown == 0 {
        if restart_policy == "Always" {
            return "Running";
        }
        if stopped == succeeded {
            return "Succeeded";
        }
        if restart_policy == "Never" {
            return "Failed";
        }
        return "Running";
    }
    "Pending"
}

fn condition(
    old: Option<&Vec<PodCondition>>,
    type_: &str,
    ok: bool,
    reason: Option<String>,
    message: Option<String>,
    now: &Time,
) -> PodCondition {
    let status = if ok { "True" } else { "False" };
    let prior = old.and_then(|o| o.iter().find(|c| c.type_ == type_));
    let since = match prior {
        Some(p) if p.status == status => p.last_transition_time.clone(),
        _ => Some(now.clone()),
    };
    PodCondition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason,
        message,
        last_transition_time: since,
        last_probe_time: None,
        observed_generation: None,
    }
}

const KUBELET_CONDITIONS: [&str; 4] = [
    "PodReadyToStartContainers",
    "Initialized",
    "Ready",
    "ContainersReady",
];

/// The pod's new status.
pub fn pod_status(input: &StatusInput) -> PodStatus {
    let pod = input.pod;
    let old = pod.status.clone().unwrap_or_default();
    let Some(spec) = pod.spec.as_ref() else {
        return old;
    };
    let now = second_time(input.now);
    let policy = spec.restart_policy.as_deref().unwrap_or("Always");
    let inits = spec.init_containers.clone().unwrap_or_default();
    let verdicts = ProbeVerdicts {
        startup_pending: input
            .rt
            .containers
            .iter()
            .filter(|c| c.state == CState::Running && !(input.started)(&c.id))
            .map(|c| c.id.clone())
            .collect(),
        ..Default::default()
    };
    let init_done = super::plan::init_step(pod, input.rt, &verdicts).done;
    let sidecars: Vec<bool> = inits.iter().map(is_sidecar).collect();
    let app_default = if init_done {
        "ContainerCreating"
    } else {
        "PodInitializing"
    };
    let init_statuses = container_statuses(
        input,
        &inits,
        "PodInitializing",
        old.init_container_statuses.as_ref(),
    );
    let app_statuses = container_statuses(
        input,
        &spec.containers,
        app_default,
        old.container_statuses.as_ref(),
    );
    // ephemeral containers: reported, but neither phase nor readiness
    let ephemeral: Vec<_> = spec
        .ephemeral_containers
        .iter()
        .flatten()
        .map(super::plan::from_ephemeral)
        .collect();
    let ephemeral_statuses = container_statuses(
        input,
        &ephemeral,
        app_default,
        old.ephemeral_container_statuses.as_ref(),
    );

    let old_phase = old.phase.as_deref().unwrap_or("Pending");
    let mut new_phase = phase(policy, &init_statuses, &sidecars, init_done, &app_statuses);
    if old_phase == "Succeeded" || old_phase == "Failed" {
        new_phase = if old_phase == "Succeeded" {
            "Succeeded"
        } else {
            "Failed"
        };
    }

    let old_conds = old.conditions.as_ref();
    let mut conds = Vec::new();
    let sandbox = input.rt.current_sandbox();
    let host_network = spec.host_network.unwrap_or(false);
    let sandbox_ok = sandbox.is_some_and(|s| s.ready && (host_network || !s.ips.is_empty()));
    conds.push(condition(
        old_conds,
        "PodReadyToStartContainers",
        sandbox_ok,
        None,
        None,
        &now,
    ));
    let incomplete: Vec<&str> = inits
        .iter()
        .zip(&init_statuses)
        .filter(|(c, s)| {
            let exited_ok = s
                .state
                .as_ref()
                .and_then(|st| st.terminated.as_ref())
                .is_some_and(|t| t.exit_code == 0);
            let sidecar_up = is_sidecar(c) && s.started == Some(true);
            !exited_ok && !sidecar_up
        })
        .map(|(c, _)| c.name.as_str())
        .collect();
    let initialized = incomplete.is_empty() || init_done || new_phase == "Succeeded";
    conds.push(if initialized {
        condition(
            old_conds,
            "Initialized",
            true,
            (new_phase == "Succeeded" && !inits.is_empty()).then(|| "PodCompleted".into()),
            None,
            &now,
        )
    } else {
        condition(
            old_conds,
            "Initialized",
            false,
            Some("ContainersNotInitialized".into()),
            Some(format!(
                "containers with incomplete status: [{}]",
                incomplete.join(" ")
            )),
            &now,
        )
    });
    // sidecars count for readiness, listed first as upstream does
    let unready: Vec<&str> = init_statuses
        .iter()
        .zip(&sidecars)
        .filter(|(_, sidecar)| **sidecar)
        .map(|(s, _)| s)
        .chain(&app_statuses)
        .filter(|s| !s.ready)
        .map(|s| s.name.as_str())
        .collect();
    let (containers_ready, cr_reason, cr_message) = if new_phase == "Succeeded" {
        (false, Some("PodCompleted".to_string()), None)
    } else if unready.is_empty() {
        (true, None, None)
    } else {
        (
            false,
            Some("ContainersNotReady".to_string()),
            Some(format!(
                "containers with unready status: [{}]",
                unready.join(" ")
            )),
        )
    };
    let mut ready = (containers_ready, cr_reason.clone(), cr_message.clone());
    if containers_ready {
        let mut missing = Vec::new();
        for gate in spec.readiness_gates.iter().flatten() {
            let c = old_conds.and_then(|o| o.iter().find(|c| c.type_ == gate.condition_type));
            match c {
                None => missing.push(format!(
                    "corresponding condition of pod readiness gate \"{}\" does not exist.",
                    gate.condition_type
                )),
                Some(c) if c.status != "True" => missing.push(format!(
                    "the status of pod readiness gate \"{}\" is not \"True\", but {}",
                    gate.condition_type, c.status
                )),
                _ => {}
            }
        }
        if !missing.is_empty() {
            ready = (
                false,
                Some("ReadinessGatesNotReady".into()),
                Some(missing.join(", ")),
            );
        }
    }
    conds.push(condition(
        old_conds, "Ready", ready.0, ready.1, ready.2, &now,
    ));
    conds.push(condition(
        old_conds,
        "ContainersReady",
        containers_ready,
        cr_reason,
        cr_message,
        &now,
    ));
    for c in old_conds.into_iter().flatten() {
        if !KUBELET_CONDITIONS.contains(&c.type_.as_str()) {
            conds.push(c.clone());
        }
    }
    // a pod bound by nodeName never saw the scheduler; upstream's kubelet
    // reports it scheduled anyway
    if !conds.iter().any(|c| c.type_ == "PodScheduled") {
        conds.push(condition(old_conds, "PodScheduled", true, None, None, &now));
    }

    let mut pod_ips: Vec<String> = if host_network {
        input.host_ips.clone()
    } else {
        sandbox
            .filter(|s| s.ready)
            .map(|s| s.ips.clone())
            .unwrap_or_default()
    };
    if pod_ips.is_empty() {
        pod_ips = old.pod_ips.iter().flatten().map(|p| p.ip.clone()).collect();
    }

    PodStatus {
        phase: Some(new_phase.to_string()),
        conditions: Some(conds),
        container_statuses: Some(app_statuses),
        init_container_statuses: (!inits.is_empty()).then_some(init_statuses),
        ephemeral_container_statuses: (!ephemeral.is_empty()).then_some(ephemeral_statuses),
        host_ip: input.host_ips.first().cloned(),
        host_ips: (!input.host_ips.is_empty()).then(|| {
            input
                .host_ips
                .iter()
                .map(|ip| HostIP { ip: ip.clone() })
                .collect()
        }),
        pod_ip: pod_ips.first().cloned(),
        pod_ips: (!pod_ips.is_empty())
            .then(|| pod_ips.iter().map(|ip| PodIP { ip: ip.clone() }).collect()),
        start_time: old.start_time.clone().or(Some(now)),
        qos_class: old.qos_class.clone(),
        ..old
    }
}

/// Reason and message of a pod stopped by `activeDeadlineSeconds`.
pub const DEADLINE_REASON: &str = "DeadlineExceeded";
pub const DEADLINE_MESSAGE: &str = "Pod was active on the node longer than the specified deadline";

/// Seconds left before `spec.activeDeadlineSeconds` runs out, counted from
/// `status.startTime` (≤ 0: exceeded); `None` without a deadline or before
/// the pod started.
pub fn active_deadline_left(pod: &Pod, now: DateTime<Utc>) -> Option<i64> {
    let deadline = pod.spec.as_ref()?.active_deadline_seconds?;
    let start = pod.status.as_ref()?.start_time.as_ref()?;
    let start = crate::controllers::podutil::time_to_chrono(start);
    Some(deadline - (now - start).num_seconds())
}

/// The status of a pod whose deadline ran out: `Failed`, as upstream.
pub fn mark_deadline_exceeded(st: &mut PodStatus) {
    st.phase = Some("Failed".into());
    st.reason = Some(DEADLINE_REASON.into());
    st.message = Some(DEADLINE_MESSAGE.into());
}

/// The `kubectl get pods` STATUS a status would show — for logs and tests.
pub fn display_reason(status: &PodStatus) -> String {
    for (i, s) in status.init_container_statuses.iter().flatten().enumerate() {
        let st = s.state.clone().unwrap_or_default();
        if let Some(t) = st.terminated {
            if t.exit_code == 0 {
                continue;
            }
            return format!("Init:{}", t.reason.unwrap_or_else(|| "Error".into()));
        }
        if let Some(w) = st.waiting
            && w.reason.as_deref().is_some_and(|r| r != "PodInitializing")
        {
            return format!("Init:{}", w.reason.unwrap_or_default());
        }
        let total = status.init_container_statuses.as_ref().map_or(0, Vec::len);
        return format!("Init:{i}/{total}");
    }
    for s in status.container_statuses.iter().flatten() {
        let st = s.state.clone().unwrap_or_default();
        if let Some(w) = st.waiting
            && let Some(r) = w.reason
        {
            return r;
        }
        if let Some(t) = st.terminated
            && let Some(r) = t.reason
        {
            return r;
        }
    }
    status.phase.clone().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn active_deadline() {
        let now = DateTime::from_timestamp(1_000_000, 0).unwrap();
        let start = chrono_to_time(DateTime::from_timestamp(1_000_000 - 30, 0).unwrap());
        let mk = |deadline: Option<i64>, started: bool| {
            let mut p: Pod = serde_json::from_value(serde_json::json!({
                "spec": {"containers": [{"name": "a", "image": "i"}]}
            }))
            .unwrap();
            p.spec.as_mut().unwrap().active_deadline_seconds = deadline;
            p.status = Some(PodStatus {
                start_time: started.then(|| start.clone()),
                ..Default::default()
            });
            p
        };
        for (what, deadline, started, want) in [
            ("no deadline", None, true, None),
            ("not started", Some(10), false, None),
            ("time left", Some(100), true, Some(70)),
            ("exactly at the deadline", Some(30), true, Some(0)),
            ("past", Some(10), true, Some(-20)),
        ] {
            assert_eq!(
                active_deadline_left(&mk(deadline, started), now),
                want,
                "{what}"
            );
        }
        let mut st = PodStatus::default();
        mark_deadline_exceeded(&mut st);
        assert_eq!(st.phase.as_deref(), Some("Failed"));
        assert_eq!(st.reason.as_deref(), Some("DeadlineExceeded"));
    }
    use crate::kubelet::plan::ObservedSandbox;
    use serde_json::json;

    fn pod(policy: &str, inits: &[&str], apps: &[&str], old_status: serde_json::Value) -> Pod {
        let cs = |names: &[&str]| {
            names
                .iter()
                .map(|n| json!({"name": n, "image": "img:1"}))
                .collect::<Vec<_>>()
        };
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u"},
            "spec": {"restartPolicy": policy, "initContainers": cs(inits), "containers": cs(apps)},
            "status": old_status
        }))
        .unwrap()
    }

    fn ctr(name: &str, rc: i32, state: CState, exit: i32) -> ObservedContainer {
        ObservedContainer {
            id: format!("{name}{rc}"),
            name: name.into(),
            sandbox_id: "sb".into(),
            restart_count: rc,
            state,
            created_at: (rc as i64 + 1) * 1_000_000_000 + name.len() as i64,
            started_at: 1_700_000_000_000_000_000,
            finished_at: if state == CState::Exited {
                1_700_000_010_000_000_000
            } else {
                0
            },
            exit_code: exit,
            reason: String::new(),
            message: String::new(),
            image: "img:1".into(),
            image_ref: "sha256:abc".into(),
            hash: String::new(),
        }
    }

    fn runtime(containers: Vec<ObservedContainer>) -> PodRuntime {
        let mut r = PodRuntime {
            sandboxes: vec![ObservedSandbox {
                id: "sb".into(),
                attempt: 0,
                ready: true,
                created_at: 1,
                ips: vec!["10.42.0.9".into()],
            }],
            containers,
        };
        r.normalize();
        r
    }

    fn status(pod: &Pod, rt: &PodRuntime, waiting: &Waiting) -> PodStatus {
        pod_status(&StatusInput {
            pod,
            rt,
            waiting,
            ready: &|_| true,
            started: &|_| true,
            host_ips: vec!["192.168.0.2".into()],
            now: Utc::now(),
        })
    }

    fn cond<'a>(s: &'a PodStatus, t: &str) -> &'a PodCondition {
        s.conditions
            .as_ref()
            .unwrap()
            .iter()
            .find(|c| c.type_ == t)
            .unwrap()
    }

    use CState::*;

    #[test]
    fn phases_and_display() {
        let none = Waiting::new();
        let crash: Waiting = [(
            "a".to_string(),
            ("CrashLoopBackOff".to_string(), "back-off 10s".to_string()),
        )]
        .into();
        type Case<'a> = (
            &'a str,
            Pod,
            Vec<ObservedContainer>,
            &'a Waiting,
            &'a str,
            &'a str,
        );
        let cases: Vec<Case> = vec![
            (
                "nothing yet",
                pod("Always", &[], &["a"], json!({})),
                vec![],
                &none,
                "Pending",
                "ContainerCreating",
            ),
            (
                "running",
                pod("Always", &[], &["a"], json!({})),
                vec![ctr("a", 0, Running, 0)],
                &none,
                "Running",
                "Running",
            ),
            (
                "never ok",
                pod("Never", &[], &["a"], json!({})),
                vec![ctr("a", 0, Exited, 0)],
                &none,
                "Succeeded",
                "Completed",
            ),
            (
                "never error",
                pod("Never", &[], &["a"], json!({})),
                vec![ctr("a", 0, Exited, 1)],
                &none,
                "Failed",
                "Error",
            ),
            (
                "onfailure error restarting",
                pod("OnFailure", &[], &["a"], json!({})),
                vec![ctr("a", 0, Exited, 1)],
                &none,
                "Running",
                "Error",
            ),
            (
                "always crashloop",
                pod("Always", &[], &["a"], json!({})),
                vec![ctr("a", 3, Exited, 1)],
                &crash,
                "Running",
                "CrashLoopBackOff",
            ),
            (
                "init pending",
                pod("Always", &["i"], &["a"], json!({})),
                vec![],
                &none,
                "Pending",
                "Init:0/1",
            ),
            (
                "init running",
                pod("Always", &["i"], &["a"], json!({})),
                vec![ctr("i", 0, Running, 0)],
                &none,
                "Pending",
                "Init:0/1",
            ),
            (
                "init done, app creating",
                pod("Always", &["i"], &["a"], json!({})),
                vec![ctr("i", 0, Exited, 0)],
                &none,
                "Pending",
                "ContainerCreating",
            ),
            (
                "init failed never",
                pod("Never", &["i"], &["a"], json!({})),
                vec![ctr("i", 0, Exited, 2)],
                &none,
                "Failed",
                "Init:Error",
            ),
            (
                "terminal sticks",
                pod("Always", &[], &["a"], json!({"phase": "Succeeded"})),
                vec![ctr("a", 0, Running, 0)],
                &none,
                "Succeeded",
                "Succeeded",
            ),
        ];
        for (what, p, cs, waiting, want_phase, want_display) in cases {
            let rt = runtime(cs);
            let s = status(&p, &rt, waiting);
            assert_eq!(s.phase.as_deref(), Some(want_phase), "{what}");
            assert_eq!(display_reason(&s), want_display, "{what}");
        }
    }

    #[test]
    fn sidecars_count_for_readiness_not_for_phase() {
        let mut p = pod("Never", &["side"], &["a"], json!({}));
        p.spec.as_mut().unwrap().init_containers.as_mut().unwrap()[0].restart_policy =
            Some("Always".into());
        let w = Waiting::new();
        // sidecar up, app running: Running, initialized, ready
        let rt = runtime(vec![ctr("side", 0, Running, 0), ctr("a", 0, Running, 0)]);
        let st = status(&p, &rt, &w);
        assert_eq!(st.phase.as_deref(), Some("Running"));
        assert_eq!(cond(&st, "Initialized").status, "True");
        assert_eq!(cond(&st, "Ready").status, "True");
        let side = &st.init_container_statuses.as_ref().unwrap()[0];
        assert_eq!(side.started, Some(true));
        assert!(side.ready);
        // an unready sidecar makes the pod unready, named in the message
        let st = pod_status(&StatusInput {
            pod: &p,
            rt: &rt,
            waiting: &w,
            ready: &|id| id != "side0",
            started: &|_| true,
            host_ips: vec![],
            now: Utc::now(),
        });
        assert_eq!(cond(&st, "Ready").status, "False");
        assert_eq!(
            cond(&st, "ContainersReady").message.as_deref(),
            Some("containers with unready status: [side]")
        );
        // the app is done, the sidecar was stopped: Succeeded all the same
        let rt = runtime(vec![ctr("side", 0, Exited, 137), ctr("a", 0, Exited, 0)]);
        assert_eq!(status(&p, &rt, &w).phase.as_deref(), Some("Succeeded"));
        // before the sidecar is up the pod is initializing
        let rt = runtime(vec![]);
        let st = status(&p, &rt, &w);
        assert_eq!(st.phase.as_deref(), Some("Pending"));
        assert_eq!(cond(&st, "Initialized").status, "False");
    }

    #[test]
    fn crashloop_moves_terminated_to_last_state() {
        let p = pod("Always", &[], &["a"], json!({}));
        let rt = runtime(vec![ctr("a", 2, Exited, 1), ctr("a", 1, Exited, 1)]);
        let waiting: Waiting = [(
            "a".to_string(),
            (
                "CrashLoopBackOff".into(),
                "back-off 20s restarting failed container=a pod=p_ns(u)".into(),
            ),
        )]
        .into();
        let s = status(&p, &rt, &waiting);
        let cs = &s.container_statuses.as_ref().unwrap()[0];
        assert_eq!(cs.restart_count, 2);
        assert_eq!(
            cs.state
                .as_ref()
                .unwrap()
                .waiting
                .as_ref()
                .unwrap()
                .reason
                .as_deref(),
            Some("CrashLoopBackOff")
        );
        let last = cs.last_state.as_ref().unwrap().terminated.as_ref().unwrap();
        assert_eq!(last.exit_code, 1);
        assert_eq!(last.reason.as_deref(), Some("Error"));
        assert_eq!(last.container_id.as_deref(), Some("containerd://a2"));
        assert!(!cs.ready);
    }

    #[test]
    fn running_status_fields_and_conditions() {
        let p = pod(
            "Always",
            &["i"],
            &["a", "b"],
            json!({"conditions": [{"type": "PodScheduled", "status": "True"}], "qosClass": "BestEffort"}),
        );
        let rt = runtime(vec![
            ctr("i", 0, Exited, 0),
            ctr("a", 0, Running, 0),
            ctr("b", 1, Running, 0),
            ctr("b", 0, Exited, 137),
        ]);
        let s = pod_status(&StatusInput {
            pod: &p,
            rt: &rt,
            waiting: &Waiting::new(),
            ready: &|id| id != "b1",
            started: &|_| true,
            host_ips: vec!["192.168.0.2".into()],
            now: Utc::now(),
        });
        assert_eq!(s.phase.as_deref(), Some("Running"));
        assert_eq!(s.pod_ip.as_deref(), Some("10.42.0.9"));
        assert_eq!(s.host_ip.as_deref(), Some("192.168.0.2"));
        assert_eq!(s.qos_class.as_deref(), Some("BestEffort"));
        assert!(s.start_time.is_some());
        let types: Vec<&str> = s
            .conditions
            .as_ref()
            .unwrap()
            .iter()
            .map(|c| c.type_.as_str())
            .collect();
        assert_eq!(
            types,
            [
                "PodReadyToStartContainers",
                "Initialized",
                "Ready",
                "ContainersReady",
                "PodScheduled"
            ]
        );
        assert_eq!(cond(&s, "Initialized").status, "True");
        assert_eq!(cond(&s, "PodReadyToStartContainers").status, "True");
        let ready = cond(&s, "Ready");
        assert_eq!(ready.status, "False");
        assert_eq!(ready.reason.as_deref(), Some("ContainersNotReady"));
        assert_eq!(
            ready.message.as_deref(),
            Some("containers with unready status: [b]")
        );
        let b = &s.container_statuses.as_ref().unwrap()[1];
        assert_eq!(b.restart_count, 1);
        assert_eq!(b.image_id, "sha256:abc");
        assert_eq!(
            b.last_state
                .as_ref()
                .unwrap()
                .terminated
                .as_ref()
                .unwrap()
                .exit_code,
            137
        );
        assert!(b.state.as_ref().unwrap().running.is_some());
    }

    #[test]
    fn transition_time_kept_while_status_unchanged() {
        let p = pod("Always", &[], &["a"], json!({}));
        let rt = runtime(vec![ctr("a", 0, Running, 0)]);
        let s1 = status(&p, &rt, &Waiting::new());
        let mut p2 = p.clone();
        p2.status = Some(s1.clone());
        let later = pod_status(&StatusInput {
            pod: &p2,
            rt: &rt,
            waiting: &Waiting::new(),
            ready: &|_| true,
            started: &|_| true,
            host_ips: vec!["192.168.0.2".into()],
            now: Utc::now() + chrono::Duration::seconds(30),
        });
        assert_eq!(later, s1, "an unchanged pod yields an identical status");
    }

    #[test]
    fn readiness_gates() {
        let mut p = pod("Always", &[], &["a"], json!({}));
        p.spec.as_mut().unwrap().readiness_gates =
            Some(vec![k8s_openapi::api::core::v1::PodReadinessGate {
                condition_type: "example.com/lb".into(),
            }]);
        let rt = runtime(vec![ctr("a", 0, Running, 0)]);
        let s = status(&p, &rt, &Waiting::new());
        assert_eq!(cond(&s, "ContainersReady").status, "True");
        let r = cond(&s, "Ready");
        assert_eq!(r.status, "False");
        assert_eq!(r.reason.as_deref(), Some("ReadinessGatesNotReady"));
    }

    #[test]
    fn succeeded_pod_conditions() {
        let p = pod("Never", &[], &["a"], json!({}));
        let rt = runtime(vec![ctr("a", 0, Exited, 0)]);
        let s = status(&p, &rt, &Waiting::new());
        assert_eq!(cond(&s, "Ready").reason.as_deref(), Some("PodCompleted"));
        let t = s.container_statuses.as_ref().unwrap()[0]
            .state
            .as_ref()
            .unwrap()
            .terminated
            .clone()
            .unwrap();
        assert_eq!(t.reason.as_deref(), Some("Completed"));
        assert!(t.finished_at.is_some());
    }
}
