//! Pure rules of the Node authorizer and the NodeRestriction admission
//! (upstream semantics, simplified): what a kubelet identity
//! `system:node:<name>` (group `system:nodes`) may do, and the upstream-shaped
//! `Forbidden` texts. No I/O: checks that need stored objects are returned
//! as [`Check`] values the shell resolves with [`pod_refs`],
//! [`mirror_pod_violation`] and [`restricted_label_change`].
//!
//! Invariants: anything not listed is denied; a node never writes another
//! node's Node, Lease, pods or pod status; reads of secrets, configmaps,
//! PVCs, PVs and service-account tokens are allowed only through a pod bound
//! to the node.

use std::collections::BTreeSet;

use serde_json::Value;

/// Upstream's node user prefix and group.
pub const NODE_USER_PREFIX: &str = "system:node:";
pub const NODES_GROUP: &str = "system:nodes";
/// Namespace of node heartbeat Leases.
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";
/// Annotation marking a mirror pod (the API copy of a static pod).
pub const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";
/// Label prefix only administrators may set on Nodes.
pub const RESTRICTED_LABEL_DOMAIN: &str = "node-restriction.kubernetes.io";

/// Who is asking, as far as node authorization cares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeIdentity {
    /// Not a node (or also an administrator): node rules do not apply.
    NotANode,
    Node(String),
    /// In `system:nodes` without a `system:node:<name>` user name.
    Unknown,
}

pub fn node_identity(user: &str, groups: &[String]) -> NodeIdentity {
    if !groups.iter().any(|g| g == NODES_GROUP) || groups.iter().any(|g| g == "system:masters") {
        return NodeIdentity::NotANode;
    }
    match user.strip_prefix(NODE_USER_PREFIX) {
        Some(n) if !n.is_empty() => NodeIdentity::Node(n.to_string()),
        _ => NodeIdentity::Unknown,
    }
}

/// One resource request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attrs {
    pub verb: String,
    pub group: String,
    pub resource: String,
    pub sub: Option<String>,
    pub namespace: Option<String>,
    pub name: Option<String>,
}

/// The verb upstream derives from an HTTP method.
pub fn verb(method: &str, has_name: bool, watch: bool) -> &'static str {
    match (method, has_name) {
        ("GET" | "HEAD", true) => "get",
        ("GET" | "HEAD", false) if watch => "watch",
        ("GET" | "HEAD", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => "unknown",
    }
}

/// A referenced object kind the graph check resolves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefKind {
    Secret,
    ConfigMap,
    Claim,
    Volume,
    ServiceAccount,
}

/// What the shell must still check before the request may go on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Check {
    Allow,
    /// Denied; the reason ends the upstream message (may be empty).
    Deny(String),
    /// The pod named in the path must be bound to this node (a missing pod
    /// passes: the handler answers 404).
    PodBoundHere,
    /// Some pod bound to this node must reference the named object.
    Referenced(RefKind),
    /// Create of a pod: only a mirror pod of this node.
    MirrorPod,
    /// Create of a Node: the body's name must be this node, no restricted labels.
    CreateOwnNode,
    /// Update/patch of this node's own Node: no change to restricted labels.
    OwnNodeLabels,
    /// Create of a Lease in `kube-node-lease`: the body's name must be this node.
    CreateOwnLease,
}

fn one_of(v: &str, verbs: &[&str]) -> bool {
    verbs.contains(&v)
}

