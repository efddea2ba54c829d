"""FSDP2's all-gather and reduce-scatter, held to the emulated link (sharded_comm.py).

torch's FSDPModule.set_custom_all_gather / set_custom_reduce_scatter (torch 2.14; the
default classes subclassed here are private, pinned by the tests) give each unit's
collective with its whole tensor, so the bytes are exact per unit. The real collective
runs first; an asynchronous one (CUDA's) is waited for here, which keeps the numbers
exact and gives up FSDP's overlap of the wait with compute.
"""

from __future__ import annotations

import time

import torch
from torch.distributed.fsdp import FSDPModule
from torch.distributed.fsdp._fully_shard._fsdp_collectives import (
    DefaultAllGather,
    DefaultReduceScatter,
)

from raysim.worker.strategies.sharded_comm import ModelledLink


def _nbytes(tensor: torch.Tensor) -> int:
    return tensor.numel() * tensor.element_size()


class EmulatedAllGather(DefaultAllGather):
    def __init__(self, link: ModelledLink) -> None:
        self.link = link

    def __call__(self, output_tensor, input_tensor, group, async_op: bool = False):
        # FSDP passes these by keyword: the names are torch's.
        started = time.perf_counter()
        work = super().__call__(output_tensor, input_tensor, group, async_op)
        if work is not None:
            work.wait()
        self.link.memory_now()  # the unit gathered, with what else is alive
        self.link.hold("all_gather", _nbytes(output_tensor), started)
        return None


class EmulatedReduceScatter(DefaultReduceScatter):
    def __init__(self, link: ModelledLink) -> None:
        self.link = link

    def __call__(self, output_tensor, input_tensor, group, op, async_op: bool = False):
        self.link.memory_now()  # the unit's unsharded gradients, with what else is alive
        started = time.perf_counter()
        work = super().__call__(output_tensor, input_tensor, group, op, async_op)
        if work is not None:
            work.wait()
        self.link.hold("reduce_scatter", _nbytes(input_tensor), started)
        return None


def install(model: torch.nn.Module, link: ModelledLink) -> int:
    """Every FSDP unit of the model goes through the link; returns how many units."""
    units = [module for module in model.modules() if isinstance(module, FSDPModule)]
    for unit in units:
        unit.set_custom_all_gather(EmulatedAllGather(link))
        unit.set_custom_reduce_scatter(EmulatedReduceScatter(link))
    return len(units)
