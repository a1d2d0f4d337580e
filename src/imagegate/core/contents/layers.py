"""One layer blob read as containerd reads it, pure: bytes in (pulled from a callable), a record out.

:func:`read_layer` pulls the blob's bytes as they arrive (``next_chunk()``; the shell feeds it from
the registry's answer), and at once

* verifies them against the descriptor: no more bytes than its ``size``, and at the end exactly
  ``size`` bytes whose digest is its ``digest``;
* decompresses them, found by their first bytes as containerd finds them (gzip, zstd or a plain
  tar, whatever the media type's suffix says), never more than
  :meth:`ContentLimits.unpacked_allowance` (a decompression bomb ends the read);
* walks the tar as Go's archive/tar does (USTAR, GNU and PAX headers; link, symlink, device, fifo and
  directory entries carry no data whatever their size says; the archive ends at a zero block, or
  cleanly at a header boundary) and records each entry: kept regular files with their content
  (those the :class:`FileSelection` wants), every other file by path only, links, directories
  and whiteouts, in archive order. Merging the records of an image's layers is
  :mod:`imagegate.core.contents.merge`.

Every fault is a :class:`ContentError` with a :class:`ContentErrorKind` and the layer's digest in
its message: a digest or size mismatch, a corrupt or truncated gzip/zstd/tar stream, an absolute
or ``..`` entry name, a hard link out of the tree, a tar type imagegate does not read, a limit.
"""

from __future__ import annotations

import enum
import hashlib
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, cast

import zstandard

from imagegate.core.contents.files import FileSelection
from imagegate.core.contents.limits import ContentLimits
from imagegate.core.oci import Descriptor

__all__ = [
    "FOREIGN_LAYER_TYPES",
    "LAYER_TYPES",
    "ContentError",
    "ContentErrorKind",
    "Entry",
    "EntryKind",
    "LayerFiles",
    "check_layer",
    "check_layer_type",
    "entry_path",
    "read_layer",
]


class ContentErrorKind(enum.StrEnum):
    """What was wrong with an image's content, one name per class; the values are stable (logs, metrics)."""

    DIGEST_MISMATCH = "digest-mismatch"  # the bytes are not those the descriptor names (digest or size)
    MEDIA_TYPE = "media-type"  # a layer media type imagegate does not read
    FOREIGN_LAYER = "foreign-layer"  # a non-distributable layer: its bytes are not in the registry
    CORRUPT = "corrupt"  # the gzip, zstd or tar framing is broken (CRC, frame, header checksum)
    TRUNCATED = "truncated"  # the stream ends before an entry, or the compressed stream, does
    UNSAFE_PATH = "unsafe-path"  # an absolute or ``..`` entry name
    UNSAFE_LINK = "unsafe-link"  # a hard link or kept symlink that leaves the tree or names nothing
    LINK_LOOP = "link-loop"  # symlinks that never end in a file
    UNSUPPORTED = "unsupported"  # a tar entry type imagegate does not read (sparse files, tape volumes)
    BOMB = "bomb"  # far more decompressed bytes than compressed ones
    TOO_LARGE = "too-large"  # a byte limit (the message names the setting)
    TOO_MANY_ENTRIES = "too-many-entries"


class ContentError(Exception):
    """An image's content could not be read as the container would see it; ``kind`` says which way."""

    def __init__(self, kind: ContentErrorKind, layer: str, message: str) -> None:
        self.kind = kind
        self.layer = layer  # the layer's digest ("" for the image as a whole)
        super().__init__(f"layer {layer}: {message}" if layer else message)


# The layer media types containerd pulls, and the foreign ones whose bytes live elsewhere (never read).
LAYER_TYPES = frozenset(
    {
        "application/vnd.oci.image.layer.v1.tar",
        "application/vnd.oci.image.layer.v1.tar+gzip",
        "application/vnd.oci.image.layer.v1.tar+zstd",
        "application/vnd.docker.image.rootfs.diff.tar.gzip",
        "application/vnd.docker.image.rootfs.diff.tar",
    }
)
FOREIGN_LAYER_TYPES = frozenset(
    {
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    }
)


