"""Joining agents to a server: join tokens, bootstrap tokens (`skiff token`),
node passwords, and the node registration / heartbeat loop.

The agent here runs the node-status-only `run_joined` (no containerd
needed): it joins, registers its Node, renews its Lease and reports status.
"""
import base64
import hashlib
import json
import os
import re
import shutil
import ssl
import stat
import subprocess
import tempfile
import urllib.request

import pytest

from conftest import ALL_KUBECTLS, SKIFF, Kubectl, free_port, wait_for

TOKEN_RE = re.compile(r"^K10([0-9a-f]{64})::([a-z0-9]{6})\.([a-z0-9]{16})$")


@pytest.fixture(scope="module")
def kubectl(server):
    return Kubectl(ALL_KUBECTLS[-1], server)


@pytest.fixture
def tmp():
    d = tempfile.mkdtemp(prefix="skiff-join-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def ca_pem(server):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with urllib.request.urlopen(server.url + "/cacerts", context=ctx, timeout=5) as r:
        return r.read()


def token_cmd(server, *args, check=True):
    p = subprocess.run(
        [SKIFF, "token", *args, "--kubeconfig", server.kubeconfig],
        capture_output=True, text=True, timeout=60,
    )
    if check and p.returncode != 0:
        raise AssertionError(f"skiff token {args} exited {p.returncode}: {p.stderr}")
    return p


class Agent:
    """A `skiff agent` process with its own data dir."""

    def __init__(self, server, tmp, name, token, node_name, server_url=None, extra=()):
        self.data_dir = os.path.join(tmp, name)
        self.log_path = os.path.join(tmp, f"{name}.log")
        self.args = [
            SKIFF, "agent",
            "--config", server.config_file,
            "--server", server_url or server.url,
            "--token", token,
            "--data-dir", self.data_dir,
            "--node-name", node_name,
            "--node-ip", "127.0.0.1",
            "--kubelet-port", str(free_port()),
            *extra,
        ]
        self.proc = None

    def start(self):
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.args, stdout=self.log, stderr=subprocess.STDOUT)
        return self

    def run_to_exit(self, timeout=60):
        """Run expecting a quick failure; return (exit code, output)."""
        p = subprocess.run(self.args, capture_output=True, text=True, timeout=timeout)
        return p.returncode, p.stdout + p.stderr

    def logs(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if getattr(self, "log", None):
            self.log.close()


@pytest.fixture
def agents():
    started = []
    yield started
    for a in started:
        a.stop()
    if os.geteuid() == 0:
        # agents share this host's network namespace: drop their node-route state
        subprocess.run(["ip", "link", "del", "skiff.vxlan"], capture_output=True)
        subprocess.run(["ip", "route", "flush", "proto", "83"], capture_output=True)


def node_ready(kubectl, name):
    p = kubectl.run("get", "node", name, "-o", "json", check=False)
    if p.returncode != 0:
        return None
    node = json.loads(p.stdout)
    conds = {c["type"]: c for c in node.get("status", {}).get("conditions", [])}
    return node if conds.get("Ready", {}).get("status") == "True" else None


def test_token_create_list_delete(server, kubectl):
    out = token_cmd(server, "create", "--description", "e2e token", "--ttl", "2h").stdout.strip()
    m = TOKEN_RE.match(out)
    assert m, out
    ca_hash, tid, tsecret = m.groups()
    assert ca_hash == hashlib.sha256(ca_pem(server)).hexdigest()

    secret = kubectl.json("get", "secret", "-n", "kube-system", f"bootstrap-token-{tid}")
    assert secret["type"] == "bootstrap.kubernetes.io/token"
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert data["token-id"] == tid
    assert data["token-secret"] == tsecret
    assert data["usage-bootstrap-authentication"] == "true"
    assert data["description"] == "e2e token"
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", data["expiration"]), data["expiration"]

    listing = token_cmd(server, "list").stdout
    assert listing.splitlines()[0].split()[:3] == ["TOKEN", "ID", "TTL"], listing
    row = next(line for line in listing.splitlines() if line.startswith(tid))
    assert "e2e token" in row and re.search(r"\b(1h|119m|120m|2h)\b", row), row
    assert tsecret not in listing

    token_cmd(server, "delete", tid)
    p = kubectl.run("get", "secret", "-n", "kube-system", f"bootstrap-token-{tid}", check=False)
    assert p.returncode != 0 and "NotFound" in p.stderr, p.stderr
    assert tid not in token_cmd(server, "list").stdout
    p = token_cmd(server, "delete", tid, check=False)
    assert p.returncode != 0 and "not found" in p.stderr, p.stderr
    p = token_cmd(server, "create", "--ttl", "soon", check=False)
    assert p.returncode == 2 and "--ttl" in p.stderr, p.stderr


def test_agent_joins_heartbeats_and_restarts(server, kubectl, tmp, agents):
    a = Agent(server, tmp, "a1", server.token(), "n1",
              extra=["--node-label", "tier=edge", "--node-taint", "dedicated=e2e:NoSchedule"])
    agents.append(a.start())
    node = wait_for(lambda: node_ready(kubectl, "n1"), timeout=60, what="n1 Ready")
    labels = node["metadata"]["labels"]
    assert labels["kubernetes.io/hostname"] == "n1"
    assert labels["kubernetes.io/os"] == "linux"
    assert labels["kubernetes.io/arch"] in ("amd64", "arm64")
    assert labels["node.kubernetes.io/instance-type"] == "skiff"
    assert labels["tier"] == "edge"
    assert {"key": "dedicated", "value": "e2e", "effect": "NoSchedule"} in node["spec"]["taints"]
    status = node["status"]
    assert {"type": "InternalIP", "address": "127.0.0.1"} in status["addresses"]
    assert {"type": "Hostname", "address": "n1"} in status["addresses"]
    assert status["nodeInfo"]["kubeletVersion"].startswith("v1.33")
    assert int(status["capacity"]["cpu"]) >= 1 and status["capacity"]["pods"] == "110"
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "KubeletReady"
    uid = node["metadata"]["uid"]

    # credentials on disk, private
    agent_dir = os.path.join(a.data_dir, "agent")
    for f in ["client.key", "serving.key", "node-password", "kubelet.kubeconfig"]:
        assert stat.S_IMODE(os.stat(os.path.join(agent_dir, f)).st_mode) == 0o600, f
    assert stat.S_IMODE(os.stat(agent_dir).st_mode) == 0o700
    ident = subprocess.run(
        ["openssl", "x509", "-noout", "-subject", "-in", os.path.join(agent_dir, "client.crt")],
        capture_output=True, text=True,
    )
    if ident.returncode == 0:
        assert "system:node:n1" in ident.stdout and "system:nodes" in ident.stdout, ident.stdout

    # the Lease is owned by the Node and renewed
    lease = kubectl.json("get", "lease", "-n", "kube-node-lease", "n1")
    assert lease["spec"]["holderIdentity"] == "n1"
    assert lease["spec"]["leaseDurationSeconds"] == 40
    assert lease["metadata"]["ownerReferences"][0]["uid"] == uid
    first = lease["spec"]["renewTime"]
    wait_for(
        lambda: kubectl.json("get", "lease", "-n", "kube-node-lease", "n1")["spec"]["renewTime"] != first,
        timeout=30, interval=1, what="lease renewal",
    )
    # the node IPAM controller gives it a podCIDR
    wait_for(lambda: kubectl.json("get", "node", "n1")["spec"].get("podCIDR"), timeout=30,
             what="podCIDR")

    # restart: same node, credentials reused, no error
    a.stop()
    assert a.proc.returncode == 0, a.logs()
    b = Agent(server, tmp, "a1", server.token(), "n1")
    agents.append(b.start())
    wait_for(lambda: "reusing existing node credentials" in b.logs(), timeout=30, what="reuse")
    renewed = kubectl.json("get", "lease", "-n", "kube-node-lease", "n1")["spec"]["renewTime"]
    wait_for(
        lambda: kubectl.json("get", "lease", "-n", "kube-node-lease", "n1")["spec"]["renewTime"] != renewed,
        timeout=30, interval=1, what="lease renewal after restart",
    )
    assert b.proc.poll() is None, b.logs()
    assert node_ready(kubectl, "n1")["metadata"]["uid"] == uid

    # same name, another machine (data dir): refused, non-zero exit
    rc, out = Agent(server, tmp, "a2", server.token(), "n1").run_to_exit()
    assert rc != 0
    assert 'node password does not match for node "n1"' in out, out
    assert "kube-system/n1.node-password.skiff" in out and "--node-name" in out, out


def test_join_errors(server, tmp):
    token = server.token()
    m = re.match(r"^K10([0-9a-f]{64})::server:(.+)$", token)
    assert m, "server token format"
    ca_hash, secret = m.groups()
    secret_leak = secret

    rc, out = Agent(server, tmp, "e1", f"K10{ca_hash}::server:wrong{secret[:4]}", "e1").run_to_exit()
    assert rc != 0 and "the server rejected the join token (--token)" in out, out

    other = "0" * 64 if ca_hash != "0" * 64 else "1" * 64
    rc, out = Agent(server, tmp, "e2", f"K10{other}::server:{secret}", "e2").run_to_exit()
    assert rc != 0
    assert "does not match the hash in the token" in out and other in out and ca_hash in out, out
    assert "--token" in out and "--server" in out, out

    port = free_port()
    rc, out = Agent(server, tmp, "e3", token, "e3", server_url=f"https://127.0.0.1:{port}").run_to_exit()
    assert rc != 0
    assert f"cannot reach the server at https://127.0.0.1:{port} (--server): connection refused" in out, out

    rc, out = Agent(server, tmp, "e4", "K10nothex::server:x", "e4").run_to_exit()
    assert rc != 0 and "--token" in out, out

    rc, out = Agent(server, tmp, "e5", f"K10::server:{secret}", "e5").run_to_exit()
    assert rc != 0 and "no CA hash" in out, out

    rc, out = Agent(server, tmp, "e6", token, "Bad_Name").run_to_exit()
    assert rc == 2 and "--node-name" in out, out

    for f in os.listdir(tmp):
        if f.endswith(".log"):
            with open(os.path.join(tmp, f)) as fh:
                assert secret_leak not in fh.read()
    assert secret_leak not in server.logs()


def test_bootstrap_tokens(server, kubectl, tmp, agents):
    tok = token_cmd(server, "create", "--description", "for b1").stdout.strip()
    tid = TOKEN_RE.match(tok).group(2)
    a = Agent(server, tmp, "b1", tok, "b1")
    agents.append(a.start())
    wait_for(lambda: node_ready(kubectl, "b1"), timeout=60, what="b1 Ready")

    token_cmd(server, "delete", tid)
    rc, out = Agent(server, tmp, "b2", tok, "b2").run_to_exit()
    assert rc != 0 and "rejected the join token" in out and f'"{tid}" does not exist' in out, out

    # the joined node restarts fine without its (deleted) token
    a.stop()
    b = Agent(server, tmp, "b1", tok, "b1")
    agents.append(b.start())
    wait_for(lambda: "reusing existing node credentials" in b.logs(), timeout=30, what="reuse")
    assert b.proc.poll() is None, b.logs()

    expired = token_cmd(server, "create", "--ttl", "1s").stdout.strip()
    eid = TOKEN_RE.match(expired).group(2)
    wait_for(
        lambda: any(line.startswith(eid) and "<expired>" in line
                    for line in token_cmd(server, "list").stdout.splitlines())
        or kubectl.run("get", "secret", "-n", "kube-system", f"bootstrap-token-{eid}",
                       check=False).returncode != 0,
        timeout=10, interval=0.2, what="token expiry",
    )
    rc, out = Agent(server, tmp, "b3", expired, "b3").run_to_exit()
    assert rc != 0 and "rejected the join token" in out, out
    assert f'"{eid}" has expired' in out or f'"{eid}" does not exist' in out, out
    # the token cleaner removes the expired Secret
    wait_for(
        lambda: kubectl.run("get", "secret", "-n", "kube-system", f"bootstrap-token-{eid}",
                            check=False).returncode != 0,
        timeout=90, interval=1, what="expired token cleaned up",
    )
