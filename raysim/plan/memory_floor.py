"""The least memory a node needs whatever its batch: the model's training state.

Caught before the first step: a budget below it could only fail there, and on the
CPU the limit is the whole process's, so the allocation that crosses a nearly full
budget may be one of gloo's or Ray's own threads' (which kills the worker) rather
than the training thread's clear error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from raysim.units import MB, gib

ADAM_MOMENTS = 2
"""Adam keeps two running moments per parameter."""
FP32_BYTES = 4


@dataclass(frozen=True)
class TrainingState:
    """What a node holds from its first step on, whatever the batch: the memory floor.
    Each strategy says what its nodes hold (raysim.worker.strategies)."""

    parameters: int
    bytes: int
    held: str
    """What it is, e.g. "gradients and Adam's 2 moments"."""
    count: str
    """How it adds up, e.g. "11.2M fp32 parameters × 3"."""


def training_state_bytes(parameters: int, moments: int = ADAM_MOMENTS) -> int:
    """fp32 gradients and the optimizer's moments, every one of them: what a node holds
    when it keeps a whole replica (DDP)."""
    return parameters * FP32_BYTES * (1 + moments)


def replicated_state(
    parameters: int, moments: int | None = ADAM_MOMENTS, optimizer: str = "Adam"
) -> TrainingState:
    """A whole replica's training state on every node (DDP). moments None: the optimizer is
    not known yet, so the gradients alone."""
    held = f"gradients and {optimizer}'s {moments} moments" if moments else "gradients"
    return TrainingState(
        parameters=parameters,
        bytes=training_state_bytes(parameters, moments or 0),
        held=held,
        count=f"{parameters / 1e6:.1f}M fp32 parameters × {1 + (moments or 0)}",
    )


def sharded_state(
    parameters: int,
    moments: int | None,
    optimizer: str,
    world_size: int,
    *,
    gradients_sharded: bool,
) -> TrainingState:
    """A node's share where the optimizer's moments (ZeRO-1), or the gradients too (FSDP,
    whose parameters are sharded as well and, like DDP's, counted in the baseline), are
    split over world_size nodes: each holds 1/world_size of them (rounded up)."""
    moments = moments or 0
    per_node = math.ceil(parameters / world_size)
    gradients = per_node if gradients_sharded else parameters
    what = "sharded gradients" if gradients_sharded else "gradients"
    held = f"{what} and {optimizer}'s {moments} sharded moments" if moments else what
    if gradients_sharded:
        count = f"{parameters / 1e6:.1f}M fp32 parameters × {1 + moments} / {world_size} nodes"
    else:
        count = f"{parameters / 1e6:.1f}M fp32 parameters × (1 + {moments} / {world_size} nodes)"
    return TrainingState(
        parameters=parameters,
        bytes=(gradients + per_node * moments) * FP32_BYTES,
        held=held,
        count=count,
    )


def optimizer_moments(optimizer: object) -> int:
    """Running moments an optimizer keeps per parameter: Adam's family two, momentum one."""
    name = type(optimizer).__name__
    if name in ("Adam", "AdamW", "NAdam", "RAdam", "Adamax", "Adafactor"):
        return 2
    defaults = getattr(optimizer, "defaults", {})
    if name in ("RMSprop", "Adagrad", "Adadelta") or defaults.get("momentum"):
        return 1
    return 0


def state_floor_problem(
    state: TrainingState,
    budget_bytes: int,
    memory_fraction: float,
    device_memory_bytes: int,
) -> str | None:
    """Why a budget cannot hold even the model's training state, or None."""
    if budget_bytes >= state.bytes:
        return None
    fraction = math.ceil(state.bytes / device_memory_bytes * 100) / 100
    return (
        f"memory_fraction {memory_fraction:g} × {gib(device_memory_bytes)} device gives each "
        f"node {budget_bytes / MB:.0f} MB, but the model's {state.held} alone take "
        f"{state.bytes / MB:.0f} MB ({state.count}), "
        f"before any activations. Fix: memory_fraction ≥ {fraction:g} (fewer nodes then fit "
        "on the device), a larger device_memory_gb, or enforce_memory: false"
    )
