"""The comparison's figures: pure, from run records (read back, never re-run)."""

from __future__ import annotations

import statistics
from typing import Any

from raysim.report.runs import ReportError, RunRecord
from raysim.units import GB

DEFAULT_TARGET_SHARE = 0.9


def steady_samples_per_s(run: RunRecord) -> float:
    """Aggregate samples/s over the epochs after the first (which includes warm-up)."""
    rates = [e["samples_per_s"] for e in run.epochs]
    return statistics.mean(rates[1:] or rates)


def time_to_target(run: RunRecord, target: float) -> dict[str, float | None]:
    samples = 0
    for epoch in run.epochs:
        samples += epoch["train_samples"]
        if epoch["test_accuracy"] >= target:
            return {
                "epochs_to_target": epoch["epoch"],
                "seconds_to_target": epoch["wall_time_s"],
                "samples_to_target": samples,
            }
    return {"epochs_to_target": None, "seconds_to_target": None, "samples_to_target": None}


def _baseline(runs: list[RunRecord], batch: int) -> RunRecord | None:
    """The finished 1-node run with this batch size, if the comparison has one."""
    for run in runs:
        if run.measured and run.nodes == 1 and run.config["batch_size"] == batch:
            return run
    return None


def _scaling(run: RunRecord, base: RunRecord | None, prefix: str) -> dict[str, Any]:
    if base is None:
        return {f"{prefix}_baseline": None, f"{prefix}_speedup": None, f"{prefix}_efficiency": None}
    speedup = steady_samples_per_s(run) / steady_samples_per_s(base)
    return {
        f"{prefix}_baseline": base.name,
        f"{prefix}_speedup": speedup,
        f"{prefix}_efficiency": speedup / run.nodes,
    }


def _memory(run: RunRecord) -> dict[str, Any]:
    """Peaks charged to the budget (CUDA allocator / CPU data growth) and whole-process RSS."""
    nodes = run.summary.get("nodes", [])
    peaks = [n.get("memory_peak_bytes", 0) for n in nodes]
    rss = [n["peak_rss_bytes"] for n in nodes]
    env = run.summary.get("environment", {})
    return {
        "peak_per_node_bytes": max(peaks) if peaks else None,
        "budget_per_node_bytes": nodes[0]["memory_budget_bytes"] if nodes else None,
        "peak_total_bytes": sum(peaks) if peaks else None,
        "peak_rss_per_node_bytes": max(rss) if rss else None,
        "device_memory_bytes": env.get("device_memory_bytes"),
    }


def run_figures(run: RunRecord, runs: list[RunRecord], target: float) -> dict[str, Any]:
    figures: dict[str, Any] = {
        "name": run.name,
        "run_dir": str(run.run_dir),
        "status": run.summary.get("status", "incomplete"),
        "nodes": run.nodes,
        "final_world_size": run.summary.get("world_size", run.nodes),
        "batch_per_node": run.config["batch_size"],
        "global_batch": run.nodes * run.config["batch_size"],
    }
    if not run.finished:
        figures["error"] = run.summary.get("error", "no epoch finished")
        return figures
    figures.update(epochs=len(run.epochs), final_metrics=run.epochs[-1])
    if run.measured:
        figures.update(_throughput(run, runs))
    if not run.builtin:
        return figures
    times = [e["epoch_time_s"] for e in run.epochs]
    figures.update(
        mean_epoch_time_s=statistics.mean(times),
        epoch_time_after_first_s=statistics.mean(times[1:] or times),
        final_test_accuracy=run.epochs[-1]["test_accuracy"],
        best_test_accuracy=max(e["test_accuracy"] for e in run.epochs),
        final_train_loss=run.epochs[-1]["train_loss"],
        **time_to_target(run, target),
    )
    return figures


def _throughput(run: RunRecord, runs: list[RunRecord]) -> dict[str, Any]:
    """From raysim's step measurements: any function that used prepare has them."""
    sps = steady_samples_per_s(run)
    env = run.summary.get("environment", {})
    budget = run.summary["nodes"][0]["memory_budget_bytes"]
    global_batch = run.nodes * run.config["batch_size"]
    return {
        "samples_per_s": sps,
        "samples_per_s_per_node": sps / run.nodes,
        "samples_per_s_per_device_share": sps / (run.nodes * run.config["gpu_fraction"]),
        "samples_per_s_per_core": sps / env["cpus"] if env.get("cpus") else None,
        "samples_per_s_per_budget_gb": sps / (run.nodes * budget / GB) if budget else None,
        **_scaling(run, _baseline(runs, run.config["batch_size"]), "equal_node_batch"),
        **_scaling(run, _baseline(runs, global_batch), "equal_global_batch"),
        **_memory(run),
    }


def compare_runs(runs: list[RunRecord], target_accuracy: float | None = None) -> dict[str, Any]:
    """Figures for every run; the target defaults to 90% of the best final accuracy."""
    if not runs:
        raise ReportError("nothing to compare: give at least one run directory")
    builtin = [r for r in runs if r.builtin]
    if target_accuracy is None and builtin:
        best_final = max(r.epochs[-1]["test_accuracy"] for r in builtin)
        target_accuracy = DEFAULT_TARGET_SHARE * best_final
    target = target_accuracy or 0.0
    finished = [r for r in runs if r.finished]
    return {
        "target_accuracy": target,
        "runs": [run_figures(r, runs, target) for r in runs],
        "environment": finished[0].summary.get("environment", {}) if finished else {},
    }
