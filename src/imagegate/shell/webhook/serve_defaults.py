"""``imagegate serve``'s defaults: one place for ``ServerSettings`` and the command's options.

Its own module, importing nothing, so that the command line states them without loading the
server (uvloop, httptools, prometheus_client) to build its help.
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_PORT",
    "DEFAULT_REQUEST_TIMEOUT",
    "DEFAULT_WORKERS",
]

DEFAULT_HOST = "127.0.0.1"  # loopback: listening in a cluster (0.0.0.0) is said, never assumed
DEFAULT_PORT = 8443
# An AdmissionReview carries the object and the old object; etcd caps objects at 1.5 MiB
# by default, so 8 MiB leaves room for both and refuses anything absurd.
DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024
DEFAULT_REQUEST_TIMEOUT = 10.0  # seconds from a request's first byte to its last
DEFAULT_WORKERS = 1
