"""``imagegate audit --compare``: several policies against what runs, side by side.

Each argument is a policy file or one of the presets (``closed``, ``byoc``, ``time-boxed``,
``selected``: :mod:`imagegate.core.compare`). The output is one table (or JSON, or a
self-contained HTML page with ``--html``) of what each option would deny: objects, findings
per rule, and objects per tool. With ``--registry`` each option's registry questions (base
images, signatures, attestations, content) are answered first, as ``check --registry`` does;
offline, the objects denied only for want of such an answer are counted apart.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import html
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from imagegate.core.compare import PRESETS, Comparison, Option, Subject, compare, judge, preset_options
from imagegate.core.policy import Policy
from imagegate.core.records import NO_ANSWERS, Answers, Webhook
from imagegate.core.workloads import object_namespace
from imagegate.shell.cli.common import OutputFormat, day_not_past, fail, load, namespace_labels_in, write_json
from imagegate.shell.cli.json_docs import CompareJson
from imagegate.shell.exits import EXIT_DENIED
from imagegate.shell.manifests import SourcedObject
from imagegate.shell.registry.answerers import answer
from imagegate.shell.registry.gate import RegistryGate

__all__ = ["render_comparison_html", "run_compare"]


def _subjects(objects: list[SourcedObject], labels: Mapping[str, Mapping[str, str]]) -> list[Subject]:
    known = {**labels, **namespace_labels_in(objects)}
    found = []
    for item in objects:
        if item.obj.get("kind") == "Namespace":
            continue  # its labels are read above; a Namespace runs nothing
        namespace = object_namespace(item.obj, "default")
        found.append(Subject(namespace, item.obj, known.get(namespace)))
    return found


def _options(
    names: list[str],
    base: Policy,
    now: dt.datetime,
    subjects: list[Subject],
    grants: Path | None,
    identities: Path | None,
    box_ends: dt.date,
    selected: list[str],
) -> list[Option]:
    namespaces = {s.namespace for s in subjects if base.namespaces.governs(s.namespace, s.labels)}
    options: list[Option] = []
    for name in names:
        path = Path(name)
        if name in PRESETS and not path.exists():
            options.extend(preset_options(name, base, now, namespaces, box_ends=box_ends, selected=selected))
        elif path.is_file():
            options.append(Option(path.name, load(path, grants, identities), now))
        else:
            raise fail(f"{name!r} is neither a policy file nor a preset ({', '.join(PRESETS)})")
    return options


async def _answered(options: Sequence[Option], subjects: Sequence[Subject], gate: RegistryGate) -> list[Option]:
    """Each option with the registry's answers to what its decisions ask (one gate: a question
    several options or objects ask is looked up once)."""
    answered = []
    try:
        for option in options:
            # the questions do not depend on pod security: judge the images only
            asking = replace(option, policy=replace(option.policy, pod_security=None))
            found = NO_ANSWERS
            for subject in subjects:
                decision = judge(replace(asking, answers=found), subject)
                if any(Webhook.CHECK in q.webhooks and q not in found.found for q in decision.questions):
                    found = await answer(gate, option.policy, decision, webhook=Webhook.CHECK, earlier=found)
            answered.append(replace(option, answers=Answers(found.found)))
    finally:
        await gate.aclose()
    return answered


def _render_table(table: Comparison, console: Console, top: int) -> None:
    from rich.table import Table  # noqa: PLC0415

    out = Table(title="what each option would deny", header_style="bold", show_lines=False)
    out.add_column("", overflow="fold")
    for label in table.labels:
        out.add_column(escape(label), justify="right", overflow="fold")
    out.add_row("objects denied", *(f"{n:,}" for n in table.denied))
    out.add_row("tools with a denial", *(f"{n:,}" for n in table.tools_denied()))
    out.add_row("objects admitted with a warning", *(f"{n:,}" for n in table.warned))
    if any(table.unread):
        out.add_row(UNREAD_ROW, *(f"{n:,}" for n in table.unread))
    reference = escape(table.labels[table.reference]) if table.labels else ""
    out.add_row(f"objects newly run (vs {reference})", *(f"{i.objects:,}" for i in table.lets_in))
    out.add_row(f"tools newly running (vs {reference})", *(f"{len(i.tools):,}" for i in table.lets_in))
    out.add_row(f"registries let in (vs {reference})", *(f"{len(i.registries):,}" for i in table.lets_in))
    if any(i.if_proved for i in table.lets_in):
        out.add_row(f"{IF_PROVED_ROW} (vs {reference})", *(f"{i.if_proved:,}" for i in table.lets_in))
    out.add_section()
    for rule, counts in table.rules.items():
        out.add_row(f"rule {escape(rule)}", *(f"{n:,}" for n in counts))
    out.add_section()
    for namespace, counts in list(table.namespaces.items())[:top]:
        out.add_row(escape(namespace), *(f"{n:,}" if n else "" for n in counts))
    console.print(out)
    hidden = len(table.namespaces) - top
    console.print(
        f"{table.tools:,} tools, {table.objects:,} objects, {max(table.governed, default=0):,} governed; "
        + (f"the time box ends {table.box_ends.isoformat()}; " if table.box_ends else "")
        + (
            f"{hidden:,} more tools with denials (--top, -o json or --html for all)"
            if hidden > 0
            else "all tools shown"
        )
    )
    if any(table.unread):
        console.print(UNREAD_NOTE)


# Said alike by the table and the page: the objects a registry answer would settle.
UNREAD_ROW = "objects denied only for want of a registry answer"
IF_PROVED_ROW = "objects that would newly run once their images prove themselves"
UNREAD_NOTE = (
    "Some objects are denied only because their images were not read (base image, signatures, "
    "attestations or content unverified): run with --registry to read them."
)


PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>imagegate: the options compared</title>
<style>
 body {{ font: 15px/1.45 system-ui, sans-serif; margin: 2rem; color: #1b1f24; max-width: 90rem; }}
 .muted {{ color: #57606a; }}
 table {{ border-collapse: collapse; margin: 1rem 0 2rem; }}
 th, td {{ text-align: right; padding: .25rem .7rem; border-bottom: 1px solid #eaeef2; vertical-align: top; }}
 th:first-child, td:first-child {{ text-align: left; }}
 td.deny {{ background: #ffebe9; }}
 td.in {{ text-align: left; }}
 td small {{ display: block; color: #57606a; }}
 details {{ margin: 1rem 0; }}
 summary {{ cursor: pointer; font-weight: 600; }}
</style>
</head>
<body>
<h1>Which option? What each one would deny and let in</h1>
<p class="muted">{summary}</p>
<section id="options">
<h2>The options</h2>
<dl>
{options}
</dl>
</section>
<section id="changes">
<h2>What the choice changes</h2>
<p class="muted">The totals, and the rules whose denials differ between options.</p>
<table>
<tr><th></th>{heads}</tr>
{changes}
</table>
<h3>Tools the choice changes ({tools_changed})</h3>
<table>
<tr><th>namespace</th>{heads}</tr>
{tool_rows}
</table>
</section>
<section id="lets-in">
<h2>What each option lets in</h2>
<p class="muted">Compared with <b>{reference}</b>: what it denies and the option admits, that would newly run.</p>
<table>
<tr><th></th>{heads}</tr>
{lets_in}
</table>
</section>
<section id="same">
<h2>The same under every option</h2>
<details>
<summary>{same_count} rows the same under every option ({same_rules} rules, {same_tools} tools)</summary>
<table>
<tr><th></th>{heads}</tr>
{same_rows}
</table>
</details>
</section>
</body>
</html>
"""


