"""DSSE envelope verification with ``cryptography``: which of the trusted keys signed an attestation.

The signature covers the DSSE pre-authentication encoding of payload type and payload
(:func:`imagegate.core.provenance.pae`), so a payload cut from one envelope and a signature from
another do not verify. Keys are PEM public keys: ECDSA P-256 (SHA-256) and P-384 (SHA-384),
RSA (PKCS#1 v1.5 or PSS, SHA-256) and Ed25519, as cosign makes them. No crypto is written here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from imagegate.core.provenance import (
    DSSE_INTOTO,
    Provenance,
    ProvenanceError,
    ProvenanceRule,
    check_provenance,
    pae,
    parse_envelope,
    parse_statement,
)

__all__ = ["AttestationResult", "PublicKey", "load_public_key", "verify_attestation", "verify_envelope"]

PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey


def load_public_key(pem: bytes, source: str) -> PublicKey:
    """A PEM public key a policy names; a clear error for anything else."""
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise ProvenanceError(f"{source}: not a PEM public key ({exc})") from None
    if isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, ec.SECP256R1 | ec.SECP384R1):
            raise ProvenanceError(f"{source}: ECDSA curve {key.curve.name} is not supported (P-256 or P-384)")
        return key
    if isinstance(key, rsa.RSAPublicKey | ed25519.Ed25519PublicKey):
        return key
    raise ProvenanceError(f"{source}: {type(key).__name__} keys are not supported (ECDSA, RSA or Ed25519)")


def _verifies(key: PublicKey, signature: bytes, message: bytes) -> bool:
    try:
        if isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, message)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            digest: hashes.HashAlgorithm = hashes.SHA384() if isinstance(key.curve, ec.SECP384R1) else hashes.SHA256()
            key.verify(signature, message, ec.ECDSA(digest))
        else:
            try:
                key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
            except InvalidSignature:
                pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.AUTO)
                key.verify(signature, message, pss, hashes.SHA256())
    except InvalidSignature:
        return False
    return True


def verify_envelope(body: bytes, keys: Mapping[str, PublicKey]) -> tuple[bytes, list[str]]:
    """The payload of a DSSE envelope and the names of the ``keys`` that signed it (PAE).

    Raises :class:`ProvenanceError` when it is malformed or no key signed it.
    """
    envelope = parse_envelope(body)
    message = pae(envelope.payload_type, envelope.payload)
    signed_by = [
        name
        for name, key in keys.items()
        if any(_verifies(key, signature, message) for _keyid, signature in envelope.signatures)
    ]
    if not signed_by:
        raise ProvenanceError(f"the attestation is signed by another key (none of {', '.join(keys) or 'no keys'})")
    return envelope.payload, signed_by


@dataclass(frozen=True, slots=True)
class AttestationResult:
    allowed: bool
    reasons: tuple[str, ...]
    provenance: Provenance | None
    signed_by: tuple[str, ...]


def verify_attestation(
    envelopes: Sequence[bytes],
    image_digest: str,
    keys: Mapping[str, PublicKey],
    rule: ProvenanceRule,
    *,
    threshold: int = 1,
) -> AttestationResult:
    """Does some attestation signed by at least ``threshold`` of ``keys`` prove ``rule`` for the image?

    Each envelope is tried; the reasons of the ones that fail are the denial's.
    """
    if not envelopes:
        return AttestationResult(False, ("no attestation found for the image",), None, ())
    reasons: list[str] = []
    for index, body in enumerate(envelopes):
        where = f"attestation {index + 1}" if len(envelopes) > 1 else "attestation"
        try:
            payload, signed_by = verify_envelope(body, keys)
            if len(signed_by) < threshold:
                reasons.append(f"{where}: signed by {len(signed_by)} of the keys, {threshold} required")
                continue
            envelope_type = parse_envelope(body).payload_type
            if envelope_type != DSSE_INTOTO:
                reasons.append(f"{where}: payload type {envelope_type!r} is not in-toto")
                continue
            provenance = parse_statement(payload, image_digest)
        except ProvenanceError as exc:
            reasons.append(f"{where}: {exc}")
            continue
        failed = check_provenance(provenance, rule)
        if not failed:
            return AttestationResult(True, (), provenance, tuple(signed_by))
        reasons.extend(f"{where}: {reason}" for reason in failed)
    return AttestationResult(False, tuple(reasons), None, ())
