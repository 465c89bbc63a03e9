//! The kinds table: every resource the API server serves, built-in or from a
//! CustomResourceDefinition, with its group/version/kind, plural and short
//! names, scope, subresources and storage key prefix.
//!
//! Invariants: a resource is identified by (group, plural); all versions of
//! a resource share one storage prefix; the table is data only — behaviour
//! per kind lives in `defaults`, `validation`, `table` and `patch`.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

/// Where `.spec.replicas` style fields of the scale subresource live.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScalePaths {
    pub spec_replicas: String,
    pub status_replicas: String,
    pub label_selector: Option<String>,
}

/// One served resource (one group/version/plural).
#[derive(Clone, Debug)]
pub struct Resource {
    pub group: String,
    pub version: String,
    pub kind: String,
    pub plural: String,
    pub singular: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    pub has_status: bool,
    pub scale: Option<ScalePaths>,
    /// `metadata.generation` is maintained (bumped on spec changes).
    pub generation: bool,
    /// Only `create` is served and nothing is stored (review kinds).
    pub virtual_create_only: bool,
    /// The version objects are stored in (all versions share one prefix).
    pub storage_version: String,
    /// Served from a CustomResourceDefinition.
    pub custom: bool,
    /// CRD `openAPIV3Schema` of this version (custom resources only).
    pub schema: Option<Arc<serde_json::Value>>,
    /// CRD `additionalPrinterColumns` of this version (custom resources only).
    pub printer_columns: Option<Arc<serde_json::Value>>,
}

impl Resource {
    /// `v1` for core, `apps/v1` otherwise.
    pub fn api_version(&self) -> String {
        api_version(&self.group, &self.version)
    }

    /// `deployments.apps`, `pods` — the name used in Status `details.group`-less messages.
    pub fn qualified_plural(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// `Deployment.apps`, `Pod` — used in Invalid messages.
    pub fn qualified_kind(&self) -> String {
        if self.group.is_empty() {
            self.kind.clone()
        } else {
            format!("{}.{}", self.kind, self.group)
        }
    }

    /// Storage prefix for every object of this resource, ending with `/`.
    pub fn prefix(&self) -> String {
        let group = if self.group.is_empty() {
            "core"
        } else {
            &self.group
        };
        format!("/registry/{group}/{}/", self.plural)
    }

    /// Prefix of one namespace (or the whole resource when `ns` is None).
    pub fn list_prefix(&self, ns: Option<&str>) -> String {
        match ns {
            Some(ns) if self.namespaced => format!("{}{ns}/", self.prefix()),
            _ => self.prefix(),
        }
    }

    /// Storage key of one object.
    pub fn key(&self, ns: Option<&str>, name: &str) -> String {
        match ns {
            Some(ns) if self.namespaced => format!("{}{ns}/{name}", self.prefix()),
            _ => format!("{}{name}", self.prefix()),
        }
    }

    pub fn verbs(&self) -> Vec<&'static str> {
        if self.virtual_create_only {
            vec!["create"]
        } else {
            vec![
                "create",
                "delete",
                "deletecollection",
                "get",
                "list",
                "patch",
                "update",
                "watch",
            ]
        }
    }
}

pub fn api_version(group: &str, version: &str) -> String {
    if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    }
}

/// Split `apps/v1` into ("apps", "v1") and `v1` into ("", "v1").
pub fn split_api_version(api_version: &str) -> (&str, &str) {
    match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    }
}

struct Builtin {
    gv: &'static str,
    kind: &'static str,
    plural: &'static str,
    namespaced: bool,
    short: &'static [&'static str],
    status: bool,
    scale: bool,
    generation: bool,
    categories: &'static [&'static str],
}

const fn b(
    gv: &'static str,
    kind: &'static str,
    plural: &'static str,
    namespaced: bool,
    short: &'static [&'static str],
    status: bool,
) -> Builtin {
    Builtin {
        gv,
        kind,
        plural,
        namespaced,
        short,
        status,
        scale: false,
        generation: false,
        categories: &[],
    }
}

const fn scaled(mut x: Builtin) -> Builtin {
    x.scale = true;
    x.generation = true;
    x
}

const fn generation(mut x: Builtin) -> Builtin {
    x.generation = true;
    x
}

const fn all(mut x: Builtin) -> Builtin {
    x.categories = &["all"];
    x
}

