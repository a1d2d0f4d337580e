"""Attestations attached to images in a real registry (docker-registry 2.8: no referrers API).

SLSA provenance as Tekton Chains writes it, signed into DSSE envelopes with ``cryptography`` and
pushed in cosign's ``.att`` tag scheme and as referrers through the fallback tag; a real Sigstore
bundle with in-toto provenance (the conformance suite's); verified through ``decide``/``settle``,
the webhook's /validate and ``imagegate check --registry``.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from imagegate.core.policy import load_policy
from imagegate.shell.registry.attestations import DSSE_ENVELOPE, bundle_evidence, envelope_evidence
from imagegate.shell.registry.signing import bundle_verifier, load_public_key
from imagegate.shell.registry.sigstore_adapter import trusted_root_file
from tests.conftest import POLICY_HEADER, run_imagegate
from tests.oci_images import OciLayout, layers, skopeo_inspect
from tests.registry_process import UNHURRIED, Registry, run_registry
from tests.signed_images import (
    Signature,
    dsse_envelope,
    dsse_layers,
    image_descriptor,
    new_key,
    public_pem,
    push_attestation_tag,
    push_referrer_fallback,
    push_signature_tag,
    sign,
    simple_signing_payload,
    slsa_v02_statement,
    slsa_v1_statement,
    write_public_key,
)
from tests.test_signing import BEACON, BUNDLE_V03, CONFORMANCE, GITHUB_ISSUER, decide_all, pod

KEY_KINDS = ("p256", "p384", "rsa", "ed25519")
PRIVATE = "git+https://private.example/secret.git"
GITHUB_ACTIONS = "https://github.com/actions/runner"
# image tag -> the words the denial must say (None: allowed)
EXPECTED: dict[str, str | None] = {
    "v02": None,
    "v1": None,
    "p384": None,
    "rsa": None,
    "referrer": None,
    "two-layers": None,
    "unattested": "no attestation found",
    "sbom-only": "no attestation found",
    "other-digest": "the statement is about another image",
    "wrong-key": "signed by another key",
    "swapped": "signed by another key: none of the configured keys verifies it (or its payload was altered)",
    "builder": f"built by '{GITHUB_ACTIONS}', not by an allowed builder (https://tekton.dev/chains/v2)",
    "private": "source https://private.example/secret is not a repository on an allowed forge",
    "referrer-private": "source https://private.example/secret is not a repository on an allowed forge",
}


@dataclasses.dataclass
class Images:
    registry: Registry
    digests: dict[str, str]  # repository:tag -> digest
    keys_dir: Path

    def ref(self, name: str) -> str:
        return f"{self.registry.host}/{name}"


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Images]:
    """One image per way of being attested (or not), in both layouts, all in a real registry."""
    workdir = tmp_path_factory.mktemp("attesting")
    keys = {kind: new_key(kind) for kind in KEY_KINDS}
    keys_dir = workdir / "keys"
    keys_dir.mkdir()
    for kind, key in keys.items():
        write_public_key(key, keys_dir / f"{kind}.pub")
    repo = "tool-a/app"
    with run_registry(workdir / "registry", "htpasswd") as reg:
        layout = OciLayout(workdir / "layout")
        digests: dict[str, str] = {}

        def push(name: str, target: str) -> str:
            reg.push(layout, name, layers(name, 2), target)
            inspected = skopeo_inspect(f"{reg.host}/{target}", cert_dir=reg.cert_dir, credentials=reg.credentials)
            digests[target] = inspected["Digest"]
            return str(inspected["Digest"])

        for name in EXPECTED:
            push(name, f"{repo}:{name}")
        bundled = push("bundle", "tool-b/app:bundle")

        def digest(tag: str) -> str:
            return digests[f"{repo}:{tag}"]

        def attest(tag: str, *envelopes: dict[str, Any]) -> None:
            push_attestation_tag(reg, repo, digest(tag), list(envelopes))

        def subject(tag: str) -> dict[str, Any]:
            body = reg.get_manifest(repo, digest(tag))
            return image_descriptor(digest(tag), len(json.dumps(body).encode()))

        p256 = keys["p256"]
        attest("v02", dsse_envelope([p256], slsa_v02_statement(digest("v02"))))
        attest("v1", dsse_envelope([keys["ed25519"]], slsa_v1_statement(digest("v1"))))
        attest("p384", dsse_envelope([keys["p384"]], slsa_v02_statement(digest("p384"))))
        attest("rsa", dsse_envelope([keys["rsa"]], slsa_v1_statement(digest("rsa"))))
        # an SBOM beside the provenance, as cosign appends layers: skipped by its predicateType
        sbom = {"_type": "https://in-toto.io/Statement/v1", "predicateType": "https://spdx.dev/Document"}
        attest(
            "two-layers", dsse_envelope([p256], sbom), dsse_envelope([p256], slsa_v1_statement(digest("two-layers")))
        )
        attest(
            "sbom-only", dsse_envelope([p256], {**sbom, "subject": [{"digest": {"sha256": digest("sbom-only")[7:]}}]})
        )
        # genuine and signed by the right key, but about another image (copied beside this one)
        attest("other-digest", dsse_envelope([p256], slsa_v1_statement(digest("v1"))))
        attest("wrong-key", dsse_envelope([new_key()], slsa_v1_statement(digest("wrong-key"))))
        # a private build's signature under the payload of another envelope (a public build of this image)
        private_build = dsse_envelope([p256], slsa_v1_statement(digest("swapped"), source=PRIVATE))
        public_build = dsse_envelope([new_key()], slsa_v1_statement(digest("swapped")))
        attest("swapped", {**private_build, "payload": public_build["payload"]})
        attest("builder", dsse_envelope([p256], slsa_v1_statement(digest("builder"), builder=GITHUB_ACTIONS)))
        attest("private", dsse_envelope([p256], slsa_v02_statement(digest("private"), source=PRIVATE)))
        # the OCI 1.1 layout: DSSE envelopes as referrers, here through the fallback tag
        for tag, source in (("referrer", None), ("referrer-private", PRIVATE)):
            statement = slsa_v1_statement(digest(tag), **({"source": source} if source else {}))
            envelope = dsse_envelope([keys["rsa"]], statement)
            push_referrer_fallback(reg, repo, subject(tag), DSSE_ENVELOPE, dsse_layers(reg, repo, [envelope]))
        # the v02 image is signed too: signatures and attestations are checked side by side
        payload = simple_signing_payload(f"{reg.host}/{repo}", digest("v02"))
        push_signature_tag(reg, repo, digest("v02"), [Signature(payload, sign(p256, payload))])
        # a real Sigstore bundle with SLSA provenance (GitHub Actions'), whose subject is a.txt, not this image
        bundle = (CONFORMANCE / "happy-path-intoto-in-dsse-v3" / "bundle.sigstore.json").read_bytes()
        body = reg.get_manifest("tool-b/app", bundled)
        push_referrer_fallback(
            reg,
            "tool-b/app",
            image_descriptor(bundled, len(json.dumps(body).encode())),
            BUNDLE_V03,
            [{"mediaType": BUNDLE_V03, **reg.put_blob("tool-b/app", bundle)}],
        )
        yield Images(reg, digests, keys_dir)


RULES = """
    - images: ["{host}/tool-a"]
      keys: [keys/p256.pub, keys/p384.pub, keys/rsa.pub, keys/ed25519.pub]
      builderIds: ["https://tekton.dev/chains/v2"]
      buildTypes: ["tekton.dev/v1beta1/TaskRun", "https://tekton.dev/chains/v2/slsa"]
      sources: ["https://gitlab.wikimedia.org/**", "https://github.com/**"]
    - images: ["{host}/tool-b"]
      identities:
        - {{issuer: "{issuer}", subject: "{subject}"}}
      sources: ["https://github.com/**"]
