"""Deployments, ReplicaSets and Endpoints driven by the in-process
controllers and scheduler, with a fake kubelet standing in for nodes.

Covers the kubectl rollout workflow on the oldest and newest kubectl, the
rolling-update bounds (checked on every watch event), endpoints following
readiness, and a server kill in the middle of a rollout.
"""
import json
import threading
import time

import pytest
from kubernetes import client, config, watch

from conftest import ALL_KUBECTLS, OLDEST_NEWEST, Kubectl, Server, wait_for
from fakekubelet import FakeKubelet


@pytest.fixture(scope="module")
def cluster():
    s = Server().start()
    fk = FakeKubelet(s.kubeconfig, ["node-a", "node-b", "node-c"], ready_delay=0.2).start()
    yield s, fk
    fk.stop()
    s.cleanup()


@pytest.fixture
def k(cluster):
    return Kubectl(ALL_KUBECTLS[-1], cluster[0])


@pytest.fixture
def ns(cluster, k):
    name = f"wl-{int(time.time() * 1000) % 10000000}"
    k.run("create", "namespace", name)
    yield name
    k.run("delete", "namespace", name, "--wait=false", check=False)


def deployment(k, ns, name):
    return k.json("get", "deployment", name, "-n", ns)


def replica_sets(k, ns):
    return k.json("get", "rs", "-n", ns)["items"]


@pytest.mark.parametrize("binary", OLDEST_NEWEST, ids=lambda p: p.rsplit(".", 2)[-2] + "." + p.rsplit(".", 1)[-1])
def test_rollout_workflow(cluster, ns, binary):
    k = Kubectl(binary, cluster[0])
    k.run("create", "deployment", "web", "--image=busybox:1.0", "--replicas=3", "-n", ns)
    k.run("rollout", "status", "deployment/web", "-n", ns, "--timeout=60s")
    pods = k.json("get", "pods", "-n", ns, "-l", "app=web")["items"]
    assert len(pods) == 3
    assert all(p["spec"].get("nodeName") for p in pods), "every pod is scheduled"

    k.run("scale", "deployment/web", "--replicas=5", "-n", ns)
    wait_for(lambda: deployment(k, ns, "web")["status"].get("readyReplicas") == 5, what="5 ready")

    k.run("set", "image", "deployment/web", "busybox=busybox:2.0", "-n", ns)
    k.run("rollout", "status", "deployment/web", "-n", ns, "--timeout=60s")
    hist = k.run("rollout", "history", "deployment/web", "-n", ns).stdout
    assert "1" in hist and "2" in hist
    rev2 = k.run("rollout", "history", "deployment/web", "-n", ns, "--revision=2").stdout
    assert "busybox:2.0" in rev2

    k.run("rollout", "undo", "deployment/web", "--to-revision=1", "-n", ns)
    k.run("rollout", "status", "deployment/web", "-n", ns, "--timeout=60s")
    d = deployment(k, ns, "web")
    assert d["spec"]["template"]["spec"]["containers"][0]["image"] == "busybox:1.0"
    assert d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"
    assert len(replica_sets(k, ns)) == 2, "undo reuses the revision-1 ReplicaSet"

    k.run("rollout", "pause", "deployment/web", "-n", ns)
    k.run("set", "image", "deployment/web", "busybox=busybox:3.0", "-n", ns)
    time.sleep(1)
    assert len(replica_sets(k, ns)) == 2, "a paused deployment does not roll out"
    k.run("rollout", "resume", "deployment/web", "-n", ns)
    k.run("rollout", "status", "deployment/web", "-n", ns, "--timeout=60s")
    assert len(replica_sets(k, ns)) == 3

    k.run("rollout", "restart", "deployment/web", "-n", ns)
    k.run("rollout", "status", "deployment/web", "-n", ns, "--timeout=60s")
    assert len(replica_sets(k, ns)) == 4
    pods = k.json("get", "pods", "-n", ns, "-l", "app=web")["items"]
    live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
    assert len(live) == 5
    events = k.run("get", "events", "-n", ns).stdout
    assert "ScalingReplicaSet" in events and "SuccessfulCreate" in events


