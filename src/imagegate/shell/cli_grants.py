"""``imagegate grants``: list, add and revoke BYOC grants, in a file or the cluster's ConfigMap."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from imagegate.core.policy import Mode, PolicyError, grant_entry, load_grants
from imagegate.core.report import GrantState, grant_states
from imagegate.shell.cli_common import (
    ExpiringDaysOption,
    GrantsOption,
    OutputFormat,
    app,
    fail,
    namespace_name,
    parse_now,
    plural,
    write_json,
)
from imagegate.shell.cli_json import GrantJson
from imagegate.shell.exits import EXIT_DENIED
from imagegate.shell.grants_file import GrantEditError, edit_grants_file, edit_grants_text, grants_configmap_yaml
from imagegate.shell.policy_source import read_document

grants_app = typer.Typer(help="List, add, revoke BYOC grants; find the ones about to expire.", no_args_is_help=True)
app.add_typer(grants_app, name="grants")


def render_grants(states: list[GrantState], console: Console) -> None:
    table = Table(title="BYOC grants", header_style="bold")
    for column in ("namespace", "state", "expires", "days left", "registries", "ticket", "reason"):
        table.add_column(column, overflow="fold")
    colour = {"expired": "bold red", "expiring": "yellow", "active": "green"}
    for state in states:
        grant = state.grant
        table.add_row(
            grant.namespace,
            f"[{colour[state.state]}]{state.state}[/]",
            grant.expires.isoformat() if grant.expires else "never",
            "" if state.days_left is None else str(state.days_left),
            escape(", ".join(map(str, grant.registries)) if grant.registries is not None else "any"),
            escape(grant.ticket),
            escape(grant.reason),
        )
    console.print(table)


ConfigMapOption = Annotated[
    str | None, typer.Option("--configmap", help="NAMESPACE/NAME of the grants ConfigMap (with --apply).")
]
ApplyOption = Annotated[bool, typer.Option("--apply", help="Edit the ConfigMap in the cluster (compare-and-swap).")]
PrintOption = Annotated[
    str | None,
    typer.Option(
        "--print-configmap", help="Also print the result as the ConfigMap NAMESPACE/NAME (for review or kubectl apply)."
    ),
]


def _split_configmap(text: str) -> tuple[str, str]:
    namespace, slash, name = text.partition("/")
    if not slash or not namespace or not name:
        raise fail(f"--configmap/--print-configmap takes NAMESPACE/NAME, got {text!r}")
    return namespace, name


def _edit(
    change: Any, grants_file: Path | None, configmap: str | None, apply: bool, print_configmap: str | None
) -> str:
    try:
        if apply:
            if configmap is None:
                raise fail("--apply needs --configmap NAMESPACE/NAME")
            from imagegate.shell.cluster import ClusterError, connect, edit_configmap  # noqa: PLC0415

            namespace, name = _split_configmap(configmap)
            try:
                text = edit_configmap(
                    connect(), namespace, name, "grants.yaml", lambda old: edit_grants_text(old, f"{configmap}", change)
                )
            except ClusterError as exc:
                raise fail(str(exc)) from None
        elif grants_file is not None:
            text = edit_grants_file(grants_file, change)
        else:
            raise fail("name the grants: --grants FILE, or --apply --configmap NAMESPACE/NAME")
    except (GrantEditError, PolicyError) as exc:
        raise fail(str(exc)) from None
    if print_configmap is not None:
        namespace, name = _split_configmap(print_configmap)
        sys.stdout.write(grants_configmap_yaml(text, name, namespace))
    return text


@grants_app.command("add")
def grants_add(
    namespace: Annotated[str, typer.Argument(help="The tool's namespace, e.g. tool-example.", callback=namespace_name)],
    grants: GrantsOption = None,
    registry: Annotated[
        list[str] | None, typer.Option("--registry", "-r", help="Limit to these registries/repositories.")
    ] = None,
    expires: Annotated[str | None, typer.Option(help="Last day of the grant (YYYY-MM-DD, UTC).")] = None,
    reason: Annotated[str, typer.Option(help="Why the tool needs its own images.")] = "",
    requested_by: Annotated[str, typer.Option(help="Who asked.")] = "",
    ticket: Annotated[str, typer.Option(help="The ticket that approved it.")] = "",
    require_base_image: Annotated[bool, typer.Option(help="Images must be built on a trusted base.")] = False,
    mode: Annotated[Mode | None, typer.Option(help="enforce, warn or audit for this namespace.")] = None,
    signed_by: Annotated[
        str | None,
        typer.Option(
            help="A PEM public key file (e.g. keys/{tool}.pub): the images this grant admits must be signed by it."
        ),
    ] = None,
    replace: Annotated[bool, typer.Option(help="Replace the namespace's existing grant.")] = False,
    configmap: ConfigMapOption = None,
    apply: ApplyOption = False,
    print_configmap: PrintOption = None,
    now: Annotated[str | None, typer.Option(help="As of this ISO date/time (--expires must not be before it).")] = None,
) -> None:
    """Grant NAMESPACE the use of images beyond the trusted registries."""
    if expires is not None:
        try:
            last_day = dt.date.fromisoformat(expires)
        except ValueError:
            raise fail(f"--expires: {expires!r} is not a date (YYYY-MM-DD)") from None
        today = parse_now(now).astimezone(dt.UTC).date()
        if last_day < today:
            raise fail(
                f"--expires {expires} is in the past (today is {today.isoformat()}, UTC): "
                "the grant would never apply; nothing was written"
            )
    entry = grant_entry(
        namespace,
        registries=list(registry) if registry else None,
        expires=expires or None,
        reason=reason or "",
        requested_by=requested_by or "",
        ticket=ticket or "",
        require_base_image=bool(require_base_image),
        mode=None if mode is None else mode.value,
        signed_by=signed_by,
    )

    def change(current: list[dict[str, Any]]) -> list[dict[str, Any]]:
        existing = [g for g in current if g["namespace"] == namespace]
        if existing and not replace:
            raise GrantEditError(f"{namespace} already has a grant; use --replace to change it")
        return [*(g for g in current if g["namespace"] != namespace), entry]

    _edit(change, grants, configmap, apply, print_configmap)
    Console(stderr=True).print(f"granted: {escape(namespace)}")


@grants_app.command("revoke")
def grants_revoke(
    namespace: Annotated[str, typer.Argument(help="The namespace whose grant ends now.", callback=namespace_name)],
    grants: GrantsOption = None,
    configmap: ConfigMapOption = None,
    apply: ApplyOption = False,
    print_configmap: PrintOption = None,
) -> None:
    """Remove NAMESPACE's grant."""

    def change(current: list[dict[str, Any]]) -> list[dict[str, Any]]:
        kept = [g for g in current if g["namespace"] != namespace]
        if len(kept) == len(current):
            raise GrantEditError(f"{namespace} has no grant")
        return kept

    _edit(change, grants, configmap, apply, print_configmap)
    Console(stderr=True).print(f"revoked: {escape(namespace)}")


