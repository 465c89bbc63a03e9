"""Hostile and malformed requests over raw HTTPS with the admin client cert.

House rule: a malformed request is a 4xx `Status`, never a 500 or a panic.
Every case first asserts `status < 500`, then the upstream code and reason.
The last tests check the server is still healthy and never logged a panic.

Where upstream kube-apiserver itself answers 500 (a DELETE body that decodes
to something other than DeleteOptions), skiff's rule is stricter: 400.
"""
import json
import os
import random

import pytest

from rawhttps import Raw, expect_status, status_of

CM = "/api/v1/namespaces/{ns}/configmaps"
CM_ITEM = "/api/v1/namespaces/{ns}/configmaps/existing"
DEPLOY = "/apis/apps/v1/namespaces/{ns}/deployments"
PODS = "/api/v1/namespaces/{ns}/pods"
PB = "application/vnd.kubernetes.protobuf"
PB_MAGIC = b"k8s\x00"


# ------------------------------------------------------------ protobuf bits


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def ld(field, payload):
    """A length-delimited protobuf field."""
    if isinstance(payload, str):
        payload = payload.encode()
    return varint(field << 3 | 2) + varint(len(payload)) + payload


def pb_unknown(api_version, kind, raw):
    """runtime.Unknown envelope: magic, TypeMeta, raw, contentEncoding, contentType."""
    type_meta = ld(1, api_version) + ld(2, kind)
    return PB_MAGIC + ld(1, type_meta) + ld(2, raw) + ld(3, "") + ld(4, "")


def pb_configmap(name, data):
    meta = ld(1, name)
    body = ld(1, meta)
    for k, v in data.items():
        body += ld(2, ld(1, k) + ld(2, v))
    return pb_unknown("v1", "ConfigMap", body)


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def raw(server):
    return Raw(server)


@pytest.fixture(scope="module")
def ns(raw):
    name = f"bad-{os.getpid() % 10000}"
    r = raw.post("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    assert r.status_code == 201, r.text
    r = raw.post(
        CM.format(ns=name),
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "existing"}, "data": {"a": "1"}},
    )
    assert r.status_code == 201, r.text
    return name


def no_5xx(r):
    assert r.status_code < 500, (
        f"{r.request.method} {r.request.url} -> {r.status_code} (server error for a client mistake): {r.text[:800]}"
    )
    return r


def cm_body(name="x", **extra):
    b = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}}
    b.update(extra)
    return b


def rand_bytes(n, seed):
    rng = random.Random(seed)
    return bytes(rng.getrandbits(8) for _ in range(n))


# ------------------------------------------------------- malformed bodies

