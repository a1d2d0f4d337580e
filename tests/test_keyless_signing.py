"""Keyless signatures, made by the tests' own Sigstore instance and verified offline against its
trusted root, end to end through a real registry (docker-registry 2.8, no referrers API): in
cosign's tag scheme (the certificate and bundle annotations) and as Sigstore bundles (v0.1, v0.3)
through the referrers fallback tag."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from imagegate.core.signatures import PayloadError
from imagegate.shell.registry.artifacts import COSIGN_SIGNATURE_ARTIFACT
from imagegate.shell.registry.signing import bundle_verifier
from imagegate.shell.registry.sigstore_adapter import tag_scheme_bundle, verify_keyless_signature
from tests.conftest import POLICY_HEADER, run_imagegate
from tests.oci_images import OciLayout, layers, skopeo_inspect
from tests.registry_process import UNHURRIED, Registry, run_registry
from tests.signed_images import (
    Signature,
    image_descriptor,
    new_key,
    push_referrer_fallback,
    push_signature_tag,
    sig_layers,
    sign,
    simple_signing_payload,
    write_public_key,
)
from tests.sigstore_instance import (
    BUNDLE_ANNOTATION,
    BUNDLE_V01,
    CERTIFICATE_ANNOTATION,
    SIGNATURE_ANNOTATION,
    KeylessSignature,
    SigstoreInstance,
    canonical_json,
    pem,
    proto_names,
    protobuf_json,
)
from tests.test_signing import decide_all, pod

ISSUER = "https://gitlab.wikimedia.org"
BUILDER = "https://gitlab.wikimedia.org/repos/cloud/toolforge/builds-builder//.gitlab-ci.yml@refs/heads/main"
OTHER_ISSUER = "https://token.actions.githubusercontent.com"
NOW = dt.datetime.now(dt.UTC)

# image tag -> the words its denial must say (None: admitted)
EXPECTED: dict[str, str | None] = {
    "keyless": None,
    "referrer": None,
    "other-subject": f"certificate identity mismatch: signed by https://gitlab.wikimedia.org/mallory/x (issuer {ISSUER})",
    "other-issuer": f"certificate identity mismatch: signed by {BUILDER} (issuer {OTHER_ISSUER})",
    "expired": "certificate expired at signing time",
    # a genuine entry whose integrated time was moved two hours on: its promise no longer holds
    # (the certificate is not valid then either, but that time was never vouched for)
    "edited-time": "tlog entry missing or invalid: invalid log entry: SET: invalid inclusion promise",
    "unlogged": "tlog entry missing: the signature carries no dev.sigstore.cosign/bundle annotation",
    "other-rekor": "tlog entry missing or invalid: invalid log entry: SET: invalid inclusion promise",
    "other-entry": "tlog entry missing or invalid: transparency log entry is inconsistent with other materials",
    "other-digest": "payload for another digest",
    "other-ca": "the certificate is not issued by the trusted root's CA",
    "altered": "signed by another key: the certificate's key does not verify it",
    # signed with a key, carrying that key's certificate from another CA and no log entry
    "key-with-certificate": "tlog entry missing: the signature carries no dev.sigstore.cosign/bundle annotation",
    # Sigstore bundles of the same instance, through the referrers fallback tag
    "bundle-v0.3": None,
    "bundle-v0.1": None,
    # the first entry of a new log (index 0, tree size 1, no hashes) as protobuf JSON writes it:
    # zero fields omitted; then under the proto field names, with integers as JSON numbers
    "bundle-one-entry": None,
    "bundle-proto-names": None,
    "bundle-other-digest": "payload for another digest (the bundle signs sha256:",
    "bundle-checkpoint": "tlog entry missing or invalid: invalid log entry: checkpoint: invalid signature",
    "bundle-edited-time": "tlog entry missing or invalid: invalid log entry: SET: invalid inclusion promise",
}


@dataclasses.dataclass
class KeylessImages:
    registry: Registry
    sigstore: SigstoreInstance
    trusted_root: Path
    digests: dict[str, str]  # tag -> digest, in tool-k/app
    key: ec.EllipticCurvePrivateKey  # the key that signed key-with-certificate

    def ref(self, tag: str) -> str:
        return f"{self.registry.host}/tool-k/app:{tag}"


def attach_bundles(reg: Registry, sigstore: SigstoreInstance, repo: str, digests: dict[str, str]) -> None:
    """The ``bundle-*`` images' Sigstore bundles, each through the referrers fallback tag."""

    def attach_bundle(tag: str, document: dict[str, object]) -> None:
        kind = str(document.get("mediaType", document.get("media_type")))
        manifest = reg.get_manifest(repo, digests[tag])
        push_referrer_fallback(
            reg,
            repo,
            image_descriptor(digests[tag], len(json.dumps(manifest).encode())),
            kind,
            [{"mediaType": kind, **reg.put_blob(repo, json.dumps(document).encode())}],
        )

    attach_bundle("bundle-v0.3", sigstore.bundle(digests["bundle-v0.3"], subject=BUILDER, issuer=ISSUER))
    attach_bundle(
        "bundle-v0.1",
        sigstore.bundle(digests["bundle-v0.1"], subject=BUILDER, issuer=ISSUER, media_type=BUNDLE_V01),
    )
    first = sigstore.bundle(digests["bundle-one-entry"], subject=BUILDER, issuer=ISSUER, one_entry=True)
    written = protobuf_json(first)
    proof = written["verificationMaterial"]["tlogEntries"][0]["inclusionProof"]
    assert "logIndex" not in written["verificationMaterial"]["tlogEntries"][0]
    assert "logIndex" not in proof and "hashes" not in proof and proof["treeSize"] == "1"
    attach_bundle("bundle-one-entry", written)
    attach_bundle(
        "bundle-proto-names",
        proto_names(
            protobuf_json(
                sigstore.bundle(digests["bundle-proto-names"], subject=BUILDER, issuer=ISSUER, one_entry=True)
            )
        ),
    )
    edited_bundle = sigstore.bundle(digests["bundle-edited-time"], subject=BUILDER, issuer=ISSUER)
    logged_entry = edited_bundle["verificationMaterial"]["tlogEntries"][0]
    logged_entry["integratedTime"] = str(int(logged_entry["integratedTime"]) + 7200)
    attach_bundle("bundle-edited-time", edited_bundle)
    attach_bundle("bundle-other-digest", sigstore.bundle(digests["keyless"], subject=BUILDER, issuer=ISSUER))
    spoiled_log = ec.generate_private_key(ec.SECP256R1())
    attach_bundle(
        "bundle-checkpoint",
        sigstore.bundle(digests["bundle-checkpoint"], subject=BUILDER, issuer=ISSUER, checkpoint_key=spoiled_log),
    )


