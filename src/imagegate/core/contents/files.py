"""An image's files as the container sees them, as far as imagegate keeps them: the contract
between the layer reader (shell/registry/contents.py: streams, verifies and merges layers) and
the parsers and rules over them (core/contents/: inventory, licences, content rules).

The reader keeps only the files a :class:`FileSelection` wants (package databases, named files,
licence files); everything else is walked past and counted. Paths are absolute and normalized
(``/etc/nsswitch.conf``: one leading ``/``, no ``.``, ``..`` or empty segments), as the
container sees them after every layer and its whiteouts are applied in order.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from fnmatch import translate

import msgspec

__all__ = ["CONTAINER_PATH_FORM", "FileSelection", "ImageFiles", "container_path_error"]

CONTAINER_PATH_FORM = (
    "an absolute path without '.', '..' or empty segments, as the container sees it (/etc/nsswitch.conf)"
)


def container_path_error(path: str) -> str | None:
    """Why ``path`` cannot name a file in an image (the form the reader's paths have), or ``None``.

    The one rule for every path an operator writes for a container: the policy's
    ``requireFiles`` and the ``contents`` command's ``--file``.
    """
    if path.startswith("/") and all(part not in ("", ".", "..") for part in path.split("/")[1:]):
        return None
    return f"{path!r} is not {CONTAINER_PATH_FORM}"


class FileSelection(msgspec.Struct, frozen=True):
    """Which regular files of an image to keep: exact paths, and shell-style patterns over the whole
    path (``*`` crosses ``/``, as :func:`fnmatch.fnmatchcase` matches: ``/usr/share/doc/*/copyright``).

    Each part of imagegate that reads files says what it needs as a selection; the reader keeps the
    union (``|``) of them. ``wants`` is asked once per tar entry of every layer, so the patterns are
    compiled into one regular expression.
    """

    exact: frozenset[str] = frozenset()
    patterns: tuple[str, ...] = ()

    def __or__(self, other: FileSelection) -> FileSelection:
        patterns = tuple(dict.fromkeys((*self.patterns, *other.patterns)))
        return FileSelection(self.exact | other.exact, patterns)

    def wants(self, path: str) -> bool:
        """Whether ``path`` (absolute, normalized) is kept."""
        if path in self.exact:
            return True
        matcher = _matcher(self.patterns)
        return matcher is not None and matcher.match(path) is not None


_MATCHERS: dict[tuple[str, ...], re.Pattern[str] | None] = {}


def _matcher(patterns: tuple[str, ...]) -> re.Pattern[str] | None:
    """One expression for all ``patterns`` (None for none), compiled once per distinct tuple."""
    found = _MATCHERS.get(patterns)
    if found is None and patterns and patterns not in _MATCHERS:
        found = re.compile("|".join(f"(?:{translate(p)})" for p in patterns))
        if len(_MATCHERS) < 64:  # a process sees a handful of selections: a bound, not an eviction policy
            _MATCHERS[patterns] = found
    return found


class ImageFiles(msgspec.Struct, frozen=True):
    """The kept files of one image's merged filesystem.

    ``files`` maps each kept regular file's path to its content; a kept path that is a symlink
    inside the image holds its target's content (resolved within the image, never outside it).
    ``entries`` counts every entry the reader walked over (kept or not), ``layers`` lists the layer
    digests merged, lowest first.
    """

    files: Mapping[str, bytes]
    layers: tuple[str, ...] = ()
    entries: int = 0

    def under(self, prefix: str) -> Iterable[tuple[str, bytes]]:
        """The kept files below the directory ``prefix`` (``/var/lib/dpkg/status.d``), by path."""
        start = prefix.rstrip("/") + "/"
        return ((path, data) for path, data in sorted(self.files.items()) if path.startswith(start))
