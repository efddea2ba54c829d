"""The run's timeline, trace.json: every node's traced steps in Chrome's trace event format.

Each node's spans travel with its reports (rundir.TRACE_KEY, from raysim.worker.tracer);
the recorder takes them out of the reports and hands them here, with the faults that fired,
the failures and the recoveries as instant events. One process row per simulated node
(`node 0`, ...), thread rows for its steps, its compute and its communication (a second
communication row where buckets overlap in time). Times are microseconds since the run
started. The whole file is rewritten after each report (write, then rename), so a reader
never sees half a file and a restarted worker group adds to it; a resumed run continues
the file it finds.

Perfetto (ui.perfetto.dev) and chrome://tracing open it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from raysim.rundir import TRACE_FILE, TRACE_KEY, fired_faults

STEPS_TID, COMPUTE_TID, COMM_TID = 1, 2, 3
"""Thread rows; communication rows are COMM_TID, COMM_TID + 1, ... where buckets overlap."""
LANE_TIDS = {"step": STEPS_TID, "compute": COMPUTE_TID}
"""The tracer's lanes (raysim.worker.tracer), but for comm, which is packed into rows."""


def node_pid(node_id: Any, rank: int) -> int:
    """The node's process row: its index + 1 (node-3 is pid 4; Perfetto keeps pid 0 for
    the kernel's idle task)."""
    try:
        return int(str(node_id).rsplit("-", 1)[1]) + 1
    except (IndexError, ValueError):
        return rank + 1


def _us(seconds: float) -> float:
    return round(seconds * 1e6, 3)


def pack_rows(intervals: list[tuple[float, float]]) -> list[int]:
    """Each interval's row, fewest rows, no two overlapping in a row (greedy by start)."""
    ends: list[float] = []
    rows = [0] * len(intervals)
    for index in sorted(range(len(intervals)), key=lambda i: intervals[i][0]):
        start, end = intervals[index]
        row = next((r for r, row_end in enumerate(ends) if row_end <= start), len(ends))
        if row == len(ends):
            ends.append(end)
        ends[row] = end
        rows[index] = row
    return rows


def span_events(spans: list, pid: int, epoch: int, base_unix: float) -> list[dict[str, Any]]:
    """Chrome 'X' events for one node's spans of one report; a bucket's all-reduce and
    the delay after it share a communication row."""
    buckets: dict[tuple[int, int], list[float]] = {}
    for lane, _, start, duration, step, args in spans:
        if lane == "comm":
            key = (step, args["bucket"])
            low, high = buckets.get(key, (start, start + duration))
            buckets[key] = [min(low, start), max(high, start + duration)]
    keys = list(buckets)
    row_of = dict(zip(keys, pack_rows([tuple(buckets[k]) for k in keys]), strict=True))
    events = []
    for lane, name, start, duration, step, args in spans:
        tid = COMM_TID + row_of[step, args["bucket"]] if lane == "comm" else LANE_TIDS[lane]
        details = {"epoch": epoch, "step": step} if step else {}
        events.append({
            "name": name, "cat": lane, "ph": "X", "ts": _us(start - base_unix),
            "dur": _us(duration), "pid": pid, "tid": tid, "args": {**details, **(args or {})},
        })  # fmt: skip
    return events


def _read(path: Path) -> dict[str, Any] | None:
    try:
        trace = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return trace if isinstance(trace, dict) and "traceEvents" in trace else None


