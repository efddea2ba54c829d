"""A value the driver pickles for the workers and Ray Train's controller passes on unopened.

The controller unpickles the train loop config too: a launcher in it, opened there, would
import its training's modules (torch, the user's own) into the controller, which needs
none of them, on the path to every run's first step.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Sealed:
    data: bytes
    label: str
    """What it holds, as the state API and the dashboard show the loop config."""

    @classmethod
    def of(cls, value: Any, label: str) -> Sealed:
        from ray import cloudpickle  # functions defined in __main__ or a test go by value

        return cls(cloudpickle.dumps(value), label)

    def open(self) -> Any:
        return pickle.loads(self.data)

    def __str__(self) -> str:
        return self.label
