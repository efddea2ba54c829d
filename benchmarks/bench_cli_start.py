"""How fast the command answers before any run: `import raysim`, `raysim --help`, a flag
error and a config error, for several source trees side by side.

    python benchmarks/bench_cli_start.py --tree before=<commit> --tree after=<commit> \\
        [--repeats 5] [--out benchmarks/results/bench_cli_start.json]

A tree is a commit (exported with git archive) or a folder as it is, as in bench_ab.py.

Each repeat times every case once in every tree as a fresh process with PYTHONPATH at
that tree; the order of the trees alternates between repeats. `import raysim` is the
total of `python -X importtime`; the others are wall time of the whole process.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import parse, provenance, source_tree

CASES = {
    "help": ["-m", "raysim.cli", "--help"],
    "flag_error": ["-m", "raysim.cli", "run", "--batch-size", "eight"],
    "config_error": ["-m", "raysim.cli", "run", "--config", "no-such-config.yaml"],
}


def import_seconds(tree: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import raysim"],
        capture_output=True, text=True, env=env, check=True, cwd=tree,
    )  # fmt: skip
    last = done.stderr.strip().splitlines()[-1]  # "import time: self | cumulative | raysim"
    return int(last.split("|")[1]) / 1e6


def wall_seconds(tree: Path, args: list[str]) -> float:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    start = time.perf_counter()
    subprocess.run([sys.executable, *args], capture_output=True, env=env, cwd=tree)
    return time.perf_counter() - start


def alternate(trees: dict[str, Path], repeats: int) -> dict[str, dict[str, list[float]]]:
    """Seconds per tree and case, every repeat timing each tree once, the order alternating."""
    times: dict[str, dict[str, list[float]]] = {
        name: {case: [] for case in ["import", *CASES]} for name in trees
    }
    for repeat in range(repeats):
        order = list(trees) if repeat % 2 == 0 else list(reversed(trees))
        for name in order:
            times[name]["import"].append(import_seconds(trees[name]))
            for case, case_args in CASES.items():
                times[name][case].append(wall_seconds(trees[name], case_args))
    return times


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--tree", action="append", required=True, help="name=commit or name=folder, 2 or more"
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", help="also write the results as JSON here")
    args = parse(parser, argv)
    with tempfile.TemporaryDirectory() as scratch:
        sides = {name: source_tree(spec, Path(scratch)) for name, spec in
                 (t.split("=", 1) for t in args.tree)}  # fmt: skip
        times = alternate({name: path for name, (path, _) in sides.items()}, args.repeats)
    summary = {
        name: {
            case: {"median_s": statistics.median(v), "min_s": min(v), "max_s": max(v), "all_s": v}
            for case, v in cases.items()
        }
        for name, cases in times.items()
    }
    for name, cases in summary.items():
        print(name, "  ".join(f"{c} {v['median_s']:.3f} s" for c, v in cases.items()))
    if args.out:
        record = {
            **provenance(args.allow_dirty),
            "trees": {name: words for name, (_, words) in sides.items()},
            "repeats": args.repeats,
            "results": summary,
        }
        Path(args.out).write_text(json.dumps(record, indent=2))
    return summary


if __name__ == "__main__":
    main()
