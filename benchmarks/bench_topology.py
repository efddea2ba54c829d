"""single_host against multi_node topology, and what losing a node costs.

    python benchmarks/bench_topology.py [--nodes 3] [--epochs 3] [--repeats 2] [--timeout 10]

Each repeat, alternating the order: a `raysim run` process with every simulated node
on one Ray node (single_host), and one with a Ray node per simulated node
(multi_node): time from the command's start to the first step, the command's wall
time, steady samples/s (median of the epochs after the first), peak RSS per node.
Then one multi_node run with min_nodes = nodes − 1 that loses node-1 at the first
step of epoch 3 (`node_loss`): the time Ray Train took to notice (detect_s) and
from the loss to the first report after it (recover_s: the elastic restart, which
first waits --timeout seconds for the lost node, plus the recomputed epoch).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import keep, parse, provenance
from formatting import Renderer, num, signed, table

from raysim.rundir import epoch_lines, read_lines


def raysim_run(run_dir: str, name: str, options: list[str]) -> tuple[dict, list[dict], float]:
    """A fresh `raysim run` process: its summary, its metrics records, its wall time."""
    command = [sys.executable, "-m", "raysim.cli", "run", "--device", "cpu",
               "--run-dir", run_dir, "--run-name", name, *options]  # fmt: skip
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    wall = time.perf_counter() - start
    folder = Path(run_dir) / name
    return (
        json.loads((folder / "summary.json").read_text()),
        read_lines(folder / "metrics.jsonl"),
        wall,
    )


def topology_run(run_dir: str, topology: str, nodes: int, epochs: int) -> dict:
    name = f"{topology}-{int(time.time() * 1000)}"
    options = ["--num-nodes", str(nodes), "--num-epochs", str(epochs), "--topology", topology]
    summary, records, wall = raysim_run(run_dir, name, options)
    rates = [e["samples_per_s"] for e in epoch_lines(records)]
    return {
        "steady_samples_per_s": statistics.median(rates[1:] or rates),
        "time_to_first_step_s": summary["time_to_first_step_s"],
        "process_wall_s": wall,
        "peak_rss_mb": max(n["peak_rss_bytes"] for n in summary["nodes"]) / 1e6,
        "final_test_accuracy": summary["final_test_accuracy"],
    }


def node_loss_run(run_dir: str, nodes: int, timeout: float) -> dict:
    options = [
        "--num-nodes", str(nodes), "--min-nodes", str(nodes - 1), "--topology", "multi_node",
        "--num-epochs", "4", "--checkpoint-every", "1", "--max-failures", "1",
        "--worker-start-timeout-s", str(timeout), "--inject", "node_loss:rank=1,epoch=3,step=1",
    ]  # fmt: skip
    summary, records, wall = raysim_run(run_dir, f"node-loss-{int(time.time())}", options)
    error = next(r for r in records if r["kind"] == "error")
    recovered = next(r for r in records if r["kind"] == "recovered")
    epochs = epoch_lines(records)
    return {
        "world_sizes": [e["world_size"] for e in epochs],
        "detect_s": error["detect_s"],
        "recover_s": recovered["recover_s"],
        "recomputed_epoch_time_s": next(
            e["epoch_time_s"] + e["eval_time_s"] for e in epochs if e["epoch"] == 3
        ),
        "worker_start_timeout_s": timeout,
        "process_wall_s": wall,
        "final_test_accuracy": summary["final_test_accuracy"],
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("--out", default="benchmarks/results")
    args = parse(parser, argv)
    runs: dict[str, list[dict]] = {"single_host": [], "multi_node": []}
    with tempfile.TemporaryDirectory() as run_dir:
        for repeat in range(args.repeats):
            order = ["single_host", "multi_node"][:: 1 if repeat % 2 == 0 else -1]
            for topology in order:
                runs[topology].append(topology_run(run_dir, topology, args.nodes, args.epochs))
        loss = node_loss_run(run_dir, args.nodes, args.timeout)
    figures = {
        topology: {
            key: statistics.median(r[key] for r in results)
            for key in ("steady_samples_per_s", "time_to_first_step_s", "process_wall_s")
        }
        | {"repeats": results}
        for topology, results in runs.items()
    }
    results = {
        **provenance(args.allow_dirty),
        **figures,
        "ratios": {
            "multi_node / single_host samples/s": figures["multi_node"]["steady_samples_per_s"]
            / figures["single_host"]["steady_samples_per_s"],
            "multi_node − single_host time to first step (s)": figures["multi_node"][
                "time_to_first_step_s"
            ]
            - figures["single_host"]["time_to_first_step_s"],
        },
        "node_loss": loss,
        "settings": vars(args),
    }
    return keep(results, str(Path(args.out) / "bench_topology.json"))


# --- BENCHMARKS.md's tables from this bench's results -------------------------


def topology(data: dict) -> str:
    rows = []
    for name in ("single_host", "multi_node"):
        entry = data[name]
        runs = entry["repeats"]
        rates = ", ".join(num(r["steady_samples_per_s"], 1) for r in runs)
        firsts = ", ".join(num(r["time_to_first_step_s"], 1) for r in runs)
        accuracy = statistics.median(r["final_test_accuracy"] for r in runs)
        rows.append(
            [
                name,
                f"{entry['steady_samples_per_s']:.1f} ({rates})",
                f"{entry['time_to_first_step_s']:.1f} s ({firsts})",
                f"{entry['process_wall_s']:.1f} s",
                f"{accuracy:.3f}",
            ]
        )
    header = [
        "topology",
        "steady samples/s (each run)",
        "time to first step",
        "process wall",
        "final test acc",
    ]
    return table(header, rows)


def topology_ratios(data: dict) -> str:
    ratios = data["ratios"]
    rows = [
        [
            "samples/s, multi_node ÷ single_host",
            f"{ratios['multi_node / single_host samples/s']:.2f}×",
        ],
        [
            "time to first step, multi_node − single_host",
            f"{signed(ratios['multi_node − single_host time to first step (s)'], 1)} s",
        ],
    ]
    return table(["medians compared", ""], rows)


def node_loss(data: dict) -> str:
    loss = data["node_loss"]
    row = [
        f"{loss['detect_s']:.1f} s",
        f"{loss['recover_s']:.1f} s",
        f"{loss['recomputed_epoch_time_s']:.1f} s",
        ", ".join(str(size) for size in loss["world_sizes"]),
        f"{loss['final_test_accuracy']:.3f}",
        f"{loss['process_wall_s']:.0f} s",
    ]
    header = [
        "losing a node: detected (detect_s)",
        "first report after (recover_s)",
        "recomputed epoch",
        "world size per epoch",
        "final test acc",
        "whole command",
    ]
    return table(header, [row])


TABLES: dict[str, tuple[str, Renderer]] = {
    "topology": ("bench_topology.json", topology),
    "topology_ratios": ("bench_topology.json", topology_ratios),
    "topology_node_loss": ("bench_topology.json", node_loss),
}
"""BENCHMARKS.md block name: (result file, renderer); tables.py gathers them."""


if __name__ == "__main__":
    main()
