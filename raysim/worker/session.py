"""This worker's session as a simulated node, and the public calls made on it.

raysim sets up the node (threads, device, memory cap) before calling the training
function; `prepare` adds what needs the model (DDP, the network emulation hook,
stragglers, the memory budget set after setup); `report` adds raysim's measurements.
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
from raysim.procfs import peak_rss_bytes, process_rss_bytes
from raysim.rundir import PROFILE_DIR, STARTUP_KEY, TRACE_KEY, node_memory_path, raysim_home
from raysim.worker.emulation import Emulation, set_up_emulation
from raysim.worker.faults import FaultInjector
from raysim.worker.memory import MemoryGuard, SimulatedOutOfMemoryError, memory_guard
from raysim.worker.memory_watch import MemoryWatch
from raysim.worker.meter import MeasuredLoader, StepMeter
from raysim.worker.model_facts import (
    ModelFacts,
    watch_default_buckets,
    watch_single_node_buckets,
)
from raysim.worker.nvml import nvml_metrics
from raysim.worker.profiler import NodeProfiler
from raysim.worker.startup import StartupMarks
from raysim.worker.step_posts import StepPoster
from raysim.worker.tracer import StepTracer


@dataclass(frozen=True)
class NodeContext:
    node_id: str
    """The simulated node: node-<rank>, or under multi_node its Ray node's label (ranks
    move when an elastic run loses a node; the node keeps its name)."""
    ray_node_id: str
    """The Ray node this simulated node landed on (a real node on an existing cluster)."""
    rank: int
    world_size: int
    device: torch.device
    memory_budget_bytes: int
    config: ExperimentConfig
    plan: ResourcePlan
    run_dir: Path
    cache_dir: Path
    """Where data decoded once is kept for every run ($RAYSIM_HOME/cache)."""

    @property
    def node_index(self) -> int:
        return int(self.node_id.rsplit("-", 1)[1])


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
    faults: FaultInjector
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

    @property
    def holds_a_budget(self) -> bool:
        """Enforced on CUDA always, on the simulated device unless enforce_memory is off."""
        ctx = self.context
        return ctx.plan.device_kind == "cuda" or ctx.config.enforce_memory

    def check_state_floor(self, parameters: int, optimizer: Any = None) -> None:
        """Refuse a budget below the model's gradients (at prepare) and the optimizer's
        moments (before its first step allocates them): the run could only fail there."""
        if not self.holds_a_budget:
            return
        ctx, plan = self.context, self.context.plan
        moments = None if optimizer is None else optimizer_moments(optimizer)
        problem = state_floor_problem(
            parameters, plan.memory_budget_bytes, plan.memory_fraction, plan.device_memory_bytes,
            moments, type(optimizer).__name__,
        )  # fmt: skip
        if problem is not None:
            raise SimulatedOutOfMemoryError(f"{ctx.node_id} (rank {ctx.rank}): {problem}")

    def before_optimizer_step(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        self.meter.before_optimizer_step()
        if not self.floor_checked and self.facts is not None:
            self.floor_checked = True
            self.check_state_floor(self.facts.trainable_parameters, optimizer)

    def step_ended(self, optimizer: Any) -> None:
        if self.guard is not None:
            self.guard.sample()
        if self.facts is not None:
            self.facts.step_done()

    def forward_ended(self, now: float) -> None:
        if self.guard is not None:
            self.guard.sample()  # the activations are all alive now
        if self.facts is not None:
            self.facts.backward_starts(now)

    def measure(self, model: torch.nn.Module) -> None:
        """Hooks on the model (after the stragglers', so a straggler's sleep is in its
        step) and on this process's optimizer steps."""
        ctx, meter = self.context, self.meter
        if ctx.world_size == 1:
            watch_single_node_buckets(model, self.facts, ctx.plan.ddp_bucket_mb)
        watch_default_buckets(model, self.facts)
        model.register_forward_pre_hook(meter.before_forward)
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
        ctx = self.context
        measures = ctx.config.measure_steps
        tracer = StepTracer(ctx.config.trace_steps) if measures and ctx.config.trace_steps else None
        self.emulation = set_up_emulation(
            model, ctx.config, ctx.rank, ctx.world_size, facts.bucket_ready if measures else None,
            tracer, host_allreduce=ctx.plan.host_allreduce, on_shared_bytes=self.shared_bytes,
        )  # fmt: skip
        if measures:
            self.facts = facts
            self.meter.tracer = tracer
            if loader is not None:
                loader = MeasuredLoader(loader, self.meter)
            self.measure(model)
            if ctx.config.profile_steps:
                profiler = NodeProfiler(
                    ctx.config.profile_steps,
                    ctx.device,
                    ctx.run_dir / PROFILE_DIR / f"{ctx.node_id}.json",
                )
                self.meter.on_step_end.append(profiler.step_done)
        self.guard = memory_guard(ctx.config, ctx.plan, ctx.rank)
        self.end()
        if self.guard is not None and self.guard.enforced:
            self.memory_watch = MemoryWatch(self.guard, node_memory_path(ctx.run_dir, ctx.rank))
        return loader

    def end(self) -> None:
        """The node's function returned or raised."""
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
        config=cfg,
        plan=plan,
        run_dir=Path(run_dir),
        cache_dir=raysim_home() / "cache",
    )
    _current = NodeSession(context, FaultInjector(cfg.faults, run_dir, context.node_index))
    if progress_board is not None:
        _current.poster = StepPoster(progress_board, rank)
    _current.startup.mark("node_start", called_unix)
    _current.startup.mark("node_ready")
    return context


