"""The official Python `kubernetes` client against a real skiff server.

The Python client differs from kubectl in ways that matter to a server: it
sends JSON bodies (with a Content-Type, and sometimes none), chooses the patch
type from the body's shape, parses every error into an ApiException from the
Status body, and its watch helper parses newline-delimited events itself.
Every assertion here is what upstream kube-apiserver 1.33 answers.
"""
import json
import threading
import time
import uuid

import pytest

from conftest import wait_for
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException


@pytest.fixture(scope="module")
def api(server):
    cfg = client.Configuration()
    config.load_kube_config(config_file=server.kubeconfig, client_configuration=cfg)
    with client.ApiClient(cfg) as c:
        yield c


@pytest.fixture
def v1(api):
    return client.CoreV1Api(api)


@pytest.fixture
def apps(api):
    return client.AppsV1Api(api)


def status_body(exc):
    """The Status object carried by an ApiException."""
    assert exc.body, f"ApiException {exc.status} without a body"
    doc = json.loads(exc.body)
    assert doc.get("kind") == "Status", doc
    return doc


def continue_token(meta):
    for attr in ("var_continue", "_continue"):
        v = getattr(meta, attr, None)
        if v:
            return v
    return None


def cm(name, data=None, labels=None, rv=None):
    return client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name=name, labels=labels, resource_version=rv),
        data=data,
    )


# --------------------------------------------------------------------- CRUD


def test_configmap_crud(v1, namespace):
    created = v1.create_namespaced_config_map(namespace, cm("app-config", {"a": "1"}, {"app": "x"}))
    assert created.metadata.uid
    assert created.metadata.resource_version
    assert created.metadata.creation_timestamp is not None
    assert created.metadata.namespace == namespace
    assert created.data == {"a": "1"}

    got = v1.read_namespaced_config_map("app-config", namespace)
    assert got.metadata.uid == created.metadata.uid
    assert got.metadata.resource_version == created.metadata.resource_version

    got.data["b"] = "2"
    replaced = v1.replace_namespaced_config_map("app-config", namespace, got)
    assert replaced.data == {"a": "1", "b": "2"}
    assert int(replaced.metadata.resource_version) > int(created.metadata.resource_version)
    assert replaced.metadata.uid == created.metadata.uid

    names = [i.metadata.name for i in v1.list_namespaced_config_map(namespace).items]
    assert "app-config" in names

    st = v1.delete_namespaced_config_map("app-config", namespace)
    assert st is not None
    with pytest.raises(ApiException) as ei:
        v1.read_namespaced_config_map("app-config", namespace)
    assert ei.value.status == 404


def test_secret_crud(v1, namespace):
    s = client.V1Secret(
        metadata=client.V1ObjectMeta(name="creds"),
        string_data={"user": "admin", "password": "s3cr3t"},
    )
    created = v1.create_namespaced_secret(namespace, s)
    # stringData is write-only: merged into data (base64) and never returned.
    assert created.string_data is None
    assert created.type == "Opaque"
    assert created.data == {"user": "YWRtaW4=", "password": "czNjcjN0"}

    got = v1.read_namespaced_secret("creds", namespace)
    assert got.data == created.data

    patched = v1.patch_namespaced_secret("creds", namespace, {"data": {"extra": "eA=="}})
    assert patched.data["extra"] == "eA=="
    assert patched.data["user"] == "YWRtaW4="

    v1.delete_namespaced_secret("creds", namespace)
    with pytest.raises(ApiException) as ei:
        v1.read_namespaced_secret("creds", namespace)
    assert ei.value.status == 404


def deployment(name, replicas=1, containers=None):
    containers = containers or [client.V1Container(name="main", image="nginx:1.25")]
    return client.V1Deployment(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1DeploymentSpec(
            replicas=replicas,
            selector=client.V1LabelSelector(match_labels={"app": name}),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels={"app": name}),
                spec=client.V1PodSpec(containers=containers),
            ),
        ),
    )


