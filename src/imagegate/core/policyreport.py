"""Policy reports and grant Events, pure: what ``imagegate reports`` writes, from decisions.

One report per namespace holds every finding once, at the top owner of the objects that have
it (the audit's grouping: :func:`~imagegate.core.report.audit_report` and
:func:`~imagegate.core.report.top_owners`, the same functions ``imagegate audit`` uses), in
the openreports.io ``Report`` or the wgpolicyk8s.io ``PolicyReport`` shape. What is decided
here, without I/O or a clock: the report's content, whether it differs from what the API
server holds (:func:`report_content`: a period with no change writes nothing), its bound (an
object the API server would refuse is never built), and which grant Events are due today
(at most one per grant, reason and day).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import msgspec

from imagegate.core.decide import Decision, Rule, decide
from imagegate.core.policy import Grant, Policy
from imagegate.core.records import Allowance
from imagegate.core.report import AuditReport, OwnedFinding, ReportOutcome, audit_report, top_owners
from imagegate.core.workloads import POD_TEMPLATE_PATHS, WORKLOAD_KINDS, object_metadata

__all__ = [
    "MAX_MESSAGE_CHARS",
    "MAX_RESULTS_BYTES",
    "REPORT_KINDS",
    "REPORT_NAME",
    "GrantEvent",
    "GrantEventReason",
    "NamespaceJudgement",
    "ReportFormat",
    "ReportKind",
    "due_events",
    "grant_events",
    "judge_namespace",
    "record_sent",
    "report_content",
    "report_document",
]

REPORT_NAME = "imagegate"
SOURCE = "imagegate"
POLICY_ID = "imagegate"
MANAGED_BY = ("app.kubernetes.io/managed-by", "imagegate")
# The API server refuses an object over ~1.5 MiB (etcd's request limit); results beyond this
# many bytes of JSON are summed up in one result instead, leaving room for metadata.
MAX_RESULTS_BYTES = 1024 * 1024
MAX_MESSAGE_CHARS = 1024  # a message or property longer than this is cut (and says so)
MAX_EVENT_IMAGES = 10  # images named in an Event's message; the rest counted


class ReportFormat(StrEnum):
    openreports = "openreports"
    wgpolicyk8s = "wgpolicyk8s"


@dataclass(frozen=True, slots=True)
class ReportKind:
    group: str
    version: str
    kind: str
    plural: str

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}"

    @property
    def crd(self) -> str:
        return f"{self.plural}.{self.group}"


REPORT_KINDS: Mapping[ReportFormat, ReportKind] = {
    ReportFormat.openreports: ReportKind("openreports.io", "v1alpha1", "Report", "reports"),
    ReportFormat.wgpolicyk8s: ReportKind("wgpolicyk8s.io", "v1alpha2", "PolicyReport", "policyreports"),
}


class Result(StrEnum):
    """A result's value in both schemas (their enum), worst first."""

    FAIL = "fail"
    ERROR = "error"
    WARN = "warn"
    PASS = "pass"
    SKIP = "skip"


_RESULT_ORDER = tuple(Result)
# audit's outcome -> (result, severity): the one mapping (docs/reports.md shows it)
_RESULTS: Mapping[ReportOutcome, tuple[Result, str]] = {
    ReportOutcome.DENIED: (Result.FAIL, "high"),
    ReportOutcome.ERROR: (Result.ERROR, "medium"),
    ReportOutcome.WARNED: (Result.WARN, "medium"),
    ReportOutcome.AUDITED: (Result.WARN, "low"),
    ReportOutcome.PINNED: (Result.PASS, "info"),
}
PASS_RULE = "images"  # a top owner with no finding: its images pass
MORE_RULE = "more-results"  # the results beyond the bound, counted

_API_VERSIONS = {w.kind: w.api_version for w in WORKLOAD_KINDS}


@dataclass(frozen=True, slots=True)
class NamespaceJudgement:
    """What the policy says about one namespace's objects: the audit's report, the objects' top
    owners and their decisions (for the grant Events)."""

    namespace: str
    report: AuditReport
    owners: tuple[str, ...]
    decisions: tuple[Decision, ...]
    references: Mapping[str, Mapping[str, str]]  # top owner subject -> its resource reference


