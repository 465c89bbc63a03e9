"""Authentication at the HTTPS listener.

Like k3s (kube-apiserver with --anonymous-auth=false): a request with no
credentials is 401 everywhere except the health endpoints, a client cert must
chain to the cluster's client CA, the server token works as a bearer token,
and anything else is 401 with an `Unauthorized` Status.
"""
import glob
import json
import os
import subprocess

import pytest
import requests

from rawhttps import Raw, expect_status

PROTECTED = [
    "/api",
    "/apis",
    "/api/v1",
    "/api/v1/namespaces",
    "/api/v1/namespaces/default/configmaps",
    "/apis/apps/v1/deployments",
    "/version",
    "/openapi/v2",
    "/openapi/v3",
    "/metrics",
]


@pytest.fixture(scope="module")
def anon(server):
    return Raw(server, auth=None)


@pytest.mark.parametrize("path", PROTECTED)
def test_no_credentials_is_401(anon, path):
    r = anon.get(path)
    doc = expect_status(r, 401, "Unauthorized")
    assert doc["message"] == "Unauthorized", doc


def test_no_credentials_write_is_401(anon):
    r = anon.post("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "anon-ns"}})
    expect_status(r, 401, "Unauthorized")
    r = anon.delete("/api/v1/namespaces/default")
    expect_status(r, 401, "Unauthorized")


def test_health_endpoints_are_public(anon):
    for path in ("/readyz", "/livez", "/healthz"):
        r = anon.get(path)
        assert r.status_code == 200, (path, r.status_code, r.text)


def test_server_token_as_bearer_is_accepted(server):
    r = Raw(server, token=server.token()).get("/api/v1/namespaces")
    assert r.status_code == 200, r.text
    assert r.json()["kind"] == "NamespaceList"
    # The secret part alone (what `--token <secret>` users pass) works too.
    secret = server.token().rsplit("::server:", 1)[-1]
    r = Raw(server, token=secret).get("/api/v1/namespaces")
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(
    "token",
    ["wrong", "K10deadbeef::server:wrong", "", " ", "x" * 10000, "\u00e9t\u00e9"],
    ids=["wrong", "wrong-full-form", "empty", "space", "huge", "non-ascii"],
)
def test_wrong_bearer_token_is_401(server, token):
    raw = Raw(server, auth=None)
    hdr = f"Bearer {token}".encode("utf-8")
    r = raw.get("/api/v1/namespaces", headers={"Authorization": hdr})
    expect_status(r, 401, "Unauthorized")


def test_token_prefix_of_real_token_is_401(server):
    tok = server.token()
    for t in (tok[:-1], tok + "x", tok.upper() if tok.upper() != tok else tok + "A"):
        r = Raw(server, token=t).get("/api/v1/namespaces")
        expect_status(r, 401, "Unauthorized")


@pytest.mark.parametrize(
    "value",
    ["Basic YWRtaW46YWRtaW4=", "Bearer", "bearer", "Token abc", "Bearer a b c"],
)
def test_malformed_authorization_header_is_401(server, value):
    r = Raw(server, auth=None).get("/api/v1/namespaces", headers={"Authorization": value})
    expect_status(r, 401, "Unauthorized")


def openssl(*args, cwd):
    p = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    assert p.returncode == 0, f"openssl {' '.join(args)} failed:\n{p.stderr}"


@pytest.fixture(scope="module")
def foreign_certs(server):
    """A CA nobody trusts, and a client cert it signed claiming to be an admin."""
    d = os.path.join(server.tmp, "foreign-pki")
    os.makedirs(d, exist_ok=True)
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
            "-days", "1", "-subj", "/CN=evil-ca", cwd=d)
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "admin.key", "-out", "admin.csr",
            "-subj", "/O=system:masters/CN=admin", cwd=d)
    with open(os.path.join(d, "ext.cnf"), "w") as f:
        f.write("extendedKeyUsage=clientAuth\nkeyUsage=digitalSignature,keyEncipherment\n")
    openssl("x509", "-req", "-in", "admin.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "admin.crt", "-days", "1", "-extfile", "ext.cnf", cwd=d)
    # And a self-signed one claiming the real admin's name.
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", "self.key", "-out", "self.crt", "-days", "1",
            "-subj", "/O=system:masters/CN=system:admin", cwd=d)
    return {
        "foreign": (os.path.join(d, "admin.crt"), os.path.join(d, "admin.key")),
        "self-signed": (os.path.join(d, "self.crt"), os.path.join(d, "self.key")),
    }


