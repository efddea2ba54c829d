"""The function launcher: the node's training is a Python function (the built-in
experiment or the user's train_fn), called with the config as a dict."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from raysim.config.schema import ExperimentConfig
from raysim.worker.launchers.base import Launcher


@dataclass(frozen=True)
class FunctionLauncher(Launcher):
    train_fn: Callable[[dict[str, Any]], Any]

    name: ClassVar[str] = "function"

    def launch(self, cfg: ExperimentConfig) -> None:
        self.train_fn(cfg.to_dict())
