"""Checkpoint state: everything that makes a resumed run the same run.

Model, optimizer, epoch, global step, and the torch, numpy and python RNG states.
The sampler needs no state of its own: its shuffle is a function of (seed, epoch).
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

STATE_FILE = "state.pt"


def _unwrapped(model: torch.nn.Module) -> torch.nn.Module:
    return getattr(model, "module", model)


def save_state(directory: Path, model, optimizer, epoch: int, global_step: int) -> None:
    torch.save(
        {
            "model": _unwrapped(model).state_dict(),
            "optimizer": optimizer.state_dict(),
            "epoch": epoch,
            "global_step": global_step,
            "rng": {
                "torch": torch.get_rng_state(),
                "numpy": np.random.get_state(),
                "python": random.getstate(),
            },
        },
        Path(directory) / STATE_FILE,
    )


def load_state(directory: Path, model, optimizer) -> tuple[int, int]:
    """Restore in place; returns (epoch, global_step) of the checkpoint."""
    state = torch.load(Path(directory) / STATE_FILE, map_location="cpu", weights_only=False)
    _unwrapped(model).load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["rng"]["torch"])
    np.random.set_state(state["rng"]["numpy"])
    random.setstate(state["rng"]["python"])
    return state["epoch"], state["global_step"]
