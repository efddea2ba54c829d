"""What N simulated nodes cost on this host: start-up, wall time and memory against N.

    python benchmarks/bench_scale.py [--nodes 2 4 8] [--steps 4] [--train-fn MODULE:FUNCTION]
        [--gpu-fraction 0.06] [--memory-fraction 0.06]

Per N, one fresh `raysim run --config configs/distributed_config.yaml --num-epochs 1
--max-steps-per-epoch STEPS --gpu-fraction 0.06 --memory-fraction 0.06 --num-nodes N`
(with --train-fn, a user's function in place of the built-in ResNet18),
with every process under it (driver, Ray's processes, its actors, the training workers)
sampled once a second from /proc/<pid>/smaps_rollup: each training worker's peak PSS,
the rest (the fixed part) and the whole at its peak. From summary.json: time to first
step, Ray Train's worker-group stage, throughput. `constants` are what
raysim/plan/host_costs.py keeps (a test holds the two equal).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from common import keep, parse, provenance
from formatting import Renderer, table

from raysim.procfs import command_line, descendants, pss_bytes

WORKER_TITLE = "RayTrainWorker"
"""In the process title Ray gives a training worker's process."""


WORKER_GROUP_STAGE = "Ray Train: controller, worker group, process group"


@dataclass(frozen=True)
class Workload:
    """What each node trains and its shares: the built-in ResNet18 at 0.06 by default."""

    train_fn: str | None = None
    gpu_fraction: float = 0.06
    memory_fraction: float = 0.06


def is_training_worker(pid: int) -> bool:
    return any(WORKER_TITLE in part for part in command_line(pid))


class PssSampler:
    """Every process under `pid`, sampled each second: peak PSS per training worker, and
    the sample where all of them together peaked."""

    def __init__(self, pid: int):
        self.pid = pid
        self.worker_peaks: dict[int, int] = {}
        self.peak_total = 0
        self.fixed_at_peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            self.sample()

    def sample(self) -> None:
        workers, fixed = {}, 0
        for pid in [self.pid, *descendants(self.pid)]:
            pss = pss_bytes(pid)
            if pss is None:
                continue
            if is_training_worker(pid):
                workers[pid] = pss
            else:
                fixed += pss
        for pid, pss in workers.items():
            self.worker_peaks[pid] = max(pss, self.worker_peaks.get(pid, 0))
        if fixed + sum(workers.values()) > self.peak_total:
            self.peak_total, self.fixed_at_peak = fixed + sum(workers.values()), fixed

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def scale_command(
    run_dir: str, name: str, nodes: int, steps: int, workload: Workload | None = None
) -> list[str]:
    """The scale run: README's distributed config (or a user's function), small
    fractions, N nodes, one epoch."""
    workload = workload or Workload()
    own = ["--train-fn", workload.train_fn] if workload.train_fn else []
    return [sys.executable, "-m", "raysim.cli", "run", "--config",
            "configs/distributed_config.yaml", *own, "--device", "cpu", "--num-epochs", "1",
            "--max-steps-per-epoch", str(steps), "--gpu-fraction", str(workload.gpu_fraction),
            "--memory-fraction", str(workload.memory_fraction), "--num-nodes", str(nodes),
            # a loaded host must not time out the very start-up being measured
            "--worker-start-timeout-s", "900",
            "--run-dir", run_dir, "--run-name", name]  # fmt: skip


