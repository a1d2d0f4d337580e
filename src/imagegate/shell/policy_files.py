"""Policy, grants and identities files read from disk and validated: the one way every command,
the webhook and the reports controller read them (``policy_source`` keeps them current live).

Free of the event loop and of logging: the command line loads this on every call.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import overload

from imagegate.core.policy import Policy, PolicyError, load_grants, load_identities, load_policy
from imagegate.core.yamldoc import load_yaml_document
from imagegate.shell.builtin_policy import default_policy

__all__ = ["MAX_POLICY_BYTES", "load_policy_files", "named_file", "read_document", "relative_to_policy"]

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