MALFORMED = [
    ("json-truncated", b'{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":', "application/json"),
    ("json-garbage", b"this is not json", "application/json"),
    ("json-empty", b"", "application/json"),
    ("json-array", b"[]", "application/json"),
    ("json-string", b'"a string"', "application/json"),
    ("json-null", b"null", "application/json"),
    ("json-bad-utf8", b'{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"\xff\xfe"}}', "application/json"),
    ("json-trailing", b'{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"t"}} {"x":1}', "application/json"),
    ("no-content-type-garbage", b"{{{{", None),
    ("yaml-unclosed", b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: [unclosed\n", "application/yaml"),
    ("yaml-tabs", b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n\tname: x\n", "application/yaml"),
    ("yaml-scalar", b"just a string\n", "application/yaml"),
    ("yaml-anchor-bomb", b"a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
     b"c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
     b"e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]\n"
     b"g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]\nh: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]\n"
     b"i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h]\n", "application/yaml"),
    ("pb-random", rand_bytes(512, 1), PB),
    ("pb-bad-magic", b"k9s\x00" + rand_bytes(64, 2), PB),
    ("pb-magic-then-garbage", PB_MAGIC + rand_bytes(256, 3), PB),
    ("pb-truncated-length", PB_MAGIC + b"\x0a\xff\xff\xff\x0f", PB),
    ("pb-raw-garbage", pb_unknown("v1", "ConfigMap", rand_bytes(128, 4)), PB),
    ("pb-wrong-kind", pb_unknown("v1", "Pod", b""), PB),
    ("pb-empty", b"", PB),
]


@pytest.mark.parametrize("body,ctype", [(b, c) for _, b, c in MALFORMED], ids=[i for i, _, _ in MALFORMED])
def test_malformed_body_is_400(raw, ns, body, ctype):
    r = no_5xx(raw.post(CM.format(ns=ns), body, content_type=ctype))
    expect_status(r, 400, "BadRequest")


def test_protobuf_empty_envelope_is_4xx(raw, ns):
    # Upstream fills the missing TypeMeta from the URL and decodes an empty
    # ConfigMap, which then fails validation (422); a 400 is also fine.
    r = no_5xx(raw.post(CM.format(ns=ns), PB_MAGIC, content_type=PB))
    assert r.status_code in (400, 422), r.text
    status_of(r)


def test_protobuf_create_works(raw, ns):
    """Sanity for the protobuf cases above: a well-formed protobuf body is accepted."""
    r = no_5xx(raw.post(CM.format(ns=ns), pb_configmap("from-proto", {"k": "v"}), content_type=PB))
    assert r.status_code == 201, r.text
    got = raw.get(CM.format(ns=ns) + "/from-proto").json()
    assert got["data"] == {"k": "v"}


def test_deeply_nested_json_is_400_not_a_crash(raw, ns):
    deep = "[" * 100000 + "]" * 100000
    body = '{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"deep"},"extra":' + deep + "}"
    r = no_5xx(raw.post(CM.format(ns=ns), body, content_type="application/json"))
    assert 400 <= r.status_code < 500
    assert r.status_code != 201
    status_of(r)


def test_deeply_nested_yaml_is_400_not_a_crash(raw, ns):
    deep = "[" * 50000 + "]" * 50000
    body = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: deepy}\nextra: " + deep + "\n"
    r = no_5xx(raw.post(CM.format(ns=ns), body, content_type="application/yaml"))
    assert 400 <= r.status_code < 500
    status_of(r)


# -------------------------------------------------------------- wrong types

WRONG_TYPES = [
    ("data-string", cm_body(data="notamap")),
    ("data-value-int", cm_body(data={"a": 1})),
    ("name-int", {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": 123}}),
    ("metadata-list", {"apiVersion": "v1", "kind": "ConfigMap", "metadata": []}),
    ("labels-list", {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "labels": ["a"]}}),
    ("binarydata-not-base64", cm_body(binaryData={"a": "!!!not base64!!!"})),
    ("kind-mismatch", {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x"}}),
    ("apiversion-mismatch", {"apiVersion": "apps/v1", "kind": "ConfigMap", "metadata": {"name": "x"}}),
    ("namespace-mismatch", {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "namespace": "other"}}),
]


@pytest.mark.parametrize("body", [b for _, b in WRONG_TYPES], ids=[i for i, _ in WRONG_TYPES])
def test_wrong_types_are_400(raw, ns, body):
    r = no_5xx(raw.post(CM.format(ns=ns), body))
    expect_status(r, 400, "BadRequest")


def test_wrong_types_in_deployment_are_400(raw, ns):
    body = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "d"},
        "spec": {"replicas": "three", "selector": {"matchLabels": {"a": "b"}}, "template": {}},
    }
    r = no_5xx(raw.post(DEPLOY.format(ns=ns), body))
    expect_status(r, 400, "BadRequest")


# ---------------------------------------------------------- field validation


def deploy_body(name, **spec_extra):
    spec = {
        "replicas": 1,
        "selector": {"matchLabels": {"app": name}},
        "template": {
            "metadata": {"labels": {"app": name}},
            "spec": {"containers": [{"name": "c", "image": "nginx"}]},
        },
    }
    spec.update(spec_extra)
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name}, "spec": spec}


