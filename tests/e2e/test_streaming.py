"""Streaming end to end: `kubectl logs/exec/attach/cp/port-forward` through
the API server's proxy to the kubelet HTTPS server, on real containers.

The kubelet server runs alone (`skiff streaming-dev serve`, a hidden developer
command) on a private containerd; the pods are created through CRI with the
kubelet's label contract (`skiff streaming-dev run-container`), and the test
plays the rest of the kubelet by writing the Node and Pod objects (node
address 127.0.0.1, kubeletEndpoint = the dev server's port).
kubectl 1.27 speaks SPDY only; 1.33 speaks WebSocket v5 for exec/attach/cp
(translated to SPDY by the API server) and the WebSocket tunnel for
port-forward. Needs root, containerd, runc, the CNI plugins and mkimage.py.
"""
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

import pytest

from conftest import ALL_KUBECTLS, OLDEST_NEWEST, SKIFF, Kubectl, Server, free_port, wait_for

MKIMAGE = os.environ.get("SKIFF_MKIMAGE", os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))), "shared", "tools", "mkimage.py"))
CNI_DIR = "/usr/lib/cni"

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0
    or not shutil.which("containerd")
    or not shutil.which("ctr")
    or not os.path.exists(os.path.join(CNI_DIR, "bridge"))
    or not os.path.exists(MKIMAGE),
    reason="needs root, containerd, ctr, CNI plugins and mkimage.py",
)

CONTAINERD_CONFIG = """version = 2
root = "{d}/root"
state = "{d}/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "{d}/containerd.sock"
[ttrpc]
  address = "{d}/containerd.sock.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "skiff.test/pause:1"
  restrict_oom_score_adj = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{cni}"
    conf_dir = "{d}/net.d"
    max_conf_num = 1
"""


