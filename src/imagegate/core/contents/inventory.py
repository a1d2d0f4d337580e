"""What is installed in an image, read from its own files: pure (bytes in, records out).

:func:`read_inventory` runs every parser over an image's kept files (:class:`ImageFiles`) and
returns one :class:`Inventory`: the packages found, per ecosystem (Debian's dpkg, Alpine's apk,
Python distributions, npm packages), each with its licence as an SPDX expression
(:mod:`imagegate.core.contents.licences`), and a :class:`Note` for every file that could not be
read and why. A parser never raises on what an image holds: binary garbage, text that is not
UTF-8, a copyright file that is not machine-readable each become a note, and the packages of the
files that could be read are still listed. :data:`INVENTORY_FILES` is the union of the files
the parsers read: what the layer reader keeps for the inventory.
"""

from __future__ import annotations

from functools import reduce

from imagegate.core.contents import apk, dpkg, npm, pypi
from imagegate.core.contents.files import FileSelection, ImageFiles
from imagegate.core.contents.packages import Inventory, Note, Package, Parser

__all__ = ["INVENTORY_FILES", "PARSERS", "read_inventory"]

# Each ecosystem's parser and the files it reads, in the order the inventory lists them.
PARSERS: tuple[tuple[Parser, FileSelection], ...] = (
    (dpkg.parse, dpkg.FILES),
    (apk.parse, apk.FILES),
    (pypi.parse, pypi.FILES),
    (npm.parse, npm.FILES),
)

INVENTORY_FILES: FileSelection = reduce(lambda a, b: a | b, (files for _, files in PARSERS), FileSelection())


def read_inventory(files: ImageFiles) -> Inventory:
    """Every parser over ``files``: the packages in ecosystem order, each parser's in its file order."""
    packages: list[Package] = []
    notes: list[Note] = []
    for parser, _ in PARSERS:
        found, problems = parser(files)
        packages.extend(found)
        notes.extend(problems)
    return Inventory(tuple(packages), tuple(notes))
