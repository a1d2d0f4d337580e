"""Repository patterns: which images a policy entry covers.

A pattern is written in canonical form, registry first::

    docker-registry.svc.toolforge.org           every repository on that registry
    tools-harbor.wmcloud.org/toolforge          that repository and everything below it
    tools-harbor.wmcloud.org/tool-*             a glob inside one path segment
    docker.io/library/ubuntu:22.04              exactly that repository and tag
    ghcr.io/org/app@sha256:...                  exactly that repository and digest

Matching is on parsed, normalized references and on whole segments: a pattern of N
segments matches a repository whose first N segments each match (``fnmatch`` within
the segment, so ``*`` never crosses ``/``). ``registry.org/toolforge`` therefore never
matches ``registry.org/toolforge-evil/x`` nor ``registry.org.evil.com/x``, and
``registry.org`` never matches ``registry.org:5000`` (another port is another registry).
Registry names compare case-insensitively, as DNS does.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from fnmatch import fnmatchcase

from imagegate.core.reference import (
    ANCHORED_DOMAIN_RE,
    DEFAULT_DOMAIN,
    LEGACY_DEFAULT_DOMAIN,
    Reference,
    ReferenceError,
    parse,
    validate_digest,
)

__all__ = ["PatternError", "PatternSet", "RepositoryPattern", "parse_pattern"]

_GLOB_CHARS = frozenset("*?[")
_GLOB_SEGMENT_RE = re.compile(r"[A-Za-z0-9._\-*?\[\]!:]+")
_PATH_SEGMENT_RE = re.compile(r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*")


class PatternError(ValueError):
    """A policy entry that is not a valid repository pattern."""


@dataclass(frozen=True, slots=True)
class RepositoryPattern:
    """One parsed policy entry; ``text`` is what the operator wrote."""

    text: str
    segments: tuple[str, ...]
    tag: str | None = None
    digest: str | None = None
    globs: tuple[bool, ...] = ()  # which segments are globs

    @property
    def has_glob(self) -> bool:
        return any(self.globs)

    @property
    def exact(self) -> bool:
        """A tag or digest pins the entry to one repository, not a subtree."""
        return self.tag is not None or self.digest is not None

    def matches(self, ref: Reference) -> bool:
        """Whether ``ref`` (normalized) is covered by this entry."""
        ref_segments = ref.segments
        if self.exact:
            if len(ref_segments) != len(self.segments):
                return False
            if self.digest is not None:
                if ref.digest != self.digest:
                    return False
            # A digest decides what runs; an image that carries one is only covered by a
            # tag entry if the entry also names that digest.
            elif ref.tag != self.tag or ref.digest is not None:
                return False
        elif len(ref_segments) < len(self.segments):
            return False
        if not self.has_glob:
            return ref_segments[: len(self.segments)] == self.segments
        return all(
            fnmatchcase(actual, wanted) if glob else actual == wanted
            for actual, wanted, glob in zip(ref_segments, self.segments, self.globs, strict=False)
        )

    def __str__(self) -> str:
        return self.text


def _looks_like_registry(first: str) -> bool:
    return "." in first or ":" in first or first == "localhost" or bool(_GLOB_CHARS & set(first))


def parse_pattern(text: str) -> RepositoryPattern:
    """Parse one entry of ``trusted``, ``blocked`` or a grant's ``registries``."""
    if not isinstance(text, str) or not text.strip():
        raise PatternError("an entry must be a non-empty string")
    if text != text.strip():
        raise PatternError(f"{text!r} has surrounding white space")
    if "://" in text:
        raise PatternError(f"{text!r}: write the registry without a scheme (no https://)")
    body, at, digest = text.partition("@")
    tag: str | None = None
    last_slash = body.rfind("/")
    colon = body.rfind(":")
    if colon > last_slash and last_slash != -1:
        body, tag = body[:colon], body[colon + 1 :]
    body = body.rstrip("/")  # gatekeeper-style "org/" means the same as "org"
    segments = body.split("/")
    first = segments[0]
    if not _looks_like_registry(first):
        raise PatternError(
            f"{text!r} does not start with a registry: '{first}' could be a Docker Hub namespace or "
            f"an image. Write the registry first, e.g. 'docker.io/{body}' for the Docker Hub "
            f"namespace or 'docker.io/library/{first}' for the official image"
        )
    if first.lower() == LEGACY_DEFAULT_DOMAIN:
        segments[0] = DEFAULT_DOMAIN
    segments[0] = segments[0].lower()
    # "[" also opens an IPv6 literal: a registry that is a valid host is never a glob.
    globs = tuple(
        bool(_GLOB_CHARS & set(segment)) and not (index == 0 and ANCHORED_DOMAIN_RE.fullmatch(segment))
        for index, segment in enumerate(segments)
    )
    has_glob = any(globs)
    if any(segment == "" for segment in segments):
        raise PatternError(f"{text!r} has an empty path segment")
    if has_glob:
        for segment in segments:
            if not _GLOB_SEGMENT_RE.fullmatch(segment):
                raise PatternError(f"{text!r}: segment {segment!r} has characters no image name has")
        if all(segment.strip("*") == "" for segment in segments):
            raise PatternError(f"{text!r} matches every image; use 'byoc: {{default: allow}}' instead")
    else:
        if not ANCHORED_DOMAIN_RE.fullmatch(segments[0]):
            raise PatternError(f"{text!r}: {first!r} is not a valid registry host[:port]")
        for segment in segments[1:]:
            if not _PATH_SEGMENT_RE.fullmatch(segment):
                raise PatternError(
                    f"{text!r}: path segment {segment!r} is not valid (lowercase letters, digits, "
                    "and '.', '_', '-' between them)"
                )
    if tag is not None or at:
        if has_glob:
            raise PatternError(f"{text!r}: a tag or digest entry names one repository; no globs")
        if len(segments) < 2:
            raise PatternError(f"{text!r}: a tag or digest needs a repository path")
        try:
            ref = parse("/".join(segments) + (f":{tag}" if tag is not None else "") + at + digest)
        except ReferenceError as exc:
            raise PatternError(f"{text!r}: {exc}") from None
        tag = ref.tag
        if at:
            try:
                validate_digest(digest)
            except ReferenceError as exc:
                raise PatternError(f"{text!r}: {exc}") from None
    return RepositoryPattern(text, tuple(segments), tag, digest if at else None, globs)


