"""kubectl acceptance suite: the everyday kubectl workflow against a real
`skiff server`, for every kubectl version installed (1.27 … 1.33).

Every expectation here is what upstream kube-apiserver 1.33 does with the same
kubectl; when skiff disagrees the test fails and the message says how.  One
server per module; every test works in its own namespace (the `namespace`
fixture) so tests never see each other's objects.  No fixed sleeps: state is
polled with short timeouts (`eventually`).
"""
import base64
import json
import os
import queue
import re
import stat
import string
import subprocess
import threading
import time

import pytest

from conftest import wait_for

HERE = os.path.dirname(os.path.abspath(__file__))
MANIFESTS = os.path.join(HERE, "manifests")


# --------------------------------------------------------------------------- helpers


eventually = wait_for


def fails(k, *args, input=None, env=None, timeout=60):
    """Run kubectl expecting a non-zero exit; return the CompletedProcess."""
    p = k.run(*args, input=input, env=env, check=False, timeout=timeout)
    assert p.returncode != 0, (
        f"kubectl {k.version} {' '.join(args)} should have failed but exited 0\n"
        f"stdout:\n{p.stdout}\nstderr:\n{p.stderr}\nserver log tail:\n{k.server.logs()[-3000:]}"
    )
    return p


def get_obj(k, *args):
    """`kubectl get ... -o json` or None when the object does not exist."""
    p = k.run("get", *args, "-o", "json", check=False)
    if p.returncode != 0:
        assert "NotFound" in p.stderr, f"kubectl {k.version} get {' '.join(args)}: unexpected error {p.stderr}"
        return None
    return json.loads(p.stdout)


def explain(k, p):
    """Context for assertion messages."""
    return f"\n[kubectl {k.version}] stdout:\n{p.stdout}\nstderr:\n{p.stderr}\nserver log tail:\n{k.server.logs()[-2000:]}"


def table(stdout):
    """Split kubectl's tab-aligned output into (header, rows); cells split on 2+ spaces."""
    lines = [line for line in stdout.splitlines() if line.strip()]
    assert lines, f"no output:\n{stdout}"
    split = [re.split(r"\s{2,}", line.strip()) for line in lines]
    return split[0], split[1:]


def row_for(rows, name, col=0):
    for r in rows:
        if len(r) > col and r[col] == name:
            return r
    raise AssertionError(f"no row named {name!r} in {rows}")


def render(template_name, **values):
    with open(os.path.join(MANIFESTS, template_name)) as f:
        return string.Template(f.read()).substitute(**values)


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def kubectl_env(k):
    e = dict(os.environ)
    e["KUBECONFIG"] = k.server.kubeconfig
    e["HOME"] = os.path.join(k.server.tmp, f"home-{k.version}")
    return e


class Background:
    """A long-running kubectl (watch/wait) whose stdout lines are collected by a thread."""

    def __init__(self, k, *args):
        self.k = k
        self.args = args
        self.proc = subprocess.Popen(
            [k.binary, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=kubectl_env(k)
        )
        self.lines = []
        self.q = queue.Queue()
        self.t = threading.Thread(target=self._pump, daemon=True)
        self.t.start()

    def _pump(self):
        for line in self.proc.stdout:
            self.q.put(line.rstrip("\n"))
        self.q.put(None)

    def wait_line(self, pred, timeout=10.0, what="line", required=True):
        deadline = time.time() + timeout
        while time.time() < deadline:
            # lines already seen first
            for line in self.lines:
                if pred(line):
                    self.lines.remove(line)
                    return line
            try:
                line = self.q.get(timeout=max(0.01, deadline - time.time()))
            except queue.Empty:
                break
            if line is None:
                break
            self.lines.append(line)
        if not required:
            return None
        self.stop()
        raise AssertionError(
            f"kubectl {self.k.version} {' '.join(self.args)}: no {what} within {timeout}s\n"
            f"output so far:\n" + "\n".join(self.lines) + f"\nstderr:\n{self.stderr()}\n"
            f"server log tail:\n{self.k.server.logs()[-2000:]}"
        )

    def stderr(self):
        if self.proc.poll() is None:
            return "(still running)"
        return self.proc.stderr.read()

    def wait(self, timeout):
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise AssertionError(
                f"kubectl {self.k.version} {' '.join(self.args)} still running after {timeout}s\n"
                f"server log tail:\n{self.k.server.logs()[-2000:]}"
            )

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def apply_basic(k, ns, tmp_path, color="blue", replicas=2):
    """ConfigMap cfg, Secret creds, Deployment web, Service web (no CRD) in ns."""
    text = render("app.yaml", ns=ns, group="unused.example.com", color=color, replicas=replicas,
                  extra="  extra: keep-me", size=1)
    docs = [d for d in text.split("\n---\n") if "kind: CustomResourceDefinition" not in d and "kind: Widget" not in d]
    path = write(tmp_path, "basic.yaml", "\n---\n".join(docs))
    k.run("apply", "-f", path)
    return path


def create_owned_replicaset(k, ns, tmp_path, owner_uid, name="web-5d4f8c"):
    rs = {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": name,
            "namespace": ns,
            "labels": {"app": "web"},
            "ownerReferences": [{
                "apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": owner_uid,
                "controller": True, "blockOwnerDeletion": True,
            }],
        },
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "nginx:1.25"}]},
            },
        },
    }
    k.run("create", "-f", "-", input=json.dumps(rs))
    return name


# --------------------------------------------------------------------------- apply


