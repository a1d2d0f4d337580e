"""Image rules as registered pieces: what each asks the registry about an image, and how it judges.

:func:`imagegate.core.decide.decide` judges every image use the object names: first by the
:class:`Admission` piece (trusted, granted, blocked, BYOC default; the base image), whose verdict
every other piece reads, then by each registered :class:`ImageRule` the policy makes active,
in order: :class:`Tags`, :class:`SignedArtifacts` (signatures and attestations, one piece
parametrised by kind), :class:`Pinning`. A piece states what it needs from the registry as a
typed question (core/questions.py) through :meth:`Judging.ask`, which records the question and
gives its answer when the registry shell has answered it (shell/registry/answerers.py: one
answerer per question type); without the answer a piece judges as it must offline (an
"unverified" finding in its rule's mode, or nothing to pin).

The interface of a piece (a Protocol: a test or a new module registers its own)::

    class MyRule:
        name = "my-rule"                                  # unique; its findings are grouped by it

        def active(self, policy: Policy, namespace: str) -> bool:
            ...  # what the policy says for the namespace alone: asked once per policy and namespace
                 # (remembered: active_rules); False costs the rule nothing more (the direct path)

        def judge(self, judging: Judging, image: JudgedImage) -> None:
            ...  # per image use admission judged (never one an UPDATE left unchanged):
                 # answer = judging.ask(MyQuestion(image.image.ref, ...))  -> the answer, or None
                 # judging.add(self, Finding(image.use, "my-rule", "...", mode))
                 # judging.patches.append({...})          # a JSON patch (the mutating webhook sends it)

    register_image_rule(MyRule())

Adding a registry-backed rule is then: a question type (a ``Question[Answer]`` subclass with
the fields the answerer needs), a piece that asks it, an answerer registered for it, and the
policy section that configures it; no edit to ``Decision``, ``Answers``, ``decide()`` or the
gate (docs/architecture.md, "Adding an image rule"). A rule's id is a :class:`Rule` member
when it is one of imagegate's own (stable in metrics, JSON and logs), or its own string.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any, Final, Protocol

from imagegate.core.attestations import AttestationRule
from imagegate.core.policy import Grant, ImageClass, Policy, contact_refusal
from imagegate.core.questions import AttestationsQuestion, BaseQuestion, DigestQuestion, SignaturesQuestion
from imagegate.core.records import (
    Allowance,
    Answers,
    DenyOrAllow,
    Finding,
    ImageUse,
    ImageVerdict,
    Mode,
    Question,
    Rule,
    SignatureVerdict,
)
from imagegate.core.reference import Reference
from imagegate.core.signatures import SignatureRule

__all__ = [
    "IMAGE_RULES",
    "Admission",
    "ImageRule",
    "JudgedImage",
    "Judging",
    "Pinning",
    "SignedArtifacts",
    "SignedKind",
    "Tags",
    "active_rules",
    "register_image_rule",
    "unregister_image_rule",
]


class JudgedImage:
    """One image use as the admission piece judged it: what the other pieces read."""

    __slots__ = ("grant", "image", "mode", "use", "verdict")

    def __init__(
        self, use: ImageUse, image: ImageClass, verdict: ImageVerdict, mode: Mode, grant: Grant | None
    ) -> None:
        self.use = use
        self.image = image  # the name as the policy classifies it (image.ref: the parsed reference)
        self.verdict = verdict
        self.mode = mode  # the mode of the other findings about this image (its grant's, if one admits it)
        self.grant = grant  # the grant that admitted it, if one did


class Judging:
    """One decision's judging: the policy, the namespace, the registry's answers, and what the
    pieces found (findings by piece, questions, patches, images to pin)."""

    __slots__ = ("answers", "findings", "namespace", "patches", "policy", "questions", "unpinned")

    def __init__(self, policy: Policy, namespace: str, answers: Answers) -> None:
        self.policy = policy
        self.namespace = namespace
        self.answers = answers
        self.questions: list[Question[Any]] = []  # in the order asked (a handful: a list is cheaper than a set)
        self.findings: dict[str, list[Finding]] = {}  # by piece, in the pieces' order
        self.patches: list[Mapping[str, Any]] = []
        self.unpinned: list[str] = []  # allowed images named by a tag alone, where pinning applies

    def ask(self, question: Question[Any]) -> Any:
        """Ask the registry ``question`` (once per decision, however many pieces or images ask it);
        its answer when the registry shell gave one, else None (``A | None`` for a ``Question[A]``)."""
        if question not in self.questions:
            self.questions.append(question)
        return self.answers.get(question)

    def add(self, rule: ImageRule, finding: Finding) -> None:
        """A finding of ``rule`` (findings are listed piece by piece, each in image order)."""
        found = self.findings.get(rule.name)
        if found is None:
            self.findings[rule.name] = [finding]
        else:
            found.append(finding)


class ImageRule(Protocol):
    """A registered image rule (see the module's docstring)."""

    @property
    def name(self) -> str: ...

    def active(self, policy: Policy, namespace: str) -> bool: ...

    def judge(self, judging: Judging, image: JudgedImage) -> None: ...


def preview(patterns: Sequence[object], limit: int = 3) -> str:
    """The first ``limit`` of ``patterns``, and how many more."""
    shown = ", ".join(str(p) for p in patterns[:limit])
    return shown + (f" and {len(patterns) - limit} more" if len(patterns) > limit else "")


class Admission:
    """The admission piece: trusted, granted, blocked or BYOC default, and the base image (its
    question: :class:`BaseQuestion`). Judged first, for one namespace under one policy at one
    instant: its verdict is what every other piece reads."""

    __slots__ = ("active", "expired", "judging", "namespace", "policy")

    def __init__(self, judging: Judging, active: tuple[Grant, ...], expired: tuple[Grant, ...]) -> None:
        self.judging = judging
        self.policy = judging.policy
        self.namespace = judging.namespace
        self.active = active
        self.expired = expired

    def finding(self, use: ImageUse, rule: str, message: str, mode: Mode | None = None) -> Finding:
        """A finding in ``mode``; by default the policy's (a grant's mode only reaches images it admits)."""
        return Finding(use, rule, message, self.policy.mode if mode is None else mode)

    def no_grant_reason(self) -> str:
        if self.expired:
            latest = max(self.expired, key=lambda g: g.expires or dt.date.min)
            described = latest.described()
            return (
                f"the BYOC grant for namespace {self.namespace} expired on "
                f"{latest.expires.isoformat() if latest.expires else '?'}" + (f" ({described})" if described else "")
            )
        return f"namespace {self.namespace or '(none)'} has no BYOC grant"

    def judge(self, use: ImageUse, image: ImageClass) -> tuple[ImageVerdict, Mode, Grant | None]:
        """The image's verdict, the mode of the other findings about it (a grant's, when the grant
        admits it), and that grant (also while its base check is pending: then the verdict is a finding)."""
        text, ref = image.text, image.ref
        mode = self.policy.mode
        if text is None or ref is None:
            why = "is empty" if use.image == "" else f"is not a valid image reference: {image.error}"
            return ImageVerdict(use, None, finding=self.finding(use, Rule.INVALID_REFERENCE, why)), mode, None
        if image.blocked is not None:
            # Blocked means blocked: enforced whatever the policy's, a grant's or an override's mode.
            message = f"({text}) is from a blocked registry (matches {image.blocked!r})"
            finding = self.finding(use, Rule.BLOCKED_REGISTRY, message, Mode.ENFORCE)
            return ImageVerdict(use, text, finding=finding), mode, None
        required = image.base_required
        if image.trusted_by is not None:
            return self._needs_base(use, image, _TRUSTED, image.trusted_by, required, mode), mode, None
        if self.policy.trusted.templates:
            # entries naming the namespace, filled in once per namespace (tools-harbor.wmcloud.org/{namespace})
            own = self.policy.trusted.resolved(self.namespace).first_match(ref)
            if own is not None:
                allowed_by = f"trusted {own} in {self.namespace}"
                return self._needs_base(use, image, Allowance.TRUSTED, allowed_by, required, mode), mode, None
        if self.active:
            return self._judge_granted(use, image, ref, text, required)
        if self.policy.byoc_default is DenyOrAllow.ALLOW:
            require = self.policy.byoc_require_base_image or required
            verdict = self._needs_base(use, image, Allowance.BYOC_DEFAULT, "byoc default allow", require, mode)
            return verdict, mode, None
        trusted_list = preview(list(self.policy.trusted)) or "none"
        message = f"({text}) is not from a trusted registry (trusted: {trusted_list}); {self.no_grant_reason()}"
        return ImageVerdict(use, text, finding=self.finding(use, Rule.UNTRUSTED_REGISTRY, message)), mode, None

    def granting(self, ref: Reference) -> Grant | None:
        """The active grant that admits ``ref`` (the first whose registries cover it)."""
        for grant in self.active:
            if grant.registries is None or grant.registries.first_match(ref) is not None:
                return grant
        return None

    def _judge_granted(
        self, use: ImageUse, image: ImageClass, ref: Reference, text: str, required: bool
    ) -> tuple[ImageVerdict, Mode, Grant | None]:
        grant = self.granting(ref)
        if grant is not None:
            require = grant.layers_required(self.policy.byoc_require_base_image) or required
            mode = grant.mode if grant.mode is not None else self.policy.mode
            return self._needs_base(use, image, _GRANT, grant.allowed_by, require, mode), mode, grant
        granted = [p for g in self.active for p in (g.registries or ())]
        message = (
            f"({text}) is neither trusted nor in the registries granted to namespace "
            f"{self.namespace} ({preview(granted)})"
        )
        # Outside the grant's registries the grant says nothing, its mode included.
        finding = self.finding(use, Rule.OUTSIDE_GRANT, message)
        return ImageVerdict(use, text, finding=finding), self.policy.mode, None

    def _needs_base(
        self, use: ImageUse, image: ImageClass, allowance: Allowance, allowed_by: str, require: bool, mode: Mode
    ) -> ImageVerdict:
        text, ref = image.text, image.ref
        if text is None or ref is None:  # judge() only gets here with a valid reference
            raise AssertionError(f"{use.image!r} judged as if it were a valid reference")
        if not require:
            return ImageVerdict(use, text, allowed_by=allowed_by, allowance=allowance)
        if not image.contactable:
            # Never asked: a tenant's image must not make imagegate connect wherever it says.
            message = f"({text}) must be built on a trusted base image, and it was not verified: {contact_refusal(ref)}"
            return ImageVerdict(use, text, finding=self.finding(use, Rule.BASE_IMAGE_UNVERIFIED, message, mode))
        verdict = self.judging.ask(BaseQuestion(ref))
        if verdict is None:
            message = (
                f"({text}) must be built on a trusted base image, and it could not be verified "
                "(no registry lookup in this evaluation)"
            )
            finding = self.finding(use, Rule.BASE_IMAGE_UNVERIFIED, message, mode)
            return ImageVerdict(use, text, finding=finding)
        if verdict.ok:
            allowed = f"{allowed_by}; base {verdict.detail}"
            return ImageVerdict(use, text, allowed_by=allowed, allowance=allowance)
        message = f"({text}) is not built on a trusted base image: {verdict.detail}"
        finding = self.finding(use, Rule.BASE_IMAGE_MISMATCH, message, mode)
        return ImageVerdict(use, text, finding=finding)


# --- tags ----------------------------------------------------------------------------------------


class Tags:
    """How the image is named: a tag at all, not a disallowed one, a digest when required (``tags``).

    Judged on the reference as written: ``nginx`` names no tag (the runtime would take
    ``latest``); a digest decides what runs, so a tag beside one is not judged. Asks nothing.
    """

    name = "tags"

    def active(self, policy: Policy, namespace: str) -> bool:
        return policy.tags.active

    def judge(self, judging: Judging, image: JudgedImage) -> None:
        rules = judging.policy.tags
        written, use, mode = image.image.written, image.use, image.mode
        if written is None or image.image.tag_exempt or written.digest is not None:
            return  # an invalid reference is already an invalid-reference finding
        tag = written.tag if written.tag is not None else "latest"
        if rules.require_tag and written.tag is None:
            judging.add(self, Finding(use, Rule.MISSING_TAG, "names no tag (the runtime would pull :latest)", mode))
        elif tag in rules.disallow:
            judging.add(self, Finding(use, Rule.DISALLOWED_TAG, f"uses the disallowed tag {tag!r}", mode))
        if rules.require_digest:
            judging.add(self, Finding(use, Rule.MISSING_DIGEST, "has no digest (@sha256:...); pin it", mode))


# --- signed artifacts: signatures and attestations -----------------------------------------------

# Findings an image may have and still need its signatures checked: the base check runs beside them.
_SIGNATURE_CHECKED_BESIDE = frozenset({Rule.BASE_IMAGE_UNVERIFIED, Rule.BASE_IMAGE_MISMATCH})
_MODE_STRENGTH = {Mode.ENFORCE: 2, Mode.WARN: 1, Mode.AUDIT: 0}
# Read for every image admitted: bound once (an enum member read is slow on 3.11, records.py).
_TRUSTED: Final = Allowance.TRUSTED
_GRANT: Final = Allowance.GRANT


class SignedKind:
    """One kind of signed artifact (signatures, attestations): what it asks about an image and
    what its findings are called."""

    __slots__ = ("failed", "mismatch", "need", "noun", "unverified")

    def __init__(self, mismatch: Rule, unverified: Rule, need: str, noun: str, failed: str) -> None:
        self.mismatch = mismatch
        self.unverified = unverified
        self.need = need  # "must be signed"
        self.noun = noun  # "signatures": what could not be verified
        self.failed = failed  # "is not signed as required"

    def covers(self, image: JudgedImage) -> bool:
        """Whether a rule of this kind may cover the image (cheap: most images are covered by none)."""
        raise NotImplementedError  # pragma: no cover

    def rules(self, policy: Policy, image: JudgedImage, ref: Reference) -> tuple[SignatureRule | AttestationRule, ...]:
        raise NotImplementedError  # pragma: no cover

    def question(self, ref: Reference, rules: tuple[Any, ...]) -> Question[tuple[SignatureVerdict, ...]]:
        raise NotImplementedError  # pragma: no cover


class _Signatures(SignedKind):
    __slots__ = ()

    def covers(self, image: JudgedImage) -> bool:
        grant = image.grant
        return image.image.signed_required or (grant is not None and grant.signed_by is not None)

    def rules(self, policy: Policy, image: JudgedImage, ref: Reference) -> tuple[SignatureRule | AttestationRule, ...]:
        """The ``signatures`` rules whose images match, then the ``signedBy`` rule of the grant that admitted it."""
        found: tuple[SignatureRule | AttestationRule, ...] = (
            policy.signatures.rules_for(ref) if image.image.signed_required else ()
        )
        grant = image.grant
        granted = policy.signatures.by_grant.get(grant.namespace) if grant is not None else None
        return found if granted is None else (*found, granted)

    def question(self, ref: Reference, rules: tuple[Any, ...]) -> Question[tuple[SignatureVerdict, ...]]:
        return SignaturesQuestion(ref, rules)


class _Attestations(SignedKind):
    __slots__ = ()

    def covers(self, image: JudgedImage) -> bool:
        return image.image.attested_required

    def rules(self, policy: Policy, image: JudgedImage, ref: Reference) -> tuple[SignatureRule | AttestationRule, ...]:
        return policy.attestations.rules_for(ref)

    def question(self, ref: Reference, rules: tuple[Any, ...]) -> Question[tuple[SignatureVerdict, ...]]:
        return AttestationsQuestion(ref, rules)


SIGNATURES: SignedKind = _Signatures(
    Rule.SIGNATURE_MISMATCH, Rule.SIGNATURE_UNVERIFIED, "must be signed", "signatures", "is not signed as required"
)
ATTESTATIONS: SignedKind = _Attestations(
    Rule.ATTESTATION_MISMATCH,
    Rule.ATTESTATION_UNVERIFIED,
    "must carry signed build provenance",
    "attestations",
    "has no build provenance as required",
)


class SignedArtifacts:
    """Signatures and attestations (``signatures``, a grant's ``signedBy``, ``attestations``): one
    piece, parametrised by kind. Asks :class:`SignaturesQuestion` / :class:`AttestationsQuestion`
    (the rules themselves) of every image admission let in, or whose only finding is its base
    check (checked beside it); a finding per rule the image fails, in the rule's mode."""

    name = "signed"

    def __init__(self, kinds: Sequence[SignedKind] = (SIGNATURES, ATTESTATIONS)) -> None:
        self.kinds = tuple(kinds)

    def active(self, policy: Policy, namespace: str) -> bool:
        return bool(policy.signatures.rules or policy.signatures.by_grant or policy.attestations.rules)

    def judge(self, judging: Judging, image: JudgedImage) -> None:
        verdict, ref = image.verdict, image.image.ref
        if ref is None or verdict.reference is None:
            return
        finding = verdict.finding
        if finding is not None and finding.rule not in _SIGNATURE_CHECKED_BESIDE:
            return
        for kind in self.kinds:
            if not kind.covers(image):
                continue
            rules = kind.rules(judging.policy, image, ref)
            if not rules:
                continue
            found = judging.ask(kind.question(ref, rules))
            for signed in _signed_findings(kind, image.use, str(ref), found, rules):
                judging.add(self, signed)


def _signed_findings(
    check: SignedKind,
    use: ImageUse,
    text: str,
    verdicts: tuple[SignatureVerdict, ...] | None,
    rules: Sequence[SignatureRule | AttestationRule],
) -> list[Finding]:
    """A finding per rule the image fails, in the rule's mode; without the registry's ``verdicts``,
    one unverified finding naming the ``rules`` that cover it, in the strongest one's mode."""
    if verdicts is None:
        if not rules:  # pragma: no cover - a check names a rule
            return []
        mode = Mode.AUDIT
        for rule in rules:  # the strongest rule's mode: what a failure would do
            if _MODE_STRENGTH[rule.mode] > _MODE_STRENGTH[mode]:
                mode = rule.mode
        names = ", ".join(rule.name for rule in rules)
        message = (
            f"({text}) {check.need} ({names}), and its {check.noun} could not be verified "
            "(no registry lookup in this evaluation)"
        )
        return [Finding(use, check.unverified, message, mode)]
    return [Finding(use, check.mismatch, f"({text}) {check.failed}: {v.detail}", v.mode) for v in verdicts if not v.ok]


# --- pinning -------------------------------------------------------------------------------------


class Pinning:
    """Tag-to-digest pinning (``pinning``): each allowed image named by a tag alone asks its digest
    (:class:`DigestQuestion`), and so does each image waiting for its base check (pinned if that
    passes: the registry shell asks both in one go); a known digest is a patch."""

    name = "pinning"

    def active(self, policy: Policy, namespace: str) -> bool:
        return policy.pinning.applies_to(namespace)

    def judge(self, judging: Judging, image: JudgedImage) -> None:
        verdict, ref = image.verdict, image.image.ref
        reference = verdict.reference
        if reference is None or ref is None or ref.digest is not None:
            return  # invalid, or already pinned
        question = DigestQuestion(ref)
        finding = verdict.finding
        if finding is not None:
            if finding.rule == Rule.BASE_IMAGE_UNVERIFIED:
                judging.ask(question)
            return
        if reference not in judging.unpinned:
            judging.unpinned.append(reference)
        digest = judging.ask(question)
        if digest is not None:
            pinned = judging.policy.pinning.pinned(ref, digest)
            judging.patches.append({"op": "replace", "path": image.use.pointer, "value": pinned})


# --- the registry ----------------------------------------------------------------------------------

# The image rules judged after admission, in this order (their findings are listed so).
IMAGE_RULES: list[ImageRule] = [Tags(), SignedArtifacts(), Pinning()]


class _ActiveRules:
    """Which rules are active in each namespace under the last policy asked: asking each rule is a
    few Python calls per rule on every decision, and a serving worker judges under one policy."""

    __slots__ = ("by_namespace", "policy")

    def __init__(self) -> None:
        self.policy: Policy | None = None
        self.by_namespace: dict[str, tuple[ImageRule, ...]] = {}

    def forget(self) -> None:
        self.policy = None
        self.by_namespace = {}


_ACTIVE: Final = _ActiveRules()  # Final: compiled, a static, not a lookup in the module's dict
_ACTIVE_NAMESPACES_MAX = 4096  # namespaces remembered per policy (then start over rather than grow)


def active_rules(policy: Policy, namespace: str) -> tuple[ImageRule, ...]:
    """The registered rules ``policy`` makes active in ``namespace``, in order (each rule asked once
    per policy and namespace: a policy never changes, and registering a rule starts over)."""
    if _ACTIVE.policy is not policy or len(_ACTIVE.by_namespace) >= _ACTIVE_NAMESPACES_MAX:
        _ACTIVE.forget()
        _ACTIVE.policy = policy
    known = _ACTIVE.by_namespace.get(namespace)
    if known is None:
        known = _ACTIVE.by_namespace[namespace] = tuple(rule for rule in IMAGE_RULES if rule.active(policy, namespace))
    return known


def register_image_rule(rule: ImageRule) -> None:
    """Judge ``rule`` on every image from now on, after the rules registered before it."""
    if any(known.name == rule.name for known in IMAGE_RULES):
        raise ValueError(f"an image rule named {rule.name!r} is registered already")
    IMAGE_RULES.append(rule)
    _ACTIVE.forget()


def unregister_image_rule(name: str) -> None:
    """Forget the image rule ``name`` (a test's own rule, when the test ends)."""
    IMAGE_RULES[:] = [rule for rule in IMAGE_RULES if rule.name != name]
    _ACTIVE.forget()
