"""Operators' reports, pure: who breaks under a policy, which grants expire, what images cost.

``audit_report`` groups decisions by namespace and rule; ``layer_report`` answers the storage
question raised against BYOC with numbers: how many compressed bytes the images in use take
in total, how many are unique (what a node's disk would hold if it ran them all), how many
are shared through trusted base images, and what BYOC images add: the bytes no trusted image has.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import msgspec

from imagegate.core.baseimage import BaseVersion
from imagegate.core.decide import Decision
from imagegate.core.oci import PlatformImage
from imagegate.core.policy import Grant, Policy
from imagegate.core.records import Outcome
from imagegate.core.workloads import POD_TEMPLATE_PATHS, object_metadata

__all__ = [
    "GRANT_STATES",
    "AuditReport",
    "GrantStatus",
    "ImageCost",
    "LayerReport",
    "OwnedFinding",
    "ReportOutcome",
    "RuleTotal",
    "audit_report",
    "grant_states",
    "layer_report",
    "top_owners",
]


class GrantStatus(StrEnum):
    """Where a grant stands (the values are the metrics' labels and the JSON's)."""

    ACTIVE = "active"
    EXPIRING = "expiring"
    EXPIRED = "expired"


GRANT_STATES = tuple(GrantStatus)


@dataclass(frozen=True, slots=True)
class GrantState:
    grant: Grant
    state: GrantStatus
    days_left: int | None


def grant_states(grants: Iterable[Grant], now: dt.datetime, expiring_days: int | None) -> list[GrantState]:
    """Each grant with its state; ``expiring`` when it ends within ``expiring_days`` (``None``: never)."""
    states = []
    for grant in grants:
        if grant.expired(now):
            state = GrantStatus.EXPIRED
        elif grant.expiring(now, expiring_days):
            state = GrantStatus.EXPIRING
        else:
            state = GrantStatus.ACTIVE
        states.append(GrantState(grant, state, grant.days_left(now)))
    return sorted(states, key=lambda s: (s.days_left is None, s.days_left if s.days_left is not None else 0))


class ReportOutcome(StrEnum):
    """What the audit reports a finding as, worst first (the values are the JSON's)."""

    DENIED = "denied"
    ERROR = "error"  # the registry could not say which digest a tag names
    WARNED = "warned"
    AUDITED = "audited"
    PINNED = "pinned"  # runs by tag: the mutating webhook would pin it

    @classmethod
    def of(cls, outcome: Outcome) -> ReportOutcome:
        return cls(outcome.value)


class AuditEntry(msgspec.Struct, frozen=True):
    source: str
    subject: str
    where: str  # container label or "pod security"
    image: str
    rule: str
    mode: str
    message: str


class OwnedFinding(msgspec.Struct, frozen=True):
    """One finding reported once, at the top owner of every object that has it."""

    namespace: str
    owner: str  # "Deployment tool-a/web": the top of the objects' ownerReferences
    outcome: ReportOutcome
    rule: str
    where: str
    image: str
    message: str
    objects: tuple[str, ...]  # "Pod tool-a/web-5d-x (dump.json items[3])", every object it covers


class RuleTotal(msgspec.Struct, frozen=True):
    outcome: ReportOutcome
    rule: str
    findings: int  # distinct, at top owners
    objects: int
    namespaces: int


@dataclass
class AuditReport:
    objects: int = 0
    images: int = 0
    denied_objects: int = 0
    # namespace -> outcome -> rule -> entries (every object)
    by_namespace: dict[str, dict[ReportOutcome, dict[str, list[AuditEntry]]]] = field(default_factory=dict)
    findings: list[OwnedFinding] = field(default_factory=list)
    grants: list[GrantState] = field(default_factory=list)

    def count(self, outcome: ReportOutcome) -> int:
        """Distinct findings with this outcome (one per top owner)."""
        return sum(1 for f in self.findings if f.outcome is outcome)

    def totals_by_rule(self) -> list[RuleTotal]:
        """Cluster-wide: per outcome and rule, distinct findings, objects covered, namespaces."""
        grouped: dict[tuple[ReportOutcome, str], list[OwnedFinding]] = defaultdict(list)
        for finding in self.findings:
            grouped[(finding.outcome, finding.rule)].append(finding)
        totals = [
            RuleTotal(
                outcome,
                rule,
                len(found),
                sum(len(f.objects) for f in found),
                len({f.namespace for f in found}),
            )
            for (outcome, rule), found in grouped.items()
        ]
        return sorted(totals, key=lambda t: (_OUTCOME_ORDER.index(t.outcome), -t.findings, t.rule))

    def summary(self) -> str:
        expired = sum(1 for g in self.grants if g.state is GrantStatus.EXPIRED)
        expiring = sum(1 for g in self.grants if g.state is GrantStatus.EXPIRING)
        return (
            f"{self.objects} objects, {self.images} images: {self.denied_objects} objects would be denied; "
            f"{len(self.findings) - self.count(ReportOutcome.PINNED)} distinct findings "
            f"({self.count(ReportOutcome.DENIED)} denied, {self.count(ReportOutcome.WARNED)} warnings, "
            f"{self.count(ReportOutcome.AUDITED)} audit records, {self.count(ReportOutcome.ERROR)} errors), "
            f"{self.count(ReportOutcome.PINNED)} images to pin; grants: {expired} expired, {expiring} expiring soon"
        )


_OUTCOME_ORDER = tuple(ReportOutcome)

# Which kinds own which (a Deployment's ReplicaSets, a CronJob's Jobs, any workload's Pods),
# with a rank: when a dump lacks ownerReferences, an equal pod template is owned by the
# highest-ranked workload that has it.
_OWNER_RANK = {"Pod": 0, "ReplicaSet": 1, "Job": 1, "ReplicationController": 1}
_OWNABLE = {
    "Pod": frozenset(POD_TEMPLATE_PATHS) - {"Pod", "PodTemplate"},
    "ReplicaSet": frozenset({"Deployment"}),
    "Job": frozenset({"CronJob"}),
}


def _identity(obj: Mapping[str, Any]) -> tuple[str, str, str]:
    metadata = object_metadata(obj)
    return str(obj.get("kind", "")), str(metadata.get("namespace") or ""), str(metadata.get("name") or "")


def _controller(obj: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The ownerReference that controls ``obj`` (the controller, else the first one)."""
    references = object_metadata(obj).get("ownerReferences")
    if not isinstance(references, list):
        return None
    valid = [r for r in references if isinstance(r, Mapping) and r.get("kind") and r.get("name")]
    return next((r for r in valid if r.get("controller") is True), valid[0] if valid else None)


def _template_key(obj: Mapping[str, Any], namespace: str) -> tuple[str, bytes] | None:
    spec: Any = obj
    for token in POD_TEMPLATE_PATHS.get(str(obj.get("kind", "")), ()):
        spec = spec.get(token) if isinstance(spec, Mapping) else None
    if not isinstance(spec, Mapping):
        return None
    try:
        return namespace, msgspec.json.encode(spec, order="sorted")
    except (TypeError, msgspec.EncodeError):
        return None


def top_owners(objects: Sequence[Mapping[str, Any]], default_namespace: str = "default") -> list[str]:
    """For each object, the subject (``Deployment ns/name``) of the top of its owner chain.

    Owners are found by ownerReferences (by uid, else by kind and name in the namespace);
    an owner that is not among ``objects`` is still named by its reference. An object with no
    ownerReferences belongs to the highest workload whose pod template equals its own (a dump
    stripped of metadata); otherwise it is its own top.
    """
    identities = []
    by_uid: dict[str, int] = {}
    by_name: dict[tuple[str, str, str], int] = {}
    templates: dict[tuple[str, bytes], list[int]] = defaultdict(list)
    for index, obj in enumerate(objects):
        kind, namespace, name = _identity(obj)
        namespace = namespace or default_namespace
        identities.append((kind, namespace, name))
        uid = object_metadata(obj).get("uid")
        if isinstance(uid, str) and uid:
            by_uid.setdefault(uid, index)
        by_name.setdefault((kind, namespace, name), index)
        if kind != "Pod":
            key = _template_key(obj, namespace)
            if key is not None:
                templates[key].append(index)

    def owner_by_template(index: int) -> int | None:
        kind, namespace, _name = identities[index]
        owners = _OWNABLE.get(kind)
        key = _template_key(objects[index], namespace) if owners else None
        if owners is None or key is None:
            return None
        candidates = [i for i in templates.get(key, ()) if identities[i][0] in owners]
        return max(candidates, key=lambda i: (_OWNER_RANK.get(identities[i][0], 2), -i), default=None)

    tops = []
    for start in range(len(objects)):
        current: int | None = start
        subject = ""
        seen = set()
        while current is not None and current not in seen:
            seen.add(current)
            kind, namespace, name = identities[current]
            subject = f"{kind} {namespace}/{name}"
            reference = _controller(objects[current])
            if reference is None:
                current = owner_by_template(current)
                continue
            uid = reference.get("uid")
            found = by_uid.get(uid) if isinstance(uid, str) else None
            if found is None:
                found = by_name.get((str(reference["kind"]), namespace, str(reference["name"])))
            if found is None:  # an owner the dump does not hold: still the top we know of
                subject = f"{reference['kind']} {namespace}/{reference['name']}"
            current = found
        tops.append(subject)
    return tops


def audit_report(
    checked: Sequence[tuple[str, Decision]],
    policy: Policy,
    now: dt.datetime,
    expiring_days: int = 14,
    *,
    owners: Sequence[str] | None = None,
    lookup_failures: Mapping[str, tuple[str, str]] | None = None,
) -> AuditReport:
    """Group what a policy finds in the objects that run, by namespace, outcome and rule.

    ``owners`` (from :func:`top_owners`, one per object) folds a finding shared by a workload,
    its ReplicaSets or Jobs and their Pods into one, at the top owner. ``lookup_failures``
    (reference -> (kind, message)) are the registry lookups that failed: an image whose
    digest could not be looked up is not "to pin" but an error, ``image-not-found`` when the
    registry said it does not exist.
    """
    report = AuditReport(grants=grant_states(policy.grants, now, expiring_days))
    failures = lookup_failures or {}
    nested: dict[str, dict[ReportOutcome, dict[str, list[AuditEntry]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(list))
    )
    grouped: dict[tuple[str, str, ReportOutcome, str, str, str, str], list[str]] = defaultdict(list)
    for index, (source, decision) in enumerate(checked):
        report.objects += 1
        report.images += len(decision.verdicts)
        if not decision.allowed:
            report.denied_objects += 1
        owner = owners[index] if owners is not None else decision.subject
        found: list[tuple[ReportOutcome, AuditEntry]] = []
        for finding in decision.findings:
            entry = AuditEntry(
                source,
                decision.subject,
                finding.subject.label,
                finding.subject.image,
                finding.rule,
                finding.mode.value,
                finding.message,
            )
            found.append((ReportOutcome.of(finding.outcome), entry))
        for reference in decision.pins_needed:
            if reference in failures:
                kind, message = failures[reference]
                rule = "image-not-found" if kind == "not-found" else "registry-error"
                entry = AuditEntry(source, decision.subject, "", reference, rule, "error", message)
                found.append((ReportOutcome.ERROR, entry))
            else:
                entry = AuditEntry(source, decision.subject, "", reference, "pin", "mutate", f"{reference} runs by tag")
                found.append((ReportOutcome.PINNED, entry))
        for outcome, entry in found:
            nested[decision.namespace][outcome][entry.rule].append(entry)
            key = (decision.namespace, owner, outcome, entry.rule, entry.where, entry.image, entry.message)
            grouped[key].append(f"{entry.subject} ({source})" if source else entry.subject)
    report.by_namespace = {ns: {o: dict(r) for o, r in outcomes.items()} for ns, outcomes in sorted(nested.items())}
    report.findings = sorted(
        (OwnedFinding(*key, objects=tuple(subjects)) for key, subjects in grouped.items()),
        key=lambda f: (f.namespace, _OUTCOME_ORDER.index(f.outcome), f.rule, f.owner, f.where, f.image),
    )
    return report


# --- layers ---------------------------------------------------------------------------------


class ImageCost(msgspec.Struct, frozen=True, rename="camel"):
    image: str
    byoc: bool  # let in by a grant or byoc.default, not by the trusted list
    total_bytes: int
    base_bytes: int  # layers that belong to a trusted base
    shared_bytes: int  # other layers also used by another image
    own_bytes: int  # layers no other image and no base has: what this image adds to a node


class LayerReport(msgspec.Struct, frozen=True, rename="camel"):
    """The layer costs; printed as they are by ``layers -o json`` (camelCase keys)."""

    total_bytes: int  # every image's layers, counted per image
    unique_bytes: int  # each distinct layer once
    base_bytes: int  # distinct layers of trusted bases in use
    # What BYOC adds to a node: the distinct layers that no trusted image and no trusted
    # base has. Layers that BYOC images share only with each other (tags or versions of one
    # tool's image) are counted once here, not hidden as "shared".
    byoc_added_bytes: int
    images: tuple[ImageCost, ...]
    skipped: tuple[str, ...] = ()  # images that could not be read, each with why: not counted


def _base_layer_count(image: PlatformImage, bases: Sequence[BaseVersion]) -> int:
    """How many leading layers of ``image`` are a trusted base's (proved by diff_ids)."""
    counts = [
        len(b.diff_ids)
        for b in bases
        if b.platform == image.platform and b.diff_ids and image.diff_ids[: len(b.diff_ids)] == b.diff_ids
    ]
    return max(counts, default=0)


def layer_report(
    images: Mapping[str, PlatformImage],
    byoc: Mapping[str, bool],
    bases: Sequence[BaseVersion],
    skipped: Sequence[str] = (),
) -> LayerReport:
    """Costs of ``images`` (reference -> one platform's image), with base layers proved by diff_ids.

    ``skipped``: the images that could not be read, each with why; reported, not counted.
    """
    users: dict[str, set[str]] = defaultdict(set)
    sizes: dict[str, int] = {}
    base_digests: set[str] = set()
    for reference, image in images.items():
        for index, layer in enumerate(image.layers):
            users[layer.digest].add(reference)
            sizes[layer.digest] = layer.size
            if index < _base_layer_count(image, bases):
                base_digests.add(layer.digest)
    trusted_digests = {layer.digest for r, image in images.items() if not byoc.get(r, False) for layer in image.layers}
    byoc_added = {
        layer.digest
        for r, image in images.items()
        if byoc.get(r, False)
        for layer in image.layers
        if layer.digest not in base_digests and layer.digest not in trusted_digests
    }
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
        total_bytes=sum(c.total_bytes for c in costs),
        unique_bytes=sum(sizes.values()),
        base_bytes=sum(sizes[d] for d in base_digests),
        byoc_added_bytes=sum(sizes[d] for d in byoc_added),
        images=tuple(costs),
        skipped=tuple(skipped),
    )
