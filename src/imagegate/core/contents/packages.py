"""What an inventory is made of: packages, their ecosystems, notes on unreadable files (records),
and the few helpers every parser shares. The parsers are dpkg.py, apk.py, pypi.py and npm.py;
inventory.py runs them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from enum import StrEnum

import msgspec

from imagegate.core.contents.files import FileSelection, ImageFiles

__all__ = [
    "Area",
    "Ecosystem",
    "Inventory",
    "LicenceClass",
    "Note",
    "Package",
    "Parser",
    "Tri",
    "decoded",
    "files_matching",
    "first_line",
]


class Ecosystem(StrEnum):
    """Where a package comes from: the package database that lists it."""

    DEB = "deb"  # dpkg: /var/lib/dpkg/status, distroless /var/lib/dpkg/status.d/
    APK = "apk"  # Alpine: /lib/apk/db/installed
    PYPI = "pypi"  # Python distributions: *.dist-info/METADATA, *.egg-info/PKG-INFO
    NPM = "npm"  # node_modules/<name>/package.json


class Area(StrEnum):
    """A Debian package's archive area, from its ``Section`` (``non-free/utils``); others have none."""

    MAIN = "main"
    CONTRIB = "contrib"
    NON_FREE = "non-free"
    NON_FREE_FIRMWARE = "non-free-firmware"
    NONE = ""  # not a Debian package


class LicenceClass(StrEnum):
    """The classes of the SPDX licence list's flags (a policy's ``licenses.allow`` names them)."""

    OSI = "osi"  # isOsiApproved
    FSF_LIBRE = "fsf-libre"  # isFsfLibre


class Tri(StrEnum):
    """Yes, no, or unknown: what is known of an expression with a ``LicenseRef-`` in it."""

    YES = "yes"
    NO = "no"
    UNKNOWN = "unknown"


class Package(msgspec.Struct, frozen=True):
    """One installed package, as its database says."""

    ecosystem: Ecosystem
    name: str
    version: str
    # SPDX expression; parts with no SPDX id are LicenseRef-<name as declared>; None: none declared or read
    licence: str | None
    path: str  # the file it was read from (its database, its METADATA, its package.json)
    declared: str = ""  # the licence as written, for reports ("GPL-2+", "License :: OSI Approved :: MIT License")
    licence_path: str = ""  # where the licence was read, when not ``path`` (a Debian package's copyright file)
    area: Area = Area.NONE
    architecture: str = ""


class Note(msgspec.Struct, frozen=True):
    """A file the inventory could not read (or read only in part), and why."""

    path: str
    problem: str

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}"


class Inventory(msgspec.Struct, frozen=True):
    """Every package found in an image's files, and what could not be read."""

    packages: tuple[Package, ...] = ()
    notes: tuple[Note, ...] = ()

    def of(self, ecosystem: Ecosystem) -> tuple[Package, ...]:
        return tuple(p for p in self.packages if p.ecosystem is ecosystem)

    def named(self, name: str, ecosystem: Ecosystem | None = None) -> tuple[Package, ...]:
        """The packages called ``name`` (a Python name compared as PEP 503 normalizes it)."""
        wanted = {e: _comparable(e, name) for e in Ecosystem}
        return tuple(
            p
            for p in self.packages
            if (ecosystem is None or p.ecosystem is ecosystem)
            and _comparable(p.ecosystem, p.name) == wanted[p.ecosystem]
        )

    def ecosystems(self) -> dict[Ecosystem, int]:
        """How many packages each ecosystem lists (those with none left out), in :class:`Ecosystem` order."""
        counts = {e: sum(1 for p in self.packages if p.ecosystem is e) for e in Ecosystem}
        return {e: n for e, n in counts.items() if n}


def _comparable(ecosystem: Ecosystem, name: str) -> str:
    if ecosystem is Ecosystem.PYPI:  # PEP 503: Foo_Bar, foo.bar and foo-bar are one project
        return "-".join(part for part in name.lower().replace("_", "-").replace(".", "-").split("-") if part)
    return name


# A parser: the image's files -> the packages it found and its notes.
Parser = Callable[[ImageFiles], tuple[list[Package], list[Note]]]


def decoded(path: str, data: bytes, notes: list[Note]) -> str | None:
    """``data`` as UTF-8 text, or None with a note saying where it is not."""
    nul = data.find(b"\0")
    if nul >= 0:
        notes.append(Note(path, f"unreadable: binary data (a NUL byte at offset {nul})"))
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        notes.append(Note(path, f"unreadable: not UTF-8 text (byte {exc.start})"))
        return None


def files_matching(files: ImageFiles, wanted: FileSelection) -> Iterator[tuple[str, bytes]]:
    """The kept files ``wanted`` selects, in path order."""
    return ((path, data) for path, data in sorted(files.files.items()) if wanted.wants(path))


def first_line(text: str, limit: int = 80) -> str:
    """The first line of ``text``, at most ``limit`` characters: how a long declaration is shown."""
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"
