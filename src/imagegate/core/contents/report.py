"""What ``imagegate scan`` says of an image: its packages by ecosystem, licences by class, the
content rules judged. Pure: an image's files (already read) in, a record out.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from imagegate.core.contents.files import ImageFiles
from imagegate.core.contents.inventory import read_inventory
from imagegate.core.contents.licences import classify
from imagegate.core.contents.packages import Area, Inventory, LicenceClass, Package, Tri
from imagegate.core.contents.policy import ContentRule, ContentVerdict, judge
from imagegate.core.records import Mode

__all__ = ["LICENCE_CLASSES", "ImageScan", "licence_class", "scan_image"]

# How a package's licence is counted in a report, worst last.
LICENCE_CLASSES = ("osi and fsf-libre", "osi", "fsf-libre", "neither", "unknown", "non-free")


def licence_class(package: Package) -> str:
    """The report's class of ``package``: by its Debian area first, then its licence's SPDX flags."""
    if package.area in (Area.NON_FREE, Area.NON_FREE_FIRMWARE, Area.CONTRIB):
        return "non-free"
    if package.licence is None:
        return "unknown"
    flags = classify(package.licence)
    osi, libre = flags[LicenceClass.OSI], flags[LicenceClass.FSF_LIBRE]
    if osi is Tri.YES and libre is Tri.YES:
        return "osi and fsf-libre"
    if Tri.YES in (osi, libre):
        return "osi" if osi is Tri.YES else "fsf-libre"
    return "unknown" if Tri.UNKNOWN in (osi, libre) else "neither"


class ImageScan(msgspec.Struct, frozen=True, rename="camel"):
    """One image's scan: ``ok`` when every enforced content rule covering it passes."""

    image: str
    platform: str
    layers: tuple[str, ...]
    ecosystems: dict[str, int]  # packages per ecosystem
    licences: dict[str, int]  # packages per licence class (LICENCE_CLASSES)
    non_free: tuple[str, ...]  # "unrar (non-free)"
    unknown: tuple[str, ...]  # packages whose licence is unknown
    verdicts: tuple[ContentVerdict, ...]
    notes: tuple[str, ...]
    tools: tuple[str, ...] = ()  # the namespaces running it (scan --from)
    packages: tuple[Package, ...] = ()

    @property
    def ok(self) -> bool:
        return all(v.ok for v in self.verdicts if v.mode is Mode.ENFORCE)


def scan_image(
    image: str,
    platform: str,
    files: ImageFiles,
    rules: Sequence[ContentRule],
    tools: Sequence[str] = (),
    inventory: Inventory | None = None,
) -> ImageScan:
    """The scan of one image's ``files`` under the content ``rules`` covering it."""
    found = inventory if inventory is not None else read_inventory(files)
    classes = {name: 0 for name in LICENCE_CLASSES}
    for package in found.packages:
        classes[licence_class(package)] += 1
    return ImageScan(
        image,
        platform,
        files.layers,
        {str(e): n for e, n in found.ecosystems().items()},
        {name: n for name, n in classes.items() if n},
        tuple(f"{p.name} ({p.area.value})" for p in found.packages if licence_class(p) == "non-free"),
        tuple(p.name for p in found.packages if licence_class(p) == "unknown"),
        tuple(judge(rule, found, files) for rule in rules),
        tuple(str(note) for note in found.notes),
        tuple(tools),
        found.packages,
    )