class Node:
    """containerd + kubelet dev server + pods created through CRI."""

    def __init__(self, server):
        self.server = server
        self.dir = tempfile.mkdtemp(prefix="skiff-strm-")
        self.sock = os.path.join(self.dir, "containerd.sock")
        self.bridge = f"strm{random.randint(0, 99999)}"
        self.procs = []
        self.pods = []

    def start(self):
        d = self.dir
        os.makedirs(os.path.join(d, "net.d"))
        with open(os.path.join(d, "containerd.toml"), "w") as f:
            f.write(CONTAINERD_CONFIG.format(d=d, cni=CNI_DIR))
        subnet = f"10.88.{random.randint(100, 250)}.0/24"
        with open(os.path.join(d, "net.d", "10-strm.conflist"), "w") as f:
            json.dump({
                "cniVersion": "1.0.0", "name": "strm",
                "plugins": [{"type": "bridge", "bridge": self.bridge, "isGateway": True,
                             "ipMasq": False, "hairpinMode": True,
                             "ipam": {"type": "host-local", "ranges": [[{"subnet": subnet}]],
                                      "dataDir": os.path.join(d, "ipam")}},
                            {"type": "portmap", "capabilities": {"portMappings": True}}],
            }, f)
        log = open(os.path.join(d, "containerd.log"), "wb")
        self.containerd = subprocess.Popen(
            ["containerd", "--config", os.path.join(d, "containerd.toml")],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_for(lambda: os.path.exists(self.sock), timeout=30, what="containerd socket")
        for name, extra in [
            ("busybox", []),
            ("pause", ["--cmd", '["sh","-c","trap \\"exit 0\\" TERM INT; while :; do sleep 1; done"]']),
        ]:
            tar = os.path.join(d, f"{name}.tar")
            subprocess.run(["python3", MKIMAGE, "busybox", "--name", f"skiff.test/{name}:1",
                            *extra, "-o", tar], check=True, capture_output=True)
            subprocess.run(["ctr", "-a", self.sock, "-n", "k8s.io", "images", "import", tar],
                           check=True, capture_output=True)
        self.port = free_port()
        klog = open(os.path.join(d, "kubelet.log"), "wb")
        self.kubelet = subprocess.Popen(
            [SKIFF, "streaming-dev", "serve", "--cri-socket", self.sock, "--port", str(self.port),
             "--tls-dir", os.path.join(self.server.data_dir, "server", "tls")],
            stdout=klog, stderr=subprocess.STDOUT)

        def up():
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return True
            except OSError:
                return False

        wait_for(up, timeout=30, what="kubelet dev server")
        return self

    def run(self, pod, uid, container, *command, restart=0, stdin=False):
        args = [SKIFF, "streaming-dev", "run-container", "--cri-socket", self.sock,
                "--name", pod, "--uid", uid, "--log-dir", os.path.join(self.dir, "pod-logs"),
                "--container", container, "--image", "skiff.test/busybox:1",
                "--restart-count", str(restart)]
        if stdin:
            args.append("--stdin")
        p = subprocess.run(args + ["--", *command], capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr
        if pod not in self.pods:
            self.pods.append(pod)
        return p.stdout.strip()

    def logs(self):
        with open(os.path.join(self.dir, "kubelet.log"), "rb") as f:
            return f.read().decode(errors="replace")[-3000:]

    def stop(self):
        for pod in self.pods:
            subprocess.run([SKIFF, "streaming-dev", "remove-pod", "--cri-socket", self.sock,
                            "--name", pod], capture_output=True, timeout=120)
        for p in (self.kubelet, self.containerd):
            if p and p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)
        subprocess.run(["umount", "-R", os.path.join(self.dir, "root")], capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)


def now():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def running(name, restarts=0, last=None):
    s = {"name": name, "ready": True, "restartCount": restarts, "image": "skiff.test/busybox:1",
         "imageID": "", "state": {"running": {"startedAt": now()}}}
    if last:
        s["lastState"] = {"terminated": last}
    return s


@pytest.fixture(scope="module")
def env():
    server = Server(extra_args=["--node-monitor-grace-period", "3600s"]).start()
    node = Node(server)
    try:
        node.start()
        k = Kubectl(ALL_KUBECTLS[-1], server)
        node.run("web", "uid-web", "main", "sh", "-c",
                 "i=0; while true; do echo line $i; echo err $i >&2; i=$((i+1)); sleep 0.2; done")
        node.run("web", "uid-web", "http", "sh", "-c",
                 "mkdir -p /www && echo hello-from-httpd > /www/index.html && exec httpd -f -p 8080 -h /www")
        node.run("web", "uid-web", "echo", "sh", "-c", "while read l; do echo got:$l; done",
                 stdin=True)
        node.run("crash", "uid-crash", "c", "sh", "-c", "echo first-run; exit 1")
        node.run("crash", "uid-crash", "c", "sh", "-c", "echo second-run; sleep 3600", restart=1)
        docs = [
            {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "strm-node"}},
            {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "namespace": "default"},
             "spec": {"nodeName": "strm-node", "containers": [
                 {"name": "main", "image": "skiff.test/busybox:1"},
                 {"name": "http", "image": "skiff.test/busybox:1"},
                 {"name": "echo", "image": "skiff.test/busybox:1", "stdin": True}]}},
            {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "crash", "namespace": "default"},
             "spec": {"nodeName": "strm-node", "containers": [{"name": "c", "image": "skiff.test/busybox:1"}]}},
            {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "pending", "namespace": "default"},
             "spec": {"nodeName": "strm-node", "containers": [{"name": "p", "image": "skiff.test/busybox:1"}]}},
        ]
        k.run("apply", "-f", "-", input="\n---\n".join(json.dumps(d) for d in docs))
        k.run("patch", "node", "strm-node", "--subresource=status", "--type=merge", "-p", json.dumps(
            {"status": {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                        "daemonEndpoints": {"kubeletEndpoint": {"Port": node.port}}}}))
        k.run("patch", "pod", "web", "--subresource=status", "--type=merge", "-p", json.dumps(
            {"status": {"phase": "Running",
                        "containerStatuses": [running("main"), running("http"), running("echo")]}}))
        k.run("patch", "pod", "crash", "--subresource=status", "--type=merge", "-p", json.dumps(
            {"status": {"phase": "Running", "containerStatuses": [running("c", 1, {
                "exitCode": 1, "reason": "Error", "startedAt": now(), "finishedAt": now()})]}}))
        k.run("patch", "pod", "pending", "--subresource=status", "--type=merge", "-p", json.dumps(
            {"status": {"phase": "Pending", "containerStatuses": [{
                "name": "p", "ready": False, "restartCount": 0, "image": "skiff.test/busybox:1",
                "imageID": "", "state": {"waiting": {"reason": "ContainerCreating"}}}]}}))
        yield server, node
    finally:
        node.stop()
        server.cleanup()


