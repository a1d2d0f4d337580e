"""Hand-built layers for the content reader's tests: tar entries of every kind (python tarfile),
compressed as gzip, zstd or not at all, pushed as images to a real registry, by blob uploads and a
manifest PUT (``push``) or by skopeo from an OCI layout (``in_layout``, ``push_by_skopeo``: skopeo
checks a blob's digest, not what is inside it, so hostile layers go that way too); the layers a reader must refuse,
each with its named error (``hostile_layers``)."""

from __future__ import annotations

import fcntl
import functools
import gzip
import hashlib
import io
import json
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zstandard

from imagegate.core.contents.layers import ContentErrorKind
from tests.oci_images import OciLayout, skopeo_copy
from tests.registry_process import Registry

OCI_TAR = "application/vnd.oci.image.layer.v1.tar"
OCI_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
DOCKER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
ANY_DIFF_ID = "sha256:" + "0" * 64  # what a config says of a layer: not what the reader checks


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Entry:
    """One tar entry: a file (``data``), ``dir``, ``symlink`` or ``hardlink`` (``target``)."""

    name: str
    data: bytes = b""
    kind: str = "file"
    target: str = ""


def file(name: str, data: bytes) -> Entry:
    return Entry(name, data)


def symlink(name: str, target: str) -> Entry:
    return Entry(name, kind="symlink", target=target)


def hardlink(name: str, target: str) -> Entry:
    return Entry(name, kind="hardlink", target=target)


def directory(name: str) -> Entry:
    return Entry(name, kind="dir")


_TYPES = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE, "hardlink": tarfile.LNKTYPE}


def tar(entries: list[Entry], tar_format: int = tarfile.PAX_FORMAT) -> bytes:
    """The entries as a tar, in the order given (deterministic: the same entries, the same bytes)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tar_format) as archive:
        for entry in entries:
            info = tarfile.TarInfo(entry.name)
            info.type = _TYPES[entry.kind]
            info.mtime = 0
            info.mode = 0o755 if entry.kind == "dir" else 0o644
            info.linkname = entry.target
            if entry.kind == "file":
                info.size = len(entry.data)
                archive.addfile(info, io.BytesIO(entry.data))
            else:
                archive.addfile(info)
    return raw.getvalue()


@dataclass(frozen=True)
class Blob:
    """A layer as pushed: its bytes, media type and the digest of its tar (the config's diff_id)."""

    data: bytes
    media_type: str
    diff_id: str

    @functools.cached_property  # a base layer's blob is tens of MB, named by many images
    def digest(self) -> str:
        return sha256(self.data)

    def descriptor(self) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": len(self.data)}


def layer(entries: list[Entry], compression: str = "gzip", media_type: str | None = None) -> Blob:
    """A layer of ``entries``, compressed as ``gzip``, ``zstd`` or ``none``."""
    raw = tar(entries)
    return blob(raw, compression, media_type)


def blob(raw: bytes, compression: str = "gzip", media_type: str | None = None) -> Blob:
    if compression == "gzip":
        data, default = gzip.compress(raw, mtime=0), OCI_GZIP
    elif compression == "zstd":
        data, default = zstandard.ZstdCompressor().compress(raw), OCI_ZSTD
    else:
        data, default = raw, OCI_TAR
    return Blob(data, media_type or default, sha256(raw))


def image_documents(blobs: list[Blob]) -> tuple[bytes, bytes]:
    """The config and manifest of an image of ``blobs``."""
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [item.diff_id for item in blobs]},
        }
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": sha256(config), "size": len(config)},
            "layers": [item.descriptor() for item in blobs],
        }
    ).encode()
    return config, manifest


def push(registry: Registry, repository: str, tag: str, blobs: list[Blob], uploaded: set[str] | None = None) -> str:
    """Push an image of ``blobs`` (uploads and a manifest PUT); its manifest digest. Blobs whose
    digests are in ``uploaded`` (to this repository) are not sent again; those sent are added."""
    config, manifest = image_documents(blobs)
    for item in blobs:
        if uploaded is None or item.digest not in uploaded:
            registry.put_blob(repository, item.data)
        if uploaded is not None:
            uploaded.add(item.digest)
    registry.put_blob(repository, config)
    registry.put_manifest(repository, tag, manifest, OCI_MANIFEST)
    return sha256(manifest)


def gzipped(tar_path: Path) -> Path:
    """``tar_path`` gzip-compressed (level 1: a base layer pushed by every run), kept beside it."""
    return compressed(tar_path, "gzip")


def compressed(tar_path: Path, compression: str) -> Path:
    """``tar_path`` compressed as ``gzip`` (level 1) or ``zstd`` (level 3), kept beside it: built
    once, under a lock, so test processes running at once share one file."""
    suffix = {"gzip": ".gz", "zstd": ".zst"}[compression]
    out = tar_path.with_name(tar_path.name + suffix)
    with tar_path.with_name(out.name + ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not out.exists():
            partial = out.with_name(out.name + ".partial")
            with tar_path.open("rb") as source, partial.open("wb") as raw:
                if compression == "gzip":
                    with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=1, mtime=0) as target:
                        shutil.copyfileobj(source, target, 1024 * 1024)
                else:
                    zstandard.ZstdCompressor(level=3).copy_stream(source, raw)
            partial.rename(out)
    return out


