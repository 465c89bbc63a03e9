//! How lists and maps of an object merge: the [`MergeSchema`] trait that the
//! strategic-merge and apply algorithms consult, and [`BuiltinMergeSchema`],
//! upstream's `patchStrategy`/`patchMergeKey` (and, for server-side apply,
//! `listMapKey`/`structType=atomic`) tags for the built-in kinds, keyed by JSON
//! path. Must not: hold per-request state, do I/O, or claim knowledge of custom
//! resources (they get only the `metadata` rules every object shares).

/// How a list field merges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListStrategy {
    /// `patchStrategy:"merge"` with this `patchMergeKey`: items are objects
    /// merged by the key's value (containers by `name`).
    MergeByKey(&'static str),
    /// `patchStrategy:"merge"` over scalars: set union (finalizers).
    MergePrimitives,
    /// No strategy: the patch (or applied config) replaces the whole list.
    Replace,
}

/// One key of a server-side-apply associative list (`x-kubernetes-list-map-keys`),
/// with the value assumed when an item omits it (upstream defaults `protocol`
/// to `"TCP"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListMapKey {
    pub name: &'static str,
    pub default: Option<&'static str>,
}

/// Where lists and maps merge and how. `path` is made of field names only,
/// from the object's root; list items add no element, so the containers of a
/// Deployment are at `["spec","template","spec","containers"]` and their env
/// at `["spec","template","spec","containers","env"]`.
pub trait MergeSchema {
    /// The merge strategy of the list field at `path`; `None` means unknown,
    /// which merges like [`ListStrategy::Replace`].
    fn list_strategy(&self, path: &[&str]) -> Option<ListStrategy>;

    /// Server-side apply only: the keys identifying items of the associative
    /// list at `path`. Defaults to the strategic merge key; upstream uses more
    /// than one key in a few places (container ports: containerPort+protocol).
    fn list_map_keys(&self, path: &[&str]) -> Vec<ListMapKey> {
        match self.list_strategy(path) {
            Some(ListStrategy::MergeByKey(name)) => vec![ListMapKey {
                name,
                default: None,
            }],
            _ => Vec::new(),
        }
    }

    /// Server-side apply only: the object at `path` (or, for a keyed list,
    /// each of its items) is owned and replaced as a whole (`structType=atomic`,
    /// `mapType=atomic`: label selectors, owner references). Strategic merge
    /// patch ignores this, as upstream does.
    fn is_atomic_map(&self, path: &[&str]) -> bool {
        let _ = path;
        false
    }
}

/// API groups served by the built-in registry: strategic merge patch is
/// accepted for their kinds; for any other group it is a 415.
pub fn is_builtin_group(group: &str) -> bool {
    matches!(
        group,
        "" | "apps"
            | "batch"
            | "autoscaling"
            | "policy"
            | "networking.k8s.io"
            | "rbac.authorization.k8s.io"
            | "storage.k8s.io"
            | "coordination.k8s.io"
            | "discovery.k8s.io"
            | "events.k8s.io"
            | "apiextensions.k8s.io"
            | "apiregistration.k8s.io"
            | "admissionregistration.k8s.io"
            | "certificates.k8s.io"
            | "scheduling.k8s.io"
            | "node.k8s.io"
            | "flowcontrol.apiserver.k8s.io"
            | "resource.k8s.io"
            | "authentication.k8s.io"
            | "authorization.k8s.io"
            | "storagemigration.k8s.io"
            | "internal.apiserver.k8s.io"
    )
}

/// Upstream's merge tags for the built-in kinds (Kubernetes 1.33), chosen by
/// group and kind. For a kind of any other group (a custom resource) only the
/// object-metadata rules apply: finalizers union, ownerReferences by uid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltinMergeSchema {
    kind: String,
    group: String,
}

const CONTAINER_LISTS: [&str; 3] = ["containers", "initContainers", "ephemeralContainers"];

/// Field names whose object value upstream marks atomic wherever the type is
/// used (LabelSelector, map-typed selectors, NodeSelector, *KeySelector,
/// ObjectFieldSelector, ResourceFieldSelector).
const ATOMIC_OBJECT_FIELDS: [&str; 9] = [
    "selector",
    "labelSelector",
    "namespaceSelector",
    "podSelector",
    "nodeSelector",
    "secretKeyRef",
    "configMapKeyRef",
    "fieldRef",
    "resourceFieldRef",
];

impl BuiltinMergeSchema {
    pub fn for_kind(group: &str, kind: &str) -> Self {
        Self {
            kind: kind.to_string(),
            group: group.to_string(),
        }
    }

    /// Whether this kind's group is built in (see [`is_builtin_group`]).
    pub fn is_builtin(&self) -> bool {
        is_builtin_group(&self.group)
    }

    /// Paths at which a PodSpec sits in this kind.
    fn pod_spec_roots(&self) -> &'static [&'static [&'static str]] {
        match (self.group.as_str(), self.kind.as_str()) {
            ("", "Pod") => &[&["spec"]],
            ("", "PodTemplate") => &[&["template", "spec"]],
            ("", "ReplicationController")
            | ("apps", "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet")
            | ("batch", "Job") => &[&["spec", "template", "spec"]],
            ("batch", "CronJob") => &[&["spec", "jobTemplate", "spec", "template", "spec"]],
            _ => &[],
        }
    }

