"""The embedded node agent, as a user runs it: `skiff server` alone (no
--disable-agent) starts containerd, imports the built-in pause image and the
airgap tarballs under `<data-dir>/agent/images/`, registers its Node, sets up
the pod network with the built-in CNI plugin, and runs pods. Everything is
driven with real kubectl (oldest and newest).

Needs root and the containerd/runc packages (CI has both); the node's pod
network uses the default bridge `skiff0`, so this module must not run next to
another skiff agent on the same host.
"""
import json
import os
import re
import select
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request

import pytest

from conftest import ALL_KUBECTLS, OLDEST_NEWEST, Kubectl, Server, free_port, wait_for

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MKIMAGE = os.environ.get(
    "SKIFF_MKIMAGE", os.path.join(os.path.dirname(ROOT), "shared", "tools", "mkimage.py")
)
IMAGE = "skiff.test/busybox:1"
NODE = "skiff-e2e-node"

# root and containerd: every agent test module uses this mark
needs_root_containerd = pytest.mark.skipif(
    os.geteuid() != 0 or not any(
        os.access(os.path.join(d, "containerd"), os.X_OK) for d in os.environ["PATH"].split(":")
    ),
    reason="needs root and containerd",
)
pytestmark = needs_root_containerd


def sh(*args, check=True, timeout=60):
    return subprocess.run(args, capture_output=True, text=True, check=check, timeout=timeout)


def shim_pids(data_dir):
    """containerd shims started for this data dir (they outlive containerd)."""
    pids = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().decode(errors="replace")
        except OSError:
            continue
        if "containerd-shim" in cmd and data_dir in cmd:
            pids.append(int(pid))
    return pids


def containerd_pid(data_dir):
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if argv and os.path.basename(argv[0]) == b"containerd" and data_dir.encode() in b" ".join(argv):
            return int(pid)
    return None


@pytest.fixture(scope="module")
def cluster():
    tmp = tempfile.mkdtemp(prefix="skiff-agent-")
    data_dir = os.path.join(tmp, "data")
    images = os.path.join(data_dir, "agent", "images")
    os.makedirs(images, mode=0o700)
    sh("python3", MKIMAGE, "busybox", "--name", IMAGE, "-o", os.path.join(images, "busybox.tar"))
    kubelet_port = free_port()
    srv = Server(
        data_dir=data_dir,
        agent=True,
        extra_args=["--node-name", NODE, "--node-ip", "127.0.0.1", "--kubelet-port", str(kubelet_port)],
    )
    srv.start()
    k = Kubectl(ALL_KUBECTLS[-1], srv)
    try:
        wait_for(lambda: node_ready(k), timeout=60, what="node Ready")
    except AssertionError:
        print(srv.logs())
        raise
    yield srv
    # pods first (their shims outlive skiff), then skiff, then the host network bits
    k.run("delete", "pods", "--all", "--all-namespaces", "--grace-period=1", "--wait=true",
          check=False, timeout=120)
    srv.stop()
    clean_host(tmp, data_dir)
    srv.cleanup()


def clean_host(tmp, data_dir):
    """What a stopped agent leaves on the host by design (shims, the bridge,
    the CNI nft table, volume mounts), removed after a test module."""
    for pid in shim_pids(data_dir):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    sh("ip", "link", "del", "skiff0", check=False)
    # node routes: the overlay device and routes marked with skiff's protocol (83)
    sh("ip", "link", "del", "skiff.vxlan", check=False)
    sh("ip", "route", "flush", "proto", "83", check=False)
    sh("nft", "delete", "table", "ip", "skiffcni_skiff0", check=False)
    for line in reversed(open("/proc/mounts").read().splitlines()):
        mnt = line.split()[1]
        if mnt.startswith(tmp):
            sh("umount", "-l", mnt, check=False)


