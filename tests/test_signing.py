"""Signatures attached to images in a real registry (docker-registry 2.8: no referrers API)."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import datetime as dt
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from imagegate.core.decide import decide
from imagegate.core.policy import load_policy
from imagegate.core.questions import BaseQuestion, DigestQuestion, SignaturesQuestion
from imagegate.core.records import Answers, BaseImageVerdict, Webhook
from imagegate.core.reference import parse_docker_ref
from imagegate.shell.registry.answerers import answer, settle
from imagegate.shell.registry.artifacts import COSIGN_SIGNATURE_ARTIFACT, attached, fallback_tag, tag_for
from imagegate.shell.registry.auth import DockerConfigCredentials
from imagegate.shell.registry.client import RegistryClient, RegistrySettings
from imagegate.shell.registry.gate import RegistryGate
from tests.conftest import POLICY_HEADER, run_imagegate
from tests.oci_images import OciLayout, layers, skopeo_inspect
from tests.registry_process import UNHURRIED, UNHURRIED_CLIENT, Registry, run_registry
from tests.signed_images import (
    SIGNATURE_ANNOTATION,
    SIMPLE_SIGNING,
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

BUNDLE_V03 = "application/vnd.dev.sigstore.bundle.v0.3+json"


CONFORMANCE = Path(__file__).resolve().parents[2] / "shared" / "conformance" / "sigstore" / "bundle-verify"
KEY_KINDS = ("p256", "p384", "rsa", "ed25519")
BEACON = (
    "https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/.github/workflows/"
    "extremely-dangerous-oidc-beacon.yml@refs/heads/main"
)
GITHUB_ISSUER = "https://token.actions.githubusercontent.com"
# image tag -> how it is signed (see the fixture)
TAGS = (
    "signed",
    "unsigned",
    *KEY_KINDS,
    "rsa-pss",
    "referrer",
    "other-digest",
    "wrong-key",
    "swapped",
    "tampered",
    "fetch",
    "fetch-other",
    "fetch-third",
    "wrapped",
    "spaced",
)


@dataclasses.dataclass
class Images:
    registry: Registry
    digests: dict[str, str]  # repository:tag -> digest
    keys: dict[str, Any]
    keys_dir: Path

    def ref(self, name: str) -> str:
        return f"{self.registry.host}/{name}"


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Images]:
    """One image per way of being signed (or not), in both layouts, all in a real registry."""
    workdir = tmp_path_factory.mktemp("signing")
    keys = {kind: new_key(kind) for kind in KEY_KINDS}
    keys_dir = workdir / "keys"
    keys_dir.mkdir()
    for kind, key in keys.items():
        write_public_key(key, keys_dir / f"{kind}.pub")
    with run_registry(workdir / "registry", "htpasswd") as reg:
        layout = OciLayout(workdir / "layout")
        digests: dict[str, str] = {}
        for name in TAGS:
            reg.push(layout, name, layers(name, 2), f"tool-a/app:{name}")
        for name in TAGS:
            inspected = skopeo_inspect(
                f"{reg.host}/tool-a/app:{name}", cert_dir=reg.cert_dir, credentials=reg.credentials
            )
            digests[f"tool-a/app:{name}"] = inspected["Digest"]
        reg.push(layout, "keyless", layers("keyless", 2), "tool-b/app:bundle")
        inspected = skopeo_inspect(f"{reg.host}/tool-b/app:bundle", cert_dir=reg.cert_dir, credentials=reg.credentials)
        digests["tool-b/app:bundle"] = inspected["Digest"]

        def payload(tag: str, digest: str | None = None) -> bytes:
            return simple_signing_payload(f"{reg.host}/tool-a/app", digest or digests[f"tool-a/app:{tag}"])

        def signed(tag: str, key: Any, **options: Any) -> Signature:
            body = payload(tag)
            return Signature(body, sign(key, body, **options))

        repo = "tool-a/app"
        for kind in KEY_KINDS:
            push_signature_tag(reg, repo, digests[f"{repo}:{kind}"], [signed(kind, keys[kind])])
        push_signature_tag(reg, repo, digests[f"{repo}:signed"], [signed("signed", keys["p256"])])
        push_signature_tag(reg, repo, digests[f"{repo}:rsa-pss"], [signed("rsa-pss", keys["rsa"], pss=True)])
        # the signature annotation wrapped as OpenSSL writes base64 (64 columns, here CRLF), which
        # cosign and containers/image decode (Go's StdEncoding skips newlines); a space they refuse
        wrapped = signed("wrapped", keys["p384"])
        text = base64.b64encode(wrapped.signature).decode()
        lines = "\r\n".join(text[i : i + 64] for i in range(0, len(text), 64)) + "\n"
        assert "\n" in lines.strip()
        push_signature_tag(
            reg, repo, digests[f"{repo}:wrapped"], [Signature(wrapped.payload, b"", {SIGNATURE_ANNOTATION: lines})]
        )
        spaced = signed("spaced", keys["p256"])
        text = base64.b64encode(spaced.signature).decode()
        push_signature_tag(
            reg,
            repo,
            digests[f"{repo}:spaced"],
            [Signature(spaced.payload, b"", {SIGNATURE_ANNOTATION: f"{text[:8]} {text[8:]}"})],
        )
        # cosign's OCI 1.1 layout: the signature manifest is a referrer (here through the fallback tag)
        referrer = digests[f"{repo}:referrer"]
        body = reg.get_manifest(repo, referrer)
        push_referrer_fallback(
            reg,
            repo,
            image_descriptor(referrer, len(json.dumps(body).encode())),
            COSIGN_SIGNATURE_ARTIFACT,
            sig_layers(reg, repo, [signed("referrer", keys["p256"])]),
        )
        # signed by the right key, but naming another image's digest
        other = payload("other-digest", digests[f"{repo}:signed"])
        push_signature_tag(reg, repo, digests[f"{repo}:other-digest"], [Signature(other, sign(keys["p256"], other))])
        push_signature_tag(reg, repo, digests[f"{repo}:wrong-key"], [signed("wrong-key", new_key())])
        # the signature layer of another image, copied beside this one
        push_signature_tag(reg, repo, digests[f"{repo}:swapped"], [signed("signed", keys["p256"])])
        # a payload altered after signing
        good = signed("tampered", keys["p256"])
        altered = good.payload.replace(b'"optional": null', b'"optional": {"by": "mallory"}')
        assert altered != good.payload
        push_signature_tag(reg, repo, digests[f"{repo}:tampered"], [Signature(altered, good.signature)])
        # a real Sigstore bundle (public-good instance), which signs a.txt, not this image
        bundle = (CONFORMANCE / "happy-path-v0.3" / "bundle.sigstore.json").read_bytes()
        keyless = digests["tool-b/app:bundle"]
        body = reg.get_manifest("tool-b/app", keyless)
        push_referrer_fallback(
            reg,
            "tool-b/app",
            image_descriptor(keyless, len(json.dumps(body).encode())),
            BUNDLE_V03,
            [{"mediaType": BUNDLE_V03, **reg.put_blob("tool-b/app", bundle)}],
        )
        yield Images(reg, digests, keys, keys_dir)


def client(images: Images, tmp_path: Path) -> RegistryClient:
    credentials = DockerConfigCredentials.from_docker_config(images.registry.docker_config(tmp_path / "config.json"))
    return RegistryClient(
        RegistrySettings(ca_file=images.registry.tls.ca_cert, credentials=credentials, **UNHURRIED_CLIENT)
    )


def run(c: RegistryClient, call: Any) -> Any:
    async def go() -> Any:
        async with c:
            return await call(c)

    return asyncio.run(go())


def test_tag_names() -> None:
    digest = "sha256:" + "ab" * 32
    assert tag_for(digest, "sig") == "sha256-" + "ab" * 32 + ".sig"
    assert fallback_tag(digest) == "sha256-" + "ab" * 32


def test_attached_in_both_layouts(images: Images, tmp_path: Path) -> None:
    """The tag scheme and the referrers fallback index are both read, single flight, on a registry without the API."""
    reg = images.registry
    digest = images.digests["tool-a/app:fetch"]
    key = new_key()
    payload = simple_signing_payload(f"{reg.host}/tool-a/app", digest)
    push_signature_tag(reg, "tool-a/app", digest, [Signature(payload, sign(key, payload))])
    body = reg.get_manifest("tool-a/app", digest)
    assert body is not None
    subject = image_descriptor(digest, len(json.dumps(body)))
    bundle_layer = [{"mediaType": BUNDLE_V03, **reg.put_blob("tool-a/app", b'{"mediaType": "x"}')}]
    pushed = push_referrer_fallback(reg, "tool-a/app", subject, BUNDLE_V03, bundle_layer)
    # an artifact of another type, listed in the same index, is not read
    push_referrer_fallback(reg, "tool-a/app", subject, "application/vnd.example.sbom", bundle_layer)

    ref = parse_docker_ref(images.ref("tool-a/app:fetch"))
    c = client(images, tmp_path)

    async def both(c: RegistryClient) -> Any:
        calls = [attached(c, ref, digest, tag_suffix="sig", artifact_types=[BUNDLE_V03]) for _ in range(5)]
        return await asyncio.gather(*calls)

    results = run(c, both)
    assert all(r == results[0] for r in results)
    found = results[0]
    assert [a.found_by for a in found] == [f"tag {tag_for(digest, 'sig')}", f"referrers tag {fallback_tag(digest)}"]
    assert found[0].manifest.layers[0].media_type == SIMPLE_SIGNING
    assert found[1].digest == pushed and found[1].artifact_type == BUNDLE_V03
    assert c.fetches["referrers"] == 1  # five callers, one fetch: the registry has no API (404), so the tag

    unsigned = images.digests["tool-a/app:unsigned"]
    nothing = run(
        client(images, tmp_path),
        lambda c: attached(c, ref, unsigned, tag_suffix="sig", artifact_types=[BUNDLE_V03]),
    )
    assert nothing == ()


def test_fallback_entry_for_another_subject_is_ignored(images: Images, tmp_path: Path) -> None:
    """Whoever can push can write the fallback index: an artifact whose subject is another image is not this one's."""
    reg = images.registry
    digest = images.digests["tool-a/app:fetch-other"]
    other = images.digests["tool-a/app:fetch-third"]
    layer = sig_layers(reg, "tool-a/app", [Signature(b"{}", b"x")])
    artifact = push_referrer_fallback(reg, "tool-a/app", image_descriptor(other, 10), BUNDLE_V03, layer)
    index = reg.get_manifest("tool-a/app", fallback_tag(other))
    reg.put_manifest("tool-a/app", fallback_tag(digest), json.dumps(index).encode(), index["mediaType"])
    ref = parse_docker_ref(images.ref("tool-a/app:fetch-other"))
    found = run(
        client(images, tmp_path), lambda c: attached(c, ref, digest, tag_suffix=None, artifact_types=[BUNDLE_V03])
    )
    assert found == ()
    again = run(
        client(images, tmp_path), lambda c: attached(c, ref, other, tag_suffix=None, artifact_types=[BUNDLE_V03])
    )
    assert [a.digest for a in again] == [artifact]


