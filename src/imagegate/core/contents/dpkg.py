"""Debian and Ubuntu packages: dpkg's database, each package's DEP-5 copyright file. Pure.

dpkg lists the installed packages in ``/var/lib/dpkg/status`` (deb822 paragraphs; a package
counts when its ``Status`` says its files are in place: ``installed``, or configured and awaiting
triggers); distroless images have no dpkg and list one package per file in
``/var/lib/dpkg/status.d/`` (no ``Status``: each is installed). A package's archive area comes
from its ``Section`` (``non-free/utils``), its licence from
``/usr/share/doc/<package>/copyright`` when that is machine-readable (DEP-5): the ``License``
of every ``Files`` paragraph, each in SPDX form, all of them together (``AND``: each file is
under its own). Both formats are read with python-debian (``deb822``; DEP-5 as ``debian.copyright`` reads it).

A package dpkg lists may have lost its files to a later layer (``rm``, a whiteout) that left
dpkg's database alone. :func:`files_for` is what the reader keeps to tell (the package's
``info/<package>[:<arch>].md5sums`` and ``.list``, listings whose paths the merge looks up, and
dpkg's diversions), :func:`missing_files` the package's files the merged tree lacks: the regular
files its ``md5sums`` names (dpkg's own list of them: no directories, no conffiles), each where a
diversion by another package moved it; without an md5sums file (a package built without one), the
``.list``'s entries that are no other entry's directory, outside ``/etc`` (Debian policy puts
conffiles there: an administrator may delete them, dpkg keeps them deleted). A package with
neither file is said to have lost its file list. A distroless ``status.d`` package has no file
list at all: its files cannot be checked (None), only its database entry.
"""

from __future__ import annotations

import hashlib
import logging
from functools import cache, lru_cache
from typing import TYPE_CHECKING

from imagegate.core.contents.files import FileSelection, ImageFiles, Listing, listed_paths
from imagegate.core.contents.licences import every, from_debian
from imagegate.core.contents.packages import Area, Ecosystem, Note, Package, decoded, first_line

if TYPE_CHECKING:
    from debian.copyright import License
    from debian.deb822 import Deb822

__all__ = [
    "COPYRIGHT",
    "DIVERSIONS",
    "FILES",
    "INFO",
    "STATUS",
    "STATUS_D",
    "archive_area",
    "files_for",
    "missing_files",
    "parse",
    "read_copyright",
]

STATUS = "/var/lib/dpkg/status"
STATUS_D = "/var/lib/dpkg/status.d"
COPYRIGHT = "/usr/share/doc/{}/copyright"
FILES = FileSelection(frozenset({STATUS}), (f"{STATUS_D}/*", COPYRIGHT.format("*")))
INFO = "/var/lib/dpkg/info"
DIVERSIONS = "/var/lib/dpkg/diversions"


def _info(name: str, architecture: str, suffix: str) -> str:
    """dpkg's info file of a package: ``<name>:<arch>.<suffix>`` for a Multi-Arch: same one."""
    return f"{INFO}/{name}{':' + architecture if architecture else ''}.{suffix}"


def files_for(name: str) -> FileSelection:
    """What the reader keeps to prove the package ``name``'s files are in the merged tree: its
    md5sums and list (with or without an architecture qualifier), and dpkg's diversions."""
    selection = FileSelection.listing(DIVERSIONS, Listing.PATHS)
    for suffix, form in (("md5sums", Listing.MD5SUMS), ("list", Listing.PATHS)):
        for architecture in ("", "*"):
            selection |= FileSelection.listing(_info(name, architecture, suffix), form)
    return selection


def _diverted(files: ImageFiles, package: str) -> dict[str, str]:
    """Where dpkg's diversions by other packages (or the administrator) put ``package``'s files."""
    if DIVERSIONS not in files.listed:
        return {}
    lines = files.files[DIVERSIONS].decode("utf-8", "surrogateescape").splitlines()
    moved: dict[str, str] = {}
    for index in range(0, len(lines) - 2, 3):  # from, to, the diverting package (":" for the administrator)
        source, target, by = lines[index : index + 3]
        if by != package:
            moved[source] = target
    return moved


def missing_files(package: Package, files: ImageFiles) -> list[str] | None:
    """The paths (as dpkg lists them) of ``package``'s files the merged tree lacks (its ``.list``
    itself when dpkg has no file list for it); None when its files cannot be checked (a distroless
    ``status.d`` package). ``files`` is read with :func:`files_for` the package's selection."""
    if package.path != STATUS:
        return None
    found: list[str] | None = None
    for architecture in dict.fromkeys((package.architecture, "")):
        md5sums = _info(package.name, architecture, "md5sums")
        listing = _info(package.name, architecture, "list")
        if md5sums in files.listed:
            found = list(listed_paths(Listing.MD5SUMS, files.files[md5sums]))
            break
        if listing in files.listed:
            entries = list(listed_paths(Listing.PATHS, files.files[listing]))
            folders = {path.rpartition("/")[0] for path in entries}
            found = [path for path in entries if path not in folders and not path.startswith("/etc/")]
            break
    if found is None:  # dpkg keeps a list for every package it installed: this one's is gone
        return [_info(package.name, package.architecture, "list")]
    moved = _diverted(files, package.name)
    return [path for path in found if moved.get(path, path) in files.absent]


# dpkg's package states whose files are all unpacked and configured (dpkg(1) "Package states").
_IN_PLACE = frozenset({"installed", "triggers-awaited", "triggers-pending"})


