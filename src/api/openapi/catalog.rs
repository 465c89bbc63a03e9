//! The schema catalog behind the OpenAPI documents: every component schema
//! (built-in kinds from k8s-openapi's `schemars` support, their `List`s,
//! custom resources from their CRD schema, and everything they reference),
//! in one canonical form: refs are `#/components/schemas/<name>` and may
//! carry sibling keywords (`description`); the v2/v3 renderers convert.
//!
//! Owns the table of built-in kinds k8s-openapi knows and the upstream
//! patch-strategy extensions k8s-openapi does not carry. Pure data in, data
//! out; no caching here (the server caches the rendered documents).

use std::borrow::Cow;
use std::collections::BTreeMap;

use k8s_openapi::Resource;
use k8s_openapi::api::{
    admissionregistration, apiserverinternal, apps, authentication, authorization, autoscaling,
    batch, certificates, coordination, core, discovery, events, flowcontrol, networking, node,
    policy, rbac, resource, scheduling, storage, storagemigration,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiextensions_v1;
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta_v1;
use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1 as apiregistration_v1;
use schemars::JsonSchema;
use schemars::generate::{SchemaGenerator, SchemaSettings};
use serde_json::{Map, Value, json};

use super::ServedResource;

/// Canonical prefix of a component reference.
pub(super) const REF_PREFIX: &str = "#/components/schemas/";

pub(super) const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";
pub(super) const LIST_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta";
pub(super) const STATUS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Status";
pub(super) const DELETE_OPTIONS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions";
pub(super) const PATCH: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Patch";
pub(super) const SCALE: &str = "io.k8s.api.autoscaling.v1.Scale";
const INT_OR_STRING: &str = "io.k8s.apimachinery.pkg.util.intstr.IntOrString";
const QUANTITY: &str = "io.k8s.apimachinery.pkg.api.resource.Quantity";

const API_VERSION_DESCRIPTION: &str = "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources";
const KIND_DESCRIPTION: &str = "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds";
const METADATA_DESCRIPTION: &str = "Standard object's metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";
const LIST_METADATA_DESCRIPTION: &str = "Standard list metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds";

/// A built-in kind k8s-openapi can describe.
struct Builtin {
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    definition: fn() -> Cow<'static, str>,
    generate: fn(&mut SchemaGenerator),
}

macro_rules! builtins {
    ($($t:ty),* $(,)?) => {
        &[$(Builtin {
            group: <$t as Resource>::GROUP,
            version: <$t as Resource>::VERSION,
            kind: <$t as Resource>::KIND,
            definition: <$t as JsonSchema>::schema_name,
            generate: |g| {
                g.subschema_for::<$t>();
            },
        }),*]
    };
}

/// Every top-level kind of Kubernetes v1.33 that k8s-openapi 0.29 carries.
const BUILTINS: &[Builtin] = builtins![
    admissionregistration::v1::MutatingWebhookConfiguration,
    admissionregistration::v1::ValidatingAdmissionPolicy,
    admissionregistration::v1::ValidatingAdmissionPolicyBinding,
    admissionregistration::v1::ValidatingWebhookConfiguration,
    admissionregistration::v1alpha1::MutatingAdmissionPolicy,
    admissionregistration::v1alpha1::MutatingAdmissionPolicyBinding,
    admissionregistration::v1beta1::ValidatingAdmissionPolicy,
    admissionregistration::v1beta1::ValidatingAdmissionPolicyBinding,
    apiserverinternal::v1alpha1::StorageVersion,
    apps::v1::ControllerRevision,
    apps::v1::DaemonSet,
    apps::v1::Deployment,
    apps::v1::ReplicaSet,
    apps::v1::StatefulSet,
    authentication::v1::SelfSubjectReview,
    authentication::v1::TokenRequest,
    authentication::v1::TokenReview,
    authorization::v1::LocalSubjectAccessReview,
    authorization::v1::SelfSubjectAccessReview,
    authorization::v1::SelfSubjectRulesReview,
    authorization::v1::SubjectAccessReview,
    autoscaling::v1::HorizontalPodAutoscaler,
    autoscaling::v1::Scale,
    autoscaling::v2::HorizontalPodAutoscaler,
    batch::v1::CronJob,
    batch::v1::Job,
    certificates::v1::CertificateSigningRequest,
    certificates::v1alpha1::ClusterTrustBundle,
    certificates::v1beta1::ClusterTrustBundle,
    coordination::v1::Lease,
    coordination::v1alpha2::LeaseCandidate,
    coordination::v1beta1::LeaseCandidate,
    core::v1::Binding,
    core::v1::ComponentStatus,
    core::v1::ConfigMap,
    core::v1::Endpoints,
    core::v1::Event,
    core::v1::LimitRange,
    core::v1::Namespace,
    core::v1::Node,
    core::v1::PersistentVolume,
    core::v1::PersistentVolumeClaim,
    core::v1::Pod,
    core::v1::PodTemplate,
    core::v1::ReplicationController,
    core::v1::ResourceQuota,
    core::v1::Secret,
    core::v1::Service,
    core::v1::ServiceAccount,
    discovery::v1::EndpointSlice,
    events::v1::Event,
    flowcontrol::v1::FlowSchema,
    flowcontrol::v1::PriorityLevelConfiguration,
    networking::v1::Ingress,
    networking::v1::IngressClass,
    networking::v1::IPAddress,
    networking::v1::NetworkPolicy,
    networking::v1::ServiceCIDR,
    networking::v1beta1::IPAddress,
    networking::v1beta1::ServiceCIDR,
    node::v1::RuntimeClass,
    policy::v1::Eviction,
    policy::v1::PodDisruptionBudget,
    rbac::v1::ClusterRole,
    rbac::v1::ClusterRoleBinding,
    rbac::v1::Role,
    rbac::v1::RoleBinding,
    resource::v1alpha3::DeviceClass,
    resource::v1alpha3::DeviceTaintRule,
    resource::v1alpha3::ResourceClaim,
    resource::v1alpha3::ResourceClaimTemplate,
    resource::v1alpha3::ResourceSlice,
    resource::v1beta1::DeviceClass,
    resource::v1beta1::ResourceClaim,
    resource::v1beta1::ResourceClaimTemplate,
    resource::v1beta1::ResourceSlice,
    resource::v1beta2::DeviceClass,
    resource::v1beta2::ResourceClaim,
    resource::v1beta2::ResourceClaimTemplate,
    resource::v1beta2::ResourceSlice,
    scheduling::v1::PriorityClass,
    storage::v1::CSIDriver,
    storage::v1::CSINode,
    storage::v1::CSIStorageCapacity,
    storage::v1::StorageClass,
    storage::v1::VolumeAttachment,
    storage::v1alpha1::VolumeAttributesClass,
    storage::v1beta1::VolumeAttributesClass,
    storagemigration::v1alpha1::StorageVersionMigration,
    apiextensions_v1::CustomResourceDefinition,
    apiregistration_v1::APIService,
];

fn builtin(group: &str, version: &str, kind: &str) -> Option<&'static Builtin> {
    BUILTINS
        .iter()
        .find(|b| b.group == group && b.version == version && b.kind == kind)
}