def test_deployment_crud(apps, namespace):
    created = apps.create_namespaced_deployment(namespace, deployment("web", replicas=2))
    assert created.spec.replicas == 2
    assert created.metadata.generation == 1
    # Defaulting, as upstream does it.
    assert created.spec.strategy.type == "RollingUpdate"
    assert created.spec.revision_history_limit == 10
    assert created.spec.progress_deadline_seconds == 600
    c0 = created.spec.template.spec.containers[0]
    assert c0.termination_message_path == "/dev/termination-log"
    assert c0.image_pull_policy == "IfNotPresent"
    assert created.spec.template.spec.restart_policy == "Always"
    assert created.spec.template.spec.dns_policy == "ClusterFirst"

    # the deployment controller writes the object too: retry on conflict,
    # as clients of a live cluster do
    for attempt in range(10):
        got = apps.read_namespaced_deployment("web", namespace)
        got.spec.replicas = 3
        try:
            replaced = apps.replace_namespaced_deployment("web", namespace, got)
            break
        except ApiException as e:
            if e.status != 409 or attempt == 9:
                raise
    assert replaced.spec.replicas == 3
    assert replaced.metadata.generation == 2

    scale = apps.read_namespaced_deployment_scale("web", namespace)
    assert scale.spec.replicas == 3

    apps.delete_namespaced_deployment("web", namespace)
    wait_for(
        lambda: "web" not in [d.metadata.name for d in apps.list_namespaced_deployment(namespace).items],
        what="deployment web gone",
    )


def test_service_crud(v1, namespace):
    svc = client.V1Service(
        metadata=client.V1ObjectMeta(name="web"),
        spec=client.V1ServiceSpec(
            selector={"app": "web"},
            ports=[client.V1ServicePort(port=80, target_port=8080)],
        ),
    )
    created = v1.create_namespaced_service(namespace, svc)
    assert created.spec.type == "ClusterIP"
    ip = created.spec.cluster_ip
    assert ip and ip.startswith("10.43."), ip
    assert created.spec.cluster_ips == [ip]
    assert created.spec.ports[0].protocol == "TCP"
    assert created.spec.ports[0].target_port in (8080, "8080")
    assert created.spec.session_affinity == "None"

    got = v1.read_namespaced_service("web", namespace)
    got.metadata.labels = {"tier": "front"}
    replaced = v1.replace_namespaced_service("web", namespace, got)
    assert replaced.metadata.labels == {"tier": "front"}
    assert replaced.spec.cluster_ip == ip  # immutable, kept across update

    v1.delete_namespaced_service("web", namespace)
    with pytest.raises(ApiException) as ei:
        v1.read_namespaced_service("web", namespace)
    assert ei.value.status == 404


# --------------------------------------------------------------- list / watch


def test_list_pagination(v1, namespace):
    for i in range(25):
        v1.create_namespaced_config_map(namespace, cm(f"page-{i:02d}", {"i": str(i)}))

    seen = []
    pages = 0
    token = None
    first_rv = None
    total = None
    while True:
        lst = v1.list_namespaced_config_map(namespace, limit=10, _continue=token)
        pages += 1
        assert len(lst.items) <= 10
        if first_rv is None:
            first_rv = lst.metadata.resource_version
        else:
            # A continued list is served from the snapshot of the first page.
            assert lst.metadata.resource_version == first_rv
        seen.extend(i.metadata.name for i in lst.items)
        token = continue_token(lst.metadata)
        remaining = lst.metadata.remaining_item_count
        if token:
            assert len(lst.items) == 10
            assert remaining is not None and remaining > 0, lst.metadata
            if total is None:
                total = len(seen) + remaining
            assert len(seen) + remaining == total, (len(seen), remaining, total)
        else:
            assert not remaining, lst.metadata
            break
        assert pages < 10, "pagination does not terminate"

    ours = [n for n in seen if n.startswith("page-")]
    assert sorted(ours) == [f"page-{i:02d}" for i in range(25)]
    assert len(seen) == len(set(seen)), "an item was returned twice"
    # Everything (25 + maybe kube-root-ca.crt) in ceil(n/10) pages.
    assert pages == (len(seen) + 9) // 10
    assert total == len(seen)


def test_watch_from_resource_version(v1, namespace):
    rv = v1.list_namespaced_config_map(namespace).metadata.resource_version
    assert rv
    v1.create_namespaced_config_map(namespace, cm("watched", {"v": "1"}))
    v1.patch_namespaced_config_map("watched", namespace, {"data": {"v": "2"}})
    v1.delete_namespaced_config_map("watched", namespace)

    events = []
    w = watch.Watch()
    start = time.time()
    for ev in w.stream(v1.list_namespaced_config_map, namespace, resource_version=rv, timeout_seconds=5):
        if ev["type"] == "BOOKMARK":
            continue
        obj = ev["raw_object"]
        if obj["metadata"]["name"] == "watched":
            events.append((ev["type"], obj["metadata"]["resourceVersion"], obj.get("data")))
        if len(events) == 3:
            w.stop()
    assert time.time() - start < 15, "watch with timeoutSeconds=5 did not end in time"
    assert [e[0] for e in events] == ["ADDED", "MODIFIED", "DELETED"], events
    assert events[0][2] == {"v": "1"}
    assert events[1][2] == {"v": "2"}
    rvs = [int(e[1]) for e in events]
    assert rvs == sorted(rvs) and len(set(rvs)) == 3, rvs
    assert rvs[0] > int(rv)


