"""``imagegate identities``: the ToolIdentities document from the platform's own accounts.

``ldap`` reads posixAccounts (paged), ``nss`` asks getpwnam for each tool namespace's account
(as the jobs framework does), ``namespaces`` reads a uid from each Namespace's labels or
annotations. Every form writes the same document: to stdout, to ``--out FILE`` (atomically),
or into the identities ConfigMap with ``--apply`` (compare-and-swap, as ``grants --apply``);
``--check`` lists the tool namespaces left without an identity (their pods are denied).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from imagegate.core.identities import (
    IdentityTable,
    NamePattern,
    NamePatternError,
    build_identities,
    identities_yaml,
    missing_identities,
    refuse_replacement,
)
from imagegate.core.podprofile import Identity
from imagegate.core.policy import PolicyError, load_identities
from imagegate.shell.cli.common import STDIN, app, fail
from imagegate.shell.cluster.grants_file import grants_configmap_yaml
from imagegate.shell.cluster.identities import (
    IdentitySourceError,
    LdapSettings,
    accounts_from_labels,
    accounts_from_ldap,
    accounts_from_nss,
    namespaces_from_cluster,
    namespaces_from_dump,
)
from imagegate.shell.exits import EXIT_DENIED

identities_app = typer.Typer(
    help="Make the tool identities file (namespace -> uid/gid) from LDAP, NSS or Namespace labels.",
    no_args_is_help=True,
)
app.add_typer(identities_app, name="identities")

OutOption = Annotated[
    Path | None,
    typer.Option("--out", "-o", help="Write the ToolIdentities file here (default, or -: stdout).", dir_okay=False),
]
ApplyOption = Annotated[
    bool, typer.Option("--apply", help="Write it into the ConfigMap in the cluster (compare-and-swap).")
]
ConfigMapOption = Annotated[
    str, typer.Option("--configmap", help="NAMESPACE/NAME of the identities ConfigMap (with --apply).")
]
PrintOption = Annotated[
    str | None, typer.Option("--print-configmap", help="Print the result as the ConfigMap NAMESPACE/NAME instead.")
]
CheckOption = Annotated[
    bool,
    typer.Option("--check", help="List the tool namespaces without an identity; exit 1 when there are any."),
]
NamespacesOption = Annotated[
    list[str] | None,
    typer.Option(
        "--namespaces",
        help="A `kubectl get namespaces -o json` dump (file, dir or -) instead of the live cluster.",
    ),
]
AccountOption = Annotated[
    str, typer.Option("--account-pattern", help="A tool's account name; {tool} is the tool's name.")
]
NamespacePatternOption = Annotated[
    str, typer.Option("--namespace-pattern", help="A tool's namespace; {tool} is the tool's name.")
]

AllowShrinkOption = Annotated[
    bool,
    typer.Option(
        "--allow-shrink",
        help="Write even an empty result, or one that drops more than --max-drop of the target's identities.",
    ),
]
MaxDropOption = Annotated[
    float,
    typer.Option(
        "--max-drop",
        min=0,
        max=100,
        help="Percent of the identities already in the target (--out file, --apply ConfigMap) a run may drop.",
    ),
]

DEFAULT_CONFIGMAP = "imagegate/imagegate-identities"
IDENTITIES_KEY = "identities.yaml"


def _patterns(account: str, namespace: str) -> tuple[NamePattern, NamePattern]:
    try:
        return NamePattern(account), NamePattern(namespace)
    except NamePatternError as exc:
        raise fail(str(exc)) from None


def _namespaces(sources: list[str] | None) -> dict[str, dict[str, dict[str, str]]]:
    try:
        return namespaces_from_dump(sources) if sources else namespaces_from_cluster()
    except IdentitySourceError as exc:
        raise fail(str(exc)) from None


def _split(text: str) -> tuple[str, str]:
    namespace, slash, name = text.partition("/")
    if not slash or not namespace or not name:
        raise fail(f"--configmap/--print-configmap takes NAMESPACE/NAME, got {text!r}")
    return namespace, name


def _write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        temporary.write_text(text)
        os.replace(temporary, path)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise fail(f"cannot write {path}: {exc.strerror}") from None


@dataclass(frozen=True)
class ShrinkGuard:
    """``--allow-shrink`` and ``--max-drop``: what a run may do to the identities already written."""

    allow_shrink: bool
    max_drop_percent: float

    def check(self, new: dict[str, Identity], old: dict[str, Identity] | None) -> None:
        reason = refuse_replacement(old, new, self.max_drop_percent / 100)
        if reason is None:
            return
        if self.allow_shrink:
            Console(stderr=True, soft_wrap=True).print(f"[yellow]warning:[/] {escape(reason)} (--allow-shrink)")
            return
        raise fail(f"nothing written: {reason}; check the source, or pass --allow-shrink")


def _current(text: str, where: str) -> dict[str, Identity]:
    """The identities already in the target, to compare with; a target that does not read is not overwritten."""
    try:
        return load_identities(text, where)
    except PolicyError as exc:
        raise fail(
            f"the identities already in {where} do not read ({exc}); pass --allow-shrink to replace them"
        ) from None


def _current_file(path: Path) -> dict[str, Identity] | None:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise fail(f"cannot read {path} to compare with: {exc}") from None
    return _current(text, str(path)) if text.strip() else None


def _finish(
    table: IdentityTable,
    origin: str,
    namespace_pattern: NamePattern,
    *,
    out: Path | None,
    apply: bool,
    configmap: str,
    print_configmap: str | None,
    check: bool,
    known_namespaces: list[str] | None,
    guard: ShrinkGuard,
) -> None:
    """Write the document where asked, report what was left out, and ``--check``."""
    err = Console(stderr=True, soft_wrap=True)
    text = identities_yaml(table.identities, origin)
    try:
        load_identities(text, "<generated>")  # what the webhook will read: refuse to write anything else
    except PolicyError as exc:
        raise fail(f"the generated identities do not validate: {exc}") from None
    for name, reason in table.skipped:
        err.print(f"[yellow]skipped[/] {escape(name)}: {escape(reason)}")
    if out == STDIN:
        out = None  # -o -: standard output
    if apply:
        from imagegate.shell.cluster.client import ClusterError, connect, edit_configmap  # noqa: PLC0415

        namespace, name = _split(configmap)

        def replace(old: str) -> str:
            guard.check(table.identities, _current(old, f"ConfigMap {configmap}") if old.strip() else None)
            return text

        try:
            edit_configmap(connect(), namespace, name, IDENTITIES_KEY, replace)
        except ClusterError as exc:
            raise fail(str(exc)) from None
        err.print(f"applied {len(table.identities)} identities to ConfigMap {escape(configmap)}")
    elif print_configmap is not None:
        guard.check(table.identities, None)
        namespace, name = _split(print_configmap)
        sys.stdout.write(grants_configmap_yaml(text, name, namespace, key=IDENTITIES_KEY))
    elif out is not None:
        guard.check(table.identities, _current_file(out))
        _write_atomically(out, text)
        err.print(f"wrote {len(table.identities)} identities to {escape(str(out))}")
    elif not check:
        guard.check(table.identities, None)
        sys.stdout.write(text)
    if check:
        if known_namespaces is None:
            raise fail("--check needs the namespaces: --namespaces DUMP or a cluster")
        tools = sum(1 for ns in known_namespaces if namespace_pattern.tool(ns) is not None)
        if not tools:
            raise fail(
                f"--check found no tool namespaces (named {namespace_pattern.text}) among "
                f"{len(known_namespaces)} namespaces: nothing was checked"
            )
        missing = missing_identities(known_namespaces, table.identities, namespace_pattern)
        for namespace in missing:
            Console().print(f"no identity: {escape(namespace)}")
        err.print(f"{tools} tool namespaces, {len(missing)} without an identity")
        if missing:
            raise typer.Exit(EXIT_DENIED)


@identities_app.command("ldap")
def identities_ldap(
    url: Annotated[str, typer.Option(help="ldap://host[:port] or ldaps://host[:port].")],
    base_dn: Annotated[str, typer.Option(help="Where the tool accounts are, e.g. ou=people,ou=servicegroups,...")],
    search_filter: Annotated[
        str, typer.Option("--filter", help="LDAP filter for the accounts.")
    ] = "(&(objectClass=posixAccount)(cn=tools.*))",
    name_attribute: Annotated[str, typer.Option(help="The attribute holding the account name.")] = "cn",
    account_pattern: AccountOption = "tools.{tool}",
    namespace_pattern: NamespacePatternOption = "tool-{tool}",
    bind_dn: Annotated[str | None, typer.Option(help="Bind as this DN (default: anonymous).")] = None,
    password_file: Annotated[
        Path | None, typer.Option(help="The bind password, in a file (never on the command line).", dir_okay=False)
    ] = None,
    ca_file: Annotated[Path | None, typer.Option(help="CA bundle for ldaps:// or StartTLS.", dir_okay=False)] = None,
    start_tls: Annotated[bool, typer.Option(help="StartTLS before binding on ldap://.")] = False,
    page_size: Annotated[int, typer.Option(help="Entries per page (paged-results control).", min=1)] = 500,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the directory.")] = 10.0,
    out: OutOption = None,
    apply: ApplyOption = False,
    configmap: ConfigMapOption = DEFAULT_CONFIGMAP,
    print_configmap: PrintOption = None,
    check: CheckOption = False,
    namespaces: NamespacesOption = None,
    allow_shrink: AllowShrinkOption = False,
    max_drop: MaxDropOption = 10.0,
) -> None:
    """From LDAP: each posixAccount named like ACCOUNT_PATTERN (uidNumber, gidNumber) is a tool's identity."""
    account, namespace = _patterns(account_pattern, namespace_pattern)
    password = None
    if password_file is not None:
        try:
            password = password_file.read_text().rstrip("\n")
        except OSError as exc:
            raise fail(f"cannot read {password_file}: {exc.strerror}") from None
    settings = LdapSettings(
        url=url,
        base_dn=base_dn,
        search_filter=search_filter,
        name_attribute=name_attribute,
        bind_dn=bind_dn,
        password=password,
        ca_file=ca_file,
        start_tls=start_tls,
        page_size=page_size,
        timeout=timeout,
    )
    try:
        table = build_identities(list(accounts_from_ldap(settings, account)), account, namespace)
    except IdentitySourceError as exc:
        raise fail(str(exc)) from None
    known = list(_namespaces(namespaces)) if check else None
    _finish(
        table,
        f"LDAP {url} {base_dn}",
        namespace,
        out=out,
        apply=apply,
        configmap=configmap,
        print_configmap=print_configmap,
        check=check,
        known_namespaces=known,
        guard=ShrinkGuard(allow_shrink, max_drop),
    )


