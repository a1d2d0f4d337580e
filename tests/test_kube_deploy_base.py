"""deploy/ as shipped, through a real kube-apiserver v1.32 (issue 22 item 7).

Every object of the kustomize base and of the Helm chart (rendered by Helm's engine for this
cluster's version) is accepted by the API server (a server-side dry run: its own validation,
defaulting and admission, not a schema copy); cert-manager's kinds are left out (no CRDs
here). deploy/base's webhook configurations, registered in front of imagegate serving
deploy/base's policy, behave on v1.32 as docs/deploy.md says: the shipped
``whenDropped: deny`` refuses a tool pod whose supplementalGroupsPolicy the API server
dropped, saying why (the chart fits the setting; deploy/ needs 1.33 or the override); and a
label change never reaches imagegate.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import helm_python as helm
import pytest

from tests.kube_cluster import KubeCluster, decisions, register, unregister
from tests.shipped import CHART, MONITORING, REPORTS, kustomize_build, policy_text, render_chart, webhook_configurations
from tests.test_kube_apiserver import TOOL, TOOLFORGE, pod, server_version
from tests.webhook_process import WebhookProcess, run_webhook

# no CRDs for these here: cert-manager's, and the Prometheus Operator's (tests/test_monitoring.py
# checks the ServiceMonitor and PrometheusRule against the part of their schema they use)
CUSTOM = ("cert-manager.io/v1", "monitoring.coreos.com/v1")
IDENTITIES_FILE = TOOLFORGE / "identities.yaml"


def dry_run(cluster: KubeCluster, documents: list[dict[str, Any]]) -> Any:
    items = {"apiVersion": "v1", "kind": "List", "items": [d for d in documents if d["apiVersion"] not in CUSTOM]}
    # --force-conflicts: the session's cluster is shared, and another test's CLI may already own
    # the grants ConfigMap's data (as an operator's would); what this asks is whether the API
    # server accepts every object, not who wrote a field first
    return cluster.kubectl(
        "apply", "--server-side", "--force-conflicts", "--dry-run=server", "-f", "-", stdin=json.dumps(items),
        check=False,
    )  # fmt: skip


def test_every_shipped_object_is_accepted_by_the_api_server(kube_cluster: KubeCluster) -> None:
    kube_cluster.namespace("imagegate")
    shipped = [*kustomize_build(), *kustomize_build(MONITORING), *kustomize_build(REPORTS)]
    base = [d for d in shipped if d["kind"] != "Namespace"]
    done = dry_run(kube_cluster, base)
    assert done.returncode == 0, done.stderr
    with helm.Chart.load(CHART) as chart:
        monitoring = {
            "metrics": {part: {"enabled": True} for part in ("serviceMonitor", "prometheusRule", "dashboard")}
        }
        reports = {"reports": {"enabled": True, "format": "wgpolicyk8s"}}
        for values in ({}, {"certificates": {"mode": "self-signed"}, **monitoring, **reports}):
            rendered = render_chart(chart, values, kube_version=server_version(kube_cluster))
            done = dry_run(kube_cluster, rendered)
            assert done.returncode == 0, (values, done.stderr)
    assert "serverside-applied (server dry run)" in done.stdout


@pytest.fixture(scope="module")
def base_gate(kube_cluster: KubeCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebhookProcess]:
    workdir = tmp_path_factory.mktemp("deploy-base")
    documents = kustomize_build()
    (workdir / "policy.yaml").write_text(policy_text(documents))
    kube_cluster.namespace(TOOL, {"tenancy": "tool"})
    with run_webhook(workdir, "--identities", str(IDENTITIES_FILE), policy=workdir / "policy.yaml") as webhook:
        names = register(kube_cluster, webhook_configurations(documents), webhook)
        try:
            yield webhook
        finally:
            unregister(kube_cluster, names)


def test_deploy_base_on_v1_32_refuses_tool_pods_as_documented(
    kube_cluster: KubeCluster, base_gate: WebhookProcess
) -> None:
    done = kube_cluster.kubectl("create", "-f", "-", stdin=json.dumps(pod("base-pod")), check=False)
    assert done.returncode != 0
    assert "supplementalGroupsPolicy" in done.stderr and "v1.33" in done.stderr
    # A pod outside the governed namespaces goes through untouched by the rules.
    other = pod("base-other")
    other["metadata"]["namespace"] = "default"
    assert kube_cluster.kubectl("create", "-f", "-", stdin=json.dumps(other), check=False).returncode == 0
    before = len(decisions(base_gate))
    kube_cluster.kubectl("-n", "default", "label", "pod", "base-other", "seen=yes")
    assert [d for d in decisions(base_gate)[before:] if d["operation"] == "UPDATE"] == []  # never sent
