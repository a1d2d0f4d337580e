"""Webhook ``matchConditions`` evaluated as the API server evaluates them, for any shipped configuration.

Reusable: :func:`webhooks` takes the documents of any webhook configuration (deploy/'s
kustomize base, a rendered Helm chart, conditions derived from a policy) and
:func:`evaluate` / :func:`sent` judge an AdmissionReview request against them.

The CEL implementation is ``common-expression-language`` (Python bindings of the Rust
cel-interpreter), chosen over ``cel-python`` by comparing both with cel-go, the library the
API server uses (``interpreter/attributes.go``, ``refQualify``):

* reading a missing map key is an error in all three (``no such key: subResource``);
* ``||`` and ``&&`` are commutative over errors in all three (``false || error`` is an
  error, ``error || true`` is true), which is why a missing ``has()`` only fails the
  requests that nothing else in the expression already sends;
* map and list equality is deep, and between values of different types it is ``false``
  in cel-go and here; cel-python raises "no such overload" instead;
* ``has(x.f)`` when ``x`` is null or not a map: cel-go answers false, this library raises
  an error; cel-python answers false, but also for ``has(null.a.b)``, where cel-go raises
  (``null.a`` is no such key).

So where this library differs from cel-go it is stricter (an error where cel-go has an
answer), never more lenient: an expression that never errors here never errors in the API
server. ``tests/test_match_conditions.py`` pins these facts, so an upgrade that changes
them fails.

The variables are the API server's: ``object`` (null on DELETE), ``oldObject`` (null on
CREATE), ``request`` (the AdmissionRequest without the objects and options: keys the API
server leaves empty, such as ``subResource`` on a plain UPDATE, are absent). The
``authorizer`` variables are not provided: an expression using them fails here, loudly.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cel
import yaml

from imagegate.core.workloads import POD_TEMPLATE_PATHS
from tests.conftest import REPO_ROOT

__all__ = [
    "APISERVER_FIXTURES",
    "ConditionError",
    "MatchCondition",
    "Webhook",
    "captured_requests",
    "evaluate",
    "metadata_only_updates",
    "rules_match",
    "sent",
    "sent_by_configuration",
    "shipped_documents",
    "spec_updates",
    "template_preserving_updates",
    "webhooks",
]

APISERVER_FIXTURES = REPO_ROOT.parent / "shared" / "fixtures" / "apiserver-v1.32"
WEBHOOK_KINDS = ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration")
# Keys of the AdmissionRequest that the API server does not put into CEL's ``request``.
_NOT_IN_REQUEST = ("object", "oldObject", "options")


class ConditionError(AssertionError):
    """A matchCondition that errored: the API server would apply the failurePolicy."""


@dataclass(frozen=True)
class MatchCondition:
    name: str
    expression: str
    program: cel.Program


@dataclass(frozen=True)
class Webhook:
    """One webhook of one configuration, with where it came from (for messages)."""

    source: str
    configuration: str  # kind/name
    name: str
    rules: tuple[Mapping[str, Any], ...]
    conditions: tuple[MatchCondition, ...]

    def __str__(self) -> str:
        return f"{self.source}: {self.configuration} webhook {self.name}"


def shipped_documents(root: Path = REPO_ROOT / "deploy") -> list[tuple[str, Mapping[str, Any]]]:
    """Every YAML document under ``deploy/`` that is plain YAML (a Helm chart's ``templates/`` is not:
    render it and pass its documents to :func:`webhooks` yourself)."""
    found: list[tuple[str, Mapping[str, Any]]] = []
    for path in sorted(root.rglob("*.y*ml")):
        if "templates" in path.relative_to(root).parts:
            continue
        for document in yaml.safe_load_all(path.read_text()):
            if isinstance(document, dict):
                found.append((str(path.relative_to(REPO_ROOT)), document))
    return found


def webhooks(documents: Iterable[tuple[str, Mapping[str, Any]]]) -> list[Webhook]:
    """Every webhook of every webhook configuration among ``documents``, its conditions compiled."""
    found = []
    for source, document in documents:
        if document.get("kind") not in WEBHOOK_KINDS:
            continue
        configuration = f"{document['kind']}/{document.get('metadata', {}).get('name', '?')}"
        for hook in document.get("webhooks") or ():
            conditions = tuple(
                MatchCondition(c["name"], c["expression"], cel.compile(c["expression"]))
                for c in hook.get("matchConditions") or ()
            )
            found.append(Webhook(source, configuration, hook["name"], tuple(hook.get("rules") or ()), conditions))
    return found


def _variables(request: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "object": request.get("object"),
        "oldObject": request.get("oldObject"),
        "request": {key: value for key, value in request.items() if key not in _NOT_IN_REQUEST},
    }


def evaluate(condition: MatchCondition, request: Mapping[str, Any]) -> bool:
    """The condition's value for one AdmissionReview ``request``; :class:`ConditionError` when it errors."""
    try:
        result = condition.program.execute(_variables(request))
    except Exception as exc:  # the library raises KeyError, TypeError, RuntimeError...: all are CEL errors
        raise ConditionError(f"matchCondition {condition.name!r} errored: {type(exc).__name__}: {exc}") from None
    if not isinstance(result, bool):
        raise ConditionError(f"matchCondition {condition.name!r} returned {result!r}, not a bool")
    return result


