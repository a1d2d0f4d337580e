"""The servers tests start end with the test process, however it ends (tests/processes.py).

Each test runs a child Python that starts a real server the way the suite's fixtures do, then
kills that child with SIGKILL (as a CI timeout would: no teardown runs) and waits for the server
to be gone.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT
from tests.kube_cluster import _cluster_sh
from tests.processes import ending_with_this_process, start

CHILDREN = {
    # docker-registry, as every registry fixture starts it
    "registry": """
        from tests.registry_process import run_registry
        with run_registry(WORKDIR, "none") as registry:
            said(registry.process.pid)
    """,
    # `imagegate serve`, which execs its server: the parent-death signal survives the exec
    "webhook": """
        from tests.webhook_process import run_webhook
        with run_webhook(WORKDIR) as webhook:
            said(webhook.process.pid)
    """,
    # a server started as ../shared/kube/cluster.sh starts its servers (`setsid ... &`, its PID
    # recorded, the script gone): only the watchdog can stop it, by cluster.sh's own `stop`
    "cluster.sh": """
        from tests.processes import stopped_with_this_process
        (WORKDIR / "run").mkdir(parents=True)
        with stopped_with_this_process(["bash", CLUSTER_SH, "stop", WORKDIR]):
            subprocess.run(
                ["bash", "-c", 'setsid "$@" > /dev/null 2>&1 < /dev/null & echo $! > "$0"', WORKDIR / "run" / "etcd.pid",
                 sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "0"],
                check=True,
            )
            said(int((WORKDIR / "run" / "etcd.pid").read_text()))
    """,
}
PRELUDE = """
import subprocess, sys
from pathlib import Path
WORKDIR, CLUSTER_SH = Path(sys.argv[1]), sys.argv[2]
def said(pid):
    print(pid, flush=True)
    sys.stdin.read()  # until the test kills this process
"""


def _alive(pid: int) -> bool:
    """Running: not gone, and not a zombie nobody reaped yet (it serves nothing either)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


@contextmanager
def _child(name: str, workdir: Path) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """The child Python running CHILDREN[name], and its server's PID; both stopped by PID on exit."""
    code = PRELUDE + textwrap.dedent(CHILDREN[name])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"), str(REPO_ROOT)]))}
    child = start(
        [sys.executable, "-c", code, str(workdir), str(_cluster_sh())],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO_ROOT,
        env=env,
    )
    server = 0
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        assert line.strip().isdigit(), f"the child said {line!r} (exit {child.poll()})"
        server = int(line)
        yield child, server
    finally:
        child.kill()
        child.wait()
        if server and _alive(server):  # the test failed: stop what it started
            os.kill(server, signal.SIGKILL)


@pytest.mark.parametrize("name", sorted(CHILDREN))
def test_a_server_ends_with_the_process_that_started_it(tmp_path: Path, name: str) -> None:
    with _child(name, tmp_path / "work") as (child, server):
        assert _alive(server)
        child.send_signal(signal.SIGKILL)  # no teardown, no finally: a CI timeout's kill
        child.wait(timeout=30)
        deadline = time.monotonic() + 20  # cluster.sh stop allows a server 10 s after SIGTERM
        while _alive(server) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(server), f"{name}: the server (PID {server}) outlived the process that started it"


def test_only_the_main_thread_starts_servers() -> None:
    """A server started from a thread would be sent SIGTERM when that thread ends: refused."""
    failed: list[BaseException] = []

    def starting() -> None:
        try:
            ending_with_this_process()
        except RuntimeError as exc:
            failed.append(exc)

    thread = threading.Thread(target=starting)
    thread.start()
    thread.join()
    assert len(failed) == 1 and "main thread" in str(failed[0])
    assert ending_with_this_process() is not None  # on this (Linux, main) thread
