//! `ContainerConfig` for one container of a pod (pure): image, command and
//! args with `$(VAR)` expansion, env, mounts, log path, tty/stdin, labels
//! and annotations per the contract in `kubelet/mod.rs`, resources
//! (cpu shares/quota, memory, oom_score_adj ≥ 0), the security context;
//! plus the image pull policy and the `runAsNonRoot` check.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{Container, Pod, SecurityContext};

use crate::api::quantity::parse_quantity;
use crate::kubelet::cri::api;
use crate::kubelet::env::expand;
use crate::kubelet::labels;

pub const TERMINATION_MESSAGE_PATH_ANNOTATION: &str =
    "io.kubernetes.container.terminationMessagePath";
pub const TERMINATION_GRACE_ANNOTATION: &str = "io.kubernetes.pod.terminationGracePeriod";
pub const DEFAULT_TERMINATION_MESSAGE_PATH: &str = "/dev/termination-log";

/// Paths masked/read-only for unprivileged containers (as upstream's
/// default proc mount).
const MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];
const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// `Always`, `IfNotPresent` or `Never`, with upstream's default
/// (`Always` for `:latest` or an untagged image).
pub fn pull_policy(c: &Container) -> String {
    if let Some(p) = c.image_pull_policy.as_deref().filter(|p| !p.is_empty()) {
        return p.to_string();
    }
    let image = c.image.as_deref().unwrap_or_default();
    if image.contains('@') {
        return "IfNotPresent".into();
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.rsplit_once(':') {
        Some((_, "latest")) | None => "Always".into(),
        Some(_) => "IfNotPresent".into(),
    }
}

/// `name_namespace(uid)`, upstream's `format.Pod`.
pub fn format_pod(pod: &Pod) -> String {
    let m = &pod.metadata;
    format!(
        "{}_{}({})",
        m.name.as_deref().unwrap_or_default(),
        m.namespace.as_deref().unwrap_or_default(),
        m.uid.as_deref().unwrap_or_default()
    )
}

/// Container settings override the pod's.
pub fn effective_security(pod: &Pod, c: &Container) -> SecurityContext {
    let mut sc = c.security_context.clone().unwrap_or_default();
    if let Some(p) = pod.spec.as_ref().and_then(|s| s.security_context.as_ref()) {
        sc.run_as_user = sc.run_as_user.or(p.run_as_user);
        sc.run_as_group = sc.run_as_group.or(p.run_as_group);
        sc.run_as_non_root = sc.run_as_non_root.or(p.run_as_non_root);
        if sc.seccomp_profile.is_none() {
            sc.seccomp_profile = p.seccomp_profile.clone();
        }
    }
    sc
}

/// Upstream `verifyRunAsNonRoot`; `image_uid`/`image_user` from ImageStatus
/// (neither set = the image runs as root).
pub fn verify_run_as_non_root(
    pod: &Pod,
    c: &Container,
    image_uid: Option<i64>,
    image_user: &str,
) -> Result<(), String> {
    let sc = effective_security(pod, c);
    if sc.run_as_non_root != Some(true) {
        return Ok(());
    }
    if let Some(u) = sc.run_as_user {
        if u == 0 {
            return Err(format!(
                "container's runAsUser breaks non-root policy (pod: {:?}, container: {})",
                format_pod(pod),
                c.name
            ));
        }
        return Ok(());
    }
    let uid = match (image_uid, image_user) {
        (Some(u), _) => Some(u),
        (None, "") => Some(0),
        (None, _) => None,
    };
    match uid {
        Some(0) => Err(format!(
            "container has runAsNonRoot and image will run as root (pod: {:?}, container: {})",
            format_pod(pod),
            c.name
        )),
        None => Err(format!(
            "container has runAsNonRoot and image has non-numeric user ({image_user}), cannot verify user is non-root (pod: {:?}, container: {})",
            format_pod(pod),
            c.name
        )),
        _ => Ok(()),
    }
}

fn quantity(c: &Container, list: &str, name: &str) -> Option<i128> {
    let r = c.resources.as_ref()?;
    let m = if list == "limits" {
        r.limits.as_ref()
    } else {
        r.requests.as_ref()
    }?;
    parse_quantity(&m.get(name)?.0).map(|q| q.milli_value())
}

/// Upstream's resource mapping, with oom_score_adj never below 0 (a
/// negative value cannot be set on these hosts).
pub fn resources(
    c: &Container,
    qos: &str,
    node_memory_bytes: i128,
) -> api::LinuxContainerResources {
    let cpu_limit = quantity(c, "limits", "cpu");
    let cpu_request = quantity(c, "requests", "cpu").or(cpu_limit);
    let mem_limit = quantity(c, "limits", "memory").map(|m| m / 1000);
    let mem_request = quantity(c, "requests", "memory")
        .map(|m| m / 1000)
        .or(mem_limit);
    let shares = match cpu_request {
        Some(m) if m > 0 => ((m * 1024) / 1000).max(2),
        _ => 2,
    };
    let mut r = api::LinuxContainerResources {
        cpu_shares: shares as i64,
        ..Default::default()
    };
    if let Some(l) = cpu_limit.filter(|l| *l > 0) {
        r.cpu_period = 100_000;
        r.cpu_quota = ((l * 100_000) / 1000).max(1000) as i64;
    }
    if let Some(m) = mem_limit.filter(|m| *m > 0) {
        r.memory_limit_in_bytes = m as i64;
    }
    r.oom_score_adj = match qos {
        "Guaranteed" => 0,
        "BestEffort" => 1000,
        _ => {
            let req = mem_request.unwrap_or(0);
            let adj = if node_memory_bytes > 0 {
                1000 - (1000 * req) / node_memory_bytes
            } else {
                999
            };
            adj.clamp(3, 999) as i64
        }
    };
    r
}

fn capability_name(c: &str) -> String {
    c.strip_prefix("CAP_").unwrap_or(c).to_string()
}

pub fn security_context(
    pod: &Pod,
    c: &Container,
    ns: api::NamespaceOption,
) -> api::LinuxContainerSecurityContext {
    let sc = effective_security(pod, c);
    let psc = pod
        .spec
        .as_ref()
        .and_then(|s| s.security_context.clone())
        .unwrap_or_default();
    let privileged = sc.privileged.unwrap_or(false);
    let mut groups: Vec<i64> = psc.supplemental_groups.clone().unwrap_or_default();
    if let Some(fs) = psc.fs_group {
        groups.push(fs);
    }
    let unmasked = privileged || sc.proc_mount.as_deref() == Some("Unmasked");
    api::LinuxContainerSecurityContext {
        capabilities: sc.capabilities.as_ref().map(|caps| api::Capability {
            add_capabilities: caps
                .add
                .iter()
                .flatten()
                .map(|c| capability_name(c))
                .collect(),
            drop_capabilities: caps
                .drop
                .iter()
                .flatten()
                .map(|c| capability_name(c))
                .collect(),
            add_ambient_capabilities: Vec::new(),
        }),
        privileged,
        namespace_options: Some(ns),
        run_as_user: sc.run_as_user.map(|value| api::Int64Value { value }),
        run_as_group: sc.run_as_group.map(|value| api::Int64Value { value }),
        readonly_rootfs: sc.read_only_root_filesystem.unwrap_or(false),
        supplemental_groups: groups,
        no_new_privs: sc.allow_privilege_escalation == Some(false),
        masked_paths: if unmasked {
            Vec::new()
        } else {
            MASKED_PATHS.iter().map(|s| s.to_string()).collect()
        },
        readonly_paths: if unmasked {
            Vec::new()
        } else {
            READONLY_PATHS.iter().map(|s| s.to_string()).collect()
        },
        seccomp: super::sandbox::seccomp(sc.seccomp_profile.as_ref()),
        ..Default::default()
    }
}

/// What the shell resolved for one container instance.
pub struct ContainerInputs {
    pub restart_count: i32,
    pub image_ref: String,
    pub env: Vec<(String, String)>,
    pub mounts: Vec<api::Mount>,
    pub qos: String,
    pub node_memory_bytes: i128,
    /// Join this container's PID namespace (an ephemeral container's target).
    pub pid_target: Option<String>,
}

pub fn container_config(pod: &Pod, c: &Container, input: ContainerInputs) -> api::ContainerConfig {
    let m = &pod.metadata;
    let lookup = |n: &str| {
        input
            .env
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.clone())
    };
    let command = c
        .command
        .iter()
        .flatten()
        .map(|s| expand(s, &lookup))
        .collect();
    let args = c
        .args
        .iter()
        .flatten()
        .map(|s| expand(s, &lookup))
        .collect();
    let mut lbl = HashMap::new();
    lbl.insert(labels::POD_NAME.into(), m.name.clone().unwrap_or_default());
    lbl.insert(
        labels::POD_NAMESPACE.into(),
        m.namespace.clone().unwrap_or_default(),
    );
    lbl.insert(labels::POD_UID.into(), m.uid.clone().unwrap_or_default());
    lbl.insert(labels::CONTAINER_NAME.into(), c.name.clone());
    let mut ann = HashMap::new();
    ann.insert(
        labels::RESTART_COUNT.into(),
        input.restart_count.to_string(),
    );
    ann.insert(
        labels::CONTAINER_HASH.into(),
        crate::kubelet::plan::container_hash(c),
    );
    ann.insert(
        TERMINATION_MESSAGE_PATH_ANNOTATION.into(),
        c.termination_message_path
            .clone()
            .unwrap_or_else(|| DEFAULT_TERMINATION_MESSAGE_PATH.into()),
    );
    if let Some(g) = pod
        .spec
        .as_ref()
        .and_then(|s| s.termination_grace_period_seconds)
    {
        ann.insert(TERMINATION_GRACE_ANNOTATION.into(), g.to_string());
    }
    api::ContainerConfig {
        metadata: Some(api::ContainerMetadata {
            name: c.name.clone(),
            attempt: input.restart_count.max(0) as u32,
        }),
        image: Some(api::ImageSpec {
            image: input.image_ref.clone(),
            user_specified_image: c.image.clone().unwrap_or_default(),
            ..Default::default()
        }),
        command,
        args,
        working_dir: c.working_dir.clone().unwrap_or_default(),
        envs: input
            .env
            .iter()
            .map(|(k, v)| api::KeyValue {
                key: k.clone(),
                value: v.clone(),
            })
            .collect(),
        mounts: input.mounts,
        labels: lbl,
        annotations: ann,
        log_path: format!("{}/{}.log", c.name, input.restart_count),
        stdin: c.stdin.unwrap_or(false),
        stdin_once: c.stdin_once.unwrap_or(false),
        tty: c.tty.unwrap_or(false),
        linux: Some(api::LinuxContainerConfig {
            resources: Some(resources(c, &input.qos, input.node_memory_bytes)),
            security_context: Some(security_context(pod, c, {
                let mut ns = super::sandbox::namespace_options(pod);
                if let Some(target) = input.pid_target {
                    ns.pid = api::NamespaceMode::Target as i32;
                    ns.target_id = target;
                }
                ns
            })),
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(container: serde_json::Value, pod_sc: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u"},
            "spec": {"securityContext": pod_sc, "containers": [container]}
        }))
        .unwrap()
    }

    #[test]
    fn pull_policies() {
        for (image, policy, want) in [
            ("busybox", None, "Always"),
            ("busybox:latest", None, "Always"),
            ("busybox:1.36", None, "IfNotPresent"),
            ("localhost:5000/busybox", None, "Always"),
            ("localhost:5000/busybox:1", None, "IfNotPresent"),
            ("busybox@sha256:abc", None, "IfNotPresent"),
            ("busybox", Some("Never"), "Never"),
        ] {
            let c: Container = serde_json::from_value(
                json!({"name": "c", "image": image, "imagePullPolicy": policy}),
            )
            .unwrap();
            assert_eq!(pull_policy(&c), want, "{image}");
        }
    }

    #[test]
    fn run_as_non_root() {
        let cases = vec![
            (json!({}), json!({}), None, "", Ok(())),
            (
                json!({"runAsNonRoot": true}),
                json!({}),
                None,
                "",
                Err(
                    "container has runAsNonRoot and image will run as root (pod: \"p_ns(u)\", container: c)",
                ),
            ),
            (
                json!({"runAsNonRoot": true}),
                json!({}),
                Some(1000),
                "",
                Ok(()),
            ),
            (
                json!({"runAsNonRoot": true}),
                json!({}),
                None,
                "nobody",
                Err(
                    "container has runAsNonRoot and image has non-numeric user (nobody), cannot verify user is non-root (pod: \"p_ns(u)\", container: c)",
                ),
            ),
            (
                json!({"runAsNonRoot": true, "runAsUser": 1000}),
                json!({}),
                None,
                "",
                Ok(()),
            ),
            (
                json!({}),
                json!({"runAsNonRoot": true, "runAsUser": 0}),
                None,
                "",
                Err(
                    "container's runAsUser breaks non-root policy (pod: \"p_ns(u)\", container: c)",
                ),
            ),
            (
                json!({"runAsNonRoot": true}),
                json!({"runAsUser": 5}),
                None,
                "",
                Ok(()),
            ),
        ];
        for (csc, psc, uid, user, want) in cases {
            let p = pod(
                json!({"name": "c", "image": "i", "securityContext": csc}),
                psc,
            );
            let c = &p.spec.as_ref().unwrap().containers[0];
            assert_eq!(
                verify_run_as_non_root(&p, c, uid, user),
                want.map_err(String::from)
            );
        }
    }

    #[test]
    fn resource_mapping() {
        let c: Container = serde_json::from_value(json!({"name": "c",
            "resources": {"limits": {"cpu": "500m", "memory": "64Mi"}, "requests": {"cpu": "250m", "memory": "32Mi"}}}))
        .unwrap();
        let r = resources(&c, "Burstable", 1 << 30);
        assert_eq!(r.cpu_shares, 256);
        assert_eq!(r.cpu_quota, 50_000);
        assert_eq!(r.cpu_period, 100_000);
        assert_eq!(r.memory_limit_in_bytes, 64 << 20);
        assert_eq!(r.oom_score_adj, 969);
        let none: Container = serde_json::from_value(json!({"name": "c"})).unwrap();
        let r = resources(&none, "BestEffort", 1 << 30);
        assert_eq!(
            (
                r.cpu_shares,
                r.cpu_quota,
                r.memory_limit_in_bytes,
                r.oom_score_adj
            ),
            (2, 0, 0, 1000)
        );
        let r = resources(&c, "Guaranteed", 1 << 30);
        assert_eq!(r.oom_score_adj, 0);
    }

    #[test]
    fn config_contract() {
        let p = pod(
            json!({"name": "c", "image": "img:1", "command": ["sh", "-c"], "args": ["echo $(A) $$(A)"],
                   "tty": true, "securityContext": {"capabilities": {"add": ["NET_ADMIN"], "drop": ["ALL"]},
                   "allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true, "runAsUser": 7}}),
            json!({"runAsGroup": 9, "fsGroup": 11}),
        );
        let c = &p.spec.as_ref().unwrap().containers[0];
        let cfg = container_config(
            &p,
            c,
            ContainerInputs {
                pid_target: None,
                restart_count: 3,
                image_ref: "sha256:abc".into(),
                env: vec![("A".into(), "x".into())],
                mounts: vec![],
                qos: "BestEffort".into(),
                node_memory_bytes: 1 << 30,
            },
        );
        assert_eq!(cfg.args, vec!["echo x $(A)"]);
        assert_eq!(cfg.log_path, "c/3.log");
        assert_eq!(cfg.annotations[labels::RESTART_COUNT], "3");
        assert_eq!(cfg.labels[labels::CONTAINER_NAME], "c");
        assert_eq!(cfg.labels[labels::POD_UID], "u");
        assert!(cfg.tty);
        let sc = cfg.linux.unwrap().security_context.unwrap();
        assert_eq!(sc.run_as_user.unwrap().value, 7);
        assert_eq!(sc.run_as_group.unwrap().value, 9);
        assert_eq!(sc.supplemental_groups, vec![11]);
        assert!(sc.no_new_privs && sc.readonly_rootfs);
        let caps = sc.capabilities.unwrap();
        assert_eq!(caps.add_capabilities, vec!["NET_ADMIN"]);
        assert_eq!(caps.drop_capabilities, vec!["ALL"]);
        assert!(!sc.masked_paths.is_empty());
        assert!(sc.seccomp.is_none());
    }
}