const VIRTUAL_KINDS: &[(&str, &str, &str, bool)] = &[
    (
        "authentication.k8s.io/v1",
        "TokenReview",
        "tokenreviews",
        false,
    ),
    (
        "authentication.k8s.io/v1",
        "SelfSubjectReview",
        "selfsubjectreviews",
        false,
    ),
    (
        "authentication.k8s.io/v1beta1",
        "SelfSubjectReview",
        "selfsubjectreviews",
        false,
    ),
    (
        "authorization.k8s.io/v1",
        "SelfSubjectAccessReview",
        "selfsubjectaccessreviews",
        false,
    ),
    (
        "authorization.k8s.io/v1",
        "SelfSubjectRulesReview",
        "selfsubjectrulesreviews",
        false,
    ),
    (
        "authorization.k8s.io/v1",
        "SubjectAccessReview",
        "subjectaccessreviews",
        false,
    ),
    (
        "authorization.k8s.io/v1",
        "LocalSubjectAccessReview",
        "localsubjectaccessreviews",
        true,
    ),
];

fn builtins() -> Vec<Builtin> {
    vec![
        b("v1", "Namespace", "namespaces", false, &["ns"], true),
        all(b("v1", "Pod", "pods", true, &["po"], true)),
        all(b("v1", "Service", "services", true, &["svc"], true)),
        b("v1", "Endpoints", "endpoints", true, &["ep"], false),
        b("v1", "ConfigMap", "configmaps", true, &["cm"], false),
        b("v1", "Secret", "secrets", true, &[], false),
        b(
            "v1",
            "ServiceAccount",
            "serviceaccounts",
            true,
            &["sa"],
            false,
        ),
        b("v1", "Node", "nodes", false, &["no"], true),
        b("v1", "Event", "events", true, &["ev"], false),
        b(
            "v1",
            "PersistentVolume",
            "persistentvolumes",
            false,
            &["pv"],
            true,
        ),
        b(
            "v1",
            "PersistentVolumeClaim",
            "persistentvolumeclaims",
            true,
            &["pvc"],
            true,
        ),
        b("v1", "LimitRange", "limitranges", true, &["limits"], false),
        b(
            "v1",
            "ResourceQuota",
            "resourcequotas",
            true,
            &["quota"],
            true,
        ),
        all(scaled(b(
            "v1",
            "ReplicationController",
            "replicationcontrollers",
            true,
            &["rc"],
            true,
        ))),
        b("v1", "PodTemplate", "podtemplates", true, &[], false),
        all(scaled(b(
            "apps/v1",
            "Deployment",
            "deployments",
            true,
            &["deploy"],
            true,
        ))),
        all(scaled(b(
            "apps/v1",
            "ReplicaSet",
            "replicasets",
            true,
            &["rs"],
            true,
        ))),
        all(scaled(b(
            "apps/v1",
            "StatefulSet",
            "statefulsets",
            true,
            &["sts"],
            true,
        ))),
        all(generation(b(
            "apps/v1",
            "DaemonSet",
            "daemonsets",
            true,
            &["ds"],
            true,
        ))),
        b(
            "apps/v1",
            "ControllerRevision",
            "controllerrevisions",
            true,
            &[],
            false,
        ),
        all(generation(b("batch/v1", "Job", "jobs", true, &[], true))),
        all(generation(b(
            "batch/v1",
            "CronJob",
            "cronjobs",
            true,
            &["cj"],
            true,
        ))),
        all(generation(b(
            "autoscaling/v2",
            "HorizontalPodAutoscaler",
            "horizontalpodautoscalers",
            true,
            &["hpa"],
            true,
        ))),
        all(generation(b(
            "autoscaling/v1",
            "HorizontalPodAutoscaler",
            "horizontalpodautoscalers",
            true,
            &["hpa"],
            true,
        ))),
        generation(b(
            "networking.k8s.io/v1",
            "Ingress",
            "ingresses",
            true,
            &["ing"],
            true,
        )),
        b(
            "networking.k8s.io/v1",
            "IngressClass",
            "ingressclasses",
            false,
            &[],
            false,
        ),
        generation(b(
            "networking.k8s.io/v1",
            "NetworkPolicy",
            "networkpolicies",
            true,
            &["netpol"],
            false,
        )),
        b(
            "discovery.k8s.io/v1",
            "EndpointSlice",
            "endpointslices",
            true,
            &[],
            false,
        ),
        b(
            "coordination.k8s.io/v1",
            "Lease",
            "leases",
            true,
            &[],
            false,
        ),
        b("events.k8s.io/v1", "Event", "events", true, &["ev"], false),
        b(
            "rbac.authorization.k8s.io/v1",
            "Role",
            "roles",
            true,
            &[],
            false,
        ),
        b(
            "rbac.authorization.k8s.io/v1",
            "ClusterRole",
            "clusterroles",
            false,
            &[],
            false,
        ),
        b(
            "rbac.authorization.k8s.io/v1",
            "RoleBinding",
            "rolebindings",
            true,
            &[],
            false,
        ),
        b(
            "rbac.authorization.k8s.io/v1",
            "ClusterRoleBinding",
            "clusterrolebindings",
            false,
            &[],
            false,
        ),
        b(
            "storage.k8s.io/v1",
            "StorageClass",
            "storageclasses",
            false,
            &["sc"],
            false,
        ),
        generation(b(
            "policy/v1",
            "PodDisruptionBudget",
            "poddisruptionbudgets",
            true,
            &["pdb"],
            true,
        )),
        b(
            "scheduling.k8s.io/v1",
            "PriorityClass",
            "priorityclasses",
            false,
            &["pc"],
            false,
        ),
        generation(b(
            "apiextensions.k8s.io/v1",
            "CustomResourceDefinition",
            "customresourcedefinitions",
            false,
            &["crd", "crds"],
            true,
        )),
    ]
}