def test_apply_multi_document_then_reapply(kubectl, namespace, tmp_path):
    k, ns = kubectl, namespace
    group = f"{ns}.e2e.skiff.io"
    v1 = render("app.yaml", ns=ns, group=group, color="blue", replicas=2, extra="  extra: keep-me", size=3)
    path = write(tmp_path, "app.yaml", v1)
    try:
        p = k.run("apply", "-f", path, check=False)
        if p.returncode != 0:
            # The Widget kind is not in discovery until the CRD is established; upstream
            # kubectl fails that one document the same way. Everything else must be applied.
            assert re.search(r"no matches for kind \"Widget\"|resource mapping not found", p.stderr), \
                "first apply may only fail on the custom resource" + explain(k, p)
        for expect in ("configmap/cfg created", "secret/creds created", "deployment.apps/web created",
                       "service/web created", f"customresourcedefinition.apiextensions.k8s.io/widgets.{group} created"):
            assert expect in p.stdout, f"apply output lacks {expect!r}" + explain(k, p)

        k.run("wait", "--for=condition=Established", f"crd/widgets.{group}", "--timeout=20s")
        if p.returncode != 0:
            p = k.run("apply", "-f", path)
            assert f"widget.{group}/w1 created" in p.stdout, explain(k, p)
        w1 = k.json("get", f"widgets.{group}", "w1", "-n", ns)
        assert w1["spec"] == {"size": 3, "color": "blue"}, w1
        assert w1["apiVersion"] == f"{group}/v1" and w1["kind"] == "Widget", w1
        # the CRD's additionalPrinterColumns drive the table
        header, rows = table(k.run("get", f"widgets.{group}", "-n", ns).stdout)
        assert header == ["NAME", "SIZE", "AGE"] and row_for(rows, "w1")[1] == "3", (header, rows)
        p = k.run("explain", f"widgets.{group}.spec.size")
        assert re.search(r"FIELD:\s+size\s+<integer>", p.stdout), "explain of a CRD field" + explain(k, p)
        # short name and the CRD in discovery
        assert k.run("get", "wdg", "-n", ns, "-o", "name").stdout.split() == [f"widget.{group}/w1"]
        res = k.run("api-resources").stdout
        assert re.search(rf"^widgets\s+wdg\s+{re.escape(group)}/v1\s+true\s+Widget\s*$", res, re.M), \
            f"api-resources lacks the CRD's widgets:\n{res}"
        assert f"{group}/v1" in k.run("api-versions").stdout.split()

        cm = k.json("get", "cm", "cfg", "-n", ns)
        assert cm["data"] == {"color": "blue", "extra": "keep-me"}, cm
        last = json.loads(cm["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"])
        assert last["data"] == {"color": "blue", "extra": "keep-me"}, last
        secret = k.json("get", "secret", "creds", "-n", ns)
        assert base64.b64decode(secret["data"]["password"]) == b"s3cret", secret
        assert "stringData" not in secret, "stringData must be folded into data by the server"
        svc = k.json("get", "svc", "web", "-n", ns)
        assert svc["spec"]["type"] == "ClusterIP" and re.match(r"10\.43\.\d+\.\d+$", svc["spec"]["clusterIP"]), svc
        assert svc["spec"]["ports"][0]["protocol"] == "TCP", "protocol defaults to TCP"

        # second apply: changed color/replicas/size, `extra` removed from the manifest
        v2 = render("app.yaml", ns=ns, group=group, color="green", replicas=4, extra="", size=5)
        path2 = write(tmp_path, "app-v2.yaml", v2)
        p = k.run("apply", "-f", path2)
        for expect in ("configmap/cfg configured", "deployment.apps/web configured",
                       "service/web unchanged", f"widget.{group}/w1 configured"):
            assert expect in p.stdout, f"re-apply output lacks {expect!r}" + explain(k, p)
        cm = k.json("get", "cm", "cfg", "-n", ns)
        assert cm["data"] == {"color": "green"}, f"re-apply must change color and prune `extra`: {cm['data']}"
        last = json.loads(cm["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"])
        assert last["data"] == {"color": "green"}, f"last-applied-configuration not updated: {last}"
        assert k.json("get", "deploy", "web", "-n", ns)["spec"]["replicas"] == 4
        assert k.json("get", f"widgets.{group}", "w1", "-n", ns)["spec"] == {"size": 5, "color": "green"}

        # third apply of the same file: nothing to do
        p = k.run("apply", "-f", path2)
        for expect in ("configmap/cfg unchanged", "deployment.apps/web unchanged", f"widget.{group}/w1 unchanged"):
            assert expect in p.stdout, f"idempotent apply output lacks {expect!r}" + explain(k, p)
    finally:
        k.run("delete", "crd", f"widgets.{group}", "--wait=false", check=False)


def test_server_side_apply_conflict_then_force(kubectl, namespace, tmp_path):
    k, ns = kubectl, namespace
    cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ssa\n  namespace: {ns}\ndata:\n  key: {v}\n  other: o\n"
    k.run("apply", "-f", write(tmp_path, "a.yaml", cm.format(ns=ns, v="a")))  # client-side apply owns .data.key
    path = write(tmp_path, "b.yaml", cm.format(ns=ns, v="b"))

    p = k.run("apply", "--server-side", "-f", path, check=False)
    assert p.returncode == 1, f"a conflicting server-side apply must exit 1, got {p.returncode}" + explain(k, p)
    for phrase in ("Apply failed with 1 conflict", 'conflict with "kubectl-client-side-apply"', ".data.key",
                   "--force-conflicts"):
        assert phrase in p.stderr, f"conflict message lacks {phrase!r}" + explain(k, p)
    assert k.json("get", "cm", "ssa", "-n", ns)["data"]["key"] == "a", "a rejected apply must not write"

    p = k.run("apply", "--server-side", "--force-conflicts", "-f", path)
    assert "configmap/ssa serverside-applied" in p.stdout, explain(k, p)
    obj = k.json("get", "cm", "ssa", "-n", ns, "--show-managed-fields")
    assert obj["data"] == {"key": "b", "other": "o"}, obj
    managers = {(m["manager"], m["operation"]) for m in obj["metadata"].get("managedFields", [])}
    assert ("kubectl", "Apply") in managers, f"no Apply entry for manager kubectl: {obj['metadata'].get('managedFields')}"

    # a server-side apply that creates an object, and a second manager taking part of it
    p = k.run("apply", "--server-side", "-f", "-",
              input=cm.format(ns=ns, v="x").replace("name: ssa", "name: ssa2"))
    assert "configmap/ssa2 serverside-applied" in p.stdout, explain(k, p)
    other = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ssa2\n  namespace: %s\ndata:\n  key: from-other\n" % ns
    p = k.run("apply", "--server-side", "--field-manager=other", "-f", "-", input=other, check=False)
    assert p.returncode == 1 and 'conflict with "kubectl"' in p.stderr, \
        "a second applier setting a different value must conflict with manager kubectl" + explain(k, p)


# --------------------------------------------------------------------------- get