@identities_app.command("nss")
def identities_nss(
    tools: Annotated[
        list[str] | None, typer.Argument(help="Tool names (default: every tool namespace in the cluster or dump).")
    ] = None,
    account_pattern: AccountOption = "tools.{tool}",
    namespace_pattern: NamespacePatternOption = "tool-{tool}",
    out: OutOption = None,
    apply: ApplyOption = False,
    configmap: ConfigMapOption = DEFAULT_CONFIGMAP,
    print_configmap: PrintOption = None,
    check: CheckOption = False,
    namespaces: NamespacesOption = None,
    allow_shrink: AllowShrinkOption = False,
    max_drop: MaxDropOption = 10.0,
) -> None:
    """From NSS: getpwnam(ACCOUNT_PATTERN) for each tool, as the jobs framework finds a tool's uid."""
    account, namespace = _patterns(account_pattern, namespace_pattern)
    known = list(_namespaces(namespaces)) if check or not tools else None
    names = list(tools or [])
    if not names and known is not None:
        names = [t for t in (namespace.tool(ns) for ns in known) if t is not None]
    table = build_identities(list(accounts_from_nss(sorted(set(names)), account)), account, namespace)
    _finish(
        table,
        "NSS (getpwnam)",
        namespace,
        out=out,
        apply=apply,
        configmap=configmap,
        print_configmap=print_configmap,
        check=check,
        known_namespaces=known,
        guard=ShrinkGuard(allow_shrink, max_drop),
    )


