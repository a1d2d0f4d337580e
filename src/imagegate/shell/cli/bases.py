"""``imagegate bases``: which running images are built on an old version of a trusted base."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from imagegate.core.bases import (
    BaseRow,
    RunningImage,
    TaggedBase,
    bases_report,
    tools_to_rebuild,
)
from imagegate.core.reference import ReferenceError, parse_docker_ref
from imagegate.core.report import top_owners
from imagegate.core.workloads import ObjectShapeError, image_uses, object_namespace
from imagegate.shell.cli.common import (
    GrantsOption,
    OutputFormat,
    PolicyOption,
    UnreadImages,
    app,
    fail,
    load,
    parse_now,
    plural,
    progress_on_terminal,
    registry_gate,
    write_json,
)
from imagegate.shell.cli.json_docs import BaseRowJson, BasesJson, BaseVersionJson
from imagegate.shell.cli.ops import FromOption, _objects
from imagegate.shell.exits import EXIT_BAD_INPUT, EXIT_DENIED
from imagegate.shell.logs import configure_logging
from imagegate.shell.manifests import SourcedObject
from imagegate.shell.registry.errors import RegistryError


def _users(objects: Sequence[SourcedObject]) -> dict[str, tuple[set[str], set[str]]]:
    """Normalized image reference -> (namespaces, top owners) that run it."""
    owners = top_owners([item.obj for item in objects])
    found: dict[str, tuple[set[str], set[str]]] = {}
    for item, owner in zip(objects, owners, strict=True):
        namespace = object_namespace(item.obj, "default")
        try:
            uses = image_uses(item.obj)
        except ObjectShapeError:
            continue  # check and audit report malformed objects; nothing runs from them
        for use in uses:
            try:
                reference = str(parse_docker_ref(use.image))
            except ReferenceError:
                continue
            tools, tops = found.setdefault(reference, (set(), set()))
            tools.add(namespace)
            tops.add(owner)
    return found


def _named_or_running(images: list[str] | None, source: list[str] | None) -> dict[str, tuple[set[str], set[str]]]:
    """The images named (no tools, no owners), else those the objects run, with their tools and owners."""
    if not images:
        return _users(_objects(source)[0])
    users: dict[str, tuple[set[str], set[str]]] = {}
    for image in images:
        try:
            users[str(parse_docker_ref(image))] = (set(), set())
        except ReferenceError as exc:
            raise fail(str(exc)) from None
    return users


@app.command()
def bases(
    images: Annotated[list[str] | None, typer.Argument(help="Images to report on (or use --from).")] = None,
    source: FromOption = None,
    policy: PolicyOption = None,
    grants: GrantsOption = None,
    html: Annotated[Path | None, typer.Option(help="Also write the report as a self-contained HTML page.")] = None,
    output: Annotated[OutputFormat, typer.Option("--output", "-o")] = OutputFormat.table,
    max_tags: Annotated[int, typer.Option(help="Tags read per base repository.", min=1)] = 500,
    now: Annotated[str | None, typer.Option(help="Ages as of this ISO date/time.")] = None,
) -> None:
    """For every image that runs: the trusted base version it is built on (proved by layers),
    its age, whether a newer version of that base exists, and the tools to rebuild; oldest first.

    Exit code 0 when no image runs on a base that has a newer version, 1 when some do, 2 on bad input.
    """
    import asyncio  # noqa: PLC0415

    console = Console(stderr=output is OutputFormat.json)
    loaded = load(policy, grants)
    moment = parse_now(now)
    if not loaded.base_images.trusted:
        raise fail("the policy names no trusted base images (baseImages.trusted)")
    users = _named_or_running(images, source)
    if not users:
        raise fail("no images: name some, or give --from a dump")

    async def gather() -> tuple[list[RunningImage], list[TaggedBase], list[str], UnreadImages]:
        from imagegate.shell.registry.gate import tagged_versions  # noqa: PLC0415

        configure_logging("warning", json=False)  # the registry client's warnings, for a person
        gate = registry_gate(policy)
        client = gate.client(loaded.registry)
        problems: list[str] = []
        unread = UnreadImages()
        try:
            versions = await tagged_versions(client, loaded.base_images, max_tags, problems)
            with progress_on_terminal(f"reading {len(users):,} images", len(users)) as advance:

                async def resolve(reference: str) -> Any:
                    try:
                        return await gate.lookup(
                            loaded.registry, reference, lambda: client.resolve(parse_docker_ref(reference))
                        )
                    finally:
                        advance(1)

                results = await asyncio.gather(*(resolve(r) for r in users), return_exceptions=True)
            running = []
            for reference, result in zip(users, results, strict=True):
                if isinstance(result, RegistryError):
                    unread.add(reference, result.kind, str(result))
                elif isinstance(result, BaseException):
                    raise result
                elif result.platforms:
                    tools, owners = users[reference]
                    running.append(
                        RunningImage(reference, result.platforms[0], tuple(sorted(tools)), tuple(sorted(owners)))
                    )
                else:
                    unread.add(
                        reference, "platform", f"{reference} offers none of {', '.join(loaded.registry.platforms)}"
                    )
            return running, versions, problems, unread
        finally:
            await gate.aclose()

    running, versions, problems, unread = asyncio.run(gather())
    err = Console(stderr=True, soft_wrap=True)
    for problem in problems:  # the bases' own tags: each is its own cause
        err.print(f"[bold red]error:[/] {escape(problem)}")
    unread.say()
    if not running:
        raise fail(f"none of the {plural(len(users), 'image')} could be read: no report")
    rows = bases_report(running, versions, moment)
    rebuild = tools_to_rebuild(rows)
    if html is not None:
        html.write_text(_page(rows, moment))
        console.print(f"wrote {escape(str(html))}")
    if output is OutputFormat.json:
        write_json(
            BasesJson(
                images=[BaseRowJson.of(row) for row in rows],
                tools_to_rebuild=rebuild,
                base_versions=[BaseVersionJson.of(v) for v in sorted(versions, key=lambda v: (v.repository, v.name))],
                skipped=[*problems, *unread.lines()],
            )
        )
    else:
        _render(rows, console)
        console.print(
            f"{len(rows):,} images; {sum(r.rebuild for r in rows):,} on a base with a newer version, "
            f"run by {plural(len(rebuild), 'tool')}; {sum(r.base is None for r in rows):,} on no known base version"
        )
    if problems or unread:  # a report on part of what was asked is not a success
        err.print(f"{plural(len(unread), 'image')} of {len(users):,} not read, {plural(len(problems), 'base problem')}")
        raise typer.Exit(EXIT_BAD_INPUT)
    if any(r.rebuild for r in rows):
        raise typer.Exit(EXIT_DENIED)


def _page(rows: Sequence[BaseRow], moment: dt.datetime) -> str:
    from imagegate.shell.cli.html_report import render_bases_report  # noqa: PLC0415 (only for --html)

    return render_bases_report(rows, moment)


def _day(moment: dt.datetime | None) -> str:
    return moment.date().isoformat() if moment else "?"


def _render(rows: Sequence[BaseRow], console: Console) -> None:
    from rich.table import Table  # noqa: PLC0415

    table = Table(title="images by the age of their base, oldest first", header_style="bold")
    for column in ("image", "base version", "built", "age (days)", "newer base", "tools"):
        table.add_column(column, overflow="fold", justify="right" if column == "age (days)" else "left")
    for row in rows:
        users = escape(", ".join(row.tools))
        if row.base is None:  # its tools still shown: they are the ones to ask which base they use
            table.add_row(escape(row.image), f"[magenta]none known[/]: {escape(row.note)}", "", "", "", users)
            continue
        newer = f"[bold red]{escape(row.newer.name)}[/] ({_day(row.newer.created)})" if row.newer else "no"
        table.add_row(
            escape(row.image),
            escape(row.base.name),
            _day(row.base.created),
            "?" if row.age_days is None else f"{row.age_days:,}",
            newer,
            f"[bold]{users}[/]" if row.rebuild else users,
        )
    console.print(table)
