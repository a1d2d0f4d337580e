"""The long-lived processes tests start (servers, a cluster), ended with the process that started
them, however it ends.

A fixture stops what it started, by PID, in its teardown; but a test process killed by a signal
(SIGKILL from a CI timeout or ``timeout``) runs no teardown, and its servers would keep running,
holding their ports, their directories and the machine's cores. So every such process is started
through :func:`start` (or with :func:`ending_with_this_process` as a ``preexec_fn``): on Linux the
child asks the kernel (``prctl(PR_SET_PDEATHSIG, SIGTERM)``, through the product's own
``imagegate.shell.parent_death``) to be sent SIGTERM when its parent ends. The setting survives
``execve`` (``imagegate serve`` execs its server and keeps it) but not ``fork``: a server's own
children are its to stop (``serve``'s workers ask for the same signal themselves).

The signal follows the *thread* that forked the child (prctl(2)): a server started from a thread
would be sent SIGTERM when that thread ends. Tests run on the main thread (pytest's, and xdist's
workers' too: execnet's ``main_thread_only``), so :func:`start` refuses any other.

A process started by a script that puts it in the background and exits (``../shared/kube/
cluster.sh start``: ``setsid ... &``) has the script for parent, gone by then; the kernel signals
nothing when the test process ends. :func:`stopped_with_this_process` runs a watchdog that runs
the script's own stop command (``cluster.sh stop DIR``: by the PIDs it recorded) if this process
ends first: it waits for the end of a pipe only this process holds, which the kernel closes
however it ends.

Free of pytest, as tests/loopback.py: ``bench/`` starts its registries through these helpers.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from imagegate.shell.parent_death import SUPPORTED, end_with_parent

__all__ = ["children_of", "ending_with_this_process", "running", "start", "stopped_with_this_process"]

# A stop command run when its stdin ends (this process gone): `read` fails at the end of input.
_WATCHDOG = 'while read -r _; do :; done; exec "$@"'


def ending_with_this_process() -> Callable[[], None] | None:
    """A ``preexec_fn`` that has the child sent SIGTERM when this process ends (Linux; None elsewhere)."""
    if not SUPPORTED:
        return None
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError(
            "start long-lived processes from the main thread: the parent-death signal is sent when "
            "the thread that forked the child ends (prctl(2) PR_SET_PDEATHSIG)"
        )
    parent = os.getpid()

    def in_the_child() -> None:
        end_with_parent(parent, signal.SIGTERM)

    return in_the_child


def start(command: Sequence[str | Path], **popen: Any) -> subprocess.Popen[Any]:
    """:class:`subprocess.Popen`, the child sent SIGTERM when this process ends. The caller still
    stops it by PID (terminate, wait, kill): this is for when no teardown runs."""
    return subprocess.Popen(command, preexec_fn=ending_with_this_process(), **popen)  # noqa: PLW1509 (the child calls prctl only, looked up before the fork)


@contextmanager
def stopped_with_this_process(stop: Sequence[str | Path]) -> Iterator[None]:
    """Run ``stop`` if this process ends inside the block (killed: no teardown), for processes
    started by a script that does not stay their parent. The block's own teardown stops them as
    before; leaving the block ends the watchdog (by PID) without running ``stop``."""
    watchdog = subprocess.Popen(
        ["bash", "-c", _WATCHDOG, "watchdog", *map(str, stop)],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # not in the test process's group: a ^C there is for the tests
    )
    try:
        yield
    finally:
        watchdog.kill()  # SIGKILL: not a stop of its own
        watchdog.wait()
        if watchdog.stdin is not None:
            watchdog.stdin.close()


def _state_and_parent(pid: int | str) -> tuple[str, int] | None:
    """A process's state letter and parent PID from /proc (Linux), None if it is gone."""
    try:
        # pid (comm) state ppid ...: comm may hold spaces and parentheses, so split after the last ")"
        state, ppid = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[:2]
    except (OSError, ValueError):
        return None
    return state, int(ppid)


def running(pid: int) -> bool:
    """Whether ``pid`` runs: neither gone nor a zombie (an orphan's reaper may be slow, or absent)."""
    found = _state_and_parent(pid)
    return found is not None and found[0] != "Z"


def children_of(pid: int) -> list[int]:
    """The running children of ``pid`` (Linux, from /proc)."""
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            found = _state_and_parent(entry.name)
            if found is not None and found[1] == pid and found[0] != "Z":
                children.append(int(entry.name))
    return children
