"""The benchmark scripts are run by hand, not by the tests: at least check that each still
loads (a rename in one script once broke another's import unnoticed)."""

from __future__ import annotations

import importlib
import sys

import pytest

from tests.conftest import REPO_ROOT

BENCH = REPO_ROOT / "bench"


@pytest.mark.parametrize("name", sorted(path.stem for path in BENCH.glob("*.py")))
def test_benchmark_script_loads(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(BENCH))  # the scripts import each other as they do when run
    for loaded in ("fixed_response", "registry_bench", "reviews", "server_bench", "soak"):
        monkeypatch.delitem(sys.modules, loaded, raising=False)
    module = importlib.import_module(name)
    assert callable(getattr(module, "main", None)) or name == "reviews"
