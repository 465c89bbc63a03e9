//! `PodSandboxConfig` for a pod (pure): metadata, hostname, log directory,
//! DNS (upstream `dnsPolicy` rules), hostPort mappings, labels, the pod
//! cgroup per QoS class, namespaces and the sandbox security context.
//!
//! Invariant: the same pod and attempt always give the same config, so a
//! container created later can be handed the sandbox config again.

use std::collections::HashMap;
use std::path::Path;

use k8s_openapi::api::core::v1::Pod;

use crate::agent::AgentConfig;
use crate::kubelet::cri::api;
use crate::kubelet::labels;

/// `<pod-logs>/<ns>_<name>_<uid>`.
pub fn log_directory(pod_logs: &Path, ns: &str, name: &str, uid: &str) -> String {
    pod_logs
        .join(format!("{ns}_{name}_{uid}"))
        .display()
        .to_string()
}

/// Upstream QoS class (`Guaranteed`, `Burstable`, `BestEffort`).
pub fn qos_class(pod: &Pod) -> String {
    if let Some(q) = pod.status.as_ref().and_then(|s| s.qos_class.clone()) {
        return q;
    }
    let v = serde_json::to_value(pod).unwrap_or_default();
    v.as_object()
        .map(crate::api::defaults::pod_qos_class)
        .unwrap_or("BestEffort")
        .to_string()
}

/// The pod's cgroup (cgroupfs path), like upstream's `/kubepods/...` layout.
pub fn cgroup_parent(qos: &str, uid: &str) -> String {
    match qos {
        "Guaranteed" => format!("/skiff/pod{uid}"),
        "Burstable" => format!("/skiff/burstable/pod{uid}"),
        _ => format!("/skiff/besteffort/pod{uid}"),
    }
}

pub fn namespace_options(pod: &Pod) -> api::NamespaceOption {
    let spec = pod.spec.as_ref();
    let flag = |f: fn(&k8s_openapi::api::core::v1::PodSpec) -> Option<bool>| {
        spec.and_then(f).unwrap_or(false)
    };
    let node = api::NamespaceMode::Node as i32;
    let pod_mode = api::NamespaceMode::Pod as i32;
    let container = api::NamespaceMode::Container as i32;
    api::NamespaceOption {
        network: if flag(|s| s.host_network) {
            node
        } else {
            pod_mode
        },
        pid: if flag(|s| s.host_pid) {
            node
        } else if flag(|s| s.share_process_namespace) {
            pod_mode
        } else {
            container
        },
        ipc: if flag(|s| s.host_ipc) { node } else { pod_mode },
        ..Default::default()
    }
}

/// Upstream `GetPodDNS`: `None` means "the host's resolv.conf".
pub fn dns_config(pod: &Pod, cluster_dns: &str, domain: &str) -> Option<api::DnsConfig> {
    let spec = pod.spec.as_ref()?;
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let host_network = spec.host_network.unwrap_or(false);
    let policy = spec.dns_policy.as_deref().unwrap_or("ClusterFirst");
    let cluster = || api::DnsConfig {
        servers: vec![cluster_dns.to_string()],
        searches: vec![
            format!("{ns}.svc.{domain}"),
            format!("svc.{domain}"),
            domain.to_string(),
        ],
        options: vec!["ndots:5".into()],
    };
    let mut base = match policy {
        "None" => api::DnsConfig::default(),
        "Default" => return merge_custom(None, spec),
        "ClusterFirstWithHostNet" => cluster(),
        _ if host_network => return merge_custom(None, spec),
        _ => cluster(),
    };
    if let Some(custom) = merge_custom(Some(base.clone()), spec) {
        base = custom;
    }
    Some(base)
}

/// Apply `spec.dnsConfig` on top of `base`.
fn merge_custom(
    base: Option<api::DnsConfig>,
    spec: &k8s_openapi::api::core::v1::PodSpec,
) -> Option<api::DnsConfig> {
    let Some(custom) = &spec.dns_config else {
        return base;
    };
    let mut out = base.unwrap_or_default();
    for s in custom.nameservers.iter().flatten() {
        if !out.servers.contains(s) {
            out.servers.push(s.clone());
        }
    }
    for s in custom.searches.iter().flatten() {
        if !out.searches.contains(s) {
            out.searches.push(s.clone());
        }
    }
    for o in custom.options.iter().flatten() {
        let rendered = match &o.value {
            Some(v) => format!("{}:{v}", o.name.clone().unwrap_or_default()),
            None => o.name.clone().unwrap_or_default(),
        };
        let name = o.name.clone().unwrap_or_default();
        out.options
            .retain(|x| x.split(':').next().unwrap_or_default() != name);
        out.options.push(rendered);
    }
    Some(out)
}

