"""admission.k8s.io/v1 AdmissionReview in, AdmissionReview out. Pure: bytes and data only.

The request is decoded with msgspec into typed structs (unknown fields are ignored, as
the API server may add some); anything that is not a v1 AdmissionReview with a request
and a uid is a :class:`ReviewError` (the HTTP shell answers 400: there is no uid to answer).
A review with a uid but a request the API server would never send (:func:`request_problem`:
an operation the API does not define, a missing kind, a kind that contradicts the resource
or the object) is denied with code 400, never allowed, whatever the webhook's failurePolicy.
A well-formed review always gets an answer: allowed, or denied with its violations in one
message (the first few in full, then how many more).

A large body is first read for its size alone (:func:`oversized_review`): the containers and
volumes of its pod spec are counted without decoding them, and an object over the policy's
``limits`` is denied before the full decoding and every per-container check that would cost.
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any, Final

import msgspec

from imagegate.core.decide import Decision, decide, too_large
from imagegate.core.policy import Policy
from imagegate.core.records import NO_ANSWERS, Answers, Mode, Outcome, Webhook, outcome_of
from imagegate.core.tenant_warnings import tenant_warnings
from imagegate.core.workloads import POD_TEMPLATE_PATHS, WORKLOAD_KINDS, json_pointer

__all__ = [
    "POD_RESOURCES",
    "AdmissionRequest",
    "AdmissionReview",
    "ReviewError",
    "ReviewOutcome",
    "decode_review",
    "internal_error",
    "oversized_review",
    "request_problem",
    "review",
]

API_VERSION = "admission.k8s.io/v1"
MAX_AUDIT_VALUE_LENGTH = 4096


class GroupVersionKind(msgspec.Struct, frozen=True):
    group: str = ""
    version: str = ""
    kind: str = ""


class GroupVersionResource(msgspec.Struct, frozen=True):
    group: str = ""
    version: str = ""
    resource: str = ""


class AdmissionRequest(msgspec.Struct, rename="camel", frozen=True):
    uid: str
    operation: str
    kind: GroupVersionKind = GroupVersionKind()
    resource: GroupVersionResource = GroupVersionResource()
    sub_resource: str = ""
    namespace: str = ""
    name: str = ""
    object: dict[str, Any] | None = None
    old_object: dict[str, Any] | None = None
    dry_run: bool = False


class AdmissionReview(msgspec.Struct, rename="camel", frozen=True):
    api_version: str
    kind: str
    request: AdmissionRequest | None = None


# The operations admission.k8s.io/v1 defines; anything else is not a request of this API.
OPERATIONS = ("CREATE", "UPDATE", "DELETE", "CONNECT")

# The pod-bearing resources, (group, resource) -> kind: every kind that carries a pod spec
# (workloads.WORKLOAD_KINDS) is sent to us as exactly one of these.
POD_RESOURCES: Mapping[tuple[str, str], str] = {(w.group, w.resource): w.kind for w in WORKLOAD_KINDS}
_POD_KINDS = {(group, kind) for (group, _resource), kind in POD_RESOURCES.items()}
# Subresources whose object is the whole parent object (pods/ephemeralcontainers is sent as a
# Pod since Kubernetes 1.22); the others carry their own kind (Scale, Binding, Eviction,
# PodExecOptions...), never a pod-bearing one.
_WHOLE_OBJECT_SUBRESOURCES = {"": None, "status": None, "ephemeralcontainers": ("", "pods"), "resize": ("", "pods")}
# Read on every review: bound once (an enum member read is slow on 3.11, records.py).
_DENIED: Final = Outcome.DENIED
_ALLOWED: Final = Outcome.ALLOWED
_ENFORCE: Final = Mode.ENFORCE
_MUTATE: Final = Webhook.MUTATE


class ReviewError(ValueError):
    """A body that is not a usable AdmissionReview (answered with HTTP 400)."""


_decoder = msgspec.json.Decoder(AdmissionReview)
_encoder = msgspec.json.Encoder()


def decode_review(body: bytes) -> AdmissionRequest:
    """The request of a v1 AdmissionReview, or :class:`ReviewError` saying what is wrong."""
    try:
        parsed = _decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise ReviewError(f"not an AdmissionReview: {exc}") from None
    except msgspec.DecodeError as exc:
        raise ReviewError(f"body is not valid JSON: {exc}") from None
    except RecursionError:
        raise ReviewError("body is nested too deeply") from None
    except UnicodeDecodeError as exc:  # found by the fuzzer: msgspec raises this for bad UTF-8 in strings
        raise ReviewError(f"body is not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
    if parsed.api_version != API_VERSION or parsed.kind != "AdmissionReview":
        raise ReviewError(
            f"expected apiVersion {API_VERSION} kind AdmissionReview, got {parsed.api_version} {parsed.kind}"
        )
    if parsed.request is None:
        raise ReviewError("AdmissionReview has no request")
    if not parsed.request.uid:
        raise ReviewError("AdmissionReview request has an empty uid")
    return parsed.request


# msgspec Structs, not dataclasses: made for every image of every admission, and 8x cheaper to build.
class ReviewOutcome(msgspec.Struct, frozen=True):
    """The response body plus what the shell logs and counts."""

    body: bytes
    allowed: bool
    decision: Decision | None
    patched: bool = False

    @property
    def outcome(self) -> Outcome:
        """What the answer did to the object. The mutating webhook admits everything, so its
        enforce-mode findings count for nothing here (the validating webhook denies them)."""
        if not self.allowed:
            return _DENIED
        if self.decision is None or not self.decision.findings:
            return _ALLOWED
        return outcome_of(f.mode for f in self.decision.findings if f.mode is not _ENFORCE)


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _audit_annotations(decision: Decision) -> dict[str, str]:
    if not decision.findings:
        return {}
    listed = "; ".join(f"{f.rule} {f.subject.kind}/{f.subject.name} {f.subject.image}" for f in decision.findings)
    return {"decision": decision.outcome.value, "findings": _truncate(listed, MAX_AUDIT_VALUE_LENGTH)}


def unpinned_warning(references: Sequence[str]) -> str:
    """What /validate says, without denying, of an object /mutate should have pinned and did not.

    Pinning applies here and these images have no digest: the mutating webhook was skipped
    (its needs-mutation condition made for another policy than the one served) or could not
    ask the registry. The object is admitted as it is; the platform's admins must look.
    """
    return (
        "not pinned to a digest although pinning is on here (the mutating webhook skipped it "
        "or the registry did not answer; please tell the platform admins): " + ", ".join(references)
    )


def _group_version(group: str, version: str) -> str:
    return f"{group}/{version}" if group else version


def _object_problem(request: AdmissionRequest, field: str, obj: Mapping[str, Any], want: str) -> str | None:
    """How ``obj`` contradicts the request's kind (``want``: its apiVersion), namespace or name
    (None: it agrees).

    The API server always sends an object with its apiVersion and kind; one without them
    could be anything, so it is not judged as whatever the request claims.
    """
    gvk = request.kind
    api_version, kind = obj.get("apiVersion"), obj.get("kind")
    if kind is None or api_version is None:
        return f"request.{field} has no {'kind' if kind is None else 'apiVersion'} (the API server always sends both)"
    if kind != gvk.kind:
        return f"request.{field}.kind {kind!r} is not request.kind.kind {gvk.kind!r}"
    if api_version != want:
        return f"request.{field}.apiVersion {api_version!r} is not request.kind's group/version {want!r}"
    metadata = obj.get("metadata")
    if metadata is None:
        return None
    if not isinstance(metadata, dict):
        return f"request.{field}.metadata is not an object"
    namespace, name = metadata.get("namespace"), metadata.get("name")
    # the common case, in a few comparisons (every review passes here)
    if (
        (namespace is None or isinstance(namespace, str))
        and (name is None or isinstance(name, str))
        and (not namespace or not request.namespace or namespace == request.namespace)
        and (not name or not request.name or name == request.name)
    ):
        return None
    for key, value, expected in (("namespace", namespace, request.namespace), ("name", name, request.name)):
        if value is not None and not isinstance(value, str):
            return f"request.{field}.metadata.{key} is not a string"
        if value and expected and value != expected:
            return f"request.{field}.metadata.{key} {value!r} is not request.{key} {expected!r}"
    return None  # pragma: no cover - the common case above returned


# Only a malformed request's message names them: a well-formed one (every review) builds no text.
def _shown_kind(request: AdmissionRequest) -> str:
    return f"{_group_version(request.kind.group, request.kind.version)} {request.kind.kind}"


def _shown_resource(request: AdmissionRequest) -> str:
    gvr, sub = request.resource, request.sub_resource
    return f"{_group_version(gvr.group, gvr.version)} {gvr.resource}{'/' + sub if sub else ''}"


def _shape_problem(request: AdmissionRequest) -> str | None:
    """What is wrong with the request's operation, kind, resource and subresource together."""
    operation, gvk, gvr, sub = request.operation, request.kind, request.resource, request.sub_resource
    if operation not in OPERATIONS:
        return f"request.operation {operation!r} is not one of {', '.join(OPERATIONS)}"
    if not gvk.kind or not gvk.version:
        return "request.kind is missing or incomplete (it needs version and kind)"
    if not gvr.resource or not gvr.version:
        return "request.resource is missing or incomplete (it needs version and resource)"
    whole = sub in _WHOLE_OBJECT_SUBRESOURCES and _WHOLE_OBJECT_SUBRESOURCES[sub] in (None, (gvr.group, gvr.resource))
    if whole and (gvk.group, gvk.version) != (gvr.group, gvr.version):
        return f"request.kind {_shown_kind(request)} is not of the group/version of request.resource {_shown_resource(request)}"
    expected = POD_RESOURCES.get((gvr.group, gvr.resource)) if whole else None
    if (expected is not None and gvk.kind != expected) or (expected is None and (gvk.group, gvk.kind) in _POD_KINDS):
        return f"request.kind {_shown_kind(request)} contradicts request.resource {_shown_resource(request)}"
    return None


