"""The pure part of signatures: policy rules, payload checks, judgements; and key-based verification."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from imagegate.core.policy import PolicyError, load_policy
from imagegate.core.reference import parse_docker_ref
from imagegate.core.signatures import (
    PayloadError,
    SignatureEvidence,
    check_simple_signing_payload,
    judge,
)
from imagegate.shell.registry.signing import SigningError, load_public_key, simple_signing_evidence, verifies
from tests.conftest import POLICY_HEADER
from tests.signed_images import SIGNATURE_ANNOTATION, new_key, public_pem, sign, simple_signing_payload

DIGEST = "sha256:" + "a" * 64
OTHER = "sha256:" + "b" * 64


def policy(signatures: str) -> object:
    return load_policy(f"{POLICY_HEADER}mode: warn\nsignatures:\n{signatures}", "p.yaml")


def test_rules_load_with_defaults_and_overrides() -> None:
    loaded = load_policy(
        POLICY_HEADER
        + """mode: warn
signatures:
  onError: allow
  rules:
    - images: [registry.example/tools]
      keys: [a.pub, b.pub, a.pub]
      count: 2
    - images: ["ghcr.io/wikimedia/**"]
      identities: [{issuer: "https://issuer", subjectRegExp: "https://github.com/wikimedia/.+"}]
      mode: enforce
      onError: deny
