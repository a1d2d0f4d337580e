"""Container image references, parsed by the distribution/reference grammar.

One grammar, one parser: every place in imagegate that needs to know what an
``image:`` string means goes through :func:`parse_normalized` (or :func:`parse`
for the raw, un-normalized form). Nothing compares image strings by prefix.

The grammar and the error texts follow github.com/distribution/reference; the
tests run its Go test tables (``shared/conformance/image-reference``) case by case.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from enum import Enum
from functools import cached_property, lru_cache

__all__ = [
    "ANCHORED_DOMAIN_RE",
    "ANCHORED_IDENTIFIER_RE",
    "ANCHORED_NAME_RE",
    "DEFAULT_DOMAIN",
    "DOCKER_HUB_API_HOST",
    "MAX_PATH_LENGTH",
    "PATH_COMPONENT_RE",
    "REFERENCE_RE",
    "TAG_RE",
    "Reference",
    "ReferenceError",
    "ReferenceErrorKind",
    "canonical_registry",
    "familiar_match",
    "familiar_name",
    "parse",
    "parse_any",
    "parse_docker_ref",
    "parse_name",
    "parse_named_canonical",
    "parse_normalized",
    "with_digest",
    "with_tag",
]

DEFAULT_DOMAIN = "docker.io"
LEGACY_DEFAULT_DOMAIN = "index.docker.io"
# Every host name a container runtime reaches Docker Hub by: containerd and CRI-O map
# docker.io to registry-1.docker.io (the API host); index.docker.io is the legacy name
# (distribution/reference folds it, but only lowercase); registry.hub.docker.com is the
# old alias (now a redirect). All of them are Docker Hub for matching.
DOCKER_HUB_API_HOST = "registry-1.docker.io"  # where the Registry API of docker.io is reached
DOCKER_HUB_HOSTS = frozenset({DEFAULT_DOMAIN, LEGACY_DEFAULT_DOMAIN, DOCKER_HUB_API_HOST, "registry.hub.docker.com"})
# Runtimes reach a registry over HTTPS unless configured otherwise: ":443" names the same host.
HTTPS_PORT = 443
OFFICIAL_REPO_PREFIX = "library/"
DEFAULT_TAG = "latest"
# The repository path (without domain) may not exceed this (distribution's NameTotalLengthMax).
MAX_PATH_LENGTH = 255
# Far above any valid reference (255-char path + domain + 128-char tag + sha512 digest);
# refusing longer input up front keeps hostile strings cheap to reject.
MAX_INPUT_LENGTH = 4096

# --- the grammar (distribution/reference regexp.go), built from the same pieces ---
_ALPHANUMERIC = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALPHANUMERIC}(?:{_SEPARATOR}{_ALPHANUMERIC})*"
_DOMAIN_NAME_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_NAME = rf"{_DOMAIN_NAME_COMPONENT}(?:\.{_DOMAIN_NAME_COMPONENT})*"
_IPV6_ADDRESS = r"\[(?:[a-fA-F0-9:]+)\]"
_HOST = rf"(?:{_DOMAIN_NAME}|{_IPV6_ADDRESS})"
_DOMAIN_AND_PORT = rf"{_HOST}(?::[0-9]+)?"
# Go's \w is ASCII-only; Python's is Unicode unless spelled out.
_TAG = r"[0-9A-Za-z_][0-9A-Za-z_.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_REMOTE_NAME = rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
_NAME = rf"(?:{_DOMAIN_AND_PORT}/)?{_REMOTE_NAME}"

# Callers use .fullmatch(): Python's "$" would also match before a trailing newline.
ANCHORED_DOMAIN_RE = re.compile(_DOMAIN_AND_PORT)
# One path component (between slashes) and one tag: policy patterns and tag rules reuse them.
PATH_COMPONENT_RE = re.compile(_PATH_COMPONENT)
TAG_RE = re.compile(_TAG)
ANCHORED_NAME_RE = re.compile(rf"(?:({_DOMAIN_AND_PORT})/)?({_REMOTE_NAME})")
REFERENCE_RE = re.compile(rf"({_NAME})(?::({_TAG}))?(?:@({_DIGEST}))?")
ANCHORED_IDENTIFIER_RE = re.compile(r"[a-f0-9]{64}")

# Digest algorithms imagegate can verify, with their hex length (go-digest's registered set).
DIGEST_HEX_LENGTH = {"sha256": 64, "sha384": 96, "sha512": 128}
_ENCODED_RE = re.compile(r"[a-f0-9]+")
_DIGEST_ALGORITHM_RE = re.compile(r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*")


class ReferenceErrorKind(Enum):
    """Why a reference was refused; values are distribution's error texts."""

    INVALID_FORMAT = "invalid reference format"
    TAG_INVALID = "invalid tag format"
    DIGEST_INVALID = "invalid digest format"
    NAME_UPPERCASE = "repository name must be lowercase"
    NAME_EMPTY = "repository name must have at least one component"
    NAME_TOO_LONG = f"repository name must not be more than {MAX_PATH_LENGTH} characters"
    NAME_NOT_CANONICAL = "repository name must be canonical"
    DIGEST_LENGTH = "invalid checksum digest length"
    DIGEST_UNSUPPORTED = "unsupported digest algorithm"
    DIGEST_FORMAT = "invalid checksum digest format"
    IDENTIFIER = "cannot specify 64-byte hexadecimal strings"
    TOO_LONG = f"reference is longer than {MAX_INPUT_LENGTH} characters"