# Well-formed shapes (operation, kind, resource, subresource) -> the apiVersion their objects must
# have: the API server sends a handful, so each is checked once (bounded: a hostile sender's
# made-up shapes are checked every time, never remembered).
_WELL_FORMED: dict[tuple[str, GroupVersionKind, GroupVersionResource, str], str] = {}
_WELL_FORMED_MAX = 64


def request_problem(request: AdmissionRequest) -> str | None:
    """What makes ``request`` unlike any request the API server sends (None: well-formed).

    The one check of a review's shape. The object is judged by what it is, so the review
    must agree with itself: a Pod sent as a ConfigMap, or with no kind, would be judged as
    nothing and allowed.
    """
    operation = request.operation
    shape = (operation, request.kind, request.resource, request.sub_resource)
    want = _WELL_FORMED.get(shape)
    if want is None:
        problem = _shape_problem(request)
        if problem is not None:
            return problem
        want = _group_version(request.kind.group, request.kind.version)
        if len(_WELL_FORMED) < _WELL_FORMED_MAX:
            _WELL_FORMED[shape] = want
    obj, old = request.object, request.old_object
    if operation == "CREATE" and obj is not None and old is None:
        # the common case (every object created), with no call: what _object_problem passes
        metadata = obj.get("metadata")
        if obj.get("apiVersion") == want and obj.get("kind") == request.kind.kind and metadata.__class__ is dict:
            namespace, name = metadata.get("namespace"), metadata.get("name")
            if (namespace is None or namespace == request.namespace) and (name is None or name == request.name):
                return None
        return _object_problem(request, "object", obj, want)
    if operation == "CREATE":
        if obj is None:
            return "CREATE without request.object"
        if old is not None:
            return "CREATE with a request.oldObject"
        return _object_problem(request, "object", obj, want)
    if operation == "UPDATE":
        if obj is None:
            return "UPDATE without request.object"
        if old is None:
            return "UPDATE without request.oldObject"
        return _object_problem(request, "object", obj, want) or _object_problem(request, "oldObject", old, want)
    # CONNECT carries the connect options (PodExecOptions...) and DELETE the options or
    # nothing: neither creates anything to judge.
    if operation == "DELETE" and old is not None:
        return _object_problem(request, "oldObject", old, want)
    return None


# --- the size of a large review, read without decoding its containers ---------------------
# Bodies below this are decoded in full at once (under a millisecond); above it the counts come first.
SIZE_CHECK_BYTES = 64 * 1024


class _PodSpecShape(msgspec.Struct, rename="camel"):
    """A pod spec, or a workload's spec on the way to one: only the lists counted and the way down."""

    containers: list[msgspec.Raw] | None = None  # Raw: each item is skipped over, never decoded
    init_containers: list[msgspec.Raw] | None = None
    ephemeral_containers: list[msgspec.Raw] | None = None
    volumes: list[msgspec.Raw] | None = None
    template: _TemplateShape | None = None
    job_template: _TemplateShape | None = None


class _TemplateShape(msgspec.Struct):
    spec: _PodSpecShape | None = None


class _MetadataShape(msgspec.Struct, rename="camel"):
    name: str = ""
    generate_name: str = ""


class _ObjectShape(msgspec.Struct):
    kind: str = ""
    metadata: _MetadataShape | None = None
    spec: _PodSpecShape | None = None
    template: _TemplateShape | None = None


class _RequestShape(msgspec.Struct, rename="camel"):
    uid: str = ""
    operation: str = ""
    kind: GroupVersionKind = GroupVersionKind()
    resource: GroupVersionResource = GroupVersionResource()
    sub_resource: str = ""
    namespace: str = ""
    name: str = ""
    object: _ObjectShape | None = None
    dry_run: bool = False