def node_ready(k, name=NODE):
    p = k.run("get", "node", name, "-o", "json", check=False)
    if p.returncode != 0:
        return False
    node = json.loads(p.stdout)
    return any(
        c["type"] == "Ready" and c["status"] == "True" for c in node.get("status", {}).get("conditions", [])
    ) and node


@pytest.fixture(params=OLDEST_NEWEST, ids=lambda p: p.rsplit("kubectl.", 1)[-1])
def kc(request, cluster):
    return Kubectl(request.param, cluster)


@pytest.fixture
def ns(cluster):
    name = f"agent-{os.getpid() % 1000}-{int(time.time() * 1000) % 1000000}"
    k = Kubectl(ALL_KUBECTLS[-1], cluster)
    k.run("create", "namespace", name)
    # the ServiceAccount controller creates `default` right after the namespace
    wait_for(lambda: k.run("get", "sa", "default", "-n", name, check=False).returncode == 0,
             timeout=30, what="default service account")
    yield name
    k.run("delete", "namespace", name, "--wait=false", check=False)


def apply(k, ns, manifest):
    k.run("apply", "-n", ns, "-f", "-", input=json.dumps(manifest))


def pod(name, command, **extra):
    spec = {
        "terminationGracePeriodSeconds": 5,
        "containers": [{"name": "main", "image": IMAGE, "command": ["sh", "-c", command]}],
    }
    spec.update(extra)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


def get_pod(k, ns, name):
    return k.json("get", "pod", name, "-n", ns)


def wait_running_ready(k, ns, name, timeout=60):
    def check():
        p = get_pod(k, ns, name)
        st = p.get("status", {})
        ready = any(c["type"] == "Ready" and c["status"] == "True" for c in st.get("conditions", []))
        return st.get("phase") == "Running" and ready and p
    return wait_for(check, timeout=timeout, what=f"pod {name} Running and Ready")


def status_column(k, ns, name):
    out = k.run("get", "pod", name, "-n", ns, "--no-headers").stdout.split()
    return out[2] if len(out) > 2 else ""


# ---------------------------------------------------------------------------


def test_node_registers_ready_with_runtime_facts(cluster):
    k = Kubectl(ALL_KUBECTLS[-1], cluster)
    node = node_ready(k)
    labels = node["metadata"]["labels"]
    assert labels["kubernetes.io/hostname"] == NODE
    assert labels.get("node-role.kubernetes.io/control-plane") == "true"
    info = node["status"]["nodeInfo"]
    assert info["containerRuntimeVersion"].startswith("containerd://")
    assert node["spec"]["podCIDR"].startswith("10.42.")
    assert int(node["status"]["allocatable"]["pods"]) > 0
    out = k.run("get", "nodes").stdout
    assert re.search(rf"^{NODE}\s+Ready\s+control-plane", out, re.M), out


