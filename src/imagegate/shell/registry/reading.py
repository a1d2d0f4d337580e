"""How imagegate reads what a registry (or its token server) sends: one way, bounded in size and
in time, every failure a :class:`RegistryError` of a named kind.

A registry is whatever a tenant runs behind a name a grant allows, so its answer may be cut
short, framed wrongly, encoded otherwise than it says, stalled after its headers or trickled a
byte at a time. httpx raises its own errors for those while the body streams; here each becomes a
:class:`RegistryErrorKind` that the policy's ``onError`` (or pinning's warning) handles, never an
internal error.

* :func:`send` sends one request, streamed (redirects are the caller's: httpx would read a
  redirect's or a refused request's body whole, unbounded);
* :func:`read_body` reads a body: at most ``limit`` bytes before and after decoding, ``gzip``
  (the one encoding we ask for, as Go's net/http does) decoded here, step by step, so a small
  compressed body cannot inflate past the limit in one go; any other encoding is refused;
* :func:`~imagegate.shell.registry.errors.deadline` puts one deadline on a whole exchange, body
  included: httpx's own timeout is per network read, which a body trickled a byte at a time
  never trips.
"""

from __future__ import annotations

import ssl
import zlib
from pathlib import Path

import httpx

from imagegate.shell.registry.errors import RegistryError, RegistryErrorKind

__all__ = ["ACCEPT_ENCODING", "read_body", "send", "transport_error"]

# What we ask for: gzip or nothing, as Go's net/http asks (and decodes) by default.
ACCEPT_ENCODING = "gzip"
_IDENTITY = ("", "identity")
# h11 names an answer whose connection closed before its body ended (Content-Length or last chunk)
# this way; any other protocol error is a malformed answer.
_CUT_SHORT = "peer closed connection without sending complete message body"


def transport_error(exc: Exception, host: str, what: str, ca_file: Path | None = None) -> RegistryError:
    """The :class:`RegistryError` for what httpx raised while talking to ``host`` about ``what``."""
    kind = RegistryErrorKind
    if isinstance(exc, httpx.TimeoutException):
        return RegistryError(kind.TIMEOUT, f"{host} stopped answering (no data for longer than allowed): {what}")
    if isinstance(exc, httpx.DecodingError):
        return RegistryError(kind.ENCODING, f"{host} sent {what} that does not decode as its Content-Encoding says")
    if isinstance(exc, httpx.ProtocolError):
        if str(exc).startswith(_CUT_SHORT):
            return RegistryError(kind.TRUNCATED, f"{host} ended {what} early: {exc}")
        return RegistryError(kind.PROTOCOL, f"{host} sent {what} that is not valid HTTP/1.1: {exc}")
    if isinstance(exc, httpx.InvalidURL | httpx.UnsupportedProtocol):
        return RegistryError(kind.PROTOCOL, f"{host} sent us to a URL we cannot use for {what}: {exc}")
    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, ssl.SSLError):
        cause = cause.__cause__ or cause.__context__
    if isinstance(cause, ssl.SSLCertVerificationError):
        trusted = f"the CA in {ca_file}" if ca_file else "the system's CAs"
        return RegistryError(
            kind.TLS,
            f"{host}: TLS certificate verification failed ({cause.verify_message}): {trusted} do not vouch for "
            "it (registry.caFile, or inspect --ca-file, names the CA to trust)",
        )
    if isinstance(cause, ssl.SSLError):
        return RegistryError(kind.TLS, f"{host}: the TLS handshake failed: {cause.reason or cause}")
    return RegistryError(kind.UNREACHABLE, f"{host} is unreachable ({what}): {exc!r}")


async def send(
    http: httpx.AsyncClient, request: httpx.Request, host: str, what: str, ca_file: Path | None = None
) -> httpx.Response:
    """Send ``request`` and return its response once the headers are in, the body still to read."""
    try:
        return await http.send(request, stream=True, follow_redirects=False)
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        raise transport_error(exc, host, what, ca_file) from None


async def read_body(response: httpx.Response, limit: int, host: str, what: str) -> bytes:
    """The decoded body of a streamed ``response``, at most ``limit`` bytes (sent, and decoded).

    Closes the response. Raises a :class:`RegistryError`: ``too-large``, ``encoding`` (an
    encoding we did not ask for, or a body that does not decode as it says), ``truncated``,
    ``protocol`` or ``timeout``.
    """
    try:
        encoding = response.headers.get("Content-Encoding", "").strip().lower()
        if encoding not in _IDENTITY and encoding != ACCEPT_ENCODING:
            raise RegistryError(
                RegistryErrorKind.ENCODING,
                f"{host} sent {what} in the {encoding!r} encoding, which imagegate never asks for",
            )
        declared = response.headers.get("Content-Length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise RegistryError(RegistryErrorKind.TOO_LARGE, f"{what} is {declared} bytes; the limit is {limit}")
        decoder = _Gunzip(limit, host, what) if encoding == ACCEPT_ENCODING else None
        chunks: list[bytes] = []
        size = 0
        try:
            async for chunk in response.aiter_raw():
                size += len(chunk)
                if size > limit:
                    raise RegistryError(RegistryErrorKind.TOO_LARGE, f"{what} is larger than {limit} bytes")
                chunks.append(chunk if decoder is None else decoder.feed(chunk))
        except httpx.HTTPError as exc:
            raise transport_error(exc, host, what) from None
        if decoder is not None:
            decoder.finish()
        return b"".join(chunks)
    finally:
        await response.aclose()


class _Gunzip:
    """gzip decoded as Go's gzip.Reader does (members one after another), never past ``limit`` bytes,
    and complete: a stream cut short, or followed by bytes that are not gzip, is an ``encoding`` error."""

    def __init__(self, limit: int, host: str, what: str) -> None:
        self.limit, self.host, self.what = limit, host, what
        self.size = 0
        self._member = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self._started = False  # bytes of the current member were fed

    def _error(self, why: str) -> RegistryError:
        return RegistryError(
            RegistryErrorKind.ENCODING, f"{self.host} sent {self.what} with Content-Encoding: gzip, but {why}"
        )

    def feed(self, data: bytes) -> bytes:
        out: list[bytes] = []
        while data:
            self._started = True
            try:
                # at most what the limit leaves (plus one, to see it crossed): no inflating past it in one step
                piece = self._member.decompress(data, self.limit - self.size + 1)
            except zlib.error as exc:
                raise self._error(f"it does not decode ({exc})") from None
            self.size += len(piece)
            if self.size > self.limit:
                raise RegistryError(RegistryErrorKind.TOO_LARGE, f"{self.what} is larger than {self.limit} bytes")
            out.append(piece)
            if self._member.eof:  # another member may follow
                data = self._member.unused_data
                self._member = zlib.decompressobj(16 + zlib.MAX_WBITS)
                self._started = False
            else:
                data = self._member.unconsumed_tail
        return b"".join(out)

    def finish(self) -> None:
        if self._started and not self._member.eof:
            raise self._error("the gzip stream ends before it is complete")