def test_get_output_formats(kubectl, namespace, tmp_path):
    k, ns = kubectl, namespace
    apply_basic(k, ns, tmp_path)
    k.run("create", "configmap", "plain", "-n", ns, "--from-literal=a=1")

    header, rows = table(k.run("get", "deployments", "-n", ns).stdout)
    assert header == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"], header
    web = row_for(rows, "web")
    # the controllers create pods, but no node runs them: nothing is ready
    assert web[1] == "0/2" and web[2] in ("0", "2") and web[3] == "0", f"READY 0/2: {web}"
    assert re.fullmatch(r"\d+s", web[4]), f"AGE {web[4]!r}"

    header, rows = table(k.run("get", "deploy", "-n", ns, "-o", "wide").stdout)
    assert header == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE", "CONTAINERS", "IMAGES", "SELECTOR"], header
    assert row_for(rows, "web")[5:] == ["web,sidecar", "nginx:1.25,busybox:1.36", "app=web"], rows

    header, rows = table(k.run("get", "configmaps", "-n", ns).stdout)
    assert header == ["NAME", "DATA", "AGE"], header
    assert row_for(rows, "cfg")[1] == "2" and row_for(rows, "plain")[1] == "1", rows

    header, rows = table(k.run("get", "secrets", "-n", ns).stdout)
    assert header == ["NAME", "TYPE", "DATA", "AGE"], header
    assert row_for(rows, "creds")[1:3] == ["Opaque", "1"], rows

    header, rows = table(k.run("get", "svc", "-n", ns, "-o", "wide").stdout)
    assert header == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE", "SELECTOR"], header
    svc = row_for(rows, "web")
    assert svc[1] == "ClusterIP" and svc[3] == "<none>" and svc[4] == "80/TCP" and svc[6] == "app=web", svc

    header, rows = table(k.run("get", "ns", ns).stdout)
    assert header == ["NAME", "STATUS", "AGE"] and rows[0][:2] == [ns, "Active"], (header, rows)

    # -o yaml / -o json of a single object and of a list
    y = k.run("get", "cm", "cfg", "-n", ns, "-o", "yaml").stdout
    assert re.search(r"^kind: ConfigMap$", y, re.M) and re.search(r"^  color: blue$", y, re.M), y
    assert re.search(r"^  resourceVersion: \"\d+\"$", y, re.M) and "uid: " in y, y
    lst = k.json("get", "cm", "-n", ns)
    assert lst["kind"] == "List" and {i["metadata"]["name"] for i in lst["items"]} >= {"cfg", "plain"}, lst
    assert all(i["kind"] == "ConfigMap" and i["apiVersion"] == "v1" for i in lst["items"]), \
        "list items need kind/apiVersion"
    d = k.json("get", "deploy", "web", "-n", ns)
    assert d["spec"]["strategy"]["type"] == "RollingUpdate", "server-side defaulting of Deployment.spec.strategy"
    assert d["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] == "IfNotPresent", "defaulting"

    # jsonpath, custom columns, -o name
    p = k.run("get", "cm", "-n", ns, "-l", "app=web", "-o", "jsonpath={.items[*].metadata.name}")
    assert p.stdout.strip() == "cfg", explain(k, p)
    p = k.run("get", "deploy", "web", "-n", ns, "-o", "jsonpath={.spec.replicas} {.metadata.labels.app}")
    assert p.stdout == "2 web", explain(k, p)
    header, rows = table(k.run("get", "cm", "cfg", "-n", ns, "-o", "custom-columns=NAME:.metadata.name,DATA:.data").stdout)
    assert header == ["NAME", "DATA"] and rows[0][0] == "cfg" and "color:blue" in rows[0][1], (header, rows)
    names = k.run("get", "cm,deploy,svc,secret", "-n", ns, "-l", "app=web", "-o", "name").stdout.split()
    assert sorted(names) == sorted(["configmap/cfg", "deployment.apps/web", "service/web", "secret/creds"]), names

    # labels: -L, -l, --show-labels
    header, rows = table(k.run("get", "cm", "-n", ns, "-L", "app").stdout)
    assert header == ["NAME", "DATA", "AGE", "APP"], header
    assert row_for(rows, "cfg")[3] == "web", rows
    assert len(row_for(rows, "plain")) == 3 or row_for(rows, "plain")[3] == "", rows  # empty APP cell
    p = k.run("get", "cm", "-n", ns, "-l", "app=web")
    assert [r[0] for r in table(p.stdout)[1]] == ["cfg"], explain(k, p)
    p = k.run("get", "cm", "-n", ns, "-l", "app!=web", "-o", "name")
    assert "configmap/cfg" not in p.stdout.split() and "configmap/plain" in p.stdout.split(), explain(k, p)
    p = k.run("get", "cm", "-n", ns, "-l", "app in (web,db)", "-o", "name")
    assert p.stdout.split() == ["configmap/cfg"], explain(k, p)
    header, rows = table(k.run("get", "cm", "cfg", "-n", ns, "--show-labels").stdout)
    assert header == ["NAME", "DATA", "AGE", "LABELS"] and rows[0][3] == "app=web", (header, rows)

    # field selectors
    p = k.run("get", "cm", "-n", ns, "--field-selector", "metadata.name=plain", "-o", "name")
    assert p.stdout.split() == ["configmap/plain"], explain(k, p)
    p = k.run("get", "secrets", "-n", ns, "--field-selector", "type=Opaque", "-o", "name")
    assert "secret/creds" in p.stdout.split(), explain(k, p)
    p = k.run("get", "cm", "-n", ns, "--field-selector", "metadata.name=nothing-here")
    assert p.stdout == "" and f"No resources found in {ns} namespace." in p.stderr, explain(k, p)

    # all namespaces
    header, rows = table(k.run("get", "cm", "-A").stdout)
    assert header == ["NAMESPACE", "NAME", "DATA", "AGE"], header
    assert [ns, "cfg"] in [r[:2] for r in rows], rows
    p = k.run("get", "deploy", "--all-namespaces", "-o", "name")
    assert "deployment.apps/web" in p.stdout.split(), explain(k, p)


def test_get_watch(kubectl, namespace):
    k, ns = kubectl, namespace
    k.run("create", "configmap", "first", "-n", ns, "--from-literal=a=1")
    w = Background(k, "get", "configmaps", "-n", ns, "--watch")
    try:
        w.wait_line(lambda l: l.split()[:1] == ["NAME"], what="table header")
        w.wait_line(lambda l: l.startswith("first "), what="initial row for 'first'")
        k.run("create", "configmap", "second", "-n", ns, "--from-literal=a=1", "--from-literal=b=2")
        line = w.wait_line(lambda l: l.startswith("second "), what="row for the created 'second'")
        assert line.split()[1] == "2", f"DATA column of the watched row: {line!r}"
        k.run("patch", "configmap", "first", "-n", ns, "--type=merge", "-p", '{"data":{"b":"2","c":"3"}}')
        line = w.wait_line(lambda l: l.startswith("first "), what="row for the modified 'first'")
        assert line.split()[1] == "3", f"modified row should show DATA 3: {line!r}"
    finally:
        w.stop()

    # --watch-only -o name: only new events, printed as resource/name
    w = Background(k, "get", "configmaps", "-n", ns, "--watch-only", "-o", "name")
    try:
        # the watch starts at an unknown moment: write until it reports an event (bounded)
        for i in range(20):
            k.run("label", "configmap", "second", "-n", ns, f"x={i}", "--overwrite")
            if w.wait_line(lambda l: l == "configmap/second", timeout=0.5, required=False):
                break
        else:
            w.wait_line(lambda l: l == "configmap/second", timeout=0.1, what="configmap/second from --watch-only")
        assert not any(l == "configmap/first" for l in w.lines), f"--watch-only printed the initial list: {w.lines}"
    finally:
        w.stop()


# --------------------------------------------------------------------------- describe / edit / patch


def test_describe(kubectl, namespace, tmp_path):
    k, ns = kubectl, namespace
    apply_basic(k, ns, tmp_path)

    p = k.run("describe", "deployment", "web", "-n", ns)
    out = p.stdout
    for pattern in (rf"^Name:\s+web$", rf"^Namespace:\s+{ns}$", r"^Labels:\s+app=web$",
                    r"^Selector:\s+app=web$", r"^Replicas:\s+2 desired \| \d updated \| \d total \| 0 available",
                    r"^StrategyType:\s+RollingUpdate$", r"^RollingUpdateStrategy:\s+25% max unavailable, 25% max surge$",
                    r"^Pod Template:$", r"^\s+Image:\s+nginx:1.25$", r"^\s+Image:\s+busybox:1.36$", r"^Events:"):
        assert re.search(pattern, out, re.M), f"describe deployment lacks /{pattern}/" + explain(k, p)

    p = k.run("describe", "configmap", "cfg", "-n", ns)
    out = p.stdout
    for pattern in (r"^Name:\s+cfg$", rf"^Namespace:\s+{ns}$", r"^Data\n====\n", r"^color:\n----\nblue\n",
                    r"^Events:\s+<none>"):
        assert re.search(pattern, out, re.M), f"describe configmap lacks /{pattern}/" + explain(k, p)

    p = k.run("describe", "namespace", ns)
    out = p.stdout
    for pattern in (rf"^Name:\s+{ns}$", r"^Status:\s+Active$", r"No resource quota\.", r"No LimitRange resource\."):
        assert re.search(pattern, out, re.M), f"describe namespace lacks /{pattern}/" + explain(k, p)

    p = k.run("describe", "svc", "web", "-n", ns)
    for pattern in (r"^Type:\s+ClusterIP$", r"^Port:\s+http\s+80/TCP$", r"^TargetPort:\s+8080/TCP$"):
        assert re.search(pattern, p.stdout, re.M), f"describe service lacks /{pattern}/" + explain(k, p)


def test_edit_with_editor_script(kubectl, namespace, tmp_path):
    k, ns = kubectl, namespace
    k.run("create", "configmap", "ed", "-n", ns, "--from-literal=color=blue")
    editor = tmp_path / "editor.sh"
    editor.write_text("#!/bin/sh\nsed -i 's/color: blue/color: purple/' \"$1\"\n")
    editor.chmod(editor.stat().st_mode | stat.S_IEXEC)
    env = {"EDITOR": str(editor), "KUBE_EDITOR": str(editor)}
    p = k.run("edit", "configmap", "ed", "-n", ns, env=env)
    assert "configmap/ed edited" in p.stdout, explain(k, p)
    assert k.json("get", "cm", "ed", "-n", ns)["data"] == {"color": "purple"}

    # an edit that changes nothing
    p = k.run("edit", "configmap", "ed", "-n", ns, env=env)
    assert "Edit cancelled, no changes made." in (p.stdout + p.stderr), explain(k, p)


def test_patch_merge_json_strategic(kubectl, namespace, tmp_path):
    k, ns = kubectl, namespace
    apply_basic(k, ns, tmp_path)

    p = k.run("patch", "configmap", "cfg", "-n", ns, "--type=merge", "-p", '{"data":{"color":"red","extra":null,"n":"1"}}')
    assert "configmap/cfg patched" in p.stdout, explain(k, p)
    assert k.json("get", "cm", "cfg", "-n", ns)["data"] == {"color": "red", "n": "1"}

    p = k.run("patch", "deployment", "web", "-n", ns, "--type=json",
              "-p", '[{"op":"replace","path":"/spec/replicas","value":5},'
                    '{"op":"add","path":"/metadata/labels/tier","value":"front"}]')
    assert "deployment.apps/web patched" in p.stdout, explain(k, p)
    d = k.json("get", "deploy", "web", "-n", ns)
    assert d["spec"]["replicas"] == 5 and d["metadata"]["labels"]["tier"] == "front", d["spec"]

    # strategic merge (default type): containers merge by name, the sidecar stays
    p = k.run("patch", "deployment", "web", "-n", ns,
              "-p", '{"spec":{"template":{"spec":{"containers":[{"name":"web","image":"nginx:1.27"}]}}}}')
    assert "deployment.apps/web patched" in p.stdout, explain(k, p)
    containers = k.json("get", "deploy", "web", "-n", ns)["spec"]["template"]["spec"]["containers"]
    assert [(c["name"], c["image"]) for c in containers] == [("web", "nginx:1.27"), ("sidecar", "busybox:1.36")], \
        f"strategic merge must merge containers by name: {containers}"
    # $patch: delete on a list element
    p = k.run("patch", "deployment", "web", "-n", ns, "--type=strategic",
              "-p", '{"spec":{"template":{"spec":{"containers":[{"name":"sidecar","$patch":"delete"}]}}}}')
    containers = k.json("get", "deploy", "web", "-n", ns)["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["web"], containers

    # a patch that changes nothing is reported as such (the server must not write)
    rv = k.json("get", "cm", "cfg", "-n", ns)["metadata"]["resourceVersion"]
    p = k.run("patch", "configmap", "cfg", "-n", ns, "--type=merge", "-p", '{"data":{"color":"red"}}')
    assert "configmap/cfg patched (no change)" in p.stdout, explain(k, p)
    assert k.json("get", "cm", "cfg", "-n", ns)["metadata"]["resourceVersion"] == rv, "no-op patch bumped resourceVersion"

    # a JSON patch whose test op fails is rejected and changes nothing
    p = fails(k, "patch", "configmap", "cfg", "-n", ns, "--type=json",
              "-p", '[{"op":"test","path":"/data/color","value":"blue"},{"op":"remove","path":"/data/color"}]')
    assert re.search(r"invalid|test failed", p.stderr, re.I), explain(k, p)
    assert k.json("get", "cm", "cfg", "-n", ns)["data"]["color"] == "red"


def test_label_and_annotate(kubectl, namespace):
    k, ns = kubectl, namespace
    k.run("create", "configmap", "lab", "-n", ns, "--from-literal=a=1")

    p = k.run("label", "configmap", "lab", "-n", ns, "tier=backend")
    assert "configmap/lab labeled" in p.stdout, explain(k, p)
    p = fails(k, "label", "configmap", "lab", "-n", ns, "tier=frontend")
    assert "'tier' already has a value (backend), and --overwrite is false" in p.stderr, explain(k, p)
    k.run("label", "configmap", "lab", "-n", ns, "tier=frontend", "--overwrite")
    assert k.json("get", "cm", "lab", "-n", ns)["metadata"]["labels"] == {"tier": "frontend"}
    p = k.run("label", "configmap", "lab", "-n", ns, "tier-")
    assert "configmap/lab unlabeled" in p.stdout, explain(k, p)
    assert not k.json("get", "cm", "lab", "-n", ns)["metadata"].get("labels"), "label removal"

    p = k.run("annotate", "configmap", "lab", "-n", ns, "owner=team-a", "note=hello world")
    # (kubectl 1.27 itself prints "annotate" instead of "annotated": a client-side quirk)
    assert re.search(r"^configmap/lab annotated?$", p.stdout, re.M), explain(k, p)
    p = fails(k, "annotate", "configmap", "lab", "-n", ns, "owner=team-b")
    assert "--overwrite is false" in p.stderr, explain(k, p)
    k.run("annotate", "configmap", "lab", "-n", ns, "owner=team-b", "--overwrite")
    k.run("annotate", "configmap", "lab", "-n", ns, "note-")
    ann = k.json("get", "cm", "lab", "-n", ns)["metadata"].get("annotations", {})
    assert ann == {"owner": "team-b"}, ann

    # label many objects by selector
    k.run("create", "configmap", "lab2", "-n", ns, "--from-literal=a=1")
    k.run("label", "configmap", "--all", "-n", ns, "batch=1")
    p = k.run("get", "cm", "-n", ns, "-l", "batch=1", "-o", "name")
    assert {"configmap/lab", "configmap/lab2"} <= set(p.stdout.split()), explain(k, p)


def test_scale(kubectl, namespace, tmp_path):
    k, ns = kubectl, namespace
    apply_basic(k, ns, tmp_path)
    p = k.run("scale", "deployment", "web", "-n", ns, "--replicas=3")
    assert "deployment.apps/web scaled" in p.stdout, explain(k, p)
    assert k.json("get", "deploy", "web", "-n", ns)["spec"]["replicas"] == 3
    p = k.run("get", "--raw", f"/apis/apps/v1/namespaces/{ns}/deployments/web/scale")
    scale = json.loads(p.stdout)
    assert scale["kind"] == "Scale" and scale["spec"]["replicas"] == 3, scale
    assert scale["status"].get("selector") == "app=web", f"Scale.status.selector: {scale}"
    # precondition on the current size
    p = fails(k, "scale", "deployment", "web", "-n", ns, "--current-replicas=2", "--replicas=4")
    assert "Expected replicas to be 2, was 3" in p.stderr, explain(k, p)
    k.run("scale", "deployment", "web", "-n", ns, "--current-replicas=3", "--replicas=0")
    assert k.json("get", "deploy", "web", "-n", ns)["spec"]["replicas"] == 0


# --------------------------------------------------------------------------- create helpers


def test_create_configmap_and_secrets(kubectl, namespace, tmp_path):
    k, ns = kubectl, namespace
    env_file = write(tmp_path, "app.env", "# comment\nMODE=production\nGREETING=hello world\nEMPTY=\n")
    p = k.run("create", "configmap", "envcfg", "-n", ns, f"--from-env-file={env_file}")
    assert "configmap/envcfg created" in p.stdout, explain(k, p)
    assert k.json("get", "cm", "envcfg", "-n", ns)["data"] == {"MODE": "production", "GREETING": "hello world", "EMPTY": ""}

    k.run("create", "configmap", "filecfg", "-n", ns, f"--from-file=settings={env_file}")
    assert k.json("get", "cm", "filecfg", "-n", ns)["data"]["settings"].startswith("# comment\n")

    p = k.run("create", "secret", "generic", "lit", "-n", ns, "--from-literal=user=admin", "--from-literal=pass=p@ss w0rd")
    assert "secret/lit created" in p.stdout, explain(k, p)
    s = k.json("get", "secret", "lit", "-n", ns)
    assert s["type"] == "Opaque"
    assert {key: base64.b64decode(v).decode() for key, v in s["data"].items()} == {"user": "admin", "pass": "p@ss w0rd"}

    key, crt = str(tmp_path / "tls.key"), str(tmp_path / "tls.crt")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=x",
                    "-keyout", key, "-out", crt, "-days", "1"], check=True, capture_output=True)
    p = k.run("create", "secret", "tls", "tls", "-n", ns, f"--cert={crt}", f"--key={key}")
    assert "secret/tls created" in p.stdout, explain(k, p)
    s = k.json("get", "secret", "tls", "-n", ns)
    assert s["type"] == "kubernetes.io/tls", s["type"]
    assert base64.b64decode(s["data"]["tls.crt"]) == open(crt, "rb").read()
    assert base64.b64decode(s["data"]["tls.key"]) == open(key, "rb").read()

    p = k.run("create", "secret", "docker-registry", "reg", "-n", ns, "--docker-server=registry.example.com",
              "--docker-username=bob", "--docker-password=hunter2", "--docker-email=bob@example.com")
    assert "secret/reg created" in p.stdout, explain(k, p)
    s = k.json("get", "secret", "reg", "-n", ns)
    assert s["type"] == "kubernetes.io/dockerconfigjson", s["type"]
    cfg = json.loads(base64.b64decode(s["data"][".dockerconfigjson"]))
    auth = cfg["auths"]["registry.example.com"]
    assert auth["username"] == "bob" and base64.b64decode(auth["auth"]) == b"bob:hunter2", cfg

    header, rows = table(k.run("get", "secrets", "-n", ns).stdout)
    assert row_for(rows, "tls")[1:3] == ["kubernetes.io/tls", "2"], rows
    assert row_for(rows, "reg")[1:3] == ["kubernetes.io/dockerconfigjson", "1"], rows

    # dry runs never persist
    p = k.run("create", "configmap", "dry", "-n", ns, "--from-literal=a=1", "--dry-run=server", "-o", "name")
    assert p.stdout.strip() == "configmap/dry", explain(k, p)
    assert get_obj(k, "cm", "dry", "-n", ns) is None, "--dry-run=server persisted the object"
    # a TLS secret with a missing key is rejected by validation
    bad = {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
           "metadata": {"name": "badtls", "namespace": ns}, "data": {"tls.crt": "eA=="}}
    p = fails(k, "create", "-f", "-", input=json.dumps(bad))
    assert 'is invalid' in p.stderr and "tls.key" in p.stderr, explain(k, p)