class _ReviewShape(msgspec.Struct, rename="camel"):
    api_version: str = ""
    kind: str = ""
    request: _RequestShape | None = None


_shape_decoder = msgspec.json.Decoder(_ReviewShape)
_ATTRIBUTES = {"spec": "spec", "template": "template", "jobTemplate": "job_template"}


def oversized_review(policy: Policy | None, body: bytes) -> tuple[AdmissionRequest, ReviewOutcome] | None:
    """The denial of a review whose object is over ``policy.limits``, read without decoding its
    containers and volumes; None when it is not, or when its shape is not one this reading knows
    (then the full decoding decides, and :func:`decide` counts again from the decoded object)."""
    if policy is None or len(body) < SIZE_CHECK_BYTES:
        return None
    try:
        shape = _shape_decoder.decode(body)
    except (msgspec.DecodeError, RecursionError, UnicodeDecodeError):  # ValidationError is a DecodeError
        return None
    request, obj = shape.request, shape.request.object if shape.request is not None else None
    if (
        request is None
        or obj is None
        or not request.uid
        or request.operation not in ("CREATE", "UPDATE")
        or shape.api_version != API_VERSION
        or shape.kind != "AdmissionReview"
        or not policy.namespaces.governs(request.namespace, None)
    ):
        return None
    path = POD_TEMPLATE_PATHS.get(obj.kind)
    node: Any = obj
    for token in path or ():
        node = getattr(node, _ATTRIBUTES[token], None) if node is not None else None
    if path is None or not isinstance(node, _PodSpecShape):
        return None
    containers = sum(len(items or ()) for items in (node.containers, node.init_containers, node.ephemeral_containers))
    finding = too_large(policy.limits, obj.kind, json_pointer(path), containers, len(node.volumes or ()))
    if finding is None:
        return None
    metadata = obj.metadata or _MetadataShape()
    known = AdmissionRequest(
        uid=request.uid,
        operation=request.operation,
        kind=request.kind,
        resource=request.resource,
        sub_resource=request.sub_resource,
        namespace=request.namespace,
        name=request.name,
        dry_run=request.dry_run,
    )
    decision = Decision(
        obj.kind, metadata.name or metadata.generate_name, request.namespace, governed=True, findings=(finding,)
    )
    extra = {
        "status": {"code": 403, "reason": "Forbidden", "message": decision.message()},
        "auditAnnotations": _audit_annotations(decision),
    }
    return known, ReviewOutcome(_response(known, False, extra), False, decision)


