"""Jobs, CronJobs, TTL-after-finished and event compaction, driven by the
in-process controllers.

There is no kubelet: Job templates bind their pods with `spec.nodeName`
(a Node object exists for them) and the tests play the kubelet by writing
pod status (phase Succeeded/Failed with a terminated container) and by
moving pods that are being deleted to phase Failed, as a kubelet does
before it removes them.
"""
import datetime
import json
import time

import pytest
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from conftest import ALL_KUBECTLS, Kubectl, Server, wait_for

NODE = "jobs-node"
TRACKING = "batch.kubernetes.io/job-tracking"


def now():
    return datetime.datetime.now(datetime.timezone.utc)


def rfc3339(t=None):
    return (t or now()).strftime("%Y-%m-%dT%H:%M:%SZ")


def old_events(core, k):
    """Events last seen two hours ago (both APIs) plus a fresh one."""
    ns = "default"
    two_hours_ago = now() - datetime.timedelta(hours=2)
    ref = {"kind": "Pod", "namespace": ns, "name": "ghost", "apiVersion": "v1"}
    core_old = {
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": "ttl-old-core", "namespace": ns},
        "involvedObject": ref, "reason": "Old", "message": "old", "type": "Normal",
        "firstTimestamp": rfc3339(two_hours_ago), "lastTimestamp": rfc3339(two_hours_ago),
        "count": 1, "source": {"component": "test"},
    }
    core_new = dict(core_old, metadata={"name": "ttl-new-core", "namespace": ns},
                    firstTimestamp=rfc3339(), lastTimestamp=rfc3339())
    ev_old = {
        "apiVersion": "events.k8s.io/v1", "kind": "Event",
        "metadata": {"name": "ttl-old-ev", "namespace": ns},
        "eventTime": two_hours_ago.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "reportingController": "test", "reportingInstance": "test", "action": "Test",
        "reason": "Old", "regarding": ref, "type": "Normal", "note": "old",
    }
    for obj in (core_old, core_new, ev_old):
        k.run("create", "-f", "-", input=json.dumps(obj))
    return ns


@pytest.fixture(scope="module")
def cluster():
    s = Server().start()
    k = Kubectl(ALL_KUBECTLS[-1], s)
    api = config.new_client_from_config(config_file=s.kubeconfig)
    core = client.CoreV1Api(api)
    core.create_node({"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE}})
    cap = {"cpu": "4", "memory": "8Gi", "pods": "110"}
    core.patch_node_status(NODE, {"status": {
        "capacity": cap, "allocatable": cap,
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                        "message": "ready", "lastHeartbeatTime": rfc3339(),
                        "lastTransitionTime": rfc3339()}]}})
    # created first: the event sweep runs every minute, checked by the last test
    old_events(core, k)
    yield s, api
    s.cleanup()


@pytest.fixture
def k(cluster):
    return Kubectl(ALL_KUBECTLS[-1], cluster[0])


@pytest.fixture
def core(cluster):
    return client.CoreV1Api(cluster[1])


@pytest.fixture
def batch(cluster):
    return client.BatchV1Api(cluster[1])


@pytest.fixture
def ns(cluster, k):
    name = f"jobs-{int(time.time() * 1000) % 10000000}"
    k.run("create", "namespace", name)
    yield name
    k.run("delete", "namespace", name, "--wait=false", check=False)


def job_manifest(name, completions=1, parallelism=1, **spec):
    body = {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
        "spec": {
            "completions": completions, "parallelism": parallelism,
            "template": {"spec": {
                "nodeName": NODE, "restartPolicy": "Never",
                "terminationGracePeriodSeconds": 0,
                "containers": [{"name": "main", "image": "busybox"}],
            }},
        },
    }
    body["spec"].update(spec)
    return body


def apply(k, ns, obj):
    k.run("apply", "-n", ns, "-f", "-", input=json.dumps(obj))


def job_pods(core, ns, job):
    return core.list_namespaced_pod(ns, label_selector=f"batch.kubernetes.io/job-name={job}").items


def is_active(p):
    return p.metadata.deletion_timestamp is None and p.status.phase not in ("Succeeded", "Failed")


def finish(core, pod, phase="Succeeded", exit_code=0):
    """Play the kubelet: the container terminated with `exit_code`."""
    t = rfc3339()
    status = {
        "phase": phase,
        "conditions": [{"type": "Ready", "status": "False", "lastTransitionTime": t}],
        "containerStatuses": [{
            "name": "main", "image": "busybox", "imageID": "", "ready": False,
            "restartCount": 0,
            "state": {"terminated": {"exitCode": exit_code, "startedAt": t, "finishedAt": t,
                                     "reason": "Completed" if exit_code == 0 else "Error"}},
        }],
    }
    core.patch_namespaced_pod_status(pod.metadata.name, pod.metadata.namespace, {"status": status})


