"""Service accounts and tokens: the per-namespace `default` ServiceAccount and
`kube-root-ca.crt` ConfigMap, the TokenRequest API (`kubectl create token`)
and bearer authentication with the issued tokens; plus the HPA controller's
behaviour without a metrics API.
"""
import base64
import json
import ssl
import time
import urllib.error
import urllib.request

import pytest

from conftest import OLDEST_NEWEST, Kubectl, wait_for


def get(server, path, token):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    req = urllib.request.Request(server.url + path, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def claims(token):
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def test_namespace_defaults(server, kubectl_edge, namespace):
    k = kubectl_edge
    wait_for(lambda: k.run("get", "sa", "default", "-n", namespace, check=False).returncode == 0,
             what="default service account")
    cm = wait_for(lambda: k.run("get", "cm", "kube-root-ca.crt", "-n", namespace, "-o", "json",
                                check=False).stdout, what="root CA configmap")
    ca = json.loads(cm)["data"]["ca.crt"]
    with open(server.kubeconfig) as f:
        assert "certificate-authority-data" in f.read()
    assert ca.startswith("-----BEGIN CERTIFICATE-----")
    # deleted objects come back
    k.run("delete", "cm", "kube-root-ca.crt", "-n", namespace)
    wait_for(lambda: k.run("get", "cm", "kube-root-ca.crt", "-n", namespace,
                           check=False).returncode == 0, what="root CA configmap recreated")


@pytest.mark.parametrize("binary", OLDEST_NEWEST, ids=lambda p: p.rsplit("kubectl.", 1)[-1])
def test_create_token_authenticates(server, namespace, binary):
    k = Kubectl(binary, server)
    k.run("create", "serviceaccount", "robot", "-n", namespace)
    token = k.run("create", "token", "robot", "-n", namespace, "--duration=1h").stdout.strip()
    c = claims(token)
    assert c["sub"] == f"system:serviceaccount:{namespace}:robot"
    assert c["exp"] - c["iat"] == 3600
    status, body = get(server, f"/api/v1/namespaces/{namespace}/configmaps", token)
    assert status == 200, body
    review = json.dumps({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                         "spec": {"token": token}})
    out = json.loads(k.run("create", "-f", "-", "-o", "json", input=review).stdout)
    assert out["status"]["authenticated"] is True
    assert out["status"]["user"]["username"] == f"system:serviceaccount:{namespace}:robot"
    assert f"system:serviceaccounts:{namespace}" in out["status"]["user"]["groups"]

    # too short a duration is rejected with the upstream message
    p = k.run("create", "token", "robot", "-n", namespace, "--duration=1m", check=False)
    assert p.returncode != 0
    assert "may not specify a duration less than 10 minutes" in p.stderr
    # no such service account
    p = k.run("create", "token", "nobody", "-n", namespace, check=False)
    assert p.returncode != 0 and 'serviceaccounts "nobody" not found' in p.stderr

    # deleting the service account invalidates its tokens
    k.run("delete", "serviceaccount", "robot", "-n", namespace)
    status, body = get(server, f"/api/v1/namespaces/{namespace}/configmaps", token)
    assert status == 401, body


def test_pod_bound_token(server, kubectl_edge, namespace):
    k = kubectl_edge
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": namespace},
           "spec": {"nodeName": "nowhere", "containers": [{"name": "c", "image": "busybox"}]}}
    k.run("apply", "-f", "-", input=json.dumps(pod))
    wait_for(lambda: k.run("get", "sa", "default", "-n", namespace, check=False).returncode == 0,
             what="default service account")
    token = k.run("create", "token", "default", "-n", namespace,
                  "--bound-object-kind=Pod", "--bound-object-name=p").stdout.strip()
    assert claims(token)["kubernetes.io"]["pod"]["name"] == "p"
    assert get(server, "/api", token)[0] == 200
    k.run("delete", "pod", "p", "-n", namespace, "--grace-period=0", "--force")
    wait_for(lambda: get(server, "/api", token)[0] == 401, what="token of a deleted pod rejected")


def test_hpa_without_metrics(server, kubectl_edge, namespace):
    k = kubectl_edge
    k.run("create", "deployment", "h", "--image=busybox", "--replicas=1", "-n", namespace)
    k.run("autoscale", "deployment", "h", "--min=2", "--max=4", "--cpu-percent=50", "-n", namespace)
    wait_for(lambda: k.json("get", "deployment", "h", "-n", namespace)["spec"]["replicas"] == 2,
             what="scaled up to minReplicas")

    def conditions():
        st = k.json("get", "hpa.v2.autoscaling", "h", "-n", namespace).get("status") or {}
        return {c["type"]: c for c in st.get("conditions") or []}

    conds = wait_for(lambda: conditions().get("ScalingActive") and conditions(), what="conditions")
    assert conds["AbleToScale"]["status"] == "True"
    assert conds["ScalingActive"]["status"] == "False"
    assert conds["ScalingActive"]["reason"] == "FailedGetResourceMetric"
    events = k.run("get", "events", "-n", namespace, "--field-selector",
                   "involvedObject.kind=HorizontalPodAutoscaler").stdout
    assert "SuccessfulRescale" in events
