"""PodDisruptionBudgets, the eviction API, `kubectl drain/cordon/uncordon`,
ResourceQuota status and admission, and LimitRange defaults.

There is no kubelet: Nodes are created by the tests, pods are bound through
`nodeName` in the Deployment template, and a small "fake kubelet" thread
marks the pods of a namespace Running and Ready.
"""
import json
import threading
import time

import pytest

from conftest import ALL_KUBECTLS, Kubectl
from rawhttps import Raw, expect_status

REFUSED = "Cannot evict pod as it would violate the pod's disruption budget."


def wait_for(what, fn, timeout=30, interval=0.2):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}; last value: {last!r}")


def newest(server):
    return Kubectl(ALL_KUBECTLS[-1], server)


def make_node(k, name):
    k.run("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}}))
    status = {
        "status": {
            "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
            "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True"}],
        }
    }
    k.run("patch", "node", name, "--subresource=status", "--type=merge", "-p", json.dumps(status))


def deployment(ns, name, replicas, node):
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "nodeName": node,
                    "terminationGracePeriodSeconds": 0,
                    "containers": [{"name": "c", "image": "nginx"}],
                },
            },
        },
    }


def pdb(ns, name, app, min_available):
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"minAvailable": min_available, "selector": {"matchLabels": {"app": app}}},
    }


