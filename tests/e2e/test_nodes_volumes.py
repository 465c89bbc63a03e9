"""Node lifecycle, node IPAM and the PV binder / local-path provisioner
against a real skiff server.

There is no kubelet: the tests play it, creating Node objects, posting their
status and renewing their `kube-node-lease` Leases from a background thread.
The server runs with a short `--node-monitor-grace-period` (upstream
kube-controller-manager flag) and a /22 cluster CIDR (four /24 blocks) so
node health and CIDR exhaustion are quick to observe.
"""
import datetime
import ipaddress
import json
import os
import threading
import time
import uuid

import pytest
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from conftest import ALL_KUBECTLS, Kubectl, Server, wait_for

GRACE_SECONDS = 4
CLUSTER_CIDR = "10.42.0.0/22"


@pytest.fixture(scope="module")
def server():
    s = Server(
        extra_args=[
            "--node-monitor-grace-period", f"{GRACE_SECONDS}s",
            "--cluster-cidr", CLUSTER_CIDR,
        ]
    ).start()
    yield s
    s.cleanup()


@pytest.fixture(scope="module")
def api(server):
    cfg = client.Configuration()
    config.load_kube_config(config_file=server.kubeconfig, client_configuration=cfg)
    with client.ApiClient(cfg) as c:
        yield c


@pytest.fixture
def k(server):
    return Kubectl(ALL_KUBECTLS[-1], server)


eventually = wait_for


def now_rfc3339():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_micro():
    return datetime.datetime.now(datetime.timezone.utc)


class Kubelets:
    """Plays the kubelet of some nodes: registers them and renews their leases."""

    def __init__(self, api):
        self.v1 = client.CoreV1Api(api)
        self.coord = client.CoordinationV1Api(api)
        self.alive = set()
        self.nodes = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def register(self, name, ready=True):
        self.v1.create_node({"apiVersion": "v1", "kind": "Node",
                             "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}}})
        self.nodes.append(name)
        self.coord.create_namespaced_lease("kube-node-lease", {
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": name, "namespace": "kube-node-lease"},
            "spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": now_micro()},
        })
        if ready:
            self.post_ready(name)
        self.alive.add(name)

    def post_ready(self, name):
        now = now_rfc3339()
        res = {"cpu": "4", "memory": "8Gi", "pods": "110"}
        self.v1.patch_node_status(name, {"status": {
            "capacity": res, "allocatable": res,
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                            "message": "kubelet is posting ready status",
                            "lastHeartbeatTime": now, "lastTransitionTime": now}],
        }})

    def _run(self):
        while not self.stop.is_set():
            for name in list(self.alive):
                try:
                    self.coord.patch_namespaced_lease(
                        name, "kube-node-lease", {"spec": {"renewTime": now_micro()}})
                except ApiException:
                    pass
            self.stop.wait(0.5)

    def close(self):
        self.stop.set()
        self.thread.join(5)
        for name in self.nodes:
            for f in (lambda: self.v1.delete_node(name),
                      lambda: self.coord.delete_namespaced_lease(name, "kube-node-lease")):
                try:
                    f()
                except ApiException:
                    pass


@pytest.fixture
def kubelets(api):
    kl = Kubelets(api)
    yield kl
    kl.close()


def pod_cidr(node):
    return node.spec.pod_cidr if node.spec else None


def taints(node):
    return {(t.key, t.effect) for t in ((node.spec and node.spec.taints) or [])}


def condition(node, kind):
    for c in node.status.conditions or []:
        if c.type == kind:
            return c
    return None


def events_for(v1, ns, kind, name):
    evs = v1.list_namespaced_event(ns, field_selector=f"involvedObject.name={name}").items
    return [e for e in evs if e.involved_object.kind == kind]


def force_delete_pods(v1, ns):
    for p in v1.list_namespaced_pod(ns).items:
        try:
            v1.delete_namespaced_pod(p.metadata.name, ns, grace_period_seconds=0)
        except ApiException:
            pass


