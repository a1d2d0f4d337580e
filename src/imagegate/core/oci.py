"""OCI / Docker image manifests, indexes and configs: typed, validated, pure.

Registry answers are hostile input: every document is decoded into a typed struct
(wrong types are a :class:`OciError`), every digest is checked against the bytes, and
sizes are bounded by the caller before the bytes get here.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import msgspec

from imagegate.core.reference import DIGEST_HEX_LENGTH, ReferenceError, validate_digest

__all__ = [
    "ACCEPT_MANIFESTS",
    "Descriptor",
    "ImageConfig",
    "Index",
    "Manifest",
    "OciError",
    "Platform",
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


class Manifest(msgspec.Struct, frozen=True, rename="camel"):
    schema_version: int
    config: Descriptor
    layers: list[Descriptor]
    media_type: str = ""
    annotations: dict[str, str] = {}


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


def _check_descriptors(descriptors: list[Descriptor], what: str) -> None:
    for descriptor in descriptors:
        try:
            validate_digest(descriptor.digest)
        except ReferenceError as exc:
            raise OciError(f"{what} has a bad digest: {exc}") from None
        if descriptor.size < 0:
            raise OciError(f"{what} has a negative size")


def parse_manifest(body: bytes, media_type: str) -> Manifest | Index:
    """A manifest or an index; the media type comes from the body or, failing that, the header."""
    try:
        declared = msgspec.json.decode(body, type=dict[str, object]).get("mediaType")
    except (msgspec.DecodeError, RecursionError, UnicodeDecodeError) as exc:
        raise OciError(f"manifest is not JSON: {exc}") from None
    kind = declared if isinstance(declared, str) and declared else media_type.split(";", maxsplit=1)[0].strip()
    try:
        if kind in INDEX_TYPES:
            index = msgspec.json.decode(body, type=Index)
            _check_descriptors(index.manifests, "index entry")
            return index
        if kind in MANIFEST_TYPES:
            manifest = msgspec.json.decode(body, type=Manifest)
            _check_descriptors([manifest.config, *manifest.layers], "manifest")
            return manifest
    except (msgspec.ValidationError, UnicodeDecodeError) as exc:
        raise OciError(f"malformed {kind}: {exc}") from None
    raise OciError(f"unsupported manifest media type {kind!r} (imagegate reads OCI and Docker v2 schema 2)")


def parse_config(body: bytes) -> ImageConfig:
    try:
        config = msgspec.json.decode(body, type=ImageConfig)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError, UnicodeDecodeError) as exc:
        raise OciError(f"malformed image config: {exc}") from None
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