def test_deployment_runs_logs_exec_cp(kc, ns):
    dep = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {
            "replicas": 1, "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"terminationGracePeriodSeconds": 2, "containers": [{
                    "name": "main", "image": IMAGE, "imagePullPolicy": "Never",
                    "command": ["sh", "-c",
                                "trap 'exit 0' TERM; i=0; while true; do echo line $i; i=$((i+1)); sleep 0.2; done"],
                }]},
            },
        },
    }
    apply(kc, ns, dep)
    kc.run("rollout", "status", "deployment/web", "-n", ns, "--timeout=90s", timeout=100)
    name = kc.run("get", "pods", "-n", ns, "-l", "app=web", "-o",
                  "jsonpath={.items[0].metadata.name}").stdout
    assert status_column(kc, ns, name) == "Running"
    # logs -f streams: new lines keep arriving while the command runs
    e = dict(os.environ, KUBECONFIG=cluster_kubeconfig(kc))
    proc = subprocess.Popen([kc.binary, "logs", "-f", name, "-n", ns], stdout=subprocess.PIPE,
                            text=True, env=e)
    try:
        seen = [proc.stdout.readline() for _ in range(15)]
    finally:
        proc.kill()
        proc.wait()
    nums = [int(l.split()[1]) for l in seen if l.startswith("line ")]
    assert len(nums) == 15 and nums == sorted(nums), seen
    # exec with output and exit codes
    assert kc.run("exec", name, "-n", ns, "--", "sh", "-c", "echo hi").stdout == "hi\n"
    p = kc.run("exec", name, "-n", ns, "--", "sh", "-c", "exit 3", check=False)
    assert p.returncode == 3, (p.stdout, p.stderr)
    p = kc.run("exec", "-i", name, "-n", ns, "--", "sh", "-c", "cat; echo done", input="piped\n")
    assert p.stdout == "piped\ndone\n"
    # cp both ways
    with tempfile.TemporaryDirectory() as d:
        src = os.path.join(d, "in.txt")
        with open(src, "w") as f:
            f.write("copied in\n")
        kc.run("cp", src, f"{ns}/{name}:/tmp/in.txt")
        assert kc.run("exec", name, "-n", ns, "--", "cat", "/tmp/in.txt").stdout == "copied in\n"
        back = os.path.join(d, "back.txt")
        kc.run("cp", f"{ns}/{name}:/tmp/in.txt", back)
        assert open(back).read() == "copied in\n"


def cluster_kubeconfig(k):
    return k.server.kubeconfig


def test_port_forward_serves_http(kc, ns):
    apply(kc, ns, pod("httpd", "mkdir -p /www && echo hello-from-pod > /www/index.html && exec httpd -f -p 8080 -h /www"))
    wait_running_ready(kc, ns, "httpd")
    port = free_port()
    e = dict(os.environ, KUBECONFIG=cluster_kubeconfig(kc))
    proc = subprocess.Popen([kc.binary, "port-forward", "-n", ns, "pod/httpd", f"{port}:8080"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=e)
    try:
        def fetch():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
                    return r.read().decode()
            except Exception:
                return None
        assert wait_for(fetch, timeout=30, what="port-forwarded HTTP") == "hello-from-pod\n"
        assert fetch() == "hello-from-pod\n"
    finally:
        proc.kill()
        proc.wait()


def test_job_completes_and_init_container_runs_first(kc, ns):
    job = {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "once"},
        "spec": {"backoffLimit": 0, "template": {"spec": {
            "restartPolicy": "Never",
            "volumes": [{"name": "work", "emptyDir": {}}],
            "initContainers": [{"name": "init", "image": IMAGE,
                                "command": ["sh", "-c", "echo from-init > /work/f"],
                                "volumeMounts": [{"name": "work", "mountPath": "/work"}]}],
            "containers": [{"name": "main", "image": IMAGE,
                            "command": ["sh", "-c", "cat /work/f"],
                            "volumeMounts": [{"name": "work", "mountPath": "/work"}]}],
        }}},
    }
    apply(kc, ns, job)
    kc.run("wait", "--for=condition=complete", "job/once", "-n", ns, "--timeout=90s", timeout=100)
    name = kc.run("get", "pods", "-n", ns, "-l", "job-name=once", "-o",
                  "jsonpath={.items[0].metadata.name}").stdout
    assert status_column(kc, ns, name) == "Completed"
    assert kc.run("logs", name, "-n", ns).stdout == "from-init\n"
    st = get_pod(kc, ns, name)["status"]
    init = st["initContainerStatuses"][0]["state"]["terminated"]
    main = st["containerStatuses"][0]["state"]["terminated"]
    assert init["reason"] == "Completed" and main["reason"] == "Completed"
    assert init["finishedAt"] <= main["startedAt"]