def _cut(text: str) -> str:
    return text if len(text) <= MAX_MESSAGE_CHARS else text[: MAX_MESSAGE_CHARS - 12] + " [...] (cut)"


def _subject(obj: Mapping[str, Any], namespace: str) -> str:
    metadata = object_metadata(obj)
    return f"{obj.get('kind', '')} {metadata.get('namespace') or namespace}/{metadata.get('name') or ''}"


def _reference(subject: str, objects: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """A report's resource reference for a top owner: from the object when it is listed, else its name."""
    kind, _, rest = subject.partition(" ")
    namespace, _, name = rest.partition("/")
    reference = {"kind": kind, "namespace": namespace, "name": name}
    if kind in _API_VERSIONS:
        reference["apiVersion"] = _API_VERSIONS[kind]
    found = objects.get(subject)
    uid = object_metadata(found).get("uid") if found is not None else None
    if isinstance(uid, str) and uid:
        reference["uid"] = uid
    return reference


def judge_namespace(
    policy: Policy,
    namespace: str,
    objects: Sequence[Mapping[str, Any]],
    now: dt.datetime,
    labels: Mapping[str, str] | None,
) -> NamespaceJudgement | None:
    """The audit of one namespace's pod-bearing objects (``None``: the policy does not govern it).

    Judged as ``imagegate audit --offline`` judges them: :func:`decide` on CREATE without
    registry lookups, then :func:`audit_report` at :func:`top_owners`.
    """
    if not policy.namespaces.governs(namespace, labels):
        return None
    judged = [obj for obj in objects if obj.get("kind") in POD_TEMPLATE_PATHS]
    decisions = tuple(decide(policy, obj, namespace=namespace, now=now, namespace_labels=labels) for obj in judged)
    return namespace_judgement(policy, namespace, judged, decisions, now)


def namespace_judgement(
    policy: Policy,
    namespace: str,
    judged: Sequence[Mapping[str, Any]],
    decisions: Sequence[Decision],
    now: dt.datetime,
) -> NamespaceJudgement:
    """One namespace's judgement from decisions already made (``check -o policyreport`` has
    them): :func:`audit_report` at :func:`top_owners`, the owners' resource references."""
    decisions = tuple(decisions)
    owners = tuple(top_owners(judged, namespace))
    report = audit_report(
        [("", d) for d in decisions],
        policy,
        now,
        policy.warn_before_expiry_days or 0,
        owners=owners,
    )
    by_subject = {_subject(obj, namespace): obj for obj in judged}
    references = {owner: _reference(owner, by_subject) for owner in owners}
    return NamespaceJudgement(namespace, report, owners, decisions, references)


def _grant_properties(grants: Sequence[Grant]) -> dict[str, str]:
    """The namespace's grant (the latest ending, when several), for every result's properties."""
    if not grants:
        return {}
    grant = max(grants, key=lambda g: g.expires or dt.date.max)
    found = {"grant": grant.ticket or f"BYOC grant for {grant.namespace}"}
    if grant.expires is not None:
        found["expires"] = grant.expires.isoformat()
    return found


def _finding_result(finding: OwnedFinding, reference: Mapping[str, str], grant: Mapping[str, str]) -> dict[str, Any]:
    result, severity = _RESULTS[finding.outcome]
    properties = {**grant, "objects": str(len(finding.objects))}
    if finding.image:
        properties["image"] = _cut(finding.image)
    if finding.where:
        properties["container"] = _cut(finding.where)
    return {
        "source": SOURCE,
        "policy": POLICY_ID,
        "rule": finding.rule,
        "result": result.value,
        "severity": severity,
        "message": _cut(finding.message),
        "resources": [dict(reference)],
        "properties": properties,
    }


def _sort_key(result: Mapping[str, Any]) -> tuple[Any, ...]:
    resource = result["resources"][0] if result.get("resources") else {}
    properties = result.get("properties", {})
    return (
        _RESULT_ORDER.index(Result(result["result"])),
        result["rule"],
        resource.get("kind", ""),
        resource.get("name", ""),
        properties.get("container", ""),
        properties.get("image", ""),
        result["message"],
    )


def _bounded(results: list[dict[str, Any]], max_results: int, max_bytes: int) -> list[dict[str, Any]]:
    """The results that fit (worst first), and one more that counts the others by result."""
    kept: list[dict[str, Any]] = []
    size = 0
    for index, result in enumerate(results):
        size += len(msgspec.json.encode(result)) + 1
        if index >= max_results or size > max_bytes:
            left = Counter(Result(r["result"]) for r in results[index:])
            worst = min(left, key=_RESULT_ORDER.index)
            counted = ", ".join(f"{left[r]} {r.value}" for r in _RESULT_ORDER if left[r])
            kept.append(
                {
                    "source": SOURCE,
                    "policy": POLICY_ID,
                    "rule": MORE_RULE,
                    "result": worst.value,
                    "message": f"{len(results) - index} more results not listed ({counted}); the summary counts them",
                    "properties": {"omitted": str(len(results) - index)},
                }
            )
            break
        kept.append(result)
    return kept


def report_document(
    judgement: NamespaceJudgement,
    fmt: ReportFormat,
    grants: Sequence[Grant] = (),
    *,
    max_results: int = 1000,
    max_bytes: int = MAX_RESULTS_BYTES,
) -> dict[str, Any]:
    """The namespace's report: a result per finding at its top owner, a ``pass`` per top owner
    with none, worst first, bounded; ``summary`` counts every result, listed or not."""
    report = judgement.report
    grant = _grant_properties(grants)
    results = [_finding_result(f, judgement.references[f.owner], grant) for f in report.findings]
    with_findings = {f.owner for f in report.findings}
    for owner in sorted(set(judgement.owners) - with_findings):
        images = len(
            {
                v.reference or v.use.image
                for d, o in zip(judgement.decisions, judgement.owners, strict=True)
                if o == owner
                for v in d.verdicts
            }
        )
        results.append(
            {
                "source": SOURCE,
                "policy": POLICY_ID,
                "rule": PASS_RULE,
                "result": Result.PASS.value,
                "message": f"admitted: {images} image{'' if images == 1 else 's'}, no finding",
                "resources": [dict(judgement.references[owner])],
                "properties": {**grant, "objects": str(judgement.owners.count(owner))},
            }
        )
    results.sort(key=_sort_key)
    summary = Counter(Result(r["result"]) for r in results)
    kind = REPORT_KINDS[fmt]
    document: dict[str, Any] = {
        "apiVersion": kind.api_version,
        "kind": kind.kind,
        "metadata": {
            "name": REPORT_NAME,
            "namespace": judgement.namespace,
            "labels": {MANAGED_BY[0]: MANAGED_BY[1]},
        },
        "summary": {r.value: summary[r] for r in Result},
        "results": _bounded(results, max_results, max_bytes),
    }
    if fmt is ReportFormat.openreports:
        document["source"] = SOURCE  # the wgpolicyk8s.io v1alpha2 report has no such field
    return document


def report_content(document: Mapping[str, Any]) -> bytes:
    """What a report says, as bytes to compare: a desired report and the API server's copy of it
    are equal here exactly when writing it would change nothing a reader sees."""
    content = {key: document.get(key) for key in ("results", "summary", "source")}
    labels = (document.get("metadata") or {}).get("labels") or {}
    content["managed"] = labels.get(MANAGED_BY[0]) == MANAGED_BY[1]
    return msgspec.json.encode(content, order="sorted")


# --- grant Events ------------------------------------------------------------------------------


class GrantEventReason(StrEnum):
    expiring = "GrantExpiring"
    expired = "GrantExpired"


@dataclass(frozen=True, slots=True)
class GrantEvent:
    namespace: str
    reason: GrantEventReason
    expires: dt.date
    message: str

    @property
    def key(self) -> str:
        """One Event per key and day: the grant (namespace and end date) and the reason."""
        return f"{self.namespace}/{self.reason.value}/{self.expires.isoformat()}"

    def name(self, today: dt.date) -> str:
        """The Event's name: the same all day, so a second create is refused (409), never a repeat."""
        return f"imagegate.{self.reason.value.lower()}.{self.expires:%Y%m%d}.{today:%Y%m%d}"


def grant_images(decisions: Iterable[Decision]) -> list[str]:
    """The images a namespace runs that need its grant: let in by it, or refused for lack of one."""
    found: set[str] = set()
    for decision in decisions:
        for verdict in decision.verdicts:
            finding = verdict.finding
            needs = verdict.allowance is Allowance.GRANT or (
                finding is not None and finding.rule == Rule.UNTRUSTED_REGISTRY
            )
            if needs:
                found.add(verdict.reference or verdict.use.image)
    return sorted(found)


def _named(images: Sequence[str]) -> str:
    if not images:
        return "no running object uses it now"
    shown = ", ".join(images[:MAX_EVENT_IMAGES])
    more = len(images) - MAX_EVENT_IMAGES
    return f"images affected: {shown}" + (f" and {more} more" if more > 0 else "")


def grant_events(
    policy: Policy, now: dt.datetime, images: Mapping[str, Sequence[str]], namespaces: Iterable[str]
) -> list[GrantEvent]:
    """The Events due for the grants of ``namespaces`` (those that exist): each grant inside its
    warning window (``byoc.warnBeforeExpiryDays``) or ended, naming its date and the images
    (``images``: namespace -> the images that need its grant, :func:`grant_images`)."""
    existing = set(namespaces)
    events = []
    for grant in policy.grants:
        if grant.expires is None or grant.namespace not in existing:
            continue
        used = images.get(grant.namespace, ())
        ticket = f" (ticket {grant.ticket})" if grant.ticket else ""
        if grant.expired(now):
            message = (
                f"BYOC grant for {grant.namespace}{ticket} ended on {grant.expires.isoformat()}: new Pods using "
                f"images it admitted are denied; {_named(used)}"
            )
            events.append(GrantEvent(grant.namespace, GrantEventReason.expired, grant.expires, _cut(message)))
        elif grant.expiring(now, policy.warn_before_expiry_days):
            left = grant.days_left(now)
            when = "today is its last day" if left == 0 else f"{left} day{'' if left == 1 else 's'} left"
            message = (
                f"BYOC grant for {grant.namespace}{ticket} is good through {grant.expires.isoformat()} UTC "
                f"({when}); after that new Pods using images it admits are denied; {_named(used)}"
            )
            events.append(GrantEvent(grant.namespace, GrantEventReason.expiring, grant.expires, _cut(message)))
    return events


class _SentRecord(msgspec.Struct, frozen=True):
    day: str
    sent: list[str]


def _sent_today(record: str | None, today: dt.date) -> set[str]:
    if not record:
        return set()
    try:
        decoded = msgspec.json.decode(record, type=_SentRecord)
    except msgspec.DecodeError:
        return set()  # a record we cannot read: the Events' own names still refuse repeats today
    return set(decoded.sent) if decoded.day == today.isoformat() else set()


def due_events(events: Sequence[GrantEvent], record: str | None, today: dt.date) -> list[GrantEvent]:
    """The events not yet sent today according to ``record`` (what :func:`record_sent` wrote)."""
    sent = _sent_today(record, today)
    return [event for event in events if event.key not in sent]


def record_sent(record: str | None, keys: Iterable[str], today: dt.date) -> str:
    """``record`` with ``keys`` added for ``today`` (other days' entries dropped: one day is enough)."""
    sent = _sent_today(record, today) | set(keys)
    return msgspec.json.encode(_SentRecord(today.isoformat(), sorted(sent))).decode()


def event_document(
    event: GrantEvent, today: dt.date, now: dt.datetime, component: str, instance: str
) -> dict[str, Any]:
    """The core v1 Warning Event in the grant's namespace, about the Namespace itself."""
    stamp = now.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": event.name(today), "namespace": event.namespace},
        "involvedObject": {
            "apiVersion": "v1",
            "kind": "Namespace",
            "name": event.namespace,
            "namespace": event.namespace,  # the API server wants it equal to the Event's
        },
        "reason": event.reason.value,
        "message": event.message,
        "type": "Warning",
        "source": {"component": component},
        "reportingComponent": component,
        "reportingInstance": instance[:128],
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }
