"""The metrics log: one JSON line per rank per epoch, one aggregate line per epoch.

Pure functions over plain dicts: the controller callback aggregates with them
while a run goes, and reports read a finished run directory back with them.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"
CONFIG_FILE = "config.yaml"


IDENTITY_KEYS = {"rank", "world_size", "node_id", "kind"}
BUILTIN_KEYS = {"train_samples", "train_loss_sum", "train_correct", "test_correct", "test_total"}


def mean_of_numbers(rank_metrics: list[dict[str, Any]]) -> dict[str, float]:
    """Every numeric key all ranks reported, averaged over the ranks."""
    keys = set.intersection(*(set(m) for m in rank_metrics)) - IDENTITY_KEYS
    return {
        key: statistics.mean(m[key] for m in rank_metrics)
        for key in sorted(keys)
        if all(
            isinstance(m[key], (int, float)) and not isinstance(m[key], bool) for m in rank_metrics
        )
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
    if "report_unix" in aggregate:
        aggregate["wall_time_s"] = max(m["report_unix"] for m in rank_metrics) - run_start_unix
    if all(set(m) >= BUILTIN_KEYS for m in rank_metrics):
        aggregate.update(_builtin_epoch(rank_metrics))
    return aggregate


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
        "samples_per_s": samples / slowest if slowest else 0.0,
        "step_time_s": max(m["step_time_s"] for m in rank_metrics),
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


def append_lines(path: Path, records: list[dict[str, Any]]) -> None:
    """Append and flush at once, so a crash later loses no line written before it."""
    with path.open("a") as log:
        for record in records:
            log.write(json.dumps(record) + "\n")
        log.flush()


def read_lines(path: Path) -> list[dict[str, Any]]:
    """All complete records; a torn last line (crash mid-write) is skipped."""
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def epoch_lines(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if r.get("kind") == "epoch"]


def rank_lines(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if r.get("kind") == "rank"]


def _mean_of(records: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in records if key in r]
    return statistics.mean(values) if values else None


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
                "memory_peak_bytes": max(r.get("memory_peak_bytes", 0) for r in mine),
                "memory_budget_bytes": mine[-1].get("memory_budget_bytes", 0),
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


def summarize(records: list[dict[str, Any]], process_start_unix: float) -> dict[str, Any]:
    """Run-level figures from the metrics log; epoch 1 includes warm-up, so both are given."""
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
        samples_per_s=statistics.mean(e["samples_per_s"] for e in epochs[1:] or epochs),
        time_to_first_step_s=epochs[0]["epoch_start_unix"] - process_start_unix,
        checksums_match=all(e["checksums_match"] for e in epochs),
    )
    return summary
