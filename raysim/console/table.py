"""The summary table printed when a run ends: run figures, then one row per node."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from raysim.errors import is_number
from raysim.rundir import RAYSIM_KEYS
from raysim.units import MB, figure


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)


def nodes_text(summary: dict[str, Any]) -> str:
    """The world size, and each change of it: '3 → 2 at epoch 3'."""
    changes = summary.get("world_size_changes") or []
    if not changes:
        return str(summary["world_size"])
    steps = ", ".join(f"{c['from']} → {c['to']} at epoch {c['epoch']}" for c in changes)
    return f"{summary['world_size']} ({steps})"


def _lost_text(node: dict[str, Any], summary: dict[str, Any]) -> str:
    last = node.get("last_epoch")
    if last is None or last >= summary["epochs_completed"] or summary["status"] != "finished":
        return ""
    return f" (gone after epoch {last})"


def summary_table(summary: dict[str, Any], run_dir: Path) -> str:
    """Run figures, then one row per simulated node."""
    run_rows = [["figure", "value"], ["status", summary["status"]]]
    if summary["epochs_completed"] and "final_test_accuracy" not in summary:
        run_rows += [
            ["nodes", nodes_text(summary)],
            ["epochs", str(summary["epochs_completed"])],
        ]
        if "samples_per_s" in summary:
            run_rows += [
                ["throughput", f"{summary['samples_per_s']:.1f} samples/s"],
                ["step time", figure("step_time_s", summary["step_time_s"])],
            ]
        if "time_to_first_step_s" in summary:
            run_rows.append(["time to first step", f"{summary['time_to_first_step_s']:.1f} s"])
        if "wall_time_s" in summary:
            run_rows.append(["wall time", f"{summary['wall_time_s']:.1f} s"])
        run_rows += [
            [f"final {key}", figure(key, value)]
            for key, value in summary["final_metrics"].items()
            if key not in RAYSIM_KEYS and is_number(value)
        ][:12]
    elif summary["epochs_completed"]:
        run_rows += [
            ["nodes", nodes_text(summary)],
            ["epochs", str(summary["epochs_completed"])],
            ["final test accuracy", f"{summary['final_test_accuracy']:.4f}"],
            ["best test accuracy", f"{summary['best_test_accuracy']:.4f}"],
            ["mean epoch time", f"{summary['mean_epoch_time_s']:.2f} s"],
            ["epoch time after first", f"{summary['mean_epoch_time_after_first_s']:.2f} s"],
            ["throughput", f"{summary['samples_per_s']:.1f} samples/s"],
            ["time to first step", f"{summary['time_to_first_step_s']:.1f} s"],
            ["wall time", f"{summary['wall_time_s']:.1f} s"],
            ["ranks hold equal weights", "yes" if summary["checksums_match"] else "NO"],
        ]
    if "allreduce" in summary:
        run_rows.append(["all-reduce", summary["allreduce"]])
    run_rows.append(["run directory", str(run_dir)])
    node_rows = [
        ["node", "rank", "samples/s", "step time", "peak RSS", "peak PSS"]
        + ["memory peak", "budget", "headroom"]
    ]
    node_rows += [
        [
            n["node_id"] + _lost_text(n, summary),
            str(n["rank"]),
            "–" if n["samples_per_s"] is None else f"{n['samples_per_s']:.1f}",
            "–" if n["step_time_s"] is None else f"{n['step_time_s'] * 1000:.0f} ms",
            f"{n['peak_rss_bytes'] / MB:.0f} MB",
            "–" if n.get("peak_pss_bytes") is None else f"{n['peak_pss_bytes'] / MB:.0f} MB",
            f"{n['memory_peak_bytes'] / MB:.0f} MB",
            f"{n['memory_budget_bytes'] / MB:.0f} MB",
            f"{(n['memory_budget_bytes'] - n['memory_peak_bytes']) / MB:.0f} MB",
        ]
        for n in summary["nodes"]
    ]
    parts = [_table(run_rows)]
    if len(node_rows) > 1:
        parts.append(_table(node_rows))
    if summary.get("faults"):
        parts.append(_table(fault_rows(summary["faults"])))
    return "\n\n".join(parts)


def fault_rows(faults: list[dict[str, Any]]) -> list[list[str]]:
    """Each injected fault that fired: where, when raysim told it, what it cost."""
    rows = [["fault", "node", "at", "told after", "lost steps", "then"]]
    for fault in faults:
        told = fault.get("detected_after_s")
        rows.append([
            fault["kind"], f"node-{fault['rank']}", f"epoch {fault['epoch']} step {fault['step']}",
            "-" if told is None else f"{told:.1f} s", str(fault["lost_steps"]), fault["went_on"],
        ])  # fmt: skip
    return rows