@pytest.fixture(scope="module")
def keyless(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeylessImages]:
    """One image per way of being signed keyless (or spoiled): in the tag scheme, but ``referrer``
    (cosign's signature artifact) and ``bundle-*`` (Sigstore bundles) through the fallback tag."""
    workdir = tmp_path_factory.mktemp("keyless")
    sigstore = SigstoreInstance.create()
    trusted_root = sigstore.write_trusted_root(workdir / "trusted_root.json")
    repo = "tool-k/app"
    with run_registry(workdir / "registry", "htpasswd") as reg:
        layout = OciLayout(workdir / "layout")
        digests: dict[str, str] = {}
        for tag in EXPECTED:
            reg.push(layout, tag, layers(f"keyless-{tag}", 2), f"{repo}:{tag}")
            found = skopeo_inspect(f"{reg.host}/{repo}:{tag}", cert_dir=reg.cert_dir, credentials=reg.credentials)
            digests[tag] = found["Digest"]

        def payload(tag: str) -> bytes:
            return simple_signing_payload(f"{reg.host}/{repo}", digests[tag])

        def attach(tag: str, signed: KeylessSignature, body: bytes | None = None) -> None:
            layer = Signature(body or payload(tag), signed.signature, signed.annotations())
            push_signature_tag(reg, repo, digests[tag], [layer])

        def by_builder(tag: str, **options: object) -> KeylessSignature:
            return sigstore.sign_keyless(payload(tag), subject=BUILDER, issuer=ISSUER, **options)  # type: ignore[arg-type]

        attach("keyless", by_builder("keyless"))
        attach(
            "other-subject",
            sigstore.sign_keyless(payload("other-subject"), subject=f"{ISSUER}/mallory/x", issuer=ISSUER),
        )
        attach("other-issuer", sigstore.sign_keyless(payload("other-issuer"), subject=BUILDER, issuer=OTHER_ISSUER))
        # a certificate valid ten minutes, two hours ago; logged an hour later
        attach(
            "expired",
            by_builder("expired", signed_at=NOW - dt.timedelta(hours=2), integrated=NOW - dt.timedelta(hours=1)),
        )
        attach("unlogged", by_builder("unlogged", logged=False))
        edited = by_builder("edited-time")
        assert edited.bundle is not None
        moved = {**edited.bundle["Payload"], "integratedTime": edited.bundle["Payload"]["integratedTime"] + 7200}
        attach("edited-time", dataclasses.replace(edited, bundle={**edited.bundle, "Payload": moved}))
        attach("other-rekor", by_builder("other-rekor", rekor_key=ec.generate_private_key(ec.SECP256R1())))
        # a genuine log entry, of another signature
        spoiled = by_builder("other-entry")
        attach("other-entry", dataclasses.replace(spoiled, bundle=by_builder("other-entry").bundle))
        # signed by the builder, naming another image's digest
        other = payload("keyless")
        attach("other-digest", sigstore.sign_keyless(other, subject=BUILDER, issuer=ISSUER), other)
        attach("other-ca", SigstoreInstance.create().sign_keyless(payload("other-ca"), subject=BUILDER, issuer=ISSUER))
        altered = by_builder("altered")
        attach("altered", altered, payload("altered").replace(b'"optional": null', b'"optional": {"by": "mallory"}'))
        key = ec.generate_private_key(ec.SECP256R1())
        certified = SigstoreInstance.create().certificate(key, subject=BUILDER, issuer=ISSUER, not_before=NOW)
        body = payload("key-with-certificate")
        annotations = {
            SIGNATURE_ANNOTATION: base64.b64encode(sign(key, body)).decode(),
            CERTIFICATE_ANNOTATION: pem(certified),
        }
        push_signature_tag(reg, repo, digests["key-with-certificate"], [Signature(body, b"", annotations)])
        # cosign's OCI 1.1 layout: the signature manifest as a referrer, through the fallback tag
        referrer = digests["referrer"]
        manifest = reg.get_manifest(repo, referrer)
        signed = by_builder("referrer")
        push_referrer_fallback(
            reg,
            repo,
            image_descriptor(referrer, len(json.dumps(manifest).encode())),
            COSIGN_SIGNATURE_ARTIFACT,
            sig_layers(reg, repo, [Signature(payload("referrer"), signed.signature, signed.annotations())]),
        )

        attach_bundles(reg, sigstore, repo, digests)
        yield KeylessImages(reg, sigstore, trusted_root, digests, key)


