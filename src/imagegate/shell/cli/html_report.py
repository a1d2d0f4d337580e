"""The reports as self-contained HTML pages: layers (numbers and a stacked bar per image), base
images, and what is inside images (scan).

No external files, fonts or scripts: the page embeds its data as JSON and draws the chart
as SVG with a few lines of inline JavaScript, so it can be mailed, attached to a ticket or
opened offline.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from datetime import datetime

from imagegate.core.bases import BaseRow
from imagegate.core.contents.report import ImageScan
from imagegate.core.report import LayerReport

__all__ = ["render_bases_report", "render_layer_report", "render_scan_report"]


def _mb(value: int) -> str:
    return f"{value / 1_000_000:,.1f} MB" if value >= 100_000 else f"{value:,} B"


PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>imagegate layer report</title>
<style>
 body {{ font: 15px/1.45 system-ui, sans-serif; margin: 2rem; color: #1b1f24; max-width: 72rem; }}
 h1 {{ font-size: 1.5rem; margin-bottom: .2rem; }}
 .muted {{ color: #57606a; }}
 .numbers {{ display: flex; gap: 1rem; flex-wrap: wrap; margin: 1.2rem 0; }}
 .numbers div {{ border: 1px solid #d0d7de; border-radius: 6px; padding: .6rem .9rem; min-width: 11rem; }}
 .numbers b {{ display: block; font-size: 1.3rem; }}
 .legend span {{ display: inline-block; width: .9rem; height: .9rem; vertical-align: -2px; margin: 0 .3rem 0 1rem; }}
 table {{ border-collapse: collapse; margin-top: 1.5rem; }}
 th, td {{ text-align: right; padding: .25rem .7rem; border-bottom: 1px solid #eaeef2; }}
 th:first-child, td:first-child {{ text-align: left; }}
</style>
</head>
<body>
<h1>Image layers: what images in use cost on a node</h1>
<p class="muted">{generated} &middot; {count} images &middot; compressed sizes from the registry manifests</p>
<div class="numbers">
 <div>total, per image<b>{total}</b></div>
 <div>unique layers<b>{unique}</b></div>
 <div>from trusted base images<b>{base}</b></div>
 <div>added by BYOC images (in no trusted image)<b>{byoc}</b></div>
</div>
<p class="legend"><span style="background:#2f81f7"></span>trusted base layers<span style="background:#8c959f"></span>shared with other images<span style="background:#cf222e"></span>own layers (only this image)</p>
<svg id="chart" role="img" aria-label="stacked bar per image: base, shared and own bytes" width="100%"></svg>
<table id="table"><thead><tr><th>image</th><th>kind</th><th>base</th><th>shared</th><th>own</th><th>total</th></tr></thead><tbody></tbody></table>
<script id="data" type="application/json">{data}</script>
<script>
(function () {{
  const images = JSON.parse(document.getElementById("data").textContent);
  const svg = document.getElementById("chart");
  const ns = "http://www.w3.org/2000/svg";
  const label = 340, width = 900, row = 26, max = Math.max(1, ...images.map(i => i.base + i.shared + i.own));
  svg.setAttribute("viewBox", `0 0 ${{label + width + 110}} ${{images.length * row + 10}}`);
  const mb = v => v >= 100000 ? (v / 1e6).toFixed(1) + " MB" : v.toLocaleString() + " B";
  images.forEach((image, n) => {{
    const y = 5 + n * row;
    const text = document.createElementNS(ns, "text");
    text.setAttribute("x", label - 8); text.setAttribute("y", y + 15); text.setAttribute("text-anchor", "end");
    text.setAttribute("font-size", "12"); text.textContent = (image.byoc ? "BYOC  " : "") + image.image;
    svg.appendChild(text);
    let x = label;
    for (const [part, colour] of [["base", "#2f81f7"], ["shared", "#8c959f"], ["own", "#cf222e"]]) {{
      const w = image[part] / max * width;
      const bar = document.createElementNS(ns, "rect");
      bar.setAttribute("x", x); bar.setAttribute("y", y); bar.setAttribute("width", w); bar.setAttribute("height", row - 6);
      bar.setAttribute("fill", colour); bar.setAttribute("class", "bar " + part);
      const title = document.createElementNS(ns, "title"); title.textContent = part + ": " + mb(image[part]);
      bar.appendChild(title); svg.appendChild(bar); x += w;
    }}
    const total = document.createElementNS(ns, "text");
    total.setAttribute("x", x + 6); total.setAttribute("y", y + 15); total.setAttribute("font-size", "12");
    total.textContent = mb(image.base + image.shared + image.own); svg.appendChild(total);
    const tr = document.createElement("tr");
    for (const cell of [image.image, image.byoc ? "BYOC" : "trusted", mb(image.base), mb(image.shared), mb(image.own), mb(image.total)]) {{
      const td = document.createElement("td"); td.textContent = cell; tr.appendChild(td);
    }}
    document.querySelector("#table tbody").appendChild(tr);
  }});
  svg.setAttribute("data-rendered", String(images.length));
}})();
</script>
</body>
</html>
"""