# --- decisions: signatures verified through the registry ---------------------------------------


def write_policy(images: Images, tmp_path: Path, rules: str = "", *, extra: str = "") -> Path:
    """A policy beside the keys: key paths are written relative to it, as a deployment mounts them."""
    config = images.registry.docker_config(tmp_path / "config.json")
    (tmp_path / "keys").mkdir(exist_ok=True)
    for key in images.keys_dir.iterdir():
        (tmp_path / "keys" / key.name).write_bytes(key.read_bytes())
    host = images.registry.host
    rules = (
        rules
        or f"""
    - images: ["{host}/tool-a"]
      keys: [keys/p256.pub, keys/p384.pub, keys/rsa.pub, keys/ed25519.pub]
    - images: ["{host}/tool-b"]
      identities:
        - {{issuer: "{GITHUB_ISSUER}", subject: "{BEACON}"}}
"""
    )
    path = tmp_path / "policy.yaml"
    path.write_text(
        f"""{POLICY_HEADER}trusted: ["{host}/tool-a", "{host}/tool-b"]
registry: {{caFile: {images.registry.tls.ca_cert}, credentialsFile: {config}, {UNHURRIED}}}
signatures:
{extra}  rules:{rules}
"""
    )
    return path


def pod(image: str, name: str = "p") -> dict[str, Any]:
    return {
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "tool-a"},
        "spec": {"containers": [{"name": "app", "image": image}]},
    }


