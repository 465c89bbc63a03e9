"""Node-pressure eviction and image garbage collection of the embedded agent,
configured the k3s way with `--kubelet-arg key=value`.

The memory threshold is chosen from this machine's current `memory.available`
(computed like the kubelet: MemTotal minus the root cgroup's working set), so
the node is under pressure only while a BestEffort pod holds ~3 GiB. Memory
used by other processes on the host while the test runs shifts that margin
(1.5 GiB); the test checks the node is not under pressure before the hog runs.

Needs root and containerd (CI has both); uses the default pod bridge `skiff0`,
so it must not run next to another skiff agent on the same host.
"""
import json
import os
import shutil
import subprocess
import tempfile

import pytest

from conftest import ALL_KUBECTLS, SKIFF, Kubectl, Server, free_port, wait_for
from test_agent import clean_host, MKIMAGE, needs_root_containerd, node_ready, sh

IMAGE = "skiff.test/busybox:1"
NODE = "skiff-e2e-evict"
HOG_MIB = 3000
MARGIN_MIB = 1536
GC_TTL_SECONDS = 20

pytestmark = needs_root_containerd


def memory_available_mib():
    """memory.available as the kubelet computes it."""
    meminfo = {}
    for line in open("/proc/meminfo"):
        k, v = line.split(":", 1)
        meminfo[k] = int(v.split()[0]) * 1024
    total = meminfo["MemTotal"]
    try:
        usage = int(open("/sys/fs/cgroup/memory/memory.usage_in_bytes").read())
        stat = dict(l.split() for l in open("/sys/fs/cgroup/memory/memory.stat"))
        inactive = int(stat["total_inactive_file"])
    except OSError:
        usage = total - meminfo["MemFree"]
        inactive = meminfo.get("Inactive(file)", 0)
    return (total - (usage - inactive)) // (1 << 20)


@pytest.fixture(scope="module")
def cluster():
    tmp = tempfile.mkdtemp(prefix="skiff-evict-")
    data_dir = os.path.join(tmp, "data")
    images = os.path.join(data_dir, "agent", "images")
    os.makedirs(images, mode=0o700)
    sh("python3", MKIMAGE, "busybox", "--name", IMAGE, "-o", os.path.join(images, "busybox.tar"))
    threshold = memory_available_mib() - MARGIN_MIB
    assert threshold > 256, f"not enough memory for this test ({threshold + MARGIN_MIB} MiB available)"
    args = [
        "--node-name", NODE, "--node-ip", "127.0.0.1", "--kubelet-port", str(free_port()),
        "--kubelet-arg", f"eviction-hard=memory.available<{threshold}Mi",
        "--kubelet-arg", "eviction-pressure-transition-period=5s",
        "--kubelet-arg", "housekeeping-interval=1s",
        "--kubelet-arg", "image-gc-high-threshold=1",
        "--kubelet-arg", "image-gc-low-threshold=0",
        "--kubelet-arg", f"minimum-image-ttl-duration={GC_TTL_SECONDS}s",
        "--kubelet-arg", "image-gc-period=2s",
        "--kubelet-arg", "kube-reserved=cpu=100m,memory=64Mi",
        "--kubelet-arg", "system-reserved=cpu=150m",
        "--kubelet-arg", "max-pods=60",
    ]
    srv = Server(data_dir=data_dir, agent=True, extra_args=args)
    srv.threshold = threshold
    srv.start()
    k = Kubectl(ALL_KUBECTLS[-1], srv)
    try:
        wait_for(lambda: node_ready(k, NODE), timeout=60, what="node Ready")
        k.run("create", "namespace", "evict")
        wait_for(lambda: k.run("get", "sa", "default", "-n", "evict", check=False).returncode == 0,
                 timeout=30, what="default service account")
    except AssertionError:
        print(srv.logs())
        raise
    yield srv
    k.run("delete", "pods", "--all", "--all-namespaces", "--grace-period=0", "--force",
          "--wait=true", check=False, timeout=120)
    srv.stop()
    clean_host(tmp, data_dir)
    srv.cleanup()
    shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
