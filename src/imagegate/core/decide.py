"""Decisions: given an object, its namespace and a policy, what happens to it.

Pure: no clock, no network, no files. The caller passes ``now`` and, when it has
them, the registry's answers (:class:`Answers`) to the questions a first decision asked
(``Decision.questions``: base images, signatures, attestations, digests to pin).

For each image the order is fixed and short-circuits:

1. not a valid reference                      -> ``invalid-reference``
2. matches ``blocked``                         -> ``blocked-registry`` (no grant overrides it)
3. matches ``trusted``                         -> allowed
4. namespace has an active grant              -> allowed if the grant's registries cover it,
                                                 else ``outside-grant``
5. ``byoc.default: allow``                     -> allowed
6. otherwise                                   -> ``untrusted-registry``

Images that BYOC let in (steps 4 and 5) must also pass base-image verification when
the grant or policy sets ``requireBaseImage``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from imagegate.core.attestations import AttestationRule
from imagegate.core.podprofile import PodProfile, mutate_pod, new_ephemeral_containers, pod_findings
from imagegate.core.policy import Grant, ImageClass, Policy, contact_refusal
from imagegate.core.questions import AttestationsQuestion, BaseQuestion, DigestQuestion, SignaturesQuestion
from imagegate.core.records import (
    NO_ANSWERS,
    Allowance,
    Answers,
    BaseImageVerdict,
    Decision,
    DenyOrAllow,
    Finding,
    ImageUse,
    ImageVerdict,
    Mode,
    ObjectSubject,
    PodRules,
    PodSubject,
    Question,
    Rule,
    SignatureVerdict,
    Webhook,
)
from imagegate.core.reference import Reference
from imagegate.core.signatures import SignatureRule
from imagegate.core.workloads import (
    POD_TEMPLATE_PATHS,
    ObjectLimits,
    ObjectShapeError,
    image_uses,
    json_pointer,
    object_metadata,
    over_limits,
    pod_specs,
    spec_counts,
)

__all__ = [
    "Answers",
    "BaseImageVerdict",
    "Decision",
    "Finding",
    "ImageVerdict",
    "Rule",
    "decide",
    "expiry_notice",
    "too_large",
]


def _describe(grant: Grant, *, where: bool = False) -> str:
    """The grant in the policy's words (its ticket); ``where`` adds the file and line it is in,
    for the operator's own output (``check``), never for what a tenant reads."""
    parts = [f"granted in {grant.source}"] if where else []
    if grant.ticket:
        parts.append(f"ticket {grant.ticket}")
    return ", ".join(parts)


def _preview(patterns: Sequence[object], limit: int = 3) -> str:
    shown = ", ".join(str(p) for p in patterns[:limit])
    return shown + (f" and {len(patterns) - limit} more" if len(patterns) > limit else "")


