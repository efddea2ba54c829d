"""The Weights & Biases tracker (the config's `tracking: {wandb: ...}`), an optional extra.

A W&B run object belongs to the process that opened it, and a raysim run logs from two:
so each opens the same W&B run id (`resume="allow"`) for its part. The driver opens it
before Ray starts with the resolved config and closes it; the controller-side recorder
opens it at its first epoch and logs every epoch with the epoch as the step (the
aggregate under its metrics.jsonl names, each simulated node under `node-<rank>/`), and
closes it with the worker group; the driver opens it once more when the run ends for the
summary (summary.json's figures as summary/..., the status and the error) and its exit
code. The id is kept in the run directory's wandb.json, so a resumed raysim run goes on
logging to its W&B run.

The default mode is offline: W&B writes each process's part in the run directory
(wandb/offline-run-<time>-<id>/) and nothing leaves the machine; `wandb sync --id <id>`
uploads the parts in order as one run. wandb is imported only by a run that asks for it.
"""

from __future__ import annotations

import json
import secrets
import sys
from pathlib import Path
from typing import Any

from raysim.config.tracking import WandbSettings
from raysim.record.trackers.base import (
    RunEnd,
    Tracker,
    TrackerError,
    error_text,
    first_line,
    require_extra,
)
from raysim.record.trackers.figures import epoch_figures, summary_figures
from raysim.rundir import WANDB_RUN_FILE, write_json


class Wandb(Tracker):
    """One raysim run's W&B run, opened by id in each process that logs to it."""

    def __init__(self, settings: WandbSettings, run_dir: Path, config: dict[str, Any]):
        super().__init__(settings, run_dir, config)
        self.run_id: str | None = None
        self._run = None
        self._told = False

    @classmethod
    def check(cls, settings: WandbSettings) -> None:
        """The extra is installed, or one line says how to install it."""
        require_extra("wandb", "wandb", "wandb")

    def _open(self, **init: Any):
        """This process's part of the run (W&B's console capture and system metrics off:
        raysim has its own console, and each node's figures)."""
        import wandb

        quiet = wandb.Settings(silent=True, console="off", x_disable_stats=True)
        return wandb.init(
            project=self.settings.project, mode=self.settings.mode, id=self.run_id,
            resume="allow", dir=str(self.run_dir), name=self.run_dir.name, settings=quiet,
            reinit="create_new", **init,
        )  # fmt: skip

    def _saved_id(self) -> str | None:
        path = self.run_dir / WANDB_RUN_FILE
        return json.loads(path.read_text())["run_id"] if path.is_file() else None

    # The driver, before Ray starts.

    def start(self, resume: bool) -> None:
        """Open the run (a resumed run directory's own id, else a new random one, in W&B's
        alphabet of run ids) and log the config."""
        self.run_id = (self._saved_id() if resume else None) or secrets.token_hex(6)
        try:
            self._open(config=self.config).finish()
        except Exception as err:  # a server that cannot be reached, a login missing
            raise TrackerError(
                f"tracking.wandb: cannot open a W&B run ({self.settings.mode}, project "
                f"{self.settings.project}): {first_line(err)}"
            ) from None
        saved = {"run_id": self.run_id, "project": self.settings.project,
                 "mode": self.settings.mode}  # fmt: skip
        write_json(self.run_dir / WANDB_RUN_FILE, saved)

    # The controller-side recorder, once per epoch.

    def log_epoch(self, epoch: dict[str, Any], ranks: list[dict[str, Any]]) -> list[dict]:
        """Log an epoch, the epoch as the step; a failure to log is told once, as a notice
        line, and the next epochs try again."""
        step = int(epoch["epoch"])
        try:
            if self._run is None:
                self.run_id = self.run_id or self._saved_id()
                self._run = self._open()
            self._run.log(epoch_figures(epoch, ranks), step=step)
        except Exception as err:
            if self._told:
                return []
            self._told = True
            text = f"W&B logging failed at epoch {step}: {first_line(err)}"
            return [{"kind": "notice", "epoch": step, "text": text}]
        return []

    def close(self) -> None:
        """The controller's part ends with the worker group (a restarted one reopens)."""
        if self._run is not None:
            run, self._run = self._run, None
            run.finish()

    # The driver, when the run ends.

    def end(self, outcome: RunEnd) -> None:
        """Summary, status and exit code. A tracking failure here is told on stderr and
        does not hide the run's own result."""
        if self.run_id is None:
            return  # never started (the run stopped before its run directory)
        try:
            run = self._open()
            run.summary.update(self.summary(outcome))
            run.tags = (outcome.status,)
            run.finish(exit_code=0 if outcome.error is None else 1)
        except Exception as err:
            print(f"raysim: warning: W&B: could not end run {self.run_id}: {err}",
                  file=sys.stderr)  # fmt: skip

    @staticmethod
    def summary(outcome: RunEnd) -> dict[str, Any]:
        """summary.json's figures as summary/..., the environment, the status, the error."""
        values: dict[str, Any] = {**summary_figures(outcome.summary), "status": outcome.status}
        if outcome.summary.get("environment"):
            values["environment"] = outcome.summary["environment"]
        if outcome.error is not None:
            values["error"] = error_text(outcome.error)
        return values
