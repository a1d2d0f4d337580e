"""Replay of what a real kube-apiserver v1.32 sent (../shared/fixtures/apiserver-v1.32/).

For each of the 42 captured calls: the mutating webhook's input through ``/mutate``'s
handler (the bytes decoded as the server decodes them, ``review(..., mutate=True)``), its
JSON Patch applied with a real JSON Patch implementation, then ``/validate``'s handler on
the result. The decision is the one the live cluster gave, and where the captured
validating input holds imagegate's own mutation, the patched object's pod specs equal it.
The policy is the capture's: deploy/base/configmaps.yaml's policy, plus
``127.0.0.1:5000/toolforge`` trusted, the three tools' identities, tool-warn's warn-mode
grant and pinning in tool-pin.
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonpatch
import pytest
import yaml

from imagegate.core.admission import decode_review, review
from imagegate.core.policy import load_policy
from imagegate.core.questions import DigestQuestion
from imagegate.core.records import Answers, Webhook
from imagegate.core.reference import parse_docker_ref
from imagegate.core.workloads import pod_specs
from tests.cel_conditions import APISERVER_FIXTURES
from tests.conftest import REPO_ROOT
from tests.webhook_process import run_webhook

NOW = dt.datetime(2026, 12, 1, 22, 30, tzinfo=dt.UTC)  # the evening of the capture
IDENTITIES = {"tool-demo": 50001, "tool-warn": 50002, "tool-pin": 50004}
NAMES = sorted(path.stem for path in (APISERVER_FIXTURES / "mutating").glob("*.json"))

# Denied live: the README and the file names say which.
DENIED_LIVE = {name for name in NAMES if "untrusted" in name} | {"deployment-update-dryrun"}
# Two deliberate differences from the live answers:
# * kubectl debug's default ("legacy") profile sets no security context. Live, imagegate did
#   not mutate ephemeral containers and /validate denied it (issue 12, item 2); now /mutate
#   fills in the new container and it is admitted. The captured validating input is still
#   the unmutated one, and /validate still denies that, as it did live.
# * pod-create-warn: an image outside tool-warn's mode-warn grant was admitted live with a
#   warning. Since "blocked means blocked" (docs/policy.md, Modes) a grant's mode applies
#   only to the images its registries cover: an image outside them is outside-grant under the
#   policy's mode (enforce), so a warn grant cannot be used to run an image from anywhere.
DENIED = DENIED_LIVE | {"pod-create-warn"}
DENIED_BY_VALIDATE_OF_CAPTURE = DENIED_LIVE | {"pods-ephemeralcontainers-update", "pod-create-warn"}


def capture_policy_text() -> str:
    """deploy/'s policy with the capture's additions (see the fixtures' README)."""
    configmaps = list(yaml.safe_load_all((REPO_ROOT / "deploy" / "base" / "configmaps.yaml").read_text()))
    document = yaml.safe_load(configmaps[0]["data"]["policy.yaml"])
    document["trusted"].append("127.0.0.1:5000/toolforge")
    tool = document["podSecurity"]["toolProfile"]
    tool.pop("identitiesFile", None)  # deploy/ passes --identities now
    tool["identities"] = {namespace: {"uid": uid, "gid": uid} for namespace, uid in IDENTITIES.items()}
    document["byoc"]["grants"] = [
        {"namespace": "tool-warn", "registries": ["127.0.0.1:5000/byoc"], "mode": "warn", "reason": "capture"}
    ]
    document["pinning"] = {"enabled": True, "namespaces": ["tool-pin"]}
    # v1.32's SupplementalGroupsPolicy gate is off by default: the API server drops the field, so
    # the operator of this cluster picks warn (with deploy/'s deny, no tool pod would pass;
    # tests/test_tool_profile_hardening.py replays all three modes).
    tool["supplementalGroupsPolicy"] = {"whenDropped": "warn"}
    return yaml.safe_dump(document)


POLICY_TEXT = capture_policy_text()
POLICY = load_policy(POLICY_TEXT, "capture-policy.yaml")


def body(direction: str, name: str) -> bytes:
    return (APISERVER_FIXTURES / direction / f"{name}.json").read_bytes()


def captured(direction: str, name: str) -> dict[str, Any]:
    request: dict[str, Any] = json.loads(body(direction, name))["request"]
    return request


def answer(review_body: bytes, *, mutate: bool, digests: dict[str, str] | None = None) -> dict[str, Any]:
    """What the server's handler answers for these bytes (no registry: digests are given)."""
    webhook = Webhook.MUTATE if mutate else Webhook.VALIDATE
    outcome = review(
        POLICY, decode_review(review_body), now=NOW, webhook=webhook, answers=digest_answers(digests or {})
    )
    response: dict[str, Any] = json.loads(outcome.body)["response"]
    return response


def images(obj: dict[str, Any]) -> list[str]:
    return [
        container["image"]
        for _pointer, spec in pod_specs(obj)
        for field in ("initContainers", "containers", "ephemeralContainers")
        for container in spec.get(field) or ()
    ]


def digest_answers(digests: dict[str, str]) -> Answers:
    """The registry's answers giving these digests (by reference) to pin to."""
    return Answers({DigestQuestion(parse_docker_ref(ref)): digest for ref, digest in digests.items()})


def registry_digests(name: str) -> dict[str, str]:
    """The digests the registry gave at capture time: those the live /mutate pinned into the validating input."""
    sent = set(images(captured("mutating", name)["object"]))
    found: dict[str, str] = {}
    for pinned in images(captured("validating", name)["object"]):
        image, _, digest = pinned.partition("@")
        if digest and pinned not in sent:
            found[str(parse_docker_ref(image))] = digest
    return found


def patched_object(name: str) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
    """The mutating input, /mutate's patch applied to its object, and the /mutate response."""
    request = captured("mutating", name)
    response = answer(body("mutating", name), mutate=True, digests=registry_digests(name))
    assert response["allowed"] is True, "/mutate never denies"
    patch: list[dict[str, Any]] = []
    if "patch" in response:
        assert response["patchType"] == "JSONPatch"
        patch = json.loads(base64.b64decode(response["patch"]))
    # jsonpatch inserts the patch's own values into the result: a copy keeps ``patch`` as sent
    # when as_v132_keeps edits the result.
    result: dict[str, Any] = jsonpatch.apply_patch(request["object"], copy.deepcopy(patch))
    return as_v132_keeps(result), patch, response


def as_v132_keeps(obj: dict[str, Any]) -> dict[str, Any]:
    """What the v1.32 API server makes of a patched object: the fields of its disabled gates
    dropped before validation (/mutate sets supplementalGroupsPolicy: Strict in tool pods)."""
    for _pointer, spec in pod_specs(obj):
        context = spec.get("securityContext")
        if isinstance(context, dict):
            context.pop("supplementalGroupsPolicy", None)
    return obj


def validating_body(name: str, obj: dict[str, Any]) -> bytes:
    review_body = json.loads(body("validating", name))
    review_body["request"]["object"] = obj
    return json.dumps(review_body).encode()


def test_every_capture_is_replayed() -> None:
    assert len(NAMES) == 42
    assert sorted(path.stem for path in (APISERVER_FIXTURES / "validating").glob("*.json")) == NAMES
    assert len(DENIED_LIVE) == 14 and "pod-create" not in DENIED_LIVE


@pytest.mark.parametrize("name", NAMES)
def test_validate_on_the_captured_input_gives_the_live_decision(name: str) -> None:
    response = answer(body("validating", name), mutate=False)
    assert response["allowed"] is (name not in DENIED_BY_VALIDATE_OF_CAPTURE), response.get("status")


@pytest.mark.parametrize("name", NAMES)
def test_mutate_then_validate_gives_the_decision(name: str) -> None:
    patched, patch, _ = patched_object(name)
    response = answer(validating_body(name, patched), mutate=False)
    assert response["allowed"] is (name not in DENIED), response.get("status")
    if name not in DENIED:
        assert response.get("status") is None
    if name == "pod-create-warn":  # outside the warn-mode grant: the grant's mode does not reach it
        message = response["status"]["message"]
        assert "quay.io/someone/app:1" in message and "127.0.0.1:5000/byoc" in message
    # Nothing outside the pod specs is ever patched.
    spec_pointers = [pointer for pointer, _ in pod_specs(captured("mutating", name)["object"])]
    for operation in patch:
        assert any(operation["path"].startswith(pointer + "/") for pointer in spec_pointers), operation


# admission.k8s.io/v1 AdmissionResponse (kubernetes.io, "kube-apiserver Admission (v1)"): uid and
# allowed are required; everything else is optional, and the API server reads only the response.
RESPONSE_FIELDS = {"uid", "allowed", "status", "patch", "patchType", "warnings", "auditAnnotations"}


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("mutate", [False, True], ids=["validate", "mutate"])
def test_the_answer_is_the_smallest_valid_review(name: str, mutate: bool) -> None:
    """No echo of the request, no empty or default field: what the API server has to read, only."""
    direction = "mutating" if mutate else "validating"
    outcome = review(
        POLICY,
        decode_review(body(direction, name)),
        now=NOW,
        webhook=Webhook.MUTATE if mutate else Webhook.VALIDATE,
        answers=digest_answers(registry_digests(name)),
    )
    answered = json.loads(outcome.body)
    assert answered.keys() == {"apiVersion", "kind", "response"}
    assert (answered["apiVersion"], answered["kind"]) == ("admission.k8s.io/v1", "AdmissionReview")
    response = answered["response"]
    assert response["uid"] == captured(direction, name)["uid"]
    assert {"uid", "allowed"} <= response.keys() <= RESPONSE_FIELDS
    assert all(value not in ("", [], {}, None) for value in response.values()), response
    assert ("patch" in response) is ("patchType" in response) is outcome.patched
    assert ("status" in response) is (not response["allowed"])  # an allow needs no status
    assert len(outcome.body) == len(json.dumps(answered, separators=(",", ":"), ensure_ascii=False).encode())


def _contexts(spec_pointer: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    """Every securityContext a pod spec holds or could hold, by JSON pointer: the pod's, each container's."""
    found = {f"{spec_pointer}/securityContext": spec.get("securityContext")}
    for field in ("initContainers", "containers", "ephemeralContainers"):
        for index, container in enumerate(spec.get(field) or ()):
            found[f"{spec_pointer}/{field}/{index}/securityContext"] = container.get("securityContext")
    return found


@pytest.mark.parametrize("name", NAMES)
def test_the_patch_adds_a_missing_security_context_whole(name: str) -> None:
    """One ``add`` of the whole securityContext where none exists (or the API server's empty default),
    never one operation per field; no operation writes inside what another one added."""
    _patched, patch, _ = patched_object(name)
    paths = [operation["path"] for operation in patch]
    assert len(set(paths)) == len(paths)
    assert not [(a, b) for a in paths for b in paths if b.startswith(a + "/")]
    for pointer, spec in pod_specs(captured("mutating", name)["object"]):
        for where, context in _contexts(pointer, spec).items():
            inside = [operation for operation in patch if operation["path"].startswith(where)]
            if not context and inside:  # absent, or {}: one add of all of it
                assert [(o["op"], o["path"]) for o in inside] == [("add", where)], inside


def test_a_pod_as_written_is_two_operations() -> None:
    _patched, patch, _ = patched_object("pod-create")
    assert [(o["op"], o["path"], sorted(o["value"])) for o in patch] == [
        (
            "add",
            "/spec/securityContext",
            sorted(
                ["runAsUser", "runAsGroup", "fsGroup", "runAsNonRoot", "seccompProfile", "supplementalGroupsPolicy"]
            ),
        ),
        ("add", "/spec/containers/0/securityContext", ["allowPrivilegeEscalation", "capabilities"]),
    ]


def specs(obj: dict[str, Any]) -> dict[str, Any]:
    return {pointer: spec for pointer, spec in pod_specs(obj)}


@pytest.mark.parametrize("name", [n for n in NAMES if "ephemeralcontainers" not in n])
def test_mutation_is_the_one_the_live_cluster_stored(name: str) -> None:
    """The validating input holds the live imagegate's mutation (uid, defaults, pinned digests)."""
    patched, _, _ = patched_object(name)
    assert specs(patched) == specs(captured("validating", name)["object"])


@pytest.mark.parametrize("name", [n for n in NAMES if "ephemeralcontainers" in n])
def test_kubectl_debug_fills_in_only_the_new_ephemeral_container(name: str) -> None:
    request = captured("mutating", name)
    patched, patch, _ = patched_object(name)
    old_names = {c["name"] for c in request["oldObject"]["spec"].get("ephemeralContainers") or ()}
    new = [i for i, c in enumerate(request["object"]["spec"]["ephemeralContainers"]) if c["name"] not in old_names]
    assert len(new) == 1
    (index,) = new
    for operation in patch:
        assert operation["path"].startswith(f"/spec/ephemeralContainers/{index}/securityContext"), operation
    # everything else, the running containers and the pod's context, exactly as sent
    untouched = copy.deepcopy(patched)
    untouched["spec"]["ephemeralContainers"][index] = request["object"]["spec"]["ephemeralContainers"][index]
    assert untouched == request["object"]
    context = patched["spec"]["ephemeralContainers"][index]["securityContext"]
    if "untrusted" not in name:
        assert context["runAsUser"] == context["runAsGroup"] == IDENTITIES["tool-demo"]
        assert context["allowPrivilegeEscalation"] is False and context["capabilities"] == {"drop": ["ALL"]}
        assert context["runAsNonRoot"] is True and context["seccompProfile"] == {"type": "RuntimeDefault"}


def test_kubectl_debug_with_a_forbidden_value_is_denied_naming_the_field() -> None:
    name = "pods-ephemeralcontainers-update"
    review_body = json.loads(body("mutating", name))
    debugger = review_body["request"]["object"]["spec"]["ephemeralContainers"][0]
    debugger["securityContext"] = {"runAsUser": 0, "privileged": True}
    mutated = answer(json.dumps(review_body).encode(), mutate=True)
    patch = json.loads(base64.b64decode(mutated["patch"]))
    patched = jsonpatch.apply_patch(review_body["request"]["object"], patch)
    assert patched["spec"]["ephemeralContainers"][0]["securityContext"]["runAsUser"] == 0  # never overwritten
    response = answer(validating_body(name, patched), mutate=False)
    assert response["allowed"] is False
    message = response["status"]["message"]
    assert 'container "debugger" sets securityContext.runAsUser=0; only 50001 is allowed' in message
    assert "privileged" in message


def test_pinning_reproduces_the_live_digests() -> None:
    for name in ("pod-create-pinning", "deployment-create-pinning"):
        digests = registry_digests(name)
        assert digests and all(d.startswith("sha256:") for d in digests.values())
        patched, patch, _ = patched_object(name)
        pins = [op for op in patch if op["path"].endswith("/image")]
        assert len(pins) == len(digests)  # the image that already had a digest is left alone
        assert specs(patched) == specs(captured("validating", name)["object"])


def test_the_server_answers_as_its_handler(tmp_path: Path) -> None:
    """The same bytes over HTTPS to a real ``imagegate serve``: the same answers (tool-pin needs its registry)."""
    (tmp_path / "policy.yaml").write_text(POLICY_TEXT)
    with run_webhook(tmp_path, policy=tmp_path / "policy.yaml") as webhook:
        client = webhook.client()
        for name in NAMES:
            if captured("mutating", name)["namespace"] == "tool-pin":
                continue
            for direction, path in (("mutating", "/mutate"), ("validating", "/validate")):
                http = client.post(path, content=body(direction, name), headers={"content-type": "application/json"})
                assert http.status_code == 200, http.text
                served = http.json()["response"]
                assert served == answer(body(direction, name), mutate=path == "/mutate"), (name, path)
