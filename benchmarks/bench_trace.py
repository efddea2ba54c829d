"""What tracing costs: the built-in experiment with `trace_steps` on and off, side by side.

    python benchmarks/bench_trace.py [--nodes 2] [--epochs 3] [--steps 20] [--trace-steps 3] \\
        [--repeats 4] [--out benchmarks/results/bench_trace.json]

One warm local Ray (its start not timed). Each repeat runs the experiment once with
tracing on (`trace_steps`) and once off (0), the order alternating between repeats; the
step measurements are on in both. Two rates per run, epochs after the first: the steady
samples/s the report uses (the epoch lines' samples_per_s: samples over the slowest node's
measured step time, which is where the tracer's calls are made), and the rate from each
rank's `interval_s` (time between its reports, so it also holds the longer reports and the
controller rewriting trace.json, on the same cores); the paired ratio on/off per repeat,
median with the range. On a shared 2-core machine the pairs spread more than 1 %, so the
tracer's own calls are also timed alone (no Ray, no model: one step's calls, traced and
past the traced steps) with the controller's rewrite of a trace.json of this run's size,
and set against the measured step time: the cost the paired runs cannot resolve.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import parse, provenance
from formatting import Renderer, num, paired_cell, table, times_ten

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import raysim  # noqa: E402
from raysim.cluster import SimCluster, detect_hardware  # noqa: E402
from raysim.config import replace  # noqa: E402
from raysim.plan import make_plan  # noqa: E402
from raysim.record.trace import TraceWriter  # noqa: E402
from raysim.rundir import epoch_lines, rank_lines, read_lines  # noqa: E402
from raysim.worker.tracer import StepTracer  # noqa: E402

BATCH = 8


def steady_rates(run_dir: Path, nodes: int, steps: int) -> dict[str, float]:
    records = read_lines(run_dir / "metrics.jsonl")
    epochs = epoch_lines(records)[1:]
    ranks = rank_lines(records)
    by_interval = [
        nodes * steps * BATCH / max(r["interval_s"] for r in ranks if r["epoch"] == e["epoch"])
        for e in epochs
    ]
    return {
        "steps": statistics.mean(e["samples_per_s"] for e in epochs),
        "interval": statistics.median(by_interval),
    }


def one_step(tracer: StepTracer) -> None:
    """The calls a traced step of the built-in experiment makes (one bucket)."""
    now = time.perf_counter()
    tracer.data_wait(now, now)
    tracer.forward_starts(now)
    tracer.forward_ends(now)
    tracer.bucket_done(now, now, 0.0, 44_726_568, 0.0)
    tracer.optimizer_starts(now)
    tracer.step_ends(now, now)


def call_costs(trace_steps: int, epochs: int, nodes: int, tmp: Path) -> dict:
    """Seconds per step of the tracer's calls (traced, and past the traced steps), and
    of one rewrite of trace.json holding every report of such a run."""
    costs = {}
    for name, limit in (("traced_step_s", 10**9), ("untraced_step_s", 0)):
        tracer, rounds = StepTracer(max(limit, 1)), 20_000
        tracer.on = limit > 0
        start = time.perf_counter()
        for _ in range(rounds):
            one_step(tracer)
        costs[name] = (time.perf_counter() - start) / rounds
    tracer = StepTracer(trace_steps)
    for _ in range(trace_steps):
        one_step(tracer)
    report = [{"rank": r, "node_id": f"node-{r}", "trace_spans": tracer.spans} for r in
              range(nodes)]  # fmt: skip
    writer = TraceWriter(tmp, time.time())
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        writer.take_spans(report, epoch)
    costs["last_trace_rewrite_s"] = time.perf_counter() - start
    return costs


def paired(rates: dict[str, list[float]]) -> dict:
    ratios = [on / off for on, off in zip(rates["on"], rates["off"], strict=True)]
    return {
        "samples_per_s": {
            mode: {"median": statistics.median(v), "all": v} for mode, v in rates.items()
        },
        "ratio_on_to_off": {"median": statistics.median(ratios), "min": min(ratios),
                            "max": max(ratios), "all": ratios},
    }  # fmt: skip


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--trace-steps", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--out")
    args = parse(parser, argv)
    rates: dict[str, dict[str, list[float]]] = {
        kind: {"on": [], "off": []} for kind in ("steps", "interval")
    }
    with tempfile.TemporaryDirectory() as tmp:
        base = raysim.load_config(
            num_nodes=args.nodes, num_epochs=args.epochs, batch_size=BATCH,
            max_steps_per_epoch=args.steps, dataset="synthetic", synthetic_samples=2048,
            image_size=16, gpu_fraction=0.25, memory_fraction=0.25, device="cpu", run_dir=tmp,
        )  # fmt: skip
        with SimCluster(make_plan(base, detect_hardware())):
            for repeat in range(args.repeats):
                order = ["on", "off"] if repeat % 2 == 0 else ["off", "on"]
                for mode in order:
                    traced = args.trace_steps if mode == "on" else 0
                    cfg = replace(base, trace_steps=traced, run_name=f"{mode}-{repeat}")
                    result = raysim.run(cfg, out=None)
                    measured = steady_rates(result.run_dir, args.nodes, args.steps)
                    for kind, rate in measured.items():
                        rates[kind][mode].append(rate)
                    print(f"repeat {repeat} {mode}: {measured['steps']:.1f} samples/s "
                          f"(by interval {measured['interval']:.1f})", flush=True)  # fmt: skip
        costs = call_costs(args.trace_steps, args.epochs, args.nodes, Path(tmp))
    step_s = args.nodes * BATCH / statistics.median(rates["steps"]["off"])
    traced_share = min(args.trace_steps, args.steps) / args.steps
    per_step = traced_share * costs["traced_step_s"] + (1 - traced_share) * costs[
        "untraced_step_s"]  # fmt: skip
    summary = {
        "steady_samples_per_s": paired(rates["steps"]),
        "by_report_interval": paired(rates["interval"]),
        "tracer_calls": {
            **costs, "median_step_s_off": step_s, "share_of_step": per_step / step_s,
            "rewrite_share_of_epoch": costs["last_trace_rewrite_s"] / (args.steps * step_s),
        },
    }  # fmt: skip
    print(
        json.dumps(
            {kind: s["ratio_on_to_off"] for kind, s in summary.items() if "ratio_on_to_off" in s}
            | {"tracer_calls": summary["tracer_calls"]}
        )
    )
    if args.out:
        settings = vars(args) | {"batch": BATCH, "experiment": "builtin resnet18, synthetic 16 px"}
        Path(args.out).write_text(
            json.dumps({**provenance(args.allow_dirty), "settings": settings, **summary}, indent=2)
        )
    return summary


# --- BENCHMARKS.md's tables from this bench's results -------------------------


TRACE_RATES = {
    "steady_samples_per_s": "steady samples/s (measured steps)",
    "by_report_interval": "by report interval",
}


def trace(data: dict) -> str:
    rows = []
    for key, label in TRACE_RATES.items():
        rate, ratio = data[key]["samples_per_s"], data[key]["ratio_on_to_off"]
        rows.append(
            [
                label,
                num(rate["on"]["median"], 1),
                num(rate["off"]["median"], 1),
                paired_cell(ratio),
            ]
        )
    header = ["rate", "samples/s on (median)", "off (median)", "ratio on/off, median (min–max)"]
    return table(header, rows)


def tracer_calls(data: dict) -> str:
    calls, settings = data["tracer_calls"], data["settings"]
    traced = f"{settings['trace_steps']} of {settings['steps']} steps traced"
    rows = [
        ["the tracer's calls, per traced step", f"{calls['traced_step_s'] * 1e6:.0f} µs"],
        [
            "the tracer's calls, per step past the traced ones",
            f"{calls['untraced_step_s'] * 1e6:.1f} µs",
        ],
        ["the measured step (tracing off, median)", f"{calls['median_step_s_off']:.2f} s"],
        [f"the tracer's share of that step ({traced})", times_ten(calls["share_of_step"])],
        [
            "the controller's rewrite of trace.json, per report",
            f"{calls['last_trace_rewrite_s'] * 1e3:.1f} ms",
        ],
        [
            "that rewrite's share of an epoch's training time",
            times_ten(calls["rewrite_share_of_epoch"]),
        ],
    ]
    return table(["timed alone (no Ray)", "cost"], rows)


TABLES: dict[str, tuple[str, Renderer]] = {
    "trace": ("bench_trace.json", trace),
    "trace_tracer_calls": ("bench_trace.json", tracer_calls),
}
"""BENCHMARKS.md block name: (result file, renderer); tables.py gathers them."""


if __name__ == "__main__":
    main()