def _rule_matches(rule: Mapping[str, Any], request: Mapping[str, Any]) -> bool:
    resource = request.get("resource") or {}
    sub = request.get("subResource")
    wanted = f"{resource.get('resource')}/{sub}" if sub else resource.get("resource")

    def listed(key: str, value: Any) -> bool:
        values = rule.get(key) or ()
        return "*" in values or value in values

    resources = rule.get("resources") or ()
    resource_ok = wanted in resources or "*" in resources or (sub is None and f"{wanted}/*" in resources)
    return (
        listed("operations", request.get("operation"))
        and listed("apiGroups", resource.get("group", ""))
        and listed("apiVersions", resource.get("version"))
        and resource_ok
    )


def rules_match(hook: Webhook, request: Mapping[str, Any]) -> bool:
    """Whether the webhook's rules select the request (operation, group, version, resource/subresource)."""
    return any(_rule_matches(rule, request) for rule in hook.rules)


def sent(hook: Webhook, request: Mapping[str, Any]) -> bool:
    """Whether the API server calls the webhook: its rules match and every condition is true.

    Every condition is evaluated (none may error), as the API server does before deciding.
    """
    values = [evaluate(condition, request) for condition in hook.conditions]
    return rules_match(hook, request) and all(values)


def sent_by_configuration(hooks: Iterable[Webhook], request: Mapping[str, Any]) -> dict[str, bool]:
    """Per configuration (source and kind/name): whether the API server calls its endpoint for ``request``.

    A configuration has a CREATE and an UPDATE webhook for one endpoint; the request reaches it
    when one of them is sent. Every condition of every webhook is evaluated (none may error).
    """
    found: dict[str, bool] = {}
    for hook in hooks:
        key = f"{hook.source}: {hook.configuration}"
        found[key] = sent(hook, request) or found.get(key, False)
    return found


# --- the requests ---------------------------------------------------------------------


def captured_requests() -> list[tuple[str, dict[str, Any]]]:
    """Every AdmissionReview request the API server made in the capture, mutating and validating."""
    found = []
    for path in sorted(APISERVER_FIXTURES.glob("*/*.json")):
        request: dict[str, Any] = json.loads(path.read_text())["request"]
        found.append((f"{path.parent.name}/{path.stem}", request))
    return found


