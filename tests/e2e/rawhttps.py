"""Raw HTTPS access to a test server, bypassing every client library.

The credentials come from the admin kubeconfig the server wrote (embedded
`*-data` fields), extracted once into files next to it so `requests` can use
them. Used by the bad-input, auth and crash tests, which need to send bytes
no well-behaved client would send, or to control exactly what is sent.
"""
import base64
import json
import os
import threading

import requests
import urllib3
import yaml

urllib3.disable_warnings()


def kubeconfig_credentials(server):
    """Write the CA, client cert and key from `server.kubeconfig` to files.

    Returns (ca_path, cert_path, key_path). Rewritten on every call, since a
    restarted server keeps the same credentials but a test may have a new tmp.
    """
    with open(server.kubeconfig) as f:
        cfg = yaml.safe_load(f)
    cluster = cfg["clusters"][0]["cluster"]
    user = cfg["users"][0]["user"]
    out = {}
    for name, key in (
        ("ca.crt", cluster["certificate-authority-data"]),
        ("admin.crt", user["client-certificate-data"]),
        ("admin.key", user["client-key-data"]),
    ):
        path = os.path.join(server.tmp, "raw-" + name)
        # Write-then-rename: concurrent callers (writer threads) never see a torn file.
        tmp = f"{path}.{os.getpid()}.{threading.get_ident()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(base64.b64decode(key))
        os.replace(tmp, path)
        out[name] = path
    return out["ca.crt"], out["admin.crt"], out["admin.key"]


class Raw:
    """A `requests.Session` against `server.url`.

    `auth="cert"` (default) presents the admin client certificate; `auth=None`
    presents nothing; `token="..."` sends a bearer token (no client cert).
    TLS verification uses the cluster CA unless `verify=False`.
    """

    def __init__(self, server, auth="cert", token=None, cert=None, verify=True):
        self.server = server
        ca, crt, key = kubeconfig_credentials(server)
        self.s = requests.Session()
        # Ignore REQUESTS_CA_BUNDLE / proxies from the environment: with
        # trust_env, requests lets REQUESTS_CA_BUNDLE override session.verify.
        self.s.trust_env = False
        self.s.verify = ca if verify else False
        if cert is not None:
            self.s.cert = cert
        elif auth == "cert" and token is None:
            self.s.cert = (crt, key)
        if token is not None:
            self.s.headers["Authorization"] = f"Bearer {token}"

    def request(self, method, path, body=None, content_type=None, headers=None, params=None, timeout=30):
        h = dict(headers or {})
        data = body
        if isinstance(body, (dict, list)):
            data = json.dumps(body).encode()
            h.setdefault("Content-Type", "application/json")
        elif isinstance(body, str):
            data = body.encode()
        if content_type is not None:
            h["Content-Type"] = content_type
        return self.s.request(
            method, self.server.url + path, data=data, headers=h, params=params, timeout=timeout
        )

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.request("POST", path, body=body, **kw)

    def put(self, path, body=None, **kw):
        return self.request("PUT", path, body=body, **kw)

    def patch(self, path, body=None, **kw):
        return self.request("PATCH", path, body=body, **kw)

    def delete(self, path, body=None, **kw):
        return self.request("DELETE", path, body=body, **kw)


def status_of(resp):
    """The response body parsed as a meta/v1 Status (AssertionError if it is not one)."""
    try:
        doc = resp.json()
    except ValueError:
        raise AssertionError(
            f"{resp.request.method} {resp.request.url} -> {resp.status_code}: body is not JSON: {resp.text[:500]!r}"
        )
    assert doc.get("kind") == "Status", f"not a Status: {doc}"
    assert doc.get("apiVersion") == "v1", f"Status without apiVersion v1: {doc}"
    return doc


def expect_status(resp, code, reason=None):
    """Assert an error response: HTTP `code`, a Status body with the same `code` and `reason`."""
    where = f"{resp.request.method} {resp.request.url}"
    assert resp.status_code == code, f"{where}: expected {code}, got {resp.status_code}: {resp.text[:800]}"
    doc = status_of(resp)
    assert doc.get("status") == "Failure", f"{where}: {doc}"
    assert doc.get("code") == code, f"{where}: Status.code {doc.get('code')} != {code}: {doc}"
    if reason is not None:
        assert doc.get("reason") == reason, f"{where}: reason {doc.get('reason')!r} != {reason!r}: {doc}"
    return doc
