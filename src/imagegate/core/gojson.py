"""JSON read exactly as Go's ``encoding/json`` decodes it into a Go struct: the one decoder of
registry documents (indexes, manifests, configs, the artifact manifests of signatures and
attestations), because containerd, CRI-O and cosign read them that way.

What Go does, and so what :func:`decode` does (each checked against Go itself by the table in
``tests/fixtures/go_json``):

- a key goes to the field its tag names exactly or, failing that, case-insensitively under
  Unicode simple folding (a long s, U+017F, is an "s"; the Kelvin sign, U+212A, a "k"; the
  dotless i is no "i"); unknown keys are skipped;
- a repeated key is decoded *into* what the first occurrence made: an object merges into the
  struct (a pointer is reused, absent fields keep their values), a map gains keys, and an array
  is decoded element by element into the slice's existing elements (up to the longest it has
  ever been: a shorter array in between only shortens it), then cut to the new length; ``[]``
  starts a new empty slice; a string or number replaces;
- ``null`` makes a pointer, slice or map nil and leaves a string, number or struct as it was;
- a value of the wrong type, a number that is not an integer or does not fit an int64, or
  base64 that does not decode, is an error (Go goes on decoding, but returns the error: the
  runtime reads nothing from such a document, and neither do we);
- invalid UTF-8 inside a string becomes one U+FFFD per bad byte, an escaped lone surrogate one
  U+FFFD; anything else that is not JSON (NaN, a BOM, invalid UTF-8 outside strings) is an error.

Pure: no I/O. The Go types are described by :class:`GoType` values built once at import.
"""

from __future__ import annotations

import codecs
import json
import re
from typing import Any, Final

from imagegate.core.gobase64 import Base64Error, go_b64decode

__all__ = [
    "ANY",
    "BYTES",
    "INT64",
    "RAW",
    "STRING",
    "GoJsonError",
    "GoSlice",
    "GoType",
    "TooDeepError",
    "decode",
    "map_of",
    "parse",
    "pointer_to",
    "slice_of",
    "struct",
]


class GoJsonError(ValueError):
    """Go's ``json.Unmarshal`` returns an error for this document: the runtime cannot read it either."""


class TooDeepError(ValueError):
    """Nested deeper than Python's parser goes (Go allows 10,000 levels): not read, not vouched for."""


_STRING, _INT64, _BYTES, _RAW, _ANY, _STRUCT, _POINTER, _SLICE, _MAP = range(9)


class GoType:
    """A Go type a document is decoded into: string, int64, []byte, json.RawMessage (its
    presence only), a struct of tagged fields, a pointer, a slice or a map[string]T; or
    :data:`ANY`, a type with its own decoder that imagegate does not model."""

    __slots__ = ("elem", "exact", "fields", "folded", "kind", "name")

    def __init__(
        self, kind: int, name: str, elem: GoType | None = None, fields: tuple[tuple[str, GoType], ...] = ()
    ) -> None:
        self.kind = kind
        self.name = name
        self.elem = elem
        self.fields = dict(fields)
        self.exact = {tag: tag for tag in self.fields}
        # the first field wins a folded clash, as in Go (none of our structs has one)
        self.folded: dict[str, str] = {}
        for tag in reversed(tuple(self.fields)):
            self.folded[_fold(tag)] = tag

    def zero(self) -> Any:
        """Go's zero value: "" and 0; a struct of zero fields; nil (None) for the rest."""
        if self.kind == _STRUCT:
            return {tag: kind.zero() for tag, kind in self.fields.items()}
        if self.kind == _STRING:
            return ""
        if self.kind == _INT64:
            return 0
        return None


STRING: Final[GoType] = GoType(_STRING, "string")
INT64: Final[GoType] = GoType(_INT64, "int64")
BYTES: Final[GoType] = GoType(_BYTES, "[]uint8")
RAW: Final[GoType] = GoType(_RAW, "json.RawMessage")
# A type that decodes itself (a *time.Time) and that only reports read: the last string given,
# None for null or anything else, never an error (where Go's decoder fails, the runtime's pull
# fails, so reading it loosely can only accept what the node refuses).
ANY: Final[GoType] = GoType(_ANY, "any")


def struct(name: str, *fields: tuple[str, GoType]) -> GoType:
    """A struct whose fields have these JSON names (an embedded struct's fields listed in place)."""
    return GoType(_STRUCT, name, fields=fields)