class _Judge:
    """Judges image uses for one namespace under one policy at one instant."""

    __slots__ = ("active", "answers", "expired", "namespace", "policy")

    def __init__(
        self,
        *,
        policy: Policy,
        namespace: str,
        active: tuple[Grant, ...],
        expired: tuple[Grant, ...],
        answers: Answers,
    ) -> None:
        self.policy = policy
        self.namespace = namespace
        self.active = active
        self.expired = expired
        self.answers = answers

    def finding(self, use: ImageUse, rule: str, message: str, mode: Mode | None = None) -> Finding:
        """A finding in ``mode``; by default the policy's (a grant's mode only reaches images it admits)."""
        return Finding(use, rule, message, self.policy.mode if mode is None else mode)

    def no_grant_reason(self) -> str:
        if self.expired:
            latest = max(self.expired, key=lambda g: g.expires or dt.date.min)
            described = _describe(latest)
            return (
                f"the BYOC grant for namespace {self.namespace} expired on "
                f"{latest.expires.isoformat() if latest.expires else '?'}" + (f" ({described})" if described else "")
            )
        return f"namespace {self.namespace or '(none)'} has no BYOC grant"

    def judge(self, use: ImageUse, image: ImageClass) -> tuple[ImageVerdict, BaseQuestion | None, Mode, Grant | None]:
        """The verdict, the base-image question it asks (when it needs one), the mode of the
        other findings about this image (a grant's, when the grant admits it), and that grant
        (also while its base check is pending: then the verdict is a finding)."""
        text, ref = image.text, image.ref
        mode = self.policy.mode
        if text is None or ref is None:
            why = "is empty" if use.image == "" else f"is not a valid image reference: {image.error}"
            return ImageVerdict(use, None, finding=self.finding(use, Rule.INVALID_REFERENCE, why)), None, mode, None
        if image.blocked is not None:
            # Blocked means blocked: enforced whatever the policy's, a grant's or an override's mode.
            message = f"({text}) is from a blocked registry (matches {image.blocked!r})"
            finding = self.finding(use, Rule.BLOCKED_REGISTRY, message, Mode.ENFORCE)
            return ImageVerdict(use, text, finding=finding), None, mode, None
        required = image.base_required
        if image.trusted_by is not None:
            return (*self._needs_base(use, image, Allowance.TRUSTED, image.trusted_by, required, mode), mode, None)
        if self.policy.trusted.templates:
            # entries naming the namespace, filled in once per namespace (tools-harbor.wmcloud.org/{namespace})
            own = self.policy.trusted.resolved(self.namespace).first_match(ref)
            if own is not None:
                allowed_by = f"trusted {own} in {self.namespace}"
                return (*self._needs_base(use, image, Allowance.TRUSTED, allowed_by, required, mode), mode, None)
        if self.active:
            return self._judge_granted(use, image, ref, text, required)
        if self.policy.byoc_default is DenyOrAllow.ALLOW:
            require = self.policy.byoc_require_base_image or required
            verdict, base_ref = self._needs_base(
                use, image, Allowance.BYOC_DEFAULT, "byoc default allow", require, mode
            )
            return verdict, base_ref, mode, None
        trusted_list = _preview(list(self.policy.trusted)) or "none"
        message = f"({text}) is not from a trusted registry (trusted: {trusted_list}); {self.no_grant_reason()}"
        return ImageVerdict(use, text, finding=self.finding(use, Rule.UNTRUSTED_REGISTRY, message)), None, mode, None

    def granting(self, ref: Reference) -> Grant | None:
        """The active grant that admits ``ref`` (the first whose registries cover it)."""
        for grant in self.active:
            if grant.registries is None or grant.registries.first_match(ref) is not None:
                return grant
        return None

    def _judge_granted(
        self, use: ImageUse, image: ImageClass, ref: Reference, text: str, required: bool
    ) -> tuple[ImageVerdict, BaseQuestion | None, Mode, Grant | None]:
        grant = self.granting(ref)
        if grant is not None:
            require = grant.require_base_image or self.policy.byoc_require_base_image or required
            mode = grant.mode if grant.mode is not None else self.policy.mode
            allowed_by = f"grant for {grant.namespace} ({_describe(grant, where=True)})"
            return (*self._needs_base(use, image, Allowance.GRANT, allowed_by, require, mode), mode, grant)
        granted = [p for g in self.active for p in (g.registries or ())]
        message = (
            f"({text}) is neither trusted nor in the registries granted to namespace "
            f"{self.namespace} ({_preview(granted)})"
        )
        # Outside the grant's registries the grant says nothing, its mode included.
        finding = self.finding(use, Rule.OUTSIDE_GRANT, message)
        return ImageVerdict(use, text, finding=finding), None, self.policy.mode, None

    def _needs_base(
        self, use: ImageUse, image: ImageClass, allowance: Allowance, allowed_by: str, require: bool, mode: Mode
    ) -> tuple[ImageVerdict, BaseQuestion | None]:
        text, ref = image.text, image.ref
        if text is None or ref is None:  # judge() only gets here with a valid reference
            raise AssertionError(f"{use.image!r} judged as if it were a valid reference")
        if not require:
            return ImageVerdict(use, text, allowed_by=allowed_by, allowance=allowance), None
        if not image.contactable:
            # Never asked: a tenant's image must not make imagegate connect wherever it says.
            message = f"({text}) must be built on a trusted base image, and it was not verified: {contact_refusal(ref)}"
            return ImageVerdict(use, text, finding=self.finding(use, Rule.BASE_IMAGE_UNVERIFIED, message, mode)), None
        question = BaseQuestion(ref)
        verdict = self.answers.get(question)
        if verdict is None:
            message = (
                f"({text}) must be built on a trusted base image, and it could not be verified "
                "(no registry lookup in this evaluation)"
            )
            finding = self.finding(use, Rule.BASE_IMAGE_UNVERIFIED, message, mode)
            return ImageVerdict(use, text, finding=finding), question
        if verdict.ok:
            allowed = f"{allowed_by}; base {verdict.detail}"
            return ImageVerdict(use, text, allowed_by=allowed, allowance=allowance), question
        message = f"({text}) is not built on a trusted base image: {verdict.detail}"
        finding = self.finding(use, Rule.BASE_IMAGE_MISMATCH, message, mode)
        return ImageVerdict(use, text, finding=finding), question