def test_unknown_field_strict_is_400(raw, ns):
    r = no_5xx(raw.post(DEPLOY.format(ns=ns), deploy_body("strict", foo="bar"), params={"fieldValidation": "Strict"}))
    doc = expect_status(r, 400, "BadRequest")
    assert 'unknown field "spec.foo"' in doc["message"], doc
    assert no_5xx(raw.get(DEPLOY.format(ns=ns) + "/strict")).status_code == 404


def test_duplicate_field_strict_is_400(raw, ns):
    body = b'{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"dup","name":"dup2"}}'
    r = no_5xx(raw.post(CM.format(ns=ns), body, content_type="application/json", params={"fieldValidation": "Strict"}))
    doc = expect_status(r, 400, "BadRequest")
    assert "duplicate field" in doc["message"] and "name" in doc["message"], doc
    assert raw.get(CM.format(ns=ns) + "/dup2").status_code == 404


def test_unknown_field_warn_is_201_with_warning(raw, ns):
    r = no_5xx(raw.post(DEPLOY.format(ns=ns), deploy_body("warned", foo="bar"), params={"fieldValidation": "Warn"}))
    assert r.status_code == 201, r.text
    warning = r.headers.get("Warning", "")
    assert warning.startswith("299 "), r.headers
    assert 'unknown field \\"spec.foo\\"' in warning or 'unknown field "spec.foo"' in warning, warning
    assert "foo" not in r.json()["spec"]


def test_unknown_field_ignore_is_201_without_warning(raw, ns):
    r = no_5xx(raw.post(DEPLOY.format(ns=ns), deploy_body("ignored", foo="bar"), params={"fieldValidation": "Ignore"}))
    assert r.status_code == 201, r.text
    assert "spec.foo" not in r.headers.get("Warning", "")


def test_bad_create_options_are_422(raw, ns):
    # Upstream: ValidateCreateOptions -> Invalid, kind CreateOptions.meta.k8s.io.
    for params in ({"fieldValidation": "Sometimes"}, {"dryRun": "Some"}, {"fieldManager": "x" * 200}):
        r = no_5xx(raw.post(CM.format(ns=ns), cm_body("fv"), params=params))
        expect_status(r, 422, "Invalid")
    assert raw.get(CM.format(ns=ns) + "/fv").status_code == 404


# ------------------------------------------------------------------- sizes


def test_oversized_body_is_413(raw, ns):
    body = json.dumps(cm_body("huge", data={"blob": "x" * (4 * 1024 * 1024)}))
    r = no_5xx(raw.post(CM.format(ns=ns), body, content_type="application/json", timeout=60))
    expect_status(r, 413, "RequestEntityTooLarge")


def test_oversized_patch_is_413(raw, ns):
    body = json.dumps({"data": {"blob": "x" * (4 * 1024 * 1024)}})
    r = no_5xx(raw.patch(CM_ITEM.format(ns=ns), body, content_type="application/merge-patch+json", timeout=60))
    expect_status(r, 413, "RequestEntityTooLarge")


def test_body_under_3mib_is_not_413(raw, ns):
    # Upstream's request body limit is 3 MiB: a 2.5 MiB ConfigMap gets past
    # it and fails validation (data over 1 MiB) instead.
    r = no_5xx(raw.post(CM.format(ns=ns), cm_body("big25", data={"blob": "x" * (2560 * 1024)}), timeout=60))
    expect_status(r, 422, "Invalid")


def test_configmap_over_1mib_is_422(raw, ns):
    r = no_5xx(raw.post(CM.format(ns=ns), cm_body("big", data={"blob": "x" * (1024 * 1024 + 10)}), timeout=60))
    expect_status(r, 422, "Invalid")


# --------------------------------------------------------------- bad paths


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/foos",
        "/api/v1/namespaces/{ns}/foos",
        "/api/v1/namespaces/{ns}/foos/x",
        "/api/v2/namespaces",
        "/apis/nope/v1/things",
        "/apis/apps/v9/deployments",
        "/apis/apps/v1/nothings",
    ],
)
def test_unknown_resource_is_404_status(raw, ns, path):
    r = no_5xx(raw.get(path.format(ns=ns)))
    expect_status(r, 404, "NotFound")


