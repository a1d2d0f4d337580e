"""Operators' commands about what runs: ``audit`` and ``layers`` (``grants`` is in cli_grants)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from imagegate.core.decide import Decision
from imagegate.core.policy import Policy
from imagegate.core.policyreport import ReportFormat
from imagegate.core.records import Allowance
from imagegate.core.reference import ReferenceError, parse_docker_ref
from imagegate.core.report import (
    AuditReport,
    GrantStatus,
    LayerReport,
    ReportOutcome,
    audit_report,
    layer_report,
    top_owners,
)
from imagegate.shell.cli.ci_formats import CheckOutput, write_ci
from imagegate.shell.cli.common import (
    ExpiringDaysOption,
    GrantsOption,
    IdentitiesOption,
    Layout,
    LayoutOption,
    OutputFormat,
    PolicyOption,
    SummaryOption,
    UnreadImages,
    app,
    check_objects,
    choose_layout,
    fail,
    load,
    namespace_name,
    parse_now,
    plural,
    progress_on_terminal,
    read_inputs,
    registry_gate,
    write_json,
    write_lines,
)
from imagegate.shell.cli.grants import render_grants
from imagegate.shell.cli.json_docs import AuditJson
from imagegate.shell.exits import EXIT_BAD_INPUT, EXIT_DENIED
from imagegate.shell.logs import configure_logging
from imagegate.shell.manifests import SourcedObject
from imagegate.shell.registry.errors import RegistryError

FromOption = Annotated[
    list[str] | None,
    typer.Option("--from", help="A `kubectl get -A -o json` dump (file, dir or -) instead of the live cluster."),
]


def _objects(sources: list[str] | None) -> tuple[list[SourcedObject], dict[str, Mapping[str, str]]]:
    """The objects to judge and, from a live cluster, the namespaces' labels."""
    if sources:
        return read_inputs(sources, "dump"), {}
    from rich.progress import Progress  # noqa: PLC0415

    from imagegate.shell.cluster.client import ClusterError, connect, list_workloads, namespace_labels  # noqa: PLC0415

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


_OUTCOME_STYLE = {
    ReportOutcome.DENIED: "bold red",
    ReportOutcome.ERROR: "magenta",
    ReportOutcome.WARNED: "yellow",
    ReportOutcome.AUDITED: "blue",
    ReportOutcome.PINNED: "cyan",
}


class AuditGrouping(StrEnum):
    rule = "rule"
    namespace = "namespace"


def _render_audit(report: AuditReport, console: Console, by: AuditGrouping, layout: Layout, summary: bool) -> None:
    """Totals by rule, then each distinct finding once, at its top owner, by namespace or by rule."""
    from rich.table import Table  # noqa: PLC0415

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
    findings = report.findings
    if by is AuditGrouping.rule:
        findings = sorted(findings, key=lambda f: (f.rule, f.outcome, f.namespace, f.owner))
    chosen = choose_layout(layout, summary, [(f.namespace, f.rule, f.owner) for f in findings], reserved=50)
    if chosen is Layout.summary:
        pass
    elif not report.findings:
        console.print("no findings")
    elif chosen is Layout.lines:
        console.print(f"findings by {by.value}, once per top owner:")
        write_lines(
            "  ".join(
                (
                    *(
                        (f.namespace, f.outcome, f.rule)
                        if by is AuditGrouping.namespace
                        else (f.rule, f.outcome, f.namespace)
                    ),
                    f"{f.owner} ({plural(len(f.objects), 'object')})",
                    f.message,
                )
            )
            for f in findings
        )
    else:
        first = ("namespace", "rule") if by is AuditGrouping.namespace else ("rule", "namespace")
        table = Table(title=f"findings by {by.value}, once per top owner", header_style="bold")
        for column in (*first[:1], "outcome", first[1], "top owner", "objects", "finding"):
            table.add_column(column, overflow="fold", justify="right" if column == "objects" else "left")
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
    ending = [state for state in report.grants if state.state is not GrantStatus.ACTIVE]
    if ending:  # what needs a decision; the active ones are `imagegate grants list`'s
        render_grants(ending, console)
    active = len(report.grants) - len(ending)
    if active:
        console.print(f"{plural(active, 'other grant')} active (imagegate grants list)")


