"""Static pods, mirror pods and the kubelet's other spec-following duties,
as a user sees them with `skiff server` and its embedded agent on real
containerd: a manifest dropped in `<data-dir>/agent/pod-manifests/` runs
and shows up as the mirror pod `<name>-<node>`; deleting the mirror leaves
the container running and the mirror comes back; editing the file restarts
the pod with the new spec; removing it stops the pod and the mirror goes; a
restarted skiff adopts the same containers. Also: `kubectl set image`
restarts a bare pod's container, `activeDeadlineSeconds` fails a pod with
DeadlineExceeded, and the kubelet's `/pods` is reachable through the node
proxy.

Every pod here uses the host network, so this module creates no bridge and
can run next to other agents' tests. Needs root and containerd.
"""
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time

import pytest

from conftest import ALL_KUBECTLS, OLDEST_NEWEST, Kubectl, Server, free_port, wait_for
from test_agent import needs_root_containerd, node_ready, shim_pids

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MKIMAGE = os.environ.get(
    "SKIFF_MKIMAGE", os.path.join(os.path.dirname(ROOT), "shared", "tools", "mkimage.py")
)
IMAGE = "skiff.test/busybox:1"
IMAGE2 = "skiff.test/busybox:2"
NODE = "skiff-static-node"
SLEEP = "trap 'exit 0' TERM; sleep 3600 & wait"

pytestmark = needs_root_containerd


def sh(*args, check=True, timeout=60):
    p = subprocess.run(args, capture_output=True, text=True, check=False, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"{args} failed ({p.returncode}): {p.stderr}")
    return p


class Cluster:
    def __init__(self, srv, data_dir, tmp):
        self.srv = srv
        self.data_dir = data_dir
        self.tmp = tmp
        self.manifests = os.path.join(data_dir, "agent", "pod-manifests")
        self.sock = os.path.join(data_dir, "agent", "containerd", "containerd.sock")
        self.k = Kubectl(ALL_KUBECTLS[-1], srv)

    def write_manifest(self, fname, text):
        os.makedirs(self.manifests, exist_ok=True)
        tmp = os.path.join(self.manifests, "." + fname + ".tmp")
        with open(tmp, "w") as f:
            f.write(text)
        os.rename(tmp, os.path.join(self.manifests, fname))

    def remove_manifest(self, fname):
        try:
            os.remove(os.path.join(self.manifests, fname))
        except FileNotFoundError:
            pass

    def ctr(self, *args):
        return sh("ctr", "-a", self.sock, "-n", "k8s.io", *args).stdout

    def running_containers(self, pod_name, container="main"):
        """Ids of the running containers `container` of pods named `pod_name`
        (straight from containerd, not from the API)."""
        ids = self.ctr(
            "containers", "ls", "-q",
            f'labels."io.kubernetes.pod.name"=="{pod_name}",'
            f'labels."io.kubernetes.container.name"=="{container}"',
        ).split()
        running = set()
        for line in self.ctr("tasks", "ls").splitlines()[1:]:
            parts = line.split()
            if len(parts) >= 3 and parts[2] == "RUNNING":
                running.add(parts[0])
        return sorted(i for i in ids if i in running)

    def server_log(self):
        with open(self.srv.log_path, "rb") as f:
            return f.read().decode(errors="replace")


@pytest.fixture(scope="module")
def cluster():
    tmp = tempfile.mkdtemp(prefix="skiff-static-")
    data_dir = os.path.join(tmp, "data")
    images = os.path.join(data_dir, "agent", "images")
    os.makedirs(images, mode=0o700)
    sh("python3", MKIMAGE, "busybox", "--name", IMAGE, "-o", os.path.join(images, "busybox1.tar"))
    sh("python3", MKIMAGE, "busybox", "--name", IMAGE2, "--env", "BUILD=2",
       "-o", os.path.join(images, "busybox2.tar"))
    srv = Server(
        data_dir=data_dir,
        agent=True,
        extra_args=["--node-name", NODE, "--node-ip", "127.0.0.1",
                    "--kubelet-port", str(free_port())],
    )
    srv.start()
    c = Cluster(srv, data_dir, tmp)
    try:
        wait_for(lambda: node_ready(c.k, NODE), timeout=60, what="node Ready")
    except AssertionError:
        print(srv.logs())
        raise
    yield c
    # static pods go with their files; API pods with a delete
    for f in os.listdir(c.manifests):
        os.remove(os.path.join(c.manifests, f))
    c.k.run("delete", "pods", "--all", "--all-namespaces", "--grace-period=1", "--wait=true",
            check=False, timeout=120)
    srv.stop()
    for pid in shim_pids(data_dir):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for line in reversed(open("/proc/mounts").read().splitlines()):
        mnt = line.split()[1]
        if mnt.startswith(tmp):
            sh("umount", "-l", mnt, check=False)
    srv.cleanup()
    shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