/// The first decision for `a` by node `node`.
pub fn decide(node: &str, a: &Attrs) -> Check {
    let v = a.verb.as_str();
    let name = a.name.as_deref();
    let read = ["get", "list", "watch"];
    match (a.group.as_str(), a.resource.as_str(), a.sub.as_deref()) {
        ("", "nodes", None) if one_of(v, &read) => Check::Allow,
        ("", "nodes", None) if v == "create" => Check::CreateOwnNode,
        ("", "nodes", sub @ (None | Some("status"))) if one_of(v, &["update", "patch"]) => {
            match name {
                Some(n) if n == node => {
                    if sub.is_none() {
                        Check::OwnNodeLabels
                    } else {
                        Check::Allow
                    }
                }
                Some(n) => Check::Deny(format!("node '{node}' cannot modify node '{n}'")),
                None => Check::Deny(String::new()),
            }
        }
        // every Node is readable, so is its status (`kubectl patch --subresource` reads first)
        ("", "nodes", Some("status")) if v == "get" => Check::Allow,
        ("", "pods", None) if one_of(v, &read) => Check::Allow,
        ("", "pods", None) if v == "create" => Check::MirrorPod,
        ("", "pods", None) if v == "delete" => Check::PodBoundHere,
        // pods are readable everywhere, so is their status
        ("", "pods", Some("status")) if v == "get" => Check::Allow,
        ("", "pods", Some("status")) if one_of(v, &["update", "patch"]) => Check::PodBoundHere,
        ("", "pods", Some("eviction")) if v == "create" => Check::PodBoundHere,
        ("", "services" | "endpoints", None) | ("discovery.k8s.io", "endpointslices", None)
            if one_of(v, &read) =>
        {
            Check::Allow
        }
        ("", "events", None) | ("events.k8s.io", "events", None)
            if one_of(v, &["create", "update", "patch"]) =>
        {
            Check::Allow
        }
        ("coordination.k8s.io", "leases", None)
            if a.namespace.as_deref() == Some(NODE_LEASE_NAMESPACE) =>
        {
            match (v, name) {
                ("create", _) => Check::CreateOwnLease,
                ("get" | "update" | "patch" | "delete", Some(n)) if n == node => Check::Allow,
                ("get" | "update" | "patch" | "delete", Some(n)) => Check::Deny(format!(
                    "node '{node}' cannot access the lease of node '{n}'"
                )),
                _ => Check::Deny(String::new()),
            }
        }
        ("", "secrets", None) if v == "get" => Check::Referenced(RefKind::Secret),
        ("", "configmaps", None) if v == "get" => Check::Referenced(RefKind::ConfigMap),
        ("", "persistentvolumeclaims", None) if v == "get" => Check::Referenced(RefKind::Claim),
        ("", "persistentvolumes", None) if v == "get" => Check::Referenced(RefKind::Volume),
        ("", "serviceaccounts", Some("token")) if v == "create" => {
            Check::Referenced(RefKind::ServiceAccount)
        }
        ("authentication.k8s.io", "tokenreviews" | "selfsubjectreviews", None)
        | (
            "authorization.k8s.io",
            "subjectaccessreviews"
            | "localsubjectaccessreviews"
            | "selfsubjectaccessreviews"
            | "selfsubjectrulesreviews",
            None,
        ) if v == "create" => Check::Allow,
        ("certificates.k8s.io", "certificatesigningrequests", None)
            if one_of(v, &["create", "get", "list", "watch"]) =>
        {
            Check::Allow
        }
        ("node.k8s.io", "runtimeclasses", None) | ("storage.k8s.io", "csidrivers", None)
            if one_of(v, &read) =>
        {
            Check::Allow
        }
        _ => Check::Deny(String::new()),
    }
}

/// The reason for a graph denial, as upstream words it.
pub fn no_relationship(node: &str) -> String {
    format!("no relationship found between node '{node}' and this object")
}

/// Upstream's `Forbidden` message for a denied request:
/// `<resource>[.<group>] ["<name>"] is forbidden: User "<user>" cannot <verb>
/// resource "<resource>[/<sub>]" in API group "<group>" (in the namespace
/// "<ns>" | at the cluster scope)[: <reason>]`.
pub fn forbidden_message(user: &str, a: &Attrs, name: Option<&str>, reason: &str) -> String {
    let qualified = if a.group.is_empty() {
        a.resource.clone()
    } else {
        format!("{}.{}", a.resource, a.group)
    };
    let resource = match &a.sub {
        Some(s) => format!("{}/{s}", a.resource),
        None => a.resource.clone(),
    };
    let scope = match &a.namespace {
        Some(ns) => format!("in the namespace \"{ns}\""),
        None => "at the cluster scope".to_string(),
    };
    let mut m = match name.filter(|n| !n.is_empty()) {
        Some(n) => format!("{qualified} \"{n}\" is forbidden: "),
        None => format!("{qualified} is forbidden: "),
    };
    m.push_str(&format!(
        "User \"{user}\" cannot {} resource \"{resource}\" in API group \"{}\" {scope}",
        a.verb, a.group
    ));
    if !reason.is_empty() {
        m.push_str(": ");
        m.push_str(reason);
    }
    m
}

