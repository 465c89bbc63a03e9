//! A container's environment, computed like upstream's kubelet
//! (`makeEnvironmentVariables`): service link variables, then `envFrom`
//! (with prefixes), then `env` with `$(VAR)` expansion and `valueFrom`
//! (fieldRef, resourceFieldRef, configMapKeyRef, secretKeyRef).
//!
//! Pure: the shell fetches the referenced ConfigMaps and Secrets and the
//! services, and passes them in `EnvSources`. Invariant: a missing
//! non-optional reference is an `EnvError` with upstream's message (the
//! container then waits with `CreateContainerConfigError`), never a panic.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret, Service};

use crate::api::quantity::parse_quantity;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvError {
    #[error("configmap \"{0}\" not found")]
    ConfigMapNotFound(String),
    #[error("secret \"{0}\" not found")]
    SecretNotFound(String),
    #[error("couldn't find key {key} in ConfigMap {namespace}/{name}")]
    ConfigMapKey {
        key: String,
        namespace: String,
        name: String,
    },
    #[error("couldn't find key {key} in Secret {namespace}/{name}")]
    SecretKey {
        key: String,
        namespace: String,
        name: String,
    },
    #[error("unsupported fieldPath: {0}")]
    FieldPath(String),
    #[error("unsupported container resource: {0}")]
    Resource(String),
}

/// What the environment may refer to, fetched by the caller.
#[derive(Default)]
pub struct EnvSources<'a> {
    pub node_name: String,
    pub host_ips: Vec<String>,
    pub pod_ips: Vec<String>,
    /// ConfigMaps of the pod's namespace by name (absent = not found).
    pub config_maps: BTreeMap<String, &'a ConfigMap>,
    pub secrets: BTreeMap<String, &'a Secret>,
    /// Service link variables (see `service_env`), in order.
    pub service_env: Vec<(String, String)>,
    /// Node allocatable cpu (millicores) and memory (bytes): the value of
    /// `limits.*` when the container sets no limit.
    pub node_cpu_millis: i128,
    pub node_memory_bytes: i128,
}

/// ConfigMap and Secret names the pod's containers refer to from `env`/`envFrom`.
pub fn referenced_objects(containers: &[&Container]) -> (Vec<String>, Vec<String>) {
    let mut cms = Vec::new();
    let mut secrets = Vec::new();
    let push = |v: &mut Vec<String>, n: &str| {
        if !v.iter().any(|x| x == n) {
            v.push(n.to_string());
        }
    };
    for c in containers {
        for e in c.env.iter().flatten() {
            if let Some(vf) = &e.value_from {
                if let Some(r) = &vf.config_map_key_ref {
                    push(&mut cms, &r.name);
                }
                if let Some(r) = &vf.secret_key_ref {
                    push(&mut secrets, &r.name);
                }
            }
        }
        for ef in c.env_from.iter().flatten() {
            if let Some(r) = &ef.config_map_ref {
                push(&mut cms, &r.name);
            }
            if let Some(r) = &ef.secret_ref {
                push(&mut secrets, &r.name);
            }
        }
    }
    (cms, secrets)
}

/// Docker-link style variables for services (`FOO_SERVICE_HOST`, `FOO_PORT`,
/// `FOO_PORT_80_TCP_ADDR`…), for every service with a ClusterIP, in order.
pub fn service_env(services: &[&Service]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut sorted: Vec<&&Service> = services.iter().collect();
    sorted.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    for svc in sorted {
        let Some(spec) = &svc.spec else { continue };
        let Some(ip) = spec.cluster_ip.as_deref() else {
            continue;
        };
        if ip.is_empty() || ip == "None" {
            continue;
        }
        let name = svc.metadata.name.clone().unwrap_or_default();
        let prefix = name.to_uppercase().replace('-', "_");
        let ports = spec.ports.clone().unwrap_or_default();
        let Some(first) = ports.first() else { continue };
        out.push((format!("{prefix}_SERVICE_HOST"), ip.to_string()));
        out.push((format!("{prefix}_SERVICE_PORT"), first.port.to_string()));
        for p in &ports {
            if let Some(pn) = &p.name {
                out.push((
                    format!(
                        "{prefix}_SERVICE_PORT_{}",
                        pn.to_uppercase().replace('-', "_")
                    ),
                    p.port.to_string(),
                ));
            }
        }
        let proto = |p: &k8s_openapi::api::core::v1::ServicePort| {
            p.protocol.clone().unwrap_or_else(|| "TCP".into())
        };
        out.push((
            format!("{prefix}_PORT"),
            format!("{}://{ip}:{}", proto(first).to_lowercase(), first.port),
        ));
        for p in &ports {
            let pr = proto(p);
            let base = format!("{prefix}_PORT_{}_{}", p.port, pr.to_uppercase());
            out.push((
                base.clone(),
                format!("{}://{ip}:{}", pr.to_lowercase(), p.port),
            ));
            out.push((format!("{base}_PROTO"), pr.to_lowercase()));
            out.push((format!("{base}_PORT"), p.port.to_string()));
            out.push((format!("{base}_ADDR"), ip.to_string()));
        }
    }
    out
}

