"""What is inside images: ``scan`` (packages, licences, content rules) and ``sbom`` (CycloneDX 1.6
or SPDX 2.3 JSON). The files are read from the registry (shell/registry/contents.py); the
inventory and the judgement are the core's (core/contents/).
"""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Mapping, Sequence
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import msgspec
import typer
from rich.console import Console
from rich.markup import escape

from imagegate.core.contents.files import FileSelection, ImageFiles
from imagegate.core.policy import Policy
from imagegate.core.records import Allowance
from imagegate.core.reference import ReferenceError, parse_docker_ref
from imagegate.shell.cli.common import (
    GrantsOption,
    OutputFormat,
    PolicyOption,
    UnreadImages,
    app,
    check_objects,
    fail,
    load,
    plural,
    read_inputs,
    registry_gate,
    write_json,
)
from imagegate.shell.exits import EXIT_BAD_INPUT, EXIT_DENIED
from imagegate.shell.logs import configure_logging
from imagegate.shell.registry.errors import RegistryError

if TYPE_CHECKING:
    from imagegate.core.contents.report import ImageScan

FromOption = Annotated[
    list[str] | None,
    typer.Option("--from", help="A `kubectl get -A -o json` dump (file, dir or -): scan the images it runs."),
]


class SbomFormat(StrEnum):
    cyclonedx = "cyclonedx"
    spdx = "spdx"


def _uses(images: Sequence[str], sources: list[str] | None, loaded: Policy) -> dict[str, tuple[bool, list[str]]]:
    """Reference -> (admitted by a grant, the namespaces running it): the images named, else the dump's."""
    found: dict[str, tuple[bool, list[str]]] = {}
    if images:
        for image in images:
            try:
                ref = parse_docker_ref(image)
            except ReferenceError as exc:
                raise fail(str(exc)) from None
            found[str(ref)] = (loaded.trusted.first_match(ref) is None, [])
        return found
    objects = read_inputs(sources or [], "dump")
    for checked in check_objects(loaded, objects, "default", dt.datetime.now(dt.UTC)):
        for verdict in checked.decision.verdicts:
            if verdict.reference is None:
                continue
            granted, tools = found.get(verdict.reference, (False, []))
            if checked.decision.namespace not in tools:
                tools.append(checked.decision.namespace)
            found[verdict.reference] = (granted or verdict.allowance is Allowance.GRANT, tools)
    return found


async def _read(
    wanted: Mapping[str, FileSelection], loaded: Policy, policy: Path | None, *, named: bool
) -> tuple[dict[str, tuple[str, ImageFiles]], UnreadImages]:
    """Each image's first platform's files; what could not be read. Images the operator named are
    read wherever they are (as ``inspect`` does); images from a dump only from registries the policy names."""
    import asyncio  # noqa: PLC0415

    from imagegate.shell.registry.contents import read_files  # noqa: PLC0415 (the reader: only for these commands)

    gate = registry_gate(policy)
    found: dict[str, tuple[str, ImageFiles]] = {}
    unread = UnreadImages()
    try:
        client = gate.client(loaded.registry)
        scope = None if named else loaded.contact_scope()

        async def one(reference: str) -> dict[str, ImageFiles]:
            return await read_files(client, reference, wanted[reference], loaded.registry.contents, scope=scope)

        results = await asyncio.gather(*(one(r) for r in wanted), return_exceptions=True)
        for reference, result in zip(wanted, results, strict=True):
            if isinstance(result, RegistryError):
                unread.add(reference, str(result.kind), str(result))
            elif isinstance(result, BaseException):
                raise result
            elif result:
                platform, files = next(iter(result.items()))
                found[reference] = (platform, files)
            else:
                unread.add(reference, "platform", f"{reference} offers none of {', '.join(loaded.registry.platforms)}")
        return found, unread
    finally:
        await gate.aclose()


