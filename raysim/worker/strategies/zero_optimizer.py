"""ZeRO-1 on the training function's own optimizer: each node's optimizer steps (and keeps
moments for) only its share of the parameters, then every share is broadcast from its
owner, so every node ends the step with the same whole model, as under DDP.

The function builds its optimizer as it always does; torch.optim's global step hooks
narrow its parameter groups to this node's share for the step and restore them after
(zero_grad, state_dict and the learning-rate schedulers see the whole groups). The shares
are ZeroRedundancyOptimizer's greedy partition: largest parameter first, to the node
holding the fewest elements. An optimizer that already shards itself
(ZeroRedundancyOptimizer, and the local optimizer inside it) is left alone.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch.optim.optimizer import (
    register_optimizer_step_post_hook,
    register_optimizer_step_pre_hook,
)

from raysim.worker.strategies.sharded_comm import ModelledLink


def partition(params: list[torch.Tensor], world_size: int) -> list[int]:
    """The owning rank of each parameter (same on every rank: a pure function of sizes)."""
    loads = [0] * world_size
    owners = [0] * len(params)
    for index in sorted(range(len(params)), key=lambda i: -params[i].numel()):
        rank = loads.index(min(loads))
        owners[index] = rank
        loads[rank] += params[index].numel()
    return owners


@dataclass
class OptimizerSharding:
    """The hooks' state on this node: which parameters are the model's, who owns which."""

    model_params: set[int]
    rank: int
    world_size: int
    link: ModelledLink | None = None
    """Set by the strategy's emulate_network where anything models or measures the wire."""
    handles: list = field(default_factory=list)
    _owners: dict[int, dict[int, int]] = field(default_factory=dict)
    _whole: dict[int, list[list[torch.Tensor]]] = field(default_factory=dict)
    _skip: set[int] = field(default_factory=set)
    _messages: dict[torch.dtype, torch.Tensor] = field(default_factory=dict)

    def shards(self, optimizer: torch.optim.Optimizer) -> bool:
        if type(optimizer).__name__ == "ZeroRedundancyOptimizer":
            self._skip.add(id(optimizer.optim))
            return False
        if id(optimizer) in self._skip:
            return False
        ids = {id(p) for group in optimizer.param_groups for p in group["params"]}
        return bool(ids) and ids <= self.model_params

    def owners(self, optimizer: torch.optim.Optimizer) -> dict[int, int]:
        if id(optimizer) not in self._owners:
            params = [p for group in optimizer.param_groups for p in group["params"]]
            ranks = partition(params, self.world_size)
            self._owners[id(optimizer)] = {id(p): r for p, r in zip(params, ranks, strict=True)}
        return self._owners[id(optimizer)]

    def before_step(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        if not self.shards(optimizer):
            return
        owners = self.owners(optimizer)
        self._whole[id(optimizer)] = [group["params"] for group in optimizer.param_groups]
        for group in optimizer.param_groups:
            group["params"] = [p for p in group["params"] if owners[id(p)] == self.rank]

    def after_step(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        whole = self._whole.pop(id(optimizer), None)
        if whole is None:
            return
        for group, params in zip(optimizer.param_groups, whole, strict=True):
            group["params"] = params
        self.broadcast([p for params in whole for p in params], self.owners(optimizer))

    def broadcast(self, params: list[torch.Tensor], owners: dict[int, int]) -> None:
        """Every owner's updated parameters to every node, one flat message per owner and
        dtype, in one buffer kept between steps (a new one each step left the freed
        messages to the allocator: resident memory grew by a message a step, seen); held
        to the link as one gather of all the parameters' bytes."""
        started = time.perf_counter()
        nbytes = 0
        with torch.no_grad():
            for owner in range(self.world_size):
                owned = [p for p in params if owners[id(p)] == owner]
                for dtype in sorted({p.dtype for p in owned}, key=str):
                    tensors = [p for p in owned if p.dtype == dtype]
                    flat = self._message(dtype, sum(p.numel() for p in tensors))
                    if owner == self.rank:
                        torch.cat([p.detach().reshape(-1) for p in tensors], out=flat)
                    dist.broadcast(flat, src=owner)
                    nbytes += flat.numel() * flat.element_size()
                    if owner != self.rank:
                        offset = 0
                        for p in tensors:
                            p.copy_(flat[offset : offset + p.numel()].view_as(p))
                            offset += p.numel()
        if self.link is not None:
            self.link.hold("param_gather", nbytes, started)

    def _message(self, dtype: torch.dtype, numel: int) -> torch.Tensor:
        """The first numel elements of this dtype's message buffer (the largest share's)."""
        buffer = self._messages.get(dtype)
        if buffer is None or buffer.numel() < numel:
            buffer = self._messages[dtype] = torch.empty(numel, dtype=dtype)
        return buffer[:numel]


_current: OptimizerSharding | None = None


def install(model: torch.nn.Module) -> OptimizerSharding:
    """Shard the optimizer of this model from its next step (this process's node); the
    hooks of a node this process hosted before go."""
    global _current
    if _current is not None:
        for handle in _current.handles:
            handle.remove()
    sharding = OptimizerSharding(
        {id(p) for p in model.parameters()}, dist.get_rank(), dist.get_world_size()
    )
    sharding.handles = [
        register_optimizer_step_pre_hook(sharding.before_step),
        register_optimizer_step_post_hook(sharding.after_step),
    ]
    _current = sharding
    return sharding


def current() -> OptimizerSharding | None:
    return _current
