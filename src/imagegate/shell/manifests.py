"""Kubernetes manifests from files, directories or standard input.

Multi-document YAML, JSON objects, ``kind: List`` / ``kubectl get -o json`` lists. Every
object remembers where it came from as a :class:`Location` (file, line, document, its place in
arrays and Lists, kind and name): reports print its text (``file:line``), the CI formats read its
fields; nothing parses the text back.

Read as kubectl reads them, so ``check`` judges what ``kubectl apply`` would create: YAML
scalars by go-yaml v2's rules (:mod:`imagegate.core.yamldoc`), numbers as kubectl's JSON
encoding sends them (``1.0`` is ``1``), and the items of a typed list (``PodList``, as the
API returns it, without a ``kind`` per item) as objects of the list's kind; a ``List`` item
must name its own kind, and an item of another kind than its typed list is refused.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import msgspec

from imagegate.core.yamldoc import DocumentError, kubectl_number, load_yaml_documents

__all__ = ["Location", "SourcedObject", "read_manifests"]

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
MAX_MANIFEST_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Location:
    """Where an object was read. ``str()`` is the text reports print: ``file``, ``[i]`` per
    enclosing JSON array, ``:line`` when known, `` items[i]`` per enclosing List; an object the
    cluster listed is ``cluster Kind namespace/name``."""

    file: str  # the path as given, "<stdin>"; "" for an object the cluster listed
    line: int | None = None  # the line its YAML document starts at (JSON: not known)
    document: int = 0  # its document's index in the file (YAML's ``---``; a JSON file has one)
    elements: tuple[int, ...] = ()  # its index in the file's top-level JSON array (nested: one each)
    items: tuple[int, ...] = ()  # its index in a List's items (a List in a List: one each)
    kind: str = ""
    namespace: str | None = None
    name: str | None = None

    @staticmethod
    def listed(kind: str, namespace: str | None, name: str | None) -> Location:
        """An object the cluster's API server listed (no file)."""
        return Location("", kind=kind, namespace=namespace, name=name)

    @property
    def source(self) -> str:
        """The file and, in a JSON array, the element (``pods.json[2]``): what CI formats point at."""
        if not self.file:
            return str(self)
        return self.file + "".join(f"[{index}]" for index in self.elements)

    def __str__(self) -> str:
        if not self.file:
            return f"cluster {self.kind} {self.namespace}/{self.name}"
        at = f"{self.source}:{self.line}" if self.line else self.source
        return at + "".join(f" items[{index}]" for index in self.items)


@dataclass(frozen=True, slots=True)
class SourcedObject:
    obj: Mapping[str, Any]
    location: Location

    @property
    def where(self) -> str:
        """Where it was read, as reports print it."""
        return str(self.location)


def _line_of_byte(text: str, offset: int) -> int:
    return text.encode()[:offset].count(b"\n") + 1


def _kubectl_float(text: str) -> int | float:
    return kubectl_number(float(text))


_JSON_DECODER = msgspec.json.Decoder(float_hook=_kubectl_float)


def _decode_json(text: str, source: str) -> list[tuple[Any, int | None]]:
    try:
        return [(_JSON_DECODER.decode(text), None)]
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


MAX_LIST_NESTING = 8


def _list_items(
    data: dict[str, Any], source: str, line: int | None, at: Location, depth: int
) -> Iterator[SourcedObject]:
    """The items of a list: ``PodList`` items are Pods (the API leaves out their kind); ``List`` items name theirs."""
    kind: str = data["kind"]
    items = data.get("items")
    if items is None:
        return
    if not isinstance(items, list):
        raise DocumentError(source, line, "items", f"expected a list of objects, got {type(items).__name__}")
    element = kind.removesuffix("List")  # "" for a plain List
    api_version = data.get("apiVersion")
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise DocumentError(source, line, f"items[{index}]", "expected a Kubernetes object")
        own = item.get("kind")
        obj = item
        if not element:
            if not isinstance(own, str) or not own:
                raise DocumentError(source, line, f"items[{index}].kind", "missing: each item of a List names its kind")
        elif own is None:
            obj = {"kind": element, **item}
            if api_version is not None and "apiVersion" not in obj:
                obj["apiVersion"] = api_version
        elif own != element:
            raise DocumentError(source, line, f"items[{index}].kind", f"{own!r} in a {kind}, which holds {element}s")
        yield from _objects(obj, source, line, replace(at, items=(*at.items, index)), depth + 1)


