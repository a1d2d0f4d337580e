"""An image's files as the container sees them, as far as imagegate keeps them: the contract
between the layer reader (shell/registry/contents.py: streams, verifies and merges layers) and
the parsers and rules over them (core/contents/: inventory, licences, content rules).

The reader keeps only the files a :class:`FileSelection` wants (package databases, named files,
licence files); everything else is walked past and counted. Paths are absolute and normalized
(``/etc/nsswitch.conf``: one leading ``/``, no ``.``, ``..`` or empty segments), as the
container sees them after every layer and its whiteouts are applied in order.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Iterator, Mapping
from fnmatch import translate

import msgspec

__all__ = ["CONTAINER_PATH_FORM", "FileSelection", "ImageFiles", "Listing", "container_path_error", "listed_paths"]

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


class Listing(enum.StrEnum):
    """How a listing file names paths (:attr:`FileSelection.listings`): the form of its lines."""

    MD5SUMS = "md5sums"  # "<32 hex digits>  <path relative to />": dpkg's info/<package>.md5sums
    PATHS = "paths"  # each line that is an absolute path: dpkg's info/<package>.list, its diversions


def listed_paths(form: Listing, data: bytes) -> Iterator[str]:
    """The paths a listing file of ``form`` names, in its order; lines of another form, and paths
    that are not normalized container paths (which name nothing in an image), are skipped."""
    for raw in data.decode("utf-8", "surrogateescape").splitlines():
        if form is Listing.MD5SUMS:
            if len(raw) < 35 or raw[32:34] != "  ":
                continue
            path = "/" + raw[34:]
        else:
            path = raw
        if path != "/" and container_path_error(path) is None:
            yield path


class FileSelection(msgspec.Struct, frozen=True):
    """Which regular files of an image to keep: exact paths, and shell-style patterns over the whole
    path (``*`` crosses ``/``, as :func:`fnmatch.fnmatchcase` matches: ``/usr/share/doc/*/copyright``).

    Each part of imagegate that reads files says what it needs as a selection; the reader keeps the
    union (``|``) of them. ``wants`` is asked once per tar entry of every layer, so the patterns are
    compiled into one regular expression.

    ``listings`` names kept files (a pattern each, also in ``patterns``: made by :meth:`listing`)
    whose lines name paths, and their form: the merge says which of those paths the merged tree
    lacks (:attr:`ImageFiles.absent`), so a rule can prove a package's files are in place without
    the reader keeping every path of the image.
    """

    exact: frozenset[str] = frozenset()
    patterns: tuple[str, ...] = ()
    listings: tuple[tuple[str, Listing], ...] = ()

    def __post_init__(self) -> None:
        if any(pattern not in self.patterns for pattern, _ in self.listings):
            raise ValueError("a listing's pattern is kept as a pattern too: make it with FileSelection.listing")

    @classmethod
    def listing(cls, pattern: str, form: Listing) -> FileSelection:
        """Keep the files ``pattern`` matches, and check the paths they list (in ``form``) are present."""
        return cls(patterns=(pattern,), listings=((pattern, form),))

    def __or__(self, other: FileSelection) -> FileSelection:
        patterns = tuple(dict.fromkeys((*self.patterns, *other.patterns)))
        listings = tuple(dict.fromkeys((*self.listings, *other.listings)))
        return FileSelection(self.exact | other.exact, patterns, listings)

    def listing_form(self, path: str) -> Listing | None:
        """The form of the listing ``path`` is (the first listing pattern it matches), or None."""
        for pattern, form in self.listings:
            matcher = _matcher((pattern,))
            if matcher is not None and matcher.match(path) is not None:
                return form
        return None

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

    ``listed`` names the kept listing files (the selection's ``listings``) whose paths were looked
    up in the merged tree, and ``absent`` the paths they name that it lacks (nothing there, after
    every whiteout and opaque directory; symlinked directories on the way followed, the last
    component not). A path absent from ``absent`` but named by no file of ``listed`` was not asked.
    """

    files: Mapping[str, bytes]
    layers: tuple[str, ...] = ()
    entries: int = 0
    listed: frozenset[str] = frozenset()
    absent: frozenset[str] = frozenset()

    def under(self, prefix: str) -> Iterable[tuple[str, bytes]]:
        """The kept files below the directory ``prefix`` (``/var/lib/dpkg/status.d``), by path."""
        start = prefix.rstrip("/") + "/"
        return ((path, data) for path, data in sorted(self.files.items()) if path.startswith(start))
