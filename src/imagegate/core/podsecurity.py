"""Pod Security Standards, checked the way Kubernetes' pod-security-admission does.

Each check is owned by a level (``baseline`` or ``restricted``) and is a list of versioned
entries, as in pod-security-admission's check registry: each entry is a small named function
over a pod's metadata and spec, valid from its Kubernetes version until the next entry's. What
changed between versions is which entry runs, never an ``if version`` inside a check. A level
includes the checks of the levels below it. A policy may pin a version (``v1.25`` to ``v1.37``)
or follow ``latest``. The tests run upstream's fixtures of every one of those versions.

Messages follow PSA's form, ``<reason> (<detail>)``, e.g.
``allowPrivilegeEscalation != false (container "app" must set securityContext.allowPrivilegeEscalation=false)``.

This module is the check registry, as upstream's ``policy/check_*.go``: every check, its
versioned entries and the fields each entry declares it reads (``reads``), validated at import
(:func:`validate_checks`), and :func:`checks_for` choosing those in force. A pod is evaluated by
core/podsecurity_shortcut.py (``evaluate``), whose shortcut for plainly passing pods relies on
those declarations; the checks read pods through core/podspec.py.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from typing import Any

from imagegate.core.podspec import added_capabilities, as_list, as_map, containers, is_windows, volume_type
from imagegate.core.records import CheckResult

__all__ = [
    "APPARMOR_ANNOTATION_PREFIX",
    "CHECKS",
    "CONTAINER_CONTEXT_PATH",
    "CONTAINER_PATH",
    "HANDLER_HOST_PATHS",
    "LATEST_VERSION",
    "LEVELS",
    "OLDEST_VERSION",
    "POD_CONTEXT_PATH",
    "PROBES",
    "RESTRICTED_VOLUME_TYPES_1_0",
    "RESTRICTED_VOLUME_TYPES_1_33",
    "ActiveCheck",
    "Check",
    "CheckFn",
    "Level",
    "Version",
    "VersionedCheck",
    "checks_for",
    "parse_version",
    "validate_checks",
]


class Level(StrEnum):
    """A Pod Security Standards level, least strict first: each includes the checks of the ones before it."""

    PRIVILEGED = "privileged"
    BASELINE = "baseline"
    RESTRICTED = "restricted"


LEVELS = tuple(Level)
Version = tuple[int, int]
LATEST_VERSION: Version = (1, 37)
OLDEST_VERSION: Version = (1, 25)

Pod = Mapping[str, Any]
CheckFn = Callable[[Mapping[str, Any], Mapping[str, Any]], CheckResult | None]


@dataclass(frozen=True, slots=True)
class VersionedCheck:
    """What a check does from Kubernetes version ``since`` on (until the next entry's)."""

    since: Version
    run: CheckFn  # (metadata, spec) -> the failure, or None
    reads: tuple[str, ...]  # the fields it looks at (see CHECKS)


@dataclass(frozen=True, slots=True)
class Check:
    id: str
    level: Level
    versions: tuple[VersionedCheck, ...]  # oldest first

    def at(self, version: Version) -> VersionedCheck | None:
        """The entry in force at ``version``; ``None`` before the check existed."""
        found = None
        for entry in self.versions:
            if entry.since <= version:
                found = entry
        return found


def parse_version(text: str) -> Version:
    """``latest`` or ``v1.N`` (N from 25 on); anything else is a ``ValueError``."""
    if text == "latest":
        return LATEST_VERSION
    match = re.fullmatch(r"v1\.(\d+)", text)
    if match is None:
        raise ValueError(f"{text!r} is not a Pod Security version (write 'latest' or e.g. 'v1.37')")
    version = (1, int(match.group(1)))
    if version < OLDEST_VERSION:
        raise ValueError(f"{text!r}: imagegate knows the Pod Security Standards from v1.25 on")
    return min(version, LATEST_VERSION)  # a newer pin means "as new as we know"


def _name(container: Mapping[str, Any]) -> str:
    return str(container.get("name", ""))


def _quoted(names: list[str]) -> str:
    return ", ".join(f'"{n}"' for n in names)


def _containers_phrase(names: list[str]) -> str:
    noun = "container" if len(names) == 1 else "containers"
    return f"{noun} {_quoted(names)}"


def _pod_context(spec: Mapping[str, Any]) -> Mapping[str, Any]:
    return as_map(spec.get("securityContext"))


def _context(container: Mapping[str, Any]) -> Mapping[str, Any]:
    return as_map(container.get("securityContext"))


# --- baseline -------------------------------------------------------------------------


def check_host_namespaces(_meta: Pod, spec: Pod) -> CheckResult | None:
    used = [f"{field}=true" for field in ("hostNetwork", "hostPID", "hostIPC") if spec.get(field) is True]
    return CheckResult("hostNamespaces", "host namespaces", ", ".join(used)) if used else None


def check_privileged(_meta: Pod, spec: Pod) -> CheckResult | None:
    bad = [_name(c) for _, _, c in containers(spec) if _context(c).get("privileged") is True]
    if not bad:
        return None
    return CheckResult(
        "privileged", "privileged", f"{_containers_phrase(bad)} must not set securityContext.privileged=true"
    )


BASELINE_CAPABILITIES = frozenset(
    {
        "AUDIT_WRITE",
        "CHOWN",
        "DAC_OVERRIDE",
        "FOWNER",
        "FSETID",
        "KILL",
        "MKNOD",
        "NET_BIND_SERVICE",
        "SETFCAP",
        "SETGID",
        "SETPCAP",
        "SETUID",
        "SYS_CHROOT",
    }
)


def check_capabilities_baseline(_meta: Pod, spec: Pod) -> CheckResult | None:
    details = []
    for _, _, container in containers(spec):
        added = added_capabilities(as_map(_context(container).get("capabilities")))
        forbidden = [cap for cap in added if cap not in BASELINE_CAPABILITIES]
        if forbidden:
            details.append(
                f'container "{_name(container)}" must not include {_quoted(forbidden)} in securityContext.capabilities.add'
            )
    return CheckResult("capabilities_baseline", "non-default capabilities", "; ".join(details)) if details else None


def check_host_path_volumes(_meta: Pod, spec: Pod) -> CheckResult | None:
    names = [
        str(as_map(v).get("name", "")) for v in as_list(spec.get("volumes")) if as_map(v).get("hostPath") is not None
    ]
    if not names:
        return None
    noun = "volume" if len(names) == 1 else "volumes"
    return CheckResult("hostPathVolumes", "hostPath volumes", f"{noun} {_quoted(names)}")


def check_host_ports(_meta: Pod, spec: Pod) -> CheckResult | None:
    details = []
    for _, _, container in containers(spec):
        ports = [as_map(p).get("hostPort") for p in as_list(container.get("ports"))]
        used = [str(p) for p in ports if p not in (None, 0)]
        if used:
            details.append(f'container "{_name(container)}" uses hostPort {", ".join(used)}')
    return CheckResult("hostPorts", "hostPort", "; ".join(details)) if details else None


APPARMOR_ANNOTATION_PREFIX = "container.apparmor.security.beta.kubernetes.io/"


def _apparmor_annotations(meta: Pod) -> list[str]:
    bad = []
    for key, value in as_map(meta.get("annotations")).items():
        if str(key).startswith(APPARMOR_ANNOTATION_PREFIX):
            text = str(value)
            if not (text in {"", "runtime/default"} or text.startswith("localhost/")):
                bad.append(f"{key}={text!r}")
    return bad


def _apparmor_result(bad: list[str]) -> CheckResult | None:
    return CheckResult("appArmorProfile", "forbidden AppArmor profiles", ", ".join(bad)) if bad else None


def check_apparmor_profile_1_0(meta: Pod, _spec: Pod) -> CheckResult | None:
    return _apparmor_result(_apparmor_annotations(meta))


def check_apparmor_profile_1_30(meta: Pod, spec: Pod) -> CheckResult | None:
    """From 1.30 also the appArmorProfile fields of the pod and its containers."""
    bad = _apparmor_annotations(meta)
    profiles = [("pod", as_map(_pod_context(spec).get("appArmorProfile")))]
    profiles += [
        (f'container "{_name(c)}"', as_map(_context(c).get("appArmorProfile"))) for _, _, c in containers(spec)
    ]
    for where, profile in profiles:
        kind = profile.get("type")
        if kind is not None and kind not in ("RuntimeDefault", "Localhost"):
            bad.append(f"{where} appArmorProfile.type={kind!r}")
    return _apparmor_result(bad)


SELINUX_TYPES_1_0 = frozenset({"", "container_t", "container_init_t", "container_kvm_t"})
SELINUX_TYPES_1_31 = SELINUX_TYPES_1_0 | {"container_engine_t"}


def check_selinux_options_1_0(_meta: Pod, spec: Pod) -> CheckResult | None:
    return _selinux_options(spec, SELINUX_TYPES_1_0)


def check_selinux_options_1_31(_meta: Pod, spec: Pod) -> CheckResult | None:
    return _selinux_options(spec, SELINUX_TYPES_1_31)


def _selinux_options(spec: Pod, allowed_types: frozenset[str]) -> CheckResult | None:
    bad = []
    contexts = [("pod", _pod_context(spec))] + [
        (f'container "{_name(c)}"', _context(c)) for _, _, c in containers(spec)
    ]
    for where, context in contexts:
        options = context.get("seLinuxOptions")
        if options is None:
            continue
        options = as_map(options)
        if options.get("type", "") not in allowed_types:
            bad.append(f"{where} seLinuxOptions.type={options.get('type')!r}")
        for field in ("user", "role"):
            if options.get(field, "") != "":
                bad.append(f"{where} seLinuxOptions.{field}={options.get(field)!r}")
    return CheckResult("seLinuxOptions", "seLinuxOptions", "; ".join(bad)) if bad else None


def _proc_mount_violations(spec: Pod) -> list[str]:
    return [_name(c) for _, _, c in containers(spec) if _context(c).get("procMount") not in (None, "", "Default")]


def check_proc_mount_1_35(meta: Pod, spec: Pod) -> CheckResult | None:
    """From 1.35 baseline allows an unmasked /proc inside a user namespace (hostUsers: false)."""
    return None if spec.get("hostUsers") is False else check_proc_mount_1_0(meta, spec)


def check_proc_mount_1_0(_meta: Pod, spec: Pod) -> CheckResult | None:
    bad = _proc_mount_violations(spec)
    if not bad:
        return None
    return CheckResult(
        "procMount",
        "procMount",
        f"{_containers_phrase(bad)} must not set securityContext.procMount to a non-default value",
    )


def check_seccomp_baseline(_meta: Pod, spec: Pod) -> CheckResult | None:
    bad = []
    contexts = [("pod", _pod_context(spec))] + [
        (f'container "{_name(c)}"', _context(c)) for _, _, c in containers(spec)
    ]
    for where, context in contexts:
        if as_map(context.get("seccompProfile")).get("type") == "Unconfined":
            bad.append(f'{where} must not set securityContext.seccompProfile.type to "Unconfined"')
    return CheckResult("seccompProfile_baseline", "seccompProfile", "; ".join(bad)) if bad else None


# Safe sysctls, each set from the version that allowed it.
SAFE_SYSCTLS_1_0 = frozenset(
    {
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range",
        "net.ipv4.ip_unprivileged_port_start",
    }
)
SAFE_SYSCTLS_1_27 = SAFE_SYSCTLS_1_0 | {"net.ipv4.ip_local_reserved_ports"}
SAFE_SYSCTLS_1_29 = SAFE_SYSCTLS_1_27 | {
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
}
SAFE_SYSCTLS_1_32 = SAFE_SYSCTLS_1_29 | {"net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem"}
SAFE_SYSCTLS_1_37 = SAFE_SYSCTLS_1_32 | {"net.ipv4.tcp_slow_start_after_idle", "net.ipv4.tcp_notsent_lowat"}


def _forbidden_sysctls(spec: Pod, allowed: frozenset[str]) -> CheckResult | None:
    names = [str(as_map(s).get("name", "")) for s in as_list(_pod_context(spec).get("sysctls"))]
    bad = [n for n in names if n not in allowed]
    return CheckResult("sysctls", "forbidden sysctls", ", ".join(bad)) if bad else None


def check_sysctls_1_0(_meta: Pod, spec: Pod) -> CheckResult | None:
    return _forbidden_sysctls(spec, SAFE_SYSCTLS_1_0)


def check_sysctls_1_27(_meta: Pod, spec: Pod) -> CheckResult | None:
    return _forbidden_sysctls(spec, SAFE_SYSCTLS_1_27)


def check_sysctls_1_29(_meta: Pod, spec: Pod) -> CheckResult | None:
    return _forbidden_sysctls(spec, SAFE_SYSCTLS_1_29)


def check_sysctls_1_32(_meta: Pod, spec: Pod) -> CheckResult | None:
    return _forbidden_sysctls(spec, SAFE_SYSCTLS_1_32)


def check_sysctls_1_37(_meta: Pod, spec: Pod) -> CheckResult | None:
    return _forbidden_sysctls(spec, SAFE_SYSCTLS_1_37)


def check_windows_host_process(_meta: Pod, spec: Pod) -> CheckResult | None:
    bad = [
        where
        for where, context in [("pod", _pod_context(spec))]
        + [(f'container "{_name(c)}"', _context(c)) for _, _, c in containers(spec)]
        if as_map(context.get("windowsOptions")).get("hostProcess") is True
    ]
    return CheckResult("windowsHostProcess", "hostProcess", ", ".join(bad)) if bad else None


PROBES = ("livenessProbe", "readinessProbe", "startupProbe")


def _handlers(container: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    for probe in PROBES:
        if probe in container:
            yield probe, as_map(container[probe])
    if "lifecycle" in container:
        lifecycle = as_map(container["lifecycle"])
        for hook in ("postStart", "preStop"):
            yield f"lifecycle.{hook}", as_map(lifecycle.get(hook))


def check_host_probes(_meta: Pod, spec: Pod) -> CheckResult | None:
    bad = []
    for _, _, container in containers(spec):
        for where, handler in _handlers(container):
            for action in ("httpGet", "tcpSocket"):
                host = as_map(handler.get(action)).get("host")
                if host not in (None, ""):
                    bad.append(f'container "{_name(container)}" {where}.{action}.host={host!r}')
    return CheckResult("hostProbesAndHostLifecycle", "probe or lifecycle host", "; ".join(bad)) if bad else None


# --- restricted -----------------------------------------------------------------------

RESTRICTED_VOLUME_TYPES_1_0 = frozenset(
    {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret"}
)
RESTRICTED_VOLUME_TYPES_1_33 = RESTRICTED_VOLUME_TYPES_1_0 | {"image"}


def check_restricted_volumes_1_0(_meta: Pod, spec: Pod) -> CheckResult | None:
    return _restricted_volumes(spec, RESTRICTED_VOLUME_TYPES_1_0)


def check_restricted_volumes_1_33(_meta: Pod, spec: Pod) -> CheckResult | None:
    return _restricted_volumes(spec, RESTRICTED_VOLUME_TYPES_1_33)


def _restricted_volumes(spec: Pod, allowed: frozenset[str]) -> CheckResult | None:
    bad = []
    for volume in as_list(spec.get("volumes")):
        kind = volume_type(as_map(volume))
        if kind is not None and kind not in allowed:
            bad.append(f'volume "{as_map(volume).get("name", "")}" uses restricted volume type "{kind}"')
    return CheckResult("restrictedVolumes", "restricted volume types", "; ".join(bad)) if bad else None


def check_allow_privilege_escalation(_meta: Pod, spec: Pod) -> CheckResult | None:
    if is_windows(spec):
        return None
    bad = [_name(c) for _, _, c in containers(spec) if _context(c).get("allowPrivilegeEscalation") is not False]
    if not bad:
        return None
    return CheckResult(
        "allowPrivilegeEscalation",
        "allowPrivilegeEscalation != false",
        f"{_containers_phrase(bad)} must set securityContext.allowPrivilegeEscalation=false",
    )


def check_run_as_non_root(_meta: Pod, spec: Pod) -> CheckResult | None:
    pod_value = _pod_context(spec).get("runAsNonRoot")
    if pod_value is False:
        return CheckResult(
            "runAsNonRoot", "runAsNonRoot != true", "pod must not set securityContext.runAsNonRoot=false"
        )
    explicit_false = [_name(c) for _, _, c in containers(spec) if _context(c).get("runAsNonRoot") is False]
    unset = [_name(c) for _, _, c in containers(spec) if _context(c).get("runAsNonRoot") is None]
    if explicit_false:
        return CheckResult(
            "runAsNonRoot",
            "runAsNonRoot != true",
            f"{_containers_phrase(explicit_false)} must not set securityContext.runAsNonRoot=false",
        )
    if pod_value is not True and unset:
        return CheckResult(
            "runAsNonRoot",
            "runAsNonRoot != true",
            f"pod or {_containers_phrase(unset)} must set securityContext.runAsNonRoot=true",
        )
    return None


def check_run_as_user(_meta: Pod, spec: Pod) -> CheckResult | None:
    bad = ["pod"] if _pod_context(spec).get("runAsUser") == 0 else []
    bad += [f'container "{_name(c)}"' for _, _, c in containers(spec) if _context(c).get("runAsUser") == 0]
    return CheckResult("runAsUser", "runAsUser=0", f"{', '.join(bad)} must not set runAsUser=0") if bad else None


def check_seccomp_restricted(_meta: Pod, spec: Pod) -> CheckResult | None:
    if is_windows(spec):
        return None
    allowed = ("RuntimeDefault", "Localhost")
    pod_type = as_map(_pod_context(spec).get("seccompProfile")).get("type")
    bad = []
    if pod_type is not None and pod_type not in allowed:
        bad.append(f"pod must not set securityContext.seccompProfile.type to {pod_type!r}")
    unset = []
    for _, _, container in containers(spec):
        kind = as_map(_context(container).get("seccompProfile")).get("type")
        if kind is None:
            unset.append(_name(container))
        elif kind not in allowed:
            bad.append(f'container "{_name(container)}" must not set securityContext.seccompProfile.type to {kind!r}')
    if pod_type is None and unset:
        bad.append(
            f'pod or {_containers_phrase(unset)} must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost"'
        )
    return CheckResult("seccompProfile_restricted", "seccompProfile", "; ".join(bad)) if bad else None


def check_capabilities_restricted(_meta: Pod, spec: Pod) -> CheckResult | None:
    if is_windows(spec):
        return None
    not_dropping, adding = [], []
    for _, _, container in containers(spec):
        capabilities = as_map(_context(container).get("capabilities"))
        if "ALL" not in as_list(capabilities.get("drop")):
            not_dropping.append(_name(container))
        extra = [c for c in added_capabilities(capabilities) if c != "NET_BIND_SERVICE"]
        if extra:
            adding.append(
                f'container "{_name(container)}" must not include {_quoted(extra)} in securityContext.capabilities.add'
            )
    details = []
    if not_dropping:
        details.append(f'{_containers_phrase(not_dropping)} must set securityContext.capabilities.drop=["ALL"]')
    details.extend(adding)
    return CheckResult("capabilities_restricted", "unrestricted capabilities", "; ".join(details)) if details else None


def check_proc_mount_restricted(_meta: Pod, spec: Pod) -> CheckResult | None:
    bad = _proc_mount_violations(spec)
    if not bad:
        return None
    return CheckResult(
        "procMount_restricted",
        "procMount",
        f"{_containers_phrase(bad)} must not set securityContext.procMount to a non-default value",
    )


# Where a check looks, as PSA's checks list their fields. ``spec.containers[*]`` stands for
# every container list (initContainers, containers, ephemeralContainers); a path covers the
# whole value below it. tests/test_podsecurity_fields.py runs every check on recording pods
# and fails when a check reads a field its ``reads`` does not name.
CONTAINER_PATH = "spec.containers[*]"
CONTAINER_CONTEXT_PATH = f"{CONTAINER_PATH}.securityContext"
POD_CONTEXT_PATH = "spec.securityContext"
HANDLER_HOST_PATHS = tuple(
    f"{CONTAINER_PATH}.{handler}.{action}.host"
    for handler in ("livenessProbe", "readinessProbe", "startupProbe", "lifecycle.postStart", "lifecycle.preStop")
    for action in ("httpGet", "tcpSocket")
)


def _one(check_id: str, level: Level, since: Version, run: CheckFn, reads: tuple[str, ...]) -> Check:
    """A check that has not changed since it came."""
    return Check(check_id, level, (VersionedCheck(since, run, reads),))


_APPARMOR_READS = ("metadata.annotations",)
_SELINUX_READS = (
    f"{POD_CONTEXT_PATH}.seLinuxOptions",
    f"{CONTAINER_PATH}.name",
    f"{CONTAINER_CONTEXT_PATH}.seLinuxOptions",
)
_PROC_MOUNT_READS = (f"{CONTAINER_PATH}.name", f"{CONTAINER_CONTEXT_PATH}.procMount")
_SYSCTLS_READS = (f"{POD_CONTEXT_PATH}.sysctls[*].name",)

# The registry, as pod-security-admission's: a check whose meaning changed with a Kubernetes
# version has one entry per version (upstream's ``VersionedCheck``), oldest first.
CHECKS: tuple[Check, ...] = (
    _one(
        "hostNamespaces",
        Level.BASELINE,
        (1, 0),
        check_host_namespaces,
        ("spec.hostNetwork", "spec.hostPID", "spec.hostIPC"),
    ),
    _one(
        "privileged",
        Level.BASELINE,
        (1, 0),
        check_privileged,
        (f"{CONTAINER_PATH}.name", f"{CONTAINER_CONTEXT_PATH}.privileged"),
    ),
    _one(
        "capabilities_baseline",
        Level.BASELINE,
        (1, 0),
        check_capabilities_baseline,
        (f"{CONTAINER_PATH}.name", f"{CONTAINER_CONTEXT_PATH}.capabilities.add"),
    ),
    _one(
        "hostPathVolumes",
        Level.BASELINE,
        (1, 0),
        check_host_path_volumes,
        ("spec.volumes[*].name", "spec.volumes[*].hostPath"),
    ),
    _one(
        "hostPorts",
        Level.BASELINE,
        (1, 0),
        check_host_ports,
        (f"{CONTAINER_PATH}.name", f"{CONTAINER_PATH}.ports[*].hostPort"),
    ),
    Check(
        "appArmorProfile",
        Level.BASELINE,
        (
            VersionedCheck((1, 0), check_apparmor_profile_1_0, _APPARMOR_READS),
            VersionedCheck(
                (1, 30),
                check_apparmor_profile_1_30,
                (
                    *_APPARMOR_READS,
                    f"{POD_CONTEXT_PATH}.appArmorProfile.type",
                    f"{CONTAINER_PATH}.name",
                    f"{CONTAINER_CONTEXT_PATH}.appArmorProfile.type",
                ),
            ),
        ),
    ),
    Check(
        "seLinuxOptions",
        Level.BASELINE,
        (
            VersionedCheck((1, 0), check_selinux_options_1_0, _SELINUX_READS),
            VersionedCheck((1, 31), check_selinux_options_1_31, _SELINUX_READS),  # container_engine_t
        ),
    ),
    Check(
        "procMount",
        Level.BASELINE,
        (
            VersionedCheck((1, 0), check_proc_mount_1_0, _PROC_MOUNT_READS),
            VersionedCheck((1, 35), check_proc_mount_1_35, ("spec.hostUsers", *_PROC_MOUNT_READS)),
        ),
    ),
    _one(
        "seccompProfile_baseline",
        Level.BASELINE,
        (1, 19),
        check_seccomp_baseline,
        (
            f"{POD_CONTEXT_PATH}.seccompProfile.type",
            f"{CONTAINER_PATH}.name",
            f"{CONTAINER_CONTEXT_PATH}.seccompProfile.type",
        ),
    ),
    Check(
        "sysctls",
        Level.BASELINE,
        (
            VersionedCheck((1, 0), check_sysctls_1_0, _SYSCTLS_READS),
            VersionedCheck((1, 27), check_sysctls_1_27, _SYSCTLS_READS),
            VersionedCheck((1, 29), check_sysctls_1_29, _SYSCTLS_READS),
            VersionedCheck((1, 32), check_sysctls_1_32, _SYSCTLS_READS),
            VersionedCheck((1, 37), check_sysctls_1_37, _SYSCTLS_READS),
        ),
    ),
    _one(
        "windowsHostProcess",
        Level.BASELINE,
        (1, 0),
        check_windows_host_process,
        (
            f"{POD_CONTEXT_PATH}.windowsOptions.hostProcess",
            f"{CONTAINER_PATH}.name",
            f"{CONTAINER_CONTEXT_PATH}.windowsOptions.hostProcess",
        ),
    ),
    _one(
        "hostProbesAndHostLifecycle",
        Level.BASELINE,
        (1, 34),
        check_host_probes,
        (f"{CONTAINER_PATH}.name", *HANDLER_HOST_PATHS),
    ),
    Check(
        "restrictedVolumes",
        Level.RESTRICTED,
        (
            VersionedCheck((1, 0), check_restricted_volumes_1_0, ("spec.volumes[*]",)),
            VersionedCheck((1, 33), check_restricted_volumes_1_33, ("spec.volumes[*]",)),  # image volumes
        ),
    ),
    _one(
        "allowPrivilegeEscalation",
        Level.RESTRICTED,
        (1, 8),
        check_allow_privilege_escalation,
        ("spec.os.name", f"{CONTAINER_PATH}.name", f"{CONTAINER_CONTEXT_PATH}.allowPrivilegeEscalation"),
    ),
    _one(
        "runAsNonRoot",
        Level.RESTRICTED,
        (1, 0),
        check_run_as_non_root,
        (f"{POD_CONTEXT_PATH}.runAsNonRoot", f"{CONTAINER_PATH}.name", f"{CONTAINER_CONTEXT_PATH}.runAsNonRoot"),
    ),
    _one(
        "runAsUser",
        Level.RESTRICTED,
        (1, 23),
        check_run_as_user,
        (f"{POD_CONTEXT_PATH}.runAsUser", f"{CONTAINER_PATH}.name", f"{CONTAINER_CONTEXT_PATH}.runAsUser"),
    ),
    _one(
        "seccompProfile_restricted",
        Level.RESTRICTED,
        (1, 19),
        check_seccomp_restricted,
        (
            "spec.os.name",
            f"{POD_CONTEXT_PATH}.seccompProfile.type",
            f"{CONTAINER_PATH}.name",
            f"{CONTAINER_CONTEXT_PATH}.seccompProfile.type",
        ),
    ),
    _one(
        "capabilities_restricted",
        Level.RESTRICTED,
        (1, 22),
        check_capabilities_restricted,
        (
            "spec.os.name",
            f"{CONTAINER_PATH}.name",
            f"{CONTAINER_CONTEXT_PATH}.capabilities.drop",
            f"{CONTAINER_CONTEXT_PATH}.capabilities.add",
        ),
    ),
    _one("procMount_restricted", Level.RESTRICTED, (1, 35), check_proc_mount_restricted, _PROC_MOUNT_READS),
)


def validate_checks(catalog: tuple[Check, ...]) -> None:
    """Refuse a catalogue upstream's ``validateChecks`` refuses (``ValueError``): one check per
    id, each of level baseline or restricted, with at least one entry, entries' versions
    strictly increasing (``Check.at`` takes the last one in force) and each with a function."""
    seen: set[str] = set()
    for check in catalog:
        if check.id in seen:
            raise ValueError(f"multiple Pod Security checks registered for id {check.id!r}")
        seen.add(check.id)
        if check.level not in LEVELS[1:]:
            raise ValueError(f"Pod Security check {check.id!r}: invalid level {check.level!r}")
        if not check.versions:
            raise ValueError(f"Pod Security check {check.id!r}: no versions")
        newest: Version = (0, 0)
        for entry in check.versions:
            if entry.since <= newest:
                raise ValueError(
                    f"Pod Security check {check.id!r}: version {entry.since} does not follow {newest}: "
                    "entries must be oldest first, each version once"
                )
            if not callable(entry.run):
                raise ValueError(f"Pod Security check {check.id!r}: version {entry.since} has no function")
            newest = entry.since


validate_checks(CHECKS)  # at import, as upstream's init: a broken catalogue never judges a pod

# A check in force: its id and the entry that runs.
ActiveCheck = tuple[str, VersionedCheck]


@lru_cache(maxsize=64)
def checks_for(
    level: Level, version: Version, skip: frozenset[str] = frozenset(), catalog: tuple[Check, ...] | None = None
) -> tuple[ActiveCheck, ...]:
    """The checks a level runs at a version (restricted includes baseline), less ``skip``,
    each with the entry in force at that version.

    ``catalog`` replaces ``CHECKS`` (the tests add checks of their own this way).
    """
    if level not in LEVELS:
        raise ValueError(f"unknown Pod Security level {level!r}; use one of {', '.join(LEVELS)}")
    included = LEVELS[1 : LEVELS.index(level) + 1]
    if catalog is None:
        source = CHECKS
    else:
        validate_checks(catalog)
        source = catalog
    active: list[ActiveCheck] = []
    for check in source:
        if check.level in included and check.id not in skip:
            entry = check.at(version)
            if entry is not None:
                active.append((check.id, entry))
    return tuple(active)
