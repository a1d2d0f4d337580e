"""The pure part of attestations: policy rules, their judgement, and decisions with (and without) the registry's part."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import pytest

from imagegate.core.attestations import judge_attestation
from imagegate.core.decide import Rule, decide
from imagegate.core.policy import Policy, PolicyError, load_policy
from imagegate.core.provenance import SLSA_V02, SLSA_V1, Provenance
from imagegate.core.questions import AttestationsQuestion, SignaturesQuestion
from imagegate.core.records import Answers, Mode, SignatureVerdict
from imagegate.core.reference import parse_docker_ref
from imagegate.core.signatures import SignatureEvidence
from tests.conftest import POLICY_HEADER

DIGEST = "sha256:" + "a" * 64
NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
TOOLFORGE = """attestations:
  onError: allow
  rules:
    - images: ["tools-harbor.wmcloud.org/tool-*"]
      keys: [keys/build-service.pub, keys/build-service.pub]
      builderIds: ["https://tekton.dev/chains/v2"]
      buildTypes: ["tekton.dev/v1beta1/TaskRun"]
      sources: ["https://gitlab.wikimedia.org/**", "https://github.com/**"]
    - images: ["ghcr.io/wikimedia/**"]
      identities: [{issuer: "https://token.actions.githubusercontent.com", subjectRegExp: "https://github.com/wikimedia/.+"}]
      predicateTypes: ["https://slsa.dev/provenance/v1"]
      mode: enforce
      onError: deny