def test_rolling_update_bounds(cluster, ns, k):
    s, fk = cluster
    replicas, surge, unavail = 6, 2, 1
    manifest = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "bounded", "namespace": ns},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "bounded"}},
            "strategy": {"type": "RollingUpdate",
                         "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavail}},
            "template": {"metadata": {"labels": {"app": "bounded"}},
                         "spec": {"containers": [{"name": "c", "image": "busybox:1"}]}},
        },
    }
    k.run("apply", "-f", "-", input=json.dumps(manifest))
    k.run("rollout", "status", "deployment/bounded", "-n", ns, "--timeout=60s")

    api = client.CoreV1Api(config.new_client_from_config(config_file=s.kubeconfig))
    lst = api.list_namespaced_pod(ns, label_selector="app=bounded")
    pods = {p.metadata.name: p for p in lst.items}
    observed = {"min_ready": replicas, "max_total": 0, "events": 0}
    done = threading.Event()

    def counts():
        live = [p for p in pods.values() if p.metadata.deletion_timestamp is None]
        ready = [p for p in live if any(c.type == "Ready" and c.status == "True"
                                        for c in (p.status.conditions or []))]
        return len(live), len(ready)

    def follow():
        w = watch.Watch()
        for ev in w.stream(api.list_namespaced_pod, ns, label_selector="app=bounded",
                           resource_version=lst.metadata.resource_version, timeout_seconds=90):
            p = ev["object"]
            if ev["type"] == "DELETED":
                pods.pop(p.metadata.name, None)
            else:
                pods[p.metadata.name] = p
            total, ready = counts()
            observed["events"] += 1
            observed["min_ready"] = min(observed["min_ready"], ready)
            observed["max_total"] = max(observed["max_total"], total)
            if done.is_set():
                w.stop()
                return

    t = threading.Thread(target=follow, daemon=True)
    t.start()
    time.sleep(0.3)
    k.run("set", "image", "deployment/bounded", "c=busybox:2", "-n", ns)
    k.run("rollout", "status", "deployment/bounded", "-n", ns, "--timeout=90s")
    time.sleep(0.5)
    done.set()
    k.run("annotate", "deployment/bounded", "-n", ns, "poke=1")  # wake the watch
    t.join(timeout=10)
    assert observed["events"] > replicas, observed
    assert observed["min_ready"] >= replicas - unavail, observed
    assert observed["max_total"] <= replicas + surge, observed


def test_endpoints_follow_readiness(cluster, ns, k):
    s, fk = cluster
    k.run("create", "deployment", "echo", "--image=busybox:1", "--replicas=2", "--port=8080", "-n", ns)
    k.run("expose", "deployment", "echo", "--port=80", "--target-port=8080", "-n", ns)
    k.run("rollout", "status", "deployment/echo", "-n", ns, "--timeout=60s")

    def addresses():
        ep = k.json("get", "endpoints", "echo", "-n", ns)
        ready, not_ready = [], []
        for sub in ep.get("subsets") or []:
            ready += [a["targetRef"]["name"] for a in sub.get("addresses") or []]
            not_ready += [a["targetRef"]["name"] for a in sub.get("notReadyAddresses") or []]
        return sorted(ready), sorted(not_ready)

    wait_for(lambda: len(addresses()[0]) == 2, what="2 ready endpoints")
    ep = k.json("get", "endpoints", "echo", "-n", ns)
    assert ep["subsets"][0]["ports"][0]["port"] == 8080
    victim = addresses()[0][0]
    start = time.time()
    fk.set_ready(ns, victim, False)
    wait_for(lambda: victim in addresses()[1], timeout=5, interval=0.02, what="not-ready address")
    lag = time.time() - start
    print(f"endpoints followed readiness in {lag * 1000:.0f} ms")

    def slice_ready():
        slices = k.json("get", "endpointslices", "-n", ns, "-l", "kubernetes.io/service-name=echo")
        return {e["targetRef"]["name"]: e["conditions"].get("ready")
                for sl in slices["items"] for e in sl.get("endpoints") or []}

    wait_for(lambda: slice_ready().get(victim) is False, timeout=5, what="slice not ready")
    fk.set_ready(ns, victim, True)
    wait_for(lambda: victim in addresses()[0], timeout=5, interval=0.02, what="ready again")
    wait_for(lambda: slice_ready().get(victim) is True, timeout=5, what="slice ready again")


