"""Structured logs: one JSON object per line on stderr."""

from __future__ import annotations

import os
import sys
from enum import StrEnum
from typing import Any

__all__ = ["LogLevel", "configure_logging", "get_logger"]


class LogLevel(StrEnum):
    """The levels ``--log-level`` takes (a closed set: a typo is refused, not a traceback)."""

    debug = "debug"
    info = "info"
    warning = "warning"
    error = "error"


def _colours_wanted() -> bool:
    """ANSI colours only for a person at a terminal: never in a file, a pipe or a pod's log."""
    if os.environ.get("NO_COLOR"):  # https://no-color.org
        return False
    return sys.stderr.isatty()


# What configure_logging was asked for, applied when structlog loads: a command that loads no
# module that logs (check, audit --from, grants...) never pays for structlog and the rich
# traceback renderer it brings.
_wanted: tuple[str, bool] | None = None
_applied = False


def configure_logging(level: str = "info", *, json: bool = True) -> None:
    """JSON lines for machines (the default in a cluster); key=value for people, coloured on a terminal.

    Applied at once when a module that logs is loaded already, else by :func:`get_logger` when
    the first one loads."""
    global _wanted, _applied
    LogLevel(level)  # a wrong level is refused here, not when the first logger loads
    _wanted, _applied = (level, json), False
    if "structlog" in sys.modules:
        _apply()


def get_logger(name: str) -> Any:
    """A module's logger (structlog's lazy proxy), with the configuration asked for applied."""
    import structlog  # noqa: PLC0415

    if not _applied:
        _apply()
    return structlog.get_logger(name)


def _apply() -> None:
    global _applied  # noqa: PLW0603
    if _wanted is None:
        return
    import logging  # noqa: PLC0415

    import structlog  # noqa: PLC0415

    level, json = _wanted
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=_colours_wanted())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[LogLevel(level).upper()]),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    _applied = True