@pytest.mark.parametrize("path", ["/totally/unknown", "/api/v1/namespaces/{ns}/configmaps/existing/nosuchsub"])
def test_other_unknown_paths_are_404(raw, ns, path):
    r = no_5xx(raw.get(path.format(ns=ns)))
    assert r.status_code == 404, r.text


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/namespaces/{ns}/configmaps/..%2F..%2Fsecrets",
        "/api/v1/namespaces/{ns}/configmaps/%00",
        "/api/v1/namespaces/{ns}/configmaps/" + "a" * 10000,
        "/api/v1/namespaces/{ns}/configmaps/%ZZ",
    ],
    ids=["traversal", "nul", "long-name", "bad-escape"],
)
def test_odd_names_in_path_are_4xx(raw, ns, path):
    r = no_5xx(raw.get(path.format(ns=ns)))
    assert 400 <= r.status_code < 500, r.text


def test_create_in_missing_namespace_is_404(raw):
    r = no_5xx(raw.post("/api/v1/namespaces/no-such-ns-zz/configmaps", cm_body("x")))
    doc = expect_status(r, 404, "NotFound")
    assert doc["message"] == 'namespaces "no-such-ns-zz" not found', doc


# ----------------------------------------------------------- query params


@pytest.mark.parametrize(
    "params",
    [
        {"labelSelector": "a b"},
        {"labelSelector": "app in ("},
        {"labelSelector": "=x"},
        {"labelSelector": "a=b,,"},
        {"labelSelector": "-bad!=x"},
        {"labelSelector": "a=" + "v" * 100},
    ],
    ids=["space", "unclosed-in", "no-key", "double-comma", "bad-key", "value-too-long"],
)
def test_bad_label_selector_is_400(raw, ns, params):
    r = no_5xx(raw.get(CM.format(ns=ns), params=params))
    expect_status(r, 400, "BadRequest")


def test_bad_field_selector_unsupported_label_is_400(raw, ns):
    r = no_5xx(raw.get(PODS.format(ns=ns), params={"fieldSelector": "spec.foo=x"}))
    doc = expect_status(r, 400, "BadRequest")
    assert "field label not supported: spec.foo" in doc["message"], doc
    r = no_5xx(raw.get(CM.format(ns=ns), params={"fieldSelector": "spec.foo=x"}))
    doc = expect_status(r, 400, "BadRequest")
    assert "spec.foo" in doc["message"], doc


@pytest.mark.parametrize("sel", ["metadata.name", "metadata.name in (a)", "=x"])
def test_bad_field_selector_syntax_is_400(raw, ns, sel):
    r = no_5xx(raw.get(CM.format(ns=ns), params={"fieldSelector": sel}))
    expect_status(r, 400, "BadRequest")


@pytest.mark.parametrize(
    "path,params",
    [
        (CM, {"resourceVersion": "abc"}),
        (CM, {"resourceVersion": "-5"}),
        (CM_ITEM, {"resourceVersion": "abc"}),
        (CM, {"watch": "1", "resourceVersion": "abc"}),
        (CM, {"limit": "abc"}),
        (CM, {"watch": "maybe"}),
        (CM, {"timeoutSeconds": "soon"}),
        (CM, {"continue": "not-a-valid-token"}),
        (CM, {"continue": "eyJ2IjoibWV0YS5rOHMuaW8vdjEiLCJydiI6LTEsInN0YXJ0IjoiL2ZvbyJ9"}),
        (CM, {"continue": "%%%%"}),
    ],
    ids=[
        "rv-abc", "rv-negative", "get-rv-abc", "watch-rv-abc",
        "limit-abc", "watch-maybe", "timeout-soon", "continue-garbage", "continue-bad-rv", "continue-not-base64",
    ],
)
def test_bad_query_params_are_400(raw, ns, path, params):
    r = no_5xx(raw.get(path.format(ns=ns), params=params, timeout=15))
    expect_status(r, 400, "BadRequest")