pub fn port_mappings(pod: &Pod) -> Vec<api::PortMapping> {
    let mut out = Vec::new();
    for c in pod.spec.iter().flat_map(|s| s.containers.iter()) {
        for p in c.ports.iter().flatten() {
            let Some(host_port) = p.host_port.filter(|h| *h > 0) else {
                continue;
            };
            let protocol = match p.protocol.as_deref() {
                Some("UDP") => api::Protocol::Udp,
                Some("SCTP") => api::Protocol::Sctp,
                _ => api::Protocol::Tcp,
            };
            out.push(api::PortMapping {
                protocol: protocol as i32,
                container_port: p.container_port,
                host_port,
                host_ip: p.host_ip.clone().unwrap_or_default(),
            });
        }
    }
    out
}

pub fn pod_labels(pod: &Pod) -> HashMap<String, String> {
    let m = &pod.metadata;
    let mut l: HashMap<String, String> = m
        .labels
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    l.insert(labels::POD_NAME.into(), m.name.clone().unwrap_or_default());
    l.insert(
        labels::POD_NAMESPACE.into(),
        m.namespace.clone().unwrap_or_default(),
    );
    l.insert(labels::POD_UID.into(), m.uid.clone().unwrap_or_default());
    l
}

/// Upstream `seccompProfile` → CRI profile; `None` = unconfined (the
/// kubelet default without `--seccomp-default`).
pub fn seccomp(
    p: Option<&k8s_openapi::api::core::v1::SeccompProfile>,
) -> Option<api::SecurityProfile> {
    use api::security_profile::ProfileType;
    let p = p?;
    Some(match p.type_.as_str() {
        "RuntimeDefault" => api::SecurityProfile {
            profile_type: ProfileType::RuntimeDefault as i32,
            localhost_ref: String::new(),
        },
        "Localhost" => api::SecurityProfile {
            profile_type: ProfileType::Localhost as i32,
            localhost_ref: p.localhost_profile.clone().unwrap_or_default(),
        },
        _ => api::SecurityProfile {
            profile_type: ProfileType::Unconfined as i32,
            localhost_ref: String::new(),
        },
    })
}