def kill_terminating(core, ns):
    """Play the kubelet for deleted pods: their containers are killed."""
    for p in core.list_namespaced_pod(ns).items:
        if p.metadata.deletion_timestamp is not None and p.status.phase not in ("Succeeded", "Failed"):
            try:
                finish(core, p, "Failed", 137)
            except ApiException:
                pass


def job(batch, ns, name):
    return batch.read_namespaced_job(name, ns)


def condition(j, type_):
    for c in (j.status.conditions or []) if j.status else []:
        if c.type == type_ and c.status == "True":
            return c
    return None


def events(k, ns, kind, name):
    out = k.json("get", "events", "-n", ns,
                 "--field-selector", f"involvedObject.kind={kind},involvedObject.name={name}")
    return [(e["reason"], e["message"]) for e in out["items"]]


def test_completions_with_parallelism(ns, k, core, batch):
    apply(k, ns, job_manifest("pi", completions=5, parallelism=2))
    max_active = 0
    done = set()
    deadline = time.time() + 60
    while condition(job(batch, ns, "pi"), "Complete") is None:
        assert time.time() < deadline, "job did not complete"
        active = [p for p in job_pods(core, ns, "pi") if is_active(p)]
        max_active = max(max_active, len(active))
        assert len(active) <= 2, [p.metadata.name for p in active]
        for p in active:
            if p.metadata.name not in done:
                done.add(p.metadata.name)
                finish(core, p)
        time.sleep(0.1)
    assert max_active == 2
    k.run("wait", "-n", ns, "--for=condition=complete", "job/pi", "--timeout=30s")
    j = job(batch, ns, "pi")
    assert j.status.succeeded == 5
    assert not j.status.failed
    assert j.status.completion_time is not None
    assert len(done) == 5, done
    # every pod was counted and released
    for p in job_pods(core, ns, "pi"):
        assert TRACKING not in (p.metadata.finalizers or []), p.metadata.name
    out = k.run("get", "job", "pi", "-n", ns).stdout
    assert "5/5" in out and "Complete" in out, out
    wait_for(lambda: ("Completed", "Job completed") in events(k, ns, "Job", "pi"),
             what="Completed event")
    assert sum(1 for r, _ in events(k, ns, "Job", "pi") if r == "SuccessfulCreate") == 5


def test_backoff_limit_fails_the_job(ns, k, core, batch):
    apply(k, ns, job_manifest("flaky", backoffLimit=1))
    first = wait_for(lambda: [p for p in job_pods(core, ns, "flaky") if is_active(p)],
                     what="first pod")[0]
    finish(core, first, "Failed", 1)
    # the replacement comes after the pod failure backoff (10 s)
    second = wait_for(
        lambda: [p for p in job_pods(core, ns, "flaky")
                 if is_active(p) and p.metadata.name != first.metadata.name],
        timeout=30, what="replacement pod")[0]
    assert job(batch, ns, "flaky").status.failed == 1
    finish(core, second, "Failed", 1)
    k.run("wait", "-n", ns, "--for=condition=failed", "job/flaky", "--timeout=30s")
    j = job(batch, ns, "flaky")
    c = condition(j, "Failed")
    assert c.reason == "BackoffLimitExceeded"
    assert c.message == "Job has reached the specified backoff limit"
    assert j.status.failed == 2
    assert condition(j, "FailureTarget") is not None
    assert ("BackoffLimitExceeded", "Job has reached the specified backoff limit") in \
        wait_for(lambda: events(k, ns, "Job", "flaky"), what="events")


def test_active_deadline(ns, k, core, batch):
    apply(k, ns, job_manifest("slow", completions=2, parallelism=2, activeDeadlineSeconds=2))
    wait_for(lambda: len([p for p in job_pods(core, ns, "slow") if is_active(p)]) == 2,
             what="two running pods")

    def failed():
        kill_terminating(core, ns)
        return condition(job(batch, ns, "slow"), "Failed")

    c = wait_for(failed, timeout=30, interval=0.2, what="Failed condition")
    assert c.reason == "DeadlineExceeded"
    assert c.message == "Job was active longer than specified deadline"
    j = job(batch, ns, "slow")
    assert j.status.failed == 2
    assert not j.status.active
    wait_for(lambda: all(TRACKING not in (p.metadata.finalizers or [])
                         for p in job_pods(core, ns, "slow")), what="finalizers removed")


