"""npm packages: each ``package.json`` directly under a ``node_modules`` directory. Pure.

A package's root is ``.../node_modules/<name>/package.json`` or, scoped,
``.../node_modules/@<scope>/<name>/package.json``; other ``package.json`` files inside a
package (its tests, its examples) are not packages. The licence is ``license`` (an SPDX
expression, as npm documents it), or the deprecated object forms (``{"type": ...}``, a
``licenses`` list, read as all of them together), or none.
"""

from __future__ import annotations

from typing import Any

import msgspec

from imagegate.core.contents.files import FileSelection, ImageFiles
from imagegate.core.contents.licences import every, from_spdx
from imagegate.core.contents.packages import Ecosystem, Note, Package, decoded, files_matching, first_line

__all__ = ["FILES", "package_root", "parse"]

FILES = FileSelection(patterns=("*/node_modules/*/package.json",))


def package_root(path: str) -> bool:
    """Whether ``path`` is a package's own ``package.json`` (not one inside a package)."""
    _, found, rest = path.rpartition("/node_modules/")
    if not found:
        return False
    parts = rest.split("/")
    if parts[0].startswith("@"):
        return len(parts) == 3 and parts[2] == "package.json" and len(parts[0]) > 1
    return len(parts) == 2 and parts[1] == "package.json"


def _declared(document: dict[str, Any]) -> list[str]:
    found = document.get("license")
    if isinstance(found, str) and found.strip():
        return [found.strip()]
    if isinstance(found, dict) and isinstance(found.get("type"), str):
        return [found["type"].strip()]
    licences = document.get("licenses")
    if isinstance(licences, list):
        return [
            item["type"].strip() for item in licences if isinstance(item, dict) and isinstance(item.get("type"), str)
        ]
    return []


def parse(files: ImageFiles) -> tuple[list[Package], list[Note]]:
    """The npm packages installed in ``files``' ``node_modules`` directories."""
    notes: list[Note] = []
    packages: list[Package] = []
    for path, data in files_matching(files, FILES):
        if not package_root(path):
            continue
        text = decoded(path, data, notes)
        if text is None:
            continue
        try:
            document = msgspec.json.decode(text)
        except msgspec.DecodeError as exc:
            notes.append(Note(path, f"unreadable: not JSON ({first_line(str(exc))})"))
            continue
        if not isinstance(document, dict):
            notes.append(Note(path, f"unreadable: a JSON {type(document).__name__}, not an object"))
            continue
        name, version = document.get("name"), document.get("version")
        if not isinstance(name, str) or not name.strip():
            notes.append(Note(path, "no name (not a package: skipped)"))
            continue
        declared = [d for d in _declared(document) if d]
        packages.append(
            Package(
                Ecosystem.NPM,
                name.strip(),
                version.strip() if isinstance(version, str) else "",
                every(from_spdx(d) for d in declared) if declared else None,
                path,
                declared=" AND ".join(declared),
            )
        )
    return packages, notes