def _list_cell(kind: str, items: tuple[str, ...], shown: int = 20) -> str:
    """A cell naming what an option lets in: the first few, the rest behind a fold."""
    if not items:
        return f'<td class="in" data-{kind}="0">none</td>'
    names = [html.escape(item) for item in items]
    text = "<br>".join(names[:shown])
    if len(names) > shown:
        text += f"<details><summary>{len(names) - shown:,} more</summary>{'<br>'.join(names[shown:])}</details>"
    return f'<td class="in" data-{kind}="{len(items)}"><b>{len(items):,}</b><br>{text}</td>'


def render_comparison_html(table: Comparison, generated: dt.datetime) -> str:
    """One self-contained page: no scripts, no external files. What differs first, the rest folded."""
    heads = "".join(f"<th>{html.escape(label)}</th>" for label in table.labels)

    def row(name: str, counts: list[int], notes: list[list[str]] | None = None) -> str:
        cells = []
        for index, count in enumerate(counts):
            note = f"<small>{html.escape(', '.join(notes[index]))}</small>" if notes and notes[index] else ""
            cells.append(f'<td class="{"deny" if count else ""}">{count:,}{note}</td>')
        return f"<tr><td>{html.escape(name)}</td>{''.join(cells)}</tr>"

    changes = [row("objects denied", table.denied), row("tools with a denial", table.tools_denied())]
    changes.append(row("objects admitted with a warning", table.warned))
    if any(table.unread):
        changes.append(row(UNREAD_ROW, table.unread))
    changes.extend(row(f"rule {rule}", counts) for rule, counts in table.rules_differing().items())
    differing_tools = table.namespaces_differing()
    tool_rows = [row(ns, counts, table.namespace_rules.get(ns)) for ns, counts in differing_tools.items()]
    lets_in = [
        "<tr><td>objects that would newly run</td>"
        + "".join(f'<td data-objects="{i.objects}">{i.objects:,}</td>' for i in table.lets_in)
        + "</tr>"
    ]
    for kind, title in (("tools", "tools"), ("registries", "registries"), ("images", "images")):
        cells = "".join(_list_cell(kind, getattr(i, kind)) for i in table.lets_in)
        lets_in.append(f"<tr><td>{title}</td>{cells}</tr>")
    if any(i.if_proved for i in table.lets_in):
        lets_in.append(
            f"<tr><td>{html.escape(IF_PROVED_ROW)}</td>"
            + "".join(f'<td data-if-proved="{i.if_proved}">{i.if_proved:,}</td>' for i in table.lets_in)
            + "</tr>"
        )
    same_rules, same_tools = table.rules_same(), table.namespaces_same()
    same_rows = [row(f"rule {rule}", counts) for rule, counts in same_rules.items()]
    same_rows.extend(row(ns, counts, table.namespace_rules.get(ns)) for ns, counts in same_tools.items())
    options = [
        f"<dt><b>{html.escape(label)}</b></dt><dd>{html.escape(sentence)}</dd>"
        for label, sentence in zip(table.labels, table.descriptions, strict=True)
    ]
    box = f"; the time box ends {table.box_ends.isoformat()}" if table.box_ends else ""
    summary = (
        f"{table.tools:,} tools in total, {table.objects:,} objects, {max(table.governed, default=0):,} governed{box}; "
        f"generated {generated.strftime('%Y-%m-%d %H:%M UTC')} by imagegate audit --compare"
    )
    if any(table.unread):
        summary += ". " + UNREAD_NOTE
    return PAGE.format(
        summary=html.escape(summary),
        options="\n".join(options),
        heads=heads,
        changes="\n".join(changes),
        tools_changed=f"{len(differing_tools):,}",
        tool_rows="\n".join(tool_rows),
        reference=html.escape(table.labels[table.reference] if table.labels else ""),
        lets_in="\n".join(lets_in),
        same_count=f"{len(same_rows):,}",
        same_rules=f"{len(same_rules):,}",
        same_tools=f"{len(same_tools):,}",
        same_rows="\n".join(same_rows),
    )


