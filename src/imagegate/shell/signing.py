"""Signatures attached to images in a registry: fetching them, and verifying them.

Artifacts attached to an image digest are found in the two places cosign and the OCI 1.1
specification put them (:func:`attached`):

* cosign's tag scheme: a manifest tagged ``sha256-<hex>.sig`` (``.att`` for attestations) in
  the image's repository;
* the OCI 1.1 referrers API (``GET /v2/<name>/referrers/<digest>``) or, on a registry without
  it (a 404, as Debian's docker-registry 2.8 answers), its tag-schema fallback: an index tagged
  ``sha256-<hex>`` listing the artifacts.

Everything goes through the :class:`~imagegate.shell.registry.RegistryClient`: its auth,
per-registry limits, time budget, size bounds and digest checks, and its single flight.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from imagegate.core.oci import Descriptor, Index, Manifest, OciError, parse_manifest
from imagegate.core.reference import Reference
from imagegate.shell.registry import RegistryClient, RegistryError

__all__ = [
    "MAX_ATTACHED",
    "Attached",
    "attached",
    "attached_by_referrers",
    "attached_by_tag",
    "fallback_tag",
    "layer_bytes",
    "tag_for",
]

# At most this many artifacts attached to one digest are read (an attacker can attach many).
MAX_ATTACHED = 16


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
        raise RegistryError("malformed", f"{what}: {exc}") from None
    if not isinstance(document, Manifest):
        raise RegistryError("malformed", f"{what} is an index, not an artifact manifest")
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


def _index(body: bytes, what: str) -> Index:
    try:
        document = parse_manifest(body, "application/vnd.oci.image.index.v1+json")
    except OciError as exc:
        raise RegistryError("malformed", f"{what}: {exc}") from None
    if not isinstance(document, Index):
        raise RegistryError("malformed", f"{what} is a manifest, not an index")
    return document


async def attached_by_referrers(
    client: RegistryClient, ref: Reference, digest: str, artifact_types: Collection[str]
) -> tuple[Attached, ...]:
    """The artifacts of the given types that refer to ``digest``: by the referrers API, else its fallback tag.

    The artifact type filter is applied here too (a registry may ignore the query), and at
    most :data:`MAX_ATTACHED` artifacts are read, the newest-listed last.
    """
    wanted = set(artifact_types)
    query = next(iter(wanted)) if len(wanted) == 1 else ""
    body = await client.referrers(ref, digest, query)
    if body is not None:
        found_by = "referrers API"
        index = _index(body, f"referrers of {ref.repository}@{digest[:19]}")
    else:
        tag = fallback_tag(digest)
        manifest = await client.manifest_if_any(ref, tag)
        if manifest is None:
            return ()
        found_by = f"referrers tag {tag}"
        index = _index(manifest[0], f"{ref.repository}:{tag}")
    entries = [d for d in index.manifests if not wanted or d.artifact_type in wanted or not d.artifact_type]
    results = []
    for descriptor in entries[-MAX_ATTACHED:]:
        what = f"artifact {descriptor.digest[:19]} attached to {ref.repository}@{digest[:19]}"
        document = await client.manifest_if_any(ref, descriptor.digest)
        if document is None:
            continue  # listed, then deleted: not there
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
    """Every artifact attached to ``digest`` in ``ref``'s repository, in both layouts, single flight.

    ``tag_suffix`` names cosign's tag (``"sig"``, ``"att"``; None: no tag-scheme lookup);
    ``artifact_types`` the referrers to read (e.g. the Sigstore bundle media types).
    """

    async def fetch() -> tuple[Attached, ...]:
        found: list[Attached] = []
        if tag_suffix is not None:
            tagged = await attached_by_tag(client, ref, digest, tag_suffix)
            if tagged is not None:
                found.append(tagged)
        if artifact_types:
            found.extend(await attached_by_referrers(client, ref, digest, artifact_types))
        return tuple(found)

    key = ("attached", ref.repository, digest, tag_suffix, tuple(sorted(artifact_types)))
    return await client.shared(key, fetch)


async def layer_bytes(client: RegistryClient, ref: Reference, descriptor: Descriptor, limit: int = 1 << 20) -> bytes:
    """One layer of an attached artifact (a payload, a bundle), at most ``limit`` bytes, digest-checked."""
    return await client.blob(ref, descriptor, limit)
