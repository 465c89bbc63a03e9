#!/usr/bin/env python3
"""Generate src/api/protobuf/schema.rs, the message table skiff uses to turn
Kubernetes protobuf request bodies into JSON.

Inputs
  * the sources of the `k8s-pb` crate (prost-generated Rust for every
    Kubernetes protobuf message): message names, field tags, wire types and
    message references.  Found in ~/.cargo/registry/src/*/k8s-pb-<version>/
    unless --k8s-pb is given.  Fetch it with:
        cd /tmp && cargo new pbprobe && cd pbprobe && cargo add k8s-pb@0.9 && cargo fetch
  * src/api/protobuf/schema_facts.tsv (committed): per field, what the upstream Go
    struct tag says — the JSON name (or that the field is inlined into its
    parent), `omitempty`, and whether the Go field is a pointer.  Protobuf
    alone cannot say those, and they decide what JSON the upstream API server
    produces (a pointer `replicas: 0` is kept, a non-pointer `omitempty`
    empty string is dropped, `Volume.volumeSource` is inlined, ...).
    Refresh it from checkouts of k8s.io/api, k8s.io/apimachinery and
    k8s.io/apiextensions-apiserver at the Kubernetes minor k8s-pb was built
    from (their `protobuf:"..."` and `json:"..."` struct tags) with
        --refresh-facts DIR --go-version TAG
    (DIR holds api/, apimachinery/, apiextensions-apiserver/ at module tag TAG;
    the committed file was made from v0.35.7, matching k8s-pb 0.9.0).

Fields without a facts row (a newer k8s-pb) fall back to the lowerCamelCase
of the prost field name corrected by NAME_EXCEPTIONS, emitted when present on
the wire; they are listed as warnings.  Every run checks that this fallback
agrees with the facts for every field that has both, so NAME_EXCEPTIONS stays
tested.

Usage (from the repository root):
    python3 tools/gen_proto_schema.py [--k8s-pb DIR] [--refresh-facts DIR --go-version TAG]
"""

import argparse
import glob
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FACTS = os.path.join(ROOT, "src", "api", "protobuf", "schema_facts.tsv")
OUT = os.path.join(ROOT, "src", "api", "protobuf", "schema.rs")
COMMAND = "python3 tools/gen_proto_schema.py"

# k8s-pb modules (under src/) whose kinds the API server accepts as bodies.
KIND_MODULES = [
    "api/core/v1",
    "api/apps/v1",
    "api/batch/v1",
    "api/autoscaling/v1",
    "api/autoscaling/v2",
    "api/networking/v1",
    "api/discovery/v1",
    "api/coordination/v1",
    "api/events/v1",
    "api/rbac/v1",
    "api/storage/v1",
    "api/policy/v1",
    "api/scheduling/v1",
    "api/authentication/v1",
    "api/authentication/v1beta1",
    "api/authorization/v1",
    "apiextensions_apiserver/pkg/apis/apiextensions/v1",
]

# Body kinds that are not stored resources, so k8s-pb has no Resource impl
# for them: (apiVersion, kind, module, message).  apiVersion "*" matches any.
EXTRA_KINDS = [
    ("authentication.k8s.io/v1", "TokenRequest", "api/authentication/v1", "TokenRequest"),
    ("authentication.k8s.io/v1beta1", "SelfSubjectReview", "api/authentication/v1beta1", "SelfSubjectReview"),
    ("policy/v1", "Eviction", "api/policy/v1", "Eviction"),
    ("autoscaling/v1", "Scale", "api/autoscaling/v1", "Scale"),
    ("*", "DeleteOptions", "apimachinery/pkg/apis/meta/v1", "DeleteOptions"),
]