def k(cluster):
    return Kubectl(ALL_KUBECTLS[-1], cluster)


def node(k):
    return k.json("get", "node", NODE)


def condition(n, ty):
    return next(c for c in n["status"]["conditions"] if c["type"] == ty)


def has_taint(n, key):
    return any(t["key"] == key and t["effect"] == "NoSchedule" for t in n["spec"].get("taints") or [])


def pod(name, command, image=IMAGE, resources=None):
    c = {"name": name, "image": image, "imagePullPolicy": "Never", "command": ["sh", "-c", command]}
    if resources:
        c["resources"] = resources
    return {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"terminationGracePeriodSeconds": 1, "containers": [c],
                 # the pressure taint must not keep the test pods from scheduling
                 "tolerations": [{"key": "node.kubernetes.io/memory-pressure", "operator": "Exists"}]},
    }


def apply(k, manifest, ns="evict"):
    k.run("apply", "-n", ns, "-f", "-", input=json.dumps(manifest))


def get_pod(k, name, ns="evict"):
    return k.json("get", "pod", name, "-n", ns)


def running(k, name, ns="evict"):
    p = get_pod(k, name, ns)
    return p.get("status", {}).get("phase") == "Running" and all(
        "running" in (c.get("state") or {}) for c in p["status"].get("containerStatuses", [{}])
    ) and p


def test_allocatable_keeps_reservations_and_eviction_threshold(cluster, k):
    st = node(k)["status"]
    cap, alloc = st["capacity"], st["allocatable"]
    assert cap["pods"] == alloc["pods"] == "60"
    cores = int(cap["cpu"])
    assert alloc["cpu"] == f"{cores * 1000 - 250}m"
    kib = lambda q: int(q.removesuffix("Ki"))
    # capacity - kube-reserved memory - memory.available threshold
    assert kib(alloc["memory"]) == kib(cap["memory"]) - 64 * 1024 - cluster.threshold * 1024


