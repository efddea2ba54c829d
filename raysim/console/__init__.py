"""What the terminal shows: epoch lines as the run goes, the bar, the summary table, a
launched script's own output."""

from raysim.console.bar import make_board
from raysim.console.follower import ProgressFollower
from raysim.console.lines import hang_line, node_lost_line, preempt_line
from raysim.console.script_output import ScriptOutputFollower
from raysim.console.table import summary_table

__all__ = [
    "ProgressFollower", "ScriptOutputFollower", "hang_line", "make_board", "node_lost_line",
    "preempt_line", "summary_table",
]  # fmt: skip
