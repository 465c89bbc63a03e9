"""Node authorization: credentials issued by the join endpoint
(`system:node:<name>`, group `system:nodes`), used by real kubectl with
--client-certificate, get the upstream Node authorizer / NodeRestriction
treatment: a node writes only its own Node, Lease and pods' status, reads
secrets only through pods bound to it, and creates only its own mirror pods.
Denials read like upstream's. No root or containerd needed.
"""
import base64
import json
import os
import secrets
import shutil
import ssl
import subprocess
import tempfile
import urllib.request

import pytest

from conftest import ALL_KUBECTLS, OLDEST_NEWEST, Kubectl

NODE_A = "authz-a"
NODE_B = "authz-b"


def join(server, node):
    """Node credentials from `POST /v1-skiff/node-credentials` (server token)."""
    secret = server.token().rsplit("::server:", 1)[1]
    body = json.dumps({"nodeName": node, "nodeIPs": ["127.0.0.1"],
                       "nodePassword": secrets.token_hex(16)}).encode()
    req = urllib.request.Request(server.url + "/v1-skiff/node-credentials", data=body, method="POST")
    req.add_header("Content-Type", "application/json")
    req.add_header("Authorization", "Basic " + base64.b64encode(f"node:{secret}".encode()).decode())
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
        return json.loads(r.read())


class NodeKubectl:
    """Real kubectl with a node's client certificate and nothing else."""

    def __init__(self, binary, server, creds, tmp, name):
        self.binary, self.server = binary, server
        d = os.path.join(tmp, name)
        os.makedirs(d, mode=0o700, exist_ok=True)
        self.files = {}
        for key, pem in (("ca", creds["caPem"]), ("crt", creds["clientCertPem"]),
                         ("key", creds["clientKeyPem"])):
            path = os.path.join(d, f"{name}.{key}")
            with open(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
                f.write(pem)
            self.files[key] = path
        self.home = os.path.join(d, "home")
        self.empty = os.path.join(d, "empty-kubeconfig")
        open(self.empty, "w").close()

    def run(self, *args, input=None):
        env = dict(os.environ, HOME=self.home, KUBECONFIG=self.empty)
        return subprocess.run(
            [self.binary, "--server", self.server.url,
             "--certificate-authority", self.files["ca"],
             "--client-certificate", self.files["crt"], "--client-key", self.files["key"],
             *args],
            input=input, capture_output=True, text=True, env=env, timeout=60)


@pytest.fixture(scope="module")
def setup(server):
    tmp = tempfile.mkdtemp(prefix="skiff-nodeauthz-")
    admin = Kubectl(ALL_KUBECTLS[-1], server)
    creds = join(server, NODE_A)
    ns = f"nodeauthz-{os.getpid() % 1000}"
    admin.run("create", "namespace", ns)
    node_b = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE_B}}
    admin.run("create", "-f", "-", input=json.dumps(node_b))
    admin.run("create", "secret", "generic", "unrelated", "-n", ns, "--from-literal=k=v")
    admin.run("create", "secret", "generic", "mine", "-n", ns, "--from-literal=k=v")
    pod = lambda name, node, extra=None: {  # noqa: E731
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "skiff.test/busybox:1"}],
                 **(extra or {})}}
    admin.run("create", "-n", ns, "-f", "-", input=json.dumps(pod("on-a", NODE_A, {
        "volumes": [{"name": "s", "secret": {"secretName": "mine"}}]})))
    admin.run("create", "-n", ns, "-f", "-", input=json.dumps(pod("on-b", NODE_B)))
    yield creds, ns, tmp
    admin.run("delete", "namespace", ns, "--wait=false", check=False)
    admin.run("delete", "node", NODE_A, NODE_B, "--wait=false", check=False)
    shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(params=OLDEST_NEWEST, ids=lambda p: p.rsplit("kubectl.", 1)[-1])
def node_kubectl(request, server, setup):
    creds, _, tmp = setup
    return NodeKubectl(request.param, server, creds, tmp, f"{NODE_A}-{request.param[-4:]}")


def forbidden(p, message):
    assert p.returncode != 0, p.stdout
    assert p.stderr.startswith("Error from server (Forbidden): "), p.stderr
    assert message in p.stderr, p.stderr


