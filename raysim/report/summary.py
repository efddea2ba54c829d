"""Run-level figures from a run's metrics log: what summary.json holds."""

from __future__ import annotations

import statistics
from typing import Any

from raysim.report.startup import first_marks_per_rank, startup_breakdown
from raysim.rundir import ALLREDUCE_KEY, STARTUP_KEY, epoch_lines, rank_lines


def _mean_of(records: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in records if key in r]
    return statistics.mean(values) if values else None


def _max_of(records: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in records if r.get(key) is not None]
    return max(values) if values else None


def per_node_summary(ranks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per simulated node: throughput, step time and memory over the whole run.

    Grouped by node name, not rank: an elastic run that loses a node renumbers the ranks.
    """
    nodes = []  # memory_peak_bytes: training memory charged to the node's budget
    names = {r.get("node_id", f"node-{r['rank']}") for r in ranks if "rank" in r}
    for name in sorted(names, key=lambda n: (len(n), n)):
        mine = [r for r in ranks if r.get("node_id", f"node-{r.get('rank')}") == name]
        nodes.append(
            {
                "rank": mine[-1]["rank"],
                "node_id": name,
                "last_epoch": max(r.get("epoch", 0) for r in mine),
                "samples_per_s": _mean_of(mine, "samples_per_s"),
                "step_time_s": _mean_of(mine, "step_time_s"),
                "peak_rss_bytes": max(r.get("peak_rss_bytes", 0) for r in mine),
                "peak_pss_bytes": _max_of(mine, "pss_bytes"),
                "memory_peak_bytes": max(r.get("memory_peak_bytes", 0) for r in mine),
                "memory_budget_bytes": mine[-1].get("memory_budget_bytes", 0),
                "memory_baseline_bytes": mine[-1].get("memory_baseline_bytes"),
                "memory_limit_peak_bytes": _max_of(mine, "memory_limit_peak_bytes"),
            }
        )
    return nodes


def world_size_changes(epochs: list[dict[str, Any]]) -> list[dict[str, int]]:
    """Where the number of nodes changed (an elastic run that lost or regained nodes)."""
    return [
        {"epoch": now["epoch"], "from": before["world_size"], "to": now["world_size"]}
        for before, now in zip(epochs, epochs[1:], strict=False)
        if now["world_size"] != before["world_size"]
    ]


def summarize(records: list[dict[str, Any]], driver_marks: dict[str, float]) -> dict[str, Any]:
    """Run-level figures from the metrics log; epoch 1 includes warm-up, so both are given.
    driver_marks: when the driver passed its start-up stages (raysim.worker.startup)."""
    epochs = epoch_lines(records)
    errors = [r for r in records if r.get("kind") == "error"]
    outcome = [r["kind"] for r in records if r.get("kind") in ("error", "epoch", "recovered")]
    summary: dict[str, Any] = {
        "status": "failed" if outcome and outcome[-1] == "error" else "finished",
        "recoveries": [r for r in records if r.get("kind") == "recovered"],
        "epochs_completed": len(epochs),
        "errors": errors,
        "nodes": per_node_summary(rank_lines(records)),
    }
    if not epochs:
        return summary
    summary.update(
        world_size=epochs[-1]["world_size"],
        world_size_changes=world_size_changes(epochs),
        final_metrics=epochs[-1],
    )
    measured = [e for e in epochs if "samples_per_s" in e]
    if measured:  # raysim's step measurements, for any function that used prepare
        steady = measured[1:] or measured
        summary.update(
            samples_per_s=statistics.mean(e["samples_per_s"] for e in steady),
            step_time_s=statistics.mean(e["step_time_s"] for e in steady),
        )
    startup = startup_breakdown(
        driver_marks, first_marks_per_rank(rank_lines(records), STARTUP_KEY)
    )
    if startup is not None:
        summary["startup"] = startup
        if "time_to_first_step_s" in startup:
            summary["time_to_first_step_s"] = startup["time_to_first_step_s"]
    facts = [r["model"] for r in rank_lines(records) if "model" in r]
    if facts:
        summary["model"] = facts[-1]
    paths = {r[ALLREDUCE_KEY] for r in rank_lines(records) if ALLREDUCE_KEY in r}
    if paths:  # every rank's every report: shared memory only if all said so
        summary["allreduce"] = "shared memory" if paths == {True} else "gloo"
    if "test_accuracy" not in epochs[-1]:  # a user's function: its own metrics only
        return summary
    times = [e["epoch_time_s"] for e in epochs]
    later = times[1:] or times
    summary.update(
        final_test_accuracy=epochs[-1]["test_accuracy"],
        best_test_accuracy=max(e["test_accuracy"] for e in epochs),
        final_train_loss=epochs[-1]["train_loss"],
        mean_epoch_time_s=statistics.mean(times),
        mean_epoch_time_after_first_s=statistics.mean(later),
        checksums_match=all(e["checksums_match"] for e in epochs),
    )
    origin = driver_marks.get("process_start", driver_marks.get("run_start", 0.0))
    summary.setdefault(  # steps not measured: the loop's own start of its first epoch
        "time_to_first_step_s", epochs[0]["epoch_start_unix"] - origin
    )
    return summary