def pointer_to(elem: GoType) -> GoType:
    return GoType(_POINTER, "*" + elem.name, elem)


def slice_of(elem: GoType) -> GoType:
    return GoType(_SLICE, "[]" + elem.name, elem)


def map_of(elem: GoType) -> GoType:
    return GoType(_MAP, "map[string]" + elem.name, elem)


class GoSlice:
    """A non-nil Go slice: its backing array (every element it has ever held) and its length.

    The backing array matters: a later array for the same key decodes into those elements,
    even ones a shorter array in between cut off.
    """

    __slots__ = ("backing", "length")

    def __init__(self) -> None:
        self.backing: list[Any] = []
        self.length = 0

    @property
    def items(self) -> list[Any]:
        return self.backing[: self.length]


# --- bytes to values, as Go's scanner and unquote see them -------------------------------------


def _go_replacement(error: UnicodeError) -> tuple[str, int]:
    # Go's utf8.DecodeRune consumes one byte of an invalid sequence; the next byte starts afresh
    if not isinstance(error, UnicodeDecodeError):  # pragma: no cover - registered for decoding only
        raise error
    return "\ufffd", error.start + 1


_ERRORS = "imagegate.go-utf8"
codecs.register_error(_ERRORS, _go_replacement)

_LONE_SURROGATE = re.compile(f"[{chr(0xD800)}-{chr(0xDFFF)}]")  # chr: mypyc refuses surrogate literals
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


# Plain classes, not list or str subclasses: mypyc compiles neither kind of subclass.
class _Object:
    """A JSON object as written: every key, in order, duplicates included."""

    __slots__ = ("pairs",)

    def __init__(self, pairs: list[tuple[str, Any]]) -> None:
        self.pairs = pairs


class _Number:
    """A number literal Go's ParseInt refuses (a fraction, an exponent, beyond 20 digits)."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


def _integer(text: str) -> int | _Number:
    # Python refuses to parse over 4300 digits; Go skips such a number in an unknown field
    return int(text) if len(text) <= 20 else _Number(text)


def _no_constant(text: str) -> Any:
    raise ValueError(f"{text} is not JSON")


def parse(body: bytes) -> Any:
    """``body`` as Go's scanner and unquote see it, for :func:`decode` (into one type or several)."""
    text = body.decode("utf-8", _ERRORS)
    try:
        value = json.loads(
            text, object_pairs_hook=_Object, parse_float=_Number, parse_int=_integer, parse_constant=_no_constant
        )
    except RecursionError:
        raise TooDeepError("it is nested deeper than imagegate reads") from None
    except ValueError as exc:  # JSONDecodeError, and NaN or Infinity
        raise GoJsonError(f"not JSON: {exc}") from None
    if _SURROGATE_ESCAPE.search(body):
        value = _no_lone_surrogates(value)
    return value


def _no_lone_surrogates(value: Any) -> Any:
    """Go's unquote turns an escaped surrogate that is not half of a pair into U+FFFD.

    In place and without recursion: the document may be nested as deep as the parser went."""
    if isinstance(value, str):
        return _LONE_SURROGATE.sub("\ufffd", value)
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, _Object):
            pairs = node.pairs
            for position, (key, item) in enumerate(pairs):
                if isinstance(item, str):
                    item = _LONE_SURROGATE.sub("\ufffd", item)  # noqa: PLW2901 (replaced in place)
                elif isinstance(item, (_Object, list)):
                    stack.append(item)
                pairs[position] = (_LONE_SURROGATE.sub("\ufffd", key), item)
        elif isinstance(node, list):
            for position, item in enumerate(node):
                if isinstance(item, str):
                    node[position] = _LONE_SURROGATE.sub("\ufffd", item)
                elif isinstance(item, (_Object, list)):
                    stack.append(item)
    return value


# Under Unicode simple case folding only these non-ASCII letters share a fold with ASCII ones
# (Go folds each rune to the smallest of its orbit: "S" for the long s, "K" for the Kelvin sign).
_FOLDS_TO_ASCII = {"\u017f": "S", "\u212a": "K"}


def _fold(key: str) -> str:
    """Go's ``foldName`` as far as comparing with ASCII field names needs: ASCII upper-cased,
    the two runes above mapped, every other non-ASCII rune kept (it can match no field)."""
    if key.isascii():
        return key.upper()
    return "".join(c.upper() if c.isascii() else _FOLDS_TO_ASCII.get(c, c) for c in key)


