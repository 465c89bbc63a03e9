//! Table-driven tests of `validate_create`/`validate_update`: realistic
//! manifests (as `kubectl create ... --dry-run=client -o json` prints them,
//! plus the namespace the server fills in) must pass, and each broken
//! variant must yield upstream's exact `field: message`.

use serde_json::{Value, json};

use super::{Cause, validate_create, validate_ephemeral_update, validate_update};

fn msgs(causes: &[Cause]) -> Vec<String> {
    causes
        .iter()
        .map(|c| format!("{}: {}", c.field, c.message))
        .collect()
}

/// `obj` with the JSON pointer `ptr` set to `v` (creating objects on the way).
fn with(mut obj: Value, ptr: &str, v: Value) -> Value {
    let mut cur = &mut obj;
    let parts: Vec<&str> = ptr.trim_start_matches('/').split('/').collect();
    for (i, p) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        cur = match cur {
            Value::Object(m) => {
                if last {
                    m.insert((*p).to_string(), v);
                    return obj;
                }
                m.entry((*p).to_string()).or_insert_with(|| json!({}))
            }
            Value::Array(a) => {
                let Ok(idx) = p.parse::<usize>() else {
                    return obj;
                };
                let Some(slot) = a.get_mut(idx) else {
                    return obj;
                };
                if last {
                    *slot = v;
                    return obj;
                }
                slot
            }
            _ => return obj,
        };
    }
    obj
}

/// `obj` without the member at `ptr`.
fn without(mut obj: Value, ptr: &str) -> Value {
    if let Some((parent, last)) = ptr.rsplit_once('/')
        && let Some(Value::Object(m)) = obj.pointer_mut(parent)
    {
        m.shift_remove(last);
    }
    obj
}

fn pod() -> Value {
    json!({"kind":"Pod","apiVersion":"v1","metadata":{"name":"nginx","namespace":"default","creationTimestamp":null,"labels":{"run":"nginx"}},
        "spec":{"containers":[{"name":"nginx","image":"nginx","resources":{}}],"restartPolicy":"Always","dnsPolicy":"ClusterFirst"},"status":{}})
}

fn rich_pod() -> Value {
    json!({"apiVersion":"v1","kind":"Pod","metadata":{"name":"web-0","namespace":"default","labels":{"app.kubernetes.io/name":"web"},"annotations":{"example.com/note":"x"},
        "ownerReferences":[{"apiVersion":"apps/v1","kind":"ReplicaSet","name":"web-abc","uid":"d9607e19-f88f-11e6-a518-42010a800195","controller":true,"blockOwnerDeletion":true}],
        "finalizers":["example.com/cleanup"]},
      "spec":{
        "initContainers":[{"name":"init","image":"busybox:1.36","command":["sh","-c","true"]}],
        "containers":[{"name":"web","image":"nginx:1.27","imagePullPolicy":"IfNotPresent",
          "ports":[{"name":"http","containerPort":80,"protocol":"TCP"},{"containerPort":8443,"protocol":"UDP"}],
          "env":[{"name":"MODE","value":"prod"},{"name":"POD_IP","valueFrom":{"fieldRef":{"apiVersion":"v1","fieldPath":"status.podIP"}}},
                 {"name":"PASS","valueFrom":{"secretKeyRef":{"name":"db","key":"password"}}},{"name":"1weird.name-OK","value":"x"}],
          "envFrom":[{"configMapRef":{"name":"cfg"}}],
          "resources":{"requests":{"cpu":"100m","memory":"64Mi"},"limits":{"cpu":"1","memory":"128Mi","nvidia.com/gpu":"1"}},
          "volumeMounts":[{"name":"data","mountPath":"/data"},{"name":"cfg","mountPath":"/etc/cfg","readOnly":true,"subPath":"app"}],
          "livenessProbe":{"httpGet":{"path":"/healthz","port":"http","scheme":"HTTP"},"initialDelaySeconds":5,"periodSeconds":10,"successThreshold":1,"failureThreshold":3,"timeoutSeconds":1},
          "readinessProbe":{"tcpSocket":{"port":80},"successThreshold":2},
          "lifecycle":{"preStop":{"exec":{"command":["sleep","5"]}}},
          "terminationMessagePath":"/dev/termination-log","terminationMessagePolicy":"File"}],
        "volumes":[{"name":"data","emptyDir":{"sizeLimit":"1Gi"}},{"name":"cfg","configMap":{"name":"cfg","defaultMode":420,"items":[{"key":"a","path":"app/a"}]}}],
        "restartPolicy":"Always","terminationGracePeriodSeconds":30,"activeDeadlineSeconds":600,"dnsPolicy":"ClusterFirst",
        "nodeSelector":{"kubernetes.io/os":"linux"},"serviceAccountName":"default","hostname":"web-0","subdomain":"web",
        "tolerations":[{"key":"node.kubernetes.io/not-ready","operator":"Exists","effect":"NoExecute","tolerationSeconds":300},{"operator":"Exists"},{"key":"k","operator":"Equal","value":"v","effect":"NoSchedule"}],
        "securityContext":{"runAsUser":1000,"fsGroup":2000},"priorityClassName":"high","enableServiceLinks":true}})
}

fn deployment() -> Value {
    json!({"kind":"Deployment","apiVersion":"apps/v1","metadata":{"name":"web","namespace":"default","creationTimestamp":null,"labels":{"app":"web"}},
        "spec":{"replicas":2,"selector":{"matchLabels":{"app":"web"}},"template":{"metadata":{"creationTimestamp":null,"labels":{"app":"web"}},
        "spec":{"containers":[{"name":"nginx","image":"nginx","ports":[{"containerPort":80}],"resources":{}}]}},"strategy":{}},"status":{}})
}

fn stateful_set() -> Value {
    json!({"apiVersion":"apps/v1","kind":"StatefulSet","metadata":{"name":"web","namespace":"default"},
        "spec":{"serviceName":"nginx","replicas":2,"selector":{"matchLabels":{"app":"nginx"}},
          "template":{"metadata":{"labels":{"app":"nginx"}},"spec":{"containers":[{"name":"nginx","image":"registry.k8s.io/nginx-slim:0.24",
            "ports":[{"containerPort":80,"name":"web"}],"volumeMounts":[{"name":"www","mountPath":"/usr/share/nginx/html"}]}]}},
          "volumeClaimTemplates":[{"metadata":{"name":"www"},"spec":{"accessModes":["ReadWriteOnce"],"resources":{"requests":{"storage":"1Gi"}}}}]}})
}

fn daemon_set() -> Value {
    json!({"apiVersion":"apps/v1","kind":"DaemonSet","metadata":{"name":"agent","namespace":"kube-system"},
        "spec":{"selector":{"matchExpressions":[{"key":"name","operator":"In","values":["agent"]}]},
          "template":{"metadata":{"labels":{"name":"agent"}},"spec":{"hostNetwork":true,"tolerations":[{"operator":"Exists"}],
            "containers":[{"name":"agent","image":"busybox","ports":[{"containerPort":9100,"hostPort":9100}],
              "volumeMounts":[{"name":"proc","mountPath":"/host/proc","readOnly":true}]}],
            "volumes":[{"name":"proc","hostPath":{"path":"/proc","type":"Directory"}}]}},
          "updateStrategy":{"type":"RollingUpdate","rollingUpdate":{"maxUnavailable":1,"maxSurge":0}}}})
}

fn replica_set() -> Value {
    json!({"apiVersion":"apps/v1","kind":"ReplicaSet","metadata":{"name":"fe","namespace":"default"},
        "spec":{"replicas":3,"selector":{"matchLabels":{"tier":"frontend"}},"template":{"metadata":{"labels":{"tier":"frontend"}},
        "spec":{"containers":[{"name":"php","image":"gcr.io/google_samples/gb-frontend:v3"}]}}}})
}

fn rc() -> Value {
    json!({"apiVersion":"v1","kind":"ReplicationController","metadata":{"name":"nginx","namespace":"default"},
        "spec":{"replicas":3,"selector":{"app":"nginx"},"template":{"metadata":{"name":"nginx","labels":{"app":"nginx"}},
        "spec":{"containers":[{"name":"nginx","image":"nginx","ports":[{"containerPort":80}]}]}}}})
}

fn job() -> Value {
    json!({"kind":"Job","apiVersion":"batch/v1","metadata":{"name":"pi","namespace":"default","creationTimestamp":null},
        "spec":{"template":{"metadata":{"creationTimestamp":null},"spec":{"containers":[{"name":"pi","image":"perl:5.34.0","command":["perl","-Mbignum=bpi","-wle","print bpi(2000)"],"resources":{}}],"restartPolicy":"Never"}},"backoffLimit":4},"status":{}})
}

