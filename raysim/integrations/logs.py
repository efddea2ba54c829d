"""A framework's logged metrics as one raysim metrics line: pure functions, no framework.

The line's `epoch` is raysim's line number (the recorder keys lines on it, and a fault's
epoch counts lines); the framework's own epoch and step keep their names prefixed, and
its loss is also the line's `train_loss`, which raysim's console and report read.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

LOSS_KEYS = ("train_loss", "loss", "train_loss_epoch", "loss_epoch")
"""Where a framework keeps the training loss, in order of preference: the Hugging Face
Trainer logs `loss`; Lightning's `self.log("train_loss", on_epoch=True)` adds `_epoch`."""


def scalars(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The metrics that are numbers (a one-element tensor's value too); the rest dropped."""
    values = {}
    for key, value in metrics.items():
        if hasattr(value, "numel") and value.numel() == 1:
            value = value.item()
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        values[key] = float(value)
    return values


def training_loss(metrics: Mapping[str, float]) -> float | None:
    """The training loss among the logged metrics, if it is there and finite."""
    for key in LOSS_KEYS:
        value = metrics.get(key)
        if value is not None and math.isfinite(value):
            return value
    return None


def metrics_line(
    number: int, framework: str, logged: Mapping[str, Any], epoch: float, step: int
) -> dict[str, Any]:
    """Line `number` from the framework's logs at its `epoch` and global `step`."""
    values = scalars(logged)
    values.pop("epoch", None)  # the framework's (a fraction for Hugging Face): kept below
    line: dict[str, Any] = {
        **values,
        "epoch": number,
        f"{framework}_epoch": epoch,
        f"{framework}_global_step": step,
    }
    loss = training_loss(values)
    if loss is not None:
        line["train_loss"] = loss
    return line
