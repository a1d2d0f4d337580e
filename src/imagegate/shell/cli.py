"""The ``imagegate`` command line: its entry point; the commands live in the cli_* modules."""

from __future__ import annotations

import os
import sys
from typing import Annotated, Any

import typer

from imagegate.shell.cli_common import app
from imagegate.shell.exits import DEBUG_ENV, report_internal_error

# isort: off
# Importing a command module registers its commands on ``app``, in this order in --help.
from imagegate.shell import cli_check  # noqa: F401
from imagegate.shell import cli_serve  # noqa: F401
from imagegate.shell import cli_identities  # noqa: F401
from imagegate.shell import cli_ops  # noqa: F401
from imagegate.shell import cli_bases  # noqa: F401
from imagegate.shell import cli_grants  # noqa: F401
# isort: on

__all__ = ["app", "main", "report_internal_error"]


@app.callback()
def _global_options(
    debug: Annotated[
        bool, typer.Option("--debug", help=f"Print the traceback of an internal error (or set {DEBUG_ENV}=1).")
    ] = False,
) -> None:
    if debug:
        os.environ[DEBUG_ENV] = "1"  # also seen by the server's worker processes


def main(argv: list[str] | None = None) -> Any:
    """Entry point for the ``imagegate`` script: bad input exits 2, a bug 70, never a bare traceback."""
    try:
        return app(args=argv)
    except Exception as exc:
        sys.exit(report_internal_error(exc))
