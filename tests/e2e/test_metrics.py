"""Resource metrics end to end: `skiff server` with its embedded agent on a
real containerd; the kubelet's `/stats/summary` and `/metrics/resource`
(through `nodes/proxy`), the in-process `metrics.k8s.io` API, `kubectl top
node|pod` with the oldest and newest kubectl, and an autoscaling/v2 HPA on
CPU utilization scaling a Deployment of busybox CPU burners.

Needs root and containerd (CI has both). Pods use hostNetwork so the test
touches no pod bridge; like the other agent modules it must not run next to
another skiff agent on the same host.
"""
import json
import os
import re
import tempfile
import time

import pytest

from conftest import ALL_KUBECTLS, OLDEST_NEWEST, Kubectl, Server, free_port, wait_for
from test_agent import clean_host, IMAGE, MKIMAGE, needs_root_containerd, node_ready, sh

NODE = "skiff-metrics-node"
BURN = "trap 'exit 0' TERM; while :; do :; done"

pytestmark = needs_root_containerd


@pytest.fixture(scope="module")
def cluster():
    tmp = tempfile.mkdtemp(prefix="skiff-metrics-")
    data_dir = os.path.join(tmp, "data")
    images = os.path.join(data_dir, "agent", "images")
    os.makedirs(images, mode=0o700)
    sh("python3", MKIMAGE, "busybox", "--name", IMAGE, "-o", os.path.join(images, "busybox.tar"))
    srv = Server(
        data_dir=data_dir,
        agent=True,
        extra_args=["--node-name", NODE, "--node-ip", "127.0.0.1",
                    "--kubelet-port", str(free_port())],
    )
    srv.start()
    k = Kubectl(ALL_KUBECTLS[-1], srv)
    try:
        wait_for(lambda: node_ready(k, NODE), timeout=60, what="node Ready")
    except AssertionError:
        print(srv.logs())
        raise
    yield srv
    k.run("delete", "deployments,pods,hpa", "--all", "--all-namespaces", "--grace-period=1",
          "--wait=true", check=False, timeout=120)
    srv.stop()
    clean_host(tmp, data_dir)
    srv.cleanup()


@pytest.fixture(scope="module")
def admin(cluster):
    return Kubectl(ALL_KUBECTLS[-1], cluster)


@pytest.fixture(scope="module")
def burner(admin):
    """One CPU-burning pod in `default`, Running."""
    pod = {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "burner", "labels": {"app": "burner"}},
        "spec": {
            "hostNetwork": True, "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "burn", "image": IMAGE, "imagePullPolicy": "Never",
                            "command": ["sh", "-c", BURN],
                            "resources": {"requests": {"cpu": "100m"}, "limits": {"cpu": "300m"}}}],
        },
    }
    admin.run("apply", "-f", "-", input=json.dumps(pod))
    wait_for(lambda: admin.json("get", "pod", "burner")["status"].get("phase") == "Running",
             timeout=60, what="burner Running")
    return "burner"


@pytest.fixture(params=OLDEST_NEWEST, ids=lambda p: p.rsplit("kubectl.", 1)[-1])
def kc(request, cluster):
    return Kubectl(request.param, cluster)


def raw(k, path, check=True):
    p = k.run("get", "--raw", path, check=check)
    return json.loads(p.stdout) if p.returncode == 0 else p


def cpu_nanos(q):
    """Quantity string → nanocores."""
    m = re.fullmatch(r"(\d+)([num]?)", q)
    assert m, q
    return int(m.group(1)) * {"n": 1, "u": 1000, "m": 1000000, "": 1000000000}[m.group(2)]


def pod_metrics(k, name, ns="default"):
    p = raw(k, f"/apis/metrics.k8s.io/v1beta1/namespaces/{ns}/pods/{name}", check=False)
    return p if isinstance(p, dict) else None


# ---------------------------------------------------------------------------


