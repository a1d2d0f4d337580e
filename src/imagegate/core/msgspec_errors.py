"""msgspec's validation errors, explained: the path with a mapping's key named, the values an enum allows.

msgspec says ``"<message> - at `$.a[...].b`"``: where, but not which key of a mapping (``[...]``),
and not what an enum or literal field would accept. :func:`explain` adds both, for any msgspec
type; the policy, grants and identities loaders (core/policy.py) word the result for their
documents and find its line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import msgspec

__all__ = ["Explained", "explain"]


@dataclass(frozen=True, slots=True)
class Explained:
    """One validation error: where (``$.a.b[0]``, keys named), msgspec's message, and what it amounts to."""

    path: str  # an unknown key's own path, the key last
    message: str
    unknown_key: str | None  # the document holds a key the type does not declare
    allowed: list[str]  # an enum's or literal's values, as a document writes them (empty: not one)


def explain(exc: msgspec.ValidationError, data: Any, kind: type[Any]) -> Explained:
    """``exc``, raised converting ``data`` to ``kind``, with the key it is about named."""
    message, path = _message_and_path(exc)
    allowed = _allowed_values(kind, path) if message.startswith("Invalid enum value") else []
    path = _name_the_keys(data, kind, message, path)
    unknown = _UNKNOWN_FIELD_RE.match(message)
    if unknown:
        return Explained(f"{path}.{unknown.group(1)}", message, unknown.group(1), allowed)
    return Explained(path, message, None, allowed)


_MSGSPEC_PATH_RE = re.compile(r" - at `(\$[^`]*)`$")
_UNKNOWN_FIELD_RE = re.compile(r"^Object contains unknown field `([^`]*)`")
# msgspec's path segments: `.field`, `[3]`, and `[...]` for "some key of a mapping".
_PATH_SEGMENT_RE = re.compile(r"\.([^.\[]+)|\[(\d+)\]|(\[\.\.\.\])")


def _member_type(info: msgspec.inspect.Type) -> msgspec.inspect.Type:
    """``X | None`` -> ``X`` (the optional fields of the documents)."""
    if isinstance(info, msgspec.inspect.UnionType):
        members = [t for t in info.types if not isinstance(t, msgspec.inspect.NoneType)]
        if len(members) == 1:
            return members[0]
    return info


_TYPE_INFO: dict[object, msgspec.inspect.Type] = {}


def _type_info(kind: type[Any]) -> msgspec.inspect.Type:
    if kind not in _TYPE_INFO:  # milliseconds: once per document type
        _TYPE_INFO[kind] = msgspec.inspect.type_info(kind)
    return _TYPE_INFO[kind]


def _type_at(kind: type[Any], path: str) -> msgspec.inspect.Type | None:
    """The declared type of the value at msgspec's ``path`` inside ``kind``."""
    info: msgspec.inspect.Type = _type_info(kind)
    for field_name, index, any_key in _PATH_SEGMENT_RE.findall(path[1:]):
        info = _member_type(info)
        if field_name and isinstance(info, msgspec.inspect.StructType):
            fields = {f.encode_name: f.type for f in info.fields}
            if field_name not in fields:
                return None
            info = fields[field_name]
        elif index and isinstance(info, msgspec.inspect.ListType):
            info = info.item_type
        elif any_key and isinstance(info, msgspec.inspect.DictType):
            info = info.value_type
        else:
            return None
    return _member_type(info)


def _allowed_values(kind: type[Any], path: str) -> list[str]:
    """The values an enum or literal field accepts, as written in a document."""
    info = _type_at(kind, path)
    if isinstance(info, msgspec.inspect.LiteralType):
        return [str(v) for v in info.values]
    if isinstance(info, msgspec.inspect.EnumType):
        return [str(member.value) for member in info.cls]
    return []


def _at(data: Any, segments: list[tuple[str, str, str]]) -> Any:
    for field_name, index, _any in segments:
        if isinstance(data, dict) and field_name:
            data = data.get(field_name)
        elif isinstance(data, list) and index and int(index) < len(data):
            data = data[int(index)]
        else:
            return None
    return data


def _replaced(data: Any, segments: list[tuple[str, str, str]], value: Any) -> Any:
    """A copy of ``data`` with the value at ``segments`` replaced (copying only the path to it)."""
    if not segments:
        return value
    (field_name, index, _any), rest = segments[0], segments[1:]
    if isinstance(data, dict) and field_name in data:
        return {**data, field_name: _replaced(data[field_name], rest, value)}
    if isinstance(data, list) and index and int(index) < len(data):
        position = int(index)
        return [*data[:position], _replaced(data[position], rest, value), *data[position + 1 :]]
    return data


def _message_and_path(exc: msgspec.ValidationError) -> tuple[str, str]:
    """msgspec's ``"<message> - at `$.a[0]`"`` as (message, path); ``$`` when it names none."""
    text = str(exc)
    found = _MSGSPEC_PATH_RE.search(text)
    return (text[: found.start()], found.group(1)) if found else (text, "$")


def _validation_error(data: Any, kind: type[Any]) -> tuple[str, str] | None:
    """msgspec's complaint about ``data`` as ``kind``: (message, path), or None when it converts."""
    try:
        msgspec.convert(data, kind)
    except msgspec.ValidationError as exc:
        return _message_and_path(exc)
    return None


def _name_the_keys(data: Any, kind: type[Any], message: str, path: str) -> str:
    """Replace msgspec's ``[...]`` (some key of a mapping) with the key, as the document writes it.

    msgspec does not say which key. It stops at the first bad entry in document order, so
    converting the document with the mapping cut down to a half finds it by bisection: a
    few conversions, and only on an error.
    """
    while "[...]" in path:
        head, _, tail = path.partition("[...]")
        segments = [tuple(s) for s in _PATH_SEGMENT_RE.findall(head[1:])]
        mapping = _at(data, segments)
        if not isinstance(mapping, dict) or not mapping:
            return path
        entries = list(mapping.items())
        while len(entries) > 1:
            half = entries[: len(entries) // 2]
            error = _validation_error(_replaced(data, segments, dict(half)), kind)
            culprit_in_half = error is not None and error[0] == message and error[1].startswith(head + "[...]")
            entries = half if culprit_in_half else entries[len(entries) // 2 :]
        path = f"{head}.{entries[0][0]}{tail}"
    return path