# Messages whose JSON form is not "an object of their fields".
SPECIAL = {
    "k8s.io.apimachinery.pkg.apis.meta.v1.Time": "Time",
    "k8s.io.apimachinery.pkg.apis.meta.v1.MicroTime": "MicroTime",
    "k8s.io.apimachinery.pkg.apis.meta.v1.Duration": "Duration",
    "k8s.io.apimachinery.pkg.apis.meta.v1.FieldsV1": "RawJson",
    "k8s.io.apimachinery.pkg.runtime.RawExtension": "RawExtension",
    "k8s.io.apimachinery.pkg.api.resource.Quantity": "Quantity",
    "k8s.io.apimachinery.pkg.util.intstr.IntOrString": "IntOrString",
    "k8s.io.apiextensions_apiserver.pkg.apis.apiextensions.v1.JSON": "RawJson",
    # `type ExtraValue []string`: a named slice, JSON is the bare array.
    "k8s.io.api.authentication.v1.ExtraValue": "StringList",
    "k8s.io.api.authorization.v1.ExtraValue": "StringList",
    "k8s.io.apiextensions_apiserver.pkg.apis.apiextensions.v1.JSONSchemaPropsOrArray": "PropsOrArray",
    "k8s.io.apiextensions_apiserver.pkg.apis.apiextensions.v1.JSONSchemaPropsOrBool": "PropsOrBool",
    "k8s.io.apiextensions_apiserver.pkg.apis.apiextensions.v1.JSONSchemaPropsOrStringArray": "PropsOrStringArray",
}

# Upstream JSON names that are not the lowerCamelCase of prost's snake_case
# field name (prost and k8s-pb's renaming lose initialisms: `podCIDRs` ->
# `pod_cid_rs`).  Keyed by "Message.field" or, for every message, by the prost
# field name alone; checked against the facts on every run.
NAME_EXCEPTIONS = {
    "DaemonEndpoint.port": "Port",
    "JSONSchemaProps.schema": "$schema",
    "JSONSchemaProps.r#ref": "$ref",
    "a_pi_group": "apiGroup",
    "boot_id": "bootID",
    "client_ip": "clientIP",
    "cluster_ip": "clusterIP",
    "cluster_ips": "clusterIPs",
    "container_id": "containerID",
    "current_cpu_utilization_percentage": "currentCPUUtilizationPercentage",
    "dataset_uuid": "datasetUUID",
    "disk_uri": "diskURI",
    "downward_api": "downwardAPI",
    "external_id": "externalID",
    "external_ips": "externalIPs",
    "host_ip": "hostIP",
    "host_ipc": "hostIPC",
    "host_ips": "hostIPs",
    "host_pid": "hostPID",
    "image_id": "imageID",
    "load_balancer_ip": "loadBalancerIP",
    "machine_id": "machineID",
    "node_id": "nodeID",
    "non_resource_ur_ls": "nonResourceURLs",
    "open_apiv3_schema": "openAPIV3Schema",
    "pd_id": "pdID",
    "pod_cid_rs": "podCIDRs",
    "pod_cidr": "podCIDR",
    "pod_ip": "podIP",
    "pod_ips": "podIPs",
    "provider_id": "providerID",
    "resource_id": "resourceID",
    "scale_io": "scaleIO",
    "set_hostname_as_fqdn": "setHostnameAsFQDN",
    "storage_policy_id": "storagePolicyID",
    "system_uuid": "systemUUID",
    "target_cpu_utilization_percentage": "targetCPUUtilizationPercentage",
    "target_ww_ns": "targetWWNs",
    "u_id": "uid",
    "volume_id": "volumeID",
    "x_kubernetes_embedded_resource": "x-kubernetes-embedded-resource",
    "x_kubernetes_int_or_string": "x-kubernetes-int-or-string",
    "x_kubernetes_list_map_keys": "x-kubernetes-list-map-keys",
    "x_kubernetes_list_type": "x-kubernetes-list-type",
    "x_kubernetes_map_type": "x-kubernetes-map-type",
    "x_kubernetes_preserve_unknown_fields": "x-kubernetes-preserve-unknown-fields",
    "x_kubernetes_validations": "x-kubernetes-validations",
}

