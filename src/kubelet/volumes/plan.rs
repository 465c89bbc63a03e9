//! Pure planning for volumes: which files a configMap, secret, downwardAPI
//! or projected volume holds (relative path, content, mode), the pod's
//! `/etc/hosts`, `subPathExpr` expansion, path checks and the token refresh
//! rule.
//!
//! Invariants: no I/O, no clock (time is a parameter); every relative path
//! a payload holds is checked by [`check_payload_path`] before a writer sees
//! it; messages are the upstream texts that end up in `FailedMount` events.

use std::collections::BTreeMap;
use std::net::IpAddr;

use base64::Engine;
use k8s_openapi::api::core::v1::{
    Container, DownwardAPIVolumeFile, KeyToPath, ObjectFieldSelector, Pod, ResourceFieldSelector,
};

use crate::api::quantity::{Quantity, parse_quantity};

/// Default file mode of configMap, secret, downwardAPI and projected files.
pub const DEFAULT_MODE: u32 = 0o644;

/// One file of an API-data volume.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileProjection {
    pub data: Vec<u8>,
    pub mode: u32,
}

/// Relative path → file. Ordered, so writers and comparisons are stable.
pub type Payload = BTreeMap<String, FileProjection>;

/// Which object a key projection reads; decides the error texts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeySource {
    ConfigMap,
    Secret,
}

/// A mode from the API (`int32`) as permission bits; anything outside
/// 0..=0o777 is refused by validation, masked here to be safe.
pub fn mode_bits(mode: Option<i32>, default: u32) -> u32 {
    match mode {
        Some(m) if m >= 0 => (m as u32) & 0o777,
        _ => default,
    }
}

/// Files for a configMap or secret (whole or `items`). `data` is `None`
/// when the object does not exist.
pub fn project_keys(
    source: KeySource,
    name: &str,
    data: Option<&BTreeMap<String, Vec<u8>>>,
    items: Option<&[KeyToPath]>,
    default_mode: u32,
    optional: bool,
) -> Result<Payload, String> {
    let Some(data) = data else {
        if optional {
            return Ok(Payload::new());
        }
        return Err(match source {
            KeySource::ConfigMap => format!("configmap \"{name}\" not found"),
            KeySource::Secret => format!("secret \"{name}\" not found"),
        });
    };
    let mut out = Payload::new();
    match items {
        None | Some([]) => {
            for (k, v) in data {
                check_payload_path(k)?;
                out.insert(
                    k.clone(),
                    FileProjection {
                        data: v.clone(),
                        mode: default_mode,
                    },
                );
            }
        }
        Some(items) => {
            for item in items {
                let Some(v) = data.get(&item.key) else {
                    if optional {
                        continue;
                    }
                    return Err(match source {
                        KeySource::ConfigMap => {
                            format!("configmap references non-existent config key: {}", item.key)
                        }
                        KeySource::Secret => {
                            format!("references non-existent secret key: {}", item.key)
                        }
                    });
                };
                check_payload_path(&item.path)?;
                out.insert(
                    item.path.clone(),
                    FileProjection {
                        data: v.clone(),
                        mode: mode_bits(item.mode, default_mode),
                    },
                );
            }
        }
    }
    Ok(out)
}

/// A payload path must be relative, must not contain `..` and must not
/// start with `..` (those names are the writer's own bookkeeping).
pub fn check_payload_path(p: &str) -> Result<(), String> {
    if p.is_empty() {
        return Err("invalid path: must not be empty".into());
    }
    if p.starts_with('/') {
        return Err(format!("invalid path {p:?}: must be relative"));
    }
    if p.starts_with("..") {
        return Err(format!("invalid path {p:?}: must not start with '..'"));
    }
    if p.split('/').any(|c| c == ".." || c.is_empty() || c == ".") {
        return Err(format!(
            "invalid path {p:?}: must not contain '..', '.' or empty elements"
        ));
    }
    Ok(())
}

/// Upstream's `%q`-style quoting of a label or annotation value.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `key="value"` lines in key order, no trailing newline (downward API
/// `metadata.labels` / `metadata.annotations` files).
pub fn format_map(m: Option<&BTreeMap<String, String>>) -> String {
    m.map(|m| {
        m.iter()
            .map(|(k, v)| format!("{k}={}", go_quote(v)))
            .collect::<Vec<_>>()
            .join("\n")
    })
    .unwrap_or_default()
}

