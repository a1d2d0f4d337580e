"""An image's files, read from its registry: layers streamed, verified, merged, kept as selected.

The public API is small::

    reader = ContentReader(client, limits)          # one per RegistryClient, for the process
    files = await reader.read(ref, selection)       # {platform: ImageFiles}, every platform a node pulls
    one = await reader.read_image(ref, image, selection)   # one PlatformImage of a resolved image
    files = await read_files(client, ref, selection, limits)   # the same, the reader kept per client

``ref`` is a :class:`~imagegate.core.reference.Reference` (or its text); the image is resolved by
the client (its caches, single flight, auth, platform choice for indexes), each layer blob is
streamed (never to disk, never held whole) and read by :func:`imagegate.core.contents.layers.read_layer`
in a worker thread, so decompressing and walking a large layer never blocks the event loop; the
layers are merged by :func:`imagegate.core.contents.merge.merge`. Limits are
:class:`~imagegate.core.contents.limits.ContentLimits` (``registry.contents`` in the policy).

Caching: a layer read is kept by its digest (and the selection) and serves every image that holds
it, the base's layers read once per process while the cache (``cacheBytes``, by bytes, least
recently used out first) holds them; an image's merged files by its manifest digest. Concurrent
reads of the same layer or image share one read (single flight), which ends within
``registry.contents.timeoutSeconds``. At most :data:`STREAMS_PER_REGISTRY` layers stream from one
registry at once. A read goes on when its caller stops waiting (the flight is shielded): the
admission path's background reads are shell/registry/content_verdicts.py's, built on this.

Failures: a :class:`~imagegate.shell.registry.errors.RegistryError` for what the registry did
(unreachable, auth, HTTP status, a timeout naming ``registry.contents.timeoutSeconds``), and a
:class:`ContentReadError` (a ``RegistryError`` too) for what the content is: its ``content``
attribute is the :class:`~imagegate.core.contents.layers.ContentErrorKind` (digest mismatch,
corrupt or truncated stream, unsafe names or links, link loops, bombs, limits), its ``kind`` the
registry kind a caller's ``onError`` handles (``refused`` for hostile content, ``malformed``,
``digest-mismatch``, ``too-large``).
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import AsyncIterator
from typing import TypeVar

from cachetools import LRUCache

from imagegate.core.contents.files import FileSelection, ImageFiles
from imagegate.core.contents.layers import (
    ContentError,
    ContentErrorKind,
    EntryKind,
    LayerFiles,
    check_layer,
    read_layer,
)
from imagegate.core.contents.limits import ContentLimits
from imagegate.core.contents.merge import merge
from imagegate.core.oci import Descriptor, PlatformImage
from imagegate.core.policy import ContactScope, contact_refusal
from imagegate.core.reference import Reference, parse_docker_ref
from imagegate.shell.registry.client import RegistryClient, _SingleFlight
from imagegate.shell.registry.errors import RegistryError, RegistryErrorKind, deadline

__all__ = ["STREAMS_PER_REGISTRY", "ContentReadError", "ContentReader", "read_files", "reader_for"]

# Layers streamed from one registry at once: the webhook's own manifest lookups keep the rest.
STREAMS_PER_REGISTRY = 2
# Bytes of a layer read from the network ahead of the thread that decompresses and walks it.
READ_AHEAD = 4 * 1024 * 1024
_SETTING = "registry.contents.timeoutSeconds"
V = TypeVar("V")

# How each kind of content fault reaches a caller that handles registry errors (onError).
_REGISTRY_KIND = {
    ContentErrorKind.DIGEST_MISMATCH: RegistryErrorKind.DIGEST_MISMATCH,
    ContentErrorKind.CORRUPT: RegistryErrorKind.MALFORMED,
    ContentErrorKind.TRUNCATED: RegistryErrorKind.MALFORMED,
    ContentErrorKind.TOO_LARGE: RegistryErrorKind.TOO_LARGE,
    ContentErrorKind.TOO_MANY_ENTRIES: RegistryErrorKind.TOO_LARGE,
}


class ContentReadError(RegistryError):
    """What an image's content is, that imagegate refuses or cannot read; ``content`` says which."""

    def __init__(self, error: ContentError) -> None:
        super().__init__(_REGISTRY_KIND.get(error.kind, RegistryErrorKind.REFUSED), str(error))
        self.content = error.kind
        self.layer = error.layer