def test_crash_loop_backs_off(kc, ns):
    apply(kc, ns, pod("crash", "echo boom; exit 1"))

    def looping():
        p = get_pod(kc, ns, "crash")
        cs = (p["status"].get("containerStatuses") or [{}])[0]
        waiting = cs.get("state", {}).get("waiting", {})
        return cs.get("restartCount", 0) >= 2 and waiting.get("reason") == "CrashLoopBackOff" and cs
    cs = wait_for(looping, timeout=90, interval=0.5, what="CrashLoopBackOff")
    assert "back-off" in cs["state"]["waiting"]["message"]
    assert cs["lastState"]["terminated"]["exitCode"] == 1
    assert status_column(kc, ns, "crash") in ("CrashLoopBackOff", "Error")
    assert kc.run("logs", "crash", "-n", ns, "--previous").stdout == "boom\n"


def test_volumes_env_and_limits(kc, ns):
    k = kc
    k.run("create", "configmap", "cfg", "-n", ns, "--from-literal=greeting=hello")
    k.run("create", "secret", "generic", "sec", "-n", ns, "--from-literal=password=s3cr3t")
    spec = pod("vols", "trap 'exit 0' TERM; sleep 3600 & wait",
               volumes=[
                   {"name": "cfg", "configMap": {"name": "cfg"}},
                   {"name": "sec", "secret": {"secretName": "sec", "defaultMode": 0o400}},
                   {"name": "info", "downwardAPI": {"items": [
                       {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}},
                   {"name": "mem", "emptyDir": {"medium": "Memory"}},
               ])
    spec["metadata"]["labels"] = {"tier": "backend"}
    c = spec["spec"]["containers"][0]
    c["volumeMounts"] = [
        {"name": "cfg", "mountPath": "/etc/cfg"},
        {"name": "sec", "mountPath": "/etc/sec"},
        {"name": "info", "mountPath": "/etc/info"},
        {"name": "mem", "mountPath": "/mem"},
    ]
    c["env"] = [
        {"name": "GREETING", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "greeting"}}},
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
    ]
    c["resources"] = {"limits": {"memory": "64Mi", "cpu": "500m"}}
    apply(k, ns, spec)
    wait_running_ready(k, ns, "vols")

    def ex(cmd):
        return k.run("exec", "vols", "-n", ns, "--", "sh", "-c", cmd).stdout

    assert ex("cat /etc/cfg/greeting") == "hello"
    assert ex("cat /etc/sec/password") == "s3cr3t"
    assert ex("stat -L -c %a /etc/sec/password").strip() == "400"
    assert 'tier="backend"' in ex("cat /etc/info/labels")
    assert ex("echo $GREETING $POD_NAME") == "hello vols\n"
    # the service-account token the admission injected
    sa = "/var/run/secrets/kubernetes.io/serviceaccount"
    token = ex(f"cat {sa}/token")
    assert token.count(".") == 2
    assert ex(f"cat {sa}/namespace") == ns
    assert "BEGIN CERTIFICATE" in ex(f"cat {sa}/ca.crt")
    # the token authenticates as the pod's service account
    review = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}}
    out = json.loads(k.run("create", "-f", "-", "-o", "json", input=json.dumps(review)).stdout)
    assert out["status"]["user"]["username"] == f"system:serviceaccount:{ns}:default"
    # emptyDir medium Memory is a tmpfs
    assert re.search(r"^tmpfs /mem tmpfs", ex("cat /proc/mounts"), re.M)
    # the memory limit is the container's cgroup limit
    limit = ex("cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max")
    assert int(limit) == 64 * 1024 * 1024
    # a configMap update reaches the volume
    k.run("patch", "configmap", "cfg", "-n", ns, "--type=merge", "-p", '{"data":{"greeting":"updated"}}')
    wait_for(lambda: ex("cat /etc/cfg/greeting") == "updated", timeout=60, interval=1,
             what="configMap update in the volume")


