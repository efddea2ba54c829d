"""What raysim puts around an unmodified script for its node's lifetime, and takes away
after: its process group calls join and leave Ray Train's group, the DDP model it builds
gets prepare()'s instrumentation, and its epochs (or every K steps) become metrics lines.

Each patch replaces one attribute and keeps the original, restored on close whatever the
script did; nothing here raises into torch's hooks except the script's own errors.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import ray.train
import torch
import torch.distributed as dist
from torch.distributed import distributed_c10d
from torch.nn.parallel import DistributedDataParallel
from torch.optim.optimizer import register_optimizer_step_pre_hook
from torch.utils.data.distributed import DistributedSampler

from raysim.worker.launchers.script_frameworks import attach_framework_callbacks
from raysim.worker.launchers.script_output import untee
from raysim.worker.model_facts import ModelFacts
from raysim.worker.session import NodeSession, raysim_measurements


@dataclass
class Patches:
    """Attributes replaced for the node's lifetime, with their originals."""

    saved: list[tuple[Any, str, Any]] = field(default_factory=list)

    def replace(self, owner: Any, name: str, value: Any) -> Any:
        original = getattr(owner, name)
        self.saved.append((owner, name, original))
        setattr(owner, name, value)
        return original

    handles: list[Any] = field(default_factory=list)
    """Hooks registered for the node's lifetime (torch's removable handles)."""

    def restore(self) -> None:
        for owner, name, original in reversed(self.saved):
            setattr(owner, name, original)
        self.saved.clear()
        for handle in self.handles:
            handle.remove()
        self.handles.clear()


@dataclass
class ScriptReports:
    """The script's metrics lines: one per epoch its DistributedSampler reveals, else one
    per `every` optimizer steps, and the rest when it ends; none of raysim's once the
    script reports through ray.train.report itself."""

    session: NodeSession
    send: Callable[..., None]
    """Ray Train's own report (the patched name leads to the script's reports)."""
    every: int
    reported: int = 0
    steps: int = 0
    """Optimizer steps since the last line."""
    sampler_epochs: bool = False
    by_script: bool = False
    loss_sum: Any = 0.0
    """The losses' sum as a tensor on their device: read at the line, not every step (a
    read waits for the device)."""
    losses: int = 0

    def report(self, metrics: dict[str, Any], checkpoint: Any = None) -> None:
        """A line with raysim's measurements (the given keys win)."""
        merged = {**raysim_measurements(), **metrics}
        self.session.export(merged)
        with untee():
            self.send(merged, checkpoint=checkpoint)
        self.steps = 0

    def line(self) -> None:
        self.reported += 1
        metrics: dict[str, Any] = {"epoch": self.reported, "steps": self.steps}
        if self.losses:
            metrics["train_loss"] = float(self.loss_sum) / self.losses
        self.loss_sum, self.losses = 0.0, 0
        self.report(metrics)

    def by_the_script(self, metrics: dict[str, Any], checkpoint: Any = None) -> None:
        """The script's own ray.train.report (or its framework's, through raysim's
        callback): recorded with raysim's measurements; a line all the same for faults."""
        self.by_script = True
        self.reported += 1
        self.report(dict(metrics), checkpoint)

    def epoch_starts(self) -> None:
        self.sampler_epochs = True
        if self.steps and not self.by_script:
            self.line()

    def step_done(self, optimizer: Any) -> None:
        self.steps += 1
        if not (self.sampler_epochs or self.by_script) and self.steps >= self.every:
            self.line()

    def loss(self, value: Any) -> None:
        self.loss_sum = self.loss_sum + value
        self.losses += 1

    def finish(self) -> None:
        """The script ended well: its last steps, or one line if it never stepped."""
        if not self.by_script and (self.steps or not self.reported):
            self.line()


def told_once(message: str, told: set[str]) -> None:
    if message not in told:
        told.add(message)
        print(f"raysim: {message}", file=sys.stderr, flush=True)


def install(session: NodeSession, reports: ScriptReports, stop_after_steps: int = 0) -> Patches:
    """Every patch for the script's lifetime; the returned Patches restores them.
    stop_after_steps: end the script before its optimizer step after that many (0: never)."""
    patches = Patches()
    told: set[str] = set()
    _process_group(patches, session, told)
    _ddp(patches, session, reports, told)
    _epochs_and_loss(patches, reports)
    _faults(patches, session, reports)
    if stop_after_steps:
        _stop_after(patches, stop_after_steps)
    patches.replace(ray.train, "report", reports.by_the_script)
    return patches


