"""The least memory a node needs whatever its batch: the model's training state.

Caught before the first step: a budget below it could only fail there, and on the
CPU the limit is the whole process's, so the allocation that crosses a nearly full
budget may be one of gloo's or Ray's own threads' (which kills the worker) rather
than the training thread's clear error.
"""

from __future__ import annotations

import math

from raysim.units import MB, gib

ADAM_MOMENTS = 2
"""Adam keeps two running moments per parameter."""
FP32_BYTES = 4


def training_state_bytes(parameters: int) -> int:
    """fp32 gradients and Adam's moments: held from the first step on, whatever the batch."""
    return parameters * FP32_BYTES * (1 + ADAM_MOMENTS)


def state_floor_problem(
    parameters: int, budget_bytes: int, memory_fraction: float, device_memory_bytes: int
) -> str | None:
    """Why a budget cannot hold even the model's training state, or None."""
    floor = training_state_bytes(parameters)
    if budget_bytes >= floor:
        return None
    fraction = math.ceil(floor / device_memory_bytes * 100) / 100
    return (
        f"memory_fraction {memory_fraction:g} × {gib(device_memory_bytes)} device gives each "
        f"node {budget_bytes / MB:.0f} MB, but the model's gradients and Adam's "
        f"{ADAM_MOMENTS} moments alone take {floor / MB:.0f} MB "
        f"({parameters / 1e6:.1f}M fp32 parameters × {1 + ADAM_MOMENTS}), before any "
        f"activations. Fix: memory_fraction ≥ {fraction:g} (fewer nodes then fit on the "
        "device), a larger device_memory_gb, or enforce_memory: false"
    )
