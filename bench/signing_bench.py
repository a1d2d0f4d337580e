"""Benchmark signature verification: cold key-based and bundle checks, the warm cost in a decision,
and 200 images at once.

Usage::

    python bench/signing_bench.py [--rounds 100] [--images 200] [--pod-images 5]

Starts Debian's docker-registry (TLS, htpasswd) on 127.0.0.1, pushes an image with skopeo and
signs it with an ECDSA P-256 key made here (cosign's tag scheme, ``sha256-<hex>.sig``), attaches
a Sigstore bundle through the referrers fallback tag, then measures (``--rounds`` samples each):

* cold key-based: a fresh registry client each sample (no cache, new TLS connections, Basic auth
  challenge): the tag's digest (its manifest), then at once the ``.sig`` manifest and the
  referrers API (404 on this registry) with its fallback tag, the payload blob, the signature
  verified, the rule judged. The keys are loaded before the clock starts (once per policy);
* cold bundle: the same for an image named by digest whose only signature is a Sigstore bundle
  listed in the referrers fallback index (``sha256-<hex>``): ``.sig`` (404), referrers (404) and
  fallback index, the artifact manifest, the bundle blob, verified offline by sigstore-python
  against the public-good trusted root (certificate chain, SCT, tlog inclusion proof, checkpoint),
  the identity rule judged. No keyless bundle for an image manifest can be made offline, so the
  bundle is the Sigstore conformance suite's ``happy-path-v0.3`` (../shared/conformance/sigstore),
  which signs ``a.txt``: the "image digest" is a.txt's SHA-256, and every check runs and passes.
  Building the verifier from the trusted root (once per policy) is timed on its own;
* warm: ``decide`` + ``settle`` of a pod of ``--pod-images`` signed images with a warm gate,
  with and without the ``signatures`` rule: the difference, per image, is what verification
  (cached by digest) adds to a decision;
* concurrency: ``--images`` distinct signed images verified at once, each asked for 3 times
  concurrently; counts the signatures verified and every registry fetch (each artifact must be
  fetched once: the tag's manifest, the ``.sig`` manifest, the fallback tag, the referrers
  lookup and the payload, once per image).

Exits 1 when a count is not one per artifact. Needs the test extras (``pip install -e '.[test]'``),
``docker-registry``, ``skopeo`` and ``htpasswd``. Everything runs on loopback and is stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import hashlib
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.oci_images import OciLayout, layers, skopeo_inspect
from tests.registry_process import Registry, run_registry
from tests.signed_images import (
    Signature,
    image_descriptor,
    new_key,
    push_referrer_fallback,
    push_signature_tag,
    sign,
    simple_signing_payload,
    write_public_key,
)

from imagegate.core.decide import Decision, decide
from imagegate.core.policy import Policy, load_policy
from imagegate.core.records import Answers, Webhook
from imagegate.core.reference import parse_docker_ref
from imagegate.core.signatures import SignaturesConfig
from imagegate.shell.registry.answerers import settle
from imagegate.shell.registry.auth import DockerConfigCredentials
from imagegate.shell.registry.client import RegistryClient, RegistrySettings
from imagegate.shell.registry.gate import RegistryGate
from imagegate.shell.registry.signing import SignatureChecker, bundle_verifier, judge_image
from imagegate.shell.registry.sigstore_adapter import trusted_root_file

CONFORMANCE = Path(__file__).resolve().parents[2] / "shared" / "conformance" / "sigstore" / "bundle-verify"
BUNDLE_V03 = "application/vnd.dev.sigstore.bundle.v0.3+json"
# the signer of the conformance bundles (sigstore-conformance's README)
BEACON = (
    "https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/.github/workflows/"
    "extremely-dangerous-oidc-beacon.yml@refs/heads/main"
)
GITHUB_ISSUER = "https://token.actions.githubusercontent.com"


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def settings(registry: Registry, credentials: DockerConfigCredentials) -> RegistrySettings:
    return RegistrySettings(ca_file=registry.tls.ca_cert, credentials=credentials, timeout=5)


def policy_text(registry: Registry, config: Path, *, signatures: bool) -> str:
    host = registry.host
    text = (
        "apiVersion: imagegate.toolforge.org/v1\nkind: ImagePolicy\n"
        f"trusted: ['{host}/tool-bench']\n"
        f"registry: {{caFile: '{registry.tls.ca_cert}', credentialsFile: '{config}'}}\n"
    )
    if signatures:
        text += (
            "signatures:\n  rules:\n"
            f"    - {{images: ['{host}/tool-bench/app'], keys: [build.pub]}}\n"
            f"    - images: ['{host}/tool-bench/keyless']\n"
            f"      identities: [{{issuer: '{GITHUB_ISSUER}', subject: '{BEACON}'}}]\n"
        )
    return text


async def verify(client: RegistryClient, checker: SignatureChecker, config: SignaturesConfig, image: str) -> bool:
    ref = parse_docker_ref(image)
    digest = await client.digest(ref)
    evidence = await checker.evidence(client, config, ref, digest)
    return all(v.ok for v in judge_image(config.rules_for(ref), digest, evidence))


async def cold(
    registry: Registry,
    credentials: DockerConfigCredentials,
    config: SignaturesConfig,
    keys: Path,
    image: str,
    rounds: int,
) -> list[float]:
    """Milliseconds per sample: a fresh client and checker (its keys and trusted root loaded first)."""
    samples = []
    for _ in range(rounds):
        checker = SignatureChecker(keys)
        checker.trust(config)  # once per policy in the webhook: not a cost of the image
        started = time.perf_counter()
        async with RegistryClient(settings(registry, credentials)) as fresh:
            ok = await verify(fresh, checker, config, image)
        samples.append((time.perf_counter() - started) * 1000)
        assert ok, image
    return samples


def pod(images: list[str]) -> dict[str, Any]:
    containers = [{"name": f"c{n}", "image": image} for n, image in enumerate(images)]
    return {"kind": "Pod", "metadata": {"name": "p", "namespace": "tool-bench"}, "spec": {"containers": containers}}


async def decision_us(policy: Policy, gate: RegistryGate, obj: dict[str, Any], rounds: int) -> list[float]:
    """Microseconds per ``decide`` + ``settle`` of ``obj`` (after one to warm the gate)."""
    now = dt.datetime.now(dt.UTC)

    def evaluate(answers: Answers) -> Decision:
        return decide(policy, obj, namespace="tool-bench", now=now, answers=answers)

    def itself(decision: Decision) -> Decision:
        return decision

    first = await settle(gate, policy, evaluate, itself, webhook=Webhook.VALIDATE)
    assert first.allowed, first.message()
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        await settle(gate, policy, evaluate, itself, webhook=Webhook.VALIDATE)
        samples.append((time.perf_counter() - started) * 1e6)
    return samples


async def measure(
    registry: Registry, credentials: DockerConfigCredentials, policies: dict[str, Policy], keys: Path, options: Any
) -> dict[str, Any]:
    config = policies["signed"].signatures
    rounds, images = options.rounds, options.images
    result: dict[str, Any] = {"images": images, "pod_images": options.pod_images}
    result["cold_key_ms"] = await cold(registry, credentials, config, keys, f"{registry.host}/tool-bench/app:1", rounds)
    result["cold_bundle_ms"] = await cold(registry, credentials, config, keys, options.bundle_image, rounds)
    root = trusted_root_file(config, keys)
    verifier_ms = []
    for _ in range(10):
        started = time.perf_counter()
        bundle_verifier(root)
        verifier_ms.append((time.perf_counter() - started) * 1000)
    result["verifier_ms"] = statistics.median(verifier_ms)
    async with RegistryClient(settings(registry, credentials)) as warm:
        checker = SignatureChecker(keys)
        image = f"{registry.host}/tool-bench/app:1"
        assert await verify(warm, checker, config, image)
        warm_us = []
        for _ in range(rounds * 10):
            started = time.perf_counter()
            await verify(warm, checker, config, image)
            warm_us.append((time.perf_counter() - started) * 1e6)
    result["warm_us"] = warm_us
    obj = pod([f"{registry.host}/tool-bench/app:many-{n}" for n in range(options.pod_images)])
    for name, policy in policies.items():
        gate = RegistryGate(keys)
        try:
            result[f"decision_{name}_us"] = await decision_us(policy, gate, obj, rounds * 10)
        finally:
            await gate.aclose()
    async with RegistryClient(settings(registry, credentials)) as many:
        checker = SignatureChecker(keys)
        refs = [f"{registry.host}/tool-bench/app:many-{n}" for n in range(images)]
        started = time.perf_counter()
        results = await asyncio.gather(*(verify(many, checker, config, ref) for ref in refs for _ in range(3)))
        result["concurrent_seconds"] = time.perf_counter() - started
        assert all(results)
        result["verifications"] = checker.verifications
        result["fetches"] = dict(many.fetches)
    return result


def prepare(registry: Registry, tmp: Path, images: int) -> str:
    """The signed images, and the bundle-signed "image"; returns the latter's reference (by digest)."""
    key = new_key("p256")
    write_public_key(key, tmp / "build.pub")
    layout = OciLayout(tmp / "layout")
    registry.push(layout, "app", layers("app", 5), "tool-bench/app:1")
    app = f"{registry.host}/tool-bench/app:1"
    raw = skopeo_inspect(app, cert_dir=registry.cert_dir, credentials=registry.credentials, raw=True)

    def signed(digest: str) -> None:
        payload = simple_signing_payload(f"{registry.host}/tool-bench/app", digest)
        push_signature_tag(registry, "tool-bench/app", digest, [Signature(payload, sign(key, payload))])

    signed(skopeo_inspect(app, cert_dir=registry.cert_dir, credentials=registry.credentials)["Digest"])
    for n in range(images):  # distinct manifests: an annotation makes each digest unique
        raw["annotations"] = {"bench.imagegate/n": str(n)}
        body = json.dumps(raw).encode()
        registry.put_manifest("tool-bench/app", f"many-{n}", body, raw["mediaType"])
        signed("sha256:" + hashlib.sha256(body).hexdigest())
    signed_file = (CONFORMANCE / "a.txt").read_bytes()
    digest = "sha256:" + hashlib.sha256(signed_file).hexdigest()
    bundle = (CONFORMANCE / "happy-path-v0.3" / "bundle.sigstore.json").read_bytes()
    push_referrer_fallback(
        registry,
        "tool-bench/keyless",
        image_descriptor(digest, len(signed_file)),
        BUNDLE_V03,
        [{"mediaType": BUNDLE_V03, **registry.put_blob("tool-bench/keyless", bundle)}],
    )
    return f"{registry.host}/tool-bench/keyless@{digest}"


