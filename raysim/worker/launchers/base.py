"""What a launcher is: how the training runs on a node once raysim has set the node up.

A function (function.py) or an unmodified torchrun-style script (script.py). Ray Train
calls the same entry on every worker (node.py), which sets the node up and hands over to
the launcher.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

from raysim.config.schema import ExperimentConfig


class Launcher(ABC):
    """Runs one node's training, picklable: the driver ships it to every worker."""

    name: ClassVar[str]

    @abstractmethod
    def launch(self, cfg: ExperimentConfig) -> None:
        """Run the node's training to its end; an exception fails the node."""
