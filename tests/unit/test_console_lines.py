"""The console's epoch line: the built-in's columns, a user's function's, and the slowest
node named wherever the ranks measured their all-reduce waits."""

from __future__ import annotations

from raysim.console.lines import epoch_line
from raysim.record.aggregate import aggregate_epoch

MB = 1_000_000


def _rank(rank: int, wait: float, **extra) -> dict:
    return {
        "kind": "rank", "epoch": 1, "rank": rank, "allreduce_wait_s_per_step": wait,
        "train_time_s": 2.0, "measured_samples": 64, "step_time_s": 0.25,
        "memory_peak_bytes": 150 * MB, "memory_budget_bytes": 400 * MB, **extra,
    }  # fmt: skip


def test_a_users_epoch_line_names_the_node_that_waited_least():
    ranks = [_rank(0, 0.030, loss=1.5), _rank(1, 0.002, loss=1.4), _rank(2, 0.028, loss=1.6)]
    line = epoch_line(aggregate_epoch(ranks, run_start_unix=0.0), num_epochs=3)
    assert line.startswith("epoch   1/3  nodes 3  ")
    assert "slowest node-1" in line and "loss 1.5" in line and "memory 150/400 MB" in line


def test_the_builtin_epoch_line_names_it_too_and_one_node_names_none():
    builtin = {
        "epoch": 2, "world_size": 2, "train_loss": 0.5, "train_accuracy": 0.9,
        "test_accuracy": 0.88, "epoch_time_s": 3.0, "samples_per_s": 120.0,
        "peak_rss_bytes": 1200 * MB, "slowest_rank": 0,
    }  # fmt: skip
    assert epoch_line(builtin, 3).endswith("peak RSS 1200 MB  slowest node-0")
    alone = aggregate_epoch([_rank(0, 0.0)], run_start_unix=0.0)
    assert "slowest" not in epoch_line(alone, 3)