@cache
def _python_debian() -> tuple[type[Deb822], type[License]]:
    """python-debian, loaded by the first read of a dpkg file: with charset_normalizer it costs
    every process that loads this module (the command line, the webhook) tens of milliseconds."""
    from debian.copyright import License  # noqa: PLC0415
    from debian.deb822 import Deb822  # noqa: PLC0415

    # python-debian logs what it corrects in a copyright file ("Fixing Format URL"); files a
    # tenant wrote are not the webhook's log lines. What matters is said in the inventory's notes.
    library_log = logging.getLogger("debian")
    library_log.addHandler(logging.NullHandler())
    library_log.propagate = False
    return Deb822, License


def archive_area(section: str) -> Area:
    """The archive area a ``Section`` names (``contrib/libs``, ``non-free/utils``); ``main`` otherwise."""
    area, slash, _ = section.partition("/")
    if slash:
        for known in (Area.CONTRIB, Area.NON_FREE, Area.NON_FREE_FIRMWARE):
            if area == known.value:
                return known
    return Area.MAIN


def _paragraphs(path: str, data: bytes, notes: list[Note]) -> list[dict[str, str]]:
    text = decoded(path, data, notes)
    if text is None:
        return []
    deb822, _license = _python_debian()
    try:
        return [dict(p) for p in deb822.iter_paragraphs(text.splitlines(keepends=True), use_apt_pkg=False)]
    except Exception as exc:
        notes.append(Note(path, f"unreadable: not deb822 paragraphs ({type(exc).__name__}: {first_line(str(exc))})"))
        return []


def _installed(paragraph: dict[str, str], has_status: bool) -> bool:
    if not has_status:
        return True  # distroless: a file per installed package, no Status field
    words = paragraph.get("Status", "").split()
    return len(words) == 3 and words[2] in _IN_PLACE


def parse(files: ImageFiles) -> tuple[list[Package], list[Note]]:
    """The installed Debian packages of ``files`` and the notes on what could not be read."""
    notes: list[Note] = []
    listed: list[tuple[str, dict[str, str], bool]] = []
    if STATUS in files.files:
        listed.extend((STATUS, p, True) for p in _paragraphs(STATUS, files.files[STATUS], notes))
    for path, data in files.under(STATUS_D):
        if "/" in path.removeprefix(STATUS_D + "/") or path.endswith(".md5sums"):
            continue  # distroless keeps each package's md5sums beside its paragraph
        listed.extend((path, p, False) for p in _paragraphs(path, data, notes))
    packages: list[Package] = []
    for path, paragraph, has_status in listed:
        name = paragraph.get("Package", "").strip()
        if not name:
            notes.append(Note(path, "a paragraph without a Package field (skipped)"))
            continue
        if not _installed(paragraph, has_status):
            continue
        licence_path = COPYRIGHT.format(name)
        licence, declared = None, ""
        if licence_path in files.files:
            licence, declared = read_copyright(licence_path, files.files[licence_path], notes)
        packages.append(
            Package(
                Ecosystem.DEB,
                name,
                paragraph.get("Version", "").strip(),
                licence,
                path,
                declared=declared,
                licence_path=licence_path if licence_path in files.files else "",
                area=archive_area(paragraph.get("Section", "").strip()),
                architecture=paragraph.get("Architecture", "").strip(),
            )
        )
    return packages, notes


def read_copyright(path: str, data: bytes, notes: list[Note]) -> tuple[str | None, str]:
    """A DEP-5 copyright file's licence: (SPDX expression of all its Files paragraphs, their synopses
    as written); (None, "") with a note when it is not machine-readable or names no licence."""
    text = decoded(path, data, notes)
    if text is None:
        return None, ""
    licence, declared, problem = _copyright(hashlib.sha256(data).digest(), text)
    if problem is not None:
        notes.append(Note(path, problem))
    return licence, declared


@lru_cache(maxsize=4096)
def _copyright(_digest: bytes, text: str) -> tuple[str | None, str, str | None]:
    """(licence, as declared, problem) of a copyright file's text, remembered by its digest: every
    image on one base holds the same files.

    Read as ``debian.copyright`` reads DEP-5 (a first paragraph with ``Format``, the old
    ``Format-Specification`` too; the synopsis is the ``License`` field's first line) over
    ``deb822``'s paragraphs: ``debian.copyright``'s own parser keeps every token for
    round-tripping and took 1.5 s for a minbase image's 96 files, against 0.3 s so.
    """
    deb822, license_field = _python_debian()
    try:
        paragraphs = list(deb822.iter_paragraphs(text.splitlines(keepends=True), use_apt_pkg=False))
        if not paragraphs or not ({"Format", "Format-Specification"} & set(paragraphs[0])):
            return None, "", "licence unknown: not a machine-readable (DEP-5) copyright file"
        synopses = [
            found.synopsis
            for p in paragraphs[1:]
            if "Files" in p and "License" in p and (found := license_field.from_str(p["License"])) is not None
        ]
    except Exception as exc:
        return None, "", f"licence unknown: not readable as DEP-5 ({type(exc).__name__}: {first_line(str(exc))})"
    written = list(dict.fromkeys(s.strip() for s in synopses if s and s.strip()))
    if not written:
        return None, "", "licence unknown: its Files paragraphs name no licence"
    return every(from_debian(s) for s in written), "; ".join(written), None
