"""The mutating webhook's ``needs-mutation`` condition, derived from the policy (``imagegate webhooks``).

Evaluated with the real CEL implementation of tests/cel_conditions.py: whenever ``/mutate``
would return a patch, the condition is true (for every captured API-server request and for
generated pods and templates of every kind), it never errors, and for Toolforge's pods with
the full security context it is false. deploy/base and the chart ship what the command prints.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imagegate.core import records
from imagegate.core.admission import decode_review, review
from imagegate.core.decide import decide
from imagegate.core.policy import Policy, load_identities, load_policy
from imagegate.core.questions import DigestQuestion
from imagegate.core.records import Answers, Question
from imagegate.core.webhooks import (
    MUTATION_SCOPES,
    TEMPLATE_CHANGED,
    mutation_condition,
    scope_condition,
    webhook_configurations,
)
from imagegate.core.workloads import POD_TEMPLATE_PATHS, pod_specs
from imagegate.shell.builtin_policy import DEFAULT_POLICY_YAML, default_policy
from tests import test_apiserver_replay as replay
from tests.cel_conditions import Webhook, captured_requests, evaluate, sent, webhooks
from tests.conftest import REPO_ROOT

NOW = dt.datetime(2026, 12, 2, tzinfo=dt.UTC)
SHIPPED_POLICY = REPO_ROOT / "src" / "imagegate" / "policies" / "toolforge.yaml"
TOOLFORGE = REPO_ROOT / "tests" / "fixtures" / "toolforge"
IDENTITIES = load_identities((TOOLFORGE / "identities.yaml").read_text())
DIGEST = "sha256:" + "ab" * 32


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "imagegate", *args], capture_output=True, text=True, timeout=60, check=False
    )


def mutating_hook(policy: Policy) -> Webhook:
    """The mutating webhook that has ``needs-mutation``: the UPDATE one (CREATE is always sent)."""
    (hook,) = (
        h for h in webhooks(("derived", d) for d in webhook_configurations(policy)) if h.name.startswith("mutate-")
    )
    return hook


def mutate_sent(policy: Policy, request: Mapping[str, Any]) -> bool:
    """Whether the API server calls /mutate for ``request``: through either mutating webhook."""
    hooks = webhooks(("derived", d) for d in webhook_configurations(policy))
    return any([sent(h, request) for h in hooks if h.name.startswith("mutate")])  # every one evaluated


def needs_mutation(hook: Webhook, request: Mapping[str, Any]) -> bool:
    (condition,) = (c for c in hook.conditions if c.name == "needs-mutation")
    return evaluate(condition, request)


def create(obj: Mapping[str, Any], namespace: str) -> dict[str, Any]:
    return {"operation": "CREATE", "namespace": namespace, "object": obj, "oldObject": None}


class AnyDigest(Mapping[Question[Any], Any]):
    """The registry's answer for every image: a digest, so pinning patches wherever it applies."""

    def __getitem__(self, key: Question[Any]) -> Any:
        if isinstance(key, DigestQuestion):
            return DIGEST
        raise KeyError(key)

    def __iter__(self) -> Iterator[Question[Any]]:
        return iter(())

    def __len__(self) -> int:
        return 1  # not empty: decide() takes an empty mapping for "no digests"


# --- what deploy/ and the chart ship ----------------------------------------------------


def test_the_shipped_files_are_what_the_command_prints() -> None:
    printed = run("webhooks", "-p", str(SHIPPED_POLICY))
    assert printed.returncode == 0, printed.stderr
    assert (REPO_ROOT / "deploy" / "base" / "webhooks.yaml").read_text() == printed.stdout
    condition = run("webhooks", "--mutate-condition", "-p", str(SHIPPED_POLICY))
    assert condition.returncode == 0, condition.stderr
    assert condition.stdout == mutation_condition(default_policy()) + "\n"
    assert run("webhooks").stdout == printed.stdout  # the built-in policy is the shipped one
    # The chart's conditions: one file per mutation scope (it picks the one of the policy it
    # renders) and template-changed; scripts/sync_policy.py writes them.
    files = REPO_ROOT / "deploy" / "chart" / "imagegate" / "files"
    assert (files / "template-changed.cel").read_text() == TEMPLATE_CHANGED + "\n"
    shipped = {path.name for path in (files / "needs-mutation").iterdir()}
    assert shipped == {f"{scope.name}.cel" for scope in MUTATION_SCOPES}
    for scope in MUTATION_SCOPES:
        assert (files / "needs-mutation" / f"{scope.name}.cel").read_text() == scope_condition(scope) + "\n"


def test_a_bad_policy_file_is_one_error_line(tmp_path: Path) -> None:
    bad = tmp_path / "policy.yaml"
    bad.write_text("apiVersion: imagegate.toolforge.org/v1\nkind: ImagePolicy\nmode: sometimes\n")
    for path in (bad, tmp_path / "missing.yaml"):
        result = run("webhooks", "-p", str(path))
        assert result.returncode == 2 and result.stdout == ""
        assert result.stderr.startswith("error:") and "Traceback" not in result.stderr


