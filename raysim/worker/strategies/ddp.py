"""DDP: every node holds a whole replica and averages the gradients in buckets.

Ray Train wraps the model (its DistributedDataParallel with the plan's bucket size); a
communication hook holds each bucket to the emulated link's time and measures its
all-reduce (ddp_comm_hook.py), through shared memory where the nodes share this host
(ddp_host_allreduce.py); gradient hooks tell when each bucket is ready (ddp_buckets.py).
Those, and Ray Train's torch side, are imported in the methods that use them: the driver
asks this strategy for the memory floor while torch is still being imported elsewhere.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from raysim.plan.memory_floor import TrainingState, replicated_state
from raysim.plan.resources import models_the_wire
from raysim.worker.strategies.base import CollectiveHooks, CollectiveSetup, Strategy

if TYPE_CHECKING:
    import torch

    from raysim.plan.resources import ResourcePlan
    from raysim.worker.model_facts import ModelFacts


def tell_buffer_broadcasts(model: torch.nn.Module, on_enter) -> None:
    """DDP broadcasts rank 0's buffers (batch norm's statistics) before a forward that
    follows a synced one: a collective too, which a hung node's peers may wait in."""
    nbytes = sum(b.numel() * b.element_size() for b in model.buffers())

    def before_forward(module, args) -> None:
        if module.training and module.will_sync_module_buffers():
            on_enter("broadcast", nbytes)

    if nbytes:
        model.register_forward_pre_hook(before_forward)


class DDP(Strategy):
    name: ClassVar[str] = "ddp"

    def wrap(self, model: torch.nn.Module, plan: ResourcePlan) -> torch.nn.Module:
        """DDP on the plan's backend; with one node Ray Train only moves it to the device."""
        import ray.train.torch

        return ray.train.torch.prepare_model(model, parallel_strategy_kwargs=plan.ddp_kwargs)

    def emulate_network(self, model: torch.nn.Module, setup: CollectiveSetup) -> CollectiveHooks:
        """The comm hook, where anything needs it: it all-reduces through shared memory
        where the plan allows and every rank can map every other's memory."""
        from raysim.worker.strategies.ddp_comm_hook import CommStats, make_emulation_hook
        from raysim.worker.strategies.ddp_host_allreduce import HostAllreduce

        cfg = setup.cfg
        probe = HostAllreduce.probe
        host = probe(on_shared_bytes=setup.on_shared_bytes) if setup.host_allreduce else None
        if not (setup.wanted or models_the_wire(cfg) or host is not None):
            return CollectiveHooks()
        stats = CommStats()
        state, hook = make_emulation_hook(
            cfg.network, setup.world_size, stats, cfg.grad_compression, host=host,
            on_ready=setup.on_ready, on_done=setup.on_done, on_enter=setup.on_enter,
        )  # fmt: skip
        model.register_comm_hook(state, hook)
        if setup.on_enter is not None:
            tell_buffer_broadcasts(model, setup.on_enter)
        return CollectiveHooks(stats, host_allreduce=host is not None)

    def training_state(
        self, parameters: int, moments: int | None, optimizer: str, world_size: int
    ) -> TrainingState:
        """A whole replica's gradients and optimizer moments, whatever the node count."""
        return replicated_state(parameters, moments, optimizer)

    def watch_model(
        self, model: torch.nn.Module, facts: ModelFacts, world_size: int, plan: ResourcePlan
    ) -> None:
        """DDP's default buckets always (what a real cluster runs); with one node, also the
        layout DDP would build with the plan's cap (no comm hook tells it there)."""
        from raysim.worker.strategies.ddp_buckets import (
            watch_default_buckets,
            watch_single_node_buckets,
        )

        if world_size == 1:
            watch_single_node_buckets(model, facts, plan.ddp_bucket_mb)
        watch_default_buckets(model, facts)