@pytest.mark.parametrize(
    "params",
    [
        {"resourceVersionMatch": "Exact"},
        {"resourceVersionMatch": "Bogus", "resourceVersion": "1"},
        {"resourceVersionMatch": "NotOlderThan", "resourceVersion": "1", "continue": "abc"},
    ],
    ids=["rvmatch-without-rv", "rvmatch-bogus", "rvmatch-with-continue"],
)
def test_invalid_list_options_are_422(raw, ns, params):
    # Upstream: ValidateListOptions -> Invalid, kind ListOptions.
    r = no_5xx(raw.get(CM.format(ns=ns), params=params))
    expect_status(r, 422, "Invalid")


# ----------------------------------------------------------------- patches


def test_json_patch_not_a_list_is_400(raw, ns):
    r = no_5xx(raw.patch(CM_ITEM.format(ns=ns), {"op": "add", "path": "/data/b", "value": "2"},
                         content_type="application/json-patch+json"))
    expect_status(r, 400, "BadRequest")


def test_json_patch_bad_op_is_4xx(raw, ns):
    r = no_5xx(raw.patch(CM_ITEM.format(ns=ns), [{"op": "frobnicate", "path": "/data/a"}],
                         content_type="application/json-patch+json"))
    assert r.status_code in (400, 422), r.text
    status_of(r)


def test_json_patch_missing_path_is_422(raw, ns):
    r = no_5xx(raw.patch(CM_ITEM.format(ns=ns), [{"op": "replace", "path": "/data/missing", "value": "x"}],
                         content_type="application/json-patch+json"))
    expect_status(r, 422, "Invalid")


def test_json_patch_failed_test_op_is_422(raw, ns):
    r = no_5xx(raw.patch(CM_ITEM.format(ns=ns), [{"op": "test", "path": "/data/a", "value": "nope"}],
                         content_type="application/json-patch+json"))
    expect_status(r, 422, "Invalid")


def test_json_patch_to_wrong_type_is_4xx(raw, ns):
    r = no_5xx(raw.patch(CM_ITEM.format(ns=ns), [{"op": "replace", "path": "/data", "value": "str"}],
                         content_type="application/json-patch+json"))
    assert r.status_code in (400, 422), r.text
    status_of(r)
    assert raw.get(CM_ITEM.format(ns=ns)).json()["data"] == {"a": "1"}


@pytest.mark.parametrize(
    "ctype", ["application/merge-patch+json", "application/strategic-merge-patch+json", "application/json-patch+json"]
)
def test_patch_body_not_json_is_400(raw, ns, ctype):
    r = no_5xx(raw.patch(CM_ITEM.format(ns=ns), b"{not json", content_type=ctype))
    expect_status(r, 400, "BadRequest")


def test_merge_patch_to_wrong_type_is_4xx(raw, ns):
    r = no_5xx(raw.patch(CM_ITEM.format(ns=ns), {"data": "str"}, content_type="application/merge-patch+json"))
    assert r.status_code in (400, 422), r.text
    status_of(r)
    r = no_5xx(raw.patch(CM_ITEM.format(ns=ns), {"metadata": {"labels": ["x"]}},
                         content_type="application/strategic-merge-patch+json"))
    assert r.status_code in (400, 422), r.text
    status_of(r)
    assert raw.get(CM_ITEM.format(ns=ns)).json()["data"] == {"a": "1"}


def test_smp_bad_directive_is_4xx(raw, ns):
    r = no_5xx(raw.patch(CM_ITEM.format(ns=ns), {"data": {"$patch": "explode"}},
                         content_type="application/strategic-merge-patch+json"))
    assert 400 <= r.status_code < 500, r.text
    status_of(r)


@pytest.mark.parametrize("ctype", ["application/json", "text/plain", "application/xml", None])
def test_patch_unknown_content_type_is_415(raw, ns, ctype):
    r = no_5xx(raw.patch(CM_ITEM.format(ns=ns), b'{"data":{"b":"2"}}', content_type=ctype))
    expect_status(r, 415, "UnsupportedMediaType")


