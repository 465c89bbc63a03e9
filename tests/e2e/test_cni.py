"""The built-in CNI plugin, driven exactly as containerd drives it: the skiff
binary executed through `skiff-cni` / `loopback` symlinks with CNI_* env vars
and the network config on stdin, against real network namespaces.

Needs root (network namespaces, links, nftables). Every test uses a private
bridge (`cnit<rand>`), subnet (10.199.<rand>.0/24) and nftables table, all
removed in finalizers, so it can run next to a real agent.
"""
import json
import os
import random
import shutil
import socket
import subprocess
import tempfile
import threading
import uuid

import pytest

from conftest import SKIFF, wait_for

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="the CNI plugin e2e test needs root (network namespaces, links, nftables)"
)


def sh(*args, check=True, **kw):
    p = subprocess.run(list(args), capture_output=True, text=True, timeout=30, **kw)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {p.returncode}: {p.stdout}{p.stderr}")
    return p


class Net:
    """A private CNI setup: bin dir with the plugin symlinks, bridge, subnet, state."""

    def __init__(self):
        self.tag = uuid.uuid4().hex[:6]
        self.tmp = tempfile.mkdtemp(prefix="skiff-cni-e2e-")
        self.bin = os.path.join(self.tmp, "bin")
        os.mkdir(self.bin)
        for name in ("skiff-cni", "loopback"):
            os.symlink(os.path.abspath(SKIFF), os.path.join(self.bin, name))
        self.bridge = f"cnit{self.tag}"
        self.octet = random.randint(1, 250)
        self.subnet = f"10.199.{self.octet}.0/24"
        self.gateway = f"10.199.{self.octet}.1"
        self.data_dir = os.path.join(self.tmp, "state")
        self.name = "cnitest"
        self.table = f"skiffcni_{self.bridge}"
        self.netns = []
        self.procs = []

    def conf(self, **extra):
        c = {
            "cniVersion": "1.0.0",
            "name": self.name,
            "type": "skiff-cni",
            "bridge": self.bridge,
            "subnet": self.subnet,
            "clusterCIDR": "10.199.0.0/16",
            "mtu": 1400,
            "dataDir": self.data_dir,
            "ipMasq": True,
            "hairpinMode": True,
            "capabilities": {"portMappings": True},
        }
        c.update(extra)
        return c

    @property
    def state_dir(self):
        return os.path.join(self.data_dir, self.name)

    def new_netns(self):
        name = f"cnitest-{self.tag}-{len(self.netns)}"
        sh("ip", "netns", "add", name)
        self.netns.append(name)
        return name, f"/var/run/netns/{name}"

    def run(self, plugin, command, conf, cid="", netns_path="", ifname="eth0", env_extra=None):
        env = {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": cid,
            "CNI_NETNS": netns_path,
            "CNI_IFNAME": ifname,
            "CNI_PATH": self.bin,
        }
        env.update(env_extra or {})
        stdin = conf if isinstance(conf, str) else json.dumps(conf)
        return subprocess.run(
            [os.path.join(self.bin, plugin)], input=stdin, capture_output=True, text=True, env=env, timeout=60
        )

    def add(self, cid, netns_path, **extra):
        p = self.run("skiff-cni", "ADD", self.conf(**extra), cid, netns_path)
        assert p.returncode == 0, f"ADD failed: {p.stdout}{p.stderr}"
        return json.loads(p.stdout)

    def delete(self, cid, netns_path, **extra):
        p = self.run("skiff-cni", "DEL", self.conf(**extra), cid, netns_path)
        assert p.returncode == 0, f"DEL failed: {p.stdout}{p.stderr}"
        assert p.stdout.strip() == ""

    def spawn(self, *args):
        p = subprocess.Popen(list(args), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs.append(p)
        return p

    def cleanup(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        for ns in self.netns:
            sh("ip", "netns", "del", ns, check=False)
        sh("ip", "link", "del", self.bridge, check=False)
        sh("nft", "delete", "table", "ip", self.table, check=False)
        shutil.rmtree(self.tmp, ignore_errors=True)


@pytest.fixture
def net():
    n = Net()
    yield n
    n.cleanup()


def ns_addrs(ns, ifname="eth0"):
    p = sh("ip", "netns", "exec", ns, "ip", "-j", "addr", "show", "dev", ifname, check=False)
    if p.returncode != 0:
        return None
    info = json.loads(p.stdout)
    return [a["local"] for i in info for a in i.get("addr_info", []) if a.get("family") == "inet"]


def ping(src_ns, dst):
    prefix = ["ip", "netns", "exec", src_ns] if src_ns else []
    return sh(*prefix, "busybox", "ping", "-c", "1", "-W", "1", dst, check=False).returncode == 0


def link_exists(name, ns=None):
    prefix = ["ip", "netns", "exec", ns] if ns else []
    return sh(*prefix, "ip", "link", "show", "dev", name, check=False).returncode == 0


def ip_files(state_dir):
    if not os.path.isdir(state_dir):
        return []
    return sorted(f for f in os.listdir(state_dir) if f.count(".") == 3 and not f.startswith("."))


def test_add_two_pods_connectivity_and_result(net):
    ns1, path1 = net.new_netns()
    ns2, path2 = net.new_netns()
    r1 = net.add("pod1", path1)
    r2 = net.add("pod2", path2)

    # result shape (CNI 1.0.0)
    assert r1["cniVersion"] == "1.0.0"
    names = [i["name"] for i in r1["interfaces"]]
    assert names[0] == net.bridge and names[1].startswith("veth") and names[2] == "eth0"
    assert r1["interfaces"][2]["sandbox"] == path1
    ip1 = r1["ips"][0]["address"].split("/")[0]
    ip2 = r2["ips"][0]["address"].split("/")[0]
    assert r1["ips"][0]["address"].endswith("/24")
    assert r1["ips"][0]["gateway"] == net.gateway
    assert r1["ips"][0]["interface"] == 2
    assert r1["routes"] == [{"dst": "0.0.0.0/0", "gw": net.gateway}]
    assert ip1 != ip2
    # the bridge MAC (the pods' gateway MAC) is pinned, not taken from a port
    assert r1["interfaces"][0]["mac"] == r2["interfaces"][0]["mac"]
    assert r1["interfaces"][0]["mac"] not in (r1["interfaces"][1]["mac"], r2["interfaces"][1]["mac"])
    for ip in (ip1, ip2):
        assert ip.startswith(f"10.199.{net.octet}.") and ip not in (net.gateway, f"10.199.{net.octet}.255")

    # the namespaces really have the addresses, MTU and a default route
    assert ns_addrs(ns1) == [ip1]
    assert ns_addrs(ns2) == [ip2]
    link = json.loads(sh("ip", "netns", "exec", ns1, "ip", "-j", "link", "show", "dev", "eth0").stdout)[0]
    assert link["mtu"] == 1400 and "UP" in link["flags"]
    routes = json.loads(sh("ip", "netns", "exec", ns1, "ip", "-j", "route").stdout)
    assert any(r["dst"] == "default" and r.get("gateway") == net.gateway for r in routes)
    host_veth = names[1]
    veth = json.loads(sh("ip", "-j", "-d", "link", "show", "dev", host_veth).stdout)[0]
    assert veth.get("master") == net.bridge
    assert veth["linkinfo"]["info_slave_data"]["hairpin"] is True
    bridge = json.loads(sh("ip", "-j", "addr", "show", "dev", net.bridge).stdout)[0]
    assert f"{net.gateway}" in [a["local"] for a in bridge["addr_info"] if a["family"] == "inet"]
    with open("/proc/sys/net/ipv4/ip_forward") as f:
        assert f.read().strip() == "1"

    # IPAM state on disk
    with open(os.path.join(net.state_dir, ip1)) as f:
        assert f.read() == "pod1\neth0"

    # connectivity: pod → gateway, host → pod, pod ↔ pod
    wait_for(lambda: ping(ns1, net.gateway), timeout=10, what="pod1 → gateway")
    wait_for(lambda: ping(None, ip1), timeout=10, what="host → pod1")
    wait_for(lambda: ping(ns1, ip2), timeout=10, what="pod1 → pod2")
    wait_for(lambda: ping(ns2, ip1), timeout=10, what="pod2 → pod1")

    # a repeated ADD gives the same address back and still works
    again = net.add("pod1", path1)
    assert again["ips"][0]["address"] == r1["ips"][0]["address"]
    assert ns_addrs(ns1) == [ip1]
    wait_for(lambda: ping(ns1, ip2), timeout=10, what="pod1 → pod2 after re-ADD")
    assert len(ip_files(net.state_dir)) == 2


def test_del_releases_and_is_idempotent(net):
    ns1, path1 = net.new_netns()
    r = net.add("pod-del", path1)
    ip = r["ips"][0]["address"].split("/")[0]
    host_veth = r["interfaces"][1]["name"]
    assert os.path.exists(os.path.join(net.state_dir, ip))
    assert link_exists(host_veth)

    net.delete("pod-del", path1)
    assert not os.path.exists(os.path.join(net.state_dir, ip))
    assert not link_exists(host_veth)
    assert not link_exists("eth0", ns1)
    # twice, and with the namespace gone, and with no namespace at all
    net.delete("pod-del", path1)
    sh("ip", "netns", "del", ns1)
    net.delete("pod-del", path1)
    net.delete("pod-del", "")
    # never-seen container on a never-used network
    p = net.run("skiff-cni", "DEL", net.conf(name="other", dataDir=os.path.join(net.tmp, "none")), "ghost", "")
    assert p.returncode == 0, p.stdout
    assert ip_files(net.state_dir) == []


def test_check(net):
    ns1, path1 = net.new_netns()
    r = net.add("pod-chk", path1)
    conf = net.conf(prevResult=r)
    p = net.run("skiff-cni", "CHECK", conf, "pod-chk", path1)
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.strip() == ""

    # a prevResult that disagrees with the state fails
    bad = json.loads(json.dumps(r))
    bad["ips"][0]["address"] = f"10.199.{net.octet}.250/24"
    p = net.run("skiff-cni", "CHECK", net.conf(prevResult=bad), "pod-chk", path1)
    assert p.returncode == 1
    assert json.loads(p.stdout)["code"] == 103

    # the address vanishing from the pod is detected
    sh("ip", "netns", "exec", ns1, "ip", "addr", "flush", "dev", "eth0")
    p = net.run("skiff-cni", "CHECK", conf, "pod-chk", path1)
    assert p.returncode == 1
    err = json.loads(p.stdout)
    assert err["code"] == 103 and "does not have" in err["msg"]

    # CHECK does not exist before 0.4.0
    p = net.run("skiff-cni", "CHECK", net.conf(cniVersion="0.3.1"), "pod-chk", path1)
    assert p.returncode == 1 and json.loads(p.stdout)["code"] == 1


def test_errors_are_cni_error_json(net):
    ns1, path1 = net.new_netns()
    cases = [
        (net.conf(subnet="10.199.0.5/24"), {}, 7, "host bits"),
        (net.conf(subnet="nonsense"), {}, 7, "subnet"),
        (net.conf(cniVersion="9.9.9"), {}, 1, "incompatible CNI version"),
        ("{not json", {}, 6, "cannot decode"),
        (net.conf(), {"CNI_COMMAND": "FROB"}, 4, "FROB"),
        (net.conf(), {"CNI_IFNAME": ""}, 4, "CNI_IFNAME"),
        (net.conf(), {"CNI_NETNS": "/var/run/netns/does-not-exist-cnitest"}, 104, "does not exist"),
    ]
    for conf, env, code, needle in cases:
        env = dict(env)
        cmd = env.pop("CNI_COMMAND", "ADD")
        ifname = env.pop("CNI_IFNAME", "eth0")
        netns = env.pop("CNI_NETNS", path1)
        p = net.run("skiff-cni", cmd, conf, "pod-err", netns, ifname=ifname)
        assert p.returncode == 1, (conf, p.stdout)
        err = json.loads(p.stdout)
        assert err["code"] == code, err
        assert needle in err["msg"], err
        assert "cniVersion" in err and "details" in err
    # nothing was allocated by the failed ADDs
    assert ip_files(net.state_dir) == []
    assert not link_exists("eth0", ns1)


def test_version():
    with tempfile.TemporaryDirectory() as d:
        for plugin in ("skiff-cni", "loopback"):
            link = os.path.join(d, plugin)
            os.symlink(os.path.abspath(SKIFF), link)
            p = subprocess.run(
                [link], input='{"cniVersion":"0.4.0"}', capture_output=True, text=True,
                env={"CNI_COMMAND": "VERSION"}, timeout=30,
            )
            assert p.returncode == 0, p.stdout
            v = json.loads(p.stdout)
            assert v["supportedVersions"] == ["0.3.0", "0.3.1", "0.4.0", "1.0.0"]
            assert v["cniVersion"] == "0.4.0"


def test_loopback(net):
    ns1, path1 = net.new_netns()

    def lo_up():
        info = json.loads(sh("ip", "netns", "exec", ns1, "ip", "-j", "link", "show", "dev", "lo").stdout)[0]
        return "UP" in info["flags"]

    assert not lo_up()
    conf = {"cniVersion": "0.3.1", "name": "cni-loopback", "type": "loopback"}
    p = net.run("loopback", "ADD", conf, "pod-lo", path1, ifname="lo")
    assert p.returncode == 0, p.stdout + p.stderr
    r = json.loads(p.stdout)
    assert r["cniVersion"] == "0.3.1"
    assert r["interfaces"] == [{"name": "lo", "mac": "00:00:00:00:00:00", "sandbox": path1}]
    assert r["ips"] == [{"address": "127.0.0.1/8", "version": "4", "interface": 0}]
    assert lo_up()
    assert ping(ns1, "127.0.0.1")
    p = net.run("loopback", "DEL", conf, "pod-lo", path1, ifname="lo")
    assert p.returncode == 0 and p.stdout.strip() == ""
    assert not lo_up()
    sh("ip", "netns", "del", ns1)
    p = net.run("loopback", "DEL", conf, "pod-lo", path1, ifname="lo")
    assert p.returncode == 0, p.stdout


def free_tcp_port():
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        return s.getsockname()[1]


def http_get(url, ns=None):
    prefix = ["ip", "netns", "exec", ns] if ns else []
    p = subprocess.run(
        [*prefix, "timeout", "3", "busybox", "wget", "-q", "-O", "-", url],
        capture_output=True, text=True, timeout=10,
    )
    return p.stdout if p.returncode == 0 else None


def test_host_port_dnat(net):
    ns1, path1 = net.new_netns()
    ns2, path2 = net.new_netns()
    host_port = free_tcp_port()
    mappings = {"portMappings": [{"hostPort": host_port, "containerPort": 8080, "protocol": "tcp", "hostIP": ""}]}
    r = net.add("pod-web", path1, runtimeConfig=mappings)
    ip1 = r["ips"][0]["address"].split("/")[0]
    net.add("pod-client", path2)

    www = os.path.join(net.tmp, "www")
    os.mkdir(www)
    with open(os.path.join(www, "index.html"), "w") as f:
        f.write("hello from pod-web\n")
    net.spawn("ip", "netns", "exec", ns1, "busybox", "httpd", "-f", "-p", "8080", "-h", www)
    wait_for(lambda: http_get(f"http://{ip1}:8080/"), timeout=10, what="httpd in the pod")

    # the DNAT rule is there, tagged with the owner
    listing = sh("nft", "list", "table", "ip", net.table).stdout
    assert f"tcp dport {host_port} dnat to {ip1}:8080" in listing
    assert 'comment "pod-web/eth0"' in listing
    # the ADD with mappings passes CHECK (rules present)
    p = net.run("skiff-cni", "CHECK", net.conf(runtimeConfig=mappings, prevResult=r), "pod-web", path1)
    assert p.returncode == 0, p.stdout

    # from the host, to a host address (output chain)
    assert wait_for(lambda: http_get(f"http://{net.gateway}:{host_port}/"), timeout=10,
                    what="host → gateway:hostPort") == "hello from pod-web\n"
    # from another pod, through the host (prerouting + masquerade)
    assert wait_for(lambda: http_get(f"http://{net.gateway}:{host_port}/", ns=ns2), timeout=10,
                    what="pod → gateway:hostPort") == "hello from pod-web\n"
    # from the pod itself (hairpin)
    assert wait_for(lambda: http_get(f"http://{net.gateway}:{host_port}/", ns=ns1), timeout=10,
                    what="pod → its own hostPort") == "hello from pod-web\n"

    # DEL removes exactly this pod's mapping
    net.delete("pod-web", path1, runtimeConfig=mappings)
    listing = sh("nft", "list", "table", "ip", net.table).stdout
    assert f"dport {host_port}" not in listing
    assert "hp_" not in listing
    assert http_get(f"http://{net.gateway}:{host_port}/") is None


def test_concurrent_adds_get_distinct_addresses(net):
    pods = [(f"pod-c{i}", *net.new_netns()) for i in range(6)]
    results, errors = {}, []

    def add(cid, path):
        p = net.run("skiff-cni", "ADD", net.conf(), cid, path)
        if p.returncode != 0:
            errors.append(p.stdout + p.stderr)
        else:
            results[cid] = json.loads(p.stdout)["ips"][0]["address"]

    threads = [threading.Thread(target=add, args=(cid, path)) for cid, _, path in pods]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(set(results.values())) == len(pods)
    for cid, ns, _ in pods:
        assert ns_addrs(ns) == [results[cid].split("/")[0]]
    assert len(ip_files(net.state_dir)) == len(pods)

    threads = [threading.Thread(target=net.delete, args=(cid, path)) for cid, _, path in pods]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert ip_files(net.state_dir) == []


def test_rules_restored_after_outside_change_and_steady_add_runs_no_nft(net):
    """A saved listing is reused only while nftables is unchanged: an ADD
    after someone deleted the table puts the masquerade back; an ADD with
    nothing changed runs no `nft` process (PATH without nft proves it)."""
    ns1, path1 = net.new_netns()
    ns2, path2 = net.new_netns()
    ns3, path3 = net.new_netns()
    net.add("pod-a", path1)
    assert "masquerade" in sh("nft", "list", "table", "ip", net.table).stdout
    # nothing changed since the last listing: DEL and ADD succeed even where
    # `nft` is a program printing nothing (a listing would fail to parse).
    # Another process may change nftables in between (a server of another
    # test): then a real ADD takes a fresh listing and the pair is retried.
    nonft = os.path.join(net.tmp, "nonft")
    os.mkdir(nonft)
    os.symlink(shutil.which("true"), os.path.join(nonft, "nft"))
    env = {"PATH": nonft}
    outcomes = []
    for _ in range(5):
        net.add("pod-b", path2)  # takes the listing the next runs may reuse
        d = net.run("skiff-cni", "DEL", net.conf(), "pod-b", path2, env_extra=env)
        a = net.run("skiff-cni", "ADD", net.conf(), "pod-b", path2, env_extra=env)
        outcomes.append((d.returncode, a.returncode, d.stdout + a.stdout))
        if d.returncode == 0 and a.returncode == 0:
            break
    else:
        raise AssertionError(f"ADD/DEL ran nft although nothing changed: {outcomes}")

    # an outside change: the table is gone; the next ADD restores it
    sh("nft", "delete", "table", "ip", net.table)
    net.add("pod-c", path3)
    listing = sh("nft", "list", "table", "ip", net.table).stdout
    assert "masquerade" in listing and "skiff-base" in listing
    for cid, path in (("pod-a", path1), ("pod-b", path2), ("pod-c", path3)):
        net.delete(cid, path)
