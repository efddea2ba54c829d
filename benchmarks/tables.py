"""BENCHMARKS.md's tables, rendered from the kept result files so no figure is typed by hand.

    python benchmarks/tables.py --write   # rewrite every marked block from the files
    python benchmarks/tables.py --check   # exit 1 naming each block that differs

A block sits between `<!-- table: NAME (from benchmarks/results/FILE.json) -->` and
`<!-- end table -->`. Each bench renders the tables of the file it writes (its TABLES:
NAME → file, renderer, beside the code that makes the figures); BLOCKS gathers them.
Renderers read keys by name only, so a file regenerated with provenance keys on top
renders the same table, plus a `Result:` line naming the commit, date and command the
file records. A renderer that accepts None renders its block before its file exists.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import bench_chaos
import bench_core
import bench_estimate
import bench_imports
import bench_measure
import bench_measure_hooks
import bench_network
import bench_node_work
import bench_projection
import bench_projection_fsdp
import bench_readme
import bench_scale
import bench_sharded
import bench_startup
import bench_switches
import bench_topology
import bench_trace
import bench_worker_memory
from formatting import Renderer, Skip

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "BENCHMARKS.md"
RESULTS = ROOT / "benchmarks" / "results"
BLOCK = re.compile(
    r"(?P<head><!-- table: (?P<name>[\w-]+) \(from benchmarks/results/(?P<file>[\w.-]+)\) -->\n)"
    r"(?P<body>.*?)(?P<end><!-- end table -->)",
    re.DOTALL,
)
BENCHES = (bench_measure, bench_measure_hooks, bench_trace, bench_core, bench_readme,
           bench_topology, bench_network, bench_switches, bench_startup, bench_imports,
           bench_node_work, bench_projection, bench_projection_fsdp, bench_scale, bench_sharded,
           bench_worker_memory, bench_chaos, bench_estimate)  # fmt: skip
BLOCKS: dict[str, tuple[str, Renderer]] = {
    name: entry for bench in BENCHES for name, entry in bench.TABLES.items()
}


def result_line(data: dict) -> str:
    """What the file says made it: `Result: commit X, DATE, `COMMAND`.`"""
    parts = []
    if data.get("describe") or data.get("commit"):
        parts.append(f"commit {data.get('describe') or data['commit']}")
    if data.get("date"):
        parts.append(data["date"])
    if data.get("command"):
        parts.append(f"`{data['command']}`")
    return f"Result: {', '.join(parts)}." if parts else ""


def render(name: str, results: Path = RESULTS) -> str:
    """A block's body: the renderer's tables, then the file's own account of its making."""
    file, renderer = BLOCKS[name]
    path = results / file
    data = json.loads(path.read_text()) if path.exists() else None
    body = renderer(data)
    line = result_line(data or {})
    return f"\n{body}\n\n{line}\n\n" if line else f"\n{body}\n\n"


def blocks(text: str) -> list[re.Match]:
    return list(BLOCK.finditer(text))


def check(text: str, results: Path = RESULTS) -> tuple[list[str], list[str]]:
    """(problems, skipped): each block that differs from its file, or is missing or unknown."""
    problems, skipped, seen = [], [], set()
    for block in blocks(text):
        name, file = block["name"], block["file"]
        seen.add(name)
        if name not in BLOCKS or BLOCKS[name][0] != file:
            problems.append(f"{name}: no renderer for {file} under that name")
            continue
        try:
            if block["body"] != render(name, results):
                problems.append(f"{name}: differs from {file}")
        except Skip as why:
            skipped.append(f"{name}: skipped, {why}")
    problems += [f"{name}: no block in BENCHMARKS.md" for name in BLOCKS if name not in seen]
    return problems, skipped


def write(text: str, results: Path = RESULTS) -> str:
    """The text with every known block rendered afresh (a block that cannot be, as it was)."""

    def fill(block: re.Match) -> str:
        if BLOCKS.get(block["name"], ("",))[0] != block["file"]:
            return block[0]
        try:
            return block["head"] + render(block["name"], results) + block["end"]
        except Skip:
            return block[0]

    return BLOCK.sub(fill, text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true", help="rewrite the blocks from the files")
    mode.add_argument("--check", action="store_true", help="exit 1 if a block differs")
    args = parser.parse_args(argv)
    text = DOC.read_text()
    if args.write:
        DOC.write_text(write(text))
        return 0
    problems, skipped = check(text)
    for line in skipped + problems:
        print(line)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
