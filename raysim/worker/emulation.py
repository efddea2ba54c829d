"""Worker side of the cluster emulation: the network hook and straggling nodes.

The strategy's hooks on its collectives (raysim.worker.strategies; DDP's comm hook) hold
each gradient bucket to the time the chosen network would take, and record how long
every rank waited in all-reduce. A straggler sleeps after its forward pass, in
proportion to its own measured compute (backward taken as
BACKWARD_TO_FORWARD times the forward, the projection's assumption), so its
gradients arrive late and the others wait for it, as DDP's barrier makes them on a real
cluster. Both are set up on the prepared model, so any training function gets them.
With peers the hooks are always there: they measure every bucket's all-reduce (the wait
by which stragglers are found, and when each bucket was handed over), and add nothing
on loopback; where the nodes share this host DDP averages through shared memory.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from raysim.config.schema import ExperimentConfig
from raysim.projection.step_model import BACKWARD_TO_FORWARD
from raysim.rundir import ALLREDUCE_KEY
from raysim.worker.strategies import CollectiveSetup, Strategy
from raysim.worker.strategies.base import CollectiveStats
from raysim.worker.tracer import StepTracer


@dataclass
class Emulation:
    slowdown: float = 1.0
    jitter: float = 0.0
    comm: CollectiveStats | None = None
    rng: random.Random = field(default_factory=random.Random)
    sleep_s: float = 0.0
    on_straggle: Callable[[float, float], None] | None = None
    """Told each straggler sleep's start and end (the tracer)."""
    host_allreduce: bool = False
    """The gradients are averaged through shared memory (the strategy's collectives)."""
    _forward_start: float = 0.0

    @property
    def straggles(self) -> bool:
        return self.slowdown > 1 or self.jitter > 0

    def before_forward(self, module: torch.nn.Module, args: tuple) -> None:
        if module.training:
            self._forward_start = time.perf_counter()

    def after_forward(self, module: torch.nn.Module, args: tuple, output) -> None:
        if module.training:
            self.straggle(time.perf_counter() - self._forward_start)

    def straggle(self, forward_s: float) -> None:
        compute = forward_s * (1 + BACKWARD_TO_FORWARD)
        extra = (self.slowdown - 1) * compute
        if self.jitter:
            extra += self.rng.uniform(0, self.jitter) * compute
        if extra > 0:
            start = time.perf_counter()
            time.sleep(extra)
            self.sleep_s += extra
            if self.on_straggle is not None:
                self.on_straggle(start, time.perf_counter())

    def take(self, steps: int) -> dict[str, float | bool]:
        """Per optimizer step since the last take (one report), then start again from zero."""
        per_step = max(steps, 1)
        figures = {"straggler_sleep_s_per_step": self.sleep_s / per_step}
        self.sleep_s = 0.0
        if self.comm is not None:
            comm = self.comm.take()
            figures[ALLREDUCE_KEY] = self.host_allreduce
            figures.update(
                modelled_comm_s_per_step=comm["modelled_comm_s"] / per_step,
                allreduce_wait_s_per_step=comm["real_comm_s"] / per_step,
                added_comm_delay_s_per_step=comm["added_delay_s"] / per_step,
            )
        return figures


def set_up_emulation(
    model: torch.nn.Module,
    cfg: ExperimentConfig,
    strategy: Strategy,
    rank: int,
    world_size: int,
    on_bucket_ready: Callable[[int, float], None] | None = None,
    tracer: StepTracer | None = None,
    *,
    host_allreduce: bool = False,
    on_shared_bytes: Callable[[int], None] | None = None,
    on_enter: Callable[[str, int], None] | None = None,
    sample_memory: Callable[[], None] | None = None,
) -> Emulation:
    """Stragglers on the model's training forwards; the strategy's hooks on its collectives
    where it has peers (through shared memory where host_allreduce and the host allows)."""
    emulation = Emulation(
        slowdown=cfg.stragglers.get(rank, 1.0),
        jitter=cfg.jitter,
        rng=random.Random(cfg.seed * 1000 + rank),
        on_straggle=None if tracer is None else tracer.straggled,
    )
    if emulation.straggles:
        model.register_forward_pre_hook(emulation.before_forward)
        model.register_forward_hook(emulation.after_forward)
    if world_size < 2:
        return emulation
    wanted = cfg.measure_steps or emulation.straggles or on_enter is not None
    setup = CollectiveSetup(
        cfg, world_size, wanted=wanted, host_allreduce=host_allreduce, on_ready=on_bucket_ready,
        on_done=None if tracer is None else tracer.bucket_done, on_shared_bytes=on_shared_bytes,
        on_enter=on_enter, sample_memory=sample_memory,
    )  # fmt: skip
    hooks = strategy.emulate_network(model, setup)
    emulation.comm, emulation.host_allreduce = hooks.stats, hooks.host_allreduce
    return emulation
