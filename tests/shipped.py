"""What deploy/ ships, as a cluster gets it: the kustomize base built, the Helm chart rendered by Helm's engine.

No cluster here: tests/kube_cluster.py applies these to a real API server, tests/test_chart.py
and tests/test_deploy.py read them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import helm_python as helm
import yaml
from helm_python import _native

from tests.conftest import REPO_ROOT

CHART = REPO_ROOT / "deploy" / "chart" / "imagegate"
BASE = REPO_ROOT / "deploy" / "base"
STATE = REPO_ROOT / "deploy" / "state"  # the CLI's ConfigMaps, created once (docs/deploy.md)
MONITORING = REPO_ROOT / "deploy" / "monitoring"  # for the Prometheus Operator and Grafana
REPORTS = REPO_ROOT / "deploy" / "reports"  # imagegate reports, the in-cluster audit
WEBHOOK_KINDS = ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration")


def kustomize_build(directory: Path = BASE) -> list[dict[str, Any]]:
    """What `kubectl kustomize deploy/base` (or deploy/state) prints, for these kustomizations' two transformers.

    The base uses exactly two: ``namespace`` (set on namespaced objects; cluster-scoped ones
    keep none) and ``labels`` with ``includeSelectors: false`` (metadata labels only, never
    selectors or pod templates). Checked by hand against kubectl's kustomize v5.5.
    """
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    assert set(kustomization) == {"apiVersion", "kind", "namespace", "resources", "labels"}
    (labels,) = kustomization["labels"]
    assert labels["includeSelectors"] is False and set(labels) == {"pairs", "includeSelectors"}
    cluster_scoped = {"Namespace", "ClusterRole", "ClusterRoleBinding", *WEBHOOK_KINDS}
    built = []
    for name in kustomization["resources"]:
        for doc in yaml.safe_load_all((directory / name).read_text()):
            if not doc:
                continue
            metadata = doc.setdefault("metadata", {})
            if doc["kind"] not in cluster_scoped:
                metadata["namespace"] = kustomization["namespace"]
            metadata["labels"] = {**metadata.get("labels", {}), **labels["pairs"]}
            built.append(doc)
    return built


def render_chart_files(
    chart: helm.Chart, values: dict[str, Any] | None = None, *, kube_version: str | None = None
) -> dict[str, str]:
    """Helm's engine renders the chart as ``helm install`` would (release imagegate in imagegate).

    ``kube_version`` ("v1.32.0") is what ``.Capabilities.KubeVersion`` says, as ``helm
    template --kube-version`` sets it; helm-python-sdk's ``render`` has no argument for it, but
    the library under it takes the option (the same call, one more key).
    """
    options: dict[str, Any] = {"name": "imagegate", "namespace": "imagegate", "is_install": True}
    if kube_version is not None:
        options["kube_version"] = kube_version
    payload = None if values is None else json.dumps(values)
    rendered: dict[str, str] = json.loads(
        _native.call_string("helm_render", chart._raw(), payload, json.dumps(options))
    )
    return rendered


def render_chart(
    chart: helm.Chart, values: dict[str, Any] | None = None, *, kube_version: str | None = None
) -> list[dict[str, Any]]:
    """The chart's objects (NOTES.txt left out), in template-file order."""
    found: list[dict[str, Any]] = []
    for path, text in sorted(render_chart_files(chart, values, kube_version=kube_version).items()):
        if path.endswith("NOTES.txt"):
            continue
        found.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return found


def notes(chart: helm.Chart, values: dict[str, Any] | None = None, *, kube_version: str | None = None) -> str:
    (text,) = (
        t for p, t in render_chart_files(chart, values, kube_version=kube_version).items() if p.endswith("NOTES.txt")
    )
    return text


def one(documents: Iterable[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    (found,) = (d for d in documents if d["kind"] == kind and (name is None or d["metadata"]["name"] == name))
    return found


def webhook_configurations(documents: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in documents if d["kind"] in WEBHOOK_KINDS]


def policy_text(documents: Iterable[dict[str, Any]]) -> str:
    """The policy document the shipped objects serve (the policy ConfigMap's ``policy.yaml``)."""
    (policy,) = (
        d["data"]["policy.yaml"] for d in documents if d["kind"] == "ConfigMap" and "policy.yaml" in d.get("data", {})
    )
    return str(policy)
