"""The public worker API: the calls a training function makes on its simulated node.

Every call acts on this process's node session (session.py), which raysim sets up
before the launcher runs the training. raysim.worker re-exports them.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from raysim.config.schema import ExperimentConfig
from raysim.worker.model_facts import ModelFacts
from raysim.worker.node_context import NodeContext
from raysim.worker.session import current_session, raysim_measurements

__all__ = [
    "NodeContext", "context", "experiment_config", "inject_faults", "prepare", "progress",
    "report", "sample_memory",
]  # fmt: skip


def context() -> NodeContext:
    """This node: its id, rank, world size, device, memory budget and directories."""
    return current_session().context


def experiment_config() -> ExperimentConfig:
    """This run's config, typed: what the training function's dict says."""
    return current_session().config


def prepare(model: torch.nn.Module, loader=None):
    """The strategy's wrapper (DDP, on the backend the plan chose), the sampler (a loader
    with a DistributedSampler keeps it), the network hook, stragglers, the memory budget
    and raysim's measurements of every step. Returns the model, or (model, loader) when a
    loader is given.
    """
    import ray.train.torch

    session = current_session()
    session.startup.mark("prepare_start")
    facts = ModelFacts.of(model)
    session.check_state_floor(facts.trainable_parameters)
    model = session.strategy.wrap(model, session.plan)
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
    current_session().at_step(epoch, step)


def sample_memory() -> None:
    """Note the memory in use now (call once per step for an exact per-report peak)."""
    session = current_session()
    if session.guard is not None:
        session.guard.sample()


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
