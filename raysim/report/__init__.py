"""Reading run directories back: comparison figures, the report, summaries, projection."""

from raysim.report.compare import compare
from raysim.report.figures import compare_runs
from raysim.report.runs import ReportError, RunRecord, load_run

__all__ = ["ReportError", "RunRecord", "compare", "compare_runs", "load_run"]
