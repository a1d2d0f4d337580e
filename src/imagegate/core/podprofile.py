"""The pod security part of a policy: Pod Security Standards plus the tool profile.

The platform must not rely on what is inside a custom image. So for every pod (and
every pod template) in a governed namespace:

* the Pod Security Standards level of the policy (``restricted`` by default) holds;
* in tool namespaces, the *tool profile* holds on top, whatever the level: the pod runs as
  the tool's own uid/gid (``runAsUser``, ``runAsGroup``, ``fsGroup``, ``supplementalGroups``,
  ``supplementalGroupsPolicy: Strict``), hostPath volumes only from an allowlist (some forced
  read-only), inline CSI volumes only of allowed drivers, no privileged container, no
  privilege escalation, all capabilities dropped and none added, seccomp ``RuntimeDefault``;
* fields left unset are filled in by the mutating webhook (``mutations``), so an
  ordinary ``kubectl run`` pod becomes compliant; fields set to something forbidden
  are denied by the validating webhook with the field and the allowed value.

Pure: the caller passes the namespace's identity when it knows it.

It holds the policy's pod security settings (levels, exemptions, the tool profile), the
mutation and the tool profile's checks. The mutation names its field paths once
(``_POD_USER``..., and the ``*_MUTATED_FIELDS`` that core/webhooks.py derives the mutating
condition from); the checks read the same fields by their own names, so nothing but the
tests (a filled-in pod is admitted: test_mutation_refusals.py, test_toolforge.py) keeps the
two in agreement.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from fnmatch import fnmatchcase
from functools import lru_cache
from typing import Any, Final

from imagegate.core.placeholders import fill_placeholders
from imagegate.core.podsecurity import RESTRICTED_VOLUME_TYPES_1_33, Level, Version
from imagegate.core.podsecurity_shortcut import evaluate
from imagegate.core.podspec import added_capabilities, as_list, as_map, containers, is_windows, volume_type
from imagegate.core.records import CheckResult, Mode, PodRules
from imagegate.core.workloads import json_pointer

__all__ = [
    "CONTAINER_MUTATED_FIELDS",
    "HOST_PATH_FORM",
    "MAX_ID",
    "POD_MUTATED_FIELDS",
    "TOOL_POD_MUTATED_FIELDS",
    "TOOL_PROFILE_CHECKS",
    "HostPathMatch",
    "HostPathRule",
    "Identity",
    "PodProfile",
    "PodSecuritySettings",
    "ToolProfile",
    "clean_host_path",
    "escalation_refused",
    "mutate_pod",
    "new_ephemeral_containers",
    "tool_profile_findings",
    "valid_tool_id",
]


# The largest uid or gid the API server accepts (IsValidUserID / IsValidGroupID: 0 to 2^31-1).
MAX_ID = 2_147_483_647

# Every check a tool-profile finding can name (its rule is "tool-profile:<check>"): the metrics
# count each from 0 (tests/test_metrics.py holds it equal to the checks this module makes).
TOOL_PROFILE_CHECKS: tuple[str, ...] = (
    "allowPrivilegeEscalation",
    "capabilities",
    "csi",
    "fsGroup",
    "hostPath",
    "identity",
    "os",
    "privileged",
    "runAsGroup",
    "runAsUser",
    "seccompProfile",
    "supplementalGroups",
    "supplementalGroupsPolicy",
    "volumes",
)


def valid_tool_id(value: int) -> bool:
    """A uid or gid a tool can run as: not root, and one the API server accepts in a pod."""
    return 0 < value <= MAX_ID


@dataclass(frozen=True, slots=True)
class Identity:
    uid: int
    gid: int


class HostPathMatch(StrEnum):
    """Which volumes a hostPath rule admits: its path alone, or its path and every path below it.

    ``below`` is unsafe wherever a tenant can write below the path: containerd's CRI and CRI-O
    resolve symlinks in a hostPath source on the node before the bind mount, so a sub-path a
    tenant made a symlink (``/data/project/<tool>/x -> /``) mounts its target, the node's root.
    """

    EXACT = "exact"
    BELOW = "below"


@dataclass(frozen=True, slots=True)
class HostPathRule:
    """An allowed hostPath (``match``: exactly ``path``, or also below it); ``{tool}``/``{namespace}`` are filled in."""

    path: str
    read_only: bool = False
    match: HostPathMatch = HostPathMatch.EXACT

    def resolve(self, namespace: str) -> str | None:
        """The path in ``namespace``; ``None`` when a placeholder has no value there (it allows nothing)."""
        filled = fill_placeholders(self.path, namespace)
        return posixpath.normpath(filled) if filled is not None else None

    def describe(self, path: str) -> str:
        """The rule as a message names it, with its path for the namespace (``path``)."""
        below = " and below" if self.match is HostPathMatch.BELOW else ""
        return f"{path}{below}{' (read-only)' if self.read_only else ''}"


def _specificity(resolved: tuple[HostPathRule, str]) -> tuple[int, bool]:
    """Longer paths first; of one path, a read-only rule first: the first rule covering a path decides."""
    rule, path = resolved
    return -len(path), not rule.read_only


def _covers(rule: HostPathRule, allowed: str, path: str) -> bool:
    if path == allowed:
        return True
    return rule.match is HostPathMatch.BELOW and path.startswith(allowed.rstrip("/") + "/")


@dataclass(frozen=True, slots=True)
class ToolProfile:
    namespaces: tuple[str, ...] = ("tool-*",)
    identities: Mapping[str, Identity] = field(default_factory=dict)
    uid_label: str | None = None
    gid_label: str | None = None
    host_paths: tuple[HostPathRule, ...] = ()
    csi_drivers: frozenset[str] = frozenset()  # inline csi volumes: the only drivers allowed
    # A pod without supplementalGroupsPolicy at /validate: "deny" (a violation in the profile's
    # mode), or Mode.WARN / Mode.AUDIT for clusters whose API server drops the field.
    groups_policy_dropped: Mode | None = None
    # host_path_rules' answers per namespace (the profile never changes, so neither do they)
    _resolved: dict[str, tuple[tuple[HostPathRule, str], ...]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def applies_to(self, namespace: str) -> bool:
        return any(fnmatchcase(namespace, pattern) for pattern in self.namespaces)

    def host_path_rule(self, namespace: str, path: str) -> tuple[HostPathRule, str] | None:
        """The rule that decides a (normalized) hostPath in ``namespace``: the most specific that covers it."""
        return next(
            ((rule, allowed) for rule, allowed in self.host_path_rules(namespace) if _covers(rule, allowed, path)), None
        )

    def host_path_rules(self, namespace: str) -> tuple[tuple[HostPathRule, str], ...]:
        """Each allowed hostPath rule with its path for ``namespace`` filled in, most specific first.

        So the first rule that covers a volume's path is the one that decides: the longest path
        (``/public/dumps, readOnly`` before ``/public`` and below), and of rules that come to the
        same path in this namespace, a read-only one. The order written does not matter.
        """
        found = self._resolved.get(namespace)
        if found is None:
            resolved = []
            for rule in self.host_paths:
                path = rule.resolve(namespace)
                if path is not None:
                    resolved.append((rule, path))
            found = tuple(sorted(resolved, key=_specificity))
            if len(self._resolved) < _PROFILE_CACHE_SIZE:
                self._resolved[namespace] = found
        return found

    def identity(self, namespace: str, labels: Mapping[str, str] | None) -> Identity | None:
        """From the identities map first, then from the namespace's labels when known."""
        known = self.identities.get(namespace)
        if known is not None or labels is None or self.uid_label is None:
            return known
        uid_text = labels.get(self.uid_label, "")
        gid_text = labels.get(self.gid_label, uid_text) if self.gid_label else uid_text
        if uid_text.isdigit() and gid_text.isdigit():
            uid, gid = int(uid_text), int(gid_text)
            if valid_tool_id(uid) and valid_tool_id(gid):
                return Identity(uid, gid)
        return None


