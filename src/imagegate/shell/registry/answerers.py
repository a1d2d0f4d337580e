"""The registry's answers to a decision's questions: one answerer per question type.

The core decides; this shell only looks things up. A first decision lists what it asks
(``Decision.questions``: typed values keyed by the parsed reference, core/questions.py);
:func:`answer` gives each to the answerer registered for its type, side by side under one
deadline (``registry.lookupTimeoutSeconds``: the webhook answers, by each rule's ``onError``,
before the API server gives up), and returns :class:`~imagegate.core.records.Answers` keyed
by the same questions, to decide again with (:func:`settle` does both).

The interface, for a new registry-backed rule (a question type in the core, asked by its
image rule; see docs/architecture.md, "Adding an image rule")::

    class MyAnswerer(Answerer[MyQuestion, MyAnswer]):
        question = MyQuestion           # the question type it answers
        after_others = False            # True: answered once the others are (pinning reuses their digests)

        def known(self, asking: Asking, question: MyQuestion) -> MyAnswer | None:
            ...  # optional: the answer from caches alone, with no await (the warm path); None: look it up

        async def answer(self, asking: Asking, question: MyQuestion) -> MyAnswer | None:
            ...  # the answer, within asking.deadline(); None: no answer (asking.notes says why)

    register(MyAnswerer())

An answer states a registry failure itself, as its rule's ``onError`` says (a verdict that
fails, or passes ``unverified``): an answerer raises nothing but bugs. The answers about one
tag must agree on its digest (``Question.judged_digests``); when they do not, the tag moved
while it was looked up, each answer becomes ``Question.when_moved`` (signatures and
attestations fail closed) and the tag is not pinned.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from imagegate.core.attestations import AttestationRule
from imagegate.core.baseimage import verify_image
from imagegate.core.decide import Decision
from imagegate.core.policy import Policy, contact_refusal
from imagegate.core.questions import (
    AttestationsQuestion,
    BaseQuestion,
    DigestQuestion,
    SignaturesQuestion,
    SignedVerdicts,
)
from imagegate.core.records import (
    NO_ANSWERS,
    Answers,
    BaseImageVerdict,
    DenyOrAllow,
    Question,
    SignatureVerdict,
    Webhook,
)
from imagegate.core.reference import Reference
from imagegate.core.signatures import SignatureEvidence, SignatureRule, SignaturesConfig
from imagegate.shell.registry.answering import (
    Answerer,
    Asking,
    Q,
    answered,
    answerer_for,
    close_answerers,
    register,
    unregister,
)
from imagegate.shell.registry.errors import RegistryError, RegistryErrorKind
from imagegate.shell.registry.gate import (
    NOT_A_REGISTRY_FAILURE,
    RegistryGate,
    pin_failure_note,
    tenant_reason,
)

if TYPE_CHECKING:
    from imagegate.shell.registry.signing import SignatureChecker

__all__ = [  # the seam's framework (answering.py) with the built-in answerers and answer()
    "Answerer",
    "Asking",
    "answer",
    "answered",
    "answerer_for",
    "close_answerers",
    "register",
    "settle",
    "unregister",
]

T = TypeVar("T")
R = TypeVar("R")  # a signatures or an attestations rule


async def _answer_all(asking: Asking, questions: Sequence[Question[Any]], found: dict[Question[Any], Any]) -> None:
    """Answer ``questions`` into ``found``: from caches where an answerer can, the rest side by side."""
    pending: list[Question[Any]] = []
    for question in questions:
        known = answerer_for(question).known(asking, question)
        if known is None:
            pending.append(question)
        else:
            found[question] = known
    if pending:
        results = await asyncio.gather(*(answerer_for(q).answer(asking, q) for q in pending))
        for question, result in zip(pending, results, strict=True):
            if result is not None:
                found[question] = result


async def answer(
    gate: RegistryGate, policy: Policy, decision: Decision, *, webhook: Webhook, earlier: Answers = NO_ANSWERS
) -> Answers:
    """The answers to what ``decision`` asks when deciding for ``webhook`` (with ``earlier``'s,
    which are not asked again).

    Base images, signatures, attestations (every answerer but the ``after_others`` ones) are
    answered side by side; then digests to pin: an image whose base, signatures or attestations
    were verified is pinned to the digest that was verified (all come from one single-flight
    resolution of the tag), never to what its tag points at a moment later; an image that failed
    its base check, or whose tag moved, is not pinned.
    """
    ends = asyncio.get_running_loop().time() + policy.registry.lookup_timeout
    asked = [q for q in decision.questions if webhook in q.webhooks and q not in earlier.found]
    found: dict[Question[Any], Any] = dict(earlier.found)
    asking = Asking(gate, policy, decision, ends, webhook=webhook)
    await _answer_all(asking, [q for q in asked if not answerer_for(q).after_others], found)
    moved = _moved_tags(found)
    for question, given in list(found.items()):
        seen = moved.get(question.ref)
        if seen is not None:
            # Every check resolves a tag through one cache and single flight, so they agree unless
            # the tag moved between two of them: then no answer vouches for what would run.
            detail = f"the tag moved while it was verified (to {', '.join(d[:19] for d in seen)}); try again"
            found[question] = question.when_moved(given, detail)
    asking.earlier = Answers(dict(found))
    asking.moved = frozenset(moved)
    await _answer_all(asking, [q for q in asked if answerer_for(q).after_others], found)
    return Answers(found, tuple(asking.notes))


def _moved_tags(found: dict[Question[Any], Any]) -> dict[Reference, list[str]]:
    """The references whose answers judged more than one digest, with those digests (sorted)."""
    seen: dict[Reference, set[str]] = {}
    for question, given in found.items():
        digests = question.judged_digests(given)
        if digests:
            seen.setdefault(question.ref, set()).update(digests)
    return {ref: sorted(digests) for ref, digests in seen.items() if len(digests) > 1}


async def settle(
    gate: RegistryGate,
    policy: Policy,
    evaluate: Callable[[Answers], T],
    decision_of: Callable[[T], Decision | None],
    *,
    webhook: Webhook,
    first: T | None = None,
) -> T:
    """Evaluate, then add the registry's answers only where the decision asks for them.

    The answer-free decision asks everything the registry is asked (for the mutating webhook and
    ``check``, the digests of the images that are, or will be once their base check passes,
    allowed too), so ``evaluate`` runs once more at most, with all of it. ``first`` is the
    answer-free result when the caller already has it.
    """
    result = evaluate(NO_ANSWERS) if first is None else first
    decision = decision_of(result)
    if decision is None or not decision.asks(webhook):
        return result
    return evaluate(await answer(gate, policy, decision, webhook=webhook))


# --- the built-in answerers ------------------------------------------------------------------


class BaseAnswerer(Answerer[BaseQuestion, BaseImageVerdict]):
    """Is the image built on a trusted base (the base index, refreshed once per policy)?"""

    question = BaseQuestion

    async def answer(self, asking: Asking, question: BaseQuestion) -> BaseImageVerdict:
        gate, policy, ref = asking.gate, asking.policy, question.ref
        try:
            if not policy.contact_scope().allows(ref):  # checked before the bases are refreshed
                raise RegistryError(RegistryErrorKind.NOT_CONTACTED, contact_refusal(ref))
            async with asking.deadline():
                await gate.refresh_bases(policy)
                image = await gate.resolve(policy, ref)
        except RegistryError as exc:
            reason = tenant_reason(str(ref), exc)
            if exc.kind in NOT_A_REGISTRY_FAILURE:  # an answer that is refused, or no question asked
                return BaseImageVerdict(False, reason)
            if policy.registry.on_error is DenyOrAllow.ALLOW:
                return BaseImageVerdict(
                    True, f"not verified: {reason}; allowed by registry.onError: allow", unverified=True
                )
            return BaseImageVerdict(False, f"{reason}; denied by registry.onError: deny")
        return verify_image(image, gate.bases.versions)


class _SignedAnswerer(Answerer[Q, SignedVerdicts], Generic[Q, R]):
    """Signatures or attestations (``what``): a verdict per rule of the question, from the
    checker's verified evidence. One piece for both kinds, parametrised by these five."""

    what: ClassVar[str]  # "signatures": in messages

    def checker(self, gate: RegistryGate) -> SignatureChecker:
        raise NotImplementedError  # pragma: no cover

    def config(self, policy: Policy) -> SignaturesConfig:
        """The section whose keys and trusted root the rules' signers use."""
        raise NotImplementedError  # pragma: no cover

    def rules(self, question: Q) -> tuple[R, ...]:
        raise NotImplementedError  # pragma: no cover

    def signers(self, rule: R) -> SignatureRule:
        """The rule's signer part: its keys, identities, count, mode and ``onError``."""
        raise NotImplementedError  # pragma: no cover

    def judge(self, rules: Sequence[R], digest: str, evidence: Sequence[SignatureEvidence]) -> SignedVerdicts:
        raise NotImplementedError  # pragma: no cover

    async def answer(self, asking: Asking, question: Q) -> SignedVerdicts:
        """The image's verdict under each of the question's rules.

        A rule whose key (or trusted root) cannot be used fails closed, whatever ``onError`` says:
        that is our configuration, not the image; the other rules are judged as usual, and follow
        their ``onError`` when the registry fails.
        """
        from imagegate.shell.registry.signing import SigningError  # noqa: PLC0415 - sigstore only when a rule needs it

        gate, policy, ref, what = asking.gate, asking.policy, question.ref, self.what
        rules = self.rules(question)
        checker, config = self.checker(gate), self.config(policy)
        trust = checker.trust(config)
        found: dict[str, SignatureVerdict] = {}
        for rule in rules:
            signer = self.signers(rule)
            why = trust.unusable(signer)
            if why is not None:
                found[signer.name] = SignatureVerdict(
                    False, f"{what} not verified ({signer.name}): {why}", None, signer.mode
                )
        usable = [rule for rule in rules if self.signers(rule).name not in found]
        if usable:
            try:
                async with asking.deadline():
                    digest = await gate.digest(policy, ref)
                    evidence = await checker.evidence(gate.client(policy.registry), config, ref, digest)
                judged = self.judge(usable, digest, evidence)
            except SigningError as exc:  # pragma: no cover - unusable trust is answered above
                judged = tuple(
                    SignatureVerdict(False, f"{what} not verified: {exc}", None, self.signers(r).mode) for r in usable
                )
            except RegistryError as exc:
                judged = tuple(_registry_failure(str(ref), exc, what, self.signers(rule)) for rule in usable)
            found.update(zip((self.signers(rule).name for rule in usable), judged, strict=True))
        return tuple(found[self.signers(rule).name] for rule in rules)


