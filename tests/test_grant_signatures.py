"""A grant may require a signature by its tool's own key (issue 16, item 3): ``signedBy``.

``signedBy: keys/{tool}.pub`` in a grant: every image that grant admits must carry a cosign
signature by that key (placeholders filled in for the grant's namespace); trusted images and
other namespaces are not touched; one tool's missing key fails only that tool's images, closed.
Real signatures in a real docker-registry (tests/test_signing.py's images: ``tool-a/app:<kind>``
is signed by the key of that kind, ``unsigned`` by none).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from imagegate.core.decide import decide
from imagegate.core.policy import PolicyError, load_grants, load_policy
from imagegate.core.records import Answers, Decision, Webhook
from imagegate.shell.registry.answerers import settle
from imagegate.shell.registry.gate import RegistryGate
from tests.conftest import GRANTS_HEADER, POLICY_HEADER, run_imagegate
from tests.registry_process import UNHURRIED
from tests.test_signing import Images, images, pod

__all__ = ["images"]  # the registry fixture, found by pytest by its name


def write_policy(images: Images, tmp_path: Path, grants: str) -> Path:
    """Only tool-b is trusted: tool-a's images run on grants; keys beside the policy, named by kind."""
    config = images.registry.docker_config(tmp_path / "config.json")
    (tmp_path / "keys").mkdir(exist_ok=True)
    for key in images.keys_dir.iterdir():
        (tmp_path / "keys" / key.name).write_bytes(key.read_bytes())
    host = images.registry.host
    path = tmp_path / "policy.yaml"
    path.write_text(
        f"""{POLICY_HEADER}trusted: ["{host}/tool-b"]
registry: {{caFile: {images.registry.tls.ca_cert}, credentialsFile: {config}, {UNHURRIED}}}
byoc:
  grants:{grants.replace("HOST", host)}
"""
    )
    return path


GRANTS = """
    - {namespace: tool-p256, registries: [HOST/tool-a], signedBy: "keys/{tool}.pub"}
    - {namespace: tool-rsa, registries: [HOST/tool-a], signedBy: "keys/{tool}.pub"}
    - {namespace: tool-gone, registries: [HOST/tool-a], signedBy: "keys/{tool}.pub"}
    - {namespace: tool-warned, registries: [HOST/tool-a], signedBy: keys/p256.pub, mode: warn}
    - {namespace: tool-plain, registries: [HOST/tool-a]}
"""


def decide_in(policy_path: Path, runs: list[tuple[str, str]]) -> tuple[list[Decision], RegistryGate]:
    """(namespace, image) pairs decided with the registry, concurrently, through one gate."""
    policy = load_policy(policy_path.read_text(), str(policy_path))
    gate = RegistryGate(policy_path.parent)
    now = dt.datetime.now(dt.UTC)

    async def go() -> list[Decision]:
        async def one(namespace: str, image: str) -> Decision:
            def evaluate(answers: Answers) -> Decision:
                return decide(policy, pod(image), namespace=namespace, now=now, answers=answers)

            return await settle(gate, policy, evaluate, lambda d: d, webhook=Webhook.VALIDATE)

        try:
            return list(await asyncio.gather(*(one(namespace, image) for namespace, image in runs)))
        finally:
            await gate.aclose()

    return asyncio.run(go()), gate


def test_each_tool_needs_its_own_key(images: Images, tmp_path: Path) -> None:
    policy = write_policy(images, tmp_path, GRANTS)
    app = images.ref("tool-a/app")
    runs = {
        ("tool-p256", f"{app}:p256"): None,
        ("tool-rsa", f"{app}:rsa"): None,
        # signed, but by another tool's key: tool-rsa's signature does not admit it in tool-p256
        ("tool-p256", f"{app}:rsa"): "signed by another key",
        ("tool-rsa", f"{app}:p256"): "signed by another key",
        ("tool-p256", f"{app}:unsigned"): "no signature found",
        # a missing key fails that tool's images closed, and nobody else's
        ("tool-gone", f"{app}:p256"): "cannot read the public key",
        # no signedBy: the grant admits by name alone, as before
        ("tool-plain", f"{app}:unsigned"): None,
        # trusted, so not admitted by the grant: its signedBy does not apply
        ("tool-p256", images.ref("tool-b/app:bundle")): None,
    }
    decisions, gate = decide_in(policy, list(runs))
    for (namespace, image), decision in zip(runs, decisions, strict=True):
        expected = runs[(namespace, image)]
        if expected is None:
            assert decision.allowed, (namespace, image, decision.message())
            assert decision.findings == (), (namespace, image)
            continue
        assert not decision.allowed, (namespace, image)
        (finding,) = decision.violations
        assert finding.rule == "signature-mismatch", finding
        assert expected in finding.message, (namespace, image, finding.message)
        assert f"signedBy of the grant for {namespace}" in finding.message
    assert "gone.pub" in decisions[list(runs).index(("tool-gone", f"{app}:p256"))].message()
    # one verification per signed digest, whichever grant asked (the evidence is cached by digest)
    assert gate.signatures.verifications == 2


