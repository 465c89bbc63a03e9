"""The kubelet's pod lifecycle on a real containerd (CRI), driven through the
API with real kubectl: `skiff kubelet-dev` runs the pod workers against a
private containerd started with ../shared/tools/host-containerd.sh.

Needs root, containerd, runc, the CNI plugins and busybox-static (CI has
them); skipped otherwise.
"""
import json
import os
import random
import shutil
import subprocess
import tempfile
import time

import pytest

from conftest import ALL_KUBECTLS, OLDEST_NEWEST, SKIFF, Kubectl, wait_for

TOOLS = os.environ.get("SKIFF_TOOLS", os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))), "shared", "tools"))
HOST_CTD = os.path.join(TOOLS, "host-containerd.sh")
MKIMAGE = os.path.join(TOOLS, "mkimage.py")
BUSYBOX = "skiff.test/busybox:1"
PAUSE = "skiff.test/pause:pods-e2e"

PAUSE_C = r"""
#include <signal.h>
#include <unistd.h>
#include <sys/wait.h>
static void term(int s){(void)s;_exit(0);}
static void chld(int s){(void)s;while(waitpid(-1,0,WNOHANG)>0);}
int main(void){struct sigaction a={0};a.sa_handler=term;sigaction(SIGTERM,&a,0);
sigaction(SIGINT,&a,0);a.sa_handler=chld;sigaction(SIGCHLD,&a,0);for(;;)pause();}
"""

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("containerd") or not os.path.exists(HOST_CTD),
    reason="needs root, containerd and the shared host-containerd tool",
)


def sh(*args, check=True, **kw):
    return subprocess.run(list(args), check=check, capture_output=True, text=True, **kw)


