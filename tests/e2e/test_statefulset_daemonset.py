"""StatefulSet and DaemonSet controllers end to end, driven with real kubectl.

There is no kubelet: pods are marked Running/Ready through the status
subresource, Node objects are created by the test, and daemon pods (pinned
to their node by a required `matchFields metadata.name` affinity) are bound
with a Binding unless a scheduler already did. Templates use
`terminationGracePeriodSeconds: 0` so deleted pods go away at once.
No fixed sleeps: state is polled with timeouts (`eventually`).
"""
import json
import time

import pytest

from conftest import ALL_KUBECTLS, OLDEST_NEWEST, Kubectl, wait_for


eventually = wait_for


@pytest.fixture
def k(server):
    return Kubectl(ALL_KUBECTLS[-1], server)


def pods(k, ns, app):
    items = k.json("get", "pods", "-n", ns, "-l", f"app={app}")["items"]
    return {p["metadata"]["name"]: p for p in items}


def is_ready(pod):
    conds = pod.get("status", {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conds)


def alive(pod):
    return "deletionTimestamp" not in pod["metadata"]


def mark_ready(k, ns, name):
    k.run(
        "patch", "pod", name, "-n", ns, "--subresource=status", "--type=merge", "-p",
        json.dumps({"status": {
            "phase": "Running", "podIP": "10.42.0.5",
            "conditions": [{"type": "Ready", "status": "True"}],
        }}),
    )


def revision(pod):
    return pod["metadata"]["labels"].get("controller-revision-hash")


# --------------------------------------------------------------------------- StatefulSet

STS = """
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: web
spec:
  serviceName: web
  replicas: 3
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      terminationGracePeriodSeconds: 0
      containers:
      - name: nginx
        image: nginx:1.25
  volumeClaimTemplates:
  - metadata:
      name: www
    spec:
      accessModes: [ReadWriteOnce]
      resources:
        requests:
          storage: 1Gi
"""


def wait_web_pods(k, ns, names, what):
    return eventually(
        lambda: (lambda ps: ps if sorted(n for n, p in ps.items() if alive(p)) == sorted(names) else None)(
            pods(k, ns, "web")),
        what=what,
    )


def ready_in_order(k, ns, count):
    """Marks web-0 … web-(count-1) ready one by one, checking that web-(i+1)
    only exists once web-i is Running and Ready (OrderedReady)."""
    for i in range(count):
        name = f"web-{i}"
        ps = eventually(lambda: (lambda ps: ps if name in ps else None)(pods(k, ns, "web")),
                        what=f"{name} created")
        nxt = f"web-{i + 1}"
        if not is_ready(ps[name]):
            assert nxt not in ps, f"{nxt} created before {name} was ready"
            # the controller keeps waiting while the pod is not ready
            t_end = time.time() + 1.0
            while time.time() < t_end:
                assert nxt not in pods(k, ns, "web"), f"{nxt} created before {name} was ready"
                time.sleep(0.2)
            mark_ready(k, ns, name)


def test_statefulset_ordered_scale_claims_and_partitioned_update(k, namespace):
    ns = namespace
    k.run("apply", "-n", ns, "-f", "-", input=STS)
    ready_in_order(k, ns, 3)
    ps = wait_web_pods(k, ns, ["web-0", "web-1", "web-2"], "three web pods")
    for name, p in ps.items():
        labels = p["metadata"]["labels"]
        assert labels["statefulset.kubernetes.io/pod-name"] == name
        assert labels["apps.kubernetes.io/pod-index"] == name.split("-")[1]
        assert p["spec"]["hostname"] == name and p["spec"]["subdomain"] == "web"
        vols = {v["name"]: v for v in p["spec"]["volumes"]}
        assert vols["www"]["persistentVolumeClaim"]["claimName"] == f"www-{name}"
        ref = p["metadata"]["ownerReferences"][0]
        assert (ref["kind"], ref["name"], ref["controller"]) == ("StatefulSet", "web", True)
    pvcs = k.json("get", "pvc", "-n", ns)["items"]
    assert sorted(c["metadata"]["name"] for c in pvcs) == ["www-web-0", "www-web-1", "www-web-2"]
    assert all(c["metadata"]["labels"]["app"] == "web" for c in pvcs)

    st = eventually(lambda: (lambda s: s if s.get("readyReplicas") == 3 else None)(
        k.json("get", "sts", "web", "-n", ns).get("status", {})), what="readyReplicas 3")
    assert st["currentRevision"] == st["updateRevision"]
    rev1 = st["updateRevision"]
    crs = k.json("get", "controllerrevisions", "-n", ns)["items"]
    assert [(c["metadata"]["name"], c["revision"]) for c in crs] == [(rev1, 1)]
    assert all(revision(p) == rev1 for p in ps.values())
    for kb in OLDEST_NEWEST:
        kk = Kubectl(kb, k.server)
        out = kk.run("rollout", "status", "statefulset/web", "-n", ns, "--timeout=20s").stdout
        assert "roll out complete" in out or "rolling update complete" in out, out

    # scale down: the highest ordinal goes first, one at a time
    k.run("scale", "statefulset", "web", "-n", ns, "--replicas=1")
    wait_web_pods(k, ns, ["web-0"], "web-2 and web-1 removed")
    events = k.json("get", "events", "-n", ns, "--field-selector", "reason=SuccessfulDelete")["items"]
    # event names end in the recording time (hex nanoseconds)
    msgs = [e["message"] for e in sorted(events, key=lambda e: e["metadata"]["name"])]
    assert msgs[:2] == ["delete Pod web-2 in StatefulSet web successful",
                        "delete Pod web-1 in StatefulSet web successful"], msgs
    # claims are retained (default policy) and reused
    assert len(k.json("get", "pvc", "-n", ns)["items"]) == 3
    k.run("scale", "statefulset", "web", "-n", ns, "--replicas=3")
    ready_in_order(k, ns, 3)
    wait_web_pods(k, ns, ["web-0", "web-1", "web-2"], "scaled back to three")

    # partitioned rolling update: only ordinals >= 2 move to the new revision
    k.run("patch", "statefulset", "web", "-n", ns, "--type=merge", "-p", json.dumps({"spec": {
        "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 2}},
        "template": {"spec": {"containers": [{"name": "nginx", "image": "nginx:1.26"}]}},
    }}))
    rev2 = eventually(lambda: (lambda s: s["updateRevision"] if s.get("updateRevision") not in (None, rev1)
                               else None)(k.json("get", "sts", "web", "-n", ns).get("status", {})),
                      what="new update revision")

    def web2_updated():
        ps = pods(k, ns, "web")
        p = ps.get("web-2")
        if p is None or not alive(p) or revision(p) != rev2:
            return None
        if not is_ready(p):
            mark_ready(k, ns, "web-2")
            return None
        return ps

    ps = eventually(web2_updated, what="web-2 at the new revision")
    assert revision(ps["web-0"]) == rev1 and revision(ps["web-1"]) == rev1
    assert ps["web-2"]["spec"]["containers"][0]["image"] == "nginx:1.26"
    st = eventually(lambda: (lambda s: s if s.get("updatedReplicas") == 1 and s.get("readyReplicas") == 3
                             else None)(k.json("get", "sts", "web", "-n", ns).get("status", {})),
                    what="partitioned status")
    assert st["currentRevision"] == rev1 and st["updateRevision"] == rev2
    out = k.run("rollout", "status", "statefulset/web", "-n", ns, "--timeout=20s").stdout
    assert "partitioned roll out complete: 1 new pods have been updated" in out, out
    # web-0 and web-1 stay at the old revision
    time.sleep(0.5)
    ps = pods(k, ns, "web")
    assert revision(ps["web-0"]) == rev1 and revision(ps["web-1"]) == rev1

    # partition 0: the rest rolls, highest ordinal first
    k.run("patch", "statefulset", "web", "-n", ns, "--type=merge", "-p",
          json.dumps({"spec": {"updateStrategy": {"rollingUpdate": {"partition": 0}}}}))

    def all_updated():
        ps = pods(k, ns, "web")
        live = {n: p for n, p in ps.items() if alive(p)}
        if "web-0" in live and revision(live["web-0"]) == rev2:
            assert revision(live.get("web-1", live["web-0"])) == rev2, "web-0 updated before web-1"
        for n, p in sorted(live.items()):
            if not is_ready(p):
                mark_ready(k, ns, n)
        done = sorted(live) == ["web-0", "web-1", "web-2"] and all(
            revision(p) == rev2 and is_ready(p) for p in live.values())
        return done

    eventually(all_updated, timeout=30, what="all pods at the new revision")
    st = eventually(lambda: (lambda s: s if s.get("currentRevision") == rev2 and s.get("updatedReplicas") == 3
                             else None)(k.json("get", "sts", "web", "-n", ns).get("status", {})),
                    what="rollout complete in status")
    k.run("rollout", "status", "statefulset/web", "-n", ns, "--timeout=20s")
    hist = k.run("rollout", "history", "statefulset/web", "-n", ns).stdout
    rows = [line.split()[0] for line in hist.splitlines()[2:] if line.strip()]
    assert rows == ["1", "2"], hist
    detail = k.run("rollout", "history", "statefulset/web", "-n", ns, "--revision=2").stdout
    assert "nginx:1.26" in detail, detail
    crs = {c["metadata"]["name"]: c["revision"] for c in k.json("get", "controllerrevisions", "-n", ns)["items"]}
    assert crs == {rev1: 1, rev2: 2}

    # deleting the set removes its pods (garbage collector) but keeps claims
    k.run("delete", "statefulset", "web", "-n", ns)
    eventually(lambda: not pods(k, ns, "web"), what="pods garbage-collected")
    assert len(k.json("get", "pvc", "-n", ns)["items"]) == 3


# --------------------------------------------------------------------------- DaemonSet

DS = """
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: agent
spec:
  selector:
    matchLabels: {app: agent}
  updateStrategy:
    type: RollingUpdate
    rollingUpdate: {maxUnavailable: 1}
  template:
    metadata:
      labels: {app: agent}
    spec:
      terminationGracePeriodSeconds: 0
      containers:
      - name: a
        image: busybox:1.36
"""


def make_node(k, name, taints=None):
    node = {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "spec": {"taints": taints} if taints else {}}
    k.run("apply", "-f", "-", input=json.dumps(node))
    res = {"cpu": "4", "memory": "8Gi", "pods": "110"}
    k.run("patch", "node", name, "--subresource=status", "--type=merge", "-p", json.dumps({"status": {
        "allocatable": res, "capacity": res,
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "ok"}],
    }}))


