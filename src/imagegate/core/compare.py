"""The decision in numbers: what each policy option would deny in what already runs.

``audit --compare`` judges the same objects under several policies (files, or the four options
of the decision request as presets) and counts, per option, the objects denied, the findings
per rule and the objects denied per namespace (tool). Pure: the caller reads the objects and
the policies and passes the instant.

The presets are built from one base policy (the policy in force, or the built-in Toolforge
policy), so they differ only in the BYOC choice:

* ``closed``: no BYOC at all (``byoc.default: deny``, every grant dropped);
* ``byoc``: BYOC for everyone (``byoc.default: allow``);
* ``time-boxed``: BYOC for every namespace until a date (a grant per namespace that runs
  something, ending that day, beside the base's own grants), judged now and the day after
  it ends, two columns: what the box admits, and what its end denies;
* ``selected``: BYOC for the tools the base's grants name (and those given with ``--select``).

Beside the counts, the comparison says what the choice changes for a team deciding: the rules
and tools whose numbers differ between options (the rest is the same whatever is chosen), and
what each option lets in that the reference option (``closed`` when compared, else the first
column) denies: the objects, tools, images and registries that would newly run.

Registry-backed rules (base images, signatures, attestations, content) need the registry's
answers: the shell gives each option the answers to what its decisions ask (``audit --compare
--registry``). Without them (offline) such a rule denies the images it covers as unverified;
those objects are counted apart (``unread``: denied only for want of a registry answer), and
what an option would let in once its images prove themselves is ``LetsIn.if_proved``.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from imagegate.core.decide import decide
from imagegate.core.policy import Grant, Mode, Policy
from imagegate.core.records import NO_ANSWERS, Answers, Decision, DenyOrAllow, Finding, ImageUse, PodSubject
from imagegate.core.reference import ReferenceError, parse_normalized

__all__ = ["PRESETS", "Comparison", "LetsIn", "Option", "Subject", "compare", "judge", "preset_options"]

PRESETS = ("closed", "byoc", "time-boxed", "selected")


@dataclass(frozen=True)
class Option:
    """One column: a policy judged at one instant."""

    label: str
    policy: Policy
    now: dt.datetime
    description: str = ""  # one sentence: what this option is
    preset: str | None = None  # the preset that made it (None: a policy file)
    box_ends: dt.date | None = None  # the last day of a time box
    answers: Answers = NO_ANSWERS  # the registry's answers to what its decisions ask (none: offline)


@dataclass(frozen=True)
class Subject:
    """One object to judge, with what the decision needs besides the policy."""

    namespace: str
    obj: Mapping[str, Any]
    labels: Mapping[str, str] | None = None


@dataclass(frozen=True)
class LetsIn:
    """What one option admits that the reference option denies: what would newly run."""

    objects: int = 0
    tools: tuple[str, ...] = ()
    images: tuple[str, ...] = ()
    registries: tuple[str, ...] = ()
    # Objects the reference denies that this option denies only for want of a registry answer
    # (offline: unread images): what it would let in once those images prove themselves.
    if_proved: int = 0
    if_proved_tools: tuple[str, ...] = ()


@dataclass
class Comparison:
    labels: list[str]
    objects: int = 0
    governed: list[int] = field(default_factory=list)
    denied: list[int] = field(default_factory=list)  # objects denied, per option
    warned: list[int] = field(default_factory=list)  # objects admitted with a warning, per option
    # objects denied only by findings a registry answer would settle (offline, or a failed lookup), per option
    unread: list[int] = field(default_factory=list)
    # rule -> findings that deny, per option
    rules: dict[str, list[int]] = field(default_factory=dict)
    # namespace -> objects denied, per option (only namespaces some option denies something in)
    namespaces: dict[str, list[int]] = field(default_factory=dict)
    # namespace -> rules that deny there, per option
    namespace_rules: dict[str, list[list[str]]] = field(default_factory=dict)
    descriptions: list[str] = field(default_factory=list)  # one sentence per option
    box_ends: dt.date | None = None  # the time box's last day, when an option has one
    tools: int = 0  # namespaces with an object some option governs
    reference: int = 0  # the column ``lets_in`` is measured against
    lets_in: list[LetsIn] = field(default_factory=list)  # per option

    def rules_differing(self) -> dict[str, list[int]]:
        """The rules whose count the choice changes."""
        return {rule: counts for rule, counts in self.rules.items() if len(set(counts)) > 1}

    def rules_same(self) -> dict[str, list[int]]:
        """The rules that deny as much under every option."""
        return {rule: counts for rule, counts in self.rules.items() if len(set(counts)) == 1}

    def namespaces_differing(self) -> dict[str, list[int]]:
        """The tools whose denied objects the choice changes (the most denied first)."""
        return {ns: counts for ns, counts in self.namespaces.items() if len(set(counts)) > 1}

    def namespaces_same(self) -> dict[str, list[int]]:
        """The tools denied as much under every option."""
        return {ns: counts for ns, counts in self.namespaces.items() if len(set(counts)) == 1}

    def tools_denied(self) -> list[int]:
        """Namespaces with at least one denied object, per option."""
        return [sum(1 for counts in self.namespaces.values() if counts[i]) for i in range(len(self.labels))]


def _grant(namespace: str, expires: dt.date, reason: str) -> Grant:
    return Grant(
        namespace=namespace,
        registries=None,
        expires=expires,
        reason=reason,
        requested_by="",
        ticket="",
        require_base_image=False,
        mode=None,
        source="<preset>",
    )


def _closed(base: Policy) -> Policy:
    return replace(base, byoc_default=DenyOrAllow.DENY, grants=(), grants_by_namespace={})


def preset_options(
    name: str,
    base: Policy,
    now: dt.datetime,
    namespaces: Iterable[str],
    *,
    box_ends: dt.date,
    selected: Sequence[str] = (),
) -> list[Option]:
    """The columns one preset makes (``time-boxed`` makes two)."""
    if name == "closed":
        sentence = "Keep the gate closed: only the trusted registries, no BYOC for any tool, every grant dropped."
        return [Option("closed", _closed(base), now, sentence, name)]
    if name == "byoc":
        sentence = "BYOC for everyone: every tool may run images from any registry, with no end date."
        return [Option("BYOC for everyone", replace(base, byoc_default=DenyOrAllow.ALLOW), now, sentence, name)]
    if name == "time-boxed":
        granted = {g.namespace for g in base.grants}
        boxed = [
            _grant(ns, box_ends, f"time-boxed BYOC until {box_ends.isoformat()}")
            for ns in sorted(set(namespaces))
            if ns not in granted
        ]
        policy = base.with_grants(boxed, what_if=True)
        after = dt.datetime.combine(box_ends + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)
        day = box_ends.isoformat()
        return [
            Option(
                f"time-boxed (until {day})",
                policy,
                now,
                f"Time-boxed BYOC: every tool running something may use any registry until {day} (today's view).",
                name,
                box_ends,
            ),
            Option(
                f"time-boxed (after {day})",
                policy,
                max(after, now),
                f"Time-boxed BYOC after the box ends on {day}: only the tools with their own grants keep BYOC.",
                name,
                box_ends,
            ),
        ]
    if name == "selected":
        granted = {g.namespace for g in base.grants}
        extra = [_grant(ns, dt.date.max, "selected tool") for ns in selected if ns not in granted]
        policy = replace(base, byoc_default=DenyOrAllow.DENY).with_grants(extra, what_if=True)
        names = sorted(granted | set(selected))
        sentence = (
            f"An allowlist: BYOC only for {len(names)} selected tools (the grants file's and --select's), "
            "the gate closed for the rest."
        )
        return [Option(f"selected tools ({len(names)})", policy, now, sentence, name)]
    raise ValueError(f"{name!r} is not a preset ({', '.join(PRESETS)})")


class _Judges:
    """Decisions for one option, sharing the pod-security part between options that share it.

    The options built from one base (the presets) differ only in what they say about images;
    their pod security (level, tool profile, identities) and namespace scope are the same
    objects. The pod-security findings of a subject are then worked out once, by the first
    such option, and the others judge only its images (``pod_security`` left out): the same
    findings as a full decision each, at a fraction of the cost (pod security is most of it).
    """

    def __init__(self, subjects: Sequence[Subject]) -> None:
        self.subjects = subjects
        # (id of the pod-security settings, id of the namespace scope) -> pod findings per subject
        self.pod_findings: dict[tuple[int, int], list[tuple[Finding, ...]]] = {}

    def findings(self, option: Option) -> list[_Judged]:
        policy = option.policy
        settings = policy.pod_security
        key = (id(settings), id(policy.namespaces))
        shared = self.pod_findings.get(key) if settings is not None else None
        judged: list[_Judged] = []
        if shared is None:
            pods: list[tuple[Finding, ...]] = []
            for subject in self.subjects:
                decision = judge(option, subject)
                judged.append(_Judged.of(decision, decision.findings))
                pods.append(tuple(f for f in decision.findings if isinstance(f.subject, PodSubject)))
            if settings is not None:
                self.pod_findings[key] = pods
            return judged
        images_only = replace(option, policy=replace(policy, pod_security=None))
        for subject, pod in zip(self.subjects, shared, strict=True):
            decision = judge(images_only, subject)
            judged.append(_Judged.of(decision, decision.findings + pod))
        return judged


@dataclass(frozen=True)
class _Judged:
    """One subject under one option: governed, its findings, and the rules its registry
    questions would have settled had they been answered."""

    governed: bool
    findings: tuple[Finding, ...]
    unanswered: frozenset[str]

    @classmethod
    def of(cls, decision: Decision, findings: tuple[Finding, ...]) -> _Judged:
        rules = frozenset(q.unanswered for q in decision.questions if q.unanswered is not None)
        return cls(decision.governed, findings, rules)


def judge(option: Option, subject: Subject) -> Decision:
    """``subject`` under ``option``, with the registry answers it carries (as ``check`` does, after mutation)."""
    return decide(
        option.policy,
        subject.obj,
        namespace=subject.namespace,
        now=option.now,
        namespace_labels=subject.labels,
        answers=option.answers,
    )


def compare(options: Sequence[Option], subjects: Sequence[Subject]) -> Comparison:
    """Judge every subject under every option, as ``check`` and ``audit`` do (after mutation)."""
    width = len(options)
    table = Comparison(labels=[o.label for o in options], objects=len(subjects))
    table.governed, table.denied, table.warned, table.unread = [0] * width, [0] * width, [0] * width, [0] * width
    rules: dict[str, list[int]] = defaultdict(lambda: [0] * width)
    per_namespace: dict[str, list[int]] = defaultdict(lambda: [0] * width)
    namespace_rules: dict[str, list[Counter[str]]] = defaultdict(lambda: [Counter() for _ in range(width)])
    judges = _Judges(subjects)
    # per option, per subject: None when admitted (or not governed), else the images denied
    denied_images: list[list[frozenset[str] | None]] = []
    unread_subjects: list[list[bool]] = []  # per option, per subject: denied only for want of an answer
    governed_somewhere: set[str] = set()
    for column, option in enumerate(options):
        column_denials: list[frozenset[str] | None] = []
        column_unread: list[bool] = []
        denied_images.append(column_denials)
        unread_subjects.append(column_unread)
        for subject, judged in zip(subjects, judges.findings(option), strict=True):
            governed, findings = judged.governed, judged.findings
            denying = [f for f in findings if f.mode is Mode.ENFORCE] if governed else []
            column_denials.append(
                frozenset(f.subject.image for f in denying if isinstance(f.subject, ImageUse)) if denying else None
            )
            unread = bool(denying) and all(f.rule in judged.unanswered for f in denying)
            column_unread.append(unread)
            if not governed:
                continue
            governed_somewhere.add(subject.namespace)
            table.governed[column] += 1
            if not denying:
                if any(f.mode is Mode.WARN for f in findings):
                    table.warned[column] += 1
                continue
            table.denied[column] += 1
            table.unread[column] += unread
            per_namespace[subject.namespace][column] += 1
            for finding in denying:
                rules[finding.rule][column] += 1
                namespace_rules[subject.namespace][column][finding.rule] += 1
    table.rules = dict(sorted(rules.items()))
    table.namespaces = dict(sorted(per_namespace.items(), key=lambda item: (-max(item[1]), item[0])))
    table.namespace_rules = {ns: [sorted(counter) for counter in counters] for ns, counters in namespace_rules.items()}
    table.descriptions = [o.description or f"The policy in {o.label}." for o in options]
    table.box_ends = next((o.box_ends for o in options if o.box_ends is not None), None)
    table.tools = len(governed_somewhere)
    table.reference = next((i for i, o in enumerate(options) if o.preset == "closed"), 0)
    table.lets_in = [
        _lets_in(denied_images[table.reference], unread_subjects[table.reference], column, unread, subjects)
        for column, unread in zip(denied_images, unread_subjects, strict=True)
    ]
    return table


def _registry(image: str) -> str:
    try:
        return parse_normalized(image).registry_host
    except ReferenceError:
        return image  # denied as unparsable under every option; named as written


def _lets_in(
    reference: Sequence[frozenset[str] | None],
    reference_unread: Sequence[bool],
    column: Sequence[frozenset[str] | None],
    unread: Sequence[bool],
    subjects: Sequence[Subject],
) -> LetsIn:
    """The objects the reference denies and this option admits, their tools, and the images the
    reference denied there; beside them, those this option denies only for want of a registry
    answer (it would admit them once their images prove themselves) where the reference denies
    them for more than that."""
    tools: set[str] = set()
    images: set[str] = set()
    objects = if_proved = 0
    if_proved_tools: set[str] = set()
    for subject, before, before_unread, now, waiting in zip(
        subjects, reference, reference_unread, column, unread, strict=True
    ):
        if before is None:
            continue
        if waiting and not before_unread:
            if_proved += 1
            if_proved_tools.add(subject.namespace)
        if now is not None:
            continue
        objects += 1
        tools.add(subject.namespace)
        images |= before
    return LetsIn(
        objects,
        tuple(sorted(tools)),
        tuple(sorted(images)),
        tuple(sorted({_registry(i) for i in images})),
        if_proved,
        tuple(sorted(if_proved_tools)),
    )
