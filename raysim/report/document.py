"""The report as a list of blocks (headings, text, lists, tables, images), and its markdown.

render.py decides what the report says once, as blocks; report.md is their markdown and
report.html (html_page.py) their HTML, so the two never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2


@dataclass(frozen=True)
class Text:
    """One paragraph of plain text."""

    text: str


@dataclass(frozen=True)
class Bullets:
    items: list[str]


@dataclass(frozen=True)
class Table:
    header: list[str]
    rows: list[list[str]]


@dataclass(frozen=True)
class Images:
    """PNG files written beside the report, shown in this order."""

    paths: list[Path]


Block = Heading | Text | Bullets | Table | Images


def table_markdown(table: Table) -> str:
    lines = ["| " + " | ".join(table.header) + " |", "|" + "---|" * len(table.header)]
    lines += ["| " + " | ".join(row) + " |" for row in table.rows]
    return "\n".join(lines)


def block_markdown(block: Block) -> str:
    match block:
        case Heading(text, level):
            return f"{'#' * level} {text}"
        case Text(text):
            return text
        case Bullets(items):
            return "\n".join(f"- {item}" for item in items)
        case Table():
            return table_markdown(block)
        case Images(paths):
            return "\n".join(f"![{p.stem}]({p.name})" for p in paths)
    raise TypeError(f"not a report block: {block!r}")


def markdown(blocks: list[Block]) -> str:
    """report.md: the blocks one after another, a blank line between them."""
    return "\n\n".join(block_markdown(b) for b in blocks) + "\n"
