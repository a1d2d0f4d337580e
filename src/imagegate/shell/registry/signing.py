"""Signatures attached to images in a registry: fetching them, and verifying them.

Artifacts attached to an image digest are found in the two places cosign and the OCI 1.1
specification put them (:func:`attached`):

* cosign's tag scheme: a manifest tagged ``sha256-<hex>.sig`` (``.att`` for attestations) in
  the image's repository;
* the OCI 1.1 referrers API (``GET /v2/<name>/referrers/<digest>``) or, on a registry without
  it (a 404, as Debian's docker-registry 2.8 answers), its tag-schema fallback: an index tagged
  ``sha256-<hex>`` listing the artifacts.

Everything goes through the :class:`~imagegate.shell.registry.client.RegistryClient`: its auth,
per-registry limits, time budget, size bounds and digest checks, and its single flight.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import re
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar, cast

import structlog
from cachetools import LRUCache, TTLCache
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from sigstore._internal.trust import KeyringPurpose
from sigstore.errors import VerificationError
from sigstore.hashes import Hashed
from sigstore.models import Bundle, InvalidBundle, TransparencyLogEntry, TrustedRoot
from sigstore.verify import Verifier
from sigstore_models.bundle.v1 import Bundle as BundleDocument
from sigstore_models.bundle.v1 import VerificationMaterial
from sigstore_models.common.v1 import HashAlgorithm, LogId, MessageSignature, X509Certificate, X509CertificateChain
from sigstore_models.rekor.v1 import InclusionPromise, KindVersion
from sigstore_models.rekor.v1 import TransparencyLogEntry as LogEntryDocument

from imagegate.core import gojson
from imagegate.core.gobase64 import Base64Error, go_b64decode
from imagegate.core.oci import Descriptor, Index, Manifest, OciError, parse_manifest
from imagegate.core.protojson import BundleError, read_bundle
from imagegate.core.provenance import ProvenanceError, about_another_image, statement_subjects
from imagegate.core.records import SignatureVerdict
from imagegate.core.reference import Reference
from imagegate.core.signatures import (
    EXPIRED,
    OTHER_DIGEST,
    OTHER_KEY,
    TLOG_INVALID,
    TLOG_MISSING,
    PayloadError,
    SignatureEvidence,
    SignatureRule,
    SignaturesConfig,
    check_simple_signing_payload,
    judge,
    signer_name,
)
from imagegate.shell.policy_source import relative_to_policy
from imagegate.shell.registry.errors import RegistryError, RegistryErrorKind

if TYPE_CHECKING:
    from sigstore._internal.trust import RekorKeyring

    from imagegate.shell.registry.client import RegistryClient

__all__ = [
    "BUNDLE_TYPES",
    "MAX_ATTACHED",
    "Attached",
    "SignatureChecker",
    "SigningError",
    "attached",
    "attached_by_referrers",
    "attached_by_tag",
    "fallback_tag",
    "judge_image",
    "keyless_signing_evidence",
    "layer_bytes",
    "load_keys",
    "load_public_key",
    "simple_signing_evidence",
    "tag_for",
    "tag_scheme_bundle",
    "tag_scheme_evidence",
    "verifies",
    "verify_bundle",
    "verify_bundle_statement",
    "verify_keyless_signature",
]

log = structlog.get_logger("imagegate.signing")
T = TypeVar("T")

# At most this many artifacts attached to one digest are read (an attacker can attach many).
MAX_ATTACHED = 16
# Documents read at once for one image: their round trips overlap, and few are held at a time.
_READS_AT_ONCE = 8


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


async def _all(calls: Sequence[Awaitable[T]]) -> list[T]:
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
    for start in range(0, len(listed), _READS_AT_ONCE):
        chunk = listed[start : start + _READS_AT_ONCE]
        documents = await _all([client.manifest_if_any(ref, d.digest) for d in chunk])
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
        return await _in_both_layouts(client, ref, digest, tag_suffix, artifact_types, as_found)

    key = ("attached", ref.repository, digest, tag_suffix, tuple(sorted(artifact_types)))
    return await client.shared(key, fetch)


async def _in_both_layouts(
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

    tagged, referring = await _all([by_tag(), by_referrers()])
    return (*tagged, *referring)


async def layer_bytes(client: RegistryClient, ref: Reference, descriptor: Descriptor, limit: int = 1 << 20) -> bytes:
    """One layer of an attached artifact (a payload, a bundle), at most ``limit`` bytes, digest-checked."""
    return await client.blob(ref, descriptor, limit)


# --- verification ------------------------------------------------------------------------------

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
_OIDC_ISSUER_V1 = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.1")
_OIDC_ISSUER_V2 = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.8")
_OTHERNAME_SAN = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.7")

PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey


class SigningError(Exception):
    """The signature configuration cannot be used: a key or trusted root that cannot be read."""


def load_public_key(pem: bytes, where: str) -> PublicKey:
    """A PEM public key cosign can sign with: ECDSA P-256/P-384/P-521, RSA, Ed25519."""
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise SigningError(f"{where} is not a PEM public key: {exc}") from None
    if isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name not in ("secp256r1", "secp384r1", "secp521r1"):
            raise SigningError(f"{where}: ECDSA curve {key.curve.name} is not one cosign signs with")
        return key
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < 2048:
            raise SigningError(f"{where}: an RSA key of {key.key_size} bits is too weak (2048 at least)")
        return key
    if isinstance(key, ed25519.Ed25519PublicKey):
        return key
    raise SigningError(f"{where}: {type(key).__name__} keys are not supported (ECDSA, RSA or Ed25519)")


def load_keys(config: SignaturesConfig, relative_to: Path | None) -> tuple[dict[str, PublicKey], dict[str, str]]:
    """Every key the rules name, by the path as written (resolved like the policy's other paths),
    and why each key that cannot be used cannot: a rule naming one fails closed, the others go on
    (one tool's missing key must not stop every other image's verification)."""
    keys: dict[str, PublicKey] = {}
    errors: dict[str, str] = {}
    for name in config.keys:
        path = relative_to_policy(name, relative_to)
        try:
            keys[name] = load_public_key(path.read_bytes(), str(path))
        except OSError as exc:
            errors[name] = f"cannot read the public key {path}: {exc.strerror or exc}"
        except SigningError as exc:
            errors[name] = str(exc)
    return keys, errors


_EC_HASHES: dict[str, tuple[type[hashes.HashAlgorithm], ...]] = {
    # the curve's own hash first (cosign's default since sigstore 1.8), then SHA-256 (older cosign)
    "secp256r1": (hashes.SHA256,),
    "secp384r1": (hashes.SHA384, hashes.SHA256),
    "secp521r1": (hashes.SHA512, hashes.SHA256),
}


def verifies(key: PublicKey, signature: bytes, payload: bytes) -> bool:
    """Whether ``signature`` over ``payload`` verifies with ``key``, as cosign signs with each kind."""
    try:
        if isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, payload)
            return True
        if isinstance(key, ec.EllipticCurvePublicKey):
            for algorithm in _EC_HASHES.get(key.curve.name, (hashes.SHA256,)):
                try:
                    key.verify(signature, payload, ec.ECDSA(algorithm()))
                    return True
                except InvalidSignature:
                    continue
            return False
        try:
            key.verify(signature, payload, padding.PKCS1v15(), hashes.SHA256())
            return True
        except InvalidSignature:
            key.verify(
                signature,
                payload,
                padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.AUTO),
                hashes.SHA256(),
            )
            return True
    except InvalidSignature:
        return False


def _decoded_signature(annotations: Mapping[str, str]) -> bytes:
    """The signature annotation, decoded as cosign and containers/image decode it (Go's StdEncoding:
    a value wrapped over lines decodes)."""
    try:
        return go_b64decode(annotations[SIGNATURE_ANNOTATION])
    except KeyError:
        raise PayloadError("the layer carries no signature annotation") from None
    except Base64Error as exc:
        raise PayloadError(f"the signature annotation is {exc}") from None


def simple_signing_evidence(
    keys: Mapping[str, PublicKey], payload: bytes, annotations: Mapping[str, str], digest: str, found_by: str
) -> SignatureEvidence:
    """One tag-scheme signature layer: which key verified it, or why it counts for nothing."""
    try:
        signature = _decoded_signature(annotations)
    except PayloadError as exc:
        return SignatureEvidence(found_by, problem=str(exc))
    signer = next((name for name, key in keys.items() if verifies(key, signature, payload)), None)
    if signer is None:
        if CERTIFICATE_ANNOTATION in annotations:
            return SignatureEvidence(
                found_by, problem=f"{OTHER_KEY}: a keyless signature (a certificate), and no rule names an identity"
            )
        return SignatureEvidence(
            found_by, problem=f"{OTHER_KEY}: none of the configured keys verifies it (or its payload was altered)"
        )
    try:
        check_simple_signing_payload(payload, digest)
    except PayloadError as exc:
        return SignatureEvidence(found_by, key=None, problem=f"{exc} (signed by {signer})")
    return SignatureEvidence(found_by, key=signer)


def trusted_root_file(config: SignaturesConfig, relative_to: Path | None) -> Path:
    """The policy's trusted_root.json or, by default, the Sigstore public-good root sigstore-python ships."""
    if config.trusted_root is not None:
        return relative_to_policy(config.trusted_root, relative_to)
    shipped = resources.files("sigstore") / "_store" / "https%3A%2F%2Ftuf-repo-cdn.sigstore.dev" / "trusted_root.json"
    return Path(str(shipped))


def bundle_verifier(root: Path) -> Verifier:
    """A verifier that needs no network: the trusted root is read from ``root``, never refreshed."""
    try:
        return Verifier(trusted_root=TrustedRoot.from_file(str(root)))
    except OSError as exc:
        raise SigningError(f"cannot read the Sigstore trusted root {root}: {exc.strerror or exc}") from None
    except Exception as exc:  # sigstore raises pydantic, protobuf and its own errors for a bad root
        raise SigningError(f"{root} is not a usable Sigstore trusted root: {exc}") from None


class _AnySigner:
    """sigstore-python's certificate policy hook, accepting any signer: the identity rules are
    judged afterwards, per rule, from the verified certificate (core/signatures.py), so one
    verification per image digest serves every rule."""

    def verify(self, cert: x509.Certificate) -> None:
        return None


_ANY_SIGNER = _AnySigner()


def _issuer(certificate: x509.Certificate) -> str | None:
    extensions = certificate.extensions
    try:
        raw = extensions.get_extension_for_oid(_OIDC_ISSUER_V1).value
        return bytes(raw.value).decode()  # type: ignore[attr-defined]
    except (x509.ExtensionNotFound, UnicodeDecodeError):
        pass
    try:
        der = bytes(extensions.get_extension_for_oid(_OIDC_ISSUER_V2).value.value)  # type: ignore[attr-defined]
    except x509.ExtensionNotFound:
        return None
    # a DER UTF8String (tag 12) of a short or one-byte long length
    if len(der) >= 2 and der[0] == 12:
        start, length = (2, der[1]) if der[1] < 128 else (3, der[2] if der[1] == 0x81 and len(der) > 2 else -1)
        if 0 <= length == len(der) - start:
            return der[start:].decode(errors="replace")
    return None


def _subject(certificate: x509.Certificate) -> str | None:
    try:
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    found = [*names.get_values_for_type(x509.UniformResourceIdentifier), *names.get_values_for_type(x509.RFC822Name)]
    found += [
        n.value.decode(errors="replace")
        for n in names.get_values_for_type(x509.OtherName)
        if n.type_id == _OTHERNAME_SAN
    ]
    return found[0] if found else None


def _bundle_problem(message: str, bundle: Bundle, digest: str) -> str:
    """A sigstore-python failure, named as an operator would look for it, with what the bundle holds."""
    lowered = message.lower()
    if "integrated time only supported" in lowered:
        kind = bundle.log_entry._inner.kind_version
        return f"{TLOG_INVALID}: unsupported log entry type {kind.kind} {kind.version} (sigstore-python: {message})"
    if "digest mismatch" in lowered:
        signed = bundle._inner.message_signature
        found = signed.message_digest if signed is not None else None
        what = f"sha256:{found.digest.hex()}" if found is not None and found.algorithm == HashAlgorithm.SHA2_256 else ""
        return f"{OTHER_DIGEST} (the bundle signs {what or 'other content'}, the image is {digest})"
    if "expired" in lowered or "validity" in lowered or "not valid" in lowered:
        return f"{EXPIRED}, or the signing time is outside its validity: {message}"
    if "inclusion" in lowered or "log entry" in lowered or "checkpoint" in lowered or "tlog" in lowered:
        return f"{TLOG_INVALID}: {message}"
    if "signature is invalid" in lowered:
        return f"{OTHER_KEY}: the certificate's key does not verify it (or what it signs was altered): {message}"
    if "certificate chain" in lowered:
        return f"the certificate is not issued by the trusted root's CA: {message}"
    if "sct" in lowered:
        return f"the certificate's SCT is not signed by the trusted root's CT logs: {message}"
    return f"bundle verification failed: {message}"


# A library's error is kept whole in a denial, up to this many characters (a tenant writes the
# bundle: pydantic names every wrong field, and there can be thousands).
MAX_LIBRARY_ERROR = 1000


def _library_error(exc: BaseException) -> str:
    """``exc``'s whole message on one line (pydantic's span several), bounded."""
    text = " ".join(line.strip() for line in str(exc).splitlines() if line.strip()) or type(exc).__name__
    if len(text) > MAX_LIBRARY_ERROR:
        text = f"{text[:MAX_LIBRARY_ERROR]}... ({len(text) - MAX_LIBRARY_ERROR} more characters)"
    return text


def _sigstore_verifies(verifier: Verifier, bundle: Bundle, digest: str, verification: Callable[[], object]) -> None:
    """Run one sigstore-python verification of ``bundle`` for the image ``digest``; any failure
    becomes a :class:`PayloadError` saying why."""
    try:
        verification()
    except VerificationError as exc:
        problem = _bundle_problem(_library_error(exc), bundle, digest)
        if problem.startswith(EXPIRED):  # judged at a time the entry promises: is the promise sound?
            broken = _broken_promise(verifier, bundle)
            problem = problem if broken is None else f"{TLOG_INVALID}: {broken}"
        raise PayloadError(problem) from None
    except PayloadError:
        raise
    except Exception as exc:  # input sigstore-python chokes on verifies for nobody
        raise PayloadError(f"bundle verification failed: {type(exc).__name__}: {_library_error(exc)}") from None


def _signer(certificate: x509.Certificate) -> tuple[str, str]:
    issuer, subject = _issuer(certificate), _subject(certificate)
    if issuer is None or subject is None:
        raise PayloadError("the signing certificate names no OIDC issuer or subject")
    return issuer, subject


def verify_bundle(verifier: Verifier, document: bytes, digest: str) -> tuple[str, str]:
    """Verify a Sigstore bundle over the image ``digest``, offline; return its signer's (issuer, subject)."""
    issuer, subject, _statement = verify_bundle_statement(verifier, document, digest)
    return issuer, subject


def verify_bundle_statement(verifier: Verifier, document: bytes, digest: str) -> tuple[str, str, bytes | None]:
    """Verify a Sigstore bundle over the image ``digest``, offline: its signer's issuer and subject,
    and the in-toto statement its DSSE envelope carries (None: a message signature).

    A bundle signs the image either as a message signature over the image manifest (whose
    SHA-256 is the digest) or as a DSSE in-toto statement whose subject is the digest (cosign's
    newer bundles). The certificate chain, the transparency log entry (inclusion proof or
    promise, checkpoint) and the signing time are checked against the trusted root by
    sigstore-python; raises :class:`PayloadError` with the reason when anything fails.
    """
    algorithm, _, hexdigits = digest.partition(":")
    if algorithm != "sha256":
        raise PayloadError(f"Sigstore bundles sign SHA-256 digests; the image is {algorithm}")
    try:
        # read as protojson reads it (absent fields are zero: a one-entry log's proof has no
        # logIndex, no hashes), then in the one spelling sigstore-python's models read
        bundle = Bundle.from_json(json.dumps(read_bundle(document)))
    except BundleError as exc:
        raise PayloadError(f"malformed Sigstore bundle: {exc}") from None
    except Exception as exc:  # InvalidBundle and model errors alike: the bundle is unusable
        raise PayloadError(f"malformed Sigstore bundle: {_library_error(exc)}") from None
    statement: list[tuple[str, bytes]] = []  # the DSSE envelope's payload type and payload, once verified

    def verification() -> None:
        if bundle._dsse_envelope is not None:
            statement.append(verifier.verify_dsse(bundle, _ANY_SIGNER))
        else:
            hashed = Hashed(algorithm=HashAlgorithm.SHA2_256, digest=bytes.fromhex(hexdigits))
            verifier.verify_artifact(hashed, bundle, _ANY_SIGNER)

    _sigstore_verifies(verifier, bundle, digest, verification)
    issuer, subject = _signer(bundle.signing_certificate)
    if not statement:
        return issuer, subject, None
    kind, payload = statement[0]
    signed_by = signer_name(None, issuer, subject)
    if kind != IN_TOTO_PAYLOAD:
        raise PayloadError(f"the bundle's envelope holds {kind!r}, not an in-toto statement (signed by {signed_by})")
    try:
        subjects = statement_subjects(payload)
    except ProvenanceError as exc:
        raise PayloadError(f"{exc} (signed by {signed_by})") from None
    if digest.lower() not in subjects:
        raise PayloadError(f"{about_another_image(subjects, digest)} (signed by {signed_by})")
    return issuer, subject, payload


def _broken_promise(verifier: Verifier, bundle: Bundle) -> str | None:
    """Why the log entry's signed entry timestamp does not verify, or None (it does, or there is none).

    sigstore-python judges the certificate at the entry's integrated time before it checks the
    promise that covers that time: an edited time then reads as an expired certificate. When a
    verification fails on the time, the promise is asked first, so a broken promise is named."""
    entry = bundle.log_entry
    if entry._inner.inclusion_promise is None or not entry._inner.integrated_time:
        return None
    try:
        entry._verify_set(verifier._trusted_root.rekor_keyring(KeyringPurpose.VERIFY))
    except VerificationError as exc:
        return f"invalid log entry: {_library_error(exc)}"
    except Exception:  # a root without Rekor keys: the verifier's own words stand
        return None
    return None


# --- keyless signatures in cosign's tag scheme ---------------------------------------------------


class _PromisedLogEntry(TransparencyLogEntry):
    """A Rekor entry known by its inclusion promise (the signed entry timestamp) alone.

    That is all cosign's tag-scheme bundle annotation carries, and what cosign itself checks
    offline; sigstore-python 4 requires every entry to carry an inclusion proof with a
    checkpoint as well. Only that requirement is lifted here: the promise is verified by
    sigstore-python's own code against the trusted root's Rekor keys, and every other step
    (chain, SCT, signing time, signature, the entry naming the signature) stays the Verifier's.
    """

    def _validate(self) -> None:
        if self._inner.inclusion_promise is None or not self._inner.integrated_time:
            raise InvalidBundle("the log entry carries no inclusion promise")

    def _verify(self, keyring: RekorKeyring) -> None:
        self._verify_set(keyring)


class _TagSchemeBundle(Bundle):
    """A v0.1 bundle assembled from a tag-scheme layer: the leaf certificate, one promised entry."""

    def _verify(self) -> None:
        material = self._inner.verification_material
        chain = material.x509_certificate_chain
        if chain is None or len(chain.certificates) != 1 or len(material.tlog_entries) != 1:
            raise InvalidBundle("expected one certificate and one log entry")
        self._signing_certificate = x509.load_der_x509_certificate(chain.certificates[0].raw_bytes)
        self._log_entry = _PromisedLogEntry(material.tlog_entries[0])


def _decoded(text: str, what: str) -> bytes:
    try:
        return go_b64decode(text)
    except Base64Error as exc:
        raise ValueError(f"{what} is {exc}") from None


# cosign's bundle annotation as cosign decodes it (its bundle.RekorBundle, Go's encoding/json:
# keys matched case-insensitively, a repeated key decoded into the first); the signed entry
# timestamp is a go-openapi strfmt.Base64 (StdEncoding), the body an interface{} holding a string.
_REKOR_BUNDLE = gojson.struct(
    "RekorBundle",
    ("SignedEntryTimestamp", gojson.BYTES),
    (
        "Payload",
        gojson.struct(
            "RekorPayload",
            ("body", gojson.ANY),
            ("integratedTime", gojson.INT64),
            ("logIndex", gojson.INT64),
            ("logID", gojson.STRING),
        ),
    ),
)


def _promised_entry(annotation: str) -> LogEntryDocument:
    """cosign's bundle annotation, ``{"SignedEntryTimestamp", "Payload": {body, integratedTime,
    logIndex, logID}}``, as the Sigstore log entry it is (without an inclusion proof)."""
    try:
        document = gojson.decode(gojson.parse(annotation.encode()), _REKOR_BUNDLE)
        timestamp, payload = document["SignedEntryTimestamp"] or b"", document["Payload"]
        body, integrated, index, log_id = (
            payload["body"],
            payload["integratedTime"],
            payload["logIndex"],
            payload["logID"],
        )
        if not isinstance(body, str):
            raise TypeError("Payload.body is not a string")
        if integrated <= 0 or index < 0:
            raise ValueError("integratedTime and logIndex are positive integers")
        canonical = _decoded(body, "Payload.body")  # cosign: base64.StdEncoding.DecodeString
        if not re.fullmatch(r"(?:[0-9a-fA-F]{2})+", log_id):
            raise ValueError(f"logID {log_id[:80]!r} is not hex")
        entry = json.loads(canonical)
        kind = KindVersion(kind=str(entry["kind"]), version=str(entry["apiVersion"]))
        return LogEntryDocument.model_construct(  # built from validated parts: no inclusion proof to validate
            log_index=index,
            log_id=LogId(key_id=base64.b64encode(bytes.fromhex(log_id))),
            kind_version=kind,
            integrated_time=integrated,
            inclusion_promise=InclusionPromise(signed_entry_timestamp=base64.b64encode(timestamp)),
            inclusion_proof=None,
            canonicalized_body=canonical,
        )
    except (ValueError, KeyError, TypeError, RecursionError) as exc:  # GoJsonError is a ValueError
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise PayloadError(f"{TLOG_INVALID}: the {BUNDLE_ANNOTATION} annotation is not cosign's: {reason}") from None


def tag_scheme_bundle(annotations: Mapping[str, str]) -> Bundle:
    """The Sigstore bundle (v0.1, a message signature) a keyless tag-scheme layer amounts to.

    The certificate comes from its annotation; cosign's chain annotation is not read: the CA
    certificates a leaf chains to are the trusted root's alone, as for any bundle.
    """
    signature = _decoded_signature(annotations)
    try:
        certificate = x509.load_pem_x509_certificate(annotations[CERTIFICATE_ANNOTATION].encode())
    except (KeyError, ValueError):
        raise PayloadError(f"the {CERTIFICATE_ANNOTATION} annotation is not a PEM certificate") from None
    logged = annotations.get(BUNDLE_ANNOTATION)
    if logged is None:
        raise PayloadError(f"{TLOG_MISSING}: the signature carries no {BUNDLE_ANNOTATION} annotation")
    entry = _promised_entry(logged)
    der = certificate.public_bytes(serialization.Encoding.DER)
    try:
        document = BundleDocument(
            media_type=BUNDLE_V01,
            verification_material=VerificationMaterial(
                x509_certificate_chain=X509CertificateChain(
                    certificates=[X509Certificate(raw_bytes=base64.b64encode(der))]
                ),
                tlog_entries=[entry],
            ),
            message_signature=MessageSignature(signature=base64.b64encode(signature)),
        )
        return _TagSchemeBundle(document)
    except InvalidBundle as exc:
        raise PayloadError(f"{TLOG_INVALID}: {exc}") from None
    except ValueError as exc:  # pydantic's errors for parts of the wrong shape
        raise PayloadError(f"{TLOG_INVALID}: {str(exc).splitlines()[0]}") from None


def verify_keyless_signature(
    verifier: Verifier, payload: bytes, annotations: Mapping[str, str], digest: str
) -> tuple[str, str]:
    """Verify a keyless signature of cosign's tag scheme over ``payload``, offline; return its
    signer's (issuer, subject).

    The layer's annotations are assembled into a Sigstore bundle (:func:`tag_scheme_bundle`)
    that sigstore-python's Verifier checks as it checks any: the certificate chains to the
    trusted root's CA at the log's integrated time and carries a valid SCT; the inclusion
    promise is signed by the trusted root's Rekor key; the integrated time is within the
    certificate's validity; the certificate's key signs the payload; the log entry names that
    signature and payload. Then the payload must name ``digest``. Raises :class:`PayloadError`.
    """
    bundle = tag_scheme_bundle(annotations)

    _sigstore_verifies(verifier, bundle, digest, lambda: verifier.verify_artifact(payload, bundle, _ANY_SIGNER))
    check_simple_signing_payload(payload, digest)
    return _signer(bundle.signing_certificate)


def keyless_signing_evidence(
    verifier: Verifier, payload: bytes, annotations: Mapping[str, str], digest: str, found_by: str
) -> SignatureEvidence:
    """One keyless tag-scheme signature layer: its verified signer, or why it counts for nothing."""
    return _keyless_evidence(lambda: verify_keyless_signature(verifier, payload, annotations, digest), found_by)


def tag_scheme_evidence(
    keys: Mapping[str, PublicKey],
    verifier: Verifier | None,
    payload: bytes,
    annotations: Mapping[str, str],
    digest: str,
    found_by: str,
) -> SignatureEvidence:
    """One simple-signing layer of the tag scheme: keyless when it carries a certificate and a rule
    names an identity, else by a key. A certificate that does not verify keyless leaves the layer
    to the keys: ``cosign sign --key --certificate`` attaches a key's own certificate."""
    if verifier is None or CERTIFICATE_ANNOTATION not in annotations:
        return simple_signing_evidence(keys, payload, annotations, digest, found_by)
    keyless = keyless_signing_evidence(verifier, payload, annotations, digest, found_by)
    if keyless.problem is None or not keys:
        return keyless
    by_key = simple_signing_evidence(keys, payload, annotations, digest, found_by)
    return by_key if by_key.key is not None else keyless


def _keyless_evidence(verification: Callable[[], tuple[str, str]], found_by: str) -> SignatureEvidence:
    try:
        issuer, subject = verification()
    except PayloadError as exc:
        return SignatureEvidence(found_by, problem=str(exc))
    return SignatureEvidence(found_by, issuer=issuer, subject=subject)


# --- the admission's part: evidence per image digest, cached ---------------------------------


@dataclass
class _Trust:
    """What one ``signatures`` section trusts, loaded: its keys, and a verifier for bundles."""

    keys: dict[str, PublicKey]
    verifier: Verifier | None  # None: no rule names an identity
    error: str | None = None  # why the section cannot be used (its trusted root cannot be read)
    generation: int = 0  # distinguishes the evidence cached under different trust
    key_errors: dict[str, str] = field(default_factory=dict)  # keys that cannot be used, and why

    def unusable(self, rule: SignatureRule) -> str | None:
        """Why ``rule`` cannot be judged with this trust (fail closed), or None."""
        if self.error is not None:
            return self.error
        return next((self.key_errors[key] for key in rule.keys if key in self.key_errors), None)


class SignatureChecker:
    """Signature evidence per image digest: fetched once (single flight), verified, remembered.

    A digest never changes, so a verified signature is remembered long (``cache_size``
    digests, LRU); "no signature" and failures briefly (``negative_ttl``), since a signature
    is often pushed a moment after its image.
    """

    evidence_kind = "signature-evidence"  # its single-flight key: a subclass gathers other evidence

    def __init__(self, relative_to: Path | None = None, *, cache_size: int = 4096, negative_ttl: float = 30) -> None:
        self.relative_to = relative_to
        self._trust: dict[SignaturesConfig, _Trust] = {}
        self._last: tuple[SignaturesConfig, _Trust] | None = None  # the policy in force: no hashing per image
        self._generation = 0
        self._verified: LRUCache[tuple[Any, ...], tuple[SignatureEvidence, ...]] = LRUCache(cache_size)
        self._unverified: TTLCache[tuple[Any, ...], tuple[SignatureEvidence, ...]] = TTLCache(cache_size, negative_ttl)
        self.verifications = 0  # signatures verified cryptographically (tests, bench)

    def trust(self, config: SignaturesConfig) -> _Trust:
        """The keys and trusted root of ``config``, read once per policy (a reload reads them again)."""
        if self._last is not None and self._last[0] is config:
            return self._last[1]
        known = self._trust.get(config)
        if known is None:
            self._generation += 1
            try:
                keys, key_errors = load_keys(config, self.relative_to)
                for name, error in key_errors.items():
                    log.error("signature key unusable", key=name, error=error)
                verifier = bundle_verifier(trusted_root_file(config, self.relative_to)) if config.keyless else None
                known = _Trust(keys, verifier, generation=self._generation, key_errors=key_errors)
            except SigningError as exc:
                log.error("signature configuration unusable", error=str(exc))
                known = _Trust({}, None, str(exc), self._generation)
            if len(self._trust) >= 8:
                self._trust.clear()  # policies come and go on reload: keep only the recent ones
            self._trust[config] = known
        self._last = (config, known)
        return known

    def known(self, config: SignaturesConfig, ref: Reference, digest: str) -> tuple[SignatureEvidence, ...] | None:
        """The evidence remembered for ``digest`` under ``config``, or None: not (or no longer) known,
        or a configuration that cannot be used (:meth:`evidence` says why)."""
        trust = self.trust(config)
        if trust.error is not None:
            return None
        key = (ref.repository, digest, trust.generation)
        found = self._verified.get(key)
        return found if found is not None else self._unverified.get(key)

    def known_verdicts(
        self, config: SignaturesConfig, ref: Reference, digest: str, grant_rule: str | None = None
    ) -> tuple[SignatureVerdict, ...] | None:
        """The verdicts of the rules ``ref`` needs (``config.rules_for``) from the evidence remembered
        for ``digest`` (:meth:`known`), or None: not known, or a rule that cannot be judged (the
        caller says why)."""
        rules = config.rules_for(ref, grant_rule)
        trust = self.trust(config)
        if any(trust.unusable(rule) is not None for rule in rules):
            return None
        evidence = self.known(config, ref, digest)
        return None if evidence is None else judge_image(rules, digest, evidence)

    async def evidence(
        self, client: RegistryClient, config: SignaturesConfig, ref: Reference, digest: str
    ) -> tuple[SignatureEvidence, ...]:
        """Every signature attached to ``digest``, verified against ``config``'s keys and trusted root."""
        trust = self.trust(config)
        if trust.error is not None:
            raise SigningError(trust.error)
        known = self.known(config, ref, digest)
        if known is not None:
            return known
        key = (ref.repository, digest, trust.generation)

        async def gather() -> tuple[SignatureEvidence, ...]:
            found = await self._gather(client, trust, ref, digest)
            remember = self._verified if any(e.problem is None for e in found) else self._unverified
            remember[key] = found
            return found

        return await client.shared((self.evidence_kind, *key), gather)

    async def _gather(
        self, client: RegistryClient, trust: _Trust, ref: Reference, digest: str
    ) -> tuple[SignatureEvidence, ...]:
        kinds = {COSIGN_SIGNATURE_ARTIFACT, *(BUNDLE_TYPES if trust.verifier is not None else ())}

        async def verified(artifacts: tuple[Attached, ...]) -> tuple[SignatureEvidence, ...]:
            return await self._verify(client, trust, ref, digest, artifacts)

        return await _in_both_layouts(client, ref, digest, "sig", kinds, verified)

    async def _verify(
        self, client: RegistryClient, trust: _Trust, ref: Reference, digest: str, artifacts: Sequence[Attached]
    ) -> tuple[SignatureEvidence, ...]:
        """The evidence of each signature layer of ``artifacts``, in order."""
        layers: list[tuple[Descriptor, str, int]] = []  # (layer, where found, size limit)
        for artifact in artifacts:
            for layer in artifact.manifest.layers[:MAX_LAYERS]:
                where = f"{artifact.found_by}, layer {layer.digest[7:19]}"
                if layer.media_type == SIMPLE_SIGNING:
                    layers.append((layer, where, MAX_PAYLOAD_BYTES))
                elif trust.verifier is not None and (
                    layer.media_type in BUNDLE_TYPES or artifact.artifact_type in BUNDLE_TYPES
                ):
                    layers.append((layer, where, MAX_BUNDLE_BYTES))
        found: list[SignatureEvidence] = []
        for start in range(0, len(layers), _READS_AT_ONCE):  # a chunk of layers read at a time (a MiB each at most)
            chunk = layers[start : start + _READS_AT_ONCE]
            documents = await _all([layer_bytes(client, ref, layer, limit) for layer, _, limit in chunk])
            for (layer, where, _), document in zip(chunk, documents, strict=True):
                self.verifications += 1
                if layer.media_type == SIMPLE_SIGNING:
                    evidence = functools.partial(
                        tag_scheme_evidence, trust.keys, trust.verifier, document, layer.annotations, digest, where
                    )
                    # a certificate chain and log entry to verify: CPU work, off the event loop
                    keyless = trust.verifier is not None and CERTIFICATE_ANNOTATION in layer.annotations
                    found.append(await asyncio.to_thread(evidence) if keyless else evidence())
                elif trust.verifier is not None:
                    found.append(await asyncio.to_thread(_bundle_evidence, trust.verifier, document, digest, where))
        return tuple(found)


def _bundle_evidence(verifier: Verifier, document: bytes, digest: str, where: str) -> SignatureEvidence:
    return _keyless_evidence(lambda: verify_bundle(verifier, document, digest), where)


def judge_image(
    rules: Sequence[SignatureRule], digest: str, evidence: Sequence[SignatureEvidence]
) -> tuple[SignatureVerdict, ...]:
    return tuple(judge(rule, digest, evidence) for rule in rules)