def too_large(limits: ObjectLimits, kind: str, pointer: str, containers: int, volumes: int) -> Finding | None:
    """The finding for a pod spec over the policy's limits, or None. Enforced whatever the policy's
    mode: the limit protects the webhook (every admission shares it), not a style."""
    problem = over_limits(limits, pointer, containers, volumes)
    if problem is None:
        return None
    message = f"{kind or 'object'} too large to judge, denied: {problem}"
    return Finding(ObjectSubject(kind or "object", pointer), Rule.OBJECT_TOO_LARGE, message, Mode.ENFORCE)


def expiry_notice(grant: Grant, now: dt.datetime) -> str:
    """What every admission in a namespace whose grant ends soon tells its users (essential first)."""
    left = grant.days_left(now)
    until = grant.expires.isoformat() if grant.expires else "?"
    when = "today is its last day" if left == 0 else f"{left} day{'' if left == 1 else 's'} left"
    scope = f" ({_preview(list(grant.registries), 2)})" if grant.registries is not None else ""
    renewal = f"renewal: {grant.ticket}" if grant.ticket else "ask the platform admins to renew it"
    return (
        f"BYOC grant for {grant.namespace}{scope} is good through {until} UTC ({when}); after that, new Pods "
        f"needing it are denied, running Pods go on; {renewal}"
    )


def _old_keys(old: Mapping[str, Any] | None) -> frozenset[tuple[str, str, str]]:
    if not old:
        return frozenset()
    try:
        return frozenset((u.kind, u.name, u.image) for u in image_uses(old))
    except ObjectShapeError:
        return frozenset()  # a malformed old object grandfathers nothing


# The pod spec's JSON pointer -> the path of the metadata beside it (the pod's or its template's).
_METADATA_PATHS = {json_pointer(path): (*path[:-1], "metadata") for path in POD_TEMPLATE_PATHS.values()}


def _pod_security(
    profile: PodProfile,
    obj: Mapping[str, Any],
    namespace: str,
    namespace_labels: Mapping[str, str] | None,
    old_object: Mapping[str, Any] | None,
    assume_mutated: bool,
) -> tuple[list[Finding], list[Mapping[str, Any]]]:
    """Pod security findings and mutation patches for every pod spec ``obj`` carries.

    With ``assume_mutated`` the pod is judged as it will be after the mutating webhook
    (``check``, ``audit``, ``/mutate``); without it, as it is (``/validate``: the object has
    already been through the mutating webhook, or it has not, and then it is judged bare).
    """
    identity = profile.tool.identity(namespace, namespace_labels) if profile.tool else None
    old_specs = dict(pod_specs(old_object)) if old_object else {}
    # /validate sends no patch and judges the object as sent: it has nothing to mutate.
    may_mutate = assume_mutated and profile.mutate
    # A running pod cannot change its security context; it can only gain ephemeral
    # containers (pods/ephemeralcontainers): those alone are filled in. Templates can change.
    running_pod = old_object is not None and obj.get("kind") == "Pod"
    findings: list[Finding] = []
    patches: list[Mapping[str, Any]] = []
    for pointer, original in pod_specs(obj):
        old_spec = old_specs.get(pointer)
        if old_object is not None and old_spec == original:
            continue  # an UPDATE that leaves the pod spec alone has nothing to judge
        spec = original
        metadata: Any = obj
        for token in _METADATA_PATHS[pointer]:
            metadata = metadata.get(token) if isinstance(metadata, dict) else None
        metadata = metadata if isinstance(metadata, dict) else {}
        only = new_ephemeral_containers(original, old_spec) if running_pod else None
        if may_mutate and (only is None or only):
            annotations = metadata.get("annotations")
            annotations = annotations if isinstance(annotations, dict) else None
            patcher = mutate_pod(original, pointer, profile, identity, only, annotations)
            patches.extend(patcher.patches)
            spec = patcher.spec
        for rules, result, mode in pod_findings(spec, metadata, profile, namespace, identity, running_pod):
            if rules is PodRules.POD_SECURITY:
                reason = f'violates PodSecurity "{profile.label}": {result.message}'
            else:
                reason = f"violates the tool profile: {result.message}"
            subject = PodSubject(rules, result.check, pointer)
            findings.append(Finding(subject, f"{rules.value}:{result.check}", reason, mode))
    return findings, patches


