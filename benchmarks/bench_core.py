"""Core throughput and start-up, side by side in one session.

    python benchmarks/bench_core.py [--epochs 3] [--repeats 1] [--quick] [--out benchmarks/results]

Measures, on the digits set, each repeat in this order (so the setups alternate):
  raysim-1   raysim, 1 node, batch 32 (2 threads)
  raysim-4   raysim, 4 simulated nodes × batch 8 (global 32)
  ddp-4      plain torch.distributed DDP, gloo, 4 processes × batch 8, 1 thread each
  single-32  one plain process, batch 32, all cores (what a user would run instead)
  serial-4   one process doing the 4 nodes' work: 4 × forward/backward at batch 8,
             gradients averaged in memory, 4 Adam steps (the limit for simulating
             4 nodes on this machine)
  data       the data path alone: samples/s one node's loader delivers
Steady-state samples/s is the median of the epochs after the first (min–max over
repeats beside it). Ratios are against ddp-4, serial-4 and single-32, because this
machine is noisy: compare within one run. --quick (tiny sizes) is for the test.
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

from raysim.cluster import free_port
from raysim.data import digits, train_loader
from raysim.metrics import epoch_lines, rank_lines, read_lines
from raysim.model import build_model


def plain_epochs(model, loader, epochs: int, max_steps: int | None = None) -> list[float]:
    """samples/s per epoch of the same loop raysim runs (Adam, cross-entropy)."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    loss_fn = torch.nn.CrossEntropyLoss()
    rates = []
    for epoch in range(epochs):
        loader.sampler.set_epoch(epoch)
        start, samples = time.perf_counter(), 0
        for step, (images, labels) in enumerate(loader, 1):
            optimizer.zero_grad(set_to_none=True)
            loss_fn(model(images), labels).backward()
            optimizer.step()
            samples += len(labels)
            if max_steps is not None and step >= max_steps:
                break
        rates.append(samples / (time.perf_counter() - start))
    return rates


def serial_same_work(nodes: int, batch: int, image_size: int, epochs: int,
                     max_steps: int | None) -> list[float]:  # fmt: skip
    """One process doing what `nodes` simulated nodes do, with no communication."""
    torch.set_num_threads(os.cpu_count() or 1)
    torch.manual_seed(0)
    data = digits(image_size)
    loaders = [train_loader(data.train, batch, r, nodes, seed=0, workers=0) for r in range(nodes)]
    replicas = [build_model(10) for _ in range(nodes)]
    optimizers = [torch.optim.Adam(m.parameters(), lr=1e-4) for m in replicas]
    loss_fn = torch.nn.CrossEntropyLoss()
    rates = []
    for epoch in range(epochs):
        for loader in loaders:
            loader.sampler.set_epoch(epoch)
        start, samples = time.perf_counter(), 0
        for step, batches in enumerate(zip(*loaders, strict=False), 1):
            for model, optimizer, (images, labels) in zip(
                replicas, optimizers, batches, strict=True
            ):
                optimizer.zero_grad(set_to_none=True)
                loss_fn(model(images), labels).backward()
                samples += len(labels)
            with torch.no_grad():  # the all-reduce, done in memory
                for params in zip(*(m.parameters() for m in replicas), strict=True):
                    mean = torch.stack([p.grad for p in params]).mean(0)
                    for p in params:
                        p.grad.copy_(mean)
            for optimizer in optimizers:
                optimizer.step()
            if max_steps is not None and step >= max_steps:
                break
        rates.append(samples / (time.perf_counter() - start))
    return rates


def data_path(batch: int, nodes: int, image_size: int, epochs: int) -> list[float]:
    """samples/s one node's loader delivers, with no model."""
    data = digits(image_size)
    loader = train_loader(data.train, batch, 0, nodes, seed=0, workers=0)
    rates = []
    for epoch in range(epochs):
        loader.sampler.set_epoch(epoch)
        start, samples = time.perf_counter(), 0
        for _, labels in loader:
            samples += len(labels)
        rates.append(samples / (time.perf_counter() - start))
    return rates


def _ddp_worker(rank: int, world: int, image_size: int, epochs: int, max_steps, port: int,
                out: str):  # fmt: skip
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
    )
    torch.manual_seed(0)
    data = digits(image_size)
    loader = train_loader(data.train, 8, rank, world, seed=0, workers=0)
    model = torch.nn.parallel.DistributedDataParallel(build_model(10))
    rates = plain_epochs(model, loader, epochs, max_steps)
    dist.destroy_process_group()
    if rank == 0:
        Path(out).write_text(json.dumps([r * world for r in rates]))


