"""Benchmark registry work: cold and warm base-image verification, and 200 images at once.

Usage::

    python bench/registry_bench.py [--rounds 100] [--images 200]

Starts Debian's docker-registry (TLS, htpasswd) on 127.0.0.1, pushes a 10-layer image built
on a 5-layer base with skopeo, then measures:

* cold: a fresh client each round (no cache, new TLS connection, Basic auth challenge):
  resolve the manifest and config, verify the layer chain against the base;
* warm: the same through one client (cached by digest), i.e. the cost a decision pays
  once the image has been seen;
* concurrency: ``--images`` distinct images (tags of distinct manifests) admitted at once,
  each asked for 3 times concurrently; reports manifest fetches (must equal the image count).

Needs the test extras (``pip install -e '.[test]'``), ``docker-registry``, ``skopeo`` and
``htpasswd``. Everything runs on loopback and is stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.oci_images import OciLayout, layers, skopeo_inspect
from tests.registry_process import Registry, run_registry

from imagegate.core.baseimage import verify_image
from imagegate.core.policy import BaseImagesConfig
from imagegate.core.reference import parse_docker_ref
from imagegate.shell.registry.auth import DockerConfigCredentials
from imagegate.shell.registry.client import RegistryClient, RegistrySettings
from imagegate.shell.registry.gate import BaseImageIndex


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def settings(registry: Registry, credentials: DockerConfigCredentials) -> RegistrySettings:
    return RegistrySettings(ca_file=registry.tls.ca_cert, credentials=credentials, timeout=5)


async def measure(
    registry: Registry, credentials: DockerConfigCredentials, rounds: int, images: int
) -> dict[str, object]:
    base_ref = parse_docker_ref(f"{registry.host}/toolforge/base:1")
    app_ref = parse_docker_ref(f"{registry.host}/tool-bench/app:1")
    bases = BaseImageIndex()
    async with RegistryClient(settings(registry, credentials)) as warm:
        await bases.refresh(warm, BaseImagesConfig(trusted=(base_ref,)), dt.datetime.now(dt.UTC))
        cold_ms = []
        for _ in range(rounds):
            started = time.perf_counter()
            async with RegistryClient(settings(registry, credentials)) as fresh:
                verdict = verify_image(await fresh.resolve(app_ref), bases.versions)
            cold_ms.append((time.perf_counter() - started) * 1000)
            assert verdict.ok, verdict.detail
        await warm.resolve(app_ref)
        warm_us = []
        for _ in range(rounds * 10):
            started = time.perf_counter()
            verify_image(await warm.resolve(app_ref), bases.versions)
            warm_us.append((time.perf_counter() - started) * 1e6)
    async with RegistryClient(settings(registry, credentials)) as many:
        refs = [parse_docker_ref(f"{registry.host}/tool-bench/app:many-{n}") for n in range(images)]
        started = time.perf_counter()
        await asyncio.gather(*(many.resolve(ref) for ref in refs for _ in range(3)))
        elapsed = time.perf_counter() - started
        fetches = dict(many.fetches)
    return {
        "cold_p50_ms": statistics.median(cold_ms),
        "cold_p99_ms": percentile(cold_ms, 0.99),
        "warm_p50_us": statistics.median(warm_us),
        "warm_p99_us": percentile(warm_us, 0.99),
        "images": images,
        "concurrent_seconds": elapsed,
        "manifest_fetches": fetches.get("manifest", 0),
        "blob_fetches": fetches.get("blob", 0),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--images", type=int, default=200)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="imagegate-registry-bench-") as scratch:
        tmp = Path(scratch)
        with run_registry(tmp / "registry", "htpasswd") as registry:
            layout = OciLayout(tmp / "layout")
            base = layers("base", 5)
            registry.push(layout, "base", base, "toolforge/base:1")
            registry.push(layout, "app", [*base, *layers("app", 5)], "tool-bench/app:1")
            raw = skopeo_inspect(
                f"{registry.host}/tool-bench/app:1",
                cert_dir=registry.cert_dir,
                credentials=registry.credentials,
                raw=True,
            )
            for n in range(options.images):  # distinct manifests: an annotation makes each digest unique
                raw["annotations"] = {"bench.imagegate/n": str(n)}
                registry.put_manifest("tool-bench/app", f"many-{n}", json.dumps(raw).encode(), raw["mediaType"])
            credentials = DockerConfigCredentials.from_docker_config(registry.docker_config(tmp / "config.json"))
            result = asyncio.run(measure(registry, credentials, options.rounds, options.images))
    print(f"registry benchmark: docker-registry on loopback over TLS with Basic auth, {options.rounds} rounds\n")
    print("| measure | p50 | p99 |")
    print("| --- | --- | --- |")
    print(
        f"| cold verification, 10-layer image (new client: TLS, auth, manifest, config) | {result['cold_p50_ms']:.1f} ms | {result['cold_p99_ms']:.1f} ms |"
    )
    print(f"| warm verification (cached by digest) | {result['warm_p50_us']:.1f} µs | {result['warm_p99_us']:.1f} µs |")
    print(
        f"\n{result['images']} distinct images, each asked for 3 times concurrently: {result['manifest_fetches']} manifest "
        f"and {result['blob_fetches']} config fetches in {result['concurrent_seconds']:.2f} s"
    )
    return 0 if result["manifest_fetches"] == result["images"] else 1


if __name__ == "__main__":
    sys.exit(main())
