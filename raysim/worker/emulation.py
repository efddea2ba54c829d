"""Worker side of the cluster emulation: the network hook and straggling nodes.

The DDP communication hook (comm_hook.py) holds each gradient bucket to the time the
chosen network would take, and records how long every rank waited in all-reduce.
A straggler sleeps after its forward pass, in proportion to its own measured
compute (backward taken as twice the forward), so its gradients arrive late and
the others wait for it, as DDP's barrier makes them on a real cluster. Both are set
up on the prepared model, so any training function gets them.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field

import torch

from raysim.config.schema import ExperimentConfig
from raysim.plan.resources import needs_comm_hook
from raysim.worker.comm_hook import CommStats, make_emulation_hook

BACKWARD_TO_FORWARD = 2.0


@dataclass
class Emulation:
    slowdown: float = 1.0
    jitter: float = 0.0
    comm: CommStats | None = None
    rng: random.Random = field(default_factory=random.Random)
    sleep_s: float = 0.0
    steps: int = 0
    """Training forward passes since the last take: one per loader batch."""
    _forward_start: float = 0.0

    @property
    def straggles(self) -> bool:
        return self.slowdown > 1 or self.jitter > 0

    def before_forward(self, module, inputs) -> None:
        if module.training:
            self._forward_start = time.perf_counter()

    def after_forward(self, module, inputs, output) -> None:
        if not module.training:
            return
        self.steps += 1
        if self.straggles:
            self.straggle(time.perf_counter() - self._forward_start)

    def straggle(self, forward_s: float) -> None:
        compute = forward_s * (1 + BACKWARD_TO_FORWARD)
        extra = (self.slowdown - 1) * compute
        if self.jitter:
            extra += self.rng.uniform(0, self.jitter) * compute
        if extra > 0:
            time.sleep(extra)
            self.sleep_s += extra

    def take(self) -> dict[str, float]:
        """Per-step figures since the last take (one report), then start again from zero."""
        per_step = max(self.steps, 1)
        figures = {"straggler_sleep_s_per_step": self.sleep_s / per_step}
        self.sleep_s, self.steps = 0.0, 0
        if self.comm is not None:
            comm = self.comm.take()
            figures.update(
                modelled_comm_s_per_step=comm["modelled_comm_s"] / per_step,
                allreduce_wait_s_per_step=comm["real_comm_s"] / per_step,
                added_comm_delay_s_per_step=comm["added_delay_s"] / per_step,
            )
        return figures


def set_up_emulation(
    model: torch.nn.Module, cfg: ExperimentConfig, rank: int, world_size: int
) -> Emulation:
    """Count and time the model's training forwards; register the network hook on the DDP
    model where it has peers to talk to."""
    emulation = Emulation(
        slowdown=cfg.stragglers.get(rank, 1.0),
        jitter=cfg.jitter,
        rng=random.Random(cfg.seed * 1000 + rank),
    )
    model.register_forward_pre_hook(emulation.before_forward)
    model.register_forward_hook(emulation.after_forward)
    if needs_comm_hook(cfg, world_size):
        emulation.comm = CommStats()
        state, hook = make_emulation_hook(
            cfg.network, world_size, emulation.comm, cfg.grad_compression
        )
        model.register_comm_hook(state, hook)
    return emulation