def render_layer_report(report: LayerReport, generated: datetime) -> str:
    data = [
        {
            "image": cost.image,
            "byoc": cost.byoc,
            "base": cost.base_bytes,
            "shared": cost.shared_bytes,
            "own": cost.own_bytes,
            "total": cost.total_bytes,
        }
        for cost in report.images
    ]
    # "</" would end the script element early; JSON allows the escaped form.
    embedded = json.dumps(data).replace("</", "<\\/")
    return PAGE.format(
        generated=html.escape(generated.strftime("%Y-%m-%d %H:%M UTC")),
        count=len(report.images),
        total=_mb(report.total_bytes),
        unique=_mb(report.unique_bytes),
        base=_mb(report.base_bytes),
        byoc=_mb(report.byoc_added_bytes),
        data=embedded,
    )


BASES_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>imagegate base images report</title>
<style>
 body {{ font: 15px/1.45 system-ui, sans-serif; margin: 2rem; color: #1b1f24; max-width: 80rem; }}
 h1 {{ font-size: 1.5rem; margin-bottom: .2rem; }}
 .muted {{ color: #57606a; }}
 table {{ border-collapse: collapse; margin-top: 1.5rem; width: 100%; }}
 th, td {{ text-align: left; padding: .25rem .7rem; border-bottom: 1px solid #eaeef2; vertical-align: top; }}
 /* long image names and tool lists wrap: the page fits a laptop's window, not 1,300 px */
 td:first-child, td:last-child {{ overflow-wrap: anywhere; }}
 td:first-child {{ width: 34%; }}
 td.age {{ text-align: right; }}
 tr.rebuild td {{ background: #fff1f0; }}
 tr.unknown td {{ color: #57606a; }}
</style>
</head>
<body>
<h1>Base images: what to rebuild for security updates</h1>
<p class="muted">{generated} &middot; {count} images &middot; {rebuild} on a base with a newer version,
run by {tools} &middot; bases proved by layers (diff_ids), ages from the base's config</p>
<table id="bases"><thead><tr><th>image</th><th>base version</th><th>built</th><th>age (days)</th><th>newer base</th>
<th>tools</th></tr></thead><tbody>
{rows}
</tbody></table>
</body>
</html>
"""


def _base_day(row: BaseRow) -> str:
    return row.base.created.date().isoformat() if row.base is not None and row.base.created else ""


def render_bases_report(rows: Sequence[BaseRow], generated: datetime) -> str:
    """``imagegate bases`` as one page: a plain table, no scripts, oldest base first."""
    lines = []
    tools: set[str] = set()
    for row in rows:
        image = html.escape(row.image)
        users = html.escape(", ".join(row.tools))
        if row.base is None:  # its tools still listed: they are the ones to ask which base they use
            lines.append(
                f'<tr class="unknown"><td>{image}</td><td colspan="4">{html.escape(row.note)}</td><td>{users}</td></tr>'
            )
            continue
        newer = ""
        if row.newer is not None:
            created = row.newer.created.date().isoformat() if row.newer.created else "?"
            newer = f"{html.escape(row.newer.name)} ({created})"
            tools.update(row.tools)
        age = "?" if row.age_days is None else f"{row.age_days:,}"
        css = ' class="rebuild"' if row.rebuild else ""
        lines.append(
            f"<tr{css}><td>{image}</td><td>{html.escape(row.base.name)}</td><td>{_base_day(row)}</td>"
            f'<td class="age">{age}</td><td>{newer or "no"}</td><td>{users}</td></tr>'
        )
    return BASES_PAGE.format(
        generated=html.escape(generated.strftime("%Y-%m-%d %H:%M UTC")),
        count=len(rows),
        rebuild=sum(row.rebuild for row in rows),
        tools=f"{len(tools):,} tool" + ("" if len(tools) == 1 else "s"),
        rows="\n".join(lines),
    )


SCAN_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>imagegate scan report</title>
<style>
 body {{ font: 15px/1.45 system-ui, sans-serif; margin: 2rem; color: #1b1f24; max-width: 80rem; }}
 h1 {{ font-size: 1.5rem; margin-bottom: .2rem; }}
 .muted {{ color: #57606a; }}
 table {{ border-collapse: collapse; margin-top: 1.5rem; width: 100%; }}
 th, td {{ text-align: left; padding: .25rem .7rem; border-bottom: 1px solid #eaeef2; vertical-align: top; }}
 td {{ overflow-wrap: anywhere; }}
 tr.fails td {{ background: #fff1f0; }}
 ul {{ margin: 0; padding-left: 1.1rem; }}
</style>
</head>
<body>
<h1>What is inside the images</h1>
<p class="muted">{generated} &middot; {count} images &middot; {failing} failing a content rule &middot;
packages from their databases, licences from their metadata (not from reading code)</p>
<table id="scan"><thead><tr><th>image</th><th>tools</th><th>packages</th><th>licences</th>
<th>non-free, unknown</th><th>content rules</th></tr></thead><tbody>
{rows}
</tbody></table>
</body>
</html>
"""


def render_scan_report(scans: Sequence[ImageScan], generated: datetime) -> str:
    """``imagegate scan`` as one page: a plain table, no scripts, failing images marked."""
    lines = []
    for found in scans:
        packages = ", ".join(f"{n} {html.escape(e)}" for e, n in found.ecosystems.items()) or "none found"
        licences = ", ".join(f"{n} {html.escape(c)}" for c, n in found.licences.items()) or "-"
        odd = [*found.non_free, *(f"{name} (unknown)" for name in found.unknown[:20])]
        more = f" and {len(found.unknown) - 20} more unknown" if len(found.unknown) > 20 else ""
        rules = "".join(
            f'<li class="{"ok" if v.ok else "fails"}">{"ok" if v.ok else "fails"}: {html.escape(v.detail)}</li>'
            for v in found.verdicts
        )
        css = "" if found.ok else ' class="fails"'
        lines.append(
            f"<tr{css}><td>{html.escape(found.image)}</td><td>{html.escape(', '.join(found.tools))}</td>"
            f"<td>{packages}</td><td>{licences}</td><td>{html.escape(', '.join(odd))}{more}</td>"
            f"<td><ul>{rules or '<li>no content rule covers it</li>'}</ul></td></tr>"
        )
    return SCAN_PAGE.format(
        generated=html.escape(generated.strftime("%Y-%m-%d %H:%M UTC")),
        count=len(scans),
        failing=sum(not found.ok for found in scans),
        rows="\n".join(lines),
    )
