"""What a training worker's imports cost, one fresh interpreter at a time.

    python benchmarks/bench_imports.py [--repeats 5] [--out benchmarks/results/bench_imports.json]

Each repeat is a fresh `python -X importtime` that imports what a raysim node imports,
in the order a node does: torch and Ray Train's torch support (every Ray Train worker),
raysim's worker side and the built-in loop, then torchvision for ResNet18. Python's own
import timer gives each module's cumulative time (its imports included, each module
counted where it is first imported). `torch._dynamo` is reported apart: torchvision's
`ops` import it, and so does DDP's constructor (`torch._dynamo.utils`), so any DDP
training pays it after its function's first line. Medians over the repeats, one
interpreter alone (no contention), so on the 2-core VM four workers importing at once
take about twice as long each.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

from common import parse, provenance
from formatting import Renderer, median_rows, table

ROOT = Path(__file__).resolve().parent.parent
STAGES = (
    "torch",
    "ray.train.torch",
    "raysim.worker.launchers",
    "raysim.builtin.loop",
    "torchvision",
)
"""Imported in this order; each stage's time is what it adds to the ones before."""
APART = ("torch._dynamo",)


def cumulative_seconds(stderr: str) -> dict[str, float]:
    """Module -> cumulative seconds, from -X importtime's lines (`self | cumulative | name`)."""
    seconds = {}
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, name = line.split("|")
        if cumulative.strip().isdigit():
            seconds[name.strip()] = int(cumulative) / 1e6
    return seconds


def one_repeat() -> dict[str, float]:
    code = "; ".join(f"import {module}" for module in STAGES)
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", code],
                          capture_output=True, text=True, check=True, cwd=ROOT)  # fmt: skip
    seconds = cumulative_seconds(done.stderr)
    return {module: seconds.get(module, 0.0) for module in (*STAGES, *APART)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out")
    args = parse(parser)
    repeats = [one_repeat() for _ in range(args.repeats)]
    medians = {m: statistics.median(r[m] for r in repeats) for m in repeats[0]}
    result = {**provenance(args.allow_dirty), "settings": vars(args), "stages": list(STAGES),
              "median_cumulative_s": medians, "repeats": repeats}  # fmt: skip
    for module, seconds in medians.items():
        print(f"{module:24} {seconds:6.2f} s")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
        print(f"written: {args.out}")


# --- BENCHMARKS.md's tables from this bench's results -------------------------


IMPORT_LABELS = {
    "torch": "torch (every Ray Train worker)",
    "ray.train.torch": "Ray Train's torch support (every Ray Train worker)",
    "raysim.worker.entry": "raysim's worker side",
    "raysim.worker.launchers": "raysim's worker side",
    "raysim.builtin.loop": "the built-in loop",
    "torchvision": "torchvision (ResNet18)",
    "torch._dynamo": "of which torch._dynamo (DDP's constructor imports it too)",
}


def imports(data: dict) -> str:
    repeats = data["repeats"]
    medians = data["median_cumulative_s"]
    labels = {k: v for k, v in IMPORT_LABELS.items() if k in medians}  # entry became launchers
    rows = median_rows(labels, medians, repeats, " s")
    header = [f"import, in a node's order ({len(repeats)} fresh interpreters)",
              "adds (median)", "min–max"]  # fmt: skip
    return table(header, rows)


TABLES: dict[str, tuple[str, Renderer]] = {
    "imports": ("bench_imports.json", imports),
}
"""BENCHMARKS.md block name: (result file, renderer); tables.py gathers them."""


if __name__ == "__main__":
    main()