/// The value of a downward API `fieldRef` for `pod`.
pub fn field_ref_value(pod: &Pod, f: &ObjectFieldSelector) -> Result<String, String> {
    let meta = &pod.metadata;
    let path = f.field_path.as_str();
    let subscript = |prefix: &str| -> Option<String> {
        let rest = path.strip_prefix(prefix)?.strip_prefix("['")?;
        Some(rest.strip_suffix("']")?.to_string())
    };
    let status = pod.status.as_ref();
    let spec = pod.spec.as_ref();
    Ok(match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "metadata.labels" => format_map(meta.labels.as_ref()),
        "metadata.annotations" => format_map(meta.annotations.as_ref()),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.podIP" => status.and_then(|s| s.pod_ip.clone()).unwrap_or_default(),
        "status.hostIP" => status.and_then(|s| s.host_ip.clone()).unwrap_or_default(),
        "status.podIPs" => status
            .and_then(|s| s.pod_ips.as_ref())
            .map(|ips| {
                ips.iter()
                    .map(|i| i.ip.clone())
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default(),
        _ => {
            if let Some(k) = subscript("metadata.labels") {
                meta.labels
                    .as_ref()
                    .and_then(|l| l.get(&k).cloned())
                    .unwrap_or_default()
            } else if let Some(k) = subscript("metadata.annotations") {
                meta.annotations
                    .as_ref()
                    .and_then(|l| l.get(&k).cloned())
                    .unwrap_or_default()
            } else {
                return Err(format!("unsupported fieldPath: {path}"));
            }
        }
    })
}

fn find_container<'a>(pod: &'a Pod, name: &str) -> Option<&'a Container> {
    let spec = pod.spec.as_ref()?;
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .find(|c| c.name == name)
}

/// The value of a `resourceFieldRef`: a limit falls back to the node's
/// allocatable when the container sets none, like upstream; the result is
/// rounded up to whole divisors.
pub fn resource_field_value(
    pod: &Pod,
    default_container: Option<&str>,
    r: &ResourceFieldSelector,
    allocatable: &BTreeMap<String, Quantity>,
) -> Result<String, String> {
    let cname = r
        .container_name
        .as_deref()
        .filter(|c| !c.is_empty())
        .or(default_container)
        .ok_or_else(|| "resourceFieldRef: containerName is required".to_string())?;
    let c =
        find_container(pod, cname).ok_or_else(|| format!("container {cname} not found in pod"))?;
    let (kind, res) = r
        .resource
        .split_once('.')
        .ok_or_else(|| format!("unsupported container resource : {}", r.resource))?;
    let resources = c.resources.as_ref();
    let lookup =
        |m: Option<&BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>| {
            m.and_then(|m| m.get(res))
                .and_then(|q| parse_quantity(&q.0))
        };
    let value: Quantity = match kind {
        "limits" => lookup(resources.and_then(|r| r.limits.as_ref()))
            .or_else(|| allocatable.get(res).copied())
            .ok_or_else(|| format!("node allocatable {res} is unknown"))?,
        "requests" => match lookup(resources.and_then(|r| r.requests.as_ref())) {
            Some(q) => q,
            None => parse_quantity("0").ok_or("bad zero")?,
        },
        _ => return Err(format!("unsupported container resource : {}", r.resource)),
    };
    let divisor = r
        .divisor
        .as_ref()
        .and_then(|d| parse_quantity(&d.0))
        .filter(|d| !d.is_zero() && !d.is_negative());
    let out = match res {
        "cpu" => {
            let d = divisor.map(|d| d.milli_value()).unwrap_or(1000).max(1);
            ceil_div(value.milli_value(), d)
        }
        "memory" | "ephemeral-storage" => {
            let d = divisor
                .map(|d| ceil_div(d.milli_value(), 1000))
                .unwrap_or(1)
                .max(1);
            ceil_div(ceil_div(value.milli_value(), 1000), d)
        }
        other if other.starts_with("hugepages-") => {
            let d = divisor
                .map(|d| ceil_div(d.milli_value(), 1000))
                .unwrap_or(1)
                .max(1);
            ceil_div(ceil_div(value.milli_value(), 1000), d)
        }
        _ => return Err(format!("unsupported container resource : {}", r.resource)),
    };
    Ok(out.to_string())
}

fn ceil_div(a: i128, b: i128) -> i128 {
    if b == 0 {
        return a;
    }
    let q = a / b;
    if (a % b != 0) && ((a > 0) == (b > 0)) {
        q + 1
    } else {
        q
    }
}

