"""Checkpoint state: everything that makes a resumed run the same run.

Model, optimizer, epoch, global step, and the torch, numpy and python RNG states (rank 0
saves these); a checkpoint taken mid-epoch (on a preemption notice) adds the steps done in
the epoch and, from every rank into the same checkpoint, that rank's sums so far and RNG
state. The sampler needs no state of its own: its shuffle is a function
of (seed, epoch), and a resumed epoch skips the indices its done steps took.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

STATE_FILE = "state.pt"
RANK_FILE = "rank-{rank}.pt"


@dataclass
class SavedState:
    epoch: int
    """The last finished epoch; with step > 0 the epoch in progress."""
    global_step: int
    """Steps done in the whole run, those of the epoch in progress included."""
    step: int
    """Steps done in `epoch` when saved mid-epoch; 0 at an epoch's end."""
    partial: dict[str, Any] | None
    """This rank's sums of the epoch so far (mid-epoch only)."""
    rng: dict[str, Any]
    """This rank's RNG state where it has its own (mid-epoch), else rank 0's."""


def _unwrapped(model: torch.nn.Module) -> torch.nn.Module:
    return getattr(model, "module", model)


def rng_state() -> dict[str, Any]:
    return {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }


def restore_rng(rng: dict[str, Any]) -> None:
    torch.set_rng_state(rng["torch"])
    np.random.set_state(rng["numpy"])
    random.setstate(rng["python"])


def save_state(directory: Path, model, optimizer, epoch: int, global_step: int,
               step: int = 0) -> None:  # fmt: skip
    """step: a mid-epoch checkpoint's steps done in `epoch` (every rank adds save_progress)."""
    torch.save(
        {
            "model": _unwrapped(model).state_dict(),
            "optimizer": optimizer.state_dict(),
            "epoch": epoch,
            "global_step": global_step,
            "step": step,
            "rng": rng_state(),
        },
        Path(directory) / STATE_FILE,
    )


def save_progress(directory: Path, rank: int, partial: dict[str, Any]) -> None:
    """A mid-epoch checkpoint's part from each rank: its epoch sums so far and RNG state."""
    torch.save(
        {"partial": partial, "rng": rng_state()}, Path(directory) / RANK_FILE.format(rank=rank)
    )


def load_state(directory: Path, model, optimizer, rank: int) -> SavedState:
    """Restore model, optimizer and RNG in place; returns what the checkpoint says for
    this rank."""
    directory = Path(directory)
    state = torch.load(directory / STATE_FILE, map_location="cpu", weights_only=False)
    _unwrapped(model).load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    own = {"partial": None, "rng": state["rng"]}
    if state.get("step"):
        own = torch.load(directory / RANK_FILE.format(rank=rank), weights_only=False)
    restore_rng(own["rng"])
    return SavedState(
        state["epoch"], state["global_step"], state.get("step", 0), own["partial"], own["rng"]
    )