def pinned_node(pod):
    terms = (pod["spec"].get("affinity", {}).get("nodeAffinity", {})
             .get("requiredDuringSchedulingIgnoredDuringExecution", {}).get("nodeSelectorTerms", []))
    assert len(terms) == 1, terms
    fields = terms[0]["matchFields"]
    assert fields[0]["key"] == "metadata.name" and fields[0]["operator"] == "In"
    return fields[0]["values"][0]


def bind_and_ready(k, ns, ps):
    """Binds unbound daemon pods to their pinned node (unless a scheduler
    did) and marks bound pods Running/Ready."""
    for name, p in ps.items():
        if not alive(p):
            continue
        if not p["spec"].get("nodeName"):
            binding = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name},
                       "target": {"kind": "Node", "name": pinned_node(p)}}
            k.run("create", "--raw", f"/api/v1/namespaces/{ns}/pods/{name}/binding", "-f", "-",
                  input=json.dumps(binding), check=False)
        if not is_ready(p):
            k.run("patch", "pod", name, "-n", ns, "--subresource=status", "--type=merge", "-p",
                  json.dumps({"status": {"phase": "Running", "podIP": "10.42.0.6",
                                         "conditions": [{"type": "Ready", "status": "True"}]}}),
                  check=False)


def roll_until_done(k, ns, nodes, image, max_unavailable):
    """Drives pods to Ready until every node runs one ready pod of `image`,
    failing at once if more than max_unavailable (unless None) nodes lack a
    ready pod."""
    seen_unavailable = [0]

    def step():
        ps = pods(k, ns, "agent")
        ready_nodes = {pinned_node(p) for p in ps.values() if alive(p) and is_ready(p)}
        unavailable = len(set(nodes) - ready_nodes)
        seen_unavailable[0] = max(seen_unavailable[0], unavailable)
        if max_unavailable is not None and unavailable > max_unavailable:
            pytest.fail(
                f"{unavailable} nodes without a ready daemon pod (maxUnavailable {max_unavailable}): "
                f"{ {n: (pinned_node(p), is_ready(p), alive(p)) for n, p in ps.items()} }")
        live = [p for p in ps.values() if alive(p)]
        done = (len(live) == len(nodes)
                and sorted(pinned_node(p) for p in live) == sorted(nodes)
                and all(is_ready(p) and p["spec"]["containers"][0]["image"] == image for p in live))
        if not done:
            bind_and_ready(k, ns, ps)
        return done

    eventually(step, timeout=40, interval=0.2, what=f"daemon pods at {image}")
    return seen_unavailable[0]


