"""Pinning and grants through a real kube-apiserver v1.32 (issue 22 items 1 and 7).

The chart rendered by Helm's engine with pinning turned on through ``policy.override`` (the
case that was skipped: its condition came from a fixed file made without pinning), served in
front of a real registry (docker-registry on loopback). No pod that ``/mutate`` would change is
stored unchanged: a pod with the full security context, a Deployment's template changed by
tag on UPDATE. With the webhooks of another policy registered (a ConfigMap edited behind the
chart's back) the drift shows: ``/validate``'s warning in kubectl's output, ``/readyz``'s
fingerprint against the configuration's annotation. A grant's expiry warning reaches kubectl,
and its expiry denies.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest

from imagegate.core.webhooks import CONDITION_ANNOTATION
from tests.conftest import GRANTS_HEADER, REPO_ROOT, admission_review
from tests.kube_cluster import KubeCluster, register, unregister, wait_for
from tests.oci_images import OciLayout, layers, skopeo_inspect
from tests.registry_process import Registry, run_registry
from tests.shipped import CHART, one, policy_text, render_chart, webhook_configurations
from tests.test_kube_apiserver import server_version
from tests.webhook_process import WebhookProcess, run_webhook

IDENTITIES = REPO_ROOT / "tests" / "fixtures" / "toolforge" / "identities.yaml"
TOOL = "tool-pinned"
GRANTEE = "tool-granted"  # no pinning there: docker.io is never asked
UID = 54821
GRANTED = "docker.io/library/python:3.12"


@dataclass
class Pinned:
    cluster: KubeCluster
    registry: Registry
    webhook: WebhookProcess
    digests: dict[str, str]
    grants: Path
    stale: list[dict[str, Any]]  # the chart's webhooks for the same values without pinning
    current: list[dict[str, Any]]

    def image(self, tag: str) -> str:
        return f"{self.registry.host}/toolforge/app:{tag}"


def values(registry: Registry, *, pinning: bool) -> dict[str, Any]:
    return {
        "policy": {
            "trusted": ["docker-registry.svc.toolforge.org", f"{registry.host}/toolforge"],
            # Pod Security restricted without the tool profile: on this v1.32 API server (its gate off)
            # supplementalGroupsPolicy is always dropped, so the tool profile's condition sends every
            # UPDATE to /mutate anyway and no condition could skip pinning.
            "override": {
                # pinning where the registry here is asked; the grant's images (docker.io) elsewhere
                "pinning": {"enabled": pinning, "namespaces": [TOOL]},
                "registry": {"caFile": str(registry.tls.ca_cert)},
                "podSecurity": {"toolProfile": None},
                # The grant's images are on docker.io, which this loopback cluster cannot reach: the
                # built-in integration rule would deny them as unread (registry.onError). Content
                # proof through the webhook is tested against a registry here in test_content_admission.
                "content": {"rules": []},
            },
        }
    }


@pytest.fixture(scope="module")
def pinned(kube_cluster: KubeCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pinned]:
    workdir = tmp_path_factory.mktemp("pinning")
    with run_registry(workdir / "registry", "none") as registry:
        layout = OciLayout(workdir / "layout")
        for tag in ("v1", "v2"):
            registry.push(layout, tag, layers(f"app-{tag}", 2), f"toolforge/app:{tag}")
        digests = {
            tag: skopeo_inspect(f"{registry.host}/toolforge/app:{tag}", cert_dir=registry.cert_dir)["Digest"]
            for tag in ("v1", "v2")
        }
        version = server_version(kube_cluster)
        with helm.Chart.load(CHART) as chart:
            documents = render_chart(chart, values(registry, pinning=True), kube_version=version)
            stale = render_chart(chart, values(registry, pinning=False), kube_version=version)
        (workdir / "policy.yaml").write_text(policy_text(documents))
        grants = workdir / "grants.yaml"
        grants.write_text(GRANTS_HEADER + "grants: []\n")
        kube_cluster.namespace(TOOL)
        kube_cluster.namespace(GRANTEE)
        with run_webhook(
            workdir, "--identities", str(IDENTITIES), policy=workdir / "policy.yaml", grants=grants
        ) as webhook:
            current = webhook_configurations(documents)
            names = register(kube_cluster, current, webhook)
            try:
                yield Pinned(kube_cluster, registry, webhook, digests, grants, webhook_configurations(stale), current)
            finally:
                unregister(kube_cluster, names)


FULL_CONTEXT: dict[str, Any] = {
    "runAsUser": UID,
    "runAsGroup": UID,
    "fsGroup": UID,
    "runAsNonRoot": True,
    "seccompProfile": {"type": "RuntimeDefault"},
}
CONTAINER_CONTEXT = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


def pod_spec(image: str) -> dict[str, Any]:
    """As Toolforge's jobs framework writes it: the full security context, nothing to fill in."""
    return {
        "securityContext": dict(FULL_CONTEXT),
        "containers": [{"name": "main", "image": image, "securityContext": dict(CONTAINER_CONTEXT)}],
    }


def create(cluster: KubeCluster, document: dict[str, Any]) -> Any:
    return cluster.kubectl("create", "-f", "-", stdin=json.dumps(document), check=False)


def get(cluster: KubeCluster, kind: str, name: str) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(cluster.kubectl("-n", TOOL, "get", kind, name, "-o", "json").stdout)
    return found


def deployment(name: str, image: str) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": TOOL},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": pod_spec(image)},
        },
    }


def template_image(cluster: KubeCluster, name: str) -> str:
    return str(get(cluster, "deployment", name)["spec"]["template"]["spec"]["containers"][0]["image"])


