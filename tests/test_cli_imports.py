"""The command line loads each command's heavy libraries inside that command (issue 24, item 7).

Every ``imagegate`` call (an operator's, and each of the suite's hundreds of subprocesses) pays
for what the command line imports before it knows the command: the registry client (httpx),
certificate making (cryptography), the cluster client (lightkube), LDAP, sigstore are loaded
only by the commands that use them. What a real process loaded is read as in
test_serving_imports: a ``sitecustomize`` on ``PYTHONPATH`` writes ``sys.modules`` at exit.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import cli_env
from tests.test_serving_imports import HOOK

# Loaded only by the commands that need them (inspect, bases, serve, certs, audit, identities...).
HEAVY = ("httpx", "httpcore", "anyio", "cryptography", "lightkube", "ldap3", "sigstore", "watchfiles", "uvloop")

POD = """\
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: tool-x}
spec:
  containers: [{name: web, image: docker-registry.svc.toolforge.org/toolforge-python311-sssd-web:latest}]
"""


def loaded_by(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    hook, modules = tmp_path / "hook", tmp_path / "modules"
    hook.mkdir(exist_ok=True)
    modules.mkdir(exist_ok=True)
    (hook / "sitecustomize.py").write_text(HOOK)
    env = cli_env(IMAGEGATE_TEST_MODULES_DIR=str(modules))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(hook), os.environ.get("PYTHONPATH", "")) if p)
    result = subprocess.run(
        [sys.executable, "-m", "imagegate", *args], capture_output=True, text=True, env=env, timeout=60, check=False
    )
    (dump,) = modules.glob("*.modules")
    _command, *loaded = dump.read_text().splitlines()
    dump.unlink()
    return result, set(loaded)


@pytest.mark.parametrize("args", [("--help",), ("check", "--help"), ("check", "pod.yaml")], ids=" ".join)
def test_the_command_line_leaves_heavy_libraries_to_their_commands(tmp_path: Path, args: tuple[str, ...]) -> None:
    (tmp_path / "pod.yaml").write_text(POD)
    result, loaded = loaded_by(tmp_path, *(str(tmp_path / arg) if arg.endswith(".yaml") else arg for arg in args))
    assert result.returncode in (0, 1), result.stderr
    packages = {name.split(".")[0] for name in loaded}
    assert not packages & set(HEAVY), sorted(packages & set(HEAVY))
    assert "imagegate.shell.cli.main" in loaded  # the command line did run


def test_a_command_that_needs_cryptography_loads_it(tmp_path: Path) -> None:
    """The other side: ``certs`` does load it (the check above would pass on a broken hook too)."""
    result, loaded = loaded_by(tmp_path, "certs", "--out", str(tmp_path / "tls"))
    assert result.returncode == 0, result.stderr
    assert "cryptography" in {name.split(".")[0] for name in loaded}