class _Feed:
    """The blob's chunks, read ahead on the event loop (at most :data:`READ_AHEAD` bytes) and handed
    to the worker thread that reads the layer: all that has arrived at each of its asks, so the
    thread and the loop meet once per batch, not once per network read."""

    def __init__(self, chunks: AsyncIterator[bytes], seconds: float) -> None:
        self._loop = asyncio.get_running_loop()
        self._seconds = seconds
        self._queue: list[bytes] = []
        self._queued = 0
        self._ended = False
        self._error: BaseException | None = None
        self._arrived = asyncio.Event()  # data queued, or the stream ended
        self._room = asyncio.Event()  # the queue is below READ_AHEAD
        self._room.set()
        self._pump = asyncio.ensure_future(self._fill(chunks))

    async def _fill(self, chunks: AsyncIterator[bytes]) -> None:
        try:
            async for chunk in chunks:
                self._queue.append(chunk)
                self._queued += len(chunk)
                self._arrived.set()
                if self._queued >= READ_AHEAD:
                    self._room.clear()
                    await self._room.wait()
        except Exception as exc:  # a transport failure: said to the reader once the queue is read
            self._error = exc
        finally:
            self._ended = True
            self._arrived.set()

    async def _next(self) -> bytes:
        while not self._queue and not self._ended:
            self._arrived.clear()
            await self._arrived.wait()
        if self._queue:
            data = b"".join(self._queue)
            self._queue.clear()
            self._queued = 0
            self._room.set()
            return data
        if self._error is not None:
            raise self._error
        return b""

    def next_chunk(self) -> bytes:
        """Called in the worker thread: waits for the event loop to have the next bytes."""
        return asyncio.run_coroutine_threadsafe(self._next(), self._loop).result(self._seconds)

    async def aclose(self) -> None:
        self._pump.cancel()
        await asyncio.gather(self._pump, return_exceptions=True)


def _image_weight(files: ImageFiles) -> int:
    kept = sum(len(path) + len(data) + 100 for path, data in files.files.items())
    return kept + sum(len(path) + 60 for path in files.absent) + 200


