"""The serving process's settings (``ServerSettings``) and how it is started.

``imagegate serve`` checks its options, encodes them as ``ServerSettings`` and replaces itself
with ``python -m SERVING_MODULE SETTINGS_JSON`` (``serving.py``), whose workers build their
app from the same settings. Apart from the server so that the command line states them
without loading it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import msgspec

from imagegate.shell.webhook.serve_defaults import (
    DEFAULT_HOST,
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_PORT,
    DEFAULT_REQUEST_TIMEOUT,
    DEFAULT_WORKERS,
)

__all__ = ["SERVING_MODULE", "SHUTDOWN_GRACE_SECONDS", "ServerSettings"]

SERVING_MODULE = (
    "imagegate.shell.webhook.serving"  # what `imagegate serve` runs: python -m SERVING_MODULE SETTINGS_JSON
)
SHUTDOWN_GRACE_SECONDS = 15.0  # in-flight requests finish; the kubelet waits 30 s by default


@dataclass(frozen=True)
class ServerSettings:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    tls_cert: Path | None = None
    tls_key: Path | None = None
    policy_path: Path | None = None
    grants_path: Path | None = None
    identities_path: Path | None = None
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT
    log_decisions: bool = True
    log_level: str = "info"
    log_json: bool = True
    workers: int = DEFAULT_WORKERS
    metrics_per_namespace: bool = False  # one series per namespace: opt-in (docs/deploy.md)
    shutdown_grace: float = SHUTDOWN_GRACE_SECONDS  # how long requests in flight at SIGTERM may take

    def to_json(self) -> str:
        """For the serving process (``shell/webhook/serving.py``), which gets them on its command line."""
        return msgspec.json.encode(self, enc_hook=str).decode()

    @classmethod
    def from_json(cls, text: str) -> ServerSettings:
        return msgspec.json.decode(text, type=cls, dec_hook=lambda kind, value: kind(value))