def test_indexed_job(ns, k, core, batch):
    apply(k, ns, job_manifest("idx", completions=3, parallelism=3, completionMode="Indexed"))
    pods = wait_for(lambda: (lambda ps: ps if len(ps) == 3 else None)(
        [p for p in job_pods(core, ns, "idx") if is_active(p)]), what="three pods")
    indexes = sorted(p.metadata.annotations["batch.kubernetes.io/job-completion-index"] for p in pods)
    assert indexes == ["0", "1", "2"]
    for p in pods:
        ix = p.metadata.annotations["batch.kubernetes.io/job-completion-index"]
        assert p.spec.hostname == f"idx-{ix}"
        assert p.metadata.name.startswith(f"idx-{ix}-")
        env = {e.name: e for e in p.spec.containers[0].env}
        assert env["JOB_COMPLETION_INDEX"].value_from.field_ref.field_path == \
            "metadata.labels['batch.kubernetes.io/job-completion-index']"
    by_index = {p.metadata.annotations["batch.kubernetes.io/job-completion-index"]: p for p in pods}
    finish(core, by_index["1"])
    wait_for(lambda: job(batch, ns, "idx").status.completed_indexes == "1", what="index 1 completed")
    finish(core, by_index["0"])
    finish(core, by_index["2"])
    k.run("wait", "-n", ns, "--for=condition=complete", "job/idx", "--timeout=30s")
    j = job(batch, ns, "idx")
    assert j.status.completed_indexes == "0-2"
    assert j.status.succeeded == 3


def test_suspend_and_resume(ns, k, core, batch):
    apply(k, ns, job_manifest("sus", completions=2, parallelism=2, suspend=True))
    c = wait_for(lambda: condition(job(batch, ns, "sus"), "Suspended"), what="Suspended")
    assert c.reason == "JobSuspended"
    assert job_pods(core, ns, "sus") == []
    assert job(batch, ns, "sus").status.start_time is None
    k.run("patch", "job", "sus", "-n", ns, "--type=merge", "-p", '{"spec":{"suspend":false}}')
    wait_for(lambda: len([p for p in job_pods(core, ns, "sus") if is_active(p)]) == 2,
             what="pods after resume")
    j = job(batch, ns, "sus")
    assert condition(j, "Suspended") is None
    assert j.status.start_time is not None
    # suspending again deletes the running pods (not counted as failures)
    k.run("patch", "job", "sus", "-n", ns, "--type=merge", "-p", '{"spec":{"suspend":true}}')
    wait_for(lambda: job_pods(core, ns, "sus") == [], what="pods deleted on suspend")
    j = wait_for(lambda: (lambda j: j if condition(j, "Suspended") else None)(job(batch, ns, "sus")),
                 what="Suspended again")
    assert not j.status.failed and not j.status.active
    reasons = [r for r, _ in wait_for(lambda: events(k, ns, "Job", "sus"), what="events")]
    assert "Suspended" in reasons and "Resumed" in reasons
    k.run("patch", "job", "sus", "-n", ns, "--type=merge", "-p", '{"spec":{"suspend":false}}')

    def finish_all():
        for p in job_pods(core, ns, "sus"):
            if is_active(p):
                finish(core, p)
        return condition(job(batch, ns, "sus"), "Complete")

    wait_for(finish_all, interval=0.2, what="completion after resume")


def test_ttl_after_finished_deletes_job_and_pods(ns, k, core, batch):
    apply(k, ns, job_manifest("short", ttlSecondsAfterFinished=1))
    pod = wait_for(lambda: [p for p in job_pods(core, ns, "short") if is_active(p)], what="pod")[0]
    finish(core, pod)

    def gone():
        try:
            job(batch, ns, "short")
            return False
        except ApiException as e:
            return e.status == 404

    wait_for(gone, timeout=20, what="job deleted by TTL")
    wait_for(lambda: job_pods(core, ns, "short") == [], what="pods deleted with the job")


def test_tracking_finalizer_removed_when_job_is_gone(ns, k, core, batch):
    apply(k, ns, job_manifest("orph", completions=2, parallelism=2))
    pods = wait_for(lambda: (lambda ps: ps if len(ps) == 2 else None)(job_pods(core, ns, "orph")),
                    what="pods")
    assert all(TRACKING in p.metadata.finalizers for p in pods)
    k.run("delete", "job", "orph", "-n", ns, "--cascade=orphan")
    # orphaned pods lose the finalizer and can be deleted
    wait_for(lambda: all(TRACKING not in (p.metadata.finalizers or [])
                         for p in job_pods(core, ns, "orph")), what="finalizer removed from orphans")
    k.run("delete", "pods", "-n", ns, "-l", "batch.kubernetes.io/job-name=orph", "--wait=false")
    wait_for(lambda: job_pods(core, ns, "orph") == [], what="orphans deleted")
    # background deletion: the garbage collector deletes the pods, the
    # controller releases them
    apply(k, ns, job_manifest("bg", completions=2, parallelism=2))
    wait_for(lambda: len(job_pods(core, ns, "bg")) == 2, what="pods")
    k.run("delete", "job", "bg", "-n", ns, "--cascade=background")
    wait_for(lambda: job_pods(core, ns, "bg") == [], what="pods of a deleted job gone")


