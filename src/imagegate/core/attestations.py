"""Attestation rules and their judgement: pure, no crypto, no I/O.

An ``attestations`` rule is a signatures rule (images, keys, identities, count, mode, onError:
:class:`~imagegate.core.signatures.SignatureRule`, judged by the same
:func:`~imagegate.core.signatures.judge`) over signed in-toto statements, plus what their SLSA
provenance must say (:class:`~imagegate.core.provenance.ProvenanceRule`: builder ids, build
types, source forges). The shell (:mod:`imagegate.shell.registry.attestations`) verifies each
attestation attached to the image digest and reads its statement; what it learns is one
:class:`~imagegate.core.signatures.SignatureEvidence` per signer, carrying the provenance.
Here: an attestation by one of the rule's signers whose provenance fails the rule counts for
nothing, and the denial says what it says instead (built by another builder, from a source on
no allowed forge, ...).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from imagegate.core.provenance import PROVENANCE_TYPES, ProvenanceRule, check_provenance
from imagegate.core.records import Mode, SignatureVerdict
from imagegate.core.reference import Reference
from imagegate.core.signatures import (
    SignatureEvidence,
    SignatureRule,
    SignaturesConfig,
    found_signer,
    judge,
    signer_of,
)

__all__ = ["PROVENANCE_TYPES", "AttestationRule", "AttestationsConfig", "judge_attestation"]


@dataclass(frozen=True, slots=True)
class AttestationRule:
    """Images matching ``signers.images`` need ``signers.count`` attestations by its signers
    whose provenance satisfies ``provenance``."""

    signers: SignatureRule  # name ("attestations.rules[0]"), images, keys, identities, count, mode, onError
    provenance: ProvenanceRule

    @property
    def name(self) -> str:
        return self.signers.name

    @property
    def mode(self) -> Mode:
        return self.signers.mode


@dataclass(frozen=True, slots=True)
class AttestationsConfig:
    rules: tuple[AttestationRule, ...] = ()
    # the rules' signer parts, with the trusted root and every key once: what the shell loads and verifies with
    signers: SignaturesConfig = field(default_factory=SignaturesConfig)

    def rules_for(self, ref: Reference) -> tuple[AttestationRule, ...]:
        return tuple(rule for rule in self.rules if rule.signers.images.first_match(ref) is not None)


def judge_attestation(rule: AttestationRule, digest: str, evidence: Sequence[SignatureEvidence]) -> SignatureVerdict:
    """Whether the verified attestations satisfy ``rule`` for the image ``digest``, and why (not)."""
    judged = [_as_judged(rule, item) for item in evidence]
    return judge(rule.signers, digest, judged, noun="attestation")


def _as_judged(rule: AttestationRule, item: SignatureEvidence) -> SignatureEvidence:
    """``item`` as the rule sees it: an attestation by one of its signers whose provenance fails it counts for nothing."""
    signer = signer_of(rule.signers, item)
    if signer is None:
        return item  # another signer's, or no one's: judge() says so
    if item.provenance is None:  # the shell always reads the statement it verified: a bug, never an allow
        return replace(item, key=None, issuer=None, subject=None, problem="the attestation's statement was not read")
    failed = check_provenance(item.provenance, rule.provenance)
    if not failed:
        return item
    return replace(
        item, key=None, issuer=None, subject=None, problem=f"{'; '.join(failed)} (attested by {found_signer(item)})"
    )
