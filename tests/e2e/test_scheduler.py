"""The in-process scheduler (kube-scheduler's default profile) against Node
objects created by the tests (no kubelet: the nodes are plain objects with a
Ready condition and allocatable resources).

The module starts with three nodes: `fit` (4 cpu, disk=ssd), `tainted`
(4 cpu, dedicated=x:NoSchedule) and `small` (100m cpu). Tests that add
nodes delete them before they finish, so upstream-style messages can name
exactly `0/3 nodes`. Every pod has terminationGracePeriodSeconds 0 so that
deleting it (or its namespace) frees its node at once without a kubelet.
"""
import json
import time

import pytest

from conftest import ALL_KUBECTLS, Kubectl, Server, wait_for


def make_node(k, name, cpu="4", labels=None, taints=None):
    node = {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **(labels or {})}},
            "spec": {"taints": taints or []}}
    k.run("apply", "-f", "-", input=json.dumps(node))
    res = {"cpu": cpu, "memory": "8Gi", "pods": "110"}
    status = {"status": {"capacity": res, "allocatable": res,
                         "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                                         "message": "kubelet is posting ready status"}]}}
    k.run("patch", "node", name, "--subresource=status", "--type=merge", "-p", json.dumps(status))


def delete_node(k, name):
    k.run("delete", "node", name, "--ignore-not-found", "--wait=true")


@pytest.fixture(scope="module")
def server():
    s = Server().start()
    k = Kubectl(ALL_KUBECTLS[-1], s)
    make_node(k, "fit", labels={"disk": "ssd"})
    make_node(k, "tainted", taints=[{"key": "dedicated", "value": "x", "effect": "NoSchedule"}])
    make_node(k, "small", cpu="100m")
    yield s
    s.cleanup()


@pytest.fixture
def k(server):
    return Kubectl(ALL_KUBECTLS[-1], server)


@pytest.fixture
def ns(k):
    name = f"sched-{int(time.time() * 1000) % 10000000}"
    k.run("create", "namespace", name)
    yield name
    k.run("delete", "pods", "--all", "-n", name, "--grace-period=0", "--force", check=False)
    k.run("delete", "namespace", name, "--wait=false", check=False)


def pod(name, cpu="100m", **spec):
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"terminationGracePeriodSeconds": 0,
                     "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10",
                                     "resources": {"requests": {"cpu": cpu}}}],
                     **spec}}


