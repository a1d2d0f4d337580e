"""Artifacts attached to an image digest in a registry: where they are found, what they are, their layers read.

Found in the two places cosign and the OCI 1.1 specification put them (:func:`attached`, and
:func:`in_both_layouts` for a reader that verifies each layout's artifacts as they come):

* cosign's tag scheme: a manifest tagged ``sha256-<hex>.sig`` (``.att`` for attestations) in
  the image's repository;
* the OCI 1.1 referrers API (``GET /v2/<name>/referrers/<digest>``) or, on a registry without
  it (a 404, as Debian's docker-registry 2.8 answers), its tag-schema fallback: an index tagged
  ``sha256-<hex>`` listing the artifacts.

Also the media types and annotations cosign and Sigstore give them, and the bounds on reading
their layers. Everything goes through the :class:`~imagegate.shell.registry.client.RegistryClient`:
its auth, per-registry limits, time budget, size bounds and digest checks, and its single flight.
No cryptography here: verifying is ``signing.py``'s and ``sigstore_adapter.py``'s.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, TypeVar, cast

from imagegate.core.gobase64 import Base64Error, go_b64decode
from imagegate.core.oci import Descriptor, Index, Manifest, OciError, parse_manifest
from imagegate.core.reference import Reference
from imagegate.core.signatures import PayloadError
from imagegate.shell.registry.errors import RegistryError, RegistryErrorKind

if TYPE_CHECKING:
    from imagegate.shell.registry.client import RegistryClient

__all__ = [
    "BUNDLE_ANNOTATION",
    "BUNDLE_TYPES",
    "BUNDLE_V01",
    "CERTIFICATE_ANNOTATION",
    "COSIGN_SIGNATURE_ARTIFACT",
    "IN_TOTO_PAYLOAD",
    "MAX_ATTACHED",
    "MAX_BUNDLE_BYTES",
    "MAX_LAYERS",
    "MAX_PAYLOAD_BYTES",
    "READS_AT_ONCE",
    "SIGNATURE_ANNOTATION",
    "SIMPLE_SIGNING",
    "Attached",
    "all_at_once",
    "attached",
    "attached_by_referrers",
    "attached_by_tag",
    "decoded_signature",
    "fallback_tag",
    "in_both_layouts",
    "layer_bytes",
    "tag_for",
]

T = TypeVar("T")

# At most this many artifacts attached to one digest are read (an attacker can attach many).
MAX_ATTACHED = 16
# Documents read at once for one image: their round trips overlap, and few are held at a time.
READS_AT_ONCE = 8

SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
CERTIFICATE_ANNOTATION = "dev.sigstore.cosign/certificate"
# cosign's "SET" bundle: the Rekor entry and its signed entry timestamp (the inclusion promise)
BUNDLE_ANNOTATION = "dev.sigstore.cosign/bundle"
BUNDLE_V01: Final = "application/vnd.dev.sigstore.bundle+json;version=0.1"
# Sigstore bundles as cosign and the OCI 1.1 referrers carry them (artifact and layer media types).
BUNDLE_TYPES = frozenset(
    {
        "application/vnd.dev.sigstore.bundle+json;version=0.1",
        "application/vnd.dev.sigstore.bundle+json;version=0.2",
        "application/vnd.dev.sigstore.bundle+json;version=0.3",
        "application/vnd.dev.sigstore.bundle.v0.3+json",
    }
)
# cosign's signature manifest when it attaches through the referrers API (--registry-referrers-mode oci-1-1)
COSIGN_SIGNATURE_ARTIFACT = "application/vnd.dev.cosign.artifact.sig.v1+json"
IN_TOTO_PAYLOAD = "application/vnd.in-toto+json"
# At most this many signature layers of one artifact are read (cosign appends one per signature).
MAX_LAYERS = 32
MAX_PAYLOAD_BYTES = 256 * 1024
MAX_BUNDLE_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Attached:
    """One artifact attached to an image digest: its manifest, and where it was found."""

    digest: str  # the artifact manifest's own digest
    artifact_type: str  # the manifest's artifactType, else its config's media type
    manifest: Manifest
    found_by: str  # "tag sha256-<hex>.sig", "referrers API", "referrers tag sha256-<hex>"


def tag_for(digest: str, suffix: str) -> str:
    """cosign's tag for an artifact of ``digest``: ``sha256-<hex>.<suffix>`` (sig, att, sbom)."""
    return f"{fallback_tag(digest)}.{suffix}"


def fallback_tag(digest: str) -> str:
    """The OCI 1.1 referrers tag schema: ``<alg>-<ref>``, truncated to the 128 characters a tag may have."""
    algorithm, _, hexdigits = digest.partition(":")
    return f"{algorithm}-{hexdigits}"[:128]


def _artifact(body: bytes, digest: str, content_type: str, found_by: str, what: str) -> Attached:
    try:
        document = parse_manifest(body, content_type)
    except OciError as exc:
        raise RegistryError(RegistryErrorKind.MALFORMED, f"{what}: {exc}") from None
    if not isinstance(document, Manifest):
        raise RegistryError(RegistryErrorKind.MALFORMED, f"{what} is an index, not an artifact manifest")
    kind = document.artifact_type or document.config.media_type
    return Attached(digest, kind, document, found_by)


async def attached_by_tag(client: RegistryClient, ref: Reference, digest: str, suffix: str) -> Attached | None:
    """The artifact cosign tagged ``sha256-<hex>.<suffix>`` beside ``digest``, or None."""
    tag = tag_for(digest, suffix)
    found = await client.manifest_if_any(ref, tag)
    if found is None:
        return None
    body, artifact_digest, content_type = found
    return _artifact(body, artifact_digest, content_type, f"tag {tag}", f"{ref.repository}:{tag}")