/// What a pod references (names in the pod's namespace).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodRefs {
    pub secrets: BTreeSet<String>,
    pub configmaps: BTreeSet<String>,
    pub claims: BTreeSet<String>,
    /// `spec.serviceAccountName` (defaulted to `default`).
    pub service_account: String,
}

fn str_at<'a>(v: &'a Value, ptr: &str) -> Option<&'a str> {
    v.pointer(ptr)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

fn arr<'a>(v: &'a Value, ptr: &str) -> impl Iterator<Item = &'a Value> {
    v.pointer(ptr)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

/// Everything a pod spec references: volumes (secret, configMap, projected,
/// PVC, generic ephemeral, CSI/flex/other `secretRef`s), env and envFrom of
/// every container kind, image pull secrets, the service account.
pub fn pod_refs(pod: &Value) -> PodRefs {
    let mut r = PodRefs {
        service_account: str_at(pod, "/spec/serviceAccountName")
            .or_else(|| str_at(pod, "/spec/serviceAccount"))
            .unwrap_or("default")
            .to_string(),
        ..Default::default()
    };
    let pod_name = str_at(pod, "/metadata/name").unwrap_or_default();
    for s in arr(pod, "/spec/imagePullSecrets") {
        if let Some(n) = str_at(s, "/name") {
            r.secrets.insert(n.into());
        }
    }
    for vol in arr(pod, "/spec/volumes") {
        if let Some(n) = str_at(vol, "/secret/secretName") {
            r.secrets.insert(n.into());
        }
        if let Some(n) = str_at(vol, "/configMap/name") {
            r.configmaps.insert(n.into());
        }
        if let Some(n) = str_at(vol, "/persistentVolumeClaim/claimName") {
            r.claims.insert(n.into());
        }
        if vol.pointer("/ephemeral").is_some()
            && let Some(v) = str_at(vol, "/name")
        {
            r.claims.insert(format!("{pod_name}-{v}"));
        }
        for src in arr(vol, "/projected/sources") {
            if let Some(n) = str_at(src, "/secret/name") {
                r.secrets.insert(n.into());
            }
            if let Some(n) = str_at(src, "/configMap/name") {
                r.configmaps.insert(n.into());
            }
        }
        // csi.nodePublishSecretRef, flexVolume/cephfs/rbd/… secretRef
        if let Some(obj) = vol.as_object() {
            for plugin in obj.values() {
                for key in ["/secretRef/name", "/nodePublishSecretRef/name"] {
                    if let Some(n) = str_at(plugin, key) {
                        r.secrets.insert(n.into());
                    }
                }
            }
        }
    }
    for kind in ["containers", "initContainers", "ephemeralContainers"] {
        for c in arr(pod, &format!("/spec/{kind}")) {
            for e in arr(c, "/envFrom") {
                if let Some(n) = str_at(e, "/secretRef/name") {
                    r.secrets.insert(n.into());
                }
                if let Some(n) = str_at(e, "/configMapRef/name") {
                    r.configmaps.insert(n.into());
                }
            }
            for e in arr(c, "/env") {
                if let Some(n) = str_at(e, "/valueFrom/secretKeyRef/name") {
                    r.secrets.insert(n.into());
                }
                if let Some(n) = str_at(e, "/valueFrom/configMapKeyRef/name") {
                    r.configmaps.insert(n.into());
                }
            }
        }
    }
    r
}

