"""The ``imagegate`` command line: its entry point; the commands live in the cli_* modules."""

from __future__ import annotations

import copy
import os
import sys
from typing import Annotated, Any

import typer

# typer >= 0.29 carries its own click (typer._click): its option parser raises these.
from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError
from typer.main import get_command_name

from imagegate.shell.cli.common import app, fail
from imagegate.shell.exits import DEBUG_ENV, EXIT_BAD_INPUT, report_internal_error

# isort: off
# Importing a command module registers its commands on ``app``, in this order in --help.
from imagegate.shell.cli import check  # noqa: F401
from imagegate.shell.cli import serve  # noqa: F401
from imagegate.shell.cli import identities  # noqa: F401
from imagegate.shell.cli import ops  # noqa: F401
from imagegate.shell.cli import bases  # noqa: F401
from imagegate.shell.cli import grants  # noqa: F401
from imagegate.shell.cli import contents  # noqa: F401
from imagegate.shell.cli import reports  # noqa: F401
from imagegate.shell.cli import scan  # noqa: F401
from imagegate.shell.cli import policytest  # noqa: F401
# isort: on

__all__ = ["app", "app_for", "main", "report_internal_error"]


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
        # Not standalone: click's errors come here, to be said as every other bad input is.
        args = sys.argv[1:] if argv is None else argv
        code = app_for(args)(args=args, standalone_mode=False)
    except NoArgsIsHelpError as exc:
        exc.show()  # a bare command group: its help is the answer
        sys.exit(EXIT_BAD_INPUT)
    except UsageError as exc:
        sys.exit(_usage_error(exc))
    except ClickException as exc:
        fail(exc.format_message())
        sys.exit(exc.exit_code)
    except typer.Abort:
        sys.stderr.write("imagegate: aborted\n")
        sys.exit(1)
    except Exception as exc:
        sys.exit(report_internal_error(exc))
    # typer.Exit comes back as its code; a command that returns gives None (success)
    sys.exit(code if isinstance(code, int) else 0)


def app_for(args: list[str]) -> typer.Typer:
    """The app with only the command (or command group) ``args`` name: typer builds every
    registered command's options, inspecting each signature, before it dispatches to one (about
    35 ms of each call's CPU for all of them, 2 ms for one). With no command, ``--help`` before
    it or a name that is not a command, the whole app (its list of commands, its suggestions)."""
    for arg in args:
        if arg == "--debug":  # the one global option before the command
            continue
        if arg.startswith("-"):
            return app
        commands = [c for c in app.registered_commands if _command_name(c) == arg]
        groups = [g for g in app.registered_groups if g.name == arg]
        if not commands and not groups:
            return app
        only = copy.copy(app)
        only.registered_commands, only.registered_groups = commands, groups
        return only
    return app


def _command_name(command: typer.models.CommandInfo) -> str | None:
    if command.name:
        return command.name
    return get_command_name(command.callback.__name__) if command.callback is not None else None


def _usage_error(exc: UsageError) -> int:
    """An option-parser error as one ``error:`` line (click prints a usage box of four), naming the help."""
    command = exc.ctx.command_path if exc.ctx is not None else "imagegate"
    fail(f"{exc.format_message()} (see {command} --help)")
    return EXIT_BAD_INPUT