def _objects(
    data: dict[str, Any], source: str, line: int | None, at: Location, depth: int = 0
) -> Iterator[SourcedObject]:
    kind = data.get("kind")
    if not isinstance(kind, str) or not kind:
        raise DocumentError(source, line, "kind", "missing: not a Kubernetes object")
    if kind.endswith("List") and "items" in data:
        if depth >= MAX_LIST_NESTING:
            raise DocumentError(source, line, None, f"lists nested deeper than {MAX_LIST_NESTING} levels")
        yield from _list_items(data, source, line, at, depth)
    else:
        metadata = data.get("metadata")
        named = metadata if isinstance(metadata, dict) else {}
        yield SourcedObject(data, replace(at, kind=kind, namespace=named.get("namespace"), name=named.get("name")))


def _flatten(data: Any, at: Location) -> Iterator[SourcedObject]:
    source = at.source  # errors name the file and the array element, as the text does
    if data is None:
        return
    if isinstance(data, list):
        for index, item in enumerate(data):
            yield from _flatten(item, replace(at, line=None, elements=(*at.elements, index)))
        return
    if not isinstance(data, dict):
        raise DocumentError(source, at.line, None, f"expected a Kubernetes object, got {type(data).__name__}")
    yield from _objects(data, source, at.line, at)


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


def _why_empty(target: str, files: list[Path], texts: list[str]) -> str:
    if target == "-":
        return "standard input is empty" if not "".join(texts).strip() else "standard input holds no objects"
    if Path(target).is_dir():
        if not files:
            return f"directory with no {', '.join(MANIFEST_SUFFIXES)} files"
        return f"directory whose {len(files)} files hold no objects"
    return "empty file" if not "".join(texts).strip() else "file holds no objects (only comments or empty documents)"


def _read_stdin() -> str:
    raw = sys.stdin.buffer.read(MAX_MANIFEST_BYTES + 1)
    if len(raw) > MAX_MANIFEST_BYTES:
        raise DocumentError("<stdin>", None, None, f"larger than {MAX_MANIFEST_BYTES} bytes")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DocumentError("<stdin>", None, None, f"not UTF-8 text (byte {exc.start})") from None


def _objects_of(source: str, text: str) -> list[SourcedObject]:
    found: list[SourcedObject] = []
    for document, (data, line) in enumerate(_documents(text, source)):
        found.extend(_flatten(data, Location(source, line or None, document)))
    return found


def read_manifests(
    targets: list[str], empty: list[str] | None = None, errors: list[DocumentError] | None = None
) -> list[SourcedObject]:
    """All objects in ``targets`` (paths or ``-`` for standard input).

    A target that holds no object at all is added to ``empty`` (when given) with the reason,
    so that a command can say so instead of reporting success on nothing. With ``errors``, a
    file that cannot be read is added there and the others are still read (a directory with
    one broken file); without it, the first such file raises.
    """
    objects: list[SourcedObject] = []
    for target in targets:
        files: list[Path] = []
        texts: list[str] = []
        found = len(objects)
        try:
            files = [] if target == "-" else _files(Path(target))
            paths: list[tuple[str, Path | None]] = (
                [("<stdin>", None)] if target == "-" else [(str(f), f) for f in files]
            )
        except DocumentError as exc:
            if errors is None:
                raise
            errors.append(exc)
            continue
        for source, path in paths:
            try:
                text = _read_stdin() if path is None else _read_text(path)
                texts.append(text)
                objects.extend(_objects_of(source, text))
            except DocumentError as exc:
                if errors is None:
                    raise
                errors.append(exc)
        if len(objects) == found and empty is not None and len(texts) == len(paths):
            shown = "<stdin>" if target == "-" else target
            empty.append(f"{shown}: no Kubernetes objects ({_why_empty(target, files, texts)})")
    return objects