def write_policy(keyless: KeylessImages, tmp_path: Path, *, trusted_root: bool = True, rules: str = "") -> Path:
    registry = keyless.registry
    config = registry.docker_config(tmp_path / "config.json")
    (tmp_path / "sigstore").mkdir(exist_ok=True)
    (tmp_path / "sigstore" / "trusted_root.json").write_bytes(keyless.trusted_root.read_bytes())
    rules = (
        rules
        or f"""
    - images: ["{registry.host}/tool-k"]
      identities:
        - {{issuer: "{ISSUER}", subject: "{BUILDER}"}}
"""
    )
    root = "  trustedRoot: sigstore/trusted_root.json\n" if trusted_root else ""
    path = tmp_path / "policy.yaml"
    path.write_text(
        f"""{POLICY_HEADER}trusted: ["{registry.host}/tool-k"]
registry: {{caFile: {registry.tls.ca_cert}, credentialsFile: {config}, {UNHURRIED}}}
signatures:
{root}  rules:{rules}
"""
    )
    return path


def test_keyless_signatures_decide_admission(keyless: KeylessImages, tmp_path: Path) -> None:
    """Each way a keyless signature is spoiled is denied for what it is; a good one is admitted."""
    tags = list(EXPECTED)
    decisions, gate = decide_all(write_policy(keyless, tmp_path), [keyless.ref(tag) for tag in tags])
    for tag, decision in zip(tags, decisions, strict=True):
        expected = EXPECTED[tag]
        if expected is None:
            assert decision.allowed, (tag, decision.message())
            assert decision.findings == ()
            continue
        assert not decision.allowed, tag
        (finding,) = decision.violations
        assert finding.rule == "signature-mismatch", (tag, finding)
        assert expected in finding.message, (tag, finding.message)
        assert "signatures.rules[0] needs 1 signature" in finding.message
    assert gate.signatures.verifications == len(tags)


