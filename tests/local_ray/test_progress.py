"""The progress bar within an epoch: drawn on a terminal, absent elsewhere (on real runs:
test_run's four-node run on a terminal and single-node run to a pipe)."""

import io
import json
import os
import signal
import subprocess
import sys
import time

from raysim.console.bar import format_bar
from raysim.console.follower import CLEAR_LINE, ProgressFollower
from raysim.console.lines import node_lost_line
from raysim.procfs import descendants


def test_the_bar_follows_the_slowest_node():
    line = format_bar(2, 5, {0: (5, 10), 1: (3, 10)}, width=10)
    assert line == "epoch 2/5 [###.......] step 3/10 (slowest of 2)"


def test_the_node_loss_line_comes_just_before_its_failure_line(tmp_path):
    """The driver removes the node when the worker fires the fault, which can be before the
    controller has recorded the epochs reported earlier: its line waits for the failure's."""
    metrics = tmp_path / "metrics.jsonl"
    epoch = {"kind": "epoch", "epoch": 2, "world_size": 3, "samples_per_s": 10.0,
             "step_time_s": 0.1}  # fmt: skip
    error = {"kind": "error", "ranks": ["1"], "epoch": 3, "detect_s": 3.2,
             "faults": [{"kind": "node_loss", "rank": 1}]}  # fmt: skip
    fault = {"kind": "node_loss", "rank": 1, "epoch": 3, "step": 2}
    terminal = Terminal()
    follower = ProgressFollower(metrics, 4, terminal)  # not started: no thread, no bar
    follower.board = object()  # as on a terminal: each line clears the bar first
    follower.tell_before_failure(node_lost_line(fault, "/tmp/ray/session_x/logs/raylet.2.out"))
    follower._print_new()
    assert terminal.getvalue() == "", "nothing before the controller records the failure"
    metrics.write_text(json.dumps(epoch) + "\n")
    follower._print_new()
    with metrics.open("a") as handle:
        handle.write(json.dumps(error) + "\n")
    follower._print_new()
    lines = terminal.getvalue().split(CLEAR_LINE)[1:]
    assert lines[0].startswith("epoch   2/4  nodes 3")
    assert lines[1] == (
        "raysim: node_loss: node-1's Ray node removed at epoch 3, step 2 (all its processes "
        "killed at once); Ray's own log of it stays in /tmp/ray/session_x/logs/raylet.2.out\n"
    )
    assert lines[2].startswith("raysim: the worker group failed (rank 1): injected node_loss")
    assert len(lines) == 3


def test_a_node_loss_line_without_a_failure_line_comes_at_the_end(tmp_path, monkeypatch):
    polls = []
    print_new = ProgressFollower._print_new

    def counted(follower):
        print_new(follower)
        polls.append(out.getvalue())

    monkeypatch.setattr(ProgressFollower, "_print_new", counted)
    out = io.StringIO()
    with ProgressFollower(tmp_path / "metrics.jsonl", 4, out, poll_s=0.05) as follower:
        follower.tell_before_failure("raysim: node_loss: ...")
        told_at = len(polls)
        deadline = time.monotonic() + 10
        while len(polls) < told_at + 3 and time.monotonic() < deadline:  # three polls after
            time.sleep(0.01)
        assert len(polls) >= told_at + 3 and polls[told_at:] == [""] * (len(polls) - told_at)
    assert out.getvalue() == "raysim: node_loss: ...\n"


def test_descendants_are_found_from_proc():
    child = subprocess.Popen(
        [sys.executable, "-c", "import subprocess, sys; "
         "subprocess.run([sys.executable, '-c', 'import time; time.sleep(30)'])"],
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while not descendants(child.pid) and time.monotonic() < deadline:  # it starts
            time.sleep(0.05)
        below = descendants(child.pid)
        assert len(below) == 1 and set(descendants(os.getpid())) >= {child.pid, *below}
    finally:
        for pid in descendants(child.pid):
            os.kill(pid, signal.SIGKILL)
        child.kill()
        child.wait()


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True