def _read_grants(grants_file: Path | None, configmap: str | None) -> Any:
    if configmap is not None:
        from lightkube.resources.core_v1 import ConfigMap  # noqa: PLC0415

        from imagegate.shell.cluster import ClusterError, connect  # noqa: PLC0415

        namespace, name = _split_configmap(configmap)
        try:
            found = connect().get(ConfigMap, name=name, namespace=namespace)
        except (ClusterError, Exception) as exc:
            raise fail(f"cannot read ConfigMap {configmap}: {exc}") from None
        text, source = (found.data or {}).get("grants.yaml", ""), configmap
    elif grants_file is not None:
        try:
            text, source = read_document(grants_file), str(grants_file)
        except PolicyError as exc:
            raise fail(str(exc)) from None
    else:
        raise fail("name the grants: --grants FILE or --configmap NAMESPACE/NAME")
    try:
        return load_grants(text, source)
    except PolicyError as exc:
        raise fail(f"invalid grants: {exc}") from None


@grants_app.command("list")
def grants_list(
    grants: GrantsOption = None,
    configmap: ConfigMapOption = None,
    expiring_days: ExpiringDaysOption = 14,
    output: Annotated[OutputFormat, typer.Option("--output", "-o")] = OutputFormat.table,
    now: Annotated[str | None, typer.Option(help="As of this ISO date/time.")] = None,
) -> None:
    """Every grant, with its state (active, expiring, expired)."""
    states = grant_states(_read_grants(grants, configmap), parse_now(now), expiring_days)
    if output is OutputFormat.json:
        write_json([GrantJson.of(s) for s in states])
    else:
        render_grants(states, Console())


@grants_app.command("expiring")
def grants_expiring(
    grants: GrantsOption = None,
    configmap: ConfigMapOption = None,
    days: Annotated[int, typer.Option(min=0, help="Within how many days.")] = 14,
    output: Annotated[OutputFormat, typer.Option("--output", "-o")] = OutputFormat.table,
    now: Annotated[str | None, typer.Option(help="As of this ISO date/time.")] = None,
) -> None:
    """Grants that end within DAYS or have ended; exit 1 when there are any (for a cron alert)."""
    states = [s for s in grant_states(_read_grants(grants, configmap), parse_now(now), days) if s.state != "active"]
    if output is OutputFormat.json:
        write_json([GrantJson.of(s) for s in states])
    elif states:
        render_grants(states, Console())
    else:
        Console().print(f"no grant ends within {plural(days, 'day')}")
    if states:
        raise typer.Exit(EXIT_DENIED)
