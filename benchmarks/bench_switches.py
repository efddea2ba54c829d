"""Measure each memory-saving switch: peak training memory and step time, one node.

    python benchmarks/bench_switches.py [--device cpu|cuda] [--image-size 32] [--batch-size 64]

One Ray session; each variant is a 1-node raysim run of 2 epochs × --steps steps, in
turn; figures are epoch 2's (epoch 1 holds warm-up). Peak memory is the true high-water
mark: PyTorch's max_memory_allocated on a GPU; on the CPU the worker process's peak RSS
(each run has fresh worker processes, so the baselines match). The step-boundary figure
charged to the budget (memory_peak_bytes) is kept too: it misses activations, which are
freed by the end of a step. Accumulation runs batch/4 × 4 micro-batches, the same
effective batch as the baseline; its step time is per micro-batch, so compare samples/s.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from common import parse, provenance
from formatting import Renderer, num, table

import raysim
from raysim.cluster import SimCluster, detect_hardware
from raysim.config import replace
from raysim.plan import make_plan
from raysim.rundir import rank_lines, read_lines


def variants(device: str, batch: int) -> dict[str, dict]:
    found = {
        "baseline": {},
        "amp bf16": {"amp": "bf16"},
        "channels_last": {"channels_last": True},
        f"accumulate 4 x {batch // 4}": {"accumulate_steps": 4, "batch_size": batch // 4},
        "activation checkpointing": {"activation_checkpointing": True},
    }
    if device == "cuda":
        found["amp fp16"] = {"amp": "fp16"}
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--out", default="benchmarks/results")
    args = parse(parser)
    rows = []
    with tempfile.TemporaryDirectory() as run_dir:
        base = raysim.load_config(
            num_nodes=1, num_epochs=2, batch_size=args.batch_size, image_size=args.image_size,
            max_steps_per_epoch=args.steps, device=args.device, run_dir=run_dir,
        )  # fmt: skip
        hw = detect_hardware()
        with SimCluster(make_plan(base, hw)):
            for name, overrides in variants(args.device, args.batch_size).items():
                cfg = replace(base, run_name=name.replace(" ", "_"), **overrides)
                result = raysim.run(cfg, out=None)
                (rank,) = [
                    r for r in rank_lines(read_lines(result.run_dir / "metrics.jsonl"))
                    if r["epoch"] == 2
                ]  # fmt: skip
                rows.append(
                    {
                        "variant": name,
                        "peak_bytes": rank.get("cuda_peak_allocated_bytes", rank["peak_rss_bytes"]),
                        "memory_peak_bytes": rank["memory_peak_bytes"],
                        "step_time_s": rank["step_time_s"],
                        "samples_per_s": rank["samples_per_s"],
                        "train_loss": rank["train_loss"],
                    }
                )
                print(json.dumps(rows[-1]), flush=True)
    baseline = rows[0]
    for row in rows:
        row["peak_vs_baseline"] = row["peak_bytes"] / baseline["peak_bytes"]
        row["samples_per_s_vs_baseline"] = row["samples_per_s"] / baseline["samples_per_s"]
    Path(args.out).mkdir(parents=True, exist_ok=True)
    result = {
        **provenance(args.allow_dirty),
        "device": args.device,
        "gpu": hw.gpu_name,
        "image_size": args.image_size,
        "batch_size": args.batch_size,
        "rows": rows,
    }
    out = Path(args.out) / f"bench_switches_{args.device}.json"
    out.write_text(json.dumps(result, indent=2))
    print(f"written: {out}")


# --- BENCHMARKS.md's tables from this bench's results -------------------------


VARIANTS = (
    "baseline",
    "amp bf16",
    "amp fp16",
    "channels_last",
    "accumulate 4 x 16",
    "activation checkpointing",
)


VARIANT_LABELS = {"amp fp16": "amp fp16 (grad scaler)"}


def variant_order(row: dict) -> int:
    return VARIANTS.index(row["variant"]) if row["variant"] in VARIANTS else len(VARIANTS)


def switches(data: dict) -> str:
    rows = []
    for row in sorted(data["rows"], key=variant_order):
        label = VARIANT_LABELS.get(row["variant"], row["variant"]).replace(" x ", " × ")
        rows.append(
            [
                label,
                f"{row['peak_bytes'] / 1e6:.0f} MB",
                num(row["peak_vs_baseline"], 2),
                f"{row['samples_per_s']:.0f}",
                num(row["samples_per_s_vs_baseline"], 2),
            ]
        )
    peak = "peak allocated" if data["device"] == "cuda" else "peak RSS"
    return table(["variant", peak, "vs baseline", "samples/s", "vs baseline"], rows)


TABLES: dict[str, tuple[str, Renderer]] = {
    "switches_cuda": ("bench_switches_cuda.json", switches),
    "switches_cpu": ("bench_switches_cpu.json", switches),
}
"""BENCHMARKS.md block name: (result file, renderer); tables.py gathers them."""


if __name__ == "__main__":
    main()
