"""raysim launch on real Ray and gloo with a framework: the Hugging Face Trainer and the
Lightning examples run unchanged on 2 simulated nodes; the loss each logs is in
metrics.jsonl per node, beside raysim's step time and samples (counted from the keyword
inputs the Trainer passes) and the model's facts."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from raysim.cli import main
from raysim.rundir import epoch_lines, rank_lines, read_lines

pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def launch(tmp_path: Path, name: str, *argv: str) -> Path:
    assert main(["launch", "--device", "cpu", "--num-nodes", "2", "--run-dir", str(tmp_path),
                 "--run-name", name, *argv]) == 0  # fmt: skip
    return tmp_path / name


def measured(run_dir: Path, samples_per_line: int, parameters: int) -> list[dict]:
    """The run's rank lines, each with the framework's loss and raysim's measurements."""
    ranks = rank_lines(read_lines(run_dir / "metrics.jsonl"))
    for line in ranks:
        assert math.isfinite(line["train_loss"]) and 0 < line["train_loss"] < 10, line
        assert line["measured_samples"] == samples_per_line, line
        assert line["step_time_s"] > 0 and line["samples_per_s"] > 0, line
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "finished"
    assert summary["model"]["trainable_parameters"] == parameters
    return ranks


def test_a_hugging_face_trainer_logs_its_loss_with_raysims_measurements(
    shared_ray, tmp_path, monkeypatch
):
    """128 samples, 16 a rank a step: 4 steps an epoch, 8 in 2 epochs, a log every 2."""
    monkeypatch.chdir(tmp_path)  # the Trainer's output_dir
    run_dir = launch(tmp_path, "hf", str(EXAMPLES / "hf_trainer.py"), "--epochs", "2",
                     "--samples", "128", "--logging-steps", "2")  # fmt: skip
    layer = 2 * 32 + (32 * 96 + 96) + (32 * 32 + 32) + 2 * 32 + (32 * 128 + 128) + (128 * 32 + 32)
    ranks = measured(run_dir, 2 * 16, 64 * 32 + 16 * 32 + 2 * layer + 2 * 32)  # tied lm_head
    assert [(r["epoch"], r["rank"]) for r in ranks] == [(e, k) for e in range(1, 5) for k in (0, 1)]
    assert [r["hf_global_step"] for r in ranks[::2]] == [2, 4, 6, 8]
    assert [r["hf_epoch"] for r in ranks[::2]] == [0.5, 1.0, 1.5, 2.0]
    assert all(r["loss"] == r["train_loss"] and r["learning_rate"] > 0 for r in ranks)
    losses = [e["train_loss"] for e in epoch_lines(read_lines(run_dir / "metrics.jsonl"))]
    assert losses[-1] < losses[0], losses


def test_a_lightning_trainer_logs_its_loss_with_raysims_measurements(shared_ray, tmp_path):
    """256 samples, 32 a rank a step: 4 steps an epoch; a line per epoch, each node its own."""
    run_dir = launch(tmp_path, "lightning", str(EXAMPLES / "lightning_program.py"),
                     "--epochs", "2", "--samples", "256", "--lr", "0.05")  # fmt: skip
    ranks = measured(run_dir, 4 * 32, 32 * 256 + 256 + 256 * 2 + 2)
    assert [(r["epoch"], r["lightning_epoch"], r["rank"]) for r in ranks] == [
        (1, 0, 0), (1, 0, 1), (2, 1, 0), (2, 1, 1)
    ]  # fmt: skip
    assert all(r["train_loss"] == r["train_loss_epoch"] for r in ranks)
    assert ranks[0]["train_loss"] != ranks[1]["train_loss"], "each node's own loss"
    for rank in (0, 1):
        first, second = (r["train_loss"] for r in ranks if r["rank"] == rank)
        assert second < first