class SignaturesAnswerer(_SignedAnswerer[SignaturesQuestion, SignatureRule]):
    question = SignaturesQuestion
    what = "signatures"

    def checker(self, gate: RegistryGate) -> SignatureChecker:
        return gate.signatures

    def config(self, policy: Policy) -> SignaturesConfig:
        return policy.signatures

    def rules(self, question: SignaturesQuestion) -> tuple[SignatureRule, ...]:
        return question.rules

    def signers(self, rule: SignatureRule) -> SignatureRule:
        return rule

    def judge(
        self, rules: Sequence[SignatureRule], digest: str, evidence: Sequence[SignatureEvidence]
    ) -> SignedVerdicts:
        from imagegate.shell.registry.signing import judge_image  # noqa: PLC0415

        return judge_image(rules, digest, evidence)

    def known(self, asking: Asking, question: SignaturesQuestion) -> SignedVerdicts | None:
        """The verdicts :meth:`answer` would give from its caches alone (the tag's digest and the
        evidence for it), or None when something must be looked up (or a rule cannot be judged).

        A decision on images already verified then needs no task, no await: what the warm cost is.
        """
        gate, policy, ref = asking.gate, asking.policy, question.ref
        client = gate.known_client(policy.registry)
        signatures = gate.signatures_if_loaded
        if signatures is None or client is None:
            return None
        if ref.digest is None and not policy.contact_scope().allows(ref):
            return None
        digest = client.known_digest(ref)
        if digest is None:
            return None
        return signatures.known_verdicts(policy.signatures, ref, digest, question.rules)


