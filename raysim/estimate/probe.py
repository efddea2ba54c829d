"""One training step of a model measured by category without real memory: the model is
built on the meta device, materialised as fake tensors (FakeTensorMode, then to_empty),
and torch's MemTracker attributes every tensor of a step to parameters, buffers,
gradients, optimizer state, activations or temporaries.

torch.distributed._tools.mem_tracker and FakeTensorMode's use here are private torch
APIs (torch 2.14.1, constraints.txt): the tests pin what this module reads of them.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable

import torch
from torch import nn

from raysim.estimate.compose import StepMemory


def _unit_bytes(model: nn.Module) -> tuple[int, int]:
    """The two largest default FSDP units' parameters: the children that are units of their
    own, and the model's own unit (what no such child holds)."""
    from raysim.worker.strategies.fsdp import default_units

    def nbytes(params) -> int:
        return sum(p.numel() * p.element_size() for p in params)

    units = default_units(model)
    in_units = {id(p) for unit in units for p in unit.parameters()}
    own = nbytes(p for p in model.parameters() if id(p) not in in_units)
    largest, second = sorted([nbytes(unit.parameters()) for unit in units] + [own, 0])[::-1][:2]
    return largest, second


def _loss(output) -> torch.Tensor:
    """A scalar that every output element feeds: the backward is the model's whole one."""
    if isinstance(output, (tuple, list)):
        output = output[0]
    if isinstance(output, dict):
        output = next(iter(output.values()))
    return output.float().pow(2).mean()


@contextlib.contextmanager
def _quiet_fake_tensors():
    """FakeTensorMode logs a failing op's traceback itself; the caller tells it in one line."""
    logger = logging.getLogger("torch._subclasses.fake_tensor")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def probe_step(
    build: Callable[[], nn.Module],
    make_input: Callable[[], torch.Tensor],
    make_optimizer: Callable[[nn.Module], torch.optim.Optimizer],
) -> StepMemory:
    """The second step's categories (the first creates the optimizer's state, which the
    second holds throughout): activations at the forward's end, the rest at the forward
    and backward's peak; the optimizer's temporaries at its step's own peak."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.distributed._tools.mem_tracker import MemTracker, _MemRefType

    def tracker() -> MemTracker:
        tracked = MemTracker()
        tracked.track_external(model, optimizer)
        return tracked

    def in_use(snapshot: dict, kind) -> int:
        return next(iter(snapshot.values())).get(kind, 0)

    with torch.device("meta"):
        model = build()
    largest_unit, second_unit = _unit_bytes(model)
    with _quiet_fake_tensors(), FakeTensorMode(allow_non_fake_inputs=True):
        model.to_empty(device="cpu")
        optimizer = make_optimizer(model)
        _loss(model(make_input())).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        with tracker() as passes:
            output = model(make_input())
            after_forward = passes.get_tracker_snapshot("current")
            _loss(output).backward()
        with tracker() as step:
            optimizer.step()
    peak = passes.get_tracker_snapshot("peak")
    state = in_use(after_forward, _MemRefType.OPT)
    return StepMemory(
        parameters=in_use(peak, _MemRefType.PARAM),
        buffers=in_use(peak, _MemRefType.BUFFER),
        gradients=sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad),
        optimizer=state,
        optimizer_step=max(in_use(step.get_tracker_snapshot("peak"), _MemRefType.OPT) - state, 0),
        activations=in_use(after_forward, _MemRefType.ACT)
        + in_use(after_forward, _MemRefType.TEMP),
        largest_unit=largest_unit,
        second_unit=second_unit,
    )
