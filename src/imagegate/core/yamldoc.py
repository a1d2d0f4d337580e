"""YAML text to plain data, read as kubectl reads it, remembering where every key stands.

Validation errors must name the line and the key (``policy.yaml:12 byoc.grants[0].expires``),
so the document is composed into nodes once, each value's JSON-path recorded with its line,
then built into plain data. Duplicate keys are refused: YAML's "last one wins" would let a
second ``trusted:`` silently replace the first.

Plain scalars mean what they mean to kubectl, which reads YAML with sigs.k8s.io/yaml: go-yaml
v2's resolver (YAML 1.1), then JSON. So ``hostPID: yes`` (also ``y``, ``on``) is true and
``runAsUser: 0o0`` (also ``00``, ``0x0``, ``0e0``, ``-0``) is 0, exactly as the API server will
see them; dates stay text, there are no base-60 numbers, and a number JSON cannot carry
(``.nan``, ``.inf``) is refused, as kubectl refuses it. Quoted scalars are text. Explicit tags
(``!!int``, ``!!binary``...) are refused rather than guessed at. The same reading serves
manifests and imagegate's own policy, grants and identities files: one dialect, so a value
means the same in every file an operator writes.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import yaml

__all__ = [
    "DocumentError",
    "LocatedDocument",
    "kubectl_number",
    "kubectl_scalar",
    "load_yaml_document",
    "load_yaml_documents",
]


class DocumentError(ValueError):
    """A document that cannot be read; ``where`` is ``source:line`` and, when known, a key path."""

    # what the document was read as ("policy", "grants file", ...), set by the code that read it
    document: str = ""

    def __init__(self, source: str, line: int | None, path: str | None, message: str) -> None:
        self.source = source
        self.line = line
        self.path = path
        self.message = message
        where = source if line is None else f"{source}:{line}"
        super().__init__(f"{where}: {path}: {message}" if path else f"{where}: {message}")


@dataclass
class LocatedDocument:
    """Plain data plus the line (1-based) of every JSON-path inside it."""

    source: str
    data: Any
    lines: dict[str, int] = field(default_factory=dict)

    def line_of(self, path: str) -> int | None:
        """The line of ``path`` or of its nearest enclosing value."""
        while True:
            if path in self.lines:
                return self.lines[path]
            cut = max(path.rfind("."), path.rfind("["))
            if cut <= 0:
                return self.lines.get("$")
            path = path[:cut]

    def error(self, path: str, message: str) -> DocumentError:
        """An error for the value at ``path`` (``$.byoc.grants[0]``), naming its line."""
        shown = path[2:] if path.startswith("$.") else (None if path == "$" else path)
        return DocumentError(self.source, self.line_of(path), shown, message)


# Aliases can make a small text expand exponentially ("billion laughs"); refuse past these.
MAX_VALUES = 200_000
MAX_DEPTH = 64
_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_STR_TAG = "tag:yaml.org,2002:str"
_MERGE_TAG = "tag:yaml.org,2002:merge"
_PLAIN_TAG = "tag:imagegate.toolforge.org,2026:plain"  # a plain scalar, resolved by kubectl_scalar

# go-yaml v2's resolve table (resolve.go), the one kubectl uses through sigs.k8s.io/yaml.
_BOOLEANS = {
    **dict.fromkeys(("y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON"), True),
    **dict.fromkeys(("n", "N", "no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF"), False),
}
_NULLS = frozenset(("", "~", "null", "Null", "NULL"))
_NOT_JSON = frozenset(f"{sign}.{word}" for sign in ("", "+", "-") for word in ("inf", "Inf", "INF")) | frozenset(
    (".nan", ".NaN", ".NAN")
)
# strconv.ParseInt(s, 0, 64) after go-yaml has removed every "_": sign, then 0x / 0b / 0o or a
# leading 0 (octal), or decimal.
_GO_INT_RE = re.compile(r"([+-]?)(?:0[xX]([0-9a-fA-F]+)|0[bB]([01]+)|0[oO]?([0-7]+)|(0|[1-9][0-9]*))")
_GO_FLOAT_RE = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")  # go-yaml's yamlStyleFloat
_GO_DOT_FLOAT_RE = re.compile(r"\.[0-9]+([eE][-+]?[0-9]+)?")  # strconv.ParseFloat of a text starting with "."
_INT64 = 2**63
_UINT64 = 2**64
# encoding/json writes a float64 below 1e21 with an integral value as digits only ("8", "-0"),
# which the API server reads as an integer: that is what kubectl sends for ``08`` or ``0e0``.
_JSON_INTEGRAL_BELOW = 1e21


def kubectl_number(value: float) -> int | float:
    """A float as it reaches the API server after kubectl's JSON encoding (integral -> int)."""
    if value.is_integer() and abs(value) < _JSON_INTEGRAL_BELOW:
        return int(value)
    return value


