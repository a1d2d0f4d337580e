"""Signatures of an image digest, verified and judged: the keys, the evidence, and the checker the gate asks.

:class:`SignatureChecker` finds the signature artifacts (``artifacts.py``: cosign's ``.sig``
tag, the referrers), verifies each layer (a simple-signing payload by the policy's public keys
with ``cryptography``, or keyless; a Sigstore bundle through ``sigstore_adapter.py``), and
remembers the evidence per digest; the rules are judged from it by core/signatures.py.
The attestations checker (``attestations.py``) is this checker over other artifacts.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cachetools import LRUCache, TTLCache
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from sigstore.models import TrustedRoot
from sigstore.verify import Verifier

from imagegate.core.oci import Descriptor
from imagegate.core.records import SignatureVerdict
from imagegate.core.reference import Reference
from imagegate.core.signatures import (
    OTHER_KEY,
    PayloadError,
    SignatureEvidence,
    SignatureRule,
    SignaturesConfig,
    check_simple_signing_payload,
    judge,
)
from imagegate.shell.logs import get_logger
from imagegate.shell.policy_files import relative_to_policy
from imagegate.shell.registry.artifacts import (
    BUNDLE_TYPES,
    CERTIFICATE_ANNOTATION,
    COSIGN_SIGNATURE_ARTIFACT,
    MAX_BUNDLE_BYTES,
    MAX_LAYERS,
    MAX_PAYLOAD_BYTES,
    READS_AT_ONCE,
    SIMPLE_SIGNING,
    Attached,
    all_at_once,
    decoded_signature,
    in_both_layouts,
    layer_bytes,
)
from imagegate.shell.registry.sigstore_adapter import trusted_root_file, verify_bundle, verify_keyless_signature

if TYPE_CHECKING:
    from imagegate.shell.registry.client import RegistryClient

__all__ = [
    "PublicKey",
    "SignatureChecker",
    "SigningError",
    "bundle_verifier",
    "judge_image",
    "keyless_signing_evidence",
    "load_keys",
    "load_public_key",
    "simple_signing_evidence",
    "tag_scheme_evidence",
    "verifies",
]

log = get_logger("imagegate.signing")

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


def simple_signing_evidence(
    keys: Mapping[str, PublicKey], payload: bytes, annotations: Mapping[str, str], digest: str, found_by: str
) -> SignatureEvidence:
    """One tag-scheme signature layer: which key verified it, or why it counts for nothing."""
    try:
        signature = decoded_signature(annotations)
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


def bundle_verifier(root: Path) -> Verifier:
    """A verifier that needs no network: the trusted root is read from ``root``, never refreshed."""
    try:
        return Verifier(trusted_root=TrustedRoot.from_file(str(root)))
    except OSError as exc:
        raise SigningError(f"cannot read the Sigstore trusted root {root}: {exc.strerror or exc}") from None
    except Exception as exc:  # sigstore raises pydantic, protobuf and its own errors for a bad root
        raise SigningError(f"{root} is not a usable Sigstore trusted root: {exc}") from None


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
        self, config: SignaturesConfig, ref: Reference, digest: str, rules: Sequence[SignatureRule]
    ) -> tuple[SignatureVerdict, ...] | None:
        """The verdicts of ``rules`` from the evidence remembered for ``digest`` (:meth:`known`), or
        None: not known, or a rule that cannot be judged (the caller says why)."""
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

        return await in_both_layouts(client, ref, digest, "sig", kinds, verified)

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
        for start in range(0, len(layers), READS_AT_ONCE):  # a chunk of layers read at a time (a MiB each at most)
            chunk = layers[start : start + READS_AT_ONCE]
            documents = await all_at_once([layer_bytes(client, ref, layer, limit) for layer, _, limit in chunk])
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