def context() -> NodeContext:
    return current_session().context


def prepare(model: torch.nn.Module, loader=None):
    """DDP (backend chosen by the plan), the sampler (a loader with a DistributedSampler
    keeps it), the network hook, stragglers, the memory budget and raysim's measurements
    of every step. Returns the model, or (model, loader) when a loader is given.
    """
    import ray.train.torch

    session = current_session()
    session.startup.mark("prepare_start")
    ctx = session.context
    facts = ModelFacts.of(model)
    session.check_state_floor(facts.trainable_parameters)
    model = ray.train.torch.prepare_model(model, parallel_strategy_kwargs=ctx.plan.ddp_kwargs)
    if loader is not None:
        loader = ray.train.torch.prepare_data_loader(loader)
    loader = session.instrument(model, loader, facts)
    session.startup.mark("prepare_end")
    return model if loader is None else (model, loader)


def progress(epoch: int, step: int, total: int) -> None:
    """Step `step` of `total` in `epoch` is done: moves the console's bar (a terminal only)."""
    session = current_session()
    if session.poster is not None:
        session.poster(epoch, step, total)


def inject_faults(epoch: int, step: int) -> None:
    """Fire any fault injected for this node at this step (call before the step)."""
    current_session().faults.at_step(epoch, step)


def sample_memory() -> None:
    """Note the memory in use now (call once per step for an exact per-report peak)."""
    session = current_session()
    if session.guard is not None:
        session.guard.sample()


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
    """PyTorch's own peaks since the last report (then reset), and what NVML sees."""
    figures = {
        "cuda_peak_allocated_bytes": torch.cuda.max_memory_allocated(device),
        "cuda_peak_reserved_bytes": torch.cuda.max_memory_reserved(device),
        **nvml_metrics(device.index or 0),
    }
    torch.cuda.reset_peak_memory_stats(device)
    return figures


def report(metrics: dict[str, Any], checkpoint=None) -> None:
    """ray.train.report with raysim's measurements added (the user's keys win)."""
    import ray.train

    session = current_session()
    merged = {**raysim_measurements(), **metrics}
    session.export(merged)
    start = time.perf_counter()
    ray.train.report(merged, checkpoint=checkpoint)
    end = time.perf_counter()
    session.report_s = end - start
    if session.meter.tracer is not None:
        session.meter.tracer.reported(start, end, checkpoint is not None)
