"""The driver's console during a run: it follows metrics.jsonl and prints what is new.

The recorder writes metrics.jsonl inside Ray's controller actor; the driver follows
that file, so the console output is deliberate and in order.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TextIO

from raysim.console.bar import BarReader
from raysim.console.lines import epoch_line, event_line
from raysim.rundir import read_lines

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
        """A progress board (raysim.console.bar) to draw a bar from, on a terminal only."""
        self._bar = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        """One at a time: the follower's thread, and tell_before_failure from another."""
        self._before_failure: list[str] = []
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

    def tell_before_failure(self, text: str) -> None:
        """A line of the driver's own about a failure it caused (a node_loss removal),
        printed just before the failure line the recorder writes for it (or at the end, if
        none comes). The controller takes reports in later than the workers make them, so
        printed at once it could land before the epoch lines of reports made earlier."""
        with self._lock:
            self._before_failure.append(text)

    def _print_new(self) -> None:
        if self.out is None:
            return
        with self._lock:
            self._print_records()

    def _print_records(self) -> None:
        exists = self.metrics_path.exists()
        records = read_lines(self.metrics_path) if exists else []
        shown = [r for r in records if r.get("kind") in ("epoch", "error", "recovered", "notice")]
        clear = CLEAR_LINE if self.board is not None else ""  # over the bar, if one is drawn
        for record in shown[self._printed :]:
            if record["kind"] == "error":
                self._print_told(clear)
            text = (
                epoch_line(record, self.num_epochs)
                if record["kind"] == "epoch"
                else event_line(record)
            )
            print(clear + text, file=self.out, flush=True)
        self._printed = len(shown)
        if self._stop.is_set():  # the last look: what no failure line came for
            self._print_told(clear)
        if self.board is not None and not self._stop.is_set():
            self._draw_bar()

    def _print_told(self, clear: str) -> None:
        for text in self._before_failure:
            print(clear + text, file=self.out, flush=True)
        self._before_failure.clear()

    def _draw_bar(self) -> None:
        if self._bar is None:
            self._bar = BarReader(self.board, self.num_epochs)
        try:
            line = self._bar.line()
        except Exception:  # the board went with the cluster: nothing to draw
            return
        if line is not None:
            self.out.write(CLEAR_LINE + line)
            self.out.flush()