class Node:
    """A private containerd plus `skiff kubelet-dev` registered as a node."""

    def __init__(self, server):
        self.server = server
        self.tmp = tempfile.mkdtemp(prefix="skiff-pods-")
        self.ctd = os.path.join(self.tmp, "ctd")
        self.agent = os.path.join(self.tmp, "agent")
        self.sock = os.path.join(self.ctd, "containerd.sock")
        n = random.randint(1, 250)
        self.bridge = f"skpods{os.getpid() % 10000}"
        self.subnet = f"10.89.{n}.0/24"
        self.name = f"pods-node-{os.getpid() % 10000}"
        self.kubelet = None
        self.log_path = os.path.join(self.tmp, "kubelet.log")

    def ctr(self, *args, check=True):
        return sh("ctr", "-a", self.sock, "-n", "k8s.io", *args, check=check)

    def start(self):
        os.makedirs(self.agent)
        imgs = os.path.join(self.tmp, "img")
        os.makedirs(imgs)
        sh("python3", MKIMAGE, "busybox", "--name", BUSYBOX, "-o", f"{imgs}/busybox.tar")
        pause_bin = os.path.join(imgs, "pause")
        src = os.path.join(imgs, "pause.c")
        with open(src, "w") as f:
            f.write(PAUSE_C)
        if shutil.which("gcc") and sh("gcc", "-O2", "-static", "-o", pause_bin, src, check=False).returncode == 0:
            sh("python3", MKIMAGE, "binary", "--name", PAUSE, "--entrypoint", "/pause",
               "-o", f"{imgs}/pause.tar", pause_bin)
        else:
            sh("python3", MKIMAGE, "busybox", "--name", PAUSE, "--cmd", '["sleep","2147483647"]',
               "-o", f"{imgs}/pause.tar")
        sh("bash", HOST_CTD, "up", self.ctd, PAUSE)
        conf = {
            "cniVersion": "1.0.0", "name": "skiff-pods-e2e",
            "plugins": [
                {"type": "bridge", "bridge": self.bridge, "isGateway": True, "ipMasq": False,
                 "hairpinMode": True,
                 "ipam": {"type": "host-local", "ranges": [[{"subnet": self.subnet}]],
                          "routes": [{"dst": "0.0.0.0/0"}],
                          "dataDir": os.path.join(self.ctd, "cni-ipam")}},
                {"type": "portmap", "capabilities": {"portMappings": True}},
            ],
        }
        with open(os.path.join(self.ctd, "net.d", "10-pods.conflist"), "w") as f:
            json.dump(conf, f)
        self.ctr("images", "import", f"{imgs}/pause.tar")
        self.ctr("images", "import", f"{imgs}/busybox.tar")
        self.start_kubelet()
        return self

    def start_kubelet(self):
        self.log = open(self.log_path, "ab")
        self.kubelet = subprocess.Popen(
            [SKIFF, "kubelet-dev", "--kubeconfig", self.server.kubeconfig,
             "--node-name", self.name, "--cri-socket", self.sock, "--agent-dir", self.agent],
            stdout=self.log, stderr=subprocess.STDOUT)

    def stop_kubelet(self):
        if self.kubelet and self.kubelet.poll() is None:
            self.kubelet.terminate()
            try:
                self.kubelet.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kubelet.kill()
                self.kubelet.wait()
        self.log.close()

    def logs(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")[-4000:]
        except OSError:
            return ""

    def sandboxes(self):
        out = self.ctr("containers", "ls", "-q", check=False).stdout.split()
        return out

    def cleanup(self):
        self.stop_kubelet()
        # containers the kubelet left (it removes pods it deletes): kill them hard
        for cid in self.sandboxes():
            self.ctr("tasks", "kill", "-s", "SIGKILL", cid, check=False)
        deadline = time.time() + 10
        while time.time() < deadline:
            tasks = self.ctr("tasks", "ls", "-q", check=False).stdout.split()
            if not tasks:
                break
            for t in tasks:
                self.ctr("tasks", "delete", "-f", t, check=False)
            time.sleep(0.2)
        for cid in self.sandboxes():
            self.ctr("containers", "delete", cid, check=False)
        sh("bash", HOST_CTD, "down", self.ctd, check=False)
        sh("ip", "link", "del", self.bridge, check=False)
        mounts = []
        with open("/proc/self/mounts") as f:
            for line in f:
                mp = line.split()[1]
                if mp.startswith(self.tmp):
                    mounts.append(mp)
        for mp in sorted(mounts, key=len, reverse=True):
            sh("umount", "-l", mp, check=False)
        shutil.rmtree(self.tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def node(server):
    n = Node(server).start()
    k = Kubectl(ALL_KUBECTLS[-1], server)
    try:
        wait_for(lambda: k.run("get", "node", n.name, check=False).returncode == 0,
                 timeout=60, what="node registered")
        yield n
        # let the kubelet remove what it runs
        for ns in json.loads(k.run("get", "ns", "-o", "json").stdout)["items"]:
            name = ns["metadata"]["name"]
            k.run("delete", "pods", "--all", "-n", name, "--wait=false", check=False)
        wait_for(lambda: not n.sandboxes(), timeout=60, what="sandboxes removed")
    finally:
        n.cleanup()


def k33(server):
    return Kubectl(ALL_KUBECTLS[-1], server)


def apply(k, ns, manifest):
    k.run("apply", "-n", ns, "-f", "-", input=json.dumps(manifest))


def pod_json(k, ns, name):
    p = k.run("get", "pod", name, "-n", ns, "-o", "json", check=False)
    return json.loads(p.stdout) if p.returncode == 0 else None


def pod(name, containers, node, **spec):
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"nodeName": node.name, "containers": containers, **spec}}


def busybox(name, script, **extra):
    return {"name": name, "image": BUSYBOX, "command": ["sh", "-c", script], **extra}


def wait_pod(k, ns, name, pred, timeout=60, what=None):
    def check():
        p = pod_json(k, ns, name)
        return p if p and pred(p) else None
    return wait_for(check, timeout=timeout, what=what or f"pod {name}")


def status_column(kubectl, ns, name):
    out = kubectl.run("get", "pod", name, "-n", ns, "--no-headers").stdout.split()
    return out[2]