/// Expand `$(NAME)` references from `lookup`; `$$` is a literal `$`; an
/// unknown or malformed reference stays as written.
pub fn expand(input: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    let chars: Vec<char> = input.chars().collect();
    let mut out = String::with_capacity(input.len());
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '$' && i + 1 < chars.len() {
            match chars[i + 1] {
                '$' => {
                    out.push('$');
                    i += 2;
                    continue;
                }
                '(' => {
                    if let Some(close) = chars[i + 2..].iter().position(|c| *c == ')') {
                        let name: String = chars[i + 2..i + 2 + close].iter().collect();
                        if !name.is_empty()
                            && let Some(v) = lookup(&name)
                        {
                            out.push_str(&v);
                        } else {
                            out.push_str("$(");
                            out.push_str(&name);
                            out.push(')');
                        }
                        i += close + 3;
                        continue;
                    }
                }
                _ => {}
            }
        }
        out.push(chars[i]);
        i += 1;
    }
    out
}

/// Whether `name` is a valid environment variable name (upstream's
/// `IsEnvVarName`: printable, no `=`, not empty).
fn valid_env_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && !name.starts_with(|c: char| c.is_ascii_digit())
}

/// Ordered map: later sets overwrite the value but keep the first position.
#[derive(Default)]
struct EnvList(Vec<(String, String)>);

impl EnvList {
    fn set(&mut self, k: String, v: String) {
        match self.0.iter_mut().find(|(n, _)| *n == k) {
            Some(e) => e.1 = v,
            None => self.0.push((k, v)),
        }
    }
    fn get(&self, k: &str) -> Option<String> {
        self.0.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    }
}

