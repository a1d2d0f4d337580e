"""Layers read and merged by the pure core, against a straightforward model (hypothesis), and the
tar and compression edge cases one by one.

The model keeps the whole filesystem as a flat map of paths, applies each layer as the OCI image
spec says (whiteouts on the layers below, then the entries in order, a non-directory replacing
a directory and everything under it) and resolves symlinks over that map: a second, simpler
implementation of the same rules. Random stacks of real tar layers (python tarfile, gzip or not),
read by :func:`read_layer` and merged by :func:`merge` (with the second read for link targets that
the reader does), must give the model's files, or the model's error.
"""

from __future__ import annotations

import gzip
import io
import tarfile
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imagegate.core.contents.files import FileSelection, Listing, container_path_error
from imagegate.core.contents.layers import ContentError, ContentErrorKind, LayerFiles, read_layer
from imagegate.core.contents.limits import ContentLimits
from imagegate.core.contents.merge import MAX_LINK_HOPS, merge
from imagegate.core.oci import Descriptor
from tests.content_layers import Blob, Entry, blob, directory, file, hardlink, symlink, tar

NAMES = ("a", "b", "c")
PATHS = ["/".join(parts) for depth in (1, 2, 3) for parts in __import__("itertools").product(NAMES, repeat=depth)]


def _chunks(data: bytes, size: int) -> Callable[[], bytes]:
    pieces: Iterator[bytes] = iter([data[i : i + size] for i in range(0, len(data), size)])
    return lambda: next(pieces, b"")


def read(item: Blob, selection: FileSelection, limits: ContentLimits | None = None, chunk: int = 97) -> LayerFiles:
    descriptor = Descriptor(item.media_type, item.digest, len(item.data))
    return read_layer(descriptor, _chunks(item.data, chunk), selection, limits or ContentLimits())


def read_image(blobs: list[Blob], selection: FileSelection) -> dict[str, bytes]:
    """As shell/registry/contents.py does: read, merge, and read again for what links need."""
    limits = ContentLimits()
    records = [read(item, selection) for item in blobs]
    merged = merge(records, selection, limits)
    if merged.needed:
        wider = selection | FileSelection(merged.needed)
        merged = merge([read(item, wider) for item in blobs], selection, limits)
        assert not merged.needed
    return merged.files


# --- the model ------------------------------------------------------------------------------------


def _descendants(fs: dict[str, tuple[str, bytes | str]], path: str) -> list[str]:
    return [key for key in fs if not path or key.startswith(path + "/")]


def _remove(fs: dict[str, tuple[str, bytes | str]], path: str, itself: bool = True) -> None:
    for key in _descendants(fs, path):
        del fs[key]
    if itself:
        fs.pop(path, None)


def _make_dirs(fs: dict[str, tuple[str, bytes | str]], path: str) -> None:
    parts = path.split("/")
    for depth in range(1, len(parts) + 1):
        ancestor = "/".join(parts[:depth])
        if ancestor and fs.get(ancestor, ("dir", b""))[0] != "dir":
            _remove(fs, ancestor)
        if ancestor:
            fs.setdefault(ancestor, ("dir", b""))


def model_tree(layers: list[list[Entry]]) -> dict[str, tuple[str, bytes | str]]:
    """The merged filesystem: path without the leading / -> (kind, content or target)."""
    fs: dict[str, tuple[str, bytes | str]] = {}
    for entries in layers:
        for entry in entries:
            parent, _, base = entry.name.rpartition("/")
            if base == ".wh..wh..opq":
                _remove(fs, parent, itself=False)
            elif base.startswith(".wh."):
                _remove(fs, f"{parent}/{base[4:]}".lstrip("/"))
        for entry in entries:
            parent, _, base = entry.name.rpartition("/")
            if base.startswith(".wh."):
                _make_dirs(fs, parent)
                continue
            _make_dirs(fs, parent)
            if entry.kind == "dir":
                if fs.get(entry.name, ("", b""))[0] != "dir":
                    _remove(fs, entry.name)
                    fs[entry.name] = ("dir", b"")
            else:
                _remove(fs, entry.name)
                fs[entry.name] = ("file", entry.data) if entry.kind == "file" else ("link", entry.target)
    return fs