/// Upstream's strategic-merge-patch extensions on list and struct fields
/// (`patchStrategy`/`patchMergeKey` struct tags), which k8s-openapi drops
/// but `kubectl apply` reads from the OpenAPI document to compute patches:
/// (definition, property, strategy, merge key).
const PATCH_STRATEGIES: &[(&str, &str, &str, Option<&str>)] = &[
    (
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
        "finalizers",
        "merge",
        None,
    ),
    (
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
        "ownerReferences",
        "merge",
        Some("uid"),
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "containers",
        "merge",
        Some("name"),
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "initContainers",
        "merge",
        Some("name"),
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "ephemeralContainers",
        "merge",
        Some("name"),
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "volumes",
        "merge,retainKeys",
        Some("name"),
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "imagePullSecrets",
        "merge",
        Some("name"),
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "hostAliases",
        "merge",
        Some("ip"),
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "topologySpreadConstraints",
        "merge",
        Some("topologyKey"),
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "resourceClaims",
        "merge,retainKeys",
        Some("name"),
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "schedulingGates",
        "merge",
        Some("name"),
    ),
    ("io.k8s.api.core.v1.Container", "env", "merge", Some("name")),
    (
        "io.k8s.api.core.v1.Container",
        "ports",
        "merge",
        Some("containerPort"),
    ),
    (
        "io.k8s.api.core.v1.Container",
        "volumeMounts",
        "merge",
        Some("mountPath"),
    ),
    (
        "io.k8s.api.core.v1.Container",
        "volumeDevices",
        "merge",
        Some("devicePath"),
    ),
    (
        "io.k8s.api.core.v1.EphemeralContainer",
        "env",
        "merge",
        Some("name"),
    ),
    (
        "io.k8s.api.core.v1.EphemeralContainer",
        "volumeMounts",
        "merge",
        Some("mountPath"),
    ),
    (
        "io.k8s.api.core.v1.EphemeralContainer",
        "volumeDevices",
        "merge",
        Some("devicePath"),
    ),
    (
        "io.k8s.api.core.v1.PodStatus",
        "conditions",
        "merge",
        Some("type"),
    ),
    (
        "io.k8s.api.core.v1.PodStatus",
        "podIPs",
        "merge",
        Some("ip"),
    ),
    (
        "io.k8s.api.core.v1.PodStatus",
        "hostIPs",
        "merge",
        Some("ip"),
    ),
    (
        "io.k8s.api.core.v1.PodStatus",
        "resourceClaimStatuses",
        "merge,retainKeys",
        Some("name"),
    ),
    (
        "io.k8s.api.core.v1.ServiceSpec",
        "ports",
        "merge",
        Some("port"),
    ),
    (
        "io.k8s.api.core.v1.ServiceStatus",
        "conditions",
        "merge",
        Some("type"),
    ),
    (
        "io.k8s.api.core.v1.ServiceAccount",
        "secrets",
        "merge",
        Some("name"),
    ),
    ("io.k8s.api.core.v1.NodeSpec", "podCIDRs", "merge", None),
    (
        "io.k8s.api.core.v1.NodeStatus",
        "conditions",
        "merge",
        Some("type"),
    ),
    (
        "io.k8s.api.core.v1.NodeStatus",
        "addresses",
        "merge",
        Some("type"),
    ),
    (
        "io.k8s.api.core.v1.NamespaceStatus",
        "conditions",
        "merge",
        Some("type"),
    ),
    (
        "io.k8s.api.core.v1.PersistentVolumeClaimStatus",
        "conditions",
        "merge",
        Some("type"),
    ),
    (
        "io.k8s.api.core.v1.ReplicationControllerStatus",
        "conditions",
        "merge",
        Some("type"),
    ),
    (
        "io.k8s.api.apps.v1.DeploymentSpec",
        "strategy",
        "retainKeys",
        None,
    ),
    (
        "io.k8s.api.apps.v1.DeploymentStatus",
        "conditions",
        "merge",
        Some("type"),
    ),
    (
        "io.k8s.api.apps.v1.DaemonSetStatus",
        "conditions",
        "merge",
        Some("type"),
    ),
    (
        "io.k8s.api.apps.v1.ReplicaSetStatus",
        "conditions",
        "merge",
        Some("type"),
    ),
    (
        "io.k8s.api.apps.v1.StatefulSetStatus",
        "conditions",
        "merge",
        Some("type"),
    ),
    (
        "io.k8s.api.batch.v1.JobStatus",
        "conditions",
        "merge",
        Some("type"),
    ),
    (
        "io.k8s.api.policy.v1.PodDisruptionBudgetStatus",
        "conditions",
        "merge",
        Some("type"),
    ),
    (
        "io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerStatus",
        "conditions",
        "merge",
        Some("type"),
    ),
];