def test_watch_live_events(v1, namespace):
    rv = v1.list_namespaced_config_map(namespace).metadata.resource_version
    events = []
    w = watch.Watch()

    def consume():
        for ev in w.stream(v1.list_namespaced_config_map, namespace, resource_version=rv, timeout_seconds=10):
            if ev["raw_object"]["metadata"].get("name") == "live":
                events.append(ev["type"])
                if ev["type"] == "DELETED":
                    w.stop()
                    return

    t = threading.Thread(target=consume, daemon=True)
    t.start()
    time.sleep(0.5)  # let the watch connect before writing
    v1.create_namespaced_config_map(namespace, cm("live", {"v": "1"}))
    v1.patch_namespaced_config_map("live", namespace, {"data": {"v": "2"}})
    v1.delete_namespaced_config_map("live", namespace)
    t.join(15)
    assert events == ["ADDED", "MODIFIED", "DELETED"]


def test_label_selector_listing(v1, namespace):
    v1.create_namespaced_config_map(namespace, cm("l-a", labels={"app": "a", "tier": "front"}))
    v1.create_namespaced_config_map(namespace, cm("l-b", labels={"app": "b", "tier": "back"}))
    v1.create_namespaced_config_map(namespace, cm("l-none", labels={"other": "x"}))

    def names(sel):
        return sorted(
            i.metadata.name
            for i in v1.list_namespaced_config_map(namespace, label_selector=sel).items
            if i.metadata.name.startswith("l-")
        )

    assert names("app=a") == ["l-a"]
    assert names("app==a") == ["l-a"]
    assert names("app!=a") == ["l-b", "l-none"]
    assert names("app in (a,b)") == ["l-a", "l-b"]
    assert names("app notin (a)") == ["l-b", "l-none"]
    assert names("app") == ["l-a", "l-b"]
    assert names("!app") == ["l-none"]
    assert names("app=a,tier=front") == ["l-a"]
    assert names("app=a,tier=back") == []

    # Field selectors work together with label selectors.
    lst = v1.list_namespaced_config_map(namespace, label_selector="app", field_selector="metadata.name=l-b")
    assert [i.metadata.name for i in lst.items] == ["l-b"]


# ------------------------------------------------------------------ errors


def test_conflict_on_stale_update(v1, namespace):
    old = v1.create_namespaced_config_map(namespace, cm("stale", {"v": "1"}))
    v1.patch_namespaced_config_map("stale", namespace, {"data": {"v": "2"}})
    old.data = {"v": "3"}
    with pytest.raises(ApiException) as ei:
        v1.replace_namespaced_config_map("stale", namespace, old)
    e = ei.value
    assert e.status == 409
    doc = status_body(e)
    assert doc["reason"] == "Conflict"
    assert doc["code"] == 409
    assert doc["details"]["name"] == "stale"
    assert doc["details"]["kind"] == "configmaps"
    assert "the object has been modified" in doc["message"]
    assert v1.read_namespaced_config_map("stale", namespace).data == {"v": "2"}


def test_not_found(v1, namespace):
    with pytest.raises(ApiException) as ei:
        v1.read_namespaced_config_map("does-not-exist", namespace)
    assert ei.value.status == 404
    doc = status_body(ei.value)
    assert doc["reason"] == "NotFound"
    assert doc["status"] == "Failure"
    assert doc["details"] == {"name": "does-not-exist", "kind": "configmaps"}
    assert doc["message"] == 'configmaps "does-not-exist" not found'


def test_invalid_name_is_422(v1, namespace):
    with pytest.raises(ApiException) as ei:
        v1.create_namespaced_config_map(namespace, cm("Bad_Name"))
    assert ei.value.status == 422
    doc = status_body(ei.value)
    assert doc["reason"] == "Invalid"
    assert doc["details"]["kind"] == "ConfigMap"
    assert doc["details"]["name"] == "Bad_Name"
    causes = doc["details"]["causes"]
    assert any(c["field"] == "metadata.name" and c["reason"] == "FieldValueInvalid" for c in causes), causes
    assert doc["message"].startswith('ConfigMap "Bad_Name" is invalid: metadata.name: Invalid value: "Bad_Name"')