def test_apply_patch_without_field_manager_is_4xx(raw, ns):
    r = no_5xx(raw.patch(CM_ITEM.format(ns=ns), cm_body("existing"), content_type="application/apply-patch+yaml"))
    assert r.status_code in (400, 422), r.text
    status_of(r)


def test_patch_missing_object_is_404(raw, ns):
    r = no_5xx(raw.patch(CM.format(ns=ns) + "/missing", {"data": {"a": "b"}}, content_type="application/merge-patch+json"))
    expect_status(r, 404, "NotFound")


def test_post_unknown_content_type_is_415(raw, ns):
    r = no_5xx(raw.post(CM.format(ns=ns), b"name=x", content_type="application/x-www-form-urlencoded"))
    expect_status(r, 415, "UnsupportedMediaType")


def test_unacceptable_accept_is_406(raw, ns):
    r = no_5xx(raw.get(CM.format(ns=ns), headers={"Accept": "application/xml"}))
    expect_status(r, 406, "NotAcceptable")


# ------------------------------------------------------------------- names


@pytest.mark.parametrize(
    "name",
    ["Bad_Name", "UPPER", "-leading", "trailing-", "a" * 254, "a..b", "sp ace", "x/y"],
    ids=["underscore", "upper", "leading-dash", "trailing-dash", "too-long", "double-dot", "space", "slash"],
)
def test_invalid_names_are_422(raw, ns, name):
    r = no_5xx(raw.post(CM.format(ns=ns), cm_body(name)))
    doc = expect_status(r, 422, "Invalid")
    assert any(c.get("field") == "metadata.name" for c in doc["details"].get("causes", [])), doc


def test_missing_name_is_422(raw, ns):
    r = no_5xx(raw.post(CM.format(ns=ns), {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}}))
    doc = expect_status(r, 422, "Invalid")
    assert "name or generateName is required" in doc["message"], doc


