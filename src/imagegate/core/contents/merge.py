"""An image's layers merged into the filesystem its container sees, pure: records in, kept files out.

Layers apply lowest first, as containerd's overlay snapshotter stacks them. For each layer:

1. its whiteouts apply to the layers below it only (OCI image spec, "Whiteouts"): ``.wh.<name>``
   removes ``<name>`` (a directory with everything under it), ``.wh..wh..opq`` empties its
   directory of what the layers below put there. Entries of the same layer are never hidden by
   its own whiteouts, whatever their order in the archive;
2. its entries apply in archive order (a whiteout only makes its directory one): a file, symlink or device replaces whatever was at
   its path (a directory with everything under it); a directory merges with a directory below it
   and replaces anything else; an entry below a path that is not a directory makes that path a
   directory (the layer's diff saw one there); a hard link shares the node of the path it names, as
   the tree is at that point (a lower layer's file, or an earlier entry of this layer), and names
   nothing else: a hard link to nothing or to a directory is an error.

Then every path the :class:`FileSelection` wants gives its content: a regular file its own, a
symlink its target's, resolved inside the image (relative and absolute targets, ``..``,
symlinked directories on the way; more than 40 links or a climb above ``/`` is an error, a
dangling link or one to a directory gives nothing, as opening it would). An exact path of the
selection is also looked up through symlinked directories (``/lib/os-release`` when ``/lib`` is
a link to ``usr/lib``); patterns match the paths entries have.

The kept files that are listings (:attr:`FileSelection.listings`: dpkg's md5sums of a required
package) are then read, and each path they name is looked up in the merged tree as ``lstat``
would see it (symlinked directories on the way followed, the last component not, a loop or a
climb above ``/`` counting as nothing there): those with nothing there are :attr:`Merged.absent`.
Only those paths are asked, so the reader answers "which of these exist" without keeping the
image's every path.

A kept symlink or hard link may lead to a file whose content no layer kept (its path is not
wanted): :func:`merge` then names those paths in ``needed``, and the reader reads the layers that
hold them again, keeping them too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from imagegate.core.contents.files import FileSelection, listed_paths
from imagegate.core.contents.layers import ContentError, ContentErrorKind, EntryKind, LayerFiles
from imagegate.core.contents.limits import ContentLimits

__all__ = ["MAX_LINK_HOPS", "Merged", "merge"]

# As Linux's MAXSYMLINKS: more links than this on one path is a loop.
MAX_LINK_HOPS = 40


class _File:
    __slots__ = ("content", "origin")

    def __init__(self, content: bytes | None, origin: str) -> None:
        self.content = content
        self.origin = origin  # the path whose entry holds the content (a hard link's target)


class _Link:
    __slots__ = ("target",)

    def __init__(self, target: str) -> None:
        self.target = target


class _Other:
    __slots__ = ()


_OTHER = _Other()
_Node = dict[str, "_Node"] | _File | _Link | _Other


@dataclass(frozen=True, slots=True)
class Merged:
    """The kept files, the paths whose content a kept link needs but no layer kept, the kept
    listing files and the paths they name that the merged tree lacks."""

    files: dict[str, bytes]
    needed: frozenset[str]
    listed: frozenset[str] = frozenset()
    absent: frozenset[str] = frozenset()


def _parts(path: str) -> list[str]:
    return [part for part in path.split("/") if part]


def _directory(root: dict[str, _Node], path: str, create: bool) -> dict[str, _Node] | None:
    """The directory at ``path`` taken literally (no symlink followed), created (replacing what is
    not a directory) when ``create``; None when it is missing or not a directory."""
    node = root
    for part in _parts(path):
        child = node.get(part)
        if not isinstance(child, dict):
            if not create:
                return None
            child = {}
            node[part] = child
        node = child
    return node


class _Resolver:
    def __init__(self, root: dict[str, _Node]) -> None:
        self.root = root

    def resolve(self, path: str, *, follow_last: bool, about: str) -> _Node | None:
        """The node at ``path``, symlinks followed inside the image; None when nothing is there."""
        todo = list(reversed(_parts(path)))
        trail: list[dict[str, _Node]] = []  # the directories walked into, the root first
        current: _Node = self.root
        hops = 0
        while todo:
            part = todo.pop()
            if part == ".":
                continue
            if part == "..":
                if not trail:
                    raise ContentError(
                        ContentErrorKind.UNSAFE_LINK, "", f"{about}: its symlinks lead above the image's root"
                    )
                current = trail.pop()
                continue
            if not isinstance(current, dict):
                return None  # a path through a file
            node = current.get(part)
            if node is None:
                return None
            if isinstance(node, _Link) and (todo or follow_last):
                hops += 1
                if hops > MAX_LINK_HOPS:
                    raise ContentError(
                        ContentErrorKind.LINK_LOOP, "", f"{about}: more than {MAX_LINK_HOPS} symlinks (a loop)"
                    )
                if node.target.startswith("/"):
                    trail.clear()
                    current = self.root
                todo.extend(reversed(_parts(node.target)))
                continue
            trail.append(current)
            current = node
        return current


def _apply(root: dict[str, _Node], layer: LayerFiles) -> None:
    for kind, path, _data in layer.entries:  # whiteouts first: they hide the layers below only
        if kind is EntryKind.WHITEOUT:
            above, _, name = path.rpartition("/")
            directory = _directory(root, above, create=False)
            if directory is not None:
                directory.pop(name, None)
        elif kind is EntryKind.OPAQUE:
            directory = _directory(root, path, create=False)
            if directory is not None:
                directory.clear()
    resolver = _Resolver(root)
    for kind, path, data in layer.entries:
        if kind is EntryKind.WHITEOUT or kind is EntryKind.OPAQUE:
            # the directory holding a whiteout is one in this layer (containerd makes it: mkparent)
            _directory(root, path.rpartition("/")[0] if kind is EntryKind.WHITEOUT else path, create=True)
            continue
        parent_path, _, name = path.rpartition("/")
        parent = _directory(root, parent_path, create=True)
        assert parent is not None  # created
        if kind is EntryKind.DIR:
            if not isinstance(parent.get(name), dict):
                parent[name] = {}
        elif kind is EntryKind.FILE:
            parent[name] = _File(data if isinstance(data, bytes) else None, path)
        elif kind is EntryKind.SYMLINK:
            parent[name] = _Link(str(data))
        elif kind is EntryKind.OTHER:
            parent[name] = _OTHER
        else:  # a hard link: the node its target has now
            target = str(data)
            about = f"layer {layer.digest}: the hard link {path}"
            node = resolver.resolve(target, follow_last=False, about=about)
            if node is None or isinstance(node, dict):
                what = "nothing" if node is None else "a directory"
                raise ContentError(
                    ContentErrorKind.UNSAFE_LINK, layer.digest, f"the hard link {path} names {what} ({target})"
                )
            parent[name] = node


def merge(layers: Sequence[LayerFiles], selection: FileSelection, limits: ContentLimits) -> Merged:
    """The files ``selection`` wants from the filesystem ``layers`` (lowest first) make."""
    total = sum(layer.count for layer in layers)
    if total > limits.max_entries:
        raise ContentError(
            ContentErrorKind.TOO_MANY_ENTRIES,
            "",
            f"the image's layers have {total} entries; the limit is {limits.max_entries} (registry.contents.maxEntries)",
        )
    root: dict[str, _Node] = {}
    for layer in layers:
        _apply(root, layer)
    resolver = _Resolver(root)
    files: dict[str, bytes] = {}
    needed: set[str] = set()

    def keep(path: str, node: _Node | None) -> None:
        if isinstance(node, _File):
            if node.content is None:
                needed.add(node.origin)
            else:
                files[path] = node.content

    stack: list[tuple[str, dict[str, _Node]]] = [("", root)]
    while stack:
        prefix, directory = stack.pop()
        for name, node in directory.items():
            path = f"{prefix}/{name}"
            if isinstance(node, dict):
                stack.append((path, node))
            elif isinstance(node, _File):
                if selection.wants(path):
                    keep(path, node)
            elif isinstance(node, _Link) and selection.wants(path):
                keep(path, resolver.resolve(path, follow_last=True, about=f"the symlink {path}"))
    for path in selection.exact:
        if path not in files:
            keep(path, resolver.resolve(path, follow_last=True, about=path))
    kept = sum(len(content) for content in files.values())
    if kept > limits.max_kept_bytes:
        raise ContentError(
            ContentErrorKind.TOO_LARGE,
            "",
            f"the image keeps {kept} bytes of files; the limit is {limits.max_kept_bytes} (registry.contents.maxKeptBytes)",
        )
    listed, absent = _absent(resolver, files, selection) if selection.listings else (frozenset(), frozenset())
    return Merged(files, frozenset(needed), listed, absent)


def _absent(
    resolver: _Resolver, files: dict[str, bytes], selection: FileSelection
) -> tuple[frozenset[str], frozenset[str]]:
    """The kept listing files, and the paths they name that nothing in the merged tree is at."""
    listed: set[str] = set()
    absent: set[str] = set()
    seen: set[str] = set()
    for path, data in files.items():
        form = selection.listing_form(path)
        if form is None:
            continue
        listed.add(path)
        for named in listed_paths(form, data):
            if named in seen:
                continue
            seen.add(named)
            try:
                node = resolver.resolve(named, follow_last=False, about=named)
            except ContentError:  # a loop or a climb on the way: nothing is at that path
                node = None
            if node is None:
                absent.add(named)
    return frozenset(listed), frozenset(absent)
