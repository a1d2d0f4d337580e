"""TLS certificate reload: a renewed pair swapped into the live ``SSLContext`` (``TlsReloader``)."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import tempfile
from pathlib import Path

from imagegate.shell.filewatch import changes
from imagegate.shell.logs import get_logger
from imagegate.shell.webhook.metrics import Metrics

__all__ = ["TlsReloader"]

log = get_logger("imagegate.server")


class TlsReloader:
    """Swaps a new certificate into the live SSLContext when its files change.

    The pair is copied to a private directory and checked there first, so the live
    context only ever loads a pair that is known to match (cert-manager writes the
    certificate and key as two files; a half-written pair is refused and the old one
    keeps serving). Existing connections keep their session; new handshakes get the
    new certificate.
    """

    def __init__(self, cert: Path, key: Path, context: ssl.SSLContext, metrics: Metrics) -> None:
        self.cert, self.key, self.context, self.metrics = cert, key, context, metrics
        self._loaded = self._fingerprint()
        self.last_error: str | None = None

    def _fingerprint(self) -> bytes:
        try:
            return self.cert.read_bytes() + b"\0" + self.key.read_bytes()
        except OSError:
            return b""

    def reload(self) -> bool:
        current = self._fingerprint()
        if current == self._loaded:
            return False
        with tempfile.TemporaryDirectory(prefix="imagegate-tls-") as scratch:
            cert, key = Path(scratch) / "tls.crt", Path(scratch) / "tls.key"
            try:
                shutil.copyfile(self.cert, cert)
                shutil.copyfile(self.key, key)
                # A scratch context first: a load_cert_chain that fails half-way (the certificate
                # taken, the key refused) would leave the live one unable to serve.
                ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert, key)
                self.context.load_cert_chain(cert, key)
            except (OSError, ssl.SSLError) as exc:
                why = str(exc)
                if isinstance(exc, ssl.SSLError) and exc.reason == "KEY_VALUES_MISMATCH":
                    why = f"TLS key {self.key} does not belong to the certificate {self.cert}"
                self.last_error = f"TLS reload refused, keeping the old certificate: {why}"
                log.error("tls reload refused; keeping the old certificate", error=why)
                self.metrics.tls_reloads.labels("error").inc()
                return False
        self._loaded = current
        self.last_error = None
        self.metrics.tls_reloads.labels("ok").inc()
        self.metrics.observe_certificate(self.cert)
        log.info("tls certificate reloaded", cert=str(self.cert))
        return True

    async def watch(self, stop: asyncio.Event) -> None:
        async for _changed in changes([self.cert, self.key], stop):
            self.reload()
