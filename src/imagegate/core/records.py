"""The records the core makes for every admission: plain data, no logic beyond wording.

msgspec Structs, not dataclasses: one is made for every image of every admission, and
Structs are 8x cheaper to build. They live apart from the modules that make them because
those modules are compiled with mypyc for production images (``setup.py``), and mypyc drops
the keywords of a class statement (``frozen=True`` would silently be lost).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Any, ClassVar, Final, Generic, TypeVar

import msgspec

from imagegate.core.reference import Reference

__all__ = [
    "MAX_FINDING_LENGTH",
    "MAX_LISTED_FINDINGS",
    "MAX_NAME_LENGTH",
    "NO_ANSWERS",
    "SERVED_WEBHOOKS",
    "Allowance",
    "Answers",
    "BaseImageVerdict",
    "CheckResult",
    "Decision",
    "DenyOrAllow",
    "Finding",
    "ImageUse",
    "ImageVerdict",
    "Mode",
    "ObjectSubject",
    "Outcome",
    "PodRules",
    "PodSubject",
    "Question",
    "Rule",
    "SignatureVerdict",
    "Subject",
    "Webhook",
    "bounded",
    "outcome_of",
]

# What one answer or log line may carry of what a tenant wrote (names, images) and of findings:
# a pod of 20,000 bad containers once made a 10.6 MB denial message.
MAX_LISTED_FINDINGS = 20  # in a denial message; the rest are counted ("and 19,990 more")
MAX_FINDING_LENGTH = 512  # one finding's sentence in it
MAX_NAME_LENGTH = 253  # a name as shown (the API's longest valid name; /mutate sees names before validation)


def bounded(text: str, limit: int = MAX_NAME_LENGTH) -> str:
    """``text``, cut to ``limit`` characters (the cut marked with "...")."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Mode(StrEnum):
    """What a violation does: deny it, allow it with a warning, or only record it."""

    ENFORCE = "enforce"
    WARN = "warn"
    AUDIT = "audit"


class Verdict(StrEnum):
    """One registry check's verdict in a decision, as the verdict metric counts it."""

    PASS = "pass"
    FAIL = "fail"
    UNVERIFIED = "unverified"  # passed by the rule's onError: allow, not by the check


class Webhook(StrEnum):
    """Which webhook a decision answers for, and so how it is judged: the one spelling of it.

    ``/mutate`` judges the object as its patches will leave it and pins tags; ``/validate`` the
    object as sent (it has been through ``/mutate``, or it is judged bare), and pins nothing.
    ``check`` (``check`` and ``audit``, never served) judges as admission ends: mutated, pinned,
    then validated. Its value is the path's last segment and the metrics' ``endpoint`` label.
    """

    VALIDATE = "validate"
    MUTATE = "mutate"
    CHECK = "check"

    @property
    def mutates(self) -> bool:
        """Whether the object is judged as the mutating webhook leaves it (and tags are pinned)."""
        return self is not _VALIDATE


SERVED_WEBHOOKS = (Webhook.VALIDATE, Webhook.MUTATE)  # the two the server answers at /validate and /mutate


class Rule(StrEnum):
    """The rules an image or object finding can break (stable: metrics labels, JSON and logs say
    their values). A pod-security or tool-profile finding's rule is ``<PodRules>:<check>``."""

    INVALID_REFERENCE = "invalid-reference"
    BLOCKED_REGISTRY = "blocked-registry"
    UNTRUSTED_REGISTRY = "untrusted-registry"
    OUTSIDE_GRANT = "outside-grant"
    BASE_IMAGE_MISMATCH = "base-image-mismatch"
    BASE_IMAGE_UNVERIFIED = "base-image-unverified"
    MALFORMED_OBJECT = "malformed-object"
    OBJECT_TOO_LARGE = "object-too-large"
    DISALLOWED_TAG = "disallowed-tag"
    MISSING_TAG = "missing-tag"
    MISSING_DIGEST = "missing-digest"
    SIGNATURE_MISMATCH = "signature-mismatch"
    SIGNATURE_UNVERIFIED = "signature-unverified"
    ATTESTATION_MISMATCH = "attestation-mismatch"
    ATTESTATION_UNVERIFIED = "attestation-unverified"