def plain_ddp(world: int, image_size: int, epochs: int, max_steps: int | None) -> list[float]:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as handle:
        out = handle.name
    port = free_port()
    mp.spawn(_ddp_worker, args=(world, image_size, epochs, max_steps, port, out), nprocs=world)
    return json.loads(Path(out).read_text())


def single_process(batch: int, image_size: int, epochs: int, max_steps: int | None):
    torch.set_num_threads(os.cpu_count() or 1)
    torch.manual_seed(0)
    data = digits(image_size)
    loader = train_loader(data.train, batch, 0, 1, seed=0, workers=0)
    return plain_epochs(build_model(10), loader, epochs, max_steps)


def raysim_run(nodes: int, batch: int, image_size: int, epochs: int, max_steps: int | None,
               run_dir: str) -> dict:  # fmt: skip
    """A fresh `raysim run` process, so start-up is measured from the command's start."""
    name = f"bench-{nodes}-{int(time.time())}"
    command = [
        sys.executable, "-m", "raysim.cli", "run", "--num-nodes", str(nodes),
        "--batch-size", str(batch), "--num-epochs", str(epochs), "--image-size",
        str(image_size), "--device", "cpu", "--run-dir", run_dir, "--run-name", name,
    ]  # fmt: skip
    if max_steps is not None:
        command += ["--max-steps-per-epoch", str(max_steps)]
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    wall = time.perf_counter() - start
    summary = json.loads((Path(run_dir) / name / "summary.json").read_text())
    records = read_lines(Path(run_dir) / name / "metrics.jsonl")
    reports = [r["report_s"] for r in rank_lines(records) if "report_s" in r]
    return {
        "rates": [e["samples_per_s"] for e in epoch_lines(records)],
        "report_s_median": statistics.median(reports) if reports else None,
        "time_to_first_step_s": summary["time_to_first_step_s"],
        "process_wall_s": wall,
        "peak_rss_mb": max(n["peak_rss_bytes"] for n in summary["nodes"]) / 1e6,
    }


def steady(rates: list[float]) -> float:
    return statistics.median(rates[1:] or rates)


def measure(epochs: int, image_size: int, max_steps: int | None, run_dir: str) -> dict:
    """One repeat of every setup, in the documented order."""
    return {
        "raysim-1": raysim_run(1, 32, image_size, epochs, max_steps, run_dir),
        "raysim-4": raysim_run(4, 8, image_size, epochs, max_steps, run_dir),
        "ddp-4": {"rates": plain_ddp(4, image_size, epochs, max_steps)},
        "single-32": {"rates": single_process(32, image_size, epochs, max_steps)},
        "serial-4": {"rates": serial_same_work(4, 8, image_size, epochs, max_steps)},
        "data": {"rates": data_path(8, 4, image_size, epochs)},
    }


def combine(repeats: list[dict]) -> dict:
    """Median over repeats of each setup's steady samples/s, with the range."""
    results: dict = {}
    for setup in repeats[0]:
        steadies = [steady(r[setup]["rates"]) for r in repeats]
        results[setup] = {
            "steady_samples_per_s": statistics.median(steadies),
            "min": min(steadies),
            "max": max(steadies),
            "repeats": [r[setup] for r in repeats],
        }
    rate = {setup: entry["steady_samples_per_s"] for setup, entry in results.items()}
    results["ratios"] = {
        "raysim-4 / ddp-4": rate["raysim-4"] / rate["ddp-4"],
        "raysim-4 / serial-4": rate["raysim-4"] / rate["serial-4"],
        "ddp-4 / serial-4": rate["ddp-4"] / rate["serial-4"],
        "raysim-4 / single-32": rate["raysim-4"] / rate["single-32"],
        "raysim-1 / single-32": rate["raysim-1"] / rate["single-32"],
    }
    return results


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks it runs")
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args(argv)
    epochs, image_size, max_steps = args.epochs, args.image_size, None
    if args.quick:
        epochs, image_size, max_steps = 2, 16, 3
    Path(args.out).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as run_dir:
        repeats = [measure(epochs, image_size, max_steps, run_dir) for _ in range(args.repeats)]
    results = combine(repeats)
    results["machine"] = {"cpus": os.cpu_count(), "torch": torch.__version__}
    results["settings"] = {"epochs": epochs, "image_size": image_size, "max_steps": max_steps}
    results["date"] = time.strftime("%Y-%m-%d")
    name = "bench_core_quick.json" if args.quick else "bench_core.json"
    (Path(args.out) / name).write_text(json.dumps(results, indent=2))
    print(json.dumps({k: v for k, v in results.items() if k == "ratios"}, indent=2))
    return results


if __name__ == "__main__":
    main()
