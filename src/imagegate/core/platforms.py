"""Platforms (``os/architecture[/variant]``) as containerd knows and normalizes them.

One normalization for every platform imagegate compares: the policy's
``registry.platforms``, ``inspect --platform``, and the platforms an image index offers.
It is containerd's ``platforms.Normalize`` (``x86_64`` is ``amd64``, ``aarch64`` is
``arm64``, ``arm64/v8`` is ``arm64``, a bare ``arm`` is ``arm/v7``), so ``linux/arm64``
in a policy matches the ``linux/arm64/v8`` entry Docker's indexes carry, as it does on
the node. What a person types is also held to containerd's lists of known operating
systems and architectures (Go's), so a typo is refused instead of matching nothing.

An index lists one manifest per platform; the node picks one. What imagegate verifies must
include whatever the node picks, so entries are chosen here the way the runtimes choose:

* containerd (``github.com/containerd/platforms``) normalizes both sides before comparing:
  os and architecture in any case, ``x86_64``/``x86-64`` are ``amd64``, ``aarch64`` is
  ``arm64``, ``i386`` is ``386``, ``armhf`` is ``arm/v7``, ``armel`` is ``arm/v6``, ``macos``
  is ``darwin``; default variants are dropped (``arm64/v8`` is ``arm64``, ``amd64/v1`` is
  ``amd64``) or added (``arm`` is ``arm/v7``); an entry without an os runs on the node's.
  Its matcher for a node (``platforms.Only``) also accepts older platforms in order
  (``amd64`` then ``386``; ``arm64`` then ``arm/v8`` ... ``arm/v5``), sorts the matching
  entries by that order (stable: index order among equals), puts entries without a
  platform last, and pulls the first.
* CRI-O and podman (containers/image) compare exact strings, but may prefer another
  variant of the node's own architecture (``amd64/v3`` on a CPU that has it, ``arm64/v8.2``).

So for each platform the cluster runs, the entries to verify are: every entry of the node's
own os and architecture, whatever its variant; the entries of the best rank containerd would
pull from (the older-platform fallbacks only count when nothing better is offered); and every
entry without a platform (containerd keeps them as candidates). Verifying a few entries more than
one runtime would pull is the price of never verifying fewer than any of them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "KNOWN_ARCHITECTURES",
    "KNOWN_OPERATING_SYSTEMS",
    "PlatformError",
    "PlatformSpec",
    "node_platform",
    "normalize",
    "normalize_platform",
    "parse_platform",
    "preference",
    "runnable_entries",
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
    """``os/architecture[/variant]`` in containerd's normal form (no validation: registry data);
    :func:`normalize` as text, an empty os left empty."""
    return str(normalize(os_name, architecture, variant, node_os=""))


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


@dataclass(frozen=True, slots=True)
class PlatformSpec:
    """A normalized platform (containerd's ``platforms.Normalize``)."""

    os: str
    architecture: str
    variant: str = ""

    def __str__(self) -> str:
        return "/".join(part for part in (self.os, self.architecture, self.variant) if part)


def normalize(os: str, architecture: str, variant: str = "", *, node_os: str = "linux") -> PlatformSpec:
    """containerd's ``Normalize``, as it runs on a node of ``node_os`` (an empty os is the node's)."""
    os = os.lower() if os else node_os
    if os == "macos":
        os = "darwin"
    arch, variant = _normalize_architecture(architecture, variant)
    return PlatformSpec(os, arch, variant)


def node_platform(text: str) -> PlatformSpec:
    """A platform the cluster runs (checked by :func:`parse_platform`), as a :class:`PlatformSpec`."""
    parts = parse_platform(text).split("/")
    return PlatformSpec(parts[0], parts[1], parts[2] if len(parts) == 3 else "")


def preference(node: PlatformSpec) -> tuple[PlatformSpec, ...]:
    """containerd's ``platformVector``: what ``platforms.Only(node)`` accepts, best first."""
    if node.architecture == "amd64":
        vector = [node]
        level = node.variant[1:] if node.variant.startswith("v") else ""
        if level.isdigit() and int(level) > 1:
            vector += [PlatformSpec(node.os, "amd64", f"v{n}") for n in range(int(level) - 1, 0, -1)]
        return (*(normalize(p.os, p.architecture, p.variant) for p in vector), PlatformSpec(node.os, "386"))
    if node.architecture == "arm":
        level = node.variant[1:] if node.variant.startswith("v") else ""
        if level.isdigit() and int(level) > 5:
            return (node, *(PlatformSpec(node.os, "arm", f"v{n}") for n in range(int(level) - 1, 4, -1)))
        return (node,)
    if node.architecture == "arm64":
        variant = node.variant or "v8"
        versions = _ARM64_VARIANTS.get(variant)
        own: list[PlatformSpec] = []
        if versions is not None:
            for major, newest_minor in versions:
                for minor in range(newest_minor, -1, -1):
                    name = f"v{major}" if minor == 0 else f"v{major}.{minor}"
                    own.append(normalize(node.os, "arm64", name))
        arm_variant = "v8" if variant.startswith(("v8", "v9")) else variant
        return (*own, *preference(normalize(node.os, "arm", arm_variant)))
    return (node,)


# containerd's arm64variantToVersion: each variant also runs these (major, newest minor) lines.
_ARM64_VARIANTS: dict[str, tuple[tuple[int, int], ...]] = {
    **{f"v8.{minor}": ((8, minor),) for minor in range(1, 10)},
    "v8": ((8, 0),),
    "v8.0": ((8, 0),),
    **{f"v9.{minor}": ((9, minor), (8, min(minor + 5, 9))) for minor in range(1, 8)},
    "v9": ((9, 0), (8, 5)),
    "v9.0": ((9, 0), (8, 5)),
}


def runnable_entries(entries: Sequence[tuple[str, str, str] | None], node: PlatformSpec) -> tuple[int, ...]:
    """The positions (in index order) of the entries ``node`` might pull; see the module doc.

    ``entries`` are the index's descriptors' platforms as written, (os, architecture,
    variant), or ``None`` for a descriptor without a platform.
    """
    seen = [None if e is None else normalize(*e, node_os=node.os) for e in entries]
    own = {i for i, p in enumerate(seen) if p is not None and (p.os, p.architecture) == (node.os, node.architecture)}
    best: set[int] = set()
    for wanted in preference(node):
        best = {i for i, p in enumerate(seen) if p == wanted}
        if best:
            break
    # containerd keeps entries without a platform as candidates (sorted last, so pulled when
    # nothing else matches); another runtime or version may order them differently: always.
    unplatformed = {i for i, p in enumerate(seen) if p is None}
    return tuple(sorted(own | best | unplatformed))
