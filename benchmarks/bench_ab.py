"""A/B: the same raysim run from several source trees, alternating, in one session.

    python benchmarks/bench_ab.py --tree before=<commit> --tree after=<commit> \\
        [--nodes 4] [--epochs 3] [--repeats 3] [--out FILE] [-- extra raysim run flags]

A tree is a commit (its files exported with git archive into a temporary folder) or a
folder as it is. A finished comparison is kept as its result file, which records this
command; BENCHMARKS.md names each one.

Each repeat runs every tree once, the order alternating between repeats (before, after;
after, before; ...), as a fresh `raysim run` process with PYTHONPATH at that tree, so
the driver and the Ray workers it starts import that tree's raysim. Figures:
steady-state samples/s (median of the epochs after the first), the median over repeats
with the range, the median training-memory peak per node, and each tree's paired ratio
to the first tree (same repeat), median with the range; the time to the first step
(summary.json) and the command's wall time (what a user waits for), each with its paired
difference to the first. This is how a change's speed-up
is measured here: the machine drifts by more than most changes, so only side-by-side
runs compare.
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

from raysim.rundir import epoch_lines, rank_lines, read_lines


def run_tree(tree: Path, nodes: int, epochs: int, run_dir: str, extra: list[str]) -> dict:
    name = f"ab-{tree.name}-{nodes}-{time.time_ns()}"
    command = [
        sys.executable, "-m", "raysim.cli", "run", "--num-nodes", str(nodes),
        "--batch-size", "8", "--num-epochs", str(epochs), "--image-size", "32",
        "--device", "cpu", "--run-dir", run_dir, "--run-name", name, *extra,
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(tree)}
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, env=env, cwd=run_dir)
    wall_s = time.perf_counter() - start
    records = read_lines(Path(run_dir) / name / "metrics.jsonl")
    rates = [e["samples_per_s"] for e in epoch_lines(records)]
    peaks = [r["memory_peak_bytes"] for r in rank_lines(records) if "memory_peak_bytes" in r]
    summary = json.loads((Path(run_dir) / name / "summary.json").read_text())
    return {
        "first_step_s": summary["time_to_first_step_s"],
        "wall_s": wall_s,
        "rates": rates,
        "steady": statistics.median(rates[1:] or rates),
        "memory_peak_mb": statistics.median(peaks) / 1e6 if peaks else None,
    }


def alternate(trees: dict[str, Path], repeats: int, nodes: int, epochs: int,
              extra: list[str]) -> dict[str, list[dict]]:  # fmt: skip
    """Each tree's runs, every repeat running each tree once, the order alternating."""
    runs: dict[str, list[dict]] = {name: [] for name in trees}
    with tempfile.TemporaryDirectory() as run_dir:
        for repeat in range(repeats):
            order = list(trees) if repeat % 2 == 0 else list(reversed(trees))
            for name in order:
                result = run_tree(trees[name], nodes, epochs, run_dir, extra)
                runs[name].append(result)
                rates = ", ".join(f"{r:.1f}" for r in result["rates"])
                print(f"{name} repeat {repeat}: samples/s per epoch {rates}", flush=True)
    return runs


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--tree", action="append", required=True, help="name=commit or name=folder, 2 or more"
    )
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", help="also write the results as JSON here")
    parser.add_argument("extra", nargs="*", help="after --: more `raysim run` flags")
    args = parse(parser, argv)
    with tempfile.TemporaryDirectory() as scratch:
        sides = {name: source_tree(spec, Path(scratch)) for name, spec in
                 (t.split("=", 1) for t in args.tree)}  # fmt: skip
        trees = {name: path for name, (path, _) in sides.items()}
        runs = alternate(trees, args.repeats, args.nodes, args.epochs, args.extra)
    summary = {
        name: {
            "steady_samples_per_s": statistics.median(r["steady"] for r in results),
            "min": min(r["steady"] for r in results),
            "max": max(r["steady"] for r in results),
            "memory_peak_mb": statistics.median(
                r["memory_peak_mb"] for r in results if r["memory_peak_mb"] is not None
            ),
            "first_step_s": statistics.median(r["first_step_s"] for r in results),
            "wall_s": statistics.median(r["wall_s"] for r in results),
            "runs": results,
        }
        for name, results in runs.items()
    }
    first = list(trees)[0]
    for name, entry in summary.items():
        pairs = list(zip(runs[name], runs[first], strict=True))
        ratios = [r["steady"] / b["steady"] for r, b in pairs]
        entry["ratio_to_" + first] = {
            "median": statistics.median(ratios), "min": min(ratios), "max": max(ratios),
        }  # fmt: skip
        for figure in ("first_step", "wall"):
            later = [r[figure + "_s"] - b[figure + "_s"] for r, b in pairs]
            entry[f"{figure}_minus_{first}_s"] = {
                "median": statistics.median(later), "min": min(later), "max": max(later),
            }  # fmt: skip
    for name, entry in summary.items():
        print(
            f"{name:<12} {entry['steady_samples_per_s']:7.1f} samples/s "
            f"({entry['min']:.1f}–{entry['max']:.1f}), "
            f"memory peak {entry['memory_peak_mb']:.0f} MB, "
            f"paired ratio to {first} {entry['ratio_to_' + first]['median']:.3f}, "
            f"first step {entry['first_step_s']:.2f} s "
            f"({entry['first_step_minus_' + first + '_s']['median']:+.2f} s paired), "
            f"command wall {entry['wall_s']:.2f} s "
            f"({entry['wall_minus_' + first + '_s']['median']:+.2f} s paired)"
        )
    if args.out:
        settings = {"nodes": args.nodes, "epochs": args.epochs, "extra": args.extra}
        record = {
            **provenance(args.allow_dirty),
            "trees": {name: words for name, (_, words) in sides.items()},
        }
        record |= {"settings": settings, "results": summary}
        Path(args.out).write_text(json.dumps(record, indent=2))
    return summary


if __name__ == "__main__":
    main()
