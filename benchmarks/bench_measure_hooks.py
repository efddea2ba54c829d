"""What raysim's step measurements cost a step of the transformer example, without Ray.

    python benchmarks/bench_measure_hooks.py [--launched] [--ranks 2] [--pairs 600] \\
        [--full-pairs 300] [--identical] [--out benchmarks/results/bench_measure_hooks.json]

gloo ranks (processes on this host, each with the torch threads a raysim node of that
many gets) each hold two DDP copies of examples/transformer_lm.py's model, wrapped as
raysim wraps it: one plain (what `prepare` leaves with measure_steps off: the comm hook
with the all-reduce the plan picks, through shared memory here), one instrumented by the
same `NodeSession.instrument` that `prepare` calls (that comm hook, which adds no delay
on loopback, with the step meter's forward, loader and optimizer hooks, the model facts'
gradient hooks, the memory samples, the tracer for its first steps). So both copies
all-reduce alike and only the measurements differ. The instrumented copy's session
enforces the memory partition as a default run does, so its 20 ms memory watch runs in
the rank's process through both copies' steps (with measure_steps off it runs too: it
is no step measurement). The copies alternate every step, the order swapped every pair,
so the machine's drift falls on both alike; a step's time is the slowest rank's.

The measurements are meant to cost the same per step whatever the tensors' sizes (they
count, time and sample; they never touch gradient data), so their cost is read where the
machine's noise is small in absolute terms (the example's own row, and with --identical
two identical copies at its width, test that assumption): on the same model at width 8
(the same modules, parameter tensors and buckets; a step of ~13 ms). Which copy is built
first shifts a step by about ±0.1 ms (a check with two identical copies shows it), so
every phase runs twice in fresh processes, once with each copy built first, and the two
are averaged: the cost is the mean of the two orders' median paired differences, with a
95 % bootstrap interval. That cost over the plain step of the real model (width 128, the
example's) is the overhead; the real model's own paired ratio, noisier, is kept beside
it. `--identical` also runs the check with two identical copies, at width 8 and at the
example's width (what the real model's own row reads when nothing differs).

`--launched`: the instrumented copy is what `raysim launch` makes of a script's own
model instead. Its `DistributedDataParallel(model)` is built under the launcher's patches
(script_hooks.install), whose DDP init instruments it as it adopts a script's DDP (the
plan's DDP settings, the memory floor, `NodeSession.instrument` with no loader to time:
the samples counted in the forward hook), and its every step runs under them (the
loss read at each backward, the fault check before each optimizer step). The patches are
process-wide, so they are put on before each of its steps and taken off after, outside
the timed step; the plain copy steps without them. Its metrics lines (one per epoch, or
per 50 steps) are reports, left out as the other copies' reports are. The model is
still the transformer example's, not examples/torchrun_ddp.py's: that script's 32-256-2
MLP steps in about 2 ms or less, so 1 % of its step is under 20 µs, well below what this
method resolves (about ±0.15 ms), and raysim's fixed per-step cost is a large share of
any step that small.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from common import parse, provenance
from formatting import Renderer, signed, table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from examples.transformer_lm import DEFAULTS, TinyLM, bigram_corpus  # noqa: E402
from raysim.config import ExperimentConfig, replace  # noqa: E402
from raysim.plan.resources import Hardware, make_plan  # noqa: E402
from raysim.worker.emulation import set_up_emulation  # noqa: E402
from raysim.worker.faults import FaultInjector  # noqa: E402
from raysim.worker.model_facts import ModelFacts  # noqa: E402
from raysim.worker.node_context import NodeContext  # noqa: E402
from raysim.worker.session import NodeSession  # noqa: E402

BATCH = 16
"""The batch per node of bench_measure.py's runs of the example."""
COST_WIDTH = 8
WARM_UP_STEPS = 5
"""Each copy's first steps, left out: DDP rebuilds its buckets after the first."""


