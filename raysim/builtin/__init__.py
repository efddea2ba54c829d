"""The built-in experiment: ResNet18 on digits, an image folder or synthetic images.

Written on raysim.worker's public calls only, like a user's own training function.
Loaded on first use: the driver's checks (checks.py) run before torch is imported.
"""

from __future__ import annotations

from typing import Any

__all__ = ["resnet18_experiment"]


def __getattr__(name: str) -> Any:
    if name == "resnet18_experiment":
        from raysim.builtin.loop import resnet18_experiment

        return resnet18_experiment
    raise AttributeError(f"module 'raysim.builtin' has no attribute {name!r}")
