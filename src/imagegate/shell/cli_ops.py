"""Operators' commands: ``audit``, ``grants``, ``layers``."""

from __future__ import annotations

import asyncio
import datetime as dt
import sys
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress
from rich.table import Table

from imagegate.core.decide import Decision
from imagegate.core.policy import Mode, PolicyError, load_grants
from imagegate.core.records import Allowance
from imagegate.core.reference import ReferenceError, parse_docker_ref
from imagegate.core.report import AuditReport, GrantState, audit_report, grant_states, layer_report, top_owners
from imagegate.shell.cli_common import (
    GrantsOption,
    IdentitiesOption,
    OutputFormat,
    PolicyOption,
    app,
    check_objects,
    fail,
    load,
    parse_now,
    progress_on_terminal,
    read_inputs,
    write_json,
)
from imagegate.shell.cli_json import AuditJson, GrantJson
from imagegate.shell.exits import EXIT_DENIED
from imagegate.shell.grants_file import GrantEditError, edit_grants_file, edit_grants_text, grants_configmap_yaml
from imagegate.shell.html_report import render_layer_report
from imagegate.shell.logs import configure_logging
from imagegate.shell.manifests import SourcedObject
from imagegate.shell.policy_source import read_document
from imagegate.shell.registry import RegistryError
from imagegate.shell.verification import RegistryGate

grants_app = typer.Typer(help="List, add, revoke BYOC grants; find the ones about to expire.", no_args_is_help=True)
app.add_typer(grants_app, name="grants")

FromOption = Annotated[
    list[str] | None,
    typer.Option("--from", help="A `kubectl get -A -o json` dump (file, dir or -) instead of the live cluster."),
]


def _objects(sources: list[str] | None) -> tuple[list[SourcedObject], dict[str, Mapping[str, str]]]:
    """The objects to judge and, from a live cluster, the namespaces' labels."""
    if sources:
        return read_inputs(sources, "dump"), {}
    from imagegate.shell.cluster import ClusterError, connect, list_workloads, namespace_labels  # noqa: PLC0415

    try:
        client = connect()
        console = Console(stderr=True)
        with Progress(console=console, transient=True, disable=not console.is_terminal) as progress:
            task = progress.add_task("reading the cluster", total=10)
            objects = list_workloads(
                client, lambda kind: progress.update(task, advance=1, description=f"listing {kind}")
            )
            progress.update(task, advance=1, description="listing namespaces")
            labels = namespace_labels(client)
    except ClusterError as exc:
        raise fail(str(exc)) from None
    return objects, labels


_OUTCOME_STYLE = {"denied": "bold red", "error": "magenta", "warned": "yellow", "audited": "blue", "pinned": "cyan"}


class AuditGrouping(StrEnum):
    rule = "rule"
    namespace = "namespace"


def _render_audit(report: AuditReport, console: Console, by: AuditGrouping) -> None:
    """Totals by rule, then each distinct finding once, at its top owner, by namespace or by rule."""
    totals = Table(title="cluster-wide totals by rule", header_style="bold")
    for column in ("outcome", "rule", "findings", "objects", "namespaces"):
        totals.add_column(column, justify="right" if column in ("findings", "objects", "namespaces") else "left")
    for total in report.totals_by_rule():
        totals.add_row(
            f"[{_OUTCOME_STYLE[total.outcome]}]{total.outcome}[/]",
            escape(total.rule),
            f"{total.findings:,}",
            f"{total.objects:,}",
            f"{total.namespaces:,}",
        )
    console.print(totals)
    if not report.findings:
        console.print("no findings")
    else:
        first = ("namespace", "rule") if by is AuditGrouping.namespace else ("rule", "namespace")
        table = Table(title=f"findings by {by.value}, once per top owner", header_style="bold")
        for column in (*first[:1], "outcome", first[1], "top owner", "objects", "finding"):
            table.add_column(column, overflow="fold", justify="right" if column == "objects" else "left")
        findings = report.findings
        if by is AuditGrouping.rule:
            findings = sorted(findings, key=lambda f: (f.rule, f.outcome, f.namespace, f.owner))
        for finding in findings:
            keys = (
                (finding.namespace, finding.rule)
                if by is AuditGrouping.namespace
                else (finding.rule, finding.namespace)
            )
            table.add_row(
                escape(keys[0]),
                f"[{_OUTCOME_STYLE[finding.outcome]}]{finding.outcome}[/]",
                escape(keys[1]),
                escape(finding.owner),
                f"{len(finding.objects):,}",
                escape(finding.message),
            )
        console.print(table)
    if report.grants:
        _render_grants(report.grants, console)


def _render_grants(states: list[GrantState], console: Console) -> None:
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