/// The full sandbox config of `pod` for `attempt`.
pub fn sandbox_config(pod: &Pod, attempt: u32, cfg: &AgentConfig) -> api::PodSandboxConfig {
    let m = &pod.metadata;
    let name = m.name.clone().unwrap_or_default();
    let ns = m.namespace.clone().unwrap_or_default();
    let uid = m.uid.clone().unwrap_or_default();
    let spec = pod.spec.clone().unwrap_or_default();
    let host_network = spec.host_network.unwrap_or(false);
    let hostname = if host_network {
        String::new()
    } else {
        let h = spec.hostname.clone().unwrap_or_else(|| name.clone());
        h.chars()
            .take(63)
            .collect::<String>()
            .trim_end_matches(['-', '.'])
            .to_string()
    };
    let psc = spec.security_context.clone().unwrap_or_default();
    let privileged = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .any(|c| {
            c.security_context
                .as_ref()
                .and_then(|s| s.privileged)
                .unwrap_or(false)
        });
    let mut groups: Vec<i64> = psc.supplemental_groups.clone().unwrap_or_default();
    if let Some(fs) = psc.fs_group {
        groups.push(fs);
    }
    let sysctls = psc
        .sysctls
        .iter()
        .flatten()
        .map(|s| (s.name.clone(), s.value.clone()))
        .collect();
    api::PodSandboxConfig {
        metadata: Some(api::PodSandboxMetadata {
            name: name.clone(),
            uid: uid.clone(),
            namespace: ns.clone(),
            attempt,
        }),
        hostname,
        log_directory: log_directory(&cfg.pod_logs_dir(), &ns, &name, &uid),
        dns_config: dns_config(pod, &cfg.cluster_dns.to_string(), &cfg.cluster_domain),
        port_mappings: port_mappings(pod),
        labels: pod_labels(pod),
        annotations: m
            .annotations
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        linux: Some(api::LinuxPodSandboxConfig {
            cgroup_parent: cgroup_parent(&qos_class(pod), &uid),
            security_context: Some(api::LinuxSandboxSecurityContext {
                namespace_options: Some(namespace_options(pod)),
                run_as_user: psc.run_as_user.map(|value| api::Int64Value { value }),
                run_as_group: psc.run_as_group.map(|value| api::Int64Value { value }),
                supplemental_groups: groups,
                privileged,
                seccomp: seccomp(psc.seccomp_profile.as_ref()),
                ..Default::default()
            }),
            sysctls,
            ..Default::default()
        }),
        windows: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(spec: serde_json::Value) -> Pod {
        let mut s = spec;
        s["containers"] = json!([{"name": "c", "image": "i",
            "ports": [{"containerPort": 80, "hostPort": 8080}, {"containerPort": 53, "protocol": "UDP"}]}]);
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "prod", "uid": "u1", "labels": {"app": "w"}},
            "spec": s
        }))
        .unwrap()
    }

    #[test]
    fn dns_policies() {
        let cases = vec![
            (
                json!({}),
                Some((
                    vec!["10.43.0.10"],
                    vec![
                        "prod.svc.cluster.local",
                        "svc.cluster.local",
                        "cluster.local",
                    ],
                )),
            ),
            (json!({"hostNetwork": true}), None),
            (
                json!({"hostNetwork": true, "dnsPolicy": "ClusterFirstWithHostNet"}),
                Some((
                    vec!["10.43.0.10"],
                    vec![
                        "prod.svc.cluster.local",
                        "svc.cluster.local",
                        "cluster.local",
                    ],
                )),
            ),
            (json!({"dnsPolicy": "Default"}), None),
            (
                json!({"dnsPolicy": "None", "dnsConfig": {"nameservers": ["1.1.1.1"], "searches": ["a.b"]}}),
                Some((vec!["1.1.1.1"], vec!["a.b"])),
            ),
            (
                json!({"dnsConfig": {"nameservers": ["1.1.1.1"]}}),
                Some((
                    vec!["10.43.0.10", "1.1.1.1"],
                    vec![
                        "prod.svc.cluster.local",
                        "svc.cluster.local",
                        "cluster.local",
                    ],
                )),
            ),
        ];
        for (spec, want) in cases {
            let got = dns_config(&pod(spec.clone()), "10.43.0.10", "cluster.local")
                .map(|d| (d.servers, d.searches));
            let want = want.map(|(s, q)| {
                (
                    s.into_iter().map(String::from).collect::<Vec<_>>(),
                    q.into_iter().map(String::from).collect::<Vec<_>>(),
                )
            });
            assert_eq!(got, want, "{spec}");
        }
        let d = dns_config(
            &pod(json!({"dnsConfig": {"options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}]}})),
            "10.43.0.10",
            "cluster.local",
        )
        .unwrap();
        assert_eq!(d.options, vec!["ndots:2", "edns0"]);
    }

    #[test]
    fn config_fields() {
        let cfg = AgentConfig::with_defaults("/a", "n", "10.0.0.1".parse().unwrap());
        let c = sandbox_config(&pod(json!({})), 2, &cfg);
        assert_eq!(c.metadata.as_ref().unwrap().attempt, 2);
        assert_eq!(c.hostname, "web");
        assert_eq!(c.log_directory, "/a/pod-logs/prod_web_u1");
        assert_eq!(c.labels[labels::POD_UID], "u1");
        assert_eq!(c.labels["app"], "w");
        assert_eq!(c.port_mappings.len(), 1);
        assert_eq!(c.port_mappings[0].host_port, 8080);
        let linux = c.linux.unwrap();
        assert_eq!(linux.cgroup_parent, "/skiff/besteffort/podu1");
        let ns = linux.security_context.unwrap().namespace_options.unwrap();
        assert_eq!(ns.network, api::NamespaceMode::Pod as i32);
        assert_eq!(ns.pid, api::NamespaceMode::Container as i32);
        let h = sandbox_config(&pod(json!({"hostNetwork": true, "hostPID": true})), 0, &cfg);
        assert_eq!(h.hostname, "");
        let ns = h
            .linux
            .unwrap()
            .security_context
            .unwrap()
            .namespace_options
            .unwrap();
        assert_eq!(ns.network, api::NamespaceMode::Node as i32);
        assert_eq!(ns.pid, api::NamespaceMode::Node as i32);
    }

    #[test]
    fn cgroups_by_qos() {
        assert_eq!(cgroup_parent("Guaranteed", "x"), "/skiff/podx");
        assert_eq!(cgroup_parent("Burstable", "x"), "/skiff/burstable/podx");
        assert_eq!(cgroup_parent("BestEffort", "x"), "/skiff/besteffort/podx");
    }
}
