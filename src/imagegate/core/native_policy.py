"""The mutating webhook's defaults as MutatingAdmissionPolicies: the API server fills them in itself.

``imagegate webhooks --mutating-policy`` emits these instead of the MutatingWebhookConfiguration
(MutatingAdmissionPolicy: alpha in Kubernetes 1.32 behind the ``MutatingAdmissionPolicy``
feature gate and the ``admissionregistration.k8s.io/v1alpha1`` API, beta from 1.34), so no
mutating call is made. They set exactly what ``podprofile.mutate_pod`` sets on a new object
and skip what it skips (the API server's refusals beside what is there): one policy per
pod-bearing kind (its pod spec's path), one JSON patch in CEL, its operations in order. The
tool's uid and gid come from the Namespace's labels (``toolProfile.uidLabel``/``gidLabel``):
CEL cannot read the identities file. Not covered, where the webhook is still needed: pinning (it asks the
registry), identities from a file, ``kubectl debug``'s ephemeral containers (they inherit the
pod's uid; a debug container that leaves the hardening unset is denied by /validate).
``tests/test_native_policy.py`` holds it to ``mutate_pod`` through a real API server.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from imagegate.core.podprofile import MAX_ID
from imagegate.core.podsecurity import Level
from imagegate.core.policy import Policy
from imagegate.core.workloads import CONTAINER_FIELDS, WORKLOAD_KINDS

__all__ = ["NativePolicyError", "mutating_policies"]

API_VERSION = "admissionregistration.k8s.io/v1alpha1"
_SECCOMP_POD_ANNOTATION = "seccomp.security.alpha.kubernetes.io/pod"


class NativePolicyError(ValueError):
    """The policy asks for something a MutatingAdmissionPolicy cannot do."""


def _glob(pattern: str, subject: str = "request.namespace") -> str:
    """A namespace glob (fnmatch: ``*``, ``?``) as CEL."""
    if "[" in pattern:
        raise NativePolicyError(f"namespace pattern {pattern!r}: character classes have no CEL form here")
    if pattern.endswith("*") and "*" not in pattern[:-1] and "?" not in pattern:
        return f"{subject}.startsWith('{pattern[:-1]}')"
    if "*" not in pattern and "?" not in pattern:
        return f"{subject} == '{pattern}'"
    regex = "".join(
        ".*" if ch == "*" else "." if ch == "?" else ("\\\\" + ch if not ch.isalnum() else ch) for ch in pattern
    )
    return f"{subject}.matches('^{regex}$')"


def _any(patterns: Sequence[str]) -> str:
    return "(" + " || ".join(_glob(p) for p in patterns) + ")" if patterns else "false"


def _label_int(label: str) -> str:
    """CEL: the Namespace label as an int when it is a valid tool id, else -1."""
    value = f"namespaceObject.metadata.labels['{label}']"
    present = f"has(namespaceObject.metadata) && has(namespaceObject.metadata.labels) && '{label}' in namespaceObject.metadata.labels"
    return (
        f"({present} && {value}.matches('^[0-9]{{1,10}}$') && int({value}) > 0 && int({value}) <= {MAX_ID}"
        f" ? int({value}) : -1)"
    )


def _ops(items: Sequence[tuple[str, str, str]]) -> str:
    """CEL list of JSONPatch adds, each (condition, path, value) included when its condition holds."""
    parts = [f"({cond} ? [JSONPatch{{op: 'add', path: {path}, value: {value}}}] : [])" for cond, path, value in items]
    return " + ".join(parts) if parts else "[]"


def _pod_mutations(spec: str, pointer: str, metadata: str, tool: bool, uid: str, gid: str) -> list[str]:
    linux = f"!(has({spec}.os) && {spec}.os.name == 'windows')"
    sc = f"{spec}.securityContext"
    notes = f"{metadata}.annotations"
    seccomp_ok = (
        f"!(has({notes}) && '{_SECCOMP_POD_ANNOTATION}' in {notes} && "
        f"!({notes}['{_SECCOMP_POD_ANNOTATION}'] in ['runtime/default', 'docker/default']))"
    )
    # The API server defaults a pod's securityContext to {}: the first mutation makes sure it is there.
    first = f"has({sc}) ? [] : [JSONPatch{{op: 'add', path: '{pointer}/securityContext', value: {{}}}}]"
    items: list[tuple[str, str, str]] = []
    if tool:
        items += [
            (f"{linux} && {uid} > 0 && !has({sc}.runAsUser)", f"'{pointer}/securityContext/runAsUser'", uid),
            (f"{linux} && {uid} > 0 && !has({sc}.runAsGroup)", f"'{pointer}/securityContext/runAsGroup'", gid),
            (f"{linux} && {uid} > 0 && !has({sc}.fsGroup)", f"'{pointer}/securityContext/fsGroup'", gid),
        ]
    items.append((f"!has({sc}.runAsNonRoot)", f"'{pointer}/securityContext/runAsNonRoot'", "true"))
    items.append(
        (
            f"{linux} && !has({sc}.seccompProfile) && {seccomp_ok}",
            f"'{pointer}/securityContext/seccompProfile'",
            "{'type': 'RuntimeDefault'}",
        )
    )
    if tool:
        items.append(
            (
                f"{linux} && !has({sc}.supplementalGroupsPolicy)",
                f"'{pointer}/securityContext/supplementalGroupsPolicy'",
                "'Strict'",
            )
        )
    return [first, _ops(items)]


def _container_mutations(spec: str, pointer: str, max_containers: int) -> list[str]:
    """Per container list: a whole securityContext where there is none; where there is one,
    allowPrivilegeEscalation, capabilities, or drop where missing (disjoint conditions on the
    object as sent, so one JSON patch holds them all)."""
    linux = f"!(has({spec}.os) && {spec}.os.name == 'windows')"
    indices = "[" + ", ".join(str(i) for i in range(max_containers)) + "]"
    mutations = []
    for list_field, _word in CONTAINER_FIELDS:
        if list_field == "ephemeralContainers":
            continue  # only ever added by an UPDATE of pods/ephemeralcontainers
        items = f"{spec}.{list_field}"
        each = f"{indices}.filter(i, {linux} && has({items}) && i < size({items})"
        path = f"'{pointer}/{list_field}/' + string(i) + '/securityContext"
        c = f"{items}[i].securityContext"
        refused = (
            f"((has({c}.privileged) && {c}.privileged) || (has({c}.capabilities) && has({c}.capabilities.add)"
            f" && 'CAP_SYS_ADMIN' in {c}.capabilities.add))"
        )
        whole = "{'allowPrivilegeEscalation': dyn(false), 'capabilities': dyn({'drop': ['ALL']})}"  # CEL maps are of one type
        mutations.append(
            f"{each} && !has({items}[i].securityContext)).map(i, JSONPatch{{op: 'add', path: {path}', value: {whole}}})"
        )
        mutations.append(
            f"{each} && has({items}[i].securityContext) && !has({c}.allowPrivilegeEscalation) && !{refused})"
            f".map(i, JSONPatch{{op: 'add', path: {path}/allowPrivilegeEscalation', value: false}})"
        )
        mutations.append(
            f"{each} && has({items}[i].securityContext) && !has({c}.capabilities))"
            f".map(i, JSONPatch{{op: 'add', path: {path}/capabilities', value: {{'drop': ['ALL']}}}})"
        )
        mutations.append(
            f"{each} && has({items}[i].securityContext) && has({c}.capabilities) && !has({c}.capabilities.drop))"
            f".map(i, JSONPatch{{op: 'add', path: {path}/capabilities/drop', value: ['ALL']}})"
        )
    return mutations


def mutating_policies(
    policy: Policy, selector: dict[str, Any] | None = None, max_containers: int | None = None
) -> list[dict[str, Any]]:
    """MutatingAdmissionPolicies and their bindings that fill in what /mutate fills in under ``policy``.

    CEL has no indexed loop over a list, so each container list is walked by a literal list of
    indices: ``max_containers`` of them (default: the policy's ``limits.maxContainers``; a pod
    with more is denied unjudged anyway)."""
    settings = policy.pod_security
    if policy.pinning.enabled:
        raise NativePolicyError("pinning asks the registry for digests: it needs the mutating webhook")
    if settings is None or not settings.mutate:
        return []
    tool = settings.tool
    if tool is not None and (tool.identities or not tool.uid_label):
        raise NativePolicyError("the tool identities come from a file, which CEL cannot read: set toolProfile.uidLabel")
    if any(o.level for o in settings.overrides):
        raise NativePolicyError("podSecurity.overrides with another level have no MutatingAdmissionPolicy form yet")
    if policy.namespaces.selector is not None:
        raise NativePolicyError("namespaces.selector: put it in the bindings' namespaceSelector (not done here)")
    restricted = settings.level is Level.RESTRICTED
    if not restricted and tool is None:
        return []
    governed = f"{_any(policy.namespaces.include)} && !{_any((*policy.namespaces.exclude, *settings.exempt))}"
    in_tool = _any(tool.namespaces) if tool is not None else "false"
    applies = governed if restricted else f"{governed} && {in_tool}"
    uid = _label_int(tool.uid_label) if tool is not None and tool.uid_label else "-1"
    gid = _label_int(tool.gid_label) if tool is not None and tool.gid_label else uid
    if max_containers is None:
        max_containers = policy.limits.max_containers
    documents: list[dict[str, Any]] = []
    for workload in WORKLOAD_KINDS:
        path = workload.pod_path
        spec = "object." + ".".join(path)
        pointer = "/" + "/".join(path)
        metadata = "object." + ".".join((*path[:-1], "metadata")) if len(path) > 1 else "object.metadata"
        name = f"imagegate-defaults-{workload.resource}"
        pod = _pod_mutations(spec, pointer, metadata, False, uid, gid)
        tool_pod = _pod_mutations(spec, pointer, metadata, True, uid, gid)
        # The tool's fields only in tool namespaces: the same mutation, guarded.
        # One JSON patch: each mutation costs the API server a conversion of the whole object
        # (about 2 ms of CPU in 1.32), and its operations apply in order (the pod's
        # securityContext first, where it is missing, then its fields).
        parts = [
            pod[0],
            f"(({in_tool}) ? ({tool_pod[1]}) : ({pod[1]}))",
            *_container_mutations(spec, pointer, max_containers),
        ]
        mutations = [" + ".join(f"({part})" for part in parts)]
        documents.append(
            {
                "apiVersion": API_VERSION,
                "kind": "MutatingAdmissionPolicy",
                "metadata": {"name": name},
                "spec": {
                    "failurePolicy": "Fail",
                    "reinvocationPolicy": "IfNeeded",
                    "matchConstraints": {
                        "resourceRules": [
                            {
                                "apiGroups": [workload.group],
                                "apiVersions": [workload.version],
                                "operations": ["CREATE"] if workload.kind == "Pod" else ["CREATE", "UPDATE"],
                                "resources": [workload.resource],
                            }
                        ]
                    },
                    "matchConditions": [
                        {"name": "governed", "expression": applies},
                        {"name": "has-pod-spec", "expression": f"has({spec})"},
                    ],
                    "mutations": [{"patchType": "JSONPatch", "jsonPatch": {"expression": m}} for m in mutations],
                },
            }
        )
        binding: dict[str, Any] = {"policyName": name}
        if selector is not None:
            binding["matchResources"] = {"namespaceSelector": selector}
        documents.append(
            {
                "apiVersion": API_VERSION,
                "kind": "MutatingAdmissionPolicyBinding",
                "metadata": {"name": name},
                "spec": binding,
            }
        )
    return documents