def test_only_the_mutating_webhook_is_skipped() -> None:
    for policy in (default_policy(), replay.POLICY):
        hooks = webhooks(("derived", d) for d in webhook_configurations(policy))
        names = {h.name: [c.name for c in h.conditions] for h in hooks}
        assert names == {
            "mutate.imagegate.toolforge.org": [],
            "mutate-update.imagegate.toolforge.org": ["template-changed", "needs-mutation"],
            "validate.imagegate.toolforge.org": [],
            "validate-update.imagegate.toolforge.org": ["template-changed"],
        }


def test_the_condition_follows_the_policy() -> None:
    shipped = mutation_condition(default_policy())
    assert "supplementalGroupsPolicy" in shipped and "runAsUser" in shipped
    assert "contains('@')" not in shipped  # the shipped policy does not pin
    assert "contains('@')" in mutation_condition(replay.POLICY)  # the capture's pins in tool-pin
    document = yaml.safe_load(DEFAULT_POLICY_YAML)
    document["podSecurity"] = {"level": "baseline", "mutate": True}
    assert "securityContext" not in mutation_condition(load_policy(yaml.safe_dump(document)))
    document["podSecurity"] = {"level": "restricted", "mutate": False}
    assert "securityContext" not in mutation_condition(load_policy(yaml.safe_dump(document)))


# --- the captured requests ----------------------------------------------------------------


@pytest.mark.parametrize("name", replay.NAMES)
def test_every_captured_request_that_mutate_patches_is_sent(name: str) -> None:
    """The capture's own policy (pinning in tool-pin): a patch from /mutate means the condition is true."""
    request = replay.captured("mutating", name)
    response = replay.answer(replay.body("mutating", name), mutate=True, digests=replay.registry_digests(name))
    if "patch" in response:
        assert mutate_sent(replay.POLICY, request), f"/mutate patches {name} but the API server would not call it"
    # And for the shipped policy, whatever /mutate answers: the conditions never error.
    outcome = review(
        default_policy(), decode_review(replay.body("mutating", name)), now=NOW, webhook=records.Webhook.MUTATE
    )
    if outcome.patched:
        assert mutate_sent(default_policy(), request)
    mutate_sent(default_policy(), request)


def test_every_captured_request_keeps_the_condition_from_erroring() -> None:
    hook = mutating_hook(replay.POLICY)
    for _name, request in captured_requests():
        needs_mutation(hook, request)
        for operation, obj, old in (("DELETE", None, request.get("object")), ("CONNECT", None, None)):
            assert needs_mutation(hook, {**request, "operation": operation, "object": obj, "oldObject": old})


# --- Toolforge's pods: nothing to do ------------------------------------------------------


def full_context(obj: dict[str, Any]) -> dict[str, Any]:
    """A Toolforge fixture with supplementalGroupsPolicy: Strict, the one field the fixtures
    (written for API servers before the gate) leave out and the tool profile fills in."""
    obj = copy.deepcopy(obj)
    for _pointer, spec in pod_specs(obj):
        spec["securityContext"]["supplementalGroupsPolicy"] = "Strict"
    return obj


def toolforge_objects() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in sorted((TOOLFORGE / "admitted").glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document and document.get("kind") in POD_TEMPLATE_PATHS:
                found.append((f"{path.stem}/{document['kind']}", document))
    return found


TOOLFORGE_OBJECTS = toolforge_objects()


@pytest.mark.parametrize("name", [name for name, _ in TOOLFORGE_OBJECTS])
def test_toolforge_pods_with_the_full_security_context_are_not_sent(name: str) -> None:
    policy = default_policy().with_identities(IDENTITIES)
    hook = mutating_hook(policy)
    obj = dict(TOOLFORGE_OBJECTS)[name]
    namespace = obj["metadata"]["namespace"]
    # As written (before the SupplementalGroupsPolicy gate), /mutate adds the field: sent.
    assert decide(policy, obj, namespace=namespace, now=NOW).patches
    assert needs_mutation(hook, create(obj, namespace))
    complete = full_context(obj)
    assert decide(policy, complete, namespace=namespace, now=NOW).patches == ()
    assert not needs_mutation(hook, create(complete, namespace))
    assert not needs_mutation(hook, {**create(complete, namespace), "operation": "UPDATE", "oldObject": obj})


@pytest.mark.parametrize("name", replay.NAMES)
def test_captured_pods_after_imagegate_are_not_sent_again(name: str) -> None:
    """The captured validating inputs hold the object as imagegate's /mutate left it (full security
    context; in tool-pin, images pinned to digests): what a reinvocation after a later mutating
    webhook would bring. With supplementalGroupsPolicy back (v1.32's gate dropped it), /mutate has
    nothing to do and the API server does not call it, under the shipped policy (no pinning: trusted
    tags are left alone) and under the capture's (pinning: only digests pass). Only
    pods/ephemeralcontainers updates are always sent."""
    request = replay.captured("validating", name)
    complete = {**request, "object": full_context(request["object"])}
    review_body = json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": complete})
    always_sent = request.get("subResource") == "ephemeralcontainers"
    shipped = default_policy().with_identities(IDENTITIES)
    policies = [(shipped, mutating_hook(shipped))]
    if request["namespace"] == "tool-pin":
        policies.append((replay.POLICY, mutating_hook(replay.POLICY)))
    for policy, hook in policies:
        if not always_sent:
            outcome = review(policy, decode_review(review_body.encode()), now=NOW, webhook=records.Webhook.MUTATE)
            assert not outcome.patched
        assert needs_mutation(hook, complete) is always_sent


# --- generated pods and templates -------------------------------------------------------

POD_FIELDS: dict[str, Any] = {
    "runAsUser": 52503,
    "runAsGroup": 52503,
    "fsGroup": 52503,
    "runAsNonRoot": True,
    "seccompProfile": {"type": "RuntimeDefault"},
    "supplementalGroupsPolicy": "Strict",
    "supplementalGroups": [52503],
}
CONTAINER_FIELDS: dict[str, Any] = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "runAsNonRoot": True,
    "runAsUser": 52503,
    "privileged": False,
    "seccompProfile": {"type": "RuntimeDefault"},
}
IMAGES = ("docker-registry.tools.wmflabs.org/toolforge-python311-sssd-base:latest", "docker.io/library/nginx:1.27")


