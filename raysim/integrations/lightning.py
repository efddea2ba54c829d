"""The Lightning Trainer's logged metrics (`self.log`) as raysim's lines, one per training
epoch, each node its own values (synced only where the program asks `sync_dist`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import ray.train
from lightning.pytorch import Callback, LightningModule, Trainer

from raysim.integrations.logs import metrics_line


class RaysimCallback(Callback):
    """Reports `trainer.callback_metrics` at the end of every training epoch."""

    def __init__(self, report: Callable[[dict[str, Any]], None] | None = None):
        self.report = report or ray.train.report
        self.lines = 0

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.lines += 1
        epoch, step = trainer.current_epoch, trainer.global_step
        self.report(metrics_line(self.lines, "lightning", trainer.callback_metrics, epoch, step))


def attach(trainer: Trainer) -> None:
    """The trainer gets raysim's callback, unless the program passed one."""
    if not any(isinstance(callback, RaysimCallback) for callback in trainer.callbacks):
        trainer.callbacks.append(RaysimCallback())