class DenyOrAllow(StrEnum):
    """A setting that denies or allows: ``onError`` (what a rule does when its registry lookup
    cannot finish) and ``byoc.default`` (what an image no entry admits gets)."""

    DENY = "deny"
    ALLOW = "allow"


class Outcome(StrEnum):
    """What became of an object, an image or a finding (worst first)."""

    DENIED = "denied"
    WARNED = "warned"
    AUDITED = "audited"
    ALLOWED = "allowed"


_OUTCOME_OF_MODE: Mapping[Mode, Outcome] = {
    Mode.ENFORCE: Outcome.DENIED,
    Mode.WARN: Outcome.WARNED,
    Mode.AUDIT: Outcome.AUDITED,
}
_OUTCOME_RANK: Mapping[Outcome, int] = {outcome: rank for rank, outcome in enumerate(Outcome)}

# The members read on every review, bound once. On Python 3.11 ``Mode.ENFORCE`` is not a plain
# class attribute read: EnumType defines ``__getattr__``, so each read goes through the slow
# attribute hook (about 850 instructions, a dozen reads per review: 2% of the serving path's
# CPU, bench/server_callgrind.py). Final: compiled, each is a static. Modules on the per-review
# path bind the members they read the same way.
_ENFORCE: Final = Mode.ENFORCE
_WARN: Final = Mode.WARN
_AUDIT: Final = Mode.AUDIT
_ALLOWED: Final = Outcome.ALLOWED
_VALIDATE: Final = Webhook.VALIDATE


def outcome_of(modes: Iterable[Mode]) -> Outcome:
    """The outcome of findings in ``modes``: the worst one's; none at all is allowed.

    The one mapping from mode to outcome: admission's audit annotations, the webhook's
    metrics, ``check`` and ``audit`` all read it from here.
    """
    worst = _ALLOWED
    for mode in modes:
        found = _OUTCOME_OF_MODE[mode]
        if _OUTCOME_RANK[found] < _OUTCOME_RANK[worst]:
            worst = found
    return worst


class Allowance(StrEnum):
    """How an image was let in: what ``ImageVerdict.allowed_by`` says in words."""

    TRUSTED = "trusted"  # a trusted entry (the namespace's own, such as its Harbor project, too)
    GRANT = "grant"  # the namespace's BYOC grant
    BYOC_DEFAULT = "byoc-default"  # byoc.default: allow
    UNCHANGED = "unchanged"  # an UPDATE left it where it was: not judged again


class PodRules(StrEnum):
    """The two rule sets judged on a pod spec; the prefix of their findings' rules."""

    POD_SECURITY = "pod-security"
    TOOL_PROFILE = "tool-profile"


class CheckResult(msgspec.Struct, frozen=True):
    """A failed check: PSA's forbidden reason and detail."""

    check: str
    reason: str
    detail: str

    @property
    def message(self) -> str:
        return f"{self.reason} ({self.detail})" if self.detail else self.reason


class ImageUse(msgspec.Struct, frozen=True):
    """One image named by an object. ``pointer`` is the JSON pointer of the image string."""

    kind: str  # container | initContainer | ephemeralContainer | imageVolume
    name: str
    image: str
    pointer: str

    @property
    def label(self) -> str:
        """``initContainer "setup"``: how a message names the place."""
        word = "volume" if self.kind == "imageVolume" else self.kind
        return f'{word} "{self.name}"'


# A finding's subject: an image use, a pod spec, or the whole object. Each says ``kind``,
# ``name``, ``image`` and ``pointer``: the flat form logs, annotations and JSON output print.


