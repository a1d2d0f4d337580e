"""The tool profile and the mutation that makes plain pods compliant, through ``decide``."""

from __future__ import annotations

import copy
import datetime as dt
import json
import textwrap
from pathlib import Path
from typing import Any

import jsonpatch
import pytest

from imagegate.core.decide import Decision, decide
from imagegate.core.policy import Mode, Policy, PolicyError, load_policy
from imagegate.core.records import Webhook
from imagegate.core.workloads import POD_TEMPLATE_PATHS
from imagegate.shell.policy_files import load_policy_files
from tests.conftest import IDENTITIES_HEADER, POLICY_HEADER, admission_review

NOW = dt.datetime(2026, 11, 24, tzinfo=dt.UTC)
IMAGE = "docker-registry.svc.toolforge.org/toolforge-python311:latest"
UID = 52503

POLICY_TEXT = textwrap.dedent(
    f"""
    apiVersion: imagegate.toolforge.org/v1
    kind: ImagePolicy
    trusted: [docker-registry.svc.toolforge.org]
    podSecurity:
      level: restricted
      mode: enforce
      exempt: [infra-*]
      overrides:
        - namespaces: [legacy-*]
          level: baseline
          mode: warn
      toolProfile:
        namespaces: ["tool-*"]
        uidLabel: toolforge.org/uid
        identities:
          tool-example: {{uid: {UID}, gid: {UID}}}
        hostPaths:
          - {{path: "/data/project/{{tool}}"}}
          - {{path: /public/dumps, readOnly: true}}
    """
)
POLICY = load_policy(POLICY_TEXT, "policy.yaml")
NO_MUTATION = load_policy(POLICY_TEXT.replace("level: restricted\n", "level: restricted\n  mutate: false\n"))


def plain_pod(**spec: Any) -> dict[str, Any]:
    """What `kubectl run` sends: no security context at all."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web"},
        "spec": {"containers": [{"name": "app", "image": IMAGE}], **spec},
    }


def run(obj: dict[str, Any], namespace: str = "tool-example", policy: Policy = POLICY, **kw: Any) -> Decision:
    return decide(policy, obj, namespace=namespace, now=NOW, **kw)


def rules(decision: Decision) -> list[str]:
    return sorted(f.rule for f in decision.findings)


def apply(obj: dict[str, Any], decision: Decision) -> dict[str, Any]:
    """Apply the decision's patch with a real JSON Patch implementation (as the API server does)."""
    patched: dict[str, Any] = jsonpatch.apply_patch(obj, list(decision.patches))
    return patched


def test_kubectl_run_pod_becomes_compliant() -> None:
    pod = plain_pod()
    decision = run(pod)
    assert decision.allowed, decision.message()
    patched = apply(pod, decision)
    security = patched["spec"]["securityContext"]
    assert security == {
        "runAsUser": UID,
        "runAsGroup": UID,
        "fsGroup": UID,
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
        "supplementalGroupsPolicy": "Strict",
    }
    assert patched["spec"]["containers"][0]["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
    }
    # the validating webhook sees the mutated pod: nothing more to patch, nothing wrong
    again = run(patched)
    assert again.allowed and again.patches == ()


@pytest.mark.parametrize("kind", sorted(POD_TEMPLATE_PATHS))
@pytest.mark.parametrize("field", ["containers", "initContainers", "ephemeralContainers"])
def test_mutation_covers_every_kind_and_container_list(kind: str, field: str) -> None:
    spec: dict[str, Any] = {field: [{"name": "x", "image": IMAGE}]}
    if field != "containers":
        spec["containers"] = [{"name": "main", "image": IMAGE}]
    obj: dict[str, Any] = {"kind": kind, "metadata": {"name": "w"}}
    node = obj
    path = POD_TEMPLATE_PATHS[kind]
    for token in path[:-1]:
        node = node.setdefault(token, {})
    node[path[-1]] = spec
    decision = run(obj)
    assert decision.allowed, decision.message()
    patched = apply(obj, decision)
    node = patched
    for token in path:
        node = node[token]
    for container in node[field]:
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert node["securityContext"]["runAsUser"] == UID