def test_node_writes_only_its_own_node(server, setup, node_kubectl):
    k = node_kubectl
    user = f"system:node:{NODE_A}"
    # registers itself (create), then patches its own Node and status
    node_a = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE_A}}
    p = k.run("apply", "-f", "-", input=json.dumps(node_a))
    assert p.returncode == 0, p.stderr
    p = k.run("label", "node", NODE_A, "team=edge", "--overwrite")
    assert p.returncode == 0, p.stderr
    p = k.run("annotate", "node", NODE_A, "skiff.io/test=1", "--overwrite")
    assert p.returncode == 0, p.stderr
    p = k.run("patch", "node", NODE_A, "--subresource=status", "--type=merge",
              "-p", '{"status":{"conditions":[{"type":"Ready","status":"False","reason":"Test"}]}}')
    assert p.returncode == 0, p.stderr
    # reads every Node
    p = k.run("get", "nodes", "-o", "name")
    assert f"node/{NODE_B}" in p.stdout, p.stderr
    # another node: not even a label
    forbidden(k.run("label", "node", NODE_B, "team=edge", "--overwrite"),
              f'nodes "{NODE_B}" is forbidden: User "{user}" cannot patch resource "nodes" in API group "" '
              f"at the cluster scope: node '{NODE_A}' cannot modify node '{NODE_B}'")
    forbidden(k.run("patch", "node", NODE_B, "--subresource=status", "--type=merge", "-p", '{"status":{}}'),
              f'nodes "{NODE_B}" is forbidden: User "{user}" cannot patch resource "nodes/status"')
    forbidden(k.run("delete", "node", NODE_A),
              f'nodes "{NODE_A}" is forbidden: User "{user}" cannot delete resource "nodes"')
    # labels reserved for administrators
    forbidden(k.run("label", "node", NODE_A, "node-restriction.kubernetes.io/pool=gold"),
              f"node '{NODE_A}' cannot set or remove labels under node-restriction.kubernetes.io/")
    # its own Lease only
    lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
             "metadata": {"name": NODE_B, "namespace": "kube-node-lease"}, "spec": {"holderIdentity": NODE_B}}
    forbidden(k.run("create", "-f", "-", input=json.dumps(lease)),
              f'leases.coordination.k8s.io "{NODE_B}" is forbidden: User "{user}" cannot create resource '
              f'"leases" in API group "coordination.k8s.io" in the namespace "kube-node-lease"')
    lease["metadata"]["name"] = lease["spec"]["holderIdentity"] = NODE_A
    p = k.run("apply", "-f", "-", input=json.dumps(lease))
    assert p.returncode == 0, p.stderr


def test_node_reads_secrets_only_through_its_pods(setup, node_kubectl):
    _, ns, _ = setup
    k = node_kubectl
    user = f"system:node:{NODE_A}"
    p = k.run("get", "secret", "mine", "-n", ns, "-o", "jsonpath={.data.k}")
    assert p.returncode == 0 and base64.b64decode(p.stdout) == b"v", p.stderr
    forbidden(k.run("get", "secret", "unrelated", "-n", ns),
              f'secrets "unrelated" is forbidden: User "{user}" cannot get resource "secrets" in API group "" '
              f"in the namespace \"{ns}\": no relationship found between node '{NODE_A}' and this object")
    forbidden(k.run("get", "secrets", "-n", ns),
              f'secrets is forbidden: User "{user}" cannot list resource "secrets" in API group "" '
              f'in the namespace "{ns}"')
    forbidden(k.run("get", "deployments", "-A"),
              f'deployments.apps is forbidden: User "{user}" cannot list resource "deployments" in API group "apps" '
              "at the cluster scope")


def test_node_pods_mirror_status_and_delete(setup, node_kubectl):
    _, ns, _ = setup
    k = node_kubectl
    user = f"system:node:{NODE_A}"
    # reads pods cluster-wide
    p = k.run("get", "pods", "-A", "-o", "name")
    assert "pod/on-a" in p.stdout and "pod/on-b" in p.stdout, p.stderr
    # status of its own pods only
    status = '{"status":{"message":"from the node"}}'
    p = k.run("patch", "pod", "on-a", "-n", ns, "--subresource=status", "--type=merge", "-p", status)
    assert p.returncode == 0, p.stderr
    forbidden(k.run("patch", "pod", "on-b", "-n", ns, "--subresource=status", "--type=merge", "-p", status),
              f"node '{NODE_A}' can only update pod status for pods with spec.nodeName set to itself")
    # mirror pods of itself only
    suffix = k.binary[-4:].replace(".", "-")
    mirror = {"apiVersion": "v1", "kind": "Pod",
              "metadata": {"name": f"static-{suffix}", "annotations": {"kubernetes.io/config.mirror": "h"}},
              "spec": {"nodeName": NODE_A, "containers": [{"name": "c", "image": "skiff.test/busybox:1"}]}}
    p = k.run("create", "-n", ns, "-f", "-", input=json.dumps(mirror))
    assert p.returncode == 0, p.stderr
    plain = json.loads(json.dumps(mirror))
    plain["metadata"] = {"name": f"plain-{suffix}"}
    forbidden(k.run("create", "-n", ns, "-f", "-", input=json.dumps(plain)),
              f'pods "plain-{suffix}" is forbidden: User "{user}" cannot create resource "pods" in API group "" '
              f"in the namespace \"{ns}\": pod does not have \"kubernetes.io/config.mirror\" annotation, "
              f"node '{NODE_A}' can only create mirror pods")
    elsewhere = json.loads(json.dumps(mirror))
    elsewhere["metadata"]["name"] = f"elsewhere-{suffix}"
    elsewhere["spec"]["nodeName"] = NODE_B
    forbidden(k.run("create", "-n", ns, "-f", "-", input=json.dumps(elsewhere)),
              f"node '{NODE_A}' can only create pods with spec.nodeName set to itself")
    # deletes pods bound to itself only
    forbidden(k.run("delete", "pod", "on-b", "-n", ns, "--wait=false"),
              f"node '{NODE_A}' can only delete pods with spec.nodeName set to itself")
    p = k.run("delete", "pod", f"static-{suffix}", "-n", ns, "--wait=false")
    assert p.returncode == 0, p.stderr
