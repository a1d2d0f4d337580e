"""Structured logs: one JSON object per line on stderr."""

from __future__ import annotations

import logging
import os
import sys
from enum import StrEnum

import structlog

__all__ = ["LogLevel", "configure_logging"]


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


def configure_logging(level: str = "info", *, json: bool = True) -> None:
    """JSON lines for machines (the default in a cluster); key=value for people, coloured on a terminal."""
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