@app.command()
def audit(
    source: FromOption = None,
    policy: PolicyOption = None,
    grants: GrantsOption = None,
    identities: IdentitiesOption = None,
    output: Annotated[OutputFormat, typer.Option("--output", "-o")] = OutputFormat.table,
    expiring_days: Annotated[int, typer.Option(help="Grants ending within this many days are 'expiring'.")] = 14,
    registry: Annotated[bool, typer.Option("--registry/--offline", help="Ask registries (base images, pins).")] = False,
    now: Annotated[str | None, typer.Option(help="Evaluate as of this ISO date/time.")] = None,
    compare: Annotated[
        bool, typer.Option("--compare", help="Compare the POLICIES (files or presets) side by side.")
    ] = False,
    policies: Annotated[
        list[str] | None,
        typer.Argument(help="With --compare: policy files, or the presets closed, byoc, time-boxed, selected."),
    ] = None,
    html: Annotated[Path | None, typer.Option(help="With --compare: also write the table as an HTML page.")] = None,
    box_ends: Annotated[
        str | None, typer.Option(help="With the time-boxed preset: its last day (default: in 90 days).")
    ] = None,
    select: Annotated[
        list[str] | None, typer.Option(help="With the selected preset: a namespace to grant, besides the grants'.")
    ] = None,
    top: Annotated[int, typer.Option(help="With --compare: tools shown in the table.", min=0)] = 30,
    by: Annotated[
        AuditGrouping, typer.Option("--by", help="After the totals, list findings by namespace or by rule.")
    ] = AuditGrouping.namespace,
) -> None:
    """Evaluate the current or a proposed policy against everything that already runs.

    Each finding is reported once, at the top owner of the objects that have it (Deployment
    over its ReplicaSets and Pods, CronJob over its Jobs), with the number of objects it
    covers; -o json keeps every object.

    With --compare, judge it under each of POLICIES instead (files, or the presets closed,
    byoc, time-boxed, selected, made from --policy or the built-in policy) and show what each
    would deny, per rule and per tool.

    Exit code 0 when nothing would be denied and no image is missing, 1 otherwise, 2 on bad input.
    """
    console = Console(stderr=output is OutputFormat.json)
    configure_logging("warning", json=False)
    loaded = load(policy, grants, identities)
    moment = parse_now(now)
    if policies and not compare:
        raise fail("policies to compare are given with --compare")
    objects, labels = _objects(source)
    if compare:
        from imagegate.shell.cli_compare import run_compare  # noqa: PLC0415

        run_compare(
            list(policies or []),
            base=loaded,
            objects=objects,
            labels=labels,
            now=moment,
            grants=grants,
            identities=identities,
            box_ends=box_ends,
            selected=list(select or []),
            output=output,
            html_path=html,
            top=top,
        )
        return
    gate = RegistryGate(policy.parent if policy else None, remember_failures=True) if registry else None
    checked = check_objects(loaded, objects, "default", moment, gate, labels)
    failures = {ref: (exc.kind, str(exc)) for ref, exc in (gate.pin_failures or {}).items()} if gate else {}
    report = audit_report(
        [(c.where, c.decision) for c in checked],
        loaded,
        moment,
        expiring_days,
        owners=top_owners([item.obj for item in objects]),
        lookup_failures=failures,
    )
    if output is OutputFormat.json:
        write_json(AuditJson.of(report))
    else:
        _render_audit(report, console, by)
        console.print(report.summary())
    if report.denied_objects or report.count("error"):
        raise typer.Exit(EXIT_DENIED)


# --- grants ---------------------------------------------------------------------------------

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
    namespace: Annotated[str, typer.Argument(help="The tool's namespace, e.g. tool-example.")],
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
    entry: dict[str, Any] = {"namespace": namespace}
    if registry:
        entry["registries"] = list(registry)
    if expires:
        entry["expires"] = expires
    for key, value in (("reason", reason), ("requestedBy", requested_by), ("ticket", ticket)):
        if value:
            entry[key] = value
    if require_base_image:
        entry["requireBaseImage"] = True
    if mode is not None:
        entry["mode"] = mode.value

    def change(current: list[dict[str, Any]]) -> list[dict[str, Any]]:
        existing = [g for g in current if g["namespace"] == namespace]
        if existing and not replace:
            raise GrantEditError(f"{namespace} already has a grant; use --replace to change it")
        return [*(g for g in current if g["namespace"] != namespace), entry]

    _edit(change, grants, configmap, apply, print_configmap)
    Console(stderr=True).print(f"granted: {escape(namespace)}")


@grants_app.command("revoke")
def grants_revoke(
    namespace: Annotated[str, typer.Argument(help="The namespace whose grant ends now.")],
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
    expiring_days: Annotated[int, typer.Option(help="Grants ending within this many days are 'expiring'.")] = 14,
    output: Annotated[OutputFormat, typer.Option("--output", "-o")] = OutputFormat.table,
    now: Annotated[str | None, typer.Option(help="As of this ISO date/time.")] = None,
) -> None:
    """Every grant, with its state (active, expiring, expired)."""
    states = grant_states(_read_grants(grants, configmap), parse_now(now), expiring_days)
    if output is OutputFormat.json:
        write_json([GrantJson.of(s) for s in states])
    else:
        _render_grants(states, Console())