def test_missing_configmap_waits_with_failed_mount_then_starts(kc, ns):
    """As upstream: a pod whose configMap volume is missing stays
    ContainerCreating with a FailedMount event naming the configMap, gets no
    container, and starts once the configMap exists."""
    spec = pod("late-cfg", "cat /etc/cfg/greeting; echo; sleep 3600",
               volumes=[{"name": "cfg", "configMap": {"name": "late"}}])
    spec["spec"]["containers"][0]["volumeMounts"] = [{"name": "cfg", "mountPath": "/etc/cfg"}]
    apply(kc, ns, spec)

    def failed_mount():
        ev = kc.json("get", "events", "-n", ns, "--field-selector",
                     "involvedObject.name=late-cfg,reason=FailedMount")
        return [e["message"] for e in ev["items"]] or None
    messages = wait_for(failed_mount, timeout=30, what="FailedMount event")
    assert any('configmap "late" not found' in m for m in messages), messages
    p = get_pod(kc, ns, "late-cfg")
    assert p["status"]["phase"] == "Pending"
    assert status_column(kc, ns, "late-cfg") == "ContainerCreating"
    assert not any(c.get("containerID") for c in p["status"].get("containerStatuses", []))

    kc.run("create", "configmap", "late", "-n", ns, "--from-literal=greeting=finally")
    wait_running_ready(kc, ns, "late-cfg", timeout=30)
    assert wait_for(lambda: "finally" in kc.run("logs", "late-cfg", "-n", ns, check=False).stdout,
                    timeout=15, what="the configMap content in the log")


def test_sidecar_runs_beside_the_app_and_stops_with_a_job(kc, ns):
    """Native sidecars (init containers with restartPolicy: Always): started
    before the app and kept running (READY 2/2), restarted when they exit;
    a Job's pod completes when its app container does, sidecar or not."""
    spec = pod("with-sidecar", "sleep 3600",
               initContainers=[{"name": "side", "image": IMAGE, "restartPolicy": "Always",
                                "command": ["sh", "-c", "trap 'exit 1' TERM; sleep 3600 & wait"],
                                "readinessProbe": {"exec": {"command": ["true"]}, "periodSeconds": 1}}])
    apply(kc, ns, spec)
    wait_running_ready(kc, ns, "with-sidecar")
    row = kc.run("get", "pod", "with-sidecar", "-n", ns, "--no-headers").stdout.split()
    assert row[1:3] == ["2/2", "Running"], row
    p = get_pod(kc, ns, "with-sidecar")
    side = p["status"]["initContainerStatuses"][0]
    assert side["started"] is True and side["ready"] is True and "running" in side["state"]
    # the sidecar started before the app
    app = p["status"]["containerStatuses"][0]
    assert side["state"]["running"]["startedAt"] <= app["state"]["running"]["startedAt"]
    # a sidecar that exits is started again (pod restartPolicy notwithstanding)
    kc.run("exec", "with-sidecar", "-n", ns, "-c", "side", "--", "kill", "1", check=False)
    wait_for(lambda: get_pod(kc, ns, "with-sidecar")["status"]["initContainerStatuses"][0]
             ["restartCount"] >= 1, timeout=30, what="the sidecar restarted")

    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "side-job"},
           "spec": {"backoffLimit": 0, "template": {"spec": {
               "restartPolicy": "Never", "terminationGracePeriodSeconds": 2,
               "initContainers": [{"name": "logger", "image": IMAGE, "restartPolicy": "Always",
                                   "command": ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]}],
               "containers": [{"name": "work", "image": IMAGE,
                               "command": ["sh", "-c", "echo done"]}]}}}}
    apply(kc, ns, job)
    wait_for(lambda: kc.json("get", "job", "side-job", "-n", ns).get("status", {}).get("succeeded") == 1,
             timeout=60, what="the Job with a sidecar to complete")
    pods = kc.json("get", "pods", "-n", ns, "-l", "job-name=side-job")["items"]
    assert [p["status"]["phase"] for p in pods] == ["Succeeded"]
    logger = pods[0]["status"]["initContainerStatuses"][0]
    assert "terminated" in logger["state"], logger


