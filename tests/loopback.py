"""Loopback ports for the real processes the tests and the benchmarks start.

Free of pytest and of the test extras: ``bench/`` imports the registry helpers that use it, and
the benchmarks run with ``pip install '.[bench]'`` alone.
"""

from __future__ import annotations

import socket


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port