def run_compare(
    names: list[str],
    *,
    base: Policy,
    objects: list[SourcedObject],
    labels: Mapping[str, Mapping[str, str]],
    now: dt.datetime,
    grants: Path | None,
    identities: Path | None,
    box_ends: str | None,
    selected: list[str],
    output: OutputFormat,
    html_path: Path | None,
    top: int,
    gate: RegistryGate | None = None,
) -> None:
    """The comparison, printed (and written as HTML); exit 1 when any option denies anything.
    With ``gate``, each option's registry questions are answered first."""
    if not names:
        raise fail(f"--compare needs policies to compare: files, or presets ({', '.join(PRESETS)})")
    ends = (
        day_not_past("--box-ends", box_ends, now, "the time-boxed option would already be over")
        if box_ends
        else (now + dt.timedelta(days=90)).date()
    )
    subjects = _subjects(objects, labels)
    options = _options(names, base, now, subjects, grants, identities, ends, selected)
    if gate is not None:
        options = asyncio.run(_answered(options, subjects, gate))
    table = compare(options, subjects)
    console = Console(stderr=output is OutputFormat.json)
    if html_path is not None:
        try:
            html_path.write_text(render_comparison_html(table, now))
        except OSError as exc:
            raise fail(f"cannot write {html_path}: {exc.strerror}") from None
        console.print(f"wrote {escape(str(html_path))}")
    if output is OutputFormat.json:
        write_json(CompareJson.of(table))
    else:
        _render_table(table, console, top)
    if any(table.denied):
        raise typer.Exit(EXIT_DENIED)
