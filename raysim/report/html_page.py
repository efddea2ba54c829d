"""report.html: the report's blocks as one self-contained page that opens from disk.

Plots are inlined as base64 PNG data URIs and the style sheet is in the page, so the file
can be mailed or attached on its own; its Content-Security-Policy lets it load nothing
from the network.
"""

from __future__ import annotations

import base64
import html
import re
import struct
from pathlib import Path

from raysim.report.document import Block, Bullets, Heading, Images, Table, Text

POLICY = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
"""The page may show its own data: images and its own style, and fetch nothing."""

NUMBER = re.compile(r"^[–\d.,×%→ ]+(MB|GB|ms|s)?$")
"""A table cell that is a figure (right-aligned): 12.3, 0.95×, 4.5%, 3→2, 120 MB, –."""

STYLE = """
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1f2328;
       max-width: 1200px; margin: 0 auto; padding: 24px 32px; }
h1 { font-size: 26px; border-bottom: 1px solid #d0d7de; padding-bottom: 6px; }
h2 { font-size: 20px; margin-top: 32px; border-bottom: 1px solid #d8dee4; padding-bottom: 4px; }
nav { font-size: 14px; } nav a { margin-right: 14px; color: #0969da; text-decoration: none; }
table { border-collapse: collapse; margin: 8px 0 16px; font-size: 14px; }
th, td { border: 1px solid #d0d7de; padding: 4px 10px; }
th { background: #f6f8fa; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tbody tr:nth-child(even) { background: #f9fafb; }
.figures { display: flex; flex-wrap: wrap; gap: 16px; margin: 8px 0 16px; }
figure { margin: 0; flex: 1 1 100%; }
figure.half { flex: 0 1 calc(50% - 8px); }
figure img { max-width: 100%; border: 1px solid #d8dee4; }
figure.half img { width: 100%; }
figcaption { font-size: 13px; color: #59636e; }
"""


def anchor(text: str) -> str:
    """A heading's id: its words in lower case, joined by hyphens."""
    return "-".join(re.findall(r"\w+", text.lower()))


HALF_WIDTH_PX = 800
"""A plot at most this wide shares a row with the next (the 700-px plots go two a row);
a wider one, a timeline, has its row."""


def png_width(data: bytes) -> int:
    """The width in a PNG's header chunk (bytes 16-19, big-endian)."""
    return struct.unpack(">I", data[16:20])[0]


def _cell(value: str, tag: str) -> str:
    numeric = tag == "td" and NUMBER.match(value)
    return f"<{tag}{' class=num' if numeric else ''}>{html.escape(value)}</{tag}>"


def table_html(table: Table) -> str:
    head = "".join(_cell(h, "th") for h in table.header)
    body = "\n".join("<tr>" + "".join(_cell(c, "td") for c in row) + "</tr>" for row in table.rows)
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>"


def figure_html(path: Path) -> str:
    data = path.read_bytes()
    uri = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
    half = ' class="half"' if png_width(data) <= HALF_WIDTH_PX else ""
    return (
        f'<figure id="{anchor(path.stem)}"{half}><img src="{uri}" alt="{html.escape(path.stem)}">'
        f"<figcaption>{html.escape(path.name)}</figcaption></figure>"
    )


def block_html(block: Block, out: Path) -> str:
    match block:
        case Heading(text, level):
            return f'<h{level} id="{anchor(text)}">{html.escape(text)}</h{level}>'
        case Text(text):
            return f"<p>{html.escape(text)}</p>"
        case Bullets(items):
            return "<ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in items) + "</ul>"
        case Table():
            return table_html(block)
        case Images(paths):
            figures = "\n".join(figure_html(out / p.name) for p in paths)
            return f'<div class="figures">\n{figures}\n</div>'
    raise TypeError(f"not a report block: {block!r}")


def contents(blocks: list[Block]) -> str:
    """Links to the page's sections, for a report longer than one screen."""
    links = [
        f'<a href="#{anchor(b.text)}">{html.escape(b.text.split(":")[0])}</a>'
        for b in blocks
        if isinstance(b, Heading) and b.level == 2
    ]
    return f"<nav>{' '.join(links)}</nav>"


def html_page(blocks: list[Block], out: Path) -> str:
    """The whole page; the images are read from `out`, where the report wrote them."""
    title = next((b.text for b in blocks if isinstance(b, Heading)), "raysim report")
    body = [block_html(blocks[0], out), contents(blocks)]
    body += [block_html(b, out) for b in blocks[1:]]
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            f'<meta http-equiv="Content-Security-Policy" content="{POLICY}">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{html.escape(title)}</title>",
            f"<style>{STYLE}</style>",
            "</head>",
            "<body>",
            *body,
            "</body>",
            "</html>",
            "",
        ]
    )
