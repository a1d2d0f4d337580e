"""Signature rules and their judgement: pure, no crypto, no I/O.

The shell (:mod:`imagegate.shell.registry.signing`) finds the signatures attached to an image digest and
verifies each cryptographically; what it learns is a list of :class:`SignatureEvidence`: for
each signature, which configured key verified it or which keyless identity (certificate issuer
and subject, from a verified Sigstore bundle) made it, or why it does not count. Here:

* :func:`check_simple_signing_payload`: what a cosign simple-signing payload must say (the
  image digest it signs, the signature type);
* :func:`judge`: whether the evidence satisfies a rule (``count`` of its keys and identities),
  and the reason when it does not: no signature found, signed by another key, a payload for
  another digest, a certificate identity mismatch, ...
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from imagegate.core import gojson
from imagegate.core.patterns import PatternSet
from imagegate.core.provenance import Provenance
from imagegate.core.records import DenyOrAllow, Mode, SignatureVerdict
from imagegate.core.reference import Reference

__all__ = [
    "COSIGN_SIGNATURE_TYPE",
    "SIMPLE_SIGNING",
    "KeylessIdentity",
    "PayloadError",
    "SignatureEvidence",
    "SignatureRule",
    "SignaturesConfig",
    "check_simple_signing_payload",
    "found_signer",
    "judge",
    "signer_name",
    "signer_of",
]

COSIGN_SIGNATURE_TYPE = "cosign container image signature"

# Why a signature does not count (stable words: tests and operators read them).
OTHER_KEY = "signed by another key"
OTHER_DIGEST = "payload for another digest"
IDENTITY_MISMATCH = "certificate identity mismatch"
EXPIRED = "certificate expired at signing time"
TLOG_MISSING = "tlog entry missing"
TLOG_INVALID = "tlog entry missing or invalid"


class PayloadError(ValueError):
    """A simple-signing payload that does not sign this image as cosign does."""


@dataclass(frozen=True, slots=True)
class KeylessIdentity:
    """A Fulcio certificate's signer: its OIDC issuer and subject (exact, or a regular expression)."""

    issuer: str
    subject: str = ""
    subject_regexp: str = ""  # matched in full (Python re), as policy-controller's subjectRegExp

    def matches(self, issuer: str, subject: str) -> bool:
        if issuer != self.issuer:
            return False
        if self.subject_regexp:
            return re.fullmatch(self.subject_regexp, subject) is not None
        return subject == self.subject

    def __str__(self) -> str:
        subject = f"/{self.subject_regexp}/" if self.subject_regexp else self.subject
        return f"{subject} (issuer {self.issuer})"


@dataclass(frozen=True, slots=True)
class SignatureRule:
    """Images matching ``images`` need signatures by ``count`` of ``keys`` and ``identities``."""

    name: str  # "signatures.rules[0]": for messages
    images: PatternSet
    keys: tuple[str, ...] = ()  # PEM public key files, as written (the shell resolves and reads them)
    identities: tuple[KeylessIdentity, ...] = ()
    count: int = 1
    mode: Mode = Mode.ENFORCE
    on_error: DenyOrAllow = DenyOrAllow.DENY


@dataclass(frozen=True, slots=True)
class SignaturesConfig:
    rules: tuple[SignatureRule, ...] = ()
    trusted_root: str | None = None  # a Sigstore trusted_root.json; None: the public-good instance's
    keys: tuple[str, ...] = field(default=())  # every key any rule (grants' included) names, once
    on_error: DenyOrAllow = DenyOrAllow.DENY  # the section's: what a grant's signedBy rule does
    # The grants' ``signedBy`` rules: each applies only to the images its grant admits, so a
    # decision asks for the one of the grant that admitted an image, by the grant's namespace
    # (one grant per namespace), never by image pattern.
    grant_rules: tuple[SignatureRule, ...] = ()
    by_grant: Mapping[str, SignatureRule] = field(default_factory=dict, compare=False, repr=False)

    def rules_for(self, ref: Reference) -> tuple[SignatureRule, ...]:
        """The rules whose images match ``ref``."""
        return tuple(rule for rule in self.rules if rule.images.first_match(ref) is not None)

    def with_grant_rules(self, grant_rules: Mapping[str, SignatureRule]) -> SignaturesConfig:
        """The same section with the grants' ``signedBy`` rules, by the grant's namespace."""
        rules = tuple(grant_rules.values())
        keys = tuple(
            dict.fromkeys((*(key for rule in self.rules for key in rule.keys), *(k for r in rules for k in r.keys)))
        )
        return replace(self, grant_rules=rules, by_grant=dict(grant_rules), keys=keys)

    @property
    def keyless(self) -> bool:
        return any(rule.identities for rule in self.rules)