@app.command()
def scan(
    images: Annotated[list[str] | None, typer.Argument(help="Images to scan (or use --from).")] = None,
    source: FromOption = None,
    policy: PolicyOption = None,
    grants: GrantsOption = None,
    html: Annotated[Path | None, typer.Option(help="Write a self-contained HTML report here.")] = None,
    output: Annotated[OutputFormat, typer.Option("--output", "-o")] = OutputFormat.table,
) -> None:
    """What is inside images: packages by ecosystem, licences by class, the content rules judged.

    Exits 1 when an image fails an enforced content rule, 2 when an image could not be read.
    """
    import asyncio  # noqa: PLC0415

    # the parsers and the licence list: loaded by the commands that read images' files
    from imagegate.core.contents.inventory import INVENTORY_FILES  # noqa: PLC0415
    from imagegate.core.contents.report import scan_image  # noqa: PLC0415

    configure_logging("warning", json=False)
    console = Console(stderr=output is OutputFormat.json)
    loaded = load(policy, grants)
    uses = _uses(images or [], source, loaded)
    if not uses:
        raise fail("no images: name some, or give --from a dump")
    rules = {r: loaded.content.rules_for(parse_docker_ref(r), granted=granted) for r, (granted, _) in uses.items()}
    wanted = {r: loaded.content.files(found) | INVENTORY_FILES for r, found in rules.items()}
    read, unread = asyncio.run(_read(wanted, loaded, policy, named=bool(images)))
    unread.say()
    scans = [
        scan_image(reference, platform, files, rules[reference], uses[reference][1])
        for reference, (platform, files) in read.items()
    ]
    if html is not None:
        from imagegate.shell.cli.html_report import render_scan_report  # noqa: PLC0415

        html.write_text(render_scan_report(scans, dt.datetime.now(dt.UTC)))
        console.print(f"wrote {escape(str(html))}")
    if output is OutputFormat.json:
        write_json({"images": [_scan_document(s) for s in scans], "unread": unread.lines()})
    else:
        _render(scans, console)
    if unread:
        raise typer.Exit(EXIT_BAD_INPUT)
    if not all(s.ok for s in scans):
        raise typer.Exit(EXIT_DENIED)


def _scan_document(found: ImageScan) -> dict[str, object]:
    document: dict[str, object] = msgspec.to_builtins(found)
    document["ok"] = found.ok
    document["packages"] = [
        {k: v for k, v in msgspec.to_builtins(p).items() if k in ("ecosystem", "name", "version", "licence", "area")}
        for p in found.packages
    ]
    return document


def _render(scans: Sequence[ImageScan], console: Console) -> None:
    from rich.table import Table  # noqa: PLC0415

    table = Table(header_style="bold")
    for column in ("image", "packages", "licences", "content rules"):
        table.add_column(column, overflow="fold")
    for found in scans:
        packages = ", ".join(f"{n} {e}" for e, n in found.ecosystems.items()) or "none found"
        licences = ", ".join(f"{n} {c}" for c, n in found.licences.items()) or "-"
        verdicts = "\n".join(
            f"{'[green]ok[/]' if v.ok else '[red]fails[/]'} {escape(v.detail)}"
            + ("" if v.ok or v.mode.value == "enforce" else f" ({v.mode.value})")
            for v in found.verdicts
        )
        tools = f"\n({', '.join(found.tools)})" if found.tools else ""
        table.add_row(escape(found.image) + tools, packages, licences, verdicts or "no content rule covers it")
    console.print(table)
    for found in scans:
        for note in found.notes:
            Console(stderr=True, soft_wrap=True).print(f"[yellow]note:[/] {escape(found.image)}: {escape(note)}")


@app.command()
def sbom(
    image: Annotated[str, typer.Argument(help="The image to describe.")],
    policy: PolicyOption = None,
    output_format: Annotated[SbomFormat, typer.Option("--format", "-f")] = SbomFormat.cyclonedx,
    out: Annotated[Path | None, typer.Option("--out", help="Write it here instead of stdout.")] = None,
) -> None:
    """A software bill of materials of an image's packages: CycloneDX 1.6 or SPDX 2.3, JSON."""
    import asyncio  # noqa: PLC0415

    from imagegate.core.contents.inventory import INVENTORY_FILES  # noqa: PLC0415
    from imagegate.core.contents.report import scan_image  # noqa: PLC0415

    configure_logging("warning", json=False)
    loaded = load(policy, None)
    try:
        reference = str(parse_docker_ref(image))
    except ReferenceError as exc:
        raise fail(str(exc)) from None
    read, unread = asyncio.run(_read({reference: INVENTORY_FILES}, loaded, policy, named=True))
    unread.say()
    if reference not in read:
        raise typer.Exit(EXIT_BAD_INPUT)
    from imagegate.shell.cli.sbom_documents import cyclonedx_json, spdx_json  # noqa: PLC0415 (heavy libraries)

    platform, files = read[reference]
    found = scan_image(reference, platform, files, ())
    text = (cyclonedx_json if output_format is SbomFormat.cyclonedx else spdx_json)(found, dt.datetime.now(dt.UTC))
    if out is None:
        sys.stdout.write(text + "\n")
    else:
        out.write_text(text + "\n")
        Console(stderr=True).print(f"wrote {escape(str(out))} ({plural(len(found.packages), 'package')})")