def row(label: str, samples: list[float], unit: str) -> str:
    return f"| {label} | {statistics.median(samples):.1f} {unit} | {percentile(samples, 0.99):.1f} {unit} |"


def report(result: dict[str, Any], rounds: int) -> bool:
    """Print the table; whether every artifact was fetched once."""
    print(f"signature benchmark: docker-registry on loopback over TLS with Basic auth, {rounds} rounds")
    load = os.getloadavg()
    print(f"machine: {os.cpu_count()} cores, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at the end\n")
    print("| measure | p50 | p99 |")
    print("| --- | --- | --- |")
    print(
        row(
            "cold key-based verification, ECDSA P-256, tag scheme (new client: TLS, auth, tag's manifest, "
            ".sig + referrers 404 + fallback tag at once, payload)",
            result["cold_key_ms"],
            "ms",
        )
    )
    print(
        row(
            "cold bundle verification, Sigstore v0.3 via the referrers fallback (new client: TLS, auth, "
            ".sig 404 + referrers 404 + fallback index at once, artifact, bundle, offline verification)",
            result["cold_bundle_ms"],
            "ms",
        )
    )
    print(row("warm verification, one image (cached by digest: tag, evidence, rules judged)", result["warm_us"], "µs"))
    n = result["pod_images"]
    without, with_rule = result["decision_unsigned_us"], result["decision_signed_us"]
    print(row(f"decide + settle, pod of {n} images, no signatures rule", without, "µs"))
    print(row(f"decide + settle, pod of {n} images, signatures rule (warm)", with_rule, "µs"))
    added = [(statistics.median(with_rule) - statistics.median(without)) / n]
    added_p99 = (percentile(with_rule, 0.99) - percentile(without, 0.99)) / n
    print(f"| added per image by the signatures rule (warm) | {added[0]:.1f} µs | {added_p99:.1f} µs |")
    print(f"\nbuilding the Sigstore verifier from the trusted root (once per policy): {result['verifier_ms']:.1f} ms")
    images, fetches = result["images"], result["fetches"]
    print(
        f"\n{images} distinct signed images, each asked for 3 times concurrently, in "
        f"{result['concurrent_seconds']:.2f} s: {result['verifications']} signatures verified; fetches: "
        f"{fetches.get('manifest', 0)} manifests (tag, .sig, fallback tag: 3 per image), "
        f"{fetches.get('referrers', 0)} referrers lookups, {fetches.get('blob', 0)} blobs (the payload)"
    )
    expected: dict[str, Callable[[int], int]] = {"manifest": lambda k: 3 * k, "referrers": int, "blob": int}
    return result["verifications"] == images and all(fetches.get(k, 0) == f(images) for k, f in expected.items())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=100, help="samples of each cold measure (x10 for warm ones)")
    parser.add_argument("--images", type=int, default=200, help="distinct images verified at once")
    parser.add_argument("--pod-images", type=int, default=5, help="images in the pod of the warm decision")
    options = parser.parse_args()
    if not (CONFORMANCE / "happy-path-v0.3").is_dir():
        print(f"the Sigstore conformance bundles are not at {CONFORMANCE}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="imagegate-signing-bench-") as scratch:
        tmp = Path(scratch)
        with run_registry(tmp / "registry", "htpasswd") as registry:
            options.bundle_image = prepare(registry, tmp, max(options.images, options.pod_images))
            config = registry.docker_config(tmp / "config.json")
            credentials = DockerConfigCredentials.from_docker_config(config)
            policies = {
                name: load_policy(policy_text(registry, config, signatures=name == "signed"), str(tmp / "policy.yaml"))
                for name in ("unsigned", "signed")
            }
            result = asyncio.run(measure(registry, credentials, policies, tmp, options))
    return 0 if report(result, options.rounds) else 1


if __name__ == "__main__":
    sys.exit(main())