/// `stable.example.com`, `v1`, `CronTab` → `com.example.stable.v1.CronTab`
/// (upstream's REST-friendly name for custom resource definitions).
pub(super) fn custom_definition_name(group: &str, version: &str, kind: &str) -> String {
    let mut parts: Vec<&str> = group.split('.').filter(|p| !p.is_empty()).collect();
    parts.reverse();
    parts.push(version);
    parts.push(kind);
    parts.join(".")
}

/// A served kind's place in the catalog.
#[derive(Clone, Debug)]
pub(super) struct KindEntry {
    /// The kind's component name.
    pub definition: String,
    /// Its list's component name, if it is listable.
    pub list: Option<String>,
}

/// All component schemas needed for a set of served resources.
pub(super) struct Catalog {
    pub defs: BTreeMap<String, Value>,
}

impl Catalog {
    /// Builds the schemas of `resources` and everything they reference,
    /// plus the meta types every document's operations use.
    pub fn build(resources: &[&ServedResource]) -> (Catalog, Vec<KindEntry>) {
        let mut generator = SchemaSettings::openapi3()
            .with(|s| {
                s.transforms.clear();
                s.meta_schema = None;
            })
            .into_generator();
        generator.subschema_for::<meta_v1::ObjectMeta>();
        generator.subschema_for::<meta_v1::ListMeta>();
        generator.subschema_for::<meta_v1::Status>();
        generator.subschema_for::<meta_v1::DeleteOptions>();
        generator.subschema_for::<meta_v1::Patch>();
        if resources.iter().any(|r| r.has_scale) {
            generator.subschema_for::<autoscaling::v1::Scale>();
        }

        let mut entries = Vec::with_capacity(resources.len());
        let mut kinds: Vec<(String, &ServedResource)> = Vec::new();
        let mut custom: Vec<(String, Value)> = Vec::new();
        for r in resources {
            let known = if r.custom_schema.is_none() {
                builtin(&r.group, &r.version, &r.kind)
            } else {
                None
            };
            let definition = match known {
                Some(b) => {
                    (b.generate)(&mut generator);
                    (b.definition)().into_owned()
                }
                None => {
                    let name = custom_definition_name(&r.group, &r.version, &r.kind);
                    custom.push((name.clone(), custom_kind_schema(r.custom_schema.as_ref())));
                    name
                }
            };
            let list = super::is_listable(r).then(|| format!("{definition}List"));
            kinds.push((definition.clone(), r));
            entries.push(KindEntry { definition, list });
        }

        let mut defs: BTreeMap<String, Value> =
            generator.take_definitions(false).into_iter().collect();
        defs.extend(custom);
        for (definition, r) in &kinds {
            if let Some(Value::Object(schema)) = defs.get_mut(definition) {
                schema.insert(
                    "x-kubernetes-group-version-kind".into(),
                    json!([gvk(&r.group, &r.version, &r.kind)]),
                );
            }
        }
        for (entry, (_, r)) in entries.iter().zip(&kinds) {
            if let Some(list) = &entry.list {
                defs.insert(list.clone(), list_schema(r, &entry.definition));
            }
        }
        if let Some(Value::Object(status)) = defs.get_mut(STATUS) {
            status.insert(
                "x-kubernetes-group-version-kind".into(),
                json!([gvk("", "v1", "Status")]),
            );
        }
        for (definition, property, strategy, merge_key) in PATCH_STRATEGIES {
            if let Some(prop) = defs
                .get_mut(*definition)
                .and_then(|d| d.get_mut("properties"))
                .and_then(|p| p.get_mut(*property))
                .and_then(Value::as_object_mut)
            {
                if let Some(key) = merge_key {
                    prop.insert(
                        "x-kubernetes-patch-merge-key".into(),
                        Value::String((*key).into()),
                    );
                }
                prop.insert(
                    "x-kubernetes-patch-strategy".into(),
                    Value::String((*strategy).into()),
                );
            }
        }
        // Upstream publishes these two with `oneOf` their JSON types (v3;
        // the v2 rendering turns that into `type: string`), not with the
        // int-or-string extension; `kubectl explain` then names them.
        if let Some(Value::Object(ios)) = defs.get_mut(INT_OR_STRING) {
            ios.remove("x-kubernetes-int-or-string");
            ios.insert(
                "oneOf".into(),
                json!([{"type": "integer"}, {"type": "string"}]),
            );
            ios.insert("format".into(), "int-or-string".into());
        }
        if let Some(Value::Object(q)) = defs.get_mut(QUANTITY) {
            q.remove("x-kubernetes-int-or-string");
            q.insert(
                "oneOf".into(),
                json!([{"type": "string"}, {"type": "number"}]),
            );
        }
        (Catalog { defs }, entries)
    }
}

