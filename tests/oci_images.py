"""Build real OCI images on disk (an OCI image layout) and push them with skopeo.

The tests need images with known layers: base images, images built on an older or newer
base, images on an unrelated base, multi-arch indexes. They are made here from tar layers
and pushed into a real registry by skopeo, an independent client.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import subprocess
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Layer:
    tar: bytes
    blob: bytes

    @property
    def diff_id(self) -> str:
        return sha256(self.tar)

    @property
    def digest(self) -> str:
        return sha256(self.blob)


def layer(files: dict[str, bytes]) -> Layer:
    """A layer holding ``files``; deterministic, so the same files give the same digests."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name, content in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(content)
            info.mtime = 0
            archive.addfile(info, io.BytesIO(content))
    tar = raw.getvalue()
    return Layer(tar, gzip.compress(tar, mtime=0))


def layers(tag: str, count: int) -> list[Layer]:
    return [layer({f"{tag}/file{i}": f"{tag} layer {i}\n".encode() * (i + 1)}) for i in range(count)]


@dataclass
class OciLayout:
    """An OCI image layout directory: ``oci-layout``, ``index.json``, ``blobs/sha256/``."""

    root: Path
    refs: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        (self.root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        (self.root / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')

    def blob(self, data: bytes) -> str:
        digest = sha256(data)
        (self.root / "blobs" / "sha256" / digest.split(":")[1]).write_bytes(data)
        return digest

    def image(
        self,
        image_layers: list[Layer],
        *,
        architecture: str = "amd64",
        os: str = "linux",
        annotations: dict[str, str] | None = None,
        created: str | None = None,
    ) -> dict[str, Any]:
        """Write config and manifest; return the manifest's descriptor."""
        config: dict[str, Any] = {
            "architecture": architecture,
            "os": os,
            "config": {"User": "1000", "Env": ["PATH=/usr/bin:/bin"]},
            "rootfs": {"type": "layers", "diff_ids": [item.diff_id for item in image_layers]},
            "history": [{"created_by": f"layer {i}"} for i in range(len(image_layers))],
        }
        if created is not None:
            config["created"] = created
        config_bytes = json.dumps(config).encode()
        manifest: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": self.blob(config_bytes), "size": len(config_bytes)},
            "layers": [
                {"mediaType": OCI_LAYER, "digest": self.blob(item.blob), "size": len(item.blob)}
                for item in image_layers
            ],
        }
        if annotations:
            manifest["annotations"] = annotations
        manifest_bytes = json.dumps(manifest).encode()
        return {
            "mediaType": OCI_MANIFEST,
            "digest": self.blob(manifest_bytes),
            "size": len(manifest_bytes),
            "platform": {"architecture": architecture, "os": os},
        }

    def index(self, manifests: list[dict[str, Any]]) -> dict[str, Any]:
        body = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}).encode()
        return {"mediaType": OCI_INDEX, "digest": self.blob(body), "size": len(body)}

    def tag(self, descriptor: dict[str, Any], name: str) -> None:
        entry = {key: value for key, value in descriptor.items() if key != "platform"}
        entry["annotations"] = {"org.opencontainers.image.ref.name": name}
        self.refs = [r for r in self.refs if r["annotations"]["org.opencontainers.image.ref.name"] != name]
        self.refs.append(entry)
        (self.root / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": self.refs}))


def skopeo_copy(
    layout: Path,
    name: str,
    destination: str,
    *,
    cert_dir: Path,
    docker_format: bool = False,
    all_platforms: bool = False,
    credentials: str | None = None,
) -> None:
    """Push ``layout:name`` to ``docker://destination`` with skopeo (optionally as Docker v2s2)."""
    command = ["skopeo", "copy", "--quiet", "--dest-cert-dir", str(cert_dir)]
    if docker_format:
        command += ["--format", "v2s2"]
    if all_platforms:
        command.append("--all")
    if credentials:
        command += ["--dest-creds", credentials]
    command += [f"oci:{layout}:{name}", f"docker://{destination}"]
    subprocess.run(command, check=True, capture_output=True, timeout=120)


def skopeo_inspect(reference: str, *, cert_dir: Path, raw: bool = False, credentials: str | None = None) -> Any:
    command = ["skopeo", "inspect", "--cert-dir", str(cert_dir)]
    if raw:
        command.append("--raw")
    if credentials:
        command += ["--creds", credentials]
    command.append(f"docker://{reference}")
    output = subprocess.run(command, check=True, capture_output=True, timeout=60).stdout
    return json.loads(output)