    /// Paths at which an ObjectMeta sits: the object's own and its templates'.
    fn object_meta_roots(&self) -> &'static [&'static [&'static str]] {
        match (self.group.as_str(), self.kind.as_str()) {
            ("", "PodTemplate") => &[&[], &["template"]],
            ("", "ReplicationController")
            | ("apps", "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet")
            | ("batch", "Job") => &[&[], &["spec", "template"]],
            ("batch", "CronJob") => &[
                &[],
                &["spec", "jobTemplate"],
                &["spec", "jobTemplate", "spec", "template"],
            ],
            _ => &[&[]],
        }
    }

    fn object_meta_list(&self, path: &[&str]) -> Option<ListStrategy> {
        self.object_meta_roots()
            .iter()
            .find_map(|root| match path.strip_prefix(*root)? {
                ["metadata", "finalizers"] => Some(ListStrategy::MergePrimitives),
                ["metadata", "ownerReferences"] => Some(ListStrategy::MergeByKey("uid")),
                ["metadata", "managedFields"] => Some(ListStrategy::Replace),
                _ => None,
            })
    }

    fn pod_spec_relative<'p>(&self, path: &'p [&'p str]) -> Option<&'p [&'p str]> {
        self.pod_spec_roots()
            .iter()
            .find_map(|root| path.strip_prefix(*root))
    }
}

fn pod_spec_list(rest: &[&str]) -> Option<ListStrategy> {
    use ListStrategy::{MergeByKey, Replace};
    match rest {
        [list] if CONTAINER_LISTS.contains(list) => Some(MergeByKey("name")),
        ["volumes" | "imagePullSecrets" | "resourceClaims" | "schedulingGates"] => {
            Some(MergeByKey("name"))
        }
        ["hostAliases"] => Some(MergeByKey("ip")),
        ["topologySpreadConstraints"] => Some(MergeByKey("topologyKey")),
        ["tolerations" | "readinessGates"] => Some(Replace),
        [list, field] if CONTAINER_LISTS.contains(list) => match *field {
            "ports" => Some(MergeByKey("containerPort")),
            "env" => Some(MergeByKey("name")),
            "volumeMounts" => Some(MergeByKey("mountPath")),
            "volumeDevices" => Some(MergeByKey("devicePath")),
            // `+listType=atomic` upstream, no patch strategy.
            "resizePolicy" | "envFrom" | "command" | "args" => Some(Replace),
            _ => None,
        },
        _ => None,
    }
}

impl MergeSchema for BuiltinMergeSchema {
    fn list_strategy(&self, path: &[&str]) -> Option<ListStrategy> {
        use ListStrategy::{MergeByKey, MergePrimitives};
        if let Some(strategy) = self.object_meta_list(path) {
            return Some(strategy);
        }
        if !self.is_builtin() {
            return None;
        }
        if let Some(rest) = self.pod_spec_relative(path)
            && let Some(strategy) = pod_spec_list(rest)
        {
            return Some(strategy);
        }
        match (self.group.as_str(), self.kind.as_str(), path) {
            ("", "Service", ["spec", "ports"]) => Some(MergeByKey("port")),
            ("", "Node", ["spec", "podCIDRs"]) => Some(MergePrimitives),
            ("", "Node", ["status", "addresses"]) => Some(MergeByKey("type")),
            ("", "Pod", ["status", "podIPs" | "hostIPs"]) => Some(MergeByKey("ip")),
            ("", "Pod", ["status", "resourceClaimStatuses"]) => Some(MergeByKey("name")),
            ("", "ServiceAccount", ["secrets"]) => Some(MergeByKey("name")),
            (
                "admissionregistration.k8s.io",
                "MutatingWebhookConfiguration" | "ValidatingWebhookConfiguration",
                ["webhooks"],
            ) => Some(MergeByKey("name")),
            (_, _, ["status", "conditions"]) => Some(MergeByKey("type")),
            _ => None,
        }
    }

    fn list_map_keys(&self, path: &[&str]) -> Vec<ListMapKey> {
        const PROTOCOL: ListMapKey = ListMapKey {
            name: "protocol",
            default: Some("TCP"),
        };
        let key = |name| ListMapKey {
            name,
            default: None,
        };
        if self.is_builtin() {
            if let Some(rest) = self.pod_spec_relative(path) {
                match rest {
                    [list, "ports"] if CONTAINER_LISTS.contains(list) => {
                        return vec![key("containerPort"), PROTOCOL];
                    }
                    ["topologySpreadConstraints"] => {
                        return vec![key("topologyKey"), key("whenUnsatisfiable")];
                    }
                    _ => {}
                }
            }
            if (self.group.as_str(), self.kind.as_str(), path)
                == ("", "Service", &["spec", "ports"][..])
            {
                return vec![key("port"), PROTOCOL];
            }
        }
        match self.list_strategy(path) {
            Some(ListStrategy::MergeByKey(name)) => vec![key(name)],
            _ => Vec::new(),
        }
    }