/// The environment of `container` in `pod`.
pub fn container_env(
    pod: &Pod,
    container: &Container,
    src: &EnvSources,
) -> Result<Vec<(String, String)>, EnvError> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let mut env = EnvList::default();
    for ef in container.env_from.iter().flatten() {
        let prefix = ef.prefix.clone().unwrap_or_default();
        if let Some(r) = &ef.config_map_ref {
            match src.config_maps.get(&r.name) {
                Some(cm) => {
                    for (k, v) in cm.data.iter().flatten() {
                        let key = format!("{prefix}{k}");
                        if valid_env_name(&key) {
                            env.set(key, v.clone());
                        }
                    }
                }
                None if r.optional == Some(true) => {}
                None => return Err(EnvError::ConfigMapNotFound(r.name.clone())),
            }
        }
        if let Some(r) = &ef.secret_ref {
            match src.secrets.get(&r.name) {
                Some(s) => {
                    for (k, v) in s.data.iter().flatten() {
                        let key = format!("{prefix}{k}");
                        if valid_env_name(&key) {
                            env.set(key, String::from_utf8_lossy(&v.0).into_owned());
                        }
                    }
                }
                None if r.optional == Some(true) => {}
                None => return Err(EnvError::SecretNotFound(r.name.clone())),
            }
        }
    }
    for e in container.env.iter().flatten() {
        let value = if let Some(vf) = &e.value_from {
            if let Some(f) = &vf.field_ref {
                Some(field_value(pod, &f.field_path, src)?)
            } else if let Some(r) = &vf.resource_field_ref {
                let target = match r.container_name.as_deref() {
                    Some(n) if !n.is_empty() => pod
                        .spec
                        .iter()
                        .flat_map(|s| {
                            s.containers
                                .iter()
                                .chain(s.init_containers.iter().flatten())
                        })
                        .find(|c| c.name == n)
                        .unwrap_or(container),
                    _ => container,
                };
                let divisor = r.divisor.as_ref().map(|q| q.0.as_str());
                Some(resource_value(target, &r.resource, divisor, src)?)
            } else if let Some(r) = &vf.config_map_key_ref {
                let optional = r.optional == Some(true);
                match src.config_maps.get(&r.name) {
                    Some(cm) => match cm.data.as_ref().and_then(|d| d.get(&r.key)) {
                        Some(v) => Some(v.clone()),
                        None if optional => None,
                        None => {
                            return Err(EnvError::ConfigMapKey {
                                key: r.key.clone(),
                                namespace: ns.clone(),
                                name: r.name.clone(),
                            });
                        }
                    },
                    None if optional => None,
                    None => return Err(EnvError::ConfigMapNotFound(r.name.clone())),
                }
            } else if let Some(r) = &vf.secret_key_ref {
                let optional = r.optional == Some(true);
                match src.secrets.get(&r.name) {
                    Some(s) => match s.data.as_ref().and_then(|d| d.get(&r.key)) {
                        Some(v) => Some(String::from_utf8_lossy(&v.0).into_owned()),
                        None if optional => None,
                        None => {
                            return Err(EnvError::SecretKey {
                                key: r.key.clone(),
                                namespace: ns.clone(),
                                name: r.name.clone(),
                            });
                        }
                    },
                    None if optional => None,
                    None => return Err(EnvError::SecretNotFound(r.name.clone())),
                }
            } else {
                None
            }
        } else {
            let raw = e.value.clone().unwrap_or_default();
            let lookup = |n: &str| {
                env.get(n).or_else(|| {
                    src.service_env
                        .iter()
                        .find(|(k, _)| k == n)
                        .map(|(_, v)| v.clone())
                })
            };
            Some(expand(&raw, &lookup))
        };
        if let Some(v) = value {
            env.set(e.name.clone(), v);
        }
    }
    let mut out: Vec<(String, String)> = Vec::new();
    for (k, v) in &src.service_env {
        if env.get(k).is_none() {
            out.push((k.clone(), v.clone()));
        }
    }
    out.extend(env.0);
    Ok(out)
}

/// `metadata.labels['x']` → `Some(("labels", "x"))`.
fn subscript(path: &str) -> Option<(&str, &str)> {
    let (head, rest) = path.split_once("['")?;
    let key = rest.strip_suffix("']")?;
    Some((head, key))
}

/// The value of a downward-API `fieldPath`.
pub fn field_value(pod: &Pod, path: &str, src: &EnvSources) -> Result<String, EnvError> {
    let m = &pod.metadata;
    let spec = pod.spec.as_ref();
    Ok(match path {
        "metadata.name" => m.name.clone().unwrap_or_default(),
        "metadata.namespace" => m.namespace.clone().unwrap_or_default(),
        "metadata.uid" => m.uid.clone().unwrap_or_default(),
        "spec.nodeName" => spec
            .and_then(|s| s.node_name.clone())
            .unwrap_or_else(|| src.node_name.clone()),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.podIP" => src.pod_ips.first().cloned().unwrap_or_default(),
        "status.podIPs" => src.pod_ips.join(","),
        "status.hostIP" => src.host_ips.first().cloned().unwrap_or_default(),
        "status.hostIPs" => src.host_ips.join(","),
        other => match subscript(other) {
            Some(("metadata.labels", k)) => m
                .labels
                .as_ref()
                .and_then(|l| l.get(k).cloned())
                .unwrap_or_default(),
            Some(("metadata.annotations", k)) => m
                .annotations
                .as_ref()
                .and_then(|l| l.get(k).cloned())
                .unwrap_or_default(),
            _ => return Err(EnvError::FieldPath(other.to_string())),
        },
    })
}

