"""The Toolforge policy: one document, and the platform's real pods admitted by it.

tests/fixtures/toolforge/ holds what the jobs framework, webservice and the build service
create today (Deployments, CronJobs, Jobs and the Pods they make, after volume-admission's
mounts), and what a tool must not be able to do.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import re
from pathlib import Path
from typing import Any

import jsonpatch
import pytest
import yaml

from imagegate.core.decide import decide
from imagegate.core.podprofile import HostPathMatch
from imagegate.core.policy import load_identities, load_policy
from imagegate.core.records import Webhook
from imagegate.shell.builtin_policy import DEFAULT_POLICY_YAML, default_policy
from tests.conftest import REPO_ROOT, admission_review, run_imagegate
from tests.webhook_process import run_webhook

FIXTURES = REPO_ROOT / "tests" / "fixtures" / "toolforge"
IDENTITIES = FIXTURES / "identities.yaml"
NOW = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)


def objects(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def toolforge_policy() -> Any:
    return default_policy().with_identities(load_identities(IDENTITIES.read_text(), str(IDENTITIES)))


ADMITTED = sorted((FIXTURES / "admitted").glob("*.yaml"))
DENIED = sorted((FIXTURES / "denied").glob("*.yaml"))


def test_the_fixtures_cover_what_the_platform_creates() -> None:
    kinds = {obj["kind"] for path in ADMITTED for obj in objects(path)}
    assert {"Deployment", "CronJob", "Job", "Pod"} <= kinds
    host_paths = {
        volume["hostPath"]["path"]
        for path in ADMITTED
        for obj in objects(path)
        if obj["kind"] == "Pod"
        for volume in obj["spec"].get("volumes", [])
        if "hostPath" in volume
    }
    # the current mount and every one of the earlier set
    assert {"/data/project", "/data/scratch", "/public/dumps", "/var/lib/sss/pipes", "/etc/ldap.conf"} <= host_paths
    images = {c["image"] for path in ADMITTED for obj in objects(path) for c in _containers(obj)}
    assert any(i.startswith("tools-harbor.wmcloud.org/tool-") for i in images)  # build-service images
    assert any(i.startswith("docker-registry.tools.wmflabs.org/") for i in images)
    assert any(i.startswith("docker-registry.svc.toolforge.org/") for i in images)


def _containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    spec = obj["spec"]
    for key in ("jobTemplate", "template"):
        if key in spec:
            spec = spec[key]["spec"]
    if "template" in spec:
        spec = spec["template"]["spec"]
    return list(spec["containers"])


# The one thing the platform does not set today: /mutate adds it (issue 13, docs/policy.md).
STRICT_GROUPS = "/securityContext/supplementalGroupsPolicy"


def mutated(obj: dict[str, Any]) -> dict[str, Any]:
    """``obj`` as /mutate leaves it: only supplementalGroupsPolicy: Strict added to its pod spec."""
    patches = decide(toolforge_policy(), obj, namespace=obj["metadata"]["namespace"], now=NOW).patches
    assert [(p["op"], p["value"]) for p in patches] == [("add", "Strict")], patches
    assert patches[0]["path"].endswith(STRICT_GROUPS)
    patched: dict[str, Any] = jsonpatch.apply_patch(obj, list(patches))
    return patched


@pytest.mark.parametrize("path", ADMITTED, ids=lambda p: p.stem)
@pytest.mark.parametrize("webhook", [Webhook.VALIDATE, Webhook.CHECK], ids=["validate", "mutate"])
def test_platform_objects_are_admitted_by_the_built_in_policy(path: Path, webhook: Webhook) -> None:
    policy = toolforge_policy()
    for obj in objects(path):
        judged = mutated(obj) if webhook is Webhook.VALIDATE else obj  # /validate sees /mutate's result
        decision = decide(policy, judged, namespace=obj["metadata"]["namespace"], now=NOW, webhook=webhook)
        assert decision.governed
        assert decision.allowed and not decision.findings, (obj["kind"], decision.message())
        # the platform already sets everything else the profile wants
        assert all(p["path"].endswith(STRICT_GROUPS) for p in decision.patches)


def _expected_rule(path: Path) -> str:
    found = re.search(r"^# expect: (\S+)$", path.read_text(), re.M)
    assert found, f"{path} names no expected rule"
    return found.group(1)


@pytest.mark.parametrize("path", DENIED, ids=lambda p: p.stem)
def test_what_a_tool_must_not_do_is_denied(path: Path) -> None:
    policy = toolforge_policy()
    (obj,) = objects(path)
    decision = decide(policy, obj, namespace=obj["metadata"]["namespace"], now=NOW, webhook=Webhook.VALIDATE)
    assert not decision.allowed
    assert _expected_rule(path) in {f.rule for f in decision.findings}, decision.message()


def test_each_tool_runs_its_own_harbor_images_and_no_others() -> None:
    policy = toolforge_policy()
    (borrowed,) = objects(FIXTURES / "denied" / "other-tools-harbor-image.yaml")
    in_foo = decide(policy, borrowed, namespace="tool-foo", now=NOW)
    assert not in_foo.allowed and "has no BYOC grant" in in_foo.message()
    in_bar = dict(borrowed, metadata={**borrowed["metadata"], "namespace": "tool-bar"})
    in_bar["spec"] = dict(borrowed["spec"], securityContext={**borrowed["spec"]["securityContext"]})
    for key in ("runAsUser", "runAsGroup", "fsGroup"):
        in_bar["spec"]["securityContext"][key] = 54821
    decision = decide(policy, in_bar, namespace="tool-bar", now=NOW)
    assert decision.allowed, decision.message()
    (verdict,) = decision.verdicts
    assert verdict.allowed_by == "trusted tools-harbor.wmcloud.org/{namespace} in tool-bar"


def test_check_command_with_identities_admits_the_fixtures() -> None:
    result = run_imagegate("check", str(FIXTURES / "admitted"), "--identities", str(IDENTITIES), "-o", "json")
    assert result.returncode == 0, result.stdout + result.stderr
    payload = json.loads(result.stdout)
    assert payload["allowed"] and len(payload["objects"]) == sum(len(objects(p)) for p in ADMITTED)
    denied = run_imagegate("check", str(FIXTURES / "denied"), "--identities", str(IDENTITIES), "-o", "json")
    assert denied.returncode == 1
    assert not any(o["allowed"] for o in json.loads(denied.stdout)["objects"])


def test_check_without_identities_fails_closed() -> None:
    result = run_imagegate("check", str(FIXTURES / "admitted" / "webservice.yaml"), "-o", "json")
    assert result.returncode == 1
    rules = {v["rule"] for o in json.loads(result.stdout)["objects"] for v in o["violations"]}
    assert "tool-profile:identity" in rules


def test_the_webhook_with_no_policy_flag_admits_the_platform_pods(tmp_path: Path) -> None:
    pods = [obj for path in ADMITTED for obj in objects(path) if obj["kind"] == "Pod"]
    with run_webhook(tmp_path, "--identities", str(IDENTITIES)) as webhook:
        client = webhook.client()
        for pod in pods:
            namespace = pod["metadata"]["namespace"]
            for path, sent in (("/validate", mutated(pod)), ("/mutate", pod)):
                answer = client.post(path, json=admission_review(sent, namespace=namespace)).json()["response"]
                assert answer["allowed"], (pod["metadata"]["generateName"], path, answer)
                assert ("patch" in answer) is (path == "/mutate")
        (borrowed,) = objects(FIXTURES / "denied" / "other-tools-harbor-image.yaml")
        answer = client.post("/validate", json=admission_review(borrowed, namespace="tool-foo")).json()["response"]
        assert not answer["allowed"] and "tools-harbor.wmcloud.org/tool-bar" in answer["status"]["message"]
        # what a tool must not do, as a tool sends it (hostPaths below volume-admission's mounts among it)
        for fixture in DENIED:
            (obj,) = objects(fixture)
            review = admission_review(obj, namespace=obj["metadata"]["namespace"])
            answer = client.post("/validate", json=review).json()["response"]
            assert not answer["allowed"], (fixture.stem, answer)
            assert f"{_expected_rule(fixture)} " in answer["auditAnnotations"]["findings"], (fixture.stem, answer)


# volume-admission's volumes as Toolforge deploys them (wikimedia/cloud-toolforge-volume-admission-controller,
# deployment/chart/values.yaml `volumes`: path and readOnly), each mounted at exactly that path.
VOLUME_ADMISSION = {
    "/public/dumps": True,
    "/mnt/nfs/dumps-clouddumps1001.wikimedia.org": True,
    "/mnt/nfs/dumps-clouddumps1002.wikimedia.org": True,
    "/data/project": False,
    "/etc/wmcs-project": True,
    "/data/scratch": False,
    "/etc/ldap.conf": True,
    "/etc/ldap.yaml": True,
    "/etc/novaobserver.yaml": True,
    "/var/lib/sss/pipes": False,
}


def test_the_built_in_host_paths_are_volume_admissions_mounts_exactly() -> None:
    settings = default_policy().pod_security
    assert settings is not None and settings.tool is not None
    rules = settings.tool.host_paths
    assert {rule.path: rule.read_only for rule in rules} == VOLUME_ADMISSION
    # exact: a tool can make a path below one of them a symlink to anywhere on the node
    assert {rule.match for rule in rules} == {HostPathMatch.EXACT}


# --- one document -----------------------------------------------------------------------------

SYNC_HINT = "run `python scripts/sync_policy.py` after editing src/imagegate/policies/toolforge.yaml"


def test_deploy_base_ships_the_built_in_policy_verbatim() -> None:
    configmaps = objects(REPO_ROOT / "deploy" / "base" / "configmaps.yaml")
    (policy_cm,) = (cm for cm in configmaps if cm["metadata"]["name"] == "imagegate-policy")
    assert policy_cm["data"]["policy.yaml"] == DEFAULT_POLICY_YAML, SYNC_HINT


def test_the_chart_ships_the_built_in_policy_verbatim() -> None:
    chart_copy = REPO_ROOT / "deploy" / "chart" / "imagegate" / "files" / "policy.yaml"
    assert chart_copy.read_text() == DEFAULT_POLICY_YAML, SYNC_HINT


def test_sync_script_reproduces_the_copies() -> None:
    spec = importlib.util.spec_from_file_location("sync_policy", REPO_ROOT / "scripts" / "sync_policy.py")
    assert spec is not None and spec.loader is not None
    sync_policy = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sync_policy)
    current = (REPO_ROOT / "deploy" / "base" / "configmaps.yaml").read_text()
    assert sync_policy.configmaps_text(DEFAULT_POLICY_YAML, current) == current
    edited = sync_policy.configmaps_text("kind: ImagePolicy\n", current)
    # deploy/base holds the policy's ConfigMap alone (grants and identities are deploy/state's)
    assert edited.endswith("  policy.yaml: |\n    kind: ImagePolicy\n") and "imagegate-policy" in edited
    assert (
        edited.replace("    kind: ImagePolicy\n", "")
        == current.split("  policy.yaml: |\n", 1)[0] + "  policy.yaml: |\n"
    )


def test_printed_default_is_the_shipped_file() -> None:
    printed = run_imagegate("policy", "default")
    assert printed.returncode == 0
    assert printed.stdout == DEFAULT_POLICY_YAML
    assert load_policy(printed.stdout).trusted.templates  # the per-tool Harbor entry survives the round trip


def test_the_migration_guide_names_only_metrics_the_server_has() -> None:
    guide = (REPO_ROOT / "docs" / "toolforge.md").read_text()
    # the webhook's modules, wherever in shell/webhook/ the metrics are defined
    server = "".join(
        p.read_text() for p in sorted((REPO_ROOT / "src" / "imagegate" / "shell" / "webhook").glob("*.py"))
    )
    named = set(re.findall(r"`(imagegate_[a-z_]+)", guide))
    assert named and {m for m in named if f'"{m}"' not in server} == set()
