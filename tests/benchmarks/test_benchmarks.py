"""The benchmark harness in quick mode, so it cannot rot (the numbers live in BENCHMARKS.md)."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import bench_core  # noqa: E402

pytestmark = pytest.mark.slow


def test_core_harness_quick_mode(tmp_path):
    results = bench_core.main(["--quick", "--allow-dirty", "--out", str(tmp_path)])
    setups = ("raysim-1", "raysim-4", "ddp-4", "ddp-4-defaults", "single-32", "serial-4", "data")
    setups += ("imagefolder-decode", "imagefolder-cached")
    for setup in setups:
        entry = results[setup]
        assert entry["min"] <= entry["steady_samples_per_s"] <= entry["max"]
        assert entry["steady_samples_per_s"] > 0
    raysim_4 = results["raysim-4"]["repeats"][0]
    assert 0 < raysim_4["time_to_first_step_s"] < raysim_4["process_wall_s"]
    assert raysim_4["report_s_median"] is not None and raysim_4["report_s_median"] >= 0
    rate = {setup: results[setup]["steady_samples_per_s"] for setup in setups}
    ratio = results["ratios"]["raysim-4 / ddp-4"]
    assert ratio["median"] == pytest.approx(rate["raysim-4"] / rate["ddp-4"])
    assert ratio["min"] == ratio["max"] == ratio["median"]  # one repeat: one pair
    assert rate["imagefolder-cached"] > rate["imagefolder-decode"]
    for setup in ("raysim-4", "ddp-4"):  # four processes: the total is above any one
        figures = results[setup]["repeats"][0]
        assert 0 < figures["peak_rss_mb"] < figures["total_rss_mb"] <= 4 * figures["peak_rss_mb"]
    single = results["single-32"]["repeats"][0]
    assert single["peak_rss_mb"] == single["total_rss_mb"] > 100
    assert (tmp_path / "bench_core_quick.json").exists()


def test_the_limit_runs_every_rank_with_no_exchange():
    """no-exchange-4 at tiny sizes: every rank's samples, one process per core, rated by
    the loop's wall time; the best of the thread counts tried."""
    run = bench_core.best_no_exchange(4, 8, 16, 2, 3)
    assert run["threads"] in bench_core.THREAD_COUNTS and run["processes"] >= 1
    assert len(run["rates"]) == 2 and min(run["rates"]) > 0
