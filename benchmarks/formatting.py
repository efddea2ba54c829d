"""The cells and tables of BENCHMARKS.md's generated blocks, shared by the benches' renderers.

Each bench renders the tables of the file it writes (its TABLES: block name → file,
renderer); tables.py gathers them and rewrites or checks the blocks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Renderer = Callable[[Any], str]
"""A result file's data (None where a block's file is not measured yet) → the block's text."""


MINUS = "\u2212"


class Skip(Exception):
    """A file that cannot give its block yet (an older shape): the block stays as it is."""


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = [header, ["---"] * len(header), *rows]
    return "\n".join("| " + " | ".join(cells) + " |" for cells in lines)


def num(value: float, digits: int) -> str:
    return f"{value:.{digits}f}"


def signed(value: float, digits: int) -> str:
    """With a typographic minus, as the prose writes negative figures."""
    text = f"{value:+.{digits}f}"
    return text.replace("-", MINUS)


def span(low: float, high: float, digits: int, unit: str = "") -> str:
    """`low–high`, or one figure where both round the same."""
    low_text, high_text = num(low, digits), num(high, digits)
    text = low_text if low_text == high_text else f"{low_text}–{high_text}"
    return text + unit


def median_span(median: float, low: float, high: float, digits: int) -> str:
    return f"{num(median, digits)} ({span(low, high, digits)})"


def paired_cell(ratio: dict) -> str:
    """A paired ratio's median with its range (3 digits), as bench_*.py keep them."""
    return median_span(ratio["median"], ratio["min"], ratio["max"], 3)


def thousands(value: float) -> str:
    return f"{value:,.0f}"


def each(values: list[float], digits: int, unit: str = "") -> str:
    return " / ".join(num(v, digits) for v in values) + unit


def times_ten(value: float) -> str:
    """2 significant figures as `a.b × 10⁻ⁿ`."""
    mantissa, exponent = f"{value:.1e}".split("e")
    power = str(int(exponent)).translate(str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹"))
    return f"{mantissa} × 10{power}"


def median_rows(labels: dict[str, str], medians: dict, repeats: list[dict], unit: str) -> list:
    """A row per key of labels: its label, its median and its min–max over the repeats."""
    return [
        [label, f"{medians[key]:.2f}{unit}",
         span(min(r[key] for r in repeats), max(r[key] for r in repeats), 2, unit)]
        for key, label in labels.items()
    ]  # fmt: skip


def dig(data: Any, path: tuple[str | int, ...]) -> Any:
    for key in path:
        data = data[key]
    return data