def test_replicaset_adopts_and_recreates(cluster, ns, k):
    pod = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "orphan", "namespace": ns, "labels": {"app": "adopt"}},
        "spec": {"containers": [{"name": "c", "image": "busybox:1"}]},
    }
    k.run("apply", "-f", "-", input=json.dumps(pod))
    rs = {
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": "adopter", "namespace": ns},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "adopt"}},
                 "template": {"metadata": {"labels": {"app": "adopt"}},
                              "spec": {"containers": [{"name": "c", "image": "busybox:1"}]}}},
    }
    k.run("apply", "-f", "-", input=json.dumps(rs))
    wait_for(lambda: (k.json("get", "rs", "adopter", "-n", ns)["status"].get("readyReplicas") == 2),
             what="2 ready replicas")
    pods = k.json("get", "pods", "-n", ns, "-l", "app=adopt")["items"]
    assert len(pods) == 2
    owner = k.json("get", "pod", "orphan", "-n", ns)["metadata"]["ownerReferences"][0]
    assert owner["kind"] == "ReplicaSet" and owner["name"] == "adopter"
    k.run("delete", "pod", "orphan", "-n", ns)
    wait_for(lambda: len([p for p in k.json("get", "pods", "-n", ns, "-l", "app=adopt")["items"]
                          if not p["metadata"].get("deletionTimestamp")]) == 2,
             what="replacement pod")


def test_kill_mid_rollout_resumes(tmp_path):
    s = Server().start()
    fk = FakeKubelet(s.kubeconfig, ["n1", "n2"], ready_delay=1.0).start()
    try:
        k = Kubectl(ALL_KUBECTLS[-1], s)
        k.run("create", "deployment", "r", "--image=busybox:1", "--replicas=8")
        k.run("rollout", "status", "deployment/r", "--timeout=60s")
        k.run("set", "image", "deployment/r", "busybox=busybox:2")
        wait_for(lambda: len(replica_sets(k, "default")) == 2, what="rollout started")
        time.sleep(1.5)
        s.stop(sig="KILL")
        s.start()
        k.run("rollout", "status", "deployment/r", "--timeout=90s")
        d = deployment(k, "default", "r")
        new_hash = None
        for rs in replica_sets(k, "default"):
            if rs["spec"]["template"]["spec"]["containers"][0]["image"] == "busybox:2":
                new_hash = rs["metadata"]["labels"]["pod-template-hash"]
                assert rs["spec"]["replicas"] == 8
            else:
                assert rs["spec"]["replicas"] == 0
        assert new_hash
        wait_for(lambda: len([p for p in k.json("get", "pods", "-l", "app=r")["items"]
                              if not p["metadata"].get("deletionTimestamp")]) == 8,
                 what="exactly 8 live pods")
        pods = [p for p in k.json("get", "pods", "-l", "app=r")["items"]
                if not p["metadata"].get("deletionTimestamp")]
        assert all(p["metadata"]["labels"]["pod-template-hash"] == new_hash for p in pods)
        assert d["status"]["updatedReplicas"] == 8
    finally:
        fk.stop()
        s.cleanup()


