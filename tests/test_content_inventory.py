"""The inventory (issue 25 item 2): packages and licences read from an image's own files.

Real data: a Debian bookworm root filesystem made by mmdebstrap (tests/debian_rootfs.py, cached
between runs), the Python distributions installed on this machine (their METADATA as pip wrote
it), npm's own bundled packages (/usr/lib/node_modules/npm). apk has no Alpine system here: its
database is written in apk-tools' format (one ``K:value`` line per field, records separated by a
blank line). Garbage of every kind is a note, never an exception (hypothesis).
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imagegate.core.contents import apk, dpkg, npm
from imagegate.core.contents.files import ImageFiles
from imagegate.core.contents.inventory import INVENTORY_FILES, read_inventory
from imagegate.core.contents.licences import LicenceClass, Tri, classify
from imagegate.core.contents.packages import Area, Ecosystem, Inventory
from tests.debian_rootfs import kept_files, rootfs

# minbase, plus libnss-sss (Toolforge's integration) and unrar (non-free: an archive area to find)
BOOKWORM = {"include": ("libnss-sss", "unrar"), "components": ("main", "contrib", "non-free")}


@pytest.fixture(scope="module")
def bookworm() -> ImageFiles:
    return kept_files(rootfs(**BOOKWORM), INVENTORY_FILES)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def bookworm_inventory(bookworm: ImageFiles) -> Inventory:
    return read_inventory(bookworm)


def test_dpkg_lists_every_installed_package_of_a_real_rootfs(
    bookworm: ImageFiles, bookworm_inventory: Inventory
) -> None:
    status = bookworm.files[dpkg.STATUS].decode()
    listed = {line.split(": ", 1)[1] for line in status.splitlines() if line.startswith("Package: ")}
    debs = bookworm_inventory.of(Ecosystem.DEB)
    assert {p.name for p in debs} == listed
    assert len(listed) > 80  # minbase and the two packages named: a whole system's status file
    (sss,) = bookworm_inventory.named("libnss-sss")
    assert sss.version.startswith("2.8.") and sss.architecture == "amd64" and sss.area is Area.MAIN
    (unrar,) = bookworm_inventory.named("unrar")
    assert unrar.area is Area.NON_FREE  # its Section is non-free/utils
    assert bookworm_inventory.ecosystems() == {Ecosystem.DEB: len(listed)}


def test_debian_licences_come_from_dep5_copyright_files(bookworm_inventory: Inventory) -> None:
    (dash,) = bookworm_inventory.named("dash")
    assert dash.licence_path == "/usr/share/doc/dash/copyright"
    # dash's copyright says BSD-3-clause, public-domain and GPL-2+ for its files
    assert dash.licence == "BSD-3-Clause AND LicenseRef-public-domain AND GPL-2.0-or-later"
    assert "GPL-2+" in dash.declared
    (adduser,) = bookworm_inventory.named("adduser")
    assert adduser.licence == "GPL-2.0-or-later"
    assert classify(adduser.licence) == {LicenceClass.OSI: Tri.YES, LicenceClass.FSF_LIBRE: Tri.YES}
    # a public-domain part is not an SPDX licence: dash's licence is unknown as a whole, not guessed
    assert classify(dash.licence)[LicenceClass.OSI] is Tri.UNKNOWN
    # glibc's copyright file is not DEP-5: unknown, and said so
    (libc,) = bookworm_inventory.named("libc6")
    assert libc.licence is None
    notes = {note.path: note.problem for note in bookworm_inventory.notes}
    assert notes["/usr/share/doc/libc6/copyright"] == "licence unknown: not a machine-readable (DEP-5) copyright file"
    machine_readable = [p for p in bookworm_inventory.of(Ecosystem.DEB) if p.licence is not None]
    assert len(machine_readable) > 70


def test_distroless_status_d_lists_a_package_per_file(bookworm: ImageFiles) -> None:
    """Distroless images have no dpkg: one paragraph per file, without Status, md5sums beside."""
    status = bookworm.files[dpkg.STATUS].decode()
    paragraphs = {p.split("\n", 1)[0].removeprefix("Package: "): p for p in status.split("\n\n") if p.strip()}
    files = {
        f"{dpkg.STATUS_D}/{name}": "\n".join(
            line for line in paragraphs[name].splitlines() if not line.startswith("Status:")
        ).encode()
        for name in ("libnss-sss", "base-files")
    }
    files[f"{dpkg.STATUS_D}/base-files.md5sums"] = b"0123  etc/debian_version\n"
    files[dpkg.COPYRIGHT.format("libnss-sss")] = bookworm.files[dpkg.COPYRIGHT.format("libnss-sss")]
    inventory = read_inventory(ImageFiles(files))
    assert sorted(p.name for p in inventory.packages) == ["base-files", "libnss-sss"]
    assert inventory.named("libnss-sss")[0].path == f"{dpkg.STATUS_D}/libnss-sss"


def test_a_removed_package_is_not_installed() -> None:
    status = (
        b"Package: libnss-sss\nStatus: deinstall ok config-files\nVersion: 2.8.2-4\n\n"
        b"Package: base-files\nStatus: install ok installed\nVersion: 12.4\n\n"
        b"Package: half\nStatus: install ok half-configured\nVersion: 1\n\n"
        b"Package: waiting\nStatus: install ok triggers-pending\nVersion: 1\n"
    )
    inventory = read_inventory(ImageFiles({dpkg.STATUS: status}))
    assert [p.name for p in inventory.packages] == ["base-files", "waiting"]


def test_python_distributions_from_this_machine() -> None:
    """The METADATA pip wrote for packages installed here, placed in an image's site-packages."""
    files: dict[str, bytes] = {}
    expected = {}
    for name in ("msgspec", "cryptography", "license-expression", "PyYAML", "httpx"):
        dist = importlib.metadata.distribution(name)
        metadata = Path(str(dist.locate_file(""))) / f"{dist._path.name}/METADATA"  # type: ignore[attr-defined]
        files[f"/usr/local/lib/python3.11/site-packages/{dist._path.name}/METADATA"] = metadata.read_bytes()  # type: ignore[attr-defined]
        expected[dist.metadata["Name"]] = dist.version
    inventory = read_inventory(ImageFiles(files))
    assert {p.name: p.version for p in inventory.of(Ecosystem.PYPI)} == expected
    licences = {p.name: p.licence for p in inventory.packages}
    assert licences["msgspec"] == "BSD-3-Clause"  # License-Expression
    assert licences["cryptography"] == "Apache-2.0 OR BSD-3-Clause"
    assert licences["license-expression"] == "Apache-2.0"  # License: an SPDX id
    assert licences["PyYAML"] == "MIT"
    assert inventory.named("pyyaml", Ecosystem.PYPI)  # PEP 503 names
    assert not inventory.notes


