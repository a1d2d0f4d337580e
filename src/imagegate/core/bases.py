"""Which running images need rebuilding for a security update of their base? Pure.

For each image that runs, the trusted base version it is built on is proved by layers
(:func:`imagegate.core.baseimage.built_on`: the base's whole diff_id chain begins the
image's), never taken from what the image says. The versions of a base are the tags of its
repository; a version's age is the time since its config's ``created``, and a newer version
of that base exists when another version in the same repository, for the same platform,
was created later. Rows come oldest base first: those are the tools to rebuild first.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from imagegate.core.baseimage import BaseVersion, built_on, same_platform, verify_platform
from imagegate.core.oci import PlatformImage

__all__ = [
    "BaseRow",
    "RunningImage",
    "TaggedBase",
    "bases_report",
    "is_artifact_tag",
    "parse_created",
    "tagged_bases",
    "tools_to_rebuild",
]

_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:([Zz])|([+-])(\d{2}):(\d{2}))"
)
# cosign and the OCI referrers tag schema attach artifacts as tags named after a digest
_ARTIFACT_TAG = re.compile(r"sha256-[0-9a-f]{64}(\.[A-Za-z0-9_-]+)?")
_NEVER = dt.datetime(1, 1, 1, tzinfo=dt.UTC)


def parse_created(text: str) -> dt.datetime | None:
    """An image config's ``created`` (RFC 3339, Go writes nanoseconds) as UTC; None when absent or bad."""
    found = _RFC3339.fullmatch(text.strip())
    if found is None:
        return None
    year, month, day, hour, minute, second = (int(found.group(i)) for i in range(1, 7))
    fraction = (found.group(7) or "")[:6].ljust(6, "0")
    try:
        moment = dt.datetime(year, month, day, hour, minute, second, int(fraction), tzinfo=dt.UTC)
    except ValueError:
        return None
    if found.group(9):
        offset = dt.timedelta(hours=int(found.group(10)), minutes=int(found.group(11)))
        moment = moment - offset if found.group(9) == "+" else moment + offset
    return moment


def is_artifact_tag(tag: str) -> bool:
    """A tag that holds a signature, attestation or referrers index, not a version of the image."""
    return _ARTIFACT_TAG.fullmatch(tag) is not None


@dataclass(frozen=True, slots=True)
class TaggedBase:
    """One version of a trusted base, for one platform: every tag of its repository naming it."""

    repository: str
    tags: tuple[str, ...]
    digest: str  # the platform's manifest digest
    platform: str
    diff_ids: tuple[str, ...]
    created: dt.datetime | None

    @property
    def name(self) -> str:
        return f"{self.repository}:{self.tags[0]}" if self.tags else f"{self.repository}@{self.digest}"


def tagged_bases(repository: str, tagged: Iterable[tuple[str, PlatformImage]]) -> list[TaggedBase]:
    """The distinct versions among ``(tag, platform image)`` pairs of one repository."""
    by_digest: dict[tuple[str, str], tuple[list[str], PlatformImage]] = {}
    for tag, image in tagged:
        entry = by_digest.setdefault((image.manifest_digest, image.platform), ([], image))
        entry[0].append(tag)
    return [
        TaggedBase(
            repository,
            tuple(sorted(tags)),
            image.manifest_digest,
            image.platform,
            image.diff_ids,
            parse_created(image.created),
        )
        for tags, image in by_digest.values()
    ]


@dataclass(frozen=True, slots=True)
class RunningImage:
    """An image in use: one platform of it, and who runs it."""

    reference: str
    image: PlatformImage
    tools: tuple[str, ...]  # namespaces
    owners: tuple[str, ...] = ()  # top owners ("Deployment tool-a/web")


@dataclass(frozen=True, slots=True)
class BaseRow:
    image: str
    platform: str
    digest: str
    tools: tuple[str, ...]
    owners: tuple[str, ...]
    base: TaggedBase | None  # the version it is proved to be built on
    age_days: int | None  # whole days since the base was created
    newer: TaggedBase | None  # the newest version of that base, when newer than ``base``
    note: str  # why there is no base, or no age

    @property
    def rebuild(self) -> bool:
        return self.newer is not None


def _as_version(base: TaggedBase) -> BaseVersion:
    return BaseVersion(base.name, base.digest, base.platform, base.diff_ids, base.created or _NEVER)


def _row(running: RunningImage, versions: Sequence[TaggedBase], now: dt.datetime) -> BaseRow:
    image = running.image
    as_versions = [_as_version(v) for v in versions]
    found = built_on(image, as_versions)
    parts = (running.reference, image.platform, image.manifest_digest, running.tools, running.owners)
    if found is None:
        if versions:
            why = "not built on any tagged version of a trusted base: " + verify_platform(image, as_versions)[1]
        else:
            why = "no tagged version of a trusted base is known"
        return BaseRow(*parts, None, None, None, why)
    base = next(v for v in versions if v.digest == found.digest and v.platform == found.platform)
    if base.created is None:
        return BaseRow(*parts, base, None, None, f"{base.name} has no valid created time: age unknown")
    created = base.created
    later = [
        v
        for v in versions
        if v.repository == base.repository
        and same_platform(v.platform, base.platform)
        and v.created is not None
        and v.created > created
        and v.digest != base.digest
    ]
    newest = max(later, key=lambda v: v.created or _NEVER, default=None)
    age = max(0, (now - created).days)
    return BaseRow(*parts, base, age, newest, "")


def bases_report(images: Sequence[RunningImage], versions: Sequence[TaggedBase], now: dt.datetime) -> list[BaseRow]:
    """One row per running image: its proved base version, age and newer version; oldest base first,
    then bases of unknown age, then images on no known base."""
    rows = [_row(image, versions, now) for image in images]

    def order(row: BaseRow) -> tuple[int, dt.datetime, str]:
        if row.base is None:
            return 2, _NEVER, row.image
        if row.base.created is None:
            return 1, _NEVER, row.image
        return 0, row.base.created, row.image

    return sorted(rows, key=order)


def tools_to_rebuild(rows: Sequence[BaseRow]) -> Mapping[str, list[str]]:
    """Namespace -> the images it runs that have a newer base, oldest base first."""
    found: dict[str, list[str]] = {}
    for row in rows:
        if row.rebuild:
            for tool in row.tools:
                found.setdefault(tool, []).append(row.image)
    return found
