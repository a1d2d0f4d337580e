"""Attestations: DSSE envelopes over in-toto statements, SLSA v0.2 and v1 as Tekton Chains writes them."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from imagegate.core.attestations import AttestationRule, judge_attestation
from imagegate.core.policy import load_policy
from imagegate.core.provenance import (
    DSSE_INTOTO,
    Provenance,
    ProvenanceError,
    ProvenanceRule,
    check_provenance,
    glob_match,
    normalize_source,
    pae,
    parse_envelope,
    parse_statement,
)
from imagegate.core.signatures import SignatureEvidence
from imagegate.shell.registry.attestations import envelope_evidence
from imagegate.shell.registry.signing import load_public_key
from tests.conftest import POLICY_HEADER
from tests.signed_images import (
    SOURCE,
    dsse_envelope,
    new_key,
    public_pem,
    sign,
    slsa_v02_statement,
    slsa_v1_statement,
)

DIGEST = "sha256:" + "ab" * 32
OTHER = "sha256:" + "cd" * 32


def v02_statement(digest: str = DIGEST, source: str = SOURCE) -> dict[str, Any]:
    return slsa_v02_statement(digest, source)


def v1_statement(digest: str = DIGEST, source: str = SOURCE) -> dict[str, Any]:
    return slsa_v1_statement(digest, source)


RULE = ProvenanceRule(
    builder_ids=("https://tekton.dev/chains/v2",),
    build_types=("tekton.dev/v1beta1/*", "https://tekton.dev/chains/v2/slsa*"),
    source_forges=("https://gitlab.wikimedia.org/**", "https://github.com/**"),
)


@pytest.mark.parametrize("make", [v02_statement, v1_statement])
def test_tekton_chains_provenance_is_read_and_allowed(make: Any) -> None:
    provenance = parse_statement(json.dumps(make()).encode(), DIGEST)
    assert provenance.builder_id == "https://tekton.dev/chains/v2"
    assert provenance.sources == ("https://gitlab.wikimedia.org/toolforge-repos/wikibugs2",)
    assert check_provenance(provenance, RULE) == []


@pytest.mark.parametrize("make", [v02_statement, v1_statement])
def test_a_statement_about_another_image_is_refused(make: Any) -> None:
    with pytest.raises(ProvenanceError, match="about another image"):
        parse_statement(json.dumps(make(OTHER)).encode(), DIGEST)


@pytest.mark.parametrize(
    ("source", "allowed"),
    [
        ("git+https://github.com/wikimedia/pywikibot.git", True),
        ("git+https://gitlab.wikimedia.org/repos/x/y.git@refs/tags/v1", True),
        ("git+https://GitLab.Wikimedia.org/repos/x", True),  # host names are not case-sensitive
        ("git+https://gitlab.wikimedia.org@evil.example/x.git", False),  # the host is evil.example
        ("git+https://gitlab.wikimedia.org.evil.example/x.git", False),
        ("git+https://private.example/secret.git", False),
        ("git+ssh://gitlab.wikimedia.org/x.git", False),
    ],
)
def test_open_source_only(source: str, allowed: bool) -> None:
    provenance = parse_statement(json.dumps(v1_statement(source=source)).encode(), DIGEST)
    reasons = check_provenance(provenance, RULE)
    assert (reasons == []) is allowed, reasons
    if not allowed:
        assert "is not a repository on an allowed forge" in reasons[0]


def test_rule_denials_say_what_failed() -> None:
    provenance = Provenance("https://slsa.dev/provenance/v1", "https://evil.example/builder", "custom", ())
    reasons = check_provenance(provenance, RULE)
    assert reasons == [
        "built by 'https://evil.example/builder', not by an allowed builder (https://tekton.dev/chains/v2)",
        "build type 'custom' is not allowed (tekton.dev/v1beta1/*, https://tekton.dev/chains/v2/slsa*)",
        "the provenance names no source repository (open source only)",
    ]


@pytest.mark.parametrize(
    ("statement", "reason"),
    [
        ({"_type": "https://example/other"}, "not an in-toto statement"),
        ({"_type": "https://in-toto.io/Statement/v1", "subject": []}, "names no subject"),
        (
            {
                "_type": "https://in-toto.io/Statement/v1",
                "subject": [{"digest": {"sha256": DIGEST[7:]}}],
                "predicateType": "https://spdx.dev/Document",
                "predicate": {},
            },
            "not SLSA provenance",
        ),
        (
            {
                "_type": "https://in-toto.io/Statement/v1",
                "subject": [{"digest": {"sha256": DIGEST[7:]}}],
                "predicateType": "https://slsa.dev/provenance/v1",
                "predicate": {"buildDefinition": {}, "runDetails": {"builder": {}}},
            },
            "no runDetails.builder.id",
        ),
    ],
)
def test_malformed_statements(statement: dict[str, Any], reason: str) -> None:
    with pytest.raises(ProvenanceError, match=reason):
        parse_statement(json.dumps(statement).encode(), DIGEST)


def test_normalize_and_glob() -> None:
    assert normalize_source("git+https://github.com/a/b.git@refs/heads/main") == "https://github.com/a/b"
    assert glob_match("https://github.com/*", "https://github.com/a") and not glob_match(
        "https://github.com/*", "https://github.com/a/b"
    )
    assert glob_match("https://github.com/**", "https://github.com/a/b")


def test_pae_is_the_dsse_encoding() -> None:
    # the example of the DSSE v1 protocol document
    assert (
        pae("http://example.com/HelloWorld", b"hello world")
        == b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )


# --- signed envelopes: verified by the shell, judged by the rule -------------------------------

KEYS = {kind: new_key(kind) for kind in ("p256", "p384", "rsa", "ed25519")}


def attestation_rule(keys: list[str], count: int = 1, extra: str = "") -> AttestationRule:
    loaded = load_policy(
        f"""{POLICY_HEADER}attestations:
  rules:
    - images: [r.example/a]
      keys: [{", ".join(keys)}]
      count: {count}
      builderIds: ["https://tekton.dev/chains/v2"]
      buildTypes: ["tekton.dev/v1beta1/*", "https://tekton.dev/chains/v2/slsa*"]
      sources: ["https://gitlab.wikimedia.org/**", "https://github.com/**"]
{extra}""",
        "p.yaml",
    )
    (rule,) = loaded.attestations.rules
    return rule


def envelope(key: Any, statement: dict[str, Any], payload_type: str = DSSE_INTOTO) -> bytes:
    return json.dumps(dsse_envelope([key], statement, payload_type)).encode()


def evidence(trusted: dict[str, Any], *bodies: bytes) -> list[SignatureEvidence]:
    keys = {name: load_public_key(public_pem(key), name) for name, key in trusted.items()}
    return [item for n, body in enumerate(bodies) for item in envelope_evidence(keys, body, DIGEST, f"layer {n}", {})]


def _wrapped(text: str, width: int = 64) -> str:
    return "\n".join(text[i : i + width] for i in range(0, len(text), width)) + "\n"


@pytest.mark.parametrize(
    ("spell", "refused"),
    [
        (lambda text: text, None),
        (_wrapped, None),  # as OpenSSL and GNU base64 wrap it: Go skips the newlines
        (lambda text: _wrapped(text, 76).replace("\n", "\r\n"), None),
        (lambda text: text.replace("+", "-").replace("/", "_"), None),  # URL-safe: go-securesystemslib's second try
        (lambda text: text.rstrip("="), "not base64"),  # unpadded: both of its encodings are padded
        (lambda text: f" {text}", "not base64 (' ' at character 1)"),
    ],
)
def test_envelopes_decode_as_cosign_decodes_them(spell: Any, refused: str | None) -> None:
    """go-securesystemslib's b64Decode (cosign's DSSE): StdEncoding, else URLEncoding, newlines skipped."""
    document = dsse_envelope([KEYS["p256"]], v1_statement())
    # a payload whose encoding has padding and "+" or "/" in it, so each spelling changes it
    statement = {**v1_statement(), "x": "???>>>~~~"}
    payload = next(
        body
        for n in range(12)
        if {"=", "/"} <= set(base64.b64encode(body := json.dumps(statement).encode() + b" " * n).decode())
    )
    document["payload"] = base64.b64encode(payload).decode()
    signature = base64.b64encode(sign(KEYS["p256"], pae(DSSE_INTOTO, payload))).decode()
    document["payload"] = spell(document["payload"])
    document["signatures"] = [{"keyid": "", "sig": spell(signature)}]
    (item,) = evidence({"k": KEYS["p256"]}, json.dumps(document).encode())
    if refused is None:
        assert item.key == "k" and item.problem is None, item
    else:
        assert item.key is None and item.problem is not None and refused in item.problem, item


@pytest.mark.parametrize("name", list(KEYS))
def test_each_key_type_verifies_its_envelope(name: str) -> None:
    (item,) = evidence({name: KEYS[name]}, envelope(KEYS[name], v1_statement()))
    assert item.key == name and item.problem is None and item.provenance is not None
    verdict = judge_attestation(attestation_rule([name]), DIGEST, [item])
    assert verdict.ok and verdict.detail == f"signed by {name} (attestations.rules[0])", verdict
    assert verdict.digest == DIGEST


def test_tampered_envelopes_are_denied_with_the_reason() -> None:
    trusted = {"build-service.pub": KEYS["p256"]}
    rule = attestation_rule(["build-service.pub"])

    def denial(*bodies: bytes) -> str:
        verdict = judge_attestation(rule, DIGEST, evidence(trusted, *bodies))
        assert not verdict.ok
        return verdict.detail

    good = json.loads(envelope(KEYS["p256"], v02_statement()))
    # a payload swapped for another (valid-looking) statement under the old signature
    swapped = dict(
        good, payload=base64.b64encode(json.dumps(v02_statement(source="git+https://x.example/y")).encode()).decode()
    )
    assert "signed by another key: none of the configured keys verifies it (or its payload was altered)" in denial(
        json.dumps(swapped).encode()
    )
    # the same bytes under another payload type: PAE binds the type
    assert "signed by another key" in denial(json.dumps(dict(good, payloadType="text/plain")).encode())
    # signed by a key the policy does not name
    assert "signed by another key" in denial(envelope(KEYS["p384"], v02_statement()))
    # signed by a key of the section, but not of this rule
    other_rule = judge_attestation(
        attestation_rule(["b.pub"]), DIGEST, evidence({"a.pub": KEYS["p256"]}, envelope(KEYS["p256"], v02_statement()))
    )
    assert "signed by another key (a.pub, not one of this rule's)" in other_rule.detail
    # genuine, for another image
    assert "the statement is about another image" in denial(envelope(KEYS["p256"], v02_statement(OTHER)))
    # genuine, but built from a private repository, or by another builder
    assert (
        "source https://private.example/x is not a repository on an allowed forge "
        "(https://gitlab.wikimedia.org/**, https://github.com/**) (attested by build-service.pub)"
    ) in denial(envelope(KEYS["p256"], v02_statement(source="git+https://private.example/x.git")))
    built_elsewhere = slsa_v1_statement(DIGEST, builder="https://github.com/actions/runner")
    assert "built by 'https://github.com/actions/runner', not by an allowed builder" in denial(
        envelope(KEYS["p256"], built_elsewhere)
    )
    # genuine, but not in-toto
    assert "payload type 'text/plain' is not in-toto" in denial(envelope(KEYS["p256"], v1_statement(), "text/plain"))
    # none at all
    assert denial() == (
        f"no attestation found for {DIGEST[:19]}; attestations.rules[0] needs 1 attestation by its keys or identities"
    )


def test_one_good_attestation_among_bad_ones_is_enough() -> None:
    trusted = {"k": KEYS["ed25519"]}
    bad = envelope(KEYS["rsa"], v1_statement())
    good = envelope(KEYS["ed25519"], v1_statement())
    assert judge_attestation(attestation_rule(["k"]), DIGEST, evidence(trusted, bad, good)).ok


def test_count_counts_distinct_keys() -> None:
    trusted = {"a": KEYS["p256"], "b": KEYS["ed25519"]}
    rule = attestation_rule(["a", "b"], count=2)
    one = envelope(KEYS["p256"], v1_statement())
    verdict = judge_attestation(rule, DIGEST, evidence(trusted, one, one))
    assert not verdict.ok and "needs 2 attestations" in verdict.detail and "1 of 2 found" in verdict.detail
    both = json.dumps(dsse_envelope([KEYS["p256"], KEYS["ed25519"]], v1_statement())).encode()
    assert judge_attestation(rule, DIGEST, evidence(trusted, both)).ok
    # two keys, but one attests a build the rule does not allow: it does not count
    private = envelope(KEYS["ed25519"], v1_statement(source="git+https://private.example/x"))
    verdict = judge_attestation(rule, DIGEST, evidence(trusted, one, private))
    assert not verdict.ok and "1 of 2 found" in verdict.detail and "private.example" in verdict.detail


def test_predicate_types_narrow_what_counts() -> None:
    rule = attestation_rule(["k"], extra='      predicateTypes: ["https://slsa.dev/provenance/v1"]\n')
    found = evidence({"k": KEYS["p256"]}, envelope(KEYS["p256"], v02_statement()))
    verdict = judge_attestation(rule, DIGEST, found)
    assert not verdict.ok and "predicate type https://slsa.dev/provenance/v0.2 is not one of" in verdict.detail


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json", "not a JSON DSSE envelope"),
        (b"[]", "not a JSON DSSE envelope as cosign reads it"),
        (b'{"payloadType": "x", "payload": "e30=", "signatures": [{"sig": 1}]}', "as cosign reads it"),
        (b'{"payload": "e30="}', "no payloadType"),
        (b'{"payloadType": "x", "payload": "!!"}', "the DSSE payload is not base64"),
        (b'{"payloadType": "x", "payload": "e30=", "signatures": []}', "carries no signature"),
    ],
)
def test_malformed_envelopes(body: bytes, reason: str) -> None:
    with pytest.raises(ProvenanceError, match=reason):
        parse_envelope(body)
    (item,) = evidence({"k": KEYS["p256"]}, body)
    assert item.problem is not None and reason in item.problem
    assert reason in judge_attestation(attestation_rule(["k"]), DIGEST, [item]).detail


def test_no_keys_verify_nothing() -> None:
    (item,) = envelope_evidence({}, envelope(KEYS["p256"], v1_statement()), DIGEST, "w", {})
    assert item.problem is not None and "signed by another key" in item.problem
