"""What a simulated node's memory is made of, and the part no sharing can take away.

    python benchmarks/bench_worker_memory.py [--nodes 16] [--steps 4] [--repeats 3]

Two measurements:
- imports: a fresh interpreter per repeat imports what a node imports, in its order (torch
  and Ray Train's torch support, as every Ray Train worker does; raysim's worker side;
  torchvision, which like DDP's constructor imports torch._dynamo), and after each reads
  its private dirty memory from /proc/self/smaps: pages this process wrote, which no other
  process can share. A second interpreter per repeat counts the Python objects the same
  imports leave (tracemalloc), apart so that its bookkeeping is not in the first's figure.
- a run: bench_scale's command at N nodes; each training worker's /proc/<pid>/smaps read
  every 2 s, and at the worker's PSS peak split into its private anonymous memory (heap,
  stacks, anonymous maps), its libraries' private pages, and its share of pages other
  processes map too (PSS minus the private pages). summary.json gives each node's training
  memory (the budget's measure: what the node allocated beyond its start).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from statistics import median

from bench_scale import is_training_worker, scale_command
from common import keep, parse, provenance
from formatting import Renderer, table

from raysim.procfs import descendants, pss_bytes

IMPORTS = (
    ("torch", "import torch"),
    ("Ray Train's torch support", "import ray.train.torch"),
    ("raysim's worker side", "import raysim.worker"),
    ("torchvision and torch._dynamo", "import torchvision, torch._dynamo"),
)
LADDER = """
import json, sys
def dirty():
    total = 0
    with open("/proc/self/smaps") as maps:
        for line in maps:
            if line.startswith("Private_Dirty:"):
                total += int(line.split()[1]) * 1024
    return total
steps = [("bare interpreter", dirty())]
for name, statement in json.loads(sys.argv[1]):
    exec(statement)
    steps.append((name, dirty()))
print(json.dumps(steps))
"""
OBJECTS = """
import json, sys, tracemalloc
tracemalloc.start()
for _, statement in json.loads(sys.argv[1]):
    exec(statement)
