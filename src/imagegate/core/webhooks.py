"""The webhook configurations for a policy, with the mutating webhook's matchConditions derived from it.

Each configuration has two webhooks: one for CREATE, without matchConditions, and one for
UPDATE (and ``pods/ephemeralcontainers``), with them. The API server builds a CEL activation
(the object, the old object, the request, converted to unstructured) for every webhook that
has conditions, on every request its rules match: about a millisecond of its CPU per webhook,
more than a call that a condition could save on CREATE, where there is always something to
judge. On UPDATE the conditions pay: ``template-changed`` sends only an UPDATE that changes
what pods are made of (a Pod's containers and volumes, a workload's pod template), so label,
annotation, finalizer, status and ``spec.replicas`` writes never wait for imagegate, and a
Deployment scales down while imagegate is unreachable. ``needs-mutation`` sends ``/mutate``
only an UPDATE it could change: a field the mutation fills in is missing from the pod spec or
one of its containers, or, where pinning applies, an image has no digest.

The condition is conservative: it is derived from what any namespace could get (any level,
override or tool profile), never from which namespace a request is in, and anything it cannot
judge (an unknown kind, a missing pod spec, a null object, a pods/ephemeralcontainers update)
sends the request. Every key it reads is guarded by ``has()``, so it never errors. The
validating webhook is never skipped for that reason: it keeps only ``template-changed``.

What ``needs-mutation`` tests depends on the policy only through its :class:`MutationScope`
(which fields ``/mutate`` fills in, whether it pins): the Helm chart computes the scope from
the policy it renders and picks the expression made here for it, and the server reports the
served policy's :func:`condition_fingerprint` (``/readyz``, a metric) to compare with the
annotation the configuration carries. Pure: the shell prints these (``imagegate webhooks``),
deploy/ and the chart carry them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from imagegate.core.podprofile import (
    CONTAINER_MUTATED_FIELDS,
    POD_MUTATED_FIELDS,
    TOOL_POD_MUTATED_FIELDS,
)
from imagegate.core.podsecurity import Level
from imagegate.core.policy import Policy
from imagegate.core.workloads import CONTAINER_FIELDS, CONTAINER_LISTS, POD_TEMPLATE_PATHS, WORKLOAD_KINDS

__all__ = [
    "CONDITION_ANNOTATION",
    "MUTATION_SCOPES",
    "TEMPLATE_CHANGED",
    "WEBHOOK_TIMEOUT_SECONDS",
    "MutationScope",
    "condition_fingerprint",
    "mutation_condition",
    "mutation_scope",
    "scope_condition",
    "webhook_configurations",
]

# The annotation on the MutatingWebhookConfiguration: the fingerprint of its needs-mutation
# condition, to compare with what the server reports for the policy it serves.
CONDITION_ANNOTATION = "imagegate.toolforge.org/needs-mutation"


def _differs(path: Sequence[str], leaves: Sequence[str], new: str = "object", old: str = "oldObject") -> str:
    """CEL: one of ``leaves`` under ``path`` differs between ``new`` and ``old`` (present in one only counts).

    Each level is read only after ``has()`` said it is there, in both objects.
    """
    if not path:
        return " || ".join(_differs((leaf,), (), new, old) for leaf in leaves) if leaves else f"{new} != {old}"
    key, rest = path[0], path[1:]
    here_new, here_old = f"{new}.{key}", f"{old}.{key}"
    return (
        f"(has({here_new}) ? (has({here_old}) ? {_differs(rest, leaves, here_new, here_old)} : true) : has({here_old}))"
    )


def _template_changed() -> str:
    """UPDATEs that change what pods are made of: sent; every other UPDATE is not.

    A Pod: its container lists and volumes (image volumes), the parts an UPDATE can change
    and imagegate judges (``pods/ephemeralcontainers`` is always sent). Any other kind: its
    pod template, metadata included (``kubectl rollout restart`` is a new template).
    """
    branches = []
    pod_lists = [*CONTAINER_LISTS, "volumes"]
    by_path: dict[tuple[str, ...], list[str]] = {}
    for kind, path in POD_TEMPLATE_PATHS.items():
        by_path.setdefault(path, []).append(kind)
    for path, kinds in by_path.items():
        # A Pod: each list; a template: the whole of it, the pod spec and its metadata.
        pod = kinds == ["Pod"]
        test = _differs(path, pod_lists) if pod else _differs(path[:-1], ())
        which = f"object.kind == '{kinds[0]}'" if len(kinds) == 1 else f"object.kind in {list(kinds)!r}"
        branches.append(f"{which} ? ({test})\n")
    return (
        "request.operation != 'UPDATE'\n"
        "|| (has(request.subResource) && request.subResource == 'ephemeralcontainers')\n"
        "|| object == null || oldObject == null || !has(object.kind)\n"
        "|| (" + ": ".join(branches) + ": true)"
    )


TEMPLATE_CHANGED = _template_changed()

_Tree = dict[str, "_Tree"]


def _tree(paths: Iterable[Sequence[str]]) -> _Tree:
    root: _Tree = {}
    for path in paths:
        node = root
        for key in path:
            node = node.setdefault(key, {})
    return root


def _missing(base: str, tree: _Tree) -> list[str]:
    """CEL terms, one of which is true when some leaf of ``tree`` is absent under ``base``.

    A shared prefix is tested once: ``!has(b.sc) || !has(b.sc.x) || !has(b.sc.y)``; each
    ``has()`` is reached only after its parent's (``||`` stops at the first true term).
    """
    terms = []
    for key, children in tree.items():
        here = f"{base}.{key}"
        terms.append(f"!has({here})")
        terms.extend(_missing(here, children))
    return terms


def _either(terms: Sequence[str]) -> str:
    return "(" + " || ".join(terms) + ")" if terms else "false"


def _spec_needs_mutation(spec: str, pod_fields: _Tree, container_fields: _Tree, pinning: bool) -> str:
    per_container = _missing("c", container_fields)
    if pinning:
        per_container.append("!has(c.image) || !c.image.contains('@')")
    terms = _missing(spec, pod_fields)
    if per_container:
        body = " || ".join(per_container)
        terms.extend(f"(has({spec}.{name}) && {spec}.{name}.exists(c, {body}))" for name, _ in CONTAINER_FIELDS)
    if pinning:
        terms.append(
            f"(has({spec}.volumes) && {spec}.volumes.exists(v, has(v.image)"
            " && (!has(v.image.reference) || !v.image.reference.contains('@'))))"
        )
    return _either(terms)


Security = Literal["none", "restricted", "tool"]


@dataclass(frozen=True, slots=True)
class MutationScope:
    """What ``/mutate`` can change under a policy: which security fields it fills in, and whether it pins.

    ``none``: no field (no pod security, or ``mutate: false``, or no namespace at
    ``restricted`` and no tool profile); ``restricted``: the Pod Security ``restricted``
    defaults; ``tool``: those and the tool's uid, gid, fsGroup and supplementalGroupsPolicy.
    The name ("tool-pinning") is the chart's file name for its condition.
    """

    security: Security
    pinning: bool

    @property
    def name(self) -> str:
        return self.security + ("-pinning" if self.pinning else "")


MUTATION_SCOPES = tuple(
    MutationScope(security, pinning) for security in ("none", "restricted", "tool") for pinning in (False, True)
)


def mutation_scope(policy: Policy) -> MutationScope:
    """The scope of ``/mutate`` under ``policy``: from any namespace's settings (any level, override or profile)."""
    settings = policy.pod_security
    security: Security = "none"
    if settings is not None and settings.mutate:
        levels = {settings.level, *(o.level for o in settings.overrides if o.level)}
        if settings.tool is not None:
            security = "tool"
        elif Level.RESTRICTED in levels:
            security = "restricted"
    return MutationScope(security, policy.pinning.enabled)