def test_kubelet_summary_and_resource_metrics(admin, burner):
    def summary():
        s = raw(admin, f"/api/v1/nodes/{NODE}/proxy/stats/summary")
        pods = [p for p in s["pods"] if p["podRef"]["name"] == burner]
        return pods and pods[0]["containers"] and pods[0].get("cpu", {}).get("usageNanoCores") and (s, pods[0])
    s, pod = wait_for(summary, timeout=60, interval=1, what="summary with the burner's CPU rate")
    node = s["node"]
    assert node["nodeName"] == NODE
    assert node["cpu"]["usageCoreNanoSeconds"] > 0
    assert node["memory"]["workingSetBytes"] > 0
    assert node["memory"]["availableBytes"] > 0
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", node["startTime"])
    assert pod["podRef"]["namespace"] == "default" and pod["podRef"]["uid"]
    c = pod["containers"][0]
    assert c["name"] == "burn"
    assert c["cpu"]["usageCoreNanoSeconds"] > 0
    assert c["memory"]["workingSetBytes"] > 0
    # a busy loop limited to 300m uses well above 10m
    assert pod["cpu"]["usageNanoCores"] > 10_000_000, pod

    text = admin.run("get", "--raw", f"/api/v1/nodes/{NODE}/proxy/metrics/resource").stdout
    assert "# TYPE container_cpu_usage_seconds_total counter" in text
    line = re.search(
        r'^container_cpu_usage_seconds_total\{container="burn",namespace="default",pod="burner"\} (\S+) (\d+)$',
        text, re.M)
    assert line, text
    assert float(line.group(1)) > 0 and abs(int(line.group(2)) / 1000 - time.time()) < 120
    for name in ("node_cpu_usage_seconds_total", "node_memory_working_set_bytes",
                 "container_memory_working_set_bytes", "container_start_time_seconds",
                 "pod_cpu_usage_seconds_total", "pod_memory_working_set_bytes"):
        assert re.search(rf"^{name}(\{{[^}}]*\}})? \S+ \d+$", text, re.M), name
    assert re.search(r"^scrape_error 0$", text, re.M)


def test_discovery_lists_the_metrics_group(kc, cluster):
    groups = raw(kc, "/apis")
    assert any(g["name"] == "metrics.k8s.io" for g in groups["groups"])
    rl = raw(kc, "/apis/metrics.k8s.io/v1beta1")
    assert {r["name"] for r in rl["resources"]} == {"nodes", "pods"}
    out = kc.run("api-resources", "--api-group=metrics.k8s.io").stdout
    assert re.search(r"^pods\s+metrics\.k8s\.io/v1beta1\s+true\s+PodMetrics", out, re.M), out
    assert re.search(r"^nodes\s+metrics\.k8s\.io/v1beta1\s+false\s+NodeMetrics", out, re.M), out


def test_kubectl_top(kc, burner):
    def top_pod():
        p = kc.run("top", "pod", burner, "--no-headers", check=False)
        if p.returncode != 0:
            return None
        f = p.stdout.split()
        return f[0] == burner and cpu_nanos(f[1]) > 0 and f
    f = wait_for(top_pod, timeout=60, interval=2, what="kubectl top pod")
    assert f[2].endswith("Mi"), f

    def top_node():
        p = kc.run("top", "node", "--no-headers", check=False)
        if p.returncode != 0:
            return None
        f = p.stdout.split()
        return f and f[0] == NODE and f
    f = wait_for(top_node, timeout=60, interval=2, what="kubectl top node")
    assert cpu_nanos(f[1]) > 0 and f[2].endswith("%") and f[3].endswith("Mi"), f

    out = kc.run("top", "pod", "--containers", "-l", "app=burner").stdout
    assert re.search(rf"^{burner}\s+burn\s+\d+m\s+\d+Mi", out, re.M), out
    # server-side printing, like metrics-server's Table
    out = kc.run("get", "podmetrics", burner).stdout
    assert re.match(r"NAME\s+CPU\s+MEMORY\s+WINDOW\n", out), out
    assert re.search(rf"^{burner}\s+\d+[num]?\s+\d+(Ki|Mi)?\s+[\d.hms]+s$", out, re.M), out
    out = kc.run("get", "nodemetrics").stdout
    assert re.search(rf"^{NODE}\s+\d+[num]?\s+\d+(Ki|Mi|Gi)?\s+[\d.hms]+s$", out, re.M), out


