"""A model's gradient buckets and when backward makes each ready, without a run or a GPU.

The model runs one forward on the meta device (shapes only, no memory, no weights) under
torch's FLOP counter. Backward runs the forward's operations in reverse, each costing
about twice its forward FLOPs (BACKWARD_TO_FORWARD: gradients of the input and of the
weights), so when backward reaches a module, the share of it done is the share of
forward FLOPs spent after that module's first call. A parameter's gradient is ready then
(a shared weight at its first use, the last one backward reaches), a DDP bucket when its
last parameter's is. So a large fully connected layer at the end of the network, many bytes and few
FLOPs, is ready early in backward, as on a real cluster.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from raysim.errors import ConfigError, did_you_mean
from raysim.projection.comm_model import bucket_layout
from raysim.projection.fsdp_step import FsdpUnit, FsdpWorkload
from raysim.projection.step_model import (
    BACKWARD_TO_FORWARD,
    TORCH_DDP_OVERHEAD_S_PER_GB,
    Workload,
    assumed_backward_share,
)

NATIVE_SIZE = {"inception_v3": 299}
"""Input sizes other than 224 among torchvision's classification models."""


@dataclass(frozen=True)
class ModelProfile:
    name: str
    parameters: int
    buckets_bytes: tuple[int, ...]
    """DDP's default buckets in all-reduce order."""
    ready_fraction: tuple[float, ...]
    backward_share: float
    """Backward's share of forward + backward FLOPs."""
    forward_flops: int
    """Per sample."""