def decide_all(policy_path: Path, images_to_run: list[str], *, pins: bool = False) -> tuple[list[Any], RegistryGate]:
    policy = load_policy(policy_path.read_text(), str(policy_path))
    gate = RegistryGate(policy_path.parent)
    now = dt.datetime.now(dt.UTC)

    async def go() -> list[Any]:
        async def one(image: str) -> Any:
            def evaluate(answers: Answers) -> Any:
                return decide(policy, pod(image), namespace="tool-a", now=now, answers=answers)

            return await settle(
                gate, policy, evaluate, lambda d: d, webhook=Webhook.CHECK if pins else Webhook.VALIDATE
            )

        try:
            return list(await asyncio.gather(*(one(image) for image in images_to_run)))
        finally:
            await gate.aclose()

    return asyncio.run(go()), gate


# tag -> the words the denial must say (None: allowed)
EXPECTED: dict[str, str | None] = {
    "signed": None,
    "p256": None,
    "p384": None,
    "rsa": None,
    "rsa-pss": None,
    "ed25519": None,
    "referrer": None,
    "wrapped": None,
    "unsigned": "no signature found",
    "spaced": "the signature annotation is not base64 (' ' at character 9)",
    "other-digest": "payload for another digest",
    "wrong-key": "signed by another key",
    "swapped": "payload for another digest",
    "tampered": "signed by another key: none of the configured keys verifies it (or its payload was altered)",
}


