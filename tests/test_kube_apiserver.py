"""Through a real kube-apiserver v1.32 and its controller manager (../shared/kube): the chart as shipped.

One cluster for the session (tests/conftest.py ``kube_cluster``), one ``imagegate serve`` for
this module, serving the policy the Helm chart renders (Helm's engine, told the cluster's
version) behind the chart's own webhook configurations, changed only in ``clientConfig``
(tests/kube_cluster.py). What the API server stores, refuses and sends is the evidence: the
webhook's decision log says which requests reached it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml

from tests.conftest import REPO_ROOT
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
