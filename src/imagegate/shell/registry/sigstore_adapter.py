"""The sigstore adapter: every use of sigstore-python's private parts, and what its verifications' answers mean.

sigstore-python verifies Sigstore bundles offline against a trusted root (the checker, in
``signing.py``, makes its ``Verifier`` with the public API); what it lacks is bridged here,
through its private API (pinned in pyproject.toml, held by
tests/test_keyless_signing.py and tests/test_sigstore_conformance.py): cosign's keyless
tag-scheme signature assembled into a v0.1 bundle whose log entry has only an inclusion
promise (:func:`tag_scheme_bundle`), a broken promise named before an "expired certificate"
(:func:`_broken_promise`), the shipped public-good trusted root (:func:`trusted_root_file`),
and its failures translated into the reasons a denial gives (:func:`_bundle_problem`).
The signer's OIDC issuer and subject are read from the verified certificate.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Mapping
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sigstore._internal.trust import KeyringPurpose
from sigstore.errors import VerificationError
from sigstore.hashes import Hashed
from sigstore.models import Bundle, InvalidBundle, TransparencyLogEntry
from sigstore.verify import Verifier
from sigstore_models.bundle.v1 import Bundle as BundleDocument
from sigstore_models.bundle.v1 import VerificationMaterial
from sigstore_models.common.v1 import HashAlgorithm, LogId, MessageSignature, X509Certificate, X509CertificateChain
from sigstore_models.rekor.v1 import InclusionPromise, KindVersion
from sigstore_models.rekor.v1 import TransparencyLogEntry as LogEntryDocument

from imagegate.core import gojson
from imagegate.core.gobase64 import Base64Error, go_b64decode
from imagegate.core.protojson import BundleError, read_bundle
from imagegate.core.provenance import ProvenanceError, about_another_image, statement_subjects
from imagegate.core.signatures import (
    EXPIRED,
    OTHER_DIGEST,
    OTHER_KEY,
    TLOG_INVALID,
    TLOG_MISSING,
    PayloadError,
    SignaturesConfig,
    check_simple_signing_payload,
    signer_name,
)
from imagegate.shell.policy_files import relative_to_policy
from imagegate.shell.registry.artifacts import (
    BUNDLE_ANNOTATION,
    BUNDLE_V01,
    CERTIFICATE_ANNOTATION,
    IN_TOTO_PAYLOAD,
    decoded_signature,
)

if TYPE_CHECKING:
    from sigstore._internal.trust import RekorKeyring

__all__ = [
    "MAX_LIBRARY_ERROR",
    "tag_scheme_bundle",
    "trusted_root_file",
    "verify_bundle",
    "verify_bundle_statement",
    "verify_keyless_signature",
]

_OIDC_ISSUER_V1 = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.1")
_OIDC_ISSUER_V2 = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.8")
_OTHERNAME_SAN = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.7")


def trusted_root_file(config: SignaturesConfig, relative_to: Path | None) -> Path:
    """The policy's trusted_root.json or, by default, the Sigstore public-good root sigstore-python ships."""
    if config.trusted_root is not None:
        return relative_to_policy(config.trusted_root, relative_to)
    shipped = resources.files("sigstore") / "_store" / "https%3A%2F%2Ftuf-repo-cdn.sigstore.dev" / "trusted_root.json"
    return Path(str(shipped))


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
    signature = decoded_signature(annotations)
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
