"""An async OCI distribution client (httpx): manifests, configs, auth, caching.

* Auth: anonymous, Basic, and the Bearer-token challenge flow (``WWW-Authenticate``) that
  Docker Hub, Harbor, ghcr and distribution use, as an ``httpx.Auth`` flow with a bounded
  token cache (``shell/registry/auth.py``). Credentials come from a
  :class:`~imagegate.shell.registry.auth.CredentialSource`: a docker ``config.json`` (the
  format of a ``kubernetes.io/dockerconfigjson`` Secret mounted into the pod) by default.
* Every manifest and blob read is size-bounded and checked against its digest.
* Manifest lists / OCI indexes: every entry a node of the cluster might pull is examined
  (:func:`imagegate.core.platforms.runnable_entries`), at most ``max_index_entries``.
* Caching: resolved images by digest (immutable) for long; tag -> digest briefly;
  failures very briefly. The same image asked for by many admissions at once is
  fetched once (single flight). Concurrency per registry is bounded.
* 429 with ``Retry-After`` is retried once within the deadline; redirects are followed a
  bounded number of times (httpx drops the Authorization header on a cross-host redirect).
"""

from __future__ import annotations

import asyncio
import base64
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import msgspec
from cachetools import LRUCache, TTLCache

from imagegate.core.oci import (
    ACCEPT_MANIFESTS,
    OCI_INDEX,
    Descriptor,
    Manifest,
    OciError,
    PlatformImage,
    RefusedImageError,
    ResolvedImage,
    digest_of,
    parse_config,
    parse_manifest,
    verify_digest,
)
from imagegate.core.platforms import PlatformSpec, node_platform, normalize, runnable_entries
from imagegate.core.policy import DEFAULT_LOOKUP_TIMEOUT, DEFAULT_PLATFORMS, DEFAULT_REGISTRY_TIMEOUT
from imagegate.core.reference import DEFAULT_DOMAIN, DOCKER_HUB_API_HOST, Reference
from imagegate.shell.logs import get_logger
from imagegate.shell.registry.auth import (
    CredentialSource,
    DockerConfigCredentials,
    RegistryAuth,
    RegistryError,
    RegistryErrorKind,
)
from imagegate.shell.registry.errors import RequestObserver, deadline
from imagegate.shell.registry.reading import ACCEPT_ENCODING, read_body, send, transport_error

__all__ = ["RegistryClient", "RegistryError", "RegistryErrorKind", "RegistrySettings", "RequestObserver"]

log = get_logger("imagegate.registry")
T = TypeVar("T")


@dataclass(frozen=True)
class RegistrySettings:
    timeout: float = DEFAULT_REGISTRY_TIMEOUT
    platforms: tuple[str, ...] = DEFAULT_PLATFORMS
    max_manifest_bytes: int = 4 * 1024 * 1024
    max_config_bytes: int = 8 * 1024 * 1024
    per_registry_concurrency: int = 8
    tag_ttl: float = 60
    negative_ttl: float = 5
    cache_size: int = 4096
    max_redirects: int = 5
    # An index whose entries a node might pull are more than this is refused: each is fetched.
    max_index_entries: int = 16
    ca_file: Path | None = None
    credentials: CredentialSource = field(default_factory=DockerConfigCredentials)
    # The clock of the tag and failure caches (tests move it instead of waiting out a TTL).
    timer: Callable[[], float] = time.monotonic
    token_cache_size: int = 1024  # Bearer tokens kept: one per registry and repository
    # A lookup shared by concurrent callers (single flight) ends within this, whether or not anyone
    # still waits for it: a tenant's slow registry cannot pile up work nobody will use.
    lookup_timeout: float = DEFAULT_LOOKUP_TIMEOUT
    # Told of every API request when it ends (the webhook's metrics): the registry as the policy
    # names it (docker.io, not its API host), the seconds it took, and its failure or None.
    observer: RequestObserver | None = None


def _api_host(ref: Reference) -> str:
    return DOCKER_HUB_API_HOST if ref.registry_host == DEFAULT_DOMAIN else ref.domain


