"""The tracker interface: one place a run is logged besides metrics.jsonl, and the list
the spine and the recorder hold (they name no tracker).

A tracker's hooks run in two processes. The driver checks it before anything is made,
starts it before Ray starts and ends it with the run's outcome; Ray Train's controller
(the recorder) builds its own copy from the same plain settings and logs each epoch
there. Every hook is a no-op by default: a tracker overrides the ones it needs.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from raysim.errors import ConfigError
from raysim.failures import RunFailedError
from raysim.rundir import SUMMARY_FILE


class TrackerError(ConfigError):
    """A tracking problem the user can fix, told in one line (not a list of config keys)."""

    def __init__(self, message: str):
        self.problems = [message]
        ValueError.__init__(self, message)


def require_extra(key: str, package: str, module: str) -> None:
    """Before Ray starts: the tracker's extra is installed, or one line says how to install
    it (`key` is its name under `tracking:` and its extra's)."""
    try:
        __import__(module)
    except ImportError as err:
        raise TrackerError(
            f"tracking.{key} is set but {package} cannot be imported ({err}); "
            f"install raysim's {key} extra: pip install 'raysim[{key}]'"
        ) from None


def error_text(error: BaseException) -> str:
    """A run's error as a tracker records it: raysim's own message, or type and message."""
    return str(error) if isinstance(error, RunFailedError) else f"{type(error).__name__}: {error}"


def first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


@dataclass(frozen=True)
class RunEnd:
    """How the run ended, as the driver hands it to each tracker."""

    error: BaseException | None
    """None for a finished run."""
    summary: dict[str, Any] = field(default_factory=dict)
    """summary.json as written ({} where the run stopped before writing it)."""

    @property
    def status(self) -> str:
        if self.error is None:
            return "finished"
        return "killed" if isinstance(self.error, KeyboardInterrupt) else "failed"


class Tracker:
    """Made from its settings (the config's `tracking.<name>`, None for a tracker with
    none), the run directory and the resolved config as a dict: plain values, so the
    controller builds an equal one."""

    def __init__(self, settings: Any, run_dir: Path, config: dict[str, Any]):
        self.settings = settings
        self.run_dir = Path(run_dir)
        self.config = config

    @classmethod
    def check(cls, settings: Any) -> None:
        """Driver, before anything is made: a problem the user can fix, in one line."""

    def start(self, resume: bool) -> None:
        """Driver, once the run directory exists and before Ray starts."""

    def log_epoch(self, epoch: dict[str, Any], ranks: list[dict[str, Any]]) -> list[dict]:
        """Controller, each epoch once: the aggregate and each node's line. A failure to
        log never stops training: it comes back as notice lines for metrics.jsonl."""
        return []

    def close(self) -> None:
        """Controller: the last epoch is logged or the worker group failed (a restarted
        group logs on, reopening what it needs)."""

    def end(self, outcome: RunEnd) -> None:
        """Driver, when the run ends, whatever the outcome, started or not (a failure here
        must not hide the run's own result: tell it on stderr)."""


def _starts(tracker: Tracker) -> bool:
    return type(tracker).start is not Tracker.start


class Trackers(list[Tracker]):
    """The run's trackers, each hook fanned out in order."""

    def starts_on_driver(self) -> bool:
        """Whether any tracker does work at start (and may import its client there)."""
        return any(_starts(t) for t in self)

    def start(self, resume: bool) -> None:
        for tracker in self:
            tracker.start(resume)

    def log_epoch(self, epoch: dict[str, Any], ranks: list[dict[str, Any]]) -> list[dict]:
        return [line for tracker in self for line in tracker.log_epoch(epoch, ranks)]

    def close(self) -> None:
        for tracker in self:
            tracker.close()

    def end(self, error: BaseException | None, run_dir: Path) -> None:
        path = Path(run_dir) / SUMMARY_FILE
        try:
            summary = json.loads(path.read_text()) if path.is_file() else {}
        except (OSError, ValueError) as err:  # a torn file: the trackers still end
            print(f"raysim: warning: cannot read {path}: {err}", file=sys.stderr)
            summary = {}
        outcome = RunEnd(error, summary)
        for tracker in self:
            tracker.end(outcome)

    @contextmanager
    def running(self, run_dir: Path, resume: bool) -> Iterator[Trackers]:
        """Started now, ended with the run's outcome, whatever it is (a tracker whose start
        failed or never came ends as nothing)."""
        try:
            self.start(resume)
            yield self
        except BaseException as err:
            self.end(err, run_dir)
            raise
        self.end(None, run_dir)