/// Whether any item needs the node's allocatable (a limit not set on the
/// container), so the I/O layer fetches the Node only then.
pub fn needs_allocatable(items: &[DownwardAPIVolumeFile]) -> bool {
    items.iter().any(|i| {
        i.resource_field_ref
            .as_ref()
            .is_some_and(|r| r.resource.starts_with("limits."))
    })
}

/// Files for downwardAPI items.
pub fn project_downward(
    pod: &Pod,
    items: &[DownwardAPIVolumeFile],
    default_mode: u32,
    allocatable: &BTreeMap<String, Quantity>,
) -> Result<Payload, String> {
    let mut out = Payload::new();
    for item in items {
        check_payload_path(&item.path)?;
        let value = if let Some(f) = &item.field_ref {
            field_ref_value(pod, f)?
        } else if let Some(r) = &item.resource_field_ref {
            resource_field_value(pod, None, r, allocatable)?
        } else {
            return Err(format!(
                "downwardAPI item {:?} has neither fieldRef nor resourceFieldRef",
                item.path
            ));
        };
        out.insert(
            item.path.clone(),
            FileProjection {
                data: value.into_bytes(),
                mode: mode_bits(item.mode, default_mode),
            },
        );
    }
    Ok(out)
}

/// `$(VAR)` expansion as upstream: `$$` is a literal `$`, an unknown
/// variable stays as written.
pub fn expand_vars(input: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(input.len());
    let bytes = input.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'$' && i + 1 < bytes.len() {
            match bytes[i + 1] {
                b'$' => {
                    out.push('$');
                    i += 2;
                    continue;
                }
                b'(' => {
                    if let Some(end) = input[i + 2..].find(')') {
                        let name = &input[i + 2..i + 2 + end];
                        match vars.get(name) {
                            Some(v) => out.push_str(v),
                            None => out.push_str(&input[i..i + 3 + end]),
                        }
                        i += 3 + end;
                        continue;
                    }
                }
                _ => {}
            }
        }
        // push the whole UTF-8 character starting here
        let ch = input[i..].chars().next().unwrap_or('\u{fffd}');
        out.push(ch);
        i += ch.len_utf8().max(1);
    }
    out
}

/// Variables a `subPathExpr` may use: the container's literal `env` values
/// and its `fieldRef` values (earlier variables expanded in later ones).
pub fn container_env_for_expansion(pod: &Pod, c: &Container) -> BTreeMap<String, String> {
    let mut vars = BTreeMap::new();
    for e in c.env.iter().flatten() {
        if let Some(v) = &e.value {
            let expanded = expand_vars(v, &vars);
            vars.insert(e.name.clone(), expanded);
        } else if let Some(f) = e.value_from.as_ref().and_then(|f| f.field_ref.as_ref())
            && let Ok(v) = field_ref_value(pod, f)
        {
            vars.insert(e.name.clone(), v);
        }
    }
    vars
}

/// A `subPath` (after expansion) must be relative and free of `..`.
pub fn check_sub_path(p: &str) -> Result<(), String> {
    if p.starts_with('/') {
        return Err(format!("subpath {p:?} must be a relative path"));
    }
    if p.split('/').any(|c| c == "..") {
        return Err(format!("subpath {p:?} must not contain '..'"));
    }
    Ok(())
}

const HOSTS_HEADER: &str = "# Kubernetes-managed hosts file.\n";
const HOSTS_DEFAULTS: &str = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n";

/// The pod's `/etc/hosts`: the standard entries, the pod's own name (and
/// `<hostname>.<subdomain>.<ns>.svc.<domain>` when it has a subdomain) on
/// its IP, then `hostAliases`. A hostNetwork pod gets the host's file
/// (`host_hosts`) plus its aliases.
pub fn etc_hosts(
    pod: &Pod,
    pod_ip: Option<IpAddr>,
    cluster_domain: &str,
    host_hosts: Option<&str>,
) -> String {
    let spec = pod.spec.as_ref();
    let mut out = String::new();
    if let Some(host) = host_hosts.filter(|_| spec.and_then(|s| s.host_network) == Some(true)) {
        out.push_str(host);
        if !host.is_empty() && !host.ends_with('\n') {
            out.push('\n');
        }
    } else {
        out.push_str(HOSTS_HEADER);
        out.push_str(HOSTS_DEFAULTS);
        let hostname = spec
            .and_then(|s| s.hostname.clone())
            .filter(|h| !h.is_empty())
            .or_else(|| pod.metadata.name.clone())
            .unwrap_or_default();
        if let Some(ip) = pod_ip
            && !hostname.is_empty()
        {
            let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
            match spec
                .and_then(|s| s.subdomain.as_deref())
                .filter(|s| !s.is_empty())
            {
                Some(sub) => out.push_str(&format!(
                    "{ip}\t{hostname}.{sub}.{ns}.svc.{cluster_domain}\t{hostname}\n"
                )),
                None => out.push_str(&format!("{ip}\t{hostname}\n")),
            }
        }
    }
    let aliases = spec.and_then(|s| s.host_aliases.as_ref());
    if let Some(aliases) = aliases.filter(|a| !a.is_empty()) {
        out.push_str("\n# Entries added by HostAliases.\n");
        for a in aliases {
            let names = a.hostnames.clone().unwrap_or_default();
            if names.is_empty() {
                continue;
            }
            out.push_str(&format!("{}\t{}\n", a.ip, names.join("\t")));
        }
    }
    out
}