    fn is_atomic_map(&self, path: &[&str]) -> bool {
        if self
            .object_meta_roots()
            .iter()
            .any(|root| path.strip_prefix(*root) == Some(&["metadata", "ownerReferences"][..]))
        {
            return true;
        }
        if !self.is_builtin() || path.first() == Some(&"metadata") {
            return false;
        }
        path.last()
            .is_some_and(|field| ATOMIC_OBJECT_FIELDS.contains(field))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ListStrategy::*;

    #[test]
    fn builtin_list_strategies() {
        let cases: Vec<(&str, &str, &[&str], Option<ListStrategy>)> = vec![
            ("", "Pod", &["spec", "containers"], Some(MergeByKey("name"))),
            (
                "",
                "Pod",
                &["spec", "initContainers", "env"],
                Some(MergeByKey("name")),
            ),
            (
                "",
                "Pod",
                &["spec", "containers", "ports"],
                Some(MergeByKey("containerPort")),
            ),
            (
                "",
                "Pod",
                &["spec", "containers", "volumeMounts"],
                Some(MergeByKey("mountPath")),
            ),
            (
                "",
                "Pod",
                &["spec", "ephemeralContainers", "volumeDevices"],
                Some(MergeByKey("devicePath")),
            ),
            ("", "Pod", &["spec", "containers", "args"], Some(Replace)),
            ("", "Pod", &["spec", "volumes"], Some(MergeByKey("name"))),
            ("", "Pod", &["spec", "hostAliases"], Some(MergeByKey("ip"))),
            ("", "Pod", &["spec", "tolerations"], Some(Replace)),
            (
                "",
                "Pod",
                &["spec", "topologySpreadConstraints"],
                Some(MergeByKey("topologyKey")),
            ),
            (
                "",
                "Pod",
                &["status", "conditions"],
                Some(MergeByKey("type")),
            ),
            ("", "Pod", &["status", "podIPs"], Some(MergeByKey("ip"))),
            (
                "",
                "Pod",
                &["metadata", "finalizers"],
                Some(MergePrimitives),
            ),
            (
                "",
                "Pod",
                &["metadata", "ownerReferences"],
                Some(MergeByKey("uid")),
            ),
            (
                "apps",
                "Deployment",
                &["spec", "template", "spec", "containers"],
                Some(MergeByKey("name")),
            ),
            ("apps", "Deployment", &["spec", "containers"], None),
            (
                "apps",
                "Deployment",
                &["spec", "template", "metadata", "finalizers"],
                Some(MergePrimitives),
            ),
            (
                "apps",
                "StatefulSet",
                &["spec", "template", "spec", "imagePullSecrets"],
                Some(MergeByKey("name")),
            ),
            (
                "batch",
                "CronJob",
                &[
                    "spec",
                    "jobTemplate",
                    "spec",
                    "template",
                    "spec",
                    "containers",
                    "env",
                ],
                Some(MergeByKey("name")),
            ),
            (
                "batch",
                "Job",
                &["status", "conditions"],
                Some(MergeByKey("type")),
            ),
            ("", "Service", &["spec", "ports"], Some(MergeByKey("port"))),
            (
                "",
                "Node",
                &["status", "addresses"],
                Some(MergeByKey("type")),
            ),
            ("", "Node", &["spec", "podCIDRs"], Some(MergePrimitives)),
            ("", "Node", &["spec", "taints"], None),
            ("", "Endpoints", &["subsets"], None),
            ("discovery.k8s.io", "EndpointSlice", &["endpoints"], None),
            (
                "example.com",
                "Widget",
                &["metadata", "finalizers"],
                Some(MergePrimitives),
            ),
            ("example.com", "Widget", &["status", "conditions"], None),
            ("example.com", "Widget", &["spec", "containers"], None),
        ];
        for (group, kind, path, want) in cases {
            let schema = BuiltinMergeSchema::for_kind(group, kind);
            assert_eq!(schema.list_strategy(path), want, "{group}/{kind} {path:?}");
        }
    }

    #[test]
    fn apply_keys_and_atomic_maps() {
        let pod = BuiltinMergeSchema::for_kind("", "Pod");
        let names: Vec<&str> = pod
            .list_map_keys(&["spec", "containers", "ports"])
            .iter()
            .map(|k| k.name)
            .collect();
        assert_eq!(names, vec!["containerPort", "protocol"]);
        assert_eq!(pod.list_map_keys(&["spec", "containers"]).len(), 1);
        assert!(pod.list_map_keys(&["spec", "tolerations"]).is_empty());
        let deploy = BuiltinMergeSchema::for_kind("apps", "Deployment");
        assert!(deploy.is_atomic_map(&["spec", "selector"]));
        assert!(deploy.is_atomic_map(&["metadata", "ownerReferences"]));
        assert!(!deploy.is_atomic_map(&["spec", "template", "metadata", "labels"]));
        let custom = BuiltinMergeSchema::for_kind("example.com", "Widget");
        assert!(!custom.is_atomic_map(&["spec", "selector"]));
        assert!(!custom.is_builtin());
    }
}
