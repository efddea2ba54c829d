"""TensorBoard event files for a run, written by the controller-side recorder only.

Tags: aggregate curves under train/, test/, time/ and throughput/; per simulated
node under node-<rank>/ so single and distributed runs line up side by side in
`tensorboard --logdir runs/`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

TENSORBOARD_DIR = "tensorboard"
MB = 1e6

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
HPARAM_KEYS = ("num_nodes", "batch_size", "learning_rate", "memory_fraction", "gpu_fraction")


class TensorBoardLogger:
    """Opens its writer lazily, so a run that never reports creates no event file."""

    def __init__(self, run_dir: Path, config: dict[str, Any]):
        self.log_dir = Path(run_dir) / TENSORBOARD_DIR
        self.config = config
        self._writer = None

    @property
    def writer(self):
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=str(self.log_dir))
            self._writer.add_text("config", "```\n" + yaml.safe_dump(self.config) + "```", 0)
        return self._writer

    def log_epoch(self, epoch: dict[str, Any], ranks: list[dict[str, Any]]) -> None:
        step = epoch["epoch"]
        for tag, key in EPOCH_SCALARS.items():
            self.writer.add_scalar(tag, epoch[key], step)
        for rank in ranks:
            for name, (key, scale) in NODE_SCALARS.items():
                self.writer.add_scalar(f"{rank['node_id']}/{name}", rank[key] / scale, step)
        self.writer.flush()

    def log_final(self, epoch: dict[str, Any]) -> None:
        hparams = {k: self.config[k] for k in HPARAM_KEYS}
        metrics = {
            "hparam/final_test_accuracy": epoch["test_accuracy"],
            "hparam/samples_per_s": epoch["samples_per_s"],
        }
        self.writer.add_hparams(hparams, metrics, run_name=".")
        self.writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