SCALARS = {"string", "bool", "int32", "int64", "double", "bytes"}


def proto_package(module):
    return "k8s.io." + module.replace("/", ".")


def lower_camel(rust_name):
    name = rust_name[2:] if rust_name.startswith("r#") else rust_name
    parts = name.split("_")
    return parts[0] + "".join(p[:1].upper() + p[1:] for p in parts[1:])


def fallback_json_name(message, rust_name):
    return NAME_EXCEPTIONS.get(message + "." + rust_name) or NAME_EXCEPTIONS.get(rust_name) or lower_camel(rust_name)


def norm(name):
    if name.startswith("r#"):
        name = name[2:]
    return re.sub(r"[^a-z0-9]", "", name.lower())


# ---------------------------------------------------------------- k8s-pb ---

class PbField:
    def __init__(self, rust_name, tag, kind, repeated, ref, map_value):
        self.rust_name = rust_name
        self.tag = tag
        self.kind = kind  # scalar name, "message" or "map"
        self.repeated = repeated
        self.ref = ref  # (module, message) for messages and message-valued maps
        self.map_value = map_value  # scalar name or "message"


class PbMessage:
    def __init__(self, module, name):
        self.module = module
        self.name = name
        self.fields = []


def resolve_path(module, path):
    """Resolve a Rust type path used inside `module` to (module, Name)."""
    path = path.strip().replace(" ", "")
    parts = path.split("::")
    cur = module.split("/")
    while parts and parts[0] == "super":
        cur = cur[:-1]
        parts = parts[1:]
    return "/".join(cur + parts[:-1]), parts[-1]


def inner_type(ty):
    for wrapper in ("::core::option::Option<", "::prost::alloc::vec::Vec<", "::prost::alloc::boxed::Box<"):
        if ty.startswith(wrapper) and ty.endswith(">"):
            return inner_type(ty[len(wrapper):-1])
    return ty


ATTR_RE = re.compile(r"#\[prost\((.*)\)\]")


def parse_module(src_dir, module):
    path = os.path.join(src_dir, module, "mod.rs")
    text = open(path, encoding="utf-8").read()
    messages = {}
    kinds = []
    lines = text.split("\n")
    i = 0
    current = None
    while i < len(lines):
        line = lines[i].strip()
        m = re.match(r"pub struct (\w+) \{(\})?$", line)
        if m:
            current = PbMessage(module, m.group(1))
            messages[current.name] = current
            if m.group(2):
                current = None
            i += 1
            continue
        if line == "}":
            current = None
        m = ATTR_RE.match(line)
        if m and current is not None:
            attr = m.group(1)
            decl = ""
            i += 1
            while True:
                decl += lines[i].strip()
                i += 1
                if decl.endswith(",") and decl.count("<") == decl.count(">"):
                    break
            dm = re.match(r"pub (r#\w+|\w+):(.*),$", decl)
            if not dm:
                sys.exit(f"cannot parse field declaration in {path}: {decl}")
            rust_name, ty = dm.group(1), re.sub(r",>", ">", dm.group(2).strip())
            tag = int(re.search(r'tag = "(\d+)"', attr).group(1))
            first = attr.split(",")[0].strip()
            repeated = ", repeated" in attr
            ref = None
            map_value = None
            if first.startswith("btree_map") or first.startswith("map"):
                km, vm = re.search(r'map = "(\w+), (\w+)"', attr).groups()
                if km != "string":
                    sys.exit(f"unsupported map key {km} in {module}.{current.name}")
                kind = "map"
                map_value = vm
                if vm == "message":
                    val = ty[ty.index("<") + 1: -1].split(",", 1)[1]
                    ref = resolve_path(module, val)
            elif first.startswith("bytes"):
                kind = "bytes"
            elif first == "message":
                kind = "message"
                ref = resolve_path(module, inner_type(ty))
            elif first in SCALARS:
                kind = first
            else:
                sys.exit(f"unsupported prost type {first} in {module}.{current.name}")
            current.fields.append(PbField(rust_name, tag, kind, repeated, ref, map_value))
            continue
        m = re.match(r"impl crate::Resource for (\w+) \{$", line)
        if m:
            block = "\n".join(lines[i:i + 8])
            av = re.search(r'API_VERSION: &\'static str = "([^"]*)"', block).group(1)
            kind = re.search(r'KIND: &\'static str = "([^"]*)"', block).group(1)
            kinds.append((av, kind, module, m.group(1)))
        i += 1
    return messages, kinds