""",
        "p.yaml",
    )
    first, second = loaded.signatures.rules
    assert first.keys == ("a.pub", "b.pub") and first.count == 2
    assert first.mode.value == "warn" and first.on_error == "allow"  # the policy's mode, the section's onError
    assert second.mode.value == "enforce" and second.on_error == "deny"
    assert loaded.signatures.keys == ("a.pub", "b.pub") and loaded.signatures.keyless
    assert loaded.classify("registry.example/tools/app:1").signed_required
    assert not loaded.classify("registry.example/other:1").signed_required
    assert loaded.signatures.rules_for(parse_docker_ref("ghcr.io/wikimedia/x/y:1")) == (second,)


@pytest.mark.parametrize(
    ("text", "where", "words"),
    [
        ("  rules: [{images: [], keys: [a.pub]}]\n", "signatures.rules[0].images", "name the images"),
        ("  rules: [{images: [x.example/a]}]\n", "signatures.rules[0]", "name keys"),
        ("  rules: [{images: [x.example/a], keys: [a.pub], count: 2}]\n", "signatures.rules[0].count", "between 1"),
        ("  rules: [{images: [x.example/a], keys: ['']}]\n", "signatures.rules[0].keys[0]", "empty path"),
        (
            "  rules: [{images: [x.example/a], identities: [{issuer: i}]}]\n",
            "signatures.rules[0].identities[0]",
            "exactly one of subject",
        ),
        (
            "  rules: [{images: [x.example/a], identities: [{issuer: i, subjectRegExp: '('}]}]\n",
            "signatures.rules[0].identities[0].subjectRegExp",
            "not a regular expression",
        ),
        ("  rules: [{images: ['bad image!'], keys: [a.pub]}]\n", "signatures.rules[0].images[0]", ""),
        ("  rules: [{images: [x.example/a], keys: [a.pub], mode: loud}]\n", "mode", "enforce"),
        ("  rule: []\n", "rule", "unknown key"),
    ],
)
def test_bad_rules_are_refused_on_load(text: str, where: str, words: str) -> None:
    with pytest.raises(PolicyError) as caught:
        policy(text)
    message = str(caught.value)
    assert where in message and words in message, message


def test_payload_checks() -> None:
    check_simple_signing_payload(simple_signing_payload("r.example/a", DIGEST), DIGEST)
    cases = {
        b"not json": "not JSON",
        b"[]": "not JSON cosign reads",
        b'{"critical": {"type": "cosign container image signature", "image": {"docker-manifest-digest": 1}}}': "not JSON cosign reads",
        simple_signing_payload("r.example/a", DIGEST, type="something else"): "critical.type",
        json.dumps({"critical": {"type": "cosign container image signature"}}).encode(): "docker-manifest-digest",
        simple_signing_payload("r.example/a", OTHER): "payload for another digest",
    }
    for payload, words in cases.items():
        with pytest.raises(PayloadError, match=words):
            check_simple_signing_payload(payload, DIGEST)


@pytest.mark.parametrize("kind", ["p256", "p384", "rsa", "rsa-pss", "ed25519"])
def test_every_key_kind_verifies_its_own_and_no_other(kind: str) -> None:
    key = new_key(kind)
    payload = simple_signing_payload("r.example/a", DIGEST)
    signature = sign(key, payload, pss=kind == "rsa-pss")
    public = load_public_key(public_pem(key), "k.pub")
    assert verifies(public, signature, payload)
    assert not verifies(public, signature, payload + b" ")
    assert not verifies(load_public_key(public_pem(new_key(kind)), "other.pub"), signature, payload)


def test_bad_keys_are_refused() -> None:
    with pytest.raises(SigningError, match="not a PEM public key"):
        load_public_key(b"-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----\n", "k.pub")
    with pytest.raises(SigningError, match="too weak"):
        from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: PLC0415

        weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
        load_public_key(public_pem(weak), "weak.pub")


def test_evidence_and_judgement_name_what_failed() -> None:
    key = new_key()
    keys = {"build.pub": load_public_key(public_pem(key), "build.pub")}
    good = simple_signing_payload("r.example/a", DIGEST)

    def evidence(payload: bytes, annotations: dict[str, str]) -> SignatureEvidence:
        return simple_signing_evidence(keys, payload, annotations, DIGEST, "tag x.sig")

    import base64  # noqa: PLC0415

    def annotated(signature: bytes) -> dict[str, str]:
        return {SIGNATURE_ANNOTATION: base64.b64encode(signature).decode()}

    assert evidence(good, annotated(sign(key, good))).key == "build.pub"
    other = simple_signing_payload("r.example/a", OTHER)
    assert "payload for another digest" in (evidence(other, annotated(sign(key, other))).problem or "")
    assert "signed by another key" in (evidence(good, annotated(sign(new_key(), good))).problem or "")
    assert "not base64" in (evidence(good, {SIGNATURE_ANNOTATION: "%%%"}).problem or "")
    assert "no signature annotation" in (evidence(good, {}).problem or "")

    loaded = load_policy(
        f"{POLICY_HEADER}signatures:\n  rules:\n    - images: [r.example/a]\n      keys: [build.pub]\n"
        "      identities: [{issuer: https://issuer, subject: alice@example.org}]\n      count: 2\n"
    )
    (rule,) = loaded.signatures.rules
    none = judge(rule, DIGEST, ())
    assert not none.ok and "no signature found for sha256:aaaaaaaaaaaa" in none.detail
    by_key = SignatureEvidence("tag x.sig", key="build.pub")
    by_mallory = SignatureEvidence("referrers tag", issuer="https://issuer", subject="mallory@example.org")
    half = judge(rule, DIGEST, (by_key, by_mallory))
    assert not half.ok and "1 of 2 found" in half.detail
    assert "certificate identity mismatch: signed by mallory@example.org" in half.detail
    by_alice = SignatureEvidence("referrers tag", issuer="https://issuer", subject="alice@example.org")
    both = judge(rule, DIGEST, (by_key, by_alice, by_key))
    assert both.ok and "build.pub" in both.detail and "alice@example.org" in both.detail
    wrong_issuer = SignatureEvidence("referrers tag", issuer="https://elsewhere", subject="alice@example.org")
    assert not judge(rule, DIGEST, (by_key, wrong_issuer)).ok


def test_a_pattern_counts_once_and_the_signer_is_named_by_its_certificate() -> None:
    """An identity matched by a subjectRegExp: the verdict names the certificate's subject that
    signed, never the rule's pattern; two subjects matching one pattern are one identity of the rule."""
    loaded = load_policy(
        f"{POLICY_HEADER}signatures:\n  rules:\n    - images: [r.example/a]\n"
        '      identities: [{issuer: "https://issuer", subjectRegExp: "https://forge/builds/.+"}]\n'
    )
    (rule,) = loaded.signatures.rules
    built = SignatureEvidence("tag x.sig", issuer="https://issuer", subject="https://forge/builds/app@refs/heads/main")
    verdict = judge(rule, DIGEST, (built,))
    assert verdict.ok and verdict.detail == (
        "signed by https://forge/builds/app@refs/heads/main (issuer https://issuer) (signatures.rules[0])"
    )
    assert "/https://forge/builds/.+/" not in verdict.detail
    twice = replace(rule, count=2)
    other = replace(built, subject="https://forge/builds/other")
    assert not judge(twice, DIGEST, (built, other)).ok  # count counts the rule's identities
