"""Controller-side recorder: the one place metrics are written.

Runs inside Ray Train's controller actor (not the driver), so it writes files and
prints nothing; the driver follows metrics.jsonl for the console.
"""

from __future__ import annotations

import time
import traceback
from pathlib import Path

from ray.train import UserCallback

from raysim.metrics import METRICS_FILE, aggregate_epoch, append_lines
from raysim.tensorboard_logger import TensorBoardLogger


class MetricsRecorder(UserCallback):
    def __init__(self, run_dir: Path, run_start_unix: float, config: dict):
        self.metrics_path = Path(run_dir) / METRICS_FILE
        self.run_start_unix = run_start_unix
        self.num_epochs = config["num_epochs"]
        self.tensorboard = TensorBoardLogger(run_dir, config)

    def after_report(self, run_context, metrics, checkpoint):
        ranks = [{"kind": "rank", **m} for m in metrics]
        epoch = aggregate_epoch(metrics, self.run_start_unix)
        append_lines(self.metrics_path, [*ranks, epoch])
        self.tensorboard.log_epoch(epoch, ranks)
        if epoch["epoch"] == self.num_epochs:
            self.tensorboard.log_final(epoch)
            self.tensorboard.close()

    def after_exception(self, run_context, worker_exceptions):
        failures = {
            str(rank): "".join(traceback.format_exception(err)).strip()
            for rank, err in worker_exceptions.items()
        }
        append_lines(
            self.metrics_path, [{"kind": "error", "time_unix": time.time(), "ranks": failures}]
        )
        self.tensorboard.close()