class PbIndex:
    def __init__(self, src_dir):
        self.src_dir = src_dir
        self.modules = {}
        self.kinds = {}

    def module(self, module):
        if module not in self.modules:
            msgs, kinds = parse_module(self.src_dir, module)
            self.modules[module] = msgs
            self.kinds[module] = kinds
        return self.modules[module]

    def message(self, ref):
        module, name = ref
        msgs = self.module(module)
        if name not in msgs:
            sys.exit(f"message {name} not found in {module}")
        return msgs[name]


# ----------------------------------------------------------------- facts ---

def go_dir(go_root, module):
    if module.startswith("api/"):
        return os.path.join(go_root, "api", module[len("api/"):])
    if module.startswith("apimachinery/"):
        return os.path.join(go_root, module)
    if module.startswith("apiextensions_apiserver/"):
        return os.path.join(go_root, "apiextensions-apiserver", module[len("apiextensions_apiserver/"):])
    sys.exit(f"no Go source mapping for module {module}")


STRUCT_RE = re.compile(r"^type (\w+) struct ?\{(?:\}|\n(.*?)^\})", re.S | re.M)
GO_FIELD_RE = re.compile(r"^(?:(\w+)\s+)?([^`\s]+)\s+`([^`]*)`")


def parse_go_structs(directory):
    """Go struct name -> {proto tag: (json name, flags)} from struct tags."""
    out = {}
    for fname in sorted(os.listdir(directory)):
        if not fname.endswith(".go") or fname.endswith("_test.go") or fname.startswith("zz_") or "generated" in fname:
            continue
        src = open(os.path.join(directory, fname), encoding="utf-8").read()
        for m in STRUCT_RE.finditer(src):
            fields = {}
            for line in (m.group(2) or "").split("\n"):
                line = line.strip()
                fm = GO_FIELD_RE.match(line)
                if not fm:
                    continue
                go_name, go_type, tags = fm.groups()
                pt = re.search(r'protobuf:"([^"]*)"', tags)
                if not pt or pt.group(1) == "-":
                    continue
                tag = int(pt.group(1).split(",")[1])
                jt = re.search(r'json:"([^"]*)"', tags)
                jparts = jt.group(1).split(",") if jt else [""]
                json_name = jparts[0]
                flags = ""
                if go_type.startswith("*"):
                    flags += "p"
                if "omitempty" in jparts[1:]:
                    flags += "o"
                if "inline" in jparts[1:]:
                    flags += "i"
                    json_name = ""
                elif json_name == "":
                    json_name = go_name or go_type.split(".")[-1]
                fields[tag] = (json_name, flags)
            out[m.group(1)] = fields
    return out


def read_facts():
    facts = {}
    if not os.path.exists(FACTS):
        return facts
    for line in open(FACTS, encoding="utf-8"):
        if line.startswith("#") or not line.strip():
            continue
        package, message, tag, json_name, flags = line.rstrip("\n").split("\t")
        facts.setdefault((package, message.lower()), (message, {}))[1][int(tag)] = (json_name, flags)
    return facts