class FakeKubelet:
    """Marks every pod of a namespace Running and Ready until stopped."""

    def __init__(self, server, ns):
        self.raw = Raw(server)
        self.ns = ns
        self.stop_ev = threading.Event()
        self.thread = threading.Thread(target=self.loop, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop_ev.set()
        self.thread.join(timeout=10)

    def loop(self):
        body = {
            "status": {
                "phase": "Running",
                "podIP": "10.42.0.5",
                "conditions": [{"type": "Ready", "status": "True"}],
            }
        }
        while not self.stop_ev.is_set():
            try:
                pods = self.raw.get(f"/api/v1/namespaces/{self.ns}/pods").json().get("items", [])
                for p in pods:
                    ready = any(
                        c.get("type") == "Ready" and c.get("status") == "True"
                        for c in p.get("status", {}).get("conditions", [])
                    )
                    if ready or p["metadata"].get("deletionTimestamp"):
                        continue
                    self.raw.patch(
                        f"/api/v1/namespaces/{self.ns}/pods/{p['metadata']['name']}/status",
                        body,
                        content_type="application/merge-patch+json",
                    )
            except Exception:
                pass
            self.stop_ev.wait(0.2)


def pdb_row(k, ns, name):
    out = k.run("get", "pdb", name, "-n", ns).stdout.splitlines()
    header, row = out[0], out[1]
    assert "ALLOWED DISRUPTIONS" in header, header
    return row.split()


def ready_pods(k, ns, app):
    pods = k.json("get", "pods", "-n", ns, "-l", f"app={app}")["items"]
    return [
        p
        for p in pods
        if any(c["type"] == "Ready" and c["status"] == "True" for c in p.get("status", {}).get("conditions", []))
    ]


def test_pdb_blocks_drain(server, kubectl_edge, namespace):
    k, ns = kubectl_edge, namespace
    node = f"{ns}-node"
    make_node(k, node)
    try:
        k.run("apply", "-f", "-", input=json.dumps(deployment(ns, "web", 3, node)))
        k.run("apply", "-f", "-", input=json.dumps(pdb(ns, "web-pdb", "web", 3)))
        with FakeKubelet(server, ns):
            wait_for("3 ready pods", lambda: len(ready_pods(k, ns, "web")) == 3)
            # NAME MIN-AVAILABLE MAX-UNAVAILABLE ALLOWED-DISRUPTIONS AGE
            row = wait_for("pdb status", lambda: (r := pdb_row(k, ns, "web-pdb"))[3] == "0" and r)
            assert row[1:3] == ["3", "N/A"], row
            st = k.json("get", "pdb", "web-pdb", "-n", ns)["status"]
            assert st["currentHealthy"] == 3 and st["desiredHealthy"] == 3 and st["expectedPods"] == 3, st
            cond = [c for c in st["conditions"] if c["type"] == "DisruptionAllowed"][0]
            assert cond["status"] == "False" and cond["reason"] == "InsufficientPods", cond

            p = k.run("drain", node, "--timeout=10s", check=False, timeout=60)
            assert p.returncode != 0, p.stdout + p.stderr
            assert REFUSED in p.stdout + p.stderr, p.stdout + p.stderr
            # nothing was evicted, the node is cordoned
            assert len(ready_pods(k, ns, "web")) == 3
            assert k.json("get", "node", node)["spec"].get("unschedulable") is True
            k.run("uncordon", node)
            assert "unschedulable" not in k.json("get", "node", node)["spec"]
    finally:
        k.run("delete", "node", node, "--wait=false", check=False)


def test_drain_evicts_while_pdb_allows(server, kubectl_edge, namespace):
    k, ns = kubectl_edge, namespace
    node = f"{ns}-node"
    make_node(k, node)
    try:
        k.run("apply", "-f", "-", input=json.dumps(deployment(ns, "web", 2, node)))
        k.run("apply", "-f", "-", input=json.dumps(pdb(ns, "web-pdb", "web", 1)))
        with FakeKubelet(server, ns):
            wait_for("2 ready pods", lambda: len(ready_pods(k, ns, "web")) == 2)
            wait_for("1 allowed disruption", lambda: pdb_row(k, ns, "web-pdb")[3] == "1")
            before = {p["metadata"]["name"] for p in ready_pods(k, ns, "web")}
            # one eviction at a time is allowed; the replacement becomes
            # ready and kubectl retries the other after the 429
            p = k.run("drain", node, "--timeout=90s", timeout=120)
            out = p.stdout + p.stderr
            for name in before:
                assert f"pod/{name} evicted" in out, out
            now = {x["metadata"]["name"] for x in k.json("get", "pods", "-n", ns)["items"]}
            assert not (before & now), (before, now)
            assert k.json("get", "node", node)["spec"].get("unschedulable") is True
            k.run("uncordon", node)
            wait_for("2 ready replacements", lambda: len(ready_pods(k, ns, "web")) == 2)
    finally:
        k.run("delete", "node", node, "--wait=false", check=False)


def test_eviction_api_status(server, namespace):
    k, ns = newest(server), namespace
    node = f"{ns}-node"
    make_node(k, node)
    raw = Raw(server)
    try:
        k.run("apply", "-f", "-", input=json.dumps(deployment(ns, "api", 2, node)))
        k.run("apply", "-f", "-", input=json.dumps(pdb(ns, "api-pdb", "api", 1)))
        with FakeKubelet(server, ns):
            wait_for("2 ready pods", lambda: len(ready_pods(k, ns, "api")) == 2)
            wait_for("1 allowed disruption", lambda: pdb_row(k, ns, "api-pdb")[3] == "1")
        a, b = sorted(p["metadata"]["name"] for p in ready_pods(k, ns, "api"))

        def evict(name, dry=False):
            body = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": name, "namespace": ns}}
            if dry:
                body["deleteOptions"] = {"dryRun": ["All"]}
            return raw.post(f"/api/v1/namespaces/{ns}/pods/{name}/eviction", body)

        # dry run: allowed, but nothing changes
        r = evict(a, dry=True)
        assert r.status_code == 201, r.text
        assert k.json("get", "pdb", "api-pdb", "-n", ns)["status"]["disruptionsAllowed"] == 1
        assert k.run("get", "pod", a, "-n", ns, check=False).returncode == 0
        # real eviction: the PDB records the disruption first
        r = evict(a)
        assert r.status_code == 201, r.text
        wait_for(
            "pdb resync after the eviction",
            lambda: k.json("get", "pdb", "api-pdb", "-n", ns)["status"]["currentHealthy"] == 1,
        )
        # the second one would violate the budget (the replacement is not ready)
        r = evict(b)
        doc = expect_status(r, 429, "TooManyRequests")
        assert doc["message"] == REFUSED, doc
        causes = doc["details"]["causes"]
        assert causes == [
            {"reason": "DisruptionBudget", "message": "The disruption budget api-pdb needs 1 healthy pods and has 1 currently"}
        ], causes
        assert k.run("get", "pod", b, "-n", ns, check=False).returncode == 0
    finally:
        k.run("delete", "node", node, "--wait=false", check=False)


def run_pod(k, ns, name, resources=None):
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"containers": [{"name": "c", "image": "nginx"}]},
    }
    if resources is not None:
        pod["spec"]["containers"][0]["resources"] = resources
    return k.run("create", "-f", "-", input=json.dumps(pod), check=False)


