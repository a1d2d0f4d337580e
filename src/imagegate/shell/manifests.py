"""Kubernetes manifests from files, directories or standard input.

Multi-document YAML, JSON objects, ``kind: List`` / ``kubectl get -o json`` lists. Every
object remembers where it came from (``file:line``) so reports and errors can point at it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from imagegate.core.yamldoc import DocumentError, load_yaml_documents

__all__ = ["ManifestError", "SourcedObject", "read_manifests"]

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
MAX_MANIFEST_BYTES = 64 * 1024 * 1024

ManifestError = DocumentError


@dataclass(frozen=True)
class SourcedObject:
    obj: Mapping[str, Any]
    where: str


def _line_of_byte(text: str, offset: int) -> int:
    return text.encode()[:offset].count(b"\n") + 1


def _decode_json(text: str, source: str) -> list[tuple[Any, int | None]]:
    try:
        return [(msgspec.json.decode(text), None)]
    except msgspec.DecodeError as exc:
        message = str(exc)
        line = None
        if "(byte " in message:
            try:
                line = _line_of_byte(text, int(message.rsplit("(byte ", 1)[1].rstrip(")")))
            except ValueError:
                line = None
        raise DocumentError(source, line, None, f"invalid JSON: {message}") from None


def _documents(text: str, source: str) -> list[tuple[Any, int | None]]:
    stripped = text.lstrip()
    if stripped.startswith(("{", "[")):
        try:
            return _decode_json(text, source)
        except DocumentError:
            if source.endswith(".json"):
                raise
    return [(doc.data, doc.lines.get("$")) for doc in load_yaml_documents(text, source)]


def _flatten(data: Any, source: str, line: int | None) -> Iterator[SourcedObject]:
    where = f"{source}:{line}" if line else source
    if data is None:
        return
    if isinstance(data, list):
        for index, item in enumerate(data):
            yield from _flatten(item, f"{source}[{index}]", None)
        return
    if not isinstance(data, dict):
        raise DocumentError(source, line, None, f"expected a Kubernetes object, got {type(data).__name__}")
    kind = data.get("kind")
    if isinstance(kind, str) and kind.endswith("List") and isinstance(data.get("items"), list):
        for index, item in enumerate(data["items"]):
            if not isinstance(item, dict):
                raise DocumentError(source, line, f"items[{index}]", "expected a Kubernetes object")
            yield SourcedObject(item, f"{where} items[{index}]")
        return
    if not isinstance(kind, str) or not kind:
        raise DocumentError(source, line, "kind", "missing: not a Kubernetes object")
    yield SourcedObject(data, where)


def _read_text(path: Path) -> str:
    try:
        if path.stat().st_size > MAX_MANIFEST_BYTES:
            raise DocumentError(str(path), None, None, f"larger than {MAX_MANIFEST_BYTES} bytes")
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DocumentError(str(path), None, None, f"not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise DocumentError(str(path), None, None, f"cannot read: {exc.strerror}") from None


def _files(target: Path) -> list[Path]:
    if target.is_dir():
        return sorted(p for p in target.rglob("*") if p.is_file() and p.suffix in MANIFEST_SUFFIXES)
    if not target.exists():
        raise DocumentError(str(target), None, None, "no such file or directory")
    return [target]


def read_manifests(targets: list[str]) -> list[SourcedObject]:
    """All objects in ``targets`` (paths or ``-`` for standard input)."""
    objects: list[SourcedObject] = []
    for target in targets:
        if target == "-":
            raw = sys.stdin.buffer.read(MAX_MANIFEST_BYTES + 1)
            if len(raw) > MAX_MANIFEST_BYTES:
                raise DocumentError("<stdin>", None, None, f"larger than {MAX_MANIFEST_BYTES} bytes")
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DocumentError("<stdin>", None, None, f"not UTF-8 text (byte {exc.start})") from None
            sources = [("<stdin>", text)]
        else:
            sources = [(str(path), _read_text(path)) for path in _files(Path(target))]
        for source, text in sources:
            for data, line in _documents(text, source):
                objects.extend(_flatten(data, source, line))
    return objects
