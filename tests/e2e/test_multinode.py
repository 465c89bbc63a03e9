"""Two nodes: `skiff server` with its embedded agent on the host, and a second
machine played by `skiff agent` inside its own network namespace, joined with
the server's token over a veth link. Pods land on both nodes, logs/exec
reach the worker's kubelet through the API server, and pods on the two nodes
reach each other by pod IP over the VXLAN overlay (the default) and, after
both nodes restart with `--flannel-backend=host-gw`, over plain host routes.

Needs root, containerd and network namespaces (CI has all three). Test
traffic goes only to loopback and to the namespace's addresses.
"""
import json
import os
import random
import signal
import subprocess
import tempfile

import pytest

from conftest import ALL_KUBECTLS, OLDEST_NEWEST, SKIFF, Kubectl, Server, free_port, wait_for
from test_agent import clean_host, containerd_pid, IMAGE, MKIMAGE, needs_root_containerd, node_ready, sh, shim_pids

pytestmark = needs_root_containerd

SERVER_NODE = "skiff-e2e-server"
WORKER_NODE = "skiff-e2e-worker"


class Worker:
    """`skiff agent` in network namespace `ns`, reachable at `ip`."""

    def __init__(self, tmp, server_ip, port):
        self.netns = f"skw{os.getpid() % 10000}"
        self.host_if = f"skwh{os.getpid() % 10000}"
        self.host_ip = server_ip
        self.ip = server_ip.rsplit(".", 1)[0] + ".2"
        self.data_dir = os.path.join(tmp, "worker")
        self.log_path = os.path.join(tmp, "worker.log")
        self.server_url = f"https://{server_ip}:{port}"
        self.proc = None
        self.extra_args = []

    def up(self):
        sh("ip", "netns", "add", self.netns)
        sh("ip", "link", "add", self.host_if, "type", "veth", "peer", "name", "eth0", "netns", self.netns)
        sh("ip", "addr", "add", f"{self.host_ip}/24", "dev", self.host_if)
        sh("ip", "link", "set", self.host_if, "up")
        inside = ["ip", "netns", "exec", self.netns]
        sh(*inside, "ip", "addr", "add", f"{self.ip}/24", "dev", "eth0")
        sh(*inside, "ip", "link", "set", "eth0", "up")
        sh(*inside, "ip", "link", "set", "lo", "up")
        sh(*inside, "ip", "route", "add", "default", "via", self.host_ip)
        images = os.path.join(self.data_dir, "agent", "images")
        os.makedirs(images, mode=0o700)
        sh("python3", MKIMAGE, "busybox", "--name", IMAGE, "-o", os.path.join(images, "busybox.tar"))

    def agent_args(self, token):
        # nsenter, not `ip netns exec`: the latter remounts /sys for the
        # namespace, which hides the cgroup mounts runc needs
        return ["nsenter", f"--net=/var/run/netns/{self.netns}", SKIFF, "agent",
                "--server", self.server_url, "--token", token,
                "--data-dir", self.data_dir, "--node-name", WORKER_NODE, "--node-ip", self.ip,
                *self.extra_args]

    def start(self, token):
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.agent_args(token), stdout=self.log, stderr=subprocess.STDOUT)

    def logs(self):
        try:
            return open(self.log_path, errors="replace").read()[-5000:]
        except OSError:
            return ""

    def down(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        for pid in shim_pids(self.data_dir):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        sh("ip", "netns", "del", self.netns, check=False)
        sh("ip", "link", "del", self.host_if, check=False)


@pytest.fixture(scope="module")
def two_nodes():
    tmp = tempfile.mkdtemp(prefix="skiff-multi-")
    data_dir = os.path.join(tmp, "data")
    images = os.path.join(data_dir, "agent", "images")
    os.makedirs(images, mode=0o700)
    sh("python3", MKIMAGE, "busybox", "--name", IMAGE, "-o", os.path.join(images, "busybox.tar"))
    server_ip = f"10.250.{random.randrange(1, 250)}.1"
    port = free_port()
    # bound to all addresses: the worker reaches it through the veth; the
    # server node's IP is the veth address, so the worker can route to it
    srv = Server(data_dir=data_dir, port=port, agent=True, bind="0.0.0.0", extra_args=[
        "--node-name", SERVER_NODE, "--node-ip", server_ip,
        "--kubelet-port", str(free_port()), "--tls-san", server_ip,
    ])
    worker = Worker(tmp, server_ip, port)
    worker.up()
    try:
        srv.start()
        k = Kubectl(ALL_KUBECTLS[-1], srv)
        wait_for(lambda: node_ready(k, SERVER_NODE), timeout=60, what="server node Ready")
        worker.start(srv.token())
        try:
            wait_for(lambda: node_ready(k, WORKER_NODE), timeout=60, what="worker node Ready")
        except AssertionError:
            print(worker.logs())
            raise
        yield srv, worker
    finally:
        k = Kubectl(ALL_KUBECTLS[-1], srv)
        k.run("delete", "pods", "--all", "--all-namespaces", "--grace-period=1", "--wait=true",
              check=False, timeout=120)
        worker.down()
        srv.stop()
        clean_host(tmp, data_dir)
        srv.cleanup()


@pytest.fixture(params=OLDEST_NEWEST, ids=lambda p: p.rsplit("kubectl.", 1)[-1])
def kc(request, two_nodes):
    return Kubectl(request.param, two_nodes[0])


def test_both_nodes_ready(kc, two_nodes):
    out = kc.run("get", "nodes", "-o", "wide").stdout
    lines = {l.split()[0]: l.split() for l in out.splitlines()[1:]}
    assert lines[SERVER_NODE][1] == "Ready" and lines[WORKER_NODE][1] == "Ready", out
    worker = node_ready(kc, WORKER_NODE)
    addrs = {a["type"]: a["address"] for a in worker["status"]["addresses"]}
    assert addrs["InternalIP"] == two_nodes[1].ip
    assert worker["spec"]["podCIDR"] != node_ready(kc, SERVER_NODE)["spec"]["podCIDR"]


def test_pods_land_on_both_nodes_and_stream(kc, two_nodes):
    ns = f"multi-{kc.version.replace('.', '-')}-{os.getpid() % 1000}"
    kc.run("create", "namespace", ns)
    try:
        dep = {
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "spread"},
            "spec": {
                "replicas": 4, "selector": {"matchLabels": {"app": "spread"}},
                "template": {
                    "metadata": {"labels": {"app": "spread"}},
                    "spec": {
                        "terminationGracePeriodSeconds": 1,
                        "topologySpreadConstraints": [{
                            "maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
                            "whenUnsatisfiable": "DoNotSchedule",
                            "labelSelector": {"matchLabels": {"app": "spread"}}}],
                        "containers": [{"name": "main", "image": IMAGE, "imagePullPolicy": "Never",
                                        "command": ["sh", "-c", "echo started on $(hostname); trap 'exit 0' TERM; sleep 3600 & wait"]}],
                    },
                },
            },
        }
        kc.run("apply", "-n", ns, "-f", "-", input=json.dumps(dep))
        p = kc.run("rollout", "status", "deployment/spread", "-n", ns, "--timeout=120s",
                   timeout=130, check=False)
        if p.returncode != 0:
            print(kc.run("get", "pods", "-n", ns, "-o", "wide").stdout)
            print(kc.run("get", "events", "-n", ns).stdout)
            print(two_nodes[1].logs())
        assert p.returncode == 0, p.stderr
        pods = kc.json("get", "pods", "-n", ns, "-l", "app=spread")["items"]
        nodes = {p["spec"]["nodeName"] for p in pods}
        assert nodes == {SERVER_NODE, WORKER_NODE}, nodes
        on_worker = next(p for p in pods if p["spec"]["nodeName"] == WORKER_NODE)
        name = on_worker["metadata"]["name"]
        assert on_worker["status"]["hostIP"] == two_nodes[1].ip
        assert on_worker["status"]["podIP"].startswith("10.42.")
        # logs and exec reach the worker's kubelet through the API server
        assert kc.run("logs", name, "-n", ns).stdout == f"started on {name}\n"
        assert kc.run("exec", name, "-n", ns, "--", "hostname").stdout == f"{name}\n"
        p = kc.run("exec", name, "-n", ns, "--", "sh", "-c", "exit 3", check=False)
        assert p.returncode == 3
    finally:
        kc.run("delete", "namespace", ns, "--wait=false", check=False)


