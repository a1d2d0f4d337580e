"""Attestations attached to images in a registry: fetching them, verifying them, reading their provenance.

Where they are found (:func:`imagegate.shell.registry.artifacts.attached`, the registry client's auth,
limits and single flight):

* cosign's tag scheme, ``sha256-<hex>.att``: a manifest whose layers are DSSE envelopes
  (``application/vnd.dsse.envelope.v1+json``), the predicate type in each layer's
  ``predicateType`` annotation;
* the OCI 1.1 referrers API or its fallback tag: artifacts of that media type (the same
  envelopes), and Sigstore bundles carrying a DSSE envelope (verified offline with
  sigstore-python, as signature bundles are: :func:`~imagegate.shell.registry.sigstore_adapter.verify_bundle_statement`).

A key-signed envelope's signature covers the DSSE pre-authentication encoding of payload type
and payload (:func:`imagegate.core.provenance.pae`), so a payload cut from one envelope and a
signature from another do not verify; keys are verified with ``cryptography`` by
:func:`~imagegate.shell.registry.signing.verifies`, the one verification of the signatures too. Only a
verified statement is read (:func:`~imagegate.core.provenance.parse_statement`); the rules are
judged by :func:`imagegate.core.attestations.judge_attestation`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from sigstore.verify import Verifier

from imagegate.core.attestations import AttestationRule, judge_attestation
from imagegate.core.provenance import (
    DSSE_INTOTO,
    PROVENANCE_TYPES,
    ProvenanceError,
    pae,
    parse_envelope,
    parse_statement,
)
from imagegate.core.records import SignatureVerdict
from imagegate.core.reference import Reference
from imagegate.core.signatures import OTHER_KEY, PayloadError, SignatureEvidence, signer_name
from imagegate.shell.registry.artifacts import (
    BUNDLE_TYPES,
    CERTIFICATE_ANNOTATION,
    MAX_BUNDLE_BYTES,
    MAX_LAYERS,
    attached,
    layer_bytes,
)
from imagegate.shell.registry.signing import PublicKey, SignatureChecker, _Trust, verifies
from imagegate.shell.registry.sigstore_adapter import verify_bundle_statement

if TYPE_CHECKING:
    from imagegate.shell.registry.client import RegistryClient

__all__ = [
    "DSSE_ENVELOPE",
    "AttestationChecker",
    "bundle_evidence",
    "envelope_evidence",
    "judge_image",
    "statement_evidence",
]

DSSE_ENVELOPE = "application/vnd.dsse.envelope.v1+json"
PREDICATE_ANNOTATION = "predicateType"  # cosign's, on each layer of a .att manifest


def statement_evidence(
    payload_type: str,
    payload: bytes,
    digest: str,
    where: str,
    *,
    key: str | None = None,
    identity: tuple[str, str] | None = None,
) -> SignatureEvidence:
    """A verified statement, signed by ``key`` or the keyless ``identity`` (issuer, subject): its provenance,
    or why it proves nothing about the image ``digest``."""
    issuer, subject = identity if identity is not None else (None, None)
    signer = signer_name(key, issuer, subject)
    if payload_type != DSSE_INTOTO:
        return SignatureEvidence(where, problem=f"payload type {payload_type!r} is not in-toto (signed by {signer})")
    try:
        provenance = parse_statement(payload, digest)
    except ProvenanceError as exc:
        return SignatureEvidence(where, problem=f"{exc} (signed by {signer})")
    return SignatureEvidence(where, key=key, issuer=issuer, subject=subject, provenance=provenance)


def envelope_evidence(
    keys: Mapping[str, PublicKey], body: bytes, digest: str, where: str, annotations: Mapping[str, str]
) -> list[SignatureEvidence]:
    """A key-signed DSSE envelope: one evidence per configured key that signed it, or why none counts."""
    try:
        envelope = parse_envelope(body)
    except ProvenanceError as exc:
        return [SignatureEvidence(where, problem=str(exc))]
    message = pae(envelope.payload_type, envelope.payload)
    signers = [
        name
        for name, key in keys.items()
        if any(verifies(key, signature, message) for _keyid, signature in envelope.signatures)
    ]
    if not signers:
        if CERTIFICATE_ANNOTATION in annotations and not keys:
            problem = "a keyless attestation in the tag scheme (imagegate verifies keyless Sigstore bundles)"
        else:
            problem = f"{OTHER_KEY}: none of the configured keys verifies it (or its payload was altered)"
        return [SignatureEvidence(where, problem=problem)]
    return [statement_evidence(envelope.payload_type, envelope.payload, digest, where, key=name) for name in signers]


def bundle_evidence(verifier: Verifier, document: bytes, digest: str, where: str) -> SignatureEvidence | None:
    """A Sigstore bundle, verified offline: its statement's evidence; None for a message signature (no statement)."""
    try:
        issuer, subject, statement = verify_bundle_statement(verifier, document, digest)
    except PayloadError as exc:
        return SignatureEvidence(where, problem=str(exc))
    if statement is None:
        return None  # a signature of the image, not an attestation: the signatures rules' business
    return statement_evidence(DSSE_INTOTO, statement, digest, where, identity=(issuer, subject))


class AttestationChecker(SignatureChecker):
    """Attestation evidence per image digest: fetched once (single flight), verified, read, remembered.

    The signature checker's trust (keys and trusted root per policy) and cache (by digest), over
    the ``.att`` tag and the DSSE and bundle referrers.
    """

    evidence_kind = "attestation-evidence"

    async def _gather(
        self, client: RegistryClient, trust: _Trust, ref: Reference, digest: str
    ) -> tuple[SignatureEvidence, ...]:
        kinds = {DSSE_ENVELOPE, *(BUNDLE_TYPES if trust.verifier is not None else ())}
        artifacts = await attached(client, ref, digest, tag_suffix="att", artifact_types=kinds)
        found: list[SignatureEvidence] = []
        for artifact in artifacts:
            for layer in artifact.manifest.layers[:MAX_LAYERS]:
                where = f"{artifact.found_by}, layer {layer.digest[7:19]}"
                if layer.media_type == DSSE_ENVELOPE:
                    predicate = layer.annotations.get(PREDICATE_ANNOTATION)
                    if predicate is not None and predicate not in PROVENANCE_TYPES:
                        continue  # an SBOM, a scan: another kind of attestation, not provenance
                    body = await layer_bytes(client, ref, layer, MAX_BUNDLE_BYTES)
                    self.verifications += 1
                    found.extend(envelope_evidence(trust.keys, body, digest, where, layer.annotations))
                elif trust.verifier is not None and (
                    layer.media_type in BUNDLE_TYPES or artifact.artifact_type in BUNDLE_TYPES
                ):
                    document = await layer_bytes(client, ref, layer, MAX_BUNDLE_BYTES)
                    self.verifications += 1
                    item = await asyncio.to_thread(bundle_evidence, trust.verifier, document, digest, where)
                    if item is not None:
                        found.append(item)
        return tuple(found)


def judge_image(
    rules: Sequence[AttestationRule], digest: str, evidence: Sequence[SignatureEvidence]
) -> tuple[SignatureVerdict, ...]:
    return tuple(judge_attestation(rule, digest, evidence) for rule in rules)
