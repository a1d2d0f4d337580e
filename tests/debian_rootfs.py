"""Real Debian root filesystems for the content tests, made by ``mmdebstrap`` and kept between runs.

A rootfs is a tar made once from Debian's archive (``--variant=minbase`` plus the packages named)
and kept in a cache directory keyed by everything that makes it (suite, variant, components,
packages, mmdebstrap's version), so a second run, or another test file, reads it at once. The
cache is ``$IMAGEGATE_TEST_CACHE`` or ``~/.cache/imagegate-tests``. A build is serialized by a
lock file, so two test processes never build the same rootfs at once.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import os
import posixpath
import shutil
import subprocess
import tarfile
from collections.abc import Iterable, Sequence
from pathlib import Path

from imagegate.core.contents.files import FileSelection, ImageFiles, Listing, listed_paths

BUILD_TIMEOUT = 600  # seconds: 41 s here from Debian's archive, minutes on a slow mirror


def cache_dir() -> Path:
    configured = os.environ.get("IMAGEGATE_TEST_CACHE")
    path = Path(configured) if configured else Path.home() / ".cache" / "imagegate-tests"
    path.mkdir(parents=True, exist_ok=True)
    return path


@functools.cache  # a process asks once (half a second each time)
def _mmdebstrap_version() -> str:
    found = subprocess.run(["mmdebstrap", "--version"], capture_output=True, text=True, check=True, timeout=30)
    return found.stdout.strip()


def rootfs(
    suite: str = "bookworm",
    include: Sequence[str] = (),
    components: Sequence[str] = ("main",),
    variant: str = "minbase",
) -> Path:
    """The tar of a root filesystem with ``include`` installed, built on first use and cached."""
    if shutil.which("mmdebstrap") is None:
        raise RuntimeError("mmdebstrap is not installed (scripts/test.sh's DEBIAN_PACKAGES installs it)")
    inputs = "\n".join([suite, variant, ",".join(components), ",".join(sorted(include)), _mmdebstrap_version()])
    key = hashlib.sha256(inputs.encode()).hexdigest()[:16]
    out = cache_dir() / f"{suite}-{variant}-{key}.tar"
    if out.exists():
        return out
    with open(cache_dir() / f"{out.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if out.exists():  # built by another process while this one waited
            return out
        partial = out.with_suffix(".partial.tar")
        command = ["mmdebstrap", f"--variant={variant}", f"--components={','.join(components)}", "--quiet"]
        if include:
            command.append(f"--include={','.join(include)}")
        subprocess.run([*command, suite, str(partial)], check=True, timeout=BUILD_TIMEOUT, stdin=subprocess.DEVNULL)
        partial.rename(out)
    return out


def _normalized(name: str) -> str:
    parts = [part for part in name.split("/") if part not in ("", ".")]
    return "/" + "/".join(parts)


def kept_files(tar_path: Path, selection: FileSelection, extra: Iterable[str] = ()) -> ImageFiles:
    """The regular files of the rootfs tar that ``selection`` wants (and the ``extra`` paths), as the
    reader would keep them from a one-layer image: a test's view of the real files, no registry."""
    wanted = set(extra)
    files: dict[str, bytes] = {}
    entries = 0
    links: dict[str, str] = {}
    every_link: dict[str, str] = {}
    every: set[str] = set()  # every path (for the listings' paths: the reader keeps none of this)
    with tarfile.open(tar_path) as tar:
        for member in tar:
            entries += 1
            path = _normalized(member.name)
            every.add(path)
            if member.issym():
                every_link[path] = member.linkname
            if member.issym() and (selection.wants(path) or path in wanted):
                links[path] = member.linkname
            if not member.isfile() or not (selection.wants(path) or path in wanted):
                continue
            extracted = tar.extractfile(member)
            assert extracted is not None
            files[path] = extracted.read()
    for path, target in links.items():  # a kept symlink holds its target's content (files.py)
        resolved = _normalized(target if target.startswith("/") else f"{path.rsplit('/', 1)[0]}/{target}")
        if resolved in files:
            files[path] = files[resolved]

    def present(path: str) -> bool:
        """Whether the tar has ``path``, its directories' symlinks followed (not the last's)."""
        done = ""
        for part in path.strip("/").split("/")[:-1]:
            here = f"{done}/{part}"
            target = every_link.get(here)
            done = (
                here if target is None else posixpath.normpath(target if target.startswith("/") else f"{done}/{target}")
            )
        return f"{done}/{path.rsplit('/', 1)[1]}" in every

    listed = {path for path in files if selection.listing_form(path) is not None}
    absent = {
        named
        for path in listed
        for named in listed_paths(selection.listing_form(path) or Listing.PATHS, files[path])
        if not present(named)
    }
    return ImageFiles(files, entries=entries, listed=frozenset(listed), absent=frozenset(absent))
