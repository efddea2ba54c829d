"""Core throughput and start-up, side by side in one session.

    python benchmarks/bench_core.py [--epochs 2] [--image-size 32] [--out benchmarks/results]

Measures, on the digits set, in this order:
  raysim-1   raysim, 1 node, batch 32 (2 threads)
  raysim-4   raysim, 4 simulated nodes × batch 8 (global 32)
  ddp-4      plain torch.distributed DDP, gloo, 4 processes × batch 8, 1 thread each
  single-32  one plain process, batch 32, all cores (what a user would run instead)
Steady-state samples/s is taken from the epochs after the first. Ratios are printed
against ddp-4 and single-32 because this machine is noisy: compare within one run.
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

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from raysim.data import digits, train_loader
from raysim.metrics import epoch_lines, read_lines
from raysim.model import build_model


def plain_epochs(model, loader, epochs: int) -> list[float]:
    """samples/s per epoch of the same loop raysim runs (Adam, cross-entropy)."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    loss_fn = torch.nn.CrossEntropyLoss()
    rates = []
    for epoch in range(epochs):
        loader.sampler.set_epoch(epoch)
        start, samples = time.perf_counter(), 0
        for images, labels in loader:
            optimizer.zero_grad(set_to_none=True)
            loss_fn(model(images), labels).backward()
            optimizer.step()
            samples += len(labels)
        rates.append(samples / (time.perf_counter() - start))
    return rates


def _ddp_worker(rank: int, world: int, image_size: int, epochs: int, port: int, out: str):
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
    )
    torch.manual_seed(0)
    data = digits(image_size)
    loader = train_loader(data.train, 8, rank, world, seed=0, workers=0)
    model = torch.nn.parallel.DistributedDataParallel(build_model(10))
    rates = plain_epochs(model, loader, epochs)
    dist.destroy_process_group()
    if rank == 0:
        Path(out).write_text(json.dumps([r * world for r in rates]))


def plain_ddp(world: int, image_size: int, epochs: int) -> list[float]:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as handle:
        out = handle.name
    port = 29500 + os.getpid() % 1000
    mp.spawn(_ddp_worker, args=(world, image_size, epochs, port, out), nprocs=world)
    return json.loads(Path(out).read_text())


def single_process(batch: int, image_size: int, epochs: int) -> list[float]:
    torch.set_num_threads(os.cpu_count() or 1)
    torch.manual_seed(0)
    data = digits(image_size)
    loader = train_loader(data.train, batch, 0, 1, seed=0, workers=0)
    return plain_epochs(build_model(10), loader, epochs)


def raysim_run(nodes: int, batch: int, image_size: int, epochs: int, run_dir: str) -> dict:
    """A fresh `raysim run` process, so start-up is measured from the command's start."""
    name = f"bench-{nodes}-{int(time.time())}"
    command = [
        sys.executable, "-m", "raysim.cli", "run", "--num-nodes", str(nodes),
        "--batch-size", str(batch), "--num-epochs", str(epochs), "--image-size",
        str(image_size), "--device", "cpu", "--run-dir", run_dir, "--run-name", name,
    ]  # fmt: skip
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    wall = time.perf_counter() - start
    summary = json.loads((Path(run_dir) / name / "summary.json").read_text())
    records = read_lines(Path(run_dir) / name / "metrics.jsonl")
    return {
        "rates": [e["samples_per_s"] for e in epoch_lines(records)],
        "time_to_first_step_s": summary["time_to_first_step_s"],
        "process_wall_s": wall,
        "peak_rss_mb": max(n["peak_rss_bytes"] for n in summary["nodes"]) / 1e6,
    }


def steady(rates: list[float]) -> float:
    return statistics.median(rates[1:] or rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()
    Path(args.out).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as run_dir:
        results = {
            "raysim-1": raysim_run(1, 32, args.image_size, args.epochs, run_dir),
            "raysim-4": raysim_run(4, 8, args.image_size, args.epochs, run_dir),
        }
    results["ddp-4"] = {"rates": plain_ddp(4, args.image_size, args.epochs)}
    results["single-32"] = {"rates": single_process(32, args.image_size, args.epochs)}
    for entry in results.values():
        entry["steady_samples_per_s"] = steady(entry["rates"])
    ddp, single = results["ddp-4"], results["single-32"]
    results["ratios"] = {
        "raysim-4 / ddp-4": results["raysim-4"]["steady_samples_per_s"]
        / ddp["steady_samples_per_s"],
        "raysim-4 / single-32": results["raysim-4"]["steady_samples_per_s"]
        / single["steady_samples_per_s"],
        "raysim-1 / single-32": results["raysim-1"]["steady_samples_per_s"]
        / single["steady_samples_per_s"],
    }
    results["machine"] = {"cpus": os.cpu_count(), "torch": torch.__version__}
    results["date"] = time.strftime("%Y-%m-%d")
    (Path(args.out) / "bench_core.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