/// The preferred version per group, in discovery order.
pub const GROUP_ORDER: &[&str] = &[
    "",
    "apiregistration.k8s.io",
    "apps",
    "events.k8s.io",
    "authentication.k8s.io",
    "authorization.k8s.io",
    "autoscaling",
    "batch",
    "networking.k8s.io",
    "policy",
    "rbac.authorization.k8s.io",
    "storage.k8s.io",
    "apiextensions.k8s.io",
    "scheduling.k8s.io",
    "coordination.k8s.io",
    "discovery.k8s.io",
];

fn builtin_resources() -> Vec<Resource> {
    let mut out = Vec::new();
    for x in builtins() {
        let (group, version) = split_api_version(x.gv);
        let storage_version = if group == "autoscaling" {
            "v2"
        } else {
            version
        };
        out.push(Resource {
            group: group.to_string(),
            version: version.to_string(),
            kind: x.kind.to_string(),
            plural: x.plural.to_string(),
            singular: x.kind.to_lowercase(),
            namespaced: x.namespaced,
            short_names: x.short.iter().map(|s| s.to_string()).collect(),
            categories: x.categories.iter().map(|s| s.to_string()).collect(),
            has_status: x.status,
            scale: x.scale.then(|| ScalePaths {
                spec_replicas: ".spec.replicas".into(),
                status_replicas: ".status.replicas".into(),
                label_selector: Some(".status.selector".into()),
            }),
            generation: x.generation,
            virtual_create_only: false,
            storage_version: storage_version.to_string(),
            custom: false,
            schema: None,
            printer_columns: None,
        });
    }
    for (gv, kind, plural, namespaced) in VIRTUAL_KINDS {
        let (group, version) = split_api_version(gv);
        out.push(Resource {
            group: group.to_string(),
            version: version.to_string(),
            kind: kind.to_string(),
            plural: plural.to_string(),
            singular: kind.to_lowercase(),
            namespaced: *namespaced,
            short_names: vec![],
            categories: vec![],
            has_status: false,
            scale: None,
            generation: false,
            virtual_create_only: true,
            storage_version: version.to_string(),
            custom: false,
            schema: None,
            printer_columns: None,
        });
    }
    out
}

/// Lookup table over all served resources; CRDs are added and removed live.
#[derive(Default)]
pub struct Kinds {
    inner: RwLock<KindsInner>,
}

#[derive(Default, Clone)]
struct KindsInner {
    /// (group, version, plural) → resource
    by_gvr: BTreeMap<(String, String, String), Arc<Resource>>,
    /// CRD name → the (group, version, plural) keys it contributed
    crds: BTreeMap<String, Vec<(String, String, String)>>,
    /// bumped on every change: discovery/openapi caches key on it
    generation: u64,
}