def test_already_exists(v1, namespace):
    v1.create_namespaced_config_map(namespace, cm("twice"))
    with pytest.raises(ApiException) as ei:
        v1.create_namespaced_config_map(namespace, cm("twice"))
    assert ei.value.status == 409
    doc = status_body(ei.value)
    assert doc["reason"] == "AlreadyExists"
    assert doc["details"] == {"name": "twice", "kind": "configmaps"}
    assert doc["message"] == 'configmaps "twice" already exists'


# ----------------------------------------------------------------- patches


def test_patch_configmap_strategic_merge_default(v1, namespace):
    v1.create_namespaced_config_map(namespace, cm("p", {"a": "1", "b": "2"}, {"x": "1"}))
    # A dict body: the client sends application/strategic-merge-patch+json.
    out = v1.patch_namespaced_config_map("p", namespace, {"data": {"b": None, "c": "3"}, "metadata": {"labels": {"y": "2"}}})
    assert out.data == {"a": "1", "c": "3"}
    assert out.metadata.labels == {"x": "1", "y": "2"}
    # A list body: the client sends application/json-patch+json.
    out = v1.patch_namespaced_config_map("p", namespace, [{"op": "replace", "path": "/data/a", "value": "10"}])
    assert out.data == {"a": "10", "c": "3"}


def test_strategic_merge_merges_containers_by_name(apps, namespace):
    containers = [
        client.V1Container(name="a", image="nginx:1.25"),
        client.V1Container(name="b", image="redis:7"),
    ]
    apps.create_namespaced_deployment(namespace, deployment("smp", containers=containers))
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "b", "image": "redis:7.2"}]}}}}
    out = apps.patch_namespaced_deployment("smp", namespace, patch)
    got = {c.name: c.image for c in out.spec.template.spec.containers}
    # A merge patch would have replaced the list; strategic merge keys it by name.
    assert got == {"a": "nginx:1.25", "b": "redis:7.2"}
    assert out.metadata.generation == 2


def test_server_side_apply_conflicts_and_force(v1, namespace):
    ct = "application/apply-patch+yaml"
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": {"a": "1"}}
    out = v1.patch_namespaced_config_map("ssa", namespace, body, field_manager="alice", _content_type=ct)
    assert out.data == {"a": "1"}
    managers = {m.manager: m.operation for m in out.metadata.managed_fields}
    assert managers.get("alice") == "Apply", managers

    other = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": {"a": "2"}}
    with pytest.raises(ApiException) as ei:
        v1.patch_namespaced_config_map("ssa", namespace, other, field_manager="bob", _content_type=ct)
    assert ei.value.status == 409
    doc = status_body(ei.value)
    assert doc["reason"] == "Conflict"
    assert any(c.get("field") == ".data.a" for c in doc["details"]["causes"]), doc

    out = v1.patch_namespaced_config_map("ssa", namespace, other, field_manager="bob", force=True, _content_type=ct)
    assert out.data == {"a": "2"}
    managers = {m.manager for m in out.metadata.managed_fields}
    assert "bob" in managers

    # Apply without a fieldManager is rejected.
    with pytest.raises(ApiException) as ei:
        v1.patch_namespaced_config_map("ssa", namespace, other, _content_type=ct)
    assert ei.value.status in (400, 422)


def test_dry_run_create_does_not_persist(v1, namespace):
    out = v1.create_namespaced_config_map(namespace, cm("dry", {"k": "v"}), dry_run="All")
    assert out.metadata.name == "dry"
    assert out.data == {"k": "v"}
    with pytest.raises(ApiException) as ei:
        v1.read_namespaced_config_map("dry", namespace)
    assert ei.value.status == 404
    assert "dry" not in [i.metadata.name for i in v1.list_namespaced_config_map(namespace).items]
    # Dry-run still validates.
    with pytest.raises(ApiException) as ei:
        v1.create_namespaced_config_map(namespace, cm("Dry_Bad"), dry_run="All")
    assert ei.value.status == 422
    # And dry-run delete keeps the object.
    v1.create_namespaced_config_map(namespace, cm("keep"))
    v1.delete_namespaced_config_map("keep", namespace, dry_run="All")
    assert v1.read_namespaced_config_map("keep", namespace).metadata.name == "keep"
    # An unknown dryRun value is rejected (upstream: CreateOptions is invalid, 422).
    with pytest.raises(ApiException) as ei:
        v1.create_namespaced_config_map(namespace, cm("dry2"), dry_run="Some")
    assert ei.value.status == 422
    assert status_body(ei.value)["reason"] == "Invalid"


