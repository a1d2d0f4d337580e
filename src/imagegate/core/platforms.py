"""Platforms (``os/architecture[/variant]``) as containerd knows and normalizes them.

One normalization for every platform imagegate compares: the policy's
``registry.platforms``, ``inspect --platform``, and the platforms an image index offers.
It is containerd's ``platforms.Normalize`` (``x86_64`` is ``amd64``, ``aarch64`` is
``arm64``, ``arm64/v8`` is ``arm64``, a bare ``arm`` is ``arm/v7``), so ``linux/arm64``
in a policy matches the ``linux/arm64/v8`` entry Docker's indexes carry, as it does on
the node. What a person types is also held to containerd's lists of known operating
systems and architectures (Go's), so a typo is refused instead of matching nothing.
"""

from __future__ import annotations

import re

__all__ = [
    "KNOWN_ARCHITECTURES",
    "KNOWN_OPERATING_SYSTEMS",
    "PlatformError",
    "normalize_platform",
    "normalize_platform_text",
    "parse_platform",
]

# containerd/platforms database.go (from Go's syslist.go), plus wasip1 (Go 1.21).
KNOWN_OPERATING_SYSTEMS = frozenset(
    [
        "aix",
        "android",
        "darwin",
        "dragonfly",
        "freebsd",
        "hurd",
        "illumos",
        "ios",
        "js",
        "linux",
        "nacl",
        "netbsd",
        "openbsd",
        "plan9",
        "solaris",
        "wasip1",
        "windows",
        "zos",
    ]
)
KNOWN_ARCHITECTURES = frozenset(
    [
        "386",
        "amd64",
        "amd64p32",
        "arm",
        "armbe",
        "arm64",
        "arm64be",
        "loong64",
        "mips",
        "mipsle",
        "mips64",
        "mips64le",
        "mips64p32",
        "mips64p32le",
        "ppc",
        "ppc64",
        "ppc64le",
        "riscv",
        "riscv64",
        "s390",
        "s390x",
        "sparc",
        "sparc64",
        "wasm",
    ]
)
_COMPONENT = re.compile(r"[A-Za-z0-9_.-]+")  # containerd's specifier component


class PlatformError(ValueError):
    """A platform that is not ``os/architecture[/variant]`` with a known os and architecture."""


def _normalize_architecture(architecture: str, variant: str) -> tuple[str, str]:
    """containerd's normalizeArch."""
    architecture, variant = architecture.lower(), variant.lower()
    if architecture == "i386":
        return "386", ""
    if architecture in ("x86_64", "x86-64", "amd64"):
        return "amd64", "" if variant == "v1" else variant
    if architecture in ("aarch64", "arm64"):
        if variant in ("8", "v8", "v8.0"):
            return "arm64", ""
        return "arm64", "v9" if variant in ("9", "9.0", "v9.0") else variant
    if architecture == "armhf":
        return "arm", "v7"
    if architecture == "armel":
        return "arm", "v6"
    if architecture == "arm":
        if variant in ("", "7"):
            return "arm", "v7"
        return "arm", f"v{variant}" if variant in ("5", "6", "8") else variant
    return architecture, variant


def normalize_platform(os_name: str, architecture: str, variant: str = "") -> str:
    """``os/architecture[/variant]`` in containerd's normal form (no validation: registry data)."""
    os_name = os_name.lower()
    if os_name == "macos":
        os_name = "darwin"
    architecture, variant = _normalize_architecture(architecture, variant)
    return "/".join(part for part in (os_name, architecture, variant) if part)


def normalize_platform_text(text: str) -> str:
    """:func:`normalize_platform` of ``os/architecture[/variant]`` text, leniently."""
    parts = [*text.split("/", 2), "", ""]
    return normalize_platform(parts[0], parts[1], parts[2])


def parse_platform(text: str) -> str:
    """A platform a person wrote, checked and in normal form; :class:`PlatformError` says what is wrong."""
    parts = text.split("/")
    if len(parts) not in (2, 3) or not all(_COMPONENT.fullmatch(part) for part in parts):
        raise PlatformError(f"{text!r} is not os/architecture[/variant], e.g. linux/amd64 or linux/arm/v7")
    normal = normalize_platform(parts[0], parts[1], parts[2] if len(parts) == 3 else "")
    os_name, architecture = normal.split("/")[:2]
    if os_name not in KNOWN_OPERATING_SYSTEMS:
        raise PlatformError(
            f"{text!r}: unknown operating system {parts[0]!r} (known: {', '.join(sorted(KNOWN_OPERATING_SYSTEMS))})"
        )
    if architecture not in KNOWN_ARCHITECTURES:
        raise PlatformError(
            f"{text!r}: unknown architecture {parts[1]!r} (known: {', '.join(sorted(KNOWN_ARCHITECTURES))})"
        )
    return normal
