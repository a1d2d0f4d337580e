"""Through a real kube-apiserver v1.32 and its controller manager (../shared/kube): the chart as shipped.

One cluster for the session (tests/conftest.py ``kube_cluster``), one ``imagegate serve`` for
this module, serving the policy the Helm chart renders (Helm's engine, told the cluster's
version) behind the chart's own webhook configurations, changed only in ``clientConfig``
(tests/kube_cluster.py). What the API server stores, refuses and sends is the evidence: the
webhook's decision log says which requests reached it.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml

from tests.conftest import REPO_ROOT, admission_review
from tests.kube_cluster import KubeCluster, decisions, register, unregister, wait_for
from tests.shipped import CHART, policy_text, render_chart, webhook_configurations
from tests.webhook_process import WebhookProcess, run_webhook

TOOLFORGE = REPO_ROOT / "tests" / "fixtures" / "toolforge"
TOOL = "tool-foo"  # tests/fixtures/toolforge/identities.yaml: uid 52503
UID = 52503
IMAGE = "docker-registry.svc.toolforge.org/toolforge-python311-sssd-base:latest"
UNTRUSTED = "docker.io/library/python:3.12"


def server_version(cluster: KubeCluster) -> str:
    version = json.loads(cluster.kubectl("version", "-o", "json").stdout)["serverVersion"]["gitVersion"]
    return str(version)


@dataclass
class Gate:
    """imagegate serving the chart's policy, registered with the cluster; stopped and started in place."""

    cluster: KubeCluster
    workdir: Path
    policy: Path
    identities: Path
    grants: Path
    webhook: WebhookProcess | None = None
    registered: list[str] = field(default_factory=list)

    @contextmanager
    def serving(self) -> Iterator[WebhookProcess]:
        with run_webhook(
            self.workdir, "--identities", str(self.identities), policy=self.policy, grants=self.grants
        ) as webhook:
            self.webhook = webhook
            yield webhook

    @contextmanager
    def stopped(self) -> Iterator[None]:
        """imagegate unreachable (its configurations stay registered), then serving again on the same port."""
        assert self.webhook is not None
        self.webhook.stop()
        try:
            yield
        finally:
            self.webhook.restart()

    def received(self) -> list[dict[str, Any]]:
        assert self.webhook is not None
        return decisions(self.webhook)


@pytest.fixture(scope="module")
def gate(kube_cluster: KubeCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gate]:
    workdir = tmp_path_factory.mktemp("gate")
    with helm.Chart.load(CHART) as chart:
        documents = render_chart(chart, kube_version=server_version(kube_cluster))
    (workdir / "policy.yaml").write_text(policy_text(documents))
    (workdir / "grants.yaml").write_text("apiVersion: imagegate.toolforge.org/v1\nkind: ImageGrants\ngrants: []\n")
    identities = TOOLFORGE / "identities.yaml"
    found = Gate(kube_cluster, workdir, workdir / "policy.yaml", identities, workdir / "grants.yaml")
    for namespace in yaml.safe_load_all((TOOLFORGE / "namespaces.yaml").read_text()):
        kube_cluster.namespace(namespace["metadata"]["name"], namespace["metadata"]["labels"])
    with found.serving() as webhook:
        found.registered = register(kube_cluster, webhook_configurations(documents), webhook)
        try:
            yield found
        finally:
            unregister(kube_cluster, found.registered)