def test_kubelet_arg_errors_name_the_flag(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("")
    for bad, want in [("bogus=1", "bogus"), ("eviction-hard=memory.available<lots", "eviction-hard"),
                      ("image-gc-low-threshold=90", "image-gc-low-threshold")]:
        p = subprocess.run(
            [SKIFF, "server", "--config", str(config), "--data-dir", str(tmp_path / "data"),
             "--kubelet-arg", bad],
            capture_output=True, text=True, timeout=30,
        )
        assert p.returncode != 0
        assert "--kubelet-arg" in p.stderr and want in p.stderr, p.stderr


def test_memory_pressure_evicts_besteffort_pod_and_clears(cluster, k):
    n = node(k)
    mp = condition(n, "MemoryPressure")
    assert mp["status"] == "False", f"under memory pressure before the test: {mp} (busy host?)"
    assert mp["reason"] == "KubeletHasSufficientMemory"
    assert mp["message"] == "kubelet has sufficient memory available"

    guaranteed = {"requests": {"memory": "64Mi", "cpu": "100m"}, "limits": {"memory": "64Mi", "cpu": "100m"}}
    apply(k, pod("guaranteed", "sleep 3600", resources=guaranteed))
    wait_for(lambda: running(k, "guaranteed"), timeout=60, what="guaranteed pod running")
    assert get_pod(k, "guaranteed")["status"]["qosClass"] == "Guaranteed"

    # two blocked dd processes each hold a 1500 MiB buffer
    half = HOG_MIB // 2
    hog = f"dd if=/dev/zero bs={half}M count=1 | sleep 3600 & dd if=/dev/zero bs={half}M count=1 | sleep 3600 & wait"
    apply(k, pod("hog", hog))

    def pressure():
        n = node(k)
        c = condition(n, "MemoryPressure")
        return c["status"] == "True" and has_taint(n, "node.kubernetes.io/memory-pressure") and c
    c = wait_for(pressure, timeout=90, what="MemoryPressure True and its taint")
    assert c["reason"] == "KubeletHasInsufficientMemory"
    assert c["message"] == "kubelet has insufficient memory available"

    def evicted():
        st = get_pod(k, "hog").get("status", {})
        return st.get("phase") == "Failed" and st.get("reason") == "Evicted" and st
    st = wait_for(evicted, timeout=60, what="hog evicted")
    prefix = f"The node was low on resource: memory. Threshold quantity: {cluster.threshold}Mi, available: "
    assert st["message"].startswith(prefix), st["message"]
    assert "Container hog was using " in st["message"] and "request is 0, has larger consumption of memory. " in st["message"], st["message"]
    dt = [c for c in st.get("conditions", []) if c["type"] == "DisruptionTarget"]
    assert dt and dt[0]["reason"] == "TerminationByKubelet", st
    events = k.json("get", "events", "-n", "evict", "--field-selector", "involvedObject.name=hog,reason=Evicted")
    assert events["items"] and events["items"][0]["type"] == "Warning", events
    assert events["items"][0]["message"] == st["message"]

    # the pressure ends with the hog; the condition clears after the transition period
    def cleared():
        n = node(k)
        c = condition(n, "MemoryPressure")
        return c["status"] == "False" and not has_taint(n, "node.kubernetes.io/memory-pressure") and c
    c = wait_for(cleared, timeout=90, what="MemoryPressure back to False")
    assert c["reason"] == "KubeletHasSufficientMemory"

    # the Guaranteed pod survived, the evicted one was never restarted
    g = running(k, "guaranteed")
    assert g and g["status"]["containerStatuses"][0]["restartCount"] == 0, g
    h = get_pod(k, "hog")["status"]
    assert h["phase"] == "Failed" and h["reason"] == "Evicted"
    assert not any("running" in (cs.get("state") or {}) for cs in h.get("containerStatuses", [])), h
    node_events = k.json("get", "events", "-n", "default", "--field-selector", f"involvedObject.name={NODE}")
    reasons = {e["reason"] for e in node_events["items"]}
    assert {"NodeHasInsufficientMemory", "NodeHasSufficientMemory", "EvictionThresholdMet"} <= reasons, reasons


def ctr(cluster, *args):
    sock = os.path.join(cluster.data_dir, "agent", "containerd", "containerd.sock")
    return sh("ctr", "-a", sock, "-n", "k8s.io", *args)


def image_names(cluster):
    return set(ctr(cluster, "images", "ls", "-q").stdout.split())


def test_image_gc_removes_unused_images_only(cluster, k, tmp_path):
    tmp = str(tmp_path)
    for name in ("unused", "used"):
        tar = os.path.join(tmp, f"{name}.tar")
        sh("python3", MKIMAGE, "busybox", "--name", f"skiff.test/gc-{name}:1",
           "--label", f"which={name}", "-o", tar)
        ctr(cluster, "images", "import", tar)
    apply(k, pod("user", "sleep 3600", image="skiff.test/gc-used:1"))
    wait_for(lambda: running(k, "user"), timeout=GC_TTL_SECONDS, what="pod using gc-used running")

    wait_for(lambda: "skiff.test/gc-unused:1" not in image_names(cluster), timeout=GC_TTL_SECONDS + 40,
             what="unused image collected")
    names = image_names(cluster)
    assert "skiff.test/gc-used:1" in names, names          # in use
    assert IMAGE in names, names                            # airgap image: pinned
    assert "skiff.invalid/pause:3.10" in names, names       # the pause image
    # usage can never drop below 0 %: the node says so
    def failed_event():
        ev = k.json("get", "events", "-n", "default", "--field-selector",
                    f"involvedObject.name={NODE},reason=FreeDiskSpaceFailed")
        return ev["items"]
    items = wait_for(failed_event, timeout=30, what="FreeDiskSpaceFailed event")
    assert items[0]["message"].startswith("Failed to garbage collect required amount of images. Attempted to free ")
    assert running(k, "user")