class AttestationsAnswerer(_SignedAnswerer[AttestationsQuestion, AttestationRule]):
    question = AttestationsQuestion
    what = "attestations"

    def checker(self, gate: RegistryGate) -> SignatureChecker:
        return gate.attestations

    def config(self, policy: Policy) -> SignaturesConfig:
        return policy.attestations.signers

    def rules(self, question: AttestationsQuestion) -> tuple[AttestationRule, ...]:
        return question.rules

    def signers(self, rule: AttestationRule) -> SignatureRule:
        return rule.signers

    def judge(
        self, rules: Sequence[AttestationRule], digest: str, evidence: Sequence[SignatureEvidence]
    ) -> SignedVerdicts:
        from imagegate.shell.registry.attestations import judge_image  # noqa: PLC0415

        return judge_image(rules, digest, evidence)


class DigestAnswerer(Answerer[DigestQuestion, str]):
    """The digest to pin a tag to: the one another answer verified, else the tag's now. Not for
    an image whose base check failed or whose tag moved; a failure is a note (it runs by tag)."""

    question = DigestQuestion
    after_others = True

    async def answer(self, asking: Asking, question: DigestQuestion) -> str | None:
        ref = question.ref
        if ref in asking.moved:
            return None
        base = BaseQuestion(ref)
        if base in asking.decision.questions:  # asked beside its base check: pinned only if that passed
            verdict = asking.earlier.get(base)
            if verdict is None or not verdict.ok:
                return None
        verified = asking.verified_digest(ref)
        if verified is not None:
            return verified
        gate = asking.gate
        try:
            async with asking.deadline():
                return await gate.digest(asking.policy, ref)
        except RegistryError as exc:
            if gate.pin_failures is not None:
                gate.pin_failures[str(ref)] = exc
            asking.notes.append(pin_failure_note(str(ref), exc))
            return None