@grants_app.command("expiring")
def grants_expiring(
    grants: GrantsOption = None,
    configmap: ConfigMapOption = None,
    days: Annotated[int, typer.Option(help="Within how many days.")] = 14,
    output: Annotated[OutputFormat, typer.Option("--output", "-o")] = OutputFormat.table,
    now: Annotated[str | None, typer.Option(help="As of this ISO date/time.")] = None,
) -> None:
    """Grants that end within DAYS or have ended; exit 1 when there are any (for a cron alert)."""
    states = [s for s in grant_states(_read_grants(grants, configmap), parse_now(now), days) if s.state != "active"]
    if output is OutputFormat.json:
        write_json([GrantJson.of(s) for s in states])
    elif states:
        _render_grants(states, Console())
    else:
        Console().print(f"no grant ends within {days} days")
    if states:
        raise typer.Exit(EXIT_DENIED)


# --- layers ---------------------------------------------------------------------------------


def _uses_from(
    objects: list[SourcedObject], labels: Mapping[str, Mapping[str, str]], loaded: Any, moment: dt.datetime
) -> dict[str, bool]:
    """Reference -> whether BYOC let it in, from decisions over the objects."""
    found: dict[str, bool] = {}
    for checked in check_objects(loaded, objects, "default", moment, namespace_labels=labels):
        decision: Decision = checked.decision
        for verdict in decision.verdicts:
            if verdict.reference is None:
                continue
            byoc = verdict.allowance is not Allowance.TRUSTED
            found[verdict.reference] = found.get(verdict.reference, False) or byoc
    return found


@app.command()
def layers(
    images: Annotated[list[str] | None, typer.Argument(help="Images to report on (or use --from).")] = None,
    source: FromOption = None,
    policy: PolicyOption = None,
    grants: GrantsOption = None,
    html: Annotated[Path | None, typer.Option(help="Write a self-contained HTML report with a chart here.")] = None,
    output: Annotated[OutputFormat, typer.Option("--output", "-o")] = OutputFormat.table,
) -> None:
    """What the images in use cost on a node: total vs unique bytes, shared base layers, BYOC's own."""
    configure_logging("warning", json=False)
    console = Console(stderr=output is OutputFormat.json)
    loaded = load(policy, grants)
    moment = dt.datetime.now(dt.UTC)
    if images:
        wanted: dict[str, bool] = {}
        for image in images:
            try:
                ref = parse_docker_ref(image)
            except ReferenceError as exc:
                raise fail(str(exc)) from None
            wanted[str(ref)] = loaded.trusted.first_match(ref) is None
    else:
        wanted = _uses_from(*_objects(source), loaded, moment)
    if not wanted:
        raise fail("no images: name some, or give --from a dump")

    async def gather() -> tuple[dict[str, Any], list[Any], list[str]]:
        gate = RegistryGate(policy.parent if policy else None)
        found: dict[str, Any] = {}
        problems: list[str] = []
        try:
            if loaded.base_images.trusted:
                await gate.refresh_bases(loaded)
            with progress_on_terminal(f"reading {len(wanted):,} images", len(wanted)) as advance:

                async def resolve(reference: str) -> Any:
                    try:
                        return await gate.resolve(loaded, parse_docker_ref(reference))
                    finally:
                        advance(1)

                results = await asyncio.gather(*(resolve(r) for r in wanted), return_exceptions=True)
            for reference, result in zip(wanted, results, strict=True):
                if isinstance(result, RegistryError):
                    problems.append(f"{reference}: {result}")
                elif isinstance(result, BaseException):
                    raise result
                elif result.platforms:
                    found[reference] = result.platforms[0]
                else:
                    problems.append(f"{reference}: offers none of {', '.join(loaded.registry.platforms)}")
            return found, list(gate.bases.versions), problems
        finally:
            await gate.aclose()

    found, bases, problems = asyncio.run(gather())
    report = layer_report(found, {r: wanted[r] for r in found}, bases, problems)
    for problem in problems:
        console.print(f"[yellow]skipped[/] {escape(problem)}")
    if html is not None:
        html.write_text(render_layer_report(report, moment))
        console.print(f"wrote {escape(str(html))}")
    if output is OutputFormat.json:
        write_json(report)
        return
    table = Table(header_style="bold")
    for column in ("image", "kind", "base", "shared", "own", "total"):
        table.add_column(column, justify="left" if column in ("image", "kind") else "right", overflow="fold")
    for cost in report.images:
        table.add_row(
            escape(cost.image),
            "BYOC" if cost.byoc else "trusted",
            f"{cost.base_bytes:,}",
            f"{cost.shared_bytes:,}",
            f"{cost.own_bytes:,}",
            f"{cost.total_bytes:,}",
        )
    console.print(table)
    console.print(
        f"total {report.total_bytes:,} B counted per image; unique {report.unique_bytes:,} B on a node running all; "
        f"trusted base layers {report.base_bytes:,} B; BYOC images add {report.byoc_added_bytes:,} B that no trusted image has"
    )
