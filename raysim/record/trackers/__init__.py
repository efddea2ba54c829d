"""Where a run is logged besides metrics.jsonl: a tracker per file behind one interface
(base.py), and the registry that turns the config's `tracking:` block into the list.

A new tracker is one file here (a Tracker subclass) plus one line in REGISTRY; its
settings are a dataclass in raysim.config.tracking. No tracker imports its client before
it is used, so the driver checks and builds the list without torch, MLflow or wandb.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from raysim.config.tracking import Tracking
from raysim.record.trackers.base import RunEnd, Tracker, Trackers
from raysim.record.trackers.mlflow import Mlflow
from raysim.record.trackers.tensorboard import TensorBoard
from raysim.record.trackers.wandb import Wandb

__all__ = ["REGISTRY", "RunEnd", "Tracker", "Trackers", "check_trackers", "trackers_for"]

REGISTRY: dict[str, type[Tracker]] = {
    "tensorboard": TensorBoard,
    "mlflow": Mlflow,
    "wandb": Wandb,
}
"""A tracker's name (its key under `tracking:`) -> its class."""

ALWAYS = {"tensorboard": None}
"""Trackers every run has, with their settings: the run directory's own event files."""


def chosen(tracking: Tracking) -> dict[str, Any]:
    """The run's trackers by name, with their settings, in the order they log."""
    return {**ALWAYS, **tracking.chosen()}


def check_trackers(tracking: Tracking) -> None:
    """Driver, before anything is made: each tracker's own check (MLflow: is it installed)."""
    for name, settings in chosen(tracking).items():
        REGISTRY[name].check(settings)


def trackers_for(tracking: Tracking, run_dir: Path, config: dict[str, Any]) -> Trackers:
    """The run's trackers, built from plain settings: the driver's and the controller's
    lists are equal."""
    return Trackers(
        REGISTRY[name](settings, run_dir, config) for name, settings in chosen(tracking).items()
    )