def test_signatures_decide_admission(images: Images, tmp_path: Path) -> None:
    policy = write_policy(images, tmp_path)
    tags = list(EXPECTED)
    decisions, _ = decide_all(policy, [images.ref(f"tool-a/app:{tag}") for tag in tags])
    for tag, decision in zip(tags, decisions, strict=True):
        expected = EXPECTED[tag]
        if expected is None:
            assert decision.allowed, (tag, decision.message())
            assert decision.findings == ()
        else:
            assert not decision.allowed, tag
            (finding,) = decision.violations
            assert finding.rule == "signature-mismatch"
            assert expected in finding.message, (tag, finding.message)
            assert "signatures.rules[0]" in finding.message
    unsigned = dict(zip(tags, decisions, strict=True))["unsigned"]
    assert images.digests["tool-a/app:unsigned"][:19] in unsigned.violations[0].message


def test_keyless_bundle_through_the_referrers_fallback(images: Images, tmp_path: Path) -> None:
    """A real public-good bundle is fetched through the fallback tag and verified offline; it signs a.txt, not
    this image, so it is denied for that, not for its certificate or log entry."""
    policy = write_policy(images, tmp_path)
    (decision,), gate = decide_all(policy, [images.ref("tool-b/app:bundle")])
    (finding,) = decision.violations
    signed = "sha256:" + hashlib.sha256((CONFORMANCE / "a.txt").read_bytes()).hexdigest()
    image = images.digests["tool-b/app:bundle"]
    assert f"payload for another digest (the bundle signs {signed}, the image is {image})" in finding.message
    assert "referrers tag sha256-" in finding.message
    assert gate.signatures.verifications == 1


def test_a_cold_signature_check_asks_each_document_once_and_the_lookups_at_once(images: Images, tmp_path: Path) -> None:
    """A tag-scheme signature on a tag: the tag's manifest (no config: a digest is all a signature needs),
    then the ``.sig`` manifest, the referrers API (404 here) and its fallback tag asked together, then the
    payload."""
    policy_path = write_policy(images, tmp_path)
    policy = load_policy(policy_path.read_text(), str(policy_path))
    gate = RegistryGate(policy_path.parent)
    image = images.ref("tool-a/app:p256")
    digest = images.digests["tool-a/app:p256"]
    events: list[tuple[str, str]] = []

    async def sent(request: httpx.Request) -> None:
        events.append(("sent", request.url.path.rsplit("/", 1)[-1]))

    async def answered(response: httpx.Response) -> None:
        events.append(("answered", response.url.path.rsplit("/", 1)[-1]))

    async def go() -> tuple[Any, dict[str, int]]:
        c = gate.client(policy.registry)
        c._http.event_hooks = {"request": [sent], "response": [answered]}
        now = dt.datetime.now(dt.UTC)

        def evaluate(answers: Answers) -> Any:
            return decide(policy, pod(image), namespace="tool-a", now=now, answers=answers)

        try:
            return await settle(gate, policy, evaluate, lambda d: d, webhook=Webhook.VALIDATE), dict(c.fetches)
        finally:
            await gate.aclose()

    decision, fetches = asyncio.run(go())
    assert decision.allowed, decision.message()
    assert fetches == {"manifest": 3, "referrers": 1, "blob": 1}
    lookups = {tag_for(digest, "sig"), fallback_tag(digest), digest}  # the referrers API path ends in the digest
    first_answer = next(i for i, (kind, path) in enumerate(events) if kind == "answered" and path in lookups)
    assert {path for kind, path in events[:first_answer] if kind == "sent"} >= lookups