def test_metrics_api_objects(admin, burner):
    m = wait_for(lambda: pod_metrics(admin, burner), timeout=60, interval=2, what="PodMetrics")
    assert m["kind"] == "PodMetrics" and m["apiVersion"] == "metrics.k8s.io/v1beta1"
    assert m["metadata"]["name"] == burner and m["metadata"]["namespace"] == "default"
    assert m["metadata"]["labels"] == {"app": "burner"}
    assert re.fullmatch(r"[\dhm.]+s", m["window"]), m["window"]
    c = m["containers"][0]
    assert c["name"] == "burn"
    assert cpu_nanos(c["usage"]["cpu"]) > 10_000_000, c
    assert re.fullmatch(r"\d+(Ki|Mi)?", c["usage"]["memory"]), c
    lst = raw(admin, "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods?labelSelector=app%3Dburner")
    assert lst["kind"] == "PodMetricsList" and [i["metadata"]["name"] for i in lst["items"]] == [burner]
    none = raw(admin, "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods?labelSelector=app%3Dnone")
    assert none["items"] == []
    byname = raw(admin, f"/apis/metrics.k8s.io/v1beta1/pods?fieldSelector=metadata.name%3D{burner}")
    assert [i["metadata"]["namespace"] for i in byname["items"]] == ["default"]
    nodes = raw(admin, "/apis/metrics.k8s.io/v1beta1/nodes")
    assert nodes["kind"] == "NodeMetricsList"
    n = raw(admin, f"/apis/metrics.k8s.io/v1beta1/nodes/{NODE}")
    assert n["kind"] == "NodeMetrics" and cpu_nanos(n["usage"]["cpu"]) > 0

    # unknown objects: NotFound Status
    p = raw(admin, "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/no-such-pod", check=False)
    assert p.returncode != 0 and 'pods "no-such-pod" not found' in p.stderr, p.stderr
    p = admin.run("top", "pod", "no-such-pod", check=False)
    assert p.returncode != 0 and "NotFound" in p.stderr, p.stderr
    p = raw(admin, "/apis/metrics.k8s.io/v1beta1/nodes/no-such-node", check=False)
    assert p.returncode != 0 and 'nodes "no-such-node" not found' in p.stderr, p.stderr
    # watch is not supported, as with metrics-server
    p = raw(admin, "/apis/metrics.k8s.io/v1beta1/pods?watch=true", check=False)
    assert p.returncode != 0 and "watch is not supported" in p.stderr, p.stderr


def test_hpa_scales_on_cpu_utilization(admin):
    ns = f"metrics-hpa-{int(time.time()) % 100000}"
    admin.run("create", "namespace", ns)
    dep = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "burn"},
        "spec": {
            "replicas": 1, "selector": {"matchLabels": {"app": "burn"}},
            "template": {
                "metadata": {"labels": {"app": "burn"}},
                "spec": {"hostNetwork": True, "terminationGracePeriodSeconds": 1, "containers": [{
                    "name": "burn", "image": IMAGE, "imagePullPolicy": "Never",
                    "command": ["sh", "-c", BURN],
                    "resources": {"requests": {"cpu": "20m"}, "limits": {"cpu": "100m"}},
                }]},
            },
        },
    }
    hpa = {
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "burn"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "burn"},
            "minReplicas": 1, "maxReplicas": 3,
            "metrics": [{"type": "Resource", "resource": {
                "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 10}}}],
        },
    }
    try:
        admin.run("apply", "-n", ns, "-f", "-", input=json.dumps(dep))
        admin.run("apply", "-n", ns, "-f", "-", input=json.dumps(hpa))

        def metrics_seen():
            st = admin.json("get", "hpa", "burn", "-n", ns).get("status", {})
            cur = st.get("currentMetrics") or []
            return cur and cur[0]["resource"]["current"].get("averageUtilization", 0) > 10 and st
        st = wait_for(metrics_seen, timeout=120, interval=2, what="HPA currentMetrics")
        assert st["currentMetrics"][0]["resource"]["name"] == "cpu"

        def scaled():
            d = admin.json("get", "deployment", "burn", "-n", ns)
            return d["spec"]["replicas"] > 1 and d
        wait_for(scaled, timeout=120, interval=2, what="Deployment scaled above 1 replica")
        st = admin.json("get", "hpa", "burn", "-n", ns)["status"]
        assert st["desiredReplicas"] > 1, st
    finally:
        admin.run("delete", "namespace", ns, "--wait=false", check=False)
