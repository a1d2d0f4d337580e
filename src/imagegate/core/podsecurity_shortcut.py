"""Pod Security evaluation (:func:`evaluate`): the shortcut for pods that plainly pass, then the named checks.

Most pods a platform admits look alike: a non-root pod security context, containers
that drop all capabilities and forbid privilege escalation, ordinary volumes. Running
every check on them costs a dozen walks over the containers per pod, on the path of
every pod creation. ``plainly_passes`` is one walk that accepts only the plain forms
below and gives up (returns False) on anything else, and then the named checks decide.

It must never skip a check. So it is not a second list of rules: it says, field by field,
which checks' requirement on that field its walk reproduces (``_JUDGED``), and it runs only
for a set of checks every one of whose declared fields (``VersionedCheck.reads``) it judges
for that very check function. A check it does not know (added, replaced, given a new
version's entry, or reading one more field) turns the shortcut off for every level and
version that runs it; the named checks then decide every pod. Within a plan, a security context key that some check reads and the walk does not
judge by value means "run the checks". Tests hold the shortcut to the checks on every PSA
fixture and on generated pods (tests/test_podsecurity_shortcut.py), and every check to its
declared fields (tests/test_podsecurity_fields.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from imagegate.core.podsecurity import (
    APPARMOR_ANNOTATION_PREFIX,
    CONTAINER_CONTEXT_PATH,
    CONTAINER_PATH,
    HANDLER_HOST_PATHS,
    LEVELS,
    POD_CONTEXT_PATH,
    PROBES,
    RESTRICTED_VOLUME_TYPES_1_0,
    RESTRICTED_VOLUME_TYPES_1_33,
    ActiveCheck,
    Check,
    CheckFn,
    Level,
    Version,
    check_allow_privilege_escalation,
    check_apparmor_profile_1_0,
    check_apparmor_profile_1_30,
    check_capabilities_baseline,
    check_capabilities_restricted,
    check_host_namespaces,
    check_host_path_volumes,
    check_host_ports,
    check_host_probes,
    check_privileged,
    check_proc_mount_1_0,
    check_proc_mount_1_35,
    check_proc_mount_restricted,
    check_restricted_volumes_1_0,
    check_restricted_volumes_1_33,
    check_run_as_non_root,
    check_run_as_user,
    check_seccomp_baseline,
    check_seccomp_restricted,
    check_selinux_options_1_0,
    check_selinux_options_1_31,
    check_sysctls_1_0,
    check_sysctls_1_27,
    check_sysctls_1_29,
    check_sysctls_1_32,
    check_sysctls_1_37,
    check_windows_host_process,
    checks_for,
)
from imagegate.core.podspec import pod_view
from imagegate.core.records import CheckResult
from imagegate.core.workloads import CONTAINER_LISTS

__all__ = ["ShortcutPlan", "evaluate", "plainly_passes", "shortcut_plan"]


_CONTAINER_CHECKS = frozenset(
    {
        check_privileged,
        check_capabilities_baseline,
        check_host_ports,
        check_apparmor_profile_1_30,
        check_selinux_options_1_0,
        check_selinux_options_1_31,
        check_proc_mount_1_0,
        check_proc_mount_1_35,
        check_seccomp_baseline,
        check_windows_host_process,
        check_host_probes,
        check_allow_privilege_escalation,
        check_run_as_non_root,
        check_run_as_user,
        check_seccomp_restricted,
        check_capabilities_restricted,
        check_proc_mount_restricted,
    }
)
_APPARMOR_CHECKS = frozenset({check_apparmor_profile_1_0, check_apparmor_profile_1_30})
_SELINUX_CHECKS = frozenset({check_selinux_options_1_0, check_selinux_options_1_31})
_SYSCTLS_CHECKS = frozenset(
    {check_sysctls_1_0, check_sysctls_1_27, check_sysctls_1_29, check_sysctls_1_32, check_sysctls_1_37}
)
# The volume sources each restrictedVolumes entry allows (the walk allows the same ones).
_ALLOWED_VOLUMES: dict[CheckFn, frozenset[str]] = {
    check_restricted_volumes_1_0: RESTRICTED_VOLUME_TYPES_1_0,
    check_restricted_volumes_1_33: RESTRICTED_VOLUME_TYPES_1_33,
}
_JUDGED: dict[str, frozenset[CheckFn]] = {
    # not True
    "spec.hostNetwork": frozenset({check_host_namespaces}),
    "spec.hostPID": frozenset({check_host_namespaces}),
    "spec.hostIPC": frozenset({check_host_namespaces}),
    # names only label messages
    f"{CONTAINER_PATH}.name": _CONTAINER_CHECKS,
    "spec.volumes[*].name": frozenset({check_host_path_volumes}),
    # not True
    f"{CONTAINER_CONTEXT_PATH}.privileged": frozenset({check_privileged}),
    # any added capability: run the checks; drop must hold ALL where capabilities_restricted runs
    f"{CONTAINER_CONTEXT_PATH}.capabilities.add": frozenset(
        {check_capabilities_baseline, check_capabilities_restricted}
    ),
    f"{CONTAINER_CONTEXT_PATH}.capabilities.drop": frozenset({check_capabilities_restricted}),
    # the sources: hostPath refused where hostPathVolumes runs, the restricted types where restrictedVolumes does
    "spec.volumes[*]": frozenset(_ALLOWED_VOLUMES),
    "spec.volumes[*].hostPath": frozenset({check_host_path_volumes}),
    f"{CONTAINER_PATH}.ports[*].hostPort": frozenset({check_host_ports}),
    # an AppArmor annotation, or any appArmorProfile: run the checks
    "metadata.annotations": _APPARMOR_CHECKS,
    f"{POD_CONTEXT_PATH}.appArmorProfile.type": frozenset({check_apparmor_profile_1_30}),
    f"{CONTAINER_CONTEXT_PATH}.appArmorProfile.type": frozenset({check_apparmor_profile_1_30}),
    # present at all: run the checks (procMount present makes hostUsers' relaxation moot)
    f"{POD_CONTEXT_PATH}.seLinuxOptions": _SELINUX_CHECKS,
    f"{CONTAINER_CONTEXT_PATH}.seLinuxOptions": _SELINUX_CHECKS,
    "spec.hostUsers": frozenset({check_proc_mount_1_35}),
    f"{CONTAINER_CONTEXT_PATH}.procMount": frozenset(
        {check_proc_mount_1_0, check_proc_mount_1_35, check_proc_mount_restricted}
    ),
    f"{POD_CONTEXT_PATH}.sysctls[*].name": _SYSCTLS_CHECKS,
    f"{POD_CONTEXT_PATH}.windowsOptions.hostProcess": frozenset({check_windows_host_process}),
    f"{CONTAINER_CONTEXT_PATH}.windowsOptions.hostProcess": frozenset({check_windows_host_process}),
    # RuntimeDefault or Localhost, or unset where the pod sets one (restricted)
    f"{POD_CONTEXT_PATH}.seccompProfile.type": frozenset({check_seccomp_baseline, check_seccomp_restricted}),
    f"{CONTAINER_CONTEXT_PATH}.seccompProfile.type": frozenset({check_seccomp_baseline, check_seccomp_restricted}),
    # no host in any probe or hook
    **{path: frozenset({check_host_probes}) for path in HANDLER_HOST_PATHS},
    # the walk treats every pod as Linux: stricter than the windows exceptions
    "spec.os.name": frozenset(
        {check_allow_privilege_escalation, check_seccomp_restricted, check_capabilities_restricted}
    ),
    # explicit false
    f"{CONTAINER_CONTEXT_PATH}.allowPrivilegeEscalation": frozenset({check_allow_privilege_escalation}),
    # true in the container, or unset there and true in the pod; never false in the pod
    f"{POD_CONTEXT_PATH}.runAsNonRoot": frozenset({check_run_as_non_root}),
    f"{CONTAINER_CONTEXT_PATH}.runAsNonRoot": frozenset({check_run_as_non_root}),
    # not 0
    f"{POD_CONTEXT_PATH}.runAsUser": frozenset({check_run_as_user}),
    f"{CONTAINER_CONTEXT_PATH}.runAsUser": frozenset({check_run_as_user}),
}
_KNOWN_CHECKS = frozenset().union(*_JUDGED.values())
# Security context keys the walk judges by value; any other key that a check reads means "run the checks".
_VALUE_JUDGED_POD_KEYS = frozenset({"runAsNonRoot", "runAsUser", "seccompProfile"})
_VALUE_JUDGED_CONTAINER_KEYS = frozenset(
    {"privileged", "allowPrivilegeEscalation", "capabilities", "runAsNonRoot", "runAsUser", "seccompProfile"}
)
_PLAIN_SECCOMP = ("RuntimeDefault", "Localhost")


@dataclass(frozen=True, slots=True)
class ShortcutPlan:
    """What the walk requires for one set of checks (made once per level, version and skip)."""

    allowed_volumes: frozenset[str] | None  # None: any source
    refuse_host_path: bool
    no_escalation: bool
    drop_all: bool
    non_root: bool
    seccomp: bool
    pod_give_up: frozenset[str]  # pod securityContext keys that mean "run the checks"
    container_give_up: frozenset[str]


def _context_keys(paths: frozenset[str], prefix: str) -> frozenset[str]:
    return frozenset(path[len(prefix) :].split(".")[0].split("[")[0] for path in paths if path.startswith(prefix))


def shortcut_plan(checks: tuple[ActiveCheck, ...]) -> ShortcutPlan | None:
    """The walk for ``checks``, or ``None`` when it does not judge every field of every one of them."""
    for _id, entry in checks:
        if entry.run not in _KNOWN_CHECKS:
            return None
        for path in entry.reads:
            if entry.run not in _JUDGED.get(path, ()):
                return None
    runs = {entry.run for _id, entry in checks}
    read = frozenset(path for _id, entry in checks for path in entry.reads)
    allowed = None
    for run in runs:
        allowed = _ALLOWED_VOLUMES.get(run, allowed)
    return ShortcutPlan(
        allowed_volumes=allowed,
        refuse_host_path=check_host_path_volumes in runs,
        no_escalation=check_allow_privilege_escalation in runs,
        drop_all=check_capabilities_restricted in runs,
        non_root=check_run_as_non_root in runs,
        seccomp=check_seccomp_restricted in runs,
        pod_give_up=_context_keys(read, f"{POD_CONTEXT_PATH}.") - _VALUE_JUDGED_POD_KEYS,
        container_give_up=_context_keys(read, f"{CONTAINER_CONTEXT_PATH}.") - _VALUE_JUDGED_CONTAINER_KEYS,
    )


@lru_cache(maxsize=64)
def _selection(
    level: Level, version: Version, skip: frozenset[str], catalog: tuple[Check, ...] | None
) -> tuple[tuple[ActiveCheck, ...], ShortcutPlan | None]:
    checks = checks_for(level, version, skip, catalog)
    return checks, shortcut_plan(checks)


_SELECTIONS_MAX = 64  # levels x versions x skip sets in use: a handful
_SELECTIONS: dict[tuple[Level, Version, frozenset[str]], tuple[tuple[ActiveCheck, ...], ShortcutPlan | None]] = {}


def _plain_seccomp(context: Mapping[str, Any]) -> bool | None:
    """True: set to an allowed type; None: unset; False: anything else."""
    profile = context.get("seccompProfile")
    if profile is None:
        return None
    return isinstance(profile, dict) and profile.get("type") in _PLAIN_SECCOMP


_HANDLER_FIELDS = frozenset((*PROBES, "lifecycle"))


def _none_of(names: frozenset[str], keys: dict[str, Any]) -> bool:
    """Whether ``keys`` has none of ``names`` (compiled, a loop of direct lookups; ``keys().isdisjoint``
    was two method calls by name, several times a container's other checks). Loops, not ``all()``:
    interpreted, a generator costs a frame per call."""
    if len(keys) <= len(names):  # the smaller side walked, as isdisjoint does
        for key in keys:  # noqa: SIM110
            if key in names:
                return False
        return True
    for name in names:  # noqa: SIM110
        if name in keys:
            return False
    return True


def _plain_handlers(container: dict[str, Any]) -> bool:
    if _none_of(_HANDLER_FIELDS, container):
        return True  # no probe, no hook: nothing that could name a host
    for probe in PROBES:
        handler = container.get(probe)
        if handler is not None and not _plain_handler(handler):
            return False
    lifecycle = container.get("lifecycle")
    if lifecycle is None:
        return True
    if not isinstance(lifecycle, dict):
        return False
    return all(lifecycle.get(hook) is None or _plain_handler(lifecycle[hook]) for hook in ("postStart", "preStop"))


def _plain_handler(handler: Any) -> bool:
    if not isinstance(handler, dict):
        return False
    for action in ("httpGet", "tcpSocket"):
        target = handler.get(action)
        if target is not None and (not isinstance(target, dict) or target.get("host") not in (None, "")):
            return False
    return True


def _plain_container(  # noqa: C901 (the shortcut: every field a check reads, tested in one pass)
    container: Any, plan: ShortcutPlan, pod_seccomp: bool | None, pod_non_root: bool
) -> bool:
    if not isinstance(container, dict):
        return False
    context = container.get("securityContext")
    if context is None:
        context = {}
    elif not isinstance(context, dict) or not _none_of(plan.container_give_up, context):
        return False
    seccomp = _plain_seccomp(context)
    if seccomp is False or context.get("runAsUser") == 0 or context.get("privileged") is True:
        return False
    ports = container.get("ports")
    if ports is not None:
        if not isinstance(ports, list):
            return False
        for port in ports:
            if not isinstance(port, dict) or port.get("hostPort") not in (None, 0):
                return False
    capabilities = context.get("capabilities")
    if capabilities is not None and (not isinstance(capabilities, dict) or capabilities.get("add")):
        return False  # any added capability: let the checks name it
    if plan.no_escalation and context.get("allowPrivilegeEscalation") is not False:
        return False
    if plan.drop_all:
        drop = capabilities.get("drop") if capabilities is not None else None
        if not isinstance(drop, list) or "ALL" not in drop:
            return False
    if plan.non_root:
        non_root = context.get("runAsNonRoot")
        if non_root is not True and (non_root is not None or not pod_non_root):
            return False
    if plan.seccomp and seccomp is None and pod_seccomp is None:
        return False
    return _plain_handlers(container)


def plainly_passes(
    level: Level, version: Version, metadata: Mapping[str, Any], spec: Mapping[str, Any], skip: frozenset[str]
) -> bool:
    """True only if every check of ``level`` at ``version`` (less ``skip``) passes ``spec``.

    False means "not plain": the named checks must decide. See the comment above.
    """
    if level is not Level.BASELINE and level is not Level.RESTRICTED:
        return False
    plan = _selection(level, version, skip, None)[1]
    return plan is not None and _plainly_passes(plan, metadata, spec)


def _plainly_passes(  # noqa: C901, PLR0912 (the shortcut: every field a check reads, tested in one pass)
    plan: ShortcutPlan, metadata: Mapping[str, Any], spec: Mapping[str, Any]
) -> bool:
    if spec.get("hostNetwork") is True or spec.get("hostPID") is True or spec.get("hostIPC") is True:
        return False
    annotations = metadata.get("annotations")
    if annotations:
        if not isinstance(annotations, dict):
            return False
        if any(str(key).startswith(APPARMOR_ANNOTATION_PREFIX) for key in annotations):
            return False
    pod = spec.get("securityContext")
    if pod is None:
        pod = {}
    elif not isinstance(pod, dict) or not _none_of(plan.pod_give_up, pod):
        return False
    pod_seccomp = _plain_seccomp(pod)
    pod_non_root = pod.get("runAsNonRoot")
    if pod_seccomp is False or pod.get("runAsUser") == 0 or pod_non_root is False:
        return False
    allowed_volumes, refuse_host_path = plan.allowed_volumes, plan.refuse_host_path
    if allowed_volumes is not None or refuse_host_path:
        volumes = spec.get("volumes")
        if volumes is not None:
            if not isinstance(volumes, list):
                return False
            for volume in volumes:
                if not isinstance(volume, dict):
                    return False
                for key, value in volume.items():
                    if key == "name" or value is None:
                        continue
                    if (refuse_host_path and key == "hostPath") or (
                        allowed_volumes is not None and key not in allowed_volumes
                    ):
                        return False
    for field in CONTAINER_LISTS:
        listed = spec.get(field)
        if listed is None:
            continue
        if not isinstance(listed, list):
            return False
        for container in listed:
            if not _plain_container(container, plan, pod_seccomp, pod_non_root is True):
                return False
    return True


def evaluate(
    level: Level,
    version: Version,
    metadata: Mapping[str, Any],
    spec: Mapping[str, Any],
    *,
    skip: frozenset[str] = frozenset(),
    shortcut: bool = True,
    catalog: tuple[Check, ...] | None = None,
) -> list[CheckResult]:
    """Every failed check of ``level`` at ``version`` for one pod (empty: the pod passes).

    ``shortcut=False`` runs every named check even on a plainly compliant pod (the tests
    hold the shortcut to that); ``catalog`` replaces ``CHECKS``.
    """
    if level not in LEVELS:
        raise ValueError(f"unknown Pod Security level {level!r}; use one of {', '.join(LEVELS)}")
    # the catalogue's own selections by a plain dict (every pod asks; lru_cache's key and call cost more)
    selected = _SELECTIONS.get((level, version, skip)) if catalog is None else None
    if selected is None:
        selected = _selection(level, version, skip, catalog)
        if catalog is None and len(_SELECTIONS) < _SELECTIONS_MAX:
            _SELECTIONS[(level, version, skip)] = selected
    checks, plan = selected
    if shortcut and plan is not None and checks and _plainly_passes(plan, metadata, spec):
        return []
    failed = []
    spec = pod_view(spec)
    for _id, entry in checks:
        result = entry.run(metadata, spec)
        if result is not None:
            failed.append(result)
    return failed