def run_pinned_pod(k, ns, name):
    """Creates a pod bound to the worker; returns a check giving its
    container ID once it runs."""
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
           "spec": {"nodeName": WORKER_NODE, "terminationGracePeriodSeconds": 1,
                    "containers": [{"name": "main", "image": IMAGE, "imagePullPolicy": "Never",
                                    "command": ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]}]}}
    k.run("apply", "-n", ns, "-f", "-", input=json.dumps(pod))

    def running():
        p = k.json("get", "pod", name, "-n", ns)
        cs = p["status"].get("containerStatuses") or [{}]
        return p["status"].get("phase") == "Running" and cs[0].get("containerID")
    return running


def test_worker_restart_keeps_pods(two_nodes):
    srv, worker = two_nodes
    k = Kubectl(ALL_KUBECTLS[-1], srv)
    ns = f"multi-restart-{os.getpid() % 1000}"
    k.run("create", "namespace", ns)
    try:
        running = run_pinned_pod(k, ns, "pinned")
        before = wait_for(running, timeout=60, what="pinned pod running")
        worker.proc.terminate()
        worker.proc.wait(timeout=20)
        worker.start(srv.token())
        wait_for(lambda: containerd_pid(worker.data_dir), timeout=30, what="worker containerd back")
        wait_for(lambda: node_ready(k, WORKER_NODE), timeout=60, what="worker Ready again")
        after = wait_for(running, timeout=60, what="pinned pod running after restart")
        assert after == before
        # no duplicate containers: the pod still reports restartCount 0
        cs = k.json("get", "pod", "pinned", "-n", ns)["status"]["containerStatuses"][0]
        assert cs["restartCount"] == 0
    finally:
        k.run("delete", "namespace", ns, "--wait=false", check=False)