# --------------------------------------------------------------------------- discovery / explain / auth


def test_explain(kubectl):
    k = kubectl
    p = k.run("explain", "deployment.spec.replicas")
    assert re.search(r"FIELD:\s+replicas\s+<integer>", p.stdout), explain(k, p)
    assert "Number of desired pods" in p.stdout, "description from the OpenAPI schema" + explain(k, p)
    p = k.run("explain", "configmap")
    assert re.search(r"KIND:\s+ConfigMap", p.stdout) and re.search(r"VERSION:\s+v1", p.stdout), explain(k, p)
    assert re.search(r"^\s+data\s+<map\[string\]string>", p.stdout, re.M), explain(k, p)
    p = k.run("explain", "deployments.spec.template.spec.containers.image")
    assert re.search(r"FIELD:\s+image\s+<string>", p.stdout), explain(k, p)


def test_api_resources_and_versions(kubectl):
    k = kubectl
    p = k.run("api-resources")
    out = p.stdout
    assert table(out)[0] == ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"], explain(k, p)
    for pattern in (r"^deployments\s+deploy\s+apps/v1\s+true\s+Deployment$",
                    r"^configmaps\s+cm\s+v1\s+true\s+ConfigMap$",
                    r"^namespaces\s+ns\s+v1\s+false\s+Namespace$",
                    r"^customresourcedefinitions\s+crd,crds\s+apiextensions.k8s.io/v1\s+false\s+CustomResourceDefinition$"):
        assert re.search(pattern, out, re.M), f"api-resources lacks /{pattern}/" + explain(k, p)
    p = k.run("api-resources", "--namespaced=false", "-o", "name")
    names = p.stdout.split()
    assert "namespaces" in names and "configmaps" not in names, explain(k, p)
    p = k.run("api-resources", "--api-group=apps", "-o", "wide")
    assert re.search(r"^deployments\s.*\[?create[ ,]delete[ ,]deletecollection[ ,]get[ ,]list[ ,]patch[ ,]update[ ,]watch\]?", p.stdout, re.M), \
        explain(k, p)
    versions = k.run("api-versions").stdout.split()
    for v in ("v1", "apps/v1", "apiextensions.k8s.io/v1", "rbac.authorization.k8s.io/v1", "authorization.k8s.io/v1"):
        assert v in versions, f"api-versions lacks {v}: {versions}"