@app.command()
def audit(
    source: FromOption = None,
    policy: PolicyOption = None,
    grants: GrantsOption = None,
    identities: IdentitiesOption = None,
    output: Annotated[
        CheckOutput, typer.Option("--output", "-o", help="table, json, or for CI compact, junit, sarif, policyreport.")
    ] = CheckOutput.table,
    expiring_days: ExpiringDaysOption = 14,
    registry: Annotated[
        bool,
        typer.Option(
            "--registry/--offline",
            help="Ask registries (base images, signatures, content, pins); with --compare, for every option.",
        ),
    ] = False,
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
        list[str] | None,
        typer.Option(
            help="With the selected preset: a namespace to grant, besides the grants'.", callback=namespace_name
        ),
    ] = None,
    top: Annotated[int, typer.Option(help="With --compare: tools shown in the table.", min=0)] = 30,
    by: Annotated[
        AuditGrouping, typer.Option("--by", help="After the totals, list findings by namespace or by rule.")
    ] = AuditGrouping.namespace,
    report_format: Annotated[
        ReportFormat,
        typer.Option("--report-format", help="With -o policyreport: the report kind (as reports --format)."),
    ] = ReportFormat.openreports,
    layout: LayoutOption = Layout.auto,
    summary: SummaryOption = False,
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
    console = Console(stderr=output is not CheckOutput.table)
    configure_logging("warning", json=False)
    if compare and output not in (CheckOutput.table, CheckOutput.json):
        raise fail(f"--compare prints a table or json, not {output.value}")
    loaded = load(policy, grants, identities)
    moment = parse_now(now)
    if policies and not compare:
        raise fail("policies to compare are given with --compare")
    if not compare:
        for given, name in ((html, "--html"), (box_ends, "--box-ends"), (select, "--select")):
            if given:
                raise fail(
                    f"{name} belongs to --compare (the options side by side); without it there is nothing to write"
                )
    objects, labels = _objects(source)
    if compare:
        from imagegate.shell.cli.compare import run_compare  # noqa: PLC0415

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
            output=OutputFormat(output.value),
            html_path=html,
            top=top,
            gate=registry_gate(policy) if registry else None,
        )
        return
    gate = registry_gate(policy, remember_failures=True) if registry else None
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
    if output is CheckOutput.json:
        write_json(AuditJson.of(report))
    elif output is not CheckOutput.table:
        write_ci(output, checked, loaded, moment, report_format)
        console.print(report.summary())  # on stderr: the document alone on stdout
    else:
        _render_audit(report, console, by, layout, summary)
        console.print(report.summary())
    if report.denied_objects or report.count(ReportOutcome.ERROR):
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
    import asyncio  # noqa: PLC0415

    configure_logging("warning", json=False)
    console = Console(stderr=output is OutputFormat.json)
    loaded = load(policy, grants)
    moment = dt.datetime.now(dt.UTC)
    wanted = _wanted(images, source, loaded, moment)
    if not wanted:
        raise fail("no images: name some, or give --from a dump")

    found, bases, unread = asyncio.run(_read_images(wanted, loaded, policy, named=bool(images)))
    unread.say()
    if not found:
        raise fail(f"none of the {plural(len(wanted), 'image')} could be read: no report")
    report = layer_report(found, {r: wanted[r] for r in found}, bases, unread.lines())
    if html is not None:
        from imagegate.shell.cli.html_report import render_layer_report  # noqa: PLC0415

        html.write_text(render_layer_report(report, moment))
        console.print(f"wrote {escape(str(html))}")
    if output is OutputFormat.json:
        write_json(report)
    else:
        _render_layers(report, console)
    if unread:  # a report on part of what was asked is not a success
        Console(stderr=True).print(
            f"{plural(len(unread), 'image')} of {len(wanted):,} not read: the totals leave them out"
        )
        raise typer.Exit(EXIT_BAD_INPUT)


def _wanted(images: list[str] | None, source: list[str] | None, loaded: Policy, moment: dt.datetime) -> dict[str, bool]:
    """Reference -> whether it is BYOC: the images named, else those the objects run."""
    if not images:
        return _uses_from(*_objects(source), loaded, moment)
    wanted: dict[str, bool] = {}
    for image in images:
        try:
            ref = parse_docker_ref(image)
        except ReferenceError as exc:
            raise fail(str(exc)) from None
        wanted[str(ref)] = loaded.trusted.first_match(ref) is None
    return wanted


async def _read_images(
    wanted: Mapping[str, bool], loaded: Policy, policy: Path | None, *, named: bool
) -> tuple[dict[str, Any], list[Any], UnreadImages]:
    """Each image's first platform from its registry, the trusted bases, and what could not be read.

    Images the operator ``named`` are asked wherever they are (as ``inspect`` does: the operator,
    not a tenant, chose the registry); images from a dump only from registries the policy names.
    """
    import asyncio  # noqa: PLC0415

    gate = registry_gate(policy)
    found: dict[str, Any] = {}
    unread = UnreadImages()
    try:
        if loaded.base_images.trusted:
            await gate.refresh_bases(loaded)
        with progress_on_terminal(f"reading {len(wanted):,} images", len(wanted)) as advance:

            async def resolve(reference: str) -> Any:
                try:
                    ref = parse_docker_ref(reference)
                    client = gate.client(loaded.registry)
                    return await gate.lookup(
                        loaded.registry, reference, lambda: client.resolve(ref) if named else gate.resolve(loaded, ref)
                    )
                finally:
                    advance(1)

            results = await asyncio.gather(*(resolve(r) for r in wanted), return_exceptions=True)
        for reference, result in zip(wanted, results, strict=True):
            if isinstance(result, RegistryError):
                unread.add(reference, result.kind, str(result))
            elif isinstance(result, BaseException):
                raise result
            elif result.platforms:
                found[reference] = result.platforms[0]
            else:
                unread.add(reference, "platform", f"{reference} offers none of {', '.join(loaded.registry.platforms)}")
        return found, list(gate.bases.versions), unread
    finally:
        await gate.aclose()


def _render_layers(report: LayerReport, console: Console) -> None:
    from rich.table import Table  # noqa: PLC0415

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
