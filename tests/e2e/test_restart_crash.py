"""Durability: a clean restart and a `kill -9` in the middle of writes.

(a) A server restarted on the same data dir is the same cluster: same objects
    with the same uid and resourceVersion, byte-identical certificates and
    token (so old kubeconfigs and joined agents keep working), and
    resourceVersions that keep increasing.
(b) Every write the server acknowledged (201) before being SIGKILLed is there
    after restart, with the resourceVersion it was acknowledged with, and new
    writes get larger resourceVersions than anything acknowledged before.

These tests start their own servers; they do not use the shared fixture.
"""
import glob
import json
import os
import shutil
import subprocess
import threading
import time

import pytest

from conftest import ALL_KUBECTLS, Server
from rawhttps import Raw

KUBECTL = ALL_KUBECTLS[-1]


@pytest.fixture
def own_server():
    s = Server().start()
    yield s
    s.cleanup()


def kubectl(kubeconfig, *args, input=None, home=None):
    env = dict(os.environ, KUBECONFIG=kubeconfig, HOME=home or os.path.dirname(kubeconfig))
    p = subprocess.run([KUBECTL, *args], input=input, capture_output=True, text=True, env=env, timeout=60)
    assert p.returncode == 0, f"kubectl {' '.join(args)} exited {p.returncode}\n{p.stdout}\n{p.stderr}"
    return p.stdout


def kget(kubeconfig, *args):
    return json.loads(kubectl(kubeconfig, "get", *args, "-o", "json"))


def snapshot_files(data_dir):
    paths = sorted(glob.glob(os.path.join(data_dir, "server", "tls", "*.crt")))
    paths.append(os.path.join(data_dir, "server", "token"))
    out = {}
    for p in paths:
        with open(p, "rb") as f:
            out[os.path.relpath(p, data_dir)] = f.read()
    return out


CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: gadgets.restart.skiff.test
spec:
  group: restart.skiff.test
  scope: Namespaced
  names: {plural: gadgets, singular: gadget, kind: Gadget}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              count: {type: integer}
