"""A command forked from the tests' fork server (tests/cli_forkserver.py) is the command a fresh interpreter runs.

Each case runs the same ``imagegate`` command both ways, a fresh ``python -m imagegate`` and
``run_imagegate`` (forked), and compares what a test can see: exit status, stdout, stderr. The
commands read stdin, a path relative to the working directory, the environment (``COLUMNS``), and
fail on bad input; a command that outlives its timeout is killed, as ``subprocess.run`` kills it,
and a command still running ends when the fork server or the test process ends, however they end.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.cli_forkserver import FRESH_ENV, ForkServer, startup_alike
from tests.conftest import POLICY_HEADER, REPO_ROOT, cli_env, run_imagegate
from tests.processes import children_of, running, start

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


def _hanging_ldap(port: int) -> list[str]:
    """A command that waits (up to 10 minutes) for an LDAP server that accepts and never answers."""
    return ["identities", "ldap", "--url", f"ldap://127.0.0.1:{port}", "--base-dn", "dc=x", "--timeout", "600"]


def _ends(pids: list[int], connection: socket.socket) -> None:
    """Each of ``pids`` ends within seconds, ``connection`` (the command's) kept open meanwhile (a
    command sees its end and exits by itself); one left running is killed by its PID, for the
    assertion that follows."""
    with connection:
        deadline = time.monotonic() + 10
        while any(map(running, pids)) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = [pid for pid in pids if running(pid)]
        for pid in left:
            os.kill(pid, signal.SIGKILL)
        assert not left
        connection.settimeout(10)
        while connection.recv(4096):  # the LDAP bind request, then end of stream: the command is gone
            pass


@pytest.mark.skipif(sys.platform != "linux", reason="the parent-death signal is Linux's (prctl)")
def test_a_running_command_ends_when_the_fork_server_is_killed() -> None:
    """The server SIGKILLed while a command runs (it cannot kill its commands then): the command,
    its child, is sent SIGTERM by the kernel (PR_SET_PDEATHSIG), not left waiting 10 minutes."""
    forks = ForkServer(cli_env())
    try:
        with socket.create_server(("127.0.0.1", 0)) as server:
            server.settimeout(60)
            failed: list[BaseException] = []

            def command() -> None:
                try:
                    forks.run(_hanging_ldap(server.getsockname()[1]), cli_env(), None, timeout=120)
                except BaseException as exc:  # the server is killed under it: expected
                    failed.append(exc)

            thread = threading.Thread(target=command, daemon=True)
            thread.start()
            connection = server.accept()[0]  # the command is running
            (pid,) = children_of(forks.process.pid)
            forks.process.kill()
            forks.process.wait()
            _ends([pid], connection)
            thread.join(30)
            assert failed and isinstance(failed[0], RuntimeError)  # "lost the command"
    finally:
        forks.stop()


TEST_PROCESS = """
import sys
from tests.cli_forkserver import ForkServer
from tests.conftest import cli_env
forks = ForkServer(cli_env())
print(forks.process.pid, flush=True)
forks.run(sys.argv[1:], cli_env(), None, timeout=600)
"""


@pytest.mark.skipif(sys.platform != "linux", reason="the parent-death signal is Linux's (prctl)")
def test_a_running_command_ends_when_the_test_process_is_killed() -> None:
    """A test process SIGKILLed (a CI timeout) while its command runs: the fork server and the
    command end (the server's stdin closes; the command follows the server)."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.settimeout(60)
        test_process = start(
            [sys.executable, "-c", TEST_PROCESS, *_hanging_ldap(server.getsockname()[1])],
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO_ROOT,
            env=cli_env(),
        )
        try:
            assert test_process.stdout is not None
            forks = int(test_process.stdout.readline())
            connection = server.accept()[0]
            (pid,) = children_of(forks)
            test_process.kill()
            test_process.wait()
            _ends([forks, pid], connection)
        finally:
            test_process.kill()
            test_process.wait()