def _update(base: Mapping[str, Any], change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """An UPDATE of ``base``'s object (or old object) to that object with ``change`` made.

    The API server bumps ``resourceVersion`` and records a ``managedFields`` entry on every
    write; both are part of every derived change, as they are of every real one.
    """
    current = base.get("object") if base.get("object") is not None else base.get("oldObject")
    old = copy.deepcopy(current) or {}
    old.setdefault("metadata", {}).setdefault("resourceVersion", "1000")
    new = copy.deepcopy(old)
    metadata = new["metadata"]
    metadata["resourceVersion"] = str(int(metadata["resourceVersion"]) + 1)
    metadata.setdefault("managedFields", []).append(
        {"manager": "imagegate-test", "operation": "Update", "apiVersion": "v1", "fieldsType": "FieldsV1"}
    )
    change(new)
    request = {key: value for key, value in base.items() if key not in ("subResource", "requestSubResource", "options")}
    request.update(operation="UPDATE", object=new, oldObject=old, name=metadata.get("name") or "derived")
    return request


def _metadata_changes() -> dict[str, Callable[[dict[str, Any]], None]]:
    def meta(obj: dict[str, Any]) -> dict[str, Any]:
        found: dict[str, Any] = obj["metadata"]
        return found

    def status(obj: dict[str, Any]) -> None:
        obj.setdefault("status", {})["observedGeneration"] = 99
        obj["status"]["conditions"] = [{"type": "Ready", "status": "False", "reason": "ImagegateTest"}]

    def terminating_finalizer_removed(obj: dict[str, Any]) -> None:
        meta(obj)["deletionTimestamp"] = "2026-12-01T22:10:00Z"
        meta(obj)["finalizers"] = []

    return {
        "label-added": lambda o: meta(o).setdefault("labels", {}).update({"imagegate.test/label": "x"}),
        "label-removed": lambda o: meta(o).update(labels={}),
        "annotation-added": lambda o: meta(o).setdefault("annotations", {}).update({"imagegate.test/note": "y"}),
        "annotations-cleared": lambda o: meta(o).pop("annotations", None),
        "finalizer-added": lambda o: meta(o).setdefault("finalizers", []).append("imagegate.test/keep"),
        "finalizers-removed": lambda o: meta(o).update(finalizers=[]),
        "terminating-finalizer-removed": terminating_finalizer_removed,
        "owner-reference-added": lambda o: (
            meta(o)
            .setdefault("ownerReferences", [])
            .append({"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": "00000000-0000-0000-0000-0"})
        ),
        "owner-references-removed": lambda o: meta(o).update(ownerReferences=[]),
        "status-changed": status,
    }


def metadata_only_updates(base: Mapping[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """UPDATEs of ``base``'s object that change only metadata or status (what controllers write most)."""
    for name, change in _metadata_changes().items():
        yield name, _update(base, change)
    # The old object with a finalizer, the new one without: the job controller's release of a Pod.
    tracked = _update(base, lambda o: o["metadata"].update(finalizers=[]))
    tracked["oldObject"]["metadata"]["finalizers"] = ["batch.kubernetes.io/job-tracking"]
    yield "job-tracking-finalizer-removed", tracked


def _pod_spec(obj: dict[str, Any]) -> dict[str, Any] | None:
    node: Any = obj
    for token in POD_TEMPLATE_PATHS.get(str(obj.get("kind")), ()):
        node = node.get(token) if isinstance(node, dict) else None
    return node if isinstance(node, dict) and node else None


def spec_updates(base: Mapping[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """UPDATEs of ``base``'s object that change its pod spec: what imagegate must always see."""
    current = base.get("object") if base.get("object") is not None else base.get("oldObject")
    if not isinstance(current, dict) or _pod_spec(current) is None:
        return

    def image(obj: dict[str, Any]) -> None:
        spec = _pod_spec(obj)
        assert spec is not None
        spec["containers"][0]["image"] += "-changed"

    def env(obj: dict[str, Any]) -> None:
        spec = _pod_spec(obj)
        assert spec is not None
        spec["containers"][0].setdefault("env", []).append({"name": "IMAGEGATE_TEST", "value": "1"})

    yield "image-changed", _update(base, image)
    yield "env-added", _update(base, env)


def template_preserving_updates(base: Mapping[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """UPDATEs that change the spec but not what pods are made of: scaling, suspending, a Pod's
    tolerations and deadline (the mutable parts of a running Pod's spec besides its images)."""
    current = base.get("object") if base.get("object") is not None else base.get("oldObject")
    if not isinstance(current, dict) or _pod_spec(current) is None:
        return
    kind = current.get("kind")

    def spec(obj: dict[str, Any]) -> dict[str, Any]:
        found: dict[str, Any] = obj["spec"]
        return found

    if kind == "Pod":
        yield (
            "toleration-added",
            _update(base, lambda o: spec(o).setdefault("tolerations", []).append({"operator": "Exists"})),
        )
        yield "deadline-set", _update(base, lambda o: spec(o).update(activeDeadlineSeconds=60))
    elif kind in ("Deployment", "ReplicaSet", "StatefulSet", "ReplicationController"):
        yield "scaled", _update(base, lambda o: spec(o).update(replicas=int(spec(o).get("replicas", 1)) + 2))
        yield "scaled-to-zero", _update(base, lambda o: spec(o).update(replicas=0))
    elif kind == "Job":
        yield "parallelism", _update(base, lambda o: spec(o).update(parallelism=3))
    elif kind == "CronJob":
        yield "suspended", _update(base, lambda o: spec(o).update(suspend=True))