def scale_run(run_dir: str, nodes: int, steps: int, workload: Workload) -> dict:
    name = f"scale-{nodes}"
    command = scale_command(run_dir, name, nodes, steps, workload)
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    sampler = PssSampler(process.pid)
    _, err = process.communicate()
    wall = time.perf_counter() - start
    sampler.stop()
    if process.returncode != 0:
        raise SystemExit(f"bench_scale: {nodes} nodes failed:\n{err.decode()[-2000:]}")
    summary = json.loads((Path(run_dir) / name / "summary.json").read_text())
    stages = {s["stage"]: s["seconds"] for s in summary["startup"]["stages"]}
    peaks = sorted(sampler.worker_peaks.values())
    return {
        "nodes": nodes,
        "time_to_first_step_s": summary["time_to_first_step_s"],
        "worker_group_s": stages[WORKER_GROUP_STAGE],
        "process_wall_s": wall,
        "samples_per_s": summary["samples_per_s"],
        "workers_sampled": len(peaks),
        "worker_pss_bytes": max(peaks),
        "worker_pss_median_bytes": peaks[len(peaks) // 2],
        "worker_rss_bytes": max(n["peak_rss_bytes"] for n in summary["nodes"]),
        "worker_training_bytes": max(n["memory_peak_bytes"] for n in summary["nodes"]),
        "fixed_bytes": sampler.fixed_at_peak,
        "host_peak_bytes": sampler.peak_total,
    }


def constants(runs: list[dict]) -> dict:
    """What raysim/plan/host_costs.py keeps: the largest memory figures over N, and the
    worker-group stage's largest seconds per node (rounded, so the module reads plainly)."""
    return {
        "fixed_bytes": round(max(r["fixed_bytes"] for r in runs), -6),
        "worker_pss_bytes": round(max(r["worker_pss_bytes"] for r in runs), -6),
        "worker_training_bytes": round(max(r["worker_training_bytes"] for r in runs), -6),
        "worker_group_per_node_s": round(max(r["worker_group_s"] / r["nodes"] for r in runs), 2),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, nargs="+", default=[2, 4, 8])
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--train-fn", help="MODULE:FUNCTION instead of the built-in ResNet18")
    parser.add_argument("--gpu-fraction", type=float, default=0.06)
    parser.add_argument("--memory-fraction", type=float, default=0.06)
    parser.add_argument("--out", default="benchmarks/results/bench_scale.json")
    args = parse(parser, argv)
    workload = Workload(args.train_fn, args.gpu_fraction, args.memory_fraction)
    with tempfile.TemporaryDirectory() as run_dir:
        runs = [scale_run(run_dir, nodes, args.steps, workload) for nodes in args.nodes]
    results = {
        **provenance(args.allow_dirty),
        "runs": runs,
        "constants": constants(runs),
        "settings": vars(args),
    }
    return keep(results, args.out)


# --- BENCHMARKS.md's table from this bench's result ---------------------------


def scale(data: dict | None) -> str:
    if data is None:
        return "Not measured yet: `python benchmarks/bench_scale.py`."
    mb = 1e6
    rows = [
        [
            str(r["nodes"]),
            f"{r['time_to_first_step_s']:.1f} s",
            f"{r['worker_group_s']:.1f} s",
            f"{r['process_wall_s']:.1f} s",
            f"{r['samples_per_s']:.0f}",
            f"{r['worker_pss_bytes'] / mb:,.0f} MB",
            f"{r['worker_rss_bytes'] / mb:,.0f} MB",
            f"{r['fixed_bytes'] / mb:,.0f} MB",
            f"{r['host_peak_bytes'] / mb:,.0f} MB",
        ]
        for r in data["runs"]
    ]
    header = ["N", "time to first step", "worker group", "wall", "samples/s",
              "PSS per worker", "RSS per worker", "fixed (PSS)", "host peak (PSS)"]  # fmt: skip
    own = data["settings"].get("train_fn")
    if own:
        settings = data["settings"]
        return table(header, rows) + (
            f"\n\nA user's function, `{own}`, at gpu fraction {settings['gpu_fraction']} and "
            f"memory fraction {settings['memory_fraction']}; raysim/plan/host_costs.py keeps "
            "the built-in's figures, not these."
        )
    kept = data["constants"]
    line = (
        f"Kept in raysim/plan/host_costs.py: fixed {kept['fixed_bytes'] / mb:,.0f} MB, "
        f"{kept['worker_pss_bytes'] / mb:,.0f} MB a worker "
        f"({kept['worker_training_bytes'] / mb:,.0f} MB of it training memory), worker group "
        f"at most {kept['worker_group_per_node_s']} s × N."
    )
    return table(header, rows) + "\n\n" + line


TABLES: dict[str, tuple[str, Renderer]] = {
    "scale": ("bench_scale.json", scale),
    "scale_own": ("bench_scale_own.json", scale),
}
"""BENCHMARKS.md block name: (result file, renderer); tables.py gathers them."""


if __name__ == "__main__":
    main()