class ReferenceError(ValueError):
    """An image reference that the grammar refuses; ``kind`` says why."""

    def __init__(self, kind: ReferenceErrorKind, text: str, detail: str = "") -> None:
        self.kind = kind
        self.text = text
        shown = text if len(text) <= 120 else text[:117] + "..."
        message = f"{kind.value}: {shown!r}"
        super().__init__(f"{message} ({detail})" if detail else message)


@dataclass(frozen=True)
class Reference:
    """A parsed reference. ``domain`` is "" only for un-normalized parses without one."""

    domain: str
    path: str
    tag: str | None = None
    digest: str | None = None

    @property
    def repository(self) -> str:
        """The name: domain and path, without tag or digest."""
        return f"{self.domain}/{self.path}" if self.domain else self.path

    @property
    def registry_host(self) -> str:
        """The registry as the runtime reaches it (:func:`canonical_registry`), for comparing."""
        return canonical_registry(self.domain)

    @cached_property
    def segments(self) -> tuple[str, ...]:
        """The name split into whole components, the canonical registry first.

        On Docker Hub (any spelling) a one-component path is an official image, as
        distribution/reference makes it for ``docker.io``: ``registry-1.docker.io/nginx`` is
        matched as ``docker.io/library/nginx``.
        """
        registry = self.registry_host
        parts = self.path.split("/")
        if registry == DEFAULT_DOMAIN and len(parts) == 1:
            return (registry, OFFICIAL_REPO_PREFIX.rstrip("/"), *parts)
        return (registry, *parts)

    def __str__(self) -> str:
        text = self.repository
        if self.tag is not None:
            text += f":{self.tag}"
        if self.digest is not None:
            text += f"@{self.digest}"
        return text

    @property
    def familiar(self) -> str:
        """Docker's short form (``nginx:1.25`` for ``docker.io/library/nginx:1.25``)."""
        text = familiar_name(self)
        if self.tag is not None:
            text += f":{self.tag}"
        if self.digest is not None:
            text += f"@{self.digest}"
        return text

    def pinned(self, digest: str) -> Reference:
        """The same reference carrying ``digest`` (the tag is kept for readability)."""
        return Reference(self.domain, self.path, self.tag, validate_digest(digest))


@lru_cache(maxsize=4096)
def canonical_registry(domain: str) -> str:
    """The one spelling of a registry for matching: the host the runtime really contacts.

    Every image and every policy entry goes through this, so two spellings of one registry
    can never be judged apart. Host names are case-insensitive (DNS); an IPv6 literal has
    many spellings of one address; an explicit ``:443`` (or ``:0443``) is the HTTPS default;
    every Docker Hub alias is ``docker.io``. Another port stays another registry. The parse
    output itself keeps upstream's form (distribution/reference's tests hold it), only
    matching uses this.
    """
    end = domain.find("]") if domain.startswith("[") else -1
    if end > 0:
        host, port = domain[: end + 1], domain[end + 2 :] if domain[end + 1 : end + 2] == ":" else ""
        try:
            host = f"[{ipaddress.IPv6Address(host[1:-1]).compressed}]"
        except ValueError:
            host = host.lower()
    else:
        host, _, port = domain.partition(":")
        host = host.lower()
    if port.isdigit() and port.isascii():
        port = "" if int(port) == HTTPS_PORT else str(int(port))
    if not port and host in DOCKER_HUB_HOSTS:
        return DEFAULT_DOMAIN
    return f"{host}:{port}" if port else host