class ContentReader:
    """Reads images' files through ``client``; keeps layer reads and merged images (bounded)."""

    def __init__(
        self, client: RegistryClient, limits: ContentLimits | None = None, *, scope: ContactScope | None = None
    ) -> None:
        self.client = client
        self.limits = limits or ContentLimits()
        self.scope = scope  # when set, only registries it allows are asked (Policy.contact_scope())
        half = max(1, self.limits.cache_bytes // 2)
        self._layers: LRUCache[tuple[str, FileSelection], LayerFiles] = LRUCache(
            half, getsizeof=lambda layer: layer.weight
        )
        self._images: LRUCache[tuple[str, FileSelection], ImageFiles] = LRUCache(half, getsizeof=_image_weight)
        self._flights = _SingleFlight(self.limits.timeout_seconds, _SETTING)
        self._streams: dict[str, asyncio.Semaphore] = {}
        self.layers_streamed = 0  # layer blobs read from a registry (tests, metrics)

    async def read(self, ref: Reference | str, selection: FileSelection) -> dict[str, ImageFiles]:
        """The files of every platform image ``ref`` names that a node might pull, by platform."""
        if isinstance(ref, str):
            ref = parse_docker_ref(ref)
        if self.scope is not None and not self.scope.allows(ref):
            raise RegistryError(RegistryErrorKind.NOT_CONTACTED, contact_refusal(ref))
        resolved = await self.client.resolve(ref)
        return {image.platform: await self.read_image(ref, image, selection) for image in resolved.platforms}

    async def read_image(self, ref: Reference, image: PlatformImage, selection: FileSelection) -> ImageFiles:
        """The files of one platform image of ``ref``'s repository. Cached by its manifest digest."""
        key = (image.manifest_digest, selection)
        cached = self._images.get(key)
        if cached is not None:
            return cached
        try:
            return await self._flights.run(
                ("image", key), lambda: self._read_image(ref, image, selection), f"{ref.repository}@{key[0]} contents"
            )
        except ContentError as exc:
            raise ContentReadError(exc) from None

    async def _read_image(self, ref: Reference, image: PlatformImage, selection: FileSelection) -> ImageFiles:
        limits = self.limits
        for layer in image.layers:
            check_layer(layer, limits)  # refused before anything is streamed
        total = image.compressed_size
        if total > limits.max_image_bytes:
            raise ContentError(
                ContentErrorKind.TOO_LARGE,
                "",
                f"the image's layers are {total} bytes; the limit is {limits.max_image_bytes} "
                "(registry.contents.maxImageBytes)",
            )
        records = list(await asyncio.gather(*(self._layer(ref, layer, selection) for layer in image.layers)))
        merged = await asyncio.to_thread(merge, records, selection, limits)
        if merged.needed:  # kept links lead to files no layer kept: read the layers holding them again
            wider = selection | FileSelection(frozenset(merged.needed))
            for position, (layer, record) in enumerate(zip(image.layers, records, strict=True)):
                if any(kind is EntryKind.FILE and path in merged.needed for kind, path, _ in record.entries):
                    records[position] = await self._layer(ref, layer, wider)
            merged = await asyncio.to_thread(merge, records, selection, limits)
            if merged.needed:
                raise ContentError(
                    ContentErrorKind.UNSAFE_LINK, "", f"links lead to {sorted(merged.needed)}, which no layer holds"
                )
        files = ImageFiles(
            merged.files,
            tuple(layer.digest for layer in image.layers),
            sum(record.count for record in records),
            merged.listed,
            merged.absent,
        )
        self._remember(self._images, (image.manifest_digest, selection), files)
        return files

    async def _layer(self, ref: Reference, layer: Descriptor, selection: FileSelection) -> LayerFiles:
        key = (layer.digest, selection)
        cached = self._layers.get(key)
        if cached is not None:
            return cached
        return await self._flights.run(
            ("layer", key), lambda: self._stream(ref, layer, selection), f"layer {layer.digest}"
        )

    async def _stream(self, ref: Reference, layer: Descriptor, selection: FileSelection) -> LayerFiles:
        limits = self.limits
        slots = self._streams.setdefault(ref.domain, asyncio.Semaphore(STREAMS_PER_REGISTRY))
        async with (
            slots,
            deadline(limits.timeout_seconds, f"reading layer {layer.digest}", _SETTING) as ends,
            self.client.blob_stream(ref, layer, ends) as chunks,
        ):
            self.layers_streamed += 1
            feed = _Feed(chunks, limits.timeout_seconds)
            try:
                record = await asyncio.to_thread(read_layer, layer, feed.next_chunk, selection, limits)
            finally:
                await feed.aclose()
        self._remember(self._layers, (layer.digest, selection), record)
        return record

    @staticmethod
    def _remember(cache: LRUCache[tuple[str, FileSelection], V], key: tuple[str, FileSelection], value: V) -> None:
        with contextlib.suppress(ValueError):  # larger than the whole cache: read again when asked again
            cache[key] = value


_READERS: weakref.WeakKeyDictionary[RegistryClient, ContentReader] = weakref.WeakKeyDictionary()


async def read_files(
    client: RegistryClient,
    ref: Reference | str,
    selection: FileSelection,
    limits: ContentLimits | None = None,
    *,
    scope: ContactScope | None = None,
) -> dict[str, ImageFiles]:
    """:meth:`ContentReader.read` with the reader kept for ``client`` (its caches live as long as it)."""
    return await reader_for(client, limits, scope=scope).read(ref, selection)


def reader_for(
    client: RegistryClient, limits: ContentLimits | None = None, *, scope: ContactScope | None = None
) -> ContentReader:
    """The reader kept for ``client`` (one per client: its caches live as long as it), made anew
    when the limits or the contact scope changed (a policy reload)."""
    limits = limits or ContentLimits()
    reader = _READERS.get(client)
    if reader is None or reader.limits != limits or reader.scope != scope:
        reader = _READERS[client] = ContentReader(client, limits, scope=scope)
    return reader