async def all_at_once(calls: Sequence[Awaitable[T]]) -> list[T]:
    """The results of ``calls``, run at once; the first failure (in order) is raised once all
    have ended, so none is left running unobserved."""
    results = await asyncio.gather(*calls, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return cast("list[T]", results)


def _index(body: bytes, what: str) -> Index:
    try:
        document = parse_manifest(body, "application/vnd.oci.image.index.v1+json")
    except OciError as exc:
        raise RegistryError(RegistryErrorKind.MALFORMED, f"{what}: {exc}") from None
    if not isinstance(document, Index):
        raise RegistryError(RegistryErrorKind.MALFORMED, f"{what} is a manifest, not an index")
    return document


async def attached_by_referrers(
    client: RegistryClient, ref: Reference, digest: str, artifact_types: Collection[str]
) -> tuple[Attached, ...]:
    """The artifacts of the given types that refer to ``digest``: by the referrers API, else its fallback tag.

    The API and the fallback tag are asked at once (a registry without the API, such as Debian's
    docker-registry 2.8, answers 404 and the tag is needed: one round trip, not two); the tag's
    answer counts only when the API's is a 404. The artifact type filter is applied here too (a
    registry may ignore the query), and at most :data:`MAX_ATTACHED` artifacts are read, the
    newest-listed last.
    """
    wanted = set(artifact_types)
    query = next(iter(wanted)) if len(wanted) == 1 else ""
    tag = fallback_tag(digest)
    by_api, by_tag = await asyncio.gather(
        client.referrers(ref, digest, query), client.manifest_if_any(ref, tag), return_exceptions=True
    )
    if isinstance(by_api, BaseException):
        raise by_api
    if by_api is not None:
        found_by = "referrers API"
        index = _index(by_api, f"referrers of {ref.repository}@{digest[:19]}")
    else:
        if isinstance(by_tag, BaseException):
            raise by_tag
        if by_tag is None:
            return ()
        found_by = f"referrers tag {tag}"
        index = _index(by_tag[0], f"{ref.repository}:{tag}")
    entries = [d for d in index.manifests if not wanted or d.artifact_type in wanted or not d.artifact_type]
    listed = entries[-MAX_ATTACHED:]
    results = []
    for start in range(0, len(listed), READS_AT_ONCE):
        chunk = listed[start : start + READS_AT_ONCE]
        documents = await all_at_once([client.manifest_if_any(ref, d.digest) for d in chunk])
        for descriptor, document in zip(chunk, documents, strict=True):
            if document is None:
                continue  # listed, then deleted: not there
            what = f"artifact {descriptor.digest[:19]} attached to {ref.repository}@{digest[:19]}"
            artifact = _artifact(document[0], descriptor.digest, document[2] or descriptor.media_type, found_by, what)
            if wanted and artifact.artifact_type not in wanted:
                continue
            subject = artifact.manifest.subject
            if subject is not None and subject.digest != digest:
                continue  # the fallback index is written by anyone who can push: it proves nothing by itself
            results.append(artifact)
    return tuple(results)


async def attached(
    client: RegistryClient,
    ref: Reference,
    digest: str,
    *,
    tag_suffix: str | None,
    artifact_types: Collection[str],
) -> tuple[Attached, ...]:
    """Every artifact attached to ``digest`` in ``ref``'s repository, in both layouts (asked at once), single flight.

    ``tag_suffix`` names cosign's tag (``"sig"``, ``"att"``; None: no tag-scheme lookup);
    ``artifact_types`` the referrers to read (e.g. the Sigstore bundle media types).
    """

    async def as_found(artifacts: tuple[Attached, ...]) -> tuple[Attached, ...]:
        return artifacts

    async def fetch() -> tuple[Attached, ...]:
        return await in_both_layouts(client, ref, digest, tag_suffix, artifact_types, as_found)

    key = ("attached", ref.repository, digest, tag_suffix, tuple(sorted(artifact_types)))
    return await client.shared(key, fetch)


async def in_both_layouts(
    client: RegistryClient,
    ref: Reference,
    digest: str,
    tag_suffix: str | None,
    artifact_types: Collection[str],
    then: Callable[[tuple[Attached, ...]], Awaitable[tuple[T, ...]]],
) -> tuple[T, ...]:
    """``then`` of the artifacts attached to ``digest`` by cosign's tag and by the referrers, the
    two layouts asked at once and each read on (``then``) as soon as its artifacts are known:
    the tag's results first. The one way artifacts are found (see :func:`attached`)."""

    async def by_tag() -> tuple[T, ...]:
        tagged = None if tag_suffix is None else await attached_by_tag(client, ref, digest, tag_suffix)
        return () if tagged is None else await then((tagged,))

    async def by_referrers() -> tuple[T, ...]:
        return await then(await attached_by_referrers(client, ref, digest, artifact_types)) if artifact_types else ()

    tagged, referring = await all_at_once([by_tag(), by_referrers()])
    return (*tagged, *referring)


async def layer_bytes(client: RegistryClient, ref: Reference, descriptor: Descriptor, limit: int = 1 << 20) -> bytes:
    """One layer of an attached artifact (a payload, a bundle), at most ``limit`` bytes, digest-checked."""
    return await client.blob(ref, descriptor, limit)


def decoded_signature(annotations: Mapping[str, str]) -> bytes:
    """The signature annotation, decoded as cosign and containers/image decode it (Go's StdEncoding:
    a value wrapped over lines decodes)."""
    try:
        return go_b64decode(annotations[SIGNATURE_ANNOTATION])
    except KeyError:
        raise PayloadError("the layer carries no signature annotation") from None
    except Base64Error as exc:
        raise PayloadError(f"the signature annotation is {exc}") from None
