"""A child process that ends when its parent does, however the parent ends (SIGKILL too).

Linux sends a process a chosen signal when its parent ends if the process asks for it
(``prctl(PR_SET_PDEATHSIG)``, prctl(2)). The request survives ``execve`` but not ``fork``, and
"the parent" is the *thread* that forked the child: a child started from a thread that ends is
sent the signal then. Elsewhere nothing is asked (:data:`SUPPORTED` is False).

``imagegate serve --workers N``'s workers ask for SIGTERM (a graceful stop) from their first line,
so a parent killed outright (the OOM killer) does not leave them serving on the shared port. The
tests' helpers (tests/processes.py, tests/cli_forkserver.py) use the same call for what they start.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

__all__ = ["SUPPORTED", "end_with_parent"]

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
# Looked up at import, never in a forked child (another thread may have held the loader's lock).
_prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform == "linux" else None
SUPPORTED = _prctl is not None


def end_with_parent(parent: int, signum: int = signal.SIGTERM) -> None:
    """Have this process sent ``signum`` when its parent, ``parent`` (a PID read before the fork),
    ends; if it already has (between the fork and this call, or it was never our parent), send it
    now. Async-signal-safe enough for a ``preexec_fn``: one prctl call, getppid, kill. Raises
    OSError if the kernel refuses; does nothing where prctl does not exist."""
    if _prctl is None:
        return
    if _prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent:  # the parent ended before the request: the kernel will send nothing
        os.kill(os.getpid(), signum)