def test_subject_pattern_and_count(keyless: KeylessImages, tmp_path: Path) -> None:
    """A subjectRegExp matches the builder; two identities cannot both be met by one signature."""
    host = keyless.registry.host
    rules = f"""
    - images: ["{host}/tool-k/app"]
      identities:
        - {{issuer: "{ISSUER}", subjectRegExp: "https://gitlab.wikimedia.org/repos/cloud/toolforge/.+"}}
    - images: ["{host}/tool-k/app"]
      identities:
        - {{issuer: "{ISSUER}", subject: "{BUILDER}"}}
        - {{issuer: "{OTHER_ISSUER}", subject: "{BUILDER}"}}
      count: 2
"""
    (decision,), _ = decide_all(write_policy(keyless, tmp_path, rules=rules), [keyless.ref("keyless")])
    (finding,) = decision.violations
    assert "signatures.rules[1] needs 2 signatures" in finding.message and "1 of 2 found" in finding.message
    assert "signatures.rules[0]" not in finding.message


def test_the_public_good_root_does_not_trust_this_instance(keyless: KeylessImages, tmp_path: Path) -> None:
    """Without ``trustedRoot`` the public-good root applies: the tests' CA is not Fulcio's."""
    (decision,), _ = decide_all(write_policy(keyless, tmp_path, trusted_root=False), [keyless.ref("keyless")])
    assert "the certificate is not issued by the trusted root's CA" in decision.violations[0].message


def test_keyless_signature_under_a_keys_only_policy(keyless: KeylessImages, tmp_path: Path) -> None:
    write_public_key(new_key(), tmp_path / "build.pub")
    rules = f"""
    - images: ["{keyless.registry.host}/tool-k"]
      keys: [build.pub]
"""
    (decision,), _ = decide_all(write_policy(keyless, tmp_path, rules=rules), [keyless.ref("keyless")])
    message = decision.violations[0].message
    assert "a keyless signature (a certificate), and no rule names an identity" in message


def test_a_key_verifies_a_layer_with_its_certificate(keyless: KeylessImages, tmp_path: Path) -> None:
    """A certificate that does not verify keyless leaves the layer to the keys (cosign sign --key --certificate)."""
    write_public_key(keyless.key, tmp_path / "build.pub")
    host = keyless.registry.host
    rules = f"""
    - images: ["{host}/tool-k/app"]
      keys: [build.pub]
    - images: ["{host}/tool-k/other"]
      identities:
        - {{issuer: "{ISSUER}", subject: "{BUILDER}"}}
"""
    images = [keyless.ref("key-with-certificate"), keyless.ref("keyless")]
    (by_key, keyless_only), _ = decide_all(write_policy(keyless, tmp_path, rules=rules), images)
    assert by_key.allowed and by_key.findings == (), by_key.message()
    # a good keyless signature is no signature by the rule's key
    assert f"certificate identity mismatch: signed by {BUILDER}" in keyless_only.violations[0].message


def test_webhook_shows_the_reasons(keyless: KeylessImages, tmp_path: Path) -> None:
    """/validate and ``check --registry``, as the API server and an operator see them."""
    from tests.webhook_process import validate_each  # noqa: PLC0415

    tags = (
        "keyless",
        "referrer",
        "bundle-v0.3",
        "bundle-one-entry",
        "other-subject",
        "expired",
        "unlogged",
        "other-rekor",
        "other-digest",
    )
    policy = write_policy(keyless, tmp_path)
    answers = validate_each(tmp_path, policy, {tag: pod(keyless.ref(tag)) for tag in tags}, "tool-a")
    for tag in tags:
        expected = EXPECTED[tag]
        if expected is None:
            assert answers[tag]["allowed"] is True, answers[tag]
        else:
            assert answers[tag]["allowed"] is False, tag
            assert expected in answers[tag]["status"]["message"], answers[tag]
    pods = json.dumps(
        {"kind": "List", "items": [pod(keyless.ref("keyless"), "good"), pod(keyless.ref("expired"), "bad")]}
    )
    checked = run_imagegate("check", "-", "-p", str(policy), "-o", "json", "--registry", stdin=pods)
    assert checked.returncode == 1, checked.stderr
    good, bad = json.loads(checked.stdout)["objects"]
    assert good["allowed"] is True, good
    assert bad["violations"][0]["rule"] == "signature-mismatch"
    assert "certificate expired at signing time" in bad["violations"][0]["message"]


