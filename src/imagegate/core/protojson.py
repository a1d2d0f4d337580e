"""Sigstore bundles read as protobuf's JSON parser reads them, before sigstore-python sees them.

A bundle is a protobuf message (sigstore/protobuf-specs ``dev.sigstore.bundle.v1.Bundle``) in its
canonical JSON form, and its writers and verifiers read that form as protojson (protobuf-go's,
which cosign and sigstore-go use) reads it; sigstore-js and the spec's other libraries too.
sigstore-python's models read a narrower dialect, so a bundle is first read here, by the rules
of protojson (``Unmarshal`` with default options), and written out in the one spelling those
models read:

* an absent field, or ``null``, is the field's zero value: ``0`` for an integer, ``""``, no
  bytes, an empty list, the enum's first value; protobuf JSON writers omit such fields, so the
  inclusion proof of a one-entry log (``logIndex`` 0, no ``hashes``) has neither;
* a field is named by its JSON name (``logIndex``) or its proto name (``log_index``); the same
  field twice, under one name or both, is an error, as is an unknown field or two members of
  one ``oneof``;
* an ``int64`` is a JSON number or a string holding one, with no spaces, integral (``1.0``,
  ``1e3``) and within 64 bits;
* ``bytes`` are base64 as protojson decodes them (:func:`~imagegate.core.gobase64.protojson_b64decode`);
* an enum is its value's name or its number.

What comes out names every field by its JSON name, integers as decimal strings and bytes as
padded standard base64: what sigstore-python's ``Bundle.from_json`` reads.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

from imagegate.core.gobase64 import Base64Error, protojson_b64decode

__all__ = ["BundleError", "read_bundle"]

Kind = Literal["string", "int64", "bytes", "enum", "message"]


class BundleError(ValueError):
    """A bundle protojson would not read; the message names the field and what is wrong."""


@dataclass(frozen=True, slots=True)
class _Field:
    name: str  # the proto name (snake_case)
    json_name: str  # protoc's lowerCamelCase of it
    kind: Kind
    message: str = ""  # the message type, for kind "message"
    repeated: bool = False
    oneof: str = ""


def _f(name: str, kind: Kind, message: str = "", *, repeated: bool = False, oneof: str = "") -> _Field:
    head, *rest = name.split("_")
    json_name = head + "".join(part[:1].upper() + part[1:] for part in rest)
    return _Field(name, json_name, kind, message, repeated, oneof)


# dev.sigstore.common.v1.HashAlgorithm
_HASH_ALGORITHMS = ("HASH_ALGORITHM_UNSPECIFIED", "SHA2_256", "SHA2_384", "SHA2_512", "SHA3_256", "SHA3_384")

# The messages a bundle is made of (sigstore/protobuf-specs, bundle v0.1 to v0.3), by field.
_MESSAGES: dict[str, tuple[_Field, ...]] = {
    "Bundle": (
        _f("media_type", "string"),
        _f("verification_material", "message", "VerificationMaterial"),
        _f("message_signature", "message", "MessageSignature", oneof="content"),
        _f("dsse_envelope", "message", "Envelope", oneof="content"),
    ),
    "VerificationMaterial": (
        _f("public_key", "message", "PublicKeyIdentifier", oneof="content"),
        _f("x509_certificate_chain", "message", "X509CertificateChain", oneof="content"),
        _f("certificate", "message", "X509Certificate", oneof="content"),
        _f("tlog_entries", "message", "TransparencyLogEntry", repeated=True),
        _f("timestamp_verification_data", "message", "TimestampVerificationData"),
    ),
    "PublicKeyIdentifier": (_f("hint", "string"),),
    "X509CertificateChain": (_f("certificates", "message", "X509Certificate", repeated=True),),
    "X509Certificate": (_f("raw_bytes", "bytes"),),
    "TimestampVerificationData": (_f("rfc3161_timestamps", "message", "RFC3161SignedTimestamp", repeated=True),),
    "RFC3161SignedTimestamp": (_f("signed_timestamp", "bytes"),),
    "MessageSignature": (_f("message_digest", "message", "HashOutput"), _f("signature", "bytes")),
    "HashOutput": (_f("algorithm", "enum"), _f("digest", "bytes")),
    # io.intoto.Envelope: its proto names are already the JSON names
    "Envelope": (
        _f("payload", "bytes"),
        _f("payloadType", "string"),
        _f("signatures", "message", "Signature", repeated=True),
    ),
    "Signature": (_f("sig", "bytes"), _f("keyid", "string")),
    "TransparencyLogEntry": (
        _f("log_index", "int64"),
        _f("log_id", "message", "LogId"),
        _f("kind_version", "message", "KindVersion"),
        _f("integrated_time", "int64"),
        _f("inclusion_promise", "message", "InclusionPromise"),
        _f("inclusion_proof", "message", "InclusionProof"),
        _f("canonicalized_body", "bytes"),
    ),
    "LogId": (_f("key_id", "bytes"),),
    "KindVersion": (_f("kind", "string"), _f("version", "string")),
    "InclusionPromise": (_f("signed_entry_timestamp", "bytes"),),
    "InclusionProof": (
        _f("log_index", "int64"),
        _f("root_hash", "bytes"),
        _f("tree_size", "int64"),
        _f("hashes", "bytes", repeated=True),
        _f("checkpoint", "message", "Checkpoint"),
    ),
    "Checkpoint": (_f("envelope", "string"),),
}

# each message's fields by the names protojson accepts: the JSON name and the proto name
_BY_NAME: dict[str, Mapping[str, _Field]] = {
    kind: {**{f.name: f for f in fields}, **{f.json_name: f for f in fields}} for kind, fields in _MESSAGES.items()
}
_ZERO: dict[Kind, Any] = {"string": "", "int64": "0", "bytes": "", "enum": _HASH_ALGORITHMS[0]}
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_INT64 = (-(2**63), 2**63 - 1)
_SURROGATES = re.compile("[\ud800-\udfff]")


class _Object(list[tuple[str, Any]]):
    """A JSON object as its members, in order: a repeated name is seen, not dropped."""


class _Number(str):
    """A JSON number with a fraction or an exponent, as written (protojson reads ``1.0`` as an integer)."""


def _no_constant(name: str) -> Any:
    raise BundleError(f"{name} is not JSON")


def _load(document: bytes) -> Any:
    try:
        text = document.decode("utf-8")
    except UnicodeDecodeError:
        raise BundleError("the bundle is not UTF-8") from None
    try:
        return json.loads(text, object_pairs_hook=_Object, parse_float=_Number, parse_constant=_no_constant)
    except RecursionError:
        raise BundleError("the bundle is nested too deeply") from None
    except ValueError as exc:
        raise BundleError(f"the bundle is not JSON: {exc}") from None


def _shown(value: Any) -> str:
    if isinstance(value, _Object):
        return "an object"
    text = str(value) if isinstance(value, _Number) else json.dumps(value)
    return text if len(text) <= 40 else text[:40] + "..."


def _int64(value: Any, where: str) -> str:
    """A JSON number, or a string holding one, that is an integer within 64 bits (protojson's ``unmarshalInt``)."""
    if type(value) is int:
        number = value
    elif isinstance(value, str) and _NUMBER.fullmatch(value):  # a _Number, or a string holding a number
        exponent = re.search(r"[eE]([+-]?[0-9]+)$", value)
        if exponent is not None and not -(2**31) <= int(exponent.group(1)) < 2**31:
            raise BundleError(f"{where} is not an integer: {_shown(value)}")
        exact = Decimal(value)
        if exact != exact.to_integral_value() or not _INT64[0] <= exact <= _INT64[1]:
            raise BundleError(f"{where} is not an integer of 64 bits: {_shown(value)}")
        number = int(exact)
    else:
        raise BundleError(f"{where} is not an integer: {_shown(value)}")
    if not _INT64[0] <= number <= _INT64[1]:
        raise BundleError(f"{where} is not an integer of 64 bits: {_shown(value)}")
    return str(number)


def _scalar(spec: _Field, value: Any, where: str) -> Any:
    if spec.kind == "int64":
        return _int64(value, where)
    if spec.kind == "enum":
        if type(value) is str and value in _HASH_ALGORITHMS:
            return value
        if type(value) is int or isinstance(value, _Number):
            number = int(_int64(value, where))
            if 0 <= number < len(_HASH_ALGORITHMS):
                return _HASH_ALGORITHMS[number]
        raise BundleError(f"{where} is not a HashAlgorithm: {_shown(value)}")
    if type(value) is not str:
        raise BundleError(f"{where} is not a string: {_shown(value)}")
    if _SURROGATES.search(value):
        raise BundleError(f"{where} holds an unpaired surrogate, which is not UTF-8")
    if spec.kind == "bytes":
        try:
            return base64.b64encode(protojson_b64decode(value)).decode()
        except Base64Error as exc:
            raise BundleError(f"{where} is {exc}") from None
    return value


def _value(spec: _Field, value: Any, where: str) -> Any:
    if spec.kind == "message":
        if not isinstance(value, _Object):
            raise BundleError(f"{where} is not an object: {_shown(value)}")
        return _message(spec.message, value, where)
    return _scalar(spec, value, where)


def _message(kind: str, members: _Object, where: str) -> dict[str, Any]:
    fields = _MESSAGES[kind]
    by_name = _BY_NAME[kind]
    seen: dict[str, str] = {}  # proto name -> the name it was given as
    oneofs: dict[str, str] = {}
    read: dict[str, Any] = {}
    for name, value in members:
        spec = by_name.get(name)
        here = f"{where}.{name}" if where else name
        if spec is None:
            raise BundleError(f"{here}: {kind} has no such field")
        if spec.name in seen:
            raise BundleError(f"{here}: the field is given twice (also as {seen[spec.name]!r})")
        seen[spec.name] = name
        if value is None:
            continue  # null: the zero value, as absent
        if spec.oneof:
            if spec.oneof in oneofs:
                raise BundleError(f"{here}: {oneofs[spec.oneof]!r} is already set (one of {kind}.{spec.oneof})")
            oneofs[spec.oneof] = name
        if spec.repeated:
            if not isinstance(value, list) or isinstance(value, _Object):
                raise BundleError(f"{here} is not a list: {_shown(value)}")
            read[spec.name] = [_value(spec, item, f"{here}[{index}]") for index, item in enumerate(value)]
        else:
            read[spec.name] = _value(spec, value, here)
    written: dict[str, Any] = {}
    for spec in fields:
        if spec.name in read:
            value = read[spec.name]
        elif spec.repeated:
            value = []
        elif spec.kind == "message":
            continue  # an unset message stays unset
        else:
            value = _ZERO[spec.kind]
        written[spec.json_name] = value
    return written


def read_bundle(document: bytes) -> dict[str, Any]:
    """The Sigstore bundle ``document`` as protojson reads it, spelled as sigstore-python reads it."""
    loaded = _load(document)
    if not isinstance(loaded, _Object):
        raise BundleError(f"the bundle is not a JSON object: {_shown(loaded)}")
    return _message("Bundle", loaded, "")
