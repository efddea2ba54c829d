"""Comparison figures: pure arithmetic on records, then a real sweep read back."""

import json
import re
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from raysim.config import load_config
from raysim.report import ReportError, RunRecord, compare, compare_runs, load_run
from raysim.rundir import epoch_lines, read_lines
from raysim.sweep import sweep


def record(name, nodes, batch, rates, accs, budget=1000):
    epochs = [
        {
            "epoch": i + 1,
            "samples_per_s": rate,
            "test_accuracy": acc,
            "train_loss": 1.0 / (i + 1),
            "epoch_time_s": 100 / rate,
            "train_samples": 100,
            "wall_time_s": 10.0 * (i + 1),
        }
        for i, (rate, acc) in enumerate(zip(rates, accs, strict=True))
    ]
    nodes_summary = [
        {"peak_rss_bytes": 2000 + r, "memory_peak_bytes": 500 + r, "memory_budget_bytes": budget}
        for r in range(nodes)
    ]
    return RunRecord(
        run_dir=Path(name),
        config={"num_nodes": nodes, "batch_size": batch, "gpu_fraction": 0.25},
        summary={"status": "finished", "nodes": nodes_summary, "environment": {"cpus": 2}},
        epochs=epochs,
        ranks=[],
    )


def test_scaling_is_against_the_matching_one_node_run():
    runs = [
        record("one-8", 1, 8, [50, 100, 100], [0.5, 0.8, 0.9]),
        record("one-32", 1, 32, [100, 200, 200], [0.5, 0.7, 0.8]),
        record("four-8", 4, 8, [80, 160, 160], [0.6, 0.95, 0.97]),
    ]
    figures = {f["name"]: f for f in compare_runs(runs)["runs"]}
    four = figures["four-8"]
    assert four["samples_per_s"] == 160
    assert four["equal_node_batch_baseline"] == "one-8"
    assert four["equal_node_batch_speedup"] == pytest.approx(1.6)
    assert four["equal_node_batch_efficiency"] == pytest.approx(0.4)
    assert four["equal_global_batch_baseline"] == "one-32"
    assert four["equal_global_batch_speedup"] == pytest.approx(0.8)
    assert four["samples_per_s_per_device_share"] == pytest.approx(160 / 1.0)
    assert four["peak_total_bytes"] == 500 + 501 + 502 + 503
    assert four["peak_per_node_bytes"] == 503 and four["peak_rss_per_node_bytes"] == 2003


def test_target_defaults_to_ninety_percent_of_the_best_final_accuracy():
    runs = [
        record("a", 1, 8, [1, 1, 1], [0.5, 0.8, 0.9]),
        record("b", 2, 8, [1, 1, 1], [0.6, 0.95, 1.0]),
    ]
    comparison = compare_runs(runs)
    assert comparison["target_accuracy"] == pytest.approx(0.9)
    figures = {f["name"]: f for f in comparison["runs"]}
    assert figures["a"]["epochs_to_target"] == 3
    assert figures["b"]["epochs_to_target"] == 2
    assert figures["b"]["seconds_to_target"] == 20.0
    assert figures["b"]["samples_to_target"] == 200
    never = compare_runs(runs, target_accuracy=0.99)["runs"][0]
    assert never["epochs_to_target"] is None


def test_not_a_run_directory_is_a_clear_error(tmp_path):
    with pytest.raises(ReportError, match=r"is not a raysim run directory .*runs/<name>"):
        load_run(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "raysim.cli", "compare", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2 and "not a raysim run directory" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.slow
def test_sweep_reports_every_run_and_the_failed_one(short_run, tmp_path):
    """One run that finishes (2 nodes) and one that cannot start (5 nodes); the figures read
    back from both run directories beside another run's (short_run)."""
    base = load_config(
        num_epochs=2, max_steps_per_epoch=3, image_size=16, device="cpu",
        run_dir=str(tmp_path), run_name="sweep",
    )  # fmt: skip
    comparison = sweep(base, num_nodes=[2, 5])
    by_name = {r["name"]: r for r in comparison["runs"]}
    assert by_name["n5-b8"]["status"] == "failed"
    assert "impossible packing" in by_name["n5-b8"]["error"]
    assert by_name["n2-b8"]["status"] == "finished"

    report_dir = tmp_path / "sweep" / "report"
    report = (report_dir / "report.md").read_text()
    name = "n2-b8"
    epochs = epoch_lines(read_lines(tmp_path / "sweep" / name / "metrics.jsonl"))
    expected = statistics.mean(e["samples_per_s"] for e in epochs[1:])
    assert by_name[name]["samples_per_s"] == pytest.approx(expected)
    row = re.search(rf"^\| {name} \| \d \| ([\d.]+) \|", report.split("## Throughput")[1], re.M)
    assert float(row.group(1)) == pytest.approx(expected, abs=0.05)
    final = epochs[-1]["test_accuracy"]
    assert f"| {name} | {by_name[name]['nodes']} | {final:.4f} |" in report
    (failed_row,) = [line for line in report.splitlines() if line.startswith("| n5-b8 | failed |")]
    assert "impossible packing" in failed_row, "the problem, not the error's heading"
    assert "shared one machine" in report
    saved = json.loads((report_dir / "comparison.json").read_text())
    assert [r["name"] for r in saved["runs"]] == ["n2-b8", "n5-b8"]
    for png in ("loss_vs_epoch", "accuracy_vs_wall_time", "throughput_vs_nodes", "memory_per_node"):
        with Image.open(report_dir / f"{png}.png") as image:
            image.verify()
        with Image.open(report_dir / f"{png}.png") as image:
            assert image.size[0] >= 600 and image.size[1] >= 400

    again = compare([short_run.run_dir, tmp_path / "sweep" / "n2-b8"])
    assert again["runs"][1]["samples_per_s"] == by_name["n2-b8"]["samples_per_s"]
