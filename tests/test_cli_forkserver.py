"""A command forked from the tests' fork server (tests/cli_forkserver.py) is the command a fresh interpreter runs.

Each case runs the same ``imagegate`` command both ways, a fresh ``python -m imagegate`` and
``run_imagegate`` (forked), and compares what a test can see: exit status, stdout, stderr. The
commands read stdin, a path relative to the working directory, the environment (``COLUMNS``), and
fail on bad input; a command that outlives its timeout is killed, as ``subprocess.run`` kills it.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.cli_forkserver import FRESH_ENV, startup_alike
from tests.conftest import POLICY_HEADER, REPO_ROOT, cli_env, run_imagegate

POD = '{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "tool-x"}, "spec": {"containers": [{"name": "c", "image": "docker.io/library/nginx:1"}]}}'


def fresh(*args: str, stdin: str | None = None, columns: int = 200) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "imagegate", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=cli_env(COLUMNS=str(columns)),
    )


@pytest.mark.parametrize(
    ("args", "stdin", "columns"),
    [
        (["--help"], None, 200),
        (["check", "--help"], None, 60),  # the width from COLUMNS, read by the command
        (["check", "pod.json"], None, 200),  # relative to the working directory; a denial exits 1
        (["check", "-"], POD, 80),
        (["check", "missing.json"], None, 200),  # bad input: exit 2, a clear error
        (["policy", "validate", "-p", "policy.yaml"], None, 200),
        (["policy", "validate", "-p", "broken.yaml"], None, 200),
        (["policy", "validate", "-p", "-"], "trusted: [\n", 200),
        (["no-such-command"], None, 200),
        (["check", "--no-such-option"], None, 200),
    ],
)
def test_a_forked_command_answers_as_a_fresh_process(
    args: list[str], stdin: str | None, columns: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(FRESH_ENV, raising=False)
    (tmp_path / "pod.json").write_text(POD)
    (tmp_path / "policy.yaml").write_text((REPO_ROOT / "src/imagegate/policies/toolforge.yaml").read_text())
    (tmp_path / "broken.yaml").write_text(POLICY_HEADER + "trusted: [\n")
    monkeypatch.chdir(tmp_path)
    expected = fresh(*args, stdin=stdin, columns=columns)
    forked = run_imagegate(*args, stdin=stdin, columns=columns)
    assert (forked.returncode, forked.stdout, forked.stderr) == (expected.returncode, expected.stdout, expected.stderr)
    assert expected.stdout or expected.stderr  # each case says something


def test_a_command_past_its_timeout_is_killed(monkeypatch: pytest.MonkeyPatch) -> None:
    """An LDAP server that accepts and never answers: the command would wait 10 minutes (its own
    timeout); ``run_imagegate`` gives it 2 s, raises as ``subprocess.run`` does and kills the
    process: the server sees its connection closed (the fork server's reap of a command that was
    not killed would not come within its minute)."""
    monkeypatch.delenv(FRESH_ENV, raising=False)
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        accepted: list[socket.socket] = []
        thread = threading.Thread(target=lambda: accepted.append(server.accept()[0]), daemon=True)
        thread.start()
        with pytest.raises(subprocess.TimeoutExpired):
            run_imagegate(
                "identities", "ldap", "--url", f"ldap://127.0.0.1:{port}", "--base-dn", "dc=x", "--timeout", "600",
                timeout=2,
            )  # fmt: skip
        thread.join(30)
        (connection,) = accepted
        with connection:
            connection.settimeout(30)
            while connection.recv(4096):  # the LDAP bind request, then end of stream: the process is gone
                pass


def test_an_environment_read_at_start_gets_a_fresh_interpreter() -> None:
    """What the interpreter reads as it starts cannot be changed in a forked child: such a command is
    started afresh; the rest of the environment (a kubeconfig, HOME, the width) is the child's own."""
    server = cli_env()
    assert startup_alike(cli_env(KUBECONFIG="/k", HOME="/h", COLUMNS="80"), server)
    for read_at_start in ({"PYTHONPATH": "/elsewhere"}, {"PYTHONHASHSEED": "0"}, {"LC_ALL": "C"}, {"LANG": "C"}):
        assert not startup_alike({**server, **read_at_start}, server), read_at_start