def test_a_warm_decision_is_judged_from_the_caches_as_a_cold_one(images: Images, tmp_path: Path) -> None:
    """Once an image's digest and evidence are known, its verdicts come from the caches (no lookup):
    the same allowances and denials, word for word, and nothing fetched or verified again."""
    policy_path = write_policy(images, tmp_path)
    policy = load_policy(policy_path.read_text(), str(policy_path))
    gate = RegistryGate(policy_path.parent)
    tags = ["signed", "unsigned", "wrong-key", "other-digest"]
    now = dt.datetime.now(dt.UTC)

    async def one(image: str) -> Any:
        def evaluate(answers: Answers) -> Any:
            return decide(policy, pod(image), namespace="tool-a", now=now, answers=answers)

        return await settle(gate, policy, evaluate, lambda d: d, webhook=Webhook.VALIDATE)

    async def go() -> list[tuple[list[Any], dict[str, int], int]]:
        rounds = []
        try:
            for _ in range(2):
                decisions = [await one(images.ref(f"tool-a/app:{tag}")) for tag in tags]
                rounds.append((decisions, dict(gate.client(policy.registry).fetches), gate.signatures.verifications))
        finally:
            await gate.aclose()
        return rounds

    (cold, cold_fetches, cold_verified), (warm, warm_fetches, warm_verified) = asyncio.run(go())
    assert [d.allowed for d in cold] == [True, False, False, False]
    assert [d.message() for d in warm] == [d.message() for d in cold]
    assert warm_fetches == cold_fetches and warm_verified == cold_verified == 3


def test_identity_mismatch_and_count(images: Images, tmp_path: Path) -> None:
    host = images.registry.host
    rules = f"""
    - images: ["{host}/tool-a/app"]
      keys: [keys/p256.pub, keys/rsa.pub]
      count: 2
"""
    (decision,), _ = decide_all(write_policy(images, tmp_path, rules), [images.ref("tool-a/app:signed")])
    (finding,) = decision.violations
    assert "needs 2 signatures" in finding.message and "1 of 2 found" in finding.message


def test_verified_once_per_digest_and_pinned_to_it(images: Images, tmp_path: Path) -> None:
    """200 admissions of 5 images: each signature fetched and verified once; the pin is the digest verified."""
    policy = write_policy(images, tmp_path, extra="  mode: enforce\n")
    policy.write_text(policy.read_text() + "pinning: {enabled: true}\n")
    tags = ["signed", "p256", "p384", "rsa", "ed25519"]
    refs = [images.ref(f"tool-a/app:{tag}") for tag in tags] * 40
    decisions, gate = decide_all(policy, refs, pins=True)
    assert all(d.allowed for d in decisions)
    assert gate.signatures.verifications == 5
    for tag, decision in zip(tags, decisions, strict=False):
        (patch,) = decision.patches
        assert patch["value"].endswith("@" + images.digests[f"tool-a/app:{tag}"])


@pytest.mark.parametrize(("on_error", "allowed"), [("deny", False), ("allow", True)])
def test_registry_error_follows_on_error(images: Images, tmp_path: Path, on_error: str, allowed: bool) -> None:
    policy = write_policy(images, tmp_path, extra=f"  onError: {on_error}\n")
    (decision,), _ = decide_all(policy, [images.ref("tool-a/app:does-not-exist")])
    assert decision.allowed is allowed
    if not allowed:
        assert f"signatures.rules[0] onError: {on_error}" in decision.message()