/// Why node `node` may not create `pod` (NodeRestriction), if it may not.
pub fn mirror_pod_violation(node: &str, pod: &Value) -> Option<String> {
    let annotated = pod
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
        .is_some_and(|a| a.contains_key(MIRROR_ANNOTATION));
    if !annotated {
        return Some(format!(
            "pod does not have \"{MIRROR_ANNOTATION}\" annotation, node '{node}' can only create mirror pods"
        ));
    }
    if str_at(pod, "/spec/nodeName") != Some(node) {
        return Some(format!(
            "node '{node}' can only create pods with spec.nodeName set to itself"
        ));
    }
    let refs = pod_refs(pod);
    if refs.service_account != "default" {
        return Some(format!(
            "node '{node}' can not create pods that reference a service account"
        ));
    }
    for (what, set) in [
        ("secrets", &refs.secrets),
        ("configmaps", &refs.configmaps),
        ("persistentvolumeclaims", &refs.claims),
    ] {
        if !set.is_empty() {
            return Some(format!(
                "node '{node}' can not create pods that reference {what}"
            ));
        }
    }
    for o in arr(pod, "/metadata/ownerReferences") {
        let is_own_node = str_at(o, "/kind") == Some("Node")
            && str_at(o, "/apiVersion") == Some("v1")
            && str_at(o, "/name") == Some(node);
        if !is_own_node {
            return Some(format!(
                "node '{node}' can only create pods with an owner reference set to itself"
            ));
        }
    }
    None
}

fn is_restricted_label(key: &str) -> bool {
    let Some((prefix, _)) = key.split_once('/') else {
        return false;
    };
    prefix == RESTRICTED_LABEL_DOMAIN || prefix.ends_with(&format!(".{RESTRICTED_LABEL_DOMAIN}"))
}