class Copy:
    """One DDP copy of the example's model with its optimizer and an endless loader.

    hooks: "plain", or how raysim instruments it: "prepare" or "launched" (as `raysim
    launch` does a script's model); `patched()` is what its every step runs under (the
    launcher's patches for a launched copy, nothing otherwise)."""

    def __init__(self, width: int, session: NodeSession, hooks: str):
        d = DEFAULTS
        torch.manual_seed(0)
        model = TinyLM(d["vocab"], d["context"], width, d["layers"], d["heads"])
        ctx, plan = session.context, session.plan
        data = bigram_corpus(d["vocab"], d["context"], d["sequences"], 0)
        loader = torch.utils.data.DataLoader(data, batch_size=BATCH, shuffle=True)
        self.patched: Callable[[], AbstractContextManager] = contextlib.nullcontext
        self.script_losses: Callable[[], int] = lambda: 0
        if hooks == "launched":
            self.model = self.launched(model, session)
        else:
            self.model = torch.nn.parallel.DistributedDataParallel(model, **plan.ddp_kwargs)
        if hooks == "prepare":
            loader = session.instrument(self.model, loader, ModelFacts.of(model))
        elif hooks == "plain":  # what instrument sets up with measure_steps off, less its guard
            set_up_emulation(self.model, replace(session.config, measure_steps=False),
                             session.strategy, ctx.rank, ctx.world_size,
                             host_allreduce=plan.host_allreduce,
                             on_shared_bytes=session.shared_bytes)  # fmt: skip
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-3)
        self.batches = itertools.chain.from_iterable(itertools.repeat(loader))
        self.loss = torch.nn.CrossEntropyLoss()

    def launched(self, model: torch.nn.Module, session: NodeSession) -> torch.nn.Module:
        """The model as a script builds it, `DistributedDataParallel(model)`, under the
        launcher's patches: their DDP init adopts and instruments it."""
        # Imported here: it imports ray.train, which the other modes' processes do not need.
        from raysim.worker.launchers.script_hooks import ScriptReports, install

        reports = ScriptReports(session, send=unsent, every=sys.maxsize)

        @contextlib.contextmanager
        def patched():
            patches = install(session, reports)
            try:
                yield
            finally:
                patches.restore()

        self.patched = patched
        self.script_losses = lambda: reports.losses
        with patched():
            return torch.nn.parallel.DistributedDataParallel(model)

    def step(self) -> None:
        inputs, targets = next(self.batches)
        logits = self.model(inputs)
        loss = self.loss(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()


def unsent(metrics: dict, checkpoint: object = None) -> None:
    """A launched copy's metrics line, never due (every=sys.maxsize): a report's cost."""


def node_session(rank: int, world: int, run_dir: Path) -> NodeSession:
    """A node's session as raysim.worker.session.start makes it, without Ray Train."""
    cfg = ExperimentConfig(num_nodes=world, run_dir=str(run_dir))  # a default run's settings
    plan = make_plan(cfg, Hardware(num_cpus=len(os.sched_getaffinity(0))))
    context = NodeContext(
        node_id=f"node-{rank}", ray_node_id="", rank=rank, world_size=world,
        device=torch.device("cpu"), memory_budget_bytes=plan.memory_budget_bytes,
        run_dir=run_dir, cache_dir=run_dir,
    )  # fmt: skip
    return NodeSession(context, cfg, plan, FaultInjector(cfg.faults, run_dir, rank))


def worker(rank: int, world: int, phase: dict, port: int, queue) -> None:
    """One rank of one phase: both copies built in the phase's order, then the pairs."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    with tempfile.TemporaryDirectory() as run_dir:
        session = node_session(rank, world, Path(run_dir))
        plan = session.plan
        torch.set_num_threads(plan.torch_threads)
        copies = {}
        for name in phase["build_order"]:
            instrumented = name == "instrumented" and not phase["identical"]
            hooks = phase["hooks"] if instrumented else "plain"
            copies[name] = Copy(phase["width"], session, hooks)
        for _ in range(WARM_UP_STEPS):
            for copy in copies.values():
                with copy.patched():
                    copy.step()
        pairs = phase["pairs"]
        seconds = {name: torch.zeros(pairs, dtype=torch.float64) for name in copies}
        for pair in range(pairs):
            order = ("plain", "instrumented") if pair % 2 == 0 else ("instrumented", "plain")
            for name in order:
                with copies[name].patched():  # the launcher's patches on: not timed
                    start = time.perf_counter()
                    copies[name].step()
                    seconds[name][pair] = time.perf_counter() - start
        session.end()
        for times in seconds.values():
            dist.all_reduce(times, op=dist.ReduceOp.MAX)
        if rank == 0:  # the counts say whose steps the hooks saw: the instrumented copy's
            losses = sum(copy.script_losses() for copy in copies.values())
            counted = {"measured_steps": session.meter.total_steps, "script_losses": losses}
            step_seconds = {name: times.tolist() for name, times in seconds.items()}
            queue.put({"step_seconds": step_seconds, "counted": counted})
    dist.destroy_process_group()


def run_phase(ranks: int, phase: dict, port: int) -> dict:
    """Rank 0's account of the phase: step_seconds (each copy's, slowest rank) and counted."""
    context = mp.get_context("spawn")
    queue = context.Queue()
    procs = [
        context.Process(target=worker, args=(r, ranks, phase, port, queue)) for r in range(ranks)
    ]
    for proc in procs:
        proc.start()
    result = queue.get()
    for proc in procs:
        proc.join()
    return result


def added_seconds(orders: list[dict[str, list[float]]], draws: int = 2000):
    """The mean over build orders of the median paired difference (instrumented − plain),
    and its 2.5 and 97.5 percentiles over pairs drawn with repeats within each order."""

    def estimate(diffs: list[list[float]]) -> float:
        return statistics.fmean(statistics.median(d) for d in diffs)

    diffs = [[m - p for m, p in zip(o["instrumented"], o["plain"], strict=True)] for o in orders]
    rng = random.Random(0)
    resampled = sorted(
        estimate([[d[rng.randrange(len(d))] for _ in d] for d in diffs]) for _ in range(draws)
    )
    return estimate(diffs), resampled[int(0.025 * draws)], resampled[int(0.975 * draws) - 1]


def paired_ratio(orders: list[dict[str, list[float]]]) -> float:
    """Mean over build orders of the median per-pair ratio instrumented / plain."""
    return statistics.fmean(
        statistics.median(m / p for m, p in zip(o["instrumented"], o["plain"], strict=True))
        for o in orders
    )


def phases(width: int, pairs: int, hooks: str, identical: bool = False) -> list[dict]:
    return [
        {"width": width, "pairs": pairs, "hooks": hooks, "identical": identical,
         "build_order": order}
        for order in (("instrumented", "plain"), ("plain", "instrumented"))
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--pairs", type=int, default=600, help="pairs per order, cost phase")
    parser.add_argument("--full-pairs", type=int, default=300, help="pairs per order, width 128")
    parser.add_argument("--identical", action="store_true", help="also two identical copies")
    parser.add_argument("--launched", action="store_true",
                        help="instrumented as `raysim launch` does a script's DDP")  # fmt: skip
    parser.add_argument("--port", type=int, default=29533)
    parser.add_argument("--out")
    args = parse(parser)
    hooks = "launched" if args.launched else "prepare"
    groups = {"cost": phases(COST_WIDTH, args.pairs, hooks),
              "full": phases(DEFAULTS["width"], args.full_pairs, hooks)}  # fmt: skip
    if args.identical:
        groups["identical"] = phases(COST_WIDTH, args.pairs, hooks, identical=True)
        groups["identical_full"] = phases(DEFAULTS["width"], args.full_pairs, hooks,
                                          identical=True)  # fmt: skip
    measured = {
        name: [{**phase, **run_phase(args.ranks, phase, args.port)} for phase in group]
        for name, group in groups.items()
    }
    summary = {}
    for name, runs in measured.items():
        orders = [run["step_seconds"] for run in runs]
        added, low, high = added_seconds(orders)
        plain = statistics.median(s for o in orders for s in o["plain"])
        summary[name] = {"width": runs[0]["width"], "pairs_per_order": runs[0]["pairs"],
                         "plain_step_ms": plain * 1e3, "added_ms": added * 1e3,
                         "added_ms_ci95": [low * 1e3, high * 1e3],
                         "paired_ratio": paired_ratio(orders)}  # fmt: skip
        print(f"{name}: width {runs[0]['width']}, plain step {plain * 1e3:.2f} ms, added "
              f"{added * 1e3:+.3f} ms ({low * 1e3:+.3f} to {high * 1e3:+.3f}), paired ratio "
              f"{summary[name]['paired_ratio']:.4f}")  # fmt: skip
    cost, full = summary["cost"], summary["full"]
    overhead = {
        "of_full_step": cost["added_ms"] / full["plain_step_ms"],
        "ci95": [bound / full["plain_step_ms"] for bound in cost["added_ms_ci95"]],
    }
    print(f"overhead on the example's step: {overhead['of_full_step']:+.2%} "
          f"({overhead['ci95'][0]:+.2%} to {overhead['ci95'][1]:+.2%})")  # fmt: skip
    result = {
        **provenance(args.allow_dirty),
        "settings": {**vars(args), "hooks": hooks, "batch": BATCH, "cost_width": COST_WIDTH,
                     "full_width": DEFAULTS["width"]},
        "summary": summary,
        "overhead": overhead,
        "phases": measured,
    }  # fmt: skip
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
        print(f"written: {args.out}")


# --- BENCHMARKS.md's tables from this bench's results -------------------------


MEASURE_HOOK_PHASES = {
    "cost": "the model at width 8: raysim's cost per step",
    "full": "the example's model (width 128)",
    "identical": "check: two identical copies, width 8",
    "identical_full": "check: two identical copies, width 128",
}


def measure_hooks(data: dict) -> str:
    rows = []
    for name, label in MEASURE_HOOK_PHASES.items():
        phase = data["summary"].get(name)
        if phase is None:
            continue
        low, high = phase["added_ms_ci95"]
        rows.append([
            label,
            f"{phase['pairs_per_order']} × 2",
            f"{phase['plain_step_ms']:.2f} ms",
            f"{signed(phase['added_ms'], 3)} ms ({signed(low, 3)} to {signed(high, 3)})",
            f"{phase['paired_ratio']:.4f}",
        ])  # fmt: skip
    overhead = data["overhead"]
    low, high = overhead["ci95"]
    header = ["copies", "pairs × build orders", "plain step (median)",
              "added per step (95 % interval)", "paired ratio"]  # fmt: skip
    return (
        table(header, rows) + f"\n\nOverhead on the example's step (cost ÷ its plain step): "
        f"**{overhead['of_full_step']:.2%}** (95 % interval {low:.2%} to {high:.2%})."
    )


def measure_hooks_launched(data: dict | None) -> str:
    """The same table for `--launched`, "not measured" until its file exists."""
    if data is not None:
        return measure_hooks(data)
    header = ["copies", "added per step (95 % interval)"]
    rows = [[label, "not measured"] for label in MEASURE_HOOK_PHASES.values()]
    return table(header, rows)


TABLES: dict[str, tuple[str, Renderer]] = {
    "measure_hooks": ("bench_measure_hooks.json", measure_hooks),
    "measure_hooks_launched": ("bench_measure_hooks_launched.json", measure_hooks_launched),
}
"""BENCHMARKS.md block name: (result file, renderer); tables.py gathers them."""


if __name__ == "__main__":
    main()
