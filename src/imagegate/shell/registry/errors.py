"""The registry client's one exception and its kinds, apart from the client (httpx): a webhook whose
policy needs no registry catches and names it without loading the client."""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the event loop is the client's: a command naming these errors loads none
    import asyncio

__all__ = ["RegistryError", "RegistryErrorKind", "RequestObserver", "deadline"]


class RegistryErrorKind(enum.StrEnum):
    """What went wrong, one name per class of failure; the values are stable (logs, metrics labels)."""

    # no answer at all
    UNREACHABLE = "unreachable"
    TIMEOUT = "timeout"  # a request or a whole lookup past its deadline, a stall or a trickle included
    # an answer that breaks HTTP itself
    TRUNCATED = "truncated"  # the connection ended before the body did (its Content-Length, its last chunk)
    PROTOCOL = "protocol"  # not HTTP/1.1: a malformed chunk, a bad or conflicting Content-Length
    ENCODING = "encoding"  # a Content-Encoding we did not ask for, or a body that does not decode as it says
    TLS = "tls"
    # an answer we cannot use
    AUTH = "auth"
    RATE_LIMITED = "rate-limited"
    HTTP = "http"  # an unexpected status
    REDIRECTS = "redirects"
    TOO_LARGE = "too-large"
    DIGEST_MISMATCH = "digest-mismatch"
    MALFORMED = "malformed"
    NOT_FOUND = "not-found"
    # ours
    CREDENTIALS = "credentials"  # imagegate's own registry credentials cannot be read
    REFUSED = "refused"  # the registry answered; imagegate refuses what it says (a nested index, too many entries)
    NOT_CONTACTED = "not-contacted"  # the policy does not let imagegate ask that registry


class RegistryError(Exception):
    """A registry could not tell us what we asked; ``kind`` says which way."""

    def __init__(self, kind: RegistryErrorKind, message: str) -> None:
        self.kind = kind
        super().__init__(message)


# Told of every registry API request when it ends (RegistrySettings.observer, the webhook's
# metrics): the registry as the policy names it, the seconds it took, what went wrong (None: an
# answer the client can use).
RequestObserver = Callable[[str, float, RegistryErrorKind | None], None]


@asynccontextmanager
async def deadline(
    seconds: float, what: str, setting: str, *, at: float | None = None
) -> AsyncIterator[asyncio.Timeout]:
    """Everything inside ends within ``seconds`` (or by the event loop's time ``at``, which those
    ``seconds`` after some start are), or a ``timeout`` :class:`RegistryError` naming ``what`` and
    the ``setting`` that says how long.

    A deadline inside another ends at the earlier of the two; the error names the one that ended.
    """
    import asyncio  # noqa: PLC0415

    try:
        async with asyncio.timeout_at(asyncio.get_running_loop().time() + seconds if at is None else at) as limit:
            yield limit
    except TimeoutError:
        raise RegistryError(RegistryErrorKind.TIMEOUT, f"{what} took longer than {seconds:g}s ({setting})") from None
