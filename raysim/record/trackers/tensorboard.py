"""The TensorBoard tracker: every run's event files, written on the controller only.

Tags: aggregate curves under train/, test/, time/ and throughput/; per simulated
node under node-<rank>/ so single and distributed runs line up side by side in
`tensorboard --logdir runs/`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from raysim.errors import is_number
from raysim.record.trackers.base import Tracker
from raysim.rundir import TENSORBOARD_DIR
from raysim.units import MB

EPOCH_SCALARS = {
    "train/loss": "train_loss",
    "train/accuracy": "train_accuracy",
    "test/accuracy": "test_accuracy",
    "time/epoch_s": "epoch_time_s",
    "throughput/samples_per_s": "samples_per_s",
}
NODE_SCALARS = {
    "samples_per_s": ("samples_per_s", 1.0),
    "step_time_s": ("step_time_s", 1.0),
    "peak_rss_mb": ("peak_rss_bytes", MB),
}
NOT_CURVES = {
    "epoch", "world_size", "slowest_rank", "report_unix", "epoch_start_unix", "wall_time_s",
    "train_loss_sum", "train_correct", "test_correct", "test_total", "rank",
}  # fmt: skip


HPARAM_KEYS = ("num_nodes", "batch_size", "learning_rate", "memory_fraction", "gpu_fraction")


class TensorBoard(Tracker):
    """Opens its writer lazily, so a run that never reports creates no event file; the
    last epoch adds the run's hparams."""

    def __init__(self, settings: None, run_dir: Path, config: dict[str, Any]):
        super().__init__(settings, run_dir, config)
        self.log_dir = self.run_dir / TENSORBOARD_DIR
        self._writer = None

    @property
    def writer(self):
        if self._writer is None:
            from raysim.record.trackers.event_writer import EventWriter

            self._writer = EventWriter(self.log_dir)
            self._writer.add_text("config", "```\n" + yaml.safe_dump(self.config) + "```", 0)
        return self._writer

    def log_epoch(self, epoch: dict[str, Any], ranks: list[dict[str, Any]]) -> list[dict]:
        """The built-in experiment's curves by name; any other function's numeric metrics
        (averaged over the nodes) under metrics/."""
        self._log_curves(epoch, ranks)
        if epoch["epoch"] == self.config["num_epochs"]:
            self._log_final(epoch)
        return []

    def _log_curves(self, epoch: dict[str, Any], ranks: list[dict[str, Any]]) -> None:
        step = epoch["epoch"]
        named = set(EPOCH_SCALARS.values())
        for tag, key in EPOCH_SCALARS.items():
            if key in epoch:
                self.writer.add_scalar(tag, epoch[key], step)
        for key, value in epoch.items():
            if key not in named and key not in NOT_CURVES and is_number(value):
                self.writer.add_scalar(f"metrics/{key}", value, step)
        for rank in ranks:
            for name, (key, scale) in NODE_SCALARS.items():
                if key in rank:
                    self.writer.add_scalar(f"{rank['node_id']}/{name}", rank[key] / scale, step)
        self.writer.flush()

    def _log_final(self, epoch: dict[str, Any]) -> None:
        hparams = {k: self.config[k] for k in HPARAM_KEYS}
        finals = {"final_test_accuracy": "test_accuracy", "samples_per_s": "samples_per_s"}
        metrics = {f"hparam/{name}": epoch[key] for name, key in finals.items() if key in epoch}
        if not metrics:
            return
        self.writer.add_hparams(hparams, metrics)
        self.writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
