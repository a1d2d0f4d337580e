"""A real Debian bookworm image read from a real registry: mmdebstrap's root filesystem
(tests/debian_rootfs.py, cached between runs) pushed by skopeo as a gzip layer, and images built
on it with later layers that remove libnss-sss or replace /etc.

What the reader keeps is compared with the same files read straight from the tar by Python's
tarfile (tests/debian_rootfs.kept_files), and handed to the inventory (core/contents/inventory.py).
"""

from __future__ import annotations

import asyncio
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from imagegate.core.contents import dpkg
from imagegate.core.contents.files import FileSelection, ImageFiles
from imagegate.core.contents.inventory import INVENTORY_FILES, read_inventory
from imagegate.shell.registry.auth import DockerConfigCredentials
from imagegate.shell.registry.client import RegistryClient, RegistrySettings
from imagegate.shell.registry.contents import ContentReader
from tests.content_layers import OCI_GZIP, Blob, file, gzipped, layer, push
from tests.debian_rootfs import kept_files, rootfs
from tests.oci_images import Layer, OciLayout
from tests.registry_process import UNHURRIED_CLIENT, Registry, run_registry

# the rootfs tests/test_content_rules.py uses too: one build serves both
WITH_SSS = {"include": ("libnss-sss", "unrar"), "components": ("main", "contrib", "non-free")}
SELECTION = (
    INVENTORY_FILES
    | FileSelection(frozenset({"/etc/nsswitch.conf", "/etc/os-release"}))
    | dpkg.files_for("libnss-sss")
    | dpkg.files_for("dash")  # its files are diverted (/bin/sh): dpkg's diversions name paths that are not there
)
FILES_ONLY = b"passwd: files\ngroup: files\nshadow: files\n"


@dataclass
class Debian:
    registry: Registry
    credentials: DockerConfigCredentials
    tar: Path

    def ref(self, name: str) -> str:
        return f"{self.registry.host}/{name}"


def _status_without(status: bytes, package: str) -> bytes:
    """dpkg's status with ``package``'s stanza gone, as ``apt-get purge`` leaves it."""
    stanzas = status.split(b"\n\n")
    return b"\n\n".join(s for s in stanzas if not s.startswith(f"Package: {package}\n".encode()))


@pytest.fixture(scope="module")
def debian(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Debian]:
    tar_path = rootfs(**WITH_SSS)  # type: ignore[arg-type]
    base = Layer(tar_path.read_bytes(), gzipped(tar_path).read_bytes())
    with tarfile.open(tar_path) as archive:
        member = archive.extractfile("./var/lib/dpkg/status")
        assert member is not None
        status = member.read()
    workdir = tmp_path_factory.mktemp("debian")
    with run_registry(workdir / "registry", "htpasswd") as reg:
        reg.push(OciLayout(workdir / "layout"), "bookworm", [base], "toolforge/bookworm:latest")  # by skopeo
        removing = layer(
            [
                file("var/lib/dpkg/status", _status_without(status, "libnss-sss")),
                file("usr/share/doc/.wh.libnss-sss", b""),
            ],
            "zstd",
        )
        replacing = layer([file("etc/.wh..wh..opq", b""), file("etc/nsswitch.conf", FILES_ONLY)])
        base_blob = Blob(base.blob, OCI_GZIP, base.diff_id)
        push(reg, "tool-a/app", "removing", [base_blob, removing])
        push(reg, "tool-a/app", "replacing", [base_blob, replacing])
        credentials = DockerConfigCredentials.from_docker_config(reg.docker_config(workdir / "config.json"))
        yield Debian(reg, credentials, tar_path)


def _read(debian: Debian, *names: str) -> tuple[list[ImageFiles], dict[str, int]]:
    async def go() -> tuple[list[ImageFiles], dict[str, int]]:
        settings = RegistrySettings(
            ca_file=debian.registry.tls.ca_cert, credentials=debian.credentials, **UNHURRIED_CLIENT
        )
        async with RegistryClient(settings) as client:
            reader = ContentReader(client)
            found = []
            for name in names:
                (files,) = (await reader.read(debian.ref(name), SELECTION)).values()
                found.append(files)
            return found, dict(client.fetches)

    return asyncio.run(go())


def test_a_real_bookworm_image_read_as_tarfile_reads_it(debian: Debian) -> None:
    (files,), fetches = _read(debian, "toolforge/bookworm:latest")
    expected = kept_files(debian.tar, SELECTION)
    assert files.entries == expected.entries
    # tarfile gives a symlink's target only when it is kept itself; the reader resolves it anyway
    assert files.files["/etc/os-release"].startswith(b'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"')
    assert {p: d for p, d in files.files.items() if p != "/etc/os-release"} == {
        p: d for p, d in expected.files.items() if p != "/etc/os-release"
    }
    assert b"sss" in files.files["/etc/nsswitch.conf"]
    # the listed packages' paths looked up in the merged tree as tarfile's own walk finds them
    assert files.listed == expected.listed >= {"/var/lib/dpkg/info/libnss-sss:amd64.md5sums", dpkg.DIVERSIONS}
    assert files.absent == expected.absent
    assert "/lib/x86_64-linux-gnu/libnss_sss.so.2" not in files.absent  # through usrmerge's /lib symlink
    inventory = read_inventory(files)
    assert "libnss-sss" in {package.name for package in inventory.packages}
    assert fetches["layer"] == 1  # /etc/os-release's target comes later in the tar: kept on the way


def test_images_on_the_base_read_only_their_own_layers(debian: Debian) -> None:
    (base, removing, replacing), fetches = _read(
        debian, "toolforge/bookworm:latest", "tool-a/app:removing", "tool-a/app:replacing"
    )
    assert fetches["layer"] == 3  # the base once, then one layer per image
    names = {package.name for package in read_inventory(removing).packages}
    assert "libnss-sss" not in names and "bash" in names
    assert not any(path.startswith("/usr/share/doc/libnss-sss/") for path in removing.files)
    assert any(path.startswith("/usr/share/doc/libnss-sss/") for path in base.files)
    assert replacing.files["/etc/nsswitch.conf"] == FILES_ONLY
    assert "/etc/os-release" not in replacing.files  # the opaque /etc hid the base's link
    assert replacing.files["/var/lib/dpkg/status"] == base.files["/var/lib/dpkg/status"]
