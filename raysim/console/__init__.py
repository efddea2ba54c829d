"""What the terminal shows: epoch lines as the run goes, the bar, the summary table."""

from raysim.console.bar import make_board
from raysim.console.follower import ProgressFollower
from raysim.console.table import summary_table

__all__ = ["ProgressFollower", "make_board", "summary_table"]