@pytest.fixture(params=OLDEST_NEWEST, ids=lambda p: p.rsplit("kubectl.", 1)[-1])
def kc(request, env):
    return Kubectl(request.param, env[0])


def test_kubelet_requires_client_cert(env):
    server, node = env
    import ssl
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    url = f"https://127.0.0.1:{node.port}"
    with urllib.request.urlopen(url + "/healthz", context=ctx, timeout=5) as r:
        assert r.read() == b"ok"
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(url + "/containerLogs/default/web/main", context=ctx, timeout=5)
    assert e.value.code == 401


def test_logs(kc, env):
    out = wait_for(lambda: kc.run("logs", "web", "-c", "main").stdout, timeout=20, what="logs")
    assert "line 0\n" in out and "err 0\n" in out
    tail = kc.run("logs", "web", "-c", "main", "--tail", "2").stdout
    assert len(tail.splitlines()) == 2
    ts = kc.run("logs", "web", "-c", "main", "--tail", "1", "--timestamps").stdout
    assert ts.split(" ", 1)[0].endswith("Z") and "T" in ts.split(" ", 1)[0]
    # --since 1s is shorter than the whole log only once it spans over a second
    # (10 lines a second): wait for 3 s worth before comparing
    wait_for(lambda: len(kc.run("logs", "web", "-c", "main").stdout.splitlines()) >= 30,
             timeout=20, what="3 s of logs")
    assert len(kc.run("logs", "web", "-c", "main", "--since", "1s").stdout.splitlines()) < len(
        kc.run("logs", "web", "-c", "main").stdout.splitlines())
    limited = kc.run("logs", "web", "-c", "main", "--limit-bytes", "5").stdout
    assert len(limited) == 5 and out.startswith(limited)
    assert kc.run("logs", "crash").stdout == "second-run\n"
    wait_for(lambda: kc.run("logs", "crash", "--previous", check=False).stdout == "first-run\n",
             timeout=20, what="previous logs")
    p = kc.run("logs", "web", "-c", "main", "--previous", check=False)
    assert p.returncode != 0
    assert 'previous terminated container "main" in pod "web" not found' in p.stderr
    p = kc.run("logs", "web", "-c", "nope", check=False)
    assert "container nope is not valid for pod web" in p.stderr
    p = kc.run("logs", "pending", check=False)
    assert 'container "p" in pod "pending" is waiting to start: ContainerCreating' in p.stderr


def test_logs_follow(kc, env):
    p = subprocess.Popen([kc.binary, "--kubeconfig", kc.server.kubeconfig, "logs", "-f", "--tail",
                          "1", "web", "-c", "main"], stdout=subprocess.PIPE, text=True)
    try:
        first = p.stdout.readline()
        seen = [p.stdout.readline() for _ in range(4)]
        assert first and all(seen), seen
        n0 = int(first.split()[1]) if first.startswith("line") else int(seen[0].split()[1])
        assert any(l.startswith("line ") and int(l.split()[1]) > n0 for l in seen)
    finally:
        p.kill()
        p.wait()


