"""The ``content`` rules at admission: one registered image rule (a piece) and its question. Pure.

For each image use admission let in, the piece asks the registry shell one
:class:`ContentQuestion` (the reference and the content rules covering it: those whose
``images`` match, and, for an image a grant admitted, the ``grants: true`` ones unless the
grant's ``proof`` is ``layers``); the answerer (shell/registry/content_answerer.py) reads the
image's files and judges the rules, or answers ``pending`` while a cold read goes on in the
background. Each rule that fails is a finding in its mode; one its ``onError: allow`` let pass
is said to the tenant as unverified. A grant's ``proof: either`` forgives its grant rules when
the image is proved built on a trusted base (the answer to the base question).
"""

from __future__ import annotations

from typing import ClassVar

from imagegate.core.contents.policy import (
    ContentAnswer,
    ContentOutcome,
    ContentRule,
    ContentVerdict,
    Proof,
    outcomes,
)
from imagegate.core.imagerules import JudgedImage, Judging, register_image_rule
from imagegate.core.policy import Policy
from imagegate.core.questions import BaseQuestion, verdict_of
from imagegate.core.records import Finding, Mode, Question, Rule, Verdict

__all__ = ["CONTENT_FAILED", "CONTENT_UNVERIFIED", "ContentQuestion", "ContentRules"]

CONTENT_FAILED = "content-mismatch"  # a rule judged and failed: what was found
CONTENT_UNVERIFIED = "content-unverified"  # not judged (being read, unreadable) and its onError denies

_WEAKER = {Mode.ENFORCE: 0, Mode.WARN: 1, Mode.AUDIT: 2}


class ContentQuestion(Question[ContentAnswer], frozen=True):
    """Do the image's files satisfy each of ``rules``?"""

    unanswered: ClassVar[str | None] = CONTENT_UNVERIFIED
    check: ClassVar[str] = "content"
    rules: tuple[ContentRule, ...]

    def judged_digests(self, answer: ContentAnswer) -> tuple[str, ...]:
        return () if answer.digest is None else (answer.digest,)

    def when_moved(self, answer: ContentAnswer, detail: str) -> ContentAnswer:
        # the files judged may not be the ones that would run: every rule fails, said so
        return ContentAnswer(tuple(ContentVerdict(r.name, False, (detail,), r.mode) for r in self.rules))

    def unverified(self, answer: ContentAnswer) -> tuple[str, ...]:
        return tuple(
            f"{o.detail} (allowed by its onError: allow)" for o in outcomes(self.rules, answer) if o.unverified
        )

    def verdicts(self, answer: ContentAnswer) -> tuple[Verdict, ...]:
        return tuple(verdict_of(o.ok, o.unverified) for o in outcomes(self.rules, answer))


class ContentRules:
    """The piece: every content rule covering an admitted image, judged from its files."""

    name = "content"

    def active(self, policy: Policy, namespace: str) -> bool:
        return bool(policy.content.rules)

    def judge(self, judging: Judging, image: JudgedImage) -> None:
        ref, finding = image.image.ref, image.verdict.finding
        if ref is None or (finding is not None and finding.rule != Rule.BASE_IMAGE_UNVERIFIED):
            return  # denied already; an image waiting for its base check is read beside it (one registry round)
        grant = image.grant
        proof = grant.proof if grant is not None else None
        rules = judging.policy.content.rules_for(ref, granted=grant is not None and proof is not Proof.LAYERS)
        if not rules:
            return
        found = outcomes(rules, judging.ask(ContentQuestion(ref, rules)))
        if proof is Proof.EITHER and any(not o.ok for o in found if o.rule.grants):
            base = judging.ask(BaseQuestion(ref))
            if base is not None and base.ok and not base.unverified:  # proved by layers: the grant rules are moot
                found = [o for o in found if not o.rule.grants or o.rule.images.first_match(ref) is not None]
        for outcome in found:
            if not outcome.ok:
                judging.add(self, self._finding(image, outcome))

    def _finding(self, image: JudgedImage, outcome: ContentOutcome) -> Finding:
        rule = outcome.rule
        # the weaker of the rule's mode and the image's (a grant in warn mode warns about its images)
        mode = max(rule.mode, image.mode, key=_WEAKER.__getitem__)
        reason = f"fails the content rule {outcome.detail}"
        return Finding(image.use, CONTENT_FAILED if outcome.judged else CONTENT_UNVERIFIED, reason, mode)


register_image_rule(ContentRules())
