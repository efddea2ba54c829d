"""The progress bar within an epoch: drawn on a terminal, absent elsewhere."""

import io

import pytest

import raysim
from raysim.console.bar import format_bar
from raysim.console.follower import CLEAR_LINE


def test_the_bar_follows_the_slowest_node():
    line = format_bar(2, 5, {0: (5, 10), 1: (3, 10)}, width=10)
    assert line == "epoch 2/5 [###.......] step 3/10 (slowest of 2)"


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.slow
def test_a_terminal_gets_a_bar_and_a_pipe_does_not(shared_ray, tiny_config):
    terminal, pipe = Terminal(), io.StringIO()
    raysim.run(tiny_config(num_nodes=2, run_name="tty", max_steps_per_epoch=40), out=terminal)
    raysim.run(tiny_config(num_nodes=2, run_name="pipe", max_steps_per_epoch=40), out=pipe)
    shown = terminal.getvalue()
    assert "epoch 1/2 [" in shown and "(slowest of 2)" in shown
    bars = [part for part in shown.split(CLEAR_LINE) if part.startswith("epoch ") and "[" in part]
    steps = [int(bar.split("step ")[1].split("/")[0]) for bar in bars]
    assert steps and all(0 < s <= 40 for s in steps), steps
    assert "\r" not in pipe.getvalue() and "slowest of" not in pipe.getvalue()