def _response(request: AdmissionRequest, allowed: bool, extra: Mapping[str, Any]) -> bytes:
    response: dict[str, Any] = {"uid": request.uid, "allowed": allowed, **extra}
    return _encoder.encode({"apiVersion": API_VERSION, "kind": "AdmissionReview", "response": response})


def review(
    policy: Policy | None,
    request: AdmissionRequest,
    *,
    now: dt.datetime,
    webhook: Webhook = Webhook.VALIDATE,
    namespace_labels: Mapping[str, str] | None = None,
    answers: Answers = NO_ANSWERS,
) -> ReviewOutcome:
    """Answer one admission request as ``webhook`` (``/validate`` or ``/mutate``), with the
    registry's answers to the decision's questions when the shell looked them up."""
    problem = request_problem(request)
    if problem is not None:
        message = f"imagegate: malformed AdmissionReview, denied: {problem}"
        status = {"code": 400, "reason": "BadRequest", "message": message}
        return ReviewOutcome(_response(request, False, {"status": status}), False, None)
    if policy is None:
        message = "imagegate has no valid policy loaded; denying until one is (see the webhook's logs)"
        status = {"code": 503, "reason": "ServiceUnavailable", "message": message}
        return ReviewOutcome(_response(request, False, {"status": status}), False, None)
    if request.operation not in ("CREATE", "UPDATE"):
        return ReviewOutcome(_response(request, True, {}), True, None)
    # request_problem made sure the objects are there and name the request's kind (for
    # pods/ephemeralcontainers the object is the whole Pod): each is judged as what it is.
    obj, old = request.object, request.old_object
    if obj is None:  # pragma: no cover - request_problem refuses CREATE/UPDATE without an object
        return internal_error(request)
    decision = decide(
        policy,
        obj,
        namespace=request.namespace,
        now=now,
        namespace_labels=namespace_labels,
        old_object=old if request.operation == "UPDATE" else None,
        answers=answers,
        webhook=webhook,  # /validate judges the object it is sent, never an imagined one
    )
    extra: dict[str, Any] = {}
    if webhook is _MUTATE:
        # Denials are the validating webhook's job; the mutating one only patches.
        if decision.patches:
            patch = base64.b64encode(_encoder.encode(list(decision.patches))).decode()
            extra.update(patch=patch, patchType="JSONPatch")
        if answers.notes:
            extra["warnings"] = tenant_warnings(answers.notes)
        return ReviewOutcome(_response(request, True, extra), True, decision, patched=bool(decision.patches))
    # Most reviews find nothing: Decision's properties (Python calls) are asked only when there are findings.
    allowed = decision.allowed
    warned = decision.warnings if decision.findings else ()
    if warned or decision.notices or (allowed and decision.pins_needed):
        # A grant about to end first: it concerns every pod of the namespace.
        texts = [*decision.notices, *(f.message for f in warned)]
        if allowed and decision.pins_needed:
            texts.append(unpinned_warning(decision.pins_needed))
        extra["warnings"] = tenant_warnings(texts)
    if decision.findings:
        extra["auditAnnotations"] = _audit_annotations(decision)
    if not allowed:
        extra["status"] = {"code": 403, "reason": "Forbidden", "message": decision.message()}
    return ReviewOutcome(_response(request, allowed, extra), allowed, decision)


def internal_error(request: AdmissionRequest) -> ReviewOutcome:
    """A denial for a request imagegate failed to evaluate (fail closed, as failurePolicy Fail would)."""
    status = {"code": 500, "reason": "InternalError", "message": "imagegate failed to evaluate this request; denied"}
    return ReviewOutcome(_response(request, False, {"status": status}), False, None)