fn restricted(labels: Option<&Value>) -> Vec<(String, Value)> {
    let mut out: Vec<(String, Value)> = labels
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter(|(k, _)| is_restricted_label(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Why a node may not turn labels `old` into `new` (`None` = allowed):
/// labels under `node-restriction.kubernetes.io/` are for administrators.
pub fn restricted_label_change(
    node: &str,
    old: Option<&Value>,
    new: Option<&Value>,
) -> Option<String> {
    let (o, n) = (restricted(old), restricted(new));
    if o == n {
        return None;
    }
    let changed: BTreeSet<&str> = o
        .iter()
        .filter(|x| !n.contains(x))
        .chain(n.iter().filter(|x| !o.contains(x)))
        .map(|(k, _)| k.as_str())
        .collect();
    Some(format!(
        "node '{node}' cannot set or remove labels under {RESTRICTED_LABEL_DOMAIN}/: {}",
        changed.into_iter().collect::<Vec<_>>().join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn attrs(
        verb: &str,
        group: &str,
        resource: &str,
        sub: Option<&str>,
        ns: Option<&str>,
        name: Option<&str>,
    ) -> Attrs {
        Attrs {
            verb: verb.into(),
            group: group.into(),
            resource: resource.into(),
            sub: sub.map(String::from),
            namespace: ns.map(String::from),
            name: name.map(String::from),
        }
    }

    #[test]
    fn identities() {
        let g = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            node_identity("system:node:a", &g(&["system:nodes"])),
            NodeIdentity::Node("a".into())
        );
        assert_eq!(
            node_identity("system:node:a", &g(&["system:authenticated"])),
            NodeIdentity::NotANode
        );
        assert_eq!(
            node_identity("bob", &g(&["system:nodes"])),
            NodeIdentity::Unknown
        );
        assert_eq!(
            node_identity("system:node:", &g(&["system:nodes"])),
            NodeIdentity::Unknown
        );
        assert_eq!(
            node_identity("system:node:a", &g(&["system:nodes", "system:masters"])),
            NodeIdentity::NotANode
        );
    }

    #[test]
    fn verbs() {
        for (m, named, watch, want) in [
            ("GET", true, false, "get"),
            ("GET", false, false, "list"),
            ("GET", false, true, "watch"),
            ("POST", false, false, "create"),
            ("POST", true, false, "create"),
            ("PUT", true, false, "update"),
            ("PATCH", true, false, "patch"),
            ("DELETE", true, false, "delete"),
            ("DELETE", false, false, "deletecollection"),
        ] {
            assert_eq!(verb(m, named, watch), want, "{m} {named} {watch}");
        }
    }

    #[test]
    fn decisions() {
        use Check::*;
        let deny = || Deny(String::new());
        let ns = Some("default");
        let lns = Some(NODE_LEASE_NAMESPACE);
        for (a, want) in [
            // nodes
            (attrs("list", "", "nodes", None, None, None), Allow),
            (attrs("watch", "", "nodes", None, None, None), Allow),
            (attrs("get", "", "nodes", None, None, Some("b")), Allow),
            (
                attrs("create", "", "nodes", None, None, None),
                CreateOwnNode,
            ),
            (
                attrs("patch", "", "nodes", None, None, Some("a")),
                OwnNodeLabels,
            ),
            (
                attrs("update", "", "nodes", None, None, Some("a")),
                OwnNodeLabels,
            ),
            (
                attrs("patch", "", "nodes", Some("status"), None, Some("a")),
                Allow,
            ),
            (
                attrs("patch", "", "nodes", None, None, Some("b")),
                Deny("node 'a' cannot modify node 'b'".into()),
            ),
            (
                attrs("update", "", "nodes", Some("status"), None, Some("b")),
                Deny("node 'a' cannot modify node 'b'".into()),
            ),
            (
                attrs("get", "", "nodes", Some("status"), None, Some("b")),
                Allow,
            ),
            (attrs("delete", "", "nodes", None, None, Some("a")), deny()),
            (
                attrs("get", "", "nodes", Some("proxy"), None, Some("a")),
                deny(),
            ),
            // pods
            (attrs("list", "", "pods", None, None, None), Allow),
            (attrs("watch", "", "pods", None, ns, None), Allow),
            (attrs("get", "", "pods", None, ns, Some("p")), Allow),
            (attrs("create", "", "pods", None, ns, None), MirrorPod),
            (
                attrs("delete", "", "pods", None, ns, Some("p")),
                PodBoundHere,
            ),
            (
                attrs("deletecollection", "", "pods", None, ns, None),
                deny(),
            ),
            (attrs("update", "", "pods", None, ns, Some("p")), deny()),
            (
                attrs("patch", "", "pods", Some("status"), ns, Some("p")),
                PodBoundHere,
            ),
            (
                attrs("get", "", "pods", Some("status"), ns, Some("p")),
                Allow,
            ),
            (
                attrs("create", "", "pods", Some("eviction"), ns, Some("p")),
                PodBoundHere,
            ),
            (attrs("get", "", "pods", Some("log"), ns, Some("p")), deny()),
            (
                attrs("create", "", "pods", Some("exec"), ns, Some("p")),
                deny(),
            ),
            // leases
            (
                attrs("get", "coordination.k8s.io", "leases", None, lns, Some("a")),
                Allow,
            ),
            (
                attrs(
                    "update",
                    "coordination.k8s.io",
                    "leases",
                    None,
                    lns,
                    Some("a"),
                ),
                Allow,
            ),
            (
                attrs("create", "coordination.k8s.io", "leases", None, lns, None),
                CreateOwnLease,
            ),
            (
                attrs(
                    "update",
                    "coordination.k8s.io",
                    "leases",
                    None,
                    lns,
                    Some("b"),
                ),
                Deny("node 'a' cannot access the lease of node 'b'".into()),
            ),
            (
                attrs("list", "coordination.k8s.io", "leases", None, lns, None),
                deny(),
            ),
            (
                attrs(
                    "get",
                    "coordination.k8s.io",
                    "leases",
                    None,
                    Some("kube-system"),
                    Some("a"),
                ),
                deny(),
            ),
            // referenced objects
            (
                attrs("get", "", "secrets", None, ns, Some("s")),
                Referenced(RefKind::Secret),
            ),
            (attrs("list", "", "secrets", None, ns, None), deny()),
            (attrs("update", "", "secrets", None, ns, Some("s")), deny()),
            (
                attrs("get", "", "configmaps", None, ns, Some("c")),
                Referenced(RefKind::ConfigMap),
            ),
            (
                attrs("get", "", "persistentvolumeclaims", None, ns, Some("c")),
                Referenced(RefKind::Claim),
            ),
            (
                attrs("get", "", "persistentvolumes", None, None, Some("v")),
                Referenced(RefKind::Volume),
            ),
            (
                attrs(
                    "create",
                    "",
                    "serviceaccounts",
                    Some("token"),
                    ns,
                    Some("default"),
                ),
                Referenced(RefKind::ServiceAccount),
            ),
            (
                attrs("get", "", "serviceaccounts", None, ns, Some("default")),
                deny(),
            ),
            // the rest
            (attrs("watch", "", "services", None, None, None), Allow),
            (attrs("list", "", "endpoints", None, ns, None), Allow),
            (
                attrs(
                    "list",
                    "discovery.k8s.io",
                    "endpointslices",
                    None,
                    None,
                    None,
                ),
                Allow,
            ),
            (attrs("create", "", "services", None, ns, None), deny()),
            (attrs("create", "", "events", None, ns, None), Allow),
            (
                attrs("patch", "events.k8s.io", "events", None, ns, Some("e")),
                Allow,
            ),
            (attrs("delete", "", "events", None, ns, Some("e")), deny()),
            (
                attrs(
                    "create",
                    "authentication.k8s.io",
                    "tokenreviews",
                    None,
                    None,
                    None,
                ),
                Allow,
            ),
            (
                attrs(
                    "create",
                    "authorization.k8s.io",
                    "subjectaccessreviews",
                    None,
                    None,
                    None,
                ),
                Allow,
            ),
            (
                attrs(
                    "create",
                    "certificates.k8s.io",
                    "certificatesigningrequests",
                    None,
                    None,
                    None,
                ),
                Allow,
            ),
            (attrs("list", "", "namespaces", None, None, None), deny()),
            (
                attrs("create", "apps", "deployments", None, ns, None),
                deny(),
            ),
            (
                attrs(
                    "list",
                    "rbac.authorization.k8s.io",
                    "clusterroles",
                    None,
                    None,
                    None,
                ),
                deny(),
            ),
        ] {
            assert_eq!(decide("a", &a), want, "{a:?}");
        }
    }

    #[test]
    fn messages_read_like_upstream() {
        let a = attrs("patch", "", "nodes", None, None, Some("x"));
        assert_eq!(
            forbidden_message(
                "system:node:y",
                &a,
                Some("x"),
                "node 'y' cannot modify node 'x'"
            ),
            "nodes \"x\" is forbidden: User \"system:node:y\" cannot patch resource \"nodes\" in API group \"\" at the cluster scope: node 'y' cannot modify node 'x'"
        );
        let a = attrs("get", "", "secrets", None, Some("ns1"), Some("s"));
        assert_eq!(
            forbidden_message("system:node:y", &a, Some("s"), &no_relationship("y")),
            "secrets \"s\" is forbidden: User \"system:node:y\" cannot get resource \"secrets\" in API group \"\" in the namespace \"ns1\": no relationship found between node 'y' and this object"
        );
        let a = attrs("list", "apps", "deployments", None, None, None);
        assert_eq!(
            forbidden_message("system:node:y", &a, None, ""),
            "deployments.apps is forbidden: User \"system:node:y\" cannot list resource \"deployments\" in API group \"apps\" at the cluster scope"
        );
        let a = attrs("patch", "", "pods", Some("status"), Some("d"), Some("p"));
        assert!(forbidden_message("u", &a, Some("p"), "").contains("resource \"pods/status\""));
    }

    #[test]
    fn references_of_a_pod() {
        let pod = json!({
            "metadata": {"name": "p"},
            "spec": {
                "serviceAccountName": "builder",
                "imagePullSecrets": [{"name": "pull"}],
                "volumes": [
                    {"name": "a", "secret": {"secretName": "vol-secret"}},
                    {"name": "b", "configMap": {"name": "vol-cm"}},
                    {"name": "c", "persistentVolumeClaim": {"claimName": "claim"}},
                    {"name": "d", "ephemeral": {"volumeClaimTemplate": {}}},
                    {"name": "e", "projected": {"sources": [
                        {"secret": {"name": "proj-secret"}},
                        {"configMap": {"name": "kube-root-ca.crt"}},
                        {"serviceAccountToken": {"path": "token"}}]}},
                    {"name": "f", "csi": {"driver": "x", "nodePublishSecretRef": {"name": "csi-secret"}}},
                ],
                "initContainers": [{"name": "i", "envFrom": [{"configMapRef": {"name": "init-cm"}}]}],
                "containers": [{"name": "c", "env": [
                    {"name": "A", "valueFrom": {"secretKeyRef": {"name": "env-secret", "key": "k"}}},
                    {"name": "B", "valueFrom": {"configMapKeyRef": {"name": "env-cm", "key": "k"}}},
                    {"name": "C", "value": "plain"}],
                    "envFrom": [{"secretRef": {"name": "from-secret"}}]}],
            }
        });
        let r = pod_refs(&pod);
        let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
        assert_eq!(
            r.secrets,
            set(&[
                "csi-secret",
                "env-secret",
                "from-secret",
                "proj-secret",
                "pull",
                "vol-secret"
            ])
        );
        assert_eq!(
            r.configmaps,
            set(&["env-cm", "init-cm", "kube-root-ca.crt", "vol-cm"])
        );
        assert_eq!(r.claims, set(&["claim", "p-d"]));
        assert_eq!(r.service_account, "builder");
        assert_eq!(pod_refs(&json!({"spec": {}})).service_account, "default");
    }

    #[test]
    fn mirror_pods() {
        let ok = json!({
            "metadata": {"name": "static-a", "annotations": {MIRROR_ANNOTATION: "hash"},
                         "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": "a", "uid": "u"}]},
            "spec": {"nodeName": "a", "containers": [{"name": "c", "image": "i"}]}
        });
        assert_eq!(mirror_pod_violation("a", &ok), None);
        let with = |ptr: &str, v: Value| {
            let mut p = ok.clone();
            *p.pointer_mut(ptr).unwrap() = v;
            p
        };
        for (pod, want) in [
            (
                with("/metadata/annotations", json!({})),
                "can only create mirror pods",
            ),
            (
                with("/spec/nodeName", json!("b")),
                "spec.nodeName set to itself",
            ),
            (
                with(
                    "/spec/containers",
                    json!([{"name": "c", "envFrom": [{"secretRef": {"name": "s"}}]}]),
                ),
                "reference secrets",
            ),
            (
                with("/spec/nodeName", json!(null)),
                "spec.nodeName set to itself",
            ),
            (
                with(
                    "/metadata/ownerReferences",
                    json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "r"}]),
                ),
                "owner reference",
            ),
        ] {
            let got = mirror_pod_violation("a", &pod).unwrap_or_default();
            assert!(got.contains(want), "{got} / {want}");
        }
        let mut sa = ok.clone();
        sa["spec"]["serviceAccountName"] = json!("robot");
        assert!(
            mirror_pod_violation("a", &sa)
                .unwrap()
                .contains("service account")
        );
    }

    #[test]
    fn restricted_labels() {
        let l = |v: Value| Some(v);
        let base =
            json!({"kubernetes.io/hostname": "a", "node-restriction.kubernetes.io/zone": "z1"});
        assert_eq!(
            restricted_label_change("a", l(base.clone()).as_ref(), l(base.clone()).as_ref()),
            None
        );
        let mut other = base.clone();
        other["team"] = json!("x");
        assert_eq!(
            restricted_label_change("a", Some(&base), Some(&other)),
            None
        );
        for new in [
            json!({"kubernetes.io/hostname": "a"}),
            json!({"kubernetes.io/hostname": "a", "node-restriction.kubernetes.io/zone": "z2"}),
            json!({"kubernetes.io/hostname": "a", "node-restriction.kubernetes.io/zone": "z1", "x.node-restriction.kubernetes.io/y": "1"}),
        ] {
            let e = restricted_label_change("a", Some(&base), Some(&new)).unwrap();
            assert!(e.contains("node-restriction.kubernetes.io/"), "{e}");
        }
        assert!(
            restricted_label_change(
                "a",
                None,
                Some(&json!({"node-restriction.kubernetes.io/a": "1"}))
            )
            .is_some()
        );
        assert!(!is_restricted_label(
            "evil-node-restriction.kubernetes.io/a"
        ));
    }
}
