"""What raysim's step measurements cost one DDP step, measured without Ray's noise.

    python benchmarks/bench_measure_hooks.py [--ranks 2] [--steps 20] [--pairs 8] \\
        [--out benchmarks/results/bench_measure_hooks.json]

Two gloo ranks (processes on this host, one torch thread each) each hold two DDP copies
of the same model: one plain, one with everything `raysim.worker.prepare` installs for
its measurements (the comm hook on loopback, which adds no delay, the step meter's
forward, loader and optimizer hooks, the model facts' gradient hooks for DDP's default
buckets, the tracer for its first steps). Blocks of `steps` steps alternate between the
copies, the order swapped every pair; a block's time is the slowest rank's. The paired
ratio measured/plain per pair, median with the range. The end-to-end comparison with
Ray is benchmarks/bench_measure.py; this one isolates the hooks' share of a step.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torchvision
from common import provenance

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from raysim.config import ExperimentConfig  # noqa: E402
from raysim.worker.emulation import set_up_emulation  # noqa: E402
from raysim.worker.meter import MeasuredLoader, StepMeter  # noqa: E402
from raysim.worker.model_facts import ModelFacts, watch_default_buckets  # noqa: E402
from raysim.worker.tracer import StepTracer  # noqa: E402

BATCH, SIZE = 8, 32


def build(measured: bool, rank: int, world: int):
    torch.manual_seed(0)
    inner = torchvision.models.resnet18(num_classes=10)
    facts = ModelFacts.of(inner)
    model = torch.nn.parallel.DistributedDataParallel(inner)
    data = torch.utils.data.TensorDataset(
        torch.randn(BATCH * 64, 3, SIZE, SIZE), torch.randint(0, 10, (BATCH * 64,))
    )
    loader = torch.utils.data.DataLoader(data, batch_size=BATCH)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    if measured:
        tracer = StepTracer(3)
        meter = StepMeter(tracer=tracer)
        set_up_emulation(model, ExperimentConfig(), rank, world, facts.bucket_ready, tracer)
        watch_default_buckets(model, facts)
        model.register_forward_pre_hook(meter.before_forward)
        model.register_forward_hook(meter.after_forward)
        meter.on_forward_end.append(facts.backward_starts)
        meter.on_step_end.append(lambda _: facts.step_done())
        optimizer.register_step_pre_hook(lambda *a: meter.before_optimizer_step())
        optimizer.register_step_post_hook(meter.after_optimizer_step)
        loader = MeasuredLoader(loader, meter)
    return model, loader, optimizer


def block(model, loader, optimizer, steps: int) -> float:
    dist.barrier()
    start = time.perf_counter()
    done = 0
    while done < steps:
        for inputs, labels in loader:
            loss = torch.nn.functional.cross_entropy(model(inputs), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            done += 1
            if done == steps:
                break
    seconds = torch.tensor([time.perf_counter() - start])
    dist.all_reduce(seconds, op=dist.ReduceOp.MAX)
    return float(seconds)


def worker(rank: int, world: int, steps: int, pairs: int, port: int, queue) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    copies = {"plain": build(False, rank, world), "measured": build(True, rank, world)}
    for name in copies:
        block(*copies[name], steps)  # warm-up, and DDP's bucket rebuild
    times: dict[str, list[float]] = {"plain": [], "measured": []}
    for pair in range(pairs):
        order = ("plain", "measured") if pair % 2 == 0 else ("measured", "plain")
        for name in order:
            times[name].append(block(*copies[name], steps))
    if rank == 0:
        queue.put(times)
    dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--port", type=int, default=29533)
    parser.add_argument("--out")
    args = parser.parse_args()
    context = mp.get_context("spawn")
    queue = context.Queue()
    procs = [
        context.Process(
            target=worker, args=(r, args.ranks, args.steps, args.pairs, args.port, queue)
        )
        for r in range(args.ranks)
    ]
    for proc in procs:
        proc.start()
    times = queue.get()
    for proc in procs:
        proc.join()
    ratios = [m / p for m, p in zip(times["measured"], times["plain"], strict=True)]
    step_ms = {k: statistics.median(v) / args.steps * 1e3 for k, v in times.items()}
    result = {
        **provenance(),
        "settings": {**vars(args), "model": "resnet18", "batch": BATCH, "image_size": SIZE},
        "step_ms_median": step_ms,
        "ratio_measured_over_plain": {"median": statistics.median(ratios), "min": min(ratios),
                                      "max": max(ratios), "all": ratios},
        "block_seconds": times,
    }  # fmt: skip
    print(f"step: plain {step_ms['plain']:.1f} ms, measured {step_ms['measured']:.1f} ms; "
          f"paired ratio median {statistics.median(ratios):.4f} "
          f"({min(ratios):.4f}-{max(ratios):.4f})")  # fmt: skip
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
        print(f"written: {args.out}")


if __name__ == "__main__":
    main()