def test_statefulset_with_local_path_volumes(cluster, ns, k):
    s, fk = cluster
    sts = {
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "db", "namespace": ns},
        "spec": {
            "replicas": 3, "serviceName": "db",
            "selector": {"matchLabels": {"app": "db"}},
            "template": {"metadata": {"labels": {"app": "db"}},
                         "spec": {"containers": [{"name": "c", "image": "busybox:1",
                                                  "volumeMounts": [{"name": "data", "mountPath": "/data"}]}]}},
            "volumeClaimTemplates": [{
                "metadata": {"name": "data"},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
            }],
        },
    }
    k.run("apply", "-f", "-", input=json.dumps(sts))
    k.run("rollout", "status", "statefulset/db", "-n", ns, "--timeout=90s")
    pods = {p["metadata"]["name"]: p for p in k.json("get", "pods", "-n", ns, "-l", "app=db")["items"]}
    assert sorted(pods) == ["db-0", "db-1", "db-2"]
    created = [pods[f"db-{i}"]["metadata"]["creationTimestamp"] for i in range(3)]
    assert created == sorted(created), "ordinals are created in order"
    for i in range(3):
        pvc = k.json("get", "pvc", f"data-db-{i}", "-n", ns)
        assert pvc["status"]["phase"] == "Bound", pvc
        assert pvc["spec"]["storageClassName"] == "local-path"
        pv = k.json("get", "pv", pvc["spec"]["volumeName"])
        assert pv["spec"]["hostPath"]["path"].startswith(s.data_dir), pv["spec"]["hostPath"]
        term = pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]
        assert term["values"] == [pods[f"db-{i}"]["spec"]["nodeName"]], "the volume pins the pod's node"


def test_daemonset_one_pod_per_eligible_node(cluster, ns, k):
    s, fk = cluster
    fk.taints["node-tainted"] = [{"key": "dedicated", "value": "x", "effect": "NoSchedule"}]
    fk.add_node("node-tainted")
    try:
        ds = {
            "apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": "agent", "namespace": ns},
            "spec": {"selector": {"matchLabels": {"app": "agent"}},
                     "template": {"metadata": {"labels": {"app": "agent"}},
                                  "spec": {"containers": [{"name": "c", "image": "busybox:1"}]}}},
        }
        k.run("apply", "-f", "-", input=json.dumps(ds))
        k.run("rollout", "status", "daemonset/agent", "-n", ns, "--timeout=60s")
        pods = k.json("get", "pods", "-n", ns, "-l", "app=agent")["items"]
        nodes = sorted(p["spec"]["nodeName"] for p in pods)
        assert nodes == ["node-a", "node-b", "node-c"], nodes
    finally:
        k.run("delete", "node", "node-tainted", check=False)
        fk.nodes.remove("node-tainted")


def test_drain_moves_workloads(cluster, ns, k):
    s, fk = cluster
    k.run("create", "deployment", "mover", "--image=busybox:1", "--replicas=4", "-n", ns)
    k.run("rollout", "status", "deployment/mover", "-n", ns, "--timeout=60s")
    pdb = {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
           "metadata": {"name": "mover", "namespace": ns},
           "spec": {"minAvailable": 3, "selector": {"matchLabels": {"app": "mover"}}}}
    k.run("apply", "-f", "-", input=json.dumps(pdb))
    wait_for(lambda: (k.json("get", "pdb", "mover", "-n", ns).get("status") or {}).get("disruptionsAllowed") == 1,
             what="PDB allows one disruption")
    try:
        k.run("drain", "node-a", "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=90s",
              timeout=120)

        def settled():
            pods = [p for p in k.json("get", "pods", "-n", ns, "-l", "app=mover")["items"]
                    if not p["metadata"].get("deletionTimestamp")]
            ready = [p for p in pods if any(c["type"] == "Ready" and c["status"] == "True"
                                            for c in (p.get("status") or {}).get("conditions") or [])]
            return len(ready) == 4 and all(p["spec"].get("nodeName") != "node-a" for p in pods)
        wait_for(settled, what="4 ready pods, none on the drained node")
        assert k.json("get", "node", "node-a")["spec"].get("unschedulable") is True
    finally:
        k.run("uncordon", "node-a", check=False)
