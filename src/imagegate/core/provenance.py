"""Build provenance, pure: in-toto statements in DSSE envelopes, SLSA v0.2 and v1 as Tekton Chains writes them.

An attestation is a DSSE envelope (``payloadType``, base64 ``payload``, ``signatures``) whose
payload is an in-toto Statement: the subjects it speaks about (by digest) and a predicate.
The signature is over the DSSE pre-authentication encoding (:func:`pae`), never over the
payload alone; verifying it is the shell's job (``shell/registry/attestations.py``, with cryptography).
Here: what the statement says, read strictly, and whether it satisfies a rule.

Tekton Chains writes SLSA v0.2 (``builder.id``, ``buildType`` such as
``tekton.dev/v1beta1/TaskRun``, ``invocation.configSource.uri``, ``materials``) and SLSA v1
(``runDetails.builder.id``, ``buildDefinition.buildType`` such as
``https://tekton.dev/chains/v2/slsa``, ``resolvedDependencies``, ``externalParameters``).
The sources of a build are the ``git+`` URIs among them. "Open source only": every source
must be a repository on an allowed forge (patterns such as ``https://gitlab.wikimedia.org/**``);
whether a repository is public cannot be asked at admission (no network beyond the
registry), so the patterns name the forges' public namespaces.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from imagegate.core import gojson
from imagegate.core.gobase64 import Base64Error, dsse_b64decode

__all__ = [
    "DSSE_ENVELOPE",
    "DSSE_INTOTO",
    "PROVENANCE_TYPES",
    "SLSA_V02",
    "SLSA_V1",
    "Envelope",
    "Provenance",
    "ProvenanceError",
    "ProvenanceRule",
    "about_another_image",
    "check_provenance",
    "glob_match",
    "normalize_source",
    "pae",
    "parse_envelope",
    "parse_statement",
    "statement_subjects",
]

DSSE_INTOTO = "application/vnd.in-toto+json"
STATEMENT_TYPES = frozenset({"https://in-toto.io/Statement/v0.1", "https://in-toto.io/Statement/v1"})
SLSA_V02 = "https://slsa.dev/provenance/v0.2"
SLSA_V1 = "https://slsa.dev/provenance/v1"
PROVENANCE_TYPES: tuple[str, ...] = (SLSA_V02, SLSA_V1)  # the predicate types imagegate reads
MAX_SIGNATURES = 16


class ProvenanceError(ValueError):
    """An envelope or statement that is not what it must be; the message is the denial's reason."""


@dataclass(frozen=True, slots=True)
class Envelope:
    payload_type: str
    payload: bytes
    signatures: tuple[tuple[str, bytes], ...]  # (keyid, signature)


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding: what is signed."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def _b64(text: Any, what: str) -> bytes:
    if not isinstance(text, str):
        raise ProvenanceError(f"{what} is not a base64 string")
    try:
        return dsse_b64decode(text)  # as cosign's go-securesystemslib: standard, else URL-safe, padded
    except Base64Error as exc:
        raise ProvenanceError(f"{what} is {exc}") from None


def _json_object(text: bytes, not_json: str, not_object: str) -> dict[str, Any]:
    """``text`` decoded as a JSON object; a ProvenanceError saying ``not_json`` or ``not_object``."""
    try:
        document = json.loads(text)
    except (ValueError, RecursionError):
        raise ProvenanceError(not_json) from None
    if not isinstance(document, dict):
        raise ProvenanceError(not_object)
    return document


# The DSSE envelope as cosign decodes it (go-securesystemslib's dsse.Envelope): Go's
# encoding/json, so a repeated or case-folded key means here what it means to cosign.
DSSE_ENVELOPE = gojson.struct(
    "Envelope",
    ("payloadType", gojson.STRING),
    ("payload", gojson.STRING),
    ("signatures", gojson.slice_of(gojson.struct("Signature", ("keyid", gojson.STRING), ("sig", gojson.STRING)))),
)