@dataclass(frozen=True, slots=True)
class PodProfile:
    """What applies to one namespace: level, version, mode and the tool profile if any."""

    level: Level
    version: Version
    mode: Mode
    mutate: bool
    tool: ToolProfile | None

    @property
    def label(self) -> str:
        return f"{self.level}:v{self.version[0]}.{self.version[1]}"


@dataclass(frozen=True, slots=True)
class PodSecurityOverride:
    namespaces: tuple[str, ...]
    level: Level | None = None
    version: Version | None = None
    mode: Mode | None = None


_UNKNOWN = object()
_PROFILE_CACHE_SIZE = 10_000  # namespaces; a cluster has fewer, and past this we just compute
# Read on every review: bound once (an enum member read is slow on 3.11, records.py).
_PRIVILEGED: Final = Level.PRIVILEGED
_RESTRICTED: Final = Level.RESTRICTED


@dataclass(frozen=True, slots=True)
class PodSecuritySettings:
    level: Level = Level.RESTRICTED
    version: Version = (1, 37)
    mode: Mode = Mode.ENFORCE
    mutate: bool = True
    exempt: tuple[str, ...] = ()
    overrides: tuple[PodSecurityOverride, ...] = ()
    tool: ToolProfile | None = None
    # profile_for's answers: the settings never change, so neither do they (not copied by replace())
    _profiles: dict[str, PodProfile | None] = field(default_factory=dict, init=False, repr=False, compare=False)

    def profile_for(self, namespace: str) -> PodProfile | None:
        """The profile for ``namespace``, or ``None`` when it is exempt."""
        known = self._profiles.get(namespace, _UNKNOWN)
        if known is not _UNKNOWN:
            return known  # type: ignore[return-value]
        profile = self._profile_for(namespace)
        if len(self._profiles) < _PROFILE_CACHE_SIZE:
            self._profiles[namespace] = profile
        return profile

    def _profile_for(self, namespace: str) -> PodProfile | None:
        if any(fnmatchcase(namespace, pattern) for pattern in self.exempt):
            return None
        level, version, mode = self.level, self.version, self.mode
        for override in self.overrides:
            if any(fnmatchcase(namespace, pattern) for pattern in override.namespaces):
                level = override.level or level
                version = override.version or version
                mode = override.mode if override.mode is not None else mode
                break
        tool = self.tool if self.tool is not None and self.tool.applies_to(namespace) else None
        if level is _PRIVILEGED and tool is None:
            return None
        return PodProfile(level, version, mode, self.mutate, tool)


