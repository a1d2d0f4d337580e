"""Alpine packages: apk's database, ``/lib/apk/db/installed``. Pure.

The database is a list of records separated by blank lines, one ``K:value`` line per field
(apk-tools' ``apk_db_index_read``): ``P`` the name, ``V`` the version, ``A`` the architecture,
``L`` the licence (SPDX, as Alpine's APKBUILDs write it), and file lines (``F``, ``R``...)
this reader passes over. A record without ``P`` is noted and skipped.
"""

from __future__ import annotations

from imagegate.core.contents.files import FileSelection, ImageFiles
from imagegate.core.contents.licences import from_spdx
from imagegate.core.contents.packages import Ecosystem, Note, Package, decoded

__all__ = ["FILES", "INSTALLED", "parse"]

INSTALLED = "/lib/apk/db/installed"
FILES = FileSelection(frozenset({INSTALLED}))


def _records(text: str) -> list[dict[str, str]]:
    records: list[dict[str, str]] = []
    current: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if current:
                records.append(current)
            current = {}
            continue
        key, colon, value = line.partition(":")
        if colon and len(key) == 1:
            current.setdefault(key, value)  # the package's own fields come before its files'
    if current:
        records.append(current)
    return records


def parse(files: ImageFiles) -> tuple[list[Package], list[Note]]:
    """The installed Alpine packages of ``files``."""
    notes: list[Note] = []
    data = files.files.get(INSTALLED)
    if data is None:
        return [], notes
    text = decoded(INSTALLED, data, notes)
    if text is None:
        return [], notes
    packages: list[Package] = []
    for record in _records(text):
        name = record.get("P", "").strip()
        if not name:
            notes.append(Note(INSTALLED, "a record without a P: (name) line (skipped)"))
            continue
        declared = record.get("L", "").strip()
        packages.append(
            Package(
                Ecosystem.APK,
                name,
                record.get("V", "").strip(),
                from_spdx(declared) if declared else None,
                INSTALLED,
                declared=declared,
                architecture=record.get("A", "").strip(),
            )
        )
    return packages, notes
