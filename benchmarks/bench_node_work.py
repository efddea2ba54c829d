"""The CPU a built-in node spends between its function's first line and its first step's end.

    python benchmarks/bench_node_work.py [--repeats 5] [--nodes 4]
        [--out benchmarks/results/bench_node_work.json]

Each repeat is a fresh interpreter that has what a node has at its first line (torch,
Ray Train's torch support, a gloo process group, one intra-op thread as raysim gives
each of 4 nodes on 2 cores), then does what the built-in experiment does to its first
step, timing each piece's CPU seconds (process_time): import torchvision (which imports
torch._dynamo; DDP's constructor would import it otherwise), the digits at 32 px,
ResNet18, the DDP wrap and fused Adam, and the first step at batch 8 (forward, backward,
the all-reduce of a one-rank group, the optimizer step). One interpreter alone, so no
contention: N nodes on C cores need at least N × total / C seconds of wall time for this
work after the last node's first line, whatever runs it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from common import parse, provenance
from formatting import Renderer, median_rows, table

ROOT = Path(__file__).resolve().parent.parent

NODE = """
import json, os, time
os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=os.environ["BENCH_PORT"], RANK="0",
                  WORLD_SIZE="1")
import torch, torch.distributed as dist, ray.train, ray.train.torch
torch.set_num_threads(1)
dist.init_process_group("gloo")
seconds = {}
def piece(name, start):
    seconds[name] = time.process_time() - start
start = time.process_time()
import torchvision.models
piece("import torchvision (and torch._dynamo)", start)
start = time.process_time()
from raysim.builtin.data import digits
data = digits(32)
piece("the digits at 32 px", start)
start = time.process_time()
from raysim.builtin.model import adam, build_model
model = build_model(10)
piece("ResNet18 built", start)
start = time.process_time()
model = torch.nn.parallel.DistributedDataParallel(model)
optimizer = adam(model, 1e-3)
piece("DDP wrap, fused Adam", start)
start = time.process_time()
images, labels = data.train[:8]
torch.nn.functional.cross_entropy(model(images), labels).backward()
optimizer.step()
piece("the first step, batch 8", start)
dist.destroy_process_group()
print(json.dumps(seconds))
"""


def one_repeat(index: int) -> dict[str, float]:
    env = {**os.environ, "BENCH_PORT": str(29400 + index), "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", NODE], capture_output=True, text=True,
                          check=True, cwd=ROOT, env=env)  # fmt: skip
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--out")
    args = parse(parser)
    repeats = [one_repeat(i) for i in range(args.repeats)]
    medians = {piece: statistics.median(r[piece] for r in repeats) for piece in repeats[0]}
    total = statistics.median(sum(r.values()) for r in repeats)
    cores = os.cpu_count() or 1
    floor = args.nodes * total / min(cores, args.nodes)
    result = {**provenance(args.allow_dirty), "settings": vars(args), "median_cpu_s": medians,
              "median_total_cpu_s": total, "cores": cores,
              "wall_floor_s": floor, "repeats": repeats}  # fmt: skip
    for piece, seconds in medians.items():
        print(f"{piece:40} {seconds:6.2f} CPU-s")
    print(f"{'per node':40} {total:6.2f} CPU-s; {args.nodes} nodes on {cores} cores: "
          f">= {floor:.2f} s")  # fmt: skip
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
        print(f"written: {args.out}")


# --- BENCHMARKS.md's tables from this bench's results -------------------------


def node_work(data: dict) -> str:
    medians, repeats = data["median_cpu_s"], data["repeats"]
    rows = median_rows({piece: piece for piece in medians}, medians, repeats, " CPU-s")
    nodes, cores = data["settings"]["nodes"], data["cores"]
    rows.append(["a node, in all", f"{data['median_total_cpu_s']:.2f} CPU-s", ""])
    rows.append([f"{nodes} nodes on {cores} cores, at the least",
                 f"{data['wall_floor_s']:.2f} s of wall time", ""])  # fmt: skip
    header = [f"from the first line to the first step's end ({len(repeats)} fresh interpreters)",
              "median", "min–max"]  # fmt: skip
    return table(header, rows)


TABLES: dict[str, tuple[str, Renderer]] = {
    "node_work": ("bench_node_work.json", node_work),
}
"""BENCHMARKS.md block name: (result file, renderer); tables.py gathers them."""


if __name__ == "__main__":
    main()