# --- mutation ---------------------------------------------------------------------------


def _fresh(value: Any) -> Any:
    """A copy of one of the small JSON values mutation inserts."""
    if isinstance(value, dict):
        return {key: _fresh(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_fresh(item) if isinstance(item, (dict, list)) else item for item in value]
    return value


def _nested(keys: Sequence[str | int], value: Any) -> Any:
    """``value`` under ``keys``: ``("a", "b"), 1`` is ``{"a": {"b": 1}}``."""
    for key in reversed(keys):
        value = {key: value}
    return value


@lru_cache(maxsize=4096)
def _pointer(path: tuple[str | int, ...]) -> str:
    """The JSON pointer of a path inside a pod spec (a few dozen distinct ones; each is built once)."""
    return json_pointer(path)


class _Patcher:
    """Sets unset fields in a copy of a pod spec and records the JSON patch that does it.

    Copy-on-write: only the dicts and lists on the path to a change are copied (a deep copy
    of a 10-container spec cost more than the whole decision), so ``spec`` shares every
    untouched part with the original, which is never modified.
    """

    def __init__(self, spec: Mapping[str, Any], pointer: str) -> None:
        self.spec: dict[str, Any] = dict(spec)
        self.pointer = pointer
        self.patches: list[dict[str, Any]] = []
        self._copied: set[int] = {id(self.spec)}
        # A dict this patcher added to the spec -> the same dict in its patch's value: a field set
        # inside it later joins that ``add`` instead of becoming one more operation, so a missing
        # securityContext is one ``add`` of the whole context (the shortest patch the API server reads).
        self._added: dict[int, dict[Any, Any]] = {}

    def _track(self, inserted: Any, value: Any) -> None:
        """Remember the dicts of an added value, paired with their twins in the patch."""
        if isinstance(inserted, dict) and isinstance(value, dict):
            self._added[id(inserted)] = value
            self._copied.add(id(inserted))  # ours already: never copied again on the way down
            for key, item in inserted.items():
                if isinstance(item, dict):  # a leaf has nothing to pair: no call
                    self._track(item, value[key])

    def _own(self, parent: Any, key: Any, child: Any) -> Any:
        """``child`` (at ``parent[key]``), copied into ``parent`` first if it is still shared."""
        if id(child) in self._copied or not isinstance(child, (dict, list)):
            return child
        copied = dict(child) if isinstance(child, dict) else list(child)
        parent[key] = copied
        self._copied.add(id(copied))
        return copied

    def ensure(self, path: tuple[str | int, ...], value: Any) -> None:
        """Set ``path`` to ``value`` unless something is there (even a wrong value: validation says so)."""
        node: Any = self.spec
        last = len(path) - 1
        for depth, token in enumerate(path):
            if isinstance(node, list):
                if not (isinstance(token, int) and token < len(node)):
                    return
                node = self._own(node, token, node[token])
                continue
            if not isinstance(node, dict):
                return  # a wrong type above us: leave it to validation
            current = node.get(token)
            # An empty object on the way (the API server defaults a pod's securityContext to {})
            # is replaced whole: one ``add`` of everything it gets, as if it were missing.
            if current is None or (
                depth < last and isinstance(current, dict) and not current and id(current) not in self._added
            ):
                rest = path[depth + 1 :]
                # Two separate values, each extended by later calls: the spec's and the patch's.
                copied = isinstance(value, (dict, list))  # a scalar (most values) is shared, never copied
                inserted = node[token] = _nested(rest, _fresh(value) if copied else value)
                added = _nested(rest, _fresh(value) if copied else value)
                self._track(inserted, added)
                within = self._added.get(id(node))
                if within is not None:  # inside a value this patcher added: extend that operation
                    within[token] = added
                else:
                    where = self.pointer + _pointer(path[: depth + 1])
                    self.patches.append({"op": "add", "path": where, "value": added})
                return
            if depth == last:
                return
            node = self._own(node, token, current)


_POD_USER = ("securityContext", "runAsUser")
_POD_GROUP = ("securityContext", "runAsGroup")
_POD_FS_GROUP = ("securityContext", "fsGroup")
_POD_NON_ROOT = ("securityContext", "runAsNonRoot")
_POD_SECCOMP = ("securityContext", "seccompProfile", "type")
_POD_GROUPS_POLICY = ("securityContext", "supplementalGroupsPolicy")
_NO_ESCALATION = ("securityContext", "allowPrivilegeEscalation")
_DROP = ("securityContext", "capabilities", "drop")
# What mutate_pod may fill in (core/webhooks.py's needs-mutation condition tests each for absence):
# on the pod under any restricted or tool profile, on the pod with a tool profile, on every container.
POD_MUTATED_FIELDS = (_POD_NON_ROOT, _POD_SECCOMP)
TOOL_POD_MUTATED_FIELDS = (_POD_USER, _POD_GROUP, _POD_FS_GROUP, _POD_GROUPS_POLICY)
CONTAINER_MUTATED_FIELDS = (_NO_ESCALATION, _DROP)


# What the API server's pod validation refuses beside what a pod already has (Kubernetes
# pkg/apis/core/validation), so mutate_pod never fills these in there: the pod then reaches
# /validate as written, and is denied with imagegate's message instead of the API server's
# Go struct dump. Every field mutate_pod sets, against every rule that reads it:
# * allowPrivilegeEscalation=false beside privileged=true, or beside capabilities.add naming
#   "CAP_SYS_ADMIN" (ValidateSecurityContext; the exact string: "SYS_ADMIN" is not refused);
# * a Windows pod (spec.os.name=windows) refuses the pod's seccompProfile, runAsUser,
#   runAsGroup, fsGroup and supplementalGroupsPolicy, and a container's seccompProfile,
#   runAsUser, runAsGroup, allowPrivilegeEscalation and capabilities (validateWindows);
#   runAsNonRoot is allowed;
# * seccompProfile.type beside a localhostProfile (only type Localhost may have one), and on
#   a Pod's create beside a seccomp annotation that names another profile (the pod's, or the
#   container's by name: validateSeccompAnnotationsAndFields); checked for templates too, as
#   their pods are created from them;
# * runAsUser, runAsGroup, fsGroup out of 0..2^31-1 (IsValidUserID): identities are checked
#   when they are loaded (valid_tool_id), so never filled in.
_SECCOMP_POD_ANNOTATION = "seccomp.security.alpha.kubernetes.io/pod"
_SECCOMP_CONTAINER_ANNOTATION = "container.seccomp.security.alpha.kubernetes.io/"
_RUNTIME_DEFAULT_ANNOTATIONS = frozenset({"runtime/default", "docker/default"})


def escalation_refused(context: Mapping[str, Any]) -> bool:
    """Whether the API server refuses ``allowPrivilegeEscalation: false`` in this container context."""
    if context.get("privileged") is True:
        return True
    return "CAP_SYS_ADMIN" in as_list(as_map(context.get("capabilities")).get("add"))


def _seccomp_refused(context: Mapping[str, Any], annotation: Any) -> bool:
    """Whether the API server refuses seccompProfile.type=RuntimeDefault in this context."""
    if "localhostProfile" in as_map(context.get("seccompProfile")):
        return True
    return annotation is not None and annotation not in _RUNTIME_DEFAULT_ANNOTATIONS


def _container_at(spec: Mapping[str, Any], list_field: str, index: int) -> Mapping[str, Any]:
    items = as_list(spec.get(list_field))
    return as_map(items[index]) if index < len(items) else {}


def mutate_pod(
    spec: Mapping[str, Any],
    pointer: str,
    profile: PodProfile,
    identity: Identity | None,
    only: Sequence[tuple[str, int]] | None = None,
    annotations: Mapping[str, Any] | None = None,
) -> _Patcher:
    """Fill in the secure defaults the profile wants, where the pod left them unset.

    ``only`` names the containers (list field, index) of a running pod that are new: the
    ephemeral containers ``kubectl debug`` adds, the one change the API server lets such a
    pod make. Then nothing else is touched, and each of them gets on its own security
    context what the pod level gives a new pod (uid, gid, runAsNonRoot, seccomp), since the
    running pod's own context cannot change and may predate imagegate. ``annotations`` are
    the pod's (or its template's): a seccomp annotation decides whether a profile may be set.
    Nothing the API server would refuse beside what is there is set (see above).
    """
    patcher = _Patcher(spec, pointer)
    if profile.level is not _RESTRICTED and profile.tool is None:
        return patcher
    notes = annotations or {}
    linux = not is_windows(spec)
    ids = identity if linux else None  # a Windows pod has no uid or gid to set
    if only is None:
        if ids is not None:
            patcher.ensure(_POD_USER, ids.uid)
            patcher.ensure(_POD_GROUP, ids.gid)
            patcher.ensure(_POD_FS_GROUP, ids.gid)
        patcher.ensure(_POD_NON_ROOT, True)
        pod_context = as_map(spec.get("securityContext"))
        if linux and not _seccomp_refused(pod_context, notes.get(_SECCOMP_POD_ANNOTATION)):
            patcher.ensure(_POD_SECCOMP, "RuntimeDefault")
        if profile.tool is not None and linux:
            # An API server whose SupplementalGroupsPolicy gate is off drops this after /mutate.
            patcher.ensure(_POD_GROUPS_POLICY, "Strict")
        # the containers as sent (the pod-level fields above copied none of them)
        targets: Sequence[tuple[str, int, Mapping[str, Any]]] = containers(spec)
    else:
        targets = [(list_field, index, _container_at(spec, list_field, index)) for list_field, index in only]
        for list_field, index, container in targets:
            if ids is not None:
                patcher.ensure((list_field, index, *_POD_USER), ids.uid)
                patcher.ensure((list_field, index, *_POD_GROUP), ids.gid)
            patcher.ensure((list_field, index, *_POD_NON_ROOT), True)
            annotation = notes.get(f"{_SECCOMP_CONTAINER_ANNOTATION}{container.get('name')}")
            if linux and not _seccomp_refused(as_map(container.get("securityContext")), annotation):
                patcher.ensure((list_field, index, *_POD_SECCOMP), "RuntimeDefault")
    if not linux:
        return patcher
    for list_field, index, container in targets:
        context = container.get("securityContext")
        # most containers come without a context (nothing there can refuse it): no call
        if not context or not escalation_refused(as_map(context)):
            patcher.ensure((list_field, index, *_NO_ESCALATION), False)
        patcher.ensure((list_field, index, *_DROP), ["ALL"])
    return patcher


def new_ephemeral_containers(spec: Mapping[str, Any], old_spec: Mapping[str, Any] | None) -> list[tuple[str, int]]:
    """The ephemeral containers of ``spec`` that ``old_spec`` does not have (by name: they never change)."""
    old_names = {
        str(c.get("name")) for c in as_list((old_spec or {}).get("ephemeralContainers")) if isinstance(c, dict)
    }
    return [
        ("ephemeralContainers", index)
        for index, container in enumerate(as_list(spec.get("ephemeralContainers")))
        if isinstance(container, dict) and str(container.get("name")) not in old_names
    ]


# --- the tool profile -------------------------------------------------------------------


def _where(name: str | None) -> str:
    return "pod" if name is None else f'container "{name}"'


# What clean_host_path accepts, in the words of every error that refuses a path.
HOST_PATH_FORM = "an absolute path without '..'"


@lru_cache(maxsize=4096)
def clean_host_path(raw: str) -> str | None:
    """``raw`` as the node names it, or ``None`` when it is relative or climbs with ``..``.

    One normalization for the allowlist's rules and for the volumes judged against them: ``.``,
    repeated and trailing ``/`` go (``normpath`` keeps a leading ``//``, which Linux reads as
    ``/``). Paths repeat: remembered.
    """
    if ".." in raw.split("/") or not raw.startswith("/"):
        return None
    return posixpath.normpath("/" + raw.lstrip("/"))


def _volume_type_finding(name: str, kind: str) -> CheckResult:
    allowed = ", ".join(sorted(_TOOL_VOLUME_TYPES))
    detail = f'volume "{name}" uses {kind!r}; tool pods may use hostPath from the allowlist and {allowed}'
    return CheckResult("volumes", "volume type", detail)


def _csi_finding(name: str, driver: Any, tool: ToolProfile) -> CheckResult:
    allowed = ", ".join(sorted(tool.csi_drivers)) or "none"
    detail = (
        f'volume "{name}" uses the CSI driver {driver!r} inline; tool pods may use only the drivers '
        f"in podSecurity.toolProfile.csiDrivers (allowed: {allowed})"
    )
    return CheckResult("csi", "CSI driver", detail)


def _host_path_findings(spec: Mapping[str, Any], tool: ToolProfile, namespace: str) -> list[CheckResult]:
    found = []
    rules = tool.host_path_rules(namespace)
    read_only_volumes: dict[str, str] = {}
    for item in as_list(spec.get("volumes")):
        volume = as_map(item)
        host_path = volume.get("hostPath")
        name = str(volume.get("name", ""))
        if host_path is None:
            kind = volume_type(volume)
            if kind is not None and kind not in _TOOL_VOLUME_TYPES:
                found.append(_volume_type_finding(name, kind))
            if volume.get("csi") is not None:  # whatever volume_type saw first
                driver = as_map(volume.get("csi")).get("driver")
                if not isinstance(driver, str) or driver not in tool.csi_drivers:
                    found.append(_csi_finding(name, driver, tool))
            continue
        raw = str(as_map(host_path).get("path", ""))
        path = clean_host_path(raw)
        if path is None:
            found.append(CheckResult("hostPath", "hostPath", f'volume "{name}" path {raw!r} must be {HOST_PATH_FORM}'))
            continue
        decided = tool.host_path_rule(namespace, path)
        if decided is None:
            allowed_text = ", ".join(rule.describe(allowed) for rule, allowed in rules)
            found.append(
                CheckResult(
                    "hostPath",
                    "hostPath",
                    f'volume "{name}" path {raw!r} is not allowed (allowed: {allowed_text or "none"})',
                )
            )
        elif decided[0].read_only:
            read_only_volumes[name] = decided[1]
    if read_only_volumes:
        for _field, _index, container in containers(spec):
            for item in as_list(container.get("volumeMounts")):
                mount = as_map(item)
                volume_name = str(mount.get("name", ""))
                if volume_name in read_only_volumes and mount.get("readOnly") is not True:
                    found.append(
                        CheckResult(
                            "hostPath",
                            "hostPath read-only",
                            f'container "{container.get("name", "")}" must mount volume "{volume_name}" '
                            f"({read_only_volumes[volume_name]}) with readOnly: true",
                        )
                    )
    return found


# What the restricted level allows at its newest version; hostPath comes from the allowlist.
_TOOL_VOLUME_TYPES = RESTRICTED_VOLUME_TYPES_1_33


def _context_findings(spec: Mapping[str, Any], identity: Identity | None) -> list[CheckResult]:  # noqa: C901, PLR0912 (one walk on the hot path)
    """Identity (uid, gid, fsGroup, supplementalGroups) and hardening, in one walk.

    Every pod spec of a tool namespace comes through here; a compliant one costs a few
    comparisons per container. Findings keep the order people read them in: per field,
    the pod first, then each container.
    """
    pod = as_map(spec.get("securityContext"))
    uid, gid = (identity.uid, identity.gid) if identity is not None else (None, None)
    contexts: list[tuple[str | None, Any]] = [(None, pod)]
    for _field, _index, container in containers(spec):
        contexts.append((str(container.get("name", "")), container.get("securityContext")))
    wrong_user: list[str] = []
    wrong_group: list[str] = []
    seccomp: list[str] = []
    seccomp_unset: list[str] = []  # containers that leave seccomp to the pod
    hardening: list[CheckResult] = []
    user_unset = group_unset = False  # some container leaves it to the pod
    for name, context in contexts:
        if not context or not isinstance(context, dict):
            if name is not None:
                hardening.extend(_hardening_findings(name, context))
                user_unset = group_unset = True
                seccomp_unset.append(name)
            continue
        security: dict[str, Any] = context  # dict-typed: compiled, its gets are direct calls
        if name is not None and not _plainly_hardened(security):
            hardening.extend(_hardening_findings(name, security))
        user, group, profile = security.get("runAsUser"), security.get("runAsGroup"), security.get("seccompProfile")
        if user is None:
            user_unset = user_unset or name is not None
        elif uid is not None and user != uid:
            wrong_user.append(f"{_where(name)} sets securityContext.runAsUser={user}; only {uid} is allowed")
        if group is None:
            group_unset = group_unset or name is not None
        elif gid is not None and group != gid:
            wrong_group.append(f"{_where(name)} sets securityContext.runAsGroup={group}; only {gid} is allowed")
        kind = as_map(profile).get("type")
        if kind is None:
            if name is not None:
                seccomp_unset.append(name)
        elif kind != "RuntimeDefault":
            seccomp.append(f'{_where(name)} sets seccompProfile.type={kind!r}; only "RuntimeDefault" is allowed')
    if seccomp_unset and as_map(pod.get("seccompProfile")).get("type") is None:
        seccomp.insert(0, _seccomp_unset_detail(seccomp_unset))
    found: list[CheckResult] = []
    if identity is not None:
        if pod.get("runAsUser") is None and user_unset:
            found.append(CheckResult("runAsUser", "runAsUser", f"pod must set securityContext.runAsUser={uid}"))
        found.extend(CheckResult("runAsUser", "runAsUser", detail) for detail in wrong_user)
        if pod.get("runAsGroup") is None and group_unset:
            found.append(CheckResult("runAsGroup", "runAsGroup", f"pod must set securityContext.runAsGroup={gid}"))
        found.extend(CheckResult("runAsGroup", "runAsGroup", detail) for detail in wrong_group)
        fs_group = pod.get("fsGroup")
        if fs_group is None:
            found.append(CheckResult("fsGroup", "fsGroup", f"pod must set securityContext.fsGroup={gid}"))
        elif fs_group != gid:
            detail = f"pod sets securityContext.fsGroup={fs_group}; only {gid} is allowed"
            found.append(CheckResult("fsGroup", "fsGroup", detail))
        extra_groups = [g for g in as_list(pod.get("supplementalGroups")) if g != gid]
        if extra_groups:
            detail = f"pod sets supplementalGroups {extra_groups}; only {gid} is allowed"
            found.append(CheckResult("supplementalGroups", "supplementalGroups", detail))
    found.extend(CheckResult("seccompProfile", "seccompProfile", detail) for detail in seccomp)
    found.extend(hardening)
    return found


def _seccomp_unset_detail(names: list[str]) -> str:
    """Unset at every level (baseline and privileged allow it): the runtime would run the
    container Unconfined. Where /mutate runs, it has set the pod's; here nothing filled it in."""
    listed = ", ".join(f'"{name}"' for name in names)
    noun = "container" if len(names) == 1 else "containers"
    return (
        f'pod (or {noun} {listed}) must set securityContext.seccompProfile.type="RuntimeDefault"; '
        "unset, it runs Unconfined on a node without the kubelet's --seccomp-default"
    )


def _plainly_hardened(security: dict[str, Any]) -> bool:
    """True when :func:`_hardening_findings` finds nothing, in a few comparisons: a compliant
    container (every one /mutate filled in) builds no list and no text."""
    privileged = security.get("privileged")
    if (privileged is not None and privileged is not False) or security.get("allowPrivilegeEscalation") is not False:
        return False
    capabilities = security.get("capabilities")
    if not isinstance(capabilities, dict) or capabilities.get("add") is not None:
        return False
    drop = capabilities.get("drop")
    return isinstance(drop, list) and "ALL" in drop


def _hardening_findings(name: str, context: Any) -> list[CheckResult]:
    """No privileged container, no privilege escalation, every capability dropped and none added.

    At every Pod Security level: these are what keep a setuid binary or a file capability in
    a custom image from making the tool's uid into root. Unset counts as safe only where the
    runtime's default is safe: ``privileged`` defaults to false, but the kubelet sets
    no_new_privs only for an explicit ``allowPrivilegeEscalation: false``, and without
    ``drop: [ALL]`` the runtime's default capabilities stay.
    """
    security = as_map(context)  # a dict-typed name: compiled, its gets are direct calls
    found: list[CheckResult] = []
    privileged = security.get("privileged")
    if privileged is not None and privileged is not False:  # true, or a value the API would refuse
        # spelled as the tenant wrote it (JSON/YAML: true), never Python's True
        shown = json.dumps(privileged) if isinstance(privileged, bool | int | float | str) else "a non-boolean"
        detail = f'container "{name}" sets securityContext.privileged={shown}; tool pods are never privileged'
        found.append(CheckResult("privileged", "privileged", detail))
    if security.get("allowPrivilegeEscalation") is not False:
        detail = f'container "{name}" must set securityContext.allowPrivilegeEscalation=false'
        found.append(CheckResult("allowPrivilegeEscalation", "allowPrivilegeEscalation", detail))
    capabilities = as_map(security.get("capabilities"))
    if "ALL" not in as_list(capabilities.get("drop")):
        detail = f'container "{name}" must set securityContext.capabilities.drop=["ALL"]'
        found.append(CheckResult("capabilities", "capabilities", detail))
    extra = added_capabilities(capabilities)
    if extra:
        detail = f'container "{name}" adds {extra}; tool pods add no capabilities'
        found.append(CheckResult("capabilities", "capabilities", detail))
    return found


def _groups_policy_finding(spec: Mapping[str, Any], tool: ToolProfile) -> tuple[CheckResult, Mode | None] | None:
    """``supplementalGroupsPolicy: Strict``, and the mode of its finding (None: the profile's).

    With ``Merge`` (the default) the runtime adds every group the image's /etc/group lists for
    the uid, so a custom image could give itself another tool's gid. Absent at /validate means
    the mutating webhook did not run or the API server dropped the field (a disabled feature
    gate): ``groups_policy_dropped`` says what that is worth.
    """
    value = as_map(spec.get("securityContext")).get("supplementalGroupsPolicy")
    if value == "Strict":
        return None
    if value is None:
        # Read by the tenant on every pod when whenDropped is warn: what it means for them, the
        # operator's side is in docs/toolforge.md (the API server drops it before v1.33).
        detail = (
            'securityContext.supplementalGroupsPolicy="Strict" is missing (imagegate sets it; an API server before '
            "v1.33 drops it), so groups the image's /etc/group lists for the tool's uid would apply too"
        )
        return CheckResult("supplementalGroupsPolicy", "supplementalGroupsPolicy", detail), tool.groups_policy_dropped
    detail = f'pod sets securityContext.supplementalGroupsPolicy={value!r}; only "Strict" is allowed'
    return CheckResult("supplementalGroupsPolicy", "supplementalGroupsPolicy", detail), None


def tool_profile_findings(
    spec: Mapping[str, Any], tool: ToolProfile, namespace: str, identity: Identity | None
) -> list[CheckResult]:
    """What the tool profile finds wrong with a pod spec, on top of the PSS level."""
    found = _host_path_findings(spec, tool, namespace)
    if identity is None:
        found.append(
            CheckResult(
                "identity",
                "tool identity",
                f"no uid/gid is known for namespace {namespace}; the platform admins add the tool's to imagegate's identities",
            )
        )
    if is_windows(spec):
        # The API server refuses every uid, gid and hardening field in a Windows pod.
        detail = 'pod sets spec.os.name="windows"; tool pods run as the tool\'s uid, which only Linux pods can'
        found.append(CheckResult("os", "spec.os.name", detail))
    found.extend(_context_findings(spec, identity))
    return found


# The level's checks the tool profile replaces with stricter ones of its own: its hostPath
# allowlist for the two volume checks; for the rest, its hardening and its seccomp rule
# (RuntimeDefault, set: not Localhost, not Unconfined, not unset), which hold at every level.
REPLACED_BY_TOOL_PROFILE = frozenset(
    {
        "hostPathVolumes",
        "restrictedVolumes",
        "privileged",
        "allowPrivilegeEscalation",
        "capabilities_baseline",
        "capabilities_restricted",
        "seccompProfile_baseline",
        "seccompProfile_restricted",
    }
)


def pod_findings(
    spec: Mapping[str, Any],
    metadata: Mapping[str, Any],
    profile: PodProfile,
    namespace: str,
    identity: Identity | None,
    running: bool = False,
) -> list[tuple[PodRules, CheckResult, Mode]]:
    """(rule set, result, mode) for everything wrong with one pod spec under ``profile``.

    ``running``: the spec is a running pod's (an UPDATE such as ``kubectl debug``), whose
    supplementalGroupsPolicy was judged at its creation and cannot change since.
    """
    results: list[tuple[PodRules, CheckResult, Mode]] = []
    mode = profile.mode
    skip = REPLACED_BY_TOOL_PROFILE if profile.tool is not None else frozenset()
    if profile.level is not _PRIVILEGED:
        for result in evaluate(profile.level, profile.version, metadata, spec, skip=skip):
            results.append((PodRules.POD_SECURITY, result, mode))
    if profile.tool is not None:
        for result in tool_profile_findings(spec, profile.tool, namespace, identity):
            results.append((PodRules.TOOL_PROFILE, result, mode))
        groups = None if running else _groups_policy_finding(spec, profile.tool)
        if groups is not None:
            result, groups_mode = groups
            results.append((PodRules.TOOL_PROFILE, result, mode if groups_mode is None else groups_mode))
    return results