def test_partial_security_context_is_completed_not_replaced() -> None:
    pod = plain_pod(securityContext={"runAsNonRoot": True, "supplementalGroups": [UID]})
    pod["spec"]["containers"][0]["securityContext"] = {
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    decision = run(pod)
    assert decision.allowed
    patched = apply(pod, decision)
    assert patched["spec"]["securityContext"]["supplementalGroups"] == [UID]
    assert patched["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True
    assert {p["path"] for p in decision.patches} >= {
        "/spec/securityContext/runAsUser",
        "/spec/containers/0/securityContext/allowPrivilegeEscalation",
    }


@pytest.mark.parametrize(
    ("change", "rule", "text"),
    [
        ({"securityContext": {"runAsUser": 0}}, "tool-profile:runAsUser", f"only {UID} is allowed"),
        ({"securityContext": {"runAsUser": 1000}}, "tool-profile:runAsUser", "runAsUser=1000"),
        ({"securityContext": {"runAsGroup": 0}}, "tool-profile:runAsGroup", f"only {UID} is allowed"),
        ({"securityContext": {"fsGroup": 1}}, "tool-profile:fsGroup", f"fsGroup=1; only {UID}"),
        ({"securityContext": {"supplementalGroups": [0]}}, "tool-profile:supplementalGroups", "[0]"),
        ({"securityContext": {"runAsNonRoot": False}}, "pod-security:runAsNonRoot", "runAsNonRoot=false"),
        (
            {"securityContext": {"seccompProfile": {"type": "Localhost", "localhostProfile": "x"}}},
            "tool-profile:seccompProfile",
            '"RuntimeDefault"',
        ),
        (
            {"securityContext": {"seccompProfile": {"type": "Unconfined"}}},
            "tool-profile:seccompProfile",  # the tool profile's, which replaces the level's two
            "seccompProfile.type='Unconfined'; only \"RuntimeDefault\" is allowed",
        ),
        ({"hostNetwork": True}, "pod-security:hostNamespaces", "hostNetwork=true"),
        ({"hostPID": True}, "pod-security:hostNamespaces", "hostPID=true"),
        (
            {"volumes": [{"name": "etc", "hostPath": {"path": "/etc"}}]},
            "tool-profile:hostPath",
            "'/etc' is not allowed",
        ),
        (
            {"volumes": [{"name": "other", "hostPath": {"path": "/data/project/othertool"}}]},
            "tool-profile:hostPath",
            "/data/project/example",
        ),
        (
            {"volumes": [{"name": "up", "hostPath": {"path": "/data/project/example/../other"}}]},
            "tool-profile:hostPath",
            "without '..'",
        ),
        ({"volumes": [{"name": "n", "nfs": {"server": "x", "path": "/"}}]}, "tool-profile:volumes", "'nfs'"),
    ],
)
def test_forbidden_pod_fields_are_denied_naming_the_field(change: dict[str, Any], rule: str, text: str) -> None:
    pod = plain_pod(**change)
    decision = run(pod)
    assert not decision.allowed
    messages = [f.message for f in decision.findings if f.rule == rule]
    assert messages, rules(decision)
    assert any(text in m for m in messages), messages


@pytest.mark.parametrize("field", ["containers", "initContainers", "ephemeralContainers"])
@pytest.mark.parametrize(
    ("context", "rule"),
    [
        # in tool namespaces the tool profile's own checks replace the level's (stricter, at every level)
        ({"privileged": True}, "tool-profile:privileged"),
        ({"allowPrivilegeEscalation": True}, "tool-profile:allowPrivilegeEscalation"),
        ({"runAsUser": 0}, "tool-profile:runAsUser"),
        ({"capabilities": {"add": ["NET_BIND_SERVICE"], "drop": ["ALL"]}}, "tool-profile:capabilities"),
        ({"capabilities": {"add": ["SYS_ADMIN"], "drop": ["ALL"]}}, "tool-profile:capabilities"),
        ({"capabilities": {"drop": ["NET_RAW"]}}, "tool-profile:capabilities"),
        ({"procMount": "Unmasked"}, "pod-security:procMount"),
    ],
)
def test_container_fields_in_every_list(field: str, context: dict[str, Any], rule: str) -> None:
    pod = plain_pod()
    pod["spec"].setdefault(field, []).append({"name": "x", "image": IMAGE, "securityContext": context})
    decision = run(pod)
    assert rule in rules(decision)
    assert not decision.allowed


def test_host_ports_are_denied() -> None:
    pod = plain_pod()
    pod["spec"]["containers"][0]["ports"] = [{"containerPort": 80, "hostPort": 80}]
    assert "pod-security:hostPorts" in rules(run(pod))


def test_host_path_allowlist_and_read_only() -> None:
    pod = plain_pod(
        volumes=[
            {"name": "home", "hostPath": {"path": "/data/project/example", "type": "Directory"}},
            {"name": "dumps", "hostPath": {"path": "/public/dumps/"}},
        ]
    )
    pod["spec"]["containers"][0]["volumeMounts"] = [
        {"name": "home", "mountPath": "/data/project/example"},
        {"name": "dumps", "mountPath": "/public/dumps", "readOnly": True},
    ]
    assert run(pod).allowed
    # a rule admits its path alone (match: exact, the default), never a path below it
    below = copy.deepcopy(pod)
    below["spec"]["volumes"][0]["hostPath"]["path"] = "/data/project/example/link"
    assert "tool-profile:hostPath" in rules(run(below))
    pod["spec"]["containers"][0]["volumeMounts"][1]["readOnly"] = False
    decision = run(pod)
    (finding,) = decision.violations
    assert finding.rule == "tool-profile:hostPath"
    assert 'must mount volume "dumps" (/public/dumps) with readOnly: true' in finding.message


def test_identity_from_namespace_label_or_unknown() -> None:
    labels = {"toolforge.org/uid": "60001"}
    decision = run(plain_pod(), namespace="tool-other", namespace_labels=labels)
    assert decision.allowed
    assert apply(plain_pod(), decision)["spec"]["securityContext"]["runAsUser"] == 60001
    unknown = run(plain_pod(), namespace="tool-unknown")
    assert not unknown.allowed
    assert "no uid/gid is known for namespace tool-unknown" in unknown.message()


def test_exempt_override_and_plain_restricted() -> None:
    privileged = plain_pod(hostNetwork=True)
    assert run(privileged, namespace="infra-dns").allowed and not run(privileged, namespace="infra-dns").findings
    warned = run(privileged, namespace="legacy-app")
    assert warned.allowed and [f.mode for f in warned.warnings] == [Mode.WARN]
    # not a tool namespace: restricted without the tool profile, uid left to the image
    plain = run(plain_pod(), namespace="default")
    assert plain.allowed
    assert "/spec/securityContext/runAsUser" not in {p["path"] for p in plain.patches}


def test_without_mutation_unset_fields_are_violations() -> None:
    decision = run(plain_pod(), policy=NO_MUTATION)
    assert not decision.allowed and decision.patches == ()
    assert {
        "pod-security:runAsNonRoot",
        "tool-profile:allowPrivilegeEscalation",
        "tool-profile:runAsUser",
        "tool-profile:supplementalGroupsPolicy",
    } <= set(rules(decision))


def test_updates() -> None:
    pod = apply(plain_pod(), run(plain_pod()))
    # kubectl debug adds an ephemeral container with no security context: only it is filled in
    debugged = copy.deepcopy(pod)
    debugged["spec"]["ephemeralContainers"] = [{"name": "dbg", "image": IMAGE}]
    decision = run(debugged, old_object=pod)
    assert decision.allowed, decision.message()
    assert all(p["path"].startswith("/spec/ephemeralContainers/0/securityContext") for p in decision.patches)
    patched = apply(debugged, decision)
    assert patched["spec"]["ephemeralContainers"][0]["securityContext"] == {
        "runAsUser": UID,
        "runAsGroup": UID,
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
    }
    assert {**patched, "spec": {**patched["spec"], "ephemeralContainers": []}} == {
        **debugged,
        "spec": {**debugged["spec"], "ephemeralContainers": []},
    }  # nothing that already runs is touched
    assert decide(POLICY, patched, namespace="tool-example", now=NOW, old_object=pod, webhook=Webhook.VALIDATE).allowed
    # a second one later: the first is running and left alone
    second = copy.deepcopy(patched)
    second["spec"]["ephemeralContainers"].append({"name": "dbg2", "image": IMAGE})
    paths = {p["path"] for p in run(second, old_object=patched).patches}
    assert paths and all(path.startswith("/spec/ephemeralContainers/1/") for path in paths)
    # one that sets a forbidden value is denied, naming the field; it is never overwritten
    rooted = copy.deepcopy(pod)
    rooted["spec"]["ephemeralContainers"] = [
        {"name": "dbg", "image": IMAGE, "securityContext": {"runAsUser": 0, "capabilities": {"add": ["SYS_PTRACE"]}}}
    ]
    denied = run(rooted, old_object=pod)
    assert not denied.allowed
    message = denied.message()
    assert 'container "dbg" sets securityContext.runAsUser=0' in message and "SYS_PTRACE" in message
    assert apply(rooted, denied)["spec"]["ephemeralContainers"][0]["securityContext"]["runAsUser"] == 0
    # without mutation the bare debug container is judged as sent
    assert "tool-profile:allowPrivilegeEscalation" in rules(run(debugged, old_object=pod, policy=NO_MUTATION))
    # a label change on a Deployment leaves the template alone: nothing to judge
    deployment: dict[str, Any] = {
        "kind": "Deployment",
        "metadata": {"name": "d"},
        "spec": {
            "template": {
                "spec": {"containers": [{"name": "a", "image": IMAGE, "securityContext": {"privileged": True}}]}
            }
        },
    }
    relabelled = copy.deepcopy(deployment)
    relabelled["metadata"]["labels"] = {"a": "b"}
    assert run(relabelled, old_object=deployment).allowed


def test_policy_errors_for_pod_security() -> None:
    for text, where in [
        ("podSecurity: {level: strict}", "podSecurity.level"),
        ("podSecurity: {version: '1.37'}", "podSecurity.version"),
        ("podSecurity: {toolProfile: {hostPaths: [{path: data}]}}", "podSecurity.toolProfile.hostPaths[0].path"),
        ("podSecurity: {toolProfile: {identities: {tool-a: {uid: 0}}}}", "podSecurity.toolProfile.identities.tool-a"),
    ]:
        with pytest.raises(PolicyError) as caught:
            load_policy(POLICY_HEADER + text, "p.yaml")
        assert caught.value.path == where, str(caught.value)


def test_identities_file(tmp_path: Path) -> None:
    (tmp_path / "policy.yaml").write_text(
        POLICY_HEADER + "podSecurity:\n  toolProfile:\n    identitiesFile: identities.yaml\n"
    )
    (tmp_path / "identities.yaml").write_text(
        IDENTITIES_HEADER + "identities:\n  tool-filed: {uid: 70000, gid: 70001}\n"
    )
    policy, _ = load_policy_files(tmp_path / "policy.yaml")
    decision = decide(policy, plain_pod(), namespace="tool-filed", now=NOW)
    patched = apply(plain_pod(), decision)
    assert (patched["spec"]["securityContext"]["runAsUser"], patched["spec"]["securityContext"]["runAsGroup"]) == (
        70000,
        70001,
    )


def test_validating_webhook_judges_the_object_it_is_sent() -> None:
    """Deployed without the mutating webhook, a bare pod must not pass on an imagined mutation."""
    from imagegate.core.admission import decode_review, review  # noqa: PLC0415

    request = decode_review(json.dumps(admission_review(plain_pod(), "tool-example")).encode())
    validated = review(POLICY, request, now=NOW)
    assert not validated.allowed and "runAsNonRoot" in validated.body.decode()
    mutated = review(POLICY, request, now=NOW, webhook=Webhook.MUTATE)
    assert mutated.allowed and mutated.patched