def _tag_findings(policy: Policy, use: ImageUse, image: ImageClass, mode: Mode) -> list[Finding]:
    """How the image is named: a tag at all, not a disallowed one, a digest when required.

    Judged on the reference as written: ``nginx`` names no tag (the runtime would take
    ``latest``); a digest decides what runs, so a tag beside one is not judged.
    """
    rules = policy.tags
    written = image.written
    if written is None or image.tag_exempt:
        return []  # an invalid reference is already an invalid-reference finding
    found = []
    if written.digest is None:
        tag = written.tag if written.tag is not None else "latest"
        if rules.require_tag and written.tag is None:
            found.append(Finding(use, Rule.MISSING_TAG, "names no tag (the runtime would pull :latest)", mode))
        elif tag in rules.disallow:
            found.append(Finding(use, Rule.DISALLOWED_TAG, f"uses the disallowed tag {tag!r}", mode))
        if rules.require_digest:
            found.append(Finding(use, Rule.MISSING_DIGEST, "has no digest (@sha256:...); pin it", mode))
    return found


# Findings an image may have and still need its signatures checked: the base check runs beside them.
_SIGNATURE_CHECKED_BESIDE = frozenset({Rule.BASE_IMAGE_UNVERIFIED, Rule.BASE_IMAGE_MISMATCH})
_MODE_STRENGTH = {Mode.ENFORCE: 2, Mode.WARN: 1, Mode.AUDIT: 0}


def _unverified_notices(verdicts: Sequence[ImageVerdict], answers: Answers) -> list[str]:
    """What passed only by an ``onError: allow`` (the registry could not be asked): the tenant is
    told, so an admission without a check is never silent."""
    if not answers.found:
        return []  # the direct path (no registry asked): nothing can have passed unverified
    details: dict[str, list[str]] = {}
    for question, answer in answers.found.items():
        found = question.unverified(answer)
        if found:
            details.setdefault(str(question.ref), []).extend(found)
    if not details:
        return []
    said: list[str] = []
    for verdict in verdicts:
        reference = verdict.reference
        if reference is None or verdict.finding is not None:
            continue
        said.extend(f"{verdict.use.label} image {reference!r}: {detail}" for detail in details.get(reference, ()))
    return list(dict.fromkeys(said))


def _signature_question(
    policy: Policy, verdict: ImageVerdict, image: ImageClass, grant: Grant | None
) -> SignaturesQuestion | None:
    """What an image's signatures must be verified against, or None when no rule covers it: the
    ``signatures`` rules whose images match, and the ``signedBy`` rule of the grant that admitted it."""
    finding, ref = verdict.finding, image.ref
    if ref is None or verdict.reference is None:
        return None
    if finding is not None and finding.rule not in _SIGNATURE_CHECKED_BESIDE:
        return None
    rules = policy.signatures.rules_for(ref) if image.signed_required else ()
    granted = policy.signatures.by_grant.get(grant.namespace) if grant is not None else None
    if granted is not None:
        rules = (*rules, granted)
    return SignaturesQuestion(ref, rules) if rules else None