def test_warn_mode_admits_with_a_warning(images: Images, tmp_path: Path) -> None:
    (decision,), _ = decide_all(
        write_policy(images, tmp_path, extra="  mode: warn\n"), [images.ref("tool-a/app:unsigned")]
    )
    assert decision.allowed
    (warning,) = decision.warnings
    assert "no signature found" in warning.message


def test_unreadable_key_fails_closed(images: Images, tmp_path: Path) -> None:
    host = images.registry.host
    rules = f"""
    - images: ["{host}/tool-a"]
      keys: [keys/missing.pub]
      onError: allow
"""
    (decision,), _ = decide_all(write_policy(images, tmp_path, rules), [images.ref("tool-a/app:signed")])
    assert not decision.allowed
    assert "cannot read the public key" in decision.message() and "missing.pub" in decision.message()


def test_webhook_and_check_show_the_reasons(images: Images, tmp_path: Path) -> None:
    """/validate and ``check --registry``, as the API server and an operator see them."""
    from tests.webhook_process import validate_each  # noqa: PLC0415

    policy = write_policy(images, tmp_path)
    tags = ("signed", "wrong-key", "other-digest", "unsigned")
    answers = validate_each(tmp_path, policy, {tag: pod(images.ref(f"tool-a/app:{tag}")) for tag in tags}, "tool-a")
    assert answers["signed"]["allowed"] is True, answers["signed"]
    for tag in ("wrong-key", "other-digest", "unsigned"):
        assert answers[tag]["allowed"] is False
        assert EXPECTED[tag] in answers[tag]["status"]["message"], answers[tag]
    pods = json.dumps(
        {
            "kind": "List",
            "items": [pod(images.ref("tool-a/app:signed"), "good"), pod(images.ref("tool-a/app:swapped"), "bad")],
        }
    )
    offline = run_imagegate("check", "-", "-p", str(policy), "-o", "json", stdin=pods)
    assert [o["violations"][0]["rule"] for o in json.loads(offline.stdout)["objects"]] == ["signature-unverified"] * 2
    online = run_imagegate("check", "-", "-p", str(policy), "-o", "json", "--registry", stdin=pods)
    assert online.returncode == 1, online.stderr
    good, bad = json.loads(online.stdout)["objects"]
    assert good["allowed"] is True
    assert bad["violations"][0]["rule"] == "signature-mismatch"
    assert "payload for another digest" in bad["violations"][0]["message"]


def test_a_tag_that_moved_between_two_checks_is_neither_trusted_nor_pinned(images: Images, tmp_path: Path) -> None:
    """The base check judged one digest of a tag, the signature check another (the tag was pushed in
    between): the signature vouches for neither, so it fails, and nothing is pinned to either."""
    policy_path = write_policy(images, tmp_path)
    policy_path.write_text(policy_path.read_text() + "pinning: {enabled: true}\n")
    policy = load_policy(policy_path.read_text(), str(policy_path))
    image = images.ref("tool-a/app:signed")
    first = decide(policy, pod(image), namespace="tool-a", now=dt.datetime.now(dt.UTC))
    (check,) = first.asked(SignaturesQuestion)
    earlier = Answers(
        {BaseQuestion(check.ref): BaseImageVerdict(True, "on base v1", digest=images.digests["tool-a/app:p256"])}
    )
    gate = RegistryGate(policy_path.parent)

    async def go() -> Answers:
        try:
            return await answer(gate, policy, first, webhook=Webhook.MUTATE, earlier=earlier)
        finally:
            await gate.aclose()

    answers = asyncio.run(go())
    (verdict,) = answers.of(SignaturesQuestion)[str(check.ref)]
    assert not verdict.ok and "the tag moved while it was verified" in verdict.detail
    assert images.digests["tool-a/app:signed"][:19] in verdict.detail
    assert answers.of(DigestQuestion) == {}
    decision = decide(policy, pod(image), namespace="tool-a", now=dt.datetime.now(dt.UTC), answers=answers)
    assert not decision.allowed and decision.patches == ()