def write_facts(rows, go_version):
    with open(FACTS, "w", encoding="utf-8") as f:
        f.write("# Generated by `" + COMMAND + " --refresh-facts DIR` from the Go struct tags of\n")
        f.write("# k8s.io/api, k8s.io/apimachinery and k8s.io/apiextensions-apiserver " + go_version + ".\n")
        f.write("# proto package, Go message, proto tag, JSON name ('' = inlined, '-' = never\n")
        f.write("# serialised), flags: p = Go pointer, o = omitempty, i = inline.\n")
        f.write("# Rows are in Go struct order.\n")
        for row in rows:
            f.write("\t".join(row) + "\n")


# ------------------------------------------------------------- generate ---

def reachable(index, roots):
    order = []
    seen = set()
    stack = list(reversed(roots))
    while stack:
        ref = stack.pop()
        if ref in seen:
            continue
        seen.add(ref)
        order.append(ref)
        msg = index.message(ref)
        full = proto_package(ref[0]) + "." + ref[1]
        if SPECIAL.get(full) in ("Time", "MicroTime", "Duration", "Quantity", "IntOrString", "RawExtension", "RawJson", "StringList"):
            continue
        for f in reversed(msg.fields):
            if f.ref is not None and f.ref not in seen:
                stack.append(f.ref)
    return order