def test_python_licence_sources_in_their_order() -> None:
    def licence(*headers: str) -> tuple[str | None, str]:
        text = "Metadata-Version: 2.1\nName: x\nVersion: 1\n" + "".join(f"{h}\n" for h in headers)
        (package,) = read_inventory(ImageFiles({"/app/x-1.dist-info/METADATA": text.encode()})).packages
        return package.licence, package.declared

    assert licence("License: MIT", "License-Expression: Apache-2.0") == ("Apache-2.0", "Apache-2.0")
    assert licence("Classifier: License :: OSI Approved :: MIT License")[0] == "MIT"
    # no version named: unknown, the declaration kept
    assert licence("Classifier: License :: OSI Approved :: BSD License") == (
        "LicenseRef-BSD-License",
        "License :: OSI Approved :: BSD License",
    )
    assert licence("License: Copyright (c) 2020 someone\n  Permission is hereby granted")[0] == (
        "LicenseRef-Copyright-c-2020-someone"
    )
    assert licence() == (None, "")


def test_npm_packages_bundled_with_npm() -> None:
    root = Path("/usr/lib/node_modules/npm")
    if not root.is_dir():
        pytest.skip("npm is not installed here (Debian's npm package)")
    files = {f"/app{path}": path.read_bytes() for path in root.rglob("package.json") if path.is_file()}
    files = {str(path): data for path, data in files.items()}
    inventory = read_inventory(ImageFiles(files))
    roots = [path for path in files if npm.package_root(path)]
    assert len(inventory.of(Ecosystem.NPM)) + sum(1 for n in inventory.notes if "no name" in n.problem) == len(roots)
    assert len(roots) > 50 and len(roots) < len(files)  # package.json files inside packages are not packages
    by_name = {p.name: p for p in inventory.packages}
    semver = by_name["semver"]
    assert semver.licence == "ISC" and semver.version
    assert all(p.licence for p in inventory.packages if p.name in ("chalk", "semver", "minipass"))


def test_npm_package_roots() -> None:
    assert npm.package_root("/app/node_modules/left-pad/package.json")
    assert npm.package_root("/app/node_modules/@babel/core/package.json")
    assert npm.package_root("/a/node_modules/x/node_modules/y/package.json")
    assert not npm.package_root("/app/node_modules/left-pad/test/package.json")
    assert not npm.package_root("/app/node_modules/@babel/package.json")
    assert not npm.package_root("/app/package.json")


def test_npm_legacy_licence_forms() -> None:
    files = {
        "/n/node_modules/a/package.json": b'{"name": "a", "version": "1.0.0", "license": {"type": "MIT"}}',
        "/n/node_modules/b/package.json": b'{"name": "b", "version": "2.0.0", "licenses": [{"type": "MIT"}, {"type": "Apache-2.0"}]}',
        "/n/node_modules/c/package.json": b'{"name": "c", "version": "3.0.0", "license": "SEE LICENSE IN LICENSE.md"}',
        "/n/node_modules/d/package.json": b'["not", "an", "object"]',
    }
    inventory = read_inventory(ImageFiles(files))
    assert {p.name: p.licence for p in inventory.packages} == {
        "a": "MIT",
        "b": "MIT AND Apache-2.0",
        "c": "LicenseRef-SEE-LICENSE-IN-LICENSE.md",
    }
    assert [str(n) for n in inventory.notes] == [
        "/n/node_modules/d/package.json: unreadable: a JSON list, not an object"
    ]


