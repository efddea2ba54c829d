"""Worker side of the cluster emulation: the network hook and straggling nodes.

The DDP communication hook (network.py) holds each gradient bucket to the time the
chosen network would take, and records how long every rank waited in all-reduce.
A straggler sleeps after its forward pass, in proportion to its own measured
compute (backward taken as twice the forward), so its gradients arrive late and
the others wait for it, as DDP's barrier makes them on a real cluster.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field

from raysim.config import ExperimentConfig
from raysim.network import CommStats, make_emulation_hook, needs_hook, parse_network

BACKWARD_TO_FORWARD = 2.0


@dataclass
class Emulation:
    slowdown: float = 1.0
    jitter: float = 0.0
    comm: CommStats | None = None
    rng: random.Random = field(default_factory=random.Random)
    sleep_s: float = 0.0

    def after_forward(self, forward_s: float) -> None:
        compute = forward_s * (1 + BACKWARD_TO_FORWARD)
        extra = (self.slowdown - 1) * compute
        if self.jitter:
            extra += self.rng.uniform(0, self.jitter) * compute
        if extra > 0:
            time.sleep(extra)
            self.sleep_s += extra

    def take_epoch(self, steps: int) -> dict[str, float]:
        per_step = max(steps, 1)
        figures = {"straggler_sleep_s_per_step": self.sleep_s / per_step}
        self.sleep_s = 0.0
        if self.comm is not None:
            comm = self.comm.take()
            figures.update(
                modelled_comm_s_per_step=comm["modelled_comm_s"] / per_step,
                allreduce_wait_s_per_step=comm["real_comm_s"] / per_step,
                added_comm_delay_s_per_step=comm["added_delay_s"] / per_step,
            )
        return figures


def set_up_emulation(model, cfg: ExperimentConfig, rank: int, world_size: int) -> Emulation:
    """Register the network hook on the DDP model where it has peers to talk to."""
    emulation = Emulation(
        slowdown=float((cfg.stragglers or {}).get(rank, 1.0)),
        jitter=cfg.jitter,
        rng=random.Random(cfg.seed * 1000 + rank),
    )
    spec = parse_network(cfg.network)
    wants_hook = needs_hook(spec, cfg.grad_compression) or cfg.stragglers or cfg.jitter
    if world_size > 1 and wants_hook:
        emulation.comm = CommStats()
        state, hook = make_emulation_hook(spec, world_size, emulation.comm, cfg.grad_compression)
        model.register_comm_hook(state, hook)
    return emulation