def tar_digest(tar_path: Path) -> str:
    """The sha256 digest of ``tar_path`` (a layer's diff_id), computed once and kept beside it."""
    kept = tar_path.with_name(tar_path.name + ".sha256")
    with tar_path.with_name(kept.name + ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not kept.exists():
            with tar_path.open("rb") as source:
                kept.write_text("sha256:" + hashlib.file_digest(source, "sha256").hexdigest())
    return kept.read_text()


def in_layout(layout: OciLayout, blobs: list[Blob], name: str) -> str:
    """Write an image of ``blobs`` (their media types as given) into ``layout`` as ``name``; its
    manifest digest. Not thread-safe (index.json is rewritten): fill the layout, then push."""
    config, manifest = image_documents(blobs)
    for item in blobs:
        if not (layout.root / "blobs" / "sha256" / item.digest.split(":")[1]).exists():
            layout.blob(item.data)
    layout.blob(config)
    layout.blob(manifest)
    layout.tag({"mediaType": OCI_MANIFEST, "digest": sha256(manifest), "size": len(manifest)}, name)
    return sha256(manifest)


def push_by_skopeo(
    registry: Registry, layout: OciLayout, name: str, destination: str, *, docker_format: bool = False
) -> None:
    """Push ``layout``'s image ``name`` to ``destination`` here with skopeo, which copies blobs as
    they are (it checks their digests, not what is inside them: hostile tars go this way too);
    ``docker_format``: as a Docker v2 schema 2 manifest (Docker's media types, the same blobs)."""
    skopeo_copy(
        layout.root,
        name,
        f"{registry.host}/{destination}",
        cert_dir=registry.cert_dir,
        credentials=registry.credentials,
        docker_format=docker_format,
    )


# --- layers a reader must refuse ------------------------------------------------------------


def bomb() -> Blob:
    """64 MiB of zeros in one file: zstd makes it about 2 KiB."""
    return blob(tar([file("zeros", bytes(64 * 1024 * 1024))]), "zstd")


def cut(item: Blob, keep: int) -> Blob:
    return Blob(item.data[:keep], item.media_type, item.diff_id)


def flipped(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1 :]


def hostile_layers(nsswitch: bytes) -> dict[str, tuple[Blob, ContentErrorKind]]:
    """Layers a reader must refuse, each with the named error it ends in (``nsswitch`` is the
    content of the /etc/nsswitch.conf they carry where they carry one)."""
    gz = layer([file("etc/nsswitch.conf", nsswitch * 50)])
    zstd_checked = zstandard.ZstdCompressor(write_checksum=True).compress(
        tar([file("etc/nsswitch.conf", nsswitch * 50)])
    )
    plain = tar([file("etc/nsswitch.conf", nsswitch)])
    return {
        "bomb": (bomb(), ContentErrorKind.BOMB),
        "traversal": (layer([file("../../etc/cron.d/evil", b"x")]), ContentErrorKind.UNSAFE_PATH),
        "absolute": (layer([file("/etc/evil", b"x")]), ContentErrorKind.UNSAFE_PATH),
        "symlink-loop": (
            layer([symlink("etc/nsswitch.conf", "one"), symlink("etc/one", "two"), symlink("etc/two", "/etc/one")]),
            ContentErrorKind.LINK_LOOP,
        ),
        "symlink-out": (
            layer([symlink("etc/nsswitch.conf", "../../../../host/etc/nsswitch.conf")]),
            ContentErrorKind.UNSAFE_LINK,
        ),
        "hardlink-out": (layer([hardlink("etc/nsswitch.conf", "../../etc/shadow")]), ContentErrorKind.UNSAFE_LINK),
        "hardlink-nothing": (layer([hardlink("etc/nsswitch.conf", "etc/missing")]), ContentErrorKind.UNSAFE_LINK),
        "gzip-truncated": (cut(gz, len(gz.data) // 2), ContentErrorKind.TRUNCATED),
        "gzip-crc": (Blob(flipped(gz.data, len(gz.data) - 6), gz.media_type, gz.diff_id), ContentErrorKind.CORRUPT),
        "zstd-truncated": (
            Blob(zstd_checked[: len(zstd_checked) - 3], "application/vnd.oci.image.layer.v1.tar+zstd", ANY_DIFF_ID),
            ContentErrorKind.TRUNCATED,
        ),
        "zstd-corrupt": (
            Blob(
                flipped(zstd_checked, len(zstd_checked) - 2),
                "application/vnd.oci.image.layer.v1.tar+zstd",
                ANY_DIFF_ID,
            ),
            ContentErrorKind.CORRUPT,
        ),
        "tar-checksum": (blob(flipped(plain, 10), "none"), ContentErrorKind.CORRUPT),
        "tar-truncated": (blob(plain[:600], "none"), ContentErrorKind.TRUNCATED),
        "unknown-type": (
            Blob(gz.data, "application/vnd.example.layer.v1+tar", gz.diff_id),
            ContentErrorKind.MEDIA_TYPE,
        ),
        "foreign": (
            Blob(gz.data, "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", gz.diff_id),
            ContentErrorKind.FOREIGN_LAYER,
        ),
    }
