"""What a projected cluster costs (raysim.projection.cost): per epoch, to a target a run
reached, `raysim project --usd-per-gpu-hour`, and `raysim compare --target
--usd-per-gpu-hour` on run directories, one that reached its target and one that did not."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from raysim.errors import ConfigError
from raysim.projection.cost import PRICES, cost_of, parse_price
from raysim.projection.step_model import projected_step
from raysim.projection.target import parse_target
from raysim.report import compare

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


def write_run(root, name, nodes, accuracies, samples_per_epoch=1000, step_s=0.05):
    """A finished run directory as `raysim run` writes it, with model facts and a
    measured step, reaching the accuracies given epoch by epoch."""
    run = root / name
    run.mkdir()
    (run / "config.yaml").write_text(f"num_nodes: {nodes}\nbatch_size: 10\ngpu_fraction: 0.5\n")
    model = {"parameters": 1_000_000, "gradient_bytes": 4_000_000,
             "default_buckets_bytes": [1_000_000, 3_000_000],
             "ddp_buckets_bytes": [4_000_000], "backward_s": 0.03}  # fmt: skip
    per_node = [{"memory_budget_bytes": 10**9, "memory_peak_bytes": 10**8,
                 "peak_rss_bytes": 2 * 10**8}] * nodes  # fmt: skip
    summary = {"status": "finished", "model": model, "nodes": per_node, "environment": {}}
    (run / "summary.json").write_text(json.dumps(summary))
    lines = []
    for epoch, accuracy in enumerate(accuracies, start=1):
        lines.append({"kind": "epoch", "epoch": epoch, "samples_per_s": 100.0,
                      "test_accuracy": accuracy, "train_samples": samples_per_epoch,
                      "train_loss": 1.0, "epoch_time_s": 10.0,
                      "wall_time_s": 10.0 * epoch})  # fmt: skip
        lines += [{"kind": "rank", "epoch": epoch, "rank": r, "step_time_s": step_s}
                  for r in range(nodes)]  # fmt: skip
    (run / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return run


def test_compare_prices_each_projected_run_per_epoch_and_to_its_target(tmp_path):
    reached = write_run(tmp_path, "two", 2, [0.5, 0.8, 0.9])
    never = write_run(tmp_path, "four", 4, [0.4, 0.5, 0.6])
    target = parse_target("gpus_per_node=8,intra=nvlink,network=ib_hdr")
    comparison = compare([reached, never], out=tmp_path / "report", target_accuracy=0.8,
                         target=target, step_time_ms=50, usd_per_gpu_hour="3")  # fmt: skip
    rows = {r["name"]: r for r in comparison["projection"]["rows"]}
    two = rows["two"]
    # An epoch of 1000 samples at the projected rate; the target after the 2000 the run took.
    assert two["epoch_s"] == pytest.approx(1000 / two["samples_per_s"])
    assert two["epoch_usd"] == pytest.approx(two["epoch_s"] / 3600 * 16 * 3)
    assert two["to_target_s"] == pytest.approx(2 * two["epoch_s"])
    assert two["to_target_usd"] == pytest.approx(2 * two["epoch_usd"])
    assert rows["four"]["to_target_usd"] is None and rows["four"]["epoch_usd"] > 0
    report = (tmp_path / "report" / "report.md").read_text()
    assert "Projected cost (not measured): $3 per GPU-hour" in report
    assert re.search(r"\| two \| 16 \| [\d.]+ min \| [\d.]+ \| [\d.]+ min \| [\d.]+ \|", report)
    assert re.search(r"\| four \| 32 \| [\d.]+ min \| [\d.]+ \| - \| - \|", report)


def test_a_price_without_a_target_is_one_clear_error(tmp_path):
    run = write_run(tmp_path, "two", 2, [0.5, 0.9])
    done = subprocess.run(
        [sys.executable, "-m", "raysim.cli", "compare", str(run), "--usd-per-gpu-hour", "2",
         "--out", str(tmp_path / "r")],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 2 and "--usd-per-gpu-hour" in done.stderr
    assert "needs --target" in done.stderr and "Traceback" not in done.stderr