def check_layer_type(descriptor: Descriptor) -> None:
    """Refuse a layer imagegate cannot read, before any byte of it is asked for."""
    media_type = descriptor.media_type
    if media_type in FOREIGN_LAYER_TYPES:
        raise ContentError(
            ContentErrorKind.FOREIGN_LAYER,
            descriptor.digest,
            f"a non-distributable (foreign) layer ({media_type}): its bytes are not in the registry, "
            "so imagegate cannot read what it holds",
        )
    if media_type not in LAYER_TYPES:
        raise ContentError(
            ContentErrorKind.MEDIA_TYPE, descriptor.digest, f"{media_type or '(no media type)'} is not a layer type"
        )


class EntryKind(enum.IntEnum):
    DIR = 0
    FILE = 1  # a regular file: its content when kept, else None
    SYMLINK = 2  # its target as written
    HARDLINK = 3  # the normalized path it links to
    WHITEOUT = 4  # ``.wh.<name>``: <name> removed from the layers below
    OPAQUE = 5  # ``.wh..wh..opq``: the directory's contents in the layers below removed
    OTHER = 6  # a device or a fifo: not a directory, no content


# (kind, absolute normalized path, content | link target | None)
Entry = tuple[EntryKind, str, bytes | str | None]


@dataclass(frozen=True, slots=True)
class LayerFiles:
    """One layer as read: every entry in archive order, and what reading it cost."""

    digest: str
    entries: tuple[Entry, ...]
    count: int  # tar entries walked
    unpacked: int  # decompressed bytes
    kept: int  # bytes of kept content

    @property
    def weight(self) -> int:
        """About the memory it holds, for a cache bounded by bytes."""
        return self.kept + sum(len(path) + 80 for _kind, path, _data in self.entries) + 200


def entry_path(name: str) -> str | None:
    """``name`` as an absolute normalized path (``./etc/x/`` is ``/etc/x``); ``""`` for the root.

    None for a name imagegate refuses: absolute, or with a ``..`` segment (a tar name is relative
    to the root it is unpacked in; neither is ever in a layer a build tool writes).
    """
    if name.startswith("/"):
        return None
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if ".." in parts:
        return None
    return "/" + "/".join(parts) if parts else ""


_BLOCK = 512
_ZERO_BLOCK = bytes(_BLOCK)
_HIGH_BYTES = bytes(range(128, 256))
_PIECE = 1024 * 1024  # decompressed bytes handed on at a time: memory stays bounded whatever the ratio
_INPUT = 256 * 1024  # compressed bytes fed to zlib at a time
_MAX_HEADER_DATA = 1024 * 1024  # a PAX or GNU long-name header's data
_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_REGULAR = frozenset({b"0", b"\x00", b"7"})
_OTHER = frozenset({b"3", b"4", b"6"})
_HEADER_ONLY = frozenset({b"1", b"2", b"3", b"4", b"5", b"6"})  # Go's isHeaderOnlyType: no data, whatever the size
_WHITEOUT = ".wh."
_OPAQUE = ".wh..wh..opq"


class _Verified:
    """The blob's bytes as pulled, counted and hashed: never more than the descriptor's size."""

    def __init__(self, descriptor: Descriptor, next_chunk: Callable[[], bytes]) -> None:
        self.descriptor = descriptor
        self.next_chunk = next_chunk
        algorithm, _, self.expected = descriptor.digest.partition(":")
        if algorithm not in ("sha256", "sha512") or not self.expected:
            raise ContentError(
                ContentErrorKind.DIGEST_MISMATCH, descriptor.digest, "the descriptor's digest is not sha256 or sha512"
            )
        self.hasher = hashlib.new(algorithm)
        self.size = 0
        self.ended = False

    def chunks(self) -> Iterator[bytes]:
        while True:
            chunk = self.next_chunk()
            if not chunk:
                self.ended = True
                return
            self.size += len(chunk)
            if self.size > self.descriptor.size:
                raise ContentError(
                    ContentErrorKind.DIGEST_MISMATCH,
                    self.descriptor.digest,
                    f"the registry sent more than the {self.descriptor.size} bytes its descriptor says",
                )
            self.hasher.update(chunk)
            yield chunk

    def verify(self) -> None:
        digest = self.descriptor.digest
        if self.size != self.descriptor.size:
            raise ContentError(
                ContentErrorKind.DIGEST_MISMATCH,
                digest,
                f"the registry sent {self.size} bytes; its descriptor says {self.descriptor.size}",
            )
        if self.hasher.hexdigest() != self.expected:
            found = f"{self.descriptor.digest.partition(':')[0]}:{self.hasher.hexdigest()}"
            raise ContentError(ContentErrorKind.DIGEST_MISMATCH, digest, f"the bytes sent have the digest {found}")