def test_running_ready_status_and_memory_cgroup(server, node, namespace):
    k = k33(server)
    apply(k, namespace, pod("web", [busybox("main", "trap 'exit 0' TERM; while true; do sleep 1; done",
                                            resources={"limits": {"memory": "48Mi", "cpu": "250m"}})], node))
    p = wait_pod(k, namespace, "web", lambda p: any(
        c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", [])),
        what="web Ready")
    st = p["status"]
    assert st["phase"] == "Running"
    assert st["podIP"] and st["podIPs"][0]["ip"] == st["podIP"]
    assert st["hostIP"] == "127.0.0.1"
    assert st["startTime"]
    types = [c["type"] for c in st["conditions"]]
    for t in ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled"):
        assert t in types, types
    cs = st["containerStatuses"][0]
    assert cs["ready"] and cs["started"] and cs["restartCount"] == 0
    assert cs["containerID"].startswith("containerd://")
    assert cs["imageID"].startswith("sha256:")
    assert "running" in cs["state"] and cs["state"]["running"]["startedAt"]
    # the memory limit reached the container's cgroup
    cid = cs["containerID"].split("://", 1)[1]
    pid = next(line.split()[1] for line in node.ctr("tasks", "ls").stdout.splitlines() if line.startswith(cid))
    with open(f"/proc/{pid}/cgroup") as f:
        mem = next(l.split(":", 2)[2].strip() for l in f if l.split(":")[1] == "memory")
    assert "/pod" + p["metadata"]["uid"] in mem
    with open(f"/sys/fs/cgroup/memory{mem}/memory.limit_in_bytes") as f:
        assert int(f.read()) == 48 * 1024 * 1024
    events = k.run("get", "events", "-n", namespace, "--field-selector", "involvedObject.name=web").stdout
    for reason in ("Pulled", "Created", "Started"):
        assert reason in events, events
    assert 'Container image "skiff.test/busybox:1" already present on machine' in events


def test_job_like_pods_succeed_and_fail(server, node, namespace):
    k = k33(server)
    apply(k, namespace, pod("ok", [busybox("main", "echo done > /dev/termination-log; exit 0")], node,
                            restartPolicy="Never"))
    apply(k, namespace, pod("bad", [busybox("main", "echo oops; exit 3",
                                            terminationMessagePolicy="FallbackToLogsOnError")], node,
                            restartPolicy="Never"))
    ok = wait_pod(k, namespace, "ok", lambda p: p["status"].get("phase") == "Succeeded")
    t = ok["status"]["containerStatuses"][0]["state"]["terminated"]
    assert t["reason"] == "Completed" and t["exitCode"] == 0 and t["message"] == "done\n"
    assert t["startedAt"] and t["finishedAt"]
    bad = wait_pod(k, namespace, "bad", lambda p: p["status"].get("phase") == "Failed")
    t = bad["status"]["containerStatuses"][0]["state"]["terminated"]
    assert t["reason"] == "Error" and t["exitCode"] == 3 and t["message"] == "oops"
    for kc in OLDEST_NEWEST:
        kubectl = Kubectl(kc, server)
        assert status_column(kubectl, namespace, "ok") == "Completed"
        assert status_column(kubectl, namespace, "bad") == "Error"


def test_crash_loop_backoff(server, node, namespace):
    k = k33(server)
    apply(k, namespace, pod("crash", [busybox("main", "exit 1")], node))
    p = wait_pod(k, namespace, "crash", lambda p: (
        p["status"].get("containerStatuses", [{}])[0].get("restartCount", 0) >= 2
        and "waiting" in p["status"]["containerStatuses"][0].get("state", {})), timeout=60)
    cs = p["status"]["containerStatuses"][0]
    w = cs["state"]["waiting"]
    assert w["reason"] == "CrashLoopBackOff"
    assert w["message"].startswith("back-off ") and "restarting failed container=main pod=crash_" in w["message"]
    assert cs["lastState"]["terminated"]["exitCode"] == 1
    assert p["status"]["phase"] == "Running"
    for kc in OLDEST_NEWEST:
        assert status_column(Kubectl(kc, server), namespace, "crash") == "CrashLoopBackOff"
    events = k.run("get", "events", "-n", namespace, "--field-selector", "involvedObject.name=crash").stdout
    assert "Back-off restarting failed container main in pod crash_" in events


def test_init_container_and_env(server, node, namespace):
    k = k33(server)
    k.run("create", "configmap", "cm1", "-n", namespace, "--from-literal=color=blue")
    k.run("create", "secret", "generic", "s1", "-n", namespace, "--from-literal=pw=hunter2")
    mount = [{"name": "shared", "mountPath": "/data"}]
    env = [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "COLOR", "valueFrom": {"configMapKeyRef": {"name": "cm1", "key": "color"}}},
        {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "s1", "key": "pw"}}},
        {"name": "GREETING", "value": "hi $(POD_NAME)"},
    ]
    manifest = pod("init", [busybox("main", "cat /data/msg > /dev/termination-log; env > /data/env; exit 0",
                                    volumeMounts=mount, env=env)], node,
                   restartPolicy="Never",
                   volumes=[{"name": "shared", "emptyDir": {}}],
                   initContainers=[busybox("setup", "sleep 3; echo from-init > /data/msg", volumeMounts=mount)])
    apply(k, namespace, manifest)
    wait_for(lambda: status_column(k, namespace, "init") == "Init:0/1", timeout=30, what="Init:0/1")
    p = wait_pod(k, namespace, "init", lambda p: p["status"].get("phase") == "Succeeded")
    init = p["status"]["initContainerStatuses"][0]["state"]["terminated"]
    main = p["status"]["containerStatuses"][0]["state"]["terminated"]
    assert init["reason"] == "Completed"
    assert main["message"] == "from-init\n"
    assert init["finishedAt"] <= main["startedAt"]
    uid = p["metadata"]["uid"]
    env_file = os.path.join(node.agent, "pods", uid, "volumes", "kubernetes.io~empty-dir", "shared", "env")
    with open(env_file) as f:
        got = dict(l.split("=", 1) for l in f.read().splitlines() if "=" in l)
    assert got["POD_NAME"] == "init"
    assert got["POD_NS"] == namespace
    assert got["POD_IP"] == p["status"]["podIP"]
    assert got["COLOR"] == "blue"
    assert got["PW"] == "hunter2"
    assert got["GREETING"] == "hi init"
    assert got["KUBERNETES_SERVICE_PORT"] == "443"