impl Kinds {
    pub fn with_builtins() -> Self {
        let kinds = Kinds::default();
        {
            let mut inner = kinds.write();
            for r in builtin_resources() {
                inner.by_gvr.insert(
                    (r.group.clone(), r.version.clone(), r.plural.clone()),
                    Arc::new(r),
                );
            }
        }
        kinds
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, KindsInner> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, KindsInner> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    pub fn generation(&self) -> u64 {
        self.read().generation
    }

    pub fn get(&self, group: &str, version: &str, plural: &str) -> Option<Arc<Resource>> {
        self.read()
            .by_gvr
            .get(&(group.to_string(), version.to_string(), plural.to_string()))
            .cloned()
    }

    /// Find by kind within a group/version (for bodies that name a kind).
    pub fn by_kind(&self, group: &str, version: &str, kind: &str) -> Option<Arc<Resource>> {
        self.read()
            .by_gvr
            .values()
            .find(|r| r.group == group && r.version == version && r.kind == kind)
            .cloned()
    }

    /// The storage-version resource for a group + plural (used by GC and
    /// namespace deletion to walk every stored resource once).
    pub fn storage_resources(&self) -> Vec<Arc<Resource>> {
        self.read()
            .by_gvr
            .values()
            .filter(|r| r.version == r.storage_version && !r.virtual_create_only)
            .cloned()
            .collect()
    }

    pub fn all(&self) -> Vec<Arc<Resource>> {
        self.read().by_gvr.values().cloned().collect()
    }

    /// Groups in discovery order, each with its versions (preferred first).
    pub fn groups(&self) -> Vec<(String, Vec<String>)> {
        let inner = self.read();
        let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for r in inner.by_gvr.values() {
            let versions = groups.entry(r.group.clone()).or_default();
            if !versions.contains(&r.version) {
                versions.push(r.version.clone());
            }
        }
        let mut out: Vec<(String, Vec<String>)> = Vec::new();
        let rank = |g: &str| {
            GROUP_ORDER
                .iter()
                .position(|x| *x == g)
                .unwrap_or(GROUP_ORDER.len())
        };
        for (g, mut vs) in groups {
            vs.sort_by_key(|v| std::cmp::Reverse(version_priority(v)));
            out.push((g, vs));
        }
        out.sort_by(|a, b| rank(&a.0).cmp(&rank(&b.0)).then(a.0.cmp(&b.0)));
        out
    }

    pub fn resources_in(&self, group: &str, version: &str) -> Vec<Arc<Resource>> {
        self.read()
            .by_gvr
            .values()
            .filter(|r| r.group == group && r.version == version)
            .cloned()
            .collect()
    }

    /// Replace the resources contributed by one CRD (empty = remove).
    pub fn set_crd(&self, crd_name: &str, resources: Vec<Resource>) {
        let mut inner = self.write();
        if let Some(old) = inner.crds.remove(crd_name) {
            for k in old {
                inner.by_gvr.remove(&k);
            }
        }
        let mut keys = Vec::new();
        for r in resources {
            let k = (r.group.clone(), r.version.clone(), r.plural.clone());
            // never let a CRD shadow a built-in
            if inner.by_gvr.get(&k).is_some_and(|x| !x.custom) {
                continue;
            }
            keys.push(k.clone());
            inner.by_gvr.insert(k, Arc::new(r));
        }
        if !keys.is_empty() {
            inner.crds.insert(crd_name.to_string(), keys);
        }
        inner.generation += 1;
    }
}

/// Kubernetes version priority: GA > beta > alpha, higher numbers first.
pub fn version_priority(v: &str) -> (u8, u32, u32) {
    let Some(rest) = v.strip_prefix('v') else {
        return (0, 0, 0);
    };
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    let Ok(major) = digits.parse::<u32>() else {
        return (0, 0, 0);
    };
    let tail = &rest[digits.len()..];
    if tail.is_empty() {
        return (3, major, 0);
    }
    let (level, num) = if let Some(n) = tail.strip_prefix("beta") {
        (2, n)
    } else if let Some(n) = tail.strip_prefix("alpha") {
        (1, n)
    } else {
        return (0, 0, 0);
    };
    match num.parse::<u32>() {
        Ok(n) => (level, major, n),
        Err(_) => (0, 0, 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_are_found() {
        let k = Kinds::with_builtins();
        let d = k.get("apps", "v1", "deployments").unwrap();
        assert_eq!(d.kind, "Deployment");
        assert_eq!(
            d.key(Some("ns1"), "web"),
            "/registry/apps/deployments/ns1/web"
        );
        let n = k.get("", "v1", "namespaces").unwrap();
        assert_eq!(
            n.key(Some("x"), "kube-system"),
            "/registry/core/namespaces/kube-system"
        );
        assert!(k.by_kind("", "v1", "Pod").is_some());
    }

    #[test]
    fn version_order() {
        let mut v = vec!["v1beta1", "v2", "v1", "v1alpha1", "v2beta2"];
        v.sort_by_key(|x| std::cmp::Reverse(version_priority(x)));
        assert_eq!(v, vec!["v2", "v1", "v2beta2", "v1beta1", "v1alpha1"]);
    }

    #[test]
    fn groups_start_with_core() {
        let k = Kinds::with_builtins();
        let g = k.groups();
        assert_eq!(g[0].0, "");
        let autoscaling = g.iter().find(|x| x.0 == "autoscaling").unwrap();
        assert_eq!(autoscaling.1, vec!["v2", "v1"]);
    }
}
