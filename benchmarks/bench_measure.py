"""What raysim's own step measurements cost a user's loop: the transformer example with
`measure_steps` on and off, side by side.

    python benchmarks/bench_measure.py [--nodes 4] [--epochs 4] [--steps 30] [--repeats 4] \\
        [--out benchmarks/results/bench_measure.json]

One warm local Ray (its start not timed). Each repeat runs the example once with the
measurements on and once off, the order alternating between repeats. The rate is the
same for both, from what raysim records either way: each rank's `interval_s` (time
between its reports, i.e. one epoch of a fixed number of steps), samples = nodes ×
steps × batch over the slowest rank's interval, epochs after the first; the paired
ratio on/off per repeat, median with the range.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

from common import parse, provenance
from formatting import Renderer, num, paired_cell, table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import raysim  # noqa: E402
from examples.transformer_lm import train_fn  # noqa: E402
from raysim.cluster import SimCluster, detect_hardware  # noqa: E402
from raysim.config import replace  # noqa: E402
from raysim.plan import make_plan  # noqa: E402
from raysim.rundir import rank_lines, read_lines  # noqa: E402

BATCH = 16


def steady_rate(run_dir: Path, nodes: int, steps: int) -> float:
    ranks = rank_lines(read_lines(run_dir / "metrics.jsonl"))
    epochs = sorted({r["epoch"] for r in ranks})[1:]
    rates = [
        nodes * steps * BATCH / max(r["interval_s"] for r in ranks if r["epoch"] == epoch)
        for epoch in epochs
    ]
    return statistics.median(rates)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--out")
    args = parse(parser, argv)
    rates: dict[str, list[float]] = {"on": [], "off": []}
    with tempfile.TemporaryDirectory() as tmp:
        base = raysim.load_config(
            num_nodes=args.nodes, num_epochs=args.epochs, batch_size=BATCH, learning_rate=1e-3,
            max_steps_per_epoch=args.steps, gpu_fraction=0.25, memory_fraction=0.25,
            device="cpu", run_dir=tmp,
        )  # fmt: skip
        with SimCluster(make_plan(base, detect_hardware())):
            for repeat in range(args.repeats):
                order = ["on", "off"] if repeat % 2 == 0 else ["off", "on"]
                for mode in order:
                    cfg = replace(base, measure_steps=mode == "on", run_name=f"{mode}-{repeat}")
                    result = raysim.run(cfg, train_fn=train_fn, out=None)
                    rates[mode].append(steady_rate(result.run_dir, args.nodes, args.steps))
                    print(f"repeat {repeat} {mode}: {rates[mode][-1]:.1f} samples/s", flush=True)
    ratios = [on / off for on, off in zip(rates["on"], rates["off"], strict=True)]
    summary = {
        "samples_per_s": {
            mode: {"median": statistics.median(v), "all": v} for mode, v in rates.items()
        },
        "ratio_on_to_off": {"median": statistics.median(ratios), "min": min(ratios),
                            "max": max(ratios), "all": ratios},
    }  # fmt: skip
    print(json.dumps(summary["ratio_on_to_off"]))
    if args.out:
        settings = vars(args) | {"batch": BATCH}
        Path(args.out).write_text(
            json.dumps({**provenance(args.allow_dirty), "settings": settings, **summary}, indent=2)
        )
    return summary


# --- BENCHMARKS.md's tables from this bench's results -------------------------


def measure(data: dict) -> str:
    settings, rate, ratio = data["settings"], data["samples_per_s"], data["ratio_on_to_off"]
    row = [
        f"{settings['steps']} steps × {settings['repeats']} pairs",
        num(rate["on"]["median"], 1),
        num(rate["off"]["median"], 1),
        paired_cell(ratio),
    ]
    header = ["sitting", "samples/s on (median)", "off (median)", "ratio on/off, median (min–max)"]
    return table(header, [row])


TABLES: dict[str, tuple[str, Renderer]] = {
    "measure": ("bench_measure.json", measure),
    "measure_20steps": ("bench_measure_20steps.json", measure),
}
"""BENCHMARKS.md block name: (result file, renderer); tables.py gathers them."""


if __name__ == "__main__":
    main()
