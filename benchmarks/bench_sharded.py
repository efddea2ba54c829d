"""One model under ddp, zero and fsdp at 2 and 4 nodes: each node's measured memory beside
`raysim estimate`, and what each strategy's collectives add to a step on an emulated
10 Gbit/s link (README, "Sharded training").

    python benchmarks/bench_sharded.py [--nodes 2,4] [--network 10gbe] [--out FILE]

The model is bench_estimate.py's transformer (examples/transformer_lm.py's at width 384,
4 layers, tied output layer: 7.2M parameters), trained by bench_estimate's plain PyTorch
function (Adam, batch 16 per node, 256 samples, 2 epochs). Each (nodes, strategy) runs
twice on one local Ray: on loopback (no added delay) and on the link. Memory: the
largest node's `memory_peak_bytes` in the loopback run's last epoch, beside the
estimate's charged bytes for the same model, batch and nodes. Time: the last epoch's
`step_time_s` (the slowest node's) in each run, and the link run's
`modelled_comm_s_per_step` (what the link model gives the strategy's collectives: DDP's
bucket all-reduces, ZeRO's parameter broadcast, FSDP's all-gathers and reduce-scatters)
and `added_comm_delay_s_per_step` (the wall time the emulation added to the step).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import bench_estimate
import cloudpickle
from common import bench_result, parse
from formatting import Renderer, table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import raysim  # noqa: E402
from raysim.cluster.hardware import detect_hardware  # noqa: E402
from raysim.cluster.local import SimCluster  # noqa: E402
from raysim.config import replace  # noqa: E402
from raysim.estimate import estimate  # noqa: E402
from raysim.plan.resources import make_plan  # noqa: E402
from raysim.rundir import rank_lines, read_lines  # noqa: E402

MODEL = "transformer"
STRATEGIES = ("ddp", "zero", "fsdp")


def last_epoch(run_dir: Path) -> list[dict]:
    """Every node's metrics line of the run's last epoch."""
    ranks = rank_lines(read_lines(run_dir / "metrics.jsonl"))
    last = max(line["epoch"] for line in ranks)
    return [line for line in ranks if line["epoch"] == last]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", default="2,4")
    parser.add_argument("--network", default="10gbe")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--out")
    args = parse(parser, argv)
    cloudpickle.register_pickle_by_value(bench_estimate)  # its train_fn, on every node
    _, shape, dtype = bench_estimate.MODELS[MODEL]
    node_counts = [int(n) for n in args.nodes.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        base = raysim.load_config(
            num_nodes=max(node_counts), num_epochs=2, batch_size=args.batch, device="cpu",
            gpu_fraction=0.25, memory_fraction=0.25, run_dir=tmp, train_config={"model": MODEL},
        )  # fmt: skip
        with SimCluster(make_plan(base, detect_hardware())):
            for nodes in node_counts:
                for strategy in STRATEGIES:
                    runs = {}
                    for network in ("loopback", args.network):
                        cfg = replace(base, num_nodes=nodes, strategy=strategy, network=network,
                                      run_name=f"{nodes}-{strategy}-{network}")  # fmt: skip
                        result = raysim.run(cfg, train_fn=bench_estimate.train_fn, out=None)
                        runs[network] = (result.summary["status"], last_epoch(result.run_dir))
                    status, lines = runs["loopback"]
                    link_status, link_lines = runs[args.network]
                    node = estimate(cfg, f"bench_estimate:{MODEL}", shape, dtype)
                    charged = node.per_strategy[strategy].charged_bytes
                    peaks = [line["memory_peak_bytes"] for line in lines]
                    row = {
                        "nodes": nodes, "strategy": strategy, "status": [status, link_status],
                        "measured_bytes": peaks, "estimated_bytes": charged,
                        "error": charged / max(peaks) - 1,
                        "step_s": max(line["step_time_s"] for line in lines),
                        "link_step_s": max(line["step_time_s"] for line in link_lines),
                        "modelled_comm_s_per_step": max(
                            line["modelled_comm_s_per_step"] for line in link_lines),
                        "added_delay_s_per_step": max(
                            line["added_comm_delay_s_per_step"] for line in link_lines),
                    }  # fmt: skip
                    rows.append(row)
                    modelled = row["modelled_comm_s_per_step"]
                    print(f"{nodes} nodes, {strategy}: peak {max(peaks) / 1e6:.1f} MB, estimated "
                          f"{charged / 1e6:.1f} MB ({row['error']:+.1%}); step "
                          f"{row['step_s'] * 1e3:.0f} ms, on {args.network} "
                          f"{row['link_step_s'] * 1e3:.0f} ms (modelled collectives "
                          f"{modelled * 1e3:.1f} ms)", flush=True)  # fmt: skip
    return bench_result(args, {"model": MODEL}, rows=rows)


# --- BENCHMARKS.md's tables from this bench's results -------------------------


def sharded_table(data: dict | None) -> str:
    if data is None:
        return "Not measured yet."
    network = data["settings"]["network"]
    rows = [
        [
            str(row["nodes"]), row["strategy"], f"{max(row['measured_bytes']) / 1e6:.1f} MB",
            f"{row['estimated_bytes'] / 1e6:.1f} MB", f"{row['error']:+.1%}",
            f"{row['step_s'] * 1e3:.0f} ms", f"{row['link_step_s'] * 1e3:.0f} ms",
            f"{row['modelled_comm_s_per_step'] * 1e3:.1f} ms",
            f"{row['added_delay_s_per_step'] * 1e3:.1f} ms",
        ]
        for row in data["rows"]
    ]  # fmt: skip
    header = ["nodes", "strategy", "measured peak (largest node)", "estimated", "error",
              "step, loopback", f"step, {network}", "modelled collectives per step",
              "added per step"]  # fmt: skip
    return table(header, rows)


TABLES: dict[str, tuple[str, Renderer]] = {
    "sharded": ("bench_sharded.json", sharded_table),
}
"""BENCHMARKS.md block name: (result file, renderer); tables.py gathers them."""


if __name__ == "__main__":
    main()
