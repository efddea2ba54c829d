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

from raysim.estimate.compose import StepMemory, UnitMemory


def _nbytes(params) -> int:
    return sum(p.numel() * p.element_size() for p in params)


class _UnitActivations:
    """Each default FSDP unit's activations in one forward, read from the tracker: alive as
    it starts, and what it adds; units in the order the forward runs them."""

    def __init__(self, model: nn.Module):
        from raysim.projection.model_profile import fsdp_default_units, fsdp_root_parameters

        named = fsdp_default_units(model)
        self.units = [unit for _, unit in named]
        self.root = _nbytes(fsdp_root_parameters(model, named))
        self.started: dict[int, int] = {}
        """A unit's activations alive as its first run starts, in the order they ran."""
        self.added: dict[int, int] = {}

    def hooks(self, alive: Callable[[], int]) -> list:
        """Hooks on every unit; alive() gives the activations alive now."""

        def before(module, args) -> None:
            self.started.setdefault(id(module), alive())

        def after(module, args, output) -> None:
            self.added.setdefault(id(module), max(alive() - self.started[id(module)], 0))

        return [h for unit in self.units for h in (unit.register_forward_pre_hook(before),
                                                    unit.register_forward_hook(after))]  # fmt: skip

    def memory(self) -> tuple[UnitMemory, ...]:
        by_id = {id(unit): unit for unit in self.units}
        return tuple(
            UnitMemory(_nbytes(by_id[key].parameters()), before, self.added.get(key, 0))
            for key, before in self.started.items()
        )


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

    def activations(snapshot: dict) -> int:
        return in_use(snapshot, _MemRefType.ACT) + in_use(snapshot, _MemRefType.TEMP)

    with torch.device("meta"):
        model = build()
    units = _UnitActivations(model)
    with _quiet_fake_tensors(), FakeTensorMode(allow_non_fake_inputs=True):
        model.to_empty(device="cpu")
        optimizer = make_optimizer(model)
        _loss(model(make_input())).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        with tracker() as passes:
            handles = units.hooks(lambda: activations(passes.get_tracker_snapshot("current")))
            output = model(make_input())
            for handle in handles:
                handle.remove()
            after_forward = passes.get_tracker_snapshot("current")
            _loss(output).backward()
        with tracker() as step:
            optimizer.step()
    peak = passes.get_tracker_snapshot("peak")
    state = in_use(after_forward, _MemRefType.OPT)
    return StepMemory(
        parameters=in_use(peak, _MemRefType.PARAM),
        buffers=in_use(peak, _MemRefType.BUFFER),
        gradients=_nbytes(p for p in model.parameters() if p.requires_grad),
        optimizer=state,
        optimizer_step=max(in_use(step.get_tracker_snapshot("peak"), _MemRefType.OPT) - state, 0),
        activations=activations(after_forward),
        units=units.memory(),
        root_unit=units.root,
    )
