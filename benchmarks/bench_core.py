"""Core throughput and start-up, side by side in one session.

    python benchmarks/bench_core.py [--epochs 3] [--repeats 2] [--quick] [--image-size 32]
                                    [--only data|serial|no-exchange] [--out benchmarks/results]

Measures, on the digits set, each repeat in this order (so the setups alternate):
  raysim-1   raysim, 1 node, batch 32 (2 threads; not in --quick)
  raysim-2   raysim, 2 simulated nodes × batch 8
  ddp-2      plain torch.distributed DDP, gloo, 2 processes × batch 8, with the DDP
             settings raysim's plan picks (its bucket size)
  ddp-2-defaults  the same with DDP's defaults (what a user would run; not in --quick)
  raysim-4   raysim, 4 simulated nodes × batch 8 (global 32; not in --quick)
  raysim-4-gloo  the same with gloo's all-reduce over loopback TCP instead of the one
             through shared memory (--no-shared-memory-allreduce; --only serial)
  ddp-4      plain torch.distributed DDP, gloo, 4 processes × batch 8, 1 thread each,
             with raysim's DDP settings (not in --quick)
  ddp-4-defaults  the same with DDP's defaults (not in --quick)
  single-32  one plain process, batch 32, all cores (what a user would run instead)
  serial-4   the serial-4 reference: one process doing the 4 nodes' work one rank after
             another (4 × forward/backward at batch 8, gradients averaged in memory,
             4 Adam steps), all cores' threads. A reference, not a limit: plain DDP
             beats it.
  no-exchange-4  the limit of this work on this machine: the same forward, backward and
             Adam steps with no gradient exchange, one process per core, each doing
             its share of the 4 ranks one after another at its best thread count
             (tried: 1 and 2); --only no-exchange
  no-exchange-4-procs  the same work with one process per rank, as raysim has, 1 thread
             each, time-slicing the cores: what 4 processes on this machine cost before
             any exchange; --only no-exchange
  data       the data path alone: samples/s one node's loader delivers (digits, batch 8)
  imagefolder-decode / imagefolder-cached
             the same for an imagefolder set (generated: 400 JPEGs of 256×192 in 4
             classes, 100 more for test), decoding every image on every access as
             before the cache, and from the decoded cache (its one-time build timed)
Steady-state samples/s is the median of the epochs after the first (min–max over
repeats beside it). Ratios are paired: both setups of one repeat, then the median over
repeats (min–max beside it), because this machine is noisy; every second repeat runs
each raysim/DDP pair DDP first, and --repeats must be 1 or even, so each order runs
as often as the other and a drift within a repeat favours neither. Every rate is the
same for raysim and plain DDP: all ranks' samples over the slowest rank's time.
--quick is for the test: every path once with the least work (16 px, 2 epochs of 2
steps, 8 small JPEGs a class; raysim-2 and ddp-2 the one multi-process pair, so the ratio
and the total RSS above any one process still mean something); --only data measures the
data paths alone;
--only serial measures raysim-4, raysim-4-gloo and serial-4 alone (issue 19's same-work
target, at any --image-size), their order reversed every second repeat; --only
no-exchange measures raysim-4, no-exchange-4 and no-exchange-4-procs the same way.
The no-exchange rates are raysim's: every process's samples over the slowest one's loop
time, epoch by epoch, the processes starting each epoch together.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from common import parse, provenance
from formatting import Renderer, each, median_span, num, span, table, thousands
from PIL import Image
from torch.utils.data import Dataset
from torchvision import transforms

from raysim.builtin.data import IMAGENET_MEAN, IMAGENET_STD, digits, image_folder, train_loader
from raysim.builtin.model import adam, build_model
from raysim.cluster import detect_hardware, free_port
from raysim.config import load_config
from raysim.plan import make_plan
from raysim.procfs import peak_rss_bytes
from raysim.rundir import epoch_lines, rank_lines, raysim_home, read_lines


def plain_epochs(model, loader, epochs: int, max_steps: int | None = None) -> list[list[float]]:
    """[samples, seconds] per epoch of the same loop raysim runs (its fused Adam,
    cross-entropy)."""
    optimizer = adam(model, 1e-4)
    loss_fn = torch.nn.CrossEntropyLoss()
    epochs_done = []
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
        epochs_done.append([samples, time.perf_counter() - start])
    return epochs_done


def rates_of(epochs: list[list[float]]) -> list[float]:
    return [samples / seconds for samples, seconds in epochs]


def rank_replicas(ranks: range, nodes: int, batch: int, image_size: int):
    """Each rank's loader (its shard of the digits), model and Adam, seeded as raysim's."""
    torch.manual_seed(0)
    data = digits(image_size)
    loaders = [train_loader(data.train, batch, r, nodes, seed=0, workers=0) for r in ranks]
    replicas = [build_model(10) for _ in ranks]
    return loaders, replicas, [adam(m, 1e-4) for m in replicas]


def serial_same_work(nodes: int, batch: int, image_size: int, epochs: int,
                     max_steps: int | None) -> list[float]:  # fmt: skip
    """One process doing what `nodes` simulated nodes do, with no communication."""
    torch.set_num_threads(os.cpu_count() or 1)
    loaders, replicas, optimizers = rank_replicas(range(nodes), nodes, batch, image_size)
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


THREAD_COUNTS = (1, 2)
"""Threads per process tried for no-exchange-4; the best rate is kept."""


def best_no_exchange(nodes: int, batch: int, image_size: int, epochs: int,
                     max_steps: int | None) -> dict:  # fmt: skip
    """no-exchange-4 at each thread count; the run with the best steady rate."""
    runs = [no_exchange(nodes, batch, image_size, epochs, max_steps, threads)
            for threads in THREAD_COUNTS]  # fmt: skip
    return max(runs, key=lambda run: steady(run["rates"]))


def no_exchange(nodes: int, batch: int, image_size: int, epochs: int, max_steps: int | None,
                threads: int, procs: int | None = None) -> dict:  # fmt: skip
    """The ranks' forward, backward and Adam work, no gradient exchange, in `procs`
    processes (default: one per core)."""
    procs = procs or min(nodes, len(os.sched_getaffinity(0)))
    context = mp.get_context("spawn")
    barrier, queue = context.Barrier(procs), context.Queue()
    workers = [context.Process(target=_no_exchange_worker, args=(
        proc, procs, nodes, batch, image_size, epochs, max_steps, threads, barrier, queue))
        for proc in range(procs)]  # fmt: skip
    for worker in workers:
        worker.start()
    done = [queue.get() for _ in workers]
    for worker in workers:
        worker.join()
    per_epoch = zip(*(d["epochs"] for d in done), strict=True)
    rates = [sum(s for s, _ in e) / max(t for _, t in e) for e in per_epoch]
    rss = [d["rss_mb"] for d in done]
    return {"rates": rates, "threads": threads, "processes": procs,
            "peak_rss_mb": max(rss), "total_rss_mb": sum(rss)}  # fmt: skip


def _no_exchange_worker(proc: int, procs: int, nodes: int, batch: int, image_size: int,
                        epochs: int, max_steps: int | None, threads: int, barrier,
                        queue) -> None:  # fmt: skip
    """Ranks proc, proc + procs, ... one after another; each epoch starts with the others."""
    torch.set_num_threads(threads)
    ranks = range(proc, nodes, procs)
    loaders, replicas, optimizers = rank_replicas(ranks, nodes, batch, image_size)
    loss_fn = torch.nn.CrossEntropyLoss()
    epochs_done = []
    for epoch in range(epochs):
        for loader in loaders:
            loader.sampler.set_epoch(epoch)
        barrier.wait()
        start, samples = time.perf_counter(), 0
        for step, batches in enumerate(zip(*loaders, strict=False), 1):
            for model, optimizer, (images, labels) in zip(
                replicas, optimizers, batches, strict=True
            ):
                optimizer.zero_grad(set_to_none=True)
                loss_fn(model(images), labels).backward()
                optimizer.step()
                samples += len(labels)
            if max_steps is not None and step >= max_steps:
                break
        epochs_done.append([samples, time.perf_counter() - start])
    queue.put({"epochs": epochs_done, "rss_mb": peak_rss_mb()})


def data_path(data: Dataset, batch: int, nodes: int, epochs: int) -> list[float]:
    """samples/s one node's loader delivers, with no model."""
    loader = train_loader(data, batch, 0, nodes, seed=0, workers=0)
    rates = []
    for epoch in range(epochs):
        loader.sampler.set_epoch(epoch)
        start, samples = time.perf_counter(), 0
        for _, labels in loader:
            samples += len(labels)
        rates.append(samples / (time.perf_counter() - start))
    return rates