def kubectl_scalar(text: str) -> Any:
    """A plain YAML scalar as kubectl (go-yaml v2, then JSON) reads it; ValueError if it cannot send it."""
    if text in _BOOLEANS:
        return _BOOLEANS[text]
    if text in _NULLS:
        return None
    if text in _NOT_JSON:
        raise ValueError(f"{text} is a float JSON cannot carry (kubectl refuses it); quote it if you mean the text")
    first = text[0]
    if first == ".":
        return kubectl_number(float(text)) if _GO_DOT_FLOAT_RE.fullmatch(text) else text
    if first not in "+-0123456789":
        return text
    plain = text.replace("_", "")
    found = _GO_INT_RE.fullmatch(plain)
    if found is not None:
        sign, hexadecimal, binary, octal, decimal = found.groups()
        if hexadecimal is not None:
            magnitude = int(hexadecimal, 16)
        elif binary is not None:
            magnitude = int(binary, 2)
        elif octal is not None:
            magnitude = int(octal, 8)
        else:
            magnitude = int(decimal)
        value = -magnitude if sign == "-" else magnitude
        if -_INT64 <= value < _INT64 or (not sign and value < _UINT64):  # ParseInt, then ParseUint
            return value
    if _GO_FLOAT_RE.fullmatch(plain):
        number = float(plain)
        if math.isfinite(number):  # ParseFloat fails on overflow: the text stays text
            return kubectl_number(number)
    return text


def _json_key(key: Any) -> str:
    """A mapping key as sigs.k8s.io/yaml turns it into a JSON key (ints and booleans become text)."""
    if isinstance(key, str):
        return key
    if isinstance(key, bool):
        return "true" if key else "false"
    if isinstance(key, int):
        return str(key)
    raise ValueError(f"a {'null' if key is None else 'fractional number'} key has no JSON form; quote it")


class _Builder(yaml.CSafeLoader):
    """PyYAML's parser with kubectl's scalar resolution and without duplicate-key blindness.

    libyaml's (PyYAML's C extension, in its wheels) composes the nodes; the pure-Python parser
    made the same nodes four times slower (half a second of CPU for 3,000 tool identities, read
    at every webhook start and reload, twice by ``imagegate identities``)."""

    built = 0

    def resolve(self, kind: type[yaml.Node], value: str, implicit: tuple[bool, bool]) -> str:
        if kind is yaml.ScalarNode and implicit[0]:
            return _MERGE_TAG if value == "<<" else _PLAIN_TAG
        return str(super().resolve(kind, value, implicit))  # type: ignore[no-untyped-call]


def _scalar(node: yaml.Node, source: str, path: str | None = None) -> Any:
    line = node.start_mark.line + 1
    if path is not None:
        path = path[2:] if path.startswith("$.") else None
    if node.tag in (_STR_TAG, _MERGE_TAG):  # "<<" as a value is text, as in go-yaml
        return node.value
    if node.tag != _PLAIN_TAG:
        raise DocumentError(source, line, path, f"unsupported YAML tag {node.tag!r}; write the value plainly")
    try:
        return kubectl_scalar(node.value)
    except ValueError as exc:
        raise DocumentError(source, line, path, str(exc)) from None


def _build(node: yaml.Node, path: str, loader: _Builder, doc: LocatedDocument, depth: int = 0) -> Any:
    line = node.start_mark.line + 1
    doc.lines[path] = line
    loader.built += 1
    if loader.built > MAX_VALUES:
        raise DocumentError(doc.source, line, None, f"more than {MAX_VALUES} values (alias expansion?)")
    if depth > MAX_DEPTH:
        raise DocumentError(doc.source, line, None, f"nested deeper than {MAX_DEPTH} levels")
    if isinstance(node, yaml.MappingNode | yaml.SequenceNode) and node.tag not in (_MAP_TAG, _SEQ_TAG):
        raise DocumentError(doc.source, line, None, f"unsupported YAML tag {node.tag!r}")
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)  # resolves YAML merge keys (<<)
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise doc.error(path, f"line {key_node.start_mark.line + 1}: a key must be a plain value")
            value = _scalar(key_node, doc.source)
            try:
                key = _json_key(value)
            except ValueError as exc:
                raise DocumentError(doc.source, key_node.start_mark.line + 1, None, str(exc)) from None
            child = f"{path}.{key}"
            if key in result:
                raise DocumentError(doc.source, key_node.start_mark.line + 1, child[2:], "duplicate key")
            doc.lines[child] = key_node.start_mark.line + 1
            result[key] = _build(value_node, child, loader, doc, depth + 1)
            doc.lines[child] = key_node.start_mark.line + 1
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_build(item, f"{path}[{i}]", loader, doc, depth + 1) for i, item in enumerate(node.value)]
    return _scalar(node, doc.source, path)


def load_yaml_documents(text: str, source: str) -> list[LocatedDocument]:
    """Every document of a (multi-document) YAML text, with line maps."""
    try:
        loader = _Builder(text)
        try:
            documents: list[LocatedDocument] = []
            while loader.check_node():
                node = loader.get_node()
                if node is None:  # pragma: no cover - check_node() said there is one
                    break
                doc = LocatedDocument(source, None)
                doc.data = _build(node, "$", loader, doc)
                documents.append(doc)
            return documents
        finally:
            loader.dispose()
    except DocumentError:
        raise
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = " ".join(p for p in (exc.context, exc.problem) if p) or "invalid YAML"
        raise DocumentError(source, line, None, f"invalid YAML: {problem}") from None
    except (yaml.YAMLError, RecursionError, ValueError, TypeError) as exc:
        raise DocumentError(source, None, None, f"invalid YAML: {exc}") from None


def load_yaml_document(text: str, source: str) -> LocatedDocument:
    """Exactly one YAML document; an empty (or comment-only) text has ``data`` None."""
    documents = load_yaml_documents(text, source)
    if len(documents) > 1:
        raise DocumentError(source, None, None, "expected one YAML document, found several")
    if not documents or documents[0].data is None:
        return LocatedDocument(source, None, {"$": 1})
    return documents[0]