@identities_app.command("namespaces")
def identities_namespaces(
    uid_key: Annotated[str, typer.Option(help="The label (or annotation) holding the tool's uid.")],
    gid_key: Annotated[str | None, typer.Option(help="The one holding its gid (default: the uid).")] = None,
    annotations: Annotated[bool, typer.Option("--annotations", help="Read annotations instead of labels.")] = False,
    namespace_pattern: NamespacePatternOption = "tool-{tool}",
    out: OutOption = None,
    apply: ApplyOption = False,
    configmap: ConfigMapOption = DEFAULT_CONFIGMAP,
    print_configmap: PrintOption = None,
    check: CheckOption = False,
    namespaces: NamespacesOption = None,
    allow_shrink: AllowShrinkOption = False,
    max_drop: MaxDropOption = 10.0,
) -> None:
    """From the Namespaces: a uid (and gid) in each tool namespace's labels or annotations."""
    namespace = _patterns("{tool}", namespace_pattern)[1]
    found = _namespaces(namespaces)
    # each account is named by its namespace: the namespace pattern maps it to itself
    accounts = list(accounts_from_labels(found, uid_key, gid_key, annotations=annotations))
    table = build_identities(accounts, namespace, namespace)
    _finish(
        table,
        f"Namespace {'annotations' if annotations else 'labels'} {uid_key}",
        namespace,
        out=out,
        apply=apply,
        configmap=configmap,
        print_configmap=print_configmap,
        check=check,
        known_namespaces=list(found),
        guard=ShrinkGuard(allow_shrink, max_drop),
    )