def test_auth_can_i_and_whoami(kubectl):
    k = kubectl
    p = k.run("auth", "can-i", "create", "pods")
    assert p.stdout.strip() == "yes", explain(k, p)
    p = k.run("auth", "can-i", "*", "*", "--all-namespaces")
    assert p.stdout.strip() == "yes", explain(k, p)
    p = k.run("auth", "whoami")
    assert re.search(r"^Username\s+system:admin$", p.stdout, re.M), explain(k, p)
    assert re.search(r"^Groups\s+\[.*\bsystem:masters\b.*\]$", p.stdout, re.M), explain(k, p)


# --------------------------------------------------------------------------- delete


def test_delete_by_name_label_and_file(kubectl, namespace, tmp_path):
    k, ns = kubectl, namespace
    path = apply_basic(k, ns, tmp_path)
    for name in ("a", "b", "c"):
        k.run("create", "configmap", name, "-n", ns, "--from-literal=x=1")
    k.run("label", "configmap", "b", "c", "-n", ns, "doomed=yes")

    p = k.run("delete", "configmap", "a", "-n", ns)
    assert re.search(r'^configmap "a" deleted', p.stdout, re.M), explain(k, p)
    assert get_obj(k, "cm", "a", "-n", ns) is None

    p = k.run("delete", "configmap", "-n", ns, "-l", "doomed=yes")
    assert re.search(r'configmap "b" deleted', p.stdout) and re.search(r'configmap "c" deleted', p.stdout), explain(k, p)
    assert get_obj(k, "cm", "b", "-n", ns) is None and get_obj(k, "cm", "c", "-n", ns) is None
    assert get_obj(k, "cm", "cfg", "-n", ns) is not None, "delete -l removed an unlabelled object"

    p = k.run("delete", "-f", path)
    for line in ('configmap "cfg" deleted', 'secret "creds" deleted', 'deployment.apps "web" deleted',
                 'service "web" deleted'):
        assert line in p.stdout, f"delete -f output lacks {line!r}" + explain(k, p)
    p = k.run("get", "cm,secret,deploy,svc", "-n", ns, "-l", "app=web", "-o", "name")
    assert p.stdout.strip() == "", f"objects left after delete -f: {p.stdout}"
    p = k.run("delete", "-f", path, "--ignore-not-found")
    assert p.stdout.strip() == "", explain(k, p)