def _process_group(patches: Patches, session: NodeSession, told: set[str]) -> None:
    """init_process_group joins Ray Train's group; destroying the default group leaves it
    (Ray Train ends it)."""
    original_init, original_destroy = dist.init_process_group, dist.destroy_process_group

    def init_process_group(backend: Any = None, *args: Any, **kwargs: Any) -> None:
        if not dist.is_initialized():  # Ray Train sets one up for every node; if not, as asked
            original_init(backend, *args, **kwargs)
            return
        have = dist.get_backend()
        if backend is not None and str(backend).split(":")[0] not in (have, "cpu"):
            told_once(
                f"the script asked for {backend}; the simulated nodes share this machine's "
                f"device, so it runs on raysim's {have} group",
                told,
            )

    def destroy_process_group(group: Any = None) -> None:
        if group is not None and group is not dist.group.WORLD:
            original_destroy(group)

    for owner in (dist, distributed_c10d):
        patches.replace(owner, "init_process_group", init_process_group)
        patches.replace(owner, "destroy_process_group", destroy_process_group)


def _ddp(patches: Patches, session: NodeSession, reports: ScriptReports, told: set[str]) -> None:
    """The first DDP model the script builds gets prepare()'s instrumentation: the memory
    floor before it is built, then the network emulation, stragglers, step measurements,
    model facts and memory guard; the framework that built it, raysim's callback."""
    original_init = DistributedDataParallel.__init__
    defaults = session.plan.ddp_kwargs

    adopted: list[DistributedDataParallel] = []

    def __init__(ddp: DistributedDataParallel, module: torch.nn.Module, *args, **kwargs):
        if adopted:
            told_once("a second DDP model is trained as it is, without raysim's hooks", told)
            original_init(ddp, module, *args, **kwargs)
            return
        facts = ModelFacts.of(module)
        session.check_state_floor(facts.trainable_parameters)
        original_init(ddp, module, *args, **{**defaults, **kwargs})
        session.instrument(ddp, None, facts)
        adopted.append(ddp)
        session.meter.on_step_end.append(reports.step_done)
        attach_framework_callbacks(module, patches.replace)

    patches.replace(DistributedDataParallel, "__init__", __init__)


def _epochs_and_loss(patches: Patches, reports: ScriptReports) -> None:
    """The sampler's set_epoch marks an epoch; a scalar's backward is the script's loss."""
    original_set_epoch = DistributedSampler.set_epoch
    original_backward = torch.Tensor.backward

    def set_epoch(sampler: DistributedSampler, epoch: int) -> None:
        original_set_epoch(sampler, epoch)
        reports.epoch_starts()

    def backward(tensor: torch.Tensor, *args: Any, **kwargs: Any) -> None:
        if tensor.numel() == 1 and torch.is_grad_enabled():
            reports.loss(tensor.detach().float())
        original_backward(tensor, *args, **kwargs)

    patches.replace(DistributedSampler, "set_epoch", set_epoch)
    patches.replace(torch.Tensor, "backward", backward)


def _faults(patches: Patches, session: NodeSession, reports: ScriptReports) -> None:
    """--inject fires at the script's optimizer steps: epoch E is its E-th metrics line
    (the sampler's epochs, or K steps), step S before its S-th optimizer step there."""

    def before_step(optimizer: Any, args: Any, kwargs: Any) -> None:
        session.faults.at_step(reports.reported + 1, reports.steps + 1)

    patches.handles.append(register_optimizer_step_pre_hook(before_step))


def _stop_after(patches: Patches, steps: int) -> None:
    """The script ends with sys.exit(0) before optimizer step `steps` + 1: those steps
    whole (their measurements and memory samples), then one more forward and backward."""
    taken = 0

    def before_step(optimizer: Any, args: Any, kwargs: Any) -> None:
        nonlocal taken
        if taken == steps:
            raise SystemExit(0)
        taken += 1

    patches.handles.append(register_optimizer_step_pre_hook(before_step))
