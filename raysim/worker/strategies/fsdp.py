"""FSDP: each node holds a 1/N shard of the parameters, gradients and optimizer state;
each unit's parameters are all-gathered for its forward and backward, its gradients
reduce-scattered (torch's FSDP2, `fully_shard`).

The default units: every direct child of the model that holds parameters, each block of a
stack of blocks (a transformer's layers), then the model itself (its own parameters and
those of the modules left to it: `default_units`). A model in which the user already
called `fully_shard` on some modules keeps their units and only gets the root. Torch is
imported in the methods: the driver asks this strategy for the memory floor while torch
is imported elsewhere.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from raysim.plan.memory_floor import TrainingState, sharded_state
from raysim.plan.resources import models_the_wire
from raysim.worker.strategies.base import (
    CollectiveHooks,
    CollectiveSetup,
    Strategy,
    return_large_frees,
)

if TYPE_CHECKING:
    import torch

    from raysim.plan.resources import ResourcePlan
    from raysim.worker.model_facts import ModelFacts


def default_units(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The children that are units of their own (projection.model_profile's
    fsdp_default_units: the projection splits the model as the run does)."""
    from raysim.projection.model_profile import fsdp_default_units

    return [child for _, child in fsdp_default_units(model)]


def shard_units(model: torch.nn.Module) -> torch.nn.Module:
    """fully_shard with the default units (module doc), on the default process group."""
    from torch.distributed.fsdp import FSDPModule, fully_shard

    if not any(isinstance(module, FSDPModule) for module in model.modules()):
        for child in default_units(model):
            fully_shard(child)
    if not isinstance(model, FSDPModule):
        fully_shard(model)
    return model


class FSDP(Strategy):
    name: ClassVar[str] = "fsdp"

    def wrap(self, model: torch.nn.Module, plan: ResourcePlan) -> torch.nn.Module:
        """On the node's device, sharded over the nodes; one node keeps the whole model."""
        import ray.train.torch
        import torch.distributed as dist

        model = model.to(ray.train.torch.get_device())
        if not dist.is_initialized() or dist.get_world_size() < 2:
            return model
        return_large_frees(model)
        return shard_units(model)

    def emulate_network(self, model: torch.nn.Module, setup: CollectiveSetup) -> CollectiveHooks:
        """Every unit's all-gather and reduce-scatter through the modelled link, measured."""
        from raysim.worker.strategies import fsdp_comm
        from raysim.worker.strategies.sharded_comm import KindStats, ModelledLink

        if not (setup.wanted or models_the_wire(setup.cfg)):
            return CollectiveHooks()
        stats = KindStats()
        link = ModelledLink(setup.cfg.network, setup.world_size, stats, on_done=setup.on_done,
                            sample_memory=setup.sample_memory)  # fmt: skip
        fsdp_comm.install(model, link)
        return CollectiveHooks(stats)

    def training_state(
        self, parameters: int, moments: int | None, optimizer: str, world_size: int
    ) -> TrainingState:
        """A 1/N shard of the gradients and of the optimizer's moments."""
        return sharded_state(parameters, moments, optimizer, world_size, gradients_sharded=True)

    def watch_model(
        self, model: torch.nn.Module, facts: ModelFacts, world_size: int, plan: ResourcePlan
    ) -> None:
        """Nothing: FSDP has no DDP buckets; its collectives are measured by kind instead."""
