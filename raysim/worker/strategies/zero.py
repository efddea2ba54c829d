"""ZeRO-1: DDP's whole replica and gradient all-reduce, with the optimizer's moments
sharded over the nodes and the updated parameters broadcast from their owners after each
step (zero_optimizer.py, on the training function's own optimizer).

The model is wrapped, emulated and watched as under DDP (ddp.py); the parameters' gather
after the step goes through the same modelled link, measured as its own kind.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from raysim.plan.memory_floor import TrainingState, sharded_state
from raysim.plan.resources import models_the_wire
from raysim.worker.strategies.base import CollectiveHooks, CollectiveSetup, return_large_frees
from raysim.worker.strategies.ddp import DDP

if TYPE_CHECKING:
    import torch

    from raysim.plan.resources import ResourcePlan


class ZeRO(DDP):
    name: ClassVar[str] = "zero"

    def wrap(self, model: torch.nn.Module, plan: ResourcePlan) -> torch.nn.Module:
        """DDP's wrapper; with peers, its optimizer sharded from the next step on."""
        import torch.distributed as dist

        from raysim.worker.strategies import zero_optimizer

        wrapped = super().wrap(model, plan)
        if dist.is_initialized() and dist.get_world_size() > 1:
            return_large_frees(wrapped)
            zero_optimizer.install(wrapped)
        return wrapped

    def emulate_network(self, model: torch.nn.Module, setup: CollectiveSetup) -> CollectiveHooks:
        """DDP's hook on the gradients; the parameters' gather on a link of its own, whose
        figures are added to the hook's (or stand alone where DDP needs no hook)."""
        from raysim.worker.strategies import zero_optimizer
        from raysim.worker.strategies.sharded_comm import KindStats, ModelledLink

        hooks = super().emulate_network(model, setup)
        sharding = zero_optimizer.current()
        if sharding is None or not (setup.wanted or models_the_wire(setup.cfg)):
            return hooks
        stats = KindStats()
        sharding.link = ModelledLink(
            setup.cfg.network, setup.world_size, stats, on_done=setup.on_done
        )
        return CollectiveHooks(SummedStats(hooks.stats, stats), hooks.host_allreduce)

    def training_state(
        self, parameters: int, moments: int | None, optimizer: str, world_size: int
    ) -> TrainingState:
        """The whole gradients, a 1/N shard of the optimizer's moments."""
        return sharded_state(parameters, moments, optimizer, world_size, gradients_sharded=False)


class SummedStats:
    """Two sets of collective figures read as one (DDP's hook's, and the gather's)."""

    def __init__(self, *parts) -> None:
        self.parts = [part for part in parts if part is not None]

    def take(self) -> dict[str, float | int]:
        total: dict[str, float | int] = {}
        for part in self.parts:
            for key, value in part.take().items():
                total[key] = total.get(key, 0) + value
        return total