def test_a_warn_grant_warns_about_its_signatures(images: Images, tmp_path: Path) -> None:
    (decision,), _ = decide_in(write_policy(images, tmp_path, GRANTS), [("tool-warned", images.ref("tool-a/app:rsa"))])
    assert decision.allowed
    (warning,) = decision.warnings
    assert warning.rule == "signature-mismatch" and "signed by another key" in warning.message


def test_offline_the_signature_is_unverified(images: Images, tmp_path: Path) -> None:
    policy = load_policy(write_policy(images, tmp_path, GRANTS).read_text())
    decision = decide(policy, pod(images.ref("tool-a/app:p256")), namespace="tool-p256", now=dt.datetime.now(dt.UTC))
    (finding,) = decision.violations
    assert finding.rule == "signature-unverified"
    assert "signedBy of the grant for tool-p256" in finding.message


def test_through_the_webhook_and_check(images: Images, tmp_path: Path) -> None:
    from tests.webhook_process import validate_each  # noqa: PLC0415

    policy = write_policy(images, tmp_path, GRANTS)
    app = images.ref("tool-a/app")

    def in_tool_p256(image: str) -> dict[str, Any]:
        return {**pod(image), "metadata": {"name": "p", "namespace": "tool-p256"}}

    answers = validate_each(
        tmp_path, policy, {"good": in_tool_p256(f"{app}:p256"), "bad": in_tool_p256(f"{app}:rsa")}, "tool-p256"
    )
    good, bad = answers["good"], answers["bad"]
    assert good["allowed"] is True, good
    assert bad["allowed"] is False
    assert "signed by another key" in bad["status"]["message"]
    manifest = in_tool_p256(f"{app}:unsigned")
    online = run_imagegate("check", "-", "-p", str(policy), "-o", "json", "--registry", stdin=json.dumps(manifest))
    assert online.returncode == 1, online.stderr
    (checked,) = json.loads(online.stdout)["objects"]
    assert "no signature found" in checked["violations"][0]["message"]


@pytest.mark.parametrize(
    ("grant", "words"),
    [
        ('{namespace: tool-a, signedBy: ""}', "byoc.grants[0].signedBy: an empty path"),
        ('{namespace: builds, signedBy: "keys/{tool}.pub"}', "builds is not a tool namespace"),
    ],
)
def test_bad_signed_by_is_refused_on_load(grant: str, words: str) -> None:
    with pytest.raises(PolicyError) as caught:
        load_policy(f"{POLICY_HEADER}byoc:\n  grants:\n    - {grant}\n")
    assert words in str(caught.value)


def test_grants_add_writes_signed_by(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415

    grants = tmp_path / "grants.yaml"
    grants.write_text(f"{GRANTS_HEADER}grants: []\n")
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY_HEADER + "namespaces: {include: [tool-*]}\n")
    add = ["grants", "add", "tool-x", "-p", str(policy), "--grants", str(grants), "-r", "ghcr.io/x"]
    # the key is read as the webhook will read it (relative to the policy): not there, refused
    missing = run_imagegate(*add, "--signed-by", "keys/{tool}.pub")
    assert missing.returncode == 2 and "cannot read the public key" in missing.stderr and "keys/x.pub" in missing.stderr
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "x.pub").write_text("not a key\n")
    unusable = run_imagegate(*add, "--signed-by", "keys/{tool}.pub")
    assert unusable.returncode == 2 and "is not a PEM public key" in unusable.stderr
    assert load_grants(grants.read_text(), str(grants)) == ()  # nothing written
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    pem = key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    (tmp_path / "keys" / "x.pub").write_bytes(pem)
    added = run_imagegate(*add, "--signed-by", "keys/{tool}.pub")
    assert added.returncode == 0, added.stderr
    (grant,) = load_grants(grants.read_text(), str(grants))
    assert grant.signed_by == "keys/x.pub"
    assert grant.signature_rule is not None and "tool-x" in grant.signature_rule