def _deployment_uid(k, ns, tmp_path):
    apply_basic(k, ns, tmp_path)
    return k.json("get", "deploy", "web", "-n", ns)["metadata"]["uid"]


def test_delete_cascade_foreground(kubectl, namespace, tmp_path):
    k, ns = kubectl, namespace
    rs = create_owned_replicaset(k, ns, tmp_path, _deployment_uid(k, ns, tmp_path))
    p = k.run("delete", "deployment", "web", "-n", ns, "--cascade=foreground", "--timeout=30s")
    assert 'deployment.apps "web" deleted' in p.stdout, explain(k, p)
    # kubectl waited for the owner to disappear; a blocking dependent goes first
    assert get_obj(k, "deploy", "web", "-n", ns) is None, "owner still present after foreground delete returned"
    assert get_obj(k, "rs", rs, "-n", ns) is None, "foreground deletion left the blocking dependent ReplicaSet"


def test_delete_cascade_background(kubectl, namespace, tmp_path):
    k, ns = kubectl, namespace
    rs = create_owned_replicaset(k, ns, tmp_path, _deployment_uid(k, ns, tmp_path))
    k.run("delete", "deployment", "web", "-n", ns)  # background is the default
    assert get_obj(k, "deploy", "web", "-n", ns) is None
    eventually(lambda: get_obj(k, "rs", rs, "-n", ns) is None, timeout=15,
               what="garbage collection of the ReplicaSet after its owner was deleted")


def test_delete_cascade_orphan(kubectl, namespace, tmp_path):
    k, ns = kubectl, namespace
    uid = _deployment_uid(k, ns, tmp_path)
    rs = create_owned_replicaset(k, ns, tmp_path, uid)
    p = k.run("delete", "deployment", "web", "-n", ns, "--cascade=orphan", "--timeout=30s")
    assert 'deployment.apps "web" deleted' in p.stdout, explain(k, p)
    assert get_obj(k, "deploy", "web", "-n", ns) is None
    obj = get_obj(k, "rs", rs, "-n", ns)
    assert obj is not None, "--cascade=orphan deleted the dependent"
    refs = obj["metadata"].get("ownerReferences") or []
    assert all(r.get("uid") != uid for r in refs), f"orphaned ReplicaSet still references the deleted owner: {refs}"
    # and it stays
    time.sleep(0.5)
    assert get_obj(k, "rs", rs, "-n", ns) is not None, "orphaned ReplicaSet was collected later"


def test_wait_for_delete(kubectl, namespace):
    k, ns = kubectl, namespace
    held = {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "held", "namespace": ns, "finalizers": ["e2e.skiff.io/hold"]}}
    k.run("create", "-f", "-", input=json.dumps(held))
    k.run("delete", "configmap", "held", "-n", ns, "--wait=false")
    obj = k.json("get", "cm", "held", "-n", ns)
    assert obj["metadata"].get("deletionTimestamp"), "a finalizer must keep the object with a deletionTimestamp"
    w = Background(k, "wait", "--for=delete", "configmap/held", "-n", ns, "--timeout=30s")
    try:
        time.sleep(0.3)  # let wait start watching; the outcome does not depend on it
        assert w.proc.poll() is None, f"wait returned while the object still exists: {w.proc.returncode}"
        k.run("patch", "configmap", "held", "-n", ns, "--type=merge", "-p", '{"metadata":{"finalizers":null}}')
        rc = w.wait(timeout=20)
        out = w.proc.stdout.read() if w.proc.stdout else ""
        out = "\n".join(w.lines) + out
        assert rc == 0, f"kubectl wait --for=delete exited {rc}: {out} {w.proc.stderr.read()}"
    finally:
        w.stop()
    assert get_obj(k, "cm", "held", "-n", ns) is None

    # waiting on a condition
    k.run("create", "configmap", "cond", "-n", ns)
    p = k.run("wait", "--for=jsonpath={.data.ready}=yes", "configmap/cond", "-n", ns, "--timeout=1s", check=False)
    assert p.returncode != 0, "wait on an unmet jsonpath condition must time out"