@dataclass(frozen=True, slots=True)
class SignatureEvidence:
    """One signature attached to the image, as the shell found and verified it.

    ``key``: the configured key (path as written) that verified it; ``issuer``/``subject``: the
    keyless signer of a verified bundle; ``problem``: why it verified for nobody. For an
    attestation, ``provenance`` is what its verified in-toto statement says (core/attestations.py).
    """

    found_by: str
    key: str | None = None
    issuer: str | None = None
    subject: str | None = None
    problem: str | None = None
    provenance: Provenance | None = None


# cosign's simple signing payload (sigstore's payload.SimpleContainerImage), decoded as cosign
# decodes it: Go's encoding/json, so a repeated or case-folded key means what it means to cosign.
SIMPLE_SIGNING = gojson.struct(
    "SimpleContainerImage",
    (
        "critical",
        gojson.struct(
            "Critical",
            ("identity", gojson.struct("Identity", ("docker-reference", gojson.STRING))),
            ("image", gojson.struct("Image", ("docker-manifest-digest", gojson.STRING))),
            ("type", gojson.STRING),
        ),
    ),
)


def check_simple_signing_payload(payload: bytes, digest: str) -> None:
    """Raise :class:`PayloadError` unless ``payload`` is cosign's signature of exactly ``digest``."""
    try:
        document = gojson.decode(gojson.parse(payload), SIMPLE_SIGNING)
    except gojson.TooDeepError:
        raise PayloadError("the payload is nested deeper than imagegate reads") from None
    except gojson.GoJsonError as exc:
        raise PayloadError(f"the payload is not JSON cosign reads ({exc})") from None
    critical = document["critical"]
    kind = critical["type"]
    if kind != COSIGN_SIGNATURE_TYPE:
        raise PayloadError(f"the payload's critical.type is {kind!r}, not {COSIGN_SIGNATURE_TYPE!r}")
    signed = critical["image"]["docker-manifest-digest"]
    if not signed:
        raise PayloadError("the payload names no critical.image.docker-manifest-digest")
    if signed != digest:
        raise PayloadError(f"{OTHER_DIGEST} ({signed[:19]}, the image is {digest[:19]})")


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def signer_name(key: str | None, issuer: str | None, subject: str | None) -> str:
    """Who signed, as found: the key (its path as written), or the certificate's subject and issuer."""
    return key if key is not None else f"{subject} (issuer {issuer})"


def signer_of(rule: SignatureRule, item: SignatureEvidence) -> str | None:
    """Which of ``rule``'s keys or identities made the verified ``item`` (None: none of them): the
    key, or the identity as the rule writes it (what ``count`` counts: distinct keys and identities)."""
    if item.key is not None and item.key in rule.keys:
        return item.key
    if item.issuer is not None and item.subject is not None:
        for identity in rule.identities:
            if identity.matches(item.issuer, item.subject):
                return str(identity)
    return None


def found_signer(item: SignatureEvidence) -> str:
    """Who made ``item``, as found in it (never the rule's pattern): the key, or the certificate's subject."""
    return signer_name(item.key, item.issuer, item.subject)


def judge(
    rule: SignatureRule, digest: str, evidence: Sequence[SignatureEvidence], noun: str = "signature"
) -> SignatureVerdict:
    """Whether the verified signatures satisfy ``rule`` for the image ``digest``, and why (not).

    ``noun`` names what was verified in the messages (``"attestation"`` for signed statements).
    """
    signers: dict[str, str] = {}  # the rule's key or identity -> who signed, as found
    for item in evidence:
        signer = signer_of(rule, item)
        if signer is not None and signer not in signers:
            signers[signer] = found_signer(item)
    if len(signers) >= rule.count:
        return SignatureVerdict(True, f"signed by {', '.join(signers.values())} ({rule.name})", digest, rule.mode)
    needed = f"{rule.name} needs {_plural(rule.count, noun)} by its keys or identities"
    if not evidence:
        return SignatureVerdict(False, f"no {noun} found for {digest[:19]}; {needed}", digest, rule.mode)
    reasons: list[str] = []
    for item in evidence:
        if item.problem is not None:
            reason = item.problem
        elif item.key is not None:
            reason = f"{OTHER_KEY} ({item.key}, not one of this rule's)"
        elif item.issuer is not None:
            wanted = "; ".join(str(identity) for identity in rule.identities) or "none"
            reason = f"{IDENTITY_MISMATCH}: signed by {found_signer(item)}, wanted {wanted}"
        else:
            reason = OTHER_KEY
        reasons.append(f"{reason} [{item.found_by}]")
    found = f"{len(signers)} of {rule.count} found" if signers else "none verified"
    shown = "; ".join(dict.fromkeys(reasons[:4])) + (f"; and {len(reasons) - 4} more" if len(reasons) > 4 else "")
    return SignatureVerdict(False, f"{needed} ({found}): {shown}", digest, rule.mode)
