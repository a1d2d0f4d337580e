"""Benchmark the decoding of registry documents (Go's encoding/json semantics, core/gojson.py).

Usage::

    python bench/documents_bench.py [--rounds 2000]

Every registry read goes through ``parse_manifest`` / ``parse_config``: this measures them on
documents shaped like real ones (no network): a 6-platform index as Docker Hub's official
images have, a 12-layer OCI manifest, and a config with 12 diff_ids, its history and
environment as BuildKit writes them. Prints microseconds per document (median and p99 of
rounds) and the documents' sizes.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from imagegate.core.oci import parse_config, parse_manifest

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def digest(n: int) -> str:
    return f"sha256:{n:064x}"


PLATFORMS = [("amd64", ""), ("arm", "v5"), ("arm", "v7"), ("arm64", "v8"), ("386", ""), ("ppc64le", "")]
INDEX = json.dumps(
    {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {
                "mediaType": OCI_MANIFEST,
                "digest": digest(n),
                "size": 1234,
                "annotations": {
                    "com.docker.official-images.bashbrew.arch": arch,
                    "org.opencontainers.image.base.name": "x",
                },
                "platform": {"architecture": arch, "os": "linux", **({"variant": variant} if variant else {})},
            }
            for n, (arch, variant) in enumerate(PLATFORMS)
        ],
    }
).encode()
MANIFEST = json.dumps(
    {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest(99), "size": 7000},
        "layers": [
            {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digest(n), "size": 3_000_000 + n}
            for n in range(12)
        ],
        "annotations": {"org.opencontainers.image.created": "2024-05-01T00:00:00Z"},
    }
).encode()
CONFIG = json.dumps(
    {
        "architecture": "amd64",
        "os": "linux",
        "created": "2024-05-01T00:00:00Z",
        "config": {"Env": [f"V{n}=value-{n}" for n in range(10)], "Cmd": ["/bin/sh"], "WorkingDir": "/app"},
        "rootfs": {"type": "layers", "diff_ids": [digest(1000 + n) for n in range(12)]},
        "history": [{"created": "2024-05-01T00:00:00Z", "created_by": f"RUN step {n} " + "x" * 80} for n in range(20)],
    }
).encode()


def measure(name: str, body: bytes, parse: Callable[[], object], rounds: int) -> None:
    for _ in range(50):
        parse()
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        parse()
        times.append((time.perf_counter() - started) * 1e6)
    times.sort()
    p99 = times[min(len(times) - 1, round(0.99 * (len(times) - 1)))]
    print(f"{name:9} {len(body):6} bytes  median {statistics.median(times):7.1f} us  p99 {p99:7.1f} us")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2000)
    rounds = parser.parse_args().rounds
    measure("index", INDEX, lambda: parse_manifest(INDEX, OCI_INDEX), rounds)
    measure("manifest", MANIFEST, lambda: parse_manifest(MANIFEST, OCI_MANIFEST), rounds)
    measure("config", CONFIG, lambda: parse_config(CONFIG), rounds)


if __name__ == "__main__":
    main()
