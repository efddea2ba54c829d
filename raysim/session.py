"""The worker-side API a training function uses on the simulated cluster.

    from raysim import worker

    def train_fn(config):
        ctx = worker.context()                       # node id, rank, world size, device, budget
        model, loader = worker.prepare(model, loader)  # DDP, sampler, device, network, budget
        ...
        worker.report({"epoch": epoch, "loss": loss})  # + raysim's step time and memory

raysim sets up the node (threads, device, memory cap) before calling the function,
and `prepare` adds what needs the model (DDP, network emulation hook, the memory
budget set after setup). A plain `ray.train.report` call works too.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from raysim.config import ExperimentConfig
from raysim.plan import NODE_LABEL, ResourcePlan


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
class _Session:
    context: NodeContext
    guard: Any = None
    emulation: Any = None
    last_report: float = field(default_factory=time.perf_counter)
    report_s: float | None = None
    """How long the previous ray.train.report blocked (barrier, checkpoint, callback)."""
    gauges: dict[str, Any] = field(default_factory=dict)
    poster: Any = None
    """Posts steps to the driver's progress bar (raysim.progress), when it draws one."""

    def export(self, metrics: dict[str, Any]) -> None:
        """Set the Ray gauges for the figures this report has."""
        from ray.util.metrics import Gauge

        tags = {"node": self.context.node_id}
        for name, description in RAY_GAUGES.items():
            value = metrics.get(name)
            if not isinstance(value, int | float) or isinstance(value, bool):
                continue
            if name not in self.gauges:
                self.gauges[name] = Gauge(f"raysim_{name}", description, tag_keys=("node",))
            self.gauges[name].set(float(value), tags=tags)


_current: _Session | None = None


def current_session() -> _Session:
    if _current is None:
        raise RuntimeError(
            "raysim.worker functions work inside a function run by raysim.run(cfg, train_fn=...)"
        )
    return _current


def start(
    cfg: ExperimentConfig, plan: ResourcePlan, run_dir: Path, progress_board: Any = None
) -> NodeContext:
    """Set this worker up as a simulated node (called by raysim before the function)."""
    import ray
    import ray.train
    import ray.train.torch

    global _current
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
    )
    _current = _Session(context)
    if progress_board is not None:
        from raysim.progress import StepPoster

        _current.poster = StepPoster(progress_board, rank)
    return context


def context() -> NodeContext:
    return current_session().context


def prepare(model: torch.nn.Module, loader=None):
    """DDP (backend chosen by the plan), the sampler, the network hook and the memory budget.

    Returns the model, or (model, loader) when a loader is given.
    """
    import ray.train.torch

    from raysim.emulation import set_up_emulation
    from raysim.worker import memory_guard

    session = current_session()
    ctx = session.context
    model = ray.train.torch.prepare_model(model, parallel_strategy_kwargs=ctx.plan.ddp_kwargs)
    if loader is not None:
        loader = ray.train.torch.prepare_data_loader(loader)
    session.emulation = set_up_emulation(model, ctx.config, ctx.rank, ctx.world_size)
    session.guard = memory_guard(ctx.config, ctx.plan, ctx.rank)
    return model if loader is None else (model, loader)


def progress(epoch: int, step: int, total: int) -> None:
    """Step `step` of `total` in `epoch` is done: moves the console's bar (a terminal only)."""
    session = current_session()
    if session.poster is not None:
        session.poster(epoch, step, total)


def sample_memory() -> None:
    """Note the memory in use now (call once per step for an exact per-report peak)."""
    session = current_session()
    if session.guard is not None:
        session.guard.sample()


def raysim_measurements() -> dict[str, Any]:
    """What raysim adds to every report: who, when, time since the last report, memory."""
    from raysim.memory import peak_rss_bytes, process_rss_bytes

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
    if session.guard is not None:
        figures.update(session.guard.take_epoch())
    if ctx.device.type == "cuda":
        figures.update(cuda_memory_metrics(ctx.device))
    return figures


def cuda_memory_metrics(device: torch.device) -> dict[str, int]:
    """PyTorch's own peaks since the last report (then reset), and what NVML sees."""
    from raysim.nvml import nvml_metrics

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
    session.report_s = time.perf_counter() - start