def test_create_and_delete_namespace(kubectl):
    k = kubectl
    ns = f"ns-{k.version.replace('.', '-')}-{int(time.time() * 1000) % 100000}"
    p = k.run("create", "ns", ns)
    assert f"namespace/{ns} created" in p.stdout, explain(k, p)
    k.run("create", "configmap", "content", "-n", ns, "--from-literal=a=1")
    k.run("create", "secret", "generic", "content", "-n", ns, "--from-literal=a=1")
    p = k.run("delete", "ns", ns, "--timeout=60s", timeout=90)
    assert f'namespace "{ns}" deleted' in p.stdout, explain(k, p)
    p = fails(k, "get", "ns", ns)
    assert f'Error from server (NotFound): namespaces "{ns}" not found' in p.stderr, explain(k, p)
    # the content went with it
    p = k.run("get", "cm,secret", "-A", "--field-selector", f"metadata.namespace={ns}", "-o", "name")
    assert p.stdout.strip() == "", f"namespace content survived the namespace: {p.stdout}"
    # creating into a deleted namespace is refused
    p = fails(k, "create", "configmap", "late", "-n", ns)
    assert f'namespaces "{ns}" not found' in p.stderr, explain(k, p)


# --------------------------------------------------------------------------- errors


def test_error_messages_and_exit_codes(kubectl, namespace):
    k, ns = kubectl, namespace
    p = fails(k, "get", "cm", "nope", "-n", ns)
    assert p.returncode == 1, p.returncode
    assert p.stderr.strip().splitlines()[-1] == 'Error from server (NotFound): configmaps "nope" not found', explain(k, p)

    p = fails(k, "get", "deployment", "nope", "-n", ns)
    assert 'Error from server (NotFound): deployments.apps "nope" not found' in p.stderr, explain(k, p)

    p = fails(k, "delete", "cm", "nope", "-n", ns)
    assert 'Error from server (NotFound): configmaps "nope" not found' in p.stderr, explain(k, p)

    cm = json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "dup", "namespace": ns}})
    k.run("create", "-f", "-", input=cm)
    p = fails(k, "create", "-f", "-", input=cm)
    assert p.returncode == 1
    assert re.search(r'Error from server \(AlreadyExists\): .*configmaps "dup" already exists', p.stderr), explain(k, p)
    p = fails(k, "create", "configmap", "dup", "-n", ns)
    assert 'configmaps "dup" already exists' in p.stderr, explain(k, p)

    bad = json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "Bad_Name", "namespace": ns}})
    p = fails(k, "create", "-f", "-", input=bad)
    assert p.returncode == 1
    assert 'ConfigMap "Bad_Name" is invalid' in p.stderr, explain(k, p)
    assert 'metadata.name: Invalid value: "Bad_Name"' in p.stderr, explain(k, p)
    assert "RFC 1123" in p.stderr, explain(k, p)

    bad = json.dumps({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "noselector", "namespace": ns},
                      "spec": {"template": {"spec": {"containers": []}}}})
    p = fails(k, "create", "-f", "-", "--validate=false", input=bad)
    assert 'The Deployment "noselector" is invalid' in p.stderr and "spec.selector: Required value" in p.stderr, \
        explain(k, p)

    p = fails(k, "get", "foos")
    assert p.returncode == 1
    assert 'error: the server doesn\'t have a resource type "foos"' in p.stderr, explain(k, p)

    p = fails(k, "get", "cm", "-n", ns, "-l", "a in (")
    assert p.returncode == 1

    # strict field validation (kubectl default --validate=strict uses the server's fieldValidation)
    unknown = json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "strict", "namespace": ns},
                          "bogus": 1})
    p = fails(k, "create", "-f", "-", input=unknown)
    assert 'unknown field "bogus"' in p.stderr, explain(k, p)
    assert get_obj(k, "cm", "strict", "-n", ns) is None

    # optimistic concurrency: replace with a stale resourceVersion
    obj = k.json("get", "cm", "dup", "-n", ns)
    k.run("label", "cm", "dup", "-n", ns, "bump=1")
    obj["data"] = {"x": "y"}
    p = fails(k, "replace", "-f", "-", input=json.dumps(obj))
    assert re.search(r'Error from server \(Conflict\): .*Operation cannot be fulfilled on configmaps "dup": '
                     r'the object has been modified; please apply your changes to the latest version and try again',
                     p.stderr), explain(k, p)


# --------------------------------------------------------------------------- more everyday commands


def test_events_in_describe_and_get_events(kubectl, namespace):
    k, ns = kubectl, namespace
    k.run("create", "configmap", "cfg", "-n", ns, "--from-literal=a=1")
    uid = k.json("get", "cm", "cfg", "-n", ns)["metadata"]["uid"]
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    ev = {"apiVersion": "v1", "kind": "Event", "metadata": {"name": "cfg.e2e1", "namespace": ns},
          "involvedObject": {"apiVersion": "v1", "kind": "ConfigMap", "name": "cfg", "namespace": ns, "uid": uid},
          "reason": "Tested", "message": "hello from e2e", "type": "Normal", "source": {"component": "e2e"},
          "firstTimestamp": now, "lastTimestamp": now, "count": 1}
    k.run("create", "-f", "-", input=json.dumps(ev))
    # an event about another object must not show up
    other = dict(ev, metadata={"name": "other.e2e2", "namespace": ns},
                 involvedObject=dict(ev["involvedObject"], name="other", uid="00000000-0000-0000-0000-000000000000"),
                 message="not about cfg")
    k.run("create", "-f", "-", input=json.dumps(other))

    p = k.run("describe", "configmap", "cfg", "-n", ns)
    assert re.search(r"^Events:\n\s+Type\s+Reason\s+Age\s+From\s+Message\n", p.stdout, re.M), explain(k, p)
    assert re.search(r"^\s+Normal\s+Tested\s+\S+\s+e2e\s+hello from e2e$", p.stdout, re.M), explain(k, p)
    assert "not about cfg" not in p.stdout, "describe must select events by involvedObject" + explain(k, p)

    p = k.run("get", "events", "-n", ns)
    header, rows = table(p.stdout)
    assert header == ["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"], explain(k, p)
    assert any(r[1:] == ["Normal", "Tested", "configmap/cfg", "hello from e2e"] for r in rows), explain(k, p)
    p = k.run("get", "events", "-n", ns, "--field-selector", "involvedObject.name=other", "-o", "name")
    assert p.stdout.split() == ["event/other.e2e2"], explain(k, p)


