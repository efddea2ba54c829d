"""The benchmark harness in quick mode, so it cannot rot (the numbers live in BENCHMARKS.md)."""

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import bench_core  # noqa: E402

pytestmark = pytest.mark.slow


def test_core_harness_quick_mode(tmp_path):
    """Every path once with the least work: raysim-2 and ddp-2 are the one multi-process
    pair (raysim_run, plain_ddp with raysim's DDP settings), single-32 and serial-4 the
    fresh one-process setups, then the loaders alone."""
    results = bench_core.main(["--quick", "--allow-dirty", "--out", str(tmp_path)])
    setups = ("raysim-2", "ddp-2", "single-32", "serial-4", "data")
    setups += ("imagefolder-decode", "imagefolder-cached")
    entries = [key for key, entry in results.items() if isinstance(entry, dict)]
    measured = {key for key in entries if "steady_samples_per_s" in results[key]}
    assert measured == set(setups)  # quick adds no setup unnoticed: each one costs seconds
    for setup in setups:
        entry = results[setup]
        assert entry["min"] <= entry["steady_samples_per_s"] <= entry["max"]
        assert entry["steady_samples_per_s"] > 0
    raysim_2 = results["raysim-2"]["repeats"][0]
    assert 0 < raysim_2["time_to_first_step_s"] < raysim_2["process_wall_s"]
    assert raysim_2["report_s_median"] is not None and raysim_2["report_s_median"] >= 0
    rate = {setup: results[setup]["steady_samples_per_s"] for setup in setups}
    ratio = results["ratios"]["raysim-2 / ddp-2"]
    assert ratio["median"] == pytest.approx(rate["raysim-2"] / rate["ddp-2"])
    assert ratio["min"] == ratio["max"] == ratio["median"]  # one repeat: one pair
    assert rate["imagefolder-cached"] > rate["imagefolder-decode"]
    for setup in ("raysim-2", "ddp-2"):  # two processes: the total is above any one
        figures = results[setup]["repeats"][0]
        assert 0 < figures["peak_rss_mb"] < figures["total_rss_mb"] <= 2 * figures["peak_rss_mb"]
    single = results["single-32"]["repeats"][0]
    assert single["peak_rss_mb"] == single["total_rss_mb"] > 100
    assert results["settings"]["raysim_ddp_kwargs"] == bench_core.raysim_ddp_kwargs(2)
    assert (tmp_path / "bench_core_quick.json").exists()


def test_the_limit_runs_every_rank_with_no_exchange():
    """The no-exchange limit at its smallest: 2 ranks, 2 epochs (a steady one) of 1 step,
    one process per core, rated by the loop's wall time; the best of the thread counts
    tried."""
    run = bench_core.best_no_exchange(2, 8, 16, 2, 1)
    assert run["threads"] in bench_core.THREAD_COUNTS
    assert run["processes"] == min(2, len(os.sched_getaffinity(0)))
    assert len(run["rates"]) == 2 and min(run["rates"]) > 0
    per_rank = bench_core.no_exchange(3, 8, 16, 2, 1, threads=1, procs=3)  # more than cores
    assert per_rank["processes"] == 3 and min(per_rank["rates"]) > 0


def test_a_processs_memory_split_adds_up_to_its_pss():
    """bench_worker_memory's split of a worker: private anonymous, libraries' private
    pages and the share of shared pages make its PSS, and this interpreter (torch
    imported) holds most of its memory privately."""
    import torch  # noqa: F401  the pages a worker holds after its imports
    from bench_worker_memory import split

    kinds = split(os.getpid())
    parts = kinds["private_anonymous"] + kinds["private_libraries"] + kinds["shared_share"]
    assert parts == kinds["pss"]
    assert kinds["private_anonymous"] > 100e6, kinds
    assert 0 <= kinds["shared_share"] < kinds["pss"], kinds
    assert split(2**22 + 7) is None  # no such process