# ------------------------------------------------------------------- CRDs


def test_crd_and_custom_objects_round_trip(api, namespace):
    ext = client.ApiextensionsV1Api(api)
    co = client.CustomObjectsApi(api)
    group = f"e2e{uuid.uuid4().hex[:6]}.skiff.test"
    plural = "widgets"
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": plural, "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "properties": {
                                        "size": {"type": "integer"},
                                        "color": {"type": "string"},
                                    },
                                }
                            },
                        }
                    },
                }
            ],
        },
    }
    ext.create_custom_resource_definition(crd)
    try:
        def established():
            c = ext.read_custom_resource_definition(f"{plural}.{group}")
            conds = {x.type: x.status for x in (c.status.conditions or [])} if c.status else {}
            return conds.get("Established") == "True" and conds.get("NamesAccepted") == "True"

        wait_for(established, timeout=20, what="CRD Established")

        # Discovery may lag behind Established by a moment; retry the first create.
        body = {
            "apiVersion": f"{group}/v1",
            "kind": "Widget",
            "metadata": {"name": "w1", "labels": {"k": "v"}},
            "spec": {"size": 3, "color": "red"},
        }

        def try_create():
            try:
                return co.create_namespaced_custom_object(group, "v1", namespace, plural, body)
            except ApiException as e:
                if e.status == 404:
                    return None
                raise

        created = wait_for(try_create, timeout=10, what="custom resource endpoint")
        assert created["metadata"]["uid"]
        assert created["spec"] == {"size": 3, "color": "red"}
        assert created["metadata"]["generation"] == 1

        got = co.get_namespaced_custom_object(group, "v1", namespace, plural, "w1")
        assert got["metadata"]["uid"] == created["metadata"]["uid"]

        lst = co.list_namespaced_custom_object(group, "v1", namespace, plural)
        assert lst["kind"] == "WidgetList"
        assert [i["metadata"]["name"] for i in lst["items"]] == ["w1"]
        lst = co.list_namespaced_custom_object(group, "v1", namespace, plural, label_selector="k=nope")
        assert lst["items"] == []

        # Default patch type for custom objects is a merge patch.
        patched = co.patch_namespaced_custom_object(group, "v1", namespace, plural, "w1", {"spec": {"size": 5}})
        assert patched["spec"] == {"size": 5, "color": "red"}
        assert patched["metadata"]["generation"] == 2
        assert int(patched["metadata"]["resourceVersion"]) > int(created["metadata"]["resourceVersion"])

        # Structural schema: unknown fields are pruned.
        pruned = co.patch_namespaced_custom_object(group, "v1", namespace, plural, "w1", {"spec": {"bogus": 1}})
        assert "bogus" not in pruned["spec"]

        # Schema validation: wrong type is 422.
        with pytest.raises(ApiException) as ei:
            co.patch_namespaced_custom_object(group, "v1", namespace, plural, "w1", {"spec": {"size": "big"}})
        assert ei.value.status == 422
        assert status_body(ei.value)["reason"] == "Invalid"

        co.delete_namespaced_custom_object(group, "v1", namespace, plural, "w1")
        with pytest.raises(ApiException) as ei:
            co.get_namespaced_custom_object(group, "v1", namespace, plural, "w1")
        assert ei.value.status == 404
    finally:
        ext.delete_custom_resource_definition(f"{plural}.{group}")

    def crd_gone():
        try:
            ext.read_custom_resource_definition(f"{plural}.{group}")
            return False
        except ApiException as e:
            return e.status == 404

    wait_for(crd_gone, timeout=30, what="CRD deleted")


# --------------------------------------------------------------- deletion


def owned_cm(name, owner):
    return client.V1ConfigMap(
        metadata=client.V1ObjectMeta(
            name=name,
            owner_references=[
                client.V1OwnerReference(
                    api_version="v1", kind="ConfigMap", name=owner.metadata.name, uid=owner.metadata.uid
                )
            ],
        ),
        data={"owned": "yes"},
    )


def exists(v1, name, namespace):
    try:
        return v1.read_namespaced_config_map(name, namespace)
    except ApiException as e:
        if e.status == 404:
            return None
        raise