def rust_str(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--k8s-pb", help="k8s-pb crate directory (holding src/)")
    ap.add_argument("--refresh-facts", metavar="DIR", help="rewrite src/api/protobuf/schema_facts.tsv from Go sources in DIR")
    ap.add_argument("--go-version", default="(unknown)", help="module tag of the Go sources, recorded in the facts header")
    args = ap.parse_args()

    crate = args.k8s_pb
    if crate is None:
        found = sorted(glob.glob(os.path.expanduser("~/.cargo/registry/src/*/k8s-pb-0.9.*")))
        if not found:
            sys.exit("k8s-pb sources not found; see the docstring for how to fetch them, or pass --k8s-pb")
        crate = found[-1]
    version = os.path.basename(crate.rstrip("/"))
    index = PbIndex(os.path.join(crate, "src"))

    kinds = []
    for module in KIND_MODULES:
        index.module(module)
        kinds.extend(index.kinds[module])
    kinds.extend(EXTRA_KINDS)
    kinds.sort(key=lambda k: (k[0], k[1]))
    roots = []
    for _, _, module, name in kinds:
        if (module, name) not in roots:
            roots.append((module, name))
    order = reachable(index, roots)

    if args.refresh_facts:
        rows = []
        go_cache = {}
        for module, name in order:
            d = go_dir(args.refresh_facts, module)
            if d not in go_cache:
                go_cache[d] = parse_go_structs(d)
            structs = go_cache[d]
            matches = [g for g in structs if g.lower() == name.lower()]
            if not matches:
                if proto_package(module) + "." + name not in SPECIAL:
                    print(f"warning: no Go struct for {module}.{name}", file=sys.stderr)
                continue
            go_name = matches[0]
            for tag, (json_name, flags) in structs[go_name].items():
                rows.append((proto_package(module), go_name, str(tag), json_name, flags))
        write_facts(rows, args.go_version)
        print(f"wrote {len(rows)} rows to {os.path.relpath(FACTS, ROOT)}")

    facts = read_facts()
    ids = {ref: i for i, ref in enumerate(order)}
    warnings = []
    name_mismatches = []
    out_msgs = []
    for module, name in order:
        msg = index.message((module, name))
        package = proto_package(module)
        proto_name, field_facts = facts.get((package, name.lower()), (name, None))
        if field_facts is None:
            if SPECIAL.get(package + "." + proto_name) is None and msg.fields:
                warnings.append(f"no facts for message {package}.{name}")
            field_facts = {}
        full = package + "." + proto_name
        special = SPECIAL.get(full, "None")
        fields = []
        # Go struct order where known: encoding/json writes fields in it.
        rank = {tag: n for n, tag in enumerate(field_facts)}
        for f in sorted(msg.fields, key=lambda f: rank.get(f.tag, len(rank))):
            fact = field_facts.get(f.tag)
            fallback = fallback_json_name(proto_name, f.rust_name)
            if fact is None:
                if special == "None":
                    warnings.append(f"no facts for {full} field {f.tag} ({f.rust_name}); using {fallback!r}")
                json_name, flags = fallback, "p" if not f.repeated and f.kind != "map" else "o"
            else:
                json_name, flags = fact
                if json_name not in ("", "-") and json_name != fallback and special == "None":
                    name_mismatches.append(f"{full}.{f.rust_name}: facts say {json_name!r}, fallback gives {fallback!r}")
                if json_name and json_name != "-" and norm(json_name) != norm(f.rust_name):
                    sys.exit(f"facts and k8s-pb disagree on {full} tag {f.tag}: {json_name} vs {f.rust_name}")
            if json_name == "-":
                continue
            if f.kind == "message":
                kind = f"Message({ids[f.ref]})"
            elif f.kind == "map":
                kind = {"string": "MapString", "bytes": "MapBytes"}.get(f.map_value) or f"MapMessage({ids[f.ref]})"
            else:
                kind = {"string": "String", "bytes": "Bytes", "bool": "Bool", "int32": "Int32",
                        "int64": "Int64", "double": "Double"}[f.kind]
            bits = []
            if f.repeated:
                bits.append("R")
            if "p" in flags:
                bits.append("P")
            if "o" in flags:
                bits.append("O")
            if "i" in flags:
                bits.append("I")
            fields.append((f.tag, json_name, kind, " | ".join(bits) or "0"))
        out_msgs.append((full, special, fields))

    for w in warnings:
        print("warning: " + w, file=sys.stderr)
    if name_mismatches:
        print("NAME_EXCEPTIONS is out of date:", file=sys.stderr)
        for m in name_mismatches:
            print("  " + m, file=sys.stderr)
        sys.exit(1)

    lines = []
    lines.append(f"//! Generated by `{COMMAND}` from the `{version}` crate sources and")
    lines.append("//! `src/api/protobuf/schema_facts.tsv`. Do not edit by hand; rerun the generator.")
    lines.append("//!")
    lines.append("//! Every protobuf message reachable from the kinds the API server accepts as")
    lines.append("//! request bodies: proto tag, JSON name, wire kind and Go JSON emission flags")
    lines.append("//! per field, in Go struct order (the order `encoding/json` writes them).")
    lines.append("")
    lines.append("use super::model::Kind::*;")
    lines.append("use super::model::{Field as F, I, Message as M, O, P, R, Special as S};")
    lines.append("")
    lines.append("#[rustfmt::skip]")
    lines.append(f"pub(super) static MESSAGES: [M; {len(out_msgs)}] = [")
    for i, (full, special, fields) in enumerate(out_msgs):
        lines.append(f"    // {i}")
        lines.append(f"    M::new({rust_str(full)}, S::{special}, &[")
        for tag, json_name, kind, bits in fields:
            lines.append(f"        F::new({tag}, {rust_str(json_name)}, {kind}, {bits}),")
        lines.append("    ]),")
    lines.append("];")
    lines.append("")
    lines.append("/// (apiVersion, kind, index into `MESSAGES`); apiVersion `*` matches any.")
    lines.append("#[rustfmt::skip]")
    lines.append(f"pub(super) static KINDS: [(&str, &str, u16); {len(kinds)}] = [")
    for av, kind, module, name in kinds:
        lines.append(f"    ({rust_str(av)}, {rust_str(kind)}, {ids[(module, name)]}),")
    lines.append("];")
    with open(OUT, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    nfields = sum(len(m[2]) for m in out_msgs)
    print(f"wrote {os.path.relpath(OUT, ROOT)}: {len(out_msgs)} messages, {nfields} fields, {len(kinds)} kinds, {len(warnings)} warnings")


if __name__ == "__main__":
    main()
