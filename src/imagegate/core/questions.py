"""What the image rules ask the registry: one question type per kind of lookup.

Each is a :class:`~imagegate.core.records.Question` (a frozen, hashable value keyed by the
parsed reference), answered by the registry shell's answerer for its type
(shell/registry/answerers.py) and found again in :class:`~imagegate.core.records.Answers`
by the same value. Records, not logic: uncompiled msgspec Structs, as records.py says why.
"""

from __future__ import annotations

from typing import ClassVar

from imagegate.core.attestations import AttestationRule
from imagegate.core.records import BaseImageVerdict, Question, Rule, SignatureVerdict, Verdict, Webhook
from imagegate.core.signatures import SignatureRule

__all__ = [
    "AttestationsQuestion",
    "BaseQuestion",
    "DigestQuestion",
    "SignaturesQuestion",
    "SignedVerdicts",
    "verdict_of",
]

SignedVerdicts = tuple[SignatureVerdict, ...]  # one verdict per rule asked, in the rules' order


def verdict_of(ok: bool, unverified: bool) -> Verdict:
    """A check's verdict: passed by the check, passed by its ``onError: allow``, or failed."""
    if not ok:
        return Verdict.FAIL
    return Verdict.UNVERIFIED if unverified else Verdict.PASS


class BaseQuestion(Question[BaseImageVerdict], frozen=True):
    """Is the image built on a trusted base image (``baseImages``)?"""

    unanswered: ClassVar[str | None] = Rule.BASE_IMAGE_UNVERIFIED
    check: ClassVar[str] = "base"

    def judged_digests(self, answer: BaseImageVerdict) -> tuple[str, ...]:
        return () if answer.digest is None else (answer.digest,)

    def unverified(self, answer: BaseImageVerdict) -> tuple[str, ...]:
        return (answer.detail,) if answer.unverified else ()

    def verdicts(self, answer: BaseImageVerdict) -> tuple[Verdict, ...]:
        return (verdict_of(answer.ok, answer.unverified),)


class _SignedQuestion(Question[SignedVerdicts], frozen=True):
    """Signatures or attestations: a verdict per rule, failed closed when the tag moved."""

    def judged_digests(self, answer: SignedVerdicts) -> tuple[str, ...]:
        return tuple(v.digest for v in answer if v.digest is not None)

    def when_moved(self, answer: SignedVerdicts, detail: str) -> SignedVerdicts:
        # Neither digest's signatures vouch for what would run: fail closed, said so.
        return tuple(SignatureVerdict(False, detail, None, v.mode) for v in answer)

    def unverified(self, answer: SignedVerdicts) -> tuple[str, ...]:
        return tuple(v.detail for v in answer if v.ok and v.unverified)

    def verdicts(self, answer: SignedVerdicts) -> tuple[Verdict, ...]:
        return tuple(verdict_of(v.ok, v.unverified) for v in answer)


class SignaturesQuestion(_SignedQuestion, frozen=True):
    """Do the image's signatures satisfy each of ``rules`` (the ``signatures`` rules whose images
    match it, then the ``signedBy`` rule of the grant that admitted it)?"""

    unanswered: ClassVar[str | None] = Rule.SIGNATURE_UNVERIFIED
    check: ClassVar[str] = "signature"
    rules: tuple[SignatureRule, ...]


class AttestationsQuestion(_SignedQuestion, frozen=True):
    """Do the image's attestations satisfy each of ``rules`` (the ``attestations`` rules covering it)?"""

    unanswered: ClassVar[str | None] = Rule.ATTESTATION_UNVERIFIED
    check: ClassVar[str] = "attestation"
    rules: tuple[AttestationRule, ...]


class DigestQuestion(Question[str], frozen=True):
    """Which digest does the tag point at (to pin it to)? Asked only where tags are pinned, after
    the other questions: a digest another answer verified is the one pinned, an image whose base
    check failed or whose tag moved is not pinned."""

    webhooks: ClassVar[frozenset[Webhook]] = frozenset({Webhook.MUTATE, Webhook.CHECK})