def validate_digest(text: str) -> str:
    """Check a digest the way go-digest does and return it unchanged."""
    algorithm, sep, encoded = text.partition(":")
    if not sep or not algorithm or not encoded:
        raise ReferenceError(ReferenceErrorKind.DIGEST_FORMAT, text)
    if not _DIGEST_ALGORITHM_RE.fullmatch(algorithm):
        raise ReferenceError(ReferenceErrorKind.DIGEST_FORMAT, text)
    expected_length = DIGEST_HEX_LENGTH.get(algorithm)
    if expected_length is None:
        raise ReferenceError(
            ReferenceErrorKind.DIGEST_UNSUPPORTED,
            text,
            f"imagegate verifies {', '.join(DIGEST_HEX_LENGTH)}",
        )
    if len(encoded) != expected_length:
        raise ReferenceError(ReferenceErrorKind.DIGEST_LENGTH, text, f"{algorithm} takes {expected_length} hex digits")
    if not _ENCODED_RE.fullmatch(encoded):
        raise ReferenceError(ReferenceErrorKind.DIGEST_FORMAT, text, "lowercase hex expected")
    return text


def parse(text: str) -> Reference:
    """distribution's ``Parse``: the grammar only, no Docker Hub normalization."""
    if len(text) > MAX_INPUT_LENGTH:
        raise ReferenceError(ReferenceErrorKind.TOO_LONG, text)
    match = REFERENCE_RE.fullmatch(text)
    if match is None:
        if text == "":
            raise ReferenceError(ReferenceErrorKind.NAME_EMPTY, text)
        if REFERENCE_RE.fullmatch(text.lower()) is not None:
            raise ReferenceError(ReferenceErrorKind.NAME_UPPERCASE, text)
        raise ReferenceError(ReferenceErrorKind.INVALID_FORMAT, text)
    name, tag, digest = match.group(1, 2, 3)
    name_match = ANCHORED_NAME_RE.fullmatch(name)
    if name_match is None:  # pragma: no cover - REFERENCE_RE already proved the name
        raise ReferenceError(ReferenceErrorKind.INVALID_FORMAT, text)
    domain, path = name_match.group(1) or "", name_match.group(2)
    if len(path) > MAX_PATH_LENGTH:
        raise ReferenceError(ReferenceErrorKind.NAME_TOO_LONG, text)
    if digest is not None:
        validate_digest(digest)
    return Reference(domain, path, tag, digest)


def parse_name(text: str) -> Reference:
    """distribution's ``WithName``: a bare repository name, no tag and no digest."""
    if len(text) > MAX_INPUT_LENGTH:
        raise ReferenceError(ReferenceErrorKind.TOO_LONG, text)
    match = ANCHORED_NAME_RE.fullmatch(text)
    if match is None:
        raise ReferenceError(ReferenceErrorKind.INVALID_FORMAT, text)
    domain, path = match.group(1) or "", match.group(2)
    if len(path) > MAX_PATH_LENGTH:
        raise ReferenceError(ReferenceErrorKind.NAME_TOO_LONG, text)
    return Reference(domain, path)


def _split_docker_domain(name: str) -> tuple[str, str]:
    """Where the registry ends: a first component is a domain only if it looks like one."""
    first, slash, rest = name.partition("/")
    if not slash or ("." not in first and ":" not in first and first != "localhost" and first.lower() == first):
        domain, remainder = DEFAULT_DOMAIN, name
    else:
        domain, remainder = first, rest
    if domain == LEGACY_DEFAULT_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in remainder:
        remainder = OFFICIAL_REPO_PREFIX + remainder
    return domain, remainder


def parse_normalized(text: str) -> Reference:
    """distribution's ``ParseNormalizedNamed``: ``nginx`` -> ``docker.io/library/nginx``.

    No tag is added here; :func:`parse_docker_ref` adds ``:latest``.
    """
    if len(text) > MAX_INPUT_LENGTH:
        raise ReferenceError(ReferenceErrorKind.TOO_LONG, text)
    if ANCHORED_IDENTIFIER_RE.fullmatch(text):
        raise ReferenceError(ReferenceErrorKind.IDENTIFIER, text, "an image ID is not a name")
    domain, remainder = _split_docker_domain(text)
    remote_name = remainder.partition(":")[0]
    if remote_name.lower() != remote_name:
        raise ReferenceError(ReferenceErrorKind.NAME_UPPERCASE, text)
    return parse(f"{domain}/{remainder}")


def parse_named_canonical(text: str) -> Reference:
    """distribution's ``ParseNamed``: accept only an already fully-canonical name."""
    ref = parse_normalized(text)
    if str(ref) != text:
        raise ReferenceError(ReferenceErrorKind.NAME_NOT_CANONICAL, text)
    return ref