def cronjob_manifest(name, schedule="*/1 * * * *", **spec):
    body = {
        "apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": name},
        "spec": {
            "schedule": schedule,
            "jobTemplate": {"spec": job_manifest("x")["spec"]},
        },
    }
    body["spec"].update(spec)
    return body


def owned_jobs(batch, ns, cj):
    return [j for j in batch.list_namespaced_job(ns).items
            if any(o.kind == "CronJob" and o.name == cj for o in j.metadata.owner_references or [])]


@pytest.mark.slow
def test_cronjob_schedules_forbids_and_prunes(ns, k, core, batch):
    # Forbid: the first run is forced right away by backdating
    # lastScheduleTime; the next minute must not start a second Job.
    apply(k, ns, cronjob_manifest("forbid", concurrencyPolicy="Forbid"))
    k.run("patch", "cronjob", "forbid", "-n", ns, "--subresource=status", "--type=merge", "-p",
          json.dumps({"status": {"lastScheduleTime": rfc3339(now() - datetime.timedelta(minutes=3))}}))
    first = wait_for(lambda: owned_jobs(batch, ns, "forbid"), what="forced first run")
    assert len(first) == 1
    cj = k.json("get", "cronjob", "forbid", "-n", ns)
    assert [a["name"] for a in cj["status"]["active"]] == [first[0].metadata.name]
    assert first[0].metadata.annotations["batch.kubernetes.io/cronjob-scheduled-timestamp"]

    # History limits, with Jobs made by `kubectl create job --from=cronjob/…`.
    apply(k, ns, cronjob_manifest("hist", suspend=True, successfulJobsHistoryLimit=1,
                                  failedJobsHistoryLimit=1))
    for i in range(3):
        k.run("create", "job", f"hist-manual-{i}", "-n", ns, "--from=cronjob/hist")
        manual = job(batch, ns, f"hist-manual-{i}")
        assert manual.metadata.annotations.get("cronjob.kubernetes.io/instantiate") == "manual"
        pod = wait_for(lambda: [p for p in job_pods(core, ns, f"hist-manual-{i}") if is_active(p)],
                       what="manual job pod")[0]
        finish(core, pod)
        wait_for(lambda: condition(job(batch, ns, f"hist-manual-{i}"), "Complete"),
                 what="manual job complete")
        time.sleep(1.1)  # distinct start times (second resolution)
    wait_for(lambda: sorted(j.metadata.name for j in owned_jobs(batch, ns, "hist")) == ["hist-manual-2"],
             timeout=20, what="history pruned to the newest job")
    cj = k.json("get", "cronjob", "hist", "-n", ns)
    assert cj["status"].get("lastSuccessfulTime")

    # A plain schedule (`kubectl create cronjob`) creates a Job within 70 s.
    k.run("create", "cronjob", "every", "-n", ns, "--image=busybox", "--schedule=*/1 * * * *",
          "--", "true")
    scheduled = wait_for(lambda: owned_jobs(batch, ns, "every"), timeout=70, interval=0.5,
                         what="scheduled job")
    minute = int(scheduled[0].metadata.name.rsplit("-", 1)[1])
    assert minute * 60 <= time.time() + 1
    wait_for(lambda: k.json("get", "cronjob", "every", "-n", ns)["status"].get("active"),
             what="active list")
    # by now a minute boundary passed since the forced run: Forbid held
    wait_for(lambda: any(r == "JobAlreadyActive" for r, _ in events(k, ns, "CronJob", "forbid")),
             timeout=15, what="JobAlreadyActive event")
    assert len(owned_jobs(batch, ns, "forbid")) == 1
    reasons = [r for r, _ in events(k, ns, "CronJob", "every")]
    assert "SuccessfulCreate" in reasons


def test_event_ttl_deletes_old_events(cluster, core):
    """Runs last: the sweep is once a minute, the old events were created at
    module start."""
    ev = client.EventsV1Api(cluster[1])

    def gone(read, name):
        try:
            read(name, "default")
            return False
        except ApiException as e:
            return e.status == 404

    wait_for(lambda: gone(core.read_namespaced_event, "ttl-old-core"), timeout=80, interval=1,
             what="old core/v1 event deleted")
    wait_for(lambda: gone(ev.read_namespaced_event, "ttl-old-ev"), timeout=10, interval=1,
             what="old events.k8s.io event deleted")
    core.read_namespaced_event("ttl-new-core", "default")
