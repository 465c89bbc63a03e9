"""Shared fixtures for the end-to-end suite.

Every test talks to a real `skiff server` process (the release binary) over
HTTPS, with real kubectl binaries and real client libraries. One server is
shared per test module (isolation by namespace); tests that restart or kill
the server start their own.
"""
import glob
import json
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.request

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SKIFF = os.environ.get("SKIFF_BIN", os.path.join(ROOT, "target", "release", "skiff"))
KUBECTL_DIR = "/usr/lib/google-cloud-sdk/bin"


def kubectl_versions():
    found = sorted(
        (p for p in glob.glob(os.path.join(KUBECTL_DIR, "kubectl.1.*")) if os.access(p, os.X_OK)),
        key=lambda p: int(p.rsplit(".", 1)[1]),
    )
    if not found:
        raise RuntimeError(f"no kubectl binaries found under {KUBECTL_DIR}")
    return found


ALL_KUBECTLS = kubectl_versions()
OLDEST_NEWEST = [ALL_KUBECTLS[0], ALL_KUBECTLS[-1]] if len(ALL_KUBECTLS) > 1 else ALL_KUBECTLS


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(pred, timeout=60, interval=0.1, what="condition"):
    """Poll `pred` until it returns something truthy (returned); fail after `timeout` s."""
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


class Server:
    """A running `skiff server --disable-agent` (or, with `agent=True`, with
    its embedded node agent) on a private data dir."""

    def __init__(self, data_dir=None, port=None, extra_args=(), agent=False, bind="127.0.0.1"):
        self.agent = agent
        self.bind = bind
        self.tmp = tempfile.mkdtemp(prefix="skiff-e2e-")
        self.data_dir = data_dir or os.path.join(self.tmp, "data")
        self.port = port or free_port()
        self.kubeconfig = os.path.join(self.tmp, "kubeconfig.yaml")
        self.config_file = os.path.join(self.tmp, "config.yaml")
        open(self.config_file, "w").close()
        self.extra_args = list(extra_args)
        self.proc = None
        self.log_path = os.path.join(self.tmp, "server.log")

    @property
    def url(self):
        return f"https://127.0.0.1:{self.port}"

    def start(self, timeout=30):
        args = [
            SKIFF, "server",
        ] + ([] if self.agent else ["--disable-agent"]) + [
            "--config", self.config_file,
            "--data-dir", self.data_dir,
            "--https-listen-port", str(self.port),
            "--bind-address", self.bind,
            "--advertise-address", "127.0.0.1",
            "--write-kubeconfig", self.kubeconfig,
        ] + self.extra_args
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout=30):
        deadline = time.time() + timeout
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"skiff exited with {self.proc.returncode}:\n{self.logs()}")
            try:
                with urllib.request.urlopen(self.url + "/readyz", context=ctx, timeout=1) as r:
                    if r.status == 200 and os.path.exists(self.kubeconfig):
                        return
            except Exception:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"skiff not ready after {timeout}s:\n{self.logs()}")

    def logs(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")[-8000:]
        except OSError:
            return ""

    def stop(self, sig="TERM"):
        if self.proc and self.proc.poll() is None:
            if sig == "KILL":
                self.proc.kill()
            else:
                self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if getattr(self, "log", None):
            self.log.close()

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def token(self):
        with open(os.path.join(self.data_dir, "server", "token")) as f:
            return f.read().strip()


class Kubectl:
    def __init__(self, binary, server):
        self.binary = binary
        self.server = server
        self.version = binary.rsplit("kubectl.", 1)[-1]

    def run(self, *args, input=None, check=True, env=None, timeout=60):
        e = dict(os.environ)
        e["KUBECONFIG"] = self.server.kubeconfig
        e.pop("KUBECTL_EXTERNAL_DIFF", None)
        e["HOME"] = os.path.join(self.server.tmp, f"home-{self.version}")
        if env:
            e.update(env)
        p = subprocess.run(
            [self.binary, *args], input=input, capture_output=True, text=True, env=e, timeout=timeout
        )
        if check and p.returncode != 0:
            raise AssertionError(
                f"kubectl {self.version} {' '.join(args)} exited {p.returncode}\n"
                f"stdout:\n{p.stdout}\nstderr:\n{p.stderr}\nserver log tail:\n{self.server.logs()[-3000:]}"
            )
        return p

    def json(self, *args):
        return json.loads(self.run(*args, "-o", "json").stdout)


@pytest.fixture(scope="module")
def server():
    s = Server().start()
    yield s
    s.cleanup()


@pytest.fixture(params=ALL_KUBECTLS, ids=lambda p: p.rsplit("kubectl.", 1)[-1])
def kubectl(request, server):
    return Kubectl(request.param, server)


@pytest.fixture(params=OLDEST_NEWEST, ids=lambda p: p.rsplit("kubectl.", 1)[-1])
def kubectl_edge(request, server):
    return Kubectl(request.param, server)


_ns_counter = [0]


@pytest.fixture
def namespace(server):
    """A fresh namespace name for one test (created by the test or by this fixture)."""
    _ns_counter[0] += 1
    name = f"t{os.getpid() % 1000}-{_ns_counter[0]}-{int(time.time() * 1000) % 100000}"
    k = Kubectl(ALL_KUBECTLS[-1], server)
    k.run("create", "namespace", name)
    yield name
    k.run("delete", "namespace", name, "--wait=false", check=False)


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: waits a minute or more (still part of the CI run)")
