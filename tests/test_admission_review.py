"""The shape of an AdmissionReview: what the API server really sends is well-formed, the rest is denied.

Every request kube-apiserver v1.32 sent (../shared/fixtures/apiserver-v1.32, both webhooks'
inputs) goes through :func:`review` as it came; then each is bent the ways an attacker (or a
broken proxy) could bend it: a missing or contradicting kind, an operation the API does not
define, a subresource that does not fit, a missing object. None of those may be allowed.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imagegate.core import admission
from imagegate.core.admission import POD_RESOURCES, decode_review, request_problem, review
from imagegate.core.policy import load_policy
from imagegate.core.records import Webhook
from imagegate.core.workloads import POD_TEMPLATE_PATHS
from tests.conftest import POLICY_HEADER, REPO_ROOT

CAPTURED = REPO_ROOT.parent / "shared" / "fixtures" / "apiserver-v1.32"
NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)
POLICY = load_policy(
    POLICY_HEADER
    + "trusted: [docker-registry.svc.toolforge.org, tools-harbor.wmcloud.org/toolforge, 127.0.0.1:5000/toolforge]\n"
)


def captured(webhook: str) -> list[Path]:
    files = sorted((CAPTURED / webhook).glob("*.json"))
    if not files:
        pytest.fail(f"captured requests missing: {CAPTURED / webhook} (the tests read ../shared/fixtures)")
    return files


def answer(body: dict[str, Any], *, mutate: bool = False) -> dict[str, Any]:
    request = decode_review(json.dumps(body).encode())
    outcome = review(POLICY, request, now=NOW, webhook=Webhook.MUTATE if mutate else Webhook.VALIDATE)
    response: dict[str, Any] = msgspec.json.decode(outcome.body)["response"]
    assert response["uid"] == body["request"]["uid"] and response["allowed"] is outcome.allowed
    return response


def is_malformed(response: dict[str, Any]) -> bool:
    return "malformed AdmissionReview" in response.get("status", {}).get("message", "")


def test_pod_resources_cover_every_pod_bearing_kind() -> None:
    assert sorted(POD_RESOURCES.values()) == sorted(POD_TEMPLATE_PATHS)


@pytest.mark.parametrize("path", captured("validating"), ids=lambda p: p.name)
def test_every_captured_validating_request_is_well_formed_and_judged(path: Path) -> None:
    """Their decisions are tests/test_apiserver_replay.py's; here: judged, never refused as malformed."""
    body = json.loads(path.read_text())
    assert request_problem(decode_review(path.read_bytes())) is None
    response = answer(body)
    assert not is_malformed(response)
    # this test's policy trusts the capture's registries and has no grant: quay.io/... is denied
    denied = "untrusted" in path.name or path.name in {"deployment-update-dryrun.json", "pod-create-warn.json"}
    assert response["allowed"] is not denied


@pytest.mark.parametrize("path", captured("mutating"), ids=lambda p: p.name)
def test_every_captured_mutating_request_is_well_formed(path: Path) -> None:
    body = json.loads(path.read_text())
    assert request_problem(decode_review(path.read_bytes())) is None
    response = answer(body, mutate=True)
    assert response["allowed"] is True and not is_malformed(response)


@pytest.mark.parametrize("path", captured("validating"), ids=lambda p: p.name)
def test_delete_and_connect_as_the_api_server_sends_them_are_allowed(path: Path) -> None:
    """The rules send neither; if an operator's rules ever do, they are well-formed and allowed."""
    body = json.loads(path.read_text())
    request = body["request"]
    delete = copy.deepcopy(body)
    delete["request"].update(operation="DELETE", object=None, oldObject=request["object"], dryRun=False)
    delete["request"]["options"] = {"kind": "DeleteOptions", "apiVersion": "meta.k8s.io/v1"}
    assert answer(delete)["allowed"] is True
    if request["resource"]["resource"] == "pods":
        connect = copy.deepcopy(body)
        connect["request"].update(
            operation="CONNECT",
            kind={"group": "", "version": "v1", "kind": "PodExecOptions"},
            requestKind={"group": "", "version": "v1", "kind": "PodExecOptions"},
            subResource="exec",
            requestSubResource="exec",
            object={"kind": "PodExecOptions", "apiVersion": "v1", "stdout": True, "command": ["ls"]},
            oldObject=None,
        )
        assert answer(connect)["allowed"] is True


