"""The documents ``--output json`` prints: one msgspec Struct per shape operators script against.

A field is a key (snake_case here, camelCase in the JSON by ``rename``), in the order of the
fields; each Struct is made from the record it reports (a Decision, a GrantState, ...), and
records that already have the right shape (the audit's findings, the layer report) are
printed as they are. A key changes here or nowhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import msgspec

from imagegate.core.decide import Decision
from imagegate.core.records import BaseImageVerdict, Finding, ImageVerdict, Mode
from imagegate.core.report import (
    AuditEntry,
    AuditReport,
    GrantState,
    GrantStatus,
    OwnedFinding,
    ReportOutcome,
    RuleTotal,
)

if TYPE_CHECKING:  # only what the documents are made from: each command loads its own
    from imagegate.core.bases import BaseRow, TaggedBase
    from imagegate.core.compare import Comparison
    from imagegate.core.oci import PlatformImage, ResolvedImage

__all__ = [
    "AuditJson",
    "BaseRowJson",
    "BaseVersionJson",
    "BasesJson",
    "CheckJson",
    "CompareJson",
    "CountsJson",
    "GrantJson",
    "GrantProblem",
    "InspectJson",
    "ObjectJson",
    "Result",
]


class FindingJson(msgspec.Struct, frozen=True, rename="camel"):
    container: str
    container_kind: str
    image: str
    rule: str
    mode: Mode
    message: str

    @classmethod
    def of(cls, finding: Finding) -> FindingJson:
        subject = finding.subject
        return cls(subject.name, subject.kind, subject.image, finding.rule, finding.mode, finding.message)


class ImageJson(msgspec.Struct, frozen=True, rename="camel"):
    container: str
    container_kind: str
    image: str
    reference: str | None
    allowed_by: str | None
    rule: str | None

    @classmethod
    def of(cls, verdict: ImageVerdict) -> ImageJson:
        use = verdict.use
        rule = verdict.finding.rule if verdict.finding else None
        return cls(use.name, use.kind, use.image, verdict.reference, verdict.allowed_by, rule)


class ObjectJson(msgspec.Struct, frozen=True, rename="camel"):
    """One judged object of ``check -o json``: where it was read, and its decision."""

    source: str
    kind: str
    namespace: str
    name: str
    governed: bool
    allowed: bool
    message: str
    violations: list[FindingJson]
    warnings: list[FindingJson]
    audits: list[FindingJson]
    images: list[ImageJson]
    patches: list[Mapping[str, Any]]
    notices: list[str]

    @classmethod
    def of(cls, source: str, decision: Decision) -> ObjectJson:
        return cls(
            source=source,
            kind=decision.kind,
            namespace=decision.namespace,
            name=decision.name,
            governed=decision.governed,
            allowed=decision.allowed,
            message=decision.message(),
            violations=[FindingJson.of(f) for f in decision.violations],
            warnings=[FindingJson.of(f) for f in decision.warnings],
            audits=[FindingJson.of(f) for f in decision.audits],
            images=[ImageJson.of(v) for v in decision.verdicts],
            patches=list(decision.patches),
            notices=list(decision.notices),
        )


class Result(StrEnum):
    """How ``check`` words an object's or an image's result (the table, its lines, ``-o json``'s counts)."""

    DENIED = "denied"
    WARN = "warn"
    AUDIT = "audit"
    ALLOWED = "allowed"
    EXEMPT = "exempt"  # a namespace the policy does not govern, an image it exempts


class CountsJson(msgspec.Struct, frozen=True):
    objects: dict[Result, int]  # by outcome
    images: dict[Result, int]  # by the worst finding on each
    findings: dict[Mode, int]  # by mode


class CheckJson(msgspec.Struct, frozen=True):
    summary: str
    counts: CountsJson
    allowed: bool
    objects: list[ObjectJson]


class GrantJson(msgspec.Struct, frozen=True, rename="camel"):
    """A grant with its state (``grants list``, ``grants expiring``, ``audit``)."""

    namespace: str
    state: GrantStatus
    expires: str | None
    days_left: int | None
    registries: list[str] | None
    ticket: str
    reason: str
    source: str
    requested_by: str
    require_base_image: bool
    signed_by: str | None
    mode: Mode | None  # None: the policy's

    @classmethod
    def of(cls, state: GrantState) -> GrantJson:
        grant = state.grant
        return cls(
            namespace=grant.namespace,
            state=state.state,
            expires=grant.expires.isoformat() if grant.expires else None,
            days_left=state.days_left,
            registries=[str(p) for p in grant.registries] if grant.registries is not None else None,
            ticket=grant.ticket,
            reason=grant.reason,
            source=grant.source,
            requested_by=grant.requested_by,
            require_base_image=grant.require_base_image,
            signed_by=grant.signed_by,
            mode=grant.mode,
        )


class GrantProblem(StrEnum):
    """What ``grants check`` finds wrong with a grant."""

    NO_NAMESPACE = "no-namespace"  # its namespace does not exist
    UNGOVERNED = "ungoverned"  # the policy does not govern its namespace
    EXPIRED = "expired"


class GrantCheckJson(msgspec.Struct, frozen=True, rename="camel"):
    """One thing wrong with a grant (``grants check``)."""

    namespace: str
    problem: GrantProblem
    detail: str
    state: GrantStatus
    source: str

    @classmethod
    def of(cls, state: GrantState, problem: GrantProblem, detail: str) -> GrantCheckJson:
        return cls(state.grant.namespace, problem, detail, state.state, state.grant.source)


class AuditJson(msgspec.Struct, frozen=True, rename="camel"):
    summary: str
    objects: int
    denied_objects: int
    totals_by_rule: list[RuleTotal]
    findings: list[OwnedFinding]
    namespaces: dict[str, dict[ReportOutcome, dict[str, list[AuditEntry]]]]  # namespace -> outcome -> rule -> entries
    grants: list[GrantJson]

    @classmethod
    def of(cls, report: AuditReport) -> AuditJson:
        return cls(
            summary=report.summary(),
            objects=report.objects,
            denied_objects=report.denied_objects,
            totals_by_rule=report.totals_by_rule(),
            findings=report.findings,
            namespaces=report.by_namespace,
            grants=[GrantJson.of(s) for s in report.grants],
        )


class LayerJson(msgspec.Struct, frozen=True):
    digest: str
    size: int


class PlatformJson(msgspec.Struct, frozen=True, rename="camel"):
    platform: str
    manifest: str
    layers: list[LayerJson]
    diff_ids: list[str]
    annotations: dict[str, str]

    @classmethod
    def of(cls, image: PlatformImage) -> PlatformJson:
        layers = [LayerJson(layer.digest, layer.size) for layer in image.layers]
        return cls(image.platform, image.manifest_digest, layers, list(image.diff_ids), image.annotations)


class BaseJson(msgspec.Struct, frozen=True):
    ok: bool
    detail: str


class InspectJson(msgspec.Struct, frozen=True, rename="camel"):
    """``inspect -o json``: what the registry holds under a reference, and its base."""

    reference: str
    digest: str
    media_type: str
    available_platforms: list[str]
    platforms: list[PlatformJson]
    base: BaseJson | None

    @classmethod
    def of(cls, resolved: ResolvedImage, verdict: BaseImageVerdict | None) -> InspectJson:
        return cls(
            reference=resolved.reference,
            digest=resolved.digest,
            media_type=resolved.media_type,
            available_platforms=list(resolved.available_platforms),
            platforms=[PlatformJson.of(p) for p in resolved.platforms],
            base=None if verdict is None else BaseJson(verdict.ok, verdict.detail),
        )


class NamespaceCompareJson(msgspec.Struct, frozen=True):
    denied: list[int]  # objects denied, per option
    rules: list[list[str]]  # rules that deny there, per option


class LetsInJson(msgspec.Struct, frozen=True):
    """What one option admits that the reference option denies."""

    objects: int
    tools: list[str]
    images: list[str]
    registries: list[str]
    # denied here only for want of a registry answer, where the reference denies them for more
    if_proved: int = msgspec.field(name="ifProved")
    if_proved_tools: list[str] = msgspec.field(name="ifProvedTools")


class CompareJson(msgspec.Struct, frozen=True, rename="camel"):
    """``audit --compare -o json``: per option (column), what it denies and what it lets in."""

    options: list[str]
    objects: int
    governed: list[int]
    denied_objects: list[int]
    tools_denied: list[int]
    warned_objects: list[int]
    unread_objects: list[int]  # denied only for want of a registry answer (offline, or a failed lookup)
    rules: dict[str, list[int]]
    namespaces: dict[str, NamespaceCompareJson]
    descriptions: list[str]  # one sentence per option
    box_ends: str | None  # the time box's last day (ISO date), when an option has one
    tools: int  # namespaces with an object some option governs
    reference: str  # the option ``letsIn`` is measured against
    lets_in: list[LetsInJson]  # per option

    @classmethod
    def of(cls, table: Comparison) -> CompareJson:
        return cls(
            options=table.labels,
            objects=table.objects,
            governed=table.governed,
            denied_objects=table.denied,
            tools_denied=table.tools_denied(),
            warned_objects=table.warned,
            unread_objects=table.unread,
            rules=table.rules,
            namespaces={
                ns: NamespaceCompareJson(counts, table.namespace_rules.get(ns, []))
                for ns, counts in table.namespaces.items()
            },
            descriptions=table.descriptions,
            box_ends=table.box_ends.isoformat() if table.box_ends else None,
            tools=table.tools,
            reference=table.labels[table.reference] if table.labels else "",
            lets_in=[
                LetsInJson(
                    i.objects, list(i.tools), list(i.images), list(i.registries), i.if_proved, list(i.if_proved_tools)
                )
                for i in table.lets_in
            ],
        )


class BaseVersionJson(msgspec.Struct, frozen=True):
    repository: str
    tags: list[str]
    digest: str
    platform: str
    created: str | None  # isoformat, as written since ``bases`` first printed it

    @classmethod
    def of(cls, base: TaggedBase) -> BaseVersionJson:
        created = base.created.isoformat() if base.created else None
        return cls(base.repository, list(base.tags), base.digest, base.platform, created)


class BaseRowJson(msgspec.Struct, frozen=True, rename="camel"):
    image: str
    platform: str
    digest: str
    base: BaseVersionJson | None
    age_days: int | None
    newer_base: BaseVersionJson | None
    rebuild: bool
    tools: list[str]
    owners: list[str]
    note: str

    @classmethod
    def of(cls, row: BaseRow) -> BaseRowJson:
        return cls(
            image=row.image,
            platform=row.platform,
            digest=row.digest,
            base=None if row.base is None else BaseVersionJson.of(row.base),
            age_days=row.age_days,
            newer_base=None if row.newer is None else BaseVersionJson.of(row.newer),
            rebuild=row.rebuild,
            tools=list(row.tools),
            owners=list(row.owners),
            note=row.note,
        )


class BasesJson(msgspec.Struct, frozen=True, rename="camel"):
    """``bases -o json``: each running image's base version, and what to rebuild."""

    images: list[BaseRowJson]
    tools_to_rebuild: Mapping[str, list[str]]  # namespace -> its images with a newer base
    base_versions: list[BaseVersionJson]
    skipped: list[str]


class KeptFileJson(msgspec.Struct, frozen=True):
    path: str
    size: int
    sha256: str
    text: str | None = None  # the content, with --show, when it is UTF-8


class PlatformFilesJson(msgspec.Struct, frozen=True):
    platform: str
    layers: list[str]  # digests, lowest first
    entries: int  # tar entries walked, every layer's
    files: list[KeptFileJson]


class ContentsJson(msgspec.Struct, frozen=True):
    """``contents -o json``: the files kept of each platform image of a reference."""

    reference: str
    platforms: list[PlatformFilesJson]