def _registry_named(api_host: str) -> str:
    """The registry as a policy names it, for an API host (:func:`_api_host`'s inverse)."""
    return DEFAULT_DOMAIN if api_host == DOCKER_HUB_API_HOST else api_host


class _SingleFlight:
    """Concurrent callers for the same key share one in-flight call.

    The call runs as a task of its own, which each caller awaits shielded: a caller that stops
    waiting (its lookup's deadline passed) stops neither the call nor the other callers, and what
    the call finds is cached for the next. The call itself ends within ``seconds``.
    """

    def __init__(self, seconds: float, setting: str = "registry.lookupTimeoutSeconds") -> None:
        self.seconds = seconds  # a call's deadline
        self.setting = setting  # the policy setting that says how long
        self._running: dict[Any, asyncio.Future[Any]] = {}

    async def run(self, key: Any, call: Callable[[], Awaitable[T]], what: str = "shared") -> T:
        running = self._running.get(key)
        if running is None:
            running = asyncio.ensure_future(self._bounded(call, what))
            self._running[key] = running
            running.add_done_callback(lambda done: self._finished(key, done))
        result: T = await asyncio.shield(running)
        return result

    async def _bounded(self, call: Callable[[], Awaitable[T]], what: str) -> T:
        async with deadline(self.seconds, f"the {what} lookup", self.setting):
            return await call()

    def _finished(self, key: Any, done: asyncio.Future[Any]) -> None:
        if self._running.get(key) is done:
            del self._running[key]
        if not done.cancelled():
            done.exception()  # mark retrieved: nobody may be waiting any more

    async def aclose(self) -> None:
        """Stop the calls nobody waits for any more (the client is closing)."""
        running = list(self._running.values())
        for future in running:
            future.cancel()
        await asyncio.gather(*running, return_exceptions=True)


# At most this many bytes of tag manifests are kept between a digest lookup and the resolution after it.
_MANIFESTS_KEPT_BYTES = 16 * 1024 * 1024


def _body_size(kept: tuple[bytes, str]) -> int:
    return len(kept[0]) + 1


class _Outcome:
    """How a request ended, for :attr:`RegistrySettings.observer`: until it ends, a timeout (a
    request cancelled by an outer deadline, the decision's, ran out of time)."""

    def __init__(self) -> None:
        self.failure: RegistryErrorKind | None = RegistryErrorKind.TIMEOUT


# What a request reads of an answer whose body nobody needs in full (errors, small documents).
_ERROR_BODY_LIMIT = 64 * 1024


