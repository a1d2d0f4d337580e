"""Benchmark signature verification: cold and warm key-based verification, and 200 images at once.

Usage::

    python bench/signing_bench.py [--rounds 100] [--images 200]

Starts Debian's docker-registry (TLS, htpasswd) on 127.0.0.1, pushes an image with skopeo and
signs it with an ECDSA P-256 key made here (cosign's tag scheme, ``sha256-<hex>.sig``), then:

* cold: a fresh registry client and signature checker each round (no cache, new TLS connection,
  Basic auth challenge): the tag's digest, the ``.sig`` manifest, the referrers lookup (404 on
  this registry) and its fallback tag, the payload blob, the signature verified, the rule judged;
* warm: the same through one client and checker (cached by digest): what a decision pays once
  the image has been seen;
* concurrency: ``--images`` distinct signed images verified at once, each asked for 3 times
  concurrently; reports the signatures verified and the referrers lookups (each must equal the
  image count: single flight and the digest cache).

Needs the test extras (``pip install -e '.[test]'``), ``docker-registry``, ``skopeo`` and
``htpasswd``. Everything runs on loopback and is stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.oci_images import OciLayout, layers, skopeo_inspect
from tests.registry_process import Registry, run_registry
from tests.signed_images import Signature, new_key, push_signature_tag, sign, simple_signing_payload, write_public_key

from imagegate.core.policy import load_policy
from imagegate.core.reference import parse_docker_ref
from imagegate.core.signatures import SignaturesConfig
from imagegate.shell.registry import RegistryClient, RegistrySettings
from imagegate.shell.registry_auth import DockerConfigCredentials
from imagegate.shell.signing import SignatureChecker, judge_image


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def settings(registry: Registry, credentials: DockerConfigCredentials) -> RegistrySettings:
    return RegistrySettings(ca_file=registry.tls.ca_cert, credentials=credentials, timeout=5)


async def verify(client: RegistryClient, checker: SignatureChecker, config: SignaturesConfig, image: str) -> bool:
    ref = parse_docker_ref(image)
    digest = await client.digest(ref)
    evidence = await checker.evidence(client, config, ref, digest)
    return all(v.ok for v in judge_image(config.rules_for(ref), digest, evidence))


async def measure(
    registry: Registry,
    credentials: DockerConfigCredentials,
    config: SignaturesConfig,
    keys: Path,
    rounds: int,
    images: int,
) -> dict[str, float]:
    image = f"{registry.host}/tool-bench/app:1"
    cold_ms = []
    for _ in range(rounds):
        started = time.perf_counter()
        async with RegistryClient(settings(registry, credentials)) as fresh:
            ok = await verify(fresh, SignatureChecker(keys), config, image)
        cold_ms.append((time.perf_counter() - started) * 1000)
        assert ok
    warm_us = []
    async with RegistryClient(settings(registry, credentials)) as warm:
        checker = SignatureChecker(keys)
        assert await verify(warm, checker, config, image)
        for _ in range(rounds * 10):
            started = time.perf_counter()
            await verify(warm, checker, config, image)
            warm_us.append((time.perf_counter() - started) * 1e6)
    async with RegistryClient(settings(registry, credentials)) as many:
        checker = SignatureChecker(keys)
        refs = [f"{registry.host}/tool-bench/app:many-{n}" for n in range(images)]
        started = time.perf_counter()
        results = await asyncio.gather(*(verify(many, checker, config, ref) for ref in refs for _ in range(3)))
        elapsed = time.perf_counter() - started
        assert all(results)
        referrers = many.fetches.get("referrers", 0)
    return {
        "cold_p50_ms": statistics.median(cold_ms),
        "cold_p99_ms": percentile(cold_ms, 0.99),
        "warm_p50_us": statistics.median(warm_us),
        "warm_p99_us": percentile(warm_us, 0.99),
        "images": images,
        "concurrent_seconds": elapsed,
        "verifications": checker.verifications,
        "referrers": referrers,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--images", type=int, default=200)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="imagegate-signing-bench-") as scratch:
        tmp = Path(scratch)
        key = new_key("p256")
        write_public_key(key, tmp / "build.pub")
        with run_registry(tmp / "registry", "htpasswd") as registry:
            layout = OciLayout(tmp / "layout")
            registry.push(layout, "app", layers("app", 5), "tool-bench/app:1")
            raw = skopeo_inspect(
                f"{registry.host}/tool-bench/app:1",
                cert_dir=registry.cert_dir,
                credentials=registry.credentials,
                raw=True,
            )

            def signed(digest: str) -> None:
                payload = simple_signing_payload(f"{registry.host}/tool-bench/app", digest)
                push_signature_tag(registry, "tool-bench/app", digest, [Signature(payload, sign(key, payload))])

            signed(
                skopeo_inspect(
                    f"{registry.host}/tool-bench/app:1", cert_dir=registry.cert_dir, credentials=registry.credentials
                )["Digest"]
            )
            for n in range(options.images):  # distinct manifests: an annotation makes each digest unique
                raw["annotations"] = {"bench.imagegate/n": str(n)}
                body = json.dumps(raw).encode()
                registry.put_manifest("tool-bench/app", f"many-{n}", body, raw["mediaType"])
                signed("sha256:" + hashlib.sha256(body).hexdigest())
            policy = load_policy(
                "apiVersion: imagegate.toolforge.org/v1\nkind: ImagePolicy\n"
                f"signatures: {{rules: [{{images: ['{registry.host}/tool-bench'], keys: [build.pub]}}]}}\n"
            )
            credentials = DockerConfigCredentials.from_docker_config(registry.docker_config(tmp / "config.json"))
            result = asyncio.run(measure(registry, credentials, policy.signatures, tmp, options.rounds, options.images))
    print(f"signature benchmark: docker-registry on loopback over TLS with Basic auth, {options.rounds} rounds\n")
    print("| measure | p50 | p99 |")
    print("| --- | --- | --- |")
    print(
        "| cold key-based verification, ECDSA P-256, tag scheme (new client: TLS, auth, digest, .sig, "
        f"referrers 404 + fallback tag, payload) | {result['cold_p50_ms']:.1f} ms | {result['cold_p99_ms']:.1f} ms |"
    )
    print(f"| warm verification (cached by digest) | {result['warm_p50_us']:.1f} µs | {result['warm_p99_us']:.1f} µs |")
    print(
        f"\n{result['images']} distinct signed images, each asked for 3 times concurrently: "
        f"{result['verifications']} signatures verified, {result['referrers']} referrers lookups, "
        f"in {result['concurrent_seconds']:.2f} s"
    )
    return 0 if result["verifications"] == result["images"] == result["referrers"] else 1


if __name__ == "__main__":
    sys.exit(main())
