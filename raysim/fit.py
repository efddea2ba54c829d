"""Memory planner: how big a batch fits in one node's partition, and how many nodes fit.

Each trial is a real one-node raysim run (a Ray Train worker with the same budget
enforcement, the same data and model, a few training steps and an evaluation),
because the memory a worker charges to its budget depends on how Ray runs it (the
training function runs in a worker thread with its own allocator arena): a plain
process measured differently here. The search doubles the batch until a trial
fails, then bisects to `resolution`. It measures one node: DDP's gradient buckets
(about the gradients' size) come on top when a node has peers, unless the plan gives
DDP one bucket with the gradients as views into it (raysim.plan.ddp_bucket_mb).

A launched script's trials set its own batch-size option on its command line and end it
after TRIAL_STEPS optimizer steps, whatever its epochs."""

from __future__ import annotations

import dataclasses
import math
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass

from raysim.cluster import SimCluster
from raysim.config import ExperimentConfig, replace
from raysim.config.script import ScriptSpec, option_value, with_option
from raysim.experiment import run
from raysim.failures import PARTITION_TEXT, RunFailedError
from raysim.node_program import check_data_dir_read, check_state_fits
from raysim.plan import ResourcePlan, max_nodes_per_device
from raysim.units import MB, gib

TRIAL_STEPS = 3
MAX_BATCH = 65_536
HEADROOM = 0.10
"""A batch fits only with this share of the budget to spare: near the edge the same batch
peaks a few per cent apart from run to run, and a plan must still hold when it is rerun."""


@dataclass
class Trial:
    batch_size: int
    fits: bool
    """Ran, with at least HEADROOM of the budget to spare."""
    ran_out: bool
    """Failed with the out-of-memory error."""
    peak_bytes: int
    """Training memory at its peak, within steps too, or what the CPU's enforced limit saw at
    step boundaries if more (the budget, for a trial that ran out)."""


@dataclass
class FitResult:
    memory_fraction: float
    budget_bytes: int
    device_memory_bytes: int
    largest_batch: int
    """Largest per-node batch that fits with HEADROOM to spare; 0 if none searched does."""
    first_out_of_memory_batch: int | None
    """Smallest batch tried that ran out of memory, if any."""
    resolution: int
    batch_size: int
    """The config's batch, measured for the node count below."""
    peak_at_batch_bytes: int
    min_memory_fraction: float
    max_nodes: int
    """Most nodes that fit on the device at the config's batch (memory and gpu_fraction)."""
    trials: list[Trial]

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ScriptTrials:
    """A launched script to fit: its batch size is its own command-line option."""

    script: ScriptSpec
    batch_option: str
    """e.g. --batch-size: set to each trial's batch (added where the script's arguments
    do not give it)."""

    def given_batch(self) -> int | None:
        """The batch the script's own arguments give, if they give one as an integer."""
        value = option_value(self.script.args, self.batch_option)
        return int(value) if value is not None and value.isdigit() else None

    def at(self, batch: int) -> ScriptSpec:
        args = with_option(self.script.args, self.batch_option, batch)
        return dataclasses.replace(self.script, args=args, stop_after_steps=TRIAL_STEPS)


class _TrialRunner:
    def __init__(self, cfg: ExperimentConfig, plan: ResourcePlan, run_dir: str,
                 train_fn: Callable | None, script: ScriptTrials | None):  # fmt: skip
        self.cfg = cfg
        self.plan = plan
        self.run_dir = run_dir
        self.train_fn = train_fn
        self.script = script
        self.trials: list[Trial] = []

    def __call__(self, batch: int) -> Trial:
        trial_cfg = replace(
            self.cfg, num_nodes=1, batch_size=batch, num_epochs=1,
            max_steps_per_epoch=TRIAL_STEPS, run_dir=self.run_dir, run_name=f"fit-b{batch}",
        )  # fmt: skip
        try:
            script = None if self.script is None else self.script.at(batch)
            result = run(trial_cfg, train_fn=self.train_fn, out=None, script=script)
            peak = judged_peak(result.summary["nodes"][0])
            fits = peak <= (1 - HEADROOM) * self.plan.memory_budget_bytes
            trial = Trial(batch, fits, False, peak)
        except RunFailedError as err:
            if PARTITION_TEXT not in str(err):
                raise
            trial = Trial(batch, False, True, self.plan.memory_budget_bytes)
        self.trials.append(trial)
        return trial


