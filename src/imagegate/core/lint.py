"""What a valid policy says that cannot be what its author meant: ``policy validate``'s warnings.

Each check is a small named function over the loaded policy (and the moment, for grants). A
warning never stops a policy from loading: the webhook serves it as written. It is told to the
operator who runs ``imagegate policy validate`` before the ConfigMap is applied.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fnmatch import fnmatchcase

from imagegate.core.contents.policy import Proof
from imagegate.core.patterns import PatternSet, PatternTemplate, RepositoryPattern
from imagegate.core.policy import Policy
from imagegate.core.records import DenyOrAllow
from imagegate.core.webhooks import WEBHOOK_TIMEOUT_SECONDS

__all__ = ["PolicyWarning", "policy_warnings"]

# Any namespace name will do to see a template's shape: placeholders fill one path segment.
_SAMPLE = "tool-sample"


@dataclass(frozen=True, slots=True)
class PolicyWarning:
    where: str  # the key (or grant) it is about, as the operator wrote it
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


def _concrete(entries: PatternSet) -> Iterator[RepositoryPattern]:
    for entry in entries:
        pattern = entry.resolve(_SAMPLE) if isinstance(entry, PatternTemplate) else entry
        if pattern is not None:
            yield pattern


def _covers(outer: RepositoryPattern, inner: RepositoryPattern) -> bool:
    """Every image ``inner`` matches is matched by ``outer`` (only the plain cases are decided)."""
    if outer.exact or inner.has_glob or len(outer.segments) > len(inner.segments):
        return False
    globs = outer.globs or (False,) * len(outer.segments)
    return all(
        fnmatchcase(actual, wanted) if glob else actual == wanted
        for actual, wanted, glob in zip(inner.segments, outer.segments, globs, strict=False)
    )


def _trusted_and_blocked(policy: Policy, _now: dt.datetime) -> Iterator[PolicyWarning]:
    blocked = list(_concrete(policy.blocked))
    for trusted in _concrete(policy.trusted):
        for block in blocked:
            if _covers(block, trusted):
                yield PolicyWarning(
                    f"trusted {trusted.text}",
                    f"every image it covers is also blocked by {block.text!r}, and blocked wins: it trusts nothing",
                )


def _base_images_required_without_bases(policy: Policy, _now: dt.datetime) -> Iterator[PolicyWarning]:
    if policy.base_images.trusted:
        return
    if policy.byoc_require_base_image and (policy.byoc_default is DenyOrAllow.ALLOW or policy.grants):
        yield PolicyWarning(
            "byoc.requireBaseImage",
            "baseImages.trusted names no base image: every BYOC image is denied (no base can be proved)",
        )
    for grant in policy.grants:
        if grant.require_base_image and not policy.byoc_require_base_image:
            yield PolicyWarning(
                f"grant {grant.namespace} ({grant.source})",
                "requireBaseImage, but baseImages.trusted names no base image: every image it admits is denied",
            )
    if policy.base_images.require_for:
        yield PolicyWarning(
            "baseImages.requireFor",
            "baseImages.trusted names no base image: every image it covers is denied",
        )


def _registry_timeout(policy: Policy, _now: dt.datetime) -> Iterator[PolicyWarning]:
    if policy.registry.timeout >= WEBHOOK_TIMEOUT_SECONDS:
        yield PolicyWarning(
            "registry.timeoutSeconds",
            f"{policy.registry.timeout:g} s is not shorter than the webhook's timeoutSeconds "
            f"({WEBHOOK_TIMEOUT_SECONDS} s): the API server gives up first, and failurePolicy (Fail) "
            "decides instead of registry.onError",
        )


def _grants_without_effect(policy: Policy, now: dt.datetime) -> Iterator[PolicyWarning]:
    trusted = list(_concrete(policy.trusted))
    for grant in policy.grants:
        where = f"grant {grant.namespace} ({grant.source})"
        if not policy.namespaces.governs(grant.namespace, None):
            yield PolicyWarning(where, "the policy does not govern this namespace (namespaces.include/exclude)")
        if grant.expired(now):
            yield PolicyWarning(where, f"ended on {grant.expires}: it admits nothing (renew or revoke it)")
        if grant.registries is not None:
            named = (e.resolve(grant.namespace) if isinstance(e, PatternTemplate) else e for e in grant.registries)
            filled = [pattern for pattern in named if pattern is not None]
            if filled and all(any(_covers(t, p) for t in trusted) for p in filled):
                yield PolicyWarning(where, "every registry it names is trusted anyway: it admits nothing more")
        plain = grant.registries is None and grant.mode is None and not grant.signed_by
        if (
            policy.byoc_default is DenyOrAllow.ALLOW
            and plain
            and grant.require_base_image == policy.byoc_require_base_image
        ):
            yield PolicyWarning(where, "byoc.default is allow: this grant changes nothing")


def _proof_without_a_proof(policy: Policy, _now: dt.datetime) -> Iterator[PolicyWarning]:
    """A grant's ``proof`` that names a proof the policy cannot give."""
    by_content = bool(policy.content.grant_rules)
    for grant in policy.grants:
        where = f"grant {grant.namespace} ({grant.source})"
        if grant.proof in (Proof.CONTENT, Proof.EITHER, Proof.BOTH) and not by_content:
            yield PolicyWarning(
                where,
                f"proof: {grant.proof}, but no content rule covers granted images (grants: true): "
                "nothing is proved by content",
            )
        if grant.proof in (Proof.LAYERS, Proof.BOTH) and not policy.base_images.trusted:
            yield PolicyWarning(
                where,
                f"proof: {grant.proof}, but baseImages.trusted names no base image: every image it admits is denied",
            )


_CHECKS: tuple[Callable[[Policy, dt.datetime], Iterator[PolicyWarning]], ...] = (
    _trusted_and_blocked,
    _base_images_required_without_bases,
    _registry_timeout,
    _grants_without_effect,
    _proof_without_a_proof,
)


def policy_warnings(policy: Policy, now: dt.datetime) -> list[PolicyWarning]:
    """Everything in ``policy`` that loads but cannot work as written, in a stable order."""
    return [warning for check in _CHECKS for warning in check(policy, now)]
