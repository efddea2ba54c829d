"""The public worker API: the calls a training function makes on its simulated node.

Every call acts on this process's node session (session.py), which raysim sets up
before the launcher runs the training. raysim.worker re-exports them.
"""

from __future__ import annotations

import time
from typing import Any, NoReturn

import torch

from raysim.config.schema import ExperimentConfig
from raysim.rundir import PREEMPT_CHECKPOINT_KEY
from raysim.worker.model_facts import ModelFacts
from raysim.worker.node_context import NodeContext
from raysim.worker.preemption import PreemptionNotice, agreed_notice
from raysim.worker.session import current_session, raysim_measurements

__all__ = [
    "NodeContext", "PreemptionNotice", "context", "experiment_config", "hold_for_preemption",
    "inject_faults", "preemption_notice", "prepare", "progress", "report",
    "report_preemption_checkpoint", "sample_memory",
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


def preemption_notice() -> PreemptionNotice | None:
    """The preemption notice, the same on every node at this call (Ray Train's
    get_preemption_info(): call it on every node as often, e.g. after each step). None
    until Ray Core drains a node of the group, and always where nothing watches for
    drains (one host and no preempt fault), without asking the peers."""
    return agreed_notice()


def report_preemption_checkpoint(epoch: int, step: int, checkpoint=None) -> None:
    """On a notice, after `step` of `epoch`: the just-in-time checkpoint (every node calls
    this; one of them, usually rank 0, with the checkpoint), recorded as such, not as an
    epoch. Then hold_for_preemption()."""
    import ray.train

    marker = {PREEMPT_CHECKPOINT_KEY: True, "epoch": epoch, "step": step,
              "rank": context().rank, "report_unix": time.time()}  # fmt: skip
    ray.train.report(marker, checkpoint=checkpoint)


def hold_for_preemption() -> NoReturn:
    """After the just-in-time checkpoint: train no more until Ray Train ends the worker
    group at the drain's deadline and restarts it from that checkpoint. Returning instead
    would end the run as finished; training on would redo every step after it."""
    while True:
        time.sleep(3600)