def model(layers: list[list[Entry]], wanted: Callable[[str], bool], exact: set[str]) -> dict[str, bytes]:
    fs = model_tree(layers)
    files: dict[str, bytes] = {}
    for path, (kind, _value) in fs.items():
        if kind in ("file", "link") and wanted("/" + path):
            found = _model_resolve(fs, path)
            if found is not None:
                files["/" + path] = found
    for path in exact:
        if path not in files:
            found = _model_resolve(fs, path.lstrip("/"))
            if found is not None:
                files[path] = found
    return files


def _model_exists(fs: dict[str, tuple[str, bytes | str]], path: str) -> bool:
    """Whether something is at ``path`` (lstat): its directory resolved, the last component taken as is."""
    folder, _, name = path.rpartition("/")
    try:
        at = _model_resolve(fs, folder, directory=True) if folder else ""
    except ContentError:
        return False
    return at is not None and ("/".join(p for p in (at, name) if p)) in fs


def _model_resolve(fs: dict[str, tuple[str, bytes | str]], path: str, directory: bool = False) -> Any:
    """A file's content (None: no file there); with ``directory``, the path of the directory (None: none)."""
    todo = [part for part in path.split("/") if part][::-1]
    at: list[str] = []
    hops = 0
    while todo:
        part = todo.pop()
        if part == ".":
            continue
        if part == "..":
            if not at:
                raise ContentError(ContentErrorKind.UNSAFE_LINK, "", "above the root")
            at.pop()
            continue
        if at and fs["/".join(at)][0] != "dir":
            return None
        here = "/".join([*at, part])
        if here not in fs:
            return None
        kind, value = fs[here]
        if kind == "link":
            hops += 1
            if hops > MAX_LINK_HOPS:
                raise ContentError(ContentErrorKind.LINK_LOOP, "", "loop")
            assert isinstance(value, str)
            if value.startswith("/"):
                at = []
            todo.extend([p for p in value.split("/") if p][::-1])
            continue
        at.append(part)
    if directory:
        return "/".join(at) if not at or fs["/".join(at)][0] == "dir" else None
    if not at:
        return None
    kind, value = fs["/".join(at)]
    return value if kind == "file" and isinstance(value, bytes) else None


# --- random stacks ----------------------------------------------------------------------------------

_targets = st.one_of(
    st.sampled_from(PATHS).map(lambda p: "/" + p),
    st.lists(st.sampled_from([*NAMES, "..", "."]), min_size=1, max_size=4).map("/".join),
)
_entry = st.one_of(
    st.builds(file, st.sampled_from(PATHS), st.binary(max_size=3)),
    st.builds(directory, st.sampled_from(PATHS)),
    st.builds(symlink, st.sampled_from(PATHS), _targets),
    st.sampled_from(PATHS).map(lambda p: file(f"{p.rpartition('/')[0]}/.wh.{p.rpartition('/')[2]}".lstrip("/"), b"")),
    st.sampled_from(["", *PATHS[:12]]).map(lambda p: file(f"{p}/.wh..wh..opq".lstrip("/"), b"")),
)
_stack = st.lists(st.lists(_entry, max_size=8), min_size=1, max_size=4)
_selection = st.one_of(
    st.just(FileSelection(patterns=("*",))),
    st.sets(st.sampled_from(PATHS).map(lambda p: "/" + p), max_size=6).map(lambda s: FileSelection(frozenset(s))),
    st.just(FileSelection(patterns=("/a/*",))),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_stack, _selection, st.booleans())
def test_random_stacks_merge_as_the_model_says(
    layers: list[list[Entry]], selection: FileSelection, zipped: bool
) -> None:
    blobs = [blob(tar(entries), "gzip" if zipped else "none") for entries in layers]
    try:
        expected: dict[str, bytes] | ContentErrorKind = model(layers, selection.wants, set(selection.exact))
    except ContentError as exc:
        expected = exc.kind
    try:
        found: dict[str, bytes] | ContentErrorKind = read_image(blobs, selection)
    except ContentError as exc:
        found = exc.kind
    assert found == expected