def quota_used(k, ns, name):
    return k.json("get", "quota", name, "-n", ns).get("status", {}).get("used", {})


def test_quota_rejects_third_pod(server, kubectl_edge, namespace):
    k, ns = kubectl_edge, namespace
    k.run("create", "quota", "q", "-n", ns, "--hard=pods=2,requests.cpu=1,count/configmaps=5")
    wait_for("quota status", lambda: quota_used(k, ns, "q").get("pods") == "0")
    cpu = lambda m: {"requests": {"cpu": m}}  # noqa: E731
    # a requests.cpu quota makes every container state its cpu request
    p = run_pod(k, ns, "p0")
    assert p.returncode != 0
    assert 'pods "p0" is forbidden: failed quota: q: must specify requests.cpu for: c' in p.stderr, p.stderr
    assert run_pod(k, ns, "p1", cpu("100m")).returncode == 0
    assert run_pod(k, ns, "p2", cpu("200m")).returncode == 0
    p = run_pod(k, ns, "p3", cpu("100m"))
    assert p.returncode != 0
    assert (
        'pods "p3" is forbidden: exceeded quota: q, requested: pods=1, used: pods=2, limited: pods=2'
        in p.stderr
    ), p.stderr
    wait_for("used pods=2", lambda: quota_used(k, ns, "q").get("pods") == "2")
    d = k.run("describe", "quota", "q", "-n", ns).stdout
    lines = {tuple(line.split()) for line in d.splitlines()}
    assert ("pods", "2", "2") in lines, d
    assert ("requests.cpu", "300m", "1") in lines, d
    assert ("count/configmaps", "1", "5") in lines, d  # kube-root-ca.crt
    # deleting a pod frees its share (the controller recomputes)
    k.run("delete", "pod", "p1", "-n", ns, "--wait=false")
    wait_for("used pods=1", lambda: quota_used(k, ns, "q").get("pods") == "1")
    assert run_pod(k, ns, "p3", cpu("100m")).returncode == 0
    # the cpu request is checked too
    k.run("delete", "pod", "p3", "-n", ns, "--wait=false")
    wait_for("used pods=1", lambda: quota_used(k, ns, "q").get("pods") == "1")
    wait_for("used cpu=200m", lambda: quota_used(k, ns, "q").get("requests.cpu") == "200m")
    p = run_pod(k, ns, "p4", cpu("900m"))
    assert p.returncode != 0
    assert (
        'pods "p4" is forbidden: exceeded quota: q, requested: requests.cpu=900m, used: requests.cpu=200m, limited: requests.cpu=1'
        in p.stderr
    ), p.stderr


def test_limitrange_defaults_and_max(server, namespace):
    k, ns = newest(server), namespace
    lr = {
        "apiVersion": "v1",
        "kind": "LimitRange",
        "metadata": {"name": "lr", "namespace": ns},
        "spec": {
            "limits": [
                {
                    "type": "Container",
                    "default": {"cpu": "200m", "memory": "128Mi"},
                    "defaultRequest": {"cpu": "100m", "memory": "64Mi"},
                    "max": {"cpu": "1"},
                }
            ]
        },
    }
    k.run("apply", "-f", "-", input=json.dumps(lr))
    assert run_pod(k, ns, "plain").returncode == 0
    pod = k.json("get", "pod", "plain", "-n", ns)
    res = pod["spec"]["containers"][0]["resources"]
    assert res == {
        "limits": {"cpu": "200m", "memory": "128Mi"},
        "requests": {"cpu": "100m", "memory": "64Mi"},
    }, res
    assert pod["metadata"]["annotations"]["kubernetes.io/limit-ranger"] == (
        "LimitRanger plugin set: cpu, memory request for container c; cpu, memory limit for container c"
    )
    assert pod["status"]["qosClass"] == "Burstable"
    p = run_pod(k, ns, "big", {"limits": {"cpu": "2"}})
    assert p.returncode != 0
    assert 'pods "big" is forbidden: maximum cpu usage per Container is 1, but limit is 2' in p.stderr, p.stderr
