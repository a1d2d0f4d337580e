"""Changes to a few files, noticed by polling their status.

The webhook watches three or four small files (policy, grants, identities, the TLS pair).
Polling ``stat`` through each path once a second notices every way they change: the
kubelet's ``..data`` symlink swap of a ConfigMap or Secret volume (the path then leads to
another inode), an editor's rename, a plain write (size, mtime or ctime), a file that
appears or goes. It costs a few system calls a second and no thread, where an inotify
watcher library brought a thread and a tenth of a worker's memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

__all__ = ["POLL_SECONDS", "changes"]

POLL_SECONDS = 1.0

_Status = tuple[int, int, int, int, int] | None


def _status(paths: Sequence[Path]) -> list[_Status]:
    found: list[_Status] = []
    for path in paths:
        try:
            st = os.stat(path)  # follows symlinks: a ..data swap is a new inode
        except OSError:
            found.append(None)
            continue
        found.append((st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))
    return found


async def changes(paths: Sequence[Path], stop: asyncio.Event, *, interval: float = POLL_SECONDS) -> AsyncIterator[None]:
    """Yield once after each poll that finds one of ``paths`` changed, until ``stop`` is set."""
    last = _status(paths)
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval)
        if stop.is_set():
            return
        now = _status(paths)
        if now != last:
            last = now
            yield