def _gunzip(chunks: Iterator[bytes], layer: str) -> Iterator[bytes]:
    """gzip members one after another, as Go's gzip.Reader reads them (a CRC or length that does not
    match, bytes after a member that are not another member, or a member cut short: errors)."""
    member = zlib.decompressobj(16 + zlib.MAX_WBITS)
    started = False
    try:
        for chunk in chunks:
            view = memoryview(chunk)
            for start in range(0, len(view), _INPUT):  # slices: zlib copies its unconsumed tail each step
                data: bytes | memoryview = view[start : start + _INPUT]
                while data:
                    started = True
                    piece = member.decompress(data, _PIECE)
                    if piece:
                        yield piece
                    if member.eof:
                        data = member.unused_data
                        member = zlib.decompressobj(16 + zlib.MAX_WBITS)
                        started = False
                    else:
                        data = member.unconsumed_tail
        while started and not member.eof:  # output still held for want of room
            piece = member.decompress(b"", _PIECE)
            if not piece:
                break
            yield piece
    except zlib.error as exc:
        raise ContentError(ContentErrorKind.CORRUPT, layer, f"the gzip stream is corrupt ({exc})") from None
    if started and not member.eof:
        raise ContentError(ContentErrorKind.TRUNCATED, layer, "the gzip stream ends before it is complete")


class _ChunkReader:
    """A file-like ``read(n)`` over the chunks, for zstandard's pull reader."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._chunk = b""
        self._at = 0

    def read(self, size: int = -1) -> bytes:
        if self._at >= len(self._chunk):
            self._chunk, self._at = next(self._chunks, b""), 0
        end = len(self._chunk) if size < 0 else self._at + size
        out = self._chunk[self._at : end]
        self._at += len(out)
        return out


def _unzstd(chunks: Iterator[bytes], layer: str) -> Iterator[bytes]:
    """zstd frames one after another; every frame walked for completeness (zstandard's reader stops
    quietly at a frame cut short)."""
    frames = _ZstdFrames(layer)

    def watched() -> Iterator[bytes]:
        for chunk in chunks:
            frames.feed(chunk)
            yield chunk

    reader = zstandard.ZstdDecompressor().stream_reader(
        cast("IO[bytes]", _ChunkReader(watched())), read_size=256 * 1024, read_across_frames=True
    )
    try:
        while piece := reader.read(_PIECE):
            yield piece
    except zstandard.ZstdError as exc:
        raise ContentError(ContentErrorKind.CORRUPT, layer, f"the zstd stream is corrupt ({exc})") from None
    frames.finish()


class _ZstdFrames:
    """Walks zstd's framing (RFC 8878: frames, skippable frames, blocks) to see that it ends where a
    frame does; the decompressing is zstandard's."""

    def __init__(self, layer: str) -> None:
        self.layer = layer
        self.buffer = b""
        self.skip = 0  # bytes to pass over (block contents, skippable frames)
        self.state = "magic"  # magic | header | block | checksum
        self.header = 0
        self.checksum = False
        self.frames = 0

    def _corrupt(self, why: str) -> ContentError:
        return ContentError(ContentErrorKind.CORRUPT, self.layer, f"the zstd stream is corrupt ({why})")

    def feed(self, data: bytes) -> None:
        data = self.buffer + data if self.buffer else data
        position = 0
        while True:
            if self.skip:
                step = min(self.skip, len(data) - position)
                position += step
                self.skip -= step
                if self.skip:
                    break
            used = self._step(data, position)
            if used is None:
                break
            position += used
        self.buffer = data[position:]

    def _step(self, data: bytes, position: int) -> int | None:
        """Read one framing element at ``position``: the bytes it takes (or None: more are needed)."""
        left = len(data) - position
        if self.state == "magic":
            return None if left < 5 else self._magic(data, position)
        if self.state == "header":
            if left < self.header:
                return None
            self.state = "block"
            return self.header
        if self.state == "block":
            if left < 3:
                return None
            block = int.from_bytes(data[position : position + 3], "little")
            kind = (block >> 1) & 3
            if kind == 3:
                raise self._corrupt("a reserved block type")
            self.skip = 1 if kind == 1 else block >> 3
            if block & 1:
                self.state = "checksum" if self.checksum else "magic"
                self.frames += not self.checksum
            return 3
        if left < 4:  # the checksum
            return None
        self.frames += 1
        self.state = "magic"
        return 4

    def _magic(self, data: bytes, position: int) -> int | None:
        magic = int.from_bytes(data[position : position + 4], "little")
        if magic & 0xFFFFFFF0 == 0x184D2A50:  # a skippable frame: its size, then that many bytes
            if len(data) - position < 8:
                return None
            self.skip = int.from_bytes(data[position + 4 : position + 8], "little")
            return 8
        if magic != 0xFD2FB528:
            raise self._corrupt("not a zstd frame")
        descriptor = data[position + 4]
        single = (descriptor >> 5) & 1
        content_size = (0, 2, 4, 8)[descriptor >> 6] or single
        self.header = 4 + 1 + (0 if single else 1) + (0, 1, 2, 4)[descriptor & 3] + content_size
        self.checksum = bool(descriptor & 4)
        self.state = "header"
        return 0

    def finish(self) -> None:
        if self.skip or self.state != "magic" or self.buffer:
            raise ContentError(ContentErrorKind.TRUNCATED, self.layer, "the zstd stream ends inside a frame")


