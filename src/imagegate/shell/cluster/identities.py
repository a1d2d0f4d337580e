"""Where tool identities come from: LDAP, NSS, or the Namespaces' labels and annotations.

Each reader returns :class:`~imagegate.core.identities.Account` records; mapping them to
namespaces and writing the ToolIdentities document is the core's
(:mod:`imagegate.core.identities`). Errors of any kind (a directory that is down, a bind that
is refused, an attribute that is not a number) become :class:`IdentitySourceError` with a
message, never a traceback.
"""

from __future__ import annotations

import math
import pwd
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imagegate.core.identities import Account, NamePattern
from imagegate.core.workloads import object_metadata
from imagegate.core.yamldoc import DocumentError
from imagegate.shell.manifests import read_manifests

__all__ = [
    "IdentitySourceError",
    "LdapSettings",
    "accounts_from_labels",
    "accounts_from_ldap",
    "accounts_from_nss",
    "namespaces_from_dump",
]


class IdentitySourceError(Exception):
    pass


@dataclass(frozen=True)
class LdapSettings:
    url: str
    base_dn: str
    search_filter: str = "(&(objectClass=posixAccount)(cn=tools.*))"
    name_attribute: str = "cn"
    bind_dn: str | None = None
    password: str | None = None
    ca_file: Path | None = None
    start_tls: bool = False
    page_size: int = 500
    timeout: float = 10.0


def _number(values: Any) -> int | None:
    """The first value of an attribute as an integer (``None`` when absent or not a number)."""
    if isinstance(values, list):
        values = values[0] if values else None
    if isinstance(values, bytes):
        values = values.decode("ascii", "replace")
    try:
        return int(str(values)) if values is not None else None
    except ValueError:
        return None


def _texts(values: Any) -> list[str]:
    items = values if isinstance(values, list) else [values]
    return [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in items if v is not None]


# What an operator can do about the directory's answer codes (RFC 4511 names, as ldap3 gives them).
_LDAP_ANSWERS = {
    "invalidCredentials": "the bind DN or its password is wrong",
    "noSuchObject": "no such entry (check --base-dn, and --bind-dn)",
    "insufficientAccessRights": "the bind DN may not read these entries",
    "inappropriateAuthentication": "an anonymous bind is not allowed here: give --bind-dn and --password-file",
    "confidentialityRequired": "the directory requires TLS: use ldaps:// or --start-tls",
    "sizeLimitExceeded": "the directory capped the search: lower --page-size",
    "timeLimitExceeded": "the directory's time limit for a search was reached",
    "unwillingToPerform": "the directory is unwilling to perform the request",
    "strongerAuthRequired": "the directory requires a stronger bind (TLS, or credentials)",
}


def _ldap_reason(exc: Exception, settings: LdapSettings) -> str:
    """One sentence for an ldap3 error: its answer code explained, or the socket's own words, never a repr."""
    description = getattr(exc, "description", None)
    if isinstance(description, str) and description:
        detail = getattr(exc, "message", None)
        said = f" ({detail})" if isinstance(detail, str) and detail else ""
        return f"{description}: {_LDAP_ANSWERS.get(description, 'refused by the directory')}{said}"
    text = str(exc)
    while text.startswith(("(", "[", '"', "'")) and text.endswith((")", "]", '"', "'", ",)")):
        text = text.strip("()[],\"'")  # ldap3 nests socket errors in tuple reprs
    if settings.url.startswith("ldaps://") and ("ssl" in text.lower() or "EOF" in text):
        return f"the TLS handshake failed ({text}); is the port plain LDAP? then use ldap:// (with --start-tls)"
    return text or type(exc).__name__