def ns(cluster):
    name = f"static-{os.getpid() % 1000}-{int(time.time() * 1000) % 1000000}"
    cluster.k.run("create", "namespace", name)
    wait_for(lambda: cluster.k.run("get", "sa", "default", "-n", name, check=False).returncode == 0,
             timeout=30, what="default service account")
    yield name
    cluster.k.run("delete", "namespace", name, "--wait=false", check=False)


def static_manifest(name, command=SLEEP, image=IMAGE, namespace=None, env=None):
    meta = {"name": name, "labels": {"app": name}}
    if namespace:
        meta["namespace"] = namespace
    container = {"name": "main", "image": image, "command": ["sh", "-c", command]}
    if env:
        container["env"] = [{"name": k, "value": v} for k, v in env.items()]
    return {
        "apiVersion": "v1", "kind": "Pod", "metadata": meta,
        "spec": {"hostNetwork": True, "terminationGracePeriodSeconds": 2,
                 "containers": [container]},
    }


def get_pod(k, name, ns="default"):
    p = k.run("get", "pod", name, "-n", ns, "-o", "json", check=False)
    return json.loads(p.stdout) if p.returncode == 0 else None


def mirror_running(k, name, ns="default"):
    p = get_pod(k, name, ns)
    if not p or p["metadata"].get("deletionTimestamp"):
        return False
    st = p.get("status", {})
    ready = any(c["type"] == "Ready" and c["status"] == "True" for c in st.get("conditions", []))
    return st.get("phase") == "Running" and ready and p


def one_running(c, pod_name):
    ids = c.running_containers(pod_name)
    return ids[0] if len(ids) == 1 else None


# ---------------------------------------------------------------------------