# --- the tag-scheme layer as a Sigstore bundle, without a registry ------------------------------------


@pytest.fixture(scope="module")
def instance() -> SigstoreInstance:
    return SigstoreInstance.create()


DIGEST = "sha256:" + "ab" * 32
PAYLOAD = simple_signing_payload("registry.example/tool-k/app", DIGEST)


def verify(instance: SigstoreInstance, tmp_path: Path, annotations: dict[str, str]) -> tuple[str, str]:
    verifier = bundle_verifier(instance.write_trusted_root(tmp_path / "trusted_root.json"))
    return verify_keyless_signature(verifier, PAYLOAD, annotations, DIGEST)


def test_an_email_subject(instance: SigstoreInstance, tmp_path: Path) -> None:
    signed = instance.sign_keyless(PAYLOAD, subject="builder@toolforge.org", issuer=ISSUER)
    assert verify(instance, tmp_path, signed.annotations()) == (ISSUER, "builder@toolforge.org")


def _wrap(text: str, width: int = 64) -> str:
    return "\r\n".join(text[i : i + width] for i in range(0, len(text), width)) + "\n"


def test_the_bundle_annotation_is_read_as_cosign_reads_it(instance: SigstoreInstance, tmp_path: Path) -> None:
    """Go's encoding/json fills cosign's RekorBundle: keys match case-insensitively, the last of a
    repeated key wins; so an annotation cosign verifies verifies here."""
    signed = instance.sign_keyless(PAYLOAD, subject=BUILDER, issuer=ISSUER)
    assert signed.bundle is not None
    payload = signed.bundle["Payload"]
    spelled = (
        '{"signedEntryTimestamp": "'
        + signed.bundle["SignedEntryTimestamp"]
        + '", "PAYLOAD": {"logIndex": -5, '
        + ", ".join(f"{json.dumps(k.upper() if k == 'body' else k)}: {json.dumps(v)}" for k, v in payload.items())
        + "}}"
    )
    annotations = {**signed.annotations(), BUNDLE_ANNOTATION: spelled}
    assert verify(instance, tmp_path, annotations) == (ISSUER, BUILDER)


def test_a_log_entry_of_a_type_sigstore_python_does_not_verify_is_named(
    instance: SigstoreInstance, tmp_path: Path
) -> None:
    """An entry of a legacy type (rekord 0.0.1, which older cosign wrote), its promise genuine: the
    denial names the type, and keeps the library's words."""
    signed = instance.sign_keyless(PAYLOAD, subject=BUILDER, issuer=ISSUER)
    assert signed.bundle is not None
    body = json.loads(base64.b64decode(signed.bundle["Payload"]["body"]))
    promised = {**signed.bundle["Payload"], "body": base64.b64encode(json.dumps({**body, "kind": "rekord"}).encode())}
    promised["body"] = promised["body"].decode()
    promise = instance.rekor_key.sign(canonical_json(promised), ec.ECDSA(hashes.SHA256()))
    logged = {"SignedEntryTimestamp": base64.b64encode(promise).decode(), "Payload": promised}
    annotations = {**signed.annotations(), BUNDLE_ANNOTATION: json.dumps(logged)}
    with pytest.raises(PayloadError) as raised:
        verify(instance, tmp_path, annotations)
    assert str(raised.value) == (
        "tlog entry missing or invalid: unsupported log entry type rekord 0.0.1 "
        "(sigstore-python: Integrated time only supported for dsse/hashedrekord 0.0.1 types)"
    )


