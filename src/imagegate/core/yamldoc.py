"""YAML text to plain data, remembering where every key stands.

Validation errors must name the line and the key (``policy.yaml:12 byoc.grants[0].expires``),
so the document is composed into nodes once, each value's JSON-path recorded with its line,
then built into plain data. Duplicate keys are refused: YAML's "last one wins" would let a
second ``trusted:`` silently replace the first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

__all__ = ["DocumentError", "LocatedDocument", "load_yaml_document", "load_yaml_documents"]


class DocumentError(ValueError):
    """A document that cannot be read; ``where`` is ``source:line`` and, when known, a key path."""

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


class _Builder(yaml.SafeLoader):
    """SafeLoader's scalar rules (dates, bools, ints) without its duplicate-key blindness."""

    built = 0


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
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, str | int | float | bool) and key is not None:
                raise doc.error(path, f"line {key_node.start_mark.line + 1}: a key must be a plain value")
            child = f"{path}.{key}"
            if key in result:
                raise DocumentError(doc.source, key_node.start_mark.line + 1, child[2:], "duplicate key")
            doc.lines[child] = key_node.start_mark.line + 1
            result[key] = _build(value_node, child, loader, doc, depth + 1)
            doc.lines[child] = key_node.start_mark.line + 1
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_build(item, f"{path}[{i}]", loader, doc, depth + 1) for i, item in enumerate(node.value)]
    return loader.construct_object(node, deep=True)


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