fn cron_job() -> Value {
    json!({"kind":"CronJob","apiVersion":"batch/v1","metadata":{"name":"hello","namespace":"default","creationTimestamp":null},
        "spec":{"jobTemplate":{"metadata":{"name":"hello","creationTimestamp":null},"spec":{"template":{"metadata":{"creationTimestamp":null},
        "spec":{"containers":[{"name":"hello","image":"busybox","command":["date"],"resources":{}}],"restartPolicy":"OnFailure"}}}},
        "schedule":"*/1 * * * *","timeZone":"Europe/Berlin","concurrencyPolicy":"Forbid"},"status":{}})
}

fn service() -> Value {
    json!({"kind":"Service","apiVersion":"v1","metadata":{"name":"web","namespace":"default","creationTimestamp":null,"labels":{"app":"web"}},
        "spec":{"ports":[{"name":"80-8080","protocol":"TCP","port":80,"targetPort":8080}],"selector":{"app":"web"},"type":"ClusterIP"},"status":{"loadBalancer":{}}})
}

fn crd() -> Value {
    json!({"apiVersion":"apiextensions.k8s.io/v1","kind":"CustomResourceDefinition","metadata":{"name":"crontabs.stable.example.com"},
        "spec":{"group":"stable.example.com","versions":[{"name":"v1","served":true,"storage":true,"schema":{"openAPIV3Schema":{"type":"object",
          "properties":{"spec":{"type":"object","properties":{"cronSpec":{"type":"string"},"image":{"type":"string"},"replicas":{"type":"integer"}}}}}}},
          {"name":"v1beta1","served":true,"storage":false,"schema":{"openAPIV3Schema":{"type":"object","x-kubernetes-preserve-unknown-fields":true}}}],
        "scope":"Namespaced","names":{"plural":"crontabs","singular":"crontab","kind":"CronTab","shortNames":["ct"]}}})
}