class _Bytes:
    """The decompressed tar stream, read exactly: whole blocks, or skipped past."""

    def __init__(self, pieces: Iterator[bytes], allowance: int, layer: str, limits: ContentLimits) -> None:
        self._pieces = pieces
        self._data = b""
        self._at = 0
        self.total = 0
        self._allowance = allowance
        self._layer = layer
        self._limits = limits

    def _more(self) -> bool:
        piece = next(self._pieces, b"")
        if not piece:
            return False
        self.total += len(piece)
        if self.total > self._allowance:
            if self.total > self._limits.max_unpacked_layer_bytes:
                raise ContentError(
                    ContentErrorKind.TOO_LARGE,
                    self._layer,
                    f"unpacks to more than {self._limits.max_unpacked_layer_bytes} bytes "
                    "(registry.contents.maxUnpackedLayerBytes)",
                )
            raise ContentError(
                ContentErrorKind.BOMB,
                self._layer,
                f"unpacks to more than {self._allowance} bytes, over {self._limits.max_ratio} times its "
                "compressed size (registry.contents.maxRatio): a decompression bomb",
            )
        rest = len(self._data) - self._at
        self._data = self._data[self._at :] + piece if rest else piece
        self._at = 0
        return True

    def read(self, size: int) -> bytes:
        """``size`` bytes, or fewer when the stream ends."""
        while len(self._data) - self._at < size:
            if not self._more():
                break
        out = self._data[self._at : self._at + size]
        self._at += len(out)
        return out

    def skip(self, size: int) -> int:
        """Pass over ``size`` bytes; how many there were."""
        skipped = 0
        while skipped < size:
            have = len(self._data) - self._at
            if not have and not self._more():
                break
            have = len(self._data) - self._at
            step = min(have, size - skipped)
            self._at += step
            skipped += step
        return skipped

    def drain(self) -> None:
        while self._more():
            self._at = len(self._data)


def _lexical(directory: str, target: str) -> str | None:
    """A symlink's target as its text names it from ``directory`` (symlinks on the way not followed)."""
    parts: list[str] = [] if target.startswith("/") else [p for p in directory.split("/") if p]
    for part in target.split("/"):
        if part == "..":
            if not parts:
                return None
            parts.pop()
        elif part not in ("", "."):
            parts.append(part)
    return "/" + "/".join(parts) if parts else None