def mutation_condition(policy: Policy) -> str:
    """The CEL expression that is true whenever ``/mutate`` could return a patch under ``policy``."""
    return scope_condition(mutation_scope(policy))


def condition_fingerprint(condition: str) -> str:
    """A short name for a condition: the first 16 hex digits of its SHA-256 (the chart: ``sha256sum | trunc 16``)."""
    return hashlib.sha256(condition.encode()).hexdigest()[:16]


def scope_condition(scope: MutationScope) -> str:
    """The ``needs-mutation`` expression for a :class:`MutationScope`."""
    pinning = scope.pinning
    pod_paths: list[Sequence[str]] = []
    container_paths: list[Sequence[str]] = []
    if scope.security != "none":
        pod_paths.extend(POD_MUTATED_FIELDS)
        container_paths.extend(CONTAINER_MUTATED_FIELDS)
    if scope.security == "tool":
        pod_paths.extend(TOOL_POD_MUTATED_FIELDS)
    pod_fields, container_fields = _tree(pod_paths), _tree(container_paths)
    by_path: dict[tuple[str, ...], list[str]] = {}
    for kind, path in POD_TEMPLATE_PATHS.items():
        by_path.setdefault(path, []).append(kind)
    branches = []
    for path, kinds in by_path.items():
        spec = "object." + ".".join(path)
        # A kind whose pod spec is missing is sent (the API server refuses it; /validate says so).
        absent = _missing("object", _tree([path]))
        test = " || ".join([*absent, _spec_needs_mutation(spec, pod_fields, container_fields, pinning)])
        which = f"object.kind == '{kinds[0]}'" if len(kinds) == 1 else f"object.kind in {list(kinds)!r}"
        branches.append(f"{which} ? ({test})\n")
    return (
        "object == null || !has(object.kind)\n"
        "|| (has(request.subResource) && request.subResource == 'ephemeralcontainers')\n"
        "|| (" + ": ".join(branches) + ": true)"
    )