def test_unreachable_node_is_tainted_and_pods_evicted(api, k, kubelets, namespace):
    v1 = client.CoreV1Api(api)
    suffix = uuid.uuid4().hex[:6]
    up, down = f"up-{suffix}", f"down-{suffix}"
    kubelets.register(up)
    kubelets.register(down)

    # both get distinct /24 pod CIDRs from the cluster CIDR
    def cidrs():
        nodes = [v1.read_node(n) for n in (up, down)]
        got = [pod_cidr(n) for n in nodes]
        return all(got) and nodes
    nodes = eventually(cidrs, what="pod CIDRs")
    nets = [ipaddress.ip_network(n.spec.pod_cidr) for n in nodes]
    assert nets[0] != nets[1]
    for n, net in zip(nodes, nets):
        assert net.prefixlen == 24 and net.subnet_of(ipaddress.ip_network(CLUSTER_CIDR))
        assert n.spec.pod_cidrs == [n.spec.pod_cidr]

    # registration events from node-controller
    def registered():
        evs = events_for(v1, "default", "Node", up)
        return [e for e in evs if e.reason == "RegisteredNode"]
    ev = eventually(registered, what="RegisteredNode event")[0]
    assert ev.source.component == "node-controller"
    assert ev.message == f"Node {up} event: Registered Node {up} in Controller"

    # a ReplicaSet pod on the node that will go away, tolerating unreachable for 5 s
    rs = {
        "apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "web", "namespace": namespace},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}}, "spec": {
                     "nodeName": down,
                     "tolerations": [{"key": "node.kubernetes.io/unreachable", "operator": "Exists",
                                      "effect": "NoExecute", "tolerationSeconds": 5}],
                     "containers": [{"name": "c", "image": "busybox"}]}}},
    }
    k.run("apply", "-f", "-", input=json.dumps(rs))
    first = eventually(lambda: v1.list_namespaced_pod(namespace).items, what="RS pod")[0]
    first_name = first.metadata.name
    v1.patch_namespaced_pod_status(first_name, namespace, {"status": {
        "phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}})

    # the healthy node stays healthy through a few grace periods while renewed
    time.sleep(0.1)
    kubelets.alive.discard(down)

    def unreachable():
        n = v1.read_node(down)
        c = condition(n, "Ready")
        want = {("node.kubernetes.io/unreachable", "NoSchedule"),
                ("node.kubernetes.io/unreachable", "NoExecute")}
        return c and c.status == "Unknown" and want <= taints(n) and n
    n = eventually(unreachable, timeout=GRACE_SECONDS + 20, what="node Ready=Unknown with unreachable taints")
    c = condition(n, "Ready")
    assert c.reason == "NodeStatusUnknown"
    assert c.message == "Kubelet stopped posting node status."
    for kind in ("MemoryPressure", "DiskPressure", "PIDPressure"):
        assert condition(n, kind).status == "Unknown"
    tainted_at = time.time()
    up_node = v1.read_node(up)
    assert condition(up_node, "Ready").status == "True"
    assert not taints(up_node)

    # pods on it are marked not ready at once
    def not_ready():
        p = v1.read_namespaced_pod(first_name, namespace)
        return any(c.type == "Ready" and c.status == "False" for c in p.status.conditions or [])
    eventually(not_ready, what="pod Ready=False")

    # evicted after its toleration expires (~5 s), then the RS replaces it
    def evicted():
        try:
            p = v1.read_namespaced_pod(first_name, namespace)
        except ApiException as e:
            return e.status == 404
        return p.metadata.deletion_timestamp is not None
    eventually(evicted, timeout=20, what="taint eviction")
    assert time.time() - tainted_at >= 2.5, "evicted before tolerationSeconds ran out"
    evs = events_for(v1, namespace, "Pod", first_name)
    ev = [e for e in evs if e.reason == "TaintManagerEviction"]
    assert ev and ev[0].message == f"Marking for deletion Pod {namespace}/{first_name}"
    assert ev[0].source.component == "taint-eviction-controller"
    p = v1.read_namespaced_pod(first_name, namespace)
    dt = [c for c in p.status.conditions or [] if c.type == "DisruptionTarget"]
    assert dt and dt[0].reason == "DeletionByTaintManager"

    def replaced():
        pods = v1.list_namespaced_pod(namespace).items
        return [p for p in pods if p.metadata.name != first_name and p.metadata.deletion_timestamp is None]
    eventually(replaced, what="replacement pod")
    assert [e for e in events_for(v1, "default", "Node", down) if e.reason == "NodeNotReady"]

    # the kubelet comes back: taints go away
    k.run("delete", "replicaset", "web", "-n", namespace, "--wait=false")
    kubelets.post_ready(down)
    kubelets.alive.add(down)

    def healed():
        n = v1.read_node(down)
        return not taints(n) and condition(n, "Ready").status == "True"
    eventually(healed, what="taints removed after the node recovered")
    force_delete_pods(v1, namespace)


def test_pod_cidrs_exhaustion_release_and_immutability(api, k, kubelets):
    v1 = client.CoreV1Api(api)
    suffix = uuid.uuid4().hex[:6]
    cluster = ipaddress.ip_network(CLUSTER_CIDR)
    blocks = len(list(cluster.subnets(new_prefix=24)))
    taken = {pod_cidr(n) for n in v1.list_node().items if pod_cidr(n)}
    names = [f"ipam-{suffix}-{i}" for i in range(blocks - len(taken))]
    for name in names:
        kubelets.register(name, ready=False)
    got = eventually(
        lambda: all(pod_cidr(v1.read_node(n)) for n in names) and
        [pod_cidr(v1.read_node(n)) for n in names],
        what="every block handed out")
    assert len(set(got) | taken) == blocks

    # no block left: CIDRNotAvailable
    extra = f"ipam-{suffix}-extra"
    kubelets.register(extra, ready=False)

    def not_available():
        return [e for e in events_for(v1, "default", "Node", extra) if e.reason == "CIDRNotAvailable"]
    ev = eventually(not_available, what="CIDRNotAvailable event")[0]
    assert ev.source.component == "cidrAllocator"
    assert ev.message == f"Node {extra} status is now: CIDRNotAvailable"
    assert not pod_cidr(v1.read_node(extra))

    # deleting a node frees its block for the waiting one
    freed = pod_cidr(v1.read_node(names[0]))
    v1.delete_node(names[0])
    eventually(lambda: pod_cidr(v1.read_node(extra)) == freed, what="freed block reused")
    assert v1.read_node(extra).spec.pod_cidrs == [freed]

    # set once, then immutable (upstream wording); a block it does not hold
    p = k.run("patch", "node", extra, "--type=merge", "-p",
              '{"spec":{"podCIDR":"10.99.3.0/24","podCIDRs":["10.99.3.0/24"]}}', check=False)
    assert p.returncode != 0
    assert 'spec.podCIDRs: Forbidden: node updates may not change podCIDR except from "" to valid' in p.stderr

    # podCIDR alone is mirrored into podCIDRs (upstream conversion)
    manual = f"ipam-{suffix}-manual"
    v1.create_node({"apiVersion": "v1", "kind": "Node", "metadata": {"name": manual},
                    "spec": {"podCIDR": "192.168.7.0/24"}})
    kubelets.nodes.append(manual)
    n = v1.read_node(manual)
    assert n.spec.pod_cidr == "192.168.7.0/24" and n.spec.pod_cidrs == ["192.168.7.0/24"]


def test_local_path_provisioning_and_reclaim(api, server, namespace):
    v1 = client.CoreV1Api(api)
    storage = client.StorageV1Api(api)
    sc = storage.read_storage_class("local-path")
    assert sc.provisioner == "rancher.io/local-path"
    assert sc.volume_binding_mode == "WaitForFirstConsumer"
    assert sc.reclaim_policy == "Delete"
    assert sc.metadata.annotations["storageclass.kubernetes.io/is-default-class"] == "true"

    v1.create_namespaced_persistent_volume_claim(namespace, {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "local-path",
                 "resources": {"requests": {"storage": "1Gi"}}},
    })

    def waiting():
        return [e for e in events_for(v1, namespace, "PersistentVolumeClaim", "data")
                if e.reason == "WaitForFirstConsumer"]
    ev = eventually(waiting, what="WaitForFirstConsumer event")[0]
    assert ev.message == "waiting for first consumer to be created before binding"
    assert v1.read_namespaced_persistent_volume_claim("data", namespace).status.phase == "Pending"

    # the scheduler's choice (set by hand here) triggers provisioning
    node = f"node-{uuid.uuid4().hex[:6]}"
    v1.patch_namespaced_persistent_volume_claim("data", namespace, {"metadata": {"annotations": {
        "volume.kubernetes.io/selected-node": node}}})

    def bound():
        c = v1.read_namespaced_persistent_volume_claim("data", namespace)
        return c.status.phase == "Bound" and c
    claim = eventually(bound, what="claim bound")
    pv = v1.read_persistent_volume(claim.spec.volume_name)
    assert pv.metadata.name == f"pvc-{claim.metadata.uid}"
    assert pv.status.phase == "Bound"
    assert pv.spec.claim_ref.name == "data" and pv.spec.claim_ref.uid == claim.metadata.uid
    assert pv.spec.persistent_volume_reclaim_policy == "Delete"
    assert pv.spec.storage_class_name == "local-path"
    assert pv.spec.capacity["storage"] == "1Gi"
    storage_dir = os.path.join(server.data_dir, "storage")
    assert pv.spec.host_path.path == f"{storage_dir}/{pv.metadata.name}_{namespace}_data"
    term = pv.spec.node_affinity.required.node_selector_terms[0].match_expressions[0]
    assert (term.key, term.operator, term.values) == ("kubernetes.io/hostname", "In", [node])
    assert pv.metadata.annotations["pv.kubernetes.io/provisioned-by"] == "rancher.io/local-path"
    assert claim.metadata.annotations["pv.kubernetes.io/bind-completed"] == "yes"
    assert claim.status.capacity["storage"] == "1Gi"

    # reclaim policy Delete: the volume goes with its claim
    v1.delete_namespaced_persistent_volume_claim("data", namespace)

    def pv_gone():
        try:
            v1.read_persistent_volume(pv.metadata.name)
        except ApiException as e:
            return e.status == 404
        return False
    eventually(pv_gone, what="provisioned volume deleted")


def test_static_volume_binds_claim_without_class(api, namespace):
    v1 = client.CoreV1Api(api)
    pv_name = f"static-{uuid.uuid4().hex[:6]}"
    v1.create_persistent_volume({
        "apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": pv_name},
        "spec": {"capacity": {"storage": "2Gi"}, "accessModes": ["ReadWriteOnce"],
                 "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "",
                 "hostPath": {"path": f"/tmp/{pv_name}"}},
    })
    try:
        eventually(lambda: v1.read_persistent_volume(pv_name).status.phase == "Available",
                   what="volume Available")
        v1.create_namespaced_persistent_volume_claim(namespace, {
            "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "claim"},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "",
                     "resources": {"requests": {"storage": "1Gi"}}},
        })

        def bound():
            c = v1.read_namespaced_persistent_volume_claim("claim", namespace)
            return c.status.phase == "Bound" and c
        claim = eventually(bound, what="claim bound")
        assert claim.spec.volume_name == pv_name
        assert claim.status.capacity["storage"] == "2Gi"
        pv = v1.read_persistent_volume(pv_name)
        assert pv.status.phase == "Bound"
        assert pv.spec.claim_ref.uid == claim.metadata.uid
        assert pv.metadata.annotations["pv.kubernetes.io/bound-by-controller"] == "yes"

        # Retain: the claim goes, the volume stays Released
        v1.delete_namespaced_persistent_volume_claim("claim", namespace)
        eventually(lambda: v1.read_persistent_volume(pv_name).status.phase == "Released",
                   what="volume Released")
    finally:
        v1.delete_persistent_volume(pv_name)