"""


def policy(attestations: str, mode: str = "warn") -> Policy:
    return load_policy(f"{POLICY_HEADER}mode: {mode}\ntrusted: [tools-harbor.wmcloud.org, ghcr.io]\n{attestations}")


def test_rules_load_with_defaults_and_overrides() -> None:
    loaded = policy(TOOLFORGE)
    first, second = loaded.attestations.rules
    assert first.name == "attestations.rules[0]" and first.signers.keys == ("keys/build-service.pub",)
    assert first.mode is Mode.WARN and first.signers.on_error == "allow"  # the policy's mode, the section's onError
    assert first.provenance.builder_ids == ("https://tekton.dev/chains/v2",)
    assert first.provenance.source_forges == ("https://gitlab.wikimedia.org/**", "https://github.com/**")
    assert first.provenance.predicate_types == (SLSA_V02, SLSA_V1)
    assert second.mode is Mode.ENFORCE and second.signers.on_error == "deny"
    assert second.provenance.predicate_types == (SLSA_V1,)
    assert loaded.attestations.signers.keys == ("keys/build-service.pub",) and loaded.attestations.signers.keyless
    assert loaded.classify("tools-harbor.wmcloud.org/tool-a/app:1").attested_required
    assert not loaded.classify("tools-harbor.wmcloud.org/toolforge/base:1").attested_required
    assert not loaded.classify("tools-harbor.wmcloud.org/tool-a/app:1").signed_required
    assert loaded.attestations.rules_for(parse_docker_ref("ghcr.io/wikimedia/x/y:1")) == (second,)
    # an attestation is fetched from the image's registry: the rules' images count as named
    assert load_policy(f"{POLICY_HEADER}{TOOLFORGE}").contact_scope().allows(parse_docker_ref("ghcr.io/wikimedia/x"))


@pytest.mark.parametrize(
    ("rule", "where", "words"),
    [
        ("{images: [], keys: [a.pub]}", "attestations.rules[0].images", "name the images"),
        ("{images: [x.example/a]}", "attestations.rules[0]", "name keys"),
        ("{images: [x.example/a], keys: [a.pub], count: 2}", "attestations.rules[0].count", "between 1"),
        ("{images: [x.example/a], identities: [{issuer: i}]}", "attestations.rules[0].identities[0]", "exactly one"),
        ("{images: [x.example/a], keys: [a.pub], sources: ['**']}", "attestations.rules[0].sources[0]", "scheme"),
        (
            "{images: [x.example/a], keys: [a.pub], sources: ['https://github.com*']}",
            "attestations.rules[0].sources[0]",
            "scheme and host",
        ),
        ("{images: [x.example/a], keys: [a.pub], builderIds: ['']}", "attestations.rules[0].builderIds[0]", "empty"),
        (
            "{images: [x.example/a], keys: [a.pub], predicateTypes: ['https://spdx.dev/Document']}",
            "attestations.rules[0].predicateTypes[0]",
            "imagegate reads SLSA provenance",
        ),
        ("{images: [x.example/a], keys: [a.pub], predicateTypes: []}", "attestations.rules[0].predicateTypes", "empty"),
        ("{images: [x.example/a], keys: [a.pub], builder: x}", "builder", "unknown"),
    ],
)
def test_bad_rules_are_refused_on_load(rule: str, where: str, words: str) -> None:
    with pytest.raises(PolicyError) as caught:
        policy(f"attestations:\n  rules: [{rule}]\n")
    message = str(caught.value)
    assert where in message and words in message, message


def test_empty_trusted_root_is_refused() -> None:
    with pytest.raises(PolicyError, match=r"attestations\.trustedRoot"):
        policy("attestations:\n  trustedRoot: ' '\n  rules: [{images: [x.example/a], keys: [a.pub]}]\n")


def test_keyless_attestations_are_judged_by_identity() -> None:
    rule = policy(TOOLFORGE).attestations.rules[1]
    provenance = Provenance(SLSA_V1, "https://github.com/actions/runner", "https://actions.github.io/buildtypes", ())
    by_wikimedia = SignatureEvidence(
        "referrers tag", issuer="https://token.actions.githubusercontent.com", subject="https://github.com/wikimedia/x"
    )
    assert not judge_attestation(rule, DIGEST, [by_wikimedia]).ok  # verified, but no statement read: never an allow
    assert judge_attestation(rule, DIGEST, [dataclasses.replace(by_wikimedia, provenance=provenance)]).ok
    by_mallory = SignatureEvidence(
        "referrers tag",
        issuer="https://token.actions.githubusercontent.com",
        subject="https://github.com/mallory/x",
        provenance=provenance,
    )
    verdict = judge_attestation(rule, DIGEST, [by_mallory])
    assert not verdict.ok and "certificate identity mismatch: signed by https://github.com/mallory/x" in verdict.detail


def pod(image: str) -> dict[str, Any]:
    return {"kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": [{"name": "app", "image": image}]}}


IMAGE = "tools-harbor.wmcloud.org/tool-a/app:1"


def test_offline_an_attested_image_is_unverified_in_the_strongest_mode() -> None:
    loaded = policy(TOOLFORGE)
    decision = decide(loaded, pod(IMAGE), namespace="tool-a", now=NOW)
    (finding,) = decision.findings
    assert finding.rule == Rule.ATTESTATION_UNVERIFIED and finding.mode is Mode.WARN
    assert "must carry signed build provenance (attestations.rules[0])" in finding.message
    assert [str(q.ref) for q in decision.questions] == [IMAGE]
    assert decision.asked(AttestationsQuestion) == decision.questions
    enforced = policy(TOOLFORGE, mode="enforce")
    assert not decide(enforced, pod(IMAGE), namespace="tool-a", now=NOW).allowed


def test_verdicts_decide_and_name_the_rule() -> None:
    loaded = policy(TOOLFORGE, mode="enforce")
    (asked,) = decide(loaded, pod(IMAGE), namespace="tool-a", now=NOW).questions
    failed = SignatureVerdict(False, "no attestation found ...; attestations.rules[0] needs 1 attestation", DIGEST)
    decision = decide(loaded, pod(IMAGE), namespace="tool-a", now=NOW, answers=Answers({asked: (failed,)}))
    (finding,) = decision.violations
    assert finding.rule == Rule.ATTESTATION_MISMATCH
    assert "has no build provenance as required: no attestation found" in decision.message()
    passed = SignatureVerdict(True, "signed by keys/build-service.pub (attestations.rules[0])", DIGEST)
    ok = decide(loaded, pod(IMAGE), namespace="tool-a", now=NOW, answers=Answers({asked: (passed,)}))
    assert ok.allowed and ok.findings == ()
    warned = SignatureVerdict(False, "built elsewhere", DIGEST, Mode.WARN)
    soft = decide(loaded, pod(IMAGE), namespace="tool-a", now=NOW, answers=Answers({asked: (warned,)}))
    assert soft.allowed and soft.warnings[0].rule == Rule.ATTESTATION_MISMATCH


def test_signatures_and_attestations_are_both_checked() -> None:
    signatures = "signatures:\n  rules: [{images: [tools-harbor.wmcloud.org], keys: [keys/build-service.pub]}]\n"
    loaded = policy(TOOLFORGE + signatures, mode="enforce")
    decision = decide(loaded, pod(IMAGE), namespace="tool-a", now=NOW)
    assert {f.rule for f in decision.findings} == {Rule.ATTESTATION_UNVERIFIED, Rule.SIGNATURE_UNVERIFIED}
    assert [str(q.ref) for q in decision.asked(AttestationsQuestion)] == [IMAGE]
    (signatures_asked,) = decision.asked(SignaturesQuestion)
    assert str(signatures_asked.ref) == IMAGE
    signed = SignatureVerdict(True, "signed", DIGEST)
    only_signed = decide(
        loaded, pod(IMAGE), namespace="tool-a", now=NOW, answers=Answers({signatures_asked: (signed,)})
    )
    assert [f.rule for f in only_signed.findings] == [Rule.ATTESTATION_UNVERIFIED]


def test_a_denied_image_is_not_checked() -> None:
    loaded = load_policy(f"{POLICY_HEADER}{TOOLFORGE}")  # nothing trusted: the image is denied first
    decision = decide(loaded, pod(IMAGE), namespace="tool-a", now=NOW)
    assert [f.rule for f in decision.findings] == [Rule.UNTRUSTED_REGISTRY]
    assert decision.questions == ()
