"""``imagegate contents``: an image's files, read from its registry as the content rules read them."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from imagegate.core.contents.files import FileSelection, ImageFiles, container_path_error
from imagegate.shell.cli.common import OutputFormat, PolicyOption, app, fail, load, registry_options, write_json
from imagegate.shell.cli.json_docs import ContentsJson, KeptFileJson, PlatformFilesJson
from imagegate.shell.logs import configure_logging


@app.command()
def contents(
    image: Annotated[str, typer.Argument(help="An image reference, e.g. ghcr.io/org/app:1.2")],
    file: Annotated[
        list[str] | None, typer.Option("--file", "-f", help="An absolute path to keep, e.g. /etc/nsswitch.conf.")
    ] = None,
    pattern: Annotated[
        list[str] | None,
        typer.Option(
            "--pattern", "-p", help="A shell pattern over whole paths ('*' crosses '/'): /usr/share/doc/*/copyright."
        ),
    ] = None,
    show: Annotated[bool, typer.Option("--show", help="Print each kept file's content too (text files).")] = False,
    policy: PolicyOption = None,
    platform: Annotated[
        list[str] | None,
        typer.Option(help="Platforms to read, os/arch[/variant] (default: the policy's registry.platforms)."),
    ] = None,
    ca_file: Annotated[Path | None, typer.Option(help="CA bundle for the registry's TLS.", dir_okay=False)] = None,
    output: Annotated[OutputFormat, typer.Option("--output", "-o", help="table or json.")] = OutputFormat.table,
) -> None:
    """Read an image's files from its registry: every layer streamed and verified, whiteouts and
    links applied as the container sees them; print the kept files (registry.contents bounds the read)."""
    import asyncio  # noqa: PLC0415

    from imagegate.core.reference import ReferenceError, parse_docker_ref  # noqa: PLC0415
    from imagegate.shell.registry.contents import ContentReader  # noqa: PLC0415
    from imagegate.shell.registry.errors import RegistryError  # noqa: PLC0415
    from imagegate.shell.registry.gate import client_for  # noqa: PLC0415

    configure_logging("warning", json=False)
    wanted = list(file or ())
    if not wanted and not pattern:
        raise fail("name the files to keep: --file PATH or --pattern GLOB (at least one)")
    for path in wanted:
        why = container_path_error(path.rstrip("/"))
        if why is not None:
            raise fail(f"--file {why}")
    selection = FileSelection(frozenset(p.rstrip("/") for p in wanted), tuple(pattern or ()))
    loaded = load(policy, None)
    config = registry_options(loaded.registry, platform, ca_file)
    try:
        ref = parse_docker_ref(image)
    except ReferenceError as exc:
        raise fail(str(exc)) from None

    async def run() -> dict[str, ImageFiles]:
        async with client_for(config, policy.parent if policy else None) as client:
            return await ContentReader(client, config.contents).read(ref, selection)

    try:
        found = asyncio.run(run())
    except RegistryError as exc:
        raise fail(f"{image}: {exc}") from None
    document = ContentsJson(
        str(ref),
        [
            PlatformFilesJson(
                platform,
                list(files.layers),
                files.entries,
                [_kept(path, data, show) for path, data in sorted(files.files.items())],
            )
            for platform, files in found.items()
        ],
    )
    if output is OutputFormat.json:
        write_json(document)
        return
    _print(document, show)


def _kept(path: str, data: bytes, show: bool) -> KeptFileJson:
    text = None
    if show:
        try:
            text = data.decode()
        except UnicodeDecodeError:
            text = None
    return KeptFileJson(path, len(data), hashlib.sha256(data).hexdigest(), text)


def _print(document: ContentsJson, show: bool) -> None:
    from rich.table import Table  # noqa: PLC0415

    console = Console()
    console.print(f"[bold]{escape(document.reference)}[/]")
    for platform in document.platforms:
        table = Table(
            title=f"{platform.platform}: {len(platform.layers)} layers, {platform.entries:,} entries walked",
            header_style="bold",
        )
        table.add_column("path")
        table.add_column("bytes", justify="right")
        table.add_column("sha256")
        for kept in platform.files:
            table.add_row(escape(kept.path), f"{kept.size:,}", kept.sha256[:16])
        console.print(table)
        if not platform.files:
            console.print("no file of the image is one of those asked for")
        if show:
            for kept in platform.files:
                console.rule(escape(kept.path))
                console.print(escape(kept.text) if kept.text is not None else "(not UTF-8 text)", highlight=False)