class TraceWriter:
    """The timeline as the run goes; `write` replaces trace.json with everything so far."""

    def __init__(self, run_dir: Path, start_unix: float, enabled: bool = True):
        """enabled: the run traces steps (trace_steps above 0, measure_steps on)."""
        self.enabled = enabled
        self.path = Path(run_dir) / TRACE_FILE
        self.run_dir = Path(run_dir)
        self.base_unix = start_unix
        self.events: list[dict[str, Any]] = []
        self.nodes: dict[int, int] = {}
        """pid: communication rows used."""
        self.pids: dict[int, int] = {}
        """rank: pid, from the latest reports (ranks move when an elastic run loses nodes)."""
        self.faults_drawn: set[int] = set()
        earlier = _read(self.path)
        if earlier is not None:  # a resumed run: go on with the same time base
            self.base_unix = earlier.get("otherData", {}).get("start_unix", start_unix)
            for event in earlier["traceEvents"]:
                self._keep(event)

    def _keep(self, event: dict[str, Any]) -> None:
        if event.get("ph") == "M":
            return
        self.events.append(event)
        pid = event["pid"]
        rows = event["tid"] - COMM_TID + 1 if event["tid"] >= COMM_TID else 0
        self.nodes[pid] = max(self.nodes.get(pid, 0), rows)
        if "fault" in event.get("args", {}):
            self.faults_drawn.add(event["args"]["fault"])

    def take_spans(self, metrics: list[dict[str, Any]], epoch: int) -> list[dict[str, Any]]:
        """The reports without their spans; the spans into the timeline (written)."""
        stripped = []
        for rank, report in enumerate(metrics):
            report = dict(report)
            spans = report.pop(TRACE_KEY, None)
            stripped.append(report)
            pid = node_pid(report.get("node_id"), report.get("rank", rank))
            self.pids[report.get("rank", rank)] = pid
            self.nodes.setdefault(pid, 0)
            for event in span_events(spans or [], pid, epoch, self.base_unix):
                self._keep(event)
        self._draw_faults()
        self.write()
        return stripped

    def instant(self, name: str, unix: float, pids: list[int], args: dict | None = None) -> None:
        for pid in pids:
            self._keep({"name": name, "cat": "event", "ph": "i", "s": "p",
                        "ts": _us(unix - self.base_unix), "pid": pid, "tid": COMPUTE_TID,
                        "args": args or {}})  # fmt: skip

    def failed(self, unix: float, ranks: list[int]) -> None:
        self._draw_faults()
        pids = [self.pids.get(rank, rank + 1) for rank in ranks]
        self.instant("failure", unix, pids, {"ranks": ranks})
        self.write()

    def recovered(self, unix: float, recover_s: float) -> None:
        self.instant("recovered", unix, sorted(set(self.pids.values())), {"recover_s": recover_s})
        self.write()

    def _draw_faults(self) -> None:
        """Each injected fault that fired, on its node, from its marker (a crash leaves no
        report to carry it)."""
        for fault in fired_faults(self.run_dir):
            if fault["index"] in self.faults_drawn:
                continue
            args = {k: fault[k] for k in ("kind", "epoch", "step", "seconds") if k in fault}
            self.instant(f"fault: {fault['kind']}", fault["fired_unix"], [fault["rank"] + 1],
                         {**args, "fault": fault["index"]})  # fmt: skip

    def metadata(self) -> list[dict[str, Any]]:
        events = []
        for pid in sorted(self.nodes):
            name = f"node {pid - 1}"
            events += [
                {"name": "process_name", "ph": "M", "pid": pid, "args": {"name": name}},
                {"name": "process_sort_index", "ph": "M", "pid": pid, "args": {"sort_index": pid}},
            ]
            names = {STEPS_TID: "steps", COMPUTE_TID: "compute", COMM_TID: "communication"}
            for row in range(1, self.nodes[pid]):
                names[COMM_TID + row] = f"communication {row + 1}"
            for tid, name in names.items():
                events += [
                    {"name": "thread_name", "ph": "M", "pid": pid, "tid": tid,
                     "args": {"name": name}},
                    {"name": "thread_sort_index", "ph": "M", "pid": pid, "tid": tid,
                     "args": {"sort_index": tid}},
                ]  # fmt: skip
        return events

    def write(self) -> None:
        """Replace trace.json at once (nothing until there is an event)."""
        if not self.enabled or not self.events:
            return
        trace = {
            "traceEvents": self.metadata() + self.events,
            "displayTimeUnit": "ms",
            "otherData": {"run": self.run_dir.name, "start_unix": self.base_unix},
        }
        partial = self.path.with_name(self.path.name + ".partial")
        partial.write_text(json.dumps(trace))
        os.replace(partial, self.path)
