"""The benchmark scripts are run by hand, not by the tests: at least check that each still
loads (a rename in one script once broke another's import unnoticed), that they run with the
bench extras alone (no pytest), and that the checks they make of every answer catch a wrong one:
the soak and the big-pod benchmark briefly, for real, and the server benchmark's mix check
against a real webhook."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO_ROOT, cli_env
from tests.loopback import free_port
from tests.processes import ending_with_this_process
from tests.webhook_process import run_webhook

BENCH = REPO_ROOT / "bench"
SCRIPTS = ("bigpod_bench", "fixed_response", "registry_bench", "reviews", "server_bench", "soak")


@pytest.fixture
def bench_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(BENCH))  # the scripts import each other as they do when run
    for loaded in SCRIPTS:
        monkeypatch.delitem(sys.modules, loaded, raising=False)


@pytest.mark.parametrize("name", sorted(path.stem for path in BENCH.glob("*.py")))
def test_benchmark_script_loads(name: str, bench_path: None) -> None:
    module = importlib.import_module(name)
    assert callable(getattr(module, "main", None)) or name == "reviews"


def test_benchmark_scripts_need_neither_pytest_nor_the_test_extras() -> None:
    """README: ``pip install '.[bench]'``, then the command. The tests' extras are not installed then.

    One process imports every script (a blocked module fails the import of whichever script asks
    for it, whatever was imported before): each failure is named, and 20 interpreters are not
    started for it."""
    names = sorted(path.stem for path in BENCH.glob("*.py"))
    assert len(names) > 10
    code = (
        "import importlib, sys, traceback\n"
        "for name in ('pytest', 'hypothesis', 'jsonpatch'):\n"
        "    sys.modules[name] = None\n"
        f"sys.path.insert(0, {str(BENCH)!r})\n"
        "failed = 0\n"
        "for name in sys.argv[1:]:\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except BaseException:\n"
        "        failed += 1\n"
        "        print(f'bench/{name}.py:', traceback.format_exc(), file=sys.stderr)\n"
        "print('imported', len(sys.argv) - 1 - failed)\n"
        "sys.exit(1 if failed else 0)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, *names], capture_output=True, text=True, cwd=REPO_ROOT, env=cli_env(), check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["imported", str(len(names))]


def run_script(name: str, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(BENCH / f"{name}.py"), *args],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env=cli_env(),
        timeout=timeout,
        check=False,
        preexec_fn=ending_with_this_process(),  # its servers end with it (tests/processes.py)
    )


# A brief soak: every disturbance once, against docker-registry and a real server.
BRIEF_SOAK = ("--minutes", "0.15", "--rate", "60", "--step-seconds", "1.5", "--freeze-seconds", "2")


def test_a_brief_soak_gets_every_answer_right() -> None:
    result = run_script("soak", *BRIEF_SOAK)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "failed: 0; unexpected answers: 0" in result.stdout
    for body, right in (("trusted", "allowed"), ("granted", "allowed"), ("foreign", "denied")):
        assert f"| {body} | steady | {right} |" in result.stdout


def test_a_soak_that_gets_a_wrong_answer_fails() -> None:
    """The foreign image trusted by mistake: its answers are wrong, and the soak must say so."""
    result = run_script("soak", *BRIEF_SOAK, "--trust-foreign")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAILED: foreign in steady: allowed, expected denied" in result.stderr
    assert "unexpected answers: 0" not in result.stdout


def test_the_soaks_right_answers(bench_path: None) -> None:
    soak: Any = importlib.import_module("soak")
    up, cached, frozen = (soak.Phase(n, r) for n, r in (("a", "up"), ("b", "frozen-cached"), ("c", "frozen")))
    assert soak.expected("granted", up, "deny") == {"allowed"}
    assert soak.expected("granted", cached, "deny") == {"allowed", "denied"}
    assert soak.expected("granted", frozen, "deny") == {"denied"}
    assert soak.expected("granted", frozen, "allow") == {"allowed"}
    assert soak.expected("foreign", up, "allow") == {"denied"}
    assert soak.expected("trusted", frozen, "deny") == {"allowed"}
    tally = soak.Tally()
    tally.record("granted", frozen, frozen, "allowed", "deny", 0.001)  # the frozen registry decided nothing
    tally.record("granted", up, frozen, "denied", "deny", 0.001)  # frozen in flight: either is right
    tally.record("foreign", up, up, "denied otherwise: blocked-registry", "deny", 0.001)  # denied, by another rule
    assert tally.wrong == 2
    assert tally.counts[("granted", "c", "unexpected")] == 1
    assert tally.counts[("granted", "a", "denied")] == 1
    assert tally.counts[("foreign", "a", "unexpected")] == 1


def test_the_server_benchmark_checks_its_mix(bench_path: None, tmp_path: Path) -> None:
    server_bench: Any = importlib.import_module("server_bench")
    reviews: Any = importlib.import_module("reviews")
    assert server_bench.ALLOWED_SHARE == 1
    assert server_bench.check_share({"validate/allowed": 9.0, "mutate/allowed": 3.0}) == []
    assert server_bench.check_share({"validate/allowed": 9.0, "validate/denied": 1.0})
    right, wrong = tmp_path / "right.yaml", tmp_path / "wrong.yaml"
    right.write_text(reviews.BENCH_POLICY)
    wrong.write_text(reviews.BENCH_POLICY.replace("  grants:", "  grantz:").split("  grantz:")[0])  # no grant
    for policy, expect_wrong in ((right, []), (wrong, ["ten-container-pod to /validate: allowed=False"])):
        workdir = tmp_path / policy.stem
        workdir.mkdir()
        with run_webhook(workdir, policy=policy) as webhook:
            found = server_bench.check_mix(webhook.url, webhook.tls.ca_cert, reviews.bodies())
            found += server_bench.check_mix(webhook.url, webhook.tls.ca_cert, reviews.bodies(mutated=False), "mutate")
        assert [w.split(", expected")[0] for w in found] == expect_wrong


def test_a_brief_big_pod_benchmark_checks_its_answers() -> None:
    # a free port: the script's default (18543) is a fixed one, and another run may hold it
    result = run_script(
        "bigpod_bench", "--duration", "2", "--shapes", "containers", "--in-flight", "2", "--rate", "50",
        "--port", str(free_port()),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "| 2 x containers" in result.stdout