_listed = st.lists(
    st.one_of(st.sampled_from(PATHS).map(lambda p: "/" + p), st.sampled_from(["/a/../b", "a/b", "/", "/c/./a"])),
    max_size=8,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_stack, _listed, st.integers(0, 3), st.booleans())
def test_listed_paths_are_absent_as_the_model_says(
    layers: list[list[Entry]], listed: list[str], where: int, md5sums: bool
) -> None:
    """A listing kept from any layer (dpkg's md5sums, or a plain list of paths): the paths it names
    that the merged tree lacks, as the model's ``lstat`` says, whatever layers came above it."""
    form = Listing.MD5SUMS if md5sums else Listing.PATHS
    lines = [("0" * 32 + "  " + p.lstrip("/")) if md5sums else p for p in listed]
    listing = file("list/it", "\n".join(lines).encode())
    layers = [list(entries) for entries in layers]
    layers[min(where, len(layers) - 1)].insert(0, listing)
    selection = FileSelection.listing("/list/it", form)
    fs = model_tree(layers)
    if fs.get("list/it", ("", b""))[0] != "file" or fs.get("list", ("dir", b""))[0] != "dir":
        return  # a later layer removed or replaced the listing: nothing is listed
    named = ["/" + p.lstrip("/") if md5sums else p for p in listed]  # md5sums names paths from the root
    valid = [p for p in named if p != "/" and container_path_error(p) is None]
    expected = {p for p in valid if not _model_exists(fs, p.lstrip("/"))}
    limits = ContentLimits()
    try:
        merged = merge([read(blob(tar(entries), "none"), selection) for entries in layers], selection, limits)
    except ContentError as exc:  # a hard link to nothing: the model reads no such image either
        assert exc.kind is ContentErrorKind.UNSAFE_LINK
        return
    assert merged.listed == {"/list/it"}
    assert merged.absent == expected


# --- one case at a time --------------------------------------------------------------------------------

ALL = FileSelection(patterns=("*",))


def test_hard_links_share_content_across_layers() -> None:
    lower = blob(tar([file("usr/lib/libc.so", b"ELF")]))
    upper = blob(tar([hardlink("lib/libc.so", "usr/lib/libc.so"), file("usr/lib/libc.so", b"new")]))
    assert read_image([lower, upper], ALL) == {"/usr/lib/libc.so": b"new", "/lib/libc.so": b"ELF"}


def _raw_tar(*members: tuple[tarfile.TarInfo, bytes]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for info, data in members:
            archive.addfile(info, io.BytesIO(data))
    return raw.getvalue()


def _info(
    name: str, kind: bytes = tarfile.REGTYPE, size: int = 0, pax: dict[str, str] | None = None
) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.size = kind, size
    if pax:
        info.pax_headers = pax
    return info


def _kind_of(raw: bytes, selection: FileSelection = ALL) -> ContentErrorKind | None:
    try:
        read(blob(raw, "none"), selection)
    except ContentError as exc:
        return exc.kind
    return None


def test_devices_fifos_and_header_only_sizes() -> None:
    raw = _raw_tar(
        (_info("dev/null", tarfile.CHRTYPE), b""),
        (_info("run/fifo", tarfile.FIFOTYPE), b""),
        (_info("etc/hosts", size=3), b"abc"),
    )
    layer = read(blob(raw, "none"), ALL)
    assert [path for _kind, path, _data in layer.entries] == ["/dev/null", "/run/fifo", "/etc/hosts"]
    assert merge([layer], ALL, ContentLimits()).files == {"/etc/hosts": b"abc"}


def test_pax_names_and_sizes() -> None:
    long = "opt/" + "x" * 300 + "/LICENSE"
    raw = _raw_tar((_info(long, size=4, pax={"path": long}), b"MIT\n"))
    assert read_image([blob(raw)], ALL) == {"/" + long: b"MIT\n"}


def test_a_global_pax_header_naming_files_is_refused() -> None:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT, pax_headers={"path": "etc/x"}) as archive:
        archive.addfile(_info("etc/hosts", size=1), io.BytesIO(b"a"))
    assert _kind_of(raw.getvalue()) is ContentErrorKind.UNSUPPORTED


