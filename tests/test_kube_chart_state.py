"""The chart's grants and identities belong to the CLI: a real ``helm install`` and ``helm upgrade`` (issue 23 item 2).

Helm's own library (helm-python-sdk's ``Config``: install, upgrade, uninstall and the
cluster-aware render whose ``lookup`` reads live objects) against a real kube-apiserver v1.32
of this module's own (the release's webhooks point at a Service nothing serves and fail
closed: the session's shared cluster must not get them). The operator's commands run as a
process with the cluster's kubeconfig. Proved here: with default values ``helm install``
refuses to start without identities, naming what to do, and creates nothing, so a tool pod
created right after is not denied; with identities it installs, and a tool pod is admitted
with its uid by imagegate serving the installed ConfigMaps; ``grants add --apply`` and
``identities namespaces --apply`` then change the ConfigMaps, and neither a re-render applied
with kubectl (``lookup`` sees the cluster, as on ``helm upgrade``) nor a real ``helm upgrade``
with other values nor ``helm uninstall`` changes what the CLI wrote; imagegate serving the
ConfigMaps after the upgrades admits the tool the CLI added. deploy/ likewise: deploy/state
created once, the CLI, then deploy/base applied again (``--prune`` too) leaves the CLI's edits.
A release made without ``keep`` (an older chart) keeps both through the upgrades that add it.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml

from imagegate.core.policy import load_grants, load_identities, load_policy
from tests.conftest import run_imagegate
from tests.kube_cluster import KubeCluster, register, start_cluster, unregister
from tests.shipped import BASE, CHART, STATE, policy_text, render_chart, webhook_configurations
from tests.webhook_process import run_webhook

NAMESPACE = "imagegate"
RELEASE = "keep"  # objects are named keep-imagegate-*
GRANTS = f"{NAMESPACE}/keep-imagegate-grants"
IDENTITIES = f"{NAMESPACE}/keep-imagegate-identities"
UID_LABEL = "toolforge.org/uid"
IMAGE = "docker-registry.svc.toolforge.org/toolforge-python311-sssd-base:latest"
SELF_SIGNED = {"certificates": {"mode": "self-signed"}}  # no cert-manager CRDs in this cluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeCluster]:
    with start_cluster(tmp_path_factory.mktemp("kube-chart-state"), controllers=False) as started:
        started.namespace(NAMESPACE)
        for tool, uid in (("tool-a", "50001"), ("tool-b", "50002")):
            started.namespace(tool, {UID_LABEL: uid})
        yield started


@pytest.fixture(scope="module")
def chart() -> Iterator[helm.Chart]:
    with helm.Chart.load(CHART) as loaded:
        yield loaded


@pytest.fixture(scope="module")
def helm_config(cluster: KubeCluster) -> Iterator[helm.Config]:
    with helm.Config(kubeconfig_path=str(cluster.kubeconfig), namespace=NAMESPACE) as config:
        yield config


def operator(cluster: KubeCluster, *args: str) -> subprocess.CompletedProcess[str]:
    """``imagegate ARGS`` as an operator runs it, with the cluster's kubeconfig."""
    env = {"PATH": "/usr/bin:/bin", "KUBECONFIG": str(cluster.kubeconfig), "COLUMNS": "200"}
    if "PYTHONPATH" in os.environ:
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    return run_imagegate(*args, env=env, timeout=60)


def configmap(cluster: KubeCluster, name: str) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(cluster.kubectl("-n", NAMESPACE, "get", "configmap", name, "-o", "json").stdout)
    return found


def data(cluster: KubeCluster, key: str) -> str:
    return str(configmap(cluster, f"keep-imagegate-{key}")["data"][f"{key}.yaml"])


def rendered_objects(files: dict[str, str]) -> list[dict[str, Any]]:
    return [
        d
        for path, text in sorted(files.items())
        if not path.endswith("NOTES.txt")
        for d in yaml.safe_load_all(text)
        if d
    ]