class PatternSet:
    """Patterns answered together, fast: every admission asks "which entry covers this?".

    Plain prefix entries (no glob, no tag or digest), the common case, sit in a dict keyed by
    their segments, so a lookup costs one probe per segment of the image name however long
    the list is; the rest are tried in order.
    """

    __slots__ = ("_others", "_prefixes", "patterns")

    def __init__(self, patterns: tuple[RepositoryPattern, ...]) -> None:
        self.patterns = patterns
        self._prefixes: dict[tuple[str, ...], RepositoryPattern] = {}
        others = []
        for pattern in patterns:
            if pattern.has_glob or pattern.exact:
                others.append(pattern)
            else:
                self._prefixes.setdefault(pattern.segments, pattern)
        self._others = tuple(others)

    def first_match(self, ref: Reference) -> RepositoryPattern | None:
        """An entry covering ``ref`` (the shortest plain prefix first), or ``None``."""
        if self._prefixes:
            segments = ref.segments
            for end in range(1, len(segments) + 1):
                found = self._prefixes.get(segments[:end])
                if found is not None:
                    return found
        for pattern in self._others:
            if pattern.matches(ref):
                return pattern
        return None

    def __bool__(self) -> bool:
        return bool(self.patterns)

    def __iter__(self) -> Iterator[RepositoryPattern]:
        return iter(self.patterns)

    def __len__(self) -> int:
        return len(self.patterns)
