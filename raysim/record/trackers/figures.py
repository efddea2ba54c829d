"""A run's numbers as the trackers log them: each epoch's aggregate and per-node curves,
and summary.json's figures, flattened to name -> number (each tracker cleans the names
to its own rules)."""

from __future__ import annotations

from typing import Any

from raysim.errors import is_number

NOT_METRICS = {"epoch", "rank"}
"""Numeric keys of the metrics lines that are not curves (and *_unix time stamps)."""
NOT_SUMMARY = {"config", "environment", "nodes"}
"""summary.json's parts that are not figures (the config is logged as such; the whole file
is an artifact where the tracker keeps files)."""


def numbers(record: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """A metrics line's curves: its numbers, without bookkeeping and time stamps."""
    return {
        f"{prefix}{key}": float(value)
        for key, value in record.items()
        if is_number(value) and key not in NOT_METRICS and not key.endswith("_unix")
    }


def epoch_figures(epoch: dict[str, Any], ranks: list[dict[str, Any]]) -> dict[str, float]:
    """One epoch's metrics: the aggregate by name, each node under `<node_id>/`."""
    metrics = numbers(epoch)
    for rank in ranks:
        node = rank.get("node_id") or f"node-{rank['rank']}"
        metrics.update(numbers(rank, f"{node}/"))
    return metrics


def summary_figures(summary: dict[str, Any], prefix: str = "summary/") -> dict[str, float]:
    """summary.json's figures, nested ones as summary/model.parameters and the like."""
    metrics = {}
    for key, value in summary.items():
        if key in NOT_SUMMARY:
            continue
        if isinstance(value, dict):
            metrics.update(summary_figures(value, f"{prefix}{key}."))
        elif is_number(value):
            metrics[f"{prefix}{key}"] = float(value)
    return metrics