def _cstring(field: bytes) -> str:
    return field.split(b"\x00", 1)[0].decode("utf-8", "surrogateescape")


def _number(field: bytes, layer: str, what: str) -> int:
    """A numeric header field as Go parses it: octal (spaces and NULs around it), or base-256."""
    if field and field[0] & 0x80:
        if field[0] & 0x40:
            raise ContentError(ContentErrorKind.CORRUPT, layer, f"a tar header's {what} is negative")
        return int.from_bytes(bytes([field[0] & 0x7F]) + field[1:], "big")
    text = field.strip(b" \x00")
    if not text:
        return 0
    try:
        return int(text, 8)
    except ValueError:
        raise ContentError(ContentErrorKind.CORRUPT, layer, f"a tar header's {what} is not a number") from None


def _pax(data: bytes, layer: str) -> dict[str, str]:
    """PAX records ``<length> <key>=<value>\\n``."""
    records: dict[str, str] = {}
    position = 0
    while position < len(data):
        space = data.find(b" ", position)
        try:
            length = int(data[position:space]) if space > position else 0
        except ValueError:
            length = 0
        record = data[position : position + length]
        if length <= space - position or not record.endswith(b"\n") or b"=" not in record:
            if not data[position:].strip(b"\x00"):
                break  # NUL padding after the last record
            raise ContentError(ContentErrorKind.CORRUPT, layer, "a PAX header record is malformed")
        key, _, value = record[space - position + 1 : -1].partition(b"=")
        records[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
        position += length
    return records


def _decompressed(chunks: Iterator[bytes], layer: str) -> Iterator[bytes]:
    """The chunks decompressed as containerd does: by their first bytes, whatever the media type says."""
    first = b""
    for chunk in chunks:
        first += chunk
        if len(first) >= 4:
            break
    rest = _prepend(first, chunks)
    if first.startswith(_GZIP_MAGIC):
        return _gunzip(rest, layer)
    if first.startswith(_ZSTD_MAGIC):
        return _unzstd(rest, layer)
    return rest


def _prepend(first: bytes, chunks: Iterator[bytes]) -> Iterator[bytes]:
    if first:
        yield first
    yield from chunks


def check_layer(descriptor: Descriptor, limits: ContentLimits) -> None:
    """Refuse a layer before any byte of it is asked for: a type imagegate cannot read, or too large."""
    check_layer_type(descriptor)
    if descriptor.size > limits.max_layer_bytes:
        raise ContentError(
            ContentErrorKind.TOO_LARGE,
            descriptor.digest,
            f"is {descriptor.size} bytes; the limit is {limits.max_layer_bytes} (registry.contents.maxLayerBytes)",
        )


def read_layer(
    descriptor: Descriptor, next_chunk: Callable[[], bytes], selection: FileSelection, limits: ContentLimits
) -> LayerFiles:
    """Read one layer blob (pulled chunk by chunk with ``next_chunk()``, ``b""`` at its end), verified,
    decompressed and walked; keep the regular files ``selection`` wants. Raises :class:`ContentError`."""
    check_layer(descriptor, limits)
    layer = descriptor.digest
    verified = _Verified(descriptor, next_chunk)
    stream = _Bytes(_decompressed(verified.chunks(), layer), limits.unpacked_allowance(descriptor.size), layer, limits)
    walker = _Walker(stream, layer, selection, limits)
    try:
        walker.run()
        stream.drain()  # what follows the archive is read too: the digest covers it
    except ContentError as exc:
        if exc.kind in (ContentErrorKind.CORRUPT, ContentErrorKind.TRUNCATED):
            # bytes that are not what the descriptor names are said as that, not as what they broke
            for _ in verified.chunks():
                pass
            verified.verify()
        raise
    if not verified.ended:  # the decompressor stopped before the blob did
        for _ in verified.chunks():
            pass
    verified.verify()
    return LayerFiles(layer, tuple(walker.entries), walker.count, stream.total, walker.kept)


class _Walker:
    """The tar stream walked as Go's archive/tar reads it, each entry recorded."""

    def __init__(self, stream: _Bytes, layer: str, selection: FileSelection, limits: ContentLimits) -> None:
        self.stream, self.layer, self.selection, self.limits = stream, layer, selection, limits
        self.entries: list[Entry] = []
        self.count = 0
        self.kept = 0
        self.pax: dict[str, str] = {}
        self.long_name: str | None = None
        self.long_link: str | None = None
        # targets of kept symlinks, as their text names them: kept too when they come later in the
        # layer, which spares the second read merge() would otherwise ask for (/etc/os-release)
        self.targets: set[str] = set()

    def error(self, kind: ContentErrorKind, message: str) -> ContentError:
        return ContentError(kind, self.layer, message)

    def run(self) -> None:
        while True:
            block = self.stream.read(_BLOCK)
            if not block:
                return  # the archive ends at a header boundary without its zero blocks: Go accepts it
            if len(block) < _BLOCK:
                raise self.error(ContentErrorKind.TRUNCATED, "the tar stream ends inside a header")
            if block == _ZERO_BLOCK:
                following = self.stream.read(_BLOCK)
                if following and following != _ZERO_BLOCK:
                    raise self.error(
                        ContentErrorKind.CORRUPT, "a zero tar block is followed by data, not by the archive's end"
                    )
                return
            self._check(block)
            typeflag = block[156:157]
            size = _number(block[124:136], self.layer, "size")
            if typeflag in (b"x", b"g", b"L", b"K"):
                self._extended(typeflag, size)
            else:
                self._entry(block, typeflag, size)

    def _check(self, block: bytes) -> None:
        """The header's checksum, unsigned or signed as Go accepts either."""
        stored = _number(block[148:156], self.layer, "checksum")
        field = block[148:156]
        unsigned = sum(block) - sum(field) + 8 * 32
        if stored != unsigned:
            high = len(block) - len(block.translate(None, _HIGH_BYTES))
            high_in_field = len(field) - len(field.translate(None, _HIGH_BYTES))
            if stored != unsigned - 256 * (high - high_in_field):
                raise self.error(
                    ContentErrorKind.CORRUPT, f"a tar header's checksum does not match (entry {self.count + 1})"
                )

    def _skip(self, size: int, what: str) -> None:
        if self.stream.skip(size) < size:
            raise self.error(ContentErrorKind.TRUNCATED, f"the tar stream ends inside {what}")

    def _extended(self, typeflag: bytes, size: int) -> None:
        """A PAX or GNU header: what it says applies to the next entry."""
        if size > _MAX_HEADER_DATA:
            raise self.error(ContentErrorKind.TOO_LARGE, f"an extended tar header of {size} bytes")
        data = self.stream.read(size)
        if len(data) < size:
            raise self.error(ContentErrorKind.TRUNCATED, "the tar stream ends inside an extended header")
        self._skip(-size % _BLOCK, "an extended header")
        if typeflag == b"x":
            self.pax.update(_pax(data, self.layer))
        elif typeflag == b"g":
            if {"path", "linkpath", "size"} & _pax(data, self.layer).keys():
                raise self.error(ContentErrorKind.UNSUPPORTED, "a global PAX header that sets names or sizes")
        elif typeflag == b"L":
            self.long_name = _cstring(data)
        else:
            self.long_link = _cstring(data)

    def _names(self, block: bytes) -> tuple[str, str, int | None]:
        """The entry's name, link name and PAX size (None: the header's), extended headers applied."""
        name = _cstring(block[0:100])
        if block[257:263] == b"ustar\x00":
            prefix = _cstring(block[345:500])
            if prefix:
                name = f"{prefix}/{name}"
        if self.long_name is not None:
            name = self.long_name
        pax = self.pax
        name = pax.get("path", name)
        linkname = pax.get("linkpath", self.long_link if self.long_link is not None else _cstring(block[157:257]))
        size: int | None = None
        if "size" in pax:
            try:
                size = int(pax["size"])
            except ValueError:
                raise self.error(ContentErrorKind.CORRUPT, f"{name}: its PAX size is not a number") from None
        if any(key.startswith("GNU.sparse") for key in pax):
            raise self.error(ContentErrorKind.UNSUPPORTED, f"{name}: a sparse file")
        self.pax, self.long_name, self.long_link = {}, None, None
        return name, linkname, size

    def _entry(self, block: bytes, typeflag: bytes, size: int) -> None:
        self.count += 1
        if self.count > self.limits.max_entries:
            raise self.error(
                ContentErrorKind.TOO_MANY_ENTRIES,
                f"has more than {self.limits.max_entries} entries (registry.contents.maxEntries)",
            )
        name, linkname, pax_size = self._names(block)
        size = size if pax_size is None else pax_size
        if typeflag in (b"0", b"\x00") and name.endswith("/"):
            typeflag = b"5"  # an old tar's directory
        if typeflag in _HEADER_ONLY:
            size = 0
        path = entry_path(name)
        if path is None:
            raise self.error(ContentErrorKind.UNSAFE_PATH, f"the entry {name!r} is absolute or climbs out with '..'")
        padding = -size % _BLOCK
        parent, _, base = path.rpartition("/")
        if base.startswith(_WHITEOUT):  # whatever its type, as containerd reads it
            self._whiteout(parent, base, name)
            self._skip(size + padding, name)
        elif path == "":
            if typeflag != b"5":
                raise self.error(ContentErrorKind.UNSAFE_PATH, f"the entry {name!r} replaces the root directory")
        elif typeflag in _REGULAR:
            self.entries.append((EntryKind.FILE, path, self._content(path, size, padding)))
        elif typeflag == b"5":
            self.entries.append((EntryKind.DIR, path, None))
        elif typeflag == b"2":
            self._symlink(path, parent, linkname)
        elif typeflag == b"1":
            target = entry_path(linkname)
            if not target:
                raise self.error(
                    ContentErrorKind.UNSAFE_LINK,
                    f"the hard link {path} points at {linkname!r}, outside the image's tree",
                )
            self.entries.append((EntryKind.HARDLINK, path, target))
        elif typeflag in _OTHER:
            self.entries.append((EntryKind.OTHER, path, None))
        else:
            kind = "a sparse file" if typeflag == b"S" else f"the tar entry type {typeflag!r}"
            raise self.error(ContentErrorKind.UNSUPPORTED, f"{path}: {kind}, which imagegate does not read")

    def _symlink(self, path: str, parent: str, linkname: str) -> None:
        if not linkname:
            raise self.error(ContentErrorKind.UNSAFE_LINK, f"the symlink {path} has no target")
        self.entries.append((EntryKind.SYMLINK, path, linkname))
        if self.selection.wants(path):
            target = _lexical(parent, linkname)
            if target:
                self.targets.add(target)

    def _whiteout(self, parent: str, base: str, name: str) -> None:
        if base == _OPAQUE:
            self.entries.append((EntryKind.OPAQUE, parent or "/", None))
        elif not base.startswith(_WHITEOUT + _WHITEOUT[1:]):  # other .wh..wh. names: aufs metadata, never applied
            hidden = base[len(_WHITEOUT) :]
            if hidden in ("", ".", ".."):
                raise self.error(ContentErrorKind.UNSAFE_PATH, f"the whiteout {name!r} names no file")
            self.entries.append((EntryKind.WHITEOUT, f"{parent}/{hidden}", None))

    def _content(self, path: str, size: int, padding: int) -> bytes | None:
        """A regular file's content when the selection wants it (bounded), else None (skipped)."""
        if not self.selection.wants(path) and path not in self.targets:
            self._skip(size + padding, path)
            return None
        limits = self.limits
        if size > limits.max_file_bytes:
            raise self.error(
                ContentErrorKind.TOO_LARGE,
                f"{path} is {size} bytes; the limit for a kept file is {limits.max_file_bytes} "
                "(registry.contents.maxFileBytes)",
            )
        self.kept += size
        if self.kept > limits.max_kept_bytes:
            raise self.error(
                ContentErrorKind.TOO_LARGE,
                f"keeps more than {limits.max_kept_bytes} bytes of files (registry.contents.maxKeptBytes)",
            )
        content = self.stream.read(size)
        if len(content) < size:
            raise self.error(ContentErrorKind.TRUNCATED, f"the tar stream ends inside {path}")
        self._skip(padding, path)
        return content