/// Value of `limits.cpu`-style resource of `c`, divided by `divisor`
/// (default 1) and rounded up like upstream.
pub fn resource_value(
    c: &Container,
    resource: &str,
    divisor: Option<&str>,
    src: &EnvSources,
) -> Result<String, EnvError> {
    let (list, name) = resource
        .split_once('.')
        .ok_or_else(|| EnvError::Resource(resource.to_string()))?;
    let res = c.resources.as_ref();
    let pick = |l: &str| {
        res.and_then(|r| {
            if l == "limits" {
                r.limits.as_ref()
            } else {
                r.requests.as_ref()
            }
        })
        .and_then(|m| m.get(name))
        .and_then(|q| parse_quantity(&q.0))
    };
    // value in milli-units
    let milli = match (list, name) {
        ("limits" | "requests", "cpu" | "memory" | "ephemeral-storage") => {
            let own = pick(list).or_else(|| {
                if list == "requests" {
                    pick("limits")
                } else {
                    None
                }
            });
            match own {
                Some(q) => q.milli_value(),
                None if list == "limits" && name == "cpu" => src.node_cpu_millis,
                None if list == "limits" && name == "memory" => src.node_memory_bytes * 1000,
                None => 0,
            }
        }
        _ => return Err(EnvError::Resource(resource.to_string())),
    };
    let div_milli = divisor
        .and_then(parse_quantity)
        .map(|q| q.milli_value())
        .filter(|d| *d > 0)
        .unwrap_or(1000);
    let v = (milli + div_milli - 1).div_euclid(div_milli);
    Ok(v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(containers: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u-1",
                          "labels": {"app": "web"}, "annotations": {"a/b": "c"}},
            "spec": {"nodeName": "n1", "serviceAccountName": "sa", "containers": containers}
        }))
        .unwrap()
    }

    fn sources<'a>(cms: &'a [ConfigMap], secrets: &'a [Secret]) -> EnvSources<'a> {
        EnvSources {
            node_name: "n1".into(),
            host_ips: vec!["192.168.1.5".into()],
            pod_ips: vec!["10.42.0.7".into()],
            config_maps: cms
                .iter()
                .map(|c| (c.metadata.name.clone().unwrap(), c))
                .collect(),
            secrets: secrets
                .iter()
                .map(|c| (c.metadata.name.clone().unwrap(), c))
                .collect(),
            service_env: vec![
                ("KUBERNETES_SERVICE_HOST".into(), "10.43.0.1".into()),
                ("KUBERNETES_SERVICE_PORT".into(), "443".into()),
            ],
            node_cpu_millis: 2000,
            node_memory_bytes: 4 << 30,
        }
    }

    fn run(env: serde_json::Value) -> Result<Vec<(String, String)>, EnvError> {
        let p = pod(json!([{"name": "c", "image": "i",
            "resources": {"limits": {"cpu": "500m", "memory": "64Mi"}},
            "env": env,
            "envFrom": [{"configMapRef": {"name": "cm"}, "prefix": "CM_"}]}]));
        let cm: ConfigMap = serde_json::from_value(
            json!({"metadata": {"name": "cm"}, "data": {"k": "v", "bad key": "x"}}),
        )
        .unwrap();
        let s: Secret = serde_json::from_value(
            json!({"metadata": {"name": "s"}, "data": {"pw": "aHVudGVyMg=="}}),
        )
        .unwrap();
        let cms = [cm];
        let secrets = [s];
        let src = sources(&cms, &secrets);
        let c = &p.spec.as_ref().unwrap().containers[0];
        container_env(&p, c, &src)
    }

    fn get(v: &[(String, String)], k: &str) -> Option<String> {
        v.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    }

    #[test]
    fn values_and_references() {
        let cases: Vec<(serde_json::Value, &str, Option<&str>)> = vec![
            (json!([{"name": "A", "value": "x"}]), "A", Some("x")),
            (
                json!([{"name": "A", "value": "1"}, {"name": "B", "value": "$(A)-$(NOPE)-$$(A)"}]),
                "B",
                Some("1-$(NOPE)-$(A)"),
            ),
            (
                json!([{"name": "B", "value": "$(KUBERNETES_SERVICE_HOST)"}]),
                "B",
                Some("10.43.0.1"),
            ),
            (json!([{"name": "B", "value": "$(CM_k)"}]), "B", Some("v")),
            (
                json!([{"name": "N", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]),
                "N",
                Some("p"),
            ),
            (
                json!([{"name": "N", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}]),
                "N",
                Some("ns"),
            ),
            (
                json!([{"name": "N", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}}]),
                "N",
                Some("u-1"),
            ),
            (
                json!([{"name": "N", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}}]),
                "N",
                Some("web"),
            ),
            (
                json!([{"name": "N", "valueFrom": {"fieldRef": {"fieldPath": "metadata.annotations['a/b']"}}}]),
                "N",
                Some("c"),
            ),
            (
                json!([{"name": "N", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}]),
                "N",
                Some("n1"),
            ),
            (
                json!([{"name": "N", "valueFrom": {"fieldRef": {"fieldPath": "spec.serviceAccountName"}}}]),
                "N",
                Some("sa"),
            ),
            (
                json!([{"name": "N", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}]),
                "N",
                Some("10.42.0.7"),
            ),
            (
                json!([{"name": "N", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}}]),
                "N",
                Some("192.168.1.5"),
            ),
            (
                json!([{"name": "N", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu", "divisor": "1m"}}}]),
                "N",
                Some("500"),
            ),
            (
                json!([{"name": "N", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}}]),
                "N",
                Some("1"),
            ),
            (
                json!([{"name": "N", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}}]),
                "N",
                Some("64"),
            ),
            (
                json!([{"name": "N", "valueFrom": {"resourceFieldRef": {"resource": "requests.memory"}}}]),
                "N",
                Some("67108864"),
            ),
            (
                json!([{"name": "N", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "k"}}}]),
                "N",
                Some("v"),
            ),
            (
                json!([{"name": "N", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "zz", "optional": true}}}]),
                "N",
                None,
            ),
            (
                json!([{"name": "N", "valueFrom": {"configMapKeyRef": {"name": "gone", "key": "zz", "optional": true}}}]),
                "N",
                None,
            ),
            (
                json!([{"name": "N", "valueFrom": {"secretKeyRef": {"name": "s", "key": "pw"}}}]),
                "N",
                Some("hunter2"),
            ),
            (json!([]), "CM_k", Some("v")),
            (json!([]), "CM_bad key", None),
            (
                json!([{"name": "KUBERNETES_SERVICE_PORT", "value": "1"}]),
                "KUBERNETES_SERVICE_PORT",
                Some("1"),
            ),
        ];
        for (env, key, want) in cases {
            let got = run(env.clone()).unwrap();
            assert_eq!(get(&got, key).as_deref(), want, "{env}");
        }
    }

    #[test]
    fn missing_references_are_errors() {
        let cases = vec![
            (
                json!([{"name": "N", "valueFrom": {"configMapKeyRef": {"name": "gone", "key": "k"}}}]),
                "configmap \"gone\" not found",
            ),
            (
                json!([{"name": "N", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "zz"}}}]),
                "couldn't find key zz in ConfigMap ns/cm",
            ),
            (
                json!([{"name": "N", "valueFrom": {"secretKeyRef": {"name": "gone", "key": "k"}}}]),
                "secret \"gone\" not found",
            ),
            (
                json!([{"name": "N", "valueFrom": {"secretKeyRef": {"name": "s", "key": "zz"}}}]),
                "couldn't find key zz in Secret ns/s",
            ),
            (
                json!([{"name": "N", "valueFrom": {"fieldRef": {"fieldPath": "spec.bogus"}}}]),
                "unsupported fieldPath: spec.bogus",
            ),
        ];
        for (env, want) in cases {
            assert_eq!(run(env).unwrap_err().to_string(), want);
        }
    }

    #[test]
    fn kubernetes_service_links() {
        let svc: Service = serde_json::from_value(json!({
            "metadata": {"name": "kubernetes"},
            "spec": {"clusterIP": "10.43.0.1", "ports": [{"name": "https", "port": 443, "protocol": "TCP"}]}
        }))
        .unwrap();
        let env = service_env(&[&svc]);
        let get = |k: &str| get(&env, k);
        assert_eq!(get("KUBERNETES_SERVICE_HOST").as_deref(), Some("10.43.0.1"));
        assert_eq!(get("KUBERNETES_SERVICE_PORT").as_deref(), Some("443"));
        assert_eq!(get("KUBERNETES_SERVICE_PORT_HTTPS").as_deref(), Some("443"));
        assert_eq!(
            get("KUBERNETES_PORT").as_deref(),
            Some("tcp://10.43.0.1:443")
        );
        assert_eq!(
            get("KUBERNETES_PORT_443_TCP_ADDR").as_deref(),
            Some("10.43.0.1")
        );
        assert_eq!(get("KUBERNETES_PORT_443_TCP_PROTO").as_deref(), Some("tcp"));
    }
}