print(tracemalloc.get_traced_memory()[0])
"""


def in_fresh_interpreter(code: str) -> object:
    done = subprocess.run([sys.executable, "-c", code, json.dumps(IMPORTS)],
                          capture_output=True, text=True, check=True)  # fmt: skip
    return json.loads(done.stdout)


def import_ladder(repeats: int) -> dict:
    """Each step's private dirty bytes (median over fresh interpreters), and the Python
    objects all of them leave."""
    ladders = [in_fresh_interpreter(LADDER) for _ in range(repeats)]
    steps = [name for name, _ in ladders[0]]
    dirty = {name: median(lad[i][1] for lad in ladders) for i, name in enumerate(steps)}
    return {
        "private_dirty_bytes": dirty,
        "python_objects_bytes": median(in_fresh_interpreter(OBJECTS) for _ in range(repeats)),
    }


def split(pid: int) -> dict | None:
    """A process's memory by kind, from /proc/<pid>/smaps; None once it has ended."""
    kinds = {"private_anonymous": 0, "private_libraries": 0, "pss": 0}
    file_backed = False
    try:
        with open(f"/proc/{pid}/smaps") as maps:
            for line in maps:
                head = line.split(maxsplit=6)
                if "-" in head[0] and len(head) >= 5:  # a mapping's first line
                    path = head[5].strip() if len(head) > 5 else ""
                    file_backed = path.startswith("/") and not path.startswith("/dev/shm")
                elif head[0] in ("Private_Dirty:", "Private_Clean:"):
                    key = "private_libraries" if file_backed else "private_anonymous"
                    kinds[key] += int(head[1]) * 1024
                elif head[0] == "Pss:":
                    kinds["pss"] += int(head[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    kinds["shared_share"] = kinds["pss"] - kinds["private_anonymous"] - kinds["private_libraries"]
    return kinds


class WorkerSampler:
    """Each training worker under `pid`, every 2 s: its split at its own PSS peak."""

    def __init__(self, pid: int):
        self.pid = pid
        self.at_peak: dict[int, dict] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(2.0):
            for pid in descendants(self.pid):
                if not is_training_worker(pid):
                    continue
                pss = pss_bytes(pid)
                if pss and pss > self.at_peak.get(pid, {}).get("pss", 0):
                    self.at_peak[pid] = split(pid) or self.at_peak.get(pid, {})

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def run_split(run_dir: str, nodes: int, steps: int) -> dict:
    name = f"memory-{nodes}"
    process = subprocess.Popen(scale_command(run_dir, name, nodes, steps),
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    sampler = WorkerSampler(process.pid)
    _, err = process.communicate()
    sampler.stop()
    if process.returncode != 0:
        raise SystemExit(f"bench_worker_memory: {nodes} nodes failed:\n{err.decode()[-2000:]}")
    summary = json.loads((Path(run_dir) / name / "summary.json").read_text())
    splits = [s for s in sampler.at_peak.values() if s]
    kinds = ("pss", "private_anonymous", "private_libraries", "shared_share")
    return {
        "nodes": nodes,
        "workers_sampled": len(splits),
        **{f"{kind}_bytes": median(s[kind] for s in splits) for kind in kinds},
        "training_bytes": median(n["memory_peak_bytes"] for n in summary["nodes"]),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=16)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/results/bench_worker_memory.json")
    args = parse(parser, argv)
    imports = import_ladder(args.repeats)
    with tempfile.TemporaryDirectory() as run_dir:
        run = run_split(run_dir, args.nodes, args.steps)
    results = {**provenance(args.allow_dirty), "imports": imports, "run": run,
               "settings": vars(args)}  # fmt: skip
    return keep(results, args.out)


# --- BENCHMARKS.md's table from this bench's result ---------------------------


def worker_memory(data: dict | None) -> str:
    if data is None:
        return "Not measured yet: `python benchmarks/bench_worker_memory.py`."
    mb = 1e6
    run, ladder = data["run"], data["imports"]["private_dirty_bytes"]
    after_imports = list(ladder.values())[-1]
    rest = run["private_anonymous_bytes"] + run["private_libraries_bytes"]
    rest -= after_imports + run["training_bytes"]
    rows = [[f"a training worker's PSS at its peak (median of {run['workers_sampled']})",
             f"{run['pss_bytes'] / mb:,.0f} MB"],
            ["its share of pages other processes map too (torch's, Ray's libraries)",
             f"{run['shared_share_bytes'] / mb:,.0f} MB"],
            ["its private pages", f"{(run['pss_bytes'] - run['shared_share_bytes']) / mb:,.0f} MB"],
            ["of which a fresh interpreter's imports, before any training (below)",
             f"{after_imports / mb:,.0f} MB"],
            ["of which training memory (summary.json, the budget's measure)",
             f"{run['training_bytes'] / mb:,.0f} MB"],
            ["of which the rest (Ray's worker runtime, gloo, the run's own objects)",
             f"{rest / mb:,.0f} MB"]]  # fmt: skip
    previous = 0
    for name, dirty in ladder.items():
        rows.append([f"imports: {name}", f"+{(dirty - previous) / mb:,.0f} MB"])
        previous = dirty
    rows.append(["imports: Python objects among them (tracemalloc)",
                 f"{data['imports']['python_objects_bytes'] / mb:,.0f} MB"])  # fmt: skip
    return table([f"{run['nodes']} nodes, bench_scale's command", "private or PSS"], rows)


TABLES: dict[str, tuple[str, Renderer]] = {
    "worker_memory": ("bench_worker_memory.json", worker_memory)
}
"""BENCHMARKS.md block name: (result file, renderer); tables.py gathers them."""


if __name__ == "__main__":
    main()
