"""A run's timeline (trace.json) read back and drawn: a few steps, one lane per node.

Each node's lane has a thin bar for each measured step on top, its compute phases under
it and its communication at the bottom; faults, failures and recoveries are red lines.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from raysim.report.runs import ReportError, run_dir_of
from raysim.rundir import TRACE_FILE

PHASE_COLOURS = {
    "data wait": "#9e9e9e",
    "forward": "#1f77b4",
    "straggler delay": "#d62728",
    "backward": "#2ca02c",
    "all-reduce wait": "#ff7f0e",
    "optimizer step": "#9467bd",
    "report": "#8c564b",
    "report + checkpoint": "#8c564b",
    "all-reduce": "#17becf",
    "emulated delay": "#bcbd22",
}
STEP_COLOUR = "#444444"
MAX_DEFAULT_STEPS = 3


def load_trace(run_dir: str | Path) -> dict[str, Any]:
    """trace.json of a run directory, or a ReportError naming the problem and the fix."""
    path = run_dir_of(run_dir)
    trace_path = path / TRACE_FILE
    if not trace_path.is_file():
        raise ReportError(
            f"{path} has no {TRACE_FILE}: the run traced no step (trace_steps: 0, "
            "measure_steps: false, no worker.prepare, or made before tracing); run it again "
            "with trace_steps above 0, e.g. --trace-steps 3"
        )
    try:
        return json.loads(trace_path.read_text())
    except json.JSONDecodeError as err:
        raise ReportError(f"{trace_path} is not valid JSON ({err}); run it again") from None


def parse_steps(text: str) -> list[int]:
    """'2' or '1-3' or '1,3': the steps after each report to draw."""
    steps: list[int] = []
    try:
        for part in text.split(","):
            low, _, high = part.partition("-")
            steps += range(int(low), int(high or low) + 1)
    except ValueError:
        raise ReportError(f"--steps {text}: give step numbers such as 2, 1-3 or 1,3") from None
    if not steps or min(steps) < 1:
        raise ReportError(f"--steps {text}: steps count from 1, e.g. 1-3")
    return steps


@dataclass
class Timeline:
    """What was drawn: the lanes top to bottom, the epoch and steps, the window (s since
    the run started)."""

    lanes: list[str]
    epoch: int
    steps: list[int]
    start_s: float
    end_s: float
    spans: dict[int, list[dict[str, Any]]] = field(default_factory=dict, repr=False)
    """pid: its events in the window."""


def select(trace: dict[str, Any], epoch: int | None = None, steps: list[int] | None = None):
    """The window around the chosen steps of one epoch (default: the last traced epoch,
    its first few steps) on every node; a replayed epoch's latest run of each step."""
    events = trace.get("traceEvents", [])
    names = {e["pid"]: e["args"]["name"] for e in events if e.get("name") == "process_name"}
    step_spans = [e for e in events if e.get("ph") == "X" and e.get("cat") == "step"]
    if not step_spans:
        raise ReportError("the trace has no traced step; run with trace_steps above 0")
    epochs = sorted({e["args"]["epoch"] for e in step_spans})
    epoch = epochs[-1] if epoch is None else epoch
    in_epoch = [e for e in step_spans if e["args"]["epoch"] == epoch]
    traced = sorted({e["args"]["step"] for e in in_epoch})
    if not in_epoch:
        raise ReportError(f"epoch {epoch} has no traced step; traced epochs: {epochs}")
    steps = traced[:MAX_DEFAULT_STEPS] if steps is None else steps
    latest: dict[tuple[int, int], dict] = {}
    for e in in_epoch:
        key = (e["pid"], e["args"]["step"])
        if e["args"]["step"] in steps and (key not in latest or e["ts"] > latest[key]["ts"]):
            latest[key] = e
    if not latest:
        raise ReportError(f"steps {steps} were not traced in epoch {epoch}; traced: {traced}")
    start = min(e["ts"] for e in latest.values())
    end = max(e["ts"] + e["dur"] for e in latest.values())
    window: dict[int, list[dict]] = {pid: [] for pid in sorted(names)}
    for e in events:
        if e.get("ph") not in ("X", "i") or e["pid"] not in window:
            continue
        e_end = e["ts"] + e.get("dur", 0)
        if e_end >= start and e["ts"] <= end:
            window[e["pid"]].append(e)
    return Timeline(
        lanes=[names[pid] for pid in window], epoch=epoch, steps=sorted({k[1] for k in latest}),
        start_s=start / 1e6, end_s=end / 1e6, spans=window,
    )  # fmt: skip


def draw_timeline(
    run_dir: str | Path, out: str | Path, epoch: int | None = None, steps: list[int] | None = None
) -> Timeline:
    """Draw the chosen steps of every node into a PNG at `out`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    timeline = select(load_trace(run_dir), epoch, steps)
    origin = timeline.start_s * 1e6
    fig, ax = plt.subplots(figsize=(11, 1.2 + 0.9 * len(timeline.lanes)))
    seen: set[str] = set()
    for lane, pid in enumerate(timeline.spans):
        events = timeline.spans[pid]
        comm_rows = max([e["tid"] - 2 for e in events if e.get("cat") == "comm"], default=1)
        for e in events:
            x = (e["ts"] - origin) / 1e3
            if e["ph"] == "i":
                ax.plot([x, x], [lane + 0.02, lane + 0.98], color="red", linewidth=1.5)
                ax.text(x, lane + 0.5, f" {e['name']}", color="red", fontsize=7)
                continue
            width = e["dur"] / 1e3
            if e["cat"] == "step":  # the measured step, a thin bar on top
                ax.broken_barh([(x, width)], (lane + 0.08, 0.06), color=STEP_COLOUR,
                               edgecolor="white", linewidth=1)  # fmt: skip
                ax.text(x, lane + 0.07, e["name"], fontsize=7)
                continue
            if e["cat"] == "compute":
                y, height = lane + 0.18, 0.38
            else:
                height = 0.34 / comm_rows
                y = lane + 0.60 + (e["tid"] - 3) * height
            ax.broken_barh([(x, width)], (y, height), color=PHASE_COLOURS.get(e["name"], "#ccc"),
                           edgecolor="white", linewidth=0.3)  # fmt: skip
            seen.add(e["name"])
    ax.set_ylim(len(timeline.lanes), 0)
    ax.set_yticks([lane + 0.5 for lane in range(len(timeline.lanes))], timeline.lanes)
    ax.set_xlim(0, (timeline.end_s - timeline.start_s) * 1e3)
    steps_text = ", ".join(str(s) for s in timeline.steps)
    ax.set(
        title=f"{Path(run_dir).name}: epoch {timeline.epoch}, steps {steps_text} "
        "(each node: steps, compute, communication)",
        xlabel=f"ms from {timeline.start_s:.2f} s into the run",
    )
    handles = [Patch(color=PHASE_COLOURS[n], label=n) for n in PHASE_COLOURS if n in seen]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    fig.savefig(out, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return timeline


def write_timelines(run_dirs: list[Path], out: Path) -> list[Path]:
    """timeline_<run>.png in `out` for every run that has a trace (others are skipped)."""
    paths: list[Path] = []
    for run_dir in run_dirs:
        if (Path(run_dir) / TRACE_FILE).is_file():
            path = out / f"timeline_{Path(run_dir).name}.png"
            if path in paths:  # two runs of one name, from different folders
                path = path.with_stem(f"{path.stem}_{len(paths) + 1}")
            try:
                draw_timeline(run_dir, path)
            except ReportError:
                continue  # a trace without a complete step: nothing to show
            paths.append(path)
    return paths