def create(k, ns, *objs):
    k.run("apply", "-n", ns, "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objs)}))


def node_of(k, ns, name):
    return k.json("get", "pod", name, "-n", ns)["spec"].get("nodeName")


def events_for(k, ns, name):
    items = k.json("get", "events", "-n", ns)["items"]
    return [e for e in items if e["involvedObject"]["name"] == name]


def event(k, ns, name, reason):
    return next((e for e in events_for(k, ns, name) if e["reason"] == reason), None)


def condition(k, ns, name, ctype="PodScheduled"):
    conds = k.json("get", "pod", name, "-n", ns).get("status", {}).get("conditions") or []
    return next((c for c in conds if c["type"] == ctype), None)


def test_pods_land_on_fitting_nodes(k, ns):
    create(k, ns, *[pod(f"p{i}", cpu="500m") for i in range(4)])
    for i in range(4):
        assert wait_for(lambda: node_of(k, ns, f"p{i}"), what=f"p{i} bound") == "fit"
    ev = wait_for(lambda: event(k, ns, "p0", "Scheduled"), what="Scheduled event")
    assert ev["type"] == "Normal"
    assert ev["message"] == f"Successfully assigned {ns}/p0 to fit"
    assert ev["source"]["component"] == "default-scheduler"
    assert wait_for(lambda: condition(k, ns, "p0"))["status"] == "True"


def test_node_selector(k, ns):
    create(k, ns, pod("ssd", nodeSelector={"disk": "ssd"}), pod("hdd", nodeSelector={"disk": "hdd"}))
    assert wait_for(lambda: node_of(k, ns, "ssd"), what="ssd bound") == "fit"
    ev = wait_for(lambda: event(k, ns, "hdd", "FailedScheduling"), what="FailedScheduling")
    assert ev["type"] == "Warning"
    assert ev["message"] == (
        "0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: x}, "
        "2 node(s) didn't match Pod's node affinity/selector. "
        "preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.")
    assert node_of(k, ns, "hdd") is None


def test_unschedulable_until_a_fitting_node_appears(k, ns):
    create(k, ns, pod("huge", cpu="6"))
    ev = wait_for(lambda: event(k, ns, "huge", "FailedScheduling"), what="FailedScheduling")
    assert ev["type"] == "Warning"
    assert ev["source"]["component"] == "default-scheduler"
    assert ev["message"] == (
        "0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: x}, 2 Insufficient cpu. "
        "preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.")
    cond = wait_for(lambda: condition(k, ns, "huge"), what="PodScheduled condition")
    assert cond["status"] == "False"
    assert cond["reason"] == "Unschedulable"
    assert cond["message"] == ev["message"]
    desc = k.run("describe", "pod", "huge", "-n", ns).stdout
    assert "FailedScheduling" in desc and "0/3 nodes are available" in desc
    try:
        make_node(k, "big", cpu="8")
        assert wait_for(lambda: node_of(k, ns, "huge"), timeout=20, what="huge bound") == "big"
        ev = wait_for(lambda: event(k, ns, "huge", "Scheduled"), what="Scheduled event")
        assert ev["message"] == f"Successfully assigned {ns}/huge to big"
    finally:
        k.run("delete", "pod", "huge", "-n", ns, "--grace-period=0", "--force", check=False)
        delete_node(k, "big")


def test_other_scheduler_name_is_left_alone(k, ns):
    create(k, ns, pod("mine-not", schedulerName="my-scheduler"))
    # pods are taken in creation order: once a later pod is bound, the
    # scheduler has seen the earlier one and passed it over
    create(k, ns, pod("after"))
    assert wait_for(lambda: node_of(k, ns, "after"), what="after bound") == "fit"
    assert node_of(k, ns, "mine-not") is None
    assert events_for(k, ns, "mine-not") == []
    assert condition(k, ns, "mine-not") is None


def test_missing_claim_and_wait_for_first_consumer(k, ns):
    sc = f"wffc-{ns}"
    k.run("apply", "-f", "-", input=json.dumps({
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": sc},
        "provisioner": "rancher.io/local-path", "volumeBindingMode": "WaitForFirstConsumer"}))
    try:
        vol = [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}]
        create(k, ns, pod("claims", volumes=vol))
        ev = wait_for(lambda: event(k, ns, "claims", "FailedScheduling"), what="FailedScheduling")
        assert ev["message"].startswith('0/3 nodes are available: persistentvolumeclaim "data" not found.')
        create(k, ns, {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data"},
                       "spec": {"storageClassName": sc, "accessModes": ["ReadWriteOnce"],
                                "resources": {"requests": {"storage": "1Gi"}}}})
        assert wait_for(lambda: node_of(k, ns, "claims"), timeout=20, what="claims bound") == "fit"
        pvc = k.json("get", "pvc", "data", "-n", ns)
        assert pvc["metadata"]["annotations"]["volume.kubernetes.io/selected-node"] == "fit"
    finally:
        k.run("delete", "storageclass", sc, "--ignore-not-found", check=False)


def test_preemption_by_priority(k, ns):
    low, high = f"low-{ns}", f"high-{ns}"
    for name, value in ((low, 100), (high, 1000)):
        k.run("apply", "-f", "-", input=json.dumps({
            "apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
            "metadata": {"name": name}, "value": value}))
    try:
        make_node(k, "prio", cpu="2", labels={"role": "prio"})
        sel = {"role": "prio"}
        create(k, ns, pod("victim", cpu="1500m", nodeSelector=sel, priorityClassName=low))
        assert wait_for(lambda: node_of(k, ns, "victim"), what="victim bound") == "prio"
        victim_uid = k.json("get", "pod", "victim", "-n", ns)["metadata"]["uid"]
        create(k, ns, pod("preemptor", cpu="1500m", nodeSelector=sel, priorityClassName=high))
        assert wait_for(lambda: node_of(k, ns, "preemptor"), timeout=30, what="preemptor bound") == "prio"
        pods = k.json("get", "pods", "-n", ns)["items"]
        assert victim_uid not in [p["metadata"]["uid"] for p in pods], "the victim was deleted"
        ev = wait_for(lambda: event(k, ns, "victim", "Preempted"), what="Preempted event")
        preemptor = k.json("get", "pod", "preemptor", "-n", ns)
        assert ev["message"] == f"Preempted by pod {preemptor['metadata']['uid']} on node prio"
        assert preemptor["status"].get("nominatedNodeName") == "prio"
        failed = event(k, ns, "preemptor", "FailedScheduling")
        assert failed["message"].startswith("0/4 nodes are available: ")
        assert "1 Insufficient cpu" in failed["message"]
    finally:
        k.run("delete", "pods", "--all", "-n", ns, "--grace-period=0", "--force", check=False)
        delete_node(k, "prio")
        k.run("delete", "priorityclass", low, high, "--ignore-not-found", check=False)