def test_worker_starts_while_server_is_unreachable(two_nodes):
    """A node that joined before starts from its stored credentials while
    the server cannot be reached: containerd comes back, the pod's container
    keeps running, and once the server is reachable the node is Ready again
    with the same container."""
    srv, worker = two_nodes
    k = Kubectl(ALL_KUBECTLS[-1], srv)
    ns = f"multi-offline-{os.getpid() % 1000}"
    k.run("create", "namespace", ns)
    try:
        running = run_pinned_pod(k, ns, "offline")
        before = wait_for(running, timeout=60, what="pod running on the worker")
        worker.proc.terminate()
        worker.proc.wait(timeout=20)
        sh("ip", "link", "set", worker.host_if, "down")
        try:
            worker.start(srv.token())
            wait_for(lambda: "starting from the stored node credentials" in worker.logs(),
                     timeout=60, what="the agent to start offline")
            wait_for(lambda: containerd_pid(worker.data_dir), timeout=30,
                     what="worker containerd while offline")
            sock = os.path.join(worker.data_dir, "agent", "containerd", "containerd.sock")
            cid = before.split("://", 1)[1]
            tasks = sh("ctr", "-a", sock, "-n", "k8s.io", "tasks", "ls").stdout
            assert any(l.startswith(cid) and "RUNNING" in l for l in tasks.splitlines()), tasks
            assert worker.proc.poll() is None, worker.logs()
        finally:
            sh("ip", "link", "set", worker.host_if, "up")
        wait_for(lambda: node_ready(k, WORKER_NODE), timeout=90, what="worker Ready again")
        after = wait_for(running, timeout=60, what="pod running after the server is back")
        assert after == before
        assert k.json("get", "pod", "offline", "-n", ns)["status"]["containerStatuses"][0]["restartCount"] == 0
    finally:
        k.run("delete", "namespace", ns, "--wait=false", check=False)


ROUTE_PROTO = "83"  # rtm_protocol of skiff's node routes


def httpd_pod(name, node):
    """A busybox httpd on `node` answering its own pod name on port 8080."""
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"nodeName": node, "terminationGracePeriodSeconds": 1,
                     "containers": [{"name": "web", "image": IMAGE, "imagePullPolicy": "Never",
                                     "command": ["sh", "-c", "mkdir -p /www && hostname > /www/index.html"
                                                 " && exec httpd -f -p 8080 -h /www"]}]}}


def cross_node_pods(k, ns):
    """Pod IPs of `web-server` (server node) and `web-worker` (worker node), Running."""
    k.run("create", "namespace", ns)
    for name, node in (("web-server", SERVER_NODE), ("web-worker", WORKER_NODE)):
        k.run("apply", "-n", ns, "-f", "-", input=json.dumps(httpd_pod(name, node)))
    ips = {}
    for name in ("web-server", "web-worker"):
        def running(name=name):
            p = k.json("get", "pod", name, "-n", ns)
            return p["status"].get("phase") == "Running" and p["status"].get("podIP")
        ips[name] = wait_for(running, timeout=60, what=f"{name} running")
    return ips


def fetch_from(k, ns, pod, ip):
    p = k.run("exec", pod, "-n", ns, "--", "timeout", "3", "wget", "-qO-", f"http://{ip}:8080/",
              check=False, timeout=20)
    return p.stdout.strip() if p.returncode == 0 else None