class PodSubject(msgspec.Struct, frozen=True):
    """A pod spec (a Pod's or a template's), judged by one check of one rule set."""

    rules: PodRules
    check: str
    pointer: str  # the JSON pointer of the pod spec

    kind: ClassVar[str] = "pod"
    image: ClassVar[str] = ""
    label: ClassVar[str] = "pod security"

    @property
    def name(self) -> str:
        return self.check


class ObjectSubject(msgspec.Struct, frozen=True):
    """The whole object, when it is malformed: ``pointer`` is where."""

    object_kind: str
    pointer: str

    kind: ClassVar[str] = "object"
    image: ClassVar[str] = ""

    @property
    def name(self) -> str:
        return self.object_kind

    @property
    def label(self) -> str:
        return f'object "{self.object_kind}"'


Subject = ImageUse | PodSubject | ObjectSubject


class BaseImageVerdict(msgspec.Struct, frozen=True):
    """What the registry shell found out about an image's base (see the registry module)."""

    ok: bool
    detail: str
    digest: str | None = None  # the image (index) digest judged: pinning pins exactly this one
    # passed without being verified (the registry could not be asked; onError: allow): the
    # tenant is told so in a warning, never silently admitted
    unverified: bool = False


class SignatureVerdict(msgspec.Struct, frozen=True):
    """Whether an image's signatures satisfy one ``signatures`` rule (see core/signatures.py), or
    its attestations one ``attestations`` rule (core/attestations.py)."""

    ok: bool
    detail: str
    digest: str | None = None  # the image digest whose signatures (attestations) were judged
    mode: Mode = Mode.ENFORCE  # the rule's: what a failure does
    unverified: bool = False  # passed by the rule's onError: allow, not by a signature: said in a warning


A = TypeVar("A")  # the type of a question's answer


class Question(msgspec.Struct, Generic[A], frozen=True):
    """One thing a decision asks the registry about an image, answered by a value of type ``A``.

    A question is a hashable value (its kind and its fields: the parsed reference and whatever
    the rule needs asked, such as the rules themselves), so a decision lists what it asks, the
    registry shell answers each by its kind (one answerer per question type), and the next
    decision finds its answer under the same value. The kinds live beside the rules that ask
    them (core/questions.py); a new kind needs no change here.
    """

    ref: Reference

    # The webhooks whose decisions ask it: pinning's digests are asked only where tags are pinned.
    webhooks: ClassVar[frozenset[Webhook]] = frozenset(Webhook)
    # The rule of the finding its rules make when it has no answer (offline, or the lookup failed
    # and onError denies): ``audit --compare`` tells those denials from the ones an answer made.
    unanswered: ClassVar[str | None] = None
    # The ``check`` label its answers' verdicts are counted under (imagegate_verdicts_total);
    # empty for a question whose answer is no verdict (a digest).
    check: ClassVar[str] = ""

    def judged_digests(self, answer: A) -> tuple[str, ...]:
        """The image digests ``answer`` judged: the answers about one tag must agree on one, else
        the tag moved while it was looked up (:meth:`when_moved`), and it is not pinned."""
        return ()

    def when_moved(self, answer: A, detail: str) -> A:
        """``answer`` when the tag moved between two answers (``detail`` says to which digests):
        what it vouches for may not be what runs. As it was, unless the rule fails closed."""
        return answer

    def unverified(self, answer: A) -> tuple[str, ...]:
        """What ``answer`` let pass without verifying it (the registry could not be asked and the
        rule's ``onError`` allowed it): said to the tenant, so such an admission is never silent."""
        return ()

    def verdicts(self, answer: A) -> tuple[Verdict, ...]:
        """The verdict of each check ``answer`` holds (one per rule asked), for the verdict metric."""
        return ()


class Answers(msgspec.Struct, frozen=True):
    """The registry's answers to a decision's questions (each keyed by its question, so each is
    found by the question a rule asks again), and what to tell the user about lookups that
    failed (the registry shell makes it)."""

    found: Mapping[Question[Any], Any] = {}
    notes: tuple[str, ...] = ()

    def get(self, question: Question[A]) -> A | None:
        """The answer to ``question``, or None when it was not asked or could not be answered."""
        found: A | None = self.found.get(question)
        return found

    def of(self, kind: type[Question[A]]) -> dict[str, A]:
        """The answers to the questions of type ``kind``, by normalized reference (reports, tests)."""
        return {str(q.ref): found for q, found in self.found.items() if type(q) is kind}


