"""What a projected cluster costs (raysim.projection.cost): per epoch, to a target a run
reached, and `raysim project --usd-per-gpu-hour` on a run that reached its target."""

import subprocess
import sys
from pathlib import Path

import pytest

from raysim.errors import ConfigError
from raysim.projection.cost import PRICES, cost_of, parse_price
from raysim.projection.step_model import projected_step

ROOT = Path(__file__).resolve().parents[2]


def row(gpus=16, samples_per_s=1000.0):
    step = gpus * 32 / samples_per_s
    return projected_step(gpus, gpus // 8, 32, 0.2, 0.0, (step, step), "ring")


def test_cost_is_gpu_hours_times_the_price():
    cost = cost_of(row(16, 1000.0), epoch_samples=3_600_000, usd_per_gpu_hour=2.0,
                   samples_to_target=7_200_000)  # fmt: skip
    assert cost.epoch_s == pytest.approx(3600)
    assert cost.epoch_usd == pytest.approx(16 * 2.0)
    assert cost.to_target_s == pytest.approx(7200)
    assert cost.to_target_usd == pytest.approx(64.0)
    assert cost_of(row(), 1000, 2.0).to_target_usd is None  # target not reached: no figure


def test_prices_by_number_or_preset_with_their_date_and_source():
    assert parse_price("2.5")[0] == 2.5
    for name, price in PRICES.items():
        value, source = parse_price(name)
        assert value == price.usd_per_gpu_hour and price.date in source and price.source
    with pytest.raises(ConfigError, match="--usd-per-gpu-hour"):
        parse_price("aws-p4d-on-demnd")
    with pytest.raises(ConfigError, match="--usd-per-gpu-hour"):
        parse_price("-1")


def test_project_prints_cost_per_epoch_for_a_model():
    done = subprocess.run(
        [sys.executable, "-m", "raysim.cli", "project", "--model", "resnet50", "--batch-size",
         "64", "--step-time-ms", "180", "--gpus-per-node", "8", "--network", "ib_hdr",
         "--nodes", "1,2", "--usd-per-gpu-hour", "aws-p5-capacity-block"],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "cost at $4.916 per GPU-hour" in done.stdout and "2024 Q4" in done.stdout
    assert "epoch: 1281167 samples" in done.stdout