class RegistryClient:
    """Reads images from OCI registries. One per process; ``aclose()`` when done."""

    def __init__(self, settings: RegistrySettings | None = None) -> None:
        self.settings = settings or RegistrySettings()
        verify: ssl.SSLContext | bool = True
        if self.settings.ca_file is not None:
            try:
                verify = ssl.create_default_context(cafile=str(self.settings.ca_file))
            except (OSError, ssl.SSLError) as exc:
                reason = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or exc
                raise RegistryError(
                    RegistryErrorKind.TLS, f"cannot use {self.settings.ca_file} as the registry CA: {reason}"
                ) from None
        self._http = httpx.AsyncClient(
            verify=verify,
            timeout=httpx.Timeout(self.settings.timeout),
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=32),
            headers={"User-Agent": "imagegate", "Accept-Encoding": ACCEPT_ENCODING},
        )
        self._auth = RegistryAuth(
            self.settings.credentials,
            self._http,
            token_cache_size=self.settings.token_cache_size,
            hosts=self.settings.cache_size,
            ca_file=self.settings.ca_file,
        )
        self._semaphores: dict[str, asyncio.Semaphore] = {}
        self._by_digest: LRUCache[str, ResolvedImage] = LRUCache(self.settings.cache_size)
        self._tags: TTLCache[str, str] = TTLCache(
            self.settings.cache_size, self.settings.tag_ttl, timer=self.settings.timer
        )
        self._failures: TTLCache[str, RegistryError] = TTLCache(
            self.settings.cache_size, self.settings.negative_ttl, timer=self.settings.timer
        )
        # A tag's manifest as :meth:`digest` read it, until :meth:`resolve` reads it (by digest: immutable),
        # bounded in bytes: a digest-only lookup then a resolution cost one manifest GET, not two.
        self._manifests: LRUCache[str, tuple[bytes, str]] = LRUCache(_MANIFESTS_KEPT_BYTES, getsizeof=_body_size)
        self._flights = _SingleFlight(self.settings.lookup_timeout)
        self._nodes = tuple(node_platform(p) for p in self.settings.platforms)
        self.fetches: dict[str, int] = {}  # URL path kind -> count, for tests and metrics

    async def aclose(self) -> None:
        await self._flights.aclose()
        await self._http.aclose()

    async def __aenter__(self) -> RegistryClient:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()

    # -- HTTP with auth ---------------------------------------------------------------------

    def _semaphore(self, host: str) -> asyncio.Semaphore:
        if host not in self._semaphores:
            self._semaphores[host] = asyncio.Semaphore(self.settings.per_registry_concurrency)
        return self._semaphores[host]

    async def _request(
        self, method: str, host: str, path: str, accept: str = "", *, limit: int = _ERROR_BODY_LIMIT, what: str = ""
    ) -> httpx.Response:
        """One API request and its whole answer, body read, within ``timeout`` seconds of getting a
        connection slot for ``host`` (token fetch, redirects and a 429's retry included).

        The body is read as it streams, at most ``limit`` bytes (sent and decoded): a registry
        that sends no Content-Length, lies in it, stalls or trickles cannot make the webhook hold
        an unbounded answer, or wait for one without end. Every failure is a :class:`RegistryError`.
        """
        what = what or f"answer for {path}"
        with self._observed(host) as outcome:
            async with (
                self._semaphore(host),
                deadline(
                    self.settings.timeout, f"{host}'s whole answer for the {what}", "registry.timeoutSeconds"
                ) as ends,
            ):
                response = await self._send(method, host, path, accept, what, ends)
                body = await read_body(response, limit, response.url.netloc.decode("ascii"), what)
            # a 404 answers "does it exist"; other errors are the callers' to raise, counted here
            outcome.failure = (
                None if response.status_code < 400 or response.status_code == 404 else RegistryErrorKind.HTTP
            )
        headers = response.headers.copy()
        for decoded in ("Content-Encoding", "Content-Length"):  # the body below is already decoded
            headers.pop(decoded, None)
        return httpx.Response(response.status_code, headers=headers, content=body, request=response.request)

    @contextmanager
    def _observed(self, host: str) -> Iterator[_Outcome]:
        """Tell :attr:`RegistrySettings.observer` how one request to ``host`` ended, and how long it took."""
        outcome, started = _Outcome(), time.perf_counter()
        try:
            yield outcome
        except RegistryError as exc:
            outcome.failure = exc.kind
            raise
        finally:
            if self.settings.observer is not None:
                self.settings.observer(_registry_named(host), time.perf_counter() - started, outcome.failure)

    async def _send(
        self,
        method: str,
        host: str,
        path: str,
        accept: str,
        what: str,
        ends: asyncio.Timeout,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        """The response to the request, its headers read: authorized as the registry asks, redirects
        followed (a bounded number, none of their bodies read), a 429 retried once if time allows."""
        headers = {**(headers or {}), "Accept": accept} if accept else dict(headers or {})
        request = self._http.build_request(method, f"https://{host}{path}", headers=headers)
        sent = await self._auth.authorize(request)
        redirects = 0
        retried = False
        while True:
            to = request.url.netloc.decode("ascii")
            response = await send(self._http, request, to, what, self.settings.ca_file)
            if response.status_code == 401:
                await response.aclose()  # only the status and headers are read
                again = await self._auth.answer(request, response, sent)
                if again is not None:
                    sent = again
                    continue
                raise await self._refused(host, path, request)
            if response.next_request is not None:  # a redirect: followed here, its body never read
                await response.aclose()
                redirects += 1
                if redirects > self.settings.max_redirects:
                    raise RegistryError(
                        RegistryErrorKind.REDIRECTS,
                        f"https://{host}{path}: more than {self.settings.max_redirects} redirects",
                    )
                request = response.next_request
                sent = await self._auth.authorize(request)
                continue
            if response.status_code == 429:
                await response.aclose()
                wait = _retry_after(response.headers.get("Retry-After"))
                until = ends.when()
                if (
                    not retried
                    and wait is not None
                    and (until is None or asyncio.get_running_loop().time() + wait < until)
                ):
                    retried = True
                    await asyncio.sleep(wait)
                    continue
                raise RegistryError(RegistryErrorKind.RATE_LIMITED, f"{host} is rate limiting us (HTTP 429)")
            return response

    async def _refused(self, host: str, path: str, request: httpx.Request) -> RegistryError:
        """The error for a 401 we have nothing more to answer with: no credentials, or refused ones."""
        user = _basic_user(request.headers.get("Authorization", ""))
        if user is None:  # Bearer, or nothing sent: did we have credentials at all?
            login = await self.settings.credentials.login(host)
            user = login.username if login is not None else None
        if user is None:
            return RegistryError(
                RegistryErrorKind.AUTH,
                f"{host} requires authentication for {path} (HTTP 401) and we have no credentials "
                "for it (registry.credentialsFile names a docker config.json)",
            )
        return RegistryError(
            RegistryErrorKind.AUTH, f"{host} refused the credentials of {user!r} for {path} (HTTP 401)"
        )

    # -- documents ------------------------------------------------------------------------

    async def _manifest(self, ref: Reference, target: str) -> tuple[bytes, str, str]:
        response = await self._document(
            ref, f"manifests/{target}", "manifest", f"manifest of {ref.repository}", ACCEPT_MANIFESTS
        )
        if response is None:
            raise RegistryError(RegistryErrorKind.NOT_FOUND, f"{_named(ref, target)} does not exist (HTTP 404)")
        body = response.content
        # a digest holds a colon, a tag never does (cosign's sha256-<hex>.sig is a tag)
        expected = target if ":" in target else response.headers.get("Docker-Content-Digest") or digest_of(body)
        try:
            verify_digest(body, expected)
        except OciError as exc:
            raise RegistryError(
                RegistryErrorKind.DIGEST_MISMATCH, f"manifest of {_named(ref, target)}: {exc}"
            ) from None
        return body, expected, response.headers.get("Content-Type", "")

    async def _document(
        self, ref: Reference, endpoint: str, counter: str, about: str, accept: str = ""
    ) -> httpx.Response | None:
        """GET ``/v2/<repository>/<endpoint>``, a document of at most the manifest limit: the
        answer when it is 200, None for a 404 (the caller says what is missing), else an error."""
        host = _api_host(ref)
        response = await self._request(
            "GET", host, f"/v2/{ref.path}/{endpoint}", accept, limit=self.settings.max_manifest_bytes, what=about
        )
        self.fetches[counter] = self.fetches.get(counter, 0) + 1
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise RegistryError(RegistryErrorKind.HTTP, f"{host} answered HTTP {response.status_code} for the {about}")
        return response

    async def _blob(self, ref: Reference, descriptor: Descriptor, limit: int) -> bytes:
        if descriptor.size > limit:
            raise RegistryError(
                RegistryErrorKind.TOO_LARGE,
                f"blob {descriptor.digest[:19]} is {descriptor.size} bytes; the limit is {limit}",
            )
        host = _api_host(ref)
        response = await self._request(
            "GET", host, f"/v2/{ref.path}/blobs/{descriptor.digest}", limit=limit, what=f"blob {descriptor.digest[:19]}"
        )
        self.fetches["blob"] = self.fetches.get("blob", 0) + 1
        if response.status_code != 200:
            raise RegistryError(
                RegistryErrorKind.HTTP, f"{host} answered HTTP {response.status_code} for blob {descriptor.digest[:19]}"
            )
        body = response.content
        try:
            verify_digest(body, descriptor.digest)
        except OciError as exc:
            raise RegistryError(RegistryErrorKind.DIGEST_MISMATCH, f"blob of {ref.repository}: {exc}") from None
        return body

    async def _platform_image(
        self, ref: Reference, manifest: Manifest, digest: str, platform: PlatformSpec | None
    ) -> PlatformImage:
        config = parse_config(await self._blob(ref, manifest.config, self.settings.max_config_bytes))
        if len(config.diff_ids) != len(manifest.layers):
            raise OciError(
                f"{ref.repository}: config lists {len(config.diff_ids)} layers, the manifest {len(manifest.layers)}"
            )
        if platform is None:  # no platform in the index (or no index): the config's, as containerd reads it
            node_os = self._nodes[0].os if self._nodes else "linux"
            platform = normalize(config.os, config.architecture, config.variant, node_os=node_os)
        return PlatformImage(
            str(platform), digest, tuple(manifest.layers), config.diff_ids, dict(manifest.annotations), config.created
        )

    async def _fetch(self, ref: Reference, digest: str) -> ResolvedImage:
        """Fetch by digest: the manifest (and each entry a node might pull), and their configs."""
        kept = self._manifests.pop(f"{ref.repository}@{digest}", None)
        if kept is not None:
            body, content_type = kept
        else:
            body, digest, content_type = await self._manifest(ref, digest)
        document = parse_manifest(body, content_type)
        if isinstance(document, Manifest):
            # A plain manifest is what every node pulls, whatever platform its config names.
            image = await self._platform_image(ref, document, digest, None)
            return ResolvedImage(str(ref), digest, document.media_type or content_type, (image,), (image.platform,))
        declared = [d.platform for d in document.manifests]
        entries = [None if p is None else (p.os, p.architecture, p.variant) for p in declared]
        names = tuple("(no platform)" if p is None else str(p) for p in declared)
        chosen: dict[int, PlatformSpec | None] = {}
        for node in self._nodes:
            for position in runnable_entries(entries, node):
                platform = declared[position]
                seen = (
                    None
                    if platform is None
                    else normalize(platform.os, platform.architecture, platform.variant, node_os=node.os)
                )
                chosen.setdefault(position, seen)
        if len(chosen) > self.settings.max_index_entries:
            raise RefusedImageError(
                f"{ref.repository}: the index has {len(chosen)} entries that nodes running "
                f"{', '.join(self.settings.platforms)} could pull; imagegate verifies at most "
                f"{self.settings.max_index_entries}, so it refuses the index"
            )
        by_digest: dict[str, PlatformImage] = {}
        for position in sorted(chosen):
            descriptor = document.manifests[position]
            if descriptor.digest in by_digest:
                continue  # the same manifest twice: verified once
            child_body, child_digest, child_type = await self._manifest(ref, descriptor.digest)
            child = parse_manifest(child_body, descriptor.media_type or child_type)  # containerd: the entry says
            if not isinstance(child, Manifest):
                raise RefusedImageError(
                    f"{ref.repository}: entry {position + 1} of the index ({names[position]}) is an index "
                    "itself; imagegate does not verify nested indexes, so it refuses the image"
                )
            by_digest[descriptor.digest] = await self._platform_image(ref, child, child_digest, chosen[position])
        images = list(by_digest.values())
        return ResolvedImage(str(ref), digest, document.media_type or content_type, tuple(images), names)

    async def digest(self, ref: Reference) -> str:
        """The digest ``ref`` points at now: its own when it carries one, else its tag's.

        One manifest GET (no configs, no index entries), cached like a resolution's and shared
        with :meth:`resolve` (single flight, the tag cache): a signature check and a base check
        of one tag see one digest.
        """
        known = self.known_digest(ref)
        if known is not None:
            return known
        failure = self._failures.get(str(ref))
        if failure is not None:
            raise failure
        tag = ref.tag or "latest"
        tag_key = f"{ref.repository}:{tag}"

        async def fetch() -> str:
            body, digest, content_type = await self._manifest(ref, tag)
            self._tags[tag_key] = digest
            if _body_size((body, content_type)) <= _MANIFESTS_KEPT_BYTES:
                self._manifests[f"{ref.repository}@{digest}"] = (body, content_type)
            return digest

        try:
            return await self._flights.run((ref.repository, "tag", tag), fetch, f"digest of {ref}")
        except RegistryError as exc:
            self._failures[str(ref)] = exc
            raise

    def known_digest(self, ref: Reference) -> str | None:
        """The digest :meth:`digest` would answer without asking the registry, or None."""
        if ref.digest is not None:
            return ref.digest
        known = self._tags.get(f"{ref.repository}:{ref.tag or 'latest'}")
        if known is not None and self._failures and str(ref) in self._failures:
            return None  # digest() raises it
        return known

    async def resolve(self, ref: Reference) -> ResolvedImage:
        """The image behind ``ref``: digest, platforms, layers, diff_ids. Cached; single flight."""
        failure = self._failures.get(str(ref))
        if failure is not None:
            raise failure
        digest = await self.digest(ref)
        cached = self._by_digest.get(f"{ref.repository}@{digest}")
        if cached is not None:
            return cached

        async def fetch() -> ResolvedImage:
            try:
                image = await self._fetch(ref, digest)
            except RefusedImageError as exc:
                raise RegistryError(RegistryErrorKind.REFUSED, str(exc)) from None
            except OciError as exc:
                raise RegistryError(RegistryErrorKind.MALFORMED, str(exc)) from None
            self._by_digest[f"{ref.repository}@{image.digest}"] = image
            return image

        try:
            return await self._flights.run((ref.repository, digest), fetch, str(ref))
        except RegistryError as exc:
            self._failures[str(ref)] = exc
            raise

    # -- artifacts (signatures, attestations): see shell/registry/artifacts.py -------------------------

    async def manifest_if_any(self, ref: Reference, target: str) -> tuple[bytes, str, str] | None:
        """The manifest at ``target`` (a tag or digest) as ``(body, digest, content type)``, or None on 404."""
        try:
            return await self._manifest(ref, target)
        except RegistryError as exc:
            if exc.kind is RegistryErrorKind.NOT_FOUND:
                return None
            raise

    @asynccontextmanager
    async def blob_stream(
        self, ref: Reference, descriptor: Descriptor, ends: asyncio.Timeout
    ) -> AsyncIterator[AsyncIterator[bytes]]:
        """A blob of ``ref``'s repository as it streams: the raw chunks, never held whole.

        Redirects (to blob storage) are followed and auth answered as for any request; the
        caller's deadline ``ends`` bounds it (a 429 is retried only within it), and the caller
        counts, bounds and verifies the bytes (shell/registry/contents.py). The body is asked for
        unencoded: a registry that encodes it anyway is an ``encoding`` error.
        """
        host = _api_host(ref)
        what = f"layer {descriptor.digest}"
        path = f"/v2/{ref.path}/blobs/{descriptor.digest}"
        with self._observed(host) as outcome:
            response = await self._send("GET", host, path, "", what, ends, {"Accept-Encoding": "identity"})
            self.fetches["layer"] = self.fetches.get("layer", 0) + 1
            async with self._streamed(response, what, ref, descriptor) as chunks:
                yield chunks
            outcome.failure = None

    @asynccontextmanager
    async def _streamed(
        self, response: httpx.Response, what: str, ref: Reference, descriptor: Descriptor
    ) -> AsyncIterator[AsyncIterator[bytes]]:
        """:meth:`blob_stream`'s answer, checked, as its raw chunks; closed on exit."""
        try:
            to = response.url.netloc.decode("ascii")
            if response.status_code == 404:
                raise RegistryError(
                    RegistryErrorKind.NOT_FOUND, f"{_named(ref, descriptor.digest)}: no such blob (HTTP 404)"
                )
            if response.status_code != 200:
                raise RegistryError(RegistryErrorKind.HTTP, f"{to} answered HTTP {response.status_code} for the {what}")
            encoding = response.headers.get("Content-Encoding", "").strip().lower()
            if encoding not in ("", "identity"):
                raise RegistryError(
                    RegistryErrorKind.ENCODING, f"{to} sent the {what} in the {encoding!r} encoding, not as it is"
                )

            async def chunks() -> AsyncIterator[bytes]:
                try:
                    async for chunk in response.aiter_raw():
                        yield chunk
                except httpx.HTTPError as exc:
                    raise transport_error(exc, to, what) from None

            yield chunks()
        finally:
            await response.aclose()

    async def blob(self, ref: Reference, descriptor: Descriptor, limit: int) -> bytes:
        """A blob of ``ref``'s repository, at most ``limit`` bytes, checked against its digest."""
        return await self._blob(ref, descriptor, limit)

    async def referrers(self, ref: Reference, digest: str, artifact_type: str = "") -> bytes | None:
        """The OCI 1.1 referrers index of ``digest``, or None when the registry has no referrers API (404)."""
        query = f"?artifactType={artifact_type}" if artifact_type else ""
        response = await self._document(
            ref, f"referrers/{digest}{query}", "referrers", f"referrers of {ref.repository}@{digest}", OCI_INDEX
        )
        return None if response is None else response.content

    async def shared(self, key: Any, call: Callable[[], Awaitable[T]]) -> T:
        """Run ``call`` once for every concurrent caller with the same ``key`` (single flight)."""
        return await self._flights.run(key, call)

    async def tags(self, ref: Reference, limit: int = 1000, page: int = 1000) -> tuple[list[str], bool]:
        """The tags of ``ref``'s repository (the tags/list API, ``page`` at a time), at most ``limit``;
        and whether there were more."""
        path: str | None = f"/v2/{ref.path}/tags/list?n={min(limit, page)}"
        found: list[str] = []
        while path is not None and len(found) < limit:
            response = await self._document(
                ref, path.removeprefix(f"/v2/{ref.path}/"), "tags", f"tags of {ref.repository}"
            )
            if response is None:
                raise RegistryError(RegistryErrorKind.NOT_FOUND, f"{ref.repository} does not exist (HTTP 404)")
            body = response.content
            try:
                listing = msgspec.json.decode(body, type=_TagList)
            except msgspec.DecodeError as exc:
                raise RegistryError(RegistryErrorKind.MALFORMED, f"tag list of {ref.repository}: {exc}") from None
            found.extend(listing.tags or ())
            link = response.headers.get("Link", "")
            path = _next_page(link, ref)
            if path is None and 'rel="next"' in link:
                return sorted(found)[:limit], True  # a next page we do not follow: the list is incomplete
        # sorted: Debian's docker-registry 2.8 ignores ``n`` and answers in no particular order
        return sorted(found)[:limit], len(found) > limit or path is not None


class _TagList(msgspec.Struct):
    tags: list[str] | None = None


def _next_page(link: str, ref: Reference) -> str | None:
    """The next page of a tag list, from ``Link: </v2/...?last=x&n=100>; rel="next"`` (same repository only)."""
    target, _, rest = link.partition(";")
    target = target.strip()
    if 'rel="next"' not in rest or not (target.startswith("<") and target.endswith(">")):
        return None
    path = target[1:-1]
    if path.startswith("https://") or path.startswith("http://"):
        path = "/" + path.split("/", 3)[3] if path.count("/") >= 3 else ""
    prefix = f"/v2/{ref.path}/tags/list"
    return path if path.startswith(prefix + "?") else None


def _basic_user(authorization: str) -> str | None:
    """The user name a refused request carried in Basic auth (not asking the credentials again)."""
    if not authorization.startswith("Basic "):
        return None
    try:
        return base64.b64decode(authorization[6:]).decode().partition(":")[0]
    except (ValueError, UnicodeDecodeError):
        return None


def _named(ref: Reference, target: str) -> str:
    """``repository:tag`` or ``repository@digest``, as a person would write the reference."""
    return f"{ref.repository}@{target}" if target.startswith("sha") and ":" in target else f"{ref.repository}:{target}"


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return 1.0
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