def parse_envelope(body: bytes) -> Envelope:
    """A DSSE envelope (JSON), signatures not yet verified."""
    try:
        document = gojson.decode(gojson.parse(body), DSSE_ENVELOPE)
    except gojson.TooDeepError:
        raise ProvenanceError("the attestation is nested deeper than imagegate reads") from None
    except gojson.GoJsonError as exc:
        raise ProvenanceError(f"the attestation is not a JSON DSSE envelope as cosign reads it ({exc})") from None
    payload_type: str = document["payloadType"]
    if not payload_type:
        raise ProvenanceError("the DSSE envelope has no payloadType")
    payload = _b64(document["payload"], "the DSSE payload")
    raw = document["signatures"]
    entries: list[dict[str, str]] = [] if raw is None else raw.items
    if not entries:
        raise ProvenanceError("the DSSE envelope carries no signature")
    if len(entries) > MAX_SIGNATURES:
        raise ProvenanceError(f"the DSSE envelope carries {len(entries)} signatures; at most {MAX_SIGNATURES} are read")
    signatures = [
        (entry["keyid"], _b64(entry["sig"], f"DSSE signature {index + 1}")) for index, entry in enumerate(entries)
    ]
    return Envelope(payload_type, payload, tuple(signatures))


@dataclass(frozen=True, slots=True)
class Provenance:
    """What a SLSA provenance statement says about how an image was built."""

    predicate_type: str
    builder_id: str
    build_type: str
    sources: tuple[str, ...]  # normalized source repository URLs (git)


def normalize_source(uri: str) -> str:
    """``git+https://github.com/org/repo.git@refs/heads/main`` -> ``https://github.com/org/repo``."""
    text = uri.strip()
    if text.startswith("git+"):
        text = text[4:]
    scheme, sep, rest = text.partition("://")
    if sep:
        host, _, path = rest.partition("/")
        host = host.rsplit("@", 1)[-1].lower()  # user@host: the host is what follows the last @
        path = path.split("#", 1)[0].split("?", 1)[0].split("@", 1)[0].rstrip("/")  # @ref after the path
        if path.endswith(".git"):
            path = path[:-4]
        text = f"{scheme.lower()}://{host}/{path}" if path else f"{scheme.lower()}://{host}"
    return text


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ProvenanceError(f"the provenance has no {what} object")
    return value


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise ProvenanceError(f"the provenance has no {what}")
    return value


def _git_uris(entries: Any) -> list[str]:
    found = []
    if isinstance(entries, list):
        for entry in entries:
            if isinstance(entry, dict):
                uri = entry.get("uri")
                if isinstance(uri, str) and uri.startswith("git+"):
                    found.append(uri)
    return found


def _subject_digests(statement: dict[str, Any]) -> set[str]:
    subjects = statement.get("subject")
    if not isinstance(subjects, list) or not subjects:
        raise ProvenanceError("the statement names no subject")
    digests = set()
    for subject in subjects:
        if isinstance(subject, dict) and isinstance(subject.get("digest"), dict):
            for algorithm, value in subject["digest"].items():
                if isinstance(algorithm, str) and isinstance(value, str):
                    digests.add(f"{algorithm}:{value.lower()}")
    return digests


def statement_subjects(payload: bytes) -> set[str]:
    """The digests (``sha256:<hex>``) an in-toto statement speaks about."""
    statement = _json_object(
        payload, "the attestation's payload is not JSON", "the attestation's payload is not an in-toto statement"
    )
    return _subject_digests(statement)


def about_another_image(subjects: set[str], image_digest: str) -> str:
    """The one wording of a statement whose subjects are not the image, whoever signed it (a key's
    envelope, a bundle): what it is about, and what the image is."""
    shown = sorted(subjects)
    listed = ", ".join(shown[:3]) + (f" and {len(shown) - 3} more" if len(shown) > 3 else "")
    return f"the statement is about another image: its subjects are {listed or 'no digest'}, not {image_digest}"


