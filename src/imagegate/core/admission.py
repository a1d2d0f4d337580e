"""admission.k8s.io/v1 AdmissionReview in, AdmissionReview out. Pure: bytes and data only.

The request is decoded with msgspec into typed structs (unknown fields are ignored, as
the API server may add some); anything that is not a v1 AdmissionReview with a request
and a uid is a :class:`ReviewError` (the HTTP shell answers 400). A well-formed review
always gets an answer: allowed, or denied with every violation in one message.
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Mapping
from typing import Any

import msgspec

from imagegate.core.decide import BaseImageVerdict, Decision, Finding, decide
from imagegate.core.policy import Policy

__all__ = [
    "AdmissionRequest",
    "AdmissionReview",
    "ReviewError",
    "ReviewOutcome",
    "decode_review",
    "internal_error",
    "review",
]

API_VERSION = "admission.k8s.io/v1"
# The API server truncates longer warnings; keep each readable in full.
MAX_WARNING_LENGTH = 256
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


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _audit_annotations(decision: Decision) -> dict[str, str]:
    if not decision.findings:
        return {}
    listed = "; ".join(f"{f.rule} {f.use.kind}/{f.use.name} {f.use.image}" for f in decision.findings)
    result = "denied" if not decision.allowed else ("warned" if decision.warnings else "audited")
    return {"decision": result, "findings": _truncate(listed, MAX_AUDIT_VALUE_LENGTH)}


def _warning(finding: Finding) -> str:
    return _truncate(f"imagegate: {finding.message}", MAX_WARNING_LENGTH)


def _subject(request: AdmissionRequest) -> tuple[str, Mapping[str, Any] | None, Mapping[str, Any] | None]:
    """The kind to judge the object as, the object and the old object.

    ``kubectl debug`` updates the pods/ephemeralcontainers subresource; the object is
    the whole Pod. The API server sets ``kind`` in the object it sends; we take the
    request's kind when it is missing, so an object cannot hide from a template path.
    """
    kind = "Pod" if request.sub_resource == "ephemeralcontainers" else request.kind.kind
    obj = request.object
    if obj is not None and obj.get("kind") != kind:
        obj = {**obj, "kind": kind}
    old = request.old_object
    if old is not None and old.get("kind") != kind:
        old = {**old, "kind": kind}
    return kind, obj, old


def _response(request: AdmissionRequest, allowed: bool, extra: Mapping[str, Any]) -> bytes:
    response: dict[str, Any] = {"uid": request.uid, "allowed": allowed, **extra}
    return _encoder.encode({"apiVersion": API_VERSION, "kind": "AdmissionReview", "response": response})


def review(
    policy: Policy | None,
    request: AdmissionRequest,
    *,
    now: dt.datetime,
    mutate: bool = False,
    namespace_labels: Mapping[str, str] | None = None,
    base_verdicts: Mapping[str, BaseImageVerdict] | None = None,
    digests: Mapping[str, str] | None = None,
    notes: tuple[str, ...] = (),
) -> ReviewOutcome:
    """Answer one admission request (``mutate`` selects the mutating endpoint's answer)."""
    if policy is None:
        message = "imagegate has no valid policy loaded; denying until one is (see the webhook's logs)"
        status = {"code": 503, "reason": "ServiceUnavailable", "message": message}
        return ReviewOutcome(_response(request, False, {"status": status}), False, None)
    if request.operation not in ("CREATE", "UPDATE"):
        return ReviewOutcome(_response(request, True, {}), True, None)
    _kind, obj, old = _subject(request)
    if obj is None:
        status = {
            "code": 400,
            "reason": "BadRequest",
            "message": f"imagegate: {request.operation} without an object",
        }
        return ReviewOutcome(_response(request, False, {"status": status}), False, None)
    decision = decide(
        policy,
        obj,
        namespace=request.namespace,
        now=now,
        namespace_labels=namespace_labels,
        old_object=old if request.operation == "UPDATE" else None,
        base_verdicts=base_verdicts,
        digests=digests,
        assume_mutated=mutate,  # /validate judges the object it is sent, never an imagined one
    )
    extra: dict[str, Any] = {}
    if mutate:
        # Denials are the validating webhook's job; the mutating one only patches.
        if decision.patches:
            patch = base64.b64encode(_encoder.encode(list(decision.patches))).decode()
            extra.update(patch=patch, patchType="JSONPatch")
        if notes:
            extra["warnings"] = [_truncate(note, MAX_WARNING_LENGTH) for note in notes]
        return ReviewOutcome(_response(request, True, extra), True, decision, patched=bool(decision.patches))
    if decision.warnings:
        extra["warnings"] = [_warning(f) for f in decision.warnings]
    annotations = _audit_annotations(decision)
    if annotations:
        extra["auditAnnotations"] = annotations
    if not decision.allowed:
        extra["status"] = {"code": 403, "reason": "Forbidden", "message": decision.message()}
    return ReviewOutcome(_response(request, decision.allowed, extra), decision.allowed, decision)


def internal_error(request: AdmissionRequest) -> ReviewOutcome:
    """A denial for a request imagegate failed to evaluate (fail closed, as failurePolicy Fail would)."""
    status = {"code": 500, "reason": "InternalError", "message": "imagegate failed to evaluate this request; denied"}
    return ReviewOutcome(_response(request, False, {"status": status}), False, None)