def test_pagination_sort_and_get_all(kubectl, namespace, tmp_path):
    k, ns = kubectl, namespace
    apply_basic(k, ns, tmp_path)
    for i, v in enumerate(["e", "d", "c", "b", "a"]):
        k.run("create", "configmap", f"page{i}", "-n", ns, f"--from-literal=v={v}")
    # the server honours limit/continue
    first = json.loads(k.run("get", "--raw", f"/api/v1/namespaces/{ns}/configmaps?limit=2").stdout)
    assert len(first["items"]) == 2 and first["metadata"].get("continue"), f"limit=2 not honoured: {first['metadata']}"
    names = [i["metadata"]["name"] for i in first["items"]]
    token = first["metadata"]["continue"]
    while token:
        page = json.loads(k.run("get", "--raw", f"/api/v1/namespaces/{ns}/configmaps?limit=2&continue={token}").stdout)
        names += [i["metadata"]["name"] for i in page["items"]]
        token = page["metadata"].get("continue")
    assert len(names) == len(set(names)) and {f"page{i}" for i in range(5)} <= set(names), names
    # kubectl's own chunking gives the same set
    p = k.run("get", "cm", "-n", ns, "--chunk-size=2", "-o", "name")
    assert sorted(p.stdout.split()) == sorted(f"configmap/{n}" for n in names), explain(k, p)
    p = k.run("get", "cm", "-n", ns, "-l", "!app", "--sort-by=.data.v", "-o", "jsonpath={.items[*].data.v}")
    assert p.stdout.split()[-5:] == ["a", "b", "c", "d", "e"], explain(k, p)

    p = k.run("get", "all", "-n", ns)
    assert re.search(r"^service/web\s+ClusterIP\s", p.stdout, re.M), explain(k, p)
    assert re.search(r"^deployment.apps/web\s+0/2\s", p.stdout, re.M), explain(k, p)


def test_diff(kubectl, namespace, tmp_path):
    k, ns = kubectl, namespace
    path = apply_basic(k, ns, tmp_path)
    docs = open(path).read().split("\n---\n")
    no_secret = write(tmp_path, "no-secret.yaml", "\n---\n".join(d for d in docs if "kind: Secret" not in d))
    p = k.run("diff", "-f", no_secret, check=False)
    assert p.returncode == 0 and p.stdout == "", "kubectl diff right after apply must be empty" + explain(k, p)
    changed = open(no_secret).read().replace("color: blue", "color: green")
    path2 = write(tmp_path, "changed.yaml", changed)
    p = k.run("diff", "-f", path2, check=False)
    assert p.returncode == 1, f"kubectl diff exits 1 on differences, got {p.returncode}" + explain(k, p)
    assert re.search(r"^-\s+color: blue$", p.stdout, re.M) and re.search(r"^\+\s+color: green$", p.stdout, re.M), \
        explain(k, p)
    assert "resourceVersion" not in p.stdout, \
        "a server dry-run patch must return the live resourceVersion, so it never shows up in kubectl diff" + explain(k, p)
    # a Secret written with stringData: the dry-run result equals the live object
    p = k.run("diff", "-f", path, check=False)
    assert p.returncode == 0 and p.stdout == "", \
        "kubectl diff of the applied Secret (stringData) must be empty" + explain(k, p)



def test_dry_run_and_replace(kubectl, namespace, tmp_path):
    k, ns = kubectl, namespace
    path = apply_basic(k, ns, tmp_path)
    path2 = write(tmp_path, "changed.yaml", open(path).read().replace("color: blue", "color: green"))
    p = k.run("apply", "-f", path2, "--dry-run=server")
    assert "configmap/cfg configured (server dry run)" in p.stdout, explain(k, p)
    assert k.json("get", "cm", "cfg", "-n", ns)["data"]["color"] == "blue", "server dry run persisted"
    p = k.run("delete", "cm", "cfg", "-n", ns, "--dry-run=server")
    assert get_obj(k, "cm", "cfg", "-n", ns) is not None, "delete --dry-run=server deleted"

    obj = k.json("get", "cm", "cfg", "-n", ns)
    obj["data"]["color"] = "teal"
    p = k.run("replace", "-f", "-", input=json.dumps(obj))
    assert "configmap/cfg replaced" in p.stdout, explain(k, p)
    assert k.json("get", "cm", "cfg", "-n", ns)["data"]["color"] == "teal"
    old_uid = obj["metadata"]["uid"]
    p = k.run("replace", "--force", "-f", path, timeout=90)
    assert "configmap/cfg replaced" in p.stdout, explain(k, p)
    new = k.json("get", "cm", "cfg", "-n", ns)
    assert new["metadata"]["uid"] != old_uid and new["data"]["color"] == "blue", "replace --force recreates the object"


def test_generators_create_expose_set_run(kubectl, namespace):
    k, ns = kubectl, namespace
    p = k.run("create", "deployment", "gen", "--image=nginx:1.25", "--replicas=2", "-n", ns)
    assert "deployment.apps/gen created" in p.stdout, explain(k, p)
    p = k.run("expose", "deployment", "gen", "--port=80", "--target-port=8080", "-n", ns)
    assert "service/gen exposed" in p.stdout, explain(k, p)
    svc = k.json("get", "svc", "gen", "-n", ns)
    assert svc["spec"]["selector"] == {"app": "gen"} and svc["spec"]["ports"][0]["targetPort"] == 8080, svc["spec"]
    p = k.run("set", "image", "deployment/gen", "nginx=nginx:1.26", "-n", ns)
    assert "deployment.apps/gen image updated" in p.stdout, explain(k, p)
    k.run("set", "env", "deployment/gen", "FOO=bar", "-n", ns)
    c = k.json("get", "deploy", "gen", "-n", ns)["spec"]["template"]["spec"]["containers"][0]
    assert c["image"] == "nginx:1.26" and c["env"] == [{"name": "FOO", "value": "bar"}], c
    p = k.run("run", "pod1", "--image=busybox:1.36", "-n", ns, "--", "sleep", "10")
    assert "pod/pod1 created" in p.stdout, explain(k, p)
    header, rows = table(k.run("get", "pods", "-n", ns).stdout)
    assert header == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"] and row_for(rows, "pod1")[1:3] == ["0/1", "Pending"], rows
    k.run("create", "job", "j1", "--image=busybox:1.36", "-n", ns)
    k.run("create", "serviceaccount", "sa1", "-n", ns)
    p = k.run("get", "deploy,svc,pod,job,sa", "-n", ns, "-o", "name")
    for name in ("deployment.apps/gen", "service/gen", "pod/pod1", "job.batch/j1", "serviceaccount/sa1"):
        assert name in p.stdout.split(), f"{name} missing" + explain(k, p)


def test_autoscale_any_version(kubectl, namespace):
    """`kubectl autoscale` writes autoscaling/v1 up to 1.27 and v2 later; both
    versions serve the same object (stored as v2, converted on the way)."""
    k, ns = kubectl, namespace
    k.run("create", "deployment", "hpa-web", "--image=nginx:1.25", "-n", ns)
    k.run("autoscale", "deployment", "hpa-web", "--min=1", "--max=4", "--cpu-percent=60", "-n", ns)
    p = k.run("get", "hpa", "hpa-web", "-n", ns)
    assert "Deployment/hpa-web" in p.stdout and "60%" in p.stdout, p.stdout
    v1 = k.json("get", "horizontalpodautoscalers.v1.autoscaling", "hpa-web", "-n", ns)
    assert v1["apiVersion"] == "autoscaling/v1" and v1["spec"]["targetCPUUtilizationPercentage"] == 60, v1
    v2 = k.json("get", "horizontalpodautoscalers.v2.autoscaling", "hpa-web", "-n", ns)
    metric = v2["spec"]["metrics"][0]["resource"]
    assert metric["name"] == "cpu" and metric["target"]["averageUtilization"] == 60, v2
