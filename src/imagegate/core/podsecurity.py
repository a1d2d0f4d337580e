"""Pod Security Standards, checked the way Kubernetes' pod-security-admission does.

Each check is owned by a level (``baseline`` or ``restricted``) and is a list of versioned
entries, as in pod-security-admission's check registry: each entry is a small named function
over a pod's metadata and spec, valid from its Kubernetes version until the next entry's. What
changed between versions is which entry runs, never an ``if version`` inside a check. A level
includes the checks of the levels below it. A policy may pin a version (``v1.25`` to ``v1.37``)
or follow ``latest``. The tests run upstream's fixtures of every one of those versions.

Messages follow PSA's form, ``<reason> (<detail>)``, e.g.
``allowPrivilegeEscalation != false (container "app" must set securityContext.allowPrivilegeEscalation=false)``.

Over 500 lines on purpose: it is the check registry, as upstream's ``policy/check_*.go`` are
one package. Every check, its versioned entries, the fields it declares and the fast path
that relies on those declarations must be read side by side; split, a new check would need
edits in several files, which is what the declarations exist to prevent.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from imagegate.core.records import CheckResult
from imagegate.core.workloads import CONTAINER_LISTS

__all__ = [
    "CHECKS",
    "LATEST_VERSION",
    "LEVELS",
    "OLDEST_VERSION",
    "Check",
    "CheckResult",
    "ShortcutPlan",
    "Version",
    "VersionedCheck",
    "as_list",
    "as_map",
    "evaluate",
    "is_windows",
    "parse_version",
    "plainly_passes",
    "shortcut_plan",
    "validate_checks",
]

LEVELS = ("privileged", "baseline", "restricted")
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
    level: str
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


# --- access helpers: tolerate wrong types (the API server rejects them before us) ------


def as_map(value: Any) -> Mapping[str, Any]:
    """``value`` if it is a JSON object, else an empty one."""
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list[Any]:
    """``value`` if it is a JSON array, else an empty one."""
    return value if isinstance(value, list) else []


class _PodSpec(dict[str, Any]):
    """A pod spec that remembers its container list: every check walks it, once is enough."""

    __slots__ = ("containers",)

    def __init__(self, spec: Mapping[str, Any]) -> None:
        super().__init__(spec)
        self.containers = tuple(_containers(spec))


def pod_view(spec: Mapping[str, Any]) -> Mapping[str, Any]:
    """``spec`` with its container list computed once (pass it to several checks)."""
    return spec if isinstance(spec, _PodSpec) else _PodSpec(spec)


def _containers(spec: Mapping[str, Any]) -> Iterator[tuple[str, int, Mapping[str, Any]]]:
    for field in CONTAINER_LISTS:
        for index, container in enumerate(as_list(spec.get(field))):
            if isinstance(container, dict):
                yield field, index, container


def containers(spec: Mapping[str, Any]) -> Iterator[tuple[str, int, Mapping[str, Any]]] | tuple[Any, ...]:
    """Every container of every list, as (list field, index, container)."""
    if isinstance(spec, _PodSpec):
        return spec.containers
    return _containers(spec)


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


def is_windows(spec: Mapping[str, Any]) -> bool:
    return as_map(spec.get("os")).get("name") == "windows"


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


def added_capabilities(capabilities: Mapping[str, Any]) -> list[str]:
    """``capabilities.add`` as names; a value that is not a list (which the API server would
    refuse, but an offline manifest can hold) counts as adding itself, never as adding nothing."""
    added = capabilities.get("add")
    if added is None:
        return []
    return [str(cap) for cap in added] if isinstance(added, list) else [repr(added)]


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


_PROBES = ("livenessProbe", "readinessProbe", "startupProbe")


def _handlers(container: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    for probe in _PROBES:
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


def volume_type(volume: Mapping[str, Any]) -> str | None:
    """The source a volume uses (its one key besides ``name``), or ``None`` for none."""
    kinds = [key for key, value in volume.items() if key != "name" and value is not None]
    return kinds[0] if kinds else None


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
_C = "spec.containers[*]"
_SC = f"{_C}.securityContext"
_PC = "spec.securityContext"
_HANDLER_HOSTS = tuple(
    f"{_C}.{handler}.{action}.host"
    for handler in ("livenessProbe", "readinessProbe", "startupProbe", "lifecycle.postStart", "lifecycle.preStop")
    for action in ("httpGet", "tcpSocket")
)


def _one(check_id: str, level: str, since: Version, run: CheckFn, reads: tuple[str, ...]) -> Check:
    """A check that has not changed since it came."""
    return Check(check_id, level, (VersionedCheck(since, run, reads),))


_APPARMOR_READS = ("metadata.annotations",)
_SELINUX_READS = (f"{_PC}.seLinuxOptions", f"{_C}.name", f"{_SC}.seLinuxOptions")
_PROC_MOUNT_READS = (f"{_C}.name", f"{_SC}.procMount")
_SYSCTLS_READS = (f"{_PC}.sysctls[*].name",)

# The registry, as pod-security-admission's: a check whose meaning changed with a Kubernetes
# version has one entry per version (upstream's ``VersionedCheck``), oldest first.
CHECKS: tuple[Check, ...] = (
    _one(
        "hostNamespaces",
        "baseline",
        (1, 0),
        check_host_namespaces,
        ("spec.hostNetwork", "spec.hostPID", "spec.hostIPC"),
    ),
    _one("privileged", "baseline", (1, 0), check_privileged, (f"{_C}.name", f"{_SC}.privileged")),
    _one(
        "capabilities_baseline",
        "baseline",
        (1, 0),
        check_capabilities_baseline,
        (f"{_C}.name", f"{_SC}.capabilities.add"),
    ),
    _one(
        "hostPathVolumes",
        "baseline",
        (1, 0),
        check_host_path_volumes,
        ("spec.volumes[*].name", "spec.volumes[*].hostPath"),
    ),
    _one("hostPorts", "baseline", (1, 0), check_host_ports, (f"{_C}.name", f"{_C}.ports[*].hostPort")),
    Check(
        "appArmorProfile",
        "baseline",
        (
            VersionedCheck((1, 0), check_apparmor_profile_1_0, _APPARMOR_READS),
            VersionedCheck(
                (1, 30),
                check_apparmor_profile_1_30,
                (*_APPARMOR_READS, f"{_PC}.appArmorProfile.type", f"{_C}.name", f"{_SC}.appArmorProfile.type"),
            ),
        ),
    ),
    Check(
        "seLinuxOptions",
        "baseline",
        (
            VersionedCheck((1, 0), check_selinux_options_1_0, _SELINUX_READS),
            VersionedCheck((1, 31), check_selinux_options_1_31, _SELINUX_READS),  # container_engine_t
        ),
    ),
    Check(
        "procMount",
        "baseline",
        (
            VersionedCheck((1, 0), check_proc_mount_1_0, _PROC_MOUNT_READS),
            VersionedCheck((1, 35), check_proc_mount_1_35, ("spec.hostUsers", *_PROC_MOUNT_READS)),
        ),
    ),
    _one(
        "seccompProfile_baseline",
        "baseline",
        (1, 19),
        check_seccomp_baseline,
        (f"{_PC}.seccompProfile.type", f"{_C}.name", f"{_SC}.seccompProfile.type"),
    ),
    Check(
        "sysctls",
        "baseline",
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
        "baseline",
        (1, 0),
        check_windows_host_process,
        (f"{_PC}.windowsOptions.hostProcess", f"{_C}.name", f"{_SC}.windowsOptions.hostProcess"),
    ),
    _one("hostProbesAndHostLifecycle", "baseline", (1, 34), check_host_probes, (f"{_C}.name", *_HANDLER_HOSTS)),
    Check(
        "restrictedVolumes",
        "restricted",
        (
            VersionedCheck((1, 0), check_restricted_volumes_1_0, ("spec.volumes[*]",)),
            VersionedCheck((1, 33), check_restricted_volumes_1_33, ("spec.volumes[*]",)),  # image volumes
        ),
    ),
    _one(
        "allowPrivilegeEscalation",
        "restricted",
        (1, 8),
        check_allow_privilege_escalation,
        ("spec.os.name", f"{_C}.name", f"{_SC}.allowPrivilegeEscalation"),
    ),
    _one(
        "runAsNonRoot",
        "restricted",
        (1, 0),
        check_run_as_non_root,
        (f"{_PC}.runAsNonRoot", f"{_C}.name", f"{_SC}.runAsNonRoot"),
    ),
    _one("runAsUser", "restricted", (1, 23), check_run_as_user, (f"{_PC}.runAsUser", f"{_C}.name", f"{_SC}.runAsUser")),
    _one(
        "seccompProfile_restricted",
        "restricted",
        (1, 19),
        check_seccomp_restricted,
        ("spec.os.name", f"{_PC}.seccompProfile.type", f"{_C}.name", f"{_SC}.seccompProfile.type"),
    ),
    _one(
        "capabilities_restricted",
        "restricted",
        (1, 22),
        check_capabilities_restricted,
        ("spec.os.name", f"{_C}.name", f"{_SC}.capabilities.drop", f"{_SC}.capabilities.add"),
    ),
    _one("procMount_restricted", "restricted", (1, 35), check_proc_mount_restricted, _PROC_MOUNT_READS),
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
    level: str, version: Version, skip: frozenset[str] = frozenset(), catalog: tuple[Check, ...] | None = None
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


# --- the shortcut for pods that plainly pass --------------------------------------------
#
# Most pods a platform admits look alike: a non-root pod security context, containers
# that drop all capabilities and forbid privilege escalation, ordinary volumes. Running
# every check on them costs a dozen walks over the containers per pod, on the path of
# every pod creation. ``plainly_passes`` is one walk that accepts only the plain forms
# below and gives up (returns False) on anything else, and then the named checks decide.
#
# It must never skip a check. So it is not a second list of rules: it says, field by field,
# which checks' requirement on that field its walk reproduces (``_JUDGED``), and it runs only
# for a set of checks every one of whose declared fields (``VersionedCheck.reads``) it judges
# for that very check function. A check it does not know (added, replaced, given a new
# version's entry, or reading one more field) turns the shortcut off for every level and
# version that runs it; the named checks then decide every pod. Within a plan, a security context key that some check reads and the walk does not
# judge by value means "run the checks". Tests hold the shortcut to the checks on every PSA
# fixture and on generated pods (tests/test_podsecurity_shortcut.py), and every check to its
# declared fields (tests/test_podsecurity_fields.py).

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
    f"{_C}.name": _CONTAINER_CHECKS,
    "spec.volumes[*].name": frozenset({check_host_path_volumes}),
    # not True
    f"{_SC}.privileged": frozenset({check_privileged}),
    # any added capability: run the checks; drop must hold ALL where capabilities_restricted runs
    f"{_SC}.capabilities.add": frozenset({check_capabilities_baseline, check_capabilities_restricted}),
    f"{_SC}.capabilities.drop": frozenset({check_capabilities_restricted}),
    # the sources: hostPath refused where hostPathVolumes runs, the restricted types where restrictedVolumes does
    "spec.volumes[*]": frozenset(_ALLOWED_VOLUMES),
    "spec.volumes[*].hostPath": frozenset({check_host_path_volumes}),
    f"{_C}.ports[*].hostPort": frozenset({check_host_ports}),
    # an AppArmor annotation, or any appArmorProfile: run the checks
    "metadata.annotations": _APPARMOR_CHECKS,
    f"{_PC}.appArmorProfile.type": frozenset({check_apparmor_profile_1_30}),
    f"{_SC}.appArmorProfile.type": frozenset({check_apparmor_profile_1_30}),
    # present at all: run the checks (procMount present makes hostUsers' relaxation moot)
    f"{_PC}.seLinuxOptions": _SELINUX_CHECKS,
    f"{_SC}.seLinuxOptions": _SELINUX_CHECKS,
    "spec.hostUsers": frozenset({check_proc_mount_1_35}),
    f"{_SC}.procMount": frozenset({check_proc_mount_1_0, check_proc_mount_1_35, check_proc_mount_restricted}),
    f"{_PC}.sysctls[*].name": _SYSCTLS_CHECKS,
    f"{_PC}.windowsOptions.hostProcess": frozenset({check_windows_host_process}),
    f"{_SC}.windowsOptions.hostProcess": frozenset({check_windows_host_process}),
    # RuntimeDefault or Localhost, or unset where the pod sets one (restricted)
    f"{_PC}.seccompProfile.type": frozenset({check_seccomp_baseline, check_seccomp_restricted}),
    f"{_SC}.seccompProfile.type": frozenset({check_seccomp_baseline, check_seccomp_restricted}),
    # no host in any probe or hook
    **{path: frozenset({check_host_probes}) for path in _HANDLER_HOSTS},
    # the walk treats every pod as Linux: stricter than the windows exceptions
    "spec.os.name": frozenset(
        {check_allow_privilege_escalation, check_seccomp_restricted, check_capabilities_restricted}
    ),
    # explicit false
    f"{_SC}.allowPrivilegeEscalation": frozenset({check_allow_privilege_escalation}),
    # true in the container, or unset there and true in the pod; never false in the pod
    f"{_PC}.runAsNonRoot": frozenset({check_run_as_non_root}),
    f"{_SC}.runAsNonRoot": frozenset({check_run_as_non_root}),
    # not 0
    f"{_PC}.runAsUser": frozenset({check_run_as_user}),
    f"{_SC}.runAsUser": frozenset({check_run_as_user}),
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
        pod_give_up=_context_keys(read, f"{_PC}.") - _VALUE_JUDGED_POD_KEYS,
        container_give_up=_context_keys(read, f"{_SC}.") - _VALUE_JUDGED_CONTAINER_KEYS,
    )


@lru_cache(maxsize=64)
def _selection(
    level: str, version: Version, skip: frozenset[str], catalog: tuple[Check, ...] | None
) -> tuple[tuple[ActiveCheck, ...], ShortcutPlan | None]:
    checks = checks_for(level, version, skip, catalog)
    return checks, shortcut_plan(checks)


def _plain_seccomp(context: Mapping[str, Any]) -> bool | None:
    """True: set to an allowed type; None: unset; False: anything else."""
    profile = context.get("seccompProfile")
    if profile is None:
        return None
    return isinstance(profile, dict) and profile.get("type") in _PLAIN_SECCOMP


_HANDLER_FIELDS = frozenset((*_PROBES, "lifecycle"))


def _plain_handlers(container: Mapping[str, Any]) -> bool:
    if container.keys().isdisjoint(_HANDLER_FIELDS):
        return True  # no probe, no hook: nothing that could name a host
    for probe in _PROBES:
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
    elif not isinstance(context, dict) or not context.keys().isdisjoint(plan.container_give_up):
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
    level: str, version: Version, metadata: Mapping[str, Any], spec: Mapping[str, Any], skip: frozenset[str]
) -> bool:
    """True only if every check of ``level`` at ``version`` (less ``skip``) passes ``spec``.

    False means "not plain": the named checks must decide. See the comment above.
    """
    if level not in ("baseline", "restricted"):
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
    elif not isinstance(pod, dict) or not pod.keys().isdisjoint(plan.pod_give_up):
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
    level: str,
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
    checks, plan = _selection(level, version, skip, catalog)
    if shortcut and plan is not None and checks and _plainly_passes(plan, metadata, spec):
        return []
    failed = []
    spec = pod_view(spec)
    for _id, entry in checks:
        result = entry.run(metadata, spec)
        if result is not None:
            failed.append(result)
    return failed