def test_delete_propagation_background(v1, namespace):
    parent = v1.create_namespaced_config_map(namespace, cm("bg-parent"))
    v1.create_namespaced_config_map(namespace, owned_cm("bg-child", parent))
    v1.delete_namespaced_config_map("bg-parent", namespace, propagation_policy="Background")
    assert exists(v1, "bg-parent", namespace) is None
    wait_for(lambda: exists(v1, "bg-child", namespace) is None, what="garbage collection of bg-child")


def test_delete_propagation_orphan(v1, namespace):
    parent = v1.create_namespaced_config_map(namespace, cm("or-parent"))
    v1.create_namespaced_config_map(namespace, owned_cm("or-child", parent))
    v1.delete_namespaced_config_map("or-parent", namespace, propagation_policy="Orphan")
    wait_for(lambda: exists(v1, "or-parent", namespace) is None, what="or-parent deleted")
    # The dependent survives, with its ownerReference to the deleted owner removed.
    child = wait_for(
        lambda: (lambda c: c if c is not None and not c.metadata.owner_references else None)(
            exists(v1, "or-child", namespace)
        ),
        what="or-child orphaned",
    )
    assert child.data == {"owned": "yes"}


def test_delete_propagation_foreground(v1, namespace):
    parent = v1.create_namespaced_config_map(namespace, cm("fg-parent"))
    v1.create_namespaced_config_map(namespace, owned_cm("fg-child", parent))
    body = client.V1DeleteOptions(propagation_policy="Foreground")
    v1.delete_namespaced_config_map("fg-parent", namespace, body=body)
    # Right after the call the owner is either already gone or marked for
    # deletion with the foregroundDeletion finalizer.
    p = exists(v1, "fg-parent", namespace)
    if p is not None:
        assert p.metadata.deletion_timestamp is not None
        assert "foregroundDeletion" in (p.metadata.finalizers or [])
    wait_for(lambda: exists(v1, "fg-child", namespace) is None, what="fg-child deleted")
    wait_for(lambda: exists(v1, "fg-parent", namespace) is None, what="fg-parent deleted")


def test_delete_with_preconditions(v1, namespace):
    c = v1.create_namespaced_config_map(namespace, cm("pre"))
    body = client.V1DeleteOptions(preconditions=client.V1Preconditions(uid="00000000-0000-0000-0000-000000000000"))
    with pytest.raises(ApiException) as ei:
        v1.delete_namespaced_config_map("pre", namespace, body=body)
    assert ei.value.status == 409
    assert status_body(ei.value)["reason"] == "Conflict"
    body = client.V1DeleteOptions(preconditions=client.V1Preconditions(uid=c.metadata.uid))
    v1.delete_namespaced_config_map("pre", namespace, body=body)
    assert exists(v1, "pre", namespace) is None


def test_delete_collection(v1, namespace):
    for i in range(3):
        v1.create_namespaced_config_map(namespace, cm(f"dc-{i}", labels={"batch": "dc"}))
    v1.create_namespaced_config_map(namespace, cm("dc-keep", labels={"batch": "other"}))
    v1.delete_collection_namespaced_config_map(namespace, label_selector="batch=dc")
    left = sorted(i.metadata.name for i in v1.list_namespaced_config_map(namespace).items if i.metadata.name.startswith("dc-"))
    assert left == ["dc-keep"]


def test_watch_with_label_selector_follows_membership(v1, namespace):
    """An object that stops matching the selector is DELETED for the watcher,
    and ADDED again when it matches again (upstream's watch cache semantics)."""
    v1.create_namespaced_config_map(namespace, cm("member", {"v": "1"}, labels={"app": "web"}))
    rv = v1.read_namespaced_config_map("member", namespace).metadata.resource_version
    v1.patch_namespaced_config_map("member", namespace, {"metadata": {"labels": {"app": "db"}}})
    v1.patch_namespaced_config_map("member", namespace, {"data": {"v": "2"}})  # not selected: no event
    v1.patch_namespaced_config_map("member", namespace, {"metadata": {"labels": {"app": "web"}}})
    v1.patch_namespaced_config_map("member", namespace, {"data": {"v": "3"}})
    events = []
    w = watch.Watch()
    for ev in w.stream(v1.list_namespaced_config_map, namespace, label_selector="app=web",
                       resource_version=rv, timeout_seconds=5):
        if ev["type"] == "BOOKMARK":
            continue
        events.append((ev["type"], ev["raw_object"]["metadata"]["labels"]["app"], ev["raw_object"]["data"]["v"]))
        if len(events) == 3:
            w.stop()
    assert events == [("DELETED", "db", "1"), ("ADDED", "web", "2"), ("MODIFIED", "web", "3")], events