def test_kubectl_debug_runs_ephemeral_containers(kc, ns):
    """`kubectl debug` adds an ephemeral container: it runs once in the pod's
    sandbox (in the target container's PID namespace with --target), shows in
    ephemeralContainerStatuses, streams with -i, and cannot be removed."""
    apply(kc, ns, pod("debugee", "trap 'exit 0' TERM; sleep 3600 & wait"))
    wait_running_ready(kc, ns, "debugee")
    kc.run("debug", "debugee", "-n", ns, "-c", "dbg", f"--image={IMAGE}",
           "--image-pull-policy=Never", "--target=main", "--", "sh", "-c", "ps; sleep 1")
    wait_for(lambda: "sleep 3600" in kc.run("logs", "debugee", "-n", ns, "-c", "dbg",
                                            check=False).stdout,
             timeout=30, what="ps in the target's PID namespace")

    def dbg_done():
        sts = get_pod(kc, ns, "debugee")["status"].get("ephemeralContainerStatuses", [])
        return [s for s in sts if s["name"] == "dbg" and "terminated" in s["state"]]
    st = wait_for(dbg_done, timeout=30, what="the ephemeral container to end")[0]
    assert st["state"]["terminated"]["exitCode"] == 0 and st["restartCount"] == 0
    # not restarted, and the pod itself is untouched
    time.sleep(2)
    p = get_pod(kc, ns, "debugee")
    assert p["status"]["phase"] == "Running"
    assert p["status"]["containerStatuses"][0]["restartCount"] == 0
    assert [s["restartCount"] for s in p["status"]["ephemeralContainerStatuses"]] == [0]

    # interactive, as a user types (stdin stays open: containerd ends an
    # attach without stdinOnce as soon as the client's stdin closes)
    env = dict(os.environ, KUBECONFIG=kc.server.kubeconfig)
    p = subprocess.Popen([kc.binary, "debug", "-i", "debugee", "-n", ns, "-c", "dbg2",
                          f"--image={IMAGE}", "--image-pull-policy=Never", "--", "sh"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                         text=True, env=env)
    try:
        seen = []

        def answered():
            p.stdin.write("echo hi-from-debug\n")
            p.stdin.flush()
            if not select.select([p.stdout], [], [], 5)[0]:
                return False
            line = p.stdout.readline()
            seen.append(line)
            return line == "hi-from-debug\n"
        wait_for(answered, timeout=60, what=f"the debug shell to answer (saw {seen})")
        p.stdin.write("exit 0\n")
        p.stdin.flush()
        p.wait(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()

    # existing ephemeral containers may not be removed
    p = get_pod(kc, ns, "debugee")
    p["spec"]["ephemeralContainers"] = []
    r = kc.run("replace", "--raw", f"/api/v1/namespaces/{ns}/pods/debugee/ephemeralcontainers",
               "-f", "-", input=json.dumps(p), check=False)
    assert r.returncode != 0
    assert 'existing ephemeral containers "dbg" may not be removed' in r.stderr, r.stderr


def test_kubelet_rejects_a_bound_pod_that_does_not_fit(kc, ns):
    """A pod bound with spec.nodeName past the scheduler, asking for more CPU
    than the node has, is rejected by the kubelet as upstream: Failed,
    reason OutOfcpu, never started."""
    spec = pod("too-big", "sleep 3600", nodeName=NODE)
    spec["spec"]["containers"][0]["resources"] = {"requests": {"cpu": "1000"}}
    apply(kc, ns, spec)

    def failed():
        st = get_pod(kc, ns, "too-big").get("status", {})
        return st.get("phase") == "Failed" and st
    st = wait_for(failed, timeout=30, what="the pod rejected")
    assert st["reason"] == "OutOfcpu"
    assert st["message"].startswith(
        "Pod was rejected: Node didn't have enough resource: cpu, requested: 1000000, used: ")
    assert not any(c.get("containerID") for c in st.get("containerStatuses", []))
    assert status_column(kc, ns, "too-big") == "OutOfcpu"
    ev = kc.json("get", "events", "-n", ns, "--field-selector", "involvedObject.name=too-big,reason=OutOfcpu")
    assert ev["items"], "no OutOfcpu event"
    kc.run("delete", "pod", "too-big", "-n", ns, "--wait=true", timeout=30)


def test_probes_gate_ready_and_restart(kc, ns):
    spec = pod("probed", "trap 'exit 0' TERM; sleep 3600 & wait")
    spec["spec"]["containers"][0]["readinessProbe"] = {
        "exec": {"command": ["test", "-f", "/tmp/ready"]}, "periodSeconds": 1}
    apply(kc, ns, spec)

    def phase_running():
        st = get_pod(kc, ns, "probed")["status"]
        return st.get("phase") == "Running" and st
    wait_for(phase_running, timeout=60, what="probed Running")
    time.sleep(2)
    st = get_pod(kc, ns, "probed")["status"]
    assert not st["containerStatuses"][0]["ready"]
    kc.run("exec", "probed", "-n", ns, "--", "touch", "/tmp/ready")
    wait_running_ready(kc, ns, "probed", timeout=30)

    live = pod("liveness", "trap 'exit 0' TERM; sleep 3600 & wait")
    live["spec"]["containers"][0]["livenessProbe"] = {
        "exec": {"command": ["false"]}, "periodSeconds": 1, "failureThreshold": 2}
    apply(kc, ns, live)
    wait_for(lambda: get_pod(kc, ns, "liveness")["status"].get("containerStatuses", [{}])[0]
             .get("restartCount", 0) >= 1, timeout=90, interval=0.5, what="liveness restart")
    events = kc.run("get", "events", "-n", ns, "--field-selector", "involvedObject.name=liveness").stdout
    assert "Unhealthy" in events and "Liveness probe failed" in events


def test_delete_honours_grace_period(kc, ns):
    apply(kc, ns, pod("graceful", "trap 'echo bye; exit 0' TERM; sleep 3600 & wait"))
    wait_running_ready(kc, ns, "graceful")
    t0 = time.time()
    kc.run("delete", "pod", "graceful", "-n", ns, "--wait=true", timeout=60)
    assert time.time() - t0 < 5 + 3
    p = kc.run("get", "pod", "graceful", "-n", ns, check=False)
    assert p.returncode != 0


def test_restart_keeps_containers_and_containerd_recovers(cluster, ns):
    k = Kubectl(ALL_KUBECTLS[-1], cluster)
    apply(k, ns, pod("survivor", "trap 'exit 0' TERM; sleep 3600 & wait"))
    before = wait_running_ready(k, ns, "survivor")["status"]["containerStatuses"][0]
    # restart skiff: the pod keeps running in the same container
    cluster.stop()
    cluster.start()
    wait_for(lambda: node_ready(k), timeout=60, what="node Ready after restart")
    time.sleep(2)
    after = wait_running_ready(k, ns, "survivor")["status"]["containerStatuses"][0]
    assert after["containerID"] == before["containerID"]
    assert after["restartCount"] == before["restartCount"]
    pods = k.json("get", "pods", "-n", ns)["items"]
    assert [p["metadata"]["name"] for p in pods] == ["survivor"]
    # kill containerd: the agent starts it again and pods keep working
    old = containerd_pid(cluster.data_dir)
    assert old, "containerd child not found"
    os.kill(old, signal.SIGKILL)
    wait_for(lambda: (containerd_pid(cluster.data_dir) or old) != old, timeout=60,
             what="containerd restarted")
    assert k.run("exec", "survivor", "-n", ns, "--", "echo", "alive").stdout == "alive\n"
    apply(k, ns, pod("newcomer", "trap 'exit 0' TERM; sleep 3600 & wait"))
    wait_running_ready(k, ns, "newcomer")
    again = get_pod(k, ns, "survivor")["status"]["containerStatuses"][0]
    assert again["containerID"] == before["containerID"]
