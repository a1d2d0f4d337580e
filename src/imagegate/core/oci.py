"""OCI / Docker image manifests, indexes and configs: typed, validated, pure.

Registry answers are hostile input: every document is decoded into a typed struct
(wrong types are a :class:`OciError`), every digest is checked against the bytes, and
sizes are bounded by the caller before the bytes get here.

Documents are read as the runtime reads them: containerd decodes them with Go's
``encoding/json`` into the image-spec's Go structs, and so does :mod:`imagegate.core.gojson`
here, into the same structs (below): keys matched case-insensitively with Unicode folding, a
repeated object merged into the first, a repeated array decoded into the elements already
there. A document Go cannot decode is an :class:`OciError` (the runtime cannot pull it either);
one Go reads but imagegate will not vouch for is a :class:`RefusedImageError`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import msgspec

from imagegate.core import gojson
from imagegate.core.gojson import (
    ANY,
    BYTES,
    INT64,
    RAW,
    STRING,
    GoJsonError,
    GoSlice,
    GoType,
    TooDeepError,
    map_of,
    pointer_to,
    slice_of,
    struct,
)
from imagegate.core.reference import DIGEST_HEX_LENGTH, ReferenceError, validate_digest

__all__ = [
    "ACCEPT_MANIFESTS",
    "Descriptor",
    "ImageConfig",
    "Index",
    "Manifest",
    "OciError",
    "Platform",
    "RefusedImageError",
    "digest_of",
    "parse_config",
    "parse_manifest",
    "verify_digest",
]

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_LIST})
MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
ACCEPT_MANIFESTS = ", ".join((OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST))
BASE_NAME_ANNOTATION = "org.opencontainers.image.base.name"
BASE_DIGEST_ANNOTATION = "org.opencontainers.image.base.digest"


class OciError(ValueError):
    """A registry document that is not what it must be."""


class RefusedImageError(OciError):
    """A well-formed image imagegate will not vouch for (an index too wide, or nested)."""


class Platform(msgspec.Struct, frozen=True, rename="camel"):
    architecture: str = ""
    os: str = ""
    variant: str = ""

    def __str__(self) -> str:
        return "/".join(part for part in (self.os, self.architecture, self.variant) if part)


class Descriptor(msgspec.Struct, frozen=True, rename="camel"):
    media_type: str
    digest: str
    size: int
    platform: Platform | None = None
    annotations: dict[str, str] = {}
    artifact_type: str = ""


class Manifest(msgspec.Struct, frozen=True, rename="camel"):
    schema_version: int
    config: Descriptor
    layers: list[Descriptor]
    media_type: str = ""
    annotations: dict[str, str] = {}
    # OCI 1.1: what an artifact is, and the manifest it is attached to (signatures, attestations)
    artifact_type: str = ""
    subject: Descriptor | None = None


class Index(msgspec.Struct, frozen=True, rename="camel"):
    schema_version: int
    manifests: list[Descriptor]
    media_type: str = ""
    annotations: dict[str, str] = {}


class _RootFs(msgspec.Struct, frozen=True):
    type: str = "layers"
    diff_ids: list[str] = []


class ImageConfig(msgspec.Struct, frozen=True):
    architecture: str = ""
    os: str = ""
    variant: str = ""
    rootfs: _RootFs = _RootFs()
    created: str = ""  # RFC 3339, as the builder wrote it: when the image was built (a claim, not proof)

    @property
    def diff_ids(self) -> tuple[str, ...]:
        return tuple(self.rootfs.diff_ids)


def digest_of(data: bytes, algorithm: str = "sha256") -> str:
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


def verify_digest(data: bytes, expected: str) -> None:
    """Raise :class:`OciError` unless ``data`` hashes to ``expected``."""
    try:
        validate_digest(expected)
    except ReferenceError as exc:
        raise OciError(f"bad digest {expected!r}: {exc}") from None
    algorithm = expected.partition(":")[0]
    if algorithm not in DIGEST_HEX_LENGTH:  # pragma: no cover - validate_digest refused it
        raise OciError(f"unsupported digest algorithm {algorithm}")
    actual = digest_of(data, algorithm)
    if actual != expected:
        raise OciError(f"content does not match its digest: expected {expected}, got {actual}")


# --- the Go structs containerd decodes a document into (image-spec v1.1, specs-go/v1) -------
# Their fields, types and JSON tags; tests/fixtures/go_json/decode.go declares the same in Go.

PLATFORM = struct(
    "Platform",
    ("architecture", STRING),
    ("os", STRING),
    ("os.version", STRING),
    ("os.features", slice_of(STRING)),
    ("variant", STRING),
)
DESCRIPTOR = struct(
    "Descriptor",
    ("mediaType", STRING),
    ("digest", STRING),
    ("size", INT64),
    ("urls", slice_of(STRING)),
    ("annotations", map_of(STRING)),
    ("data", BYTES),
    ("platform", pointer_to(PLATFORM)),
    ("artifactType", STRING),
)
INDEX = struct(
    "Index",
    ("schemaVersion", INT64),
    ("mediaType", STRING),
    ("artifactType", STRING),
    ("manifests", slice_of(DESCRIPTOR)),
    ("subject", pointer_to(DESCRIPTOR)),
    ("annotations", map_of(STRING)),
)
MANIFEST = struct(
    "Manifest",
    ("schemaVersion", INT64),
    ("mediaType", STRING),
    ("artifactType", STRING),
    ("config", DESCRIPTOR),
    ("layers", slice_of(DESCRIPTOR)),
    ("subject", pointer_to(DESCRIPTOR)),
    ("annotations", map_of(STRING)),
)
ROOTFS = struct("RootFS", ("type", STRING), ("diff_ids", slice_of(STRING)))
# Image: its embedded Platform and its rootfs, the parts a node's choice and the base check read.
# ``created`` is a *time.Time to Go; only reports read it, so any value is kept and judged there.
IMAGE_CONFIG = struct("Image", *PLATFORM.fields.items(), ("rootfs", ROOTFS), ("created", ANY))
# containerd's first look at a manifest or index (images.validateMediaType): what kind it says it is.
UNKNOWN_DOCUMENT = struct(
    "unknownDocument",
    ("mediaType", STRING),
    ("config", RAW),
    ("layers", RAW),
    ("manifests", RAW),
    ("fsLayers", RAW),
)


def _go_read(document: Any, go: GoType, what: str) -> dict[str, Any]:
    try:
        return gojson.decode(document, go)
    except GoJsonError as exc:
        raise OciError(f"malformed {what}: Go's encoding/json cannot decode it into a {go.name} ({exc})") from None


def _parse(body: bytes, what: str) -> Any:
    try:
        return gojson.parse(body)
    except TooDeepError as exc:
        raise RefusedImageError(f"{what}: {exc}") from None
    except GoJsonError as exc:
        raise OciError(f"malformed {what}: {exc}") from None


def _items(value: GoSlice | None) -> list[Any]:
    return [] if value is None else value.items


def _platform(value: dict[str, Any] | None) -> Platform | None:
    if value is None:
        return None
    return Platform(architecture=value["architecture"], os=value["os"], variant=value["variant"])


def _descriptor(value: dict[str, Any]) -> Descriptor:
    return Descriptor(
        media_type=value["mediaType"],
        digest=value["digest"],
        size=value["size"],
        platform=_platform(value["platform"]),
        annotations=value["annotations"] or {},
        artifact_type=value["artifactType"],
    )


def _check_descriptors(descriptors: list[Descriptor], what: str) -> None:
    # Go reads these; the runtime would fail on a bad digest it fetches, but not on one it
    # skips: refused (whatever registry.onError says), never passed over as malformed
    for descriptor in descriptors:
        try:
            validate_digest(descriptor.digest)
        except ReferenceError as exc:
            raise RefusedImageError(f"{what} has a bad digest: {exc}") from None
        if descriptor.size < 0:
            raise RefusedImageError(f"{what} has a negative size")


def _kind(document: Any, media_type: str) -> str:
    """Which document this is, as containerd decides: the media type it was fetched as (the
    registry's Content-Type, or the index entry's mediaType), which the body must not contradict."""
    seen = _go_read(document, UNKNOWN_DOCUMENT, "manifest")
    if seen["fsLayers"]:
        raise OciError("manifest is Docker schema 1, which runtimes no longer pull")
    declared: str = seen["mediaType"]
    kind = media_type.split(";", maxsplit=1)[0].strip()
    if kind not in INDEX_TYPES and kind not in MANIFEST_TYPES:
        kind = declared  # containerd pulls nothing of such a type; the body says what it would be
    if kind in MANIFEST_TYPES and (seen["manifests"] or declared in INDEX_TYPES):
        raise OciError(f"manifest fetched as {kind} is an index")
    if kind in INDEX_TYPES and (seen["config"] or seen["layers"] or declared in MANIFEST_TYPES):
        raise OciError(f"index fetched as {kind} is a manifest")
    return kind


def parse_manifest(body: bytes, media_type: str) -> Manifest | Index:
    """A manifest or an index, read as containerd reads it: its kind from ``media_type`` (the
    Content-Type, or the mediaType of the index entry it was fetched for), its fields as Go's
    encoding/json fills an ocispec.Manifest or ocispec.Index."""
    document = _parse(body, "manifest")
    kind = _kind(document, media_type)
    if kind in INDEX_TYPES:
        fields = _go_read(document, INDEX, kind)
        index = Index(
            schema_version=fields["schemaVersion"],
            manifests=[_descriptor(entry) for entry in _items(fields["manifests"])],
            media_type=fields["mediaType"],
            annotations=fields["annotations"] or {},
        )
        _check_descriptors(index.manifests, "index entry")
        return index
    if kind in MANIFEST_TYPES:
        fields = _go_read(document, MANIFEST, kind)
        subject = fields["subject"]
        manifest = Manifest(
            schema_version=fields["schemaVersion"],
            config=_descriptor(fields["config"]),
            layers=[_descriptor(layer) for layer in _items(fields["layers"])],
            media_type=fields["mediaType"],
            annotations=fields["annotations"] or {},
            artifact_type=fields["artifactType"],
            subject=None if subject is None else _descriptor(subject),
        )
        attached = [] if manifest.subject is None else [manifest.subject]
        _check_descriptors([manifest.config, *manifest.layers, *attached], "manifest")
        return manifest
    raise OciError(f"unsupported manifest media type {kind!r} (imagegate reads OCI and Docker v2 schema 2)")


def parse_config(body: bytes) -> ImageConfig:
    """An image config as Go fills an ocispec.Image (the parts imagegate reads)."""
    fields = _go_read(_parse(body, "image config"), IMAGE_CONFIG, "image config")
    created = fields["created"]
    rootfs = fields["rootfs"]
    config = ImageConfig(
        architecture=fields["architecture"],
        os=fields["os"],
        variant=fields["variant"],
        rootfs=_RootFs(type=rootfs["type"], diff_ids=_items(rootfs["diff_ids"])),
        created=created if isinstance(created, str) else "",  # a bad one must not refuse an image at admission
    )
    for diff_id in config.diff_ids:
        try:
            validate_digest(diff_id)
        except ReferenceError as exc:
            raise OciError(f"image config has a bad diff_id: {exc}") from None
    return config


@dataclass(frozen=True, slots=True)
class PlatformImage:
    """One runnable image: its platform, manifest, layers (compressed) and diff_ids."""

    platform: str
    manifest_digest: str
    layers: tuple[Descriptor, ...]
    diff_ids: tuple[str, ...]
    annotations: dict[str, str]
    created: str = ""  # the config's ``created``

    @property
    def compressed_size(self) -> int:
        return sum(layer.size for layer in self.layers)


@dataclass(frozen=True, slots=True)
class ResolvedImage:
    """What a reference resolved to: the top-level digest and every platform examined."""

    reference: str
    digest: str
    media_type: str
    platforms: tuple[PlatformImage, ...]
    available_platforms: tuple[str, ...]