"""

OBJECTS = """
apiVersion: v1
kind: ConfigMap
metadata: {name: cm-a, namespace: persist}
data: {k: a}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: cm-b, namespace: persist, labels: {x: "y"}}
data: {k: b}
---
apiVersion: v1
kind: Secret
metadata: {name: sec, namespace: persist}
stringData: {password: hunter2}
"""

GADGET = """
apiVersion: restart.skiff.test/v1
kind: Gadget
metadata: {name: g1, namespace: persist}
spec: {count: 7}
"""


def identity(obj):
    m = obj["metadata"]
    return (m.get("namespace"), m["name"], m["uid"], m["resourceVersion"])


def test_restart_keeps_state_certs_and_token(own_server):
    s = own_server
    kc = s.kubeconfig
    kubectl(kc, "create", "namespace", "persist")
    kubectl(kc, "apply", "-f", "-", input=OBJECTS)
    kubectl(kc, "apply", "-f", "-", input=CRD)
    kubectl(kc, "wait", "--for=condition=Established", "crd/gadgets.restart.skiff.test", "--timeout=30s")
    deadline = time.time() + 15
    while True:  # discovery of the new group may lag Established by a moment
        try:
            kubectl(kc, "apply", "-f", "-", input=GADGET)
            break
        except AssertionError:
            if time.time() > deadline:
                raise
            time.sleep(0.5)

    before = {
        "ns": identity(kget(kc, "namespace", "persist")),
        "cm-a": identity(kget(kc, "-n", "persist", "configmap", "cm-a")),
        "cm-b": identity(kget(kc, "-n", "persist", "configmap", "cm-b")),
        "sec": identity(kget(kc, "-n", "persist", "secret", "sec")),
        "crd": identity(kget(kc, "crd", "gadgets.restart.skiff.test")),
        "g1": identity(kget(kc, "-n", "persist", "gadgets.restart.skiff.test", "g1")),
    }
    secret_data = kget(kc, "-n", "persist", "secret", "sec")["data"]
    files_before = snapshot_files(s.data_dir)
    assert any(k.endswith(".crt") for k in files_before), f"no certs under {s.data_dir}/server/tls"
    old_kc = os.path.join(s.tmp, "old-kubeconfig.yaml")
    shutil.copy(kc, old_kc)

    s.stop("TERM")
    assert s.proc.returncode == 0, f"SIGTERM exit code {s.proc.returncode}\n{s.logs()}"
    s.start()

    # The old kubeconfig (same CA, same client cert) still works.
    kubectl(old_kc, "get", "ns")
    assert snapshot_files(s.data_dir) == files_before, "certs or token changed across restart"
    with open(old_kc) as f, open(kc) as g:
        old_doc, new_doc = f.read(), g.read()
    assert "certificate-authority-data" in new_doc
    # The CA in the freshly written kubeconfig is the same CA.
    ca_line = [l for l in old_doc.splitlines() if "certificate-authority-data" in l]
    assert ca_line and ca_line[0] in new_doc

    after = {
        "ns": identity(kget(old_kc, "namespace", "persist")),
        "cm-a": identity(kget(old_kc, "-n", "persist", "configmap", "cm-a")),
        "cm-b": identity(kget(old_kc, "-n", "persist", "configmap", "cm-b")),
        "sec": identity(kget(old_kc, "-n", "persist", "secret", "sec")),
        "crd": identity(kget(old_kc, "crd", "gadgets.restart.skiff.test")),
        "g1": identity(kget(old_kc, "-n", "persist", "gadgets.restart.skiff.test", "g1")),
    }
    assert after == before
    assert kget(old_kc, "-n", "persist", "secret", "sec")["data"] == secret_data
    assert kget(old_kc, "-n", "persist", "gadgets.restart.skiff.test", "g1")["spec"] == {"count": 7}
    assert [i["metadata"]["name"] for i in kget(old_kc, "-n", "persist", "configmap", "-l", "x=y")["items"]] == ["cm-b"]

    # resourceVersions keep increasing after the restart.
    max_old = max(int(v[3]) for v in before.values())
    kubectl(old_kc, "-n", "persist", "create", "configmap", "after-restart", "--from-literal=k=v")
    new_rv = int(kget(old_kc, "-n", "persist", "configmap", "after-restart")["metadata"]["resourceVersion"])
    assert new_rv > max_old, (new_rv, max_old)
    # An update also moves past every old revision.
    kubectl(old_kc, "-n", "persist", "label", "configmap", "cm-a", "touched=yes")
    cm_a = kget(old_kc, "-n", "persist", "configmap", "cm-a")
    assert int(cm_a["metadata"]["resourceVersion"]) > new_rv
    assert cm_a["metadata"]["uid"] == before["cm-a"][2]

    # A list's resourceVersion is at least the newest write, and watching from
    # an old (pre-restart) revision replays what happened after it.
    raw = Raw(s)
    lst = raw.get("/api/v1/namespaces/persist/configmaps").json()
    assert int(lst["metadata"]["resourceVersion"]) >= int(cm_a["metadata"]["resourceVersion"])
    r = raw.get(
        "/api/v1/namespaces/persist/configmaps",
        params={"watch": "1", "resourceVersion": str(max_old), "timeoutSeconds": "2"},
        timeout=20,
    )
    assert r.status_code == 200, r.text
    names = [json.loads(l)["object"]["metadata"]["name"] for l in r.text.splitlines() if l.strip()]
    assert "after-restart" in names and "cm-a" in names, names


# ----------------------------------------------------------- crash safety


NS = "crash"


class Writers:
    """N threads creating configmaps as fast as they can over raw HTTPS."""

    def __init__(self, server, n=8, round_no=0):
        self.server = server
        self.n = n
        self.round_no = round_no
        self.acked = {}  # name -> resourceVersion (only 201 responses)
        self.errors = []  # unexpected HTTP responses (not connection errors)
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = []

    def run_one(self, t):
        raw = Raw(self.server)
        i = 0
        while not self.stop.is_set():
            name = f"r{self.round_no}-w{t}-{i}"
            i += 1
            body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"i": str(i)}}
            try:
                r = raw.post(f"/api/v1/namespaces/{NS}/configmaps", body, timeout=10)
            except Exception:
                # Connection refused/reset: the server is gone. Nothing acked.
                if self.stop.is_set():
                    return
                time.sleep(0.01)
                continue
            if r.status_code == 201:
                rv = r.json()["metadata"]["resourceVersion"]
                with self.lock:
                    self.acked[name] = rv
            else:
                with self.lock:
                    self.errors.append((name, r.status_code, r.text[:300]))

    def start(self):
        for t in range(self.n):
            th = threading.Thread(target=self.run_one, args=(t,), daemon=True)
            th.start()
            self.threads.append(th)

    def finish(self):
        self.stop.set()
        for th in self.threads:
            th.join(30)
        assert not any(th.is_alive() for th in self.threads), "a writer thread hung"


def list_all(raw, ns):
    r = raw.get(f"/api/v1/namespaces/{ns}/configmaps")
    assert r.status_code == 200, r.text
    return r.json()


def test_kill_9_loses_no_acknowledged_write(own_server):
    s = own_server
    raw = Raw(s)
    r = raw.post("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    assert r.status_code == 201, r.text

    all_acked = {}
    for round_no in range(2):
        w = Writers(s, n=8, round_no=round_no)
        w.start()
        time.sleep(2.0)
        with w.lock:
            acked_before_kill = len(w.acked)
        s.stop("KILL")
        assert s.proc.returncode == -9
        w.finish()
        assert acked_before_kill > 0, f"no write was acknowledged in 2 s (round {round_no}): {w.errors[:5]}\n{s.logs()}"
        # Writes that got an answer must have got 201; anything else is a server bug.
        assert not w.errors, f"unexpected non-201 answers: {w.errors[:5]}"
        acked_rvs = [int(v) for v in w.acked.values()]
        assert len(set(acked_rvs)) == len(acked_rvs), "two acknowledged creates share a resourceVersion"
        all_acked.update(w.acked)
        print(f"round {round_no}: {len(w.acked)} creates acknowledged, {acked_before_kill} before the kill")

        s.start()
        raw = Raw(s)
        lst = list_all(raw, NS)
        present = {i["metadata"]["name"]: i["metadata"]["resourceVersion"] for i in lst["items"]}
        missing = sorted(n for n in all_acked if n not in present)
        assert not missing, (
            f"round {round_no}: {len(missing)} of {len(all_acked)} acknowledged creates lost after kill -9, "
            f"e.g. {missing[:5]}"
        )
        changed = {n: (all_acked[n], present[n]) for n in all_acked if present[n] != all_acked[n]}
        assert not changed, f"acknowledged objects changed resourceVersion across the crash: {list(changed.items())[:5]}"
        # Every object in the list is readable on its own (no half-written rows).
        for name in list(present)[:20]:
            g = raw.get(f"/api/v1/namespaces/{NS}/configmaps/{name}")
            assert g.status_code == 200, g.text

        max_acked = max(int(v) for v in all_acked.values())
        list_rv = int(lst["metadata"]["resourceVersion"])
        max_present = max(int(v) for v in present.values())
        assert list_rv >= max_acked, (list_rv, max_acked)
        assert max_present >= max_acked

        r = raw.post(
            f"/api/v1/namespaces/{NS}/configmaps",
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"after-crash-{round_no}"}},
        )
        assert r.status_code == 201, r.text
        new_rv = int(r.json()["metadata"]["resourceVersion"])
        assert new_rv > max_acked, (new_rv, max_acked)
        assert new_rv > max_present, (new_rv, max_present)

    assert "panicked" not in s.logs()
