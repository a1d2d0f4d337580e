"""The webhook configurations for a policy, with the mutating webhook's matchConditions derived from it.

The mutating webhook is only worth calling when ``/mutate`` could change the object: a field
the mutation fills in is missing from the pod spec or one of its containers, or, where
pinning applies, an image has no digest. The API server evaluates the ``needs-mutation``
condition (CEL) and skips the call otherwise: for the pods platforms create (Toolforge's jobs
framework writes the full security context) that is one webhook call instead of two, also on
every reinvocation after a later mutating webhook.

The condition is conservative: it is derived from what any namespace could get (any level,
override or tool profile), never from which namespace a request is in, and anything it cannot
judge (an unknown kind, a missing pod spec, a null object, a pods/ephemeralcontainers update)
sends the request. Every key it reads is guarded by ``has()``, so it never errors. The
validating webhook is never skipped for that reason: it keeps only the ``spec-changed``
condition. Pure: the shell prints these (``imagegate webhooks``), deploy/ and the chart carry
them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from imagegate.core.podprofile import (
    CONTAINER_MUTATED_FIELDS,
    POD_MUTATED_FIELDS,
    TOOL_POD_MUTATED_FIELDS,
)
from imagegate.core.policy import Policy
from imagegate.core.workloads import CONTAINER_FIELDS, POD_TEMPLATE_PATHS, WORKLOAD_KINDS

__all__ = ["mutation_condition", "webhook_configurations"]

# Skips UPDATEs that leave the pod-bearing part alone (metadata, status): both webhooks.
SPEC_CHANGED = (
    "request.operation != 'UPDATE'\n"
    "|| (has(request.subResource) && request.subResource == 'ephemeralcontainers')\n"
    "|| (has(object.spec) ? !has(oldObject.spec) || object.spec != oldObject.spec\n"
    ": has(object.template) ? !has(oldObject.template) || object.template != oldObject.template\n"
    ": true)"
)

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


def mutation_condition(policy: Policy) -> str:
    """The CEL expression that is true whenever ``/mutate`` could return a patch under ``policy``."""
    pinning = policy.pinning.enabled
    settings = policy.pod_security
    pod_paths: list[Sequence[str]] = []
    container_paths: list[Sequence[str]] = []
    if settings is not None and settings.mutate:
        levels = {settings.level, *(o.level for o in settings.overrides if o.level)}
        if "restricted" in levels or settings.tool is not None:
            pod_paths.extend(POD_MUTATED_FIELDS)
            container_paths.extend(CONTAINER_MUTATED_FIELDS)
        if settings.tool is not None:
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


def _rules() -> tuple[Mapping[str, Any], ...]:
    """One rule per API group of the workload kinds; kubectl debug's subresource after the core group's."""
    resources: dict[tuple[str, str], list[str]] = {}
    for workload in WORKLOAD_KINDS:
        resources.setdefault((workload.group, workload.version), []).append(workload.resource)
    rules: list[Mapping[str, Any]] = []
    for (group, version), names in resources.items():
        rules.append(_rule(group, version, ["CREATE", "UPDATE"], names))
        if group == "":
            rules.append(_rule(group, version, ["UPDATE"], ["pods/ephemeralcontainers"]))
    return tuple(rules)


_RULES = _rules()


def _webhook(kind: str, conditions: list[dict[str, str]]) -> dict[str, Any]:
    return {
        "name": f"{kind}.imagegate.toolforge.org",
        "admissionReviewVersions": ["v1"],
        "sideEffects": "None",
        "failurePolicy": "Fail",
        "timeoutSeconds": 5,
        "matchPolicy": "Equivalent",
        "namespaceSelector": {
            "matchExpressions": [
                {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": list(_EXEMPT_NAMESPACES)}
            ]
        },
        "matchConditions": conditions,
        "rules": [dict(rule) for rule in _RULES],
        "clientConfig": {"service": {"name": "imagegate", "namespace": "imagegate", "path": f"/{kind}", "port": 443}},
    }


def webhook_configurations(policy: Policy) -> list[dict[str, Any]]:
    """The MutatingWebhookConfiguration and ValidatingWebhookConfiguration deploy/base ships for ``policy``."""
    spec_changed = {"name": "spec-changed", "expression": SPEC_CHANGED}
    mutate = _webhook("mutate", [spec_changed, {"name": "needs-mutation", "expression": mutation_condition(policy)}])
    mutate["reinvocationPolicy"] = "IfNeeded"
    metadata = {"name": "imagegate", "annotations": {"cert-manager.io/inject-ca-from": "imagegate/imagegate-serving"}}
    return [
        {"apiVersion": "admissionregistration.k8s.io/v1", "kind": kind, "metadata": dict(metadata), "webhooks": [hook]}
        for kind, hook in (
            ("MutatingWebhookConfiguration", mutate),
            ("ValidatingWebhookConfiguration", _webhook("validate", [spec_changed])),
        )
    ]