pub(super) fn gvk(group: &str, version: &str, kind: &str) -> Value {
    json!({"group": group, "kind": kind, "version": version})
}

pub(super) fn reference(name: &str) -> Value {
    json!({ "$ref": format!("{REF_PREFIX}{name}") })
}

fn described_reference(name: &str, description: &str) -> Value {
    json!({ "$ref": format!("{REF_PREFIX}{name}"), "description": description })
}

/// A custom resource's schema as upstream publishes it: the CRD's
/// `openAPIV3Schema` with `apiVersion`, `kind` and an ObjectMeta `metadata`.
fn custom_kind_schema(crd_schema: Option<&Value>) -> Value {
    let mut schema = match crd_schema {
        Some(Value::Object(m)) => m.clone(),
        _ => {
            let mut m = Map::new();
            m.insert(
                "x-kubernetes-preserve-unknown-fields".into(),
                Value::Bool(true),
            );
            m
        }
    };
    let own_props = match schema.remove("properties") {
        Some(Value::Object(p)) => p,
        _ => Map::new(),
    };
    let mut props = Map::new();
    props.insert(
        "apiVersion".into(),
        json!({"description": API_VERSION_DESCRIPTION, "type": "string"}),
    );
    props.insert(
        "kind".into(),
        json!({"description": KIND_DESCRIPTION, "type": "string"}),
    );
    props.insert(
        "metadata".into(),
        described_reference(OBJECT_META, METADATA_DESCRIPTION),
    );
    for (k, v) in own_props {
        if !matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
            props.insert(k, v);
        }
    }
    schema.insert("type".into(), "object".into());
    schema.insert("properties".into(), Value::Object(props));
    Value::Object(schema)
}