def _registry_failure(reference: str, exc: RegistryError, what: str, rule: SignatureRule) -> SignatureVerdict:
    """A signatures (attestations) rule's verdict when the registry could not be asked: its ``onError``."""
    reason = tenant_reason(reference, exc)
    if rule.on_error is DenyOrAllow.ALLOW and exc.kind not in NOT_A_REGISTRY_FAILURE:
        return SignatureVerdict(
            True, f"{what} not verified: {reason}; allowed by {rule.name} onError: allow", None, rule.mode, True
        )
    return SignatureVerdict(
        False, f"{what} not verified: {reason}; denied by {rule.name} onError: {rule.on_error}", None, rule.mode
    )


def _register_built_in(answerers: Iterable[Answerer[Any, Any]]) -> None:
    for one in answerers:
        register(one)


_register_built_in((BaseAnswerer(), SignaturesAnswerer(), AttestationsAnswerer(), DigestAnswerer()))

# The content rules' answerer lives in its own module (its reader and parsers load on first use) and
# registers itself: imported here, last, so that whoever answers a decision has every built-in
# answerer (audit --compare asked a ContentQuestion with none registered: an internal error). It
# imports the framework (answering.py), not this module: no cycle.
import imagegate.shell.registry.content_answerer  # noqa: E402, F401