def test_static_pod_mirror_delete_edit_restart_remove(cluster):
    c, k = cluster, cluster.k
    mirror = f"web-{NODE}"
    c.write_manifest("web.yaml", json.dumps(static_manifest("web")))
    p = wait_for(lambda: mirror_running(k, mirror), timeout=60, what="mirror pod Running")
    ann = p["metadata"]["annotations"]
    assert ann["kubernetes.io/config.source"] == "file"
    assert ann["kubernetes.io/config.mirror"] == ann["kubernetes.io/config.hash"]
    assert "kubernetes.io/config.seen" in ann
    assert p["metadata"]["uid"] != ann["kubernetes.io/config.hash"]
    owner = p["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["controller"]) == ("Node", NODE, True)
    assert p["spec"]["nodeName"] == NODE
    # no service account token is injected into a mirror pod
    assert not any(v.get("projected") for v in p["spec"].get("volumes", []))
    cid = wait_for(lambda: one_running(c, mirror), timeout=30, what="one running container")
    assert p["status"]["containerStatuses"][0]["containerID"] == "containerd://" + cid

    # the kubelet's own pod list, through the API server's node proxy
    pods = json.loads(k.run("get", "--raw", f"/api/v1/nodes/{NODE}/proxy/pods").stdout)
    assert pods["kind"] == "PodList"
    mine = [i for i in pods["items"] if i["metadata"]["name"] == mirror]
    assert len(mine) == 1
    assert mine[0]["metadata"]["uid"] == ann["kubernetes.io/config.hash"]
    assert mine[0]["status"]["phase"] == "Running"

    # deleting the mirror does not stop the static pod; the mirror comes back
    old_uid = p["metadata"]["uid"]
    k.run("delete", "pod", mirror, "--wait=true", timeout=60)
    assert c.running_containers(mirror) == [cid]
    back = wait_for(
        lambda: (m := mirror_running(k, mirror)) and m["metadata"]["uid"] != old_uid and m,
        timeout=30, what="mirror pod recreated")
    assert back["status"]["containerStatuses"][0]["containerID"] == "containerd://" + cid
    assert c.running_containers(mirror) == [cid]

    # a changed manifest replaces the pod and its mirror
    c.write_manifest("web.yaml", json.dumps(static_manifest("web", env={"EDITED": "yes"})))
    new = wait_for(
        lambda: (m := mirror_running(k, mirror))
        and m["metadata"]["annotations"]["kubernetes.io/config.mirror"]
        != ann["kubernetes.io/config.mirror"] and m,
        timeout=60, what="mirror pod of the edited manifest Running")
    assert new["spec"]["containers"][0]["env"] == [{"name": "EDITED", "value": "yes"}]
    cid2 = wait_for(lambda: (i := one_running(c, mirror)) and i != cid and i, timeout=30,
                    what="the new container alone running")
    out = k.run("exec", mirror, "--", "sh", "-c", "echo $EDITED").stdout
    assert out == "yes\n"

    # a restarted skiff adopts the same container
    c.srv.stop()
    # containerd went with skiff; runc still knows the container
    runc_root = os.path.join(c.data_dir, "agent", "containerd", "runc", "k8s.io")
    state = json.loads(sh("runc", "--root", runc_root, "state", cid2).stdout)
    assert state["status"] == "running"
    c.srv.start()
    wait_for(lambda: node_ready(k, NODE), timeout=60, what="node Ready after restart")
    wait_for(lambda: mirror_running(k, mirror), timeout=60, what="mirror Running after restart")
    # a few sync rounds later still the same single container
    time.sleep(3)
    assert c.running_containers(mirror) == [cid2]
    assert get_pod(k, mirror)["status"]["containerStatuses"][0]["containerID"] \
        == "containerd://" + cid2

    # removing the file stops the pod and deletes the mirror
    c.remove_manifest("web.yaml")
    wait_for(lambda: get_pod(k, mirror) is None, timeout=60, what="mirror pod deleted")
    wait_for(lambda: c.running_containers(mirror) == [], timeout=30, what="container stopped")


@pytest.fixture(params=OLDEST_NEWEST, ids=lambda p: p.rsplit("kubectl.", 1)[-1])
def kc(request, cluster):
    return Kubectl(request.param, cluster.srv)


def test_multi_document_manifest_and_bad_file(cluster, kc, ns):
    c = cluster
    tag = kc.version.replace(".", "")
    a, b = f"multi-a{tag}", f"multi-b{tag}"
    docs = [static_manifest(a, namespace=ns), static_manifest(b, namespace=ns)]
    fname = f"multi{tag}.yml"
    c.write_manifest(fname, "\n---\n".join(json.dumps(d) for d in docs) + "\n")
    c.write_manifest(f"broken{tag}.yaml", "apiVersion: v1\nkind: Pod\nmetadata: {name: [\n")
    c.write_manifest(f".hidden{tag}.yaml", json.dumps(static_manifest(f"hidden{tag}")))
    for n in (a, b):
        wait_for(lambda n=n: mirror_running(kc, f"{n}-{NODE}", ns), timeout=60,
                 what=f"mirror {n} Running")
    rows = kc.run("get", "pods", "-n", ns, "--no-headers").stdout.splitlines()
    table = {r.split()[0]: r.split()[2] for r in rows}
    assert table == {f"{a}-{NODE}": "Running", f"{b}-{NODE}": "Running"}
    wait_for(lambda: f"broken{tag}.yaml" in c.server_log(), timeout=15,
             what="the bad file named in the log")
    assert get_pod(kc, f"hidden{tag}-{NODE}") is None
    c.remove_manifest(fname)
    c.remove_manifest(f"broken{tag}.yaml")
    c.remove_manifest(f".hidden{tag}.yaml")
    for n in (a, b):
        wait_for(lambda n=n: get_pod(kc, f"{n}-{NODE}", ns) is None, timeout=60,
                 what=f"mirror {n} deleted")


def bare_pod(name, image=IMAGE, **extra):
    spec = {"hostNetwork": True, "terminationGracePeriodSeconds": 2,
            "containers": [{"name": "main", "image": image, "command": ["sh", "-c", SLEEP]}]}
    spec.update(extra)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


def test_set_image_restarts_the_container(cluster, ns):
    k = cluster.k
    k.run("apply", "-n", ns, "-f", "-", input=json.dumps(bare_pod("imgswap")))
    before = wait_for(lambda: mirror_running(k, "imgswap", ns), timeout=60, what="pod Running")
    old = before["status"]["containerStatuses"][0]
    k.run("set", "image", "pod/imgswap", f"main={IMAGE2}", "-n", ns)

    def swapped():
        p = mirror_running(k, "imgswap", ns)
        if not p:
            return False
        s = p["status"]["containerStatuses"][0]
        return s["image"] == IMAGE2 and s.get("state", {}).get("running") and s
    now = wait_for(swapped, timeout=60, what="container running the new image")
    assert now["containerID"] != old["containerID"]
    assert now["restartCount"] == old["restartCount"] + 1
    assert k.run("exec", "imgswap", "-n", ns, "--", "sh", "-c", "echo $BUILD").stdout == "2\n"
    events = k.json("get", "events", "-n", ns,
                    "--field-selector", "involvedObject.name=imgswap,reason=Killing")["items"]
    assert any(e["message"] == "Container main definition changed, will be restarted"
               for e in events), events


def test_active_deadline_fails_the_pod(cluster, ns):
    k = cluster.k
    k.run("apply", "-n", ns, "-f", "-",
          input=json.dumps(bare_pod("deadline", activeDeadlineSeconds=3)))

    def failed():
        p = get_pod(k, "deadline", ns)
        st = (p or {}).get("status", {})
        return st.get("phase") == "Failed" and st
    st = wait_for(failed, timeout=60, what="pod Failed")
    assert st["reason"] == "DeadlineExceeded"
    assert st["message"] == "Pod was active on the node longer than the specified deadline"
    wait_for(lambda: cluster.running_containers("deadline") == [], timeout=30,
             what="container stopped")
