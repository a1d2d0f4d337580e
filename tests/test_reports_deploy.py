"""imagegate reports as shipped: deploy/reports (kustomize) and the chart's ``reports`` values (issue 26 item 3).

The chart (rendered by Helm's engine) and deploy/reports ship the same objects; every one
validates against the Kubernetes schemas; the RBAC is the least the controller needs
(docs/reports.md): list and watch on the pod-bearing kinds (core/workloads.py's one list) and
Namespaces, the chosen format's reports written, Events created, its own Lease. The real
API server's authorizer is asked what the ServiceAccount may do (tests/test_kube_deploy_base.py
dry-runs every object); the Deployment's options are ones ``imagegate reports`` has.
"""

from __future__ import annotations

import copy
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest

from imagegate.core.workloads import WORKLOAD_KINDS
from tests.conftest import REPO_ROOT, cli_env
from tests.kube_cluster import KubeCluster
from tests.shipped import CHART, REPORTS, kustomize_build, one, render_chart
from tests.test_chart import KUBERNETES_VERSION, without_helm_labels

ON = {"reports": {"enabled": True}}
CRDS = REPO_ROOT.parent / "shared" / "crds"  # the report CRDs, their projects' own (../shared/crds/SOURCE.md)
REPORT_KINDS = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "Deployment", "Service"}
# what each format writes: (API group, resource)
FORMATS = {"openreports": ("openreports.io", "reports"), "wgpolicyk8s": ("wgpolicyk8s.io", "policyreports")}


@pytest.fixture(scope="module")
def chart() -> Iterator[helm.Chart]:
    with helm.Chart.load(CHART) as loaded:
        yield loaded


def reports_objects(documents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in documents if d["metadata"]["name"] == "imagegate-reports" and d["kind"] in REPORT_KINDS]


def test_off_by_default_and_the_chart_renders_deploy_reports(chart: helm.Chart) -> None:
    assert reports_objects(render_chart(chart)) == []
    rendered = {
        (d["kind"], d["metadata"]["name"]): without_helm_labels(d) for d in reports_objects(render_chart(chart, ON))
    }
    built = {(d["kind"], d["metadata"]["name"]): d for d in kustomize_build(REPORTS)}
    assert sorted(rendered) == sorted(built) and {kind for kind, _name in built} == REPORT_KINDS
    for key, expected in built.items():
        assert rendered[key] == expected, key


def test_every_object_validates(chart: helm.Chart) -> None:
    variants: list[dict[str, Any]] = [ON, {"reports": {"enabled": True, "format": "wgpolicyk8s", "events": False}}]
    for values in variants:
        for doc in reports_objects(render_chart(chart, values)):
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    for doc in kustomize_build(REPORTS):
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def granted(rules: list[dict[str, Any]]) -> set[tuple[str, str, str, str]]:
    """(group, resource, verb, name or "") for every permission a list of RBAC rules gives."""
    found = set()
    for rule in rules:
        assert set(rule) <= {"apiGroups", "resources", "verbs", "resourceNames"}, rule  # no nonResourceURLs
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    for name in rule.get("resourceNames", [""]):
                        found.add((group, resource, verb, name))
    assert not any("*" in part for permission in found for part in permission)
    return found


@pytest.mark.parametrize("format_", sorted(FORMATS))
def test_the_rbac_is_the_least_the_controller_needs(chart: helm.Chart, format_: str) -> None:
    documents = reports_objects(render_chart(chart, {"reports": {"enabled": True, "format": format_}}))
    read = {(w.group, w.resource) for w in WORKLOAD_KINDS} | {("", "namespaces")}
    group, resource = FORMATS[format_]
    assert granted(one(documents, "ClusterRole")["rules"]) == {
        *((g, r, verb, "") for g, r in read for verb in ("list", "watch")),
        *((group, resource, verb, "") for verb in ("list", "get", "create", "patch", "delete")),
        ("", "events", "create", ""),
    }
    deployment = one(documents, "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    lease = next(a.split("=", 1)[1] for a in container["args"] if a.startswith("--lease-name="))
    assert f"--format={format_}" in container["args"]
    role = one(documents, "Role")
    assert role["metadata"]["namespace"] == deployment["metadata"]["namespace"]  # the Lease is in its own
    assert granted(role["rules"]) == {
        ("coordination.k8s.io", "leases", "create", ""),  # create cannot be limited to a name
        ("coordination.k8s.io", "leases", "get", lease),
        ("coordination.k8s.io", "leases", "update", lease),
    }
    account = one(documents, "ServiceAccount")
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == account["metadata"]["name"]
    for binding in (one(documents, "ClusterRoleBinding"), one(documents, "RoleBinding")):
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": "imagegate"}
        ]
    # the webhook's own account still reads nothing
    assert not [d for d in render_chart(chart, ON) if d["kind"].endswith("Binding") and d not in documents]