def test_sparse_files_are_refused() -> None:
    raw = bytearray(_raw_tar((_info("var/sparse", size=0), b"")))
    # the first header after the PAX one: make it GNU sparse ('S') and fix its checksum
    header = raw.find(b"var/sparse")
    raw[header + 156] = ord("S")
    raw[header + 148 : header + 156] = b" " * 8
    raw[header + 148 : header + 156] = b"%06o\x00 " % sum(raw[header : header + 512])
    assert _kind_of(bytes(raw)) is ContentErrorKind.UNSUPPORTED


def test_a_zero_block_followed_by_data_is_corrupt_and_trailing_zeros_are_not() -> None:
    one = _raw_tar((_info("etc/hosts", size=1), b"a"))
    end = one.rstrip(b"\x00")
    end += bytes(-len(end) % 512)
    assert _kind_of(end + bytes(512) + one) is ContentErrorKind.CORRUPT
    assert _kind_of(one + bytes(10240)) is None
    assert _kind_of(end) is None  # no end-of-archive blocks at all: Go reads it


def test_old_tar_directories_and_dot_slash_names() -> None:
    raw = _raw_tar((_info("./etc/", tarfile.REGTYPE), b""), (_info("./etc/hosts", size=2), b"ok"), (_info("./"), b""))
    layer = read(blob(raw, "none"), ALL)
    assert layer.entries[0][1] == "/etc"
    assert merge([layer], ALL, ContentLimits()).files == {"/etc/hosts": b"ok"}


def test_the_root_replaced_by_a_file_is_refused() -> None:
    assert _kind_of(_raw_tar((_info(".", size=1), b"x"))) is ContentErrorKind.UNSAFE_PATH


@pytest.mark.parametrize("chunk", [1, 7, 512, 4096, 1 << 20])
def test_any_chunking_reads_the_same(chunk: int) -> None:
    raw = tar([file(f"usr/share/doc/p{i}/copyright", b"GPL\n" * i) for i in range(50)])
    for item in (blob(raw, "gzip"), blob(raw, "zstd"), blob(raw, "none")):
        layer = read(item, ALL, chunk=chunk)
        assert len(layer.entries) == 50
        assert layer.unpacked == len(raw)


def test_gzip_output_is_bounded_per_step_whatever_the_ratio() -> None:
    raw = tar([file("zeros", bytes(8 * 1024 * 1024))])
    bomb = Blob(gzip.compress(raw, 9), "application/vnd.oci.image.layer.v1.tar+gzip", "")
    with pytest.raises(ContentError) as caught:
        read(bomb, FileSelection(), chunk=1 << 20)
    assert caught.value.kind is ContentErrorKind.BOMB
    assert "registry.contents.maxRatio" in str(caught.value)


# --- anything at all: a named error or a reading, never another exception -------------------------

_VALID = tar([file("etc/nsswitch.conf", b"passwd: files sss\n"), symlink("etc/os", "../usr/lib/os"), directory("usr")])
_SEEDS = [blob(_VALID, how).data for how in ("gzip", "zstd", "none")]


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(_SEEDS),
    st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(0, 255)), max_size=6),
    st.integers(0, 1 << 16),
    st.binary(max_size=64),
)
def test_damaged_layers_end_in_named_errors(seed: bytes, flips: list[tuple[int, int]], cut: int, tail: bytes) -> None:
    data = bytearray(seed)
    for at, value in flips:
        data[at % len(data)] = value
    damaged = bytes(data[: max(1, len(data) - cut % len(data))]) + tail
    item = Blob(damaged, "application/vnd.oci.image.layer.v1.tar+gzip", "")
    try:
        layer = read(item, ALL)
        merge([layer], ALL, ContentLimits())
    except ContentError as exc:
        assert exc.kind in ContentErrorKind