def accounts_from_ldap(settings: LdapSettings, account: NamePattern) -> Iterator[Account]:
    """posixAccounts under ``base_dn``, read with the paged-results control (directories cap plain searches)."""
    import ldap3  # noqa: PLC0415 (only this command needs it)
    from ldap3.core.exceptions import LDAPException  # noqa: PLC0415

    scheme, _, rest = settings.url.partition("://")
    if scheme.lower() not in ("ldap", "ldaps") or not rest.strip("/"):
        raise IdentitySourceError(f"--url takes ldap://HOST[:PORT] or ldaps://HOST[:PORT], not {settings.url!r}")

    tls = None
    if settings.ca_file is not None or settings.start_tls or settings.url.startswith("ldaps://"):
        import ssl  # noqa: PLC0415

        tls = ldap3.Tls(
            validate=ssl.CERT_REQUIRED, ca_certs_file=str(settings.ca_file) if settings.ca_file is not None else None
        )
    attributes = [settings.name_attribute, "uidNumber", "gidNumber"]
    seconds = max(1, math.ceil(settings.timeout))  # ldap3 packs it into SO_RCVTIMEO: whole seconds
    try:
        server = ldap3.Server(settings.url, connect_timeout=seconds, tls=tls, get_info=ldap3.NONE)
        connection = ldap3.Connection(
            server,
            user=settings.bind_dn,
            password=settings.password,
            auto_bind=ldap3.AUTO_BIND_TLS_BEFORE_BIND if settings.start_tls else ldap3.AUTO_BIND_NO_TLS,
            receive_timeout=seconds,
            read_only=True,
            raise_exceptions=True,
        )
    except LDAPException as exc:
        raise IdentitySourceError(f"cannot connect to {settings.url}: {_ldap_reason(exc, settings)}") from None
    try:
        entries = connection.extend.standard.paged_search(
            settings.base_dn,
            settings.search_filter,
            attributes=attributes,
            paged_size=settings.page_size,
            generator=True,
        )
        for entry in entries:
            if entry.get("type") != "searchResEntry":
                continue
            raw = entry.get("raw_attributes", {})
            names = _texts(raw.get(settings.name_attribute, []))
            # a multi-valued name (cn: tools.foo, cn: Foo tool): the value that is a tool account's
            name = next((n for n in names if account.tool(n) is not None), names[0] if names else "")
            yield Account(name, _number(raw.get("uidNumber")), _number(raw.get("gidNumber")), str(entry.get("dn", "")))
    except LDAPException as exc:
        raise IdentitySourceError(
            f"LDAP search under {settings.base_dn!r} on {settings.url} failed: {_ldap_reason(exc, settings)}"
        ) from None
    finally:
        connection.unbind()


def accounts_from_nss(tools: Iterable[str], account: NamePattern) -> Iterator[Account]:
    """``getpwnam`` of each tool's account name, as the jobs framework does (through sssd on Toolforge)."""
    for tool in tools:
        name = account.name(tool)
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue  # no such account: --check reports the namespace
        yield Account(name, entry.pw_uid, entry.pw_gid)


def accounts_from_labels(
    namespaces: Mapping[str, Mapping[str, Mapping[str, str]]], uid_key: str, gid_key: str | None, *, annotations: bool
) -> Iterator[Account]:
    """An account per Namespace with the key in its labels or annotations, named by the namespace."""
    where = "annotations" if annotations else "labels"
    for name, metadata in namespaces.items():
        values = metadata.get(where, {})
        if uid_key not in values:
            continue
        uid = _number(values.get(uid_key))
        gid = _number(values.get(gid_key)) if gid_key is not None and gid_key in values else None
        yield Account(name, uid, gid)


def namespaces_from_dump(sources: list[str]) -> dict[str, dict[str, dict[str, str]]]:
    """Namespace name -> {"labels": ..., "annotations": ...} from `kubectl get namespaces -o json` (or YAML)."""
    try:
        objects = read_manifests(sources)
    except DocumentError as exc:
        raise IdentitySourceError(f"invalid namespaces dump: {exc}") from None
    found: dict[str, dict[str, dict[str, str]]] = {}
    for item in objects:
        metadata = object_metadata(item.obj)
        if item.obj.get("kind") != "Namespace" or not metadata.get("name"):
            continue
        found[str(metadata["name"])] = {
            key: {str(k): str(v) for k, v in (metadata.get(key) or {}).items()}
            for key in ("labels", "annotations")
            if isinstance(metadata.get(key) or {}, dict)
        }
    return found


def namespaces_from_cluster() -> dict[str, dict[str, dict[str, str]]]:
    """The same from the live cluster (lightkube: kubeconfig or in-cluster account)."""
    from lightkube import ApiError  # noqa: PLC0415
    from lightkube.resources.core_v1 import Namespace  # noqa: PLC0415

    from imagegate.shell.cluster.client import ClusterError, connect  # noqa: PLC0415

    try:
        client = connect()
        return {
            str(ns.metadata.name): {
                "labels": dict(ns.metadata.labels or {}),
                "annotations": dict(ns.metadata.annotations or {}),
            }
            for ns in client.list(Namespace)
            if ns.metadata is not None and ns.metadata.name
        }
    except ClusterError as exc:
        raise IdentitySourceError(str(exc)) from None
    except ApiError as exc:
        raise IdentitySourceError(f"cannot list namespaces: {exc.status.message}") from None
