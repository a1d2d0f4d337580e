"""Is an image built on a trusted base? Proved from layers, never from what the image says.

An image is based on a base image when its ``rootfs.diff_ids`` begin with the whole
chain of that base's diff_ids (diff_ids are digests of the uncompressed layers, so the
proof does not depend on how a registry compressed them). Bases change: the verifier
remembers earlier versions of each base for a window, so an image built on last month's
base still passes. The OCI annotations ``org.opencontainers.image.base.name/digest`` are
written by the image's author: they are shown as a hint, never trusted.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from imagegate.core.decide import BaseImageVerdict
from imagegate.core.oci import BASE_DIGEST_ANNOTATION, BASE_NAME_ANNOTATION, PlatformImage, ResolvedImage

__all__ = ["BaseVersion", "built_on", "same_platform", "verify_image", "verify_platform"]


@dataclass(frozen=True, slots=True)
class BaseVersion:
    """One version of a trusted base, for one platform, as seen at ``seen``."""

    reference: str
    digest: str
    platform: str
    diff_ids: tuple[str, ...]
    seen: dt.datetime


def _common_prefix(a: Sequence[str], b: Sequence[str]) -> int:
    count = 0
    for left, right in zip(a, b, strict=False):
        if left != right:
            break
        count += 1
    return count


def _os_and_architecture(platform: str) -> tuple[str, ...]:
    """Bases are compared by os and architecture (normalized): a variant changes neither's layers."""
    return tuple(platform.split("/")[:2])


def same_platform(a: str, b: str) -> bool:
    """Whether a base for platform ``b`` can be the base of an image for ``a``."""
    return _os_and_architecture(a) == _os_and_architecture(b)


def built_on(image: PlatformImage, bases: Sequence[BaseVersion]) -> BaseVersion | None:
    """The base version ``image`` is proved to be built on: its whole layer chain begins the
    image's. The longest such chain wins (a base built on another base), then the latest seen."""
    matches = [
        b
        for b in bases
        if b.diff_ids and same_platform(image.platform, b.platform) and image.diff_ids[: len(b.diff_ids)] == b.diff_ids
    ]
    if not matches:
        return None
    return max(matches, key=lambda b: (len(b.diff_ids), b.seen))


def verify_platform(image: PlatformImage, bases: Sequence[BaseVersion]) -> tuple[bool, str]:
    wanted = _os_and_architecture(image.platform)
    candidates = [b for b in bases if _os_and_architecture(b.platform) == wanted and b.diff_ids]
    if not candidates:
        return False, f"no trusted base image is known for {image.platform}"
    best = built_on(image, candidates)
    if best is not None:
        own = len(image.diff_ids) - len(best.diff_ids)
        return True, (
            f"{image.platform}: built on {best.reference} ({best.digest[:19]}, seen {best.seen.date().isoformat()}), "
            f"{len(best.diff_ids)} base layers + {own} own"
        )
    nearest = max(candidates, key=lambda b: (_common_prefix(image.diff_ids, b.diff_ids), b.seen))
    shared = _common_prefix(image.diff_ids, nearest.diff_ids)
    if shared == len(image.diff_ids):
        why = f"it has only {len(image.diff_ids)} layers, the base has {len(nearest.diff_ids)}"
    else:
        why = f"layer {shared + 1} differs ({image.diff_ids[shared][:19]} vs {nearest.diff_ids[shared][:19]})"
    # What differs first: a tenant reads this in a warning the API server may cut.
    detail = (
        f"{image.platform}: {why}, against the nearest trusted base {nearest.reference} "
        f"({nearest.digest[:19]}, {shared} of {len(nearest.diff_ids)} layers shared)"
    )
    return False, detail


def verify_image(image: ResolvedImage, bases: Sequence[BaseVersion]) -> BaseImageVerdict:
    """Every entry a node might pull must start with a trusted base's whole layer chain.

    The verdict carries the digest it judged, so pinning pins exactly that.
    """
    if not image.platforms:
        wanted = ", ".join(image.available_platforms) or "none"
        return BaseImageVerdict(
            False, f"the image offers no platform this cluster runs (it has: {wanted})", image.digest
        )
    details = []
    ok = True
    for platform in image.platforms:
        passed, detail = verify_platform(platform, bases)
        ok = ok and passed
        details.append(detail)
    claimed = next((p.annotations for p in image.platforms if BASE_NAME_ANNOTATION in p.annotations), None)
    if claimed is not None and not ok:
        name = claimed.get(BASE_NAME_ANNOTATION, "")
        digest = claimed.get(BASE_DIGEST_ANNOTATION, "")
        details.append(f"the image claims base {name} {digest[:19]} (an annotation: a hint, not proof)")
    return BaseImageVerdict(ok, "; ".join(details), image.digest)