def test_a_pod_with_the_full_security_context_is_stored_pinned(pinned: Pinned) -> None:
    document = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "pinned", "namespace": TOOL}}
    done = create(pinned.cluster, {**document, "spec": pod_spec(pinned.image("v1"))})
    assert done.returncode == 0, done.stderr
    stored = get(pinned.cluster, "pod", "pinned")["spec"]["containers"][0]["image"]
    assert stored == f"{pinned.image('v1')}@{pinned.digests['v1']}"


def test_a_template_changed_by_tag_on_update_is_stored_pinned(pinned: Pinned) -> None:
    done = create(pinned.cluster, deployment("pinned-app", pinned.image("v1")))
    assert done.returncode == 0, done.stderr
    assert template_image(pinned.cluster, "pinned-app") == f"{pinned.image('v1')}@{pinned.digests['v1']}"
    # An UPDATE by tag (full security context: only pinning is left for /mutate to do).
    pinned.cluster.kubectl("-n", TOOL, "set", "image", "deployment/pinned-app", f"main={pinned.image('v2')}")
    assert template_image(pinned.cluster, "pinned-app") == f"{pinned.image('v2')}@{pinned.digests['v2']}"
    # And the Pods its ReplicaSet makes carry the digest.
    made = wait_for(
        lambda: [
            p
            for p in json.loads(
                pinned.cluster.kubectl("-n", TOOL, "get", "pods", "-l", "app=pinned-app", "-o", "json").stdout
            )["items"]
            if "@" in p["spec"]["containers"][0]["image"]
        ]
    )
    assert all("@sha256:" in p["spec"]["containers"][0]["image"] for p in made)


def test_a_condition_made_for_another_policy_is_visible(pinned: Pinned) -> None:
    """The webhooks of the same values without pinning (as after a ConfigMap edited behind the chart):
    the UPDATE by tag skips /mutate and is stored by tag, but /validate says so in kubectl's output,
    and /readyz's fingerprint is not the configuration's."""
    ready = pinned.webhook.client().get("/readyz").json()
    assert (
        ready["mutateCondition"]
        == one(pinned.current, "MutatingWebhookConfiguration")["metadata"]["annotations"][CONDITION_ANNOTATION]
    )
    stale_fingerprint = one(pinned.stale, "MutatingWebhookConfiguration")["metadata"]["annotations"][
        CONDITION_ANNOTATION
    ]
    assert stale_fingerprint != ready["mutateCondition"]
    assert create(pinned.cluster, deployment("drifted", pinned.image("v1"))).returncode == 0
    register(pinned.cluster, pinned.stale, pinned.webhook)
    try:
        # The API server takes the new configuration from its informer: a dry run says when.
        def dry_run_by_tag() -> bool:
            done = pinned.cluster.kubectl(
                "-n", TOOL, "set", "image", "deployment/drifted", f"main={pinned.image('v2')}",
                "--dry-run=server", "-o", "json",
            )  # fmt: skip
            return bool(
                json.loads(done.stdout)["spec"]["template"]["spec"]["containers"][0]["image"] == pinned.image("v2")
            )

        wait_for(dry_run_by_tag)
        changed = pinned.cluster.kubectl(
            "-n", TOOL, "set", "image", "deployment/drifted", f"main={pinned.image('v2')}", check=False
        )
        assert changed.returncode == 0, changed.stderr
        assert template_image(pinned.cluster, "drifted") == pinned.image("v2")  # by tag: /mutate was skipped
        assert "Warning: imagegate: not pinned to a digest" in changed.stderr
    finally:
        register(pinned.cluster, pinned.current, pinned.webhook)


def test_a_grants_expiry_warning_reaches_kubectl_and_its_expiry_denies(pinned: Pinned) -> None:
    today = dt.datetime.now(dt.UTC).date()
    soon = today + dt.timedelta(days=3)
    pinned.grants.write_text(
        GRANTS_HEADER
        + f"grants:\n  - {{namespace: {GRANTEE}, registries: [docker.io/library], expires: {soon.isoformat()}}}\n"
    )

    def granted(name: str) -> Any:
        document = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": GRANTEE}}
        return create(pinned.cluster, {**document, "spec": pod_spec(GRANTED)})

    done = wait_for(lambda: (d := granted(f"granted-{int(dt.datetime.now().timestamp() * 10)}")).returncode == 0 and d)
    warnings = [line for line in done.stderr.splitlines() if line.startswith("Warning: imagegate:")]
    assert any(soon.isoformat() in line and "grant" in line.lower() for line in warnings), done.stderr
    pinned.grants.write_text(
        GRANTS_HEADER
        + f"grants:\n  - {{namespace: {GRANTEE}, registries: [docker.io/library], expires: {(today - dt.timedelta(days=1)).isoformat()}}}\n"
    )
    refused = wait_for(
        lambda: (d := granted(f"expired-{int(dt.datetime.now().timestamp() * 10)}")).returncode != 0 and d
    )
    assert 'admission webhook "validate.imagegate.toolforge.org" denied the request' in refused.stderr
    assert "expired" in refused.stderr


def test_no_stored_pod_is_one_mutate_would_still_change(pinned: Pinned) -> None:
    """Every Pod stored here, sent to /mutate again: no patch (every image pinned, every default set)."""
    http = pinned.webhook.client()
    listed = json.loads(pinned.cluster.kubectl("-n", TOOL, "get", "pods", "-o", "json").stdout)["items"]
    assert len(listed) >= 3
    for stored_pod in listed:
        stored_pod.pop("status", None)
        answer = http.post("/mutate", json=admission_review(stored_pod, TOOL)).json()["response"]
        assert "patch" not in answer, (stored_pod["metadata"]["name"], answer)