def test_line_wrapped_base64_verifies_as_cosign_reads_it(instance: SigstoreInstance, tmp_path: Path) -> None:
    """The signature annotation, and the body and signed entry timestamp of the bundle annotation,
    wrapped over lines: cosign decodes them with Go's StdEncoding, which skips newlines."""
    signed = instance.sign_keyless(PAYLOAD, subject=BUILDER, issuer=ISSUER)
    assert signed.bundle is not None
    logged = {
        "SignedEntryTimestamp": _wrap(signed.bundle["SignedEntryTimestamp"], 16),
        "Payload": {**signed.bundle["Payload"], "body": _wrap(signed.bundle["Payload"]["body"], 76)},
    }
    annotations = {
        **signed.annotations(),
        SIGNATURE_ANNOTATION: _wrap(base64.b64encode(signed.signature).decode(), 32),
        BUNDLE_ANNOTATION: json.dumps(logged),
    }
    assert verify(instance, tmp_path, annotations) == (ISSUER, BUILDER)
    spaced = {**annotations, SIGNATURE_ANNOTATION: annotations[SIGNATURE_ANNOTATION].replace("\r\n", " ", 1)}
    with pytest.raises(PayloadError, match=r"the signature annotation is not base64 \(' ' at character 33\)"):
        verify(instance, tmp_path, spaced)


def _with(annotations: dict[str, str], name: str, value: str | None) -> dict[str, str]:
    changed = {**annotations, name: value}
    return {k: v for k, v in changed.items() if v is not None}


@pytest.mark.parametrize(
    ("name", "value", "reason"),
    [
        (CERTIFICATE_ANNOTATION, "not a certificate", "the dev.sigstore.cosign/certificate annotation is not a PEM"),
        (CERTIFICATE_ANNOTATION, None, "the dev.sigstore.cosign/certificate annotation is not a PEM"),
        (BUNDLE_ANNOTATION, "{", "tlog entry missing or invalid: the dev.sigstore.cosign/bundle annotation is not"),
        (BUNDLE_ANNOTATION, "[]", "tlog entry missing or invalid: the dev.sigstore.cosign/bundle annotation is not"),
        (BUNDLE_ANNOTATION, '{"SignedEntryTimestamp": "", "Payload": {}}', "is not cosign's: Payload.body is not"),
        (BUNDLE_ANNOTATION, '{"Payload": {"integratedTime": 1.5}}', "is not cosign's: Payload: integratedTime:"),
        ("dev.cosignproject.cosign/signature", "%%%", "the signature annotation is not base64"),
    ],
)
def test_malformed_annotations_are_named(
    instance: SigstoreInstance, tmp_path: Path, name: str, value: str | None, reason: str
) -> None:
    signed = instance.sign_keyless(PAYLOAD, subject=BUILDER, issuer=ISSUER)
    with pytest.raises(PayloadError) as raised:
        verify(instance, tmp_path, _with(signed.annotations(), name, value))
    assert reason in str(raised.value)


@pytest.mark.parametrize(
    ("field", "value"),
    [("integratedTime", -1), ("integratedTime", "1"), ("logIndex", "1"), ("logID", "zz"), ("body", "e30=")],
)
def test_malformed_log_entries_are_named(instance: SigstoreInstance, field: str, value: object) -> None:
    signed = instance.sign_keyless(PAYLOAD, subject=BUILDER, issuer=ISSUER)
    assert signed.bundle is not None
    entry = {**signed.bundle, "Payload": {**signed.bundle["Payload"], field: value}}
    with pytest.raises(PayloadError, match="tlog entry missing or invalid"):
        tag_scheme_bundle(_with(signed.annotations(), BUNDLE_ANNOTATION, json.dumps(entry)))


def test_a_signed_entry_timestamp_over_other_times_fails(instance: SigstoreInstance, tmp_path: Path) -> None:
    """The integrated time is what the certificate's validity is judged at: it is covered by the promise."""
    signed = instance.sign_keyless(PAYLOAD, subject=BUILDER, issuer=ISSUER)
    assert signed.bundle is not None
    moved = signed.bundle["Payload"]["integratedTime"] + 60
    entry = {**signed.bundle, "Payload": {**signed.bundle["Payload"], "integratedTime": moved}}
    with pytest.raises(PayloadError, match="invalid inclusion promise"):
        verify(instance, tmp_path, _with(signed.annotations(), BUNDLE_ANNOTATION, json.dumps(entry)))
