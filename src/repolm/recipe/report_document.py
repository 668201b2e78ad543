"""The report as a list of blocks, rendered twice: one self-contained HTML page and one Markdown file.

A report is built from a few block kinds (`Heading`, `Paragraph`, `Note`, `Table`, `Chart`, `Comparison`)
holding plain text. `render_html` escapes every string (`html.escape`) and embeds each chart as a base64 PNG data
URI, with plain CSS in the page and a Content-Security-Policy that allows no network access and no script: the page
shows the same thing offline, from a mail attachment or a file:// URL. `render_markdown` gives the same content as
Markdown, each chart as a PNG file in `report_files/` linked relatively (it returns the files for the caller to
write); text in tables and paragraphs has `&`, `<` and `>` written as entities, so a file name or a sample cannot
inject markup into a Markdown viewer either, and sample texts go in fences longer than any backtick run inside them.

Not handled here: what the report says (`repolm.recipe.report`) and the charts' drawing
(`repolm.recipe.report_charts`).
"""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass, field

CHART_FOLDER = "report_files"

_NUMERIC_CELL = re.compile(r"^[-+]?[\d,]*\.?\d+(e[-+]?\d+)?( ?%| s| min| h)?$")


@dataclass(frozen=True)
class Heading:
    """A section title; level 2 headings are the page's sections and get an entry in its table of contents."""

    level: int
    text: str
    anchor: str | None = None


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class Note:
    """Something that is not there (a stage not run, a missing file): shown as a highlighted line."""

    text: str


@dataclass(frozen=True)
class Table:
    """Rows of text cells; `kind` is the HTML table's class (e.g. "figures", "headline")."""

    header: list[str]
    rows: list[list[str]]
    kind: str = ""


@dataclass(frozen=True)
class Chart:
    """A PNG image: `name` is its file name in `report_files/` (without .png) and its `data-chart` in the page."""

    name: str
    png: bytes
    caption: str


@dataclass(frozen=True)
class Comparison:
    """A sample: context texts shown one above the other, then texts shown side by side (model and real)."""

    title: str
    context: list[tuple[str, str]] = field(default_factory=list)
    panes: list[tuple[str, str]] = field(default_factory=list)


Block = Heading | Paragraph | Note | Table | Chart | Comparison


# -----------------------------------------------------------------------------
# HTML

CSS = """
:root { color-scheme: light; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       margin: 0; background: #f6f7f9; color: #1d2329; line-height: 1.45; }
main { max-width: 1180px; margin: 0 auto; padding: 1.5rem 2rem 4rem; background: #fff; }
h1 { font-size: 1.7rem; margin-bottom: 0.2rem; }
h2 { font-size: 1.35rem; border-bottom: 2px solid #d5dae0; padding-bottom: 0.25rem; margin-top: 2.4rem; }
h3 { font-size: 1.1rem; margin-top: 1.6rem; }
h4 { font-size: 1rem; margin-top: 1.2rem; }
nav ol { columns: 2; padding-left: 1.4rem; }
a { color: #1565c0; }
.table-wrap { overflow-x: auto; margin: 0.6rem 0 1rem; }
table { border-collapse: collapse; font-size: 0.9rem; }
th, td { border: 1px solid #d5dae0; padding: 0.25rem 0.6rem; text-align: left; vertical-align: top; }
th { background: #eef1f4; }
tbody tr:nth-child(even) { background: #fafbfc; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.yes { color: #1b5e20; font-weight: 600; }
td.no { color: #b71c1c; font-weight: 600; }
p.note { background: #fff8e1; border-left: 4px solid #ffb300; padding: 0.4rem 0.8rem; }
figure.chart { margin: 0.8rem 0 1.2rem; }
figure.chart img { max-width: 100%; height: auto; border: 1px solid #e3e7eb; }
figure.chart figcaption { font-size: 0.85rem; color: #5f6b76; }
pre { background: #f3f5f7; border: 1px solid #e3e7eb; padding: 0.5rem 0.7rem; overflow: auto; max-height: 28rem;
      font-size: 0.82rem; margin: 0.2rem 0 0.6rem; white-space: pre; }
.sample { border: 1px solid #d5dae0; border-radius: 4px; padding: 0.2rem 0.9rem 0.6rem; margin: 1rem 0; }
.sample h3 { margin-top: 0.6rem; font-size: 1rem; }
.pair { display: grid; grid-template-columns: 1fr 1fr; gap: 0.8rem; }
.label { font-size: 0.8rem; font-weight: 600; color: #5f6b76; margin-top: 0.4rem; }
"""

CONTENT_SECURITY_POLICY = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


def _escape(text: str) -> str:
    return html.escape(str(text), quote=True)


def _cell_html(text: str, column: str) -> str:
    classes = []
    if _NUMERIC_CELL.match(text.strip()):
        classes.append("num")
    if column.lower().startswith("beats"):
        if text == "yes":
            classes.append("yes")
        elif text.startswith("no"):
            classes.append("no")
    attribute = f' class="{" ".join(classes)}"' if classes else ""
    return f"<td{attribute}>{_escape(text)}</td>"