def test_invalid_namespace_name_is_422(raw):
    r = no_5xx(raw.post("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "Bad.NS"}}))
    expect_status(r, 422, "Invalid")


def test_invalid_label_is_422(raw, ns):
    r = no_5xx(raw.post(CM.format(ns=ns), cm_body("lbl", metadata={"name": "lbl", "labels": {"bad key!": "v"}})))
    expect_status(r, 422, "Invalid")


def test_name_mismatch_on_update_is_400(raw, ns):
    cur = raw.get(CM_ITEM.format(ns=ns)).json()
    cur["metadata"]["name"] = "other"
    r = no_5xx(raw.put(CM_ITEM.format(ns=ns), cur))
    expect_status(r, 400, "BadRequest")


# ------------------------------------------------------------------ delete


@pytest.mark.parametrize(
    "body,ctype",
    [
        (b"not json at all", "application/json"),
        (json.dumps(cm_body("x")).encode(), "application/json"),
        (b'{"kind":"DeleteOptions","apiVersion":"v1","propagationPolicy":"Sometimes"}', "application/json"),
        (b'{"kind":"DeleteOptions","apiVersion":"v1","gracePeriodSeconds":"soon"}', "application/json"),
        (b"[1,2,3]", "application/json"),
    ],
    ids=["garbage", "configmap-body", "bad-propagation", "grace-not-int", "array"],
)
def test_bad_delete_body_is_400(raw, ns, body, ctype):
    # A fresh victim each time so a wrongly accepted delete cannot hide the next case.
    victim = f"victim-{abs(hash(body)) % 100000}"
    raw.post(CM.format(ns=ns), cm_body(victim))
    r = no_5xx(raw.delete(CM.format(ns=ns) + "/" + victim, body, content_type=ctype))
    assert r.status_code in (400, 422), r.text
    status_of(r)
    assert raw.get(CM.format(ns=ns) + "/" + victim).status_code == 200, "a rejected delete deleted the object"


def test_bad_propagation_policy_query_is_4xx(raw, ns):
    raw.post(CM.format(ns=ns), cm_body("victim-q"))
    r = no_5xx(raw.delete(CM.format(ns=ns) + "/victim-q", params={"propagationPolicy": "Sometimes"}))
    assert r.status_code in (400, 422), r.text
    status_of(r)


# --------------------------------------------------------- wrong methods


@pytest.mark.parametrize(
    "method,path",
    [
        ("POST", CM_ITEM),
        ("PUT", CM),
        ("PATCH", CM),
        ("POST", "/api/v1/namespaces/{ns}/configmaps/existing/status"),
        ("DELETE", "/api/v1/componentstatuses/x"),
        ("POST", "/version"),
    ],
    ids=["post-item", "put-collection", "patch-collection", "post-nosub", "delete-readonly", "post-version"],
)
def test_method_not_allowed_is_405(raw, ns, method, path):
    r = no_5xx(raw.request(method, path.format(ns=ns), body=cm_body("existing"),
                           content_type="application/merge-patch+json" if method == "PATCH" else None))
    assert r.status_code in (404, 405), r.text
    if r.status_code == 405 and path in (CM_ITEM, CM):
        expect_status(r, 405, "MethodNotAllowed")
    elif path in (CM_ITEM, CM):
        raise AssertionError(f"{method} {path}: expected 405, got {r.status_code}: {r.text[:300]}")


# ------------------------------------------------------- broken connections


def tls_socket(server):
    import socket
    import ssl

    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    from rawhttps import kubeconfig_credentials

    _, crt, key = kubeconfig_credentials(server)
    ctx.load_cert_chain(crt, key)
    return ctx.wrap_socket(socket.create_connection(("127.0.0.1", server.port), timeout=10))


def test_truncated_body_then_close(server, ns):
    for _ in range(5):
        s = tls_socket(server)
        s.sendall(
            f"POST /api/v1/namespaces/{ns}/configmaps HTTP/1.1\r\nHost: x\r\n"
            "Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{\"apiVersion\":".encode()
        )
        s.close()


def test_garbage_after_tls_handshake(server):
    s = tls_socket(server)
    s.sendall(b"\x00\x01\x02 NOT HTTP AT ALL \r\n\r\n" * 10)
    try:
        s.recv(1024)
    except OSError:
        pass
    s.close()


def test_plain_http_and_garbage_on_tls_port(server):
    import socket

    for payload in (b"GET /api HTTP/1.1\r\nHost: x\r\n\r\n", b"\x16\x03\x01\xff\xff" + b"\x00" * 100, b"\xff" * 4096):
        c = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        try:
            c.sendall(payload)
            c.recv(1024)
        except OSError:
            pass
        finally:
            c.close()


def test_bad_http_framing(server, ns):
    cases = [
        b"GET /api HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
        b"POST /api/v1/namespaces HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"GET /api HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 200000 + b"\r\n\r\n",
        b"GET " + b"/a" * 50000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        b"BREW /api HTTP/1.1\r\nHost: x\r\n\r\n",
    ]
    for payload in cases:
        s = tls_socket(server)
        try:
            s.sendall(payload)
            data = s.recv(4096)
        except OSError:
            data = b""
        finally:
            s.close()
        if data.startswith(b"HTTP/1.1 "):
            code = int(data[9:12])
            assert code < 500, (payload[:80], data[:300])


# ------------------------------------------------------------- aftermath


def test_server_still_serves(raw, ns, server):
    r = raw.get("/readyz")
    assert r.status_code == 200, r.text
    r = raw.post(CM.format(ns=ns), cm_body("after-abuse", data={"ok": "yes"}))
    assert r.status_code == 201, r.text
    assert raw.get(CM.format(ns=ns) + "/after-abuse").json()["data"] == {"ok": "yes"}
    assert raw.get(CM_ITEM.format(ns=ns)).json()["data"] == {"a": "1"}, "a rejected request changed `existing`"
    assert server.proc.poll() is None, "server exited"


def test_no_panic_in_server_log(server):
    log = server.logs()
    with open(server.log_path, "rb") as f:
        full = f.read().decode(errors="replace")
    assert "panicked" not in full, log[-3000:]
    assert "stack overflow" not in full
