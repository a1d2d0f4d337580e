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
the grant or policy sets ``requireBaseImage``. That is the admission piece; then each image
rule the policy makes active (tags, signed artifacts, pinning, and any registered since:
core/imagerules.py) judges the image, then pod security judges the pod specs.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

# Registered image rules beside imagerules' own: importing one registers it (core/contents/admission.py)
import imagegate.core.contents.admission  # noqa: F401
from imagegate.core.imagerules import Admission, JudgedImage, Judging, active_rules, preview
from imagegate.core.podprofile import PodProfile, mutate_pod, new_ephemeral_containers, pod_findings
from imagegate.core.policy import Grant, Policy
from imagegate.core.records import (
    NO_ANSWERS,
    Allowance,
    Answers,
    BaseImageVerdict,
    Decision,
    Finding,
    ImageVerdict,
    Mode,
    ObjectSubject,
    PodRules,
    PodSubject,
    Rule,
    Webhook,
)
from imagegate.core.workloads import (
    POD_TEMPLATE_PATHS,
    ObjectLimits,
    ObjectShapeError,
    PodSpecs,
    image_uses,
    json_pointer,
    object_metadata,
    over_limits,
    pod_specs,
    spec_counts,
    specs_image_uses,
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
    scope = f" ({preview(list(grant.registries), 2)})" if grant.registries is not None else ""
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
    specs: PodSpecs,
    namespace: str,
    namespace_labels: Mapping[str, str] | None,
    old_object: Mapping[str, Any] | None,
    assume_mutated: bool,
) -> tuple[list[Finding], list[Mapping[str, Any]]]:
    """Pod security findings and mutation patches for every pod spec ``obj`` carries (``specs``).

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
    for pointer, original in specs:
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


def _expiring(active: Sequence[Grant], now: dt.datetime, days: int | None) -> tuple[str, ...]:
    if days is None:
        return ()
    return tuple(expiry_notice(g, now) for g in active if g.expires is not None and g.expiring(now, days))


def _split_grants(grants: Sequence[Grant], now: dt.datetime) -> tuple[tuple[Grant, ...], tuple[Grant, ...]]:
    """The active and the expired grants (each grant asked once)."""
    active: list[Grant] = []
    expired: list[Grant] = []
    for grant in grants:
        # a grant without an end date is never expired: no call into the policy to ask
        (expired if grant.expires is not None and grant.expired(now) else active).append(grant)
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
        specs = pod_specs(obj)  # one walk: the limits, the images and pod security read it
        for pointer, spec in specs:
            finding = too_large(policy.limits, kind, pointer, *spec_counts(spec))
            if finding is not None:
                return Decision(kind, name, namespace, governed=True, findings=(finding,))
        uses = specs_image_uses(specs)
    except ObjectShapeError as exc:
        bad = ObjectSubject(kind or "object", exc.pointer)
        finding = Finding(bad, Rule.MALFORMED_OBJECT, f"malformed {kind or 'object'}: {exc}", Mode.ENFORCE)
        return Decision(kind, name, namespace, governed=True, findings=(finding,))
    grants = policy.grants_for(namespace)
    # Most grants have no end date: then none has expired or ends soon, and nothing is built.
    dated = any(grant.expires is not None for grant in grants)
    active, expired = _split_grants(grants, now) if dated else (grants, ())
    judging = Judging(policy, namespace, answers)
    admission = Admission(judging, active, expired)
    rules = active_rules(policy, namespace)
    for rule in rules:
        judging.findings[rule.name] = []  # listed in the rules' order, whichever finds first
    expiring = _expiring(active, now, policy.warn_before_expiry_days) if dated and active else ()
    seen_before = _old_keys(old_object)
    verdicts: list[ImageVerdict] = []
    for use in uses:
        if (use.kind, use.name, use.image) in seen_before:
            verdicts.append(
                ImageVerdict(use, None, allowed_by="unchanged by this update", allowance=Allowance.UNCHANGED)
            )
            continue
        image = policy.classify(use.image)
        verdict, mode, grant = admission.judge(use, image)
        verdicts.append(verdict)
        if rules:  # most policies make none active for most namespaces: the direct path costs nothing more
            judged = JudgedImage(use, image, verdict, mode, grant)
            for rule in rules:
                rule.judge(judging, judged)
    findings = [v.finding for v in verdicts if v.finding is not None]
    if rules:
        for found in judging.findings.values():
            findings.extend(found)
    patches: list[Mapping[str, Any]] = []
    profile = policy.pod_security.profile_for(namespace) if policy.pod_security else None
    if profile is not None:
        security_findings, patches = _pod_security(
            profile, obj, specs, namespace, namespace_labels, old_object, webhook.mutates
        )
        findings.extend(security_findings)
    if judging.patches:
        patches = [*judging.patches, *patches]
    return Decision(
        kind,
        name,
        namespace,
        governed=True,
        verdicts=tuple(verdicts),
        findings=tuple(findings),
        patches=tuple(patches),
        questions=tuple(judging.questions),
        pins_needed=tuple(judging.unpinned),
        # the direct path (no registry asked) has nothing unverified: no call, no tuple built
        notices=(*expiring, *_unverified_notices(verdicts, answers)) if answers.found else expiring,
    )