# --- values into Go types -------------------------------------------------------------------


def _json_kind(raw: Any) -> str:
    if isinstance(raw, _Object):
        return "object"
    if isinstance(raw, list):
        return "array"
    if isinstance(raw, bool):
        return "bool"
    if isinstance(raw, int):
        return f"number {raw}"
    if isinstance(raw, _Number):
        return f"number {raw.text}"
    return "string"


def _mismatch(raw: Any, go: GoType) -> GoJsonError:
    return GoJsonError(f"a JSON {_json_kind(raw)} where Go reads {go.name}")


_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _go_base64(text: str) -> bytes:
    try:
        return go_b64decode(text)  # Go's StdEncoding, by the one decoder of base64 in artifacts
    except Base64Error as exc:
        raise GoJsonError(f"a []byte that is {exc}") from None


def _value(raw: Any, go: GoType, current: Any) -> Any:  # noqa: C901, PLR0912 (one case per Go kind)
    """``raw`` decoded into ``current``, a value of ``go``: what Go's decoder leaves there."""
    kind = go.kind
    if raw is None:
        if kind == _RAW:
            return True  # Go hands "null" to RawMessage's UnmarshalJSON: present
        # nil for a pointer, slice (a []byte is one) or map; a string, number or struct is left alone
        return None if kind in (_POINTER, _SLICE, _MAP, _BYTES, _ANY) else current
    if kind == _STRING:
        if type(raw) is str:
            return raw
        raise _mismatch(raw, go)
    if kind == _STRUCT:
        if type(raw) is not _Object:
            raise _mismatch(raw, go)
        fields = go.fields
        for key, item in raw.pairs:
            tag = go.exact.get(key) or go.folded.get(_fold(key))
            if tag is None:
                continue
            try:
                current[tag] = _value(item, fields[tag], current[tag])
            except GoJsonError as exc:
                raise GoJsonError(f"{tag}: {exc}") from None
        return current
    if kind == _POINTER:
        elem = go.elem
        assert elem is not None
        return _value(raw, elem, elem.zero() if current is None else current)
    if kind == _SLICE:
        if type(raw) is not list:
            raise _mismatch(raw, go)
        elem = go.elem
        assert elem is not None
        if not raw or current is None:
            current = GoSlice()  # [] is a new empty slice, never the old array cut to nothing
        backing = current.backing
        for position, item in enumerate(raw):
            try:
                if position < len(backing):
                    backing[position] = _value(item, elem, backing[position])
                else:
                    backing.append(_value(item, elem, elem.zero()))
            except GoJsonError as exc:
                raise GoJsonError(f"[{position}]: {exc}") from None
        current.length = len(raw)
        return current
    if kind == _INT64:
        if type(raw) is int and _INT64_MIN <= raw <= _INT64_MAX:
            return raw
        raise _mismatch(raw, go)
    if kind == _MAP:
        if type(raw) is not _Object:
            raise _mismatch(raw, go)
        elem = go.elem
        assert elem is not None
        mapping: dict[str, Any] = {} if current is None else current
        for key, item in raw.pairs:  # exact keys; each value decoded into a fresh zero value
            try:
                mapping[key] = _value(item, elem, elem.zero())
            except GoJsonError as exc:
                raise GoJsonError(f"[{key!r}]: {exc}") from None
        return mapping
    if kind == _BYTES:
        if type(raw) is str:
            return _go_base64(raw)
        raise _mismatch(raw, go)
    if kind == _ANY:
        return raw if isinstance(raw, str) else None
    return True  # _RAW: present (Go keeps the bytes; we only ask whether there were any)


def decode(document: Any, go: GoType) -> dict[str, Any]:
    """A document from :func:`parse` decoded as Go's ``json.Unmarshal(body, &v)`` does for a
    struct ``v`` of type ``go`` (a fresh one: the document is not changed).

    The result is the struct as a dict (field JSON name to value): strings, ints, bytes, True
    for a present RawMessage, None for nil, :class:`GoSlice` for a slice, dicts for structs
    and maps. :class:`GoJsonError` where Go returns an error (:func:`parse` raises it, or
    :class:`TooDeepError` where Python's parser gives up before Go's would).
    """
    value: dict[str, Any] = go.zero() if document is None else _value(document, go, go.zero())
    return value