@lru_cache(maxsize=4096)
def parse_docker_ref(text: str) -> Reference:
    """distribution's ``ParseDockerRef``: normalized, ``:latest`` when untagged.

    When both a tag and a digest are given, the runtime pulls by digest, so the
    tag is dropped: it says nothing about what runs. Results are cached: a cluster runs
    few distinct images, and the same ones are admitted over and over (a refused string
    raises every time, it is never cached).
    """
    return docker_form(parse_normalized(text))


def docker_form(ref: Reference) -> Reference:
    """What :func:`parse_docker_ref` makes of a name :func:`parse_normalized` parsed."""
    if ref.digest is not None:
        return Reference(ref.domain, ref.path, None, ref.digest)
    if ref.tag is None:
        return Reference(ref.domain, ref.path, DEFAULT_TAG, None)
    return ref


def parse_any(text: str) -> Reference | str:
    """distribution's ``ParseAnyReference``: a name, or a bare digest (returned as str)."""
    if ANCHORED_IDENTIFIER_RE.fullmatch(text):
        return f"sha256:{text}"
    try:
        return validate_digest(text)
    except ReferenceError:
        return parse_normalized(text)


def familiar_name(ref: Reference) -> str:
    """The name as Docker prints it: ``docker.io/`` and a lone ``library/`` removed."""
    if ref.domain != DEFAULT_DOMAIN:
        return ref.repository
    path = ref.path
    if path.startswith(OFFICIAL_REPO_PREFIX) and "/" not in path[len(OFFICIAL_REPO_PREFIX) :]:
        return path[len(OFFICIAL_REPO_PREFIX) :]
    return path


def _path_match_regex(pattern: str) -> re.Pattern[str]:
    """Go's ``path.Match`` as a regex: ``*`` and ``?`` never cross ``/``; bad patterns refused."""
    out, i = [], 0
    while i < len(pattern):
        char = pattern[i]
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "\\":
            if i + 1 >= len(pattern):
                raise ValueError(f"bad pattern {pattern!r}: trailing backslash")
            i += 1
            out.append(re.escape(pattern[i]))
        elif char == "[":
            i += 1
            negate = i < len(pattern) and pattern[i] == "^"
            i += negate
            ranges: list[str] = []

            def literal(at: int) -> tuple[str, int]:
                if pattern[at] == "\\":
                    if at + 1 >= len(pattern):
                        raise ValueError(f"bad pattern {pattern!r}: trailing backslash")
                    return pattern[at + 1], at + 2
                if pattern[at] in "-]":
                    raise ValueError(f"bad pattern {pattern!r}: {pattern[at]!r} without a range start")
                return pattern[at], at + 1

            while i < len(pattern) and (pattern[i] != "]" or not ranges):
                low, i = literal(i)
                if i + 1 < len(pattern) and pattern[i] == "-" and pattern[i + 1] != "]":
                    high, i = literal(i + 1)
                    ranges.append(f"{re.escape(low)}-{re.escape(high)}")
                else:
                    ranges.append(re.escape(low))
            if i >= len(pattern):
                raise ValueError(f"bad pattern {pattern!r}: unterminated character class")
            out.append("[" + ("^" if negate else "") + "".join(ranges) + "]")
        else:
            out.append(re.escape(char))
        i += 1
    return re.compile("".join(out))


def familiar_match(pattern: str, reference: str) -> bool:
    """distribution's ``FamiliarMatch``: the pattern against the familiar string or name."""
    parsed = parse_any(reference)
    regex = _path_match_regex(pattern)
    if isinstance(parsed, str):
        return regex.fullmatch(parsed) is not None
    return regex.fullmatch(parsed.familiar) is not None or regex.fullmatch(familiar_name(parsed)) is not None


def with_tag(name: Reference, tag: str) -> Reference:
    """distribution's ``WithTag``: the name with ``tag``; a digest it carried stays."""
    if not TAG_RE.fullmatch(tag):
        raise ReferenceError(ReferenceErrorKind.TAG_INVALID, tag)
    return Reference(name.domain, name.path, tag, name.digest)


def with_digest(name: Reference, digest: str) -> Reference:
    """distribution's ``WithDigest``: checks the grammar only, as upstream does."""
    if not re.fullmatch(_DIGEST, digest):
        raise ReferenceError(ReferenceErrorKind.DIGEST_INVALID, digest)
    return Reference(name.domain, name.path, name.tag, digest)
