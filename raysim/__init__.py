"""raysim: simulate a multi-node data-parallel training cluster on one machine with Ray Train.

The public API is loaded on first use, so `import raysim` (and the `raysim` command's
help and config errors) do not pay for torch and Ray.
"""

from __future__ import annotations

import importlib
from typing import Any

_PUBLIC = {
    "ConfigError": "raysim.errors",
    "ExperimentConfig": "raysim.config",
    "load_config": "raysim.config",
    "RunFailedError": "raysim.failures",
    "RunResult": "raysim.experiment",
    "run": "raysim.experiment",
    "compare": "raysim.report",
    "sweep": "raysim.sweep",
}

__all__ = sorted([*_PUBLIC, "worker"])
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name == "worker":
        return importlib.import_module("raysim.worker")
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'raysim' has no attribute {name!r}")
