"""The Hugging Face Trainer's training logs (every `logging_steps`) as raysim's lines.

Every rank logs at the same steps (the Trainer gathers the loss across ranks first), so
every node reports each line. Evaluation logs join the next training line; the summary
the Trainer logs when it ends is left to the program's own output.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import ray.train
from transformers import TrainerCallback
from transformers.trainer_callback import CallbackHandler

from raysim.integrations.logs import metrics_line


class RaysimCallback(TrainerCallback):
    """Reports each training log (one with `loss`) through `report`."""

    def __init__(self, report: Callable[[dict[str, Any]], None] | None = None):
        self.report = report or ray.train.report
        self.lines = 0
        self.pending: dict[str, Any] = {}
        """Logs without a loss (evaluation) since the last line."""

    def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
        logs = dict(logs or {})
        if "loss" not in logs:
            self.pending.update(logs)
            return
        self.lines += 1
        logged = {**self.pending, **logs}
        self.pending = {}
        self.report(metrics_line(self.lines, "hf", logged, state.epoch or 0.0, state.global_step))


def attach(handler: CallbackHandler) -> None:
    """The trainer's callback handler gets raysim's callback, unless the program passed one."""
    if not any(isinstance(callback, RaysimCallback) for callback in handler.callbacks):
        handler.add_callback(RaysimCallback())
