"""What the user sees in the terminal: one line per epoch and a final summary table.

The recorder writes metrics.jsonl inside Ray's controller actor; the driver
follows that file, so the console output is deliberate and in order.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, TextIO

from raysim.metrics import read_lines

MB = 1e6


SKIP_IN_LINE = {"kind", "epoch", "world_size", "slowest_rank", "wall_time_s", "report_unix"}


def epoch_line(epoch: dict[str, Any], num_epochs: int) -> str:
    if "test_accuracy" not in epoch:  # a user's function: its own numbers
        shown = [
            f"{key} {value:.4g}"
            for key, value in epoch.items()
            if key not in SKIP_IN_LINE and isinstance(value, (int, float))
        ][:8]
        return f"epoch {epoch['epoch']:>3}/{num_epochs}  nodes {epoch['world_size']}  " + (
            "  ".join(shown)
        )
    return (
        f"epoch {epoch['epoch']:>3}/{num_epochs}  nodes {epoch['world_size']}  "
        f"loss {epoch['train_loss']:.4f}  acc {epoch['train_accuracy']:.3f}  "
        f"test acc {epoch['test_accuracy']:.3f}  {epoch['epoch_time_s']:.1f} s  "
        f"{epoch['samples_per_s']:.0f} samples/s  peak RSS {epoch['peak_rss_bytes'] / MB:.0f} MB"
    )


def event_line(record: dict[str, Any]) -> str:
    """A failure of the worker group, or the recovery from one, as the console tells it."""
    if record["kind"] == "recovered":
        return (
            f"raysim: recovered: epoch {record['epoch']} reported "
            f"{record['recover_s']:.1f} s after the failure"
        )
    ranks = ", ".join(sorted(record["ranks"], key=int))
    text = f"raysim: the worker group failed (rank {ranks})"
    if record.get("faults"):
        injected = ", ".join(f"{f['kind']} on node-{f['rank']}" for f in record["faults"])
        text += f": injected {injected}, noticed after {record['detect_s']:.1f} s"
    return text


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
        run_rows += [["nodes", nodes_text(summary)]]
        run_rows += [
            [f"final {key}", f"{value:.4g}"]
            for key, value in summary["final_metrics"].items()
            if key not in SKIP_IN_LINE and isinstance(value, (int, float))
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
    run_rows.append(["run directory", str(run_dir)])
    node_rows = [
        ["node", "rank", "samples/s", "step time", "peak RSS", "memory peak", "budget", "headroom"]
    ]
    node_rows += [
        [
            n["node_id"] + _lost_text(n, summary),
            str(n["rank"]),
            "–" if n["samples_per_s"] is None else f"{n['samples_per_s']:.1f}",
            "–" if n["step_time_s"] is None else f"{n['step_time_s'] * 1000:.0f} ms",
            f"{n['peak_rss_bytes'] / MB:.0f} MB",
            f"{n['memory_peak_bytes'] / MB:.0f} MB",
            f"{n['memory_budget_bytes'] / MB:.0f} MB",
            f"{(n['memory_budget_bytes'] - n['memory_peak_bytes']) / MB:.0f} MB",
        ]
        for n in summary["nodes"]
    ]
    parts = [_table(run_rows)]
    if len(node_rows) > 1:
        parts.append(_table(node_rows))
    return "\n\n".join(parts)


CLEAR_LINE = "\r\033[K"  # carriage return, erase the line: where the bar was


class ProgressFollower:
    """Prints each aggregate epoch line as the controller appends it to metrics.jsonl."""

    def __init__(
        self, metrics_path: Path, num_epochs: int, out: TextIO | None, poll_s: float = 0.5
    ):
        self.metrics_path = metrics_path
        self.num_epochs = num_epochs
        self.out = out
        self.poll_s = poll_s
        self._printed = 0
        self.board = None
        """A progress board (raysim.progress) to draw a bar from, on a terminal only."""
        self._bar = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, daemon=True)

    def __enter__(self) -> ProgressFollower:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._print_new()
        if self.board is not None and self.out is not None:
            self.out.write(CLEAR_LINE)
            self.out.flush()

    def _follow(self) -> None:
        while not self._stop.wait(self.poll_s):
            self._print_new()

    def _print_new(self) -> None:
        if self.out is None:
            return
        exists = self.metrics_path.exists()
        records = read_lines(self.metrics_path) if exists else []
        shown = [r for r in records if r.get("kind") in ("epoch", "error", "recovered")]
        clear = CLEAR_LINE if self.board is not None else ""  # over the bar, if one is drawn
        for record in shown[self._printed :]:
            text = (
                epoch_line(record, self.num_epochs)
                if record["kind"] == "epoch"
                else event_line(record)
            )
            print(clear + text, file=self.out, flush=True)
        self._printed = len(shown)
        if self.board is not None and not self._stop.is_set():
            self._draw_bar()

    def _draw_bar(self) -> None:
        from raysim.progress import BarReader

        if self._bar is None:
            self._bar = BarReader(self.board, self.num_epochs)
        try:
            line = self._bar.line()
        except Exception:  # the board went with the cluster: nothing to draw
            return
        if line is not None:
            self.out.write(CLEAR_LINE + line)
            self.out.flush()
