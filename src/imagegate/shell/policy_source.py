"""Policy and grants files on disk, reloaded live.

In a cluster both files are ConfigMaps mounted as volumes. The kubelet updates such a
volume atomically: it writes a new timestamped directory and swaps the ``..data``
symlink to it, so ``grants.yaml`` (a link through ``..data``) changes all at once and
the directory sees a create/delete of ``..data`` rather than a write to the file. We
therefore poll each file's status through its links (``shell/filewatch.py``), re-read the
files after any change and compare contents, so a swap, an editor's rename or a plain
write all count.

A new version that does not validate is refused: the last good policy stays in force,
the error is logged loudly and kept in :attr:`PolicySource.last_error` (``/readyz`` and
metrics report it).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import overload

import structlog

from imagegate.core.policy import Policy, PolicyError, load_grants, load_identities, load_policy
from imagegate.core.yamldoc import load_yaml_document
from imagegate.shell.builtin_policy import default_policy
from imagegate.shell.filewatch import changes

__all__ = ["PolicySource", "ReloadResult", "load_policy_files", "named_file", "read_document", "relative_to_policy"]

log = structlog.get_logger("imagegate.policy")

# A policy or grants file larger than this is refused rather than parsed.
MAX_POLICY_BYTES = 4 * 1024 * 1024


def read_document(path: Path) -> str:
    """A policy, grants or identities file as text; :class:`PolicyError` (one line) when it cannot be."""
    try:
        size = path.stat().st_size
        if size > MAX_POLICY_BYTES:
            raise PolicyError(str(path), None, None, f"file is {size} bytes; the limit is {MAX_POLICY_BYTES}")
        return path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise PolicyError(str(path), None, None, "file not found") from None
    except UnicodeDecodeError as exc:
        raise PolicyError(str(path), None, None, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise PolicyError(str(path), None, None, f"cannot read: {exc.strerror}") from None


@overload
def relative_to_policy(name: str, directory: Path | None) -> Path: ...
@overload
def relative_to_policy(name: str | None, directory: Path | None) -> Path | None: ...
def relative_to_policy(name: str | None, directory: Path | None) -> Path | None:
    """A file the policy names: relative names are read from the policy file's ``directory``.

    The one rule for every path in a policy (grants, identities, keys, trusted roots, registry
    credentials and CA), so that a policy moved with its files keeps working.
    """
    if name is None:
        return None
    candidate = Path(name)
    if not candidate.is_absolute() and directory is not None:
        candidate = directory / candidate
    return candidate


def named_file(flag: Path | None, name: str | None, policy_path: Path | None) -> Path | None:
    """The grants or identities file: the command line's ``flag``, else the file the policy
    names (``name``: ``byoc.grantsFile``, ``toolProfile.identitiesFile``) beside the policy."""
    if flag is not None:
        return flag
    return relative_to_policy(name, policy_path.parent if policy_path else None)


def _read_named(path: Path, key: str | None, flag: str, policy_text: str | None, policy_source: str) -> str:
    """Read a file the policy's ``key`` names (``None``: the command line's ``flag``); on failure, say which."""
    try:
        return read_document(path)
    except PolicyError as exc:
        if key is None:
            named_by = f"given by {flag}"
        else:
            line = load_yaml_document(policy_text, policy_source).line_of(f"$.{key}") if policy_text else None
            named_by = f"named by {key} in {policy_source}:{line}" if line else f"named by {key} in {policy_source}"
        raise PolicyError(exc.source, exc.line, exc.path, f"{exc.message} ({named_by})") from None


def load_policy_files(
    policy_path: Path | None,
    grants_path: Path | None = None,
    *,
    identities_path: Path | None = None,
    policy_text: str | None = None,
) -> tuple[Policy, str]:
    """Read and validate the policy (built-in when ``None``) plus its grants and identities files.

    ``identities_path`` (``--identities``) takes the place of the policy's
    ``podSecurity.toolProfile.identitiesFile``, as ``grants_path`` does of ``byoc.grantsFile``.

    ``policy_text`` is the policy already read (from standard input, ``-p -``): its relative
    file names are then relative to the working directory. Returns the policy and a
    fingerprint of the texts read (to notice real changes).
    """
    digest = hashlib.sha256()
    source = "<stdin>" if policy_text is not None else str(policy_path) if policy_path else "<built-in>"
    if policy_text is None and policy_path is not None:
        policy_text = read_document(policy_path)
    if policy_text is None:
        policy = default_policy()
    else:
        digest.update(policy_text.encode())
        with _reading("policy"):
            policy = load_policy(policy_text, source)
    resolved = named_file(grants_path, policy.grants_file, policy_path)
    if resolved is not None:
        key = None if grants_path is not None else "byoc.grantsFile"
        with _reading("grants file"):
            text = _read_named(resolved, key, "--grants", policy_text, source)
            digest.update(b"\0" + text.encode())
            policy = policy.with_grants(load_grants(text, str(resolved)))
    identities = named_file(identities_path, policy.identities_file, policy_path)
    if identities is not None:
        key = None if identities_path is not None else "podSecurity.toolProfile.identitiesFile"
        with _reading("identities file"):
            text = _read_named(identities, key, "--identities", policy_text, source)
            digest.update(b"\0" + text.encode())
            policy = policy.with_identities(load_identities(text, str(identities)))
    return policy, digest.hexdigest()


@contextmanager
def _reading(document: str) -> Iterator[None]:
    """Errors raised here say which of the files they are about ("invalid grants file: ...")."""
    try:
        yield
    except PolicyError as exc:
        exc.document = exc.document or document
        raise


def _announce_identities(policy: Policy) -> None:
    """Said once per policy loaded: a webhook without identities is ready, and denies every tool pod."""
    missing = policy.identities_missing()
    if missing is not None:
        log.warning("no tool identities", problem=missing)


@dataclass(frozen=True)
class ReloadResult:
    changed: bool
    error: str | None = None


class PolicySource:
    """The policy in force, kept current from its files.

    With ``strict=False`` (the server) an invalid policy at start does not raise:
    :attr:`current` stays ``None`` (the server is not ready and denies) until a valid
    version appears on disk.
    """

    current: Policy | None

    def __init__(
        self,
        policy_path: Path | None = None,
        grants_path: Path | None = None,
        on_reload: Callable[[ReloadResult], None] | None = None,
        *,
        strict: bool = True,
        identities_path: Path | None = None,
    ) -> None:
        self.policy_path = policy_path
        self.grants_path = grants_path
        self.identities_path = identities_path
        self.on_reload = on_reload
        self.last_error: str | None = None
        self.reloads = 0
        try:
            self.current, self._fingerprint = load_policy_files(
                policy_path, grants_path, identities_path=identities_path
            )
        except PolicyError as exc:
            if strict:
                raise
            log.error("no valid policy at start; not ready until one is", error=str(exc), invalid=exc.document)
            self.current, self._fingerprint, self.last_error = None, "", str(exc)
        else:
            _announce_identities(self.current)

    def watched_paths(self) -> list[Path]:
        """The files to watch: the policy and the grants and identities files it names."""
        identities = (
            named_file(self.identities_path, self.current.identities_file, self.policy_path)
            if self.current
            else self.identities_path
        )
        files = [p for p in (self.policy_path, self.effective_grants_path(), identities) if p is not None]
        return sorted({p.absolute() for p in files})

    def effective_grants_path(self) -> Path | None:
        if self.current is None:
            return self.grants_path
        return named_file(self.grants_path, self.current.grants_file, self.policy_path)

    def reload(self) -> ReloadResult:
        """Re-read the files; swap the policy in only when it changed and validates."""
        try:
            policy, fingerprint = load_policy_files(
                self.policy_path, self.grants_path, identities_path=self.identities_path
            )
        except PolicyError as exc:
            message = str(exc)
            if message != self.last_error:
                log.error("policy reload refused; keeping the last good policy", error=message, invalid=exc.document)
            self.last_error = message
            result = ReloadResult(changed=False, error=message)
        else:
            changed = fingerprint != self._fingerprint
            if changed:
                self.current, self._fingerprint = policy, fingerprint
                self.reloads += 1
                log.info(
                    "policy reloaded",
                    source=policy.source,
                    grants=len(policy.grants),
                    trusted=len(policy.trusted),
                )
                _announce_identities(policy)
            self.last_error = None
            result = ReloadResult(changed=changed)
        if self.on_reload is not None:
            self.on_reload(result)
        return result

    async def watch(self, stop: asyncio.Event) -> None:
        """Reload on every change of the watched files until ``stop`` is set.

        A reload can move the grants file (``grantsFile`` changed, or the policy became
        valid at last); the watch then restarts on the new set of files.
        """
        while not stop.is_set():
            paths = self.watched_paths()
            if not paths:
                await stop.wait()
                return
            async for _changed in changes(paths, stop):
                self.reload()
                if self.watched_paths() != paths:
                    break
