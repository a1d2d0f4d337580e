"""Who we are to a registry: credentials, challenges, Bearer tokens.

The flow is the one distribution, Docker Hub, Harbor and ghcr speak: a request goes out
with what we already know for its host (a cached token, or Basic credentials); a ``401``
names the scheme in ``WWW-Authenticate``; for ``Bearer`` a token for the request's
repository scope is fetched from the challenge's ``realm`` (with Basic credentials when we
have them, anonymously otherwise) and the request is sent once more; for ``Basic`` the
credentials are sent once more. A second refusal goes back to the caller as the 401.

* Credentials sit behind :class:`CredentialSource`: one async method, host in, username and
  password out. :class:`DockerConfigCredentials` reads a docker ``config.json`` (the form
  of a ``kubernetes.io/dockerconfigjson`` Secret); a docker credential helper or a cloud
  provider's token exchange is another class with the same method.
* Tokens are cached by (host, realm, service, scope), at most ``size`` of them (least
  recently used go first), each until shortly before it expires: ``expires_in`` (60 s when
  absent, as the distribution token spec says) counted from ``issued_at`` when the token
  server says when that was.
* A token server's answer is read as every registry answer is (``shell/registry/reading.py``:
  bounded, every failure a named kind), within the deadline of the request that needs it; a
  token server answers directly (its redirects are not followed).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import enum
import json
import math
import re
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple, Protocol

import httpx
from cachetools import LRUCache

from imagegate.core.reference import canonical_registry
from imagegate.shell.registry.errors import RegistryError, RegistryErrorKind
from imagegate.shell.registry.reading import read_body, send

__all__ = [
    "Challenge",
    "CredentialSource",
    "DockerConfigCredentials",
    "Login",
    "RegistryAuth",
    "RegistryError",
    "RegistryErrorKind",
    "Sent",
    "TokenCache",
    "parse_challenges",
    "token_lifetime",
]

DEFAULT_TOKEN_SECONDS = 60.0  # the token spec's default when expires_in is absent
REFRESH_MARGIN_SECONDS = 10.0  # a token this close to its expiry is not sent again
# A token server's answer is a small JSON object (tokens of a few KiB); more is not read.
MAX_TOKEN_ANSWER_BYTES = 256 * 1024


class Login(NamedTuple):
    username: str
    password: str


class CredentialSource(Protocol):
    """Where the credentials for a registry come from."""

    async def login(self, host: str) -> Login | None:
        """The login for ``host``, or None to go anonymously.

        ``host`` is ``host[:port]`` of the API's URL as httpx writes it: in lower case,
        without ``:443``; Docker Hub's is ``registry-1.docker.io``.
        """
        ...


@dataclass(frozen=True)
class DockerConfigCredentials:
    """Registry host -> login, from a docker ``config.json`` (``auths``)."""

    by_host: Mapping[str, Login] = field(default_factory=dict)

    @classmethod
    def from_docker_config(cls, path: Path) -> DockerConfigCredentials:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise RegistryError(
                RegistryErrorKind.CREDENTIALS, f"cannot read registry credentials {path}: {exc}"
            ) from None
        auths = data.get("auths") if isinstance(data, dict) else None
        found: dict[str, Login] = {}
        for host, entry in (auths if isinstance(auths, dict) else {}).items():
            if not isinstance(entry, dict):
                continue
            user, password = entry.get("username"), entry.get("password")
            if not (user and password) and entry.get("auth"):
                try:
                    user, _, password = base64.b64decode(str(entry["auth"])).decode().partition(":")
                except (binascii.Error, UnicodeDecodeError):
                    raise RegistryError(RegistryErrorKind.CREDENTIALS, f"{path}: bad 'auth' for {host}") from None
            if user and password:
                # the one spelling of a registry (core/reference.py): every Docker Hub alias is docker.io
                key = canonical_registry(re.sub(r"^https?://", "", str(host)).split("/")[0])
                found[key] = Login(str(user), str(password))
        return cls(found)

    async def login(self, host: str) -> Login | None:
        return self.by_host.get(canonical_registry(host))


# --- WWW-Authenticate (RFC 7235: challenge = scheme [ token68 / #auth-param ]) ----------------

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')
_TOKEN68 = re.compile(r"[A-Za-z0-9\-._~+/]+=*[ \t]*(?=,|$)")
_SPACE = re.compile(r"[ \t]*")
_SEPARATORS = re.compile(r"[ \t]*(?:,[ \t]*)*")
_ESCAPE = re.compile(r"\\(.)")


@dataclass(frozen=True)
class Challenge:
    """One challenge: the scheme and the parameter names in lower case."""

    scheme: str
    params: Mapping[str, str] = field(default_factory=dict)


def _skip(pattern: re.Pattern[str], value: str, pos: int) -> int:
    """Where ``pattern`` (one that matches the empty string) stops matching from ``pos``."""
    found = pattern.match(value, pos)
    return found.end() if found else pos


def parse_challenges(values: Iterable[str]) -> list[Challenge]:
    """Every challenge in the ``WWW-Authenticate`` header values, in order.

    One value may hold several challenges (``Bearer realm="a", Basic realm="b"``); quoted
    values may hold commas and backslash escapes. Parsing a value stops at the first thing
    that is not of the grammar, keeping the challenges before it.
    """
    challenges: list[Challenge] = []
    for value in values:
        pos = _skip(_SEPARATORS, value, 0)
        while (scheme := _TOKEN.match(value, pos)) is not None:
            params: dict[str, str] = {}
            pos = _parse_params(value, _skip(_SPACE, value, scheme.end()), params)
            challenges.append(Challenge(scheme.group().lower(), params))
            pos = _skip(_SEPARATORS, value, pos)
    return challenges


def _parse_params(value: str, pos: int, params: dict[str, str]) -> int:
    """A token68 or ``name=value`` pairs from ``pos``; returns where the next challenge starts."""
    token68 = _TOKEN68.match(value, pos)
    if token68 is not None:
        return token68.end()  # a credential blob (Negotiate, ...): nothing we use
    while (name := _TOKEN.match(value, pos)) is not None:
        equals = _skip(_SPACE, value, name.end())
        if not value.startswith("=", equals):
            return pos  # a bare token: the next challenge's scheme
        start = _skip(_SPACE, value, equals + 1)
        if (quoted := _QUOTED.match(value, start)) is not None:
            text, end = _ESCAPE.sub(r"\1", quoted.group(1)), quoted.end()
        elif (bare := _TOKEN.match(value, start)) is not None:
            text, end = bare.group(), bare.end()
        else:
            return len(value)  # malformed: stop here
        params.setdefault(name.group().lower(), text)
        pos = _skip(_SEPARATORS, value, end)
        if "," not in value[end:pos]:
            return end
    return pos


# --- tokens --------------------------------------------------------------------------------


class TokenCache:
    """Bearer tokens by key, at most ``size`` (least recently used go first), each until its expiry.

    Times are the caller's (``time.monotonic`` in the client), so the cache has no clock.
    """

    def __init__(self, size: int) -> None:
        self.size = max(1, size)
        self._entries: OrderedDict[tuple[str, ...], tuple[str, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: tuple[str, ...], now: float) -> str | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[1] <= now:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return entry[0]

    def put(self, key: tuple[str, ...], token: str, expires: float, now: float) -> None:
        """Keep ``token`` until ``expires``; one that expires by ``now`` is not kept."""
        if expires <= now:
            self._entries.pop(key, None)
            return
        self._entries[key] = (token, expires)
        self._entries.move_to_end(key)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)


def token_lifetime(answer: Mapping[str, object], now: dt.datetime) -> float:
    """Seconds a token server's answer stays valid from ``now``: ``expires_in`` from ``issued_at``.

    ``issued_at`` can only shorten the lifetime (a token server whose clock runs ahead does
    not make a token live longer); one that is not an RFC 3339 time is ignored, as it is
    optional. Raises ``ValueError`` for an ``expires_in`` that is not a number of seconds.
    """
    expires_in = answer.get("expires_in")
    if expires_in is None:
        seconds = DEFAULT_TOKEN_SECONDS
    elif isinstance(expires_in, int | float) and not isinstance(expires_in, bool) and math.isfinite(expires_in):
        seconds = float(expires_in)
    else:
        raise ValueError(f"expires_in is {expires_in!r}, not a number of seconds")
    issued_at = answer.get("issued_at")
    if isinstance(issued_at, str):
        try:
            issued = dt.datetime.fromisoformat(issued_at)
        except ValueError:
            return seconds
        if issued.tzinfo is None:
            issued = issued.replace(tzinfo=dt.UTC)
        age = (now - issued).total_seconds()
        if age > 0:
            seconds -= age
    return seconds


class Sent(enum.Enum):
    """What a request carried."""

    NOTHING = enum.auto()
    BASIC = enum.auto()
    CACHED_TOKEN = enum.auto()
    FRESH_TOKEN = enum.auto()


_REPOSITORY_PATH = re.compile(r"^/v2/(.+)/(?:manifests|blobs|tags|referrers)/")


def _scope_of(path: str) -> str:
    """The token scope a registry API path needs: ``repository:<name>:pull`` (we only read)."""
    found = _REPOSITORY_PATH.match(path)
    return f"repository:{found.group(1)}:pull" if found else ""


class RegistryAuth:
    """Who we are to each registry: the header a request carries, and what a ``401`` asks for.

    :class:`~imagegate.shell.registry.client.RegistryClient` drives it around every request it sends
    (:meth:`authorize` first, :meth:`answer` on a 401); ``http`` fetches tokens (the client's
    own, so the same TLS settings apply), within the deadline of the request that needs them.
    Not an ``httpx.Auth``: httpx reads the body of a refused request whole before retrying it,
    unbounded. Token server failures raise :class:`RegistryError`.
    """

    def __init__(
        self,
        credentials: CredentialSource,
        http: httpx.AsyncClient,
        *,
        token_cache_size: int,
        hosts: int,
        ca_file: Path | None = None,
    ) -> None:
        self.credentials = credentials
        self.tokens = TokenCache(token_cache_size)
        self._http = http
        self._ca_file = ca_file
        self._challenges: LRUCache[str, Challenge] = LRUCache(hosts)  # host -> the challenge it last sent

    async def authorize(self, request: httpx.Request) -> Sent:
        """Put what we already know for the request's host into it (a cached token, Basic credentials)."""
        host = request.url.netloc.decode("ascii")
        return await self._authorize(
            request, host, _scope_of(request.url.path), self._challenges.get(host), fresh=False
        )

    async def answer(self, request: httpx.Request, response: httpx.Response, sent: Sent) -> Sent | None:
        """After a ``401`` to ``request`` (which carried ``sent``): authorize it again as the
        challenge asks, and say what it now carries; None when there is nothing more to try
        (the caller reports the 401)."""
        challenges = parse_challenges(response.headers.get_list("WWW-Authenticate"))
        challenge = next((c for c in challenges if c.scheme == "bearer"), None)
        challenge = challenge or next((c for c in challenges if c.scheme == "basic"), None)
        if challenge is None or sent in (Sent.FRESH_TOKEN, Sent.BASIC):
            return None  # nothing we can answer, or our best was refused
        host = request.url.netloc.decode("ascii")
        self._challenges[host] = challenge
        again = await self._authorize(request, host, _scope_of(request.url.path), challenge, fresh=True)
        return None if again is Sent.NOTHING else again

    async def _authorize(
        self, request: httpx.Request, host: str, scope: str, challenge: Challenge | None, *, fresh: bool
    ) -> Sent:
        """Put what ``challenge`` asks for into ``request``; say what that was."""
        if challenge is None:
            return Sent.NOTHING
        if challenge.scheme == "basic":
            login = await self.credentials.login(host)
            if login is None:
                return Sent.NOTHING
            pair = base64.b64encode(f"{login.username}:{login.password}".encode()).decode()
            request.headers["Authorization"] = f"Basic {pair}"
            return Sent.BASIC
        key = (host, challenge.params.get("realm", ""), challenge.params.get("service", ""), scope)
        token = None if fresh else self.tokens.get(key, time.monotonic())
        sent = Sent.CACHED_TOKEN
        if token is None:
            token, sent = await self._fetch_token(host, challenge, scope, key), Sent.FRESH_TOKEN
        request.headers["Authorization"] = f"Bearer {token}"
        return sent

    async def _fetch_token(self, host: str, challenge: Challenge, scope: str, key: tuple[str, ...]) -> str:
        realm = challenge.params.get("realm", "")
        if not realm.startswith(("https://", "http://")):
            raise RegistryError(RegistryErrorKind.AUTH, f"{host} sent a Bearer challenge without a usable realm")
        query = {"scope": scope} if scope else {}
        if service := challenge.params.get("service"):
            query["service"] = service
        login = await self.credentials.login(host)
        what = f"the token answer of {realm} for {host}"
        try:
            request = self._http.build_request("GET", realm, params=query)
        except httpx.InvalidURL as exc:
            raise RegistryError(
                RegistryErrorKind.AUTH, f"{host} sent a Bearer challenge whose realm is not a URL: {exc}"
            ) from None
        if login is not None:
            pair = base64.b64encode(f"{login.username}:{login.password}".encode()).decode()
            request.headers["Authorization"] = f"Basic {pair}"
        token_host = request.url.netloc.decode("ascii")
        # the token server is the registry's: the same kinds of failure, the same bounded reading
        response = await send(self._http, request, token_host, what, self._ca_file)
        if response.status_code != 200:
            await response.aclose()
            raise RegistryError(
                RegistryErrorKind.AUTH, f"token server {realm} refused {host} (HTTP {response.status_code})"
            )
        body = await read_body(response, MAX_TOKEN_ANSWER_BYTES, token_host, what)
        try:
            answer = json.loads(body)
            token = str(answer.get("token") or answer.get("access_token") or "")
            lifetime = token_lifetime(answer, dt.datetime.now(dt.UTC))
        except (ValueError, AttributeError):
            raise RegistryError(
                RegistryErrorKind.AUTH, f"token server {realm} answered something that is not a token"
            ) from None
        if not token:
            raise RegistryError(RegistryErrorKind.AUTH, f"token server {realm} answered no token")
        now = time.monotonic()
        self.tokens.put(key, token, now + lifetime - REFRESH_MARGIN_SECONDS, now)
        return token