def security_context(fields: Mapping[str, Any]) -> st.SearchStrategy[dict[str, Any] | None]:
    keys = sorted(fields)
    subset = st.sets(st.sampled_from(keys)).map(lambda chosen: {k: copy.deepcopy(fields[k]) for k in sorted(chosen)})
    # Half-filled nested values too: a seccompProfile without type, capabilities without drop.
    partial = subset.map(lambda c: {**c, "seccompProfile": {}} if "seccompProfile" in c and len(c) % 2 else c).map(
        lambda c: {**c, "capabilities": {"add": []}} if "capabilities" in c and len(c) % 3 == 0 else c
    )
    return st.one_of(st.none(), partial)


@st.composite
def containers(draw: st.DrawFn) -> dict[str, Any]:
    image = draw(st.sampled_from(IMAGES))
    if draw(st.booleans()):
        image += "@" + DIGEST
    container: dict[str, Any] = {"name": f"c{draw(st.integers(0, 99))}", "image": image}
    context = draw(security_context(CONTAINER_FIELDS))
    if context is not None:
        container["securityContext"] = context
    return container


@st.composite
def pod_spec(draw: st.DrawFn) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": draw(st.lists(containers(), min_size=1, max_size=3))}
    for field in ("initContainers", "ephemeralContainers"):
        if draw(st.booleans()):
            spec[field] = draw(st.lists(containers(), max_size=2))
    context = draw(security_context(POD_FIELDS))
    if context is not None:
        spec["securityContext"] = context
    if draw(st.booleans()):
        reference = draw(st.sampled_from(IMAGES)) + draw(st.sampled_from(("", "@" + DIGEST)))
        spec["volumes"] = [{"name": "data", "image": {"reference": reference}}]
    return spec


@st.composite
def pod_bearing_objects(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(sorted(POD_TEMPLATE_PATHS)))
    obj: dict[str, Any] = {"apiVersion": "v1", "kind": kind, "metadata": {"name": "x"}}
    node = obj
    path = POD_TEMPLATE_PATHS[kind]
    for token in path[:-1]:
        node = node.setdefault(token, {})
    node[path[-1]] = draw(pod_spec())
    return obj


def _policy(changes: Mapping[str, Any]) -> Policy:
    document = yaml.safe_load(DEFAULT_POLICY_YAML)
    document.update(changes)
    return load_policy(yaml.safe_dump(document)).with_identities(IDENTITIES)


POLICIES = {
    "shipped": default_policy().with_identities(IDENTITIES),
    "pinning": _policy({"pinning": {"enabled": True}, "trusted": ["docker-registry.tools.wmflabs.org", "docker.io"]}),
    "restricted-no-tool": _policy({"podSecurity": {"level": "restricted"}, "trusted": ["docker.io"]}),
    "baseline-pinning": _policy({"podSecurity": {"level": "baseline"}, "pinning": {"enabled": True}}),
}
HOOKS = {name: mutating_hook(policy) for name, policy in POLICIES.items()}


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    obj=pod_bearing_objects(),
    policy_name=st.sampled_from(sorted(POLICIES)),
    namespace=st.sampled_from(("tool-foo", "tool-nobody", "default")),
)
def test_whenever_mutate_patches_the_condition_is_true(obj: dict[str, Any], policy_name: str, namespace: str) -> None:
    decision = decide(POLICIES[policy_name], obj, namespace=namespace, now=NOW, answers=Answers(AnyDigest()))
    value = needs_mutation(HOOKS[policy_name], create(obj, namespace))  # never an error
    if decision.patches:
        assert value, json.dumps({"patches": list(decision.patches), "object": obj})[:2000]