/// Issue time and expiry (unix seconds) of a JWT, read without verifying
/// it (it is a token this kubelet received from the API server).
pub fn jwt_times(token: &str) -> Option<(i64, i64)> {
    let payload = token.split('.').nth(1)?;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&raw).ok()?;
    let exp = v.get("exp")?.as_i64()?;
    let iat = v
        .get("iat")
        .and_then(|x| x.as_i64())
        .or_else(|| v.get("nbf").and_then(|x| x.as_i64()))?;
    Some((iat, exp))
}

/// A token is renewed once 80% of its lifetime has passed, or after 24h,
/// as upstream's token manager does; an unreadable token is renewed.
pub fn token_needs_refresh(existing: Option<&str>, now: i64) -> bool {
    let Some((iat, exp)) = existing.and_then(jwt_times) else {
        return true;
    };
    if exp <= iat {
        return true;
    }
    let ttl = exp - iat;
    now >= iat + ttl * 8 / 10 || now >= iat + 24 * 3600
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        EnvVar, EnvVarSource, HostAlias, PodSpec, ResourceRequirements,
    };
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity as Q;

    fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect()
    }

    fn item(key: &str, path: &str, mode: Option<i32>) -> KeyToPath {
        KeyToPath {
            key: key.into(),
            path: path.into(),
            mode,
        }
    }

    #[test]
    fn key_projection_table() {
        let d = data(&[("a", "1"), ("b", "2")]);
        struct Case {
            name: &'static str,
            source: KeySource,
            data: Option<BTreeMap<String, Vec<u8>>>,
            items: Option<Vec<KeyToPath>>,
            optional: bool,
            want: Result<Vec<(&'static str, &'static str, u32)>, &'static str>,
        }
        let cases = vec![
            Case {
                name: "all keys with the default mode",
                source: KeySource::ConfigMap,
                data: Some(d.clone()),
                items: None,
                optional: false,
                want: Ok(vec![("a", "1", 0o644), ("b", "2", 0o644)]),
            },
            Case {
                name: "items choose keys, paths and modes",
                source: KeySource::Secret,
                data: Some(d.clone()),
                items: Some(vec![item("b", "dir/bee", Some(0o400))]),
                optional: false,
                want: Ok(vec![("dir/bee", "2", 0o400)]),
            },
            Case {
                name: "missing configmap",
                source: KeySource::ConfigMap,
                data: None,
                items: None,
                optional: false,
                want: Err("configmap \"obj\" not found"),
            },
            Case {
                name: "missing secret",
                source: KeySource::Secret,
                data: None,
                items: None,
                optional: false,
                want: Err("secret \"obj\" not found"),
            },
            Case {
                name: "missing optional object is empty",
                source: KeySource::Secret,
                data: None,
                items: None,
                optional: true,
                want: Ok(vec![]),
            },
            Case {
                name: "missing configmap key",
                source: KeySource::ConfigMap,
                data: Some(d.clone()),
                items: Some(vec![item("zz", "z", None)]),
                optional: false,
                want: Err("configmap references non-existent config key: zz"),
            },
            Case {
                name: "missing secret key",
                source: KeySource::Secret,
                data: Some(d.clone()),
                items: Some(vec![item("zz", "z", None)]),
                optional: false,
                want: Err("references non-existent secret key: zz"),
            },
            Case {
                name: "missing key of optional object is skipped",
                source: KeySource::Secret,
                data: Some(d.clone()),
                items: Some(vec![item("zz", "z", None), item("a", "x", None)]),
                optional: true,
                want: Ok(vec![("x", "1", 0o644)]),
            },
            Case {
                name: "escaping item path",
                source: KeySource::ConfigMap,
                data: Some(d.clone()),
                items: Some(vec![item("a", "../etc/passwd", None)]),
                optional: false,
                want: Err("invalid path \"../etc/passwd\": must not start with '..'"),
            },
        ];
        for c in cases {
            let got = project_keys(
                c.source,
                "obj",
                c.data.as_ref(),
                c.items.as_deref(),
                DEFAULT_MODE,
                c.optional,
            );
            let want = c.want.map(|v| {
                v.into_iter()
                    .map(|(p, d, m)| {
                        (
                            p.to_string(),
                            FileProjection {
                                data: d.as_bytes().to_vec(),
                                mode: m,
                            },
                        )
                    })
                    .collect::<Payload>()
            });
            assert_eq!(got, want.map_err(String::from), "{}", c.name);
        }
    }

    #[test]
    fn payload_paths() {
        for ok in ["a", "a/b", "a.b", ".hidden", "x/.y"] {
            assert!(check_payload_path(ok).is_ok(), "{ok}");
        }
        for bad in ["", "/a", "..a", "a/../b", "a//b", "./a", "a/."] {
            assert!(check_payload_path(bad).is_err(), "{bad}");
        }
    }

    fn pod() -> Pod {
        let mut p = Pod::default();
        p.metadata.name = Some("web-0".into());
        p.metadata.namespace = Some("prod".into());
        p.metadata.uid = Some("u-1".into());
        p.metadata.labels = Some(
            [("app", "web"), ("tier", "a \"b\"\n")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        let mut limits = BTreeMap::new();
        limits.insert("cpu".to_string(), Q("250m".into()));
        limits.insert("memory".to_string(), Q("64Mi".into()));
        p.spec = Some(PodSpec {
            containers: vec![Container {
                name: "app".into(),
                resources: Some(ResourceRequirements {
                    limits: Some(limits),
                    ..Default::default()
                }),
                env: Some(vec![
                    EnvVar {
                        name: "A".into(),
                        value: Some("x".into()),
                        ..Default::default()
                    },
                    EnvVar {
                        name: "B".into(),
                        value: Some("$(A)-y".into()),
                        ..Default::default()
                    },
                    EnvVar {
                        name: "POD".into(),
                        value_from: Some(EnvVarSource {
                            field_ref: Some(ObjectFieldSelector {
                                field_path: "metadata.name".into(),
                                ..Default::default()
                            }),
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                ]),
                ..Default::default()
            }],
            ..Default::default()
        });
        p
    }

    fn fref(path: &str) -> ObjectFieldSelector {
        ObjectFieldSelector {
            field_path: path.into(),
            ..Default::default()
        }
    }

    #[test]
    fn field_refs() {
        let p = pod();
        let cases = [
            ("metadata.name", Ok("web-0")),
            ("metadata.namespace", Ok("prod")),
            ("metadata.uid", Ok("u-1")),
            (
                "metadata.labels",
                Ok("app=\"web\"\ntier=\"a \\\"b\\\"\\n\""),
            ),
            ("metadata.annotations", Ok("")),
            ("metadata.labels['app']", Ok("web")),
            ("spec.bogus", Err("unsupported fieldPath: spec.bogus")),
        ];
        for (path, want) in cases {
            assert_eq!(
                field_ref_value(&p, &fref(path)),
                want.map(String::from).map_err(String::from),
                "{path}"
            );
        }
    }

    #[test]
    fn resource_fields() {
        let p = pod();
        let mut alloc = BTreeMap::new();
        alloc.insert(
            "ephemeral-storage".to_string(),
            parse_quantity("10Gi").unwrap(),
        );
        let cases = [
            ("limits.cpu", None, Ok("1")),
            ("limits.cpu", Some("1m"), Ok("250")),
            ("limits.memory", None, Ok("67108864")),
            ("limits.memory", Some("1Mi"), Ok("64")),
            ("limits.memory", Some("0"), Ok("67108864")),
            ("limits.ephemeral-storage", Some("1Gi"), Ok("10")),
            ("requests.cpu", None, Ok("0")),
            ("bogus", None, Err("unsupported container resource : bogus")),
        ];
        for (res, div, want) in cases {
            let sel = ResourceFieldSelector {
                container_name: Some("app".into()),
                resource: res.into(),
                divisor: div.map(|d| Q(d.into())),
            };
            assert_eq!(
                resource_field_value(&p, None, &sel, &alloc),
                want.map(String::from).map_err(String::from),
                "{res} / {div:?}"
            );
        }
        let sel = ResourceFieldSelector {
            container_name: Some("nope".into()),
            resource: "limits.cpu".into(),
            divisor: None,
        };
        assert!(resource_field_value(&p, None, &sel, &alloc).is_err());
    }

    #[test]
    fn downward_payload_modes() {
        let p = pod();
        let items = vec![
            DownwardAPIVolumeFile {
                path: "name".into(),
                field_ref: Some(fref("metadata.name")),
                ..Default::default()
            },
            DownwardAPIVolumeFile {
                path: "ns".into(),
                field_ref: Some(fref("metadata.namespace")),
                mode: Some(0o600),
                ..Default::default()
            },
        ];
        let got = project_downward(&p, &items, 0o444, &BTreeMap::new()).unwrap();
        assert_eq!(got["name"].data, b"web-0");
        assert_eq!(got["name"].mode, 0o444);
        assert_eq!(got["ns"].mode, 0o600);
        assert!(!needs_allocatable(&items));
    }

    #[test]
    fn var_expansion_table() {
        let p = pod();
        let vars = container_env_for_expansion(&p, &p.spec.as_ref().unwrap().containers[0]);
        let cases = [
            ("$(POD)/logs", "web-0/logs"),
            ("$(B)", "x-y"),
            ("$$(POD)", "$(POD)"),
            ("$(MISSING)/a", "$(MISSING)/a"),
            ("plain", "plain"),
            ("$(unterminated", "$(unterminated"),
            ("ü$(A)", "üx"),
            ("trailing$", "trailing$"),
        ];
        for (input, want) in cases {
            assert_eq!(expand_vars(input, &vars), want, "{input}");
        }
    }

    #[test]
    fn sub_paths() {
        assert!(check_sub_path("a/b").is_ok());
        assert!(check_sub_path("").is_ok());
        assert!(check_sub_path("/a").is_err());
        assert!(check_sub_path("a/../../b").is_err());
    }

    #[test]
    fn hosts_files() {
        let mut p = pod();
        let ip: IpAddr = "10.42.0.5".parse().unwrap();
        let plain = etc_hosts(&p, Some(ip), "cluster.local", None);
        assert!(plain.starts_with("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n"));
        assert!(plain.ends_with("fe00::2\tip6-allrouters\n10.42.0.5\tweb-0\n"));
        let spec = p.spec.as_mut().unwrap();
        spec.hostname = Some("web-0".into());
        spec.subdomain = Some("web".into());
        spec.host_aliases = Some(vec![HostAlias {
            ip: "1.2.3.4".into(),
            hostnames: Some(vec!["foo".into(), "bar".into()]),
        }]);
        let full = etc_hosts(&p, Some(ip), "cluster.local", None);
        assert!(full.contains("10.42.0.5\tweb-0.web.prod.svc.cluster.local\tweb-0\n"));
        assert!(full.ends_with("\n# Entries added by HostAliases.\n1.2.3.4\tfoo\tbar\n"));
        p.spec.as_mut().unwrap().host_network = Some(true);
        let host = etc_hosts(&p, Some(ip), "cluster.local", Some("127.0.0.1 localhost"));
        assert!(host.starts_with("127.0.0.1 localhost\n\n# Entries added by HostAliases.\n"));
    }

    fn jwt(iat: i64, exp: i64) -> String {
        let b = |v: serde_json::Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
        };
        format!(
            "{}.{}.sig",
            b(serde_json::json!({"alg": "ES256"})),
            b(serde_json::json!({"iat": iat, "exp": exp}))
        )
    }

    #[test]
    fn token_refresh_rule() {
        let t = jwt(1000, 1000 + 3607);
        let cases = [
            (None, 0, true),
            (Some("garbage"), 0, true),
            (Some(t.as_str()), 1000, false),
            (Some(t.as_str()), 1000 + 2884, false),
            (Some(t.as_str()), 1000 + 2886, true),
        ];
        for (tok, now, want) in cases {
            assert_eq!(token_needs_refresh(tok, now), want, "{tok:?} at {now}");
        }
        let long = jwt(0, 10 * 24 * 3600);
        assert!(!token_needs_refresh(Some(&long), 23 * 3600));
        assert!(token_needs_refresh(Some(&long), 24 * 3600));
    }
}