def test_daemonset_taints_affinity_and_rolling_update(k, namespace):
    ns = namespace
    n1, n2, n3 = (f"{ns}-n{i}" for i in (1, 2, 3))
    try:
        make_node(k, n1)
        make_node(k, n2)
        make_node(k, n3, taints=[{"key": "dedicated", "value": "infra", "effect": "NoSchedule"}])
        k.run("apply", "-n", ns, "-f", "-", input=DS)

        ps = eventually(lambda: (lambda ps: ps if len(ps) == 2 else None)(pods(k, ns, "agent")),
                        what="two daemon pods")
        assert sorted(pinned_node(p) for p in ps.values()) == sorted([n1, n2])
        for p in ps.values():
            ref = p["metadata"]["ownerReferences"][0]
            assert (ref["kind"], ref["name"]) == ("DaemonSet", "agent")
            tols = {(t.get("key"), t.get("effect")) for t in p["spec"]["tolerations"]}
            assert ("node.kubernetes.io/unreachable", "NoExecute") in tols
        st = eventually(lambda: (lambda s: s if s.get("desiredNumberScheduled") == 2 else None)(
            k.json("get", "ds", "agent", "-n", ns).get("status", {})), what="desired 2")
        assert st["currentNumberScheduled"] == 2 and st["numberMisscheduled"] == 0
        # the tainted node stays empty
        time.sleep(0.5)
        assert len(pods(k, ns, "agent")) == 2

        roll_until_done(k, ns, [n1, n2], "busybox:1.36", None)
        for kb in OLDEST_NEWEST:
            out = Kubectl(kb, k.server).run("rollout", "status", "daemonset/agent", "-n", ns,
                                            "--timeout=20s").stdout
            assert 'daemon set "agent" successfully rolled out' in out, out

        # tolerating the taint adds the third node (and rolls the other two)
        k.run("patch", "daemonset", "agent", "-n", ns, "--type=merge", "-p", json.dumps({"spec": {
            "template": {"spec": {"tolerations": [
                {"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}]}}}}))
        roll_until_done(k, ns, [n1, n2, n3], "busybox:1.36", 1)
        assert len([p for p in pods(k, ns, "agent").values() if alive(p)]) == 3

        # image update: pods are replaced one node at a time (maxUnavailable 1)
        k.run("set", "image", "daemonset/agent", "-n", ns, "a=busybox:1.37")
        worst = roll_until_done(k, ns, [n1, n2, n3], "busybox:1.37", 1)
        assert worst == 1, "the update never took a node down"
        k.run("rollout", "status", "daemonset/agent", "-n", ns, "--timeout=20s")
        st = k.json("get", "ds", "agent", "-n", ns)["status"]
        assert (st["desiredNumberScheduled"], st["updatedNumberScheduled"], st["numberAvailable"]) == (3, 3, 3)
        hist = k.run("rollout", "history", "daemonset/agent", "-n", ns).stdout
        rows = [line.split()[0] for line in hist.splitlines()[2:] if line.strip()]
        assert rows == ["1", "2", "3"], hist
        hashes = {c["metadata"]["labels"]["controller-revision-hash"]
                  for c in k.json("get", "controllerrevisions", "-n", ns)["items"]}
        assert all(revision(p) in hashes for p in pods(k, ns, "agent").values())

        # maxUnavailable 2: two nodes may be down at once
        k.run("patch", "daemonset", "agent", "-n", ns, "--type=merge", "-p", json.dumps({"spec": {
            "updateStrategy": {"rollingUpdate": {"maxUnavailable": 2}},
            "template": {"spec": {"containers": [{"name": "a", "image": "busybox:1.38"}]}}}}))
        roll_until_done(k, ns, [n1, n2, n3], "busybox:1.38", 2)

        k.run("delete", "daemonset", "agent", "-n", ns)
        eventually(lambda: not pods(k, ns, "agent"), what="daemon pods garbage-collected")
    finally:
        k.run("delete", "node", n1, n2, n3, "--ignore-not-found", "--wait=false", check=False)
