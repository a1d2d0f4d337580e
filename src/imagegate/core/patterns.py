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

Entries of ``trusted`` and of a grant's ``registries`` may name the namespace being judged
(:mod:`imagegate.core.placeholders`): ``tools-harbor.wmcloud.org/{namespace}`` covers
``tools-harbor.wmcloud.org/tool-foo/x`` in ``tool-foo`` only. Such a *template* is checked
when the policy loads (with a sample name) and resolved once per namespace; the filled-in
value is a DNS label, and the segment that holds a placeholder may hold no glob character
(refused at load), so a filled-in segment matches the namespace's own name and nothing else.

Registries on both sides go through :func:`~imagegate.core.reference.canonical_registry`:
case-insensitive as DNS is, ``:443`` is no port, every Docker Hub alias is ``docker.io``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from fnmatch import fnmatchcase

from imagegate.core.placeholders import fill_placeholders, has_placeholder, template_problem
from imagegate.core.reference import (
    ANCHORED_DOMAIN_RE,
    PATH_COMPONENT_RE,
    Reference,
    ReferenceError,
    canonical_registry,
    parse,
    validate_digest,
)

__all__ = ["PatternError", "PatternSet", "PatternTemplate", "RepositoryPattern", "parse_pattern", "parse_template"]

_GLOB_CHARS = frozenset("*?[")
_GLOB_SEGMENT_RE = re.compile(r"[A-Za-z0-9._\-*?\[\]!:]+")


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

    @property
    def registry(self) -> tuple[str, bool]:
        """The registry the entry names (canonical, or a lowercase glob) and whether it is a glob."""
        return self.segments[0], self.globs[0] if self.globs else False

    def __str__(self) -> str:
        return self.text


def _looks_like_registry(first: str) -> bool:
    return "." in first or ":" in first or first == "localhost" or bool(_GLOB_CHARS & set(first))


def parse_pattern(text: str) -> RepositoryPattern:  # noqa: C901, PLR0912 (one branch per form of entry, each with its error)
    """Parse one entry of ``trusted``, ``blocked`` or a grant's ``registries``."""
    if not isinstance(text, str) or not text.strip():
        raise PatternError("an entry must be a non-empty string")
    if text != text.strip():
        raise PatternError(f"{text!r} has surrounding white space")
    if "://" in text:
        raise PatternError(f"{text!r}: write the registry without a scheme (no https://)")
    if has_placeholder(text):
        raise PatternError(
            f"{text!r}: {{namespace}} and {{tool}} are only allowed in 'trusted' and in a grant's 'registries'"
        )
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
            if not PATH_COMPONENT_RE.fullmatch(segment):
                raise PatternError(
                    f"{text!r}: path segment {segment!r} is not valid (lowercase letters, digits, "
                    "and '.', '_', '-' between them)"
                )
    # The same one spelling as every image's registry; a glob is matched against canonical names.
    segments[0] = segments[0].lower() if globs[0] else canonical_registry(segments[0])
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


# A name that fills every placeholder, to check a template when the policy loads.
_SAMPLE_NAMESPACE = "tool-sample"


@dataclass(frozen=True, slots=True)
class PatternTemplate:
    """An entry naming ``{namespace}`` or ``{tool}``: a pattern once a namespace is known."""

    text: str

    def resolve(self, namespace: str) -> RepositoryPattern | None:
        """The entry for ``namespace`` (``text`` kept as written), or ``None`` when it covers nothing there."""
        filled = fill_placeholders(self.text, namespace)
        if filled is None:
            return None
        try:
            pattern = parse_pattern(filled)
        except PatternError:
            return None
        return RepositoryPattern(self.text, pattern.segments, pattern.tag, pattern.digest, pattern.globs)

    @property
    def registry(self) -> tuple[str, bool]:
        """The registry the entry names: written out (never a placeholder), so one for every namespace."""
        sample = self.resolve(_SAMPLE_NAMESPACE)
        assert sample is not None  # parse_template checked exactly this
        return sample.registry

    def __str__(self) -> str:
        return self.text


def parse_template(text: str) -> PatternTemplate:
    """Check an entry with placeholders: each stands for a whole path segment's part, never the registry."""
    first = text.split("/", 1)[0]
    if has_placeholder(first):
        raise PatternError(f"{text!r}: the registry is written out; a placeholder goes in the path")
    problem = template_problem(text)
    if problem is not None:
        raise PatternError(problem)
    filled = fill_placeholders(text, _SAMPLE_NAMESPACE)
    if filled is None:
        raise PatternError(f"{text!r}: the placeholders are {{namespace}} and {{tool}}")
    try:
        parse_pattern(filled)
    except PatternError as exc:
        raise PatternError(f"{text!r} (with {{namespace}} = {_SAMPLE_NAMESPACE}): {exc}") from None
    return PatternTemplate(text)


_RESOLVED_CACHE_SIZE = 10_000  # namespaces; a cluster has fewer, and past this we just compute


class PatternSet:
    """Patterns answered together, fast: every admission asks "which entry covers this?".

    Plain prefix entries (no glob, no tag or digest), the common case, sit in a dict keyed by
    their segments, so a lookup costs one probe per segment of the image name however long
    the list is; the rest are tried in order.

    ``templates`` (entries naming the namespace) are not in ``first_match``: :meth:`resolved`
    gives, once per namespace, the set they make there.
    """

    __slots__ = ("_others", "_prefixes", "_resolved", "entries", "patterns", "templates")

    def __init__(
        self,
        patterns: tuple[RepositoryPattern, ...],
        templates: tuple[PatternTemplate, ...] = (),
        entries: tuple[RepositoryPattern | PatternTemplate, ...] | None = None,
    ) -> None:
        self.patterns = patterns
        self.templates = templates
        # the entries as written (for messages and for writing them back)
        self.entries: tuple[RepositoryPattern | PatternTemplate, ...] = (
            entries if entries is not None else (*patterns, *templates)
        )
        self._resolved: dict[str, PatternSet] = {}
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

    def resolved(self, namespace: str) -> PatternSet:
        """The templates' patterns for ``namespace`` (remembered: asked on every admission there)."""
        found = self._resolved.get(namespace)
        if found is None:
            patterns = tuple(p for p in (t.resolve(namespace) for t in self.templates) if p is not None)
            found = PatternSet(patterns)
            if len(self._resolved) < _RESOLVED_CACHE_SIZE:
                self._resolved[namespace] = found
        return found

    def for_namespace(self, namespace: str) -> PatternSet:
        """Every entry as it reads in ``namespace``: the plain ones and the templates filled in."""
        if not self.templates:
            return self
        return PatternSet((*self.patterns, *self.resolved(namespace).patterns), (), self.entries)

    def __bool__(self) -> bool:
        return bool(self.patterns) or bool(self.templates)

    def __iter__(self) -> Iterator[RepositoryPattern | PatternTemplate]:
        """The entries as written."""
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)
