"""This worker's session as a simulated node: what the public calls (api.py) act on.

raysim sets up the node (threads, device, memory cap) before its launcher runs the
training; `prepare` adds what needs the model (the strategy's wrapper and its network
emulation hooks, stragglers, the memory budget set after setup); `report` adds the
measurements gathered here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.optim.optimizer import (
    register_optimizer_step_post_hook,
    register_optimizer_step_pre_hook,
)

from raysim.config.schema import ExperimentConfig
from raysim.errors import is_number
from raysim.plan.memory_floor import optimizer_moments, state_floor_problem
from raysim.plan.resources import NODE_LABEL, ResourcePlan
from raysim.procfs import peak_rss_bytes, process_rss_bytes, pss_bytes
from raysim.rundir import PROFILE_DIR, STARTUP_KEY, TRACE_KEY, node_memory_path, raysim_home
from raysim.worker.collective_ledger import CollectiveLedger
from raysim.worker.emulation import Emulation, set_up_emulation
from raysim.worker.faults import FaultInjector
from raysim.worker.hang_watch import HangWatch
from raysim.worker.memory import (
    MemoryGuard,
    SimulatedOutOfMemoryError,
    memory_guard,
    samples_memory,
)
from raysim.worker.memory_watch import MemoryWatch
from raysim.worker.meter import MeasuredLoader, StepMeter
from raysim.worker.model_facts import ModelFacts
from raysim.worker.node_context import NodeContext
from raysim.worker.nvml import nvml_metrics
from raysim.worker.profiler import NodeProfiler
from raysim.worker.startup import StartupMarks
from raysim.worker.step_posts import StepPoster
from raysim.worker.strategies import Strategy, get_strategy
from raysim.worker.tracer import StepTracer

# Exported as Ray metrics (raysim_<name>, tagged by simulated node) on every report:
# the dashboard's Metrics view and the node's Prometheus endpoint show them.
RAY_GAUGES = {
    "step_time_s": "Mean training step time this epoch (s)",
    "samples_per_s": "Training samples per second this epoch",
    "memory_peak_bytes": "Peak training memory charged to the node's budget (bytes)",
    "memory_budget_bytes": "The node's memory budget (bytes)",
    "train_loss": "Mean training loss this epoch",
    "loss": "Loss reported by the training function",
}


@dataclass
class NodeSession:
    """One simulated node in this worker process: what `prepare` installed, what `report`
    reads."""

    context: NodeContext
    config: ExperimentConfig
    plan: ResourcePlan
    faults: FaultInjector
    strategy: Strategy = field(init=False)
    """The config's strategy: wraps the model, hooks its collectives, holds its state."""
    guard: MemoryGuard | None = None
    emulation: Emulation | None = None
    meter: StepMeter = field(default_factory=StepMeter)
    facts: ModelFacts | None = None
    optimizer_hooks: list = field(default_factory=list)
    """This process's optimizer-step hooks (torch.optim's global registry)."""
    floor_checked: bool = False
    last_report: float = field(default_factory=time.perf_counter)
    report_s: float | None = None
    """How long the previous ray.train.report blocked (barrier, checkpoint, callback)."""
    gauges: dict[str, Any] = field(default_factory=dict)
    poster: StepPoster | None = None
    """Posts steps to the driver's progress bar, when it draws one."""
    startup: StartupMarks = field(default_factory=StartupMarks)
    memory_watch: MemoryWatch | None = None
    """Keeps the enforced CPU partition's use on disk, for a process that dies at it."""
    ledger: CollectiveLedger | None = None
    """The collectives this node entered, where collective_timeout_s sets a hang watch."""
    hang_watch: HangWatch | None = None

    def __post_init__(self) -> None:
        self.strategy = get_strategy(self.config.strategy)

    @property
    def holds_a_budget(self) -> bool:
        """Enforced on CUDA always, on the simulated device unless enforce_memory is off."""
        return self.plan.device_kind == "cuda" or self.config.enforce_memory

    def check_state_floor(self, parameters: int, optimizer: Any = None) -> None:
        """Refuse a budget below the model's gradients (at prepare) and the optimizer's
        moments (before its first step allocates them): the run could only fail there."""
        if not self.holds_a_budget:
            return
        ctx, plan = self.context, self.plan
        moments = None if optimizer is None else optimizer_moments(optimizer)
        state = self.strategy.training_state(
            parameters, moments, type(optimizer).__name__, ctx.world_size
        )
        problem = state_floor_problem(
            state, plan.memory_budget_bytes, plan.memory_fraction, plan.device_memory_bytes
        )
        if problem is not None:
            raise SimulatedOutOfMemoryError(f"{ctx.node_id} (rank {ctx.rank}): {problem}")

    def before_optimizer_step(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        self.meter.before_optimizer_step()
        if not self.floor_checked and self.facts is not None:
            self.floor_checked = True
            self.check_state_floor(self.facts.trainable_parameters, optimizer)

    def _samples(self, completed: int = 0) -> bool:
        """Whether the running step (or, completed=1, the one just ended) samples memory."""
        meter = self.meter
        return self.guard is not None and samples_memory(
            meter.steps - completed, meter.total_steps - completed
        )

    def step_ended(self, optimizer: Any) -> None:
        if self._samples(completed=1):
            self.guard.sample()
        if self.facts is not None:
            self.facts.step_done()

    def sample_memory(self) -> None:
        if self._samples():
            self.guard.sample()

    def forward_ended(self, now: float) -> None:
        self.sample_memory()  # the activations are all alive now
        if self.facts is not None:
            self.facts.backward_starts(now)

    def measure(self, model: torch.nn.Module) -> None:
        """Hooks on the model (after the stragglers', so a straggler's sleep is in its
        step) and on this process's optimizer steps."""
        meter = self.meter
        self.strategy.watch_model(model, self.facts, self.context.world_size, self.plan)
        model.register_forward_pre_hook(meter.before_forward, with_kwargs=True)
        model.register_forward_hook(meter.after_forward)
        meter.on_forward_end.append(self.forward_ended)
        meter.on_step_end.append(self.step_ended)
        if not self.optimizer_hooks:
            self.optimizer_hooks = [
                register_optimizer_step_pre_hook(self.before_optimizer_step),
                register_optimizer_step_post_hook(meter.after_optimizer_step),
            ]

    def instrument(self, model: torch.nn.Module, loader: Any, facts: ModelFacts) -> Any:
        """What raysim adds to the wrapped model and its loader: the network hook and
        stragglers, the step measurements (measure_steps), the memory guard. Returns the
        loader, measured when measurements are on."""
        ctx, cfg = self.context, self.config
        measures = cfg.measure_steps
        tracer = StepTracer(cfg.trace_steps) if measures and cfg.trace_steps else None
        self.emulation = set_up_emulation(
            model, cfg, self.strategy, ctx.rank, ctx.world_size,
            facts.bucket_ready if measures else None, tracer,
            host_allreduce=self.plan.host_allreduce, on_shared_bytes=self.shared_bytes,
            on_enter=None if self.ledger is None else self.ledger.entered,
            sample_memory=self.sample_memory,
        )  # fmt: skip
        if measures:
            self.facts = facts
            self.meter.tracer = tracer
            if loader is not None:
                loader = MeasuredLoader(loader, self.meter, self.faults.before_batch)
            self.measure(model)
            if cfg.profile_steps:
                profiler = NodeProfiler(
                    cfg.profile_steps,
                    ctx.device,
                    ctx.run_dir / PROFILE_DIR / f"{ctx.node_id}.json",
                )
                self.meter.on_step_end.append(profiler.step_done)
        self.guard = memory_guard(cfg, self.plan, ctx.rank)
        self.end_memory_watch()
        if self.guard is not None and self.guard.enforced:
            self.memory_watch = MemoryWatch(self.guard, node_memory_path(ctx.run_dir, ctx.rank))
        return loader

    def at_step(self, epoch: int, step: int) -> None:
        """The function starts this step: noted in the ledger, then any fault fires."""
        if self.ledger is not None:
            self.ledger.at_step(epoch, step)
        self.faults.at_step(epoch, step)

    def watch_for_hangs(self) -> None:
        """Where collective_timeout_s is set and the node has peers: the ledger and watch."""
        ctx, timeout = self.context, self.config.collective_timeout_s
        if timeout is None or ctx.world_size < 2:
            return
        group = worker_group_id()
        self.ledger = CollectiveLedger(ctx.run_dir, group, ctx.rank, ctx.node_id)
        self.hang_watch = HangWatch(ctx.run_dir, group, ctx.world_size, timeout)

    def end(self) -> None:
        """The node's function returned or raised."""
        if self.hang_watch is not None:
            self.hang_watch.close()
        self.end_memory_watch()

    def end_memory_watch(self) -> None:
        if self.memory_watch is not None:
            self.memory_watch.close()
            self.memory_watch = None

    def shared_bytes(self, total_bytes: int) -> None:
        """The host all-reduce moved this node's buckets into shared memory: still its own."""
        if self.guard is not None:
            self.guard.hold_shared(total_bytes)

    def export(self, metrics: dict[str, Any]) -> None:
        """Set the Ray gauges for the figures this report has."""
        from ray.util.metrics import Gauge

        tags = {"node": self.context.node_id}
        for name, description in RAY_GAUGES.items():
            value = metrics.get(name)
            if not is_number(value):
                continue
            if name not in self.gauges:
                self.gauges[name] = Gauge(f"raysim_{name}", description, tag_keys=("node",))
            self.gauges[name].set(float(value), tags=tags)


_current: NodeSession | None = None


def current_session() -> NodeSession:
    if _current is None:
        raise RuntimeError(
            "raysim.worker functions work inside a function run by raysim.run(cfg, train_fn=...)"
        )
    return _current


def start(
    cfg: ExperimentConfig,
    plan: ResourcePlan,
    run_dir: Path,
    progress_board: Any = None,
    called_unix: float | None = None,
) -> NodeContext:
    """Set this worker up as a simulated node (called by raysim before the function;
    called_unix: when Ray Train called raysim on this worker)."""
    import ray
    import ray.train
    import ray.train.torch

    global _current
    if _current is not None:  # a process that hosted a node before: its hooks go
        for handle in _current.optimizer_hooks:
            handle.remove()
        _current.end()
    torch.set_num_threads(plan.torch_threads)
    device = ray.train.torch.get_device()
    if device.type == "cuda":
        torch.cuda.set_per_process_memory_fraction(plan.memory_fraction, device)
    train_context = ray.train.get_context()
    rank = train_context.get_world_rank()
    context = NodeContext(
        node_id=ray.get_runtime_context().get_node_labels().get(NODE_LABEL, f"node-{rank}"),
        ray_node_id=ray.get_runtime_context().get_node_id(),
        rank=rank,
        world_size=train_context.get_world_size(),
        device=device,
        memory_budget_bytes=plan.memory_budget_bytes,
        run_dir=Path(run_dir),
        cache_dir=raysim_home() / "cache",
    )
    _current = NodeSession(
        context, cfg, plan, FaultInjector(cfg.faults, run_dir, context.node_index)
    )
    _current.faults.on_data_wait = _current.meter.waited_for_data
    if progress_board is not None:
        _current.poster = StepPoster(progress_board, rank)
    _current.watch_for_hangs()
    _current.startup.mark("node_start", called_unix)
    _current.startup.mark("node_ready")
    return context


def worker_group_id() -> str:
    """Shared by the ranks of one worker group, new for each (Ray Train makes a
    synchronization actor per group); the process group's address where that is hidden."""
    import os

    try:
        from ray.train.v2._internal.execution.context import get_train_context

        return get_train_context().get_synchronization_actor()._actor_id.hex()
    except (ImportError, AttributeError, RuntimeError):
        return f"{os.environ.get('MASTER_ADDR')}-{os.environ.get('MASTER_PORT')}"


def raysim_measurements() -> dict[str, Any]:
    """What raysim adds to every report: who, when, time since the last report, memory,
    and the emulation's figures (network, stragglers) since the last report."""
    session = current_session()
    ctx = session.context
    now = time.perf_counter()
    figures: dict[str, Any] = {
        "rank": ctx.rank,
        "world_size": ctx.world_size,
        "node_id": ctx.node_id,
        "ray_node_id": ctx.ray_node_id,
        "report_unix": time.time(),
        "interval_s": now - session.last_report,
        "rss_bytes": process_rss_bytes(),
        "peak_rss_bytes": peak_rss_bytes(),
        "pss_bytes": pss_bytes(),
        "memory_budget_bytes": ctx.memory_budget_bytes,
    }
    session.last_report = now
    if session.report_s is not None:
        figures["report_s"] = session.report_s
    figures["prepared"] = session.guard is not None
    if session.guard is not None:
        figures.update(session.guard.take_epoch())
    if session.emulation is not None:
        figures.update(session.emulation.take(session.meter.steps))
    figures.update(session.meter.take())
    if session.meter.tracer is not None:
        figures[TRACE_KEY] = session.meter.tracer.take()
    startup = startup_marks(session)
    if startup is not None:
        figures[STARTUP_KEY] = startup
    if session.facts is not None and ctx.rank == 0 and session.facts.ddp_buckets_bytes:
        figures["model"] = session.facts.to_dict()
    if ctx.device.type == "cuda":
        figures.update(cuda_memory_metrics(ctx.device))
    return figures


def startup_marks(session: NodeSession) -> dict[str, float] | None:
    """This node's start-up marks, once: with the first report after its first step."""
    first_step = session.meter.first_step
    if first_step is not None:
        session.startup.mark_perf("first_step_start", first_step[0])
        session.startup.mark_perf("first_step_end", first_step[1])
    return session.startup.take(steps_measured=session.facts is not None)


def cuda_memory_metrics(device: torch.device) -> dict[str, int]:
    """PyTorch's own peaks since the last report (then reset: the memory guard's next epoch
    starts there too), and what NVML sees."""
    figures = {
        "cuda_peak_allocated_bytes": torch.cuda.max_memory_allocated(device),
        "cuda_peak_reserved_bytes": torch.cuda.max_memory_reserved(device),
        **nvml_metrics(device.index or 0),
    }
    torch.cuda.reset_peak_memory_stats(device)
    return figures
