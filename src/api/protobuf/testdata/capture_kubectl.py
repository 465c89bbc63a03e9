#!/usr/bin/env python3
"""Re-capture the kubectl protobuf fixtures in this directory.

Starts a fake API server (legacy discovery only) on localhost, runs
`kubectl create … --dry-run=server` for each fixture and stores the request
body as NAME.pb.hex, then runs the same command with `--dry-run=client -o
json` and stores what kubectl prints (the Go object through encoding/json) as
NAME.json. Commands kubectl cannot print (`create token`, `auth can-i`) only
get their body captured; their NAME.json is written by hand from the Go types.

Usage: python3 src/api/protobuf/testdata/capture_kubectl.py [KUBECTL]
(default /usr/lib/google-cloud-sdk/bin/kubectl.1.33)
"""

import binascii
import http.server
import json
import os
import subprocess
import sys
import tempfile
import threading

HERE = os.path.dirname(os.path.abspath(__file__))

RESOURCES = {
    "v1": [("configmaps", "ConfigMap", True), ("secrets", "Secret", True),
           ("namespaces", "Namespace", False), ("serviceaccounts", "ServiceAccount", True),
           ("services", "Service", True), ("resourcequotas", "ResourceQuota", True), ("pods", "Pod", True),
           ("serviceaccounts/token", "TokenRequest", True)],
    "apps/v1": [("deployments", "Deployment", True)],
    "batch/v1": [("jobs", "Job", True), ("cronjobs", "CronJob", True)],
    "rbac.authorization.k8s.io/v1": [("roles", "Role", True), ("rolebindings", "RoleBinding", True),
                                     ("clusterroles", "ClusterRole", False)],
    "policy/v1": [("poddisruptionbudgets", "PodDisruptionBudget", True)],
    "scheduling.k8s.io/v1": [("priorityclasses", "PriorityClass", False)],
    "networking.k8s.io/v1": [("ingresses", "Ingress", True)],
    "authorization.k8s.io/v1": [("selfsubjectaccessreviews", "SelfSubjectAccessReview", False)],
}

FIXTURES = [
    ("configmap", ["create", "configmap", "cm1", "--from-literal=a=b", "--from-literal=z=y",
                   "--from-file=bin={bin}", "-n", "team"]),
    ("secret", ["create", "secret", "generic", "s1", "--from-literal=password=p@ss",
                "--from-literal=user=admin"]),
    ("namespace", ["create", "namespace", "ns1"]),
    ("serviceaccount", ["create", "serviceaccount", "sa1"]),
    ("deployment", ["create", "deployment", "web", "--image=nginx:1.27", "--port=80", "--replicas=3"]),
    ("deployment-zero-replicas", ["create", "deployment", "zero", "--image=busybox", "--replicas=0",
                                  "--", "sleep", "3600"]),
    ("service", ["create", "service", "clusterip", "svc1", "--tcp=80:8080", "--tcp=443:https"]),
    ("job", ["create", "job", "j1", "--image=busybox", "--", "echo", "hi"]),
    ("cronjob", ["create", "cronjob", "cj1", "--image=busybox", "--schedule=*/5 * * * *", "--", "date"]),
    ("role", ["create", "role", "r1", "--verb=get,list", "--resource=pods,configmaps"]),
    ("rolebinding", ["create", "rolebinding", "rb1", "--role=r1", "--user=alice",
                     "--serviceaccount=default:sa1"]),
    ("resourcequota", ["create", "quota", "q1", "--hard=cpu=1500m,memory=2Gi,pods=10"]),
    ("poddisruptionbudget", ["create", "pdb", "pdb1", "--selector=app=web", "--min-available=50%"]),
    ("priorityclass", ["create", "priorityclass", "pc1", "--value=1000", "--description=high"]),
    ("ingress", ["create", "ingress", "ing1", "--rule=foo.com/bar*=svc1:8080"]),
    ("clusterrole", ["create", "clusterrole", "cr1", "--verb=get", "--non-resource-url=/healthz"]),
    ("tokenrequest", ["create", "token", "sa1", "--duration=1h"]),
    ("selfsubjectaccessreview", ["auth", "can-i", "create", "pods", "-n", "default"]),
]

captured = []


class FakeApiServer(http.server.BaseHTTPRequestHandler):
    def reply(self, code, obj):
        b = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(b)))
        self.end_headers()
        self.wfile.write(b)

    def do_GET(self):
        path = self.path.split("?")[0]
        if path == "/api":
            return self.reply(200, {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
                {"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]})
        if path == "/apis":
            groups = []
            for gv in RESOURCES:
                if "/" in gv:
                    g, v = gv.split("/")
                    ver = {"groupVersion": gv, "version": v}
                    groups.append({"name": g, "versions": [ver], "preferredVersion": ver})
            return self.reply(200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
        gv = "v1" if path == "/api/v1" else path[len("/apis/"):]
        if gv in RESOURCES:
            return self.reply(200, {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": [
                {"name": n, "singularName": "", "namespaced": ns, "kind": k, "verbs": ["create", "get", "list"]}
                for n, k, ns in RESOURCES[gv]]})
        self.reply(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404})

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        captured.append((self.headers.get("Content-Type"), body))
        self.reply(201, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201})

    def log_message(self, *args):
        pass


def main():
    kubectl = sys.argv[1] if len(sys.argv) > 1 else "/usr/lib/google-cloud-sdk/bin/kubectl.1.33"
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakeApiServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = [kubectl, "--server", f"http://127.0.0.1:{server.server_address[1]}"]
    with tempfile.TemporaryDirectory() as tmp:
        kubeconfig = os.path.join(tmp, "kubeconfig")
        binfile = os.path.join(tmp, "bin.dat")
        with open(binfile, "wb") as f:
            f.write(b"\x00\x01\x02\xff\xfe")
        env = dict(os.environ, KUBECONFIG=kubeconfig)
        for name, args in FIXTURES:
            args = [a.replace("{bin}", binfile) for a in args]
            printable = args[0] == "create" and args[1] != "token"
            extra = ["--dry-run=server"] if printable else []
            captured.clear()
            subprocess.run(base + args[:args.index("--")] + extra + args[args.index("--"):]
                           if "--" in args else base + args + extra, env=env, capture_output=True)
            if len(captured) != 1 or captured[0][0] != "application/vnd.kubernetes.protobuf":
                sys.exit(f"{name}: expected one protobuf request, got {[c[0] for c in captured]}")
            with open(os.path.join(HERE, name + ".pb.hex"), "w") as f:
                f.write(binascii.hexlify(captured[0][1]).decode() + "\n")
            if printable:
                cmd = args[:args.index("--")] if "--" in args else args
                rest = args[args.index("--"):] if "--" in args else []
                out = subprocess.run(base + cmd + ["--dry-run=client", "-o", "json"] + rest, env=env,
                                     capture_output=True, check=True).stdout
                with open(os.path.join(HERE, name + ".json"), "wb") as f:
                    f.write(out)
            print("captured", name)
    server.shutdown()


if __name__ == "__main__":
    main()