@pytest.mark.parametrize("which", ["foreign", "self-signed"])
def test_client_cert_from_another_ca_is_rejected(server, foreign_certs, which):
    raw = Raw(server, cert=foreign_certs[which])
    try:
        r = raw.get("/api/v1/namespaces")
    except (requests.exceptions.SSLError, requests.exceptions.ConnectionError):
        return  # rejected during the TLS handshake: fine
    assert r.status_code != 200, f"a {which} client cert was accepted: {r.text[:300]}"
    expect_status(r, 401, "Unauthorized")


def test_foreign_cert_with_wrong_token_is_rejected(server, foreign_certs):
    """A foreign cert must not add an identity to a request whose token is wrong."""
    raw = Raw(server, cert=foreign_certs["foreign"], token="wrong")
    try:
        r = raw.get("/api/v1/namespaces")
    except (requests.exceptions.SSLError, requests.exceptions.ConnectionError):
        return
    expect_status(r, 401, "Unauthorized")


def test_admin_client_cert_is_accepted(server):
    r = Raw(server).get("/api/v1/namespaces")
    assert r.status_code == 200, r.text


def test_kubectl_auth_whoami_is_system_admin(kubectl_edge):
    out = kubectl_edge.run("auth", "whoami", "-o", "json").stdout
    doc = json.loads(out)
    assert doc["kind"] == "SelfSubjectReview", doc
    info = doc["status"]["userInfo"]
    assert info["username"] == "system:admin", info
    assert "system:masters" in info["groups"], info
    assert "system:authenticated" in info["groups"], info


def test_self_subject_review_with_token(server):
    body = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
    r = Raw(server, token=server.token()).post("/apis/authentication.k8s.io/v1/selfsubjectreviews", body)
    assert r.status_code == 201, r.text
    info = r.json()["status"]["userInfo"]
    assert "system:masters" in info["groups"], info
    assert "system:authenticated" in info["groups"], info


def test_self_subject_review_anonymous_is_401(anon):
    body = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
    r = anon.post("/apis/authentication.k8s.io/v1/selfsubjectreviews", body)
    expect_status(r, 401, "Unauthorized")


# ------------------------------------------- certs signed by the real client CA


def client_ca(server):
    tls = os.path.join(server.data_dir, "server", "tls")
    for crt in sorted(glob.glob(os.path.join(tls, "*client*ca*.crt"))):
        key = crt[:-4] + ".key"
        if os.path.exists(key):
            return crt, key
    return None


def sign_with_client_ca(server, cn, org=None, days=1, name="user"):
    ca = client_ca(server)
    if ca is None:
        pytest.skip(f"no client CA key found under {server.data_dir}/server/tls")
    d = os.path.join(server.tmp, "client-ca-issued")
    os.makedirs(d, exist_ok=True)
    subj = (f"/O={org}" if org else "") + f"/CN={cn}"
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subj, cwd=d)
    with open(os.path.join(d, "ext.cnf"), "w") as f:
        f.write("extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature\n")
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", ca[0], "-CAkey", ca[1], "-CAcreateserial",
            "-out", f"{name}.crt", "-days", str(days), "-extfile", "ext.cnf", cwd=d)
    return os.path.join(d, f"{name}.crt"), os.path.join(d, f"{name}.key")


def test_any_authenticated_user_is_allowed_until_rbac(server):
    """The control-plane milestone authenticates but does not authorize yet:
    any identity proven by the client CA may act (RBAC objects are stored,
    enforcement comes with a later milestone)."""
    cert = sign_with_client_ca(server, "bob", name="bob")
    raw = Raw(server, cert=cert)
    assert raw.get("/api/v1/namespaces").status_code == 200
    r = raw.post("/apis/authentication.k8s.io/v1/selfsubjectreviews",
                 {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})
    assert r.status_code == 201, r.text
    assert r.json()["status"]["userInfo"]["username"] == "bob"
    assert "system:authenticated" in r.json()["status"]["userInfo"]["groups"]
    assert raw.get("/api").status_code == 200
    assert raw.get("/version").status_code == 200


def test_cert_with_masters_group_from_client_ca_is_admin(server):
    cert = sign_with_client_ca(server, "alice", org="system:masters", name="alice")
    r = Raw(server, cert=cert).get("/api/v1/namespaces")
    assert r.status_code == 200, r.text
