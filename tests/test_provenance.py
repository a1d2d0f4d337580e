"""Attestations: DSSE envelopes over in-toto statements, SLSA v0.2 and v1 as Tekton Chains writes them."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

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
from imagegate.shell.attestations import load_public_key, verify_attestation, verify_envelope

DIGEST = "sha256:" + "ab" * 32
OTHER = "sha256:" + "cd" * 32
SOURCE = "git+https://gitlab.wikimedia.org/toolforge-repos/wikibugs2.git"


def v02_statement(digest: str = DIGEST, source: str = SOURCE) -> dict[str, Any]:
    """SLSA v0.2 as Tekton Chains (format slsa/v1) writes it for a TaskRun."""
    return {
        "_type": "https://in-toto.io/Statement/v0.1",
        "predicateType": "https://slsa.dev/provenance/v0.2",
        "subject": [{"name": "tools-harbor.wmcloud.org/tool-wikibugs/wikibugs", "digest": {"sha256": digest[7:]}}],
        "predicate": {
            "builder": {"id": "https://tekton.dev/chains/v2"},
            "buildType": "tekton.dev/v1beta1/TaskRun",
            "invocation": {
                "configSource": {},
                "parameters": {"APP_IMAGE": "tools-harbor.wmcloud.org/tool-wikibugs/wikibugs:latest"},
            },
            "buildConfig": {"steps": [{"entryPoint": "/cnb/lifecycle/creator", "arguments": None}]},
            "metadata": {"buildStartedOn": "2024-05-01T10:00:00Z", "completeness": {"parameters": False}},
            "materials": [
                {
                    "uri": "oci://docker-registry.tools.wmflabs.org/toolforge-bookworm0-builder",
                    "digest": {"sha256": "1" * 64},
                },
                {"uri": f"{source}@refs/heads/main", "digest": {"sha1": "2" * 40}},
            ],
        },
    }


def v1_statement(digest: str = DIGEST, source: str = SOURCE) -> dict[str, Any]:
    """SLSA v1 as Tekton Chains (format slsa/v2alpha3) writes it for a PipelineRun."""
    return {
        "_type": "https://in-toto.io/Statement/v1",
        "predicateType": "https://slsa.dev/provenance/v1",
        "subject": [{"name": "tools-harbor.wmcloud.org/tool-x/x", "digest": {"sha256": digest[7:]}}],
        "predicate": {
            "buildDefinition": {
                "buildType": "https://tekton.dev/chains/v2/slsa",
                "externalParameters": {"runSpec": {"pipelineRef": {"name": "buildpacks"}}},
                "internalParameters": {"tekton-pipelines-feature-flags": {"EnableAPIFields": "beta"}},
                "resolvedDependencies": [
                    {"uri": "oci://gcr.io/tekton-releases/git-clone", "digest": {"sha256": "3" * 64}, "name": "task"},
                    {"uri": source, "digest": {"sha1": "4" * 40}, "name": "inputs/result"},
                ],
            },
            "runDetails": {
                "builder": {"id": "https://tekton.dev/chains/v2"},
                "metadata": {"invocationID": "https://tekton.dev/pipelineruns/abc"},
            },
        },
    }


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


# --- signed envelopes ---------------------------------------------------------------------


def _pem(private: Any) -> bytes:
    pem: bytes = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return pem


def _sign(private: Any, message: bytes) -> bytes:
    if isinstance(private, ec.EllipticCurvePrivateKey):
        digest = hashes.SHA384() if isinstance(private.curve, ec.SECP384R1) else hashes.SHA256()
        return private.sign(message, ec.ECDSA(digest))
    if isinstance(private, rsa.RSAPrivateKey):
        return private.sign(message, padding.PKCS1v15(), hashes.SHA256())
    return private.sign(message)  # type: ignore[no-any-return]


def envelope(private: Any, statement: dict[str, Any], payload_type: str = DSSE_INTOTO) -> bytes:
    payload = json.dumps(statement).encode()
    signature = _sign(private, pae(payload_type, payload))
    return json.dumps(
        {
            "payloadType": payload_type,
            "payload": base64.b64encode(payload).decode(),
            "signatures": [{"keyid": "", "sig": base64.b64encode(signature).decode()}],
        }
    ).encode()


KEYS = {
    "p256": ec.generate_private_key(ec.SECP256R1()),
    "p384": ec.generate_private_key(ec.SECP384R1()),
    "rsa": rsa.generate_private_key(public_exponent=65537, key_size=2048),
    "ed25519": ed25519.Ed25519PrivateKey.generate(),
}


@pytest.mark.parametrize("name", list(KEYS))
def test_each_key_type_verifies_its_envelope(name: str) -> None:
    key = load_public_key(_pem(KEYS[name]), name)
    result = verify_attestation([envelope(KEYS[name], v1_statement())], DIGEST, {name: key}, RULE)
    assert result.allowed, result.reasons
    assert result.signed_by == (name,) and result.provenance is not None


def test_tampered_envelopes_are_denied_with_the_reason() -> None:
    trusted = {"toolforge-builds": load_public_key(_pem(KEYS["p256"]), "key")}
    good = json.loads(envelope(KEYS["p256"], v02_statement()))

    # a payload swapped for another (valid-looking) statement under the old signature
    swapped = dict(
        good, payload=base64.b64encode(json.dumps(v02_statement(source="git+https://x.example/y")).encode()).decode()
    )
    result = verify_attestation([json.dumps(swapped).encode()], DIGEST, trusted, RULE)
    assert not result.allowed and result.reasons == (
        "attestation: the attestation is signed by another key (none of toolforge-builds)",
    )

    # the same bytes signed with another payload type: PAE binds the type
    retyped = dict(good, payloadType="text/plain")
    assert (
        "signed by another key" in verify_attestation([json.dumps(retyped).encode()], DIGEST, trusted, RULE).reasons[0]
    )

    # signed by a key the policy does not name
    other = envelope(KEYS["p384"], v02_statement())
    assert "signed by another key" in verify_attestation([other], DIGEST, trusted, RULE).reasons[0]

    # a genuine attestation, for another image
    result = verify_attestation([envelope(KEYS["p256"], v02_statement(OTHER))], DIGEST, trusted, RULE)
    assert "about another image" in result.reasons[0]

    # genuine, but built from a private repository
    result = verify_attestation(
        [envelope(KEYS["p256"], v02_statement(source="git+https://private.example/x.git"))], DIGEST, trusted, RULE
    )
    assert "source https://private.example/x is not a repository on an allowed forge" in result.reasons[0]

    # none at all
    assert verify_attestation([], DIGEST, trusted, RULE).reasons == ("no attestation found for the image",)


def test_one_good_attestation_among_bad_ones_is_enough() -> None:
    trusted = {"k": load_public_key(_pem(KEYS["ed25519"]), "k")}
    bad = envelope(KEYS["rsa"], v1_statement())
    good = envelope(KEYS["ed25519"], v1_statement())
    assert verify_attestation([bad, good], DIGEST, trusted, RULE).allowed


def test_threshold_counts_distinct_keys() -> None:
    trusted = {n: load_public_key(_pem(KEYS[n]), n) for n in ("p256", "ed25519")}
    one = envelope(KEYS["p256"], v1_statement())
    result = verify_attestation([one], DIGEST, trusted, RULE, threshold=2)
    assert not result.allowed and "signed by 1 of the keys, 2 required" in result.reasons[0]
    both = json.loads(one)
    payload = base64.b64decode(both["payload"])
    both["signatures"].append({"sig": base64.b64encode(_sign(KEYS["ed25519"], pae(DSSE_INTOTO, payload))).decode()})
    assert verify_attestation([json.dumps(both).encode()], DIGEST, trusted, RULE, threshold=2).allowed


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json", "not a JSON DSSE envelope"),
        (b"[]", "not a JSON object"),
        (b'{"payload": "e30="}', "no payloadType"),
        (b'{"payloadType": "x", "payload": "!!"}', "not valid base64"),
        (b'{"payloadType": "x", "payload": "e30=", "signatures": []}', "carries no signature"),
    ],
)
def test_malformed_envelopes(body: bytes, reason: str) -> None:
    with pytest.raises(ProvenanceError, match=reason):
        parse_envelope(body)
    key = {"k": load_public_key(_pem(KEYS["p256"]), "k")}
    assert reason in verify_attestation([body], DIGEST, key, RULE).reasons[0]


def test_keys_that_are_not_supported() -> None:
    with pytest.raises(ProvenanceError, match="not a PEM public key"):
        load_public_key(b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", "keys/x.pem")
    p521 = ec.generate_private_key(ec.SECP521R1())
    with pytest.raises(ProvenanceError, match="secp521r1 is not supported"):
        load_public_key(_pem(p521), "keys/p521.pem")
    with pytest.raises(ProvenanceError):
        verify_envelope(envelope(KEYS["p256"], v1_statement()), {})