def profile_model(
    model: torch.nn.Module, example: Any, name: str, bucket_cap_mb: float | None = None
) -> ModelProfile:
    """Buckets (DDP's default caps, or `bucket_cap_mb`) and FLOP-based readiness of `model`
    on `example` (both on one device, the meta device for shapes only)."""
    model.train()
    counter = FlopCounterMode(display=False)
    started: dict[int, int] = {}
    """FLOPs done before each module's first call: backward reaches it after the rest."""

    def before(module, args) -> None:
        started.setdefault(id(module), counter.get_total_flops())

    handles = [m.register_forward_pre_hook(before) for m in model.modules()]
    _counted_forward(model, example, counter, handles)
    total = counter.get_total_flops()
    ready_at: dict[int, float] = {}
    for module in model.modules():
        if id(module) in started:
            share = 1 - started[id(module)] / total if total else 1.0
            for param in module.parameters(recurse=False):
                ready_at[id(param)] = max(ready_at.get(id(param), 0.0), share)
    layout = bucket_layout(model, bucket_cap_mb)
    return ModelProfile(
        name=name,
        parameters=sum(p.numel() for p in model.parameters()),
        buckets_bytes=tuple(sum(p.numel() * p.element_size() for p in b) for b in layout),
        ready_fraction=tuple(max(ready_at.get(id(p), 1.0) for p in b) for b in layout),
        backward_share=assumed_backward_share(),
        forward_flops=int(total // max(_batch_of(example), 1)),
    )


def _batch_of(example: Any) -> int:
    return int(example.shape[0]) if isinstance(example, torch.Tensor) and example.dim() else 1


def classification_models() -> list[str]:
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


def torchvision_profile(name: str) -> ModelProfile:
    """A torchvision classification model, built without weights on the meta device, at
    its native input size (224, or 299 for inception_v3)."""
    return profile_model(*torchvision_model(name), name)


def torchvision_model(name: str) -> tuple[torch.nn.Module, torch.Tensor]:
    """A torchvision classification model built without weights on the meta device, and an
    example batch of two at its native input size (224, or 299 for inception_v3)."""
    import torchvision

    known = classification_models()
    if name not in known:
        raise ConfigError(
            [f"--model: {name!r} is not a torchvision classification model; "
             f"{did_you_mean(name, known)}e.g. resnet50, vgg16, vit_b_16"]
        )  # fmt: skip
    extra = {"aux_logits": False, "init_weights": False} if name == "inception_v3" else {}
    size = NATIVE_SIZE.get(name, 224)
    with torch.device("meta"):
        model = torchvision.models.get_model(name, weights=None, **extra)
        example = torch.empty(2, 3, size, size)
    model.train()
    return model, example


def model_workload(name: str, batch: int, step_time_ms: float) -> Workload:
    """A torchvision model without a run: buckets and FLOP-based readiness on the meta device."""
    profile = torchvision_profile(name)
    return Workload(
        step_s=step_time_ms / 1e3,
        batch_per_gpu=batch,
        buckets_bytes=profile.buckets_bytes,
        ready_fraction=profile.ready_fraction,
        backward_share=profile.backward_share,
        step_source="given: --step-time-ms",
        readiness_source=f"{name}'s FLOPs per layer (meta device), "
        f"backward = {BACKWARD_TO_FORWARD:g}x forward",
        sync_overhead_s=TORCH_DDP_OVERHEAD_S_PER_GB * sum(profile.buckets_bytes) / 1e9,
    )


STACKS = (torch.nn.ModuleList, torch.nn.ModuleDict)
"""Containers of blocks that are never called themselves (a transformer's layers): FSDP
cannot make one a unit (no forward to gather in), so their blocks are the units."""


def _holds_parameters(module: torch.nn.Module) -> bool:
    return any(p.requires_grad for p in module.parameters())


def fsdp_default_units(model: torch.nn.Module) -> list[tuple[str, torch.nn.Module]]:
    """The modules raysim's fsdp strategy makes units of their own, named, in definition
    order: each direct child holding trainable parameters, and in place of a stack of blocks
    (a ModuleList or ModuleDict, a transformer's layers) or of a child that holds one, each
    block, as FSDP is used on transformers. Not a module whose parameter another module
    holds too (tied weights, as a language model's output layer and its embedding: its
    children are looked at instead) nor an embedding, whose weight the model's own forward
    often reads outside the embedding's (a tied output layer, as examples/transformer_lm.py's).
    FSDP keeps a unit's parameters sharded outside its forward and backward, so those stay
    whole in the model's own unit, the root."""
    holders = Counter(id(p) for _, p in model.named_parameters(remove_duplicate=False))

    def shared(module: torch.nn.Module) -> bool:
        inside = Counter(id(p) for _, p in module.named_parameters(remove_duplicate=False))
        return any(holders[key] != count for key, count in inside.items())

    def units(prefix: str, module: torch.nn.Module) -> list[tuple[str, torch.nn.Module]]:
        found = []
        for name, child in module.named_children():
            path = f"{prefix}{name}"
            if not _holds_parameters(child) or isinstance(child, torch.nn.Embedding):
                continue
            holds_a_stack = any(isinstance(c, STACKS) for c in child.children())
            if isinstance(child, STACKS) or holds_a_stack or shared(child):
                found += units(f"{path}.", child)
            else:
                found.append((path, child))
        return found

    return units("", model)


def fsdp_root_parameters(
    model: torch.nn.Module, units: list[tuple[str, torch.nn.Module]]
) -> list[torch.nn.Parameter]:
    """What FSDP's root unit holds: the model's parameters that none of `units` holds."""
    in_units = {id(p) for _, unit in units for p in unit.parameters()}
    return [p for p in model.parameters() if id(p) not in in_units]


def fsdp_units(model: torch.nn.Module, example: Any) -> tuple[FsdpUnit, ...]:
    """FSDP's default units of `model` (fsdp_default_units, then the root with the rest),
    each with its share of forward's FLOPs on `example` (the meta device: shapes only).
    The root keeps its parameters after forward (FSDP2's root does)."""
    counter = FlopCounterMode(display=False)
    children = fsdp_default_units(model)
    spent: dict[str, int] = {}
    """FLOPs counted while each unit ran (its calls' FLOPs, summed)."""

    def timed(name: str):
        def before(module, args) -> None:
            spent[name] = spent.get(name, 0) - counter.get_total_flops()

        def after(module, args, output) -> None:
            spent[name] += counter.get_total_flops()

        return before, after

    handles = []
    for name, child in children:
        before, after = timed(name)
        handles += [child.register_forward_pre_hook(before), child.register_forward_hook(after)]
    _counted_forward(model, example, counter, handles)
    total = counter.get_total_flops() or 1
    root_params = sum(p.numel() for p in fsdp_root_parameters(model, children))
    units = [FsdpUnit(name, sum(p.numel() for p in child.parameters()), spent.get(name, 0) / total)
             for name, child in children]  # fmt: skip
    root_share = 1 - sum(u.compute_share for u in units)
    return (FsdpUnit("root", root_params, max(root_share, 0.0), regather=False), *units)


def fsdp_model_workload(name: str, batch: int, step_time_ms: float) -> FsdpWorkload:
    """A torchvision model under FSDP without a run: its default units (fsdp_units), fp32
    parameters and gradients on the wire (no mixed precision)."""
    model, example = torchvision_model(name)
    units = fsdp_units(model, example)
    return FsdpWorkload(
        step_s=step_time_ms / 1e3, batch_per_gpu=batch, units=units,
        backward_share=assumed_backward_share(), step_source="given: --step-time-ms",
        units_source=f"{name}'s default units (fsdp_default_units), then the root; their "
        f"FLOPs (meta device), backward = {BACKWARD_TO_FORWARD:g}x forward; fp32 all-gather "
        "and reduce-scatter",
    )  # fmt: skip


def _counted_forward(model, example, counter, handles: list) -> None:
    """One forward of `model` under the FLOP counter; the hooks `handles` came from are
    removed after it, whatever happens."""
    try:
        with counter:
            model(example)
    finally:
        for handle in handles:
            handle.remove()