def test_exec(kc, env):
    assert kc.run("exec", "web", "-c", "main", "--", "sh", "-c", "echo hi").stdout == "hi\n"
    p = kc.run("exec", "web", "-c", "main", "--", "sh", "-c", "echo out; echo err >&2; exit 3",
               check=False)
    assert p.returncode == 3 and p.stdout == "out\n" and "err" in p.stderr
    assert kc.run("exec", "-i", "web", "-c", "main", "--", "cat", input="piped\n").stdout == "piped\n"
    # a terminal: `script` gives kubectl a pty
    p = subprocess.run(["script", "-qec", f"{kc.binary} --kubeconfig {kc.server.kubeconfig} exec "
                        "-it web -c main -- sh -c 'echo hi; tty'", "/dev/null"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and "hi" in p.stdout and "/dev/pts/" in p.stdout, p.stdout + p.stderr
    p = kc.run("exec", "web", "-c", "nope", "--", "true", check=False)
    assert p.returncode != 0 and "container nope is not valid for pod web" in p.stderr


def test_cp(kc, env, tmp_path):
    src = tmp_path / "up.txt"
    data = f"payload {kc.version} {time.time()}\n"
    src.write_text(data)
    dest = f"/tmp/up-{kc.version}.txt"
    kc.run("cp", str(src), f"web:{dest}", "-c", "main")
    assert kc.run("exec", "web", "-c", "main", "--", "cat", dest).stdout == data
    back = tmp_path / "down.txt"
    kc.run("cp", f"web:{dest}", str(back), "-c", "main")
    assert back.read_text() == data


def test_attach(kc, env):
    p = subprocess.Popen([kc.binary, "--kubeconfig", kc.server.kubeconfig, "attach", "web", "-c",
                          "main"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        lines = [p.stdout.readline() for _ in range(3)]
        assert any(l.startswith("line ") for l in lines), lines
    finally:
        p.kill()
        p.wait()
    p = subprocess.Popen([kc.binary, "--kubeconfig", kc.server.kubeconfig, "attach", "-i", "web",
                          "-c", "echo"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, text=True)
    try:
        word = f"w{kc.version}"
        p.stdin.write(word + "\n")
        p.stdin.flush()
        line = p.stdout.readline()
        while line and not line.startswith("got:"):
            line = p.stdout.readline()
        assert line == f"got:{word}\n"
    finally:
        p.kill()
        p.wait()


def test_port_forward(kc, env):
    port = free_port()
    p = subprocess.Popen([kc.binary, "--kubeconfig", kc.server.kubeconfig, "port-forward",
                          "pod/web", f"{port}:8080"], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    try:
        assert "Forwarding from" in p.stdout.readline()
        for _ in range(2):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/index.html", timeout=10) as r:
                assert r.read() == b"hello-from-httpd\n"
    finally:
        p.kill()
        p.wait()


def test_python_client_websocket_exec(env):
    from kubernetes import client, config
    from kubernetes.stream import stream
    server, _ = env
    cfg = client.Configuration()
    config.load_kube_config(config_file=server.kubeconfig, client_configuration=cfg)
    with client.ApiClient(cfg) as api:
        v1 = client.CoreV1Api(api)
        out = stream(v1.connect_get_namespaced_pod_exec, "web", "default", container="main",
                     command=["sh", "-c", "echo from-python"], stderr=True, stdin=False,
                     stdout=True, tty=False)
        assert out.strip() == "from-python"
        # stdin closed with the v5 CLOSE signal: cat ends and the exit code arrives
        ws = stream(v1.connect_get_namespaced_pod_exec, "web", "default", container="main",
                    command=["sh", "-c", "cat; exit 4"], stderr=True, stdin=True, stdout=True,
                    tty=False, _preload_content=False)
        ws.write_stdin("abc\n")
        ws.close_channel(0)
        ws.run_forever(timeout=30)
        assert ws.read_stdout() == "abc\n"
        assert ws.returncode == 4
        ws.close()