def _attestation_question(policy: Policy, verdict: ImageVerdict, image: ImageClass) -> AttestationsQuestion | None:
    """The attestations question of an image an ``attestations`` rule covers, or None."""
    finding, ref = verdict.finding, image.ref
    if ref is None or verdict.reference is None or not image.attested_required:
        return None
    if finding is not None and finding.rule not in _SIGNATURE_CHECKED_BESIDE:
        return None
    return AttestationsQuestion(ref, policy.attestations.rules_for(ref))


class _SignedCheck:
    """What a signatures or attestations check is called in findings: its rules and its words."""

    __slots__ = ("failed", "mismatch", "need", "noun", "unverified")

    def __init__(self, mismatch: str, unverified: str, need: str, noun: str, failed: str) -> None:
        self.mismatch = mismatch
        self.unverified = unverified
        self.need = need  # "must be signed"
        self.noun = noun  # "signatures": what could not be verified
        self.failed = failed  # "is not signed as required"


_SIGNATURES = _SignedCheck(
    Rule.SIGNATURE_MISMATCH, Rule.SIGNATURE_UNVERIFIED, "must be signed", "signatures", "is not signed as required"
)
_ATTESTATIONS = _SignedCheck(
    Rule.ATTESTATION_MISMATCH,
    Rule.ATTESTATION_UNVERIFIED,
    "must carry signed build provenance",
    "attestations",
    "has no build provenance as required",
)


