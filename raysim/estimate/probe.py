"""One training step of a model measured by category without real memory: the model is
built on the meta device, materialised as fake tensors (FakeTensorMode, then to_empty),
and torch's MemTracker attributes every tensor of a step to parameters, buffers,
gradients, optimizer state, activations or temporaries.

torch.distributed._tools.mem_tracker and FakeTensorMode's use here are private torch
APIs (torch 2.14.1, constraints.txt): the tests pin what this module reads of them.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from raysim.estimate.compose import StepMemory


def _unit_bytes(model: nn.Module) -> int:
    """The largest default FSDP unit: a direct child's parameters (else the whole model)."""
    sizes = [
        sum(p.numel() * p.element_size() for p in child.parameters()) for child in model.children()
    ]
    whole = sum(p.numel() * p.element_size() for p in model.parameters())
    return max(sizes, default=whole) or whole


def _loss(output) -> torch.Tensor:
    """A scalar that every output element feeds: the backward is the model's whole one."""
    if isinstance(output, (tuple, list)):
        output = output[0]
    if isinstance(output, dict):
        output = next(iter(output.values()))
    return output.float().pow(2).mean()


def probe_step(
    build: Callable[[], nn.Module],
    make_input: Callable[[], torch.Tensor],
    make_optimizer: Callable[[nn.Module], torch.optim.Optimizer],
) -> StepMemory:
    """The second step's categories (the first creates the optimizer's state, which the
    second holds throughout): activations at the forward's end, the rest at the peak."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.distributed._tools.mem_tracker import MemTracker, _MemRefType

    with torch.device("meta"):
        model = build()
    units = _unit_bytes(model)
    with FakeTensorMode(allow_non_fake_inputs=True):
        model.to_empty(device="cpu")
        optimizer = make_optimizer(model)
        _loss(model(make_input())).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        tracker = MemTracker()
        tracker.track_external(model, optimizer)
        with tracker:
            output = model(make_input())
            after_forward = tracker.get_tracker_snapshot("current")
            _loss(output).backward()
            optimizer.step()
        peak = tracker.get_tracker_snapshot("peak")
    at_peak = next(iter(peak.values()))
    forward = next(iter(after_forward.values()))
    return StepMemory(
        parameters=at_peak.get(_MemRefType.PARAM, 0),
        buffers=at_peak.get(_MemRefType.BUFFER, 0),
        gradients=sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad),
        optimizer=at_peak.get(_MemRefType.OPT, 0),
        activations=forward.get(_MemRefType.ACT, 0) + forward.get(_MemRefType.TEMP, 0),
        largest_unit=units,
    )