def tool_pod(name: str, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"containers": [{"name": "main", "image": IMAGE}]},
    }


def admitted_uid(cluster: KubeCluster, workdir: Path, namespace: str, name: str) -> int:
    """imagegate serving the release's ConfigMaps as the kubelet mounts them, in front of the cluster's
    own webhook configurations (their clientConfig pointed at it): a plain pod's stored runAsUser."""
    workdir.mkdir()
    files = {}
    for key in ("policy", "grants", "identities"):
        files[key] = workdir / f"{key}.yaml"
        files[key].write_text(data(cluster, key))
    configurations = [
        json.loads(cluster.kubectl("get", kind, "keep-imagegate", "-o", "json").stdout)
        for kind in ("mutatingwebhookconfiguration", "validatingwebhookconfiguration")
    ]
    with run_webhook(
        workdir, "--identities", str(files["identities"]), policy=files["policy"], grants=files["grants"]
    ) as webhook:
        unregister(cluster, ["keep-imagegate"])  # Helm's, pointing at a Service nothing serves here
        for configuration in configurations:
            for field in ("resourceVersion", "uid", "creationTimestamp", "managedFields", "generation"):
                configuration["metadata"].pop(field, None)
        names = register(cluster, configurations, webhook)
        try:
            done = cluster.create(tool_pod(name, namespace))
            assert done.returncode == 0, done.stderr
            return int(json.loads(done.stdout)["spec"]["securityContext"]["runAsUser"])
        finally:
            unregister(cluster, names)  # the next helm upgrade puts its own back


