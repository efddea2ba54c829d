"""What the terminal shows: epoch lines as the run goes, the bar, the summary table."""

from raysim.console.bar import make_board
from raysim.console.follower import ProgressFollower
from raysim.console.lines import hang_line, node_lost_line
from raysim.console.table import summary_table

__all__ = ["ProgressFollower", "hang_line", "make_board", "node_lost_line", "summary_table"]