"""


def write_policy(images: Images, tmp_path: Path, rules: str = "", *, extra: str = "", more: str = "") -> Path:
    """A policy beside the keys: key paths are written relative to it, as a deployment mounts them."""
    config = images.registry.docker_config(tmp_path / "config.json")
    (tmp_path / "keys").mkdir(exist_ok=True)
    for key in images.keys_dir.iterdir():
        (tmp_path / "keys" / key.name).write_bytes(key.read_bytes())
    host = images.registry.host
    rules = rules or RULES.format(host=host, issuer=GITHUB_ISSUER, subject=BEACON)
    path = tmp_path / "policy.yaml"
    path.write_text(
        f"""{POLICY_HEADER}trusted: ["{host}/tool-a", "{host}/tool-b"]
registry: {{caFile: {images.registry.tls.ca_cert}, credentialsFile: {config}, {UNHURRIED}}}
attestations:
{extra}  rules:{rules}
{more}"""
    )
    return path


def test_attestations_decide_admission(images: Images, tmp_path: Path) -> None:
    policy = write_policy(images, tmp_path)
    tags = list(EXPECTED)
    decisions, gate = decide_all(policy, [images.ref(f"tool-a/app:{tag}") for tag in tags])
    for tag, decision in zip(tags, decisions, strict=True):
        expected = EXPECTED[tag]
        if expected is None:
            assert decision.allowed, (tag, decision.message())
            assert decision.findings == ()
        else:
            assert not decision.allowed, tag
            (finding,) = decision.violations
            assert finding.rule == "attestation-mismatch"
            assert expected in finding.message, (tag, finding.message)
            assert "attestations.rules[0]" in finding.message
    found = dict(zip(tags, decisions, strict=True))
    assert images.digests["tool-a/app:unattested"][:19] in found["unattested"].violations[0].message
    assert "referrers tag sha256-" in found["referrer-private"].violations[0].message
    assert ".att, layer" in found["private"].violations[0].message
    # one verification per envelope layer read (the SBOM layers are skipped unread)
    assert gate.attestations.verifications == len(EXPECTED) - 2


def test_keyless_bundle_through_the_referrers_fallback(images: Images, tmp_path: Path) -> None:
    """A real public-good bundle with SLSA provenance is fetched through the fallback tag and verified offline;
    its statement is about a.txt, so it is denied for that, not for its certificate or log entry."""
    (decision,), gate = decide_all(write_policy(images, tmp_path), [images.ref("tool-b/app:bundle")])
    (finding,) = decision.violations
    assert finding.rule == "attestation-mismatch"
    about = "sha256:" + hashlib.sha256((CONFORMANCE / "a.txt").read_bytes()).hexdigest()
    assert f"the statement is about another image: its subjects are {about}, not " in finding.message
    assert f"(signed by {BEACON} (issuer {GITHUB_ISSUER}))" in finding.message
    assert "referrers tag sha256-" in finding.message
    assert gate.attestations.verifications == 1


def test_one_wording_for_a_statement_about_another_image() -> None:
    """The same statement (the bundle's own, about a.txt) signed by a key and in a Sigstore bundle,
    judged for another image: one message, but for who signed it."""
    verifier = bundle_verifier(trusted_root_file(load_policy(POLICY_HEADER).signatures, None))
    document = (CONFORMANCE / "happy-path-intoto-in-dsse-v3" / "bundle.sigstore.json").read_bytes()
    image = "sha256:" + "ab" * 32
    by_bundle = bundle_evidence(verifier, document, image, "referrers tag")
    statement = base64.b64decode(json.loads(document)["dsseEnvelope"]["payload"])
    key = new_key()
    keys = {"build.pub": load_public_key(public_pem(key), "build.pub")}
    envelope = json.dumps(dsse_envelope([key], statement)).encode()
    (by_key,) = envelope_evidence(keys, envelope, image, "tag sha256-ab.att", {})
    assert by_bundle is not None and by_bundle.problem is not None and by_key.problem is not None
    about = "sha256:" + hashlib.sha256((CONFORMANCE / "a.txt").read_bytes()).hexdigest()
    message = f"the statement is about another image: its subjects are {about}, not {image}"
    assert by_key.problem == f"{message} (signed by build.pub)"
    assert by_bundle.problem == f"{message} (signed by {BEACON} (issuer {GITHUB_ISSUER}))"


def test_a_bundle_s_provenance_is_read_and_judged() -> None:
    """The same bundle, for the digest it attests (a.txt's): its GitHub Actions provenance is read from the
    verified statement, and judged by the rule's builders and forges."""
    verifier = bundle_verifier(trusted_root_file(load_policy(POLICY_HEADER).signatures, None))
    document = (CONFORMANCE / "happy-path-intoto-in-dsse-v3" / "bundle.sigstore.json").read_bytes()
    digest = "sha256:" + hashlib.sha256((CONFORMANCE / "a.txt").read_bytes()).hexdigest()
    evidence = bundle_evidence(verifier, document, digest, "referrers tag")
    assert evidence is not None and evidence.problem is None and evidence.provenance is not None
    assert evidence.provenance.sources == ("https://github.com/loosebazooka/aa-test",)
    rules = f"""attestations:
  rules:
    - images: [r.example/a]
      identities: [{{issuer: "{GITHUB_ISSUER}", subject: "{BEACON}"}}]
      sources: ["https://github.com/**"]
    - images: [r.example/a]
      identities: [{{issuer: "{GITHUB_ISSUER}", subject: "{BEACON}"}}]
      builderIds: ["https://tekton.dev/chains/v2"]
      sources: ["https://gitlab.wikimedia.org/**"]
"""
    from imagegate.core.attestations import judge_attestation  # noqa: PLC0415

    github, toolforge = load_policy(POLICY_HEADER + rules).attestations.rules
    assert judge_attestation(github, digest, [evidence]).ok
    denied = judge_attestation(toolforge, digest, [evidence]).detail
    assert "not by an allowed builder (https://tekton.dev/chains/v2)" in denied
    assert "source https://github.com/loosebazooka/aa-test is not a repository on an allowed forge" in denied


def test_verified_once_per_digest_and_pinned_to_it(images: Images, tmp_path: Path) -> None:
    """200 admissions of 5 images: each attestation fetched and verified once; the pin is the digest verified."""
    policy = write_policy(images, tmp_path, more="pinning: {enabled: true}\n")
    tags = ["v02", "v1", "p384", "rsa", "referrer"]
    decisions, gate = decide_all(policy, [images.ref(f"tool-a/app:{tag}") for tag in tags] * 40, pins=True)
    assert all(d.allowed for d in decisions), [d.message() for d in decisions if not d.allowed][:1]
    assert gate.attestations.verifications == 5
    for tag, decision in zip(tags, decisions, strict=False):
        (patch,) = decision.patches
        assert patch["value"].endswith("@" + images.digests[f"tool-a/app:{tag}"])


def test_signatures_and_attestations_side_by_side(images: Images, tmp_path: Path) -> None:
    """Both sections over one image, one registry client: each checker its own evidence, one settle."""
    host = images.registry.host
    signatures = f'signatures:\n  rules: [{{images: ["{host}/tool-a"], keys: [keys/p256.pub]}}]\n'
    policy = write_policy(images, tmp_path, more=signatures)
    (signed, unsigned), gate = decide_all(policy, [images.ref("tool-a/app:v02"), images.ref("tool-a/app:v1")])
    assert signed.allowed and signed.findings == (), signed.message()
    (finding,) = unsigned.violations  # attested, not signed
    assert finding.rule == "signature-mismatch" and "no signature found" in finding.message
    assert gate.signatures.verifications == 1 and gate.attestations.verifications == 2


@pytest.mark.parametrize(("on_error", "allowed"), [("deny", False), ("allow", True)])
def test_registry_error_follows_on_error(images: Images, tmp_path: Path, on_error: str, allowed: bool) -> None:
    policy = write_policy(images, tmp_path, extra=f"  onError: {on_error}\n")
    (decision,), _ = decide_all(policy, [images.ref("tool-a/app:does-not-exist")])
    assert decision.allowed is allowed
    if not allowed:
        assert "attestations not verified: registry error (no such tag or repository (HTTP 404))" in decision.message()
        assert f"attestations.rules[0] onError: {on_error}" in decision.message()


def test_warn_mode_admits_with_a_warning(images: Images, tmp_path: Path) -> None:
    policy = write_policy(images, tmp_path, extra="  mode: warn\n")
    (decision,), _ = decide_all(policy, [images.ref("tool-a/app:builder")])
    assert decision.allowed
    (warning,) = decision.warnings
    assert warning.rule == "attestation-mismatch" and "not by an allowed builder" in warning.message


def test_unreadable_key_fails_closed(images: Images, tmp_path: Path) -> None:
    host = images.registry.host
    rules = f"""
    - images: ["{host}/tool-a"]
      keys: [keys/missing.pub]
      onError: allow
"""
    (decision,), _ = decide_all(write_policy(images, tmp_path, rules), [images.ref("tool-a/app:v02")])
    assert not decision.allowed
    assert "attestations not verified (attestations.rules[0]): cannot read the public key" in decision.message()
    assert "missing.pub" in decision.message()


def test_webhook_and_check_show_the_reasons(images: Images, tmp_path: Path) -> None:
    """/validate and ``check --registry``, as the API server and an operator see them."""
    from tests.webhook_process import validate_each  # noqa: PLC0415

    policy = write_policy(images, tmp_path)
    tags = ("v02", "referrer", "swapped", "other-digest", "private", "builder", "wrong-key")
    answers = validate_each(tmp_path, policy, {tag: pod(images.ref(f"tool-a/app:{tag}")) for tag in tags}, "tool-a")
    for tag in tags:
        expected = EXPECTED[tag]
        if expected is None:
            assert answers[tag]["allowed"] is True, answers[tag]
        else:
            assert answers[tag]["allowed"] is False
            message = answers[tag]["status"]["message"]
            assert expected in message and "attestations.rules[0]" in message, answers[tag]
    pods = json.dumps(
        {
            "kind": "List",
            "items": [pod(images.ref("tool-a/app:v1"), "good"), pod(images.ref("tool-a/app:private"), "bad")],
        }
    )
    offline = run_imagegate("check", "-", "-p", str(policy), "-o", "json", stdin=pods)
    assert [o["violations"][0]["rule"] for o in json.loads(offline.stdout)["objects"]] == ["attestation-unverified"] * 2
    online = run_imagegate("check", "-", "-p", str(policy), "-o", "json", "--registry", stdin=pods)
    assert online.returncode == 1, online.stderr
    good, bad = json.loads(online.stdout)["objects"]
    assert good["allowed"] is True
    assert bad["violations"][0]["rule"] == "attestation-mismatch"
    assert "is not a repository on an allowed forge" in bad["violations"][0]["message"]