def test_a_bad_format_fails_the_render_with_the_key(chart: helm.Chart) -> None:
    with pytest.raises(helm.HelmError, match=r"reports\.format"):
        render_chart(chart, {"reports": {"enabled": True, "format": "kyverno"}})


def test_the_deployment_runs_options_the_command_has(chart: helm.Chart) -> None:
    deployment = one(
        reports_objects(render_chart(chart, {"reports": {"enabled": True, "events": False}})), "Deployment"
    )
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    command, *options = container["args"]
    assert command == "reports" and "--no-events" in options
    help_text = subprocess.run(
        [sys.executable, "-m", "imagegate", command, "--help"],
        capture_output=True,
        text=True,
        check=True,
        env={**cli_env(), "COLUMNS": "200"},
    ).stdout
    for option in options:
        name = option.split("=", 1)[0]
        assert re.search(rf"{re.escape(name)}\b", help_text), name
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    for option in options:
        if option.startswith(("--policy=", "--grants=", "--identities=")):
            assert str(Path(option.split("=", 1)[1]).parent) in mounts, option
    # the metrics port is where the probes and the Service look
    (port,) = container["ports"]
    assert f"--metrics-port={port['containerPort']}" in options
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": port["name"]}
    service = one(reports_objects(render_chart(chart, ON)), "Service")
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert service["spec"]["ports"][0]["targetPort"] == port["name"]
    # its pods are not the webhook's: the webhook Service and PodDisruptionBudget never select them
    webhook_selector = one(render_chart(chart, ON), "Service", "imagegate")["spec"]["selector"]
    assert not webhook_selector.items() <= pod_labels(deployment).items()
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert {e["name"] for e in container["env"]} == {"POD_NAMESPACE", "POD_NAME"}  # the Lease's place and holder


def pod_labels(deployment: dict[str, Any]) -> dict[str, str]:
    labels: dict[str, str] = deployment["spec"]["template"]["metadata"]["labels"]
    return labels


def test_the_api_server_authorizes_exactly_that(kube_cluster: KubeCluster) -> None:
    """The shipped RBAC applied to a real API server (RBAC authorizer), and asked as the account."""
    kube_cluster.namespace("imagegate")
    # the reports' CRDs, as the cluster gets them from their projects (../shared/crds)
    for crd in (
        CRDS / "openreports.io" / "openreports.io_reports.yaml",
        CRDS / "wgpolicyk8s.io-v1alpha2" / "wgpolicyk8s.io_policyreports.yaml",
    ):
        kube_cluster.kubectl("apply", "--server-side", "-f", str(crd))
    for name in ("reports.openreports.io", "policyreports.wgpolicyk8s.io"):
        kube_cluster.kubectl("wait", "--for=condition=established", "--timeout=30s", f"crd/{name}")
    rbac = [copy.deepcopy(d) for d in kustomize_build(REPORTS) if d["kind"] != "Deployment"]
    kube_cluster.apply(*rbac, server_side=True)
    account = "system:serviceaccount:imagegate:imagegate-reports"

    def can(*request: str) -> bool:
        done = kube_cluster.kubectl("auth", "can-i", "--as", account, *request, check=False)
        assert done.stdout.strip() in ("yes", "no") and "resource type" not in done.stderr, (request, done.stderr)
        return done.stdout.strip() == "yes"

    for workload in WORKLOAD_KINDS:
        resource = f"{workload.resource}.{workload.group}" if workload.group else workload.resource
        assert can("list", resource, "--all-namespaces") and can("watch", resource, "--all-namespaces")
        assert not can("get", resource, "-n", "tool-a") and not can("create", resource, "-n", "tool-a")
    assert can("watch", "namespaces") and not can("delete", "namespaces")
    assert can("patch", "reports.openreports.io", "-n", "tool-a")
    assert can("delete", "reports.openreports.io", "-n", "tool-a")
    assert not can("patch", "policyreports.wgpolicyk8s.io", "-n", "tool-a")  # the other format's
    assert can("create", "events", "-n", "tool-a") and not can("patch", "events", "-n", "tool-a")
    assert can("update", "leases.coordination.k8s.io/imagegate-reports", "-n", "imagegate")
    assert not can("update", "leases.coordination.k8s.io/kube-scheduler", "-n", "imagegate")
    assert not can("get", "leases.coordination.k8s.io/imagegate-reports", "-n", "kube-system")
    assert not can("get", "secrets", "-n", "imagegate") and not can("list", "configmaps", "--all-namespaces")