def pod(name: str, image: str = IMAGE, **spec: Any) -> dict[str, Any]:
    """A pod as a user writes it: no security context."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": TOOL},
        "spec": {"containers": [{"name": "main", "image": image}], **spec},
    }


def create(cluster: KubeCluster, document: dict[str, Any], *extra: str) -> Any:
    return cluster.kubectl("create", "-f", "-", *extra, stdin=json.dumps(document), check=False)


def stored(cluster: KubeCluster, kind: str, name: str, namespace: str = TOOL) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(cluster.kubectl("-n", namespace, "get", kind, name, "-o", "json").stdout)
    return found


def test_a_pod_as_a_user_writes_it_is_stored_with_the_tools_identity(gate: Gate) -> None:
    done = create(gate.cluster, pod("user-pod"))
    assert done.returncode == 0, done.stderr
    spec = stored(gate.cluster, "pod", "user-pod")["spec"]
    context = spec["securityContext"]
    assert (context["runAsUser"], context["runAsGroup"], context["fsGroup"]) == (UID, UID, UID)
    assert context["runAsNonRoot"] is True and context["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = spec["containers"]
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]


def test_an_untrusted_image_is_refused_with_imagegates_reason(gate: Gate) -> None:
    done = create(gate.cluster, pod("untrusted", UNTRUSTED))
    assert done.returncode != 0
    assert 'admission webhook "validate.imagegate.toolforge.org" denied the request' in done.stderr
    assert "docker.io/library/python:3.12" in done.stderr


def test_the_webhook_stopped_fails_closed_in_tool_namespaces_and_leaves_kube_system_alone(gate: Gate) -> None:
    with gate.stopped():
        refused = create(gate.cluster, pod("while-stopped"))
        assert refused.returncode != 0 and "failed calling webhook" in refused.stderr
        system = pod("system-pod", UNTRUSTED)
        system["metadata"]["namespace"] = "kube-system"
        admitted = create(gate.cluster, system)
        assert admitted.returncode == 0, admitted.stderr
        gate.cluster.kubectl("-n", "kube-system", "delete", "pod", "system-pod", "--wait=false")
    wait_for(lambda: create(gate.cluster, pod("after-restart")).returncode == 0)


def test_version_fit_on_this_1_32_api_server(gate: Gate) -> None:
    """The chart, told v1.32, serves whenDropped: warn: a tool pod is admitted, and kubectl shows why it warns."""
    assert server_version(gate.cluster).startswith("v1.32.")
    assert "whenDropped: warn" in gate.policy.read_text()
    done = create(gate.cluster, pod("fitted"))
    assert done.returncode == 0, done.stderr
    assert "Warning:" in done.stderr and "supplementalGroupsPolicy" in done.stderr
    # The API server dropped the field /mutate set: the reason the chart fitted the policy.
    assert "supplementalGroupsPolicy" not in stored(gate.cluster, "pod", "fitted")["spec"]["securityContext"]


def jobs_framework_objects() -> list[dict[str, Any]]:
    """Toolforge's jobs framework's objects, as tests/fixtures/toolforge writes them (their Pods as
    the controllers' would be: names instead of generateName, no owners, no token volume)."""
    found = []
    for path in sorted((TOOLFORGE / "admitted").glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if not document or document["metadata"]["namespace"] != TOOL:
                continue
            metadata = document["metadata"]
            metadata.pop("ownerReferences", None)
            metadata.pop("generateName", None)
            metadata["name"] = f"{path.stem[:20]}-{document['kind'].lower()}"
            if document["kind"] == "Pod":
                spec = document["spec"]
                spec["volumes"] = [v for v in spec.get("volumes", []) if not v["name"].startswith("kube-api-access")]
                for container in spec["containers"]:
                    mounts = container.get("volumeMounts", [])
                    container["volumeMounts"] = [m for m in mounts if not m["name"].startswith("kube-api-access")]
            found.append(document)
    return found


def test_the_jobs_frameworks_objects_are_admitted_as_written(gate: Gate) -> None:
    objects = jobs_framework_objects()
    assert {o["kind"] for o in objects} >= {"Pod", "Deployment", "CronJob", "Job"}
    for document in objects:
        done = create(gate.cluster, document)
        assert done.returncode == 0, (document["metadata"]["name"], done.stderr)
    # Each Pod as written (the full security context) is stored with the tool's identity, not another.
    for document in objects:
        if document["kind"] == "Pod":
            context = stored(gate.cluster, "pod", document["metadata"]["name"])["spec"]["securityContext"]
            assert context["runAsUser"] == UID


WORKLOADS: dict[str, dict[str, Any]] = {
    "Deployment": {"apiVersion": "apps/v1", "spec": {"replicas": 2}},
    "StatefulSet": {"apiVersion": "apps/v1", "spec": {"replicas": 1, "serviceName": "wl-statefulset"}},
    "ReplicationController": {"apiVersion": "v1", "spec": {"replicas": 1}},
    "Job": {"apiVersion": "batch/v1", "spec": {}},
}


def workload(kind: str, image: str = IMAGE) -> dict[str, Any]:
    """A workload as a user writes it: a pod template with no security context."""
    name = f"wl-{kind.lower()}"
    labels = {"app": name}
    template: dict[str, Any] = {
        "metadata": {"labels": labels},
        "spec": {"containers": [{"name": "main", "image": image}]},
    }
    extra = WORKLOADS[kind]
    spec: dict[str, Any] = {**extra["spec"], "template": template}
    if kind == "Job":
        template["spec"]["restartPolicy"] = "Never"
    elif kind == "ReplicationController":
        spec["selector"] = labels
    else:
        spec["selector"] = {"matchLabels": labels}
    return {
        "apiVersion": extra["apiVersion"],
        "kind": kind,
        "metadata": {"name": name, "namespace": TOOL},
        "spec": spec,
    }


def pods_of(cluster: KubeCluster, label: str) -> list[dict[str, Any]]:
    listed = json.loads(cluster.kubectl("-n", TOOL, "get", "pods", "-l", label, "-o", "json").stdout)["items"]
    return [p for p in listed if "deletionTimestamp" not in p["metadata"]]


def test_every_workload_kind_through_its_controller(gate: Gate) -> None:
    """Deployment -> ReplicaSet -> Pods, StatefulSet, ReplicationController, Job, CronJob -> Job -> Pod:
    the controllers' Pods carry the tool's identity (/mutate filled in the templates and the Pods)."""
    for kind in WORKLOADS:
        done = create(gate.cluster, workload(kind))
        assert done.returncode == 0, (kind, done.stderr)
    cron = workload("Job")
    cron.update(kind="CronJob", metadata={"name": "wl-cronjob", "namespace": TOOL})
    cron["spec"] = {"schedule": "0 0 1 1 *", "jobTemplate": {"spec": cron["spec"]}}
    assert create(gate.cluster, cron).returncode == 0
    gate.cluster.kubectl("-n", TOOL, "create", "job", "wl-from-cron", "--from=cronjob/wl-cronjob")
    expected = {"wl-deployment": 2, "wl-statefulset": 1, "wl-replicationcontroller": 1, "wl-job": 1}
    for name, count in expected.items():

        def made_by(label: str = f"app={name}", at_least: int = count) -> list[dict[str, Any]] | None:
            found = pods_of(gate.cluster, label)
            return found if len(found) >= at_least else None

        for made in wait_for(made_by):
            assert made["spec"]["securityContext"]["runAsUser"] == UID, made["metadata"]["name"]
    from_cron = wait_for(lambda: pods_of(gate.cluster, "job-name=wl-from-cron"))
    assert from_cron[0]["spec"]["securityContext"]["runAsUser"] == UID
    # The templates themselves were mutated on CREATE; a DaemonSet too (no node here: no Pod).
    daemonset = workload("Deployment")
    daemonset.update(kind="DaemonSet", metadata={"name": "wl-daemonset", "namespace": TOOL})
    del daemonset["spec"]["replicas"]
    assert create(gate.cluster, daemonset).returncode == 0
    for kind, name in (("deployment", "wl-deployment"), ("daemonset", "wl-daemonset"), ("cronjob", "wl-cronjob")):
        spec = stored(gate.cluster, kind, name)["spec"]
        template = spec["jobTemplate"]["spec"]["template"] if kind == "cronjob" else spec["template"]
        assert template["spec"]["securityContext"]["runAsUser"] == UID, kind


def test_an_untrusted_workload_is_refused_before_any_pod(gate: Gate) -> None:
    done = create(gate.cluster, {**workload("Deployment", UNTRUSTED), "metadata": {"name": "bad", "namespace": TOOL}})
    assert done.returncode != 0 and 'admission webhook "validate.imagegate.toolforge.org" denied' in done.stderr


def test_image_volumes_are_judged(gate: Gate) -> None:
    def with_volume(name: str, reference: str) -> dict[str, Any]:
        document = pod(name)
        document["spec"]["volumes"] = [{"name": "data", "image": {"reference": reference}}]
        document["spec"]["containers"][0]["volumeMounts"] = [{"name": "data", "mountPath": "/data"}]
        return document

    admitted = create(gate.cluster, with_volume("image-volume", IMAGE))
    assert admitted.returncode == 0, admitted.stderr
    assert stored(gate.cluster, "pod", "image-volume")["spec"]["volumes"][0]["image"]["reference"] == IMAGE
    refused = create(gate.cluster, with_volume("image-volume-untrusted", UNTRUSTED))
    assert refused.returncode != 0 and UNTRUSTED in refused.stderr


def test_server_dry_runs_are_answered_and_nothing_is_stored(gate: Gate) -> None:
    done = create(gate.cluster, pod("dry"), "--dry-run=server", "-o", "json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["spec"]["securityContext"]["runAsUser"] == UID  # mutated in the dry run
    assert gate.cluster.kubectl("-n", TOOL, "get", "pod", "dry", check=False).returncode != 0
    refused = create(gate.cluster, pod("dry-untrusted", UNTRUSTED), "--dry-run=server")
    assert refused.returncode != 0 and "denied the request" in refused.stderr
    assert any(d.get("dry_run") for d in gate.received())


def test_kubectl_debug_profiles(gate: Gate) -> None:
    assert create(gate.cluster, pod("debugged")).returncode == 0

    def debug(profile: str) -> Any:
        return gate.cluster.kubectl(
            "debug", "-n", TOOL, "pod/debugged", f"--image={IMAGE}", f"--profile={profile}", check=False
        )

    for profile in ("legacy", "restricted"):
        done = debug(profile)
        assert done.returncode == 0, (profile, done.stderr)
    ephemeral = stored(gate.cluster, "pod", "debugged")["spec"]["ephemeralContainers"]
    assert len(ephemeral) == 2
    for container in ephemeral:  # each runs as the tool (the running pod's context cannot change)
        assert container["securityContext"]["runAsUser"] == UID
    refused = debug("sysadmin")
    assert refused.returncode != 0
    assert 'admission webhook "validate-update.imagegate.toolforge.org" denied the request' in refused.stderr
    assert "privileged" in refused.stderr


def writes_without_pod_changes(cluster: KubeCluster, suffix: str) -> None:
    """Label, annotate, finalizer, scale, Job deletion: every one succeeds."""
    cluster.kubectl("-n", TOOL, "label", "pod", "user-pod", f"seen={suffix}", "--overwrite")
    cluster.kubectl("-n", TOOL, "annotate", "deployment", "wl-deployment", f"note={suffix}", "--overwrite")
    finalizer = json.dumps({"metadata": {"finalizers": ["imagegate.test/keep"]}})
    cluster.kubectl("-n", TOOL, "patch", "pod", "user-pod", "--type=merge", "-p", finalizer)
    cluster.kubectl("-n", TOOL, "patch", "pod", "user-pod", "--type=merge", "-p", '{"metadata":{"finalizers":null}}')
    cluster.kubectl("-n", TOOL, "scale", "deployment", "wl-deployment", "--replicas=1")
    cluster.kubectl("-n", TOOL, "scale", "statefulset", "wl-statefulset", "--replicas=0")


def test_writes_that_leave_pods_alone_never_reach_imagegate(gate: Gate) -> None:
    wait_for(lambda: len(pods_of(gate.cluster, "app=wl-deployment")) == 2)
    before = len(gate.received())
    writes_without_pod_changes(gate.cluster, "up")
    # The controllers' own writes follow (ReplicaSet spec.replicas, status, the Pods' deletion).
    wait_for(lambda: len(pods_of(gate.cluster, "app=wl-deployment")) == 1)
    # Every write above is an UPDATE; a CREATE here would be a controller's (a CronJob's schedule).
    assert [d for d in gate.received()[before:] if d["operation"] == "UPDATE"] == []


def test_with_imagegate_stopped_scaling_labels_finalizers_and_job_deletion_go_on(gate: Gate) -> None:
    """Issue 22 item 3: the Deployment scales down (its ReplicaSet's spec.replicas UPDATE is not sent)."""
    gate.cluster.kubectl("-n", TOOL, "scale", "deployment", "wl-deployment", "--replicas=2")
    wait_for(lambda: len(pods_of(gate.cluster, "app=wl-deployment")) == 2)
    job_pods = wait_for(lambda: pods_of(gate.cluster, "job-name=wl-job"))
    assert "batch.kubernetes.io/job-tracking" in job_pods[0]["metadata"].get("finalizers", [])
    with gate.stopped():
        writes_without_pod_changes(gate.cluster, "down")
        gate.cluster.kubectl("-n", TOOL, "scale", "deployment", "wl-deployment", "--replicas=0")
        replica_set = wait_for(
            lambda: [
                rs
                for rs in json.loads(
                    gate.cluster.kubectl("-n", TOOL, "get", "rs", "-l", "app=wl-deployment", "-o", "json").stdout
                )["items"]
                if rs["spec"]["replicas"] == 0
            ]
        )
        assert replica_set
        wait_for(lambda: pods_of(gate.cluster, "app=wl-deployment") == [] or None)
        # The Job deleted: its Pod's job-tracking finalizer is released (an UPDATE) and the Pod goes.
        gate.cluster.kubectl("-n", TOOL, "delete", "job", "wl-job", "--cascade=foreground", "--wait=false")
        wait_for(
            lambda: (
                gate.cluster.kubectl("-n", TOOL, "get", "pod", job_pods[0]["metadata"]["name"], check=False).returncode
                != 0
            ),
            timeout=45,
        )
        # A new pod still fails closed.
        assert create(gate.cluster, pod("stopped-again")).returncode != 0


def test_no_stored_pod_is_one_mutate_would_still_change(gate: Gate) -> None:
    """Every Pod the API server stored in the tool namespace, sent to /mutate again as a CREATE:
    nothing left to fill in but supplementalGroupsPolicy, which this v1.32 API server drops after
    /mutate set it (the reason the chart fitted whenDropped)."""
    assert gate.webhook is not None
    http = gate.webhook.client()
    listed = json.loads(gate.cluster.kubectl("-n", TOOL, "get", "pods", "-o", "json").stdout)["items"]
    assert len(listed) >= 10
    for stored_pod in listed:
        stored_pod.pop("status", None)
        review = admission_review(stored_pod, TOOL)
        answer = http.post("/mutate", json=review).json()["response"]
        patch = json.loads(base64.b64decode(answer["patch"])) if "patch" in answer else []
        leftover = [op for op in patch if op["path"] != "/spec/securityContext/supplementalGroupsPolicy"]
        assert leftover == [], (stored_pod["metadata"]["name"], leftover)