UNTRUSTED_POD = "pod-create-untrusted.json"
UNTRUSTED_DEPLOYMENT_UPDATE = "deployment-update-image-untrusted.json"


def bent(name: str, change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    body: dict[str, Any] = json.loads((CAPTURED / "validating" / name).read_text())
    change(body["request"])
    return body


def _set(**fields: Any) -> Callable[[dict[str, Any]], None]:
    return lambda request: request.update(fields)


def _drop(key: str) -> Callable[[dict[str, Any]], None]:
    return lambda request: request.pop(key)


def _object(key: str, value: Any, field: str = "object") -> Callable[[dict[str, Any]], None]:
    def change(request: dict[str, Any]) -> None:
        if value is None:
            request[field].pop(key)
        else:
            request[field][key] = value

    return change


def _metadata(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda request: request["object"]["metadata"].__setitem__(key, value)


CONFIGMAP = {"group": "", "version": "v1", "kind": "ConfigMap"}


def _configmap_without_kind(request: dict[str, Any]) -> None:
    request.update(kind=CONFIGMAP, resource={"group": "", "version": "v1", "resource": "configmaps"})
    request["object"].pop("kind")


BENT: dict[str, tuple[str, Callable[[dict[str, Any]], None], str]] = {
    "kind missing": (UNTRUSTED_POD, _drop("kind"), "request.kind is missing"),
    "kind empty": (UNTRUSTED_POD, _set(kind={}), "request.kind is missing"),
    "kind without version": (UNTRUSTED_POD, _set(kind={"kind": "Pod"}), "request.kind is missing"),
    "kind says ConfigMap": (UNTRUSTED_POD, _set(kind=CONFIGMAP), "contradicts request.resource"),
    "kind and resource say ConfigMap": (
        UNTRUSTED_POD,
        _set(kind=CONFIGMAP, resource={"group": "", "version": "v1", "resource": "configmaps"}),
        "request.object.kind 'Pod' is not request.kind.kind 'ConfigMap'",
    ),
    "object without kind, request says ConfigMap": (
        UNTRUSTED_POD,
        _configmap_without_kind,
        "request.object has no kind",
    ),
    "object without apiVersion": (UNTRUSTED_POD, _object("apiVersion", None), "has no apiVersion"),
    "object is a Deployment": (UNTRUSTED_POD, _object("kind", "Deployment"), "is not request.kind.kind 'Pod'"),
    "object kind of the wrong type": (UNTRUSTED_POD, _object("kind", ["Pod"]), "is not request.kind.kind"),
    "object apiVersion apps/v1": (UNTRUSTED_POD, _object("apiVersion", "apps/v1"), "group/version 'v1'"),
    "kind in another group": (
        UNTRUSTED_POD,
        _set(kind={"group": "apps", "version": "v1", "kind": "Pod"}),
        "is not of the group/version of request.resource",
    ),
    "kind of another version": (
        UNTRUSTED_POD,
        _set(kind={"group": "", "version": "v2", "kind": "Pod"}),
        "is not of the group/version",
    ),
    "resource missing": (UNTRUSTED_POD, _drop("resource"), "request.resource is missing"),
    "resource says deployments": (
        UNTRUSTED_POD,
        _set(resource={"group": "apps", "version": "v1", "resource": "deployments"}),
        "is not of the group/version",
    ),
    "resource says configmaps": (
        UNTRUSTED_POD,
        _set(resource={"group": "", "version": "v1", "resource": "configmaps"}),
        "contradicts request.resource",
    ),
    "a Pod sent as pods/exec": (UNTRUSTED_POD, _set(subResource="exec"), "contradicts request.resource v1 pods/exec"),
    "a Pod sent as pods/binding": (UNTRUSTED_POD, _set(subResource="binding"), "contradicts"),
    "ephemeralcontainers of a Deployment": (
        UNTRUSTED_DEPLOYMENT_UPDATE,
        _set(subResource="ephemeralcontainers"),
        "contradicts request.resource apps/v1 deployments/ephemeralcontainers",
    ),
    "a Deployment sent as deployments/scale": (UNTRUSTED_DEPLOYMENT_UPDATE, _set(subResource="scale"), "contradicts"),
    "operation lower case": (UNTRUSTED_POD, _set(operation="create"), "request.operation 'create' is not one of"),
    "operation PATCH": (UNTRUSTED_POD, _set(operation="PATCH"), "is not one of CREATE, UPDATE, DELETE, CONNECT"),
    "operation APPLY": (UNTRUSTED_POD, _set(operation="APPLY"), "is not one of"),
    "operation empty": (UNTRUSTED_POD, _set(operation=""), "is not one of"),
    "operation with a space": (UNTRUSTED_POD, _set(operation="CREATE "), "is not one of"),
    "CREATE without object": (UNTRUSTED_POD, _set(object=None), "CREATE without request.object"),
    "CREATE with an oldObject": (
        UNTRUSTED_POD,
        lambda r: r.update(oldObject=copy.deepcopy(r["object"])),
        "CREATE with a request.oldObject",
    ),
    "UPDATE without object": (UNTRUSTED_DEPLOYMENT_UPDATE, _set(object=None), "UPDATE without request.object"),
    "UPDATE without oldObject": (UNTRUSTED_DEPLOYMENT_UPDATE, _set(oldObject=None), "UPDATE without request.oldObject"),
    "oldObject of another kind": (
        UNTRUSTED_DEPLOYMENT_UPDATE,
        _object("kind", "StatefulSet", field="oldObject"),
        "request.oldObject.kind 'StatefulSet'",
    ),
    "object in another namespace": (
        UNTRUSTED_POD,
        _metadata("namespace", "tool-other"),
        "request.object.metadata.namespace 'tool-other' is not request.namespace 'tool-demo'",
    ),
    "object of another name": (UNTRUSTED_POD, _metadata("name", "other"), "metadata.name 'other' is not"),
    "metadata not an object": (UNTRUSTED_POD, _object("metadata", ["x"]), "metadata is not an object"),
    "namespace not a string": (UNTRUSTED_POD, _metadata("namespace", 5), "metadata.namespace is not a string"),
}


@pytest.mark.parametrize("case", BENT)
@pytest.mark.parametrize("mutate", [False, True], ids=["validate", "mutate"])
def test_a_bent_review_is_denied_never_allowed(case: str, mutate: bool) -> None:
    name, change, message = BENT[case]
    response = answer(bent(name, change), mutate=mutate)
    assert response["allowed"] is False
    assert response["status"]["code"] == 400 and response["status"]["reason"] == "BadRequest"
    assert message in response["status"]["message"], response["status"]["message"]
    assert response["status"]["message"].startswith("imagegate: malformed AdmissionReview, denied: ")
    assert "patch" not in response


def test_a_whole_object_subresource_is_judged_as_the_object() -> None:
    """pods/status (if a rule ever sends it) carries the whole Pod: judged like one, not waved through."""
    response = answer(bent(UNTRUSTED_POD, _set(subResource="status")))
    assert response["allowed"] is False and not is_malformed(response)
    assert "docker.io/library/nginx:1.25" in response["status"]["message"]


def test_a_dry_run_is_judged_like_the_real_request() -> None:
    real = answer(bent(UNTRUSTED_POD, _set(dryRun=False)))
    dry = answer(bent(UNTRUSTED_POD, _set(dryRun=True)))
    assert real.pop("uid") == dry.pop("uid") and real == dry and real["allowed"] is False


def test_remembered_shapes_are_bounded_and_never_excuse_an_object() -> None:
    """request_problem remembers the well-formed shapes it saw (the API server sends a handful):
    made-up ones from a hostile sender do not grow that memo without bound, and a remembered
    shape still has each object checked against it."""
    for i in range(2 * admission._WELL_FORMED_MAX):
        kind = {"group": f"g{i}.example.com", "version": "v1", "kind": "Widget"}
        body = bent(UNTRUSTED_POD, _set(kind=kind, resource={**kind, "resource": "widgets"}))
        body["request"]["object"].update(apiVersion=f"g{i}.example.com/v1", kind="Widget")
        assert request_problem(decode_review(json.dumps(body).encode())) is None
    assert len(admission._WELL_FORMED) <= admission._WELL_FORMED_MAX
    assert not is_malformed(answer(bent(UNTRUSTED_POD, lambda request: None)))  # its shape is now remembered
    response = answer(bent(UNTRUSTED_POD, _object("apiVersion", "apps/v1")))
    assert is_malformed(response) and "is not request.kind's group/version 'v1'" in response["status"]["message"]


OPERATION_VALUES = st.sampled_from(["CREATE", "UPDATE", "DELETE", "CONNECT", "create", "PATCH", "", "APPLY"])
GROUPS = st.sampled_from(["", "apps", "batch", "example.com"])
VERSIONS = st.sampled_from(["v1", "v2", ""])
KINDS = st.sampled_from([*POD_TEMPLATE_PATHS, "ConfigMap", "Scale", "PodExecOptions", ""])
RESOURCES = st.sampled_from([resource for _group, resource in POD_RESOURCES] + ["configmaps", ""])
SUBRESOURCES = st.sampled_from(["", "status", "ephemeralcontainers", "scale", "exec", "binding"])
OBJECT_KINDS = st.sampled_from([*POD_TEMPLATE_PATHS, "ConfigMap", None])
API_VERSIONS = st.sampled_from(["v1", "apps/v1", "batch/v1", "example.com/v1", None])


@settings(max_examples=400, deadline=None)
@given(OPERATION_VALUES, GROUPS, VERSIONS, KINDS, GROUPS, RESOURCES, SUBRESOURCES, OBJECT_KINDS, API_VERSIONS)
def test_an_untrusted_pod_is_never_allowed_through_the_review_envelope(
    operation: str,
    kind_group: str,
    version: str,
    kind: str,
    resource_group: str,
    resource: str,
    sub_resource: str,
    object_kind: str | None,
    api_version: str | None,
) -> None:
    """Whatever the envelope claims, an allow means the review consistently names a kind without a pod."""

    def change(request: dict[str, Any]) -> None:
        request.update(
            operation=operation,
            kind={"group": kind_group, "version": version, "kind": kind},
            resource={"group": resource_group, "version": version, "resource": resource},
            subResource=sub_resource,
        )
        pod = request["object"]
        # the untrusted pod spec goes where the object's own kind keeps it
        obj: dict[str, Any] = {"metadata": pod["metadata"]}
        node = obj
        *parents, last = POD_TEMPLATE_PATHS.get(object_kind or "", ("spec",))
        for token in parents:
            node = node.setdefault(token, {})
        node[last] = pod["spec"]
        for key, value in (("kind", object_kind), ("apiVersion", api_version)):
            if value is not None:
                obj[key] = value
        request["object"] = obj
        if operation == "UPDATE":  # an update that brings the untrusted image in
            old = copy.deepcopy(obj)
            node = old
            for token in (*parents, last):
                node = node[token]
            node["containers"][0]["image"] = "docker-registry.svc.toolforge.org/web:1"
            request["oldObject"] = old

    response = answer(bent(UNTRUSTED_POD, change))
    if not response["allowed"] or operation in ("DELETE", "CONNECT"):
        return
    assert operation in ("CREATE", "UPDATE")
    assert object_kind == kind and object_kind not in POD_TEMPLATE_PATHS  # a ConfigMap is judged as one
    # A pod resource's whole object (no subresource, status, ephemeralcontainers, resize) must
    # be of its kind; other subresources (scale, binding, exec) carry another kind of object by
    # design (a Scale, a Binding), so a ConfigMap there is judged as what it is: no pod in it.
    assert (resource_group, resource) not in POD_RESOURCES or sub_resource in ("scale", "binding", "exec")
