"""Where a run's time to its first training step went, stage by stage.

A stage ends when the last node passes it (the first step is collective: it waits for
every node), so each stage's time is the gap between the latest node's marks.
"""

from __future__ import annotations

from typing import Any

STAGES = (
    ("process_start", "run_start", "driver: imports and the script before raysim.run"),
    ("run_start", "cluster_ready", "driver: checks, run directory, Ray up or joined"),
    ("cluster_ready", "fit_start", "driver: Ray Train imported, trainer built"),
    ("fit_start", "node_start", "Ray Train: controller, worker group, process group"),
    ("node_start", "node_ready", "node set-up: threads, device, memory cap"),
    ("node_ready", "prepare_start", "the function: data and model built"),
    ("prepare_start", "prepare_end", "prepare: DDP wraps the model, hooks"),
    ("prepare_end", "first_step_start", "the first batch"),
    ("first_step_start", "first_step_end", "the first step"),
)


def first_marks_per_rank(ranks: list[dict[str, Any]], key: str) -> list[dict[str, float]]:
    """Each rank's first start-up marks (a restarted worker group sends them again)."""
    first: dict[int, dict[str, float]] = {}
    for line in ranks:
        if key in line:
            first.setdefault(line["rank"], line[key])
    return list(first.values())


def startup_breakdown(
    driver_marks: dict[str, float], node_marks: list[dict[str, float]]
) -> dict[str, Any] | None:
    """Seconds per stage, the stages a run passed only; the time to the first step counts
    from the process's start where the driver marked it, else from raysim.run's call."""
    if not node_marks:
        return None
    latest = dict(driver_marks)
    for name in {name for marks in node_marks for name in marks}:
        latest[name] = max(marks[name] for marks in node_marks if name in marks)
    stages = [
        {"stage": label, "seconds": latest[end] - latest[begin]}
        for begin, end, label in STAGES
        if begin in latest and end in latest
    ]
    breakdown: dict[str, Any] = {"stages": stages}
    origin = latest.get("process_start", latest.get("run_start"))
    if "first_step_start" in latest and origin is not None:
        breakdown["time_to_first_step_s"] = latest["first_step_start"] - origin
    return breakdown
