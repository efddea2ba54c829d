"""A finished (or failed) run, read back from its run directory only."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from raysim.rundir import (
    CONFIG_FILE,
    SUMMARY_FILE,
    RunDirError,
    epoch_lines,
    is_run_dir,
    rank_lines,
    read_json,
    read_metrics,
)


class ReportError(RunDirError):
    """A path that is not a run directory, or nothing to compare."""


@dataclass
class RunRecord:
    run_dir: Path
    config: dict[str, Any]
    summary: dict[str, Any]
    epochs: list[dict[str, Any]]
    ranks: list[dict[str, Any]]

    @property
    def name(self) -> str:
        return self.run_dir.name

    @property
    def nodes(self) -> int:
        return self.config["num_nodes"]

    @property
    def finished(self) -> bool:
        return self.summary.get("status") == "finished" and bool(self.epochs)

    @property
    def measured(self) -> bool:
        """Has raysim's step measurements (any function that used prepare)."""
        return self.finished and "samples_per_s" in self.epochs[-1]

    @property
    def builtin(self) -> bool:
        """Made by the built-in experiment (a user's function reports its own metrics)."""
        return self.finished and "test_accuracy" in self.epochs[-1]


def run_dir_of(path: str | Path) -> Path:
    """`path` as a run directory, or a ReportError naming the problem and the fix."""
    run_dir = Path(path)
    if not is_run_dir(run_dir):
        raise ReportError(
            f"{run_dir} is not a raysim run directory (no {CONFIG_FILE}); "
            "pass folders made by `raysim run`, e.g. runs/<name>"
        )
    return run_dir


def load_run(path: str | Path) -> RunRecord:
    run_dir = run_dir_of(path)
    summary_path = run_dir / SUMMARY_FILE
    summary = (
        read_json(summary_path)
        if summary_path.is_file()
        else {"status": "incomplete", "error": "no summary.json: the run did not finish"}
    )
    records = read_metrics(run_dir)
    return RunRecord(
        run_dir=run_dir,
        config=run_config(run_dir / CONFIG_FILE),
        summary=summary,
        epochs=epoch_lines(records),
        ranks=rank_lines(records),
    )


def run_config(path: Path) -> dict[str, Any]:
    """The run's resolved config, or a ReportError: a run directory always has a mapping."""
    try:
        config = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        config = None
        problem = f"is not YAML{where}"
    else:
        problem = "does not hold a config mapping"
    if not isinstance(config, dict):
        raise ReportError(
            f"{path} {problem}; restore the file `raysim run` wrote there, or re-run the run"
        )
    return config
