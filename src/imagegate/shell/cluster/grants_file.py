"""Editing grants: validated before writing, never losing a concurrent edit.

A grants document is changed as data (the list of grants in their document form, plus the
entries a change adds to its ``history``), the result is validated by the same loader the
webhook uses (and, given the policy, held to its ``byoc.requiredGrantFields``), and only then
written. A file is
written atomically (temporary file, then rename) under an exclusive lock, and only if its
content is still what we read (compare-and-swap): an editor that does not take the lock
makes us re-read and re-apply instead of overwriting its change.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from imagegate.core.policy import (
    Grant,
    GrantEvent,
    GrantsFile,
    Policy,
    PolicyError,
    dump_grants,
    event_document,
    grant_document,
    load_grant_entry,
    load_grants_file,
)
from imagegate.core.yamldoc import kubectl_scalar, load_yaml_document
from imagegate.shell.policy_files import read_document

__all__ = ["Edited", "GrantEditError", "edit_grants_file", "edit_grants_text", "grants_configmap_yaml"]

GrantList = list[dict[str, Any]]


@dataclass
class Edited:
    """What a change makes of the grants: the new list, and what to add to the history."""

    grants: GrantList
    events: list[GrantEvent] = field(default_factory=list)


GrantChange = Callable[[GrantList], GrantList | Edited]


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


def _current(text: str, source: str, create: bool) -> GrantsFile:
    """The grants document as it is; an empty one only when asked to ``create`` a grants file."""
    if load_yaml_document(text, source).data is None:
        if create:
            return GrantsFile(())
        try:
            load_grants_file(text, source)  # the error `grants list` gives, for the same text
        except PolicyError as exc:
            raise GrantEditError(
                f"{exc}; pass --create to start a new grants file there (nothing was written)"
            ) from None
    return load_grants_file(text, source)


def edit_grants_text(
    text: str, source: str, change: GrantChange, *, policy: Policy | None = None, create: bool = False
) -> str:
    """The grants document ``text`` with ``change`` applied, validated.

    ``policy``: the result is held to it as the webhook will hold it (its required keys, one
    grant per namespace with its inline grants). ``create``: an empty text (a file or a key not
    there yet) starts a new document; otherwise it is refused, as ``grants list`` refuses it.
    """
    current = _current(text, source, create)
    before = [grant_document(grant) for grant in current.grants]
    result = change(list(before))
    edited = result if isinstance(result, Edited) else Edited(result)
    # A grant kept is judged as written (its errors name its line in the file as it is); a new
    # entry on its own, so that an error names the key being added, not a line never written.
    judged: list[Grant] = []
    for entry in edited.grants:
        if entry in before:
            judged.append(current.grants[before.index(entry)])
        else:
            judged.append(load_grant_entry(entry, f"the new grant for {entry.get('namespace', '?')}"))
    if policy is not None:
        policy.with_grants(judged)
    document = dump_grants(())
    document["grants"] = edited.grants
    history = [event_document(event) for event in (*current.history, *edited.events)]
    if history:
        document["history"] = history
    new_text = "# BYOC grants; edit with `imagegate grants` (validated before writing)\n" + _dump(document)
    try:
        load_grants_file(new_text, source)
    except PolicyError as exc:
        raise GrantEditError(f"the change would make an invalid grants file: {exc}") from None
    return new_text


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else ""


def edit_grants_file(
    path: Path, change: GrantChange, attempts: int = 5, *, policy: Policy | None = None, create: bool = False
) -> str:
    """Apply ``change`` to the grants file at ``path``; return the new text.

    A file that is not there is refused (a mistyped path must not start a second grants file
    beside the one in force) unless ``create``.
    """
    if not path.exists() and not create:
        raise GrantEditError(f"{path}: file not found; pass --create to start a new grants file (nothing was written)")
    if not path.parent.is_dir():
        raise GrantEditError(f"{path}: the directory {path.parent} does not exist (nothing was written)")
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
            new_text = edit_grants_text(text, str(path), change, policy=policy, create=create)
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