def make_image_folder(root: Path, per_class: int, width: int, height: int) -> Path:
    """A Stanford-Cars-layout folder of photo-like JPEGs: a class-coloured gradient + noise."""
    gen = torch.Generator().manual_seed(0)
    ramp = torch.linspace(0.2, 1.0, width).expand(height, width)
    for split, count in (("train", per_class), ("test", per_class // 4)):
        for label, colour in enumerate(
            ((200, 40, 40), (40, 200, 40), (40, 40, 200), (160, 160, 40))
        ):
            folder = root / split / f"Class {label} 2012"
            folder.mkdir(parents=True)
            base = torch.stack([ramp * c for c in colour], dim=-1)
            for i in range(count):
                noise = torch.randn(height, width, 3, generator=gen) * 20
                pixels = (base + noise).clamp(0, 255).to(torch.uint8).numpy()
                Image.fromarray(pixels).save(folder / f"{i:05d}.jpg", quality=90)
    return root


class DecodeEachAccess(Dataset):
    """The imagefolder train set as it was before the cache: PIL decode + transforms per access."""

    def __init__(self, root: Path, image_size: int):
        classes = sorted(d.name for d in (root / "train").iterdir())
        self.samples = [
            (path, label)
            for label, name in enumerate(classes)
            for path in sorted((root / "train" / name).glob("*.jpg"))
        ]
        side = image_size + image_size // 8
        self.transform = transforms.Compose(
            [
                transforms.Resize((side, side)),
                transforms.RandomCrop(image_size),
                transforms.RandomHorizontalFlip(),
                transforms.ToTensor(),
                transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
            ]
        )

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        path, label = self.samples[index]
        with Image.open(path) as img:
            return self.transform(img.convert("RGB")), label


def image_folder_paths(batch: int, nodes: int, image_size: int, epochs: int,
                       per_class: int, width: int, height: int) -> dict:  # fmt: skip
    """One node's imagefolder loader decoding every access, then from the cache it builds."""
    with tempfile.TemporaryDirectory() as tmp:
        root = make_image_folder(Path(tmp) / "cars", per_class, width, height)
        with mock.patch.dict(os.environ, {"RAYSIM_HOME": str(Path(tmp) / "home")}):
            start = time.perf_counter()
            image_folder(root, image_size, raysim_home() / "cache")
            build_s = time.perf_counter() - start
            start = time.perf_counter()
            cached = image_folder(root, image_size, raysim_home() / "cache")
            load_s = time.perf_counter() - start
            decode = data_path(DecodeEachAccess(root, image_size), batch, nodes, epochs)
            return {
                "imagefolder-decode": {"rates": decode},
                "imagefolder-cached": {
                    "rates": data_path(cached.train, batch, nodes, epochs),
                    "build_s": build_s,
                    "load_s": load_s,
                    "images_decoded": len(cached.train) + len(cached.test),
                },
            }


def _ddp_worker(rank: int, world: int, image_size: int, epochs: int, max_steps, port: int,
                out: str, ddp_kwargs: dict):  # fmt: skip
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
    )
    torch.manual_seed(0)
    data = digits(image_size)
    loader = train_loader(data.train, 8, rank, world, seed=0, workers=0)
    model = torch.nn.parallel.DistributedDataParallel(build_model(10), **ddp_kwargs)
    epochs_done = plain_epochs(model, loader, epochs, max_steps)
    dist.destroy_process_group()
    figures = {"rss_mb": peak_rss_mb(), "epochs": epochs_done}
    Path(f"{out}.{rank}").write_text(json.dumps(figures))


def peak_rss_mb() -> float:
    return peak_rss_bytes() / 1e6


def raysim_ddp_kwargs(nodes: int) -> dict:
    """The DDP settings raysim's plan gives a CPU run of `nodes` simulated nodes here."""
    return make_plan(load_config(num_nodes=nodes, device="cpu"), detect_hardware()).ddp_kwargs


def plain_ddp(world: int, image_size: int, epochs: int, max_steps: int | None,
              ddp_kwargs: dict) -> dict:  # fmt: skip
    with tempfile.TemporaryDirectory() as directory:
        out = str(Path(directory) / "rank")
        args = (world, image_size, epochs, max_steps, free_port(), out, ddp_kwargs)
        mp.spawn(_ddp_worker, args=args, nprocs=world)
        ranks = [json.loads(Path(f"{out}.{rank}").read_text()) for rank in range(world)]
    rss = [r["rss_mb"] for r in ranks]
    # raysim's rate: every rank's samples over the slowest rank's time, epoch by epoch
    per_epoch = zip(*(r["epochs"] for r in ranks), strict=True)
    rates = [sum(s for s, _ in e) / max(t for _, t in e) for e in per_epoch]
    return {"rates": rates, "peak_rss_mb": max(rss), "total_rss_mb": sum(rss)}


def in_fresh_process(function, *args) -> dict:
    """Run a one-process setup in a new process, so its peak RSS is its own."""
    context = mp.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
        return pool.submit(_measured, function, *args).result()


def _measured(function, *args) -> dict:
    rates = function(*args)
    peak = peak_rss_mb()  # one process: its peak is the total
    return {"rates": rates, "peak_rss_mb": peak, "total_rss_mb": peak}


def single_process(batch: int, image_size: int, epochs: int, max_steps: int | None):
    torch.set_num_threads(os.cpu_count() or 1)
    torch.manual_seed(0)
    data = digits(image_size)
    loader = train_loader(data.train, batch, 0, 1, seed=0, workers=0)
    return rates_of(plain_epochs(build_model(10), loader, epochs, max_steps))


def raysim_run(nodes: int, batch: int, image_size: int, epochs: int, max_steps: int | None,
               run_dir: str, *flags: str) -> dict:  # fmt: skip
    """A fresh `raysim run` process, so start-up is measured from the command's start."""
    name = f"bench-{nodes}-{int(time.time())}"
    command = [
        sys.executable, "-m", "raysim.cli", "run", "--num-nodes", str(nodes),
        "--batch-size", str(batch), "--num-epochs", str(epochs), "--image-size",
        str(image_size), "--device", "cpu", "--run-dir", run_dir, "--run-name", name, *flags,
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
        "total_rss_mb": sum(n["peak_rss_bytes"] for n in summary["nodes"]) / 1e6,
    }


def steady(rates: list[float]) -> float:
    return statistics.median(rates[1:] or rates)


def in_order(runs: dict, flip: bool) -> dict:
    """Each setup's result, run in the listed order, or in reverse with `flip`."""
    order = list(runs)[::-1] if flip else list(runs)
    return {setup: runs[setup]() for setup in order}


QUICK_NODES = 2
"""--quick's one multi-process pair: raysim-2 and ddp-2."""


def measure(epochs: int, image_size: int, max_steps: int | None, run_dir: str,
            only: str | None, folder: tuple[int, int, int], quick: bool,
            flip: bool = False) -> dict:  # fmt: skip
    """One repeat of every setup (or of the data paths alone), in the documented order;
    with `flip` each raysim/DDP pair runs DDP first, so drift over a session cancels out
    of the paired ratios when repeats alternate."""
    args = (image_size, epochs, max_steps)

    def pair(nodes: int, defaults: bool = True) -> dict:
        runs = {
            f"raysim-{nodes}": lambda: raysim_run(nodes, 8, *args, run_dir),
            f"ddp-{nodes}": lambda: plain_ddp(nodes, *args, raysim_ddp_kwargs(nodes)),
        }
        if defaults:
            runs[f"ddp-{nodes}-defaults"] = lambda: plain_ddp(nodes, *args, {})
        return in_order(runs, flip)

    if only == "no-exchange":
        runs = {
            "raysim-4": lambda: raysim_run(4, 8, *args, run_dir),
            "no-exchange-4": lambda: best_no_exchange(4, 8, *args),
            "no-exchange-4-procs": lambda: no_exchange(4, 8, *args, threads=1, procs=4),
        }
        return in_order(runs, flip)
    if only == "serial":
        runs = {
            "raysim-4": lambda: raysim_run(4, 8, *args, run_dir),
            "raysim-4-gloo": lambda: raysim_run(
                4, 8, *args, run_dir, "--no-shared-memory-allreduce"
            ),
            "serial-4": lambda: in_fresh_process(serial_same_work, 4, 8, *args),
        }
        return in_order(runs, flip)
    results = {}
    if only is None:
        if quick:  # one raysim and one DDP setup of 2 processes: the same paths, least work
            results = pair(QUICK_NODES, defaults=False)
        else:
            results = {"raysim-1": raysim_run(1, 32, *args, run_dir)} | pair(2) | pair(4)
        results |= {
            "single-32": in_fresh_process(single_process, 32, *args),
            "serial-4": in_fresh_process(serial_same_work, 4, 8, *args),
        }
    results["data"] = {"rates": data_path(digits(image_size).train, 8, 4, epochs)}
    results.update(image_folder_paths(8, 4, image_size, epochs, *folder))
    return results


RATIOS = (
    ("raysim-2", "ddp-2"),
    ("raysim-4", "ddp-4"),
    ("raysim-2", "ddp-2-defaults"),
    ("raysim-4", "ddp-4-defaults"),
    ("raysim-4", "serial-4"),
    ("raysim-4", "no-exchange-4"),
    ("raysim-4", "no-exchange-4-procs"),
    ("no-exchange-4-procs", "no-exchange-4"),
    ("raysim-4-gloo", "serial-4"),
    ("raysim-4", "raysim-4-gloo"),
    ("ddp-4", "serial-4"),
    ("raysim-4", "single-32"),
    ("raysim-1", "single-32"),
    ("imagefolder-cached", "imagefolder-decode"),
    ("imagefolder-cached", "raysim-4"),
)
"""Pairs compared when both were measured (--only data measures no training)."""


def combine(repeats: list[dict]) -> dict:
    """Median over repeats of each setup's steady samples/s, with the range; ratios are
    paired (both setups of one repeat), then the median over repeats with the range."""
    results: dict = {}
    for setup in repeats[0]:
        steadies = [steady(r[setup]["rates"]) for r in repeats]
        results[setup] = {
            "steady_samples_per_s": statistics.median(steadies),
            "min": min(steadies),
            "max": max(steadies),
            "repeats": [r[setup] for r in repeats],
        }
    results["ratios"] = {}
    for a, b in RATIOS:
        if a in repeats[0] and b in repeats[0]:
            paired = [steady(r[a]["rates"]) / steady(r[b]["rates"]) for r in repeats]
            results["ratios"][f"{a} / {b}"] = {
                "median": statistics.median(paired),
                "min": min(paired),
                "max": max(paired),
            }
    return results


def summary_lines(results: dict) -> str:
    """The steady samples/s of each setup, and the cache's one-time build."""
    lines = [f"{'setup':<20} {'steady samples/s':>16}  (min–max)"]
    for setup, entry in results.items():
        if isinstance(entry, dict) and "steady_samples_per_s" in entry:
            lines.append(
                f"{setup:<20} {entry['steady_samples_per_s']:>16,.0f}  "
                f"({entry['min']:,.0f}–{entry['max']:,.0f})"
            )
    builds = [r["build_s"] for r in results["imagefolder-cached"]["repeats"]]
    images = results["imagefolder-cached"]["repeats"][0]["images_decoded"]
    lines.append(f"imagefolder cache build: {statistics.median(builds):.2f} s for {images} images")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks it runs")
    parser.add_argument(
        "--only",
        choices=["data", "serial", "no-exchange"],
        help="the data paths alone; raysim-4 (shared memory and gloo) against serial-4; "
        "raysim-4 against no-exchange-4 (the limit)",
    )
    parser.add_argument("--out", default="benchmarks/results")
    args = parse(parser, argv)
    if args.repeats > 1 and args.repeats % 2:
        parser.error(f"--repeats {args.repeats}: use 1 or an even number, so both orders of "
                     "each raysim/DDP pair run equally often")  # fmt: skip
    epochs, image_size, max_steps = args.epochs, args.image_size, None
    folder = (100, 256, 192)  # per class (4 classes), width, height
    if args.quick:
        epochs, image_size, max_steps, folder = 2, 16, 2, (8, 64, 48)  # 2: a steady epoch
    Path(args.out).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as run_dir:
        repeats = []
        for repeat in range(args.repeats):
            flip = repeat % 2 == 1
            repeats.append(
                measure(epochs, image_size, max_steps, run_dir, args.only, folder, args.quick, flip)
            )
    results = {**provenance(args.allow_dirty), **combine(repeats)}
    results["settings"] = {
        "epochs": epochs,
        "image_size": image_size,
        "max_steps": max_steps,
        # quick's: a 4-node plan is refused where 4 nodes' memory is not free
        "raysim_ddp_kwargs": raysim_ddp_kwargs(QUICK_NODES if args.quick else 4),
        "imagefolder": {"train_per_class": folder[0], "classes": 4, "source_px": folder[1:]},
    }
    suffix = "" if args.only is None else f"_{args.only.replace('-', '_')}"
    suffix += f"_{image_size}px" if args.only in ("serial", "no-exchange") else ""
    name = "bench_core" + ("_quick" if args.quick else "") + suffix
    (Path(args.out) / f"{name}.json").write_text(json.dumps(results, indent=2))
    if args.only in (None, "data"):
        print(summary_lines(results))
    print(json.dumps({k: v for k, v in results.items() if k == "ratios"}, indent=2))
    return results


# --- BENCHMARKS.md's tables from this bench's results -------------------------


CORE_SETUPS = {
    "raysim-1": "raysim, 1 node × 32",
    "raysim-2": "raysim, 2 nodes × 8",
    "ddp-2": "plain DDP, 2 × 8, raysim's DDP settings",
    "ddp-2-defaults": "plain DDP, 2 × 8, DDP's defaults",
    "raysim-4": "raysim, 4 nodes × 8",
    "ddp-4": "plain DDP, 4 × 8, raysim's DDP settings",
    "ddp-4-defaults": "plain DDP, 4 × 8, DDP's defaults",
    "serial-4": "serial-4 reference: the 4 ranks' work one after another",
    "single-32": "one process, batch 32",
}


CORE_RATIOS = {  # ratio key: (label, target or None, note where there is none)
    "raysim-4 / ddp-4-defaults": ("raysim 4 / plain DDP 4, DDP's defaults", 0.95, ""),
    "raysim-4 / ddp-4": ("raysim 4 / plain DDP 4, raysim's DDP settings", 0.95, ""),
    "raysim-2 / ddp-2-defaults": ("raysim 2 / plain DDP 2, DDP's defaults", 0.95, ""),
    "raysim-2 / ddp-2": ("raysim 2 / plain DDP 2, raysim's DDP settings", 0.95, ""),
    "raysim-4 / serial-4": ("raysim 4 / serial-4 reference", 0.95, ""),
    "raysim-4 / single-32": (
        "raysim 4 / one process at batch 32",
        None,
        " (4× the optimizer steps and all-reduces)",
    ),
    "raysim-1 / single-32": ("raysim 1 / one process at batch 32", None, ""),
}


CORE_BESIDE = {"raysim-4 / serial-4": ("plain DDP", "ddp-4 / serial-4")}


def per_repeat(entry: dict, key: str, digits: int, unit: str) -> str:
    values = [r[key] for r in entry["repeats"] if r.get(key) is not None]
    return each(values, digits, unit) if values else "–"


def memory_cells(entry: dict) -> list[str]:
    """Peak per worker and in total; "same" where one process is the whole setup."""
    peaks = [r["peak_rss_mb"] for r in entry["repeats"]]
    totals = [r["total_rss_mb"] for r in entry["repeats"]]
    total = "same" if totals == peaks else span(min(totals), max(totals), 0, " MB")
    return [span(min(peaks), max(peaks), 0, " MB"), total]


def report_blocked(entry: dict) -> str:
    blocked = [r["report_s_median"] for r in entry["repeats"] if "report_s_median" in r]
    return span(min(blocked), max(blocked), 3, " s") if blocked else "–"


def core_setups(data: dict) -> str:
    rows = []
    for key, label in CORE_SETUPS.items():
        entry = data[key]
        rows.append(
            [
                label,
                median_span(entry["steady_samples_per_s"], entry["min"], entry["max"], 0),
                per_repeat(entry, "time_to_first_step_s", 1, " s"),
                per_repeat(entry, "process_wall_s", 1, " s"),
                *memory_cells(entry),
                report_blocked(entry),
            ]
        )
    loader = thousands(round(data["data"]["steady_samples_per_s"], -3))
    rows.append(["data loader alone (digits), one node", loader, *["–"] * 5])
    header = [
        "setup",
        "steady samples/s (min–max)",
        "time to first step",
        "process wall",
        "peak RSS per worker",
        "total RSS",
        "report blocked",
    ]
    return table(header, rows)


def verdict(ratio: dict, target: float) -> str:
    """Met only if every paired ratio is; at the median if half are."""
    if ratio["min"] >= target:
        return f"≥ {target}: met"
    if ratio["median"] >= target:
        return f"≥ {target}: met at the median"
    return f"≥ {target}: **not met**"


def core_ratios(data: dict) -> str:
    rows = []
    for key, (label, target, note) in CORE_RATIOS.items():
        ratio = data["ratios"][key]
        median = num(ratio["median"], 2)
        goal = "–" + note
        if target is not None:
            median, goal = f"**{median}**", verdict(ratio, target)
        if key in CORE_BESIDE:
            name, other = CORE_BESIDE[key]
            goal += f" ({name}: {data['ratios'][other]['median']:.2f})"
        rows.append([label, median, span(ratio["min"], ratio["max"], 2), goal])
    return table(["ratio", "median", "min–max", "target"], rows)


def core_serial(data: dict) -> str:
    """raysim at 4 nodes against one process doing their work, at one image size."""
    setups = (("raysim-4", "raysim, 4 nodes × batch 8"),
              ("raysim-4-gloo", "raysim, the same over gloo (`--no-shared-memory-allreduce`)"),
              ("serial-4", "serial-4 reference: one process, one rank after another"))  # fmt: skip
    rows = [
        [label, median_span(data[key]["steady_samples_per_s"], data[key]["min"],
                            data[key]["max"], 0)]
        for key, label in setups if key in data
    ]  # fmt: skip
    ratio = data["ratios"]["raysim-4 / serial-4"]
    rows.append(["raysim / the serial-4 reference, paired", f"**{num(ratio['median'], 2)}** "
                 f"({span(ratio['min'], ratio['max'], 2)}): {verdict(ratio, 0.95)}"])  # fmt: skip
    for pair, label in (("raysim-4-gloo / serial-4", "raysim over gloo / the reference, paired"),
                        ("raysim-4 / raysim-4-gloo", "shared memory / gloo, paired")):  # fmt: skip
        if pair in data["ratios"]:
            ratio = data["ratios"][pair]
            rows.append([label, median_span(ratio["median"], ratio["min"], ratio["max"], 2)])
    size = data["settings"]["image_size"]
    return table([f"{size} px, {len(data['raysim-4']['repeats'])} repeats", "steady samples/s, "
                  "median (min–max)"], rows)  # fmt: skip


def core_no_exchange(data: dict | None) -> str:
    """raysim at 4 nodes against the limit, "not measured" until its file exists."""
    header = ["32 px, 4 ranks × batch 8", "steady samples/s, median (min–max)"]
    if data is None:
        rows = [["raysim, 4 nodes", "not measured"],
                ["no gradient exchange, one process per core (the limit)", "not measured"],
                ["raysim / the limit, paired", "not measured"]]  # fmt: skip
        return table(header, rows)
    threads = data["no-exchange-4"]["repeats"][0]["threads"]
    rows = [
        [label, median_span(data[key]["steady_samples_per_s"], data[key]["min"],
                            data[key]["max"], 0)]
        for key, label in (("raysim-4", "raysim, 4 nodes"),
                           ("no-exchange-4", f"no gradient exchange, one process per core, "
                            f"{threads} thread(s) each (the limit)"))
    ]  # fmt: skip
    if "no-exchange-4-procs" in data:
        entry = data["no-exchange-4-procs"]
        rows.append(
            [
                "no gradient exchange, one process per rank (as raysim), 1 thread each",
                median_span(entry["steady_samples_per_s"], entry["min"], entry["max"], 0),
            ]
        )
    ratio = data["ratios"]["raysim-4 / no-exchange-4"]
    figure = f"**{num(ratio['median'], 2)}** ({span(ratio['min'], ratio['max'], 2)})"
    rows.append(["raysim / the limit, paired", figure])
    for pair, label in (
        ("no-exchange-4-procs / no-exchange-4", "one process per rank / the limit, paired"),
        ("raysim-4 / no-exchange-4-procs", "raysim / one process per rank, paired"),
    ):
        if pair in data["ratios"]:
            ratio = data["ratios"][pair]
            rows.append([label, median_span(ratio["median"], ratio["min"], ratio["max"], 2)])
    return table(header, rows)


DATA_ROWS = {
    "imagefolder-decode": "imagefolder, decode every access",
    "imagefolder-cached": "imagefolder, decoded cache",
    "data": "digits from memory (`data`, same session)",
}


def core_data(data: dict) -> str:
    rows = []
    for key, label in DATA_ROWS.items():
        entry = data[key]
        cells = [thousands(entry[k]) for k in ("steady_samples_per_s", "min", "max")]
        rows.append([label, f"{cells[0]} ({cells[1]}–{cells[2]})"])
    px = data["settings"]["image_size"]
    return table([f"loader, one node, {px} px", "steady samples/s (min–max)"], rows)


def cache_costs(data: dict) -> str:
    repeats = data["imagefolder-cached"]["repeats"]
    ratio = data["ratios"]["imagefolder-cached / imagefolder-decode"]
    if isinstance(ratio, dict):  # paired over repeats: the median
        ratio = ratio["median"]
    row = [
        each([r["build_s"] for r in repeats], 2, " s"),
        " / ".join(str(r["images_decoded"]) for r in repeats),
        each([r["load_s"] * 1e3 for r in repeats], 0, " ms"),
        f"{ratio:.0f}×",
    ]
    header = [
        "cache build, each repeat",
        "images decoded",
        "reopening (memory-mapped)",
        "cached ÷ decode every access",
    ]
    return table(header, [row])


TABLES: dict[str, tuple[str, Renderer]] = {
    "core": ("bench_core.json", core_setups),
    "core_ratios": ("bench_core.json", core_ratios),
    "core_serial_32": ("bench_core_serial_32px.json", core_serial),
    "core_serial_16": ("bench_core_serial_16px.json", core_serial),
    "core_no_exchange_32": ("bench_core_no_exchange_32px.json", core_no_exchange),
    "core_data": ("bench_core_data.json", core_data),
    "core_data_cache": ("bench_core_data.json", cache_costs),
}
"""BENCHMARKS.md block name: (result file, renderer); tables.py gathers them."""


if __name__ == "__main__":
    main()