def _signed_findings(
    check: _SignedCheck,
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


def _pins(
    policy: Policy,
    namespace: str,
    judged: Sequence[tuple[ImageVerdict, Reference | None]],
    answers: Answers,
) -> tuple[tuple[str, ...], tuple[DigestQuestion, ...], list[Mapping[str, Any]]]:
    """Tag-to-digest pinning: which allowed images need a digest, the digest questions (those
    images', and those of the images waiting for their base check, pinned if it passes: the
    registry shell asks both in one go), and the patches for the digests known."""
    if not policy.pinning.applies_to(namespace):
        return (), (), []
    needed: list[str] = []
    questions: list[DigestQuestion] = []
    patches: list[Mapping[str, Any]] = []
    for verdict, ref in judged:
        reference = verdict.reference
        if reference is None or ref is None or ref.digest is not None:
            continue  # invalid, unchanged by an update, or already pinned
        question = DigestQuestion(ref)
        finding = verdict.finding
        if finding is not None:
            if finding.rule == Rule.BASE_IMAGE_UNVERIFIED and question not in questions:
                questions.append(question)
            continue
        if reference not in needed:
            needed.append(reference)
            if question not in questions:
                questions.append(question)
        digest = answers.get(question)
        if digest is not None:
            pinned = policy.pinning.pinned(ref, digest)
            patches.append({"op": "replace", "path": verdict.use.pointer, "value": pinned})
    return tuple(needed), tuple(questions), patches


def _expiring(active: Sequence[Grant], now: dt.datetime, days: int | None) -> tuple[str, ...]:
    return tuple(expiry_notice(g, now) for g in active if g.expiring(now, days))


def _split_grants(grants: Sequence[Grant], now: dt.datetime) -> tuple[tuple[Grant, ...], tuple[Grant, ...]]:
    """The active and the expired grants (each grant asked once)."""
    active: list[Grant] = []
    expired: list[Grant] = []
    for grant in grants:
        (expired if grant.expired(now) else active).append(grant)
    return tuple(active), tuple(expired)


def decide(
    policy: Policy,
    obj: Mapping[str, Any],
    *,
    namespace: str,
    now: dt.datetime,
    namespace_labels: Mapping[str, str] | None = None,
    old_object: Mapping[str, Any] | None = None,
    answers: Answers = NO_ANSWERS,
    webhook: Webhook = Webhook.CHECK,
) -> Decision:
    """Judge every image ``obj`` names, with what the registry said about them (``answers``).

    ``webhook`` says how: as admission ends (``check``, the default, for offline checks), or
    as the mutating or the validating webhook does (``/validate`` judges what it is sent).

    On UPDATE pass ``old_object``: images already present at the same place were
    admitted before and are not judged again (the pods they make are judged on
    CREATE: after a grant expires, scaling a Deployment is admitted but its new Pods
    are not). New and changed images, including ephemeral containers added by
    ``kubectl debug``, are.
    """
    kind = str(obj.get("kind", ""))
    metadata = object_metadata(obj)
    name = str(metadata.get("name") or metadata.get("generateName") or "")
    if not policy.namespaces.governs(namespace, namespace_labels):
        return Decision(kind, name, namespace, governed=False)
    try:
        # Counted before any per-container work: an object over the limits costs nothing more.
        for pointer, spec in pod_specs(obj):
            finding = too_large(policy.limits, kind, pointer, *spec_counts(spec))
            if finding is not None:
                return Decision(kind, name, namespace, governed=True, findings=(finding,))
        uses = image_uses(obj)
    except ObjectShapeError as exc:
        bad = ObjectSubject(kind or "object", exc.pointer)
        finding = Finding(bad, Rule.MALFORMED_OBJECT, f"malformed {kind or 'object'}: {exc}", Mode.ENFORCE)
        return Decision(kind, name, namespace, governed=True, findings=(finding,))
    active, expired = _split_grants(policy.grants_for(namespace), now)
    judge = _Judge(
        policy=policy,
        namespace=namespace,
        active=active,
        expired=expired,
        answers=answers,
    )
    expiring = _expiring(judge.active, now, policy.warn_before_expiry_days) if judge.active else ()
    seen_before = _old_keys(old_object)
    verdicts: list[ImageVerdict] = []
    judged: list[tuple[ImageVerdict, Reference | None]] = []
    tag_findings: list[Finding] = []
    needs_base: list[Question[Any]] = []
    needs_signed: list[Question[Any]] = []
    signature_findings: list[Finding] = []
    for use in uses:
        if (use.kind, use.name, use.image) in seen_before:
            verdict = ImageVerdict(use, None, allowed_by="unchanged by this update", allowance=Allowance.UNCHANGED)
            verdicts.append(verdict)
            judged.append((verdict, None))
            continue
        image = policy.classify(use.image)
        verdict, base_question, mode, grant = judge.judge(use, image)
        verdicts.append(verdict)
        judged.append((verdict, image.ref))
        if policy.tags.active:
            tag_findings.extend(_tag_findings(policy, use, image, mode))
        if base_question is not None and base_question not in needs_base:
            needs_base.append(base_question)
        # Most images are covered by no signatures or attestations rule: no call to find that out.
        signed = image.signed_required or (grant is not None and grant.signed_by is not None)
        asked = _signature_question(policy, verdict, image, grant) if signed else None
        if asked is not None:
            if asked not in needs_signed:
                needs_signed.append(asked)
            found = answers.get(asked)
            signature_findings.extend(_signed_findings(_SIGNATURES, use, str(asked.ref), found, asked.rules))
        attested = _attestation_question(policy, verdict, image) if image.attested_required else None
        if attested is not None:
            if attested not in needs_signed:
                needs_signed.append(attested)
            found = answers.get(attested)
            signature_findings.extend(_signed_findings(_ATTESTATIONS, use, str(attested.ref), found, attested.rules))
    findings = [v.finding for v in verdicts if v.finding is not None] + tag_findings + signature_findings
    pins_needed, digest_questions, pin_patches = _pins(policy, namespace, judged, answers)
    patches: list[Mapping[str, Any]] = []
    profile = policy.pod_security.profile_for(namespace) if policy.pod_security else None
    if profile is not None:
        security_findings, patches = _pod_security(
            profile, obj, namespace, namespace_labels, old_object, webhook.mutates
        )
        findings.extend(security_findings)
    patches = [*pin_patches, *patches]
    return Decision(
        kind,
        name,
        namespace,
        governed=True,
        verdicts=tuple(verdicts),
        findings=tuple(findings),
        patches=tuple(patches),
        questions=(*needs_base, *needs_signed, *digest_questions),
        pins_needed=pins_needed,
        notices=(*expiring, *_unverified_notices(verdicts, answers)),
    )