APK_INSTALLED = b"""C:Q1fFb7N7qzJWt1bP3QK5S5J5Ve5cQ=
P:musl
V:1.2.4-r2
A:x86_64
S:383152
I:622592
T:the musl c library (libc) implementation
U:https://musl.libc.org/
L:MIT
o:musl
m:Natanael Copa <ncopa@alpinelinux.org>
t:1698171474
c:83b858f83b658bd34eca5d8ad4d145f673ae7e5e
p:so:libc.musl-x86_64.so.1=1
F:lib
R:ld-musl-x86_64.so.1
a:0:0:755
Z:Q1m8zVAr8Wk0bZ5Up8T0P4T7dO3qM=
R:libc.musl-x86_64.so.1

C:Q1rXY7Op4Fs1sD6ec8nGRyzC9bXqE=
P:busybox
V:1.36.1-r15
A:x86_64
L:GPL-2.0-only
D:so:libc.musl-x86_64.so.1
F:bin
R:busybox

C:Q1nolicence=
P:nolicence
V:1
"""


def test_apk_database() -> None:
    inventory = read_inventory(ImageFiles({apk.INSTALLED: APK_INSTALLED}))
    assert [(p.name, p.version, p.licence, p.architecture) for p in inventory.packages] == [
        ("musl", "1.2.4-r2", "MIT", "x86_64"),
        ("busybox", "1.36.1-r15", "GPL-2.0-only", "x86_64"),
        ("nolicence", "1", None, ""),
    ]
    assert inventory.packages[0].ecosystem is Ecosystem.APK


def test_unreadable_files_are_notes() -> None:
    files = {
        dpkg.STATUS: b"Package: a\nStatus: install ok installed\nVersion: 1\n\xff\xfe",
        apk.INSTALLED: b"P:musl\x00\x01",
        "/usr/share/doc/b/copyright": b"\x89PNG",
        "/x/y.dist-info/METADATA": b"garbage without headers",
        "/n/node_modules/z/package.json": b"{not json",
    }
    inventory = read_inventory(ImageFiles(files))
    assert inventory.packages == ()
    assert [str(n) for n in inventory.notes] == [
        "/var/lib/dpkg/status: unreadable: not UTF-8 text (byte 51)",
        "/lib/apk/db/installed: unreadable: binary data (a NUL byte at offset 6)",
        "/x/y.dist-info/METADATA: unreadable: no Name header (not core metadata)",
        "/n/node_modules/z/package.json: unreadable: not JSON (JSON is malformed: object keys must be strings (byte 1))",
    ]


def test_a_copyright_file_that_is_not_dep5() -> None:
    files = {
        dpkg.STATUS: b"Package: b\nStatus: install ok installed\nVersion: 1\n",
        "/usr/share/doc/b/copyright": b"This is b, written by someone.\n\nLicense: GPL\n",
    }
    inventory = read_inventory(ImageFiles(files))
    assert inventory.packages[0].licence is None
    assert [str(n) for n in inventory.notes] == [
        "/usr/share/doc/b/copyright: licence unknown: not a machine-readable (DEP-5) copyright file"
    ]


PATHS = sorted(
    {
        dpkg.STATUS,
        f"{dpkg.STATUS_D}/x",
        "/usr/share/doc/x/copyright",
        apk.INSTALLED,
        "/usr/lib/python3/dist-packages/x-1.dist-info/METADATA",
        "/usr/lib/python3/dist-packages/x-1.egg-info/PKG-INFO",
        "/usr/lib/python3/dist-packages/y-1.egg-info",
        "/app/node_modules/x/package.json",
        "/app/node_modules/@s/x/package.json",
    }
)
FIELDS = st.sampled_from(
    [b"Package: ", b"Status: install ok installed", b"Format: x", b"Files: *", b"License: ", b"P:", b"L:", b"Name: "]
)
TEXTISH = st.lists(st.one_of(FIELDS, st.binary(max_size=40), st.just(b"\n"), st.just(b"\n ")), max_size=30).map(
    b"".join
)


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.sampled_from(PATHS), st.one_of(st.binary(max_size=300), TEXTISH), max_size=len(PATHS)))
def test_never_raises_on_garbage(files: dict[str, bytes]) -> None:
    inventory = read_inventory(ImageFiles(files))
    assert all(note.path in files for note in inventory.notes)
    for package in inventory.packages:
        assert package.name and package.path in files
        if package.licence is not None:
            classify(package.licence)


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=80))
def test_never_raises_on_licence_text(text: str) -> None:
    files = {
        "/app/node_modules/x/package.json": f'{{"name": "x", "license": {__import__("json").dumps(text)}}}'.encode(),
        apk.INSTALLED: f"P:x\nL:{text.splitlines()[0] if text.splitlines() else ''}\n".encode(),
    }
    for package in read_inventory(ImageFiles(files)).packages:
        assert package.licence is None or classify(package.licence)