fn list_schema(r: &ServedResource, item_definition: &str) -> Value {
    let list_kind = format!("{}List", r.kind);
    json!({
        "description": format!("{list_kind} is a list of {}.", r.kind),
        "type": "object",
        "properties": {
            "apiVersion": {"description": API_VERSION_DESCRIPTION, "type": "string"},
            "items": {
                "description": format!("List of {}.", r.plural),
                "type": "array",
                "items": reference(item_definition),
            },
            "kind": {"description": KIND_DESCRIPTION, "type": "string"},
            "metadata": described_reference(LIST_META, LIST_METADATA_DESCRIPTION),
        },
        "required": ["items"],
        "x-kubernetes-group-version-kind": [gvk(&r.group, &r.version, &list_kind)],
    })
}

/// Calls `f` with the component name of every `$ref` inside `v`.
pub(super) fn for_each_ref(v: &Value, f: &mut impl FnMut(&str)) {
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                match (k.as_str(), child) {
                    ("$ref", Value::String(r)) => {
                        if let Some(name) = r.strip_prefix(REF_PREFIX) {
                            f(name);
                        }
                    }
                    _ => for_each_ref(child, f),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| for_each_ref(i, f)),
        _ => {}
    }
}

/// (group, version, kind) of every built-in kind the catalog knows.
#[cfg(test)]
pub(super) fn builtin_gvks() -> Vec<(&'static str, &'static str, &'static str)> {
    BUILTINS
        .iter()
        .map(|b| (b.group, b.version, b.kind))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_table_has_unique_gvks_and_upstream_names() {
        for (i, b) in BUILTINS.iter().enumerate() {
            assert!(
                !BUILTINS[..i]
                    .iter()
                    .any(|o| o.group == b.group && o.version == b.version && o.kind == b.kind),
                "duplicate {}/{}/{}",
                b.group,
                b.version,
                b.kind
            );
            let name = (b.definition)();
            assert!(name.starts_with("io.k8s."), "{name}");
            assert!(
                name.ends_with(&format!(".{}.{}", b.version, b.kind)),
                "{name}"
            );
        }
    }

    #[test]
    fn custom_names_reverse_the_group() {
        assert_eq!(
            custom_definition_name("stable.example.com", "v1", "CronTab"),
            "com.example.stable.v1.CronTab"
        );
    }
}
