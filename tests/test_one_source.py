"""One source per fact (issue 17): each fact is written once, and its consumers agree.

Each test takes the fact from outside where it can (the Kubernetes API schemas that
kubernetes-validate ships, upstream's fixtures) and holds every place that uses it to it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

from imagegate.core import podprofile
from imagegate.core.admission import POD_RESOURCES
from imagegate.core.podprofile import REPLACED_BY_TOOL_PROFILE, ToolProfile, tool_profile_findings
from imagegate.core.podsecurity import CHECKS, LATEST_VERSION, Level, parse_version
from imagegate.core.podsecurity_shortcut import evaluate, plainly_passes
from imagegate.core.podspec import containers
from imagegate.core.policy import load_policy
from imagegate.core.webhooks import mutation_condition, webhook_configurations
from imagegate.core.workloads import CONTAINER_LISTS, POD_TEMPLATE_PATHS, WORKLOAD_KINDS, image_uses
from imagegate.shell.builtin_policy import DEFAULT_POLICY_YAML
from imagegate.shell.cluster.client import lightkube_resource
from tests.conftest import REPO_ROOT
from tests.test_podsecurity_conformance import PINNABLE
from tests.test_podsecurity_shortcut import compliant_spec

SCHEMAS = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema" / "v1.37.0-local-strict"


def schema(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((SCHEMAS / f"{name}-v1.json").read_text())
    return loaded


# --- the container lists ------------------------------------------------------------------


def test_the_container_lists_are_the_pod_specs_arrays_of_containers() -> None:
    properties = schema("podspec")["properties"]
    of_containers = [
        name
        for name, value in properties.items()
        if value.get("items", {}).get("$ref", "").endswith((".Container", ".EphemeralContainer"))
    ]
    assert sorted(of_containers) == sorted(CONTAINER_LISTS)


def pod_with_one_container_in(field: str, **security: Any) -> dict[str, Any]:
    spec = compliant_spec(1)
    container = spec.pop("containers")[0]
    container["securityContext"].update(security)
    spec[field] = [container]
    return spec


@pytest.mark.parametrize("field", CONTAINER_LISTS)
def test_every_walk_over_the_containers_sees_every_list(field: str) -> None:
    spec = pod_with_one_container_in(field, privileged=True)
    # the checks, the shortcut, the tool profile, the image walk, the mutating webhook's condition
    assert [listed for listed, _, _ in containers(spec)] == [field]
    assert not plainly_passes(Level.BASELINE, LATEST_VERSION, {}, spec, frozenset())
    assert "privileged" in {f.check for f in evaluate(Level.BASELINE, LATEST_VERSION, {}, spec, shortcut=False)}
    found = tool_profile_findings(spec, ToolProfile(), "tool-x", podprofile.Identity(52503, 52503))
    assert "privileged" in {f.check for f in found}
    assert [use.pointer for use in image_uses({"kind": "Pod", "spec": spec})] == [f"/spec/{field}/0/image"]
    policy = load_policy(DEFAULT_POLICY_YAML)
    assert f"object.spec.{field}.exists(c," in mutation_condition(policy)


# --- the volume types ---------------------------------------------------------------------

# Every volume source Kubernetes knows (name is the volume's name, not a source).
VOLUME_SOURCES = sorted(set(schema("volume")["properties"]) - {"name"})


def pod_with_volume(source: str) -> dict[str, Any]:
    spec = compliant_spec(1)
    spec["volumes"] = [{"name": "v", source: {}}]
    return spec


def allowed_by_restricted(version: tuple[int, int]) -> set[str]:
    (check,) = (c for c in CHECKS if c.id == "restrictedVolumes")
    entry = check.at(version)
    assert entry is not None
    return {source for source in VOLUME_SOURCES if entry.run({}, pod_with_volume(source)) is None}


def test_the_restricted_volume_types_are_upstreams() -> None:
    """The sets themselves, by the version that changed them (image volumes from v1.33)."""
    before = {
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "persistentVolumeClaim",
        "projected",
        "secret",
    }
    assert allowed_by_restricted(parse_version("v1.32")) == before
    assert allowed_by_restricted(parse_version("v1.33")) == before | {"image"}


@pytest.mark.parametrize("version_text", PINNABLE)
def test_the_shortcut_allows_exactly_the_volume_types_the_check_allows(version_text: str) -> None:
    version = parse_version(version_text)
    allowed = allowed_by_restricted(version)
    skip = frozenset({"hostPathVolumes"})
    for source in VOLUME_SOURCES:
        spec = pod_with_volume(source)
        assert plainly_passes(Level.RESTRICTED, version, {}, spec, skip) == (source in allowed), source
        assert (evaluate(Level.RESTRICTED, version, {}, spec, skip=skip) == []) == (source in allowed), source


def test_tool_pods_may_use_what_restricted_allows_at_its_newest() -> None:
    """The tool profile replaces restrictedVolumes (hostPath from its allowlist, CSI by driver)."""
    assert "restrictedVolumes" in REPLACED_BY_TOOL_PROFILE
    tool = ToolProfile(csi_drivers=frozenset({"x"}))
    refused = set()
    for source in VOLUME_SOURCES:
        spec = pod_with_volume(source)
        if source == "csi":
            spec["volumes"][0]["csi"] = {"driver": "x"}
        if any(f.check == "volumes" for f in tool_profile_findings(spec, tool, "tool-x", podprofile.Identity(1, 1))):
            refused.add(source)
    assert set(VOLUME_SOURCES) - refused == allowed_by_restricted(LATEST_VERSION) | {"hostPath"}


# --- reading JSON of the wrong type ------------------------------------------------------


def test_the_checks_and_the_tool_profile_read_a_wrong_typed_value_alike() -> None:
    """One ``as_map``/``as_list``: a value of the wrong type reads as empty for both."""
    spec = compliant_spec(1)
    spec["containers"][0]["securityContext"] = ["not", "an", "object"]
    psa = {f.check for f in evaluate(Level.RESTRICTED, LATEST_VERSION, {}, spec, shortcut=False)}
    assert {"allowPrivilegeEscalation", "capabilities_restricted"} <= psa
    tool = {f.message for f in tool_profile_findings(spec, ToolProfile(), "tool-x", podprofile.Identity(52503, 52503))}
    assert any("allowPrivilegeEscalation" in m for m in tool), tool


# --- the workload kinds --------------------------------------------------------------------


def rule_resources(configurations: list[dict[str, Any]]) -> list[set[tuple[str, str, str]]]:
    """Per configuration: the (group, version, resource) its rules send us on CREATE."""
    return [
        {
            (group, version, resource)
            for hook in configuration["webhooks"]
            for rule in hook["rules"]
            if "CREATE" in rule["operations"]
            for group in rule["apiGroups"]
            for version in rule["apiVersions"]
            for resource in rule["resources"]
        }
        for configuration in configurations
    ]


def test_the_workload_kinds_are_one_list_for_the_webhook_rules_admission_and_audit() -> None:
    kinds = {(w.group, w.version, w.resource) for w in WORKLOAD_KINDS}
    assert len(kinds) == len(WORKLOAD_KINDS) == len(POD_TEMPLATE_PATHS)
    assert set(POD_RESOURCES.values()) == set(POD_TEMPLATE_PATHS)
    # what audit lists in a cluster: lightkube's class for each kind names the same resource
    for workload in WORKLOAD_KINDS:
        info = lightkube_resource(workload.kind, workload.api_version)._api_info
        assert (info.resource.group, info.resource.version, info.plural) == (
            workload.group,
            workload.version,
            workload.resource,
        )
    # the webhook rules: the core's, deploy/base's (generated from it) and the Helm chart's
    core = webhook_configurations(load_policy(DEFAULT_POLICY_YAML))
    base = [doc for doc in yaml.safe_load_all((REPO_ROOT / "deploy/base/webhooks.yaml").read_text()) if doc]
    with helm.Chart.load(REPO_ROOT / "deploy/chart/imagegate") as chart:
        rendered = chart.render(values=None, name="imagegate", namespace="imagegate", is_install=True)
    texts = [text for path, text in rendered.items() if not path.endswith("NOTES.txt")]
    chart_docs = [doc for text in texts for doc in yaml.safe_load_all(text) if doc]
    chart_hooks = [doc for doc in chart_docs if doc.get("kind", "").endswith("WebhookConfiguration")]
    for configurations in (core, base, chart_hooks):
        assert rule_resources(configurations) == [kinds, kinds]
    core_rules = [hook["rules"] for configuration in core for hook in configuration["webhooks"]]
    for configurations in (base, chart_hooks):
        assert [hook["rules"] for c in configurations for hook in c["webhooks"]] == core_rules


def test_the_grant_document_form_has_one_writer() -> None:
    """`grant_entry` writes what `load_grants` reads: every key, in order, round trips; unset keys are left out."""
    from imagegate.core.policy import dump_grants, grant_entry, load_grants  # noqa: PLC0415

    full = grant_entry(
        "tool-a",
        registries=["ghcr.io/a/", "quay.io/a/app"],
        expires="2031-01-31",
        reason="needs R",
        requested_by="alice",
        ticket="T123",
        require_base_image=True,
        mode="warn",
        signed_by="keys/a.pub",
    )
    bare = grant_entry("tool-b")
    document = {"apiVersion": "imagegate.toolforge.org/v1", "kind": "ImageGrants", "grants": [full, bare]}
    assert list(full) == [
        "namespace",
        "registries",
        "expires",
        "reason",
        "requestedBy",
        "ticket",
        "requireBaseImage",
        "mode",
        "signedBy",
    ]
    assert bare == {"namespace": "tool-b"}
    assert dump_grants(load_grants(json.dumps(document))) == document