def _table_html(table: Table) -> str:
    kind = f' class="{_escape(table.kind)}"' if table.kind else ""
    head = "".join(f"<th>{_escape(cell)}</th>" for cell in table.header)
    body = "\n".join(
        "<tr>" + "".join(_cell_html(cell, column) for cell, column in zip(row, table.header, strict=False)) + "</tr>"
        for row in table.rows
    )
    table_html = f"<table{kind}>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>"
    return f'<div class="table-wrap">{table_html}</div>'


def _pre_html(label: str, text: str) -> str:
    return f'<div><div class="label">{_escape(label)}</div><pre>{_escape(text)}</pre></div>'


def _block_html(block: Block) -> str:
    if isinstance(block, Heading):
        anchor = f' id="{_escape(block.anchor)}"' if block.anchor else ""
        return f"<h{block.level}{anchor}>{_escape(block.text)}</h{block.level}>"
    if isinstance(block, Paragraph):
        return f"<p>{_escape(block.text)}</p>"
    if isinstance(block, Note):
        return f'<p class="note">{_escape(block.text)}</p>'
    if isinstance(block, Table):
        return _table_html(block)
    if isinstance(block, Chart):
        data = base64.b64encode(block.png).decode("ascii")
        return (
            f'<figure class="chart" data-chart="{_escape(block.name)}">'
            f'<img src="data:image/png;base64,{data}" alt="{_escape(block.caption)}">'
            f"<figcaption>{_escape(block.caption)}</figcaption></figure>"
        )
    if isinstance(block, Comparison):
        context = "".join(_pre_html(label, text) for label, text in block.context)
        panes = "".join(_pre_html(label, text) for label, text in block.panes)
        return f'<div class="sample"><h3>{_escape(block.title)}</h3>{context}<div class="pair">{panes}</div></div>'
    raise TypeError(f"not a report block: {block!r}")


def render_html(title: str, subtitle: str, blocks: list[Block]) -> str:
    """The whole page: one file, no network (styles inline, images as data URIs), every string escaped."""
    contents = "\n".join(
        f'<li><a href="#{_escape(block.anchor)}">{_escape(block.text)}</a></li>'
        for block in blocks
        if isinstance(block, Heading) and block.level == 2 and block.anchor
    )
    body = "\n".join(_block_html(block) for block in blocks)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CONTENT_SECURITY_POLICY}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_escape(title)}</title>
<style>{CSS}</style>
</head>
<body>
<main>
<h1>{_escape(title)}</h1>
<p>{_escape(subtitle)}</p>
<nav><ol>
{contents}
</ol></nav>
{body}
</main>
</body>
</html>
"""


# -----------------------------------------------------------------------------
# Markdown


def markdown_text(text: str) -> str:
    """Prose for Markdown: markup characters as entities, so no text turns into HTML in a viewer."""
    return html.escape(str(text), quote=False)


def _markdown_cell(text: str) -> str:
    return " ".join(markdown_text(text).replace("|", "\\|").split()) or " "


def _fence(text: str) -> str:
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}\n{text}{'' if text.endswith(chr(10)) else chr(10)}{fence}"


def _block_markdown(block: Block, charts: dict[str, bytes]) -> str:
    if isinstance(block, Heading):
        return "#" * block.level + " " + markdown_text(block.text)
    if isinstance(block, Paragraph):
        return markdown_text(block.text)
    if isinstance(block, Note):
        return "> " + markdown_text(block.text)
    if isinstance(block, Table):
        lines = ["| " + " | ".join(map(_markdown_cell, block.header)) + " |"]
        lines.append("|" + "|".join("---" for _ in block.header) + "|")
        lines += ["| " + " | ".join(map(_markdown_cell, row)) + " |" for row in block.rows]
        return "\n".join(lines)
    if isinstance(block, Chart):
        file_name = f"{block.name}.png"
        charts[file_name] = block.png
        return f"![{markdown_text(block.caption)}]({CHART_FOLDER}/{file_name})"
    if isinstance(block, Comparison):
        parts = [f"### {markdown_text(block.title)}"]
        for label, text in [*block.context, *block.panes]:
            parts += [f"**{markdown_text(label)}**", _fence(text)]
        return "\n\n".join(parts)
    raise TypeError(f"not a report block: {block!r}")


def render_markdown(title: str, subtitle: str, blocks: list[Block]) -> tuple[str, dict[str, bytes]]:
    """The Markdown text and the chart files it links ({file name in report_files/: PNG bytes})."""
    charts: dict[str, bytes] = {}
    parts = [f"# {markdown_text(title)}", markdown_text(subtitle)]
    parts += [_block_markdown(block, charts) for block in blocks]
    return "\n\n".join(parts).rstrip() + "\n", charts