NO_ANSWERS = Answers()  # a decision without the registry (offline, or before the lookups)
Q = TypeVar("Q", bound=Question[Any])  # a question of some type


class Finding(msgspec.Struct, frozen=True):
    """One broken rule for one subject: an image use, a pod spec or the object."""

    subject: Subject
    rule: str
    reason: str
    mode: Mode

    @property
    def message(self) -> str:
        """The whole sentence: which container, which image, what is wrong."""
        subject = self.subject
        if isinstance(subject, ImageUse):
            return f"{subject.label} image {subject.image!r} {self.reason}"
        return self.reason

    @property
    def outcome(self) -> Outcome:
        return outcome_of((self.mode,))


class ImageVerdict(msgspec.Struct, frozen=True):
    """How one image use was judged: allowed (``allowance``, and ``allowed_by`` in words) or a ``finding``."""

    use: ImageUse
    reference: str | None
    allowed_by: str | None = None
    finding: Finding | None = None
    allowance: Allowance | None = None  # how it was allowed; None when it was not


class Decision(msgspec.Struct, frozen=True):
    """The answer for one object."""

    kind: str
    name: str
    namespace: str
    governed: bool
    verdicts: tuple[ImageVerdict, ...] = ()
    findings: tuple[Finding, ...] = ()
    patches: tuple[Mapping[str, Any], ...] = ()
    questions: tuple[Question[Any], ...] = ()  # what the registry is asked (in image order)
    pins_needed: tuple[str, ...] = ()  # the allowed images named by a tag alone: pinning pins them
    notices: tuple[str, ...] = ()  # said to the user whatever the decision (a grant about to end)

    def asked(self, kind: type[Q]) -> tuple[Q, ...]:
        """The questions of type ``kind`` this decision asks."""
        return tuple(q for q in self.questions if isinstance(q, kind))

    def asks(self, webhook: Webhook) -> bool:
        """Whether deciding for ``webhook`` asks the registry anything (the direct path when not)."""
        return any(webhook in question.webhooks for question in self.questions) if self.questions else False

    def _in_mode(self, mode: Mode) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.mode is mode) if self.findings else ()

    @property
    def violations(self) -> tuple[Finding, ...]:
        return self._in_mode(_ENFORCE)

    @property
    def warnings(self) -> tuple[Finding, ...]:
        return self._in_mode(_WARN)

    @property
    def audits(self) -> tuple[Finding, ...]:
        return self._in_mode(_AUDIT)

    @property
    def allowed(self) -> bool:
        return not self.findings or not any(f.mode is _ENFORCE for f in self.findings)

    @property
    def outcome(self) -> Outcome:
        """Denied, else warned, else audited, else allowed (not governed: allowed too)."""
        return outcome_of(f.mode for f in self.findings) if self.findings else _ALLOWED

    @property
    def subject(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{bounded(self.kind)} {bounded(where)}{bounded(self.name) or '(unnamed)'}"

    def message(self) -> str:
        """One message naming every violation, as the API server shows it to the user: the first
        :data:`MAX_LISTED_FINDINGS` in full, then how many more (the count is always whole)."""
        if self.allowed:
            return ""
        violations = self.violations
        count = len(violations)
        noun = "violation" if count == 1 else "violations"
        listed = "; ".join(bounded(f.message, MAX_FINDING_LENGTH) for f in violations[:MAX_LISTED_FINDINGS])
        if count > MAX_LISTED_FINDINGS:
            listed += f"; and {count - MAX_LISTED_FINDINGS:,} more"
        return f"imagegate denied {self.subject}: {count:,} {noun}: {listed}"
