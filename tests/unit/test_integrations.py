"""A framework's logs as raysim's metrics line, without the framework."""

from __future__ import annotations

import math

import torch

from raysim.integrations.logs import metrics_line, scalars, training_loss


def test_a_hugging_face_log_becomes_a_numbered_line_with_its_loss():
    logs = {"loss": 2.5, "grad_norm": 0.7, "learning_rate": 1e-3, "epoch": 0.25}
    line = metrics_line(3, "hf", logs, 0.25, 12)
    assert line == {"loss": 2.5, "grad_norm": 0.7, "learning_rate": 1e-3, "train_loss": 2.5,
                    "epoch": 3, "hf_epoch": 0.25, "hf_global_step": 12}  # fmt: skip


def test_lightnings_tensors_are_read_and_its_epoch_loss_is_the_training_loss():
    logged = {"train_loss_step": torch.tensor(0.4), "train_loss_epoch": torch.tensor(0.5),
              "val_acc": torch.tensor(0.9), "note": "text", "vector": torch.ones(3)}  # fmt: skip
    line = metrics_line(1, "lightning", logged, 0, 32)
    assert math.isclose(line["train_loss"], 0.5)
    assert set(line) == {"train_loss_step", "train_loss_epoch", "val_acc", "train_loss",
                         "epoch", "lightning_epoch", "lightning_global_step"}  # fmt: skip


def test_no_finite_loss_leaves_train_loss_out():
    assert training_loss(scalars({"loss": float("nan"), "eval_loss": 1.0})) is None
    assert "train_loss" not in metrics_line(1, "hf", {"eval_loss": 1.0}, 1.0, 4)
    assert scalars({"flag": True, "steps": 3}) == {"steps": 3.0}
