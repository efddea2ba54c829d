"""Errors a user can fix, and the small checks that word them."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any


class ConfigError(ValueError):
    """A configuration problem the user can fix; the message says how."""

    def __init__(self, problems: list[str], source: str | None = None):
        self.problems = problems
        where = f" in {source}" if source else ""
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"invalid raysim configuration{where}:\n{lines}")


def did_you_mean(value: Any, choices: Iterable[str]) -> str:
    """ "did you mean 'x'? " for a near miss, else ""."""
    close = difflib.get_close_matches(str(value).lower(), list(choices), n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'? " if close else ""


def is_number(value: Any) -> bool:
    """An int or a float, not a bool (YAML's true is an int to Python)."""
    return isinstance(value, int | float) and not isinstance(value, bool)
