"""OCI / Docker image manifests, indexes and configs: typed, validated, pure.

Registry answers are hostile input: every document is decoded into a typed struct
(wrong types are a :class:`OciError`), every digest is checked against the bytes, and
sizes are bounded by the caller before the bytes get here.

Documents are read as the runtime reads them. containerd and CRI-O decode with Go's
``encoding/json``, which matches an object's keys to struct fields case-insensitively (with
Unicode folding: "o" and a long s, U+017F, is "os") and lets a later duplicate key win. A document that
says ``"platform": {"OS": "linux", "Architecture": "amd64"}``, or ``"manifests"`` twice, is
read here exactly as the node reads it, never as a stricter decoder would (:func:`go_fields`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

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


# --- Go's encoding/json view of a document --------------------------------------------------


class _Pairs(list[tuple[str, Any]]):
    """A JSON object as written: every key, in order, duplicates included."""


# Under Unicode simple case folding (Go's), only these non-ASCII letters fold onto ASCII ones;
# str.upper() would also turn the dotless i into "I", which Go does not.
_GO_FOLDS_TO_ASCII = {"\u017f": "S", "\u212a": "K"}  # long s, Kelvin sign


def _go_fold(key: str) -> str:
    """Go's ``foldName``, as far as comparing with ASCII field names needs."""
    if key.isascii():
        return key.upper()
    return "".join(c.upper() if c.isascii() else _GO_FOLDS_TO_ASCII.get(c, c) for c in key)


# A struct's fields, "map", ("list", item schema), or None for a plain value.
Schema = Mapping[str, Any] | str | tuple[str, Any] | None

_PLATFORM_FIELDS: Mapping[str, Schema] = dict.fromkeys(
    ("architecture", "os", "os.version", "os.features", "variant", "features")
)
_DESCRIPTOR_FIELDS: Mapping[str, Schema] = {
    **dict.fromkeys(("mediaType", "digest", "size", "urls", "data", "artifactType")),
    "annotations": "map",
    "platform": _PLATFORM_FIELDS,
}
_DOCUMENT_FIELDS: Mapping[str, Schema] = {
    **dict.fromkeys(("schemaVersion", "mediaType", "artifactType")),
    "manifests": ("list", _DESCRIPTOR_FIELDS),
    "layers": ("list", _DESCRIPTOR_FIELDS),
    "config": _DESCRIPTOR_FIELDS,
    "subject": _DESCRIPTOR_FIELDS,
    "annotations": "map",
}
_CONFIG_FIELDS: Mapping[str, Schema] = {
    **dict.fromkeys(("architecture", "os", "os.version", "os.features", "variant", "created")),
    "rootfs": dict.fromkeys(("type", "diff_ids")),
}


def _plain(value: Any) -> Any:
    """Objects back to dicts (a later duplicate key wins, as in a Go map), for type errors."""
    if isinstance(value, _Pairs):
        return {key: _plain(item) for key, item in value}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


def go_fields(value: Any, schema: Any) -> Any:
    """What a Go struct decoded from ``value`` holds: each key goes to the field it names
    exactly or, failing that, case-insensitively; unknown keys are dropped; the last wins."""
    if isinstance(schema, Mapping) and isinstance(value, _Pairs):
        folded = {_go_fold(name): name for name in schema}
        out: dict[str, Any] = {}
        for key, item in value:
            name = key if key in schema else folded.get(_go_fold(key))
            if name is not None:
                out[name] = go_fields(item, schema[name])
        return out
    if isinstance(schema, tuple) and isinstance(value, list):
        return [go_fields(item, schema[1]) for item in value]
    return _plain(value)


def _go_decode(body: bytes, schema: Mapping[str, Any], what: str) -> dict[str, Any]:
    try:
        value = json.loads(body, object_pairs_hook=_Pairs)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise OciError(f"{what} is not JSON: {exc}") from None
    if not isinstance(value, _Pairs):
        raise OciError(f"{what} is not a JSON object")
    fields: dict[str, Any] = go_fields(value, schema)
    return fields


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
    fields = _go_decode(body, _DOCUMENT_FIELDS, "manifest")
    declared = fields.get("mediaType")
    kind = declared if isinstance(declared, str) and declared else media_type.split(";", maxsplit=1)[0].strip()
    try:
        if kind in INDEX_TYPES:
            index = msgspec.convert(fields, type=Index)
            _check_descriptors(index.manifests, "index entry")
            return index
        if kind in MANIFEST_TYPES:
            manifest = msgspec.convert(fields, type=Manifest)
            subject = [manifest.subject] if manifest.subject is not None else []
            _check_descriptors([manifest.config, *manifest.layers, *subject], "manifest")
            return manifest
    except (msgspec.ValidationError, UnicodeEncodeError) as exc:
        raise OciError(f"malformed {kind}: {exc}") from None
    raise OciError(f"unsupported manifest media type {kind!r} (imagegate reads OCI and Docker v2 schema 2)")


def parse_config(body: bytes) -> ImageConfig:
    fields = _go_decode(body, _CONFIG_FIELDS, "image config")
    if not isinstance(fields.get("created", ""), str):
        del fields["created"]  # only reports read it: a bad one must not refuse an image at admission
    try:
        config = msgspec.convert(fields, type=ImageConfig)
    except (msgspec.ValidationError, UnicodeEncodeError) as exc:
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
