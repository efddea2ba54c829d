"""One epoch's reports from every rank, combined into the cluster's view of that epoch.

Pure functions over plain dicts, used by the controller-side recorder as a run goes.
"""

from __future__ import annotations

import statistics
from typing import Any

from raysim.errors import is_number

IDENTITY_KEYS = {"rank", "world_size", "node_id", "kind"}
BUILTIN_KEYS = {"train_samples", "train_loss_sum", "train_correct", "test_correct", "test_total"}


def mean_of_numbers(rank_metrics: list[dict[str, Any]]) -> dict[str, float]:
    """Every numeric key all ranks reported, averaged over the ranks."""
    keys = set.intersection(*(set(m) for m in rank_metrics)) - IDENTITY_KEYS
    return {
        key: statistics.mean(m[key] for m in rank_metrics)
        for key in sorted(keys)
        if all(is_number(m[key]) for m in rank_metrics)
    }


def aggregate_epoch(
    rank_metrics: list[dict[str, Any]], run_start_unix: float, index: int = 1
) -> dict[str, Any]:
    """Combine every rank's report of one epoch into the cluster's view of it.

    Any training function's numeric metrics are averaged over the ranks; the built-in
    experiment's counts are combined exactly (loss and accuracy weighted by samples).
    """
    aggregate: dict[str, Any] = {
        **mean_of_numbers(rank_metrics),
        "kind": "epoch",
        "epoch": rank_metrics[0].get("epoch", index),
        "world_size": len(rank_metrics),
        "slowest_rank": slowest_rank(rank_metrics),
    }
    cause = slowest_cause(rank_metrics, aggregate["slowest_rank"])
    if cause is not None:
        aggregate["slowest_cause"] = cause
    if "report_unix" in aggregate:
        aggregate["wall_time_s"] = max(m["report_unix"] for m in rank_metrics) - run_start_unix
    if all(set(m) >= BUILTIN_KEYS for m in rank_metrics):
        aggregate.update(_builtin_epoch(rank_metrics))
    if all("train_time_s" in m for m in rank_metrics):
        aggregate.update(_measured_epoch(rank_metrics))
    return aggregate


def _measured_epoch(rank_metrics: list[dict[str, Any]]) -> dict[str, Any]:
    """raysim's step measurements: the cluster moves at its slowest node's pace."""
    slowest = max(m["train_time_s"] for m in rank_metrics)
    samples = sum(m["measured_samples"] for m in rank_metrics)
    return {
        "measured_samples": samples,
        "train_time_s": slowest,
        "samples_per_s": samples / slowest if slowest else 0.0,
        "step_time_s": max(m["step_time_s"] for m in rank_metrics),
    }


def _builtin_epoch(rank_metrics: list[dict[str, Any]]) -> dict[str, Any]:
    samples = sum(m["train_samples"] for m in rank_metrics)
    test_total = sum(m["test_total"] for m in rank_metrics)
    slowest = max(m["epoch_time_s"] for m in rank_metrics)
    checksums = {m["param_checksum"] for m in rank_metrics}
    return {
        "train_samples": samples,
        "train_loss": sum(m["train_loss_sum"] for m in rank_metrics) / max(samples, 1),
        "train_accuracy": sum(m["train_correct"] for m in rank_metrics) / max(samples, 1),
        "test_accuracy": sum(m["test_correct"] for m in rank_metrics) / max(test_total, 1),
        "epoch_time_s": slowest,
        "eval_time_s": max(m["eval_time_s"] for m in rank_metrics),
        # the loop's own wall time, where raysim's step measurements are off
        "samples_per_s": samples / slowest if slowest else 0.0,
        "step_time_s": slowest / max(max(m["steps"] for m in rank_metrics), 1),
        "steps": max(m["steps"] for m in rank_metrics),
        "checksums_match": len(checksums) == 1,
        "param_checksum": sorted(checksums)[0],
        "peak_rss_bytes": max(m["peak_rss_bytes"] for m in rank_metrics),
        "epoch_start_unix": min(m["epoch_start_unix"] for m in rank_metrics),
    }


def slowest_rank(rank_metrics: list[dict[str, Any]]) -> int | None:
    """DDP's all-reduce is a barrier: every rank's step takes as long as the slowest's,
    and the slowest rank is the one that waits least in all-reduce."""
    waits = {m["rank"]: m.get("allreduce_wait_s_per_step") for m in rank_metrics}
    if len(waits) < 2 or None in waits.values():
        return None
    return min(waits, key=waits.get)


def slowest_cause(rank_metrics: list[dict[str, Any]], rank: int | None) -> str | None:
    """Whether the slowest rank was late for its input or its compute: "input" where its
    extra wait for the prepared loader, over the others' mean, is at least half of how much
    later than them it reached the all-reduce (the others' extra wait in it)."""
    keys = ("data_wait_s_per_step", "allreduce_wait_s_per_step")
    if rank is None or not all(is_number(m.get(k)) for m in rank_metrics for k in keys):
        return None
    (mine,) = [m for m in rank_metrics if m["rank"] == rank]
    others = [m for m in rank_metrics if m["rank"] != rank]
    late = statistics.mean(m[keys[1]] for m in others) - mine[keys[1]]
    extra_input = mine[keys[0]] - statistics.mean(m[keys[0]] for m in others)
    return "input" if late > 0 and extra_input >= late / 2 else "compute"