def parse_statement(payload: bytes, image_digest: str) -> Provenance:
    """The SLSA provenance in an in-toto Statement about ``image_digest`` (``sha256:...``)."""
    statement = _json_object(
        payload, "the attestation's payload is not JSON", "the attestation's payload is not an in-toto statement"
    )
    kind = statement.get("_type")
    if kind not in STATEMENT_TYPES:
        raise ProvenanceError(f"the payload is not an in-toto statement (_type {kind!r})")
    subjects = _subject_digests(statement)
    if image_digest.lower() not in subjects:
        raise ProvenanceError(about_another_image(subjects, image_digest))
    predicate_type = statement.get("predicateType")
    predicate = _object(statement.get("predicate"), "predicate")
    if predicate_type == SLSA_V02:
        builder = _text(_object(predicate.get("builder"), "builder").get("id"), "builder.id")
        build_type = _text(predicate.get("buildType"), "buildType")
        uris = []
        invocation = predicate.get("invocation")
        if isinstance(invocation, dict) and isinstance(invocation.get("configSource"), dict):
            uri = invocation["configSource"].get("uri")
            if isinstance(uri, str) and uri:
                uris.append(uri)
        uris.extend(_git_uris(predicate.get("materials")))
    elif predicate_type == SLSA_V1:
        definition = _object(predicate.get("buildDefinition"), "buildDefinition")
        run = _object(predicate.get("runDetails"), "runDetails")
        builder = _text(_object(run.get("builder"), "runDetails.builder").get("id"), "runDetails.builder.id")
        build_type = _text(definition.get("buildType"), "buildDefinition.buildType")
        uris = _git_uris(definition.get("resolvedDependencies"))
        external = definition.get("externalParameters")
        if isinstance(external, dict):
            source = external.get("buildConfigSource") or external.get("source")
            if isinstance(source, dict) and isinstance(source.get("repository"), str):
                uris.append(source["repository"])
            elif isinstance(source, str):
                uris.append(source)
    else:
        raise ProvenanceError(f"the statement is not SLSA provenance (predicateType {predicate_type!r})")
    sources = tuple(dict.fromkeys(normalize_source(u) for u in uris))
    return Provenance(str(predicate_type), builder, build_type, sources)


@dataclass(frozen=True, slots=True)
class ProvenanceRule:
    """What a provenance must say: empty tuples allow anything for that field."""

    builder_ids: tuple[str, ...] = ()
    build_types: tuple[str, ...] = ()
    source_forges: tuple[str, ...] = ()  # "open source only": every source on one of these
    predicate_types: tuple[str, ...] = PROVENANCE_TYPES


_GLOB_CACHE: dict[str, re.Pattern[str]] = {}


def glob_match(pattern: str, text: str) -> bool:
    """``**`` matches anything, ``*`` anything but ``/``; everything else literally."""
    compiled = _GLOB_CACHE.get(pattern)
    if compiled is None:
        parts = []
        for index, piece in enumerate(pattern.split("**")):
            if index:
                parts.append(".*")
            parts.append("[^/]*".join(re.escape(p) for p in piece.split("*")))
        compiled = re.compile("".join(parts), re.DOTALL)
        if len(_GLOB_CACHE) < 4096:
            _GLOB_CACHE[pattern] = compiled
    return compiled.fullmatch(text) is not None


def check_provenance(provenance: Provenance, rule: ProvenanceRule) -> list[str]:
    """Why ``provenance`` fails ``rule`` (empty: it satisfies it)."""
    reasons = []
    if rule.predicate_types and provenance.predicate_type not in rule.predicate_types:
        reasons.append(f"predicate type {provenance.predicate_type} is not one of {', '.join(rule.predicate_types)}")
    if rule.builder_ids and not any(glob_match(p, provenance.builder_id) for p in rule.builder_ids):
        reasons.append(f"built by {provenance.builder_id!r}, not by an allowed builder ({', '.join(rule.builder_ids)})")
    if rule.build_types and not any(glob_match(p, provenance.build_type) for p in rule.build_types):
        reasons.append(f"build type {provenance.build_type!r} is not allowed ({', '.join(rule.build_types)})")
    if rule.source_forges:
        if not provenance.sources:
            reasons.append("the provenance names no source repository (open source only)")
        for source in provenance.sources:
            if not any(glob_match(p, source) for p in rule.source_forges):
                reasons.append(
                    f"source {source} is not a repository on an allowed forge ({', '.join(rule.source_forges)})"
                )
    return reasons