def test_a_default_install_is_refused_and_denies_nothing(
    cluster: KubeCluster, chart: helm.Chart, helm_config: helm.Config
) -> None:
    """With default values and no identities anywhere, the tool profile would deny every tool pod: refused."""
    with pytest.raises(helm.HelmError) as refused:
        helm_config.install(chart, RELEASE, namespace=NAMESPACE)
    message = str(refused.value)
    assert "no tool identities" in message and "tool-*" in message
    assert f"--print-configmap {IDENTITIES} | kubectl create -f -" in message
    assert helm_config.list(all_states=True) == []
    assert "keep-imagegate" not in cluster.kubectl("get", "mutatingwebhookconfigurations", "-o", "name").stdout
    # a tool pod created right after: nothing stands in its way
    done = cluster.create(tool_pod("right-after-refusal", "tool-a"))
    assert done.returncode == 0, done.stderr
    # offline (helm template, lint) nothing can be looked up: the chart renders, with both seeds, kept
    documents = render_chart(chart)
    for name in ("imagegate-grants", "imagegate-identities"):
        (seed,) = (d for d in documents if d["metadata"]["name"] == name)
        assert seed["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
    # The other ways the message names: the check runs (a cluster-aware install render) and passes.
    for override in (
        {"mode": "warn"},
        {"toolProfile": {"uidLabel": UID_LABEL}},
        {"toolProfile": {"identities": {"tool-a": {"uid": 50001}}}},
    ):
        values = {"policy": {"override": {"podSecurity": override}}}
        files = helm_config.render(chart, values, name=RELEASE, namespace=NAMESPACE, is_install=True)
        settings = load_policy(policy_text(rendered_objects(files))).pod_security
        assert settings is not None and settings.tool is not None
        assert (settings.mode.value, settings.tool.uid_label, list(settings.tool.identities)) == (
            "warn" if "mode" in override else "enforce",
            UID_LABEL if "uidLabel" in str(override) else None,
            ["tool-a"] if "identities" in str(override) else [],
        )


def test_helm_upgrade_keeps_what_the_cli_wrote(
    cluster: KubeCluster, chart: helm.Chart, helm_config: helm.Config, tmp_path: Path
) -> None:
    seed = {**SELF_SIGNED, "identities": {"tool-a": {"uid": 50001}}}
    installed = helm_config.install(chart, RELEASE, seed, namespace=NAMESPACE)
    assert installed["revision"] == 1
    assert load_identities(data(cluster, "identities"))["tool-a"].uid == 50001
    assert admitted_uid(cluster, tmp_path / "installed", "tool-a", "right-after-install") == 50001

    # The operator's day two: a grant and the identities from the Namespaces' labels.
    granted = operator(
        cluster,
        "grants",
        "add",
        "tool-b",
        "-r",
        "ghcr.io/b",
        "--expires",
        "2099-01-31",
        "--ticket",
        "T1",
        "--apply",
        "--configmap",
        GRANTS,
    )
    assert granted.returncode == 0, granted.stderr
    loaded = operator(cluster, "identities", "namespaces", "--uid-key", UID_LABEL, "--apply", "--configmap", IDENTITIES)
    assert loaded.returncode == 0, loaded.stderr
    grants_text, identities_text = data(cluster, "grants"), data(cluster, "identities")
    assert [g.namespace for g in load_grants(grants_text)] == ["tool-b"]
    assert sorted(load_identities(identities_text)) == ["tool-a", "tool-b"]

    # A real helm upgrade, with other grants and identities in the values: the CLI's stay.
    other = {
        **SELF_SIGNED,
        "replicas": 3,
        "grants": [{"namespace": "tool-z"}],
        "identities": {"tool-z": {"uid": 59999}},
    }
    upgraded = helm_config.upgrade(chart, RELEASE, other, namespace=NAMESPACE)
    assert upgraded["revision"] == 2
    assert (data(cluster, "grants"), data(cluster, "identities")) == (grants_text, identities_text)
    deployment = json.loads(cluster.kubectl("-n", NAMESPACE, "get", "deploy", "keep-imagegate", "-o", "json").stdout)
    assert deployment["spec"]["replicas"] == 3  # the upgrade did happen
    assert admitted_uid(cluster, tmp_path / "upgraded", "tool-b", "after-upgrade") == 50002

    # helm upgrade, rendered: lookup sees the cluster, so neither ConfigMap is in the output;
    # applied over the cluster (as `helm upgrade` or any kubectl apply of it would) nothing changes.
    files = helm_config.render(chart, seed, name=RELEASE, namespace=NAMESPACE, is_upgrade=True)
    objects = rendered_objects(files)
    names = {d["metadata"]["name"] for d in objects if d["kind"] == "ConfigMap"}
    assert names == {"keep-imagegate-policy"}
    cluster.apply(*objects)
    assert (data(cluster, "grants"), data(cluster, "identities")) == (grants_text, identities_text)

    # uninstall keeps both ConfigMaps
    helm_config.uninstall(RELEASE)
    assert (data(cluster, "grants"), data(cluster, "identities")) == (grants_text, identities_text)
    assert "keep-imagegate-policy" not in cluster.kubectl("-n", NAMESPACE, "get", "configmaps", "-o", "name").stdout
    # A new install finds them: it renders neither, and is not refused (the cluster has identities).
    again = helm_config.install(chart, RELEASE, SELF_SIGNED, namespace=NAMESPACE)
    kept = {d["metadata"]["name"] for d in yaml.safe_load_all(again["manifest"]) if d and d["kind"] == "ConfigMap"}
    assert kept == {"keep-imagegate-policy"}
    assert (data(cluster, "grants"), data(cluster, "identities")) == (grants_text, identities_text)
    helm_config.uninstall(RELEASE)


def test_configmap_owner_values_writes_the_values(chart: helm.Chart) -> None:
    """configMapOwner: values: no keep, no lookup; a bad owner fails the render naming the key."""
    documents = render_chart(chart, {"configMapOwner": "values", "grants": [{"namespace": "tool-a"}]})
    (grants,) = (d for d in documents if d["metadata"]["name"] == "imagegate-grants")
    assert "annotations" not in grants["metadata"]
    assert [g.namespace for g in load_grants(grants["data"]["grants.yaml"])] == ["tool-a"]
    with pytest.raises(helm.HelmError, match="configMapOwner"):
        render_chart(chart, {"configMapOwner": "helm"})
    assert webhook_configurations(documents)


def test_kubectl_apply_of_deploy_base_keeps_what_the_cli_wrote(cluster: KubeCluster) -> None:
    """deploy/: the CLI's ConfigMaps come from deploy/state, created once; deploy/base, applied again
    and again (with --prune too), never carries them."""
    created = cluster.kubectl("create", "-k", str(STATE))
    assert "configmap/imagegate-grants created" in created.stdout
    granted = operator(
        cluster, "grants", "add", "tool-b", "-r", "ghcr.io/b", "--apply", "--configmap", "imagegate/imagegate-grants"
    )
    assert granted.returncode == 0, granted.stderr
    loaded = operator(
        cluster,
        "identities",
        "namespaces",
        "--uid-key",
        UID_LABEL,
        "--apply",
        "--configmap",
        "imagegate/imagegate-identities",
    )
    assert loaded.returncode == 0, loaded.stderr

    def state() -> tuple[str, str]:
        found = (configmap(cluster, f"imagegate-{key}")["data"][f"{key}.yaml"] for key in ("grants", "identities"))
        return next(found), next(found)

    edited = state()
    assert "tool-b" in edited[0] and "tool-a" in edited[1]
    again = cluster.kubectl("create", "-k", str(STATE), check=False)  # a second run replaces nothing
    assert again.returncode != 0 and "AlreadyExists" in again.stderr
    base = {
        "apiVersion": "v1",
        "kind": "List",
        "items": [
            d
            for d in yaml.safe_load_all(cluster.kubectl("kustomize", str(BASE)).stdout)
            if d and not d["apiVersion"].startswith("cert-manager.io/")  # no CRDs here
        ],
    }
    try:
        for extra in ([], ["--prune", "-l", "app.kubernetes.io/part-of=imagegate"]):
            cluster.kubectl("apply", *extra, "-f", "-", stdin=json.dumps(base))
            assert state() == edited
    finally:
        unregister(cluster, ["imagegate"])  # deploy/base's webhooks: fail closed, nothing serves them here


def test_a_release_whose_configmaps_lack_keep_keeps_them_on_upgrade(
    cluster: KubeCluster, chart: helm.Chart, helm_config: helm.Config
) -> None:
    """An older chart (or configMapOwner: values) rendered them without "keep": the first upgrade with
    configMapOwner: cli carries the cluster's data over, adding "keep", so leaving them out later
    deletes nothing (without the carry-over Helm would delete both: they were in the release)."""
    values = {**SELF_SIGNED, "configMapOwner": "values", "identities": {"tool-a": {"uid": 50001}}}
    helm_config.install(chart, "old", values, namespace=NAMESPACE)
    granted = operator(
        cluster,
        "grants",
        "add",
        "tool-b",
        "-r",
        "ghcr.io/b",
        "--apply",
        "--configmap",
        f"{NAMESPACE}/old-imagegate-grants",
    )
    assert granted.returncode == 0, granted.stderr

    def state() -> tuple[dict[str, Any], dict[str, Any]]:
        found = [configmap(cluster, f"old-imagegate-{key}") for key in ("grants", "identities")]
        return found[0], found[1]

    edited = [c["data"] for c in state()]
    try:
        for revision in (2, 3):  # carried over with "keep", then left out
            upgraded = helm_config.upgrade(chart, "old", {**values, "configMapOwner": "cli"}, namespace=NAMESPACE)
            assert upgraded["revision"] == revision
            now = state()
            assert [c["data"] for c in now] == edited, revision
            assert all(c["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep" for c in now)
        manifest = [d for d in yaml.safe_load_all(upgraded["manifest"]) if d and d["kind"] == "ConfigMap"]
        assert [d["metadata"]["name"] for d in manifest] == ["old-imagegate-policy"]
    finally:
        helm_config.uninstall("old")
