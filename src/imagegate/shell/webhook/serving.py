"""The process ``imagegate serve`` becomes: ``python -m imagegate.shell.webhook.serving SETTINGS_JSON``.

The command line checks the options, makes the development certificate and then replaces
itself with this (``os.execv``: the same pid), so a serving process, and each of its
workers (spawned with this as their main module), loads only what serving needs: not typer
or rich, the cluster client, the reports, nor the registry client while no rule of the
policy needs a registry. ``tests/test_serving_imports.py`` holds it to that.
"""

from __future__ import annotations

import sys

if __name__ in ("__main__", "__mp_main__"):  # the serving process or one of its workers, never an importer
    # structlog renders exceptions with rich when it can import it; a plain traceback is what a
    # JSON log line holds anyway, and rich with pygments is a tenth of a worker's memory.
    sys.modules.setdefault("rich", None)  # type: ignore[arg-type]
    # httpx's __init__ imports its command-line client (click, pygments, rich) whenever they are
    # installed, and typer installs them; a None entry makes that import fail as httpx allows for.
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]

from imagegate.shell.exits import EXIT_BAD_INPUT, report_internal_error
from imagegate.shell.webhook.listen import ListenError
from imagegate.shell.webhook.settings import SERVING_MODULE, ServerSettings
from imagegate.shell.webhook.workers import run_server

__all__ = ["main"]


def main(argv: list[str]) -> int:
    """Serve with the settings the command line encoded; its exit codes (2 bad input, 70 a bug)."""
    if len(argv) != 1:
        sys.stderr.write(f"usage: python -m {SERVING_MODULE} SETTINGS_JSON (run by `imagegate serve`)\n")
        return EXIT_BAD_INPUT
    try:
        return run_server(ServerSettings.from_json(argv[0]))
    except ListenError as exc:  # lost a race for the port after the command line's check
        sys.stderr.write(f"error: {exc}\n")
        return EXIT_BAD_INPUT
    except Exception as exc:
        return report_internal_error(exc)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