_EXEMPT_NAMESPACES = ("kube-system", "kube-public", "kube-node-lease", "cert-manager", "imagegate")


def _rule(group: str, version: str, operations: list[str], resources: list[str]) -> dict[str, Any]:
    return {"apiGroups": [group], "apiVersions": [version], "operations": operations,
            "resources": resources, "scope": "Namespaced"}  # fmt: skip


def _rules(operation: str) -> tuple[Mapping[str, Any], ...]:
    """One rule per API group of the workload kinds; on UPDATE, kubectl debug's subresource after the core group's."""
    resources: dict[tuple[str, str], list[str]] = {}
    for workload in WORKLOAD_KINDS:
        resources.setdefault((workload.group, workload.version), []).append(workload.resource)
    rules: list[Mapping[str, Any]] = []
    for (group, version), names in resources.items():
        rules.append(_rule(group, version, [operation], names))
        if group == "" and operation == "UPDATE":
            rules.append(_rule(group, version, ["UPDATE"], ["pods/ephemeralcontainers"]))
    return tuple(rules)


_RULES = {operation: _rules(operation) for operation in ("CREATE", "UPDATE")}


# How long the API server waits for an answer; registry.timeoutSeconds must be shorter (core/lint.py).
WEBHOOK_TIMEOUT_SECONDS = 5


def _webhook(kind: str, operation: str, conditions: list[dict[str, str]]) -> dict[str, Any]:
    hook: dict[str, Any] = {
        "name": f"{kind}.imagegate.toolforge.org"
        if operation == "CREATE"
        else f"{kind}-update.imagegate.toolforge.org",
        "admissionReviewVersions": ["v1"],
        "sideEffects": "None",
        "failurePolicy": "Fail",
        "timeoutSeconds": WEBHOOK_TIMEOUT_SECONDS,
        "matchPolicy": "Equivalent",
        "namespaceSelector": {
            "matchExpressions": [
                {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": list(_EXEMPT_NAMESPACES)}
            ]
        },
    }
    if conditions:
        hook["matchConditions"] = conditions
    hook["rules"] = [dict(rule) for rule in _RULES[operation]]
    hook["clientConfig"] = {"service": {"name": "imagegate", "namespace": "imagegate", "path": f"/{kind}", "port": 443}}
    if kind == "mutate":
        hook["reinvocationPolicy"] = "IfNeeded"
    return hook


def webhook_configurations(policy: Policy) -> list[dict[str, Any]]:
    """The MutatingWebhookConfiguration and ValidatingWebhookConfiguration deploy/base ships for ``policy``.

    In each, the CREATE webhook first (no conditions), then the UPDATE one.
    """
    changed = {"name": "template-changed", "expression": TEMPLATE_CHANGED}
    condition = mutation_condition(policy)
    needs = {"name": "needs-mutation", "expression": condition}
    annotations = {"cert-manager.io/inject-ca-from": "imagegate/imagegate-serving"}
    mutating = {**annotations, CONDITION_ANNOTATION: condition_fingerprint(condition)}
    return [
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": "imagegate", "annotations": mutating},
            "webhooks": [_webhook("mutate", "CREATE", []), _webhook("mutate", "UPDATE", [changed, needs])],
        },
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": "imagegate", "annotations": dict(annotations)},
            "webhooks": [_webhook("validate", "CREATE", []), _webhook("validate", "UPDATE", [changed])],
        },
    ]
