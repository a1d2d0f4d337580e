"""Editing grants: validated before writing, never losing a concurrent edit.

A grants document is changed as data (the list of grants in their document form), the
result is validated by the same loader the webhook uses, and only then written. A file is
written atomically (temporary file, then rename) under an exclusive lock, and only if its
content is still what we read (compare-and-swap): an editor that does not take the lock
makes us re-read and re-apply instead of overwriting its change.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from imagegate.core.policy import PolicyError, dump_grants, load_grant_entry, load_grants
from imagegate.core.yamldoc import kubectl_scalar
from imagegate.shell.policy_source import read_document

__all__ = ["GrantEditError", "edit_grants_file", "edit_grants_text", "grants_configmap_yaml"]

GrantList = list[dict[str, Any]]
GrantChange = Callable[[GrantList], GrantList]


class GrantEditError(Exception):
    pass


class _Dumper(yaml.SafeDumper):
    """Quotes every string that kubectl's reading (and so imagegate's) would not read back as that string.

    PyYAML quotes only what its own YAML 1.1 resolver would misread: ``y``, ``0o17`` or
    ``1_0`` would come back as true, 15 and 10.
    """


def _represent_text(dumper: yaml.SafeDumper, text: str) -> yaml.Node:
    try:
        plain = text != "" and kubectl_scalar(text) == text
    except ValueError:
        plain = False
    if plain:
        return dumper.represent_str(text)
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style="'")


_Dumper.add_representer(str, _represent_text)


def _dump(document: Any) -> str:
    return yaml.dump(document, Dumper=_Dumper, sort_keys=False, default_flow_style=False)


def edit_grants_text(text: str, source: str, change: GrantChange) -> str:
    """The grants document ``text`` with ``change`` applied, validated (an empty text starts a new one)."""
    document = dump_grants(load_grants(text, source, new_file=True))
    before = list(document["grants"])
    document["grants"] = change(list(before))
    # New entries are checked on their own first, so that an error names the key of the
    # entry being added, not a line of a text that was never written.
    for entry in document["grants"]:
        if entry not in before:
            load_grant_entry(entry, f"the new grant for {entry.get('namespace', '?')}")
    new_text = "# BYOC grants; edit with `imagegate grants` (validated before writing)\n" + _dump(document)
    try:
        load_grants(new_text, source)
    except PolicyError as exc:
        raise GrantEditError(f"the change would make an invalid grants file: {exc}") from None
    return new_text


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else ""


def edit_grants_file(path: Path, change: GrantChange, attempts: int = 5) -> str:
    """Apply ``change`` to the grants file at ``path``; return the new text."""
    lock_path = path.with_name(f".{path.name}.lock")
    try:
        lock = lock_path.open("a")
    except OSError as exc:
        raise GrantEditError(
            f"cannot lock {path}: {exc.strerror} (a mounted ConfigMap is read-only: use --apply)"
        ) from None
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for _attempt in range(attempts):
            before = _digest(path)
            text = read_document(path) if path.exists() else ""
            new_text = edit_grants_text(text, str(path), change)
            temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            temporary.write_text(new_text)
            if _digest(path) != before:  # changed under us by someone without the lock
                temporary.unlink()
                continue
            os.replace(temporary, path)
            return new_text
    raise GrantEditError(f"{path} kept changing under us; nothing was written")


class _ReviewableDumper(_Dumper):
    """Multi-line strings as literal block scalars (``|``), the file as a reviewer reads it."""


def _represent_block_text(dumper: yaml.SafeDumper, text: str) -> yaml.Node:
    # PyYAML falls back to a quoted string by itself when a block scalar cannot hold the text
    # (trailing spaces on a line, control characters); grants_configmap_yaml checks the rest.
    if "\n" in text:
        return dumper.represent_scalar("tag:yaml.org,2002:str", text, style="|")
    return _represent_text(dumper, text)


_ReviewableDumper.add_representer(str, _represent_block_text)


def grants_configmap_yaml(text: str, name: str, namespace: str, key: str = "grants.yaml") -> str:
    """The grants document as the ConfigMap that carries it (for kubectl apply or review)."""
    configmap = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace},
        "data": {key: text},
    }
    readable = yaml.dump(configmap, Dumper=_ReviewableDumper, sort_keys=False, allow_unicode=True)
    if yaml.safe_load(readable) == configmap:
        return readable
    # Characters YAML reads as line breaks (NEL, LS, PS) do not survive a block scalar: escape them.
    return _dump(configmap)