def judged_peak(node: dict) -> int:
    """A trial node's peak as fit judges it: what the node held, or on the CPU what the
    enforced limit saw at step boundaries (the data segment), if more."""
    return max(node["memory_peak_bytes"], node.get("memory_limit_peak_bytes") or 0)


def search_largest(fits, resolution: int, start: int = 2, limit: int = MAX_BATCH) -> int:
    """Largest multiple of `resolution` for which fits(batch) holds (0 if none).

    Starts at `start` rounded to the resolution and never below 2: BatchNorm
    cannot train on a batch of one.
    """
    good, bad = 0, None
    batch = max(start // resolution * resolution, resolution, 2)
    while batch <= limit:
        if fits(batch):
            good, batch = batch, batch * 2
        else:
            bad = batch
            break
    if bad is None:
        return good
    while bad - good > resolution:
        middle = (good + bad) // 2 // resolution * resolution
        if middle <= good:
            break
        good, bad = (middle, bad) if fits(middle) else (good, middle)
    return good


def plan_memory(
    cfg: ExperimentConfig,
    plan: ResourcePlan,
    resolution: int = 1,
    train_fn: Callable[[dict], None] | None = None,
    script: ScriptTrials | None = None,
) -> FitResult:
    """train_fn: the user's function, which must read config["batch_size"]; script: a
    launched script instead; default the built-in experiment. A trial runs TRIAL_STEPS
    steps (max_steps_per_epoch, or the script's optimizer steps)."""
    if train_fn is None and script is None:
        check_state_fits(cfg, plan)  # before Ray starts: no batch fits below the state floor
        check_data_dir_read(cfg)
    with (
        tempfile.TemporaryDirectory(prefix="raysim-fit-") as run_dir,
        SimCluster(plan, cfg.address, cfg.verbose),
    ):
        runner = _TrialRunner(cfg, plan, run_dir, train_fn, script)
        largest = search_largest(lambda b: runner(b).fits, resolution, start=cfg.batch_size)
        at_batch = next((t for t in runner.trials if t.batch_size == cfg.batch_size), None)
        at_batch = at_batch or runner(cfg.batch_size)
    min_fraction = at_batch.peak_bytes / plan.device_memory_bytes
    memory_nodes = math.floor(1 / min_fraction) if min_fraction > 0 else MAX_BATCH
    return FitResult(
        memory_fraction=plan.memory_fraction,
        budget_bytes=plan.memory_budget_bytes,
        device_memory_bytes=plan.device_memory_bytes,
        largest_batch=largest,
        first_out_of_memory_batch=min(
            (t.batch_size for t in runner.trials if t.ran_out), default=None
        ),
        resolution=resolution,
        batch_size=cfg.batch_size,
        peak_at_batch_bytes=at_batch.peak_bytes,
        min_memory_fraction=min_fraction,
        max_nodes=min(memory_nodes, max_nodes_per_device(cfg.gpu_fraction)),
        trials=sorted(runner.trials, key=lambda t: t.batch_size),
    )


def _first_out(result: FitResult) -> str:
    if result.first_out_of_memory_batch is None:
        return "no batch tried ran out of memory"
    return f"first out of memory at batch {result.first_out_of_memory_batch}"


def format_fit(result: FitResult) -> str:
    lines = [
        f"memory partition: {result.memory_fraction:.2f} × {gib(result.device_memory_bytes)} "
        f"= {result.budget_bytes / MB:.0f} MB per node",
        f"largest batch per node that fits with {HEADROOM:.0%} headroom: {result.largest_batch} "
        f"(searched in steps of {result.resolution}; {_first_out(result)})",
        f"at batch {result.batch_size}: peak {result.peak_at_batch_bytes / MB:.0f} MB of training "
        f"memory, i.e. memory_fraction ≥ {result.min_memory_fraction:.3f}; "
        f"at most {result.max_nodes} nodes fit on the device",
        "",
        "batch  fits  out of memory  peak MB",
    ]
    lines += [
        f"{t.batch_size:>5}  {'yes' if t.fits else 'no':<4}  {'yes' if t.ran_out else 'no':<13}"
        f"  {t.peak_bytes / MB:>7.0f}"
        for t in result.trials
    ]
    return "\n".join(lines)
