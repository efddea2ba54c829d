"""Validate `raysim project` against emulated runs on this machine.

    python benchmarks/bench_network.py [--nodes 2,4] [--networks 1gbe,10gbe] [--steps 12]

For each N: a loopback run measures compute per step at that N (the simulated nodes
share the cores, so compute depends on N); then one run per emulated network. The
projection from the loopback compute is compared with the measured step time
(median over ranks, epoch 2; epoch 1 holds warm-up and DDP's bucket rebuild). Every
run, loopback included, uses DDP's 25 MB buckets, as the projection does.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from common import parse, provenance
from formatting import Renderer, signed, table

import raysim
from raysim.builtin.model import build_model
from raysim.config import parse_network
from raysim.projection.comm_model import bucket_sizes
from raysim.projection.flat import project
from raysim.rundir import rank_lines, read_lines


def epoch2_ranks(run_dir: Path) -> list[dict]:
    return [r for r in rank_lines(read_lines(run_dir / "metrics.jsonl")) if r["epoch"] == 2]


DDP_BUCKET_MB = 25.0
"""DDP's default bucket, named for every run: without a network raysim would give DDP one
bucket, and the loopback compute must be measured with the buckets the projection and
the emulated runs use."""


def measure(nodes: int, network: str | None, steps: int, run_dir: str) -> list[dict]:
    cfg = raysim.load_config(
        num_nodes=nodes, num_epochs=2, max_steps_per_epoch=steps, image_size=32,
        device="cpu", network=network, run_dir=run_dir, ddp_bucket_mb=DDP_BUCKET_MB,
        run_name=f"n{nodes}-{network or 'loopback'}",
    )  # fmt: skip
    return epoch2_ranks(raysim.run(cfg, out=None).run_dir)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", default="2,4")
    parser.add_argument("--networks", default="1gbe,10gbe")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--out", default="benchmarks/results")
    args = parse(parser)
    buckets = bucket_sizes(build_model(10))
    rows = []
    with tempfile.TemporaryDirectory() as run_dir:
        for nodes in [int(n) for n in args.nodes.split(",")]:
            loopback = measure(nodes, None, args.steps, run_dir)
            compute = statistics.median(r["step_time_s"] for r in loopback)
            for network in args.networks.split(","):
                measured = statistics.median(
                    r["step_time_s"] for r in measure(nodes, network, args.steps, run_dir)
                )
                spec = parse_network(network)
                (row,) = project(compute, buckets, 8, spec, [nodes])
                rows.append(
                    {
                        "network": network,
                        "nodes": nodes,
                        "loopback_step_s": compute,
                        "predicted_step_s": row.step_s_overlap,
                        "predicted_no_overlap_s": row.step_s_no_overlap,
                        "measured_step_s": measured,
                        "error": (measured - row.step_s_overlap) / measured,
                    }
                )
                print(json.dumps(rows[-1]), flush=True)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    result = {
        **provenance(args.allow_dirty),
        "settings": vars(args),
        "buckets": buckets,
        "rows": rows,
    }
    (Path(args.out) / "bench_network.json").write_text(json.dumps(result, indent=2))


# --- BENCHMARKS.md's tables from this bench's results -------------------------


NETWORK_STEPS = ("loopback_step_s", "predicted_step_s", "predicted_no_overlap_s", "measured_step_s")


def network(data: dict) -> str:
    rows = []
    for row in data["rows"]:
        seconds = [row[k] for k in NETWORK_STEPS]
        rows.append(
            [
                row["network"].replace("gbe", " GbE"),
                str(row["nodes"]),
                *[f"{s:.3f} s" for s in seconds],
                f"{signed(row['error'] * 100, 1)} %",
            ]
        )
    header = [
        "network",
        "nodes",
        "loopback step",
        "predicted",
        "predicted, no overlap",
        "measured",
        "error",
    ]
    return table(header, rows)


TABLES: dict[str, tuple[str, Renderer]] = {
    "network": ("bench_network.json", network),
}
"""BENCHMARKS.md block name: (result file, renderer); tables.py gathers them."""


if __name__ == "__main__":
    main()
