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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from imagegate.core.policy import Policy, PolicyError
from imagegate.shell.filewatch import changes
from imagegate.shell.logs import get_logger
from imagegate.shell.policy_files import load_policy_files, named_file

__all__ = ["PolicySource", "ReloadResult"]

log = get_logger("imagegate.policy")


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
