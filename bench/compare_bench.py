"""`imagegate audit --compare` with the four presets on a generated Toolforge of 3,000 tools.

Generates the dump (bench/toolforge_dump.py), then times the command as a user runs it (a
fresh process: start-up, reading the dump, every decision under every option, the table).

    python bench/compare_bench.py [--tools 3000] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from toolforge_dump import write


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tools", type=int, default=3000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        files = write(Path(scratch), args.tools)
        command = [
            sys.executable, "-m", "imagegate", "audit", "--from", str(files["dump"]),
            "--identities", str(files["identities"]), "--grants", str(files["grants"]),
            "--compare", "closed", "byoc", "time-boxed", "selected", "-o", "json",
        ]  # fmt: skip
        times = []
        for _run in range(args.runs):
            start = time.perf_counter()
            result = subprocess.run(command, capture_output=True, text=True, check=False)
            times.append(time.perf_counter() - start)
            if result.returncode not in (0, 1):
                raise SystemExit(result.stderr)
        payload = json.loads(result.stdout)
        print(f"{payload['objects']:,} objects in {args.tools:,} tool namespaces, options: {payload['options']}")
        print(f"denied objects per option: {payload['deniedObjects']}")
        print(f"wall time per run: median {statistics.median(times):.2f} s, min {min(times):.2f} s ({args.runs} runs)")


if __name__ == "__main__":
    main()