/// (group, kind, object) that must validate cleanly.
fn valid_objects() -> Vec<(&'static str, &'static str, Value)> {
    vec![
        ("", "Pod", pod()),
        ("", "Pod", rich_pod()),
        ("apps", "Deployment", deployment()),
        ("apps", "StatefulSet", stateful_set()),
        ("apps", "DaemonSet", daemon_set()),
        ("apps", "ReplicaSet", replica_set()),
        ("", "ReplicationController", rc()),
        ("batch", "Job", job()),
        ("batch", "CronJob", cron_job()),
        ("", "Service", service()),
        (
            "",
            "Service",
            json!({"kind":"Service","apiVersion":"v1","metadata":{"name":"headless","namespace":"default"},"spec":{"selector":{"app":"headless"},"clusterIP":"None","type":"ClusterIP"}}),
        ),
        (
            "",
            "Service",
            json!({"kind":"Service","apiVersion":"v1","metadata":{"name":"ext","namespace":"default"},"spec":{"type":"ExternalName","externalName":"example.com."}}),
        ),
        (
            "",
            "Service",
            json!({"kind":"Service","apiVersion":"v1","metadata":{"name":"lb","namespace":"default"},"spec":{"type":"LoadBalancer","clusterIP":"10.43.0.20","clusterIPs":["10.43.0.20"],
            "ports":[{"name":"http","port":80,"targetPort":"http","nodePort":30080,"protocol":"TCP"},{"name":"dns","port":53,"protocol":"UDP"},{"name":"dns-tcp","port":53,"protocol":"TCP"}],
            "sessionAffinity":"ClientIP","externalTrafficPolicy":"Local","ipFamilies":["IPv4"],"ipFamilyPolicy":"SingleStack"}}),
        ),
        (
            "",
            "ConfigMap",
            json!({"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"cfg","namespace":"default","creationTimestamp":null},"data":{"a":"b","app.properties":"x=1","KEY_NAME":""},"binaryData":{"blob":"AAEC"}}),
        ),
        (
            "",
            "Secret",
            json!({"kind":"Secret","apiVersion":"v1","metadata":{"name":"s","namespace":"default","creationTimestamp":null},"data":{"password":"eA=="}}),
        ),
        (
            "",
            "Secret",
            json!({"kind":"Secret","apiVersion":"v1","metadata":{"name":"tls","namespace":"default"},"type":"kubernetes.io/tls","data":{"tls.crt":"Y2VydA==","tls.key":"a2V5"}}),
        ),
        (
            "",
            "Secret",
            json!({"kind":"Secret","apiVersion":"v1","metadata":{"name":"reg","namespace":"default"},"type":"kubernetes.io/dockerconfigjson",
            "data":{".dockerconfigjson":"eyJhdXRocyI6eyJyZWcuZXhhbXBsZS5jb20iOnsidXNlcm5hbWUiOiJ1IiwicGFzc3dvcmQiOiJwIiwiYXV0aCI6ImRUcHcifX19"}}),
        ),
        (
            "",
            "Secret",
            json!({"kind":"Secret","apiVersion":"v1","metadata":{"name":"sa-token","namespace":"default","annotations":{"kubernetes.io/service-account.name":"default"}},"type":"kubernetes.io/service-account-token"}),
        ),
        (
            "",
            "Secret",
            json!({"kind":"Secret","apiVersion":"v1","metadata":{"name":"basic","namespace":"default"},"type":"kubernetes.io/basic-auth","stringData":{"username":"admin"}}),
        ),
        (
            "",
            "Namespace",
            json!({"kind":"Namespace","apiVersion":"v1","metadata":{"name":"dev","creationTimestamp":null},"spec":{"finalizers":["kubernetes"]},"status":{}}),
        ),
        (
            "",
            "ServiceAccount",
            json!({"kind":"ServiceAccount","apiVersion":"v1","metadata":{"name":"sa","namespace":"default"}}),
        ),
        (
            "",
            "Node",
            json!({"kind":"Node","apiVersion":"v1","metadata":{"name":"node-1","labels":{"kubernetes.io/hostname":"node-1"}},"spec":{"podCIDR":"10.42.0.0/24","podCIDRs":["10.42.0.0/24"],"taints":[{"key":"node-role.kubernetes.io/control-plane","effect":"NoSchedule"}]}}),
        ),
        (
            "",
            "Event",
            json!({"kind":"Event","apiVersion":"v1","metadata":{"name":"nginx.17a8b3c1d2e3f4a5","namespace":"default"},"involvedObject":{"kind":"Pod","namespace":"default","name":"nginx","uid":"u"},"reason":"Pulled","message":"ok","source":{"component":"kubelet","host":"node-1"},"type":"Normal","count":1}),
        ),
        (
            "events.k8s.io",
            "Event",
            json!({"kind":"Event","apiVersion":"events.k8s.io/v1","metadata":{"name":"nginx.17a8","namespace":"default"},"eventTime":"2024-01-01T00:00:00.000000Z","reportingController":"default-scheduler","reportingInstance":"default-scheduler-node-1","action":"Binding","reason":"Scheduled","regarding":{"kind":"Pod","namespace":"default","name":"nginx"},"note":"Successfully assigned","type":"Normal"}),
        ),
        (
            "",
            "Endpoints",
            json!({"kind":"Endpoints","apiVersion":"v1","metadata":{"name":"web","namespace":"default"},"subsets":[{"addresses":[{"ip":"10.42.0.5","nodeName":"node-1","targetRef":{"kind":"Pod","name":"web-0","namespace":"default"}}],"ports":[{"name":"http","port":8080,"protocol":"TCP"},{"name":"metrics","port":9090,"protocol":"TCP"}]}]}),
        ),
        (
            "discovery.k8s.io",
            "EndpointSlice",
            json!({"kind":"EndpointSlice","apiVersion":"discovery.k8s.io/v1","metadata":{"name":"web-abc","namespace":"default","labels":{"kubernetes.io/service-name":"web"}},"addressType":"IPv4","endpoints":[{"addresses":["10.42.0.5"],"conditions":{"ready":true},"nodeName":"node-1"}],"ports":[{"name":"http","port":8080,"protocol":"TCP"}]}),
        ),
        (
            "coordination.k8s.io",
            "Lease",
            json!({"kind":"Lease","apiVersion":"coordination.k8s.io/v1","metadata":{"name":"node-1","namespace":"kube-node-lease"},"spec":{"holderIdentity":"node-1","leaseDurationSeconds":40}}),
        ),
        (
            "",
            "PersistentVolume",
            json!({"kind":"PersistentVolume","apiVersion":"v1","metadata":{"name":"pv0001"},"spec":{"capacity":{"storage":"5Gi"},"accessModes":["ReadWriteOnce"],"persistentVolumeReclaimPolicy":"Retain","storageClassName":"local-path","hostPath":{"path":"/mnt/data"}}}),
        ),
        (
            "",
            "PersistentVolumeClaim",
            json!({"kind":"PersistentVolumeClaim","apiVersion":"v1","metadata":{"name":"data","namespace":"default"},"spec":{"accessModes":["ReadWriteOnce"],"resources":{"requests":{"storage":"1Gi"}},"storageClassName":"local-path","volumeMode":"Filesystem"}}),
        ),
        (
            "storage.k8s.io",
            "StorageClass",
            json!({"kind":"StorageClass","apiVersion":"storage.k8s.io/v1","metadata":{"name":"local-path","annotations":{"storageclass.kubernetes.io/is-default-class":"true"}},"provisioner":"rancher.io/local-path","reclaimPolicy":"Delete","volumeBindingMode":"WaitForFirstConsumer"}),
        ),
        (
            "policy",
            "PodDisruptionBudget",
            json!({"kind":"PodDisruptionBudget","apiVersion":"policy/v1","metadata":{"name":"my-pdb","namespace":"default"},"spec":{"minAvailable":1,"selector":{"matchLabels":{"app":"rails"}}}}),
        ),
        (
            "policy",
            "PodDisruptionBudget",
            json!({"kind":"PodDisruptionBudget","apiVersion":"policy/v1","metadata":{"name":"pct","namespace":"default"},"spec":{"maxUnavailable":"50%","selector":{"matchLabels":{"app":"rails"}}}}),
        ),
        (
            "autoscaling",
            "HorizontalPodAutoscaler",
            json!({"kind":"HorizontalPodAutoscaler","apiVersion":"autoscaling/v2","metadata":{"name":"web","namespace":"default"},"spec":{"scaleTargetRef":{"kind":"Deployment","name":"web","apiVersion":"apps/v1"},"minReplicas":2,"maxReplicas":5,"metrics":[{"type":"Resource","resource":{"name":"cpu","target":{"type":"Utilization","averageUtilization":80}}}]}}),
        ),
        (
            "networking.k8s.io",
            "Ingress",
            json!({"kind":"Ingress","apiVersion":"networking.k8s.io/v1","metadata":{"name":"simple","namespace":"default","creationTimestamp":null},"spec":{"ingressClassName":"traefik","rules":[{"host":"foo.com","http":{"paths":[{"path":"/bar","pathType":"Exact","backend":{"service":{"name":"svc1","port":{"number":8080}}}},{"path":"/","pathType":"Prefix","backend":{"service":{"name":"svc2","port":{"name":"http"}}}}]}},{"host":"*.example.com","http":{"paths":[{"pathType":"ImplementationSpecific","backend":{"service":{"name":"svc3","port":{"number":80}}}}]}}],"tls":[{"hosts":["foo.com"],"secretName":"foo-tls"}]},"status":{"loadBalancer":{}}}),
        ),
        (
            "networking.k8s.io",
            "IngressClass",
            json!({"kind":"IngressClass","apiVersion":"networking.k8s.io/v1","metadata":{"name":"traefik"},"spec":{"controller":"traefik.io/ingress-controller"}}),
        ),
        (
            "networking.k8s.io",
            "NetworkPolicy",
            json!({"kind":"NetworkPolicy","apiVersion":"networking.k8s.io/v1","metadata":{"name":"allow","namespace":"default"},"spec":{"podSelector":{"matchLabels":{"role":"db"}},"policyTypes":["Ingress","Egress"],
            "ingress":[{"from":[{"ipBlock":{"cidr":"172.17.0.0/16","except":["172.17.1.0/24"]}},{"namespaceSelector":{"matchLabels":{"project":"myproject"}},"podSelector":{"matchLabels":{"role":"frontend"}}}],"ports":[{"protocol":"TCP","port":6379}]}],
            "egress":[{"to":[{"ipBlock":{"cidr":"10.0.0.0/24"}}],"ports":[{"protocol":"TCP","port":5978}]}]}}),
        ),
        (
            "rbac.authorization.k8s.io",
            "Role",
            json!({"kind":"Role","apiVersion":"rbac.authorization.k8s.io/v1","metadata":{"name":"pod-reader","namespace":"default","creationTimestamp":null},"rules":[{"verbs":["get","list"],"apiGroups":[""],"resources":["pods"]}]}),
        ),
        (
            "rbac.authorization.k8s.io",
            "ClusterRole",
            json!({"kind":"ClusterRole","apiVersion":"rbac.authorization.k8s.io/v1","metadata":{"name":"system:controller:foo"},"rules":[{"verbs":["get"],"nonResourceURLs":["/healthz"]},{"verbs":["*"],"apiGroups":["*"],"resources":["*"]}]}),
        ),
        (
            "rbac.authorization.k8s.io",
            "RoleBinding",
            json!({"kind":"RoleBinding","apiVersion":"rbac.authorization.k8s.io/v1","metadata":{"name":"rb","namespace":"default","creationTimestamp":null},"roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"Role","name":"pod-reader"},"subjects":[{"kind":"User","apiGroup":"rbac.authorization.k8s.io","name":"bob"},{"kind":"ServiceAccount","name":"default"}]}),
        ),
        (
            "rbac.authorization.k8s.io",
            "ClusterRoleBinding",
            json!({"kind":"ClusterRoleBinding","apiVersion":"rbac.authorization.k8s.io/v1","metadata":{"name":"crb"},"roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"ClusterRole","name":"view"},"subjects":[{"kind":"ServiceAccount","name":"sa","namespace":"default"},{"kind":"Group","apiGroup":"rbac.authorization.k8s.io","name":"system:authenticated"}]}),
        ),
        (
            "scheduling.k8s.io",
            "PriorityClass",
            json!({"kind":"PriorityClass","apiVersion":"scheduling.k8s.io/v1","metadata":{"name":"high","creationTimestamp":null},"value":1000,"globalDefault":false,"preemptionPolicy":"PreemptLowerPriority"}),
        ),
        (
            "scheduling.k8s.io",
            "PriorityClass",
            json!({"kind":"PriorityClass","apiVersion":"scheduling.k8s.io/v1","metadata":{"name":"system-node-critical"},"value":2000001000}),
        ),
        (
            "",
            "ResourceQuota",
            json!({"kind":"ResourceQuota","apiVersion":"v1","metadata":{"name":"q","namespace":"default"},"spec":{"hard":{"cpu":"1","memory":"1G","pods":"2","requests.storage":"10Gi","count/deployments.apps":"5"}}}),
        ),
        (
            "",
            "LimitRange",
            json!({"kind":"LimitRange","apiVersion":"v1","metadata":{"name":"lr","namespace":"default"},"spec":{"limits":[{"type":"Container","default":{"cpu":"500m"},"defaultRequest":{"cpu":"250m"},"max":{"memory":"1Gi"}}]}}),
        ),
        (
            "",
            "PodTemplate",
            json!({"kind":"PodTemplate","apiVersion":"v1","metadata":{"name":"pt","namespace":"default"},"template":{"metadata":{"labels":{"a":"b"}},"spec":{"containers":[{"name":"c","image":"busybox"}]}}}),
        ),
        ("apiextensions.k8s.io", "CustomResourceDefinition", crd()),
    ]
}

#[test]
fn realistic_manifests_pass() {
    for (group, kind, obj) in valid_objects() {
        let causes = validate_create(group, kind, &obj);
        assert!(causes.is_empty(), "{group}/{kind}: {:#?}", msgs(&causes));
        // An unchanged update is always allowed.
        let causes = validate_update(group, kind, &obj, &obj);
        assert!(
            causes.is_empty(),
            "update {group}/{kind}: {:#?}",
            msgs(&causes)
        );
    }
}

const SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const DNS1035_MSG: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";
const LABEL_VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";
const NAME_PART_MSG: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
const CONFIG_KEY_MSG: &str = "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')";

/// (group, kind, object, exact expected causes as `field: message`).
fn invalid_cases() -> Vec<(&'static str, &'static str, Value, Vec<String>)> {
    let s = |x: &str| x.to_string();
    vec![
        // ObjectMeta
        (
            "",
            "ConfigMap",
            json!({"metadata":{"namespace":"default"}}),
            vec![s(
                "metadata.name: Required value: name or generateName is required",
            )],
        ),
        (
            "",
            "ConfigMap",
            json!({"metadata":{"name":"Foo","namespace":"default"}}),
            vec![format!(
                "metadata.name: Invalid value: \"Foo\": {SUBDOMAIN_MSG}"
            )],
        ),
        (
            "",
            "ConfigMap",
            json!({"metadata":{"name":"a"}}),
            vec![s("metadata.namespace: Required value")],
        ),
        (
            "",
            "ConfigMap",
            json!({"metadata":{"name":"a","namespace":"Bad_NS"}}),
            vec![format!(
                "metadata.namespace: Invalid value: \"Bad_NS\": {LABEL_MSG}"
            )],
        ),
        (
            "",
            "Namespace",
            json!({"metadata":{"name":"a.b"}}),
            vec![s(
                "metadata.name: Invalid value: \"a.b\": must not contain dots",
            )],
        ),
        (
            "",
            "Service",
            with(service(), "/metadata/name", json!("1web")),
            vec![format!(
                "metadata.name: Invalid value: \"1web\": {DNS1035_MSG}"
            )],
        ),
        (
            "",
            "ConfigMap",
            json!({"metadata":{"name":"a","namespace":"default","labels":{"app":"bad value"}}}),
            vec![format!(
                "metadata.labels: Invalid value: \"bad value\": {LABEL_VALUE_MSG}"
            )],
        ),
        (
            "",
            "ConfigMap",
            json!({"metadata":{"name":"a","namespace":"default","labels":{"-bad":"x"}}}),
            vec![format!(
                "metadata.labels: Invalid value: \"-bad\": {NAME_PART_MSG}"
            )],
        ),
        (
            "",
            "ConfigMap",
            json!({"metadata":{"name":"a","namespace":"default","annotations":{"big":"x".repeat(262_142)}}}),
            vec![s(
                "metadata.annotations: Too long: must have at most 262144 bytes",
            )],
        ),
        (
            "",
            "ConfigMap",
            json!({"metadata":{"name":"a","namespace":"default","ownerReferences":[{"apiVersion":"v1","kind":"Pod","name":"p"}]}}),
            vec![s(
                "metadata.ownerReferences[0].uid: Invalid value: \"\": must not be empty",
            )],
        ),
        (
            "",
            "ConfigMap",
            json!({"metadata":{"name":"a","namespace":"default","finalizers":["bad/fin/x"]}}),
            vec![s(
                "metadata.finalizers[0]: Invalid value: \"bad/fin/x\": a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
            )],
        ),
        // Pod
        (
            "",
            "Pod",
            with(pod(), "/spec/containers", json!([])),
            vec![s("spec.containers: Required value")],
        ),
        (
            "",
            "Pod",
            with(pod(), "/spec/containers/0/image", json!("")),
            vec![s("spec.containers[0].image: Required value")],
        ),
        (
            "",
            "Pod",
            with(pod(), "/spec/restartPolicy", json!("Sometimes")),
            vec![s(
                "spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\"",
            )],
        ),
        (
            "",
            "Pod",
            with(pod(), "/spec/dnsPolicy", json!("Bogus")),
            vec![s(
                "spec.dnsPolicy: Unsupported value: \"Bogus\": supported values: \"ClusterFirstWithHostNet\", \"ClusterFirst\", \"Default\", \"None\"",
            )],
        ),
        (
            "",
            "Pod",
            with(pod(), "/spec/containers/0/name", json!("Web_1")),
            vec![format!(
                "spec.containers[0].name: Invalid value: \"Web_1\": {LABEL_MSG}"
            )],
        ),
        (
            "",
            "Pod",
            with(
                pod(),
                "/spec/initContainers",
                json!([{"name":"nginx","image":"busybox"}]),
            ),
            vec![s("spec.containers[0].name: Duplicate value: \"nginx\"")],
        ),
        (
            "",
            "Pod",
            with(
                pod(),
                "/spec/containers/0/ports",
                json!([{"containerPort":70000,"protocol":"HTTP"},{"name":"this-name-is-too-long","containerPort":80}]),
            ),
            vec![
                s(
                    "spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
                ),
                s(
                    "spec.containers[0].ports[0].protocol: Unsupported value: \"HTTP\": supported values: \"SCTP\", \"TCP\", \"UDP\"",
                ),
                s(
                    "spec.containers[0].ports[1].name: Invalid value: \"this-name-is-too-long\": must be no more than 15 characters",
                ),
            ],
        ),
        (
            "",
            "Pod",
            with(
                pod(),
                "/spec/containers/0/volumeMounts",
                json!([{"name":"x"}]),
            ),
            vec![
                s("spec.containers[0].volumeMounts[0].name: Not found: \"x\""),
                s("spec.containers[0].volumeMounts[0].mountPath: Required value"),
            ],
        ),
        (
            "",
            "Pod",
            with(
                pod(),
                "/spec/containers/0/resources",
                json!({"requests":{"cpu":"2"},"limits":{"cpu":"1"}}),
            ),
            vec![s(
                "spec.containers[0].resources.requests: Invalid value: \"2\": must be less than or equal to cpu limit of 1",
            )],
        ),
        (
            "",
            "Pod",
            with(
                pod(),
                "/spec/containers/0/resources",
                json!({"requests":{"memory":"lots","cpu":"-1"}}),
            ),
            vec![
                s(
                    "spec.containers[0].resources.requests[memory]: Invalid value: \"lots\": quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
                ),
                s(
                    "spec.containers[0].resources.requests[cpu]: Invalid value: \"-1\": must be greater than or equal to 0",
                ),
            ],
        ),
        (
            "",
            "Pod",
            with(
                pod(),
                "/spec/containers/0/env",
                json!([{"name":"A=B","value":"x"},{"name":"","value":"y"}]),
            ),
            vec![
                s(
                    "spec.containers[0].env[0].name: Invalid value: \"A=B\": a valid environment variable name must consist only of printable ASCII characters other than '='",
                ),
                s("spec.containers[0].env[1].name: Required value"),
                s(
                    "spec.containers[0].env[1].name: Invalid value: \"\": environment variable name must be non-empty",
                ),
            ],
        ),
        (
            "",
            "Pod",
            with(pod(), "/spec/terminationGracePeriodSeconds", json!(-1)),
            vec![s(
                "spec.terminationGracePeriodSeconds: Invalid value: -1: must be greater than or equal to 0",
            )],
        ),
        (
            "",
            "Pod",
            with(pod(), "/spec/activeDeadlineSeconds", json!(0)),
            vec![s(
                "spec.activeDeadlineSeconds: Invalid value: 0: must be between 1 and 2147483647, inclusive",
            )],
        ),
        (
            "",
            "Pod",
            with(
                pod(),
                "/spec/containers/0/imagePullPolicy",
                json!("Sometimes"),
            ),
            vec![s(
                "spec.containers[0].imagePullPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"IfNotPresent\", \"Never\"",
            )],
        ),
        (
            "",
            "Pod",
            with(
                pod(),
                "/spec/volumes",
                json!([{"name":"a","emptyDir":{},"hostPath":{"path":"/x"}},{"name":"a"},{"name":"B","emptyDir":{}}]),
            ),
            vec![
                s("spec.volumes[0].emptyDir: Forbidden: may not specify more than 1 volume type"),
                s("spec.volumes[1]: Required value: must specify a volume type"),
                s("spec.volumes[1].name: Duplicate value: \"a\""),
                format!("spec.volumes[2].name: Invalid value: \"B\": {LABEL_MSG}"),
            ],
        ),
        (
            "",
            "Pod",
            with(
                pod(),
                "/spec/containers/0/livenessProbe",
                json!({"exec":{"command":["true"]},"periodSeconds":-1,"successThreshold":2}),
            ),
            vec![
                s(
                    "spec.containers[0].livenessProbe.periodSeconds: Invalid value: -1: must be greater than or equal to 0",
                ),
                s("spec.containers[0].livenessProbe.successThreshold: Invalid value: 2: must be 1"),
            ],
        ),
        (
            "",
            "Pod",
            with(
                pod(),
                "/spec/tolerations",
                json!([{"key":"k","operator":"Maybe"},{"operator":"Equal","value":"v"},{"key":"k","operator":"Exists","effect":"Never"}]),
            ),
            vec![
                s(
                    "spec.tolerations[0].operator: Unsupported value: \"Maybe\": supported values: \"Equal\", \"Exists\"",
                ),
                s(
                    "spec.tolerations[1].operator: Invalid value: \"Equal\": operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
                ),
                s(
                    "spec.tolerations[2].effect: Unsupported value: \"Never\": supported values: \"NoSchedule\", \"PreferNoSchedule\", \"NoExecute\"",
                ),
            ],
        ),
        (
            "",
            "Pod",
            with(pod(), "/spec/nodeSelector", json!({"disk":"s s d"})),
            vec![format!(
                "spec.nodeSelector: Invalid value: \"s s d\": {LABEL_VALUE_MSG}"
            )],
        ),
        (
            "",
            "Pod",
            with(
                with(pod(), "/spec/hostNetwork", json!(true)),
                "/spec/containers/0/ports",
                json!([{"containerPort":80,"hostPort":8080}]),
            ),
            vec![s(
                "spec.containers[0].ports[0].containerPort: Invalid value: 80: must match `hostPort` when `hostNetwork` is true",
            )],
        ),
        // Workloads
        (
            "apps",
            "Deployment",
            with(
                deployment(),
                "/spec/template/metadata/labels",
                json!({"app":"x"}),
            ),
            vec![s(
                "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"x\"}: `selector` does not match template `labels`",
            )],
        ),
        (
            "apps",
            "Deployment",
            without(deployment(), "/spec/selector"),
            vec![
                s("spec.selector: Required value"),
                s(
                    "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"web\"}: `selector` does not match template `labels`",
                ),
            ],
        ),
        (
            "apps",
            "Deployment",
            with(deployment(), "/spec/selector", json!({})),
            vec![s(
                "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string(nil), MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: empty selector is invalid for deployment",
            )],
        ),
        (
            "apps",
            "Deployment",
            with(deployment(), "/spec/replicas", json!(-1)),
            vec![s(
                "spec.replicas: Invalid value: -1: must be greater than or equal to 0",
            )],
        ),
        (
            "apps",
            "Deployment",
            with(
                deployment(),
                "/spec/strategy",
                json!({"type":"RollingUpdate","rollingUpdate":{"maxSurge":0,"maxUnavailable":0}}),
            ),
            vec![s(
                "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: intstr.IntOrString{Type:0, IntVal:0, StrVal:\"\"}: may not be 0 when `maxSurge` is 0",
            )],
        ),
        (
            "apps",
            "Deployment",
            with(deployment(), "/spec/strategy", json!({"type":"Blue"})),
            vec![s(
                "spec.strategy: Unsupported value: apps.DeploymentStrategy{Type:\"Blue\", RollingUpdate:(*apps.RollingUpdateDeployment)(nil)}: supported values: \"Recreate\", \"RollingUpdate\"",
            )],
        ),
        (
            "apps",
            "Deployment",
            with(
                with(deployment(), "/spec/minReadySeconds", json!(10)),
                "/spec/progressDeadlineSeconds",
                json!(10),
            ),
            vec![s(
                "spec.progressDeadlineSeconds: Invalid value: 10: must be greater than minReadySeconds",
            )],
        ),
        (
            "apps",
            "Deployment",
            with(
                deployment(),
                "/spec/template/spec/restartPolicy",
                json!("Never"),
            ),
            vec![s(
                "spec.template.spec.restartPolicy: Unsupported value: \"Never\": supported values: \"Always\"",
            )],
        ),
        (
            "apps",
            "Deployment",
            with(deployment(), "/spec/revisionHistoryLimit", json!(-2)),
            vec![s(
                "spec.revisionHistoryLimit: Invalid value: -2: must be greater than or equal to 0",
            )],
        ),
        (
            "apps",
            "ReplicaSet",
            with(
                replica_set(),
                "/spec/template/spec/activeDeadlineSeconds",
                json!(5),
            ),
            vec![s(
                "spec.template.spec.activeDeadlineSeconds: Forbidden: activeDeadlineSeconds in ReplicaSet is not Supported",
            )],
        ),
        (
            "apps",
            "StatefulSet",
            with(stateful_set(), "/spec/podManagementPolicy", json!("Random")),
            vec![s(
                "spec.podManagementPolicy: Invalid value: \"Random\": must be 'OrderedReady' or 'Parallel'",
            )],
        ),
        (
            "apps",
            "StatefulSet",
            with(
                stateful_set(),
                "/spec/volumeClaimTemplates/0/spec/accessModes",
                json!([]),
            ),
            vec![s(
                "spec.volumeClaimTemplates[0].spec.accessModes: Required value: at least 1 access mode is required",
            )],
        ),
        (
            "apps",
            "DaemonSet",
            with(
                daemon_set(),
                "/spec/updateStrategy/rollingUpdate",
                json!({"maxUnavailable":1,"maxSurge":1}),
            ),
            vec![s(
                "spec.updateStrategy.rollingUpdate.maxSurge: Invalid value: intstr.IntOrString{Type:0, IntVal:1, StrVal:\"\"}: may not be set when maxUnavailable is non-zero",
            )],
        ),
        (
            "",
            "ReplicationController",
            with(rc(), "/spec/selector", json!({})),
            vec![s("spec.selector: Required value")],
        ),
        (
            "batch",
            "Job",
            with(job(), "/spec/template/spec/restartPolicy", json!("Always")),
            vec![s(
                "spec.template.spec.restartPolicy: Required value: valid values: \"OnFailure\", \"Never\"",
            )],
        ),
        (
            "batch",
            "Job",
            with(
                with(job(), "/spec/completions", json!(-1)),
                "/spec/completionMode",
                json!("Sometimes"),
            ),
            vec![
                s("spec.completions: Invalid value: -1: must be greater than or equal to 0"),
                s(
                    "spec.completionMode: Unsupported value: \"Sometimes\": supported values: \"NonIndexed\", \"Indexed\"",
                ),
            ],
        ),
        (
            "batch",
            "Job",
            with(job(), "/spec/selector", json!({"matchLabels":{"a":"b"}})),
            vec![s(
                "spec.template.metadata.labels: Invalid value: map[string]string(nil): `selector` does not match template `labels`",
            )],
        ),
        (
            "batch",
            "CronJob",
            with(cron_job(), "/spec/schedule", json!("x")),
            vec![s(
                "spec.schedule: Invalid value: \"x\": expected exactly 5 fields, found 1: [x]",
            )],
        ),
        (
            "batch",
            "CronJob",
            with(cron_job(), "/spec/schedule", json!("61 * * * *")),
            vec![s(
                "spec.schedule: Invalid value: \"61 * * * *\": end of range (61) above maximum (59): 61",
            )],
        ),
        (
            "batch",
            "CronJob",
            without(cron_job(), "/spec/schedule"),
            vec![s("spec.schedule: Required value")],
        ),
        (
            "batch",
            "CronJob",
            with(
                with(cron_job(), "/spec/timeZone", json!("Mars/../Phobos")),
                "/spec/concurrencyPolicy",
                json!("Sometimes"),
            ),
            vec![
                s(
                    "spec.timeZone: Invalid value: \"Mars/../Phobos\": unknown time zone Mars/../Phobos",
                ),
                s(
                    "spec.concurrencyPolicy: Unsupported value: \"Sometimes\": supported values: \"Allow\", \"Forbid\", \"Replace\"",
                ),
            ],
        ),
        (
            "batch",
            "CronJob",
            with(
                cron_job(),
                "/spec/jobTemplate/spec/template/spec/restartPolicy",
                json!("Always"),
            ),
            vec![s(
                "spec.jobTemplate.spec.template.spec.restartPolicy: Required value: valid values: \"OnFailure\", \"Never\"",
            )],
        ),
        (
            "batch",
            "CronJob",
            with(
                cron_job(),
                "/spec/jobTemplate/spec/template/spec/containers/0/name",
                json!("Bad"),
            ),
            vec![format!(
                "spec.jobTemplate.spec.template.spec.containers[0].name: Invalid value: \"Bad\": {LABEL_MSG}"
            )],
        ),
        // Service
        (
            "",
            "Service",
            without(service(), "/spec/ports"),
            vec![s("spec.ports: Required value")],
        ),
        (
            "",
            "Service",
            with(
                service(),
                "/spec/ports",
                json!([{"name":"a","port":0},{"port":80,"targetPort":"HTTP","protocol":"TCP"},{"name":"a","port":80,"protocol":"TCP"}]),
            ),
            vec![
                s("spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive"),
                s("spec.ports[1].name: Required value"),
                s(
                    "spec.ports[1].targetPort: Invalid value: \"HTTP\": must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)",
                ),
                s(
                    "spec.ports[1].targetPort: Invalid value: \"HTTP\": must contain at least one letter (a-z)",
                ),
                s("spec.ports[2].name: Duplicate value: \"a\""),
                s(
                    "spec.ports[2]: Duplicate value: core.ServicePort{Name:\"\", Protocol:\"TCP\", AppProtocol:(*string)(nil), Port:80, TargetPort:intstr.IntOrString{Type:0, IntVal:0, StrVal:\"\"}, NodePort:0}",
                ),
            ],
        ),
        (
            "",
            "Service",
            with(service(), "/spec/type", json!("Magic")),
            vec![s(
                "spec.type: Unsupported value: \"Magic\": supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\"",
            )],
        ),
        (
            "",
            "Service",
            json!({"metadata":{"name":"ext","namespace":"default"},"spec":{"type":"ExternalName"}}),
            vec![s("spec.externalName: Required value")],
        ),
        (
            "",
            "Service",
            with(service(), "/spec/clusterIP", json!("10.43.0.300")),
            vec![s(
                "spec.clusterIP: Invalid value: \"10.43.0.300\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
            )],
        ),
        (
            "",
            "Service",
            with(service(), "/spec/sessionAffinity", json!("Sticky")),
            vec![s(
                "spec.sessionAffinity: Unsupported value: \"Sticky\": supported values: \"ClientIP\", \"None\"",
            )],
        ),
        (
            "",
            "Service",
            with(service(), "/spec/ports/0/nodePort", json!(30001)),
            vec![s(
                "spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'",
            )],
        ),
        // ConfigMap / Secret
        (
            "",
            "ConfigMap",
            json!({"metadata":{"name":"a","namespace":"default"},"data":{"a b":"x","k":"1"},"binaryData":{"k":"AA=="}}),
            vec![
                format!("data[a b]: Invalid value: \"a b\": {CONFIG_KEY_MSG}"),
                s("data[k]: Invalid value: \"k\": duplicate of key present in binaryData"),
                s("binaryData[k]: Invalid value: \"k\": duplicate of key present in data"),
            ],
        ),
        (
            "",
            "ConfigMap",
            json!({"metadata":{"name":"a","namespace":"default"},"data":{"big":"x".repeat(1_048_577)}}),
            vec![s(": Too long: must have at most 1048576 bytes")],
        ),
        (
            "",
            "Secret",
            json!({"metadata":{"name":"a","namespace":"default"},"type":"kubernetes.io/tls","data":{"tls.crt":"eA=="}}),
            vec![s("data[tls.key]: Required value")],
        ),
        (
            "",
            "Secret",
            json!({"metadata":{"name":"a","namespace":"default"},"type":"kubernetes.io/dockerconfigjson"}),
            vec![s("data[.dockerconfigjson]: Required value")],
        ),
        (
            "",
            "Secret",
            json!({"metadata":{"name":"a","namespace":"default"},"type":"kubernetes.io/service-account-token"}),
            vec![s(
                "metadata.annotations[kubernetes.io/service-account.name]: Required value",
            )],
        ),
        (
            "",
            "Secret",
            json!({"metadata":{"name":"a","namespace":"default"},"type":"kubernetes.io/basic-auth","data":{}}),
            vec![
                s("data[username]: Required value"),
                s("data[password]: Required value"),
            ],
        ),
        // Namespace
        (
            "",
            "Namespace",
            json!({"metadata":{"name":"dev"},"spec":{"finalizers":["custom"]}}),
            vec![s(
                "spec.finalizers: Unsupported value: \"custom\": supported values: \"kubernetes\"",
            )],
        ),
        // Storage
        (
            "",
            "PersistentVolumeClaim",
            json!({"metadata":{"name":"c","namespace":"default"},"spec":{"accessModes":["ReadWriteSometimes"],"resources":{}}}),
            vec![
                s(
                    "spec.accessModes: Unsupported value: \"ReadWriteSometimes\": supported values: \"ReadOnlyMany\", \"ReadWriteMany\", \"ReadWriteOnce\", \"ReadWriteOncePod\"",
                ),
                s("spec.resources[storage]: Required value"),
            ],
        ),
        (
            "",
            "PersistentVolume",
            json!({"metadata":{"name":"pv"},"spec":{"accessModes":["ReadWriteOnce"],"hostPath":{"path":"/x"}}}),
            vec![s("spec.capacity: Required value")],
        ),
        (
            "storage.k8s.io",
            "StorageClass",
            json!({"metadata":{"name":"sc"},"reclaimPolicy":"Keep"}),
            vec![
                s("provisioner: Required value"),
                s(
                    "reclaimPolicy: Unsupported value: \"Keep\": supported values: \"Delete\", \"Retain\"",
                ),
            ],
        ),
        // Policy, autoscaling, networking, RBAC, scheduling
        (
            "policy",
            "PodDisruptionBudget",
            json!({"metadata":{"name":"p","namespace":"default"},"spec":{"minAvailable":1,"maxUnavailable":1}}),
            vec![s(
                "spec: Invalid value: policy.PodDisruptionBudgetSpec{...}: minAvailable and maxUnavailable cannot be both set",
            )],
        ),
        (
            "autoscaling",
            "HorizontalPodAutoscaler",
            json!({"metadata":{"name":"h","namespace":"default"},"spec":{"scaleTargetRef":{"kind":"Deployment","name":"web"},"minReplicas":0,"maxReplicas":3}}),
            vec![s(
                "spec.minReplicas: Invalid value: 0: must be greater than or equal to 1",
            )],
        ),
        (
            "autoscaling",
            "HorizontalPodAutoscaler",
            json!({"metadata":{"name":"h","namespace":"default"},"spec":{"scaleTargetRef":{"name":"web"},"minReplicas":5,"maxReplicas":3}}),
            vec![
                s(
                    "spec.maxReplicas: Invalid value: 3: must be greater than or equal to `minReplicas`",
                ),
                s("spec.scaleTargetRef.kind: Required value"),
            ],
        ),
        (
            "networking.k8s.io",
            "Ingress",
            json!({"metadata":{"name":"i","namespace":"default"},"spec":{"rules":[{"http":{"paths":[{"path":"/","pathType":"Glob","backend":{"service":{"name":"s","port":{"number":80}}}}]}}]}}),
            vec![s(
                "spec.rules[0].http.paths[0].pathType: Unsupported value: \"Glob\": supported values: \"Exact\", \"ImplementationSpecific\", \"Prefix\"",
            )],
        ),
        (
            "networking.k8s.io",
            "NetworkPolicy",
            json!({"metadata":{"name":"n","namespace":"default"},"spec":{"podSelector":{},"policyTypes":["Sideways"]}}),
            vec![s(
                "spec.policyTypes[0]: Unsupported value: \"Sideways\": supported values: \"Ingress\", \"Egress\"",
            )],
        ),
        (
            "rbac.authorization.k8s.io",
            "Role",
            json!({"metadata":{"name":"r","namespace":"default"},"rules":[{"apiGroups":[""],"resources":["pods"]}]}),
            vec![s(
                "rules[0].verbs: Required value: verbs must contain at least one value",
            )],
        ),
        (
            "rbac.authorization.k8s.io",
            "RoleBinding",
            json!({"metadata":{"name":"rb","namespace":"default"},"subjects":[{"kind":"Robot","name":"r2"}]}),
            vec![
                s(
                    "roleRef.apiGroup: Unsupported value: \"\": supported values: \"rbac.authorization.k8s.io\"",
                ),
                s(
                    "roleRef.kind: Unsupported value: \"\": supported values: \"Role\", \"ClusterRole\"",
                ),
                s("roleRef.name: Required value"),
                s(
                    "subjects[0].kind: Unsupported value: \"Robot\": supported values: \"ServiceAccount\", \"User\", \"Group\"",
                ),
            ],
        ),
        (
            "rbac.authorization.k8s.io",
            "ClusterRoleBinding",
            json!({"metadata":{"name":"crb"},"roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"Role","name":"x"},"subjects":[{"kind":"ServiceAccount","name":"sa"}]}),
            vec![
                s("roleRef.kind: Unsupported value: \"Role\": supported values: \"ClusterRole\""),
                s("subjects[0].namespace: Required value"),
            ],
        ),
        (
            "scheduling.k8s.io",
            "PriorityClass",
            json!({"metadata":{"name":"huge"},"value":2000000000}),
            vec![s(
                "value: Forbidden: maximum allowed value of a user defined priority is 1000000000",
            )],
        ),
        // CRD
        (
            "apiextensions.k8s.io",
            "CustomResourceDefinition",
            with(crd(), "/metadata/name", json!("x")),
            vec![s(
                "metadata.name: Invalid value: \"x\": must be spec.names.plural+\".\"+spec.group",
            )],
        ),
        (
            "apiextensions.k8s.io",
            "CustomResourceDefinition",
            with(
                with(crd(), "/spec/group", json!("example")),
                "/metadata/name",
                json!("crontabs.example"),
            ),
            vec![s(
                "spec.group: Invalid value: \"example\": should be a domain with at least one dot",
            )],
        ),
        (
            "apiextensions.k8s.io",
            "CustomResourceDefinition",
            with(crd(), "/spec/versions/1/storage", json!(true)),
            vec![s(
                "spec.versions: Invalid value: []apiextensions.CustomResourceDefinitionVersion{apiextensions.CustomResourceDefinitionVersion{Name:\"v1\", Served:true, Storage:true, ...}, apiextensions.CustomResourceDefinitionVersion{Name:\"v1beta1\", Served:true, Storage:true, ...}}: must have exactly one version marked as storage version",
            )],
        ),
        (
            "apiextensions.k8s.io",
            "CustomResourceDefinition",
            with(
                with(crd(), "/spec/scope", json!("Global")),
                "/spec/names/kind",
                json!(""),
            ),
            vec![
                s(
                    "spec.scope: Unsupported value: \"Global\": supported values: \"Cluster\", \"Namespaced\"",
                ),
                s("spec.names.kind: Required value"),
            ],
        ),
        (
            "apiextensions.k8s.io",
            "CustomResourceDefinition",
            with(crd(), "/spec/versions/1/name", json!("V1_beta")),
            vec![format!(
                "spec.versions[1].name: Invalid value: \"V1_beta\": {DNS1035_MSG}"
            )],
        ),
    ]
}

#[test]
fn invalid_objects_report_upstream_messages() {
    for (i, (group, kind, obj, want)) in invalid_cases().into_iter().enumerate() {
        let got = msgs(&validate_create(group, kind, &obj));
        assert_eq!(got, want, "case {i}: {group}/{kind}");
    }
}

#[test]
fn update_rules() {
    let s = |x: &str| x.to_string();
    let running = with(rich_pod(), "/spec/nodeName", json!("node-1"));
    let sts_changed = with(stateful_set(), "/spec/serviceName", json!("other"));
    let svc_ip = with(
        with(service(), "/spec/clusterIP", json!("10.43.0.20")),
        "/spec/clusterIPs",
        json!(["10.43.0.20"]),
    );
    let cm_immutable =
        json!({"metadata":{"name":"a","namespace":"default"},"immutable":true,"data":{"a":"1"}});
    let pvc_bound = json!({"metadata":{"name":"c","namespace":"default"},"spec":{"accessModes":["ReadWriteOnce"],"resources":{"requests":{"storage":"1Gi"}},"volumeName":"pv1","storageClassName":"local-path"},"status":{"phase":"Bound","capacity":{"storage":"1Gi"}}});
    let rb = json!({"metadata":{"name":"rb","namespace":"default"},"roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"Role","name":"a"}});
    let cases: Vec<(&str, &str, Value, Value, Vec<String>)> = vec![
        // Pods: images, lower deadlines, added tolerations are fine.
        (
            "",
            "Pod",
            running.clone(),
            with(
                running.clone(),
                "/spec/containers/0/image",
                json!("nginx:1.28"),
            ),
            vec![],
        ),
        (
            "",
            "Pod",
            running.clone(),
            with(running.clone(), "/spec/activeDeadlineSeconds", json!(300)),
            vec![],
        ),
        (
            "",
            "Pod",
            running.clone(),
            with(
                running.clone(),
                "/spec/tolerations/3",
                json!({"key":"x","operator":"Exists"}),
            ),
            vec![],
        ),
        (
            "",
            "Pod",
            running.clone(),
            with(running.clone(), "/spec/activeDeadlineSeconds", json!(900)),
            vec![s(
                "spec.activeDeadlineSeconds: Invalid value: 900: must be less than or equal to previous value",
            )],
        ),
        (
            "",
            "Pod",
            running.clone(),
            with(running.clone(), "/spec/tolerations", json!([])),
            vec![s(
                "spec.tolerations: Forbidden: existing toleration can not be modified except its tolerationSeconds",
            )],
        ),
        (
            "apps",
            "Deployment",
            deployment(),
            with(
                with(
                    deployment(),
                    "/spec/selector/matchLabels/app",
                    json!("web2"),
                ),
                "/spec/template/metadata/labels/app",
                json!("web2"),
            ),
            vec![s(
                "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{\"app\":\"web2\"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable",
            )],
        ),
        (
            "apps",
            "Deployment",
            deployment(),
            with(deployment(), "/spec/replicas", json!(5)),
            vec![],
        ),
        (
            "apps",
            "StatefulSet",
            stateful_set(),
            with(
                with(stateful_set(), "/spec/replicas", json!(5)),
                "/spec/updateStrategy",
                json!({"type":"OnDelete"}),
            ),
            vec![],
        ),
        (
            "apps",
            "StatefulSet",
            stateful_set(),
            sts_changed,
            vec![s(
                "spec: Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
            )],
        ),
        (
            "batch",
            "Job",
            job(),
            with(
                job(),
                "/spec/template/spec/containers/0/image",
                json!("perl:6"),
            ),
            vec![s(
                "spec.template: Invalid value: core.PodTemplateSpec{...}: field is immutable",
            )],
        ),
        (
            "batch",
            "Job",
            job(),
            with(job(), "/spec/backoffLimit", json!(6)),
            vec![],
        ),
        (
            "",
            "Service",
            svc_ip.clone(),
            with(
                with(svc_ip.clone(), "/spec/clusterIP", json!("10.43.0.21")),
                "/spec/clusterIPs",
                json!(["10.43.0.21"]),
            ),
            vec![s(
                "spec.clusterIPs[0]: Invalid value: []string{\"10.43.0.21\"}: may not change once set",
            )],
        ),
        (
            "",
            "Service",
            svc_ip.clone(),
            with(
                with(svc_ip.clone(), "/spec/type", json!("ExternalName")),
                "/spec/externalName",
                json!("a.example.com"),
            ),
            vec![],
        ),
        (
            "",
            "Service",
            svc_ip.clone(),
            without(
                without(svc_ip.clone(), "/spec/clusterIP"),
                "/spec/clusterIPs",
            ),
            vec![],
        ),
        (
            "",
            "ConfigMap",
            cm_immutable.clone(),
            with(cm_immutable.clone(), "/data/a", json!("2")),
            vec![s(
                "data: Forbidden: field is immutable when `immutable` is set",
            )],
        ),
        (
            "",
            "ConfigMap",
            cm_immutable.clone(),
            without(cm_immutable.clone(), "/immutable"),
            vec![s(
                "immutable: Forbidden: field is immutable when `immutable` is set",
            )],
        ),
        (
            "",
            "Secret",
            json!({"metadata":{"name":"a"},"type":"Opaque"}),
            json!({"metadata":{"name":"a"},"type":"kubernetes.io/tls"}),
            vec![s(
                "type: Invalid value: \"kubernetes.io/tls\": field is immutable",
            )],
        ),
        (
            "",
            "PersistentVolumeClaim",
            pvc_bound.clone(),
            with(
                pvc_bound.clone(),
                "/spec/resources/requests/storage",
                json!("2Gi"),
            ),
            vec![],
        ),
        (
            "",
            "PersistentVolumeClaim",
            pvc_bound.clone(),
            with(
                pvc_bound.clone(),
                "/spec/accessModes",
                json!(["ReadWriteMany"]),
            ),
            vec![s(
                "spec: Forbidden: spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims",
            )],
        ),
        (
            "",
            "PersistentVolumeClaim",
            pvc_bound.clone(),
            with(
                pvc_bound.clone(),
                "/spec/resources/requests/storage",
                json!("512Mi"),
            ),
            vec![s(
                "spec.resources.requests.storage: Forbidden: field can not be less than status.capacity",
            )],
        ),
        (
            "",
            "PersistentVolumeClaim",
            without(pvc_bound.clone(), "/spec/volumeName"),
            pvc_bound.clone(),
            vec![],
        ),
        (
            "rbac.authorization.k8s.io",
            "RoleBinding",
            rb.clone(),
            with(rb.clone(), "/roleRef/name", json!("b")),
            vec![s(
                "roleRef: Invalid value: rbac.RoleRef{APIGroup:\"rbac.authorization.k8s.io\", Kind:\"Role\", Name:\"b\"}: cannot change roleRef",
            )],
        ),
        (
            "apiextensions.k8s.io",
            "CustomResourceDefinition",
            crd(),
            with(crd(), "/spec/scope", json!("Cluster")),
            vec![s(
                "spec.scope: Invalid value: \"Cluster\": field is immutable",
            )],
        ),
        (
            "apiextensions.k8s.io",
            "CustomResourceDefinition",
            crd(),
            with(crd(), "/spec/names/shortNames", json!(["cron"])),
            vec![],
        ),
        // podCIDR may be set once, from "" to valid (the node IPAM controller does)
        (
            "",
            "Node",
            json!({"metadata":{"name":"n"}}),
            json!({"metadata":{"name":"n"},"spec":{"podCIDR":"10.42.1.0/24","podCIDRs":["10.42.1.0/24"]}}),
            vec![],
        ),
        (
            "",
            "Node",
            json!({"metadata":{"name":"n"},"spec":{"podCIDR":"10.42.1.0/24","podCIDRs":["10.42.1.0/24"]}}),
            json!({"metadata":{"name":"n"},"spec":{"podCIDR":"10.42.2.0/24","podCIDRs":["10.42.2.0/24"]}}),
            vec![s(
                "spec.podCIDRs: Forbidden: node updates may not change podCIDR except from \"\" to valid",
            )],
        ),
        // stored before podCIDRs was filled in: podCIDR alone counts as set
        (
            "",
            "Node",
            json!({"metadata":{"name":"n"},"spec":{"podCIDR":"10.42.1.0/24"}}),
            json!({"metadata":{"name":"n"},"spec":{"podCIDR":"10.42.3.0/24"}}),
            vec![s(
                "spec.podCIDRs: Forbidden: node updates may not change podCIDR except from \"\" to valid",
            )],
        ),
        (
            "storage.k8s.io",
            "StorageClass",
            json!({"metadata":{"name":"s"},"provisioner":"a.io/x","parameters":{"k":"v"}}),
            json!({"metadata":{"name":"s"},"provisioner":"b.io/x","parameters":{"k":"w"}}),
            vec![
                s("parameters: Forbidden: updates to parameters are forbidden."),
                s("provisioner: Forbidden: updates to provisioner are forbidden."),
            ],
        ),
        (
            "",
            "Namespace",
            json!({"metadata":{"name":"a"}}),
            json!({"metadata":{"name":"a","labels":{"x":"y"}},"status":{"phase":"Terminating"}}),
            vec![],
        ),
    ];
    for (i, (group, kind, old, new, want)) in cases.into_iter().enumerate() {
        let got = msgs(&validate_update(group, kind, &old, &new));
        assert_eq!(got, want, "update case {i}: {group}/{kind}");
    }
}

#[test]
fn pod_spec_change_is_forbidden_with_upstream_text() {
    let old = pod();
    let new = with(
        pod(),
        "/spec/containers/0/ports",
        json!([{"containerPort":80}]),
    );
    let got = validate_update("", "Pod", &old, &new);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].field, "spec");
    assert_eq!(got[0].reason, "FieldValueForbidden");
    assert!(got[0].message.starts_with(
        "Forbidden: pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)\n"
    ), "{}", got[0].message);
    assert!(got[0].message.contains("Containers"), "{}", got[0].message);
}

#[test]
fn reasons_match_error_types() {
    let obj = with(pod(), "/spec/restartPolicy", json!("x"));
    let c = validate_create("", "Pod", &obj);
    assert_eq!(c.first().map(|c| c.reason), Some("FieldValueNotSupported"));
    let obj = with(pod(), "/spec/containers", json!([]));
    assert_eq!(
        validate_create("", "Pod", &obj).first().map(|c| c.reason),
        Some("FieldValueRequired")
    );
}

/// Any JSON, however mistyped, yields causes or nothing — never a panic.
#[test]
fn never_panics_on_wrong_types() {
    let junk = [
        json!(null),
        json!(1),
        json!("x"),
        json!([1, 2]),
        json!({"metadata": 5, "spec": "x"}),
        json!({"metadata": {"name": 1, "labels": [1], "annotations": "a", "ownerReferences": {"a": 1}, "finalizers": [1, null]},
               "spec": {"containers": [1, null, {"name": 5, "ports": "x", "env": [{"name": null}], "resources": {"limits": {"cpu": true}, "requests": [1]}}],
                        "volumes": {"a": 1}, "selector": [1], "template": 5, "replicas": "3", "strategy": [], "ports": [null, {"port": "80"}],
                        "schedule": 5, "jobTemplate": {"spec": 1}, "versions": [null, 1], "names": 1, "rules": 3, "updateStrategy": {"rollingUpdate": "x"},
                        "accessModes": "RWO", "capacity": [], "resources": {"requests": {"storage": {}}}, "tolerations": [{"tolerationSeconds": "a"}]},
               "data": [1], "binaryData": {"a": 1}, "rules": [{"verbs": "x"}], "subjects": [5], "roleRef": "x", "type": 3}),
    ];
    let kinds = [
        ("", "Pod"),
        ("", "PodTemplate"),
        ("", "ReplicationController"),
        ("", "Service"),
        ("", "ConfigMap"),
        ("", "Secret"),
        ("", "Namespace"),
        ("", "Node"),
        ("", "Event"),
        ("events.k8s.io", "Event"),
        ("", "Endpoints"),
        ("", "PersistentVolume"),
        ("", "PersistentVolumeClaim"),
        ("", "ResourceQuota"),
        ("", "LimitRange"),
        ("apps", "Deployment"),
        ("apps", "ReplicaSet"),
        ("apps", "StatefulSet"),
        ("apps", "DaemonSet"),
        ("apps", "ControllerRevision"),
        ("batch", "Job"),
        ("batch", "CronJob"),
        ("discovery.k8s.io", "EndpointSlice"),
        ("coordination.k8s.io", "Lease"),
        ("storage.k8s.io", "StorageClass"),
        ("policy", "PodDisruptionBudget"),
        ("autoscaling", "HorizontalPodAutoscaler"),
        ("networking.k8s.io", "Ingress"),
        ("networking.k8s.io", "IngressClass"),
        ("networking.k8s.io", "NetworkPolicy"),
        ("rbac.authorization.k8s.io", "Role"),
        ("rbac.authorization.k8s.io", "ClusterRole"),
        ("rbac.authorization.k8s.io", "RoleBinding"),
        ("rbac.authorization.k8s.io", "ClusterRoleBinding"),
        ("scheduling.k8s.io", "PriorityClass"),
        ("apiextensions.k8s.io", "CustomResourceDefinition"),
        ("example.com", "Widget"),
    ];
    for (g, k) in kinds {
        for a in &junk {
            let _ = validate_create(g, k, a);
            for b in &junk {
                let _ = validate_update(g, k, a, b);
            }
        }
    }
}

#[test]
fn ephemeral_containers() {
    let dbg =
        json!({"name": "dbg", "image": "busybox", "resources": {}, "targetContainerName": "nginx"});
    let p = with(pod(), "/spec/ephemeralContainers", json!([dbg]));
    assert!(msgs(&validate_create("", "Pod", &p)).is_empty());
    let bad = with(
        pod(),
        "/spec/ephemeralContainers",
        json!([{"name": "nginx", "image": "busybox", "ports": [{"containerPort": 80}],
                "targetContainerName": "nope"}]),
    );
    assert_eq!(
        msgs(&validate_create("", "Pod", &bad)),
        vec![
            "spec.ephemeralContainers[0].name: Duplicate value: \"nginx\"",
            "spec.ephemeralContainers[0].ports: Forbidden: cannot be set for an Ephemeral Container",
            "spec.ephemeralContainers[0].targetContainerName: Not found: \"nope\"",
        ]
    );
    // added: fine; removed or changed: forbidden
    assert!(validate_ephemeral_update(&pod(), &p).is_empty());
    assert_eq!(
        msgs(&validate_ephemeral_update(&p, &pod())),
        vec![
            "spec.ephemeralContainers: Forbidden: existing ephemeral containers \"dbg\" may not be removed"
        ]
    );
    let changed = with(
        p.clone(),
        "/spec/ephemeralContainers/0/image",
        json!("other"),
    );
    assert_eq!(
        msgs(&validate_ephemeral_update(&p, &changed)),
        vec![
            "spec.ephemeralContainers: Forbidden: existing ephemeral containers \"dbg\" may not be changed"
        ]
    );
}
