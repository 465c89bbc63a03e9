"""A tiny stand-in kubelet for controller tests (no containers).

It registers Node objects, renews their Leases in `kube-node-lease`, marks
pods bound to its nodes Running and Ready (after an optional delay), and
finishes graceful deletions the way a kubelet does (a delete with grace 0).
Tests can stop a node's heartbeat, flip a pod's readiness, or make pods
never become ready.
"""
import datetime
import threading
import time

import urllib3
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

urllib3.disable_warnings()


def now():
    return datetime.datetime.now(datetime.timezone.utc)


def rfc3339(t=None):
    return (t or now()).strftime("%Y-%m-%dT%H:%M:%SZ")


def micro(t=None):
    return (t or now()).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class FakeKubelet:
    def __init__(self, kubeconfig, nodes, cpu="4", memory="8Gi", pods="110", ready_delay=0.0,
                 labels=None, taints=None, bind_pending=False):
        self.api_client = config.new_client_from_config(config_file=kubeconfig)
        self.core = client.CoreV1Api(self.api_client)
        self.coord = client.CoordinationV1Api(self.api_client)
        self.nodes = list(nodes)
        self.cpu, self.memory, self.pods = cpu, memory, pods
        self.ready_delay = ready_delay
        # round-robin binding of pending pods: only for tests without a scheduler
        self.bind_pending = bind_pending
        self.labels = labels or {}
        self.taints = taints or {}
        self.stopped_nodes = set()
        self.not_ready_pods = set()
        self.hold_ready = False
        self.stop_event = threading.Event()
        self.ip_counter = {}
        self.threads = []
        self.lock = threading.Lock()

    # ---- lifecycle
    def start(self):
        for i, n in enumerate(self.nodes):
            self.register(n, i)
        self.renew_all()
        for target in (self.heartbeat_loop, self.pod_loop):
            t = threading.Thread(target=target, daemon=True)
            t.start()
            self.threads.append(t)
        return self

    def stop(self):
        self.stop_event.set()

    def add_node(self, name):
        self.nodes.append(name)
        self.register(name, len(self.nodes) - 1)
        self.renew(name)

    def stop_heartbeat(self, name):
        self.stopped_nodes.add(name)

    def resume_heartbeat(self, name):
        self.stopped_nodes.discard(name)
        self.renew(name)
        self.post_status(name)

    # ---- nodes
    def register(self, name, index):
        labels = {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                  "kubernetes.io/arch": "amd64"}
        labels.update(self.labels.get(name, {}))
        body = {
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": labels},
            "spec": {"taints": self.taints.get(name, [])},
        }
        try:
            self.core.create_node(body)
        except ApiException as e:
            if e.status != 409:
                raise
        self.ip_counter.setdefault(name, 10)
        self.node_index = getattr(self, "node_index", {})
        self.node_index[name] = index
        self.post_status(name)

    def post_status(self, name):
        idx = self.node_index.get(name, 0)
        status = {
            "capacity": {"cpu": self.cpu, "memory": self.memory, "pods": self.pods},
            "allocatable": {"cpu": self.cpu, "memory": self.memory, "pods": self.pods},
            "addresses": [{"type": "InternalIP", "address": f"10.99.0.{idx + 1}"},
                          {"type": "Hostname", "address": name}],
            "conditions": [{
                "type": "Ready", "status": "True", "reason": "KubeletReady",
                "message": "kubelet is posting ready status",
                "lastHeartbeatTime": rfc3339(), "lastTransitionTime": rfc3339(),
            }],
            "nodeInfo": {"kubeletVersion": "v1.33.0-fake", "operatingSystem": "linux",
                         "architecture": "amd64", "containerRuntimeVersion": "fake://1",
                         "kernelVersion": "", "osImage": "fake", "kubeProxyVersion": "",
                         "machineID": "", "systemUUID": "", "bootID": ""},
        }
        try:
            self.core.patch_node_status(name, {"status": status})
        except ApiException:
            pass

    def renew(self, name):
        body = {
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": name, "namespace": "kube-node-lease"},
            "spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": micro()},
        }
        try:
            self.coord.patch_namespaced_lease(name, "kube-node-lease", {"spec": body["spec"]})
        except ApiException as e:
            if e.status == 404:
                try:
                    self.coord.create_namespaced_lease("kube-node-lease", body)
                except ApiException:
                    pass

    def renew_all(self):
        for n in list(self.nodes):
            if n not in self.stopped_nodes:
                self.renew(n)

    def heartbeat_loop(self):
        last_status = time.time()
        while not self.stop_event.wait(2):
            self.renew_all()
            if time.time() - last_status > 20:
                last_status = time.time()
                for n in list(self.nodes):
                    if n not in self.stopped_nodes:
                        self.post_status(n)

    # ---- pods
    def next_ip(self, node):
        with self.lock:
            self.ip_counter[node] = self.ip_counter.get(node, 10) + 1
            c = self.ip_counter[node]
        idx = self.node_index.get(node, 0)
        return f"10.42.{idx}.{c % 250 + 2}"

    def set_ready(self, namespace, name, ready):
        key = (namespace, name)
        if ready:
            self.not_ready_pods.discard(key)
        else:
            self.not_ready_pods.add(key)
        try:
            pod = self.core.read_namespaced_pod(name, namespace)
        except ApiException:
            return
        self.mark(pod, ready)

    def mark(self, pod, ready):
        ip = (pod.status.pod_ip if pod.status else None) or self.next_ip(pod.spec.node_name)
        st = "True" if ready else "False"
        t = rfc3339()
        containers = [{
            "name": c.name, "image": c.image, "imageID": "", "ready": ready, "restartCount": 0,
            "started": True, "state": {"running": {"startedAt": t}},
        } for c in pod.spec.containers]
        status = {
            "phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
            "hostIP": f"10.99.0.{self.node_index.get(pod.spec.node_name, 0) + 1}",
            "startTime": t,
            "conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": t},
                {"type": "Initialized", "status": "True", "lastTransitionTime": t},
                {"type": "ContainersReady", "status": st, "lastTransitionTime": t},
                {"type": "Ready", "status": st, "lastTransitionTime": t},
            ],
            "containerStatuses": containers,
        }
        try:
            self.core.patch_namespaced_pod_status(pod.metadata.name, pod.metadata.namespace,
                                                  {"status": status})
        except ApiException:
            pass

    def handle(self, pod):
        node = pod.spec.node_name
        if node is None and self.bind_pending and pod.metadata.deletion_timestamp is None:
            with self.lock:
                self.rr = (getattr(self, "rr", -1) + 1) % len(self.nodes)
                target = self.nodes[self.rr]
            body = {"apiVersion": "v1", "kind": "Binding",
                    "metadata": {"name": pod.metadata.name},
                    "target": {"apiVersion": "v1", "kind": "Node", "name": target}}
            try:
                self.core.create_namespaced_pod_binding(
                    pod.metadata.name, pod.metadata.namespace, body, _preload_content=False)
            except ApiException:
                pass
            return
        if node not in self.nodes or node in self.stopped_nodes:
            return
        if pod.metadata.deletion_timestamp is not None:
            try:
                self.core.delete_namespaced_pod(
                    pod.metadata.name, pod.metadata.namespace, grace_period_seconds=0,
                    body=client.V1DeleteOptions(
                        grace_period_seconds=0,
                        preconditions=client.V1Preconditions(uid=pod.metadata.uid)))
            except ApiException:
                pass
            return
        phase = pod.status.phase if pod.status else None
        if phase in ("Succeeded", "Failed"):
            return
        key = (pod.metadata.namespace, pod.metadata.name)
        ready = key not in self.not_ready_pods and not self.hold_ready
        current = {c.type: c.status for c in (pod.status.conditions or [])} if pod.status else {}
        want = "True" if ready else "False"
        if phase == "Running" and current.get("Ready") == want:
            return
        if ready and self.ready_delay and phase != "Running":
            # first report Running but not ready, then ready after the delay
            self.mark(pod, False)
            threading.Timer(self.ready_delay, self.delayed_ready, args=(key,)).start()
            return
        if ready and self.ready_delay and current.get("Ready") != "True":
            return
        self.mark(pod, ready)

    def delayed_ready(self, key):
        if self.stop_event.is_set() or key in self.not_ready_pods or self.hold_ready:
            return
        try:
            pod = self.core.read_namespaced_pod(key[1], key[0])
        except ApiException:
            return
        if pod.metadata.deletion_timestamp is None and pod.spec.node_name not in self.stopped_nodes:
            self.mark(pod, True)

    def release_ready(self):
        """Stop holding readiness back: mark every held pod ready."""
        self.hold_ready = False
        for pod in self.core.list_pod_for_all_namespaces().items:
            if pod.spec.node_name in self.nodes and pod.metadata.deletion_timestamp is None:
                self.handle(pod)

    def pod_loop(self):
        while not self.stop_event.is_set():
            try:
                lst = self.core.list_pod_for_all_namespaces()
                for pod in lst.items:
                    self.handle(pod)
                w = watch.Watch()
                for ev in w.stream(self.core.list_pod_for_all_namespaces,
                                   resource_version=lst.metadata.resource_version,
                                   timeout_seconds=30):
                    if self.stop_event.is_set():
                        w.stop()
                        return
                    if ev["type"] in ("ADDED", "MODIFIED"):
                        self.handle(ev["object"])
            except Exception:
                time.sleep(0.5)
