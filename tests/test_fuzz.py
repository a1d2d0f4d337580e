"""A smoke run of every coverage-guided fuzzing target (atheris) on each test run.

It holds that each target starts, instruments the code and survives its seeds and a few
thousand inputs; the fuzzing proper is ``scripts/fuzz.sh`` (minutes per target, README).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

SEEDS = {
    "review": REPO_ROOT / "tests" / "fixtures" / "admission",
    "policy": REPO_ROOT / "deploy" / "base",
    "reference": None,
    "registry": None,
}


# Inputs per target: a fixed amount of work, not of time, so that a loaded machine fuzzes as
# much (only slower) and the check below cannot flake; a second or two each: the policy target
# parses multi-kilobyte YAML seeds and runs some 200 inputs a second.
RUNS = {"policy": 100, "reference": 5_000, "registry": 10_000, "review": 3_000}


@pytest.mark.parametrize("target", sorted(SEEDS))
def test_fuzz_target_finds_nothing(target: str, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    seeds = SEEDS[target]
    if seeds is not None:
        for seed in seeds.iterdir():
            shutil.copy(seed, corpus / seed.name)
    result = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "fuzz" / "fuzz_targets.py"),
            target,
            f"-runs={RUNS[target]}",
            "-max_total_time=90",
            "-rss_limit_mb=2048",
            "-timeout=10",
            f"-artifact_prefix={tmp_path}/",
            str(corpus),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    runs = re.search(r"Done (\d+) runs", output)
    assert runs is not None and int(runs.group(1)) >= RUNS[target], output[-2000:]
