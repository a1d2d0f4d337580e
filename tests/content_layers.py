"""Hand-built layers for the content reader's tests: tar entries of every kind (python tarfile),
compressed as gzip, zstd or not at all, pushed as images to a real registry (blob uploads and a
manifest PUT: hostile layers that skopeo would refuse to copy go the same way)."""

from __future__ import annotations

import fcntl
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

from tests.registry_process import Registry

OCI_TAR = "application/vnd.oci.image.layer.v1.tar"
OCI_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
DOCKER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


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

    @property
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
    out = tar_path.with_name(tar_path.name + ".gz")
    with tar_path.with_name(tar_path.name + ".gz.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not out.exists():
            partial = out.with_name(out.name + ".partial")
            with (
                tar_path.open("rb") as source,
                partial.open("wb") as raw,
                gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=1, mtime=0) as target,
            ):
                shutil.copyfileobj(source, target, 1024 * 1024)
            partial.rename(out)
    return out
