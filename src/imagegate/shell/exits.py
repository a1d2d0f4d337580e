"""Exit codes and the one line an internal error gets: shared by the command line and the serving
process (``shell/webhook/serving.py``), which runs without the command line's libraries."""

from __future__ import annotations

import os
import sys
from pathlib import Path

__all__ = ["DEBUG_ENV", "EXIT_BAD_INPUT", "EXIT_DENIED", "EXIT_INTERNAL_ERROR", "EXIT_OK", "report_internal_error"]

EXIT_OK, EXIT_DENIED, EXIT_BAD_INPUT = 0, 1, 2
EXIT_INTERNAL_ERROR = 70  # EX_SOFTWARE (sysexits.h): a bug in imagegate, never bad input
DEBUG_ENV = "IMAGEGATE_DEBUG"


def report_internal_error(exc: BaseException) -> int:
    """One line naming the bug (the traceback with --debug); the exit code that says "a bug"."""
    import traceback  # noqa: PLC0415

    frames = traceback.extract_tb(exc.__traceback__)
    where = ""
    if frames:  # where it was raised, and the last place in imagegate's own code on the way
        where = f" at {Path(frames[-1].filename).name}:{frames[-1].lineno} in {frames[-1].name}"
        ours = [f for f in frames[1:-1] if f"{os.sep}imagegate{os.sep}" in f.filename]
        if ours:
            where += f" (from {Path(ours[-1].filename).name}:{ours[-1].lineno} in {ours[-1].name})"
    if os.environ.get(DEBUG_ENV):
        traceback.print_exception(exc, file=sys.stderr)
    hint = "" if os.environ.get(DEBUG_ENV) else f"; rerun with --debug (or {DEBUG_ENV}=1) for the traceback"
    message = str(exc).splitlines()[0] if str(exc) else ""
    sys.stderr.write(
        f"imagegate: internal error, a bug in imagegate (please report it): "
        f"{type(exc).__name__}{': ' + message if message else ''}{where}{hint}\n"
    )
    return EXIT_INTERNAL_ERROR