def assert_pods_reach_each_other(k, ns, ips, worker):
    for src, dst in (("web-server", "web-worker"), ("web-worker", "web-server")):
        try:
            got = wait_for(lambda: fetch_from(k, ns, src, ips[dst]), timeout=30,
                           what=f"{src} -> {dst} ({ips[dst]})")
        except AssertionError:
            print(sh("ip", "route").stdout, sh("ip", "-d", "link", "show").stdout)
            print(sh("ip", "netns", "exec", worker.netns, "ip", "route").stdout)
            print(worker.logs())
            raise
        assert got == dst
    # the server node itself reaches the worker's pod too (host -> remote pod)
    p = wait_for(lambda: (lambda r: r.returncode == 0 and r)(
        sh("timeout", "3", "busybox", "wget", "-qO-", f"http://{ips['web-worker']}:8080/", check=False)),
        timeout=20, what="host -> worker pod")
    assert p.stdout.strip() == "web-worker"


def test_pods_reach_each_other_over_vxlan(two_nodes):
    srv, worker = two_nodes
    k = Kubectl(ALL_KUBECTLS[-1], srv)
    ns = f"multi-net-{os.getpid() % 1000}"
    try:
        ips = cross_node_pods(k, ns)
        assert_pods_reach_each_other(k, ns, ips, worker)
        # the overlay as specified: VNI 1, port 8472, MTU 1450, published VTEP MACs
        link = sh("ip", "-d", "link", "show", "skiff.vxlan").stdout
        assert "vxlan id 1 " in link and "dstport 8472" in link and "mtu 1450" in link, link
        nodes = {n["metadata"]["name"]: n for n in k.json("get", "nodes")["items"]}
        macs = {name: n["metadata"]["annotations"]["skiff.io/vtep-mac"] for name, n in nodes.items()}
        assert macs[SERVER_NODE] in link, (macs, link)
        worker_cidr = nodes[WORKER_NODE]["spec"]["podCIDR"]
        routes = sh("ip", "route", "show", "proto", ROUTE_PROTO).stdout
        assert f"{worker_cidr} via {worker_cidr.split('/')[0]} dev skiff.vxlan" in routes, routes
        fdb = sh("bridge", "fdb", "show", "dev", "skiff.vxlan").stdout
        assert f"{macs[WORKER_NODE]} dst {worker.ip}" in fdb, fdb
    finally:
        k.run("delete", "namespace", ns, "--wait=false", check=False)


def test_pods_reach_each_other_with_host_gw(two_nodes):
    """Both nodes restart with --flannel-backend=host-gw: the VXLAN device and
    its routes go, host routes via the node IPs replace them, and the running
    pods (kept across the restart) still reach each other."""
    srv, worker = two_nodes
    k = Kubectl(ALL_KUBECTLS[-1], srv)
    ns = f"multi-gw-{os.getpid() % 1000}"
    try:
        ips = cross_node_pods(k, ns)
        worker.proc.terminate()
        worker.proc.wait(timeout=20)
        srv.stop()
        srv.extra_args += ["--flannel-backend", "host-gw"]
        worker.extra_args = ["--flannel-backend", "host-gw"]
        srv.start()
        worker.start(srv.token())
        # a restarted node may report its old Ready for a moment: wait for the routes instead
        worker_cidr = k.json("get", "node", WORKER_NODE)["spec"]["podCIDR"]
        wait_for(lambda: f"{worker_cidr} via {worker.ip} dev {worker.host_if}" in
                 sh("ip", "route", "show", "proto", ROUTE_PROTO).stdout,
                 timeout=30, what="host-gw route to the worker's pods")
        wait_for(lambda: sh("ip", "link", "show", "skiff.vxlan", check=False).returncode != 0,
                 timeout=30, what="the VXLAN device removed")
        assert_pods_reach_each_other(k, ns, ips, worker)
        # the worker routes to the server's pods via the server's veth address
        server_cidr = k.json("get", "node", SERVER_NODE)["spec"]["podCIDR"]
        inside = sh("ip", "netns", "exec", worker.netns, "ip", "route", "show", "proto", ROUTE_PROTO).stdout
        assert f"{server_cidr} via {worker.host_ip} dev eth0" in inside, inside
        wait_for(lambda: node_ready(k, SERVER_NODE) and node_ready(k, WORKER_NODE),
                 timeout=60, what="both nodes Ready after the switch")
    finally:
        k.run("delete", "namespace", ns, "--wait=false", check=False)
