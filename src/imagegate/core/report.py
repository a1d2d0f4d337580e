"""Operators' reports, pure: who breaks under a policy, which grants expire, what images cost.

``audit_report`` groups decisions by namespace and rule; ``layer_report`` answers the storage
question raised against BYOC with numbers: how many compressed bytes the images in use take
in total, how many are unique (what a node's disk would hold if it ran them all), how many
are shared through trusted base images, and what each BYOC image adds of its own.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from imagegate.core.baseimage import BaseVersion
from imagegate.core.decide import Decision
from imagegate.core.oci import PlatformImage
from imagegate.core.policy import Grant, Policy

__all__ = ["AuditReport", "ImageCost", "LayerReport", "audit_report", "grant_states", "layer_report"]


@dataclass(frozen=True, slots=True)
class GrantState:
    grant: Grant
    state: str  # active | expiring | expired
    days_left: int | None


def grant_states(grants: Iterable[Grant], now: dt.datetime, expiring_days: int) -> list[GrantState]:
    """Each grant with its state; ``expiring`` when it ends within ``expiring_days``."""
    states = []
    for grant in grants:
        left = grant.days_left(now)
        if grant.expired(now):
            state = "expired"
        elif left is not None and left <= expiring_days:
            state = "expiring"
        else:
            state = "active"
        states.append(GrantState(grant, state, left))
    return sorted(states, key=lambda s: (s.days_left is None, s.days_left if s.days_left is not None else 0))


@dataclass(frozen=True, slots=True)
class AuditEntry:
    source: str
    subject: str
    where: str  # container label or "pod security"
    image: str
    rule: str
    mode: str
    message: str


@dataclass
class AuditReport:
    objects: int = 0
    images: int = 0
    denied_objects: int = 0
    # namespace -> outcome (denied | warned | audited | pinned) -> rule -> entries
    by_namespace: dict[str, dict[str, dict[str, list[AuditEntry]]]] = field(default_factory=dict)
    grants: list[GrantState] = field(default_factory=list)

    def count(self, outcome: str) -> int:
        return sum(len(entries) for rules in self.by_namespace.values() for entries in rules.get(outcome, {}).values())

    def summary(self) -> str:
        expired = sum(1 for g in self.grants if g.state == "expired")
        expiring = sum(1 for g in self.grants if g.state == "expiring")
        return (
            f"{self.objects} objects, {self.images} images: {self.denied_objects} objects would be denied "
            f"({self.count('denied')} findings), {self.count('warned')} warnings, {self.count('audited')} audit records, "
            f"{self.count('pinned')} images to pin; grants: {expired} expired, {expiring} expiring soon"
        )


_OUTCOME = {"enforce": "denied", "warn": "warned", "audit": "audited"}


def audit_report(
    checked: Sequence[tuple[str, Decision]], policy: Policy, now: dt.datetime, expiring_days: int = 14
) -> AuditReport:
    """Group what a policy finds in the objects that run, by namespace, outcome and rule."""
    report = AuditReport(grants=grant_states(policy.grants, now, expiring_days))
    nested: dict[str, dict[str, dict[str, list[AuditEntry]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(list))
    )
    for source, decision in checked:
        report.objects += 1
        report.images += len(decision.verdicts)
        if not decision.allowed:
            report.denied_objects += 1
        for finding in decision.findings:
            entry = AuditEntry(
                source,
                decision.subject,
                finding.use.label,
                finding.use.image,
                finding.rule,
                finding.mode.value,
                finding.message,
            )
            nested[decision.namespace][_OUTCOME[finding.mode.value]][finding.rule].append(entry)
        for reference in decision.pins_needed:
            entry = AuditEntry(source, decision.subject, "", reference, "pin", "mutate", f"{reference} runs by tag")
            nested[decision.namespace]["pinned"]["pin"].append(entry)
    report.by_namespace = {ns: {o: dict(r) for o, r in outcomes.items()} for ns, outcomes in sorted(nested.items())}
    return report


# --- layers ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ImageCost:
    image: str
    byoc: bool  # let in by a grant or byoc.default, not by the trusted list
    total_bytes: int
    base_bytes: int  # layers that belong to a trusted base
    shared_bytes: int  # other layers also used by another image
    own_bytes: int  # layers no other image and no base has: what this image adds to a node


@dataclass(frozen=True, slots=True)
class LayerReport:
    images: tuple[ImageCost, ...]
    total_bytes: int  # every image's layers, counted per image
    unique_bytes: int  # each distinct layer once
    base_bytes: int  # distinct layers of trusted bases in use
    byoc_own_bytes: int  # what BYOC images add beyond bases and each other


def _base_layer_count(image: PlatformImage, bases: Sequence[BaseVersion]) -> int:
    """How many leading layers of ``image`` are a trusted base's (proved by diff_ids)."""
    counts = [
        len(b.diff_ids)
        for b in bases
        if b.platform == image.platform and b.diff_ids and image.diff_ids[: len(b.diff_ids)] == b.diff_ids
    ]
    return max(counts, default=0)


def layer_report(
    images: Mapping[str, PlatformImage], byoc: Mapping[str, bool], bases: Sequence[BaseVersion]
) -> LayerReport:
    """Costs of ``images`` (reference -> one platform's image), with base layers proved by diff_ids."""
    users: dict[str, set[str]] = defaultdict(set)
    sizes: dict[str, int] = {}
    base_digests: set[str] = set()
    for reference, image in images.items():
        for index, layer in enumerate(image.layers):
            users[layer.digest].add(reference)
            sizes[layer.digest] = layer.size
            if index < _base_layer_count(image, bases):
                base_digests.add(layer.digest)
    costs = []
    for reference, image in sorted(images.items()):
        base = shared = own = 0
        for digest in {layer.digest for layer in image.layers}:
            if digest in base_digests:
                base += sizes[digest]
            elif len(users[digest]) > 1:
                shared += sizes[digest]
            else:
                own += sizes[digest]
        costs.append(ImageCost(reference, byoc.get(reference, False), image.compressed_size, base, shared, own))
    return LayerReport(
        images=tuple(costs),
        total_bytes=sum(c.total_bytes for c in costs),
        unique_bytes=sum(sizes.values()),
        base_bytes=sum(sizes[d] for d in base_digests),
        byoc_own_bytes=sum(c.own_bytes for c in costs if c.byoc),
    )
