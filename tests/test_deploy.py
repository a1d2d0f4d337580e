"""deploy/: the manifests a platform applies say what docs/deploy.md promises."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from imagegate.core.policy import load_grants, load_identities, load_policy
from imagegate.core.workloads import POD_TEMPLATE_PATHS
from tests.conftest import REPO_ROOT, cli_env

BASE = REPO_ROOT / "deploy" / "base"
STATE = REPO_ROOT / "deploy" / "state"  # the CLI's ConfigMaps, created once
MONITORING = REPO_ROOT / "deploy" / "monitoring"  # for the Prometheus Operator and Grafana
REPORTS = REPO_ROOT / "deploy" / "reports"  # imagegate reports, the in-cluster audit


def documents(directory: Path = BASE) -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    found: list[dict[str, Any]] = []
    for name in kustomization["resources"]:
        found.extend(doc for doc in yaml.safe_load_all((directory / name).read_text()) if doc)
    return found


def by_kind(kind: str, directory: Path = BASE) -> list[dict[str, Any]]:
    return [doc for doc in documents(directory) if doc["kind"] == kind]


@pytest.mark.parametrize("directory", [BASE, STATE, MONITORING, REPORTS])
def test_every_resource_file_is_listed(directory: Path) -> None:
    listed = set(yaml.safe_load((directory / "kustomization.yaml").read_text())["resources"])
    on_disk = {p.name for p in directory.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk


def test_policy_grants_and_identities_configmaps_validate() -> None:
    (policy_cm,) = by_kind("ConfigMap")  # deploy/base carries the policy only: `apply -k` is safe to repeat
    policy = load_policy(policy_cm["data"]["policy.yaml"], "deploy/base/configmaps.yaml")
    assert policy.byoc_default == "deny"
    assert policy.pod_security is not None and policy.pod_security.tool is not None
    grants_cm, identities_cm = by_kind("ConfigMap", STATE)
    assert load_grants(grants_cm["data"]["grants.yaml"], "deploy/state/configmaps.yaml") == ()
    assert load_identities(identities_cm["data"]["identities.yaml"], "deploy/state/configmaps.yaml") == {}
    state = yaml.safe_load((STATE / "kustomization.yaml").read_text())
    assert state["namespace"] == yaml.safe_load((BASE / "kustomization.yaml").read_text())["namespace"]
    (deployment,) = by_kind("Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    # the identities ConfigMap is mounted where --identities reads it
    (identities,) = (a.split("=", 1)[1] for a in container["args"] if a.startswith("--identities="))
    assert str(Path(identities).parent) in mounts


WEBHOOK_KINDS = ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration")


@pytest.mark.parametrize("kind", WEBHOOK_KINDS)
def test_webhook_configuration(kind: str) -> None:
    (config,) = by_kind(kind)
    assert config["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == "imagegate/imagegate-serving"
    create, update = config["webhooks"]
    assert [r["operations"] for r in create["rules"]] == [["CREATE"]] * len(create["rules"])
    assert "matchConditions" not in create  # CREATE: always sent (conditions would cost more than they save)
    assert {op for r in update["rules"] for op in r["operations"]} == {"UPDATE"} and update["matchConditions"]
    for hook in (create, update):
        check_webhook(kind, hook)


def check_webhook(kind: str, hook: dict[str, Any]) -> None:
    assert hook["failurePolicy"] == "Fail"
    assert hook["sideEffects"] == "None"
    assert hook["admissionReviewVersions"] == ["v1"]
    assert 1 <= hook["timeoutSeconds"] <= 10
    (expression,) = hook["namespaceSelector"]["matchExpressions"]
    assert expression["key"] == "kubernetes.io/metadata.name" and expression["operator"] == "NotIn"
    assert {"kube-system", "imagegate"} <= set(expression["values"])
    service = hook["clientConfig"]["service"]
    assert service["path"] == ("/validate" if kind.startswith("Validating") else "/mutate")
    resources = {(group, r) for rule in hook["rules"] for group in rule["apiGroups"] for r in rule["resources"]}
    plural = {
        "Pod": ("", "pods"),
        "PodTemplate": ("", "podtemplates"),
        "ReplicationController": ("", "replicationcontrollers"),
        "Deployment": ("apps", "deployments"),
        "ReplicaSet": ("apps", "replicasets"),
        "StatefulSet": ("apps", "statefulsets"),
        "DaemonSet": ("apps", "daemonsets"),
        "Job": ("batch", "jobs"),
        "CronJob": ("batch", "cronjobs"),
    }
    assert set(plural) == set(POD_TEMPLATE_PATHS)  # every kind imagegate understands is routed to it
    ephemeral = {("", "pods/ephemeralcontainers")} if "UPDATE" in hook["rules"][0]["operations"] else set()
    assert set(plural.values()) | ephemeral == resources


def test_deployment_is_highly_available_and_least_privileged() -> None:
    (deployment,) = by_kind("Deployment")
    spec = deployment["spec"]
    assert spec["replicas"] >= 2
    pod = spec["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["affinity"]["podAntiAffinity"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    security = container["securityContext"]
    assert security["allowPrivilegeEscalation"] is False and security["readOnlyRootFilesystem"] is True
    assert security["capabilities"]["drop"] == ["ALL"]
    (pdb,) = by_kind("PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    assert not by_kind("Role") and not by_kind("ClusterRole")  # the webhook reads nothing from the API


def test_deployment_args_are_options_the_cli_has() -> None:
    (deployment,) = by_kind("Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    command, *options = container["args"]
    help_text = subprocess.run(
        [sys.executable, "-m", "imagegate", command, "--help"],
        capture_output=True,
        text=True,
        check=True,
        env=cli_env(),
    ).stdout
    for option in options:
        name = option.split("=", 1)[0]
        assert re.search(rf"{re.escape(name)}\b", help_text), name
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    for option in options:
        if option.startswith(("--policy=", "--grants=", "--identities=", "--tls-cert=", "--tls-key=")):
            assert str(Path(option.split("=", 1)[1]).parent) in mounts, option