def test_graceful_delete(server, node, namespace):
    k = k33(server)
    apply(k, namespace, pod("term", [busybox("main", "trap 'echo bye; exit 0' TERM; while true; do sleep 1; done")],
                            node, terminationGracePeriodSeconds=20))
    p = wait_pod(k, namespace, "term", lambda p: p["status"].get("phase") == "Running")
    cid = p["status"]["containerStatuses"][0]["containerID"].split("://", 1)[1]
    start = time.time()
    k.run("delete", "pod", "term", "-n", namespace, "--timeout=30s")
    took = time.time() - start
    assert took < 15, f"graceful delete took {took:.1f}s"
    assert pod_json(k, namespace, "term") is None
    wait_for(lambda: cid not in node.sandboxes(), timeout=20, what="container removed")
    assert not os.path.exists(os.path.join(node.agent, "pods", p["metadata"]["uid"]))


def test_adopt_after_kubelet_restart(server, node, namespace):
    k = k33(server)
    apply(k, namespace, pod("keep", [busybox("main", "while true; do sleep 1; done")], node))
    p = wait_pod(k, namespace, "keep", lambda p: p["status"].get("phase") == "Running")
    cid = p["status"]["containerStatuses"][0]["containerID"]
    node.stop_kubelet()
    # a pod force-deleted while the kubelet is down is an orphan on restart
    apply(k, namespace, pod("gone", [busybox("main", "sleep 3600")], node))
    node.start_kubelet()
    g = wait_pod(k, namespace, "gone", lambda p: p["status"].get("phase") == "Running")
    gone_cid = g["status"]["containerStatuses"][0]["containerID"].split("://", 1)[1]
    node.stop_kubelet()
    k.run("delete", "pod", "gone", "-n", namespace, "--grace-period=0", "--force")
    node.start_kubelet()
    wait_for(lambda: gone_cid not in node.sandboxes(), timeout=30, what="orphan removed")
    p = wait_pod(k, namespace, "keep", lambda p: p["status"].get("phase") == "Running")
    assert p["status"]["containerStatuses"][0]["containerID"] == cid
    assert p["status"]["containerStatuses"][0]["restartCount"] == 0
    assert node.sandboxes().count(cid.split("://", 1)[1]) == 1
