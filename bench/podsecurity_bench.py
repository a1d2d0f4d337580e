"""The Pod Security Standards alone, in process: microseconds per pod spec.

Times ``evaluate`` (what every admission of a tool pod runs) on the benchmark's pods as the
validating webhook sees them (plainly compliant: the shortcut), as users write them (no
security context: every named check runs, and fails), and on upstream's fixtures (every
kind of violation), at the newest and the oldest version a policy may pin, with and without
the tool profile's skips. CPU time of the best of ``--runs`` repeats, so another process on
the machine costs less than it would in a mean of wall times.

    python bench/podsecurity_bench.py [--runs 5] [--number 2000]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import timeit
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from reviews import bodies

from imagegate.core.podprofile import REPLACED_BY_TOOL_PROFILE
from imagegate.core.podsecurity import parse_version
from imagegate.core.podsecurity_shortcut import evaluate

FIXTURES = Path(__file__).resolve().parent.parent.parent / "shared" / "conformance" / "pod-security"


def _specs(mutated: bool) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    found = []
    for body in bodies(mutated=mutated).values():
        obj = json.loads(body)["request"]["object"]
        holder = obj["spec"].get("template", obj)
        found.append((holder.get("metadata") or {}, holder["spec"]))
    return found


def _fixtures(level: str) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    pods = [yaml.safe_load(path.read_text()) for path in sorted((FIXTURES / level / "v1.37").glob("*/*.yaml"))]
    return [(pod.get("metadata") or {}, pod["spec"]) for pod in pods]


def _microseconds(
    pods: list[tuple[dict[str, Any], dict[str, Any]]], version_text: str, skip: frozenset[str], args: argparse.Namespace
) -> float:
    version = parse_version(version_text)

    def run() -> None:
        for metadata, spec in pods:
            evaluate("restricted", version, metadata, spec, skip=skip)

    rounds = max(1, args.number // len(pods))
    # CPU time, not wall time: the machine is shared, and a wait for a core is not our cost
    best = min(timeit.repeat(run, number=rounds, repeat=args.runs, timer=time.process_time))
    return best / rounds / len(pods) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--number", type=int, default=2000, help="pod evaluations per timing")
    args = parser.parse_args()
    sets = {"admitted pods": _specs(True), "as written": _specs(False), "restricted fixtures": _fixtures("restricted")}
    print(f"{'pods':<20} {'version':<8} {'skip':<13} {'µs/pod':>8}")
    for name, pods in sets.items():
        for version_text in ("latest", "v1.25"):
            for skip_name, skip in (("none", frozenset[str]()), ("tool profile", REPLACED_BY_TOOL_PROFILE)):
                took = _microseconds(pods, version_text, skip, args)
                print(f"{name:<20} {version_text:<8} {skip_name:<13} {took:>8.2f}")


if __name__ == "__main__":
    main()
